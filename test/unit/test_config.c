/*
 * test_config.c — table-driven configuration: defaults, every type from a
 * file, bounds, unknown keys with suggestions, environment overrides, kafka
 * passthrough in both YAML styles, missing files and --help.
 *
 * Error cases are a table of (YAML, environment, expected message); "@" in
 * the expected message stands for the temporary file's path.
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

#include "config.h"

typedef struct tcfg {
    char *listen;
    int64_t threads;
    int64_t max_conns;
    int tls;
    int64_t timeout_ms;
    int64_t max_body;
    is_strmap_t tokens;
    is_strlist_t sites;
    char *db_path;
    char *mode;
} tcfg_t;

static const is_cfg_entry_t table[] = {
    {"http.listen", IS_CFG_STR, offsetof(tcfg_t, listen), 0, 0, "127.0.0.1:8080",
     "address to listen on", NULL},
    {"http.threads", IS_CFG_INT, offsetof(tcfg_t, threads), 1, 64, "4", "worker threads", NULL},
    {"http.max-conns", IS_CFG_INT, offsetof(tcfg_t, max_conns), 0, 0, "100", "connection cap",
     NULL},
    {"http.tls", IS_CFG_BOOL, offsetof(tcfg_t, tls), 0, 0, "false", "serve TLS", NULL},
    {"http.timeout", IS_CFG_DURATION, offsetof(tcfg_t, timeout_ms), 100, 3600000, "30s",
     "request timeout", NULL},
    {"http.max_body_bytes", IS_CFG_SIZE, offsetof(tcfg_t, max_body), 1024, 64 << 20, "8MiB",
     "largest request body", NULL},
    {"auth.tokens", IS_CFG_STRMAP, offsetof(tcfg_t, tokens), 0, 0, NULL, "site → bearer token",
     NULL},
    {"sites", IS_CFG_STRLIST, offsetof(tcfg_t, sites), 0, 0, "PLANT1", "sites served", NULL},
    {"db.path", IS_CFG_STR, offsetof(tcfg_t, db_path), 0, 0, NULL, "SQLite file", NULL},
    {"consume.mode", IS_CFG_STR, offsetof(tcfg_t, mode), 0, 0, "group", "how to consume",
     "group|assign|replay"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static char g_path[64];

static void write_file(const char *text) {
    int fd;
    snprintf(g_path, sizeof(g_path), "/tmp/test_config_XXXXXX");
    fd = mkstemp(g_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Load text (NULL: no file) into c, kafka into k, sources into s; returns rc, err filled. */
static is_err_t load_sources(const char *text, tcfg_t *c, is_strmap_t *k, is_cfg_sources_t *s,
                             char *err, size_t n) {
    is_err_t rc;
    /* Garbage first: the loader must not rely on a zeroed struct. */
    memset(c, 0xAB, sizeof(*c));
    if (s)
        memset(s, 0xAB, sizeof(*s));
    if (text)
        write_file(text);
    rc = is_cfg_load(table, c, text ? g_path : NULL, "INVSYNC_", k, s, err, n);
    if (text)
        unlink(g_path);
    return rc;
}

static is_err_t load(const char *text, tcfg_t *c, is_strmap_t *k, char *err, size_t n) {
    return load_sources(text, c, k, NULL, err, n);
}

static void test_defaults(void **state) {
    tcfg_t c;
    is_strmap_t k = {0};
    char err[256];
    (void)state;
    assert_int_equal(load(NULL, &c, &k, err, sizeof(err)), IS_OK);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.tls, 0);
    assert_int_equal(c.timeout_ms, 30000);
    assert_int_equal(c.max_body, 8 << 20);
    assert_int_equal(c.tokens.n, 0);
    assert_int_equal(c.sites.n, 1);
    assert_string_equal(c.sites.items[0], "PLANT1");
    assert_null(c.db_path);
    assert_int_equal(k.n, 0);
    is_cfg_release(table, &c);
    is_cfg_release(table, &c); /* idempotent */
}

