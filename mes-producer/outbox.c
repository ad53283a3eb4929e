/*
 * outbox.c — SQLite outbox: all-or-nothing appends with dedup and gap-free
 * per-site sequences, ordered reads and delivery marks for the forwarder.
 *
 * Three connections (writer, forward, stats; see outbox.h), each with its
 * statements prepared once at open and reset after every use. Text is bound
 * with SQLITE_STATIC because every statement is reset before the bound
 * strings go out of scope.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"
#include "outbox.h"

#define S(x) ((x) ? (x) : "")

static const char *const outbox_migrations[] = {
    /* 1: the outbox, per-site sequences, and who owns the file. */
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  site TEXT NOT NULL,"
    "  site_seq INTEGER NOT NULL,"
    "  source_system TEXT NOT NULL,"
    "  movement_id TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  msg_key TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  tier TEXT NOT NULL,"
    "  policy_version TEXT NOT NULL,"
    "  accepted_at INTEGER NOT NULL,"
    "  sent_at INTEGER,"
    "  UNIQUE (source_system, movement_id),"
    "  UNIQUE (site, site_seq));"
    /* The backlog: small when healthy, so count/first/fetch stay cheap. */
    "CREATE INDEX outbox_unsent ON outbox(id) WHERE sent_at IS NULL;"
    "CREATE TABLE site_seq (site TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    /* 2: which movement reverses which. A movement is reversed once: a second
     * REVERSAL of it would take its quantity off the ERP twice. Reversals
     * accepted before this migration are not in the table (their payloads
     * would have to be decoded); the consumer refuses a second one too. */
    "CREATE TABLE reversals (source_system TEXT NOT NULL, original_id TEXT NOT NULL,"
    "  reversal_id TEXT NOT NULL, PRIMARY KEY (source_system, original_id)) WITHOUT ROWID;",
};

/* One site's counter; site NULL = empty slot. */
typedef struct site_ctr {
    char *site;
    uint64_t last; /* last sequence given (committed or in the open transaction) */
    int dirty;     /* changed in the open transaction, not yet written to site_seq */
} site_ctr_t;

struct outbox {
    char *path;
    char *producer_id;

    /* writer role: appends, under wmu */
    pthread_mutex_t wmu;
    sqlite3 *w;
    sqlite3_stmt *w_lookup;       /* (source_system, movement_id) → id, fingerprint, seq, tier,
                                     payload */
    sqlite3_stmt *w_seq_set;      /* write one site's last_seq */
    sqlite3_stmt *w_seq_load;     /* every (site, last_seq) */
    sqlite3_stmt *w_insert;       /* ON CONFLICT(source_system, movement_id) DO NOTHING */
    sqlite3_stmt *w_reversal;     /* note a reversal; returns the original's (first) reversal */
    sqlite3_stmt *w_reversal_get; /* the original's noted reversal, if any */
    sqlite3_stmt *w_probe;
    sqlite3_stmt *w_sp;          /* SAVEPOINT req: one per request of a group */
    sqlite3_stmt *w_sp_release;  /* RELEASE req */
    sqlite3_stmt *w_sp_rollback; /* ROLLBACK TO req */
    uint8_t *buf;                /* pack buffer, grown as needed */
    size_t buf_cap;
    int w_failed; /* last append failed with a database error */
    /*
     * Per-site sequence counters (open addressing on the site name): a copy
     * of site_seq, valid while ctr_valid. Sequences are assigned from here
     * and the touched sites written back to site_seq before the commit, in
     * the same transaction. Any rollback clears ctr_valid; the next append
     * reloads site_seq inside its own transaction, so memory never runs
     * ahead of what is committed.
     */
    site_ctr_t *ctr;
    size_t ctr_cap; /* slots, a power of two; 0 before the first load */
    size_t ctr_n;   /* used slots */
    int ctr_valid;
    /*
     * Group commit (guarded by qmu): appends queue up; whoever finds no
     * leader becomes it, takes the queue (up to GROUP_MAX_ROWS rows, at
     * least one request), stores each request under its own savepoint and
     * commits them all in one transaction, then marks them done. A request
     * returns only once its own outcome is known, i.e. after that commit.
     */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    struct append_req *q_head, *q_tail;
    int q_leading;
    /* Append notification for the forwarder (guarded by nmu). */
    pthread_mutex_t nmu;
    pthread_cond_t ncv;
    uint64_t appends;
    char w_failed_msg[256];

    /* forward role: the forwarder thread, no lock */
    sqlite3 *f;
    sqlite3_stmt *f_fetch;
    sqlite3_stmt *f_mark;
    sqlite3_stmt *f_first;
    sqlite3_stmt *f_oldest; /* accepted_at of the lowest unsent id */
    sqlite3_stmt *f_topics; /* unsent rows per topic */
    sqlite3_stmt *f_gen;    /* the republish generation */

    /* stats role: any thread, under smu */
    pthread_mutex_t smu;
    sqlite3 *s;
    sqlite3_stmt *s_count;
    sqlite3_stmt *s_oldest;
    sqlite3_stmt *s_last_seq;
    sqlite3_stmt *s_fingerprint; /* (source_system, movement_id) → fingerprint */
    sqlite3_stmt *s_sites;
};

