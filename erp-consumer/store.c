/*
 * store.c — erp-consumer's SQLite state (see store.h for the model).
 *
 * Load: the consume loop applies poll batches of up to a few thousand
 * messages per transaction; the poster fetches and records batches of up to
 * a few hundred postings per transaction. Statements used in loops are
 * prepared once per connection.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "duration.h"
#include "hash.h"
#include "store_int.h"

static const char *const store_migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE movements("
    "  id INTEGER PRIMARY KEY,"
    "  source_system TEXT NOT NULL,"
    "  movement_id TEXT NOT NULL,"
    "  producer_id TEXT NOT NULL,"
    "  site TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  lot_key TEXT NOT NULL,"
    "  tier TEXT NOT NULL,"
    "  type INTEGER NOT NULL,"
    "  topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  accepted_at INTEGER NOT NULL,"
    "  due_at INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  posting_id TEXT,"
    "  reason TEXT," /* why dead / ignored / cancelled */
    "  note TEXT,"   /* promotion */
    "  policy_version TEXT NOT NULL DEFAULT '',"
    "  payload BLOB NOT NULL,"
    "  UNIQUE(source_system, movement_id));"
    "CREATE INDEX movements_trigger ON movements(state, due_at);"
    "CREATE INDEX movements_lot ON movements(lot_key, state, producer_id, seq);"
    "CREATE INDEX movements_seq ON movements(producer_id, site, seq);"
    "CREATE INDEX movements_posting ON movements(posting_id);"
    "CREATE TABLE watermarks(producer_id TEXT NOT NULL, site TEXT NOT NULL,"
    "  contiguous INTEGER NOT NULL, PRIMARY KEY(producer_id, site)) WITHOUT ROWID;"
    "CREATE TABLE offsets(topic TEXT NOT NULL, part INTEGER NOT NULL,"
    "  next_offset INTEGER NOT NULL, PRIMARY KEY(topic, part)) WITHOUT ROWID;"
    "CREATE TABLE postings(posting_id TEXT PRIMARY KEY, site TEXT NOT NULL,"
    "  tier TEXT NOT NULL, lot_key TEXT NOT NULL, state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER, erp_doc TEXT,"
    "  last_error TEXT, lines INTEGER, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX postings_state ON postings(state, next_at);"
    "CREATE INDEX postings_doc ON postings(erp_doc);"
    "CREATE TABLE heartbeats(producer_id TEXT NOT NULL, site TEXT NOT NULL,"
    "  last_sequence INTEGER NOT NULL, hb_time INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL, backlog INTEGER NOT NULL,"
    "  PRIMARY KEY(producer_id, site)) WITHOUT ROWID;"
    "CREATE TABLE dead_letters(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    "  part INTEGER NOT NULL, off INTEGER NOT NULL, movement_id TEXT,"
    "  reason TEXT NOT NULL, at INTEGER NOT NULL);"
    "CREATE TABLE pauses(site TEXT NOT NULL, tier TEXT NOT NULL, actor TEXT,"
    "  reason TEXT, at INTEGER NOT NULL, PRIMARY KEY(site, tier)) WITHOUT ROWID;"
    "CREATE TABLE policy_versions(version TEXT PRIMARY KEY, first_seen_at INTEGER NOT NULL,"
    "  first_movement TEXT) WITHOUT ROWID;"
    /* Hash-chained, append-only: hash = SHA-256 over prev_hash and the row's fields. */
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL,"
    "  action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT, prev_hash TEXT NOT NULL,"
    "  hash TEXT NOT NULL);"
    /* Small per-site / per-tier activity tables so that /metrics never scans movements. */
    "CREATE TABLE sites(site TEXT PRIMARY KEY, last_movement_at INTEGER,"
    "  last_heartbeat_at INTEGER) WITHOUT ROWID;"
    "CREATE TABLE tier_activity(site TEXT NOT NULL, tier TEXT NOT NULL,"
    "  last_posted_at INTEGER, last_error TEXT, last_error_at INTEGER,"
    "  PRIMARY KEY(site, tier)) WITHOUT ROWID;"
    "CREATE TABLE audit_head(one INTEGER PRIMARY KEY CHECK (one = 1), last_id INTEGER NOT NULL,"
    "  last_hash TEXT NOT NULL);",
    /* 2: ownership periods of partitions in a shared consumer group (see
     * store_begin_period); each movement remembers the period it was read in. */
    "CREATE TABLE periods(id INTEGER PRIMARY KEY, topic TEXT NOT NULL, part INTEGER NOT NULL,"
    "  fresh_from INTEGER NOT NULL, committed INTEGER NOT NULL DEFAULT -1,"
    "  started_at INTEGER NOT NULL);"
    "ALTER TABLE movements ADD COLUMN period INTEGER;",
    // clang-format off
    /* 3: finished movements leave the hot indexes. A movement is indexed for
     * the poster while it is queued (by due time, by lot) and while its
     * posting is open (by lot); posted, cancelled, dead and ignored rows stay
     * only in the table, the dedup key, the sequence index and (once
     * assigned) the posting index. Each state change now touches the indexes
     * it leaves and enters instead of rewriting every (state, ...) entry, and
     * the indexes the poster reads hold the backlog, not the history. A query
     * uses a partial index only when its WHERE implies the index's condition:
     * spell it with STORE_QUEUED / STORE_OPEN (store.h). */
    "DROP INDEX movements_trigger;"
    "DROP INDEX movements_lot;"
    "DROP INDEX movements_posting;"
    "CREATE INDEX movements_queued ON movements(due_at, id) WHERE " STORE_QUEUED ";"
    "CREATE INDEX movements_lot_queued ON movements(lot_key, producer_id, seq)"
    "  WHERE " STORE_QUEUED ";"
    "CREATE INDEX movements_lot_open ON movements(lot_key, seq) WHERE " STORE_OPEN("") ";"
    "CREATE INDEX movements_posting ON movements(posting_id) WHERE posting_id IS NOT NULL;"
    /* Postings likewise: the index by state holds the open ones (a query for
     * one of these states implies the OR term); posted and skipped postings
     * are found by id or document only. */
    "DROP INDEX postings_state;"
    "CREATE INDEX postings_open ON postings(state, next_at) WHERE " STORE_OPEN("") ";",
    /* 4: the rare finished states get a small index of their own, so that
     * the status counts (store_counts, polled by the status page) come from
     * index ranges: posted = all - queued - open - rare. */
    "CREATE INDEX movements_rare ON movements(state) WHERE " STORE_RARE ";"
    "CREATE INDEX postings_skipped ON postings(state) WHERE state = 'skipped';",
    /* 5: postings in a rowid table, in the order they were made, with the
     * posting id (a hash: random order) in a unique index. Keyed by the hash,
     * each new posting landed on a random page of the table and its outcome
     * rewrote that page again in the next transaction: two random pages per
     * posting on disk, now one (the index entry, written once). The real-time
     * tier is bound by what it writes (docs/PERFORMANCE.md §5.9). */
    "CREATE TABLE postings_v5(pid INTEGER PRIMARY KEY, posting_id TEXT NOT NULL UNIQUE,"
    "  site TEXT NOT NULL, tier TEXT NOT NULL, lot_key TEXT NOT NULL, state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER, erp_doc TEXT,"
    "  last_error TEXT, lines INTEGER, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "INSERT INTO postings_v5(posting_id, site, tier, lot_key, state, attempts, next_at,"
    "  erp_doc, last_error, lines, created_at, updated_at)"
    "  SELECT posting_id, site, tier, lot_key, state, attempts, next_at, erp_doc, last_error,"
    "  lines, created_at, updated_at FROM postings ORDER BY created_at, posting_id;"
    "DROP TABLE postings;"
    "ALTER TABLE postings_v5 RENAME TO postings;"
    "CREATE INDEX postings_doc ON postings(erp_doc);"
    "CREATE INDEX postings_open ON postings(state, next_at) WHERE " STORE_OPEN("") ";"
    "CREATE INDEX postings_skipped ON postings(state) WHERE state = 'skipped';",
    /* 6: the line limit a posting was first sent with (its tier's max_lines
     * then; 0 = not cut), kept for every later attempt. A retry recut with a
     * changed max_lines would book lines an earlier chunk already booked
     * under other references. NULL: made by an older version (the tier's
     * max_lines at its next attempt is recorded). */
    "ALTER TABLE postings ADD COLUMN chunk_lines INTEGER;",
    /* 7: the movement a REVERSAL reverses (its reverses_movement_id; NULL for
     * every other type), indexed with its source_system: a movement is
     * reversed once, and check_reversal (store_post.c) refuses a REVERSAL
     * when one stored before it reverses the same original. Rows stored
     * before this migration keep NULL (the id is inside the protobuf
     * payload, which SQL cannot read): a REVERSAL received by an older
     * version is not seen by that check, only its effect is (an original it
     * cancelled is `cancelled`). */
    "ALTER TABLE movements ADD COLUMN reverses TEXT;"
    "CREATE INDEX movements_reverses ON movements(source_system, reverses)"
    "  WHERE reverses IS NOT NULL;",
    /* 8: sequences a producer gave to a movement the store already holds
     * under another (producer, site, sequence): an MES resend the producer
     * accepted again once outbox.retention had forgotten the first, or the
     * same movement through another producer. Nothing is applied for them,
     * but they close their producer's watermark like a movement, so later
     * movements do not wait out consume.gap_timeout for them and they are
     * not counted as lost. */
    "CREATE TABLE seq_fills(producer_id TEXT NOT NULL, site TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL, PRIMARY KEY(producer_id, site, seq)) WITHOUT ROWID;",
    /* 9: settings the store must keep across restarts because what it
     * already did depends on them: poster.time_ordered_ids_from (ms UTC;
     * store_pin_time_ordered_ids_from). */
    "CREATE TABLE settings(key TEXT PRIMARY KEY, value INTEGER NOT NULL,"
    "  set_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 10: the documents of a posting cut into chunks (max_lines): each chunk
     * is its own ERP document, and trace must name the one that holds a
     * movement. One row per chunk, and the chunk of each of the posting's
     * movements (movements.id; none for one whose line netted to zero).
     * Written with the posting's result (store_record_results), by chunked
     * postings only. The posting's erp_doc stays "<first>+<n-1>": replay
     * counts the chunks to look up from it. */
    "CREATE TABLE posting_chunks(posting_id TEXT NOT NULL, chunk INTEGER NOT NULL,"
    "  erp_doc TEXT NOT NULL, lines INTEGER NOT NULL, PRIMARY KEY(posting_id, chunk))"
    "  WITHOUT ROWID;"
    "CREATE INDEX posting_chunks_doc ON posting_chunks(erp_doc);"
    "CREATE TABLE chunk_movements(mid INTEGER PRIMARY KEY, posting_id TEXT NOT NULL,"
    "  chunk INTEGER NOT NULL);"
    "CREATE INDEX chunk_movements_chunk ON chunk_movements(posting_id, chunk);",
    // clang-format on
};

