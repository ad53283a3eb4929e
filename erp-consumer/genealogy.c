/*
 * genealogy.c — the lot/order graph and its walks (genealogy.h), and the
 * `erp-consumer genealogy` command.
 *
 * Movements are kept as raw edges until the first walk; then nodes are
 * sorted unique by key, raw edges are sorted by (from, to, unit) and summed
 * into edges, and an index by `to` is built, so both directions are binary
 * searches. Keys separate their fields with \x1f, which no id contains.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_config.h"
#include "duration.h"
#include "genealogy.h"
#include "investigation.h"
#include "policy.h"
#include "replay.h"

#define SEP "\x1f"

typedef struct raw {
    char *lot_key;   /* "L" SEP site SEP material SEP lot */
    char *order_key; /* "O" SEP site SEP order */
    int produced;    /* 1: order → lot (COMPLETION); 0: lot → order (GOODS_ISSUE) */
    char *uom;
    is_decimal_t qty; /* signed: a REVERSAL subtracts */
    char *movement_id;
    size_t from, to; /* node indexes, once built */
    uint8_t *packed; /* the movement (protobuf), to check a REVERSAL against its original */
    size_t packed_len;
    char *reverses;     /* a REVERSAL: its original's identity ("<source_system> SEP <id>") */
    size_t reversed_by; /* the raw of the REVERSAL that undoes this one; SIZE_MAX: none */
    char *ignored;      /* a REVERSAL left out (it undoes nothing): why; not an edge */
} raw_t;

typedef struct node {
    const char *key; /* borrowed from a raw */
    int is_order;
    char *site, *material, *lot, *order_id; /* split copy of the key (one allocation: site) */
    char *id; /* "lot:S/M/L" | "order:S/O"; '%' and '/' in a field as %25, %2F */
} node_t;

typedef struct edge {
    size_t from, to;
    int produced;
    const char *uom;
    is_decimal_t qty;
    size_t first, n; /* its raws: order[first .. first+n) */
} edge_t;

struct genealogy {
    raw_t *raws;
    size_t n_raws, cap_raws;
    int built;
    node_t *nodes;
    size_t n_nodes;
    size_t *order; /* raw indexes sorted by (from, to, uom) */
    edge_t *edges; /* sorted by (from, to, uom) */
    size_t n_edges;
    size_t *by_to;  /* edge indexes sorted by to */
    char **ids;     /* open addressing: "<source_system> SEP <movement_id>" of every raw */
    size_t *id_raw; /* per slot of ids: that raw's index */
    size_t cap_ids;
};

is_err_t genealogy_new(genealogy_t **out) {
    *out = calloc(1, sizeof(**out));
    return *out ? IS_OK : IS_ERR_NOMEM;
}

void genealogy_free(genealogy_t *g) {
    if (!g)
        return;
    for (size_t i = 0; i < g->n_raws; i++) {
        free(g->raws[i].lot_key);
        free(g->raws[i].order_key);
        free(g->raws[i].uom);
        free(g->raws[i].movement_id);
        free(g->raws[i].packed);
        free(g->raws[i].reverses);
        free(g->raws[i].ignored);
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i].site);
        free(g->nodes[i].id);
    }
    free(g->raws);
    free(g->nodes);
    free(g->order);
    free(g->edges);
    free(g->by_to);
    for (size_t i = 0; i < g->cap_ids; i++)
        free(g->ids[i]);
    free(g->ids);
    free(g->id_raw);
    free(g);
}

static size_t id_hash(const char *s) {
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)h;
}

