/*
 * erp_sqlite.c — the embedded ERP ledger ("sqlite" adapter, and the ledger
 * of the ERP simulator).
 *
 * It behaves like a small ERP inventory module: a posting becomes a material
 * document with one line per posting line; each line's stock effects (the
 * single definition in movement.h, applied with the LINE's quantity, which
 * for a netted line differs from its representative movement's) move
 * on-hand, which is refused from going below zero unless allow_negative.
 * The posting_id is a UNIQUE column: posting it again returns the document
 * already made, which is what makes the consumer's retries exactly-once.
 *
 * Load: one posting is a handful of small indexed writes in one IMMEDIATE
 * transaction with synchronous=FULL, so throughput is bounded by fsyncs
 * (hundreds of postings per second on an SSD), ample for a plant. The
 * applied effects are stored per document (doc_effects) so that a posting
 * can be deleted exactly (erp_sqlite_delete_posting) without re-deriving
 * them from the movement rules.
 *
 * Classification: anything wrong with the posting itself is
 * IS_ERR_PERMANENT; any SQLite failure (busy, locked, I/O, full) is the
 * ERP's problem, not the posting's, and is IS_ERR_RETRYABLE — the same call
 * may succeed later, like an HTTP 5xx.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "db.h"
#include "duration.h"
#include "erp_sqlite.h"

#define FIRST_DOC_NO 4900000000LL /* the counter's start; first document is 4900000001 */

static const char *const migrations[] = {
    /* 1: the ledger */
    "CREATE TABLE ledger_counter(\n"
    "  name TEXT PRIMARY KEY,\n"
    "  value INTEGER NOT NULL);\n"
    "INSERT INTO ledger_counter(name, value) VALUES('material_document', 4900000000);\n"
    "CREATE TABLE documents(\n"
    "  doc_no TEXT PRIMARY KEY,              -- '4900000001'\n"
    "  posting_id TEXT NOT NULL UNIQUE,      -- the idempotency reference\n"
    "  site TEXT NOT NULL,\n"
    "  tier TEXT NOT NULL,\n"
    "  policy_version TEXT NOT NULL,\n"
    "  posting_time INTEGER NOT NULL,        -- ms UTC, as sent by the poster\n"
    "  posted_at INTEGER NOT NULL,           -- ms UTC, when the ledger committed it\n"
    "  line_count INTEGER NOT NULL);\n"
    "CREATE TABLE doc_lines(\n"
    "  doc_no TEXT NOT NULL REFERENCES documents(doc_no),\n"
    "  line_no INTEGER NOT NULL,             -- 1-based\n"
    "  type TEXT NOT NULL,\n"
    "  material TEXT NOT NULL,\n"
    "  lot TEXT NOT NULL,\n"
    "  serial TEXT,\n"
    "  location TEXT NOT NULL,\n"
    "  to_location TEXT,\n"
    "  from_status TEXT,\n"
    "  to_status TEXT,\n"
    "  uom TEXT NOT NULL,\n"
    "  quantity TEXT NOT NULL,               -- exact decimal as posted\n"
    "  order_id TEXT,\n"
    "  operation TEXT,\n"
    "  reason_code TEXT,\n"
    "  reverses_movement_id TEXT,\n"
    "  reversed_type TEXT,\n"
    "  movement_ids TEXT NOT NULL,           -- JSON array of source movement ids\n"
    "  PRIMARY KEY(doc_no, line_no));\n"
    "CREATE TABLE doc_movements(\n"
    "  movement_id TEXT NOT NULL,\n"
    "  doc_no TEXT NOT NULL REFERENCES documents(doc_no),\n"
    "  line_no INTEGER NOT NULL,\n"
    "  PRIMARY KEY(movement_id, doc_no, line_no));\n"
    "CREATE INDEX doc_movements_by_doc ON doc_movements(doc_no);\n"
    "CREATE TABLE doc_effects(\n"
    "  doc_no TEXT NOT NULL REFERENCES documents(doc_no),\n"
    "  seq INTEGER NOT NULL,                 -- order applied\n"
    "  line_no INTEGER NOT NULL,\n"
    "  site TEXT NOT NULL,\n"
    "  material TEXT NOT NULL,\n"
    "  lot TEXT NOT NULL,\n"
    "  location TEXT NOT NULL,\n"
    "  status TEXT NOT NULL,\n"
    "  uom TEXT NOT NULL,\n"
    "  delta_units INTEGER NOT NULL,         -- signed, scale 6\n"
    "  PRIMARY KEY(doc_no, seq));\n"
    "CREATE TABLE on_hand(\n"
    "  site TEXT NOT NULL,\n"
    "  material TEXT NOT NULL,\n"
    "  lot TEXT NOT NULL,\n"
    "  location TEXT NOT NULL,\n"
    "  status TEXT NOT NULL,                 -- 'UNRESTRICTED' | 'QUALITY' | 'BLOCKED'\n"
    "  uom TEXT NOT NULL,\n"
    "  qty_units INTEGER NOT NULL,           -- quantity x 10^6; rows at zero are deleted\n"
    "  PRIMARY KEY(site, material, lot, location, status, uom)) WITHOUT ROWID;\n",
};

enum {
    ST_DOC_BY_POSTING,
    ST_GET_DOC_NO,
    ST_SET_DOC_NO,
    ST_INS_DOC,
    ST_INS_LINE,
    ST_INS_MOVEMENT,
    ST_INS_EFFECT,
    ST_GET_QTY,
    ST_SET_QTY,
    ST_DEL_QTY,
    ST_UPD_QTY,
    ST_ON_HAND,
    ST_DOCS_OF_MOVEMENT,
    ST_EFFECTS_OF_DOC,
    ST_DEL_MOVEMENTS,
    ST_DEL_EFFECTS,
    ST_DEL_LINES,
    ST_DEL_DOC,
    ST_SAVEPOINT,
    ST_ROLLBACK_TO,
    ST_RELEASE,
    ST__COUNT
};

