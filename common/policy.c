/*
 * policy.c — loading, validating and applying the tier policy (policy.h).
 *
 * Load (once at start-up or on reload, files of a few KiB plus a material
 * master of up to some 100k rows): the policy file is read into memory once,
 * so the bytes hashed into policy_version are exactly the bytes parsed; the
 * yamltree is walked key by key into plain arrays and then freed. Every
 * error names "file:line: key.path: what is wrong 'value' (valid choices)"
 * and nothing is loaded unless everything is valid.
 *
 * Classify (once per accepted movement, 100k/s on one core): everything is
 * precompiled so that a call allocates nothing and takes no lock. Movement
 * types are a bit mask, globs are split into literal / prefix / fnmatch,
 * material classes are interned to small integers and the master is a
 * sorted array searched with bsearch at most once per call, only when a rule
 * needs it.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "duration.h"
#include "policy.h"
#include "topic.h"
#include "yamltree.h"

#define POLICY_MAX_BYTES (1 << 20)  /* a policy is a reviewed document, not data */
#define MASTER_MAX_BYTES (64 << 20) /* ~1M material rows */
#define PREFIX_MAX       100        /* leaves room for ".<site 64>.<tier 31>" in 249 */
#define TIERS_MAX        64
#define CLASS_MAX        31
#define ZONEINFO_DIR     "/usr/share/zoneinfo"
#define MASTER_SEPARATOR "\n--materials--\n"
#define DURATION_HINT    "e.g. 150ms, 30s, 5m, 2h, 1d"
#define BOOL_CHOICES     "true, false, yes, no, on, off, 1, 0"
#define CADENCE_GRAMMAR  "immediate | every <duration> | at HH:MM[,HH:MM...] | shift <calendar>"

typedef enum { PAT_LITERAL, PAT_PREFIX, PAT_GLOB } pat_kind_t;

typedef struct pattern {
    pat_kind_t kind;
    size_t len; /* PAT_PREFIX: length of the prefix before the trailing '*' */
    char *text;
} pattern_t;

typedef struct patlist {
    size_t n; /* 0 = condition absent */
    pattern_t *items;
} patlist_t;

typedef struct rule {
    size_t tier;    /* index into tiers */
    uint32_t types; /* bit t = movement type t matches; 0 = condition absent */
    patlist_t material, location;
    size_t n_sites; /* 0 = condition absent */
    char **sites;
    int has_class; /* material_class given; classes may still be empty if none is known */
    size_t n_classes;
    int *classes;  /* ids into is_policy.classes */
    int regulated; /* -1 = condition absent, else 0 or 1 */
} rule_t;

typedef struct material {
    const char *name; /* points into master_text */
    int class_id;     /* index into is_policy.classes */
    int regulated;
    int line; /* in the master file, for duplicate messages */
} material_t;

typedef struct site {
    char *name;
    char *timezone;
} site_t;

struct is_policy {
    char version[IS_SHA256_HEX_LEN + 1];
    char *topic_prefix;
    is_tier_t *tiers; /* file order */
    size_t n_tiers;
    size_t default_tier;
    is_shift_calendar_t *calendars;
    size_t n_calendars;
    site_t *sites; /* sorted by name */
    size_t n_sites;
    rule_t *rules; /* file order: first match wins */
    size_t n_rules;
    char *master_text;     /* master file bytes; fields NUL-terminated in place */
    material_t *materials; /* sorted by name */
    size_t n_materials;
    const char **classes; /* interned class names, point into master_text */
    size_t n_classes;
};

typedef struct loader {
    const char *file; /* policy path as given, for messages */
    char *err;
    size_t err_size;
    is_policy_t *p;
} loader_t;

/* ---- error helpers ------------------------------------------------------ */

static is_err_t fail(loader_t *ld, int line, const char *key, const char *fmt, ...) IS_PRINTF(4, 5);

/* Formats "file:line: key: message"; returns IS_ERR_CONFIG. */
static is_err_t fail(loader_t *ld, int line, const char *key, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key && *key)
        is_errf(ld->err, ld->err_size, "%s:%d: %s: %s", ld->file, line, key, msg);
    else
        is_errf(ld->err, ld->err_size, "%s:%d: %s", ld->file, line, msg);
    return IS_ERR_CONFIG;
}

static is_err_t oom(loader_t *ld) {
    is_errf(ld->err, ld->err_size, "%s: out of memory", ld->file);
    return IS_ERR_NOMEM;
}

static const char *kind_name(const is_yaml_node_t *n) {
    switch (n->kind) {
    case IS_YAML_MAP:
        return "a mapping";
    case IS_YAML_SEQ:
        return "a list";
    default:
        return "a scalar";
    }
}

static is_err_t expect_map(loader_t *ld, const is_yaml_node_t *n, const char *key) {
    if (n->kind != IS_YAML_MAP)
        return fail(ld, n->line, key, "expected a mapping, got %s", kind_name(n));
    return IS_OK;
}

/* A non-empty scalar; an unquoted ~ or null counts as empty. */
static is_err_t get_scalar(loader_t *ld, const is_yaml_node_t *n, const char *key,
                           const char **out) {
    if (n->kind != IS_YAML_SCALAR)
        return fail(ld, n->line, key, "expected a value, got %s", kind_name(n));
    if (!n->scalar || !*n->scalar ||
        (!n->quoted && (strcmp(n->scalar, "~") == 0 || strcmp(n->scalar, "null") == 0)))
        return fail(ld, n->line, key, "a value is required");
    *out = n->scalar;
    return IS_OK;
}

/* Joins allowed[] (NULL-terminated) as "a, b, c". */
static void join(char *buf, size_t size, const char *const *names, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Unknown keys are errors: a typo must not silently change a tier. */
static is_err_t check_keys(loader_t *ld, const is_yaml_node_t *map, const char *key,
                           const char *const *allowed) {
    for (size_t i = 0; i < map->n; i++) {
        size_t j, n_allowed;
        for (j = 0; allowed[j]; j++)
            if (strcmp(map->keys[i], allowed[j]) == 0)
                break;
        if (allowed[j])
            continue;
        for (n_allowed = 0; allowed[n_allowed]; n_allowed++)
            ;
        char choices[256];
        join(choices, sizeof(choices), allowed, n_allowed);
        return fail(ld, map->items[i]->line, key, "unknown key '%s' (keys: %s)", map->keys[i],
                    choices);
    }
    return IS_OK;
}

static is_err_t expect_keys(loader_t *ld, const is_yaml_node_t *map, const char *key,
                            const char *const *allowed) {
    is_err_t rc = expect_map(ld, map, key);
    return rc != IS_OK ? rc : check_keys(ld, map, key, allowed);
}

static void tier_choices(const is_policy_t *p, char *buf, size_t size) {
    const char *names[TIERS_MAX];
    for (size_t i = 0; i < p->n_tiers; i++)
        names[i] = p->tiers[i].name;
    join(buf, size, names, p->n_tiers);
}

/* ---- small parsers ------------------------------------------------------ */

/* Exactly "HH:MM", 00:00..23:59, in the first len bytes of s. */
static int parse_hhmm(const char *s, size_t len, int *minutes) {
    if (len != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && !isdigit((unsigned char)s[i]))
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59)
        return -1;
    *minutes = h * 60 + m;
    return 0;
}

