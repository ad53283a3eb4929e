/*
 * test_poster.c — the tiers end to end through the real poster, store and
 * embedded ERP ledger, with plant time chosen by the test (poster_run_once
 * takes "now"): a 30-minute window nets 10,000 issues into one exact line,
 * a restart mid-window neither posts early nor twice, a reversal after the
 * posting becomes an ERP reversal, pause holds and resume catches up, and a
 * real-time quarantine promotes the lot's waiting transfer so the ERP sees
 * them in order. Dead letters go to an in-process mock Kafka cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "duration.h"
#include "erp_sqlite.h"
#include "httpd.h"
#include "poster.h"
#include "schedule.h"
#include "store.h"

typedef struct fx {
    char dir[64], store_path[128], ledger_path[128], policy_path[128];
    consumer_config_t cfg;
    is_policy_t *policy;
    consumer_stats_t stats;
    rd_kafka_t *mock_host; /* hosts the mock cluster for dead letters */
    dlq_t *dlq;
    store_t *store;
    uint64_t seq;
    int64_t offset;
} fx_t;

static const char POLICY[] = "topic_prefix: invsync\n"
                             "tiers:\n"
                             "  realtime: {cadence: immediate, stale_after: 2m}\n"
                             "  periodic: {cadence: every 30m, stale_after: 90m}\n"
                             "rules:\n"
                             "  - {when: {type: [QUARANTINE, RELEASE, REVERSAL]}, tier: realtime}\n"
                             "default_tier: periodic\n";

static int64_t T0; /* 2026-03-02T08:00:00Z, a window boundary */

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    char errstr[512], kerr[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_poster.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->store_path, sizeof(f->store_path), "%s/store.db", f->dir);
    snprintf(f->ledger_path, sizeof(f->ledger_path), "%s/ledger.db", f->dir);
    snprintf(f->policy_path, sizeof(f->policy_path), "%s/policy.yaml", f->dir);
    FILE *pf = fopen(f->policy_path, "w");
    fputs(POLICY, pf);
    fclose(pf);
    assert_int_equal(is_policy_load(f->policy_path, &f->policy, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(is_parse_rfc3339("2026-03-02T08:00:00Z", &T0), IS_OK);

    /* An in-process mock cluster for the dead-letter producer. */
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(kc, "test.mock.num.brokers", "1", kerr, sizeof(kerr)),
                     RD_KAFKA_CONF_OK);
    f->mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof(kerr));
    assert_non_null(f->mock_host);
    is_strmap_t kafka = {0};
    assert_int_equal(
        is_strmap_set(&kafka, "bootstrap.servers",
                      rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(f->mock_host))),
        IS_OK);
    assert_int_equal(dlq_new(&kafka, "invsync", &f->dlq, errstr, sizeof(errstr)), IS_OK);
    is_strmap_release(&kafka);

    f->cfg.store_path = f->store_path;
    f->cfg.store_sync = "normal";
    f->cfg.erp.adapter = "sqlite";
    f->cfg.erp.sqlite_path = f->ledger_path;
    f->cfg.poster_batch = 500;
    f->cfg.retry_base_ms = 1000;
    f->cfg.retry_max_ms = 60000;
    f->cfg.gap_timeout_ms = 60000;
    pthread_mutex_init(&f->stats.lag_mu, NULL);
    assert_int_equal(store_open(f->store_path, IS_DB_SYNC_OFF, &f->store, errstr, sizeof(errstr)),
                     IS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    char cmd[128];
    store_close(f->store);
    dlq_destroy(f->dlq);
    rd_kafka_destroy(f->mock_host);
    is_policy_destroy(f->policy);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Seed the ledger with stock of a lot (an ADJUSTMENT posting outside the consumer). */
static void seed_lot(fx_t *f, const char *lot, const char *location, int64_t units) {
    erp_sqlite_t *l;
    char errstr[256];
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = units;
    m.site = "S1";
    m.material = "RM-1";
    m.lot = (char *)lot;
    m.location = (char *)location;
    m.uom = "KG";
    m.type = INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT;
    m.quantity = &q;
    erp_line_t line = {.m = &m, .quantity = {units, 0}};
    char ref[64];
    snprintf(ref, sizeof(ref), "seed-%s-%s", lot, location);
    erp_posting_t p = {.posting_id = ref,
                       .site = "S1",
                       .tier = "opening",
                       .policy_version = "",
                       .lines = &line,
                       .n_lines = 1};
    erp_result_t r;
    assert_int_equal(erp_sqlite_open_path(f->ledger_path, 0, &l, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(erp_sqlite_post(l, &p, &r, NULL), IS_OK);
    erp_sqlite_close(l);
}

static void seed(fx_t *f, const char *location, int64_t units) {
    seed_lot(f, "L1", location, units);
}

/* Consume one stamped movement accepted at `accepted` (its tier from the policy). */
static void consume(fx_t *f, is_movement_t *m, int64_t accepted) {
    char errstr[256];
    store_batch_result_t res;
    const is_tier_t *t = is_policy_classify(f->policy, m, NULL);
    m->tier = (char *)t->name;
    m->producer_id = "P1";
    m->sequence = ++f->seq;
    m->accepted_time = accepted;
    m->source_system = "MES";
    m->site = "S1";
    m->material = "RM-1";
    if (!m->lot || !*m->lot)
        m->lot = "L1";
    m->uom = "KG";
    size_t len = invsync__v1__movement__get_packed_size(m);
    uint8_t *buf = malloc(len);
    invsync__v1__movement__pack(m, buf);
    store_msg_t sm = {.kind = STORE_MSG_MOVEMENT,
                      .topic = "invsync.S1.periodic",
                      .offset = f->offset++,
                      .m = m,
                      .payload = buf,
                      .payload_len = len,
                      .due_at = is_schedule_due(t, "UTC", accepted)};
    assert_int_equal(store_apply_batch(f->store, &sm, 1, accepted, &res, errstr, sizeof(errstr)),
                     IS_OK);
    free(buf);
}

static poster_t *new_poster(fx_t *f) {
    poster_t *p = NULL;
    char errstr[512];
    assert_int_equal(poster_new(&f->cfg, f->policy, f->dlq, &f->stats, &p, errstr, sizeof(errstr)),
                     IS_OK);
    return p;
}

/* Run poster cycles at `now` until nothing more is handled. */
static int run_until_idle(poster_t *p, int64_t now) {
    int total = 0, n;
    while ((n = poster_run_once(p, now)) > 0)
        total += n;
    assert_true(n >= 0);
    return total;
}

static int64_t ledger_int(fx_t *f, const char *sql) {
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(f->ledger_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Run the next posters with this policy (as after a restart with an edited policy file). */
static void use_policy(fx_t *f, const char *yaml) {
    char errstr[512];
    FILE *pf = fopen(f->policy_path, "w");
    assert_non_null(pf);
    fputs(yaml, pf);
    fclose(pf);
    is_policy_destroy(f->policy);
    assert_int_equal(is_policy_load(f->policy_path, &f->policy, errstr, sizeof(errstr)), IS_OK);
}

static void test_window_nets_ten_thousand_issues_into_one_line(void **state) {
    fx_t *f = *state;
    enum { N = 10000 };
    seed(f, "LINE-1", 100000);
    for (int i = 0; i < N; i++) {
        char id[32];
        is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
        Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
        q.units = 125; /* 0.125 KG */
        q.scale = 3;
        snprintf(id, sizeof(id), "GI-%05d", i);
        m.movement_id = id;
        m.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
        m.location = "LINE-1";
        m.order_id = "ORD-1";
        m.quantity = &q;
        consume(f, &m, T0 + 60000 + i * 100); /* all inside 08:00–08:30 */
    }
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 20 * 60000), 0); /* window still open */
    poster_destroy(p);
    /* Restart mid-window: still nothing early. */
    p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 29 * 60000), 0);
    assert_int_equal(run_until_idle(p, T0 + 30 * 60000), 1); /* one posting at the close */
    assert_int_equal(run_until_idle(p, T0 + 31 * 60000), 0); /* and never twice */
    poster_destroy(p);
    assert_int_equal(
        ledger_int(f, "SELECT count(*) FROM documents WHERE posting_id NOT LIKE 'seed-%'"), 1);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_lines WHERE type <> 'ADJUSTMENT'"
                                   " AND type <> '7'"),
                     1);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements"), N);
    /* 100000 - 10000 × 0.125 = 98750 KG, exactly (ledger scale 6). */
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'LINE-1'"),
                     98750000000LL);
}

