/*
 * test_replay.c — the replay timeline and `--apply` without Kafka: messages
 * as the reader delivers them (replay_msg_t) against a real store, checking
 * what each row says (status, detail, the REVERSAL's original) and what
 * --apply counts and audits. Reading Kafka by time is proven against Apache
 * Kafka in test/integration/test_replay.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duration.h"
#include "erp.h"
#include "replay_int.h"
#include "store.h"

#define SITE  "S1"
#define TOPIC "invsync.S1.periodic"

typedef struct fx {
    char dir[64], store_path[128];
    store_t *store;
    replay_filter_t filter;
    replay_timeline_t t;
    int64_t now;
} fx_t;

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    char errstr[512];
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_replay.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->store_path, sizeof(f->store_path), "%s/store.db", f->dir);
    assert_int_equal(store_open(f->store_path, IS_DB_SYNC_OFF, &f->store, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(is_parse_rfc3339("2026-03-02T08:00:00Z", &f->now), IS_OK);
    f->t.filter = &f->filter;
    assert_int_equal(replay_timeline_prepare(&f->t, store_db(f->store), errstr, sizeof(errstr)),
                     IS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    char cmd[128];
    replay_timeline_release(&f->t);
    store_close(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

typedef struct tmov {
    uint64_t seq; /* the producer's sequence */
    const char *id, *lot;
    int type;
    const char *reverses; /* REVERSAL: the original's id */
    int reversed_type;
    int unsequenced; /* no producer stamp (dead-lettered without a movements row) */
} tmov_t;

/* A packed movement (free *buf); m's strings point to static data. */
static void make(fx_t *f, const tmov_t *tm, is_movement_t *m, Invsync__V1__Decimal *q,
                 uint8_t **buf, size_t *len) {
    invsync__v1__movement__init(m);
    invsync__v1__decimal__init(q);
    q->units = 5;
    m->movement_id = (char *)tm->id;
    m->source_system = "MES";
    m->site = SITE;
    m->tier = "periodic";
    m->type = (Invsync__V1__MovementType)tm->type;
    m->material = "RM-1";
    m->lot = (char *)tm->lot;
    m->location = "WH";
    m->uom = "KG";
    m->quantity = q;
    m->event_time = f->now;
    m->accepted_time = f->now + (int64_t)tm->seq;
    m->policy_version = "v1";
    m->order_id = tm->type == INVSYNC__V1__MOVEMENT_TYPE__COMPLETION ? "ORD-1" : "";
    if (tm->reverses) {
        m->reverses_movement_id = (char *)tm->reverses;
        m->reversed_type = (Invsync__V1__MovementType)tm->reversed_type;
    }
    if (!tm->unsequenced) {
        m->producer_id = "P1";
        m->sequence = tm->seq;
    }
    *len = invsync__v1__movement__get_packed_size(m);
    *buf = malloc(*len);
    invsync__v1__movement__pack(m, *buf);
}

/* Into the store as the consume loop puts it (queued), or dead-lettered with `reason`. */
static void consume(fx_t *f, const tmov_t *tm, const char *dead_reason, int64_t off) {
    char errstr[256];
    store_batch_result_t res;
    is_movement_t m;
    Invsync__V1__Decimal q;
    uint8_t *buf;
    size_t len;
    make(f, tm, &m, &q, &buf, &len);
    store_msg_t sm = {.kind = dead_reason ? STORE_MSG_DEAD : STORE_MSG_MOVEMENT,
                      .topic = TOPIC,
                      .offset = off,
                      .m = &m,
                      .payload = buf,
                      .payload_len = len,
                      .reason = dead_reason,
                      .due_at = f->now + 3600000};
    assert_int_equal(store_apply_batch(f->store, &sm, 1, f->now, &res, errstr, sizeof(errstr)),
                     IS_OK);
    free(buf);
}

