/*
 * dlq.c — dead-letter producer (see dlq.h). Idempotent producer, acks=all:
 * a dead letter is evidence for an investigation and must not be lost.
 * Load: rare (poison messages, permanent ERP refusals).
 */
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "dlq.h"
#include "log.h"
#include "topic.h"

struct dlq {
    rd_kafka_t *rk;
    char prefix[128];
    atomic_long failures; /* delivery failures since the last flush */
};

static void dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    dlq_t *d = opaque;
    (void)rk;
    if (msg->err) {
        atomic_fetch_add(&d->failures, 1);
        is_log(IS_LOG_ERROR, "dead letter not delivered", "error", rd_kafka_err2str(msg->err),
               "topic", rd_kafka_topic_name(msg->rkt), NULL);
    }
}

is_err_t dlq_new(const is_strmap_t *kafka, const char *topic_prefix, dlq_t **out, char *errstr,
                 size_t errstr_size) {
    char kerr[512];
    dlq_t *d = calloc(1, sizeof(*d));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    *out = NULL;
    if (!d || !conf)
        goto nomem;
    snprintf(d->prefix, sizeof(d->prefix), "%s", topic_prefix);
    for (size_t i = 0; i < kafka->n; i++) {
        /* Consumer-only properties do not apply to this producer. */
        if (strcmp(kafka->keys[i], "group.id") == 0 || strncmp(kafka->keys[i], "auto.", 5) == 0 ||
            strncmp(kafka->keys[i], "enable.auto", 11) == 0 ||
            strcmp(kafka->keys[i], "session.timeout.ms") == 0 ||
            strcmp(kafka->keys[i], "heartbeat.interval.ms") == 0 ||
            strcmp(kafka->keys[i], "max.poll.interval.ms") == 0 ||
            strcmp(kafka->keys[i], "partition.assignment.strategy") == 0 ||
            strcmp(kafka->keys[i], "isolation.level") == 0 ||
            strncmp(kafka->keys[i], "fetch.", 6) == 0 ||
            strcmp(kafka->keys[i], "group.instance.id") == 0)
            continue;
        if (is_kafka_conf_set(conf, kafka->keys[i], kafka->vals[i], errstr, errstr_size) != IS_OK)
            goto err;
    }
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        is_errf(errstr, errstr_size, "kafka: %s", kerr);
        goto err;
    }
    rd_kafka_conf_set_log_cb(conf, is_log_rdkafka_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_dr_cb);
    rd_kafka_conf_set_opaque(conf, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (!d->rk) {
        is_errf(errstr, errstr_size, "cannot create dead-letter producer: %s", kerr);
        goto err;
    }
    *out = d;
    return IS_OK;
nomem:
    is_errf(errstr, errstr_size, "out of memory");
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(d);
    return IS_ERR_KAFKA;
}

void dlq_destroy(dlq_t *d) {
    if (!d)
        return;
    rd_kafka_flush(d->rk, 5000);
    rd_kafka_destroy(d->rk);
    free(d);
}

is_err_t dlq_publish(dlq_t *d, const dlq_letter_t *l, char *errstr, size_t errstr_size) {
    char topic[IS_TOPIC_MAX + 1], part[16], off[24];
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t err;

    if (is_topic_name(topic, sizeof(topic), d->prefix, l->site, IS_TOPIC_DLQ) < 0) {
        /* A site we cannot name a topic for: park it under a catch-all site. */
        if (is_topic_name(topic, sizeof(topic), d->prefix, "_unknown", IS_TOPIC_DLQ) < 0) {
            is_errf(errstr, errstr_size, "cannot name a dead-letter topic");
            return IS_ERR_INVALID;
        }
    }
    snprintf(part, sizeof(part), "%d", (int)l->source_partition);
    snprintf(off, sizeof(off), "%lld", (long long)l->source_offset);
    hdrs = rd_kafka_headers_new(6);
    rd_kafka_header_add(hdrs, "invsync-error", -1, l->error, -1);
    if (l->erp_answer)
        rd_kafka_header_add(hdrs, "invsync-erp-answer", -1, l->erp_answer, -1);
    if (l->source_topic) {
        rd_kafka_header_add(hdrs, "invsync-source-topic", -1, l->source_topic, -1);
        rd_kafka_header_add(hdrs, "invsync-source-partition", -1, part, -1);
        rd_kafka_header_add(hdrs, "invsync-source-offset", -1, off, -1);
    }
    if (l->movement_id)
        rd_kafka_header_add(hdrs, "movement-id", -1, l->movement_id, -1);
    for (;;) {
        err = rd_kafka_producev(
            d->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)l->key, l->key_len),
            RD_KAFKA_V_VALUE((void *)l->value, l->value_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(d->rk, 100);
    }
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        is_errf(errstr, errstr_size, "cannot queue dead letter to '%s': %s", topic,
                rd_kafka_err2str(err));
        return IS_ERR_KAFKA;
    }
    rd_kafka_poll(d->rk, 0);
    return IS_OK;
}

is_err_t dlq_flush(dlq_t *d, int timeout_ms) {
    rd_kafka_resp_err_t err = rd_kafka_flush(d->rk, timeout_ms);
    long failures = atomic_exchange(&d->failures, 0);
    if (err || failures)
        return IS_ERR_KAFKA;
    return IS_OK;
}
