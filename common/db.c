/*
 * db.c — SQLite helpers: open with WAL and ordered migrations, prepared
 * statements, BEGIN IMMEDIATE transactions.
 *
 * Each service opens its store once at start (plus one connection per thread
 * that needs one) and then runs short write transactions at the rate of
 * incoming movements — hundreds to a few thousand per second at most. Opening
 * is therefore allowed to be thorough: it sets the pragmas, checks that WAL
 * really took effect for a file database, and brings the schema up to date.
 *
 * Schema versions live in `schema_version`, one row per applied migration
 * (version n means migrations[0..n-1] are applied). Every migration runs in
 * its own BEGIN IMMEDIATE transaction that re-reads the version first, so two
 * processes opening the same new file at once apply each migration exactly
 * once. A file whose version is above what the code knows is refused: the
 * code cannot know what a later schema means, and silently using it could
 * corrupt it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "log.h"

#define DB_BUSY_TIMEOUT_MS 5000
/* A WAL that grew past this (a long reader held checkpoints back) is cut back
 * to it when it starts over; in normal operation it stays near 4 MiB. */
#define JOURNAL_SIZE_LIMIT "16777216"

static const char SCHEMA_VERSION_DDL[] =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY," /* migrations[0..version-1] are applied */
    " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))";

is_err_t is_db_error(sqlite3 *db, const char *what, char *errstr, size_t errstr_size) {
    is_errf(errstr, errstr_size, "%s: %s", what ? what : "sqlite",
            db ? sqlite3_errmsg(db) : "out of memory");
    return IS_ERR_DB;
}

/* Run a one-column query and read an int from its first row (0 if none). */
static int query_int(sqlite3 *db, const char *sql, int *out) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    *out = 0;
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/*
 * Read the applied version into *out; 0 when schema_version does not exist
 * yet. Returns an SQLite result code.
 */
static int read_schema_version(sqlite3 *db, int *out) {
    int exists = 0;
    int rc = query_int(db,
                       "SELECT COUNT(*) FROM sqlite_master"
                       " WHERE type = 'table' AND name = 'schema_version'",
                       &exists);

    *out = 0;
    if (rc != SQLITE_OK || !exists)
        return rc;
    return query_int(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", out);
}

is_err_t is_db_prune_scan(sqlite3 *db, const char *table, const char *time_col, int64_t after_id,
                          int64_t cutoff_ms, size_t max_rows, int64_t *last, int *done,
                          char *errstr, size_t errstr_size) {
    sqlite3_stmt *scan = NULL;
    char sql[160], what[96];
    size_t seen = 0;
    is_err_t rc;
    int src;

    *last = after_id;
    *done = 0;
    if (!db || !table || !time_col) {
        is_errf(errstr, errstr_size, "is_db_prune_scan: NULL argument");
        return IS_ERR_INVALID;
    }
    int n = snprintf(sql, sizeof sql, "SELECT id, %s FROM %s WHERE id > ?1 ORDER BY id LIMIT ?2",
                     time_col, table);
    if (n < 0 || (size_t)n >= sizeof sql) {
        is_errf(errstr, errstr_size, "is_db_prune_scan: table name too long");
        return IS_ERR_INVALID;
    }
    rc = is_db_prepare(db, sql, &scan, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    sqlite3_bind_int64(scan, 1, after_id);
    sqlite3_bind_int64(scan, 2, (sqlite3_int64)max_rows);
    while ((src = sqlite3_step(scan)) == SQLITE_ROW) {
        seen++;
        if (sqlite3_column_int64(scan, 1) >= cutoff_ms) {
            *done = 1; /* the rest is younger, or waits for a later cutoff */
            break;
        }
        *last = sqlite3_column_int64(scan, 0);
    }
    sqlite3_finalize(scan);
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        snprintf(what, sizeof what, "read %s for retention", table);
        *last = after_id;
        *done = 0;
        return is_db_error(db, what, errstr, errstr_size);
    }
    if (seen < max_rows)
        *done = 1;
    return IS_OK;
}

/* Returns 0 for a new database and -1 when the version cannot be read. */
int is_db_schema_version(sqlite3 *db) {
    int v;
    if (!db || read_schema_version(db, &v) != SQLITE_OK)
        return -1;
    return v;
}

is_err_t is_db_exec(sqlite3 *db, const char *sql, char *errstr, size_t errstr_size) {
    char *msg = NULL;
    is_err_t rc = IS_OK;

    if (!db || !sql) {
        is_errf(errstr, errstr_size, "is_db_exec: NULL argument");
        return IS_ERR_INVALID;
    }
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        is_errf(errstr, errstr_size, "%s (in \"%.60s%s\")", msg ? msg : sqlite3_errmsg(db), sql,
                strlen(sql) > 60 ? "..." : "");
        rc = IS_ERR_DB;
    }
    sqlite3_free(msg);
    return rc;
}

