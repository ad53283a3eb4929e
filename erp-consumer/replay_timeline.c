/*
 * replay_timeline.c — the replay timeline: each replayed message with what
 * the consumer's store and the ERP made of it, in acceptance order, as JSON
 * lines or CSV (replay_int.h).
 *
 * Load: an investigation-sized range (a day of a plant: up to a few hundred
 * thousand messages) held in memory, one indexed store query per movement.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "investigation.h"
#include "replay_int.h"

static char *col_dup(sqlite3_stmt *st, int col) {
    const unsigned char *v = sqlite3_column_text(st, col);
    return v && *v ? strdup((const char *)v) : NULL;
}

static void lookup_store(replay_timeline_t *t, replay_row_t *r, const is_movement_t *m) {
    sqlite3_stmt *st = t->lookup;
    int rc;
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
        r->detail = col_dup(st, 3);
        r->netted = sqlite3_column_int64(st, 4);
        r->netted_ids = col_dup(st, 5);
    } else if (rc != SQLITE_DONE) {
        t->failed_lookups++;
    }
    sqlite3_reset(st);
}

static void row_release(replay_row_t *r) {
    free(r->topic);
    free(r->payload);
    free(r->producer);
    free(r->document);
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
        return "not-in-store";
    if (strcmp(r->state, "posted") == 0 && strcmp(r->erp_check, "missing") == 0)
        return "posted-missing-in-erp";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], r->state) == 0)
            return map[i][1];
    return r->state;
}

/* The timeline columns, in CSV order (JSON lines use the same names). */
static const char *const columns[] = {"timestamp",
                                      "topic",
                                      "partition",
                                      "offset",
                                      "movement_id",
                                      "source_system",
                                      "site",
                                      "tier",
                                      "type",
                                      "material",
                                      "lot",
                                      "location",
                                      "to_location",
                                      "quantity",
                                      "uom",
                                      "order_id",
                                      "event_time",
                                      "accepted_time",
                                      "producer_id",
                                      "sequence",
                                      "policy_version",
                                      "status",
                                      "posting_id",
                                      "erp_document",
                                      "netted_with",
                                      "netted_movements",
                                      "erp_check",
                                      "apply_action",
                                      "detail"};
#define N_COLUMNS (sizeof(columns) / sizeof(columns[0]))

static json_t *row_json(const replay_row_t *r) {
    char ts[IS_RFC3339_LEN], ev[IS_RFC3339_LEN] = "", acc[IS_RFC3339_LEN] = "";
    char q[IS_DECIMAL_STRLEN] = "", seq[24] = "";
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
    }
#define S(x) (m && (x) ? (x) : "")
#define O(x) ((x) ? (x) : "")
    o = json_pack(
        "{s:s,s:s,s:i,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,"
        "s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}",
        "timestamp", ts, "topic", r->topic, "partition", (int)r->partition, "offset",
        (json_int_t)r->offset, "movement_id", S(m->movement_id), "source_system",
        S(m->source_system), "site", m ? S(m->site) : r->site, "tier", m ? S(m->tier) : r->tier,
        "type", m ? is_movement_type_name((int)m->type) : "", "material", S(m->material), "lot",
        S(m->lot), "location", S(m->location), "to_location", S(m->to_location), "quantity", q,
        "uom", S(m->uom), "order_id", S(m->order_id), "event_time", ev, "accepted_time", acc,
        "producer_id", S(m->producer_id), "sequence", seq, "policy_version", S(m->policy_version),
        "status", erp_status(r), "posting_id", r->posting_id, "erp_document", O(r->document),
        "netted_with", (json_int_t)r->netted, "netted_movements", O(r->netted_ids), "erp_check",
        r->erp_check, "apply_action", r->action, "detail", O(r->detail));
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
}