/* The message as replay_read delivers it. */
static void deliver(fx_t *f, const tmov_t *tm, int64_t off) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    uint8_t *buf;
    size_t len;
    make(f, tm, &m, &q, &buf, &len);
    replay_msg_t msg = {.kind = REPLAY_MOVEMENT,
                        .topic = TOPIC,
                        .site = SITE,
                        .tier = "periodic",
                        .offset = off,
                        .timestamp_ms = f->now,
                        .m = &m,
                        .payload = buf,
                        .payload_len = len};
    assert_int_equal(replay_timeline_collect(&f->t, &msg), 0);
    free(buf);
}

static void deliver_garbage(fx_t *f, const char *site, int64_t off) {
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    char topic[64];
    snprintf(topic, sizeof(topic), "invsync.%s.periodic", site);
    replay_msg_t msg = {.kind = REPLAY_UNDECODABLE,
                        .topic = topic,
                        .site = site,
                        .tier = "periodic",
                        .offset = off,
                        .timestamp_ms = f->now,
                        .payload = junk,
                        .payload_len = sizeof(junk)};
    assert_int_equal(replay_timeline_collect(&f->t, &msg), 0);
}

static void exec_sql(fx_t *f, const char *sql) {
    char *err = NULL;
    int rc = sqlite3_exec(store_db(f->store), sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

/* Movement `id` refused for good by the ERP in posting `pid`: its lot is held. */
static void fail_posting(fx_t *f, const char *pid, const char *id, const char *error) {
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO postings(posting_id, site, tier, lot_key, state, attempts, last_error,"
             " lines, created_at, updated_at) SELECT '%s', site, tier, lot_key, 'failed', 1, '%s',"
             " 1, 0, 0 FROM movements WHERE movement_id = '%s';"
             "UPDATE movements SET state = 'failed', posting_id = '%s' WHERE movement_id = '%s';",
             pid, error, id, pid, id);
    exec_sql(f, sql);
}

/* Row i of the timeline as the JSON line it prints. */
static json_t *row(fx_t *f, size_t i) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    assert_true(i < f->t.n);
    replay_write_row(mf, &f->t.rows[i], 0);
    fclose(mf);
    json_t *o = json_loads(buf, 0, NULL);
    assert_non_null(o);
    free(buf);
    return o;
}

static const char *str(const json_t *o, const char *k) {
    const char *v = json_string_value(json_object_get(o, k));
    if (!v)
        fail_msg("no string field '%s'", k);
    return v;
}

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay, needle);
}

static void test_a_movement_held_behind_a_failed_posting_says_which(void **state) {
    fx_t *f = *state;
    tmov_t m1 = {
        .seq = 1, .id = "M-1", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE};
    tmov_t m2 = {
        .seq = 2, .id = "M-2", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE};
    tmov_t m3 = {
        .seq = 3, .id = "M-3", .lot = "L2", .type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE};
    consume(f, &m1, NULL, 0);
    consume(f, &m2, NULL, 1);
    consume(f, &m3, NULL, 2);
    fail_posting(f, "P-FAIL", "M-1", "stock would go negative");
    deliver(f, &m1, 0);
    deliver(f, &m2, 1);
    deliver(f, &m3, 2);
    assert_int_equal(f->t.failed_lookups, 0);
    json_t *o = row(f, 1);
    assert_string_equal(str(o, "status"), "pending");
    assert_contains(str(o, "detail"), "held behind failed posting P-FAIL (M-1)");
    json_decref(o);
    o = row(f, 0);
    assert_string_equal(str(o, "status"), "failed");
    assert_string_equal(str(o, "detail"), "stock would go negative");
    json_decref(o);
    o = row(f, 2); /* another lot: nothing holds it */
    assert_string_equal(str(o, "status"), "pending");
    assert_string_equal(str(o, "detail"), "");
    json_decref(o);
}

