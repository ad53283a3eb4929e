/*
 * test_db.c — unit tests for common/db.c: migrations applied once and in
 * order, re-open is a no-op, a newer schema is refused, a failed migration
 * leaves the previous version, WAL and the pragmas on file databases,
 * BEGIN IMMEDIATE and rollback, prepare refusing a second statement, the
 * retention keyset scan's batches.
 *
 * Each test gets a fresh mkdtemp directory; files are small, the whole suite
 * runs in well under a second.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"

typedef struct fixture {
    char dir[256];  /* mkdtemp directory, removed with its files */
    char path[300]; /* dir/test.db */
} fixture_t;

/* Migrations that log their own number, so order and count are visible. */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE applied(n INTEGER NOT NULL);"
    "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
    "INSERT INTO applied VALUES (1);",
    /* Depends on migration 1: fails if run out of order. */
    "ALTER TABLE item ADD COLUMN qty TEXT NOT NULL DEFAULT '0';"
    "INSERT INTO applied VALUES (2);",
    "CREATE TABLE child(id INTEGER PRIMARY KEY,"
    " item_id INTEGER NOT NULL REFERENCES item(id));"
    "INSERT INTO applied VALUES (3);",
    "CREATE INDEX item_name ON item(name);"
    "INSERT INTO applied VALUES (4);",
};

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_db.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;

    while (d && (e = readdir(d)) != NULL) {
        char p[600];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int v = -12345;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void query_text(sqlite3 *db, const char *sql, char *buf, size_t size) {
    sqlite3_stmt *st = NULL;

    buf[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* "1,2,3": the numbers the migrations logged, in the order they ran. */
static void applied_list(sqlite3 *db, char *buf, size_t size) {
    query_text(db, "SELECT group_concat(n, ',') FROM (SELECT n FROM applied ORDER BY rowid)", buf,
               size);
}

static sqlite3 *open_ok(const char *path, size_t n, is_db_sync_t sync) {
    sqlite3 *db = NULL;
    char err[512] = "";
    is_err_t rc = is_db_open(path, MIGRATIONS, n, sync, &db, err, sizeof err);

    if (rc != IS_OK)
        fail_msg("is_db_open(%s, %zu): %s: %s", path, n, is_err_name(rc), err);
    assert_non_null(db);
    return db;
}

static void test_new_database_is_version_zero(void **state) {
    fixture_t *f = *state;
    sqlite3 *db = open_ok(f->path, 0, IS_DB_SYNC_FULL);

    assert_int_equal(is_db_schema_version(db), 0);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM schema_version"), 0);
    is_db_close(db);
}

static void test_migrations_applied_once_in_order(void **state) {
    fixture_t *f = *state;
    char list[64];
    sqlite3 *db = open_ok(f->path, 3, IS_DB_SYNC_FULL);

    assert_int_equal(is_db_schema_version(db), 3);
    applied_list(db, list, sizeof list);
    assert_string_equal(list, "1,2,3");
    /* One schema_version row per migration, in order. */
    query_text(db, "SELECT group_concat(version, ',') FROM schema_version", list, sizeof list);
    assert_string_equal(list, "1,2,3");
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name='item_name'"), 0);
    is_db_close(db);
}

static void test_reopen_is_noop_and_upgrade_applies_only_new(void **state) {
    fixture_t *f = *state;
    char list[64];
    sqlite3 *db = open_ok(f->path, 3, IS_DB_SYNC_FULL);

    assert_int_equal(is_db_exec(db, "INSERT INTO item(name) VALUES ('keep')", NULL, 0), IS_OK);
    is_db_close(db);

    /* Same code again: nothing re-runs (migration 1 would fail: CREATE TABLE). */
    db = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    applied_list(db, list, sizeof list);
    assert_string_equal(list, "1,2,3");
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM item WHERE name='keep'"), 1);
    is_db_close(db);

    /* Newer code: only migration 4 runs. */
    db = open_ok(f->path, 4, IS_DB_SYNC_FULL);
    assert_int_equal(is_db_schema_version(db), 4);
    applied_list(db, list, sizeof list);
    assert_string_equal(list, "1,2,3,4");
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name='item_name'"), 1);
    is_db_close(db);
}

static void test_newer_schema_refused(void **state) {
    fixture_t *f = *state;
    sqlite3 *db = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    char err[512] = "";
    char list[64];
    is_err_t rc;

    is_db_close(db);
    db = (sqlite3 *)(uintptr_t)1; /* must be reset to NULL */
    rc = is_db_open(f->path, MIGRATIONS, 2, IS_DB_SYNC_FULL, &db, err, sizeof err);
    assert_int_equal(rc, IS_ERR_DB);
    assert_null(db);
    /* The message names the file and both versions. */
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "schema version 3"));
    assert_non_null(strstr(err, "(2)"));
    assert_non_null(strstr(err, "newer"));

    /* Nothing was changed by the refused open. */
    db = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    applied_list(db, list, sizeof list);
    assert_string_equal(list, "1,2,3");
    is_db_close(db);
}

static void test_failed_migration_rolls_back(void **state) {
    fixture_t *f = *state;
    /* Migration 2 creates a table and then fails: the table must not stay. */
    const char *const bad[] = {
        MIGRATIONS[0],
        "CREATE TABLE half(x);"
        "INSERT INTO no_such_table VALUES (1);",
    };
    const char *const fixed[] = {MIGRATIONS[0], MIGRATIONS[1]};
    sqlite3 *db = NULL;
    char err[512] = "";
    char list[64];

    assert_int_equal(is_db_open(f->path, bad, 2, IS_DB_SYNC_FULL, &db, err, sizeof err), IS_ERR_DB);
    assert_null(db);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "migration 2"));
    assert_non_null(strstr(err, "no_such_table"));

    db = open_ok(f->path, 1, IS_DB_SYNC_FULL);
    assert_int_equal(is_db_schema_version(db), 1);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name='half'"), 0);
    is_db_close(db);

    assert_int_equal(is_db_open(f->path, fixed, 2, IS_DB_SYNC_FULL, &db, err, sizeof err), IS_OK);
    assert_int_equal(is_db_schema_version(db), 2);
    applied_list(db, list, sizeof list);
    assert_string_equal(list, "1,2");
    is_db_close(db);
}

