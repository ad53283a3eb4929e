/*
 * test_store_prune.c — store.retention (store_prune.c): which movements go
 * and which stay, that the watermark and the audit chain do not notice, and
 * the pruned horizon that keeps a redelivered old movement from being posted
 * a second time (store_apply_batch, replay_apply).
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

#include "admin.h"
#include "store.h"
#include "store_int.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    store_t *s;
    uint8_t *bufs[64];
    size_t n_bufs;
    Invsync__V1__Decimal qty;
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_prune.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    assert_int_equal(store_open(f->path, IS_DB_SYNC_OFF, &f->s, errstr, sizeof(errstr)), IS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    char cmd[160];
    store_close(f->s);
    for (size_t i = 0; i < f->n_bufs; i++)
        free(f->bufs[i]);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A stamped GOODS_ISSUE of producer P1, site S1, lot <lot>, accepted at accepted. */
static void make(fixture_t *f, is_movement_t *m, const char *id, const char *lot, uint64_t seq,
                 int64_t accepted) {
    invsync__v1__movement__init(m);
    invsync__v1__decimal__init(&f->qty);
    f->qty.units = 5;
    m->movement_id = (char *)id;
    m->source_system = "MES";
    m->site = "S1";
    m->type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    m->material = "RM-1";
    m->lot = (char *)lot;
    m->location = "LINE-1";
    m->quantity = &f->qty;
    m->uom = "EA";
    m->order_id = "ORD-1";
    m->tier = "realtime";
    m->producer_id = "P1";
    m->sequence = seq;
    m->accepted_time = accepted;
}

/* Apply one message of kind (MOVEMENT or DEAD), due at once; *parked_at set
 * when the store parked it. */
static store_batch_result_t apply_kind(fixture_t *f, store_msg_kind_t kind, const char *id,
                                       const char *lot, uint64_t seq, int64_t accepted,
                                       unsigned char *parked_at) {
    is_movement_t m;
    store_msg_t sm;
    unsigned char parked = 0;
    store_batch_result_t res;
    char errstr[256];
    make(f, &m, id, lot, seq, accepted);
    size_t len = invsync__v1__movement__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    invsync__v1__movement__pack(&m, buf);
    f->bufs[f->n_bufs++] = buf;
    memset(&sm, 0, sizeof(sm));
    sm.kind = kind;
    sm.topic = "invsync.S1.realtime";
    sm.offset = (int64_t)seq;
    sm.m = &m;
    sm.payload = buf;
    sm.payload_len = len;
    sm.reason = kind == STORE_MSG_DEAD ? "invalid movement: test" : NULL;
    assert_int_equal(
        store_apply_batch_parked(f->s, &sm, 1, 1000, &parked, &res, errstr, sizeof(errstr)), IS_OK);
    if (parked_at)
        *parked_at = parked;
    return res;
}

static store_batch_result_t apply(fixture_t *f, const char *id, const char *lot, uint64_t seq,
                                  int64_t accepted) {
    return apply_kind(f, STORE_MSG_MOVEMENT, id, lot, seq, accepted, NULL);
}

/* Post everything due, each posting accepted by the ERP. Returns how many. */
static size_t post_all(fixture_t *f) {
    store_posting_list_t l = {0};
    store_result_t res[32];
    char errstr[256];
    assert_int_equal(store_fetch_due(f->s, NULL, 2000, 32, &l, errstr, sizeof(errstr)), IS_OK);
    size_t n = l.n;
    memset(res, 0, sizeof(res));
    for (size_t i = 0; i < n; i++) {
        res[i].outcome = STORE_POSTED;
        res[i].document = "4900000001";
        res[i].lines = 1;
    }
    if (n) {
        assert_int_equal(store_mark_posting(f->s, &l, 2000, errstr, sizeof(errstr)), IS_OK);
        assert_int_equal(store_record_results(f->s, &l, res, 2000, errstr, sizeof(errstr)), IS_OK);
    }
    store_posting_list_release(&l);
    return n;
}

