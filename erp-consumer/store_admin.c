/*
 * store_admin.c — control and evidence: pause/resume/flush, failed-posting
 * retry/skip, policy versions, and the hash-chained audit trail (store.h).
 *
 * Audit chain: row i's hash = SHA-256 hex of
 *   prev_hash \x1f id \x1f at \x1f actor \x1f action \x1f subject \x1f detail
 * with prev_hash of the first row = 64 zeros. The fields are not escaped (the
 * format is kept so existing trails verify): operator text with control
 * characters is refused before it gets here (admin_text_invalid), and
 * verify flags an id or at not stored as an integer. audit_head keeps the last row's
 * id and hash, so removing rows from the end is detected too, and settled
 * postings (each audited in the transaction that settled it) give away a
 * trail deleted whole with its head. The chain
 * makes tampering evident, not impossible: someone who can rewrite the whole
 * table and the head can forge it; export the head hash to another system
 * (logs, a ticket) to anchor it. Load: one audit row per posting.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "store_int.h"

#define stmt      store_stmt
#define bind_text store_bind_text

static const char GENESIS[] = "0000000000000000000000000000000000000000000000000000000000000000";

const char *const store_admin_sql[SQ__COUNT] = {
    [SQ_AUDIT_LAST] = "SELECT last_id, last_hash FROM audit_head WHERE one = 1",
    [SQ_AUDIT_INSERT] = "INSERT INTO audit(id, at, actor, action, subject, detail, prev_hash, hash)"
                        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [SQ_AUDIT_HEAD] = "INSERT INTO audit_head(one, last_id, last_hash) VALUES(1, ?1, ?2)"
                      " ON CONFLICT(one) DO UPDATE SET last_id = ?1, last_hash = ?2",
};

static void audit_hash(const char *prev, int64_t id, int64_t at, const char *actor,
                       const char *action, const char *subject, const char *detail,
                       char hex[IS_SHA256_HEX_LEN + 1]) {
    /* SHA-256 over prev \x1f id \x1f at \x1f actor \x1f action \x1f subject \x1f detail,
     * formatted into one buffer (on the stack unless the detail is long) and
     * hashed in one call. */
#define AUDIT_LAYOUT "%s\x1f%" PRId64 "\x1f%" PRId64 "\x1f%s\x1f%s\x1f%s\x1f%s"
    char stack[2048], *buf = stack;
    uint8_t digest[IS_SHA256_LEN];
    detail = detail ? detail : "";
    int n =
        snprintf(stack, sizeof(stack), AUDIT_LAYOUT, prev, id, at, actor, action, subject, detail);
    if (n >= 0 && (size_t)n >= sizeof(stack)) {
        buf = malloc((size_t)n + 1);
        if (buf)
            snprintf(buf, (size_t)n + 1, AUDIT_LAYOUT, prev, id, at, actor, action, subject,
                     detail);
    }
#undef AUDIT_LAYOUT
    if (n < 0 || !buf) {
        snprintf(hex, IS_SHA256_HEX_LEN + 1, "%s", GENESIS); /* cannot hash: verify will flag it */
        return;
    }
    is_sha256(buf, (size_t)n, digest);
    is_hex(digest, IS_SHA256_LEN, hex);
    if (buf != stack)
        free(buf);
}

is_err_t store_audit(store_t *s, int64_t now_ms, const char *actor, const char *action,
                     const char *subject, const char *detail, char *errstr, size_t errstr_size) {
    char hash[IS_SHA256_HEX_LEN + 1];
    int own_tx = sqlite3_get_autocommit(s->db);
    sqlite3_stmt *st;

    if (own_tx && store_begin(s) != IS_OK)
        goto db_err;
    /* The chain head: read once per transaction, then kept in memory. */
    if (!s->audit_cached) {
        snprintf(s->audit_hash, sizeof(s->audit_hash), "%s", GENESIS);
        s->audit_id = 0;
        st = stmt(s, SQ_AUDIT_LAST);
        if (sqlite3_step(st) == SQLITE_ROW) {
            s->audit_id = sqlite3_column_int64(st, 0);
            snprintf(s->audit_hash, sizeof(s->audit_hash), "%s",
                     (const char *)sqlite3_column_text(st, 1));
        }
        sqlite3_reset(st);
        s->audit_cached = 1;
    }
    int64_t id = s->audit_id + 1;
    actor = actor && *actor ? actor : "unknown";
    subject = subject ? subject : "";
    audit_hash(s->audit_hash, id, now_ms, actor, action, subject, detail, hash);
    st = stmt(s, SQ_AUDIT_INSERT);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms);
    bind_text(st, 3, actor);
    bind_text(st, 4, action);
    bind_text(st, 5, subject);
    bind_text(st, 6, detail);
    bind_text(st, 7, s->audit_hash);
    bind_text(st, 8, hash);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto db_err;
    s->audit_id = id;
    snprintf(s->audit_hash, sizeof(s->audit_hash), "%s", hash);
    if (s->in_tx) {
        s->audit_dirty = 1; /* audit_head is written by store_commit */
    } else {
        /* A caller's own transaction: keep the head current row by row. */
        st = stmt(s, SQ_AUDIT_HEAD);
        sqlite3_bind_int64(st, 1, id);
        bind_text(st, 2, hash);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto db_err;
        s->audit_cached = 0;
    }
    if (own_tx && store_commit(s) != IS_OK)
        goto db_err;
    return IS_OK;
