/*
 * store.h — erp-consumer's durable state (SQLite, WAL): dedup keys, the
 * posting queue, per-producer watermarks, Kafka offsets, postings.
 *
 * Every consumed poll batch is applied in ONE transaction: new movements are
 * inserted (a movement already present is a duplicate — the UNIQUE key is
 * (source_system, movement_id)), watermarks advance, and each partition's
 * next offset is recorded. Only after that commit does the caller store the
 * offsets in Kafka. On assignment the consumer seeks to the offsets kept
 * here, so the store, not Kafka, decides where consumption resumes.
 *
 * Movement states:  queued → posting → posted
 *                               ↘ retry (posting in retry_wait) → posting …
 *                               ↘ failed (permanent; the lot is held)
 *                   dead (invalid, dead-lettered; never posted)
 *                   ignored (loop guard: the ERP's own movement; never posted)
 * A movement is *due* when it is queued, its (producer, site) watermark has
 * passed its sequence (everything accepted before it has been received),
 * and no earlier movement of its lot is posting, waiting to retry or failed.
 *
 * @locality Each thread opens its own store_t (its own SQLite connection):
 * the consume loop, the poster, the HTTP handlers and CLI commands. WAL lets
 * them read concurrently; writers wait on busy_timeout.
 */
#ifndef INVSYNC_STORE_H
#define INVSYNC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "error.h"
#include "movement.h"

typedef struct store store_t;

is_err_t store_open(const char *path, is_db_sync_t sync, store_t **out, char *errstr,
                    size_t errstr_size) IS_MUST_CHECK;
void store_close(store_t *s); /* NULL is a no-op */
sqlite3 *store_db(store_t *s);

/* ---- consume side --------------------------------------------------------- */

typedef enum store_msg_kind {
    STORE_MSG_MOVEMENT = 0,  /* a valid movement: insert (or count duplicate) */
    STORE_MSG_HEARTBEAT,     /* a heartbeat: remember it */
    STORE_MSG_DEAD,          /* dead-lettered: record, advance offset only */
    STORE_MSG_IGNORED,       /* dropped (loop guard, foreign): advance offset only */
} store_msg_kind_t;

typedef struct store_msg {
    store_msg_kind_t kind;
    const char *topic;
    int32_t partition;
    int64_t offset;
    const is_movement_t *m;   /* MOVEMENT; DEAD when it decoded (keeps its sequence) */
    const is_heartbeat_t *hb; /* HEARTBEAT */
    const void *payload;      /* the raw message value (stored for MOVEMENT) */
    size_t payload_len;
    const char *reason;       /* DEAD / IGNORED: why */
} store_msg_t;

typedef struct store_batch_result {
    size_t received;   /* new movements queued */
    size_t duplicates; /* movements already known */
    size_t dead;
    size_t ignored;
    size_t heartbeats;
} store_batch_result_t;

/* Apply a poll batch atomically (see above). */
is_err_t store_apply_batch(store_t *s, const store_msg_t *msgs, size_t n, int64_t now_ms,
                           store_batch_result_t *res, char *errstr,
                           size_t errstr_size) IS_MUST_CHECK;

/* Next offset to read for a partition; IS_ERR_NOT_FOUND when never consumed. */
is_err_t store_get_offset(store_t *s, const char *topic, int32_t partition,
                          int64_t *next_offset) IS_MUST_CHECK;

/* ---- poster side ---------------------------------------------------------- */

/* A posting to make: one or more movements of one lot (same site and tier). */
typedef struct store_posting {
    char posting_id[33];  /* deterministic: hex of SHA-256 of sorted "source\x1fid" */
    char site[65];
    char tier[32];
    char lot_key[IS_LOT_KEY_MAX];
    int attempts;          /* attempts made before this one */
    size_t n;
    int64_t *row_ids;      /* movements.id */
    is_movement_t **m;     /* decoded payloads (owned) */
    struct {               /* where each movement came from (for dead letters) */
        char topic[250];
        int32_t partition;
        int64_t offset;
    } *origin;
} store_posting_t;

typedef struct store_posting_list {
    size_t n, cap;
    store_posting_t *items;
} store_posting_list_t;

void store_posting_list_release(store_posting_list_t *l);

/*
 * Postings left in the `posting` state by a crash (the ERP may or may not
 * have them). The caller asks the ERP (lookup_reference) and then calls
 * store_record_result for each.
 */
is_err_t store_fetch_inflight(store_t *s, store_posting_list_t *out, char *errstr,
                              size_t errstr_size) IS_MUST_CHECK;

/*
 * Up to max due postings in acceptance order: first postings waiting to retry
 * whose time has come, then queued movements that are due (see above), one
 * posting per movement. Lots that are held are skipped, not returned.
 */
is_err_t store_fetch_due(store_t *s, int64_t now_ms, size_t max, store_posting_list_t *out,
                         char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* Mark postings as being posted (attempts + 1), in one transaction. */
is_err_t store_mark_posting(store_t *s, store_posting_list_t *l, int64_t now_ms, char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;

typedef enum store_outcome {
    STORE_POSTED = 0,  /* ERP has it: document */
    STORE_RETRY,       /* retryable failure: wait until next_at */
    STORE_FAILED,      /* permanent failure: hold the lot, dead-letter */
    STORE_REQUEUE,     /* not attempted (an earlier posting of the lot failed): back to queued */
} store_outcome_t;

typedef struct store_result {
    store_outcome_t outcome;
    const char *document; /* POSTED */
    const char *error;    /* RETRY / FAILED: the ERP's answer */
    int64_t next_at_ms;   /* RETRY */
} store_result_t;

/* Record the outcome of each posting of l (results[i] for l->items[i]) in one transaction. */
is_err_t store_record_results(store_t *s, const store_posting_list_t *l,
                              const store_result_t *results, int64_t now_ms, char *errstr,
                              size_t errstr_size) IS_MUST_CHECK;

/* ---- queries (status, CLI, tests) ------------------------------------------ */

typedef struct store_counts {
    int64_t movements, queued, posting, retry, posted, failed, dead;
    int64_t postings, postings_posted, postings_failed, postings_retry;
    int64_t oldest_unposted_ms; /* received_at of the oldest queued/retry/failed; 0 if none */
} store_counts_t;

is_err_t store_counts(store_t *s, store_counts_t *out, char *errstr,
                      size_t errstr_size) IS_MUST_CHECK;

#endif