static void test_file_database_pragmas(void **state) {
    static const struct {
        is_db_sync_t sync;
        int expect; /* PRAGMA synchronous value */
    } cases[] = {
        {IS_DB_SYNC_FULL, 2},
        {IS_DB_SYNC_NORMAL, 1},
        {IS_DB_SYNC_OFF, 0},
    };
    fixture_t *f = *state;
    char mode[32], wal[320];
    struct stat st;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sqlite3 *db = open_ok(f->path, 3, cases[i].sync);

        query_text(db, "PRAGMA journal_mode", mode, sizeof mode);
        assert_string_equal(mode, "wal");
        assert_int_equal(query_int(db, "PRAGMA synchronous"), cases[i].expect);
        assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
        /* foreign_keys is enforced, not just reported. */
        assert_int_equal(is_db_exec(db, "INSERT INTO child(item_id) VALUES (999)", NULL, 0),
                         IS_ERR_DB);
        assert_int_equal(is_db_exec(db, "INSERT INTO item(name) VALUES ('x')", NULL, 0), IS_OK);
        snprintf(wal, sizeof wal, "%s-wal", f->path);
        assert_int_equal(stat(wal, &st), 0);
        is_db_close(db);
    }
}

static void test_memory_database(void **state) {
    char mode[32];
    sqlite3 *db = open_ok(":memory:", 4, IS_DB_SYNC_NORMAL);

    (void)state;
    query_text(db, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "memory");
    assert_int_equal(is_db_schema_version(db), 4);
    is_db_close(db);
}

static void test_open_errors_name_the_path(void **state) {
    fixture_t *f = *state;
    char path[400], err[512] = "";
    sqlite3 *db = NULL;

    snprintf(path, sizeof path, "%s/missing-dir/x.db", f->dir);
    assert_int_equal(is_db_open(path, MIGRATIONS, 1, IS_DB_SYNC_FULL, &db, err, sizeof err),
                     IS_ERR_DB);
    assert_null(db);
    assert_non_null(strstr(err, path));

    assert_int_equal(is_db_open(f->path, MIGRATIONS, 1, (is_db_sync_t)7, &db, err, sizeof err),
                     IS_ERR_INVALID);
    assert_null(db);
    is_db_close(NULL); /* no-op */
}