static void exec_sql(fixture_t *f, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(store_db(f->s), sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static int64_t scalar(fixture_t *f, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s), sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The movement ids left, comma-joined in id order. */
static void ids_left(fixture_t *f, char *buf, size_t size) {
    sqlite3_stmt *st = NULL;
    buf[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
                                        "SELECT group_concat(movement_id, ',') FROM"
                                        " (SELECT movement_id FROM movements ORDER BY id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* Prune everything the cutoff allows (batches of batch rows); total deleted. */
static int64_t prune(fixture_t *f, int64_t cutoff, size_t batch) {
    int64_t after = 0, n = 0, total = 0;
    int done = 0;
    char errstr[256];
    for (int i = 0; i < 100 && !done; i++) {
        assert_int_equal(
            store_prune(f->s, cutoff, batch, &after, &n, &done, errstr, sizeof(errstr)), IS_OK);
        total += n;
    }
    assert_true(done);
    return total;
}

static int64_t horizon(fixture_t *f) {
    int64_t h = -1;
    char errstr[256];
    assert_int_equal(store_pruned_before(f->s, &h, errstr, sizeof(errstr)), IS_OK);
    return h;
}

static void test_prune_deletes_only_finished_movements_past_the_cutoff(void **state) {
    fixture_t *f = *state;
    static const char *const ids[] = {"M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8"};
    static const char *const lots[] = {"L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"};
    char left[256], errstr[256];
    int64_t rows = 0, bad = 0;
    for (int i = 0; i < 8; i++)
        apply(f, ids[i], lots[i], (uint64_t)i + 1, 100 + i);
    apply(f, "Y9", "L9", 9, 9000); /* young: accepted after the cutoff */
    assert_int_equal(post_all(f), 9);
    /* Every state a movement can be in, on old rows. */
    exec_sql(f, "INSERT INTO chunk_movements(mid, posting_id, chunk)"
                " SELECT id, posting_id, 1 FROM movements WHERE movement_id IN ('M1', 'M3');"
                "UPDATE movements SET state = 'queued', posting_id = NULL WHERE movement_id = 'M3';"
                "UPDATE movements SET state = 'retry' WHERE movement_id = 'M4';"
                "UPDATE postings SET state = 'retry' WHERE posting_id ="
                " (SELECT posting_id FROM movements WHERE movement_id = 'M4');"
                "UPDATE movements SET state = 'failed' WHERE movement_id = 'M5';"
                "UPDATE postings SET state = 'failed' WHERE posting_id ="
                " (SELECT posting_id FROM movements WHERE movement_id = 'M5');"
                "UPDATE movements SET state = 'posting' WHERE movement_id = 'M6';"
                "UPDATE postings SET state = 'posting' WHERE posting_id ="
                " (SELECT posting_id FROM movements WHERE movement_id = 'M6');"
                "UPDATE movements SET state = 'cancelled' WHERE movement_id = 'M7';"
                "UPDATE movements SET state = 'skipped' WHERE movement_id = 'M8';"
                /* posted, but its posting is open again (a retried chunked posting) */
                "UPDATE postings SET state = 'retry' WHERE posting_id ="
                " (SELECT posting_id FROM movements WHERE movement_id = 'M2');");
    int64_t audit_rows = scalar(f, "SELECT count(*) FROM audit");
    int64_t postings = scalar(f, "SELECT count(*) FROM postings");
    assert_int_equal(horizon(f), 0);

    /* Batches of 2 rows: the cursor carries over the rows kept. */
    assert_int_equal(prune(f, 5000, 2), 3);
    ids_left(f, left, sizeof(left));
    assert_string_equal(left, "M2,M3,M4,M5,M6,Y9");
    assert_int_equal(scalar(f, "SELECT count(*) FROM chunk_movements"), 1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM chunk_movements c JOIN movements m"
                               " ON m.id = c.mid WHERE m.movement_id = 'M3'"),
                     1);
    assert_int_equal(horizon(f), 5000);
    /* Postings and the audit trail are kept, and the chain still verifies. */
    assert_int_equal(scalar(f, "SELECT count(*) FROM postings"), postings);
    assert_int_equal(scalar(f, "SELECT count(*) FROM audit"), audit_rows);
    assert_int_equal(store_audit_verify(f->s, &rows, &bad, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(rows, audit_rows);
}

/* A young row stops the tick; what lies beyond waits, it is not skipped. */
static void test_prune_stops_at_the_first_young_row(void **state) {
    fixture_t *f = *state;
    char left[128];
    apply(f, "O1", "L1", 1, 100);
    apply(f, "Y2", "L2", 2, 9000);
    apply(f, "O3", "L3", 3, 200); /* old, received after a young one */
    assert_int_equal(post_all(f), 3);
    assert_int_equal(prune(f, 5000, 100), 1);
    ids_left(f, left, sizeof(left));
    assert_string_equal(left, "Y2,O3");
    assert_int_equal(prune(f, 10000, 100), 2); /* Y2 old too now */
    ids_left(f, left, sizeof(left));
    assert_string_equal(left, "");
}

/* Rows above the watermark stay: the gap below them must close over them. */
static void test_prune_never_opens_a_sequence_gap(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256], left[128];
    int skipped = 0;
    int64_t lost = 0;
    /* Sequence 1 has not arrived; 2 and 3 are dead on arrival (finished, old). */
    apply_kind(f, STORE_MSG_DEAD, "D2", "L2", 2, 100, NULL);
    apply_kind(f, STORE_MSG_DEAD, "D3", "L3", 3, 100, NULL);
    assert_int_equal(scalar(f, "SELECT contiguous FROM watermarks"), 0);
    assert_int_equal(prune(f, 5000, 100), 0);
    ids_left(f, left, sizeof(left));
    assert_string_equal(left, "D2,D3");
    /* 1 arrives: the watermark closes over 2 and 3. */
    apply(f, "M1", "L1", 1, 200);
    assert_int_equal(scalar(f, "SELECT contiguous FROM watermarks"), 3);
    assert_int_equal(post_all(f), 1);
    /* Everything below the watermark goes now; the watermark stays. */
    assert_int_equal(prune(f, 5000, 100), 3);
    assert_int_equal(scalar(f, "SELECT contiguous FROM watermarks"), 3);
    /* The next sequence follows at once, and no gap is seen or skipped. */
    apply(f, "M4", "L4", 4, 6000);
    assert_int_equal(scalar(f, "SELECT contiguous FROM watermarks"), 4);
    assert_int_equal(store_skip_gaps(f->s, 1000000, 1, 0, &skipped, &lost, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(skipped, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 7000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "M4");
    store_posting_list_release(&l);
}

static void test_horizon_only_grows(void **state) {
    fixture_t *f = *state;
    apply(f, "M1", "L1", 1, 100);
    apply(f, "M2", "L2", 2, 3000);
    assert_int_equal(post_all(f), 2);
    assert_int_equal(prune(f, 2000, 100), 1);
    assert_int_equal(horizon(f), 2000);
    /* Nothing deleted: the horizon does not move. */
    assert_int_equal(prune(f, 2500, 100), 0);
    assert_int_equal(horizon(f), 2000);
    assert_int_equal(prune(f, 5000, 100), 1);
    assert_int_equal(horizon(f), 5000);
    /* A shorter cutoff later (store.retention raised) keeps the horizon. */
    apply(f, "M3", "L3", 3, 1000); /* parked (before the horizon): dead, finished */
    assert_int_equal(prune(f, 4000, 100), 1);
    assert_int_equal(horizon(f), 5000);
}

static void test_redelivery_after_prune_is_parked_not_queued(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    unsigned char parked = 0;
    apply(f, "M1", "L1", 1, 100);
    assert_int_equal(post_all(f), 1);
    assert_int_equal(prune(f, 5000, 100), 1);
    int64_t audit_rows = scalar(f, "SELECT count(*) FROM audit");

    /* The same movement read again (Kafka replay, republish): unknown now. */
    store_batch_result_t r = apply_kind(f, STORE_MSG_MOVEMENT, "M1", "L1", 1, 100, &parked);
    assert_int_equal(r.parked, 1);
    assert_int_equal(parked, 1);
    assert_int_equal(r.received, 0);
    assert_int_equal(r.duplicates, 0);
    assert_int_equal(r.pruned_before, 5000);
    assert_int_equal(
        scalar(f, "SELECT count(*) FROM movements WHERE movement_id = 'M1'"
                  " AND state = 'dead' AND reason LIKE 'accepted 1970-01-01T00:00:00.100Z,"
                  " before the store''s pruned horizon 1970-01-01T00:00:05.000Z"
                  " (store.retention)%not posted'"),
        1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM dead_letters WHERE movement_id = 'M1'"), 1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM audit WHERE action = 'movement-before-horizon'"
                               " AND subject = 'M1'"),
                     1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM audit"), audit_rows + 1);
    assert_int_equal(store_fetch_due(f->s, NULL, 9000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 0);
    store_posting_list_release(&l);
    /* Read a third time: its dead row answers, a plain duplicate. */
    r = apply_kind(f, STORE_MSG_MOVEMENT, "M1", "L1", 1, 100, &parked);
    assert_int_equal(r.parked, 0);
    assert_int_equal(parked, 0);
    assert_int_equal(r.duplicates, 1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM dead_letters"), 1);
}

static void test_movement_after_the_horizon_is_processed_normally(void **state) {
    fixture_t *f = *state;
    store_posting_list_t l = {0};
    char errstr[256];
    apply(f, "M1", "L1", 1, 100);
    assert_int_equal(post_all(f), 1);
    assert_int_equal(prune(f, 5000, 100), 1);
    store_batch_result_t r = apply(f, "M2", "L2", 2, 5000); /* at the horizon: not before it */
    assert_int_equal(r.received, 1);
    assert_int_equal(r.parked, 0);
    assert_int_equal(store_fetch_due(f->s, NULL, 9000, 10, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].m[0]->movement_id, "M2");
    store_posting_list_release(&l);
}

static void test_duplicate_of_a_kept_movement_still_dedups(void **state) {
    fixture_t *f = *state;
    apply(f, "M1", "L1", 1, 100);  /* old, posted: pruned */
    apply(f, "Q2", "L2", 2, 200);  /* old, but still queued: kept */
    apply(f, "Y3", "L3", 3, 9000); /* young, posted: kept */
    assert_int_equal(post_all(f), 3);
    exec_sql(f, "UPDATE movements SET state = 'queued', posting_id = NULL"
                " WHERE movement_id = 'Q2'");
    assert_int_equal(prune(f, 5000, 100), 1);
    store_batch_result_t r = apply(f, "Q2", "L2", 2, 200);
    assert_int_equal(r.duplicates, 1);
    assert_int_equal(r.parked, 0);
    r = apply(f, "Y3", "L3", 3, 9000);
    assert_int_equal(r.duplicates, 1);
    assert_int_equal(r.parked, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM movements WHERE state = 'dead'"), 0);
}

/* A store never pruned parks nothing, however old the movement. */
static void test_no_horizon_parks_nothing(void **state) {
    fixture_t *f = *state;
    store_batch_result_t r = apply(f, "M1", "L1", 1, 1);
    assert_int_equal(r.received, 1);
    assert_int_equal(r.parked, 0);
    assert_int_equal(r.pruned_before, 0);
}

/* Trace by document after pruning: the posting is still found, its
 * movements list is empty (not null) and a note says why. */
static void test_trace_document_after_prune_says_movements_were_pruned(void **state) {
    fixture_t *f = *state;
    char errstr[256];
    apply(f, "M1", "L1", 1, 100);
    assert_int_equal(post_all(f), 1);
    json_t *doc = admin_trace_document(f->s, "4900000001", errstr, sizeof(errstr));
    assert_non_null(doc);
    json_t *p = json_array_get(json_object_get(doc, "postings"), 0);
    assert_int_equal(json_array_size(json_object_get(p, "movements")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "movements"), 0)),
                        "M1");
    assert_null(json_object_get(doc, "note"));
    json_decref(doc);

    assert_int_equal(prune(f, 5000, 10), 1);
    doc = admin_trace_document(f->s, "4900000001", errstr, sizeof(errstr));
    assert_non_null(doc);
    p = json_array_get(json_object_get(doc, "postings"), 0);
    assert_true(json_is_array(json_object_get(p, "movements")));
    assert_int_equal(json_array_size(json_object_get(p, "movements")), 0);
    assert_non_null(strstr(json_string_value(json_object_get(doc, "note")), "have been pruned"));
    json_decref(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prune_deletes_only_finished_movements_past_the_cutoff,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_stops_at_the_first_young_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_never_opens_a_sequence_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_horizon_only_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_after_prune_is_parked_not_queued, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_movement_after_the_horizon_is_processed_normally,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_of_a_kept_movement_still_dedups, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_horizon_parks_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_document_after_prune_says_movements_were_pruned,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