static const char *const sql[ST__COUNT] = {
    [ST_DOC_BY_POSTING] = "SELECT doc_no FROM documents WHERE posting_id = ?1",
    [ST_GET_DOC_NO] = "SELECT value FROM ledger_counter WHERE name = 'material_document'",
    [ST_SET_DOC_NO] = "UPDATE ledger_counter SET value = ?1 WHERE name = 'material_document'",
    [ST_INS_DOC] = "INSERT INTO documents(doc_no, posting_id, site, tier, policy_version, "
                   "posting_time, posted_at, line_count) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_INS_LINE] = "INSERT INTO doc_lines(doc_no, line_no, type, material, lot, serial, "
                    "location, to_location, from_status, to_status, uom, quantity, order_id, "
                    "operation, reason_code, reverses_movement_id, reversed_type, movement_ids) "
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                    "?16, ?17, ?18)",
    [ST_INS_MOVEMENT] = "INSERT OR IGNORE INTO doc_movements(movement_id, doc_no, line_no) "
                        "VALUES(?1, ?2, ?3)",
    [ST_INS_EFFECT] = "INSERT INTO doc_effects(doc_no, seq, line_no, site, material, lot, "
                      "location, status, uom, delta_units) "
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_GET_QTY] = "SELECT qty_units FROM on_hand WHERE site = ?1 AND material = ?2 AND lot = ?3 "
                   "AND location = ?4 AND status = ?5 AND uom = ?6",
    [ST_SET_QTY] = "INSERT INTO on_hand(site, material, lot, location, status, uom, qty_units) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                   "ON CONFLICT(site, material, lot, location, status, uom) "
                   "DO UPDATE SET qty_units = excluded.qty_units",
    [ST_DEL_QTY] = "DELETE FROM on_hand WHERE site = ?1 AND material = ?2 AND lot = ?3 "
                   "AND location = ?4 AND status = ?5 AND uom = ?6",
    [ST_UPD_QTY] = "UPDATE on_hand SET qty_units = ?7 WHERE site = ?1 AND material = ?2 "
                   "AND lot = ?3 AND location = ?4 AND status = ?5 AND uom = ?6",
    [ST_ON_HAND] = "SELECT site, material, lot, location, status, uom, qty_units FROM on_hand "
                   "WHERE (?1 IS NULL OR site = ?1) AND qty_units != 0 "
                   "ORDER BY site, material, lot, location, status, uom",
    [ST_DOCS_OF_MOVEMENT] = "SELECT DISTINCT doc_no FROM doc_movements WHERE movement_id = ?1 "
                            "ORDER BY doc_no",
    [ST_EFFECTS_OF_DOC] = "SELECT site, material, lot, location, status, uom, delta_units "
                          "FROM doc_effects WHERE doc_no = ?1 ORDER BY seq DESC",
    [ST_DEL_MOVEMENTS] = "DELETE FROM doc_movements WHERE doc_no = ?1",
    [ST_DEL_EFFECTS] = "DELETE FROM doc_effects WHERE doc_no = ?1",
    [ST_DEL_LINES] = "DELETE FROM doc_lines WHERE doc_no = ?1",
    [ST_DEL_DOC] = "DELETE FROM documents WHERE doc_no = ?1",
    /* erp_sqlite_post_batch: one savepoint per posting, prepared once. */
    [ST_SAVEPOINT] = "SAVEPOINT p",
    [ST_ROLLBACK_TO] = "ROLLBACK TO p",
    [ST_RELEASE] = "RELEASE p",
};

/* One on-hand bucket. */
typedef struct stock_key {
    const char *site, *material, *lot, *location, *status, *uom;
} stock_key_t;

/* One stock effect of the posting being posted, checked before it is written. */
typedef struct planned_effect {
    size_t line_no; /* 1-based */
    stock_key_t k;
    int64_t delta; /* signed units at ERP_SQLITE_SCALE */
    int64_t next;  /* the bucket after this effect */
    int exists;    /* the bucket's row exists before this effect */
    uint64_t hash; /* of k, for the bucket cache */
} planned_effect_t;

/*
 * A bucket read or moved in the current batch transaction (bucket cache):
 * the batch's postings move it in memory and ledger_commit writes it once.
 * A slot is in use when gen is the ledger's current generation.
 */
typedef struct bucket {
    stock_key_t k; /* strings of the batch's postings, valid until it returns */
    uint64_t hash;
    uint64_t gen;
    int64_t units;  /* after the postings applied so far */
    int64_t stored; /* in the table (0: no row, or a row at zero) */
    int exists;     /* the table has its row */
} bucket_t;

struct erp_sqlite {
    sqlite3 *db;
    int allow_negative;          /* accept on-hand below zero */
    sqlite3_stmt *st[ST__COUNT]; /* prepared once at open */
    planned_effect_t *plan;      /* the current posting's effects (post_in_tx) */
    size_t plan_cap;
    /* Inside a ledger_begin() transaction: the material document counter as
     * read at begin (doc_no_stored) and as numbered so far (doc_no). */
    int64_t doc_no, doc_no_stored;
    /* Bucket cache (erp_sqlite_post_batch without savepoints): open addressing,
     * bk_cap a power of two, emptied by moving on to the next generation. */
    int use_cache;
    bucket_t *bk;
    size_t bk_cap, bk_n;
    uint64_t gen;
};

static const char *nz(const char *s) {
    return s ? s : "";
}

/* Bounded string copy; always NUL-terminated. */
static void copy_str(char *dst, size_t size, const char *src) {
    size_t len;
    if (!size)
        return;
    len = strnlen(nz(src), size - 1);
    memcpy(dst, nz(src), len);
    dst[len] = '\0';
}

static const char *col_text(sqlite3_stmt *st, int col) {
    return nz((const char *)sqlite3_column_text(st, col));
}

/* Reset a statement after use so it releases its read locks and bindings. */
static void st_done(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/*
 * Strings are bound SQLITE_STATIC: every bound string outlives the step that
 * uses it, and st_done() clears the bindings before the caller's buffers go.
 */
static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    sqlite3_bind_text(st, i, nz(s), -1, SQLITE_STATIC);
}

