/*
 * replay_apply.c — `replay --check-erp` and `--apply`: ask the ERP about the
 * replayed movements' postings, and re-drive what is missing through the
 * consumer's own dedup store.
 *
 * What --apply does, exactly (one store transaction, audited):
 *   1. A replayed movement the store does not know (by source_system +
 *      movement_id) and that the consume loop would have accepted (valid,
 *      not the ERP's own, of a site this consumer owns: sites_regex) is
 *      inserted as the consume loop inserts it, state `queued`, with its
 *      Kafka coordinates and due now; its producer's watermark advances
 *      over it (store_advance_watermark: over movements and seq_fills, as
 *      in the consume loop). The Kafka offsets the consumer keeps are NOT
 *      touched.
 *   2. A replayed movement the store has as `posted` is checked in the ERP:
 *      its posting_id is looked up (erp_lookup_reference, the same call the
 *      poster uses after a crash). When the ERP does not know it (its
 *      documents were lost), the posting row is removed and every movement
 *      of that posting goes back to `queued`, due now, with a note. When the
 *      ERP has it, nothing changes.
 *   3. Everything else already known (pending, failed, dead, cancelled,
 *      skipped) is left alone and counted.
 *   4. A replayed movement the store does not know but accepted before the
 *      store's pruned horizon (store.retention, store_prune) is not
 *      queued: its row may have been pruned after it was posted. Counted
 *      (before_horizon), its action says so.
 *   Whatever its state, a replayed movement of an owned site whose id the
 *   store holds under another (producer, site, sequence) has its sequence
 *   recorded in seq_fills and its watermark advanced, as the consume loop
 *   does for such a duplicate (store_note_seq_fill).
 * The running poster then posts the queued movements at its next cycle,
 * with the same deterministic posting ids; the ERP's idempotency reference
 * guards the rest. A lookup the ERP cannot answer aborts before anything
 * is changed.
 *
 * Load: one indexed store statement per replayed movement applied, one per
 * movement already known (its stored sequence), and one ERP lookup per
 * distinct posting checked.
 */
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "duration.h"
#include "erp.h"
#include "log.h"
#include "replay_int.h"
#include "store.h"

static int cmp_posting(const void *pa, const void *pb) {
    return strcmp((*(replay_row_t *const *)pa)->posting_id,
                  (*(replay_row_t *const *)pb)->posting_id);
}

/*
 * Is posting `r` in the ERP? A posting cut into chunks (max_lines) was booked
 * under <posting_id>-1 … -<n>, never under its own id; its stored document
 * says so ("<first>+<n-1>", post_chunked). IS_OK when all of it is there,
 * IS_ERR_NOT_FOUND when none of it is; a posting only partly there counts as
 * there (*partial set): posting it again would book its chunks twice.
 */
static is_err_t lookup_posting(erp_t *erp, const replay_row_t *r, erp_result_t *res, int *partial) {
    size_t found = 0, chunks = erp_document_chunks(r->document);
    *partial = 0;
    is_err_t lk = erp_lookup_reference(erp, r->posting_id, res);
    if (lk != IS_ERR_NOT_FOUND || chunks == 1)
        return lk;
    for (size_t k = 1; k <= chunks; k++) {
        char ref[64];
        erp_chunk_reference(ref, sizeof(ref), r->posting_id, k);
        lk = erp_lookup_reference(erp, ref, res);
        if (lk == IS_OK)
            found++;
        else if (lk != IS_ERR_NOT_FOUND)
            return lk;
    }
    if (found == 0)
        return IS_ERR_NOT_FOUND;
    *partial = found < chunks;
    if (*partial)
        snprintf(res->message, sizeof(res->message), "%zu of %zu chunks of posting %s found", found,
                 chunks, r->posting_id);
    return IS_OK;
}

