/*
 * forwarder.c — the outbox → Kafka pump and the heartbeat publisher.
 *
 * State machine of one row: unsent in the outbox → handed to librdkafka (id
 * <= cursor, counted in in_flight) → delivery report: success → id in `done`,
 * marked sent after the poll; permanent failure → id in `retry`, produced
 * again after a backoff; purged or fatal → left unsent and re-fetched after
 * the cursor is rewound.
 *
 * The cursor (highest id handed to librdkafka) makes each row enqueued once
 * per producer instance; in_flight is capped so that an outage fills neither
 * librdkafka's queue nor memory: the rest waits in the outbox.
 *
 * Load: bounded by Kafka; each round fetches up to forwarder.batch rows with
 * one indexed query and marks a round's deliveries in one transaction.
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "forwarder.h"
#include "log.h"
#include "movement.h"
#include "topic.h"
#include "topic_watch.h"

#define POLL_IDLE_MS         50 /* latency of picking up new outbox rows */
#define QUEUE_FULL_POLL_MS   100
#define PROBE_EVERY_MS       5000 /* metadata probe while not connected */
#define PROBE_TIMEOUT_MS     1000
#define RETRY_MIN_MS         1000
#define RETRY_MAX_MS         60000
#define RECREATE_BACKOFF_MS  1000
#define IN_FLIGHT_PER_BATCH  10   /* cap = batch × this */
#define TOPIC_CHECK_EVERY_MS 5000 /* missing-topic check (topic_watch.h) */

typedef struct id_vec {
    int64_t *v;
    size_t n, cap;
} id_vec_t;

struct forwarder {
    /* configuration (immutable while the thread runs) */
    outbox_t *outbox;
    const is_policy_t *policy;
    is_strmap_t kafka;
    char *producer_id;
    int64_t hb_interval_ms;
    size_t batch;
    size_t max_in_flight;
    producer_metrics_t *metrics;
    const is_clock_t *clock;

    pthread_t thread;
    atomic_int stop;
    atomic_llong flush_timeout_ms;

    /* forwarder thread only */
    rd_kafka_t *rk;
    int64_t cursor;      /* highest outbox id handed to librdkafka */
    size_t in_flight;    /* movement messages without a delivery report */
    size_t hb_in_flight; /* heartbeat messages without a delivery report */
    id_vec_t done;       /* delivered, to be marked sent */
    id_vec_t retry;      /* failed permanently, to produce again at retry_at */
    int64_t retry_at;    /* monotonic ms */
    int64_t retry_backoff_ms;
    int fatal;               /* set by the error callback: recreate the producer */
    int64_t next_hb;         /* monotonic ms */
    int64_t next_probe;      /* monotonic ms */
    int64_t recreate_at;     /* monotonic ms; when rk is NULL */
    int64_t retention_ms;    /* 0 = no pruning */
    int64_t next_prune;      /* monotonic ms */
    int64_t prune_after;     /* outbox id: rows up to it were looked at */
    int64_t republish_gen;   /* outbox_republish_generation last seen */
    int rewind_pending;      /* a republish was seen: drain, then rewind */
    topic_watch_t *topics;   /* topics movements wait for that the broker lacks */
    is_log_limit_t fail_log; /* per-movement failure lines: one per FAIL_LOG_EVERY_MS */
    is_log_limit_t hb_log;   /* heartbeat failure lines: the same */
    int topic_asks;          /* check_topics round: per-topic requests made */
    const struct rd_kafka_metadata *all_topics; /* the round's one all-topics answer */
    int all_topics_failed;                      /* ... which did not come */
    int64_t next_topic_check;                   /* monotonic ms */
};

/* ---- small helpers ------------------------------------------------------ */

static int id_vec_push(id_vec_t *iv, int64_t id) {
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 256;
        int64_t *nv = realloc(iv->v, cap * sizeof(*nv));
        if (!nv)
            return -1;
        iv->v = nv;
        iv->cap = cap;
    }
    iv->v[iv->n++] = id;
    return 0;
}

static void set_kafka_state(forwarder_t *fw, producer_kafka_state_t st, const char *why) {
    producer_kafka_state_t old = producer_metrics_kafka(fw->metrics);
    if (old == st)
        return;
    producer_metrics_set_kafka(fw->metrics, st);
    is_log(st == PRODUCER_KAFKA_CONNECTED ? IS_LOG_INFO : IS_LOG_WARN,
           st == PRODUCER_KAFKA_CONNECTED ? "kafka connected" : "kafka unreachable", "reason", why,
           NULL);
}