const char *const store_consume_sql[SQ__COUNT] = {
    [SQ_INSERT_MOVEMENT] =
        "INSERT OR IGNORE INTO movements(source_system, movement_id, producer_id, site, seq,"
        " lot_key, tier, type, topic, part, off, received_at, accepted_at, due_at, state,"
        " reason, policy_version, payload, period, reverses)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
    [SQ_UPSERT_OFFSET] = "INSERT INTO offsets(topic, part, next_offset) VALUES(?1,?2,?3)"
                         " ON CONFLICT(topic, part) DO UPDATE SET next_offset ="
                         " max(next_offset, excluded.next_offset)",
    [SQ_GET_OFFSET] = "SELECT next_offset FROM offsets WHERE topic = ?1 AND part = ?2",
    [SQ_NOTE_COMMITTED] = "UPDATE periods SET committed = max(committed, ?2) WHERE id = ?1",
    [SQ_BEGIN_PERIOD] = "INSERT INTO periods(topic, part, fresh_from, started_at)"
                        " VALUES(?1,?2,?3,?4)",
    [SQ_GET_WATERMARK] = "SELECT contiguous FROM watermarks WHERE producer_id = ?1 AND site = ?2",
    [SQ_SET_WATERMARK] = "INSERT INTO watermarks(producer_id, site, contiguous) VALUES(?1,?2,?3)"
                         " ON CONFLICT(producer_id, site) DO UPDATE SET contiguous = ?3",
    [SQ_SEQS_AFTER] = "SELECT seq FROM movements WHERE producer_id = ?1 AND site = ?2"
                      " AND seq > ?3 UNION ALL SELECT seq FROM seq_fills WHERE producer_id = ?1"
                      " AND site = ?2 AND seq > ?3 ORDER BY seq",
    [SQ_UPSERT_HEARTBEAT] =
        "INSERT INTO heartbeats(producer_id, site, last_sequence, hb_time, received_at,"
        " backlog) VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(producer_id, site) DO UPDATE SET"
        " last_sequence = max(last_sequence, ?3), hb_time = max(hb_time, ?4),"
        " received_at = ?5, backlog = ?6",
    [SQ_INSERT_DEAD] = "INSERT INTO dead_letters(topic, part, off, movement_id, reason, at)"
                       " VALUES(?1,?2,?3,?4,?5,?6)",
    [SQ_SITE_MOVEMENT] = "INSERT INTO sites(site, last_movement_at) VALUES(?1, ?2)"
                         " ON CONFLICT(site) DO UPDATE SET last_movement_at = ?2",
    [SQ_SITE_HEARTBEAT] = "INSERT INTO sites(site, last_heartbeat_at) VALUES(?1, ?2)"
                          " ON CONFLICT(site) DO UPDATE SET last_heartbeat_at = ?2",
    /* The UNIQUE(source_system, movement_id) index. */
    [SQ_STORED_PAYLOAD] = "SELECT payload, producer_id, site, seq FROM movements"
                          " WHERE source_system = ?1 AND movement_id = ?2",
    [SQ_SEQ_FILL] = "INSERT OR IGNORE INTO seq_fills(producer_id, site, seq, received_at)"
                    " VALUES(?1,?2,?3,?4)",
    [SQ_PRUNED_BEFORE] = "SELECT value FROM settings WHERE key = '" STORE_PRUNED_BEFORE_KEY "'",
    [SQ_DEAD_ROW] = "SELECT id, producer_id, site, seq, topic, part, off, reason FROM movements"
                    " WHERE source_system = ?1 AND movement_id = ?2 AND state = 'dead'",
    [SQ_DELETE_MOVEMENT] = "DELETE FROM movements WHERE id = ?1",
};

