/*
 * stats.h — counters shared by erp-consumer's threads and read by /metrics
 * and /v1/status. Plain C11 atomics, relaxed: they are statistics, not
 * synchronization. The lag table is written by the consume thread (from
 * librdkafka's statistics callback) and read by HTTP threads under its mutex.
 */
#ifndef INVSYNC_STATS_H
#define INVSYNC_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* ERP call latency histogram buckets (seconds, upper bounds), Prometheus style. */
#define STATS_N_BUCKETS 13
static const double stats_buckets[STATS_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10};
enum { STATS_POSTED = 0, STATS_RETRY = 1, STATS_FAILED = 2, STATS_N_OUTCOMES = 3 };

#define STATS_MAX_LAG 512 /* (site, tier) pairs tracked for consumer lag */

typedef struct stats_lag {
    char site[65];
    char tier[32];
    long long lag; /* messages behind the high watermark, summed over partitions */
} stats_lag_t;

typedef struct consumer_stats {
    atomic_llong messages;          /* Kafka messages applied to the store */
    atomic_llong received;          /* new movements queued */
    atomic_llong duplicates;        /* movements already known (absorbed) */
    atomic_llong conflicts;         /* movement ids known with other content (not applied) */
    atomic_llong dead;              /* dead-lettered on consumption */
    atomic_llong ignored;           /* dropped by the loop guard */
    atomic_llong heartbeats;        /* heartbeats received */
    atomic_llong posted;            /* postings accepted by the ERP */
    atomic_llong retried;           /* retryable ERP failures */
    atomic_llong failed;            /* permanent ERP failures */
    atomic_llong recovered;         /* in-flight postings resolved at start-up */
    atomic_llong erp_calls;         /* ERP post calls */
    atomic_llong erp_call_us;       /* total time in ERP post calls, microseconds */
    atomic_llong dlq_errors;        /* dead letters Kafka did not take */
    atomic_llong sequences_skipped; /* movements given up as lost (sequence gaps skipped) */
    atomic_llong pruned;            /* movement rows deleted by store.retention */
    atomic_llong before_horizon;    /* movements parked: unknown, accepted before the horizon */
    atomic_int kafka_up;            /* 1 when the consumer's last poll reached a broker */
    atomic_llong last_posted_ms;    /* time of the last successful posting */
    atomic_llong
        caught_up_since_ms; /* everything in Kafka at this time has been consumed; 0 = unknown */
    atomic_llong assigned_since_ms; /* when the current partition assignment began (ms UTC) */
    /* ERP call latency by outcome: cumulative bucket counts, +Inf count, sum (µs). */
    atomic_llong erp_hist[STATS_N_OUTCOMES][STATS_N_BUCKETS];
    atomic_llong erp_hist_count[STATS_N_OUTCOMES];
    atomic_llong erp_hist_sum_us[STATS_N_OUTCOMES];
    pthread_mutex_t lag_mu; /* guards lag, n_lag */
    stats_lag_t lag[STATS_MAX_LAG];
    int n_lag;
} consumer_stats_t;

/* Record one ERP call of `us` microseconds with an outcome. */
static inline void stats_observe_erp(consumer_stats_t *s, int outcome, long long us) {
    double secs = (double)us / 1e6;
    for (int b = 0; b < STATS_N_BUCKETS; b++)
        if (secs <= stats_buckets[b])
            atomic_fetch_add(&s->erp_hist[outcome][b], 1);
    atomic_fetch_add(&s->erp_hist_count[outcome], 1);
    atomic_fetch_add(&s->erp_hist_sum_us[outcome], us);
}

#endif
