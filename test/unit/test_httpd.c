/*
 * test_httpd.c — unit tests for common/httpd.c against a real server.
 *
 * The group setup starts one server on 127.0.0.1 port 0 (4 worker threads,
 * max_body 4096) and the tests talk to it with libcurl: routing (exact and
 * '*' prefix), 404, 405 with Allow, 413 by Content-Length and by a chunked
 * body, bodies up to the limit, query arguments, bearer parsing, extra
 * headers, handlers that leave no body, keep-alive reuse, concurrent
 * requests, and handlers really running in parallel. Listen-address parsing
 * and the response helpers are tested without a server.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "httpd.h"

#define MAX_BODY 4096
#define WAITERS  3 /* handlers that must be inside /wait at the same time */

/* Shared with the handlers, which run on the server's threads. */
typedef struct server_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int waiting;    /* handlers inside /wait */
    int post_calls; /* calls of the POST /v1/movements handler */
} server_ctx_t;

typedef struct suite {
    server_ctx_t ctx;
    is_httpd_t *httpd;
    char base[64]; /* "http://127.0.0.1:<port>" */
} suite_t;

/* ---- handlers ---------------------------------------------------------- */

static void h_healthz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    /* 9.268 has no exact binary form: printed with %.17g it would read
     * 9.2680000000000007 in /v1/status and the CLI. */
    is_http_respond_json(resp, 200, json_pack("{s:b,s:f}", "ok", 1, "age_s", 9.268));
}

/* Echo the body back, its length in a header. */
static void h_echo(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    server_ctx_t *c = ctx;

    pthread_mutex_lock(&c->mu);
    c->post_calls++;
    pthread_mutex_unlock(&c->mu);
    if (req->body[req->body_len] != '\0' || strlen(req->body) > req->body_len) {
        is_http_respond_error(resp, 500, "body not NUL-terminated at body_len");
        return;
    }
    is_http_respond_text(resp, 201, "application/octet-stream", req->body, req->body_len);
    snprintf(resp->extra_header, sizeof resp->extra_header, "X-Body-Len: %zu", req->body_len);
}

static void h_path(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    is_http_respond_json(resp, 200,
                         json_pack("{s:s,s:s}", "method", req->method, "path", req->path));
}

static void h_query(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    const char *a = is_http_query(req, "a"), *b = is_http_query(req, "b");
    (void)ctx;
    is_http_respond_json(resp, 200, json_pack("{s:s?,s:s?}", "a", a, "b", b));
}

static void h_auth(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    const char *tok = is_http_bearer(req);
    (void)ctx;
    if (!tok) {
        is_http_respond_error(resp, 401, "missing bearer token");
        return;
    }
    is_http_respond_json(resp, 200, json_pack("{s:s}", "token", tok));
}

static void h_header(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    const char *v = is_http_header(req, "X-Test");
    (void)ctx;
    is_http_respond_json(resp, 200, json_pack("{s:s?}", "x_test", v));
}

/* Leaves resp->body NULL: the server must send an empty body. */
static void h_nobody(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    resp->status = 202;
}

static void h_retry(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    is_http_respond_error(resp, 503, "busy, %d in queue", 42);
    snprintf(resp->extra_header, sizeof resp->extra_header, "%s", "Retry-After : 7");
}

static void h_text(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    is_http_respond_text(resp, 200, "text/plain; version=0.0.4", "metric 1\n", 9);
    /* Header injection attempt: must be dropped, not sent. */
    snprintf(resp->extra_header, sizeof resp->extra_header, "%s", "X-A: 1\r\nX-B: 2");
}

static void h_bad_status(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    resp->status = 42;
}

/* Wait until WAITERS handlers are inside at once (or 5 s pass). Passing
 * proves that handlers run in parallel on the pool. */
static void h_wait(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    server_ctx_t *c = ctx;
    struct timespec deadline;
    int ok;

    (void)req;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&c->mu);
    c->waiting++;
    pthread_cond_broadcast(&c->cv);
    while (c->waiting < WAITERS) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) != 0)
            break;
    }
    ok = c->waiting >= WAITERS;
    pthread_mutex_unlock(&c->mu);
    if (ok)
        is_http_respond_json(resp, 200, json_pack("{s:b}", "together", 1));
    else
        is_http_respond_error(resp, 500, "handlers did not run concurrently");
}

