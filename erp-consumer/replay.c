/*
 * replay.c — read tier topics by time (replay.h), the timeline of what the
 * ERP made of each movement, and --apply: re-drive what is missing through
 * the consumer's own dedup store.
 *
 * What --apply does, exactly (one store transaction, audited):
 *   1. A replayed movement the store does not know (by source_system +
 *      movement_id) and that the consume loop would have accepted (valid,
 *      not the ERP's own, of a site this consumer owns: sites_regex) is
 *      inserted as the consume loop inserts it, state `queued`, with its
 *      Kafka coordinates and due now; its producer's watermark advances
 *      over it. The Kafka offsets the consumer keeps are NOT touched.
 *   2. A replayed movement the store has as `posted` is checked in the ERP:
 *      its posting_id is looked up (erp_lookup_reference, the same call the
 *      poster uses after a crash). When the ERP does not know it (its
 *      documents were lost), the posting row is removed and every movement
 *      of that posting goes back to `queued`, due now, with a note. When the
 *      ERP has it, nothing changes.
 *   3. Everything else already known (pending, failed, dead, cancelled,
 *      skipped) is left alone and counted.
 * The running poster then posts the queued movements at its next cycle,
 * with the same deterministic posting ids; the ERP's idempotency reference
 * guards the rest. A lookup the ERP cannot answer aborts before anything
 * is changed.
 *
 * Load: an investigation-sized range (a day of a plant: up to a few hundred
 * thousand messages) held in memory, one indexed store query per movement
 * and one ERP lookup per distinct posting checked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "duration.h"
#include "erp.h"
#include "log.h"
#include "policy.h"
#include "replay.h"
#include "store.h"
#include "topic.h"

#define KAFKA_TIMEOUT_MS 15000 /* metadata, offsets_for_times, watermarks */
#define IDLE_TIMEOUT_MS  30000 /* no message and no end of partition for this long: give up */

int replay_filter_match(const replay_filter_t *f, const is_movement_t *m) {
    if (!f)
        return 1;
    if (f->material && strcmp(f->material, m->material) != 0)
        return 0;
    if (f->lot && strcmp(f->lot, m->lot) != 0)
        return 0;
    if (f->order_id && strcmp(f->order_id, m->order_id) != 0)
        return 0;
    if (f->type && (int)m->type != f->type)
        return 0;
    return 1;
}

is_err_t replay_check_range(int64_t from_ms, int64_t to_ms, int64_t now_ms, char *errstr,
                            size_t errstr_size) {
    char a[IS_RFC3339_LEN], b[IS_RFC3339_LEN];
    is_format_rfc3339(from_ms, a);
    is_format_rfc3339(to_ms, b);
    if (to_ms < from_ms) {
        is_errf(errstr, errstr_size, "the end of the range (%s) is before its start (%s)", b, a);
        return IS_ERR_INVALID;
    }
    if (from_ms > now_ms) {
        char n[IS_RFC3339_LEN];
        is_format_rfc3339(now_ms, n);
        is_errf(errstr, errstr_size,
                "the range %s .. %s is entirely in the future (now is %s): nothing to replay", a, b,
                n);
        return IS_ERR_INVALID;
    }
    return IS_OK;
}

/* ---- the Kafka reader ------------------------------------------------------ */

typedef struct part {
    char topic[IS_TOPIC_MAX + 1];
    char site[65], tier[IS_TIER_NAME_MAX];
    int32_t partition;
    int64_t start, low, high;
    int done;
    int check_gap; /* starts at a log start offset > 0: older data was deleted */
    int seen;      /* a message was read */
} part_t;

