/*
 * kafka-dump.c — a small Kafka client for the reliability suite: read what
 * is in topics, count movement ids, and write raw bytes to a topic.
 *
 *   kafka-dump --bootstrap B dump  (--topic T ... | --regex RE) [--decode] [--timeout 30s]
 *   kafka-dump --bootstrap B count (--topic T ... | --regex RE) [--ids FILE] [--timeout 30s]
 *   kafka-dump --bootstrap B produce --topic T (--value S | --value-hex HEX | --value-file F
 *              | --null-value)
 *              [--key K] [--header NAME=VALUE ...] [--partition N] [--timeout 30s]
 *   kafka-dump --bootstrap B topics [--regex RE]
 *
 * dump: every message of the selected topics, from the start of each
 * partition to its end as it was when the tool started (the high watermark
 * read first), as JSON lines on stdout, in partition order:
 *   {"topic","partition","offset","timestamp","key","headers":{name:value},
 *    "value_b64"}            raw value, always
 *   + "movement": {...}      with --decode, when the value is a Movement
 *                            (content-type header absent or not a Heartbeat)
 *   + "heartbeat": {...}     with --decode, when it is a Heartbeat
 *   + "decode_error": "..."  with --decode, when the value is neither
 * A key or header value that is not valid UTF-8 is given as <name>_b64.
 *
 * count: one JSON object: messages, heartbeats, movements (messages that
 * decode as a Movement), unique (distinct movement ids), duplicated (ids seen
 * more than once), extra_copies (messages beyond the first per id),
 * undecodable. --ids FILE writes "movement_id<TAB>copies" lines. This is
 * how the suite tells how many movements reached Kafka twice.
 *
 * produce: one message, acks=all, waits for the delivery report and prints
 * {"topic","partition","offset"}. Used to put a poison message (bytes that
 * are not a Movement) on a tier topic.
 *
 * topics: names of the cluster's topics (matching RE), one per line.
 *
 * No consumer group is used (partitions are assigned directly, nothing is
 * committed), and topics are listed with an all-topics metadata request, so
 * the tool never creates a topic and never moves a group's offsets.
 *
 * Exit: 0 ok, 1 Kafka error or timeout, 2 bad arguments.
 *
 * Load: test sizes (tens of thousands of messages); everything is streamed
 * except the id table of `count` (one hash table of the ids).
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "invsync.pb-c.h"
#include "movement_json.h"

#define KD_MAX_TOPICS  64
#define KD_MAX_HEADERS 32

typedef struct kd_opts {
    const char *bootstrap;
    const char *cmd;
    const char *topics[KD_MAX_TOPICS];
    int n_topics;
    const char *regex;
    int decode;
    const char *ids_path;
    int64_t timeout_ms;
    /* produce */
    const char *key;
    const char *value;
    const char *value_hex;
    const char *value_file;
    int null_value; /* produce: a null value (a tombstone) */
    const char *hdr_names[KD_MAX_HEADERS];
    const char *hdr_values[KD_MAX_HEADERS];
    int n_headers;
    int partition;
} kd_opts_t;

