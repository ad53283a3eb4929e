/*
 * mes-sim.c — the simulated MES: opening stock, realistic movement traffic,
 * posting to mes-producer, and the on-hand the ERP must end with.
 *
 *   mes-sim opening --sites A,B --seed N [--lots-per-site 20] --out opening.json
 *   mes-sim run --url URL --sites A,B --seed N (--movements N | --duration D) [...]
 *   mes-sim gen --sites A,B --seed N (--movements N | --duration D) [--out F.jsonl]
 *   mes-sim compare EXPECTED.json ACTUAL.json
 *
 * The plant model, per site: component lots (materials RM-1xx in KG with 3
 * decimals, PKG-2xx in EA) start in WH-01 — the opening stock, which the ERP
 * receives, not the MES. Traffic moves them to LINE-1/LINE-2 (TRANSFER),
 * issues them to production orders ORD-<site>-<n> (GOODS_ISSUE), scraps some
 * (SCRAP), completes finished lots FG-3xx / L<site>-<n> into FG-STAGE
 * (COMPLETION), blocks and releases finished lots (QUARANTINE/RELEASE),
 * corrects counts (ADJUSTMENT) and reverses recent mistakes (REVERSAL).
 *
 * Every generated movement is feasible in generation order: its effects,
 * computed by is_movement_effects() (the single definition the ERP ledger
 * uses too), never drive any (site, material, lot, location, status) below
 * zero. All of a movement's effects stay inside its own lot, so any consumer
 * that keeps each lot's order (the Kafka key) sees them feasible too.
 *
 * Determinism: everything but wall-clock event times derives from --seed via
 * independent splitmix64 streams — per site for the opening stock (so a
 * site's lots do not depend on which other sites are listed) and for traffic
 * content, one for site choice, one for resend decisions (so --resend does
 * not change the unique traffic). `gen` uses a synthetic clock by default, so
 * the same options give byte-identical output; `run` stamps event_time with
 * the wall clock unless --start-time is given.
 *
 * Posting (`run`): one libcurl easy handle (keep-alive), sequential, paced by
 * a token bucket to --rate movements/s. Movements are buffered per site and
 * sent --batch at a time (a site's order is kept; batches never mix sites, so
 * each carries its site's bearer token). A resend is a movement already
 * accepted, sent again later in a request of its own, byte-identical; it
 * must be answered "duplicate". The expected on-hand is opening + effects of
 * every accepted unique movement, tracked separately from the generator's
 * stock so a run cut short still writes a correct expectation.
 *
 * Load: in memory; a movement is kept only while a batch, the resend queue
 * or the reversal window refers to it, so memory grows only with the stock
 * table (one row per lot and place) — fine for millions of movements. The
 * MES never receives components, so their stock runs out after roughly
 * 3 000 movements per component lot (≈ 60 000 per site at the default 20
 * lots); past that the traffic drifts to finished goods only. Raise
 * --lots-per-site for longer runs.
 *
 * One file, although long: the build makes one program of each .c file in
 * test/tools, and the parts (stock table, plant model, poster) are only
 * ever used together here.
 *
 * Exit codes: 0 ok; 1 local failure (I/O, memory); 2 bad arguments, bad
 * input, or the producer answered anything but 202 with the expected item
 * statuses (compare: 1 = files differ, 2 = bad input).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "decimal.h"
#include "duration.h"
#include "movement.h"
#include "movement_json.h"

#define MS_MAX_SITES        64
#define MS_SITE_MAX         32   /* longest site name accepted */
#define MS_RECENT           16   /* per site: movements a REVERSAL may pick from */
#define MS_FG_RECENT        32   /* per site: finished lots QUARANTINE/RELEASE/... pick from */
#define MS_RESEND_MAX_DELAY 50   /* a resend goes out within this many movements */
#define MS_FLUSH_AGE_MS     1000 /* a part-filled site batch waits at most this long */
#define MS_HTTP_ATTEMPTS    10   /* per request, on connection failure / 5xx / 429 (~11 s) */
#define MS_BACKOFF_MAX_MS   2000 /* retry delays double from 100 ms up to this */
#define MS_MAX_RESP         (16 << 20) /* response bodies larger than this are an error */
#define MS_QTY_SCALE_MAX    3          /* decimal places the simulator ever produces */
#define MS_GEN_EPOCH        "2026-01-05T06:00:00Z" /* gen's default synthetic clock start */

#define MS_LOC_WH "WH-01"
#define MS_LOC_FG "FG-STAGE"

#define ST_UNR INVSYNC__V1__STOCK_STATUS__UNRESTRICTED
#define ST_BLK INVSYNC__V1__STOCK_STATUS__BLOCKED

/* The one global: SIGINT/SIGTERM end `run` early but cleanly (outputs are written). */
static volatile sig_atomic_t ms_stop;

static void ms_on_signal(int sig) {
    (void)sig;
    ms_stop = 1;
}

static void ms_copy(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

/* ---- deterministic randomness (splitmix64) -------------------------------- */

typedef struct ms_rng {
    uint64_t s;
} ms_rng_t;

static uint64_t ms_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t ms_rng_next(ms_rng_t *r) {
    return ms_mix64(r->s += 0x9e3779b97f4a7c15ULL);
}

static uint64_t ms_fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A stream for (seed, name, purpose): independent of every other stream. */
static ms_rng_t ms_rng_for(uint64_t seed, const char *name, uint64_t purpose) {
    /* Hash, do not offset: seeds that differ by a multiple of the step would be shifted copies. */
    ms_rng_t r = {ms_mix64(ms_mix64(seed) ^ ms_mix64(ms_fnv1a(name) + purpose))};
    return r;
}

/* Uniform in [0, n), unbiased; n > 0. */
static uint64_t ms_rng_below(ms_rng_t *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do {
        v = ms_rng_next(r);
    } while (v >= limit);
    return v % n;
}

/* Uniform in [lo, hi]; lo <= hi. */
static int64_t ms_rng_range(ms_rng_t *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)ms_rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* True with probability ppm / 1 000 000. */
static int ms_rng_ppm(ms_rng_t *r, uint32_t ppm) {
    return ms_rng_below(r, 1000000) < ppm;
}

/* ---- stock table: (site, material, lot, location, status, uom) -> decimal -- */

typedef struct ms_row {
    struct ms_row *next; /* hash chain */
    uint64_t hash;
    int status; /* Invsync__V1__StockStatus */
    is_decimal_t qty;
    const char *site, *material, *lot, *location, *uom; /* point into text */
    char text[];
} ms_row_t;

typedef struct ms_stock {
    ms_row_t **b; /* buckets */
    size_t nb;    /* bucket count, a power of two */
    size_t n;     /* rows */
} ms_stock_t;

/* Field order of a key: site, material, lot, location, uom. */
enum { K_SITE, K_MAT, K_LOT, K_LOC, K_UOM, K__N };

static uint64_t ms_key_hash(const char *const k[K__N], int status) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < K__N; i++) {
        for (const char *p = k[i]; *p; p++) {
            h ^= (unsigned char)*p;
            h *= 0x100000001b3ULL;
        }
        h ^= 0x1f;
        h *= 0x100000001b3ULL;
    }
    return h ^ (uint64_t)status;
}

static void ms_stock_release(ms_stock_t *st) {
    for (size_t i = 0; i < st->nb; i++) {
        ms_row_t *r = st->b[i];
        while (r) {
            ms_row_t *next = r->next;
            free(r);
            r = next;
        }
    }
    free(st->b);
    memset(st, 0, sizeof(*st));
}

static int ms_stock_grow(ms_stock_t *st) {
    size_t nb = st->nb ? st->nb * 2 : 1024;
    ms_row_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < st->nb; i++) {
        ms_row_t *r = st->b[i];
        while (r) {
            ms_row_t *next = r->next;
            size_t j = r->hash & (nb - 1);
            r->next = b[j];
            b[j] = r;
            r = next;
        }
    }
    free(st->b);
    st->b = b;
    st->nb = nb;
    return 0;
}

/*
 * The row for a key; with create, a zero row is added when absent and
 * *created (if non-NULL) says so. NULL when absent (no create) or on ENOMEM.
 */
static ms_row_t *ms_stock_find(ms_stock_t *st, const char *const k[K__N], int status, int create,
                               int *created) {
    uint64_t h = ms_key_hash(k, status);
    size_t len[K__N], total = 0;
    ms_row_t *r;
    char *p;
    if (created)
        *created = 0;
    if (st->nb) {
        for (r = st->b[h & (st->nb - 1)]; r; r = r->next) {
            if (r->hash == h && r->status == status && strcmp(r->site, k[K_SITE]) == 0 &&
                strcmp(r->material, k[K_MAT]) == 0 && strcmp(r->lot, k[K_LOT]) == 0 &&
                strcmp(r->location, k[K_LOC]) == 0 && strcmp(r->uom, k[K_UOM]) == 0)
                return r;
        }
    }
    if (!create)
        return NULL;
    if (st->n >= st->nb && ms_stock_grow(st) != 0)
        return NULL;
    for (int i = 0; i < K__N; i++) {
        len[i] = strlen(k[i]);
        total += len[i] + 1;
    }
    r = calloc(1, sizeof(*r) + total);
    if (!r)
        return NULL;
    r->hash = h;
    r->status = status;
    p = r->text;
    for (int i = 0; i < K__N; i++) {
        const char **dst[K__N] = {&r->site, &r->material, &r->lot, &r->location, &r->uom};
        memcpy(p, k[i], len[i] + 1);
        *dst[i] = p;
        p += len[i] + 1;
    }
    r->next = st->b[h & (st->nb - 1)];
    st->b[h & (st->nb - 1)] = r;
    st->n++;
    if (created)
        *created = 1;
    return r;
}

static is_decimal_t ms_stock_get(ms_stock_t *st, const char *site, const char *material,
                                 const char *lot, const char *location, int status,
                                 const char *uom) {
    const char *k[K__N] = {site, material, lot, location, uom};
    ms_row_t *r = ms_stock_find(st, k, status, 0, NULL);
    is_decimal_t zero = {0, 0};
    return r ? r->qty : zero;
}

