/*
 * store_post.c — the poster's side of the store: what is due, marking
 * postings in flight, recording outcomes (store.h). Load: one fetch, one
 * mark and one record transaction per poster cycle of up to poster.batch
 * postings; each triggered lot costs two indexed queries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hash.h"
#include "store_int.h"

#define stmt      store_stmt
#define bind_text store_bind_text

#define TRIGGER_PAGE  1024 /* trigger rows read per query */
#define TRIGGER_PAGES 16   /* pages per fetch at most (held lots are skipped) */

const char *const store_post_sql[SQ__COUNT] = {
    /* A retry goes only when no earlier movement of its lot is still unfinished in
     * another posting: after a crash several postings of one lot may wait to retry,
     * and they must reach the ERP in acceptance order. */
    // clang-format off
    [SQ_DUE_RETRY] =
        "SELECT p.posting_id, p.site, p.tier, p.lot_key, p.attempts, p.last_error FROM postings p"
        " WHERE p.state = 'retry' AND p.next_at <= ?1"
        " AND NOT EXISTS (SELECT 1 FROM pauses z WHERE (z.site = '*' OR z.site = p.site)"
        "   AND (z.tier = '*' OR z.tier = p.tier)) AND NOT EXISTS ("
        "  SELECT 1 FROM movements e WHERE e.lot_key = p.lot_key"
        "   AND " STORE_OPEN("e.") " AND e.posting_id <> p.posting_id"
        "   AND e.seq < (SELECT min(m.seq) FROM movements m WHERE m.posting_id = p.posting_id))"
        " ORDER BY p.next_at LIMIT ?2",
    // clang-format on
    [SQ_INFLIGHT] = "SELECT posting_id, site, tier, lot_key, attempts FROM postings"
                    " WHERE state = 'posting' ORDER BY updated_at",
    [SQ_POSTING_MOVEMENTS] = "SELECT id, payload, topic, part, off FROM movements"
                             " WHERE posting_id = ?1 ORDER BY producer_id, seq",
    /* Keyset paging: each page starts after the last (due_at, id) of the one before,
     * an index range on movements_queued (OFFSET re-read every earlier page). */
    [SQ_TRIGGERS] = "SELECT m.lot_key, m.producer_id, w.contiguous, m.site, m.tier, m.due_at, m.id"
                    " FROM movements m JOIN watermarks w"
                    " ON w.producer_id = m.producer_id AND w.site = m.site"
                    " WHERE m." STORE_QUEUED " AND m.due_at <= ?1 AND m.seq <= w.contiguous"
                    " AND (m.due_at, m.id) > (?3, ?4) ORDER BY m.due_at, m.id LIMIT ?2",
    [SQ_LOT_MEMBERS] = "SELECT id, payload, tier, due_at, topic, part, off, site, seq, period,"
                       " note LIKE 're-queued by replay-apply%'"
                       " FROM movements WHERE lot_key = ?1 AND " STORE_QUEUED
                       " AND producer_id = ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
    [SQ_LOT_DUE_AFTER] = "SELECT movement_id, tier FROM movements WHERE lot_key = ?1"
                         " AND " STORE_QUEUED " AND producer_id = ?2 AND seq > ?3 AND seq <= ?4"
                         " AND due_at <= ?5 ORDER BY seq DESC LIMIT 1",
    [SQ_LOT_HELD] = "SELECT 1 FROM movements WHERE lot_key = ?1"
                    " AND " STORE_OPEN("") " LIMIT 1",
    /* The UNIQUE(source_system, movement_id) index: one row at most, whatever its state. */
    [SQ_ORIGINAL] = "SELECT payload, state FROM movements WHERE source_system = ?1"
                    " AND movement_id = ?2",
    /* The first REVERSAL of the same original stored before ?3 (movements.id)
     * that took or may take effect: not dead (refused at consume), ignored
     * (loop guard) or skipped (an operator dropped its failed posting). Index
     * movements_reverses (migration 7). */
    [SQ_PRIOR_REVERSAL] = "SELECT movement_id, state, payload FROM movements"
                          " WHERE source_system = ?1 AND reverses = ?2 AND id < ?3"
                          " AND state <> 'dead' AND state <> 'ignored' AND state <> 'skipped'"
                          " ORDER BY id",
    [SQ_PAUSES] = "SELECT site, tier FROM pauses",
    [SQ_MARK_POSTING] =
        "INSERT INTO postings(posting_id, site, tier, lot_key, state, attempts, created_at,"
        " updated_at, chunk_lines) VALUES(?1,?2,?3,?4,'posting',1,?5,?5,?6)"
        " ON CONFLICT(posting_id) DO UPDATE SET state = 'posting', attempts = attempts + 1,"
        " updated_at = ?5, chunk_lines = coalesce(chunk_lines, ?6) RETURNING chunk_lines",
    [SQ_MARK_MOVEMENT] = "UPDATE movements SET state = 'posting', posting_id = ?2 WHERE id = ?1",
    [SQ_NOTE_MOVEMENT] = "UPDATE movements SET note = ?2 WHERE posting_id = ?1 AND due_at > ?3",
    [SQ_GET_PERIOD] = "SELECT fresh_from, committed FROM periods WHERE id = ?1",
    [SQ_CANCEL_MOVEMENT] = "UPDATE movements SET state = 'cancelled', reason = ?2 WHERE id = ?1",
    [SQ_POSTED] = "UPDATE postings SET state = 'posted', erp_doc = ?2, last_error = NULL,"
                  " next_at = NULL, lines = ?4, updated_at = ?3 WHERE posting_id = ?1",
    [SQ_RETRY] = "UPDATE postings SET state = 'retry', last_error = ?2, next_at = ?3,"
                 " updated_at = ?4 WHERE posting_id = ?1",
    [SQ_FAILED] = "UPDATE postings SET state = 'failed', last_error = ?2, next_at = NULL,"
                  " updated_at = ?3 WHERE posting_id = ?1",
    [SQ_MOVEMENTS_STATE] = "UPDATE movements SET state = ?2 WHERE posting_id = ?1",
    [SQ_REQUEUE_NEW] = "DELETE FROM postings WHERE posting_id = ?1",
    [SQ_REQUEUE_NEW_MOVEMENTS] = "UPDATE movements SET state = 'queued', posting_id = NULL"
                                 " WHERE posting_id = ?1",
    [SQ_REQUEUE_RETRY] = "UPDATE postings SET state = 'retry', attempts = attempts - 1,"
                         " next_at = ?2, updated_at = ?2 WHERE posting_id = ?1",
    [SQ_TIER_POSTED] = "INSERT INTO tier_activity(site, tier, last_posted_at) VALUES(?1,?2,?3)"
                       " ON CONFLICT(site, tier) DO UPDATE SET last_posted_at = ?3",
    [SQ_TIER_ERROR] = "INSERT INTO tier_activity(site, tier, last_error, last_error_at)"
                      " VALUES(?1,?2,?3,?4) ON CONFLICT(site, tier) DO UPDATE SET"
                      " last_error = ?3, last_error_at = ?4",
    /* A posting posted in chunks (migration 10). Cleared first: a posting id
     * that replay re-queued may come back cut otherwise. */
    [SQ_CHUNKS_CLEAR] = "DELETE FROM posting_chunks WHERE posting_id = ?1",
    [SQ_CHUNK_MOVEMENTS_CLEAR] = "DELETE FROM chunk_movements WHERE posting_id = ?1",
    [SQ_CHUNK] = "INSERT INTO posting_chunks(posting_id, chunk, erp_doc, lines)"
                 " VALUES(?1,?2,?3,?4)",
    [SQ_CHUNK_MOVEMENT] = "INSERT OR REPLACE INTO chunk_movements(mid, posting_id, chunk)"
                          " VALUES(?1,?2,?3)",
};