/*
 * A duration with a unit. A bare number is refused although
 * is_parse_duration_ms reads it as milliseconds: in a reviewed policy
 * "stale_after: 120" is far more likely to mean minutes than 120 ms.
 */
static is_err_t parse_dur(loader_t *ld, int line, const char *key, const char *s, int allow_zero,
                          int64_t *out) {
    int64_t v;
    if (is_parse_int64(s, 0, INT64_MAX, &v) == IS_OK)
        return fail(ld, line, key, "'%s' needs a unit (%s)", s, DURATION_HINT);
    if (is_parse_duration_ms(s, &v) != IS_OK)
        return fail(ld, line, key, "'%s' is not a duration (%s)", s, DURATION_HINT);
    if (v == 0 && !allow_zero)
        return fail(ld, line, key, "'%s' must be greater than zero", s);
    *out = v;
    return IS_OK;
}

/* 5400000 -> "1h30m", 1500 -> "1s500ms": durations in messages read like the file. */
static void fmt_dur(int64_t ms, char *buf, size_t size) {
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t used = 0;
    buf[0] = '\0';
    if (ms <= 0) {
        snprintf(buf, size, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && used < size; i++) {
        if (ms >= units[i].ms) {
            int w = snprintf(buf + used, size - used, "%lld%s", (long long)(ms / units[i].ms),
                             units[i].unit);
            if (w < 0)
                return;
            used += (size_t)w;
            ms %= units[i].ms;
        }
    }
}

static int parse_bool(const char *s, int *out) {
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off",
                                                                             "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, f[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int name_valid(const char *s, size_t max, int upper) {
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '_' || c == '-' || (upper && isupper(c))))
            return 0;
    }
    return 1;
}

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer. */
static is_err_t read_file(const char *path, size_t max, char **out, size_t *out_len, char *err,
                          size_t err_size) {
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *buf;
    if (!f) {
        is_errf(err, err_size, "cannot open '%s': %s", path, strerror(errno));
        return IS_ERR_IO;
    }
    buf = malloc(cap + 1);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap)
            break;
        if (cap >= max) {
            free(buf);
            fclose(f);
            is_errf(err, err_size, "'%s' is larger than %zu bytes", path, max);
            return IS_ERR_TOO_LARGE;
        }
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf) {
        fclose(f);
        is_errf(err, err_size, "cannot read '%s': out of memory", path);
        return IS_ERR_NOMEM;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        is_errf(err, err_size, "cannot read '%s'", path);
        return IS_ERR_IO;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return IS_OK;
}

/* ---- topic prefix, calendars, sites ------------------------------------- */

static is_err_t load_prefix(loader_t *ld, const is_yaml_node_t *n) {
    const char *s = "invsync";
    is_err_t rc;
    if (n) {
        rc = get_scalar(ld, n, "topic_prefix", &s);
        if (rc != IS_OK)
            return rc;
        size_t len = strlen(s);
        int ok = len <= PREFIX_MAX && s[0] != '.' && s[len - 1] != '.' && !strstr(s, "..");
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-';
        if (!ok)
            return fail(ld, n->line, "topic_prefix",
                        "'%s' must be 1-%d characters of A-Z, a-z, 0-9, '.', '_' or '-', "
                        "without empty dot-separated parts",
                        s, PREFIX_MAX);
    }
    ld->p->topic_prefix = strdup(s);
    return ld->p->topic_prefix ? IS_OK : oom(ld);
}

static is_err_t load_calendar(loader_t *ld, const char *name, const is_yaml_node_t *n,
                              is_shift_calendar_t *cal) {
    static const char *const cal_keys[] = {"shifts", NULL};
    static const char *const shift_keys[] = {"name", "start", NULL};
    char key[160], ikey[200];
    is_err_t rc;
    snprintf(key, sizeof(key), "calendars.%s", name);
    if (!name_valid(name, sizeof(cal->name) - 1, 1))
        return fail(ld, n->line, "calendars",
                    "calendar name '%s' must be 1-63 characters of A-Z, a-z, 0-9, '_' or '-'",
                    name);
    snprintf(cal->name, sizeof(cal->name), "%s", name);
    rc = expect_keys(ld, n, key, cal_keys);
    if (rc != IS_OK)
        return rc;
    const is_yaml_node_t *shifts = is_yaml_get(n, "shifts");
    snprintf(key, sizeof(key), "calendars.%s.shifts", name);
    if (!shifts)
        return fail(ld, n->line, key, "required: a list of {name, start: \"HH:MM\"}");
    if (shifts->kind != IS_YAML_SEQ || shifts->n == 0)
        return fail(ld, shifts->line, key, "expected a non-empty list of {name, start}");
    if (shifts->n > IS_POLICY_MAX_AT)
        return fail(ld, shifts->line, key, "%zu shifts; at most %d", shifts->n, IS_POLICY_MAX_AT);
    for (size_t i = 0; i < shifts->n; i++) {
        const is_yaml_node_t *s = shifts->items[i], *nm, *st;
        const char *sname = NULL, *sstart = NULL;
        int minutes, at;
        snprintf(ikey, sizeof(ikey), "%s[%zu]", key, i);
        rc = expect_keys(ld, s, ikey, shift_keys);
        if (rc != IS_OK)
            return rc;
        nm = is_yaml_get(s, "name");
        st = is_yaml_get(s, "start");
        if (!nm || !st)
            return fail(ld, s->line, ikey, "'%s' is required", nm ? "start" : "name");
        snprintf(ikey, sizeof(ikey), "%s[%zu].name", key, i);
        rc = get_scalar(ld, nm, ikey, &sname);
        if (rc != IS_OK)
            return rc;
        if (strlen(sname) >= sizeof(cal->shift_names[0]))
            return fail(ld, nm->line, ikey, "'%s' is longer than %zu characters", sname,
                        sizeof(cal->shift_names[0]) - 1);
        snprintf(ikey, sizeof(ikey), "%s[%zu].start", key, i);
        rc = get_scalar(ld, st, ikey, &sstart);
        if (rc != IS_OK)
            return rc;
        if (parse_hhmm(sstart, strlen(sstart), &minutes) != 0)
            return fail(ld, st->line, ikey, "'%s' is not a time of day HH:MM (00:00-23:59)",
                        sstart);
        /* Insert sorted by start; equal starts or names would make "which shift" ambiguous. */
        for (int j = 0; j < cal->n_shifts; j++) {
            if (cal->start_minutes[j] == minutes)
                return fail(ld, st->line, ikey, "'%s' is also the start of shift '%s'", sstart,
                            cal->shift_names[j]);
            if (strcmp(cal->shift_names[j], sname) == 0)
                return fail(ld, nm->line, key, "shift name '%s' appears twice", sname);
        }
        for (at = cal->n_shifts; at > 0 && cal->start_minutes[at - 1] > minutes; at--) {
            cal->start_minutes[at] = cal->start_minutes[at - 1];
            memcpy(cal->shift_names[at], cal->shift_names[at - 1], sizeof(cal->shift_names[0]));
        }
        cal->start_minutes[at] = minutes;
        snprintf(cal->shift_names[at], sizeof(cal->shift_names[0]), "%s", sname);
        cal->n_shifts++;
    }
    return IS_OK;
}