static void test_reversal_after_posting_is_an_erp_reversal(void **state) {
    fx_t *f = *state;
    seed(f, "LINE-1", 50);
    is_movement_t gi = INVSYNC__V1__MOVEMENT__INIT, rv = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 20;
    gi.movement_id = "GI-1";
    gi.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    gi.location = "LINE-1";
    gi.order_id = "ORD-1";
    gi.quantity = &q;
    consume(f, &gi, T0 + 1000);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 30 * 60000), 1);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'LINE-1'"),
                     30000000);
    rv = gi;
    rv.movement_id = "REV-1";
    rv.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    rv.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    rv.reverses_movement_id = "GI-1";
    consume(f, &rv, T0 + 31 * 60000);
    assert_int_equal(run_until_idle(p, T0 + 31 * 60000), 1); /* real-time tier */
    poster_destroy(p);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'LINE-1'"),
                     50000000);
    assert_int_equal(
        ledger_int(f, "SELECT count(*) FROM documents WHERE posting_id NOT LIKE 'seed-%'"), 2);
}

static void test_reversal_inside_window_posts_nothing(void **state) {
    fx_t *f = *state;
    seed(f, "LINE-1", 50);
    is_movement_t gi = INVSYNC__V1__MOVEMENT__INIT, rv;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 20;
    gi.movement_id = "GI-1";
    gi.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    gi.location = "LINE-1";
    gi.order_id = "ORD-1";
    gi.quantity = &q;
    consume(f, &gi, T0 + 1000);
    rv = gi;
    rv.movement_id = "REV-1";
    rv.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    rv.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    rv.reverses_movement_id = "GI-1";
    rv.tier = "";
    consume(f, &rv, T0 + 2000); /* real-time reversal promotes and cancels its original */
    poster_t *p = new_poster(f);
    run_until_idle(p, T0 + 3000);
    run_until_idle(p, T0 + 40 * 60000);
    poster_destroy(p);
    assert_int_equal(
        ledger_int(f, "SELECT count(*) FROM documents WHERE posting_id NOT LIKE 'seed-%'"), 0);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'LINE-1'"),
                     50000000);
    store_counts_t c;
    char errstr[256];
    assert_int_equal(store_counts(f->store, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.cancelled, 2);
}

/* Store counts through the test's own connection. */
static store_counts_t counts(fx_t *f) {
    char errstr[256];
    store_counts_t c;
    assert_int_equal(store_counts(f->store, &c, errstr, sizeof(errstr)), IS_OK);
    return c;
}

