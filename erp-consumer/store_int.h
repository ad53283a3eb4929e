/*
 * store_int.h — what store.c, store_post.c and store_admin.c share: the
 * store struct and lazily prepared statements. Not for other modules.
 */
#ifndef INVSYNC_STORE_INT_H
#define INVSYNC_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

/* Every statement the store reuses; each file owns the SQL of its ids. */
enum {
    /* store.c */
    SQ_INSERT_MOVEMENT,
    SQ_UPSERT_OFFSET,
    SQ_GET_OFFSET,
    SQ_NOTE_COMMITTED,
    SQ_BEGIN_PERIOD,
    SQ_GET_PERIOD,
    SQ_GET_WATERMARK,
    SQ_SET_WATERMARK,
    SQ_SEQS_AFTER,
    SQ_UPSERT_HEARTBEAT,
    SQ_INSERT_DEAD,
    SQ_SITE_MOVEMENT,
    SQ_SITE_HEARTBEAT,
    SQ_STORED_PAYLOAD,
    SQ_SEQ_FILL,
    SQ_PRUNED_BEFORE,
    SQ_DEAD_ROW,
    SQ_DELETE_MOVEMENT,
    /* store_post.c */
    SQ_DUE_RETRY,
    SQ_INFLIGHT,
    SQ_POSTING_MOVEMENTS,
    SQ_TRIGGERS,
    SQ_LOT_MEMBERS,
    SQ_LOT_DUE_AFTER,
    SQ_LOT_HELD,
    SQ_ORIGINAL,
    SQ_PRIOR_REVERSAL,
    SQ_PAUSES,
    SQ_MARK_POSTING,
    SQ_MARK_MOVEMENT,
    SQ_NOTE_MOVEMENT,
    SQ_CANCEL_MOVEMENT,
    SQ_POSTED,
    SQ_RETRY,
    SQ_FAILED,
    SQ_MOVEMENTS_STATE,
    SQ_REQUEUE_NEW,
    SQ_REQUEUE_NEW_MOVEMENTS,
    SQ_REQUEUE_RETRY,
    SQ_TIER_POSTED,
    SQ_TIER_ERROR,
    SQ_CHUNKS_CLEAR,
    SQ_CHUNK_MOVEMENTS_CLEAR,
    SQ_CHUNK,
    SQ_CHUNK_MOVEMENT,
    /* store_admin.c */
    SQ_AUDIT_LAST,
    SQ_AUDIT_INSERT,
    SQ_AUDIT_HEAD,
    SQ__COUNT
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[SQ__COUNT];
    /* Audit chain head cached inside a transaction begun by store_begin (written
     * once by store_commit). Outside such a transaction (a caller's own BEGIN),
     * every audit row writes the head at once. */
    is_db_sync_t sync;     /* the level store_open was given */
    int sync_relaxed;      /* running with NORMAL instead (store_record_results) */
    int shared;            /* other instances may read the same partitions (store_set_shared) */
    int64_t time_ids_from; /* store_set_time_ordered_ids_from; INT64_MAX = never */
    int in_tx;
    int audit_cached;
    int audit_dirty;
    int64_t audit_id;
    char audit_hash[65];
};

/* store_counts' statement (test_store checks its plan). */
extern const char store_counts_sql[];

/* Each file's SQL, indexed by statement id (NULL where another file owns it). */
extern const char *const store_consume_sql[SQ__COUNT];
extern const char *const store_post_sql[SQ__COUNT];
extern const char *const store_admin_sql[SQ__COUNT];

/* The statement id (all are prepared by store_open), reset and unbound. */
sqlite3_stmt *store_stmt(store_t *s, int id);
/*
 * BEGIN IMMEDIATE after resetting every statement of the connection. A
 * statement left on a row keeps an old read snapshot open, and a connection
 * holding an old snapshot can never become the writer (SQLite answers BUSY
 * at once, without waiting). Resetting first makes that impossible.
 */
is_err_t store_begin(store_t *s) IS_MUST_CHECK;

/* COMMIT (writing the cached audit head first) / ROLLBACK (dropping the cache). */
is_err_t store_commit(store_t *s) IS_MUST_CHECK;
void store_rollback(store_t *s);

/* Bind text or NULL, without a copy (SQLITE_STATIC): v must stay valid and
 * unchanged until the statement's last step; store_stmt clears the binding
 * before the statement is used again. Every caller binds and steps in the
 * same scope. */
void store_bind_text(sqlite3_stmt *st, int i, const char *v);

/* Every reason check_reversal gives starts so (a posting's last_error tells
 * an invalid reversal from an ERP failure when an operator retries it). */
#define STORE_REVERSAL_REASON "reversal "

#endif
