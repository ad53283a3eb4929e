/*
 * config.c — table-driven configuration loading (see config.h).
 *
 * Order: every field is first reset (so is_cfg_release() is safe whatever
 * fails later), then table defaults are parsed as if they were file values,
 * then the YAML file is walked with yamltree and nested maps flattened to
 * dotted keys, then environment variables override. All three sources go
 * through one value parser, so a default, a file value and an environment
 * value are held to the same rules and produce the same messages, each
 * prefixed with where the value came from.
 *
 * A plain `~`, `null` or empty value in the file means "not set here": the
 * default stays. Keys under `kafka` are collected verbatim into kafka_out
 * (sequences joined with commas, as librdkafka lists are). Tables hold tens
 * of entries, so lookups are linear.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "duration.h"
#include "log.h"
#include "yamltree.h"

extern char **environ;

#define CFG_KAFKA        "kafka"
#define CFG_NAME_MAX     256 /* dotted keys and environment variable names */
#define CFG_SUGGEST_DIST 2

/* Where a value came from, already formatted: "f.yaml:7: key 'a.b'" etc. */
typedef struct cfg_src {
    char where[CFG_NAME_MAX + 64];
} cfg_src_t;

typedef struct cfg_load {
    const is_cfg_entry_t *table;
    size_t n_entries;
    void *out;
    const char *path;
    int *file_line;            /* per entry: line where the file set it, 0 if not */
    is_strmap_t *kafka;        /* may be NULL */
    is_strmap_t kafka_lines;   /* kafka key → line set in the file, for duplicates */
    is_cfg_sources_t *sources; /* may be NULL */
    char *errstr;
    size_t errstr_size;
} cfg_load_t;

/* ---- string map and list --------------------------------------------------------------- */

