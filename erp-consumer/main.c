/*
 * main.c — erp-consumer: parse arguments, load configuration and policy,
 * wire the modules, run.
 *
 *   erp-consumer [run] --config FILE        consume, post, serve the API
 *   erp-consumer --config FILE --check-config   validate configuration and policy, exit
 *   erp-consumer seed-erp --config FILE F   post opening stock rows (JSON) to the ERP
 *   erp-consumer on-hand --config FILE [--site S]   ERP on-hand as JSON
 *   erp-consumer status --config FILE       queue and posting state as JSON
 *   erp-consumer --help                     usage and every configuration key
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "consume.h"
#include "consumer_config.h"
#include "db.h"
#include "dlq.h"
#include "duration.h"
#include "genealogy.h"
#include "hash.h"
#include "investigation.h"
#include "kafka.h"
#include "log.h"
#include "movement.h"
#include "policy_check.h"
#include "poster.h"
#include "reconcile.h"
#include "replay.h"
#include "store.h"
#include "uom.h"

static volatile sig_atomic_t stop_flag; /* the one global: set by signals */

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* With keys, the whole --help; without, the commands only (after a usage
 * error, so that the error is not scrolled away by the key table). */
static void usage(FILE *f, int keys) {
    fprintf(f, "usage: erp-consumer [run] --config FILE [--check-config]\n"
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
               "backward|forward|both] [--depth N] [--format json|dot]\n"
               "       erp-consumer reconcile --config FILE --mes MES.csv [--erp ERP.csv] "
               "[--metrics-file F]\n"
               "       (replay, genealogy, reconcile: --help for every option; "
               "docs/INVESTIGATIONS.md)\n"
               "       erp-consumer policy-check --policy NEW.yaml [--against CURRENT.yaml] "
               "[--sample movements.jsonl] [--json]\n"
               "       erp-consumer --help\n"
               "  pause, resume, flush, failed, trace, audit exit 0 done; 1 nothing to act on\n"
               "  (failed retry|skip of an id that is not a failed posting, resume of what is\n"
               "  not paused, pause of what is paused, trace of an unknown movement or\n"
               "  document, audit verify finding a mismatch) or the store failed; 2 bad usage\n"
               "  or an unknown site or tier.\n");
    if (!keys) {
        fputs("(erp-consumer --help also lists the configuration keys)\n", f);
        return;
    }
    fputs("\nconfiguration keys (YAML; environment overrides shown):\n", f);
    is_cfg_print_help(consumer_config_table, CONSUMER_ENV_PREFIX, f); /* ends with kafka.* */
    fputs("\n  kafka.bootstrap.servers is required. The consumer sets "
          "group.id=invsync-erp-consumer,\n"
          "  auto.offset.reset=earliest, session.timeout.ms=10000 (an instance gone without\n"
          "  leaving the group loses its partitions after 10 s) and\n"
          "  topic.metadata.refresh.interval.ms=10000 (a new site's topics are found within\n"
          "  10 s in group mode) before applying the kafka keys, so a deployment can override\n"
          "  them.\n",
          f);
}

