/*
 * bench-kit.c — the benchmark's minimal programs (docs/PERFORMANCE.md):
 * what invsync's numbers are compared against, and the fast way to fill a
 * topic for the consumer benchmark.
 *
 *   bench-kit fill    --bootstrap B --policy P --in F.jsonl [--max N] [--tier T]
 *                     [--producer-id ID] [--seq-state FILE] [--kafka KEY=VAL]... [--json OUT]
 *   bench-kit consume --bootstrap B --topic T [--topic T]... --expect N [--timeout 120s]
 *                     [--kafka KEY=VAL]... [--json OUT]
 *   bench-kit sqlite  --shape outbox|store --db F --policy P --in F.jsonl [--max N]
 *                     [--batch 1000] [--json OUT]
 *
 * Every command first turns the simulator's JSON lines (mes-sim gen) into
 * stamped movements exactly as mes-producer stores them — classified by the
 * policy (or forced into --tier), stamped with producer_id, a gap-free
 * sequence per site starting at 1 (or after --seq-state), accepted_time =
 * now, tier and policy_version, packed once — and only then starts the
 * clock, so each figure is the cost of the one thing measured:
 *
 *   fill     the Kafka producer ceiling: librdkafka's idempotent producer
 *            (acks=all) with the forwarder's topic, key, timestamp and
 *            headers, the payloads copied (RD_KAFKA_MSG_F_COPY, as the
 *            forwarder does), timed from the first produce to the end of
 *            the flush (every delivery report in). It also pre-fills the
 *            topics consumed by erp-consumer in the benchmark.
 *   consume  the Kafka consumer ceiling: assign every partition of the
 *            topics from the beginning (no group join), poll until --expect
 *            messages arrived, timed from the first to the last message.
 *   sqlite   the storage ceiling: the same rows (outbox: mes-producer's
 *            outbox table; store: erp-consumer's movements table, with their
 *            indexes) inserted by a plain loop of prepared INSERTs, --batch
 *            rows per BEGIN IMMEDIATE transaction, WAL and synchronous=FULL
 *            opened through common/db.c like the services — no lookups,
 *            sequences, dedup checks or JSON.
 *
 * Output: one JSON object (rate and context) on stdout, and in --json OUT.
 * Load: everything is held in memory (about 0.5 KiB per movement).
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <sqlite3.h>

#include "db.h"
#include "duration.h"
#include "hash.h"
#include "log.h"
#include "movement.h"
#include "movement_json.h"
#include "policy.h"
#include "store.h"
#include "topic.h"

#define BK_MAX_SITES  256
#define BK_MAX_KAFKA  32
#define BK_MAX_TOPICS 64

typedef struct bk_opts {
    const char *cmd;
    const char *bootstrap;
    const char *policy_path;
    const char *in_path;
    const char *json_out;
    const char *tier;        /* force every movement into this tier */
    const char *producer_id; /* default "bench-producer" */
    const char *seq_state;   /* JSON {site: last_seq}: read at start, written at the end */
    const char *shape;       /* sqlite: outbox | store */
    const char *db_path;
    const char *kafka_kv[BK_MAX_KAFKA];
    size_t n_kafka;
    const char *topics[BK_MAX_TOPICS];
    size_t n_topics;
    int64_t max;
    int64_t expect;
    int64_t batch;
    int64_t timeout_ms;
} bk_opts_t;

/* One stamped movement; the strings live in the arena at the given offsets. */
typedef struct bk_rec {
    size_t topic, key, payload, movement_id, site, source, tier; /* arena offsets */
    uint32_t payload_len;
    uint64_t seq;
    int64_t accepted;
    uint8_t fp[IS_SHA256_LEN];
} bk_rec_t;

typedef struct bk_data {
    char *arena;
    size_t len, cap;
    bk_rec_t *recs;
    size_t n, recs_cap;
    char sites[BK_MAX_SITES][72];
    uint64_t last_seq[BK_MAX_SITES];
    size_t n_sites;
    size_t payload_bytes;
    const char *policy_version;
} bk_data_t;

