/*
 * duration.h — parsing of human durations and sizes used in config and
 * policy files, and the injectable clock.
 */
#ifndef INVSYNC_DURATION_H
#define INVSYNC_DURATION_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * "150ms", "30s", "5m", "2h", "1d", or a bare integer meaning milliseconds.
 * Compound forms ("1h30m") are accepted. Returns IS_ERR_INVALID on anything
 * else (negative, empty, unknown unit, trailing junk) or IS_ERR_OVERFLOW.
 */
is_err_t is_parse_duration_ms(const char *s, int64_t *out_ms) IS_MUST_CHECK;

/* "8MiB", "512KiB", "1GiB", "100kB", "1MB" or a bare byte count. */
is_err_t is_parse_size(const char *s, int64_t *out_bytes) IS_MUST_CHECK;

/*
 * Strict base-10 integer parse of the whole string (no atoi). IS_ERR_INVALID
 * for empty/junk, IS_ERR_OVERFLOW outside [min, max].
 */
is_err_t is_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out) IS_MUST_CHECK;

/*
 * The clock. All scheduling reads time through an is_clock_t so that tests
 * can run a day of plant time in seconds. A NULL clock means the system
 * clock (CLOCK_REALTIME).
 */
typedef struct is_clock {
    int64_t (*now_ms)(void *opaque); /* ms since the epoch, UTC */
    void *opaque;
} is_clock_t;

int64_t is_clock_now_ms(const is_clock_t *clock);
/* Monotonic ms, for measuring intervals (never for timestamps). */
int64_t is_monotonic_ms(void);

/* RFC 3339 in UTC with milliseconds: "2026-11-29T23:34:59.123Z" (needs 25 bytes). */
#define IS_RFC3339_LEN 32
void is_format_rfc3339(int64_t ms, char buf[IS_RFC3339_LEN]);
/*
 * Parse RFC 3339 ("2026-11-29T23:34:59Z", fractional seconds and numeric
 * offsets such as "+01:00" accepted) into ms since the epoch, UTC.
 */
is_err_t is_parse_rfc3339(const char *s, int64_t *out_ms) IS_MUST_CHECK;

#endif
