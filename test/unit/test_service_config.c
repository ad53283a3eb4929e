/*
 * test_service_config.c — the checks erp-consumer and mes-producer make after
 * the table load (consumer_config_load, producer_config_load) name where the
 * bad value came from: the environment variable when it came from there,
 * otherwise the file and the line that set it (the bare file for a default
 * or a missing value).
 *
 * Each case is (YAML lines added to a valid file, environment, expected
 * message); "@" in the message stands for the file's path. The base files
 * are four lines long, so added lines start at line 5.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "consumer_config.h"
#include "producer_config.h"

typedef struct svc_case {
    const char *yaml; /* appended to the base file */
    const char *env;  /* "NAME=value" or NULL */
    const char *want; /* '@' = file path */
} svc_case_t;

static const char base_yaml[] = "policy:\n"
                                "  path: /etc/invsync/policy.yaml\n"
                                "kafka:\n"
                                "  bootstrap.servers: k:9092\n";

static char g_path[64];

static void write_file(const char *text) {
    int fd;
    snprintf(g_path, sizeof(g_path), "/tmp/test_service_config_XXXXXX");
    fd = mkstemp(g_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, base_yaml, strlen(base_yaml)), (ssize_t)strlen(base_yaml));
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Set "NAME=value" (NULL: nothing); the name goes to name for unset_env. */
static void set_env(const char *env, char *name, size_t size) {
    const char *eq;
    name[0] = '\0';
    if (!env)
        return;
    eq = strchr(env, '=');
    snprintf(name, size, "%.*s", (int)(eq - env), env);
    setenv(name, eq + 1, 1);
}

static void unset_env(const char *name) {
    if (*name)
        unsetenv(name);
}

static void expect(size_t i, const svc_case_t *c, is_err_t rc, const char *err) {
    char want[512];
    const char *at = strchr(c->want, '@');
    if (at)
        snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - c->want), c->want, g_path, at + 1);
    else
        snprintf(want, sizeof(want), "%s", c->want);
    if (rc != IS_ERR_CONFIG || strcmp(err, want) != 0)
        fail_msg("case %zu: rc %d '%s'\n  want '%s'", i, rc, err, want);
    /* A value from the environment must not be blamed on the file. */
    if (c->env && !at && strstr(err, g_path))
        fail_msg("case %zu: '%s' names the file", i, err);
}

/* Load a service's configuration from path and release it: the load's result. */
typedef is_err_t (*load_fn)(const char *path, char *err, size_t size);

static is_err_t load_consumer(const char *path, char *err, size_t size) {
    consumer_config_t cfg;
    is_err_t rc = consumer_config_load(&cfg, path, err, size);
    consumer_config_release(&cfg);
    return rc;
}

static is_err_t load_producer(const char *path, char *err, size_t size) {
    producer_config_t cfg;
    is_err_t rc = producer_config_load(&cfg, path, err, size);
    producer_config_release(&cfg);
    return rc;
}

/* Each case: the base file plus its YAML, its variable set, the error expected. */
static void run_cases(const svc_case_t *cases, size_t n, load_fn load) {
    for (size_t i = 0; i < n; i++) {
        char err[512] = "", name[64];
        is_err_t rc;
        write_file(cases[i].yaml);
        set_env(cases[i].env, name, sizeof(name));
        rc = load(g_path, err, sizeof(err));
        unset_env(name);
        unlink(g_path);
        expect(i, &cases[i], rc, err);
    }
}

