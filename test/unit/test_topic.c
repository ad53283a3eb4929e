/*
 * test_topic.c — topic names, parsing and the subscription regex; the regex
 * is also compiled with POSIX extended regcomp (what librdkafka uses on
 * Linux) and matched against real and look-alike topic names.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "topic.h"

static void test_part_valid(void **state) {
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"PLANT1", 1},
        {"plant_1-a", 1},
        {"", 0},
        {"a.b", 0},
        {"a b", 0},
        {"a/b", 0},
        {"é", 0},
        {"x*", 0},
        {"1", 1},
        {"0123456789012345678901234567890123456789012345678901234567890123", 1},
        {"01234567890123456789012345678901234567890123456789012345678901234", 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (is_topic_part_valid(cases[i].s) != cases[i].ok)
            fail_msg("case %zu '%s'", i, cases[i].s);
    }
    assert_false(is_topic_part_valid(NULL));
}

static void test_name(void **state) {
    char buf[IS_TOPIC_MAX + 1], small[8], longp[300];
    (void)state;
    assert_int_equal(is_topic_name(buf, sizeof(buf), "invsync", "PLANT1", "realtime"), 23);
    assert_string_equal(buf, "invsync.PLANT1.realtime");
    assert_int_equal(is_topic_name(buf, sizeof(buf), "acme.invsync", "P1", IS_TOPIC_DLQ), 19);
    assert_string_equal(buf, "acme.invsync.P1.dlq");
    assert_int_equal(is_topic_name(buf, sizeof(buf), "invsync", "PL.1", "t"), -1);
    assert_int_equal(is_topic_name(buf, sizeof(buf), "invsync", "P1", ""), -1);
    assert_int_equal(is_topic_name(buf, sizeof(buf), "", "P1", "t"), -1);
    assert_int_equal(is_topic_name(buf, sizeof(buf), "in*sync", "P1", "t"), -1);
    assert_int_equal(is_topic_name(small, sizeof(small), "invsync", "P1", "t"), -1);
    memset(longp, 'p', 246);
    longp[246] = '\0';
    assert_int_equal(is_topic_name(buf, sizeof(buf), longp, "P", "t"), -1); /* 250 > 249 */
    longp[245] = '\0';
    assert_int_equal(is_topic_name(buf, sizeof(buf), longp, "P", "t"), IS_TOPIC_MAX);
}

static void test_parse(void **state) {
    static const struct {
        const char *topic, *prefix;
        is_err_t rc;
        const char *site, *tier;
    } cases[] = {
        {"invsync.PLANT1.realtime", "invsync", IS_OK, "PLANT1", "realtime"},
        {"acme.invsync.P-2.dlq", "acme.invsync", IS_OK, "P-2", "dlq"},
        {"invsync.PLANT1", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"invsync.a.b.c", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"invsyncX.a.b", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"other.a.b", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"invsync..b", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"invsync.a.", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"invsync.a b.c", "invsync", IS_ERR_INVALID, NULL, NULL},
        {"invsync.VERYLONGSITE.t", "invsync", IS_ERR_OVERFLOW, NULL, NULL},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char site[8] = "", tier[16] = "";
        is_err_t rc =
            is_topic_parse(cases[i].topic, cases[i].prefix, site, sizeof(site), tier, sizeof(tier));
        if (rc != cases[i].rc)
            fail_msg("case %zu '%s': rc %d", i, cases[i].topic, rc);
        if (rc == IS_OK) {
            assert_string_equal(site, cases[i].site);
            assert_string_equal(tier, cases[i].tier);
        }
    }
}

static int matches(const char *re, const char *s) {
    regex_t r;
    int m;
    assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    m = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return m;
}

static void test_regex(void **state) {
    static const char *const tiers[] = {"realtime", "nearline", "dlq"};
    char buf[256], small[10];
    (void)state;
    assert_int_equal(is_topic_regex(buf, sizeof(buf), "invsync", NULL, tiers, 2),
                     (int)strlen("^invsync\\.[^.]+\\.(realtime|nearline)$"));
    assert_string_equal(buf, "^invsync\\.[^.]+\\.(realtime|nearline)$");
    assert_true(matches(buf, "invsync.PLANT1.realtime"));
    assert_true(matches(buf, "invsync.P2.nearline"));
    assert_false(matches(buf, "invsync.P2.dlq"));
    assert_false(matches(buf, "invsyncX.P2.realtime"));
    assert_false(matches(buf, "invsync.a.b.realtime"));
    assert_false(matches(buf, "invsync.P2.realtime2"));
    assert_false(matches(buf, "xinvsync.P2.realtime"));

    /* Dots and other metacharacters in the prefix match only themselves. */
    assert_true(is_topic_regex(buf, sizeof(buf), "acme.inv+sync", NULL, tiers, 1) > 0);
    assert_string_equal(buf, "^acme\\.inv\\+sync\\.[^.]+\\.(realtime)$");
    assert_true(matches(buf, "acme.inv+sync.P1.realtime"));
    assert_false(matches(buf, "acmeXinvvsync.P1.realtime"));
    assert_true(is_topic_regex(buf, sizeof(buf), "a(b)[c]{1}|^$?*\\", NULL, tiers, 1) > 0);
    assert_true(matches(buf, "a(b)[c]{1}|^$?*\\.P1.realtime"));

    /* sites_re replaces [^.]+ and an alternation stays in the site position. */
    assert_true(is_topic_regex(buf, sizeof(buf), "invsync", "PLANT1|PLANT2", tiers, 3) > 0);
    assert_string_equal(buf, "^invsync\\.(PLANT1|PLANT2)\\.(realtime|nearline|dlq)$");
    assert_true(matches(buf, "invsync.PLANT2.dlq"));
    assert_false(matches(buf, "invsync.PLANT3.dlq"));
    assert_false(matches(buf, "PLANT2.realtime"));

    assert_int_equal(is_topic_regex(small, sizeof(small), "invsync", NULL, tiers, 1), -1);
    assert_string_equal(small, "");
    assert_int_equal(is_topic_regex(buf, sizeof(buf), "invsync", NULL, tiers, 0), -1);
    assert_int_equal(is_topic_regex(buf, sizeof(buf), "", NULL, tiers, 1), -1);
    {
        static const char *const bad[] = {"ok", "a|b"};
        assert_int_equal(is_topic_regex(buf, sizeof(buf), "invsync", NULL, bad, 2), -1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_part_valid),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_regex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