/*
 * Apply a movement's effects (is_movement_effects). With check, nothing is
 * changed and IS_ERR_INVALID is returned if any place would go below zero.
 * IS_ERR_INVALID also when the movement has no effects; IS_ERR_OVERFLOW,
 * IS_ERR_NOMEM as usual.
 */
static is_err_t ms_stock_apply(ms_stock_t *st, const is_movement_t *m, int check) {
    is_stock_effect_t eff[4];
    ms_row_t *rows[4];
    is_decimal_t vals[4];
    size_t n = is_movement_effects(m, eff);
    if (n == 0)
        return IS_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        const char *k[K__N] = {m->site, m->material, m->lot, eff[i].location, m->uom};
        is_decimal_t base;
        is_err_t rc;
        rows[i] = ms_stock_find(st, k, eff[i].status, 1, NULL);
        if (!rows[i])
            return IS_ERR_NOMEM;
        base = rows[i]->qty;
        for (size_t j = 0; j < i; j++) {
            if (rows[j] == rows[i])
                base = vals[j]; /* the latest pending value of the same place */
        }
        rc = is_decimal_add(base, eff[i].delta, &vals[i]);
        if (rc != IS_OK)
            return rc;
        if (check && is_decimal_sign(vals[i]) < 0)
            return IS_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++)
        rows[i]->qty = vals[i];
    return IS_OK;
}

static int ms_row_cmp(const void *a, const void *b) {
    const ms_row_t *x = *(const ms_row_t *const *)a;
    const ms_row_t *y = *(const ms_row_t *const *)b;
    int c;
    if ((c = strcmp(x->site, y->site)) != 0)
        return c;
    if ((c = strcmp(x->material, y->material)) != 0)
        return c;
    if ((c = strcmp(x->lot, y->lot)) != 0)
        return c;
    if ((c = strcmp(x->location, y->location)) != 0)
        return c;
    if ((c = strcmp(is_stock_status_name(x->status), is_stock_status_name(y->status))) != 0)
        return c;
    return strcmp(x->uom, y->uom);
}

/* All rows (nonzero_only: without the zero ones), sorted by key. Caller frees *out. */
static int ms_stock_sorted(const ms_stock_t *st, int nonzero_only, ms_row_t ***out, size_t *n) {
    ms_row_t **v = malloc((st->n ? st->n : 1) * sizeof(*v));
    size_t k = 0;
    if (!v)
        return -1;
    for (size_t i = 0; i < st->nb; i++) {
        for (ms_row_t *r = st->b[i]; r; r = r->next) {
            if (!nonzero_only || is_decimal_sign(r->qty) != 0)
                v[k++] = r;
        }
    }
    qsort(v, k, sizeof(*v), ms_row_cmp);
    *out = v;
    *n = k;
    return 0;
}

/* ---- output files --------------------------------------------------------- */

/* Write data to path atomically (path.tmp + rename). Returns 0 or -1 (message printed). */
static int ms_write_file(const char *path, const char *data, size_t len) {
    char tmp[4096];
    FILE *f;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        fprintf(stderr, "mes-sim: path too long: '%s'\n", path);
        return -1;
    }
    f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "mes-sim: cannot open '%s': %s\n", tmp, strerror(errno));
        return -1;
    }
    if (fwrite(data, 1, len, f) != len || fflush(f) != 0) {
        fprintf(stderr, "mes-sim: cannot write '%s': %s\n", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "mes-sim: cannot write '%s': %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* A growable text buffer. */
typedef struct ms_buf {
    char *p;
    size_t len, cap;
} ms_buf_t;

static int ms_buf_add(ms_buf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static json_t *ms_row_json(const ms_row_t *r) {
    char q[IS_DECIMAL_STRLEN];
    is_decimal_format(r->qty, q, sizeof(q));
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "site", r->site, "material", r->material,
                     "lot", r->lot, "location", r->location, "stock_status",
                     is_stock_status_name(r->status), "uom", r->uom, "quantity", q);
}

/*
 * Write the nonzero rows of st as a JSON array, one row per line (diffable),
 * sorted by key. "-" is stdout. Returns 0 or -1 (message printed).
 */
static int ms_write_rows(const char *path, const ms_stock_t *st) {
    ms_row_t **rows = NULL;
    size_t n = 0;
    ms_buf_t b = {0};
    int rc = -1;
    if (ms_stock_sorted(st, 1, &rows, &n) != 0 || ms_buf_add(&b, "[", 1) != 0)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        json_t *o = ms_row_json(rows[i]);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        int bad = !s || ms_buf_add(&b, i ? ",\n " : "\n ", i ? 3 : 2) != 0 ||
                  ms_buf_add(&b, s, strlen(s)) != 0;
        free(s);
        json_decref(o);
        if (bad)
            goto nomem;
    }
    if (ms_buf_add(&b, "\n]\n", 3) != 0)
        goto nomem;
    if (strcmp(path, "-") == 0)
        rc = (fwrite(b.p, 1, b.len, stdout) == b.len && fflush(stdout) == 0) ? 0 : -1;
    else
        rc = ms_write_file(path, b.p, b.len);
    goto out;
nomem:
    fprintf(stderr, "mes-sim: out of memory writing '%s'\n", path);
out:
    free(rows);
    free(b.p);
    return rc;
}

/* ---- the plant model ------------------------------------------------------ */

typedef struct ms_lot {
    char material[16];
    char lot[MS_SITE_MAX + 24];
    char uom[4];
    uint32_t scale; /* decimal places of this material's quantities */
} ms_lot_t;

/*
 * One generated movement. The protobuf struct points into the arrays
 * below, so a record never moves; it is freed when the last reference (site
 * batch, resend queue, reversal window, generator) is dropped.
 */
typedef struct ms_mv {
    is_movement_t m;
    Invsync__V1__Decimal qty;
    char id[MS_SITE_MAX + 48];
    char source[IS_MOVEMENT_MAX_STR + 1];
    char site[MS_SITE_MAX + 1];
    char material[16];
    char lot[MS_SITE_MAX + 24];
    char location[16];
    char to_location[16];
    char uom[4];
    char order_id[MS_SITE_MAX + 24];
    char operation[8];
    char reason[24];
    char reverses[MS_SITE_MAX + 48];
    size_t site_idx;
    int refs;
    unsigned accepted : 1; /* the producer answered "accepted" (run) */
    unsigned reversed : 1; /* a REVERSAL of it has been generated */
} ms_mv_t;

typedef struct ms_site {
    char name[MS_SITE_MAX + 1];
    const char *token; /* bearer token, NULL = none; never printed */
    ms_rng_t rng;      /* traffic content of this site */
    ms_lot_t *comps;   /* component lots (the opening stock) */
    size_t n_comps;
    ms_lot_t *fg; /* finished lots, in completion order */
    size_t n_fg, cap_fg;
    uint64_t next_mv;           /* movement number of the next movement */
    uint64_t order_no;          /* current production order */
    int order_fg;               /* its finished material, FG-3<nn> */
    int order_left;             /* completions left on the order */
    int lot_left;               /* completions left into the current finished lot */
    ms_mv_t *recent[MS_RECENT]; /* reversal window (ring) */
    size_t recent_next;
    ms_mv_t **batch; /* waiting to be posted (run) */
    size_t n_batch;
    int64_t batch_since_ms; /* monotonic time the oldest was added */
} ms_site_t;

typedef struct ms_resend {
    ms_mv_t *mv;
    uint64_t due; /* resend once this many unique movements have been generated */
} ms_resend_t;

typedef struct ms_opts {
    const char *cmd;
    char sites[MS_MAX_SITES][MS_SITE_MAX + 1];
    size_t n_sites;
    const char *tokens[MS_MAX_SITES]; /* "SITE=TOKEN" as given */
    size_t n_tokens;
    uint64_t seed;
    int64_t lots_per_site;
    int64_t movements;   /* 0 = use duration */
    int64_t duration_ms; /* 0 = use movements */
    int64_t rate;        /* movements/s, 0 = unlimited */
    int64_t batch;
    uint32_t resend_ppm; /* probability × 10^6 */
    int protobuf;
    const char *source_system;
    const char *url;
    const char *out;
    const char *expected;
    const char *summary;
    int64_t start_ms; /* synthetic clock start; -1 = wall clock */
} ms_opts_t;

typedef struct ms_sim {
    const ms_opts_t *o;
    ms_site_t sites[MS_MAX_SITES];
    size_t n_sites;
    ms_stock_t gen;       /* stock as generated: feasibility of the next movement */
    ms_stock_t acc;       /* opening + accepted movements: the expected ERP on-hand */
    ms_rng_t rng_site;    /* which site moves next */
    ms_rng_t rng_resend;  /* resend decisions */
    uint64_t n_generated; /* unique movements so far */
    ms_resend_t *resends;
    size_t n_resends, cap_resends;
    /* counters for the summary */
    uint64_t sent, accepted, duplicates, requests, retries;
    uint64_t by_type[16];
    uint64_t *by_site;
    int64_t t0_ms;
    char error[512]; /* why run stopped with exit 2, for the summary */
    /* HTTP */
    CURL *curl;
    ms_buf_t resp;
} ms_sim_t;

/* Materials as in deploy/materials.csv (the policy's material master). */
static const char *const ms_rm[] = {"RM-101", "RM-102", "RM-103", "RM-104", "RM-105",
                                    "RM-106", "RM-107", "RM-108", "RM-109", "RM-110"};
static const char *const ms_pkg[] = {"PKG-201", "PKG-202", "PKG-203", "PKG-204", "PKG-205"};
#define MS_N_FG 5 /* FG-301 … FG-305 (301–303 regulated: real-time tier) */
static const char *const ms_scrap_reasons[] = {"DAMAGED", "EXPIRED", "CONTAMINATED"};
#define MS_NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void ms_mv_unref(ms_mv_t *mv) {
    if (mv && --mv->refs == 0)
        free(mv);
}