static double bk_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bk_usage(FILE *f) {
    fputs(
        "usage: bench-kit fill --bootstrap B --policy P --in F.jsonl [--max N] [--tier T]\n"
        "                      [--producer-id ID] [--seq-state FILE] [--kafka K=V]... [--json F]\n"
        "       bench-kit consume --bootstrap B --topic T [--topic T]... --expect N\n"
        "                      [--timeout 120s] [--kafka K=V]... [--json F]\n"
        "       bench-kit sqlite --shape outbox|store --db F --policy P --in F.jsonl [--max N]\n"
        "                      [--batch 1000] [--json F]\n",
        f);
}

/* ---- the arena ------------------------------------------------------------ */

/* Append len bytes plus a NUL; returns the offset or SIZE_MAX on ENOMEM. */
static size_t bk_put(bk_data_t *d, const void *p, size_t len) {
    size_t off = d->len;
    if (d->len + len + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : (size_t)1 << 20;
        while (cap < d->len + len + 1)
            cap *= 2;
        char *na = realloc(d->arena, cap);
        if (!na)
            return SIZE_MAX;
        d->arena = na;
        d->cap = cap;
    }
    memcpy(d->arena + d->len, p, len);
    d->arena[d->len + len] = '\0';
    d->len += len + 1;
    return off;
}

static size_t bk_puts(bk_data_t *d, const char *s) {
    return bk_put(d, s ? s : "", s ? strlen(s) : 0);
}

static const char *bk_str(const bk_data_t *d, size_t off) {
    return d->arena + off;
}

static int bk_site_index(bk_data_t *d, const char *site) {
    for (size_t i = 0; i < d->n_sites; i++)
        if (strcmp(d->sites[i], site) == 0)
            return (int)i;
    if (d->n_sites == BK_MAX_SITES)
        return -1;
    snprintf(d->sites[d->n_sites], sizeof(d->sites[0]), "%s", site);
    d->last_seq[d->n_sites] = 0;
    return (int)d->n_sites++;
}

/* ---- sequence state ------------------------------------------------------- */

static int bk_seq_load(bk_data_t *d, const char *path) {
    json_error_t jerr;
    json_t *root, *v;
    const char *site;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1; /* no state yet: sequences start at 1 */
    root = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!json_is_object(root)) {
        fprintf(stderr, "bench-kit: %s: not a JSON object of site -> last sequence\n", path);
        json_decref(root);
        return -1;
    }
    json_object_foreach(root, site, v) {
        int i = bk_site_index(d, site);
        if (i < 0 || !json_is_integer(v)) {
            json_decref(root);
            return -1;
        }
        d->last_seq[i] = (uint64_t)json_integer_value(v);
    }
    json_decref(root);
    return 0;
}

static int bk_seq_save(const bk_data_t *d, const char *path) {
    json_t *root = json_object();
    for (size_t i = 0; root && i < d->n_sites; i++)
        json_object_set_new(root, d->sites[i], json_integer((json_int_t)d->last_seq[i]));
    int rc = root ? json_dump_file(root, path, JSON_INDENT(1)) : -1;
    json_decref(root);
    return rc;
}

/* ---- encoding ------------------------------------------------------------- */

/*
 * Read up to max JSON lines, stamp and pack them (see the header). With
 * want_fp the content fingerprint is computed too (the outbox row has it).
 * Returns 0, or -1 with a message on stderr.
 */
