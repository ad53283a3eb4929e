/*
 * policy.h — the tier policy (DESIGN.md §4): which tier each movement goes
 * to and how each tier posts.
 *
 * One YAML file under change control; its SHA-256 (hex) is the
 * policy_version stamped on every movement and posting.
 *
 *   topic_prefix: invsync
 *   materials: materials.csv        # optional master: material,class,regulated
 *   calendars:                      # optional, for `shift <calendar>` cadences
 *     plant-3x8:
 *       shifts: [{name: A, start: "06:00"}, {name: B, start: "14:00"}, {name: C, start: "22:00"}]
 *   sites:                          # optional per-site settings
 *     PLANT1: {timezone: Europe/Berlin}
 *   tiers:
 *     realtime: {cadence: immediate, stale_after: 2m}
 *     nearline: {cadence: every 5m, stale_after: 15m, hold: 2m, max_lines: 500}
 *     shift:    {cadence: shift plant-3x8, stale_after: 9h}
 *     daily:    {cadence: "at 02:00", stale_after: 26h}
 *   rules:                          # first match wins
 *     - {when: {type: [QUARANTINE, RELEASE]}, tier: realtime}
 *     - {when: {material_class: [FG, API], regulated: true}, tier: realtime}
 *     - {when: {material: "PKG-*"}, tier: periodic}
 *   default_tier: periodic
 *
 * `when` conditions (all must hold): type (list), material (glob or list of
 * globs, fnmatch), material_class (list; from the master file), regulated
 * (bool; from the master file), site (list), location (glob or list).
 * Relative paths (materials) are relative to the policy file's folder.
 * The loaded policy is immutable and may be shared between threads.
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
    int64_t every_ms;            /* IS_CADENCE_EVERY */
    int n_at;                    /* IS_CADENCE_AT: count of at_minutes */
    int at_minutes[IS_POLICY_MAX_AT]; /* minutes after local midnight, sorted */
    char calendar[64];           /* IS_CADENCE_SHIFT: calendar name */
    int64_t stale_after_ms;      /* oldest unposted older than this = stale */
    int64_t hold_ms;             /* correction window before posting; 0 = none */
    uint32_t max_lines;          /* split ERP postings larger than this; 0 = no limit */
} is_tier_t;

typedef struct is_shift_calendar {
    char name[64];
    int n_shifts;
    char shift_names[IS_POLICY_MAX_AT][32];
    int start_minutes[IS_POLICY_MAX_AT]; /* minutes after local midnight, sorted */
} is_shift_calendar_t;

typedef struct is_policy is_policy_t;

/*
 * Load and validate. Errors name the file, the key path and the bad value:
 *   "policy.yaml: rules[2].tier: unknown tier 'fast' (tiers: realtime, nearline)"
 * On error *out is NULL.
 */
is_err_t is_policy_load(const char *path, is_policy_t **out, char *errstr,
                        size_t errstr_size) IS_MUST_CHECK;
void is_policy_destroy(is_policy_t *p); /* NULL is a no-op */

const char *is_policy_version(const is_policy_t *p);      /* 64 hex chars */
const char *is_policy_topic_prefix(const is_policy_t *p); /* default "invsync" */
size_t is_policy_tier_count(const is_policy_t *p);
const is_tier_t *is_policy_tier(const is_policy_t *p, size_t i); /* file order */
const is_tier_t *is_policy_tier_by_name(const is_policy_t *p, const char *name); /* NULL if none */
const is_shift_calendar_t *is_policy_calendar(const is_policy_t *p, const char *name);
/* IANA zone of a site ("UTC" when not configured). */
const char *is_policy_site_timezone(const is_policy_t *p, const char *site);

/*
 * The tier for a movement: the first rule whose conditions all hold, else
 * default_tier. Never NULL. *rule_index (may be NULL) gets the matching
 * rule's index or -1 for the default.
 */
const is_tier_t *is_policy_classify(const is_policy_t *p, const is_movement_t *m, int *rule_index);

#endif