static is_err_t load_calendars(loader_t *ld, const is_yaml_node_t *n) {
    is_err_t rc;
    if (!n)
        return IS_OK;
    rc = expect_map(ld, n, "calendars");
    if (rc != IS_OK)
        return rc;
    if (n->n == 0)
        return IS_OK;
    ld->p->calendars = calloc(n->n, sizeof(*ld->p->calendars));
    if (!ld->p->calendars)
        return oom(ld);
    for (size_t i = 0; i < n->n; i++) {
        rc = load_calendar(ld, n->keys[i], n->items[i], &ld->p->calendars[i]);
        if (rc != IS_OK)
            return rc;
        ld->p->n_calendars++;
    }
    return IS_OK;
}

/*
 * An IANA zone: "UTC", or a TZif file under ZONEINFO_DIR. Checking the magic
 * keeps zone.tab, tzdata.zi and friends out; the character check keeps the
 * name inside the directory.
 */
static int zone_exists(const char *tz) {
    char path[256], magic[4];
    size_t len = strlen(tz);
    if (strcmp(tz, "UTC") == 0)
        return 1;
    if (len == 0 || len > 64 || tz[0] == '/' || tz[0] == '.' || strstr(tz, "/.") ||
        strstr(tz, "//"))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!(isalnum((unsigned char)tz[i]) || strchr("/_+-", tz[i])))
            return 0;
    snprintf(path, sizeof(path), "%s/%s", ZONEINFO_DIR, tz);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t got = fread(magic, 1, sizeof(magic), f);
    fclose(f);
    return got == 4 && memcmp(magic, "TZif", 4) == 0;
}

static int site_cmp(const void *a, const void *b) {
    return strcmp(((const site_t *)a)->name, ((const site_t *)b)->name);
}

static is_err_t load_sites(loader_t *ld, const is_yaml_node_t *n) {
    static const char *const site_keys[] = {"timezone", NULL};
    char key[160];
    is_err_t rc;
    is_policy_t *p = ld->p;
    if (!n)
        return IS_OK;
    rc = expect_map(ld, n, "sites");
    if (rc != IS_OK)
        return rc;
    if (n->n == 0)
        return IS_OK;
    p->sites = calloc(n->n, sizeof(*p->sites));
    if (!p->sites)
        return oom(ld);
    for (size_t i = 0; i < n->n; i++) {
        const is_yaml_node_t *s = n->items[i], *tzn;
        const char *tz = "UTC";
        snprintf(key, sizeof(key), "sites.%s", n->keys[i]);
        if (!is_topic_part_valid(n->keys[i]))
            return fail(ld, s->line, "sites",
                        "site '%s' must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
                        n->keys[i]);
        rc = expect_keys(ld, s, key, site_keys);
        if (rc != IS_OK)
            return rc;
        tzn = is_yaml_get(s, "timezone");
        if (tzn) {
            snprintf(key, sizeof(key), "sites.%s.timezone", n->keys[i]);
            rc = get_scalar(ld, tzn, key, &tz);
            if (rc != IS_OK)
                return rc;
            if (!zone_exists(tz))
                return fail(ld, tzn->line, key,
                            "unknown time zone '%s' (an IANA name such as Europe/Berlin or "
                            "America/Chicago, looked up in " ZONEINFO_DIR ")",
                            tz);
        }
        p->sites[i].name = strdup(n->keys[i]);
        p->sites[i].timezone = strdup(tz);
        p->n_sites++;
        if (!p->sites[i].name || !p->sites[i].timezone)
            return oom(ld);
    }
    qsort(p->sites, p->n_sites, sizeof(*p->sites), site_cmp);
    return IS_OK;
}

/* ---- material master ---------------------------------------------------- */