static int bk_encode(const bk_opts_t *o, const is_policy_t *policy, int want_fp, bk_data_t *d) {
    FILE *f = fopen(o->in_path, "r");
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    int64_t lineno = 0;
    const char *producer_id = o->producer_id ? o->producer_id : "bench-producer";
    int rc = -1;

    if (!f) {
        fprintf(stderr, "bench-kit: cannot open '%s': %s\n", o->in_path, strerror(errno));
        return -1;
    }
    d->policy_version = is_policy_version(policy);
    while ((o->max <= 0 || (int64_t)d->n < o->max) && (n = getline(&line, &line_cap, f)) > 0) {
        json_error_t jerr;
        is_field_error_t ferr;
        is_movement_t *m = NULL;
        char topic[IS_TOPIC_MAX + 1], key[IS_LOT_KEY_MAX];
        const char *tier;
        json_t *obj;
        bk_rec_t *r;
        int si;

        lineno++;
        if (n <= 1)
            continue;
        obj = json_loadb(line, (size_t)n, 0, &jerr);
        if (!obj) {
            fprintf(stderr, "bench-kit: %s:%lld: %s\n", o->in_path, (long long)lineno, jerr.text);
            goto out;
        }
        memset(&ferr, 0, sizeof(ferr));
        if (is_movement_from_json(obj, 6, &m, &ferr) != IS_OK) {
            fprintf(stderr, "bench-kit: %s:%lld: %s: %s\n", o->in_path, (long long)lineno,
                    ferr.field, ferr.error);
            json_decref(obj);
            goto out;
        }
        json_decref(obj);
        tier = o->tier ? o->tier : is_policy_classify(policy, m, NULL)->name;
        si = bk_site_index(d, m->site);
        if (si < 0 ||
            is_topic_name(topic, sizeof(topic), is_policy_topic_prefix(policy), m->site, tier) <
                0 ||
            is_movement_lot_key(m, key, sizeof(key)) < 0) {
            fprintf(stderr, "bench-kit: %s:%lld: bad site/tier/key\n", o->in_path,
                    (long long)lineno);
            invsync__v1__movement__free_unpacked(m, NULL);
            goto out;
        }
        if (d->n == d->recs_cap) {
            size_t cap = d->recs_cap ? d->recs_cap * 2 : 4096;
            bk_rec_t *nr = realloc(d->recs, cap * sizeof(*nr));
            if (!nr) {
                invsync__v1__movement__free_unpacked(m, NULL);
                goto nomem;
            }
            d->recs = nr;
            d->recs_cap = cap;
        }
        r = &d->recs[d->n];
        memset(r, 0, sizeof(*r));
        if (want_fp && is_movement_fingerprint(m, r->fp) != IS_OK) {
            invsync__v1__movement__free_unpacked(m, NULL);
            goto nomem;
        }
        /* Stamp as outbox.c does; the strings stay owned by their owners. */
        char *saved[3] = {m->producer_id, m->tier, m->policy_version};
        r->seq = ++d->last_seq[si];
        r->accepted = is_clock_now_ms(NULL);
        m->producer_id = (char *)producer_id;
        m->tier = (char *)tier;
        m->policy_version = (char *)d->policy_version;
        m->sequence = r->seq;
        m->accepted_time = r->accepted;
        size_t len = invsync__v1__movement__get_packed_size(m);
        if (len > buf_cap) {
            uint8_t *nb = realloc(buf, len * 2);
            if (!nb) {
                invsync__v1__movement__free_unpacked(m, NULL);
                goto nomem;
            }
            buf = nb;
            buf_cap = len * 2;
        }
        len = invsync__v1__movement__pack(m, buf);
        r->payload = bk_put(d, buf, len);
        r->payload_len = (uint32_t)len;
        r->topic = bk_puts(d, topic);
        r->key = bk_puts(d, key);
        r->movement_id = bk_puts(d, m->movement_id);
        r->site = bk_puts(d, m->site);
        r->source = bk_puts(d, m->source_system);
        r->tier = bk_puts(d, tier);
        m->producer_id = saved[0];
        m->tier = saved[1];
        m->policy_version = saved[2];
        invsync__v1__movement__free_unpacked(m, NULL);
        if (r->payload == SIZE_MAX || r->topic == SIZE_MAX || r->key == SIZE_MAX ||
            r->movement_id == SIZE_MAX || r->site == SIZE_MAX || r->source == SIZE_MAX ||
            r->tier == SIZE_MAX)
            goto nomem;
        d->payload_bytes += len;
        d->n++;
    }
    if (d->n == 0) {
        fprintf(stderr, "bench-kit: %s: no movements\n", o->in_path);
        goto out;
    }
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, "bench-kit: out of memory after %zu movements\n", d->n);
out:
    free(line);
    free(buf);
    fclose(f);
    return rc;
}

static void bk_data_release(bk_data_t *d) {
    free(d->arena);
    free(d->recs);
    memset(d, 0, sizeof(*d));
}