static ms_mv_t *ms_mv_ref(ms_mv_t *mv) {
    mv->refs++;
    return mv;
}

/*
 * Build the world from the options: sites, their component lots and the
 * opening stock in both stock tables. Deterministic in (seed, site name,
 * lots-per-site). Returns 0, or -1 on ENOMEM.
 */
static int ms_world_init(ms_sim_t *s, const ms_opts_t *o) {
    memset(s, 0, sizeof(*s));
    s->o = o;
    s->n_sites = o->n_sites;
    s->rng_site = ms_rng_for(o->seed, "", 1);
    s->rng_resend = ms_rng_for(o->seed, "", 2);
    s->by_site = calloc(o->n_sites, sizeof(*s->by_site));
    if (!s->by_site)
        return -1;
    for (size_t i = 0; i < o->n_sites; i++) {
        ms_site_t *site = &s->sites[i];
        ms_rng_t open = ms_rng_for(o->seed, o->sites[i], 3);
        ms_copy(site->name, sizeof(site->name), o->sites[i]);
        site->rng = ms_rng_for(o->seed, o->sites[i], 4);
        site->n_comps = (size_t)o->lots_per_site;
        site->comps = calloc(site->n_comps, sizeof(*site->comps));
        site->batch = calloc((size_t)(o->batch > 0 ? o->batch : 1), sizeof(*site->batch));
        if (!site->comps || !site->batch)
            return -1;
        for (size_t k = 0; k < site->n_comps; k++) {
            ms_lot_t *l = &site->comps[k];
            is_decimal_t q;
            const char *key[K__N];
            ms_row_t *r;
            /* One lot in four is packaging (EA); the rest raw material (KG). */
            int pkg = (k % 4) == 3;
            if (pkg) {
                ms_copy(l->material, sizeof(l->material),
                        ms_pkg[ms_rng_below(&open, MS_NELEM(ms_pkg))]);
                ms_copy(l->uom, sizeof(l->uom), "EA");
                l->scale = 0;
                q.units = ms_rng_range(&open, 20000, 200000);
            } else {
                ms_copy(l->material, sizeof(l->material),
                        ms_rm[ms_rng_below(&open, MS_NELEM(ms_rm))]);
                ms_copy(l->uom, sizeof(l->uom), "KG");
                l->scale = 3;
                q.units = ms_rng_range(&open, 5000000, 50000000); /* 5 000 – 50 000 KG */
            }
            q.scale = l->scale;
            snprintf(l->lot, sizeof(l->lot), "C%s-%zu", site->name, k + 1);
            key[K_SITE] = site->name;
            key[K_MAT] = l->material;
            key[K_LOT] = l->lot;
            key[K_LOC] = MS_LOC_WH;
            key[K_UOM] = l->uom;
            r = ms_stock_find(&s->gen, key, ST_UNR, 1, NULL);
            if (!r)
                return -1;
            r->qty = q;
            r = ms_stock_find(&s->acc, key, ST_UNR, 1, NULL);
            if (!r)
                return -1;
            r->qty = q;
        }
        site->next_mv = 1;
        site->order_no = 1;
        site->order_fg = (int)ms_rng_below(&site->rng, MS_N_FG);
        site->order_left = (int)ms_rng_range(&site->rng, 3, 8);
    }
    return 0;
}

static void ms_world_release(ms_sim_t *s) {
    for (size_t i = 0; i < s->n_sites; i++) {
        ms_site_t *site = &s->sites[i];
        for (size_t k = 0; k < MS_RECENT; k++)
            ms_mv_unref(site->recent[k]);
        for (size_t k = 0; k < site->n_batch; k++)
            ms_mv_unref(site->batch[k]);
        free(site->comps);
        free(site->fg);
        free(site->batch);
    }
    for (size_t i = 0; i < s->n_resends; i++)
        ms_mv_unref(s->resends[i].mv);
    free(s->resends);
    free(s->by_site);
    ms_stock_release(&s->gen);
    ms_stock_release(&s->acc);
    free(s->resp.p);
}

static int64_t ms_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A new movement of site with the common fields set; NULL on ENOMEM. */
static ms_mv_t *ms_mv_new(ms_sim_t *s, size_t site_idx, int type, const ms_lot_t *l,
                          const char *location) {
    ms_mv_t *mv = calloc(1, sizeof(*mv));
    ms_site_t *site = &s->sites[site_idx];
    Invsync__V1__Movement init = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal dinit = INVSYNC__V1__DECIMAL__INIT;
    if (!mv)
        return NULL;
    mv->refs = 1;
    mv->site_idx = site_idx;
    mv->m = init;
    mv->qty = dinit;
    ms_copy(mv->source, sizeof(mv->source), s->o->source_system);
    ms_copy(mv->site, sizeof(mv->site), site->name);
    ms_copy(mv->material, sizeof(mv->material), l->material);
    ms_copy(mv->lot, sizeof(mv->lot), l->lot);
    ms_copy(mv->location, sizeof(mv->location), location);
    ms_copy(mv->uom, sizeof(mv->uom), l->uom);
    mv->m.movement_id = mv->id;
    mv->m.source_system = mv->source;
    mv->m.site = mv->site;
    mv->m.type = (Invsync__V1__MovementType)type;
    mv->m.material = mv->material;
    mv->m.lot = mv->lot;
    mv->m.location = mv->location;
    mv->m.to_location = mv->to_location;
    mv->m.quantity = &mv->qty;
    mv->m.uom = mv->uom;
    mv->m.order_id = mv->order_id;
    mv->m.operation = mv->operation;
    mv->m.reason_code = mv->reason;
    mv->m.reverses_movement_id = mv->reverses;
    return mv;
}

/* Set the quantity: units at the lot's scale; KG quantities are shown normalized half the time. */
static void ms_mv_set_qty(ms_mv_t *mv, ms_site_t *site, const ms_lot_t *l, int64_t units) {
    is_decimal_t d = {units, l->scale};
    if (l->scale > 0 && ms_rng_below(&site->rng, 2))
        d = is_decimal_normalize(d);
    mv->qty.units = d.units;
    mv->qty.scale = d.scale;
}

/* Available stock of a lot at a place, in units of the lot's scale (≥ 0). */
static int64_t ms_avail(ms_sim_t *s, const ms_site_t *site, const ms_lot_t *l, const char *loc,
                        int status) {
    is_decimal_t d = ms_stock_get(&s->gen, site->name, l->material, l->lot, loc, status, l->uom);
    is_decimal_t r;
    if (is_decimal_rescale(d, l->scale, &r) != IS_OK)
        return 0; /* finer than the lot's scale: never produced here */
    return r.units > 0 ? r.units : 0;
}