/* NULL for an empty optional field, so the ledger reads naturally. */
static void bind_opt_text(sqlite3_stmt *st, int i, const char *s) {
    if (s && s[0])
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_key(sqlite3_stmt *st, int first, const stock_key_t *k) {
    bind_text(st, first, k->site);
    bind_text(st, first + 1, k->material);
    bind_text(st, first + 2, k->lot);
    bind_text(st, first + 3, k->location);
    bind_text(st, first + 4, k->status);
    bind_text(st, first + 5, k->uom);
}

/* Run a prepared statement without parameters or rows (SAVEPOINT and co). */
static int step_once(erp_sqlite_t *l, int which) {
    sqlite3_stmt *st = l->st[which];
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

static int is_busy(sqlite3 *db) {
    int code = sqlite3_errcode(db) & 0xff;
    return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

/* Any SQLite failure during a post or lookup: the ERP's trouble, retryable. */
static is_err_t db_fail(erp_sqlite_t *l, const char *what, char *msg, size_t msg_size) {
    is_errf(msg, msg_size, "ledger %s: %s%s", what, sqlite3_errmsg(l->db),
            is_busy(l->db) ? " (busy, retry later)" : "");
    return IS_ERR_RETRYABLE;
}

/* ---- open / close ------------------------------------------------------ */

is_err_t erp_sqlite_open_path(const char *path, int allow_negative, erp_sqlite_t **out,
                              char *errstr, size_t errstr_size) {
    erp_sqlite_t *l;
    is_err_t rc;

    *out = NULL;
    l = calloc(1, sizeof *l);
    if (!l) {
        is_errf(errstr, errstr_size, "out of memory");
        return IS_ERR_NOMEM;
    }
    l->allow_negative = allow_negative;
    rc = is_db_open(path, migrations, sizeof migrations / sizeof migrations[0], IS_DB_SYNC_FULL,
                    &l->db, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    for (size_t i = 0; i < ST__COUNT; i++) {
        rc = is_db_prepare(l->db, sql[i], &l->st[i], errstr, errstr_size);
        if (rc != IS_OK)
            goto err;
    }
    *out = l;
    return IS_OK;

err:
    erp_sqlite_close(l);
    return rc;
}

void erp_sqlite_close(erp_sqlite_t *l) {
    if (!l)
        return;
    for (size_t i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(l->st[i]);
    is_db_close(l->db);
    free(l->bk);
    free(l->plan);
    free(l);
}

void erp_sqlite_set_busy_timeout(erp_sqlite_t *l, int ms) {
    sqlite3_busy_timeout(l->db, ms);
}

/* ---- on-hand buckets --------------------------------------------------- */

/* Current units of a bucket (0 when absent); *found (may be NULL): whether its row exists. */
static is_err_t get_qty(erp_sqlite_t *l, const stock_key_t *k, int64_t *units, int *found) {
    sqlite3_stmt *st = l->st[ST_GET_QTY];
    int src;

    bind_key(st, 1, k);
    src = sqlite3_step(st);
    *units = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (found)
        *found = src == SQLITE_ROW;
    st_done(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? IS_OK : IS_ERR_DB;
}

/* Write a bucket; a bucket at zero is deleted. */
static is_err_t set_qty(erp_sqlite_t *l, const stock_key_t *k, int64_t units) {
    sqlite3_stmt *st = l->st[units == 0 ? ST_DEL_QTY : ST_SET_QTY];
    int src;

    bind_key(st, 1, k);
    if (units != 0)
        sqlite3_bind_int64(st, 7, units);
    src = sqlite3_step(st);
    st_done(st);
    return src == SQLITE_DONE ? IS_OK : IS_ERR_DB;
}

/* Update an existing bucket to units (not zero); the UPSERT if its row is not there after all. */
static is_err_t update_qty(erp_sqlite_t *l, const stock_key_t *k, int64_t units) {
    sqlite3_stmt *st = l->st[ST_UPD_QTY];
    int src;

    bind_key(st, 1, k);
    sqlite3_bind_int64(st, 7, units);
    src = sqlite3_step(st);
    st_done(st);
    if (src != SQLITE_DONE)
        return IS_ERR_DB;
    return sqlite3_changes(l->db) == 1 ? IS_OK : set_qty(l, k, units);
}

static void format_units(int64_t units, char *buf, size_t size) {
    is_decimal_t d = {units, ERP_SQLITE_SCALE};
    is_decimal_format(is_decimal_normalize(d), buf, size);
}

/* ---- post -------------------------------------------------------------- */

/* Quantity sign rules: the ledger books what an ERP would accept. */
static int quantity_sign_ok(const is_movement_t *m, is_decimal_t q) {
    int sign = is_decimal_sign(q);
    int signed_type = m->type == INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT ||
                      (m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
                       m->reversed_type == INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT);
    return signed_type ? sign != 0 : sign > 0;
}

/* Length of s when JSON takes it verbatim (printable ASCII, no quote or backslash), else -1. */
static ptrdiff_t json_plain_len(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (; *p; p++)
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            return -1;
    return (const char *)p - s;
}

/*
 * The line's movement ids as a JSON array; a line without ids uses its
 * movement's. Ids that need no escaping (all the MES sends) are written
 * directly; anything else goes through jansson, byte for byte as before.
 */
static char *movement_ids_json(const erp_line_t *line) {
    const char *own = line->m->movement_id;
    size_t n = line->n_movement_ids ? line->n_movement_ids : (own && own[0] ? 1 : 0);
    size_t total = 3; /* [ ] NUL */
    json_t *arr;
    char *s = NULL, *o;

    for (size_t i = 0; i < n; i++) {
        ptrdiff_t len = json_plain_len(line->n_movement_ids ? nz(line->movement_ids[i]) : own);
        if (len < 0)
            goto escaped;
        total += (size_t)len + 3; /* quotes and comma */
    }
    s = malloc(total);
    if (!s)
        return NULL;
    o = s;
    *o++ = '[';
    for (size_t i = 0; i < n; i++) {
        const char *id = line->n_movement_ids ? nz(line->movement_ids[i]) : own;
        size_t len = strlen(id);
        if (i)
            *o++ = ',';
        *o++ = '"';
        memcpy(o, id, len);
        o += len;
        *o++ = '"';
    }
    *o++ = ']';
    *o = '\0';
    return s;

escaped:
    arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < line->n_movement_ids; i++)
        if (json_array_append_new(arr, json_string(nz(line->movement_ids[i]))) != 0)
            goto done;
    if (line->n_movement_ids == 0 && own && own[0])
        if (json_array_append_new(arr, json_string(own)) != 0)
            goto done;
    s = json_dumps(arr, JSON_COMPACT);

done:
    json_decref(arr);
    return s;
}

static is_err_t insert_line(erp_sqlite_t *l, const char *doc, size_t line_no,
                            const erp_line_t *line, erp_result_t *r) {
    const is_movement_t *m = line->m;
    sqlite3_stmt *st = l->st[ST_INS_LINE];
    char qty[IS_DECIMAL_STRLEN];
    char *ids = movement_ids_json(line);
    int src;

    if (!ids) {
        is_errf(r->message, sizeof r->message, "ledger: out of memory");
        return IS_ERR_RETRYABLE;
    }
    is_decimal_format(line->quantity, qty, sizeof qty);
    bind_text(st, 1, doc);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)line_no);
    bind_text(st, 3, is_movement_type_name(m->type));
    bind_text(st, 4, m->material);
    bind_text(st, 5, m->lot);
    bind_opt_text(st, 6, m->serial);
    bind_text(st, 7, m->location);
    bind_opt_text(st, 8, m->to_location);
    bind_opt_text(st, 9, m->from_status ? is_stock_status_name(m->from_status) : NULL);
    bind_opt_text(st, 10, m->to_status ? is_stock_status_name(m->to_status) : NULL);
    bind_text(st, 11, m->uom);
    bind_text(st, 12, qty);
    bind_opt_text(st, 13, m->order_id);
    bind_opt_text(st, 14, m->operation);
    bind_opt_text(st, 15, m->reason_code);
    bind_opt_text(st, 16, m->reverses_movement_id);
    bind_opt_text(st, 17, m->reversed_type ? is_movement_type_name(m->reversed_type) : NULL);
    bind_text(st, 18, ids);
    src = sqlite3_step(st);
    st_done(st);
    free(ids);
    if (src != SQLITE_DONE)
        return db_fail(l, "insert line", r->message, sizeof r->message);

    /* Link every source movement; a line without ids links its own movement. */
    st = l->st[ST_INS_MOVEMENT];
    for (size_t i = 0; i < (line->n_movement_ids ? line->n_movement_ids : 1); i++) {
        const char *id = line->n_movement_ids ? line->movement_ids[i] : m->movement_id;
        if (!id || !id[0])
            continue;
        bind_text(st, 1, id);
        bind_text(st, 2, doc);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)line_no);
        src = sqlite3_step(st);
        st_done(st);
        if (src != SQLITE_DONE)
            return db_fail(l, "link movement", r->message, sizeof r->message);
    }
    return IS_OK;
}

/*
 * A posting is checked before anything of it is written (plan_line: every
 * line, every bucket read once and moved in memory), then written
 * (post_in_tx: each bucket updated to its computed value). Every refusal --
 * a bad line, an overflowing bucket, insufficient stock -- is found by the
 * check, so a refused posting leaves nothing to roll back and a batch needs
 * no savepoint per posting. Only an SQLite failure in the middle of the
 * writes leaves something behind; erp_sqlite_post_batch then redoes the
 * batch with a savepoint per posting.
 */
static int same_key(const stock_key_t *a, const stock_key_t *b) {
    return strcmp(a->location, b->location) == 0 && strcmp(a->status, b->status) == 0 &&
           strcmp(a->lot, b->lot) == 0 && strcmp(a->material, b->material) == 0 &&
           strcmp(a->site, b->site) == 0 && strcmp(a->uom, b->uom) == 0;
}

static is_err_t refuse_overflow(const planned_effect_t *e, erp_result_t *r) {
    is_errf(r->message, sizeof r->message, "line %zu: on-hand of %s/%s would overflow", e->line_no,
            e->k.material, e->k.lot);
    return IS_ERR_PERMANENT;
}

static is_err_t refuse_stock(const planned_effect_t *e, int64_t have, erp_result_t *r) {
    char a[IS_DECIMAL_STRLEN], b[IS_DECIMAL_STRLEN];
    format_units(have, a, sizeof a);
    format_units(-e->delta, b, sizeof b);
    is_errf(r->message, sizeof r->message,
            "insufficient stock: %s/%s at %s [%s] has %s %s, line %zu needs %s %s", e->k.material,
            e->k.lot, e->k.location, e->k.status, a, e->k.uom, e->line_no, b, e->k.uom);
    return IS_ERR_PERMANENT;
}

/* ---- bucket cache ------------------------------------------------------- */

static uint64_t key_hash(const stock_key_t *k) {
    const char *f[6] = {k->site, k->material, k->lot, k->location, k->status, k->uom};
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, a separator after each field */
    for (size_t i = 0; i < 6; i++) {
        for (const unsigned char *c = (const unsigned char *)f[i]; *c; c++)
            h = (h ^ *c) * 1099511628211ULL;
        h = (h ^ 0x1f) * 1099511628211ULL;
    }
    return h;
}

static bucket_t *bucket_find(erp_sqlite_t *l, const stock_key_t *k, uint64_t h) {
    size_t mask = l->bk_cap - 1;
    if (!l->bk_cap)
        return NULL;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        bucket_t *b = &l->bk[i];
        if (b->gen != l->gen)
            return NULL;
        if (b->hash == h && same_key(&b->k, k))
            return b;
    }
}

