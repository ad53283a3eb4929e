/*
 * test_erp_sqlite.c — unit tests for the embedded ERP ledger (erp_sqlite.c)
 * and the adapter front (erp.c): documents and on-hand from postings,
 * idempotent re-posts, refusal of negative stock with nothing changed,
 * allow_negative, the effects of transfer / quarantine / release / reversal,
 * netted lines, lookups, the on-hand query, the forensic helpers and the
 * classification of a locked database.
 *
 * Each test gets a fresh mkdtemp directory with one ledger file; the suite
 * runs in well under a second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "erp.h"
#include "erp_sqlite.h"

#define SITE "PLANT1"

typedef struct fixture {
    char dir[256];  /* mkdtemp directory */
    char path[300]; /* dir/ledger.db */
    erp_t *erp;     /* the ledger through erp.h */
} fixture_t;

/* A movement with its own quantity storage. */
typedef struct tmove {
    is_movement_t m;
    Invsync__V1__Decimal q;
} tmove_t;

static is_decimal_t dec(const char *s) {
    is_decimal_t d = {0, 0};
    assert_int_equal(is_decimal_parse(s, strlen(s), IS_DECIMAL_MAX_SCALE, &d, NULL, 0), IS_OK);
    return d;
}

static void tm_init(tmove_t *t, const char *id, Invsync__V1__MovementType type,
                    const char *location, const char *qty) {
    is_decimal_t d = dec(qty);
    t->m = (is_movement_t)INVSYNC__V1__MOVEMENT__INIT;
    t->q = (Invsync__V1__Decimal)INVSYNC__V1__DECIMAL__INIT;
    t->q.units = d.units;
    t->q.scale = d.scale;
    t->m.movement_id = (char *)id;
    t->m.source_system = (char *)"MES-1";
    t->m.site = (char *)SITE;
    t->m.type = type;
    t->m.material = (char *)"RM-101";
    t->m.lot = (char *)"LOT-7";
    t->m.location = (char *)location;
    t->m.uom = (char *)"EA";
    t->m.quantity = &t->q;
    t->m.order_id = (char *)"ORD-1";
}

static erp_posting_t posting(const char *posting_id, const erp_line_t *lines, size_t n) {
    erp_posting_t p = {
        .posting_id = posting_id,
        .site = SITE,
        .tier = "realtime",
        .policy_version = "pv1",
        .posting_time = 1795996273965,
        .lines = lines,
        .n_lines = n,
    };
    return p;
}

/* Post one movement as one line with its own quantity and id. */
static is_err_t post1(erp_t *erp, const char *posting_id, tmove_t *t, erp_result_t *r) {
    const char *ids[] = {t->m.movement_id};
    erp_line_t line = {&t->m, is_movement_qty(&t->m), ids, 1};
    erp_posting_t p = posting(posting_id, &line, 1);
    return erp_post(erp, &p, r);
}

/* Stock at LINE-1 / UNRESTRICTED in 10 EA, posting "P-SEED". */
static void seed10(erp_t *erp) {
    tmove_t t;
    erp_result_t r;
    tm_init(&t, "MV-SEED", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "10");
    t.m.order_id = (char *)"";
    assert_int_equal(post1(erp, "P-SEED", &t, &r), IS_OK);
}

/* On-hand rendered as "loc/STATUS=qty;" (material/lot are always RM-101/LOT-7 here) or in full. */
typedef struct render {
    char buf[1024];
    int full;  /* include site/material/lot/uom */
    int limit; /* stop after this many rows (0 = all) */
    int seen;
} render_t;

static int render_row(void *opaque, const erp_on_hand_row_t *row) {
    render_t *r = opaque;
    char q[IS_DECIMAL_STRLEN];
    size_t at = strlen(r->buf);
    is_decimal_format(row->quantity, q, sizeof q);
    if (r->full)
        snprintf(r->buf + at, sizeof r->buf - at, "%s/%s/%s/%s/%s/%s=%s;", row->site, row->material,
                 row->lot, row->location, is_stock_status_name(row->status), row->uom, q);
    else
        snprintf(r->buf + at, sizeof r->buf - at, "%s/%s=%s;", row->location,
                 is_stock_status_name(row->status), q);
    r->seen++;
    return r->limit && r->seen >= r->limit;
}

static const char *on_hand(erp_t *erp, render_t *r, const char *site) {
    char err[256];
    memset(r->buf, 0, sizeof r->buf);
    r->seen = 0;
    assert_int_equal(erp_query_on_hand(erp, site, render_row, r, err, sizeof err), IS_OK);
    return r->buf;
}