static void test_rollback_and_commit(void **state) {
    fixture_t *f = *state;
    sqlite3 *db = open_ok(f->path, 3, IS_DB_SYNC_FULL);

    is_db_rollback(db); /* safe without a transaction */
    assert_int_equal(is_db_begin(db), IS_OK);
    assert_int_equal(sqlite3_get_autocommit(db), 0);
    assert_int_equal(is_db_begin(db), IS_ERR_DB); /* no nesting */
    assert_int_equal(is_db_exec(db, "INSERT INTO item(name) VALUES ('gone')", NULL, 0), IS_OK);
    is_db_rollback(db);
    assert_int_not_equal(sqlite3_get_autocommit(db), 0);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM item"), 0);

    assert_int_equal(is_db_begin(db), IS_OK);
    assert_int_equal(is_db_exec(db, "INSERT INTO item(name) VALUES ('kept')", NULL, 0), IS_OK);
    assert_int_equal(is_db_commit(db), IS_OK);
    is_db_rollback(db);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM item WHERE name='kept'"), 1);
    assert_int_equal(is_db_commit(db), IS_ERR_DB); /* nothing to commit */
    is_db_close(db);
}

/* BEGIN IMMEDIATE takes the write lock at once: a second writer is busy at
 * BEGIN, not later at its first write (a deferred BEGIN would succeed). */
static void test_begin_is_immediate(void **state) {
    fixture_t *f = *state;
    sqlite3 *a = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    sqlite3 *b = open_ok(f->path, 3, IS_DB_SYNC_FULL);

    sqlite3_busy_timeout(b, 20);
    assert_int_equal(is_db_begin(a), IS_OK);
    assert_int_equal(is_db_begin(b), IS_ERR_DB);
    assert_int_equal(sqlite3_errcode(b), SQLITE_BUSY);
    /* WAL: readers are not blocked by the writer. */
    assert_int_equal(query_int(b, "SELECT COUNT(*) FROM item"), 0);
    is_db_rollback(a);
    assert_int_equal(is_db_begin(b), IS_OK);
    assert_int_equal(is_db_commit(b), IS_OK);
    is_db_close(a);
    is_db_close(b);
}

typedef struct holder {
    sqlite3 *db;
    int hold_ms;
} holder_t;

