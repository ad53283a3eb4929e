/*
 * httpd.h — a thin libmicrohttpd wrapper: a route table, whole request
 * bodies, JSON responses.
 *
 * The server runs on libmicrohttpd's own threads (a thread pool on epoll):
 * handlers are called on those threads, concurrently, and must be
 * thread-safe with respect to their ctx. The wrapper collects the body up to
 * max_body bytes (larger → 413 before the handler runs), answers 404 for an
 * unknown path and 405 for a known path with another method.
 */
#ifndef INVSYNC_HTTPD_H
#define INVSYNC_HTTPD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct MHD_Connection;

typedef struct is_http_request {
    const char *method; /* "GET", "POST", … */
    const char *path;   /* without the query string */
    const char *body;   /* NUL-terminated copy; "" when empty */
    size_t body_len;
    struct MHD_Connection *conn; /* for header and query lookups */
} is_http_request_t;

/* Case-insensitive header lookup; NULL when absent. */
const char *is_http_header(const is_http_request_t *req, const char *name);
/* Query argument (?name=value, decoded); NULL when absent. */
const char *is_http_query(const is_http_request_t *req, const char *name);
/* 1 when tok can be sent and matched as "Authorization: Bearer <tok>": one word
 * of printable ASCII (no space, tab, control character or non-ASCII byte). */
int is_http_token_valid(const char *tok);
/* The first query argument whose name is not in names (NULL-ended), or NULL
 * when every one is known. Valid until the next call on this thread. */
const char *is_http_query_unknown(const is_http_request_t *req, const char *const *names);
/* The token of "Authorization: Bearer <token>" (surrounding whitespace
 * dropped), or NULL. Valid until the next call on this thread. */
const char *is_http_bearer(const is_http_request_t *req);
/* The 401 for an Authorization header that is there but not "Bearer <token>"
 * (another scheme, the token alone, no token): not a missing one. */
#define IS_HTTP_BEARER_MALFORMED "malformed Authorization header: expected 'Bearer <token>'"

typedef struct is_http_response {
    int status;               /* default 200 */
    const char *content_type; /* static string; default "application/json" */
    char *body;               /* malloc'd; the server frees it */
    size_t body_len;
    char extra_header[128]; /* optional "Name: value" line (e.g. Retry-After) */
} is_http_response_t;

typedef void (*is_http_handler_fn)(void *ctx, const is_http_request_t *req,
                                   is_http_response_t *resp);

typedef struct is_http_route {
    const char *method; /* "GET", "POST" */
    const char *path;   /* exact, or a prefix when it ends with '*' (e.g. "/admin/failed/" + "*") */
    is_http_handler_fn fn;
} is_http_route_t;

typedef struct is_httpd is_httpd_t;

/* The form of a listen address (no lookup, no bind): IS_OK, or IS_ERR_CONFIG
 * with errstr "bad listen address '…': expected …". For config checks. */
is_err_t is_httpd_check_listen(const char *listen, char *errstr, size_t errstr_size);

/*
 * listen: "127.0.0.1:8080", "0.0.0.0:8080", ":8080" (all interfaces) or port
 * 0 for an ephemeral port (see is_httpd_port). routes is copied.
 */
is_err_t is_httpd_start(const char *listen, const is_http_route_t *routes, size_t n_routes,
                        void *ctx, size_t max_body, unsigned threads, is_httpd_t **out,
                        char *errstr, size_t errstr_size) IS_MUST_CHECK;
uint16_t is_httpd_port(const is_httpd_t *h);
/* Stops accepting new connections, lets requests in flight finish and their
 * answers go out (at most 10 s), stops the workers, frees. NULL is a no-op. */
void is_httpd_stop(is_httpd_t *h);

/* Set a JSON body (takes the reference to body) and a status. */
void is_http_respond_json(is_http_response_t *resp, int status, json_t *body);
/* {"error": "<message>"} with the status. */
void is_http_respond_error(is_http_response_t *resp, int status, const char *fmt, ...)
    IS_PRINTF(3, 4);
/* A body copied from text with the given content type. */
void is_http_respond_text(is_http_response_t *resp, int status, const char *content_type,
                          const char *text, size_t len);

#endif
