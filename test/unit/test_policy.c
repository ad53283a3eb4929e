/*
 * test_policy.c — the tier policy: a good policy loads with the right tiers,
 * cadences, calendars and sites; every validation error names the file, line,
 * key path and bad value; classification follows first-match-wins over the
 * DESIGN.md §4 rules (including the material master and REVERSAL following
 * its original); policy_version changes with one byte of the policy or the
 * master; deploy/policy.yaml, the documented default, loads and classifies
 * the simulator's materials. Runs from the repository root.
 *
 * Files are written to a private temporary folder made in the group setup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hash.h"
#include "policy.h"

static char g_dir[64]; /* the test's temporary folder */

/* Writes text to g_dir/name; returns the path in a static buffer per slot. */
static const char *write_file(const char *name, const char *text) {
    static char paths[4][128];
    static int slot;
    char *path = paths[slot++ % 4];
    snprintf(path, 128, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return path;
}

static int group_setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_policy.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state) {
    static const char *const names[] = {"p.yaml", "materials.csv", "other.csv"};
    char path[128];
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    return rmdir(g_dir);
}

static const char MASTER[] = "material,class,regulated\n"
                             "RM-101,RM,false\n"
                             "PKG-201,PKG,false\n"
                             "FG-301,FG,true\n"
                             "FG-304,FG,false\n"
                             "API-1,API,true\n";

/* The DESIGN.md §4 policy plus a calendar, a site, hold and max_lines. */
static const char GOOD[] =
    "topic_prefix: acme.mes\n"
    "materials: materials.csv\n"
    "calendars:\n"
    "  plant-3x8:\n"
    "    shifts: [{name: A, start: \"06:00\"}, {name: C, start: \"22:00\"}, {name: B, start: "
    "\"14:00\"}]\n"
    "sites:\n"
    "  PLANT1: {timezone: UTC}\n"
    "tiers:\n"
    "  realtime: {cadence: immediate, stale_after: 2m}\n"
    "  nearline: {cadence: every 5m, stale_after: 15m, hold: 2m, max_lines: 500}\n"
    "  periodic: {cadence: every 30m, stale_after: 90m}\n"
    "  shift:    {cadence: shift plant-3x8, stale_after: 9h}\n"
    "  daily:\n"
    "    cadence: at 14:30, 02:00\n"
    "    stale_after: 26h\n"
    "rules:\n"
    "  - {when: {type: [QUARANTINE, RELEASE]}, tier: realtime}\n"
    "  - {when: {material_class: [FG, API], regulated: true}, tier: realtime}\n"
    "  - {when: {material: \"PKG-*\"}, tier: periodic}\n"
    "  - {when: {type: [ADJUSTMENT]}, tier: daily}\n"
    "default_tier: periodic\n";

static is_policy_t *load_ok(const char *yaml, const char *csv) {
    is_policy_t *p = NULL;
    char err[512] = "";
    if (csv)
        write_file("materials.csv", csv);
    is_err_t rc = is_policy_load(write_file("p.yaml", yaml), &p, err, sizeof(err));
    if (rc != IS_OK)
        fail_msg("unexpected error %d: %s", rc, err);
    assert_non_null(p);
    return p;
}

/* ---- a good policy ------------------------------------------------------ */

