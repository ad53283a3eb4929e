/*
 * test_ingest.c — unit tests for mes-producer/ingest.c, driving the handler
 * core ingest_movements() directly (no libmicrohttpd): every refusal (401,
 * 415, 400, 413, 403, 422, 409) with its body, and that nothing reaches the
 * outbox after any of them; 202 with accepted / duplicate items, sequences
 * and tiers; JSON object, JSON array and protobuf bodies (strings must be
 * UTF-8 without NULs); reversals checked against their originals; the health,
 * readiness and metrics handlers.
 *
 * Each test gets a fresh mkdtemp directory holding a two-tier policy and an
 * outbox file; the clock is fixed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "httpd.h"
#include "ingest.h"
#include "json_arena.h"
#include "log.h"
#include "movement_json.h"

#define T0      1767261600000LL /* 2026-01-01T10:00:00Z */
#define TOK_P1  "tok-p1-secret"
#define TOK_ALL "tok-all-secret"
#define CT      "application/json"

static const char POLICY[] = "topic_prefix: invsync\n"
                             "tiers:\n"
                             "  realtime: {cadence: immediate, stale_after: 2m}\n"
                             "  periodic: {cadence: every 30m, stale_after: 90m}\n"
                             "rules:\n"
                             "  - {when: {type: [QUARANTINE, RELEASE]}, tier: realtime}\n"
                             "default_tier: periodic\n";

typedef struct fixture {
    char dir[256];
    char policy_path[300];
    char outbox_path[300];
    is_policy_t *policy;
    outbox_t *ob;
    producer_metrics_t *pm;
    is_strmap_t tokens;
    is_strlist_t refused;
    ingest_t *ig;
    is_clock_t clock;
    /* last answer */
    int status;
    json_t *body;
    char raw[8192];
    char header[128];
} fixture_t;

static int64_t fixed_now(void *opaque) {
    (void)opaque;
    return T0;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    char err[512] = "";
    static char *refused_items[] = {"ERP-PROD"};
    ingest_opts_t o;
    FILE *fp;

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_ingest.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->policy_path, sizeof f->policy_path, "%s/policy.yaml", f->dir);
    snprintf(f->outbox_path, sizeof f->outbox_path, "%s/outbox.db", f->dir);
    fp = fopen(f->policy_path, "w");
    if (!fp)
        return -1;
    fputs(POLICY, fp);
    fclose(fp);
    if (is_policy_load(f->policy_path, &f->policy, err, sizeof err) != IS_OK) {
        fprintf(stderr, "policy: %s\n", err);
        return -1;
    }
    if (outbox_open(f->outbox_path, IS_DB_SYNC_OFF, "prod-t", &f->ob, err, sizeof err) != IS_OK) {
        fprintf(stderr, "outbox: %s\n", err);
        return -1;
    }
    f->pm = producer_metrics_new();
    if (is_strmap_set(&f->tokens, "P1", TOK_P1) != IS_OK ||
        is_strmap_set(&f->tokens, "*", TOK_ALL) != IS_OK)
        return -1;
    f->refused.n = 1;
    f->refused.items = refused_items; /* borrowed: never released */
    f->clock.now_ms = fixed_now;
    memset(&o, 0, sizeof o);
    o.outbox = f->ob;
    o.policy = f->policy;
    o.tokens = &f->tokens;
    o.refused_sources = &f->refused;
    o.max_scale = 3;
    o.max_items = 3;
    o.metrics = f->pm;
    o.clock = &f->clock;
    if (ingest_new(&o, &f->ig, err, sizeof err) != IS_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    const char *files[] = {"policy.yaml", "outbox.db", "outbox.db-wal", "outbox.db-shm"};
    size_t i;

    json_decref(f->body);
    ingest_destroy(f->ig);
    outbox_destroy(f->ob);
    producer_metrics_destroy(f->pm);
    is_policy_destroy(f->policy);
    is_strmap_release(&f->tokens);
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[320];
        snprintf(p, sizeof p, "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Run the handler core; keeps status, raw body, parsed JSON body, extra header. */
static int post(fixture_t *f, const char *ct, const char *bearer, const char *body, size_t len) {
    is_http_response_t resp;
    json_error_t jerr;

    memset(&resp, 0, sizeof resp);
    resp.status = 200;
    ingest_movements(f->ig, ct, bearer, body, len, &resp);
    json_decref(f->body);
    f->body = NULL;
    f->status = resp.status;
    snprintf(f->raw, sizeof f->raw, "%.*s", (int)resp.body_len, resp.body ? resp.body : "");
    snprintf(f->header, sizeof f->header, "%s", resp.extra_header);
    if (resp.body)
        f->body = json_loadb(resp.body, resp.body_len, 0, &jerr);
    free(resp.body);
    assert_non_null(f->body); /* every answer is JSON */
    return f->status;
}

static int post_json(fixture_t *f, const char *bearer, const char *body) {
    return post(f, CT, bearer, body, strlen(body));
}

static const char *body_str(fixture_t *f, const char *key) {
    return json_string_value(json_object_get(f->body, key));
}

/* A goods issue as the MES sends it. */
static const char *gi(char *buf, size_t size, const char *id, const char *site, const char *qty) {
    snprintf(buf, size,
             "{\"movement_id\":\"%s\",\"source_system\":\"MES-1\",\"site\":\"%s\","
             "\"type\":\"GOODS_ISSUE\",\"material\":\"MAT-1\",\"lot\":\"LOT-1\","
             "\"location\":\"A-01\",\"quantity\":\"%s\",\"uom\":\"KG\",\"order_id\":\"ORD-1\","
             "\"event_time\":\"2026-01-01T09:59:00Z\"}",
             id, site, qty);
    return buf;
}

static uint64_t stored(fixture_t *f) {
    uint64_t n;
    int64_t oldest;
    assert_int_equal(outbox_backlog(f->ob, &n, &oldest), IS_OK);
    return n;
}

/* ---- refusals ---------------------------------------------------------- */

static void test_401_missing_or_unknown_token(void **state) {
    fixture_t *f = *state;
    char m[1024];

    gi(m, sizeof m, "MV-1", "P1", "1");
    assert_int_equal(post_json(f, NULL, m), 401);
    assert_string_equal(body_str(f, "error"), "missing bearer token");
    assert_non_null(strstr(f->header, "WWW-Authenticate"));
    /* An Authorization header that is not "Bearer <token>" is named as such. */
    assert_int_equal(post_json(f, "", m), 401);
    assert_string_equal(body_str(f, "error"),
                        "malformed Authorization header: expected 'Bearer <token>'");
    assert_non_null(strstr(f->header, "WWW-Authenticate"));
    assert_int_equal(post_json(f, "nope", m), 401);
    assert_string_equal(body_str(f, "error"), "unknown token");
    /* The answer never echoes a token. */
    assert_null(strstr(f->raw, "nope"));
    assert_int_equal(stored(f), 0);
}

static void test_415_other_content_type(void **state) {
    fixture_t *f = *state;
    char m[1024];

    gi(m, sizeof m, "MV-1", "P1", "1");
    assert_int_equal(post(f, "text/plain", TOK_P1, m, strlen(m)), 415);
    assert_non_null(strstr(body_str(f, "error"), "'text/plain'"));
    assert_non_null(strstr(body_str(f, "error"), "application/json"));
    assert_non_null(strstr(body_str(f, "error"), "application/x-protobuf"));
    assert_int_equal(post(f, NULL, TOK_P1, m, strlen(m)), 415);
    /* Parameters and case do not matter. */
    assert_int_equal(post(f, "Application/JSON; charset=utf-8", TOK_P1, m, strlen(m)), 202);
}

static void test_400_malformed_json(void **state) {
    fixture_t *f = *state;
    const char *bad = "[{\"movement_id\": \"MV-1\",\n \"site\": }]";

    assert_int_equal(post_json(f, TOK_P1, bad), 400);
    assert_non_null(strstr(body_str(f, "error"), "malformed JSON at line 2"));
    assert_int_equal(json_integer_value(json_object_get(f->body, "line")), 2);
    assert_true(json_integer_value(json_object_get(f->body, "column")) > 0);
    /* A NUL in a string: the reason, not jansson's flag name. */
    assert_int_equal(post_json(f, TOK_P1, "{\"movement_id\": \"MV\\u0000\"}"), 400);
    assert_non_null(strstr(body_str(f, "error"), "\\u0000 (NUL) is not allowed in a string"));
    assert_null(strstr(body_str(f, "error"), "JSON_ALLOW_NUL"));
    assert_int_equal(post_json(f, TOK_P1, ""), 400);
    assert_string_equal(body_str(f, "error"),
                        "empty body: send one JSON movement or an array of them");
    assert_int_equal(post_json(f, TOK_P1, " \r\n"), 400);
    assert_non_null(strstr(body_str(f, "error"), "empty body"));
    /* The body is its len bytes, NUL-terminated or not. */
    assert_int_equal(post(f, CT, TOK_P1, " \n\t", 1), 400);
    assert_non_null(strstr(body_str(f, "error"), "empty body"));
    assert_int_equal(post_json(f, TOK_P1, "[1, 2"), 400);
    assert_int_equal(stored(f), 0);
}

/* A UTF-8 byte order mark before the JSON (RFC 8259 §8.1 lets a parser
 * ignore it; Windows tools write one) is skipped. Before, it was a 400
 * quoting the invisible mark: "'[' or '{' expected near ''". */
static void test_utf8_bom_is_ignored(void **state) {
    fixture_t *f = *state;
    char body[1200], m[1024];
    json_int_t pos, col;

    gi(m, sizeof m, "MV-BOM", "P1", "1");
    snprintf(body, sizeof body, "\xef\xbb\xbf%s", m);
    assert_int_equal(post_json(f, TOK_P1, body), 202);
    assert_int_equal(stored(f), 1);
    /* Malformed after the mark: the position counts the body's bytes, the
     * column what an editor shows. */
    assert_int_equal(post_json(f, TOK_P1, "{\"a\" 1}"), 400);
    pos = json_integer_value(json_object_get(f->body, "position"));
    col = json_integer_value(json_object_get(f->body, "column"));
    assert_int_equal(post_json(f, TOK_P1, "\xef\xbb\xbf{\"a\" 1}"), 400);
    assert_int_equal(json_integer_value(json_object_get(f->body, "position")), pos + 3);
    assert_int_equal(json_integer_value(json_object_get(f->body, "column")), col);
    assert_int_equal(post_json(f, TOK_P1, "\xef\xbb\xbf \n"), 400);
    assert_non_null(strstr(body_str(f, "error"), "empty body"));
    /* Only at the start. */
    snprintf(body, sizeof body, "[\xef\xbb\xbf%s]", m);
    assert_int_equal(post_json(f, TOK_P1, body), 400);
    assert_int_equal(stored(f), 1);
}

static void test_400_empty_array(void **state) {
    fixture_t *f = *state;
    assert_int_equal(post_json(f, TOK_P1, "[]"), 400);
    assert_non_null(strstr(body_str(f, "error"), "no movements"));
}

static void test_400_undecodable_protobuf(void **state) {
    fixture_t *f = *state;
    static const char junk[] = "\x0a\xff\xff\xff\xff\x0f";
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, junk, sizeof junk - 1), 400);
    assert_string_equal(body_str(f, "error"), "body is not a valid protobuf MovementBatch");
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, "", 0), 400); /* empty batch */
    assert_int_equal(stored(f), 0);
}

