/*
 * test_erp_http.c — unit tests for the http-json ERP adapter (erp_http.c)
 * against a scripted in-test server (common/httpd.h).
 *
 * The server answers whatever status and body the test scripted, optionally
 * after a delay, and records what it received: method, path, query, the
 * Idempotency-Key / Authorization / Content-Type headers, the body, and the
 * client's TCP port (to see keep-alive). The tests assert the request shape
 * of docs/ERP-HTTP.md and the classification of every kind of answer:
 * 201 / 409 with and without a document / 2xx without a usable document /
 * 422 / 401 / 429 / 503 / a slow answer past the timeout / nobody listening.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <microhttpd.h>

#include "duration.h"
#include "erp.h"
#include "httpd.h"

#define TOKEN "s3cret-token"
#define PID   "0123456789abcdef0123456789abcdef"

/* What the next request gets, and what the last one looked like. */
typedef struct script {
    pthread_mutex_t mu;
    int status;       /* to answer */
    char body[4096];  /* to answer */
    int delay_ms;     /* before answering */
    char header[128]; /* extra answer header, "Name: value" */
    size_t big;       /* > 0: answer that many bytes of 'x' instead of body */
    int n_requests;   /* received */
    char method[8];   /* last request … */
    char path[256];
    char site[64];   /* ?site= */
    char idem[128];  /* Idempotency-Key */
    char auth[128];  /* Authorization */
    char ctype[128]; /* Content-Type */
    char *req_body;  /* malloc'd */
    unsigned client_port;
} script_t;

typedef struct fixture {
    script_t sc;
    is_httpd_t *httpd;
    char url[64];
    erp_t *erp;
} fixture_t;

static void copy_hdr(char *dst, size_t size, const char *v) {
    snprintf(dst, size, "%s", v ? v : "");
}