static void test_good_policy_loads(void **state) {
    is_policy_t *p = load_ok(GOOD, MASTER);
    const is_tier_t *t;
    const is_shift_calendar_t *cal;
    (void)state;
    assert_string_equal(is_policy_topic_prefix(p), "acme.mes");
    assert_int_equal(strlen(is_policy_version(p)), IS_SHA256_HEX_LEN);
    assert_int_equal(is_policy_tier_count(p), 5);
    static const char *const order[] = {"realtime", "nearline", "periodic", "shift", "daily"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(is_policy_tier(p, i)->name, order[i]);
    assert_null(is_policy_tier(p, 5));

    t = is_policy_tier_by_name(p, "realtime");
    assert_int_equal(t->cadence, IS_CADENCE_IMMEDIATE);
    assert_int_equal(t->stale_after_ms, 120000);
    assert_int_equal(t->hold_ms, 0);
    assert_int_equal(t->max_lines, 0);

    t = is_policy_tier_by_name(p, "nearline");
    assert_int_equal(t->cadence, IS_CADENCE_EVERY);
    assert_int_equal(t->every_ms, 300000);
    assert_int_equal(t->stale_after_ms, 900000);
    assert_int_equal(t->hold_ms, 120000);
    assert_int_equal(t->max_lines, 500);

    t = is_policy_tier_by_name(p, "shift");
    assert_int_equal(t->cadence, IS_CADENCE_SHIFT);
    assert_string_equal(t->calendar, "plant-3x8");
    assert_int_equal(t->n_at, 3); /* starts copied from the calendar, sorted */
    assert_int_equal(t->at_minutes[0], 6 * 60);
    assert_int_equal(t->at_minutes[1], 14 * 60);
    assert_int_equal(t->at_minutes[2], 22 * 60);

    t = is_policy_tier_by_name(p, "daily");
    assert_int_equal(t->cadence, IS_CADENCE_AT);
    assert_int_equal(t->n_at, 2);
    assert_int_equal(t->at_minutes[0], 2 * 60); /* sorted */
    assert_int_equal(t->at_minutes[1], 14 * 60 + 30);
    assert_int_equal(t->stale_after_ms, 26 * 3600000LL);
    assert_null(is_policy_tier_by_name(p, "fast"));

    cal = is_policy_calendar(p, "plant-3x8");
    assert_non_null(cal);
    assert_int_equal(cal->n_shifts, 3);
    assert_string_equal(cal->shift_names[0], "A");
    assert_string_equal(cal->shift_names[1], "B");
    assert_string_equal(cal->shift_names[2], "C");
    assert_int_equal(cal->start_minutes[2], 22 * 60);
    assert_null(is_policy_calendar(p, "nope"));

    assert_string_equal(is_policy_site_timezone(p, "PLANT1"), "UTC");
    assert_string_equal(is_policy_site_timezone(p, "PLANT9"), "UTC");
    is_policy_destroy(p);
    is_policy_destroy(NULL);
}

static void test_minimal_policy_defaults(void **state) {
    is_policy_t *p = load_ok("tiers: {only: {cadence: immediate, stale_after: 1m}}\n"
                             "default_tier: only\n",
                             NULL);
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    int rule = 7;
    (void)state;
    assert_string_equal(is_policy_topic_prefix(p), "invsync");
    assert_string_equal(is_policy_site_timezone(p, "PLANT1"), "UTC");
    assert_string_equal(is_policy_classify(p, &m, &rule)->name, "only");
    assert_int_equal(rule, -1);
    is_policy_destroy(p);
}

static void test_site_timezone(void **state) {
    (void)state;
    if (access("/usr/share/zoneinfo/Europe/Berlin", R_OK) != 0)
        skip(); /* no tzdata installed */
    is_policy_t *p = load_ok("sites:\n"
                             "  PLANT1: {timezone: Europe/Berlin}\n"
                             "  PLANT2: {timezone: America/Chicago}\n"
                             "  PLANT3: {}\n"
                             "tiers: {daily: {cadence: \"at 02:00\", stale_after: 26h}}\n"
                             "default_tier: daily\n",
                             NULL);
    assert_string_equal(is_policy_site_timezone(p, "PLANT1"), "Europe/Berlin");
    assert_string_equal(is_policy_site_timezone(p, "PLANT2"), "America/Chicago");
    assert_string_equal(is_policy_site_timezone(p, "PLANT3"), "UTC");
    assert_string_equal(is_policy_site_timezone(p, "PLANT4"), "UTC");
    is_policy_destroy(p);
}

/* ---- every error names file:line, key path, bad value, choices ---------- */

#define RT  "  realtime: {cadence: immediate, stale_after: 2m}\n"
#define PER "  periodic: {cadence: every 30m, stale_after: 90m}\n"

typedef struct error_case {
    const char *name;
    const char *yaml;
    const char *csv; /* written as materials.csv when non-NULL */
    is_err_t rc;
    const char *want[3]; /* fragments that must all appear in errstr */
} error_case_t;

static const error_case_t ERROR_CASES[] = {
    {"bad cadence",
     "tiers:\n  realtime: {cadence: sometimes, stale_after: 2m}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:2: tiers.realtime.cadence: 'sometimes' is not a cadence",
      "immediate | every <duration> | at HH:MM[,HH:MM...] | shift <calendar>"}},
    {"every without unit",
     "tiers:\n  p: {cadence: every 5, stale_after: 90m}\ndefault_tier: p\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.p.cadence: '5' needs a unit"}},
    {"every zero",
     "tiers:\n  p: {cadence: every 0s, stale_after: 90m}\ndefault_tier: p\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.p.cadence: '0s' must be greater than zero"}},
    {"at out of range",
     "tiers:\n  d: {cadence: \"at 02:00,25:00\", stale_after: 26h}\ndefault_tier: d\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:2: tiers.d.cadence: '25:00' in 'at 02:00,25:00' is not a time of day HH:MM"}},
    {"at duplicate time",
     "tiers:\n  d: {cadence: \"at 02:00, 02:00\", stale_after: 26h}\ndefault_tier: d\n",
     NULL,
     IS_ERR_CONFIG,
     {"'02:00' appears twice"}},
    {"at with unquoted commas in a flow mapping",
     "tiers:\n  s: {cadence: at 06:00,14:00,22:00, stale_after: 9h}\ndefault_tier: s\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.s: unexpected key '14:00'", "quote the cadence"}},
    {"unknown tier in rule",
     "tiers:\n" RT PER "rules:\n"
     "  - {when: {type: [QUARANTINE]}, tier: realtime}\n"
     "  - {when: {type: [SCRAP]}, tier: fast}\n"
     "default_tier: periodic\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:6: rules[1].tier: unknown tier 'fast' (tiers: realtime, periodic)"}},
    {"unknown calendar",
     "calendars:\n  day: {shifts: [{name: A, start: \"06:00\"}]}\n"
     "tiers:\n  s: {cadence: shift night, stale_after: 25h}\ndefault_tier: s\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:4: tiers.s.cadence: unknown calendar 'night' (calendars: day)"}},
    {"shift without any calendar",
     "tiers:\n  s: {cadence: shift night, stale_after: 25h}\ndefault_tier: s\n",
     NULL,
     IS_ERR_CONFIG,
     {"unknown calendar 'night'", "none defined"}},
    {"calendar with duplicate start",
     "calendars:\n  c:\n    shifts:\n      - {name: A, start: \"06:00\"}\n"
     "      - {name: B, start: \"06:00\"}\n"
     "tiers:\n  s: {cadence: shift c, stale_after: 25h}\ndefault_tier: s\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:5: calendars.c.shifts[1].start: '06:00' is also the start of shift 'A'"}},
    {"bad zone",
     "sites:\n  PLANT1: {timezone: Mars/Olympus_Mons}\n"
     "tiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:2: sites.PLANT1.timezone: unknown time zone 'Mars/Olympus_Mons'"}},
    {"zone escaping zoneinfo",
     "sites:\n  PLANT1: {timezone: ../../etc/passwd}\ntiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"unknown time zone '../../etc/passwd'"}},
    {"zoneinfo file that is not a zone",
     "sites:\n  PLANT1: {timezone: zone.tab}\ntiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"unknown time zone 'zone.tab'"}},
    {"bad site name",
     "sites:\n  PLANT.1: {timezone: UTC}\ntiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"sites: site 'PLANT.1' must be"}},
    {"bad stale_after",
     "tiers:\n  realtime: {cadence: immediate, stale_after: soon}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:2: tiers.realtime.stale_after: 'soon' is not a duration"}},
    {"stale_after zero",
     "tiers:\n  realtime: {cadence: immediate, stale_after: 0s}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.realtime.stale_after: '0s' must be greater than zero"}},
    {"stale_after without unit",
     "tiers:\n  realtime: {cadence: immediate, stale_after: 120}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"'120' needs a unit"}},
    {"stale_after missing",
     "tiers:\n  realtime: {cadence: immediate}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.realtime.stale_after: required"}},
    {"stale_after not above the cadence",
     "tiers:\n  p: {cadence: every 30m, stale_after: 10m}\ndefault_tier: p\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.p.stale_after: '10m' is not longer than the normal wait of 30m", "stale every cycle"}},
    {"stale_after not above hold + at gap",
     "tiers:\n  d: {cadence: \"at 02:00\", stale_after: 24h, hold: 1h}\ndefault_tier: d\n",
     NULL,
     IS_ERR_CONFIG,
     {"'24h' is not longer than the normal wait of 25h"}},
    {"bad hold",
     "tiers:\n  n: {cadence: every 5m, stale_after: 15m, hold: later}\ndefault_tier: n\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.n.hold: 'later' is not a duration"}},
    {"bad max_lines",
     "tiers:\n  n: {cadence: every 5m, stale_after: 15m, max_lines: -3}\ndefault_tier: n\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.n.max_lines: '-3' is not a line count"}},
    {"unknown top-level key",
     "tiers:\n" RT "default_tier: realtime\ndefault: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:4: unknown key 'default' (keys: topic_prefix, materials, calendars, sites, tiers, "
      "rules, default_tier)"}},
    {"unknown tier key",
     "tiers:\n  realtime: {cadence: immediate, stale: 2m}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers.realtime: unknown key 'stale' (keys: cadence, stale_after, hold, max_lines)"}},
    {"unknown when key",
     "tiers:\n" RT "rules:\n  - {when: {materal: \"PKG-*\"}, tier: realtime}\n"
     "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:4: rules[0].when: unknown key 'materal'",
      "(keys: type, material, material_class, regulated, site, location)"}},
    {"unknown rule key",
     "tiers:\n" RT "rules:\n  - {when: {type: SCRAP}, tier: realtime, why: x}\n"
     "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"rules[0]: unknown key 'why' (keys: when, tier)"}},
    {"unknown movement type",
     "tiers:\n" RT "rules:\n  - {when: {type: [SCRAP, SHIP]}, tier: realtime}\n"
     "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"rules[0].when.type[1]: unknown movement type 'SHIP'",
      "(types: GOODS_ISSUE, COMPLETION, SCRAP, QUARANTINE, RELEASE, TRANSFER, ADJUSTMENT, "
      "REVERSAL)"}},
    {"empty when",
     "tiers:\n" RT "rules:\n  - {when: {}, tier: realtime}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"rules[0].when: no conditions"}},
    {"empty list condition",
     "tiers:\n" RT "rules:\n  - {when: {type: []}, tier: realtime}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"rules[0].when.type: an empty list matches nothing"}},
    {"rules not a list",
     "tiers:\n" RT "rules: {a: b}\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:3: rules: expected a list"}},
    {"bad site in rule",
     "tiers:\n" RT "rules:\n  - {when: {site: [PLANT1, \"PLANT 2\"]}, tier: realtime}\n"
     "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"rules[0].when.site[1]: site 'PLANT 2' must be"}},
    {"material_class without master",
     "tiers:\n" RT "rules:\n  - {when: {material_class: [FG]}, tier: realtime}\n"
     "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:4: rules[0].when.material_class: needs a material master"}},
    {"regulated without master",
     "tiers:\n" RT "rules:\n  - {when: {regulated: true}, tier: realtime}\n"
     "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"rules[0].when.regulated: needs a material master"}},
    {"regulated not a boolean",
     "materials: materials.csv\ntiers:\n" RT
     "rules:\n  - {when: {regulated: maybe}, tier: realtime}\ndefault_tier: realtime\n",
     "material,class,regulated\n",
     IS_ERR_CONFIG,
     {"rules[0].when.regulated: 'maybe' is not a boolean (true, false"}},
    {"bad CSV row",
     "materials: materials.csv\ntiers:\n" RT "default_tier: realtime\n",
     "material,class,regulated\nRM-101,RM,false\nRM-102,RM,maybe\n",
     IS_ERR_CONFIG,
     {"materials.csv:3: regulated 'maybe' is not a boolean"}},
    {"CSV row with a missing field",
     "materials: materials.csv\ntiers:\n" RT "default_tier: realtime\n",
     "material,class,regulated\r\n\r\n# comment\r\nRM-101,RM\r\n",
     IS_ERR_CONFIG,
     {"materials.csv:4: expected 3 fields (material,class,regulated), got 2"}},
    {"CSV bad header",
     "materials: materials.csv\ntiers:\n" RT "default_tier: realtime\n",
     "code,class,regulated\nRM-101,RM,false\n",
     IS_ERR_CONFIG,
     {"materials.csv:1: expected the header 'material,class,regulated', got 'code,"}},
    {"CSV empty",
     "materials: materials.csv\ntiers:\n" RT "default_tier: realtime\n",
     "",
     IS_ERR_CONFIG,
     {"materials.csv:1: missing the header"}},
    {"CSV duplicate material",
     "materials: materials.csv\ntiers:\n" RT "default_tier: realtime\n",
     "material,class,regulated\nRM-101,RM,false\nPKG-1,PKG,no\nRM-101,RM,true\n",
     IS_ERR_CONFIG,
     {"materials.csv:4: material 'RM-101' is already on line 2"}},
    {"CSV quoted field",
     "materials: materials.csv\ntiers:\n" RT "default_tier: realtime\n",
     "material,class,regulated\n\"RM,101\",RM,false\n",
     IS_ERR_CONFIG,
     {"materials.csv:2: quoted fields are not supported"}},
    {"master file missing",
     "materials: missing.csv\ntiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_IO,
     {"p.yaml:1: materials: cannot open '", "/missing.csv'"}},
    {"default_tier missing",
     "tiers:\n" RT PER,
     NULL,
     IS_ERR_CONFIG,
     {"default_tier: required", "(tiers: realtime, periodic)"}},
    {"default_tier unknown",
     "tiers:\n" RT PER "default_tier: slow\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:4: default_tier: unknown tier 'slow' (tiers: realtime, periodic)"}},
    {"no tiers",
     "default_tier: x\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers: at least one tier is required"}},
    {"empty tiers",
     "tiers: {}\ndefault_tier: x\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers: at least one tier is required"}},
    {"bad tier name",
     "tiers:\n  Fast: {cadence: immediate, stale_after: 2m}\ndefault_tier: Fast\n",
     NULL,
     IS_ERR_CONFIG,
     {"tiers: tier name 'Fast' must be 1-31 characters of a-z, 0-9, '_' or '-'"}},
    {"tier named like the dead-letter topic",
     "tiers:\n  dlq: {cadence: immediate, stale_after: 2m}\ndefault_tier: dlq\n",
     NULL,
     IS_ERR_CONFIG,
     {"tier name 'dlq' is reserved"}},
    {"bad topic prefix",
     "topic_prefix: \"in sync\"\ntiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:1: topic_prefix: 'in sync' must be"}},
    {"topic prefix with an empty part",
     "topic_prefix: acme..mes\ntiers:\n" RT "default_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"topic_prefix: 'acme..mes' must be"}},
    {"top level not a mapping", "- a\n- b\n", NULL, IS_ERR_CONFIG, {"expected a mapping"}},
    {"tier not a mapping",
     "tiers:\n  realtime: immediate\ndefault_tier: realtime\n",
     NULL,
     IS_ERR_CONFIG,
     {"p.yaml:2: tiers.realtime: expected a mapping, got a scalar"}},
    {"YAML syntax error", "tiers: [a\n", NULL, IS_ERR_CONFIG, {"p.yaml:"}},
};