#define stmt      store_stmt
#define bind_text store_bind_text

sqlite3_stmt *store_stmt(store_t *s, int id) {
    sqlite3_reset(s->st[id]);
    sqlite3_clear_bindings(s->st[id]);
    return s->st[id];
}

is_err_t store_begin(store_t *s) {
    for (int i = 0; i < SQ__COUNT; i++)
        sqlite3_reset(s->st[i]);
    s->audit_cached = s->audit_dirty = 0;
    is_err_t rc = is_db_begin(s->db);
    s->in_tx = rc == IS_OK;
    return rc;
}

is_err_t store_commit(store_t *s) {
    if (s->audit_dirty) {
        sqlite3_stmt *st = stmt(s, SQ_AUDIT_HEAD);
        sqlite3_bind_int64(st, 1, s->audit_id);
        bind_text(st, 2, s->audit_hash);
        if (sqlite3_step(st) != SQLITE_DONE)
            return IS_ERR_DB;
    }
    s->audit_cached = s->audit_dirty = 0;
    s->in_tx = 0;
    return is_db_commit(s->db);
}

void store_rollback(store_t *s) {
    s->audit_cached = s->audit_dirty = 0;
    s->in_tx = 0;
    is_db_rollback(s->db);
}

void store_bind_text(sqlite3_stmt *st, int i, const char *v) {
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC); /* see store_int.h */
    else
        sqlite3_bind_null(st, i);
}

is_err_t store_open(const char *path, is_db_sync_t sync, store_t **out, char *errstr,
                    size_t errstr_size) {
    is_err_t rc;
    store_t *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return IS_ERR_NOMEM;
    s->sync = sync;
    s->time_ids_from = INT64_MAX;
    rc = is_db_open(path, store_migrations, sizeof(store_migrations) / sizeof(store_migrations[0]),
                    sync, &s->db, errstr, errstr_size);
    for (int i = 0; rc == IS_OK && i < SQ__COUNT; i++) {
        const char *sql = store_consume_sql[i] ? store_consume_sql[i]
                          : store_post_sql[i]  ? store_post_sql[i]
                                               : store_admin_sql[i];
        if (!sql || sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                                       NULL) != SQLITE_OK)
            rc = is_db_error(
                s->db, sql ? "cannot prepare a store statement" : "a store statement has no SQL",
                errstr, errstr_size);
    }
    if (rc != IS_OK) {
        store_close(s);
        return rc;
    }
    *out = s;
    return IS_OK;
}

/*
 * Whether the file at path is a store `erp-consumer run` made, looked at read-only: an empty
 * file (touched, or a placeholder a volume left) or another database (the ERP ledger's path
 * typed for the store's) would otherwise be given the store's tables by store_open.
 */
static is_err_t store_is_one(const char *path, char *errstr, size_t errstr_size) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int tables = -1, has_movements = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_prepare_v2(db,
                               "SELECT count(*), coalesce(sum(name = 'movements'), 0)"
                               " FROM sqlite_master WHERE type = 'table'",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            tables = sqlite3_column_int(st, 0);
            has_movements = sqlite3_column_int(st, 1);
        }
    }
    if (tables < 0)
        is_errf(errstr, errstr_size, "cannot read store '%s' (key 'store.path'): %s", path,
                db ? sqlite3_errmsg(db) : "out of memory");
    else if (tables == 0)
        is_errf(errstr, errstr_size,
                "store '%s' is empty (key 'store.path'): not a store `erp-consumer run` made; "
                "check the path",
                path);
    else if (!has_movements)
        is_errf(errstr, errstr_size,
                "'%s' is not an erp-consumer store (key 'store.path'): it is a database without "
                "the store's tables (another service's file?); check the path",
                path);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return tables > 0 && has_movements ? IS_OK : IS_ERR_INVALID;
}

is_err_t store_open_existing(const char *path, is_db_sync_t sync, store_t **out, char *errstr,
                             size_t errstr_size) {
    struct stat sb;
    *out = NULL;
    if (stat(path, &sb) != 0) {
        int e = errno;
        if (e == ENOENT)
            is_errf(errstr, errstr_size,
                    "store '%s' does not exist (key 'store.path'): check the path; "
                    "`erp-consumer run` creates the store when it first starts",
                    path);
        else
            is_errf(errstr, errstr_size, "cannot open store '%s': %s", path, strerror(e));
        return IS_ERR_NOT_FOUND;
    }
    if (store_is_one(path, errstr, errstr_size) != IS_OK)
        return IS_ERR_NOT_FOUND;
    return store_open(path, sync, out, errstr, errstr_size);
}

