/*
 * api.c — health, readiness, metrics and status for erp-consumer (api.h).
 * Load: scrapes and status polls, a few per second at most.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "api.h"
#include "duration.h"

struct api {
    const consumer_config_t *cfg;
    const is_policy_t *policy;
    consumer_stats_t *stats;
    store_t *store;
    pthread_mutex_t mu; /* serializes use of store */
    is_httpd_t *httpd;
};

json_t *api_status_json(store_t *store, const is_policy_t *policy, const consumer_stats_t *stats,
                        int64_t now_ms, char *errstr, size_t errstr_size) {
    static const char *const sql =
        "SELECT site, tier, count(*), min(received_at),"
        " coalesce(sum(state = 'failed'), 0), coalesce(sum(state = 'retry'), 0)"
        " FROM movements WHERE state IN ('queued', 'posting', 'retry', 'failed')"
        " GROUP BY site, tier ORDER BY site, tier";
    store_counts_t c;
    sqlite3_stmt *st = NULL;
    json_t *doc, *tiers;

    if (store_counts(store, &c, errstr, errstr_size) != IS_OK)
        return NULL;
    if (is_db_prepare(store_db(store), sql, &st, errstr, errstr_size) != IS_OK)
        return NULL;
    doc = json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I},s:s}",
                    "movements", "total", (json_int_t)c.movements, "queued", (json_int_t)c.queued,
                    "posting", (json_int_t)c.posting, "retry", (json_int_t)c.retry, "posted",
                    (json_int_t)c.posted, "failed", (json_int_t)c.failed, "dead",
                    (json_int_t)c.dead, "cancelled", (json_int_t)c.cancelled, "skipped",
                    (json_int_t)c.skipped, "postings", "total", (json_int_t)c.postings, "posted",
                    (json_int_t)c.postings_posted, "failed", (json_int_t)c.postings_failed,
                    "retry", (json_int_t)c.postings_retry, "policy_version",
                    is_policy_version(policy));
    tiers = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *tier = (const char *)sqlite3_column_text(st, 1);
        const is_tier_t *t = is_policy_tier_by_name(policy, tier);
        double age = (double)(now_ms - sqlite3_column_int64(st, 3)) / 1000.0;
        json_array_append_new(
            tiers, json_pack("{s:s,s:s,s:I,s:f,s:b,s:I,s:I}", "site",
                             (const char *)sqlite3_column_text(st, 0), "tier", tier, "unposted",
                             (json_int_t)sqlite3_column_int64(st, 2), "oldest_unposted_age_s", age,
                             "stale", t ? age * 1000.0 > (double)t->stale_after_ms : 0, "failed",
                             (json_int_t)sqlite3_column_int64(st, 4), "retry",
                             (json_int_t)sqlite3_column_int64(st, 5)));
    }
    sqlite3_finalize(st);
    json_object_set_new(doc, "backlog", tiers);
    if (stats) {
        json_object_set_new(
            doc, "counters",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "messages",
                      (json_int_t)atomic_load(&stats->messages), "received",
                      (json_int_t)atomic_load(&stats->received), "duplicates",
                      (json_int_t)atomic_load(&stats->duplicates), "dead",
                      (json_int_t)atomic_load(&stats->dead), "ignored",
                      (json_int_t)atomic_load(&stats->ignored), "heartbeats",
                      (json_int_t)atomic_load(&stats->heartbeats), "posted",
                      (json_int_t)atomic_load(&stats->posted), "retried",
                      (json_int_t)atomic_load(&stats->retried), "failed",
                      (json_int_t)atomic_load(&stats->failed), "recovered",
                      (json_int_t)atomic_load(&stats->recovered), "kafka_up",
                      atomic_load(&stats->kafka_up)));
    }
    return doc;
}

static void h_healthz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    is_http_respond_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_status(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    char errstr[512];
    json_t *doc;
    (void)req;
    pthread_mutex_lock(&a->mu);
    doc = api_status_json(a->store, a->policy, a->stats, is_clock_now_ms(NULL), errstr,
                          sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!doc) {
        is_http_respond_error(resp, 500, "%s", errstr);
        return;
    }
    is_http_respond_json(resp, 200, doc);
}

static void h_readyz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    store_counts_t c;
    char errstr[256];
    int store_ok, kafka_ok = atomic_load(&a->stats->kafka_up);
    (void)req;
    pthread_mutex_lock(&a->mu);
    store_ok = store_counts(a->store, &c, errstr, sizeof(errstr)) == IS_OK;
    pthread_mutex_unlock(&a->mu);
    is_http_respond_json(resp, store_ok && kafka_ok ? 200 : 503,
                         json_pack("{s:b,s:s,s:s}", "ready", store_ok && kafka_ok, "store",
                                   store_ok ? "ok" : errstr, "kafka",
                                   kafka_ok ? "connected" : "no message received yet or unreachable"));
}