static void test_a_skipped_posting_says_who_skipped_it_and_why(void **state) {
    fx_t *f = *state;
    char errstr[256];
    tmov_t m1 = {.seq = 1, .id = "M-1", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__SCRAP};
    consume(f, &m1, NULL, 0);
    fail_posting(f, "P-SKIP", "M-1", "material blocked");
    assert_int_equal(store_failed_skip(f->store, "P-SKIP", "qa.lead", "written off in the ERP",
                                       f->now, errstr, sizeof(errstr)),
                     IS_OK);
    deliver(f, &m1, 0);
    assert_int_equal(f->t.failed_lookups, 0);
    json_t *o = row(f, 0);
    assert_string_equal(str(o, "status"), "skipped");
    assert_string_equal(str(o, "detail"), "material blocked; skipped by qa.lead at "
                                          "2026-03-02T08:00:00.000Z: written off in the ERP");
    json_decref(o);
}

static void test_dead_lettered_rows_show_the_reason(void **state) {
    fx_t *f = *state;
    char errstr[256];
    store_batch_result_t res;
    /* An undecodable value at offset 5, and a movement without a producer stamp at 6:
     * the consume loop dead-letters both; neither gets a movements row. */
    store_msg_t sm = {.kind = STORE_MSG_DEAD,
                      .topic = TOPIC,
                      .offset = 5,
                      .reason = "value is not a Movement (protobuf: truncated)"};
    assert_int_equal(store_apply_batch(f->store, &sm, 1, f->now, &res, errstr, sizeof(errstr)),
                     IS_OK);
    tmov_t bare = {.seq = 0,
                   .id = "M-BARE",
                   .lot = "L1",
                   .type = INVSYNC__V1__MOVEMENT_TYPE__SCRAP,
                   .unsequenced = 1};
    consume(f, &bare, "movement has no producer_id/sequence (not stamped by mes-producer)", 6);
    tmov_t invalid = {
        .seq = 1, .id = "M-BAD", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__SCRAP};
    consume(f, &invalid, "quantity: must be positive", 7);

    deliver_garbage(f, SITE, 5);
    deliver(f, &bare, 6);
    deliver(f, &invalid, 7);
    assert_int_equal(f->t.failed_lookups, 0);
    json_t *o = row(f, 0);
    assert_string_equal(str(o, "status"), "undecodable");
    assert_string_equal(str(o, "detail"), "value is not a Movement (protobuf: truncated)");
    json_decref(o);
    o = row(f, 1);
    assert_string_equal(str(o, "status"), "dead-lettered");
    assert_string_equal(str(o, "detail"),
                        "movement has no producer_id/sequence (not stamped by mes-producer)");
    json_decref(o);
    o = row(f, 2);
    assert_string_equal(str(o, "status"), "dead-lettered");
    assert_string_equal(str(o, "detail"), "quantity: must be positive");
    json_decref(o);
}

