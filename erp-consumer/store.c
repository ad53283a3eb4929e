/*
 * store.c — erp-consumer's SQLite state (see store.h for the model).
 *
 * Load: the consume loop applies poll batches of up to a few thousand
 * messages per transaction; the poster fetches and records batches of up to
 * a few hundred postings per transaction. Statements used in loops are
 * prepared once per connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "store.h"

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
    "  state TEXT NOT NULL,"
    "  posting_id TEXT,"
    "  reason TEXT,"
    "  payload BLOB NOT NULL,"
    "  UNIQUE(source_system, movement_id));"
    "CREATE INDEX movements_due ON movements(state, site, producer_id, seq);"
    "CREATE INDEX movements_lot ON movements(lot_key, state);"
    "CREATE INDEX movements_seq ON movements(producer_id, site, seq);"
    "CREATE INDEX movements_posting ON movements(posting_id);"
    "CREATE TABLE watermarks(producer_id TEXT NOT NULL, site TEXT NOT NULL,"
    "  contiguous INTEGER NOT NULL, PRIMARY KEY(producer_id, site)) WITHOUT ROWID;"
    "CREATE TABLE offsets(topic TEXT NOT NULL, part INTEGER NOT NULL,"
    "  next_offset INTEGER NOT NULL, PRIMARY KEY(topic, part)) WITHOUT ROWID;"
    "CREATE TABLE postings(posting_id TEXT PRIMARY KEY, site TEXT NOT NULL,"
    "  tier TEXT NOT NULL, lot_key TEXT NOT NULL, state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER, erp_doc TEXT,"
    "  last_error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE INDEX postings_state ON postings(state, next_at);"
    "CREATE TABLE heartbeats(producer_id TEXT NOT NULL, site TEXT NOT NULL,"
    "  last_sequence INTEGER NOT NULL, hb_time INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL, backlog INTEGER NOT NULL,"
    "  PRIMARY KEY(producer_id, site)) WITHOUT ROWID;"
    "CREATE TABLE dead_letters(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    "  part INTEGER NOT NULL, off INTEGER NOT NULL, movement_id TEXT,"
    "  reason TEXT NOT NULL, at INTEGER NOT NULL);",
};

enum {
    ST_INSERT_MOVEMENT,
    ST_UPSERT_OFFSET,
    ST_GET_OFFSET,
    ST_GET_WATERMARK,
    ST_SET_WATERMARK,
    ST_SEQS_AFTER,
    ST_UPSERT_HEARTBEAT,
    ST_INSERT_DEAD,
    ST_DUE_QUEUED,
    ST_DUE_RETRY,
    ST_INFLIGHT,
    ST_POSTING_MOVEMENTS,
    ST_LOT_HELD,
    ST_MARK_POSTING,
    ST_MARK_MOVEMENT,
    ST_POSTED,
    ST_RETRY,
    ST_FAILED,
    ST_MOVEMENTS_STATE,
    ST_REQUEUE_NEW,
    ST_REQUEUE_NEW_MOVEMENTS,
    ST_REQUEUE_RETRY,
    ST__COUNT
};

static const char *const store_sql[ST__COUNT] = {
    [ST_INSERT_MOVEMENT] =
        "INSERT OR IGNORE INTO movements(source_system, movement_id, producer_id, site, seq,"
        " lot_key, tier, type, topic, part, off, received_at, accepted_at, state, reason,"
        " payload) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
    [ST_UPSERT_OFFSET] = "INSERT INTO offsets(topic, part, next_offset) VALUES(?1,?2,?3)"
                         " ON CONFLICT(topic, part) DO UPDATE SET next_offset ="
                         " max(next_offset, excluded.next_offset)",
    [ST_GET_OFFSET] = "SELECT next_offset FROM offsets WHERE topic = ?1 AND part = ?2",
    [ST_GET_WATERMARK] = "SELECT contiguous FROM watermarks WHERE producer_id = ?1 AND site = ?2",
    [ST_SET_WATERMARK] = "INSERT INTO watermarks(producer_id, site, contiguous) VALUES(?1,?2,?3)"
                         " ON CONFLICT(producer_id, site) DO UPDATE SET contiguous = ?3",
    [ST_SEQS_AFTER] = "SELECT seq FROM movements WHERE producer_id = ?1 AND site = ?2"
                      " AND seq > ?3 ORDER BY seq",
    [ST_UPSERT_HEARTBEAT] =
        "INSERT INTO heartbeats(producer_id, site, last_sequence, hb_time, received_at,"
        " backlog) VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(producer_id, site) DO UPDATE SET"
        " last_sequence = max(last_sequence, ?3), hb_time = max(hb_time, ?4),"
        " received_at = ?5, backlog = ?6",
    [ST_INSERT_DEAD] = "INSERT INTO dead_letters(topic, part, off, movement_id, reason, at)"
                       " VALUES(?1,?2,?3,?4,?5,?6)",
    [ST_DUE_QUEUED] =
        "SELECT m.id, m.payload, m.lot_key, m.site, m.tier, m.topic, m.part, m.off,"
        " m.source_system, m.movement_id FROM movements m JOIN watermarks w"
        " ON w.producer_id = m.producer_id AND w.site = m.site"
        " WHERE m.state = 'queued' AND m.seq <= w.contiguous"
        " ORDER BY m.site, m.producer_id, m.seq LIMIT ?1",
    [ST_DUE_RETRY] = "SELECT posting_id, site, tier, lot_key, attempts FROM postings"
                     " WHERE state = 'retry' AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
    [ST_INFLIGHT] = "SELECT posting_id, site, tier, lot_key, attempts FROM postings"
                    " WHERE state = 'posting' ORDER BY updated_at",
    [ST_POSTING_MOVEMENTS] = "SELECT id, payload, topic, part, off FROM movements"
                             " WHERE posting_id = ?1 ORDER BY producer_id, seq",
    [ST_LOT_HELD] = "SELECT 1 FROM movements WHERE lot_key = ?1"
                    " AND state IN ('posting', 'retry', 'failed') LIMIT 1",
    [ST_MARK_POSTING] =
        "INSERT INTO postings(posting_id, site, tier, lot_key, state, attempts, created_at,"
        " updated_at) VALUES(?1,?2,?3,?4,'posting',1,?5,?5) ON CONFLICT(posting_id) DO"
        " UPDATE SET state = 'posting', attempts = attempts + 1, updated_at = ?5",
    [ST_MARK_MOVEMENT] = "UPDATE movements SET state = 'posting', posting_id = ?2 WHERE id = ?1",
    [ST_POSTED] = "UPDATE postings SET state = 'posted', erp_doc = ?2, last_error = NULL,"
                  " next_at = NULL, updated_at = ?3 WHERE posting_id = ?1",
    [ST_RETRY] = "UPDATE postings SET state = 'retry', last_error = ?2, next_at = ?3,"
                 " updated_at = ?4 WHERE posting_id = ?1",
    [ST_FAILED] = "UPDATE postings SET state = 'failed', last_error = ?2, next_at = NULL,"
                  " updated_at = ?3 WHERE posting_id = ?1",
    [ST_MOVEMENTS_STATE] = "UPDATE movements SET state = ?2 WHERE posting_id = ?1",
    [ST_REQUEUE_NEW] = "DELETE FROM postings WHERE posting_id = ?1",
    [ST_REQUEUE_NEW_MOVEMENTS] = "UPDATE movements SET state = 'queued', posting_id = NULL"
                                 " WHERE posting_id = ?1",
    [ST_REQUEUE_RETRY] = "UPDATE postings SET state = 'retry', attempts = attempts - 1,"
                         " next_at = ?2, updated_at = ?2 WHERE posting_id = ?1",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
};

is_err_t store_open(const char *path, is_db_sync_t sync, store_t **out, char *errstr,
                    size_t errstr_size) {
    is_err_t rc;
    store_t *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return IS_ERR_NOMEM;
    rc = is_db_open(path, store_migrations, sizeof(store_migrations) / sizeof(store_migrations[0]),
                    sync, &s->db, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    for (int i = 0; i < ST__COUNT; i++) {
        rc = is_db_prepare(s->db, store_sql[i], &s->st[i], errstr, errstr_size);
        if (rc != IS_OK)
            goto err;
    }
    *out = s;
    return IS_OK;
err:
    store_close(s);
    return rc;
}

void store_close(store_t *s) {
    if (!s)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    is_db_close(s->db);
    free(s);
}

sqlite3 *store_db(store_t *s) {
    return s->db;
}

/* Reset and clear a statement for reuse. */
static sqlite3_stmt *stmt(store_t *s, int which) {
    sqlite3_stmt *st = s->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) {
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* ---- consume side --------------------------------------------------------- */

typedef struct pair {
    const char *producer, *site;
} pair_t;

/* Advance the (producer, site) watermark over contiguous received sequences. */
static is_err_t advance_watermark(store_t *s, const char *producer, const char *site) {
    sqlite3_stmt *st = stmt(s, ST_GET_WATERMARK);
    int64_t wm = 0, start;
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    if (sqlite3_step(st) == SQLITE_ROW)
        wm = sqlite3_column_int64(st, 0);
    start = wm;
    st = stmt(s, ST_SEQS_AFTER);
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    sqlite3_bind_int64(st, 3, wm);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (seq != wm + 1)
            break;
        wm = seq;
    }
    sqlite3_reset(st);
    if (wm == start && start != 0)
        return IS_OK;
    st = stmt(s, ST_SET_WATERMARK);
    bind_text(st, 1, producer);
    bind_text(st, 2, site);
    sqlite3_bind_int64(st, 3, wm);
    return step_done(st) ? IS_OK : IS_ERR_DB;
}

