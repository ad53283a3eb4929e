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
#include "status_page.h"
#include "duration.h"
#include "topic.h"

struct api {
    const consumer_config_t *cfg;
    const is_policy_t *policy;
    consumer_stats_t *stats;
    store_t *store;
    pthread_mutex_t mu; /* serializes use of store */
    is_httpd_t *httpd;
};

/* Seconds from ms timestamp t to now; -1 when t is 0 (never). */
static double age_s(int64_t now_ms, int64_t t) {
    return t ? (double)(now_ms - t) / 1000.0 : -1.0;
}

static json_t *rfc3339_or_null(int64_t ms) {
    char buf[IS_RFC3339_LEN];
    if (!ms)
        return json_null();
    is_format_rfc3339(ms, buf);
    return json_string(buf);
}

/* The grid cell for (site, tier), created with defaults on first use. */
static json_t *cell(json_t *grid_by_key, const is_policy_t *policy, const char *site,
                    const char *tier) {
    char key[128];
    snprintf(key, sizeof(key), "%s\x1f%s", site, tier);
    json_t *c = json_object_get(grid_by_key, key);
    if (c)
        return c;
    const is_tier_t *t = is_policy_tier_by_name(policy, tier);
    c = json_pack("{s:s,s:s,s:I,s:f,s:b,s:f,s:I,s:I,s:b,s:n,s:n,s:n,s:I}", "site", site, "tier",
                  tier, "unposted", (json_int_t)0, "oldest_unposted_age_s", 0.0, "stale", 0,
                  "stale_after_s", t ? (double)t->stale_after_ms / 1000.0 : 0.0, "failed",
                  (json_int_t)0, "retry", (json_int_t)0, "paused", 0, "last_posted_at",
                  "last_error", "last_error_at", "lag", (json_int_t)0);
    json_object_set_new(grid_by_key, key, c);
    return c;
}

/* Run sql and call fn for each row. */
static int each_row(store_t *store, const char *sql, void (*fn)(sqlite3_stmt *, void *), void *arg,
                    char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    if (is_db_prepare(store_db(store), sql, &st, errstr, errstr_size) != IS_OK)
        return 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        fn(st, arg);
    sqlite3_finalize(st);
    return 1;
}

typedef struct status_ctx {
    const is_policy_t *policy;
    json_t *grid;  /* key → cell */
    json_t *sites; /* site → object */
    int64_t now_ms;
} status_ctx_t;

static const char *col(sqlite3_stmt *st, int i) {
    const unsigned char *v = sqlite3_column_text(st, i);
    return v ? (const char *)v : "";
}

static json_t *site_obj(status_ctx_t *sc, const char *site) {
    json_t *o = json_object_get(sc->sites, site);
    if (!o) {
        o = json_pack("{s:s,s:n,s:n,s:f,s:f,s:f,s:I}", "site", site, "last_movement_at",
                      "last_heartbeat_at", "movement_age_s", -1.0, "heartbeat_age_s", -1.0,
                      "watermark_gap_age_s", 0.0, "dead_letters", (json_int_t)0);
        json_object_set_new(sc->sites, site, o);
        /* Every known site gets the full row of the policy's tiers. */
        for (size_t i = 0; i < is_policy_tier_count(sc->policy); i++)
            cell(sc->grid, sc->policy, site, is_policy_tier(sc->policy, i)->name);
    }
    return o;
}

static void row_site(sqlite3_stmt *st, void *arg) {
    status_ctx_t *sc = arg;
    json_t *o = site_obj(sc, col(st, 0));
    int64_t mv = sqlite3_column_int64(st, 1), hb = sqlite3_column_int64(st, 2);
    json_object_set_new(o, "last_movement_at", rfc3339_or_null(mv));
    json_object_set_new(o, "last_heartbeat_at", rfc3339_or_null(hb));
    json_object_set_new(o, "movement_age_s", json_real(age_s(sc->now_ms, mv)));
    json_object_set_new(o, "heartbeat_age_s", json_real(age_s(sc->now_ms, hb)));
}

