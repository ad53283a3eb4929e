/*
 * forwarder.h — drains the outbox into Kafka, in id order, and publishes the
 * per-site heartbeats.
 *
 * One thread owns an idempotent librdkafka producer (enable.idempotence=true,
 * acks=all, message.timeout.ms=0: never give up while Kafka is down; the
 * kafka.* passthrough is applied after these defaults, so a deployment can
 * override them — at its own risk for the first two). Each outbox row is
 * produced once, as stored at accept time:
 *
 *   topic   <prefix>.<site>.<tier>          key  <site>/<material>/<lot>
 *   value   packed invsync.v1.Movement      timestamp  accepted_at
 *   headers invsync-schema: 1, content-type: application/x-protobuf;
 *           type=invsync.v1.Movement, movement-id, tier, policy-version
 *
 * A row is marked sent only on a successful delivery report; the marks of one
 * poll round go in one transaction. Delivery is at-least-once: a crash between
 * delivery and mark, a flush timeout at stop, or a producer recreated after a
 * fatal idempotence error resends rows, and the consumer dedups by
 * movement_id. A row whose delivery fails permanently (e.g. topic not
 * authorized) is retried with backoff and counted in
 * invsync_kafka_delivery_errors_total.
 *
 * Every heartbeat.interval, for each site that ever accepted a movement, a
 * Heartbeat (last sequence, backlog, policy version) goes to each of the
 * policy's tier topics of that site (key <site>/heartbeat). A round is skipped
 * while Kafka is unreachable or the previous round is undelivered, so
 * heartbeats never pile up behind an outage.
 *
 * Missing topics: every 5 s while Kafka answers and a movement has waited
 * 5 s, the topics with unsent movements are checked with one metadata
 * request each (topic_watch.h: WARN naming topic, site, tier and the fix,
 * invsync_kafka_topics_missing, /readyz topics_missing). A topic found again
 * has its failed movements retried at once.
 *
 * The Kafka link state (connected / unreachable) goes to the metrics handle
 * for /readyz and /metrics: unreachable on ALL_BROKERS_DOWN or a failed
 * metadata probe, connected on a successful delivery or probe.
 *
 * @locality forwarder_start / forwarder_stop: the main thread. Everything
 * else runs on the forwarder's own thread, including librdkafka's delivery
 * report and error callbacks (served by rd_kafka_poll there); the log
 * callback runs on librdkafka's threads and only writes a log line.
 */
#ifndef INVSYNC_FORWARDER_H
#define INVSYNC_FORWARDER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "duration.h"
#include "error.h"
#include "outbox.h"
#include "policy.h"
#include "producer_metrics.h"

#define FORWARDER_CT_MOVEMENT    "application/x-protobuf; type=invsync.v1.Movement"
#define FORWARDER_CT_HEARTBEAT   "application/x-protobuf; type=invsync.v1.Heartbeat"
#define FORWARDER_SCHEMA_VERSION "1"

typedef struct forwarder forwarder_t;

typedef struct forwarder_opts {
    outbox_t *outbox;              /* required; forward role used only by the thread */
    const is_policy_t *policy;     /* topic prefix, tiers for heartbeats, version */
    const is_strmap_t *kafka;      /* kafka.* passthrough (prefix stripped) */
    const char *producer_id;       /* heartbeat producer_id, Kafka client.id */
    int64_t heartbeat_interval_ms; /* > 0 */
    size_t batch;                  /* rows fetched per round */
    producer_metrics_t *metrics;   /* may be NULL */
    const is_clock_t *clock;       /* heartbeat times; NULL = system clock */
    int64_t retention_ms;          /* outbox.retention; 0 = keep every row */
} forwarder_opts_t;

/*
 * Check the librdkafka configuration (our defaults + passthrough) without
 * connecting: unknown keys and bad values are IS_ERR_CONFIG with errstr
 * naming the key ("kafka.linger.ms: ..."). *bad_key (bad_key may be NULL):
 * the passthrough key refused (borrowed from kafka), NULL when none was.
 */
is_err_t forwarder_check_config(const is_strmap_t *kafka, const char **bad_key, char *errstr,
                                size_t errstr_size) IS_MUST_CHECK;

/*
 * Create the producer and start the thread. Pointers in opts are borrowed and
 * must outlive forwarder_stop (kafka and producer_id are copied). On error
 * *out is NULL and no thread runs.
 */
is_err_t forwarder_start(const forwarder_opts_t *opts, forwarder_t **out, char *errstr,
                         size_t errstr_size) IS_MUST_CHECK;

/*
 * Stop: the thread stops fetching, flushes for up to flush_timeout_ms, marks
 * what was delivered, drops the rest (it stays unsent in the outbox and is
 * sent again at the next start), destroys the producer; then joins and frees.
 * NULL is a no-op.
 */
void forwarder_stop(forwarder_t *fw, int64_t flush_timeout_ms);

#endif