static erp_t *open_ledger(fixture_t *f, int allow_negative) {
    erp_config_t cfg = {
        .adapter = "sqlite", .sqlite_path = f->path, .allow_negative = allow_negative};
    erp_t *erp = NULL;
    char err[256];
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_OK);
    return erp;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_erp_sqlite.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/ledger.db", f->dir);
    f->erp = open_ledger(f, 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[320];
    erp_close(f->erp);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* The typed ledger on the same file (a second connection; WAL allows it). */
static erp_sqlite_t *typed(fixture_t *f) {
    erp_sqlite_t *l = NULL;
    char err[256];
    assert_int_equal(erp_sqlite_open_path(f->path, 0, &l, err, sizeof err), IS_OK);
    return l;
}

/* ---- the front ----------------------------------------------------------- */

static void test_unknown_adapter_is_config_error(void **state) {
    erp_config_t cfg = {.adapter = "sap"};
    erp_t *erp = NULL;
    char err[256];
    (void)state;
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_ERR_CONFIG);
    assert_null(erp);
    assert_string_equal(err, "unknown erp.adapter 'sap' (known: sqlite, http-json)");
    cfg.adapter = NULL;
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_ERR_CONFIG);
    erp_close(NULL);
}

static void test_sqlite_needs_a_path(void **state) {
    erp_config_t cfg = {.adapter = "sqlite"};
    erp_t *erp = NULL;
    char err[256];
    (void)state;
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_ERR_CONFIG);
    assert_non_null(strstr(err, "sqlite_path"));
}

/* ---- posting ------------------------------------------------------------- */

static void test_post_books_document_and_on_hand(void **state) {
    fixture_t *f = *state;
    tmove_t gi;
    erp_result_t r;
    render_t out = {0};

    assert_string_equal(erp_name(f->erp), "sqlite");
    seed10(f->erp);
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "4");
    assert_int_equal(post1(f->erp, "P-1", &gi, &r), IS_OK);
    assert_string_equal(r.document, "4900000002");
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=6;");

    assert_int_equal(erp_lookup_reference(f->erp, "P-1", &r), IS_OK);
    assert_string_equal(r.document, "4900000002");
    assert_int_equal(erp_lookup_reference(f->erp, "P-SEED", &r), IS_OK);
    assert_string_equal(r.document, "4900000001");
}

static void test_repost_same_posting_id_returns_same_document(void **state) {
    fixture_t *f = *state;
    erp_sqlite_t *l = typed(f);
    tmove_t gi;
    erp_result_t r1, r2;
    render_t out = {0};
    int replayed = -1;
    const char *ids[] = {"MV-1"};
    erp_line_t line;
    erp_posting_t p;

    seed10(f->erp);
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "4");
    line = (erp_line_t){&gi.m, dec("4"), ids, 1};
    p = posting("P-1", &line, 1);
    assert_int_equal(erp_sqlite_post(l, &p, &r1, &replayed), IS_OK);
    assert_int_equal(replayed, 0);
    assert_int_equal(erp_sqlite_post(l, &p, &r2, &replayed), IS_OK);
    assert_int_equal(replayed, 1);
    assert_string_equal(r1.document, r2.document);
    /* And through erp.h, from the other connection. */
    assert_int_equal(post1(f->erp, "P-1", &gi, &r2), IS_OK);
    assert_string_equal(r1.document, r2.document);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=6;");
    erp_sqlite_close(l);
}

static void test_insufficient_stock_is_permanent_and_changes_nothing(void **state) {
    fixture_t *f = *state;
    tmove_t a, b;
    const char *ia[] = {"MV-1"}, *ib[] = {"MV-2"};
    erp_line_t lines[2];
    erp_posting_t p;
    erp_result_t r;
    render_t out = {0};

    seed10(f->erp);
    tm_init(&a, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "4");
    tm_init(&b, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "7");
    lines[0] = (erp_line_t){&a.m, dec("4"), ia, 1};
    lines[1] = (erp_line_t){&b.m, dec("7"), ib, 1};
    p = posting("P-2", lines, 2);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_ERR_PERMANENT);
    assert_string_equal(r.message,
                        "insufficient stock: RM-101/LOT-7 at LINE-1 [UNRESTRICTED] has 6 EA, "
                        "line 2 needs 7 EA");
    assert_string_equal(r.document, "");
    /* Nothing of line 1 stayed, no document, and the number was not used up. */
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=10;");
    assert_int_equal(erp_lookup_reference(f->erp, "P-2", &r), IS_ERR_NOT_FOUND);
    assert_int_equal(post1(f->erp, "P-3", &a, &r), IS_OK);
    assert_string_equal(r.document, "4900000002");
}