/* Remember the last success / error of a site's tier (status page, metrics).
 * A batch mostly touches a few (site, tier) pairs: successes are written once
 * per pair per batch (seen[] holds the postings already noted). */
static int note_tier_once(store_t *s, const store_posting_list_t *l, const store_result_t *results,
                          size_t i, int64_t now_ms);
static int note_tier(store_t *s, const store_posting_t *p, const char *error, int64_t now_ms) {
    sqlite3_stmt *st = stmt(s, error ? SQ_TIER_ERROR : SQ_TIER_POSTED);
    bind_text(st, 1, p->site);
    bind_text(st, 2, p->tier);
    if (error) {
        bind_text(st, 3, error);
        sqlite3_bind_int64(st, 4, now_ms);
    } else {
        sqlite3_bind_int64(st, 3, now_ms);
    }
    return sqlite3_step(st) == SQLITE_DONE;
}

static void posting_release(store_posting_t *p) {
    for (size_t i = 0; i < p->n; i++)
        if (p->m[i])
            invsync__v1__movement__free_unpacked(p->m[i], NULL);
    free(p->m);
    free(p->row_ids);
    free(p->origin);
    free(p->invalid);
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

/* Append a decoded movement (ownership moves to the posting). */
static is_err_t posting_take(store_posting_t *p, int64_t row_id, is_movement_t *m,
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
    p->m[p->n] = m;
    p->row_ids[p->n] = row_id;
    snprintf(p->origin[p->n].topic, sizeof(p->origin[p->n].topic), "%s", topic ? topic : "");
    p->origin[p->n].partition = part;
    p->origin[p->n].offset = off;
    p->n = n;
    return IS_OK;
}

static is_movement_t *decode(sqlite3_stmt *st, int col) {
    return invsync__v1__movement__unpack(NULL, (size_t)sqlite3_column_bytes(st, col),
                                         sqlite3_column_blob(st, col));
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *st, int col) {
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", v ? (const char *)v : "");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * posting_id: 32 lowercase hex characters, a function of the posting's
 * movements only (and of the configured cut-over, the same on every
 * instance), so that a posting made again from the same movements (after a
 * crash, by a failover owner, from a rebuilt store, by replay --apply) has
 * the same id and the ERP books it once. Two forms:
 *   hash: the first 32 hex digits of SHA-256 over the sorted
 *     "source\x1fid\n" lines, as every earlier version made them;
 *   time-ordered, when every movement was accepted at or after
 *     s->time_ids_from (poster.time_ordered_ids_from): 11 hex digits of the
 *     earliest event_time (ms UTC), then the first 21 hex digits (84 bits)
 *     of the same hash.
 * Time-ordered ids grow roughly in the order postings are made, so the
 * b-trees keyed by the id (postings, movements_posting, the embedded
 * ledger's documents) take each new id near their right edge instead of on
 * a random page: on a store of 200,000 movements +33 % real-time postings/s
 * (docs/PERFORMANCE.md §5.10). The cut-over keeps, for a movement an earlier
 * version may have posted, the id that version gave it.
 */
static is_err_t posting_id_of(const store_t *s, store_posting_t *p) {
    char **keys = calloc(p->n ? p->n : 1, sizeof(*keys));
    is_sha256_t h;
    uint8_t digest[IS_SHA256_LEN];
    char hex[IS_SHA256_HEX_LEN + 1];
    is_err_t rc = IS_ERR_NOMEM;
    int64_t first_event = INT64_MAX, first_accepted = INT64_MAX;
    if (!keys)
        return IS_ERR_NOMEM;
    for (size_t i = 0; i < p->n; i++) {
        if (asprintf(&keys[i], "%s\x1f%s", p->m[i]->source_system, p->m[i]->movement_id) < 0)
            goto out;
        if (p->m[i]->event_time < first_event)
            first_event = p->m[i]->event_time;
        if (p->m[i]->accepted_time < first_accepted)
            first_accepted = p->m[i]->accepted_time;
    }
    qsort(keys, p->n, sizeof(*keys), cmp_str);
    if (is_sha256_init(&h) != IS_OK)
        goto out;
    for (size_t i = 0; i < p->n; i++) {
        is_sha256_update(&h, keys[i], strlen(keys[i]));
        is_sha256_update(&h, "\n", 1);
    }
    is_sha256_final(&h, digest);
    is_hex(digest, IS_SHA256_LEN, hex);
    if (p->n > 0 && s->time_ids_from != INT64_MAX && first_accepted >= s->time_ids_from) {
        if (first_event < 0) /* refused at ingest; keep the id well-formed */
            first_event = 0;
        snprintf(p->posting_id, sizeof(p->posting_id), "%011llx%.21s",
                 (unsigned long long)(first_event & 0xfffffffffffLL), hex);
    } else {
        memcpy(p->posting_id, hex, 32);
        p->posting_id[32] = '\0';
    }
    rc = IS_OK;
out:
    for (size_t i = 0; i < p->n; i++)
        free(keys[i]);
    free(keys);
    return rc;
}

/* ---- a REVERSAL against its original ------------------------------------- */

/*
 * Check REVERSAL r, stored as movements.id row_id, against its original
 * (same source_system, movement_id = r's reverses_movement_id). A movement is
 * reversed once. r must not be posted when:
 *   - the store has the original and r does not match it
 *     (is_movement_reversal_check);
 *   - another REVERSAL of the same original was stored before r and took or
 *     may take effect — it matches the original when the store has it —
 *     (SQ_PRIOR_REVERSAL: queued, posting, retry, failed,
 *     posted, or cancelled together with the original inside the window),
 *     whether or not the store has the original. One stored before store
 *     migration 7 is not found this way (its `reverses` is NULL);
 *   - the original is `cancelled` (a REVERSAL cancelled it inside the window).
 * A queued earlier REVERSAL counts: in one cut [original, r1, r2], r1 is
 * still queued (its pair is cancelled only at store_mark_posting) and r2 is
 * refused. An operator who skips r1's failed posting releases r2 for a
 * `failed retry` (checked again, load_postings).
 * IS_OK with *why = NULL when r may be posted (including when the original
 * is not in the store: it predates this store, and r goes to the ERP as an
 * ERP reversal as it stands); with *why = the reason (malloc'd, beginning
 * with STORE_REVERSAL_REASON) when it must not be. IS_ERR_NOMEM, or
 * IS_ERR_DB when the store cannot be read (the cycle fails and is tried
 * again).
 */
static is_err_t check_reversal(store_t *s, int64_t row_id, const is_movement_t *r, char **why) {
    char buf[640] = "";
    int cancelled = 0;
    *why = NULL;
    if (r->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL)
        return IS_OK;
    sqlite3_stmt *st = stmt(s, SQ_ORIGINAL);
    bind_text(st, 1, r->source_system);
    bind_text(st, 2, r->reverses_movement_id);
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        sqlite3_reset(st);
        return IS_ERR_DB; /* not "no original": the posting waits for the next cycle */
    }
    is_movement_t *o = NULL;
    if (step == SQLITE_ROW) {
        const unsigned char *state = sqlite3_column_text(st, 1);
        cancelled = state && strcmp((const char *)state, "cancelled") == 0;
        o = decode(st, 0);
        if (!o)
            snprintf(buf, sizeof(buf),
                     "reversal of %s cannot be checked: the stored original does not decode",
                     r->reverses_movement_id);
        else
            is_movement_reversal_check(r, o, buf, sizeof(buf)); /* buf stays "" when it matches */
    }
    sqlite3_reset(st);
    if (!buf[0]) {
        /* The first earlier reversal that can take effect: one that does not
         * match a known original never will, and must not block this one. */
        st = stmt(s, SQ_PRIOR_REVERSAL);
        bind_text(st, 1, r->source_system);
        bind_text(st, 2, r->reverses_movement_id);
        sqlite3_bind_int64(st, 3, row_id);
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            if (o) {
                char ignored[640] = "";
                is_movement_t *pr = decode(st, 2);
                int valid = pr && is_movement_reversal_check(pr, o, ignored, sizeof(ignored));
                if (pr)
                    invsync__v1__movement__free_unpacked(pr, NULL);
                if (!valid)
                    continue;
            }
            const char *prior = (const char *)sqlite3_column_text(st, 0);
            const char *state = (const char *)sqlite3_column_text(st, 1);
            snprintf(buf, sizeof(buf), "reversal refused: reverses %s, which %s already reverses%s",
                     r->reverses_movement_id, prior ? prior : "",
                     state && strcmp(state, "cancelled") == 0
                         ? " (the two were cancelled inside the window)"
                         : "");
            break;
        }
        sqlite3_reset(st);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            if (o)
                invsync__v1__movement__free_unpacked(o, NULL);
            return IS_ERR_DB;
        }
    }
    if (o)
        invsync__v1__movement__free_unpacked(o, NULL);
    if (!buf[0] && cancelled)
        snprintf(buf, sizeof(buf),
                 "reversal refused: reverses %s, which was cancelled inside the window",
                 r->reverses_movement_id);
    if (!buf[0])
        return IS_OK;
    *why = strdup(buf);
    return *why ? IS_OK : IS_ERR_NOMEM;
}

