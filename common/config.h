/*
 * config.h — table-driven configuration: YAML file → struct, with
 * environment overrides and `kafka.*` passthrough.
 *
 * Each service declares one table of is_cfg_entry_t (key, type, offset into
 * its config struct, bounds, default, description). From that table come
 * loading, validation, defaults, environment overrides and --help.
 *
 * YAML nesting is flattened to dotted keys: `http: {listen: ":8080"}` is
 * key "http.listen". Keys not in the table are an error (typos must be loud),
 * except everything under `kafka.` which is collected verbatim into a string
 * map and passed to rd_kafka_conf_set() by the service.
 *
 * Environment overrides (applied after the file): for key "http.listen" and
 * prefix "INVSYNC_" the variable is INVSYNC_HTTP_LISTEN (uppercase, '.' and
 * '-' become '_'). Kafka keys: INVSYNC_KAFKA_BOOTSTRAP_SERVERS sets
 * "bootstrap.servers" (lowercase, '_' becomes '.').
 *
 * Error messages name the source, the key and the bad value:
 *   "producer.yaml: key 'http.max_body_bytes': 'abc' is not a size (e.g. 8MiB)"
 *   "environment INVSYNC_HTTP_THREADS: '0' is below the minimum 1"
 * Checks a service makes after the load name the source the same way through
 * is_cfg_source(): "producer.yaml:7: key 'http.listen'" or
 * "environment INVSYNC_HTTP_LISTEN (key 'http.listen')".
 */
#ifndef INVSYNC_CONFIG_H
#define INVSYNC_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef enum is_cfg_type {
    IS_CFG_STR,      /* char * (malloc'd; NULL when no default and unset) */
    IS_CFG_INT,      /* int64_t, bounded by [min, max] */
    IS_CFG_BOOL,     /* int: true/false/yes/no/on/off/1/0 */
    IS_CFG_DURATION, /* int64_t milliseconds: "150ms" "30s" "5m" "2h" "1d" */
    IS_CFG_SIZE,     /* int64_t bytes: "8MiB" "100kB" or a count */
    IS_CFG_STRMAP,   /* is_strmap_t: a YAML mapping of scalars, e.g. site → token */
    IS_CFG_STRLIST,  /* is_strlist_t: a YAML sequence of scalars (or one scalar) */
} is_cfg_type_t;

typedef struct is_cfg_entry {
    const char *key; /* dotted, e.g. "http.listen" */
    is_cfg_type_t type;
    size_t offset;    /* offsetof(struct, field) */
    int64_t min, max; /* for INT/DURATION/SIZE; ignored when min == max == 0 */
    const char *def;  /* default as text (parsed like a file value); NULL = none */
    const char *desc; /* one line for --help and docs */
    /* STR only, optional: the values allowed, '|'-separated ("group|assign");
     * anything else is an error naming the file and line (or variable). */
    const char *choices;
} is_cfg_entry_t;

typedef struct is_strmap {
    size_t n;
    char **keys; /* malloc'd */
    char **vals; /* malloc'd */
} is_strmap_t;

typedef struct is_strlist {
    size_t n;
    char **items; /* malloc'd */
} is_strlist_t;

/* Where each value came from, recorded by is_cfg_load(), read by is_cfg_source(). */
typedef struct is_cfg_sources {
    char *path;        /* the file loaded (a copy), NULL when there was none */
    is_strmap_t where; /* dotted key → "f.yaml:7: key 'k'" or "environment V (key 'k')" */
} is_cfg_sources_t;

/*
 * Load defaults, then the YAML file at path (NULL: no file), then the
 * environment. kafka_out (may be NULL) receives every `kafka.*` key with the
 * prefix stripped, from file and environment. sources_out (may be NULL) is
 * reset and receives where each key set by the file or the environment came
 * from, `kafka.*` keys included. On error nothing needs to be released by the
 * caller beyond is_cfg_release() and is_cfg_sources_release(), which are
 * always safe. The table ends with an entry whose key is NULL.
 */
is_err_t is_cfg_load(const is_cfg_entry_t *table, void *out, const char *path,
                     const char *env_prefix, is_strmap_t *kafka_out, is_cfg_sources_t *sources_out,
                     char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * Where the value of key came from, to begin a message about it:
 * "f.yaml:7: key 'k'", "environment INVSYNC_K (key 'k')", or for a key
 * neither set (a default, or no value) "f.yaml: key 'k'", without a file
 * "no --config file, environment only: key 'k'". Returns the recorded text or
 * buf (filled then); valid as long as both are.
 */
const char *is_cfg_source(const is_cfg_sources_t *sources, const char *key, char *buf, size_t size);
void is_cfg_sources_release(is_cfg_sources_t *sources);

/* Free every string, map and list the table describes inside out. */
void is_cfg_release(const is_cfg_entry_t *table, void *out);

/* "  http.listen (string, default \"127.0.0.1:8080\")\n      description\n" … */
void is_cfg_print_help(const is_cfg_entry_t *table, const char *env_prefix, FILE *f);

/* NULL when absent. */
const char *is_strmap_get(const is_strmap_t *m, const char *key);
/* Adds or replaces; copies both. */
is_err_t is_strmap_set(is_strmap_t *m, const char *key, const char *val) IS_MUST_CHECK;
void is_strmap_release(is_strmap_t *m);
void is_strlist_release(is_strlist_t *l);
int is_strlist_contains(const is_strlist_t *l, const char *s);

#endif
