/*
 * reconcile.c — compare MES and ERP on-hand and classify each difference
 * (see reconcile.h for the classes and the input formats).
 *
 * All rows (MES, ERP, pending) go into one array, are sorted by key once
 * and summed per (key, side); then the keys are walked in order, so that
 * everything one classification needs (the other units of a key, the other
 * statuses of a lot/location, the lot's presence on each side) is a
 * contiguous run. Load: O(n log n) in the number of rows; in memory.
 *
 * Reading the input files is reconcile_input.c, writing the results
 * reconcile_output.c, the command reconcile_cli.c: all three through the
 * public API of reconcile.h only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reconcile.h"

#define SIDE_PENDING 2

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
    int case_only;        /* merged with a key whose unit differs only in case: one unit */
    const char *erp_uom;
    char explanation[320];
} rec_t;

typedef struct factor {
    char *material; /* NULL: every material */
    char *from, *to;
    is_decimal_t f;
    int convert; /* a configured MES → ERP conversion: MES and pending rows are converted */
} factor_t;

typedef struct unknown_site {
    const char *site; /* a row's string */
    size_t rows;      /* MES rows */
} unknown_site_t;

struct reconcile {
    char *site; /* filter, or NULL */
    row_t *rows;
    size_t n_rows, cap_rows;
    size_t n_side[2]; /* rows per side after the site filter */
    size_t n_read[2]; /* rows per side before it */
    char **seen[2];   /* distinct sites read per side, before the filter */
    size_t n_seen[2];
    char **known; /* the consumer's sites (reconcile_set_known_sites) */
    size_t n_known;
    int check_sites;         /* reconcile_set_known_sites was called */
    unknown_site_t *unknown; /* after reconcile_run, sorted by site */
    size_t n_unknown;
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
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < r->n_seen[side]; i++)
            free(r->seen[side][i]);
        free(r->seen[side]);
    }
    for (size_t i = 0; i < r->n_known; i++)
        free(r->known[i]);
    free(r->known);
    free(r->unknown);
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

/* Is site one of list[0..n)? The last one first: rows come grouped by site. */
static int in_list(char *const *list, size_t n, const char *site) {
    for (size_t i = n; i-- > 0;)
        if (strcmp(list[i], site) == 0)
            return 1;
    return 0;
}

static is_err_t list_add(char ***list, size_t *n, const char *site) {
    char **grown, *copy;
    if (in_list(*list, *n, site))
        return IS_OK;
    grown = realloc(*list, (*n + 1) * sizeof(**list));
    if (!grown)
        return IS_ERR_NOMEM;
    *list = grown;
    copy = strdup(site);
    if (!copy)
        return IS_ERR_NOMEM;
    grown[(*n)++] = copy;
    return IS_OK;
}

is_err_t reconcile_set_known_sites(reconcile_t *r, const char *const *sites, size_t n) {
    r->check_sites = 1;
    for (size_t i = 0; i < n; i++)
        if (list_add(&r->known, &r->n_known, sites[i]) != IS_OK)
            return IS_ERR_NOMEM;
    return IS_OK;
}