static void test_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(ERROR_CASES) / sizeof(ERROR_CASES[0]); i++) {
        const error_case_t *c = &ERROR_CASES[i];
        is_policy_t *p = (is_policy_t *)1;
        char err[1024] = "";
        if (c->csv)
            write_file("materials.csv", c->csv);
        is_err_t rc = is_policy_load(write_file("p.yaml", c->yaml), &p, err, sizeof(err));
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
        if (p != NULL)
            fail_msg("%s: *out not NULL on error", c->name);
        for (size_t j = 0; j < 3 && c->want[j]; j++)
            if (!strstr(err, c->want[j]))
                fail_msg("%s:\n  error: %s\n  lacks: %s", c->name, err, c->want[j]);
        if (strncmp(err, g_dir, strlen(g_dir)) != 0)
            fail_msg("%s: error does not start with the file name: %s", c->name, err);
        unlink(write_file("materials.csv", ""));
    }
}

static void test_missing_policy_file(void **state) {
    is_policy_t *p = NULL;
    char err[256] = "";
    (void)state;
    assert_int_equal(is_policy_load("/nonexistent/policy.yaml", &p, err, sizeof(err)), IS_ERR_IO);
    assert_null(p);
    assert_non_null(strstr(err, "cannot open '/nonexistent/policy.yaml'"));
}