/* Print the result object and write it to --json. Takes the reference. */
static int bk_emit(const bk_opts_t *o, json_t *res) {
    int rc = 0;
    if (!res)
        return 1;
    json_dumpf(res, stdout, JSON_INDENT(1));
    fputc('\n', stdout);
    if (o->json_out && json_dump_file(res, o->json_out, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "bench-kit: cannot write '%s'\n", o->json_out);
        rc = 1;
    }
    json_decref(res);
    return rc;
}

/* ---- Kafka ---------------------------------------------------------------- */

static rd_kafka_conf_t *bk_kafka_conf(const bk_opts_t *o, const char *const defaults[][2],
                                      size_t n_defaults) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    for (size_t i = 0; i < n_defaults; i++)
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            goto bad;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK)
        goto bad;
    for (size_t i = 0; i < o->n_kafka; i++) {
        char k[256];
        const char *eq = strchr(o->kafka_kv[i], '=');
        if (!eq || (size_t)(eq - o->kafka_kv[i]) >= sizeof(k)) {
            snprintf(err, sizeof(err), "--kafka '%s': expected KEY=VALUE", o->kafka_kv[i]);
            goto bad;
        }
        snprintf(k, sizeof(k), "%.*s", (int)(eq - o->kafka_kv[i]), o->kafka_kv[i]);
        if (rd_kafka_conf_set(conf, k, eq + 1, err, sizeof(err)) != RD_KAFKA_CONF_OK)
            goto bad;
    }
    rd_kafka_conf_set_log_cb(conf, is_log_rdkafka_cb);
    return conf;
bad:
    fprintf(stderr, "bench-kit: kafka configuration: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

typedef struct bk_dr {
    int64_t delivered, failed;
    char first_error[256];
} bk_dr_t;

static void bk_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    bk_dr_t *dr = opaque;
    (void)rk;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        dr->delivered++;
    } else {
        if (dr->failed++ == 0)
            snprintf(dr->first_error, sizeof(dr->first_error), "%s", rd_kafka_err2str(msg->err));
    }
}

/*
 * After a fill: every partition of every topic written must still start at
 * offset 0. The mock cluster silently drops a partition's oldest message sets
 * beyond 5 MiB (librdkafka 2.0.2 rdkafka_mock.c, max_size); a consumer
 * benchmark over such a topic would wait for movements that are gone. Say so
 * now, naming the partition, instead of timing out later.
 */
static int bk_check_kept(rd_kafka_t *rk, const bk_data_t *d) {
    const char *seen[64];
    size_t n_seen = 0;
    int bad = 0;
    for (size_t i = 0; i < d->n; i++) {
        const char *topic = bk_str(d, d->recs[i].topic);
        size_t k = 0;
        while (k < n_seen && strcmp(seen[k], topic) != 0)
            k++;
        if (k < n_seen)
            continue;
        if (n_seen == sizeof(seen) / sizeof(seen[0]))
            break;
        seen[n_seen++] = topic;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
            fprintf(stderr, "bench-kit: no metadata for topic '%s' after the fill\n", topic);
            if (md)
                rd_kafka_metadata_destroy(md);
            return -1;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            int32_t id = md->topics[0].partitions[p].id;
            int64_t lo = 0, hi = 0;
            err = rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, 10000);
            if (err) {
                fprintf(stderr, "bench-kit: watermarks of %s [%d]: %s\n", topic, (int)id,
                        rd_kafka_err2str(err));
                bad = -1;
            } else if (lo > 0) {
                fprintf(stderr,
                        "bench-kit: the broker no longer holds the first %lld messages of %s "
                        "[%d] (offsets %lld..%lld kept): the mock cluster keeps at most 5 MiB per "
                        "partition; create the topic with more partitions\n",
                        (long long)lo, topic, (int)id, (long long)lo, (long long)hi);
                bad = -1;
            }
        }
        rd_kafka_metadata_destroy(md);
    }
    return bad;
}

