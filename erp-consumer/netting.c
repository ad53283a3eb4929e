/*
 * netting.c — movements → ERP lines (netting.h).
 *
 * Load: one call per posting; a windowed posting may hold tens of thousands
 * of movements of one lot. Each movement compares against at most
 * NETTING_SCAN of the most recent lines, so the cost stays linear.
 */
#include <stdlib.h>
#include <string.h>

#include "netting.h"

#define NETTING_SCAN 64 /* lines searched back for a merge partner */

typedef struct group {
    const is_movement_t *rep; /* first member: the line's key fields */
    is_decimal_t sum;
    size_t first, count;     /* members: order[first .. first+count) after regrouping */
    is_stock_effect_t fx[4]; /* buckets touched (location, status) */
    size_t n_fx;
} group_t;

static int same_str(const char *a, const char *b) {
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Do two movements share a netting key? */
static int same_key(const is_movement_t *a, const is_movement_t *b) {
    return a->type == b->type && a->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
           same_str(a->location, b->location) && same_str(a->to_location, b->to_location) &&
           same_str(a->order_id, b->order_id) && same_str(a->uom, b->uom) &&
           same_str(a->serial, b->serial) && same_str(a->operation, b->operation) &&
           a->from_status == b->from_status && a->to_status == b->to_status &&
           same_str(a->reason_code, b->reason_code) && same_str(a->site, b->site) &&
           same_str(a->material, b->material) && same_str(a->lot, b->lot);
}

static int touches(const group_t *g, const char *location, int status) {
    for (size_t i = 0; i < g->n_fx; i++)
        if (g->fx[i].status == status && same_str(g->fx[i].location, location))
            return 1;
    return 0;
}

/* May m (effects fx) move up to group gi, past groups gi+1..n-1? */
static int may_merge(const group_t *groups, size_t n, size_t gi, const is_stock_effect_t *fx,
                     size_t n_fx) {
    for (size_t e = 0; e < n_fx; e++) {
        if (is_decimal_sign(fx[e].delta) >= 0)
            continue; /* adding stock earlier never hurts */
        for (size_t k = gi + 1; k < n; k++)
            if (touches(&groups[k], fx[e].location, fx[e].status))
                return 0;
    }
    return 1;
}

is_err_t netting_build(is_movement_t *const *ms, size_t n, int net, netting_t *out) {
    group_t *groups = calloc(n ? n : 1, sizeof(*groups));
    size_t *member_group = calloc(n ? n : 1, sizeof(*member_group));
    size_t n_groups = 0;
    is_err_t rc = IS_ERR_NOMEM;

    memset(out, 0, sizeof(*out));
    if (!groups || !member_group)
        goto out;
    for (size_t i = 0; i < n; i++) {
        is_stock_effect_t fx[4];
        size_t n_fx = is_movement_effects(ms[i], fx);
        is_decimal_t q = is_movement_qty(ms[i]);
        size_t gi = n_groups;
        is_decimal_t merged = q;
        if (net) {
            size_t lo = n_groups > NETTING_SCAN ? n_groups - NETTING_SCAN : 0;
            for (size_t k = n_groups; k > lo; k--) {
                if (same_key(groups[k - 1].rep, ms[i])) {
                    /* A sum the ERP cannot book would fail a posting whose
                     * movements it books one by one: start a new line. */
                    if (may_merge(groups, n_groups, k - 1, fx, n_fx) &&
                        is_decimal_add(groups[k - 1].sum, q, &merged) == IS_OK &&
                        is_movement_qty_in_range(merged))
                        gi = k - 1;
                    break; /* only the latest line of a key is a candidate */
                }
            }
        }
        if (gi == n_groups) {
            group_t *g = &groups[n_groups++];
            g->rep = ms[i];
            g->sum = q;
            memcpy(g->fx, fx, sizeof(fx));
            g->n_fx = n_fx;
        } else {
            groups[gi].sum = merged;
        }
        groups[gi].count++;
        member_group[i] = gi;
    }
    /* Lay out movement ids grouped by line, in acceptance order within a line. */
    out->ids = calloc(n ? n : 1, sizeof(*out->ids));
    out->lines = calloc(n_groups ? n_groups : 1, sizeof(*out->lines));
    if (!out->ids || !out->lines)
        goto out;
    size_t pos = 0;
    for (size_t g = 0; g < n_groups; g++) {
        groups[g].first = pos;
        pos += groups[g].count;
        groups[g].count = 0;
    }
    for (size_t i = 0; i < n; i++) {
        group_t *g = &groups[member_group[i]];
        out->ids[g->first + g->count++] = ms[i]->movement_id;
    }
    for (size_t g = 0; g < n_groups; g++) {
        if (is_decimal_sign(groups[g].sum) == 0) {
            out->n_dropped++;
            continue;
        }
        erp_line_t *l = &out->lines[out->n_lines++];
        l->m = groups[g].rep;
        l->quantity = groups[g].sum;
        l->movement_ids = &out->ids[groups[g].first];
        l->n_movement_ids = groups[g].count;
    }
    rc = IS_OK;
out:
    free(groups);
    free(member_group);
    if (rc != IS_OK)
        netting_release(out);
    return rc;
}

void netting_release(netting_t *n) {
    if (!n)
        return;
    free(n->lines);
    free(n->ids);
    memset(n, 0, sizeof(*n));
}
