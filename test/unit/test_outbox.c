/*
 * test_outbox.c — unit tests for mes-producer/outbox.c: new / duplicate /
 * conflict per (source_system, movement_id), all-or-nothing requests
 * (including repeats inside one request), a reversal checked against its
 * stored original (mismatch rolls back, a resend stays a duplicate), gap-free
 * per-site sequences that survive a reopen, the producer_id guard, the
 * stamped payload, and the
 * forwarder side (fetch in id order, mark sent, backlog, first unsent, the
 * per-topic scan of the oldest OUTBOX_TOPIC_SCAN unsent rows).
 *
 * Each test gets a fresh mkdtemp directory with one outbox file
 * (synchronous=OFF: durability is db.c's business, not this suite's).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "outbox.h"

#define PRODUCER "mes-producer-t"
#define VERSION  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define T0       1764460800000LL /* 2025-11-30T00:00:00Z */

typedef struct fixture {
    char dir[256];
    char path[300];
    outbox_t *ob;
} fixture_t;

/* A hand-built movement; strings point into the struct's own buffers. */
typedef struct mv {
    is_movement_t m;
    Invsync__V1__Decimal qty;
    char id[64], site[32], source[32], lot[32];
} mv_t;

static void mv_init(mv_t *v, const char *id, const char *site, int64_t units) {
    is_movement_t init = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal qinit = INVSYNC__V1__DECIMAL__INIT;
    v->m = init;
    v->qty = qinit;
    snprintf(v->id, sizeof v->id, "%s", id);
    snprintf(v->site, sizeof v->site, "%s", site);
    snprintf(v->source, sizeof v->source, "MES-1");
    snprintf(v->lot, sizeof v->lot, "LOT-1");
    v->qty.units = units;
    v->qty.scale = 3;
    v->m.movement_id = v->id;
    v->m.source_system = v->source;
    v->m.site = v->site;
    v->m.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    v->m.material = "MAT-1";
    v->m.lot = v->lot;
    v->m.location = "LOC-1";
    v->m.quantity = &v->qty;
    v->m.uom = "KG";
    v->m.order_id = "ORD-1";
    v->m.event_time = T0 - 1000;
}

static void item_init(outbox_item_t *it, const mv_t *v, const char *tier) {
    memset(it, 0, sizeof *it);
    it->m = &v->m;
    it->tier = tier;
    it->policy_version = VERSION;
    it->topic = "invsync.SITE.tier"; /* opaque to the outbox */
}

static int open_ob(fixture_t *f) {
    char err[256];
    return outbox_open(f->path, IS_DB_SYNC_OFF, PRODUCER, &f->ob, err, sizeof err) == IS_OK ? 0
                                                                                            : -1;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_outbox.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/outbox.db", f->dir);
    *state = f;
    return open_ob(f);
}

static int teardown(void **state) {
    fixture_t *f = *state;
    const char *suffix[] = {"", "-wal", "-shm"};
    size_t i;
    outbox_destroy(f->ob);
    for (i = 0; i < 3; i++) {
        char p[320];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(fixture_t *f) {
    outbox_destroy(f->ob);
    f->ob = NULL;
    assert_int_equal(open_ob(f), 0);
}

static uint64_t backlog(fixture_t *f) {
    uint64_t n;
    int64_t oldest;
    assert_int_equal(outbox_backlog(f->ob, &n, &oldest), IS_OK);
    return n;
}

static uint64_t last_seq(fixture_t *f, const char *site) {
    uint64_t s;
    assert_int_equal(outbox_last_seq(f->ob, site, &s), IS_OK);
    return s;
}

/* Append one movement and return its status. */
static outbox_status_t append1(fixture_t *f, const mv_t *v, uint64_t *seq, int64_t now) {
    outbox_item_t it;
    char err[256];
    is_err_t rc;
    item_init(&it, v, "nearline");
    rc = outbox_append(f->ob, &it, 1, now, err, sizeof err);
    assert_true(rc == IS_OK || rc == IS_ERR_CONFLICT);
    if (seq)
        *seq = it.sequence;
    return it.status;
}

/* ---- append ------------------------------------------------------------ */

static void test_new_then_duplicate_keeps_sequence(void **state) {
    fixture_t *f = *state;
    mv_t a, b;
    outbox_item_t it[2];
    char err[256];

    mv_init(&a, "MV-1", "P1", 1500);
    mv_init(&b, "MV-2", "P1", 2500);
    item_init(&it[0], &a, "realtime");
    item_init(&it[1], &b, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0, err, sizeof err), IS_OK);
    assert_int_equal(it[0].status, OUTBOX_ACCEPTED);
    assert_int_equal(it[1].status, OUTBOX_ACCEPTED);
    assert_int_equal(it[0].sequence, 1);
    assert_int_equal(it[1].sequence, 2);
    assert_true(it[0].id > 0 && it[1].id > it[0].id);

    /* Same content again, even classified differently now: duplicate with the
     * stored sequence and tier, nothing new stored. */
    item_init(&it[0], &a, "daily");
    item_init(&it[1], &b, "daily");
    assert_int_equal(outbox_append(f->ob, it, 2, T0 + 5, err, sizeof err), IS_OK);
    assert_int_equal(it[0].status, OUTBOX_DUPLICATE);
    assert_int_equal(it[1].status, OUTBOX_DUPLICATE);
    assert_int_equal(it[0].sequence, 1);
    assert_int_equal(it[1].sequence, 2);
    assert_string_equal(it[0].stored_tier, "realtime");
    assert_string_equal(it[1].stored_tier, "nearline");
    assert_int_equal(backlog(f), 2);
    assert_int_equal(last_seq(f, "P1"), 2);
}

static void test_conflict_rolls_back_whole_request(void **state) {
    fixture_t *f = *state;
    mv_t a, a_changed, c, d;
    outbox_item_t it[3];
    uint64_t seq;
    char err[256];

    mv_init(&a, "MV-1", "P1", 1500);
    assert_int_equal(append1(f, &a, &seq, T0), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 1);

    /* [new c, changed a, new d]: a conflicts → c and d are not stored either. */
    mv_init(&c, "MV-3", "P1", 100);
    mv_init(&a_changed, "MV-1", "P1", 1501);
    mv_init(&d, "MV-4", "P2", 100);
    item_init(&it[0], &c, "nearline");
    item_init(&it[1], &a_changed, "nearline");
    item_init(&it[2], &d, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 3, T0 + 1, err, sizeof err), IS_ERR_CONFLICT);
    assert_int_equal(it[1].status, OUTBOX_CONFLICT);
    assert_int_not_equal(it[0].status, OUTBOX_CONFLICT);
    assert_int_not_equal(it[2].status, OUTBOX_CONFLICT);
    assert_int_equal(backlog(f), 1);
    assert_int_equal(last_seq(f, "P1"), 1);
    assert_int_equal(last_seq(f, "P2"), 0);

    /* The rolled-back sequence is not lost: c now gets 2, no gap. */
    assert_int_equal(append1(f, &c, &seq, T0 + 2), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 2);
    assert_int_equal(append1(f, &d, &seq, T0 + 2), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 1);
}

