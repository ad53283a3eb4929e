/*
 * policy.h — the tier policy (DESIGN.md §4): which tier each movement goes
 * to and how each tier posts. deploy/policy.yaml is the commented default.
 *
 *   topic_prefix: invsync           # [A-Za-z0-9._-], no empty dot-separated part
 *   materials: materials.csv        # optional master: material,class,regulated
 *   calendars:                      # optional, for `shift <calendar>` cadences
 *     plant-3x8:
 *       shifts: [{name: A, start: "06:00"}, {name: B, start: "14:00"}, {name: C, start: "22:00"}]
 *   sites:                          # optional per-site settings
 *     PLANT1: {timezone: Europe/Berlin}
 *   tiers:                          # at least one; name [a-z0-9_-]{1,31}, not "dlq"
 *     realtime: {cadence: immediate, stale_after: 2m}
 *     nearline: {cadence: every 5m, stale_after: 15m, hold: 2m, max_lines: 500}
 *     periodic: {cadence: every 30m, stale_after: 90m}
 *     shift:    {cadence: shift plant-3x8, stale_after: 9h}
 *     daily:    {cadence: "at 02:00", stale_after: 26h}
 *   rules:                          # first match wins
 *     - {when: {type: [QUARANTINE, RELEASE]}, tier: realtime}
 *     - {when: {material_class: [FG, API], regulated: true}, tier: realtime}
 *     - {when: {material: "PKG-*"}, tier: periodic}
 *   default_tier: periodic          # required
 *
 * Tiers: cadence is `immediate` | `every <duration>` | `at HH:MM[,HH:MM...]`
 * (local times in the site's zone) | `shift <calendar>` (a calendar defined
 * above). Inside a flow mapping {...} quote an `at` list with several times:
 * an unquoted comma ends the value. Durations need a unit (150ms, 30s, 5m,
 * 2h, 1d): a bare number is refused as ambiguous. stale_after is required
 * and must be longer than hold + the longest gap between two postings of the
 * cadence, or the tier would be reported stale every cycle. hold (default 0)
 * and max_lines (default 0 = no limit) are optional.
 *
 * `when` conditions (all must hold, at least one given): type (list of
 * movement type names), material (glob or list of globs, fnmatch),
 * material_class (list; from the master file), regulated (bool; from the
 * master file), site (list), location (glob or list). A single value stands
 * for a list of one. A REVERSAL matches a type condition that names
 * REVERSAL or its reversed_type, so it follows its original into the same
 * tier (and can cancel it inside that tier's window). material_class and
 * regulated need `materials:`; a material that is not in the master never
 * matches them, and a class no master row has is accepted but never
 * matches (the master may lag the policy; it must not stop the producer).
 *
 * Material master: CSV with the header `material,class,regulated`, one row
 * per material, no quoting; blank and '#' lines, CRLF and a UTF-8 BOM are
 * accepted; a bad or duplicate row is an error naming its line. Relative
 * paths (materials) are relative to the policy file's folder. Time zones
 * must exist under /usr/share/zoneinfo (package tzdata); "UTC" always works
 * and is the default for sites not listed.
 *
 * policy_version is the SHA-256 (hex) of the policy file's bytes — or, when
 * a master is configured, of policy bytes || "\n--materials--\n" || master
 * bytes: the master decides routing (a material becoming regulated moves it
 * to realtime), so a master change must be a new version too. The files are
 * read once; the bytes hashed are the bytes parsed.
 *
 * The loaded policy is immutable and may be shared between threads;
 * is_policy_classify allocates nothing and is meant for the per-movement
 * path.
 */
#ifndef INVSYNC_POLICY_H
#define INVSYNC_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "movement.h"

#define IS_TIER_NAME_MAX 32
#define IS_POLICY_MAX_AT 48

typedef enum is_cadence_kind {
    IS_CADENCE_IMMEDIATE = 0, /* post as soon as due */
    IS_CADENCE_EVERY,         /* every every_ms, windows aligned to the epoch */
    IS_CADENCE_AT,            /* at fixed local times (at_minutes) in the site's zone */
    IS_CADENCE_SHIFT,         /* at the shift starts of a named calendar */
} is_cadence_kind_t;

typedef struct is_tier {
    char name[IS_TIER_NAME_MAX]; /* [a-z0-9_-]+ ; the topic suffix */
    is_cadence_kind_t cadence;
    int64_t every_ms;                 /* IS_CADENCE_EVERY */
    int n_at;                         /* IS_CADENCE_AT and _SHIFT (the calendar's starts): count */
    int at_minutes[IS_POLICY_MAX_AT]; /* minutes after local midnight, sorted */
    char calendar[64];                /* IS_CADENCE_SHIFT: calendar name */
    int64_t stale_after_ms;           /* oldest unposted older than this = stale */
    int64_t hold_ms;                  /* correction window before posting; 0 = none */
    uint32_t max_lines;               /* split ERP postings larger than this; 0 = no limit */
} is_tier_t;

typedef struct is_shift_calendar {
    char name[64];
    int n_shifts;
    char shift_names[IS_POLICY_MAX_AT][32];
    int start_minutes[IS_POLICY_MAX_AT]; /* minutes after local midnight, sorted */
} is_shift_calendar_t;

typedef struct is_policy is_policy_t;

/*
 * Load and validate. Errors name the file, the line, the key path (list
 * indices 0-based), the bad value and the valid choices:
 *   "policy.yaml:14: rules[2].tier: unknown tier 'fast' (tiers: realtime, nearline)"
 * Master rows are named "materials.csv:7: ...". Unknown keys are errors.
 * Returns IS_ERR_CONFIG for invalid content, IS_ERR_IO when a file cannot be
 * read, IS_ERR_TOO_LARGE, IS_ERR_NOMEM. On error *out is NULL.
 */
is_err_t is_policy_load(const char *path, is_policy_t **out, char *errstr,
                        size_t errstr_size) IS_MUST_CHECK;
void is_policy_destroy(is_policy_t *p); /* NULL is a no-op */

const char *is_policy_version(const is_policy_t *p);      /* 64 hex chars */
const char *is_policy_topic_prefix(const is_policy_t *p); /* default "invsync" */
size_t is_policy_tier_count(const is_policy_t *p);
const is_tier_t *is_policy_tier(const is_policy_t *p, size_t i);                 /* file order */
const is_tier_t *is_policy_tier_by_name(const is_policy_t *p, const char *name); /* NULL if none */
const is_shift_calendar_t *is_policy_calendar(const is_policy_t *p, const char *name);
/* 1 when the policy names site: under `sites:` or in a rule's `site` list. */
int is_policy_names_site(const is_policy_t *p, const char *site);
/*
 * The distinct sites the policy names (under `sites:` or in a rule), sorted:
 * at most max of them into names (pointers into p, valid while p lives).
 * Returns how many there are in all, which may exceed max; 0 for a NULL p.
 */
size_t is_policy_site_names(const is_policy_t *p, const char **names, size_t max);
/* IANA zone of a site ("UTC" when not configured). */
const char *is_policy_site_timezone(const is_policy_t *p, const char *site);

/*
 * The tier for a movement: the first rule whose conditions all hold, else
 * default_tier. Never NULL. *rule_index (may be NULL) gets the matching
 * rule's index or -1 for the default.
 */
const is_tier_t *is_policy_classify(const is_policy_t *p, const is_movement_t *m, int *rule_index);

#endif