/* ---- classification ----------------------------------------------------- */

typedef struct class_case {
    int type;
    int reversed_type;
    const char *material;
    const char *site;
    const char *location;
    const char *tier;
    int rule; /* -1 = default */
} class_case_t;

static void run_class_cases(const is_policy_t *p, const class_case_t *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const class_case_t *c = &cases[i];
        is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
        int rule = 99;
        m.type = (Invsync__V1__MovementType)c->type;
        m.reversed_type = (Invsync__V1__MovementType)c->reversed_type;
        m.material = (char *)c->material;
        m.site = (char *)(c->site ? c->site : "PLANT1");
        m.location = (char *)(c->location ? c->location : "WH-01");
        const is_tier_t *t = is_policy_classify(p, &m, &rule);
        assert_non_null(t);
        if (strcmp(t->name, c->tier) != 0 || rule != c->rule)
            fail_msg("case %zu (%s %s): got %s/rule %d, want %s/rule %d", i,
                     is_movement_type_name(c->type), c->material, t->name, rule, c->tier, c->rule);
        assert_ptr_equal(is_policy_classify(p, &m, NULL), t);
    }
}

enum {
    GI = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE,
    COMPL = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION,
    SCRAP = INVSYNC__V1__MOVEMENT_TYPE__SCRAP,
    QUAR = INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE,
    REL = INVSYNC__V1__MOVEMENT_TYPE__RELEASE,
    XFER = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER,
    ADJ = INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT,
    REV = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL,
};

