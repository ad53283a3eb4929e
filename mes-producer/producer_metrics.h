/*
 * producer_metrics.h — mes-producer's counters and the Kafka link state, and
 * their Prometheus text rendering for GET /metrics.
 *
 *   invsync_movements_total{site,outcome="accepted|duplicate|rejected"}
 *   invsync_http_requests_total{code}
 *   invsync_outbox_backlog, invsync_outbox_oldest_unsent_age_seconds
 *   invsync_kafka_delivery_errors_total, invsync_kafka_up
 *   invsync_kafka_topics_missing (topics with waiting movements the broker lacks)
 *
 * Counters are C11 atomics: updates are lock-free and may come from any
 * thread. Site labels are bounded: the first PRODUCER_METRICS_MAX_SITES
 * distinct valid site names get their own label, later ones are counted
 * under site="_other", and names that are not valid sites (a rejected
 * movement can carry anything) under site="_invalid" — a client cannot grow
 * the label set without limit.
 *
 * @locality any thread; the handle outlives every thread that uses it.
 */
#ifndef INVSYNC_PRODUCER_METRICS_H
#define INVSYNC_PRODUCER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "outbox.h"
#include "policy.h"
#include "topic.h"

#define PRODUCER_METRICS_MAX_SITES 64
/* Missing topics listed by name in /readyz; the gauge counts all of them. */
#define PRODUCER_METRICS_MAX_MISSING 32

typedef struct producer_metrics producer_metrics_t;

typedef enum producer_outcome {
    PRODUCER_OUTCOME_ACCEPTED = 0,
    PRODUCER_OUTCOME_DUPLICATE = 1,
    PRODUCER_OUTCOME_REJECTED = 2,
    PRODUCER_OUTCOME__COUNT = 3,
} producer_outcome_t;

typedef enum producer_kafka_state {
    PRODUCER_KAFKA_UNKNOWN = 0,     /* no answer either way yet */
    PRODUCER_KAFKA_CONNECTED = 1,   /* a broker answered / a delivery succeeded */
    PRODUCER_KAFKA_UNREACHABLE = 2, /* all brokers down, or no answer to a probe */
} producer_kafka_state_t;

/* A topic movements wait for that the broker does not have (topic_watch.h). */
typedef struct producer_missing_topic {
    char topic[IS_TOPIC_MAX + 1];
    char site[65]; /* a site name: at most 64 characters */
    char tier[IS_TIER_NAME_MAX];
    uint64_t waiting; /* unsent movements for it at the last check */
    int64_t since_ms; /* when it was first found missing (ms since the epoch) */
} producer_missing_topic_t;

/* NULL on ENOMEM. */
producer_metrics_t *producer_metrics_new(void);
/* NULL is a no-op. */
void producer_metrics_destroy(producer_metrics_t *pm);

/* Add n movements of site with an outcome. site may be NULL or invalid. */
void producer_metrics_movements(producer_metrics_t *pm, const char *site,
                                producer_outcome_t outcome, uint64_t n);
/* Count one answered HTTP request by status code. */
void producer_metrics_http(producer_metrics_t *pm, int status);
void producer_metrics_delivery_error(producer_metrics_t *pm);
/* One heartbeat delivered to Kafka. */
void producer_metrics_heartbeat_sent(producer_metrics_t *pm);
/* n outbox rows deleted by outbox.retention */
void producer_metrics_pruned(producer_metrics_t *pm, int64_t n);
/* The configured heartbeat period (for the silent-site alert: 3 × this). */
void producer_metrics_set_heartbeat_interval(producer_metrics_t *pm, int64_t ms);

void producer_metrics_set_kafka(producer_metrics_t *pm, producer_kafka_state_t st);
producer_kafka_state_t producer_metrics_kafka(const producer_metrics_t *pm);
/* "connected" | "unreachable" | "unknown" */
const char *producer_kafka_state_name(producer_kafka_state_t st);

/*
 * Replace the set of missing topics: total (the gauge) and the first
 * min(n, PRODUCER_METRICS_MAX_MISSING) of v (copied) for /readyz.
 * @locality the forwarder thread.
 */
void producer_metrics_set_topics_missing(producer_metrics_t *pm, const producer_missing_topic_t *v,
                                         size_t n, size_t total);
/* Copy up to max listed missing topics into out; returns the total count
 * (may exceed what was copied). *n_out = entries copied. @locality any thread. */
size_t producer_metrics_topics_missing(producer_metrics_t *pm, producer_missing_topic_t *out,
                                       size_t max, size_t *n_out);

/*
 * Prometheus text format (version 0.0.4) of every metric, with the outbox
 * gauges given by the caller. Returns a malloc'd NUL-terminated string and
 * its length in *len, or NULL on ENOMEM.
 */
char *producer_metrics_render(const producer_metrics_t *pm, uint64_t backlog,
                              double oldest_unsent_age_s, outbox_t *outbox, size_t *len);

#endif