static char *trim(char *s) {
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static int material_cmp(const void *a, const void *b) {
    return strcmp(((const material_t *)a)->name, ((const material_t *)b)->name);
}

static int class_intern(is_policy_t *p, const char *cls, size_t *cap) {
    for (size_t i = p->n_classes; i > 0; i--) /* newest first: rows tend to come grouped */
        if (strcmp(p->classes[i - 1], cls) == 0)
            return (int)(i - 1);
    if (p->n_classes == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        const char **n = realloc(p->classes, nc * sizeof(*n));
        if (!n)
            return -1;
        p->classes = n;
        *cap = nc;
    }
    p->classes[p->n_classes] = cls;
    return (int)p->n_classes++;
}

static is_err_t csv_fail(loader_t *ld, const char *path, int line, const char *fmt, ...)
    IS_PRINTF(4, 5);

/* "materials.csv:7: message" — master errors name the CSV file and its line. */
static is_err_t csv_fail(loader_t *ld, const char *path, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    is_errf(ld->err, ld->err_size, "%s:%d: %s", path, line, msg);
    return IS_ERR_CONFIG;
}

/*
 * The master is plain CSV: a header "material,class,regulated", one row per
 * material, no quoting (material codes contain no commas). Blank lines and
 * lines starting with '#' are skipped; a UTF-8 BOM and CRLF line ends (as
 * spreadsheet exports write them) are accepted. Parsed in place.
 */
static is_err_t parse_master(loader_t *ld, const char *path) {
    is_policy_t *p = ld->p;
    char *s = p->master_text, *fields[3];
    size_t mat_cap = 0, class_cap = 0;
    int line = 0, have_header = 0;
    if (strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    while (*s) {
        char *nl = strchr(s, '\n'), *row = s, *f;
        size_t n_fields = 1;
        s = nl ? nl + 1 : s + strlen(s);
        if (nl)
            *nl = '\0';
        line++;
        row = trim(row);
        if (!*row || *row == '#')
            continue;
        if (strchr(row, '"'))
            return csv_fail(ld, path, line, "quoted fields are not supported");
        for (f = strchr(row, ','); f; f = strchr(f + 1, ','))
            n_fields++;
        if (n_fields != 3)
            return csv_fail(ld, path, line, "expected 3 fields (material,class,regulated), got %zu",
                            n_fields);
        f = row;
        for (size_t i = 0; i < 3; i++) {
            char *comma = strchr(f, ',');
            if (comma)
                *comma = '\0';
            fields[i] = trim(f);
            if (comma)
                f = comma + 1;
        }
        if (!have_header) {
            if (strcasecmp(fields[0], "material") || strcasecmp(fields[1], "class") ||
                strcasecmp(fields[2], "regulated"))
                return csv_fail(ld, path, line,
                                "expected the header 'material,class,regulated', got '%s,%s,%s'",
                                fields[0], fields[1], fields[2]);
            have_header = 1;
            continue;
        }
        material_t m = {fields[0], 0, 0, line};
        if (!*fields[0] || strlen(fields[0]) > IS_MOVEMENT_MAX_STR)
            return csv_fail(ld, path, line, "material '%s' must be 1-%d characters", fields[0],
                            IS_MOVEMENT_MAX_STR);
        if (!*fields[1] || strlen(fields[1]) > CLASS_MAX)
            return csv_fail(ld, path, line, "class '%s' must be 1-%d characters", fields[1],
                            CLASS_MAX);
        if (parse_bool(fields[2], &m.regulated) != 0)
            return csv_fail(ld, path, line, "regulated '%s' is not a boolean (%s)", fields[2],
                            BOOL_CHOICES);
        m.class_id = class_intern(p, fields[1], &class_cap);
        if (m.class_id < 0)
            return oom(ld);
        if (p->n_materials == mat_cap) {
            size_t nc = mat_cap ? mat_cap * 2 : 256;
            material_t *nm = realloc(p->materials, nc * sizeof(*nm));
            if (!nm)
                return oom(ld);
            p->materials = nm;
            mat_cap = nc;
        }
        p->materials[p->n_materials++] = m;
    }
    if (!have_header)
        return csv_fail(ld, path, line + 1, "missing the header 'material,class,regulated'");
    if (p->n_materials)
        qsort(p->materials, p->n_materials, sizeof(*p->materials), material_cmp);
    for (size_t i = 1; i < p->n_materials; i++) {
        const material_t *a = &p->materials[i - 1], *b = &p->materials[i];
        if (strcmp(a->name, b->name) == 0)
            return csv_fail(ld, path, a->line > b->line ? a->line : b->line,
                            "material '%s' is already on line %d", a->name,
                            a->line < b->line ? a->line : b->line);
    }
    return IS_OK;
}

/*
 * Reads the master named by `materials:` (relative to the policy file's
 * folder) and computes policy_version: SHA-256 of the policy bytes, or of
 * policy bytes || MASTER_SEPARATOR || master bytes when there is a master,
 * so that a master change (a material becoming regulated) is a new version.
 */
static is_err_t load_master_and_version(loader_t *ld, const is_yaml_node_t *n,
                                        const char *policy_text, size_t policy_len) {
    is_policy_t *p = ld->p;
    uint8_t digest[IS_SHA256_LEN];
    char path[4096], why[512];
    const char *name = NULL;
    size_t master_len = 0;
    is_err_t rc;
    if (!n) {
        is_sha256(policy_text, policy_len, digest);
        is_hex(digest, IS_SHA256_LEN, p->version);
        return IS_OK;
    }
    rc = get_scalar(ld, n, "materials", &name);
    if (rc != IS_OK)
        return rc;
    const char *slash = strrchr(ld->file, '/');
    int w = name[0] == '/' || !slash
                ? snprintf(path, sizeof(path), "%s", name)
                : snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - ld->file), ld->file, name);
    if (w < 0 || (size_t)w >= sizeof(path))
        return fail(ld, n->line, "materials", "path '%s' is too long", name);
    rc = read_file(path, MASTER_MAX_BYTES, &p->master_text, &master_len, why, sizeof(why));
    if (rc != IS_OK) {
        fail(ld, n->line, "materials", "%s", why);
        return rc;
    }
    is_sha256_t h;
    if (is_sha256_init(&h) != IS_OK)
        return oom(ld);
    is_sha256_update(&h, policy_text, policy_len);
    is_sha256_update(&h, MASTER_SEPARATOR, strlen(MASTER_SEPARATOR));
    is_sha256_update(&h, p->master_text, master_len);
    is_sha256_final(&h, digest);
    is_hex(digest, IS_SHA256_LEN, p->version);
    if (memchr(p->master_text, '\0', master_len)) {
        is_errf(ld->err, ld->err_size, "%s: contains a NUL byte (not a text file)", path);
        return IS_ERR_CONFIG;
    }
    return parse_master(ld, path);
}

/* ---- tiers -------------------------------------------------------------- */

/* The longest wait between two postings of a tier, in ms (0 for immediate). */
static int64_t cadence_gap_ms(const is_tier_t *t) {
    int gap = 0;
    switch (t->cadence) {
    case IS_CADENCE_IMMEDIATE:
        return 0;
    case IS_CADENCE_EVERY:
        return t->every_ms;
    default:
        for (int i = 0; i < t->n_at; i++) {
            int next = i + 1 < t->n_at ? t->at_minutes[i + 1] : t->at_minutes[0] + 1440;
            if (next - t->at_minutes[i] > gap)
                gap = next - t->at_minutes[i];
        }
        return (int64_t)gap * 60000;
    }
}

static is_err_t parse_at_list(loader_t *ld, int line, const char *key, const char *s,
                              is_tier_t *t) {
    const char *list = s + 3;
    while (*list) {
        const char *comma = strchr(list, ','), *end = comma ? comma : list + strlen(list);
        const char *a = list, *b = end;
        int minutes, at;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (parse_hhmm(a, (size_t)(b - a), &minutes) != 0)
            return fail(ld, line, key, "'%.*s' in '%s' is not a time of day HH:MM (00:00-23:59)",
                        (int)(b - a), a, s);
        if (t->n_at == IS_POLICY_MAX_AT)
            return fail(ld, line, key, "'%s' has more than %d times", s, IS_POLICY_MAX_AT);
        for (at = 0; at < t->n_at; at++)
            if (t->at_minutes[at] == minutes)
                return fail(ld, line, key, "'%.*s' appears twice in '%s'", (int)(b - a), a, s);
        for (at = t->n_at; at > 0 && t->at_minutes[at - 1] > minutes; at--)
            t->at_minutes[at] = t->at_minutes[at - 1];
        t->at_minutes[at] = minutes;
        t->n_at++;
        if (!comma)
            break;
        list = comma + 1;
        if (!*list)
            return fail(ld, line, key, "'%s' ends with a comma", s);
    }
    if (t->n_at == 0)
        return fail(ld, line, key, "'%s' lists no times (at HH:MM[,HH:MM...])", s);
    return IS_OK;
}