/* One text value from the store (the test's own connection); "" when no row. */
static void store_text(fx_t *f, const char *sql, char *out, size_t size) {
    sqlite3_stmt *st;
    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(store_db(f->store), sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* ERP posts counted by the poster, whatever their outcome. */
static long long erp_counted(fx_t *f) {
    long long n = 0;
    for (int o = 0; o < STATS_N_OUTCOMES; o++)
        n += atomic_load(&f->stats.erp_hist_count[o]);
    return n;
}

/* T11-A: a COMPLETION of 5 into FG, lot LOT-T11-A (periodic, due 08:30). */
static void complete_t11a(fx_t *f, Invsync__V1__Decimal *q5) {
    is_movement_t co = INVSYNC__V1__MOVEMENT__INIT;
    q5->units = 5;
    co.movement_id = "T11-A";
    co.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    co.lot = "LOT-T11-A";
    co.location = "FG";
    co.order_id = "ORD-1";
    co.quantity = q5;
    consume(f, &co, T0 + 1000);
}

/* REVERSAL `id` of COMPLETION `orig` (lot, FG, ORD-1, quantity q). */
static is_movement_t completion_reversal(const char *id, const char *orig, const char *lot,
                                         Invsync__V1__Decimal *q) {
    is_movement_t rv = INVSYNC__V1__MOVEMENT__INIT;
    rv.movement_id = (char *)id;
    rv.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    rv.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    rv.reverses_movement_id = (char *)orig;
    rv.lot = (char *)lot;
    rv.location = "FG";
    rv.order_id = "ORD-1";
    rv.quantity = q;
    return rv;
}

/* The REVERSAL T11-RV of T11-A, carrying T11-A's fields. */
static is_movement_t reversal_of_t11a(Invsync__V1__Decimal *q5) {
    return completion_reversal("T11-RV", "T11-A", "LOT-T11-A", q5);
}

/*
 * The audit's T11 case: T11-A completes 5 of lot A, then its REVERSAL names
 * lot B and 50. It must not take 50 off lot B: the poster fails it without
 * asking the ERP (failed, dead-lettered, lot B held). `failed retry` fails it
 * again; `failed skip` releases lot B.
 */
static void test_reversal_not_matching_its_original_is_not_posted(void **state) {
    fx_t *f = *state;
    char errstr[256], text[512];
    seed_lot(f, "LOT-T11-B", "FG", 100);
    Invsync__V1__Decimal q5 = INVSYNC__V1__DECIMAL__INIT, q50 = INVSYNC__V1__DECIMAL__INIT,
                         q1 = INVSYNC__V1__DECIMAL__INIT;
    complete_t11a(f, &q5);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 30 * 60000), 1);
    long long sent = erp_counted(f);
    is_movement_t rv = reversal_of_t11a(&q5);
    q50.units = 50;
    rv.lot = "LOT-T11-B";
    rv.quantity = &q50;
    consume(f, &rv, T0 + 31 * 60000);
    assert_int_equal(run_until_idle(p, T0 + 31 * 60000), 1); /* real-time: decided at once */
    assert_int_equal(erp_counted(f), sent);                  /* the ERP was not asked */
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-T11-B'"),
                     100000000);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-T11-A'"),
                     5000000);
    store_counts_t c = counts(f);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.postings_failed, 1);
    assert_int_equal(atomic_load(&f->stats.failed), 1);
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_string_equal(text, "reversal does not match T11-A: lot is LOT-T11-B, the original's"
                              " is LOT-T11-A");
    store_text(f, "SELECT detail FROM audit WHERE action = 'failed'", text, sizeof(text));
    assert_non_null(strstr(text, "lot is LOT-T11-B"));

    /* Lot B is held behind it, like behind any failed posting. */
    is_movement_t qm = INVSYNC__V1__MOVEMENT__INIT;
    q1.units = 1;
    qm.movement_id = "T11-B-Q";
    qm.type = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE;
    qm.lot = "LOT-T11-B";
    qm.location = "FG";
    qm.quantity = &q1;
    consume(f, &qm, T0 + 32 * 60000);
    assert_int_equal(run_until_idle(p, T0 + 32 * 60000), 0);
    char posting[40];
    store_text(f, "SELECT posting_id FROM postings WHERE state = 'failed'", posting,
               sizeof(posting));
    /* A retry checks it again: failed again, still not sent. */
    assert_int_equal(store_failed_retry(f->store, posting, "carol", "try again", T0 + 33 * 60000,
                                        errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(run_until_idle(p, T0 + 33 * 60000), 1);
    assert_int_equal(erp_counted(f), sent);
    assert_int_equal(counts(f).postings_failed, 1);
    assert_int_equal(counts(f).queued, 1); /* T11-B-Q still waits */
    /* Skipping it releases the lot. */
    assert_int_equal(store_failed_skip(f->store, posting, "carol", "wrong lot, MES corrects it",
                                       T0 + 34 * 60000, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(run_until_idle(p, T0 + 34 * 60000), 1);
    poster_destroy(p);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-T11-B'"
                                   " AND status = 'BLOCKED'"),
                     1000000);
    assert_int_equal(counts(f).skipped, 1);
}

/* A REVERSAL claiming to undo a GOODS_ISSUE of what was a COMPLETION would add stock. */
static void test_reversal_of_another_type_is_not_posted(void **state) {
    fx_t *f = *state;
    char text[512];
    Invsync__V1__Decimal q5 = INVSYNC__V1__DECIMAL__INIT;
    complete_t11a(f, &q5);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 30 * 60000), 1);
    is_movement_t rv = reversal_of_t11a(&q5);
    rv.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    consume(f, &rv, T0 + 31 * 60000);
    assert_int_equal(run_until_idle(p, T0 + 31 * 60000), 1);
    poster_destroy(p);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-T11-A'"),
                     5000000);
    assert_int_equal(counts(f).failed, 1);
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_string_equal(text, "reversal does not match T11-A: reversed_type is GOODS_ISSUE, the"
                              " original's type is COMPLETION");
}

/* Inside the window a mismatched REVERSAL cancels nothing: its original is posted. */
static void test_reversal_not_matching_inside_window_cancels_nothing(void **state) {
    fx_t *f = *state;
    Invsync__V1__Decimal q5 = INVSYNC__V1__DECIMAL__INIT, q4 = INVSYNC__V1__DECIMAL__INIT;
    complete_t11a(f, &q5);
    is_movement_t rv = reversal_of_t11a(&q5);
    q4.units = 4;
    rv.quantity = &q4;
    consume(f, &rv, T0 + 2000); /* real time: promotes T11-A */
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 3000), 2);
    poster_destroy(p);
    store_counts_t c = counts(f);
    assert_int_equal(c.cancelled, 0);
    assert_int_equal(c.posted, 1);
    assert_int_equal(c.failed, 1);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-T11-A'"),
                     5000000);
}

/* Each movement_id of want (id, state) is in that state in the store. */
static void assert_states(fx_t *f, const char *const (*want)[2], size_t n) {
    char sql[160], text[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(sql, sizeof(sql), "SELECT state FROM movements WHERE movement_id = '%s'",
                 want[i][0]);
        store_text(f, sql, text, sizeof(text));
        if (strcmp(text, want[i][1]) != 0)
            fail_msg("%s is %s, not %s", want[i][0], text, want[i][1]);
    }
}

