/*
 * consumer_config.h — erp-consumer's configuration: the struct and its
 * table (common/config.h). `erp-consumer --help` prints the table.
 */
#ifndef INVSYNC_CONSUMER_CONFIG_H
#define INVSYNC_CONSUMER_CONFIG_H

#include <stdint.h>

#include "config.h"
#include "db.h"
#include "erp.h"

#define CONSUMER_ENV_PREFIX "INVSYNC_"

typedef struct consumer_config {
    char *consumer_id; /* names this instance in logs and audit */
    char *log_level;   /* debug | info | warn | error */
    char *http_listen; /* status, metrics, admin */
    int64_t http_threads;
    char *store_path;                 /* SQLite state */
    char *store_sync;                 /* full | normal */
    int64_t store_retention_ms;       /* delete finished movements older than this; 0 = keep */
    int64_t prune_interval_ms;        /* how often store.retention is applied */
    char *policy_path;                /* tier policy YAML */
    char *sites_regex;                /* sites this instance owns, e.g. "PLANT[12]" */
    erp_config_t erp;                 /* adapter settings */
    int64_t poster_batch;             /* postings per poster transaction */
    int64_t poster_idle_ms;           /* poster wait when nothing is due */
    char *time_ordered_ids_from;      /* RFC 3339 or NULL (store_set_time_ordered_ids_from) */
    int64_t time_ordered_ids_from_ms; /* parsed by the load; INT64_MAX when unset */
    int64_t retry_base_ms;            /* first retry delay */
    int64_t retry_max_ms;             /* retry delay cap */
    int64_t consume_batch;            /* messages per store transaction */
    char *consume_mode;               /* group | assign */
    int64_t discovery_ms;             /* assign mode: how often topics are listed */
    int64_t gap_timeout_ms;           /* skip a sequence gap after this long fully caught up */
    char *admin_token;                /* bearer token for admin endpoints */
    char *uom_path;                   /* MES → ERP unit conversions CSV (NULL: none) */
    is_strlist_t erp_sources;         /* loop guard: ERP-origin source systems to drop */
    is_strmap_t kafka;                /* kafka.* passthrough */
    is_cfg_sources_t sources;         /* where each value came from (is_cfg_source) */
} consumer_config_t;

extern const is_cfg_entry_t consumer_config_table[];

/* Load path (NULL: defaults + environment), validate cross-field rules. */
is_err_t consumer_config_load(consumer_config_t *cfg, const char *path, char *errstr,
                              size_t errstr_size) IS_MUST_CHECK;
void consumer_config_release(consumer_config_t *cfg);

/* store.sync as the store opens it: "normal" is IS_DB_SYNC_NORMAL, anything else FULL. */
is_db_sync_t consumer_config_store_sync(const consumer_config_t *cfg);

#endif