static void test_insufficient_stock_message_shows_decimals(void **state) {
    fixture_t *f = *state;
    tmove_t adj, gi;
    erp_result_t r;

    tm_init(&adj, "MV-0", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "3.500");
    assert_int_equal(post1(f->erp, "P-0", &adj, &r), IS_OK);
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "5");
    assert_int_equal(post1(f->erp, "P-1", &gi, &r), IS_ERR_PERMANENT);
    assert_string_equal(r.message, "insufficient stock: RM-101/LOT-7 at LINE-1 [UNRESTRICTED] "
                                   "has 3.5 EA, line 1 needs 5 EA");
}

static void test_allow_negative_books_below_zero(void **state) {
    fixture_t *f = *state;
    tmove_t gi;
    erp_result_t r;
    render_t out = {0};

    erp_close(f->erp);
    f->erp = open_ledger(f, 1);
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "5");
    assert_int_equal(post1(f->erp, "P-1", &gi, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=-5;");
}

static void test_transfer_quarantine_release_effects(void **state) {
    fixture_t *f = *state;
    tmove_t tr, qu, rel, sc;
    erp_result_t r;
    render_t out = {0};

    seed10(f->erp);
    tm_init(&tr, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "LINE-1", "3");
    tr.m.to_location = (char *)"WH-2";
    assert_int_equal(post1(f->erp, "P-1", &tr, &r), IS_OK);
    tm_init(&qu, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE, "WH-2", "2");
    assert_int_equal(post1(f->erp, "P-2", &qu, &r), IS_OK);
    tm_init(&rel, "MV-3", INVSYNC__V1__MOVEMENT_TYPE__RELEASE, "WH-2", "0.5");
    assert_int_equal(post1(f->erp, "P-3", &rel, &r), IS_OK);
    tm_init(&sc, "MV-4", INVSYNC__V1__MOVEMENT_TYPE__SCRAP, "WH-2", "1");
    sc.m.from_status = INVSYNC__V1__STOCK_STATUS__BLOCKED;
    sc.m.reason_code = (char *)"DAMAGED";
    assert_int_equal(post1(f->erp, "P-4", &sc, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL),
                        "LINE-1/UNRESTRICTED=7;WH-2/BLOCKED=0.5;WH-2/UNRESTRICTED=1.5;");
    /* A transfer out of a location without enough stock is refused. */
    tm_init(&tr, "MV-5", INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "WH-2", "2");
    tr.m.to_location = (char *)"LINE-1";
    assert_int_equal(post1(f->erp, "P-5", &tr, &r), IS_ERR_PERMANENT);
    assert_non_null(strstr(r.message, "at WH-2 [UNRESTRICTED] has 1.5 EA, line 1 needs 2 EA"));
}

static void test_reversal_negates_the_original(void **state) {
    fixture_t *f = *state;
    tmove_t gi, rev, tr, trev;
    erp_result_t r;
    render_t out = {0};

    seed10(f->erp);
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "4");
    assert_int_equal(post1(f->erp, "P-1", &gi, &r), IS_OK);
    tm_init(&rev, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__REVERSAL, "LINE-1", "4");
    rev.m.reverses_movement_id = (char *)"MV-1";
    rev.m.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    assert_int_equal(post1(f->erp, "P-2", &rev, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=10;");

    /* Reversing a transfer whose stock already moved on is refused. */
    tm_init(&tr, "MV-3", INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "LINE-1", "3");
    tr.m.to_location = (char *)"WH-2";
    assert_int_equal(post1(f->erp, "P-3", &tr, &r), IS_OK);
    tm_init(&gi, "MV-4", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "WH-2", "2");
    assert_int_equal(post1(f->erp, "P-4", &gi, &r), IS_OK);
    tm_init(&trev, "MV-5", INVSYNC__V1__MOVEMENT_TYPE__REVERSAL, "LINE-1", "3");
    trev.m.to_location = (char *)"WH-2";
    trev.m.reverses_movement_id = (char *)"MV-3";
    trev.m.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__TRANSFER;
    assert_int_equal(post1(f->erp, "P-5", &trev, &r), IS_ERR_PERMANENT);
    assert_non_null(strstr(r.message, "at WH-2 [UNRESTRICTED] has 1 EA, line 1 needs 3 EA"));
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=7;WH-2/UNRESTRICTED=1;");
}

static void test_netted_line_uses_line_quantity_and_links_every_id(void **state) {
    fixture_t *f = *state;
    erp_sqlite_t *l = typed(f);
    tmove_t gi;
    const char *ids[] = {"MV-1", "MV-2", "MV-3"};
    erp_line_t line;
    erp_posting_t p;
    erp_result_t r;
    render_t out = {0};
    char doc[64];
    size_t n = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    seed10(f->erp);
    /* The representative movement says 1; the netted line is 6. */
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "1");
    line = (erp_line_t){&gi.m, dec("6.000"), ids, 3};
    p = posting("P-NET", &line, 1);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=4;");
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(erp_sqlite_document_of(l, ids[i], doc, sizeof doc, &n), IS_OK);
        assert_string_equal(doc, r.document);
        assert_int_equal(n, 1);
    }
    /* The ledger's own record of the line. */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT type, quantity, movement_ids, order_id, "
                                        "from_status FROM doc_lines WHERE doc_no = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, r.document, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "GOODS_ISSUE");
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "6.000");
    assert_string_equal((const char *)sqlite3_column_text(st, 2), "[\"MV-1\",\"MV-2\",\"MV-3\"]");
    assert_string_equal((const char *)sqlite3_column_text(st, 3), "ORD-1");
    assert_int_equal(sqlite3_column_type(st, 4), SQLITE_NULL);
    sqlite3_finalize(st);
    sqlite3_close(db);
    erp_sqlite_close(l);
}