static void *hold_then_commit(void *arg) {
    holder_t *h = arg;
    struct timespec ts = {0, h->hold_ms * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(is_db_commit(h->db), IS_OK);
    return NULL;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A writer waits for another connection's write lock (it is not refused). */
static void test_begin_waits_for_the_write_lock(void **state) {
    fixture_t *f = *state;
    sqlite3 *a = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    sqlite3 *b = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    holder_t h = {a, 150};
    pthread_t t;

    assert_int_equal(is_db_begin(a), IS_OK);
    assert_int_equal(is_db_exec(a, "INSERT INTO item(name) VALUES ('held')", NULL, 0), IS_OK);
    int64_t t0 = mono_ms();
    assert_int_equal(pthread_create(&t, NULL, hold_then_commit, &h), 0);
    assert_int_equal(is_db_begin(b), IS_OK); /* waited for a's commit */
    assert_true(mono_ms() - t0 >= 100);
    assert_int_equal(query_int(b, "SELECT COUNT(*) FROM item"), 1);
    assert_int_equal(is_db_commit(b), IS_OK);
    pthread_join(t, NULL);
    is_db_close(a);
    is_db_close(b);
}

static void test_prepare(void **state) {
    fixture_t *f = *state;
    sqlite3 *db = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    sqlite3_stmt *st = NULL;
    char err[256] = "";

    assert_int_equal(is_db_prepare(db, "SELECT COUNT(*) FROM item", &st, err, sizeof err), IS_OK);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    sqlite3_finalize(st);

    assert_int_equal(is_db_prepare(db, "SELECT 1; -- trailing comment\n", &st, err, sizeof err),
                     IS_OK);
    sqlite3_finalize(st);

    assert_int_equal(is_db_prepare(db, "SELECT 1; SELECT 2", &st, err, sizeof err), IS_ERR_INVALID);
    assert_null(st);
    assert_non_null(strstr(err, "more than one statement"));

    assert_int_equal(is_db_prepare(db, "SELEC 1", &st, err, sizeof err), IS_ERR_DB);
    assert_null(st);
    assert_non_null(strstr(err, "prepare: "));
    assert_non_null(strstr(err, "syntax error"));

    assert_int_equal(is_db_prepare(db, "  ", &st, err, sizeof err), IS_ERR_INVALID);
    assert_null(st);
    is_db_close(db);
}

/*
 * is_db_prune_scan: one batch of the retention keyset scan. Rows (id, at):
 * ids with gaps, one row (id 5) older than the one before it.
 */
static void test_prune_scan_batches_up_to_the_cutoff(void **state) {
    (void)state;
    sqlite3 *db = NULL;
    char err[256] = "";
    static const struct {
        int64_t after, cutoff;
        size_t max_rows;
        int64_t last; /* expected */
        int done;     /* expected */
    } cases[] = {
        {0, 35, 10, 5, 1},  /* stops at id 8 (at 50); id 5 (at 25) behind id 3 counts */
        {0, 35, 2, 2, 0},   /* a full batch, cutoff not met: not done */
        {0, 35, 4, 5, 0},   /* exactly max_rows old rows: not done yet */
        {0, 25, 10, 2, 1},  /* stops at id 3 (at 30): the older id 5 waits */
        {0, 10, 10, 0, 1},  /* the cutoff is exclusive: at == cutoff stops */
        {5, 100, 10, 9, 1}, /* resumes after id 5; the table's end: done */
        {5, 100, 2, 9, 0},  /* the last two rows fill the batch: not done */
        {9, 100, 10, 9, 1}, /* nothing after: last stays, done */
        {0, 1000, 0, 0, 0}, /* max_rows 0 reads nothing */
    };

    assert_int_equal(is_db_open(":memory:", NULL, 0, IS_DB_SYNC_OFF, &db, err, sizeof err), IS_OK);
    assert_int_equal(is_db_exec(db,
                                "CREATE TABLE ev(id INTEGER PRIMARY KEY, at INTEGER NOT NULL);"
                                "INSERT INTO ev VALUES (1,10),(2,20),(3,30),(5,25),(8,50),(9,60);",
                                err, sizeof err),
                     IS_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t last = -1;
        int done = -1;
        assert_int_equal(is_db_prune_scan(db, "ev", "at", cases[i].after, cases[i].cutoff,
                                          cases[i].max_rows, &last, &done, err, sizeof err),
                         IS_OK);
        if (last != cases[i].last || done != cases[i].done)
            fail_msg("case %zu: last %lld done %d, want last %lld done %d", i, (long long)last,
                     done, (long long)cases[i].last, cases[i].done);
    }
    /* It only reads. */
    sqlite3_stmt *st = NULL;
    assert_int_equal(is_db_prepare(db, "SELECT COUNT(*) FROM ev", &st, err, sizeof err), IS_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 6);
    sqlite3_finalize(st);

    /* An error leaves last at after and done 0. */
    int64_t last = -1;
    int done = -1;
    assert_int_equal(is_db_prune_scan(db, "nope", "at", 3, 100, 10, &last, &done, err, sizeof err),
                     IS_ERR_DB);
    assert_int_equal(last, 3);
    assert_int_equal(done, 0);
    assert_non_null(strstr(err, "no such table"));
    is_db_close(db);
}

static void test_exec_and_error_messages(void **state) {
    fixture_t *f = *state;
    sqlite3 *db = open_ok(f->path, 3, IS_DB_SYNC_FULL);
    char err[256] = "";

    assert_int_equal(is_db_exec(db,
                                "INSERT INTO item(name) VALUES (1); INSERT INTO nope VALUES (1)",
                                err, sizeof err),
                     IS_ERR_DB);
    assert_non_null(strstr(err, "no such table: nope"));

    assert_int_equal(is_db_exec(db, "SELECT * FROM nope2", NULL, 0), IS_ERR_DB);
    assert_int_equal(is_db_error(db, "load item", err, sizeof err), IS_ERR_DB);
    assert_string_equal(err, "load item: no such table: nope2");
    is_db_close(db);
}

typedef struct opener {
    const char *path;
    is_err_t rc;
    char err[256];
} opener_t;

static void *open_thread(void *arg) {
    opener_t *o = arg;
    sqlite3 *db = NULL;

    o->rc = is_db_open(o->path, MIGRATIONS, 4, IS_DB_SYNC_NORMAL, &db, o->err, sizeof o->err);
    is_db_close(db);
    return NULL;
}

/* Several processes (here threads with their own connections) opening one
 * new file at once: each migration still runs exactly once. */
static void test_concurrent_open_migrates_once(void **state) {
    fixture_t *f = *state;
    opener_t o[4];
    pthread_t t[4];
    char list[64];
    sqlite3 *db;

    for (int i = 0; i < 4; i++) {
        o[i] = (opener_t){.path = f->path, .rc = IS_ERR_INVALID};
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
    }
    for (int i = 0; i < 4; i++) /* all joined before any assert can jump out */
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) {
        if (o[i].rc != IS_OK)
            fail_msg("opener %d: %s", i, o[i].err);
    }
    db = open_ok(f->path, 4, IS_DB_SYNC_FULL);
    applied_list(db, list, sizeof list);
    assert_string_equal(list, "1,2,3,4");
    is_db_close(db);
}

/* ---- background checkpoints --------------------------------------------- */

static const char *const BLOBS[] = {"CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);"};

static sqlite3 *open_blobs(const char *path, is_db_sync_t sync) {
    sqlite3 *db = NULL;
    char err[512] = "";
    if (is_db_open(path, BLOBS, 1, sync, &db, err, sizeof err) != IS_OK)
        fail_msg("is_db_open(%s): %s", path, err);
    return db;
}

/* Commit n transactions of about `pages` 4 KiB pages each. */
static void write_pages(sqlite3 *db, int n, int pages) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO blobs(b) VALUES (zeroblob(?1))", -1, &st, NULL),
        SQLITE_OK);
    for (int i = 0; i < n; i++) {
        assert_int_equal(is_db_begin(db), IS_OK);
        sqlite3_bind_int(st, 1, pages * 4000);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
        assert_int_equal(is_db_commit(db), IS_OK);
    }
    sqlite3_finalize(st);
}

