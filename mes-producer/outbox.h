/*
 * outbox.h — the producer's durable SQLite outbox (DESIGN.md §2).
 *
 * A movement is acknowledged to the MES only once its row is committed here;
 * the forwarder then drains rows in id order into Kafka and marks them sent
 * on delivery report. The outbox is also the idempotency store: a
 * (source_system, movement_id) seen before with the same content fingerprint
 * is a DUPLICATE (answered with the stored sequence, nothing new stored), with
 * different content a CONFLICT (the whole request is refused).
 *
 * Each accepted movement gets a sequence that is gap-free per (producer, site)
 * and starts at 1: a consumer owning some sites sees a contiguous stream for
 * each of them. The last sequence per site lives in table site_seq; the
 * writer keeps a copy in memory (loaded inside its transaction after open or
 * after any rollback), assigns sequences from it and writes the touched
 * sites back to site_seq in the same transaction as the inserts, so a
 * rollback never leaves a hole. The producer_id is recorded at creation; opening the file
 * with another producer_id is refused, because the new id's sequences would
 * not start at 1.
 *
 * Schema (migration 1):
 *   outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, site, site_seq, source_system,
 *          movement_id, fingerprint BLOB, topic, msg_key, payload BLOB,
 *          tier, policy_version, accepted_at, sent_at NULL,
 *          UNIQUE(source_system, movement_id))
 *   site_seq(site PRIMARY KEY, last_seq)
 *   outbox_meta(key PRIMARY KEY, value)
 * payload is the packed, stamped invsync.v1.Movement, encoded once here.
 * Sent rows are kept: they are the dedup memory.
 *
 * Load: one append per HTTP request (up to http.max_items rows). The ids
 * are checked, the fingerprints and Kafka keys computed before any lock, so
 * the serialized part is one INSERT per row. Appends that arrive while a
 * commit is running are committed together (group commit): one transaction,
 * one fsync with outbox.sync=full, each request under its own savepoint so
 * that it stays all or nothing on its own. The forwarder reads in batches
 * of forwarder.batch and marks delivered ids in one transaction per poll
 * round (one UPDATE per run of consecutive ids).
 *
 * Threads — three SQLite connections to the same file, one per role:
 *   writer   outbox_append, outbox_probe_writable: any thread (the HTTP
 *            handlers); appends queue up and one of the waiting callers at
 *            a time writes a whole group for all of them, under a mutex.
 *            One long-lived connection: a connection per request would be
 *            slow.
 *   forward  outbox_fetch_unsent, outbox_mark_sent, outbox_first_unsent_id:
 *            @locality the forwarder thread only (no lock; one caller).
 *   stats    outbox_backlog, outbox_last_seq, outbox_sites: any thread,
 *            serialized by a second mutex (read-only queries).
 * WAL mode lets the forwarder and stats read while the writer writes; write
 * transactions (append, mark_sent) wait on each other via busy_timeout.
 * The forward connection commits with synchronous=NORMAL even when the writer
 * uses FULL: a mark lost to a power cut only resends a row (the consumer
 * dedups), while an acknowledged append must never be lost.
 */
#ifndef INVSYNC_OUTBOX_H
#define INVSYNC_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "error.h"
#include "movement.h"
#include "policy.h"

typedef struct outbox outbox_t;

/*
 * Open (creating) the outbox at path (a file; ":memory:" is refused because
 * the three connections must share it). On error *out is NULL and errstr
 * names the path; IS_ERR_CONFIG when the file belongs to another producer_id.
 */
is_err_t outbox_open(const char *path, is_db_sync_t sync, const char *producer_id, outbox_t **out,
                     char *errstr, size_t errstr_size) IS_MUST_CHECK;
/* Close all connections. NULL is a no-op. No other call may be running. */
void outbox_destroy(outbox_t *ob);

typedef enum outbox_status {
    OUTBOX_ACCEPTED = 0,  /* new: stored with a new sequence */
    OUTBOX_DUPLICATE = 1, /* same id, same fingerprint already stored */
    OUTBOX_CONFLICT = 2,  /* same id, different fingerprint already stored */
    OUTBOX_MISMATCH = 3,  /* a new REVERSAL that does not match its stored original,
                             or of an original another REVERSAL already reverses */
} outbox_status_t;

typedef struct outbox_item {
    /* in */
    const is_movement_t *m;     /* validated movement as received; never modified */
    const char *tier;           /* tier chosen by the policy */
    const char *policy_version; /* 64 hex chars */
    const char *topic;          /* "<prefix>.<site>.<tier>" */
    /* out */
    outbox_status_t status;
    uint64_t sequence;                  /* ACCEPTED: new; DUPLICATE: the stored one; else 0 */
    int64_t id;                         /* outbox row id (ACCEPTED, DUPLICATE); else 0 */
    char stored_tier[IS_TIER_NAME_MAX]; /* DUPLICATE: tier given at first acceptance */
    /* MISMATCH: the proto name of the first differing field (static storage) and
     * "lot is 'B' but movement 'X' has 'A'" (malloc'd: the caller frees it after
     * any outbox_append, whatever it returned; NULL if out of memory). Else NULL. */
    const char *mismatch_field;
    char *mismatch;
} outbox_item_t;