/* Place b (not yet present) into the table; room is guaranteed. */
static bucket_t *bucket_place(erp_sqlite_t *l, const bucket_t *b) {
    size_t mask = l->bk_cap - 1, i = (size_t)b->hash & mask;
    while (l->bk[i].gen == l->gen)
        i = (i + 1) & mask;
    l->bk[i] = *b;
    l->bk[i].gen = l->gen;
    l->bk_n++;
    return &l->bk[i];
}

/* Remember a bucket as read from the table. NULL when out of memory. */
static bucket_t *bucket_add(erp_sqlite_t *l, const stock_key_t *k, uint64_t h, int64_t units,
                            int exists) {
    bucket_t b = {.k = *k, .hash = h, .units = units, .stored = units, .exists = exists};
    if ((l->bk_n + 1) * 2 > l->bk_cap) { /* keep the load at most 1/2 */
        size_t old_cap = l->bk_cap, cap = old_cap ? old_cap * 2 : 256;
        bucket_t *old = l->bk, *nb = calloc(cap, sizeof *nb);
        if (!nb)
            return NULL;
        l->bk = nb;
        l->bk_cap = cap;
        l->bk_n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].gen == l->gen)
                bucket_place(l, &old[i]);
        free(old);
    }
    return bucket_place(l, &b);
}