static is_err_t conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                         size_t errstr_size) {
    char kerr[512];
    if (rd_kafka_conf_set(conf, k, v, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        is_errf(errstr, errstr_size, "kafka.%s: %s", k, kerr);
        return IS_ERR_CONFIG;
    }
    return IS_OK;
}

static rd_kafka_t *reader_new(const consumer_config_t *cfg, char *errstr, size_t errstr_size) {
    static const char *const never[] = {"group.id",
                                        "group.instance.id",
                                        "enable.auto.commit",
                                        "enable.auto.offset.store",
                                        "enable.partition.eof",
                                        "auto.offset.reset"};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[96], kerr[512];
    rd_kafka_t *rk;
    snprintf(group, sizeof(group), "invsync-replay-%ld-%" PRId64, (long)getpid(),
             is_clock_now_ms(NULL));
    for (size_t i = 0; i < cfg->kafka.n; i++) {
        int skip = 0;
        for (size_t k = 0; k < sizeof(never) / sizeof(never[0]); k++)
            skip |= strcmp(cfg->kafka.keys[i], never[k]) == 0;
        if (!skip &&
            conf_set(conf, cfg->kafka.keys[i], cfg->kafka.vals[i], errstr, errstr_size) != IS_OK)
            goto err;
    }
    if (conf_set(conf, "group.id", group, errstr, errstr_size) != IS_OK ||
        conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) != IS_OK ||
        conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) != IS_OK ||
        conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size) != IS_OK ||
        conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) != IS_OK)
        goto err;
    rd_kafka_conf_set_log_cb(conf, is_log_rdkafka_cb);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!rk) {
        is_errf(errstr, errstr_size, "cannot create the replay consumer: %s", kerr);
        goto err;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Is item one of the ", "-separated names in list? */
static int listed(const char *list, const char *item) {
    size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* Pick <prefix>.<site>.<tier> topics (not dlq) passing the topic filters. */
static is_err_t select_parts(rd_kafka_t *rk, const char *prefix, const replay_filter_t *f,
                             part_t **out, size_t *n_out, size_t *n_topics, char *errstr,
                             size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, KAFKA_TIMEOUT_MS);
    char sites[512] = "";
    size_t n = 0, cap = 0, sites_len = 0;
    part_t *parts = NULL;
    if (err) {
        is_errf(errstr, errstr_size, "cannot list the topics in Kafka: %s", rd_kafka_err2str(err));
        return IS_ERR_KAFKA;
    }
    *n_topics = 0;
    for (int t = 0; t < md->topic_cnt; t++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[t];
        char site[65], tier[IS_TIER_NAME_MAX];
        if (is_topic_parse(mt->topic, prefix, site, sizeof(site), tier, sizeof(tier)) != IS_OK ||
            strcmp(tier, IS_TOPIC_DLQ) == 0)
            continue;
        if (!listed(sites, site) && sites_len + strlen(site) + 3 < sizeof(sites))
            sites_len += (size_t)snprintf(sites + sites_len, sizeof(sites) - sites_len, "%s%s",
                                          sites_len ? ", " : "", site);
        if ((f->site && strcmp(f->site, site) != 0) || (f->tier && strcmp(f->tier, tier) != 0))
            continue;
        (*n_topics)++;
        for (int p = 0; p < mt->partition_cnt; p++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 32;
                part_t *grown = realloc(parts, cap * sizeof(*parts));
                if (!grown) {
                    free(parts);
                    rd_kafka_metadata_destroy(md);
                    return IS_ERR_NOMEM;
                }
                parts = grown;
            }
            memset(&parts[n], 0, sizeof(parts[n]));
            snprintf(parts[n].topic, sizeof(parts[n].topic), "%s", mt->topic);
            snprintf(parts[n].site, sizeof(parts[n].site), "%s", site);
            snprintf(parts[n].tier, sizeof(parts[n].tier), "%s", tier);
            parts[n].partition = mt->partitions[p].id;
            n++;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (n == 0) {
        free(parts);
        if (f->site && f->tier && listed(sites, f->site))
            is_errf(errstr, errstr_size, "site '%s' has no topic %s.%s.%s", f->site, prefix,
                    f->site, f->tier);
        else if (f->site)
            is_errf(errstr, errstr_size,
                    "no topics for site '%s' (%s.%s.<tier>); sites with topics: %s", f->site,
                    prefix, f->site, sites[0] ? sites : "none");
        else
            is_errf(errstr, errstr_size, "no topics %s.<site>.%s in Kafka", prefix,
                    f->tier ? f->tier : "<tier>");
        return IS_ERR_NOT_FOUND;
    }
    *out = parts;
    *n_out = n;
    return IS_OK;
}

/* Look every partition's first offset at or after ts up; fills start (or -1). */
static is_err_t offsets_at(rd_kafka_t *rk, part_t *parts, size_t n, int64_t ts, int only_unset,
                           char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    rd_kafka_resp_err_t err;
    for (size_t i = 0; i < n; i++)
        if (!only_unset || parts[i].start < 0)
            rd_kafka_topic_partition_list_add(l, parts[i].topic, parts[i].partition)->offset = ts;
    err = rd_kafka_offsets_for_times(rk, l, KAFKA_TIMEOUT_MS);
    for (int i = 0; !err && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &l->elems[i];
        if (e->err) {
            err = e->err;
            break;
        }
        for (size_t k = 0; k < n; k++)
            if (parts[k].partition == e->partition && strcmp(parts[k].topic, e->topic) == 0)
                parts[k].start = e->offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        is_errf(errstr, errstr_size, "cannot look up offsets by time in Kafka: %s",
                rd_kafka_err2str(err));
        return IS_ERR_KAFKA;
    }
    return IS_OK;
}

static int is_heartbeat(const rd_kafka_message_t *msg) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t len;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "content-type", &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return memmem(val, len, "Heartbeat", 9) != NULL;
}

static void finish(rd_kafka_t *rk, part_t *p, size_t *remaining) {
    rd_kafka_topic_partition_list_t *l;
    if (p->done)
        return;
    p->done = 1;
    (*remaining)--;
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    rd_kafka_pause_partitions(rk, l); /* stop fetching what is past the range */
    rd_kafka_topic_partition_list_destroy(l);
}

/* Poll the assigned partitions until each is done; deliver what is in range. */
static is_err_t read_parts(rd_kafka_t *rk, part_t *parts, size_t n, size_t remaining,
                           int64_t from_ms, int64_t to_ms, replay_cb cb, void *opaque,
                           replay_info_t *info, char *errstr, size_t errstr_size) {
    int64_t idle_since = is_monotonic_ms();
    while (remaining > 0) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 200);
        part_t *p = NULL;
        if (!msg) {
            if (is_monotonic_ms() - idle_since > IDLE_TIMEOUT_MS) {
                is_errf(errstr, errstr_size,
                        "Kafka delivered nothing for %d s with %zu partition(s) unfinished",
                        IDLE_TIMEOUT_MS / 1000, remaining);
                return IS_ERR_KAFKA;
            }
            continue;
        }
        idle_since = is_monotonic_ms();
        for (size_t i = 0; msg->rkt && i < n; i++)
            if (parts[i].partition == msg->partition &&
                strcmp(parts[i].topic, rd_kafka_topic_name(msg->rkt)) == 0)
                p = &parts[i];
        if (msg->err) {
            if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && p)
                finish(rk, p, &remaining);
            else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                is_log(IS_LOG_WARN, "replay: kafka error", "error", rd_kafka_message_errstr(msg),
                       NULL);
            rd_kafka_message_destroy(msg);
            continue;
        }
        if (!p || p->done) {
            rd_kafka_message_destroy(msg);
            continue;
        }
        int64_t ts = rd_kafka_message_timestamp(msg, NULL);
        if (p->check_gap && !p->seen && ts > from_ms) {
            if (!info->retention_gap || ts < info->retention_earliest_ms)
                info->retention_earliest_ms = ts;
            info->retention_gap = 1;
        }
        p->seen = 1;
        if (ts > to_ms) {
            finish(rk, p, &remaining);
            rd_kafka_message_destroy(msg);
            continue;
        }
        replay_msg_t rm = {.kind = REPLAY_MOVEMENT,
                           .topic = p->topic,
                           .site = p->site,
                           .tier = p->tier,
                           .partition = p->partition,
                           .offset = msg->offset,
                           .timestamp_ms = ts,
                           .payload = msg->payload,
                           .payload_len = msg->len};
        is_movement_t *m = NULL;
        if (is_heartbeat(msg)) {
            rm.kind = REPLAY_HEARTBEAT;
        } else {
            m = invsync__v1__movement__unpack(NULL, msg->len, msg->payload);
            rm.kind = m ? REPLAY_MOVEMENT : REPLAY_UNDECODABLE;
            rm.m = m;
        }
        info->messages++;
        int stop = cb(opaque, &rm);
        if (m)
            invsync__v1__movement__free_unpacked(m, NULL);
        if (msg->offset >= p->high - 1)
            finish(rk, p, &remaining);
        rd_kafka_message_destroy(msg);
        if (stop) {
            is_errf(errstr, errstr_size, "replay stopped by its consumer (out of memory?)");
            return IS_ERR_INVALID;
        }
    }
    return IS_OK;
}