static is_err_t parse_cadence(loader_t *ld, const is_yaml_node_t *n, const char *key,
                              is_tier_t *t) {
    const char *s = NULL;
    is_err_t rc;
    rc = get_scalar(ld, n, key, &s);
    if (rc != IS_OK)
        return rc;
    if (strcmp(s, "immediate") == 0) {
        t->cadence = IS_CADENCE_IMMEDIATE;
        return IS_OK;
    }
    if (strncmp(s, "every ", 6) == 0) {
        const char *d = s + 6;
        while (*d == ' ')
            d++;
        t->cadence = IS_CADENCE_EVERY;
        return parse_dur(ld, n->line, key, d, 0, &t->every_ms);
    }
    if (strncmp(s, "at ", 3) == 0) {
        t->cadence = IS_CADENCE_AT;
        return parse_at_list(ld, n->line, key, s, t);
    }
    if (strncmp(s, "shift ", 6) == 0) {
        const char *cal = s + 6;
        const is_shift_calendar_t *c;
        while (*cal == ' ')
            cal++;
        c = is_policy_calendar(ld->p, cal);
        if (!c) {
            const char *names[64];
            char choices[512];
            size_t k = 0;
            for (; k < ld->p->n_calendars && k < 64; k++)
                names[k] = ld->p->calendars[k].name;
            join(choices, sizeof(choices), names, k);
            return fail(ld, n->line, key, "unknown calendar '%s' (calendars: %s)", cal,
                        k ? choices : "none defined; add one under calendars:");
        }
        t->cadence = IS_CADENCE_SHIFT;
        snprintf(t->calendar, sizeof(t->calendar), "%s", c->name);
        /* The poster schedules shift tiers like `at` tiers: copy the starts. */
        t->n_at = c->n_shifts;
        memcpy(t->at_minutes, c->start_minutes, sizeof(t->at_minutes));
        return IS_OK;
    }
    return fail(ld, n->line, key, "'%s' is not a cadence (%s)", s, CADENCE_GRAMMAR);
}

static is_err_t load_tier(loader_t *ld, const char *name, const is_yaml_node_t *n, is_tier_t *t) {
    static const char *const tier_keys[] = {"cadence", "stale_after", "hold", "max_lines", NULL};
    const is_yaml_node_t *v;
    const char *s = NULL;
    char key[96];
    int minutes;
    is_err_t rc;
    if (!name_valid(name, IS_TIER_NAME_MAX - 1, 0))
        return fail(ld, n->line, "tiers",
                    "tier name '%s' must be 1-%d characters of a-z, 0-9, '_' or '-' "
                    "(it is the topic suffix)",
                    name, IS_TIER_NAME_MAX - 1);
    if (strcmp(name, IS_TOPIC_DLQ) == 0)
        return fail(ld, n->line, "tiers",
                    "tier name '%s' is reserved for the dead-letter topic <prefix>.<site>.%s", name,
                    IS_TOPIC_DLQ);
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(key, sizeof(key), "tiers.%s", name);
    rc = expect_map(ld, n, key);
    if (rc != IS_OK)
        return rc;
    /* `{cadence: at 06:00,14:00}` in flow style splits at the comma: say so. */
    for (size_t i = 0; i < n->n; i++)
        if (parse_hhmm(n->keys[i], strlen(n->keys[i]), &minutes) == 0)
            return fail(ld, n->items[i]->line, key,
                        "unexpected key '%s': inside {...} a comma ends the value, so quote "
                        "the cadence: cadence: \"at 06:00,14:00,22:00\"",
                        n->keys[i]);
    rc = check_keys(ld, n, key, tier_keys);
    if (rc != IS_OK)
        return rc;

    snprintf(key, sizeof(key), "tiers.%s.cadence", name);
    v = is_yaml_get(n, "cadence");
    if (!v)
        return fail(ld, n->line, key, "required (%s)", CADENCE_GRAMMAR);
    rc = parse_cadence(ld, v, key, t);
    if (rc != IS_OK)
        return rc;

    snprintf(key, sizeof(key), "tiers.%s.stale_after", name);
    v = is_yaml_get(n, "stale_after");
    if (!v)
        return fail(ld, n->line, key,
                    "required: how old the oldest unposted movement may get "
                    "before the tier is reported stale (%s)",
                    DURATION_HINT);
    rc = get_scalar(ld, v, key, &s);
    if (rc == IS_OK)
        rc = parse_dur(ld, v->line, key, s, 0, &t->stale_after_ms);
    if (rc != IS_OK)
        return rc;
    int stale_line = v->line;
    const char *stale_text = s;

    v = is_yaml_get(n, "hold");
    if (v) {
        snprintf(key, sizeof(key), "tiers.%s.hold", name);
        rc = get_scalar(ld, v, key, &s);
        if (rc == IS_OK)
            rc = parse_dur(ld, v->line, key, s, 1, &t->hold_ms);
        if (rc != IS_OK)
            return rc;
    }
    v = is_yaml_get(n, "max_lines");
    if (v) {
        int64_t lines;
        snprintf(key, sizeof(key), "tiers.%s.max_lines", name);
        rc = get_scalar(ld, v, key, &s);
        if (rc != IS_OK)
            return rc;
        if (is_parse_int64(s, 0, UINT32_MAX, &lines) != IS_OK)
            return fail(ld, v->line, key, "'%s' is not a line count (0 = no limit, up to %u)", s,
                        UINT32_MAX);
        t->max_lines = (uint32_t)lines;
    }

    /*
     * In normal operation a movement waits up to hold + the cadence's longest
     * gap before it is posted. A stale_after not above that would report the
     * tier stale every cycle, and an alarm that always rings is ignored.
     * (Across a DST change a local `at` gap is an hour longer: leave margin.)
     */
    int64_t wait = t->hold_ms + cadence_gap_ms(t);
    if (t->stale_after_ms <= wait) {
        char normal[32];
        fmt_dur(wait, normal, sizeof(normal));
        snprintf(key, sizeof(key), "tiers.%s.stale_after", name);
        return fail(ld, stale_line, key,
                    "'%s' is not longer than the normal wait of %s (hold + longest gap between "
                    "postings): the tier would be reported stale every cycle",
                    stale_text, normal);
    }
    return IS_OK;
}

