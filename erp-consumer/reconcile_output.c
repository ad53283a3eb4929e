/*
 * reconcile_output.c — the results of reconcile_run (reconcile.h): the JSON
 * document, the CSV, the human summary and the node_exporter textfile.
 * Everything is read through reconcile.h's accessors.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "investigation.h"
#include "reconcile.h"

static void fmt(is_decimal_t d, char buf[IS_DECIMAL_STRLEN]) {
    is_decimal_format(is_decimal_normalize(d), buf, IS_DECIMAL_STRLEN);
}

static size_t class_count(const reconcile_t *r, reconcile_class_t c) {
    size_t n;
    is_decimal_t q;
    reconcile_summary(r, c, &n, &q);
    return n;
}

static is_decimal_t class_abs(const reconcile_t *r, reconcile_class_t c) {
    size_t n;
    is_decimal_t q;
    reconcile_summary(r, c, &n, &q);
    return q;
}

/* MES rows of sites unknown to the consumer and the ERP (reconcile_unknown_site). */
static size_t unknown_rows(const reconcile_t *r) {
    size_t total = 0, n;
    for (size_t i = 0; reconcile_unknown_site(r, i, &n); i++)
        total += n;
    return total;
}

static json_t *dec_json(is_decimal_t d) {
    char b[IS_DECIMAL_STRLEN];
    fmt(d, b);
    return json_string(b);
}

int reconcile_write_json(const reconcile_t *r, FILE *f) {
    json_t *doc = json_object(), *sum = json_object(), *diffs = json_array();
    int rc;
    for (int c = 0; c < RECONCILE__COUNT; c++)
        json_object_set_new(sum, reconcile_class_name(c),
                            json_pack("{s:I,s:o}", "count", (json_int_t)class_count(r, c),
                                      "abs_quantity", dec_json(class_abs(r, c))));
    for (size_t i = 0; i < reconcile_count(r); i++) {
        const reconcile_diff_t *d = reconcile_diff(r, i);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:s}", "class",
                              reconcile_class_name(d->cls), "site", d->site, "material",
                              d->material, "lot", d->lot, "location", d->location, "stock_status",
                              is_stock_status_name(d->status), "uom", d->uom, "mes_quantity",
                              dec_json(d->mes), "erp_uom", d->erp_uom, "erp_quantity",
                              dec_json(d->erp), "pending_quantity", dec_json(d->pending),
                              "difference", dec_json(d->difference), "explanation", d->explanation);
        json_array_append_new(diffs, o);
    }
    json_object_set_new(doc, "unexplained",
                        json_boolean(class_count(r, RECONCILE_UNEXPLAINED) > 0));
    json_object_set_new(doc, "summary", sum);
    json_object_set_new(doc, "matched", json_integer((json_int_t)reconcile_matched(r)));
    json_object_set_new(doc, "mes_rows",
                        json_integer((json_int_t)reconcile_rows(r, RECONCILE_MES)));
    json_object_set_new(doc, "erp_rows",
                        json_integer((json_int_t)reconcile_rows(r, RECONCILE_ERP)));
    json_t *unknown = json_array();
    const char *site;
    size_t n;
    for (size_t i = 0; (site = reconcile_unknown_site(r, i, &n)) != NULL; i++)
        json_array_append_new(unknown,
                              json_pack("{s:s,s:I}", "site", site, "mes_rows", (json_int_t)n));
    json_object_set_new(doc, "unknown_sites", unknown);
    json_object_set_new(doc, "differences", diffs);
    rc = json_dumpf(doc, f, JSON_INDENT(2));
    fputc('\n', f);
    json_decref(doc);
    return rc;
}

int reconcile_write_csv(const reconcile_t *r, FILE *f) {
    fputs("class,site,material,lot,location,stock_status,uom,mes_quantity,erp_uom,erp_quantity,"
          "pending_quantity,difference,explanation\n",
          f);
    for (size_t i = 0; i < reconcile_count(r); i++) {
        const reconcile_diff_t *d = reconcile_diff(r, i);
        char m[IS_DECIMAL_STRLEN], e[IS_DECIMAL_STRLEN], p[IS_DECIMAL_STRLEN], q[IS_DECIMAL_STRLEN];
        fmt(d->mes, m);
        fmt(d->erp, e);
        fmt(d->pending, p);
        fmt(d->difference, q);
        const char *v[] = {reconcile_class_name(d->cls),
                           d->site,
                           d->material,
                           d->lot,
                           d->location,
                           is_stock_status_name(d->status),
                           d->uom,
                           m,
                           d->erp_uom,
                           e,
                           p,
                           q,
                           d->explanation};
        for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
            investigation_csv_field(f, v[k]);
            fputc(k + 1 == sizeof(v) / sizeof(v[0]) ? '\n' : ',', f);
        }
    }
    return ferror(f) ? -1 : 0;
}

