/*
 * erp_http.c — the "http-json" ERP adapter: a generic REST contract over
 * libcurl (docs/ERP-HTTP.md is the contract; keep the two in step).
 *
 *   POST {url}/postings            Idempotency-Key: <posting_id>, JSON body
 *   GET  {url}/postings/{id}       was it posted? {"document": "..."}
 *   GET  {url}/on-hand[?site=S]    [{"site", ..., "quantity": "12.5"}, ...]
 *
 * One easy handle is reused for every request, so the connection is kept
 * alive between postings (the poster sends them back to back). The handle is
 * not thread-safe; neither is an erp_t (erp.h). CURLOPT_NOSIGNAL is set
 * because the poster is not the main thread.
 *
 * Classification follows HTTP semantics: no answer (timeout, refused, reset),
 * 5xx, 408, 425 and 429 are retryable; a 2xx is success only with a usable
 * document (else retryable: no confirmation); 409 with a document means "already
 * posted under this key" and is success, 409 without one means "a request
 * with this key is still in flight" (draft-ietf-httpapi-idempotency-key-
 * header) and is retryable; 401/403 are retryable too — a bad token is fixed
 * by an operator, not by changing the posting, and dead-lettering a whole
 * day of postings over it would turn a config slip into manual work (the
 * staleness alarm makes it loud instead). Any other 4xx is permanent.
 *
 * The bearer token is kept only in the prepared header string; it is never
 * logged or copied into result->message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "duration.h"
#include "erp.h"
#include "utf8.h"

#define POST_RESPONSE_MAX    (1u << 20)   /* a posting answer is small */
#define ON_HAND_RESPONSE_MAX (256u << 20) /* a whole plant's on-hand */
#define DEFAULT_TIMEOUT_MS   30000
#define DOCUMENT_MAX         40 /* characters of a document number kept whole */
#define DOCUMENT_MAX_STR     "40"

typedef struct erp_http {
    CURL *curl;                     /* reused: keep-alive */
    char *base;                     /* cfg->http_url without trailing '/' */
    char *auth_header;              /* "Authorization: Bearer …" or NULL; never logged */
    long timeout_ms;                /* whole request */
    char curl_err[CURL_ERROR_SIZE]; /* libcurl's detail for the last failure */
} erp_http_t;