is_err_t replay_read(const consumer_config_t *cfg, const char *prefix, int64_t from_ms,
                     int64_t to_ms, const replay_filter_t *filter, replay_cb cb, void *opaque,
                     replay_info_t *info, char *errstr, size_t errstr_size) {
    replay_filter_t none = {0};
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    part_t *parts = NULL;
    size_t n = 0, remaining = 0, unanswered = 0, all_deleted = 0;
    is_err_t rc;

    memset(info, 0, sizeof(*info));
    filter = filter ? filter : &none;
    rc = replay_check_range(from_ms, to_ms, is_clock_now_ms(NULL), errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    rk = reader_new(cfg, errstr, errstr_size);
    if (!rk)
        return IS_ERR_CONFIG;
    rc = select_parts(rk, prefix, filter, &parts, &n, &info->topics, errstr, errstr_size);
    if (rc != IS_OK)
        goto out;
    info->partitions = n;
    rc = offsets_at(rk, parts, n, from_ms, 0, errstr, errstr_size);
    for (size_t i = 0; rc == IS_OK && i < n; i++) {
        part_t *p = &parts[i];
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            rk, p->topic, p->partition, &p->low, &p->high, KAFKA_TIMEOUT_MS);
        if (err) {
            is_errf(errstr, errstr_size, "cannot read the offsets of %s [%d]: %s", p->topic,
                    (int)p->partition, rd_kafka_err2str(err));
            rc = IS_ERR_KAFKA;
        }
        unanswered += p->start < 0 && p->high > p->low;
        all_deleted += p->low > 0 && p->low == p->high;
    }
    if (rc != IS_OK)
        goto out;
    /* A partition with data but no offset for `from`: either everything is older than
     * `from` (Kafka answers "end"), or the cluster cannot look up by time at all (the
     * embedded mock answers "end" for every time). Asking for time 0 tells them apart. */
    if (unanswered > 0) {
        part_t *probe = calloc(n, sizeof(*probe));
        if (!probe) {
            rc = IS_ERR_NOMEM;
            goto out;
        }
        memcpy(probe, parts, n * sizeof(*probe));
        rc = offsets_at(rk, probe, n, 0, 1, errstr, errstr_size);
        for (size_t i = 0; rc == IS_OK && i < n; i++) {
            if (probe[i].start < 0 && probe[i].high > probe[i].low) {
                is_errf(errstr, errstr_size,
                        "this Kafka cluster cannot look up offsets by time (%s [%d] has messages "
                        "but none is found after 1970): the embedded mock cluster cannot; "
                        "replay needs Apache Kafka",
                        probe[i].topic, (int)probe[i].partition);
                rc = IS_ERR_KAFKA;
            }
        }
        free(probe);
        if (rc != IS_OK)
            goto out;
    }
    if (all_deleted > 0) {
        info->retention_gap = 1; /* everything a partition ever had is gone: time unknown */
    }
    assign = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        part_t *p = &parts[i];
        if (p->start < 0 || p->start >= p->high) {
            p->done = 1;
            continue;
        }
        p->check_gap = p->low > 0 && p->start == p->low;
        rd_kafka_topic_partition_list_add(assign, p->topic, p->partition)->offset = p->start;
        remaining++;
    }
    if (remaining > 0) {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, assign);
        if (err) {
            is_errf(errstr, errstr_size, "cannot assign the replay partitions: %s",
                    rd_kafka_err2str(err));
            rc = IS_ERR_KAFKA;
            goto out;
        }
        rc = read_parts(rk, parts, n, remaining, from_ms, to_ms, cb, opaque, info, errstr,
                        errstr_size);
        rd_kafka_assign(rk, NULL);
    }
out:
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    free(parts);
    if (rk) {
        rd_kafka_consumer_close(rk); /* never joined a group: nothing to leave or commit */
        rd_kafka_destroy(rk);
    }
    return rc;
}

/* ---- the timeline ------------------------------------------------------------ */

/*
 * One replayed message. Rows keep the raw value, not the decoded movement
 * (a day of a plant is hundreds of thousands of rows): it is decoded again
 * to print or apply it.
 */
typedef struct row {
    char *topic;   /* owned */
    char site[65]; /* from the topic name */
    char tier[IS_TIER_NAME_MAX];
    int32_t partition;
    int64_t offset, ts; /* Kafka coordinates and timestamp */
    uint8_t *payload;   /* owned copy of the value */
    size_t payload_len;
    int decodable;    /* a Movement (else shown as undecodable) */
    int64_t accepted; /* acceptance time, for ordering */
    char *producer;   /* owned, for ordering */
    uint64_t seq;
    int in_store;
    char state[16]; /* the store's movement state */
    char posting_id[40];
    char *document;    /* owned or NULL: the ERP document */
    char *detail;      /* owned or NULL: error, reason or note */
    int64_t netted;    /* other movements in the same posting */
    char *netted_ids;  /* owned or NULL: up to 10 of them */
    char erp_check[8]; /* "", "found", "missing" */
    char action[12];   /* --apply: "queued", "re-queued" */
    int requeue;       /* --apply: the first row of a posting the ERP lost */
} row_t;

typedef struct timeline {
    const replay_filter_t *filter;
    sqlite3_stmt *lookup; /* a movement's store state, by source_system and movement_id */
    row_t *rows;
    size_t n, cap;
    size_t read, heartbeats, undecodable, movements, failed_lookups;
    int nomem;
} timeline_t;

static char *col_dup(sqlite3_stmt *st, int col) {
    const unsigned char *v = sqlite3_column_text(st, col);
    return v && *v ? strdup((const char *)v) : NULL;
}

static void lookup_store(timeline_t *t, row_t *r, const is_movement_t *m) {
    sqlite3_stmt *st = t->lookup;
    int rc;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, m->source_system, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, m->movement_id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v;
        r->in_store = 1;
        v = sqlite3_column_text(st, 0);
        snprintf(r->state, sizeof(r->state), "%s", v ? (const char *)v : "");
        v = sqlite3_column_text(st, 1);
        snprintf(r->posting_id, sizeof(r->posting_id), "%s", v ? (const char *)v : "");
        r->document = col_dup(st, 2);
        r->detail = col_dup(st, 3);
        r->netted = sqlite3_column_int64(st, 4);
        r->netted_ids = col_dup(st, 5);
    } else if (rc != SQLITE_DONE) {
        t->failed_lookups++;
    }
    sqlite3_reset(st);
}

static void row_release(row_t *r) {
    free(r->topic);
    free(r->payload);
    free(r->producer);
    free(r->document);
    free(r->detail);
    free(r->netted_ids);
}