/* Append printf-style text to a growing buffer; returns 0 on ENOMEM. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

static int bprintf(buf_t *b, const char *fmt, ...) IS_PRINTF(2, 3);
static int bprintf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return 0;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 1;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
}

static void h_metrics(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    consumer_stats_t *s = a->stats;
    buf_t b = {0};
    char errstr[256];
    json_t *doc;
    (void)req;
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"invsync_consumer_messages_total", "Kafka messages applied to the store",
         offsetof(consumer_stats_t, messages)},
        {"invsync_consumer_movements_received_total", "New movements queued for posting",
         offsetof(consumer_stats_t, received)},
        {"invsync_consumer_duplicates_total", "Movements already known (absorbed)",
         offsetof(consumer_stats_t, duplicates)},
        {"invsync_consumer_dead_letters_total", "Messages dead-lettered on consumption",
         offsetof(consumer_stats_t, dead)},
        {"invsync_consumer_loop_guard_dropped_total", "Movements of ERP origin dropped",
         offsetof(consumer_stats_t, ignored)},
        {"invsync_consumer_heartbeats_total", "Producer heartbeats received",
         offsetof(consumer_stats_t, heartbeats)},
        {"invsync_erp_postings_posted_total", "Postings accepted by the ERP",
         offsetof(consumer_stats_t, posted)},
        {"invsync_erp_postings_retried_total", "Retryable ERP failures",
         offsetof(consumer_stats_t, retried)},
        {"invsync_erp_postings_failed_total", "Permanent ERP failures",
         offsetof(consumer_stats_t, failed)},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        atomic_llong *v = (atomic_llong *)((char *)s + counters[i].off);
        bprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", counters[i].name,
                counters[i].help, counters[i].name, counters[i].name, (long long)atomic_load(v));
    }
    bprintf(&b,
            "# HELP invsync_erp_call_seconds_sum Time spent in ERP post calls\n"
            "# TYPE invsync_erp_call_seconds_sum counter\ninvsync_erp_call_seconds_sum %.6f\n",
            (double)atomic_load(&s->erp_call_us) / 1e6);
    pthread_mutex_lock(&a->mu);
    doc = api_status_json(a->store, a->policy, NULL, is_clock_now_ms(NULL), errstr,
                          sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (doc) {
        size_t i;
        json_t *row;
        bprintf(&b, "# HELP invsync_queue_depth Movements not yet posted\n"
                    "# TYPE invsync_queue_depth gauge\n");
        json_array_foreach(json_object_get(doc, "backlog"), i, row) {
            bprintf(&b, "invsync_queue_depth{site=\"%s\",tier=\"%s\"} %lld\n",
                    json_string_value(json_object_get(row, "site")),
                    json_string_value(json_object_get(row, "tier")),
                    (long long)json_integer_value(json_object_get(row, "unposted")));
        }
        bprintf(&b, "# HELP invsync_oldest_unposted_age_seconds Age of the oldest unposted "
                    "movement\n# TYPE invsync_oldest_unposted_age_seconds gauge\n");
        json_array_foreach(json_object_get(doc, "backlog"), i, row) {
            bprintf(&b, "invsync_oldest_unposted_age_seconds{site=\"%s\",tier=\"%s\"} %.3f\n",
                    json_string_value(json_object_get(row, "site")),
                    json_string_value(json_object_get(row, "tier")),
                    json_real_value(json_object_get(row, "oldest_unposted_age_s")));
        }
        json_decref(doc);
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = b.p;
    resp->body_len = b.len;
}

/* Constant-time string equality (tokens). */
static int same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

/* 0 when the request may use the admin API; otherwise the response is set. */
static int admin_denied(api_t *a, const is_http_request_t *req, is_http_response_t *resp) {
    const char *token = is_http_bearer(req);
    if (!a->cfg->admin_token || !*a->cfg->admin_token) {
        is_http_respond_error(resp, 403, "admin API disabled: set admin.token in the configuration");
        return 1;
    }
    if (!token) {
        is_http_respond_error(resp, 401, "missing bearer token");
        return 1;
    }
    if (!same_secret(token, a->cfg->admin_token)) {
        is_http_respond_error(resp, 401, "unknown token");
        return 1;
    }
    return 0;
}

static json_t *body_json(const is_http_request_t *req, is_http_response_t *resp) {
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!body || !json_is_object(body)) {
        is_http_respond_error(resp, 400, "body must be a JSON object: %s",
                              body ? "got another JSON value" : jerr.text);
        json_decref(body);
        return NULL;
    }
    return body;
}

static void respond_admin(api_t *a, admin_request_t *ar, is_http_response_t *resp) {
    char errstr[512];
    int status = 500;
    pthread_mutex_lock(&a->mu);
    json_t *res = admin_perform(a->store, ar, is_clock_now_ms(NULL), &status, errstr,
                                sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!res)
        is_http_respond_error(resp, status, "%s", errstr);
    else
        is_http_respond_json(resp, status, res);
}