/* Ask the ERP once per distinct posting of the posted rows; mark every row's erp_check. */
is_err_t replay_check_erp(const consumer_config_t *cfg, replay_row_t *rows, size_t n,
                          replay_apply_counts_t *c, char *errstr, size_t errstr_size) {
    erp_t *erp = NULL;
    replay_row_t **posted = malloc((n ? n : 1) * sizeof(*posted));
    size_t m = 0;
    is_err_t rc = posted ? erp_open(&cfg->erp, &erp, errstr, errstr_size) : IS_ERR_NOMEM;
    for (size_t i = 0; rc == IS_OK && i < n; i++)
        if (rows[i].in_store && strcmp(rows[i].state, "posted") == 0)
            posted[m++] = &rows[i];
    if (rc == IS_OK)
        qsort(posted, m, sizeof(*posted), cmp_posting);
    for (size_t i = 0, j; rc == IS_OK && i < m; i = j) {
        erp_result_t res;
        int partial = 0;
        is_err_t lk = lookup_posting(erp, posted[i], &res, &partial);
        if (lk != IS_OK && lk != IS_ERR_NOT_FOUND) {
            is_errf(errstr, errstr_size, "the ERP (%s) cannot say whether posting %s exists: %s",
                    erp_name(erp), posted[i]->posting_id,
                    res.message[0] ? res.message : is_err_str(lk));
            rc = lk;
            break;
        }
        c->postings_checked++;
        c->postings_missing += lk == IS_ERR_NOT_FOUND;
        c->postings_partial += lk == IS_OK && partial;
        posted[i]->requeue = lk == IS_ERR_NOT_FOUND;
        for (j = i; j < m && cmp_posting(&posted[i], &posted[j]) == 0; j++) {
            snprintf(posted[j]->erp_check, sizeof(posted[j]->erp_check), "%s",
                     lk != IS_OK ? "missing"
                     : partial   ? "partial"
                                 : "found");
            c->posted_confirmed += lk == IS_OK && !partial;
            c->posted_partial += lk == IS_OK && partial;
            c->posted_missing += lk != IS_OK;
        }
    }
    if (rc == IS_ERR_NOMEM)
        is_errf(errstr, errstr_size, "out of memory");
    free(posted);
    erp_close(erp);
    return rc;
}

/* The consume loop's rules (consume.c classify): would it have queued this movement? */
static int acceptable(const consumer_config_t *cfg, const replay_row_t *r, const is_movement_t *m) {
    is_field_error_t ferr[1];
    is_validate_opts_t opts = {.max_scale = IS_DECIMAL_MAX_SCALE, .refused_sources = NULL};
    if (cfg->erp_sources.n > 0 && is_strlist_contains(&cfg->erp_sources, m->source_system))
        return 0;
    return is_movement_validate(m, &opts, ferr, 1) == 0 && strcmp(m->site, r->site) == 0 &&
           m->producer_id[0] && m->sequence > 0;
}

/* Run one statement of text/int64 arguments ("t"/"i" in types); *changes = rows changed. */
static int exec(sqlite3 *db, const char *sql, const char *types, const void *const *args,
                int *changes) {
    sqlite3_stmt *st = NULL;
    int ok;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(st, i + 1, *(const int64_t *)args[i]);
    }
    ok = sqlite3_step(st) == SQLITE_DONE;
    if (changes)
        *changes = sqlite3_changes(db);
    sqlite3_finalize(st);
    return ok;
}

/*
 * m's id is in the store: when under another (producer, site, sequence), m's
 * sequence closes its watermark (seq_fills), as in the consume loop.
 */
static int note_seq_fill(store_t *s, const is_movement_t *m, int64_t now) {
    int counted = 0;
    if (!m->producer_id[0] || m->sequence == 0)
        return 1;
    if (store_note_seq_fill(s, m, now, NULL, &counted) != IS_OK)
        return 0;
    return !counted || store_advance_watermark(s, m->producer_id, m->site) == IS_OK;
}