/* Write every bucket the transaction moved. IS_OK or IS_ERR_DB. */
static is_err_t bucket_flush(erp_sqlite_t *l) {
    for (size_t i = 0; i < l->bk_cap; i++) {
        bucket_t *b = &l->bk[i];
        is_err_t rc = IS_OK;
        if (b->gen != l->gen || (b->units == b->stored && (b->units != 0 || !b->exists)))
            continue;
        if (b->units == 0) /* rows at zero are deleted */
            rc = set_qty(l, &b->k, 0);
        else if (b->exists)
            rc = update_qty(l, &b->k, b->units);
        else
            rc = set_qty(l, &b->k, b->units);
        if (rc != IS_OK)
            return rc;
        b->stored = b->units;
        b->exists = b->units != 0;
    }
    return IS_OK;
}

/*
 * Where does effect l->plan[j] take its bucket? The row as stored, or as the
 * last earlier effect of this posting on the same bucket left it (a row at
 * zero is deleted). Refuses an overflow and, unless allow_negative, a bucket
 * going below zero: the checks the write used to make, made before it.
 */
static is_err_t plan_stock(erp_sqlite_t *l, size_t j, erp_result_t *r) {
    planned_effect_t *e = &l->plan[j];
    bucket_t *b;
    int64_t have = 0;
    size_t i = j;

    while (i > 0 && !same_key(&l->plan[i - 1].k, &e->k))
        i--;
    if (l->use_cache)
        e->hash = key_hash(&e->k);
    if (i > 0) {
        have = l->plan[i - 1].next;
        e->exists = have != 0;
    } else if (l->use_cache && (b = bucket_find(l, &e->k, e->hash)) != NULL) {
        have = b->units; /* as the batch's earlier postings left it */
    } else if (get_qty(l, &e->k, &have, &e->exists) != IS_OK) {
        return db_fail(l, "read on-hand", r->message, sizeof r->message);
    } else if (l->use_cache && !bucket_add(l, &e->k, e->hash, have, e->exists)) {
        is_errf(r->message, sizeof r->message, "ledger: out of memory");
        return IS_ERR_RETRYABLE;
    }
    if (__builtin_add_overflow(have, e->delta, &e->next))
        return refuse_overflow(e, r);
    if (e->next < 0 && e->delta < 0 && !l->allow_negative)
        return refuse_stock(e, have, r);
    return IS_OK;
}

/*
 * Check one line and append its stock effects to l->plan (*n_plan of them so
 * far). line_no is 1-based. IS_ERR_PERMANENT for a bad line or insufficient
 * stock, IS_ERR_RETRYABLE for SQLite trouble; nothing is written.
 */
static is_err_t plan_line(erp_sqlite_t *l, const erp_posting_t *p, size_t line_no, size_t *n_plan,
                          erp_result_t *r) {
    const erp_line_t *line = &p->lines[line_no - 1];
    Invsync__V1__Decimal qd = INVSYNC__V1__DECIMAL__INIT;
    is_movement_t mc;
    is_stock_effect_t eff[4];
    is_decimal_t fixed;
    char a[IS_DECIMAL_STRLEN];
    size_t n;

    if (!line->m) {
        is_errf(r->message, sizeof r->message, "line %zu: no movement", line_no);
        return IS_ERR_PERMANENT;
    }
    if (is_decimal_rescale(line->quantity, ERP_SQLITE_SCALE, &fixed) != IS_OK) {
        is_decimal_format(line->quantity, a, sizeof a);
        is_errf(r->message, sizeof r->message,
                "line %zu: quantity %s has more than %d decimal places or is out of range", line_no,
                a, ERP_SQLITE_SCALE);
        return IS_ERR_PERMANENT;
    }
    if (!quantity_sign_ok(line->m, line->quantity)) {
        is_decimal_format(line->quantity, a, sizeof a);
        is_errf(r->message, sizeof r->message, "line %zu: quantity %s is not valid for %s", line_no,
                a, is_movement_type_name(line->m->type));
        return IS_ERR_PERMANENT;
    }
    if (!line->m->material || !line->m->material[0] || !line->m->location ||
        !line->m->location[0] || !line->m->uom || !line->m->uom[0]) {
        is_errf(r->message, sizeof r->message, "line %zu: material, location and uom are required",
                line_no);
        return IS_ERR_PERMANENT;
    }

    /* Effects of the representative movement at the line's quantity. */
    mc = *line->m;
    qd.units = line->quantity.units;
    qd.scale = line->quantity.scale;
    mc.quantity = &qd;
    n = is_movement_effects(&mc, eff);
    if (n == 0) {
        is_errf(r->message, sizeof r->message, "line %zu: %s has no stock effect", line_no,
                is_movement_type_name(line->m->type));
        return IS_ERR_PERMANENT;
    }

    for (size_t i = 0; i < n; i++)
        if (!eff[i].location || !eff[i].location[0]) {
            is_errf(r->message, sizeof r->message, "line %zu: %s needs a location", line_no,
                    is_movement_type_name(line->m->type));
            return IS_ERR_PERMANENT;
        }

    if (*n_plan + n > l->plan_cap) {
        size_t cap = l->plan_cap ? l->plan_cap * 2 : 64;
        planned_effect_t *np;
        while (cap < *n_plan + n)
            cap *= 2;
        np = realloc(l->plan, cap * sizeof *np);
        if (!np) {
            is_errf(r->message, sizeof r->message, "ledger: out of memory");
            return IS_ERR_RETRYABLE;
        }
        l->plan = np;
        l->plan_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        planned_effect_t *e = &l->plan[*n_plan];
        is_decimal_t delta;
        is_err_t rc;

        e->line_no = line_no;
        e->k = (stock_key_t){
            .site = line->m->site && line->m->site[0] ? line->m->site : p->site,
            .material = line->m->material,
            .lot = nz(line->m->lot),
            .location = eff[i].location,
            .status = is_stock_status_name(eff[i].status),
            .uom = line->m->uom,
        };
        if (is_decimal_rescale(eff[i].delta, ERP_SQLITE_SCALE, &delta) != IS_OK) {
            is_errf(r->message, sizeof r->message, "line %zu: quantity out of range", line_no);
            return IS_ERR_PERMANENT;
        }
        e->delta = delta.units;
        rc = plan_stock(l, *n_plan, r);
        if (rc != IS_OK)
            return rc;
        ++*n_plan;
    }
    return IS_OK;
}