static int bk_fill(const bk_opts_t *o) {
    static const char *const defaults[][2] = {{"enable.idempotence", "true"},
                                              {"acks", "all"},
                                              {"message.timeout.ms", "0"},
                                              {"client.id", "bench-kit-fill"}};
    char errstr[1024];
    is_policy_t *policy = NULL;
    bk_data_t d;
    bk_dr_t dr;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    double t_enc, t0, t1;
    int rc = 1;

    memset(&d, 0, sizeof(d));
    memset(&dr, 0, sizeof(dr));
    if (is_policy_load(o->policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "bench-kit: %s\n", errstr);
        return 2;
    }
    if (o->seq_state && bk_seq_load(&d, o->seq_state) != 0) {
        fprintf(stderr, "bench-kit: cannot read --seq-state '%s'\n", o->seq_state);
        goto out;
    }
    t_enc = bk_now_s();
    if (bk_encode(o, policy, 0, &d) != 0)
        goto out;
    t_enc = bk_now_s() - t_enc;
    conf = bk_kafka_conf(o, defaults, sizeof(defaults) / sizeof(defaults[0]));
    if (!conf)
        goto out;
    rd_kafka_conf_set_opaque(conf, &dr);
    rd_kafka_conf_set_dr_msg_cb(conf, bk_on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "bench-kit: cannot create the producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    t0 = bk_now_s();
    for (size_t i = 0; i < d.n; i++) {
        const bk_rec_t *r = &d.recs[i];
        const char *key = bk_str(&d, r->key);
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(bk_str(&d, r->topic)), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(d.arena + r->payload, r->payload_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(r->accepted),
                RD_KAFKA_V_HEADER("invsync-schema", "1", -1),
                RD_KAFKA_V_HEADER("content-type",
                                  "application/x-protobuf; type=invsync.v1.Movement", -1),
                RD_KAFKA_V_HEADER("movement-id", bk_str(&d, r->movement_id), -1),
                RD_KAFKA_V_HEADER("tier", bk_str(&d, r->tier), -1),
                RD_KAFKA_V_HEADER("policy-version", d.policy_version, -1), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "bench-kit: produce: %s\n", rd_kafka_err2str(err));
                goto out;
            }
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
    }
    while (rd_kafka_outq_len(rk) > 0 && dr.failed == 0)
        rd_kafka_poll(rk, 50);
    t1 = bk_now_s();
    if (dr.failed > 0 || dr.delivered != (int64_t)d.n) {
        fprintf(stderr, "bench-kit: %lld of %zu messages not delivered (%s)\n",
                (long long)(d.n - (size_t)dr.delivered), d.n, dr.first_error);
        goto out;
    }
    if (bk_check_kept(rk, &d) != 0)
        goto out;
    if (o->seq_state && bk_seq_save(&d, o->seq_state) != 0) {
        fprintf(stderr, "bench-kit: cannot write --seq-state '%s'\n", o->seq_state);
        goto out;
    }
    rc = bk_emit(o, json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:I}", "what",
                              "librdkafka idempotent producer, acks=all, forwarder headers",
                              "messages", (json_int_t)d.n, "elapsed_s", t1 - t0, "messages_per_s",
                              (double)d.n / (t1 - t0), "mib_per_s",
                              (double)d.payload_bytes / (t1 - t0) / 1048576.0, "avg_payload_bytes",
                              (double)d.payload_bytes / (double)d.n, "encode_s", t_enc, "sites",
                              (json_int_t)d.n_sites));
out:
    if (rk)
        rd_kafka_destroy(rk);
    bk_data_release(&d);
    is_policy_destroy(policy);
    return rc;
}

