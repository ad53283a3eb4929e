/*
 * main.c — erp-consumer: parse arguments, load configuration and policy,
 * wire the modules, run.
 *
 *   erp-consumer [run] --config FILE        consume, post, serve the API
 *   erp-consumer seed-erp --config FILE F   post opening stock rows (JSON) to the ERP
 *   erp-consumer on-hand --config FILE [--site S]   ERP on-hand as JSON
 *   erp-consumer status --config FILE       queue and posting state as JSON
 *   erp-consumer --help                     usage and every configuration key
 */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "consume.h"
#include "consumer_config.h"
#include "dlq.h"
#include "duration.h"
#include "genealogy.h"
#include "hash.h"
#include "log.h"
#include "policy_check.h"
#include "poster.h"
#include "reconcile.h"
#include "replay.h"
#include "store.h"

static volatile sig_atomic_t stop_flag; /* the one global: set by signals */

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: erp-consumer [run] --config FILE\n"
               "       erp-consumer seed-erp --config FILE OPENING.json\n"
               "       erp-consumer on-hand --config FILE [--site SITE]\n"
               "       erp-consumer status --config FILE\n"
               "       erp-consumer pause|resume|flush --config FILE --site S [--tier T] "
               "--by WHO --reason WHY\n"
               "       erp-consumer failed [list] --config FILE\n"
               "       erp-consumer failed retry|skip POSTING_ID --config FILE --by WHO "
               "--reason WHY\n"
               "       erp-consumer trace --config FILE (--movement ID | --document DOC)\n"
               "       erp-consumer audit verify --config FILE\n"
               "       erp-consumer replay --config FILE --from T1 --to T2 [--site S] [--lot L] "
               "... [--apply --by WHO --reason WHY]\n"
               "       erp-consumer genealogy --config FILE --lot LOT [--direction "
               "backward|forward|both] [--format json|dot]\n"
               "       erp-consumer reconcile --config FILE --mes MES.csv [--erp ERP.csv] "
               "[--metrics-file F]\n"
               "       (replay, genealogy, reconcile: --help for every option; "
               "docs/INVESTIGATIONS.md)\n"
               "       erp-consumer policy-check --policy NEW.yaml [--against CURRENT.yaml] "
               "[--sample movements.jsonl] [--json]\n"
               "       erp-consumer --help\n\n"
               "configuration keys (YAML; environment overrides shown):\n");
    is_cfg_print_help(consumer_config_table, CONSUMER_ENV_PREFIX, f);
    fprintf(f, "  kafka.* (any librdkafka property, e.g. kafka.bootstrap.servers)\n"
               "      environment: INVSYNC_KAFKA_BOOTSTRAP_SERVERS and so on\n");
}

static int cmd_run(consumer_config_t *cfg, is_policy_t *policy) {
    char errstr[1024];
    consumer_stats_t stats;
    store_t *store = NULL;
    dlq_t *dlq = NULL;
    poster_t *poster = NULL;
    consume_t *consume = NULL;
    api_t *api = NULL;
    int status = 1;

    memset(&stats, 0, sizeof(stats));
    pthread_mutex_init(&stats.lag_mu, NULL);
    if (store_open(cfg->store_path, consumer_config_store_sync(cfg), &store, errstr,
                   sizeof(errstr)) != IS_OK ||
        dlq_new(&cfg->kafka, is_policy_topic_prefix(policy), &dlq, errstr, sizeof(errstr)) !=
            IS_OK ||
        poster_new(cfg, policy, dlq, &stats, &poster, errstr, sizeof(errstr)) != IS_OK ||
        consume_new(cfg, policy, store, dlq, &stats, poster_wake, poster, &consume, errstr,
                    sizeof(errstr)) != IS_OK ||
        api_start(cfg, policy, &stats, &api, errstr, sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot start", "error", errstr, NULL);
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        goto out;
    }
    if (poster_start(poster) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot start the poster thread", NULL);
        goto out;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)api_port(api));
    is_log(IS_LOG_INFO, "erp-consumer running", "consumer_id", cfg->consumer_id, "http_port", port,
           "erp", cfg->erp.adapter, "policy_version", is_policy_version(policy), NULL);
    status = consume_run(consume, &stop_flag) == IS_OK ? 0 : 1;
    is_log(IS_LOG_INFO, "stopping", NULL);
out:
    api_stop(api);
    if (poster)
        poster_stop(poster);
    consume_destroy(consume);
    poster_destroy(poster);
    dlq_destroy(dlq);
    store_close(store);
    return status;
}

