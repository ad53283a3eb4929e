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
 *                                   ↘ (admin) retry | skipped
 *                   queued → cancelled (a REVERSAL and its original, both
 *                            inside the window: neither reaches the ERP)
 * A REVERSAL whose original (same source_system, movement_id =
 * reverses_movement_id) is in the store must match it: site, material, lot,
 * serial, location, to_location, uom, quantity (exact value), reversed_type =
 * the original's type, stock statuses. One that does not is never sent to the
 * ERP and cancels nothing: its posting fails permanently (failed, dead-
 * lettered, its lot held) with the first field that differs as the reason.
 * A movement is reversed once: a REVERSAL is refused the same way when an
 * earlier-stored REVERSAL of the same original is not dead, ignored or
 * skipped (whether or not the store has the original), or when the original
 * is cancelled. A REVERSAL whose original is not in the store is otherwise
 * posted as it stands.
 *                   dead (invalid, dead-lettered; never posted)
 *                   ignored (loop guard: the ERP's own movement; never posted)
 * Each movement gets a due time when it is stored (schedule.h: the close of
 * its tier's window, plus the tier's hold), so windows survive restarts.
 * A movement *triggers* when it is queued, its due time has come, its
 * (producer, site) watermark has passed its sequence (everything accepted
 * before it has been received) and its site/tier is not paused. A trigger
 * takes every earlier queued movement of its lot along, in acceptance order
 * (they are *promoted*, and the promotion is noted on them), unless the lot
 * is held: an earlier movement of it is posting, waiting to retry or failed,
 * or sits in a paused site/tier.
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
#include "policy.h"

typedef struct store store_t;

/* The store's partial indexes (store.c, migration 3) cover queued movements
 * (STORE_QUEUED) and movements whose posting is open (STORE_OPEN(alias),
 * alias "" or e.g. "m."). SQLite uses a partial index only when it can prove
 * the query's WHERE implies the index's condition, which in practice means
 * repeating that term (or one branch of its OR) as written: queries meant to
 * use one spell it with these. Not `state IN (...)`: SQLite builds a
 * temporary b-tree for an IN list of three, and a partial index's condition
 * is evaluated on every insert and update of a movement. */
#define STORE_QUEUED "state = 'queued'"
/* dead, ignored, cancelled, skipped: few rows, indexed for the counts (migration 4) */
#define STORE_RARE                                                                                 \
    "(state = 'dead' OR state = 'ignored' OR state = 'cancelled' OR state = 'skipped')"
#define STORE_OPEN(alias)                                                                          \
    "(" alias "state = 'posting' OR " alias "state = 'retry' OR " alias "state = 'failed')"

is_err_t store_open(const char *path, is_db_sync_t sync, store_t **out, char *errstr,
                    size_t errstr_size) IS_MUST_CHECK;
/* store_open for the command-line tools, which read or change what a running
 * (or stopped) consumer recorded: a path that does not exist is
 * IS_ERR_NOT_FOUND naming it, never a new empty store (whose empty audit
 * trail, failed list or pauses would answer for the real one). */
is_err_t store_open_existing(const char *path, is_db_sync_t sync, store_t **out, char *errstr,
                             size_t errstr_size) IS_MUST_CHECK;
void store_close(store_t *s); /* NULL is a no-op */
sqlite3 *store_db(store_t *s);

/* ---- consume side --------------------------------------------------------- */

typedef enum store_msg_kind {
    STORE_MSG_MOVEMENT = 0, /* a valid movement: insert (or count duplicate) */
    STORE_MSG_HEARTBEAT,    /* a heartbeat: remember it */
    STORE_MSG_DEAD,         /* dead-lettered: record, advance offset only */
    STORE_MSG_IGNORED,      /* dropped (loop guard, foreign): advance offset only */
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
    const char *reason; /* DEAD / IGNORED: why */
    int64_t due_at;     /* MOVEMENT: when its tier window closes (ms UTC) */
    int64_t period;     /* the partition's ownership period (store_begin_period); 0 = none */
} store_msg_t;

typedef struct store_batch_result {
    size_t received;       /* new movements queued */
    size_t parked;         /* movements unknown to the store but accepted before its pruned
                              horizon (store_prune): recorded dead, not queued */
    int64_t pruned_before; /* the horizon the batch was checked against (0: never pruned) */
    size_t duplicates;     /* movements already known, with the same content */
    size_t conflicts;      /* movement ids already known with other content: not applied,
                              audited (movement-conflict) */
    char conflict_id[IS_MOVEMENT_MAX_STR + 1]; /* the first of them, for the log */
    size_t dead;
    size_t ignored;
    size_t heartbeats;
} store_batch_result_t;

/* Apply a poll batch atomically (see above). A movement accepted before the
 * store's pruned horizon (store_prune) whose id the store does not hold is
 * not queued: the store cannot tell whether it was posted before its row was
 * pruned. It is recorded `dead` with store_horizon_reason, in dead_letters
 * and in the audit trail (movement-before-horizon), and counted in parked. */
is_err_t store_apply_batch(store_t *s, const store_msg_t *msgs, size_t n, int64_t now_ms,
                           store_batch_result_t *res, char *errstr,
                           size_t errstr_size) IS_MUST_CHECK;
/* The same; parked_at (n entries) is set to 1 where message i was parked,
 * 0 elsewhere (the consume loop dead-letters those). */
is_err_t store_apply_batch_parked(store_t *s, const store_msg_t *msgs, size_t n, int64_t now_ms,
                                  unsigned char *parked_at, store_batch_result_t *res, char *errstr,
                                  size_t errstr_size) IS_MUST_CHECK;

/*
 * The consume loop's sequence bookkeeping, for a caller that writes movements
 * in its own transaction on store_db (replay --apply). Both run inside a
 * transaction the caller holds and neither commits.
 *
 * store_note_seq_fill: m's id (source_system, movement_id) may already be
 * stored. When the stored row came with another (producer, site, sequence)
 * than m — an MES resend the producer accepted again once outbox.retention
 * had forgotten the first, or the same movement through another producer —
 * m's sequence is recorded in seq_fills: nothing is applied for it, but it
 * counts for m's watermark. *counted: it was newly recorded (advance m's
 * watermark). differs (NULL: not computed): the MES content differs
 * (is_movement_fingerprint).
 *
 * store_advance_watermark: move the (producer, site) watermark over the
 * contiguous sequences after it, of movements and of seq_fills.
 */
is_err_t store_note_seq_fill(store_t *s, const is_movement_t *m, int64_t now_ms, int *differs,
                             int *counted) IS_MUST_CHECK;
is_err_t store_advance_watermark(store_t *s, const char *producer, const char *site) IS_MUST_CHECK;

/* Next offset to read for a partition; IS_ERR_NOT_FOUND when never consumed. */
is_err_t store_get_offset(store_t *s, const char *topic, int32_t partition,
                          int64_t *next_offset) IS_MUST_CHECK;

/*
 * Ownership periods (consume.mode group). Another instance of the group may
 * read the same messages as this one: those it read before this instance got
 * the partition (from the group's committed offset up to where it stopped),
 * and those this instance read but had not committed when it lost the
 * partition. A period starts at each assignment of a partition; fresh_from is
 * the partition's high watermark then: nobody else read a message at or past
 * it before. committed is the offset Kafka accepted from this instance during
 * the period: nobody after it reads below it. A message of the period in
 * [fresh_from, committed) was read by this instance alone. *period = its id,
 * stored with every movement read in it (store_msg_t.period).
 */
is_err_t store_begin_period(store_t *s, const char *topic, int32_t partition, int64_t fresh_from,
                            int64_t now_ms, int64_t *period, char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;

/* Kafka accepted these commits (offset_commit_cb): next_offset[i] in period[i]. */
is_err_t store_note_committed(store_t *s, const int64_t *period, const int64_t *next_offset,
                              size_t n, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * shared = 1: other erp-consumer instances of the same Kafka group may read
 * these partitions (consume.mode group). A REVERSAL then cancels its original
 * only when this instance read both alone (store_begin_period); otherwise
 * both are posted, which nets to the same stock whatever the other did. shared = 0 (assign mode,
 * the default of a new store_t): this instance is the partitions' only reader.
 */
void store_set_shared(store_t *s, int shared);

/* ---- poster side ---------------------------------------------------------- */

/*
 * Posting ids of postings whose movements were all accepted at or after
 * from_ms (ms UTC) begin with their earliest event time, so that they grow in
 * time order (posting_id_of in store_post.c); earlier ones, and all of them
 * when this is never called (from_ms INT64_MAX), are the hash alone, as
 * every version before made them. Every instance that posts to one ERP must
 * use the same value (config poster.time_ordered_ids_from).
 */
void store_set_time_ordered_ids_from(store_t *s, int64_t from_ms);

/*
 * The service's way in: set the cut-over (INT64_MAX = unset) and keep it in
 * the store (table settings). The first start of this version records the
 * configured value (unset included) as the store's: a new store, or one an
 * older version ran, whose value is not known. A store that has one
 * refuses another (IS_ERR_INVALID, errstr naming both and a movement) when a
 * movement accepted between the two was put in a posting: that posting made
 * again would get another id, and the ERP would book it twice. A change that
 * touches no such movement (a typo fixed before any posting, a time not yet
 * reached) is taken and audited (setting-changed).
 */
is_err_t store_pin_time_ordered_ids_from(store_t *s, int64_t from_ms, int64_t now_ms, char *errstr,
                                         size_t errstr_size) IS_MUST_CHECK;

/*
 * The same check for --check-config, on the store file at path opened
 * read-only and left as it is (nothing migrated or recorded): IS_OK when
 * the store does not exist yet, records no value (a first start adopts
 * the configured one) or may move to from_ms; IS_ERR_INVALID with errstr
 * as store_pin_time_ordered_ids_from's when the start would be refused.
 */
is_err_t store_check_time_ordered_ids_from(const char *path, int64_t from_ms, char *errstr,
                                           size_t errstr_size) IS_MUST_CHECK;

/* A posting to make: one or more movements of one lot (same site and tier). */
typedef struct store_posting {
    char posting_id[33]; /* deterministic: a function of the movements (posting_id_of) */
    char site[65];
    char tier[32];
    char lot_key[IS_LOT_KEY_MAX];
    int attempts;       /* attempts made before this one */
    int net;            /* windowed tier: net the movements into lines */
    int cancel;         /* not a posting: REVERSAL/original pairs cancelled in the window */
    uint32_t max_lines; /* lines per ERP call (0 = no limit): the tier's max_lines until
                           store_mark_posting sets the posting's own, kept from its
                           first attempt */
    char note[192];     /* promotion note, e.g. "promoted by M7 (realtime)" */
    char *invalid;      /* non-NULL: must not reach the ERP, fails permanently with this
                           reason (a REVERSAL that does not match its original, or of an
                           original reversed already); owned */
    int recheck;        /* a retried posting that had failed as invalid: check it again */
    size_t n;
    int64_t *row_ids;  /* movements.id */
    is_movement_t **m; /* decoded payloads (owned) */
    struct {           /* where each movement came from (for dead letters) */
        char topic[250];
        int32_t partition;
        int64_t offset;
    } * origin;
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
 * Movements one fetch loads (decodes) at most: bounds the poster's memory
 * when a backlog of millions is due at once (the pipeline holds two fetches).
 * A lot is taken whole up to this many; the lots after the budget wait for
 * the next cycle.
 */
#define STORE_FETCH_MEMBERS 10000

/*
 * Up to about max due postings: first postings waiting to retry whose time
 * has come, then, per triggered lot (see above), its due movements in
 * acceptance order cut into postings: one per movement for `immediate`
 * tiers, one per run of consecutive movements of the same windowed tier
 * (net = 1). REVERSAL/original pairs that are both due come back as a
 * `cancel` entry. A REVERSAL not matching its original (see above) comes
 * back alone in a posting with `invalid` set, also when it is retried.
 * Held lots are skipped, not returned.
 */
is_err_t store_fetch_due(store_t *s, const is_policy_t *policy, int64_t now_ms, size_t max,
                         store_posting_list_t *out, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* Mark postings as being posted (attempts + 1) and apply `cancel` entries
 * (their movements become cancelled), in one transaction. */
is_err_t store_mark_posting(store_t *s, store_posting_list_t *l, int64_t now_ms, char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;

typedef enum store_outcome {
    STORE_POSTED = 0, /* ERP has it: document */
    STORE_RETRY,      /* retryable failure: wait until next_at */
    STORE_FAILED,     /* permanent failure: hold the lot, dead-letter */
    STORE_REQUEUE,    /* not attempted (an earlier posting of the lot failed): back to queued */
    STORE_CANCELLED,  /* a `cancel` entry: already applied by store_mark_posting */
} store_outcome_t;

/* One chunk of a posting posted in chunks (its max_lines): its own ERP document. */
typedef struct store_chunk {
    const char *document; /* the ERP document the chunk made */
    int lines;            /* ERP lines in it */
} store_chunk_t;

typedef struct store_result {
    store_outcome_t outcome;
    const char *document; /* POSTED (chunked: "<first chunk's>+<n-1>", erp_chunked_document) */
    const char *error;    /* RETRY / FAILED: the ERP's answer */
    int64_t next_at_ms;   /* RETRY */
    int lines;            /* POSTED: ERP lines sent (after netting) */
    /* POSTED in chunks; NULL / 0 otherwise (nothing more is written). chunks[k]
     * is chunk k+1; movement_chunk[j] the chunk (1..n_chunks) holding the
     * posting's movement j (items[i].m[j], row_ids[j]), 0 for none (its line
     * netted to zero). Borrowed for the call. */
    const store_chunk_t *chunks;
    size_t n_chunks;
    const uint32_t *movement_chunk;
} store_result_t;

/* Record the outcome of each posting of l (results[i] for l->items[i]) in one
 * transaction, with the chunks of a posting posted in chunks (trace). */
is_err_t store_record_results(store_t *s, const store_posting_list_t *l,
                              const store_result_t *results, int64_t now_ms, char *errstr,
                              size_t errstr_size) IS_MUST_CHECK;

/* ---- queries (status, CLI, tests) ------------------------------------------ */

typedef struct store_counts {
    int64_t movements, queued, posting, retry, posted, failed, dead, cancelled, skipped;
    int64_t postings, postings_posted, postings_failed, postings_retry;
    int64_t oldest_unposted_ms; /* accepted_at of the oldest queued/retry/failed; 0 if none */
} store_counts_t;

/* One cheap read (readiness probes): IS_OK when the store answers. */
is_err_t store_ping(store_t *s, char *errstr, size_t errstr_size) IS_MUST_CHECK;
is_err_t store_counts(store_t *s, store_counts_t *out, char *errstr,
                      size_t errstr_size) IS_MUST_CHECK;

/* ---- retention (store_prune.c) --------------------------------------------- */

/* settings key of the pruned horizon (ms UTC): every movement row store_prune
 * ever deleted was accepted before it. Only grows. */
#define STORE_PRUNED_BEFORE_KEY "store.pruned_before"

/*
 * store.retention: delete finished movements accepted before cutoff_ms, with
 * their chunk_movements rows, reading at most max_rows rows after *after_id
 * (the caller's cursor, 0 to start over) in id order (the order received), in
 * one transaction that also raises the horizon to cutoff_ms when it deleted
 * anything. Finished: posted, cancelled, dead, ignored or skipped, with no
 * posting open (posting, retry, failed), and at or below its (producer, site)
 * watermark, so that no sequence the watermark still waits for disappears.
 * Postings, posting_chunks, audit, watermarks, offsets, seq_fills and
 * dead_letters are kept. *deleted = movement rows deleted; *done = 1 when the
 * rows read reached one accepted at or after the cutoff, or the end. Rows
 * kept (not finished yet) are passed over and looked at again from a fresh
 * cursor. @locality the poster's store thread (any single writer).
 */
is_err_t store_prune(store_t *s, int64_t cutoff_ms, size_t max_rows, int64_t *after_id,
                     int64_t *deleted, int *done, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* The pruned horizon: *before_ms = 0 when nothing was ever pruned. */
is_err_t store_pruned_before(store_t *s, int64_t *before_ms, char *errstr,
                             size_t errstr_size) IS_MUST_CHECK;

/* Why a movement accepted at accepted_ms, unknown to a store pruned before
 * horizon_ms, is not posted (the dead row's reason, the dead letter's error). */
void store_horizon_reason(int64_t accepted_ms, int64_t horizon_ms, char *buf, size_t size);

/* ---- control, audit, traceability (store_admin.c) --------------------------- */

/*
 * Pause / resume posting for a site and/or tier ("*" = all). Consumption
 * continues; staleness grows and is reported. Each call is audited with who
 * and why. Resuming what is not paused is IS_ERR_NOT_FOUND.
 */
is_err_t store_pause(store_t *s, const char *site, const char *tier, const char *actor,
                     const char *reason, int64_t now_ms, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;
is_err_t store_resume(store_t *s, const char *site, const char *tier, const char *actor,
                      const char *reason, int64_t now_ms, char *errstr,
                      size_t errstr_size) IS_MUST_CHECK;
/* Is (site, tier) paused (directly or by a "*")? */
int store_is_paused(store_t *s, const char *site, const char *tier);
/* Close the window now: queued movements of site/tier ("*" = all) become due. *n = how many. */
is_err_t store_flush(store_t *s, const char *site, const char *tier, const char *actor,
                     const char *reason, int64_t now_ms, int64_t *n, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;

/*
 * Failed postings: retry (back to retry, due now) or skip (its movements
 * become skipped and the lot is released). Both audited with who and why.
 * IS_ERR_NOT_FOUND when posting_id is not a failed posting.
 */
is_err_t store_failed_retry(store_t *s, const char *posting_id, const char *actor,
                            const char *reason, int64_t now_ms, char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;
is_err_t store_failed_skip(store_t *s, const char *posting_id, const char *actor,
                           const char *reason, int64_t now_ms, char *errstr,
                           size_t errstr_size) IS_MUST_CHECK;

/*
 * Append an audit row (hash-chained: each row's hash covers the previous
 * row's hash and its own fields). Runs inside the caller's transaction if
 * one is open. detail is a JSON text (may be NULL).
 */
is_err_t store_audit(store_t *s, int64_t now_ms, const char *actor, const char *action,
                     const char *subject, const char *detail, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;
/*
 * Recompute the chain. IS_OK when intact (*rows = rows checked); otherwise
 * IS_ERR_CONFLICT with *bad_id = the first row that does not match (0 when
 * rows were removed from the end) and errstr saying what.
 */
is_err_t store_audit_verify(store_t *s, int64_t *rows, int64_t *bad_id, char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;

/*
 * Sequence gaps that will not close. through_ms is a time by which the
 * consumer had consumed everything then in Kafka. For each (producer, site)
 * whose next expected sequence is missing while a later one was received at
 * least older_than_ms before through_ms — counting from not_before_ms if
 * that is later (the current partition assignment's start: a gap gets a
 * full older_than_ms under every new assignment) — move the watermark past the gap and
 * audit it ("sequence-gap-skipped", with the range): the missing sequences
 * had that long to reach Kafka and are not there for this instance (another
 * instance consumed them, retention deleted them, or the consumer started
 * mid-history). *skipped = gaps skipped, *sequences = the sequences in them
 * (movements given up as lost).
 */
is_err_t store_skip_gaps(store_t *s, int64_t through_ms, int64_t older_than_ms,
                         int64_t not_before_ms, int *skipped, int64_t *sequences, char *errstr,
                         size_t errstr_size) IS_MUST_CHECK;

/* Record a policy version the first time it is seen (audited). */
is_err_t store_note_policy_version(store_t *s, const char *version, const char *movement_id,
                                   int64_t now_ms, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* The error a posting found in flight at start-up and not in the ERP is
 * retried with: it never reached the ERP, so a REVERSAL in it is checked
 * again against its original (store_fetch_due), as a fresh one would be. */
#define STORE_NOT_IN_ERP_AFTER_RESTART "not in the ERP after restart"
/* ... and the error of one cut into chunks of which the first is in the ERP:
 * it did reach the ERP, so it is posted again as it was cut, not re-judged. */
#define STORE_PARTLY_IN_ERP_AFTER_RESTART "partly in the ERP after restart (chunks)"

#endif
