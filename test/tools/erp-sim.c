/*
 * erp-sim.c — an ERP simulator: the http-json contract (docs/ERP-HTTP.md)
 * served over the embedded ERP ledger (erp_sqlite), with fault knobs that
 * tests turn at run time.
 *
 *   erp-sim --listen 127.0.0.1:PORT --db ledger.db [--token T] [--allow-negative]
 *           [--seed N] [--threads N]
 *
 * Prints "listening on http://HOST:PORT" on stdout once it accepts
 * connections (port 0 picks a free one), then serves until SIGTERM/SIGINT.
 * The token may also come from ERP_SIM_TOKEN so it stays off the command line.
 *
 * Routes (the contract, behind the bearer token when one is set):
 *   POST /postings            post; 201 new, replay_status (200) if posted before
 *   GET  /postings/{id}       200 {"document"} | 404
 *   GET  /on-hand[?site=S]    on-hand rows
 *   POST /seed                opening stock: on-hand rows → one ADJUSTMENT posting
 *                             "seed-<sha256 of body>" (a replay when sent again)
 *   GET  /healthz
 * Test control (no token):
 *   POST /_faults, GET /_faults   fault knobs (see faults_t), partial updates
 *   GET  /_stats                  {"posts","posted","replayed","rejected","faults_injected"}
 *   GET  /_movements/{id}         which document holds a movement (409 when several)
 *   POST /_delete-posting         {"posting_id"}: forget a posting (a lost interface day)
 *
 * Faults, drawn per POST /postings with a seeded PRNG: down (503 for
 * everything but /_faults), latency_ms (every request), error_rate →
 * error_status before the ledger is touched, timeout_rate → hold the request
 * timeout_ms then 504 without posting, fail_after_commit_rate → post and
 * commit, then answer error_status: the "ERP accepted it but the answer was
 * lost" window the consumer's idempotency key must cover.
 *
 * Threads: libmicrohttpd calls handlers on its worker threads concurrently.
 * The ledger is used under ledger_mu; knobs, stats and the PRNG under mu.
 * Fault sleeps happen outside both locks, in short slices so that a stop
 * does not wait for them.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "duration.h"
#include "erp_sqlite.h"
#include "hash.h"
#include "httpd.h"
#include "log.h"

#define SIM_MAX_BODY        (64u << 20) /* a seed file of a large plant */
#define SIM_DEFAULT_THREADS 16

typedef struct faults {
    double error_rate;             /* share of posts answered error_status, nothing posted */
    int error_status;              /* default 503 */
    double timeout_rate;           /* share of posts held timeout_ms, then 504, nothing posted */
    int64_t timeout_ms;            /* default 3000 */
    int64_t latency_ms;            /* added to every request */
    int down;                      /* 503 for everything but /_faults */
    double fail_after_commit_rate; /* share of new posts committed, then answered error_status */
    int replay_status;             /* answer to a re-post: 200 (default) or 409 */
} faults_t;

typedef struct sim_stats {
    uint64_t posts;           /* POST /postings received */
    uint64_t posted;          /* new documents */
    uint64_t replayed;        /* re-posts answered with the existing document */
    uint64_t rejected;        /* permanent refusals (4xx) */
    uint64_t faults_injected; /* any injected fault */
} sim_stats_t;

typedef struct sim {
    erp_sqlite_t *ledger;
    pthread_mutex_t ledger_mu; /* serializes every ledger call */
    pthread_mutex_t mu;        /* faults, stats, rng */
    faults_t faults;
    sim_stats_t stats;
    uint64_t rng;      /* xorshift64* state, never 0 */
    const char *token; /* NULL: no authentication */
    atomic_int stopping;
} sim_t;

/* ---- small helpers ------------------------------------------------------- */