static void row_backlog(sqlite3_stmt *st, void *arg) {
    status_ctx_t *sc = arg;
    site_obj(sc, col(st, 0));
    json_t *c = cell(sc->grid, sc->policy, col(st, 0), col(st, 1));
    const is_tier_t *t = is_policy_tier_by_name(sc->policy, col(st, 1));
    double age = age_s(sc->now_ms, sqlite3_column_int64(st, 3));
    json_object_set_new(c, "unposted", json_integer(sqlite3_column_int64(st, 2)));
    json_object_set_new(c, "oldest_unposted_age_s", json_real(age));
    json_object_set_new(c, "stale", json_boolean(t && age * 1000.0 > (double)t->stale_after_ms));
    json_object_set_new(c, "failed", json_integer(sqlite3_column_int64(st, 4)));
    json_object_set_new(c, "retry", json_integer(sqlite3_column_int64(st, 5)));
}

static void row_activity(sqlite3_stmt *st, void *arg) {
    status_ctx_t *sc = arg;
    site_obj(sc, col(st, 0));
    json_t *c = cell(sc->grid, sc->policy, col(st, 0), col(st, 1));
    json_object_set_new(c, "last_posted_at", rfc3339_or_null(sqlite3_column_int64(st, 2)));
    if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
        json_object_set_new(c, "last_error", json_string(col(st, 3)));
        json_object_set_new(c, "last_error_at", rfc3339_or_null(sqlite3_column_int64(st, 4)));
    }
}

static void row_gap(sqlite3_stmt *st, void *arg) {
    status_ctx_t *sc = arg;
    json_object_set_new(site_obj(sc, col(st, 0)), "watermark_gap_age_s",
                        json_real(age_s(sc->now_ms, sqlite3_column_int64(st, 1))));
}

static void row_dead(sqlite3_stmt *st, void *arg) {
    status_ctx_t *sc = arg;
    char site[65], tier[32];
    const char *prefix = is_policy_topic_prefix(sc->policy);
    if (is_topic_parse(col(st, 0), prefix, site, sizeof(site), tier, sizeof(tier)) != IS_OK)
        return;
    json_t *o = site_obj(sc, site);
    json_object_set_new(o, "dead_letters",
                        json_integer(json_integer_value(json_object_get(o, "dead_letters")) +
                                     sqlite3_column_int64(st, 1)));
}

typedef struct pause_ctx {
    status_ctx_t *sc;
    json_t *list;
} pause_ctx_t;

static void row_pause(sqlite3_stmt *st, void *arg) {
    pause_ctx_t *pc = arg;
    const char *site = col(st, 0), *tier = col(st, 1);
    json_array_append_new(pc->list, json_pack("{s:s,s:s,s:s,s:s,s:o}", "site", site, "tier", tier,
                                              "by", col(st, 2), "reason", col(st, 3), "at",
                                              rfc3339_or_null(sqlite3_column_int64(st, 4))));
    const char *key;
    json_t *c;
    json_object_foreach(pc->sc->grid, key, c) {
        const char *cs = json_string_value(json_object_get(c, "site"));
        const char *ct = json_string_value(json_object_get(c, "tier"));
        if ((strcmp(site, "*") == 0 || strcmp(site, cs) == 0) &&
            (strcmp(tier, "*") == 0 || strcmp(tier, ct) == 0))
            json_object_set_new(c, "paused", json_true());
    }
}