static int bk_consume(const bk_opts_t *o) {
    static const char *const defaults[][2] = {{"group.id", "bench-kit-consume"},
                                              {"enable.auto.commit", "false"},
                                              {"enable.partition.eof", "false"},
                                              {"client.id", "bench-kit-consume"}};
    char errstr[512];
    rd_kafka_conf_t *conf = bk_kafka_conf(o, defaults, sizeof(defaults) / sizeof(defaults[0]));
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t got = 0, bytes = 0;
    double t_first = 0, t_last = 0, deadline;
    int rc = 1;

    if (!conf)
        return 2;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "bench-kit: cannot create the consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    parts = rd_kafka_topic_partition_list_new(64);
    for (size_t t = 0; t < o->n_topics; t++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topics[t], NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
            fprintf(stderr, "bench-kit: no metadata for topic '%s': %s\n", o->topics[t],
                    rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md)
                rd_kafka_metadata_destroy(md);
            goto out;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(parts, o->topics[t], md->topics[0].partitions[p].id)
                ->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
    }
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench-kit: cannot assign the partitions\n");
        goto out;
    }
    deadline = bk_now_s() + (double)o->timeout_ms / 1000.0;
    while (got < o->expect && bk_now_s() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        if (!msg)
            continue;
        if (msg->err) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "bench-kit: consume: %s\n", rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            continue;
        }
        if (got == 0)
            t_first = bk_now_s();
        got++;
        bytes += (int64_t)msg->len;
        t_last = bk_now_s();
        rd_kafka_message_destroy(msg);
    }
    if (got < o->expect) {
        fprintf(stderr, "bench-kit: only %lld of %lld messages within the timeout\n",
                (long long)got, (long long)o->expect);
        goto out;
    }
    rc = bk_emit(
        o, json_pack("{s:s, s:I, s:I, s:f, s:f, s:f}", "what",
                     "librdkafka consumer, assign from the beginning, no decode", "messages",
                     (json_int_t)got, "partitions", (json_int_t)parts->cnt, "elapsed_s",
                     t_last - t_first, "messages_per_s",
                     (double)got / (t_last > t_first ? t_last - t_first : 1e-9), "mib_per_s",
                     (double)bytes / (t_last > t_first ? t_last - t_first : 1e-9) / 1048576.0));
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- SQLite --------------------------------------------------------------- */

/*
 * The outbox row shape, copied from mes-producer/outbox.c (its one
 * migration); if that changes, change this: the ceiling must insert what the
 * producer inserts. The store's rows go into a store made by store_open, so
 * that the ceiling has the consumer's own schema (every migration, every
 * index) whatever it becomes.
 */
static const char *const bk_outbox_ddl =
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL, site_seq INTEGER NOT NULL,"
    "  source_system TEXT NOT NULL, movement_id TEXT NOT NULL, fingerprint BLOB NOT NULL,"
    "  topic TEXT NOT NULL, msg_key TEXT NOT NULL, payload BLOB NOT NULL, tier TEXT NOT NULL,"
    "  policy_version TEXT NOT NULL, accepted_at INTEGER NOT NULL, sent_at INTEGER,"
    "  UNIQUE (source_system, movement_id), UNIQUE (site, site_seq));"
    "CREATE INDEX outbox_unsent ON outbox(id) WHERE sent_at IS NULL;";
static const char *const bk_outbox_insert =
    "INSERT INTO outbox(site, site_seq, source_system, movement_id, fingerprint, topic, msg_key,"
    " payload, tier, policy_version, accepted_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)";

/* The columns erp-consumer's store.c SQ_INSERT_MOVEMENT writes. */
static const char *const bk_store_insert =
    "INSERT OR IGNORE INTO movements(source_system, movement_id, producer_id, site, seq,"
    " lot_key, tier, type, topic, part, off, received_at, accepted_at, due_at, state,"
    " reason, policy_version, payload, period)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)";