static int64_t ms_min(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static const char *ms_line(ms_site_t *site) {
    return ms_rng_below(&site->rng, 2) ? "LINE-2" : "LINE-1";
}

/* A component lot with stock at loc/UNRESTRICTED (a few random tries); NULL if none found. */
static const ms_lot_t *ms_pick_comp(ms_sim_t *s, ms_site_t *site, const char *loc, int64_t *avail) {
    for (int t = 0; t < 6; t++) {
        const ms_lot_t *l = &site->comps[ms_rng_below(&site->rng, site->n_comps)];
        *avail = ms_avail(s, site, l, loc, ST_UNR);
        if (*avail > 0)
            return l;
    }
    return NULL;
}

/* A recent finished lot with stock at FG-STAGE in status; NULL if none found. */
static const ms_lot_t *ms_pick_fg(ms_sim_t *s, ms_site_t *site, int status, int64_t *avail) {
    size_t window = site->n_fg < MS_FG_RECENT ? site->n_fg : MS_FG_RECENT;
    if (window == 0)
        return NULL;
    for (int t = 0; t < 6; t++) {
        const ms_lot_t *l = &site->fg[site->n_fg - 1 - ms_rng_below(&site->rng, window)];
        *avail = ms_avail(s, site, l, MS_LOC_FG, status);
        if (*avail > 0)
            return l;
    }
    return NULL;
}

/*
 * Part of what is available: all of it with probability all_pct %, else
 * lo..hi capped at avail — and then all of it if less than lo would remain
 * (a line uses up the rest of a lot rather than leaving crumbs).
 */
static int64_t ms_part(ms_site_t *site, int64_t avail, int all_pct, int64_t lo, int64_t hi) {
    int64_t q;
    if ((int)ms_rng_below(&site->rng, 100) < all_pct)
        return avail;
    q = ms_min(avail, ms_rng_range(&site->rng, lo, hi));
    return avail - q < lo ? avail : q;
}

enum ms_action {
    ACT_TRANSFER,
    ACT_RETURN,
    ACT_ISSUE,
    ACT_COMPLETE,
    ACT_SCRAP,
    ACT_QUARANTINE,
    ACT_RELEASE,
    ACT_ADJUST,
    ACT_REVERSE,
    ACT__COUNT
};

/* Relative frequency of each action (a plant issues and completes far more than it blocks). */
static const int ms_weights[ACT__COUNT] = {22, 3, 25, 16, 5, 6, 5, 8, 4};

/* The finished lot the current order completes into, opening a new lot/order as due. */
static ms_lot_t *ms_completion_lot(ms_site_t *site) {
    if (site->order_left <= 0) {
        site->order_no++;
        site->order_fg = (int)ms_rng_below(&site->rng, MS_N_FG);
        site->order_left = (int)ms_rng_range(&site->rng, 3, 8);
        site->lot_left = 0;
    }
    if (site->lot_left <= 0 || site->n_fg == 0) {
        ms_lot_t *l;
        if (site->n_fg == site->cap_fg) {
            size_t cap = site->cap_fg ? site->cap_fg * 2 : 64;
            ms_lot_t *p = realloc(site->fg, cap * sizeof(*p));
            if (!p)
                return NULL;
            site->fg = p;
            site->cap_fg = cap;
        }
        l = &site->fg[site->n_fg++];
        memset(l, 0, sizeof(*l));
        snprintf(l->material, sizeof(l->material), "FG-3%02d", site->order_fg + 1);
        snprintf(l->lot, sizeof(l->lot), "L%s-%zu", site->name, site->n_fg);
        ms_copy(l->uom, sizeof(l->uom), "EA");
        l->scale = 0;
        site->lot_left = (int)ms_rng_range(&site->rng, 1, 3);
    }
    site->lot_left--;
    site->order_left--;
    return &site->fg[site->n_fg - 1];
}

/*
 * Try one action at a site: a candidate movement (not yet checked against
 * stock), or NULL when the action has no candidate right now or on ENOMEM
 * (*nomem set).
 */
static ms_mv_t *ms_try_action(ms_sim_t *s, size_t si, enum ms_action act, int *nomem) {
    ms_site_t *site = &s->sites[si];
    const ms_lot_t *l = NULL;
    ms_mv_t *mv = NULL;
    int64_t avail = 0, q = 0;
    int kg;
    switch (act) {
    case ACT_TRANSFER:
        l = ms_pick_comp(s, site, MS_LOC_WH, &avail);
        if (!l)
            return NULL;
        kg = l->scale > 0;
        q = ms_part(site, avail, 0, kg ? 20000 : 100, kg ? 250000 : 1000);
        if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, l, MS_LOC_WH)))
            break;
        ms_copy(mv->to_location, sizeof(mv->to_location), ms_line(site));
        mv->m.from_status = ST_UNR;
        break;
    case ACT_RETURN: {
        const char *line = ms_line(site);
        l = ms_pick_comp(s, site, line, &avail);
        if (!l)
            return NULL;
        q = ms_part(site, avail, 60, 1, avail);
        if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, l, line)))
            break;
        ms_copy(mv->to_location, sizeof(mv->to_location), MS_LOC_WH);
        mv->m.from_status = ST_UNR;
        break;
    }
    case ACT_ISSUE: {
        const char *line = ms_line(site);
        l = ms_pick_comp(s, site, line, &avail);
        if (!l)
            return NULL;
        kg = l->scale > 0;
        q = ms_part(site, avail, 0, kg ? 500 : 10, kg ? 40000 : 300);
        if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, l, line)))
            break;
        snprintf(mv->order_id, sizeof(mv->order_id), "ORD-%s-%llu", site->name,
                 (unsigned long long)site->order_no);
        ms_copy(mv->operation, sizeof(mv->operation), "0010");
        mv->m.from_status = ST_UNR;
        break;
    }
    case ACT_COMPLETE: {
        l = ms_completion_lot(site); /* may open the next order */
        if (!l) {
            *nomem = 1;
            return NULL;
        }
        q = ms_rng_range(&site->rng, 5, 120);
        if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, l, MS_LOC_FG)))
            break;
        snprintf(mv->order_id, sizeof(mv->order_id), "ORD-%s-%llu", site->name,
                 (unsigned long long)site->order_no);
        ms_copy(mv->operation, sizeof(mv->operation), "0020");
        mv->m.to_status = ST_UNR;
        break;
    }
    case ACT_SCRAP:
        if (ms_rng_below(&site->rng, 10) < 3) {
            /* Quality reject: scrap a blocked finished lot. */
            l = ms_pick_fg(s, site, ST_BLK, &avail);
            if (!l)
                return NULL;
            q = ms_part(site, avail, 50, 1, avail);
            if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__SCRAP, l, MS_LOC_FG)))
                break;
            mv->m.from_status = ST_BLK;
            ms_copy(mv->reason, sizeof(mv->reason), "QUALITY_REJECT");
        } else {
            const char *line = ms_line(site);
            l = ms_pick_comp(s, site, line, &avail);
            if (!l)
                return NULL;
            kg = l->scale > 0;
            q = ms_part(site, avail, 0, kg ? 10 : 1, kg ? 2000 : 20);
            if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__SCRAP, l, line)))
                break;
            mv->m.from_status = ST_UNR;
            ms_copy(mv->reason, sizeof(mv->reason),
                    ms_scrap_reasons[ms_rng_below(&site->rng, MS_NELEM(ms_scrap_reasons))]);
        }
        break;
    case ACT_QUARANTINE:
    case ACT_RELEASE: {
        int from = act == ACT_QUARANTINE ? ST_UNR : ST_BLK;
        int type = act == ACT_QUARANTINE ? INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE
                                         : INVSYNC__V1__MOVEMENT_TYPE__RELEASE;
        l = ms_pick_fg(s, site, from, &avail);
        if (!l)
            return NULL;
        q = ms_part(site, avail, 70, 1, avail);
        if (!(mv = ms_mv_new(s, si, type, l, MS_LOC_FG)))
            break;
        mv->m.from_status = (Invsync__V1__StockStatus)from;
        mv->m.to_status = (Invsync__V1__StockStatus)(from == ST_UNR ? ST_BLK : ST_UNR);
        break;
    }
    case ACT_ADJUST: {
        /* A count difference where stock is: a component somewhere, or a finished lot. */
        const char *loc;
        int r = (int)ms_rng_below(&site->rng, 4);
        if (r == 0) {
            loc = MS_LOC_FG;
            l = ms_pick_fg(s, site, ST_UNR, &avail);
        } else {
            loc = r == 1 ? MS_LOC_WH : ms_line(site);
            l = ms_pick_comp(s, site, loc, &avail);
        }
        if (!l)
            return NULL;
        kg = l->scale > 0;
        q = ms_rng_range(&site->rng, 1, kg ? 5000 : 10);
        if (ms_rng_below(&site->rng, 2) && q <= avail)
            q = -q; /* a loss only when there is that much to lose */
        if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, l, loc)))
            break;
        ms_copy(mv->reason, sizeof(mv->reason), "COUNT");
        break;
    }
    case ACT_REVERSE: {
        ms_mv_t *orig = site->recent[ms_rng_below(&site->rng, MS_RECENT)];
        ms_lot_t ol;
        if (!orig || orig->reversed)
            return NULL;
        memset(&ol, 0, sizeof(ol));
        ms_copy(ol.material, sizeof(ol.material), orig->material);
        ms_copy(ol.lot, sizeof(ol.lot), orig->lot);
        ms_copy(ol.uom, sizeof(ol.uom), orig->uom);
        if (!(mv = ms_mv_new(s, si, INVSYNC__V1__MOVEMENT_TYPE__REVERSAL, &ol, orig->location)))
            break;
        /* A reversal carries the original's fields (movement.h). */
        mv->qty = orig->qty;
        ms_copy(mv->to_location, sizeof(mv->to_location), orig->to_location);
        ms_copy(mv->order_id, sizeof(mv->order_id), orig->order_id);
        ms_copy(mv->operation, sizeof(mv->operation), orig->operation);
        ms_copy(mv->reason, sizeof(mv->reason), orig->reason);
        ms_copy(mv->reverses, sizeof(mv->reverses), orig->id);
        mv->m.from_status = orig->m.from_status;
        mv->m.to_status = orig->m.to_status;
        mv->m.reversed_type = orig->m.type;
        return mv;
    }
    default:
        return NULL;
    }
    if (!mv) {
        *nomem = 1;
        return NULL;
    }
    ms_mv_set_qty(mv, site, l, q);
    return mv;
}

/*
 * The next unique movement: feasible against the generated stock, whose
 * effects are applied to it. The caller owns one reference. NULL on ENOMEM
 * or if the generator produced an invalid movement (a bug; message printed).
 */
static ms_mv_t *ms_generate(ms_sim_t *s) {
    size_t si = (size_t)ms_rng_below(&s->rng_site, s->n_sites);
    ms_site_t *site = &s->sites[si];
    ms_mv_t *mv = NULL;
    int nomem = 0, total = 0;
    is_field_error_t errs[4];
    is_validate_opts_t vopts = {.max_scale = MS_QTY_SCALE_MAX,
                                .ingest = 1}; /* now_ms 0: simulated time */
    size_t nerr;
    for (int i = 0; i < ACT__COUNT; i++)
        total += ms_weights[i];
    for (int attempt = 0; attempt < 12 && !mv; attempt++) {
        int r = (int)ms_rng_below(&site->rng, (uint64_t)total);
        enum ms_action act = ACT_TRANSFER;
        for (int i = 0; i < ACT__COUNT; i++) {
            if (r < ms_weights[i]) {
                act = (enum ms_action)i;
                break;
            }
            r -= ms_weights[i];
        }
        mv = ms_try_action(s, si, act, &nomem);
        if (nomem)
            return NULL;
        if (mv && ms_stock_apply(&s->gen, &mv->m, 1) != IS_OK) {
            ms_mv_unref(mv); /* infeasible (e.g. a reversal whose stock has moved on) */
            mv = NULL;
        }
    }
    if (!mv) {
        /* A completion only adds stock: always feasible. */
        mv = ms_try_action(s, si, ACT_COMPLETE, &nomem);
        if (!mv || ms_stock_apply(&s->gen, &mv->m, 1) != IS_OK) {
            ms_mv_unref(mv);
            return NULL;
        }
    }
    snprintf(mv->id, sizeof(mv->id), "%s-%llu-%llu", site->name, (unsigned long long)s->o->seed,
             (unsigned long long)site->next_mv++);
    if (s->o->start_ms < 0) {
        mv->m.event_time = ms_wall_ms();
    } else {
        int64_t step = s->o->rate > 0 ? (int64_t)(s->n_generated * 1000 / (uint64_t)s->o->rate)
                                      : (int64_t)s->n_generated;
        mv->m.event_time = s->o->start_ms + step;
    }
    nerr = is_movement_validate(&mv->m, &vopts, errs, 4);
    if (nerr > 0) {
        fprintf(stderr, "mes-sim: bug: generated movement %s is invalid: %s %s\n", mv->id,
                errs[0].field, errs[0].error);
        ms_mv_unref(mv);
        return NULL;
    }
    s->n_generated++;
    if (mv->m.type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL) {
        for (size_t k = 0; k < MS_RECENT; k++) {
            if (site->recent[k] && strcmp(site->recent[k]->id, mv->reverses) == 0)
                site->recent[k]->reversed = 1;
        }
    } else {
        ms_mv_unref(site->recent[site->recent_next]);
        site->recent[site->recent_next] = ms_mv_ref(mv);
        site->recent_next = (site->recent_next + 1) % MS_RECENT;
    }
    return mv;
}