static void usage(FILE *f) {
    fprintf(f, "usage: kafka-dump --bootstrap B dump  (--topic T ... | --regex RE) [--decode] "
               "[--timeout 30s]\n"
               "       kafka-dump --bootstrap B count (--topic T ... | --regex RE) [--ids FILE] "
               "[--timeout 30s]\n"
               "       kafka-dump --bootstrap B produce --topic T (--value S | --value-hex HEX | "
               "--value-file F | --null-value)\n"
               "                  [--key K] [--header NAME=VALUE ...] [--partition N] "
               "[--timeout 30s]\n"
               "       kafka-dump --bootstrap B topics [--regex RE]\n");
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- encoding helpers ------------------------------------------------------ */

static char *b64(const void *data, size_t len) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        *o++ = tbl[(v >> 18) & 63];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? tbl[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* obj[name] = the bytes as a string, or obj[name_b64] when not UTF-8. */
static void set_bytes(json_t *obj, const char *name, const void *data, size_t len) {
    json_t *s;
    if (!data) {
        json_object_set_new(obj, name, json_null());
        return;
    }
    s = json_stringn(data, len);
    if (s) {
        json_object_set_new(obj, name, s);
    } else {
        char key[128];
        char *enc = b64(data, len);
        snprintf(key, sizeof(key), "%s_b64", name);
        json_object_set_new(obj, key, enc ? json_string(enc) : json_null());
        free(enc);
    }
}

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ---- selecting topics ------------------------------------------------------ */

typedef struct kd_part {
    char *topic;
    int32_t partition;
    int64_t lo, hi; /* [lo, hi): what there is to read */
    int64_t next;   /* next offset expected */
} kd_part_t;

typedef struct kd_parts {
    kd_part_t *items;
    size_t n, cap;
} kd_parts_t;

static int topic_selected(const kd_opts_t *o, const regex_t *re, const char *name) {
    for (int i = 0; i < o->n_topics; i++)
        if (strcmp(o->topics[i], name) == 0)
            return 1;
    return re && regexec(re, name, 0, NULL, 0) == 0;
}

static int part_cmp(const void *a, const void *b) {
    const kd_part_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* The selected topics' partitions with their watermarks now. Topics named
 * with --topic that do not exist are simply absent (nothing to read). */
static int list_parts(rd_kafka_t *rk, const kd_opts_t *o, kd_parts_t *out, int names_only) {
    const struct rd_kafka_metadata *md = NULL;
    regex_t re;
    int have_re = 0, rc = 0;
    rd_kafka_resp_err_t err;
    int64_t deadline = mono_ms() + o->timeout_ms;

    if (o->regex) {
        if (regcomp(&re, o->regex, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "kafka-dump: bad --regex '%s'\n", o->regex);
            return 2;
        }
        have_re = 1;
    }
    for (;;) {
        err = rd_kafka_metadata(rk, 1, NULL, &md, 5000);
        if (!err)
            break;
        if (mono_ms() > deadline) {
            fprintf(stderr, "kafka-dump: cannot read the cluster's topics: %s\n",
                    rd_kafka_err2str(err));
            rc = 1;
            goto out;
        }
    }
    for (int t = 0; t < md->topic_cnt; t++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[t];
        if (mt->err || !topic_selected(o, have_re ? &re : NULL, mt->topic))
            continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            kd_part_t *kp;
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 16;
                kd_part_t *n = realloc(out->items, cap * sizeof(*n));
                if (!n) {
                    rc = 1;
                    goto out;
                }
                out->items = n;
                out->cap = cap;
            }
            kp = &out->items[out->n++];
            memset(kp, 0, sizeof(*kp));
            kp->topic = strdup(mt->topic);
            kp->partition = mt->partitions[p].id;
        }
    }
    qsort(out->items, out->n, sizeof(*out->items), part_cmp);
    if (names_only)
        goto out;
    for (size_t i = 0; i < out->n; i++) {
        kd_part_t *kp = &out->items[i];
        for (;;) {
            err = rd_kafka_query_watermark_offsets(rk, kp->topic, kp->partition, &kp->lo, &kp->hi,
                                                   5000);
            if (!err)
                break;
            if (mono_ms() > deadline) {
                fprintf(stderr, "kafka-dump: cannot read the offsets of %s [%d]: %s\n", kp->topic,
                        (int)kp->partition, rd_kafka_err2str(err));
                rc = 1;
                goto out;
            }
        }
        kp->next = kp->lo;
    }
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (have_re)
        regfree(&re);
    return rc;
}

static void parts_release(kd_parts_t *ps) {
    for (size_t i = 0; i < ps->n; i++)
        free(ps->items[i].topic);
    free(ps->items);
}

/* ---- one message ----------------------------------------------------------- */

static int is_heartbeat(const rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (rd_kafka_header_get_last(h, "content-type", &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return v && memmem(v, len, "Heartbeat", 9) != NULL;
}

static json_t *message_json(const rd_kafka_message_t *m, int decode) {
    json_t *o = json_object(), *hdrs = json_object();
    rd_kafka_headers_t *h = NULL;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    char *enc;

    json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(m->rkt)));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    json_object_set_new(o, "timestamp", json_integer(ts));
    set_bytes(o, "key", m->key, m->key_len);
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h) {
        const char *name;
        const void *val;
        size_t len;
        for (size_t i = 0;
             rd_kafka_header_get_all(h, i, &name, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
            set_bytes(hdrs, name, val, len);
    }
    json_object_set_new(o, "headers", hdrs);
    enc = b64(m->payload ? m->payload : "", m->len);
    json_object_set_new(o, "value_b64", enc ? json_string(enc) : json_null());
    free(enc);
    if (decode) {
        if (is_heartbeat(m)) {
            Invsync__V1__Heartbeat *hb = invsync__v1__heartbeat__unpack(NULL, m->len, m->payload);
            if (hb) {
                json_object_set_new(o, "heartbeat", is_heartbeat_to_json(hb));
                invsync__v1__heartbeat__free_unpacked(hb, NULL);
            } else {
                json_object_set_new(o, "decode_error", json_string("not an invsync.v1.Heartbeat"));
            }
        } else {
            Invsync__V1__Movement *mv = invsync__v1__movement__unpack(NULL, m->len, m->payload);
            if (mv) {
                json_object_set_new(o, "movement", is_movement_to_json(mv));
                invsync__v1__movement__free_unpacked(mv, NULL);
            } else {
                json_object_set_new(o, "decode_error", json_string("not an invsync.v1.Movement"));
            }
        }
    }
    return o;
}

/* ---- id counting (count) ---------------------------------------------------- */

typedef struct kd_id {
    char *id;
    long copies;
} kd_id_t;

typedef struct kd_ids {
    kd_id_t *slots;
    size_t cap, n;
} kd_ids_t;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int ids_add(kd_ids_t *t, const char *id) {
    if (t->n * 2 >= t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        kd_id_t *s = calloc(cap, sizeof(*s));
        if (!s)
            return -1;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slots[i].id)
                continue;
            size_t k = fnv(t->slots[i].id) & (cap - 1);
            while (s[k].id)
                k = (k + 1) & (cap - 1);
            s[k] = t->slots[i];
        }
        free(t->slots);
        t->slots = s;
        t->cap = cap;
    }
    size_t k = fnv(id) & (t->cap - 1);
    while (t->slots[k].id && strcmp(t->slots[k].id, id) != 0)
        k = (k + 1) & (t->cap - 1);
    if (!t->slots[k].id) {
        t->slots[k].id = strdup(id);
        if (!t->slots[k].id)
            return -1;
        t->n++;
    }
    t->slots[k].copies++;
    return 0;
}