static is_err_t load_tiers(loader_t *ld, const is_yaml_node_t *root, const is_yaml_node_t *n) {
    is_err_t rc;
    if (!n)
        return fail(ld, root->line, "tiers", "at least one tier is required");
    rc = expect_map(ld, n, "tiers");
    if (rc != IS_OK)
        return rc;
    if (n->n == 0)
        return fail(ld, n->line, "tiers", "at least one tier is required");
    if (n->n > TIERS_MAX)
        return fail(ld, n->line, "tiers", "%zu tiers; at most %d", n->n, TIERS_MAX);
    ld->p->tiers = calloc(n->n, sizeof(*ld->p->tiers));
    if (!ld->p->tiers)
        return oom(ld);
    for (size_t i = 0; i < n->n; i++) {
        rc = load_tier(ld, n->keys[i], n->items[i], &ld->p->tiers[i]);
        if (rc != IS_OK)
            return rc;
        ld->p->n_tiers++;
    }
    return IS_OK;
}

/* The tier named by node n (default_tier or rules[i].tier). */
static is_err_t tier_ref(loader_t *ld, const is_yaml_node_t *n, const char *key, size_t *out) {
    const char *s = NULL;
    char choices[1024];
    is_err_t rc;
    rc = get_scalar(ld, n, key, &s);
    if (rc != IS_OK)
        return rc;
    for (size_t i = 0; i < ld->p->n_tiers; i++) {
        if (strcmp(ld->p->tiers[i].name, s) == 0) {
            *out = i;
            return IS_OK;
        }
    }
    tier_choices(ld->p, choices, sizeof(choices));
    return fail(ld, n->line, key, "unknown tier '%s' (tiers: %s)", s, choices);
}

/* ---- rules -------------------------------------------------------------- */

/*
 * A condition value: a list of non-empty scalars, or one scalar standing for
 * a list of one. Calls fn for each item with its key path ("...type[1]").
 */
typedef is_err_t (*item_fn)(loader_t *ld, const is_yaml_node_t *item, const char *key,
                            const char *value, void *ctx);

static is_err_t each_item(loader_t *ld, const is_yaml_node_t *n, const char *key, item_fn fn,
                          void *ctx) {
    char ikey[160];
    const char *s = NULL;
    is_err_t rc;
    if (n->kind == IS_YAML_MAP)
        return fail(ld, n->line, key, "expected a value or a list, got a mapping");
    if (n->kind == IS_YAML_SEQ && n->n == 0)
        return fail(ld, n->line, key, "an empty list matches nothing; remove the condition");
    size_t count = n->kind == IS_YAML_SEQ ? n->n : 1;
    for (size_t i = 0; i < count; i++) {
        const is_yaml_node_t *item = n->kind == IS_YAML_SEQ ? n->items[i] : n;
        if (n->kind == IS_YAML_SEQ)
            snprintf(ikey, sizeof(ikey), "%s[%zu]", key, i);
        else
            snprintf(ikey, sizeof(ikey), "%s", key);
        rc = get_scalar(ld, item, ikey, &s);
        if (rc == IS_OK)
            rc = fn(ld, item, ikey, s, ctx);
        if (rc != IS_OK)
            return rc;
    }
    return IS_OK;
}

static is_err_t add_type(loader_t *ld, const is_yaml_node_t *item, const char *key,
                         const char *value, void *ctx) {
    int t = is_movement_type_parse(value);
    if (t <= 0 || t >= 32) {
        const char *names[32];
        char choices[512];
        size_t k = 0;
        for (int i = 1; i < 32 && strcmp(is_movement_type_name(i), "?") != 0; i++)
            names[k++] = is_movement_type_name(i);
        join(choices, sizeof(choices), names, k);
        return fail(ld, item->line, key, "unknown movement type '%s' (types: %s)", value, choices);
    }
    *(uint32_t *)ctx |= 1u << t;
    return IS_OK;
}

static is_err_t add_pattern(loader_t *ld, const is_yaml_node_t *item, const char *key,
                            const char *value, void *ctx) {
    patlist_t *l = ctx;
    pattern_t *pt = &l->items[l->n];
    size_t len = strlen(value), metas = strcspn(value, "*?[\\");
    (void)item;
    (void)key;
    pt->text = strdup(value);
    if (!pt->text)
        return oom(ld);
    l->n++;
    if (metas == len) {
        pt->kind = PAT_LITERAL;
    } else if (metas == len - 1 && value[len - 1] == '*') {
        pt->kind = PAT_PREFIX; /* "PKG-*": the common case, a strncmp */
        pt->len = len - 1;
    } else {
        pt->kind = PAT_GLOB;
    }
    return IS_OK;
}

static is_err_t add_site(loader_t *ld, const is_yaml_node_t *item, const char *key,
                         const char *value, void *ctx) {
    rule_t *r = ctx;
    if (!is_topic_part_valid(value))
        return fail(ld, item->line, key,
                    "site '%s' must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", value);
    r->sites[r->n_sites] = strdup(value);
    if (!r->sites[r->n_sites])
        return oom(ld);
    r->n_sites++;
    return IS_OK;
}

/* A class no master row has can never match: it is dropped, not an error. */
static is_err_t add_class(loader_t *ld, const is_yaml_node_t *item, const char *key,
                          const char *value, void *ctx) {
    rule_t *r = ctx;
    (void)item;
    (void)key;
    for (size_t i = 0; i < ld->p->n_classes; i++) {
        if (strcmp(ld->p->classes[i], value) == 0) {
            r->classes[r->n_classes++] = (int)i;
            break;
        }
    }
    return IS_OK;
}

/* Slots to allocate for a condition's items (at least 1: calloc(0) may be NULL). */
static size_t list_len(const is_yaml_node_t *n) {
    return n->kind == IS_YAML_SEQ && n->n > 0 ? n->n : 1;
}

static is_err_t load_patterns(loader_t *ld, const is_yaml_node_t *n, const char *key,
                              patlist_t *l) {
    l->items = calloc(list_len(n), sizeof(*l->items));
    if (!l->items)
        return oom(ld);
    return each_item(ld, n, key, add_pattern, l);
}