static void h_scripted(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    script_t *sc = ctx;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    int delay;

    pthread_mutex_lock(&sc->mu);
    sc->n_requests++;
    copy_hdr(sc->method, sizeof sc->method, req->method);
    copy_hdr(sc->path, sizeof sc->path, req->path);
    copy_hdr(sc->site, sizeof sc->site, is_http_query(req, "site"));
    copy_hdr(sc->idem, sizeof sc->idem, is_http_header(req, "Idempotency-Key"));
    copy_hdr(sc->auth, sizeof sc->auth, is_http_header(req, "Authorization"));
    copy_hdr(sc->ctype, sizeof sc->ctype, is_http_header(req, "Content-Type"));
    free(sc->req_body);
    sc->req_body = strdup(req->body);
    sc->client_port =
        ci && ci->client_addr ? ntohs(((const struct sockaddr_in *)ci->client_addr)->sin_port) : 0;
    delay = sc->delay_ms;
    if (sc->big) {
        char *x = malloc(sc->big);
        assert_non_null(x);
        memset(x, 'x', sc->big);
        is_http_respond_text(resp, sc->status, "application/json", x, sc->big);
        free(x);
    } else {
        is_http_respond_text(resp, sc->status, "application/json", sc->body, strlen(sc->body));
    }
    snprintf(resp->extra_header, sizeof resp->extra_header, "%s", sc->header);
    pthread_mutex_unlock(&sc->mu);
    if (delay > 0) { /* a slow ERP, not a wait for a condition */
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static const is_http_route_t routes[] = {
    {"POST", "/postings", h_scripted},
    {"GET", "/postings/*", h_scripted},
    {"GET", "/on-hand", h_scripted},
};

static void script(fixture_t *f, int status, const char *body, int delay_ms) {
    pthread_mutex_lock(&f->sc.mu);
    f->sc.status = status;
    snprintf(f->sc.body, sizeof f->sc.body, "%s", body);
    f->sc.delay_ms = delay_ms;
    f->sc.header[0] = '\0';
    f->sc.big = 0;
    pthread_mutex_unlock(&f->sc.mu);
}

/* An extra answer header for the next requests (script() clears it). */
static void script_header(fixture_t *f, const char *line) {
    pthread_mutex_lock(&f->sc.mu);
    snprintf(f->sc.header, sizeof f->sc.header, "%s", line);
    pthread_mutex_unlock(&f->sc.mu);
}

static erp_t *open_http(const char *url, const char *token, int64_t timeout_ms) {
    erp_config_t cfg = {.adapter = "http-json",
                        .http_url = (char *)url,
                        .http_token = (char *)token,
                        .http_timeout_ms = timeout_ms};
    erp_t *erp = NULL;
    char err[256];
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_OK);
    return erp;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    char err[256];
    if (!f)
        return -1;
    pthread_mutex_init(&f->sc.mu, NULL);
    if (is_httpd_start("127.0.0.1:0", routes, sizeof routes / sizeof routes[0], &f->sc, 1 << 20, 2,
                       &f->httpd, err, sizeof err) != IS_OK) {
        fprintf(stderr, "httpd: %s\n", err);
        free(f);
        return -1;
    }
    /* A trailing slash in the configured URL must not double up. */
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u/", (unsigned)is_httpd_port(f->httpd));
    f->erp = open_http(f->url, TOKEN, 2000);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    erp_close(f->erp);
    is_httpd_stop(f->httpd);
    free(f->sc.req_body);
    pthread_mutex_destroy(&f->sc.mu);
    free(f);
    return 0;
}

/* A two-line posting: a netted goods issue and a reversal. */
typedef struct sample {
    is_movement_t gi, rev;
    Invsync__V1__Decimal q;
    const char *gi_ids[2];
    const char *rev_ids[1];
    erp_line_t lines[2];
    erp_posting_t p;
} sample_t;

static void sample_init(sample_t *s) {
    memset(s, 0, sizeof *s);
    s->q = (Invsync__V1__Decimal)INVSYNC__V1__DECIMAL__INIT;
    s->q.units = 2500;
    s->q.scale = 3;
    s->gi = (is_movement_t)INVSYNC__V1__MOVEMENT__INIT;
    s->gi.movement_id = (char *)"MV-1";
    s->gi.site = (char *)"PLANT1";
    s->gi.type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    s->gi.material = (char *)"RM-101";
    s->gi.lot = (char *)"LOT-7";
    s->gi.location = (char *)"LINE-1";
    s->gi.uom = (char *)"EA";
    s->gi.quantity = &s->q;
    s->gi.order_id = (char *)"ORD-1";
    s->gi.operation = (char *)"0010";
    s->gi.from_status = INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
    s->rev = s->gi;
    s->rev.movement_id = (char *)"MV-9";
    s->rev.type = INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    s->rev.reverses_movement_id = (char *)"MV-0";
    s->rev.reversed_type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
    s->gi_ids[0] = "MV-1";
    s->gi_ids[1] = "MV-2";
    s->rev_ids[0] = "MV-9";
    s->lines[0] = (erp_line_t){&s->gi, {5000, 3}, s->gi_ids, 2};
    s->lines[1] = (erp_line_t){&s->rev, {2500, 3}, s->rev_ids, 1};
    s->p = (erp_posting_t){
        .posting_id = PID,
        .site = "PLANT1",
        .tier = "periodic",
        .policy_version = "pv-abc",
        .posting_time = 1795996499123, /* 2026-11-29T23:54:59.123Z */
        .lines = s->lines,
        .n_lines = 2,
    };
}

static is_err_t post_sample(fixture_t *f, erp_result_t *r) {
    sample_t s;
    sample_init(&s);
    return erp_post(f->erp, &s.p, r);
}

static const char *jget(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- post ---------------------------------------------------------------- */

static void test_post_201_is_ok_and_request_has_the_contract_shape(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    json_t *body, *l0, *l1, *ids;
    json_error_t jerr;

    assert_string_equal(erp_name(f->erp), "http-json");
    script(f, 201, "{\"document\":\"4900000042\"}", 0);
    assert_int_equal(post_sample(f, &r), IS_OK);
    assert_string_equal(r.document, "4900000042");
    assert_int_equal(r.http_status, 201);
    assert_null(strstr(r.message, TOKEN));

    assert_string_equal(f->sc.method, "POST");
    assert_string_equal(f->sc.path, "/postings");
    assert_string_equal(f->sc.idem, PID);
    assert_string_equal(f->sc.auth, "Bearer " TOKEN);
    assert_string_equal(f->sc.ctype, "application/json");

    body = json_loads(f->sc.req_body, 0, &jerr);
    assert_non_null(body);
    assert_string_equal(jget(body, "posting_id"), PID);
    assert_string_equal(jget(body, "site"), "PLANT1");
    assert_string_equal(jget(body, "tier"), "periodic");
    assert_string_equal(jget(body, "policy_version"), "pv-abc");
    assert_string_equal(jget(body, "posting_time"), "2026-11-29T23:54:59.123Z");
    assert_int_equal(json_array_size(json_object_get(body, "lines")), 2);
    l0 = json_array_get(json_object_get(body, "lines"), 0);
    assert_string_equal(jget(l0, "type"), "GOODS_ISSUE");
    assert_string_equal(jget(l0, "material"), "RM-101");
    assert_string_equal(jget(l0, "lot"), "LOT-7");
    assert_string_equal(jget(l0, "location"), "LINE-1");
    assert_string_equal(jget(l0, "uom"), "EA");
    assert_string_equal(jget(l0, "quantity"), "5.000"); /* the line's, as a decimal string */
    assert_string_equal(jget(l0, "order_id"), "ORD-1");
    assert_string_equal(jget(l0, "operation"), "0010");
    assert_string_equal(jget(l0, "from_status"), "UNRESTRICTED");
    assert_true(json_is_null(json_object_get(l0, "to_status")));
    assert_true(json_is_null(json_object_get(l0, "serial")));
    assert_true(json_is_null(json_object_get(l0, "to_location")));
    assert_true(json_is_null(json_object_get(l0, "reason_code")));
    assert_true(json_is_null(json_object_get(l0, "reverses_movement_id")));
    assert_true(json_is_null(json_object_get(l0, "reversed_type")));
    ids = json_object_get(l0, "movement_ids");
    assert_int_equal(json_array_size(ids), 2);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), "MV-1");
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "MV-2");
    l1 = json_array_get(json_object_get(body, "lines"), 1);
    assert_string_equal(jget(l1, "type"), "REVERSAL");
    assert_string_equal(jget(l1, "quantity"), "2.500");
    assert_string_equal(jget(l1, "reverses_movement_id"), "MV-0");
    assert_string_equal(jget(l1, "reversed_type"), "GOODS_ISSUE");
    json_decref(body);
}