static int insert_movement(sqlite3 *db, const replay_row_t *r, const is_movement_t *m, int64_t now,
                           int *inserted) {
    static const char *const sql =
        "INSERT OR IGNORE INTO movements(source_system, movement_id, producer_id, site, seq,"
        " lot_key, tier, type, topic, part, off, received_at, accepted_at, due_at, state,"
        " policy_version, payload, note, reverses)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?12,'queued',?14,?15,"
        " 'queued by replay-apply', ?16)";
    char lot_key[IS_LOT_KEY_MAX];
    sqlite3_stmt *st = NULL;
    int ok;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (is_movement_lot_key(m, lot_key, sizeof(lot_key)) < 0)
        lot_key[0] = '\0';
    sqlite3_bind_text(st, 1, m->source_system, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, m->movement_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, m->producer_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, m->site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, (int64_t)m->sequence);
    sqlite3_bind_text(st, 6, lot_key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, m->tier, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 8, (int)m->type);
    sqlite3_bind_text(st, 9, r->topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 10, r->partition);
    sqlite3_bind_int64(st, 11, r->offset);
    sqlite3_bind_int64(st, 12, now);
    sqlite3_bind_int64(st, 13, m->accepted_time);
    sqlite3_bind_text(st, 14, m->policy_version, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 15, r->payload, (int)r->payload_len, SQLITE_STATIC);
    if (m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL && m->reverses_movement_id &&
        *m->reverses_movement_id) /* store migration 7: a movement is reversed once */
        sqlite3_bind_text(st, 16, m->reverses_movement_id, -1, SQLITE_TRANSIENT);
    ok = sqlite3_step(st) == SQLITE_DONE;
    *inserted = ok && sqlite3_changes(db) > 0;
    sqlite3_finalize(st);
    return ok;
}

/* Back to queued, due now: the ERP lost this posting's document. *n = movements moved. */
static int requeue_posting(sqlite3 *db, const char *posting_id, int64_t now, int *n) {
    const void *args[] = {posting_id, &now};
    return exec(db,
                "UPDATE movements SET state = 'queued', posting_id = NULL, due_at = ?2,"
                " note = 're-queued by replay-apply: the ERP does not have posting ' || ?1"
                " WHERE posting_id = ?1 AND state = 'posted'",
                "ti", args, n) &&
           exec(db, "DELETE FROM postings WHERE posting_id = ?1", "t", args, NULL) &&
           exec(db, "DELETE FROM posting_chunks WHERE posting_id = ?1", "t", args, NULL) &&
           exec(db, "DELETE FROM chunk_movements WHERE posting_id = ?1", "t", args, NULL);
}

static json_t *opt_str(const char *s) {
    return s ? json_string(s) : json_null();
}

/* Each row's part of --apply (see the top of this file). */
static int apply_row(store_t *s, const consumer_config_t *cfg, const regex_t *sites,
                     replay_row_t *r, int64_t now, int64_t horizon, replay_apply_counts_t *c) {
    sqlite3 *db = store_db(s);
    is_movement_t *m;
    int inserted = 0, ok = 1, moved = 0;
    if (!r->decodable) {
        /* The consume loop dead-letters it (if the site is this consumer's): counted, so
         * that the counters add up to the rows of the selection. */
        if (regexec(sites, r->site, 0, NULL, 0) != 0)
            c->not_owned++;
        else
            c->not_valid++;
        return 1;
    }
    if (r->in_store) {
        if (regexec(sites, r->site, 0, NULL, 0) == 0) {
            m = replay_row_decode(r);
            ok = m && note_seq_fill(s, m, now);
            if (m)
                invsync__v1__movement__free_unpacked(m, NULL);
            if (!ok)
                return 0;
        }
        if (strcmp(r->erp_check, "missing") != 0) {
            c->already_known++;
            return 1;
        }
        snprintf(r->action, sizeof(r->action), "re-queued");
        if (r->requeue && !requeue_posting(db, r->posting_id, now, &moved))
            return 0;
        c->requeued += (size_t)moved;
        return 1;
    }
    if (regexec(sites, r->site, 0, NULL, 0) != 0) {
        c->not_owned++;
        return 1;
    }
    m = replay_row_decode(r);
    if (!m)
        return 0;
    if (!acceptable(cfg, r, m)) {
        c->not_valid++;
    } else if (horizon > 0 && m->accepted_time > 0 && m->accepted_time < horizon) {
        c->before_horizon++;
        snprintf(r->action, sizeof(r->action), "before-horizon");
    } else {
        ok = insert_movement(db, r, m, now, &inserted);
        if (ok && !inserted) {
            c->already_known++; /* the consume loop got it meanwhile */
            ok = note_seq_fill(s, m, now);
        } else if (ok) {
            ok = store_advance_watermark(s, m->producer_id, m->site) == IS_OK;
            snprintf(r->action, sizeof(r->action), "queued");
            c->newly_queued++;
        }
    }
    invsync__v1__movement__free_unpacked(m, NULL);
    return ok;
}