json_t *api_status_json(store_t *store, const is_policy_t *policy, const consumer_stats_t *stats,
                        int64_t retention_ms, int64_t now_ms, char *errstr, size_t errstr_size) {
    store_counts_t c;
    status_ctx_t sc = {policy, json_object(), json_object(), now_ms};
    json_t *doc = NULL, *grid, *sites, *paused = json_array();
    pause_ctx_t pc = {&sc, paused};
    char now[IS_RFC3339_LEN];
    int ok = store_counts(store, &c, errstr, errstr_size) == IS_OK;

    ok = ok && each_row(store, "SELECT site, last_movement_at, last_heartbeat_at FROM sites",
                        row_site, &sc, errstr, errstr_size);
    // clang-format off
    ok = ok && each_row(store,
                        /* the backlog: the two partial indexes, not the history */
                        "SELECT site, tier, count(*), min(accepted_at),"
                        " coalesce(sum(state = 'failed'), 0), coalesce(sum(state = 'retry'), 0)"
                        " FROM (SELECT site, tier, accepted_at, state FROM movements"
                        "  WHERE " STORE_QUEUED " UNION ALL"
                        "  SELECT site, tier, accepted_at, state FROM movements"
                        "  WHERE " STORE_OPEN("") ")"
                        " GROUP BY site, tier",
                        row_backlog, &sc, errstr, errstr_size);
    // clang-format on
    ok = ok && each_row(store,
                        "SELECT site, tier, last_posted_at, last_error, last_error_at"
                        " FROM tier_activity",
                        row_activity, &sc, errstr, errstr_size);
    ok = ok && each_row(store,
                        "SELECT m.site, min(m.received_at) FROM movements m JOIN watermarks w"
                        " ON w.producer_id = m.producer_id AND w.site = m.site"
                        " WHERE m.state = 'queued' AND m.seq > w.contiguous GROUP BY m.site",
                        row_gap, &sc, errstr, errstr_size);
    ok = ok && each_row(store, "SELECT topic, count(*) FROM dead_letters GROUP BY topic", row_dead,
                        &sc, errstr, errstr_size);
    ok = ok && each_row(store, "SELECT site, tier, actor, reason, at FROM pauses", row_pause, &pc,
                        errstr, errstr_size);
    if (!ok)
        goto out;
    if (stats) {
        consumer_stats_t *ms = (consumer_stats_t *)stats;
        pthread_mutex_lock(&ms->lag_mu);
        for (int i = 0; i < ms->n_lag; i++) {
            site_obj(&sc, ms->lag[i].site);
            json_object_set_new(cell(sc.grid, policy, ms->lag[i].site, ms->lag[i].tier), "lag",
                                json_integer(ms->lag[i].lag));
        }
        pthread_mutex_unlock(&ms->lag_mu);
    }
    /* Objects keyed for building → arrays for readers. */
    grid = json_array();
    sites = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(sc.grid, key, v) json_array_append(grid, v);
    json_object_foreach(sc.sites, key, v) json_array_append(sites, v);
    json_t *backlog = json_array();
    size_t i;
    json_array_foreach(grid, i, v) if (json_integer_value(json_object_get(v, "unposted")) > 0)
        json_array_append(backlog, v);
    is_format_rfc3339(now_ms, now);
    doc = json_pack("{s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I},"
                    "s:o,s:o,s:o,s:o}",
                    "generated_at", now, "policy_version", is_policy_version(policy), "movements",
                    "total", (json_int_t)c.movements, "queued", (json_int_t)c.queued, "posting",
                    (json_int_t)c.posting, "retry", (json_int_t)c.retry, "posted",
                    (json_int_t)c.posted, "failed", (json_int_t)c.failed, "dead",
                    (json_int_t)c.dead, "cancelled", (json_int_t)c.cancelled, "skipped",
                    (json_int_t)c.skipped, "postings", "total", (json_int_t)c.postings, "posted",
                    (json_int_t)c.postings_posted, "failed", (json_int_t)c.postings_failed, "retry",
                    (json_int_t)c.postings_retry, "sites", sites, "grid", grid, "backlog", backlog,
                    "paused", paused);
    paused = NULL;
    if (doc) {
        json_t *tiers = json_array();
        for (size_t t = 0; t < is_policy_tier_count(policy); t++)
            json_array_append_new(
                tiers,
                json_pack("{s:s,s:f}", "name", is_policy_tier(policy, t)->name, "stale_after_s",
                          (double)is_policy_tier(policy, t)->stale_after_ms / 1000.0));
        json_object_set_new(doc, "tiers", tiers);
        int64_t horizon = 0;
        if (store_pruned_before(store, &horizon, errstr, errstr_size) != IS_OK) {
            json_decref(doc);
            doc = NULL;
            goto out;
        }
        json_object_set_new(
            doc, "retention",
            json_pack("{s:o,s:o}", "store_retention_s",
                      retention_ms > 0 ? json_integer(retention_ms / 1000) : json_null(),
                      "pruned_before", rfc3339_or_null(horizon)));
    }
    if (doc && stats) {
        json_object_set_new(doc, "counters",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
                                      "s:b}",
                                      "messages", (json_int_t)atomic_load(&stats->messages),
                                      "received", (json_int_t)atomic_load(&stats->received),
                                      "duplicates", (json_int_t)atomic_load(&stats->duplicates),
                                      "conflicts", (json_int_t)atomic_load(&stats->conflicts),
                                      "dead", (json_int_t)atomic_load(&stats->dead), "ignored",
                                      (json_int_t)atomic_load(&stats->ignored), "heartbeats",
                                      (json_int_t)atomic_load(&stats->heartbeats), "posted",
                                      (json_int_t)atomic_load(&stats->posted), "retried",
                                      (json_int_t)atomic_load(&stats->retried), "failed",
                                      (json_int_t)atomic_load(&stats->failed), "recovered",
                                      (json_int_t)atomic_load(&stats->recovered),
                                      "sequences_skipped",
                                      (json_int_t)atomic_load(&stats->sequences_skipped), "pruned",
                                      (json_int_t)atomic_load(&stats->pruned), "before_horizon",
                                      (json_int_t)atomic_load(&stats->before_horizon), "kafka_up",
                                      atomic_load(&stats->kafka_up)));
    }