static void bk_bind(sqlite3_stmt *st, int col, const char *s) {
    sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static int bk_sqlite(const bk_opts_t *o) {
    char errstr[1024];
    is_policy_t *policy = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bk_data_t d;
    int outbox = strcmp(o->shape, "outbox") == 0;
    store_t *store = NULL; /* shape store: the consumer's own store, db is its connection */
    is_err_t rc_open;
    int64_t batch = o->batch > 0 ? o->batch : (outbox ? 1000 : 2000);
    int64_t commits = 0;
    double t0, t1;
    int rc = 1;

    memset(&d, 0, sizeof(d));
    if (!outbox && strcmp(o->shape, "store") != 0) {
        fprintf(stderr, "bench-kit sqlite: --shape must be outbox or store\n");
        return 2;
    }
    if (is_policy_load(o->policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "bench-kit: %s\n", errstr);
        return 2;
    }
    if (bk_encode(o, policy, outbox, &d) != 0)
        goto out;
    if (outbox)
        rc_open =
            is_db_open(o->db_path, &bk_outbox_ddl, 1, IS_DB_SYNC_FULL, &db, errstr, sizeof(errstr));
    else if ((rc_open = store_open(o->db_path, IS_DB_SYNC_FULL, &store, errstr, sizeof(errstr))) ==
             IS_OK)
        db = store_db(store);
    if (rc_open != IS_OK || is_db_prepare(db, outbox ? bk_outbox_insert : bk_store_insert, &st,
                                          errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "bench-kit: %s\n", errstr);
        goto out;
    }
    t0 = bk_now_s();
    for (size_t i = 0; i < d.n; i += (size_t)batch) {
        size_t end = i + (size_t)batch < d.n ? i + (size_t)batch : d.n;
        if (is_db_begin(db) != IS_OK)
            goto db_err;
        for (size_t k = i; k < end; k++) {
            const bk_rec_t *r = &d.recs[k];
            if (outbox) {
                bk_bind(st, 1, bk_str(&d, r->site));
                sqlite3_bind_int64(st, 2, (sqlite3_int64)r->seq);
                bk_bind(st, 3, bk_str(&d, r->source));
                bk_bind(st, 4, bk_str(&d, r->movement_id));
                sqlite3_bind_blob(st, 5, r->fp, IS_SHA256_LEN, SQLITE_STATIC);
                bk_bind(st, 6, bk_str(&d, r->topic));
                bk_bind(st, 7, bk_str(&d, r->key));
                sqlite3_bind_blob(st, 8, d.arena + r->payload, (int)r->payload_len, SQLITE_STATIC);
                bk_bind(st, 9, bk_str(&d, r->tier));
                bk_bind(st, 10, d.policy_version);
                sqlite3_bind_int64(st, 11, r->accepted);
            } else {
                bk_bind(st, 1, bk_str(&d, r->source));
                bk_bind(st, 2, bk_str(&d, r->movement_id));
                bk_bind(st, 3, o->producer_id ? o->producer_id : "bench-producer");
                bk_bind(st, 4, bk_str(&d, r->site));
                sqlite3_bind_int64(st, 5, (sqlite3_int64)r->seq);
                bk_bind(st, 6, bk_str(&d, r->key));
                bk_bind(st, 7, bk_str(&d, r->tier));
                sqlite3_bind_int(st, 8, 1);
                bk_bind(st, 9, bk_str(&d, r->topic));
                sqlite3_bind_int(st, 10, (int)(k % 16));
                sqlite3_bind_int64(st, 11, (sqlite3_int64)k);
                sqlite3_bind_int64(st, 12, r->accepted);
                sqlite3_bind_int64(st, 13, r->accepted);
                sqlite3_bind_int64(st, 14, r->accepted + 1000);
                bk_bind(st, 15, "queued");
                sqlite3_bind_null(st, 16);
                bk_bind(st, 17, d.policy_version);
                sqlite3_bind_blob(st, 18, d.arena + r->payload, (int)r->payload_len, SQLITE_STATIC);
                sqlite3_bind_int64(st, 19, 1);
            }
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
            sqlite3_reset(st);
        }
        if (is_db_commit(db) != IS_OK)
            goto db_err;
        commits++;
    }
    t1 = bk_now_s();
    rc = bk_emit(o,
                 json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f}", "what",
                           "plain INSERT loop, WAL, synchronous=FULL", "shape", o->shape, "rows",
                           (json_int_t)d.n, "batch", (json_int_t)batch, "commits",
                           (json_int_t)commits, "elapsed_s", t1 - t0, "rows_per_s",
                           (double)d.n / (t1 - t0), "commits_per_s", (double)commits / (t1 - t0)));
    goto out;
db_err:
    fprintf(stderr, "bench-kit: sqlite: %s\n", sqlite3_errmsg(db));
out:
    sqlite3_finalize(st);
    if (store)
        store_close(store);
    else
        is_db_close(db);
    bk_data_release(&d);
    is_policy_destroy(policy);
    return rc;
}

/* ---- arguments ------------------------------------------------------------ */