static is_err_t load_rule(loader_t *ld, size_t idx, const is_yaml_node_t *n, rule_t *r) {
    static const char *const rule_keys[] = {"when", "tier", NULL};
    static const char *const when_keys[] = {
        "type", "material", "material_class", "regulated", "site", "location", NULL};
    const is_yaml_node_t *when, *tier, *v;
    char key[64], ckey[96];
    is_err_t rc;
    r->regulated = -1;
    snprintf(key, sizeof(key), "rules[%zu]", idx);
    rc = expect_keys(ld, n, key, rule_keys);
    if (rc != IS_OK)
        return rc;
    tier = is_yaml_get(n, "tier");
    if (!tier)
        return fail(ld, n->line, key, "'tier' is required");
    when = is_yaml_get(n, "when");
    if (!when)
        return fail(ld, n->line, key, "'when' is required (use default_tier for a catch-all)");
    snprintf(ckey, sizeof(ckey), "%s.tier", key);
    rc = tier_ref(ld, tier, ckey, &r->tier);
    if (rc != IS_OK)
        return rc;
    snprintf(ckey, sizeof(ckey), "%s.when", key);
    rc = expect_keys(ld, when, ckey, when_keys);
    if (rc != IS_OK)
        return rc;
    if (when->n == 0)
        return fail(ld, when->line, ckey, "no conditions (use default_tier for a catch-all)");

    v = is_yaml_get(when, "type");
    if (v) {
        snprintf(ckey, sizeof(ckey), "%s.when.type", key);
        rc = each_item(ld, v, ckey, add_type, &r->types);
        if (rc != IS_OK)
            return rc;
    }
    v = is_yaml_get(when, "material");
    if (v) {
        snprintf(ckey, sizeof(ckey), "%s.when.material", key);
        rc = load_patterns(ld, v, ckey, &r->material);
        if (rc != IS_OK)
            return rc;
    }
    v = is_yaml_get(when, "location");
    if (v) {
        snprintf(ckey, sizeof(ckey), "%s.when.location", key);
        rc = load_patterns(ld, v, ckey, &r->location);
        if (rc != IS_OK)
            return rc;
    }
    v = is_yaml_get(when, "site");
    if (v) {
        snprintf(ckey, sizeof(ckey), "%s.when.site", key);
        r->sites = calloc(list_len(v), sizeof(*r->sites));
        if (!r->sites)
            return oom(ld);
        rc = each_item(ld, v, ckey, add_site, r);
        if (rc != IS_OK)
            return rc;
    }
    const char *master_key = is_yaml_get(when, "material_class") ? "material_class"
                             : is_yaml_get(when, "regulated")    ? "regulated"
                                                                 : NULL;
    if (master_key && !ld->p->master_text) {
        v = is_yaml_get(when, master_key);
        snprintf(ckey, sizeof(ckey), "%s.when.%s", key, master_key);
        return fail(ld, v->line, ckey,
                    "needs a material master: set `materials:` to a CSV file "
                    "(material,class,regulated)");
    }
    v = is_yaml_get(when, "material_class");
    if (v) {
        snprintf(ckey, sizeof(ckey), "%s.when.material_class", key);
        r->has_class = 1;
        r->classes = calloc(list_len(v), sizeof(*r->classes));
        if (!r->classes)
            return oom(ld);
        rc = each_item(ld, v, ckey, add_class, r);
        if (rc != IS_OK)
            return rc;
    }
    v = is_yaml_get(when, "regulated");
    if (v) {
        const char *s = NULL;
        snprintf(ckey, sizeof(ckey), "%s.when.regulated", key);
        rc = get_scalar(ld, v, ckey, &s);
        if (rc != IS_OK)
            return rc;
        if (parse_bool(s, &r->regulated) != 0)
            return fail(ld, v->line, ckey, "'%s' is not a boolean (%s)", s, BOOL_CHOICES);
    }
    return IS_OK;
}

static is_err_t load_rules(loader_t *ld, const is_yaml_node_t *n) {
    is_err_t rc;
    if (!n)
        return IS_OK;
    if (n->kind != IS_YAML_SEQ)
        return fail(ld, n->line, "rules", "expected a list of {when, tier}, got %s", kind_name(n));
    if (n->n == 0)
        return IS_OK;
    ld->p->rules = calloc(n->n, sizeof(*ld->p->rules));
    if (!ld->p->rules)
        return oom(ld);
    for (size_t i = 0; i < n->n; i++) {
        ld->p->n_rules++; /* counted first so destroy frees a half-built rule */
        rc = load_rule(ld, i, n->items[i], &ld->p->rules[i]);
        if (rc != IS_OK)
            return rc;
    }
    return IS_OK;
}

/* ---- load / destroy ----------------------------------------------------- */

is_err_t is_policy_load(const char *path, is_policy_t **out, char *errstr, size_t errstr_size) {
    static const char *const top_keys[] = {"topic_prefix", "materials", "calendars",    "sites",
                                           "tiers",        "rules",     "default_tier", NULL};
    loader_t ld = {path, errstr, errstr_size, NULL};
    is_yaml_node_t *root = NULL;
    char *text = NULL;
    size_t len = 0;
    is_err_t rc;
    *out = NULL;
    rc = read_file(path, POLICY_MAX_BYTES, &text, &len, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    rc = is_yaml_load_string(text, len, path, &root, errstr, errstr_size);
    if (rc != IS_OK)
        goto done;
    ld.p = calloc(1, sizeof(*ld.p));
    if (!ld.p) {
        rc = oom(&ld);
        goto done;
    }
    if (root->kind != IS_YAML_MAP) {
        rc = fail(&ld, root->line, NULL, "expected a mapping at the top level, got %s",
                  kind_name(root));
        goto done;
    }
    /* Order matters: cadences name calendars, rules name tiers and master classes. */
    rc = check_keys(&ld, root, "", top_keys);
    if (rc == IS_OK)
        rc = load_prefix(&ld, is_yaml_get(root, "topic_prefix"));
    if (rc == IS_OK)
        rc = load_calendars(&ld, is_yaml_get(root, "calendars"));
    if (rc == IS_OK)
        rc = load_sites(&ld, is_yaml_get(root, "sites"));
    if (rc == IS_OK)
        rc = load_master_and_version(&ld, is_yaml_get(root, "materials"), text, len);
    if (rc == IS_OK)
        rc = load_tiers(&ld, root, is_yaml_get(root, "tiers"));
    if (rc == IS_OK)
        rc = load_rules(&ld, is_yaml_get(root, "rules"));
    if (rc != IS_OK)
        goto done;
    const is_yaml_node_t *def = is_yaml_get(root, "default_tier");
    if (!def) {
        char choices[1024];
        tier_choices(ld.p, choices, sizeof(choices));
        rc = fail(&ld, root->line, "default_tier",
                  "required: the tier of movements no rule matches (tiers: %s)", choices);
        goto done;
    }
    rc = tier_ref(&ld, def, "default_tier", &ld.p->default_tier);
    if (rc != IS_OK)
        goto done;
    *out = ld.p;
    ld.p = NULL;
done:
    is_policy_destroy(ld.p);
    is_yaml_free(root);
    free(text);
    return rc;
}

static void patlist_release(patlist_t *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].text);
    free(l->items);
}