static void test_repeat_inside_one_request(void **state) {
    fixture_t *f = *state;
    mv_t a, a_again, b, b_changed;
    outbox_item_t it[2];
    char err[256];

    mv_init(&a, "MV-1", "P1", 1000);
    mv_init(&a_again, "MV-1", "P1", 1000);
    item_init(&it[0], &a, "nearline");
    item_init(&it[1], &a_again, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0, err, sizeof err), IS_OK);
    assert_int_equal(it[0].status, OUTBOX_ACCEPTED);
    assert_int_equal(it[1].status, OUTBOX_DUPLICATE);
    assert_int_equal(it[1].sequence, it[0].sequence);
    assert_int_equal(backlog(f), 1);

    mv_init(&b, "MV-2", "P1", 1000);
    mv_init(&b_changed, "MV-2", "P1", 999);
    item_init(&it[0], &b, "nearline");
    item_init(&it[1], &b_changed, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0, err, sizeof err), IS_ERR_CONFLICT);
    assert_int_equal(it[1].status, OUTBOX_CONFLICT);
    assert_int_equal(backlog(f), 1);
    assert_int_equal(last_seq(f, "P1"), 1);
}

static void test_same_id_other_source_is_distinct(void **state) {
    fixture_t *f = *state;
    mv_t a, b;
    uint64_t seq;

    mv_init(&a, "MV-1", "P1", 1000);
    mv_init(&b, "MV-1", "P1", 2000);
    snprintf(b.source, sizeof b.source, "MES-2");
    assert_int_equal(append1(f, &a, &seq, T0), OUTBOX_ACCEPTED);
    assert_int_equal(append1(f, &b, &seq, T0), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 2);
}

static void test_movement_without_ids_is_refused(void **state) {
    fixture_t *f = *state;
    mv_t a, bad;
    outbox_item_t it[2];
    char err[256] = "";

    mv_init(&a, "MV-1", "P1", 1000);
    mv_init(&bad, "", "P1", 1000);
    item_init(&it[0], &a, "nearline");
    item_init(&it[1], &bad, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0, err, sizeof err), IS_ERR_INVALID);
    assert_true(err[0] != '\0');
    assert_int_equal(backlog(f), 0);
}

/* A reversal of mv's goods issue, with mv's fields. */
static void mv_reversal(mv_t *r, const char *id, const mv_t *orig) {
    mv_init(r, id, orig->site, orig->qty.units);
    r->qty.scale = orig->qty.scale;
    snprintf(r->lot, sizeof r->lot, "%s", orig->lot);
    r->m.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    r->m.reversed_type = orig->m.type;
    r->m.reverses_movement_id = (char *)orig->id;
}

/* A new REVERSAL whose stored original has other fields is a MISMATCH: the
 * request is rolled back, the first differing field named. */
static void test_reversal_mismatch_rolls_back_request(void **state) {
    fixture_t *f = *state;
    mv_t orig, other, rv;
    outbox_item_t it[2];
    char err[256] = "";
    uint64_t seq;

    mv_init(&orig, "MV-1", "P1", 5000); /* 5.000 */
    assert_int_equal(append1(f, &orig, &seq, T0), OUTBOX_ACCEPTED);
    mv_init(&other, "MV-2", "P1", 1000);
    mv_reversal(&rv, "RV-1", &orig);
    snprintf(rv.lot, sizeof rv.lot, "LOT-2");
    item_init(&it[0], &other, "nearline");
    item_init(&it[1], &rv, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0 + 1, err, sizeof err), IS_ERR_INVALID);
    assert_int_equal(it[1].status, OUTBOX_MISMATCH);
    assert_string_equal(it[1].mismatch_field, "lot");
    assert_string_equal(it[1].mismatch, "lot is 'LOT-2' but movement 'MV-1' has 'LOT-1'");
    assert_int_not_equal(it[0].status, OUTBOX_MISMATCH);
    free(it[1].mismatch);
    assert_int_equal(backlog(f), 1);
    assert_int_equal(last_seq(f, "P1"), 1);

    /* The same lot and 5 (scale 0) == 5.000: accepted, MV-2 takes the next sequence. */
    mv_reversal(&rv, "RV-1", &orig);
    rv.qty.units = 5;
    rv.qty.scale = 0;
    item_init(&it[1], &rv, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0 + 2, err, sizeof err), IS_OK);
    assert_int_equal(it[0].sequence, 2);
    assert_int_equal(it[1].status, OUTBOX_ACCEPTED);
    assert_int_equal(it[1].sequence, 3);
}

