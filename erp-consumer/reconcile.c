/*
 * reconcile.c — compare MES and ERP on-hand and classify each difference
 * (see reconcile.h for the classes and the input formats).
 *
 * All rows (MES, ERP, pending) go into one array, are sorted by key once
 * and summed per (key, side); then the keys are walked in order, so that
 * everything one classification needs (the other units of a key, the other
 * statuses of a lot/location, the lot's presence on each side) is a
 * contiguous run. Load: O(n log n) in the number of rows; in memory.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "consumer_config.h"
#include "db.h"
#include "duration.h"
#include "erp.h"
#include "log.h"
#include "reconcile.h"
#include "store.h"

#define SIDE_PENDING   2
#define MAX_FILE_BYTES (1LL << 30) /* a snapshot larger than 1 GiB is a mistake */
#define MAX_COLS       64

typedef struct row {
    char *site, *material, *lot, *location, *uom; /* owned */
    int status;
    int side; /* RECONCILE_MES, RECONCILE_ERP or SIDE_PENDING */
    is_decimal_t qty;
    size_t n_movements; /* pending: movements summed here */
    char ids[160];      /* pending: the first movement ids and their states */
} row_t;

/* One key (site, material, lot, location, status, uom) with both sides summed. */
typedef struct rec {
    const row_t *key; /* a row carrying the key's strings */
    is_decimal_t mes, erp, pending;
    int has_mes, has_erp; /* a non-zero row exists */
    row_t *pend_row;      /* pending detail, or NULL */
    int cls;              /* -1 while unclassified; -2 matched; -3 merged into another */
    const char *erp_uom;
    char explanation[320];
} rec_t;

typedef struct factor {
    char *material; /* NULL: every material */
    char *from, *to;
    is_decimal_t f;
    int convert; /* a configured MES → ERP conversion: MES and pending rows are converted */
} factor_t;

struct reconcile {
    char *site; /* filter, or NULL */
    row_t *rows;
    size_t n_rows, cap_rows;
    size_t n_side[2];
    factor_t *factors;
    size_t n_factors;
    rec_t *recs;
    size_t n_recs;
    reconcile_diff_t *diffs;
    size_t n_diffs, matched;
    size_t count[RECONCILE__COUNT];
    is_decimal_t abs_qty[RECONCILE__COUNT];
    int ran;
};

static const char *const class_names[RECONCILE__COUNT] = {
    [RECONCILE_UNEXPLAINED] = "unexplained",
    [RECONCILE_PENDING] = "pending",
    [RECONCILE_SIGN] = "sign",
    [RECONCILE_UOM] = "uom",
    [RECONCILE_STATUS] = "status",
    [RECONCILE_MISSING_LOT] = "missing-lot",
};

const char *reconcile_class_name(reconcile_class_t c) {
    return c >= 0 && c < RECONCILE__COUNT ? class_names[c] : "?";
}

static const struct {
    const char *from, *to, *factor;
} builtin_factors[] = {
    {"KG", "G", "1000"}, {"G", "MG", "1000"}, {"T", "KG", "1000"}, {"L", "ML", "1000"},
    {"M", "CM", "100"},  {"M", "MM", "1000"}, {"CM", "MM", "10"},  {"DZ", "EA", "12"},
};

is_err_t reconcile_new(reconcile_t **out) {
    reconcile_t *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return IS_ERR_NOMEM;
    for (size_t i = 0; i < sizeof(builtin_factors) / sizeof(builtin_factors[0]); i++) {
        is_decimal_t f;
        if (is_decimal_parse(builtin_factors[i].factor, strlen(builtin_factors[i].factor), 18, &f,
                             NULL, 0) != IS_OK ||
            reconcile_add_factor(r, NULL, builtin_factors[i].from, builtin_factors[i].to, f) !=
                IS_OK) {
            reconcile_free(r);
            return IS_ERR_NOMEM;
        }
    }
    *out = r;
    return IS_OK;
}

void reconcile_free(reconcile_t *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_rows; i++) {
        free(r->rows[i].site);
        free(r->rows[i].material);
        free(r->rows[i].lot);
        free(r->rows[i].location);
        free(r->rows[i].uom);
    }
    for (size_t i = 0; i < r->n_factors; i++) {
        free(r->factors[i].material);
        free(r->factors[i].from);
        free(r->factors[i].to);
    }
    free(r->factors);
    free(r->rows);
    free(r->recs);
    free(r->diffs);
    free(r->site);
    free(r);
}

void reconcile_set_site(reconcile_t *r, const char *site) {
    free(r->site);
    r->site = site && *site ? strdup(site) : NULL;
}

static row_t *push_row(reconcile_t *r, int side, const char *site, const char *material,
                       const char *lot, const char *location, int status, const char *uom,
                       is_decimal_t qty) {
    row_t *x;
    if (r->n_rows == r->cap_rows) {
        size_t cap = r->cap_rows ? r->cap_rows * 2 : 256;
        row_t *rows = realloc(r->rows, cap * sizeof(*rows));
        if (!rows)
            return NULL;
        r->rows = rows;
        r->cap_rows = cap;
    }
    x = &r->rows[r->n_rows];
    memset(x, 0, sizeof(*x));
    x->site = strdup(site ? site : "");
    x->material = strdup(material ? material : "");
    x->lot = strdup(lot ? lot : "");
    x->location = strdup(location ? location : "");
    x->uom = strdup(uom ? uom : "");
    if (!x->site || !x->material || !x->lot || !x->location || !x->uom) {
        free(x->site);
        free(x->material);
        free(x->lot);
        free(x->location);
        free(x->uom);
        return NULL;
    }
    x->status = status ? status : INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
    x->side = side;
    x->qty = qty;
    r->n_rows++;
    return x;
}

