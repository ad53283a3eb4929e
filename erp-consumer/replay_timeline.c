/*
 * replay_timeline.c — the replay timeline: each replayed message with what
 * the consumer's store and the ERP made of it, in acceptance order, as JSON
 * lines or CSV (replay_int.h).
 *
 * Load: an investigation-sized range (a day of a plant: up to a few hundred
 * thousand messages) held in memory, one indexed store query per movement,
 * and one more per queued movement (the failed postings holding its lot).
 * The rare rows read more: a skipped one loads the audit trail's skips
 * once; an undecodable or unsequenced one scans dead_letters (no index by
 * Kafka coordinates; dead letters are few).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "duration.h"
#include "investigation.h"
#include "replay_int.h"

struct replay_skip {
    char *posting_id, *actor, *reason; /* owned */
    int64_t at;
};

/* Columns: 0 state, 1 posting_id, 2 erp_doc, 3 the ERP's last error or the movement's
 * reason or note, 4 and 5 the other movements of its posting, 6 lot_key, 7 the ERP's
 * last error alone, 8 the document of the movement's chunk when its posting was cut
 * into chunks (store migration 10). */
static const char *const lookup_sql =
    "SELECT m.state, m.posting_id, p.erp_doc, coalesce(p.last_error, m.reason, m.note),"
    " (SELECT count(*) FROM movements x WHERE x.posting_id = m.posting_id AND x.id != m.id),"
    " (SELECT group_concat(movement_id, ' ') FROM (SELECT x.movement_id FROM movements x"
    "   WHERE x.posting_id = m.posting_id AND x.id != m.id ORDER BY x.seq LIMIT 10)),"
    " m.lot_key, p.last_error,"
    " (SELECT c.erp_doc FROM chunk_movements cm JOIN posting_chunks c"
    "   ON c.posting_id = cm.posting_id AND c.chunk = cm.chunk"
    "   WHERE cm.mid = m.id AND cm.posting_id = m.posting_id)"
    " FROM movements m LEFT JOIN postings p ON p.posting_id = m.posting_id"
    " WHERE m.source_system = ?1 AND m.movement_id = ?2";

/* What holds a lot: the poster cuts nothing of a lot while a posting of it is open
 * (store_post.c SQ_LOT_HELD); a failed one stays open until `failed retry|skip`. The
 * STORE_OPEN term lets SQLite use the movements_lot_open partial index. */
// clang-format off
static const char *const held_sql =
    "SELECT posting_id, movement_id FROM movements"
    " WHERE lot_key = ?1 AND " STORE_OPEN("") " AND state = 'failed' ORDER BY seq";
// clang-format on

/* dead_letters has no index by coordinates: asked only for rows the movements table
 * lacks and the consume loop dead-letters (undecodable or unsequenced: rare). */
static const char *const dead_sql = "SELECT reason FROM dead_letters"
                                    " WHERE topic = ?1 AND part = ?2 AND off = ?3"
                                    " ORDER BY id DESC LIMIT 1";

is_err_t replay_timeline_prepare(replay_timeline_t *t, sqlite3 *db, char *errstr,
                                 size_t errstr_size) {
    is_err_t rc;
    t->db = db;
    rc = is_db_prepare(db, lookup_sql, &t->lookup, errstr, errstr_size);
    if (rc == IS_OK)
        rc = is_db_prepare(db, held_sql, &t->held, errstr, errstr_size);
    if (rc == IS_OK)
        rc = is_db_prepare(db, dead_sql, &t->dead, errstr, errstr_size);
    return rc;
}

static char *col_dup(sqlite3_stmt *st, int col) {
    const unsigned char *v = sqlite3_column_text(st, col);
    return v && *v ? strdup((const char *)v) : NULL;
}

/* Replace *detail by fmt's text (the old value may be an argument); 0 on out of memory. */
static int set_detail(char **detail, const char *fmt, ...) IS_PRINTF(2, 3);
static int set_detail(char **detail, const char *fmt, ...) {
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return 0;
    free(*detail);
    *detail = s;
    return 1;
}

/* "held behind failed posting P (A B C); failed posting Q (D)" prepended to *detail when
 * failed postings of its lot hold this queued movement. 0: store error or out of memory. */