static void test_post_409_with_document_is_ok(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    script(f, 409, "{\"document\":\"4900000007\",\"error\":\"already posted\"}", 0);
    assert_int_equal(post_sample(f, &r), IS_OK);
    assert_string_equal(r.document, "4900000007");
    assert_int_equal(r.http_status, 409);
    assert_non_null(strstr(r.message, "already posted"));
}

static void test_post_409_without_document_is_retryable(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    script(f, 409, "{\"error\":\"a request with this key is in progress\"}", 0);
    assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
    assert_string_equal(r.document, "");
}

static void test_post_2xx_with_numeric_document(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    script(f, 200, "{\"document\": 4900000043}", 0);
    assert_int_equal(post_sample(f, &r), IS_OK);
    assert_string_equal(r.document, "4900000043");
}

/*
 * A 2xx (or 409) is success only with a usable document: an answer without
 * one is no confirmation that the posting was booked. Retryable: sent again
 * under the same key, the ERP's answer names the document.
 */
static void test_post_2xx_without_a_usable_document_is_retryable(void **state) {
    static const struct {
        int status;
        const char *body, *why;
    } cases[] = {
        {200, "", "empty answer"},
        {201, "<html><body>Please log in</body></html>", "not JSON"},
        {200, "{\"status\":\"ok\"}", "no document in the answer"},
        {200, "{\"document\":null}", "no document in the answer"},
        {200, "{\"document\":true}", "neither a string nor an integer"},
        {200, "{\"document\":4900000042.5}", "neither a string nor an integer"},
        {200, "{\"document\":{\"id\":\"4900000042\"}}", "neither a string nor an integer"},
        {200, "{\"document\":\"\"}", "1-40 characters"},
        {201, "{\"document\":\"49000000420000000000000000000000000000001\"}", "1-40 characters"},
        {200, "{\"document\":\"4900\\n000042\"}", "control characters"},
        {202, "{\"status\":\"queued\"}", "no document in the answer"},
        {204, "", "empty answer"},
        {409, "{\"document\":\"49000000420000000000000000000000000000001\"}", "1-40 characters"},
    };
    fixture_t *f = *state;
    erp_result_t r;
    char want[64];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        script(f, cases[i].status, cases[i].body, 0);
        assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
        assert_string_equal(r.document, "");
        assert_int_equal(r.http_status, cases[i].status);
        snprintf(want, sizeof want, "HTTP %d (", cases[i].status);
        assert_memory_equal(r.message, want, strlen(want));
        assert_non_null(strstr(r.message, cases[i].why));
    }
    /* 40 characters is a document kept whole. */
    script(f, 201, "{\"document\":\"4900000042000000000000000000000000000000\"}", 0);
    assert_int_equal(post_sample(f, &r), IS_OK);
    assert_string_equal(r.document, "4900000042000000000000000000000000000000");
}