static int collect(void *opaque, const replay_msg_t *msg) {
    timeline_t *t = opaque;
    row_t *r;
    t->read++;
    if (msg->kind == REPLAY_HEARTBEAT) {
        t->heartbeats++;
        return 0;
    }
    if (msg->kind == REPLAY_UNDECODABLE) {
        t->undecodable++;
        /* Shown only when no movement-level filter could have excluded it. */
        if (t->filter->material || t->filter->lot || t->filter->order_id || t->filter->type)
            return 0;
    } else {
        t->movements++;
        if (!replay_filter_match(t->filter, msg->m))
            return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        row_t *rows = realloc(t->rows, cap * sizeof(*rows));
        if (!rows)
            goto nomem;
        t->rows = rows;
        t->cap = cap;
    }
    r = &t->rows[t->n];
    memset(r, 0, sizeof(*r));
    snprintf(r->site, sizeof(r->site), "%s", msg->site);
    snprintf(r->tier, sizeof(r->tier), "%s", msg->tier);
    r->partition = msg->partition;
    r->offset = msg->offset;
    r->ts = msg->timestamp_ms;
    r->accepted = msg->timestamp_ms;
    r->topic = strdup(msg->topic);
    r->payload = malloc(msg->payload_len ? msg->payload_len : 1);
    if (!r->topic || !r->payload) {
        row_release(r);
        goto nomem;
    }
    memcpy(r->payload, msg->payload, msg->payload_len);
    r->payload_len = msg->payload_len;
    if (msg->kind == REPLAY_MOVEMENT) {
        r->decodable = 1;
        if (msg->m->accepted_time)
            r->accepted = msg->m->accepted_time;
        r->seq = msg->m->sequence;
        r->producer = strdup(msg->m->producer_id);
        if (!r->producer) {
            row_release(r);
            goto nomem;
        }
        lookup_store(t, r, msg->m);
    }
    t->n++;
    return 0;
nomem:
    t->nomem = 1;
    return 1;
}

/* Acceptance order (the producer's time, then its gap-free sequence): the order the
 * ERP must see. Kafka coordinates break the remaining ties. */
static int cmp_rows(const void *pa, const void *pb) {
    const row_t *a = pa, *b = pb;
    int c;
    if (a->accepted != b->accepted)
        return a->accepted < b->accepted ? -1 : 1;
    if (a->producer && b->producer && strcmp(a->producer, b->producer) == 0 && a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    if ((c = strcmp(a->topic, b->topic)) != 0)
        return c;
    if (a->partition != b->partition)
        return a->partition < b->partition ? -1 : 1;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

static is_movement_t *decode(const row_t *r) {
    return r->decodable ? invsync__v1__movement__unpack(NULL, r->payload_len, r->payload) : NULL;
}

/* What the ERP made of it, in one word. */
static const char *erp_status(const row_t *r) {
    static const char *const map[][2] = {
        {"queued", "pending"},      {"posting", "posting"}, {"retry", "retry"},
        {"posted", "posted"},       {"failed", "failed"},   {"dead", "dead-lettered"},
        {"cancelled", "cancelled"}, {"skipped", "skipped"}, {"ignored", "ignored"}};
    if (!r->decodable)
        return "undecodable";
    if (!r->in_store)
        return "not-in-store";
    if (strcmp(r->state, "posted") == 0 && strcmp(r->erp_check, "missing") == 0)
        return "posted-missing-in-erp";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], r->state) == 0)
            return map[i][1];
    return r->state;
}

/* The timeline columns, in CSV order (JSON lines use the same names). */
static const char *const columns[] = {"timestamp",
                                      "topic",
                                      "partition",
                                      "offset",
                                      "movement_id",
                                      "source_system",
                                      "site",
                                      "tier",
                                      "type",
                                      "material",
                                      "lot",
                                      "location",
                                      "to_location",
                                      "quantity",
                                      "uom",
                                      "order_id",
                                      "event_time",
                                      "accepted_time",
                                      "producer_id",
                                      "sequence",
                                      "policy_version",
                                      "status",
                                      "posting_id",
                                      "erp_document",
                                      "netted_with",
                                      "netted_movements",
                                      "erp_check",
                                      "apply_action",
                                      "detail"};
#define N_COLUMNS (sizeof(columns) / sizeof(columns[0]))