static void set_tier_rules(store_posting_t *p, const is_policy_t *policy) {
    const is_tier_t *t = policy ? is_policy_tier_by_name(policy, p->tier) : NULL;
    p->net = t && t->cadence != IS_CADENCE_IMMEDIATE;
    p->max_lines = t ? t->max_lines : 0;
}

/* Load the postings selected by st (posting_id, site, tier, lot_key, attempts
 * [, last_error]). check: postings about to be posted again. One that failed
 * as invalid (last_error is a check_reversal reason) and that an operator
 * retries is checked again; any other retry was valid when it was cut and may
 * have reached the ERP in part (a timeout, a chunk), so it is not re-judged
 * by an original that arrived since. */
static is_err_t load_postings(store_t *s, sqlite3_stmt *st, const is_policy_t *policy, int check,
                              store_posting_list_t *out) {
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
        const unsigned char *le = sqlite3_column_count(st) > 5 ? sqlite3_column_text(st, 5) : NULL;
        const char *last_error = le ? (const char *)le : "";
        p->recheck = check && (strncmp(last_error, STORE_REVERSAL_REASON,
                                       strlen(STORE_REVERSAL_REASON)) == 0 ||
                               strcmp(last_error, STORE_NOT_IN_ERP_AFTER_RESTART) == 0);
        set_tier_rules(p, policy);
    }
    sqlite3_reset(st);
    for (size_t i = first; rc == IS_OK && i < out->n; i++) {
        store_posting_t *p = &out->items[i];
        sqlite3_stmt *ms = stmt(s, SQ_POSTING_MOVEMENTS);
        bind_text(ms, 1, p->posting_id);
        while (rc == IS_OK && sqlite3_step(ms) == SQLITE_ROW) {
            is_movement_t *m = decode(ms, 1);
            rc = m ? posting_take(p, sqlite3_column_int64(ms, 0), m,
                                  (const char *)sqlite3_column_text(ms, 2),
                                  sqlite3_column_int(ms, 3), sqlite3_column_int64(ms, 4))
                   : IS_ERR_INVALID; /* stored after decoding: corruption */
            if (rc != IS_OK && m)
                invsync__v1__movement__free_unpacked(m, NULL);
        }
        sqlite3_reset(ms);
        for (size_t k = 0; p->recheck && rc == IS_OK && !p->invalid && k < p->n; k++)
            rc = check_reversal(s, p->row_ids[k], p->m[k], &p->invalid);
    }
    return rc;
}