static int cmd_run(consumer_config_t *cfg, is_policy_t *policy) {
    char errstr[1024];
    consumer_stats_t stats;
    store_t *store = NULL;
    dlq_t *dlq = NULL;
    poster_t *poster = NULL;
    consume_t *consume = NULL;
    api_t *api = NULL;
    int status = 1, claim = -1;

    memset(&stats, 0, sizeof(stats));
    pthread_mutex_init(&stats.lag_mu, NULL);
    if (is_db_claim(cfg->store_path, "erp-consumer", &claim, errstr, sizeof(errstr)) != IS_OK ||
        store_open(cfg->store_path, consumer_config_store_sync(cfg), &store, errstr,
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
    if (cfg->erp.adapter && strcmp(cfg->erp.adapter, "sqlite") == 0)
        is_log(IS_LOG_WARN,
               "erp.adapter is sqlite: postings go to the embedded ledger, a stand-in for an ERP "
               "(set erp.adapter: http-json to post to a real one)",
               "ledger", cfg->erp.sqlite_path ? cfg->erp.sqlite_path : "", NULL);
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
    is_db_release(claim);
    return status;
}

/*
 * An opening row's stock_status: absent, null or "" is UNRESTRICTED, anything
 * else a StockStatus name in any case (as `reconcile` reads its CSV column).
 * 0 for a value that names no status, STOCK_STATUS_UNSPECIFIED included.
 */
static int seed_status_parse(const char *s) {
    char up[48];
    size_t i;
    if (!*s)
        return INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
    for (i = 0; s[i] && i < sizeof(up) - 1; i++)
        up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    if (s[i])
        return 0; /* longer than any name */
    up[i] = '\0';
    return is_stock_status_parse(up);
}

/* "UNRESTRICTED, QUALITY, BLOCKED": every status a row may name, from the .proto. */
static void seed_status_names(char *buf, size_t size) {
    const ProtobufCEnumDescriptor *d = &invsync__v1__stock_status__descriptor;
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_values && used < size; i++) {
        if (d->values[i].value == 0)
            continue;
        int w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", d->values[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/*
 * A row's canonical form: material, lot, location, uom, status name and the
 * quantity without trailing fractional zeros, each length-prefixed so no
 * value can run into the next. The site is not in it: references are per site.
 * Returns a malloc'd string or NULL when out of memory.
 */
static char *seed_canonical_row(const char *const v[6], int status, is_decimal_t q) {
    char qs[IS_DECIMAL_STRLEN];
    const char *f[6];
    size_t size = 1;
    is_decimal_format(is_decimal_normalize(q), qs, sizeof(qs));
    f[0] = v[1];
    f[1] = v[2];
    f[2] = v[3];
    f[3] = v[4];
    f[4] = is_stock_status_name(status);
    f[5] = qs;
    for (int k = 0; k < 6; k++)
        size += strlen(f[k]) + 24;
    char *out = malloc(size), *p = out;
    if (!out)
        return NULL;
    for (int k = 0; k < 6; k++)
        p += snprintf(p, size - (size_t)(p - out), "%zu:%s", strlen(f[k]), f[k]);
    return out;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The posting reference of one site's opening rows: a hash of the site and of
 * its rows' canonical forms, sorted. The same rows give the same reference
 * whatever the file's formatting, key order or row order; different rows
 * give a different one. Sorts canon in place. 0, or -1 when out of memory.
 */
static int seed_reference(const char *site, char **canon, size_t n, char *out, size_t out_size) {
    static const char tag[] = "invsync seed-erp v2\n";
    size_t size = sizeof(tag) + strlen(site) + 24, used;
    uint8_t digest[IS_SHA256_LEN];
    char hex[IS_SHA256_HEX_LEN + 1];
    qsort(canon, n, sizeof(*canon), cmp_str);
    for (size_t i = 0; i < n; i++)
        size += strlen(canon[i]) + 1;
    char *text = malloc(size);
    if (!text)
        return -1;
    used = (size_t)snprintf(text, size, "%s%zu:%s\n", tag, strlen(site), site);
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(text + used, size - used, "%s\n", canon[i]);
    is_sha256(text, used, digest);
    free(text);
    is_hex(digest, IS_SHA256_LEN, hex);
    snprintf(out, out_size, "seed-%.27s", hex);
    return 0;
}

/*
 * The index of the top-level array element that byte position pos of file
 * falls in (counted as the rows are: from 0), or -1 when pos is outside any
 * (before the array, between rows) or the file cannot be read. Only strings
 * and nesting are followed: the file failed to parse, so the text up to pos
 * is valid JSON as far as jansson read it.
 */
static long seed_row_at(const char *file, size_t pos) {
    FILE *f = fopen(file, "rb");
    long row = -1, at = -1;
    int depth = 0, in_str = 0, esc = 0, c;
    if (!f)
        return -1;
    for (size_t i = 0; i < pos && (c = getc(f)) != EOF; i++) {
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"' || c == '{' || c == '[' || (c != ',' && c != ']' && c != '}' && c > ' ')) {
            if (depth == 1 && at < 0)
                at = ++row; /* a row begins */
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        else if (c == ',' && depth == 1)
            at = -1; /* between rows */
    }
    fclose(f);
    return depth >= 2 || (depth == 1 && at >= 0) ? at : -1;
}

/*
 * Opening stock rows → one ADJUSTMENT posting per site, referenced by the
 * canonical content of the site's rows (seed_reference), so seeding the same
 * rows again books nothing. Every row is checked before anything is posted:
 * one bad row refuses the whole file (exit 2).
 */
static int cmd_seed(consumer_config_t *cfg, const char *file) {
    char errstr[1024], hex[IS_SHA256_HEX_LEN + 1], posting_id[40], legacy_id[40];
    json_error_t jerr;
    json_t *rows = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr), *row;
    size_t n = 0, i, n_zero = 0, booked = 0;
    erp_t *erp = NULL;
    is_movement_t *ms = NULL;
    Invsync__V1__Decimal *qs = NULL;
    erp_line_t *lines = NULL, *site_lines = NULL;
    char **canon = NULL, **site_canon = NULL;
    int status = 2;

    if (!rows && jerr.line > 0) {
        /* Where: a repeated key ("duplicate object key near '"quantity"'")
         * or a syntax error, by line and by row (an export on one line). */
        long r = seed_row_at(file, (size_t)jerr.position);
        char where[48] = "";
        if (r >= 0)
            snprintf(where, sizeof(where), " row %ld:", r);
        fprintf(stderr, "erp-consumer: %s:%d:%d:%s %s; nothing was booked\n", file, jerr.line,
                jerr.column, where, jerr.text);
        goto out;
    }
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
    if (n == 0) {
        fprintf(stderr, "erp-consumer: %s: no on-hand rows: nothing to book\n", file);
        goto out;
    }
    ms = calloc(n ? n : 1, sizeof(*ms));
    qs = calloc(n ? n : 1, sizeof(*qs));
    lines = calloc(n ? n : 1, sizeof(*lines));
    canon = calloc(n ? n : 1, sizeof(*canon));
    site_lines = calloc(n ? n : 1, sizeof(*site_lines));
    site_canon = calloc(n ? n : 1, sizeof(*site_canon));
    if (!ms || !qs || !lines || !canon || !site_lines || !site_canon) {
        fprintf(stderr, "erp-consumer: out of memory\n");
        goto out;
    }
    json_array_foreach(rows, i, row) {
        const char *keys[] = {"site", "material", "lot", "location", "uom", "quantity"};
        const char *v[6], *key;
        json_t *val;
        if (!json_is_object(row)) {
            fprintf(stderr, "erp-consumer: %s: row %zu: expected an object; nothing was booked\n",
                    file, i);
            goto out;
        }
        /* A misspelt key would be ignored and its row booked with a default
         * (stock_satus: BLOCKED booked as unrestricted). */
        json_object_foreach(row, key, val) {
            int known = strcmp(key, "stock_status") == 0;
            for (int k = 0; k < 6 && !known; k++)
                known = strcmp(key, keys[k]) == 0;
            if (!known) {
                fprintf(stderr,
                        "erp-consumer: %s: row %zu: unknown key '%s' (keys: site, material, lot, "
                        "location, uom, quantity, stock_status); nothing was booked\n",
                        file, i, key);
                goto out;
            }
        }
        for (int k = 0; k < 6; k++) {
            v[k] = json_string_value(json_object_get(row, keys[k]));
            if (!v[k] || !*v[k]) {
                fprintf(stderr, "erp-consumer: %s: row %zu: '%s' is missing or not a string\n",
                        file, i, keys[k]);
                goto out;
            }
            /* The rules a movement's fields meet at ingest: the ERP and reconcile
             * see these rows beside the MES's. */
            if (k < 5 && is_movement_field_invalid(keys[k], v[k], 1, errstr, sizeof(errstr))) {
                fprintf(stderr, "erp-consumer: %s: row %zu: '%s' %s; nothing was booked\n", file, i,
                        keys[k], errstr);
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
        if (is_decimal_sign(q) < 0) {
            fprintf(stderr,
                    "erp-consumer: %s: row %zu: quantity '%s' is below zero (opening stock "
                    "is what is on hand); nothing was booked\n",
                    file, i, v[5]);
            goto out;
        }
        if (!is_movement_qty_in_range(q)) {
            fprintf(stderr,
                    "erp-consumer: %s: row %zu: quantity '%s' is out of range: at most %d digits "
                    "before the decimal point; nothing was booked\n",
                    file, i, v[5], IS_MOVEMENT_MAX_QTY_DIGITS);
            goto out;
        }
        json_t *stj = json_object_get(row, "stock_status");
        int st = INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
        if (stj && !json_is_null(stj)) {
            if (!json_is_string(stj)) {
                fprintf(stderr, "erp-consumer: %s: row %zu: 'stock_status' is not a string\n", file,
                        i);
                goto out;
            }
            st = seed_status_parse(json_string_value(stj));
            if (st == 0) {
                char names[128];
                seed_status_names(names, sizeof(names));
                fprintf(stderr,
                        "erp-consumer: %s: row %zu: stock_status '%s' is not one of %s "
                        "(any case); nothing was booked\n",
                        file, i, json_string_value(stj), names);
                goto out;
            }
        }
        canon[i] = seed_canonical_row(v, st, q);
        if (!canon[i]) {
            fprintf(stderr, "erp-consumer: out of memory\n");
            goto out;
        }
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
        ms[i].to_status = st;
        ms[i].reason_code = "OPENING";
        ms[i].quantity = &qs[i];
        /* Opening stock is the ERP's own, not an MES movement: no movement ids, so
         * "one document per movement" checks and traceability see only MES data. */
        ms[i].movement_id = "";
        /* On-hand exports list empty bins too: nothing to book for them. */
        lines[i].m = is_decimal_sign(q) == 0 ? NULL : &ms[i];
        n_zero += lines[i].m == NULL;
        lines[i].quantity = q;
        lines[i].movement_ids = NULL;
        lines[i].n_movement_ids = 0;
    }
    if (n_zero)
        fprintf(stderr, "erp-consumer: %s: %zu row(s) with quantity 0 skipped (nothing on hand)\n",
                file, n_zero);
    if (n_zero == n) {
        status = 0;
        goto out;
    }
    if (erp_open(&cfg->erp, &erp, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        goto out;
    }
    /* One posting per site (a posting books under one site; an http-json line
     * carries none): rows in file order within each site. */
    status = 0;
    for (i = 0; i < n && status == 0; i++) {
        size_t k = 0;
        if (!lines[i].m)
            continue; /* booked with an earlier row's site */
        for (size_t j = i; j < n; j++)
            if (lines[j].m && strcmp(ms[j].site, ms[i].site) == 0) {
                site_canon[k] = canon[j];
                site_lines[k++] = lines[j];
                if (j != i)
                    lines[j].m = NULL;
            }
        if (seed_reference(ms[i].site, site_canon, k, posting_id, sizeof(posting_id)) != 0) {
            fprintf(stderr, "erp-consumer: out of memory\n");
            status = 2;
            break;
        }
        erp_result_t res;
        is_err_t rc;
        /* Before v2 references, a seed was referenced by the hash of the file's
         * bytes and the site: the same file seeded by an older version must
         * not book again now that its reference is computed differently. */
        uint8_t digest[IS_SHA256_LEN];
        char legacy_hex[IS_SHA256_HEX_LEN + 1], key[IS_SHA256_HEX_LEN + 200];
        snprintf(key, sizeof(key), "%s\x1f%s", hex, ms[i].site);
        is_sha256(key, strlen(key), digest);
        is_hex(digest, IS_SHA256_LEN, legacy_hex);
        snprintf(legacy_id, sizeof(legacy_id), "seed-%.27s", legacy_hex);
        memset(&res, 0, sizeof(res));
        rc = erp_lookup_reference(erp, legacy_id, &res);
        if (rc == IS_ERR_NOT_FOUND) {
            erp_posting_t p = {.posting_id = posting_id,
                               .site = ms[i].site,
                               .tier = "opening",
                               .policy_version = "",
                               .posting_time = is_clock_now_ms(NULL),
                               .lines = site_lines,
                               .n_lines = k};
            memset(&res, 0, sizeof(res));
            rc = erp_post(erp, &p, &res);
        }
        if (rc != IS_OK) {
            fprintf(stderr, "erp-consumer: %s: the opening posting of site %s: %s: %s\n", file,
                    ms[i].site,
                    rc == IS_ERR_PERMANENT ? "the ERP refused it" : "the ERP could not be asked",
                    res.message);
            if (booked > 0)
                fprintf(stderr,
                        "erp-consumer: the sites printed above were booked; correct the file "
                        "and run it again: rows already booked are not booked twice\n");
            status = 1;
            break;
        }
        printf("{\"site\":\"%s\",\"document\":\"%s\",\"lines\":%zu}\n", ms[i].site, res.document,
               k);
        booked++;
    }
out:
    erp_close(erp);
    for (i = 0; canon && i < n; i++)
        free(canon[i]);
    free(canon);
    free(site_canon);
    free(site_lines);
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
    json_dumpf(rows, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(15));
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
    if (store_open_existing(cfg->store_path, consumer_config_store_sync(cfg), &store, errstr,
                            sizeof(errstr)) != IS_OK ||
        !(doc = api_status_json(store, policy, NULL, cfg->store_retention_ms, is_clock_now_ms(NULL),
                                errstr, sizeof(errstr)))) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        store_close(store);
        return 1;
    }
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    fputc('\n', stdout);
    json_decref(doc);
    store_close(store);
    return 0;
}

/*
 * What start-up would refuse only after opening (creating, migrating) the store:
 * every kafka.* property as librdkafka reads it, the ERP adapter's name and the
 * conversions table. 0, or 2 with the error on stderr naming where the value came from.
 */
static int check_before_store(const consumer_config_t *cfg, const char *config_path) {
    char errstr[1024], key[300], src[512];
    const char *where = config_path ? config_path : "environment";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int status = 2;

    for (size_t i = 0; i < cfg->kafka.n; i++)
        if (is_kafka_conf_set(conf, cfg->kafka.keys[i], cfg->kafka.vals[i], errstr,
                              sizeof(errstr)) != IS_OK) {
            snprintf(key, sizeof(key), "kafka.%s", cfg->kafka.keys[i]);
            fprintf(stderr, "erp-consumer: %s: %s\n",
                    is_cfg_source(&cfg->sources, key, src, sizeof(src)), errstr);
            goto out;
        }
    /* The adapters erp_open knows (erp.c); opening one would create or reach the ERP. */
    if (strcmp(cfg->erp.adapter, "sqlite") != 0 && strcmp(cfg->erp.adapter, "http-json") != 0) {
        fprintf(stderr, "erp-consumer: %s: key 'erp.adapter': '%s' is not sqlite or http-json\n",
                where, cfg->erp.adapter);
        goto out;
    }
    if (cfg->uom_path && *cfg->uom_path) {
        uom_table_t *uom = NULL;
        if (uom_load(cfg->uom_path, &uom, errstr, sizeof(errstr)) != IS_OK) {
            fprintf(stderr, "erp-consumer: %s: %s\n",
                    is_cfg_source(&cfg->sources, "uom.conversions", src, sizeof(src)), errstr);
            goto out;
        }
        uom_free(uom);
    }
    status = 0;
out:
    rd_kafka_conf_destroy(conf);
    return status;
}

/*
 * --check-config: what the service would refuse at start-up, checked without
 * connecting to Kafka or the ERP (the configuration itself was loaded by the
 * caller): the policy file, every kafka.* property as librdkafka reads it,
 * the ERP adapter's name, and poster.time_ordered_ids_from against what an
 * existing store recorded (read-only). Exit 0 and "configuration ok", or 2.
 */
static int cmd_check_config(const consumer_config_t *cfg, const char *config_path) {
    char errstr[1024], src[512];
    is_policy_t *policy = NULL;
    int status = 2;

    if (is_policy_load(cfg->policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: policy (key 'policy.path'): %s\n", errstr);
        goto out;
    }
    if (check_before_store(cfg, config_path) != 0)
        goto out;
    /* The one setting the store pins (store.h): refused at start-up when a
     * movement between the recorded and the configured cut-over was posted. */
    if (cfg->store_path && *cfg->store_path &&
        store_check_time_ordered_ids_from(cfg->store_path,
                                          cfg->time_ordered_ids_from && *cfg->time_ordered_ids_from
                                              ? cfg->time_ordered_ids_from_ms
                                              : INT64_MAX,
                                          errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s: %s\n",
                is_cfg_source(&cfg->sources, "poster.time_ordered_ids_from", src, sizeof(src)),
                errstr);
        goto out;
    }
    printf("configuration ok (policy %s)\n", is_policy_version(policy));
    status = 0;
out:
    is_policy_destroy(policy);
    return status;
}

static int run_command(int argc, char **argv);

/* The long name of the option whose getopt letter is c. */
static const char *option_name(const struct option *opts, int c) {
    for (; opts->name; opts++)
        if (opts->val == c)
            return opts->name;
    return "?";
}

/* The options (getopt letters) a command takes; sub is its first operand ("" when none). */
static const char *command_options(const char *cmd, const char *sub) {
    if (strcmp(cmd, "run") == 0)
        return "cK";
    if (strcmp(cmd, "on-hand") == 0)
        return "cs";
    if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 || strcmp(cmd, "flush") == 0)
        return "cstbr";
    if (strcmp(cmd, "failed") == 0)
        return strcmp(sub, "retry") == 0 || strcmp(sub, "skip") == 0 ? "cbr" : "c";
    if (strcmp(cmd, "trace") == 0)
        return "cmd";
    return "c"; /* seed-erp, status, audit */
}

/* How many words a command takes after its options: seed-erp its file, `failed
 * retry|skip` the posting id, `failed list` and `audit verify` their verb. */
static size_t command_operands(const char *cmd, const char *sub) {
    if (strcmp(cmd, "seed-erp") == 0 || strcmp(cmd, "audit") == 0)
        return 1;
    if (strcmp(cmd, "failed") == 0)
        return strcmp(sub, "retry") == 0 || strcmp(sub, "skip") == 0 ? 2 : 1;
    return 0;
}

/*
 * The commands write their results to stdout, often into a file that a
 * scheduler keeps (`reconcile … > report.json`, `replay … > day.jsonl`): an
 * output that could not be written in full (a full disk, a closed pipe) must
 * not end in a status that says the report is there. 0 and 3 (a result was
 * written) become 1; a status that already says something failed stays.
 */
static int output_status(int status) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return status;
    fprintf(stderr, "erp-consumer: cannot write the output (stdout): %s\n",
            errno ? strerror(errno) : "write error");
    return status == 0 || status == 3 ? 1 : status;
}

int main(int argc, char **argv) {
    /* Before the configuration is read: its warnings (an unknown INVSYNC_*
     * variable) name this service too. run_command sets the level later. */
    is_log_init("erp-consumer", IS_LOG_INFO);
    return output_status(run_command(argc, argv));
}

static int run_command(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"site", required_argument, NULL, 's'},
        {"tier", required_argument, NULL, 't'},     {"by", required_argument, NULL, 'b'},
        {"reason", required_argument, NULL, 'r'},   {"movement", required_argument, NULL, 'm'},
        {"document", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
        {"check-config", no_argument, NULL, 'K'},   {NULL, 0, NULL, 0}};
    cli_args_t cli;
    const char *cmd = "run", *config = NULL, *site = NULL;
    char errstr[1024];
    consumer_config_t cfg;
    is_policy_t *policy = NULL;
    is_log_level_t level = IS_LOG_INFO;
    int c, status, check_only = 0;
    char given[16] = ""; /* the options given, as their getopt letters */

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
    char prefix[64];
    uint32_t seen_opts = 0;
    snprintf(prefix, sizeof(prefix), "erp-consumer: %.40s", cmd);
    while ((c = getopt_long(argc, argv, "c:s:t:b:r:m:d:h", opts, NULL)) != -1) {
        if (investigation_option_twice(prefix, opts, c, &seen_opts))
            return 2;
        if (c != '?' && c != 'h' && !strchr(given, c) && strlen(given) < sizeof(given) - 1)
            given[strlen(given)] = (char)c;
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
            usage(stdout, 1);
            return 0;
        case 'K':
            check_only = 1;
            break;
        default:
            usage(stderr, 0);
            return 2;
        }
    }
    cli.argc = argc - optind;
    cli.argv = argv + optind;
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "seed-erp") != 0 && strcmp(cmd, "on-hand") != 0 &&
        strcmp(cmd, "status") != 0 && !cli_is_admin_command(cmd)) {
        fprintf(stderr, "erp-consumer: unknown command '%s'\n", cmd);
        usage(stderr, 0);
        return 2;
    }
    if (check_only && strcmp(cmd, "run") != 0) {
        fprintf(stderr,
                "erp-consumer: --check-config checks the service's configuration: "
                "use it without a command (or with run), not with '%s'\n",
                cmd);
        return 2;
    }
    if (strcmp(cmd, "seed-erp") == 0 && optind >= argc) {
        fprintf(stderr, "erp-consumer: seed-erp needs the opening stock file\n");
        return 2;
    }
    /* An extra word or an option the command does not take is a mistake, not ignored: `pause
     * --site P1 periodic` would pause every tier, `status --site P1` show every site. */
    const char *sub = cli.argc > 0 ? cli.argv[0] : "";
    size_t max_operands = command_operands(cmd, sub);
    if ((size_t)(argc - optind) > max_operands) {
        fprintf(stderr, "erp-consumer: %s: unexpected argument '%s'\n", cmd,
                argv[optind + (int)max_operands]);
        return 2;
    }
    const char *allowed = command_options(cmd, sub);
    for (const char *g = given; *g; g++) {
        if (strchr(allowed, *g))
            continue;
        char takes[128] = "";
        for (const char *a = allowed; *a; a++)
            snprintf(takes + strlen(takes), sizeof(takes) - strlen(takes), "%s--%s",
                     a == allowed ? "" : ", ", option_name(opts, *a));
        fprintf(stderr, "erp-consumer: %s%s%s: option '--%s' does not apply to it (it takes %s)\n",
                cmd, *sub && strcmp(cmd, "failed") == 0 ? " " : "",
                strcmp(cmd, "failed") == 0 ? sub : "", option_name(opts, *g), takes);
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
    if (check_only) {
        status = cmd_check_config(&cfg, config);
        goto out;
    }
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
        fprintf(stderr, "erp-consumer: policy (key 'policy.path'): %s\n", errstr);
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
    /* A bad value must stop the start before the store is created or migrated. */
    status = check_before_store(&cfg, config);
    if (status == 0)
        status = cmd_run(&cfg, policy);
out:
    is_policy_destroy(policy);
    consumer_config_release(&cfg);
    return status;
}