typedef struct resp_buf {
    char *data; /* NUL-terminated once anything arrived */
    size_t len, cap;
    size_t max;  /* larger answers abort the transfer */
    int too_big; /* set when max was hit */
} resp_buf_t;

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *opaque) {
    resp_buf_t *b = opaque;
    size_t n = size * nmemb;

    if (n > b->max - b->len) {
        b->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *d;
        while (cap < b->len + n + 1)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/*
 * "HTTP 422 (note): <body>" into msg, the body flattened to one line and cut
 * to fit (ending in "..." when cut), so a dead-letter shows the ERP's words.
 * The message is valid UTF-8 whatever the body (a byte that is not becomes
 * '?', a cut never splits a character): the store, `failed list` and the
 * audit trail carry it as a JSON string, which refuses anything else.
 */
static void format_answer(char *msg, size_t size, long status, const char *note,
                          const resp_buf_t *b) {
    size_t at, fit, i;
    int n = snprintf(msg, size, "HTTP %ld%s%s%s%s", status, note ? " (" : "", note ? note : "",
                     note ? ")" : "", b->len ? ": " : "");

    if (n < 0 || (size_t)n >= size)
        return;
    at = fit = (size_t)n;
    for (i = 0; i < b->len;) {
        const unsigned char *c = (const unsigned char *)b->data + i;
        size_t len = is_utf8_char_len(c, b->len - i);

        if (at + (len ? len : 1) + 1 > size)
            break;
        if (len > 1)
            memcpy(msg + at, c, len);
        else
            msg[at] = !len ? '?' : c[0] < 0x20 || c[0] == 0x7f ? ' ' : (char)c[0];
        at += len ? len : 1;
        i += len ? len : 1;
        if (at + 4 <= size)
            fit = at; /* room left for "..." after this character */
    }
    if (i < b->len && size >= 4 && fit + 4 <= size)
        memcpy(msg + fit, "...", 4);
    else
        msg[at] = '\0';
}

static is_err_t classify(long status) {
    if (status >= 200 && status < 300)
        return IS_OK;
    if (status == 401 || status == 403 || status == 408 || status == 425 || status == 429)
        return IS_ERR_RETRYABLE;
    if (status >= 400 && status < 500)
        return IS_ERR_PERMANENT;
    return IS_ERR_RETRYABLE; /* 5xx, and unexpected 1xx/3xx: not the posting's fault */
}

/*
 * The note for an answer that is neither success nor the posting's fault:
 * where a redirect points. Redirects are not followed (a POST must reach
 * the ERP itself, not be re-sent elsewhere or turned into a GET), so the
 * operator needs the target to fix erp.http.url. NULL for other statuses.
 */
static const char *redirect_note(erp_http_t *h, long status, char *buf, size_t size) {
    char *to = NULL;

    if (status < 300 || status >= 400)
        return NULL;
    if (curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_URL, &to) != CURLE_OK)
        to = NULL;
    snprintf(buf, size, "redirect to %.200s, not followed: erp.http.url must be the ERP's own URL",
             to ? to : "no Location");
    return buf;
}

/*
 * One request. IS_OK when an HTTP answer arrived (any status, in *status),
 * IS_ERR_RETRYABLE with msg when none did (whatever the cause, it is not
 * the posting's fault).
 */
static is_err_t perform(erp_http_t *h, const char *what, const char *url,
                        struct curl_slist *headers, const char *body, size_t body_len,
                        resp_buf_t *resp, long *status, char *msg, size_t msg_size) {
    CURLcode cc;

    *status = 0;
    h->curl_err[0] = '\0';
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, resp);
    if (body) {
        curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
    } else {
        curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
    }
    cc = curl_easy_perform(h->curl);
    /* The caller frees headers and body: leave no dangling pointers in the handle. */
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, NULL);
    if (cc == CURLE_WRITE_ERROR && resp->too_big) {
        long code = 0; /* the headers have arrived: name the status */
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &code);
        is_errf(msg, msg_size, "ERP %s: HTTP %ld answer larger than %zu bytes, not read", what,
                code, resp->max);
        return IS_ERR_RETRYABLE;
    }
    if (cc != CURLE_OK) {
        is_errf(msg, msg_size, "ERP %s: %s (curl %d)", what,
                h->curl_err[0] ? h->curl_err : curl_easy_strerror(cc), (int)cc);
        return IS_ERR_RETRYABLE;
    }
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, status);
    return IS_OK;
}

/* Common headers plus extra (may be NULL); NULL on ENOMEM. */
static struct curl_slist *make_headers(const erp_http_t *h, int with_body, const char *extra) {
    struct curl_slist *list = NULL, *next;
    const char *lines[5];
    size_t n = 0;

