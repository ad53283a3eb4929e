/*
 * replay.c — read the tier topics by time range (replay.h): the topic and
 * partition selection, offsets by time, the retention check and the
 * reading loop. What is made of the messages lives elsewhere: the timeline
 * in replay_timeline.c, --check-erp and --apply in replay_apply.c, the
 * command in replay_cli.c.
 *
 * Load: one throwaway consumer per call; every selected partition is read
 * once, from its offset at `from` to `to` or its high watermark.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "duration.h"
#include "log.h"
#include "policy.h"
#include "replay.h"
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

void replay_empty_hint(const replay_info_t *info, const char *prefix, const replay_filter_t *f,
                       int64_t from_ms, int64_t to_ms, size_t read, size_t movements, char *buf,
                       size_t size) {
    char a[IS_RFC3339_LEN], b[IS_RFC3339_LEN], next[IS_RFC3339_LEN], topics[IS_TOPIC_MAX + 40];
    is_format_rfc3339(from_ms, a);
    is_format_rfc3339(to_ms, b);
    snprintf(topics, sizeof(topics), "%zu topic(s) %s.%s.%s", info->topics, prefix,
             f && f->site ? f->site : "<site>", f && f->tier ? f->tier : "<tier>");
    if (movements > 0) {
        snprintf(buf, size,
                 "%zu movement(s) between %s and %s in %s, none matches the filters "
                 "(--material, --lot, --order, --type)",
                 movements, a, b, topics);
    } else if (read > 0) {
        snprintf(buf, size,
                 "no movements between %s and %s in %s: the %zu message(s) there are heartbeats "
                 "or undecodable",
                 a, b, topics, read);
    } else if (info->partitions_with_data == 0) {
        snprintf(buf, size, "no movements between %s and %s: the %s hold nothing%s", a, b, topics,
                 info->retention_gap ? " (retention deleted all they had)" : "");
    } else if (info->next_after_ms > 0) {
        is_format_rfc3339(info->next_after_ms, next);
        snprintf(buf, size,
                 "no movements between %s and %s in %s; the first message after %s is at %s", a, b,
                 topics, a, next);
    } else if (info->partitions_older == info->partitions_with_data) {
        snprintf(buf, size,
                 "no movements between %s and %s in %s; every message in these topics is older "
                 "than %s",
                 a, b, topics, a);
    } else {
        snprintf(buf, size, "no movements between %s and %s in %s", a, b, topics);
    }
}

void replay_retention_hint(const replay_info_t *info, char *buf, size_t size) {
    char ts[IS_RFC3339_LEN];
    if (info->retention_earliest_ms > 0) {
        is_format_rfc3339(info->retention_earliest_ms, ts);
        snprintf(buf, size, "data before %s is no longer in Kafka (retention)", ts);
    } else {
        snprintf(buf, size,
                 "some partitions no longer hold any data (retention deleted all of it)");
    }
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
        if (!skip && is_kafka_conf_set(conf, cfg->kafka.keys[i], cfg->kafka.vals[i], errstr,
                                       errstr_size) != IS_OK)
            goto err;
    }
    if (is_kafka_conf_set(conf, "group.id", group, errstr, errstr_size) != IS_OK ||
        is_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) != IS_OK ||
        is_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) !=
            IS_OK ||
        is_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size) != IS_OK ||
        is_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) != IS_OK)
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
    char sites[512] = "", tiers[512] = ""; /* for the messages when nothing is selected */
    size_t n = 0, cap = 0, sites_len = 0, tiers_len = 0;
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
        /* The tiers of the --site asked for (of every site without one). */
        if ((!f->site || strcmp(f->site, site) == 0) && !listed(tiers, tier) &&
            tiers_len + strlen(tier) + 3 < sizeof(tiers))
            tiers_len += (size_t)snprintf(tiers + tiers_len, sizeof(tiers) - tiers_len, "%s%s",
                                          tiers_len ? ", " : "", tier);
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
            is_errf(errstr, errstr_size,
                    "site '%s' has no topic %s.%s.%s; its tiers with topics: %s", f->site, prefix,
                    f->site, f->tier, tiers);
        else if (f->site)
            is_errf(errstr, errstr_size,
                    "no topics for site '%s' (%s.%s.<tier>); sites with topics: %s", f->site,
                    prefix, f->site, sites[0] ? sites : "none");
        else
            is_errf(errstr, errstr_size, "no topics %s.<site>.%s in Kafka; tiers with topics: %s",
                    prefix, f->tier ? f->tier : "<tier>", tiers[0] ? tiers : "none");
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
        if (ts > to_ms || ts < from_ms) {
            if (ts > to_ms && (info->next_after_ms == 0 || ts < info->next_after_ms))
                info->next_after_ms = ts; /* for the hint when nothing is in range */
            /* Not the end of the range: a partition is not in timestamp
             * order. A movement published again (mes-producer republish)
             * keeps its accepted time and lands at the end of the log, past
             * later ones, so the read goes on to the end the partition had
             * when the replay began (p->high). */
            info->outside_range++;
            if (msg->offset >= p->high - 1)
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
        info->partitions_with_data += p->high > p->low;
        /* No offset at `from` in a partition with data: all of it is older
         * (a cluster that cannot look up by time is refused below). */
        info->partitions_older += p->start < 0 && p->high > p->low;
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