const char *reconcile_site_seen(const reconcile_t *r, reconcile_side_t side, size_t i) {
    return i < r->n_seen[side] ? r->seen[side][i] : NULL;
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
    r->n_read[side]++;
    if (list_add(&r->seen[side], &r->n_seen[side], site ? site : "") != IS_OK)
        return IS_ERR_NOMEM;
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
    if (x->cls != -1)
        return; /* an unknown site's row */
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

/*
 * MES holds a key in "ea", the ERP in "EA": one unit spelled two ways, so b is
 * folded into a and a is classified as one key. Equal quantities are a uom
 * difference (so the spelling is seen and fixed in the master data, but it is
 * not drift); anything else goes through the same-unit checks (pending, sign,
 * a factor) and the explanation says how the ERP spells the unit.
 */
static void merge_case_only(reconcile_t *r, rec_t *a, rec_t *b) {
    char q[IS_DECIMAL_STRLEN];
    is_decimal_t pending = a->pending;
    if (dec_add(&pending, b->pending) != 0)
        return; /* left as two keys */
    a->erp = b->erp;
    a->pending = pending;
    if (!a->pend_row)
        a->pend_row = b->pend_row;
    a->erp_uom = b->key->uom;
    a->has_erp = 1;
    a->case_only = 1;
    b->cls = -3;
    if (dec_eq(a->mes, a->erp)) {
        fmt(a->mes, q);
        snprintf(a->explanation, sizeof(a->explanation),
                 "MES has %s %s, the ERP the same quantity in %s: the same unit spelled "
                 "differently (case)",
                 q, a->key->uom, b->key->uom);
        set_class(a, RECONCILE_UOM);
        return;
    }
    classify_simple(r, a);
}

/* Within one (site, material, lot, location, status) run: MES in one unit, ERP in another. */
static void classify_units(reconcile_t *r, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) {
        rec_t *a = &r->recs[i];
        if (a->cls != -1 || !a->has_mes || a->has_erp)
            continue;
        for (size_t j = from; j < to; j++) {
            rec_t *b = &r->recs[j];
            if (j == i || b->cls != -1 || b->has_mes || !b->has_erp ||
                strcasecmp(a->key->uom, b->key->uom) != 0)
                continue;
            merge_case_only(r, a, b);
            break;
        }
        if (a->cls != -1 || a->case_only)
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

/* Within one (site, material, lot) run: is the lot on one side only? material_in_erp: the ERP has
 * some stock of the material at the site. */
static void classify_lot(reconcile_t *r, size_t from, size_t to, int material_in_erp) {
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
        if (mes && !material_in_erp)
            snprintf(x->explanation, sizeof(x->explanation),
                     "lot %s of %s is only in MES (the ERP has no stock of %s at all at %s: a new "
                     "material, or one the ERP does not know)",
                     x->key->lot, x->key->material, x->key->material, x->key->site);
        else
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

/*
 * With the check on (reconcile_set_known_sites): the MES rows of sites neither
 * the consumer nor the ERP knows are unexplained, not missing lots (a missing
 * lot is a lot missing from a site both sides share). recs is sorted by site.
 */
static is_err_t mark_unknown_sites(reconcile_t *r) {
    size_t n_sites = 0;
    if (!r->check_sites)
        return IS_OK;
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 1))
        n_sites++;
    r->unknown = calloc(n_sites ? n_sites : 1, sizeof(*r->unknown));
    if (!r->unknown)
        return IS_ERR_NOMEM;
    for (size_t i = 0; i < r->n_rows; i++) {
        const row_t *y = &r->rows[i];
        unknown_site_t *u = r->n_unknown ? &r->unknown[r->n_unknown - 1] : NULL;
        if (y->side != RECONCILE_MES)
            continue;
        if (u && strcmp(u->site, y->site) == 0) {
            u->rows++;
            continue;
        }
        if (in_list(r->known, r->n_known, y->site) ||
            in_list(r->seen[RECONCILE_ERP], r->n_seen[RECONCILE_ERP], y->site))
            continue;
        r->unknown[r->n_unknown].site = y->site;
        r->unknown[r->n_unknown++].rows = 1;
    }
    for (size_t i = 0, k = 0; i < r->n_recs && k < r->n_unknown; i++) {
        rec_t *x = &r->recs[i];
        int c = 0;
        while (k < r->n_unknown && (c = strcmp(r->unknown[k].site, x->key->site)) < 0)
            k++;
        if (k == r->n_unknown || c != 0 || dec_eq(x->mes, x->erp))
            continue;
        snprintf(x->explanation, sizeof(x->explanation),
                 "site %s is unknown: the consumer never heard from it and the ERP has no stock "
                 "there (a wrong site code in the MES export, or a plant not connected)",
                 x->key->site);
        set_class(x, RECONCILE_UNEXPLAINED);
    }
    return IS_OK;
}

is_err_t reconcile_check_inputs(const reconcile_t *r, const char *mes_name, const char *erp_name,
                                char *errstr, size_t errstr_size) {
    for (int side = 0; side < 2; side++) {
        const char *name = side == RECONCILE_MES ? mes_name : erp_name;
        size_t other = r->n_side[1 - side];
        if (!name || r->n_side[side] > 0 || other == 0)
            continue;
        if (r->site && r->n_read[side] > 0)
            is_errf(errstr, errstr_size,
                    "%s: no rows for site %s (%zu of other sites): refusing to compare an empty "
                    "snapshot with the %s's %zu row(s)",
                    name, r->site, r->n_read[side], side == RECONCILE_MES ? "ERP" : "MES", other);
        else
            is_errf(errstr, errstr_size,
                    "%s: no rows (a header only, or a truncated export?): refusing to compare an "
                    "empty snapshot with the %s's %zu row(s)",
                    name, side == RECONCILE_MES ? "ERP" : "MES", other);
        return IS_ERR_INVALID;
    }
    return IS_OK;
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
    rc = mark_unknown_sites(r);
    if (rc != IS_OK)
        return rc;
    for (size_t i = 0; i < r->n_recs; i++)
        classify_simple(r, &r->recs[i]);
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 5))
        classify_units(r, i, run_end(r, i, 5));
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 4))
        classify_status(r, i, run_end(r, i, 4));
    for (size_t i = 0; i < r->n_recs; i = run_end(r, i, 2)) {
        size_t end = run_end(r, i, 2);
        int in_erp = 0;
        for (size_t j = i; j < end; j++)
            in_erp |= r->recs[j].has_erp;
        for (size_t j = i; j < end; j = run_end(r, j, 3))
            classify_lot(r, j, run_end(r, j, 3), in_erp);
    }

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
        if (x->case_only && x->cls != RECONCILE_UOM) {
            size_t len = strlen(x->explanation);
            snprintf(x->explanation + len, sizeof(x->explanation) - len,
                     " (the ERP spells the unit %s)", x->erp_uom);
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
        if (d->erp_uom != d->uom && !x->case_only)
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

const char *reconcile_unknown_site(const reconcile_t *r, size_t i, size_t *mes_rows) {
    if (i >= r->n_unknown)
        return NULL;
    if (mes_rows)
        *mes_rows = r->unknown[i].rows;
    return r->unknown[i].site;
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