is_err_t is_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, char *errstr,
                       size_t errstr_size) {
    sqlite3_stmt *st = NULL, *extra = NULL;
    const char *tail = NULL;
    is_err_t rc = IS_OK;

    if (!out)
        return IS_ERR_INVALID;
    *out = NULL;
    if (!db || !sql) {
        is_errf(errstr, errstr_size, "is_db_prepare: NULL argument");
        return IS_ERR_INVALID;
    }
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) != SQLITE_OK) {
        rc = is_db_error(db, "prepare", errstr, errstr_size);
        goto done;
    }
    if (!st) {
        is_errf(errstr, errstr_size, "prepare: no SQL statement in \"%.60s\"", sql);
        rc = IS_ERR_INVALID;
        goto done;
    }
    /* A second statement would be silently ignored: refuse it. A trailing
     * comment or ';' compiles to no statement and is fine. */
    if (tail && *tail) {
        if (sqlite3_prepare_v2(db, tail, -1, &extra, NULL) != SQLITE_OK || extra) {
            is_errf(errstr, errstr_size, "prepare: more than one statement in \"%.60s\"", sql);
            rc = IS_ERR_INVALID;
            goto done;
        }
    }
    *out = st;
    st = NULL;
done:
    sqlite3_finalize(extra);
    sqlite3_finalize(st);
    return rc;
}

is_err_t is_db_begin(sqlite3 *db) {
    if (!db)
        return IS_ERR_INVALID;
    return sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? IS_OK : IS_ERR_DB;
}

/* On failure the transaction may still be open: the caller rolls back. */
is_err_t is_db_commit(sqlite3 *db) {
    if (!db)
        return IS_ERR_INVALID;
    return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? IS_OK : IS_ERR_DB;
}