static int note_held(replay_timeline_t *t, replay_row_t *r, const char *lot_key) {
    enum { MAX_IDS = 10 }; /* movement ids named per posting */
    sqlite3_stmt *st = t->held;
    char *buf = NULL, last[40] = "";
    size_t len = 0, ids = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc, ok;
    if (!f)
        return 0;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, lot_key, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *pid = (const char *)sqlite3_column_text(st, 0);
        const char *mid = (const char *)sqlite3_column_text(st, 1);
        pid = pid ? pid : "";
        if (!last[0] || strcmp(pid, last) != 0) {
            if (ids > MAX_IDS)
                fprintf(f, " and %zu more", ids - MAX_IDS);
            fprintf(f, "%s%s (", last[0] ? "); failed posting " : "held behind failed posting ",
                    pid);
            snprintf(last, sizeof(last), "%s", pid);
            ids = 0;
        }
        if (ids++ < MAX_IDS)
            fprintf(f, "%s%s", ids > 1 ? " " : "", mid ? mid : "");
    }
    sqlite3_reset(st);
    if (last[0]) {
        if (ids > MAX_IDS)
            fprintf(f, " and %zu more", ids - MAX_IDS);
        fputs("): its lot posts nothing until `erp-consumer failed retry|skip`", f);
    }
    if (fclose(f) != 0 || rc != SQLITE_DONE) {
        free(buf);
        return 0;
    }
    ok = !last[0]    ? 1
         : r->detail ? set_detail(&r->detail, "%s; %s", buf, r->detail)
                     : set_detail(&r->detail, "%s", buf);
    free(buf);
    return ok;
}

/* Every skip of the audit trail (action "skip", subject the posting id, detail
 * {"reason": ...}), once. 0: store error or out of memory. */
static int load_skips(replay_timeline_t *t) {
    sqlite3_stmt *st = NULL;
    int rc;
    t->skips_loaded = 1;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT subject, actor, at, detail FROM audit WHERE action = 'skip'"
                           " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        replay_skip_t *grown = realloc(t->skips, (t->n_skips + 1) * sizeof(*grown));
        const char *detail = (const char *)sqlite3_column_text(st, 3);
        json_t *d = detail ? json_loads(detail, 0, NULL) : NULL;
        const char *reason = json_string_value(json_object_get(d, "reason"));
        if (!grown) {
            json_decref(d);
            break;
        }
        t->skips = grown;
        replay_skip_t *k = &t->skips[t->n_skips];
        k->posting_id = col_dup(st, 0);
        k->actor = col_dup(st, 1);
        k->at = sqlite3_column_int64(st, 2);
        k->reason = strdup(reason ? reason : "");
        json_decref(d);
        t->n_skips++;
        if (!k->reason) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE;
}

/* "<the ERP's error>; skipped by WHO at WHEN: WHY" for a skipped movement. */
static int note_skip(replay_timeline_t *t, replay_row_t *r, const char *erp_error) {
    const replay_skip_t *k = NULL;
    char at[IS_RFC3339_LEN];
    if (!t->skips_loaded && !load_skips(t))
        return 0;
    for (size_t i = t->n_skips; i-- > 0 && !k;)
        if (t->skips[i].posting_id && strcmp(t->skips[i].posting_id, r->posting_id) == 0)
            k = &t->skips[i];
    if (!k)
        return 1;
    is_format_rfc3339(k->at, at);
    return set_detail(&r->detail, "%s%sskipped by %s at %s: %s", erp_error ? erp_error : "",
                      erp_error ? "; " : "", k->actor ? k->actor : "?", at,
                      k->reason[0] ? k->reason : "(no reason given)");
}

/* The dead letter recorded for these Kafka coordinates, if any: 1 and r->detail set. */
static int note_dead_letter(replay_timeline_t *t, replay_row_t *r) {
    sqlite3_stmt *st = t->dead;
    int rc;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, r->topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, r->partition);
    sqlite3_bind_int64(st, 3, r->offset);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r->dead_lettered = 1;
        free(r->detail);
        r->detail = col_dup(st, 0);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

static void lookup_store(replay_timeline_t *t, replay_row_t *r, const is_movement_t *m) {
    sqlite3_stmt *st = t->lookup;
    int rc, ok = 1;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, m->source_system, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, m->movement_id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v;
        r->in_store = 1;
        v = sqlite3_column_text(st, 0);
        snprintf(r->state, sizeof(r->state), "%s", v ? (const char *)v : "");
        v = sqlite3_column_text(st, 1);
        snprintf(r->posting_id, sizeof(r->posting_id), "%s", v ? (const char *)v : "");
        r->document = col_dup(st, 2);
        r->chunk_document = col_dup(st, 8);
        r->detail = col_dup(st, 3);
        r->netted = sqlite3_column_int64(st, 4);
        r->netted_ids = col_dup(st, 5);
        if (strcmp(r->state, "queued") == 0) {
            v = sqlite3_column_text(st, 6);
            ok = note_held(t, r, v ? (const char *)v : "");
        } else if (strcmp(r->state, "skipped") == 0 && r->posting_id[0]) {
            char *erp_error = col_dup(st, 7);
            ok = note_skip(t, r, erp_error);
            free(erp_error);
        }
    } else if (rc == SQLITE_DONE) {
        /* Dead-lettered without a movements row: it had no producer sequence. */
        if (!m->producer_id[0] || m->sequence == 0)
            ok = note_dead_letter(t, r);
    } else {
        ok = 0;
    }
    sqlite3_reset(st);
    if (!ok)
        t->failed_lookups++;
}
static void row_release(replay_row_t *r) {
    free(r->topic);
    free(r->payload);
    free(r->producer);
    free(r->document);
    free(r->chunk_document);
    free(r->detail);
    free(r->netted_ids);
}