static void test_413_too_many_items(void **state) {
    fixture_t *f = *state;
    char body[8192], m[4][1024];
    size_t i;

    for (i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "MV-%zu", i);
        gi(m[i], sizeof m[i], id, "P1", "1");
    }
    snprintf(body, sizeof body, "[%s,%s,%s,%s]", m[0], m[1], m[2], m[3]);
    assert_int_equal(post_json(f, TOK_P1, body), 413);
    assert_non_null(strstr(body_str(f, "error"), "at most 3 (http.max_items)"));
    assert_int_equal(stored(f), 0);
    snprintf(body, sizeof body, "[%s,%s,%s]", m[0], m[1], m[2]);
    assert_int_equal(post_json(f, TOK_P1, body), 202);
}

static void test_403_token_not_for_site(void **state) {
    fixture_t *f = *state;
    char body[4096], a[1024], b[1024];
    uint64_t seq;

    gi(a, sizeof a, "MV-1", "P1", "1");
    gi(b, sizeof b, "MV-2", "P2", "1");
    snprintf(body, sizeof body, "[%s,%s]", a, b);
    assert_int_equal(post_json(f, TOK_P1, body), 403);
    assert_non_null(strstr(body_str(f, "error"), "'P2'"));
    assert_int_equal(json_integer_value(json_object_get(f->body, "index")), 1);
    assert_int_equal(stored(f), 0);
    assert_int_equal(outbox_last_seq(f->ob, "P1", &seq), IS_OK);
    assert_int_equal(seq, 0);
    /* The "*" token may write any site. */
    assert_int_equal(post_json(f, TOK_ALL, body), 202);
    assert_int_equal(stored(f), 2);
}

/* The 422 entry for index i and field, or NULL. */
static json_t *find_error(fixture_t *f, json_int_t index, const char *field) {
    json_t *errs = json_object_get(f->body, "errors"), *e;
    size_t i;
    json_array_foreach(errs, i, e) {
        if (json_integer_value(json_object_get(e, "index")) == index &&
            strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
            return e;
    }
    return NULL;
}

static void test_422_collects_every_item_error(void **state) {
    fixture_t *f = *state;
    char body[8192], ok[1024], badqty[1024], erp[1024];
    json_t *e;

    gi(ok, sizeof ok, "MV-1", "P1", "1");
    gi(badqty, sizeof badqty, "MV-2", "P1", "1.2345"); /* scale 4 > max 3 */
    gi(erp, sizeof erp, "MV-3", "P1", "-2");           /* negative goods issue */
    /* refused source (loop guard) */
    {
        char *p = strstr(erp, "MES-1");
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%.*sERP-PROD%s", (int)(p - erp), erp, p + 5);
        snprintf(erp, sizeof erp, "%s", tmp);
    }
    snprintf(body, sizeof body, "[%s,%s,%s]", ok, badqty, erp);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    assert_string_equal(body_str(f, "error"), "validation failed");
    e = find_error(f, 1, "quantity");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "movement_id")), "MV-2");
    assert_non_null(find_error(f, 2, "quantity"));
    assert_non_null(find_error(f, 2, "source_system"));
    assert_null(find_error(f, 0, "quantity"));
    assert_int_equal(stored(f), 0);

    /* A non-object element and an unknown field are item errors too. */
    snprintf(body, sizeof body, "[%s, 7, {\"movement_id\":\"MV-9\",\"sitee\":\"P1\"}]", ok);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    assert_non_null(find_error(f, 1, "movement"));
    e = json_array_get(json_object_get(f->body, "errors"), 1);
    assert_int_equal(json_integer_value(json_object_get(e, "index")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "movement_id")), "MV-9");
    assert_int_equal(stored(f), 0);
}

