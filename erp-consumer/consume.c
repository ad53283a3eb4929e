/*
 * consume.c — poll batches from Kafka, decode, guard, apply to the store
 * (see consume.h). Load: thousands of messages per second per instance;
 * one store transaction per batch of up to consume.batch messages.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kafka.h"
#include "consume.h"
#include "hash.h"
#include "duration.h"
#include "log.h"
#include "schedule.h"
#include "topic.h"

#define CLOSE_TIMEOUT_MS 5000 /* leaving the group at shutdown (close_group) */

/* The ownership period of an assigned partition (group mode; store_begin_period). */
typedef struct owned {
    char topic[250];
    int32_t partition;
    int64_t period;
} owned_t;

typedef struct snap {
    char topic[250];
    int32_t partition;
    int64_t hi;
} snap_t;

struct consume {
    const consumer_config_t *cfg;
    const is_policy_t *policy;
    store_t *store;
    dlq_t *dlq;
    consumer_stats_t *stats;
    consume_notify_fn notify;
    void *notify_opaque;
    rd_kafka_t *rk;
    char prefix[128];
    const char **refused;                    /* loop guard, NULL-terminated */
    char last_policy[IS_SHA256_HEX_LEN + 1]; /* last policy version recorded */
    int assign_mode;                         /* consume.mode assign */
    regex_t topic_re;                        /* assign mode: the subscription regex */
    int have_re;
    int64_t next_discovery;       /* monotonic ms */
    int assigned_parts;           /* partitions assigned so far (assign mode) */
    int64_t next_caught_up_check; /* monotonic ms */
    owned_t *owned;               /* group mode: assigned partitions and their periods */
    int n_owned, cap_owned, last_owned;
    snap_t *snap; /* high watermarks at snap_at (gap handling) */
    int n_snap;
    int64_t snap_at;
};

/* What one polled message became; owns its decoded protobuf. */
typedef struct slot {
    rd_kafka_message_t *msg;
    is_movement_t *m;
    is_heartbeat_t *hb;
    char reason[256];
} slot_t;

static int owned_find(consume_t *c, const char *topic, int32_t partition) {
    if (c->last_owned < c->n_owned && c->owned[c->last_owned].partition == partition &&
        strcmp(c->owned[c->last_owned].topic, topic) == 0)
        return c->last_owned;
    for (int i = 0; i < c->n_owned; i++)
        if (c->owned[i].partition == partition && strcmp(c->owned[i].topic, topic) == 0)
            return c->last_owned = i;
    return -1;
}

/* The period messages of (topic, partition) are read in now; 0 = none. */
static int64_t owned_period(consume_t *c, const char *topic, int32_t partition) {
    int i = owned_find(c, topic, partition);
    return i < 0 ? 0 : c->owned[i].period;
}

/*
 * A new ownership period for an assigned partition: its high watermark now
 * (fresh from the broker) bounds what an earlier owner can have read.
 */
static void owned_begin(consume_t *c, rd_kafka_t *rk, const char *topic, int32_t partition,
                        int *unreachable) {
    int64_t lo = -1, hi = -1, period = 0;
    char errstr[256];
    /* One broker round trip per partition; after a failure the rest of this
     * assignment skips it (a rebalance callback must not stall for minutes). */
    if (*unreachable || rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi, 2000) !=
                            RD_KAFKA_RESP_ERR_NO_ERROR) {
        *unreachable = 1;
        hi = -1;
    }
    if (hi < 0)
        hi = INT64_MAX; /* unknown: nothing counts as read by this instance alone */
    if (store_begin_period(c->store, topic, partition, hi, is_clock_now_ms(NULL), &period, errstr,
                           sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_WARN, "cannot record an ownership period", "error", errstr, NULL);
        period = 0;
    }
    int i = owned_find(c, topic, partition);
    if (i < 0) {
        if (c->n_owned == c->cap_owned) {
            int cap = c->cap_owned ? c->cap_owned * 2 : 64;
            owned_t *grown = realloc(c->owned, (size_t)cap * sizeof(*grown));
            if (!grown)
                return;
            c->owned = grown;
            c->cap_owned = cap;
        }
        i = c->n_owned++;
        snprintf(c->owned[i].topic, sizeof(c->owned[i].topic), "%s", topic);
        c->owned[i].partition = partition;
    }
    c->owned[i].period = period;
}

static void owned_end(consume_t *c, const char *topic, int32_t partition) {
    int i = owned_find(c, topic, partition);
    if (i >= 0)
        c->owned[i] = c->owned[--c->n_owned];
    c->last_owned = 0;
}