static void test_good_file(void **state) {
    const char *y = "# producer config\n"
                    "http:\n"
                    "  listen: \":9090\"\n"
                    "  threads: 64\n"
                    "  tls: yes\n"
                    "  timeout: 1m30s\n"
                    "  max_body_bytes: 100kB\n"
                    "auth:\n"
                    "  tokens:\n"
                    "    PLANT1: s3cret\n"
                    "    PLANT2: \"other\"\n"
                    "sites: [PLANT1, PLANT2]\n"
                    "db.path: /var/lib/invsync/outbox.db\n"
                    "kafka:\n"
                    "  bootstrap.servers: broker:9092\n"
                    "  security: { protocol: SASL_SSL }\n"
                    "  linger.ms: 5\n";
    tcfg_t c;
    is_strmap_t k = {0};
    char err[256] = "";
    (void)state;
    if (load(y, &c, &k, err, sizeof(err)) != IS_OK)
        fail_msg("%s", err);
    assert_string_equal(c.listen, ":9090");
    assert_int_equal(c.threads, 64);
    assert_int_equal(c.max_conns, 100);
    assert_int_equal(c.tls, 1);
    assert_int_equal(c.timeout_ms, 90000);
    assert_int_equal(c.max_body, 100000);
    assert_int_equal(c.tokens.n, 2);
    assert_string_equal(is_strmap_get(&c.tokens, "PLANT1"), "s3cret");
    assert_string_equal(is_strmap_get(&c.tokens, "PLANT2"), "other");
    assert_null(is_strmap_get(&c.tokens, "PLANT3"));
    assert_int_equal(c.sites.n, 2);
    assert_true(is_strlist_contains(&c.sites, "PLANT2"));
    assert_false(is_strlist_contains(&c.sites, "PLANT3"));
    assert_string_equal(c.db_path, "/var/lib/invsync/outbox.db");
    assert_int_equal(k.n, 3);
    assert_string_equal(is_strmap_get(&k, "bootstrap.servers"), "broker:9092");
    assert_string_equal(is_strmap_get(&k, "security.protocol"), "SASL_SSL");
    assert_string_equal(is_strmap_get(&k, "linger.ms"), "5");
    is_cfg_release(table, &c);
    is_strmap_release(&k);
}

/* Each type's accepted spellings, one key at a time. */
static void test_each_type(void **state) {
    static const struct {
        const char *yaml;
        size_t off;
        int ok;
        int64_t want;
    } cases[] = {
        {"http: {threads: 1}", offsetof(tcfg_t, threads), 1, 1},
        {"http.max-conns: -5", offsetof(tcfg_t, max_conns), 1, -5},
        {"http.timeout: 150ms", offsetof(tcfg_t, timeout_ms), 1, 150},
        {"http.timeout: 2h", offsetof(tcfg_t, timeout_ms), 0, 0},
        {"http.timeout: 1h", offsetof(tcfg_t, timeout_ms), 1, 3600000},
        {"http.timeout: 500", offsetof(tcfg_t, timeout_ms), 1, 500},
        {"http.max_body_bytes: 8MiB", offsetof(tcfg_t, max_body), 1, 8 << 20},
        {"http.max_body_bytes: 4096", offsetof(tcfg_t, max_body), 1, 4096},
        {"http.tls: ON", offsetof(tcfg_t, tls), 1, 1},
        {"http.tls: 0", offsetof(tcfg_t, tls), 1, 0},
        {"http.tls: True", offsetof(tcfg_t, tls), 1, 1},
        {"http.tls: no", offsetof(tcfg_t, tls), 1, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tcfg_t c;
        char err[256] = "";
        is_err_t rc = load(cases[i].yaml, &c, NULL, err, sizeof(err));
        if (!cases[i].ok) {
            assert_int_equal(rc, IS_ERR_CONFIG);
        } else {
            int64_t got;
            if (rc != IS_OK)
                fail_msg("case %zu: %s", i, err);
            if (cases[i].off == offsetof(tcfg_t, tls))
                got = c.tls;
            else
                memcpy(&got, (char *)&c + cases[i].off, sizeof(got));
            if (got != cases[i].want)
                fail_msg("case %zu: got %lld want %lld", i, (long long)got,
                         (long long)cases[i].want);
        }
        is_cfg_release(table, &c);
    }
}

static void test_strings_lists_and_nulls(void **state) {
    tcfg_t c;
    char err[256] = "";
    (void)state;
    /* One scalar is a one-item list; ~ leaves the default; quoted "" is a value. */
    assert_int_equal(
        load("sites: PLANT9\nhttp:\n  listen: ~\ndb:\n  path: \"\"\n", &c, NULL, err, sizeof(err)),
        IS_OK);
    assert_int_equal(c.sites.n, 1);
    assert_string_equal(c.sites.items[0], "PLANT9");
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.db_path, "");
    is_cfg_release(table, &c);
    /* An empty section, everything commented out. */
    assert_int_equal(load("http:\n#  listen: x\nsites: []\n", &c, NULL, err, sizeof(err)), IS_OK);
    assert_int_equal(c.sites.n, 0);
    is_cfg_release(table, &c);
    /* An empty file is all defaults. */
    assert_int_equal(load("", &c, NULL, err, sizeof(err)), IS_OK);
    assert_int_equal(c.threads, 4);
    is_cfg_release(table, &c);
}