/* A quantity that cannot be read ("12,5") does not hide the item's other errors, and the
 * quantity is not also reported "required". */
static void test_422_unreadable_quantity_keeps_other_errors(void **state) {
    fixture_t *f = *state;
    char body[2048], ok[1024];
    json_t *errs, *e;
    size_t i, n_qty = 0;

    gi(ok, sizeof ok, "MV-1", "P1", "1");
    snprintf(body, sizeof body,
             "[%s,{\"movement_id\":\"MV-2\",\"source_system\":\"MES-1\",\"site\":\"P1\","
             "\"type\":\"SCRAP\",\"material\":\"MAT-1\",\"lot\":\"LOT-1\",\"location\":"
             "\"A-01\",\"quantity\":\"12,5\",\"uom\":\"KG\",\"event_time\":\"yesterday\"}]",
             ok);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    e = find_error(f, 1, "quantity");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "movement_id")), "MV-2");
    assert_non_null(strstr(json_string_value(json_object_get(e, "error")), "decimal"));
    assert_non_null(find_error(f, 1, "event_time"));
    e = find_error(f, 1, "reason_code");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "error")), "is required");
    assert_string_equal(json_string_value(json_object_get(e, "movement_id")), "MV-2");
    errs = json_object_get(f->body, "errors");
    json_array_foreach(errs, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "field")), "quantity") == 0)
            n_qty++;
    }
    assert_int_equal(n_qty, 1);
    assert_int_equal(json_integer_value(json_object_get(f->body, "error_count")), 3);
    assert_null(find_error(f, 0, "quantity"));
    assert_int_equal(stored(f), 0);
}

/* An error message cut at its fixed size ("unknown value '%.64s'", a field
 * name's 48 bytes) in the middle of a multi-byte character still lists its
 * entry, without the partial character. Before, jansson refused the entry
 * and the 422 said "validation failed" with an empty "errors" list. */
static void test_422_entry_kept_when_message_cut_mid_character(void **state) {
    fixture_t *f = *state;
    char body[4096], m[1024], q[1024], word[128], *p;
    json_t *e;
    size_t i;

    /* "x" then 40 × "É" (2 bytes): every cut at an even byte count is mid-character. */
    p = word + snprintf(word, sizeof word, "x");
    for (i = 0; i < 40; i++)
        p += snprintf(p, sizeof word - (size_t)(p - word), "\xc3\x89");
    gi(m, sizeof m, "MV-1", "P1", "1");
    gi(q, sizeof q, "MV-2", "P1", word);
    p = strstr(m, "GOODS_ISSUE");
    snprintf(body, sizeof body, "[%.*s%s%s, %s, %.*s,\"%s\":1}]", (int)(p - m), m, word,
             p + strlen("GOODS_ISSUE"), q, (int)(strlen(m) - 1), m, word);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    assert_int_equal(json_integer_value(json_object_get(f->body, "error_count")), 3);
    assert_int_equal(json_array_size(json_object_get(f->body, "errors")), 3);
    e = find_error(f, 0, "type");
    assert_non_null(e);
    assert_non_null(
        strstr(json_string_value(json_object_get(e, "error")), "unknown value 'x\xc3\x89"));
    e = find_error(f, 1, "quantity");
    assert_non_null(e);
    assert_non_null(
        strstr(json_string_value(json_object_get(e, "error")), "is not a decimal number"));
    e = json_array_get(json_object_get(f->body, "errors"), 2);
    assert_int_equal(json_integer_value(json_object_get(e, "index")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "error")), "unknown field");
    assert_int_equal(strncmp(json_string_value(json_object_get(e, "field")), word, 40), 0);
    assert_int_equal(stored(f), 0);
}

static void test_409_conflict_stores_nothing(void **state) {
    fixture_t *f = *state;
    char body[4096], a[1024], a2[1024], b[1024];
    json_t *c;
    uint64_t seq;

    gi(a, sizeof a, "MV-1", "P1", "1");
    assert_int_equal(post_json(f, TOK_P1, a), 202);
    gi(b, sizeof b, "MV-2", "P1", "1");
    gi(a2, sizeof a2, "MV-1", "P1", "2"); /* same id, other quantity */
    snprintf(body, sizeof body, "[%s,%s]", b, a2);
    assert_int_equal(post_json(f, TOK_P1, body), 409);
    assert_string_equal(body_str(f, "error"), "movement_id 'MV-1' from source 'MES-1' was already "
                                              "accepted with different content");
    c = json_array_get(json_object_get(f->body, "conflicts"), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "index")), 1);
    assert_string_equal(json_string_value(json_object_get(c, "movement_id")), "MV-1");
    assert_int_equal(json_array_size(json_object_get(f->body, "conflicts")), 1);
    assert_int_equal(stored(f), 1);
    assert_int_equal(outbox_last_seq(f->ob, "P1", &seq), IS_OK);
    assert_int_equal(seq, 1);

    /* Twice in one request with different content: nothing of it is stored. */
    gi(a, sizeof a, "MV-7", "P1", "1");
    gi(a2, sizeof a2, "MV-7", "P1", "2");
    snprintf(body, sizeof body, "[%s,%s]", a, a2);
    assert_int_equal(post_json(f, TOK_P1, body), 409);
    assert_string_equal(body_str(f, "error"),
                        "movement_id 'MV-7' from source 'MES-1' appears twice in this request"
                        " with different content; nothing of the request was stored");
    assert_int_equal(stored(f), 1);
}

/* ---- acceptance -------------------------------------------------------- */

static void test_202_accepted_then_duplicate(void **state) {
    fixture_t *f = *state;
    char body[4096], a[1024], q[1024];
    json_t *items, *it;

    gi(a, sizeof a, "MV-1", "P1", "1.5");
    snprintf(q, sizeof q,
             "{\"movement_id\":\"MV-Q\",\"source_system\":\"MES-1\",\"site\":\"P1\","
             "\"type\":\"QUARANTINE\",\"material\":\"MAT-1\",\"lot\":\"LOT-1\","
             "\"location\":\"A-01\",\"quantity\":\"3\",\"uom\":\"KG\","
             "\"from_status\":\"UNRESTRICTED\",\"to_status\":\"BLOCKED\"}");
    snprintf(body, sizeof body, "[%s,%s]", a, q);
    assert_int_equal(post_json(f, TOK_P1, body), 202);
    assert_int_equal(json_integer_value(json_object_get(f->body, "accepted")), 2);
    assert_int_equal(json_integer_value(json_object_get(f->body, "duplicates")), 0);
    items = json_object_get(f->body, "items");
    it = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(it, "movement_id")), "MV-1");
    assert_string_equal(json_string_value(json_object_get(it, "tier")), "periodic");
    assert_string_equal(json_string_value(json_object_get(it, "status")), "accepted");
    assert_int_equal(json_integer_value(json_object_get(it, "sequence")), 1);
    it = json_array_get(items, 1);
    assert_string_equal(json_string_value(json_object_get(it, "tier")), "realtime");
    assert_int_equal(json_integer_value(json_object_get(it, "sequence")), 2);
    assert_int_equal(stored(f), 2);

    /* The MES retries the same request: duplicates, same sequences, nothing new. */
    assert_int_equal(post_json(f, TOK_P1, body), 202);
    assert_int_equal(json_integer_value(json_object_get(f->body, "accepted")), 0);
    assert_int_equal(json_integer_value(json_object_get(f->body, "duplicates")), 2);
    it = json_array_get(json_object_get(f->body, "items"), 1);
    assert_string_equal(json_string_value(json_object_get(it, "status")), "duplicate");
    assert_int_equal(json_integer_value(json_object_get(it, "sequence")), 2);
    assert_int_equal(stored(f), 2);
}

