/*
 * test_api.c — erp-consumer's HTTP API (api.c) on a real store and server,
 * talked to with libcurl: /readyz names partial pauses and stale tiers but
 * stays 200 (only a pause of everything takes the pod out of service); the admin endpoints
 * refuse unknown or non-string fields naming them, and check the tier
 * against the policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "duration.h"
#include "store.h"

#define TOKEN "test-admin-token"

typedef struct fx {
    char dir[64], store_path[128], policy_path[128], base[64];
    consumer_config_t cfg;
    is_policy_t *policy;
    consumer_stats_t stats;
    store_t *store; /* the test's own connection */
    api_t *api;
} fx_t;

static const char POLICY[] = "topic_prefix: invsync\n"
                             "tiers:\n"
                             "  realtime: {cadence: immediate, stale_after: 2m}\n"
                             "  periodic: {cadence: every 30m, stale_after: 90m}\n"
                             "rules:\n"
                             "  - {when: {type: [QUARANTINE, RELEASE]}, tier: realtime}\n"
                             "default_tier: periodic\n";

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    char errstr[512];
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_api.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->store_path, sizeof(f->store_path), "%s/store.db", f->dir);
    snprintf(f->policy_path, sizeof(f->policy_path), "%s/policy.yaml", f->dir);
    FILE *pf = fopen(f->policy_path, "w");
    assert_non_null(pf);
    fputs(POLICY, pf);
    fclose(pf);
    assert_int_equal(is_policy_load(f->policy_path, &f->policy, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_open(f->store_path, IS_DB_SYNC_OFF, &f->store, errstr, sizeof(errstr)),
                     IS_OK);
    assert_int_equal(sqlite3_exec(store_db(f->store),
                                  "INSERT INTO sites(site, last_heartbeat_at)"
                                  " VALUES('PLANT1', 1), ('PLANT2', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    f->cfg.http_listen = "127.0.0.1:0";
    f->cfg.http_threads = 2;
    f->cfg.store_path = f->store_path;
    f->cfg.admin_token = TOKEN;
    f->cfg.erp.adapter = "sqlite";
    pthread_mutex_init(&f->stats.lag_mu, NULL);
    atomic_store(&f->stats.kafka_up, 1);
    assert_int_equal(api_start(&f->cfg, f->policy, &f->stats, &f->api, errstr, sizeof(errstr)),
                     IS_OK);
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%u", (unsigned)api_port(f->api));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    char cmd[128];
    api_stop(f->api);
    store_close(f->store);
    is_policy_destroy(f->policy);
    pthread_mutex_destroy(&f->stats.lag_mu);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

typedef struct reply {
    long status;
    char *body;
    size_t len;
} reply_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
    reply_t *r = arg;
    char *b = realloc(r->body, r->len + size * n + 1);
    assert_non_null(b);
    memcpy(b + r->len, p, size * n);
    r->len += size * n;
    b[r->len] = '\0';
    r->body = b;
    return size * n;
}

/* GET path (body NULL) or POST body with the Authorization header auth (NULL: none); the
 * reply's JSON, status in *status. */
static json_t *call_auth(fx_t *f, const char *path, const char *body, const char *auth,
                         long *status) {
    char url[256];
    reply_t r = {0};
    struct curl_slist *hdrs = NULL;
    json_error_t jerr;
    CURL *c = curl_easy_init();
    assert_non_null(c);
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    if (auth)
        hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    json_t *doc = json_loads(r.body ? r.body : "", 0, &jerr);
    if (!doc)
        fail_msg("%s: not JSON (%s): %s", path, jerr.text, r.body ? r.body : "");
    free(r.body);
    *status = r.status;
    return doc;
}

/* The same with the admin token. */
static json_t *call(fx_t *f, const char *path, const char *body, long *status) {
    return call_auth(f, path, body, "Authorization: Bearer " TOKEN, status);
}

static const char *str(json_t *doc, const char *key) {
    const char *v = json_string_value(json_object_get(doc, key));
    return v ? v : "(none)";
}

static void test_readyz_names_a_partial_pause_and_stays_ready(void **state) {
    fx_t *f = *state;
    long status;
    json_t *doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(str(doc, "posting"), "running");
    assert_int_equal(json_array_size(json_object_get(doc, "paused")), 0);
    json_decref(doc);

    doc = call(f, "/admin/pause",
               "{\"site\":\"PLANT1\",\"tier\":\"periodic\",\"by\":\"alice\",\"reason\":\"ERP\"}",
               &status);
    assert_int_equal(status, 200);
    json_decref(doc);
    doc = call(f, "/admin/pause",
               "{\"site\":\"PLANT2\",\"tier\":\"*\",\"by\":\"alice\",\"reason\":\"ERP\"}", &status);
    assert_int_equal(status, 200);
    json_decref(doc);

    doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 200); /* the other sites and tiers still post */
    assert_true(json_is_true(json_object_get(doc, "ready")));
    assert_string_equal(str(doc, "posting"), "paused for PLANT1/periodic, PLANT2/*");
    json_t *paused = json_object_get(doc, "paused");
    assert_int_equal(json_array_size(paused), 2);
    assert_string_equal(str(json_array_get(paused, 0), "site"), "PLANT1");
    assert_string_equal(str(json_array_get(paused, 0), "tier"), "periodic");
    json_decref(doc);

    /* Everything paused: out of service, as before. */
    doc = call(f, "/admin/pause",
               "{\"site\":\"*\",\"tier\":\"*\",\"by\":\"alice\",\"reason\":\"ERP\"}", &status);
    assert_int_equal(status, 200);
    json_decref(doc);
    doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 503);
    assert_string_equal(str(doc, "posting"), "paused for all sites and tiers");
    assert_int_equal(json_array_size(json_object_get(doc, "paused")), 3);
    json_decref(doc);
}