/* The slot of id in g->ids: where it is, or the empty one where it would go. */
static size_t id_slot(char **ids, size_t cap, const char *id) {
    size_t i = id_hash(id) & (cap - 1);
    while (ids[i] && strcmp(ids[i], id) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

/*
 * Remember a movement by its identity (the store's dedup key: source_system
 * and movement_id) as raw g->n_raws. 1: new; 0: already added (a copy
 * published again by `mes-producer republish`, or an MES resend the
 * producer accepted again, which the consumer does not apply twice either);
 * -1: out of memory. g->n_raws + 1 ids fit in half the table.
 */
static int id_add(genealogy_t *g, const is_movement_t *m) {
    char *id;
    size_t slot;
    if (2 * (g->n_raws + 1) > g->cap_ids) {
        size_t cap = g->cap_ids ? g->cap_ids * 2 : 512;
        char **ids = calloc(cap, sizeof(*ids));
        size_t *id_raw = calloc(cap, sizeof(*id_raw));
        if (!ids || !id_raw) {
            free(ids);
            free(id_raw);
            return -1;
        }
        for (size_t i = 0; i < g->cap_ids; i++)
            if (g->ids[i]) {
                size_t k = id_slot(ids, cap, g->ids[i]);
                ids[k] = g->ids[i];
                id_raw[k] = g->id_raw[i];
            }
        free(g->ids);
        free(g->id_raw);
        g->ids = ids;
        g->id_raw = id_raw;
        g->cap_ids = cap;
    }
    if (asprintf(&id, "%s" SEP "%s", m->source_system ? m->source_system : "",
                 m->movement_id ? m->movement_id : "") < 0)
        return -1;
    slot = id_slot(g->ids, g->cap_ids, id);
    if (g->ids[slot]) {
        free(id);
        return 0;
    }
    g->ids[slot] = id;
    g->id_raw[slot] = g->n_raws;
    return 1;
}

genealogy_dir_t genealogy_dir_parse(const char *s) {
    if (!s)
        return 0;
    if (strcmp(s, "backward") == 0)
        return GENEALOGY_BACKWARD;
    if (strcmp(s, "forward") == 0)
        return GENEALOGY_FORWARD;
    if (strcmp(s, "both") == 0)
        return GENEALOGY_BOTH;
    return 0;
}

is_err_t genealogy_add(genealogy_t *g, const is_movement_t *m, int *used) {
    int type = (int)m->type, sign = 1;
    is_decimal_t qty;
    raw_t *r;
    if (used)
        *used = 0;
    if (g->built)
        return IS_ERR_INVALID;
    if (type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL) {
        type = (int)m->reversed_type;
        sign = -1;
    }
    if ((type != INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE &&
         type != INVSYNC__V1__MOVEMENT_TYPE__COMPLETION) ||
        !m->order_id || !*m->order_id || !m->quantity)
        return IS_OK;
    qty = is_movement_qty(m);
    if (sign < 0 && is_decimal_negate(qty, &qty) != IS_OK)
        return IS_ERR_INVALID;
    if (g->n_raws == g->cap_raws) {
        size_t cap = g->cap_raws ? g->cap_raws * 2 : 256;
        raw_t *raws = realloc(g->raws, cap * sizeof(*raws));
        if (!raws)
            return IS_ERR_NOMEM;
        g->raws = raws;
        g->cap_raws = cap;
    }
    switch (id_add(g, m)) {
    case 0:
        return IS_OK; /* the same movement again: its quantity counts once */
    case -1:
        return IS_ERR_NOMEM;
    }
    r = &g->raws[g->n_raws];
    memset(r, 0, sizeof(*r));
    r->reversed_by = SIZE_MAX;
    r->packed_len = invsync__v1__movement__get_packed_size(m);
    r->packed = malloc(r->packed_len + 1);
    if (r->packed)
        invsync__v1__movement__pack(m, r->packed);
    if (sign < 0 && asprintf(&r->reverses, "%s" SEP "%s", m->source_system ? m->source_system : "",
                             m->reverses_movement_id ? m->reverses_movement_id : "") < 0)
        r->reverses = NULL;
    r->produced = type == INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    r->qty = qty;
    if (asprintf(&r->lot_key, "L" SEP "%s" SEP "%s" SEP "%s", m->site, m->material, m->lot) < 0)
        r->lot_key = NULL;
    if (asprintf(&r->order_key, "O" SEP "%s" SEP "%s", m->site, m->order_id) < 0)
        r->order_key = NULL;
    r->uom = strdup(m->uom ? m->uom : "");
    r->movement_id = strdup(m->movement_id ? m->movement_id : "");
    if (!r->lot_key || !r->order_key || !r->uom || !r->movement_id || !r->packed ||
        (sign < 0 && !r->reverses)) {
        free(r->lot_key);
        free(r->order_key);
        free(r->uom);
        free(r->movement_id);
        free(r->packed);
        free(r->reverses);
        return IS_ERR_NOMEM; /* its id stays known: the graph is not usable anyway */
    }
    g->n_raws++;
    if (used)
        *used = 1;
    return IS_OK;
}

/* ---- building -------------------------------------------------------------- */

static int cmp_pstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t node_index(const genealogy_t *g, const char *key) {
    size_t lo = 0, hi = g->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->nodes[mid].key, key);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

/*
 * Append field to the id being built in *buf, with '%' written "%25" and '/'
 * "%2F": the id joins its fields with '/', and a material or lot may contain
 * one (material "A/B" lot "C" and material "A" lot "B/C" must stay two
 * nodes). Ids without either character read as before. *buf is freed and
 * set to NULL when out of memory.
 */
static void id_append(char **buf, size_t *len, const char *sep, const char *field) {
    size_t need = *len + strlen(sep) + 3 * strlen(field) + 1;
    char *p;
    if (!*buf)
        return;
    p = realloc(*buf, need);
    if (!p) {
        free(*buf);
        *buf = NULL;
        return;
    }
    *buf = p;
    p += *len;
    memcpy(p, sep, strlen(sep));
    p += strlen(sep);
    for (; *field; field++) {
        if (*field == '%' || *field == '/') {
            *p++ = '%';
            *p++ = "0123456789ABCDEF"[(unsigned char)*field >> 4];
            *p++ = "0123456789ABCDEF"[(unsigned char)*field & 15];
        } else {
            *p++ = *field;
        }
    }
    *p = '\0';
    *len = (size_t)(p - *buf);
}

/* Split a node key into its fields and its display id. */
static is_err_t node_fill(node_t *n) {
    char *p, *f[3] = {NULL, NULL, NULL};
    int k = 0;
    n->is_order = n->key[0] == 'O';
    n->site = strdup(n->key + 2);
    if (!n->site)
        return IS_ERR_NOMEM;
    for (p = n->site; k < 3; k++) {
        f[k] = p;
        p = strchr(p, SEP[0]);
        if (!p)
            break;
        *p++ = '\0';
    }
    size_t len = 0;
    n->id = strdup(n->is_order ? "order" : "lot");
    if (n->id)
        len = strlen(n->id);
    id_append(&n->id, &len, ":", n->site);
    if (n->is_order) {
        n->order_id = f[1] ? f[1] : "";
        id_append(&n->id, &len, "/", n->order_id);
    } else {
        n->material = f[1] ? f[1] : "";
        n->lot = f[2] ? f[2] : "";
        id_append(&n->id, &len, "/", n->material);
        id_append(&n->id, &len, "/", n->lot);
    }
    return n->id ? IS_OK : IS_ERR_NOMEM;
}

/* Sort records: self-contained, so the comparators need no context. */
typedef struct raw_ref {
    size_t from, to, raw;
    const char *uom;
} raw_ref_t;

typedef struct edge_ref {
    size_t to, from, edge;
} edge_ref_t;

static int cmp_raw_ref(const void *pa, const void *pb) {
    const raw_ref_t *a = pa, *b = pb;
    if (a->from != b->from)
        return a->from < b->from ? -1 : 1;
    if (a->to != b->to)
        return a->to < b->to ? -1 : 1;
    return strcmp(a->uom, b->uom);
}

static int cmp_edge_ref(const void *pa, const void *pb) {
    const edge_ref_t *a = pa, *b = pb;
    if (a->to != b->to)
        return a->to < b->to ? -1 : 1;
    return a->from < b->from ? -1 : a->from > b->from;
}

/* The movement of a raw, decoded again (NULL: out of memory). */
static is_movement_t *raw_movement(const raw_t *r) {
    return invsync__v1__movement__unpack(NULL, r->packed_len, r->packed);
}

/*
 * Decide which REVERSALs undo an edge, the way the consumer decides which it
 * posts (check_reversal, store_post.c), but from the history read alone —
 * Kafka holds no posting state. A REVERSAL undoes its original (the movement
 * with its source_system and reverses_movement_id) only when it matches it
 * (is_movement_reversal_check: type, site, material, lot, location,
 * quantity, ...) and no REVERSAL added before it already undoes it; it then
 * subtracts from the original's edge. Any other REVERSAL — one that does not
 * match (the consumer fails it), a second one (the consumer refuses it), one
 * whose original is not in the history read (it would subtract from other
 * movements' quantities) — undoes nothing here: r->ignored says why, and
 * the original's edge stays followed (a recall scope may be too wide, never
 * too narrow). In the order added, whichever was read first: a REVERSAL read
 * before its original is judged against it all the same.
 */
static is_err_t resolve_reversals(genealogy_t *g) {
    char why[640];
    for (size_t i = 0; i < g->n_raws; i++) {
        raw_t *r = &g->raws[i];
        const char *rid;
        size_t slot;
        if (!r->reverses)
            continue;
        rid = strchr(r->reverses, SEP[0]) + 1;
        why[0] = '\0';
        slot = id_slot(g->ids, g->cap_ids, r->reverses);
        if (!g->ids[slot]) {
            snprintf(why, sizeof(why),
                     "reversal of %s ignored: the history read has no GOODS_ISSUE or COMPLETION "
                     "to an order with that id",
                     rid);
        } else {
            raw_t *o = &g->raws[g->id_raw[slot]];
            is_movement_t *rm = raw_movement(r), *om = raw_movement(o);
            int matches = rm && om && is_movement_reversal_check(rm, om, why, sizeof(why));
            if (rm)
                invsync__v1__movement__free_unpacked(rm, NULL);
            if (om)
                invsync__v1__movement__free_unpacked(om, NULL);
            if (!rm || !om)
                return IS_ERR_NOMEM;
            if (matches && o->reversed_by != SIZE_MAX) {
                snprintf(why, sizeof(why),
                         "reversal refused: reverses %s, which %s already reverses", rid,
                         g->raws[o->reversed_by].movement_id);
            } else if (matches) {
                /* Same site, material, lot and uom; the order is the original's. */
                char *key = strdup(o->order_key);
                if (!key)
                    return IS_ERR_NOMEM;
                free(r->order_key);
                r->order_key = key;
                o->reversed_by = i;
            }
        }
        if (why[0] && !(r->ignored = strdup(why)))
            return IS_ERR_NOMEM;
    }
    return IS_OK;
}

static is_err_t build(genealogy_t *g) {
    const char **keys;
    size_t n = 0, n_live = 0;
    is_err_t rc;
    if (g->built)
        return IS_OK;
    if ((rc = resolve_reversals(g)) != IS_OK)
        return rc;
    keys = malloc((2 * g->n_raws + 1) * sizeof(*keys));
    g->order = malloc((g->n_raws + 1) * sizeof(*g->order));
    g->edges = calloc(g->n_raws + 1, sizeof(*g->edges));
    g->by_to = malloc((g->n_raws + 1) * sizeof(*g->by_to));
    g->nodes = calloc(2 * g->n_raws + 1, sizeof(*g->nodes));
    if (!keys || !g->order || !g->edges || !g->by_to || !g->nodes) {
        free(keys);
        return IS_ERR_NOMEM;
    }
    for (size_t i = 0; i < g->n_raws; i++) {
        if (g->raws[i].ignored)
            continue;
        keys[n++] = g->raws[i].lot_key;
        keys[n++] = g->raws[i].order_key;
    }
    qsort(keys, n, sizeof(*keys), cmp_pstr);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(keys[i], keys[i - 1]) == 0)
            continue;
        g->nodes[g->n_nodes].key = keys[i];
        if (node_fill(&g->nodes[g->n_nodes++]) != IS_OK) {
            free(keys);
            return IS_ERR_NOMEM;
        }
    }
    free(keys);
    raw_ref_t *refs = malloc((g->n_raws + 1) * sizeof(*refs));
    edge_ref_t *erefs = malloc((g->n_raws + 1) * sizeof(*erefs));
    if (!refs || !erefs) {
        free(refs);
        free(erefs);
        return IS_ERR_NOMEM;
    }
    for (size_t i = 0; i < g->n_raws; i++) {
        raw_t *r = &g->raws[i];
        size_t lot, ord;
        if (r->ignored)
            continue; /* not an edge */
        lot = node_index(g, r->lot_key);
        ord = node_index(g, r->order_key);
        r->from = r->produced ? ord : lot;
        r->to = r->produced ? lot : ord;
        refs[n_live++] = (raw_ref_t){.from = r->from, .to = r->to, .raw = i, .uom = r->uom};
    }
    qsort(refs, n_live, sizeof(*refs), cmp_raw_ref);
    for (size_t i = 0; i < n_live; i++)
        g->order[i] = refs[i].raw;
    for (size_t i = 0; i < n_live;) {
        edge_t *e = &g->edges[g->n_edges];
        const raw_t *r = &g->raws[refs[i].raw];
        e->from = r->from;
        e->to = r->to;
        e->produced = r->produced;
        e->uom = r->uom;
        e->first = i;
        for (; i < n_live && cmp_raw_ref(&refs[e->first], &refs[i]) == 0; i++) {
            if (is_decimal_add(e->qty, g->raws[refs[i].raw].qty, &e->qty) != IS_OK) {
                free(refs);
                free(erefs);
                return IS_ERR_OVERFLOW;
            }
            e->n++;
        }
        erefs[g->n_edges] = (edge_ref_t){.to = e->to, .from = e->from, .edge = g->n_edges};
        g->n_edges++;
    }
    qsort(erefs, g->n_edges, sizeof(*erefs), cmp_edge_ref);
    for (size_t i = 0; i < g->n_edges; i++)
        g->by_to[i] = erefs[i].edge;
    free(refs);
    free(erefs);
    g->built = 1;
    return IS_OK;
}