void is_db_rollback(sqlite3 *db) {
    /* sqlite3_get_autocommit is nonzero outside a transaction, including
     * after SQLite rolled one back by itself (e.g. on SQLITE_FULL). */
    if (db && !sqlite3_get_autocommit(db))
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static void wal_stats_release(sqlite3 *db);

void is_db_close(sqlite3 *db) {
    if (db)
        wal_stats_release(db);
}

/* Run one pragma and read its single text result (if any) into buf. */
static int pragma(sqlite3 *db, const char *sql, char *buf, size_t buf_size) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (buf && buf_size)
        buf[0] = '\0';
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (buf && buf_size && t)
            snprintf(buf, buf_size, "%s", (const char *)t);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/*
 * Busy handler: wait for another connection's write lock in short steps.
 * SQLite's own (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25 … 100 ms
 * between tries, so two threads taking turns with short transactions (the
 * HTTP writer and the forwarder, the consume loop and the poster) lose tens
 * of milliseconds per collision — the tail of the end-to-end latency. Here:
 * 50 µs steps at first, then 250 µs, then 1 ms, up to DB_BUSY_TIMEOUT_MS in
 * total (a connection is used by one thread at a time, so the start of the
 * current wait can live in a thread-local).
 */
static _Thread_local int64_t busy_since_us;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Process-wide SQLite settings, applied once before the first connection
 * (sqlite3_config is only allowed before sqlite3_initialize). Memory
 * statistics off: with them on, every SQLite allocation and free takes a
 * global mutex to keep counters nothing here reads — 6 % of the consumer's
 * instructions per real-time posting (docs/PERFORMANCE.md §5.6).
 */
static void configure_sqlite(void) {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* MISUSE if already initialized: harmless */
}

static int busy_wait(void *opaque, int tries) {
    (void)opaque;
    int64_t now = now_us();
    if (tries == 0)
        busy_since_us = now;
    if (now - busy_since_us >= (int64_t)DB_BUSY_TIMEOUT_MS * 1000)
        return 0; /* give up: the caller gets SQLITE_BUSY */
    struct timespec ts = {0, (tries < 20 ? 50 : tries < 200 ? 250 : 1000) * 1000L};
    nanosleep(&ts, NULL);
    return 1;
}

/*
 * PRAGMA journal_mode=WAL, retried for up to the busy timeout: switching a
 * new file to WAL needs an exclusive lock, and when several connections open
 * the same new file at once SQLite answers SQLITE_BUSY without calling the
 * busy handler (it would deadlock), so the wait is done here.
 */
static int set_wal(sqlite3 *db, char *mode, size_t mode_size) {
    int rc;

    for (int waited = 0;; waited += 10) {
        rc = pragma(db, "PRAGMA journal_mode=WAL", mode, mode_size);
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || waited >= DB_BUSY_TIMEOUT_MS)
            return rc;
        sqlite3_sleep(10);
    }
}

/*
 * Apply migrations[version..n-1], each in its own BEGIN IMMEDIATE transaction
 * that re-reads the version under the write lock (another process may have
 * migrated in between).
 */