/* One text value of a query on the ledger file (a separate connection). */
static void ledger_text(fixture_t *f, const char *sql, char *out, size_t size) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_batch_refusal_leaves_no_trace_and_holds_its_lot(void **state) {
    fixture_t *f = *state;
    tmove_t a, b1, b2, c, d;
    const char *ia[] = {"MV-A"}, *ib[] = {"MV-B1", "MV-B2"}, *ic[] = {"MV-C"}, *id[] = {"MV-D"};
    erp_line_t la, lb[2], lc, ld;
    erp_posting_t ps[5];
    erp_result_t res[5];
    is_err_t rcs[5];
    render_t out = {.full = 1};
    char v[256];

    seed10(f->erp); /* document 4900000001 */
    tm_init(&a, "MV-A", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "4");
    tm_init(&b1, "MV-B1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "3");
    tm_init(&b2, "MV-B2", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "7");
    tm_init(&c, "MV-C", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "1");
    tm_init(&d, "MV-D", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "5");
    d.m.lot = (char *)"LOT-8";
    la = (erp_line_t){&a.m, dec("4"), ia, 1};
    lb[0] = (erp_line_t){&b1.m, dec("3"), ib, 1};
    lb[1] = (erp_line_t){&b2.m, dec("7"), ib + 1, 1};
    lc = (erp_line_t){&c.m, dec("1"), ic, 1};
    ld = (erp_line_t){&d.m, dec("5"), id, 1};
    ps[0] = posting("P-A", &la, 1);
    ps[1] = posting("P-B", lb, 2);     /* needs 10, 6 left after P-A */
    ps[2] = posting("P-C", &lc, 1);    /* same lot after a refusal: held */
    ps[3] = posting("P-D", &ld, 1);    /* another lot: goes through */
    ps[4] = posting("P-SEED", &ld, 1); /* a replay inside the batch */
    for (size_t i = 0; i < 4; i++)
        ps[i].order_key = i < 3 ? "PLANT1/RM-101/LOT-7" : "PLANT1/RM-101/LOT-8";
    memset(res, 0, sizeof res);
    erp_post_batch(f->erp, ps, 5, res, rcs);

    assert_int_equal(rcs[0], IS_OK);
    assert_string_equal(res[0].document, "4900000002");
    assert_int_equal(rcs[1], IS_ERR_PERMANENT);
    assert_string_equal(res[1].message,
                        "insufficient stock: RM-101/LOT-7 at LINE-1 [UNRESTRICTED] has 3 EA, "
                        "line 2 needs 7 EA");
    assert_string_equal(res[1].document, "");
    assert_int_equal(rcs[2], IS_ERR_RETRYABLE);
    assert_int_equal(res[2].not_attempted, 1);
    assert_int_equal(rcs[3], IS_OK);
    assert_string_equal(res[3].document, "4900000003"); /* the refused one used no number */
    assert_int_equal(rcs[4], IS_OK);
    assert_string_equal(res[4].document, "4900000001");
    assert_string_equal(on_hand(f->erp, &out, NULL),
                        "PLANT1/RM-101/LOT-7/LINE-1/UNRESTRICTED/EA=6;"
                        "PLANT1/RM-101/LOT-8/LINE-1/UNRESTRICTED/EA=5;");
    assert_int_equal(erp_lookup_reference(f->erp, "P-B", &res[1]), IS_ERR_NOT_FOUND);
    ledger_text(f,
                "SELECT count(*) || '/' || (SELECT count(*) FROM doc_lines) || '/' || "
                "(SELECT count(*) FROM doc_movements) || '/' || (SELECT count(*) FROM "
                "doc_effects) || '/' || (SELECT value FROM ledger_counter) FROM documents",
                v, sizeof v);
    assert_string_equal(v, "3/3/3/3/4900000003");
}

static void test_batch_overflow_is_refused_alone(void **state) {
    fixture_t *f = *state;
    tmove_t a, b, c;
    const char *ia[] = {"MV-A"}, *ib[] = {"MV-B"}, *ic[] = {"MV-C"};
    erp_line_t la, lb, lc;
    erp_posting_t ps[3];
    erp_result_t res[3];
    is_err_t rcs[3];
    render_t out = {.full = 1};
    char v[256];

    /* allow_negative reads no bucket before writing: the write finds the overflow. */
    erp_close(f->erp);
    f->erp = open_ledger(f, 1);
    tm_init(&a, "MV-A", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "9000000000000");
    tm_init(&b, "MV-B", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1000000000000");
    tm_init(&c, "MV-C", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1");
    c.m.lot = (char *)"LOT-8";
    la = (erp_line_t){&a.m, dec("9000000000000"), ia, 1};
    lb = (erp_line_t){&b.m, dec("1000000000000"), ib, 1};
    lc = (erp_line_t){&c.m, dec("1"), ic, 1};
    ps[0] = posting("P-A", &la, 1);
    ps[1] = posting("P-B", &lb, 1);
    ps[2] = posting("P-C", &lc, 1);
    memset(res, 0, sizeof res);
    erp_post_batch(f->erp, ps, 3, res, rcs);

    assert_int_equal(rcs[0], IS_OK);
    assert_string_equal(res[0].document, "4900000001");
    assert_int_equal(rcs[1], IS_ERR_PERMANENT);
    assert_string_equal(res[1].message, "line 1: on-hand of RM-101/LOT-7 would overflow");
    assert_int_equal(rcs[2], IS_OK);
    assert_string_equal(res[2].document, "4900000002");
    assert_string_equal(on_hand(f->erp, &out, NULL),
                        "PLANT1/RM-101/LOT-7/LINE-1/UNRESTRICTED/EA=9000000000000;"
                        "PLANT1/RM-101/LOT-8/LINE-1/UNRESTRICTED/EA=1;");
    ledger_text(f,
                "SELECT count(*) || '/' || (SELECT count(*) FROM doc_effects) || '/' || "
                "(SELECT value FROM ledger_counter) FROM documents",
                v, sizeof v);
    assert_string_equal(v, "2/2/4900000002");
}

static void test_bucket_emptied_and_refilled_in_one_posting(void **state) {
    fixture_t *f = *state;
    tmove_t gi, adj, gi2;
    const char *ia[] = {"MV-1"}, *ib[] = {"MV-2"}, *ic[] = {"MV-3"};
    erp_line_t lines[2], l3;
    erp_posting_t p;
    erp_result_t r;
    render_t out = {0};
    char v[64];

    seed10(f->erp);
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "10");
    tm_init(&adj, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "5");
    lines[0] = (erp_line_t){&gi.m, dec("10"), ia, 1}; /* 10 -> 0: the row goes */
    lines[1] = (erp_line_t){&adj.m, dec("5"), ib, 1}; /* 0 -> 5: and comes back */
    p = posting("P-1", lines, 2);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=5;");
    tm_init(&gi2, "MV-3", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "5");
    l3 = (erp_line_t){&gi2.m, dec("5"), ic, 1};
    p = posting("P-2", &l3, 1);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_OK);
    ledger_text(f, "SELECT count(*) FROM on_hand", v, sizeof v);
    assert_string_equal(v, "0");
}

static void test_batch_moves_one_bucket_through_several_postings(void **state) {
    fixture_t *f = *state;
    tmove_t t[5];
    const char *ids[5][1] = {{"MV-1"}, {"MV-2"}, {"MV-3"}, {"MV-4"}, {"MV-5"}};
    static const char *const qty[5] = {"6", "5", "4", "2", "2"};
    erp_line_t lines[5];
    erp_posting_t ps[5];
    erp_result_t res[5];
    is_err_t rcs[5];
    char pid[5][8], v[64];
    render_t out = {0};

    seed10(f->erp);
    for (size_t i = 0; i < 5; i++) {
        tm_init(&t[i], ids[i][0],
                i == 3 ? INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT
                       : INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE,
                "LINE-1", qty[i]);
        lines[i] = (erp_line_t){&t[i].m, dec(qty[i]), ids[i], 1};
        snprintf(pid[i], sizeof pid[i], "P-%zu", i + 1);
        ps[i] = posting(pid[i], &lines[i], 1);
    }
    /* 10 -6-> 4, -5 refused (has 4), -4-> 0 (row goes), +2-> 2 (row back). */
    memset(res, 0, sizeof res);
    erp_post_batch(f->erp, ps, 4, res, rcs);
    assert_int_equal(rcs[0], IS_OK);
    assert_int_equal(rcs[1], IS_ERR_PERMANENT);
    assert_string_equal(res[1].message,
                        "insufficient stock: RM-101/LOT-7 at LINE-1 [UNRESTRICTED] has 4 EA, "
                        "line 1 needs 5 EA");
    assert_int_equal(rcs[2], IS_OK);
    assert_int_equal(rcs[3], IS_OK);
    assert_string_equal(res[3].document, "4900000004");
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=2;");
    /* Re-sent with one more: the replays change nothing, the last one empties the bucket. */
    memset(res, 0, sizeof res);
    erp_post_batch(f->erp, ps, 5, res, rcs);
    assert_int_equal(rcs[0], IS_OK);
    assert_string_equal(res[0].document, "4900000002");
    assert_int_equal(rcs[1], IS_ERR_PERMANENT);
    assert_string_equal(res[1].message,
                        "insufficient stock: RM-101/LOT-7 at LINE-1 [UNRESTRICTED] has 2 EA, "
                        "line 1 needs 5 EA");
    assert_int_equal(rcs[4], IS_OK);
    assert_string_equal(res[4].document, "4900000005");
    ledger_text(f, "SELECT count(*) FROM on_hand", v, sizeof v);
    assert_string_equal(v, "0");
}

static void test_movement_ids_are_json_escaped(void **state) {
    fixture_t *f = *state;
    tmove_t a, b;
    const char *ia[] = {"MV-\"q\"", "MV-\\b", "MV-\t"};
    erp_line_t la, lb;
    erp_posting_t p;
    erp_result_t r;
    char v[256];

    seed10(f->erp);
    tm_init(&a, "MV-x", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "1");
    la = (erp_line_t){&a.m, dec("1"), ia, 3};
    p = posting("P-1", &la, 1);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_OK);
    ledger_text(f, "SELECT movement_ids FROM doc_lines WHERE doc_no = '4900000002'", v, sizeof v);
    assert_string_equal(v, "[\"MV-\\\"q\\\"\",\"MV-\\\\b\",\"MV-\\t\"]");
    /* No ids: the movement's own (UTF-8 kept as is). */
    tm_init(&b, "MV-\xc3\xa9", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "1");
    lb = (erp_line_t){&b.m, dec("1"), NULL, 0};
    p = posting("P-2", &lb, 1);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_OK);
    ledger_text(f, "SELECT movement_ids FROM doc_lines WHERE doc_no = '4900000003'", v, sizeof v);
    assert_string_equal(v, "[\"MV-\xc3\xa9\"]");
}