static void test_consumer_checks_name_the_source(void **state) {
    static const svc_case_t cases[] = {
        {"", "INVSYNC_SITES_REGEX=(",
         "environment INVSYNC_SITES_REGEX (key 'sites_regex'): '(' is not a valid (POSIX "
         "extended) regular expression"},
        {"sites_regex: \"(\"\n", NULL,
         "@:5: key 'sites_regex': '(' is not a valid (POSIX extended) regular expression"},
        /* The environment overrides the file, and the message follows it. */
        {"sites_regex: PLANT1\n", "INVSYNC_SITES_REGEX=[x",
         "environment INVSYNC_SITES_REGEX (key 'sites_regex'): '[x' is not a valid (POSIX "
         "extended) regular expression"},
        {"", "INVSYNC_HTTP_LISTEN=garbage",
         "environment INVSYNC_HTTP_LISTEN (key 'http.listen'): bad listen address 'garbage': "
         "expected \"host:port\" or \":port\" (port 0-65535)"},
        {"http:\n  threads: 2\n  listen: garbage\n", NULL,
         "@:7: key 'http.listen': bad listen address 'garbage': expected \"host:port\" or "
         "\":port\" (port 0-65535)"},
        {"erp:\n  adapter: http-json\n", "INVSYNC_ERP_HTTP_URL=ftp://erp",
         "environment INVSYNC_ERP_HTTP_URL (key 'erp.http.url'): 'ftp://erp' must start with "
         "http:// or https://"},
        {"erp:\n  adapter: http-json\n  http:\n    url: erp:80\n", NULL,
         "@:8: key 'erp.http.url': 'erp:80' must start with http:// or https://"},
        {"erp:\n  adapter: http-json\n", NULL,
         "@: key 'erp.http.url' is required for erp.adapter http-json"},
        {"", "INVSYNC_POSTER_TIME_ORDERED_IDS_FROM=soon",
         "environment INVSYNC_POSTER_TIME_ORDERED_IDS_FROM (key 'poster.time_ordered_ids_from'): "
         "'soon' is not an RFC 3339 time such as 2026-12-01T00:00:00Z"},
        {"retry:\n  max: 2s\n", "INVSYNC_RETRY_BASE=10s",
         "@:6: key 'retry.max' must not be below retry.base (environment INVSYNC_RETRY_BASE (key "
         "'retry.base'))"},
        {"",
         "INVSYNC_POLICY_PATH=", "environment INVSYNC_POLICY_PATH (key 'policy.path') is required"},
        /* As the producer's outbox: a store that forgets its dedup keys posts twice. */
        {"", "INVSYNC_STORE_PATH=:memory:",
         "environment INVSYNC_STORE_PATH (key 'store.path'): ':memory:' must be a file"},
        {"", "INVSYNC_STORE_PATH=",
         "environment INVSYNC_STORE_PATH (key 'store.path'): '' must be a file"},
        {"store:\n  path: \":memory:\"\n", NULL,
         "@:6: key 'store.path': ':memory:' must be a file"},
        /* A bearer token is one word; a space would lock the API out, a line break split
         * the ERP's header. The message never shows the token. */
        {"admin:\n  token: \"s3cret token\"\n", NULL,
         "@:6: key 'admin.token': the token must be one word of printable ASCII (no spaces or "
         "control characters)"},
        {"", "INVSYNC_STORE_PATH=/tmp",
         "environment INVSYNC_STORE_PATH (key 'store.path'): '/tmp' is a directory, not the "
         "store's file"},
        {"", "INVSYNC_ERP_HTTP_TOKEN=abc\r\nX-Evil: 1",
         "environment INVSYNC_ERP_HTTP_TOKEN (key 'erp.http.token'): the token must be one word "
         "of printable ASCII (no spaces or control characters)"},
    };
    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]), load_consumer);
}

