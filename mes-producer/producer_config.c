/*
 * producer_config.c — the mes-producer key table and the checks the table
 * cannot express (required keys, enumerations, token map shape).
 */
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include "httpd.h"

#include "log.h"
#include "producer_config.h"
#include "topic.h"

#define OFF(field) offsetof(producer_config_t, field)

const is_cfg_entry_t producer_config_table[] = {
    {"producer_id", IS_CFG_STR, OFF(producer_id), 0, 0, "mes-producer-1",
     "stamped on every movement; sequences are gap-free per (producer_id, site)", NULL},
    {"log.level", IS_CFG_STR, OFF(log_level), 0, 0, "info", "debug | info | warn | error",
     "debug|info|warn|error"},
    {"http.listen", IS_CFG_STR, OFF(http_listen), 0, 0, "127.0.0.1:8080",
     "HTTP listen address: host:port, :port for all interfaces, port 0 = ephemeral", NULL},
    {"http.threads", IS_CFG_INT, OFF(http_threads), 1, 256, "4", "HTTP worker threads", NULL},
    {"http.max_body", IS_CFG_SIZE, OFF(http_max_body), 1024, INT64_C(1) << 30, "8MiB",
     "largest request body accepted (413 above)", NULL},
    {"http.max_items", IS_CFG_INT, OFF(http_max_items), 1, 1000000, "10000",
     "most movements in one request (413 above)", NULL},
    {"outbox.path", IS_CFG_STR, OFF(outbox_path), 0, 0, "mes-producer.db",
     "SQLite outbox file: a movement is acknowledged only once it is committed here", NULL},
    {"outbox.sync", IS_CFG_STR, OFF(outbox_sync), 0, 0, "full",
     "full (a commit survives power loss) | normal (survives a process crash only)", "full|normal"},
    {"policy.path", IS_CFG_STR, OFF(policy_path), 0, 0, NULL,
     "tier policy YAML (required); its SHA-256 is the policy_version", NULL},
    {"auth.tokens", IS_CFG_STRMAP, OFF(auth_tokens), 0, 0, NULL,
     "site -> bearer token allowed to submit that site's movements; site \"*\" = all sites", NULL},
    {"auth.admin_token", IS_CFG_STR, OFF(auth_admin_token), 0, 0, NULL,
     "ignored (mes-producer has no admin endpoints; accepted so that older files load)", NULL},
    {"quantity.max_scale", IS_CFG_INT, OFF(quantity_max_scale), 0, 18, "6",
     "most decimal places accepted in a quantity", NULL},
    {"loop_guard.refused_sources", IS_CFG_STRLIST, OFF(refused_sources), 0, 0, NULL,
     "source systems refused with 422 (e.g. the ERP's own; compared ignoring case), so ERP "
     "echoes never loop back",
     NULL},
    {"outbox.retention", IS_CFG_DURATION, OFF(outbox_retention_ms), 3600000, INT64_C(315360000000),
     NULL,
     "delete movements delivered to Kafka and accepted longer ago than this (e.g. 90d); unset: "
     "keep every movement. A resend older than this is no longer recognised as a duplicate by "
     "the producer (the consumer still absorbs it) and cannot be republished",
     NULL},
    {"heartbeat.interval", IS_CFG_DURATION, OFF(heartbeat_interval_ms), 100, 3600000, "10s",
     "heartbeat period per site, on each of the site's tier topics", NULL},
    {"forwarder.batch", IS_CFG_INT, OFF(forwarder_batch), 1, 100000, "1000",
     "outbox rows handed to Kafka per forwarder round", NULL},
    {NULL, IS_CFG_STR, 0, 0, 0, NULL, NULL, NULL},
};