/* Only a new reversal is checked: a resend stays a DUPLICATE even when the
 * original, unknown at first, was stored since with other fields. */
static void test_reversal_resend_is_duplicate(void **state) {
    fixture_t *f = *state;
    mv_t orig, rv;
    uint64_t seq;

    mv_init(&orig, "MV-LATE", "P1", 1000);
    mv_reversal(&rv, "RV-1", &orig);
    assert_int_equal(append1(f, &rv, &seq, T0), OUTBOX_ACCEPTED);
    snprintf(orig.lot, sizeof orig.lot, "LOT-OTHER");
    assert_int_equal(append1(f, &orig, &seq, T0 + 1), OUTBOX_ACCEPTED);
    assert_int_equal(append1(f, &rv, &seq, T0 + 2), OUTBOX_DUPLICATE);
    assert_int_equal(seq, 1);
    assert_int_equal(backlog(f), 2);
}

/* A movement is reversed once: a second REVERSAL of a stored original,
 * the first stored before or in the same request, is a MISMATCH naming the
 * first; a resend of the first stays a DUPLICATE. Reversals of an original
 * this outbox does not hold are not judged here (the consumer is). */
static void test_second_reversal_of_a_movement_is_refused(void **state) {
    fixture_t *f = *state;
    mv_t orig, r1, r2, r3, unknown, u1, u2;
    outbox_item_t it[2];
    char err[256] = "";
    uint64_t seq;

    mv_init(&orig, "MV-1", "P1", 5000);
    assert_int_equal(append1(f, &orig, &seq, T0), OUTBOX_ACCEPTED);
    mv_reversal(&r1, "RV-1", &orig);
    assert_int_equal(append1(f, &r1, &seq, T0 + 1), OUTBOX_ACCEPTED);
    assert_int_equal(append1(f, &r1, &seq, T0 + 2), OUTBOX_DUPLICATE);
    mv_reversal(&r2, "RV-2", &orig);
    item_init(&it[0], &r2, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 1, T0 + 3, err, sizeof err), IS_ERR_INVALID);
    assert_int_equal(it[0].status, OUTBOX_MISMATCH);
    assert_string_equal(it[0].mismatch_field, "reverses_movement_id");
    assert_string_equal(it[0].mismatch, "reverses_movement_id is 'MV-1' but movement 'MV-1' is"
                                        " already reversed by 'RV-1'");
    free(it[0].mismatch);
    assert_int_equal(backlog(f), 2);

    /* The same inside one request: the original, then two reversals. */
    mv_t o2, a1, a2;
    mv_init(&o2, "MV-2", "P1", 2000);
    mv_reversal(&a1, "RV-A1", &o2);
    mv_reversal(&a2, "RV-A2", &o2);
    outbox_item_t three[3];
    item_init(&three[0], &o2, "nearline");
    item_init(&three[1], &a1, "nearline");
    item_init(&three[2], &a2, "nearline");
    assert_int_equal(outbox_append(f->ob, three, 3, T0 + 4, err, sizeof err), IS_ERR_INVALID);
    assert_int_not_equal(three[1].status, OUTBOX_MISMATCH);
    assert_int_equal(three[2].status, OUTBOX_MISMATCH);
    assert_string_equal(three[2].mismatch, "reverses_movement_id is 'MV-2' but movement 'MV-2' is"
                                           " already reversed by 'RV-A1'");
    free(three[2].mismatch);
    assert_int_equal(backlog(f), 2); /* rolled back, MV-2 and RV-A1 too */
    /* The rolled-back request left no trace: MV-2 and RV-A1 alone are accepted now. */
    item_init(&three[0], &o2, "nearline");
    item_init(&three[1], &a1, "nearline");
    assert_int_equal(outbox_append(f->ob, three, 2, T0 + 5, err, sizeof err), IS_OK);

    /* Two reversals of an original this outbox never saw: not judged here. */
    mv_init(&unknown, "BEFORE-INVSYNC", "P1", 1000);
    mv_reversal(&u1, "RV-U1", &unknown);
    mv_reversal(&u2, "RV-U2", &unknown);
    item_init(&it[0], &u1, "nearline");
    item_init(&it[1], &u2, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 2, T0 + 6, err, sizeof err), IS_OK);
    /* And another source's movement of the same id is another movement. */
    mv_reversal(&r3, "RV-3", &orig);
    snprintf(r3.source, sizeof r3.source, "MES-2");
    assert_int_equal(append1(f, &r3, &seq, T0 + 6), OUTBOX_ACCEPTED);
}