void is_policy_destroy(is_policy_t *p) {
    if (!p)
        return;
    for (size_t i = 0; i < p->n_rules; i++) {
        rule_t *r = &p->rules[i];
        patlist_release(&r->material);
        patlist_release(&r->location);
        for (size_t j = 0; j < r->n_sites; j++)
            free(r->sites[j]);
        free(r->sites);
        free(r->classes);
    }
    free(p->rules);
    for (size_t i = 0; i < p->n_sites; i++) {
        free(p->sites[i].name);
        free(p->sites[i].timezone);
    }
    free(p->sites);
    free(p->materials);
    free(p->classes);
    free(p->master_text);
    free(p->calendars);
    free(p->tiers);
    free(p->topic_prefix);
    free(p);
}

/* ---- accessors ---------------------------------------------------------- */

const char *is_policy_version(const is_policy_t *p) {
    return p->version;
}

const char *is_policy_topic_prefix(const is_policy_t *p) {
    return p->topic_prefix;
}

size_t is_policy_tier_count(const is_policy_t *p) {
    return p->n_tiers;
}

const is_tier_t *is_policy_tier(const is_policy_t *p, size_t i) {
    return i < p->n_tiers ? &p->tiers[i] : NULL;
}

const is_tier_t *is_policy_tier_by_name(const is_policy_t *p, const char *name) {
    for (size_t i = 0; name && i < p->n_tiers; i++)
        if (strcmp(p->tiers[i].name, name) == 0)
            return &p->tiers[i];
    return NULL;
}

const is_shift_calendar_t *is_policy_calendar(const is_policy_t *p, const char *name) {
    for (size_t i = 0; name && i < p->n_calendars; i++)
        if (strcmp(p->calendars[i].name, name) == 0)
            return &p->calendars[i];
    return NULL;
}

int is_policy_names_site(const is_policy_t *p, const char *site) {
    site_t key = {(char *)site, NULL};
    if (!p || !site)
        return 0;
    if (p->n_sites && bsearch(&key, p->sites, p->n_sites, sizeof(*p->sites), site_cmp))
        return 1;
    for (size_t i = 0; i < p->n_rules; i++)
        for (size_t j = 0; j < p->rules[i].n_sites; j++)
            if (strcmp(p->rules[i].sites[j], site) == 0)
                return 1;
    return 0;
}

/* The i-th site name the policy mentions: under `sites:` (sorted), then each
 * rule's `site` list in file order; repeats included. NULL past the end. */
static const char *site_mention(const is_policy_t *p, size_t i) {
    if (i < p->n_sites)
        return p->sites[i].name;
    i -= p->n_sites;
    for (size_t r = 0; r < p->n_rules; r++) {
        if (i < p->rules[r].n_sites)
            return p->rules[r].sites[i];
        i -= p->rules[r].n_sites;
    }
    return NULL;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Quadratic in the mentions: a policy names a handful of sites, and this
 * runs only for an operator's error message. */
size_t is_policy_site_names(const is_policy_t *p, const char **names, size_t max) {
    size_t total = 0, stored = 0;
    const char *s;
    if (!p)
        return 0;
    for (size_t i = 0; (s = site_mention(p, i)) != NULL; i++) {
        size_t j = 0;
        while (j < i && strcmp(site_mention(p, j), s) != 0)
            j++;
        if (j < i)
            continue; /* mentioned before */
        total++;
        if (stored < max)
            names[stored++] = s;
    }
    if (stored > 1)
        qsort(names, stored, sizeof(*names), cmp_cstr);
    return total;
}

const char *is_policy_site_timezone(const is_policy_t *p, const char *site) {
    site_t key = {(char *)site, NULL};
    const site_t *s;
    if (!site || p->n_sites == 0)
        return "UTC";
    s = bsearch(&key, p->sites, p->n_sites, sizeof(*p->sites), site_cmp);
    return s ? s->timezone : "UTC";
}

/* ---- classify ----------------------------------------------------------- */

static int pat_match(const patlist_t *l, const char *s) {
    for (size_t i = 0; i < l->n; i++) {
        const pattern_t *pt = &l->items[i];
        switch (pt->kind) {
        case PAT_LITERAL:
            if (strcmp(pt->text, s) == 0)
                return 1;
            break;
        case PAT_PREFIX:
            if (strncmp(pt->text, s, pt->len) == 0)
                return 1;
            break;
        default:
            if (fnmatch(pt->text, s, 0) == 0)
                return 1;
            break;
        }
    }
    return 0;
}

static int type_bit(uint32_t mask, int type) {
    return type > 0 && type < 32 && ((mask >> type) & 1u);
}

const is_tier_t *is_policy_classify(const is_policy_t *p, const is_movement_t *m, int *rule_index) {
    const char *material = m->material ? m->material : "";
    const char *site = m->site ? m->site : "";
    const char *location = m->location ? m->location : "";
    const material_t *mat = NULL;
    int looked_up = 0;
    for (size_t i = 0; i < p->n_rules; i++) {
        const rule_t *r = &p->rules[i];
        /* A REVERSAL also matches its original's type, so it lands in the same
         * tier and can cancel the original inside that tier's window. */
        if (r->types && !type_bit(r->types, (int)m->type) &&
            !(m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
              type_bit(r->types, (int)m->reversed_type)))
            continue;
        if (r->n_sites) {
            size_t j = 0;
            while (j < r->n_sites && strcmp(r->sites[j], site) != 0)
                j++;
            if (j == r->n_sites)
                continue;
        }
        if (r->material.n && !pat_match(&r->material, material))
            continue;
        if (r->location.n && !pat_match(&r->location, location))
            continue;
        if (r->has_class || r->regulated >= 0) {
            if (!looked_up && p->n_materials) {
                material_t key = {material, 0, 0, 0};
                mat = bsearch(&key, p->materials, p->n_materials, sizeof(*p->materials),
                              material_cmp);
                looked_up = 1;
            }
            if (!mat) /* not in the master: class/regulated conditions never hold */
                continue;
            if (r->regulated >= 0 && mat->regulated != r->regulated)
                continue;
            if (r->has_class) {
                size_t j = 0;
                while (j < r->n_classes && r->classes[j] != mat->class_id)
                    j++;
                if (j == r->n_classes)
                    continue;
            }
        }
        if (rule_index)
            *rule_index = (int)i;
        return &p->tiers[r->tier];
    }
    if (rule_index)
        *rule_index = -1;
    return &p->tiers[p->default_tier];
}