/* The tester's DR case: DR-<id>, a COMPLETION of `units` into FG, lot RV9 (periodic). */
static void complete_rv9(fx_t *f, const char *id, Invsync__V1__Decimal *q, int64_t units,
                         int64_t accepted) {
    is_movement_t co = INVSYNC__V1__MOVEMENT__INIT;
    q->units = units;
    co.movement_id = (char *)id;
    co.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    co.lot = "RV9";
    co.location = "FG";
    co.order_id = "ORD-1";
    co.quantity = q;
    consume(f, &co, accepted);
}

/* The ledger's on-hand of lot RV9, all locations (0 when it has no row). */
static int64_t rv9_on_hand(fx_t *f) {
    return ledger_int(f, "SELECT coalesce(sum(qty_units), 0) FROM on_hand WHERE lot = 'RV9'");
}

/* REVERSAL `id` of DR-C1 (5 of lot RV9), matching it field for field (real time). */
static void reverse_dr_c1(fx_t *f, const char *id, Invsync__V1__Decimal *q5, int64_t accepted) {
    q5->units = 5;
    is_movement_t rv = completion_reversal(id, "DR-C1", "RV9", q5);
    consume(f, &rv, accepted);
}

/*
 * A movement is reversed once. The tester's case: DR-C1 completes 5 of RV9
 * and is posted; DR-r1 reverses it and is posted; DR-r2 reverses it again.
 * DR-r2 must not take another 5 (out of the lot's opening 10 here; an ERP
 * that allows negative stock went 5 → -5): it fails without an ERP call,
 * like a reversal that does not match, naming DR-r1; a retry fails it again.
 */
