/*
 * main.c — mes-producer: parse arguments, load configuration and policy,
 * wire outbox, forwarder and HTTP server, run until SIGTERM/SIGINT, stop in
 * order (HTTP first so nothing new is accepted, then the forwarder's flush).
 *
 * Exit codes: 0 clean stop or --help/--check-config success, 1 a start-up
 * failure (outbox, Kafka client, listen address), 2 a usage, configuration
 * or policy error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "db.h"
#include "duration.h"
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
          "       mes-producer republish --config FILE --site SITE --from SEQ --to SEQ --by WHO "
          "--reason WHY\n"
          "       mes-producer --help\n",
          f);
}

static void republish_usage(FILE *f) {
    fputs("usage: mes-producer republish --config FILE --site SITE --from SEQ --to SEQ --by WHO "
          "--reason WHY\n"
          "Publish a site's accepted movements with sequences SEQ..SEQ to Kafka again, unchanged\n"
          "(same sequence, payload and key): the recovery for movements Kafka lost before the\n"
          "consumer read them (erp-consumer counts them in invsync_sequences_skipped_total; its\n"
          "audit action sequence-gap-skipped names the producer, site and range). Consumers\n"
          "absorb the ones they already have. A running mes-producer publishes them within one\n"
          "heartbeat interval, a stopped one when it starts.\n"
          "Exit status: 0 done, 1 the outbox could not be changed or part of the range is no\n"
          "longer in it (outbox.retention), 2 bad usage or range.\n",
          f);
}

/* mes-producer republish: mark a sequence range of a site unsent again. */
static int republish_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"site", required_argument, NULL, 's'},
        {"from", required_argument, NULL, 'f'},   {"to", required_argument, NULL, 't'},
        {"by", required_argument, NULL, 'b'},     {"reason", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *site = NULL, *from_s = NULL, *to_s = NULL, *by = NULL,
               *reason = NULL;
    char errstr[1024], a[24], b[24], n1[24], n2[24];
    producer_config_t cfg;
    outbox_t *ob = NULL;
    int64_t from, to, in_range = 0, marked = 0;
    uint64_t last = 0;
    struct stat sb;
    int c, status = 2;

    memset(&cfg, 0, sizeof(cfg));
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            site = optarg;
            break;
        case 'f':
            from_s = optarg;
            break;
        case 't':
            to_s = optarg;
            break;
        case 'b':
            by = optarg;
            break;
        case 'r':
            reason = optarg;
            break;
        case 'h':
            republish_usage(stdout);
            return 0;
        default:
            republish_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mes-producer republish: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!site || !from_s || !to_s || !by || !*by || !reason || !*reason) {
        fprintf(stderr, "mes-producer republish: --site, --from, --to, --by and --reason are "
                        "required\n");
        republish_usage(stderr);
        return 2;
    }
    if (is_parse_int64(from_s, 1, INT64_MAX, &from) != IS_OK ||
        is_parse_int64(to_s, 1, INT64_MAX, &to) != IS_OK) {
        fprintf(stderr,
                "mes-producer republish: --from and --to are sequence numbers (1 or more), "
                "not '%s'\n",
                is_parse_int64(from_s, 1, INT64_MAX, &from) != IS_OK ? from_s : to_s);
        return 2;
    }
    if (from > to) {
        fprintf(stderr, "mes-producer republish: --from %lld is after --to %lld\n", (long long)from,
                (long long)to);
        return 2;
    }
    if (producer_config_load(&cfg, config_path, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "mes-producer: %s\n", errstr);
        goto out;
    }
    is_log_init("mes-producer", IS_LOG_INFO);
    status = 1;
    /* A mistyped outbox.path must not create an empty outbox (pinned to this
     * producer_id) and then say the site has accepted nothing. */
    if (stat(cfg.outbox_path, &sb) != 0 && errno == ENOENT) {
        fprintf(stderr,
                "mes-producer republish: outbox '%s' does not exist (key 'outbox.path'): check "
                "the path and run republish with the producer's own configuration\n",
                cfg.outbox_path);
        goto out;
    }
    if (outbox_open(cfg.outbox_path, producer_config_db_sync(&cfg), cfg.producer_id, &ob, errstr,
                    sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "mes-producer republish: cannot open the outbox %s: %s\n", cfg.outbox_path,
                errstr);
        goto out;
    }
    if (outbox_last_seq(ob, site, &last) != IS_OK) {
        fprintf(stderr, "mes-producer republish: cannot read the outbox %s\n", cfg.outbox_path);
        goto out;
    }
    status = 2;
    if (last == 0) {
        fprintf(stderr, "mes-producer republish: site '%s' has accepted no movement in %s\n", site,
                cfg.outbox_path);
        goto out;
    }
    if ((uint64_t)to > last) {
        fprintf(stderr,
                "mes-producer republish: --to %lld is beyond site %s's last sequence %llu\n",
                (long long)to, site, (unsigned long long)last);
        goto out;
    }
    status = 1;
    if (outbox_republish(ob, site, (uint64_t)from, (uint64_t)to, &in_range, &marked, errstr,
                         sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "mes-producer republish: %s\n", errstr);
        goto out;
    }
    snprintf(a, sizeof(a), "%lld", (long long)from);
    snprintf(b, sizeof(b), "%lld", (long long)to);
    snprintf(n1, sizeof(n1), "%lld", (long long)marked);
    snprintf(n2, sizeof(n2), "%lld", (long long)(in_range - marked));
    is_log(IS_LOG_WARN, "movements marked to be published again", "site", site, "from_sequence", a,
           "to_sequence", b, "marked", n1, "still_unsent", n2, "by", by, "reason", reason, NULL);
    printf("site %s, sequences %lld..%lld: %lld movement(s) will be published again, %lld were "
           "not yet sent\n",
           site, (long long)from, (long long)to, (long long)marked, (long long)(in_range - marked));
    status = 0;
    /* Sequences are gap-free per site: a row missing from the range was
     * deleted by outbox.retention and cannot be published from here. */
    if (in_range < to - from + 1) {
        fprintf(stderr,
                "mes-producer republish: %lld movement(s) of the range are no longer in the outbox "
                "(outbox.retention deleted them): they cannot be published again from here\n",
                (long long)(to - from + 1 - in_range));
        status = 1;
    }