is_err_t replay_apply(const consumer_config_t *cfg, store_t *s, replay_row_t *rows, size_t n,
                      const replay_apply_req_t *req, replay_apply_counts_t *c, char *errstr,
                      size_t errstr_size) {
    sqlite3 *db = store_db(s);
    int64_t now = is_clock_now_ms(NULL);
    size_t in_selection = 0;
    regex_t re;
    char *pattern = NULL, subject[128];
    is_err_t rc = IS_OK;

    if (asprintf(&pattern, "^(%s)$", cfg->sites_regex) < 0)
        return IS_ERR_NOMEM;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
        is_errf(errstr, errstr_size, "sites_regex '%s' is not a valid regular expression",
                cfg->sites_regex);
        free(pattern);
        return IS_ERR_CONFIG;
    }
    free(pattern);
    /* Policy versions first (their own transactions; audited the first time one is
     * seen), as the consume loop notes them: once per change of version. */
    char last_version[128] = "";
    for (size_t i = 0; i < n; i++) {
        is_movement_t *m = rows[i].in_store ? NULL : replay_row_decode(&rows[i]);
        if (m && m->policy_version[0] && strcmp(m->policy_version, last_version) != 0) {
            if (store_note_policy_version(s, m->policy_version, m->movement_id, now, errstr,
                                          errstr_size) != IS_OK)
                is_log(IS_LOG_WARN, "replay: cannot note the policy version", "error", errstr,
                       NULL);
            snprintf(last_version, sizeof(last_version), "%s", m->policy_version);
        }
        if (m)
            invsync__v1__movement__free_unpacked(m, NULL);
    }
    if (is_db_begin(db) != IS_OK) {
        regfree(&re);
        return is_db_error(db, "cannot begin the replay-apply transaction", errstr, errstr_size);
    }
    /* Read inside the transaction, as the consume loop does (store_apply_batch). */
    if (store_pruned_before(s, &c->pruned_before, errstr, errstr_size) != IS_OK)
        goto db_err;
    for (size_t i = 0; i < n; i++)
        if (!apply_row(s, cfg, &re, &rows[i], now, c->pruned_before, c))
            goto db_err;
    for (size_t i = 0; i < n; i++)
        in_selection += strcmp(rows[i].action, "re-queued") == 0;
    c->requeued_outside = c->requeued > in_selection ? c->requeued - in_selection : 0;
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "reason",
                  req->reason, "from", req->from, "to", req->to, "site", opt_str(req->filter->site),
                  "tier", opt_str(req->filter->tier), "material", opt_str(req->filter->material),
                  "lot", opt_str(req->filter->lot), "order", opt_str(req->filter->order_id), "type",
                  opt_str(req->filter->type ? is_movement_type_name(req->filter->type) : NULL),
                  "newly_queued", (json_int_t)c->newly_queued, "requeued_movements",
                  (json_int_t)c->requeued, "requeued_postings", (json_int_t)c->postings_missing,
                  "already_known", (json_int_t)c->already_known, "not_valid",
                  (json_int_t)c->not_valid, "not_owned", (json_int_t)c->not_owned);
    if (d && c->before_horizon) {
        char ts[IS_RFC3339_LEN];
        is_format_rfc3339(c->pruned_before, ts);
        json_object_set_new(d, "before_horizon", json_integer((json_int_t)c->before_horizon));
        json_object_set_new(d, "pruned_before", json_string(ts));
    }
    if (d && req->earliest_ms > 0) {
        /* The range reached into data Kafka no longer keeps: what was applied starts here. */
        char ts[IS_RFC3339_LEN];
        is_format_rfc3339(req->earliest_ms, ts);
        json_object_set_new(d, "earliest_available", json_string(ts));
    }
    char *txt = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(d);
    snprintf(subject, sizeof(subject), "%s..%s", req->from, req->to);
    rc = store_audit(s, now, req->by, "replay-apply", subject, txt, errstr, errstr_size);
    free(txt);
    if (rc != IS_OK)
        goto rollback;
    if (is_db_commit(db) != IS_OK)
        goto db_err;
    regfree(&re);
    return IS_OK;
db_err:
    rc = is_db_error(db, "replay-apply failed, nothing was changed", errstr, errstr_size);
rollback:
    is_db_rollback(db);
    regfree(&re);
    memset(c, 0, sizeof(*c));
    return rc;
}
