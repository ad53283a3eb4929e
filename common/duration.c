/*
 * duration.c — durations, sizes, strict integers, RFC 3339 and the clock.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duration.h"

is_err_t is_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out) {
    char *end = NULL;
    long long v;
    if (!s || !*s || isspace((unsigned char)*s))
        return IS_ERR_INVALID;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || *end != '\0')
        return IS_ERR_INVALID;
    if (errno == ERANGE || v < min || v > max)
        return IS_ERR_OVERFLOW;
    *out = (int64_t)v;
    return IS_OK;
}

/* Parse a run of digits; returns pointer after them or NULL if none/overflow. */
static const char *parse_digits(const char *p, int64_t *out) {
    int64_t v = 0;
    const char *start = p;
    while (isdigit((unsigned char)*p)) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
        p++;
    }
    if (p == start)
        return NULL;
    *out = v;
    return p;
}

is_err_t is_parse_duration_ms(const char *s, int64_t *out_ms) {
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *p = s;
    int64_t total = 0, v;
    if (!s || !*s)
        return IS_ERR_INVALID;
    /* A bare integer is milliseconds. */
    if (is_parse_int64(s, 0, INT64_MAX, &v) == IS_OK) {
        *out_ms = v;
        return IS_OK;
    }
    while (*p) {
        size_t i, best = sizeof(units) / sizeof(units[0]);
        p = parse_digits(p, &v);
        if (!p)
            return IS_ERR_INVALID;
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, n) == 0 && !isalpha((unsigned char)p[n])) {
                best = i;
                break;
            }
        }
        if (best == sizeof(units) / sizeof(units[0]))
            return IS_ERR_INVALID;
        if (v > INT64_MAX / units[best].ms || total > INT64_MAX - v * units[best].ms)
            return IS_ERR_OVERFLOW;
        total += v * units[best].ms;
        p += strlen(units[best].unit);
    }
    *out_ms = total;
    return IS_OK;
}

is_err_t is_parse_size(const char *s, int64_t *out_bytes) {
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {{"B", 1},           {"kB", 1000},  {"KB", 1000},     {"MB", 1000000},
                 {"GB", 1000000000}, {"KiB", 1024}, {"MiB", 1048576}, {"GiB", 1073741824}};
    const char *p;
    int64_t v;
    if (!s || !*s)
        return IS_ERR_INVALID;
    if (is_parse_int64(s, 0, INT64_MAX, &v) == IS_OK) {
        *out_bytes = v;
        return IS_OK;
    }
    p = parse_digits(s, &v);
    if (!p)
        return IS_ERR_INVALID;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (v > INT64_MAX / units[i].mult)
                return IS_ERR_OVERFLOW;
            *out_bytes = v * units[i].mult;
            return IS_OK;
        }
    }
    return IS_ERR_INVALID;
}

int64_t is_clock_now_ms(const is_clock_t *clock) {
    struct timespec ts;
    if (clock && clock->now_ms)
        return clock->now_ms(clock->opaque);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t is_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void is_format_rfc3339(int64_t ms, char buf[IS_RFC3339_LEN]) {
    /* Floor division without ms - 999 or secs * 1000: both overflow near INT64_MIN. */
    int64_t rem = ms % 1000;
    time_t secs = (time_t)(ms / 1000 - (rem < 0));
    int frac = (int)(rem < 0 ? rem + 1000 : rem);
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* strftime bounds each field; only the milliseconds are added by hand. */
    size_t n = strftime(buf, IS_RFC3339_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, IS_RFC3339_LEN - n, ".%03uZ", (unsigned)frac % 1000u);
}

static int take_num(const char **p, int width, int *out) {
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += width;
    *out = v;
    return 0;
}

is_err_t is_parse_rfc3339(const char *s, int64_t *out_ms) {
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int Y, M, D, h, mi, sec, ms = 0, off = 0;
    if (!s)
        return IS_ERR_INVALID;
    if (take_num(&p, 4, &Y) || *p++ != '-' || take_num(&p, 2, &M) || *p++ != '-' ||
        take_num(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' '))
        return IS_ERR_INVALID;
    p++;
    if (take_num(&p, 2, &h) || *p++ != ':' || take_num(&p, 2, &mi) || *p++ != ':' ||
        take_num(&p, 2, &sec))
        return IS_ERR_INVALID;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 || sec > 60)
        return IS_ERR_INVALID;
    if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0))
        return IS_ERR_INVALID;
    if (*p == '.') {
        int digits = 0;
        p++;
        if (!isdigit((unsigned char)*p))
            return IS_ERR_INVALID;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (take_num(&p, 2, &oh) || *p++ != ':' || take_num(&p, 2, &om) || oh > 23 || om > 59)
            return IS_ERR_INVALID;
        off = sign * (oh * 60 + om);
    } else {
        return IS_ERR_INVALID;
    }
    if (*p != '\0')
        return IS_ERR_INVALID;
    if (sec == 60)
        sec = 59; /* leap second: clamp */
    int64_t days = days_from_civil(Y, (unsigned)M, (unsigned)D);
    int64_t t = ((days * 24 + h) * 60 + mi) * 60 + sec - (int64_t)off * 60;
    *out_ms = t * 1000 + ms;
    return IS_OK;
}