static json_t *row_json(const row_t *r) {
    char ts[IS_RFC3339_LEN], ev[IS_RFC3339_LEN] = "", acc[IS_RFC3339_LEN] = "";
    char q[IS_DECIMAL_STRLEN] = "", seq[24] = "";
    is_movement_t *m = decode(r);
    json_t *o;
    is_format_rfc3339(r->ts, ts);
    if (m) {
        if (m->event_time)
            is_format_rfc3339(m->event_time, ev);
        if (m->accepted_time)
            is_format_rfc3339(m->accepted_time, acc);
        if (m->quantity)
            is_decimal_format(is_movement_qty(m), q, sizeof(q));
        snprintf(seq, sizeof(seq), "%" PRIu64, m->sequence);
    }
#define S(x) (m && (x) ? (x) : "")
#define O(x) ((x) ? (x) : "")
    o = json_pack(
        "{s:s,s:s,s:i,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,"
        "s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}",
        "timestamp", ts, "topic", r->topic, "partition", (int)r->partition, "offset",
        (json_int_t)r->offset, "movement_id", S(m->movement_id), "source_system",
        S(m->source_system), "site", m ? S(m->site) : r->site, "tier", m ? S(m->tier) : r->tier,
        "type", m ? is_movement_type_name((int)m->type) : "", "material", S(m->material), "lot",
        S(m->lot), "location", S(m->location), "to_location", S(m->to_location), "quantity", q,
        "uom", S(m->uom), "order_id", S(m->order_id), "event_time", ev, "accepted_time", acc,
        "producer_id", S(m->producer_id), "sequence", seq, "policy_version", S(m->policy_version),
        "status", erp_status(r), "posting_id", r->posting_id, "erp_document", O(r->document),
        "netted_with", (json_int_t)r->netted, "netted_movements", O(r->netted_ids), "erp_check",
        r->erp_check, "apply_action", r->action, "detail", O(r->detail));
#undef S
#undef O
    if (m)
        invsync__v1__movement__free_unpacked(m, NULL);
    return o;
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_row(FILE *f, const row_t *r, int csv) {
    json_t *o = row_json(r);
    if (!o)
        return;
    if (!csv) {
        char *s = json_dumps(o, JSON_COMPACT);
        if (s)
            fprintf(f, "%s\n", s);
        free(s);
    } else {
        for (size_t k = 0; k < N_COLUMNS; k++) {
            json_t *v = json_object_get(o, columns[k]);
            char num[32];
            if (json_is_integer(v))
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            csv_field(f, json_is_integer(v)     ? num
                         : json_string_value(v) ? json_string_value(v)
                                                : "");
            fputc(k + 1 < N_COLUMNS ? ',' : '\n', f);
        }
    }
    json_decref(o);
}

/* ---- --check-erp and --apply ---------------------------------------------------- */

typedef struct apply_counts {
    size_t postings_checked, postings_missing, posted_confirmed, posted_missing;
    size_t newly_queued, requeued, requeued_outside, already_known, not_valid, not_owned;
} apply_counts_t;

static int cmp_posting(const void *pa, const void *pb) {
    return strcmp((*(row_t *const *)pa)->posting_id, (*(row_t *const *)pb)->posting_id);
}

/* Ask the ERP once per distinct posting of the posted rows; mark every row's erp_check. */
static is_err_t check_erp(const consumer_config_t *cfg, row_t *rows, size_t n, apply_counts_t *c,
                          char *errstr, size_t errstr_size) {
    erp_t *erp = NULL;
    row_t **posted = malloc((n ? n : 1) * sizeof(*posted));
    size_t m = 0;
    is_err_t rc = posted ? erp_open(&cfg->erp, &erp, errstr, errstr_size) : IS_ERR_NOMEM;
    for (size_t i = 0; rc == IS_OK && i < n; i++)
        if (rows[i].in_store && strcmp(rows[i].state, "posted") == 0)
            posted[m++] = &rows[i];
    if (rc == IS_OK)
        qsort(posted, m, sizeof(*posted), cmp_posting);
    for (size_t i = 0, j; rc == IS_OK && i < m; i = j) {
        erp_result_t res;
        is_err_t lk = erp_lookup_reference(erp, posted[i]->posting_id, &res);
        if (lk != IS_OK && lk != IS_ERR_NOT_FOUND) {
            is_errf(errstr, errstr_size, "the ERP (%s) cannot say whether posting %s exists: %s",
                    erp_name(erp), posted[i]->posting_id,
                    res.message[0] ? res.message : is_err_str(lk));
            rc = lk;
            break;
        }
        c->postings_checked++;
        c->postings_missing += lk == IS_ERR_NOT_FOUND;
        posted[i]->requeue = lk == IS_ERR_NOT_FOUND;
        for (j = i; j < m && cmp_posting(&posted[i], &posted[j]) == 0; j++) {
            snprintf(posted[j]->erp_check, sizeof(posted[j]->erp_check), "%s",
                     lk == IS_OK ? "found" : "missing");
            c->posted_confirmed += lk == IS_OK;
            c->posted_missing += lk != IS_OK;
        }
    }
    if (rc == IS_ERR_NOMEM)
        is_errf(errstr, errstr_size, "out of memory");
    free(posted);
    erp_close(erp);
    return rc;
}

/* The consume loop's rules (consume.c classify): would it have queued this movement? */
static int acceptable(const consumer_config_t *cfg, const row_t *r, const is_movement_t *m) {
    is_field_error_t ferr[1];
    is_validate_opts_t opts = {.max_scale = IS_DECIMAL_MAX_SCALE, .refused_sources = NULL};
    if (cfg->erp_sources.n > 0 && is_strlist_contains(&cfg->erp_sources, m->source_system))
        return 0;
    return is_movement_validate(m, &opts, ferr, 1) == 0 && strcmp(m->site, r->site) == 0 &&
           m->producer_id[0] && m->sequence > 0;
}

/* Run one statement of text/int64 arguments ("t"/"i" in types); *changes = rows changed. */
static int exec(sqlite3 *db, const char *sql, const char *types, const void *const *args,
                int *changes) {
    sqlite3_stmt *st = NULL;
    int ok;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(st, i + 1, *(const int64_t *)args[i]);
    }
    ok = sqlite3_step(st) == SQLITE_DONE;
    if (changes)
        *changes = sqlite3_changes(db);
    sqlite3_finalize(st);
    return ok;
}

