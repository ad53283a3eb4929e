/*
 * producer_config.h — mes-producer's configuration: one struct, one table.
 *
 * The table (producer_config_table) is the single source of truth for keys,
 * types, bounds, defaults and descriptions: loading, validation, environment
 * overrides (prefix INVSYNC_) and `mes-producer --help` all come from it
 * (common/config.h). Everything under `kafka.` is passed through verbatim to
 * librdkafka; `kafka.bootstrap.servers` has no default and is required.
 *
 * Keys are part of the service's interface (deployments and tests write them):
 * rename one only with a migration note.
 *
 * @locality: loaded once by main() before any thread starts; read-only after.
 */
#ifndef INVSYNC_PRODUCER_CONFIG_H
#define INVSYNC_PRODUCER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "db.h"
#include "error.h"

#define PRODUCER_ENV_PREFIX "INVSYNC_"

typedef struct producer_config {
    char *producer_id;             /* stamped on every movement; keys the sequences */
    char *log_level;               /* debug | info | warn | error */
    char *http_listen;             /* "host:port", ":port" */
    int64_t http_threads;          /* libmicrohttpd thread pool size */
    int64_t http_max_body;         /* bytes; larger bodies get 413 before parsing */
    int64_t http_max_items;        /* movements per request; more gets 413 */
    char *outbox_path;             /* SQLite file (not ":memory:") */
    char *outbox_sync;             /* "full" (power-loss safe) | "normal" */
    char *policy_path;             /* tier policy YAML (required) */
    is_strmap_t auth_tokens;       /* site → bearer token; site "*" = every site */
    char *auth_admin_token;        /* ignored (no admin endpoints); warned about at start */
    int64_t quantity_max_scale;    /* most decimal places accepted in a quantity */
    is_strlist_t refused_sources;  /* loop guard: source systems that are refused */
    int64_t heartbeat_interval_ms; /* heartbeat period per site */
    int64_t outbox_retention_ms;   /* 0: keep every movement */
    int64_t forwarder_batch;       /* outbox rows fetched per forwarder round */
    is_strmap_t kafka;             /* kafka.* passthrough, prefix stripped */
    is_cfg_sources_t sources;      /* where each value came from (is_cfg_source) */
} producer_config_t;

/* The table, NULL-key terminated (for --help and for tests that check keys). */
extern const is_cfg_entry_t producer_config_table[];

/*
 * Load defaults, the YAML file (path may be NULL), then INVSYNC_* variables,
 * and validate what the table cannot express (policy.path and
 * kafka.bootstrap.servers present, outbox.sync and log.level known, tokens
 * non-empty). cfg is zeroed first. On error errstr names the key and the bad
 * value; producer_config_release() is still safe and required.
 */
is_err_t producer_config_load(producer_config_t *cfg, const char *path, char *errstr,
                              size_t errstr_size) IS_MUST_CHECK;

/* Free everything inside cfg (not cfg itself). Safe on a zeroed struct. */
void producer_config_release(producer_config_t *cfg);

/* The key table as text for `--help`. */
void producer_config_print_help(FILE *f);

/* outbox.sync as an is_db_sync_t (only valid after a successful load). */
is_db_sync_t producer_config_db_sync(const producer_config_t *cfg);

#endif