/*
 * Messages served by callback rather than returned: only close_group's
 * queue does that. rd_kafka_consumer_close_queue() forwards the consumer
 * queue to it, and a message fetched before the revoke is then served
 * there; without a consume_cb librdkafka 2.0.2 aborts the process
 * (rdkafka_queue.c:516 "assert: res != RD_KAFKA_OP_RES_PASS", seen once in
 * the reliability suite's ten-kill test). Dropping it is safe: it was never
 * stored, so no offset past it is committed, and the next owner reads it.
 * rd_kafka_consumer_poll() returns messages as before (consume_cb is not
 * used for a returning poll); librdkafka frees the message after this.
 */
static void drop_at_close(rd_kafka_message_t *msg, void *opaque) {
    (void)msg;
    (void)opaque;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    consume_t *c = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;

    atomic_store(&c->stats->assigned_since_ms, (long long)is_clock_now_ms(NULL));
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        int unreachable = 0;
        /* The group's committed offsets: another instance may have consumed past
         * this store's offset since this instance last owned a partition. */
        rd_kafka_topic_partition_list_t *kc = rd_kafka_topic_partition_list_copy(parts);
        if (rd_kafka_committed(rk, kc, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            is_log(IS_LOG_WARN,
                   "cannot read the group's committed offsets; starting from the store's", NULL);
            rd_kafka_topic_partition_list_destroy(kc);
            kc = NULL;
        }
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *p = &parts->elems[i];
            int64_t next;
            char off[24] = "committed";
            if (store_get_offset(c->store, p->topic, p->partition, &next) == IS_OK) {
                /* Past the store's offset means another instance of the group read
                 * (and its store holds) those messages: do not read them twice. */
                rd_kafka_topic_partition_t *k =
                    kc ? rd_kafka_topic_partition_list_find(kc, p->topic, p->partition) : NULL;
                if (k && !k->err && k->offset > next) {
                    is_logf(IS_LOG_INFO,
                            "%s [%d]: the group committed offset %lld, past this store's %lld: "
                            "another instance consumed the messages in between",
                            p->topic, (int)p->partition, (long long)k->offset, (long long)next);
                    next = k->offset;
                }
                p->offset = next;
                snprintf(off, sizeof(off), "%lld", (long long)next);
            } else {
                p->offset = RD_KAFKA_OFFSET_INVALID; /* Kafka's committed, else auto.offset.reset */
            }
            owned_begin(c, rk, p->topic, p->partition, &unreachable);
            char part[16];
            snprintf(part, sizeof(part), "%d", (int)p->partition);
            is_log(IS_LOG_INFO, "partition assigned", "topic", p->topic, "partition", part,
                   "start_offset", off, NULL);
        }
        if (kc)
            rd_kafka_topic_partition_list_destroy(kc);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        /* The group coordinator answered: Kafka is up, even if no message
         * flows yet (an idle plant; /readyz). */
        if (!error)
            atomic_store(&c->stats->kafka_up, 1);
    } else {
        is_logf(IS_LOG_INFO, "%d partition(s) revoked", parts->cnt);
        for (int i = 0; i < parts->cnt; i++)
            owned_end(c, parts->elems[i].topic, parts->elems[i].partition);
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
    }
    if (error) {
        is_log(IS_LOG_ERROR, "rebalance failed", "error", rd_kafka_error_string(error), NULL);
        rd_kafka_error_destroy(error);
    }
}

/*
 * Kafka accepted (auto-)committed offsets: note them in the partitions'
 * current ownership periods (store_begin_period), where the poster finds what
 * this instance read alone. Runs on the consume thread inside a poll.
 */
static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque) {
    consume_t *c = opaque;
    char errstr[256];
    (void)rk;
    if (err || !offsets || offsets->cnt == 0)
        return; /* _NO_OFFSET (nothing new) or a failed commit: nothing confirmed */
    int64_t *period = calloc((size_t)offsets->cnt, sizeof(*period));
    int64_t *next = calloc((size_t)offsets->cnt, sizeof(*next));
    size_t n = 0;
    for (int i = 0; period && next && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        int64_t per = owned_period(c, p->topic, p->partition);
        if (!p->err && p->offset >= 0 && per > 0) {
            period[n] = per;
            next[n++] = p->offset;
        }
    }
    if (store_note_committed(c->store, period, next, n, errstr, sizeof(errstr)) != IS_OK)
        is_log(IS_LOG_WARN, "cannot note committed offsets", "error", errstr, NULL);
    free(period);
    free(next);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    consume_t *c = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&c->stats->kafka_up, 0);
    is_log(IS_LOG_WARN, "kafka error", "error", rd_kafka_err2name(err), "reason", reason, NULL);
}

