/*
 * db.h — SQLite helpers: open with WAL and migrations, prepared statements,
 * transactions.
 *
 * A store's schema is an ordered array of migration scripts; the version
 * applied is kept in `schema_version`. Opening applies the missing ones in
 * order, each in its own transaction. A database whose version is newer than
 * the code knows is refused (no silent downgrade).
 */
#ifndef INVSYNC_DB_H
#define INVSYNC_DB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum is_db_sync {
    IS_DB_SYNC_FULL = 0,   /* PRAGMA synchronous=FULL: a commit survives power loss */
    IS_DB_SYNC_NORMAL = 1, /* WAL + NORMAL: survives a process crash, not power loss */
    IS_DB_SYNC_OFF = 2,    /* tests and benchmarks of the ceiling only */
} is_db_sync_t;

/*
 * Open (creating) path with journal_mode=WAL, the given synchronous level,
 * busy_timeout 5 s, foreign_keys on, then apply migrations[version..n-1].
 * ":memory:" works (no WAL). On error *out is NULL and errstr names the path.
 */
is_err_t is_db_open(const char *path, const char *const *migrations, size_t n_migrations,
                    is_db_sync_t sync, sqlite3 **out, char *errstr,
                    size_t errstr_size) IS_MUST_CHECK;
/* Change the connection's synchronous level (outside a transaction): for a
 * commit whose loss on power failure the caller can afford, see
 * store_record_results. */
is_err_t is_db_set_sync(sqlite3 *db, is_db_sync_t sync) IS_MUST_CHECK;
/* sqlite3_close_v2; NULL is a no-op. */
void is_db_close(sqlite3 *db);

/*
 * WAL checkpoints: SQLite's own (PASSIVE, in the commit that leaves the WAL
 * at 1,000 pages or more), counted per database file for /metrics.
 */
typedef struct is_db_checkpoint_stats {
    long runs;      /* checkpoints this process's connections ran */
    int wal_frames; /* the WAL's length in pages after the latest commit */
} is_db_checkpoint_stats_t;
/* Fill *out for db's file; returns 0 (and zeros) for ":memory:" or NULL. */
int is_db_checkpoint_stats(sqlite3 *db, is_db_checkpoint_stats_t *out);
/* Format the Prometheus families invsync_db_checkpoints_total and
 * invsync_db_wal_pages for db, labelled db="<label>", into buf. Returns the
 * length written, 0 for ":memory:" or when buf is too small. */
size_t is_db_checkpoint_metrics(sqlite3 *db, const char *label, char *buf, size_t size);

/* Execute SQL with no results (may be several statements). */
is_err_t is_db_exec(sqlite3 *db, const char *sql, char *errstr, size_t errstr_size) IS_MUST_CHECK;
/* Prepare one statement (persistent: for statements reused in a loop). */
is_err_t is_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, char *errstr,
                       size_t errstr_size) IS_MUST_CHECK;

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. rollback is safe without a transaction. */
is_err_t is_db_begin(sqlite3 *db) IS_MUST_CHECK;
is_err_t is_db_commit(sqlite3 *db) IS_MUST_CHECK;
void is_db_rollback(sqlite3 *db);

/* Schema version currently applied (0 for a new database). */
int is_db_schema_version(sqlite3 *db);

/*
 * Claim the database at path for this process: an exclusive flock on
 * "<path>.lock" (created), held until is_db_release or exit. A second
 * service started on the same file gets IS_ERR_CONFIG with errstr naming the
 * file and `what` (e.g. "mes-producer"); two would assign the same sequence
 * numbers, or post the same movements twice. Command-line tools that read or
 * change the file while the service runs do not claim it. *fd_out is -1 for
 * ":memory:".
 */
is_err_t is_db_claim(const char *path, const char *what, int *fd_out, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;
/* Release a claim (fd from is_db_claim; -1 is a no-op). */
void is_db_release(int fd);

/*
 * Retention scan, one batch: read up to max_rows rows of `table` with
 * id > after_id in id order and stop at the first whose `time_col` (int64 ms)
 * is at or past cutoff_ms. *last is the id of the last row before that stop
 * (after_id when there is none): the caller deletes what qualifies in
 * (after_id, *last] and resumes from *last. *done is 1 when the scan met the
 * cutoff or the table's end (fewer than max_rows rows), 0 when a full batch
 * was read. Ids are assumed to follow time_col roughly, so an older row
 * behind a younger one waits for a later cutoff. table and time_col are
 * trusted identifiers (constants), not input. Reads only; runs inside the
 * caller's transaction if there is one. On error *last is after_id,
 * *done is 0 and errstr says which table could not be read.
 */
is_err_t is_db_prune_scan(sqlite3 *db, const char *table, const char *time_col, int64_t after_id,
                          int64_t cutoff_ms, size_t max_rows, int64_t *last, int *done,
                          char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* Fill errstr with "<what>: <sqlite3_errmsg>" and return IS_ERR_DB. */
is_err_t is_db_error(sqlite3 *db, const char *what, char *errstr, size_t errstr_size);

#endif