static is_err_t migrate(sqlite3 *db, const char *path, const char *const *migrations,
                        size_t n_migrations, char *errstr, size_t errstr_size) {
    sqlite3_stmt *ins = NULL;
    char msg[256];
    int version = 0, opened_at = -1; /* the file's version when opened: 0 = new */
    is_err_t rc = IS_OK;

    for (;;) {
        /* Everything, even creating schema_version, under the write lock
         * taken at BEGIN: an autocommit write could fail with
         * SQLITE_BUSY_SNAPSHOT when another process migrates concurrently. */
        if (is_db_begin(db) != IS_OK) {
            rc = is_db_error(db, "begin migration", msg, sizeof msg);
            goto fail;
        }
        if (sqlite3_exec(db, SCHEMA_VERSION_DDL, NULL, NULL, NULL) != SQLITE_OK) {
            rc = is_db_error(db, "create schema_version", msg, sizeof msg);
            goto fail;
        }
        if (read_schema_version(db, &version) != SQLITE_OK) {
            rc = is_db_error(db, "read schema_version", msg, sizeof msg);
            goto fail;
        }
        if (opened_at < 0)
            opened_at = version;
        if (version < 0 || (size_t)version > n_migrations) {
            is_errf(errstr, errstr_size,
                    "database '%s' has schema version %d, newer than this program knows (%zu); "
                    "refusing to open it (was it written by a newer release?)",
                    path, version, n_migrations);
            rc = IS_ERR_DB;
            goto out;
        }
        if ((size_t)version == n_migrations)
            break;
        if (!migrations[version]) {
            snprintf(msg, sizeof msg, "migration %d is NULL", version + 1);
            rc = IS_ERR_INVALID;
            goto fail;
        }
        /* An existing file being upgraded (not a new one being created): say
         * so, with the time it takes (a table rebuild can take seconds). */
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (sqlite3_exec(db, migrations[version], NULL, NULL, NULL) != SQLITE_OK) {
            char what[48];
            snprintf(what, sizeof what, "migration %d", version + 1);
            rc = is_db_error(db, what, msg, sizeof msg);
            goto fail;
        }
        if (!ins && sqlite3_prepare_v2(db, "INSERT INTO schema_version(version) VALUES (?)", -1,
                                       &ins, NULL) != SQLITE_OK) {
            rc = is_db_error(db, "prepare schema_version insert", msg, sizeof msg);
            goto fail;
        }
        sqlite3_reset(ins);
        sqlite3_bind_int(ins, 1, version + 1);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = is_db_error(db, "record schema_version", msg, sizeof msg);
            goto fail;
        }
        if (is_db_commit(db) != IS_OK) {
            rc = is_db_error(db, "commit migration", msg, sizeof msg);
            goto fail;
        }
        if (opened_at > 0) {
            struct timespec t1;
            char to[16], ms[32];
            clock_gettime(CLOCK_MONOTONIC, &t1);
            snprintf(to, sizeof to, "%d", version + 1);
            snprintf(ms, sizeof ms, "%.0f",
                     (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                         (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
            is_log(IS_LOG_INFO, "database upgraded", "database", path, "schema_version", to,
                   "duration_ms", ms, NULL);
        }
    }
    /* Up to date: end the transaction of the last iteration. */
    if (is_db_commit(db) != IS_OK) {
        rc = is_db_error(db, "commit", msg, sizeof msg);
        goto fail;
    }
    goto out;
fail:
    is_errf(errstr, errstr_size, "database '%s' (schema version %d of %zu): %s", path, version,
            n_migrations, msg);
out:
    sqlite3_finalize(ins);
    is_db_rollback(db);
    return rc;
}

static const char *const sync_sql[] = {
    [IS_DB_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [IS_DB_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [IS_DB_SYNC_OFF] = "PRAGMA synchronous=OFF",
};

is_err_t is_db_set_sync(sqlite3 *db, is_db_sync_t sync) {
    if (!db || (unsigned)sync > IS_DB_SYNC_OFF)
        return IS_ERR_INVALID;
    return sqlite3_exec(db, sync_sql[sync], NULL, NULL, NULL) == SQLITE_OK ? IS_OK : IS_ERR_DB;
}

/*
 * Checkpoints, counted.
 *
 * SQLite checkpoints the WAL inside the commit that leaves it at 1,000 pages
 * or more (a PASSIVE checkpoint: copy the WAL into the database, sync both),
 * and the next writer after a checkpoint that caught up starts the WAL over.
 * Each connection is_db_open makes gets a WAL hook that does exactly that
 * (what sqlite3_wal_autocheckpoint installs) and also counts, per database
 * file and process, the checkpoints and the WAL's length after the latest
 * commit, for /metrics.
 *
 * Moving the checkpoints to a background thread was measured and rejected
 * (docs/PERFORMANCE.md §5.8): under steady small commits a checkpoint that
 * runs beside the writers never quite catches up, so the WAL is never
 * started over; at 1,000 real-time movements/s the consumer's store WAL grew
 * to the bound within seconds and end-to-end p99 went from 30 to ~100 ms.
 * Inline, the committing thread checkpoints while its own writes are done,
 * and the WAL starts over many times a second.
 *
 * Left as SQLite has it: passive checkpoints never wait for anyone, so a
 * long reader, or writers that never leave a gap, let the WAL grow until
 * they stop (invsync_db_wal_pages, alert InvsyncWalOutgrown). Forcing it
 * back with RESTART checkpoints was tried: with a short wait they rarely got
 * their turn beside two busy writers, with a long one a reader would stall
 * every commit.
 */
#define CKPT_FRAMES 1000 /* SQLite's own autocheckpoint threshold */

typedef struct ckpt_file {
    struct ckpt_file *next; /* registry, guarded by ckpt_mu */
    char *path;             /* sqlite3_db_filename of the main database */
    int refs;               /* connections sharing it, guarded by ckpt_mu */
    atomic_int wal_frames;  /* the WAL's length after the latest commit */
    atomic_long runs;       /* checkpoints that completed (SQLITE_OK) */
} ckpt_file_t;

static pthread_mutex_t ckpt_mu = PTHREAD_MUTEX_INITIALIZER;
static ckpt_file_t *ckpt_list;

/* SQLite calls this after each commit of a connection, with the WAL's length. */
static int ckpt_wal_hook(void *arg, sqlite3 *db, const char *schema, int frames) {
    ckpt_file_t *c = arg;
    atomic_store(&c->wal_frames, frames);
    if (frames >= CKPT_FRAMES &&
        sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) == SQLITE_OK)
        atomic_fetch_add(&c->runs, 1);
    return SQLITE_OK; /* a checkpoint that could not run is retried at the next commit */
}

/* Share (or create) the counters of file and hook db to them. */
static is_err_t wal_stats_attach(sqlite3 *db, const char *file, char *errstr, size_t errstr_size) {
    ckpt_file_t *c;
    pthread_mutex_lock(&ckpt_mu);
    for (c = ckpt_list; c && strcmp(c->path, file) != 0; c = c->next)
        ;
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c || !(c->path = strdup(file))) {
            free(c);
            pthread_mutex_unlock(&ckpt_mu);
            is_errf(errstr, errstr_size, "database '%s': out of memory", file);
            return IS_ERR_NOMEM;
        }
        c->next = ckpt_list;
        ckpt_list = c;
    }
    c->refs++;
    sqlite3_wal_hook(db, ckpt_wal_hook, c);
    pthread_mutex_unlock(&ckpt_mu);
    return IS_OK;
}

/* Close db; the last connection of a file frees its counters. */
static void wal_stats_release(sqlite3 *db) {
    pthread_mutex_lock(&ckpt_mu);
    /* sqlite3_wal_hook returns the previous argument: ours if it is registered. */
    void *arg = sqlite3_wal_hook(db, NULL, NULL);
    ckpt_file_t **pp = &ckpt_list, *c = NULL;
    for (; *pp; pp = &(*pp)->next)
        if (*pp == arg) {
            c = *pp;
            break;
        }
    sqlite3_close_v2(db);
    if (c && --c->refs == 0) {
        *pp = c->next;
        free(c->path);
        free(c);
    }
    pthread_mutex_unlock(&ckpt_mu);
}

int is_db_checkpoint_stats(sqlite3 *db, is_db_checkpoint_stats_t *out) {
    const char *file = db ? sqlite3_db_filename(db, "main") : NULL;
    int found = 0;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ckpt_mu);
    for (ckpt_file_t *c = ckpt_list; c && file && *file && !found; c = c->next)
        if (strcmp(c->path, file) == 0) {
            out->runs = atomic_load(&c->runs);
            out->wal_frames = atomic_load(&c->wal_frames);
            found = 1;
        }
    pthread_mutex_unlock(&ckpt_mu);
    return found;
}