/* The movement-id header of a delivered message, for logs. */
static const char *msg_movement_id(const rd_kafka_message_t *msg, char *buf, size_t size) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, "movement-id", &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        val)
        snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), (const char *)val);
    return buf;
}

/* Failures that hit every waiting movement (a topic the broker lacks, a
 * broker refusing writes) would log one line per movement (or heartbeat)
 * per retry: one line per FAIL_LOG_EVERY_MS per limiter, naming how many
 * were held back since the last (invsync_kafka_delivery_errors_total counts
 * each movement). movement_id NULL: a heartbeat. */
#define FAIL_LOG_EVERY_MS 10000
static void log_limited(is_log_limit_t *limit, is_log_level_t level, const char *what,
                        const char *movement_id, const char *topic, const char *error) {
    unsigned long long held = 0;
    char n[24];
    if (!is_log_limit_pass(limit, is_monotonic_ms(), FAIL_LOG_EVERY_MS, &held))
        return;
    snprintf(n, sizeof(n), "%llu", held);
    if (movement_id)
        is_log(level, what, "movement_id", movement_id, "topic", topic, "error", error,
               "similar_lines_held_back", n, NULL);
    else
        is_log(level, what, "topic", topic, "error", error, "similar_lines_held_back", n, NULL);
}

/* ---- librdkafka callbacks (served by rd_kafka_poll on our thread) ------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    forwarder_t *fw = opaque;
    int64_t id = (int64_t)(intptr_t)msg->_private;
    char mid[IS_MOVEMENT_MAX_STR + 1];

    (void)rk;
    if (id == 0) { /* heartbeat */
        if (fw->hb_in_flight > 0)
            fw->hb_in_flight--;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            set_kafka_state(fw, PRODUCER_KAFKA_CONNECTED, "heartbeat delivered");
            producer_metrics_heartbeat_sent(fw->metrics);
        } else if (msg->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
                   msg->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
            log_limited(&fw->hb_log, IS_LOG_WARN, "heartbeat not delivered", NULL,
                        rd_kafka_topic_name(msg->rkt), rd_kafka_err2str(msg->err));
        return;
    }
    if (fw->in_flight > 0)
        fw->in_flight--;
    switch (msg->err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        set_kafka_state(fw, PRODUCER_KAFKA_CONNECTED, "delivery succeeded");
        fw->retry_backoff_ms = RETRY_MIN_MS;
        if (id_vec_push(&fw->done, id) != 0)
            is_log(IS_LOG_ERROR, "out of memory recording a delivery; the row will be resent",
                   NULL);
        if (is_log_enabled(IS_LOG_DEBUG))
            is_log(IS_LOG_DEBUG, "movement delivered", "movement_id",
                   msg_movement_id(msg, mid, sizeof(mid)), "topic", rd_kafka_topic_name(msg->rkt),
                   NULL);
        break;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__FATAL:
        /* Left unsent: re-fetched after the cursor is rewound, or at next start. */
        break;
    default:
        producer_metrics_delivery_error(fw->metrics);
        log_limited(&fw->fail_log, IS_LOG_ERROR, "movement delivery failed; will retry",
                    msg_movement_id(msg, mid, sizeof(mid)), rd_kafka_topic_name(msg->rkt),
                    rd_kafka_err2str(msg->err));
        if (id_vec_push(&fw->retry, id) != 0)
            is_log(IS_LOG_ERROR, "out of memory recording a failed delivery", NULL);
        if (fw->retry_at == 0)
            fw->retry_at = is_monotonic_ms() + fw->retry_backoff_ms;
        break;
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    forwarder_t *fw = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        fw->fatal = 1; /* details are read with rd_kafka_fatal_error() outside the callback */
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        set_kafka_state(fw, PRODUCER_KAFKA_UNREACHABLE, reason);
        return;
    }
    /* Connection failures are already in librdkafka's own log lines. */
    is_log(err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE ? IS_LOG_DEBUG
                                                                                    : IS_LOG_WARN,
           "kafka error", "error", rd_kafka_err2name((rd_kafka_resp_err_t)err), "reason", reason,
           NULL);
}

/* ---- producer life cycle ------------------------------------------------ */