static void test_errors(void **state) {
    static const struct {
        const char *yaml;
        const char *env; /* "NAME=value" or NULL */
        is_err_t rc;
        const char *want; /* '@' = file path */
    } cases[] = {
        {"http:\n  listen: x\nhtpp.listen: y\n", NULL, IS_ERR_CONFIG,
         "@:3: unknown key 'htpp.listen' (did you mean 'http.listen'?)"},
        {"htpp:\n  listen: x\n", NULL, IS_ERR_CONFIG,
         "@:2: unknown key 'htpp.listen' (did you mean 'http.listen'?)"},
        {"htpp:\n  zzz: x\n", NULL, IS_ERR_CONFIG,
         "@:2: unknown key 'htpp.zzz' (did you mean section 'http'?)"},
        {"http:\n  treads: 4\n", NULL, IS_ERR_CONFIG,
         "@:2: unknown key 'http.treads' (did you mean 'http.threads'?)"},
        {"auth:\n  tokns:\n    P1: x\n", NULL, IS_ERR_CONFIG,
         "@:3: unknown key 'auth.tokns' (did you mean 'auth.tokens'?)"},
        {"zzz: 1\n", NULL, IS_ERR_CONFIG, "@:1: unknown key 'zzz'"},
        {"zzz:\n  yyy: 1\n", NULL, IS_ERR_CONFIG, "@:2: unknown key 'zzz.yyy'"},
        {"htpp: 1\n", NULL, IS_ERR_CONFIG, "@:1: unknown key 'htpp' (did you mean 'http'?)"},
        {"http:\n  threads: 0\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.threads': '0' is below the minimum 1"},
        {"http:\n  threads: 65\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.threads': '65' is above the maximum 64"},
        {"http:\n  threads: four\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.threads': 'four' is not an integer"},
        {"http.max-conns: 99999999999999999999\n", NULL, IS_ERR_CONFIG,
         "@:1: key 'http.max-conns': '99999999999999999999' is too large"},
        {"http:\n  timeout: 5x\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.timeout': '5x' is not a duration (e.g. 150ms, 30s, 5m, 2h, 1d)"},
        {"http:\n  timeout: -1s\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.timeout': '-1s' is not a duration (e.g. 150ms, 30s, 5m, 2h, 1d)"},
        {"http:\n  timeout: 50ms\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.timeout': '50ms' is below the minimum 100ms"},
        {"consume:\n  mode: asign\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'consume.mode': 'asign' is not group, assign or replay"},
        {"consume:\n  mode: assign\n", "INVSYNC_CONSUME_MODE=Group", IS_ERR_CONFIG,
         "environment INVSYNC_CONSUME_MODE (key 'consume.mode'): 'Group' is not group, assign or "
         "replay"},
        {"http:\n  timeout: 5\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.timeout': '5' is below the minimum 100ms (a number without a unit is "
         "milliseconds: write 5s, 2m, …)"},
        {"http:\n  timeout: 2h\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.timeout': '2h' is above the maximum 1h"},
        {"http:\n  max_body_bytes: abc\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.max_body_bytes': 'abc' is not a size (e.g. 8MiB, 100kB, 4096)"},
        {"http:\n  max_body_bytes: 1GiB\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.max_body_bytes': '1GiB' is above the maximum 64MiB"},
        {"http:\n  tls: maybe\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'http.tls': 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)"},
        {"http.listen: [a]\n", NULL, IS_ERR_CONFIG,
         "@:1: key 'http.listen': expected a scalar, not a sequence"},
        {"sites: {a: 1}\n", NULL, IS_ERR_CONFIG,
         "@:1: key 'sites': expected a sequence or scalar, not a mapping"},
        {"sites:\n  - [a]\n", NULL, IS_ERR_CONFIG, "@:2: key 'sites': list items must be scalars"},
        {"auth.tokens: x\n", NULL, IS_ERR_CONFIG, "@:1: key 'auth.tokens': expected a mapping"},
        {"auth:\n  tokens:\n    P1: [x]\n", NULL, IS_ERR_CONFIG,
         "@:3: key 'auth.tokens.P1': expected a scalar"},
        /* A map value is kept verbatim: ~ would become the token "~", not "no token". */
        {"auth:\n  tokens:\n    P1: x\n    P2: ~\n", NULL, IS_ERR_CONFIG,
         "@:4: key 'auth.tokens.P2': no value (empty, ~ or null): remove the entry or quote the "
         "value"},
        {"auth:\n  tokens: {P1: null}\n", NULL, IS_ERR_CONFIG,
         "@:2: key 'auth.tokens.P1': no value (empty, ~ or null): remove the entry or quote the "
         "value"},
        {"http: 5\n", NULL, IS_ERR_CONFIG, "@:1: key 'http' is a section: expected a mapping"},
        {"http.listen: a\nhttp:\n  listen: b\n", NULL, IS_ERR_CONFIG,
         "@:3: key 'http.listen': also set at line 1"},
        {"kafka: x\n", NULL, IS_ERR_CONFIG, "@:1: key 'kafka': expected a mapping"},
        {"kafka:\n  bootstrap.servers: a\n  bootstrap:\n    servers: b\n", NULL, IS_ERR_CONFIG,
         "@:4: key 'kafka.bootstrap.servers': also set at line 2"},
        {"- a\n- b\n", NULL, IS_ERR_CONFIG, "@:1: the top level must be a mapping"},
        {"http:\n  listen: a\n  listen: b\n", NULL, IS_ERR_CONFIG,
         "@:3: duplicate key 'listen' (first at line 2)"},
        {"http: {listen: \"x\"\n", NULL, IS_ERR_CONFIG,
         "@:2: did not find expected ',' or '}' (while parsing a flow mapping at line 1)"},
        {"", "INVSYNC_HTTP_THREADS=0", IS_ERR_CONFIG,
         "environment INVSYNC_HTTP_THREADS (key 'http.threads'): '0' is below the minimum 1"},
        {"", "INVSYNC_HTTP_TIMEOUT=soon", IS_ERR_CONFIG,
         "environment INVSYNC_HTTP_TIMEOUT (key 'http.timeout'): 'soon' is not a duration (e.g. "
         "150ms, 30s, 5m, 2h, "
         "1d)"},
        {"", "INVSYNC_HTTP_TLS=", IS_ERR_CONFIG,
         "environment INVSYNC_HTTP_TLS (key 'http.tls'): '' is not a boolean (true/false, yes/no, "
         "on/off, 1/0)"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tcfg_t c;
        is_strmap_t k = {0};
        char err[512] = "", want[512], envname[64] = "";
        const char *at;
        is_err_t rc;
        if (cases[i].env) {
            const char *eq = strchr(cases[i].env, '=');
            snprintf(envname, sizeof(envname), "%.*s", (int)(eq - cases[i].env), cases[i].env);
            setenv(envname, eq + 1, 1);
        }
        rc = load(cases[i].yaml, &c, &k, err, sizeof(err));
        if (cases[i].env)
            unsetenv(envname);
        at = strchr(cases[i].want, '@');
        if (at)
            snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - cases[i].want), cases[i].want,
                     g_path, at + 1);
        else
            snprintf(want, sizeof(want), "%s", cases[i].want);
        if (rc != cases[i].rc || strcmp(err, want) != 0)
            fail_msg("case %zu: rc %d '%s'\n  want rc %d '%s'", i, rc, err, cases[i].rc, want);
        is_cfg_release(table, &c);
        is_strmap_release(&k);
    }
}