/* Advance (producer, site)'s watermark over contiguous sequences (as store.c does). */
static int advance_watermark(sqlite3 *db, const char *producer, const char *site) {
    sqlite3_stmt *st = NULL;
    int64_t wm = 0;
    if (sqlite3_prepare_v2(
            db,
            "SELECT coalesce((SELECT contiguous FROM watermarks WHERE producer_id = ?1"
            " AND site = ?2), 0)",
            -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, producer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, site, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW)
        wm = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db,
                           "SELECT seq FROM movements WHERE producer_id = ?1 AND site = ?2"
                           " AND seq > ?3 ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, producer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, wm);
    while (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == wm + 1)
        wm++;
    sqlite3_finalize(st);
    const void *args[] = {producer, site, &wm};
    return exec(db,
                "INSERT INTO watermarks(producer_id, site, contiguous) VALUES(?1, ?2, ?3)"
                " ON CONFLICT(producer_id, site) DO UPDATE SET contiguous = max(contiguous, ?3)",
                "tti", args, NULL);
}

static int insert_movement(sqlite3 *db, const row_t *r, const is_movement_t *m, int64_t now,
                           int *inserted) {
    static const char *const sql =
        "INSERT OR IGNORE INTO movements(source_system, movement_id, producer_id, site, seq,"
        " lot_key, tier, type, topic, part, off, received_at, accepted_at, due_at, state,"
        " policy_version, payload, note)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?12,'queued',?14,?15,"
        " 'queued by replay-apply')";
    char lot_key[IS_LOT_KEY_MAX];
    sqlite3_stmt *st = NULL;
    int ok;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (is_movement_lot_key(m, lot_key, sizeof(lot_key)) < 0)
        lot_key[0] = '\0';
    sqlite3_bind_text(st, 1, m->source_system, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, m->movement_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, m->producer_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, m->site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, (int64_t)m->sequence);
    sqlite3_bind_text(st, 6, lot_key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, m->tier, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 8, (int)m->type);
    sqlite3_bind_text(st, 9, r->topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 10, r->partition);
    sqlite3_bind_int64(st, 11, r->offset);
    sqlite3_bind_int64(st, 12, now);
    sqlite3_bind_int64(st, 13, m->accepted_time);
    sqlite3_bind_text(st, 14, m->policy_version, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 15, r->payload, (int)r->payload_len, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_DONE;
    *inserted = ok && sqlite3_changes(db) > 0;
    sqlite3_finalize(st);
    return ok;
}

/* Back to queued, due now: the ERP lost this posting's document. *n = movements moved. */
static int requeue_posting(sqlite3 *db, const char *posting_id, int64_t now, int *n) {
    const void *args[] = {posting_id, &now};
    return exec(db,
                "UPDATE movements SET state = 'queued', posting_id = NULL, due_at = ?2,"
                " note = 're-queued by replay-apply: the ERP does not have posting ' || ?1"
                " WHERE posting_id = ?1 AND state = 'posted'",
                "ti", args, n) &&
           exec(db, "DELETE FROM postings WHERE posting_id = ?1", "t", args, NULL);
}

typedef struct apply_req {
    const char *by, *reason, *from, *to;
    const replay_filter_t *filter;
} apply_req_t;

static json_t *opt_str(const char *s) {
    return s ? json_string(s) : json_null();
}

/* Each row's part of --apply (see the top of this file). */
static int apply_row(sqlite3 *db, const consumer_config_t *cfg, const regex_t *sites, row_t *r,
                     int64_t now, apply_counts_t *c) {
    is_movement_t *m;
    int inserted = 0, ok = 1, moved = 0;
    if (!r->decodable)
        return 1;
    if (r->in_store) {
        if (strcmp(r->erp_check, "missing") != 0) {
            c->already_known++;
            return 1;
        }
        snprintf(r->action, sizeof(r->action), "re-queued");
        if (r->requeue && !requeue_posting(db, r->posting_id, now, &moved))
            return 0;
        c->requeued += (size_t)moved;
        return 1;
    }
    if (regexec(sites, r->site, 0, NULL, 0) != 0) {
        c->not_owned++;
        return 1;
    }
    m = decode(r);
    if (!m)
        return 0;
    if (!acceptable(cfg, r, m)) {
        c->not_valid++;
    } else {
        ok = insert_movement(db, r, m, now, &inserted);
        if (ok && !inserted) {
            c->already_known++; /* the consume loop got it meanwhile */
        } else if (ok) {
            ok = advance_watermark(db, m->producer_id, m->site);
            snprintf(r->action, sizeof(r->action), "queued");
            c->newly_queued++;
        }
    }
    invsync__v1__movement__free_unpacked(m, NULL);
    return ok;
}

static is_err_t apply(const consumer_config_t *cfg, store_t *s, row_t *rows, size_t n,
                      const apply_req_t *req, apply_counts_t *c, char *errstr, size_t errstr_size) {
    sqlite3 *db = store_db(s);
    int64_t now = is_clock_now_ms(NULL);
    size_t in_selection = 0;
    regex_t re;
    char *pattern = NULL, subject[128];
    is_err_t rc = IS_OK;

    if (asprintf(&pattern, "^(%s)$", cfg->sites_regex) < 0)
        return IS_ERR_NOMEM;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
        is_errf(errstr, errstr_size, "sites_regex '%s' is not a valid regular expression",
                cfg->sites_regex);
        free(pattern);
        return IS_ERR_CONFIG;
    }
    free(pattern);
    /* Policy versions first (their own transactions; audited the first time one is
     * seen), as the consume loop notes them: once per change of version. */
    char last_version[128] = "";
    for (size_t i = 0; i < n; i++) {
        is_movement_t *m = rows[i].in_store ? NULL : decode(&rows[i]);
        if (m && m->policy_version[0] && strcmp(m->policy_version, last_version) != 0) {
            if (store_note_policy_version(s, m->policy_version, m->movement_id, now, errstr,
                                          errstr_size) != IS_OK)
                is_log(IS_LOG_WARN, "replay: cannot note the policy version", "error", errstr,
                       NULL);
            snprintf(last_version, sizeof(last_version), "%s", m->policy_version);
        }
        if (m)
            invsync__v1__movement__free_unpacked(m, NULL);
    }
    if (is_db_begin(db) != IS_OK) {
        regfree(&re);
        return is_db_error(db, "cannot begin the replay-apply transaction", errstr, errstr_size);
    }
    for (size_t i = 0; i < n; i++)
        if (!apply_row(db, cfg, &re, &rows[i], now, c))
            goto db_err;
    for (size_t i = 0; i < n; i++)
        in_selection += strcmp(rows[i].action, "re-queued") == 0;
    c->requeued_outside = c->requeued > in_selection ? c->requeued - in_selection : 0;
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "reason",
                  req->reason, "from", req->from, "to", req->to, "site", opt_str(req->filter->site),
                  "tier", opt_str(req->filter->tier), "material", opt_str(req->filter->material),
                  "lot", opt_str(req->filter->lot), "order", opt_str(req->filter->order_id),
                  "newly_queued", (json_int_t)c->newly_queued, "requeued_movements",
                  (json_int_t)c->requeued, "requeued_postings", (json_int_t)c->postings_missing,
                  "already_known", (json_int_t)c->already_known, "not_valid",
                  (json_int_t)c->not_valid, "not_owned", (json_int_t)c->not_owned);
    char *txt = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(d);
    snprintf(subject, sizeof(subject), "%s..%s", req->from, req->to);
    rc = store_audit(s, now, req->by, "replay-apply", subject, txt, errstr, errstr_size);
    free(txt);
    if (rc != IS_OK)
        goto rollback;
    if (is_db_commit(db) != IS_OK)
        goto db_err;
    regfree(&re);
    return IS_OK;
db_err:
    rc = is_db_error(db, "replay-apply failed, nothing was changed", errstr, errstr_size);
rollback:
    is_db_rollback(db);
    regfree(&re);
    memset(c, 0, sizeof(*c));
    return rc;
}

/* ---- the command --------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: erp-consumer replay --config FILE --from RFC3339 --to RFC3339\n"
            "           [--site S] [--tier T] [--material M] [--lot L] [--order O] [--type TYPE]\n"
            "           [--format jsonl|csv] [--summary FILE.json] [--check-erp]\n"
            "           [--apply --by WHO --reason WHY]\n"
            "  Times in UTC (2026-11-29T06:00:00Z) or with an offset (+01:00).\n"
            "  --check-erp asks the ERP whether each posted movement's posting exists;\n"
            "  --apply (implies it) queues what the store lacks and re-queues postings the\n"
            "  ERP lost, through the consumer's dedup store (nothing is posted twice).\n"
            "  Exit: 0 ok, 2 bad arguments/range/site, 3 the range reaches before what\n"
            "  Kafka keeps (retention), 1 Kafka, store or ERP failure.\n");
}

/* The run in numbers: printed on stderr, and written as JSON with --summary. */
static json_t *summary_json(const timeline_t *t, const replay_info_t *info, const apply_counts_t *c,
                            int checked, int applied) {
    size_t posted = 0, pending = 0, failed = 0, other = 0, missing = 0;
    json_t *d;
    for (size_t i = 0; i < t->n; i++) {
        const row_t *r = &t->rows[i];
        if (!r->decodable)
            continue;
        if (!r->in_store)
            missing++;
        else if (strcmp(r->state, "posted") == 0)
            posted++;
        else if (!strcmp(r->state, "queued") || !strcmp(r->state, "posting") ||
                 !strcmp(r->state, "retry"))
            pending++;
        else if (strcmp(r->state, "failed") == 0)
            failed++;
        else
            other++;
    }
    d = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "topics",
                  (json_int_t)info->topics, "partitions", (json_int_t)info->partitions, "read",
                  (json_int_t)t->read, "movements", (json_int_t)t->movements, "heartbeats",
                  (json_int_t)t->heartbeats, "undecodable", (json_int_t)t->undecodable, "matched",
                  (json_int_t)t->n, "already_posted", (json_int_t)posted, "pending",
                  (json_int_t)pending, "failed", (json_int_t)failed, "dead_cancelled_skipped",
                  (json_int_t)other, "not_in_store", (json_int_t)missing, "retention_gap",
                  info->retention_gap);
    if (!d)
        return NULL;
    if (checked) {
        json_object_set_new(d, "postings_checked", json_integer((json_int_t)c->postings_checked));
        json_object_set_new(d, "postings_missing_in_erp",
                            json_integer((json_int_t)c->postings_missing));
        json_object_set_new(d, "posted_confirmed", json_integer((json_int_t)c->posted_confirmed));
        json_object_set_new(d, "posted_missing_in_erp",
                            json_integer((json_int_t)c->posted_missing));
    }
    if (applied) {
        json_object_set_new(d, "newly_queued", json_integer((json_int_t)c->newly_queued));
        json_object_set_new(d, "requeued", json_integer((json_int_t)c->requeued));
        json_object_set_new(d, "requeued_outside_selection",
                            json_integer((json_int_t)c->requeued_outside));
        json_object_set_new(d, "already_known", json_integer((json_int_t)c->already_known));
        json_object_set_new(d, "not_valid", json_integer((json_int_t)c->not_valid));
        json_object_set_new(d, "not_owned", json_integer((json_int_t)c->not_owned));
    }
    if (info->retention_gap && info->retention_earliest_ms > 0) {
        char ts[IS_RFC3339_LEN];
        is_format_rfc3339(info->retention_earliest_ms, ts);
        json_object_set_new(d, "earliest_available", json_string(ts));
    }
    return d;
}