/* Maybe schedule mv for a resend (same decision in gen and run). Returns 0 or -1 on ENOMEM. */
static int ms_maybe_schedule_resend(ms_sim_t *s, ms_mv_t *mv) {
    if (!ms_rng_ppm(&s->rng_resend, s->o->resend_ppm))
        return 0;
    if (s->n_resends == s->cap_resends) {
        size_t cap = s->cap_resends ? s->cap_resends * 2 : 64;
        ms_resend_t *p = realloc(s->resends, cap * sizeof(*p));
        if (!p)
            return -1;
        s->resends = p;
        s->cap_resends = cap;
    }
    s->resends[s->n_resends].mv = ms_mv_ref(mv);
    s->resends[s->n_resends].due =
        s->n_generated + (uint64_t)ms_rng_range(&s->rng_resend, 1, MS_RESEND_MAX_DELAY);
    s->n_resends++;
    return 0;
}

/*
 * Take the first resend that is due (force: any) and whose movement is ready
 * (need_accepted: the producer has accepted it). NULL when none; the caller
 * gets the queue's reference.
 */
static ms_mv_t *ms_take_resend(ms_sim_t *s, int force, int need_accepted) {
    for (size_t i = 0; i < s->n_resends; i++) {
        ms_resend_t *r = &s->resends[i];
        if ((force || r->due <= s->n_generated) && (!need_accepted || r->mv->accepted)) {
            ms_mv_t *mv = r->mv;
            memmove(r, r + 1, (s->n_resends - i - 1) * sizeof(*r));
            s->n_resends--;
            return mv;
        }
    }
    return NULL;
}

static const char *ms_type_name(int type) {
    return is_movement_type_name(type);
}

/* ---- pacing --------------------------------------------------------------- */

typedef struct ms_pacer {
    int64_t interval_ns; /* 0 = unlimited */
    int64_t burst_ns;    /* how far behind schedule may be caught up at once */
    int64_t next_ns;     /* monotonic time the next token is due */
} ms_pacer_t;

static int64_t ms_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void ms_sleep_until_ns(int64_t t) {
    struct timespec ts = {(time_t)(t / 1000000000), (long)(t % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !ms_stop)
        ;
}

/* Token bucket: one token per movement, at most burst's worth saved up. */
static void ms_pace(ms_pacer_t *p) {
    int64_t now;
    if (p->interval_ns == 0)
        return;
    now = ms_mono_ns();
    if (p->next_ns < now - p->burst_ns)
        p->next_ns = now - p->burst_ns;
    if (p->next_ns > now)
        ms_sleep_until_ns(p->next_ns);
    p->next_ns += p->interval_ns;
}

/* ---- HTTP ----------------------------------------------------------------- */

static size_t ms_on_body(char *data, size_t size, size_t nmemb, void *ud) {
    ms_buf_t *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > MS_MAX_RESP || ms_buf_add(b, data, n) != 0)
        return 0; /* makes curl fail the transfer */
    return n;
}

/* Fail the run: remember why (for the summary) and print it. Returns 2. */
static int ms_fail(ms_sim_t *s, const char *fmt, ...) IS_PRINTF(2, 3);
static int ms_fail(ms_sim_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
    fprintf(stderr, "mes-sim: %s\n", s->error);
    return 2;
}

/*
 * POST body; retried on connection failure, 5xx and 429 with exponential
 * backoff (safe: the producer is idempotent by movement_id). On return
 * *status is the final HTTP status and *attempts how many were made.
 * Returns 0, 1 on ENOMEM, or 2 when no answer came after all attempts.
 */
static int ms_http_post(ms_sim_t *s, const ms_site_t *site, const char *body, size_t len,
                        long *status, int *attempts) {
    struct curl_slist *h = NULL, *t;
    char last[256] = "";
    int rc = 2;
    t = curl_slist_append(h, s->o->protobuf ? "Content-Type: application/x-protobuf"
                                            : "Content-Type: application/json");
    t = t ? curl_slist_append(h = t, "Accept: application/json") : NULL;
    t = t ? curl_slist_append(h = t, "Expect:") : NULL;
    if (t && site->token) {
        size_t n = strlen(site->token) + sizeof("Authorization: Bearer ");
        char *auth = malloc(n);
        h = t;
        t = NULL;
        if (auth) {
            snprintf(auth, n, "Authorization: Bearer %s", site->token);
            t = curl_slist_append(h, auth);
            memset(auth, 0, n); /* do not leave the token lying around */
            free(auth);
        }
    }
    if (!t) {
        curl_slist_free_all(h);
        fprintf(stderr, "mes-sim: out of memory building request headers\n");
        return 1;
    }
    h = t;
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    for (int a = 1; a <= MS_HTTP_ATTEMPTS; a++) {
        CURLcode cc;
        *attempts = a;
        s->resp.len = 0;
        cc = curl_easy_perform(s->curl);
        if (cc == CURLE_OK) {
            curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, status);
            if (*status < 500 && *status != 429) {
                rc = 0;
                break;
            }
            snprintf(last, sizeof(last), "HTTP %ld", *status);
        } else {
            snprintf(last, sizeof(last), "%s", curl_easy_strerror(cc));
        }
        if (a == MS_HTTP_ATTEMPTS)
            break;
        s->retries++;
        fprintf(stderr, "mes-sim: POST %s failed (%s), retry %d of %d\n", s->o->url, last, a,
                MS_HTTP_ATTEMPTS - 1);
        ms_sleep_until_ns(ms_mono_ns() +
                          ms_min((int64_t)100 << (a - 1), MS_BACKOFF_MAX_MS) * 1000000);
    }
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    if (rc != 0) {
        if (s->resp.len)
            fprintf(stderr, "%.*s\n", (int)s->resp.len, s->resp.p);
        return ms_fail(s, "POST %s failed after %d attempts: %s", s->o->url, MS_HTTP_ATTEMPTS,
                       last);
    }
    return 0;
}

/* The request body for mvs: JSON (an object when --batch 1, else an array) or protobuf. */
static int ms_body(ms_sim_t *s, ms_mv_t *const *mvs, size_t n, char **out, size_t *len) {
    if (s->o->protobuf) {
        Invsync__V1__MovementBatch batch = INVSYNC__V1__MOVEMENT_BATCH__INIT;
        is_movement_t **v = malloc(n * sizeof(*v));
        if (!v)
            return -1;
        for (size_t i = 0; i < n; i++)
            v[i] = (is_movement_t *)&mvs[i]->m;
        batch.n_movements = n;
        batch.movements = v;
        *len = invsync__v1__movement_batch__get_packed_size(&batch);
        *out = malloc(*len ? *len : 1);
        if (*out)
            invsync__v1__movement_batch__pack(&batch, (uint8_t *)*out);
        free(v);
        return *out ? 0 : -1;
    } else {
        json_t *j = s->o->batch == 1 ? NULL : json_array();
        if (s->o->batch == 1) {
            j = is_movement_to_json(&mvs[0]->m);
        } else if (j) {
            for (size_t i = 0; i < n; i++) {
                if (json_array_append_new(j, is_movement_to_json(&mvs[i]->m)) != 0) {
                    json_decref(j);
                    return -1;
                }
            }
        }
        *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!*out)
            return -1;
        *len = strlen(*out);
        return 0;
    }
}

/* Count an accepted unique movement: its effects become part of the expected on-hand. */
static int ms_mark_accepted(ms_sim_t *s, ms_mv_t *mv) {
    is_err_t rc = ms_stock_apply(&s->acc, &mv->m, 1);
    if (rc != IS_OK)
        return ms_fail(s, "bug: accepted movement %s is infeasible against the accepted stock (%s)",
                       mv->id, is_err_name(rc));
    mv->accepted = 1;
    s->accepted++;
    s->by_type[mv->m.type < 16 ? mv->m.type : 0]++;
    s->by_site[mv->site_idx]++;
    return 0;
}

/*
 * Post one request (n movements of one site; resend: a single movement sent
 * again) and check the answer item by item. Returns 0, 1 on local failure,
 * 2 when the producer's answer is not what it must be.
 */
static int ms_post(ms_sim_t *s, size_t si, ms_mv_t *const *mvs, size_t n, int resend) {
    char *body = NULL;
    size_t len = 0;
    long status = 0;
    int attempts = 0, rc;
    json_t *j = NULL, *items;
    json_error_t jerr;
    if (ms_body(s, mvs, n, &body, &len) != 0) {
        fprintf(stderr, "mes-sim: out of memory building a request\n");
        return 1;
    }
    rc = ms_http_post(s, &s->sites[si], body, len, &status, &attempts);
    free(body);
    if (rc != 0)
        return rc;
    s->requests++;
    s->sent += n;
    if (status != 202) {
        fprintf(stderr, "%.*s\n", (int)s->resp.len, s->resp.p ? s->resp.p : "");
        return ms_fail(s, "POST %s answered HTTP %ld (expected 202) for %zu movement(s) of site %s",
                       s->o->url, status, n, s->sites[si].name);
    }
    j = json_loadb(s->resp.p ? s->resp.p : "", s->resp.len, 0, &jerr);
    items = j ? json_object_get(j, "items") : NULL;
    if (!json_is_array(items) || json_array_size(items) != n) {
        fprintf(stderr, "%.*s\n", (int)s->resp.len, s->resp.p ? s->resp.p : "");
        json_decref(j);
        return ms_fail(s, "202 answer without an items[] array of %zu entries", n);
    }
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *it = json_array_get(items, i);
        const char *st = json_string_value(json_object_get(it, "status"));
        const char *id = json_string_value(json_object_get(it, "movement_id"));
        ms_mv_t *mv = mvs[i];
        if (id && strcmp(id, mv->id) != 0) {
            rc = ms_fail(s, "items[%zu] is for movement '%s', expected '%s'", i, id, mv->id);
        } else if (!st) {
            rc = ms_fail(s, "items[%zu] (movement %s) has no status", i, mv->id);
        } else if (resend) {
            if (strcmp(st, "duplicate") == 0)
                s->duplicates++;
            else
                rc = ms_fail(s, "resend of movement %s answered '%s', expected 'duplicate'", mv->id,
                             st);
        } else if (strcmp(st, "accepted") == 0 || (strcmp(st, "duplicate") == 0 && attempts > 1)) {
            /* A duplicate after a retry: an earlier attempt got through. */
            rc = ms_mark_accepted(s, mv);
        } else if (strcmp(st, "duplicate") == 0) {
            rc = ms_fail(s,
                         "movement %s answered 'duplicate' on its first submission (same --seed "
                         "against the same producer store?)",
                         mv->id);
        } else {
            rc = ms_fail(s, "movement %s answered '%s'", mv->id, st);
        }
    }
    if (rc != 0)
        fprintf(stderr, "%.*s\n", (int)s->resp.len, s->resp.p);
    json_decref(j);
    return rc;
}