const char *is_strmap_get(const is_strmap_t *m, const char *key) {
    size_t i;
    if (!m || !key)
        return NULL;
    for (i = 0; i < m->n; i++) {
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
    return NULL;
}

is_err_t is_strmap_set(is_strmap_t *m, const char *key, const char *val) {
    char *k = NULL, *v = NULL, **keys, **vals;
    size_t i;
    if (!m || !key || !val)
        return IS_ERR_INVALID;
    v = strdup(val);
    if (!v)
        return IS_ERR_NOMEM;
    for (i = 0; i < m->n; i++) {
        if (strcmp(m->keys[i], key) == 0) {
            free(m->vals[i]);
            m->vals[i] = v;
            return IS_OK;
        }
    }
    k = strdup(key);
    if (!k)
        goto err;
    /* Grow one at a time: maps are small and this keeps n the only size field. */
    keys = realloc(m->keys, (m->n + 1) * sizeof(*keys));
    if (!keys)
        goto err;
    m->keys = keys;
    vals = realloc(m->vals, (m->n + 1) * sizeof(*vals));
    if (!vals)
        goto err;
    m->vals = vals;
    m->keys[m->n] = k;
    m->vals[m->n] = v;
    m->n++;
    return IS_OK;
err:
    free(k);
    free(v);
    return IS_ERR_NOMEM;
}

void is_strmap_release(is_strmap_t *m) {
    size_t i;
    if (!m)
        return;
    for (i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

void is_strlist_release(is_strlist_t *l) {
    size_t i;
    if (!l)
        return;
    for (i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

int is_strlist_contains(const is_strlist_t *l, const char *s) {
    size_t i;
    if (!l || !s)
        return 0;
    for (i = 0; i < l->n; i++) {
        if (strcmp(l->items[i], s) == 0)
            return 1;
    }
    return 0;
}

static is_err_t strlist_add(is_strlist_t *l, const char *s, size_t len) {
    char **items;
    char *copy = strndup(s, len);
    if (!copy)
        return IS_ERR_NOMEM;
    items = realloc(l->items, (l->n + 1) * sizeof(*items));
    if (!items) {
        free(copy);
        return IS_ERR_NOMEM;
    }
    l->items = items;
    l->items[l->n++] = copy;
    return IS_OK;
}

/* ---- table helpers --------------------------------------------------------------------- */

static void *field(const cfg_load_t *ld, const is_cfg_entry_t *e) {
    return (char *)ld->out + e->offset;
}

static const char *type_name(is_cfg_type_t t) {
    switch (t) {
    case IS_CFG_STR:
        return "string";
    case IS_CFG_INT:
        return "int";
    case IS_CFG_BOOL:
        return "bool";
    case IS_CFG_DURATION:
        return "duration";
    case IS_CFG_SIZE:
        return "size";
    case IS_CFG_STRMAP:
        return "map";
    case IS_CFG_STRLIST:
        return "list";
    }
    return "?";
}

static int has_bounds(const is_cfg_entry_t *e) {
    return !(e->min == 0 && e->max == 0);
}

static size_t field_size(is_cfg_type_t type) {
    switch (type) {
    case IS_CFG_STR:
        return sizeof(char *);
    case IS_CFG_BOOL:
        return sizeof(int);
    case IS_CFG_STRMAP:
        return sizeof(is_strmap_t);
    case IS_CFG_STRLIST:
        return sizeof(is_strlist_t);
    default:
        return sizeof(int64_t);
    }
}

/* Reset one field to its empty state, freeing what it holds. */
static void field_release(void *p, is_cfg_type_t type) {
    switch (type) {
    case IS_CFG_STR:
        free(*(char **)p);
        *(char **)p = NULL;
        break;
    case IS_CFG_INT:
    case IS_CFG_DURATION:
    case IS_CFG_SIZE:
        *(int64_t *)p = 0;
        break;
    case IS_CFG_BOOL:
        *(int *)p = 0;
        break;
    case IS_CFG_STRMAP:
        is_strmap_release(p);
        break;
    case IS_CFG_STRLIST:
        is_strlist_release(p);
        break;
    }
}

void is_cfg_release(const is_cfg_entry_t *table, void *out) {
    const is_cfg_entry_t *e;
    if (!table || !out)
        return;
    for (e = table; e->key; e++)
        field_release((char *)out + e->offset, e->type);
}

static const is_cfg_entry_t *find_entry(const cfg_load_t *ld, const char *key) {
    size_t i;
    for (i = 0; i < ld->n_entries; i++) {
        if (strcmp(ld->table[i].key, key) == 0)
            return &ld->table[i];
    }
    return NULL;
}

/* True when some table key starts with "<prefix>.". */
static int is_section(const cfg_load_t *ld, const char *prefix) {
    size_t i, len = strlen(prefix);
    for (i = 0; i < ld->n_entries; i++) {
        const char *k = ld->table[i].key;
        if (strncmp(k, prefix, len) == 0 && k[len] == '.')
            return 1;
    }
    return 0;
}

/* Optimal-string-alignment distance (a transposition counts 1); large if too long. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    enum { MAXL = 128 };
    size_t prev2[MAXL + 1], prev[MAXL + 1], cur[MAXL + 1], i, j;
    if (la > MAXL || lb > MAXL)
        return (size_t)-1;
    for (j = 0; j <= lb; j++)
        prev[j] = j;
    prev2[0] = 0;
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        memcpy(prev2, prev, sizeof(prev));
        memcpy(prev, cur, sizeof(cur));
    }
    return prev[lb];
}

/*
 * The known key or section ("http" of "http.listen") closest to key, if within
 * CFG_SUGGEST_DIST; NULL otherwise. The result points into the table, so its
 * length is returned in *len (a section is a prefix of a key).
 */
static const char *suggest(const cfg_load_t *ld, const char *key, size_t *len) {
    const char *best = NULL;
    size_t best_d = CFG_SUGGEST_DIST + 1, klen = strlen(key), i;
    for (i = 0; i < ld->n_entries; i++) {
        const char *k = ld->table[i].key, *p = k;
        /* Every prefix that ends at a '.' and the key itself. */
        for (;;) {
            const char *dot = strchr(p, '.');
            size_t l = dot ? (size_t)(dot - k) : strlen(k);
            size_t d = edit_distance(key, klen, k, l);
            if (d < best_d) {
                best_d = d;
                best = k;
                *len = l;
            }
            if (!dot)
                break;
            p = dot + 1;
        }
    }
    return best;
}

/* Format ms as the largest unit dividing it evenly: 90000 → "90s", 120000 → "2m". */
static void format_duration(int64_t ms, char *buf, size_t size) {
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    size_t i;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, size, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%" PRId64 "ms", ms);
}

static void format_size(int64_t bytes, char *buf, size_t size) {
    static const struct {
        const char *unit;
        int64_t n;
    } units[] = {{"GiB", 1073741824}, {"MiB", 1048576}, {"KiB", 1024}};
    size_t i;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (bytes != 0 && bytes % units[i].n == 0) {
            snprintf(buf, size, "%" PRId64 "%s", bytes / units[i].n, units[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%" PRId64, bytes);
}

static void format_bound(const is_cfg_entry_t *e, int64_t v, char *buf, size_t size) {
    if (e->type == IS_CFG_DURATION)
        format_duration(v, buf, size);
    else if (e->type == IS_CFG_SIZE)
        format_size(v, buf, size);
    else
        snprintf(buf, size, "%" PRId64, v);
}

/* ---- value parsing --------------------------------------------------------------------- */

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    size_t i;
    for (i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 1;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 1;
        }
    }
    return 0;
}

/* Parse text for a scalar-typed entry (not STRMAP) and store it. */
/* text is one of the '|'-separated choices (exactly, case included). */
static int is_choice(const char *choices, const char *text) {
    size_t n = strlen(text);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, text, n) == 0)
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

/* "a|b|c" → "a, b or c". */
static void choices_text(const char *choices, char *buf, size_t size) {
    size_t n = 0, bars = 0;
    for (const char *p = choices; *p; p++)
        bars += *p == '|';
    buf[0] = '\0';
    for (const char *p = choices; *p && n + 1 < size;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        const char *sep = !bar ? "" : --bars == 0 ? " or " : ", ";
        int w = snprintf(buf + n, size - n, "%.*s%s", (int)len, p, sep);
        if (w < 0 || (size_t)w >= size - n)
            break; /* truncated: what fits is there */
        n += (size_t)w;
        if (!bar)
            break;
        p = bar + 1;
    }
}

static is_err_t set_scalar(cfg_load_t *ld, const is_cfg_entry_t *e, const char *text,
                           const cfg_src_t *src) {
    void *p = field(ld, e);
    int64_t v = 0;
    is_err_t rc = IS_OK;
    const char *expect = NULL;
    char bound[64];

    switch (e->type) {
    case IS_CFG_STR: {
        if (e->choices && !is_choice(e->choices, text)) {
            char list[256];
            choices_text(e->choices, list, sizeof(list));
            is_errf(ld->errstr, ld->errstr_size, "%s: '%s' is not %s", src->where, text, list);
            return IS_ERR_CONFIG;
        }
        char *copy = strdup(text);
        if (!copy)
            return IS_ERR_NOMEM;
        free(*(char **)p);
        *(char **)p = copy;
        return IS_OK;
    }
    case IS_CFG_BOOL: {
        int b;
        if (!parse_bool(text, &b)) {
            is_errf(ld->errstr, ld->errstr_size,
                    "%s: '%s' is not a boolean (true/false, yes/no, on/off, 1/0)", src->where,
                    text);
            return IS_ERR_CONFIG;
        }
        *(int *)p = b;
        return IS_OK;
    }
    case IS_CFG_INT:
        rc = is_parse_int64(text, INT64_MIN, INT64_MAX, &v);
        expect = "an integer";
        break;
    case IS_CFG_DURATION:
        rc = is_parse_duration_ms(text, &v);
        expect = "a duration (e.g. 150ms, 30s, 5m, 2h, 1d)";
        break;
    case IS_CFG_SIZE:
        rc = is_parse_size(text, &v);
        expect = "a size (e.g. 8MiB, 100kB, 4096)";
        break;
    case IS_CFG_STRLIST: {
        /* A single scalar is a one-item list. */
        is_strlist_t *l = p;
        is_strlist_release(l);
        return strlist_add(l, text, strlen(text));
    }
    case IS_CFG_STRMAP:
        break;
    }
    if (rc == IS_ERR_OVERFLOW) {
        is_errf(ld->errstr, ld->errstr_size, "%s: '%s' is too large", src->where, text);
        return IS_ERR_CONFIG;
    }
    if (rc != IS_OK || !expect) {
        is_errf(ld->errstr, ld->errstr_size, "%s: '%s' is not %s", src->where, text,
                expect ? expect : "a scalar value");
        return IS_ERR_CONFIG;
    }
    if (has_bounds(e) && v < e->min) {
        format_bound(e, e->min, bound, sizeof(bound));
        /* "5" for a duration is 5 ms: say so, the reader meant seconds. */
        int bare = e->type == IS_CFG_DURATION && text[0] && text[strspn(text, "0123456789")] == 0;
        is_errf(ld->errstr, ld->errstr_size, "%s: '%s' is below the minimum %s%s", src->where, text,
                bound, bare ? " (a number without a unit is milliseconds: write 5s, 2m, …)" : "");
        return IS_ERR_CONFIG;
    }
    if (has_bounds(e) && v > e->max) {
        format_bound(e, e->max, bound, sizeof(bound));
        is_errf(ld->errstr, ld->errstr_size, "%s: '%s' is above the maximum %s", src->where, text,
                bound);
        return IS_ERR_CONFIG;
    }
    *(int64_t *)p = v;
    return IS_OK;
}

/* STRLIST from "a, b,c": items trimmed, empty items dropped. */
static is_err_t set_list_csv(cfg_load_t *ld, const is_cfg_entry_t *e, const char *text) {
    is_strlist_t *l = field(ld, e);
    const char *p = text;
    is_strlist_release(l);
    while (*p) {
        const char *end = strchr(p, ',');
        const char *stop = end ? end : p + strlen(p);
        const char *a = p, *b = stop;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a && strlist_add(l, a, (size_t)(b - a)) != IS_OK)
            return IS_ERR_NOMEM;
        if (!end)
            break;
        p = end + 1;
    }
    return IS_OK;
}

/* Note that key's value came from where (is_cfg_source). */
static is_err_t record_source(cfg_load_t *ld, const char *key, const char *where) {
    return ld->sources ? is_strmap_set(&ld->sources->where, key, where) : IS_OK;
}

/* A plain ~ / null / empty scalar: "not set here". */
static int is_null(const is_yaml_node_t *n) {
    return n->kind == IS_YAML_SCALAR && !n->quoted &&
           (n->scalar[0] == '\0' || strcmp(n->scalar, "~") == 0 ||
            strcasecmp(n->scalar, "null") == 0);
}

/* ---- file ------------------------------------------------------------------------------ */

static is_err_t file_value(cfg_load_t *ld, const is_cfg_entry_t *e, const is_yaml_node_t *v) {
    cfg_src_t src;
    size_t idx = (size_t)(e - ld->table), i;
    void *p = field(ld, e);

    snprintf(src.where, sizeof(src.where), "%s:%d: key '%s'", ld->path, v->line, e->key);
    if (ld->file_line[idx]) {
        is_errf(ld->errstr, ld->errstr_size, "%s: also set at line %d", src.where,
                ld->file_line[idx]);
        return IS_ERR_CONFIG;
    }
    ld->file_line[idx] = v->line;
    if (is_null(v))
        return IS_OK;
    if (record_source(ld, e->key, src.where) != IS_OK)
        return IS_ERR_NOMEM;

    if (e->type == IS_CFG_STRMAP) {
        is_strmap_t *m = p;
        if (v->kind != IS_YAML_MAP) {
            is_errf(ld->errstr, ld->errstr_size, "%s: expected a mapping", src.where);
            return IS_ERR_CONFIG;
        }
        is_strmap_release(m);
        for (i = 0; i < v->n; i++) {
            if (v->items[i]->kind != IS_YAML_SCALAR) {
                is_errf(ld->errstr, ld->errstr_size, "%s:%d: key '%s.%s': expected a scalar",
                        ld->path, v->items[i]->line, e->key, v->keys[i]);
                return IS_ERR_CONFIG;
            }
            /* Not "not set here": kept verbatim, `P2: ~` would make "~" P2's token. */
            if (is_null(v->items[i])) {
                is_errf(ld->errstr, ld->errstr_size,
                        "%s:%d: key '%s.%s': no value (empty, ~ or null): remove the entry "
                        "or quote the value",
                        ld->path, v->items[i]->line, e->key, v->keys[i]);
                return IS_ERR_CONFIG;
            }
            if (is_strmap_set(m, v->keys[i], v->items[i]->scalar) != IS_OK)
                return IS_ERR_NOMEM;
        }
        return IS_OK;
    }
    if (e->type == IS_CFG_STRLIST && v->kind == IS_YAML_SEQ) {
        is_strlist_t *l = p;
        is_strlist_release(l);
        for (i = 0; i < v->n; i++) {
            const is_yaml_node_t *it = v->items[i];
            if (it->kind != IS_YAML_SCALAR) {
                is_errf(ld->errstr, ld->errstr_size, "%s:%d: key '%s': list items must be scalars",
                        ld->path, it->line, e->key);
                return IS_ERR_CONFIG;
            }
            if (strlist_add(l, it->scalar, strlen(it->scalar)) != IS_OK)
                return IS_ERR_NOMEM;
        }
        return IS_OK;
    }
    if (v->kind != IS_YAML_SCALAR) {
        is_errf(ld->errstr, ld->errstr_size, "%s: expected a %s, not a %s", src.where,
                e->type == IS_CFG_STRLIST ? "sequence or scalar" : "scalar",
                v->kind == IS_YAML_MAP ? "mapping" : "sequence");
        return IS_ERR_CONFIG;
    }
    return set_scalar(ld, e, v->scalar, &src);
}

static is_err_t join_key(char *buf, size_t size, const char *prefix, const char *key) {
    int n = prefix && *prefix ? snprintf(buf, size, "%s.%s", prefix, key)
                              : snprintf(buf, size, "%s", key);
    return n < 0 || (size_t)n >= size ? IS_ERR_OVERFLOW : IS_OK;
}

/* Collect everything under `kafka` (node v at dotted name kkey, "" for the root). */
static is_err_t kafka_value(cfg_load_t *ld, const char *kkey, const is_yaml_node_t *v) {
    char name[CFG_NAME_MAX], line[16], where[CFG_NAME_MAX + 64];
    const char *prev;
    size_t i;

    if (v->kind == IS_YAML_MAP) {
        for (i = 0; i < v->n; i++) {
            is_err_t rc;
            if (join_key(name, sizeof(name), kkey, v->keys[i]) != IS_OK) {
                is_errf(ld->errstr, ld->errstr_size, "%s:%d: key 'kafka.%s.%s' is too long",
                        ld->path, v->items[i]->line, kkey, v->keys[i]);
                return IS_ERR_CONFIG;
            }
            rc = kafka_value(ld, name, v->items[i]);
            if (rc != IS_OK)
                return rc;
        }
        return IS_OK;
    }
    if (!*kkey) {
        is_errf(ld->errstr, ld->errstr_size, "%s:%d: key 'kafka': expected a mapping", ld->path,
                v->line);
        return IS_ERR_CONFIG;
    }
    prev = is_strmap_get(&ld->kafka_lines, kkey);
    if (prev) {
        is_errf(ld->errstr, ld->errstr_size, "%s:%d: key 'kafka.%s': also set at line %s", ld->path,
                v->line, kkey, prev);
        return IS_ERR_CONFIG;
    }
    snprintf(line, sizeof(line), "%d", v->line);
    if (is_strmap_set(&ld->kafka_lines, kkey, line) != IS_OK)
        return IS_ERR_NOMEM;
    snprintf(name, sizeof(name), CFG_KAFKA ".%s", kkey);
    snprintf(where, sizeof(where), "%s:%d: key '%s'", ld->path, v->line, name);
    if (record_source(ld, name, where) != IS_OK)
        return IS_ERR_NOMEM;
    if (!ld->kafka)
        return IS_OK;
    if (v->kind == IS_YAML_SCALAR)
        return is_strmap_set(ld->kafka, kkey, v->scalar);
    {
        /* librdkafka lists are comma-separated: bootstrap.servers: [a:9092, b:9092]. */
        size_t len = 1;
        char *joined, *w;
        is_err_t rc;
        for (i = 0; i < v->n; i++) {
            if (v->items[i]->kind != IS_YAML_SCALAR) {
                is_errf(ld->errstr, ld->errstr_size,
                        "%s:%d: key 'kafka.%s': list items must be scalars", ld->path,
                        v->items[i]->line, kkey);
                return IS_ERR_CONFIG;
            }
            len += strlen(v->items[i]->scalar) + 1;
        }
        joined = malloc(len);
        if (!joined)
            return IS_ERR_NOMEM;
        w = joined;
        for (i = 0; i < v->n; i++) {
            size_t l = strlen(v->items[i]->scalar);
            if (i)
                *w++ = ',';
            memcpy(w, v->items[i]->scalar, l);
            w += l;
        }
        *w = '\0';
        rc = is_strmap_set(ld->kafka, kkey, joined);
        free(joined);
        return rc;
    }
}

/*
 * Report an unknown key, suggesting the closest known key; failing that the
 * section hinted by an unknown ancestor ('htpp' → section 'http').
 */
static is_err_t unknown_key(cfg_load_t *ld, const char *key, int line, const char *hint,
                            size_t hint_len) {
    size_t len = 0;
    const char *s = suggest(ld, key, &len);
    if (s) {
        is_errf(ld->errstr, ld->errstr_size, "%s:%d: unknown key '%s' (did you mean '%.*s'?)",
                ld->path, line, key, (int)len, s);
    } else if (hint) {
        is_errf(ld->errstr, ld->errstr_size,
                "%s:%d: unknown key '%s' (did you mean section '%.*s'?)", ld->path, line, key,
                (int)hint_len, hint);
    } else {
        is_errf(ld->errstr, ld->errstr_size, "%s:%d: unknown key '%s'", ld->path, line, key);
    }
    return IS_ERR_CONFIG;
}

/*
 * Walk a mapping whose keys sit under prefix ("" at the root). hint is a
 * section suggested for an unknown ancestor, for messages about its leaves.
 */
static is_err_t walk(cfg_load_t *ld, const char *prefix, const is_yaml_node_t *map,
                     const char *hint, size_t hint_len) {
    char key[CFG_NAME_MAX];
    size_t i;
    is_err_t rc;

    for (i = 0; i < map->n; i++) {
        const is_yaml_node_t *v = map->items[i];
        const is_cfg_entry_t *e;
        if (join_key(key, sizeof(key), prefix, map->keys[i]) != IS_OK) {
            is_errf(ld->errstr, ld->errstr_size, "%s:%d: key '%s.%s' is too long", ld->path,
                    v->line, prefix, map->keys[i]);
            return IS_ERR_CONFIG;
        }
        if (strcmp(key, CFG_KAFKA) == 0) {
            rc = kafka_value(ld, "", v);
        } else if (strncmp(key, CFG_KAFKA ".", sizeof(CFG_KAFKA)) == 0) {
            rc = kafka_value(ld, key + sizeof(CFG_KAFKA), v);
        } else if ((e = find_entry(ld, key)) != NULL) {
            rc = file_value(ld, e, v);
        } else if (is_section(ld, key)) {
            if (v->kind == IS_YAML_MAP) {
                rc = walk(ld, key, v, NULL, 0);
            } else if (is_null(v)) {
                rc = IS_OK; /* "http:" with everything below commented out */
            } else {
                is_errf(ld->errstr, ld->errstr_size,
                        "%s:%d: key '%s' is a section: expected a "
                        "mapping",
                        ld->path, v->line, key);
                rc = IS_ERR_CONFIG;
            }
        } else {
            size_t slen = 0;
            const char *s = suggest(ld, key, &slen);
            /*
             * Under an unknown or misspelt section, report the leaves: they
             * carry the right line and 'htpp.listen' finds 'http.listen'. A
             * misspelt map key ('auth.tokns: {...}') is reported itself.
             */
            if (v->kind == IS_YAML_MAP && v->n > 0 && (!s || s[slen] == '.')) {
                rc = s ? walk(ld, key, v, s, slen) : walk(ld, key, v, hint, hint_len);
            } else {
                rc = unknown_key(ld, key, v->line, hint, hint_len);
            }
        }
        if (rc != IS_OK) {
            if (rc == IS_ERR_NOMEM)
                is_errf(ld->errstr, ld->errstr_size, "%s: out of memory", ld->path);
            return rc;
        }
    }
    return IS_OK;
}

static is_err_t load_file(cfg_load_t *ld) {
    is_yaml_node_t *root = NULL;
    is_err_t rc = is_yaml_load_file(ld->path, &root, ld->errstr, ld->errstr_size);
    if (rc != IS_OK)
        return rc; /* IS_ERR_IO for a missing file, IS_ERR_CONFIG for bad YAML */
    if (root->kind != IS_YAML_MAP) {
        is_errf(ld->errstr, ld->errstr_size, "%s:%d: the top level must be a mapping", ld->path,
                root->line);
        rc = IS_ERR_CONFIG;
        goto done;
    }
    rc = walk(ld, "", root, NULL, 0);
done:
    is_yaml_free(root);
    return rc;
}

/* ---- environment ----------------------------------------------------------------------- */

/* "http.listen" → "INVSYNC_HTTP_LISTEN"; IS_ERR_OVERFLOW if it does not fit. */
static is_err_t env_name(char *buf, size_t size, const char *prefix, const char *key) {
    size_t i;
    int n = snprintf(buf, size, "%s%s", prefix, key);
    if (n < 0 || (size_t)n >= size)
        return IS_ERR_OVERFLOW;
    for (i = strlen(prefix); buf[i]; i++) {
        if (buf[i] == '.' || buf[i] == '-')
            buf[i] = '_';
        else
            buf[i] = (char)toupper((unsigned char)buf[i]);
    }
    return IS_OK;
}

/*
 * Every PREFIX_* variable must mean something: a map key (auth.tokens) cannot
 * come from the environment, so setting it is an error rather than a silent
 * no-op (every request would get 401); any other unknown name (a typo such as
 * INVSYNC_HTPP_LISTEN) is logged, with the closest known name, and ignored.
 * PREFIX_TEST_* are the test suites' fault-injection switches.
 */
static is_err_t check_env_names(cfg_load_t *ld, const char *prefix) {
    char name[CFG_NAME_MAX], kafka[CFG_NAME_MAX];
    size_t plen = strlen(prefix);
    if (env_name(kafka, sizeof(kafka), prefix, CFG_KAFKA "_") != IS_OK)
        kafka[0] = '\0';
    for (char **ep = environ; ep && *ep; ep++) {
        const char *eq = strchr(*ep, '=');
        size_t nlen = eq ? (size_t)(eq - *ep) : 0, i, best_d = CFG_SUGGEST_DIST + 1;
        const char *best = NULL;
        int known = 0;
        if (!eq || strncmp(*ep, prefix, plen) != 0 || nlen >= sizeof(name))
            continue;
        if (ld->kafka && *kafka && strncmp(*ep, kafka, strlen(kafka)) == 0)
            continue;
        if (strncmp(*ep + plen, "TEST_", 5) == 0)
            continue; /* fault injection of the test suites (INVSYNC_TEST_…) */
        for (i = 0; i < ld->n_entries && !known; i++) {
            const is_cfg_entry_t *e = &ld->table[i];
            if (env_name(name, sizeof(name), prefix, e->key) != IS_OK)
                continue;
            if (strlen(name) == nlen && strncmp(name, *ep, nlen) == 0) {
                if (e->type == IS_CFG_STRMAP) {
                    is_errf(ld->errstr, ld->errstr_size,
                            "environment %.*s: '%s' is a map and can only be set in the "
                            "configuration file",
                            (int)nlen, *ep, e->key);
                    return IS_ERR_CONFIG;
                }
                known = 1;
                break;
            }
            size_t d = edit_distance(*ep, nlen, name, strlen(name));
            if (d < best_d) {
                best_d = d;
                best = e->key;
            }
        }
        if (known)
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)nlen, *ep);
        if (best) {
            char want[CFG_NAME_MAX];
            if (env_name(want, sizeof(want), prefix, best) == IS_OK)
                is_log(IS_LOG_WARN, "environment variable is not a configuration key; ignored",
                       "variable", name, "did_you_mean", want, NULL);
        } else {
            is_log(IS_LOG_WARN, "environment variable is not a configuration key; ignored",
                   "variable", name, NULL);
        }
    }
    return IS_OK;
}

static is_err_t load_env(cfg_load_t *ld, const char *prefix) {
    char name[CFG_NAME_MAX], kkey[CFG_NAME_MAX], key[CFG_NAME_MAX + 8];
    char where[2 * CFG_NAME_MAX + 32];
    size_t i, klen;
    char **ep;
    is_err_t rc;

    for (i = 0; i < ld->n_entries; i++) {
        const is_cfg_entry_t *e = &ld->table[i];
        const char *val;
        cfg_src_t src;
        if (e->type == IS_CFG_STRMAP)
            continue; /* maps have no sensible single-variable form */
        if (env_name(name, sizeof(name), prefix, e->key) != IS_OK)
            continue; /* cannot be set from a shell either */
        val = getenv(name);
        if (!val)
            continue;
        /* The same form as the checks after the load: the variable and the key it sets. */
        snprintf(src.where, sizeof(src.where), "environment %s (key '%s')", name, e->key);
        rc = e->type == IS_CFG_STRLIST ? set_list_csv(ld, e, val) : set_scalar(ld, e, val, &src);
        if (rc == IS_OK)
            rc = record_source(ld, e->key, src.where);
        if (rc != IS_OK) {
            if (rc == IS_ERR_NOMEM)
                is_errf(ld->errstr, ld->errstr_size, "environment %s: out of memory", name);
            return rc;
        }
    }

    rc = check_env_names(ld, prefix);
    if (rc != IS_OK)
        return rc;

    /* PREFIX_KAFKA_BOOTSTRAP_SERVERS=… → "bootstrap.servers". */
    if (env_name(name, sizeof(name), prefix, CFG_KAFKA "_") != IS_OK)
        return IS_OK;
    klen = strlen(name);
    for (ep = environ; ld->kafka && ep && *ep; ep++) {
        const char *eq = strchr(*ep, '=');
        size_t j, nlen;
        if (!eq || strncmp(*ep, name, klen) != 0)
            continue;
        nlen = (size_t)(eq - *ep) - klen;
        if (nlen == 0 || nlen >= sizeof(kkey))
            continue;
        for (j = 0; j < nlen; j++) {
            char ch = (*ep)[klen + j];
            kkey[j] = ch == '_' ? '.' : (char)tolower((unsigned char)ch);
        }
        kkey[nlen] = '\0';
        snprintf(where, sizeof(where), "environment %.*s (key '" CFG_KAFKA ".%s')", (int)(eq - *ep),
                 *ep, kkey);
        snprintf(key, sizeof(key), CFG_KAFKA ".%s", kkey);
        if (is_strmap_set(ld->kafka, kkey, eq + 1) != IS_OK ||
            record_source(ld, key, where) != IS_OK) {
            is_errf(ld->errstr, ld->errstr_size, "environment: out of memory");
            return IS_ERR_NOMEM;
        }
    }
    return IS_OK;
}

/* ---- public ---------------------------------------------------------------------------- */

is_err_t is_cfg_load(const is_cfg_entry_t *table, void *out, const char *path,
                     const char *env_prefix, is_strmap_t *kafka_out, is_cfg_sources_t *sources_out,
                     char *errstr, size_t errstr_size) {
    cfg_load_t ld;
    size_t i;
    is_err_t rc;

    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!table || !out) {
        is_errf(errstr, errstr_size, "invalid argument");
        return IS_ERR_INVALID;
    }
    memset(&ld, 0, sizeof(ld));
    ld.table = table;
    ld.out = out;
    ld.path = path;
    ld.kafka = kafka_out;
    ld.sources = sources_out;
    ld.errstr = errstr;
    ld.errstr_size = errstr_size;
    /* out may be uninitialised: zero every field first so release is always safe. */
    for (i = 0; table[i].key; i++)
        memset((char *)out + table[i].offset, 0, field_size(table[i].type));
    ld.n_entries = i;

    rc = IS_ERR_NOMEM;
    if (sources_out) {
        memset(sources_out, 0, sizeof(*sources_out)); /* may be uninitialised too */
        if (path && !(sources_out->path = strdup(path))) {
            is_errf(errstr, errstr_size, "out of memory");
            goto done;
        }
    }
    ld.file_line = calloc(ld.n_entries + 1, sizeof(*ld.file_line));
    if (!ld.file_line) {
        is_errf(errstr, errstr_size, "out of memory");
        goto done;
    }

    for (i = 0; i < ld.n_entries; i++) {
        const is_cfg_entry_t *e = &table[i];
        cfg_src_t src;
        if (!e->def)
            continue;
        snprintf(src.where, sizeof(src.where), "default for key '%s'", e->key);
        if (e->type == IS_CFG_STRMAP) {
            is_errf(errstr, errstr_size, "%s: map keys cannot have a default", src.where);
            rc = IS_ERR_CONFIG;
            goto done;
        }
        rc = e->type == IS_CFG_STRLIST ? set_list_csv(&ld, e, e->def)
                                       : set_scalar(&ld, e, e->def, &src);
        if (rc != IS_OK) {
            if (rc == IS_ERR_NOMEM)
                is_errf(errstr, errstr_size, "out of memory");
            goto done;
        }
    }

    if (path) {
        rc = load_file(&ld);
        if (rc != IS_OK)
            goto done;
    }
    rc = env_prefix ? load_env(&ld, env_prefix) : IS_OK;
done:
    free(ld.file_line);
    is_strmap_release(&ld.kafka_lines);
    return rc;
}

const char *is_cfg_source(const is_cfg_sources_t *sources, const char *key, char *buf,
                          size_t size) {
    const char *where = sources ? is_strmap_get(&sources->where, key) : NULL;
    if (where)
        return where;
    snprintf(buf, size, "%s: key '%s'",
             sources && sources->path ? sources->path : "no --config file, environment only", key);
    return buf;
}

void is_cfg_sources_release(is_cfg_sources_t *sources) {
    if (!sources)
        return;
    free(sources->path);
    sources->path = NULL;
    is_strmap_release(&sources->where);
}

void is_cfg_print_help(const is_cfg_entry_t *table, const char *env_prefix, FILE *f) {
    const is_cfg_entry_t *e;
    char name[CFG_NAME_MAX], lo[64], hi[64];

    for (e = table; e && e->key; e++) {
        fprintf(f, "  %s (%s", e->key, type_name(e->type));
        if (has_bounds(e) &&
            (e->type == IS_CFG_INT || e->type == IS_CFG_DURATION || e->type == IS_CFG_SIZE)) {
            format_bound(e, e->min, lo, sizeof(lo));
            format_bound(e, e->max, hi, sizeof(hi));
            fprintf(f, ", %s..%s", lo, hi);
        }
        if (e->choices)
            fprintf(f, ", one of %s", e->choices);
        if (e->def)
            fprintf(f, ", default \"%s\"", e->def);
        if (env_prefix && e->type != IS_CFG_STRMAP &&
            env_name(name, sizeof(name), env_prefix, e->key) == IS_OK)
            fprintf(f, ", env %s%s", name, e->type == IS_CFG_STRLIST ? " comma-separated" : "");
        fprintf(f, ")\n      %s\n", e->desc ? e->desc : "");
    }
    fprintf(f, "  kafka.* (string)\n      passed to librdkafka verbatim (e.g. "
               "kafka.bootstrap.servers)");
    if (env_prefix && env_name(name, sizeof(name), env_prefix, CFG_KAFKA "_") == IS_OK)
        fprintf(f, "; env %s<NAME>, e.g. %sBOOTSTRAP_SERVERS", name, name);
    fprintf(f, "\n");
}