/* Our defaults, then the passthrough (so a deployment may override them). */
static is_err_t build_conf(const is_strmap_t *kafka, const char *client_id, rd_kafka_conf_t **out,
                           const char **bad_key, char *errstr, size_t errstr_size) {
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"message.timeout.ms", "0"},
        /* The outbox already hands rows over in batches (a fetch of up to
         * forwarder.batch rows at a time), so librdkafka's 5 ms linger mostly
         * adds latency: at 1,000 movements/s it was a fifth of the real-time
         * budget (docs/PERFORMANCE.md). */
        {"linger.ms", "1"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    size_t i;
    is_err_t rc = IS_OK;

    for (i = 0; rc == IS_OK && i < sizeof(defaults) / sizeof(defaults[0]); i++)
        rc = is_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, errstr_size);
    if (rc == IS_OK && client_id)
        rc = is_kafka_conf_set(conf, "client.id", client_id, errstr, errstr_size);
    for (i = 0; rc == IS_OK && kafka && i < kafka->n; i++) {
        rc = is_kafka_conf_set(conf, kafka->keys[i], kafka->vals[i], errstr, errstr_size);
        if (rc != IS_OK && bad_key)
            *bad_key = kafka->keys[i];
    }
    if (rc != IS_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    *out = conf;
    return IS_OK;
}

is_err_t forwarder_check_config(const is_strmap_t *kafka, const char **bad_key, char *errstr,
                                size_t errstr_size) {
    rd_kafka_conf_t *conf = NULL;
    if (bad_key)
        *bad_key = NULL;
    is_err_t rc = build_conf(kafka, NULL, &conf, bad_key, errstr, errstr_size);
    if (rc == IS_OK)
        rd_kafka_conf_destroy(conf);
    return rc;
}

static is_err_t producer_create(forwarder_t *fw, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *conf = NULL;
    char err[512];
    is_err_t rc = build_conf(&fw->kafka, fw->producer_id, &conf, NULL, errstr, errstr_size);

    if (rc != IS_OK)
        return rc;
    rd_kafka_conf_set_opaque(conf, fw);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, is_log_rdkafka_cb);
    fw->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!fw->rk) {
        rd_kafka_conf_destroy(conf); /* only freed by rd_kafka_new on success */
        is_errf(errstr, errstr_size, "cannot create kafka producer: %s", err);
        return IS_ERR_KAFKA;
    }
    fw->fatal = 0;
    fw->in_flight = 0;
    fw->hb_in_flight = 0;
    return IS_OK;
}

/* ---- marking ------------------------------------------------------------ */

/*
 * Mark the delivered rows sent. Not after a republish: a row delivered after
 * `mes-producer republish` marked it unsent (it was in flight, or delivered
 * and not yet marked) must be published again as the command said. While a
 * rewind is pending, and when the generation changed under the mark, the
 * rows stay unsent and go out again after the rewind; rows outside the
 * republished range among them reach Kafka twice, which consumers absorb by
 * movement id.
 */
static void mark_done(forwarder_t *fw) {
    char errstr[256];
    int64_t gen = fw->republish_gen;
    if (fw->done.n == 0)
        return;
    if (!fw->rewind_pending && outbox_mark_sent_in_generation(fw->outbox, fw->done.v, fw->done.n,
                                                              is_clock_now_ms(fw->clock), &gen,
                                                              errstr, sizeof(errstr)) != IS_OK) {
        /* Kept for the next round; at worst the rows are resent after a restart. */
        is_log(IS_LOG_ERROR, "cannot mark rows sent", "error", errstr, NULL);
        return;
    }
    if (gen != fw->republish_gen) {
        fw->republish_gen = gen;
        fw->rewind_pending = 1;
    }
    fw->done.n = 0;
}