/*
 * Store a request's movements, all or nothing, in ONE transaction (BEGIN
 * IMMEDIATE). For each item in order: look up (source_system, movement_id)
 * — including rows inserted earlier in this same call, so a repeat inside
 * one request is a DUPLICATE (same content) or CONFLICT (different). New
 * items are stamped (producer_id, accepted_time = now_ms, sequence = next for
 * the site, tier, policy_version), packed and inserted.
 *
 * The call may be committed in one transaction together with concurrent
 * calls (group commit); it returns only after that commit. Requests of one
 * group are stored in arrival order, so a later one sees an earlier one's
 * movements as stored (DUPLICATE / CONFLICT), exactly as if they had been
 * committed one after the other.
 *
 * A new REVERSAL is checked against the movement it reverses when that one
 * (same source_system, movement_id = reverses_movement_id) is stored — before
 * this call or earlier in it: reversed_type must be the original's type and
 * site, material, lot, serial, location, to_location, uom, the quantity
 * (exact decimal, 5 == 5.000) and the effective stock statuses (defaults
 * applied, see movement.h) must be the original's. Otherwise the item is a
 * MISMATCH naming the first differing field. The check runs under the
 * writer lock inside the append's transaction, so it sees exactly the
 * movements stored before this request in arrival order: no check-then-act
 * window against a concurrent append of the original. An original not
 * stored (yet) is not checked: it may predate invsync, have gone through
 * another producer's outbox, or arrive after its reversal in a later
 * request. An original later in the same request is checked once the whole
 * request is stored. A DUPLICATE reversal is not re-checked. A movement is
 * reversed once: a new REVERSAL of a stored original that another accepted
 * (and matching) REVERSAL already reverses is a MISMATCH on
 * reverses_movement_id naming that reversal.
 *
 * Returns IS_OK after the commit (every status is ACCEPTED or DUPLICATE and
 * the accepted ones are on disk). IS_ERR_INVALID with at least one item
 * marked MISMATCH when any reversal does not match (it wins over a
 * conflict): everything is rolled back, the MISMATCH items say which and
 * why. IS_ERR_CONFLICT when any item is a CONFLICT: everything is rolled
 * back, the CONFLICT items say which; in both cases the statuses of the
 * others are meaningless. Any other error (IS_ERR_DB, IS_ERR_NOMEM,
 * IS_ERR_INVALID for a movement without ids — no item is MISMATCH then):
 * rolled back, nothing stored, errstr says why. A database error fails every
 * request of the group that would otherwise have been stored (IS_ERR_DB).
 * @locality any thread (serialized internally).
 */
is_err_t outbox_append(outbox_t *ob, outbox_item_t *items, size_t n, int64_t now_ms, char *errstr,
                       size_t errstr_size) IS_MUST_CHECK;

/*
 * Check that the writer can still write: takes the write lock, writes a probe
 * row and rolls back (no fsync). IS_OK or the error with errstr filled. Also
 * fails while the last append failed with a database error, until an append
 * succeeds again. @locality any thread (takes the writer mutex).
 */
