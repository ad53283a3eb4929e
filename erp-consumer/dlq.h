/*
 * dlq.h — publishing dead letters to <prefix>.<site>.dlq.
 *
 * A dead letter keeps the original key and value and adds headers naming
 * what went wrong, in the spirit of Kafka Connect's DLQ context headers:
 *   invsync-error            why it was dead-lettered (validation, ERP answer)
 *   invsync-erp-answer       the ERP's answer, when the ERP refused it
 *   invsync-source-topic     where it came from
 *   invsync-source-partition
 *   invsync-source-offset
 *   movement-id              when known
 *
 * @locality thread-safe (librdkafka producers are); the consume loop and the
 * poster share one dlq_t.
 */
#ifndef INVSYNC_DLQ_H
#define INVSYNC_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

typedef struct dlq dlq_t;

typedef struct dlq_letter {
    const char *site; /* destination <prefix>.<site>.dlq */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const char *error;      /* required */
    const char *erp_answer; /* may be NULL */
    const char *source_topic;
    int32_t source_partition;
    int64_t source_offset;
    const char *movement_id; /* may be NULL */
} dlq_letter_t;

/* kafka: the kafka.* passthrough map (bootstrap.servers, TLS/SASL). */
is_err_t dlq_new(const is_strmap_t *kafka, const char *topic_prefix, dlq_t **out, char *errstr,
                 size_t errstr_size) IS_MUST_CHECK;
void dlq_destroy(dlq_t *d); /* flushes up to 5 s; NULL is a no-op */

/* Queue a dead letter (asynchronous). */
is_err_t dlq_publish(dlq_t *d, const dlq_letter_t *l, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;

/*
 * Wait until every queued letter is delivered. IS_OK when all were;
 * IS_ERR_KAFKA when one failed or timeout_ms passed (the caller must not
 * consider those letters written).
 */
is_err_t dlq_flush(dlq_t *d, int timeout_ms) IS_MUST_CHECK;

#endif