/* Post a site's waiting batch, if any. Returns as ms_post. */
static int ms_flush_site(ms_sim_t *s, size_t si) {
    ms_site_t *site = &s->sites[si];
    int rc;
    if (site->n_batch == 0)
        return 0;
    rc = ms_post(s, si, site->batch, site->n_batch, 0);
    for (size_t i = 0; i < site->n_batch; i++)
        ms_mv_unref(site->batch[i]);
    site->n_batch = 0;
    return rc;
}

/* Send resends that are due (force: all remaining, in order). Returns as ms_post. */
static int ms_send_resends(ms_sim_t *s, ms_pacer_t *pacer, int force) {
    ms_mv_t *mv;
    while ((mv = ms_take_resend(s, force, 1)) != NULL) {
        int rc;
        ms_pace(pacer);
        rc = ms_post(s, mv->site_idx, &mv, 1, 1);
        ms_mv_unref(mv);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int64_t ms_mono_ms(void) {
    return ms_mono_ns() / 1000000;
}

/* The `run` loop. Returns the exit code; counters and the accepted stock are kept for outputs. */
static int ms_run_loop(ms_sim_t *s) {
    const ms_opts_t *o = s->o;
    ms_pacer_t pacer = {0, 0, 0};
    int64_t deadline = o->duration_ms ? ms_mono_ms() + o->duration_ms : 0;
    int rc = 0;
    if (o->rate > 0) {
        pacer.interval_ns = 1000000000 / o->rate;
        pacer.burst_ns = pacer.interval_ns * o->batch;
        pacer.next_ns = ms_mono_ns();
    }
    while (!ms_stop) {
        ms_mv_t *mv;
        ms_site_t *site;
        if (o->movements ? (int64_t)s->n_generated >= o->movements : ms_mono_ms() >= deadline)
            break;
        ms_pace(&pacer);
        mv = ms_generate(s);
        if (!mv || ms_maybe_schedule_resend(s, mv) != 0) {
            ms_mv_unref(mv);
            fprintf(stderr, "mes-sim: out of memory (or generator bug)\n");
            return 1;
        }
        site = &s->sites[mv->site_idx];
        if (site->n_batch == 0)
            site->batch_since_ms = ms_mono_ms();
        site->batch[site->n_batch++] = mv; /* the batch takes the generator's reference */
        if ((int64_t)site->n_batch >= o->batch && (rc = ms_flush_site(s, mv->site_idx)) != 0)
            return rc;
        for (size_t i = 0; i < s->n_sites; i++) {
            ms_site_t *other = &s->sites[i];
            if (other->n_batch && ms_mono_ms() - other->batch_since_ms >= MS_FLUSH_AGE_MS &&
                (rc = ms_flush_site(s, i)) != 0)
                return rc;
        }
        if ((rc = ms_send_resends(s, &pacer, 0)) != 0)
            return rc;
    }
    for (size_t i = 0; i < s->n_sites; i++) {
        if ((rc = ms_flush_site(s, i)) != 0)
            return rc;
    }
    return ms_send_resends(s, &pacer, 1);
}

/* ---- summary -------------------------------------------------------------- */

static int ms_write_summary(ms_sim_t *s, int64_t elapsed_ms) {
    json_t *j = json_object(), *bt = json_object(), *bs = json_object();
    char *txt;
    int rc;
    if (strcmp(s->o->cmd, "gen") == 0)
        fprintf(stderr, "mes-sim: %llu movements written: %llu unique, %llu resends, %.3f s",
                (unsigned long long)s->sent, (unsigned long long)s->accepted,
                (unsigned long long)s->duplicates, (double)elapsed_ms / 1000.0);
    else
        fprintf(stderr,
                "mes-sim: %llu movements sent in %llu requests: %llu accepted, %llu duplicates, "
                "%llu retries, %.3f s",
                (unsigned long long)s->sent, (unsigned long long)s->requests,
                (unsigned long long)s->accepted, (unsigned long long)s->duplicates,
                (unsigned long long)s->retries, (double)elapsed_ms / 1000.0);
    if (elapsed_ms > 0)
        fprintf(stderr, " (%.1f/s)", (double)s->sent * 1000.0 / (double)elapsed_ms);
    fprintf(stderr, "\n  by type:");
    for (int t = 1; t < 16; t++) {
        if (s->by_type[t]) {
            fprintf(stderr, " %s %llu", ms_type_name(t), (unsigned long long)s->by_type[t]);
            json_object_set_new(bt, ms_type_name(t), json_integer((json_int_t)s->by_type[t]));
        }
    }
    fprintf(stderr, "\n");
    for (size_t i = 0; i < s->n_sites; i++)
        json_object_set_new(bs, s->sites[i].name, json_integer((json_int_t)s->by_site[i]));
    if (!s->o->summary) {
        json_decref(j);
        json_decref(bt);
        json_decref(bs);
        return 0;
    }
    json_object_set_new(j, "sent", json_integer((json_int_t)s->sent));
    json_object_set_new(j, "accepted", json_integer((json_int_t)s->accepted));
    json_object_set_new(j, "duplicates", json_integer((json_int_t)s->duplicates));
    json_object_set_new(j, "requests", json_integer((json_int_t)s->requests));
    json_object_set_new(j, "retries", json_integer((json_int_t)s->retries));
    json_object_set_new(j, "by_type", bt);
    json_object_set_new(j, "by_site", bs);
    json_object_set_new(j, "elapsed_s", json_real((double)elapsed_ms / 1000.0));
    if (s->error[0])
        json_object_set_new(j, "error", json_string(s->error));
    txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!txt) {
        fprintf(stderr, "mes-sim: out of memory writing '%s'\n", s->o->summary);
        return -1;
    }
    {
        size_t n = strlen(txt);
        char *t2 = realloc(txt, n + 2);
        if (!t2) {
            free(txt);
            return -1;
        }
        txt = t2;
        txt[n] = '\n';
        txt[n + 1] = '\0';
    }
    rc = ms_write_file(s->o->summary, txt, strlen(txt));
    free(txt);
    return rc;
}

/* ---- argument parsing ----------------------------------------------------- */

static void ms_usage(FILE *f) {
    fprintf(f,
            "usage:\n"
            "  mes-sim opening --sites A,B --seed N [--lots-per-site 20] --out opening.json\n"
            "  mes-sim run --url URL --sites A,B --seed N (--movements N | --duration 30s)\n"
            "              [--rate 200] [--batch 20] [--resend 0.10] [--token SITE=TOKEN ...]\n"
            "              [--format json|protobuf] [--source-system MES-SIM]\n"
            "              [--expected expected.json] [--summary summary.json]\n"
            "              [--lots-per-site 20] [--start-time RFC3339|now]\n"
            "  mes-sim gen --sites A,B --seed N (--movements N | --duration 30s) [--rate 200]\n"
            "              [--resend 0.10] [--out movements.jsonl] [--expected F] [--summary F]\n"
            "              [--lots-per-site 20] [--source-system MES-SIM]\n"
            "              [--start-time RFC3339|now]   (default %s: output is reproducible)\n"
            "  mes-sim compare EXPECTED.json ACTUAL.json\n"
            "\n"
            "  --movements counts unique movements; resends (probability --resend each) come\n"
            "  on top, later, byte-identical, each in a request of its own. --rate 0 means\n"
            "  unlimited; gen turns --duration into duration x rate movements on a synthetic\n"
            "  clock. --token '*=TOKEN' sets the token for sites without their own. The same\n"
            "  --sites/--seed/--lots-per-site give the same opening stock and traffic.\n"
            "Exit: 0 ok, 1 local failure (compare: files differ), 2 bad arguments/input or an\n"
            "unexpected answer from the producer.\n",
            MS_GEN_EPOCH);
}

/* Split "A,B" into o->sites; names must be topic-safe and unique. Returns 0 or -1 (printed). */
static int ms_parse_sites(const char *arg, ms_opts_t *o) {
    const char *p = arg;
    o->n_sites = 0;
    while (1) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || len > MS_SITE_MAX) {
            fprintf(stderr, "mes-sim: --sites '%s': site names must be 1..%d characters\n", arg,
                    MS_SITE_MAX);
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-')) {
                fprintf(stderr, "mes-sim: --sites '%s': '%c' is not allowed (use A-Za-z0-9_-)\n",
                        arg, c);
                return -1;
            }
        }
        if (o->n_sites == MS_MAX_SITES) {
            fprintf(stderr, "mes-sim: --sites: at most %d sites\n", MS_MAX_SITES);
            return -1;
        }
        snprintf(o->sites[o->n_sites], sizeof(o->sites[0]), "%.*s", (int)len, p);
        for (size_t i = 0; i < o->n_sites; i++) {
            if (strcmp(o->sites[i], o->sites[o->n_sites]) == 0) {
                fprintf(stderr, "mes-sim: --sites: site '%s' listed twice\n", o->sites[i]);
                return -1;
            }
        }
        o->n_sites++;
        if (!end)
            return 0;
        p = end + 1;
    }
}