void store_close(store_t *s) {
    if (!s)
        return;
    for (int i = 0; i < SQ__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    is_db_close(s->db);
    free(s);
}

sqlite3 *store_db(store_t *s) {
    return s->db;
}

void store_set_time_ordered_ids_from(store_t *s, int64_t from_ms) {
    s->time_ids_from = from_ms;
}

#define TIME_IDS_KEY "poster.time_ordered_ids_from"

static void format_cut_over(int64_t ms, char *buf, size_t size) {
    char t[IS_RFC3339_LEN];
    if (ms == INT64_MAX) {
        snprintf(buf, size, "unset");
        return;
    }
    is_format_rfc3339(ms, t);
    snprintf(buf, size, "%s", t);
}

/* One integer setting (migration 9); *found = 0 when never set. */
static int get_setting(sqlite3 *db, const char *key, int64_t *value, int *found) {
    sqlite3_stmt *st = NULL;
    int rc;
    *found = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM settings WHERE key = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(st, 0);
        *found = 1;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* The first movement accepted in [from, to) that was put in a posting:
 * its id would change form with the cut-over. id[0] = '\0' when none. */
static int posted_between(sqlite3 *db, int64_t from, int64_t to, char *id, size_t size) {
    sqlite3_stmt *st = NULL;
    int rc;
    id[0] = '\0';
    if (sqlite3_prepare_v2(db,
                           "SELECT movement_id FROM movements WHERE posting_id IS NOT NULL"
                           " AND accepted_at >= ?1 AND accepted_at < ?2 LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(id, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* Record the cut-over (INT64_MAX: unset) as the store's. */
static int put_setting(sqlite3 *db, const char *key, int64_t value, int64_t now_ms) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db,
                                "INSERT INTO settings(key, value, set_at) VALUES(?1, ?2, ?3)"
                                " ON CONFLICT(key) DO UPDATE SET value = ?2, set_at = ?3",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, value);
        sqlite3_bind_int64(st, 3, now_ms);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return ok;
}

/*
 * Whether the store, whose recorded cut-over is pinned, may move to from_ms:
 * 1 when it may, 0 (errstr says why) when a movement accepted between the
 * two was put in a posting, -1 on a database error.
 */
static int cut_over_allowed(sqlite3 *db, int64_t pinned, int64_t from_ms, char *errstr,
                            size_t errstr_size) {
    char was[IS_RFC3339_LEN + 8], now[IS_RFC3339_LEN + 8], id[IS_MOVEMENT_MAX_STR + 1];
    int64_t lo = pinned < from_ms ? pinned : from_ms, hi = pinned < from_ms ? from_ms : pinned;
    if (pinned == from_ms)
        return 1;
    if (!posted_between(db, lo, hi, id, sizeof(id)))
        return -1;
    if (!id[0])
        return 1;
    format_cut_over(pinned, was, sizeof(was));
    format_cut_over(from_ms, now, sizeof(now));
    is_errf(errstr, errstr_size,
            "poster.time_ordered_ids_from is %s, but this store posted with %s:"
            " movement %s (and maybe more) was accepted between the two, so a posting of"
            " it made again (from a rebuilt store, by a failover instance, by replay"
            " --apply) would get another posting id and the ERP would book it twice;"
            " set it back to %s",
            now, was, id, was);
    return 0;
}

is_err_t store_pin_time_ordered_ids_from(store_t *s, int64_t from_ms, int64_t now_ms, char *errstr,
                                         size_t errstr_size) {
    int64_t pinned = INT64_MAX;
    int found = 0, allowed;
    is_err_t rc;

    if (store_begin(s) != IS_OK)
        goto db_err;
    if (!get_setting(s->db, TIME_IDS_KEY, &pinned, &found))
        goto db_err;
    if (!found) {
        /* A new store, or one an older version ran: what it ran with is not
         * known here, so the configured value is taken as the store's. */
        if (!put_setting(s->db, TIME_IDS_KEY, from_ms, now_ms))
            goto db_err;
    } else if (pinned != from_ms) {
        char was[IS_RFC3339_LEN + 8], now[IS_RFC3339_LEN + 8], detail[160];
        allowed = cut_over_allowed(s->db, pinned, from_ms, errstr, errstr_size);
        if (allowed < 0)
            goto db_err;
        if (!allowed) {
            store_rollback(s);
            return IS_ERR_INVALID;
        }
        if (!put_setting(s->db, TIME_IDS_KEY, from_ms, now_ms))
            goto db_err;
        format_cut_over(pinned, was, sizeof(was));
        format_cut_over(from_ms, now, sizeof(now));
        snprintf(detail, sizeof(detail), "{\"from\":\"%s\",\"to\":\"%s\"}", was, now);
        rc = store_audit(s, now_ms, "poster", "setting-changed", TIME_IDS_KEY, detail, errstr,
                         errstr_size);
        if (rc != IS_OK) {
            store_rollback(s);
            return rc;
        }
    }
    if (store_commit(s) != IS_OK)
        goto db_err;
    s->time_ids_from = from_ms;
    return IS_OK;
db_err:;
    rc = is_db_error(s->db, "cannot check poster.time_ordered_ids_from against the store", errstr,
                     errstr_size);
    store_rollback(s);
    return rc;
}

is_err_t store_check_time_ordered_ids_from(const char *path, int64_t from_ms, char *errstr,
                                           size_t errstr_size) {
    sqlite3 *db = NULL;
    int64_t pinned = INT64_MAX;
    int found = 0, allowed = 1;
    is_err_t rc = IS_OK;

    if (access(path, F_OK) != 0)
        return IS_OK; /* no store yet: the first start records the value */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = is_db_error(db, "cannot open the store read-only", errstr, errstr_size);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    if (!get_setting(db, TIME_IDS_KEY, &pinned, &found)) {
        /* A store older than migration 9 has no settings table: the first
         * start of this version adopts the configured value. */
        if (!strstr(sqlite3_errmsg(db), "no such table"))
            rc = is_db_error(db, "cannot read poster.time_ordered_ids_from from the store", errstr,
                             errstr_size);
    } else if (found) {
        allowed = cut_over_allowed(db, pinned, from_ms, errstr, errstr_size);
        if (allowed < 0)
            rc = is_db_error(db, "cannot check poster.time_ordered_ids_from against the store",
                             errstr, errstr_size);
        else if (!allowed)
            rc = IS_ERR_INVALID;
    }
    sqlite3_close(db);
    return rc;
}

/* ---- consume side --------------------------------------------------------- */

typedef struct pair {
    const char *producer, *site;
} pair_t;

/* Record (producer, site, seq) in seq_fills: a sequence that counts for
 * the watermark without a movement row of its own. *added (may be NULL):
 * 1 when it was not there yet. */
static is_err_t insert_seq_fill(store_t *s, const char *producer, const char *site, int64_t seq,
                                int64_t now_ms, int *added) {
    sqlite3_stmt *st = stmt(s, SQ_SEQ_FILL);
    int src;
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    sqlite3_bind_int64(st, 3, seq);
    sqlite3_bind_int64(st, 4, now_ms);
    src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE)
        return IS_ERR_DB;
    if (added)
        *added = sqlite3_changes(s->db) > 0;
    return IS_OK;
}

/*
 * A movement id the store may already hold (store.h). The stored row came
 * with another (producer, site, sequence) than m: a resend the producer
 * accepted again (after outbox.retention forgot the first) or the same
 * movement through another producer — m's sequence still counts for its
 * watermark, through seq_fills.
 */
is_err_t store_note_seq_fill(store_t *s, const is_movement_t *m, int64_t now_ms, int *differs,
                             int *counted) {
    sqlite3_stmt *st = stmt(s, SQ_STORED_PAYLOAD);
    uint8_t a[32], b[32];
    int src, other_seq = 0;
    *counted = 0;
    if (differs)
        *differs = 0;
    bind_text(st, 1, m->source_system);
    bind_text(st, 2, m->movement_id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (differs) {
            is_movement_t *o = invsync__v1__movement__unpack(
                NULL, (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 0));
            *differs = !o || is_movement_fingerprint(o, a) != IS_OK ||
                       is_movement_fingerprint(m, b) != IS_OK || memcmp(a, b, sizeof(a)) != 0;
            if (o)
                invsync__v1__movement__free_unpacked(o, NULL);
        }
        const char *producer = (const char *)sqlite3_column_text(st, 1);
        const char *site = (const char *)sqlite3_column_text(st, 2);
        other_seq = (int64_t)m->sequence != sqlite3_column_int64(st, 3) ||
                    strcmp(producer ? producer : "", m->producer_id) != 0 ||
                    strcmp(site ? site : "", m->site) != 0;
    }
    sqlite3_reset(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return IS_ERR_DB;
    if (!other_seq)
        return IS_OK;
    return insert_seq_fill(s, m->producer_id, m->site, (int64_t)m->sequence, now_ms, counted);
}

/* Advance the (producer, site) watermark over contiguous received sequences. */
is_err_t store_advance_watermark(store_t *s, const char *producer, const char *site) {
    sqlite3_stmt *st = stmt(s, SQ_GET_WATERMARK);
    int64_t wm = 0, start;
    int src;
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        wm = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return IS_ERR_DB; /* never write a watermark from an unread one */
    start = wm;
    st = stmt(s, SQ_SEQS_AFTER);
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    sqlite3_bind_int64(st, 3, wm);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (seq <= wm)
            continue; /* in both tables (a producer that reused a sequence) */
        if (seq != wm + 1)
            break;
        wm = seq;
    }
    sqlite3_reset(st);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return IS_ERR_DB;
    if (wm == start && start != 0)
        return IS_OK;
    st = stmt(s, SQ_SET_WATERMARK);
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    sqlite3_bind_int64(st, 3, wm);
    src = sqlite3_step(st);
    sqlite3_reset(st);
    return src == SQLITE_DONE ? IS_OK : IS_ERR_DB;
}

static is_err_t insert_movement(store_t *s, const store_msg_t *msg, const char *state,
                                const char *reason, int64_t now_ms, int *inserted) {
    const is_movement_t *m = msg->m;
    char lot_key[IS_LOT_KEY_MAX];
    sqlite3_stmt *st = stmt(s, SQ_INSERT_MOVEMENT);
    if (is_movement_lot_key(m, lot_key, sizeof(lot_key)) < 0)
        lot_key[0] = '\0';
    bind_text(st, 1, m->source_system);
    bind_text(st, 2, m->movement_id);
    bind_text(st, 3, m->producer_id);
    bind_text(st, 4, m->site);
    sqlite3_bind_int64(st, 5, (int64_t)m->sequence);
    bind_text(st, 6, lot_key);
    bind_text(st, 7, m->tier);
    sqlite3_bind_int(st, 8, (int)m->type);
    bind_text(st, 9, msg->topic);
    sqlite3_bind_int(st, 10, msg->partition);
    sqlite3_bind_int64(st, 11, msg->offset);
    sqlite3_bind_int64(st, 12, now_ms);
    sqlite3_bind_int64(st, 13, m->accepted_time);
    sqlite3_bind_int64(st, 14, msg->due_at);
    bind_text(st, 15, state);
    bind_text(st, 16, reason);
    bind_text(st, 17, m->policy_version);
    sqlite3_bind_blob(st, 18, msg->payload ? msg->payload : "", (int)msg->payload_len,
                      SQLITE_STATIC);
    if (msg->period > 0)
        sqlite3_bind_int64(st, 19, msg->period);
    if (m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL && m->reverses_movement_id &&
        *m->reverses_movement_id)
        bind_text(st, 20, m->reverses_movement_id);
    if (sqlite3_step(st) != SQLITE_DONE)
        return IS_ERR_DB;
    *inserted = sqlite3_changes(s->db) > 0;
    return IS_OK;
}

/*
 * A usable movement whose id the store holds only as a dead message (one
 * dead-lettered as unusable: on another site's or tier's topic, invalid):
 * that copy does not keep the id, or the movement would be taken for its
 * duplicate and never posted. The dead row goes (its dead letter stays, in
 * dead_letters and on the topic; the audit says so); its sequence still
 * counts for its producer's watermark, through seq_fills. *replaced = 1
 * when m is to be inserted again.
 */
static is_err_t supersede_dead(store_t *s, const store_msg_t *msg, int64_t now_ms, int *replaced) {
    const is_movement_t *m = msg->m;
    sqlite3_stmt *st = stmt(s, SQ_DEAD_ROW);
    int64_t id = 0, seq = 0, part = 0, off = 0;
    char producer[128] = "", site[128] = "", topic[256] = "", reason[256] = "", aerr[256];
    int src;
    *replaced = 0;
    bind_text(st, 1, m->source_system);
    bind_text(st, 2, m->movement_id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        snprintf(producer, sizeof(producer), "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(site, sizeof(site), "%s", (const char *)sqlite3_column_text(st, 2));
        seq = sqlite3_column_int64(st, 3);
        snprintf(topic, sizeof(topic), "%s", (const char *)sqlite3_column_text(st, 4));
        part = sqlite3_column_int64(st, 5);
        off = sqlite3_column_int64(st, 6);
        if (sqlite3_column_type(st, 7) != SQLITE_NULL)
            snprintf(reason, sizeof(reason), "%s", (const char *)sqlite3_column_text(st, 7));
    }
    sqlite3_reset(st);
    if (src == SQLITE_DONE)
        return IS_OK;
    if (src != SQLITE_ROW)
        return IS_ERR_DB;
    if (producer[0] && seq > 0 && insert_seq_fill(s, producer, site, seq, now_ms, NULL) != IS_OK)
        return IS_ERR_DB;
    st = stmt(s, SQ_DELETE_MOVEMENT);
    sqlite3_bind_int64(st, 1, id);
    src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE)
        return IS_ERR_DB;
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:i,s:I}", "source_system", m->source_system,
                  "dead_reason", reason, "dead_topic", topic, "dead_partition", (json_int_t)part,
                  "dead_offset", (json_int_t)off, "site", m->site, "topic", msg->topic, "partition",
                  msg->partition, "offset", (json_int_t)msg->offset);
    char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    is_err_t rc = store_audit(s, now_ms, "consumer", "dead-copy-superseded", m->movement_id, detail,
                              aerr, sizeof(aerr));
    free(detail);
    if (rc == IS_OK)
        *replaced = 1;
    return rc;
}