out:
    json_decref(paused);
    json_decref(sc.grid);
    json_decref(sc.sites);
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
    doc = api_status_json(a->store, a->policy, a->stats, a->cfg->store_retention_ms,
                          is_clock_now_ms(NULL), errstr, sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!doc) {
        is_http_respond_error(resp, 500, "%s", errstr);
        return;
    }
    is_http_respond_json(resp, 200, doc);
}

typedef struct ready_pauses {
    json_t *list; /* [{"site","tier"}] */
    int all;      /* a "*" / "*" pause */
    char text[256];
} ready_pauses_t;

static void row_ready_pause(sqlite3_stmt *st, void *arg) {
    ready_pauses_t *rp = arg;
    const char *site = col(st, 0), *tier = col(st, 1);
    size_t len = strlen(rp->text);
    json_array_append_new(rp->list, json_pack("{s:s,s:s}", "site", site, "tier", tier));
    rp->all |= strcmp(site, "*") == 0 && strcmp(tier, "*") == 0;
    if (len + 1 < sizeof(rp->text))
        snprintf(rp->text + len, sizeof(rp->text) - len, "%s%s/%s", len ? ", " : "", site, tier);
}

typedef struct ready_stale {
    const is_policy_t *policy;
    int64_t now_ms;
    json_t *list; /* [{"site","tier","oldest_unposted_age_s","stale_after_s"}] */
} ready_stale_t;

/* A (site, tier) of the backlog whose oldest unposted movement is past the tier's stale_after
 * (the rule of the status grid, row_backlog). */
static void row_ready_stale(sqlite3_stmt *st, void *arg) {
    ready_stale_t *rs = arg;
    const is_tier_t *t = is_policy_tier_by_name(rs->policy, col(st, 1));
    double age = age_s(rs->now_ms, sqlite3_column_int64(st, 2));
    if (t && age * 1000.0 > (double)t->stale_after_ms)
        json_array_append_new(rs->list,
                              json_pack("{s:s,s:s,s:f,s:f}", "site", col(st, 0), "tier", col(st, 1),
                                        "oldest_unposted_age_s", age, "stale_after_s",
                                        (double)t->stale_after_ms / 1000.0));
}

/*
 * 200 when the store answers and Kafka is reachable, unless posting is paused
 * for all sites and tiers. A partial pause keeps the pod in service (the other
 * sites and tiers post) but shows in "posting" and in "paused"; stale tiers
 * show in "stale" and keep it in service too (restarting it would not post
 * them: the cause is a pause, a failed posting or the ERP).
 */
