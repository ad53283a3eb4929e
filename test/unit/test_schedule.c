/*
 * test_schedule.c — tier windows: every, at, shift, hold; two time zones and
 * both daylight-saving change days of 2026; accepted times at the ends of
 * the int64_t range (a forged message) clamp instead of overflowing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "duration.h"
#include "schedule.h"

static int64_t t(const char *rfc3339) {
    int64_t ms = 0;
    assert_int_equal(is_parse_rfc3339(rfc3339, &ms), IS_OK);
    return ms;
}

static is_tier_t tier_at(is_cadence_kind_t kind, const int *minutes, int n, int64_t hold_ms) {
    is_tier_t tr;
    memset(&tr, 0, sizeof(tr));
    tr.cadence = kind;
    tr.n_at = n;
    memcpy(tr.at_minutes, minutes, (size_t)n * sizeof(int));
    tr.hold_ms = hold_ms;
    return tr;
}

static void test_immediate_and_every(void **state) {
    (void)state;
    is_tier_t tr;
    memset(&tr, 0, sizeof(tr));
    tr.cadence = IS_CADENCE_IMMEDIATE;
    assert_int_equal(is_schedule_due(&tr, "UTC", t("2026-01-15T10:07:00Z")),
                     t("2026-01-15T10:07:00Z"));
    tr.hold_ms = 120000;
    assert_int_equal(is_schedule_due(&tr, "UTC", t("2026-01-15T10:07:00Z")),
                     t("2026-01-15T10:09:00Z"));
    tr.cadence = IS_CADENCE_EVERY;
    tr.every_ms = 30 * 60000;
    tr.hold_ms = 0;
    assert_int_equal(is_schedule_due(&tr, "UTC", t("2026-01-15T10:07:00Z")),
                     t("2026-01-15T10:30:00Z"));
    /* On a boundary: the window that starts there, closing 30 minutes later. */
    assert_int_equal(is_schedule_due(&tr, "UTC", t("2026-01-15T10:30:00Z")),
                     t("2026-01-15T11:00:00Z"));
}

typedef struct case_ {
    const char *zone;
    const char *accepted;
    const char *due;
} case_t;

static void test_shift_starts_in_two_zones_and_dst(void **state) {
    (void)state;
    static const int shifts[] = {6 * 60, 14 * 60, 22 * 60};
    static const case_t cases[] = {
        /* Berlin winter (UTC+1): 13:00 local → 14:00 local */
        {"Europe/Berlin", "2026-01-15T12:00:00Z", "2026-01-15T13:00:00Z"},
        /* Chicago winter (UTC-6): 06:00 local exactly → the next shift, 14:00 local */
        {"America/Chicago", "2026-01-15T12:00:00Z", "2026-01-15T20:00:00Z"},
        /* Chicago 23:00 local → 06:00 local next day */
        {"America/Chicago", "2026-01-16T05:00:00Z", "2026-01-16T12:00:00Z"},
        /* Berlin spring forward 2026-03-29: 01:30 CET → 06:00 CEST = 04:00Z */
        {"Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T04:00:00Z"},
        /* Berlin fall back 2026-10-25: 01:00 CEST → 06:00 CET = 05:00Z */
        {"Europe/Berlin", "2026-10-24T23:00:00Z", "2026-10-25T05:00:00Z"},
        /* Chicago spring forward 2026-03-08: 01:00 CST → 06:00 CDT = 11:00Z */
        {"America/Chicago", "2026-03-08T07:00:00Z", "2026-03-08T11:00:00Z"},
        /* Chicago fall back 2026-11-01: 23:00 CDT on Oct 31 → 06:00 CST = 12:00Z */
        {"America/Chicago", "2026-11-01T04:00:00Z", "2026-11-01T12:00:00Z"},
        /* UTC 22:30 → 06:00 next day */
        {"UTC", "2026-06-30T22:30:00Z", "2026-07-01T06:00:00Z"},
    };
    is_tier_t tr = tier_at(IS_CADENCE_SHIFT, shifts, 3, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = is_schedule_due(&tr, cases[i].zone, t(cases[i].accepted));
        if (got != t(cases[i].due)) {
            char buf[IS_RFC3339_LEN];
            is_format_rfc3339(got, buf);
            fail_msg("case %zu (%s, accepted %s): due %s, expected %s", i, cases[i].zone,
                     cases[i].accepted, buf, cases[i].due);
        }
    }
}

