/*
 * test_duration.c — is_format_rfc3339 around the epoch (floor division of
 * negative times) and at the ends of the int64_t range, which a movement off
 * the wire can carry (the replay timeline prints its event and accepted
 * times). Under UBSan (make asan) the old arithmetic overflowed at INT64_MIN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "duration.h"

static void check(int64_t ms, const char *want) {
    char buf[IS_RFC3339_LEN];
    is_format_rfc3339(ms, buf);
    assert_string_equal(buf, want);
}

static void test_format_around_the_epoch(void **state) {
    (void)state;
    check(0, "1970-01-01T00:00:00.000Z");
    check(1, "1970-01-01T00:00:00.001Z");
    check(-1, "1969-12-31T23:59:59.999Z");
    check(-999, "1969-12-31T23:59:59.001Z");
    check(-1000, "1969-12-31T23:59:59.000Z");
    check(-1001, "1969-12-31T23:59:58.999Z");
    check(1767225600123, "2026-01-01T00:00:00.123Z");
}

static void test_format_int64_ends(void **state) {
    (void)state;
    check(INT64_MAX, "292278994-08-17T07:12:55.807Z");
    check(INT64_MIN, "-292275055-05-16T16:47:04.192Z");
    check(INT64_MIN + 1, "-292275055-05-16T16:47:04.193Z");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_around_the_epoch),
        cmocka_unit_test(test_format_int64_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