static is_db_checkpoint_stats_t ckpt_stats(sqlite3 *db) {
    is_db_checkpoint_stats_t s;
    assert_true(is_db_checkpoint_stats(db, &s));
    return s;
}

/* A commit that leaves the WAL at 1,000 pages or more checkpoints it (the
 * hook does what SQLite's autocheckpoint would), and the next writer starts
 * the WAL over; the counters see both. */
static void test_checkpoints_counted_and_wal_started_over(void **state) {
    fixture_t *f = *state;
    sqlite3 *db = open_blobs(f->path, IS_DB_SYNC_NORMAL);

    assert_int_equal(ckpt_stats(db).runs, 0);
    write_pages(db, 10, 10); /* ~110 pages: below the threshold */
    assert_int_equal(ckpt_stats(db).runs, 0);
    assert_true(ckpt_stats(db).wal_frames > 100);
    write_pages(db, 1, 1100); /* one commit past 1,000 pages */
    assert_int_equal(ckpt_stats(db).runs, 1);
    assert_true(ckpt_stats(db).wal_frames > 1100);
    write_pages(db, 1, 1);
    int after = ckpt_stats(db).wal_frames;
    if (after > 10)
        fail_msg("the WAL holds %d pages after a checkpoint of all of it: not started over", after);
    assert_int_equal(query_int(db, "SELECT count(*) FROM blobs"), 12);
    is_db_close(db);
}