is_err_t reconcile_add_row(reconcile_t *r, reconcile_side_t side, const char *site,
                           const char *material, const char *lot, const char *location, int status,
                           const char *uom, is_decimal_t qty) {
    if (r->site && strcmp(r->site, site ? site : "") != 0)
        return IS_OK;
    if (!push_row(r, (int)side, site, material, lot, location, status, uom, qty))
        return IS_ERR_NOMEM;
    r->n_side[side]++;
    return IS_OK;
}

is_err_t reconcile_add_pending(reconcile_t *r, const is_movement_t *m, const char *state) {
    is_stock_effect_t eff[4];
    size_t n = is_movement_effects(m, eff);
    if (n == 0)
        return IS_ERR_INVALID;
    if (r->site && strcmp(r->site, m->site) != 0)
        return IS_OK;
    for (size_t i = 0; i < n; i++) {
        row_t *x = push_row(r, SIDE_PENDING, m->site, m->material, m->lot, eff[i].location,
                            eff[i].status, m->uom, eff[i].delta);
        if (!x)
            return IS_ERR_NOMEM;
        x->n_movements = 1;
        snprintf(x->ids, sizeof(x->ids), "%s (%s)", m->movement_id, state ? state : "pending");
    }
    return IS_OK;
}

static is_err_t add_factor(reconcile_t *r, const char *material, const char *from_uom,
                           const char *to_uom, is_decimal_t factor, int convert) {
    factor_t *fs = realloc(r->factors, (r->n_factors + 1) * sizeof(*fs));
    factor_t *f;
    if (!fs)
        return IS_ERR_NOMEM;
    r->factors = fs;
    f = &fs[r->n_factors];
    f->material = material && *material && strcmp(material, "*") != 0 ? strdup(material) : NULL;
    f->from = strdup(from_uom);
    f->to = strdup(to_uom);
    f->f = factor;
    f->convert = convert;
    if (!f->from || !f->to || (material && *material && strcmp(material, "*") && !f->material)) {
        free(f->material);
        free(f->from);
        free(f->to);
        return IS_ERR_NOMEM;
    }
    r->n_factors++;
    return IS_OK;
}

is_err_t reconcile_add_factor(reconcile_t *r, const char *material, const char *from_uom,
                              const char *to_uom, is_decimal_t factor) {
    return add_factor(r, material, from_uom, to_uom, factor, 0);
}

is_err_t reconcile_add_conversion(reconcile_t *r, const char *material, const char *mes_uom,
                                  const char *erp_uom, is_decimal_t factor) {
    return add_factor(r, material, mes_uom, erp_uom, factor, 1);
}

/* The configured conversion of a MES unit for a material (its own row wins), or NULL. */
static const factor_t *conversion_of(const reconcile_t *r, const char *material, const char *uom) {
    const factor_t *any = NULL;
    for (size_t i = 0; i < r->n_factors; i++) {
        const factor_t *f = &r->factors[i];
        if (!f->convert || strcmp(f->from, uom) != 0)
            continue;
        if (f->material && strcmp(f->material, material) == 0)
            return f;
        if (!f->material && !any)
            any = f;
    }
    return any;
}

/* MES and pending quantities into the ERP's units, as the poster converts them. */
static is_err_t convert_rows(reconcile_t *r, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < r->n_rows; i++) {
        row_t *x = &r->rows[i];
        const factor_t *f;
        char *uom;
        if (x->side == RECONCILE_ERP || !(f = conversion_of(r, x->material, x->uom)))
            continue;
        if (is_decimal_mul(x->qty, f->f, IS_DECIMAL_MAX_SCALE, &x->qty) != IS_OK) {
            is_errf(errstr, errstr_size,
                    "a quantity in %s of %s/%s does not convert exactly into %s", x->uom,
                    x->material, x->lot, f->to);
            return IS_ERR_OVERFLOW;
        }
        uom = strdup(f->to);
        if (!uom)
            return IS_ERR_NOMEM;
        free(x->uom);
        x->uom = uom;
    }
    return IS_OK;
}

/* ---- classification ------------------------------------------------------ */

static int cmp_key(const row_t *a, const row_t *b, int upto) {
    int c = strcmp(a->site, b->site);
    if (c || upto == 1)
        return c;
    if ((c = strcmp(a->material, b->material)) || upto == 2)
        return c;
    if ((c = strcmp(a->lot, b->lot)) || upto == 3)
        return c;
    if ((c = strcmp(a->location, b->location)) || upto == 4)
        return c;
    if ((c = (a->status > b->status) - (a->status < b->status)) || upto == 5)
        return c;
    return strcmp(a->uom, b->uom);
}

static int cmp_rows(const void *pa, const void *pb) {
    const row_t *a = pa, *b = pb;
    int c = cmp_key(a, b, 6);
    return c ? c : a->side - b->side;
}

static int dec_add(is_decimal_t *acc, is_decimal_t v) {
    return is_decimal_add(*acc, v, acc) == IS_OK ? 0 : -1;
}

static int dec_eq(is_decimal_t a, is_decimal_t b) {
    return is_decimal_cmp(a, b) == 0;
}