/* The pruned horizon as the current transaction sees it (0: never pruned). */
static is_err_t read_horizon(store_t *s, int64_t *before_ms) {
    sqlite3_stmt *st = stmt(s, SQ_PRUNED_BEFORE);
    int src = sqlite3_step(st);
    *before_ms = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? IS_OK : IS_ERR_DB;
}

/* A movement parked before the horizon: its dead letter row and audit row
 * (the operator's record; the caller sends it to the dead-letter topic). */
static is_err_t note_parked(store_t *s, const store_msg_t *msg, const char *reason, int64_t horizon,
                            int64_t now_ms) {
    sqlite3_stmt *st = stmt(s, SQ_INSERT_DEAD);
    char accepted[IS_RFC3339_LEN], before[IS_RFC3339_LEN], aerr[256];
    bind_text(st, 1, msg->topic);
    sqlite3_bind_int(st, 2, msg->partition);
    sqlite3_bind_int64(st, 3, msg->offset);
    bind_text(st, 4, msg->m->movement_id);
    bind_text(st, 5, reason);
    sqlite3_bind_int64(st, 6, now_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return IS_ERR_DB;
    is_format_rfc3339(msg->m->accepted_time, accepted);
    is_format_rfc3339(horizon, before);
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I}", "source_system", msg->m->source_system, "site",
                  msg->m->site, "accepted_time", accepted, "pruned_before", before, "topic",
                  msg->topic, "partition", msg->partition, "offset", (json_int_t)msg->offset);
    char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    is_err_t rc = store_audit(s, now_ms, "consumer", "movement-before-horizon", msg->m->movement_id,
                              detail, aerr, sizeof(aerr));
    free(detail);
    return rc;
}