/* Rows in the outbox file, sent or not (a connection of the test's own). */
static int64_t rows(fixture_t *f) {
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox", -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/*
 * outbox.retention: delivered rows accepted before the cutoff go, oldest
 * first, a bounded batch per call; a row not yet sent stays; the cursor
 * stops at the first young row; sequences go on. A resend of a deleted
 * movement is accepted again (documented: the consumer absorbs it).
 */
static void test_prune_deletes_delivered_rows_past_retention(void **state) {
    fixture_t *f = *state;
    int64_t ids[10], after = 0, n = 0, total = 0;
    size_t n_ids = 0;
    char err[256] = "";
    uint64_t seq;
    int done = 0;

    for (int i = 1; i <= 10; i++) {
        mv_t v;
        char id[16];
        snprintf(id, sizeof id, "MV-%d", i);
        mv_init(&v, id, "P1", 1000);
        assert_int_equal(append1(f, &v, &seq, i <= 5 ? T0 : T0 + 100000), OUTBOX_ACCEPTED);
        if (i != 3) /* MV-3 is old but not delivered yet */
            ids[n_ids++] = i;
    }
    assert_int_equal(outbox_mark_sent(f->ob, ids, n_ids, T0 + 100000, err, sizeof err), IS_OK);
    assert_int_equal(outbox_prune(f->ob, T0 + 50000, 2, &after, &n, &done, err, sizeof err), IS_OK);
    assert_int_equal(n, 2); /* MV-1, MV-2 */
    assert_false(done);
    total += n;
    while (!done) {
        assert_int_equal(outbox_prune(f->ob, T0 + 50000, 2, &after, &n, &done, err, sizeof err),
                         IS_OK);
        total += n;
    }
    assert_int_equal(total, 4);   /* MV-1, 2, 4, 5 */
    assert_int_equal(after, 5);   /* stopped at MV-6, the first young row */
    assert_int_equal(rows(f), 6); /* MV-3 (unsent) and MV-6..10 */
    assert_int_equal(backlog(f), 1);
    /* Nothing more until the cutoff moves. */
    assert_int_equal(outbox_prune(f->ob, T0 + 50000, 2, &after, &n, &done, err, sizeof err), IS_OK);
    assert_int_equal(n, 0);
    assert_true(done);
    /* Sequences go on from site_seq; a deleted movement is no longer known. */
    mv_t again;
    mv_init(&again, "MV-1", "P1", 1000);
    assert_int_equal(append1(f, &again, &seq, T0 + 200000), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 11);
}

/* A reversal noted while its original was here still counts once
 * outbox.retention has deleted the original: a second one is refused. */
static void test_reversal_noted_survives_its_original_pruned(void **state) {
    fixture_t *f = *state;
    mv_t orig, r1, r2;
    outbox_item_t it[1];
    int64_t ids[2] = {1, 2}, after = 0, n = 0;
    char err[256] = "";
    uint64_t seq;
    int done = 0;

    mv_init(&orig, "MV-1", "P1", 5000);
    assert_int_equal(append1(f, &orig, &seq, T0), OUTBOX_ACCEPTED);
    mv_reversal(&r1, "RV-1", &orig);
    assert_int_equal(append1(f, &r1, &seq, T0 + 10), OUTBOX_ACCEPTED);
    assert_int_equal(outbox_mark_sent(f->ob, ids, 2, T0 + 20, err, sizeof err), IS_OK);
    assert_int_equal(outbox_prune(f->ob, T0 + 5, 10, &after, &n, &done, err, sizeof err), IS_OK);
    assert_int_equal(n, 1); /* MV-1 gone, RV-1 kept */
    mv_reversal(&r2, "RV-2", &orig);
    item_init(&it[0], &r2, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 1, T0 + 30, err, sizeof err), IS_ERR_INVALID);
    assert_string_equal(it[0].mismatch, "reverses_movement_id is 'MV-1' but movement 'MV-1' is"
                                        " already reversed by 'RV-1'");
    free(it[0].mismatch);
}

/* A duplicate (stored earlier or in the same request) uses no sequence. */
static void test_duplicate_uses_no_sequence(void **state) {
    fixture_t *f = *state;
    mv_t a, a_again, b, c;
    outbox_item_t it[3];
    uint64_t seq;
    char err[256];

    mv_init(&a, "MV-1", "P1", 1000);
    mv_init(&a_again, "MV-1", "P1", 1000);
    mv_init(&b, "MV-2", "P1", 1000);
    item_init(&it[0], &a, "nearline");
    item_init(&it[1], &a_again, "nearline");
    item_init(&it[2], &b, "nearline");
    assert_int_equal(outbox_append(f->ob, it, 3, T0, err, sizeof err), IS_OK);
    assert_int_equal(it[0].sequence, 1);
    assert_int_equal(it[1].status, OUTBOX_DUPLICATE);
    assert_int_equal(it[1].sequence, 1);
    assert_int_equal(it[2].status, OUTBOX_ACCEPTED);
    assert_int_equal(it[2].sequence, 2);
    assert_int_equal(append1(f, &b, &seq, T0 + 1), OUTBOX_DUPLICATE);
    assert_int_equal(seq, 2);
    mv_init(&c, "MV-3", "P1", 1000);
    assert_int_equal(append1(f, &c, &seq, T0 + 2), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 3);
    assert_int_equal(last_seq(f, "P1"), 3);
}

/* Many sites (the in-memory counter table grows) keep their own sequences. */
static void test_many_sites_keep_their_sequences(void **state) {
    fixture_t *f = *state;
    uint64_t seq;
    size_t round, s;

    for (round = 1; round <= 2; round++) {
        for (s = 0; s < 100; s++) {
            char id[32], site[16];
            mv_t v;
            snprintf(id, sizeof id, "MV-%zu-%zu", round, s);
            snprintf(site, sizeof site, "S%zu", s);
            mv_init(&v, id, site, 100);
            assert_int_equal(append1(f, &v, &seq, T0), OUTBOX_ACCEPTED);
            assert_int_equal(seq, round);
        }
        reopen(f);
    }
    assert_int_equal(last_seq(f, "S0"), 2);
    assert_int_equal(last_seq(f, "S99"), 2);
}

/* ---- sequences --------------------------------------------------------- */

static void test_sequences_gap_free_per_site_across_reopen(void **state) {
    fixture_t *f = *state;
    const char *sites[] = {"P1", "P2", "P1", "P1", "P2"};
    const uint64_t want[] = {1, 1, 2, 3, 2};
    uint64_t seq;
    size_t i;
    mv_t v;

    for (i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "MV-%zu", i);
        mv_init(&v, id, sites[i], 100);
        assert_int_equal(append1(f, &v, &seq, T0 + (int64_t)i), OUTBOX_ACCEPTED);
        assert_int_equal(seq, want[i]);
    }
    reopen(f);
    assert_int_equal(last_seq(f, "P1"), 3);
    assert_int_equal(last_seq(f, "P2"), 2);
    assert_int_equal(last_seq(f, "P3"), 0);
    mv_init(&v, "MV-after-1", "P2", 100);
    assert_int_equal(append1(f, &v, &seq, T0 + 10), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 3);
    mv_init(&v, "MV-after-2", "P3", 100);
    assert_int_equal(append1(f, &v, &seq, T0 + 11), OUTBOX_ACCEPTED);
    assert_int_equal(seq, 1);
    /* A duplicate after reopen still answers its original sequence. */
    mv_init(&v, "MV-2", "P1", 100);
    assert_int_equal(append1(f, &v, &seq, T0 + 12), OUTBOX_DUPLICATE);
    assert_int_equal(seq, 2);
}