static void fmt(is_decimal_t d, char buf[IS_DECIMAL_STRLEN]) {
    is_decimal_format(is_decimal_normalize(d), buf, IS_DECIMAL_STRLEN);
}

static int factor_applies(const factor_t *f, const char *material) {
    return !f->material || strcmp(f->material, material) == 0;
}

/* a × f == b exactly. */
static int times_is(is_decimal_t a, is_decimal_t f, is_decimal_t b) {
    is_decimal_t p;
    return is_decimal_mul(a, f, IS_DECIMAL_MAX_SCALE, &p) == IS_OK && dec_eq(p, b);
}

/* Same unit: is erp (adjusted) the MES quantity scaled by a factor of the unit? */
static int uom_same_unit(const reconcile_t *r, rec_t *x, is_decimal_t erp) {
    char f[IS_DECIMAL_STRLEN];
    for (size_t i = 0; i < r->n_factors; i++) {
        const factor_t *fa = &r->factors[i];
        const char *other;
        if (!factor_applies(fa, x->key->material) || dec_eq(fa->f, (is_decimal_t){1, 0}))
            continue;
        if (strcasecmp(fa->from, x->key->uom) == 0)
            other = fa->to;
        else if (strcasecmp(fa->to, x->key->uom) == 0)
            other = fa->from;
        else
            continue;
        fmt(fa->f, f);
        int up = times_is(x->mes, fa->f, erp);
        if (up || times_is(erp, fa->f, x->mes)) {
            snprintf(x->explanation, sizeof(x->explanation),
                     "the ERP holds the MES quantity %s %s (1 %s = %s %s): booked in the wrong "
                     "unit (%s vs %s)",
                     up ? "times" : "divided by", f, fa->from, f, fa->to, x->key->uom, other);
            return 1;
        }
    }
    return 0;
}

/* Two units: does a (MES only, unit a) convert exactly into b (ERP only, unit b)? */
static int uom_two_units(const reconcile_t *r, rec_t *a, rec_t *b, is_decimal_t erp_b) {
    char f[IS_DECIMAL_STRLEN], q1[IS_DECIMAL_STRLEN], q2[IS_DECIMAL_STRLEN];
    for (size_t i = 0; i < r->n_factors; i++) {
        const factor_t *fa = &r->factors[i];
        int direct = strcasecmp(fa->from, a->key->uom) == 0 && strcasecmp(fa->to, b->key->uom) == 0;
        int inverse =
            strcasecmp(fa->from, b->key->uom) == 0 && strcasecmp(fa->to, a->key->uom) == 0;
        if (!factor_applies(fa, a->key->material) || (!direct && !inverse))
            continue;
        if ((direct && times_is(a->mes, fa->f, erp_b)) ||
            (inverse && times_is(erp_b, fa->f, a->mes))) {
            fmt(fa->f, f);
            fmt(a->mes, q1);
            fmt(erp_b, q2);
            snprintf(a->explanation, sizeof(a->explanation),
                     "MES has %s %s, the ERP %s %s: the same quantity in another unit (1 %s = %s "
                     "%s)",
                     q1, a->key->uom, q2, b->key->uom, fa->from, f, fa->to);
            return 1;
        }
    }
    return 0;
}

/* Sum the sorted rows into one rec per key. */
static is_err_t build_recs(reconcile_t *r) {
    size_t i = 0;
    r->recs = calloc(r->n_rows ? r->n_rows : 1, sizeof(*r->recs));
    if (!r->recs)
        return IS_ERR_NOMEM;
    while (i < r->n_rows) {
        rec_t *x = &r->recs[r->n_recs++];
        size_t j = i;
        x->key = &r->rows[i];
        x->cls = -1;
        x->erp_uom = r->rows[i].uom;
        for (; j < r->n_rows && cmp_key(&r->rows[i], &r->rows[j], 6) == 0; j++) {
            row_t *y = &r->rows[j];
            is_decimal_t *acc = y->side == RECONCILE_MES   ? &x->mes
                                : y->side == RECONCILE_ERP ? &x->erp
                                                           : &x->pending;
            if (dec_add(acc, y->qty) != 0)
                return IS_ERR_OVERFLOW;
            if (y->side == SIDE_PENDING) {
                /* Fold the detail of further pending movements into the first row's. */
                if (!x->pend_row) {
                    x->pend_row = y;
                } else {
                    row_t *p = x->pend_row;
                    size_t len = strlen(p->ids), add = strlen(y->ids);
                    if (p->n_movements < 4 && len + add + 3 < sizeof(p->ids)) {
                        memcpy(p->ids + len, ", ", 2);
                        memcpy(p->ids + len + 2, y->ids, add + 1);
                    }
                    p->n_movements++;
                }
            }
        }
        x->has_mes = is_decimal_sign(x->mes) != 0;
        x->has_erp = is_decimal_sign(x->erp) != 0;
        i = j;
    }
    return IS_OK;
}

static void set_class(rec_t *x, reconcile_class_t c) {
    x->cls = (int)c;
}

