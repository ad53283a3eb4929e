/*
 * consume.h — the Kafka side of erp-consumer.
 *
 * Subscribes by regex to every owned site's tier topics, so a new site's
 * topics are consumed without a restart (librdkafka re-evaluates the regex on
 * each metadata refresh: kafka.topic.metadata.refresh.interval.ms, 10 s by
 * default here). For each poll batch it decodes and validates every message,
 * dead-letters what is unusable, applies the batch to the store in one
 * transaction, and only then stores the offsets in Kafka. On assignment it
 * seeks each partition to the offset kept in the store.
 *
 * @locality consume_run() runs on the calling thread (main). Rebalance and
 * log callbacks run inside its polls, on the same thread.
 */
#ifndef INVSYNC_CONSUME_H
#define INVSYNC_CONSUME_H

#include <signal.h>

#include "consumer_config.h"
#include "dlq.h"
#include "error.h"
#include "policy.h"
#include "stats.h"
#include "store.h"

typedef struct consume consume_t;

/* Called after each committed batch that queued new movements. */
typedef void (*consume_notify_fn)(void *opaque);

/* The store, dlq, policy and stats are borrowed and must outlive the consume_t. */
is_err_t consume_new(const consumer_config_t *cfg, const is_policy_t *policy, store_t *store,
                     dlq_t *dlq, consumer_stats_t *stats, consume_notify_fn notify,
                     void *notify_opaque, consume_t **out, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;

/* Consume until *stop becomes non-zero. Returns IS_OK on a clean stop. */
is_err_t consume_run(consume_t *c, volatile sig_atomic_t *stop);

/* Leaves the group (commits stored offsets) and frees. NULL is a no-op. */
void consume_destroy(consume_t *c);

#endif