/* Opening stock rows → one ADJUSTMENT posting, referenced by the file's hash (idempotent). */
static int cmd_seed(consumer_config_t *cfg, const char *file) {
    char errstr[1024], hex[IS_SHA256_HEX_LEN + 1], posting_id[40];
    json_error_t jerr;
    json_t *rows = json_load_file(file, 0, &jerr), *row;
    size_t n, i;
    erp_t *erp = NULL;
    is_movement_t *ms = NULL;
    Invsync__V1__Decimal *qs = NULL;
    erp_line_t *lines = NULL;
    int status = 2;

    if (!rows || !json_is_array(rows)) {
        fprintf(stderr, "erp-consumer: %s: %s\n", file,
                rows ? "expected a JSON array of on-hand rows" : jerr.text);
        goto out;
    }
    if (is_sha256_file_hex(file, hex, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        goto out;
    }
    n = json_array_size(rows);
    ms = calloc(n ? n : 1, sizeof(*ms));
    qs = calloc(n ? n : 1, sizeof(*qs));
    lines = calloc(n ? n : 1, sizeof(*lines));
    if (!ms || !qs || !lines) {
        fprintf(stderr, "erp-consumer: out of memory\n");
        goto out;
    }
    json_array_foreach(rows, i, row) {
        const char *keys[] = {"site", "material", "lot", "location", "uom", "quantity"};
        const char *v[6];
        for (int k = 0; k < 6; k++) {
            v[k] = json_string_value(json_object_get(row, keys[k]));
            if (!v[k] || !*v[k]) {
                fprintf(stderr, "erp-consumer: %s: row %zu: '%s' is missing or not a string\n",
                        file, i, keys[k]);
                goto out;
            }
        }
        is_decimal_t q;
        if (is_decimal_parse(v[5], strlen(v[5]), IS_DECIMAL_MAX_SCALE, &q, errstr,
                             sizeof(errstr)) != IS_OK) {
            fprintf(stderr, "erp-consumer: %s: row %zu: quantity '%s': %s\n", file, i, v[5],
                    errstr);
            goto out;
        }
        const char *st = json_string_value(json_object_get(row, "stock_status"));
        invsync__v1__movement__init(&ms[i]);
        invsync__v1__decimal__init(&qs[i]);
        qs[i].units = q.units;
        qs[i].scale = q.scale;
        ms[i].source_system = "ERP-OPENING";
        ms[i].site = (char *)v[0];
        ms[i].material = (char *)v[1];
        ms[i].lot = (char *)v[2];
        ms[i].location = (char *)v[3];
        ms[i].uom = (char *)v[4];
        ms[i].type = INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT;
        ms[i].to_status = st ? is_stock_status_parse(st) : INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
        if (ms[i].to_status == 0)
            ms[i].to_status = INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
        ms[i].reason_code = "OPENING";
        ms[i].quantity = &qs[i];
        /* Opening stock is the ERP's own, not an MES movement: no movement ids, so
         * "one document per movement" checks and traceability see only MES data. */
        ms[i].movement_id = "";
        lines[i].m = &ms[i];
        lines[i].quantity = q;
        lines[i].movement_ids = NULL;
        lines[i].n_movement_ids = 0;
    }
    if (erp_open(&cfg->erp, &erp, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        goto out;
    }
    /* One posting per site (a posting books under one site; an http-json line
     * carries none): rows in file order within each site. Each posting's
     * reference hashes the file and the site, so seeding again is a no-op. */
    status = 0;
    for (i = 0; i < n && status == 0; i++) {
        size_t k = 0;
        if (!lines[i].m)
            continue; /* booked with an earlier row's site */
        erp_line_t *site_lines = calloc(n, sizeof(*site_lines));
        if (!site_lines) {
            fprintf(stderr, "erp-consumer: out of memory\n");
            status = 2;
            break;
        }
        for (size_t j = i; j < n; j++)
            if (lines[j].m && strcmp(ms[j].site, ms[i].site) == 0) {
                site_lines[k++] = lines[j];
                if (j != i)
                    lines[j].m = NULL;
            }
        uint8_t digest[IS_SHA256_LEN];
        char site_hex[IS_SHA256_HEX_LEN + 1], key[IS_SHA256_HEX_LEN + 200];
        snprintf(key, sizeof(key), "%s\x1f%s", hex, ms[i].site);
        is_sha256(key, strlen(key), digest);
        is_hex(digest, IS_SHA256_LEN, site_hex);
        snprintf(posting_id, sizeof(posting_id), "seed-%.27s", site_hex);
        erp_posting_t p = {.posting_id = posting_id,
                           .site = ms[i].site,
                           .tier = "opening",
                           .policy_version = "",
                           .posting_time = is_clock_now_ms(NULL),
                           .lines = site_lines,
                           .n_lines = k};
        erp_result_t res;
        memset(&res, 0, sizeof(res));
        is_err_t rc = erp_post(erp, &p, &res);
        free(site_lines);
        if (rc != IS_OK) {
            fprintf(stderr, "erp-consumer: seeding the ERP for site %s failed (%s): %s\n",
                    ms[i].site, is_err_name(rc), res.message);
            status = 1;
            break;
        }
        printf("{\"site\":\"%s\",\"document\":\"%s\",\"lines\":%zu}\n", ms[i].site, res.document,
               k);
    }
    if (status != 0)
        goto out;
    status = 0;
out:
    erp_close(erp);
    free(ms);
    free(qs);
    free(lines);
    json_decref(rows);
    return status;
}

static int on_hand_row(void *opaque, const erp_on_hand_row_t *r) {
    char q[IS_DECIMAL_STRLEN];
    is_decimal_format(r->quantity, q, sizeof(q));
    json_array_append_new((json_t *)opaque,
                          json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "site", r->site, "material",
                                    r->material, "lot", r->lot, "location", r->location,
                                    "stock_status", is_stock_status_name(r->status), "uom", r->uom,
                                    "quantity", q));
    return 0;
}

static int cmd_on_hand(consumer_config_t *cfg, const char *site) {
    char errstr[1024];
    erp_t *erp = NULL;
    json_t *rows = json_array();
    int status = 1;
    if (erp_open(&cfg->erp, &erp, errstr, sizeof(errstr)) != IS_OK ||
        erp_query_on_hand(erp, site, on_hand_row, rows, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        goto out;
    }
    json_dumpf(rows, stdout, JSON_INDENT(1));
    fputc('\n', stdout);
    status = 0;
out:
    erp_close(erp);
    json_decref(rows);
    return status;
}

static int cmd_status(consumer_config_t *cfg, const is_policy_t *policy) {
    char errstr[1024];
    store_t *store = NULL;
    json_t *doc = NULL;
    if (store_open(cfg->store_path, consumer_config_store_sync(cfg), &store, errstr,
                   sizeof(errstr)) != IS_OK ||
        !(doc = api_status_json(store, policy, NULL, is_clock_now_ms(NULL), errstr,
                                sizeof(errstr)))) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        store_close(store);
        return 1;
    }
    json_dumpf(doc, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(doc);
    store_close(store);
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"site", required_argument, NULL, 's'},
                                         {"tier", required_argument, NULL, 't'},
                                         {"by", required_argument, NULL, 'b'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"movement", required_argument, NULL, 'm'},
                                         {"document", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    cli_args_t cli;
    const char *cmd = "run", *config = NULL, *site = NULL;
    char errstr[1024];
    consumer_config_t cfg;
    is_policy_t *policy = NULL;
    is_log_level_t level = IS_LOG_INFO;
    int c, status;

    /* Needs no service configuration: a policy file and a sample. */
    if (argc > 1 && strcmp(argv[1], "policy-check") == 0)
        return policy_check_main(argc - 1, argv + 1);
    /* Investigations (docs/INVESTIGATIONS.md) parse their own options. */
    if (argc > 1 && strcmp(argv[1], "replay") == 0)
        return replay_cli(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "genealogy") == 0)
        return genealogy_cli(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "reconcile") == 0)
        return reconcile_cli(argc - 1, argv + 1);
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        argc--;
        argv++;
    }
    memset(&cli, 0, sizeof(cli));
    while ((c = getopt_long(argc, argv, "c:s:t:b:r:m:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            site = cli.site = optarg;
            break;
        case 't':
            cli.tier = optarg;
            break;
        case 'b':
            cli.by = optarg;
            break;
        case 'r':
            cli.reason = optarg;
            break;
        case 'm':
            cli.movement = optarg;
            break;
        case 'd':
            cli.document = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    cli.argc = argc - optind;
    cli.argv = argv + optind;
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "seed-erp") != 0 && strcmp(cmd, "on-hand") != 0 &&
        strcmp(cmd, "status") != 0 && !cli_is_admin_command(cmd)) {
        fprintf(stderr, "erp-consumer: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "seed-erp") == 0 && optind >= argc) {
        fprintf(stderr, "erp-consumer: seed-erp needs the opening stock file\n");
        return 2;
    }
    if (consumer_config_load(&cfg, config, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        consumer_config_release(&cfg);
        return 2;
    }
    if (is_log_level_parse(cfg.log_level, &level) != IS_OK) {
        fprintf(stderr,
                "erp-consumer: %s: key 'log.level': '%s' is not debug, info, warn or error\n",
                config ? config : "configuration", cfg.log_level);
        consumer_config_release(&cfg);
        return 2;
    }
    is_log_init("erp-consumer", level);
    if (strcmp(cmd, "seed-erp") == 0) {
        status = cmd_seed(&cfg, argv[optind]);
        goto out;
    }
    if (strcmp(cmd, "on-hand") == 0) {
        status = cmd_on_hand(&cfg, site);
        goto out;
    }
    if (cli_is_admin_command(cmd)) {
        status = cli_run(cmd, &cfg, &cli);
        goto out;
    }
    if (is_policy_load(cfg.policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        status = 2;
        goto out;
    }
    if (strcmp(cmd, "status") == 0) {
        status = cmd_status(&cfg, policy);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    status = cmd_run(&cfg, policy);
out:
    is_policy_destroy(policy);
    consumer_config_release(&cfg);
    return status;
}