/* The 202 body is written by hand: its text is exactly what jansson dumps for
 * the same content, escapes included (control characters are refused in ids). */
static void test_202_body_escapes_like_jansson(void **state) {
    fixture_t *f = *state;
    const char *id = "Q\"uo\\te/\xc3\xa9\x7e";
    char body[2048], a[1024];
    char *dumped;

    gi(a, sizeof a, "Q\\\"uo\\\\te/\xc3\xa9~", "P1", "1.5");
    snprintf(body, sizeof body, "[%s]", a);
    assert_int_equal(post_json(f, TOK_P1, body), 202);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(f->body, "items"), 0), "movement_id")),
                        id);
    dumped = json_dumps(f->body, JSON_COMPACT);
    assert_non_null(dumped);
    assert_string_equal(f->raw, dumped);
    free(dumped);
}

static void test_202_protobuf_batch(void **state) {
    fixture_t *f = *state;
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    Invsync__V1__MovementBatch b = INVSYNC__V1__MOVEMENT_BATCH__INIT;
    is_movement_t *list[1] = {&m};
    uint8_t buf[1024];
    size_t len;

    m.movement_id = "MV-PB";
    m.source_system = "MES-1";
    m.site = "P1";
    m.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    m.material = "FG-1";
    m.lot = "L9";
    m.location = "A-01";
    q.units = 12500;
    q.scale = 3;
    m.quantity = &q;
    m.uom = "EA";
    m.order_id = "ORD-7";
    m.tier = "forged"; /* producer-stamped fields from the client are ignored */
    m.sequence = 999;
    b.n_movements = 1;
    b.movements = list;
    assert_true(invsync__v1__movement_batch__get_packed_size(&b) <= sizeof buf);
    len = invsync__v1__movement_batch__pack(&b, buf);
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, (const char *)buf, len), 202);
    {
        json_t *it = json_array_get(json_object_get(f->body, "items"), 0);
        assert_string_equal(json_string_value(json_object_get(it, "tier")), "periodic");
        assert_int_equal(json_integer_value(json_object_get(it, "sequence")), 1);
    }
    assert_int_equal(stored(f), 1);
}

static void test_422_protobuf_strings_must_be_utf8(void **state) {
    fixture_t *f = *state;
    is_movement_t m[2] = {INVSYNC__V1__MOVEMENT__INIT, INVSYNC__V1__MOVEMENT__INIT};
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    Invsync__V1__Movement__AttributesEntry e = INVSYNC__V1__MOVEMENT__ATTRIBUTES_ENTRY__INIT;
    Invsync__V1__Movement__AttributesEntry *attrs[1] = {&e};
    Invsync__V1__MovementBatch b = INVSYNC__V1__MOVEMENT_BATCH__INIT;
    is_movement_t *list[2] = {&m[0], &m[1]};
    uint8_t buf[2048];
    size_t i, len;

    q.units = 1;
    for (i = 0; i < 2; i++) {
        m[i].source_system = "MES-1";
        m[i].site = "P1";
        m[i].type = INVSYNC__V1__MOVEMENT_TYPE__SCRAP;
        m[i].material = "M";
        m[i].lot = "L";
        m[i].location = "A";
        m[i].quantity = &q;
        m[i].uom = "EA";
        m[i].reason_code = "R";
    }
    m[0].movement_id = "MV-\xff"; /* not UTF-8 */
    m[1].movement_id = "MV-2";
    e.key = "note";
    e.value = "\xc0\x80"; /* overlong NUL */
    m[1].n_attributes = 1;
    m[1].attributes = attrs;
    b.n_movements = 2;
    b.movements = list;
    assert_true(invsync__v1__movement_batch__get_packed_size(&b) <= sizeof buf);
    len = invsync__v1__movement_batch__pack(&b, buf);
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, (const char *)buf, len), 422);
    assert_non_null(find_error(f, 0, "movement_id"));
    assert_non_null(find_error(f, 1, "attributes"));
    assert_int_equal(stored(f), 0);
}

/* ---- embedded NULs in protobuf strings ---------------------------------- */

/* A packable scrap movement; strings are literals. */
static void pb_scrap(is_movement_t *m, Invsync__V1__Decimal *q, const char *id, const char *lot) {
    is_movement_t init = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal qinit = INVSYNC__V1__DECIMAL__INIT;
    *m = init;
    *q = qinit;
    q->units = 1;
    m->movement_id = (char *)id;
    m->source_system = "MES-1";
    m->site = "P1";
    m->type = INVSYNC__V1__MOVEMENT_TYPE__SCRAP;
    m->material = "M";
    m->lot = (char *)lot;
    m->location = "A";
    m->quantity = q;
    m->uom = "EA";
    m->reason_code = "R";
}

/* Pack m into out; then turn every byte '~' of the encoding into a NUL (the
 * lengths stay right: protobuf-c itself cannot pack a string with a NUL). */
static size_t pack_tilde_nul(const is_movement_t *m, uint8_t *out, size_t size) {
    size_t len = invsync__v1__movement__get_packed_size(m), i;
    assert_true(len <= size);
    len = invsync__v1__movement__pack(m, out);
    for (i = 0; i < len; i++) {
        if (out[i] == '~')
            out[i] = 0;
    }
    return len;
}

/* Append one length-delimited field (id, bytes) to buf at *off. */
static void put_ld(uint8_t *buf, size_t size, size_t *off, uint32_t id, const uint8_t *p,
                   size_t len) {
    assert_true(*off + 2 + len <= size && len < 128 && id < 16);
    buf[(*off)++] = (uint8_t)(id << 3 | 2);
    buf[(*off)++] = (uint8_t)len;
    memcpy(buf + *off, p, len);
    *off += len;
}

/* POST a MovementBatch made of already encoded movements. */
static int post_movements(fixture_t *f, const uint8_t *const *mv, const size_t *lens, size_t n) {
    uint8_t body[2048];
    size_t off = 0, i;
    for (i = 0; i < n; i++)
        put_ld(body, sizeof body, &off, 1, mv[i], lens[i]);
    return post(f, "application/x-protobuf", TOK_P1, (const char *)body, off);
}

static void assert_nul_error(fixture_t *f, json_int_t index, const char *field) {
    json_t *e = find_error(f, index, field);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "error")),
                        "must not contain NUL characters");
}

/* protobuf-c cuts a string at its first NUL: "LOT\0X" must not become "LOT",
 * nor "PB-NUL2\0evil" a duplicate of "PB-NUL2". */