typedef struct site_seen {
    char names[8][16];
    uint64_t last[8];
    size_t n;
} site_seen_t;

static void on_site(void *opaque, const char *site, uint64_t last_seq) {
    site_seen_t *s = opaque;
    if (s->n < 8) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", site);
        s->last[s->n++] = last_seq;
    }
}

static void test_sites_lists_every_site_that_accepted(void **state) {
    fixture_t *f = *state;
    site_seen_t seen;
    mv_t v;

    memset(&seen, 0, sizeof seen);
    assert_int_equal(outbox_sites(f->ob, on_site, &seen), IS_OK);
    assert_int_equal(seen.n, 0);
    mv_init(&v, "MV-1", "P2", 100);
    assert_int_equal(append1(f, &v, NULL, T0), OUTBOX_ACCEPTED);
    mv_init(&v, "MV-2", "P1", 100);
    assert_int_equal(append1(f, &v, NULL, T0), OUTBOX_ACCEPTED);
    mv_init(&v, "MV-3", "P1", 100);
    assert_int_equal(append1(f, &v, NULL, T0), OUTBOX_ACCEPTED);
    assert_int_equal(outbox_sites(f->ob, on_site, &seen), IS_OK);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names[0], "P1");
    assert_int_equal(seen.last[0], 2);
    assert_string_equal(seen.names[1], "P2");
    assert_int_equal(seen.last[1], 1);
}

static void test_other_producer_id_is_refused(void **state) {
    fixture_t *f = *state;
    outbox_t *other = NULL;
    char err[512] = "";

    outbox_destroy(f->ob);
    f->ob = NULL;
    assert_int_equal(outbox_open(f->path, IS_DB_SYNC_OFF, "someone-else", &other, err, sizeof err),
                     IS_ERR_CONFIG);
    assert_null(other);
    assert_non_null(strstr(err, PRODUCER));
    assert_non_null(strstr(err, "someone-else"));
    assert_int_equal(open_ob(f), 0);
}

static void test_memory_path_is_refused(void **state) {
    outbox_t *ob = NULL;
    char err[256] = "";
    (void)state;
    assert_int_equal(outbox_open(":memory:", IS_DB_SYNC_OFF, PRODUCER, &ob, err, sizeof err),
                     IS_ERR_INVALID);
    assert_null(ob);
}

static void test_probe_writable(void **state) {
    fixture_t *f = *state;
    char err[256] = "";
    assert_int_equal(outbox_probe_writable(f->ob, err, sizeof err), IS_OK);
    /* The probe leaves nothing behind. */
    assert_int_equal(backlog(f), 0);
}

/* ---- forwarder side ---------------------------------------------------- */

typedef struct fetched {
    int64_t ids[16];
    uint64_t seqs[16];
    size_t n;
    size_t stop_after; /* 0 = never */
    int payload_ok;
} fetched_t;

static int on_row(void *opaque, const outbox_row_t *row) {
    fetched_t *fe = opaque;
    is_movement_t *m;

    if (fe->n < 16) {
        fe->ids[fe->n] = row->id;
        fe->seqs[fe->n] = row->sequence;
    }
    fe->n++;
    /* The payload is the stamped movement, ready for Kafka. */
    m = invsync__v1__movement__unpack(NULL, row->payload_len, row->payload);
    if (m && strcmp(m->movement_id, row->movement_id) == 0 && m->sequence == row->sequence &&
        strcmp(m->producer_id, PRODUCER) == 0 && strcmp(m->tier, row->tier) == 0 &&
        strcmp(m->policy_version, VERSION) == 0 && m->accepted_time == row->accepted_at &&
        strcmp(row->msg_key, "P1/MAT-1/LOT-1") == 0 && m->quantity && m->quantity->units == 100)
        fe->payload_ok++;
    if (m)
        invsync__v1__movement__free_unpacked(m, NULL);
    return fe->stop_after && fe->n >= fe->stop_after;
}

static void append_n(fixture_t *f, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        char id[32];
        mv_t v;
        snprintf(id, sizeof id, "MV-%zu", i + 1);
        mv_init(&v, id, "P1", 100);
        assert_int_equal(append1(f, &v, NULL, T0 + (int64_t)i * 1000), OUTBOX_ACCEPTED);
    }
}

static void test_fetch_in_order_with_stamped_payload(void **state) {
    fixture_t *f = *state;
    fetched_t fe;
    size_t n = 0;
    char err[256];

    append_n(f, 5);
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 3, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(fe.payload_ok, 3);
    assert_true(fe.ids[0] < fe.ids[1] && fe.ids[1] < fe.ids[2]);
    assert_int_equal(fe.seqs[0], 1);
    assert_int_equal(fe.seqs[2], 3);

    /* After a cursor: the rest, in order. */
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 3, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(fe.seqs[0], 4);
    assert_int_equal(fe.seqs[1], 5);

    /* The callback can stop early. */
    memset(&fe, 0, sizeof fe);
    fe.stop_after = 2;
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 2);
}