static long wal_bytes(const char *db_path) {
    char wal[400];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    return stat(wal, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Connections of one process share their file's counters, which outlive the
 * first close; SQLite's last close checkpoints and removes the WAL. */
static void test_last_close_removes_the_wal(void **state) {
    fixture_t *f = *state;
    sqlite3 *a = open_blobs(f->path, IS_DB_SYNC_FULL);
    sqlite3 *b = open_blobs(f->path, IS_DB_SYNC_FULL);

    write_pages(a, 3, 2);
    assert_true(wal_bytes(f->path) > 0);
    is_db_close(a);
    is_db_checkpoint_stats_t s;
    assert_true(is_db_checkpoint_stats(b, &s)); /* still counted for b */
    write_pages(b, 2, 2);
    assert_int_equal(query_int(b, "SELECT count(*) FROM blobs"), 5);
    is_db_close(b);
    assert_int_equal(wal_bytes(f->path), -1);
    b = open_blobs(f->path, IS_DB_SYNC_FULL); /* everything is in the database file */
    assert_int_equal(query_int(b, "SELECT count(*) FROM blobs"), 5);
    is_db_close(b);
}

/* No counters for a memory database, nor for NULL. */
static void test_memory_database_has_no_checkpointer(void **state) {
    (void)state;
    sqlite3 *db = open_ok(":memory:", 1, IS_DB_SYNC_FULL);
    is_db_checkpoint_stats_t s = {.runs = -1};
    assert_false(is_db_checkpoint_stats(db, &s));
    assert_int_equal(s.runs, 0);
    assert_false(is_db_checkpoint_stats(NULL, &s));
    is_db_close(db);
}

/* A reader that keeps its snapshot (an operator's long query) pins the WAL:
 * no checkpoint can get past it, and the WAL grows. Commits must not queue
 * behind that reader, the counters must show the growth, and once the reader
 * ends the next checkpoint catches up and the WAL starts over. */
static void test_long_reader_does_not_stall_commits(void **state) {
    fixture_t *f = *state;
    sqlite3 *w = open_blobs(f->path, IS_DB_SYNC_OFF);
    sqlite3 *r = open_blobs(f->path, IS_DB_SYNC_OFF);
    write_pages(w, 1, 1);
    assert_int_equal(is_db_exec(r, "BEGIN", NULL, 0), IS_OK);
    assert_int_equal(query_int(r, "SELECT count(*) FROM blobs"), 1); /* snapshot taken */
    int64_t t0 = mono_ms(), worst = 0;
    for (int i = 0; i < 100; i++) { /* ~35,000 pages */
        int64_t s0 = mono_ms();
        write_pages(w, 1, 340);
        if (mono_ms() - s0 > worst)
            worst = mono_ms() - s0;
    }
    int64_t took = mono_ms() - t0;
    is_db_checkpoint_stats_t st = ckpt_stats(w);
    assert_true(st.wal_frames > 30000); /* pinned: nothing could start it over */
    /* A checkpoint that waited for the reader would take 5 s (busy timeout). */
    if (worst > 1000 || took > 10000)
        fail_msg("commits waited for the reader: worst %lld ms, all %lld ms", (long long)worst,
                 (long long)took);
    assert_int_equal(is_db_exec(r, "COMMIT", NULL, 0), IS_OK);
    write_pages(w, 2, 1); /* checkpoint (all of it now) ... */
    write_pages(w, 1, 1); /* ... and the WAL starts over */
    st = ckpt_stats(w);
    if (st.wal_frames > 10)
        fail_msg("the WAL holds %d pages after the reader ended", st.wal_frames);
    /* ... and its file, ~140 MB while pinned, is cut back to journal_size_limit. */
    if (wal_bytes(f->path) > 16L * 1024 * 1024)
        fail_msg("the WAL file is still %ld bytes", wal_bytes(f->path));
    assert_int_equal(query_int(w, "SELECT count(*) FROM blobs"), 104);
    is_db_close(r);
    is_db_close(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_database_is_version_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_applied_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_is_noop_and_upgrade_applies_only_new, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_database_pragmas, setup, teardown),
        cmocka_unit_test(test_memory_database),
        cmocka_unit_test_setup_teardown(test_open_errors_name_the_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_waits_for_the_write_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare, setup, teardown),
        cmocka_unit_test(test_prune_scan_batches_up_to_the_cutoff),
        cmocka_unit_test_setup_teardown(test_exec_and_error_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_open_migrates_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_counted_and_wal_started_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_last_close_removes_the_wal, setup, teardown),
        cmocka_unit_test(test_memory_database_has_no_checkpointer),
        cmocka_unit_test_setup_teardown(test_long_reader_does_not_stall_commits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