/* "0.10" → 100000 ppm, exactly (no float). */
static int ms_parse_probability(const char *arg, uint32_t *ppm) {
    is_decimal_t d, r;
    is_decimal_t one = {1, 0};
    if (is_decimal_parse(arg, strlen(arg), 6, &d, NULL, 0) != IS_OK || is_decimal_sign(d) < 0 ||
        is_decimal_cmp(d, one) > 0 || is_decimal_rescale(d, 6, &r) != IS_OK)
        return -1;
    *ppm = (uint32_t)r.units;
    return 0;
}

enum {
    OPT_SITES = 1000,
    OPT_SEED,
    OPT_LOTS,
    OPT_OUT,
    OPT_URL,
    OPT_MOVEMENTS,
    OPT_DURATION,
    OPT_RATE,
    OPT_BATCH,
    OPT_RESEND,
    OPT_TOKEN,
    OPT_FORMAT,
    OPT_SOURCE,
    OPT_EXPECTED,
    OPT_SUMMARY,
    OPT_START,
    OPT_HELP,
};

/* Parse a subcommand's options. Returns 0, 1 after --help, 2 on a bad argument (printed). */
static int ms_parse_args(int argc, char **argv, ms_opts_t *o) {
    static const struct option longopts[] = {
        {"sites", required_argument, NULL, OPT_SITES},
        {"seed", required_argument, NULL, OPT_SEED},
        {"lots-per-site", required_argument, NULL, OPT_LOTS},
        {"out", required_argument, NULL, OPT_OUT},
        {"url", required_argument, NULL, OPT_URL},
        {"movements", required_argument, NULL, OPT_MOVEMENTS},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"rate", required_argument, NULL, OPT_RATE},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"resend", required_argument, NULL, OPT_RESEND},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"source-system", required_argument, NULL, OPT_SOURCE},
        {"expected", required_argument, NULL, OPT_EXPECTED},
        {"summary", required_argument, NULL, OPT_SUMMARY},
        {"start-time", required_argument, NULL, OPT_START},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int is_run = strcmp(o->cmd, "run") == 0, is_gen = strcmp(o->cmd, "gen") == 0;
    int is_opening = strcmp(o->cmd, "opening") == 0;
    const char *start = NULL;
    int c;
    int64_t v;
    o->seed = 1;
    o->lots_per_site = 20;
    o->rate = 200;
    o->batch = 20;
    o->resend_ppm = 100000;
    o->source_system = "MES-SIM";
    o->start_ms = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *name = NULL;
        switch (c) {
        case OPT_HELP:
            ms_usage(stdout);
            return 1;
        case OPT_SITES:
            if (ms_parse_sites(optarg, o) != 0)
                goto usage;
            break;
        case OPT_SEED:
            if (is_parse_int64(optarg, 0, INT64_MAX, &v) != IS_OK) {
                name = "--seed";
                goto bad;
            }
            o->seed = (uint64_t)v;
            break;
        case OPT_LOTS:
            if (is_parse_int64(optarg, 1, 100000, &o->lots_per_site) != IS_OK) {
                name = "--lots-per-site (1..100000)";
                goto bad;
            }
            break;
        case OPT_OUT:
            o->out = optarg;
            break;
        case OPT_URL:
            o->url = optarg;
            break;
        case OPT_MOVEMENTS:
            if (is_parse_int64(optarg, 1, INT64_MAX, &o->movements) != IS_OK) {
                name = "--movements (a positive integer)";
                goto bad;
            }
            break;
        case OPT_DURATION:
            if (is_parse_duration_ms(optarg, &o->duration_ms) != IS_OK || o->duration_ms <= 0) {
                name = "--duration (e.g. 30s, 5m)";
                goto bad;
            }
            break;
        case OPT_RATE:
            if (is_parse_int64(optarg, 0, 1000000000, &o->rate) != IS_OK) {
                name = "--rate (movements/s, 0 = unlimited)";
                goto bad;
            }
            break;
        case OPT_BATCH:
            if (is_parse_int64(optarg, 1, 10000, &o->batch) != IS_OK) {
                name = "--batch (1..10000)";
                goto bad;
            }
            break;
        case OPT_RESEND:
            if (ms_parse_probability(optarg, &o->resend_ppm) != 0) {
                name = "--resend (a probability 0..1)";
                goto bad;
            }
            break;
        case OPT_TOKEN:
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                fprintf(stderr, "mes-sim: --token: expected SITE=TOKEN\n");
                goto usage;
            }
            if (o->n_tokens == MS_MAX_SITES) {
                fprintf(stderr, "mes-sim: --token: at most %d tokens\n", MS_MAX_SITES);
                goto usage;
            }
            o->tokens[o->n_tokens++] = optarg;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "json") == 0) {
                o->protobuf = 0;
            } else if (strcmp(optarg, "protobuf") == 0) {
                o->protobuf = 1;
            } else {
                name = "--format (json|protobuf)";
                goto bad;
            }
            break;
        case OPT_SOURCE:
            if (!*optarg || strlen(optarg) > IS_MOVEMENT_MAX_STR) {
                name = "--source-system";
                goto bad;
            }
            o->source_system = optarg;
            break;
        case OPT_EXPECTED:
            o->expected = optarg;
            break;
        case OPT_SUMMARY:
            o->summary = optarg;
            break;
        case OPT_START:
            start = optarg;
            break;
        default:
            goto usage; /* getopt_long has named the option */
        }
        continue;
    bad:
        fprintf(stderr, "mes-sim: %s: bad value '%s'\n", name, optarg);
        goto usage;
    }
    if (optind < argc) {
        fprintf(stderr, "mes-sim %s: unexpected argument '%s'\n", o->cmd, argv[optind]);
        goto usage;
    }
    if (o->n_sites == 0) {
        fprintf(stderr, "mes-sim %s: --sites is required\n", o->cmd);
        goto usage;
    }
    if (is_opening) {
        if (!o->out) {
            fprintf(stderr, "mes-sim opening: --out is required\n");
            goto usage;
        }
        return 0;
    }
    if (!o->movements == !o->duration_ms) {
        fprintf(stderr, "mes-sim %s: give exactly one of --movements and --duration\n", o->cmd);
        goto usage;
    }
    if (is_run && !o->url) {
        fprintf(stderr, "mes-sim run: --url is required\n");
        goto usage;
    }
    if (is_gen && o->duration_ms) {
        /* gen has no wall clock: the duration is a count at the given rate. */
        if (o->rate == 0) {
            fprintf(stderr, "mes-sim gen: --duration needs --rate > 0\n");
            goto usage;
        }
        o->movements = o->duration_ms * o->rate / 1000;
        if (o->movements == 0)
            o->movements = 1;
        o->duration_ms = 0;
    }
    if (!start && is_gen)
        start = MS_GEN_EPOCH;
    if (start && strcmp(start, "now") != 0 && is_parse_rfc3339(start, &o->start_ms) != IS_OK) {
        fprintf(stderr, "mes-sim: --start-time: bad value '%s' (RFC 3339 or 'now')\n", start);
        goto usage;
    }
    for (size_t i = 0; i < o->n_tokens; i++) {
        const char *eq = strchr(o->tokens[i], '=');
        size_t len = (size_t)(eq - o->tokens[i]);
        int known = len == 1 && o->tokens[i][0] == '*';
        for (size_t k = 0; k < o->n_sites && !known; k++)
            known = strlen(o->sites[k]) == len && strncmp(o->sites[k], o->tokens[i], len) == 0;
        if (!known) {
            fprintf(stderr, "mes-sim: --token: site '%.*s' is not in --sites\n", (int)len,
                    o->tokens[i]);
            goto usage;
        }
    }
    return 0;
usage:
    ms_usage(stderr);
    return 2;
}

/* The token for a site: its own SITE=, else '*=', else NULL. */
static const char *ms_token_for(const ms_opts_t *o, const char *site) {
    const char *any = NULL;
    for (size_t i = 0; i < o->n_tokens; i++) {
        const char *eq = strchr(o->tokens[i], '=');
        size_t len = (size_t)(eq - o->tokens[i]);
        if (strlen(site) == len && strncmp(site, o->tokens[i], len) == 0)
            return eq + 1;
        if (len == 1 && o->tokens[i][0] == '*')
            any = eq + 1;
    }
    return any;
}

/* ---- subcommands ---------------------------------------------------------- */

static int ms_cmd_opening(const ms_opts_t *o) {
    ms_sim_t s;
    int rc = 0;
    if (ms_world_init(&s, o) != 0) {
        fprintf(stderr, "mes-sim: out of memory\n");
        rc = 1;
    } else if (ms_write_rows(o->out, &s.gen) != 0) {
        rc = 1;
    }
    ms_world_release(&s);
    return rc;
}

/* Write one movement as a JSON line. Returns 0 or -1. */
static int ms_write_line(FILE *f, const ms_mv_t *mv) {
    json_t *j = is_movement_to_json(&mv->m);
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    int rc = (txt && fputs(txt, f) >= 0 && fputc('\n', f) != EOF) ? 0 : -1;
    free(txt);
    json_decref(j);
    return rc;
}