static json_int_t num(const json_t *d, const char *k) {
    return json_integer_value(json_object_get(d, k));
}

static void print_summary(FILE *f, const json_t *d) {
    fprintf(f,
            "replay: read %" JSON_INTEGER_FORMAT " message(s) from %" JSON_INTEGER_FORMAT
            " topic(s): %" JSON_INTEGER_FORMAT " movement(s), %" JSON_INTEGER_FORMAT
            " heartbeat(s), %" JSON_INTEGER_FORMAT " undecodable; %" JSON_INTEGER_FORMAT
            " matched the filters\n"
            "replay: %" JSON_INTEGER_FORMAT " already posted, %" JSON_INTEGER_FORMAT
            " pending, %" JSON_INTEGER_FORMAT " failed, %" JSON_INTEGER_FORMAT
            " dead-lettered/cancelled/skipped, %" JSON_INTEGER_FORMAT " not in the store\n",
            num(d, "read"), num(d, "topics"), num(d, "movements"), num(d, "heartbeats"),
            num(d, "undecodable"), num(d, "matched"), num(d, "already_posted"), num(d, "pending"),
            num(d, "failed"), num(d, "dead_cancelled_skipped"), num(d, "not_in_store"));
    if (json_object_get(d, "postings_checked"))
        fprintf(f,
                "replay: ERP check: %" JSON_INTEGER_FORMAT
                " posting(s) asked, %" JSON_INTEGER_FORMAT
                " missing in the ERP (%" JSON_INTEGER_FORMAT " posted movement(s))\n",
                num(d, "postings_checked"), num(d, "postings_missing_in_erp"),
                num(d, "posted_missing_in_erp"));
    if (json_object_get(d, "newly_queued"))
        fprintf(f,
                "replay: apply: %" JSON_INTEGER_FORMAT " newly queued, %" JSON_INTEGER_FORMAT
                " re-queued (%" JSON_INTEGER_FORMAT " outside the selection), %" JSON_INTEGER_FORMAT
                " already known and skipped, %" JSON_INTEGER_FORMAT
                " not valid, %" JSON_INTEGER_FORMAT " of sites this consumer does not own\n",
                num(d, "newly_queued"), num(d, "requeued"), num(d, "requeued_outside_selection"),
                num(d, "already_known"), num(d, "not_valid"), num(d, "not_owned"));
}

typedef struct replay_args {
    const char *config, *from, *to, *format, *by, *reason, *type, *summary;
    replay_filter_t filter;
    int apply, check;
    int64_t from_ms, to_ms;
} replay_args_t;

/* Parse and check the arguments; 0 = go on, else the exit status. */
static int parse_args(int argc, char **argv, replay_args_t *a) {
    enum {
        O_FROM = 256,
        O_TO,
        O_MATERIAL,
        O_LOT,
        O_ORDER,
        O_TYPE,
        O_FORMAT,
        O_APPLY,
        O_CHECK,
        O_SUMMARY
    };
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"from", required_argument, NULL, O_FROM},
                                         {"to", required_argument, NULL, O_TO},
                                         {"site", required_argument, NULL, 's'},
                                         {"tier", required_argument, NULL, 't'},
                                         {"material", required_argument, NULL, O_MATERIAL},
                                         {"lot", required_argument, NULL, O_LOT},
                                         {"order", required_argument, NULL, O_ORDER},
                                         {"type", required_argument, NULL, O_TYPE},
                                         {"format", required_argument, NULL, O_FORMAT},
                                         {"summary", required_argument, NULL, O_SUMMARY},
                                         {"check-erp", no_argument, NULL, O_CHECK},
                                         {"apply", no_argument, NULL, O_APPLY},
                                         {"by", required_argument, NULL, 'b'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    char errstr[512], up[64];
    int c;
    memset(a, 0, sizeof(*a));
    a->format = "jsonl";
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:t:b:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case O_FROM:
            a->from = optarg;
            break;
        case O_TO:
            a->to = optarg;
            break;
        case 's':
            a->filter.site = optarg;
            break;
        case 't':
            a->filter.tier = optarg;
            break;
        case O_MATERIAL:
            a->filter.material = optarg;
            break;
        case O_LOT:
            a->filter.lot = optarg;
            break;
        case O_ORDER:
            a->filter.order_id = optarg;
            break;
        case O_TYPE:
            a->type = optarg;
            break;
        case O_FORMAT:
            a->format = optarg;
            break;
        case O_SUMMARY:
            a->summary = optarg;
            break;
        case O_CHECK:
            a->check = 1;
            break;
        case O_APPLY:
            a->apply = a->check = 1;
            break;
        case 'b':
            a->by = optarg;
            break;
        case 'r':
            a->reason = optarg;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!a->from || !a->to || optind < argc) {
        fprintf(stderr, "erp-consumer replay: %s\n",
                optind < argc ? "unexpected argument" : "--from and --to are required");
        usage(stderr);
        return 2;
    }
    if (strcmp(a->format, "jsonl") != 0 && strcmp(a->format, "csv") != 0) {
        fprintf(stderr, "erp-consumer replay: --format '%s' is not jsonl or csv\n", a->format);
        return 2;
    }
    if (a->apply && (!a->by || !*a->by || !a->reason || !*a->reason)) {
        fprintf(stderr, "erp-consumer replay: --apply needs --by WHO and --reason WHY (audited)\n");
        return 2;
    }
    int bad_from = is_parse_rfc3339(a->from, &a->from_ms) != IS_OK;
    if (bad_from || is_parse_rfc3339(a->to, &a->to_ms) != IS_OK) {
        fprintf(stderr,
                "erp-consumer replay: --%s '%s' is not an RFC 3339 time (e.g. "
                "2026-11-29T06:00:00Z or 2026-11-29T07:00:00+01:00)\n",
                bad_from ? "from" : "to", bad_from ? a->from : a->to);
        return 2;
    }
    if (a->type) {
        size_t i;
        for (i = 0; a->type[i] && i < sizeof(up) - 1; i++)
            up[i] = (char)(a->type[i] >= 'a' && a->type[i] <= 'z' ? a->type[i] - 32 : a->type[i]);
        up[i] = '\0';
        a->filter.type = is_movement_type_parse(up);
        if (a->filter.type == 0) {
            fprintf(stderr,
                    "erp-consumer replay: --type '%s' is not a movement type (GOODS_ISSUE, "
                    "COMPLETION, SCRAP, QUARANTINE, RELEASE, TRANSFER, ADJUSTMENT, REVERSAL)\n",
                    a->type);
            return 2;
        }
    }
    if (replay_check_range(a->from_ms, a->to_ms, is_clock_now_ms(NULL), errstr, sizeof(errstr)) !=
        IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s\n", errstr);
        return 2;
    }
    return 0;
}

