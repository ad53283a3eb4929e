/*
 * main.c — mes-producer: parse arguments, load configuration and policy,
 * wire outbox, forwarder and HTTP server, run until SIGTERM/SIGINT, stop in
 * order (HTTP first so nothing new is accepted, then the forwarder's flush).
 *
 * Exit codes: 0 clean stop or --help/--check-config success, 1 a start-up
 * failure (outbox, Kafka client, listen address), 2 a usage, configuration
 * or policy error.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forwarder.h"
#include "ingest.h"
#include "json_arena.h"
#include "log.h"
#include "outbox.h"
#include "policy.h"
#include "producer_config.h"
#include "producer_metrics.h"

#define STOP_FLUSH_MS 10000

/* The one piece of global mutable state: set by the signal handler. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = SIG_IGN; /* a client hanging up must not kill us */
    return sigaction(SIGPIPE, &sa, NULL);
}

static void usage(FILE *f) {
    fputs("usage: mes-producer --config FILE [--check-config]\n"
          "       mes-producer --help\n",
          f);
}

int main(int argc, char **argv) {
    const char *config_path = NULL;
    int check_only = 0, exit_code = 1, i;
    char errstr[1024];
    producer_config_t cfg;
    is_log_level_t level = IS_LOG_INFO;
    is_policy_t *policy = NULL;
    outbox_t *outbox = NULL;
    producer_metrics_t *metrics = NULL;
    forwarder_t *fw = NULL;
    ingest_t *ig = NULL;
    is_httpd_t *httpd = NULL;
    const is_http_route_t *routes;
    size_t n_routes;
    char port[8];

    json_arena_install(); /* before any other jansson call */
    memset(&cfg, 0, sizeof(cfg));
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            producer_config_print_help(stdout);
            return 0;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = 1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else {
            fprintf(stderr, "mes-producer: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    if (producer_config_load(&cfg, config_path, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "mes-producer: %s\n", errstr);
        exit_code = 2;
        goto out;
    }
    if (is_log_level_parse(cfg.log_level, &level) != IS_OK) /* validated by the load */
        level = IS_LOG_INFO;
    is_log_init("mes-producer", level);
    if (is_policy_load(cfg.policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "%s\n", errstr); /* already names the file, key and value */
        exit_code = 2;
        goto out;
    }
    if (forwarder_check_config(&cfg.kafka, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "mes-producer: %s: %s\n", config_path ? config_path : "environment",
                errstr);
        exit_code = 2;
        goto out;
    }
    if (check_only) {
        printf("configuration ok (policy %s)\n", is_policy_version(policy));
        exit_code = 0;
        goto out;
    }
    if (install_signals() != 0) {
        fprintf(stderr, "mes-producer: cannot install signal handlers\n");
        goto out;
    }

    if (outbox_open(cfg.outbox_path, producer_config_db_sync(&cfg), cfg.producer_id, &outbox,
                    errstr, sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot open the outbox", "error", errstr, NULL);
        goto out;
    }
    metrics = producer_metrics_new();
    if (!metrics) {
        is_log(IS_LOG_ERROR, "out of memory", NULL);
        goto out;
    }
    {
        forwarder_opts_t fo;
        memset(&fo, 0, sizeof(fo));
        fo.outbox = outbox;
        fo.policy = policy;
        fo.kafka = &cfg.kafka;
        fo.producer_id = cfg.producer_id;
        fo.heartbeat_interval_ms = cfg.heartbeat_interval_ms;
        fo.batch = (size_t)cfg.forwarder_batch;
        fo.metrics = metrics;
        if (forwarder_start(&fo, &fw, errstr, sizeof(errstr)) != IS_OK) {
            is_log(IS_LOG_ERROR, "cannot start the forwarder", "error", errstr, NULL);
            goto out;
        }
    }
    {
        ingest_opts_t io;
        memset(&io, 0, sizeof(io));
        io.outbox = outbox;
        io.policy = policy;
        io.tokens = &cfg.auth_tokens;
        io.refused_sources = &cfg.refused_sources;
        io.max_scale = (uint32_t)cfg.quantity_max_scale;
        io.max_items = (size_t)cfg.http_max_items;
        io.metrics = metrics;
        if (ingest_new(&io, &ig, errstr, sizeof(errstr)) != IS_OK) {
            is_log(IS_LOG_ERROR, "cannot set up the HTTP handlers", "error", errstr, NULL);
            goto out;
        }
    }
    if (cfg.auth_tokens.n == 0)
        is_log(IS_LOG_WARN, "auth.tokens is empty: every POST /v1/movements gets 401", NULL);
    if (cfg.auth_admin_token && *cfg.auth_admin_token)
        is_log(IS_LOG_WARN,
               "auth.admin_token is ignored: mes-producer has no admin endpoints (the admin "
               "API is erp-consumer's admin.token)",
               NULL);
    routes = ingest_routes(&n_routes);
    if (is_httpd_start(cfg.http_listen, routes, n_routes, ig, (size_t)cfg.http_max_body,
                       (unsigned)cfg.http_threads, &httpd, errstr, sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot start the HTTP server", "error", errstr, NULL);
        goto out;
    }
    snprintf(port, sizeof(port), "%u", (unsigned)is_httpd_port(httpd));
    is_log(IS_LOG_INFO, "listening", "listen", cfg.http_listen, "port", port, "producer_id",
           cfg.producer_id, "policy_version", is_policy_version(policy), "outbox", cfg.outbox_path,
           NULL);

    while (!g_stop) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    is_log(IS_LOG_INFO, "stopping", NULL);
    exit_code = 0;
out:
    is_httpd_stop(httpd); /* no handler runs after this */
    forwarder_stop(fw, STOP_FLUSH_MS);
    ingest_destroy(ig);
    outbox_destroy(outbox);
    producer_metrics_destroy(metrics);
    is_policy_destroy(policy);
    producer_config_release(&cfg);
    if (exit_code == 0 && !check_only)
        is_log(IS_LOG_INFO, "stopped", NULL);
    return exit_code;
}