is_err_t store_fetch_inflight(store_t *s, store_posting_list_t *out, char *errstr,
                              size_t errstr_size) {
    is_err_t rc = load_postings(s, stmt(s, SQ_INFLIGHT), NULL, 0, out);
    if (rc != IS_OK)
        is_errf(errstr, errstr_size, "cannot load in-flight postings: %s", is_err_str(rc));
    return rc;
}

/* ---- triggered lots ------------------------------------------------------- */

typedef struct pause_set {
    size_t n;
    char (*site)[65];
    char (*tier)[32];
} pause_set_t;

static int paused_in(const pause_set_t *ps, const char *site, const char *tier) {
    for (size_t i = 0; i < ps->n; i++)
        if ((strcmp(ps->site[i], "*") == 0 || strcmp(ps->site[i], site) == 0) &&
            (strcmp(ps->tier[i], "*") == 0 || strcmp(ps->tier[i], tier) == 0))
            return 1;
    return 0;
}

static is_err_t load_pauses(store_t *s, pause_set_t *ps) {
    sqlite3_stmt *st = stmt(s, SQ_PAUSES);
    memset(ps, 0, sizeof(*ps));
    while (sqlite3_step(st) == SQLITE_ROW) {
        void *a = realloc(ps->site, (ps->n + 1) * sizeof(*ps->site));
        if (!a)
            return IS_ERR_NOMEM;
        ps->site = a;
        void *b = realloc(ps->tier, (ps->n + 1) * sizeof(*ps->tier));
        if (!b)
            return IS_ERR_NOMEM;
        ps->tier = b;
        copy_col(ps->site[ps->n], sizeof(ps->site[0]), st, 0);
        copy_col(ps->tier[ps->n], sizeof(ps->tier[0]), st, 1);
        ps->n++;
    }
    sqlite3_reset(st);
    return IS_OK;
}

typedef struct member {
    int64_t id;
    is_movement_t *m; /* owned until moved into a posting */
    char tier[32];
    int64_t due_at;
    char topic[250];
    int32_t part;
    int64_t off;
    int64_t period;
    int requeued; /* posted once, re-queued by replay --apply: never cancelled */
    int cancelled;
    char *invalid; /* a REVERSAL refused by check_reversal: why */
} member_t;

static void members_free(member_t *mb, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (mb[i].m)
            invsync__v1__movement__free_unpacked(mb[i].m, NULL);
        free(mb[i].invalid);
    }
    free(mb);
}

/*
 * May original j and its reversal i be cancelled together? Removing both
 * shifts the stock every movement between them sees by the original's
 * effect, which could starve one of them (a transfer into a line, an issue
 * from the line, then the transfer reversed). So only when no movement
 * between them touches a (location, status) the original touched.
 */
static int pair_isolated(const member_t *mb, size_t j, size_t i) {
    is_stock_effect_t fo[4], fk[4];
    size_t no = is_movement_effects(mb[j].m, fo);
    for (size_t k = j + 1; k < i; k++) {
        if (mb[k].cancelled)
            continue;
        size_t nk = is_movement_effects(mb[k].m, fk);
        for (size_t a = 0; a < no; a++)
            for (size_t b = 0; b < nk; b++)
                if (fo[a].status == fk[b].status && strcmp(fo[a].location, fk[b].location) == 0)
                    return 0;
    }
    return 1;
}

/* In a shared group, did this instance alone read the member (store_begin_period)? */
static int read_alone(store_t *s, const member_t *x) {
    if (!s->shared)
        return 1;
    sqlite3_stmt *st = stmt(s, SQ_GET_PERIOD);
    sqlite3_bind_int64(st, 1, x->period);
    int ok = sqlite3_step(st) == SQLITE_ROW && x->off >= sqlite3_column_int64(st, 0) &&
             x->off < sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return ok;
}

/*
 * Cut a lot's due members (acceptance order) into postings appended to out:
 * cancelled pairs first as one `cancel` entry, then one posting per movement
 * of an immediate tier, one per run of a windowed tier. A REVERSAL that
 * check_reversal refuses (it does not match its original, or the original is
 * reversed already) gets a posting of its own, `invalid`: it cancels nothing,
 * and the lot's movements after it do not join the run before it.
 */