/* /readyz tells a consumer that lost Kafka from one that never reached it. */
static void test_readyz_says_whether_kafka_was_ever_reached(void **state) {
    fx_t *f = *state;
    long status;
    atomic_store(&f->stats.kafka_up, 0);
    json_t *doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 503);
    assert_string_equal(str(doc, "kafka"), "no message received yet or unreachable");
    json_decref(doc);
    atomic_store(&f->stats.messages, 12);
    doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 503);
    assert_string_equal(str(doc, "kafka"), "unreachable (messages were received before)");
    json_decref(doc);
    atomic_store(&f->stats.kafka_up, 1);
    doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(str(doc, "kafka"), "connected");
    json_decref(doc);
}

/* A stale (site, tier) is named in /readyz (issue 5: "visible in metrics, readiness
 * detail and the status page") and keeps the consumer in service. */
static void test_readyz_names_stale_tiers_and_stays_ready(void **state) {
    fx_t *f = *state;
    long status;
    char sql[1024];
    int64_t now = is_clock_now_ms(NULL);
    json_t *doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(doc, "stale")), 0);
    json_decref(doc);

    /* PLANT1/realtime waits 3 minutes (limit 2m): stale. PLANT1/periodic waits
     * 10 minutes (limit 90m) and PLANT2/realtime was posted 3 hours ago: not. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO movements(source_system, movement_id, producer_id, site, seq, lot_key,"
             " tier, type, topic, part, off, received_at, accepted_at, due_at, state, payload)"
             " VALUES('MES', 'M-1', 'p', 'PLANT1', 1, 'PLANT1/M/L1', 'realtime', 4,"
             "        'invsync.PLANT1.realtime', 0, 0, %lld, %lld, %lld, 'queued', x''),"
             "       ('MES', 'M-2', 'p', 'PLANT1', 2, 'PLANT1/M/L2', 'periodic', 1,"
             "        'invsync.PLANT1.periodic', 0, 0, %lld, %lld, %lld, 'queued', x''),"
             "       ('MES', 'M-3', 'p', 'PLANT2', 1, 'PLANT2/M/L3', 'realtime', 4,"
             "        'invsync.PLANT2.realtime', 0, 0, %lld, %lld, %lld, 'posted', x'')",
             (long long)(now - 180000), (long long)(now - 180000), (long long)(now - 180000),
             (long long)(now - 600000), (long long)(now - 600000), (long long)(now + 600000),
             (long long)(now - 10800000), (long long)(now - 10800000), (long long)(now - 10800000));
    assert_int_equal(sqlite3_exec(store_db(f->store), sql, NULL, NULL, NULL), SQLITE_OK);

    doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(doc, "ready")));
    json_t *stale = json_object_get(doc, "stale");
    assert_int_equal(json_array_size(stale), 1);
    json_t *cell = json_array_get(stale, 0);
    assert_string_equal(str(cell, "site"), "PLANT1");
    assert_string_equal(str(cell, "tier"), "realtime");
    assert_true(json_number_value(json_object_get(cell, "oldest_unposted_age_s")) >= 180.0);
    assert_true(json_number_value(json_object_get(cell, "stale_after_s")) == 120.0);
    json_decref(doc);
}

/* Staleness is the age of the data, from the producer's acceptance: a
 * movement that waited 3 minutes in the producer's outbox (Kafka down) and
 * was received just now is 3 minutes old, stale for realtime (2m), in the
 * status grid, /readyz and /metrics alike. Counted from receipt it read 0. */
