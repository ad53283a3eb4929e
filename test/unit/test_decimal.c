/*
 * test_decimal.c — unit tests for common/decimal.c: tables of accepted and
 * rejected texts (with the error code and message), format round trips
 * including negatives and the int64 extremes, and the overflow/exactness
 * edges of rescale, add, sub, negate, mul, cmp and normalize.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "decimal.h"

static is_decimal_t dec(int64_t units, uint32_t scale) {
    is_decimal_t d = {units, scale};
    return d;
}

static void test_parse_good(void **state) {
    static const struct {
        const char *in;
        int64_t units;
        uint32_t scale;
        const char *formatted; /* canonical text */
    } cases[] = {
        {"0", 0, 0, "0"},
        {"12.500", 12500, 3, "12.500"},
        {"-3", -3, 0, "-3"},
        {"+7", 7, 0, "7"},
        {"0.001", 1, 3, "0.001"},
        {"-0.05", -5, 2, "-0.05"},
        {"007.10", 710, 2, "7.10"},
        {"-0", 0, 0, "0"},
        {"1.000000", 1000000, 6, "1.000000"},
        {"9223372036854775807", INT64_MAX, 0, "9223372036854775807"},
        {"-9223372036854775808", INT64_MIN, 0, "-9223372036854775808"},
        {"922337203685.4775807", INT64_MAX, 7, "922337203685.4775807"},
        {"-922337.203685477580", -922337203685477580LL, 12, "-922337.203685477580"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_decimal_t d = {-1, 99};
        char err[128] = "", buf[IS_DECIMAL_STRLEN];
        is_err_t rc = is_decimal_parse(cases[i].in, strlen(cases[i].in), IS_DECIMAL_MAX_SCALE, &d,
                                       err, sizeof err);
        if (rc != IS_OK)
            fail_msg("'%s': %s", cases[i].in, err);
        assert_int_equal(d.units, cases[i].units);
        assert_int_equal(d.scale, cases[i].scale);
        assert_int_equal(is_decimal_format(d, buf, sizeof buf), strlen(cases[i].formatted));
        assert_string_equal(buf, cases[i].formatted);
    }
}