static void test_mark_sent_and_backlog(void **state) {
    fixture_t *f = *state;
    int64_t first = -1, oldest = -1, ids[3];
    uint64_t count = 99;
    fetched_t fe;
    size_t n = 0;
    char err[256];

    assert_int_equal(outbox_backlog(f->ob, &count, &oldest), IS_OK);
    assert_int_equal(count, 0);
    assert_int_equal(oldest, 0);
    assert_int_equal(outbox_first_unsent_id(f->ob, &first), IS_OK);
    assert_int_equal(first, 0);

    append_n(f, 5);
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 5);

    /* Mark the first two (and one twice): backlog 3, oldest = third's accepted_at. */
    ids[0] = fe.ids[0];
    ids[1] = fe.ids[1];
    ids[2] = fe.ids[0];
    assert_int_equal(outbox_mark_sent(f->ob, ids, 3, T0 + 100000, err, sizeof err), IS_OK);
    assert_int_equal(outbox_backlog(f->ob, &count, &oldest), IS_OK);
    assert_int_equal(count, 3);
    assert_int_equal(oldest, T0 + 2000);
    assert_int_equal(outbox_first_unsent_id(f->ob, &first), IS_OK);
    assert_int_equal(first, fe.ids[2]);

    /* Sent rows are not fetched again, even from the start. */
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(fe.seqs[0], 3);

    /* Mark the rest; survives a reopen; sent rows still dedup. */
    assert_int_equal(outbox_mark_sent(f->ob, fe.ids, 3, T0 + 200000, err, sizeof err), IS_OK);
    reopen(f);
    assert_int_equal(outbox_backlog(f->ob, &count, &oldest), IS_OK);
    assert_int_equal(count, 0);
    assert_int_equal(oldest, 0);
    {
        mv_t v;
        uint64_t seq;
        mv_init(&v, "MV-3", "P1", 100);
        assert_int_equal(append1(f, &v, &seq, T0 + 300000), OUTBOX_DUPLICATE);
        assert_int_equal(seq, 3);
        assert_int_equal(backlog(f), 0);
    }
}

/* A delivery report that arrives after `mes-producer republish` marked its
 * row unsent must not mark it sent again: the command promised to publish it
 * once more. outbox_mark_sent_in_generation marks nothing when a republish
 * committed since the caller's generation, and hands back the new one. */
static void test_mark_sent_after_republish_leaves_rows_unsent(void **state) {
    fixture_t *f = *state;
    fetched_t fe;
    size_t n = 0;
    int64_t gen = -1, in_range = 0, marked = 0;
    char err[256];

    append_n(f, 4);
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(outbox_republish_generation(f->ob, &gen), IS_OK);
    assert_int_equal(gen, 0);
    /* MV-1, MV-2 delivered and marked; MV-3, MV-4 delivered, reports not yet marked. */
    assert_int_equal(
        outbox_mark_sent_in_generation(f->ob, fe.ids, 2, T0 + 10000, &gen, err, sizeof err), IS_OK);
    assert_int_equal(gen, 0);
    assert_int_equal(backlog(f), 2);

    assert_int_equal(outbox_republish(f->ob, "P1", 1, 4, &in_range, &marked, err, sizeof err),
                     IS_OK);
    assert_int_equal(in_range, 4);
    assert_int_equal(marked, 2);
    assert_int_equal(backlog(f), 4);

    /* The late reports of MV-3, MV-4: nothing marked, the new generation seen. */
    assert_int_equal(
        outbox_mark_sent_in_generation(f->ob, fe.ids + 2, 2, T0 + 20000, &gen, err, sizeof err),
        IS_OK);
    assert_int_equal(gen, 1);
    assert_int_equal(backlog(f), 4);

    /* Published again (after the forwarder's rewind): marked under the new generation. */
    assert_int_equal(
        outbox_mark_sent_in_generation(f->ob, fe.ids, 4, T0 + 30000, &gen, err, sizeof err), IS_OK);
    assert_int_equal(gen, 1);
    assert_int_equal(backlog(f), 0);
}

/* Marks given out of order, repeated and with holes touch exactly those ids. */
static void test_mark_sent_runs_with_holes(void **state) {
    fixture_t *f = *state;
    int64_t ids[5], first = 0, oldest = 0;
    uint64_t count = 0;
    fetched_t fe;
    size_t n = 0;
    char err[256];

    append_n(f, 7);
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 7);
    /* rows 6, 2, 1, 2, 4 (1-based): unsent remain 3, 5, 7 */
    ids[0] = fe.ids[5];
    ids[1] = fe.ids[1];
    ids[2] = fe.ids[0];
    ids[3] = fe.ids[1];
    ids[4] = fe.ids[3];
    assert_int_equal(outbox_mark_sent(f->ob, ids, 5, T0 + 100000, err, sizeof err), IS_OK);
    assert_int_equal(outbox_backlog(f->ob, &count, &oldest), IS_OK);
    assert_int_equal(count, 3);
    assert_int_equal(oldest, T0 + 2000);
    assert_int_equal(outbox_first_unsent_id(f->ob, &first), IS_OK);
    assert_int_equal(first, fe.ids[2]);
    memset(&fe, 0, sizeof fe);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 100, on_row, &fe, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(fe.seqs[0], 3);
    assert_int_equal(fe.seqs[1], 5);
    assert_int_equal(fe.seqs[2], 7);
}

/* ---- concurrent appends (group commit) ---------------------------------- */

#define GC_THREADS  6
#define GC_REQUESTS 40
#define GC_ITEMS    15

typedef struct gc_arg {
    fixture_t *f;
    int t;
    size_t accepted, conflicts, errors;
} gc_arg_t;

/* Each thread: requests of GC_ITEMS new movements over three sites; every
 * fifth request also resends, with changed content, a movement its thread
 * stored earlier (a CONFLICT: nothing of that request may be stored); every
 * seventh resends an earlier one unchanged (a DUPLICATE). */
