/*
 * reconcile_cli.c — the `erp-consumer reconcile` command (reconcile.h):
 * arguments, the input files, the ERP's on-hand (without --erp), what is
 * still pending in the consumer's store, the run and its output.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_config.h"
#include "db.h"
#include "duration.h"
#include "erp.h"
#include "investigation.h"
#include "policy.h"
#include "reconcile.h"
#include "store.h"

static int erp_row_cb(void *opaque, const erp_on_hand_row_t *row) {
    return reconcile_add_row(opaque, RECONCILE_ERP, row->site, row->material, row->lot,
                             row->location, row->status, row->uom, row->quantity) != IS_OK;
}

/* A movement the ERP does not have yet: its stock effects become pending (ctx: r, n). */
static is_err_t pending_cb(void *opaque, const is_movement_t *m, sqlite3_stmt *st) {
    void **ctx = opaque;
    is_err_t rc = reconcile_add_pending(ctx[0], m, (const char *)sqlite3_column_text(st, 1));
    if (rc == IS_ERR_INVALID) /* no stock effect: nothing it could explain */
        return IS_OK;
    if (rc == IS_OK)
        (*(size_t *)ctx[1])++;
    return rc;
}

/* What the consumer has not posted yet becomes pending. */
static is_err_t load_pending(reconcile_t *r, const consumer_config_t *cfg, const char *site,
                             size_t *n, char *errstr, size_t errstr_size) {
    void *ctx[2] = {r, n};
    *n = 0;
    // clang-format off
    return investigation_store_movements(
        cfg,
        /* the backlog: the two partial indexes (store.h), not the history */
        "SELECT payload, state, movement_id FROM ("
        " SELECT payload, state, movement_id, producer_id, seq FROM movements"
        "  WHERE " STORE_QUEUED " AND (?1 IS NULL OR site = ?1) UNION ALL"
        " SELECT payload, state, movement_id, producer_id, seq FROM movements"
        "  WHERE " STORE_OPEN("") " AND (?1 IS NULL OR site = ?1))"
        " ORDER BY producer_id, seq",
        NULL, 0, site, 2, pending_cb, ctx, errstr, errstr_size);
    // clang-format on
}

typedef struct site_list {
    char **v;
    size_t n;
} site_list_t;

static void site_list_release(site_list_t *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int site_list_has(const site_list_t *l, const char *site) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], site) == 0)
            return 1;
    return 0;
}

static is_err_t site_list_add(site_list_t *l, const char *site) {
    char **grown;
    if (site_list_has(l, site))
        return IS_OK;
    grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
    if (!grown)
        return IS_ERR_NOMEM;
    l->v = grown;
    if (!(l->v[l->n] = strdup(site)))
        return IS_ERR_NOMEM;
    l->n++;
    return IS_OK;
}

