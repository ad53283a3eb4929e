/*
 * consumer_config.c — erp-consumer's configuration table and cross-field
 * validation. The table is the documentation: `erp-consumer --help`.
 */
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "duration.h"
#include "httpd.h"

#include "consumer_config.h"

#define OFF(f) offsetof(consumer_config_t, f)

const is_cfg_entry_t consumer_config_table[] = {
    {"consumer_id", IS_CFG_STR, OFF(consumer_id), 0, 0, "erp-consumer-1",
     "name of this instance in logs and the audit trail", NULL},
    {"log.level", IS_CFG_STR, OFF(log_level), 0, 0, "info", "debug, info, warn or error",
     "debug|info|warn|error"},
    {"http.listen", IS_CFG_STR, OFF(http_listen), 0, 0, "127.0.0.1:8081",
     "address of the status page, /metrics, /healthz, /readyz and admin API", NULL},
    {"http.threads", IS_CFG_INT, OFF(http_threads), 1, 64, "2", "HTTP worker threads", NULL},
    {"store.path", IS_CFG_STR, OFF(store_path), 0, 0, "erp-consumer.db",
     "SQLite file with dedup keys, posting queue, offsets (keep on a persistent volume)", NULL},
    {"store.sync", IS_CFG_STR, OFF(store_sync), 0, 0, "full",
     "full (survives power loss) or normal (survives a process crash)", "full|normal"},
    {"store.retention", IS_CFG_DURATION, OFF(store_retention_ms), 1000, INT64_C(315360000000), NULL,
     "delete finished movements (posted, cancelled, dead, ignored, skipped) accepted longer ago "
     "than this (e.g. 400d); unset: keep every movement. Keep it above the Kafka topics' "
     "retention and the producer's outbox.retention: a movement read again after its row was "
     "deleted is parked (dead-lettered), never posted twice",
     NULL},
    {"store.prune_interval", IS_CFG_DURATION, OFF(prune_interval_ms), 100, 3600000, "1m",
     "how often store.retention is applied (also at start)", NULL},
    {"policy.path", IS_CFG_STR, OFF(policy_path), 0, 0, NULL, "tier policy YAML (required)", NULL},
    {"sites_regex", IS_CFG_STR, OFF(sites_regex), 0, 0, "[^.]+",
     "regular expression of the sites this instance owns (topic <prefix>.<site>.<tier>)", NULL},
    {"erp.adapter", IS_CFG_STR, OFF(erp.adapter), 0, 0, "sqlite",
     "sqlite (the embedded ledger, a stand-in) or http-json", "sqlite|http-json"},
    {"erp.sqlite.path", IS_CFG_STR, OFF(erp.sqlite_path), 0, 0, "erp-ledger.db",
     "sqlite adapter: the embedded ERP ledger file", NULL},
    {"erp.sqlite.allow_negative", IS_CFG_BOOL, OFF(erp.allow_negative), 0, 0, "false",
     "sqlite adapter: accept postings that drive on-hand below zero", NULL},
    {"erp.http.url", IS_CFG_STR, OFF(erp.http_url), 0, 0, NULL,
     "http-json adapter: base URL of the ERP API", NULL},
    {"erp.http.token", IS_CFG_STR, OFF(erp.http_token), 0, 0, NULL,
     "http-json adapter: bearer token (never logged)", NULL},
    {"erp.http.timeout", IS_CFG_DURATION, OFF(erp.http_timeout_ms), 100, 600000, "10s",
     "http-json adapter: timeout of one ERP call", NULL},
    /* Larger cycles pay a cycle's fsyncs and shared index pages once for more
     * postings (2,000: real-time 4.4-4.8k -> 5.9-6.4k postings/s in the
     * bench, docs/PERFORMANCE.md §5.7), but a crash then leaves up to two
     * cycles to look up in the ERP one by one at start, and one ERP
     * transaction holds them all: 500 keeps both small. */
    {"poster.batch", IS_CFG_INT, OFF(poster_batch), 1, 100000, "500",
     "postings handled per poster transaction", NULL},
    {"poster.time_ordered_ids_from", IS_CFG_STR, OFF(time_ordered_ids_from), 0, 0, NULL,
     "RFC 3339 time: postings of movements accepted from then on get posting ids that begin "
     "with their event time (faster real-time posting on large stores); unset: hash ids as "
     "before. Set the same value on every instance posting to one ERP, later than the moment "
     "all of them run this version (a new installation: its start)",
     NULL},
    {"poster.idle", IS_CFG_DURATION, OFF(poster_idle_ms), 1, 60000, "200ms",
     "longest poster wait when nothing is due (new movements wake it at once)", NULL},
    {"retry.base", IS_CFG_DURATION, OFF(retry_base_ms), 1, 3600000, "1s",
     "first retry delay after a retryable ERP failure (doubles, with jitter)", NULL},
    {"retry.max", IS_CFG_DURATION, OFF(retry_max_ms), 1, 86400000, "5m", "retry delay cap", NULL},
    {"consume.batch", IS_CFG_INT, OFF(consume_batch), 1, 100000, "2000",
     "Kafka messages applied per store transaction", NULL},
    {"consume.mode", IS_CFG_STR, OFF(consume_mode), 0, 0, "group",
     "group: join kafka.group.id and subscribe by regex (a second instance takes the partitions "
     "over on failover; not load sharing: run the standby stopped, or split sites by sites_regex); "
     "assign: list topics every consume.discovery and assign every matching partition "
     "(one instance owns its sites; no group coordinator needed, e.g. the embedded cluster)",
     "group|assign"},
    {"consume.discovery", IS_CFG_DURATION, OFF(discovery_ms), 100, 3600000, "5s",
     "assign mode: how often new topics (new sites) are looked for", NULL},
    {"consume.gap_timeout", IS_CFG_DURATION, OFF(gap_timeout_ms), 1000, 86400000, "60s",
     "a movement waits for every earlier sequence of its producer and site; once this "
     "instance has read all its partitions to the end, a gap older than this is skipped "
     "and recorded in the audit trail (sequences consumed elsewhere or lost to retention)",
     NULL},
    {"uom.conversions", IS_CFG_STR, OFF(uom_path), 0, 0, NULL,
     "CSV mes_uom,erp_uom,factor[,material]: quantities are converted exactly before posting; "
     "when set, a unit without a row is a permanent error (unset: units pass through)",
     NULL},
    {"admin.token", IS_CFG_STR, OFF(admin_token), 0, 0, NULL,
     "bearer token for admin endpoints (unset: admin API disabled)", NULL},
    {"loop_guard.erp_sources", IS_CFG_STRLIST, OFF(erp_sources), 0, 0, NULL,
     "source systems that are the ERP itself: their movements are dropped and counted", NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

is_err_t consumer_config_load(consumer_config_t *cfg, const char *path, char *errstr,
                              size_t errstr_size) {
    char listen_err[300], where[512], where2[512];
    is_err_t rc;
    memset(cfg, 0, sizeof(*cfg));
    rc = is_cfg_load(consumer_config_table, cfg, path, CONSUMER_ENV_PREFIX, &cfg->kafka,
                     &cfg->sources, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
#define WHERE(key) is_cfg_source(&cfg->sources, key, where, sizeof(where))
    /* Each message begins with WHERE the value came from: "file.yaml:7: key 'k'" or
     * "environment INVSYNC_K (key 'k')". */
    if (is_httpd_check_listen(cfg->http_listen, listen_err, sizeof(listen_err)) != IS_OK) {
        is_errf(errstr, errstr_size, "%s: %s", WHERE("http.listen"), listen_err);
        return IS_ERR_CONFIG;
    }
    if (!cfg->policy_path || !*cfg->policy_path) {
        is_errf(errstr, errstr_size, "%s is required", WHERE("policy.path"));
        return IS_ERR_CONFIG;
    }
    /* The dedup keys and offsets: an in-memory or temporary store forgets them at a restart,
     * and every movement read again would be posted again. */
    struct stat st;
    if (!*cfg->store_path || strcmp(cfg->store_path, ":memory:") == 0) {
        is_errf(errstr, errstr_size, "%s: '%s' must be a file", WHERE("store.path"),
                cfg->store_path);
        return IS_ERR_CONFIG;
    }
    if (stat(cfg->store_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        is_errf(errstr, errstr_size, "%s: '%s' is a directory, not the store's file",
                WHERE("store.path"), cfg->store_path);
        return IS_ERR_CONFIG;
    }
    /* store.sync, consume.mode, erp.adapter, log.level: checked by the load (choices). */
    if (strcmp(cfg->erp.adapter, "http-json") == 0 && (!cfg->erp.http_url || !*cfg->erp.http_url)) {
        is_errf(errstr, errstr_size, "%s is required for erp.adapter http-json",
                WHERE("erp.http.url"));
        return IS_ERR_CONFIG;
    }
    if (strcmp(cfg->erp.adapter, "http-json") == 0 &&
        strncmp(cfg->erp.http_url, "http://", 7) != 0 &&
        strncmp(cfg->erp.http_url, "https://", 8) != 0) {
        is_errf(errstr, errstr_size, "%s: '%s' must start with http:// or https://",
                WHERE("erp.http.url"), cfg->erp.http_url);
        return IS_ERR_CONFIG;
    }
    /* Compiled as consume.c and replay do: the site part of the topic names. */
    {
        regex_t re;
        char *pattern = NULL;
        if (asprintf(&pattern, "^(%s)$", cfg->sites_regex) < 0)
            pattern = NULL;
        int bad = !pattern || regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0;
        if (!bad)
            regfree(&re);
        free(pattern);
        if (bad) {
            is_errf(errstr, errstr_size,
                    "%s: '%s' is not a valid (POSIX extended) regular expression",
                    WHERE("sites_regex"), cfg->sites_regex);
            return IS_ERR_CONFIG;
        }
    }
    /* Sent or matched as "Authorization: Bearer <token>": one word, never echoed. A space
     * would lock the admin API out for good; a line break would split the ERP's header. */
    if (cfg->admin_token && *cfg->admin_token && !is_http_token_valid(cfg->admin_token)) {
        is_errf(errstr, errstr_size,
                "%s: the token must be one word of printable ASCII (no spaces or control "
                "characters)",
                WHERE("admin.token"));
        return IS_ERR_CONFIG;
    }
    if (cfg->erp.http_token && *cfg->erp.http_token && !is_http_token_valid(cfg->erp.http_token)) {
        is_errf(errstr, errstr_size,
                "%s: the token must be one word of printable ASCII (no spaces or control "
                "characters)",
                WHERE("erp.http.token"));
        return IS_ERR_CONFIG;
    }
    cfg->time_ordered_ids_from_ms = INT64_MAX;
    if (cfg->time_ordered_ids_from && *cfg->time_ordered_ids_from &&
        is_parse_rfc3339(cfg->time_ordered_ids_from, &cfg->time_ordered_ids_from_ms) != IS_OK) {
        is_errf(errstr, errstr_size,
                "%s: '%s' is not an RFC 3339 time such as 2026-12-01T00:00:00Z",
                WHERE("poster.time_ordered_ids_from"), cfg->time_ordered_ids_from);
        return IS_ERR_CONFIG;
    }
    if (cfg->retry_max_ms < cfg->retry_base_ms) {
        is_errf(errstr, errstr_size, "%s must not be below retry.base (%s)", WHERE("retry.max"),
                is_cfg_source(&cfg->sources, "retry.base", where2, sizeof(where2)));
        return IS_ERR_CONFIG;
    }
    if (!is_strmap_get(&cfg->kafka, "bootstrap.servers")) {
        is_errf(errstr, errstr_size, "%s is required", WHERE("kafka.bootstrap.servers"));
        return IS_ERR_CONFIG;
    }
#undef WHERE
    return IS_OK;
}

void consumer_config_release(consumer_config_t *cfg) {
    is_cfg_release(consumer_config_table, cfg);
    is_strmap_release(&cfg->kafka);
    is_cfg_sources_release(&cfg->sources);
}

is_db_sync_t consumer_config_store_sync(const consumer_config_t *cfg) {
    return strcmp(cfg->store_sync, "normal") == 0 ? IS_DB_SYNC_NORMAL : IS_DB_SYNC_FULL;
}