    lines[n++] = "Accept: application/json";
    if (with_body) {
        lines[n++] = "Content-Type: application/json";
        lines[n++] = "Expect:"; /* no 100-continue round trip */
    }
    if (h->auth_header)
        lines[n++] = h->auth_header;
    if (extra)
        lines[n++] = extra;
    for (size_t i = 0; i < n; i++) {
        next = curl_slist_append(list, lines[i]);
        if (!next) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    return list;
}

/* "{base}{path}{escaped arg}" — arg may be NULL. Caller frees. */
static char *make_url(erp_http_t *h, const char *path, const char *arg) {
    char *esc = NULL, *url;
    size_t n;

    if (arg) {
        esc = curl_easy_escape(h->curl, arg, 0);
        if (!esc)
            return NULL;
    }
    n = strlen(h->base) + strlen(path) + (esc ? strlen(esc) : 0) + 1;
    url = malloc(n);
    if (url)
        snprintf(url, n, "%s%s%s", h->base, path, esc ? esc : "");
    curl_free(esc);
    return url;
}

static const char no_document[] = "no document in the answer";

/*
 * {"document": "..."} (a string or an integer) into doc. NULL when the answer
 * names a usable document, else why not: an answer without one (an empty or
 * non-JSON body, a gateway's page, a 202 "queued") is no confirmation that
 * the posting was booked. A string must be 1..DOCUMENT_MAX characters
 * without control characters, so that it is recorded whole (a chunked
 * posting's "<first>+<n-1>", erp_chunked_document, keeps 40 of them).
 */
static const char *answer_document(const resp_buf_t *b, char *doc, size_t doc_size) {
    json_t *root, *d;
    const char *why = NULL;

    doc[0] = '\0';
    if (!b->len)
        return "no document: empty answer";
    root = json_loadb(b->data, b->len, 0, NULL);
    d = json_is_object(root) ? json_object_get(root, "document") : NULL;
    if (!root)
        why = "no document: the answer is not JSON";
    else if (!d || json_is_null(d))
        why = no_document;
    else if (json_is_integer(d))
        snprintf(doc, doc_size, "%" JSON_INTEGER_FORMAT, json_integer_value(d));
    else if (!json_is_string(d))
        why = "document is neither a string nor an integer";
    else if (json_string_length(d) == 0 || json_string_length(d) > DOCUMENT_MAX)
        why = "document is not 1-" DOCUMENT_MAX_STR " characters long";
    else {
        const char *v = json_string_value(d);
        for (size_t i = 0; i < json_string_length(d) && !why; i++)
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                why = "document has control characters";
        if (!why)
            snprintf(doc, doc_size, "%s", v);
    }
    json_decref(root);
    return why;
}

/* ---- request bodies ------------------------------------------------------ */

static json_t *str_or_null(const char *s) {
    return s && s[0] ? json_string(s) : json_null();
}

static json_t *line_json(const erp_line_t *line) {
    const is_movement_t *m = line->m;
    char qty[IS_DECIMAL_STRLEN];
    json_t *o = json_object(), *ids = json_array();
    int bad = !o || !ids;

    is_decimal_format(line->quantity, qty, sizeof qty);
    for (size_t i = 0; i < line->n_movement_ids && !bad; i++)
        bad |= json_array_append_new(ids, json_string(line->movement_ids[i])) != 0;
    if (line->n_movement_ids == 0 && m->movement_id && m->movement_id[0] && !bad)
        bad |= json_array_append_new(ids, json_string(m->movement_id)) != 0;
    if (bad)
        goto err;
    bad |= json_object_set_new(o, "type", json_string(is_movement_type_name(m->type)));
    bad |= json_object_set_new(o, "material", str_or_null(m->material));
    bad |= json_object_set_new(o, "lot", str_or_null(m->lot));
    bad |= json_object_set_new(o, "serial", str_or_null(m->serial));
    bad |= json_object_set_new(o, "location", str_or_null(m->location));
    bad |= json_object_set_new(o, "to_location", str_or_null(m->to_location));
    bad |= json_object_set_new(o, "from_status",
                               m->from_status ? json_string(is_stock_status_name(m->from_status))
                                              : json_null());
    bad |= json_object_set_new(o, "to_status",
                               m->to_status ? json_string(is_stock_status_name(m->to_status))
                                            : json_null());
    bad |= json_object_set_new(o, "uom", str_or_null(m->uom));
    bad |= json_object_set_new(o, "quantity", json_string(qty));
    bad |= json_object_set_new(o, "order_id", str_or_null(m->order_id));
    bad |= json_object_set_new(o, "operation", str_or_null(m->operation));
    bad |= json_object_set_new(o, "reason_code", str_or_null(m->reason_code));
    bad |= json_object_set_new(o, "reverses_movement_id", str_or_null(m->reverses_movement_id));
    bad |= json_object_set_new(
        o, "reversed_type",
        m->reversed_type ? json_string(is_movement_type_name(m->reversed_type)) : json_null());
    bad |= json_object_set_new(o, "movement_ids", ids);
    ids = NULL; /* owned by o now, even when set_new failed */
    if (bad)
        goto err;
    return o;

err:
    json_decref(ids);
    json_decref(o);
    return NULL;
}

/* The posting body (docs/ERP-HTTP.md), compact; NULL on ENOMEM or a line without movement. */
static char *posting_body(const erp_posting_t *p) {
    char when[IS_RFC3339_LEN];
    json_t *o = json_object(), *lines = json_array();
    char *body = NULL;
    int bad = !o || !lines;

    for (size_t i = 0; i < p->n_lines && !bad; i++)
        bad |= !p->lines[i].m || json_array_append_new(lines, line_json(&p->lines[i])) != 0;
    if (bad)
        goto done;
    is_format_rfc3339(p->posting_time, when);
    bad |= json_object_set_new(o, "posting_id", json_string(p->posting_id));
    bad |= json_object_set_new(o, "site", str_or_null(p->site));
    bad |= json_object_set_new(o, "tier", str_or_null(p->tier));
    bad |= json_object_set_new(o, "policy_version", str_or_null(p->policy_version));
    bad |= json_object_set_new(o, "posting_time", json_string(when));
    bad |= json_object_set_new(o, "lines", lines);
    lines = NULL;
    if (!bad)
        body = json_dumps(o, JSON_COMPACT);

done:
    json_decref(lines);
    json_decref(o);
    return body;
}

/* ---- operations ---------------------------------------------------------- */

static void http_close(void *impl) {
    erp_http_t *h = impl;
    if (!h)
        return;
    if (h->curl)
        curl_easy_cleanup(h->curl);
    free(h->base);
    free(h->auth_header);
    free(h);
    curl_global_cleanup();
}

static is_err_t http_open(const erp_config_t *cfg, void **impl, char *errstr, size_t errstr_size) {
    erp_http_t *h;
    const char *url = cfg->http_url;
    size_t len;

    *impl = NULL;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        is_errf(errstr, errstr_size, "erp.http.url '%s' must start with http:// or https://",
                url ? url : "");
        return IS_ERR_CONFIG;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        is_errf(errstr, errstr_size, "out of memory");
        return IS_ERR_NOMEM;
    }
    /* Reference-counted by libcurl (and thread-safe since 7.84); http_close releases it. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(h);
        is_errf(errstr, errstr_size, "cannot initialise libcurl");
        return IS_ERR_NOMEM;
    }
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    h->base = strndup(url, len);
    h->timeout_ms = cfg->http_timeout_ms > 0 ? (long)cfg->http_timeout_ms : DEFAULT_TIMEOUT_MS;
    if (cfg->http_token && cfg->http_token[0]) {
        size_t n = strlen("Authorization: Bearer ") + strlen(cfg->http_token) + 1;
        h->auth_header = malloc(n);
        if (!h->auth_header)
            goto err;
        snprintf(h->auth_header, n, "Authorization: Bearer %s", cfg->http_token);
    }
    h->curl = curl_easy_init();
    if (!h->base || !h->curl)
        goto err;
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "invsync-erp-consumer");
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->curl_err);
    *impl = h;
    return IS_OK;

err:
    http_close(h);
    is_errf(errstr, errstr_size, "out of memory");
    return IS_ERR_NOMEM;
}

static is_err_t http_post(void *impl, const erp_posting_t *p, erp_result_t *r) {
    erp_http_t *h = impl;
    resp_buf_t resp = {.max = POST_RESPONSE_MAX};
    struct curl_slist *headers = NULL;
    char *body = NULL, *url = NULL, *key = NULL, note[320];
    long status = 0;
    size_t key_len;
    is_err_t rc = IS_ERR_RETRYABLE;

    if (!p->posting_id || !p->posting_id[0] || strpbrk(p->posting_id, "\r\n")) {
        is_errf(r->message, sizeof r->message, "posting without a usable posting_id");
        return IS_ERR_PERMANENT;
    }
    body = posting_body(p);
    url = make_url(h, "/postings", NULL);
    key_len = strlen("Idempotency-Key: ") + strlen(p->posting_id) + 1;
    key = malloc(key_len);
    if (key)
        snprintf(key, key_len, "Idempotency-Key: %s", p->posting_id);
    headers = key ? make_headers(h, 1, key) : NULL;
    if (!body || !url || !headers) {
        /* A line without a movement is the only non-memory cause. */
        for (size_t i = 0; i < p->n_lines; i++)
            if (!p->lines[i].m) {
                is_errf(r->message, sizeof r->message, "line %zu: no movement", i + 1);
                rc = IS_ERR_PERMANENT;
                goto done;
            }
        is_errf(r->message, sizeof r->message, "ERP POST /postings: out of memory");
        goto done; /* retryable: memory may be there next time */
    }

    rc = perform(h, "POST /postings", url, headers, body, strlen(body), &resp, &status, r->message,
                 sizeof r->message);
    if (rc != IS_OK)
        goto done;
    r->http_status = (int)status;
    rc = classify(status);
    if (rc == IS_OK || status == 409) {
        /* Success only with the document (a 409's is the one booked first
         * under this key). Without one the ERP has not confirmed the
         * booking — a 409 without one is a request with this key still in
         * flight: sent again under the same key, the answer names it. */
        const char *why = answer_document(&resp, r->document, sizeof r->document);
        if (why) {
            rc = IS_ERR_RETRYABLE;
            format_answer(r->message, sizeof r->message, status,
                          status == 409 && why == no_document ? "request in flight" : why, &resp);
        } else if (status == 409) {
            rc = IS_OK;
            format_answer(r->message, sizeof r->message, status, "already posted under this key",
                          &resp);
        } else {
            is_errf(r->message, sizeof r->message, "HTTP %ld: posted as document %s", status,
                    r->document);
        }
    } else {
        const char *why = redirect_note(h, status, note, sizeof note);
        curl_off_t wait = 0;
        /* 429 / 503 with Retry-After (seconds or a date): the poster waits
         * at least that long (up to retry.max) instead of its own backoff. */
        if (rc == IS_ERR_RETRYABLE && !why &&
            curl_easy_getinfo(h->curl, CURLINFO_RETRY_AFTER, &wait) == CURLE_OK && wait > 0) {
            r->retry_after_ms = wait < INT64_MAX / 1000 ? (int64_t)wait * 1000 : INT64_MAX;
            snprintf(note, sizeof note, "Retry-After %" CURL_FORMAT_CURL_OFF_T " s", wait);
            why = note;
        }
        format_answer(r->message, sizeof r->message, status, why, &resp);
    }