db_err:;
    is_err_t rc = is_db_error(s->db, "cannot append to the audit trail", errstr, errstr_size);
    if (own_tx)
        store_rollback(s);
    else
        s->audit_cached = s->audit_dirty = 0;
    return rc;
}

is_err_t store_audit_verify(store_t *s, int64_t *rows, int64_t *bad_id, char *errstr,
                            size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    char prev[IS_SHA256_HEX_LEN + 1], hash[IS_SHA256_HEX_LEN + 1];
    int64_t last_id = 0, head_id = 0;
    is_err_t rc = IS_OK;

    *rows = 0;
    *bad_id = 0;
    snprintf(prev, sizeof(prev), "%s", GENESIS);
    rc = is_db_prepare(s->db,
                       "SELECT id, at, actor, action, subject, detail, prev_hash, hash,"
                       " typeof(id), typeof(at) FROM audit ORDER BY id",
                       &st, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *stored_prev = (const char *)sqlite3_column_text(st, 6);
        const char *stored = (const char *)sqlite3_column_text(st, 7);
        /* The hash covers id and at as integers: read as one, a text '123abc'
         * would be 123 and hash alike. Only the store writes them, as
         * integers, so any other type is an edit. */
        const char *bad_col =
            strcmp((const char *)sqlite3_column_text(st, 8), "integer") != 0   ? "id"
            : strcmp((const char *)sqlite3_column_text(st, 9), "integer") != 0 ? "at"
                                                                               : NULL;
        if (bad_col) {
            int col = bad_col[0] == 'i' ? 0 : 1;
            const char *v = (const char *)sqlite3_column_text(st, col);
            *bad_id = id;
            is_errf(errstr, errstr_size,
                    "audit row %" PRId64 " was altered ('%s' is %s '%s', not an integer)", id,
                    bad_col, (const char *)sqlite3_column_text(st, 8 + col), v ? v : "NULL");
            rc = IS_ERR_CONFLICT;
            break;
        }
        audit_hash(prev, id, sqlite3_column_int64(st, 1), (const char *)sqlite3_column_text(st, 2),
                   (const char *)sqlite3_column_text(st, 3),
                   (const char *)sqlite3_column_text(st, 4),
                   (const char *)sqlite3_column_text(st, 5), hash);
        if (!stored_prev || strcmp(stored_prev, prev) != 0) {
            *bad_id = id;
            is_errf(errstr, errstr_size,
                    "audit row %" PRId64 " does not follow row %" PRId64
                    " (a row before it was removed or altered)",
                    id, last_id);
            rc = IS_ERR_CONFLICT;
            break;
        }
        if (!stored || strcmp(stored, hash) != 0) {
            *bad_id = id;
            is_errf(errstr, errstr_size, "audit row %" PRId64 " was altered (hash mismatch)", id);
            rc = IS_ERR_CONFLICT;
            break;
        }
        snprintf(prev, sizeof(prev), "%s", stored);
        last_id = id;
        (*rows)++;
    }
    sqlite3_finalize(st);
    if (rc != IS_OK)
        return rc;
    st = stmt(s, SQ_AUDIT_LAST);
    if (sqlite3_step(st) == SQLITE_ROW) {
        head_id = sqlite3_column_int64(st, 0);
        if (head_id != last_id || strcmp((const char *)sqlite3_column_text(st, 1), prev) != 0) {
            is_errf(errstr, errstr_size,
                    "audit trail ends at row %" PRId64 " but its head says row %" PRId64
                    " (rows removed from the end)",
                    last_id, head_id);
            *bad_id = last_id < head_id ? last_id + 1 : last_id;
            rc = IS_ERR_CONFLICT;
        }
    } else if (last_id != 0) {
        is_errf(errstr, errstr_size, "audit head is missing");
        rc = IS_ERR_CONFLICT;
    }
    sqlite3_reset(st);
    if (rc == IS_OK && last_id == 0 && head_id == 0) {
        /* No rows and no head: a new store, or one whose trail was deleted
         * whole. Every settled posting was audited in the transaction that
         * settled it, so settled postings without a single row are the latter. */
        sqlite3_stmt *q = NULL;
        rc = is_db_prepare(s->db,
                           "SELECT count(*) FROM postings"
                           " WHERE state = 'posted' OR state = 'failed' OR state = 'skipped'",
                           &q, errstr, errstr_size);
        if (rc == IS_OK && sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int64(q, 0) > 0) {
            is_errf(errstr, errstr_size,
                    "the audit trail is empty but the store holds %" PRId64
                    " settled posting(s), each audited when it was settled: the trail and its "
                    "head were removed",
                    (int64_t)sqlite3_column_int64(q, 0));
            *bad_id = 1;
            rc = IS_ERR_CONFLICT;
        }
        sqlite3_finalize(q);
    }
    return rc;
}

