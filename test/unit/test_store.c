/*
 * test_store.c — the consumer store: dedup, watermarks, acceptance order per
 * lot, held lots, retries, requeue and crash recovery (in-flight postings).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "admin.h"
#include "hash.h"
#include "store.h"
#include "store_int.h" /* store_post_sql, sync_relaxed */

typedef struct fixture {
    char dir[64];
    char path[128];
    store_t *s;
    /* encoded payloads kept alive for the batch */
    uint8_t *bufs[64];
    size_t n_bufs;
    Invsync__V1__Decimal qty;
    int64_t period; /* ownership period stamped on applied messages */
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    *state = f;
    return 0;
}

/* store_counts (index ranges, posted derived) equals a plain count of the
 * tables, whatever the test did to them: checked after every test. */
static int counts_exact(fixture_t *f) {
    static const char *const sql = "SELECT (SELECT count(*) FROM movements),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'queued'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'posting'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'retry'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'posted'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'failed'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'dead'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'cancelled'),"
                                   " (SELECT count(*) FROM movements WHERE +state = 'skipped'),"
                                   " (SELECT count(*) FROM postings),"
                                   " (SELECT count(*) FROM postings WHERE +state = 'posted'),"
                                   " (SELECT count(*) FROM postings WHERE +state = 'failed'),"
                                   " (SELECT count(*) FROM postings WHERE +state = 'retry')";
    store_counts_t c;
    char errstr[256];
    sqlite3_stmt *st;
    int differ = -1;
    if (store_counts(f->s, &c, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "store_counts: %s\n", errstr);
        return -1;
    }
    const int64_t got[] = {
        c.movements,     c.queued,    c.posting, c.retry,    c.posted,          c.failed,
        c.dead,          c.cancelled, c.skipped, c.postings, c.postings_posted, c.postings_failed,
        c.postings_retry};
    if (sqlite3_prepare_v2(store_db(f->s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        differ = 0;
        for (int i = 0; i < (int)(sizeof(got) / sizeof(got[0])); i++)
            if (sqlite3_column_int64(st, i) != got[i]) {
                fprintf(stderr, "store_counts field %d: %lld, the table says %lld\n", i,
                        (long long)got[i], (long long)sqlite3_column_int64(st, i));
                differ++;
            }
    }
    sqlite3_finalize(st);
    return differ == 0 ? 0 : -1;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    char cmd[160];
    int rc = counts_exact(f);
    store_close(f->s);
    for (size_t i = 0; i < f->n_bufs; i++)
        free(f->bufs[i]);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return rc;
}

/* A stamped GOODS_ISSUE movement of lot "site/RM-1/<lot>". */
static void make(is_movement_t *m, Invsync__V1__Decimal *q, const char *id, const char *site,
                 const char *lot, uint64_t seq) {
    invsync__v1__movement__init(m);
    invsync__v1__decimal__init(q);
    q->units = 5;
    m->movement_id = (char *)id;
    m->source_system = "MES";
    m->site = (char *)site;
    m->type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    m->material = "RM-1";
    m->lot = (char *)lot;
    m->location = "LINE-1";
    m->quantity = q;
    m->uom = "EA";
    m->order_id = "ORD-1";
    m->tier = "realtime";
    m->producer_id = "P1";
    m->sequence = seq;
}

/* REV-1 (seq 2 of lot L1): the REVERSAL of goods issue GI-1. */
static void make_rev1(is_movement_t *r, Invsync__V1__Decimal *q) {
    make(r, q, "REV-1", "S1", "L1", 2);
    r->type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    r->reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    r->reverses_movement_id = "GI-1";
}

/* Apply a prepared movement message at offset with a due time. */
static store_batch_result_t apply_m(fixture_t *f, is_movement_t *mp, int64_t offset,
                                    int64_t due_at) {
    is_movement_t m = *mp;
    store_msg_t sm;
    store_batch_result_t res;
    char errstr[256];
    size_t len = invsync__v1__movement__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    invsync__v1__movement__pack(&m, buf);
    f->bufs[f->n_bufs++] = buf;
    memset(&sm, 0, sizeof(sm));
    sm.kind = STORE_MSG_MOVEMENT;
    sm.topic = "invsync.S1.realtime";
    sm.partition = 0;
    sm.offset = offset;
    sm.m = &m;
    sm.payload = buf;
    sm.payload_len = len;
    sm.due_at = due_at;
    sm.period = f->period;
    assert_int_equal(store_apply_batch(f->s, &sm, 1, 1000, &res, errstr, sizeof(errstr)), IS_OK);
    return res;
}

/* Apply one GOODS_ISSUE at (topic, offset), due at once. */
static store_batch_result_t apply(fixture_t *f, const char *id, const char *site, const char *lot,
                                  uint64_t seq, int64_t offset) {
    is_movement_t m;
    make(&m, &f->qty, id, site, lot, seq);
    return apply_m(f, &m, offset, 0);
}

static void test_dedup_and_offsets(void **state) {
    fixture_t *f = *state;
    int64_t next = 0;
    assert_int_equal(store_get_offset(f->s, "invsync.S1.realtime", 0, &next), IS_ERR_NOT_FOUND);
    assert_int_equal(apply(f, "M1", "S1", "L1", 1, 10).received, 1);
    store_batch_result_t r = apply(f, "M1", "S1", "L1", 1, 11);
    assert_int_equal(r.received, 0);
    assert_int_equal(r.duplicates, 1);
    assert_int_equal(store_get_offset(f->s, "invsync.S1.realtime", 0, &next), IS_OK);
    assert_int_equal(next, 12);
    /* An older offset never moves the stored one back. */
    apply(f, "M1", "S1", "L1", 1, 3);
    assert_int_equal(store_get_offset(f->s, "invsync.S1.realtime", 0, &next), IS_OK);
    assert_int_equal(next, 12);
}

static void test_watermark_gap_holds_later_movements(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    /* seq 2 arrives before seq 1 (different tier topics): nothing is due yet. */
    apply(f, "M2", "S1", "L1", 2, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 100, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0);
    store_posting_list_release(&l);
    apply(f, "M1", "S1", "L1", 1, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 100, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].m[0]->movement_id, "M1");
    assert_string_equal(l.items[1].m[0]->movement_id, "M2");
    assert_string_equal(l.items[0].lot_key, "S1/RM-1/L1");
    assert_int_equal(strlen(l.items[0].posting_id), 32);
    assert_string_not_equal(l.items[0].posting_id, l.items[1].posting_id);
    store_posting_list_release(&l);
}

static void test_failed_posting_holds_its_lot_only(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    store_result_t res[3];
    char errstr[256];
    apply(f, "A1", "S1", "LA", 1, 0);
    apply(f, "B1", "S1", "LB", 2, 1);
    apply(f, "A2", "S1", "LA", 3, 2);
    /* A triggered lot comes back whole, in acceptance order. */
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].m[0]->movement_id, "A1");
    assert_string_equal(l.items[1].m[0]->movement_id, "A2");
    assert_string_equal(l.items[2].m[0]->movement_id, "B1");
    assert_int_equal(store_mark_posting(f->s, &l, 2000, errstr, sizeof(errstr)), IS_OK);
    memset(res, 0, sizeof(res));
    res[0].outcome = STORE_FAILED; /* A1 */
    res[0].error = "insufficient stock";
    res[1].outcome = STORE_REQUEUE; /* A2: not attempted behind A1 */
    res[2].outcome = STORE_POSTED;  /* B1 */
    res[2].document = "4900000001";
    assert_int_equal(store_record_results(f->s, &l, res, 2000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    /* B1 was posted after A1 failed in the same batch: the tier's last
     * posting is B1's (a failure earlier in the batch does not hide it). */
    sqlite3_stmt *ta;
    assert_int_equal(
        sqlite3_prepare_v2(store_db(f->s),
                           "SELECT last_posted_at FROM tier_activity WHERE site = 'S1'", -1, &ta,
                           NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(ta), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(ta, 0), 2000);
    sqlite3_finalize(ta);
    /* A2 (same lot as the failed A1) is held; nothing else is due. */
    assert_int_equal(store_fetch_due(f->s, NULL, 3000, 100, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0);
    store_posting_list_release(&l);
    /* Another lot keeps flowing. */
    apply(f, "C1", "S1", "LC", 4, 3);
    assert_int_equal(store_fetch_due(f->s, NULL, 3000, 100, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "C1");
    store_posting_list_release(&l);
    store_counts_t c;
    assert_int_equal(store_counts(f->s, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.posted, 1);
    assert_int_equal(c.queued, 2);
}

/* A pause stops retries too: an operator's retry of a failed posting waits
 * while its site and tier are paused, and goes once they are resumed. */
static void test_pause_holds_retries(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    store_result_t res = {.outcome = STORE_FAILED, .error = "insufficient stock"};
    char errstr[256], posting[33];
    apply(f, "A1", "S1", "LA", 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    snprintf(posting, sizeof posting, "%s", l.items[0].posting_id);
    const char *tier = l.items[0].tier;
    char tier_name[32];
    snprintf(tier_name, sizeof tier_name, "%s", tier);
    assert_int_equal(store_mark_posting(f->s, &l, 2000, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_record_results(f->s, &l, &res, 2000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_int_equal(
        store_pause(f->s, "S1", tier_name, "alice", "ERP upgrade", 2500, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(
        store_failed_retry(f->s, posting, "carol", "stock booked", 3000, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(store_fetch_due(f->s, NULL, 4000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0); /* paused: the retry waits */
    store_posting_list_release(&l);
    assert_int_equal(
        store_resume(f->s, "S1", tier_name, "alice", "done", 4500, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_fetch_due(f->s, NULL, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].posting_id, posting);
    store_posting_list_release(&l);
}

static void test_retry_waits_then_comes_back_first(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    store_result_t res[2];
    char errstr[256], first_id[33];
    apply(f, "A1", "S1", "LA", 1, 0);
    apply(f, "A2", "S1", "LA", 2, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    snprintf(first_id, sizeof(first_id), "%s", l.items[0].posting_id);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    memset(res, 0, sizeof(res));
    res[0].outcome = STORE_RETRY;
    res[0].error = "503";
    res[0].next_at_ms = 5000;
    res[1].outcome = STORE_REQUEUE;
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    /* Before next_at: neither the retry nor A2 (held behind it). */
    assert_int_equal(store_fetch_due(f->s, NULL, 4999, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0);
    store_posting_list_release(&l);
    /* At next_at: the retry, with the same posting id and its attempt count, and not A2. */
    assert_int_equal(store_fetch_due(f->s, NULL, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].posting_id, first_id);
    assert_int_equal(l.items[0].attempts, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "A1");
    store_posting_list_release(&l);
}

static void test_inflight_after_crash(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    apply(f, "A1", "S1", "LA", 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    /* "Crash": reopen the store; the posting is found in flight. */
    store_close(f->s);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_fetch_inflight(f->s, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "A1");
    assert_int_equal(l.items[0].attempts, 1);
    store_posting_list_release(&l);
    /* While in flight the lot is held. */
    apply(f, "A2", "S1", "LA", 2, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0);
    store_posting_list_release(&l);
}

static void test_requeue_undoes_the_attempt(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    store_result_t res[1];
    char errstr[256];
    store_counts_t c;
    apply(f, "A1", "S1", "LA", 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    memset(res, 0, sizeof(res));
    res[0].outcome = STORE_REQUEUE;
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_int_equal(store_counts(f->s, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.queued, 1);
    assert_int_equal(c.postings, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    store_posting_list_release(&l);
}

static void test_dead_message_advances_watermark(void **state) {
    fixture_t *f = *state;
    is_movement_t m;
    store_msg_t sm;
    store_batch_result_t res;
    store_posting_list_t l = {0};
    char errstr[256];
    make(&m, &f->qty, "BAD", "S1", "L1", 1);
    memset(&sm, 0, sizeof(sm));
    sm.kind = STORE_MSG_DEAD;
    sm.topic = "invsync.S1.realtime";
    sm.offset = 0;
    sm.m = &m;
    sm.payload = "x";
    sm.payload_len = 1;
    sm.reason = "invalid";
    assert_int_equal(store_apply_batch(f->s, &sm, 1, 1000, &res, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(res.dead, 1);
    apply(f, "M2", "S1", "L2", 2, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "M2");
    store_posting_list_release(&l);
}

/*
 * A dead message's sequence fills a gap but never opens one: a foreign or
 * broken writer's bogus sequence far ahead is not given up as that many
 * lost movements, nor does it carry the watermark past later ones. A live
 * movement after a real gap still has it skipped, dead rows inside counted
 * as received.
 */
static void store_text(fixture_t *f, const char *sql, char *out, size_t size);

static void test_dead_message_far_ahead_opens_no_gap(void **state) {
    fixture_t *f = *state;
    is_movement_t m;
    store_msg_t sm;
    store_batch_result_t res;
    char errstr[256], text[64];
    int skipped = -1;
    int64_t sequences = -1;
    assert_int_equal(apply(f, "M1", "S1", "L1", 1, 0).received, 1);
    make(&m, &f->qty, "BAD", "S1", "L1", 1000000000000ULL);
    memset(&sm, 0, sizeof(sm));
    sm.kind = STORE_MSG_DEAD;
    sm.topic = "invsync.S1.realtime";
    sm.offset = 1;
    sm.m = &m;
    sm.payload = "x";
    sm.payload_len = 1;
    sm.reason = "invalid";
    assert_int_equal(store_apply_batch(f->s, &sm, 1, 1000, &res, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(
        store_skip_gaps(f->s, 1000000, 5000, 0, &skipped, &sequences, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(skipped, 0);
    assert_int_equal(sequences, 0);
    store_text(f, "SELECT contiguous FROM watermarks WHERE producer_id = 'P1' AND site = 'S1'",
               text, sizeof(text));
    assert_string_equal(text, "1");
    /* The producer goes on: 2, then 4 (3 lost). Only 3 is given up. */
    assert_int_equal(apply(f, "M2", "S1", "L1", 2, 2).received, 1);
    assert_int_equal(apply(f, "M4", "S1", "L1", 4, 3).received, 1);
    assert_int_equal(
        store_skip_gaps(f->s, 1000000, 5000, 0, &skipped, &sequences, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(skipped, 1);
    assert_int_equal(sequences, 1);
    store_text(f, "SELECT contiguous FROM watermarks WHERE producer_id = 'P1' AND site = 'S1'",
               text, sizeof(text));
    assert_string_equal(text, "4");
}

/* Movement states by id, for assertions. */
static void assert_state(fixture_t *f, const char *id, const char *state) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT state FROM movements WHERE movement_id = ?1", -1,
                                        &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), state);
    sqlite3_finalize(st);
}

/* Apply one dead message: movement m, dead-lettered at offset. */
static void apply_dead(fixture_t *f, is_movement_t *m, int64_t offset) {
    store_msg_t sm;
    store_batch_result_t res;
    char errstr[256];
    memset(&sm, 0, sizeof(sm));
    sm.kind = STORE_MSG_DEAD;
    sm.topic = "invsync.S2.realtime";
    sm.offset = offset;
    sm.m = m;
    sm.payload = "x";
    sm.payload_len = 1;
    sm.reason = "movement of site 'S1' on topic of site 'S2'";
    assert_int_equal(store_apply_batch(f->s, &sm, 1, 1000, &res, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(res.dead, 1);
}

/*
 * A dead-lettered copy (here: on another site's topic) does not keep the
 * movement's id: the movement itself, read afterwards, is received and
 * posted, not absorbed as the dead copy's duplicate. Its sequence and the
 * copy's both count for the watermark; the audit names the copy.
 */
static void test_dead_copy_does_not_keep_the_movement_id(void **state) {
    fixture_t *f = *state;
    is_movement_t m;
    store_posting_list_t l = {0};
    char errstr[256], text[64];
    int skipped = -1;
    int64_t sequences = -1;
    make(&m, &f->qty, "M1", "S1", "L1", 1);
    apply_dead(f, &m, 0); /* the same movement, misrouted */
    make(&m, &f->qty, "M2", "S1", "L1", 2);
    m.quantity = NULL;
    apply_dead(f, &m, 1); /* an invalid version, its own sequence */
    assert_int_equal(apply(f, "M1", "S1", "L1", 1, 2).received, 1);
    assert_int_equal(apply(f, "M2", "S1", "L1", 3, 3).received, 1);
    assert_state(f, "M1", "queued");
    assert_state(f, "M2", "queued");
    store_text(f, "SELECT contiguous FROM watermarks WHERE producer_id = 'P1' AND site = 'S1'",
               text, sizeof(text));
    assert_string_equal(text, "3");
    store_text(f, "SELECT count(*) FROM audit WHERE action = 'dead-copy-superseded'", text,
               sizeof(text));
    assert_string_equal(text, "2");
    store_text(f, "SELECT count(*) FROM dead_letters", text, sizeof(text));
    assert_string_equal(text, "2");
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 100, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    store_posting_list_release(&l);
    assert_int_equal(
        store_skip_gaps(f->s, 1000000, 5000, 0, &skipped, &sequences, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(skipped, 0);
}

static void post_all(fixture_t *f, store_posting_list_t *l, int64_t now) {
    char errstr[256];
    store_result_t *res = calloc(l->n ? l->n : 1, sizeof(*res));
    assert_non_null(res);
    assert_int_equal(store_mark_posting(f->s, l, now, errstr, sizeof(errstr)), IS_OK);
    for (size_t i = 0; i < l->n; i++) {
        res[i].outcome = l->items[i].cancel ? STORE_CANCELLED : STORE_POSTED;
        res[i].document = "49";
        res[i].lines = (int)l->items[i].n;
    }
    assert_int_equal(store_record_results(f->s, l, res, now, errstr, sizeof(errstr)), IS_OK);
    free(res);
}

static void test_window_then_realtime_promotes_earlier(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t t, q;
    Invsync__V1__Decimal tq = INVSYNC__V1__DECIMAL__INIT, qq = INVSYNC__V1__DECIMAL__INIT;
    /* A transfer waiting in a 30-minute window, then a real-time quarantine of the lot. */
    make(&t, &tq, "T1", "S1", "L1", 1);
    t.type = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER;
    t.to_location = "QA-CAGE";
    t.tier = "periodic";
    apply_m(f, &t, 0, 1800000);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0); /* the window has not closed */
    store_posting_list_release(&l);
    make(&q, &qq, "Q1", "S1", "L1", 2);
    q.type = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE;
    q.location = "QA-CAGE";
    apply_m(f, &q, 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].m[0]->movement_id, "T1"); /* transfer first */
    assert_string_equal(l.items[0].note, "promoted by Q1 (realtime)");
    assert_string_equal(l.items[1].m[0]->movement_id, "Q1");
    post_all(f, &l, 1000);
    store_posting_list_release(&l);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT note FROM movements WHERE movement_id = 'T1'", -1,
                                        &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "promoted by Q1 (realtime)");
    sqlite3_finalize(st);
}

/* A policy with an immediate tier and a netted one ("periodic", every 30m):
 * with it, store_fetch_due nets a lot's due movements into one posting. */
static is_policy_t *netting_policy(fixture_t *f) {
    is_policy_t *policy = NULL;
    char path[160], errstr[256];
    snprintf(path, sizeof(path), "%s/policy.yaml", f->dir);
    FILE *pf = fopen(path, "w");
    assert_non_null(pf);
    fputs("topic_prefix: invsync\ntiers:\n  realtime: {cadence: immediate, stale_after: 2m}\n"
          "  periodic: {cadence: every 30m, stale_after: 90m}\ndefault_tier: periodic\n",
          pf);
    fclose(pf);
    assert_int_equal(is_policy_load(path, &policy, errstr, sizeof(errstr)), IS_OK);
    return policy;
}

/* The document trace answers for movement id. */
static void expect_trace_movement(fixture_t *f, const char *id, const char *document, int chunk) {
    char errstr[256];
    json_t *rows = admin_trace_movement(f->s, id, errstr, sizeof(errstr));
    assert_non_null(rows);
    assert_int_equal(json_array_size(rows), 1);
    json_t *row = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(row, "document")), document);
    if (chunk)
        assert_int_equal(json_integer_value(json_object_get(row, "chunk")), chunk);
    else
        assert_true(json_is_null(json_object_get(row, "chunk")));
    json_decref(rows);
}

/* The movements trace answers for ERP document doc (a JSON array, compact:
 * ["A","B"]), and its lines. */
static void expect_trace_document(fixture_t *f, const char *doc, const char *movements, int lines) {
    char errstr[256];
    json_t *res = admin_trace_document(f->s, doc, errstr, sizeof(errstr));
    if (!res)
        fail_msg("trace of document %s: %s", doc, errstr);
    json_t *postings = json_object_get(res, "postings");
    assert_int_equal(json_array_size(postings), 1);
    json_t *p = json_array_get(postings, 0);
    char *got = json_dumps(json_object_get(p, "movements"), JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(got);
    assert_string_equal(got, movements);
    free(got);
    assert_int_equal(json_integer_value(json_object_get(p, "lines")), lines);
    json_decref(res);
}

static int64_t count_rows(fixture_t *f, const char *sql) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/*
 * A posting cut into chunks (max_lines 2: five lines, three ERP documents)
 * is recorded with each chunk's document and movements: trace names the
 * document that holds a movement, and a chunk's document lists its own
 * movements only. Before, only "<first>+2" was kept: C4 traced to
 * "4900000015+2", 4900000016 was not found, 4900000015 listed all five.
 * A posting sent whole writes no chunk rows.
 */
static void test_chunked_posting_traces_each_chunk_document(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256], id[16];
    is_movement_t m[6];
    Invsync__V1__Decimal q[6];
    for (int i = 0; i < 6; i++) {
        static char ids[6][16];
        /* W,6: an id may hold a comma; trace must not split it */
        snprintf(ids[i], sizeof(ids[i]), i < 5 ? "C%d" : "W,%d", i + 1);
        make(&m[i], &q[i], ids[i], "S1", i < 5 ? "L1" : "L2", (uint64_t)i + 1);
        m[i].tier = "periodic";
        apply_m(f, &m[i], i, 0);
    }
    is_policy_t *policy = netting_policy(f);
    assert_int_equal(store_fetch_due(f->s, policy, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    is_policy_destroy(policy);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].n, 5);
    assert_int_equal(l.items[1].n, 1);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    /* As post_chunked leaves it: C1 C2 | C3 C4 | C5 (movement j in acceptance order). */
    static const store_chunk_t chunks[] = {{"4900000015", 2}, {"4900000016", 2}, {"4900000017", 1}};
    uint32_t movement_chunk[5];
    for (int j = 0; j < 5; j++) {
        snprintf(id, sizeof(id), "C%d", j + 1);
        assert_string_equal(l.items[0].m[j]->movement_id, id);
        movement_chunk[j] = (uint32_t)(j / 2 + 1);
    }
    store_result_t res[2] = {
        {.outcome = STORE_POSTED,
         .document = "4900000015+2",
         .lines = 5,
         .chunks = chunks,
         .n_chunks = 3,
         .movement_chunk = movement_chunk},
        {.outcome = STORE_POSTED, .document = "4900000020", .lines = 1},
    };
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);

    expect_trace_movement(f, "C1", "4900000015", 1);
    expect_trace_movement(f, "C4", "4900000016", 2);
    expect_trace_movement(f, "C5", "4900000017", 3);
    expect_trace_movement(f, "W,6", "4900000020", 0);
    expect_trace_document(f, "4900000015", "[\"C1\",\"C2\"]", 2);
    expect_trace_document(f, "4900000016", "[\"C3\",\"C4\"]", 2);
    expect_trace_document(f, "4900000017", "[\"C5\"]", 1);
    expect_trace_document(f, "4900000015+2", "[\"C1\",\"C2\",\"C3\",\"C4\",\"C5\"]",
                          5); /* the whole posting */
    expect_trace_document(f, "4900000020", "[\"W,6\"]", 1);
    assert_null(admin_trace_document(f->s, "49000000", errstr, sizeof(errstr)));
    /* The posting's own document is unchanged (replay counts chunks from it);
     * the unchunked posting wrote nothing more. */
    assert_int_equal(count_rows(f, "SELECT count(*) FROM postings WHERE erp_doc = '4900000015+2'"),
                     1);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM posting_chunks"), 3);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM chunk_movements"), 5);
}

/* The expected posting id, spelled out: the first 32 hex digits of SHA-256
 * over the sorted "source\x1fid\n" lines, or, time-ordered, 11 hex digits of
 * the earliest event time and then 21 of that hash. */
static void expect_posting_id(const char *got, int64_t first_event_ms, const char *lines) {
    uint8_t digest[IS_SHA256_LEN];
    char hex[IS_SHA256_HEX_LEN + 1], want[48]; /* room for any %011llx */
    is_sha256(lines, strlen(lines), digest);
    is_hex(digest, IS_SHA256_LEN, hex);
    if (first_event_ms < 0)
        snprintf(want, sizeof(want), "%.32s", hex);
    else
        snprintf(want, sizeof(want), "%011llx%.21s", (unsigned long long)first_event_ms, hex);
    assert_string_equal(got, want);
}

/* Posting ids are a function of the movements (same movements, same id: the
 * ERP's idempotency key). By default they are the hash every earlier version
 * made, so a posting an older instance booked is recognised; movements
 * accepted from poster.time_ordered_ids_from on get ids that grow with their
 * event time (PERFORMANCE.md §5.10). */
static void test_posting_ids_are_deterministic_and_time_ordered(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    const int64_t t0 = 1795000000000; /* 2026-11-18 */
    is_movement_t a, b, c, d, e;
    Invsync__V1__Decimal aq, bq, cq, dq, eq;
    /* Default: the hash alone, whatever the times (INT64_MAX too: it is not
     * a cut-over). */
    make(&e, &eq, "E", "S1", "L9", 1);
    e.event_time = t0;
    e.accepted_time = INT64_MAX;
    apply_m(f, &e, 0, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    expect_posting_id(l.items[0].posting_id, -1,
                      "MES\x1f"
                      "E\n");
    post_all(f, &l, 1000);
    store_posting_list_release(&l);

    /* Cut-over at t0 + 1000: A accepted after it, time-ordered; B accepted
     * before it, the hash (an older instance may have posted it). */
    store_set_time_ordered_ids_from(f->s, t0 + 1000);
    make(&a, &aq, "A", "S1", "L1", 2);
    a.event_time = t0 + 9000;
    a.accepted_time = t0 + 9100;
    apply_m(f, &a, 1, 0);
    make(&b, &bq, "B", "S1", "L2", 3);
    b.event_time = t0 + 2000; /* the cut-over is by acceptance, not by event time */
    b.accepted_time = t0 + 999;
    apply_m(f, &b, 2, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].m[0]->movement_id, "A");
    expect_posting_id(l.items[0].posting_id, t0 + 9000,
                      "MES\x1f"
                      "A\n");
    expect_posting_id(l.items[1].posting_id, -1,
                      "MES\x1f"
                      "B\n");
    post_all(f, &l, 1000);
    store_posting_list_release(&l);

    /* Netted: one posting of two movements takes the earlier event time, and
     * the sorted ids whatever order the movements came in; both accepted
     * after the cut-over (D1 exactly at it counts as after). A posting with a
     * member accepted before the cut-over keeps the hash (F1, F2). */
    make(&c, &cq, "D2", "S1", "L3", 4);
    c.tier = "periodic";
    c.event_time = t0 + 50000;
    c.accepted_time = t0 + 50001;
    apply_m(f, &c, 3, 5000);
    make(&d, &dq, "D1", "S1", "L3", 5);
    d.tier = "periodic";
    d.event_time = t0 + 40000;
    d.accepted_time = t0 + 1000; /* the cut-over itself */
    apply_m(f, &d, 4, 5000);
    is_movement_t g, h;
    Invsync__V1__Decimal gq, hq;
    make(&g, &gq, "F1", "S1", "L4", 6);
    g.tier = "periodic";
    g.event_time = t0 + 60000;
    g.accepted_time = t0 + 999; /* before the cut-over */
    apply_m(f, &g, 5, 5000);
    make(&h, &hq, "F2", "S1", "L4", 7);
    h.tier = "periodic";
    h.event_time = t0 + 60000;
    h.accepted_time = t0 + 70000;
    apply_m(f, &h, 6, 5000);
    is_policy_t *policy = netting_policy(f);
    assert_int_equal(store_fetch_due(f->s, policy, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].n, 2);
    expect_posting_id(l.items[0].posting_id, t0 + 40000,
                      "MES\x1f"
                      "D1\nMES\x1f"
                      "D2\n");
    assert_int_equal(l.items[1].n, 2);
    expect_posting_id(l.items[1].posting_id, -1,
                      "MES\x1f"
                      "F1\nMES\x1f"
                      "F2\n");
    post_all(f, &l, 5000);
    store_posting_list_release(&l);
    is_policy_destroy(policy);
}

/* GI-1 (lot L1, periodic) and REV-1 reversing it, both received at 5000. */
static void apply_gi1_and_its_reversal(fixture_t *f) {
    is_movement_t a, r;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    a.tier = "periodic";
    apply_m(f, &a, 0, 5000);
    make_rev1(&r, &rq);
    r.tier = "periodic";
    apply_m(f, &r, 1, 5000);
}

static void test_reversal_inside_window_cancels_both(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    apply_gi1_and_its_reversal(f);
    assert_int_equal(store_fetch_due(f->s, NULL, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_true(l.items[0].cancel);
    assert_int_equal(l.items[0].n, 2);
    post_all(f, &l, 5000);
    store_posting_list_release(&l);
    assert_state(f, "GI-1", "cancelled");
    assert_state(f, "REV-1", "cancelled");
    store_counts_t c;
    assert_int_equal(store_counts(f->s, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.postings, 0);
    assert_int_equal(c.cancelled, 2);
}

/* `hold` on an immediate tier: the original falls due first, its reversal
 * (received a second later) a second later. When the original is due and
 * its reversal is already here, the pair is cut together and cancels. */
static void test_waiting_reversal_comes_along_with_its_due_original(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t a, r;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    apply_m(f, &a, 0, 40000); /* received at 0, held 40 s */
    make_rev1(&r, &rq);
    apply_m(f, &r, 1, 41000); /* received at 1 s, held 40 s */
    assert_int_equal(store_fetch_due(f->s, NULL, 40000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_true(l.items[0].cancel);
    assert_int_equal(l.items[0].n, 2);
    post_all(f, &l, 40000);
    store_posting_list_release(&l);
    assert_state(f, "GI-1", "cancelled");
    assert_state(f, "REV-1", "cancelled");
}

/* Review of the pull-forward: a not-due member between the due original and
 * its reversal is not pulled ahead of its time (the reversal comes along only
 * when it is the very next member), and the note names the due original. */
static void test_pull_forward_takes_only_the_next_reversal(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t a, b, r;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, bq = INVSYNC__V1__DECIMAL__INIT,
                         rq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    apply_m(f, &a, 0, 40000);
    make(&b, &bq, "GI-2", "S1", "L1", 2);
    b.tier = "periodic";
    apply_m(f, &b, 1, 3600000); /* due in an hour */
    make_rev1(&r, &rq);
    r.sequence = 3;
    apply_m(f, &r, 2, 42000);
    assert_int_equal(store_fetch_due(f->s, NULL, 40000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1); /* GI-1 alone, as before */
    assert_string_equal(l.items[0].m[0]->movement_id, "GI-1");
    assert_false(l.items[0].cancel);
    store_posting_list_release(&l);
}

/* A pause on the tier of a not-due member does not hold a due original. */
static void test_pause_of_a_later_member_does_not_hold_a_due_original(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t a, r;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    apply_m(f, &a, 0, 40000);
    make_rev1(&r, &rq);
    r.tier = "periodic";
    apply_m(f, &r, 1, 3600000);
    assert_int_equal(
        store_pause(f->s, "S1", "periodic", "alice", "month end", 100, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(store_fetch_due(f->s, NULL, 40000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1); /* GI-1 posts; its reversal waits in its paused tier */
    assert_string_equal(l.items[0].m[0]->movement_id, "GI-1");
    assert_int_equal(l.items[0].n, 1);
    store_posting_list_release(&l);
}

/* A refused reversal left in flight by a crash, found not in the ERP at
 * start-up and retried, is checked again: it never reaches the ERP. */
static void test_invalid_reversal_retried_after_a_crash_stays_invalid(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t a, r;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    apply_m(f, &a, 0, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    post_all(f, &l, 1000);
    store_posting_list_release(&l);
    make_rev1(&r, &rq);
    rq.units = 6; /* GI-1 had 5 */
    apply_m(f, &r, 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_non_null(l.items[0].invalid);
    assert_int_equal(store_mark_posting(f->s, &l, 2000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    store_close(f->s); /* the crash: marked, never recorded */
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_fetch_inflight(f->s, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    store_result_t res = {
        .outcome = STORE_RETRY, .error = STORE_NOT_IN_ERP_AFTER_RESTART, .next_at_ms = 3000};
    assert_int_equal(store_record_results(f->s, &l, &res, 3000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_int_equal(store_fetch_due(f->s, NULL, 3000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_non_null(l.items[0].invalid);
    store_posting_list_release(&l);
}

/* Paused retries do not fill the fetch's limit: another site's due retry
 * still goes. */
static void test_paused_retries_do_not_starve_others(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    apply(f, "A1", "S1", "LA", 1, 0);
    apply(f, "B1", "S1", "LB", 2, 1);
    apply(f, "C1", "S2", "LC", 1, 2);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 3);
    store_result_t res[3];
    memset(res, 0, sizeof(res));
    for (size_t i = 0; i < 3; i++) {
        res[i].outcome = STORE_RETRY;
        res[i].error = "HTTP 503";
        res[i].next_at_ms = strcmp(l.items[i].site, "S1") == 0 ? 2000 : 3000;
    }
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_int_equal(
        store_pause(f->s, "S1", "*", "alice", "ERP upgrade", 1500, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_fetch_due(f->s, NULL, 5000, 2, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "C1");
    store_posting_list_release(&l);
}

/* The posting of movement id in l (NULL if none). */
static const store_posting_t *posting_of(const store_posting_list_t *l, const char *id) {
    for (size_t i = 0; i < l->n; i++)
        for (size_t k = 0; k < l->items[i].n; k++)
            if (strcmp(l->items[i].m[k]->movement_id, id) == 0)
                return &l->items[i];
    return NULL;
}

/*
 * A REVERSAL is checked against its original in the store, field by field:
 * the first that differs is named and the reversal's posting is invalid (it
 * cancels nothing); a matching one cancels its original inside the window.
 * Quantities compare as exact decimal values, stock statuses as the effects
 * apply them. Each row: GI-<k> of lot L<k>, 5 EA from LINE-1 (UNRESTRICTED by
 * default), then REV-<k> with the row's fields.
 */
static void test_reversal_is_checked_against_its_original(void **state) {
    fixture_t *f = *state;
    static const struct {
        const char *site, *material, *lot, *serial, *location, *to_location, *uom;
        int64_t units;
        uint32_t scale;
        int reversed_type, from_status;
        const char *want; /* NULL: matches */
    } rows[] = {
        {.want = NULL},
        {.units = 5000, .scale = 3, .want = NULL},                              /* 5.000 is 5 */
        {.from_status = INVSYNC__V1__STOCK_STATUS__UNRESTRICTED, .want = NULL}, /* the default */
        {.site = "S2", .want = "site is S2, the original's is S1"},
        {.material = "RM-2", .want = "material is RM-2, the original's is RM-1"},
        {.lot = "LX", .want = "lot is LX, the original's is L%d"},
        {.serial = "SN-9", .want = "serial is SN-9, the original's is (none)"},
        {.location = "LINE-2", .want = "location is LINE-2, the original's is LINE-1"},
        {.to_location = "QA", .want = "to_location is QA, the original's is (none)"},
        {.uom = "KG", .want = "uom is KG, the original's is EA"},
        {.units = 50, .want = "quantity is 50, the original's is 5"},
        {.units = 5001, .scale = 3, .want = "quantity is 5.001, the original's is 5"},
        {.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION,
         .want = "reversed_type is COMPLETION, the original's type is GOODS_ISSUE"},
        {.from_status = INVSYNC__V1__STOCK_STATUS__BLOCKED,
         .want = "from_status is BLOCKED, the original's is UNRESTRICTED"},
        /* several differ: the first is named */
        {.lot = "LX", .units = 50, .want = "lot is LX, the original's is L%d"},
    };
    enum { N = sizeof(rows) / sizeof(rows[0]) };
    static char ids[N][2][16], lots[N][8];
    is_movement_t a, r;
    Invsync__V1__Decimal aq[N], rq[N];
    store_posting_list_t l = {0};
    char errstr[256];
    uint64_t seq = 0;
    int64_t off = 0;
    for (size_t k = 0; k < N; k++) {
        snprintf(ids[k][0], sizeof(ids[k][0]), "GI-%zu", k);
        snprintf(ids[k][1], sizeof(ids[k][1]), "REV-%zu", k);
        snprintf(lots[k], sizeof(lots[k]), "L%zu", k);
        make(&a, &aq[k], ids[k][0], "S1", lots[k], ++seq);
        apply_m(f, &a, off++, 0);
        make(&r, &rq[k], ids[k][1], "S1", rows[k].lot ? rows[k].lot : lots[k], 0);
        r.sequence = rows[k].site ? 1 : ++seq; /* the only movement of S2 */
        r.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
        r.reversed_type = rows[k].reversed_type ? (Invsync__V1__MovementType)rows[k].reversed_type
                                                : INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
        r.reverses_movement_id = ids[k][0];
        if (rows[k].site)
            r.site = (char *)rows[k].site;
        if (rows[k].material)
            r.material = (char *)rows[k].material;
        if (rows[k].serial)
            r.serial = (char *)rows[k].serial;
        if (rows[k].location)
            r.location = (char *)rows[k].location;
        if (rows[k].to_location)
            r.to_location = (char *)rows[k].to_location;
        if (rows[k].uom)
            r.uom = (char *)rows[k].uom;
        if (rows[k].units) {
            rq[k].units = rows[k].units;
            rq[k].scale = rows[k].scale;
        }
        r.from_status = (Invsync__V1__StockStatus)rows[k].from_status;
        apply_m(f, &r, off++, 0);
    }
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 100, &l, errstr, sizeof(errstr)), IS_OK);
    for (size_t k = 0; k < N; k++) {
        const store_posting_t *pa = posting_of(&l, ids[k][0]), *pr = posting_of(&l, ids[k][1]);
        assert_non_null(pa);
        assert_non_null(pr);
        assert_null(pa->invalid);
        if (!rows[k].want) {
            if (!pr->cancel || pa != pr)
                fail_msg("row %zu: a matching reversal cancels its original", k);
            continue;
        }
        char want[256], w[200];
        snprintf(w, sizeof(w), rows[k].want, (int)k);
        snprintf(want, sizeof(want), "reversal does not match GI-%zu: %s", k, w);
        if (!pr->invalid || strcmp(pr->invalid, want) != 0)
            fail_msg("row %zu: got '%s', want '%s'", k, pr->invalid ? pr->invalid : "(valid)",
                     want);
        assert_false(pr->cancel);
        assert_false(pa->cancel); /* the original is posted */
        assert_int_equal(pr->n, 1);
    }
    store_posting_list_release(&l);
}

/*
 * A mismatched REVERSAL in a windowed run gets a posting of its own: the
 * movements before it are posted, those after it wait behind its failure
 * (they are not netted into the run before it). A `failed retry` brings it
 * back invalid: it never reaches the ERP.
 */
static void test_mismatched_reversal_is_cut_alone_and_stays_invalid_on_retry(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t a, r, b;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT,
                         bq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    a.tier = "periodic";
    apply_m(f, &a, 0, 5000);
    make_rev1(&r, &rq);
    r.tier = "periodic";
    rq.units = 6; /* set after make_rev1's make */
    apply_m(f, &r, 1, 5000);
    make(&b, &bq, "GI-2", "S1", "L1", 3);
    b.tier = "periodic";
    apply_m(f, &b, 2, 5000);
    is_policy_t *policy = netting_policy(f);
    assert_int_equal(store_fetch_due(f->s, policy, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].m[0]->movement_id, "GI-1");
    assert_true(l.items[0].net);
    assert_int_equal(l.items[0].n, 1);
    assert_null(l.items[0].invalid);
    assert_string_equal(l.items[1].m[0]->movement_id, "REV-1");
    assert_int_equal(l.items[1].n, 1);
    assert_string_equal(l.items[1].invalid,
                        "reversal does not match GI-1: quantity is 6, the original's is 5");
    assert_string_equal(l.items[2].m[0]->movement_id, "GI-2");
    assert_null(l.items[2].invalid);
    /* What the poster does: GI-1 posted, REV-1 failed, GI-2 back to the queue. */
    store_result_t res[3] = {{.outcome = STORE_POSTED, .document = "49", .lines = 1},
                             {.outcome = STORE_FAILED, .error = l.items[1].invalid},
                             {.outcome = STORE_REQUEUE}};
    char rev_posting[33];
    snprintf(rev_posting, sizeof(rev_posting), "%s", l.items[1].posting_id);
    assert_int_equal(store_mark_posting(f->s, &l, 5000, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_record_results(f->s, &l, res, 5000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_state(f, "GI-1", "posted");
    assert_state(f, "REV-1", "failed");
    assert_state(f, "GI-2", "queued");
    assert_int_equal(store_fetch_due(f->s, policy, 6000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0); /* the lot is held */
    store_posting_list_release(&l);
    assert_int_equal(
        store_failed_retry(f->s, rev_posting, "carol", "again", 7000, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(store_fetch_due(f->s, policy, 7000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].posting_id, rev_posting);
    assert_non_null(l.items[0].invalid);
    assert_string_equal(l.items[0].invalid,
                        "reversal does not match GI-1: quantity is 6, the original's is 5");
    store_posting_list_release(&l);
    is_policy_destroy(policy);
}

/*
 * A reversal cut while its original was unknown, sent, and due again after a
 * retryable ERP failure (a timeout: it may be in the ERP in part) is not
 * re-judged by an original that arrived since: only a posting that failed as
 * invalid is checked again when an operator retries it (above).
 */
static void test_retry_after_erp_failure_is_not_rejudged(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t r, o;
    Invsync__V1__Decimal rq = INVSYNC__V1__DECIMAL__INIT, oq = INVSYNC__V1__DECIMAL__INIT;
    make(&r, &rq, "REV-1", "S1", "L1", 1);
    r.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    r.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    r.reverses_movement_id = "GI-1";
    rq.units = 6;
    apply_m(f, &r, 0, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_null(l.items[0].invalid); /* GI-1 unknown: posted as it stands */
    store_result_t res = {.outcome = STORE_RETRY, .error = "timeout", .next_at_ms = 2000};
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_record_results(f->s, &l, &res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    /* GI-1 arrives, with another quantity than REV-1 carries. */
    make(&o, &oq, "GI-1", "S1", "L1", 2);
    apply_m(f, &o, 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 3000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1); /* REV-1's retry; GI-1 waits behind it in the lot */
    assert_string_equal(l.items[0].m[0]->movement_id, "REV-1");
    assert_null(l.items[0].invalid);
    store_posting_list_release(&l);
}

/*
 * A pair posted one by one and later re-queued by replay --apply (the ERP
 * lost both documents) is posted again, not cancelled: the trail says both
 * were posted, and the ERP must hold both again.
 */
static void test_requeued_pair_is_posted_again_not_cancelled(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t a, r;
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT;
    make(&a, &aq, "GI-1", "S1", "L1", 1);
    apply_m(f, &a, 0, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    post_all(f, &l, 1000);
    store_posting_list_release(&l);
    make_rev1(&r, &rq);
    apply_m(f, &r, 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    post_all(f, &l, 2000);
    store_posting_list_release(&l);
    assert_state(f, "GI-1", "posted");
    assert_state(f, "REV-1", "posted");
    /* What replay-apply's requeue does for a posting the ERP no longer has. */
    assert_int_equal(sqlite3_exec(store_db(f->s),
                                  "UPDATE movements SET state = 'queued', due_at = 3000,"
                                  " note = 're-queued by replay-apply: the ERP does not have"
                                  " posting ' || posting_id, posting_id = NULL;"
                                  "DELETE FROM postings;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(store_fetch_due(f->s, NULL, 3000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_false(l.items[0].cancel);
    assert_false(l.items[1].cancel);
    assert_string_equal(l.items[0].m[0]->movement_id, "GI-1");
    assert_string_equal(l.items[1].m[0]->movement_id, "REV-1");
    post_all(f, &l, 3000);
    store_posting_list_release(&l);
    assert_state(f, "GI-1", "posted");
    assert_state(f, "REV-1", "posted");
}

/* A REVERSAL GI-1/REV-1 pair at offsets 0 and 1 of invsync.S1.realtime, both due at 5000. */
static void apply_pair(fixture_t *f, Invsync__V1__Decimal *aq, Invsync__V1__Decimal *rq) {
    is_movement_t a, r;
    make(&a, aq, "GI-1", "S1", "L1", 1);
    apply_m(f, &a, 0, 5000);
    make_rev1(&r, rq);
    apply_m(f, &r, 1, 5000);
}

/* Shared group: a period of invsync.S1.realtime [0] fresh from `fresh_from`, Kafka
 * having accepted `committed` from this instance. */
static void shared_period(fixture_t *f, int64_t fresh_from, int64_t committed) {
    char errstr[256];
    store_set_shared(f->s, 1);
    assert_int_equal(store_begin_period(f->s, "invsync.S1.realtime", 0, fresh_from, 1000,
                                        &f->period, errstr, sizeof(errstr)),
                     IS_OK);
    assert_true(f->period > 0);
    if (committed >= 0)
        assert_int_equal(
            store_note_committed(f->s, &f->period, &committed, 1, errstr, sizeof(errstr)), IS_OK);
}

/* The pair's postings at 5000: 1 = cancelled together, 2 = both posted. */
static size_t pair_outcome(fixture_t *f) {
    store_posting_list_t l = {0};
    char errstr[256];
    Invsync__V1__Decimal aq = INVSYNC__V1__DECIMAL__INIT, rq = INVSYNC__V1__DECIMAL__INIT;
    apply_pair(f, &aq, &rq);
    assert_int_equal(store_fetch_due(f->s, NULL, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    size_t n = l.n;
    if (n == 1) {
        assert_true(l.items[0].cancel);
        assert_int_equal(l.items[0].n, 2);
    } else {
        assert_int_equal(n, 2); /* the ERP sees the mistake and its correction */
        assert_false(l.items[0].cancel);
        assert_false(l.items[1].cancel);
        assert_string_equal(l.items[0].m[0]->movement_id, "GI-1");
        assert_string_equal(l.items[1].m[0]->movement_id, "REV-1");
    }
    store_posting_list_release(&l);
    return n;
}

static void test_shared_group_cancels_a_pair_read_alone(void **state) {
    fixture_t *f = *state;
    shared_period(f, 0, 2);
    char errstr[256];
    int64_t older = 1; /* a late confirmation of an older commit never moves it back */
    assert_int_equal(store_note_committed(f->s, &f->period, &older, 1, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(pair_outcome(f), 1);
}

static void test_shared_group_posts_a_pair_not_yet_committed(void **state) {
    fixture_t *f = *state;
    shared_period(f, 0, 1); /* REV-1 (offset 1) may still go to another instance */
    assert_int_equal(pair_outcome(f), 2);
}

static void test_shared_group_posts_a_pair_an_earlier_owner_may_have_read(void **state) {
    fixture_t *f = *state;
    shared_period(f, 1, 2); /* GI-1 (offset 0) was in Kafka when the partition came here */
    assert_int_equal(pair_outcome(f), 2);
}

static void test_shared_group_posts_a_pair_read_without_a_period(void **state) {
    fixture_t *f = *state;
    store_set_shared(f->s, 1); /* f->period 0: the assignment could not be recorded */
    assert_int_equal(pair_outcome(f), 2);
}

/*
 * A backlog larger than one fetch loads (STORE_FETCH_MEMBERS movements): that
 * many periodic movements of one lot not yet due, then a due real-time one.
 * The first fetch takes the periodic ones, promoted by the trigger beyond
 * them; the trigger follows in the next cycle.
 */
static void test_fetch_loads_a_bounded_number_of_movements(void **state) {
    fixture_t *f = *state;
    enum { N = STORE_FETCH_MEMBERS + 1 };
    char last[32], promoted[64];
    snprintf(last, sizeof(last), "M%d", N);
    snprintf(promoted, sizeof(promoted), "promoted by %s (realtime)", last);
    is_movement_t *ms = calloc(N, sizeof(*ms));
    store_msg_t *sm = calloc(N, sizeof(*sm));
    char(*ids)[16] = calloc(N, sizeof(*ids));
    uint8_t **bufs = calloc(N, sizeof(*bufs));
    store_posting_list_t l = {0};
    store_batch_result_t res;
    char errstr[256];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "M%d", i + 1);
        make(&ms[i], &f->qty, ids[i], "S1", "L1", (uint64_t)i + 1);
        ms[i].tier = i + 1 < N ? "periodic" : "realtime";
        size_t len = invsync__v1__movement__get_packed_size(&ms[i]);
        bufs[i] = malloc(len);
        invsync__v1__movement__pack(&ms[i], bufs[i]);
        sm[i] = (store_msg_t){.kind = STORE_MSG_MOVEMENT,
                              .topic = "invsync.S1.realtime",
                              .offset = i,
                              .m = &ms[i],
                              .payload = bufs[i],
                              .payload_len = len,
                              .due_at = i + 1 < N ? 1800000 : 0};
    }
    assert_int_equal(store_apply_batch(f->s, sm, N, 1000, &res, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(res.received, N);

    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 500, &l, errstr, sizeof(errstr)), IS_OK);
    size_t taken = 0;
    for (size_t i = 0; i < l.n; i++)
        taken += l.items[i].n;
    assert_int_equal(taken, STORE_FETCH_MEMBERS);
    assert_string_equal(l.items[0].m[0]->movement_id, "M1");
    assert_string_equal(l.items[0].note, promoted);
    post_all(f, &l, 2000);
    store_posting_list_release(&l);

    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 500, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.items[0].n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, last);
    store_posting_list_release(&l);
    for (int i = 0; i < N; i++)
        free(bufs[i]);
    free(bufs);
    free(ids);
    free(sm);
    free(ms);
}

/* seq 1 missing; seq 2 received at 1000 (apply_m's receive time). */
static int gaps_skipped(fixture_t *f, int64_t through, int64_t not_before) {
    char errstr[256];
    int skipped = -1;
    int64_t sequences = -1;
    assert_int_equal(store_skip_gaps(f->s, through, 5000, not_before, &skipped, &sequences, errstr,
                                     sizeof(errstr)),
                     IS_OK);
    assert_int_equal(sequences, skipped); /* each gap here is one sequence (seq 1) */
    return skipped;
}

static void test_gap_skipped_only_after_timeout_under_the_current_assignment(void **state) {
    fixture_t *f = *state;
    apply(f, "M2", "S1", "L1", 2, 0);
    assert_int_equal(gaps_skipped(f, 5999, 0), 0); /* open 4,999 ms: too young */
    /* A new assignment at 4000: the gap gets a full timeout from then on. */
    assert_int_equal(gaps_skipped(f, 8999, 4000), 0);
    assert_int_equal(gaps_skipped(f, 9000, 4000), 1);
    assert_int_equal(gaps_skipped(f, 20000, 4000), 0); /* nothing left to skip */
}

static void test_reversal_not_cancelled_when_a_movement_between_used_its_stock(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    is_movement_t t1, t2, r;
    Invsync__V1__Decimal q1 = INVSYNC__V1__DECIMAL__INIT, q2 = INVSYNC__V1__DECIMAL__INIT,
                         q3 = INVSYNC__V1__DECIMAL__INIT;
    /* T1 brings stock to LINE-1, T2 takes it on, R reverses T1: cancelling T1 and R
     * would leave T2 without the stock it moved. */
    make(&t1, &q1, "T1", "S1", "L1", 1);
    t1.type = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER;
    t1.location = "WH-01";
    t1.to_location = "LINE-1";
    t1.tier = "periodic";
    apply_m(f, &t1, 0, 5000);
    make(&t2, &q2, "T2", "S1", "L1", 2);
    t2.type = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER;
    t2.location = "LINE-1";
    t2.to_location = "LINE-2";
    t2.tier = "periodic";
    apply_m(f, &t2, 1, 5000);
    r = t1;
    r.quantity = &q3;
    q3.units = 5;
    r.movement_id = "R1";
    r.sequence = 3;
    r.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    r.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER;
    r.reverses_movement_id = "T1";
    apply_m(f, &r, 2, 5000);
    assert_int_equal(store_fetch_due(f->s, NULL, 5000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    for (size_t i = 0; i < l.n; i++)
        assert_false(l.items[i].cancel);
    size_t movements = 0;
    for (size_t i = 0; i < l.n; i++)
        movements += l.items[i].n;
    assert_int_equal(movements, 3); /* all three go to the ERP, in order */
    assert_string_equal(l.items[0].m[0]->movement_id, "T1");
    store_posting_list_release(&l);
}

static void test_pause_resume_and_flush(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    int64_t n = 0;
    apply(f, "A1", "S1", "LA", 1, 0); /* realtime, due */
    assert_int_equal(
        store_pause(f->s, "S1", "*", "alice", "ERP maintenance", 1000, errstr, sizeof(errstr)),
        IS_OK);
    assert_true(store_is_paused(f->s, "S1", "realtime"));
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0);
    store_posting_list_release(&l);
    assert_int_equal(store_resume(f->s, "S1", "*", "alice", "done", 3000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(store_resume(f->s, "S1", "*", "alice", "again", 3000, errstr, sizeof(errstr)),
                     IS_ERR_NOT_FOUND);
    assert_int_equal(store_fetch_due(f->s, NULL, 3000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    store_posting_list_release(&l);
    /* Flush: a movement due in an hour becomes due now. */
    is_movement_t m;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    make(&m, &q, "B1", "S1", "LB", 2);
    m.tier = "shift";
    apply_m(f, &m, 1, 3600000);
    assert_int_equal(store_flush(f->s, "S1", "shift", "bob", "manual shift end", 4000, &n, errstr,
                                 sizeof(errstr)),
                     IS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 4000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    store_posting_list_release(&l);
}

/* Count the audit rows of one action. */
static int audit_rows(fixture_t *f, const char *action) {
    sqlite3_stmt *st;
    int n;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT count(*) FROM audit WHERE action = ?1", -1, &st,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* poster.time_ordered_ids_from is kept in the store. Moving it across a
 * movement that was put in a posting would give that posting, made again,
 * another id (the ERP would book it twice): refused, naming both values and
 * the movement. A move that crosses no posted movement is taken and
 * audited, and the store survives a reopen with the value it pinned. */
static void test_time_ordered_ids_from_is_pinned_in_the_store(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[512];
    const int64_t t0 = 1795000000000; /* 2026-11-18T11:06:40Z */
    is_movement_t a, b;
    Invsync__V1__Decimal aq, bq;

    /* Unset on a new store: kept as unset. Then a typo fixed before any
     * posting: both changes taken and audited. */
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, INT64_MAX, 1000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(audit_rows(f, "setting-changed"), 0);
    assert_int_equal(
        store_pin_time_ordered_ids_from(f->s, t0 + 86400000, 1000, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, t0, 1000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(audit_rows(f, "setting-changed"), 2);

    /* A, accepted an hour after the cut-over, is posted under a time-ordered id. */
    make(&a, &aq, "A", "S1", "L1", 1);
    a.event_time = t0 + 3600000;
    a.accepted_time = t0 + 3600000;
    apply_m(f, &a, 0, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    post_all(f, &l, 1000);
    store_posting_list_release(&l);

    /* Unset, or later than A: A's posting would change id. Refused. */
    errstr[0] = '\0';
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, INT64_MAX, 2000, errstr, sizeof(errstr)),
                     IS_ERR_INVALID);
    assert_non_null(strstr(errstr, "poster.time_ordered_ids_from is unset"));
    assert_non_null(strstr(errstr, "posted with 2026-11-18T11:06:40.000Z"));
    assert_non_null(strstr(errstr, "movement A "));
    assert_int_equal(
        store_pin_time_ordered_ids_from(f->s, t0 + 7200000, 2000, errstr, sizeof(errstr)),
        IS_ERR_INVALID);
    /* Earlier than the pinned value, with nothing posted in between: taken. */
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, t0 - 1000, 2000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(audit_rows(f, "setting-changed"), 3);

    /* B, accepted before every cut-over so far, posted with the hash id:
     * now an earlier cut-over would cross it. */
    make(&b, &bq, "B", "S1", "L2", 2);
    b.event_time = t0 - 5000;
    b.accepted_time = t0 - 5000;
    apply_m(f, &b, 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    post_all(f, &l, 1000);
    store_posting_list_release(&l);
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, t0 - 9000, 3000, errstr, sizeof(errstr)),
                     IS_ERR_INVALID);
    assert_non_null(strstr(errstr, "movement B "));

    /* Reopened: the pinned value holds; the same value is fine. */
    store_close(f->s);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, INT64_MAX, 4000, errstr, sizeof(errstr)),
                     IS_ERR_INVALID);
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, t0 - 1000, 4000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(audit_rows(f, "setting-changed"), 3);

    /* A store an older version ran (no settings row): what it ran with is
     * not known, so the configured value is taken, posted movements or not
     * (refusing would stop every upgrade that had the setting). From then
     * on it is kept. */
    assert_int_equal(sqlite3_exec(store_db(f->s), "DELETE FROM settings", NULL, NULL, NULL),
                     SQLITE_OK);
    /* A (t0 + 1 h) posted, and the hash ids before: an unknown store takes t0. */
    assert_int_equal(store_pin_time_ordered_ids_from(f->s, t0, 5000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(audit_rows(f, "setting-changed"), 3);
    assert_int_equal(
        store_pin_time_ordered_ids_from(f->s, t0 + 7200000, 5000, errstr, sizeof(errstr)),
        IS_ERR_INVALID);
    assert_non_null(strstr(errstr, "movement A "));
    assert_non_null(strstr(errstr, "set it back to 2026-11-18T11:06:40.000Z"));
}

static void test_failed_retry_and_skip_are_audited(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    store_result_t res[2];
    char errstr[256], pid_a[33], pid_b[33];
    apply(f, "A1", "S1", "LA", 1, 0);
    apply(f, "B1", "S1", "LB", 2, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    snprintf(pid_a, sizeof(pid_a), "%s", l.items[0].posting_id);
    snprintf(pid_b, sizeof(pid_b), "%s", l.items[1].posting_id);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    memset(res, 0, sizeof(res));
    res[0].outcome = res[1].outcome = STORE_FAILED;
    res[0].error = res[1].error = "unknown material";
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_int_equal(
        store_failed_retry(f->s, pid_a, "carol", "master data fixed", 2000, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(store_failed_skip(f->s, pid_b, "carol", "posted by hand in the ERP", 2000,
                                       errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(store_failed_skip(f->s, pid_b, "carol", "twice", 2000, errstr, sizeof(errstr)),
                     IS_ERR_NOT_FOUND);
    assert_state(f, "A1", "retry");
    assert_state(f, "B1", "skipped");
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].posting_id, pid_a);
    store_posting_list_release(&l);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT actor, action, subject, detail FROM audit"
                                        " WHERE action IN ('retry', 'skip') ORDER BY id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "carol");
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "retry");
    assert_string_equal((const char *)sqlite3_column_text(st, 2), pid_a);
    assert_non_null(strstr((const char *)sqlite3_column_text(st, 3), "master data fixed"));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "skip");
    sqlite3_finalize(st);
}

static void test_audit_chain_detects_edit_and_delete(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    int64_t rows = 0, bad = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            store_audit(f->s, 1000 + i, "test", "posted", "P", "{\"n\":1}", errstr, sizeof(errstr)),
            IS_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(rows, 5);
    /* Edit row 3. */
    assert_int_equal(sqlite3_exec(store_db(f->s), "UPDATE audit SET actor = 'mallory' WHERE id = 3",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)),
                     IS_ERR_CONFLICT);
    assert_int_equal(bad, 3);
    assert_int_equal(sqlite3_exec(store_db(f->s), "UPDATE audit SET actor = 'test' WHERE id = 3",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    /* Delete row 2: row 3 no longer follows. */
    assert_int_equal(
        sqlite3_exec(store_db(f->s), "DELETE FROM audit WHERE id = 2", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)),
                     IS_ERR_CONFLICT);
    assert_int_equal(bad, 3);
}

/* `at` is hashed as an integer: a text '1002abc' (or a blob) in row 3
 * would read as 1002 and hash alike, so verify flags any type but integer. */
static void test_audit_verify_flags_a_non_integer_at(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    int64_t rows = 0, bad = 0;
    static const char *const edits[] = {"'1002abc'", "x'31303032'"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            store_audit(f->s, 1000 + i, "test", "posted", "P", "{\"n\":1}", errstr, sizeof(errstr)),
            IS_OK);
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "UPDATE audit SET at = %s WHERE id = 3", edits[i]);
        assert_int_equal(sqlite3_exec(store_db(f->s), sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)),
                         IS_ERR_CONFLICT);
        assert_int_equal(bad, 3);
        assert_int_equal(rows, 2);
        assert_non_null(strstr(errstr, "audit row 3 was altered ('at' is "));
        assert_non_null(strstr(errstr, "not an integer"));
    }
    /* The integer back: the chain verifies again (the hash format is unchanged). */
    assert_int_equal(
        sqlite3_exec(store_db(f->s), "UPDATE audit SET at = 1002 WHERE id = 3", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(rows, 5);
}

static void test_audit_rows_from_a_callers_own_transaction_keep_the_chain(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    int64_t rows = 0, bad = 0;
    /* Like replay --apply: its own BEGIN ... COMMIT around an audit row. */
    assert_int_equal(is_db_begin(store_db(f->s)), IS_OK);
    assert_int_equal(
        store_audit(f->s, 1000, "qa", "replay-apply", "S1", NULL, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(is_db_commit(store_db(f->s)), IS_OK);
    /* Then the store's own transactions append more. */
    assert_int_equal(store_pause(f->s, "S1", "*", "alice", "x", 2000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(store_audit(f->s, 3000, "poster", "posted", "P", NULL, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(rows, 3);
}

static void test_audit_chain_detects_removed_tail(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    int64_t rows = 0, bad = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            store_audit(f->s, 1000 + i, "test", "flush", "S/T", NULL, errstr, sizeof(errstr)),
            IS_OK);
    assert_int_equal(
        sqlite3_exec(store_db(f->s), "DELETE FROM audit WHERE id = 3", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)),
                     IS_ERR_CONFLICT);
    assert_non_null(strstr(errstr, "removed from the end"));
}

/* Deleting every audit row and the head needs no hash at all: the postings the
 * trail should hold give it away. An empty trail of a store with nothing
 * settled is still fine (a new store). */
static void test_audit_chain_detects_a_trail_deleted_whole(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    int64_t rows = 0, bad = 0;
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    apply(f, "W1", "S1", "LW", 1, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    post_all(f, &l, 1000);
    store_posting_list_release(&l);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    assert_true(rows >= 1);
    assert_int_equal(
        sqlite3_exec(store_db(f->s), "DELETE FROM audit; DELETE FROM audit_head", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)),
                     IS_ERR_CONFLICT);
    assert_int_equal(bad, 1);
    assert_non_null(strstr(errstr, "the audit trail is empty but the store holds 1 settled"));
}

static void test_retries_of_one_lot_go_in_acceptance_order(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    store_result_t res[2];
    char errstr[256];
    /* A crash left both postings of a lot unresolved; both wait to retry "now". */
    apply(f, "Q1", "S1", "LA", 1, 0);
    apply(f, "R1", "S1", "LA", 2, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    memset(res, 0, sizeof(res));
    res[0].outcome = res[1].outcome = STORE_RETRY;
    res[0].next_at_ms = 2000; /* the later posting would come first by time */
    res[1].next_at_ms = 1500;
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    store_posting_list_release(&l);
    assert_int_equal(store_fetch_due(f->s, NULL, 1800, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0); /* R1 is due but Q1 is not done */
    store_posting_list_release(&l);
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "Q1");
    store_posting_list_release(&l);
}

/*
 * More due lots than one trigger page (1,024 rows), all due at the same
 * millisecond: one fetch pages through all of them (keyset paging must not
 * skip rows that share a due time), and a lot met on two pages is taken once.
 */
static void test_fetch_pages_through_lots_due_at_once(void **state) {
    fixture_t *f = *state;
    char errstr[256], id[32], lot[32];
    store_posting_list_t l = {0};
    const int n = 1100;
    for (int i = 1; i <= n; i++) {
        snprintf(id, sizeof(id), "K%d", i);
        /* Movement 1 and movement 1,050 share lot L-SHARED; the rest have their own. */
        if (i == 1 || i == 1050)
            snprintf(lot, sizeof(lot), "L-SHARED");
        else
            snprintf(lot, sizeof(lot), "L%d", i);
        is_movement_t m;
        make(&m, &f->qty, id, "S1", lot, (uint64_t)i);
        char *idc = strdup(id), *lotc = strdup(lot); /* kept until teardown via bufs */
        m.movement_id = idc;
        m.lot = lotc;
        apply_m(f, &m, i - 1, 500);
        f->bufs[f->n_bufs++] = (uint8_t *)idc;
        f->bufs[f->n_bufs++] = (uint8_t *)lotc;
        if (f->n_bufs > 60) { /* the fixture keeps 64: free what is stored already */
            for (size_t k = 0; k < f->n_bufs; k++)
                free(f->bufs[k]);
            f->n_bufs = 0;
        }
    }
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 5000, &l, errstr, sizeof(errstr)), IS_OK);
    size_t movements = 0, shared = 0;
    char *seen = calloc((size_t)n + 1, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < l.n; i++)
        for (size_t k = 0; k < l.items[i].n; k++) {
            int num = atoi(l.items[i].m[k]->movement_id + 1);
            assert_true(num >= 1 && num <= n);
            assert_int_equal(seen[num], 0); /* no movement twice */
            seen[num] = 1;
            movements++;
            if (strcmp(l.items[i].lot_key, "S1/RM-1/L-SHARED") == 0)
                shared++;
        }
    free(seen);
    assert_int_equal(movements, (size_t)n);
    assert_int_equal(shared, 2);
    store_posting_list_release(&l);
}

/* The audit detail of each posted posting is JSON with the ERP's document as
 * given, also when the document needs escaping (the fast path must not be the
 * only one). */
static void test_posted_audit_detail_is_json(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    store_posting_list_t l = {0};
    store_result_t res[2];
    static const char *const docs[2] = {"4900000001", "DOC \"7\" \\ \xc3\xbc\ttab"};
    apply(f, "D1", "S1", "LOT-D1", 1, 0);
    apply(f, "D2", "S1", "LOT-D2", 2, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    memset(res, 0, sizeof(res));
    for (size_t i = 0; i < 2; i++) {
        res[i].outcome = STORE_POSTED;
        res[i].document = docs[i];
        res[i].lines = 1;
    }
    assert_int_equal(store_record_results(f->s, &l, res, 1000, errstr, sizeof(errstr)), IS_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT subject, detail FROM audit WHERE action = 'posted'"
                                        " ORDER BY id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), l.items[i].posting_id);
        const char *detail = (const char *)sqlite3_column_text(st, 1);
        json_error_t jerr;
        json_t *d = json_loads(detail, 0, &jerr);
        assert_non_null(d);
        assert_string_equal(json_string_value(json_object_get(d, "document")), docs[i]);
        assert_string_equal(json_string_value(json_object_get(d, "site")), "S1");
        assert_string_equal(json_string_value(json_object_get(d, "tier")), "realtime");
        assert_int_equal(json_integer_value(json_object_get(d, "movements")), 1);
        assert_int_equal(json_integer_value(json_object_get(d, "lines")), 1);
        assert_non_null(json_object_get(d, "policy_version"));
        /* Exactly what jansson writes for the same object. */
        char *again = json_dumps(d, JSON_COMPACT);
        assert_string_equal(detail, again);
        free(again);
        json_decref(d);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    store_posting_list_release(&l);
}

/* The chain's hash definition is fixed: databases written by earlier versions
 * must still verify. Known answer computed here from the documented layout
 * (prev \x1f id \x1f at \x1f actor \x1f action \x1f subject \x1f detail), for a
 * short detail and for one longer than any stack buffer. */
static void test_audit_hash_is_the_documented_digest(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    char *longd = malloc(5001);
    assert_non_null(longd);
    memset(longd, 'x', 5000);
    longd[5000] = '\0';
    const char *details[3] = {"{\"n\":1}", NULL, longd};
    char prev[65] = "0000000000000000000000000000000000000000000000000000000000000000";
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_audit(f->s, 1000 + i, "tester", "posted", "P", details[i], errstr,
                                     sizeof(errstr)),
                         IS_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT id, at, hash FROM audit ORDER BY id", -1, &st,
                                        NULL),
                     SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        size_t len = 6000;
        char *buf = malloc(len);
        assert_non_null(buf);
        int n = snprintf(buf, len, "%s\x1f%lld\x1f%lld\x1ftester\x1fposted\x1fP\x1f%s", prev,
                         (long long)sqlite3_column_int64(st, 0),
                         (long long)sqlite3_column_int64(st, 1), details[i] ? details[i] : "");
        assert_true(n > 0 && (size_t)n < len);
        uint8_t digest[IS_SHA256_LEN];
        char hex[IS_SHA256_HEX_LEN + 1];
        is_sha256(buf, (size_t)n, digest);
        is_hex(digest, IS_SHA256_LEN, hex);
        assert_string_equal((const char *)sqlite3_column_text(st, 2), hex);
        memcpy(prev, hex, sizeof(prev));
        free(buf);
    }
    sqlite3_finalize(st);
    int64_t rows = 0, bad = 0;
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(rows, 3);
    free(longd);
}

/* The statements about durability a connection ran, in order (sqlite3_trace_v2). */
typedef struct sync_trace {
    char sql[32][48];
    int n;
} sync_trace_t;

static int sync_trace_cb(unsigned type, void *ctx, void *p, void *x) {
    sync_trace_t *t = ctx;
    const char *sql = sqlite3_sql(p);
    (void)type;
    (void)x;
    if (sql && t->n < 32 &&
        (strncmp(sql, "PRAGMA synchronous", 18) == 0 || strncmp(sql, "BEGIN", 5) == 0 ||
         strcmp(sql, "COMMIT") == 0))
        snprintf(t->sql[t->n++], sizeof(t->sql[0]), "%s", sql);
    return 0;
}

static int sync_level(store_t *s) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(s), "PRAGMA synchronous", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int level = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return level;
}

static void assert_trace(const sync_trace_t *t, const char *const *want, int n) {
    for (int i = 0; i < n && i < t->n; i++)
        assert_string_equal(t->sql[i], want[i]);
    assert_int_equal(t->n, n);
}

/* On a synchronous=FULL store, a mark commits with its fsync (start-up
 * recovery relies on it) and the record of outcomes without (losing it is
 * the state a crash leaves); the connection is FULL again afterwards, and a
 * mark restores FULL itself if a record could not. */
static void test_record_commits_without_fsync_marks_with_it(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    store_posting_list_t l = {0};
    sync_trace_t t = {0};
    store_close(f->s);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_FULL, &f->s, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(sync_level(f->s), 2);
    apply(f, "M1", "S1", "L1", 1, 1);
    apply(f, "M2", "S1", "L2", 2, 2);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 1, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);

    sqlite3_trace_v2(store_db(f->s), SQLITE_TRACE_STMT, sync_trace_cb, &t);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    static const char *const mark[] = {"BEGIN IMMEDIATE", "COMMIT"};
    assert_trace(&t, mark, 2);
    t.n = 0;
    store_result_t res = {.outcome = STORE_POSTED, .document = "4900000001", .lines = 1};
    assert_int_equal(store_record_results(f->s, &l, &res, 1000, errstr, sizeof(errstr)), IS_OK);
    static const char *const record[] = {"PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE", "COMMIT",
                                         "PRAGMA synchronous=FULL"};
    assert_trace(&t, record, 4);
    sqlite3_trace_v2(store_db(f->s), 0, NULL, NULL);
    assert_int_equal(sync_level(f->s), 2);
    assert_state(f, "M1", "posted");
    store_posting_list_release(&l);

    /* A record that could not restore FULL: the next mark does it first. */
    assert_int_equal(sqlite3_exec(store_db(f->s), "PRAGMA synchronous=NORMAL", NULL, NULL, NULL),
                     SQLITE_OK);
    f->s->sync_relaxed = 1;
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 1, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    t.n = 0;
    sqlite3_trace_v2(store_db(f->s), SQLITE_TRACE_STMT, sync_trace_cb, &t);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    sqlite3_trace_v2(store_db(f->s), 0, NULL, NULL);
    static const char *const restored[] = {"PRAGMA synchronous=FULL", "BEGIN IMMEDIATE", "COMMIT"};
    assert_trace(&t, restored, 3);
    assert_int_equal(sync_level(f->s), 2);
    store_posting_list_release(&l);
}

/* A store opened without fsyncs (NORMAL, OFF) is left at its level. */
static void test_record_keeps_a_relaxed_store_as_it_is(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    store_posting_list_t l = {0};
    apply(f, "M1", "S1", "L1", 1, 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    post_all(f, &l, 1000);
    store_posting_list_release(&l);
    assert_int_equal(sync_level(f->s), 0); /* the fixture's IS_DB_SYNC_OFF */
}

/* Each poster query reads the partial index meant for it, never the whole
 * table: a query that spells an index's WHERE term differently would
 * silently scan every movement ever received (store.h, STORE_QUEUED). */
static void test_poster_queries_read_the_backlog_indexes(void **state) {
    fixture_t *f = *state;
    static const struct {
        int id;
        const char *index;
    } want[] = {
        {SQ_TRIGGERS, "USING INDEX movements_queued"},
        {SQ_LOT_MEMBERS, "USING INDEX movements_lot_queued"},
        {SQ_LOT_DUE_AFTER, "USING INDEX movements_lot_queued"},
        {SQ_LOT_HELD, "USING INDEX movements_lot_open"},
        {SQ_DUE_RETRY, "SEARCH p USING INDEX postings_open"},
        {SQ_DUE_RETRY, "USING INDEX movements_lot_open"},
        {SQ_MOVEMENTS_STATE, "INDEX movements_posting"},
        {SQ_INFLIGHT, "USING INDEX postings_open"},
        {SQ_ORIGINAL, "USING INDEX sqlite_autoindex_movements_1"},
        {SQ_PRIOR_REVERSAL, "USING INDEX movements_reverses"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char sql[2048], plan[2048] = "";
        sqlite3_stmt *st;
        snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", store_post_sql[want[i].id]);
        assert_int_equal(sqlite3_prepare_v2(store_db(f->s), sql, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            strncat(plan, (const char *)sqlite3_column_text(st, 3),
                    sizeof(plan) - strlen(plan) - 2);
            strcat(plan, ";");
        }
        sqlite3_finalize(st);
        if (!strstr(plan, want[i].index) || strstr(plan, "SCAN m") || strstr(plan, "SCAN p"))
            fail_msg("statement %d: plan '%s' does not use %s", want[i].id, plan, want[i].index);
    }
}

/* A store written before migration 3 (the version-2 indexes, postings keyed
 * by their id) is upgraded in place on open: every movement and posting is
 * kept, postings move to a rowid table with a unique id (migration 5), the
 * backlog is found through the new indexes, and a lot with open postings
 * stays held. */
static void test_version_2_store_upgrades_in_place(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    store_posting_list_t l = {0};
    store_counts_t before, after;
    apply(f, "M1", "S1", "L1", 1, 1);
    apply(f, "M2", "S1", "L2", 2, 2);
    apply(f, "M3", "S1", "L2", 3, 3);
    apply(f, "M4", "S1", "L3", 4, 4);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 1, &l, errstr, sizeof(errstr)), IS_OK);
    post_all(f, &l, 1000); /* M1 posted */
    store_posting_list_release(&l);
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 1, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_mark_posting(f->s, &l, 1000, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);       /* lot L2: M2 and M3, one posting each (real-time) */
    store_posting_list_release(&l); /* left `posting`, as after a crash */
    assert_int_equal(store_counts(f->s, &before, errstr, sizeof(errstr)), IS_OK);
    /* Back to version 2: its indexes, its schema_version. */
    assert_int_equal(
        sqlite3_exec(store_db(f->s),
                     "DROP INDEX movements_queued; DROP INDEX movements_lot_queued;"
                     "DROP INDEX movements_lot_open; DROP INDEX movements_posting;"
                     "DROP INDEX postings_open; DROP INDEX movements_rare;"
                     "DROP INDEX postings_skipped; DROP INDEX postings_doc;"
                     "DROP INDEX movements_reverses; ALTER TABLE movements DROP COLUMN reverses;"
                     /* version 1's postings: keyed by the posting id */
                     "CREATE TABLE postings_v1(posting_id TEXT PRIMARY KEY, site TEXT NOT NULL,"
                     "  tier TEXT NOT NULL, lot_key TEXT NOT NULL, state TEXT NOT NULL,"
                     "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER, erp_doc TEXT,"
                     "  last_error TEXT, lines INTEGER, created_at INTEGER NOT NULL,"
                     "  updated_at INTEGER NOT NULL) WITHOUT ROWID;"
                     "INSERT INTO postings_v1 SELECT posting_id, site, tier, lot_key, state,"
                     "  attempts, next_at, erp_doc, last_error, lines, created_at, updated_at"
                     "  FROM postings;"
                     "DROP TABLE postings; ALTER TABLE postings_v1 RENAME TO postings;"
                     "CREATE INDEX postings_doc ON postings(erp_doc);"
                     "CREATE INDEX movements_trigger ON movements(state, due_at);"
                     "CREATE INDEX movements_lot ON movements(lot_key, state, producer_id, seq);"
                     "CREATE INDEX movements_posting ON movements(posting_id);"
                     "CREATE INDEX postings_state ON postings(state, next_at);"
                     "DROP TABLE seq_fills; DROP TABLE settings;"
                     "DROP TABLE posting_chunks; DROP TABLE chunk_movements;"
                     "DELETE FROM schema_version WHERE version > 2;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    store_close(f->s);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(is_db_schema_version(store_db(f->s)), 10);
    assert_int_equal(store_counts(f->s, &after, errstr, sizeof(errstr)), IS_OK);
    assert_memory_equal(&before, &after, sizeof(before));
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT count(*) FROM sqlite_master WHERE name IN"
                                        " ('movements_trigger', 'movements_lot', 'postings_state')",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    /* Version 5: postings in a rowid table, in the order they were made, the
     * posting id unique; every posting kept with its state and document. */
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT group_concat(state || ':' || (erp_doc IS NOT NULL),"
                                        " ',') FROM (SELECT state, erp_doc FROM postings"
                                        " ORDER BY created_at, state)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "posted:1,posting:0,posting:0");
    sqlite3_finalize(st);
    assert_int_not_equal(sqlite3_exec(store_db(f->s),
                                      "INSERT INTO postings(posting_id, site, tier, lot_key,"
                                      " state, created_at, updated_at) SELECT posting_id, site,"
                                      " tier, lot_key, state, 0, 0 FROM postings LIMIT 1",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    /* M4 is due; lot L2 is held by its open postings. */
    assert_int_equal(store_fetch_due(f->s, NULL, 1000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "M4");
    store_posting_list_release(&l);
    assert_int_equal(store_fetch_inflight(f->s, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].m[0]->movement_id, "M2");
    assert_string_equal(l.items[1].m[0]->movement_id, "M3");
    store_posting_list_release(&l);
    assert_state(f, "M1", "posted");
}

/* One text value of the store ("" for NULL or no row). */
static void store_text(fixture_t *f, const char *sql, char *out, size_t size) {
    sqlite3_stmt *st;
    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s), sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* Migration 7 on a version-6 store: movements gain `reverses` and its
 * index. A REVERSAL stored before keeps NULL (not backfilled from its
 * payload: not guarded by the reversed-once check, only by its original's
 * state); one stored after has its original's id, other types NULL. */
static void test_version_6_store_gains_the_reversed_movement(void **state) {
    fixture_t *f = *state;
    char errstr[256], text[64];
    apply_gi1_and_its_reversal(f);
    store_text(f, "SELECT reverses FROM movements WHERE movement_id = 'REV-1'", text, sizeof(text));
    assert_string_equal(text, "GI-1");
    assert_int_equal(sqlite3_exec(store_db(f->s),
                                  "DROP INDEX movements_reverses;"
                                  "ALTER TABLE movements DROP COLUMN reverses;"
                                  "DROP TABLE seq_fills; DROP TABLE settings;"
                                  "DROP TABLE posting_chunks; DROP TABLE chunk_movements;"
                                  "DELETE FROM schema_version WHERE version > 6;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    store_close(f->s);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(is_db_schema_version(store_db(f->s)), 10);
    store_text(f, "SELECT count(*) FROM sqlite_master WHERE name = 'movements_reverses'", text,
               sizeof(text));
    assert_string_equal(text, "1");
    store_text(f, "SELECT count(*) FROM movements WHERE reverses IS NOT NULL", text, sizeof(text));
    assert_string_equal(text, "0");
    is_movement_t r;
    Invsync__V1__Decimal rq = INVSYNC__V1__DECIMAL__INIT;
    make_rev1(&r, &rq);
    r.movement_id = "REV-2";
    r.sequence = 3;
    apply_m(f, &r, 2, 5000);
    store_text(f,
               "SELECT group_concat(movement_id || '=' || coalesce(reverses, '-'), ',')"
               " FROM (SELECT movement_id, reverses FROM movements ORDER BY id)",
               text, sizeof(text));
    assert_string_equal(text, "GI-1=-,REV-1=-,REV-2=GI-1");
}

/* The status counts (polled by the status page every few seconds) read
 * indexes, never a table's rows: with a million movements a table scan reads
 * every payload. */
static void test_status_counts_read_indexes_only(void **state) {
    fixture_t *f = *state;
    char sql[4096];
    sqlite3_stmt *st;
    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", store_counts_sql);
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s), sql, -1, &st, NULL), SQLITE_OK);
    int lines = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 3);
        lines++;
        if ((strncmp(d, "SCAN movements", 14) == 0 || strncmp(d, "SCAN postings", 13) == 0) &&
            !strstr(d, "INDEX"))
            fail_msg("store_counts reads a whole table: '%s'", d);
    }
    sqlite3_finalize(st);
    assert_true(lines > 10);
}

/*
 * A movement id received again: the same MES content (whatever the
 * producer's stamps) is a duplicate; other content is a conflict. The first
 * version stays in both cases; a conflict is counted and audited, never
 * silently dropped (an MES resend changed after the producer's
 * outbox.retention forgot the first, or sent through another producer).
 */
static void test_same_id_other_content_is_a_conflict_not_a_duplicate(void **state) {
    fixture_t *f = *state;
    char text[512];
    is_movement_t m;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    assert_int_equal(apply(f, "M1", "S1", "L1", 1, 10).received, 1);
    /* Re-accepted by a producer: new stamps, same content. */
    make(&m, &q, "M1", "S1", "L1", 9);
    m.accepted_time = 777;
    store_batch_result_t r = apply_m(f, &m, 11, 0);
    assert_int_equal(r.duplicates, 1);
    assert_int_equal(r.conflicts, 0);
    /* Another quantity under the same id. */
    make(&m, &q, "M1", "S1", "L1", 10);
    q.units = 6;
    r = apply_m(f, &m, 12, 0);
    assert_int_equal(r.duplicates, 0);
    assert_int_equal(r.conflicts, 1);
    assert_string_equal(r.conflict_id, "M1");
    store_text(f, "SELECT subject || ' ' || detail FROM audit WHERE action = 'movement-conflict'",
               text, sizeof(text));
    assert_string_equal(text, "M1 {\"source_system\":\"MES\",\"site\":\"S1\",\"topic\":"
                              "\"invsync.S1.realtime\",\"partition\":0,\"offset\":12}");
    store_text(f, "SELECT count(*) FROM movements", text, sizeof(text));
    assert_string_equal(text, "1");
}

/*
 * An MES resend the producer accepted again (outbox.retention had forgotten
 * the first) comes with a new sequence: nothing is applied for it, but its
 * sequence closes the watermark, so the next movement does not wait out
 * consume.gap_timeout and nothing is counted as lost. A plain redelivery
 * (same sequence) adds nothing.
 */
static void test_resend_with_a_new_sequence_closes_the_watermark(void **state) {
    fixture_t *f = *state;
    char text[64], errstr[256];
    is_movement_t m;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    assert_int_equal(apply(f, "M1", "S1", "L1", 1, 10).received, 1);
    assert_int_equal(apply(f, "M2", "S1", "L1", 2, 11).received, 1);
    assert_int_equal(apply(f, "M1", "S1", "L1", 1, 12).duplicates, 1); /* redelivery */
    make(&m, &q, "M1", "S1", "L1", 3);                                 /* re-accepted */
    assert_int_equal(apply_m(f, &m, 13, 0).duplicates, 1);
    assert_int_equal(apply(f, "M4", "S1", "L1", 4, 14).received, 1);
    store_text(f, "SELECT contiguous FROM watermarks WHERE producer_id = 'P1' AND site = 'S1'",
               text, sizeof(text));
    assert_string_equal(text, "4");
    store_text(f, "SELECT group_concat(seq) FROM seq_fills", text, sizeof(text));
    assert_string_equal(text, "3");
    int skipped = -1;
    int64_t sequences = -1;
    assert_int_equal(
        store_skip_gaps(f->s, 1000000, 5000, 0, &skipped, &sequences, errstr, sizeof(errstr)),
        IS_OK);
    assert_int_equal(skipped, 0);
    assert_int_equal(sequences, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_id_other_content_is_a_conflict_not_a_duplicate,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_with_a_new_sequence_closes_the_watermark, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dedup_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_message_far_ahead_opens_no_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_copy_does_not_keep_the_movement_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watermark_gap_holds_later_movements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_ordered_ids_from_is_pinned_in_the_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_posting_ids_are_deterministic_and_time_ordered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_posting_holds_its_lot_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_holds_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_waits_then_comes_back_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requeue_undoes_the_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_message_advances_watermark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_then_realtime_promotes_earlier, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_inside_window_cancels_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_reversal_comes_along_with_its_due_original,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_forward_takes_only_the_next_reversal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pause_of_a_later_member_does_not_hold_a_due_original,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_reversal_retried_after_a_crash_stays_invalid,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_paused_retries_do_not_starve_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reversal_is_checked_against_its_original, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_mismatched_reversal_is_cut_alone_and_stays_invalid_on_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_erp_failure_is_not_rejudged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_requeued_pair_is_posted_again_not_cancelled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shared_group_cancels_a_pair_read_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shared_group_posts_a_pair_not_yet_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_group_posts_a_pair_an_earlier_owner_may_have_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_group_posts_a_pair_read_without_a_period, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_gap_skipped_only_after_timeout_under_the_current_assignment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_loads_a_bounded_number_of_movements, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_reversal_not_cancelled_when_a_movement_between_used_its_stock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume_and_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_retry_and_skip_are_audited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain_detects_edit_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_verify_flags_a_non_integer_at, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain_detects_removed_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain_detects_a_trail_deleted_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_audit_rows_from_a_callers_own_transaction_keep_the_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_of_one_lot_go_in_acceptance_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fetch_pages_through_lots_due_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_posted_audit_detail_is_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_hash_is_the_documented_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_commits_without_fsync_marks_with_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_record_keeps_a_relaxed_store_as_it_is, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_poster_queries_read_the_backlog_indexes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_version_2_store_upgrades_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_6_store_gains_the_reversed_movement, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status_counts_read_indexes_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_posting_traces_each_chunk_document, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