static int ms_cmd_gen(const ms_opts_t *o) {
    ms_sim_t s;
    FILE *f = stdout;
    int rc = 1;
    int64_t t0 = ms_mono_ms();
    char tmp[4096] = "";
    if (ms_world_init(&s, o) != 0) {
        fprintf(stderr, "mes-sim: out of memory\n");
        goto out;
    }
    if (o->out && strcmp(o->out, "-") != 0) {
        int n = snprintf(tmp, sizeof(tmp), "%s.tmp", o->out);
        if (n < 0 || (size_t)n >= sizeof(tmp) || !(f = fopen(tmp, "w"))) {
            fprintf(stderr, "mes-sim: cannot open '%s': %s\n", tmp, strerror(errno));
            tmp[0] = '\0';
            f = NULL;
            goto out;
        }
    }
    while ((int64_t)s.n_generated < o->movements) {
        ms_mv_t *mv = ms_generate(&s), *re;
        if (!mv || ms_maybe_schedule_resend(&s, mv) != 0 || ms_write_line(f, mv) != 0 ||
            ms_mark_accepted(&s, mv) != 0) {
            ms_mv_unref(mv);
            fprintf(stderr, "mes-sim: cannot generate or write a movement\n");
            goto out;
        }
        s.sent++;
        ms_mv_unref(mv);
        while ((re = ms_take_resend(&s, 0, 0)) != NULL) {
            int bad = ms_write_line(f, re) != 0;
            ms_mv_unref(re);
            s.sent++;
            s.duplicates++;
            if (bad)
                goto werr;
        }
    }
    {
        ms_mv_t *re;
        while ((re = ms_take_resend(&s, 1, 0)) != NULL) {
            int bad = ms_write_line(f, re) != 0;
            ms_mv_unref(re);
            s.sent++;
            s.duplicates++;
            if (bad)
                goto werr;
        }
    }
    if (fflush(f) != 0)
        goto werr;
    if (f != stdout) {
        FILE *done = f;
        f = NULL;
        if (fclose(done) != 0 || rename(tmp, o->out) != 0)
            goto werr;
        tmp[0] = '\0';
    }
    if (o->expected && ms_write_rows(o->expected, &s.acc) != 0)
        goto out;
    if (ms_write_summary(&s, ms_mono_ms() - t0) != 0)
        goto out;
    rc = 0;
    goto out;
werr:
    fprintf(stderr, "mes-sim: cannot write '%s': %s\n", o->out ? o->out : "stdout",
            strerror(errno));
out:
    if (f && f != stdout)
        fclose(f);
    if (tmp[0])
        unlink(tmp);
    ms_world_release(&s);
    return rc;
}

static int ms_cmd_run(const ms_opts_t *o) {
    ms_sim_t s;
    int rc;
    int64_t t0;
    struct sigaction sa;
    if (ms_world_init(&s, o) != 0) {
        fprintf(stderr, "mes-sim: out of memory\n");
        ms_world_release(&s);
        return 1;
    }
    for (size_t i = 0; i < s.n_sites; i++)
        s.sites[i].token = ms_token_for(o, s.sites[i].name);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ms_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(s.curl = curl_easy_init())) {
        fprintf(stderr, "mes-sim: cannot initialise libcurl\n");
        ms_world_release(&s);
        return 1;
    }
    curl_easy_setopt(s.curl, CURLOPT_URL, o->url);
    curl_easy_setopt(s.curl, CURLOPT_POST, 1L);
    curl_easy_setopt(s.curl, CURLOPT_WRITEFUNCTION, ms_on_body);
    curl_easy_setopt(s.curl, CURLOPT_WRITEDATA, &s.resp);
    curl_easy_setopt(s.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s.curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(s.curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(s.curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(s.curl, CURLOPT_USERAGENT, "mes-sim");
    t0 = ms_mono_ms();
    rc = ms_run_loop(&s);
    if (ms_stop)
        fprintf(stderr, "mes-sim: stopped by signal after %llu movements\n",
                (unsigned long long)s.n_generated);
    /* Even a failed run says what was accepted, so a test can still check the ERP. */
    if (o->expected && ms_write_rows(o->expected, &s.acc) != 0 && rc == 0)
        rc = 1;
    if (ms_write_summary(&s, ms_mono_ms() - t0) != 0 && rc == 0)
        rc = 1;
    curl_easy_cleanup(s.curl);
    curl_global_cleanup();
    ms_world_release(&s);
    return rc;
}

/* ---- compare -------------------------------------------------------------- */

/* Load an on-hand file into st. Returns 0, or -1 with a message naming the file. */
static int ms_load_rows(const char *path, ms_stock_t *st) {
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    size_t i;
    json_t *row;
    if (!j) {
        if (jerr.line > 0)
            fprintf(stderr, "mes-sim: cannot read '%s': %s (line %d)\n", path, jerr.text,
                    jerr.line);
        else
            fprintf(stderr, "mes-sim: cannot read '%s': %s\n", path, jerr.text);
        return -1;
    }
    if (!json_is_array(j)) {
        fprintf(stderr, "mes-sim: '%s': expected a JSON array of on-hand rows\n", path);
        goto err;
    }
    json_array_foreach(j, i, row) {
        static const char *const names[K__N] = {"site", "material", "lot", "location", "uom"};
        const char *k[K__N];
        const char *st_name = json_string_value(json_object_get(row, "stock_status"));
        json_t *qj = json_object_get(row, "quantity");
        is_decimal_t q;
        char errstr[160] = "";
        int status, created;
        ms_row_t *r;
        if (!json_is_object(row)) {
            fprintf(stderr, "mes-sim: '%s': row %zu is not an object\n", path, i);
            goto err;
        }
        for (int f = 0; f < K__N; f++) {
            k[f] = json_string_value(json_object_get(row, names[f]));
            if (!k[f] || !*k[f]) {
                fprintf(stderr, "mes-sim: '%s': row %zu: \"%s\" must be a non-empty string\n", path,
                        i, names[f]);
                goto err;
            }
        }
        status = st_name ? is_stock_status_parse(st_name) : 0;
        if (status == 0) {
            fprintf(stderr,
                    "mes-sim: '%s': row %zu: bad \"stock_status\" (use UNRESTRICTED, "
                    "QUALITY or BLOCKED)\n",
                    path, i);
            goto err;
        }
        if (json_is_string(qj)) {
            if (is_decimal_parse(json_string_value(qj), json_string_length(qj),
                                 IS_DECIMAL_MAX_SCALE, &q, errstr, sizeof(errstr)) != IS_OK) {
                fprintf(stderr, "mes-sim: '%s': row %zu: bad \"quantity\": %s\n", path, i, errstr);
                goto err;
            }
        } else if (json_is_integer(qj)) {
            q.units = (int64_t)json_integer_value(qj);
            q.scale = 0;
        } else {
            fprintf(stderr,
                    "mes-sim: '%s': row %zu: \"quantity\" must be a decimal string such as "
                    "\"12.500\"\n",
                    path, i);
            goto err;
        }
        r = ms_stock_find(st, k, status, 1, &created);
        if (!r) {
            fprintf(stderr, "mes-sim: out of memory reading '%s'\n", path);
            goto err;
        }
        if (!created) {
            fprintf(stderr, "mes-sim: '%s': row %zu repeats %s/%s/%s@%s[%s] %s\n", path, i,
                    k[K_SITE], k[K_MAT], k[K_LOT], k[K_LOC], st_name, k[K_UOM]);
            goto err;
        }
        r->qty = q;
    }
    json_decref(j);
    return 0;
err:
    json_decref(j);
    return -1;
}

static int ms_cmd_compare(int argc, char **argv) {
    ms_stock_t e = {0}, a = {0};
    ms_row_t **er = NULL, **ar = NULL;
    size_t ne = 0, na = 0, i = 0, k = 0, rows = 0, differ = 0;
    int rc = 2;
    if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
        if (argc == 2 && strcmp(argv[1], "--help") == 0) {
            ms_usage(stdout);
            return 0;
        }
        fprintf(stderr, "mes-sim compare: expected two files: EXPECTED.json ACTUAL.json\n");
        ms_usage(stderr);
        return 2;
    }
    if (ms_load_rows(argv[1], &e) != 0 || ms_load_rows(argv[2], &a) != 0)
        goto out;
    if (ms_stock_sorted(&e, 0, &er, &ne) != 0 || ms_stock_sorted(&a, 0, &ar, &na) != 0) {
        fprintf(stderr, "mes-sim: out of memory\n");
        rc = 1;
        goto out;
    }
    /* Merge-join the two sorted key lists; an absent row is zero. */
    while (i < ne || k < na) {
        int c = i == ne ? 1 : k == na ? -1 : ms_row_cmp(&er[i], &ar[k]);
        const ms_row_t *key = c <= 0 ? er[i] : ar[k];
        is_decimal_t zero = {0, 0};
        is_decimal_t x = c <= 0 ? er[i]->qty : zero;
        is_decimal_t y = c >= 0 ? ar[k]->qty : zero;
        rows++;
        if (is_decimal_cmp(x, y) != 0) {
            char xs[IS_DECIMAL_STRLEN], ys[IS_DECIMAL_STRLEN];
            is_decimal_format(is_decimal_normalize(x), xs, sizeof(xs));
            is_decimal_format(is_decimal_normalize(y), ys, sizeof(ys));
            printf("%s/%s/%s@%s[%s] expected %s actual %s (%s)\n", key->site, key->material,
                   key->lot, key->location, is_stock_status_name(key->status), xs, ys, key->uom);
            differ++;
        }
        if (c <= 0)
            i++;
        if (c >= 0)
            k++;
    }
    printf("on-hand: %zu rows compared, %zu differ\n", rows, differ);
    fflush(stdout);
    rc = differ ? 1 : 0;
out:
    free(er);
    free(ar);
    ms_stock_release(&e);
    ms_stock_release(&a);
    return rc;
}

int main(int argc, char **argv) {
    ms_opts_t o;
    char prog[32];
    int rc;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        ms_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "compare") == 0)
        return ms_cmd_compare(argc - 1, argv + 1);
    memset(&o, 0, sizeof(o));
    o.cmd = argv[1];
    if (strcmp(o.cmd, "opening") != 0 && strcmp(o.cmd, "run") != 0 && strcmp(o.cmd, "gen") != 0) {
        fprintf(stderr, "mes-sim: unknown command '%s'\n", o.cmd);
        ms_usage(stderr);
        return 2;
    }
    /* getopt_long names the program in its messages: make that "mes-sim run". */
    snprintf(prog, sizeof(prog), "mes-sim %s", o.cmd);
    argv[1] = prog;
    rc = ms_parse_args(argc - 1, argv + 1, &o);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return rc;
    if (strcmp(o.cmd, "opening") == 0)
        return ms_cmd_opening(&o);
    if (strcmp(o.cmd, "gen") == 0)
        return ms_cmd_gen(&o);
    return ms_cmd_run(&o);
}
