/*
 * schedule.h — when a tier posts: the close of the window a movement falls
 * in, in the site's time zone.
 *
 *   immediate        due = accepted + hold
 *   every <d>        windows aligned to the epoch: due = end of the window
 *                    containing accepted, + hold
 *   at HH:MM,...     due = the first listed local time strictly after
 *   shift <calendar> accepted (local wall clock of the site's IANA zone,
 *                    daylight saving included), + hold
 *
 * A local time that does not exist on a spring-forward day (02:30 in
 * Europe/Berlin on the last Sunday of March) is taken as the first instant
 * after the gap; an ambiguous one on a fall-back day as its first occurrence.
 *
 * The due time is computed once, when the consumer stores the movement, so
 * windows survive restarts and are neither shortened nor doubled by them.
 * Thread-safe: zone conversions are serialized inside this module, which is
 * the project's only user of local time.
 */
#ifndef INVSYNC_SCHEDULE_H
#define INVSYNC_SCHEDULE_H

#include <stdint.h>

#include "policy.h"

/*
 * Due time (ms since epoch UTC) of a movement accepted at accepted_ms. An
 * accepted_ms near the ends of the int64_t range (no clock's, but a message
 * off the wire can carry it) gives a due time clamped to that range.
 */
int64_t is_schedule_due(const is_tier_t *tier, const char *timezone, int64_t accepted_ms);

/*
 * The window close after t for `at`/`shift` cadences: the first of the local
 * times minutes[0..n) (minutes after local midnight) strictly after t.
 */
int64_t is_schedule_next_local(const char *timezone, const int *minutes, int n, int64_t t_ms);

/* Local wall-clock time of t in a zone as "YYYY-MM-DD HH:MM" (for messages and tests). */
void is_schedule_local_str(const char *timezone, int64_t t_ms, char buf[32]);

#endif