static const is_http_route_t ROUTES[] = {
    {"GET", "/healthz", h_healthz},     {"POST", "/v1/movements", h_echo},
    {"GET", "/admin/failed/*", h_path}, {"POST", "/admin/failed/*", h_path},
    {"GET", "/query", h_query},         {"GET", "/auth", h_auth},
    {"GET", "/header", h_header},       {"GET", "/nobody", h_nobody},
    {"POST", "/nobody", h_nobody},      {"GET", "/retry", h_retry},
    {"GET", "/text", h_text},           {"GET", "/bad-status", h_bad_status},
    {"GET", "/wait", h_wait},
};

/* ---- client ------------------------------------------------------------ */

typedef struct reply {
    long status;
    char *body; /* malloc'd, NUL-terminated */
    size_t len;
    char content_type[128];
    char allow[128];
    char retry_after[32];
    char body_len_hdr[32]; /* X-Body-Len */
    int saw_x_b;           /* an injected "X-B" header arrived */
} reply_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    reply_t *r = ud;
    size_t add = sz * n;
    char *nb = realloc(r->body, r->len + add + 1);

    if (!nb)
        return 0;
    memcpy(nb + r->len, p, add);
    r->body = nb;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static void copy_header_value(const char *line, size_t n, size_t name_len, char *dst,
                              size_t dst_size) {
    size_t i = name_len;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t end = n;
    while (end > i && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
        end--;
    snprintf(dst, dst_size, "%.*s", (int)(end - i), line + i);
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
    static const struct {
        const char *name;
        size_t off;
        size_t size;
    } want[] = {
        {"Content-Type:", offsetof(reply_t, content_type), sizeof(((reply_t *)0)->content_type)},
        {"Allow:", offsetof(reply_t, allow), sizeof(((reply_t *)0)->allow)},
        {"Retry-After:", offsetof(reply_t, retry_after), sizeof(((reply_t *)0)->retry_after)},
        {"X-Body-Len:", offsetof(reply_t, body_len_hdr), sizeof(((reply_t *)0)->body_len_hdr)},
    };
    reply_t *r = ud;
    size_t len = sz * n;

    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t nl = strlen(want[i].name);
        if (len >= nl && strncasecmp(p, want[i].name, nl) == 0)
            copy_header_value(p, len, nl, (char *)r + want[i].off, want[i].size);
    }
    if (len >= 4 && strncasecmp(p, "X-B:", 4) == 0)
        r->saw_x_b = 1;
    return len;
}