int replay_timeline_collect(void *opaque, const replay_msg_t *msg) {
    replay_timeline_t *t = opaque;
    replay_row_t *r;
    t->read++;
    if (msg->kind == REPLAY_HEARTBEAT) {
        t->heartbeats++;
        return 0;
    }
    if (msg->kind == REPLAY_UNDECODABLE) {
        t->undecodable++;
        /* Shown only when no movement-level filter could have excluded it. */
        if (t->filter->material || t->filter->lot || t->filter->order_id || t->filter->type)
            return 0;
    } else {
        t->movements++;
        if (!replay_filter_match(t->filter, msg->m))
            return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        replay_row_t *rows = realloc(t->rows, cap * sizeof(*rows));
        if (!rows)
            goto nomem;
        t->rows = rows;
        t->cap = cap;
    }
    r = &t->rows[t->n];
    memset(r, 0, sizeof(*r));
    snprintf(r->site, sizeof(r->site), "%s", msg->site);
    snprintf(r->tier, sizeof(r->tier), "%s", msg->tier);
    r->partition = msg->partition;
    r->offset = msg->offset;
    r->ts = msg->timestamp_ms;
    r->accepted = msg->timestamp_ms;
    r->topic = strdup(msg->topic);
    r->payload = malloc(msg->payload_len ? msg->payload_len : 1);
    if (!r->topic || !r->payload) {
        row_release(r);
        goto nomem;
    }
    memcpy(r->payload, msg->payload, msg->payload_len);
    r->payload_len = msg->payload_len;
    if (msg->kind == REPLAY_UNDECODABLE && !note_dead_letter(t, r))
        t->failed_lookups++;
    if (msg->kind == REPLAY_MOVEMENT) {
        r->decodable = 1;
        if (msg->m->accepted_time)
            r->accepted = msg->m->accepted_time;
        r->seq = msg->m->sequence;
        r->producer = strdup(msg->m->producer_id);
        if (!r->producer) {
            row_release(r);
            goto nomem;
        }
        lookup_store(t, r, msg->m);
    }
    t->n++;
    return 0;
nomem:
    t->nomem = 1;
    return 1;
}

/* Acceptance order (the producer's time, then its gap-free sequence): the order the
 * ERP must see. Kafka coordinates break the remaining ties. */
int replay_row_cmp(const void *pa, const void *pb) {
    const replay_row_t *a = pa, *b = pb;
    int c;
    if (a->accepted != b->accepted)
        return a->accepted < b->accepted ? -1 : 1;
    if (a->producer && b->producer && strcmp(a->producer, b->producer) == 0 && a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    if ((c = strcmp(a->topic, b->topic)) != 0)
        return c;
    if (a->partition != b->partition)
        return a->partition < b->partition ? -1 : 1;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

is_movement_t *replay_row_decode(const replay_row_t *r) {
    return r->decodable ? invsync__v1__movement__unpack(NULL, r->payload_len, r->payload) : NULL;
}

/* What the ERP made of it, in one word. */
static const char *erp_status(const replay_row_t *r) {
    static const char *const map[][2] = {
        {"queued", "pending"},      {"posting", "posting"}, {"retry", "retry"},
        {"posted", "posted"},       {"failed", "failed"},   {"dead", "dead-lettered"},
        {"cancelled", "cancelled"}, {"skipped", "skipped"}, {"ignored", "ignored"}};
    if (!r->decodable)
        return "undecodable";
    if (!r->in_store)
        return r->dead_lettered ? "dead-lettered" : "not-in-store";
    if (strcmp(r->state, "posted") == 0 && strcmp(r->erp_check, "missing") == 0)
        return "posted-missing-in-erp";
    if (strcmp(r->state, "posted") == 0 && strcmp(r->erp_check, "partial") == 0)
        return "posted-partly-in-erp";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], r->state) == 0)
            return map[i][1];
    return r->state;
}