static void h_readyz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    char errstr[256], posting[300];
    ready_pauses_t rp = {json_array(), 0, ""};
    ready_stale_t rs = {a->policy, is_clock_now_ms(NULL), json_array()};
    int store_ok, kafka_ok = atomic_load(&a->stats->kafka_up);
    (void)req;
    pthread_mutex_lock(&a->mu);
    // clang-format off
    store_ok = store_ping(a->store, errstr, sizeof(errstr)) == IS_OK &&
               each_row(a->store, "SELECT site, tier FROM pauses ORDER BY site, tier",
                        row_ready_pause, &rp, errstr, sizeof(errstr)) &&
               each_row(a->store,
                        /* the backlog, as in api_status_json: the two partial indexes */
                        "SELECT site, tier, min(accepted_at)"
                        " FROM (SELECT site, tier, accepted_at FROM movements"
                        "  WHERE " STORE_QUEUED " UNION ALL"
                        "  SELECT site, tier, accepted_at FROM movements"
                        "  WHERE " STORE_OPEN("") ")"
                        " GROUP BY site, tier ORDER BY site, tier",
                        row_ready_stale, &rs, errstr, sizeof(errstr));
    // clang-format on
    pthread_mutex_unlock(&a->mu);
    if (rp.all)
        snprintf(posting, sizeof(posting), "paused for all sites and tiers");
    else if (json_array_size(rp.list) > 0)
        snprintf(posting, sizeof(posting), "paused for %s", rp.text);
    else
        snprintf(posting, sizeof(posting), "running");
    int ready = store_ok && kafka_ok && !rp.all;
    is_http_respond_json(resp, ready ? 200 : 503,
                         json_pack("{s:b,s:s,s:s,s:s,s:o,s:o}", "ready", ready, "store",
                                   store_ok ? "ok" : errstr, "kafka",
                                   kafka_ok ? "connected"
                                   : atomic_load(&a->stats->messages) > 0
                                       ? "unreachable (messages were received "
                                         "before)"
                                       : "no message received yet or unreachable",
                                   "posting", posting, "paused", rp.list, "stale", rs.list));
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