static void test_classify_design_rules(void **state) {
    static const class_case_t cases[] = {
        {QUAR, 0, "RM-101", NULL, NULL, "realtime", 0},
        {REL, 0, "PKG-201", NULL, NULL, "realtime", 0}, /* rule 0 before the PKG rule */
        {COMPL, 0, "FG-301", NULL, NULL, "realtime", 1},
        {GI, 0, "API-1", NULL, NULL, "realtime", 1},
        {ADJ, 0, "FG-301", NULL, NULL, "realtime", 1},    /* first match wins over daily */
        {COMPL, 0, "FG-304", NULL, NULL, "periodic", -1}, /* FG but not regulated */
        {GI, 0, "PKG-201", NULL, NULL, "periodic", 2},
        {GI, 0, "PKG-999", NULL, NULL, "periodic", 2}, /* glob: master not needed */
        {ADJ, 0, "RM-101", NULL, NULL, "daily", 3},
        {GI, 0, "RM-101", NULL, NULL, "periodic", -1},
        {COMPL, 0, "FG-999", NULL, NULL, "periodic", -1}, /* not in master: never FG */
        {SCRAP, 0, "", NULL, NULL, "periodic", -1},
        {0, 0, "RM-101", NULL, NULL, "periodic", -1},  /* unspecified type */
        {99, 0, "RM-101", NULL, NULL, "periodic", -1}, /* out-of-range type */
        /* A REVERSAL follows the tier of what it reverses. */
        {REV, ADJ, "RM-101", NULL, NULL, "daily", 3},
        {REV, QUAR, "RM-101", NULL, NULL, "realtime", 0},
        {REV, GI, "RM-101", NULL, NULL, "periodic", -1},
    };
    is_policy_t *p = load_ok(GOOD, MASTER);
    (void)state;
    run_class_cases(p, cases, sizeof(cases) / sizeof(cases[0]));
    is_policy_destroy(p);
}

