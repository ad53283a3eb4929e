/*
 * admin.c — operator actions and traceability (admin.h). Load: human scale.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "db.h"
#include "duration.h"

int admin_action_parse(const char *name) {
    static const char *const names[] = {"pause", "resume", "flush", "retry", "skip"};
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

/* Absent, empty or only white space. */
static int missing(const char *s) {
    if (!s)
        return 1;
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

int admin_text_invalid(const char *what, const char *value, char *errstr, size_t errstr_size) {
    for (size_t i = 0; value && value[i]; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f) {
            is_errf(errstr, errstr_size,
                    "%s must not contain control characters (byte 0x%02x at position %zu): it "
                    "goes into the audit trail",
                    what, c, i + 1);
            return 1;
        }
    }
    return 0;
}

/* Append name to the ", "-separated list in buf, keeping room for a final ", ..." when the
 * names do not all fit. */
static void list_add(char *buf, size_t size, const char *name) {
    size_t len = strlen(buf), need = (len ? 2 : 0) + strlen(name);
    if (len >= 3 && strcmp(buf + len - 3, "...") == 0)
        return;
    if (len + need + 5 < size)
        snprintf(buf + len, size - len, "%s%s", len ? ", " : "", name);
    else
        snprintf(buf + len, size - len, "%s...", len ? ", " : "");
}

/*
 * Is name one of the values the query returns (one text column)? *known gets
 * the list of them for the error message. -1 when the query fails (errstr set).
 */
static int name_in(store_t *s, const char *sql, const char *name, char *known, size_t known_size,
                   char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    known[0] = '\0';
    if (is_db_prepare(store_db(s), sql, &st, errstr, errstr_size) != IS_OK)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (!v)
            continue;
        found |= strcmp(v, name) == 0;
        list_add(known, known_size, v);
    }
    sqlite3_finalize(st);
    return found;
}

/* 1 when exactly this (site, tier) row is in pauses (no "*" matching). */
static int pause_row_exists(store_t *s, const char *site, const char *tier) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    char errstr[256];
    if (is_db_prepare(store_db(s), "SELECT 1 FROM pauses WHERE site = ?1 AND tier = ?2", &st,
                      errstr, sizeof(errstr)) != IS_OK)
        return 0;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, tier, -1, SQLITE_TRANSIENT);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* "by <actor> at <time>: <reason>" of exactly this (site, tier) pause row into buf; 0 when
 * there is none. */