/* Apply one planned effect (the seq-th of the document) and record it. */
static is_err_t write_effect(erp_sqlite_t *l, const char *doc, const planned_effect_t *e,
                             int64_t seq, erp_result_t *r) {
    sqlite3_stmt *st;
    bucket_t *b;
    is_err_t rc;
    int src;

    if (l->use_cache) {
        b = bucket_find(l, &e->k, e->hash); /* plan_stock put it there */
        if (!b) {
            is_errf(r->message, sizeof r->message, "ledger: bucket cache lost %s/%s", e->k.material,
                    e->k.lot);
            return IS_ERR_RETRYABLE; /* the batch is redone without the cache */
        }
        b->units = e->next; /* written by ledger_commit */
        rc = IS_OK;
    } else if (e->next == 0) { /* rows at zero are deleted */
        rc = e->exists ? set_qty(l, &e->k, 0) : IS_OK;
    } else if (e->exists) {
        rc = update_qty(l, &e->k, e->next);
    } else {
        rc = set_qty(l, &e->k, e->next);
    }
    if (rc != IS_OK)
        return db_fail(l, "write on-hand", r->message, sizeof r->message);

    st = l->st[ST_INS_EFFECT];
    bind_text(st, 1, doc);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)e->line_no);
    bind_key(st, 4, &e->k);
    sqlite3_bind_int64(st, 10, e->delta);
    src = sqlite3_step(st);
    st_done(st);
    return src == SQLITE_DONE ? IS_OK : db_fail(l, "record effect", r->message, sizeof r->message);
}

/* Existing document of posting_id: IS_OK, IS_ERR_NOT_FOUND or IS_ERR_DB. */
static is_err_t find_document(erp_sqlite_t *l, const char *posting_id, char *doc, size_t doc_size) {
    sqlite3_stmt *st = l->st[ST_DOC_BY_POSTING];
    is_err_t rc = IS_ERR_DB;
    int src;

    bind_text(st, 1, posting_id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        copy_str(doc, doc_size, col_text(st, 0));
        rc = IS_OK;
    } else if (src == SQLITE_DONE) {
        rc = IS_ERR_NOT_FOUND;
    }
    st_done(st);
    return rc;
}

/* Number the next document (the counter is written back by ledger_commit). */
static void next_document(erp_sqlite_t *l, char *doc, size_t doc_size) {
    snprintf(doc, doc_size, "%" PRId64, ++l->doc_no);
}

/* BEGIN IMMEDIATE and read the document counter. IS_OK or IS_ERR_DB. */
static is_err_t ledger_begin(erp_sqlite_t *l) {
    sqlite3_stmt *st = l->st[ST_GET_DOC_NO];
    int src;

    if (is_db_begin(l->db) != IS_OK)
        return IS_ERR_DB;
    l->gen++; /* empty the bucket cache */
    l->bk_n = 0;
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        l->doc_no = l->doc_no_stored = sqlite3_column_int64(st, 0);
    st_done(st);
    if (src != SQLITE_ROW) {
        is_db_rollback(l->db);
        return IS_ERR_DB;
    }
    return IS_OK;
}

/* Write the cached buckets and the document counter, then COMMIT. On failure the caller rolls back.
 */
static is_err_t ledger_commit(erp_sqlite_t *l) {
    if (l->use_cache && bucket_flush(l) != IS_OK)
        return IS_ERR_DB;
    if (l->doc_no != l->doc_no_stored) {
        sqlite3_stmt *st = l->st[ST_SET_DOC_NO];
        int src;
        sqlite3_bind_int64(st, 1, l->doc_no);
        src = sqlite3_step(st);
        st_done(st);
        if (src != SQLITE_DONE)
            return IS_ERR_DB;
        l->doc_no_stored = l->doc_no;
    }
    return is_db_commit(l->db);
}

static is_err_t validate_header(const erp_posting_t *p, erp_result_t *r) {
    if (!p->posting_id || !p->posting_id[0] || strlen(p->posting_id) > IS_MOVEMENT_MAX_STR) {
        is_errf(r->message, sizeof r->message, "posting_id must be 1..%d characters",
                IS_MOVEMENT_MAX_STR);
        return IS_ERR_PERMANENT;
    }
    if (!p->site || !p->site[0]) {
        is_errf(r->message, sizeof r->message, "posting %s: site is required", p->posting_id);
        return IS_ERR_PERMANENT;
    }
    if (p->n_lines == 0 || !p->lines) {
        is_errf(r->message, sizeof r->message, "posting %s has no lines", p->posting_id);
        return IS_ERR_PERMANENT;
    }
    return IS_OK;
}

/*
 * Post inside an open transaction. IS_OK: posted or found already posted
 * (*replayed). Otherwise *wrote says whether anything of this posting was
 * written: if so, the caller must roll it back (its savepoint or the whole
 * transaction); refusals found by the check leave *wrote at 0.
 */
static is_err_t post_in_tx(erp_sqlite_t *l, const erp_posting_t *p, erp_result_t *r, int *replayed,
                           int *wrote) {
    sqlite3_stmt *st = l->st[ST_INS_DOC];
    char doc[sizeof r->document];
    size_t n_plan = 0, j = 0;
    is_err_t rc;
    int src;

    *replayed = 0;
    *wrote = 0;
    rc = find_document(l, p->posting_id, doc, sizeof doc);
    if (rc == IS_OK) {
        copy_str(r->document, sizeof r->document, doc);
        is_errf(r->message, sizeof r->message, "already posted as document %s", doc);
        *replayed = 1;
        return IS_OK;
    }
    if (rc != IS_ERR_NOT_FOUND)
        return db_fail(l, "find posting", r->message, sizeof r->message);
    for (size_t i = 1; i <= p->n_lines; i++) {
        rc = plan_line(l, p, i, &n_plan, r);
        if (rc != IS_OK)
            return rc;
    }

    *wrote = 1;
    next_document(l, doc, sizeof doc);
    bind_text(st, 1, doc);
    bind_text(st, 2, p->posting_id);
    bind_text(st, 3, p->site);
    bind_text(st, 4, p->tier);
    bind_text(st, 5, p->policy_version);
    sqlite3_bind_int64(st, 6, p->posting_time);
    sqlite3_bind_int64(st, 7, is_clock_now_ms(NULL));
    sqlite3_bind_int64(st, 8, (sqlite3_int64)p->n_lines);
    src = sqlite3_step(st);
    st_done(st);
    if (src != SQLITE_DONE)
        return db_fail(l, "insert document", r->message, sizeof r->message);
    /* Per line: its effects in order (seq counts across the document), then the line. */
    for (size_t i = 1; i <= p->n_lines; i++) {
        for (; j < n_plan && l->plan[j].line_no == i; j++) {
            rc = write_effect(l, doc, &l->plan[j], (int64_t)j + 1, r);
            if (rc != IS_OK)
                return rc;
        }
        rc = insert_line(l, doc, i, &p->lines[i - 1], r);
        if (rc != IS_OK)
            return rc;
    }
    copy_str(r->document, sizeof r->document, doc);
    is_errf(r->message, sizeof r->message, "posted as document %s", doc);
    return IS_OK;
}