/*
 * librdkafka statistics (every statistics.interval.ms, on the consume thread
 * inside a poll): sum consumer_lag per (site, tier) for /metrics.
 */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    consume_t *c = opaque;
    json_error_t jerr;
    json_t *doc = json_loadb(json, json_len, 0, &jerr), *topic, *parts, *part;
    const char *tname, *pname;
    stats_lag_t lag[STATS_MAX_LAG];
    int n = 0;
    (void)rk;
    if (!doc)
        return 0;
    json_object_foreach(json_object_get(doc, "topics"), tname, topic) {
        char site[65], tier[32];
        long long sum = 0;
        if (is_topic_parse(tname, c->prefix, site, sizeof(site), tier, sizeof(tier)) != IS_OK)
            continue;
        parts = json_object_get(topic, "partitions");
        json_object_foreach(parts, pname, part) {
            json_int_t l = json_integer_value(json_object_get(part, "consumer_lag"));
            if (strcmp(pname, "-1") != 0 && l > 0)
                sum += l;
        }
        int k;
        for (k = 0; k < n; k++)
            if (strcmp(lag[k].site, site) == 0 && strcmp(lag[k].tier, tier) == 0)
                break;
        if (k == n) {
            if (n == STATS_MAX_LAG)
                continue;
            snprintf(lag[n].site, sizeof(lag[n].site), "%s", site);
            snprintf(lag[n].tier, sizeof(lag[n].tier), "%s", tier);
            lag[n++].lag = 0;
        }
        lag[k].lag += sum;
    }
    json_decref(doc);
    pthread_mutex_lock(&c->stats->lag_mu);
    memcpy(c->stats->lag, lag, (size_t)n * sizeof(lag[0]));
    c->stats->n_lag = n;
    pthread_mutex_unlock(&c->stats->lag_mu);
    return 0; /* librdkafka frees json */
}