static void reply_free(reply_t *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

typedef struct chunk_src {
    size_t left; /* bytes still to send */
} chunk_src_t;

static size_t on_read(char *buf, size_t sz, size_t n, void *ud) {
    chunk_src_t *src = ud;
    size_t k = sz * n < src->left ? sz * n : src->left;

    memset(buf, 'x', k);
    src->left -= k;
    return k;
}

typedef struct req_opts {
    const char *method;   /* default GET */
    const char *body;     /* sent with Content-Length */
    size_t body_len;      /* 0 = strlen(body) */
    size_t chunked_bytes; /* > 0: send this many bytes chunked instead */
    const char *header;   /* one extra request header line */
    int keep_expect;      /* let curl send "Expect: 100-continue" for big bodies */
} req_opts_t;

/* One request on handle c (NULL: a fresh handle). Returns the curl code. */
static CURLcode request(CURL *c, const char *base, const char *path, const req_opts_t *o,
                        reply_t *r) {
    char url[512];
    struct curl_slist *hdrs = NULL;
    chunk_src_t src = {0};
    int own = c == NULL;
    CURLcode rc;

    memset(r, 0, sizeof *r);
    if (own)
        c = curl_easy_init();
    assert_non_null(c);
    curl_easy_reset(c);
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (o && o->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(o->body_len ? o->body_len : strlen(o->body)));
    } else if (o && o->chunked_bytes) {
        src.left = o->chunked_bytes;
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    }
    if (o && o->method && strcmp(o->method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* curl then expects no body */
    else if (o && o->method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
    if (o && o->header)
        hdrs = curl_slist_append(hdrs, o->header);
    if (!o || !o->keep_expect)
        hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    if (own)
        curl_easy_cleanup(c);
    if (!r->body)
        r->body = calloc(1, 1);
    return rc;
}

static void get(const suite_t *s, const char *path, const req_opts_t *o, reply_t *r) {
    CURLcode rc = request(NULL, s->base, path, o, r);
    if (rc != CURLE_OK)
        fail_msg("%s: %s", path, curl_easy_strerror(rc));
}

/* ---- fixtures ---------------------------------------------------------- */

static int group_setup(void **state) {
    suite_t *s = calloc(1, sizeof *s);
    char err[256] = "";

    if (!s || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    pthread_mutex_init(&s->ctx.mu, NULL);
    pthread_cond_init(&s->ctx.cv, NULL);
    if (is_httpd_start("127.0.0.1:0", ROUTES, sizeof ROUTES / sizeof ROUTES[0], &s->ctx, MAX_BODY,
                       4, &s->httpd, err, sizeof err) != IS_OK) {
        fprintf(stderr, "is_httpd_start: %s\n", err);
        free(s);
        return -1;
    }
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%u", (unsigned)is_httpd_port(s->httpd));
    *state = s;
    return 0;
}

static int group_teardown(void **state) {
    suite_t *s = *state;

    is_httpd_stop(s->httpd);
    pthread_cond_destroy(&s->ctx.cv);
    pthread_mutex_destroy(&s->ctx.mu);
    free(s);
    curl_global_cleanup();
    return 0;
}

static int post_calls(suite_t *s) {
    int n;
    pthread_mutex_lock(&s->ctx.mu);
    n = s->ctx.post_calls;
    pthread_mutex_unlock(&s->ctx.mu);
    return n;
}

/* ---- tests ------------------------------------------------------------- */

static void test_ephemeral_port_is_reported(void **state) {
    suite_t *s = *state;
    assert_int_not_equal(is_httpd_port(s->httpd), 0);
    assert_int_equal(is_httpd_port(NULL), 0);
}

static void test_exact_route(void **state) {
    suite_t *s = *state;
    reply_t r;

    get(s, "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"ok\":true,\"age_s\":9.268}");
    assert_string_equal(r.content_type, "application/json");
    reply_free(&r);

    /* Exact means exact: no prefix or trailing-slash match. */
    get(s, "/healthz/x", NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);

    /* HEAD is a GET without the body (a monitor's probe), not a 405. */
    get(s, "/healthz", &(req_opts_t){.method = "HEAD"}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(r.body, "");
    reply_free(&r);
    get(s, "/v1/movements", &(req_opts_t){.method = "HEAD"}, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "POST");
    reply_free(&r);
}

static void test_prefix_route(void **state) {
    suite_t *s = *state;
    reply_t r;

    get(s, "/admin/failed/P-123", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"method\":\"GET\",\"path\":\"/admin/failed/P-123\"}");
    reply_free(&r);

    get(s, "/admin/failed/", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);

    /* The prefix is "/admin/failed/": without the slash it is unknown. */
    get(s, "/admin/failed", NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
}

static void test_unknown_path_404(void **state) {
    suite_t *s = *state;
    reply_t r;

    get(s, "/x", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\":\"no such path '/x'\"}");
    assert_string_equal(r.content_type, "application/json");
    reply_free(&r);

    /* A body sent to an unknown path is not read; still a clean 404. */
    get(s, "/nope", &(req_opts_t){.body = "{\"a\":1}"}, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\":\"no such path '/nope'\"}");
    reply_free(&r);

    /* Invalid UTF-8 in the path still gives a valid JSON error. */
    get(s, "/bad%FF", NULL, &r);
    assert_int_equal(r.status, 404);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    json_decref(j);
    reply_free(&r);
}

static void test_wrong_method_405_with_allow(void **state) {
    suite_t *s = *state;
    reply_t r;

    get(s, "/v1/movements", NULL, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.body, "{\"error\":\"method GET not allowed on /v1/movements\"}");
    assert_string_equal(r.allow, "POST");
    reply_free(&r);

    get(s, "/admin/failed/7", &(req_opts_t){.method = "DELETE"}, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.body, "{\"error\":\"method DELETE not allowed on /admin/failed/7\"}");
    assert_string_equal(r.allow, "GET, POST");
    reply_free(&r);
}

static void test_body_is_collected(void **state) {
    static const size_t sizes[] = {0, 1, 100, 1500, 3000, MAX_BODY};
    suite_t *s = *state;
    char *body = malloc(MAX_BODY + 1);

    assert_non_null(body);
    for (size_t i = 0; i < MAX_BODY; i++)
        body[i] = (char)('a' + i % 26);
    body[MAX_BODY] = '\0';
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        reply_t r;
        char want[32];
        char save = body[sizes[i]];

        body[sizes[i]] = '\0';
        get(s, "/v1/movements", &(req_opts_t){.body = body, .body_len = sizes[i]}, &r);
        assert_int_equal(r.status, 201);
        snprintf(want, sizeof want, "%zu", sizes[i]);
        assert_string_equal(r.body_len_hdr, want);
        assert_int_equal(r.len, sizes[i]);
        assert_memory_equal(r.body, body, sizes[i]);
        assert_string_equal(r.content_type, "application/octet-stream");
        reply_free(&r);
        body[sizes[i]] = save;
    }
    free(body);

    /* A chunked body (no Content-Length) up to the limit arrives whole too;
     * one byte more does not. */
    reply_t r;
    get(s, "/v1/movements", &(req_opts_t){.chunked_bytes = 3000}, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body_len_hdr, "3000");
    reply_free(&r);
    get(s, "/v1/movements", &(req_opts_t){.chunked_bytes = MAX_BODY}, &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.len, MAX_BODY);
    reply_free(&r);
    get(s, "/v1/movements", &(req_opts_t){.chunked_bytes = MAX_BODY + 1}, &r);
    assert_int_equal(r.status, 413);
    reply_free(&r);
}

static void test_body_over_limit_413(void **state) {
    suite_t *s = *state;
    int before = post_calls(s);
    char *body = malloc(MAX_BODY + 2);
    reply_t r;
    CURLcode rc;

    assert_non_null(body);
    memset(body, 'y', MAX_BODY + 1);
    body[MAX_BODY + 1] = '\0';

    /* Known from Content-Length: answered before the body is read. */
    get(s, "/v1/movements", &(req_opts_t){.body = body, .body_len = MAX_BODY + 1}, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body, "{\"error\":\"request body larger than 4096 bytes\"}");
    reply_free(&r);
    free(body);

    /* Big, with "Expect: 100-continue": the 413 comes instead of the 100 and
     * the client never sends the body. */
    body = malloc(2 * 1024 * 1024);
    assert_non_null(body);
    memset(body, 'z', 2 * 1024 * 1024);
    get(s, "/v1/movements",
        &(req_opts_t){.body = body, .body_len = 2 * 1024 * 1024, .keep_expect = 1}, &r);
    assert_int_equal(r.status, 413);
    reply_free(&r);
    free(body);

    /* Chunked: found out while collecting; the rest is dropped, then 413. */
    get(s, "/v1/movements", &(req_opts_t){.chunked_bytes = 256 * 1024}, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body, "{\"error\":\"request body larger than 4096 bytes\"}");
    reply_free(&r);

    /* Chunked and endless (well, 8 MiB): the server hangs up. */
    rc = request(NULL, s->base, "/v1/movements", &(req_opts_t){.chunked_bytes = 8 << 20}, &r);
    assert_int_not_equal(rc, CURLE_OK);
    reply_free(&r);

    assert_int_equal(post_calls(s), before); /* the handler never ran */

    /* The server is fine afterwards. */
    get(s, "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void test_query_args(void **state) {
    suite_t *s = *state;
    reply_t r;

    get(s, "/query?a=hello%20world&b=x%2By", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"a\":\"hello world\",\"b\":\"x+y\"}");
    reply_free(&r);

    get(s, "/query?b=2", NULL, &r);
    assert_string_equal(r.body, "{\"a\":null,\"b\":\"2\"}");
    reply_free(&r);
}

static void test_bearer_parsing(void **state) {
    static const struct {
        const char *header; /* NULL: no Authorization header */
        const char *token;  /* NULL: expect 401 */
    } cases[] = {
        {"Authorization: Bearer abc.def-123", "abc.def-123"},
        {"Authorization: bearer tok", "tok"},
        {"Authorization: BEARER   spaced", "spaced"},
        {"authorization: Bearer lower-name", "lower-name"},
        {"Authorization: Basic dXNlcjpwYXNz", NULL},
        {"Authorization: Bearer", NULL},
        {"Authorization: Bearer ", NULL},
        {"Authorization: Bearerabc", NULL},
        {"Authorization: Bearer two words", NULL},
        {"Authorization: Bearer trailing-space  ", "trailing-space"},
        {NULL, NULL},
    };
    suite_t *s = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reply_t r;
        char want[128];

        get(s, "/auth", &(req_opts_t){.header = cases[i].header}, &r);
        if (cases[i].token) {
            snprintf(want, sizeof want, "{\"token\":\"%s\"}", cases[i].token);
            if (r.status != 200 || strcmp(r.body, want) != 0)
                fail_msg("case %zu '%s': %ld %s", i, cases[i].header, r.status, r.body);
        } else if (r.status != 401) {
            fail_msg("case %zu '%s': want 401, got %ld %s", i,
                     cases[i].header ? cases[i].header : "(none)", r.status, r.body);
        }
        reply_free(&r);
    }
}

static void test_header_lookup_case_insensitive(void **state) {
    suite_t *s = *state;
    reply_t r;

    get(s, "/header", &(req_opts_t){.header = "x-test: yes"}, &r);
    assert_string_equal(r.body, "{\"x_test\":\"yes\"}");
    reply_free(&r);
    get(s, "/header", NULL, &r);
    assert_string_equal(r.body, "{\"x_test\":null}");
    reply_free(&r);
}

static void test_response_variants(void **state) {
    suite_t *s = *state;
    reply_t r;

    /* No body set: empty body, default content type, the handler's status. */
    get(s, "/nobody", NULL, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(r.len, 0);
    assert_string_equal(r.content_type, "application/json");
    reply_free(&r);
    get(s, "/nobody", &(req_opts_t){.body = "ignored"}, &r);
    assert_int_equal(r.status, 202);
    reply_free(&r);

    get(s, "/retry", NULL, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "{\"error\":\"busy, 42 in queue\"}");
    assert_string_equal(r.retry_after, "7");
    reply_free(&r);

    get(s, "/text", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "metric 1\n");
    assert_string_equal(r.content_type, "text/plain; version=0.0.4");
    assert_int_equal(r.saw_x_b, 0);
    reply_free(&r);

    get(s, "/bad-status", NULL, &r);
    assert_int_equal(r.status, 500);
    reply_free(&r);
}

static void test_keep_alive_reuses_connection(void **state) {
    suite_t *s = *state;
    CURL *c = curl_easy_init();
    long connects = -1;
    reply_t r;

    assert_non_null(c);
    assert_int_equal(request(c, s->base, "/healthz", NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(request(c, s->base, "/v1/movements", &(req_opts_t){.body = "{}"}, &r),
                     CURLE_OK);
    assert_int_equal(r.status, 201);
    reply_free(&r);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
    assert_int_equal(connects, 0); /* the second request reused the connection */
    curl_easy_cleanup(c);
}

typedef struct worker {
    const suite_t *s;
    int id;
    int failures;
    char first_failure[256];
} worker_t;

static void *post_many(void *arg) {
    worker_t *w = arg;
    CURL *c = curl_easy_init();

    for (int i = 0; c && i < 25; i++) {
        char body[64];
        reply_t r;
        CURLcode rc;

        snprintf(body, sizeof body, "{\"worker\":%d,\"i\":%d}", w->id, i);
        rc = request(c, w->s->base, "/v1/movements", &(req_opts_t){.body = body}, &r);
        if (rc != CURLE_OK || r.status != 201 || strcmp(r.body, body) != 0) {
            if (!w->failures++)
                snprintf(w->first_failure, sizeof w->first_failure, "%s %ld '%s'",
                         curl_easy_strerror(rc), r.status, r.body ? r.body : "");
        }
        reply_free(&r);
    }
    if (!c)
        w->failures++;
    curl_easy_cleanup(c);
    return NULL;
}

static void test_concurrent_requests(void **state) {
    suite_t *s = *state;
    worker_t w[6];
    pthread_t t[6];
    int before = post_calls(s);

    for (int i = 0; i < 6; i++) {
        w[i] = (worker_t){.s = s, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, post_many, &w[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 6; i++) {
        if (w[i].failures)
            fail_msg("worker %d: %d failures, first: %s", i, w[i].failures, w[i].first_failure);
    }
    assert_int_equal(post_calls(s) - before, 6 * 25);
}

typedef struct waiter {
    const suite_t *s;
    long status;
} waiter_t;

static void *get_wait(void *arg) {
    waiter_t *w = arg;
    reply_t r;

    if (request(NULL, w->s->base, "/wait", NULL, &r) == CURLE_OK)
        w->status = r.status;
    reply_free(&r);
    return NULL;
}

/*
 * WAITERS handlers block until all of them are inside. Client k+1 starts
 * only once k handlers are in, so a busy worker cannot have accepted its
 * connection: it must land on another worker of the pool.
 */
static void test_handlers_run_in_parallel(void **state) {
    suite_t *s = *state;
    waiter_t w[WAITERS];
    pthread_t t[WAITERS];

    pthread_mutex_lock(&s->ctx.mu);
    s->ctx.waiting = 0;
    pthread_mutex_unlock(&s->ctx.mu);
    for (int i = 0; i < WAITERS; i++) {
        struct timespec deadline;

        w[i] = (waiter_t){.s = s};
        assert_int_equal(pthread_create(&t[i], NULL, get_wait, &w[i]), 0);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        pthread_mutex_lock(&s->ctx.mu);
        while (s->ctx.waiting < i + 1) {
            if (pthread_cond_timedwait(&s->ctx.cv, &s->ctx.mu, &deadline) != 0)
                break;
        }
        pthread_mutex_unlock(&s->ctx.mu);
    }
    for (int i = 0; i < WAITERS; i++) /* all joined before any assert can jump out */
        pthread_join(t[i], NULL);
    for (int i = 0; i < WAITERS; i++)
        assert_int_equal(w[i].status, 200);
}

static void test_bad_listen_addresses(void **state) {
    static const char *const bad[] = {
        "",    "8080",     "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:80x",
        ":-1", "::1:8080", "[::1]8080", "[::1:8080",  ":123456",         "host:+80",
    };
    is_httpd_t *h;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h = (is_httpd_t *)(uintptr_t)1;
        err[0] = '\0';
        is_err_t rc = is_httpd_start(bad[i], ROUTES, 1, NULL, 100, 1, &h, err, sizeof err);
        if (rc != IS_ERR_CONFIG)
            fail_msg("'%s': want IS_ERR_CONFIG, got %s (%s)", bad[i], is_err_name(rc), err);
        assert_null(h);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        if (!strstr(err, quoted))
            fail_msg("'%s': message does not name it: %s", bad[i], err);
    }
    h = (is_httpd_t *)(uintptr_t)1;
    assert_int_equal(is_httpd_start(NULL, ROUTES, 1, NULL, 100, 1, &h, err, sizeof err),
                     IS_ERR_CONFIG);
    assert_null(h);
    is_httpd_stop(NULL); /* no-op */
}

static void test_all_interfaces_and_port_in_use(void **state) {
    is_httpd_t *a = NULL, *b = NULL;
    char err[256] = "", addr[64];
    suite_t *s = *state;
    reply_t r;

    /* ":0" is every IPv4 interface, so loopback answers; 0 and 1 thread
     * (no pool) work as well as a pool. */
    for (unsigned threads = 0; threads <= 2; threads++) {
        assert_int_equal(is_httpd_start(":0", ROUTES, 1, NULL, 100, threads, &a, err, sizeof err),
                         IS_OK);
        assert_int_not_equal(is_httpd_port(a), 0);
        snprintf(addr, sizeof addr, "http://127.0.0.1:%u", (unsigned)is_httpd_port(a));
        CURLcode rc = request(NULL, addr, "/healthz", NULL, &r);
        is_httpd_stop(a);
        assert_int_equal(rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }

    /* The suite's server holds its port: a second bind must fail clearly. */
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)is_httpd_port(s->httpd));
    assert_int_equal(is_httpd_start(addr, ROUTES, 1, NULL, 100, 1, &b, err, sizeof err), IS_ERR_IO);
    assert_null(b);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, "in use"));
}

/* A chunked body up to twice a large max_body is read to its end and answered
 * 413 (an MES must learn why); only past that does the server hang up. */
static void test_chunked_over_large_limit_gets_413(void **state) {
    is_httpd_t *h = NULL;
    char err[256] = "", addr[64];
    size_t limit = 2u << 20;
    reply_t r;
    (void)state;

    assert_int_equal(is_httpd_start("127.0.0.1:0", ROUTES, sizeof ROUTES / sizeof ROUTES[0], NULL,
                                    limit, 1, &h, err, sizeof err),
                     IS_OK);
    snprintf(addr, sizeof addr, "http://127.0.0.1:%u", (unsigned)is_httpd_port(h));
    CURLcode rc = request(NULL, addr, "/v1/movements",
                          &(req_opts_t){.chunked_bytes = limit + (limit * 3) / 4}, &r);
    assert_int_equal(rc, CURLE_OK);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body, "{\"error\":\"request body larger than 2097152 bytes\"}");
    reply_free(&r);
    rc = request(NULL, addr, "/v1/movements", &(req_opts_t){.chunked_bytes = 3 * limit}, &r);
    assert_int_not_equal(rc, CURLE_OK);
    reply_free(&r);
    is_httpd_stop(h);
}

static void test_respond_helpers(void **state) {
    is_http_response_t resp = {.status = 200};
    is_http_request_t req = {.method = "GET", .path = "/", .body = "", .conn = NULL};

    (void)state;
    is_http_respond_error(&resp, 400, "bad field '%s' (%d)", "qty", 3);
    assert_int_equal(resp.status, 400);
    assert_string_equal(resp.body, "{\"error\":\"bad field 'qty' (3)\"}");
    assert_int_equal(resp.body_len, strlen(resp.body));
    assert_string_equal(resp.content_type, "application/json");

    /* A second respond replaces (and frees) the first body. */
    is_http_respond_text(&resp, 200, "text/plain", "abc", 3);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, 3);
    assert_memory_equal(resp.body, "abc", 3);
    assert_string_equal(resp.content_type, "text/plain");

    is_http_respond_json(&resp, 200, NULL);
    assert_int_equal(resp.status, 500);

    is_http_respond_json(&resp, 201, json_pack("{s:i}", "n", 5));
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.body, "{\"n\":5}");
    free(resp.body);

    /* Lookups on a request without a connection are absent, not a crash. */
    assert_null(is_http_header(&req, "Authorization"));
    assert_null(is_http_query(&req, "a"));
    assert_null(is_http_bearer(&req));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ephemeral_port_is_reported),
        cmocka_unit_test(test_exact_route),
        cmocka_unit_test(test_prefix_route),
        cmocka_unit_test(test_unknown_path_404),
        cmocka_unit_test(test_wrong_method_405_with_allow),
        cmocka_unit_test(test_body_is_collected),
        cmocka_unit_test(test_body_over_limit_413),
        cmocka_unit_test(test_query_args),
        cmocka_unit_test(test_bearer_parsing),
        cmocka_unit_test(test_header_lookup_case_insensitive),
        cmocka_unit_test(test_response_variants),
        cmocka_unit_test(test_keep_alive_reuses_connection),
        cmocka_unit_test(test_concurrent_requests),
        cmocka_unit_test(test_handlers_run_in_parallel),
        cmocka_unit_test(test_bad_listen_addresses),
        cmocka_unit_test(test_all_interfaces_and_port_in_use),
        cmocka_unit_test(test_chunked_over_large_limit_gets_413),
        cmocka_unit_test(test_respond_helpers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