static void test_producer_checks_name_the_source(void **state) {
    static const svc_case_t cases[] = {
        {"", "INVSYNC_PRODUCER_ID=mes 1",
         "environment INVSYNC_PRODUCER_ID (key 'producer_id'): 'mes 1' must be 1..64 chars of "
         "[A-Za-z0-9_-]"},
        {"producer_id: mes.1\n", NULL,
         "@:5: key 'producer_id': 'mes.1' must be 1..64 chars of [A-Za-z0-9_-]"},
        {"", "INVSYNC_OUTBOX_PATH=:memory:",
         "environment INVSYNC_OUTBOX_PATH (key 'outbox.path'): ':memory:' must be a file"},
        {"outbox:\n  path: \":memory:\"\n", NULL,
         "@:6: key 'outbox.path': ':memory:' must be a file"},
        {"outbox:\n  path: /tmp\n", NULL,
         "@:6: key 'outbox.path': '/tmp' is a directory, not the outbox's file"},
        {"", "INVSYNC_HTTP_LISTEN=:99999",
         "environment INVSYNC_HTTP_LISTEN (key 'http.listen'): bad listen address ':99999': "
         "expected \"host:port\" or \":port\" (port 0-65535)"},
        {"",
         "INVSYNC_POLICY_PATH=", "environment INVSYNC_POLICY_PATH (key 'policy.path') is required"},
        /* auth.tokens can only come from the file; a mapping's line is its first entry's. */
        {"auth:\n  tokens:\n    \"a b\": t\n", NULL,
         "@:7: key 'auth.tokens': 'a b' is not a site name ([A-Za-z0-9_-], 1..64) or '*'"},
        {"auth:\n  tokens:\n    P1: \"\"\n", NULL,
         "@:7: key 'auth.tokens': site 'P1': empty token"},
        {"auth:\n  tokens:\n    P1: \"s3cret \"\n", NULL,
         "@:7: key 'auth.tokens': site 'P1': the token must be one word of printable ASCII (no "
         "spaces or control characters)"},
    };
    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]), load_producer);
}

/* store.retention: a duration of at least 1s, unset by default (keep everything). */
static void test_consumer_store_retention(void **state) {
    static const svc_case_t bad[] = {
        {"store:\n  retention: 400x\n", NULL,
         "@:6: key 'store.retention': '400x' is not a duration (e.g. 150ms, 30s, 5m, 2h, 1d)"},
        {"store:\n  retention: -1d\n", NULL,
         "@:6: key 'store.retention': '-1d' is not a duration (e.g. 150ms, 30s, 5m, 2h, 1d)"},
        {"store:\n  retention: 500ms\n", NULL,
         "@:6: key 'store.retention': '500ms' is below the minimum 1s"},
        {"", "INVSYNC_STORE_RETENTION=11000d",
         "environment INVSYNC_STORE_RETENTION (key 'store.retention'): '11000d' is above the "
         "maximum 3650d"},
        {"store:\n  prune_interval: 2h\n", NULL,
         "@:6: key 'store.prune_interval': '2h' is above the maximum 1h"},
    };
    consumer_config_t cfg;
    char err[512] = "";
    (void)state;
    run_cases(bad, sizeof(bad) / sizeof(bad[0]), load_consumer);
    write_file("");
    assert_int_equal(consumer_config_load(&cfg, g_path, err, sizeof(err)), IS_OK);
    assert_int_equal(cfg.store_retention_ms, 0); /* off: keep every movement */
    assert_int_equal(cfg.prune_interval_ms, 60000);
    consumer_config_release(&cfg);
    unlink(g_path);
    write_file("store:\n  retention: 400d\n  prune_interval: 2s\n");
    assert_int_equal(consumer_config_load(&cfg, g_path, err, sizeof(err)), IS_OK);
    assert_int_equal(cfg.store_retention_ms, INT64_C(400) * 86400000);
    assert_int_equal(cfg.prune_interval_ms, 2000);
    consumer_config_release(&cfg);
    unlink(g_path);
}

/* A required value missing everywhere: the file is where it belongs. */
static void test_missing_value_names_the_file(void **state) {
    consumer_config_t c;
    producer_config_t p;
    char err[512] = "";
    (void)state;
    assert_int_equal(consumer_config_load(&c, NULL, err, sizeof(err)), IS_ERR_CONFIG);
    assert_string_equal(err, "no --config file, environment only: key 'policy.path' is required");
    consumer_config_release(&c);
    setenv("INVSYNC_POLICY_PATH", "/p.yaml", 1);
    assert_int_equal(producer_config_load(&p, NULL, err, sizeof(err)), IS_ERR_CONFIG);
    unsetenv("INVSYNC_POLICY_PATH");
    assert_string_equal(err, "no --config file, environment only: key 'kafka.bootstrap.servers' "
                             "is required (or INVSYNC_KAFKA_BOOTSTRAP_SERVERS)");
    producer_config_release(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_store_retention),
        cmocka_unit_test(test_consumer_checks_name_the_source),
        cmocka_unit_test(test_producer_checks_name_the_source),
        cmocka_unit_test(test_missing_value_names_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
