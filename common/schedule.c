/*
 * schedule.c — tier window arithmetic (schedule.h).
 *
 * Zone conversion uses the C library with TZ switched under a mutex: glibc
 * reads the system tz database, which is exactly what a plant's servers use.
 * Called once per consumed movement of an `at`/`shift` tier; a conversion is
 * a few microseconds.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

static pthread_mutex_t tz_mu = PTHREAD_MUTEX_INITIALIZER;

/* Run with TZ set to zone; restores the previous TZ. Caller holds tz_mu. */
static void tz_enter(const char *zone, char **saved) {
    const char *old = getenv("TZ");
    *saved = old ? strdup(old) : NULL;
    setenv("TZ", zone && *zone ? zone : "UTC", 1);
    tzset();
}

static void tz_leave(char *saved) {
    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);
    } else {
        unsetenv("TZ");
    }
    tzset();
}

int64_t is_schedule_next_local(const char *timezone, const int *minutes, int n, int64_t t_ms) {
    char *saved;
    int64_t best = INT64_MAX;
    time_t t = (time_t)(t_ms / 1000);
    struct tm day;

    if (n <= 0)
        return t_ms;
    pthread_mutex_lock(&tz_mu);
    tz_enter(timezone, &saved);
    localtime_r(&t, &day); /* ±2^63 ms is ±292 million years: a struct tm holds it */
    /* Today's and the next two days' candidates cover any gap between listed times. */
    for (int d = -1; d <= 2 && best == INT64_MAX; d++) {
        for (int i = 0; i < n; i++) {
            struct tm c = day;
            int64_t ms;
            c.tm_mday += d;
            c.tm_hour = minutes[i] / 60;
            c.tm_min = minutes[i] % 60;
            c.tm_sec = 0;
            c.tm_isdst = -1; /* let the zone decide; normalizes across month ends */
            time_t u = mktime(&c);
            if (u == (time_t)-1 || __builtin_mul_overflow((int64_t)u, 1000, &ms))
                continue;
            if (ms > t_ms && ms < best)
                best = ms;
        }
    }
    tz_leave(saved);
    pthread_mutex_unlock(&tz_mu);
    return best == INT64_MAX ? t_ms : best;
}

/* a + b clamped to the int64_t range: accepted times come off the wire. */
static int64_t add_sat(int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

int64_t is_schedule_due(const is_tier_t *tier, const char *timezone, int64_t accepted_ms) {
    int64_t close = accepted_ms;
    switch (tier->cadence) {
    case IS_CADENCE_IMMEDIATE:
        break;
    case IS_CADENCE_EVERY:
        if (tier->every_ms > 0 &&
            __builtin_mul_overflow(accepted_ms / tier->every_ms + 1, tier->every_ms, &close))
            close = INT64_MAX; /* the last window never closes */
        break;
    case IS_CADENCE_AT:
    case IS_CADENCE_SHIFT:
        close = is_schedule_next_local(timezone, tier->at_minutes, tier->n_at, accepted_ms);
        break;
    }
    return add_sat(close, tier->hold_ms);
}

void is_schedule_local_str(const char *timezone, int64_t t_ms, char buf[32]) {
    char *saved;
    time_t t = (time_t)(t_ms / 1000);
    struct tm tm;
    pthread_mutex_lock(&tz_mu);
    tz_enter(timezone, &saved);
    localtime_r(&t, &tm);
    tz_leave(saved);
    pthread_mutex_unlock(&tz_mu);
    strftime(buf, 32, "%Y-%m-%d %H:%M", &tm);
}