void reconcile_write_summary(const reconcile_t *r, FILE *f) {
    fprintf(f, "reconcile: %zu MES row(s), %zu ERP row(s), %zu key(s) agree, %zu difference(s)\n",
            reconcile_rows(r, RECONCILE_MES), reconcile_rows(r, RECONCILE_ERP),
            reconcile_matched(r), reconcile_count(r));
    for (int c = 0; c < RECONCILE__COUNT; c++) {
        char q[IS_DECIMAL_STRLEN];
        fmt(class_abs(r, c), q);
        fprintf(f, "reconcile: %-12s %6zu difference(s), absolute quantity %s\n",
                reconcile_class_name(c), class_count(r, c), q);
    }
    if (reconcile_unknown_site(r, 0, NULL)) {
        const char *site;
        size_t n;
        fprintf(f,
                "reconcile: warning: %zu MES row(s) of site(s) unknown to the consumer and the "
                "ERP, counted as unexplained:",
                unknown_rows(r));
        for (size_t i = 0; (site = reconcile_unknown_site(r, i, &n)) != NULL; i++)
            fprintf(f, "%s %s (%zu row(s))", i ? "," : "", site, n);
        fputc('\n', f);
    }
}

is_err_t reconcile_write_metrics(const reconcile_t *r, const char *path, int64_t now_ms,
                                 char *errstr, size_t errstr_size) {
    char tmp[4096];
    FILE *f;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        is_errf(errstr, errstr_size, "metrics file path is too long");
        return IS_ERR_INVALID;
    }
    f = fopen(tmp, "w");
    if (!f) {
        is_errf(errstr, errstr_size, "cannot write '%s': %s", tmp, strerror(errno));
        return IS_ERR_IO;
    }
    fputs("# HELP invsync_reconcile_differences Differences found by the last reconcile run.\n"
          "# TYPE invsync_reconcile_differences gauge\n",
          f);
    for (int c = 0; c < RECONCILE__COUNT; c++)
        fprintf(f, "invsync_reconcile_differences{class=\"%s\"} %zu\n", reconcile_class_name(c),
                class_count(r, c));
    fputs("# HELP invsync_reconcile_abs_quantity Sum of |difference| of the last run (mixed "
          "units).\n"
          "# TYPE invsync_reconcile_abs_quantity gauge\n",
          f);
    for (int c = 0; c < RECONCILE__COUNT; c++) {
        char q[IS_DECIMAL_STRLEN];
        fmt(class_abs(r, c), q);
        fprintf(f, "invsync_reconcile_abs_quantity{class=\"%s\"} %s\n", reconcile_class_name(c), q);
    }
    fprintf(f,
            "# HELP invsync_reconcile_unknown_site_rows MES rows of sites unknown to the consumer "
            "and the ERP (also counted as unexplained).\n"
            "# TYPE invsync_reconcile_unknown_site_rows gauge\n"
            "invsync_reconcile_unknown_site_rows %zu\n",
            unknown_rows(r));
    fprintf(f,
            "# HELP invsync_reconcile_matched Keys on which MES and ERP agree.\n"
            "# TYPE invsync_reconcile_matched gauge\n"
            "invsync_reconcile_matched %zu\n"
            "# HELP invsync_reconcile_last_run_timestamp_seconds When the last run finished.\n"
            "# TYPE invsync_reconcile_last_run_timestamp_seconds gauge\n"
            "invsync_reconcile_last_run_timestamp_seconds %" PRId64 ".%03d\n",
            reconcile_matched(r), now_ms / 1000, (int)(now_ms % 1000));
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        is_errf(errstr, errstr_size, "cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return IS_ERR_IO;
    }
    return IS_OK;
}