static int bk_int(const char *name, const char *v, int64_t min, int64_t *out) {
    if (is_parse_int64(v, min, INT64_MAX, out) != IS_OK) {
        fprintf(stderr, "bench-kit: %s '%s': not an integer >= %lld\n", name, v, (long long)min);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    enum {
        O_BOOT = 1,
        O_POL,
        O_IN,
        O_JSON,
        O_TIER,
        O_PID,
        O_SEQ,
        O_SHAPE,
        O_DB,
        O_KAFKA,
        O_TOPIC,
        O_MAX,
        O_EXPECT,
        O_BATCH,
        O_TIMEOUT,
        O_HELP
    };
    static const struct option lo[] = {{"bootstrap", required_argument, NULL, O_BOOT},
                                       {"policy", required_argument, NULL, O_POL},
                                       {"in", required_argument, NULL, O_IN},
                                       {"json", required_argument, NULL, O_JSON},
                                       {"tier", required_argument, NULL, O_TIER},
                                       {"producer-id", required_argument, NULL, O_PID},
                                       {"seq-state", required_argument, NULL, O_SEQ},
                                       {"shape", required_argument, NULL, O_SHAPE},
                                       {"db", required_argument, NULL, O_DB},
                                       {"kafka", required_argument, NULL, O_KAFKA},
                                       {"topic", required_argument, NULL, O_TOPIC},
                                       {"max", required_argument, NULL, O_MAX},
                                       {"expect", required_argument, NULL, O_EXPECT},
                                       {"batch", required_argument, NULL, O_BATCH},
                                       {"timeout", required_argument, NULL, O_TIMEOUT},
                                       {"help", no_argument, NULL, O_HELP},
                                       {NULL, 0, NULL, 0}};
    bk_opts_t o;
    int c;

    memset(&o, 0, sizeof(o));
    o.timeout_ms = 120000;
    if (argc < 2 || argv[1][0] == '-') {
        bk_usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    o.cmd = argv[1];
    argc--;
    argv++;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_BOOT:
            o.bootstrap = optarg;
            break;
        case O_POL:
            o.policy_path = optarg;
            break;
        case O_IN:
            o.in_path = optarg;
            break;
        case O_JSON:
            o.json_out = optarg;
            break;
        case O_TIER:
            o.tier = optarg;
            break;
        case O_PID:
            o.producer_id = optarg;
            break;
        case O_SEQ:
            o.seq_state = optarg;
            break;
        case O_SHAPE:
            o.shape = optarg;
            break;
        case O_DB:
            o.db_path = optarg;
            break;
        case O_KAFKA:
            if (o.n_kafka == BK_MAX_KAFKA)
                return 2;
            o.kafka_kv[o.n_kafka++] = optarg;
            break;
        case O_TOPIC:
            if (o.n_topics == BK_MAX_TOPICS)
                return 2;
            o.topics[o.n_topics++] = optarg;
            break;
        case O_MAX:
            if (bk_int("--max", optarg, 1, &o.max) != 0)
                return 2;
            break;
        case O_EXPECT:
            if (bk_int("--expect", optarg, 1, &o.expect) != 0)
                return 2;
            break;
        case O_BATCH:
            if (bk_int("--batch", optarg, 1, &o.batch) != 0)
                return 2;
            break;
        case O_TIMEOUT:
            if (is_parse_duration_ms(optarg, &o.timeout_ms) != IS_OK || o.timeout_ms <= 0) {
                fprintf(stderr, "bench-kit: --timeout '%s': not a duration\n", optarg);
                return 2;
            }
            break;
        case O_HELP:
            bk_usage(stdout);
            return 0;
        default:
            bk_usage(stderr);
            return 2;
        }
    }
    is_log_init("bench-kit", IS_LOG_WARN);
    if (strcmp(o.cmd, "fill") == 0 && o.bootstrap && o.policy_path && o.in_path)
        return bk_fill(&o);
    if (strcmp(o.cmd, "consume") == 0 && o.bootstrap && o.n_topics > 0 && o.expect > 0)
        return bk_consume(&o);
    if (strcmp(o.cmd, "sqlite") == 0 && o.shape && o.db_path && o.policy_path && o.in_path)
        return bk_sqlite(&o);
    fprintf(stderr, "bench-kit: unknown command or missing options\n");
    bk_usage(stderr);
    return 2;
}
