/*
 * admin.c — operator actions and traceability (admin.h). Load: human scale.
 */
#include <string.h>

#include "admin.h"
#include "db.h"

int admin_action_parse(const char *name) {
    static const char *const names[] = {"pause", "resume", "flush", "retry", "skip"};
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

static int missing(const char *s) {
    return !s || !*s;
}

json_t *admin_perform(store_t *s, const admin_request_t *req, int64_t now_ms, int *status,
                      char *errstr, size_t errstr_size) {
    is_err_t rc;
    int64_t n = 0;
    *status = 400;
    if (missing(req->by) || missing(req->reason)) {
        is_errf(errstr, errstr_size,
                "'by' (who) and 'reason' (why) are required for every admin action");
        return NULL;
    }
    switch (req->action) {
    case ADMIN_PAUSE:
    case ADMIN_RESUME:
    case ADMIN_FLUSH: {
        const char *site = missing(req->site) ? NULL : req->site;
        const char *tier = missing(req->tier) ? "*" : req->tier;
        if (!site) {
            is_errf(errstr, errstr_size, "'site' is required (use \"*\" for all sites)");
            return NULL;
        }
        if (req->action == ADMIN_PAUSE)
            rc = store_pause(s, site, tier, req->by, req->reason, now_ms, errstr, errstr_size);
        else if (req->action == ADMIN_RESUME)
            rc = store_resume(s, site, tier, req->by, req->reason, now_ms, errstr, errstr_size);
        else
            rc = store_flush(s, site, tier, req->by, req->reason, now_ms, &n, errstr, errstr_size);
        if (rc == IS_ERR_NOT_FOUND) {
            *status = 404;
            is_errf(errstr, errstr_size, "site '%s' tier '%s' is not paused", site, tier);
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
            *status = 404;
            is_errf(errstr, errstr_size, "posting '%s' is not a failed posting", req->posting_id);
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

/* Run a query and return its rows as an array of objects (column names as keys). */
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
                             " (SELECT group_concat(movement_id, ',') FROM movements m"
                             "  WHERE m.posting_id = p.posting_id) AS movements"
                             " FROM postings p WHERE p.state = 'failed' ORDER BY p.updated_at",
                             NULL, errstr, errstr_size);
    return rows ? json_pack("{s:o}", "failed", rows) : NULL;
}

json_t *admin_trace_movement(store_t *s, const char *movement_id, char *errstr,
                             size_t errstr_size) {
    json_t *rows = rows_json(
        s,
        "SELECT m.movement_id, m.source_system, m.site, m.lot_key AS lot, m.tier, m.state,"
        " m.seq AS sequence, m.producer_id, m.policy_version, m.topic, m.part AS partition,"
        " m.off AS offset, m.reason, m.note, m.posting_id, p.erp_doc AS document,"
        " p.state AS posting_state, p.last_error AS posting_error,"
        " (SELECT count(*) FROM movements x WHERE x.posting_id = m.posting_id)"
        "   AS netted_with_count"
        " FROM movements m LEFT JOIN postings p ON p.posting_id = m.posting_id"
        " WHERE m.movement_id = ?1",
        movement_id, errstr, errstr_size);
    if (!rows)
        return NULL;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        is_errf(errstr, errstr_size, "movement '%s' is not in this consumer's store", movement_id);
        return NULL;
    }
    return rows;
}

json_t *admin_trace_document(store_t *s, const char *document, char *errstr, size_t errstr_size) {
    json_t *rows = rows_json(s,
                             "SELECT p.posting_id, p.site, p.tier, p.lines, p.updated_at,"
                             " (SELECT group_concat(movement_id, ',') FROM"
                             "  (SELECT movement_id FROM movements m"
                             "   WHERE m.posting_id = p.posting_id ORDER BY m.seq)) AS movements"
                             " FROM postings p WHERE p.erp_doc = ?1 OR p.erp_doc LIKE ?1 || '+%'",
                             document, errstr, errstr_size);
    if (!rows)
        return NULL;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        is_errf(errstr, errstr_size, "no posting of this consumer made ERP document '%s'",
                document);
        return NULL;
    }
    return json_pack("{s:s,s:o}", "document", document, "postings", rows);
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