static is_err_t insert_movement(store_t *s, const store_msg_t *msg, const char *state,
                                int64_t now_ms, int *inserted) {
    const is_movement_t *m = msg->m;
    char lot_key[IS_LOT_KEY_MAX];
    sqlite3_stmt *st = stmt(s, ST_INSERT_MOVEMENT);
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
    bind_text(st, 14, state);
    bind_text(st, 15, msg->reason);
    sqlite3_bind_blob(st, 16, msg->payload ? msg->payload : "", (int)msg->payload_len,
                      SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return IS_ERR_DB;
    *inserted = sqlite3_changes(s->db) > 0;
    return IS_OK;
}

is_err_t store_apply_batch(store_t *s, const store_msg_t *msgs, size_t n, int64_t now_ms,
                           store_batch_result_t *res, char *errstr, size_t errstr_size) {
    is_err_t rc;
    pair_t *pairs = NULL;
    size_t n_pairs = 0;
    sqlite3_stmt *st;

    memset(res, 0, sizeof(*res));
    if (n == 0)
        return IS_OK;
    pairs = calloc(n, sizeof(*pairs));
    if (!pairs)
        return IS_ERR_NOMEM;
    rc = is_db_begin(s->db);
    if (rc != IS_OK)
        goto db_err;
    for (size_t i = 0; i < n; i++) {
        const store_msg_t *msg = &msgs[i];
        int inserted = 0;
        /* Every sequenced message is recorded, even unusable ones, so that the
         * producer's watermark does not stall on its sequence number. */
        if (msg->kind != STORE_MSG_HEARTBEAT && msg->m && msg->m->producer_id[0] &&
            msg->m->sequence > 0) {
            const char *state = msg->kind == STORE_MSG_MOVEMENT ? "queued"
                                : msg->kind == STORE_MSG_DEAD   ? "dead"
                                                                : "ignored";
            rc = insert_movement(s, msg, state, now_ms, &inserted);
            if (rc != IS_OK)
                goto db_err;
            if (inserted) {
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
            if (inserted)
                res->received++;
            else
                res->duplicates++;
            break;
        case STORE_MSG_HEARTBEAT:
            res->heartbeats++;
            st = stmt(s, ST_UPSERT_HEARTBEAT);
            bind_text(st, 1, msg->hb->producer_id);
            bind_text(st, 2, msg->hb->site);
            sqlite3_bind_int64(st, 3, (int64_t)msg->hb->last_sequence);
            sqlite3_bind_int64(st, 4, msg->hb->time);
            sqlite3_bind_int64(st, 5, now_ms);
            sqlite3_bind_int64(st, 6, (int64_t)msg->hb->outbox_backlog);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
            break;
        case STORE_MSG_DEAD:
            res->dead++;
            st = stmt(s, ST_INSERT_DEAD);
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
        st = stmt(s, ST_UPSERT_OFFSET);
        bind_text(st, 1, msg->topic);
        sqlite3_bind_int(st, 2, msg->partition);
        sqlite3_bind_int64(st, 3, msg->offset + 1);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto db_err;
    }
    for (size_t k = 0; k < n_pairs; k++) {
        if (advance_watermark(s, pairs[k].producer, pairs[k].site) != IS_OK)
            goto db_err;
    }
    rc = is_db_commit(s->db);
    if (rc != IS_OK)
        goto db_err;
    free(pairs);
    return IS_OK;
db_err:
    rc = is_db_error(s->db, "cannot apply consumed batch", errstr, errstr_size);
    is_db_rollback(s->db);
    free(pairs);
    memset(res, 0, sizeof(*res));
    return rc;
}

is_err_t store_get_offset(store_t *s, const char *topic, int32_t partition, int64_t *next_offset) {
    sqlite3_stmt *st = stmt(s, ST_GET_OFFSET);
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

/* ---- poster side ---------------------------------------------------------- */

static void posting_release(store_posting_t *p) {
    for (size_t i = 0; i < p->n; i++)
        if (p->m[i])
            invsync__v1__movement__free_unpacked(p->m[i], NULL);
    free(p->m);
    free(p->row_ids);
    free(p->origin);
    memset(p, 0, sizeof(*p));
}

void store_posting_list_release(store_posting_list_t *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        posting_release(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static store_posting_t *list_push(store_posting_list_t *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        store_posting_t *items = realloc(l->items, cap * sizeof(*items));
        if (!items)
            return NULL;
        l->items = items;
        l->cap = cap;
    }
    memset(&l->items[l->n], 0, sizeof(l->items[0]));
    return &l->items[l->n++];
}

/* Append one movement (decoded from payload) to a posting. */
static is_err_t posting_add(store_posting_t *p, int64_t row_id, const void *payload, int len,
                            const char *topic, int32_t part, int64_t off) {
    size_t n = p->n + 1;
    int64_t *ids = realloc(p->row_ids, n * sizeof(*ids));
    if (!ids)
        return IS_ERR_NOMEM;
    p->row_ids = ids;
    is_movement_t **ms = realloc(p->m, n * sizeof(*ms));
    if (!ms)
        return IS_ERR_NOMEM;
    p->m = ms;
    void *origin = realloc(p->origin, n * sizeof(*p->origin));
    if (!origin)
        return IS_ERR_NOMEM;
    p->origin = origin;
    p->m[p->n] = invsync__v1__movement__unpack(NULL, (size_t)len, payload);
    if (!p->m[p->n])
        return IS_ERR_INVALID; /* we stored it after decoding it: corruption */
    p->row_ids[p->n] = row_id;
    snprintf(p->origin[p->n].topic, sizeof(p->origin[p->n].topic), "%s", topic ? topic : "");
    p->origin[p->n].partition = part;
    p->origin[p->n].offset = off;
    p->n = n;
    return IS_OK;
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *st, int col) {
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", v ? (const char *)v : "");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* posting_id = first 32 hex chars of SHA-256 over the sorted "source\x1fid" lines. */
static is_err_t posting_id_of(store_posting_t *p) {
    char **keys = calloc(p->n, sizeof(*keys));
    is_sha256_t h;
    uint8_t digest[IS_SHA256_LEN];
    char hex[IS_SHA256_HEX_LEN + 1];
    is_err_t rc = IS_ERR_NOMEM;
    if (!keys)
        return IS_ERR_NOMEM;
    for (size_t i = 0; i < p->n; i++)
        if (asprintf(&keys[i], "%s\x1f%s", p->m[i]->source_system, p->m[i]->movement_id) < 0)
            goto out;
    qsort(keys, p->n, sizeof(*keys), cmp_str);
    if (is_sha256_init(&h) != IS_OK)
        goto out;
    for (size_t i = 0; i < p->n; i++) {
        is_sha256_update(&h, keys[i], strlen(keys[i]));
        is_sha256_update(&h, "\n", 1);
    }
    is_sha256_final(&h, digest);
    is_hex(digest, IS_SHA256_LEN, hex);
    memcpy(p->posting_id, hex, 32);
    p->posting_id[32] = '\0';
    rc = IS_OK;
out:
    for (size_t i = 0; i < p->n; i++)
        free(keys[i]);
    free(keys);
    return rc;
}

/* Load the postings selected by st (posting_id, site, tier, lot_key, attempts). */
static is_err_t load_postings(store_t *s, sqlite3_stmt *st, store_posting_list_t *out) {
    is_err_t rc = IS_OK;
    size_t first = out->n;
    while (sqlite3_step(st) == SQLITE_ROW) {
        store_posting_t *p = list_push(out);
        if (!p) {
            rc = IS_ERR_NOMEM;
            break;
        }
        copy_col(p->posting_id, sizeof(p->posting_id), st, 0);
        copy_col(p->site, sizeof(p->site), st, 1);
        copy_col(p->tier, sizeof(p->tier), st, 2);
        copy_col(p->lot_key, sizeof(p->lot_key), st, 3);
        p->attempts = sqlite3_column_int(st, 4);
    }
    sqlite3_reset(st);
    for (size_t i = first; rc == IS_OK && i < out->n; i++) {
        store_posting_t *p = &out->items[i];
        sqlite3_stmt *ms = stmt(s, ST_POSTING_MOVEMENTS);
        bind_text(ms, 1, p->posting_id);
        while (rc == IS_OK && sqlite3_step(ms) == SQLITE_ROW)
            rc = posting_add(p, sqlite3_column_int64(ms, 0), sqlite3_column_blob(ms, 1),
                             sqlite3_column_bytes(ms, 1), (const char *)sqlite3_column_text(ms, 2),
                             sqlite3_column_int(ms, 3), sqlite3_column_int64(ms, 4));
        sqlite3_reset(ms);
    }
    return rc;
}

is_err_t store_fetch_inflight(store_t *s, store_posting_list_t *out, char *errstr,
                              size_t errstr_size) {
    is_err_t rc = load_postings(s, stmt(s, ST_INFLIGHT), out);
    if (rc != IS_OK)
        is_errf(errstr, errstr_size, "cannot load in-flight postings: %s", is_err_str(rc));
    return rc;
}

/* Is any earlier movement of this lot posting, waiting to retry or failed? */
static int lot_held(store_t *s, const char *lot_key) {
    sqlite3_stmt *st = stmt(s, ST_LOT_HELD);
    int held;
    bind_text(st, 1, lot_key);
    held = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return held;
}

is_err_t store_fetch_due(store_t *s, int64_t now_ms, size_t max, store_posting_list_t *out,
                         char *errstr, size_t errstr_size) {
    sqlite3_stmt *st;
    is_err_t rc;
    char held_lot[IS_LOT_KEY_MAX] = "";

    st = stmt(s, ST_DUE_RETRY);
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    rc = load_postings(s, st, out);
    if (rc != IS_OK)
        goto err;
    if (out->n >= max)
        return IS_OK;

    st = stmt(s, ST_DUE_QUEUED);
    sqlite3_bind_int64(st, 1, (int64_t)(max - out->n));
    while (rc == IS_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *lot_key = (const char *)sqlite3_column_text(st, 2);
        store_posting_t *p;
        /* Rows come in (site, producer, seq) order: the check is cached for a run of one lot. */
        if (strcmp(lot_key, held_lot) == 0)
            continue;
        if (lot_held(s, lot_key)) {
            snprintf(held_lot, sizeof(held_lot), "%s", lot_key);
            continue;
        }
        p = list_push(out);
        if (!p) {
            rc = IS_ERR_NOMEM;
            break;
        }
        copy_col(p->lot_key, sizeof(p->lot_key), st, 2);
        copy_col(p->site, sizeof(p->site), st, 3);
        copy_col(p->tier, sizeof(p->tier), st, 4);
        rc = posting_add(p, sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
                         sqlite3_column_bytes(st, 1), (const char *)sqlite3_column_text(st, 5),
                         sqlite3_column_int(st, 6), sqlite3_column_int64(st, 7));
        if (rc == IS_OK)
            rc = posting_id_of(p);
    }
    sqlite3_reset(st);
    if (rc == IS_OK)
        return IS_OK;
err:
    is_errf(errstr, errstr_size, "cannot load due postings: %s", is_err_str(rc));
    return rc;
}

is_err_t store_mark_posting(store_t *s, store_posting_list_t *l, int64_t now_ms, char *errstr,
                            size_t errstr_size) {
    if (l->n == 0)
        return IS_OK;
    if (is_db_begin(s->db) != IS_OK)
        goto db_err;
    for (size_t i = 0; i < l->n; i++) {
        store_posting_t *p = &l->items[i];
        sqlite3_stmt *st = stmt(s, ST_MARK_POSTING);
        bind_text(st, 1, p->posting_id);
        bind_text(st, 2, p->site);
        bind_text(st, 3, p->tier);
        bind_text(st, 4, p->lot_key);
        sqlite3_bind_int64(st, 5, now_ms);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto db_err;
        for (size_t k = 0; k < p->n; k++) {
            st = stmt(s, ST_MARK_MOVEMENT);
            sqlite3_bind_int64(st, 1, p->row_ids[k]);
            bind_text(st, 2, p->posting_id);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
        }
    }
    if (is_db_commit(s->db) != IS_OK)
        goto db_err;
    return IS_OK;
db_err:;
    is_err_t rc = is_db_error(s->db, "cannot mark postings", errstr, errstr_size);
    is_db_rollback(s->db);
    return rc;
}

static int set_movements_state(store_t *s, const char *posting_id, const char *state) {
    sqlite3_stmt *st = stmt(s, ST_MOVEMENTS_STATE);
    bind_text(st, 1, posting_id);
    bind_text(st, 2, state);
    return sqlite3_step(st) == SQLITE_DONE;
}

is_err_t store_record_results(store_t *s, const store_posting_list_t *l,
                              const store_result_t *results, int64_t now_ms, char *errstr,
                              size_t errstr_size) {
    if (l->n == 0)
        return IS_OK;
    if (is_db_begin(s->db) != IS_OK)
        goto db_err;
    for (size_t i = 0; i < l->n; i++) {
        const store_posting_t *p = &l->items[i];
        const store_result_t *r = &results[i];
        sqlite3_stmt *st;
        int ok = 1;
        switch (r->outcome) {
        case STORE_POSTED:
            st = stmt(s, ST_POSTED);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, r->document);
            sqlite3_bind_int64(st, 3, now_ms);
            ok = sqlite3_step(st) == SQLITE_DONE && set_movements_state(s, p->posting_id, "posted");
            break;
        case STORE_RETRY:
            st = stmt(s, ST_RETRY);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, r->error);
            sqlite3_bind_int64(st, 3, r->next_at_ms);
            sqlite3_bind_int64(st, 4, now_ms);
            ok = sqlite3_step(st) == SQLITE_DONE && set_movements_state(s, p->posting_id, "retry");
            break;
        case STORE_FAILED:
            st = stmt(s, ST_FAILED);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, r->error);
            sqlite3_bind_int64(st, 3, now_ms);
            ok = sqlite3_step(st) == SQLITE_DONE && set_movements_state(s, p->posting_id, "failed");
            break;
        case STORE_REQUEUE:
            /* Not attempted: undo the attempt counted by store_mark_posting. */
            if (p->attempts == 0) {
                st = stmt(s, ST_REQUEUE_NEW_MOVEMENTS);
                bind_text(st, 1, p->posting_id);
                ok = sqlite3_step(st) == SQLITE_DONE;
                st = stmt(s, ST_REQUEUE_NEW);
                bind_text(st, 1, p->posting_id);
                ok = ok && sqlite3_step(st) == SQLITE_DONE;
            } else {
                st = stmt(s, ST_REQUEUE_RETRY);
                bind_text(st, 1, p->posting_id);
                sqlite3_bind_int64(st, 2, now_ms);
                ok = sqlite3_step(st) == SQLITE_DONE &&
                     set_movements_state(s, p->posting_id, "retry");
            }
            break;
        }
        if (!ok)
            goto db_err;
    }
    if (is_db_commit(s->db) != IS_OK)
        goto db_err;
    return IS_OK;
db_err:;
    is_err_t rc = is_db_error(s->db, "cannot record posting results", errstr, errstr_size);
    is_db_rollback(s->db);
    return rc;
}

/* ---- queries -------------------------------------------------------------- */

is_err_t store_counts(store_t *s, store_counts_t *out, char *errstr, size_t errstr_size) {
    static const char *const sql =
        "SELECT count(*),"
        " coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'posting'), 0),"
        " coalesce(sum(state = 'retry'), 0), coalesce(sum(state = 'posted'), 0),"
        " coalesce(sum(state = 'failed'), 0), coalesce(sum(state = 'dead'), 0),"
        " (SELECT count(*) FROM postings),"
        " (SELECT count(*) FROM postings WHERE state = 'posted'),"
        " (SELECT count(*) FROM postings WHERE state = 'failed'),"
        " (SELECT count(*) FROM postings WHERE state = 'retry'),"
        " coalesce((SELECT min(received_at) FROM movements WHERE state IN"
        "   ('queued', 'posting', 'retry', 'failed')), 0)"
        " FROM movements";
    sqlite3_stmt *st = NULL;
    is_err_t rc = is_db_prepare(s->db, sql, &st, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    memset(out, 0, sizeof(*out));
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = is_db_error(s->db, "cannot count movements", errstr, errstr_size);
        sqlite3_finalize(st);
        return rc;
    }
    int64_t *fields[] = {&out->movements,       &out->queued,          &out->posting,
                         &out->retry,           &out->posted,          &out->failed,
                         &out->dead,            &out->postings,        &out->postings_posted,
                         &out->postings_failed, &out->postings_retry,  &out->oldest_unposted_ms};
    for (int i = 0; i < (int)(sizeof(fields) / sizeof(fields[0])); i++)
        *fields[i] = sqlite3_column_int64(st, i);
    sqlite3_finalize(st);
    return IS_OK;
}