static void test_classify_conditions(void **state) {
    static const char yaml[] =
        "materials: materials.csv\n"
        "tiers:\n" RT PER "  nearline: {cadence: every 5m, stale_after: 15m}\n"
        "  daily: {cadence: \"at 02:00\", stale_after: 26h}\n"
        "rules:\n"
        "  - {when: {type: REVERSAL}, tier: nearline}\n"
        "  - {when: {site: [PLANT2], location: [\"COLD-*\", \"LAB?\"]}, tier: realtime}\n"
        "  - {when: {material: [\"RM-10[1-3]\", RM-110], type: [TRANSFER]}, tier: daily}\n"
        "  - {when: {material_class: [NOPE]}, tier: realtime}\n"
        "  - {when: {material_class: PKG, regulated: false, site: PLANT1}, tier: nearline}\n"
        "  - {when: {regulated: false, type: [SCRAP]}, tier: daily}\n"
        "default_tier: periodic\n";
    static const class_case_t cases[] = {
        {REV, ADJ, "RM-101", NULL, NULL, "nearline", 0}, /* an explicit REVERSAL rule */
        {GI, 0, "RM-101", "PLANT2", "COLD-7", "realtime", 1},
        {GI, 0, "RM-101", "PLANT2", "LAB1", "realtime", 1},
        {GI, 0, "RM-101", "PLANT2", "LAB12", "periodic", -1},
        {GI, 0, "RM-101", "PLANT1", "COLD-7", "periodic", -1},
        {XFER, 0, "RM-102", NULL, NULL, "daily", 2},
        {XFER, 0, "RM-104", NULL, NULL, "periodic", -1},
        {XFER, 0, "RM-110", NULL, NULL, "daily", 2},
        {GI, 0, "RM-102", NULL, NULL, "periodic", -1},
        {GI, 0, "PKG-201", "PLANT1", NULL, "nearline", 4},
        {GI, 0, "PKG-201", "PLANT2", NULL, "periodic", -1},
        {SCRAP, 0, "RM-101", NULL, NULL, "daily", 5},
        {SCRAP, 0, "FG-301", NULL, NULL, "periodic", -1}, /* regulated */
        {SCRAP, 0, "XX-1", NULL, NULL, "periodic", -1},   /* not in master */
    };
    is_policy_t *p = load_ok(yaml, MASTER);
    (void)state;
    run_class_cases(p, cases, sizeof(cases) / sizeof(cases[0]));
    is_policy_destroy(p);
}