/* Run one parameterized statement of text arguments; *changes = rows changed. */
static is_err_t exec_args(store_t *s, const char *sql, const char *const *args, size_t n_args,
                          int64_t now_ms, int *changes, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    is_err_t rc = is_db_prepare(s->db, sql, &st, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    for (size_t i = 0; i < n_args; i++)
        bind_text(st, (int)i + 1, args[i]);
    sqlite3_bind_int64(st, (int)n_args + 1, now_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = is_db_error(s->db, "store update failed", errstr, errstr_size);
    else if (changes)
        *changes = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    return rc;
}

/*
 * An audited control action: its statements (NULL-terminated; each binds
 * args as ?1.. and now as ?(n_args+1)) and its audit row in one transaction.
 * *changes = rows changed by the first statement; must_change: none is
 * IS_ERR_NOT_FOUND.
 */
static is_err_t controlled(store_t *s, const char *const *sqls, const char *const *args,
                           size_t n_args, const char *actor, const char *action,
                           const char *subject, const char *reason, int64_t now_ms, int *changes,
                           int must_change, char *errstr, size_t errstr_size) {
    int n = 0;
    is_err_t rc;
    if (store_begin(s) != IS_OK)
        return is_db_error(s->db, "cannot begin", errstr, errstr_size);
    rc = exec_args(s, sqls[0], args, n_args, now_ms, &n, errstr, errstr_size);
    for (size_t i = 1; rc == IS_OK && sqls[i]; i++)
        rc = exec_args(s, sqls[i], args, n_args, now_ms, NULL, errstr, errstr_size);
    if (rc == IS_OK && must_change && n == 0) {
        rc = IS_ERR_NOT_FOUND;
        is_errf(errstr, errstr_size, "nothing to %s for '%s'", action, subject);
    }
    if (rc == IS_OK) {
        json_t *d = json_pack("{s:s,s:I}", "reason", reason ? reason : "", "rows", (json_int_t)n);
        char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        rc = store_audit(s, now_ms, actor, action, subject, txt, errstr, errstr_size);
        free(txt);
    }
    if (rc == IS_OK && store_commit(s) != IS_OK)
        rc = is_db_error(s->db, "cannot commit", errstr, errstr_size);
    if (rc != IS_OK)
        store_rollback(s);
    else if (changes)
        *changes = n;
    return rc;
}

static void subject_of(char *buf, size_t size, const char *site, const char *tier) {
    snprintf(buf, size, "%s/%s", site, tier);
}

is_err_t store_pause(store_t *s, const char *site, const char *tier, const char *actor,
                     const char *reason, int64_t now_ms, char *errstr, size_t errstr_size) {
    const char *args[] = {site, tier, actor, reason};
    char subject[128];
    subject_of(subject, sizeof(subject), site, tier);
    static const char *const sqls[] = {
        "INSERT INTO pauses(site, tier, actor, reason, at) VALUES(?1,?2,?3,?4,?5)"
        " ON CONFLICT(site, tier) DO UPDATE SET actor = ?3, reason = ?4, at = ?5",
        NULL};
    return controlled(s, sqls, args, 4, actor, "pause", subject, reason, now_ms, NULL, 0, errstr,
                      errstr_size);
}

is_err_t store_resume(store_t *s, const char *site, const char *tier, const char *actor,
                      const char *reason, int64_t now_ms, char *errstr, size_t errstr_size) {
    const char *args[] = {site, tier};
    char subject[128];
    subject_of(subject, sizeof(subject), site, tier);
    static const char *const sqls[] = {"DELETE FROM pauses WHERE site = ?1 AND tier = ?2", NULL};
    return controlled(s, sqls, args, 2, actor, "resume", subject, reason, now_ms, NULL, 1, errstr,
                      errstr_size);
}

int store_is_paused(store_t *s, const char *site, const char *tier) {
    sqlite3_stmt *st = NULL;
    int paused = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT 1 FROM pauses WHERE site IN (?1, '*') AND tier IN (?2, '*')", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    bind_text(st, 1, site);
    bind_text(st, 2, tier);
    paused = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return paused;
}

is_err_t store_flush(store_t *s, const char *site, const char *tier, const char *actor,
                     const char *reason, int64_t now_ms, int64_t *n, char *errstr,
                     size_t errstr_size) {
    const char *args[] = {site, tier};
    char subject[128];
    int changes = 0;
    is_err_t rc;
    subject_of(subject, sizeof(subject), site, tier);
    static const char *const sqls[] = {
        "UPDATE movements SET due_at = ?3 WHERE state = 'queued' AND due_at > ?3"
        " AND (site = ?1 OR ?1 = '*') AND (tier = ?2 OR ?2 = '*')",
        NULL};
    rc = controlled(s, sqls, args, 2, actor, "flush", subject, reason, now_ms, &changes, 0, errstr,
                    errstr_size);
    if (n)
        *n = changes;
    return rc;
}

is_err_t store_failed_retry(store_t *s, const char *posting_id, const char *actor,
                            const char *reason, int64_t now_ms, char *errstr, size_t errstr_size) {
    const char *args[] = {posting_id};
    static const char *const sqls[] = {
        "UPDATE postings SET state = 'retry', next_at = ?2, updated_at = ?2"
        " WHERE posting_id = ?1 AND state = 'failed'",
        "UPDATE movements SET state = 'retry' WHERE posting_id = ?1 AND state = 'failed'", NULL};
    return controlled(s, sqls, args, 1, actor, "retry", posting_id, reason, now_ms, NULL, 1, errstr,
                      errstr_size);
}

is_err_t store_failed_skip(store_t *s, const char *posting_id, const char *actor,
                           const char *reason, int64_t now_ms, char *errstr, size_t errstr_size) {
    const char *args[] = {posting_id};
    static const char *const sqls[] = {
        "UPDATE postings SET state = 'skipped', updated_at = ?2"
        " WHERE posting_id = ?1 AND state = 'failed'",
        "UPDATE movements SET state = 'skipped' WHERE posting_id = ?1 AND state = 'failed'", NULL};
    return controlled(s, sqls, args, 1, actor, "skip", posting_id, reason, now_ms, NULL, 1, errstr,
                      errstr_size);
}

is_err_t store_note_policy_version(store_t *s, const char *version, const char *movement_id,
                                   int64_t now_ms, char *errstr, size_t errstr_size) {
    const char *args[] = {version, movement_id};
    int n = 0;
    is_err_t rc;
    if (store_begin(s) != IS_OK)
        return is_db_error(s->db, "cannot begin", errstr, errstr_size);
    rc = exec_args(s,
                   "INSERT OR IGNORE INTO policy_versions(version, first_movement, first_seen_at)"
                   " VALUES(?1, ?2, ?3)",
                   args, 2, now_ms, &n, errstr, errstr_size);
    if (rc == IS_OK && n > 0) {
        json_t *d = json_pack("{s:s}", "first_movement", movement_id ? movement_id : "");
        char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        rc =
            store_audit(s, now_ms, "consumer", "policy-version", version, txt, errstr, errstr_size);
        free(txt);
    }
    if (rc == IS_OK && store_commit(s) != IS_OK)
        rc = is_db_error(s->db, "cannot commit", errstr, errstr_size);
    if (rc != IS_OK)
        store_rollback(s);
    return rc;
}