is_err_t store_apply_batch(store_t *s, const store_msg_t *msgs, size_t n, int64_t now_ms,
                           store_batch_result_t *res, char *errstr, size_t errstr_size) {
    return store_apply_batch_parked(s, msgs, n, now_ms, NULL, res, errstr, errstr_size);
}

is_err_t store_apply_batch_parked(store_t *s, const store_msg_t *msgs, size_t n, int64_t now_ms,
                                  unsigned char *parked_at, store_batch_result_t *res, char *errstr,
                                  size_t errstr_size) {
    is_err_t rc;
    pair_t *pairs = NULL;
    const store_msg_t **parts = NULL;
    size_t n_pairs = 0, n_parts = 0;
    sqlite3_stmt *st;
    int64_t horizon = 0;

    memset(res, 0, sizeof(*res));
    if (parked_at)
        memset(parked_at, 0, n);
    if (n == 0)
        return IS_OK;
    pairs = calloc(n, sizeof(*pairs));
    parts = calloc(n, sizeof(*parts));
    if (!pairs || !parts) {
        free(pairs);
        free(parts);
        return IS_ERR_NOMEM;
    }
    rc = store_begin(s);
    if (rc != IS_OK)
        goto db_err;
    /* Read inside the write transaction: store_prune deletes rows and raises
     * the horizon in one transaction, so each movement below either finds
     * its row or sees the horizon that covers its deletion. */
    if (read_horizon(s, &horizon) != IS_OK)
        goto db_err;
    res->pruned_before = horizon;
    for (size_t i = 0; i < n; i++) {
        const store_msg_t *msg = &msgs[i];
        int inserted = 0, differs = 0, parked = 0;
        /* Every sequenced message is recorded, even unusable ones, so that the
         * producer's watermark does not stall on its sequence number. */
        if (msg->kind != STORE_MSG_HEARTBEAT && msg->m && msg->m->producer_id[0] &&
            msg->m->sequence > 0) {
            const char *state = msg->kind == STORE_MSG_MOVEMENT ? "queued"
                                : msg->kind == STORE_MSG_DEAD   ? "dead"
                                                                : "ignored";
            const char *reason = msg->reason;
            char why[256];
            /* Older than the horizon and new to the store: it may have been
             * posted and pruned since. Never queued (the ERP must not get it
             * twice); recorded dead so that an operator decides. */
            if (msg->kind == STORE_MSG_MOVEMENT && horizon > 0 && msg->m->accepted_time > 0 &&
                msg->m->accepted_time < horizon) {
                store_horizon_reason(msg->m->accepted_time, horizon, why, sizeof(why));
                state = "dead";
                reason = why;
                parked = 1;
            }
            rc = insert_movement(s, msg, state, reason, now_ms, &inserted);
            if (rc != IS_OK)
                goto db_err;
            if (!inserted && msg->kind == STORE_MSG_MOVEMENT && !parked) {
                int replaced = 0;
                if (supersede_dead(s, msg, now_ms, &replaced) != IS_OK)
                    goto db_err;
                if (replaced && insert_movement(s, msg, state, reason, now_ms, &inserted) != IS_OK)
                    goto db_err;
            }
            parked = parked && inserted; /* a row it already has: a duplicate, as always */
            if (parked) {
                if (note_parked(s, msg, why, horizon, now_ms) != IS_OK)
                    goto db_err;
                res->parked++;
                if (parked_at)
                    parked_at[i] = 1;
            }
            int counted = inserted; /* its sequence now counts for the watermark */
            if (!inserted && store_note_seq_fill(s, msg->m, now_ms, &differs, &counted) != IS_OK)
                goto db_err;
            if (counted) {
                size_t k;
                for (k = 0; k < n_pairs; k++)
                    if (strcmp(pairs[k].producer, msg->m->producer_id) == 0 &&
                        strcmp(pairs[k].site, msg->m->site) == 0)
                        break;
                if (k == n_pairs) {
                    pairs[n_pairs].producer = msg->m->producer_id;
                    pairs[n_pairs].site = msg->m->site;
                    n_pairs++;
                }
            }
        }
        switch (msg->kind) {
        case STORE_MSG_MOVEMENT:
            if (parked)
                break; /* counted in res->parked; its sequence counted above */
            if (inserted) {
                res->received++;
                break;
            }
            /* The first version stays. A second one with other content (an
             * MES resend changed after the producer forgot the first, or sent
             * through another producer) is not applied, but never silently. */
            if (!differs) {
                res->duplicates++;
                break;
            }
            if (!res->conflicts++)
                snprintf(res->conflict_id, sizeof(res->conflict_id), "%s", msg->m->movement_id);
            {
                json_t *d =
                    json_pack("{s:s,s:s,s:s,s:i,s:I}", "source_system", msg->m->source_system,
                              "site", msg->m->site, "topic", msg->topic, "partition",
                              msg->partition, "offset", (json_int_t)msg->offset);
                char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
                json_decref(d);
                char aerr[256];
                is_err_t arc = store_audit(s, now_ms, "consumer", "movement-conflict",
                                           msg->m->movement_id, detail, aerr, sizeof(aerr));
                free(detail);
                if (arc != IS_OK)
                    goto db_err;
            }
            break;
        case STORE_MSG_HEARTBEAT:
            res->heartbeats++;
            st = stmt(s, SQ_UPSERT_HEARTBEAT);
            bind_text(st, 1, msg->hb->producer_id);
            bind_text(st, 2, msg->hb->site);
            sqlite3_bind_int64(st, 3, (int64_t)msg->hb->last_sequence);
            sqlite3_bind_int64(st, 4, msg->hb->time);
            sqlite3_bind_int64(st, 5, now_ms);
            sqlite3_bind_int64(st, 6, (int64_t)msg->hb->outbox_backlog);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
            st = stmt(s, SQ_SITE_HEARTBEAT);
            bind_text(st, 1, msg->hb->site);
            sqlite3_bind_int64(st, 2, now_ms);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
            break;
        case STORE_MSG_DEAD:
            res->dead++;
            st = stmt(s, SQ_INSERT_DEAD);
            bind_text(st, 1, msg->topic);
            sqlite3_bind_int(st, 2, msg->partition);
            sqlite3_bind_int64(st, 3, msg->offset);
            bind_text(st, 4, msg->m ? msg->m->movement_id : NULL);
            bind_text(st, 5, msg->reason ? msg->reason : "unknown");
            sqlite3_bind_int64(st, 6, now_ms);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
            break;
        case STORE_MSG_IGNORED:
            res->ignored++;
            break;
        }
    }
    /* One offset row per partition of the batch: its highest offset + 1. A batch
     * touches few partitions, so a linear scan of the ones seen is enough. */
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < n_parts; k++)
            if (parts[k]->partition == msgs[i].partition &&
                strcmp(parts[k]->topic, msgs[i].topic) == 0)
                break;
        if (k == n_parts)
            parts[n_parts++] = &msgs[i];
        else if (msgs[i].offset > parts[k]->offset)
            parts[k] = &msgs[i];
    }
    for (size_t k = 0; k < n_parts; k++) {
        st = stmt(s, SQ_UPSERT_OFFSET);
        bind_text(st, 1, parts[k]->topic);
        sqlite3_bind_int(st, 2, parts[k]->partition);
        sqlite3_bind_int64(st, 3, parts[k]->offset + 1);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto db_err;
    }
    for (size_t k = 0; k < n_pairs; k++) {
        if (store_advance_watermark(s, pairs[k].producer, pairs[k].site) != IS_OK)
            goto db_err;
        /* pairs are per (producer, site): the same site twice is harmless. */
        st = stmt(s, SQ_SITE_MOVEMENT);
        bind_text(st, 1, pairs[k].site);
        sqlite3_bind_int64(st, 2, now_ms);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto db_err;
    }
    rc = store_commit(s);
    if (rc != IS_OK)
        goto db_err;
    free(pairs);
    free(parts);
    return IS_OK;