/* The sites the consumer has heard from (a heartbeat or a movement): the admin commands' list. */
static is_err_t load_store_sites(const consumer_config_t *cfg, site_list_t *out, char *errstr,
                                 size_t errstr_size) {
    store_t *s = NULL;
    sqlite3_stmt *st = NULL;
    is_err_t rc = store_open_existing(cfg->store_path, consumer_config_store_sync(cfg), &s, errstr,
                                      errstr_size);
    if (rc != IS_OK)
        return rc;
    rc = is_db_prepare(store_db(s), "SELECT site FROM sites ORDER BY site", &st, errstr,
                       errstr_size);
    while (rc == IS_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (v)
            rc = site_list_add(out, v);
    }
    sqlite3_finalize(st);
    store_close(s);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sites the policy names, "A, B" (or "" when none) into buf. */
static void policy_site_list(const is_policy_t *policy, char *buf, size_t size) {
    const char *named[16];
    size_t n = is_policy_site_names(policy, named, 16), used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < 16 && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", named[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    if (n > 16 && used < size)
        snprintf(buf + used, size - used, ", ...");
}

/*
 * Refuse --site SITE when neither the store, the ERP nor the policy knows it, naming the sites
 * that exist. A site the policy names is accepted before its first movement (adding a site: its
 * opening stock is compared before it sends anything), as the admin commands accept it.
 */
static int site_unknown(reconcile_t *r, erp_t *erp, site_list_t *known, const char *policy_path,
                        const char *site) {
    char list[1024] = "", named[512] = "", errstr[512];
    size_t used = 0;
    const char *v;
    is_policy_t *policy = NULL;
    if (site_list_has(known, site) || reconcile_rows(r, RECONCILE_ERP) > 0)
        return 0;
    if (policy_path && is_policy_load(policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: cannot check --site '%s' against the policy: %s\n",
                site, errstr);
        return 1;
    }
    if (is_policy_names_site(policy, site)) {
        is_policy_destroy(policy);
        return 0;
    }
    policy_site_list(policy, named, sizeof(named));
    is_policy_destroy(policy);
    /* The ERP was asked for this site only: ask it for all, for the list. The rows of other
     * sites stay out (the site filter); only their site names are kept. */
    if (erp && erp_query_on_hand(erp, NULL, erp_row_cb, r, errstr, sizeof(errstr)) != IS_OK)
        fprintf(stderr, "erp-consumer reconcile: cannot list the ERP's sites: %s\n", errstr);
    for (size_t i = 0; (v = reconcile_site_seen(r, RECONCILE_ERP, i)) != NULL; i++)
        if (site_list_add(known, v) != IS_OK)
            break;
    qsort(known->v, known->n, sizeof(*known->v), cmp_str);
    for (size_t i = 0; i < known->n && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", known->v[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    if (known->n)
        fprintf(stderr,
                "erp-consumer reconcile: unknown site '%s': the sites are %s (heard from by the "
                "consumer or with stock in the ERP); %s%s\n",
                site, list, named[0] ? "the policy names " : "the policy names no site", named);
    else
        fprintf(stderr,
                "erp-consumer reconcile: unknown site '%s': no site has sent a heartbeat or "
                "movement yet and the ERP has no stock; %s%s\n",
                site, named[0] ? "the policy names " : "the policy names no site", named);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: erp-consumer reconcile --config FILE --mes MES.csv [--erp ERP.csv]\n"
               "           [--site SITE] [--format json|csv] [--uom-factors UOM.csv]\n"
               "           [--metrics-file FILE.prom]\n"
               "  CSV columns: site,material,lot,location,stock_status,uom,quantity\n"
               "  (a JSON array of such objects is accepted too); without --erp the ERP\n"
               "  adapter's on-hand query is used. Exit: 0 no unexplained drift, 3\n"
               "  unexplained drift (rows of a site nobody knows included), 2 bad input\n"
               "  (an empty MES snapshot, a --site neither the store, the ERP nor the\n"
               "  policy knows), 1 store or ERP unavailable.\n");
}

int reconcile_cli(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"mes", required_argument, NULL, 'M'},
                                         {"erp", required_argument, NULL, 'E'},
                                         {"site", required_argument, NULL, 's'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"uom-factors", required_argument, NULL, 'u'},
                                         {"metrics-file", required_argument, NULL, 'm'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL, *mes = NULL, *erp_file = NULL, *site = NULL, *format = "json",
               *factors = NULL, *metrics = NULL;
    char errstr[1024];
    consumer_config_t cfg;
    reconcile_t *r = NULL;
    erp_t *erp = NULL;
    site_list_t known = {0};
    size_t n_pending = 0, unexplained = 0;
    is_decimal_t unexplained_qty;
    int c, status = 2;
    uint32_t seen_opts = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        if (investigation_option_twice("erp-consumer reconcile", opts, c, &seen_opts))
            return 2;
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'M':
            mes = optarg;
            break;
        case 'E':
            erp_file = optarg;
            break;
        case 's':
            site = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 'u':
            factors = optarg;
            break;
        case 'm':
            metrics = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "erp-consumer reconcile: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!mes || optind < argc || (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0)) {
        fprintf(stderr, "erp-consumer reconcile: %s\n",
                !mes            ? "--mes FILE (the MES on-hand snapshot) is required"
                : optind < argc ? "unexpected argument"
                                : "--format must be json or csv");
        usage(stderr);
        return 2;
    }
    if (investigation_load_config("reconcile", config, &cfg) != 0)
        return 2;
    if (reconcile_new(&r) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: out of memory\n");
        status = 1;
        goto out;
    }
    reconcile_set_site(r, site);
    if (cfg.uom_path && *cfg.uom_path) {
        if (reconcile_load_file(r, RECONCILE_FILE_CONVERSIONS, cfg.uom_path, errstr,
                                sizeof(errstr)) != IS_OK) {
            fprintf(stderr, "erp-consumer reconcile: uom.conversions: %s\n", errstr);
            goto out;
        }
        fprintf(stderr, "reconcile: MES quantities converted to ERP units with '%s' (as posted)\n",
                cfg.uom_path);
    }
    if ((factors && reconcile_load_file(r, RECONCILE_FILE_FACTORS, factors, errstr,
                                        sizeof(errstr)) != IS_OK) ||
        reconcile_load_file(r, RECONCILE_MES, mes, errstr, sizeof(errstr)) != IS_OK ||
        (erp_file &&
         reconcile_load_file(r, RECONCILE_ERP, erp_file, errstr, sizeof(errstr)) != IS_OK)) {
        fprintf(stderr, "erp-consumer reconcile: %s\n", errstr);
        goto out;
    }
    status = 1;
    if (!erp_file &&
        (erp_open(&cfg.erp, &erp, errstr, sizeof(errstr)) != IS_OK ||
         erp_query_on_hand(erp, site, erp_row_cb, r, errstr, sizeof(errstr)) != IS_OK)) {
        fprintf(stderr, "erp-consumer reconcile: cannot read the ERP on-hand: %s\n", errstr);
        goto out;
    }
    if (load_store_sites(&cfg, &known, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: cannot read the sites from '%s': %s\n",
                cfg.store_path, errstr);
        goto out;
    }
    if (site && site_unknown(r, erp, &known, cfg.policy_path, site)) {
        status = 2;
        goto out;
    }
    if (reconcile_check_inputs(r, mes, erp_file, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: %s\n", errstr);
        status = 2;
        goto out;
    }
    if (reconcile_rows(r, RECONCILE_MES) == 0)
        fprintf(stderr, "reconcile: no on-hand rows on either side%s%s: nothing to compare\n",
                site ? " for site " : "", site ? site : "");
    if (reconcile_set_known_sites(r, (const char *const *)known.v, known.n) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: out of memory\n");
        goto out;
    }
    if (load_pending(r, &cfg, site, &n_pending, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: cannot read pending movements from '%s': %s\n",
                cfg.store_path, errstr);
        goto out;
    }
    if (reconcile_run(r, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: %s\n", errstr);
        goto out;
    }
    if (strcmp(format, "csv") == 0)
        reconcile_write_csv(r, stdout);
    else
        reconcile_write_json(r, stdout);
    fflush(stdout);
    fprintf(stderr, "reconcile: %zu movement(s) pending in the consumer store\n", n_pending);
    reconcile_write_summary(r, stderr);
    if (metrics && reconcile_write_metrics(r, metrics, is_clock_now_ms(NULL), errstr,
                                           sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: %s\n", errstr);
        goto out;
    }
    reconcile_summary(r, RECONCILE_UNEXPLAINED, &unexplained, &unexplained_qty);
    status = unexplained > 0 ? 3 : 0;
out:
    erp_close(erp);
    reconcile_free(r);
    site_list_release(&known);
    consumer_config_release(&cfg);
    return status;
}