static void test_classify_null_strings(void **state) {
    is_policy_t *p = load_ok(GOOD, MASTER);
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    int rule = 0;
    (void)state;
    m.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    m.material = NULL;
    m.site = NULL;
    m.location = NULL;
    assert_string_equal(is_policy_classify(p, &m, &rule)->name, "periodic");
    assert_int_equal(rule, -1);
    is_policy_destroy(p);
}

/* ---- policy_version ----------------------------------------------------- */

static void test_version_is_file_hash(void **state) {
    char hex[IS_SHA256_HEX_LEN + 1], err[256];
    const char *yaml = "tiers: {only: {cadence: immediate, stale_after: 1m}}\ndefault_tier: only\n";
    is_policy_t *a = load_ok(yaml, NULL);
    (void)state;
    assert_int_equal(is_sha256_file_hex(write_file("p.yaml", yaml), hex, err, sizeof(err)), IS_OK);
    assert_string_equal(is_policy_version(a), hex);

    /* One byte more (a trailing comment character) is a new version. */
    char changed[256];
    snprintf(changed, sizeof(changed), "%s#", yaml);
    is_policy_t *b = load_ok(changed, NULL);
    assert_string_not_equal(is_policy_version(a), is_policy_version(b));
    is_policy_destroy(a);
    is_policy_destroy(b);
}