static void test_422_protobuf_strings_must_not_contain_nul(void **state) {
    fixture_t *f = *state;
    is_movement_t m;
    Invsync__V1__Decimal q;
    Invsync__V1__Movement__AttributesEntry e = INVSYNC__V1__MOVEMENT__ATTRIBUTES_ENTRY__INIT;
    Invsync__V1__Movement__AttributesEntry *attrs[1] = {&e};
    uint8_t a[512], b[512], c[512];
    const uint8_t *mv[3] = {a, b, c};
    size_t lens[3];
    json_t *it;

    pb_scrap(&m, &q, "PB-NUL1", "LOT~X");
    lens[0] = pack_tilde_nul(&m, a, sizeof a);
    pb_scrap(&m, &q, "PB-OK", "LOT-1");
    lens[1] = pack_tilde_nul(&m, b, sizeof b);
    e.key = "note";
    e.value = "a~b";
    m.n_attributes = 1;
    m.attributes = attrs;
    lens[2] = pack_tilde_nul(&m, c, sizeof c);
    assert_int_equal(post_movements(f, mv, lens, 3), 422);
    assert_nul_error(f, 0, "lot");
    assert_nul_error(f, 2, "attributes");
    assert_int_equal(json_array_size(json_object_get(f->body, "errors")), 2);
    assert_null(json_string_value(json_object_get(
        json_array_get(json_object_get(f->body, "errors"), 0), "movement_id"))); /* never echoed */
    assert_int_equal(stored(f), 0);

    /* An id with a NUL is not the id before the NUL. */
    pb_scrap(&m, &q, "PB-NUL2", "LOT-1");
    lens[0] = pack_tilde_nul(&m, a, sizeof a);
    assert_int_equal(post_movements(f, mv, lens, 1), 202);
    pb_scrap(&m, &q, "PB-NUL2~evil", "LOT-1");
    lens[0] = pack_tilde_nul(&m, a, sizeof a);
    assert_int_equal(post_movements(f, mv, lens, 1), 422);
    assert_nul_error(f, 0, "movement_id");
    assert_int_equal(stored(f), 1);

    /* Not UTF-8 after the NUL: the NUL is what is reported. */
    pb_scrap(&m, &q, "PB-NUL3", "L~\xff");
    lens[0] = pack_tilde_nul(&m, a, sizeof a);
    assert_int_equal(post_movements(f, mv, lens, 1), 422);
    assert_nul_error(f, 0, "lot");
    assert_int_equal(stored(f), 1);

    /* A singular field sent twice keeps its last value (protobuf-c does too):
     * a NUL in an overridden value is no error, in the kept one it is. */
    pb_scrap(&m, &q, "PB-TWICE", "LOT-1");
    lens[0] = 0;
    put_ld(a, sizeof a, &lens[0], 6, (const uint8_t *)"L\0X", 3);
    lens[0] += pack_tilde_nul(&m, a + lens[0], sizeof a - lens[0]);
    assert_int_equal(post_movements(f, mv, lens, 1), 202);
    it = json_array_get(json_object_get(f->body, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "status")), "accepted");
    assert_int_equal(stored(f), 2);
    pb_scrap(&m, &q, "PB-TWICE2", "LOT-1");
    lens[0] = pack_tilde_nul(&m, a, sizeof a);
    put_ld(a, sizeof a, &lens[0], 6, (const uint8_t *)"L\0X", 3);
    assert_int_equal(post_movements(f, mv, lens, 1), 422);
    assert_nul_error(f, 0, "lot");
    assert_int_equal(stored(f), 2);
}

/* ---- reversals against their originals --------------------------------- */

/* A movement of MES-1 at site P1; extra is more JSON members (leading comma). */
static const char *mv_json(char *buf, size_t size, const char *id, const char *type,
                           const char *lot, const char *qty, const char *extra) {
    snprintf(buf, size,
             "{\"movement_id\":\"%s\",\"source_system\":\"MES-1\",\"site\":\"P1\","
             "\"type\":\"%s\",\"material\":\"MAT-1\",\"lot\":\"%s\",\"location\":\"A-01\","
             "\"quantity\":\"%s\",\"uom\":\"KG\"%s}",
             id, type, lot, qty, extra);
    return buf;
}

/* The members that make a REVERSAL of completion orig. */
#define RV_OF_COMPLETION(orig)                                                                     \
    ",\"order_id\":\"ORD-1\",\"reversed_type\":\"COMPLETION\",\"reverses_movement_id\":\"" orig "\""

static void assert_one_error(fixture_t *f, json_int_t index, const char *id, const char *field,
                             const char *error) {
    json_t *e = find_error(f, index, field);
    assert_string_equal(body_str(f, "error"), "validation failed");
    assert_int_equal(json_array_size(json_object_get(f->body, "errors")), 1);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "movement_id")), id);
    assert_string_equal(json_string_value(json_object_get(e, "error")), error);
}

static void test_422_reversal_must_match_stored_original(void **state) {
    fixture_t *f = *state;
    char orig[1024], rv[1024];
    json_t *it;

    mv_json(orig, sizeof orig, "T11-A", "COMPLETION", "LOT-T11-A", "5", ",\"order_id\":\"ORD-1\"");
    assert_int_equal(post_json(f, TOK_P1, orig), 202);

    /* Another lot and ten times the quantity: the first difference is named. */
    mv_json(rv, sizeof rv, "T11-RV", "REVERSAL", "LOT-T11-B", "50", RV_OF_COMPLETION("T11-A"));
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    assert_one_error(f, 0, "T11-RV", "lot",
                     "lot is 'LOT-T11-B' but movement 'T11-A' has 'LOT-T11-A'");
    assert_int_equal(stored(f), 1);

    /* A partial quantity is no reversal (SAP cancels the whole item). */
    mv_json(rv, sizeof rv, "T11-RV", "REVERSAL", "LOT-T11-A", "4.999", RV_OF_COMPLETION("T11-A"));
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    assert_one_error(f, 0, "T11-RV", "quantity",
                     "quantity is '4.999' but movement 'T11-A' has '5'");

    /* Another order: its consumption would be reversed on the wrong order. */
    mv_json(rv, sizeof rv, "T11-RV", "REVERSAL", "LOT-T11-A", "5",
            ",\"order_id\":\"ORD-2\",\"reverses_movement_id\":\"T11-A\","
            "\"reversed_type\":\"COMPLETION\"");
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    assert_one_error(f, 0, "T11-RV", "order_id",
                     "order_id is 'ORD-2' but movement 'T11-A' has 'ORD-1'");

    /* The wrong reversed_type. */
    mv_json(rv, sizeof rv, "T11-RV", "REVERSAL", "LOT-T11-A", "5",
            ",\"order_id\":\"ORD-1\",\"reverses_movement_id\":\"T11-A\","
            "\"reversed_type\":\"GOODS_ISSUE\"");
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    assert_one_error(f, 0, "T11-RV", "reversed_type",
                     "reversed_type is 'GOODS_ISSUE' but movement 'T11-A' is a COMPLETION");
    assert_int_equal(stored(f), 1);

    /* The same quantity at another scale matches; a resend is a duplicate. */
    mv_json(rv, sizeof rv, "T11-RV", "REVERSAL", "LOT-T11-A", "5.000", RV_OF_COMPLETION("T11-A"));
    assert_int_equal(post_json(f, TOK_P1, rv), 202);
    assert_int_equal(json_integer_value(json_object_get(f->body, "accepted")), 1);
    assert_int_equal(post_json(f, TOK_P1, rv), 202);
    it = json_array_get(json_object_get(f->body, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "status")), "duplicate");
    assert_int_equal(stored(f), 2);

    /* An original this outbox never saw is not checked. */
    mv_json(rv, sizeof rv, "T11-RV2", "REVERSAL", "ANY", "7", RV_OF_COMPLETION("BEFORE-INVSYNC"));
    assert_int_equal(post_json(f, TOK_P1, rv), 202);
    assert_int_equal(stored(f), 3);
}