/* ---- dump / count ------------------------------------------------------------ */

static rd_kafka_t *new_client(const kd_opts_t *o, rd_kafka_type_t type) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-dump: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER) {
        /* assign() needs a group.id; nothing is ever committed under it. */
        char group[64];
        snprintf(group, sizeof(group), "kafka-dump-%ld", (long)getpid());
        if (rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) !=
                RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "enable.partition.eof", "false", err, sizeof(err)) !=
                RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof(err)) !=
                RD_KAFKA_CONF_OK) {
            fprintf(stderr, "kafka-dump: %s\n", err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    } else {
        if (rd_kafka_conf_set(conf, "acks", "all", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "kafka-dump: %s\n", err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka-dump: cannot create a Kafka client: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static int cmd_read(const kd_opts_t *o, int counting) {
    kd_parts_t ps = {0};
    kd_ids_t ids = {0};
    rd_kafka_topic_partition_list_t *assign;
    long messages = 0, heartbeats = 0, movements = 0, undecodable = 0;
    size_t remaining = 0;
    rd_kafka_resp_err_t last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc;
    int64_t deadline = mono_ms() + o->timeout_ms;
    rd_kafka_t *rk = new_client(o, RD_KAFKA_CONSUMER);

    if (!rk)
        return 1;
    rc = list_parts(rk, o, &ps, 0);
    if (rc)
        goto out;
    assign = rd_kafka_topic_partition_list_new((int)(ps.n ? ps.n : 1));
    for (size_t i = 0; i < ps.n; i++) {
        if (ps.items[i].hi <= ps.items[i].lo)
            continue;
        rd_kafka_topic_partition_list_add(assign, ps.items[i].topic, ps.items[i].partition)
            ->offset = ps.items[i].lo;
        remaining++;
    }
    if (remaining) {
        rd_kafka_resp_err_t aerr = rd_kafka_assign(rk, assign);
        if (aerr) {
            fprintf(stderr, "kafka-dump: cannot assign partitions: %s\n", rd_kafka_err2str(aerr));
            rc = 1;
            remaining = 0;
        }
    }
    rd_kafka_topic_partition_list_destroy(assign);

    while (remaining > 0) {
        rd_kafka_message_t *m;
        if (mono_ms() > deadline) {
            fprintf(stderr, "kafka-dump: timed out with %zu partition(s) not read to the end\n",
                    remaining);
            for (size_t i = 0; i < ps.n; i++)
                if (ps.items[i].next < ps.items[i].hi)
                    fprintf(stderr, "  %s [%d]: at %lld of %lld\n", ps.items[i].topic,
                            (int)ps.items[i].partition, (long long)ps.items[i].next,
                            (long long)ps.items[i].hi);
            rc = 1;
            break;
        }
        m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            /* Transient (a broker restarting): librdkafka retries; say it once per kind. */
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && m->err != last_err) {
                fprintf(stderr, "kafka-dump: %s\n", rd_kafka_message_errstr(m));
                last_err = m->err;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        kd_part_t key = {.topic = (char *)rd_kafka_topic_name(m->rkt), .partition = m->partition};
        kd_part_t *kp = bsearch(&key, ps.items, ps.n, sizeof(*ps.items), part_cmp);
        if (!kp || m->offset >= kp->hi || kp->next >= kp->hi) {
            rd_kafka_message_destroy(m); /* written after we started: not ours to report */
            continue;
        }
        kp->next = m->offset + 1;
        messages++;
        if (counting) {
            if (is_heartbeat(m)) {
                heartbeats++;
            } else {
                Invsync__V1__Movement *mv = invsync__v1__movement__unpack(NULL, m->len, m->payload);
                if (mv) {
                    movements++;
                    if (ids_add(&ids, mv->movement_id) != 0) {
                        fprintf(stderr, "kafka-dump: out of memory\n");
                        rc = 1;
                    }
                    invsync__v1__movement__free_unpacked(mv, NULL);
                } else {
                    undecodable++;
                }
            }
        } else {
            json_t *j = message_json(m, o->decode);
            char *line = json_dumps(j, JSON_COMPACT);
            if (line) {
                fputs(line, stdout);
                fputc('\n', stdout);
                free(line);
            }
            json_decref(j);
        }
        if (kp->next >= kp->hi)
            remaining--;
        rd_kafka_message_destroy(m);
    }
    if (counting && rc == 0) {
        long duplicated = 0, extra = 0;
        FILE *f = NULL;
        if (o->ids_path) {
            f = fopen(o->ids_path, "w");
            if (!f) {
                fprintf(stderr, "kafka-dump: cannot write '%s'\n", o->ids_path);
                rc = 1;
            }
        }
        for (size_t i = 0; i < ids.cap; i++) {
            if (!ids.slots[i].id)
                continue;
            if (ids.slots[i].copies > 1) {
                duplicated++;
                extra += ids.slots[i].copies - 1;
            }
            if (f)
                fprintf(f, "%s\t%ld\n", ids.slots[i].id, ids.slots[i].copies);
        }
        if (f)
            fclose(f);
        printf("{\"messages\":%ld,\"heartbeats\":%ld,\"movements\":%ld,\"unique\":%zu,"
               "\"duplicated\":%ld,\"extra_copies\":%ld,\"undecodable\":%ld,\"partitions\":%zu}\n",
               messages, heartbeats, movements, ids.n, duplicated, extra, undecodable, ps.n);
    }
out:
    fflush(stdout);
    for (size_t i = 0; i < ids.cap; i++)
        free(ids.slots[i].id);
    free(ids.slots);
    parts_release(&ps);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

static int cmd_topics(const kd_opts_t *o) {
    kd_parts_t ps = {0};
    kd_opts_t all = *o;
    rd_kafka_t *rk = new_client(o, RD_KAFKA_PRODUCER);
    int rc;
    if (!rk)
        return 1;
    if (!all.regex && all.n_topics == 0)
        all.regex = ".*";
    rc = list_parts(rk, &all, &ps, 1);
    for (size_t i = 0; rc == 0 && i < ps.n; i++)
        if (i == 0 || strcmp(ps.items[i].topic, ps.items[i - 1].topic) != 0)
            printf("%s\n", ps.items[i].topic);
    parts_release(&ps);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- produce ---------------------------------------------------------------- */

typedef struct kd_dr {
    int done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} kd_dr_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    kd_dr_t *dr = opaque;
    (void)rk;
    dr->done = 1;
    dr->err = m->err;
    dr->partition = m->partition;
    dr->offset = m->offset;
}

static int cmd_produce(const kd_opts_t *o) {
    unsigned char *val = NULL;
    size_t len = 0;
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t err;
    kd_dr_t dr = {0};
    int rc = 0;
    char errs[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    int64_t deadline = mono_ms() + o->timeout_ms;

    if (o->n_topics != 1) {
        fprintf(stderr, "kafka-dump: produce needs exactly one --topic\n");
        return 2;
    }
    if (o->null_value) {
        val = NULL; /* len 0: a null value */
    } else if (o->value) {
        len = strlen(o->value);
        val = malloc(len + 1);
        if (val)
            memcpy(val, o->value, len + 1);
    } else if (o->value_hex) {
        size_t hl = strlen(o->value_hex);
        if (hl % 2) {
            fprintf(stderr, "kafka-dump: --value-hex needs an even number of digits\n");
            return 2;
        }
        val = malloc(hl / 2 + 1);
        for (size_t i = 0; val && i < hl; i += 2) {
            int a = hexval(o->value_hex[i]), b = hexval(o->value_hex[i + 1]);
            if (a < 0 || b < 0) {
                fprintf(stderr, "kafka-dump: --value-hex: not a hex digit\n");
                free(val);
                return 2;
            }
            val[len++] = (unsigned char)(a * 16 + b);
        }
    } else if (o->value_file) {
        FILE *f = fopen(o->value_file, "rb");
        long sz;
        if (!f || fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
            fprintf(stderr, "kafka-dump: cannot read '%s'\n", o->value_file);
            if (f)
                fclose(f);
            return 2;
        }
        val = malloc((size_t)sz + 1);
        if (val)
            len = fread(val, 1, (size_t)sz, f);
        fclose(f);
    } else {
        fprintf(stderr,
                "kafka-dump: produce needs --value, --value-hex, --value-file or --null-value\n");
        return 2;
    }
    if (!val && !o->null_value) {
        fprintf(stderr, "kafka-dump: out of memory\n");
        return 1;
    }

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, errs, sizeof(errs)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", errs, sizeof(errs)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errs, sizeof(errs)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-dump: %s\n", errs);
        rd_kafka_conf_destroy(conf);
        free(val);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &dr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errs, sizeof(errs));
    if (!rk) {
        fprintf(stderr, "kafka-dump: cannot create a Kafka producer: %s\n", errs);
        rd_kafka_conf_destroy(conf);
        free(val);
        return 1;
    }
    hdrs = rd_kafka_headers_new(o->n_headers ? (size_t)o->n_headers : 1);
    for (int i = 0; i < o->n_headers; i++)
        rd_kafka_header_add(hdrs, o->hdr_names[i], -1, o->hdr_values[i], -1);
    err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(o->topics[0]),
        RD_KAFKA_V_PARTITION(o->partition >= 0 ? o->partition : RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(o->key, o->key ? strlen(o->key) : 0), RD_KAFKA_V_VALUE(val, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        fprintf(stderr, "kafka-dump: cannot produce to '%s': %s\n", o->topics[0],
                rd_kafka_err2str(err));
        rc = 1;
    }
    while (rc == 0 && !dr.done) {
        if (mono_ms() > deadline) {
            fprintf(stderr, "kafka-dump: no delivery report within the timeout\n");
            rc = 1;
            break;
        }
        rd_kafka_poll(rk, 100);
    }
    if (rc == 0 && dr.err) {
        fprintf(stderr, "kafka-dump: delivery to '%s' failed: %s\n", o->topics[0],
                rd_kafka_err2str(dr.err));
        rc = 1;
    }
    if (rc == 0)
        printf("{\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld}\n", o->topics[0],
               (int)dr.partition, (long long)dr.offset);
    rd_kafka_flush(rk, 5000);
    rd_kafka_destroy(rk);
    free(val);
    return rc;
}

/* ---- main ------------------------------------------------------------------- */

int main(int argc, char **argv) {
    kd_opts_t o = {.timeout_ms = 30000, .partition = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (o.cmd) {
                fprintf(stderr, "kafka-dump: unexpected argument '%s'\n", a);
                return 2;
            }
            o.cmd = a;
            continue;
        }
        if (strcmp(a, "--decode") == 0) {
            o.decode = 1;
            continue;
        }
        if (strcmp(a, "--null-value") == 0) {
            o.null_value = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "kafka-dump: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--bootstrap") == 0) {
            o.bootstrap = v;
        } else if (strcmp(a, "--topic") == 0) {
            if (o.n_topics == KD_MAX_TOPICS) {
                fprintf(stderr, "kafka-dump: too many --topic\n");
                return 2;
            }
            o.topics[o.n_topics++] = v;
        } else if (strcmp(a, "--regex") == 0) {
            o.regex = v;
        } else if (strcmp(a, "--ids") == 0) {
            o.ids_path = v;
        } else if (strcmp(a, "--timeout") == 0) {
            if (is_parse_duration_ms(v, &o.timeout_ms) != IS_OK || o.timeout_ms <= 0) {
                fprintf(stderr, "kafka-dump: bad --timeout '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--key") == 0) {
            o.key = v;
        } else if (strcmp(a, "--value") == 0) {
            o.value = v;
        } else if (strcmp(a, "--value-hex") == 0) {
            o.value_hex = v;
        } else if (strcmp(a, "--value-file") == 0) {
            o.value_file = v;
        } else if (strcmp(a, "--partition") == 0) {
            char *end;
            long p = strtol(v, &end, 10);
            if (*end || p < 0 || p > 100000) {
                fprintf(stderr, "kafka-dump: bad --partition '%s'\n", v);
                return 2;
            }
            o.partition = (int)p;
        } else if (strcmp(a, "--header") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || o.n_headers == KD_MAX_HEADERS) {
                fprintf(stderr, "kafka-dump: bad --header '%s' (NAME=VALUE)\n", v);
                return 2;
            }
            char *name = strndup(v, (size_t)(eq - v));
            o.hdr_names[o.n_headers] = name;
            o.hdr_values[o.n_headers++] = eq + 1;
        } else {
            fprintf(stderr, "kafka-dump: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.bootstrap || !o.cmd) {
        usage(stderr);
        return 2;
    }
    if (strcmp(o.cmd, "dump") == 0 || strcmp(o.cmd, "count") == 0) {
        if (o.n_topics == 0 && !o.regex) {
            fprintf(stderr, "kafka-dump: %s needs --topic or --regex\n", o.cmd);
            return 2;
        }
        return cmd_read(&o, strcmp(o.cmd, "count") == 0);
    }
    if (strcmp(o.cmd, "produce") == 0)
        return cmd_produce(&o);
    if (strcmp(o.cmd, "topics") == 0)
        return cmd_topics(&o);
    fprintf(stderr, "kafka-dump: unknown command '%s'\n", o.cmd);
    usage(stderr);
    return 2;
}