static void test_parse_bad(void **state) {
    static const struct {
        const char *in;
        is_err_t rc;
        const char *msg; /* substring of errstr */
    } cases[] = {
        {"", IS_ERR_INVALID, "empty"},
        {"-", IS_ERR_INVALID, "not a decimal"},
        {"+", IS_ERR_INVALID, "not a decimal"},
        {".", IS_ERR_INVALID, "not a decimal"},
        {".5", IS_ERR_INVALID, "not a decimal"},
        {"5.", IS_ERR_INVALID, "not a decimal"},
        {"-.5", IS_ERR_INVALID, "not a decimal"},
        {"1e3", IS_ERR_INVALID, "not a decimal"},
        {"1E3", IS_ERR_INVALID, "not a decimal"},
        {"1.5e-3", IS_ERR_INVALID, "not a decimal"},
        {"NaN", IS_ERR_INVALID, "not a decimal"},
        {"Inf", IS_ERR_INVALID, "not a decimal"},
        {"-Infinity", IS_ERR_INVALID, "not a decimal"},
        {" 1", IS_ERR_INVALID, "not a decimal"},
        {"1 ", IS_ERR_INVALID, "not a decimal"},
        {"1 000", IS_ERR_INVALID, "not a decimal"},
        {"1,5", IS_ERR_INVALID, "not a decimal"},
        {"1..5", IS_ERR_INVALID, "not a decimal"},
        {"1.2.3", IS_ERR_INVALID, "not a decimal"},
        {"--1", IS_ERR_INVALID, "not a decimal"},
        {"+-1", IS_ERR_INVALID, "not a decimal"},
        {"0x10", IS_ERR_INVALID, "not a decimal"},
        {"1.0000001", IS_ERR_INVALID, "more than 6 decimal places"},
        {"0.1234567", IS_ERR_INVALID, "more than 6 decimal places"},
        {"9223372036854775808", IS_ERR_OVERFLOW, "too large"},
        {"-9223372036854775809", IS_ERR_OVERFLOW, "too large"},
        {"92233720368547758.08", IS_ERR_OVERFLOW, "too large"},
        {"99999999999999999999999", IS_ERR_OVERFLOW, "too large"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_decimal_t d = {42, 1};
        char err[160] = "";
        is_err_t rc = is_decimal_parse(cases[i].in, strlen(cases[i].in), 6, &d, err, sizeof err);
        if (rc != cases[i].rc || !strstr(err, cases[i].msg))
            fail_msg("'%s': rc %d errstr '%s', want %d '%s'", cases[i].in, rc, err, cases[i].rc,
                     cases[i].msg);
        /* Nothing is written on failure. */
        assert_int_equal(d.units, 42);
        assert_int_equal(d.scale, 1);
    }
}

static void test_parse_len_and_nul(void **state) {
    is_decimal_t d;
    char err[128];
    (void)state;
    /* Only len bytes are read: "12.5" out of "12.5xyz". */
    assert_int_equal(is_decimal_parse("12.5xyz", 4, 6, &d, err, sizeof err), IS_OK);
    assert_int_equal(d.units, 125);
    assert_int_equal(d.scale, 1);
    /* An embedded NUL within len is junk, not an end. */
    assert_int_equal(is_decimal_parse("1\0002", 3, 6, &d, err, sizeof err), IS_ERR_INVALID);
    /* NULL errstr is allowed. */
    assert_int_equal(is_decimal_parse("x", 1, 6, &d, NULL, 0), IS_ERR_INVALID);
    /* max_scale 0 rejects any fraction. */
    assert_int_equal(is_decimal_parse("1.0", 3, 0, &d, err, sizeof err), IS_ERR_INVALID);
    assert_non_null(strstr(err, "more than 0 decimal places"));
}

static void test_format(void **state) {
    static const struct {
        int64_t units;
        uint32_t scale;
        const char *out;
    } cases[] = {
        {0, 0, "0"},
        {0, 3, "0.000"},
        {-5, 2, "-0.05"},
        {5, 1, "0.5"},
        {-1, 18, "-0.000000000000000001"},
        {INT64_MAX, 0, "9223372036854775807"},
        {INT64_MIN, 0, "-9223372036854775808"},
        {INT64_MIN, 18, "-9.223372036854775808"},
        {INT64_MIN, 19, "-0.9223372036854775808"},
        {INT64_MAX, 18, "9.223372036854775807"},
        {123456, 6, "0.123456"},
        {1234567, 6, "1.234567"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[IS_DECIMAL_STRLEN];
        size_t n = is_decimal_format(dec(cases[i].units, cases[i].scale), buf, sizeof buf);
        assert_string_equal(buf, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
    }
}

static void test_format_truncates_safely(void **state) {
    char small[5];
    (void)state;
    /* snprintf-like: full length returned, output cut and terminated. */
    assert_int_equal(is_decimal_format(dec(-123456, 2), small, sizeof small), 8);
    assert_string_equal(small, "-123");
    /* An absurd scale from the wire does not overrun. */
    char buf[IS_DECIMAL_STRLEN];
    assert_true(is_decimal_format(dec(1, 100), buf, sizeof buf) >= sizeof buf);
    assert_int_equal(strlen(buf), sizeof buf - 1);
}

static void test_round_trip(void **state) {
    static const char *texts[] = {"0",         "1",        "-1",        "12.500",
                                  "-0.05",     "0.000001", "100.000",   "-9223372036854775808",
                                  "999999.99", "0.10",     "-12345.678"};
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        is_decimal_t d;
        char buf[IS_DECIMAL_STRLEN];
        assert_int_equal(is_decimal_parse(texts[i], strlen(texts[i]), 6, &d, NULL, 0), IS_OK);
        is_decimal_format(d, buf, sizeof buf);
        assert_string_equal(buf, texts[i]);
    }
}

static void test_rescale(void **state) {
    static const struct {
        is_decimal_t in;
        uint32_t scale;
        is_err_t rc;
        int64_t units;
    } cases[] = {
        {{125, 1}, 3, IS_OK, 12500},
        {{12500, 3}, 1, IS_OK, 125},
        {{12500, 3}, 0, IS_ERR_INVALID, 0}, /* 12.5 has a digit to lose */
        {{-5, 2}, 4, IS_OK, -500},
        {{1, 0}, 18, IS_OK, 1000000000000000000LL},
        {{10, 0}, 18, IS_ERR_OVERFLOW, 0},
        {{INT64_MAX, 0}, 1, IS_ERR_OVERFLOW, 0},
        {{0, 0}, 18, IS_OK, 0},
        {{7, 0}, 19, IS_ERR_INVALID, 0}, /* beyond IS_DECIMAL_MAX_SCALE */
        {{0, 40}, 0, IS_OK, 0},
        {{5, 40}, 0, IS_ERR_INVALID, 0},
        {{INT64_MIN, 18}, 0, IS_ERR_INVALID, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_decimal_t out = {0, 0};
        is_err_t rc = is_decimal_rescale(cases[i].in, cases[i].scale, &out);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d want %d", i, rc, cases[i].rc);
        if (rc == IS_OK) {
            assert_int_equal(out.units, cases[i].units);
            assert_int_equal(out.scale, cases[i].scale);
        }
    }
}

static void test_add_sub(void **state) {
    static const struct {
        is_decimal_t a, b;
        int sub;
        is_err_t rc;
        is_decimal_t want;
    } cases[] = {
        {{125, 1}, {250, 2}, 0, IS_OK, {1500, 2}}, /* 12.5 + 2.50 = 15.00 */
        {{125, 1}, {250, 2}, 1, IS_OK, {1000, 2}}, /* 12.5 - 2.50 = 10.00 */
        {{1, 0}, {3, 0}, 1, IS_OK, {-2, 0}},       /* sign change */
        {{-5, 2}, {5, 2}, 0, IS_OK, {0, 2}},       /* -0.05 + 0.05 */
        {{INT64_MAX, 0}, {1, 0}, 0, IS_ERR_OVERFLOW, {0, 0}},
        {{INT64_MIN, 0}, {1, 0}, 1, IS_ERR_OVERFLOW, {0, 0}},
        {{0, 0}, {INT64_MIN, 0}, 1, IS_ERR_OVERFLOW, {0, 0}}, /* 0 - MIN */
        {{-1, 0}, {INT64_MIN, 0}, 1, IS_OK, {INT64_MAX, 0}},  /* -1 - MIN */
        {{INT64_MIN, 0}, {0, 0}, 0, IS_OK, {INT64_MIN, 0}},
        {{1, 0}, {1, 18}, 0, IS_OK, {1000000000000000001LL, 18}},
        {{10, 0}, {1, 18}, 0, IS_ERR_OVERFLOW, {0, 0}}, /* 10·10^18 does not fit */
        {{1, 19}, {1, 0}, 0, IS_ERR_INVALID, {0, 0}},   /* invalid scale */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_decimal_t out = {0, 0};
        is_err_t rc = cases[i].sub ? is_decimal_sub(cases[i].a, cases[i].b, &out)
                                   : is_decimal_add(cases[i].a, cases[i].b, &out);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d want %d", i, rc, cases[i].rc);
        if (rc == IS_OK) {
            assert_int_equal(out.units, cases[i].want.units);
            assert_int_equal(out.scale, cases[i].want.scale);
        }
    }
}

static void test_negate(void **state) {
    is_decimal_t out;
    (void)state;
    assert_int_equal(is_decimal_negate(dec(125, 1), &out), IS_OK);
    assert_int_equal(out.units, -125);
    assert_int_equal(out.scale, 1);
    assert_int_equal(is_decimal_negate(dec(INT64_MAX, 0), &out), IS_OK);
    assert_int_equal(out.units, -INT64_MAX);
    assert_int_equal(is_decimal_negate(dec(0, 2), &out), IS_OK);
    assert_int_equal(out.units, 0);
    assert_int_equal(is_decimal_negate(dec(INT64_MIN, 3), &out), IS_ERR_OVERFLOW);
}

static void test_mul(void **state) {
    static const struct {
        is_decimal_t d, f;
        uint32_t max_scale;
        is_err_t rc;
        is_decimal_t want;
    } cases[] = {
        {{125, 1}, {2, 0}, 6, IS_OK, {250, 1}},             /* 12.5 × 2 */
        {{12500, 3}, {1000, 3}, 6, IS_OK, {12500000, 6}},   /* keeps scale 6 */
        {{12500, 3}, {1000, 3}, 3, IS_OK, {12500, 3}},      /* reduced, lossless */
        {{12345, 3}, {1001, 3}, 3, IS_ERR_INVALID, {0, 0}}, /* would lose digits */
        {{-3, 0}, {25, 1}, 6, IS_OK, {-75, 1}},
        {{INT64_MAX, 0}, {2, 0}, 6, IS_ERR_OVERFLOW, {0, 0}},
        {{INT64_MIN, 0}, {-1, 0}, 6, IS_ERR_OVERFLOW, {0, 0}},
        {{INT64_MIN, 0}, {1, 0}, 6, IS_OK, {INT64_MIN, 0}},
        /* 10^18 × 10.0: exact 10^19 does not fit at scale 1 or 0. */
        {{1000000000000000000LL, 0}, {100, 1}, 6, IS_ERR_OVERFLOW, {0, 0}},
        /* 9·10^17 × 10.00: too big at scale 2, fits once zeros go. */
        {{900000000000000000LL, 0}, {1000, 2}, 6, IS_OK, {9000000000000000000LL, 0}},
        {{0, 5}, {123, 2}, 6, IS_OK, {0, 6}},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_decimal_t out = {0, 0};
        is_err_t rc = is_decimal_mul(cases[i].d, cases[i].f, cases[i].max_scale, &out);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d want %d", i, rc, cases[i].rc);
        if (rc == IS_OK) {
            assert_int_equal(out.units, cases[i].want.units);
            assert_int_equal(out.scale, cases[i].want.scale);
        }
    }
}

static void test_cmp_sign(void **state) {
    static const struct {
        is_decimal_t a, b;
        int want; /* -1, 0, 1 */
    } cases[] = {
        {{15, 1}, {150, 2}, 0},
        {{15, 1}, {151, 2}, -1},
        {{-15, 1}, {-151, 2}, 1},
        {{0, 0}, {0, 6}, 0},
        {{-1, 18}, {0, 0}, -1},
        {{INT64_MAX, 0}, {INT64_MAX, 18}, 1},
        {{INT64_MIN, 0}, {INT64_MIN, 18}, -1},
        {{INT64_MIN, 0}, {INT64_MAX, 0}, -1},
        {{1, 0}, {INT64_MAX, 19}, 1},  /* 1 > 0.92… */
        {{1, 0}, {INT64_MAX, 18}, -1}, /* 1 < 9.22… */
        {{1, 0}, {INT64_MAX, 40}, 1},  /* far scales */
        {{INT64_MAX, 0}, {INT64_MAX, 25}, 1},
        {{INT64_MIN, 0}, {INT64_MIN, 21}, -1},
        {{-1, 0}, {-5, 30}, -1},
        {{5, 30}, {1, 0}, -1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = is_decimal_cmp(cases[i].a, cases[i].b);
        int r = is_decimal_cmp(cases[i].b, cases[i].a);
        c = c < 0 ? -1 : c > 0;
        r = r < 0 ? -1 : r > 0;
        if (c != cases[i].want || r != -cases[i].want)
            fail_msg("case %zu: cmp %d reverse %d want %d", i, c, r, cases[i].want);
    }
    assert_int_equal(is_decimal_sign(dec(-5, 2)), -1);
    assert_int_equal(is_decimal_sign(dec(0, 2)), 0);
    assert_int_equal(is_decimal_sign(dec(INT64_MAX, 0)), 1);
}

static void test_normalize(void **state) {
    static const struct {
        is_decimal_t in, want;
    } cases[] = {
        {{1500, 3}, {15, 1}},   {{0, 4}, {0, 0}},
        {{-1200, 2}, {-12, 0}}, {{100, 0}, {100, 0}}, /* integer zeros stay */
        {{123, 3}, {123, 3}},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_decimal_t out = is_decimal_normalize(cases[i].in);
        assert_int_equal(out.units, cases[i].want.units);
        assert_int_equal(out.scale, cases[i].want.scale);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_len_and_nul),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_truncates_safely),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_rescale),
        cmocka_unit_test(test_add_sub),
        cmocka_unit_test(test_negate),
        cmocka_unit_test(test_mul),
        cmocka_unit_test(test_cmp_sign),
        cmocka_unit_test(test_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