static void test_at_with_hold_and_nonexistent_local_time(void **state) {
    (void)state;
    static const int at[] = {2 * 60 + 30};
    is_tier_t tr = tier_at(IS_CADENCE_AT, at, 1, 5 * 60000);
    /* 02:30 does not exist in Berlin on 2026-03-29: the first instant after the gap. */
    int64_t got = is_schedule_due(&tr, "Europe/Berlin", t("2026-03-28T23:00:00Z"));
    int64_t gap_end = t("2026-03-29T01:00:00Z"); /* 03:00 CEST */
    assert_true(got >= gap_end + 5 * 60000 && got <= gap_end + 35 * 60000);
    /* Daily at 02:30 UTC plus a 5-minute hold. */
    assert_int_equal(is_schedule_due(&tr, "UTC", t("2026-01-15T03:00:00Z")),
                     t("2026-01-16T02:35:00Z"));
}

static void test_local_str(void **state) {
    (void)state;
    char buf[32];
    is_schedule_local_str("America/Chicago", t("2026-01-15T12:00:00Z"), buf);
    assert_string_equal(buf, "2026-01-15 06:00");
}

/* Under UBSan (make asan) the unclamped arithmetic aborts here. */
static void test_extreme_accepted_times(void **state) {
    (void)state;
    static const int at[] = {2 * 60};
    static const int shifts[] = {6 * 60, 14 * 60, 22 * 60};
    is_tier_t tr;
    memset(&tr, 0, sizeof(tr));
    tr.cadence = IS_CADENCE_EVERY;
    tr.every_ms = 5 * 60000;
    assert_true(is_schedule_due(&tr, "UTC", INT64_MAX) == INT64_MAX);
    assert_true(is_schedule_due(&tr, "UTC", INT64_MAX - 1000) == INT64_MAX);
    assert_true(is_schedule_due(&tr, "UTC", INT64_MIN) > INT64_MIN);
    tr.hold_ms = 120000;
    assert_true(is_schedule_due(&tr, "UTC", INT64_MAX) == INT64_MAX);
    tr.cadence = IS_CADENCE_IMMEDIATE;
    assert_true(is_schedule_due(&tr, "UTC", INT64_MAX - 1) == INT64_MAX);
    assert_true(is_schedule_due(&tr, "UTC", INT64_MIN) == INT64_MIN + 120000);

    /* Every candidate after it is past INT64_MAX ms: due at the accepted time (+ hold). */
    tr = tier_at(IS_CADENCE_AT, at, 1, 0);
    assert_true(is_schedule_due(&tr, "Europe/Berlin", INT64_MAX) == INT64_MAX);
    /* The day before is below INT64_MIN ms; the next 02:00 is found. */
    assert_true(is_schedule_due(&tr, "UTC", INT64_MIN) > INT64_MIN);
    tr = tier_at(IS_CADENCE_SHIFT, shifts, 3, 60000);
    assert_true(is_schedule_due(&tr, "UTC", INT64_MAX - 1000) == INT64_MAX);
    assert_true(is_schedule_due(&tr, "America/Chicago", INT64_MIN / 1000 * 999) >=
                INT64_MIN / 1000 * 999);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_immediate_and_every),
        cmocka_unit_test(test_shift_starts_in_two_zones_and_dst),
        cmocka_unit_test(test_at_with_hold_and_nonexistent_local_time),
        cmocka_unit_test(test_local_str),
        cmocka_unit_test(test_extreme_accepted_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