size_t is_db_checkpoint_metrics(sqlite3 *db, const char *label, char *buf, size_t size) {
    is_db_checkpoint_stats_t st;
    if (!is_db_checkpoint_stats(db, &st))
        return 0;
    int n = snprintf(
        buf, size,
        "# HELP invsync_db_checkpoints_total WAL checkpoints run by this process's commits.\n"
        "# TYPE invsync_db_checkpoints_total counter\n"
        "invsync_db_checkpoints_total{db=\"%s\"} %ld\n"
        "# HELP invsync_db_wal_pages Pages in the write-ahead log after the latest commit.\n"
        "# TYPE invsync_db_wal_pages gauge\n"
        "invsync_db_wal_pages{db=\"%s\"} %d\n",
        label, st.runs, label, st.wal_frames);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

is_err_t is_db_open(const char *path, const char *const *migrations, size_t n_migrations,
                    is_db_sync_t sync, sqlite3 **out, char *errstr, size_t errstr_size) {
    sqlite3 *db = NULL;
    const char *file;
    char mode[32];
    is_err_t rc = IS_OK;

    if (!out)
        return IS_ERR_INVALID;
    *out = NULL;
    if (!path || (n_migrations && !migrations) || (unsigned)sync > IS_DB_SYNC_OFF) {
        is_errf(errstr, errstr_size, "database '%s': invalid arguments", path ? path : "(null)");
        return IS_ERR_INVALID;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, configure_sqlite);
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        is_errf(errstr, errstr_size, "cannot open database '%s': %s", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        rc = db ? IS_ERR_DB : IS_ERR_NOMEM;
        goto done;
    }
    /* Before anything that takes a lock, so the pragmas below wait too. */
    sqlite3_busy_handler(db, busy_wait, NULL);

    if (set_wal(db, mode, sizeof mode) != SQLITE_OK) {
        rc = IS_ERR_DB;
        is_errf(errstr, errstr_size, "database '%s': journal_mode=WAL: %s", path,
                sqlite3_errmsg(db));
        goto done;
    }
    /* An in-memory or temporary database has no file name and stays in
     * "memory" mode; a file that is not in WAL mode is an error (e.g. a
     * file system without shared memory support). */
    file = sqlite3_db_filename(db, "main");
    if (file && *file && strcmp(mode, "wal") != 0) {
        rc = IS_ERR_DB;
        is_errf(errstr, errstr_size, "database '%s': journal_mode is '%s', not 'wal'", path, mode);
        goto done;
    }
    /* An 8 MiB page cache per connection (the default is 2 MiB): the stores' hot
     * indexes stay in memory under load; temp b-trees (GROUP BY, ORDER BY) too. */
    if (pragma(db, sync_sql[sync], NULL, 0) != SQLITE_OK ||
        pragma(db, "PRAGMA foreign_keys=ON", NULL, 0) != SQLITE_OK ||
        pragma(db, "PRAGMA cache_size=-8192", NULL, 0) != SQLITE_OK ||
        pragma(db, "PRAGMA temp_store=MEMORY", NULL, 0) != SQLITE_OK ||
        pragma(db, "PRAGMA journal_size_limit=" JOURNAL_SIZE_LIMIT, NULL, 0) != SQLITE_OK) {
        rc = IS_ERR_DB;
        is_errf(errstr, errstr_size, "database '%s': pragma: %s", path, sqlite3_errmsg(db));
        goto done;
    }
    rc = migrate(db, path, migrations, n_migrations, errstr, errstr_size);
    if (rc == IS_OK && file && *file)
        rc = wal_stats_attach(db, file, errstr, errstr_size);
done:
    if (rc != IS_OK) {
        is_db_close(db);
        return rc;
    }
    *out = db;
    return IS_OK;
}

is_err_t is_db_claim(const char *path, const char *what, int *fd_out, char *errstr,
                     size_t errstr_size) {
    char *lock = NULL;
    int fd;

    *fd_out = -1;
    if (strcmp(path, ":memory:") == 0)
        return IS_OK;
    if (asprintf(&lock, "%s.lock", path) < 0) {
        is_errf(errstr, errstr_size, "out of memory");
        return IS_ERR_NOMEM;
    }
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EACCES)
        fd = open(lock, O_RDONLY | O_CLOEXEC); /* left by another user: flock needs no write */
    if (fd < 0) {
        is_errf(errstr, errstr_size, "cannot create %s: %s", lock, strerror(errno));
        free(lock);
        return IS_ERR_IO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            is_errf(errstr, errstr_size,
                    "%s is in use by another %s (it holds %s): stop that one first, or give "
                    "this one its own file",
                    path, what, lock);
        else
            is_errf(errstr, errstr_size, "cannot lock %s: %s", lock, strerror(e));
        free(lock);
        return e == EWOULDBLOCK ? IS_ERR_CONFIG : IS_ERR_IO;
    }
    free(lock);
    *fd_out = fd;
    return IS_OK;
}

void is_db_release(int fd) {
    if (fd >= 0)
        close(fd); /* drops the flock */
}