db_err:
    rc = is_db_error(s->db, "cannot apply consumed batch", errstr, errstr_size);
    store_rollback(s);
    free(pairs);
    free(parts);
    memset(res, 0, sizeof(*res));
    return rc;
}

is_err_t store_get_offset(store_t *s, const char *topic, int32_t partition, int64_t *next_offset) {
    sqlite3_stmt *st = stmt(s, SQ_GET_OFFSET);
    int rc;
    bind_text(st, 1, topic);
    sqlite3_bind_int(st, 2, partition);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *next_offset = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return IS_OK;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? IS_ERR_NOT_FOUND : IS_ERR_DB;
}

is_err_t store_begin_period(store_t *s, const char *topic, int32_t partition, int64_t fresh_from,
                            int64_t now_ms, int64_t *period, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = stmt(s, SQ_BEGIN_PERIOD);
    bind_text(st, 1, topic);
    sqlite3_bind_int(st, 2, partition);
    sqlite3_bind_int64(st, 3, fresh_from);
    sqlite3_bind_int64(st, 4, now_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return is_db_error(s->db, "cannot record an ownership period", errstr, errstr_size);
    }
    sqlite3_reset(st);
    *period = sqlite3_last_insert_rowid(s->db);
    return IS_OK;
}

is_err_t store_note_committed(store_t *s, const int64_t *period, const int64_t *next_offset,
                              size_t n, char *errstr, size_t errstr_size) {
    if (n == 0)
        return IS_OK;
    if (store_begin(s) != IS_OK)
        return is_db_error(s->db, "cannot begin", errstr, errstr_size);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = stmt(s, SQ_NOTE_COMMITTED);
        sqlite3_bind_int64(st, 1, period[i]);
        sqlite3_bind_int64(st, 2, next_offset[i]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            is_err_t rc = is_db_error(s->db, "cannot note a committed offset", errstr, errstr_size);
            store_rollback(s);
            return rc;
        }
    }
    if (store_commit(s) != IS_OK) {
        is_err_t rc = is_db_error(s->db, "cannot commit", errstr, errstr_size);
        store_rollback(s);
        return rc;
    }
    return IS_OK;
}

void store_set_shared(store_t *s, int shared) {
    s->shared = shared;
}

/* ---- queries -------------------------------------------------------------- */