/* ---- walking --------------------------------------------------------------- */

/* First index in [0, n) whose key (edge from, or to via by_to) is ≥ node. */
static size_t lower_bound(const genealogy_t *g, size_t node, int by_to) {
    size_t lo = 0, hi = g->n_edges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t v = by_to ? g->edges[g->by_to[mid]].to : g->edges[mid].from;
        if (v < node)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef struct walk {
    int *level;    /* per node: signed hops, valid when seen */
    char *seen;    /* per node: included in the result */
    char *used;    /* per edge: included in the result */
    size_t *queue; /* BFS */
} walk_t;

/* Breadth-first from the roots in one direction (sign -1 backward, +1 forward). */
static void walk_dir(genealogy_t *g, walk_t *w, const size_t *roots, size_t n_roots, int sign,
                     int depth) {
    char *visited = calloc(g->n_nodes, 1);
    int *hops = calloc(g->n_nodes, sizeof(*hops));
    size_t head = 0, tail = 0;
    if (!visited || !hops)
        goto out;
    for (size_t i = 0; i < n_roots; i++) {
        visited[roots[i]] = 1;
        w->queue[tail++] = roots[i];
    }
    while (head < tail) {
        size_t n = w->queue[head++];
        int h = hops[n];
        /* A lot at the last generation asked for is not expanded. */
        if (!g->nodes[n].is_order && depth > 0 && h / 2 >= depth)
            continue;
        size_t i = lower_bound(g, n, sign < 0);
        for (; i < g->n_edges; i++) {
            size_t ei = sign < 0 ? g->by_to[i] : i;
            const edge_t *e = &g->edges[ei];
            size_t next = sign < 0 ? e->from : e->to;
            if ((sign < 0 ? e->to : e->from) != n)
                break;
            if (is_decimal_sign(e->qty) <= 0)
                continue; /* undone by reversals */
            w->used[ei] = 1;
            if (visited[next])
                continue;
            visited[next] = 1;
            hops[next] = h + 1;
            if (!w->seen[next]) {
                w->seen[next] = 1;
                w->level[next] = sign * (h + 1);
            }
            w->queue[tail++] = next;
        }
    }
out:
    free(visited);
    free(hops);
}

static json_t *node_json(const node_t *n, int level, int root) {
    if (n->is_order)
        return json_pack("{s:s,s:s,s:s,s:s,s:i}", "id", n->id, "kind", "order", "site", n->site,
                         "order_id", n->order_id, "level", level);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:b}", "id", n->id, "kind", "lot", "site", n->site,
                     "material", n->material, "lot", n->lot, "level", level, "root", root);
}