/* Table: status → classification, with the ERP's words in the message. */
static void test_post_status_classification(void **state) {
    static const struct {
        int status;
        is_err_t want;
    } cases[] = {
        {503, IS_ERR_RETRYABLE}, {500, IS_ERR_RETRYABLE}, {502, IS_ERR_RETRYABLE},
        {429, IS_ERR_RETRYABLE}, {408, IS_ERR_RETRYABLE}, {401, IS_ERR_RETRYABLE},
        {403, IS_ERR_RETRYABLE}, {422, IS_ERR_PERMANENT}, {400, IS_ERR_PERMANENT},
        {404, IS_ERR_PERMANENT},
    };
    fixture_t *f = *state;
    erp_result_t r;
    char want[64];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        script(f, cases[i].status, "{\"error\":\"unknown material RM-101\"}", 0);
        assert_int_equal(post_sample(f, &r), cases[i].want);
        assert_int_equal(r.http_status, cases[i].status);
        snprintf(want, sizeof want, "HTTP %d", cases[i].status);
        assert_non_null(strstr(r.message, want));
        assert_non_null(strstr(r.message, "unknown material RM-101"));
        assert_null(strstr(r.message, TOKEN));
    }
}

/*
 * A redirect is not followed (the POST must reach the ERP itself) and is
 * retryable like a bad token; the message names where it points.
 */
static void test_redirect_is_retryable_and_names_its_target(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    int n;

    script(f, 308, "", 0);
    script_header(f, "Location: https://erp.example/api/postings");
    n = f->sc.n_requests;
    assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
    assert_int_equal(f->sc.n_requests, n + 1); /* not followed */
    assert_int_equal(r.http_status, 308);
    assert_string_equal(r.message, "HTTP 308 (redirect to https://erp.example/api/postings, not "
                                   "followed: erp.http.url must be the ERP's own URL)");
    script(f, 301, "", 0);
    script_header(f, "Location: /api/postings/" PID);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "HTTP 301 (redirect to http://127.0.0.1:"));
    assert_non_null(strstr(r.message, "/api/postings/" PID ", not followed"));
}

/* A 429's or 503's Retry-After is handed to the poster and named in the message. */
static void test_retry_after_is_reported(void **state) {
    fixture_t *f = *state;
    erp_result_t r;

    script(f, 429, "{\"error\":\"slow down\"}", 0);
    script_header(f, "Retry-After: 30");
    assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
    assert_int_equal(r.retry_after_ms, 30000);
    assert_string_equal(r.message, "HTTP 429 (Retry-After 30 s): {\"error\":\"slow down\"}");
    script(f, 503, "", 0);
    script_header(f, "Retry-After: 5");
    assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
    assert_int_equal(r.retry_after_ms, 5000);
    script(f, 429, "{\"error\":\"slow down\"}", 0);
    assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
    assert_int_equal(r.retry_after_ms, 0);
    assert_string_equal(r.message, "HTTP 429: {\"error\":\"slow down\"}");
}

