/*
 * store_prune.c — store.retention: deleting the movements the consumer is
 * done with, and the pruned horizon that keeps a redelivery of one of them
 * from being posted again (see store.h, "retention").
 *
 * A movement row is the dedup key: once it is gone, the same movement read
 * again (a Kafka replay from an old offset, `replay --apply`, a producer
 * `republish`) would look new. So every delete batch raises the horizon
 * (settings, STORE_PRUNED_BEFORE_KEY) in its own transaction, and the insert
 * paths park a movement accepted before the horizon that the store does not
 * hold (store_apply_batch, replay_apply): it may have been posted already.
 *
 * Load: the poster's store thread calls store_prune a few times a minute
 * with batches of a few thousand rows; each batch reads rows in id order
 * from a cursor (the primary key, no extra index) and deletes those that
 * qualify with two statements. Rows it keeps (not finished) are few: the
 * backlog, and the lots held behind a failed posting.
 */
#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "store_int.h"

/*
 * Finished movements of (after, last] accepted before the cutoff. Finished:
 * a state that never changes again, no posting of it still open, and its
 * sequence at or below its watermark, so that the watermark never has to
 * step over a row that is gone (store_advance_watermark reads only
 * sequences above it, store_skip_gaps too). The state list is spelt as
 * STORE_RARE plus 'posted' on purpose: queued, posting, retry and failed
 * rows are never touched.
 */
#define PRUNABLE                                                                                   \
    "id > ?1 AND id <= ?2 AND accepted_at < ?3"                                                    \
    " AND (state = 'posted' OR " STORE_RARE ")"                                                    \
    " AND seq <= coalesce((SELECT w.contiguous FROM watermarks w"                                  \
    "  WHERE w.producer_id = movements.producer_id AND w.site = movements.site), -1)"              \
    " AND (posting_id IS NULL OR NOT EXISTS (SELECT 1 FROM postings p"                             \
    "  WHERE p.posting_id = movements.posting_id AND " STORE_OPEN("p.") "))"

static int exec_range(sqlite3 *db, const char *sql, int64_t after, int64_t last, int64_t cutoff,
                      int64_t *changes) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, last);
        sqlite3_bind_int64(st, 3, cutoff);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (ok && changes)
        *changes = sqlite3_changes(db);
    return ok;
}

is_err_t store_prune(store_t *s, int64_t cutoff_ms, size_t max_rows, int64_t *after_id,
                     int64_t *deleted, int *done, char *errstr, size_t errstr_size) {
    sqlite3_stmt *up = NULL;
    int64_t last, n = 0;
    int src;

    *deleted = 0;
    *done = 0;
    if (store_begin(s) != IS_OK)
        return is_db_error(s->db, "cannot begin pruning the store", errstr, errstr_size);
    /* Rows come roughly in acceptance order: one past the cutoff ends the
     * batch, and an old row received after it is deleted once it is old too. */
    if (is_db_prune_scan(s->db, "movements", "accepted_at", *after_id, cutoff_ms, max_rows, &last,
                         done, errstr, errstr_size) != IS_OK)
        goto db_err;
    if (last > *after_id) {
        /* chunk_movements first: it is found through the rows about to go. */
        if (!exec_range(s->db,
                        "DELETE FROM chunk_movements WHERE mid IN (SELECT id FROM movements"
                        " WHERE " PRUNABLE ")",
                        *after_id, last, cutoff_ms, NULL) ||
            !exec_range(s->db, "DELETE FROM movements WHERE " PRUNABLE, *after_id, last, cutoff_ms,
                        &n))
            goto db_err;
    }
    if (n > 0) {
        /* The horizon only grows: a shorter store.retention later deletes
         * nothing the longer one kept, and what was deleted stays covered. */
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO settings(key, value, set_at) VALUES(?1, ?2, ?3)"
                               " ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
                               " set_at = excluded.set_at WHERE excluded.value > value",
                               -1, &up, NULL) != SQLITE_OK)
            goto db_err;
        sqlite3_bind_text(up, 1, STORE_PRUNED_BEFORE_KEY, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 2, cutoff_ms);
        sqlite3_bind_int64(up, 3, is_clock_now_ms(NULL));
        src = sqlite3_step(up);
        sqlite3_finalize(up);
        if (src != SQLITE_DONE)
            goto db_err;
    }
    if (store_commit(s) != IS_OK)
        goto db_err;
    *after_id = last;
    *deleted = n;
    return IS_OK;
db_err:;
    is_err_t rc =
        is_db_error(s->db, "cannot prune the store (store.retention)", errstr, errstr_size);
    store_rollback(s);
    *done = 0;
    return rc;
}

is_err_t store_pruned_before(store_t *s, int64_t *before_ms, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = store_stmt(s, SQ_PRUNED_BEFORE);
    int src = sqlite3_step(st);
    *before_ms = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return is_db_error(s->db, "cannot read the store's pruned horizon", errstr, errstr_size);
    return IS_OK;
}

void store_horizon_reason(int64_t accepted_ms, int64_t horizon_ms, char *buf, size_t size) {
    char accepted[IS_RFC3339_LEN], before[IS_RFC3339_LEN];
    is_format_rfc3339(accepted_ms, accepted);
    is_format_rfc3339(horizon_ms, before);
    snprintf(buf, size,
             "accepted %s, before the store's pruned horizon %s (store.retention): cannot tell "
             "whether it was already posted; not posted",
             accepted, before);
}