static is_err_t check_tokens(const producer_config_t *cfg, char *errstr, size_t errstr_size) {
    char buf[512];
    /* A map comes from the file only (the loader refuses INVSYNC_AUTH_TOKENS). */
    const char *src = is_cfg_source(&cfg->sources, "auth.tokens", buf, sizeof(buf));
    size_t i;
    for (i = 0; i < cfg->auth_tokens.n; i++) {
        const char *site = cfg->auth_tokens.keys[i];
        const char *tok = cfg->auth_tokens.vals[i];
        if (strcmp(site, "*") != 0 && !is_topic_part_valid(site)) {
            is_errf(errstr, errstr_size,
                    "%s: '%s' is not a site name ([A-Za-z0-9_-], 1..64) or '*'", src, site);
            return IS_ERR_CONFIG;
        }
        /* Never echo a token, not even a bad one. */
        if (!tok || !*tok) {
            is_errf(errstr, errstr_size, "%s: site '%s': empty token", src, site);
            return IS_ERR_CONFIG;
        }
        /* A bearer token is one word: with a space it could never be presented. */
        if (!is_http_token_valid(tok)) {
            is_errf(errstr, errstr_size,
                    "%s: site '%s': the token must be one word of printable ASCII (no spaces "
                    "or control characters)",
                    src, site);
            return IS_ERR_CONFIG;
        }
    }
    return IS_OK;
}

is_err_t producer_config_load(producer_config_t *cfg, const char *path, char *errstr,
                              size_t errstr_size) {
    char listen_err[300], where[512];
    is_err_t rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = is_cfg_load(producer_config_table, cfg, path, PRODUCER_ENV_PREFIX, &cfg->kafka,
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
    if (!is_strmap_get(&cfg->kafka, "bootstrap.servers")) {
        is_errf(errstr, errstr_size, "%s is required (or INVSYNC_KAFKA_BOOTSTRAP_SERVERS)",
                WHERE("kafka.bootstrap.servers"));
        return IS_ERR_CONFIG;
    }
    /* outbox.sync and log.level: checked by the load (choices). */
    if (!*cfg->producer_id || !is_topic_part_valid(cfg->producer_id)) {
        is_errf(errstr, errstr_size, "%s: '%s' must be 1..64 chars of [A-Za-z0-9_-]",
                WHERE("producer_id"), cfg->producer_id);
        return IS_ERR_CONFIG;
    }
    if (!*cfg->outbox_path || strcmp(cfg->outbox_path, ":memory:") == 0) {
        is_errf(errstr, errstr_size, "%s: '%s' must be a file", WHERE("outbox.path"),
                cfg->outbox_path);
        return IS_ERR_CONFIG;
    }
    struct stat st;
    if (stat(cfg->outbox_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        is_errf(errstr, errstr_size, "%s: '%s' is a directory, not the outbox's file",
                WHERE("outbox.path"), cfg->outbox_path);
        return IS_ERR_CONFIG;
    }
#undef WHERE
    return check_tokens(cfg, errstr, errstr_size);
}

void producer_config_release(producer_config_t *cfg) {
    if (!cfg)
        return;
    is_cfg_release(producer_config_table, cfg);
    is_strmap_release(&cfg->kafka);
    is_cfg_sources_release(&cfg->sources);
}

void producer_config_print_help(FILE *f) {
    fputs("usage: mes-producer --config FILE [--check-config]\n"
          "       mes-producer republish --config FILE --site SITE --from SEQ --to SEQ --by WHO "
          "--reason WHY\n"
          "       (republish --help: publish lost movements again)\n"
          "       mes-producer --help\n\n"
          "Configuration keys (YAML, dotted keys are nested mappings):\n",
          f);
    is_cfg_print_help(producer_config_table, PRODUCER_ENV_PREFIX, f);
    fputs("\n  kafka.bootstrap.servers is required. The forwarder sets enable.idempotence=true,\n"
          "  acks=all, message.timeout.ms=0 (never give up while Kafka is down) and\n"
          "  linger.ms=1 (low latency; raise kafka.linger.ms for a distant broker) before\n"
          "  applying kafka.*, so a deployment can override them (an override of\n"
          "  enable.idempotence or acks is logged as a warning: it weakens delivery).\n",
          f);
}

is_db_sync_t producer_config_db_sync(const producer_config_t *cfg) {
    if (cfg->outbox_sync && strcmp(cfg->outbox_sync, "normal") == 0)
        return IS_DB_SYNC_NORMAL;
    return IS_DB_SYNC_FULL;
}
