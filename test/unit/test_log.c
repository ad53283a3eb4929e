/*
 * test_log.c — the JSON-lines logger: stderr is captured through a pipe
 * (dup2 onto fd 2) and every line is parsed back with jansson, so escaping,
 * truncation and level filtering are checked on what a log shipper would see.
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
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "duration.h"
#include "log.h"

typedef struct capture {
    int saved_fd;
    int read_fd;
} capture_t;

static void capture_begin(capture_t *c) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    c->read_fd = p[0];
}

/* Restore stderr and return everything written (malloc'd, NUL-terminated). */
static char *capture_end(capture_t *c) {
    size_t len = 0, cap = 1024;
    char *buf = malloc(cap);
    ssize_t n;
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    assert_non_null(buf);
    for (;;) {
        if (cap - len < 512) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        n = read(c->read_fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(c->read_fd);
    buf[len] = '\0';
    return buf;
}

/* Parse the single line in out; fails the test unless it is exactly one valid JSON object. */
static json_t *one_line(const char *out) {
    json_error_t jerr;
    json_t *j;
    const char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
    j = json_loadb(out, (size_t)(nl - out), 0, &jerr);
    if (!j)
        fail_msg("invalid JSON (%s): %s", jerr.text, out);
    assert_true(json_is_object(j));
    return j;
}

static const char *jstr(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void test_basic_line(void **state) {
    capture_t c;
    char *out;
    json_t *j;
    int64_t ts;
    (void)state;
    is_log_init("mes-producer", IS_LOG_INFO);
    capture_begin(&c);
    is_log(IS_LOG_INFO, "movement accepted", "movement_id", "MV-1", "site", "PLANT1", "serial",
           (const char *)NULL, (const char *)NULL);
    out = capture_end(&c);
    j = one_line(out);
    assert_string_equal(jstr(j, "level"), "info");
    assert_string_equal(jstr(j, "service"), "mes-producer");
    assert_string_equal(jstr(j, "msg"), "movement accepted");
    assert_string_equal(jstr(j, "movement_id"), "MV-1");
    assert_string_equal(jstr(j, "site"), "PLANT1");
    assert_true(json_is_null(json_object_get(j, "serial")));
    assert_null(json_object_get(j, "truncated"));
    assert_int_equal(strlen(jstr(j, "ts")), 24);
    assert_int_equal(is_parse_rfc3339(jstr(j, "ts"), &ts), IS_OK);
    assert_true(ts > 1700000000000LL);
    /* Field order is part of the format: ts first, then level, service, msg. */
    assert_memory_equal(out, "{\"ts\":\"", 7);
    assert_non_null(strstr(out, "\",\"level\":\"info\",\"service\":\"mes-producer\",\"msg\":"));
    json_decref(j);
    free(out);
}

/* Each input must come back unchanged (or as the given replacement). */
static void test_escaping(void **state) {
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"say \"hi\"", NULL},
        {"back\\slash", NULL},
        {"two\nlines\r\n", NULL},
        {"tab\there", NULL},
        {"ctl\x01\x02\x1f\x7f\b\f", NULL},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6", NULL},
        {"bad\xff", "bad\xef\xbf\xbd"},
        {"cut\xc3", "cut\xef\xbf\xbd"},
        {"overlong\xc0\xaf", "overlong\xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate\xed\xa0\x80", "surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"</script>", NULL},
        {"", NULL},
    };
    size_t i;
    (void)state;
    is_log_init("t", IS_LOG_DEBUG);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *want = cases[i].want ? cases[i].want : cases[i].in;
        capture_t c;
        char *out;
        json_t *j;
        capture_begin(&c);
        is_log(IS_LOG_WARN, cases[i].in, "k\"ey\n", cases[i].in, (const char *)NULL);
        out = capture_end(&c);
        j = one_line(out);
        if (strcmp(jstr(j, "msg"), want) != 0 || strcmp(jstr(j, "k\"ey\n"), want) != 0)
            fail_msg("case %zu: %s", i, out);
        /* Raw control bytes never reach the output. */
        assert_null(strchr(out, '\x01'));
        assert_null(strchr(out, '\x7f'));
        json_decref(j);
        free(out);
    }
}

static void test_level_filter(void **state) {
    capture_t c;
    char *out, *line2;
    json_t *j;
    is_log_level_t l;
    (void)state;
    is_log_init("t", IS_LOG_WARN);
    assert_false(is_log_enabled(IS_LOG_DEBUG));
    assert_false(is_log_enabled(IS_LOG_INFO));
    assert_true(is_log_enabled(IS_LOG_WARN));
    assert_true(is_log_enabled(IS_LOG_ERROR));
    capture_begin(&c);
    is_log(IS_LOG_DEBUG, "no", (const char *)NULL);
    is_log(IS_LOG_INFO, "no", (const char *)NULL);
    is_logf(IS_LOG_INFO, "no %d", 1);
    is_log(IS_LOG_WARN, "yes-warn", (const char *)NULL);
    is_logf(IS_LOG_ERROR, "yes-%s %d", "error", 42);
    out = capture_end(&c);
    line2 = strchr(out, '\n') + 1;
    j = json_loadb(out, (size_t)(line2 - out - 1), 0, NULL);
    assert_non_null(j);
    assert_string_equal(jstr(j, "level"), "warn");
    assert_string_equal(jstr(j, "msg"), "yes-warn");
    json_decref(j);
    j = one_line(line2);
    assert_string_equal(jstr(j, "level"), "error");
    assert_string_equal(jstr(j, "msg"), "yes-error 42");
    json_decref(j);
    free(out);

    assert_int_equal(is_log_level_parse("debug", &l), IS_OK);
    assert_int_equal(l, IS_LOG_DEBUG);
    assert_int_equal(is_log_level_parse("error", &l), IS_OK);
    assert_int_equal(l, IS_LOG_ERROR);
    assert_int_equal(is_log_level_parse("warning", &l), IS_ERR_INVALID);
    assert_int_equal(is_log_level_parse("INFO", &l), IS_ERR_INVALID);
    assert_int_equal(is_log_level_parse(NULL, &l), IS_ERR_INVALID);
}

static void test_truncation(void **state) {
    static char big[40000];
    capture_t c;
    char *out;
    json_t *j;
    size_t i;
    (void)state;
    is_log_init("t", IS_LOG_INFO);
    /* Multi-byte and escaped characters so the cut lands mid-sequence if it can. */
    for (i = 0; i + 2 < sizeof(big); i += 3)
        memcpy(big + i, i % 2 ? "\xc3\xa9\n" : "\"ab", 3);
    big[sizeof(big) - 1] = '\0';

    capture_begin(&c);
    is_log(IS_LOG_INFO, "big field", "a", "kept", "b", big, "c", "dropped", (const char *)NULL);
    out = capture_end(&c);
    assert_true(strlen(out) <= 16384);
    j = one_line(out);
    assert_string_equal(jstr(j, "msg"), "big field");
    assert_string_equal(jstr(j, "a"), "kept");
    assert_non_null(jstr(j, "b"));
    assert_true(strlen(jstr(j, "b")) > 10000);
    assert_null(json_object_get(j, "c"));
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    free(out);

    capture_begin(&c);
    is_log(IS_LOG_INFO, big, (const char *)NULL);
    out = capture_end(&c);
    assert_true(strlen(out) <= 16384);
    j = one_line(out);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    free(out);

    capture_begin(&c);
    is_logf(IS_LOG_INFO, "%s", big);
    out = capture_end(&c);
    j = one_line(out);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    free(out);

    /* Two 10 KB fields: the first is kept whole, the second is cut. */
    memset(big, 'x', 10000);
    big[10000] = '\0';
    capture_begin(&c);
    is_log(IS_LOG_INFO, "m", "f", big, "g", big, (const char *)NULL);
    out = capture_end(&c);
    assert_true(strlen(out) <= 16384);
    j = one_line(out);
    assert_string_equal(jstr(j, "f"), big);
    assert_true(strlen(jstr(j, "g")) > 0 && strlen(jstr(j, "g")) < 10000);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    free(out);
}

static void quiet_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

static void test_rdkafka_cb(void **state) {
    static const struct {
        int syslog;
        const char *level; /* NULL: filtered out at info */
    } cases[] = {{0, "error"}, {3, "error"}, {4, "warn"}, {5, "info"}, {6, "info"}, {7, NULL}};
    size_t i;
    (void)state;
    is_log_init("erp-consumer", IS_LOG_INFO);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        capture_t c;
        char *out;
        capture_begin(&c);
        is_log_rdkafka_cb(NULL, cases[i].syslog, "FAIL", "broker down: \"x\"");
        out = capture_end(&c);
        if (!cases[i].level) {
            assert_string_equal(out, "");
        } else {
            json_t *j = one_line(out);
            assert_string_equal(jstr(j, "level"), cases[i].level);
            assert_string_equal(jstr(j, "msg"), "broker down: \"x\"");
            assert_string_equal(jstr(j, "facility"), "FAIL");
            assert_true(json_is_null(json_object_get(j, "kafka")));
            json_decref(j);
        }
        free(out);
    }
    {
        char err[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;
        rd_kafka_conf_set_log_cb(conf, quiet_cb); /* its own start-up warning is not our line */
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        capture_t c;
        char *out;
        json_t *j;
        assert_non_null(rk);
        capture_begin(&c);
        is_log_rdkafka_cb(rk, 4, "CONF", "x");
        out = capture_end(&c);
        j = one_line(out);
        assert_string_equal(jstr(j, "kafka"), rd_kafka_name(rk));
        json_decref(j);
        free(out);
        rd_kafka_destroy(rk);
    }
}

/* The first line passes, then one per interval, each saying how many it held. */
static void test_limit(void **state) {
    is_log_limit_t l = {0};
    unsigned long long held = 99;
    (void)state;
    assert_true(is_log_limit_pass(&l, 1000, 10000, &held));
    assert_int_equal(held, 0);
    for (int i = 1; i <= 5; i++)
        assert_false(is_log_limit_pass(&l, 1000 + i, 10000, &held));
    assert_false(is_log_limit_pass(&l, 10999, 10000, &held));
    assert_true(is_log_limit_pass(&l, 11000, 10000, &held));
    assert_int_equal(held, 6);
    assert_true(is_log_limit_pass(&l, 30000, 10000, &held));
    assert_int_equal(held, 0);
    /* A clock at 0 still counts as "logged". */
    is_log_limit_t z = {0};
    assert_true(is_log_limit_pass(&z, 0, 10000, &held));
    assert_false(is_log_limit_pass(&z, 5, 10000, &held));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_line),   cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_level_filter), cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_rdkafka_cb),   cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