static is_err_t cut_postings(store_t *s, member_t *mb, size_t n, const char *lot_key,
                             const char *site, const is_policy_t *policy, int64_t now_ms,
                             const char *trigger_id, const char *trigger_tier,
                             store_posting_list_t *out) {
    /* Indexes, not pointers: list_push may move the items. */
    size_t cancel = SIZE_MAX, run = SIZE_MAX;
    is_err_t rc = IS_OK;

    /* Every REVERSAL is judged before any pair is chosen: a second reversal of
     * an original (r2 after r1, both here and still queued) is invalid, so
     * it pairs with nothing and r1 alone cancels the original. */
    for (size_t i = 0; rc == IS_OK && i < n; i++)
        rc = check_reversal(s, mb[i].id, mb[i].m, &mb[i].invalid);
    if (rc != IS_OK)
        return rc;
    /* A REVERSAL whose original is also here (and matches it): neither reaches the ERP — unless
     * another instance of a shared group may have read, or may still read, one
     * of the two (it could post that one alone), or one of them was posted
     * before and re-queued by replay --apply (the trail says it was posted;
     * it goes to the ERP again as it went the first time). */
    for (size_t i = 0; i < n; i++) {
        if (mb[i].m->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL || mb[i].invalid)
            continue;
        for (size_t j = 0; j < i; j++) {
            if (!mb[j].cancelled &&
                strcmp(mb[j].m->movement_id, mb[i].m->reverses_movement_id) == 0 &&
                strcmp(mb[j].m->source_system, mb[i].m->source_system) == 0) {
                /* Otherwise both are posted: the ERP sees the mistake and its correction. */
                if (!mb[i].requeued && !mb[j].requeued && pair_isolated(mb, j, i) &&
                    read_alone(s, &mb[i]) && read_alone(s, &mb[j]))
                    mb[i].cancelled = mb[j].cancelled = 1;
                break;
            }
        }
    }
    for (size_t i = 0; rc == IS_OK && i < n; i++) {
        size_t at;
        if (mb[i].cancelled && cancel != SIZE_MAX) {
            at = cancel;
        } else if (!mb[i].cancelled && !mb[i].invalid && run != SIZE_MAX && out->items[run].net &&
                   strcmp(out->items[run].tier, mb[i].tier) == 0) {
            at = run;
        } else {
            store_posting_t *p = list_push(out);
            if (!p)
                return IS_ERR_NOMEM;
            at = out->n - 1;
            snprintf(p->lot_key, sizeof(p->lot_key), "%s", lot_key);
            snprintf(p->site, sizeof(p->site), "%s", site);
            snprintf(p->tier, sizeof(p->tier), "%s", mb[i].tier);
            if (mb[i].cancelled) {
                p->cancel = 1;
                cancel = at;
            } else {
                set_tier_rules(p, policy);
                run = mb[i].invalid ? SIZE_MAX : at;
                p->invalid = mb[i].invalid;
                mb[i].invalid = NULL;
            }
        }
        store_posting_t *p = &out->items[at];
        if (!p->cancel && mb[i].due_at > now_ms && !p->note[0])
            snprintf(p->note, sizeof(p->note), "promoted by %s (%s)", trigger_id, trigger_tier);
        rc = posting_take(p, mb[i].id, mb[i].m, mb[i].topic, mb[i].part, mb[i].off);
        if (rc == IS_OK)
            mb[i].m = NULL;
    }
    return rc;
}

/* Load a triggered lot's due members; append its postings. *held: nothing appended. */
static is_err_t take_lot(store_t *s, const is_policy_t *policy, const pause_set_t *ps,
                         const char *lot_key, const char *producer, int64_t watermark,
                         const char *site, int64_t now_ms, store_posting_list_t *out, int *held) {
    sqlite3_stmt *st;
    member_t *mb = NULL;
    size_t n = 0, cap = 0, last_due = SIZE_MAX;
    is_err_t rc = IS_OK;

    *held = 1;
    st = stmt(s, SQ_LOT_HELD);
    bind_text(st, 1, lot_key);
    int busy = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    if (busy)
        return IS_OK;
    st = stmt(s, SQ_LOT_MEMBERS);
    bind_text(st, 1, lot_key);
    bind_text(st, 2, producer);
    sqlite3_bind_int64(st, 3, watermark);
    sqlite3_bind_int64(st, 4, STORE_FETCH_MEMBERS);
    int64_t last_seq = 0;
    while (rc == IS_OK && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            member_t *grown = realloc(mb, cap * sizeof(*mb));
            if (!grown) {
                rc = IS_ERR_NOMEM;
                break;
            }
            mb = grown;
        }
        member_t *x = &mb[n];
        memset(x, 0, sizeof(*x));
        x->id = sqlite3_column_int64(st, 0);
        x->m = decode(st, 1);
        if (!x->m) {
            rc = IS_ERR_INVALID;
            break;
        }
        n++;
        copy_col(x->tier, sizeof(x->tier), st, 2);
        x->due_at = sqlite3_column_int64(st, 3);
        copy_col(x->topic, sizeof(x->topic), st, 4);
        x->part = sqlite3_column_int(st, 5);
        x->off = sqlite3_column_int64(st, 6);
        last_seq = sqlite3_column_int64(st, 8);
        x->period = sqlite3_column_int64(st, 9); /* NULL reads as 0: no period */
        x->requeued = sqlite3_column_int(st, 10);
        if (x->due_at <= now_ms)
            last_due = n - 1;
    }
    sqlite3_reset(st);
    char trigger_id[IS_MOVEMENT_MAX_STR + 1] = "", trigger_tier[32] = "";
    if (rc == IS_OK && n == STORE_FETCH_MEMBERS) {
        /* More members than one fetch loads: if a due one lies beyond, it
         * promotes every loaded member (the rest follow next cycle). */
        st = stmt(s, SQ_LOT_DUE_AFTER);
        bind_text(st, 1, lot_key);
        bind_text(st, 2, producer);
        sqlite3_bind_int64(st, 3, last_seq);
        sqlite3_bind_int64(st, 4, watermark);
        sqlite3_bind_int64(st, 5, now_ms);
        if (sqlite3_step(st) == SQLITE_ROW) {
            last_due = n - 1;
            copy_col(trigger_id, sizeof(trigger_id), st, 0);
            copy_col(trigger_tier, sizeof(trigger_tier), st, 1);
        }
        sqlite3_reset(st);
    }
    if (rc != IS_OK || last_due == SIZE_MAX)
        goto out;
    /* Members after the last due one stay queued (they are not due and nothing later
     * pulls them along). */
    for (size_t i = 0; i <= last_due; i++)
        if (paused_in(ps, site, mb[i].tier))
            goto out; /* an earlier movement of the lot sits in a paused tier: hold */
    *held = 0;
    if (!trigger_id[0]) {
        snprintf(trigger_id, sizeof(trigger_id), "%s", mb[last_due].m->movement_id);
        snprintf(trigger_tier, sizeof(trigger_tier), "%s", mb[last_due].tier);
    }
    /* The REVERSAL of a due member, waiting right behind the due ones, comes
     * along so the pair meets in one cut and cancels: `hold` on an immediate
     * tier delays the original for exactly this, but the reversal, received
     * later, falls due later. Only the very next member, once, and not from a
     * paused tier: nothing else is pulled ahead of its own time. */
    if (last_due + 1 < n && !paused_in(ps, site, mb[last_due + 1].tier)) {
        const is_movement_t *r = mb[last_due + 1].m;
        if (r->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL && r->reverses_movement_id) {
            for (size_t i = 0; i <= last_due; i++) {
                if (strcmp(mb[i].m->movement_id, r->reverses_movement_id) == 0 &&
                    strcmp(mb[i].m->source_system, r->source_system) == 0) {
                    last_due++;
                    break;
                }
            }
        }
    }
    rc = cut_postings(s, mb, last_due + 1, lot_key, site, policy, now_ms, trigger_id, trigger_tier,
                      out);