static void classify_simple(reconcile_t *r, rec_t *x) {
    char a[IS_DECIMAL_STRLEN], b[IS_DECIMAL_STRLEN];
    is_decimal_t erp_adj = x->erp, neg;
    if (dec_eq(x->mes, x->erp)) {
        /* Agree (what is pending here is not in the MES snapshot either); a key
         * with nothing but pending movements is not a key of either side. */
        x->cls = x->has_mes || x->has_erp ? -2 : -3;
        return;
    }
    if (dec_add(&erp_adj, x->pending) != 0)
        return;
    if (is_decimal_sign(x->pending) != 0 && dec_eq(x->mes, erp_adj)) {
        const row_t *p = x->pend_row;
        fmt(x->pending, a);
        snprintf(x->explanation, sizeof(x->explanation),
                 "%s %s still pending in the consumer (%zu movement(s) not in the ERP yet: %s%s)",
                 a, x->key->uom, p ? p->n_movements : 0, p ? p->ids : "",
                 p && p->n_movements > 4 ? ", ..." : "");
        set_class(x, RECONCILE_PENDING);
        return;
    }
    if (is_decimal_sign(x->mes) != 0 && is_decimal_negate(x->mes, &neg) == IS_OK &&
        dec_eq(neg, erp_adj)) {
        fmt(x->mes, a);
        fmt(erp_adj, b);
        snprintf(x->explanation, sizeof(x->explanation),
                 "the ERP has %s where MES has %s: posted with the wrong sign", b, a);
        set_class(x, RECONCILE_SIGN);
        return;
    }
    if (is_decimal_sign(x->mes) != 0 && is_decimal_sign(erp_adj) != 0 &&
        uom_same_unit(r, x, erp_adj))
        set_class(x, RECONCILE_UOM);
}

static is_decimal_t erp_adjusted(const rec_t *x) {
    is_decimal_t v = x->erp;
    if (dec_add(&v, x->pending) != 0)
        return x->erp;
    return v;
}

static is_decimal_t diff_of(const rec_t *x) {
    is_decimal_t d;
    if (is_decimal_sub(x->mes, erp_adjusted(x), &d) != IS_OK)
        return (is_decimal_t){0, 0};
    return d;
}

/* Within one (site, material, lot, location, status) run: MES in one unit, ERP in another. */
static void classify_units(reconcile_t *r, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) {
        rec_t *a = &r->recs[i];
        if (a->cls != -1 || !a->has_mes || a->has_erp)
            continue;
        for (size_t j = from; j < to; j++) {
            rec_t *b = &r->recs[j];
            if (j == i || b->cls != -1 || b->has_mes || !b->has_erp)
                continue;
            if (uom_two_units(r, a, b, erp_adjusted(b))) {
                set_class(a, RECONCILE_UOM);
                a->erp = b->erp;
                a->erp_uom = b->key->uom;
                b->cls = -3;
                break;
            }
        }
    }
}

/* Within one (site, material, lot, location) run: +q in one status, -q in another, same unit. */
static void classify_status(reconcile_t *r, size_t from, size_t to) {
    char q[IS_DECIMAL_STRLEN];
    for (size_t i = from; i < to; i++) {
        rec_t *a = &r->recs[i];
        is_decimal_t da = diff_of(a), neg;
        if (a->cls != -1 || is_decimal_sign(da) <= 0 || is_decimal_negate(da, &neg) != IS_OK)
            continue;
        for (size_t j = from; j < to; j++) {
            rec_t *b = &r->recs[j];
            if (b->cls != -1 || b->key->status == a->key->status ||
                strcmp(b->key->uom, a->key->uom) != 0 || !dec_eq(diff_of(b), neg))
                continue;
            fmt(da, q);
            snprintf(a->explanation, sizeof(a->explanation),
                     "MES has %s %s more in %s, the ERP the same quantity in %s: a status change "
                     "(quarantine, release) not applied in the ERP",
                     q, a->key->uom, is_stock_status_name(a->key->status),
                     is_stock_status_name(b->key->status));
            snprintf(b->explanation, sizeof(b->explanation),
                     "the ERP has %s %s more in %s, MES the same quantity in %s: a status change "
                     "(quarantine, release) not applied in the ERP",
                     q, b->key->uom, is_stock_status_name(b->key->status),
                     is_stock_status_name(a->key->status));
            set_class(a, RECONCILE_STATUS);
            set_class(b, RECONCILE_STATUS);
            break;
        }
    }
}

/* Within one (site, material, lot) run: is the lot on one side only? */
static void classify_lot(reconcile_t *r, size_t from, size_t to) {
    int mes = 0, erp = 0;
    for (size_t i = from; i < to; i++) {
        mes |= r->recs[i].has_mes;
        erp |= r->recs[i].has_erp;
    }
    if (mes && erp)
        return;
    for (size_t i = from; i < to; i++) {
        rec_t *x = &r->recs[i];
        if (x->cls != -1)
            continue;
        snprintf(x->explanation, sizeof(x->explanation),
                 "lot %s of %s is only in %s (the %s has no stock of it at %s)", x->key->lot,
                 x->key->material, mes ? "MES" : "the ERP", mes ? "ERP" : "MES", x->key->site);
        set_class(x, RECONCILE_MISSING_LOT);
    }
}

/* Run [from, to) of recs sharing the first `upto` key fields. */
static size_t run_end(const reconcile_t *r, size_t from, int upto) {
    size_t to = from + 1;
    while (to < r->n_recs && cmp_key(r->recs[from].key, r->recs[to].key, upto) == 0)
        to++;
    return to;
}

static int cmp_diffs(const void *pa, const void *pb) {
    const reconcile_diff_t *a = pa, *b = pb;
    int c;
    if (a->cls != b->cls)
        return (int)a->cls - (int)b->cls;
    if ((c = strcmp(a->site, b->site)) || (c = strcmp(a->material, b->material)) ||
        (c = strcmp(a->lot, b->lot)) || (c = strcmp(a->location, b->location)))
        return c;
    if (a->status != b->status)
        return a->status - b->status;
    return strcmp(a->uom, b->uom);
}