static void stmt_done(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* ---- per-site sequence counters (writer, under wmu) --------------------- */

static void ctr_clear(outbox_t *ob) {
    size_t i;
    for (i = 0; i < ob->ctr_cap; i++) {
        free(ob->ctr[i].site);
        ob->ctr[i].site = NULL;
    }
    ob->ctr_n = 0;
    ob->ctr_valid = 0;
}

static size_t site_hash(const char *s) {
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The slot of site (found, or the empty one where it belongs). */
static site_ctr_t *ctr_slot(site_ctr_t *tab, size_t cap, const char *site) {
    size_t i = site_hash(site) & (cap - 1);
    while (tab[i].site && strcmp(tab[i].site, site) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

/* Double the table (or create it); 0 or -1 on ENOMEM (table unchanged). */
static int ctr_grow(outbox_t *ob) {
    size_t cap = ob->ctr_cap ? ob->ctr_cap * 2 : 64, i;
    site_ctr_t *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return -1;
    for (i = 0; i < ob->ctr_cap; i++) {
        if (ob->ctr[i].site)
            *ctr_slot(tab, cap, ob->ctr[i].site) = ob->ctr[i];
    }
    free(ob->ctr);
    ob->ctr = tab;
    ob->ctr_cap = cap;
    return 0;
}

/* The counter of site, created at 0 when new; NULL on ENOMEM. */
static site_ctr_t *ctr_get(outbox_t *ob, const char *site) {
    site_ctr_t *c;
    if ((ob->ctr_n + 1) * 2 > ob->ctr_cap && ctr_grow(ob) != 0)
        return NULL;
    c = ctr_slot(ob->ctr, ob->ctr_cap, site);
    if (!c->site) {
        c->site = strdup(site);
        if (!c->site)
            return NULL;
        c->last = 0;
        c->dirty = 0;
        ob->ctr_n++;
    }
    return c;
}

/* Load site_seq into the counters (inside the writer's open transaction). */
static is_err_t ctr_load(outbox_t *ob) {
    is_err_t rc = IS_OK;
    int src;

    ctr_clear(ob);
    while ((src = sqlite3_step(ob->w_seq_load)) == SQLITE_ROW) {
        site_ctr_t *c = ctr_get(ob, (const char *)sqlite3_column_text(ob->w_seq_load, 0));
        if (!c) {
            rc = IS_ERR_NOMEM;
            break;
        }
        c->last = (uint64_t)sqlite3_column_int64(ob->w_seq_load, 1);
    }
    if (rc == IS_OK && src != SQLITE_DONE)
        rc = IS_ERR_DB;
    stmt_done(ob->w_seq_load);
    ob->ctr_valid = rc == IS_OK;
    return rc;
}

/* Write the sites changed in this transaction to site_seq. */
static is_err_t ctr_flush(outbox_t *ob) {
    size_t i;
    for (i = 0; i < ob->ctr_cap; i++) {
        site_ctr_t *c = &ob->ctr[i];
        int src;
        if (!c->site || !c->dirty)
            continue;
        sqlite3_bind_text(ob->w_seq_set, 1, c->site, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ob->w_seq_set, 2, (sqlite3_int64)c->last);
        src = sqlite3_step(ob->w_seq_set);
        stmt_done(ob->w_seq_set);
        if (src != SQLITE_DONE)
            return IS_ERR_DB;
        c->dirty = 0;
    }
    return IS_OK;
}

static void finalize_all(outbox_t *ob) {
    sqlite3_stmt *all[] = {ob->w_lookup,     ob->w_seq_set,      ob->w_seq_load, ob->w_insert,
                           ob->w_reversal,   ob->w_reversal_get, ob->w_probe,    ob->w_sp,
                           ob->w_sp_release, ob->w_sp_rollback,  ob->f_fetch,    ob->f_mark,
                           ob->f_first,      ob->s_count,        ob->s_oldest,   ob->s_last_seq,
                           ob->s_sites,      ob->s_fingerprint,  ob->f_oldest,   ob->f_topics,
                           ob->f_gen};
    size_t i;
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
}

void outbox_destroy(outbox_t *ob) {
    if (!ob)
        return;
    finalize_all(ob);
    is_db_close(ob->w);
    is_db_close(ob->f);
    is_db_close(ob->s);
    pthread_mutex_destroy(&ob->wmu);
    pthread_mutex_destroy(&ob->nmu);
    pthread_cond_destroy(&ob->ncv);
    pthread_mutex_destroy(&ob->qmu);
    pthread_cond_destroy(&ob->qcv);
    pthread_mutex_destroy(&ob->smu);
    ctr_clear(ob);
    free(ob->ctr);
    free(ob->buf);
    free(ob->path);
    free(ob->producer_id);
    free(ob);
}

/* Record the owner on first open; refuse a different producer_id later. */
static is_err_t claim_owner(outbox_t *ob, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    is_err_t rc;
    int src;

    rc = is_db_prepare(ob->w,
                       "INSERT OR IGNORE INTO outbox_meta(key, value) VALUES('producer_id', ?1)",
                       &st, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    sqlite3_bind_text(st, 1, ob->producer_id, -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    sqlite3_finalize(st);
    if (src != SQLITE_DONE)
        return is_db_error(ob->w, "record producer_id", errstr, errstr_size);

    rc = is_db_prepare(ob->w, "SELECT value FROM outbox_meta WHERE key = 'producer_id'", &st,
                       errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        sqlite3_finalize(st);
        return is_db_error(ob->w, "read producer_id", errstr, errstr_size);
    }
    if (strcmp((const char *)sqlite3_column_text(st, 0), ob->producer_id) != 0) {
        is_errf(errstr, errstr_size,
                "outbox '%s' belongs to producer_id '%s', not '%s' (its sequences would not "
                "start at 1; drain it and use a new outbox.path)",
                ob->path, (const char *)sqlite3_column_text(st, 0), ob->producer_id);
        sqlite3_finalize(st);
        return IS_ERR_CONFIG;
    }
    sqlite3_finalize(st);
    return IS_OK;
}

static is_err_t prepare_all(outbox_t *ob, char *errstr, size_t errstr_size) {
    const struct {
        sqlite3 *db;
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {ob->w, &ob->w_lookup,
         "SELECT id, fingerprint, site_seq, tier, payload FROM outbox"
         " WHERE source_system = ?1 AND movement_id = ?2"},
        {ob->w, &ob->w_seq_set,
         "INSERT INTO site_seq(site, last_seq) VALUES(?1, ?2)"
         " ON CONFLICT(site) DO UPDATE SET last_seq = excluded.last_seq"},
        {ob->w, &ob->w_seq_load, "SELECT site, last_seq FROM site_seq"},
        /* Only the dedup key may conflict quietly: a clash on (site, site_seq)
         * would be a counter bug and fails the append. */
        {ob->w, &ob->w_insert,
         "INSERT INTO outbox(site, site_seq, source_system, movement_id, fingerprint, topic,"
         " msg_key, payload, tier, policy_version, accepted_at)"
         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
         " ON CONFLICT(source_system, movement_id) DO NOTHING"},
        {ob->w, &ob->w_reversal,
         "INSERT INTO reversals(source_system, original_id, reversal_id) VALUES(?1, ?2, ?3)"
         " ON CONFLICT(source_system, original_id) DO UPDATE SET reversal_id = reversal_id"
         " RETURNING reversal_id"},
        {ob->w, &ob->w_reversal_get,
         "SELECT reversal_id FROM reversals WHERE source_system = ?1 AND original_id = ?2"},
        {ob->f, &ob->f_mark,
         "UPDATE outbox SET sent_at = ?3 WHERE id BETWEEN ?1 AND ?2 AND sent_at IS NULL"},
        {ob->w, &ob->w_sp, "SAVEPOINT req"},
        {ob->w, &ob->w_sp_release, "RELEASE req"},
        {ob->w, &ob->w_sp_rollback, "ROLLBACK TO req"},
        {ob->w, &ob->w_probe,
         "INSERT OR REPLACE INTO outbox_meta(key, value) VALUES('writable_probe', 'x')"},
        {ob->f, &ob->f_fetch,
         "SELECT id, site, site_seq, source_system, movement_id, topic, msg_key, payload,"
         " tier, policy_version, accepted_at FROM outbox INDEXED BY outbox_unsent"
         " WHERE sent_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2"},
        {ob->f, &ob->f_first,
         "SELECT id FROM outbox INDEXED BY outbox_unsent WHERE sent_at IS NULL"
         " ORDER BY id LIMIT 1"},
        {ob->f, &ob->f_gen,
         "SELECT CAST(value AS INTEGER) FROM outbox_meta WHERE key = 'republish_generation'"},
        {ob->f, &ob->f_oldest,
         "SELECT accepted_at FROM outbox INDEXED BY outbox_unsent WHERE sent_at IS NULL"
         " ORDER BY id LIMIT 1"},
        {ob->f, &ob->f_topics,
         /* The oldest OUTBOX_TOPIC_SCAN unsent rows only: a topic the broker
          * lacks keeps its rows at the head of the queue while the others
          * drain, and a backlog of millions after an outage is not read
          * every few seconds. */
         "SELECT topic, min(site), min(tier), count(*), min(accepted_at) FROM ("
         "SELECT topic, site, tier, accepted_at FROM outbox INDEXED BY outbox_unsent"
         " WHERE sent_at IS NULL ORDER BY id LIMIT " OUTBOX_TOPIC_SCAN_SQL ") GROUP BY topic"},
        {ob->s, &ob->s_count,
         "SELECT COUNT(*) FROM outbox INDEXED BY outbox_unsent WHERE sent_at IS NULL"},
        {ob->s, &ob->s_oldest,
         "SELECT accepted_at FROM outbox INDEXED BY outbox_unsent WHERE sent_at IS NULL"
         " ORDER BY id LIMIT 1"},
        {ob->s, &ob->s_last_seq, "SELECT last_seq FROM site_seq WHERE site = ?1"},
        {ob->s, &ob->s_fingerprint,
         "SELECT fingerprint FROM outbox WHERE source_system = ?1 AND movement_id = ?2"},
        {ob->s, &ob->s_sites, "SELECT site, last_seq FROM site_seq ORDER BY site"},
    };
    size_t i;
    for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        is_err_t rc = is_db_prepare(stmts[i].db, stmts[i].sql, stmts[i].st, errstr, errstr_size);
        if (rc != IS_OK)
            return rc;
    }
    return IS_OK;
}

is_err_t outbox_open(const char *path, is_db_sync_t sync, const char *producer_id, outbox_t **out,
                     char *errstr, size_t errstr_size) {
    const size_t n_mig = sizeof(outbox_migrations) / sizeof(outbox_migrations[0]);
    outbox_t *ob;
    is_err_t rc;

    *out = NULL;
    if (!path || !*path || strcmp(path, ":memory:") == 0 || !producer_id || !*producer_id) {
        is_errf(errstr, errstr_size, "outbox '%s': needs a file path and a producer_id", S(path));
        return IS_ERR_INVALID;
    }
    ob = calloc(1, sizeof(*ob));
    if (!ob)
        return IS_ERR_NOMEM;
    pthread_mutex_init(&ob->wmu, NULL);
    pthread_mutex_init(&ob->nmu, NULL);
    pthread_cond_init(&ob->ncv, NULL);
    pthread_mutex_init(&ob->qmu, NULL);
    pthread_cond_init(&ob->qcv, NULL);
    pthread_mutex_init(&ob->smu, NULL);
    ob->path = strdup(path);
    ob->producer_id = strdup(producer_id);
    if (!ob->path || !ob->producer_id) {
        rc = IS_ERR_NOMEM;
        goto err;
    }
    /* The writer applies the migrations; the others then find them applied. */
    rc = is_db_open(path, outbox_migrations, n_mig, sync, &ob->w, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    /* Marks may use NORMAL: a lost mark only resends a row, which the consumer dedups. */
    rc =
        is_db_open(path, outbox_migrations, n_mig,
                   sync == IS_DB_SYNC_FULL ? IS_DB_SYNC_NORMAL : sync, &ob->f, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    rc = is_db_open(path, outbox_migrations, n_mig, sync, &ob->s, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    rc = claim_owner(ob, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    rc = prepare_all(ob, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    *out = ob;
    return IS_OK;
err:
    outbox_destroy(ob);
    return rc;
}

/* Pack the stamped movement into ob->buf; returns the length or 0 on ENOMEM. */
static size_t pack_stamped(outbox_t *ob, const outbox_item_t *it, uint64_t seq, int64_t now_ms) {
    is_movement_t copy = *it->m; /* shallow: pack only reads */
    size_t len;

    copy.producer_id = ob->producer_id;
    copy.accepted_time = now_ms;
    copy.sequence = seq;
    copy.tier = (char *)it->tier;
    copy.policy_version = (char *)it->policy_version;
    len = invsync__v1__movement__get_packed_size(&copy);
    if (len > ob->buf_cap) {
        size_t cap = len < 4096 ? 4096 : len * 2;
        uint8_t *nb = realloc(ob->buf, cap);
        if (!nb)
            return 0;
        ob->buf = nb;
        ob->buf_cap = cap;
    }
    return invsync__v1__movement__pack(&copy, ob->buf);
}

/*
 * Look up one item that the insert found already stored; 1 when found
 * (status and stored fields filled), 0 when not, -1 on a database error.
 */
static int lookup_item(outbox_t *ob, outbox_item_t *it, const uint8_t fp[IS_SHA256_LEN]) {
    int src, found = 0;
    sqlite3_bind_text(ob->w_lookup, 1, S(it->m->source_system), -1, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_lookup, 2, S(it->m->movement_id), -1, SQLITE_STATIC);
    src = sqlite3_step(ob->w_lookup);
    if (src == SQLITE_ROW) {
        const void *stored = sqlite3_column_blob(ob->w_lookup, 1);
        int stored_len = sqlite3_column_bytes(ob->w_lookup, 1);
        const unsigned char *tier = sqlite3_column_text(ob->w_lookup, 3);
        found = 1;
        if (stored_len == IS_SHA256_LEN && memcmp(stored, fp, IS_SHA256_LEN) == 0) {
            it->status = OUTBOX_DUPLICATE;
            it->id = sqlite3_column_int64(ob->w_lookup, 0);
            it->sequence = (uint64_t)sqlite3_column_int64(ob->w_lookup, 2);
            is_errf(it->stored_tier, sizeof(it->stored_tier), "%s", tier ? (const char *)tier : "");
        } else {
            it->status = OUTBOX_CONFLICT;
        }
    } else if (src != SQLITE_DONE) {
        found = -1;
    }
    stmt_done(ob->w_lookup);
    return found;
}

/* ---- reversal vs. its original (writer, under wmu) ---------------------- */

/* Mark it MISMATCH on field; the message is "<field> is '<have>' but movement '<id>' <what>". */
static int mismatch(outbox_item_t *it, const char *field, const char *have, const char *orig_id,
                    const char *what) {
    const char *fmt = "%s is '%s' but movement '%s' %s";
    int len = snprintf(NULL, 0, fmt, field, have, orig_id, what);

    it->status = OUTBOX_MISMATCH;
    it->mismatch_field = field;
    free(it->mismatch);
    it->mismatch = len < 0 ? NULL : malloc((size_t)len + 1);
    if (it->mismatch)
        snprintf(it->mismatch, (size_t)len + 1, fmt, field, have, orig_id, what);
    return 1;
}

/* "has '<want>'" for mismatch(). */
static int mismatch_has(outbox_item_t *it, const char *field, const char *have, const char *orig_id,
                        const char *want) {
    char what[IS_MOVEMENT_MAX_STR + 8];
    /* Stored values passed validation (≤ IS_MOVEMENT_MAX_STR); longer ones are cut. */
    is_errf(what, sizeof(what), "has '%s'", want);
    return mismatch(it, field, have, orig_id, what);
}

/*
 * 1 (it marked MISMATCH) when the reversal rv does not carry the fields of
 * orig, the movement it reverses; 0 when it does. Statuses are compared by
 * their effect (defaults applied) so that an explicit UNRESTRICTED matches
 * an omitted one wherever UNRESTRICTED is the default.
 */
static int reversal_mismatch(outbox_item_t *it, const is_movement_t *orig) {
    is_reversal_diff_t d;
    const char *oid = S(orig->movement_id);
    if (is_movement_reversal_matches(it->m, orig, &d)) {
        /* At ingest also the order (the consumer does not re-judge this for
         * reversals an older producer accepted): the wrong order's
         * consumption or receipt would be reversed. */
        if (strcmp(S(it->m->order_id), S(orig->order_id)) != 0)
            return mismatch_has(it, "order_id", S(it->m->order_id), oid, S(orig->order_id));
        return 0;
    }
    if (strcmp(d.field, "reversed_type") == 0) {
        char what[64];
        is_errf(what, sizeof(what), "is a %s", d.want);
        return mismatch(it, "reversed_type", d.have, oid, what);
    }
    return mismatch_has(it, d.field, d.have, oid, d.want);
}

/*
 * Note a new REVERSAL, valid against its original in this outbox, as that
 * original's reversal. When another movement already reverses it (stored
 * before, or earlier in this request), the item is a MISMATCH naming it.
 * Noting it again is a no-op (the second pass of append_items). A reversal
 * of an original this outbox does not hold is not noted: it cannot be
 * judged here, and a wrong one must not block a corrected one (the consumer
 * refuses a second valid reversal). IS_OK or an error.
 */
static is_err_t note_reversal(outbox_t *ob, outbox_item_t *it, int known, char *errstr,
                              size_t errstr_size) {
    const is_movement_t *m = it->m;
    char first[IS_MOVEMENT_MAX_STR + 1] = "";
    sqlite3_stmt *st = known ? ob->w_reversal : ob->w_reversal_get;
    int src;

    if (m->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL || !m->reverses_movement_id ||
        !*m->reverses_movement_id)
        return IS_OK;
    sqlite3_bind_text(st, 1, S(m->source_system), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->reverses_movement_id, -1, SQLITE_STATIC);
    if (known)
        sqlite3_bind_text(st, 3, S(m->movement_id), -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        is_errf(first, sizeof(first), "%s", (const char *)sqlite3_column_text(st, 0));
    stmt_done(st);
    if (src != SQLITE_ROW && !(src == SQLITE_DONE && !known))
        return is_db_error(ob->w, "note reversal", errstr, errstr_size);
    if (!first[0])
        return IS_OK; /* original not held and not reversed here */
    if (strcmp(first, S(m->movement_id)) != 0) {
        char what[IS_MOVEMENT_MAX_STR + 32];
        is_errf(what, sizeof(what), "is already reversed by '%s'", first);
        mismatch(it, "reverses_movement_id", m->reverses_movement_id, m->reverses_movement_id,
                 what);
    }
    return IS_OK;
}

/*
 * Check a REVERSAL just inserted against its original when that is stored
 * (committed, or earlier in this transaction). IS_OK (it may now be
 * MISMATCH) or an error.
 */
static is_err_t check_reversal(outbox_t *ob, outbox_item_t *it, char *errstr, size_t errstr_size) {
    const is_movement_t *m = it->m;
    is_movement_t *orig = NULL;
    is_err_t rc = IS_OK;
    int src;

    if (m->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL || !m->reverses_movement_id ||
        !*m->reverses_movement_id)
        return IS_OK;
    sqlite3_bind_text(ob->w_lookup, 1, S(m->source_system), -1, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_lookup, 2, m->reverses_movement_id, -1, SQLITE_STATIC);
    src = sqlite3_step(ob->w_lookup);
    if (src == SQLITE_ROW) {
        const void *payload = sqlite3_column_blob(ob->w_lookup, 4);
        int len = sqlite3_column_bytes(ob->w_lookup, 4);
        orig = invsync__v1__movement__unpack(NULL, (size_t)len, payload);
        /* A stored row that does not decode is not this request's fault: the
         * reversal goes in unchecked (the consumer checks it again) rather
         * than failing every request of the group, for good. */
        if (!orig)
            is_log(IS_LOG_ERROR, "cannot decode a stored movement; reversal not checked",
                   "movement_id", S(m->movement_id), "reverses", m->reverses_movement_id, NULL);
    } else if (src != SQLITE_DONE) {
        rc = is_db_error(ob->w, "look up reversed movement", errstr, errstr_size);
    }
    stmt_done(ob->w_lookup);
    if (orig) {
        int bad = reversal_mismatch(it, orig);
        invsync__v1__movement__free_unpacked(orig, NULL);
        /* A valid reversal of a movement this outbox holds: it is the one. */
        if (!bad)
            rc = note_reversal(ob, it, 1, errstr, errstr_size);
    } else if (rc == IS_OK && src == SQLITE_DONE) {
        /* The original is gone (outbox.retention) or was never here: one
         * noted while it was here still counts. */
        rc = note_reversal(ob, it, 0, errstr, errstr_size);
    }
    return rc;
}

/* What outbox_append computes per item before taking the writer lock. */
typedef struct item_prep {
    uint8_t fp[IS_SHA256_LEN];
    char key[IS_LOT_KEY_MAX];
} item_prep_t;

/*
 * Insert one item with the site's next sequence, or, when its
 * (source_system, movement_id) is already stored (earlier or in this
 * transaction), classify it as DUPLICATE / CONFLICT without using a sequence.
 */
static is_err_t store_item(outbox_t *ob, outbox_item_t *it, const item_prep_t *pp, int64_t now_ms,
                           char *errstr, size_t errstr_size) {
    const is_movement_t *m = it->m;
    site_ctr_t *c = ctr_get(ob, m->site);
    uint64_t seq;
    size_t len;
    int src, found;

    if (!c)
        return IS_ERR_NOMEM;
    seq = c->last + 1;
    len = pack_stamped(ob, it, seq, now_ms);
    if (len == 0)
        return IS_ERR_NOMEM;

    sqlite3_bind_text(ob->w_insert, 1, m->site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ob->w_insert, 2, (sqlite3_int64)seq);
    sqlite3_bind_text(ob->w_insert, 3, m->source_system, -1, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_insert, 4, m->movement_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(ob->w_insert, 5, pp->fp, IS_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_insert, 6, S(it->topic), -1, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_insert, 7, pp->key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(ob->w_insert, 8, ob->buf, (int)len, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_insert, 9, S(it->tier), -1, SQLITE_STATIC);
    sqlite3_bind_text(ob->w_insert, 10, S(it->policy_version), -1, SQLITE_STATIC);
    sqlite3_bind_int64(ob->w_insert, 11, now_ms);
    src = sqlite3_step(ob->w_insert);
    stmt_done(ob->w_insert);
    if (src != SQLITE_DONE)
        return is_db_error(ob->w, "insert into outbox", errstr, errstr_size);

    if (sqlite3_changes(ob->w) == 1) {
        c->last = seq;
        c->dirty = 1;
        it->status = OUTBOX_ACCEPTED;
        it->sequence = seq;
        it->id = sqlite3_last_insert_rowid(ob->w);
        is_errf(it->stored_tier, sizeof(it->stored_tier), "%s", S(it->tier));
        /* Only a new row: a resent reversal stays a DUPLICATE whatever is stored. */
        return check_reversal(ob, it, errstr, errstr_size);
    }
    /* Already stored: the rare path pays for the second look-up. */
    found = lookup_item(ob, it, pp->fp);
    if (found < 0)
        return is_db_error(ob->w, "look up movement", errstr, errstr_size);
    if (found == 0) {
        is_errf(errstr, errstr_size, "movement '%s': insert ignored but no stored row found",
                m->movement_id);
        return IS_ERR_DB;
    }
    return IS_OK;
}

/* The index of the item after i that is new here and is the movement
 * REVERSAL items[i] reverses; n when there is none. */
static size_t original_later(const outbox_item_t *items, size_t n, size_t i) {
    const is_movement_t *rv = items[i].m;
    if (!rv->reverses_movement_id || !*rv->reverses_movement_id)
        return n;
    for (size_t j = i + 1; j < n; j++)
        if (items[j].status == OUTBOX_ACCEPTED &&
            strcmp(S(items[j].m->movement_id), rv->reverses_movement_id) == 0 &&
            strcmp(S(items[j].m->source_system), S(rv->source_system)) == 0)
            return j;
    return n;
}

/*
 * Store one request's items inside the writer's open transaction and write
 * the touched sites to site_seq. IS_OK, IS_ERR_CONFLICT (n_conflict items
 * marked) or an error; on anything but IS_OK the caller rolls back.
 */
static is_err_t append_items(outbox_t *ob, outbox_item_t *items, size_t n, const item_prep_t *prep,
                             int64_t now_ms, char *errstr, size_t errstr_size) {
    size_t i, n_conflict = 0, n_mismatch = 0;
    is_err_t rc;

    if (!ob->ctr_valid && ctr_load(ob) != IS_OK)
        return is_db_error(ob->w, "load site sequences", errstr, errstr_size);
    for (i = 0; i < n; i++) {
        /* Stored even after a conflict or mismatch, so later repeats in this request are still
         * seen (the request is rolled back anyway). */
        rc = store_item(ob, &items[i], &prep[i], now_ms, errstr, errstr_size);
        if (rc != IS_OK)
            return rc;
        n_conflict += items[i].status == OUTBOX_CONFLICT;
        n_mismatch += items[i].status == OUTBOX_MISMATCH;
    }
    /* A reversal checked again now that every original of this request is
     * stored (one more look-up per new REVERSAL; one already matched
     * matches again). One whose original is new later in the request is
     * refused: it would get the earlier sequence, and the consumer posts
     * in sequence order, so the ERP would be asked to reverse a movement
     * it has not booked yet. */
    for (i = 0; i < n; i++) {
        if (items[i].status != OUTBOX_ACCEPTED ||
            items[i].m->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL)
            continue;
        size_t later = original_later(items, n, i);
        if (later < n) {
            char what[128];
            snprintf(what, sizeof(what),
                     "is new at index %zu of this request, after its reversal: send the original"
                     " first",
                     later);
            mismatch(&items[i], "reverses_movement_id", items[i].m->reverses_movement_id,
                     items[i].m->reverses_movement_id, what);
            n_mismatch++;
            continue;
        }
        rc = check_reversal(ob, &items[i], errstr, errstr_size);
        if (rc != IS_OK)
            return rc;
        n_mismatch += items[i].status == OUTBOX_MISMATCH;
    }
    if (n_mismatch > 0) {
        is_errf(errstr, errstr_size, "%zu reversal(s) do not match the movement they reverse",
                n_mismatch);
        return IS_ERR_INVALID;
    }
    if (n_conflict > 0) {
        is_errf(errstr, errstr_size, "%zu movement(s) conflict with accepted ones", n_conflict);
        return IS_ERR_CONFLICT;
    }
    if (ctr_flush(ob) != IS_OK)
        return is_db_error(ob->w, "write site sequence", errstr, errstr_size);
    return IS_OK;
}

/*
 * The part of an append that needs no lock: check the ids, fingerprint and
 * build the Kafka key of every item. *out is malloc'd (caller frees).
 */
static is_err_t prepare_items(outbox_item_t *items, size_t n, item_prep_t **out, char *errstr,
                              size_t errstr_size) {
    item_prep_t *prep = malloc(n * sizeof(*prep));
    size_t i;
    is_err_t rc;

    *out = NULL;
    if (!prep)
        return IS_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        outbox_item_t *it = &items[i];
        const is_movement_t *m = it->m;

        it->status = OUTBOX_CONFLICT;
        it->sequence = 0;
        it->id = 0;
        it->stored_tier[0] = '\0';
        it->mismatch_field = NULL;
        it->mismatch = NULL;
        if (!m || !m->movement_id || !*m->movement_id || !m->source_system || !*m->source_system ||
            !m->site || !*m->site) {
            is_errf(errstr, errstr_size, "item %zu: movement without ids", i);
            rc = IS_ERR_INVALID;
            goto err;
        }
        rc = is_movement_fingerprint(m, prep[i].fp);
        if (rc != IS_OK) {
            is_errf(errstr, errstr_size, "movement '%s': cannot fingerprint: %s", m->movement_id,
                    is_err_str(rc));
            goto err;
        }
        if (is_movement_lot_key(m, prep[i].key, sizeof(prep[i].key)) < 0) {
            is_errf(errstr, errstr_size, "movement '%s': site/material/lot too long for a key",
                    m->movement_id);
            rc = IS_ERR_INVALID;
            goto err;
        }
    }
    *out = prep;
    return IS_OK;
err:
    free(prep);
    return rc;
}

/* One outbox_append waiting in (or being served from) the group-commit queue. */
typedef struct append_req {
    outbox_item_t *items;
    size_t n;
    const item_prep_t *prep;
    int64_t now_ms;
    char *errstr; /* the caller's buffer: it waits until done */
    size_t errstr_size;
    is_err_t rc;
    int done;
    struct append_req *next;
} append_req_t;

/* Rows one group transaction takes at most (it always takes one request). */
#define GROUP_MAX_ROWS 8192

static int step_done(sqlite3_stmt *st) {
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    return src == SQLITE_DONE;
}

static void set_err(append_req_t *r, is_err_t rc, const char *msg) {
    r->rc = rc;
    if (r->errstr && r->errstr_size)
        is_errf(r->errstr, r->errstr_size, "%s", msg);
}

/*
 * Store a group of requests in one transaction, each under a savepoint: a
 * request that conflicts (or fails without a database error) is rolled back
 * alone and the others go on; a database error rolls back the whole group
 * (every request that would have been stored gets the error). Sets each
 * request's rc; acknowledged ones (IS_OK) are committed when this returns.
 * Called by the group leader under wmu.
 */
static void commit_group(outbox_t *ob, append_req_t *group) {
    char dberr[256] = "";
    append_req_t *r;
    size_t n_ok = 0;
    int db_failed = 0;

    for (r = group; r; r = r->next)
        r->rc = IS_OK;
    if (is_db_begin(ob->w) != IS_OK) {
        (void)is_db_error(ob->w, "begin", dberr, sizeof(dberr));
        db_failed = 1;
    }
    for (r = group; r && !db_failed; r = r->next) {
        if (!step_done(ob->w_sp)) {
            (void)is_db_error(ob->w, "savepoint", dberr, sizeof(dberr));
            db_failed = 1;
            break;
        }
        r->rc = append_items(ob, r->items, r->n, r->prep, r->now_ms, r->errstr, r->errstr_size);
        if (r->rc == IS_OK) {
            if (!step_done(ob->w_sp_release)) {
                (void)is_db_error(ob->w, "release savepoint", dberr, sizeof(dberr));
                db_failed = 1;
            }
            n_ok++;
            continue;
        }
        if (r->rc == IS_ERR_DB || r->rc == IS_ERR_IO) {
            is_errf(dberr, sizeof(dberr), "%s", r->errstr ? r->errstr : "append");
            db_failed = 1;
            break;
        }
        /* This request alone: undo it, then reread the counters as of the savepoint. */
        if (!step_done(ob->w_sp_rollback) || !step_done(ob->w_sp_release) ||
            ctr_load(ob) != IS_OK) {
            (void)is_db_error(ob->w, "roll back a request", dberr, sizeof(dberr));
            db_failed = 1;
        }
    }
    if (!db_failed && n_ok > 0 && is_db_commit(ob->w) != IS_OK) {
        (void)is_db_error(ob->w, "commit", dberr, sizeof(dberr));
        db_failed = 1;
    }
    if (db_failed || n_ok == 0) {
        is_db_rollback(ob->w);
        ob->ctr_valid = 0; /* reloaded from site_seq by the next append */
    }
    if (!db_failed)
        return;
    /* Nothing of this group is stored: whoever would have been acknowledged gets the error. */
    for (r = group; r; r = r->next) {
        if (r->rc == IS_OK || r->rc == IS_ERR_DB || r->rc == IS_ERR_IO)
            set_err(r, IS_ERR_DB, dberr);
    }
}

/* Lead one group: take requests off the queue, store and commit them, mark them done. */
static void lead_group(outbox_t *ob) {
    append_req_t *group, *last, *r;
    size_t rows;
    int ok = 0, failed = 0;
    char failed_msg[256] = "";

    group = last = ob->q_head;
    rows = group->n;
    while (last->next && rows + last->next->n <= GROUP_MAX_ROWS) {
        last = last->next;
        rows += last->n;
    }
    ob->q_head = last->next;
    if (!ob->q_head)
        ob->q_tail = NULL;
    last->next = NULL;
    ob->q_leading = 1;
    pthread_mutex_unlock(&ob->qmu);

    pthread_mutex_lock(&ob->wmu);
    commit_group(ob, group);
    for (r = group; r; r = r->next) {
        ok |= r->rc == IS_OK;
        if (r->rc == IS_ERR_DB || r->rc == IS_ERR_IO) {
            failed = 1;
            is_errf(failed_msg, sizeof(failed_msg), "%s", r->errstr ? r->errstr : "append");
        }
    }
    if (failed) {
        ob->w_failed = 1;
        is_errf(ob->w_failed_msg, sizeof(ob->w_failed_msg), "%s", failed_msg);
    } else if (ok) {
        ob->w_failed = 0;
    }
    pthread_mutex_unlock(&ob->wmu);
    if (ok) {
        pthread_mutex_lock(&ob->nmu);
        ob->appends++;
        pthread_cond_broadcast(&ob->ncv);
        pthread_mutex_unlock(&ob->nmu);
    }

    pthread_mutex_lock(&ob->qmu);
    for (r = group; r;) {
        append_req_t *next = r->next; /* r belongs to its caller once done */
        r->done = 1;
        r = next;
    }
    ob->q_leading = 0;
    pthread_cond_broadcast(&ob->qcv);
}

is_err_t outbox_append(outbox_t *ob, outbox_item_t *items, size_t n, int64_t now_ms, char *errstr,
                       size_t errstr_size) {
    item_prep_t *prep;
    append_req_t req;
    is_err_t rc;
    if (n == 0)
        return IS_OK;
    rc = prepare_items(items, n, &prep, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    memset(&req, 0, sizeof(req));
    req.items = items;
    req.n = n;
    req.prep = prep;
    req.now_ms = now_ms;
    req.errstr = errstr;
    req.errstr_size = errstr_size;

    pthread_mutex_lock(&ob->qmu);
    if (ob->q_tail)
        ob->q_tail->next = &req;
    else
        ob->q_head = &req;
    ob->q_tail = &req;
    while (!req.done) {
        if (!ob->q_leading)
            lead_group(ob); /* returns with qmu held */
        else
            pthread_cond_wait(&ob->qcv, &ob->qmu);
    }
    pthread_mutex_unlock(&ob->qmu);
    free(prep);
    return req.rc;
}

void outbox_wait_append(outbox_t *ob, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&ob->nmu);
    uint64_t seen = ob->appends;
    while (ob->appends == seen) {
        if (pthread_cond_timedwait(&ob->ncv, &ob->nmu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&ob->nmu);
}

is_err_t outbox_probe_writable(outbox_t *ob, char *errstr, size_t errstr_size) {
    is_err_t rc = IS_OK;
    int src;

    pthread_mutex_lock(&ob->wmu);
    if (is_db_begin(ob->w) != IS_OK) {
        rc = is_db_error(ob->w, "begin", errstr, errstr_size);
        goto out;
    }
    src = sqlite3_step(ob->w_probe);
    stmt_done(ob->w_probe);
    if (src != SQLITE_DONE)
        rc = is_db_error(ob->w, "write probe", errstr, errstr_size);
    is_db_rollback(ob->w);
    if (rc == IS_OK && ob->w_failed) {
        is_errf(errstr, errstr_size, "last append failed: %s", ob->w_failed_msg);
        rc = IS_ERR_DB;
    }
out:
    pthread_mutex_unlock(&ob->wmu);
    return rc;
}

is_err_t outbox_fetch_unsent(outbox_t *ob, int64_t after_id, size_t limit, outbox_row_fn cb,
                             void *opaque, size_t *n_out, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = ob->f_fetch;
    size_t n = 0;
    is_err_t rc = IS_OK;
    int src;

    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(limit > INT64_MAX ? INT64_MAX : limit));
    for (;;) {
        outbox_row_t row;
        src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = is_db_error(ob->f, "fetch unsent", errstr, errstr_size);
            break;
        }
        row.id = sqlite3_column_int64(st, 0);
        row.site = (const char *)sqlite3_column_text(st, 1);
        row.sequence = (uint64_t)sqlite3_column_int64(st, 2);
        row.source_system = (const char *)sqlite3_column_text(st, 3);
        row.movement_id = (const char *)sqlite3_column_text(st, 4);
        row.topic = (const char *)sqlite3_column_text(st, 5);
        row.msg_key = (const char *)sqlite3_column_text(st, 6);
        row.payload = sqlite3_column_blob(st, 7);
        row.payload_len = (size_t)sqlite3_column_bytes(st, 7);
        row.tier = (const char *)sqlite3_column_text(st, 8);
        row.policy_version = (const char *)sqlite3_column_text(st, 9);
        row.accepted_at = sqlite3_column_int64(st, 10);
        n++;
        if (cb(opaque, &row) != 0)
            break;
    }
    stmt_done(st);
    if (n_out)
        *n_out = n;
    return rc;
}

static int cmp_id(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static is_err_t read_generation(outbox_t *ob, int64_t *out);

/* The ids are sorted and collapsed into runs of consecutive ids, one UPDATE
 * per run: a round's delivery reports are nearly contiguous. With gen_seen,
 * nothing is marked when the republish generation read inside the
 * transaction (BEGIN IMMEDIATE: no republish can commit in between) is not
 * *gen_seen; *gen_seen gets the one read. */
static is_err_t mark_sent(outbox_t *ob, const int64_t *ids, size_t n, int64_t now_ms,
                          int64_t *gen_seen, char *errstr, size_t errstr_size) {
    int64_t *sorted;
    size_t i, j;
    is_err_t rc = IS_OK;

    if (n == 0)
        return IS_OK;
    sorted = malloc(n * sizeof(*sorted));
    if (!sorted)
        return IS_ERR_NOMEM;
    memcpy(sorted, ids, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_id);
    if (is_db_begin(ob->f) != IS_OK) {
        free(sorted);
        return is_db_error(ob->f, "begin", errstr, errstr_size);
    }
    if (gen_seen) {
        int64_t gen = 0;
        if (read_generation(ob, &gen) != IS_OK) {
            rc = is_db_error(ob->f, "read the republish generation", errstr, errstr_size);
            goto err;
        }
        if (gen != *gen_seen) {
            *gen_seen = gen;
            is_db_rollback(ob->f);
            free(sorted);
            return IS_OK;
        }
    }
    for (i = 0; i < n; i = j) {
        int src;
        for (j = i + 1; j < n && sorted[j] <= sorted[j - 1] + 1; j++)
            ;
        sqlite3_bind_int64(ob->f_mark, 1, sorted[i]);
        sqlite3_bind_int64(ob->f_mark, 2, sorted[j - 1]);
        sqlite3_bind_int64(ob->f_mark, 3, now_ms);
        src = sqlite3_step(ob->f_mark);
        stmt_done(ob->f_mark);
        if (src != SQLITE_DONE) {
            rc = is_db_error(ob->f, "mark sent", errstr, errstr_size);
            goto err;
        }
    }
    if (is_db_commit(ob->f) != IS_OK) {
        rc = is_db_error(ob->f, "commit", errstr, errstr_size);
        goto err;
    }
    free(sorted);
    return IS_OK;
err:
    is_db_rollback(ob->f);
    free(sorted);
    return rc;
}

is_err_t outbox_mark_sent(outbox_t *ob, const int64_t *ids, size_t n, int64_t now_ms, char *errstr,
                          size_t errstr_size) {
    return mark_sent(ob, ids, n, now_ms, NULL, errstr, errstr_size);
}

is_err_t outbox_mark_sent_in_generation(outbox_t *ob, const int64_t *ids, size_t n, int64_t now_ms,
                                        int64_t *generation, char *errstr, size_t errstr_size) {
    return mark_sent(ob, ids, n, now_ms, generation, errstr, errstr_size);
}

is_err_t outbox_first_unsent_id(outbox_t *ob, int64_t *id_out) {
    int src = sqlite3_step(ob->f_first);
    is_err_t rc = IS_OK;
    *id_out = 0;
    if (src == SQLITE_ROW)
        *id_out = sqlite3_column_int64(ob->f_first, 0);
    else if (src != SQLITE_DONE)
        rc = IS_ERR_DB;
    stmt_done(ob->f_first);
    return rc;
}

is_err_t outbox_unsent_topics(outbox_t *ob, int64_t older_than_ms, outbox_topic_fn cb, void *opaque,
                              char *errstr, size_t errstr_size) {
    int src = sqlite3_step(ob->f_oldest);
    int64_t oldest = src == SQLITE_ROW ? sqlite3_column_int64(ob->f_oldest, 0) : 0;

    stmt_done(ob->f_oldest);
    if (src != SQLITE_ROW && src != SQLITE_DONE)
        return is_db_error(ob->f, "read the oldest unsent movement", errstr, errstr_size);
    if (src == SQLITE_DONE || oldest >= older_than_ms)
        return IS_OK; /* nothing waits that long: the per-topic scan is skipped */
    while ((src = sqlite3_step(ob->f_topics)) == SQLITE_ROW) {
        const char *topic = (const char *)sqlite3_column_text(ob->f_topics, 0);
        const char *site = (const char *)sqlite3_column_text(ob->f_topics, 1);
        const char *tier = (const char *)sqlite3_column_text(ob->f_topics, 2);
        cb(opaque, S(topic), S(site), S(tier), (uint64_t)sqlite3_column_int64(ob->f_topics, 3),
           sqlite3_column_int64(ob->f_topics, 4));
    }
    stmt_done(ob->f_topics);
    if (src != SQLITE_DONE)
        return is_db_error(ob->f, "count unsent movements per topic", errstr, errstr_size);
    return IS_OK;
}

size_t outbox_checkpoint_metrics(outbox_t *ob, char *buf, size_t size) {
    return is_db_checkpoint_metrics(ob->s, "outbox", buf, size);
}

is_err_t outbox_backlog(outbox_t *ob, uint64_t *count, int64_t *oldest_accepted_at) {
    is_err_t rc = IS_OK;
    int src;

    pthread_mutex_lock(&ob->smu);
    *count = 0;
    *oldest_accepted_at = 0;
    src = sqlite3_step(ob->s_count);
    if (src == SQLITE_ROW)
        *count = (uint64_t)sqlite3_column_int64(ob->s_count, 0);
    else
        rc = IS_ERR_DB;
    stmt_done(ob->s_count);
    if (rc == IS_OK) {
        src = sqlite3_step(ob->s_oldest);
        if (src == SQLITE_ROW)
            *oldest_accepted_at = sqlite3_column_int64(ob->s_oldest, 0);
        else if (src != SQLITE_DONE)
            rc = IS_ERR_DB;
        stmt_done(ob->s_oldest);
    }
    pthread_mutex_unlock(&ob->smu);
    return rc;
}

int outbox_is_stored(outbox_t *ob, const is_movement_t *m) {
    uint8_t fp[IS_SHA256_LEN];
    int found = 0;
    if (is_movement_fingerprint(m, fp) != IS_OK)
        return 0;
    pthread_mutex_lock(&ob->smu);
    sqlite3_bind_text(ob->s_fingerprint, 1, S(m->source_system), -1, SQLITE_STATIC);
    sqlite3_bind_text(ob->s_fingerprint, 2, S(m->movement_id), -1, SQLITE_STATIC);
    if (sqlite3_step(ob->s_fingerprint) == SQLITE_ROW &&
        sqlite3_column_bytes(ob->s_fingerprint, 0) == IS_SHA256_LEN)
        found = memcmp(sqlite3_column_blob(ob->s_fingerprint, 0), fp, IS_SHA256_LEN) == 0;
    stmt_done(ob->s_fingerprint);
    pthread_mutex_unlock(&ob->smu);
    return found;
}

is_err_t outbox_last_seq(outbox_t *ob, const char *site, uint64_t *out) {
    is_err_t rc = IS_OK;
    int src;

    pthread_mutex_lock(&ob->smu);
    *out = 0;
    sqlite3_bind_text(ob->s_last_seq, 1, S(site), -1, SQLITE_STATIC);
    src = sqlite3_step(ob->s_last_seq);
    if (src == SQLITE_ROW)
        *out = (uint64_t)sqlite3_column_int64(ob->s_last_seq, 0);
    else if (src != SQLITE_DONE)
        rc = IS_ERR_DB;
    stmt_done(ob->s_last_seq);
    pthread_mutex_unlock(&ob->smu);
    return rc;
}

is_err_t outbox_sites(outbox_t *ob, outbox_site_fn cb, void *opaque) {
    is_err_t rc = IS_OK;
    int src;

    pthread_mutex_lock(&ob->smu);
    for (;;) {
        src = sqlite3_step(ob->s_sites);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = IS_ERR_DB;
            break;
        }
        cb(opaque, (const char *)sqlite3_column_text(ob->s_sites, 0),
           (uint64_t)sqlite3_column_int64(ob->s_sites, 1));
    }
    stmt_done(ob->s_sites);
    pthread_mutex_unlock(&ob->smu);
    return rc;
}

is_err_t outbox_republish(outbox_t *ob, const char *site, uint64_t from, uint64_t to,
                          int64_t *in_range, int64_t *marked, char *errstr, size_t errstr_size) {
    static const char *const count_sql =
        "SELECT count(*) FROM outbox WHERE site = ?1 AND site_seq BETWEEN ?2 AND ?3";
    static const char *const mark_sql = "UPDATE outbox SET sent_at = NULL WHERE site = ?1"
                                        " AND site_seq BETWEEN ?2 AND ?3 AND sent_at IS NOT NULL";
    sqlite3_stmt *st = NULL;
    is_err_t rc;

    *in_range = *marked = 0;
    pthread_mutex_lock(&ob->wmu);
    if (is_db_begin(ob->w) != IS_OK) {
        rc = is_db_error(ob->w, "begin", errstr, errstr_size);
        goto out;
    }
    rc = is_db_prepare(ob->w, count_sql, &st, errstr, errstr_size);
    if (rc != IS_OK)
        goto fail;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)from);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)to);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = is_db_error(ob->w, "count the movements to publish again", errstr, errstr_size);
        goto fail;
    }
    *in_range = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    rc = is_db_prepare(ob->w, mark_sql, &st, errstr, errstr_size);
    if (rc != IS_OK)
        goto fail;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)from);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)to);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = is_db_error(ob->w, "mark movements unsent", errstr, errstr_size);
        goto fail;
    }
    *marked = sqlite3_changes(ob->w);
    sqlite3_finalize(st);
    st = NULL;
    /* A running forwarder sees the generation change and rewinds. */
    rc = is_db_exec(ob->w,
                    "INSERT INTO outbox_meta(key, value) VALUES('republish_generation', '1')"
                    " ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                    errstr, errstr_size);
    if (rc != IS_OK)
        goto fail;
    if (is_db_commit(ob->w) != IS_OK) {
        rc = is_db_error(ob->w, "commit", errstr, errstr_size);
        goto fail;
    }
    rc = IS_OK;
    goto out;
fail:
    sqlite3_finalize(st);
    is_db_rollback(ob->w);
    *in_range = *marked = 0;
    ob->ctr_valid = 0; /* the writer's view is reloaded by the next append */
out:
    pthread_mutex_unlock(&ob->wmu);
    return rc;
}

is_err_t outbox_prune(outbox_t *ob, int64_t cutoff_ms, size_t max_rows, int64_t *after_id,
                      int64_t *deleted, int *done, char *errstr, size_t errstr_size) {
    sqlite3_stmt *del = NULL;
    int64_t last_old;
    is_err_t rc;
    int src;

    *deleted = 0;
    /* ids follow acceptance: the rows past the cutoff are younger */
    rc = is_db_prune_scan(ob->f, "outbox", "accepted_at", *after_id, cutoff_ms, max_rows, &last_old,
                          done, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    if (last_old == *after_id)
        return IS_OK;
    rc = is_db_prepare(ob->f,
                       "DELETE FROM outbox WHERE id > ?1 AND id <= ?2 AND accepted_at < ?3"
                       " AND sent_at IS NOT NULL",
                       &del, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    sqlite3_bind_int64(del, 1, *after_id);
    sqlite3_bind_int64(del, 2, last_old);
    sqlite3_bind_int64(del, 3, cutoff_ms);
    src = sqlite3_step(del);
    sqlite3_finalize(del);
    if (src != SQLITE_DONE)
        return is_db_error(ob->f, "delete movements past outbox.retention", errstr, errstr_size);
    *deleted = sqlite3_changes(ob->f);
    *after_id = last_old;
    return IS_OK;
}

/* The republish generation (outbox_meta; 0 when none), read on the
 * forwarder's connection. */
static is_err_t read_generation(outbox_t *ob, int64_t *out) {
    int src = sqlite3_step(ob->f_gen);
    *out = src == SQLITE_ROW ? sqlite3_column_int64(ob->f_gen, 0) : 0;
    stmt_done(ob->f_gen);
    return src == SQLITE_ROW || src == SQLITE_DONE ? IS_OK : IS_ERR_DB;
}

is_err_t outbox_republish_generation(outbox_t *ob, int64_t *out) {
    return read_generation(ob, out);
}
