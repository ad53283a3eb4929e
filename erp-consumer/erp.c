/*
 * erp.c — the ERP adapter front: picks an implementation by name and
 * dispatches every call through its erp_ops_t.
 *
 * Adding an adapter is one line in `adapters` below plus its ops table. The
 * front also makes the result contract uniform: *result is cleared before
 * every call, so an adapter only writes what it knows.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "erp.h"

struct erp {
    const erp_ops_t *ops; /* the chosen adapter */
    void *impl;           /* its private state, owned */
};

static const erp_ops_t *const adapters[] = {&erp_sqlite_ops, &erp_http_ops};
#define N_ADAPTERS (sizeof adapters / sizeof adapters[0])

static const erp_ops_t *find_adapter(const char *name) {
    for (size_t i = 0; i < N_ADAPTERS; i++)
        if (strcmp(adapters[i]->name, name) == 0)
            return adapters[i];
    return NULL;
}

is_err_t erp_open(const erp_config_t *cfg, erp_t **out, char *errstr, size_t errstr_size) {
    const erp_ops_t *ops;
    erp_t *erp = NULL;
    is_err_t rc;

    *out = NULL;
    if (!cfg || !cfg->adapter || !cfg->adapter[0]) {
        is_errf(errstr, errstr_size, "erp.adapter is not set (known: sqlite, http-json)");
        return IS_ERR_CONFIG;
    }
    ops = find_adapter(cfg->adapter);
    if (!ops) {
        is_errf(errstr, errstr_size, "unknown erp.adapter '%s' (known: sqlite, http-json)",
                cfg->adapter);
        return IS_ERR_CONFIG;
    }
    erp = calloc(1, sizeof *erp);
    if (!erp) {
        is_errf(errstr, errstr_size, "out of memory");
        return IS_ERR_NOMEM;
    }
    erp->ops = ops;
    rc = ops->open(cfg, &erp->impl, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    *out = erp;
    return IS_OK;

err:
    free(erp);
    return rc;
}

void erp_close(erp_t *erp) {
    if (!erp)
        return;
    erp->ops->close(erp->impl);
    free(erp);
}

const char *erp_name(const erp_t *erp) {
    return erp ? erp->ops->name : "(none)";
}

is_err_t erp_post(erp_t *erp, const erp_posting_t *p, erp_result_t *result) {
    memset(result, 0, sizeof *result);
    return erp->ops->post(erp->impl, p, result);
}

int erp_batch_held(const erp_posting_t *ps, const is_err_t *rcs, size_t i, erp_result_t *result) {
    if (!ps[i].order_key)
        return 0;
    for (size_t k = i; k-- > 0;) {
        if (rcs[k] != IS_OK && ps[k].order_key && strcmp(ps[k].order_key, ps[i].order_key) == 0) {
            result->not_attempted = 1;
            snprintf(result->message, sizeof(result->message),
                     "not attempted: posting %s of %s failed before it in this batch",
                     ps[k].posting_id, ps[i].order_key);
            return 1;
        }
    }
    return 0;
}

void erp_post_batch(erp_t *erp, const erp_posting_t *ps, size_t n, erp_result_t *results,
                    is_err_t *rcs) {
    if (erp->ops->post_batch) {
        erp->ops->post_batch(erp->impl, ps, n, results, rcs);
        return;
    }
    for (size_t i = 0; i < n; i++)
        rcs[i] = erp_batch_held(ps, rcs, i, &results[i])
                     ? IS_ERR_RETRYABLE
                     : erp->ops->post(erp->impl, &ps[i], &results[i]);
}

void erp_chunk_reference(char *buf, size_t size, const char *posting_id, size_t k) {
    snprintf(buf, size, "%s-%zu", posting_id, k);
}

void erp_chunked_document(char *buf, size_t size, const char *first_doc, size_t n_chunks) {
    snprintf(buf, size, "%.40s+%zu", first_doc, n_chunks - 1);
}

size_t erp_document_chunks(const char *document) {
    const char *plus = document ? strrchr(document, '+') : NULL;
    char *end = NULL;
    unsigned long more = plus && plus[1] >= '0' && plus[1] <= '9' ? strtoul(plus + 1, &end, 10) : 0;
    if (!end || *end || more == 0 || more > 100000)
        return 1;
    return (size_t)more + 1;
}

is_err_t erp_lookup_reference(erp_t *erp, const char *posting_id, erp_result_t *result) {
    memset(result, 0, sizeof *result);
    return erp->ops->lookup_reference(erp->impl, posting_id, result);
}

is_err_t erp_query_on_hand(erp_t *erp, const char *site, erp_on_hand_cb cb, void *opaque,
                           char *errstr, size_t errstr_size) {
    if (errstr && errstr_size)
        errstr[0] = '\0';
    return erp->ops->query_on_hand(erp->impl, site, cb, opaque, errstr, errstr_size);
}