/* A movement is reversed once: the MES gets a 422 naming the reversal that
 * already reverses it, and nothing of the request is stored. */
static void test_422_second_reversal_of_a_movement(void **state) {
    fixture_t *f = *state;
    char orig[1024], rv[1024];

    mv_json(orig, sizeof orig, "DR-C1", "COMPLETION", "LOT-RV9", "5", ",\"order_id\":\"ORD-1\"");
    assert_int_equal(post_json(f, TOK_P1, orig), 202);
    mv_json(rv, sizeof rv, "DR-R1", "REVERSAL", "LOT-RV9", "5", RV_OF_COMPLETION("DR-C1"));
    assert_int_equal(post_json(f, TOK_P1, rv), 202);
    mv_json(rv, sizeof rv, "DR-R2", "REVERSAL", "LOT-RV9", "5", RV_OF_COMPLETION("DR-C1"));
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    assert_one_error(f, 0, "DR-R2", "reverses_movement_id",
                     "reverses_movement_id is 'DR-C1' but movement 'DR-C1' is already reversed"
                     " by 'DR-R1'");
    assert_int_equal(stored(f), 2);
}

/* The original earlier in the same request counts; the 422 (which wins over
 * a 409 elsewhere in the request) stores nothing. */
static void test_422_reversal_must_match_original_in_same_request(void **state) {
    fixture_t *f = *state;
    char body[4096], orig[1024], rv[1024], other[1024];

    gi(other, sizeof other, "MV-1", "P1", "1");
    assert_int_equal(post_json(f, TOK_P1, other), 202);
    gi(other, sizeof other, "MV-1", "P1", "2"); /* a conflict */
    mv_json(orig, sizeof orig, "T12-A", "COMPLETION", "LOT-1", "5", ",\"order_id\":\"ORD-1\"");
    mv_json(rv, sizeof rv, "T12-RV", "REVERSAL", "LOT-1", "5",
            ",\"order_id\":\"ORD-1\",\"serial\":\"SN-9\",\"reverses_movement_id\":\"T12-A\","
            "\"reversed_type\":\"COMPLETION\"");
    snprintf(body, sizeof body, "[%s,%s,%s]", orig, other, rv);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    assert_one_error(f, 2, "T12-RV", "serial", "serial is 'SN-9' but movement 'T12-A' has ''");
    assert_int_equal(stored(f), 1);

    /* The original after its reversal in the same request: refused, even
     * when they match (the reversal would get the earlier sequence, and the
     * consumer posts in sequence order: the ERP would be asked to reverse a
     * movement it has not booked). Nothing is stored. */
    snprintf(body, sizeof body, "[%s,%s]", rv, orig);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    assert_one_error(f, 0, "T12-RV", "reverses_movement_id",
                     "reverses_movement_id is 'T12-A' but movement 'T12-A' is new at index 1 of"
                     " this request, after its reversal: send the original first");
    assert_int_equal(stored(f), 1);
    mv_json(rv, sizeof rv, "T12-RV", "REVERSAL", "LOT-1", "5", RV_OF_COMPLETION("T12-A"));
    snprintf(body, sizeof body, "[%s,%s]", rv, orig);
    assert_int_equal(post_json(f, TOK_P1, body), 422);
    assert_one_error(f, 0, "T12-RV", "reverses_movement_id",
                     "reverses_movement_id is 'T12-A' but movement 'T12-A' is new at index 1 of"
                     " this request, after its reversal: send the original first");
    assert_int_equal(stored(f), 1);

    /* Matching, the original first: accepted together. */
    snprintf(body, sizeof body, "[%s,%s]", orig, rv);
    assert_int_equal(post_json(f, TOK_P1, body), 202);
    assert_int_equal(json_integer_value(json_object_get(f->body, "accepted")), 2);
    assert_int_equal(stored(f), 3);

    /* The original stored by an earlier request and resent after its
     * reversal: a duplicate, not new here, so the order is fine. */
    mv_json(orig, sizeof orig, "T12-B", "COMPLETION", "LOT-1", "5", ",\"order_id\":\"ORD-1\"");
    assert_int_equal(post_json(f, TOK_P1, orig), 202);
    mv_json(rv, sizeof rv, "T12-RVB", "REVERSAL", "LOT-1", "5", RV_OF_COMPLETION("T12-B"));
    snprintf(body, sizeof body, "[%s,%s]", rv, orig);
    assert_int_equal(post_json(f, TOK_P1, body), 202);
    assert_int_equal(json_integer_value(json_object_get(f->body, "accepted")), 1);
    assert_int_equal(stored(f), 5);
}

/* Stock statuses are compared by effect: an omitted status matches its
 * default, a different bucket does not. */
static void test_422_reversal_must_match_original_statuses(void **state) {
    fixture_t *f = *state;
    char orig[1024], rv[1024];

    mv_json(orig, sizeof orig, "T13-Q", "QUARANTINE", "LOT-1", "2",
            ",\"from_status\":\"QUALITY\",\"to_status\":\"BLOCKED\"");
    assert_int_equal(post_json(f, TOK_P1, orig), 202);
    mv_json(rv, sizeof rv, "T13-RV", "REVERSAL", "LOT-1", "2",
            ",\"to_status\":\"BLOCKED\",\"reverses_movement_id\":\"T13-Q\","
            "\"reversed_type\":\"QUARANTINE\"");
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    /* Effective values are named (an omitted from_status is UNRESTRICTED). */
    assert_one_error(f, 0, "T13-RV", "from_status",
                     "from_status is 'UNRESTRICTED' but movement 'T13-Q' has 'QUALITY'");
    /* BLOCKED is QUARANTINE's default to_status: omitting it matches. */
    mv_json(rv, sizeof rv, "T13-RV", "REVERSAL", "LOT-1", "2",
            ",\"from_status\":\"QUALITY\",\"reverses_movement_id\":\"T13-Q\","
            "\"reversed_type\":\"QUARANTINE\"");
    assert_int_equal(post_json(f, TOK_P1, rv), 202);
    assert_int_equal(stored(f), 2);

    /* Raw values differ in from_status (unset vs UNRESTRICTED) but agree in
     * effect; the difference that counts is to_status, and that is named. */
    mv_json(orig, sizeof orig, "T14-Q", "QUARANTINE", "LOT-1", "2", ",\"to_status\":\"QUALITY\"");
    assert_int_equal(post_json(f, TOK_P1, orig), 202);
    mv_json(rv, sizeof rv, "T14-RV", "REVERSAL", "LOT-1", "2",
            ",\"from_status\":\"UNRESTRICTED\",\"to_status\":\"BLOCKED\","
            "\"reverses_movement_id\":\"T14-Q\",\"reversed_type\":\"QUARANTINE\"");
    assert_int_equal(post_json(f, TOK_P1, rv), 422);
    assert_one_error(f, 0, "T14-RV", "to_status",
                     "to_status is 'BLOCKED' but movement 'T14-Q' has 'QUALITY'");
}