static int pause_row_describe(store_t *s, const char *site, const char *tier, char *buf,
                              size_t size) {
    sqlite3_stmt *st = NULL;
    char errstr[256], at[IS_RFC3339_LEN];
    int found = 0;
    if (is_db_prepare(store_db(s),
                      "SELECT actor, reason, at FROM pauses WHERE site = ?1 AND tier = ?2", &st,
                      errstr, sizeof(errstr)) != IS_OK)
        return 0;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, tier, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        found = 1;
        is_format_rfc3339(sqlite3_column_int64(st, 2), at);
        snprintf(buf, size, "by %s at %s: %s", (const char *)sqlite3_column_text(st, 0), at,
                 (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    return found;
}

/* The posting's state into buf, or "" when there is no such posting (or the
 * query fails: the caller then says the id is unknown, which is the likelier). */
static void posting_state(store_t *s, const char *posting_id, char *buf, size_t size) {
    sqlite3_stmt *st = NULL;
    char errstr[256];
    buf[0] = '\0';
    if (is_db_prepare(store_db(s), "SELECT state FROM postings WHERE posting_id = ?1", &st, errstr,
                      sizeof(errstr)) != IS_OK)
        return;
    sqlite3_bind_text(st, 1, posting_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/*
 * Check that site and tier name what exists (or "*"). On failure *status is
 * 400 (an unknown name, errstr lists the valid ones) or 500 and 0 is returned.
 */
static int names_valid(store_t *s, const is_policy_t *policy, const char *site, const char *tier,
                       int *status, char *errstr, size_t errstr_size) {
    char known[384];
    int in;
    if (strcmp(site, "*") != 0) {
        in = name_in(s, "SELECT site FROM sites ORDER BY site", site, known, sizeof(known), errstr,
                     errstr_size);
        if (in < 0) {
            *status = 500;
            return 0;
        }
        /* A site the policy names may be paused before its first movement
         * (adding a site: hold it until the ERP's master data is ready). */
        if (!in && !is_policy_names_site(policy, site)) {
            const char *named[16];
            char policy_sites[384] = "";
            size_t n = is_policy_site_names(policy, named, 16);
            for (size_t i = 0; i < n && i < 16; i++)
                list_add(policy_sites, sizeof(policy_sites), named[i]);
            if (n > 16)
                list_add(policy_sites, sizeof(policy_sites), "...");
            /* Both sources of valid names, so a new site's operator sees why
             * it is refused (neither heard from nor in the policy). */
            is_errf(errstr, errstr_size, "unknown site '%s': %s%s; %s%s (or \"*\" for all sites)",
                    site,
                    known[0] ? "the sites heard from are "
                             : "no site has sent a heartbeat or "
                               "movement yet",
                    known, n ? "the policy names " : "the policy names no site", policy_sites);
            return 0;
        }
    }
    if (strcmp(tier, "*") == 0)
        return 1;
    if (policy) {
        known[0] = '\0';
        in = 0;
        for (size_t i = 0; i < is_policy_tier_count(policy); i++) {
            in |= strcmp(is_policy_tier(policy, i)->name, tier) == 0;
            list_add(known, sizeof(known), is_policy_tier(policy, i)->name);
        }
    } else {
        /* No policy at hand (the CLI): the tiers this store has posted to, or holds
         * movements for: a small table and two partial indexes, never the history. */
        in = name_in(s,
                     "SELECT tier FROM tier_activity UNION"
                     " SELECT tier FROM movements WHERE " STORE_QUEUED " UNION"
                     " SELECT tier FROM movements WHERE " STORE_OPEN("") " ORDER BY 1",
                     tier, known, sizeof(known), errstr, errstr_size);
        if (in < 0) {
            *status = 500;
            return 0;
        }
    }
    if (!in) {
        is_errf(errstr, errstr_size, "unknown tier '%s': the %s are %s (or \"*\" for all tiers)",
                tier, policy ? "policy's tiers" : "tiers this store has seen",
                known[0] ? known : "none yet");
        return 0;
    }
    return 1;
}

json_t *admin_perform(store_t *s, const admin_request_t *req, int64_t now_ms, int *status,
                      char *errstr, size_t errstr_size) {
    is_err_t rc;
    int64_t n = 0;
    *status = 400;
    if (missing(req->by) || missing(req->reason)) {
        is_errf(errstr, errstr_size,
                "'by' (who) and 'reason' (why) are required for every admin action"
                " and must not be blank");
        return NULL;
    }
    /* The CLI checks first with its option names (--by); this covers the HTTP API. */
    if (admin_text_invalid("'by'", req->by, errstr, errstr_size) ||
        admin_text_invalid("'reason'", req->reason, errstr, errstr_size) ||
        admin_text_invalid("'site'", req->site, errstr, errstr_size) ||
        admin_text_invalid("'tier'", req->tier, errstr, errstr_size) ||
        admin_text_invalid("'posting_id'", req->posting_id, errstr, errstr_size))
        return NULL;
    switch (req->action) {
    case ADMIN_PAUSE:
    case ADMIN_RESUME:
    case ADMIN_FLUSH: {
        const char *site = missing(req->site) ? NULL : req->site;
        /* No tier means all tiers (documented in --help); a blank one is an unknown tier,
         * "" included: an unset shell variable (--tier "$TIER") must not pause every tier. */
        const char *tier = !req->tier ? "*" : req->tier;
        if (!site) {
            is_errf(errstr, errstr_size, "'site' is required (use \"*\" for all sites)");
            return NULL;
        }
        /* Lifting an existing pause is always possible, whatever its names. */
        if (!(req->action == ADMIN_RESUME && pause_row_exists(s, site, tier)) &&
            !names_valid(s, req->policy, site, tier, status, errstr, errstr_size))
            return NULL;
        /* Pausing again would overwrite who paused, why and since when: the pause
         * stays as it is, and the answer says whose it is (409, CLI exit 1). */
        char held[320];
        if (req->action == ADMIN_PAUSE && pause_row_describe(s, site, tier, held, sizeof(held))) {
            *status = 409;
            is_errf(errstr, errstr_size,
                    "site '%s' tier '%s' is already paused (%s); nothing changed (resume it "
                    "first to pause it for another reason)",
                    site, tier, held);
            return NULL;
        }
        if (req->action == ADMIN_PAUSE)
            rc = store_pause(s, site, tier, req->by, req->reason, now_ms, errstr, errstr_size);
        else if (req->action == ADMIN_RESUME)
            rc = store_resume(s, site, tier, req->by, req->reason, now_ms, errstr, errstr_size);
        else
            rc = store_flush(s, site, tier, req->by, req->reason, now_ms, &n, errstr, errstr_size);
        if (rc == IS_ERR_NOT_FOUND) {
            /* Resume lifts exactly one pause row: say which rows there are. */
            char paused[384], err2[128];
            *status = 404;
            if (name_in(s, "SELECT site || '/' || tier FROM pauses ORDER BY 1", "", paused,
                        sizeof(paused), err2, sizeof(err2)) < 0)
                paused[0] = '\0';
            is_errf(errstr, errstr_size, "site '%s' tier '%s' is not paused; %s%s", site, tier,
                    paused[0] ? "the pauses are (site/tier) " : "nothing is paused", paused);
            return NULL;
        }
        if (rc != IS_OK) {
            *status = 500;
            return NULL;
        }
        *status = 200;
        return json_pack("{s:b,s:s,s:s,s:I}", "ok", 1, "site", site, "tier", tier, "movements",
                         (json_int_t)n);
    }
    case ADMIN_RETRY:
    case ADMIN_SKIP:
        if (missing(req->posting_id)) {
            is_errf(errstr, errstr_size, "'posting_id' is required");
            return NULL;
        }
        rc = req->action == ADMIN_RETRY
                 ? store_failed_retry(s, req->posting_id, req->by, req->reason, now_ms, errstr,
                                      errstr_size)
                 : store_failed_skip(s, req->posting_id, req->by, req->reason, now_ms, errstr,
                                     errstr_size);
        if (rc == IS_ERR_NOT_FOUND) {
            /* Not found, as for trace of an unknown movement: 404, exit 1. Say
             * whether the id is unknown or the posting is past failing, and
             * where the ids that can be retried or skipped are listed. */
            char state[32] = "";
            *status = 404;
            posting_state(s, req->posting_id, state, sizeof(state));
            if (state[0])
                is_errf(errstr, errstr_size,
                        "posting '%s' is %s, not failed: only a failed posting can be %s; "
                        "`erp-consumer failed list` (GET /admin/failed) lists them",
                        req->posting_id, state, req->action == ADMIN_RETRY ? "retried" : "skipped");
            else
                is_errf(errstr, errstr_size,
                        "no posting '%s' in this consumer's store; `erp-consumer failed list` "
                        "(GET /admin/failed) lists the failed postings",
                        req->posting_id);
            return NULL;
        }
        if (rc != IS_OK) {
            *status = 500;
            return NULL;
        }
        *status = 200;
        return json_pack("{s:b,s:s,s:s}", "ok", 1, "posting_id", req->posting_id, "action",
                         req->action == ADMIN_RETRY ? "retry" : "skip");
    }
    is_errf(errstr, errstr_size, "unknown action");
    return NULL;
}

/* Run a query and return its rows as an array of objects (column names as keys).
 * A column named "movements" holds a JSON array made by json_group_array: a
 * movement id may contain a comma, so a joined string could not be split back. */
static json_t *rows_json(store_t *s, const char *sql, const char *arg, char *errstr,
                         size_t errstr_size) {
    sqlite3_stmt *st = NULL;
    json_t *rows;
    if (is_db_prepare(store_db(s), sql, &st, errstr, errstr_size) != IS_OK)
        return NULL;
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    rows = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *row = json_object();
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *name = sqlite3_column_name(st, c);
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                json_object_set_new(row, name, json_integer(sqlite3_column_int64(st, c)));
                break;
            case SQLITE_NULL:
                json_object_set_new(row, name, json_null());
                break;
            default:
                if (strcmp(name, "movements") == 0) {
                    json_t *list =
                        json_loads((const char *)sqlite3_column_text(st, c), JSON_DECODE_ANY, NULL);
                    json_object_set_new(row, name, json_is_array(list) ? list : json_array());
                    if (list && !json_is_array(list))
                        json_decref(list);
                    break;
                }
                json_object_set_new(row, name,
                                    json_string((const char *)sqlite3_column_text(st, c)));
            }
        }
        json_array_append_new(rows, row);
    }
    sqlite3_finalize(st);
    return rows;
}

json_t *admin_failed_list(store_t *s, char *errstr, size_t errstr_size) {
    json_t *rows = rows_json(s,
                             "SELECT p.posting_id, p.site, p.tier, p.lot_key AS lot, p.attempts,"
                             " p.last_error AS error, p.updated_at,"
                             " strftime('%Y-%m-%dT%H:%M:%fZ', p.updated_at / 1000.0, 'unixepoch')"
                             "   AS updated_time,"
                             " (SELECT json_group_array(movement_id) FROM"
                             "  (SELECT movement_id FROM movements m"
                             "   WHERE m.posting_id = p.posting_id ORDER BY m.seq)) AS movements"
                             " FROM postings p WHERE p.state = 'failed' ORDER BY p.updated_at",
                             NULL, errstr, errstr_size);
    return rows ? json_pack("{s:o}", "failed", rows) : NULL;
}

/* "; movements finished before <horizon> have been pruned (store.retention)"
 * when store.retention ever deleted any, "" otherwise: what a lookup that
 * finds nothing cannot rule out. */
static void pruned_note(store_t *s, char *buf, size_t size) {
    char err[128], ts[IS_RFC3339_LEN];
    int64_t horizon = 0;
    buf[0] = '\0';
    if (store_pruned_before(s, &horizon, err, sizeof(err)) != IS_OK || horizon <= 0)
        return;
    is_format_rfc3339(horizon, ts);
    snprintf(buf, size, "; movements finished before %s have been pruned (store.retention)", ts);
}

/*
 * A posting cut into chunks (max_lines) is several ERP documents: its erp_doc
 * reads "<first>+<n-1>", and each chunk's own document and movements are in
 * posting_chunks / chunk_movements (store migration 10). Trace answers the
 * chunk's document; `chunk` is its number, null for a posting sent whole. A
 * movement of a chunked posting in no chunk (its line netted to zero) keeps
 * the posting's document.
 */
json_t *admin_trace_movement(store_t *s, const char *movement_id, char *errstr,
                             size_t errstr_size) {
    json_t *rows = rows_json(
        s,
        "SELECT m.movement_id, m.source_system, m.site, m.lot_key AS lot, m.tier, m.state,"
        " m.seq AS sequence, m.producer_id, m.policy_version, m.topic, m.part AS partition,"
        " m.off AS offset, m.reason, m.note, m.posting_id,"
        " coalesce(c.erp_doc, p.erp_doc) AS document, c.chunk,"
        " p.state AS posting_state, p.last_error AS posting_error,"
        " (SELECT count(*) FROM movements x WHERE x.posting_id = m.posting_id AND x.id != m.id)"
        "   AS netted_with_count"
        " FROM movements m LEFT JOIN postings p ON p.posting_id = m.posting_id"
        " LEFT JOIN chunk_movements cm ON cm.mid = m.id AND cm.posting_id = m.posting_id"
        " LEFT JOIN posting_chunks c ON c.posting_id = cm.posting_id AND c.chunk = cm.chunk"
        " WHERE m.movement_id = ?1",
        movement_id, errstr, errstr_size);
    if (!rows)
        return NULL;
    if (json_array_size(rows) == 0) {
        char before[IS_RFC3339_LEN + 160] = "";
        json_decref(rows);
        pruned_note(s, before, sizeof(before));
        is_errf(errstr, errstr_size, "movement '%s' is not in this consumer's store%s", movement_id,
                before);
        return NULL;
    }
    return rows;
}

/* The document of a posting sent whole, the document of one chunk, or (asked
 * for by it) the "<first>+<n-1>" of a chunked posting: all its movements. A
 * chunked posting recorded before migration 10 has no chunk rows: its first
 * chunk's document still finds all of it, as it did. */
json_t *admin_trace_document(store_t *s, const char *document, char *errstr, size_t errstr_size) {
    json_t *rows = rows_json(
        s,
        "SELECT p.posting_id, p.site, p.tier, NULL AS chunk, p.lines, p.updated_at,"
        " strftime('%Y-%m-%dT%H:%M:%fZ', p.updated_at / 1000.0, 'unixepoch') AS updated_time,"
        " (SELECT json_group_array(movement_id) FROM"
        "  (SELECT movement_id FROM movements m"
        "   WHERE m.posting_id = p.posting_id ORDER BY m.seq)) AS movements"
        " FROM postings p WHERE p.erp_doc = ?1"
        "  OR (p.erp_doc > ?1 || '+' AND p.erp_doc < ?1 || ','" /* "<?1>+..." by the index */
        "   AND NOT EXISTS (SELECT 1 FROM posting_chunks x WHERE x.posting_id = p.posting_id))"
        " UNION ALL"
        " SELECT p.posting_id, p.site, p.tier, c.chunk, c.lines, p.updated_at,"
        " strftime('%Y-%m-%dT%H:%M:%fZ', p.updated_at / 1000.0, 'unixepoch') AS updated_time,"
        " (SELECT json_group_array(movement_id) FROM"
        "  (SELECT m.movement_id FROM chunk_movements cm JOIN movements m ON m.id = cm.mid"
        "   WHERE cm.posting_id = c.posting_id AND cm.chunk = c.chunk ORDER BY m.seq))"
        "   AS movements"
        " FROM posting_chunks c JOIN postings p ON p.posting_id = c.posting_id"
        " WHERE c.erp_doc = ?1",
        document, errstr, errstr_size);
    if (!rows)
        return NULL;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        is_errf(errstr, errstr_size, "no posting of this consumer made ERP document '%s'",
                document);
        return NULL;
    }
    /* The posting stays; its movement rows may be gone (store.retention). */
    size_t i;
    json_t *row;
    int pruned = 0;
    json_array_foreach(rows, i, row) pruned |=
        json_array_size(json_object_get(row, "movements")) == 0;
    json_t *doc = json_pack("{s:s,s:o}", "document", document, "postings", rows);
    char note[IS_RFC3339_LEN + 160];
    if (doc && pruned) {
        pruned_note(s, note, sizeof(note));
        if (note[0])
            json_object_set_new(doc, "note", json_string(note + 2));
    }
    return doc;
}

json_t *admin_audit_verify(store_t *s) {
    char errstr[512] = "";
    int64_t rows = 0, bad = 0;
    is_err_t rc = store_audit_verify(s, &rows, &bad, errstr, sizeof(errstr));
    if (rc == IS_OK)
        return json_pack("{s:b,s:I}", "ok", 1, "rows", (json_int_t)rows);
    return json_pack("{s:b,s:I,s:I,s:s}", "ok", 0, "rows_verified", (json_int_t)rows,
                     "first_bad_row", (json_int_t)bad, "error", errstr);
}