static void test_second_reversal_of_a_posted_movement_is_not_posted(void **state) {
    fx_t *f = *state;
    char errstr[256], text[512], posting[40];
    Invsync__V1__Decimal q5 = INVSYNC__V1__DECIMAL__INIT, r1q = INVSYNC__V1__DECIMAL__INIT,
                         r2q = INVSYNC__V1__DECIMAL__INIT;
    seed_lot(f, "RV9", "FG", 10);
    complete_rv9(f, "DR-C1", &q5, 5, T0 + 1000);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 30 * 60000), 1);
    assert_int_equal(rv9_on_hand(f), 15000000);
    long long sent = erp_counted(f);
    reverse_dr_c1(f, "DR-r1", &r1q, T0 + 31 * 60000);
    assert_int_equal(run_until_idle(p, T0 + 31 * 60000), 1); /* real time */
    assert_int_equal(rv9_on_hand(f), 10000000);
    reverse_dr_c1(f, "DR-r2", &r2q, T0 + 32 * 60000);
    assert_int_equal(run_until_idle(p, T0 + 32 * 60000), 1);
    assert_int_equal(erp_counted(f), sent + 1); /* DR-r1 only */
    assert_int_equal(rv9_on_hand(f), 10000000);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements WHERE movement_id"
                                   " IN ('DR-r1', 'DR-r2')"),
                     1);
    store_counts_t c = counts(f);
    assert_int_equal(c.posted, 2);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.postings_failed, 1);
    store_text(f,
               "SELECT p.last_error FROM postings p JOIN movements m ON m.posting_id ="
               " p.posting_id WHERE m.movement_id = 'DR-r2' AND p.state = 'failed'",
               text, sizeof(text));
    assert_string_equal(text, "reversal refused: reverses DR-C1, which DR-r1 already reverses");
    /* `failed retry` checks it again: DR-r1 is posted, so it fails again. */
    store_text(f, "SELECT posting_id FROM postings WHERE state = 'failed'", posting,
               sizeof(posting));
    assert_int_equal(store_failed_retry(f->store, posting, "carol", "try again", T0 + 33 * 60000,
                                        errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(run_until_idle(p, T0 + 33 * 60000), 1);
    poster_destroy(p);
    assert_int_equal(erp_counted(f), sent + 1);
    assert_int_equal(counts(f).postings_failed, 1);
    assert_int_equal(rv9_on_hand(f), 10000000);
}

/*
 * The tester's window case, all in one fetch: [DR-C0, DR-C1, DR-r1, DR-r2],
 * both reversals of DR-C1. When they are cut, DR-C1 and DR-r1 are still
 * queued (the pair is cancelled when the postings are marked): DR-r2 must not
 * cancel anything nor reach the ERP, where it would take DR-C1's 5 out of
 * DR-C0's 8. DR-C0 is posted; on-hand is DR-C0's alone.
 */
static void test_second_reversal_inside_window_is_not_posted(void **state) {
    fx_t *f = *state;
    char text[512];
    Invsync__V1__Decimal q8 = INVSYNC__V1__DECIMAL__INIT, q5 = INVSYNC__V1__DECIMAL__INIT,
                         r1q = INVSYNC__V1__DECIMAL__INIT, r2q = INVSYNC__V1__DECIMAL__INIT;
    complete_rv9(f, "DR-C0", &q8, 8, T0 + 1000);
    complete_rv9(f, "DR-C1", &q5, 5, T0 + 2000);
    reverse_dr_c1(f, "DR-r1", &r1q, T0 + 3000);
    reverse_dr_c1(f, "DR-r2", &r2q, T0 + 4000);
    poster_t *p = new_poster(f);
    run_until_idle(p, T0 + 5000);
    run_until_idle(p, T0 + 40 * 60000);
    poster_destroy(p);
    assert_int_equal(erp_counted(f), 1); /* DR-C0's posting */
    store_counts_t c = counts(f);
    assert_int_equal(c.cancelled, 2);
    assert_int_equal(c.posted, 1);
    assert_int_equal(c.failed, 1);
    static const char *const want[][2] = {
        {"DR-C0", "posted"}, {"DR-C1", "cancelled"}, {"DR-r1", "cancelled"}, {"DR-r2", "failed"}};
    assert_states(f, want, sizeof(want) / sizeof(want[0]));
    assert_int_equal(rv9_on_hand(f), 8000000);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements"), 1); /* DR-C0 */
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_string_equal(text, "reversal refused: reverses DR-C1, which DR-r1 already reverses");
}

/*
 * A wrong reversal must not block the right one: [C0, C1, r1 (6, not C1's
 * 5), r2 (right)] in one window. r1 never takes effect: it fails as not
 * matching and holds the lot (the MES sent something wrong), so C0 and C1
 * are posted and r2 waits. Once an operator skips r1, r2 is C1's reversal
 * (not "already reversed by r1") and is posted: on hand is C0's 8.
 */
static void test_wrong_reversal_does_not_block_the_right_one(void **state) {
    fx_t *f = *state;
    char text[512];
    Invsync__V1__Decimal q8 = INVSYNC__V1__DECIMAL__INIT, q5 = INVSYNC__V1__DECIMAL__INIT,
                         q6 = INVSYNC__V1__DECIMAL__INIT, r2q = INVSYNC__V1__DECIMAL__INIT;
    complete_rv9(f, "DR-C0", &q8, 8, T0 + 1000);
    complete_rv9(f, "DR-C1", &q5, 5, T0 + 2000);
    q6.units = 6; /* not DR-C1's 5 */
    is_movement_t wrong = completion_reversal("DR-r1", "DR-C1", "RV9", &q6);
    consume(f, &wrong, T0 + 3000);
    reverse_dr_c1(f, "DR-r2", &r2q, T0 + 4000);
    poster_t *p = new_poster(f);
    run_until_idle(p, T0 + 5000);
    run_until_idle(p, T0 + 40 * 60000);
    poster_destroy(p);
    static const char *const want[][2] = {
        {"DR-C0", "posted"}, {"DR-C1", "posted"}, {"DR-r1", "failed"}, {"DR-r2", "queued"}};
    assert_states(f, want, sizeof(want) / sizeof(want[0]));
    char pid[64], errstr[256];
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_non_null(strstr(text, "reversal does not match DR-C1: quantity is 6"));
    store_text(f, "SELECT posting_id FROM postings WHERE state = 'failed'", pid, sizeof(pid));
    assert_int_equal(store_failed_skip(f->store, pid, "alice", "wrong reversal", T0 + 41 * 60000,
                                       errstr, sizeof(errstr)),
                     IS_OK);
    p = new_poster(f);
    run_until_idle(p, T0 + 80 * 60000);
    poster_destroy(p);
    store_text(f, "SELECT state FROM movements WHERE movement_id = 'DR-r2'", text, sizeof(text));
    assert_string_equal(text, "posted");
    assert_int_equal(rv9_on_hand(f), 8000000);
}

/*
 * A reversal arriving after its original was cancelled inside the window (by
 * an earlier reversal, in an earlier cycle) is refused too. A REVERSAL stored
 * before store migration 7 has no `reverses`: the cancelled original still
 * refuses the later one (a retry checks it again).
 */
static void test_reversal_of_a_cancelled_movement_is_not_posted(void **state) {
    fx_t *f = *state;
    char errstr[256], text[512], posting[40];
    Invsync__V1__Decimal q8 = INVSYNC__V1__DECIMAL__INIT, q5 = INVSYNC__V1__DECIMAL__INIT,
                         r1q = INVSYNC__V1__DECIMAL__INIT, r2q = INVSYNC__V1__DECIMAL__INIT;
    complete_rv9(f, "DR-C0", &q8, 8, T0 + 1000);
    complete_rv9(f, "DR-C1", &q5, 5, T0 + 2000);
    reverse_dr_c1(f, "DR-r1", &r1q, T0 + 3000);
    poster_t *p = new_poster(f);
    run_until_idle(p, T0 + 3000); /* DR-C0 posted, DR-C1 and DR-r1 cancelled */
    assert_int_equal(counts(f).cancelled, 2);
    assert_int_equal(erp_counted(f), 1);
    reverse_dr_c1(f, "DR-r2", &r2q, T0 + 4000);
    assert_int_equal(run_until_idle(p, T0 + 4000), 1);
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_string_equal(text, "reversal refused: reverses DR-C1, which DR-r1 already reverses"
                              " (the two were cancelled inside the window)");
    /* As if DR-r1 had been stored by an older version. */
    assert_int_equal(
        sqlite3_exec(store_db(f->store),
                     "UPDATE movements SET reverses = NULL WHERE movement_id = 'DR-r1'", NULL, NULL,
                     NULL),
        SQLITE_OK);
    store_text(f, "SELECT posting_id FROM postings WHERE state = 'failed'", posting,
               sizeof(posting));
    assert_int_equal(store_failed_retry(f->store, posting, "carol", "try again", T0 + 5000, errstr,
                                        sizeof(errstr)),
                     IS_OK);
    assert_int_equal(run_until_idle(p, T0 + 5000), 1);
    poster_destroy(p);
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_string_equal(text, "reversal refused: reverses DR-C1, which was cancelled inside the"
                              " window");
    assert_int_equal(erp_counted(f), 1);
    assert_int_equal(rv9_on_hand(f), 8000000);
    assert_int_equal(counts(f).failed, 1);
}

/* A REVERSAL of a movement the store never saw (before invsync) is posted
 * as it stands; a second one of the same original is refused (a movement is
 * reversed once, known or not). */
static void test_reversal_of_an_unknown_original_is_posted_once(void **state) {
    fx_t *f = *state;
    char text[512];
    seed_lot(f, "LOT-OLD", "FG", 10);
    Invsync__V1__Decimal q5 = INVSYNC__V1__DECIMAL__INIT;
    is_movement_t rv = reversal_of_t11a(&q5);
    q5.units = 5;
    rv.reverses_movement_id = "PRE-INVSYNC-1";
    rv.lot = "LOT-OLD";
    consume(f, &rv, T0 + 1000);
    rv.movement_id = "T11-RV2";
    consume(f, &rv, T0 + 2000);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 2000), 2);
    poster_destroy(p);
    assert_int_equal(counts(f).posted, 1);
    assert_int_equal(counts(f).failed, 1);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-OLD'"), 5000000);
    store_text(f, "SELECT last_error FROM postings WHERE state = 'failed'", text, sizeof(text));
    assert_string_equal(text,
                        "reversal refused: reverses PRE-INVSYNC-1, which T11-RV already reverses");
}