static void test_staleness_counts_from_acceptance_not_receipt(void **state) {
    fx_t *f = *state;
    long status;
    char sql[1024];
    int64_t now = is_clock_now_ms(NULL);
    snprintf(sql, sizeof(sql),
             "INSERT INTO movements(source_system, movement_id, producer_id, site, seq, lot_key,"
             " tier, type, topic, part, off, received_at, accepted_at, due_at, state, payload)"
             " VALUES('MES', 'M-LATE', 'p', 'PLANT1', 1, 'PLANT1/M/L1', 'realtime', 4,"
             "        'invsync.PLANT1.realtime', 0, 0, %lld, %lld, %lld, 'queued', x'')",
             (long long)now, (long long)(now - 180000), (long long)now);
    assert_int_equal(sqlite3_exec(store_db(f->store), sql, NULL, NULL, NULL), SQLITE_OK);

    json_t *doc = call(f, "/v1/status", NULL, &status);
    assert_int_equal(status, 200);
    json_t *grid = json_object_get(doc, "grid"), *c, *found = NULL;
    size_t i;
    json_array_foreach(grid, i, c) {
        if (strcmp(str(c, "site"), "PLANT1") == 0 && strcmp(str(c, "tier"), "realtime") == 0)
            found = c;
    }
    assert_non_null(found);
    assert_true(json_is_true(json_object_get(found, "stale")));
    assert_true(json_number_value(json_object_get(found, "oldest_unposted_age_s")) >= 180.0);
    json_decref(doc);

    doc = call(f, "/readyz", NULL, &status);
    assert_int_equal(json_array_size(json_object_get(doc, "stale")), 1);
    json_decref(doc);

    store_counts_t counts;
    char errstr[256];
    assert_int_equal(store_counts(f->store, &counts, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(counts.oldest_unposted_ms, now - 180000);
}

static void test_admin_refuses_unknown_and_non_string_fields(void **state) {
    fx_t *f = *state;
    long status;
    static const struct {
        const char *path, *body, *expect;
    } bad[] = {
        {"/admin/pause",
         "{\"site\":\"PLANT1\",\"tier\":\"periodic\",\"by\":\"a\",\"reason\":\"r\",\"until\":"
         "\"x\"}",
         "unknown field 'until'"},
        {"/admin/pause",
         "{\"site\":\"PLANT1\",\"teir\":\"periodic\",\"by\":\"a\",\"reason\":\"r\"}",
         "unknown field 'teir'"},
        {"/admin/flush", "{\"site\":\"PLANT1\",\"tier\":\"periodic\",\"by\":\"a\",\"why\":\"r\"}",
         "unknown field 'why'"},
        {"/admin/pause", "{\"site\":\"PLANT1\",\"tier\":5,\"by\":\"a\",\"reason\":\"r\"}",
         "'tier' must be a string"},
        {"/admin/resume", "{\"site\":\"PLANT1\",\"site\":\"PLANT2\",\"by\":\"a\",\"reason\":\"r\"}",
         "duplicate"},
        {"/admin/failed/p1/retry", "{\"by\":\"a\",\"reason\":\"r\",\"site\":\"PLANT1\"}",
         "unknown field 'site'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *doc = call(f, bad[i].path, bad[i].body, &status);
        const char *err = str(doc, "error");
        if (status != 400 || !strstr(err, bad[i].expect))
            fail_msg("case %zu %s %s: status %ld, error \"%s\"", i, bad[i].path, bad[i].body,
                     status, err);
        json_decref(doc);
    }
    assert_false(store_is_paused(f->store, "PLANT1", "periodic"));
}

static void test_admin_checks_the_tier_against_the_policy(void **state) {
    fx_t *f = *state;
    long status;
    json_t *doc =
        call(f, "/admin/pause",
             "{\"site\":\"PLANT1\",\"tier\":\"hourly\",\"by\":\"a\",\"reason\":\"r\"}", &status);
    assert_int_equal(status, 400);
    assert_string_equal(str(doc, "error"), "unknown tier 'hourly': the policy's tiers are "
                                           "realtime, periodic (or \"*\" for all tiers)");
    json_decref(doc);
    assert_false(store_is_paused(f->store, "PLANT1", "hourly"));
}

/* /v1/trace answers one question asked exactly: an empty, doubled or unknown parameter is a
 * 400 saying so, not a 404 for '' or an answer to half of the question. */
static void test_trace_refuses_an_empty_doubled_or_unknown_parameter(void **state) {
    fx_t *f = *state;
    long status;
    static const struct {
        const char *path, *expect;
    } bad[] = {
        {"/v1/trace", "give either ?movement_id=<id> or ?document=<ERP document>"},
        {"/v1/trace?movement_id=", "'movement_id' is empty"},
        {"/v1/trace?document=", "'document' is empty"},
        {"/v1/trace?movement_id=M1&document=D1",
         "give either ?movement_id=<id> or ?document=<ERP document>, not both"},
        {"/v1/trace?movment_id=M1",
         "unknown parameter 'movment_id': give ?movement_id=<id> or ?document=<ERP document>"},
        {"/v1/trace?movement_id=M1&site=PLANT1",
         "unknown parameter 'site': give ?movement_id=<id> or ?document=<ERP document>"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *doc = call(f, bad[i].path, NULL, &status);
        const char *err = str(doc, "error");
        if (status != 400 || strcmp(err, bad[i].expect) != 0)
            fail_msg("case %zu %s: status %ld, error \"%s\"", i, bad[i].path, status, err);
        json_decref(doc);
    }
    /* A well-formed question about nothing known is still a 404. */
    json_t *doc = call(f, "/v1/trace?movement_id=M1", NULL, &status);
    assert_int_equal(status, 404);
    json_decref(doc);
}

/* A retry or skip of an id too long to be a posting id says so, not "use
 * /admin/failed/<posting_id>/retry" (the path was right). */
static void test_failed_action_of_an_overlong_id_says_it_is_not_a_posting_id(void **state) {
    fx_t *f = *state;
    long status;
    char path[512], id[300];
    static const char body[] = "{\"by\":\"a\",\"reason\":\"r\"}";
    static const size_t lens[] = {128, 200, 127};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memset(id, 'a', lens[i]);
        id[lens[i]] = '\0';
        snprintf(path, sizeof(path), "/admin/failed/%s/%s", id, i == 1 ? "skip" : "retry");
        json_t *doc = call(f, path, body, &status);
        const char *err = str(doc, "error");
        char want[400];
        if (lens[i] >= 128)
            snprintf(want, sizeof(want), "(%zu characters) is not a posting id: too long", lens[i]);
        else
            snprintf(want, sizeof(want), "no posting '%s'", id);
        if (status != 404 || !strstr(err, want) || strstr(err, "use /admin/failed"))
            fail_msg("id of %zu characters: status %ld, error \"%s\"", lens[i], status, err);
        json_decref(doc);
    }
    /* A wrong action is still told the path. */
    json_t *doc = call(f, "/admin/failed/p1/retyr", body, &status);
    assert_int_equal(status, 404);
    assert_string_equal(str(doc, "error"), "use /admin/failed/<posting_id>/retry or .../skip");
    json_decref(doc);
}

/* An Authorization header that is there but not "Bearer <token>" is named as such (as the
 * producer does), not "missing bearer token"; the token is never echoed. */
static void test_admin_names_a_malformed_authorization_header(void **state) {
    fx_t *f = *state;
    long status;
    static const char *const bad[] = {
        "Authorization: Basic dXNlcjpwYXNz",
        "Authorization: " TOKEN,
        "Authorization: Bearer",
        "Authorization: Bearer a b",
    };
    static const char body[] = "{\"site\":\"PLANT1\",\"tier\":\"periodic\",\"by\":\"a\","
                               "\"reason\":\"r\"}";
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *doc = call_auth(f, "/admin/pause", body, bad[i], &status);
        const char *err = str(doc, "error");
        if (status != 401 ||
            strcmp(err, "malformed Authorization header: expected 'Bearer <token>'") != 0)
            fail_msg("case %zu '%s': status %ld, error \"%s\"", i, bad[i], status, err);
        json_decref(doc);
    }
    json_t *doc = call_auth(f, "/admin/pause", body, NULL, &status);
    assert_int_equal(status, 401);
    assert_string_equal(str(doc, "error"), "missing bearer token");
    json_decref(doc);
    doc = call_auth(f, "/admin/pause", body, "Authorization: Bearer nope", &status);
    assert_int_equal(status, 401);
    assert_string_equal(str(doc, "error"), "unknown token");
    json_decref(doc);
    assert_false(store_is_paused(f->store, "PLANT1", "periodic"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readyz_says_whether_kafka_was_ever_reached, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_staleness_counts_from_acceptance_not_receipt, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readyz_names_stale_tiers_and_stays_ready, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readyz_names_a_partial_pause_and_stays_ready, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_admin_refuses_unknown_and_non_string_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_admin_checks_the_tier_against_the_policy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trace_refuses_an_empty_doubled_or_unknown_parameter,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_names_a_malformed_authorization_header, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_failed_action_of_an_overlong_id_says_it_is_not_a_posting_id, setup, teardown),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