static void test_a_reversal_names_what_it_reverses(void **state) {
    fx_t *f = *state;
    tmov_t orig = {
        .seq = 1, .id = "M-1", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    tmov_t rev = {.seq = 2,
                  .id = "M-2",
                  .lot = "L1",
                  .type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL,
                  .reverses = "M-1",
                  .reversed_type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    deliver(f, &orig, 0);
    deliver(f, &rev, 1);
    json_t *o = row(f, 1);
    assert_string_equal(str(o, "type"), "REVERSAL");
    assert_string_equal(str(o, "reverses_movement_id"), "M-1");
    assert_string_equal(str(o, "reversed_type"), "COMPLETION");
    assert_string_equal(str(o, "status"), "not-in-store");
    json_decref(o);
    o = row(f, 0); /* other types: present and empty */
    assert_string_equal(str(o, "reverses_movement_id"), "");
    assert_string_equal(str(o, "reversed_type"), "");
    json_decref(o);

    /* CSV: the same two columns, appended after the existing ones. */
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    replay_write_csv_header(mf);
    replay_write_row(mf, &f->t.rows[1], 1);
    fclose(mf);
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    *nl = '\0';
    size_t hl = strlen(buf);
    const char *tail = ",apply_action,detail,reverses_movement_id,reversed_type";
    assert_true(hl > strlen(tail));
    assert_string_equal(buf + hl - strlen(tail), tail);
    assert_non_null(strstr(nl + 1, ",M-1,COMPLETION\n"));
    free(buf);
}

static void test_apply_counts_every_row_and_audits_the_whole_selection(void **state) {
    fx_t *f = *state;
    char errstr[512];
    consumer_config_t cfg;
    replay_apply_counts_t c = {0};
    memset(&cfg, 0, sizeof(cfg));
    cfg.sites_regex = SITE;

    /* The selection: --type COMPLETION --lot L1 --material RM-1 --order ORD-1 --site S1
     * --tier periodic. Two movements the store never got, one undecodable message of this
     * site, one of a site this consumer does not own. */
    f->filter.site = SITE;
    f->filter.tier = "periodic";
    f->filter.material = "RM-1";
    f->filter.lot = "L1";
    f->filter.order_id = "ORD-1";
    f->filter.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    tmov_t a = {.seq = 1, .id = "M-1", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    tmov_t b = {.seq = 2, .id = "M-2", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    deliver(f, &a, 0);
    deliver(f, &b, 1);
    f->filter.material = f->filter.lot = f->filter.order_id = NULL; /* undecodable rows are */
    f->filter.type = 0; /* collected only without movement filters */
    deliver_garbage(f, SITE, 2);
    deliver_garbage(f, "OTHER", 0);
    f->filter.material = "RM-1";
    f->filter.lot = "L1";
    f->filter.order_id = "ORD-1";
    f->filter.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    assert_int_equal(f->t.n, 4);

    int64_t earliest;
    assert_int_equal(is_parse_rfc3339("2026-03-02T07:30:00Z", &earliest), IS_OK);
    replay_apply_req_t req = {.by = "qa.lead",
                              .reason = "ERP restored",
                              .from = "2026-03-02T07:00:00Z",
                              .to = "2026-03-02T09:00:00Z",
                              .filter = &f->filter,
                              .earliest_ms = earliest};
    assert_int_equal(
        replay_apply(&cfg, f->store, f->t.rows, f->t.n, &req, &c, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(c.newly_queued, 2);
    assert_int_equal(c.not_valid, 1);
    assert_int_equal(c.not_owned, 1);
    assert_int_equal(c.newly_queued + (c.requeued - c.requeued_outside) + c.already_known +
                         c.not_valid + c.not_owned,
                     f->t.n);

    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->store),
                                        "SELECT actor, subject, detail FROM audit"
                                        " WHERE action = 'replay-apply'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "qa.lead");
    assert_string_equal((const char *)sqlite3_column_text(st, 1),
                        "2026-03-02T07:00:00Z..2026-03-02T09:00:00Z");
    json_t *d = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
    sqlite3_finalize(st);
    assert_non_null(d);
    assert_string_equal(str(d, "type"), "COMPLETION");
    assert_string_equal(str(d, "site"), SITE);
    assert_string_equal(str(d, "tier"), "periodic");
    assert_string_equal(str(d, "material"), "RM-1");
    assert_string_equal(str(d, "lot"), "L1");
    assert_string_equal(str(d, "order"), "ORD-1");
    assert_string_equal(str(d, "from"), "2026-03-02T07:00:00Z");
    assert_string_equal(str(d, "to"), "2026-03-02T09:00:00Z");
    assert_string_equal(str(d, "earliest_available"), "2026-03-02T07:30:00.000Z");
    assert_string_equal(str(d, "reason"), "ERP restored");
    assert_int_equal(json_integer_value(json_object_get(d, "not_valid")), 1);
    json_decref(d);
}

static void test_apply_audit_without_filters_records_them_as_null(void **state) {
    fx_t *f = *state;
    char errstr[512];
    consumer_config_t cfg;
    replay_apply_counts_t c = {0};
    memset(&cfg, 0, sizeof(cfg));
    cfg.sites_regex = SITE;
    tmov_t a = {.seq = 1, .id = "M-1", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__SCRAP};
    deliver(f, &a, 0);
    replay_apply_req_t req = {.by = "ops",
                              .reason = "r",
                              .from = "2026-03-02T07:00:00Z",
                              .to = "2026-03-02T09:00:00Z",
                              .filter = &f->filter};
    assert_int_equal(
        replay_apply(&cfg, f->store, f->t.rows, f->t.n, &req, &c, errstr, sizeof(errstr)), IS_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->store),
                                        "SELECT detail FROM audit WHERE action = 'replay-apply'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    json_t *d = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
    sqlite3_finalize(st);
    static const char *const keys[] = {"site", "tier", "material", "lot", "order", "type"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(d, keys[i]);
        if (!json_is_null(v))
            fail_msg("audit detail key '%s' must be present and null", keys[i]);
    }
    assert_null(json_object_get(d, "earliest_available"));
    json_decref(d);
}

/* One integer or text of the store, as text ("" for NULL). */
static void store_text(fx_t *f, const char *sql, char *out, size_t size) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->store), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *v = sqlite3_column_text(st, 0);
    snprintf(out, size, "%s", v ? (const char *)v : "");
    sqlite3_finalize(st);
}

#define WATERMARK "SELECT contiguous FROM watermarks WHERE producer_id = 'P1' AND site = '" SITE "'"
#define SEQ_FILLS "SELECT group_concat(seq) FROM (SELECT seq FROM seq_fills ORDER BY seq)"

/* --apply of the timeline's rows, unfiltered; the counts. */
static replay_apply_counts_t apply_all(fx_t *f) {
    char errstr[512];
    consumer_config_t cfg;
    replay_apply_counts_t c = {0};
    memset(&cfg, 0, sizeof(cfg));
    cfg.sites_regex = SITE;
    replay_apply_req_t req = {.by = "ops",
                              .reason = "r",
                              .from = "2026-03-02T07:00:00Z",
                              .to = "2026-03-02T09:00:00Z",
                              .filter = &f->filter};
    if (replay_apply(&cfg, f->store, f->t.rows, f->t.n, &req, &c, errstr, sizeof(errstr)) != IS_OK)
        fail_msg("replay_apply: %s", errstr);
    return c;
}

/*
 * The watermark --apply advances is the consume loop's: over movements and
 * seq_fills (a sequence the producer gave to a movement the store holds
 * under another one). Sequences 1..3 stored, 4 a seq fill, the watermark
 * stuck at 3: --apply queues 5, and the watermark moves to 5, not staying
 * at 3 until consume.gap_timeout.
 */
static void test_apply_advances_the_watermark_over_seq_fills(void **state) {
    fx_t *f = *state;
    char text[64];
    for (uint64_t seq = 1; seq <= 3; seq++) {
        char id[8];
        snprintf(id, sizeof(id), "M-%d", (int)seq);
        tmov_t m = {
            .seq = seq, .id = id, .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
        consume(f, &m, NULL, (int64_t)seq - 1);
    }
    exec_sql(f, "INSERT INTO seq_fills(producer_id, site, seq, received_at)"
                " VALUES('P1', '" SITE "', 4, 0)");
    store_text(f, WATERMARK, text, sizeof(text));
    assert_string_equal(text, "3");
    tmov_t m5 = {
        .seq = 5, .id = "M-5", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    deliver(f, &m5, 4);
    replay_apply_counts_t c = apply_all(f);
    assert_int_equal(c.newly_queued, 1);
    store_text(f, WATERMARK, text, sizeof(text));
    assert_string_equal(text, "5");
}

/*
 * A replayed movement whose id the store holds under another sequence (an
 * MES resend the producer accepted again after outbox.retention forgot the
 * first) is not applied, but its sequence lands in seq_fills and closes the
 * watermark, as in the consume loop: whether the store had it when the
 * timeline was read (M-1 resent as 3) or the consume loop stored it, under
 * another sequence, meanwhile (M-4 replayed as 4, stored as 5). A second
 * --apply adds nothing.
 */
static void test_apply_records_a_resend_under_another_sequence(void **state) {
    fx_t *f = *state;
    char text[64];
    tmov_t m1 = {
        .seq = 1, .id = "M-1", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    tmov_t m2 = {
        .seq = 2, .id = "M-2", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    tmov_t m1_again = m1,
           m4 = {
               .seq = 4, .id = "M-4", .lot = "L1", .type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION};
    tmov_t m4_stored = m4;
    m1_again.seq = 3;
    m4_stored.seq = 5;
    consume(f, &m1, NULL, 0);
    consume(f, &m2, NULL, 1);
    deliver(f, &m1_again, 2);
    deliver(f, &m4, 3);
    consume(f, &m4_stored, NULL, 4); /* after the timeline was read */
    store_text(f, WATERMARK, text, sizeof(text));
    assert_string_equal(text, "2");
    replay_apply_counts_t c = apply_all(f);
    assert_int_equal(c.newly_queued, 0);
    assert_int_equal(c.already_known, 2);
    store_text(f, SEQ_FILLS, text, sizeof(text));
    assert_string_equal(text, "3,4");
    store_text(f, WATERMARK, text, sizeof(text));
    assert_string_equal(text, "5");
    store_text(f, "SELECT count(*) FROM movements", text, sizeof(text));
    assert_string_equal(text, "3");
    apply_all(f);
    store_text(f, SEQ_FILLS, text, sizeof(text));
    assert_string_equal(text, "3,4");
}

/* A movement of a posting cut into chunks (max_lines) is shown with its
 * chunk's ERP document, not the posting's "<first>+<n-1>" (store migration 10). */
static void test_chunked_posting_shows_each_movement_in_its_chunk_document(void **state) {
    fx_t *f = *state;
    static const tmov_t c1 = {1, "C1", "L1", INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, NULL, 0, 0};
    static const tmov_t c2 = {2, "C2", "L1", INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, NULL, 0, 0};
    consume(f, &c1, NULL, 0);
    consume(f, &c2, NULL, 1);
    exec_sql(f, "INSERT INTO postings(posting_id, site, tier, lot_key, state, attempts, erp_doc,"
                " lines, created_at, updated_at) SELECT 'P1', site, tier, lot_key, 'posted', 1,"
                " '4900000001+1', 2, 0, 0 FROM movements WHERE movement_id = 'C1';"
                "UPDATE movements SET state = 'posted', posting_id = 'P1';"
                "INSERT INTO posting_chunks VALUES('P1', 1, '4900000001', 1),"
                " ('P1', 2, '4900000002', 1);"
                "INSERT INTO chunk_movements SELECT id, 'P1', seq FROM movements;");
    deliver(f, &c1, 0);
    deliver(f, &c2, 1);
    static const char *const want[2] = {"4900000001", "4900000002"};
    for (size_t i = 0; i < 2; i++) {
        json_t *o = row(f, i);
        assert_string_equal(str(o, "status"), "posted");
        assert_string_equal(str(o, "erp_document"), want[i]);
        json_decref(o);
    }
}

/* The poster writes a chunked posting's references and document with these;
 * replay's ERP check reads them back. */
static void test_chunk_spelling_round_trips(void **state) {
    char doc[64], ref[64];
    (void)state;
    erp_chunked_document(doc, sizeof(doc), "4900000001", 3);
    assert_string_equal(doc, "4900000001+2");
    assert_int_equal(erp_document_chunks(doc), 3);
    erp_chunked_document(doc, sizeof(doc), "DOC+7", 2); /* a '+' in the ERP's own number */
    assert_int_equal(erp_document_chunks(doc), 2);
    assert_int_equal(erp_document_chunks("4900000001"), 1);
    assert_int_equal(erp_document_chunks("A+B"), 1);
    assert_int_equal(erp_document_chunks("A+"), 1);
    assert_int_equal(erp_document_chunks(NULL), 1);
    erp_chunk_reference(ref, sizeof(ref), "aaaa", 2);
    assert_string_equal(ref, "aaaa-2");
}

/* --check-erp on postings cut into chunks (max_lines): the ERP holds them as
 * <posting_id>-1 … -n, never under the bare id; the store's document
 * "<first>+<n-1>" says how many. All there: found; none: missing (re-queued
 * by --apply); some: partial, not re-queued (that would book the others
 * twice). A posting in one piece is looked up by its id. */
static void test_check_erp_finds_chunked_postings(void **state) {
    fx_t *f = *state;
    char errstr[512], ledger[160];
    consumer_config_t cfg;
    erp_t *erp = NULL;
    sqlite3 *db = NULL;
    replay_apply_counts_t c;
    memset(&cfg, 0, sizeof(cfg));
    memset(&c, 0, sizeof(c));
    snprintf(ledger, sizeof(ledger), "%s/ledger.db", f->dir);
    cfg.erp.adapter = "sqlite";
    cfg.erp.sqlite_path = ledger;
    assert_int_equal(erp_open(&cfg.erp, &erp, errstr, sizeof(errstr)), IS_OK); /* the schema */
    erp_close(erp);
    assert_int_equal(sqlite3_open(ledger, &db), SQLITE_OK);
    const char *refs[] = {"aaaa-1", "aaaa-2", "aaaa-3", "bbbb-1", "dddd"};
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO documents(doc_no, posting_id, site, tier, policy_version,"
                 " posting_time, posted_at, line_count) VALUES('49%08zu', '%s', 'S1', 'daily',"
                 " 'v1', 0, 0, 1)",
                 i + 1, refs[i]);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_close(db);
    replay_row_t rows[4];
    memset(rows, 0, sizeof(rows));
    const char *ids[] = {"aaaa", "bbbb", "cccc", "dddd"};
    char *docs[] = {"4900000001+2", "4900000004+1", "4900000009+1", "4900000005"};
    for (int i = 0; i < 4; i++) {
        rows[i].in_store = 1;
        snprintf(rows[i].state, sizeof(rows[i].state), "posted");
        snprintf(rows[i].posting_id, sizeof(rows[i].posting_id), "%s", ids[i]);
        rows[i].document = docs[i];
    }
    assert_int_equal(replay_check_erp(&cfg, rows, 4, &c, errstr, sizeof(errstr)), IS_OK);
    assert_string_equal(rows[0].erp_check, "found");
    assert_false(rows[0].requeue);
    assert_string_equal(rows[1].erp_check, "partial");
    assert_false(rows[1].requeue);
    assert_string_equal(rows[2].erp_check, "missing");
    assert_true(rows[2].requeue);
    assert_string_equal(rows[3].erp_check, "found");
    assert_int_equal(c.postings_checked, 4);
    assert_int_equal(c.postings_missing, 1);
    assert_int_equal(c.postings_partial, 1);
    assert_int_equal(c.posted_confirmed, 2);
    assert_int_equal(c.posted_partial, 1);
    assert_int_equal(c.posted_missing, 1);
}

/* An empty replay says why on stderr: each case of what the reader learnt
 * (watermarks, offsets for `from`, messages read past `to`) gives its own
 * hint naming the range and the topics. */
static void test_an_empty_replay_says_why(void **state) {
    (void)state;
    static const int64_t FROM = 1764460800000, TO = 1764464400000; /* 2025-11-30T00..01Z */
    static const struct {
        const char *name;
        replay_info_t info;
        size_t read, movements;
        const char *want;
    } cases[] = {
        {"topics empty",
         {.topics = 3, .partitions = 3},
         0,
         0,
         "no movements between 2025-11-30T00:00:00.000Z and 2025-11-30T01:00:00.000Z: the 3 "
         "topic(s) invsync.PLANT1.<tier> hold nothing"},
        {"all deleted",
         {.topics = 1, .partitions = 1, .retention_gap = 1},
         0,
         0,
         "hold nothing (retention deleted all they had)"},
        {"range before the data",
         {.topics = 3, .partitions = 3, .partitions_with_data = 2, .next_after_ms = TO + 60000},
         0,
         0,
         "no movements between 2025-11-30T00:00:00.000Z and 2025-11-30T01:00:00.000Z in 3 "
         "topic(s) invsync.PLANT1.<tier>; the first message after 2025-11-30T00:00:00.000Z is at "
         "2025-11-30T01:01:00.000Z"},
        {"range after the data",
         {.topics = 3, .partitions = 3, .partitions_with_data = 2, .partitions_older = 2},
         0,
         0,
         "; every message in these topics is older than 2025-11-30T00:00:00.000Z"},
        {"only heartbeats",
         {.topics = 3, .partitions = 3, .partitions_with_data = 3},
         4,
         0,
         "the 4 message(s) there are heartbeats or undecodable"},
        {"filtered out",
         {.topics = 3, .partitions = 3, .partitions_with_data = 3},
         9,
         7,
         "7 movement(s) between 2025-11-30T00:00:00.000Z and 2025-11-30T01:00:00.000Z in 3 "
         "topic(s) invsync.PLANT1.<tier>, none matches the filters"},
    };
    replay_filter_t filter = {.site = "PLANT1"};
    char hint[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        replay_empty_hint(&cases[i].info, "invsync", &filter, FROM, TO, cases[i].read,
                          cases[i].movements, hint, sizeof(hint));
        if (!strstr(hint, cases[i].want))
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].name, hint, cases[i].want);
    }
    filter.site = NULL;
    filter.tier = "daily";
    replay_info_t none = {.topics = 2};
    replay_empty_hint(&none, "invsync", &filter, FROM, TO, 0, 0, hint, sizeof(hint));
    assert_non_null(strstr(hint, "2 topic(s) invsync.<site>.daily hold nothing"));
}

/* A partition that retention emptied has no oldest message to name: the
 * hint says so instead of "data before 1970-01-01T00:00:00.000Z" (what
 * genealogy --from/--to printed). */
static void test_retention_hint_names_the_oldest_data_or_an_emptied_partition(void **state) {
    (void)state;
    char hint[160];
    replay_info_t kept = {.retention_gap = 1, .retention_earliest_ms = 1764460801500};
    replay_retention_hint(&kept, hint, sizeof(hint));
    assert_string_equal(hint,
                        "data before 2025-11-30T00:00:01.500Z is no longer in Kafka (retention)");
    replay_info_t emptied = {.retention_gap = 1, .retention_earliest_ms = 0};
    replay_retention_hint(&emptied, hint, sizeof(hint));
    assert_null(strstr(hint, "1970"));
    assert_string_equal(hint,
                        "some partitions no longer hold any data (retention deleted all of it)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retention_hint_names_the_oldest_data_or_an_emptied_partition),
        cmocka_unit_test_setup_teardown(test_a_movement_held_behind_a_failed_posting_says_which,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_skipped_posting_says_who_skipped_it_and_why, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_lettered_rows_show_the_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_reversal_names_what_it_reverses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_counts_every_row_and_audits_the_whole_selection,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_audit_without_filters_records_them_as_null,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_advances_the_watermark_over_seq_fills, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_apply_records_a_resend_under_another_sequence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_erp_finds_chunked_postings, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_chunked_posting_shows_each_movement_in_its_chunk_document, setup, teardown),
        cmocka_unit_test(test_chunk_spelling_round_trips),
        cmocka_unit_test(test_an_empty_replay_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