/* Prometheus HELP/TYPE header. */
static void metric_head(buf_t *b, const char *name, const char *type, const char *help) {
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One gauge line per grid cell from a numeric field of the status grid. */
static void grid_gauge(buf_t *b, json_t *grid, const char *name, const char *help,
                       const char *field) {
    size_t i;
    json_t *c;
    metric_head(b, name, "gauge", help);
    json_array_foreach(grid, i, c) {
        json_t *v = json_object_get(c, field);
        double x = json_is_boolean(v) ? (json_is_true(v) ? 1.0 : 0.0) : json_number_value(v);
        bprintf(b, "%s{site=\"%s\",tier=\"%s\"} %.3f\n", name,
                json_string_value(json_object_get(c, "site")),
                json_string_value(json_object_get(c, "tier")), x);
    }
}

/* Seconds since the epoch of an RFC 3339 field, or no line when null. */
static void time_line(buf_t *b, const char *name, const char *labels, json_t *v) {
    int64_t ms;
    if (json_is_string(v) && is_parse_rfc3339(json_string_value(v), &ms) == IS_OK)
        bprintf(b, "%s{%s} %.3f\n", name, labels, (double)ms / 1000.0);
}

static void h_metrics(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    api_t *a = ctx;
    consumer_stats_t *s = a->stats;
    buf_t b = {0};
    char errstr[256], labels[160];
    static const char *const outcome_names[STATS_N_OUTCOMES] = {"posted", "retry", "failed"};
    json_t *doc, *grid, *sites, *c;
    size_t i;
    (void)req;

    metric_head(&b, "invsync_consumer_messages_total", "counter",
                "Kafka messages applied to the consumer store");
    bprintf(&b, "invsync_consumer_messages_total %lld\n", (long long)atomic_load(&s->messages));
    metric_head(&b, "invsync_consumer_movements_total", "counter",
                "Movements consumed, by outcome");
    bprintf(&b,
            "invsync_consumer_movements_total{outcome=\"received\"} %lld\n"
            "invsync_consumer_movements_total{outcome=\"duplicate\"} %lld\n"
            "invsync_consumer_movements_total{outcome=\"conflict\"} %lld\n"
            "invsync_consumer_movements_total{outcome=\"dead_letter\"} %lld\n"
            "invsync_consumer_movements_total{outcome=\"loop_guard\"} %lld\n"
            "invsync_consumer_movements_total{outcome=\"before_horizon\"} %lld\n",
            (long long)atomic_load(&s->received), (long long)atomic_load(&s->duplicates),
            (long long)atomic_load(&s->conflicts), (long long)atomic_load(&s->dead),
            (long long)atomic_load(&s->ignored), (long long)atomic_load(&s->before_horizon));
    metric_head(&b, "invsync_store_pruned_total", "counter",
                "Finished movements deleted from the store by store.retention");
    bprintf(&b, "invsync_store_pruned_total %lld\n", (long long)atomic_load(&s->pruned));
    metric_head(&b, "invsync_sequences_skipped_total", "counter",
                "Movements given up as lost: sequence gaps that did not close within "
                "consume.gap_timeout while the consumer was caught up");
    bprintf(&b, "invsync_sequences_skipped_total %lld\n",
            (long long)atomic_load(&s->sequences_skipped));
    metric_head(&b, "invsync_heartbeats_received_total", "counter", "Producer heartbeats received");
    bprintf(&b, "invsync_heartbeats_received_total %lld\n", (long long)atomic_load(&s->heartbeats));
    metric_head(&b, "invsync_kafka_up", "gauge", "1 when the consumer reaches Kafka");
    bprintf(&b, "invsync_kafka_up %d\n", atomic_load(&s->kafka_up));
    char ckpt[512];
    if (is_db_checkpoint_metrics(store_db(a->store), "store", ckpt, sizeof(ckpt)))
        bprintf(&b, "%s", ckpt);

    const char *adapter = a->cfg->erp.adapter;
    metric_head(&b, "invsync_erp_postings_total", "counter", "ERP post calls by outcome");
    for (int o = 0; o < STATS_N_OUTCOMES; o++)
        bprintf(&b, "invsync_erp_postings_total{adapter=\"%s\",outcome=\"%s\"} %lld\n", adapter,
                outcome_names[o], (long long)atomic_load(&s->erp_hist_count[o]));
    metric_head(&b, "invsync_erp_call_duration_seconds", "histogram", "Duration of ERP post calls");
    for (int o = 0; o < STATS_N_OUTCOMES; o++) {
        snprintf(labels, sizeof(labels), "adapter=\"%s\",outcome=\"%s\"", adapter,
                 outcome_names[o]);
        for (int k = 0; k < STATS_N_BUCKETS; k++)
            bprintf(&b, "invsync_erp_call_duration_seconds_bucket{%s,le=\"%g\"} %lld\n", labels,
                    stats_buckets[k], (long long)atomic_load(&s->erp_hist[o][k]));
        bprintf(&b, "invsync_erp_call_duration_seconds_bucket{%s,le=\"+Inf\"} %lld\n", labels,
                (long long)atomic_load(&s->erp_hist_count[o]));
        bprintf(&b, "invsync_erp_call_duration_seconds_sum{%s} %.6f\n", labels,
                (double)atomic_load(&s->erp_hist_sum_us[o]) / 1e6);
        bprintf(&b, "invsync_erp_call_duration_seconds_count{%s} %lld\n", labels,
                (long long)atomic_load(&s->erp_hist_count[o]));
    }

    metric_head(&b, "invsync_tier_stale_after_seconds", "gauge", "The tier's staleness limit");
    for (size_t t = 0; t < is_policy_tier_count(a->policy); t++)
        bprintf(&b, "invsync_tier_stale_after_seconds{tier=\"%s\"} %.3f\n",
                is_policy_tier(a->policy, t)->name,
                (double)is_policy_tier(a->policy, t)->stale_after_ms / 1000.0);

    pthread_mutex_lock(&a->mu);
    doc = api_status_json(a->store, a->policy, s, a->cfg->store_retention_ms, is_clock_now_ms(NULL),
                          errstr, sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!doc) {
        free(b.p);
        is_http_respond_error(resp, 500, "%s", errstr);
        return;
    }
    grid = json_object_get(doc, "grid");
    sites = json_object_get(doc, "sites");
    grid_gauge(&b, grid, "invsync_queue_depth", "Movements not yet posted", "unposted");
    grid_gauge(&b, grid, "invsync_oldest_unposted_age_seconds",
               "Age of the oldest movement not yet posted", "oldest_unposted_age_s");
    grid_gauge(&b, grid, "invsync_tier_stale",
               "1 when the oldest unposted movement is older than the tier's stale_after", "stale");
    grid_gauge(&b, grid, "invsync_failed_postings", "Movements in failed postings (lot held)",
               "failed");
    grid_gauge(&b, grid, "invsync_paused", "1 when posting is paused for the site and tier",
               "paused");
    grid_gauge(&b, grid, "invsync_consumer_lag", "Messages behind the end of the tier topics",
               "lag");
    metric_head(&b, "invsync_last_posting_timestamp_seconds", "gauge",
                "Time of the last successful posting");
    json_array_foreach(grid, i, c) {
        snprintf(labels, sizeof(labels), "site=\"%s\",tier=\"%s\"",
                 json_string_value(json_object_get(c, "site")),
                 json_string_value(json_object_get(c, "tier")));
        time_line(&b, "invsync_last_posting_timestamp_seconds", labels,
                  json_object_get(c, "last_posted_at"));
    }
    metric_head(&b, "invsync_site_last_heartbeat_timestamp_seconds", "gauge",
                "Time the last producer heartbeat of the site was received");
    json_array_foreach(sites, i, c) {
        snprintf(labels, sizeof(labels), "site=\"%s\"",
                 json_string_value(json_object_get(c, "site")));
        time_line(&b, "invsync_site_last_heartbeat_timestamp_seconds", labels,
                  json_object_get(c, "last_heartbeat_at"));
    }
    metric_head(&b, "invsync_site_last_movement_timestamp_seconds", "gauge",
                "Time the last movement of the site was received");
    json_array_foreach(sites, i, c) {
        snprintf(labels, sizeof(labels), "site=\"%s\"",
                 json_string_value(json_object_get(c, "site")));
        time_line(&b, "invsync_site_last_movement_timestamp_seconds", labels,
                  json_object_get(c, "last_movement_at"));
    }
    metric_head(&b, "invsync_watermark_gap_age_seconds", "gauge",
                "Age of the oldest movement waiting for an earlier sequence number");
    json_array_foreach(sites, i, c)
        bprintf(&b, "invsync_watermark_gap_age_seconds{site=\"%s\"} %.3f\n",
                json_string_value(json_object_get(c, "site")),
                json_number_value(json_object_get(c, "watermark_gap_age_s")));
    metric_head(&b, "invsync_dead_letters", "gauge", "Messages dead-lettered, by site");
    json_array_foreach(sites, i, c)
        bprintf(&b, "invsync_dead_letters{site=\"%s\"} %lld\n",
                json_string_value(json_object_get(c, "site")),
                (long long)json_integer_value(json_object_get(c, "dead_letters")));
    {
        /* 0 until store.retention first deletes something. */
        int64_t horizon = 0;
        json_t *h = json_object_get(json_object_get(doc, "retention"), "pruned_before");
        if (json_is_string(h) && is_parse_rfc3339(json_string_value(h), &horizon) != IS_OK)
            horizon = 0;
        metric_head(&b, "invsync_store_pruned_before_timestamp_seconds", "gauge",
                    "The store's pruned horizon: finished movements accepted before it may have "
                    "been deleted (store.retention); 0 when none was");
        bprintf(&b, "invsync_store_pruned_before_timestamp_seconds %.3f\n",
                (double)horizon / 1000.0);
    }
    json_decref(doc);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
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
        is_http_respond_error(resp, 403,
                              "admin API disabled: set admin.token in the configuration");
        return 1;
    }
    if (!token && is_http_header(req, "Authorization")) {
        is_http_respond_error(resp, 401, IS_HTTP_BEARER_MALFORMED);
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

/*
 * The request body as a JSON object whose keys are all in fields (NULL-ended)
 * and whose values are strings; otherwise NULL with a 400 response naming the
 * field, as the producer does for movements.
 */
static json_t *body_json(const is_http_request_t *req, is_http_response_t *resp,
                         const char *const *fields) {
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    const char *key;
    json_t *v;
    char names[128] = "";
    if (!body || !json_is_object(body)) {
        is_http_respond_error(resp, 400, "body must be a JSON object: %s",
                              body ? "got another JSON value" : jerr.text);
        json_decref(body);
        return NULL;
    }
    for (size_t i = 0; fields[i]; i++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "", fields[i]);
    }
    json_object_foreach(body, key, v) {
        size_t i = 0;
        while (fields[i] && strcmp(fields[i], key) != 0)
            i++;
        if (!fields[i]) {
            is_http_respond_error(resp, 400, "unknown field '%s' (fields: %s)", key, names);
            json_decref(body);
            return NULL;
        }
        if (!json_is_string(v)) {
            is_http_respond_error(resp, 400, "'%s' must be a string", key);
            json_decref(body);
            return NULL;
        }
    }
    return body;
}

static void respond_admin(api_t *a, admin_request_t *ar, is_http_response_t *resp) {
    char errstr[512];
    int status = 500;
    pthread_mutex_lock(&a->mu);
    json_t *res =
        admin_perform(a->store, ar, is_clock_now_ms(NULL), &status, errstr, sizeof(errstr));
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
    static const char *const fields[] = {"site", "tier", "by", "reason", NULL};
    json_t *body = body_json(req, resp, fields);
    if (!body)
        return;
    admin_request_t ar = {
        .action = (admin_action_t)admin_action_parse(strrchr(req->path, '/') + 1),
        .site = json_string_value(json_object_get(body, "site")),
        .tier = json_string_value(json_object_get(body, "tier")),
        .by = json_string_value(json_object_get(body, "by")),
        .reason = json_string_value(json_object_get(body, "reason")),
        .policy = a->policy,
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
    if (!slash || (action != ADMIN_RETRY && action != ADMIN_SKIP)) {
        is_http_respond_error(resp, 404, "use /admin/failed/<posting_id>/retry or .../skip");
        return;
    }
    /* The path is right; the id cannot be one (a posting id is a few dozen
     * characters): not found, as an unknown id, saying why. */
    if ((size_t)(slash - rest) >= sizeof(id)) {
        is_http_respond_error(resp, 404,
                              "'%.32s...' (%zu characters) is not a posting id: too long; "
                              "`erp-consumer failed list` (GET /admin/failed) lists the failed "
                              "postings",
                              rest, (size_t)(slash - rest));
        return;
    }
    snprintf(id, sizeof(id), "%.*s", (int)(slash - rest), rest);
    static const char *const fields[] = {"by", "reason", NULL};
    json_t *body = body_json(req, resp, fields);
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
    static const char *const params[] = {"movement_id", "document", NULL};
    const char *mv = is_http_query(req, "movement_id");
    const char *doc = is_http_query(req, "document");
    const char *unknown = is_http_query_unknown(req, params);
    json_t *res;
    /* One question, asked exactly: a misspelt or second parameter is not ignored. */
    if (unknown) {
        is_http_respond_error(resp, 400,
                              "unknown parameter '%s': give ?movement_id=<id> or "
                              "?document=<ERP document>",
                              unknown);
        return;
    }
    if ((!mv && !doc) || (mv && doc)) {
        is_http_respond_error(resp, 400,
                              "give either ?movement_id=<id> or ?document=<ERP document>%s",
                              mv ? ", not both" : "");
        return;
    }
    if (!*(mv ? mv : doc)) {
        is_http_respond_error(resp, 400, "'%s' is empty", mv ? "movement_id" : "document");
        return;
    }
    pthread_mutex_lock(&a->mu);
    res = mv ? admin_trace_movement(a->store, mv, errstr, sizeof(errstr))
             : admin_trace_document(a->store, doc, errstr, sizeof(errstr));
    pthread_mutex_unlock(&a->mu);
    if (!res && doc && strchr(doc, ' '))
        /* A chunked posting's "<first>+<n-1>": a URL's query reads '+' as a space. */
        is_http_respond_error(resp, 404, "%s (in a URL a '+' reads as a space: write it %%2B)",
                              errstr);
    else if (!res)
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

/* GET / — the status page (HTML + JS shipped in the binary; it polls the API). */
static void h_page(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    is_http_respond_text(resp, 200, "text/html; charset=utf-8", (const char *)status_page_html,
                         status_page_html_len);
    /* The page's own CSP (a meta tag) cannot forbid framing: refuse clickjacking here. */
    snprintf(resp->extra_header, sizeof(resp->extra_header), "%s",
             "Content-Security-Policy: frame-ancestors 'none'");
}

static const is_http_route_t api_routes[] = {
    {"GET", "/", h_page},
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

is_err_t api_start(const consumer_config_t *cfg, const is_policy_t *policy, consumer_stats_t *stats,
                   api_t **out, char *errstr, size_t errstr_size) {
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
    rc = is_httpd_start(cfg->http_listen, api_routes, sizeof(api_routes) / sizeof(api_routes[0]), a,
                        64 * 1024, (unsigned)cfg->http_threads, &a->httpd, errstr, errstr_size);
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