out:
    members_free(mb, n);
    return rc;
}

/*
 * The lots a fetch has handled, keyed by lot_key \x1f producer_id: an
 * open-addressing hash set (a fetch sees up to TRIGGER_PAGES * TRIGGER_PAGE
 * trigger rows; a linear list made that quadratic).
 */
typedef struct seen_set {
    char **slot;    /* "lot_key\x1fproducer_id", NULL = empty */
    uint64_t *hash; /* of each slot's key */
    size_t cap, n;
} seen_set_t;

static uint64_t seen_hash(const char *key) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return h;
}

/* Double the table (cap stays a power of two). 0, or -1 out of memory. */
static int seen_grow(seen_set_t *s) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    char **slot = calloc(cap, sizeof(*slot));
    uint64_t *hash = calloc(cap, sizeof(*hash));
    if (!slot || !hash) {
        free(slot);
        free(hash);
        return -1;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slot[i])
            continue;
        size_t j = s->hash[i] & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = s->slot[i];
        hash[j] = s->hash[i];
    }
    free(s->slot);
    free(s->hash);
    s->slot = slot;
    s->hash = hash;
    s->cap = cap;
    return 0;
}

/* 1 if (lot, producer) was added, 0 if it was there, -1 out of memory. */
static int seen_add(seen_set_t *s, const char *lot, const char *producer) {
    if (2 * (s->n + 1) > s->cap && seen_grow(s) < 0)
        return -1;
    char *key = NULL;
    if (asprintf(&key, "%s\x1f%s", lot, producer) < 0)
        return -1;
    uint64_t h = seen_hash(key);
    size_t j = h & (s->cap - 1);
    for (; s->slot[j]; j = (j + 1) & (s->cap - 1))
        if (s->hash[j] == h && strcmp(s->slot[j], key) == 0) {
            free(key);
            return 0;
        }
    s->slot[j] = key;
    s->hash[j] = h;
    s->n++;
    return 1;
}

static void seen_free(seen_set_t *s) {
    for (size_t i = 0; i < s->cap; i++)
        free(s->slot[i]);
    free(s->slot);
    free(s->hash);
    memset(s, 0, sizeof(*s));
}

/* Movements in a fetch's postings so far. */
static size_t loaded(const store_posting_list_t *out) {
    size_t n = 0;
    for (size_t i = 0; i < out->n; i++)
        n += out->items[i].n;
    return n;
}

is_err_t store_fetch_due(store_t *s, const is_policy_t *policy, int64_t now_ms, size_t max,
                         store_posting_list_t *out, char *errstr, size_t errstr_size) {
    pause_set_t ps;
    sqlite3_stmt *st;
    is_err_t rc;
    /* Lots already handled in this fetch (by lot_key + producer). */
    seen_set_t seen = {0};
    int64_t after_due = INT64_MIN, after_id = 0; /* keyset cursor over trigger rows */

    rc = load_pauses(s, &ps);
    if (rc != IS_OK)
        goto err;
    st = stmt(s, SQ_DUE_RETRY);
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    rc = load_postings(s, st, policy, 1, out);
    if (rc != IS_OK)
        goto err;

    for (int page = 0; page < TRIGGER_PAGES && out->n < max && loaded(out) < STORE_FETCH_MEMBERS;
         page++) {
        /* Collect the page's distinct lots first: take_lot reuses statements. */
        typedef struct trig {
            char *lot_key, *producer, *site, *tier;
            int64_t watermark;
        } trig_t;
        trig_t *tr = calloc(TRIGGER_PAGE, sizeof(*tr));
        size_t n_tr = 0, rows = 0;
        if (!tr) {
            rc = IS_ERR_NOMEM;
            goto err;
        }
        st = stmt(s, SQ_TRIGGERS);
        sqlite3_bind_int64(st, 1, now_ms);
        sqlite3_bind_int64(st, 2, TRIGGER_PAGE);
        sqlite3_bind_int64(st, 3, after_due);
        sqlite3_bind_int64(st, 4, after_id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *lot = (const char *)sqlite3_column_text(st, 0);
            const char *prod = (const char *)sqlite3_column_text(st, 1);
            rows++;
            after_due = sqlite3_column_int64(st, 5);
            after_id = sqlite3_column_int64(st, 6);
            int added = seen_add(&seen, lot, prod);
            if (added < 0) {
                rc = IS_ERR_NOMEM;
                break;
            }
            if (!added)
                continue; /* this lot is handled already in this fetch */
            tr[n_tr].lot_key = strdup(lot);
            tr[n_tr].producer = strdup(prod);
            tr[n_tr].watermark = sqlite3_column_int64(st, 2);
            tr[n_tr].site = strdup((const char *)sqlite3_column_text(st, 3));
            tr[n_tr].tier = strdup((const char *)sqlite3_column_text(st, 4));
            n_tr++;
        }
        sqlite3_reset(st);
        for (size_t i = 0;
             rc == IS_OK && i < n_tr && out->n < max && loaded(out) < STORE_FETCH_MEMBERS; i++) {
            int held;
            if (!tr[i].lot_key || !tr[i].producer || !tr[i].site || !tr[i].tier) {
                rc = IS_ERR_NOMEM;
                break;
            }
            if (paused_in(&ps, tr[i].site, tr[i].tier))
                continue;
            rc = take_lot(s, policy, &ps, tr[i].lot_key, tr[i].producer, tr[i].watermark,
                          tr[i].site, now_ms, out, &held);
        }
        for (size_t i = 0; i < n_tr; i++) {
            free(tr[i].lot_key);
            free(tr[i].producer);
            free(tr[i].site);
            free(tr[i].tier);
        }
        free(tr);
        if (rc != IS_OK)
            goto err;
        if (rows < TRIGGER_PAGE)
            break;
    }
    for (size_t i = 0; rc == IS_OK && i < out->n; i++)
        if (!out->items[i].posting_id[0])
            rc = posting_id_of(s, &out->items[i]);
    if (rc != IS_OK)
        goto err;
    seen_free(&seen);
    free(ps.site);
    free(ps.tier);
    return IS_OK;
err:
    seen_free(&seen);
    free(ps.site);
    free(ps.tier);
    is_errf(errstr, errstr_size, "cannot load due postings: %s (%s)", is_err_str(rc),
            sqlite3_errmsg(s->db));
    return rc;
}

