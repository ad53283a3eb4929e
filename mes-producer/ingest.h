/*
 * ingest.h — mes-producer's HTTP surface: POST /v1/movements (the MES
 * entry point), GET /healthz, GET /readyz and GET /metrics.
 *
 * POST /v1/movements takes one JSON movement object, a JSON array of them
 * (Content-Type: application/json), or a packed invsync.v1.MovementBatch
 * (application/x-protobuf). A request is all or nothing; the checks, in order:
 *
 *   401  no bearer token / a token not in auth.tokens
 *   415  any other Content-Type (the answer names the accepted ones)
 *   400  malformed JSON (jansson's line, column and text), an undecodable
 *        protobuf, an empty array or batch
 *   413  more than max_items movements
 *   403  the token is not allowed for one item's site (named)
 *   422  field errors of every item: {"error":"validation failed","errors":
 *        [{"index","movement_id","field","error"}]} — protobuf strings must
 *        be UTF-8 without NUL bytes (protobuf-c would cut them at the NUL)
 *   422  (same body, found while appending) a REVERSAL whose original is in
 *        the outbox — stored before, or earlier in this request — but with
 *        other fields: "lot is 'B' but movement 'X' has 'A'" (outbox.h)
 *   409  an item reuses an accepted (source_system, movement_id) with
 *        different content: {"error", "conflicts":[{"index","movement_id"}]}
 *   503  the outbox could not commit (nothing acknowledged; Retry-After)
 *   202  {"accepted":n_new,"duplicates":n_dup,"items":[{"movement_id","tier",
 *        "status":"accepted"|"duplicate","sequence"}]} — every accepted item
 *        is committed to the outbox before this answer is sent.
 *
 * The core, ingest_movements(), takes the request's Content-Type, bearer
 * token and body directly, so it is testable without libmicrohttpd; the
 * route handlers only pull those out of the request.
 *
 * @locality the handlers run on libmicrohttpd's threads, concurrently. The
 * ingest_t is immutable after ingest_new; shared state (outbox, metrics) is
 * thread-safe on its own.
 */
#ifndef INVSYNC_INGEST_H
#define INVSYNC_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "duration.h"
#include "error.h"
#include "httpd.h"
#include "outbox.h"
#include "policy.h"
#include "producer_metrics.h"

#define INGEST_PATH_MOVEMENTS "/v1/movements"

typedef struct ingest ingest_t;

typedef struct ingest_opts {
    outbox_t *outbox;                    /* required */
    const is_policy_t *policy;           /* required */
    const is_strmap_t *tokens;           /* site → bearer token; "*" = every site */
    const is_strlist_t *refused_sources; /* loop guard; may be NULL */
    uint32_t max_scale;                  /* quantity decimal places */
    size_t max_items;                    /* movements per request */
    producer_metrics_t *metrics;         /* may be NULL */
    const is_clock_t *clock;             /* accepted_time source; NULL = system clock */
} ingest_opts_t;

/*
 * The options' pointers are borrowed and must outlive the ingest_t (tokens
 * and refused_sources are copied). On error *out is NULL.
 */
is_err_t ingest_new(const ingest_opts_t *opts, ingest_t **out, char *errstr,
                    size_t errstr_size) IS_MUST_CHECK;
/* NULL is a no-op. No handler may be running. */
void ingest_destroy(ingest_t *ig);

/*
 * Handle one POST /v1/movements. content_type and bearer may be NULL
 * (absent); bearer is "" for an Authorization header that is not
 * "Bearer <token>". body need not be NUL-terminated. Fills resp (status,
 * JSON body).
 */
void ingest_movements(ingest_t *ig, const char *content_type, const char *bearer, const char *body,
                      size_t body_len, is_http_response_t *resp);

/* Route handlers (ctx is the ingest_t). */
void ingest_handle_movements(void *ctx, const is_http_request_t *req, is_http_response_t *resp);
void ingest_handle_healthz(void *ctx, const is_http_request_t *req, is_http_response_t *resp);
void ingest_handle_readyz(void *ctx, const is_http_request_t *req, is_http_response_t *resp);
void ingest_handle_metrics(void *ctx, const is_http_request_t *req, is_http_response_t *resp);

/* The route table for is_httpd_start (static storage), with its length. */
const is_http_route_t *ingest_routes(size_t *n_routes);

#endif