/* POST /admin/pause|resume|flush {"site","tier","by","reason"} */
static void h_admin_control(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    if (admin_denied(a, req, resp))
        return;
    json_t *body = body_json(req, resp);
    if (!body)
        return;
    admin_request_t ar = {
        .action = (admin_action_t)admin_action_parse(strrchr(req->path, '/') + 1),
        .site = json_string_value(json_object_get(body, "site")),
        .tier = json_string_value(json_object_get(body, "tier")),
        .by = json_string_value(json_object_get(body, "by")),
        .reason = json_string_value(json_object_get(body, "reason")),
    };
    respond_admin(a, &ar, resp);
    json_decref(body);
}

/* GET /admin/failed */
static void h_admin_failed(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    char errstr[512];
    if (admin_denied(a, req, resp))
        return;
    pthread_mutex_lock(&a->mu);
    json_t *res = admin_failed_list(a->store, errstr, sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!res)
        is_http_respond_error(resp, 500, "%s", errstr);
    else
        is_http_respond_json(resp, 200, res);
}

/* POST /admin/failed/<posting_id>/retry|skip {"by","reason"} */
static void h_admin_failed_action(void *ctx, const is_http_request_t *req,
                                  is_http_response_t *resp) {
    api_t *a = ctx;
    char id[128];
    const char *rest = req->path + strlen("/admin/failed/");
    const char *slash = strchr(rest, '/');
    int action = slash ? admin_action_parse(slash + 1) : -1;
    if (admin_denied(a, req, resp))
        return;
    if (!slash || (action != ADMIN_RETRY && action != ADMIN_SKIP) ||
        (size_t)(slash - rest) >= sizeof(id)) {
        is_http_respond_error(resp, 404, "use /admin/failed/<posting_id>/retry or .../skip");
        return;
    }
    snprintf(id, sizeof(id), "%.*s", (int)(slash - rest), rest);
    json_t *body = body_json(req, resp);
    if (!body)
        return;
    admin_request_t ar = {
        .action = (admin_action_t)action,
        .posting_id = id,
        .by = json_string_value(json_object_get(body, "by")),
        .reason = json_string_value(json_object_get(body, "reason")),
    };
    respond_admin(a, &ar, resp);
    json_decref(body);
}

/* GET /v1/trace?movement_id=X | ?document=Y */
static void h_trace(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    char errstr[512];
    const char *mv = is_http_query(req, "movement_id");
    const char *doc = is_http_query(req, "document");
    json_t *res;
    if (!mv && !doc) {
        is_http_respond_error(resp, 400, "give ?movement_id=<id> or ?document=<ERP document>");
        return;
    }
    pthread_mutex_lock(&a->mu);
    res = mv ? admin_trace_movement(a->store, mv, errstr, sizeof(errstr))
             : admin_trace_document(a->store, doc, errstr, sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!res)
        is_http_respond_error(resp, 404, "%s", errstr);
    else
        is_http_respond_json(resp, 200, res);
}

/* GET /admin/audit/verify */
static void h_audit_verify(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    if (admin_denied(a, req, resp))
        return;
    pthread_mutex_lock(&a->mu);
    json_t *res = admin_audit_verify(a->store);
    pthread_mutex_unlock(&a->mu);
    is_http_respond_json(resp, json_is_true(json_object_get(res, "ok")) ? 200 : 409, res);
}

static const is_http_route_t api_routes[] = {
    {"POST", "/admin/pause", h_admin_control},
    {"POST", "/admin/resume", h_admin_control},
    {"POST", "/admin/flush", h_admin_control},
    {"GET", "/admin/failed", h_admin_failed},
    {"POST", "/admin/failed/*", h_admin_failed_action},
    {"GET", "/admin/audit/verify", h_audit_verify},
    {"GET", "/v1/trace", h_trace},
    {"GET", "/healthz", h_healthz},
    {"GET", "/readyz", h_readyz},
    {"GET", "/metrics", h_metrics},
    {"GET", "/v1/status", h_status},
};

is_err_t api_start(const consumer_config_t *cfg, const is_policy_t *policy,
                   consumer_stats_t *stats, api_t **out, char *errstr, size_t errstr_size) {
    is_err_t rc;
    api_t *a = calloc(1, sizeof(*a));
    *out = NULL;
    if (!a)
        return IS_ERR_NOMEM;
    a->cfg = cfg;
    a->policy = policy;
    a->stats = stats;
    pthread_mutex_init(&a->mu, NULL);
    rc = store_open(cfg->store_path, IS_DB_SYNC_NORMAL, &a->store, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    rc = is_httpd_start(cfg->http_listen, api_routes, sizeof(api_routes) / sizeof(api_routes[0]),
                        a, 64 * 1024, (unsigned)cfg->http_threads, &a->httpd, errstr,
                        errstr_size);
    if (rc != IS_OK)
        goto err;
    *out = a;
    return IS_OK;
err:
    api_stop(a);
    return rc;
}

uint16_t api_port(const api_t *a) {
    return is_httpd_port(a->httpd);
}

void api_stop(api_t *a) {
    if (!a)
        return;
    is_httpd_stop(a->httpd);
    store_close(a->store);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