json_t *genealogy_walk(genealogy_t *g, const char *lot, const char *material, const char *site,
                       genealogy_dir_t dir, int depth, is_err_t *rc, char *errstr,
                       size_t errstr_size) {
    walk_t w = {0};
    size_t *roots = NULL, n_roots = 0;
    json_t *doc = NULL, *jroots, *nodes, *edges, *inputs, *outputs, *ignored;

    *rc = build(g);
    if (*rc != IS_OK) {
        is_errf(errstr, errstr_size, "cannot build the genealogy graph: %s", is_err_str(*rc));
        return NULL;
    }
    roots = calloc(g->n_nodes + 1, sizeof(*roots));
    w.level = calloc(g->n_nodes + 1, sizeof(*w.level));
    w.seen = calloc(g->n_nodes + 1, 1);
    w.used = calloc(g->n_edges + 1, 1);
    w.queue = calloc(g->n_nodes + 1, sizeof(*w.queue));
    *rc = IS_ERR_NOMEM;
    if (!roots || !w.level || !w.seen || !w.used || !w.queue)
        goto out;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        if (!n->is_order && strcmp(n->lot, lot) == 0 &&
            (!material || strcmp(n->material, material) == 0) &&
            (!site || strcmp(n->site, site) == 0)) {
            roots[n_roots++] = i;
            w.seen[i] = 1;
        }
    }
    if (n_roots == 0) {
        *rc = IS_ERR_NOT_FOUND;
        is_errf(errstr, errstr_size,
                "lot '%s'%s%s%s%s has no GOODS_ISSUE or COMPLETION in the history read (%zu "
                "genealogy movements)",
                lot, material ? " of material " : "", material ? material : "",
                site ? " at site " : "", site ? site : "", g->n_raws);
        goto out;
    }
    if (dir & GENEALOGY_BACKWARD)
        walk_dir(g, &w, roots, n_roots, -1, depth);
    if (dir & GENEALOGY_FORWARD)
        walk_dir(g, &w, roots, n_roots, +1, depth);

    doc = json_pack("{s:s,s:o,s:o,s:s,s:i}", "lot", lot, "material",
                    material ? json_string(material) : json_null(), "site",
                    site ? json_string(site) : json_null(), "direction",
                    dir == GENEALOGY_BOTH      ? "both"
                    : dir == GENEALOGY_FORWARD ? "forward"
                                               : "backward",
                    "depth", depth);
    jroots = json_array();
    nodes = json_array();
    edges = json_array();
    inputs = json_array();
    outputs = json_array();
    ignored = json_array();
    if (!doc || !jroots || !nodes || !edges || !inputs || !outputs || !ignored) {
        json_decref(doc);
        json_decref(jroots);
        json_decref(nodes);
        json_decref(edges);
        json_decref(inputs);
        json_decref(outputs);
        json_decref(ignored);
        doc = NULL;
        goto out;
    }
    for (size_t i = 0; i < n_roots; i++)
        json_array_append_new(jroots, json_string(g->nodes[roots[i]].id));
    for (size_t i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        int is_root = w.seen[i] && w.level[i] == 0;
        if (!w.seen[i])
            continue;
        json_array_append_new(nodes, node_json(n, w.level[i], is_root));
        if (!n->is_order && !is_root)
            json_array_append_new(
                w.level[i] < 0 ? inputs : outputs,
                json_pack("{s:s,s:i}", "id", n->id, "generation", w.level[i] / 2));
    }
    for (size_t i = 0; i < g->n_edges; i++) {
        const edge_t *e = &g->edges[i];
        char q[IS_DECIMAL_STRLEN];
        json_t *ids;
        if (!w.used[i])
            continue;
        ids = json_array();
        for (size_t k = 0; k < e->n; k++)
            json_array_append_new(ids, json_string(g->raws[g->order[e->first + k]].movement_id));
        is_decimal_format(is_decimal_normalize(e->qty), q, sizeof(q));
        json_array_append_new(edges, json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "from",
                                               g->nodes[e->from].id, "to", g->nodes[e->to].id,
                                               "kind", e->produced ? "produced" : "consumed",
                                               "quantity", q, "uom", e->uom, "movements", ids));
    }
    /* The REVERSALs left out that touch a lot or order of the result. */
    for (size_t i = 0; i < g->n_raws; i++) {
        const raw_t *r = &g->raws[i];
        size_t lot, ord;
        if (!r->ignored)
            continue;
        lot = node_index(g, r->lot_key);
        ord = node_index(g, r->order_key);
        if ((lot != SIZE_MAX && w.seen[lot]) || (ord != SIZE_MAX && w.seen[ord]))
            json_array_append_new(ignored, json_pack("{s:s,s:s,s:s}", "movement_id", r->movement_id,
                                                     "reverses", strchr(r->reverses, SEP[0]) + 1,
                                                     "reason", r->ignored));
    }
    json_object_set_new(doc, "roots", jroots);
    json_object_set_new(doc, "nodes", nodes);
    json_object_set_new(doc, "edges", edges);
    json_object_set_new(doc, "inputs", inputs);
    json_object_set_new(doc, "outputs", outputs);
    json_object_set_new(doc, "ignored_reversals", ignored);
    *rc = IS_OK;