/* Why a cancelled movement was not posted. */
static void cancel_reason(const store_posting_t *p, size_t k, char *buf, size_t size) {
    const is_movement_t *m = p->m[k];
    if (m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL) {
        snprintf(buf, size, "reverses %s inside the window: neither was posted",
                 m->reverses_movement_id);
        return;
    }
    for (size_t i = 0; i < p->n; i++)
        if (p->m[i]->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
            strcmp(p->m[i]->reverses_movement_id, m->movement_id) == 0) {
            snprintf(buf, size, "reversed by %s inside the window: neither was posted",
                     p->m[i]->movement_id);
            return;
        }
    snprintf(buf, size, "cancelled inside the window");
}

is_err_t store_mark_posting(store_t *s, store_posting_list_t *l, int64_t now_ms, char *errstr,
                            size_t errstr_size) {
    if (l->n == 0)
        return IS_OK;
    /* A mark is what start-up recovery relies on: it must reach the disk
     * before the ERP sees the posting. */
    if (s->sync_relaxed) {
        if (is_db_set_sync(s->db, IS_DB_SYNC_FULL) != IS_OK)
            return is_db_error(s->db, "cannot restore synchronous=FULL before marking postings",
                               errstr, errstr_size);
        s->sync_relaxed = 0;
    }
    if (store_begin(s) != IS_OK)
        goto db_err;
    for (size_t i = 0; i < l->n; i++) {
        store_posting_t *p = &l->items[i];
        sqlite3_stmt *st;
        if (p->cancel) {
            for (size_t k = 0; k < p->n; k++) {
                char reason[256];
                cancel_reason(p, k, reason, sizeof(reason));
                st = stmt(s, SQ_CANCEL_MOVEMENT);
                sqlite3_bind_int64(st, 1, p->row_ids[k]);
                bind_text(st, 2, reason);
                if (sqlite3_step(st) != SQLITE_DONE)
                    goto db_err;
                json_t *d =
                    json_pack("{s:s,s:s,s:s}", "site", p->site, "tier", p->tier, "reason", reason);
                char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
                json_decref(d);
                is_err_t arc = store_audit(s, now_ms, "poster", "cancelled", p->m[k]->movement_id,
                                           detail, errstr, errstr_size);
                free(detail);
                if (arc != IS_OK)
                    goto db_err;
            }
            continue;
        }
        st = stmt(s, SQ_MARK_POSTING);
        bind_text(st, 1, p->posting_id);
        bind_text(st, 2, p->site);
        bind_text(st, 3, p->tier);
        bind_text(st, 4, p->lot_key);
        sqlite3_bind_int64(st, 5, now_ms);
        sqlite3_bind_int64(st, 6, p->max_lines);
        if (sqlite3_step(st) != SQLITE_ROW)
            goto db_err;
        /* The limit of the posting's first attempt, whatever the tier says now. */
        p->max_lines = (uint32_t)sqlite3_column_int64(st, 0);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto db_err;
        for (size_t k = 0; k < p->n; k++) {
            st = stmt(s, SQ_MARK_MOVEMENT);
            sqlite3_bind_int64(st, 1, p->row_ids[k]);
            bind_text(st, 2, p->posting_id);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
        }
        if (p->note[0]) {
            st = stmt(s, SQ_NOTE_MOVEMENT);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, p->note);
            sqlite3_bind_int64(st, 3, now_ms);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto db_err;
        }
    }
    if (store_commit(s) != IS_OK)
        goto db_err;
    return IS_OK;
db_err:;
    is_err_t rc = is_db_error(s->db, "cannot mark postings", errstr, errstr_size);
    store_rollback(s);
    return rc;
}

/* Note a posted posting's site and tier once per batch: an earlier POSTED
 * posting of the pair in this batch has done it (a failed or retried one
 * has not: it noted an error, not a posting). */
static int note_tier_once(store_t *s, const store_posting_list_t *l, const store_result_t *results,
                          size_t i, int64_t now_ms) {
    const store_posting_t *p = &l->items[i];
    for (size_t k = 0; k < i; k++)
        if (!l->items[k].cancel && results[k].outcome == STORE_POSTED &&
            strcmp(l->items[k].site, p->site) == 0 && strcmp(l->items[k].tier, p->tier) == 0)
            return 1;
    return note_tier(s, p, NULL, now_ms);
}

/* Printable ASCII without '"' and '\\': written into JSON as is. */
static int json_plain(const char *v) {
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e || *v == '"' || *v == '\\')
            return 0;
    return 1;
}

/*
 * The audit detail of a posted posting, compact JSON. The usual case (every
 * string plain) is formatted into buf directly — json_pack + json_dumps cost
 * more than the rest of the audit row; anything else goes through jansson
 * (same output). Returns buf, a string to free, or NULL.
 */
static char *posted_detail(const store_posting_t *p, const store_result_t *r, char *buf,
                           size_t size) {
    const char *doc = r->document ? r->document : "";
    const char *pv = p->n ? p->m[0]->policy_version : "";
    if (json_plain(doc) && json_plain(p->site) && json_plain(p->tier) && json_plain(pv)) {
        int n = snprintf(buf, size,
                         "{\"document\":\"%s\",\"site\":\"%s\",\"tier\":\"%s\",\"movements\":%zu,"
                         "\"lines\":%d,\"policy_version\":\"%s\"}",
                         doc, p->site, p->tier, p->n, r->lines, pv);
        if (n >= 0 && (size_t)n < size)
            return buf;
    }
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:I,s:i,s:s}", "document", doc, "site", p->site, "tier", p->tier,
                  "movements", (json_int_t)p->n, "lines", r->lines, "policy_version", pv);
    char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    return txt;
}

static int set_movements_state(store_t *s, const char *posting_id, const char *state) {
    sqlite3_stmt *st = stmt(s, SQ_MOVEMENTS_STATE);
    bind_text(st, 1, posting_id);
    bind_text(st, 2, state);
    return sqlite3_step(st) == SQLITE_DONE;
}

/* The chunks of a posting posted in chunks, and the chunk of each of its
 * movements (migration 10). 1 when written (or nothing to write). */