static const char *const lookup_sql =
    "SELECT m.state, m.posting_id, p.erp_doc, coalesce(p.last_error, m.reason, m.note),"
    " (SELECT count(*) FROM movements x WHERE x.posting_id = m.posting_id AND x.id != m.id),"
    " (SELECT group_concat(movement_id, ' ') FROM (SELECT x.movement_id FROM movements x"
    "   WHERE x.posting_id = m.posting_id AND x.id != m.id ORDER BY x.seq LIMIT 10))"
    " FROM movements m LEFT JOIN postings p ON p.posting_id = m.posting_id"
    " WHERE m.source_system = ?1 AND m.movement_id = ?2";

int replay_cli(int argc, char **argv) {
    replay_args_t a;
    char errstr[1024];
    consumer_config_t cfg;
    is_policy_t *policy = NULL;
    store_t *store = NULL;
    timeline_t t = {0};
    replay_info_t info = {0};
    apply_counts_t counts = {0};
    is_log_level_t level = IS_LOG_INFO;
    json_t *summary = NULL;
    is_err_t rc;
    int status = parse_args(argc, argv, &a);

    if (status != 0)
        return status < 0 ? 0 : status;
    status = 2;
    t.filter = &a.filter;
    if (consumer_config_load(&cfg, a.config, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s\n", errstr);
        consumer_config_release(&cfg);
        return 2;
    }
    if (is_log_level_parse(cfg.log_level, &level) == IS_OK)
        is_log_init("erp-consumer", level);
    if (is_policy_load(cfg.policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s\n", errstr);
        goto out;
    }
    status = 1;
    if (store_open(cfg.store_path,
                   strcmp(cfg.store_sync, "normal") == 0 ? IS_DB_SYNC_NORMAL : IS_DB_SYNC_FULL,
                   &store, errstr, sizeof(errstr)) != IS_OK ||
        is_db_prepare(store_db(store), lookup_sql, &t.lookup, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: cannot read the store '%s': %s\n", cfg.store_path,
                errstr);
        goto out;
    }
    rc = replay_read(&cfg, is_policy_topic_prefix(policy), a.from_ms, a.to_ms, &a.filter, collect,
                     &t, &info, errstr, sizeof(errstr));
    if (rc != IS_OK || t.failed_lookups) {
        fprintf(stderr, "erp-consumer replay: %s\n",
                t.nomem            ? "out of memory"
                : t.failed_lookups ? "a store look-up failed (see the log)"
                                   : errstr);
        status = rc == IS_ERR_INVALID || rc == IS_ERR_NOT_FOUND ? 2 : 1;
        goto out;
    }
    if (a.check && check_erp(&cfg, t.rows, t.n, &counts, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s%s\n", errstr,
                a.apply ? " (nothing was applied)" : "");
        goto out;
    }
    if (a.apply) {
        apply_req_t req = {
            .by = a.by, .reason = a.reason, .from = a.from, .to = a.to, .filter = &a.filter};
        if (apply(&cfg, store, t.rows, t.n, &req, &counts, errstr, sizeof(errstr)) != IS_OK) {
            fprintf(stderr, "erp-consumer replay: %s\n", errstr);
            goto out;
        }
    }
    if (t.n > 0)
        qsort(t.rows, t.n, sizeof(*t.rows), cmp_rows);
    for (size_t k = 0; strcmp(a.format, "csv") == 0 && k < N_COLUMNS; k++)
        fprintf(stdout, "%s%c", columns[k], k + 1 < N_COLUMNS ? ',' : '\n');
    for (size_t i = 0; i < t.n; i++)
        write_row(stdout, &t.rows[i], strcmp(a.format, "csv") == 0);
    fflush(stdout);
    summary = summary_json(&t, &info, &counts, a.check, a.apply);
    if (summary) {
        print_summary(stderr, summary);
        if (a.summary && json_dump_file(summary, a.summary, JSON_INDENT(2)) != 0)
            fprintf(stderr, "erp-consumer replay: cannot write the summary to '%s'\n", a.summary);
    }
    status = 0;
    if (info.retention_gap) {
        char ts[IS_RFC3339_LEN];
        is_format_rfc3339(info.retention_earliest_ms, ts);
        if (info.retention_earliest_ms > 0)
            fprintf(stderr,
                    "erp-consumer replay: data before %s is no longer in Kafka (retention): the "
                    "range starts at %s; what is still there was replayed\n",
                    ts, a.from);
        else
            fprintf(stderr, "erp-consumer replay: some partitions no longer hold any data "
                            "(retention deleted all of it); what is still there was replayed\n");
        status = 3;
    }
out:
    for (size_t i = 0; i < t.n; i++)
        row_release(&t.rows[i]);
    free(t.rows);
    json_decref(summary);
    sqlite3_finalize(t.lookup);
    store_close(store);
    is_policy_destroy(policy);
    consumer_config_release(&cfg);
    return status;
}