static void test_more_than_six_decimals_is_permanent(void **state) {
    fixture_t *f = *state;
    tmove_t adj;
    erp_result_t r;
    render_t out = {0};

    tm_init(&adj, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1.0000001");
    assert_int_equal(post1(f->erp, "P-1", &adj, &r), IS_ERR_PERMANENT);
    assert_non_null(strstr(r.message, "more than 6 decimal places"));
    assert_int_equal(erp_lookup_reference(f->erp, "P-1", &r), IS_ERR_NOT_FOUND);
    /* Seven places that lose nothing are exact at scale 6 and accepted. */
    tm_init(&adj, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1.2500000");
    assert_int_equal(post1(f->erp, "P-2", &adj, &r), IS_OK);
    tm_init(&adj, "MV-3", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "0.000001");
    assert_int_equal(post1(f->erp, "P-3", &adj, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=1.250001;");
}

static void test_bad_quantities_and_lines_are_permanent(void **state) {
    fixture_t *f = *state;
    tmove_t gi, adj, bad;
    erp_result_t r;
    erp_posting_t p;

    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "-1");
    assert_int_equal(post1(f->erp, "P-1", &gi, &r), IS_ERR_PERMANENT);
    assert_non_null(strstr(r.message, "not valid for GOODS_ISSUE"));
    tm_init(&gi, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "LINE-1", "0");
    assert_int_equal(post1(f->erp, "P-1", &gi, &r), IS_ERR_PERMANENT);
    tm_init(&adj, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "0");
    assert_int_equal(post1(f->erp, "P-2", &adj, &r), IS_ERR_PERMANENT);
    tm_init(&bad, "MV-3", INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "LINE-1", "1");
    assert_int_equal(post1(f->erp, "P-3", &bad, &r), IS_ERR_PERMANENT); /* no to_location */
    assert_non_null(strstr(r.message, "needs a location"));
    tm_init(&bad, "MV-4", INVSYNC__V1__MOVEMENT_TYPE__MOVEMENT_TYPE_UNSPECIFIED, "LINE-1", "1");
    assert_int_equal(post1(f->erp, "P-4", &bad, &r), IS_ERR_PERMANENT);
    p = posting("P-5", NULL, 0);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_ERR_PERMANENT);
    assert_non_null(strstr(r.message, "no lines"));
    p = posting("", &(erp_line_t){&gi.m, dec("1"), NULL, 0}, 1);
    assert_int_equal(erp_post(f->erp, &p, &r), IS_ERR_PERMANENT);
}

/* ---- lookups and the on-hand query --------------------------------------- */

static void test_lookup_unknown_is_not_found(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    assert_int_equal(erp_lookup_reference(f->erp, "0123456789abcdef0123456789abcdef", &r),
                     IS_ERR_NOT_FOUND);
    assert_string_equal(r.document, "");
    assert_non_null(strstr(r.message, "not found"));
}

static void test_query_on_hand_order_filter_and_zero_rows(void **state) {
    fixture_t *f = *state;
    tmove_t t;
    erp_result_t r;
    render_t out = {.full = 1};

    tm_init(&t, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "2.500");
    t.m.material = (char *)"RM-200";
    assert_int_equal(post1(f->erp, "P-1", &t, &r), IS_OK);
    tm_init(&t, "MV-2", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "3");
    assert_int_equal(post1(f->erp, "P-2", &t, &r), IS_OK);
    tm_init(&t, "MV-3", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "A-LOC", "1");
    t.m.site = (char *)"PLANT2";
    assert_int_equal(post1(f->erp, "P-3", &t, &r), IS_OK);
    tm_init(&t, "MV-4", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "ZERO", "1");
    assert_int_equal(post1(f->erp, "P-4", &t, &r), IS_OK);
    tm_init(&t, "MV-5", INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "ZERO", "1");
    assert_int_equal(post1(f->erp, "P-5", &t, &r), IS_OK);

    assert_string_equal(on_hand(f->erp, &out, NULL),
                        "PLANT1/RM-101/LOT-7/LINE-1/UNRESTRICTED/EA=3;"
                        "PLANT1/RM-200/LOT-7/LINE-1/UNRESTRICTED/EA=2.5;"
                        "PLANT2/RM-101/LOT-7/A-LOC/UNRESTRICTED/EA=1;");
    assert_string_equal(on_hand(f->erp, &out, "PLANT2"),
                        "PLANT2/RM-101/LOT-7/A-LOC/UNRESTRICTED/EA=1;");
    assert_string_equal(on_hand(f->erp, &out, "NOWHERE"), "");
    out.limit = 1;
    assert_string_equal(on_hand(f->erp, &out, NULL),
                        "PLANT1/RM-101/LOT-7/LINE-1/UNRESTRICTED/EA=3;");
}

/* ---- forensic helpers ----------------------------------------------------- */

static void test_document_of_reports_double_posting(void **state) {
    fixture_t *f = *state;
    erp_sqlite_t *l = typed(f);
    tmove_t adj;
    erp_result_t r1, r2;
    char doc[64];
    size_t n = 0;

    assert_int_equal(erp_sqlite_document_of(l, "MV-1", doc, sizeof doc, &n), IS_ERR_NOT_FOUND);
    assert_int_equal(n, 0);
    tm_init(&adj, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1");
    assert_int_equal(post1(f->erp, "P-1", &adj, &r1), IS_OK);
    /* The same movement under another posting id: a consumer bug the ledger must expose. */
    assert_int_equal(post1(f->erp, "P-2", &adj, &r2), IS_OK);
    assert_string_not_equal(r1.document, r2.document);
    assert_int_equal(erp_sqlite_document_of(l, "MV-1", doc, sizeof doc, &n), IS_ERR_CONFLICT);
    assert_int_equal(n, 2);
    assert_string_equal(doc, r1.document);
    erp_sqlite_close(l);
}

static void test_delete_posting_reverses_its_effects(void **state) {
    fixture_t *f = *state;
    erp_sqlite_t *l = typed(f);
    tmove_t tr;
    erp_result_t r;
    render_t out = {0};
    char doc[64];

    seed10(f->erp);
    tm_init(&tr, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "LINE-1", "4");
    tr.m.to_location = (char *)"WH-2";
    assert_int_equal(post1(f->erp, "P-1", &tr, &r), IS_OK);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=6;WH-2/UNRESTRICTED=4;");

    assert_int_equal(erp_sqlite_delete_posting(l, "P-1", doc, sizeof doc), IS_OK);
    assert_string_equal(doc, r.document);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=10;");
    assert_int_equal(erp_lookup_reference(f->erp, "P-1", &r), IS_ERR_NOT_FOUND);
    assert_int_equal(erp_sqlite_document_of(l, "MV-1", doc, sizeof doc, NULL), IS_ERR_NOT_FOUND);
    assert_int_equal(erp_sqlite_delete_posting(l, "P-1", NULL, 0), IS_ERR_NOT_FOUND);

    /* Posting it again books it again, under a new number (numbers are never reused). */
    assert_int_equal(post1(f->erp, "P-1", &tr, &r), IS_OK);
    assert_string_equal(r.document, "4900000003");
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=6;WH-2/UNRESTRICTED=4;");
    erp_sqlite_close(l);
}

static void test_locked_ledger_is_retryable(void **state) {
    fixture_t *f = *state;
    erp_sqlite_t *l = typed(f);
    tmove_t adj;
    const char *ids[] = {"MV-1"};
    erp_line_t line;
    erp_posting_t p;
    erp_result_t r;
    sqlite3 *other = NULL;

    tm_init(&adj, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1");
    line = (erp_line_t){&adj.m, dec("1"), ids, 1};
    p = posting("P-1", &line, 1);
    erp_sqlite_set_busy_timeout(l, 20);
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(erp_sqlite_post(l, &p, &r, NULL), IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "busy"));
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(erp_sqlite_post(l, &p, &r, NULL), IS_OK);
    erp_sqlite_close(l);
}

static void test_ledger_survives_reopen(void **state) {
    fixture_t *f = *state;
    tmove_t adj;
    erp_result_t r1, r2;
    render_t out = {0};

    tm_init(&adj, "MV-1", INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "LINE-1", "1");
    assert_int_equal(post1(f->erp, "P-1", &adj, &r1), IS_OK);
    erp_close(f->erp);
    f->erp = open_ledger(f, 0);
    assert_int_equal(post1(f->erp, "P-1", &adj, &r2), IS_OK);
    assert_string_equal(r1.document, r2.document);
    assert_string_equal(on_hand(f->erp, &out, NULL), "LINE-1/UNRESTRICTED=1;");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_adapter_is_config_error),
        cmocka_unit_test(test_sqlite_needs_a_path),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_post_books_document_and_on_hand),
        T(test_repost_same_posting_id_returns_same_document),
        T(test_insufficient_stock_is_permanent_and_changes_nothing),
        T(test_insufficient_stock_message_shows_decimals),
        T(test_allow_negative_books_below_zero),
        T(test_transfer_quarantine_release_effects),
        T(test_reversal_negates_the_original),
        T(test_netted_line_uses_line_quantity_and_links_every_id),
        T(test_batch_refusal_leaves_no_trace_and_holds_its_lot),
        T(test_batch_overflow_is_refused_alone),
        T(test_batch_moves_one_bucket_through_several_postings),
        T(test_movement_ids_are_json_escaped),
        T(test_bucket_emptied_and_refilled_in_one_posting),
        T(test_more_than_six_decimals_is_permanent),
        T(test_bad_quantities_and_lines_are_permanent),
        T(test_lookup_unknown_is_not_found),
        T(test_query_on_hand_order_filter_and_zero_rows),
        T(test_document_of_reports_double_posting),
        T(test_delete_posting_reverses_its_effects),
        T(test_locked_ledger_is_retryable),
        T(test_ledger_survives_reopen),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