static void test_pause_holds_resume_catches_up(void **state) {
    fx_t *f = *state;
    char errstr[256];
    seed(f, "QA", 10);
    is_movement_t qm = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 10;
    qm.movement_id = "Q-1";
    qm.type = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE;
    qm.location = "QA";
    qm.quantity = &q;
    assert_int_equal(
        store_pause(f->store, "S1", "realtime", "alice", "ERP upgrade", T0, errstr, sizeof(errstr)),
        IS_OK);
    consume(f, &qm, T0 + 1000);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 10 * 60000), 0);
    store_counts_t c;
    assert_int_equal(store_counts(f->store, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.queued, 1); /* staleness grows: oldest unposted is still there */
    assert_true(c.oldest_unposted_ms > 0);
    assert_int_equal(store_resume(f->store, "S1", "realtime", "alice", "done", T0 + 11 * 60000,
                                  errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(run_until_idle(p, T0 + 11 * 60000), 1);
    poster_destroy(p);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'QA'"
                                   " AND status = 'BLOCKED'"),
                     10000000);
}

static void test_realtime_quarantine_promotes_waiting_transfer(void **state) {
    fx_t *f = *state;
    seed(f, "WH-01", 40);
    is_movement_t tr = INVSYNC__V1__MOVEMENT__INIT, qm = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 40;
    tr.movement_id = "TR-1";
    tr.type = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER;
    tr.location = "WH-01";
    tr.to_location = "QA-CAGE";
    tr.quantity = &q;
    consume(f, &tr, T0 + 1000); /* periodic: waits for 08:30 */
    qm.movement_id = "Q-1";
    qm.type = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE;
    qm.location = "QA-CAGE"; /* needs the transfer's stock */
    qm.quantity = &q;
    consume(f, &qm, T0 + 2000);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 3000), 2); /* both now, transfer first */
    poster_destroy(p);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'QA-CAGE'"
                                   " AND status = 'BLOCKED'"),
                     40000000);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM documents d JOIN doc_movements m"
                                   " ON m.doc_no = d.doc_no WHERE m.movement_id = 'TR-1'"
                                   " AND d.doc_no < (SELECT doc_no FROM doc_movements"
                                   " WHERE movement_id = 'Q-1')"),
                     1);
}

static void test_failed_posting_holds_its_lot_in_the_same_batch(void **state) {
    fx_t *f = *state;
    char errstr[256];
    seed(f, "LINE-1", 5);
    is_movement_t gi = INVSYNC__V1__MOVEMENT__INIT, co = INVSYNC__V1__MOVEMENT__INIT,
                  other = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q10 = INVSYNC__V1__DECIMAL__INIT, q1 = INVSYNC__V1__DECIMAL__INIT;
    q10.units = 10;
    q1.units = 1;
    gi.movement_id = "GI-TOO-MUCH"; /* 10 from 5: the ERP refuses it */
    gi.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    gi.location = "LINE-1";
    gi.order_id = "ORD-1";
    gi.quantity = &q10;
    co.movement_id = "CO-AFTER"; /* would succeed on its own, but must wait behind GI */
    co.type = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE;
    co.location = "LINE-1";
    co.quantity = &q1;
    other.movement_id = "OTHER-LOT";
    other.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    other.location = "FG";
    other.order_id = "ORD-2";
    other.lot = "L2";
    other.quantity = &q1;
    gi.tier = co.tier = other.tier = "";
    consume(f, &gi, T0 + 1000);
    consume(f, &co, T0 + 1001);    /* realtime */
    consume(f, &other, T0 - 1000); /* periodic, its window closed at 08:00 */
    poster_t *p = new_poster(f);
    /* GI is periodic but promoted by the real-time CO: one cycle, one batch. */
    run_until_idle(p, T0 + 2000);
    poster_destroy(p);
    store_counts_t c;
    assert_int_equal(store_counts(f->store, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.failed, 1); /* GI-TOO-MUCH */
    assert_int_equal(c.queued, 1); /* CO-AFTER waits behind it */
    assert_int_equal(c.posted, 1); /* the other lot flowed */
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements WHERE movement_id ="
                                   " 'CO-AFTER'"),
                     0);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements WHERE movement_id ="
                                   " 'OTHER-LOT'"),
                     1);
    /* Only postings sent to the ERP are counted: CO-AFTER, held behind GI-TOO-MUCH
     * in the batch (not attempted), is no ERP retry. */
    assert_int_equal(atomic_load(&f->stats.erp_hist_count[STATS_POSTED]), 1);
    assert_int_equal(atomic_load(&f->stats.erp_hist_count[STATS_FAILED]), 1);
    assert_int_equal(atomic_load(&f->stats.erp_hist_count[STATS_RETRY]), 0);
    assert_int_equal(atomic_load(&f->stats.erp_calls), 2);
}

/*
 * The poster's own threads (store thread + ERP thread, one cycle posted while
 * the next is taken), fed while they run. Eight lots of one unit each, every
 * lot alternating QUARANTINE and RELEASE of that unit: each movement needs
 * the one before it in the ERP, so a lot posted out of order fails in the
 * ledger. Cycles of 3 postings make cycles overlap constantly. Then a stop
 * with work in flight leaves nothing in the `posting` state.
 */
