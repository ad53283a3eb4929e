/*
 * poster.h — turns queued movements into ERP postings.
 *
 * Runs on its own two threads with its own store connection and ERP adapter,
 * so a slow ERP never stalls consumption. At start it resolves postings a
 * crash left in the `posting` state by asking the ERP for their reference
 * (erp_lookup_reference) before anything is re-posted. Then, in a loop: fetch
 * due postings, mark them `posting` (one transaction), post them in order,
 * record the outcomes (one transaction). The store thread takes the next
 * cycle and records the last one while the ERP thread posts the current one
 * (poster.c, "The pipeline"). A retryable failure waits with
 * exponential backoff and jitter; a permanent failure fails the posting,
 * dead-letters its movements and holds later movements of the same lot only.
 *
 * @locality poster_start/stop/destroy from the main thread; poster_wake from
 * any thread (the consume loop calls it after each batch).
 */
#ifndef INVSYNC_POSTER_H
#define INVSYNC_POSTER_H

#include "consumer_config.h"
#include "dlq.h"
#include "erp.h"
#include "error.h"
#include "policy.h"
#include "stats.h"

typedef struct poster poster_t;

/* Opens its own store connection and ERP adapter. dlq, policy and stats are borrowed. */
is_err_t poster_new(const consumer_config_t *cfg, const is_policy_t *policy, dlq_t *dlq,
                    consumer_stats_t *stats, poster_t **out, char *errstr,
                    size_t errstr_size) IS_MUST_CHECK;
is_err_t poster_start(poster_t *p) IS_MUST_CHECK;
/* Something may be due: stop waiting. Safe from any thread. */
void poster_wake(void *poster);
/* Finish the batch in hand and join the thread. */
void poster_stop(poster_t *p);
void poster_destroy(poster_t *p); /* NULL is a no-op */

/*
 * One poster cycle on the calling thread (recovery first if not done yet).
 * Returns the number of postings handled, or a negative is_err_t. For tests
 * and tools that drive the poster without its thread.
 */
int poster_run_once(poster_t *p, int64_t now_ms);

#endif