is_err_t erp_sqlite_post(erp_sqlite_t *l, const erp_posting_t *p, erp_result_t *r, int *replayed) {
    int rep = 0, wrote = 0;
    is_err_t rc = validate_header(p, r);
    if (replayed)
        *replayed = 0;
    if (rc != IS_OK)
        return rc;
    if (ledger_begin(l) != IS_OK)
        return db_fail(l, "begin", r->message, sizeof r->message);
    rc = post_in_tx(l, p, r, &rep, &wrote);
    if (rc != IS_OK || rep) {
        is_db_rollback(l->db); /* a replay wrote nothing */
        if (replayed)
            *replayed = rep;
        return rc;
    }
    if (ledger_commit(l) != IS_OK) {
        rc = db_fail(l, "commit", r->message, sizeof r->message);
        is_db_rollback(l->db);
        return rc;
    }
    return IS_OK;
}

/* Every posting still OK (and, from `from` on, every posting) becomes retryable with msg. */
static void fail_batch(const char *msg, size_t from, size_t n, erp_result_t *results,
                       is_err_t *rcs) {
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == IS_OK || i >= from) {
            rcs[i] = IS_ERR_RETRYABLE;
            results[i].document[0] = '\0';
            copy_str(results[i].message, sizeof results[i].message, msg);
        }
    }
}

/*
 * One transaction over the batch. savepoints: one per posting, so that a
 * posting failing after it wrote is rolled back alone. Without them (the
 * usual case: refusals are found before writing) such a failure rolls the
 * whole transaction back and the return value is 1: redo with savepoints.
 */
static int post_batch_tx(erp_sqlite_t *l, const erp_posting_t *ps, size_t n, erp_result_t *results,
                         is_err_t *rcs, int savepoints) {
    char msg[sizeof results->message];

    for (size_t i = 0; i < n; i++)
        rcs[i] = IS_OK;
    if (ledger_begin(l) != IS_OK) {
        db_fail(l, "begin", msg, sizeof msg);
        fail_batch(msg, 0, n, results, rcs);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int rep = 0, wrote = 0;
        int64_t doc_no = l->doc_no;
        if (erp_batch_held(ps, rcs, i, &results[i])) {
            rcs[i] = IS_ERR_RETRYABLE;
            continue;
        }
        rcs[i] = validate_header(&ps[i], &results[i]);
        if (rcs[i] != IS_OK)
            continue;
        /* A savepoint per posting: a refused one leaves no trace, the others stay. */
        if (savepoints && step_once(l, ST_SAVEPOINT) != SQLITE_OK) {
            rcs[i] = db_fail(l, "savepoint", results[i].message, sizeof results[i].message);
            continue;
        }
        rcs[i] = post_in_tx(l, &ps[i], &results[i], &rep, &wrote);
        if (savepoints) {
            if (rcs[i] != IS_OK) {
                (void)step_once(l, ST_ROLLBACK_TO);
                l->doc_no = doc_no; /* its number is free again, as the counter row was */
            }
            (void)step_once(l, ST_RELEASE);
        } else if (rcs[i] != IS_OK && wrote) {
            is_db_rollback(l->db);
            return 1;
        }
        if (rcs[i] != IS_OK && sqlite3_get_autocommit(l->db)) {
            /* SQLite ended the transaction itself (I/O error, disk full): nothing is kept. */
            copy_str(msg, sizeof msg, results[i].message);
            fail_batch(msg, i, n, results, rcs);
            return 0;
        }
    }
    if (ledger_commit(l) != IS_OK) {
        /* Nothing was kept: every posting that looked fine must be tried again. */
        db_fail(l, "commit", msg, sizeof msg);
        is_db_rollback(l->db);
        fail_batch(msg, n, n, results, rcs);
    }
    return 0;
}

void erp_sqlite_post_batch(erp_sqlite_t *l, const erp_posting_t *ps, size_t n,
                           erp_result_t *results, is_err_t *rcs) {
    int redo;

    /* Without savepoints the batch moves on-hand in memory (bucket cache). */
    l->use_cache = 1;
    redo = post_batch_tx(l, ps, n, results, rcs, 0);
    l->use_cache = 0;
    if (!redo)
        return;
    for (size_t i = 0; i < n; i++)
        memset(&results[i], 0, sizeof results[i]);
    (void)post_batch_tx(l, ps, n, results, rcs, 1);
}

/* ---- lookups ----------------------------------------------------------- */

is_err_t erp_sqlite_lookup(erp_sqlite_t *l, const char *posting_id, erp_result_t *r) {
    char doc[sizeof r->document];
    is_err_t rc = find_document(l, nz(posting_id), doc, sizeof doc);

    if (rc == IS_OK) {
        copy_str(r->document, sizeof r->document, doc);
        is_errf(r->message, sizeof r->message, "posted as document %s", doc);
    } else if (rc == IS_ERR_NOT_FOUND) {
        is_errf(r->message, sizeof r->message, "posting %s not found", nz(posting_id));
    } else {
        rc = db_fail(l, "lookup", r->message, sizeof r->message);
    }
    return rc;
}

is_err_t erp_sqlite_query_on_hand(erp_sqlite_t *l, const char *site, erp_on_hand_cb cb,
                                  void *opaque, char *errstr, size_t errstr_size) {
    sqlite3_stmt *st = l->st[ST_ON_HAND];
    is_err_t rc = IS_OK;
    int src;

    if (site)
        bind_text(st, 1, site);
    else
        sqlite3_bind_null(st, 1);
    for (src = sqlite3_step(st); src == SQLITE_ROW; src = sqlite3_step(st)) {
        erp_on_hand_row_t row = {
            .site = col_text(st, 0),
            .material = col_text(st, 1),
            .lot = col_text(st, 2),
            .location = col_text(st, 3),
            .status = is_stock_status_parse(col_text(st, 4)),
            .uom = col_text(st, 5),
            .quantity =
                is_decimal_normalize((is_decimal_t){sqlite3_column_int64(st, 6), ERP_SQLITE_SCALE}),
        };
        if (cb(opaque, &row) != 0)
            break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = is_busy(l->db) ? IS_ERR_RETRYABLE : IS_ERR_DB;
        is_errf(errstr, errstr_size, "ledger on-hand query: %s", sqlite3_errmsg(l->db));
    }
    st_done(st);
    return rc;
}