static double rng_next(sim_t *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* Draw a fault with the given rate (0 never draws, so rate 0 costs nothing). */
static int roll(sim_t *s, double rate) {
    int hit;
    if (rate <= 0)
        return 0;
    pthread_mutex_lock(&s->mu);
    hit = rng_next(s) < rate;
    if (hit)
        s->stats.faults_injected++;
    pthread_mutex_unlock(&s->mu);
    return hit;
}

static faults_t faults_get(sim_t *s) {
    faults_t f;
    pthread_mutex_lock(&s->mu);
    f = s->faults;
    pthread_mutex_unlock(&s->mu);
    return f;
}

static void count(sim_t *s, uint64_t *field) {
    pthread_mutex_lock(&s->mu);
    (*field)++;
    pthread_mutex_unlock(&s->mu);
}

/* Sleep ms in slices, returning early once the simulator is stopping. */
static void nap(sim_t *s, int64_t ms) {
    while (ms > 0 && !atomic_load(&s->stopping)) {
        int64_t step = ms < 50 ? ms : 50;
        struct timespec ts = {step / 1000, (long)(step % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* Constant-time comparison: the token check should not leak its prefix. */
static int token_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/*
 * What every route but /_faults goes through: down, latency, then (auth) the
 * token. Returns 1 when it answered the request.
 */
static int gate(sim_t *s, const is_http_request_t *req, is_http_response_t *resp, int auth) {
    faults_t f = faults_get(s);
    const char *tok;

    if (f.down) {
        count(s, &s->stats.faults_injected);
        is_http_respond_error(resp, 503, "ERP is down (fault injected)");
        return 1;
    }
    nap(s, f.latency_ms);
    if (auth && s->token) {
        tok = is_http_bearer(req);
        if (!tok || !token_equal(tok, s->token)) {
            is_http_respond_error(resp, 401, "missing or wrong bearer token");
            return 1;
        }
    }
    return 0;
}

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Every key of o is in allowed (NULL-terminated); else the first stranger. */
static const char *unknown_key(json_t *o, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t i;
        (void)v;
        for (i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (!allowed[i])
            return key;
    }
    return NULL;
}

/* ---- a posting from JSON -------------------------------------------------- */

/* A posting parsed from a request; strings point into root. */
typedef struct parsed {
    json_t *root;
    erp_posting_t p;
    erp_line_t *lines;
    is_movement_t *moves;
    const char **ids; /* every line's movement ids, back to back */
} parsed_t;

static void parsed_free(parsed_t *x) {
    free(x->lines);
    free(x->moves);
    free(x->ids);
    json_decref(x->root);
    memset(x, 0, sizeof *x);
}

static int parsed_alloc(parsed_t *x, size_t n_lines, size_t n_ids) {
    x->lines = calloc(n_lines ? n_lines : 1, sizeof *x->lines);
    x->moves = calloc(n_lines ? n_lines : 1, sizeof *x->moves);
    x->ids = calloc(n_ids ? n_ids : 1, sizeof *x->ids);
    return x->lines && x->moves && x->ids ? 0 : -1;
}

/* Optional string field: absent or null → "" (protobuf-c's empty string). */
static int opt_str(json_t *o, const char *key, char **out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = (char *)"";
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    *out = (char *)json_string_value(v);
    return 0;
}

static int opt_status(json_t *o, const char *key, Invsync__V1__StockStatus *out) {
    const char *s = jstr(o, key);
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = INVSYNC__V1__STOCK_STATUS__STOCK_STATUS_UNSPECIFIED;
        return 0;
    }
    if (!s || is_stock_status_parse(s) == 0)
        return -1;
    *out = (Invsync__V1__StockStatus)is_stock_status_parse(s);
    return 0;
}

/* One posting line; 0 or -1 with why. */
static int parse_line(json_t *o, size_t i, is_movement_t *m, erp_line_t *line, const char **ids,
                      size_t *n_ids, char *why, size_t why_size) {
    static const char *const known[] = {"type",
                                        "material",
                                        "lot",
                                        "serial",
                                        "location",
                                        "to_location",
                                        "from_status",
                                        "to_status",
                                        "uom",
                                        "quantity",
                                        "order_id",
                                        "operation",
                                        "reason_code",
                                        "reverses_movement_id",
                                        "reversed_type",
                                        "movement_ids",
                                        NULL};
    const char *type = jstr(o, "type"), *rtype = jstr(o, "reversed_type"), *q = jstr(o, "quantity");
    const char *bad = NULL, *k;
    json_t *arr = json_object_get(o, "movement_ids"), *v;
    char err[128];
    size_t j;

    if (!json_is_object(o)) {
        is_errf(why, why_size, "lines[%zu] is not an object", i);
        return -1;
    }
    k = unknown_key(o, known);
    if (k) {
        is_errf(why, why_size, "lines[%zu]: unknown field '%s'", i, k);
        return -1;
    }
    *m = (is_movement_t)INVSYNC__V1__MOVEMENT__INIT;
    if (!type || is_movement_type_parse(type) == 0)
        bad = "type";
    else if (opt_str(o, "material", &m->material) || opt_str(o, "lot", &m->lot) ||
             opt_str(o, "serial", &m->serial) || opt_str(o, "location", &m->location) ||
             opt_str(o, "to_location", &m->to_location) || opt_str(o, "uom", &m->uom) ||
             opt_str(o, "order_id", &m->order_id) || opt_str(o, "operation", &m->operation) ||
             opt_str(o, "reason_code", &m->reason_code) ||
             opt_str(o, "reverses_movement_id", &m->reverses_movement_id))
        bad = "a string field";
    else if (opt_status(o, "from_status", &m->from_status))
        bad = "from_status";
    else if (opt_status(o, "to_status", &m->to_status))
        bad = "to_status";
    else if (rtype && is_movement_type_parse(rtype) == 0)
        bad = "reversed_type";
    else if (!q)
        bad = "quantity (a decimal string)";
    else if (arr && !json_is_array(arr))
        bad = "movement_ids";
    if (bad) {
        is_errf(why, why_size, "lines[%zu]: missing or invalid %s", i, bad);
        return -1;
    }
    m->type = (Invsync__V1__MovementType)is_movement_type_parse(type);
    if (rtype)
        m->reversed_type = (Invsync__V1__MovementType)is_movement_type_parse(rtype);
    if (is_decimal_parse(q, strlen(q), IS_DECIMAL_MAX_SCALE, &line->quantity, err, sizeof err) !=
        IS_OK) {
        is_errf(why, why_size, "lines[%zu].quantity '%s': %s", i, q, err);
        return -1;
    }
    line->m = m;
    line->movement_ids = ids;
    json_array_foreach(arr, j, v) {
        if (!json_is_string(v)) {
            is_errf(why, why_size, "lines[%zu].movement_ids[%zu] is not a string", i, j);
            return -1;
        }
        ids[line->n_movement_ids++] = json_string_value(v);
    }
    *n_ids += line->n_movement_ids;
    if (line->n_movement_ids)
        m->movement_id = (char *)ids[0];
    return 0;
}

/* A POST /postings body; 0, or -1 with why (a 400). */
static int parse_posting(const char *body, size_t len, parsed_t *x, char *why, size_t why_size) {
    static const char *const known[] = {"posting_id",   "site",  "tier", "policy_version",
                                        "posting_time", "lines", NULL};
    json_error_t jerr;
    json_t *lines, *o;
    const char *when, *k;
    size_t i, n_ids = 0, total_ids = 0;

    memset(x, 0, sizeof *x);
    x->root = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(x->root)) {
        is_errf(why, why_size, "body is not a JSON object: %s", x->root ? "" : jerr.text);
        return -1;
    }
    k = unknown_key(x->root, known);
    if (k) {
        is_errf(why, why_size, "unknown field '%s'", k);
        return -1;
    }
    x->p.posting_id = jstr(x->root, "posting_id");
    x->p.site = jstr(x->root, "site");
    x->p.tier = jstr(x->root, "tier");
    x->p.policy_version = jstr(x->root, "policy_version");
    when = jstr(x->root, "posting_time");
    lines = json_object_get(x->root, "lines");
    if (!x->p.posting_id || !x->p.posting_id[0] || !x->p.site || !x->p.site[0] || !when ||
        !json_is_array(lines) || json_array_size(lines) == 0) {
        is_errf(why, why_size,
                "posting_id, site, posting_time and a non-empty lines array are required");
        return -1;
    }
    if (is_parse_rfc3339(when, &x->p.posting_time) != IS_OK) {
        is_errf(why, why_size, "posting_time '%s' is not RFC 3339", when);
        return -1;
    }
    json_array_foreach(lines, i, o) {
        json_t *ids = json_object_get(o, "movement_ids");
        total_ids += json_is_array(ids) ? json_array_size(ids) : 0;
    }
    if (parsed_alloc(x, json_array_size(lines), total_ids) != 0) {
        is_errf(why, why_size, "out of memory");
        return -1;
    }
    json_array_foreach(lines, i, o) {
        if (parse_line(o, i, &x->moves[i], &x->lines[i], x->ids + n_ids, &n_ids, why, why_size))
            return -1;
        x->moves[i].site = (char *)x->p.site;
    }
    x->p.lines = x->lines;
    x->p.n_lines = json_array_size(lines);
    return 0;
}

/* ---- routes ------------------------------------------------------------- */

static json_t *document_json(const char *posting_id, const char *doc) {
    return json_pack("{s:s, s:s}", "document", doc, "posting_id", posting_id);
}

/* Post under the ledger lock; respond; count. The common end of /postings and /seed. */
static void post_and_answer(sim_t *s, const erp_posting_t *p, is_http_response_t *resp,
                            int may_fail_after_commit) {
    erp_result_t r;
    int replayed = 0;
    is_err_t rc;
    faults_t f;

    memset(&r, 0, sizeof r);
    pthread_mutex_lock(&s->ledger_mu);
    rc = erp_sqlite_post(s->ledger, p, &r, &replayed);
    pthread_mutex_unlock(&s->ledger_mu);

    if (rc == IS_ERR_PERMANENT) {
        count(s, &s->stats.rejected);
        is_log(IS_LOG_INFO, "posting refused", "posting_id", p->posting_id, "error", r.message,
               NULL);
        is_http_respond_error(resp, 422, "%s", r.message);
        return;
    }
    if (rc != IS_OK) {
        is_log(IS_LOG_WARN, "posting failed", "posting_id", p->posting_id, "error", r.message,
               NULL);
        is_http_respond_error(resp, 503, "%s", r.message);
        return;
    }
    f = faults_get(s);
    count(s, replayed ? &s->stats.replayed : &s->stats.posted);
    is_log(IS_LOG_INFO, replayed ? "posting replayed" : "posted", "posting_id", p->posting_id,
           "document", r.document, NULL);
    if (!replayed && may_fail_after_commit && roll(s, f.fail_after_commit_rate)) {
        is_http_respond_error(resp, f.error_status, "injected fault after commit (document %s)",
                              r.document);
        return;
    }
    is_http_respond_json(resp, replayed ? f.replay_status : 201,
                         document_json(p->posting_id, r.document));
}

static void h_post_postings(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    const char *key;
    char why[256];
    parsed_t x;
    faults_t f;

    count(s, &s->stats.posts);
    if (gate(s, req, resp, 1))
        return;
    f = faults_get(s);
    if (roll(s, f.error_rate)) {
        is_http_respond_error(resp, f.error_status, "injected fault");
        return;
    }
    if (roll(s, f.timeout_rate)) {
        nap(s, f.timeout_ms);
        is_http_respond_error(resp, 504, "injected timeout after %lld ms", (long long)f.timeout_ms);
        return;
    }
    if (parse_posting(req->body, req->body_len, &x, why, sizeof why) != 0) {
        count(s, &s->stats.rejected);
        is_http_respond_error(resp, 400, "%s", why);
        goto done;
    }
    key = is_http_header(req, "Idempotency-Key");
    if (!key || strcmp(key, x.p.posting_id) != 0) {
        count(s, &s->stats.rejected);
        is_http_respond_error(resp, 400, "Idempotency-Key header must equal posting_id '%s'",
                              x.p.posting_id);
        goto done;
    }
    post_and_answer(s, &x.p, resp, 1);

done:
    parsed_free(&x);
}

static void h_get_posting(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    const char *id = req->path + strlen("/postings/");
    erp_result_t r;
    is_err_t rc;

    if (gate(s, req, resp, 1))
        return;
    memset(&r, 0, sizeof r);
    pthread_mutex_lock(&s->ledger_mu);
    rc = erp_sqlite_lookup(s->ledger, id, &r);
    pthread_mutex_unlock(&s->ledger_mu);
    if (rc == IS_OK)
        is_http_respond_json(resp, 200, document_json(id, r.document));
    else if (rc == IS_ERR_NOT_FOUND)
        is_http_respond_error(resp, 404, "posting '%s' not found", id);
    else
        is_http_respond_error(resp, 503, "%s", r.message);
}

static int on_hand_row(void *opaque, const erp_on_hand_row_t *row) {
    char q[IS_DECIMAL_STRLEN];
    is_decimal_format(row->quantity, q, sizeof q);
    return json_array_append_new(
        opaque, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "site", row->site, "material",
                          row->material, "lot", row->lot, "location", row->location, "stock_status",
                          is_stock_status_name(row->status), "uom", row->uom, "quantity", q));
}

static void h_on_hand(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    json_t *rows;
    char err[256];
    is_err_t rc;

    if (gate(s, req, resp, 1))
        return;
    rows = json_array();
    if (!rows) {
        is_http_respond_error(resp, 500, "out of memory");
        return;
    }
    pthread_mutex_lock(&s->ledger_mu);
    rc = erp_sqlite_query_on_hand(s->ledger, is_http_query(req, "site"), on_hand_row, rows, err,
                                  sizeof err);
    pthread_mutex_unlock(&s->ledger_mu);
    if (rc != IS_OK) {
        json_decref(rows);
        is_http_respond_error(resp, 503, "%s", err);
        return;
    }
    is_http_respond_json(resp, 200, rows);
}

/*
 * POST /seed: a JSON array of on-hand rows becomes one posting of ADJUSTMENT
 * lines (into the row's stock status). Lines carry no movement ids: opening
 * stock is not a movement, so exactly-once counts over doc_movements stay true.
 */
static void h_seed(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    static const char *const known[] = {"site",         "material", "lot",      "location",
                                        "stock_status", "uom",      "quantity", NULL};
    sim_t *s = ctx;
    uint8_t digest[IS_SHA256_LEN];
    char hex[IS_SHA256_HEX_LEN + 1], posting_id[IS_SHA256_HEX_LEN + 8], err[128];
    json_error_t jerr;
    json_t *root, *o;
    parsed_t x;
    size_t i, n = 0;

    if (gate(s, req, resp, 1))
        return;
    memset(&x, 0, sizeof x);
    root = json_loadb(req->body, req->body_len, 0, &jerr);
    x.root = root;
    if (!json_is_array(root) || json_array_size(root) == 0) {
        is_http_respond_error(resp, 400, "body must be a non-empty JSON array of on-hand rows");
        goto done;
    }
    if (parsed_alloc(&x, json_array_size(root), 0) != 0) {
        is_http_respond_error(resp, 500, "out of memory");
        goto done;
    }
    json_array_foreach(root, i, o) {
        is_movement_t *m = &x.moves[n];
        erp_line_t *line = &x.lines[n];
        const char *q = jstr(o, "quantity"), *k = json_is_object(o) ? unknown_key(o, known) : NULL;
        Invsync__V1__StockStatus st;

        *m = (is_movement_t)INVSYNC__V1__MOVEMENT__INIT;
        if (!json_is_object(o) || k || opt_str(o, "site", &m->site) ||
            opt_str(o, "material", &m->material) || opt_str(o, "lot", &m->lot) ||
            opt_str(o, "location", &m->location) || opt_str(o, "uom", &m->uom) ||
            opt_status(o, "stock_status", &st) || !q || !m->site[0]) {
            is_http_respond_error(resp, 400,
                                  "row %zu: site, material, location, uom, quantity (a decimal "
                                  "string) and a known stock_status are expected%s%s",
                                  i, k ? "; unknown field " : "", k ? k : "");
            goto done;
        }
        if (is_decimal_parse(q, strlen(q), IS_DECIMAL_MAX_SCALE, &line->quantity, err,
                             sizeof err) != IS_OK) {
            is_http_respond_error(resp, 400, "row %zu: quantity '%s': %s", i, q, err);
            goto done;
        }
        if (is_decimal_sign(line->quantity) == 0)
            continue; /* nothing to book */
        m->type = INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT;
        m->to_status = st ? st : INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
        m->reason_code = (char *)"OPENING";
        line->m = m;
        /* One posting site: the rows' common site, "*" when they span several. */
        x.p.site = !x.p.site || strcmp(x.p.site, m->site) == 0 ? m->site : "*";
        n++;
    }
    if (n == 0) {
        is_http_respond_error(resp, 400, "every row has quantity zero");
        goto done;
    }
    is_sha256(req->body, req->body_len, digest);
    is_hex(digest, IS_SHA256_LEN, hex);
    snprintf(posting_id, sizeof posting_id, "seed-%s", hex);
    x.p.posting_id = posting_id;
    x.p.tier = "seed";
    x.p.policy_version = "";
    x.p.posting_time = is_clock_now_ms(NULL);
    x.p.lines = x.lines;
    x.p.n_lines = n;
    post_and_answer(s, &x.p, resp, 0);

done:
    parsed_free(&x);
}

static void h_healthz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    if (gate(ctx, req, resp, 0))
        return;
    is_http_respond_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

/* ---- test control ------------------------------------------------------- */

static json_t *faults_json(const faults_t *f) {
    return json_pack("{s:f, s:i, s:f, s:I, s:I, s:b, s:f, s:i}", "error_rate", f->error_rate,
                     "error_status", f->error_status, "timeout_rate", f->timeout_rate, "timeout_ms",
                     (json_int_t)f->timeout_ms, "latency_ms", (json_int_t)f->latency_ms, "down",
                     f->down, "fail_after_commit_rate", f->fail_after_commit_rate, "replay_status",
                     f->replay_status);
}

/* Apply a partial update to a copy; -1 with why on the first bad key. */
static int faults_update(faults_t *f, json_t *o, char *why, size_t why_size) {
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v) {
        double d = json_number_value(v);
        int num = json_is_number(v), integer = json_is_integer(v);
        if (strcmp(key, "error_rate") == 0 || strcmp(key, "timeout_rate") == 0 ||
            strcmp(key, "fail_after_commit_rate") == 0) {
            if (!num || d < 0 || d > 1)
                goto bad;
            *(strcmp(key, "error_rate") == 0     ? &f->error_rate
              : strcmp(key, "timeout_rate") == 0 ? &f->timeout_rate
                                                 : &f->fail_after_commit_rate) = d;
        } else if (strcmp(key, "error_status") == 0) {
            if (!integer || d < 400 || d > 599)
                goto bad;
            f->error_status = (int)d;
        } else if (strcmp(key, "replay_status") == 0) {
            if (!integer || (d != 200 && d != 409))
                goto bad;
            f->replay_status = (int)d;
        } else if (strcmp(key, "timeout_ms") == 0 || strcmp(key, "latency_ms") == 0) {
            if (!integer || d < 0 || d > 600000)
                goto bad;
            *(strcmp(key, "timeout_ms") == 0 ? &f->timeout_ms : &f->latency_ms) = (int64_t)d;
        } else if (strcmp(key, "down") == 0) {
            if (!json_is_boolean(v))
                goto bad;
            f->down = json_is_true(v);
        } else {
            is_errf(why, why_size, "unknown fault knob '%s'", key);
            return -1;
        }
    }
    return 0;

bad:
    is_errf(why, why_size,
            "bad value for '%s' (rates 0..1, error_status 400..599, replay_status 200|409, "
            "*_ms 0..600000, down true|false)",
            key);
    return -1;
}

static void h_faults(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    faults_t f;
    json_t *o;
    char why[256];

    if (strcmp(req->method, "POST") == 0) {
        o = json_loadb(req->body, req->body_len, 0, NULL);
        f = faults_get(s);
        if (!json_is_object(o) || faults_update(&f, o, why, sizeof why) != 0) {
            if (!json_is_object(o))
                is_errf(why, sizeof why, "body must be a JSON object of fault knobs");
            json_decref(o);
            is_http_respond_error(resp, 400, "%s", why);
            return;
        }
        json_decref(o);
        pthread_mutex_lock(&s->mu);
        s->faults = f;
        pthread_mutex_unlock(&s->mu);
        is_log(IS_LOG_INFO, "faults set", "body", req->body, NULL);
    }
    f = faults_get(s);
    is_http_respond_json(resp, 200, faults_json(&f));
}

static void h_stats(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    sim_stats_t st;

    if (gate(s, req, resp, 0))
        return;
    pthread_mutex_lock(&s->mu);
    st = s->stats;
    pthread_mutex_unlock(&s->mu);
    is_http_respond_json(resp, 200,
                         json_pack("{s:I, s:I, s:I, s:I, s:I}", "posts", (json_int_t)st.posts,
                                   "posted", (json_int_t)st.posted, "replayed",
                                   (json_int_t)st.replayed, "rejected", (json_int_t)st.rejected,
                                   "faults_injected", (json_int_t)st.faults_injected));
}

static void h_movement(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    const char *id = req->path + strlen("/_movements/");
    char doc[64];
    size_t n = 0;
    is_err_t rc;

    if (gate(s, req, resp, 0))
        return;
    pthread_mutex_lock(&s->ledger_mu);
    rc = erp_sqlite_document_of(s->ledger, id, doc, sizeof doc, &n);
    pthread_mutex_unlock(&s->ledger_mu);
    if (rc == IS_OK || rc == IS_ERR_CONFLICT)
        is_http_respond_json(resp, rc == IS_OK ? 200 : 409,
                             json_pack("{s:s, s:s, s:I}", "movement_id", id, "document", doc,
                                       "documents", (json_int_t)n));
    else if (rc == IS_ERR_NOT_FOUND)
        is_http_respond_error(resp, 404, "movement '%s' is in no document", id);
    else
        is_http_respond_error(resp, 503, "ledger busy");
}

static void h_delete_posting(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    sim_t *s = ctx;
    json_t *o;
    const char *id;
    char doc[64];
    is_err_t rc;

    if (gate(s, req, resp, 0))
        return;
    o = json_loadb(req->body, req->body_len, 0, NULL);
    id = json_is_object(o) ? jstr(o, "posting_id") : NULL;
    if (!id) {
        json_decref(o);
        is_http_respond_error(resp, 400, "body must be {\"posting_id\": \"...\"}");
        return;
    }
    pthread_mutex_lock(&s->ledger_mu);
    rc = erp_sqlite_delete_posting(s->ledger, id, doc, sizeof doc);
    pthread_mutex_unlock(&s->ledger_mu);
    if (rc == IS_OK) {
        is_log(IS_LOG_INFO, "posting deleted", "posting_id", id, "document", doc, NULL);
        is_http_respond_json(resp, 200, document_json(id, doc));
    } else if (rc == IS_ERR_NOT_FOUND) {
        is_http_respond_error(resp, 404, "posting '%s' not found", id);
    } else {
        is_http_respond_error(resp, 503, "cannot delete posting: %s", is_err_str(rc));
    }
    json_decref(o);
}

static const is_http_route_t routes[] = {
    {"POST", "/postings", h_post_postings}, {"GET", "/postings/*", h_get_posting},
    {"GET", "/on-hand", h_on_hand},         {"POST", "/seed", h_seed},
    {"GET", "/healthz", h_healthz},         {"GET", "/_faults", h_faults},
    {"POST", "/_faults", h_faults},         {"GET", "/_stats", h_stats},
    {"GET", "/_movements/*", h_movement},   {"POST", "/_delete-posting", h_delete_posting},
};

/* ---- main --------------------------------------------------------------- */

typedef struct opts {
    const char *listen;
    const char *db;
    const char *token;
    int allow_negative;
    int64_t seed;
    int64_t threads;
} opts_t;

static void usage(FILE *f) {
    fprintf(f, "usage: erp-sim --listen HOST:PORT --db LEDGER.db [--token T] [--allow-negative]\n"
               "               [--seed N] [--threads N]\n"
               "  --token may also be given as ERP_SIM_TOKEN\n");
}

static int parse_args(int argc, char **argv, opts_t *o) {
    *o = (opts_t){.seed = 0, .threads = SIM_DEFAULT_THREADS};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--allow-negative") == 0) {
            o->allow_negative = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "erp-sim: '%s' needs a value or is unknown\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            o->listen = v;
        } else if (strcmp(a, "--db") == 0) {
            o->db = v;
        } else if (strcmp(a, "--token") == 0) {
            o->token = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (is_parse_int64(v, 0, INT64_MAX, &o->seed) != IS_OK) {
                fprintf(stderr, "erp-sim: --seed '%s' is not a non-negative integer\n", v);
                return -1;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (is_parse_int64(v, 1, 256, &o->threads) != IS_OK) {
                fprintf(stderr, "erp-sim: --threads '%s' must be 1..256\n", v);
                return -1;
            }
        } else {
            fprintf(stderr, "erp-sim: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (!o->token || !o->token[0])
        o->token = getenv("ERP_SIM_TOKEN");
    if (o->token && !o->token[0])
        o->token = NULL;
    if (!o->listen || !o->db) {
        fprintf(stderr, "erp-sim: --listen and --db are required\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    sim_t s;
    opts_t o;
    is_httpd_t *httpd = NULL;
    sigset_t sigs;
    char errstr[512], host[256];
    const char *colon;
    int sig = 0, rc = 1;

    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    is_log_init("erp-sim", IS_LOG_INFO);
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.ledger_mu, NULL);
    pthread_mutex_init(&s.mu, NULL);
    s.token = o.token;
    s.faults = (faults_t){.error_status = 503, .timeout_ms = 3000, .replay_status = 200};
    s.rng =
        o.seed ? (uint64_t)o.seed : (uint64_t)is_clock_now_ms(NULL) ^ ((uint64_t)getpid() << 32);
    if (s.rng == 0)
        s.rng = 0x9E3779B97F4A7C15ULL;

    /* Block the stop signals before any thread exists; main waits for them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (erp_sqlite_open_path(o.db, o.allow_negative, &s.ledger, errstr, sizeof errstr) != IS_OK) {
        fprintf(stderr, "erp-sim: %s\n", errstr);
        goto done;
    }
    if (is_httpd_start(o.listen, routes, sizeof routes / sizeof routes[0], &s, SIM_MAX_BODY,
                       (unsigned)o.threads, &httpd, errstr, sizeof errstr) != IS_OK) {
        fprintf(stderr, "erp-sim: %s\n", errstr);
        goto done;
    }
    colon = strrchr(o.listen, ':');
    snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - o.listen) : 0, o.listen);
    if (!host[0] || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    printf("listening on http://%s:%u\n", host, (unsigned)is_httpd_port(httpd));
    fflush(stdout);
    is_log(IS_LOG_INFO, "erp-sim started", "db", o.db, "auth", s.token ? "bearer" : "none", NULL);

    while (sigwait(&sigs, &sig) != 0)
        ;
    is_logf(IS_LOG_INFO, "erp-sim stopping on signal %d", sig);
    rc = 0;

done:
    atomic_store(&s.stopping, 1);
    is_httpd_stop(httpd);
    erp_sqlite_close(s.ledger);
    pthread_mutex_destroy(&s.ledger_mu);
    pthread_mutex_destroy(&s.mu);
    return rc;
}