is_err_t outbox_probe_writable(outbox_t *ob, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* One unsent row, valid only during the callback. */
typedef struct outbox_row {
    int64_t id;
    const char *site;
    uint64_t sequence;
    const char *source_system;
    const char *movement_id;
    const char *topic;
    const char *msg_key;
    const void *payload; /* packed stamped invsync.v1.Movement */
    size_t payload_len;
    const char *tier;
    const char *policy_version;
    int64_t accepted_at; /* ms since the epoch */
} outbox_row_t;

/* Return 0 to continue, non-zero to stop the fetch early (not an error). */
typedef int (*outbox_row_fn)(void *opaque, const outbox_row_t *row);

/*
 * Call cb for up to limit unsent rows with id > after_id, in id order.
 * *n_out (may be NULL) gets the number of rows passed to cb. The callback
 * must not call into the outbox. @locality forwarder thread.
 */
is_err_t outbox_fetch_unsent(outbox_t *ob, int64_t after_id, size_t limit, outbox_row_fn cb,
                             void *opaque, size_t *n_out, char *errstr,
                             size_t errstr_size) IS_MUST_CHECK;

/*
 * Set sent_at = now_ms on the given ids (already-sent ids are left alone) in
 * one transaction. @locality forwarder thread.
 */
is_err_t outbox_mark_sent(outbox_t *ob, const int64_t *ids, size_t n, int64_t now_ms, char *errstr,
                          size_t errstr_size) IS_MUST_CHECK;

/*
 * outbox_mark_sent, unless a republish (outbox_republish) committed since the
 * caller last read the republish generation, *generation: then nothing is
 * marked and *generation gets the new one. The ids' delivery reports may have
 * come after the republish marked them unsent; marked sent, they would not be
 * published again as `mes-producer republish` said they would.
 * @locality forwarder thread.
 */
is_err_t outbox_mark_sent_in_generation(outbox_t *ob, const int64_t *ids, size_t n, int64_t now_ms,
                                        int64_t *generation, char *errstr,
                                        size_t errstr_size) IS_MUST_CHECK;

/* Lowest unsent id, or 0 when nothing is unsent. @locality forwarder thread. */
is_err_t outbox_first_unsent_id(outbox_t *ob, int64_t *id_out) IS_MUST_CHECK;

/* One topic with unsent rows: its site and tier, how many rows wait, the
 * accepted_at (ms since the epoch) of the oldest. Strings valid during the call. */
typedef void (*outbox_topic_fn)(void *opaque, const char *topic, const char *site, const char *tier,
                                uint64_t waiting, int64_t oldest_accepted_at);

/* Unsent rows, oldest first, that outbox_unsent_topics looks at. */
#define OUTBOX_TOPIC_SCAN     10000
#define OUTBOX_TOPIC_SCAN_SQL "10000"

/*
 * When the oldest unsent row was accepted before older_than_ms, call cb once
 * per topic among the oldest OUTBOX_TOPIC_SCAN unsent rows (however recent
 * its own rows), with its count among them; otherwise do nothing. A topic
 * the broker lacks keeps its rows at the head of the queue while the rest
 * drains, so it is among them. The first check is one indexed row; the
 * per-topic pass reads up to OUTBOX_TOPIC_SCAN rows, so call it seldom (the
 * forwarder: every few seconds, and only while something waits that long).
 * cb must not call into the outbox. @locality forwarder thread.
 */
is_err_t outbox_unsent_topics(outbox_t *ob, int64_t older_than_ms, outbox_topic_fn cb, void *opaque,
                              char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * Unsent row count and the accepted_at of the oldest unsent row (0 when the
 * backlog is empty). @locality any thread.
 */
is_err_t outbox_backlog(outbox_t *ob, uint64_t *count, int64_t *oldest_accepted_at) IS_MUST_CHECK;

/* The outbox file's checkpoint metrics (is_db_checkpoint_metrics). @locality any thread. */
size_t outbox_checkpoint_metrics(outbox_t *ob, char *buf, size_t size);

/* 1 when exactly this movement (same source_system, movement_id and
 * fingerprint) is stored: a resend of something accepted earlier, perhaps
 * under rules that have since become stricter. 0 otherwise (or on error). */
int outbox_is_stored(outbox_t *ob, const is_movement_t *m);

/* Last sequence given for site (0 if the site never accepted). @locality any thread. */
is_err_t outbox_last_seq(outbox_t *ob, const char *site, uint64_t *out) IS_MUST_CHECK;

/* Callback per site that ever accepted a movement, with its last sequence. */
typedef void (*outbox_site_fn)(void *opaque, const char *site, uint64_t last_seq);
/* Every site in site_seq, in name order. @locality any thread; cb must not call in. */
is_err_t outbox_sites(outbox_t *ob, outbox_site_fn cb, void *opaque) IS_MUST_CHECK;

/*
 * outbox.retention: delete rows delivered to Kafka (sent_at set) and
 * accepted before cutoff_ms, oldest first, reading at most max_rows rows
 * after *after_id (a cursor the caller keeps, 0 at first) in one
 * transaction. *deleted = rows deleted; returns *done = 1 when the rows
 * read reached one accepted at or after the cutoff (or the end): nothing
 * older is left to look at before the next call with a later cutoff. A
 * row not yet sent is kept and passed over. Site sequences (site_seq) and
 * the reversals table are kept. @locality forwarder thread.
 */
is_err_t outbox_prune(outbox_t *ob, int64_t cutoff_ms, size_t max_rows, int64_t *after_id,
                      int64_t *deleted, int *done, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * Mark a site's movements with sequences from..to (inclusive) unsent again,
 * so that the forwarder publishes them once more, unchanged (same sequence,
 * payload and key): the recovery for movements Kafka lost before a consumer
 * read them (retention, an offset reset, a deleted topic), which a consumer
 * reports as skipped sequences. Consumers absorb the ones they have by
 * movement id. *in_range = rows of the site in the range, *marked = those
 * that were sent (now unsent again). One transaction. A running forwarder
 * picks them up within a heartbeat interval, a starting one at once.
 * @locality any thread (writer role, under the writer lock).
 */
/* How many republishes the outbox has seen (outbox_meta; 0 when none).
 * @locality forwarder thread. */
is_err_t outbox_republish_generation(outbox_t *ob, int64_t *out) IS_MUST_CHECK;

is_err_t outbox_republish(outbox_t *ob, const char *site, uint64_t from, uint64_t to,
                          int64_t *in_range, int64_t *marked, char *errstr,
                          size_t errstr_size) IS_MUST_CHECK;

/*
 * Wait until another append commits or timeout_ms passes (the forwarder's
 * idle wait: a new movement is picked up at once, not at the next poll).
 * @locality forwarder thread.
 */
void outbox_wait_append(outbox_t *ob, int timeout_ms);

#endif