out:
    if (*rc == IS_ERR_NOMEM)
        is_errf(errstr, errstr_size, "out of memory walking the genealogy");
    free(roots);
    free(w.level);
    free(w.seen);
    free(w.used);
    free(w.queue);
    return doc;
}

/* ---- DOT --------------------------------------------------------------------- */

static void dot_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static const char *jstr(const json_t *o, const char *k) {
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

int genealogy_write_dot(const json_t *walk, FILE *f) {
    size_t i;
    json_t *n, *e;
    fputs("digraph genealogy {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
          "  edge [fontname=\"Helvetica\", fontsize=9];\n",
          f);
    json_array_foreach(json_object_get(walk, "nodes"), i, n) {
        char label[512];
        int is_order = strcmp(jstr(n, "kind"), "order") == 0;
        if (is_order)
            snprintf(label, sizeof(label), "%s\n(%s)", jstr(n, "order_id"), jstr(n, "site"));
        else
            snprintf(label, sizeof(label), "%s\n%s\n(%s)", jstr(n, "material"), jstr(n, "lot"),
                     jstr(n, "site"));
        fputs("  ", f);
        dot_str(f, jstr(n, "id"));
        fprintf(f, " [shape=%s, label=", is_order ? "ellipse" : "box");
        dot_str(f, label);
        if (json_is_true(json_object_get(n, "root")))
            fputs(", style=filled, fillcolor=\"#ffd966\"", f);
        fputs("];\n", f);
    }
    json_array_foreach(json_object_get(walk, "edges"), i, e) {
        char label[128];
        snprintf(label, sizeof(label), "%s %s", jstr(e, "quantity"), jstr(e, "uom"));
        fputs("  ", f);
        dot_str(f, jstr(e, "from"));
        fputs(" -> ", f);
        dot_str(f, jstr(e, "to"));
        fputs(" [label=", f);
        dot_str(f, label);
        fputs("];\n", f);
    }
    fputs("}\n", f);
    return ferror(f) ? -1 : 0;
}

/* ---- the command --------------------------------------------------------------- */

/* A stored movement into the graph (ctx: g, n = genealogy movements). */
static is_err_t from_store(void *opaque, const is_movement_t *m, sqlite3_stmt *st) {
    void **ctx = opaque;
    int used = 0;
    is_err_t rc = genealogy_add(ctx[0], m, &used);
    (void)st;
    *(size_t *)ctx[1] += (size_t)used;
    return rc;
}

static is_err_t load_store(genealogy_t *g, const consumer_config_t *cfg, const char *site,
                           size_t *n, char *errstr, size_t errstr_size) {
    static const int types[] = {INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE,
                                INVSYNC__V1__MOVEMENT_TYPE__COMPLETION,
                                INVSYNC__V1__MOVEMENT_TYPE__REVERSAL};
    void *ctx[2] = {g, n};
    /* Dead and ignored movements never happened as far as the ERP knows; everything else
     * (posted, pending, cancelled pairs, failed) is plant history. But a REVERSAL the ERP
     * refused (failed: maybe one that does not match its original) or an operator skipped
     * undoes nothing: its original stays booked, so its edge is still followed (a recall
     * scope may be too wide, never too narrow). A REVERSAL still queued is judged against
     * its original as from Kafka (resolve_reversals). */
    return investigation_store_movements(
        cfg,
        "SELECT payload, movement_id FROM movements WHERE type IN (?1, ?2, ?3)"
        " AND state NOT IN ('dead', 'ignored')"
        " AND NOT (type = ?3 AND state IN ('failed', 'skipped')) AND (?4 IS NULL OR site = ?4)"
        " ORDER BY producer_id, seq",
        types, 3, site, 1, from_store, ctx, errstr, errstr_size);
}

static int from_kafka(void *opaque, const replay_msg_t *msg) {
    void **ctx = opaque;
    int used = 0;
    if (msg->kind != REPLAY_MOVEMENT)
        return 0;
    if (genealogy_add(ctx[0], msg->m, &used) != IS_OK)
        return 1;
    *(size_t *)ctx[1] += (size_t)used;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: erp-consumer genealogy --config FILE --lot LOT [--material M] [--site S]\n"
               "           [--direction backward|forward|both] [--depth N] [--format json|dot]\n"
               "           [--from RFC3339 --to RFC3339]\n"
               "  backward: what went into LOT; forward: where LOT went (a recall's scope).\n"
               "  History: the consumer's store, or with --from/--to the Kafka topics.\n");
}