done:
    curl_slist_free_all(headers);
    free(key);
    free(url);
    free(body);
    free(resp.data);
    return rc;
}

static is_err_t http_lookup(void *impl, const char *posting_id, erp_result_t *r) {
    erp_http_t *h = impl;
    resp_buf_t resp = {.max = POST_RESPONSE_MAX};
    struct curl_slist *headers = make_headers(h, 0, NULL);
    char *url = make_url(h, "/postings/", posting_id ? posting_id : "");
    char note[320];
    long status = 0;
    is_err_t rc = IS_ERR_RETRYABLE;

    if (!headers || !url) {
        is_errf(r->message, sizeof r->message, "ERP GET /postings: out of memory");
        goto done;
    }
    rc = perform(h, "GET /postings/{id}", url, headers, NULL, 0, &resp, &status, r->message,
                 sizeof r->message);
    if (rc != IS_OK)
        goto done;
    r->http_status = (int)status;
    if (status >= 200 && status < 300) { /* the contract says 200; any 2xx is "found" */
        /* ... with its document: a 200 page without one (a gateway, a wrong
         * base URL) must not mark an unbooked posting posted. */
        const char *why = answer_document(&resp, r->document, sizeof r->document);
        if (!why) {
            is_errf(r->message, sizeof r->message, "HTTP %ld: posted as document %s", status,
                    r->document);
            rc = IS_OK;
        } else {
            format_answer(r->message, sizeof r->message, status, why, &resp);
            rc = IS_ERR_RETRYABLE;
        }
    } else {
        format_answer(r->message, sizeof r->message, status,
                      redirect_note(h, status, note, sizeof note), &resp);
        rc = status == 404 ? IS_ERR_NOT_FOUND : IS_ERR_RETRYABLE;
    }

done:
    curl_slist_free_all(headers);
    free(url);
    free(resp.data);
    return rc;
}