is_err_t erp_sqlite_document_of(erp_sqlite_t *l, const char *movement_id, char *doc,
                                size_t doc_size, size_t *n_documents) {
    sqlite3_stmt *st = l->st[ST_DOCS_OF_MOVEMENT];
    size_t n = 0;
    is_err_t rc;
    int src;

    if (doc_size)
        doc[0] = '\0';
    bind_text(st, 1, movement_id);
    for (src = sqlite3_step(st); src == SQLITE_ROW; src = sqlite3_step(st)) {
        if (n == 0)
            copy_str(doc, doc_size, col_text(st, 0));
        n++;
    }
    rc = src == SQLITE_DONE ? IS_OK : IS_ERR_RETRYABLE;
    st_done(st);
    if (n_documents)
        *n_documents = n;
    if (rc != IS_OK)
        return rc;
    return n == 0 ? IS_ERR_NOT_FOUND : n == 1 ? IS_OK : IS_ERR_CONFLICT;
}

/* ---- delete (tests: a lost interface day) ------------------------------ */

static is_err_t exec_doc(erp_sqlite_t *l, int which, const char *doc) {
    sqlite3_stmt *st = l->st[which];
    int src;

    bind_text(st, 1, doc);
    src = sqlite3_step(st);
    st_done(st);
    return src == SQLITE_DONE ? IS_OK : IS_ERR_DB;
}

/*
 * Undo a document's effects, last first; balances may go below zero. Writing
 * on_hand while stepping over doc_effects is fine: a different table.
 */
static is_err_t reverse_effects(erp_sqlite_t *l, const char *doc) {
    sqlite3_stmt *st = l->st[ST_EFFECTS_OF_DOC];
    is_err_t rc = IS_OK;
    int src;

    bind_text(st, 1, doc);
    for (src = sqlite3_step(st); src == SQLITE_ROW; src = sqlite3_step(st)) {
        stock_key_t k = {
            col_text(st, 0), col_text(st, 1), col_text(st, 2),
            col_text(st, 3), col_text(st, 4), col_text(st, 5),
        };
        int64_t have, next;
        rc = get_qty(l, &k, &have, NULL);
        if (rc != IS_OK)
            break;
        if (__builtin_sub_overflow(have, (int64_t)sqlite3_column_int64(st, 6), &next)) {
            rc = IS_ERR_OVERFLOW;
            break;
        }
        rc = set_qty(l, &k, next);
        if (rc != IS_OK)
            break;
    }
    if (rc == IS_OK && src != SQLITE_DONE)
        rc = IS_ERR_DB;
    st_done(st);
    return rc;
}

is_err_t erp_sqlite_delete_posting(erp_sqlite_t *l, const char *posting_id, char *doc,
                                   size_t doc_size) {
    static const int deletes[] = {ST_DEL_MOVEMENTS, ST_DEL_EFFECTS, ST_DEL_LINES, ST_DEL_DOC};
    char d[64];
    is_err_t rc;

    if (doc && doc_size)
        doc[0] = '\0';
    if (is_db_begin(l->db) != IS_OK)
        return is_busy(l->db) ? IS_ERR_RETRYABLE : IS_ERR_DB;
    rc = find_document(l, nz(posting_id), d, sizeof d);
    if (rc != IS_OK)
        goto err;
    rc = reverse_effects(l, d);
    if (rc != IS_OK)
        goto err;
    for (size_t i = 0; i < sizeof deletes / sizeof deletes[0]; i++) {
        rc = exec_doc(l, deletes[i], d);
        if (rc != IS_OK)
            goto err;
    }
    rc = is_db_commit(l->db);
    if (rc != IS_OK)
        goto err;
    if (doc)
        copy_str(doc, doc_size, d);
    return IS_OK;

err:
    if (rc == IS_ERR_DB && is_busy(l->db))
        rc = IS_ERR_RETRYABLE;
    is_db_rollback(l->db);
    return rc;
}

/* ---- the erp_ops_t adapter --------------------------------------------- */

static is_err_t ops_open(const erp_config_t *cfg, void **impl, char *errstr, size_t errstr_size) {
    erp_sqlite_t *l = NULL;
    is_err_t rc;

    *impl = NULL;
    if (!cfg->sqlite_path || !cfg->sqlite_path[0]) {
        is_errf(errstr, errstr_size, "erp.sqlite_path is not set");
        return IS_ERR_CONFIG;
    }
    rc = erp_sqlite_open_path(cfg->sqlite_path, cfg->allow_negative, &l, errstr, errstr_size);
    if (rc == IS_OK)
        *impl = l;
    return rc;
}

static void ops_close(void *impl) {
    erp_sqlite_close(impl);
}

static is_err_t ops_post(void *impl, const erp_posting_t *p, erp_result_t *result) {
    return erp_sqlite_post(impl, p, result, NULL);
}

static void ops_post_batch(void *impl, const erp_posting_t *ps, size_t n, erp_result_t *results,
                           is_err_t *rcs) {
    erp_sqlite_post_batch(impl, ps, n, results, rcs);
}

static is_err_t ops_lookup(void *impl, const char *posting_id, erp_result_t *result) {
    return erp_sqlite_lookup(impl, posting_id, result);
}

static is_err_t ops_query_on_hand(void *impl, const char *site, erp_on_hand_cb cb, void *opaque,
                                  char *errstr, size_t errstr_size) {
    return erp_sqlite_query_on_hand(impl, site, cb, opaque, errstr, errstr_size);
}

const erp_ops_t erp_sqlite_ops = {
    .name = "sqlite",
    .open = ops_open,
    .close = ops_close,
    .post = ops_post,
    .post_batch = ops_post_batch,
    .lookup_reference = ops_lookup,
    .query_on_hand = ops_query_on_hand,
};