static void test_bad_default(void **state) {
    static const is_cfg_entry_t bad[] = {
        {"a.b", IS_CFG_DURATION, 0, 0, 0, "soon", "x", NULL},
        {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
    };
    int64_t v;
    char err[256];
    (void)state;
    assert_int_equal(is_cfg_load(bad, &v, NULL, NULL, NULL, NULL, err, sizeof(err)), IS_ERR_CONFIG);
    assert_string_equal(err, "default for key 'a.b': 'soon' is not a duration (e.g. 150ms, 30s, "
                             "5m, 2h, 1d)");
}

static void test_env_overrides(void **state) {
    tcfg_t c;
    is_strmap_t k = {0};
    char err[256] = "";
    (void)state;
    setenv("INVSYNC_HTTP_LISTEN", "0.0.0.0:80", 1);
    setenv("INVSYNC_HTTP_THREADS", "8", 1);
    setenv("INVSYNC_HTTP_MAX_CONNS", "7", 1); /* '-' in the key becomes '_' */
    setenv("INVSYNC_SITES", " A, B ,,C ", 1);
    setenv("INVSYNC_KAFKA_BOOTSTRAP_SERVERS", "env:9092", 1);
    setenv("INVSYNC_KAFKA_SASL_PASSWORD", "pw", 1);
    setenv("INVSYNC_HTPP_LISTEN", "typo:1", 1); /* not a key: logged and ignored */
    setenv("OTHER_KAFKA_X", "ignored", 1);
    if (load("http:\n  listen: file:1\n  threads: 2\nkafka:\n  bootstrap:\n    servers: f:1\n"
             "  acks: all\n",
             &c, &k, err, sizeof(err)) != IS_OK)
        fail_msg("%s", err);
    unsetenv("INVSYNC_HTTP_LISTEN");
    unsetenv("INVSYNC_HTTP_THREADS");
    unsetenv("INVSYNC_HTTP_MAX_CONNS");
    unsetenv("INVSYNC_SITES");
    unsetenv("INVSYNC_KAFKA_BOOTSTRAP_SERVERS");
    unsetenv("INVSYNC_KAFKA_SASL_PASSWORD");
    unsetenv("INVSYNC_HTPP_LISTEN");
    unsetenv("OTHER_KAFKA_X");
    assert_string_equal(c.listen, "0.0.0.0:80");
    assert_int_equal(c.threads, 8);
    assert_int_equal(c.max_conns, 7);
    assert_int_equal(c.sites.n, 3);
    assert_string_equal(c.sites.items[0], "A");
    assert_string_equal(c.sites.items[1], "B");
    assert_string_equal(c.sites.items[2], "C");
    assert_int_equal(c.tokens.n, 0);
    assert_int_equal(k.n, 3);
    assert_string_equal(is_strmap_get(&k, "bootstrap.servers"), "env:9092");
    assert_string_equal(is_strmap_get(&k, "sasl.password"), "pw");
    assert_string_equal(is_strmap_get(&k, "acks"), "all");
    is_cfg_release(table, &c);
    is_strmap_release(&k);
}

/* A map (auth.tokens) cannot come from one variable: setting it anyway is an
 * error naming the variable, not a silent no-op (every request would get 401). */
static void test_env_map_is_refused(void **state) {
    tcfg_t c;
    is_strmap_t k = {0};
    char err[256] = "";
    (void)state;
    setenv("INVSYNC_AUTH_TOKENS", "PLANT1=secret", 1);
    is_err_t rc = load("http:\n  listen: file:1\n", &c, &k, err, sizeof(err));
    unsetenv("INVSYNC_AUTH_TOKENS");
    assert_int_equal(rc, IS_ERR_CONFIG);
    assert_string_equal(err, "environment INVSYNC_AUTH_TOKENS: 'auth.tokens' is a map and can "
                             "only be set in the configuration file");
    is_cfg_release(table, &c);
    is_strmap_release(&k);
}

/* `kafka: {bootstrap.servers: x}` and `kafka: {bootstrap: {servers: x}}` are the same. */
static void test_kafka_styles(void **state) {
    static const char *const styles[] = {
        "kafka:\n  bootstrap.servers: x:9092\n",
        "kafka:\n  bootstrap:\n    servers: x:9092\n",
        "kafka: {bootstrap: {servers: \"x:9092\"}}\n",
        "kafka.bootstrap.servers: x:9092\n",
        "kafka.bootstrap:\n  servers: x:9092\n",
        "kafka:\n  bootstrap.servers: [x:9092]\n",
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(styles) / sizeof(styles[0]); i++) {
        tcfg_t c;
        is_strmap_t k = {0};
        char err[256] = "";
        if (load(styles[i], &c, &k, err, sizeof(err)) != IS_OK)
            fail_msg("style %zu: %s", i, err);
        assert_int_equal(k.n, 1);
        assert_string_equal(k.keys[0], "bootstrap.servers");
        assert_string_equal(k.vals[0], "x:9092");
        is_cfg_release(table, &c);
        is_strmap_release(&k);
    }
}

/*
 * is_cfg_source names where each value came from, for the services' checks
 * after the load: the file and line, or the environment variable (which
 * overrides the file), or the bare file for a default.
 */
static void test_sources(void **state) {
    tcfg_t c;
    is_strmap_t k = {0};
    is_cfg_sources_t s;
    char err[256] = "", buf[256], want[256];
    (void)state;
    setenv("INVSYNC_HTTP_THREADS", "8", 1);
    setenv("INVSYNC_SITES", "A,B", 1);
    setenv("INVSYNC_KAFKA_BOOTSTRAP_SERVERS", "env:9092", 1);
    is_err_t rc = load_sources("http:\n  listen: file:1\n  threads: 2\n  tls: ~\n"
                               "kafka:\n  acks: all\n  bootstrap.servers: f:1\n",
                               &c, &k, &s, err, sizeof(err));
    unsetenv("INVSYNC_HTTP_THREADS");
    unsetenv("INVSYNC_SITES");
    unsetenv("INVSYNC_KAFKA_BOOTSTRAP_SERVERS");
    if (rc != IS_OK)
        fail_msg("%s", err);
    snprintf(want, sizeof(want), "%s:2: key 'http.listen'", g_path);
    assert_string_equal(is_cfg_source(&s, "http.listen", buf, sizeof(buf)), want);
    assert_string_equal(is_cfg_source(&s, "http.threads", buf, sizeof(buf)),
                        "environment INVSYNC_HTTP_THREADS (key 'http.threads')");
    assert_string_equal(is_cfg_source(&s, "sites", buf, sizeof(buf)),
                        "environment INVSYNC_SITES (key 'sites')");
    snprintf(want, sizeof(want), "%s:6: key 'kafka.acks'", g_path);
    assert_string_equal(is_cfg_source(&s, "kafka.acks", buf, sizeof(buf)), want);
    assert_string_equal(is_cfg_source(&s, "kafka.bootstrap.servers", buf, sizeof(buf)),
                        "environment INVSYNC_KAFKA_BOOTSTRAP_SERVERS (key "
                        "'kafka.bootstrap.servers')");
    /* A default, and a null in the file (the default stays): the file, no line. */
    snprintf(want, sizeof(want), "%s: key 'http.timeout'", g_path);
    assert_string_equal(is_cfg_source(&s, "http.timeout", buf, sizeof(buf)), want);
    snprintf(want, sizeof(want), "%s: key 'http.tls'", g_path);
    assert_string_equal(is_cfg_source(&s, "http.tls", buf, sizeof(buf)), want);
    is_cfg_release(table, &c);
    is_strmap_release(&k);
    is_cfg_sources_release(&s);
    /* Without a file. */
    setenv("INVSYNC_DB_PATH", "x.db", 1);
    rc = is_cfg_load(table, &c, NULL, "INVSYNC_", NULL, &s, err, sizeof(err));
    unsetenv("INVSYNC_DB_PATH");
    assert_int_equal(rc, IS_OK);
    assert_string_equal(is_cfg_source(&s, "db.path", buf, sizeof(buf)),
                        "environment INVSYNC_DB_PATH (key 'db.path')");
    assert_string_equal(is_cfg_source(&s, "http.listen", buf, sizeof(buf)),
                        "no --config file, environment only: key 'http.listen'");
    is_cfg_release(table, &c);
    is_cfg_sources_release(&s);
    is_cfg_sources_release(&s); /* idempotent */
}

static void test_kafka_list_and_preseed(void **state) {
    tcfg_t c;
    is_strmap_t k = {0};
    char err[256] = "";
    (void)state;
    /* A pre-seeded value survives unless the file overrides it. */
    assert_int_equal(is_strmap_set(&k, "enable.idempotence", "true"), IS_OK);
    assert_int_equal(is_strmap_set(&k, "acks", "1"), IS_OK);
    assert_int_equal(
        load("kafka:\n  bootstrap.servers: [a:1, b:2]\n  acks: all\n", &c, &k, err, sizeof(err)),
        IS_OK);
    assert_string_equal(is_strmap_get(&k, "bootstrap.servers"), "a:1,b:2");
    assert_string_equal(is_strmap_get(&k, "enable.idempotence"), "true");
    assert_string_equal(is_strmap_get(&k, "acks"), "all");
    is_cfg_release(table, &c);
    is_strmap_release(&k);
    /* kafka_out NULL: kafka keys are still accepted. */
    assert_int_equal(load("kafka:\n  acks: all\n", &c, NULL, err, sizeof(err)), IS_OK);
    is_cfg_release(table, &c);
}

static void test_missing_file(void **state) {
    tcfg_t c;
    char err[256];
    (void)state;
    memset(&c, 0xAB, sizeof(c));
    assert_int_equal(is_cfg_load(table, &c, "/nonexistent/invsync.yaml", "INVSYNC_", NULL, NULL,
                                 err, sizeof(err)),
                     IS_ERR_IO);
    assert_string_equal(err, "cannot open '/nonexistent/invsync.yaml': No such file or directory");
    is_cfg_release(table, &c); /* safe after any error */
}

static void test_help(void **state) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    size_t i;
    (void)state;
    assert_non_null(f);
    is_cfg_print_help(table, "INVSYNC_", f);
    fclose(f);
    for (i = 0; table[i].key; i++) {
        assert_non_null(strstr(buf, table[i].key));
        assert_non_null(strstr(buf, table[i].desc));
    }
    assert_non_null(strstr(buf, "  http.listen (string, default \"127.0.0.1:8080\", env "
                                "INVSYNC_HTTP_LISTEN)\n      address to listen on\n"));
    assert_non_null(strstr(buf, "  http.threads (int, 1..64, default \"4\", env "
                                "INVSYNC_HTTP_THREADS)\n"));
    assert_non_null(strstr(buf, "http.timeout (duration, 100ms..1h, default \"30s\""));
    assert_non_null(strstr(buf, "http.max_body_bytes (size, 1KiB..64MiB, default \"8MiB\""));
    assert_non_null(strstr(buf, "  auth.tokens (map)\n"));
    assert_non_null(strstr(buf, "env INVSYNC_SITES comma-separated"));
    assert_non_null(strstr(buf, "INVSYNC_KAFKA_BOOTSTRAP_SERVERS"));
    free(buf);
}

static void test_strmap(void **state) {
    is_strmap_t m = {0};
    is_strlist_t l = {0};
    (void)state;
    assert_int_equal(is_strmap_set(&m, "a", "1"), IS_OK);
    assert_int_equal(is_strmap_set(&m, "a", "2"), IS_OK);
    assert_int_equal(m.n, 1);
    assert_string_equal(is_strmap_get(&m, "a"), "2");
    assert_null(is_strmap_get(NULL, "a"));
    assert_int_equal(is_strmap_set(&m, NULL, "x"), IS_ERR_INVALID);
    is_strmap_release(&m);
    is_strmap_release(&m);
    assert_false(is_strlist_contains(&l, "x"));
    is_strlist_release(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_each_type),     cmocka_unit_test(test_strings_lists_and_nulls),
        cmocka_unit_test(test_errors),        cmocka_unit_test(test_bad_default),
        cmocka_unit_test(test_env_overrides), cmocka_unit_test(test_env_map_is_refused),
        cmocka_unit_test(test_kafka_styles),  cmocka_unit_test(test_kafka_list_and_preseed),
        cmocka_unit_test(test_missing_file),  cmocka_unit_test(test_help),
        cmocka_unit_test(test_strmap),        cmocka_unit_test(test_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