static void test_threads_keep_each_lot_in_order(void **state) {
    fx_t *f = *state;
    enum { LOTS = 8, N = 400, MORE = 120 };
    static char lots[LOTS][16], ids[N + MORE][24];
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 1;
    for (int k = 0; k < LOTS; k++) {
        snprintf(lots[k], sizeof(lots[k]), "L%d", k + 1);
        seed_lot(f, lots[k], "QA", 1);
    }
    f->cfg.poster_batch = 3;
    f->cfg.poster_idle_ms = 20;
    poster_t *p = new_poster(f);
    assert_int_equal(poster_start(p), IS_OK);
    for (int i = 0; i < N + MORE; i++) {
        is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
        snprintf(ids[i], sizeof(ids[i]), "QR-%d", i);
        m.movement_id = ids[i];
        m.lot = lots[i % LOTS];
        m.location = "QA";
        m.quantity = &q;
        /* The lot's (i / LOTS)-th movement: quarantine, release, quarantine, ... */
        m.type = (i / LOTS) % 2 == 0 ? INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE
                                     : INVSYNC__V1__MOVEMENT_TYPE__RELEASE;
        consume(f, &m, T0 + i);
        poster_wake(p);
        if (i + 1 == N) {
            /* Wait (deadline) for the first N: all posted, none failed. */
            for (int tries = 0; counts(f).posted < N; tries++) {
                assert_true(tries < 3000); /* 30 s */
                assert_int_equal(counts(f).failed, 0);
                usleep(10000);
            }
        }
    }
    /* Stop with the last MORE movements still arriving at the poster. */
    poster_stop(p);
    store_counts_t c = counts(f);
    assert_int_equal(c.failed, 0);
    assert_int_equal(c.retry, 0);
    assert_int_equal(c.posting, 0); /* the cycle in flight was recorded */
    assert_int_equal(c.posted + c.queued, N + MORE);
    poster_destroy(p);
    /* A new poster (as after a restart) finishes the rest, still in order. */
    p = new_poster(f);
    run_until_idle(p, is_clock_now_ms(NULL));
    poster_destroy(p);
    c = counts(f);
    assert_int_equal(c.posted, N + MORE);
    assert_int_equal(c.failed, 0);
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements"), N + MORE);
    /* (N + MORE) / LOTS = 65 movements per lot, odd: each lot ends quarantined. */
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM on_hand WHERE location = 'QA'"
                                   " AND status = 'BLOCKED' AND qty_units = 1000000"),
                     LOTS);
}

static const char CHUNKED_POLICY[] =
    "topic_prefix: invsync\n"
    "tiers:\n"
    "  realtime: {cadence: immediate, stale_after: 2m}\n"
    "  periodic: {cadence: every 30m, stale_after: 90m, max_lines: 2}\n"
    "default_tier: periodic\n";

/*
 * Three issues of lot L1 from LINE-1..3 in one periodic window, with
 * max_lines 2: the posting goes to the ERP in chunks <posting_id>-1 (two
 * lines) and -2. LINE-3 has no stock, so chunk 1 is booked and chunk 2
 * refused: the posting fails, its lot is held. Its id goes to pid.
 */
static void chunk_one_booked_chunk_two_refused(fx_t *f, char *pid, size_t size) {
    char sql[256];
    use_policy(f, CHUNKED_POLICY);
    seed(f, "LINE-1", 5);
    seed(f, "LINE-2", 5);
    const char *where[3] = {"LINE-1", "LINE-2", "LINE-3"};
    for (int i = 0; i < 3; i++) {
        char id[16];
        is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
        Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
        q.units = 1;
        snprintf(id, sizeof(id), "GI-%d", i + 1);
        m.movement_id = id;
        m.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
        m.location = (char *)where[i];
        m.order_id = "ORD-1";
        m.quantity = &q;
        consume(f, &m, T0 + 60000 + i);
    }
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 30 * 60000), 1);
    poster_destroy(p);
    store_text(f, "SELECT posting_id FROM postings WHERE state = 'failed'", pid, size);
    assert_int_equal(strlen(pid), 32);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM doc_lines l JOIN documents d USING (doc_no)"
             " WHERE d.posting_id = '%s-1'",
             pid);
    assert_int_equal(ledger_int(f, sql), 2);
    assert_int_equal(ledger_int(f, "SELECT qty_units FROM on_hand WHERE location = 'LINE-1'"),
                     4000000);
}

/* Every movement of chunk_one_booked_chunk_two_refused booked exactly once, in two chunks. */
static void assert_booked_once_in_two_chunks(fx_t *f, const char *pid) {
    char errstr[256], sql[256], doc[64];
    store_counts_t c;
    assert_int_equal(store_counts(f->store, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.failed, 0);
    assert_int_equal(c.posted, 3);
    for (int i = 1; i <= 3; i++) {
        snprintf(sql, sizeof(sql), "SELECT qty_units FROM on_hand WHERE location = 'LINE-%d'", i);
        assert_int_equal(ledger_int(f, sql), 4000000);
    }
    assert_int_equal(ledger_int(f, "SELECT count(*) FROM doc_movements"), 3);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM documents WHERE posting_id = '%s'", pid);
    assert_int_equal(ledger_int(f, sql), 0); /* never sent whole */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM documents WHERE posting_id LIKE '%s-%%'", pid);
    assert_int_equal(ledger_int(f, sql), 2);
    /* The posting's document names the first chunk's and how many follow. */
    snprintf(sql, sizeof(sql), "SELECT erp_doc FROM postings WHERE posting_id = '%s'", pid);
    store_text(f, sql, doc, sizeof(doc));
    assert_int_equal(erp_document_chunks(doc), 2);
    /* Trace names each chunk's own document: GI-1 and GI-2 in chunk 1's, GI-3 in chunk 2's. */
    static const char *const chunk_movements[2] = {"[\"GI-1\",\"GI-2\"]", "[\"GI-3\"]"};
    for (int k = 1; k <= 2; k++) {
        char chunk_doc[32];
        snprintf(sql, sizeof(sql), "SELECT doc_no FROM documents WHERE posting_id = '%s-%d'", pid,
                 k);
        snprintf(chunk_doc, sizeof(chunk_doc), "%lld", (long long)ledger_int(f, sql));
        json_t *res = admin_trace_document(f->store, chunk_doc, errstr, sizeof(errstr));
        if (!res)
            fail_msg("trace of chunk %d's document %s: %s", k, chunk_doc, errstr);
        json_t *row = json_array_get(json_object_get(res, "postings"), 0);
        assert_int_equal(json_array_size(json_object_get(res, "postings")), 1);
        char *got = json_dumps(json_object_get(row, "movements"), JSON_COMPACT | JSON_ENCODE_ANY);
        assert_non_null(got);
        assert_string_equal(got, chunk_movements[k - 1]);
        free(got);
        json_decref(res);
        json_t *rows =
            admin_trace_movement(f->store, k == 1 ? "GI-2" : "GI-3", errstr, sizeof(errstr));
        assert_non_null(rows);
        assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "document")),
                            chunk_doc);
        json_decref(rows);
    }
}