is_err_t reconcile_run(reconcile_t *r, char *errstr, size_t errstr_size) {
    is_err_t rc;
    if (r->ran) {
        is_errf(errstr, errstr_size, "reconcile_run called twice");
        return IS_ERR_INVALID;
    }
    r->ran = 1;
    rc = convert_rows(r, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    if (r->n_rows > 0)
        qsort(r->rows, r->n_rows, sizeof(*r->rows), cmp_rows);
    rc = build_recs(r);
    if (rc != IS_OK) {
        is_errf(errstr, errstr_size, "cannot sum the on-hand rows: %s", is_err_str(rc));
        return rc;
    }
    for (size_t i = 0; i < r->n_recs; i++)
        classify_simple(r, &r->recs[i]);
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 5))
        classify_units(r, i, run_end(r, i, 5));
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 4))
        classify_status(r, i, run_end(r, i, 4));
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 3))
        classify_lot(r, i, run_end(r, i, 3));

    r->diffs = calloc(r->n_recs ? r->n_recs : 1, sizeof(*r->diffs));
    if (!r->diffs)
        return IS_ERR_NOMEM;
    for (size_t i = 0; i < r->n_recs; i++) {
        rec_t *x = &r->recs[i];
        reconcile_diff_t *d;
        if (x->cls == -2) {
            r->matched++;
            continue;
        }
        if (x->cls == -3)
            continue;
        d = &r->diffs[r->n_diffs++];
        if (x->cls == -1) {
            char a[IS_DECIMAL_STRLEN], b[IS_DECIMAL_STRLEN], p[IS_DECIMAL_STRLEN],
                q[IS_DECIMAL_STRLEN];
            fmt(x->mes, a);
            fmt(x->erp, b);
            fmt(x->pending, p);
            fmt(diff_of(x), q);
            snprintf(x->explanation, sizeof(x->explanation),
                     "MES %s, ERP %s%s%s%s: %s %s not explained", a, b,
                     is_decimal_sign(x->pending) ? " (+ " : "",
                     is_decimal_sign(x->pending) ? p : "",
                     is_decimal_sign(x->pending) ? " pending)" : "", q, x->key->uom);
            x->cls = RECONCILE_UNEXPLAINED;
        }
        d->cls = (reconcile_class_t)x->cls;
        d->site = x->key->site;
        d->material = x->key->material;
        d->lot = x->key->lot;
        d->location = x->key->location;
        d->status = x->key->status;
        d->uom = x->key->uom;
        d->erp_uom = x->erp_uom;
        d->mes = x->mes;
        d->erp = x->erp;
        d->pending = x->pending;
        if (d->erp_uom != d->uom)
            d->difference = x->mes; /* two units: not subtractable */
        else if (is_decimal_sub(x->mes, x->erp, &d->difference) != IS_OK)
            return IS_ERR_OVERFLOW;
        memcpy(d->explanation, x->explanation, sizeof(d->explanation));
        is_decimal_t abs = d->difference;
        if (is_decimal_sign(abs) < 0 && is_decimal_negate(abs, &abs) != IS_OK)
            return IS_ERR_OVERFLOW;
        r->count[d->cls]++;
        if (dec_add(&r->abs_qty[d->cls], abs) != 0) {
            is_errf(errstr, errstr_size, "the %s quantities overflow", class_names[d->cls]);
            return IS_ERR_OVERFLOW;
        }
    }
    if (r->n_diffs > 0)
        qsort(r->diffs, r->n_diffs, sizeof(*r->diffs), cmp_diffs);
    return IS_OK;
}

size_t reconcile_count(const reconcile_t *r) {
    return r->n_diffs;
}

const reconcile_diff_t *reconcile_diff(const reconcile_t *r, size_t i) {
    return i < r->n_diffs ? &r->diffs[i] : NULL;
}

size_t reconcile_matched(const reconcile_t *r) {
    return r->matched;
}

size_t reconcile_rows(const reconcile_t *r, reconcile_side_t side) {
    return r->n_side[side];
}

void reconcile_summary(const reconcile_t *r, reconcile_class_t c, size_t *count,
                       is_decimal_t *abs_quantity) {
    *count = r->count[c];
    *abs_quantity = r->abs_qty[c];
}

/* ---- input files ----------------------------------------------------------- */