static int record_chunks(store_t *s, const store_posting_t *p, const store_result_t *r) {
    sqlite3_stmt *st;
    if (!r->chunks || r->n_chunks == 0)
        return 1;
    st = stmt(s, SQ_CHUNKS_CLEAR);
    bind_text(st, 1, p->posting_id);
    if (sqlite3_step(st) != SQLITE_DONE)
        return 0;
    st = stmt(s, SQ_CHUNK_MOVEMENTS_CLEAR);
    bind_text(st, 1, p->posting_id);
    if (sqlite3_step(st) != SQLITE_DONE)
        return 0;
    for (size_t k = 0; k < r->n_chunks; k++) {
        st = stmt(s, SQ_CHUNK);
        bind_text(st, 1, p->posting_id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(k + 1));
        bind_text(st, 3, r->chunks[k].document ? r->chunks[k].document : "");
        sqlite3_bind_int(st, 4, r->chunks[k].lines);
        if (sqlite3_step(st) != SQLITE_DONE)
            return 0;
    }
    for (size_t j = 0; r->movement_chunk && j < p->n; j++) {
        if (r->movement_chunk[j] == 0 || r->movement_chunk[j] > r->n_chunks)
            continue; /* in no chunk: its line netted to zero */
        st = stmt(s, SQ_CHUNK_MOVEMENT);
        sqlite3_bind_int64(st, 1, p->row_ids[j]);
        bind_text(st, 2, p->posting_id);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)r->movement_chunk[j]);
        if (sqlite3_step(st) != SQLITE_DONE)
            return 0;
    }
    return 1;
}

static is_err_t record_results(store_t *s, const store_posting_list_t *l,
                               const store_result_t *results, int64_t now_ms, char *errstr,
                               size_t errstr_size);

is_err_t store_record_results(store_t *s, const store_posting_list_t *l,
                              const store_result_t *results, int64_t now_ms, char *errstr,
                              size_t errstr_size) {
    if (l->n == 0)
        return IS_OK;
    /* Without an fsync of its own (synchronous=NORMAL): losing this commit to a
     * power failure leaves the postings `posting`, the state a crash just
     * before it leaves, which start-up resolves by ERP lookup (poster.c,
     * recover_inflight) and records again. The next full commit on the store
     * (a mark, a consumed batch) makes it durable anyway. Saves an fsync per
     * poster cycle on the real-time path. */
    if (s->sync == IS_DB_SYNC_FULL && is_db_set_sync(s->db, IS_DB_SYNC_NORMAL) == IS_OK)
        s->sync_relaxed = 1;
    is_err_t rc = record_results(s, l, results, now_ms, errstr, errstr_size);
    if (s->sync_relaxed && is_db_set_sync(s->db, IS_DB_SYNC_FULL) == IS_OK)
        s->sync_relaxed = 0; /* else store_mark_posting tries again before it commits */
    return rc;
}

static is_err_t record_results(store_t *s, const store_posting_list_t *l,
                               const store_result_t *results, int64_t now_ms, char *errstr,
                               size_t errstr_size) {
    if (store_begin(s) != IS_OK)
        goto db_err;
    for (size_t i = 0; i < l->n; i++) {
        const store_posting_t *p = &l->items[i];
        const store_result_t *r = &results[i];
        sqlite3_stmt *st;
        int ok = 1;
        if (p->cancel)
            continue;
        switch (r->outcome) {
        case STORE_POSTED:
            st = stmt(s, SQ_POSTED);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, r->document);
            sqlite3_bind_int64(st, 3, now_ms);
            sqlite3_bind_int(st, 4, r->lines);
            ok = sqlite3_step(st) == SQLITE_DONE &&
                 set_movements_state(s, p->posting_id, "posted") &&
                 note_tier_once(s, l, results, i, now_ms) && record_chunks(s, p, r);
            {
                char buf[512];
                char *txt = posted_detail(p, r, buf, sizeof(buf));
                ok = ok && store_audit(s, now_ms, "poster", "posted", p->posting_id, txt, errstr,
                                       errstr_size) == IS_OK;
                if (txt != buf)
                    free(txt);
            }
            break;
        case STORE_RETRY:
            st = stmt(s, SQ_RETRY);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, r->error);
            sqlite3_bind_int64(st, 3, r->next_at_ms);
            sqlite3_bind_int64(st, 4, now_ms);
            ok = sqlite3_step(st) == SQLITE_DONE &&
                 set_movements_state(s, p->posting_id, "retry") &&
                 note_tier(s, p, r->error ? r->error : "retryable failure", now_ms);
            break;
        case STORE_FAILED: {
            st = stmt(s, SQ_FAILED);
            bind_text(st, 1, p->posting_id);
            bind_text(st, 2, r->error);
            sqlite3_bind_int64(st, 3, now_ms);
            ok = sqlite3_step(st) == SQLITE_DONE &&
                 set_movements_state(s, p->posting_id, "failed") &&
                 note_tier(s, p, r->error ? r->error : "permanent failure", now_ms);
            json_t *d = json_pack("{s:s,s:s,s:s,s:I}", "site", p->site, "tier", p->tier, "error",
                                  r->error ? r->error : "", "movements", (json_int_t)p->n);
            char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
            ok = ok && store_audit(s, now_ms, "poster", "failed", p->posting_id, txt, errstr,
                                   errstr_size) == IS_OK;
            free(txt);
            json_decref(d);
            break;
        }
        case STORE_REQUEUE:
            /* Not attempted: undo the attempt counted by store_mark_posting. */
            if (p->attempts == 0) {
                st = stmt(s, SQ_REQUEUE_NEW_MOVEMENTS);
                bind_text(st, 1, p->posting_id);
                ok = sqlite3_step(st) == SQLITE_DONE;
                st = stmt(s, SQ_REQUEUE_NEW);
                bind_text(st, 1, p->posting_id);
                ok = ok && sqlite3_step(st) == SQLITE_DONE;
            } else {
                st = stmt(s, SQ_REQUEUE_RETRY);
                bind_text(st, 1, p->posting_id);
                sqlite3_bind_int64(st, 2, now_ms);
                ok = sqlite3_step(st) == SQLITE_DONE &&
                     set_movements_state(s, p->posting_id, "retry");
            }
            break;
        case STORE_CANCELLED:
            break;
        }
        if (!ok)
            goto db_err;
    }
    if (store_commit(s) != IS_OK)
        goto db_err;
    return IS_OK;
db_err:;
    is_err_t rc = is_db_error(s->db, "cannot record posting results", errstr, errstr_size);
    store_rollback(s);
    return rc;
}
