/*
 * stats.h — counters shared by erp-consumer's threads and read by /metrics
 * and /v1/status. Plain C11 atomics, relaxed: they are statistics, not
 * synchronization.
 */
#ifndef INVSYNC_STATS_H
#define INVSYNC_STATS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct consumer_stats {
    atomic_llong messages;     /* Kafka messages applied to the store */
    atomic_llong received;     /* new movements queued */
    atomic_llong duplicates;   /* movements already known (absorbed) */
    atomic_llong dead;         /* dead-lettered on consumption */
    atomic_llong ignored;      /* dropped by the loop guard */
    atomic_llong heartbeats;   /* heartbeats received */
    atomic_llong posted;       /* postings accepted by the ERP */
    atomic_llong retried;      /* retryable ERP failures */
    atomic_llong failed;       /* permanent ERP failures */
    atomic_llong recovered;    /* in-flight postings resolved at start-up */
    atomic_llong erp_calls;    /* ERP post calls */
    atomic_llong erp_call_us;  /* total time in ERP post calls, microseconds */
    atomic_llong dlq_errors;   /* dead letters Kafka did not take */
    atomic_int kafka_up;       /* 1 when the consumer's last poll reached a broker */
    atomic_llong last_posted_ms; /* time of the last successful posting */
} consumer_stats_t;

#endif