/* The timeline columns, in CSV order (JSON lines use the same names). */
static const char *const columns[] = {
    "timestamp", "topic", "partition", "offset", "movement_id", "source_system", "site", "tier",
    "type", "material", "lot", "location", "to_location", "quantity", "uom", "order_id",
    "event_time", "accepted_time", "producer_id", "sequence", "policy_version", "status",
    "posting_id", "erp_document", "netted_with", "netted_movements", "erp_check", "apply_action",
    "detail",
    /* added later: at the end, so CSV readers by
     * position keep working */
    "reverses_movement_id", "reversed_type"};
#define N_COLUMNS (sizeof(columns) / sizeof(columns[0]))

static json_t *row_json(const replay_row_t *r) {
    char ts[IS_RFC3339_LEN], ev[IS_RFC3339_LEN] = "", acc[IS_RFC3339_LEN] = "";
    char q[IS_DECIMAL_STRLEN] = "", seq[24] = "";
    const char *reverses = "", *reversed_type = "";
    is_movement_t *m = replay_row_decode(r);
    json_t *o;
    is_format_rfc3339(r->ts, ts);
    if (m) {
        if (m->event_time)
            is_format_rfc3339(m->event_time, ev);
        if (m->accepted_time)
            is_format_rfc3339(m->accepted_time, acc);
        if (m->quantity)
            is_decimal_format(is_movement_qty(m), q, sizeof(q));
        snprintf(seq, sizeof(seq), "%" PRIu64, m->sequence);
        if (m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL) {
            reverses = m->reverses_movement_id ? m->reverses_movement_id : "";
            reversed_type = m->reversed_type ? is_movement_type_name((int)m->reversed_type) : "";
        }
    }
#define S(x) (m && (x) ? (x) : "")
#define O(x) ((x) ? (x) : "")
    o = json_pack("{s:s,s:s,s:i,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,"
                  "s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s}",
                  "timestamp", ts, "topic", r->topic, "partition", (int)r->partition, "offset",
                  (json_int_t)r->offset, "movement_id", S(m->movement_id), "source_system",
                  S(m->source_system), "site", m ? S(m->site) : r->site, "tier",
                  m ? S(m->tier) : r->tier, "type", m ? is_movement_type_name((int)m->type) : "",
                  "material", S(m->material), "lot", S(m->lot), "location", S(m->location),
                  "to_location", S(m->to_location), "quantity", q, "uom", S(m->uom), "order_id",
                  S(m->order_id), "event_time", ev, "accepted_time", acc, "producer_id",
                  S(m->producer_id), "sequence", seq, "policy_version", S(m->policy_version),
                  "status", erp_status(r), "posting_id", r->posting_id, "erp_document",
                  r->chunk_document ? r->chunk_document : O(r->document), "netted_with",
                  (json_int_t)r->netted, "netted_movements", O(r->netted_ids), "erp_check",
                  r->erp_check, "apply_action", r->action, "detail", O(r->detail),
                  "reverses_movement_id", reverses, "reversed_type", reversed_type);
#undef S
#undef O
    if (m)
        invsync__v1__movement__free_unpacked(m, NULL);
    return o;
}

void replay_write_row(FILE *f, const replay_row_t *r, int csv) {
    json_t *o = row_json(r);
    if (!o)
        return;
    if (!csv) {
        char *s = json_dumps(o, JSON_COMPACT);
        if (s)
            fprintf(f, "%s\n", s);
        free(s);
    } else {
        for (size_t k = 0; k < N_COLUMNS; k++) {
            json_t *v = json_object_get(o, columns[k]);
            char num[32];
            if (json_is_integer(v))
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            investigation_csv_field(f, json_is_integer(v)     ? num
                                       : json_string_value(v) ? json_string_value(v)
                                                              : "");
            fputc(k + 1 < N_COLUMNS ? ',' : '\n', f);
        }
    }
    json_decref(o);
}

void replay_write_csv_header(FILE *f) {
    for (size_t k = 0; k < N_COLUMNS; k++)
        fprintf(f, "%s%c", columns[k], k + 1 < N_COLUMNS ? ',' : '\n');
}

void replay_timeline_release(replay_timeline_t *t) {
    for (size_t i = 0; i < t->n; i++)
        row_release(&t->rows[i]);
    free(t->rows);
    for (size_t i = 0; i < t->n_skips; i++) {
        free(t->skips[i].posting_id);
        free(t->skips[i].actor);
        free(t->skips[i].reason);
    }
    free(t->skips);
    sqlite3_finalize(t->lookup);
    sqlite3_finalize(t->held);
    sqlite3_finalize(t->dead);
    t->rows = NULL;
    t->skips = NULL;
    t->lookup = t->held = t->dead = NULL;
    t->n = t->cap = t->n_skips = 0;
}