/* A movement an older producer accepted under looser rules (a tab in its
 * lot) and the MES sends again: a duplicate, not a refusal of what is stored.
 * Another movement with a tab is refused. */
static void test_resend_of_a_movement_stored_under_older_rules_is_a_duplicate(void **state) {
    fixture_t *f = *state;
    const char *text = "{\"movement_id\":\"OLD-TAB\",\"source_system\":\"MES-1\",\"site\":"
                       "\"P1\",\"type\":\"GOODS_ISSUE\",\"material\":\"MAT-1\",\"lot\":"
                       "\"L\\tTAB\",\"location\":\"A-01\",\"quantity\":\"1\",\"uom\":\"KG\","
                       "\"order_id\":\"ORD-1\",\"event_time\":\"2026-01-01T09:59:00Z\"}";
    json_error_t jerr;
    json_t *obj = json_loads(text, 0, &jerr);
    is_movement_t *m = NULL;
    is_field_error_t ferr;
    char errstr[256];
    assert_non_null(obj);
    assert_int_equal(is_movement_from_json(obj, 6, &m, &ferr), IS_OK);
    json_decref(obj);
    /* Stored the way the older producer did: straight into the outbox. */
    outbox_item_t it = {.m = m,
                        .tier = "periodic",
                        .policy_version = is_policy_version(f->policy),
                        .topic = "invsync.P1.periodic"};
    assert_int_equal(outbox_append(f->ob, &it, 1, 1000, errstr, sizeof errstr), IS_OK);
    assert_int_equal(it.status, OUTBOX_ACCEPTED);
    invsync__v1__movement__free_unpacked(m, NULL);

    assert_int_equal(post_json(f, TOK_P1, text), 202);
    assert_int_equal(json_integer_value(json_object_get(f->body, "duplicates")), 1);
    assert_int_equal(stored(f), 1);

    char other[1024];
    snprintf(other, sizeof other, "%s", text);
    memcpy(strstr(other, "OLD-TAB"), "NEW-TAB", 7);
    assert_int_equal(post_json(f, TOK_P1, other), 422);
    assert_non_null(strstr(f->raw, "must not contain control characters"));
    assert_int_equal(stored(f), 1);
}

/* ---- unknown protobuf fields ------------------------------------------- */

/* Append a varint to buf at *off. */
static void put_varint(uint8_t *buf, size_t *off, uint64_t v) {
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        buf[(*off)++] = (uint8_t)(v ? b | 0x80 : b);
    } while (v);
}

/* Append field id (wire type 2) holding len bytes of c to buf at *off. */
static void put_fill(uint8_t *buf, size_t *off, uint32_t id, char c, size_t len) {
    put_varint(buf, off, (uint64_t)id << 3 | 2);
    put_varint(buf, off, len);
    memset(buf + *off, c, len);
    *off += len;
}

/* A one-movement MovementBatch: m packed, plus an unknown field 99 of
 * extra bytes (none when 0) inside the movement. malloc'd, *len its size. */
static uint8_t *batch_with_unknown(const is_movement_t *m, size_t extra, size_t *len) {
    size_t mlen = invsync__v1__movement__get_packed_size(m), off = 0, mv_len;
    uint8_t *buf = malloc(mlen + extra + 32), *mv = malloc(mlen + extra + 16);
    assert_non_null(buf);
    assert_non_null(mv);
    /* The movement's bytes, then the unknown field (tag and length take <= 7 bytes). */
    mv_len = invsync__v1__movement__pack(m, mv);
    if (extra)
        put_fill(mv, &mv_len, 99, 'x', extra);
    put_varint(buf, &off, 1 << 3 | 2);
    put_varint(buf, &off, mv_len);
    memcpy(buf + off, mv, mv_len);
    off += mv_len;
    free(mv);
    *len = off;
    return buf;
}

static int keep_payload_len(void *opaque, const outbox_row_t *row) {
    *(size_t *)opaque = row->payload_len;
    return 0;
}

/* Fields the producer does not know are skipped: a resend that carries one
 * (an MES on a newer .proto) is a duplicate, not a 409, and a large one is
 * not stored, so every acknowledged movement still fits one Kafka message
 * (before, a 2 MB unknown field was acknowledged and then never left the
 * outbox: "Message size too large", the site's later movements held behind
 * the gap). */
static void test_unknown_protobuf_fields_are_skipped(void **state) {
    fixture_t *f = *state;
    is_movement_t m;
    Invsync__V1__Decimal q;
    uint8_t *body;
    size_t len, payload_len = 0, n = 0;
    char err[256];

    pb_scrap(&m, &q, "PB-UNK", "L1");
    body = batch_with_unknown(&m, 0, &len);
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, (const char *)body, len), 202);
    free(body);
    assert_int_equal(json_integer_value(json_object_get(f->body, "accepted")), 1);

    body = batch_with_unknown(&m, 16, &len);
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, (const char *)body, len), 202);
    free(body);
    assert_int_equal(json_integer_value(json_object_get(f->body, "duplicates")), 1);
    assert_int_equal(stored(f), 1);

    pb_scrap(&m, &q, "PB-BIG", "L1");
    body = batch_with_unknown(&m, 2 * 1000 * 1000, &len);
    assert_int_equal(post(f, "application/x-protobuf", TOK_P1, (const char *)body, len), 202);
    free(body);
    assert_int_equal(stored(f), 2);
    assert_int_equal(
        outbox_fetch_unsent(f->ob, 1, 10, keep_payload_len, &payload_len, &n, err, sizeof err),
        IS_OK);
    assert_int_equal(n, 1);
    assert_true(payload_len < 1024);
}

/* ---- the route, over HTTP ---------------------------------------------- */

static size_t on_reply(char *p, size_t size, size_t n, void *arg) {
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    if (have + add >= 1024)
        add = 1023 - have;
    memcpy(buf + have, p, add);
    buf[have + add] = '\0';
    return size * n;
}

/* POST body to the route on a real server; the status, the reply in reply[1024]. */
static long post_http(uint16_t port, const char *path_query, const char *body, char *reply) {
    char url[256];
    long status = 0;
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    assert_non_null(c);
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path_query);
    reply[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_reply);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
    hdrs = curl_slist_append(hdrs, "Authorization: Bearer " TOK_P1);
    hdrs = curl_slist_append(hdrs, "Content-Type: " CT);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return status;
}

/* POST /v1/movements takes no query parameter: ?dry_run=1 is not ignored
 * (the client would believe it stored nothing), it is a 400 naming it. */