/*
 * The failed chunked posting is retried by an operator after max_lines was
 * removed from the policy. The retry must cut it as its first attempt did:
 * re-sent whole (or cut otherwise) under other references, the lines chunk
 * 1 booked would be booked again.
 */
static void test_chunked_posting_keeps_its_chunks_when_max_lines_changes(void **state) {
    fx_t *f = *state;
    char errstr[256], pid[64];
    chunk_one_booked_chunk_two_refused(f, pid, sizeof(pid));
    /* Stock arrives, max_lines is removed, an operator retries the posting. */
    seed(f, "LINE-3", 5);
    use_policy(f, POLICY);
    assert_int_equal(store_failed_retry(f->store, pid, "alice", "stock booked", T0 + 31 * 60000,
                                        errstr, sizeof(errstr)),
                     IS_OK);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0 + 31 * 60000), 1);
    poster_destroy(p);
    assert_booked_once_in_two_chunks(f, pid);
}

/*
 * A crash between chunks leaves the posting `posting` with chunk 1 in the
 * ERP. Start-up recovery finds no document under the bare posting id; it
 * must see chunk 1 and post the posting again as it was cut (the chunks'
 * references keep chunk 1 from doubling), not take it for one that never
 * reached the ERP (which would judge a REVERSAL in it again).
 */
static void test_chunked_posting_in_flight_at_a_crash_is_found_in_part(void **state) {
    fx_t *f = *state;
    char errstr[256], pid[64], sql[512], text[256];
    chunk_one_booked_chunk_two_refused(f, pid, sizeof(pid));
    /* As a crash after chunk 1 leaves it (the refusal of chunk 2 never recorded). */
    snprintf(sql, sizeof(sql),
             "UPDATE postings SET state = 'posting', last_error = NULL WHERE posting_id = '%s';"
             "UPDATE movements SET state = 'posting' WHERE posting_id = '%s';",
             pid, pid);
    assert_int_equal(sqlite3_exec(store_db(f->store), sql, NULL, NULL, NULL), SQLITE_OK);
    seed(f, "LINE-3", 5);
    /* Paused: recovery runs, the retry waits, so what recovery decided can be read. */
    assert_int_equal(store_pause(f->store, "S1", "periodic", "alice", "look first", T0 + 31 * 60000,
                                 errstr, sizeof(errstr)),
                     IS_OK);
    poster_t *p = new_poster(f);
    run_until_idle(p, T0 + 31 * 60000);
    snprintf(sql, sizeof(sql),
             "SELECT state || ': ' || last_error FROM postings"
             " WHERE posting_id = '%s'",
             pid);
    store_text(f, sql, text, sizeof(text));
    assert_string_equal(text, "retry: " STORE_PARTLY_IN_ERP_AFTER_RESTART);
    assert_int_equal(store_resume(f->store, "S1", "periodic", "alice", "go", T0 + 32 * 60000,
                                  errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(run_until_idle(p, T0 + 32 * 60000), 1);
    poster_destroy(p);
    assert_booked_once_in_two_chunks(f, pid);
}

/* An ERP that answers every posting 429 with Retry-After: <ctx>. */
static void h_too_many(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    static const char body[] = "{\"error\":\"slow down\"}";
    (void)req;
    is_http_respond_text(resp, 429, "application/json", body, strlen(body));
    snprintf(resp->extra_header, sizeof(resp->extra_header), "Retry-After: %s", (const char *)ctx);
}

/* A 429's Retry-After is waited, up to retry.max, not the shorter backoff. */
static void test_retry_after_is_honoured_up_to_retry_max(void **state) {
    fx_t *f = *state;
    static const is_http_route_t routes[] = {{"POST", "/postings", h_too_many}};
    static char retry_after[16] = "45";
    is_httpd_t *erp = NULL;
    char errstr[256], url[64], sql[96], text[128];
    assert_int_equal(is_httpd_start("127.0.0.1:0", routes, 1, retry_after, 1 << 20, 1, &erp, errstr,
                                    sizeof(errstr)),
                     IS_OK);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)is_httpd_port(erp));
    f->cfg.erp.adapter = "http-json";
    f->cfg.erp.http_url = url;
    f->cfg.erp.http_timeout_ms = 5000;
    is_movement_t qm = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 1;
    qm.movement_id = "RA-1";
    qm.type = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE; /* realtime: due at once */
    qm.location = "FG";
    qm.quantity = &q;
    consume(f, &qm, T0);
    poster_t *p = new_poster(f);
    assert_int_equal(run_until_idle(p, T0), 1);
    snprintf(sql, sizeof(sql), "SELECT next_at - %lld FROM postings", (long long)T0);
    store_text(f, sql, text, sizeof(text));
    assert_string_equal(text, "45000"); /* the backoff alone: 0.5-1 s */
    store_text(f, "SELECT last_error FROM postings", text, sizeof(text));
    assert_non_null(strstr(text, "HTTP 429 (Retry-After 45 s)"));
    snprintf(retry_after, sizeof(retry_after), "7200");
    assert_int_equal(run_until_idle(p, T0 + 45000), 1);
    snprintf(sql, sizeof(sql), "SELECT next_at - %lld FROM postings", (long long)(T0 + 45000));
    store_text(f, sql, text, sizeof(text));
    assert_string_equal(text, "60000"); /* retry.max */
    poster_destroy(p);
    is_httpd_stop(erp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry_after_is_honoured_up_to_retry_max, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_window_nets_ten_thousand_issues_into_one_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_after_posting_is_an_erp_reversal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_inside_window_posts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reversal_not_matching_its_original_is_not_posted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reversal_of_another_type_is_not_posted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_not_matching_inside_window_cancels_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_reversal_of_a_posted_movement_is_not_posted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_reversal_inside_window_is_not_posted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_of_a_cancelled_movement_is_not_posted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_reversal_does_not_block_the_right_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_of_an_unknown_original_is_posted_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pause_holds_resume_catches_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_realtime_quarantine_promotes_waiting_transfer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_posting_holds_its_lot_in_the_same_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threads_keep_each_lot_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_chunked_posting_keeps_its_chunks_when_max_lines_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_posting_in_flight_at_a_crash_is_found_in_part,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