static void *gc_thread(void *p) {
    gc_arg_t *a = p;
    static const char *sites[] = {"P1", "P2", "P3"};
    mv_t *v = calloc(GC_ITEMS + 1, sizeof(*v));
    outbox_item_t *it = calloc(GC_ITEMS + 1, sizeof(*it));
    int r;
    size_t i;

    for (r = 0; r < GC_REQUESTS; r++) {
        size_t n = GC_ITEMS;
        char err[256];
        is_err_t rc;
        for (i = 0; i < GC_ITEMS; i++) {
            char id[48];
            snprintf(id, sizeof id, "T%d-R%d-I%zu", a->t, r, i);
            mv_init(&v[i], id, sites[(i + (size_t)r) % 3], 100 + (int64_t)i);
            item_init(&it[i], &v[i], "nearline");
        }
        if (r > 0 && r % 5 == 0) {
            char id[48];
            snprintf(id, sizeof id, "T%d-R%d-I0", a->t, r - 1);
            mv_init(&v[n], id, sites[(size_t)(r - 1) % 3], 99999); /* changed content */
            item_init(&it[n], &v[n], "nearline");
            n++;
        } else if (r > 0 && r % 7 == 0) {
            int q = (r - 1) % 5 == 0 ? r - 2 : r - 1; /* a request that was stored */
            char id[48];
            snprintf(id, sizeof id, "T%d-R%d-I1", a->t, q);
            mv_init(&v[n], id, sites[(1 + (size_t)q) % 3], 101); /* same content */
            item_init(&it[n], &v[n], "nearline");
            n++;
        }
        rc = outbox_append(a->f->ob, it, n, T0 + r, err, sizeof err);
        if (rc == IS_OK) {
            for (i = 0; i < n; i++)
                a->accepted += it[i].status == OUTBOX_ACCEPTED;
            if (n > GC_ITEMS && it[GC_ITEMS].status != OUTBOX_DUPLICATE)
                a->errors++;
        } else if (rc == IS_ERR_CONFLICT) {
            a->conflicts++;
            if (it[n - 1].status != OUTBOX_CONFLICT)
                a->errors++;
        } else {
            a->errors++;
        }
    }
    free(v);
    free(it);
    return NULL;
}

typedef struct gc_rows {
    uint64_t last[3];
    size_t n, bad;
} gc_rows_t;

static int gc_row(void *opaque, const outbox_row_t *row) {
    gc_rows_t *g = opaque;
    int s = row->site[1] - '1';
    g->n++;
    if (s < 0 || s > 2 || row->sequence != g->last[s] + 1)
        g->bad++; /* per site, ascending ids carry 1, 2, 3, ... */
    else
        g->last[s] = row->sequence;
    return 0;
}

static void test_concurrent_appends_stay_gap_free(void **state) {
    fixture_t *f = *state;
    pthread_t th[GC_THREADS];
    gc_arg_t arg[GC_THREADS];
    gc_rows_t rows;
    size_t accepted = 0, conflicts = 0, n = 0;
    char err[256];
    int t;

    /* With fsyncs, requests arrive while a commit runs and share the next one. */
    outbox_destroy(f->ob);
    f->ob = NULL;
    assert_int_equal(outbox_open(f->path, IS_DB_SYNC_FULL, PRODUCER, &f->ob, err, sizeof err),
                     IS_OK);
    for (t = 0; t < GC_THREADS; t++) {
        memset(&arg[t], 0, sizeof arg[t]);
        arg[t].f = f;
        arg[t].t = t;
        assert_int_equal(pthread_create(&th[t], NULL, gc_thread, &arg[t]), 0);
    }
    for (t = 0; t < GC_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(arg[t].errors, 0);
        accepted += arg[t].accepted;
        conflicts += arg[t].conflicts;
    }
    /* Requests 5, 10, ..., 35 of each thread conflict; the others are stored whole. */
    assert_int_equal(conflicts, (size_t)GC_THREADS * 7);
    assert_int_equal(accepted, (size_t)GC_THREADS * (GC_REQUESTS - 7) * GC_ITEMS);
    memset(&rows, 0, sizeof rows);
    assert_int_equal(outbox_fetch_unsent(f->ob, 0, 1000000, gc_row, &rows, &n, err, sizeof err),
                     IS_OK);
    assert_int_equal(n, accepted);
    assert_int_equal(rows.bad, 0);
    assert_int_equal(rows.last[0] + rows.last[1] + rows.last[2], accepted);
    assert_int_equal(last_seq(f, "P1"), rows.last[0]);
    assert_int_equal(last_seq(f, "P2"), rows.last[1]);
    assert_int_equal(last_seq(f, "P3"), rows.last[2]);
}

/* ---- outbox_unsent_topics ------------------------------------------------ */

typedef struct topic_seen {
    char topic[64][64], site[64][32], tier[64][32];
    uint64_t waiting[64];
    int64_t oldest[64];
    size_t n;
} topic_seen_t;

static void on_topic(void *opaque, const char *topic, const char *site, const char *tier,
                     uint64_t waiting, int64_t oldest) {
    topic_seen_t *ts = opaque;
    assert_true(ts->n < 64);
    snprintf(ts->topic[ts->n], 64, "%s", topic);
    snprintf(ts->site[ts->n], 32, "%s", site);
    snprintf(ts->tier[ts->n], 32, "%s", tier);
    ts->waiting[ts->n] = waiting;
    ts->oldest[ts->n] = oldest;
    ts->n++;
}

static int64_t append_to(fixture_t *f, const char *id, const char *site, const char *tier,
                         const char *topic, int64_t at) {
    mv_t v;
    outbox_item_t it;
    char err[256];
    mv_init(&v, id, site, 1000);
    item_init(&it, &v, tier);
    it.topic = topic;
    assert_int_equal(outbox_append(f->ob, &it, 1, at, err, sizeof err), IS_OK);
    return it.id;
}

static size_t seen_index(const topic_seen_t *ts, const char *topic) {
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->topic[i], topic) == 0)
            return i;
    fail_msg("topic %s not reported", topic);
    return 0;
}