static void test_version_includes_master(void **state) {
    uint8_t digest[IS_SHA256_LEN];
    char want[IS_SHA256_HEX_LEN + 1];
    is_sha256_t h;
    (void)state;
    is_policy_t *a = load_ok(GOOD, MASTER);

    assert_int_equal(is_sha256_init(&h), IS_OK);
    is_sha256_update(&h, GOOD, strlen(GOOD));
    is_sha256_update(&h, "\n--materials--\n", 15);
    is_sha256_update(&h, MASTER, strlen(MASTER));
    is_sha256_final(&h, digest);
    is_hex(digest, IS_SHA256_LEN, want);
    assert_string_equal(is_policy_version(a), want);

    /* FG-304 becomes regulated: same policy text, new version, new tier. */
    char master[sizeof(MASTER)];
    memcpy(master, MASTER, sizeof(MASTER));
    char *f = strstr(master, "FG-304,FG,false");
    assert_non_null(f);
    memcpy(f + 10, "true ", 5); /* "false" -> "true " (same length, one field) */
    is_policy_t *b = load_ok(GOOD, master);
    assert_string_not_equal(is_policy_version(a), is_policy_version(b));

    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    m.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    m.material = "FG-304";
    assert_string_equal(is_policy_classify(a, &m, NULL)->name, "periodic");
    assert_string_equal(is_policy_classify(b, &m, NULL)->name, "realtime");
    is_policy_destroy(a);
    is_policy_destroy(b);
}

/* ---- the shipped default ------------------------------------------------ */

static void test_deploy_policy_loads(void **state) {
    static const class_case_t cases[] = {
        {QUAR, 0, "RM-101", NULL, NULL, "realtime", 0},
        {REL, 0, "FG-302", NULL, NULL, "realtime", 0},
        {COMPL, 0, "FG-301", NULL, NULL, "realtime", 1},
        {GI, 0, "FG-303", NULL, NULL, "realtime", 1},
        {COMPL, 0, "FG-305", NULL, NULL, "periodic", -1},
        {GI, 0, "PKG-201", NULL, NULL, "periodic", 2},
        {ADJ, 0, "RM-105", NULL, NULL, "daily", 3},
        {GI, 0, "RM-101", NULL, NULL, "periodic", -1},
        {SCRAP, 0, "RM-110", NULL, NULL, "periodic", -1},
    };
    is_policy_t *p = NULL;
    char err[512] = "";
    (void)state;
    if (is_policy_load("deploy/policy.yaml", &p, err, sizeof(err)) != IS_OK)
        fail_msg("deploy/policy.yaml: %s", err);
    static const char *const order[] = {"realtime", "nearline", "periodic", "shift", "daily"};
    assert_int_equal(is_policy_tier_count(p), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(is_policy_tier(p, i)->name, order[i]);
    assert_string_equal(is_policy_topic_prefix(p), "invsync");
    const is_tier_t *shift = is_policy_tier_by_name(p, "shift");
    assert_int_equal(shift->cadence, IS_CADENCE_SHIFT);
    assert_non_null(is_policy_calendar(p, shift->calendar));
    assert_int_equal(is_policy_calendar(p, shift->calendar)->n_shifts, 3);
    run_class_cases(p, cases, sizeof(cases) / sizeof(cases[0]));
    is_policy_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_policy_loads),    cmocka_unit_test(test_minimal_policy_defaults),
        cmocka_unit_test(test_site_timezone),        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_policy_file),  cmocka_unit_test(test_classify_design_rules),
        cmocka_unit_test(test_classify_conditions),  cmocka_unit_test(test_classify_null_strings),
        cmocka_unit_test(test_version_is_file_hash), cmocka_unit_test(test_version_includes_master),
        cmocka_unit_test(test_deploy_policy_loads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