static void test_400_unknown_query_parameter(void **state) {
    fixture_t *f = *state;
    size_t n_routes;
    const is_http_route_t *routes = ingest_routes(&n_routes);
    is_httpd_t *h = NULL;
    char err[256], m[1024], reply[1024];
    static const struct {
        const char *query, *name;
    } bad[] = {
        {"?dry_run=1", "dry_run"},
        {"?validate_only=true", "validate_only"},
        {"?dry_run", "dry_run"},
    };

    assert_int_equal(
        is_httpd_start("127.0.0.1:0", routes, n_routes, f->ig, 65536, 1, &h, err, sizeof err),
        IS_OK);
    gi(m, sizeof m, "MV-Q1", "P1", "1");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[64], want[128];
        snprintf(path, sizeof path, "/v1/movements%s", bad[i].query);
        snprintf(want, sizeof want, "unknown query parameter '%s'", bad[i].name);
        if (post_http(is_httpd_port(h), path, m, reply) != 400 || !strstr(reply, want))
            fail_msg("%s: %s", path, reply);
    }
    assert_int_equal(stored(f), 0);
    /* Without one, the same movement is stored. */
    assert_int_equal(post_http(is_httpd_port(h), "/v1/movements", m, reply), 202);
    assert_int_equal(stored(f), 1);
    is_httpd_stop(h);
}

/* ---- health, readiness, metrics ---------------------------------------- */

static void call(fixture_t *f, is_http_handler_fn fn, const char *path) {
    is_http_request_t req;
    is_http_response_t resp;
    memset(&req, 0, sizeof req);
    memset(&resp, 0, sizeof resp);
    req.method = "GET";
    req.path = path;
    req.body = "";
    resp.status = 200;
    fn(f->ig, &req, &resp);
    f->status = resp.status;
    snprintf(f->raw, sizeof f->raw, "%.*s", (int)resp.body_len, resp.body ? resp.body : "");
    free(resp.body);
}

static void test_health_ready_metrics(void **state) {
    fixture_t *f = *state;
    char m[1024], bad[1024];
    json_error_t jerr;
    json_t *j;

    call(f, ingest_handle_healthz, "/healthz");
    assert_int_equal(f->status, 200);
    assert_string_equal(f->raw, "{\"status\":\"ok\"}");

    gi(m, sizeof m, "MV-1", "P1", "1");
    assert_int_equal(post_json(f, TOK_P1, m), 202);
    assert_int_equal(post_json(f, TOK_P1, m), 202);
    gi(bad, sizeof bad, "MV-2", "P1", "0");
    assert_int_equal(post_json(f, TOK_P1, bad), 422);

    call(f, ingest_handle_readyz, "/readyz");
    assert_int_equal(f->status, 200);
    j = json_loads(f->raw, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "ready")));
    assert_string_equal(json_string_value(json_object_get(j, "outbox")), "ok");
    assert_string_equal(json_string_value(json_object_get(j, "kafka")), "unknown");
    assert_int_equal(json_integer_value(json_object_get(j, "backlog")), 1);
    json_decref(j);
    /* Kafka down does not make us unready. */
    producer_metrics_set_kafka(f->pm, PRODUCER_KAFKA_UNREACHABLE);
    call(f, ingest_handle_readyz, "/readyz");
    assert_int_equal(f->status, 200);
    assert_non_null(strstr(f->raw, "\"kafka\":\"unreachable\""));

    call(f, ingest_handle_metrics, "/metrics");
    assert_int_equal(f->status, 200);
    assert_non_null(
        strstr(f->raw, "invsync_movements_total{site=\"P1\",outcome=\"accepted\"} 1\n"));
    assert_non_null(
        strstr(f->raw, "invsync_movements_total{site=\"P1\",outcome=\"duplicate\"} 1\n"));
    assert_non_null(
        strstr(f->raw, "invsync_movements_total{site=\"P1\",outcome=\"rejected\"} 1\n"));
    assert_non_null(strstr(f->raw, "invsync_outbox_backlog 1\n"));
    assert_non_null(strstr(f->raw, "invsync_kafka_delivery_errors_total 0\n"));
    assert_non_null(strstr(f->raw, "invsync_http_requests_total{code=\"422\"} 1\n"));
    /* No checkpoint needed yet: the WAL is short. */
    assert_non_null(strstr(f->raw, "invsync_db_checkpoints_total{db=\"outbox\"} 0\n"));
    const char *wal = strstr(f->raw, "invsync_db_wal_pages{db=\"outbox\"} ");
    assert_non_null(wal);
    assert_true(atoi(wal + strlen("invsync_db_wal_pages{db=\"outbox\"} ")) > 0);
}

/* Refused movements never claim one of the metrics' site slots: bad sites
 * (here 70 refused ones) used to fill all 64, and the real site that came
 * next was counted as "_other". */
static void test_metrics_refusals_do_not_take_site_slots(void **state) {
    fixture_t *f = *state;
    char m[1024], id[16], site[16];
    int i;

    for (i = 0; i < 70; i++) {
        snprintf(id, sizeof id, "MV-%d", i);
        snprintf(site, sizeof site, "X%02d", i);
        gi(m, sizeof m, id, site, "0"); /* a zero goods issue: 422 */
        assert_int_equal(post_json(f, TOK_ALL, m), 422);
    }
    gi(m, sizeof m, "MV-NEW", "NEWSITE", "1");
    assert_int_equal(post_json(f, TOK_ALL, m), 202);
    call(f, ingest_handle_metrics, "/metrics");
    assert_int_equal(f->status, 200);
    assert_non_null(
        strstr(f->raw, "invsync_movements_total{site=\"NEWSITE\",outcome=\"accepted\"} 1\n"));
    assert_non_null(
        strstr(f->raw, "invsync_movements_total{site=\"_other\",outcome=\"rejected\"} 70\n"));
    assert_null(strstr(f->raw, "site=\"X00\""));
}

static void test_503_outbox_failure_acknowledges_nothing(void **state) {
    fixture_t *f = *state;
    char m[1024];
    sqlite3 *db;

    /* Break the outbox behind the service's back: the sequence table goes. */
    assert_int_equal(sqlite3_open(f->outbox_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE site_seq", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    gi(m, sizeof m, "MV-1", "P1", "1");
    assert_int_equal(post_json(f, TOK_P1, m), 503);
    assert_non_null(strstr(body_str(f, "error"), "nothing was accepted"));
    assert_non_null(strstr(f->header, "Retry-After"));
    assert_int_equal(stored(f), 0);
    /* ... and /readyz says so. */
    call(f, ingest_handle_readyz, "/readyz");
    assert_int_equal(f->status, 503);
    assert_non_null(strstr(f->raw, "\"ready\":false"));
    assert_non_null(strstr(f->raw, "\"outbox\":\"unwritable\""));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_401_missing_or_unknown_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_415_other_content_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_malformed_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_utf8_bom_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_empty_array, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_undecodable_protobuf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_too_many_items, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_resend_of_a_movement_stored_under_older_rules_is_a_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_403_token_not_for_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_collects_every_item_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_unreadable_quantity_keeps_other_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_409_conflict_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_202_accepted_then_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_202_protobuf_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_protobuf_strings_must_be_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_protobuf_strings_must_not_contain_nul, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_422_second_reversal_of_a_movement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_reversal_must_match_stored_original, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_422_reversal_must_match_original_in_same_request,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_reversal_must_match_original_statuses, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_protobuf_fields_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_unknown_query_parameter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_ready_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_refusals_do_not_take_site_slots, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_422_entry_kept_when_message_cut_mid_character, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_202_body_escapes_like_jansson, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_outbox_failure_acknowledges_nothing, setup,
                                        teardown),
    };
    int rc;
    json_arena_install(); /* as mes-producer's main: request trees in the arena */
    is_log_init("test_ingest", IS_LOG_ERROR); /* keep the test output readable */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    json_arena_thread_release();
    return rc;
}
