/*
 * erp.h — the ERP adapter interface (DESIGN.md §6).
 *
 * One interface, several implementations chosen by name at start-up:
 *   "sqlite"    an embedded ERP ledger (erp_sqlite.c): material documents with
 *               their source movement ids and on-hand by site/material/lot/
 *               location/stock status. Zero set-up; demos and tests.
 *   "http-json" generic REST via libcurl (erp_http.c), see docs/ERP-HTTP.md.
 *
 * A posting is a list of lines; each line is one movement or the netted sum of
 * several movements with the same (site, material, lot, location, order,
 * type, uom, stock status). posting_id is deterministic (a hash of the sorted
 * movement ids) and is the idempotency reference the ERP stores: posting the
 * same posting_id twice must not post twice.
 *
 * Errors are classified by the adapter: IS_ERR_RETRYABLE (timeout, 5xx,
 * lock, connection refused) or IS_ERR_PERMANENT (validation, unknown
 * material, insufficient stock, other 4xx). result->message carries the
 * ERP's answer for the dead-letter and the operator.
 *
 * Threads: an erp_t is used by one thread at a time (the poster, or a CLI
 * command). Different erp_t handles may be used concurrently.
 */
#ifndef INVSYNC_ERP_H
#define INVSYNC_ERP_H

#include <stddef.h>
#include <stdint.h>

#include "decimal.h"
#include "error.h"
#include "movement.h"

typedef struct erp_line {
    const is_movement_t *m;          /* representative movement: every key field, type, statuses */
    is_decimal_t quantity;           /* the line's (net) quantity; for one movement its quantity */
    const char *const *movement_ids; /* source movement ids (traceability) */
    size_t n_movement_ids;
} erp_line_t;

typedef struct erp_posting {
    const char *posting_id; /* idempotency reference, [0-9a-f]{32} */
    const char *site;
    const char *tier;
    const char *policy_version;
    int64_t posting_time; /* ms since epoch UTC */
    const erp_line_t *lines;
    size_t n_lines;
    /* erp_post_batch: postings with the same non-NULL order_key (the lot) are
     * applied in order; once one fails, the later ones are not attempted. */
    const char *order_key;
} erp_posting_t;

typedef struct erp_result {
    char document[64];      /* ERP document number when posted / found */
    char message[512];      /* ERP's answer or the transport error, for humans */
    int http_status;        /* HTTP status where there was one, else 0 */
    int not_attempted;      /* erp_post_batch: held behind a failed posting of its order_key */
    int64_t retry_after_ms; /* retryable: the ERP's Retry-After (429, 503), else 0 */
} erp_result_t;

typedef struct erp_on_hand_row {
    const char *site, *material, *lot, *location, *uom;
    int status; /* Invsync__V1__StockStatus */
    is_decimal_t quantity;
} erp_on_hand_row_t;

/* Return non-zero to stop the iteration. */
typedef int (*erp_on_hand_cb)(void *opaque, const erp_on_hand_row_t *row);

typedef struct erp_config {
    char *adapter;           /* "sqlite" | "http-json" */
    char *sqlite_path;       /* sqlite: ledger database file */
    int allow_negative;      /* sqlite: accept issues that drive on-hand below zero */
    char *http_url;          /* http-json: base URL, e.g. http://erp:8080 */
    char *http_token;        /* http-json: bearer token (never logged) */
    int64_t http_timeout_ms; /* http-json: whole-request timeout */
} erp_config_t;

typedef struct erp erp_t;

/* Open the adapter named in cfg->adapter. errstr says what is wrong. */
is_err_t erp_open(const erp_config_t *cfg, erp_t **out, char *errstr,
                  size_t errstr_size) IS_MUST_CHECK;
void erp_close(erp_t *erp); /* NULL is a no-op */
const char *erp_name(const erp_t *erp);

/*
 * Post. IS_OK: posted now, or found already posted under this posting_id
 * (result->document is the existing document). IS_ERR_RETRYABLE /
 * IS_ERR_PERMANENT otherwise, with result->message.
 */
is_err_t erp_post(erp_t *erp, const erp_posting_t *p, erp_result_t *result) IS_MUST_CHECK;

/*
 * Post several postings; rcs[i] and results[i] are posting i's outcome, as
 * for erp_post. An adapter may make them durable together (the embedded
 * ledger commits them in one transaction); each keeps its own idempotency
 * reference and its own outcome. Adapters without a batch call post them
 * one by one, in order. A posting behind a failed one of the same order_key
 * is not attempted: IS_ERR_RETRYABLE with results[i].not_attempted set.
 */
void erp_post_batch(erp_t *erp, const erp_posting_t *ps, size_t n, erp_result_t *results,
                    is_err_t *rcs);

/*
 * A posting cut into chunks (a tier's max_lines) is booked chunk by chunk
 * under the references <posting_id>-1 … -<n>, and recorded with the document
 * "<first chunk's document>+<n-1>". The one spelling of both, for the poster
 * and for replay's ERP check.
 */
void erp_chunk_reference(char *buf, size_t size, const char *posting_id, size_t k);
void erp_chunked_document(char *buf, size_t size, const char *first_doc, size_t n_chunks);
/* n_chunks of a document erp_chunked_document wrote; 1 for any other. */
size_t erp_document_chunks(const char *document);

/*
 * Was posting_id posted? IS_OK with result->document, IS_ERR_NOT_FOUND, or
 * IS_ERR_RETRYABLE when the ERP cannot be asked now. Used after a crash to
 * resolve postings left in the `posting` state before re-posting them.
 */
is_err_t erp_lookup_reference(erp_t *erp, const char *posting_id,
                              erp_result_t *result) IS_MUST_CHECK;

/* Every non-zero on-hand row (site NULL = all sites), in key order. */
is_err_t erp_query_on_hand(erp_t *erp, const char *site, erp_on_hand_cb cb, void *opaque,
                           char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * For batch implementations: 1 (and result filled) when posting i must not
 * be attempted because an earlier posting of its order_key failed (rcs of
 * the earlier postings must be final).
 */
int erp_batch_held(const erp_posting_t *ps, const is_err_t *rcs, size_t i, erp_result_t *result);

/* Implementation hooks (erp.c dispatches through these). */
typedef struct erp_ops {
    const char *name;
    is_err_t (*open)(const erp_config_t *cfg, void **impl, char *errstr, size_t errstr_size);
    void (*close)(void *impl);
    is_err_t (*post)(void *impl, const erp_posting_t *p, erp_result_t *result);
    /* Optional (NULL: erp_post_batch loops over post). */
    void (*post_batch)(void *impl, const erp_posting_t *ps, size_t n, erp_result_t *results,
                       is_err_t *rcs);
    is_err_t (*lookup_reference)(void *impl, const char *posting_id, erp_result_t *result);
    is_err_t (*query_on_hand)(void *impl, const char *site, erp_on_hand_cb cb, void *opaque,
                              char *errstr, size_t errstr_size);
} erp_ops_t;

extern const erp_ops_t erp_sqlite_ops;
extern const erp_ops_t erp_http_ops;

#endif