/* ---- on-hand ------------------------------------------------------------- */

typedef struct parsed_row {
    erp_on_hand_row_t row;
    const char *status_name; /* for ordering like the sqlite ledger */
} parsed_row_t;

static int row_cmp(const void *a, const void *b) {
    const parsed_row_t *x = a, *y = b;
    const char *kx[] = {x->row.site,     x->row.material, x->row.lot,
                        x->row.location, x->status_name,  x->row.uom};
    const char *ky[] = {y->row.site,     y->row.material, y->row.lot,
                        y->row.location, y->status_name,  y->row.uom};
    for (size_t i = 0; i < sizeof kx / sizeof kx[0]; i++) {
        int c = strcmp(kx[i], ky[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static const char *row_str(json_t *o, const char *key, int required) {
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return json_string_value(v);
    return required ? NULL : "";
}

/* Rows of a JSON array into out (n entries), skipping zero quantities. */
static is_err_t parse_rows(json_t *arr, parsed_row_t *out, size_t *n, char *errstr,
                           size_t errstr_size) {
    size_t i, k = 0;
    json_t *o;

    json_array_foreach(arr, i, o) {
        parsed_row_t *pr = &out[k];
        const char *q = row_str(o, "quantity", 1), *st = row_str(o, "stock_status", 0);
        char why[128];

        pr->row.site = row_str(o, "site", 1);
        pr->row.material = row_str(o, "material", 1);
        pr->row.lot = row_str(o, "lot", 0);
        pr->row.location = row_str(o, "location", 1);
        pr->row.uom = row_str(o, "uom", 1);
        if (!json_is_object(o) || !pr->row.site || !pr->row.material || !pr->row.location ||
            !pr->row.uom || !q) {
            is_errf(errstr, errstr_size,
                    "ERP on-hand row %zu: site, material, location, uom and quantity (a decimal "
                    "string) are required",
                    i);
            return IS_ERR_INVALID;
        }
        pr->row.status =
            st[0] ? is_stock_status_parse(st) : INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
        if (pr->row.status == 0) {
            is_errf(errstr, errstr_size, "ERP on-hand row %zu: unknown stock_status '%s'", i, st);
            return IS_ERR_INVALID;
        }
        pr->status_name = is_stock_status_name(pr->row.status);
        if (is_decimal_parse(q, strlen(q), IS_DECIMAL_MAX_SCALE, &pr->row.quantity, why,
                             sizeof why) != IS_OK) {
            is_errf(errstr, errstr_size, "ERP on-hand row %zu: quantity '%s': %s", i, q, why);
            return IS_ERR_INVALID;
        }
        pr->row.quantity = is_decimal_normalize(pr->row.quantity);
        if (is_decimal_sign(pr->row.quantity) != 0)
            k++;
    }
    *n = k;
    return IS_OK;
}

static is_err_t http_query_on_hand(void *impl, const char *site, erp_on_hand_cb cb, void *opaque,
                                   char *errstr, size_t errstr_size) {
    erp_http_t *h = impl;
    resp_buf_t resp = {.max = ON_HAND_RESPONSE_MAX};
    struct curl_slist *headers = make_headers(h, 0, NULL);
    char *url = make_url(h, site ? "/on-hand?site=" : "/on-hand", site);
    parsed_row_t *rows = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    size_t n = 0;
    long status = 0;
    is_err_t rc = IS_ERR_NOMEM;

    if (!headers || !url) {
        is_errf(errstr, errstr_size, "ERP GET /on-hand: out of memory");
        goto done;
    }
    rc = perform(h, "GET /on-hand", url, headers, NULL, 0, &resp, &status, errstr, errstr_size);
    if (rc != IS_OK)
        goto done;
    if (status != 200) {
        format_answer(errstr, errstr_size, status, "ERP GET /on-hand", &resp);
        rc = classify(status) == IS_ERR_PERMANENT ? IS_ERR_PERMANENT : IS_ERR_RETRYABLE;
        goto done;
    }
    root = json_loadb(resp.data ? resp.data : "", resp.len, 0, &jerr);
    if (!json_is_array(root)) {
        is_errf(errstr, errstr_size, "ERP GET /on-hand: expected a JSON array (%s)",
                root ? "got another JSON type" : jerr.text);
        rc = IS_ERR_INVALID;
        goto done;
    }
    rows = calloc(json_array_size(root) + 1, sizeof *rows);
    if (!rows) {
        rc = IS_ERR_NOMEM;
        is_errf(errstr, errstr_size, "ERP GET /on-hand: out of memory");
        goto done;
    }
    rc = parse_rows(root, rows, &n, errstr, errstr_size);
    if (rc != IS_OK)
        goto done;
    qsort(rows, n, sizeof *rows, row_cmp);
    for (size_t i = 0; i < n; i++)
        if (cb(opaque, &rows[i].row) != 0)
            break;

done:
    free(rows);
    json_decref(root);
    curl_slist_free_all(headers);
    free(url);
    free(resp.data);
    return rc;
}

const erp_ops_t erp_http_ops = {
    .name = "http-json",
    .open = http_open,
    .close = http_close,
    .post = http_post,
    .lookup_reference = http_lookup,
    .query_on_hand = http_query_on_hand,
};