int genealogy_cli(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"lot", required_argument, NULL, 'l'},
                                         {"material", required_argument, NULL, 'M'},
                                         {"site", required_argument, NULL, 's'},
                                         {"direction", required_argument, NULL, 'd'},
                                         {"depth", required_argument, NULL, 'D'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"from", required_argument, NULL, 'F'},
                                         {"to", required_argument, NULL, 'T'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL, *lot = NULL, *material = NULL, *site = NULL, *format = "json",
               *from = NULL, *to = NULL, *direction = "backward";
    int64_t depth = 0, from_ms = 0, to_ms = 0;
    char errstr[1024];
    consumer_config_t cfg;
    is_policy_t *policy = NULL;
    genealogy_t *g = NULL;
    json_t *doc = NULL;
    replay_info_t info;
    size_t n = 0;
    is_err_t rc;
    int c, status = 2;
    genealogy_dir_t dir;
    uint32_t seen_opts = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        if (investigation_option_twice("erp-consumer genealogy", opts, c, &seen_opts))
            return 2;
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'l':
            lot = optarg;
            break;
        case 'M':
            material = optarg;
            break;
        case 's':
            site = optarg;
            break;
        case 'd':
            direction = optarg;
            break;
        case 'D':
            if (is_parse_int64(optarg, 0, 1000000, &depth) != IS_OK) {
                fprintf(stderr, "erp-consumer genealogy: --depth '%s' is not a number >= 0\n",
                        optarg);
                return 2;
            }
            break;
        case 'f':
            format = optarg;
            break;
        case 'F':
            from = optarg;
            break;
        case 'T':
            to = optarg;
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
        fprintf(stderr, "erp-consumer genealogy: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    dir = genealogy_dir_parse(direction);
    if (!lot || !*lot || optind < argc || !dir ||
        (strcmp(format, "json") != 0 && strcmp(format, "dot") != 0) || !from != !to) {
        fprintf(stderr, "erp-consumer genealogy: %s\n",
                !lot || !*lot   ? "--lot LOT is required"
                : optind < argc ? "unexpected argument"
                : !dir          ? "--direction must be backward, forward or both"
                : !from != !to  ? "--from and --to go together"
                                : "--format must be json or dot");
        usage(stderr);
        return 2;
    }
    if (from &&
        (is_parse_rfc3339(from, &from_ms) != IS_OK || is_parse_rfc3339(to, &to_ms) != IS_OK)) {
        fprintf(stderr, "erp-consumer genealogy: --from/--to must be RFC 3339 times, e.g. "
                        "2026-11-29T06:00:00Z or 2026-11-29T07:00:00+01:00\n");
        return 2;
    }
    if (investigation_load_config("genealogy", config, &cfg) != 0)
        return 2;
    status = 1;
    if (genealogy_new(&g) != IS_OK)
        goto out;
    if (from) {
        replay_filter_t f = {.site = site};
        void *ctx[2] = {g, &n};
        if (is_policy_load(cfg.policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
            fprintf(stderr, "erp-consumer genealogy: %s\n", errstr);
            status = 2;
            goto out;
        }
        rc = replay_read(&cfg, is_policy_topic_prefix(policy), from_ms, to_ms, &f, from_kafka, ctx,
                         &info, errstr, sizeof(errstr));
        if (rc != IS_OK) {
            fprintf(stderr, "erp-consumer genealogy: %s\n", errstr);
            status = rc == IS_ERR_INVALID || rc == IS_ERR_NOT_FOUND ? 2 : 1;
            goto out;
        }
    } else if (load_store(g, &cfg, site, &n, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer genealogy: cannot read '%s': %s\n", cfg.store_path, errstr);
        goto out;
    }
    doc = genealogy_walk(g, lot, material, site, dir, (int)depth, &rc, errstr, sizeof(errstr));
    if (!doc) {
        fprintf(stderr, "erp-consumer genealogy: %s\n", errstr);
        goto out;
    }
    json_object_set_new(doc, "source", json_string(from ? "kafka" : "store"));
    json_object_set_new(doc, "genealogy_movements", json_integer((json_int_t)n));
    if (strcmp(format, "dot") == 0) {
        genealogy_write_dot(doc, stdout);
    } else {
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    }
    fprintf(stderr, "genealogy: %zu input lot(s), %zu output lot(s) from %zu movement(s) (%s)\n",
            json_array_size(json_object_get(doc, "inputs")),
            json_array_size(json_object_get(doc, "outputs")), n, from ? "kafka" : "store");
    {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(doc, "ignored_reversals"), i, v) {
            fprintf(stderr,
                    "genealogy: %s undoes nothing here, its original's edge is followed: %s\n",
                    json_string_value(json_object_get(v, "movement_id")),
                    json_string_value(json_object_get(v, "reason")));
        }
    }
    status = 0;
    if (from && info.retention_gap) {
        char hint[160];
        replay_retention_hint(&info, hint, sizeof(hint));
        fprintf(stderr, "erp-consumer genealogy: %s: the genealogy may be incomplete\n", hint);
        status = 3;
    }
out:
    json_decref(doc);
    genealogy_free(g);
    is_policy_destroy(policy);
    consumer_config_release(&cfg);
    return status;
}