/* The forwarder's missing-topic check: nothing is reported while the oldest
 * unsent row is recent; once it is old, every topic with unsent rows is, with
 * its site, tier, count and oldest accepted_at; delivered rows do not count. */
static void test_unsent_topics_groups_waiting_rows_by_topic(void **state) {
    fixture_t *f = *state;
    topic_seen_t ts;
    char err[256];
    size_t i;
    int64_t sent;

    memset(&ts, 0, sizeof ts);
    assert_int_equal(outbox_unsent_topics(f->ob, T0, on_topic, &ts, err, sizeof err), IS_OK);
    assert_int_equal(ts.n, 0); /* empty outbox */

    sent = append_to(f, "A-0", "PLANT1", "realtime", "p.PLANT1.realtime", T0 + 500);
    append_to(f, "A-1", "PLANT1", "realtime", "p.PLANT1.realtime", T0 + 1000);
    append_to(f, "A-2", "PLANT1", "realtime", "p.PLANT1.realtime", T0 + 3000);
    append_to(f, "B-1", "PLANT9", "daily", "p.PLANT9.daily", T0 + 2000);
    append_to(f, "B-2", "PLANT9", "daily", "p.PLANT9.daily", T0 + 9000);
    assert_int_equal(outbox_mark_sent(f->ob, &sent, 1, T0 + 600, err, sizeof err), IS_OK);

    /* Oldest unsent (T0+1000) is not older than the cutoff: one cheap look, no callback. */
    memset(&ts, 0, sizeof ts);
    assert_int_equal(outbox_unsent_topics(f->ob, T0 + 1000, on_topic, &ts, err, sizeof err), IS_OK);
    assert_int_equal(ts.n, 0);

    memset(&ts, 0, sizeof ts);
    assert_int_equal(outbox_unsent_topics(f->ob, T0 + 1001, on_topic, &ts, err, sizeof err), IS_OK);
    assert_int_equal(ts.n, 2);
    i = seen_index(&ts, "p.PLANT1.realtime");
    assert_string_equal(ts.site[i], "PLANT1");
    assert_string_equal(ts.tier[i], "realtime");
    assert_int_equal(ts.waiting[i], 2); /* A-0 was delivered */
    assert_int_equal(ts.oldest[i], T0 + 1000);
    i = seen_index(&ts, "p.PLANT9.daily");
    assert_string_equal(ts.site[i], "PLANT9");
    assert_string_equal(ts.tier[i], "daily");
    assert_int_equal(ts.waiting[i], 2);
    assert_int_equal(ts.oldest[i], T0 + 2000);
}

/*
 * The per-topic pass looks at the oldest OUTBOX_TOPIC_SCAN unsent rows only:
 * with OUTBOX_TOPIC_SCAN - 1 rows on one topic, a second topic's row is the
 * last one inside the window and a third's the first one past it. The
 * second is reported, the third is not, and the first's count stops at the
 * window. Rows are appended in requests of 500 (one transaction each).
 */
static void test_unsent_topics_reads_only_the_oldest_scan_rows(void **state) {
    enum { BATCH = 500 };
    fixture_t *f = *state;
    mv_t *v = calloc(BATCH, sizeof *v);
    outbox_item_t *it = calloc(BATCH, sizeof *it);
    size_t total = OUTBOX_TOPIC_SCAN + 1;
    topic_seen_t ts;
    char err[256];

    assert_non_null(v);
    assert_non_null(it);
    for (size_t done = 0; done < total;) {
        size_t n = total - done < BATCH ? total - done : BATCH;
        for (size_t k = 0; k < n; k++) {
            size_t row = done + k + 1; /* 1-based position in the queue */
            char id[32];
            snprintf(id, sizeof id, "W-%zu", row);
            mv_init(&v[k], id, "PLANT1", 1000);
            item_init(&it[k], &v[k], "realtime");
            it[k].topic = row < OUTBOX_TOPIC_SCAN    ? "p.PLANT1.realtime"
                          : row == OUTBOX_TOPIC_SCAN ? "p.PLANT1.inside"
                                                     : "p.PLANT1.outside";
        }
        assert_int_equal(outbox_append(f->ob, it, n, T0 + (int64_t)done, err, sizeof err), IS_OK);
        done += n;
    }
    free(it);
    free(v);
    assert_int_equal(backlog(f), total);

    memset(&ts, 0, sizeof ts);
    assert_int_equal(outbox_unsent_topics(f->ob, T0 + 1, on_topic, &ts, err, sizeof err), IS_OK);
    assert_int_equal(ts.n, 2);
    assert_int_equal(ts.waiting[seen_index(&ts, "p.PLANT1.realtime")], OUTBOX_TOPIC_SCAN - 1);
    assert_int_equal(ts.waiting[seen_index(&ts, "p.PLANT1.inside")], 1);
    for (size_t i = 0; i < ts.n; i++)
        assert_string_not_equal(ts.topic[i], "p.PLANT1.outside");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_then_duplicate_keeps_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_rolls_back_whole_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_inside_one_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_id_other_source_is_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_movement_without_ids_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reversal_mismatch_rolls_back_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reversal_resend_is_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_reversal_of_a_movement_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prune_deletes_delivered_rows_past_retention, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_noted_survives_its_original_pruned, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sequences_gap_free_per_site_across_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sites_lists_every_site_that_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_producer_id_is_refused, setup, teardown),
        cmocka_unit_test(test_memory_path_is_refused),
        cmocka_unit_test_setup_teardown(test_probe_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_in_order_with_stamped_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_sent_and_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_uses_no_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_sites_keep_their_sequences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_sent_runs_with_holes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends_stay_gap_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_sent_after_republish_leaves_rows_unsent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unsent_topics_groups_waiting_rows_by_topic, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unsent_topics_reads_only_the_oldest_scan_rows, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