static is_err_t read_all(const char *path, char **out, size_t *len, char *errstr,
                         size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    if (!f) {
        is_errf(errstr, errstr_size, "cannot open '%s': %s", path, strerror(errno));
        return IS_ERR_IO;
    }
    for (;;) {
        if (cap - n < 65536) {
            char *grown;
            cap = cap ? cap * 2 : 131072;
            if ((long long)cap > MAX_FILE_BYTES + 1 || !(grown = realloc(buf, cap + 1))) {
                is_errf(errstr, errstr_size, "'%s' is larger than 1 GiB or memory ran out", path);
                free(buf);
                fclose(f);
                return IS_ERR_TOO_LARGE;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        is_errf(errstr, errstr_size, "cannot read '%s'", path);
        free(buf);
        fclose(f);
        return IS_ERR_IO;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return IS_OK;
}

/* Split one CSV line in place; quoted fields are unescaped. Returns field count or -1. */
static int split_csv(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *start;
        if (n == max)
            return -1;
        if (*p == '"') {
            char *w = ++p;
            start = w;
            for (;;) {
                if (*p == '\0')
                    return -1; /* unterminated quote */
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            if (*p != ',' && *p != '\0')
                return -1;
            *w = '\0';
        } else {
            char *end;
            start = p + strspn(p, " \t");
            while (*p && *p != ',')
                p++;
            for (end = p; end > start && (end[-1] == ' ' || end[-1] == '\t'); end--)
                ;
            if (*p == '\0') {
                *end = '\0';
                fields[n++] = start;
                break;
            }
            *p++ = '\0';
            *end = '\0';
            fields[n++] = start;
            continue;
        }
        fields[n++] = start;
        if (*p == '\0')
            break;
        *p++ = '\0';
    }
    return n;
}

static int parse_status(const char *s) {
    char up[48];
    size_t i;
    if (!s || !*s)
        return INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
    for (i = 0; s[i] && i < sizeof(up) - 1; i++)
        up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    up[i] = '\0';
    return is_stock_status_parse(up);
}

static const char *const row_cols[] = {"site",         "material", "lot",     "location",
                                       "stock_status", "uom",      "quantity"};
static const char *const factor_cols[] = {"from_uom", "to_uom", "factor", "material"};
static const char *const conversion_cols[] = {"mes_uom", "erp_uom", "factor", "material"};

/* One row's values (in row_cols / factor_cols order) into r. */
static is_err_t take_values(reconcile_t *r, int side, const char *const *v, const char *where,
                            char *errstr, size_t errstr_size) {
    char why[160];
    is_decimal_t q;
    const char *qs = side < 0 ? v[2] : v[6];
    if (is_decimal_parse(qs, strlen(qs), IS_DECIMAL_MAX_SCALE, &q, why, sizeof(why)) != IS_OK) {
        is_errf(errstr, errstr_size, "%s: %s '%s': %s", where, side < 0 ? "factor" : "quantity", qs,
                why);
        return IS_ERR_INVALID;
    }
    if (side < 0) {
        if (!*v[0] || !*v[1] || is_decimal_sign(q) <= 0) {
            is_errf(errstr, errstr_size,
                    "%s: a factor needs from_uom, to_uom and a factor greater than zero", where);
            return IS_ERR_INVALID;
        }
        return side == RECONCILE_FILE_CONVERSIONS ? reconcile_add_conversion(r, v[3], v[0], v[1], q)
                                                  : reconcile_add_factor(r, v[3], v[0], v[1], q);
    }
    for (int k = 0; k < 6; k++) {
        if (k != 4 && !*v[k]) {
            is_errf(errstr, errstr_size, "%s: '%s' is empty", where, row_cols[k]);
            return IS_ERR_INVALID;
        }
    }
    int status = parse_status(v[4]);
    if (status == 0) {
        is_errf(errstr, errstr_size,
                "%s: unknown stock_status '%s' (UNRESTRICTED, QUALITY or BLOCKED)", where, v[4]);
        return IS_ERR_INVALID;
    }
    return reconcile_add_row(r, (reconcile_side_t)side, v[0], v[1], v[2], v[3], status, v[5], q);
}

static is_err_t load_json_rows(reconcile_t *r, int side, const char *path, const char *text,
                               char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr), *row;
    const char *const *cols = side == RECONCILE_FILE_CONVERSIONS ? conversion_cols
                              : side < 0                         ? factor_cols
                                                                 : row_cols;
    size_t n_cols = side < 0 ? 4 : 7, i;
    is_err_t rc = IS_OK;
    if (!doc || !json_is_array(doc)) {
        is_errf(errstr, errstr_size, "%s:%d: %s", path, doc ? 1 : jerr.line,
                doc ? "expected a JSON array of rows" : jerr.text);
        json_decref(doc);
        return IS_ERR_INVALID;
    }
    json_array_foreach(doc, i, row) {
        const char *v[7];
        char where[300];
        snprintf(where, sizeof(where), "%s: row %zu", path, i + 1);
        for (size_t k = 0; k < n_cols && rc == IS_OK; k++) {
            json_t *val = json_object_get(row, cols[k]);
            v[k] = json_is_string(val) ? json_string_value(val) : "";
            if (val && !json_is_string(val) && !json_is_null(val)) {
                is_errf(errstr, errstr_size, "%s: '%s' must be a string (quantities as \"12.5\")",
                        where, cols[k]);
                rc = IS_ERR_INVALID;
            }
        }
        if (rc == IS_OK)
            rc = take_values(r, side, v, where, errstr, errstr_size);
        if (rc != IS_OK)
            break;
    }
    json_decref(doc);
    return rc;
}

is_err_t reconcile_load_file(reconcile_t *r, int side, const char *path, char *errstr,
                             size_t errstr_size) {
    char *text = NULL, *p, *line;
    size_t len = 0, lineno = 0;
    const char *const *cols = side == RECONCILE_FILE_CONVERSIONS ? conversion_cols
                              : side < 0                         ? factor_cols
                                                                 : row_cols;
    size_t n_cols = side < 0 ? 4 : 7, n_required = side < 0 ? 3 : 7;
    int idx[7], have_header = 0;
    is_err_t rc = read_all(path, &text, &len, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    p = text;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    line = p + strspn(p, " \t\r\n");
    if (*line == '[') {
        rc = load_json_rows(r, side, path, line, errstr, errstr_size);
        free(text);
        return rc;
    }
    for (line = p; rc == IS_OK && line && *line; line = p) {
        char *fields[MAX_COLS], where[300];
        const char *v[7];
        int n;
        p = strchr(line, '\n');
        if (p)
            *p++ = '\0';
        lineno++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = '\0';
        if (line[strspn(line, " \t")] == '\0' || line[0] == '#')
            continue;
        snprintf(where, sizeof(where), "%s:%zu", path, lineno);
        n = split_csv(line, fields, MAX_COLS);
        if (n < 0) {
            is_errf(errstr, errstr_size,
                    "%s: malformed CSV (unterminated quote or more than %d "
                    "columns)",
                    where, MAX_COLS);
            rc = IS_ERR_INVALID;
            break;
        }
        if (!have_header && side == RECONCILE_FILE_CONVERSIONS &&
            strcmp(fields[0], "mes_uom") != 0) {
            /* uom.conversions may have no header (uom.h): the columns are positional. */
            for (size_t k = 0; k < n_cols; k++)
                idx[k] = (int)k;
            have_header = 1;
        }
        if (!have_header) {
            for (size_t k = 0; k < n_cols; k++) {
                idx[k] = -1;
                for (int c = 0; c < n; c++)
                    if (strcmp(fields[c], cols[k]) == 0)
                        idx[k] = c;
                if (idx[k] < 0 && k < n_required) {
                    is_errf(errstr, errstr_size, "%s: the header has no column '%s' (needed: %s)",
                            where, cols[k],
                            side == RECONCILE_FILE_CONVERSIONS ? "mes_uom,erp_uom,factor[,material]"
                            : side < 0                         ? "from_uom,to_uom,factor[,material]"
                                       : "site,material,lot,location,stock_status,uom,quantity");
                    rc = IS_ERR_INVALID;
                }
            }
            have_header = 1;
            continue;
        }
        for (size_t k = 0; k < n_cols; k++) {
            if (idx[k] >= n && k < n_required) {
                is_errf(errstr, errstr_size, "%s: %d column(s), the header has more", where, n);
                rc = IS_ERR_INVALID;
                break;
            }
            v[k] = idx[k] < 0 || idx[k] >= n ? "" : fields[idx[k]];
        }
        if (rc == IS_OK)
            rc = take_values(r, side, v, where, errstr, errstr_size);
    }
    if (rc == IS_OK && !have_header) {
        is_errf(errstr, errstr_size, "%s: empty file (expected a header line)", path);
        rc = IS_ERR_INVALID;
    }
    free(text);
    return rc;
}

/* ---- output ----------------------------------------------------------------- */

static json_t *dec_json(is_decimal_t d) {
    char b[IS_DECIMAL_STRLEN];
    fmt(d, b);
    return json_string(b);
}

int reconcile_write_json(const reconcile_t *r, FILE *f) {
    json_t *doc = json_object(), *sum = json_object(), *diffs = json_array();
    int rc;
    for (int c = 0; c < RECONCILE__COUNT; c++)
        json_object_set_new(sum, class_names[c],
                            json_pack("{s:I,s:o}", "count", (json_int_t)r->count[c], "abs_quantity",
                                      dec_json(r->abs_qty[c])));
    for (size_t i = 0; i < r->n_diffs; i++) {
        const reconcile_diff_t *d = &r->diffs[i];
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:s}", "class",
                      class_names[d->cls], "site", d->site, "material", d->material, "lot", d->lot,
                      "location", d->location, "stock_status", is_stock_status_name(d->status),
                      "uom", d->uom, "mes_quantity", dec_json(d->mes), "erp_uom", d->erp_uom,
                      "erp_quantity", dec_json(d->erp), "pending_quantity", dec_json(d->pending),
                      "difference", dec_json(d->difference), "explanation", d->explanation);
        json_array_append_new(diffs, o);
    }
    json_object_set_new(doc, "unexplained", json_boolean(r->count[RECONCILE_UNEXPLAINED] > 0));
    json_object_set_new(doc, "summary", sum);
    json_object_set_new(doc, "matched", json_integer((json_int_t)r->matched));
    json_object_set_new(doc, "mes_rows", json_integer((json_int_t)r->n_side[RECONCILE_MES]));
    json_object_set_new(doc, "erp_rows", json_integer((json_int_t)r->n_side[RECONCILE_ERP]));
    json_object_set_new(doc, "differences", diffs);
    rc = json_dumpf(doc, f, JSON_INDENT(2));
    fputc('\n', f);
    json_decref(doc);
    return rc;
}

static void csv_field(FILE *f, const char *s, int last) {
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

int reconcile_write_csv(const reconcile_t *r, FILE *f) {
    fputs("class,site,material,lot,location,stock_status,uom,mes_quantity,erp_uom,erp_quantity,"
          "pending_quantity,difference,explanation\n",
          f);
    for (size_t i = 0; i < r->n_diffs; i++) {
        const reconcile_diff_t *d = &r->diffs[i];
        char m[IS_DECIMAL_STRLEN], e[IS_DECIMAL_STRLEN], p[IS_DECIMAL_STRLEN], q[IS_DECIMAL_STRLEN];
        fmt(d->mes, m);
        fmt(d->erp, e);
        fmt(d->pending, p);
        fmt(d->difference, q);
        const char *v[] = {class_names[d->cls],
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
        for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++)
            csv_field(f, v[k], k + 1 == sizeof(v) / sizeof(v[0]));
    }
    return ferror(f) ? -1 : 0;
}

void reconcile_write_summary(const reconcile_t *r, FILE *f) {
    fprintf(f, "reconcile: %zu MES row(s), %zu ERP row(s), %zu key(s) agree, %zu difference(s)\n",
            r->n_side[RECONCILE_MES], r->n_side[RECONCILE_ERP], r->matched, r->n_diffs);
    for (int c = 0; c < RECONCILE__COUNT; c++) {
        char q[IS_DECIMAL_STRLEN];
        fmt(r->abs_qty[c], q);
        fprintf(f, "reconcile: %-12s %6zu difference(s), absolute quantity %s\n", class_names[c],
                r->count[c], q);
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
        fprintf(f, "invsync_reconcile_differences{class=\"%s\"} %zu\n", class_names[c],
                r->count[c]);
    fputs("# HELP invsync_reconcile_abs_quantity Sum of |difference| of the last run (mixed "
          "units).\n"
          "# TYPE invsync_reconcile_abs_quantity gauge\n",
          f);
    for (int c = 0; c < RECONCILE__COUNT; c++) {
        char q[IS_DECIMAL_STRLEN];
        fmt(r->abs_qty[c], q);
        fprintf(f, "invsync_reconcile_abs_quantity{class=\"%s\"} %s\n", class_names[c], q);
    }
    fprintf(f,
            "# HELP invsync_reconcile_matched Keys on which MES and ERP agree.\n"
            "# TYPE invsync_reconcile_matched gauge\n"
            "invsync_reconcile_matched %zu\n"
            "# HELP invsync_reconcile_last_run_timestamp_seconds When the last run finished.\n"
            "# TYPE invsync_reconcile_last_run_timestamp_seconds gauge\n"
            "invsync_reconcile_last_run_timestamp_seconds %" PRId64 ".%03d\n",
            r->matched, now_ms / 1000, (int)(now_ms % 1000));
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        is_errf(errstr, errstr_size, "cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return IS_ERR_IO;
    }
    return IS_OK;
}

/* ---- the command ------------------------------------------------------------- */

static int erp_row_cb(void *opaque, const erp_on_hand_row_t *row) {
    return reconcile_add_row(opaque, RECONCILE_ERP, row->site, row->material, row->lot,
                             row->location, row->status, row->uom, row->quantity) != IS_OK;
}

/* What the consumer has not posted yet becomes pending. */
static is_err_t load_pending(reconcile_t *r, const consumer_config_t *cfg, const char *site,
                             size_t *n, char *errstr, size_t errstr_size) {
    store_t *s = NULL;
    sqlite3_stmt *st = NULL;
    is_err_t rc =
        store_open(cfg->store_path,
                   strcmp(cfg->store_sync, "normal") == 0 ? IS_DB_SYNC_NORMAL : IS_DB_SYNC_FULL, &s,
                   errstr, errstr_size);
    *n = 0;
    if (rc != IS_OK)
        return rc;
    rc = is_db_prepare(store_db(s),
                       "SELECT payload, state, movement_id FROM movements WHERE state IN"
                       " ('queued', 'posting', 'retry', 'failed') AND (?1 IS NULL OR site = ?1)"
                       " ORDER BY producer_id, seq",
                       &st, errstr, errstr_size);
    if (rc == IS_OK && site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    while (rc == IS_OK && sqlite3_step(st) == SQLITE_ROW) {
        is_movement_t *m = invsync__v1__movement__unpack(NULL, (size_t)sqlite3_column_bytes(st, 0),
                                                         sqlite3_column_blob(st, 0));
        if (!m) {
            is_errf(errstr, errstr_size, "store: movement '%s' cannot be decoded",
                    (const char *)sqlite3_column_text(st, 2));
            rc = IS_ERR_INVALID;
            break;
        }
        rc = reconcile_add_pending(r, m, (const char *)sqlite3_column_text(st, 1));
        if (rc == IS_ERR_INVALID) /* no stock effect: nothing it could explain */
            rc = IS_OK;
        else if (rc == IS_OK)
            (*n)++;
        invsync__v1__movement__free_unpacked(m, NULL);
    }
    sqlite3_finalize(st);
    store_close(s);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: erp-consumer reconcile --config FILE --mes MES.csv [--erp ERP.csv]\n"
               "           [--site SITE] [--format json|csv] [--uom-factors UOM.csv]\n"
               "           [--metrics-file FILE.prom]\n"
               "  CSV columns: site,material,lot,location,stock_status,uom,quantity\n"
               "  (a JSON array of such objects is accepted too); without --erp the ERP\n"
               "  adapter's on-hand query is used. Exit: 0 no unexplained drift, 3\n"
               "  unexplained drift, 2 bad input, 1 store or ERP unavailable.\n");
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
    is_log_level_t level = IS_LOG_INFO;
    size_t n_pending = 0;
    int c, status = 2;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
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
    if (!mes || optind < argc || (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0)) {
        fprintf(stderr, "erp-consumer reconcile: %s\n",
                !mes            ? "--mes FILE (the MES on-hand snapshot) is required"
                : optind < argc ? "unexpected argument"
                                : "--format must be json or csv");
        usage(stderr);
        return 2;
    }
    if (consumer_config_load(&cfg, config, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer reconcile: %s\n", errstr);
        consumer_config_release(&cfg);
        return 2;
    }
    if (is_log_level_parse(cfg.log_level, &level) == IS_OK)
        is_log_init("erp-consumer", level);
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
    status = r->count[RECONCILE_UNEXPLAINED] > 0 ? 3 : 0;
out:
    erp_close(erp);
    reconcile_free(r);
    consumer_config_release(&cfg);
    return status;
}