is_err_t store_ping(store_t *s, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    is_err_t rc = is_db_prepare(s->db, "SELECT count(*) FROM pauses", &st, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    if (sqlite3_step(st) != SQLITE_ROW)
        rc = is_db_error(s->db, "cannot read the store", errstr, errstr_size);
    sqlite3_finalize(st);
    return rc;
}

/* Index ranges only (EXPLAIN in test_store): count(*) over the smallest full
 * index, the backlog through the partial indexes, the rare states through
 * movements_rare / postings_skipped; posted is what is left. */
// clang-format off
const char store_counts_sql[] =
    "SELECT (SELECT count(*) FROM movements),"
    " (SELECT count(*) FROM movements WHERE " STORE_QUEUED "),"
    " (SELECT count(*) FROM movements WHERE " STORE_OPEN("") " AND state = 'posting'),"
    " (SELECT count(*) FROM movements WHERE " STORE_OPEN("") " AND state = 'retry'),"
    " (SELECT count(*) FROM movements WHERE " STORE_OPEN("") " AND state = 'failed'),"
    " (SELECT count(*) FROM movements WHERE " STORE_RARE " AND state = 'dead'),"
    " (SELECT count(*) FROM movements WHERE " STORE_RARE " AND state = 'cancelled'),"
    " (SELECT count(*) FROM movements WHERE " STORE_RARE " AND state = 'skipped'),"
    " (SELECT count(*) FROM movements WHERE " STORE_RARE " AND state = 'ignored'),"
    " (SELECT count(*) FROM postings),"
    " (SELECT count(*) FROM postings WHERE state = 'posting'),"
    " (SELECT count(*) FROM postings WHERE state = 'retry'),"
    " (SELECT count(*) FROM postings WHERE state = 'failed'),"
    " (SELECT count(*) FROM postings WHERE state = 'skipped'),"
    " coalesce((SELECT min(r) FROM ("
    "  SELECT min(accepted_at) r FROM movements WHERE " STORE_QUEUED
    "  UNION ALL SELECT min(accepted_at) FROM movements WHERE " STORE_OPEN("") ")), 0)";
// clang-format on

is_err_t store_counts(store_t *s, store_counts_t *out, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    is_err_t rc = is_db_prepare(s->db, store_counts_sql, &st, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    memset(out, 0, sizeof(*out));
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = is_db_error(s->db, "cannot count movements", errstr, errstr_size);
        sqlite3_finalize(st);
        return rc;
    }
    /* The columns of store_counts_sql, in order. */
    enum {
        ALL,
        QUEUED,
        POSTING,
        RETRY,
        FAILED,
        DEAD,
        CANCELLED,
        SKIPPED,
        IGNORED,
        P_ALL,
        P_POSTING,
        P_RETRY,
        P_FAILED,
        P_SKIPPED,
        OLDEST,
        N_COLS
    };
    int64_t v[N_COLS];
    for (int i = 0; i < N_COLS; i++)
        v[i] = sqlite3_column_int64(st, i);
    sqlite3_finalize(st);
    out->movements = v[ALL];
    out->queued = v[QUEUED];
    out->posting = v[POSTING];
    out->retry = v[RETRY];
    out->failed = v[FAILED];
    out->dead = v[DEAD];
    out->cancelled = v[CANCELLED];
    out->skipped = v[SKIPPED];
    out->posted = v[ALL] - v[QUEUED] - v[POSTING] - v[RETRY] - v[FAILED] - v[DEAD] - v[CANCELLED] -
                  v[SKIPPED] - v[IGNORED];
    out->postings = v[P_ALL];
    out->postings_retry = v[P_RETRY];
    out->postings_failed = v[P_FAILED];
    out->postings_posted = v[P_ALL] - v[P_POSTING] - v[P_RETRY] - v[P_FAILED] - v[P_SKIPPED];
    out->oldest_unposted_ms = v[OLDEST];
    return IS_OK;
}

is_err_t store_skip_gaps(store_t *s, int64_t now_ms, int64_t older_than_ms, int64_t not_before_ms,
                         int *skipped, int64_t *sequences, char *errstr, size_t errstr_size) {
    static const char *const sql =
        "SELECT w.producer_id, w.site, w.contiguous,"
        " (SELECT min(x) FROM (SELECT min(m.seq) AS x FROM movements m"
        "   WHERE m.producer_id = w.producer_id AND m.site = w.site AND m.seq > w.contiguous"
        "   UNION ALL SELECT min(f.seq) FROM seq_fills f WHERE f.producer_id = w.producer_id"
        "   AND f.site = w.site AND f.seq > w.contiguous)) AS next_seq"
        " FROM watermarks w"
        /* A dead message fills a gap but never opens one: its sequence is as
         * unreliable as the rest of it (a foreign or broken writer), and a
         * bogus one far ahead would be given up as that many lost movements
         * and carry the watermark past every later one. */
        " WHERE EXISTS (SELECT 1 FROM movements m WHERE m.producer_id = w.producer_id"
        "   AND m.site = w.site AND m.seq > w.contiguous AND m.state <> 'dead')"
        " OR EXISTS (SELECT 1 FROM seq_fills f WHERE f.producer_id = w.producer_id"
        "   AND f.site = w.site AND f.seq > w.contiguous)";
    sqlite3_stmt *q = NULL, *at = NULL;
    is_err_t rc;
    int64_t n_seq = 0;
    *skipped = 0;
    *sequences = 0;
    if (store_begin(s) != IS_OK)
        return is_db_error(s->db, "cannot begin", errstr, errstr_size);
    rc = is_db_prepare(s->db, sql, &q, errstr, errstr_size);
    if (rc == IS_OK)
        rc = is_db_prepare(s->db,
                           "SELECT received_at FROM movements WHERE producer_id = ?1 AND site = ?2"
                           " AND seq = ?3 UNION ALL SELECT received_at FROM seq_fills"
                           " WHERE producer_id = ?1 AND site = ?2 AND seq = ?3",
                           &at, errstr, errstr_size);
    while (rc == IS_OK && sqlite3_step(q) == SQLITE_ROW) {
        if (sqlite3_column_type(q, 3) == SQLITE_NULL)
            continue;
        const char *producer = (const char *)sqlite3_column_text(q, 0);
        const char *site = (const char *)sqlite3_column_text(q, 1);
        int64_t wm = sqlite3_column_int64(q, 2), next = sqlite3_column_int64(q, 3);
        if (next <= wm + 1)
            continue;
        sqlite3_reset(at);
        bind_text(at, 1, producer);
        bind_text(at, 2, site);
        sqlite3_bind_int64(at, 3, next);
        if (sqlite3_step(at) != SQLITE_ROW)
            continue;
        int64_t since = sqlite3_column_int64(at, 0);
        if (since < not_before_ms)
            since = not_before_ms;
        if (now_ms - since < older_than_ms)
            continue;
        sqlite3_stmt *set = stmt(s, SQ_SET_WATERMARK);
        bind_text(set, 1, producer);
        bind_text(set, 2, site);
        sqlite3_bind_int64(set, 3, next - 1);
        if (sqlite3_step(set) != SQLITE_DONE) {
            rc = is_db_error(s->db, "cannot move a watermark", errstr, errstr_size);
            break;
        }
        json_t *d =
            json_pack("{s:s,s:s,s:I,s:I}", "producer_id", producer, "site", site, "missing_from",
                      (json_int_t)(wm + 1), "missing_to", (json_int_t)(next - 1));
        char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        rc = store_audit(s, now_ms, "consumer", "sequence-gap-skipped", site, detail, errstr,
                         errstr_size);
        free(detail);
        if (rc == IS_OK)
            rc = store_advance_watermark(s, producer, site);
        if (rc == IS_OK) {
            (*skipped)++;
            n_seq += next - 1 - wm;
        }
    }
    sqlite3_finalize(q);
    sqlite3_finalize(at);
    if (rc == IS_OK && store_commit(s) != IS_OK)
        rc = is_db_error(s->db, "cannot commit", errstr, errstr_size);
    if (rc != IS_OK) {
        store_rollback(s);
        *skipped = 0;
    } else {
        *sequences = n_seq;
    }
    return rc;
}