/* Destroy the producer without waiting: undelivered rows stay unsent. */
static void producer_drop(forwarder_t *fw) {
    if (!fw->rk)
        return;
    rd_kafka_purge(fw->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(fw->rk, 0); /* serve the reports of what was delivered before */
    mark_done(fw);
    rd_kafka_destroy(fw->rk);
    fw->rk = NULL;
    fw->in_flight = 0;
    fw->hb_in_flight = 0;
}

/* After a fatal (idempotence) error: new producer, resend from the lowest unsent id. */
static void recreate(forwarder_t *fw) {
    char reason[512] = "", errstr[512];
    int64_t first = 0;

    if (fw->rk) {
        rd_kafka_fatal_error(fw->rk, reason, sizeof(reason));
        is_log(IS_LOG_ERROR, "kafka fatal error; recreating the producer", "error", reason, NULL);
        producer_drop(fw);
    }
    fw->retry.n = 0;
    fw->retry_at = 0;
    if (outbox_first_unsent_id(fw->outbox, &first) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot read the outbox; retrying", NULL);
        fw->recreate_at = is_monotonic_ms() + RECREATE_BACKOFF_MS;
        return;
    }
    if (first > 0)
        fw->cursor = first - 1;
    if (producer_create(fw, errstr, sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot recreate the kafka producer; retrying", "error", errstr, NULL);
        fw->recreate_at = is_monotonic_ms() + RECREATE_BACKOFF_MS;
    }
}

/* ---- producing ---------------------------------------------------------- */

static rd_kafka_resp_err_t produce_row(forwarder_t *fw, const outbox_row_t *row) {
    return rd_kafka_producev(
        fw->rk, RD_KAFKA_V_TOPIC(row->topic), RD_KAFKA_V_KEY(row->msg_key, strlen(row->msg_key)),
        RD_KAFKA_V_VALUE((void *)row->payload, row->payload_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(row->accepted_at),
        RD_KAFKA_V_HEADER("invsync-schema", FORWARDER_SCHEMA_VERSION, -1),
        RD_KAFKA_V_HEADER("content-type", FORWARDER_CT_MOVEMENT, -1),
        RD_KAFKA_V_HEADER("movement-id", row->movement_id, -1),
        RD_KAFKA_V_HEADER("tier", row->tier, -1),
        RD_KAFKA_V_HEADER("policy-version", row->policy_version, -1),
        RD_KAFKA_V_OPAQUE((void *)(intptr_t)row->id), RD_KAFKA_V_END);
}

/*
 * Hand one row to librdkafka, waiting (polling) while its queue is full.
 * Returns 0 when handed over or given up on (retry list), 1 when stopping.
 */
static int hand_over(forwarder_t *fw, const outbox_row_t *row) {
    for (;;) {
        rd_kafka_resp_err_t err = produce_row(fw, row);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            fw->in_flight++;
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (atomic_load(&fw->stop) || fw->fatal)
                return 1;
            rd_kafka_poll(fw->rk, QUEUE_FULL_POLL_MS);
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            fw->fatal = 1;
            return 1;
        }
        producer_metrics_delivery_error(fw->metrics);
        log_limited(&fw->fail_log, IS_LOG_ERROR, "cannot produce movement; will retry",
                    row->movement_id, row->topic, rd_kafka_err2str(err));
        if (id_vec_push(&fw->retry, row->id) == 0 && fw->retry_at == 0)
            fw->retry_at = is_monotonic_ms() + fw->retry_backoff_ms;
        return 0;
    }
}

static int on_row(void *opaque, const outbox_row_t *row) {
    forwarder_t *fw = opaque;
    if (hand_over(fw, row) != 0)
        return 1; /* cursor not advanced: the row is fetched again */
    fw->cursor = row->id;
    return 0;
}

/* Fetch and produce the next rows after the cursor; returns how many. */
static size_t pump(forwarder_t *fw) {
    char errstr[256];
    size_t n = 0, room;

    if (fw->in_flight >= fw->max_in_flight)
        return 0;
    room = fw->max_in_flight - fw->in_flight;
    if (outbox_fetch_unsent(fw->outbox, fw->cursor, room < fw->batch ? room : fw->batch, on_row, fw,
                            &n, errstr, sizeof(errstr)) != IS_OK)
        is_log(IS_LOG_ERROR, "cannot read the outbox", "error", errstr, NULL);
    return n;
}

typedef struct retry_want {
    forwarder_t *fw;
    int64_t id;
} retry_want_t;

static int on_retry_row(void *opaque, const outbox_row_t *row) {
    const retry_want_t *want = opaque;
    if (row->id == want->id)
        (void)hand_over(want->fw, row);
    return 1; /* one row only */
}

/* Produce the failed rows again once their backoff has passed. */
static void retry_failed(forwarder_t *fw, int64_t now) {
    id_vec_t todo = fw->retry;
    size_t i;

    if (todo.n == 0 || now < fw->retry_at)
        return;
    memset(&fw->retry, 0, sizeof(fw->retry));
    fw->retry_at = 0;
    fw->retry_backoff_ms *= 2;
    if (fw->retry_backoff_ms > RETRY_MAX_MS)
        fw->retry_backoff_ms = RETRY_MAX_MS;
    for (i = 0; i < todo.n; i++) {
        retry_want_t want;
        char errstr[256];
        want.fw = fw;
        want.id = todo.v[i];
        /* Rows that are no longer unsent are simply not found. */
        if (outbox_fetch_unsent(fw->outbox, todo.v[i] - 1, 1, on_retry_row, &want, NULL, errstr,
                                sizeof(errstr)) != IS_OK) {
            is_log(IS_LOG_ERROR, "cannot read the outbox", "error", errstr, NULL);
            (void)id_vec_push(&fw->retry, todo.v[i]);
        }
    }
    if (fw->retry.n && fw->retry_at == 0)
        fw->retry_at = now + fw->retry_backoff_ms;
    free(todo.v);
}

/* ---- heartbeats --------------------------------------------------------- */

typedef struct site_list {
    struct {
        char name[72];
        uint64_t last_seq;
    } * v;
    size_t n, cap;
} site_list_t;

static void collect_site(void *opaque, const char *site, uint64_t last_seq) {
    site_list_t *l = opaque;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *nv = realloc(l->v, cap * sizeof(*l->v));
        if (!nv)
            return;
        l->v = nv;
        l->cap = cap;
    }
    snprintf(l->v[l->n].name, sizeof(l->v[l->n].name), "%s", site);
    l->v[l->n].last_seq = last_seq;
    l->n++;
}

static void produce_heartbeat(forwarder_t *fw, const char *site, const char *tier,
                              const uint8_t *buf, size_t len) {
    const char *prefix = is_policy_topic_prefix(fw->policy);
    char topic[IS_TOPIC_MAX + 1], key[96];
    rd_kafka_resp_err_t err;

    if (is_topic_name(topic, sizeof(topic), prefix, site, tier) < 0)
        return;
    snprintf(key, sizeof(key), "%s/heartbeat", site);
    err = rd_kafka_producev(fw->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE((void *)buf, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADER("invsync-schema", FORWARDER_SCHEMA_VERSION, -1),
                            RD_KAFKA_V_HEADER("content-type", FORWARDER_CT_HEARTBEAT, -1),
                            RD_KAFKA_V_HEADER("tier", tier, -1),
                            RD_KAFKA_V_HEADER("policy-version", is_policy_version(fw->policy), -1),
                            RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        fw->hb_in_flight++;
    else
        log_limited(&fw->hb_log, IS_LOG_WARN, "cannot produce heartbeat", NULL, topic,
                    rd_kafka_err2str(err));
}

static void heartbeats(forwarder_t *fw) {
    site_list_t sites;
    uint64_t backlog = 0;
    int64_t oldest = 0;
    size_t i, t;

    if (fw->hb_in_flight > 0 || producer_metrics_kafka(fw->metrics) == PRODUCER_KAFKA_UNREACHABLE)
        return; /* never let heartbeats queue up behind an outage */
    memset(&sites, 0, sizeof(sites));
    if (outbox_backlog(fw->outbox, &backlog, &oldest) != IS_OK ||
        outbox_sites(fw->outbox, collect_site, &sites) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot read the outbox for heartbeats", NULL);
        free(sites.v);
        return;
    }
    for (i = 0; i < sites.n; i++) {
        is_heartbeat_t hb = INVSYNC__V1__HEARTBEAT__INIT;
        uint8_t buf[512];
        size_t len;

        hb.site = sites.v[i].name;
        hb.producer_id = fw->producer_id;
        hb.last_sequence = sites.v[i].last_seq;
        hb.time = is_clock_now_ms(fw->clock);
        hb.outbox_backlog = backlog;
        hb.policy_version = (char *)is_policy_version(fw->policy);
        if (invsync__v1__heartbeat__get_packed_size(&hb) > sizeof(buf))
            continue; /* cannot happen: every field is bounded */
        len = invsync__v1__heartbeat__pack(&hb, buf);
        for (t = 0; t < is_policy_tier_count(fw->policy); t++)
            produce_heartbeat(fw, hb.site, is_policy_tier(fw->policy, t)->name, buf, len);
    }
    free(sites.v);
}

/* Ask a broker for metadata to learn whether Kafka is reachable. */
static void probe(forwarder_t *fw) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(fw->rk, 0, NULL, &md, PROBE_TIMEOUT_MS);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        set_kafka_state(fw, PRODUCER_KAFKA_CONNECTED, "metadata probe answered");
    } else {
        set_kafka_state(fw, PRODUCER_KAFKA_UNREACHABLE, rd_kafka_err2str(err));
    }
}

/* ---- missing topics ----------------------------------------------------- */

static int unknown_topic(rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

/* Per-topic metadata requests in one check_topics round; past them, one
 * request for all topics answers the rest. Each request blocks the
 * forwarder (a round trip), and after an outage every site's topics have
 * movements waiting longer than TOPIC_WATCH_STUCK_MS while they drain. */
#define TOPIC_ASKS_PER_ROUND 4

/* The rest of a round: from the cluster's whole topic list, fetched once. */
static topic_watch_answer_t ask_all_topics(forwarder_t *fw, const char *topic) {
    if (!fw->all_topics && !fw->all_topics_failed &&
        rd_kafka_metadata(fw->rk, 1, NULL, &fw->all_topics, PROBE_TIMEOUT_MS) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
        fw->all_topics = NULL;
        fw->all_topics_failed = 1;
    }
    if (!fw->all_topics)
        return TOPIC_WATCH_UNCLEAR;
    for (int i = 0; i < fw->all_topics->topic_cnt; i++)
        if (strcmp(fw->all_topics->topics[i].topic, topic) == 0)
            return fw->all_topics->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR ? TOPIC_WATCH_EXISTS
                   : unknown_topic(fw->all_topics->topics[i].err)              ? TOPIC_WATCH_MISSING
                                                                  : TOPIC_WATCH_UNCLEAR;
    return TOPIC_WATCH_MISSING;
}

/* topic_watch_ask_fn: a metadata request for this one topic. Its answer also
 * refreshes librdkafka's own view of the topic, so a topic created since is
 * produced to at once rather than after topic.metadata.refresh.interval.ms. */
static topic_watch_answer_t ask_topic(void *opaque, const char *topic) {
    forwarder_t *fw = opaque;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;
    topic_watch_answer_t ans = TOPIC_WATCH_UNCLEAR;

    if (fw->topic_asks++ >= TOPIC_ASKS_PER_ROUND)
        return ask_all_topics(fw, topic);
    rkt = rd_kafka_topic_new(fw->rk, topic, NULL);
    if (!rkt)
        return TOPIC_WATCH_UNCLEAR;
    err = rd_kafka_metadata(fw->rk, 0, rkt, &md, PROBE_TIMEOUT_MS);
    if (unknown_topic(err)) {
        ans = TOPIC_WATCH_MISSING;
    } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && unknown_topic(md->topics[0].err))
            ans = TOPIC_WATCH_MISSING;
        else if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            ans = TOPIC_WATCH_EXISTS;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return ans;
}

/*
 * Every TOPIC_CHECK_EVERY_MS while Kafka answers: when a movement has waited
 * TOPIC_WATCH_STUCK_MS, ask the broker about the topics movements wait for
 * (one indexed row otherwise). While Kafka is unreachable nothing is asked
 * and the known state is kept: that outage is reported on its own.
 */
static void check_topics(forwarder_t *fw) {
    int64_t now = is_clock_now_ms(fw->clock);
    char errstr[256];

    if (producer_metrics_kafka(fw->metrics) != PRODUCER_KAFKA_CONNECTED)
        return;
    topic_watch_begin(fw->topics);
    if (outbox_unsent_topics(fw->outbox, now - TOPIC_WATCH_STUCK_MS, topic_watch_waiting,
                             fw->topics, errstr, sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot read the outbox to check topics", "error", errstr, NULL);
        return;
    }
    fw->topic_asks = 0;
    fw->all_topics = NULL;
    fw->all_topics_failed = 0;
    size_t found = topic_watch_end(fw->topics, now, ask_topic, fw);
    if (fw->all_topics)
        rd_kafka_metadata_destroy(fw->all_topics);
    fw->all_topics = NULL;
    if (found > 0 && fw->retry.n > 0) {
        fw->retry_at = is_monotonic_ms(); /* a topic is back: retry its movements now */
        fw->retry_backoff_ms = RETRY_MIN_MS;
    }
}

/* ---- the thread --------------------------------------------------------- */

static void shutdown_producer(forwarder_t *fw) {
    int64_t timeout = atomic_load(&fw->flush_timeout_ms);
    rd_kafka_resp_err_t err;
    int left;
    char n[24];

    if (!fw->rk)
        return;
    if (timeout > INT32_MAX)
        timeout = INT32_MAX;
    err = rd_kafka_flush(fw->rk, (int)timeout); /* serves the delivery reports */
    mark_done(fw);
    left = rd_kafka_outq_len(fw->rk);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || left > 0) {
        snprintf(n, sizeof(n), "%d", left);
        is_log(IS_LOG_WARN, "kafka flush incomplete at stop; undelivered rows stay in the outbox",
               "undelivered", n, NULL);
    }
    producer_drop(fw);
}

/*
 * mes-producer republish marks rows below the cursor unsent and bumps the
 * outbox's republish generation. Seen at a heartbeat tick, a new generation
 * makes the forwarder stop taking new rows until nothing is in flight or
 * delivered-but-unmarked, then rewind the cursor to the first unsent row
 * (retries are dropped: they are unsent and fetched again). Under any load
 * this takes one drain of the in-flight window, not an idle moment.
 */
static void check_republish(forwarder_t *fw) {
    int64_t gen = 0;
    if (outbox_republish_generation(fw->outbox, &gen) == IS_OK && gen != fw->republish_gen) {
        fw->republish_gen = gen;
        fw->rewind_pending = 1;
    }
}

static void rewind_if_drained(forwarder_t *fw) {
    int64_t first = 0;
    char id[24];

    if (!fw->rewind_pending || fw->in_flight > 0 || fw->done.n > 0)
        return;
    if (outbox_first_unsent_id(fw->outbox, &first) != IS_OK)
        return; /* tried again next round, retry list kept */
    fw->rewind_pending = 0;
    if (first <= 0 || first > fw->cursor)
        return;
    fw->retry.n = 0; /* unsent: fetched again from first */
    fw->retry_at = 0;
    snprintf(id, sizeof(id), "%lld", (long long)first);
    is_log(IS_LOG_INFO, "publishing again movements marked unsent (mes-producer republish)",
           "from_outbox_id", id, NULL);
    fw->cursor = first - 1;
}

#define PRUNE_EVERY_MS 60000
#define PRUNE_BATCH    5000
#define PRUNE_BATCHES  20 /* per tick: a backlog of old rows goes over several minutes */

/* outbox.retention: delete delivered rows older than the retention, a few
 * batches per tick so that appends never wait long behind the deletes. */
static void prune(forwarder_t *fw) {
    int64_t cutoff = is_clock_now_ms(fw->clock) - fw->retention_ms, total = 0, n = 0;
    char errstr[256], buf[24];
    int done = 0;

    for (int b = 0; b < PRUNE_BATCHES && !done; b++) {
        if (outbox_prune(fw->outbox, cutoff, PRUNE_BATCH, &fw->prune_after, &n, &done, errstr,
                         sizeof(errstr)) != IS_OK) {
            is_log(IS_LOG_ERROR, "cannot apply outbox.retention", "error", errstr, NULL);
            break;
        }
        total += n;
    }
    if (total > 0) {
        producer_metrics_pruned(fw->metrics, total);
        snprintf(buf, sizeof(buf), "%lld", (long long)total);
        is_log(IS_LOG_INFO, "deleted delivered movements past outbox.retention", "rows", buf, NULL);
    }
}

static void *forwarder_main(void *arg) {
    forwarder_t *fw = arg;
    int64_t first = 0;

    /* The generation first: a republish committed after it is seen as new
     * (and rewinds); one before it is below the first unsent row anyway. */
    if (outbox_republish_generation(fw->outbox, &fw->republish_gen) != IS_OK)
        fw->republish_gen = 0;
    if (outbox_first_unsent_id(fw->outbox, &first) == IS_OK && first > 0)
        fw->cursor = first - 1;
    else
        fw->cursor = 0; /* nothing unsent (or unreadable): fetch from the start, cheaply */
    fw->next_hb = is_monotonic_ms() + fw->hb_interval_ms;
    fw->next_probe = 0;
    while (!atomic_load(&fw->stop)) {
        int64_t now = is_monotonic_ms();
        size_t n;

        if (!fw->rk || fw->fatal) {
            if (now < fw->recreate_at) {
                struct timespec ts = {0, POLL_IDLE_MS * 1000000L};
                nanosleep(&ts, NULL);
                continue;
            }
            recreate(fw);
            if (!fw->rk)
                continue;
        }
        rewind_if_drained(fw);
        n = fw->rewind_pending ? 0 : pump(fw); /* a rewind waits for the window to drain */
        rd_kafka_poll(fw->rk, 0);
        if (n == 0 && fw->in_flight == 0)
            outbox_wait_append(fw->outbox, POLL_IDLE_MS); /* woken by the next append */
        else if (n == 0)
            rd_kafka_poll(fw->rk,
                          1); /* deliveries pending: serve reports, come back for new rows */
        mark_done(fw);
        now = is_monotonic_ms();
        retry_failed(fw, now);
        if (now >= fw->next_hb) {
            fw->next_hb = now + fw->hb_interval_ms;
            check_republish(fw);
            heartbeats(fw);
        }
        if (fw->retention_ms > 0 && now >= fw->next_prune) {
            fw->next_prune = now + PRUNE_EVERY_MS;
            prune(fw);
        }
        if (producer_metrics_kafka(fw->metrics) != PRODUCER_KAFKA_CONNECTED &&
            now >= fw->next_probe) {
            fw->next_probe = now + PROBE_EVERY_MS;
            probe(fw);
        }
        if (now >= fw->next_topic_check) {
            fw->next_topic_check = now + TOPIC_CHECK_EVERY_MS;
            check_topics(fw);
        }
    }
    shutdown_producer(fw);
    return NULL;
}

static void forwarder_free(forwarder_t *fw) {
    if (!fw)
        return;
    if (fw->rk)
        rd_kafka_destroy(fw->rk);
    is_strmap_release(&fw->kafka);
    topic_watch_destroy(fw->topics);
    free(fw->producer_id);
    free(fw->done.v);
    free(fw->retry.v);
    free(fw);
}

is_err_t forwarder_start(const forwarder_opts_t *opts, forwarder_t **out, char *errstr,
                         size_t errstr_size) {
    forwarder_t *fw;
    size_t i;
    is_err_t rc;

    *out = NULL;
    if (!opts->outbox || !opts->policy || !opts->producer_id || opts->heartbeat_interval_ms <= 0 ||
        opts->batch == 0) {
        is_errf(errstr, errstr_size,
                "forwarder: outbox, policy, producer_id, heartbeat "
                "interval and batch are required");
        return IS_ERR_INVALID;
    }
    fw = calloc(1, sizeof(*fw));
    if (!fw)
        return IS_ERR_NOMEM;
    fw->outbox = opts->outbox;
    fw->policy = opts->policy;
    fw->hb_interval_ms = opts->heartbeat_interval_ms;
    producer_metrics_set_heartbeat_interval(opts->metrics, opts->heartbeat_interval_ms);
    fw->batch = opts->batch;
    fw->max_in_flight = opts->batch * IN_FLIGHT_PER_BATCH;
    fw->metrics = opts->metrics;
    fw->clock = opts->clock;
    fw->retention_ms = opts->retention_ms;
    fw->retry_backoff_ms = RETRY_MIN_MS;
    atomic_init(&fw->stop, 0);
    atomic_init(&fw->flush_timeout_ms, 10000);
    fw->producer_id = strdup(opts->producer_id);
    fw->topics = topic_watch_new(opts->metrics);
    if (!fw->producer_id || !fw->topics) {
        rc = IS_ERR_NOMEM;
        goto err;
    }
    for (i = 0; opts->kafka && i < opts->kafka->n; i++) {
        rc = is_strmap_set(&fw->kafka, opts->kafka->keys[i], opts->kafka->vals[i]);
        if (rc != IS_OK)
            goto err;
    }
    for (i = 0; i < fw->kafka.n; i++) {
        if ((strcmp(fw->kafka.keys[i], "enable.idempotence") == 0 &&
             strcmp(fw->kafka.vals[i], "true") != 0) ||
            (strcmp(fw->kafka.keys[i], "acks") == 0 && strcmp(fw->kafka.vals[i], "all") != 0 &&
             strcmp(fw->kafka.vals[i], "-1") != 0))
            is_log(IS_LOG_WARN, "kafka override weakens delivery guarantees", "key",
                   fw->kafka.keys[i], "value", fw->kafka.vals[i], NULL);
    }
    rc = producer_create(fw, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    if (pthread_create(&fw->thread, NULL, forwarder_main, fw) != 0) {
        is_errf(errstr, errstr_size, "cannot start the forwarder thread");
        rc = IS_ERR_NOMEM;
        goto err;
    }
    *out = fw;
    return IS_OK;
err:
    forwarder_free(fw);
    return rc;
}

void forwarder_stop(forwarder_t *fw, int64_t flush_timeout_ms) {
    if (!fw)
        return;
    atomic_store(&fw->flush_timeout_ms, flush_timeout_ms);
    atomic_store(&fw->stop, 1);
    pthread_join(fw->thread, NULL);
    forwarder_free(fw);
}