static void test_post_timeout_is_retryable(void **state) {
    fixture_t *f = *state;
    erp_t *quick = open_http(f->url, TOKEN, 200);
    erp_result_t r;
    sample_t s;
    int64_t t0;

    sample_init(&s);
    script(f, 201, "{\"document\":\"4900000001\"}", 1000);
    t0 = is_monotonic_ms();
    assert_int_equal(erp_post(quick, &s.p, &r), IS_ERR_RETRYABLE);
    assert_true(is_monotonic_ms() - t0 < 900);
    assert_int_equal(r.http_status, 0);
    assert_non_null(strstr(r.message, "timed out"));
    erp_close(quick);
}

static void test_post_connection_refused_is_retryable(void **state) {
    fixture_t *f = *state;
    is_httpd_t *gone = NULL;
    erp_t *erp;
    erp_result_t r;
    sample_t s;
    char url[64], err[256];

    (void)f;
    /* A port that was just free: start a server, note its port, stop it. */
    assert_int_equal(
        is_httpd_start("127.0.0.1:0", routes, 1, NULL, 1024, 1, &gone, err, sizeof err), IS_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)is_httpd_port(gone));
    is_httpd_stop(gone);
    erp = open_http(url, NULL, 1000);
    sample_init(&s);
    assert_int_equal(erp_post(erp, &s.p, &r), IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "POST /postings"));
    erp_close(erp);
}

/* A raw server for answers MHD will not give: one connection, `answer`
 * sent after the request, then (after stall_ms) the socket closed. */
typedef struct raw {
    int fd;
    const char *answer;
    int stall_ms;
} raw_t;