out:
    outbox_destroy(ob);
    producer_config_release(&cfg);
    return status;
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
    int claim = -1;

    json_arena_install(); /* before any other jansson call */
    /* Before the configuration is read: its warnings (an unknown INVSYNC_*
     * variable) name this service too. The level follows the configuration. */
    is_log_init("mes-producer", IS_LOG_INFO);
    if (argc > 1 && strcmp(argv[1], "republish") == 0)
        return republish_main(argc - 1, argv + 1);
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
        /* errstr names the file (and, inside it, the line and key) */
        fprintf(stderr, "mes-producer: policy (key 'policy.path'): %s\n", errstr);
        exit_code = 2;
        goto out;
    }
    const char *bad_key = NULL;
    if (forwarder_check_config(&cfg.kafka, &bad_key, errstr, sizeof(errstr)) != IS_OK) {
        /* Blame what set the refused key: its file line or its INVSYNC_KAFKA_* variable. */
        char key[300], src[512];
        snprintf(key, sizeof(key), "kafka.%s", bad_key ? bad_key : "");
        fprintf(stderr, "mes-producer: %s: %s\n",
                bad_key       ? is_cfg_source(&cfg.sources, key, src, sizeof(src))
                : config_path ? config_path
                              : "environment",
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

    if (is_db_claim(cfg.outbox_path, "mes-producer", &claim, errstr, sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot use the outbox", "error", errstr, NULL);
        fprintf(stderr, "mes-producer: %s\n", errstr);
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
        fo.retention_ms = cfg.outbox_retention_ms;
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
    is_db_release(claim);
    producer_metrics_destroy(metrics);
    is_policy_destroy(policy);
    producer_config_release(&cfg);
    if (exit_code == 0 && !check_only)
        is_log(IS_LOG_INFO, "stopped", NULL);
    return exit_code;
}