is_err_t consume_new(const consumer_config_t *cfg, const is_policy_t *policy, store_t *store,
                     dlq_t *dlq, consumer_stats_t *stats, consume_notify_fn notify,
                     void *notify_opaque, consume_t **out, char *errstr, size_t errstr_size) {
    /* Defaults a user may override with kafka.* (applied after these). */
    static const char *const defaults[][2] = {
        {"group.id", "invsync-erp-consumer"},
        {"auto.offset.reset", "earliest"},
        {"topic.metadata.refresh.interval.ms", "10000"},
        {"session.timeout.ms", "10000"},
        {"statistics.interval.ms", "15000"},
        /* A broker answers a fetch as soon as data arrives; the cap only bounds
         * an idle long poll (and the embedded cluster waits it out). */
        {"fetch.wait.max.ms", "50"},
        /* Commits confirmed sooner let a REVERSAL cancel its original in short
         * windows (store_begin_period); one small request a second. */
        {"auto.commit.interval.ms", "1000"},
        /* Memory: librdkafka prefetches up to 64 MiB (and 100,000 messages per
         * partition) by default; the store, not the prefetch, is the
         * bottleneck. These keep the consumer's peak RSS within budget with a
         * backlog of millions of messages (docs/PERFORMANCE.md, memory).
         * Both thresholds count the whole prefetch queue, and librdkafka
         * 2.0 stops fetching once either is reached and looks again only
         * when its broker thread next wakes (up to ~1 s; 2.2 added
         * fetch.queue.backoff.ms): at 20,000 messages / 4 MiB one 4 MiB
         * fetch filled the queue and the consumer idled between fetches
         * (netted apply 27k/s). Room for two fetches keeps it fed: 43k/s,
         * same peak RSS (docs/PERFORMANCE.md §5.12). */
        {"queued.max.messages.kbytes", "8192"},
        {"queued.min.messages", "40000"},
        {"fetch.max.bytes", "4194304"},
    };
    /* What the exactly-once design depends on: not overridable. */
    static const char *const fixed[][2] = {
        {"enable.auto.offset.store", "false"},
        {"enable.auto.commit", "true"},
        {"enable.partition.eof", "false"},
    };
    char kerr[512], regex[1024];
    const char *tiers[64];
    size_t n_tiers = is_policy_tier_count(policy);
    rd_kafka_topic_partition_list_t *subs = NULL;
    rd_kafka_conf_t *conf = NULL;
    is_err_t rc = IS_ERR_CONFIG;
    consume_t *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (!c)
        return IS_ERR_NOMEM;
    c->cfg = cfg;
    c->policy = policy;
    c->store = store;
    c->dlq = dlq;
    c->stats = stats;
    c->notify = notify;
    c->notify_opaque = notify_opaque;
    snprintf(c->prefix, sizeof(c->prefix), "%s", is_policy_topic_prefix(policy));
    c->refused = calloc(cfg->erp_sources.n + 1, sizeof(*c->refused));
    if (!c->refused) {
        rc = IS_ERR_NOMEM;
        goto err;
    }
    for (size_t i = 0; i < cfg->erp_sources.n; i++)
        c->refused[i] = cfg->erp_sources.items[i];

    conf = rd_kafka_conf_new();
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (is_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, errstr_size) != IS_OK)
            goto err;
    for (size_t i = 0; i < cfg->kafka.n; i++)
        if (is_kafka_conf_set(conf, cfg->kafka.keys[i], cfg->kafka.vals[i], errstr, errstr_size) !=
            IS_OK)
            goto err;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (is_kafka_conf_set(conf, fixed[i][0], fixed[i][1], errstr, errstr_size) != IS_OK)
            goto err;
    rd_kafka_conf_set_log_cb(conf, is_log_rdkafka_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_consume_cb(conf, drop_at_close);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!c->rk) {
        is_errf(errstr, errstr_size, "cannot create kafka consumer: %s", kerr);
        goto err;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(c->rk);

    if (n_tiers > 64)
        n_tiers = 64;
    for (size_t i = 0; i < n_tiers; i++)
        tiers[i] = is_policy_tier(policy, i)->name;
    if (is_topic_regex(regex, sizeof(regex), c->prefix, cfg->sites_regex, tiers, n_tiers) < 0) {
        is_errf(errstr, errstr_size, "cannot build the subscription regex from sites_regex '%s'",
                cfg->sites_regex);
        goto err;
    }
    if (strcmp(cfg->consume_mode, "assign") == 0) {
        c->assign_mode = 1;
        if (regcomp(&c->topic_re, regex, REG_EXTENDED | REG_NOSUB) != 0) {
            is_errf(errstr, errstr_size, "cannot compile the topic regex '%s'", regex);
            goto err;
        }
        c->have_re = 1;
        is_log(IS_LOG_INFO, "assigning matching partitions", "regex", regex, NULL);
    } else {
        subs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(subs, regex, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t kerrc = rd_kafka_subscribe(c->rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (kerrc) {
            is_errf(errstr, errstr_size, "cannot subscribe to '%s': %s", regex,
                    rd_kafka_err2str(kerrc));
            rc = IS_ERR_KAFKA;
            goto err;
        }
        is_log(IS_LOG_INFO, "subscribed", "regex", regex, NULL);
    }
    *out = c;
    return IS_OK;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    consume_destroy(c);
    return rc;
}

/*
 * Leave the group (final offset commit, partitions revoked through
 * rebalance_cb) for at most CLOSE_TIMEOUT_MS. rd_kafka_consumer_close()
 * has no limit of its own: with the brokers gone it waited minutes, and a
 * container stop would end in SIGKILL. Giving up is safe: every offset
 * Kafka has not received is at or before the store's, which holds what was
 * read (a later owner reads a few messages twice; the dedup absorbs them).
 */
static int close_group(rd_kafka_t *rk) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_error_t *error = q ? rd_kafka_consumer_close_queue(rk, q) : NULL;
    int64_t deadline = is_monotonic_ms() + CLOSE_TIMEOUT_MS;
    int closed = 0;
    if (q && !error) {
        while (!(closed = rd_kafka_consumer_closed(rk)) && is_monotonic_ms() < deadline)
            rd_kafka_queue_poll_callback(q, 100);
    }
    if (error) {
        is_log(IS_LOG_WARN, "cannot leave the consumer group", "error",
               rd_kafka_error_string(error), NULL);
        rd_kafka_error_destroy(error);
    } else if (!closed) {
        is_logf(IS_LOG_WARN,
                "Kafka did not confirm leaving the consumer group within %d s; stopping without"
                " it (the store holds what was read; the group rebalances after "
                "session.timeout.ms)",
                CLOSE_TIMEOUT_MS / 1000);
    }
    if (q)
        rd_kafka_queue_destroy(q);
    return closed;
}

void consume_destroy(consume_t *c) {
    if (!c)
        return;
    if (c->rk) {
        /* Assign mode: the store holds the offsets; do not wait on a group to leave. */
        if (c->assign_mode) {
            rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        } else if (close_group(c->rk)) {
            rd_kafka_destroy(c->rk);
        } else {
            /* rd_kafka_destroy() would wait for the unfinished close (up to
             * session.timeout.ms, measured 45 s). The process is stopping:
             * the handle and c (its opaque) are left to the exit. */
            return;
        }
    }
    if (c->have_re)
        regfree(&c->topic_re);
    free(c->snap);
    free(c->owned);
    free(c->refused);
    free(c);
}

/*
 * Assign mode: list the cluster's topics; when partitions matching the
 * regex appeared, assign them all, each from the store's next offset (or
 * the beginning). Called between batches, when the store's offsets are
 * exact for everything consumed, so re-assigning loses and repeats nothing
 * that matters (a re-delivered message is a duplicate the store absorbs).
 */
static void discover(consume_t *c) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *l;
    int n = 0;
    if (is_monotonic_ms() < c->next_discovery)
        return;
    c->next_discovery = is_monotonic_ms() + c->cfg->discovery_ms;
    if (rd_kafka_metadata(c->rk, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return; /* Kafka unreachable: try again next time */
    atomic_store(&c->stats->kafka_up, 1);
    l = rd_kafka_topic_partition_list_new(64);
    for (int t = 0; t < md->topic_cnt; t++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[t];
        if (mt->err || regexec(&c->topic_re, mt->topic, 0, NULL, 0) != 0)
            continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            int64_t next;
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_add(l, mt->topic, mt->partitions[p].id);
            tp->offset = store_get_offset(c->store, mt->topic, mt->partitions[p].id, &next) == IS_OK
                             ? next
                             : RD_KAFKA_OFFSET_BEGINNING;
            n++;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (n != c->assigned_parts) {
        rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, l);
        if (err) {
            is_log(IS_LOG_WARN, "cannot assign partitions", "error", rd_kafka_err2str(err), NULL);
        } else {
            char cnt[16];
            snprintf(cnt, sizeof(cnt), "%d", n);
            is_log(IS_LOG_INFO, "partitions assigned", "partitions", cnt, NULL);
            c->assigned_parts = n;
            atomic_store(&c->stats->assigned_since_ms, (long long)is_clock_now_ms(NULL));
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* The content-type header names the message type; absent means Movement. */
static int is_heartbeat_msg(const rd_kafka_message_t *msg) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t len;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (rd_kafka_header_get_last(hdrs, "content-type", &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return memmem(val, len, "Heartbeat", 9) != NULL;
}

/* Decide what a message is; fills slot and the store message. */
/* The loop guard, ignoring case as the producer's does ("erp-sap" is ERP-SAP). */
static int is_erp_source(const is_strlist_t *sources, const char *source) {
    for (size_t i = 0; source && i < sources->n; i++)
        if (strcasecmp(sources->items[i], source) == 0)
            return 1;
    return 0;
}

static void classify(consume_t *c, slot_t *slot, store_msg_t *sm) {
    const rd_kafka_message_t *msg = slot->msg;
    char site[128], tier[64];
    is_field_error_t ferr[4];
    is_validate_opts_t opts = {.max_scale = IS_DECIMAL_MAX_SCALE, .refused_sources = NULL};

    memset(sm, 0, sizeof(*sm));
    sm->topic = rd_kafka_topic_name(msg->rkt);
    sm->partition = msg->partition;
    sm->offset = msg->offset;
    sm->period = owned_period(c, sm->topic, msg->partition);
    sm->payload = msg->payload;
    sm->payload_len = msg->len;
    if (is_topic_parse(sm->topic, c->prefix, site, sizeof(site), tier, sizeof(tier)) != IS_OK) {
        site[0] = tier[0] = '\0';
    }

    /* Protobuf decodes no bytes as an empty message: say what arrived. */
    if (msg->len == 0) {
        snprintf(slot->reason, sizeof(slot->reason), "%s",
                 msg->payload ? "empty value" : "null value (a tombstone)");
        goto dead;
    }
    if (is_heartbeat_msg(msg)) {
        slot->hb = invsync__v1__heartbeat__unpack(NULL, msg->len, msg->payload);
        /* Each heartbeat makes its site known for good (sites, the silent-site
         * alert): one on another site's topic would invent a site. */
        if (slot->hb && site[0] && strcmp(site, slot->hb->site) != 0) {
            snprintf(slot->reason, sizeof(slot->reason),
                     "heartbeat of site '%.64s' on topic of site '%s'", slot->hb->site, site);
            goto dead;
        }
        if (slot->hb) {
            sm->kind = STORE_MSG_HEARTBEAT;
            sm->hb = slot->hb;
            return;
        }
        snprintf(slot->reason, sizeof(slot->reason),
                 "undecodable: value is not an invsync.v1.Heartbeat");
        goto dead;
    }
    slot->m = invsync__v1__movement__unpack(NULL, msg->len, msg->payload);
    if (!slot->m) {
        snprintf(slot->reason, sizeof(slot->reason),
                 "undecodable: value is not an invsync.v1.Movement (%zu bytes)", msg->len);
        goto dead;
    }
    if (c->cfg->erp_sources.n > 0 && is_erp_source(&c->cfg->erp_sources, slot->m->source_system)) {
        sm->kind = STORE_MSG_IGNORED;
        sm->m = slot->m;
        snprintf(slot->reason, sizeof(slot->reason), "loop guard: source '%s' is the ERP",
                 slot->m->source_system);
        sm->reason = slot->reason;
        return;
    }
    if (is_movement_validate(slot->m, &opts, ferr, 4) > 0) {
        snprintf(slot->reason, sizeof(slot->reason), "invalid movement: %s: %s", ferr[0].field,
                 ferr[0].error);
        goto dead;
    }
    if (site[0] && strcmp(site, slot->m->site) != 0) {
        snprintf(slot->reason, sizeof(slot->reason), "movement of site '%s' on topic of site '%s'",
                 slot->m->site, site);
        goto dead;
    }
    /* mes-producer publishes a movement on its own tier's topic; another tier
     * would post it on that tier's cadence and account it there. */
    if (tier[0] && strcmp(tier, slot->m->tier) != 0) {
        snprintf(slot->reason, sizeof(slot->reason), "movement of tier '%s' on topic of tier '%s'",
                 slot->m->tier, tier);
        goto dead;
    }
    if (!slot->m->producer_id[0] || slot->m->sequence == 0) {
        snprintf(slot->reason, sizeof(slot->reason),
                 "movement has no producer_id/sequence (not stamped by mes-producer)");
        goto dead;
    }
    sm->kind = STORE_MSG_MOVEMENT;
    sm->m = slot->m;
    {
        /* The window is fixed now, from the acceptance time: durable across restarts. */
        const is_tier_t *t = is_policy_tier_by_name(c->policy, slot->m->tier);
        int64_t accepted = slot->m->accepted_time ? slot->m->accepted_time : is_clock_now_ms(NULL);
        if (t) {
            sm->due_at =
                is_schedule_due(t, is_policy_site_timezone(c->policy, slot->m->site), accepted);
        } else {
            /* A tier this consumer's policy does not know (policy roll-out in progress):
             * post without delay rather than park it. */
            sm->due_at = accepted;
            is_log(IS_LOG_WARN, "movement tier not in this consumer's policy; posting it at once",
                   "movement_id", slot->m->movement_id, "tier", slot->m->tier, NULL);
        }
    }
    return;
dead:
    sm->kind = STORE_MSG_DEAD;
    sm->m = slot->m; /* keeps its sequence when it decoded */
    sm->reason = slot->reason;
    {
        char err[256];
        dlq_letter_t l = {
            .site = site[0] ? site : "_unknown",
            .key = msg->key,
            .key_len = msg->key_len,
            .value = msg->payload,
            .value_len = msg->len,
            .error = slot->reason,
            .source_topic = sm->topic,
            .source_partition = msg->partition,
            .source_offset = msg->offset,
            .movement_id = slot->m ? slot->m->movement_id : NULL,
        };
        if (dlq_publish(c->dlq, &l, err, sizeof(err)) != IS_OK)
            is_log(IS_LOG_ERROR, "cannot dead-letter", "error", err, NULL);
        is_log(IS_LOG_WARN, "message dead-lettered", "topic", sm->topic, "reason", slot->reason,
               "movement_id", slot->m ? slot->m->movement_id : NULL, NULL);
    }
}

static void slot_release(slot_t *slot) {
    if (slot->m)
        invsync__v1__movement__free_unpacked(slot->m, NULL);
    if (slot->hb)
        invsync__v1__heartbeat__free_unpacked(slot->hb, NULL);
    if (slot->msg)
        rd_kafka_message_destroy(slot->msg);
    memset(slot, 0, sizeof(*slot));
}

/* Store Kafka offsets (next to read) for the batch, after the store commit. */
static void store_kafka_offsets(consume_t *c, const store_msg_t *sm, size_t n) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(l, sm[i].topic, sm[i].partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(l, sm[i].topic, sm[i].partition);
        if (sm[i].offset + 1 > p->offset)
            p->offset = sm[i].offset + 1;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
    if (err && err != RD_KAFKA_RESP_ERR__STATE)
        is_log(IS_LOG_WARN, "cannot store kafka offsets", "error", rd_kafka_err2str(err), NULL);
    rd_kafka_topic_partition_list_destroy(l);
}

/*
 * Consumption progress for gap handling. A snapshot records every assigned
 * partition's high watermark (as librdkafka caches it from fetch responses,
 * no broker round trip) at time T; once every position has passed its
 * snapshot, everything that was in Kafka at T has been consumed, and
 * stats->caught_up_since_ms becomes T ("consumed through T"). New messages
 * arriving after T (heartbeats keep coming) do not matter. Any change of the
 * assignment drops the snapshot and the "consumed through" time. A partition
 * not consumed in this session counts from the store's offset.
 */
static void track_progress(consume_t *c) {
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(c->rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR || !l || l->cnt == 0) {
        if (l)
            rd_kafka_topic_partition_list_destroy(l);
        c->n_snap = 0;
        atomic_store(&c->stats->caught_up_since_ms, 0);
        return;
    }
    rd_kafka_position(c->rk, l);
    if (c->n_snap != l->cnt) {
        if (c->n_snap)
            atomic_store(&c->stats->caught_up_since_ms, 0); /* assignment changed */
        c->n_snap = 0;
        free(c->snap);
        c->snap = calloc((size_t)l->cnt, sizeof(*c->snap));
        if (!c->snap)
            goto out;
        for (int i = 0; i < l->cnt; i++) {
            int64_t lo = -1, hi = -1;
            if (rd_kafka_get_watermark_offsets(c->rk, l->elems[i].topic, l->elems[i].partition, &lo,
                                               &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                hi < 0)
                goto out; /* not fetched yet: try again later */
            snprintf(c->snap[i].topic, sizeof(c->snap[i].topic), "%s", l->elems[i].topic);
            c->snap[i].partition = l->elems[i].partition;
            c->snap[i].hi = hi;
        }
        c->n_snap = l->cnt;
        c->snap_at = is_clock_now_ms(NULL);
        goto out;
    }
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *p = &l->elems[i];
        const snap_t *sn = NULL;
        for (int k = 0; k < c->n_snap && !sn; k++)
            if (c->snap[k].partition == p->partition && strcmp(c->snap[k].topic, p->topic) == 0)
                sn = &c->snap[k];
        if (!sn) { /* a different assignment of the same size */
            c->n_snap = 0;
            atomic_store(&c->stats->caught_up_since_ms, 0);
            goto out;
        }
        int64_t pos = p->offset;
        if (pos < 0 && store_get_offset(c->store, p->topic, p->partition, &pos) != IS_OK)
            pos = 0;
        if (pos < sn->hi)
            goto out; /* not through the snapshot yet */
    }
    atomic_store(&c->stats->caught_up_since_ms, (long long)c->snap_at);
    c->n_snap = 0; /* next check takes a fresh snapshot */
out:
    rd_kafka_topic_partition_list_destroy(l);
}

/*
 * Movements the store parked: accepted before its pruned horizon and unknown
 * to it (store_apply_batch). They are copied to the dead-letter topic after
 * the commit, because only the store's transaction can tell them from
 * duplicates. The store's record (the dead row with its reason, dead_letters,
 * the audit row movement-before-horizon) is the durable one: a crash before
 * this copy leaves it without its dead letter in Kafka, and the movement
 * read again is then a duplicate of its dead row.
 */
static void dead_letter_parked(consume_t *c, const slot_t *slots, const store_msg_t *sm, size_t n,
                               const unsigned char *parked, const store_batch_result_t *res) {
    char err[256], why[256];
    for (size_t i = 0; i < n; i++) {
        if (!parked[i])
            continue;
        const rd_kafka_message_t *msg = slots[i].msg;
        const is_movement_t *m = sm[i].m;
        store_horizon_reason(m->accepted_time, res->pruned_before, why, sizeof(why));
        dlq_letter_t l = {
            .site = m->site, /* the topic's (classify checked it) */
            .key = msg->key,
            .key_len = msg->key_len,
            .value = msg->payload,
            .value_len = msg->len,
            .error = why,
            .source_topic = sm[i].topic,
            .source_partition = msg->partition,
            .source_offset = msg->offset,
            .movement_id = m->movement_id,
        };
        if (dlq_publish(c->dlq, &l, err, sizeof(err)) != IS_OK) {
            atomic_fetch_add(&c->stats->dlq_errors, 1);
            is_log(IS_LOG_ERROR, "cannot dead-letter", "movement_id", m->movement_id, "error", err,
                   NULL);
        }
        is_log(IS_LOG_ERROR, "movement accepted before the store's pruned horizon: not posted",
               "movement_id", m->movement_id, "topic", sm[i].topic, "reason", why, NULL);
    }
    atomic_fetch_add(&c->stats->before_horizon, (long long)res->parked);
    if (dlq_flush(c->dlq, 10000) != IS_OK)
        atomic_fetch_add(&c->stats->dlq_errors, 1);
}

is_err_t consume_run(consume_t *c, volatile sig_atomic_t *stop) {
    size_t cap = (size_t)c->cfg->consume_batch;
    slot_t *slots = calloc(cap, sizeof(*slots));
    store_msg_t *sm = calloc(cap, sizeof(*sm));
    unsigned char *parked = calloc(cap, 1);
    is_err_t rc = IS_OK;
    char errstr[512];

    if (!slots || !sm || !parked) {
        free(slots);
        free(sm);
        free(parked);
        return IS_ERR_NOMEM;
    }
    while (!*stop) {
        size_t n = 0, dead = 0;
        if (c->assign_mode)
            discover(c);
        /* Gather a batch: wait up to 100 ms for the first message, then take what is ready. */
        while (n < cap && !*stop) {
            rd_kafka_message_t *msg = rd_kafka_consumer_poll(c->rk, n == 0 ? 100 : 0);
            if (!msg)
                break;
            if (msg->err) {
                if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    is_log(IS_LOG_WARN, "consume error", "error", rd_kafka_message_errstr(msg),
                           NULL);
                /* A broker answered (the end of a partition; no topic of the
                 * subscription yet, on a cluster no producer has written to). */
                if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                    msg->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                    msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
                    atomic_store(&c->stats->kafka_up, 1);
                rd_kafka_message_destroy(msg);
                continue;
            }
            atomic_store(&c->stats->kafka_up, 1);
            slots[n].msg = msg;
            classify(c, &slots[n], &sm[n]);
            if (sm[n].kind == STORE_MSG_DEAD)
                dead++;
            n++;
        }
        /* Note whether everything assigned has been read (gap handling). Checked at
         * most every 500 ms, after batches too: heartbeats keep a caught-up consumer
         * busy, so waiting for an empty poll would never see it caught up. */
        if (is_monotonic_ms() >= c->next_caught_up_check) {
            c->next_caught_up_check = is_monotonic_ms() + 500;
            track_progress(c);
        }
        if (n == 0)
            continue;
        /* A dead letter must be in Kafka before its offset is committed here. */
        while (dead > 0 && !*stop && dlq_flush(c->dlq, 10000) != IS_OK) {
            atomic_fetch_add(&c->stats->dlq_errors, 1);
            is_log(IS_LOG_ERROR, "dead letters not delivered yet; holding the batch", NULL);
        }
        if (*stop && dead > 0) {
            for (size_t i = 0; i < n; i++)
                slot_release(&slots[i]);
            break; /* not committed: the batch is consumed again after restart */
        }
        /* Change control: remember each policy version the first time it is seen. */
        for (size_t i = 0; i < n; i++) {
            const is_movement_t *m = sm[i].kind == STORE_MSG_MOVEMENT ? sm[i].m : NULL;
            if (m && m->policy_version[0] && strcmp(m->policy_version, c->last_policy) != 0) {
                if (store_note_policy_version(c->store, m->policy_version, m->movement_id,
                                              is_clock_now_ms(NULL), errstr,
                                              sizeof(errstr)) == IS_OK) {
                    snprintf(c->last_policy, sizeof(c->last_policy), "%s", m->policy_version);
                    is_log(IS_LOG_INFO, "policy version seen", "policy_version", m->policy_version,
                           "movement_id", m->movement_id, NULL);
                }
            }
        }
        store_batch_result_t res;
        for (;;) {
            rc = store_apply_batch_parked(c->store, sm, n, is_clock_now_ms(NULL), parked, &res,
                                          errstr, sizeof(errstr));
            if (rc == IS_OK || *stop)
                break;
            is_log(IS_LOG_ERROR, "store batch failed; retrying", "error", errstr, NULL);
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (rc == IS_OK) {
            store_kafka_offsets(c, sm, n);
            atomic_fetch_add(&c->stats->messages, (long long)n);
            atomic_fetch_add(&c->stats->received, (long long)res.received);
            atomic_fetch_add(&c->stats->duplicates, (long long)res.duplicates);
            atomic_fetch_add(&c->stats->conflicts, (long long)res.conflicts);
            if (res.conflicts) {
                char n_s[24];
                snprintf(n_s, sizeof(n_s), "%zu", res.conflicts);
                is_log(IS_LOG_WARN,
                       "movement id(s) received again with other content: the first version "
                       "stays, this one is not applied (audit action movement-conflict)",
                       "count", n_s, "movement_id", res.conflict_id, NULL);
            }
            atomic_fetch_add(&c->stats->dead, (long long)res.dead);
            atomic_fetch_add(&c->stats->ignored, (long long)res.ignored);
            atomic_fetch_add(&c->stats->heartbeats, (long long)res.heartbeats);
            if (res.parked)
                dead_letter_parked(c, slots, sm, n, parked, &res);
            if (res.duplicates && is_log_enabled(IS_LOG_DEBUG))
                is_logf(IS_LOG_DEBUG, "%zu duplicate movement(s) absorbed", res.duplicates);
            if (res.received && c->notify)
                c->notify(c->notify_opaque);
        }
        for (size_t i = 0; i < n; i++)
            slot_release(&slots[i]);
    }
    free(slots);
    free(sm);
    free(parked);
    return *stop ? IS_OK : rc;
}