static void *raw_serve(void *arg) {
    raw_t *rw = arg;
    char buf[8192];
    int c = accept(rw->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    (void)!recv(c, buf, sizeof buf, 0); /* the request (small: one read) */
    (void)!send(c, rw->answer, strlen(rw->answer), MSG_NOSIGNAL);
    if (rw->stall_ms > 0) {
        struct timespec ts = {rw->stall_ms / 1000, (long)(rw->stall_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    close(c);
    return NULL;
}

static is_err_t post_to_raw(const char *answer, int stall_ms, erp_result_t *r) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    raw_t rw = {socket(AF_INET, SOCK_STREAM, 0), answer, stall_ms};
    pthread_t t;
    char url[64];
    sample_t s;
    erp_t *erp;
    is_err_t rc;

    assert_true(rw.fd >= 0);
    assert_int_equal(bind(rw.fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(rw.fd, 1), 0);
    assert_int_equal(getsockname(rw.fd, (struct sockaddr *)&a, &alen), 0);
    assert_int_equal(pthread_create(&t, NULL, raw_serve, &rw), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    erp = open_http(url, NULL, 300);
    sample_init(&s);
    rc = erp_post(erp, &s.p, r);
    erp_close(erp);
    pthread_join(t, NULL);
    close(rw.fd);
    return rc;
}

/* An answer cut short is no confirmation: retryable, whichever way it is cut. */
static void test_answer_cut_short_is_retryable(void **state) {
    erp_result_t r;
    (void)state;
    /* Reset mid-body: fewer bytes than Content-Length. */
    assert_int_equal(post_to_raw("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 100\r\n\r\n{\"document\":\"49",
                                 0, &r),
                     IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "ERP POST /postings: "));
    assert_string_equal(r.document, "");
    /* No length, closed mid-body: what arrived is not JSON. */
    assert_int_equal(post_to_raw("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                 "Connection: close\r\n\r\n{\"document\":\"49",
                                 0, &r),
                     IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "HTTP 201 (no document: the answer is not JSON)"));
    /* Headers, then a stall past the timeout. */
    assert_int_equal(post_to_raw("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 30\r\n\r\n{\"doc",
                                 1000, &r),
                     IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "timed out"));
}

/* An answer past any sane size is not read: retryable, the status named. */
static void test_huge_answer_is_retryable_and_names_the_status(void **state) {
    fixture_t *f = *state;
    erp_result_t r;

    script(f, 200, "", 0);
    pthread_mutex_lock(&f->sc.mu);
    f->sc.big = 3u << 20;
    pthread_mutex_unlock(&f->sc.mu);
    assert_int_equal(post_sample(f, &r), IS_ERR_RETRYABLE);
    assert_string_equal(r.document, "");
    assert_string_equal(r.message,
                        "ERP POST /postings: HTTP 200 answer larger than 1048576 bytes, not read");
}

static void test_long_error_body_is_truncated(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    char big[3000];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    script(f, 422, big, 0);
    assert_int_equal(post_sample(f, &r), IS_ERR_PERMANENT);
    assert_int_equal(strlen(r.message), sizeof r.message - 1);
    assert_memory_equal(r.message + sizeof r.message - 4, "...", 4);
    assert_memory_equal(r.message, "HTTP 422: xxx", 13);
}

/*
 * The message is valid UTF-8 whatever the ERP sends (a Latin-1 error page, a
 * cut through a character): the store, `failed list` and the audit trail
 * carry it as a JSON string, and jansson refuses invalid UTF-8.
 */
static void test_error_body_not_utf8_gives_a_utf8_message(void **state) {
    fixture_t *f = *state;
    erp_result_t r;
    json_t *j;
    char big[1200];

    script(f, 422, "{\"error\":\"Menge unzul\xe4ssig f\xfcr RM-101\"}", 0);
    assert_int_equal(post_sample(f, &r), IS_ERR_PERMANENT);
    assert_string_equal(r.message, "HTTP 422: {\"error\":\"Menge unzul?ssig f?r RM-101\"}");
    j = json_string(r.message);
    assert_non_null(j);
    json_decref(j);

    /* 2-byte characters, cut at a character boundary, whichever parity. */
    for (size_t odd = 0; odd < 2; odd++) {
        size_t at = 0;
        if (odd)
            big[at++] = 'x';
        while (at + 2 < sizeof big) {
            memcpy(big + at, "\xc3\xa4", 2); /* ä */
            at += 2;
        }
        big[at] = '\0';
        script(f, 422, big, 0);
        assert_int_equal(post_sample(f, &r), IS_ERR_PERMANENT);
        assert_memory_equal(r.message + strlen(r.message) - 3, "...", 3);
        j = json_string(r.message);
        assert_non_null(j);
        json_decref(j);
    }
}

static void test_no_token_no_authorization_header_and_keep_alive(void **state) {
    fixture_t *f = *state;
    erp_t *anon = open_http(f->url, NULL, 2000);
    erp_result_t r;
    sample_t s;
    unsigned port;

    sample_init(&s);
    script(f, 201, "{\"document\":\"4900000001\"}", 0);
    assert_int_equal(erp_post(anon, &s.p, &r), IS_OK);
    assert_string_equal(f->sc.auth, "");
    port = f->sc.client_port;
    assert_int_equal(erp_lookup_reference(anon, PID, &r), IS_OK);
    assert_int_equal(erp_post(anon, &s.p, &r), IS_OK);
    assert_int_equal(f->sc.client_port, port); /* same TCP connection */
    erp_close(anon);
}

static void test_open_rejects_bad_url(void **state) {
    erp_config_t cfg = {.adapter = "http-json", .http_url = "ftp://erp"};
    erp_t *erp = NULL;
    char err[256];
    (void)state;
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_ERR_CONFIG);
    assert_null(erp);
    assert_non_null(strstr(err, "http://"));
    cfg.http_url = NULL;
    assert_int_equal(erp_open(&cfg, &erp, err, sizeof err), IS_ERR_CONFIG);
}

/* ---- lookup ---------------------------------------------------------------- */

static void test_lookup_found_missing_and_failing(void **state) {
    fixture_t *f = *state;
    erp_result_t r;

    script(f, 200, "{\"document\":\"4900000042\",\"posting_id\":\"" PID "\"}", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_OK);
    assert_string_equal(r.document, "4900000042");
    assert_string_equal(f->sc.method, "GET");
    assert_string_equal(f->sc.path, "/postings/" PID);
    assert_string_equal(f->sc.auth, "Bearer " TOKEN);

    script(f, 404, "{\"error\":\"not found\"}", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_NOT_FOUND);
    assert_int_equal(r.http_status, 404);
    script(f, 500, "{\"error\":\"boom\"}", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_RETRYABLE);
    assert_non_null(strstr(r.message, "boom"));
    script(f, 401, "{}", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_RETRYABLE);
    /* "Found" needs the document: a 200 page without one (a gateway, a
     * wrong base URL) must not mark an unbooked posting posted. */
    script(f, 200, "<html>It works!</html>", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_RETRYABLE);
    assert_string_equal(r.document, "");
    assert_non_null(strstr(r.message, "HTTP 200 (no document: the answer is not JSON)"));
    script(f, 200, "{}", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_RETRYABLE);
    script(f, 204, "", 0);
    assert_int_equal(erp_lookup_reference(f->erp, PID, &r), IS_ERR_RETRYABLE);
}

/* ---- on-hand --------------------------------------------------------------- */

typedef struct rows {
    char buf[1024];
} rows_t;

static int collect(void *opaque, const erp_on_hand_row_t *row) {
    rows_t *c = opaque;
    char q[IS_DECIMAL_STRLEN];
    size_t at = strlen(c->buf);
    is_decimal_format(row->quantity, q, sizeof q);
    snprintf(c->buf + at, sizeof c->buf - at, "%s/%s/%s/%s/%s/%s=%s;", row->site, row->material,
             row->lot, row->location, is_stock_status_name(row->status), row->uom, q);
    return 0;
}

static void test_on_hand_rows_sorted_zero_skipped_site_passed(void **state) {
    fixture_t *f = *state;
    rows_t c = {{0}};
    char err[256];

    script(f, 200,
           "[{\"site\":\"PLANT1\",\"material\":\"RM-200\",\"lot\":\"L1\",\"location\":\"LINE-1\","
           "\"stock_status\":\"BLOCKED\",\"uom\":\"KG\",\"quantity\":\"2.500\"},"
           "{\"site\":\"PLANT1\",\"material\":\"RM-101\",\"lot\":\"L1\",\"location\":\"LINE-1\","
           "\"stock_status\":\"UNRESTRICTED\",\"uom\":\"EA\",\"quantity\":\"0.000\"},"
           "{\"site\":\"PLANT1\",\"material\":\"RM-101\",\"lot\":\"L2\",\"location\":\"LINE-1\","
           "\"stock_status\":\"QUALITY\",\"uom\":\"EA\",\"quantity\":\"-1\"}]",
           0);
    assert_int_equal(erp_query_on_hand(f->erp, "PLANT 1&x", collect, &c, err, sizeof err), IS_OK);
    assert_string_equal(c.buf, "PLANT1/RM-101/L2/LINE-1/QUALITY/EA=-1;"
                               "PLANT1/RM-200/L1/LINE-1/BLOCKED/KG=2.5;");
    assert_string_equal(f->sc.path, "/on-hand");
    assert_string_equal(f->sc.site, "PLANT 1&x"); /* escaped on the way, decoded by the server */

    script(f, 200,
           "[{\"site\":\"PLANT1\",\"material\":\"M\",\"location\":\"L\",\"uom\":\"EA\","
           "\"quantity\":12.5}]",
           0);
    assert_int_equal(erp_query_on_hand(f->erp, NULL, collect, &c, err, sizeof err), IS_ERR_INVALID);
    assert_non_null(strstr(err, "row 0"));
    assert_string_equal(f->sc.site, "");

    script(f, 503, "{\"error\":\"maintenance\"}", 0);
    assert_int_equal(erp_query_on_hand(f->erp, NULL, collect, &c, err, sizeof err),
                     IS_ERR_RETRYABLE);
    assert_non_null(strstr(err, "maintenance"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_post_201_is_ok_and_request_has_the_contract_shape),
        T(test_post_409_with_document_is_ok),
        T(test_post_409_without_document_is_retryable),
        T(test_post_2xx_with_numeric_document),
        T(test_post_2xx_without_a_usable_document_is_retryable),
        T(test_post_status_classification),
        T(test_redirect_is_retryable_and_names_its_target),
        T(test_retry_after_is_reported),
        T(test_post_timeout_is_retryable),
        T(test_post_connection_refused_is_retryable),
        cmocka_unit_test(test_answer_cut_short_is_retryable),
        T(test_huge_answer_is_retryable_and_names_the_status),
        T(test_long_error_body_is_truncated),
        T(test_error_body_not_utf8_gives_a_utf8_message),
        T(test_no_token_no_authorization_header_and_keep_alive),
        cmocka_unit_test(test_open_rejects_bad_url),
        T(test_lookup_found_missing_and_failing),
        T(test_on_hand_rows_sorted_zero_skipped_site_passed),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
