/*
 * ingest.c — POST /v1/movements and the health/metrics endpoints.
 *
 * One request is decoded into a list of items, each either a movement or the
 * reason it could not be built; then checked as a whole (authorization,
 * validation) before anything touches the outbox, so that every failure
 * stores nothing. The outbox append is one transaction; its commit is what
 * the 202 acknowledges.
 *
 * Load: up to http.max_items movements per request, several requests in
 * parallel on the HTTP threads; appends are serialized by the outbox.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ingest.h"
#include "json_arena.h"
#include "log.h"
#include "movement_json.h"
#include "topic.h"
#include "utf8.h"

#define CT_JSON           "application/json"
#define CT_PROTOBUF       "application/x-protobuf"
#define CT_ACCEPTED       CT_JSON ", " CT_PROTOBUF
#define MAX_ERRS_PER_ITEM 16
#define MAX_ERRS_LISTED   1000 /* the 422 body stays bounded; "error_count" has the total */
#define RETRY_AFTER_S     5

struct ingest {
    outbox_t *outbox;
    const is_policy_t *policy;
    is_strmap_t tokens; /* copy of site → token */
    char **refused;     /* NULL-terminated copy of the loop-guard list */
    uint32_t max_scale;
    size_t max_items;
    producer_metrics_t *metrics;
    const is_clock_t *clock;
};

/* One element of the request: a movement, or why there is none. */
typedef struct req_item {
    is_movement_t *m;    /* NULL when it could not be built */
    int owned;           /* free m on its own (JSON); else the batch owns it */
    const char *json_id; /* movement_id as sent, when m is NULL (borrowed from root) */
    /* When m is NULL because fields could not be read: the rest of the item, validated for its
     * other errors, and which fields failed (their validation errors would only repeat them). */
    is_movement_t *partial;
    char (*unread)[sizeof(((is_field_error_t *)0)->field)];
    size_t n_unread;
} req_item_t;

typedef struct request {
    ingest_t *ig;
    json_t *root;                      /* JSON body */
    Invsync__V1__MovementBatch *batch; /* protobuf body */
    req_item_t *items;
    size_t n;
    json_t *errors; /* 422 entries */
    size_t n_errors;
} request_t;

/* ---- life cycle --------------------------------------------------------- */

void ingest_destroy(ingest_t *ig) {
    size_t i;
    if (!ig)
        return;
    is_strmap_release(&ig->tokens);
    if (ig->refused) {
        for (i = 0; ig->refused[i]; i++)
            free(ig->refused[i]);
        free(ig->refused);
    }
    free(ig);
}

is_err_t ingest_new(const ingest_opts_t *opts, ingest_t **out, char *errstr, size_t errstr_size) {
    ingest_t *ig;
    size_t i, n_refused;

    *out = NULL;
    if (!opts->outbox || !opts->policy || opts->max_items == 0 ||
        opts->max_scale > IS_DECIMAL_MAX_SCALE) {
        is_errf(errstr, errstr_size, "ingest: outbox, policy and max_items are required");
        return IS_ERR_INVALID;
    }
    ig = calloc(1, sizeof(*ig));
    if (!ig)
        return IS_ERR_NOMEM;
    ig->outbox = opts->outbox;
    ig->policy = opts->policy;
    ig->max_scale = opts->max_scale;
    ig->max_items = opts->max_items;
    ig->metrics = opts->metrics;
    ig->clock = opts->clock;
    for (i = 0; opts->tokens && i < opts->tokens->n; i++) {
        if (is_strmap_set(&ig->tokens, opts->tokens->keys[i], opts->tokens->vals[i]) != IS_OK)
            goto nomem;
    }
    n_refused = opts->refused_sources ? opts->refused_sources->n : 0;
    ig->refused = calloc(n_refused + 1, sizeof(char *));
    if (!ig->refused)
        goto nomem;
    for (i = 0; i < n_refused; i++) {
        ig->refused[i] = strdup(opts->refused_sources->items[i]);
        if (!ig->refused[i])
            goto nomem;
    }
    *out = ig;
    return IS_OK;
nomem:
    ingest_destroy(ig);
    return IS_ERR_NOMEM;
}

/* ---- helpers ------------------------------------------------------------ */

/* Equal tokens, comparing every byte of the common length (no early exit). */
static int token_eq(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), i;
    unsigned char diff = (unsigned char)(la != lb);
    for (i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* 1 when bearer is any configured token. */
static int token_known(const ingest_t *ig, const char *bearer) {
    size_t i;
    int known = 0;
    for (i = 0; i < ig->tokens.n; i++)
        known |= token_eq(ig->tokens.vals[i], bearer);
    return known;
}

/* 1 when bearer may submit movements of site. */
static int token_allows(const ingest_t *ig, const char *bearer, const char *site) {
    size_t i;
    for (i = 0; i < ig->tokens.n; i++) {
        const char *k = ig->tokens.keys[i];
        if ((strcmp(k, "*") == 0 || strcmp(k, site) == 0) && token_eq(ig->tokens.vals[i], bearer))
            return 1;
    }
    return 0;
}

/* 1 when the media type of a Content-Type value (parameters ignored) is want. */
static int media_type_is(const char *ct, const char *want) {
    size_t n = 0, wl = strlen(want);
    while (*ct == ' ' || *ct == '\t')
        ct++;
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')
        n++;
    return n == wl && strncasecmp(ct, want, n) == 0;
}

static const char *item_id(const req_item_t *it) {
    if (it->m && it->m->movement_id && *it->m->movement_id)
        return it->m->movement_id;
    return it->json_id;
}

/* 1 when s is well-formed UTF-8. */
static int utf8_valid(const unsigned char *s) {
    size_t left = strlen((const char *)s), n;
    while (left > 0) {
        n = is_utf8_char_len(s, left);
        if (n == 0)
            return 0;
        s += n;
        left -= n;
    }
    return 1;
}

/* A copy of s without the bytes that are not whole UTF-8 characters, or
 * NULL (out of memory). */
static char *utf8_dup_clean(const char *s) {
    char *copy = strdup(s), *out = copy;
    const unsigned char *p = (const unsigned char *)copy;
    size_t left, n;
    if (!copy)
        return NULL;
    left = strlen(copy);
    while (left > 0) {
        n = is_utf8_char_len(p, left);
        if (n == 0) {
            n = 1; /* not part of a whole character: dropped */
        } else {
            memmove(out, p, n);
            out += n;
        }
        p += n;
        left -= n;
    }
    *out = '\0';
    return copy;
}

/* Append one 422 entry (bounded); counts every error. */
static void add_error(request_t *r, size_t index, const char *movement_id, const char *field,
                      const char *error) {
    json_t *e;
    r->n_errors++;
    if (r->n_errors > MAX_ERRS_LISTED)
        return;
    e = json_pack("{s:I, s:s?, s:s, s:s}", "index", (json_int_t)index, "movement_id", movement_id,
                  "field", field, "error", error);
    if (!e) {
        /* A message cut at a fixed size ("unknown value '%.64s'", the 48
         * bytes of a field name) can end a character short, and jansson
         * refuses such a string: drop the partial character, keep the entry. */
        char *fc = utf8_dup_clean(field), *ec = utf8_dup_clean(error);
        if (fc && ec)
            e = json_pack("{s:I, s:s?, s:s, s:s}", "index", (json_int_t)index, "movement_id",
                          movement_id, "field", fc, "error", ec);
        free(fc);
        free(ec);
    }
    if (e)
        json_array_append_new(r->errors, e);
}

static void count_items(request_t *r, producer_outcome_t outcome) {
    size_t i;
    for (i = 0; i < r->n; i++)
        producer_metrics_movements(r->ig->metrics, r->items[i].m ? r->items[i].m->site : NULL,
                                   outcome, 1);
}

static void request_release(request_t *r) {
    size_t i;
    for (i = 0; r->items && i < r->n; i++) {
        if (r->items[i].owned && r->items[i].m)
            invsync__v1__movement__free_unpacked(r->items[i].m, NULL);
        if (r->items[i].partial)
            invsync__v1__movement__free_unpacked(r->items[i].partial, NULL);
        free(r->items[i].unread);
    }
    free(r->items);
    if (r->batch)
        invsync__v1__movement_batch__free_unpacked(r->batch, NULL);
    json_decref(r->root);
    json_arena_reset(); /* r->root was the only value in it */
    json_decref(r->errors);
}

/* ---- decoding ----------------------------------------------------------- */

/* Too many or no items: answer and return non-zero. */
static int check_count(request_t *r, size_t n, is_http_response_t *resp) {
    if (n == 0) {
        is_http_respond_error(resp, 400, "empty request: no movements");
        return 1;
    }
    if (n > r->ig->max_items) {
        is_http_respond_error(resp, 413,
                              "too many movements: %zu in one request, at most %zu "
                              "(http.max_items)",
                              n, r->ig->max_items);
        return 1;
    }
    return 0;
}

/* JSON body → items. Returns 0, or non-zero with resp filled. */
static int decode_json(request_t *r, const char *body, size_t len, is_http_response_t *resp) {
    json_error_t jerr;
    size_t i, n, bom = 0;

    /* A UTF-8 byte order mark first (.NET's UTF-8 writers, Notepad): RFC
     * 8259 lets a parser ignore it, and jansson refuses it with a message
     * quoting an invisible character. */
    if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0) {
        bom = 3;
        body += bom;
        len -= bom;
    }
    /* Within len: body need not be NUL-terminated. */
    for (i = 0;
         i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'); i++)
        ;
    if (i == len) {
        is_http_respond_error(resp, 400, "empty body: send one JSON movement or an array of them");
        return 1;
    }
    /* The tree lives in this thread's arena until request_release. */
    json_arena_on();
    r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_arena_off();
    if (!r->root) {
        /* position counts the bytes of the body as sent; line and column
         * what an editor shows (the mark is invisible there). */
        json_t *e = json_pack("{s:s, s:i, s:i, s:i}", "error", "", "line", jerr.line, "column",
                              jerr.column, "position", jerr.position + (int)bom);
        char msg[320];
        /* jansson names its own flag here ("... without JSON_ALLOW_NUL"):
         * tell the MES what is wrong instead. */
        static const char nul_prefix[] = "\\u0000 is not allowed";
        const char *why = strncmp(jerr.text, nul_prefix, sizeof nul_prefix - 1) == 0
                              ? "\\u0000 (NUL) is not allowed in a string"
                              : jerr.text;
        snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line,
                 jerr.column, why);
        if (e)
            json_object_set_new(e, "error", json_string(msg));
        is_http_respond_json(resp, 400, e);
        return 1;
    }
    n = json_is_array(r->root) ? json_array_size(r->root) : 1;
    if (check_count(r, n, resp))
        return 1;
    r->items = calloc(n, sizeof(*r->items));
    if (!r->items) {
        is_http_respond_error(resp, 500, "out of memory");
        return 1;
    }
    r->n = n;
    for (i = 0; i < n; i++) {
        const json_t *obj = json_is_array(r->root) ? json_array_get(r->root, i) : r->root;
        req_item_t *it = &r->items[i];
        is_field_error_t ferr[MAX_ERRS_PER_ITEM];
        size_t n_ferr = 0, k;
        const json_t *id;
        is_err_t rc;

        if (!json_is_object(obj)) {
            add_error(r, i, NULL, "movement", "must be a JSON object");
            continue;
        }
        id = json_object_get(obj, "movement_id");
        if (!id)
            id = json_object_get(obj, "movementId");
        it->json_id = json_is_string(id) ? json_string_value(id) : NULL;
        memset(ferr, 0, sizeof(ferr));
        rc = is_movement_from_json_all(obj, r->ig->max_scale, &it->m, ferr, MAX_ERRS_PER_ITEM,
                                       &n_ferr);
        if (rc == IS_ERR_NOMEM) {
            is_http_respond_error(resp, 500, "out of memory");
            return 1;
        }
        if (rc != IS_OK) {
            /* Each field that cannot be read; check_valid adds the rest's errors. */
            it->partial = it->m;
            it->m = NULL;
            it->unread = calloc(n_ferr < MAX_ERRS_PER_ITEM ? n_ferr : MAX_ERRS_PER_ITEM,
                                sizeof(*it->unread));
            for (k = 0; k < n_ferr && k < MAX_ERRS_PER_ITEM; k++) {
                add_error(r, i, it->json_id, ferr[k].field,
                          ferr[k].error[0] ? ferr[k].error : "invalid");
                if (it->unread)
                    memcpy(it->unread[it->n_unread++], ferr[k].field, sizeof(*it->unread));
            }
            if (n_ferr > MAX_ERRS_PER_ITEM)
                r->n_errors += n_ferr - MAX_ERRS_PER_ITEM;
            continue;
        }
        it->owned = 1;
    }
    return 0;
}

/*
 * The first string field (walking the descriptor, map entries included) that
 * is not valid UTF-8, or NULL. proto3 requires UTF-8 strings but protobuf-c
 * does not check; JSON input is already checked by jansson.
 */
static const char *bad_utf8_field(const ProtobufCMessage *msg) {
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    unsigned i;
    size_t j;

    for (i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED) {
            const unsigned char *v = *(const unsigned char *const *)(base + f->offset);
            if (v && !utf8_valid(v))
                return f->name;
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const ProtobufCMessage *const *arr =
                *(const ProtobufCMessage *const *const *)(base + f->offset);
            for (j = 0; j < n; j++) {
                if (arr[j] && bad_utf8_field(arr[j]))
                    return f->name;
            }
        }
    }
    return NULL;
}

/*
 * Embedded NULs. protobuf-c unpacks a string field into a NUL-terminated
 * char *, so "LOT\0X" arrives as "LOT": the unpacked message cannot tell.
 * The wire can: the scanner below walks the bytes protobuf-c has just
 * accepted, finds each string field through the generated descriptors and
 * looks for a 0 byte in its value. Only the occurrence protobuf-c keeps
 * counts for a singular string (the last one), so a legitimate
 * non-canonical encoding (a field repeated, a default value written out)
 * is never refused; an element of a repeated or message field counts
 * whatever comes after it. It is not a parser: the bytes were already
 * parsed, it only needs tags, varints and lengths.
 */
#define NUL_SCAN_DEPTH  8  /* Movement → attributes entry is 2 */
#define NUL_SCAN_FIELDS 64 /* singular strings tracked per message (Movement has 25 fields) */

typedef struct wire {
    const uint8_t *p, *end;
} wire_t;

static int wire_varint(wire_t *w, uint64_t *out) {
    uint64_t v = 0;
    unsigned shift;
    for (shift = 0; shift < 64 && w->p < w->end; shift += 7) {
        uint8_t b = *w->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Read the next field: its number, wire type and (wire type 2) its bytes. 1, 0 at the end, -1. */
static int wire_field(wire_t *w, uint32_t *id, unsigned *wt, const uint8_t **data, size_t *len) {
    uint64_t tag, v;
    if (w->p == w->end)
        return 0;
    if (wire_varint(w, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
        return -1;
    *id = (uint32_t)(tag >> 3);
    *wt = (unsigned)(tag & 7);
    *data = NULL;
    *len = 0;
    switch (*wt) {
    case 0:
        return wire_varint(w, &v) == 0 ? 1 : -1;
    case 1:
    case 5: {
        size_t n = *wt == 1 ? 8 : 4;
        if ((size_t)(w->end - w->p) < n)
            return -1;
        w->p += n;
        return 1;
    }
    case 2:
        if (wire_varint(w, &v) != 0 || v > (uint64_t)(w->end - w->p))
            return -1;
        *data = w->p;
        *len = (size_t)v;
        w->p += v;
        return 1;
    default: /* groups: protobuf-c refuses them already */
        return -1;
    }
}

/*
 * The first field of message d (by declaration order) whose kept value holds
 * a NUL — for a message field, anywhere inside — in *bad (NULL if none).
 * 0, or -1 when the bytes are malformed.
 */
static int nul_field(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                     const ProtobufCFieldDescriptor **bad) {
    unsigned char nul[NUL_SCAN_FIELDS] = {0};      /* per field index: the kept value has a NUL */
    const ProtobufCFieldDescriptor *beyond = NULL; /* a field past the table had one */
    wire_t w = {p, p + len};
    const uint8_t *data;
    size_t n, i;
    uint32_t id;
    unsigned wt;
    int rc;

    *bad = NULL;
    if (depth > NUL_SCAN_DEPTH)
        return -1;
    while ((rc = wire_field(&w, &id, &wt, &data, &n)) == 1) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, id);
        const ProtobufCFieldDescriptor *inner = NULL;
        int has_nul;
        size_t fi;
        if (!f || wt != 2)
            continue; /* unknown field, or not length-delimited: no string inside */
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            has_nul = memchr(data, 0, n) != NULL;
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (nul_field(f->descriptor, data, n, depth + 1, &inner) != 0)
                return -1;
            has_nul = inner != NULL;
        } else {
            continue;
        }
        fi = (size_t)(f - d->fields);
        if (fi >= NUL_SCAN_FIELDS) {
            if (has_nul && !beyond)
                beyond = f; /* none in this schema: any occurrence counts */
        } else if (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED) {
            nul[fi] = (unsigned char)has_nul; /* the last occurrence is the value kept */
        } else {
            nul[fi] |= (unsigned char)has_nul;
        }
    }
    if (rc != 0)
        return -1;
    for (i = 0; i < d->n_fields && i < NUL_SCAN_FIELDS; i++) {
        if (nul[i]) {
            *bad = &d->fields[i];
            return 0;
        }
    }
    *bad = beyond;
    return 0;
}

/*
 * For each movement of the batch body (in order: the i-th field 1 is
 * movements[i]), the name of its first string field holding a NUL, or NULL.
 * 0, or -1 when the body cannot be scanned.
 */
static int batch_nul_fields(const char *body, size_t len, size_t n, const char **bad) {
    wire_t w = {(const uint8_t *)body, (const uint8_t *)body + len};
    const uint8_t *data;
    size_t dlen, i = 0;
    uint32_t id;
    unsigned wt;
    int rc;

    while ((rc = wire_field(&w, &id, &wt, &data, &dlen)) == 1) {
        const ProtobufCFieldDescriptor *f;
        if (id != 1 || wt != 2)
            continue;
        if (i >= n || nul_field(&invsync__v1__movement__descriptor, data, dlen, 1, &f) != 0)
            return -1;
        bad[i++] = f ? f->name : NULL;
    }
    return rc == 0 && i == n ? 0 : -1;
}

/*
 * Drop the fields this producer does not know, in msg and the messages it
 * holds. protobuf-c keeps them and packs them back, so without this they
 * would be stored and forwarded unchecked: a field of any size (a movement
 * too large for one Kafka message, acknowledged and then stuck in the
 * outbox), and part of the fingerprint (a resend from an MES with a newer
 * .proto answered 409). Skipped, as the README promises. The unpacked
 * message uses the default allocator, so free() is what free_unpacked would
 * call.
 */
static void strip_unknown_fields(ProtobufCMessage *msg) {
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    char *base = (char *)msg;
    unsigned i;
    size_t j;

    for (i = 0; i < msg->n_unknown_fields; i++)
        free(msg->unknown_fields[i].data);
    free(msg->unknown_fields);
    msg->unknown_fields = NULL;
    msg->n_unknown_fields = 0;
    for (i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage **arr = *(ProtobufCMessage ***)(base + f->offset);
            for (j = 0; j < n; j++) {
                if (arr[j])
                    strip_unknown_fields(arr[j]);
            }
        } else {
            ProtobufCMessage *sub = *(ProtobufCMessage **)(base + f->offset);
            if (sub)
                strip_unknown_fields(sub);
        }
    }
}

/* Protobuf MovementBatch body → items. */
static int decode_protobuf(request_t *r, const char *body, size_t len, is_http_response_t *resp) {
    const char **nul_bad = NULL;
    size_t i;
    r->batch = invsync__v1__movement_batch__unpack(NULL, len, (const uint8_t *)body);
    if (!r->batch) {
        is_http_respond_error(resp, 400, "body is not a valid protobuf MovementBatch");
        return 1;
    }
    strip_unknown_fields(&r->batch->base);
    if (check_count(r, r->batch->n_movements, resp))
        return 1;
    r->items = calloc(r->batch->n_movements, sizeof(*r->items));
    if (!r->items) {
        is_http_respond_error(resp, 500, "out of memory");
        return 1;
    }
    r->n = r->batch->n_movements;
    nul_bad = calloc(r->n, sizeof(*nul_bad));
    if (!nul_bad) {
        is_http_respond_error(resp, 500, "out of memory");
        return 1;
    }
    if (batch_nul_fields(body, len, r->n, nul_bad) != 0) {
        free(nul_bad); /* protobuf-c took it, the scanner did not: refuse rather than guess */
        is_http_respond_error(resp, 400, "body is not a valid protobuf MovementBatch");
        return 1;
    }
    for (i = 0; i < r->n; i++) {
        const char *bad = nul_bad[i];
        if (bad) {
            /* Checked first: the UTF-8 check would stop at the NUL. */
            add_error(r, i, NULL, bad, "must not contain NUL characters");
            continue; /* left NULL: reported, never echoed (the value is cut short) */
        }
        bad = bad_utf8_field(&r->batch->movements[i]->base);
        if (bad) {
            add_error(r, i, NULL, bad, "is not valid UTF-8");
            continue; /* left NULL: reported, never echoed */
        }
        r->items[i].m = r->batch->movements[i];
    }
    free(nul_bad);
    return 0;
}

/* ---- checks ------------------------------------------------------------- */

/* 403 when the token may not write one item's site. Sites that are not valid
 * names are left to validation (422). */
static int check_sites(request_t *r, const char *bearer, is_http_response_t *resp) {
    size_t i;
    for (i = 0; i < r->n; i++) {
        const is_movement_t *m = r->items[i].m;
        json_t *e;
        if (!m || !m->site || !is_topic_part_valid(m->site))
            continue;
        if (token_allows(r->ig, bearer, m->site))
            continue;
        e = json_pack("{s:s, s:I, s:s?, s:s}", "error", "", "index", (json_int_t)i, "movement_id",
                      item_id(&r->items[i]), "site", m->site);
        if (e) {
            char msg[160];
            snprintf(msg, sizeof(msg), "token is not allowed to submit movements for site '%s'",
                     m->site);
            json_object_set_new(e, "error", json_string(msg));
        }
        is_http_respond_json(resp, 403, e);
        return 1;
    }
    return 0;
}

/* 422 with the errors collected in r. */
static void respond_invalid(request_t *r, is_http_response_t *resp) {
    is_http_respond_json(resp, 422,
                         json_pack("{s:s, s:I, s:O}", "error", "validation failed", "error_count",
                                   (json_int_t)r->n_errors, "errors", r->errors));
}

/*
 * The other errors of an item whose fields could not all be read (a quantity "12,5"): the
 * rest of it is validated, without the errors of the unread fields (they were left unset:
 * "is required" would contradict what was sent).
 */
static void report_partial(request_t *r, size_t i, const is_validate_opts_t *vo) {
    const req_item_t *it = &r->items[i];
    is_field_error_t errs[MAX_ERRS_PER_ITEM];
    size_t n_err, j, k, listed = 0;
    if (!it->partial)
        return;
    n_err = is_movement_validate(it->partial, vo, errs, MAX_ERRS_PER_ITEM);
    for (j = 0; j < n_err && j < MAX_ERRS_PER_ITEM; j++) {
        for (k = 0; k < it->n_unread && strcmp(it->unread[k], errs[j].field) != 0; k++)
            ;
        if (k < it->n_unread)
            continue;
        if (listed++ + it->n_unread < MAX_ERRS_PER_ITEM)
            add_error(r, i, item_id(it), errs[j].field, errs[j].error);
        else
            r->n_errors++;
    }
}

static int check_valid(request_t *r, is_http_response_t *resp) {
    is_validate_opts_t vo;
    size_t i, j;

    vo.max_scale = r->ig->max_scale;
    vo.refused_sources = (const char *const *)r->ig->refused;
    vo.ingest = 1;
    vo.now_ms = is_clock_now_ms(r->ig->clock);
    for (i = 0; i < r->n; i++) {
        is_field_error_t errs[MAX_ERRS_PER_ITEM];
        size_t n_err;
        if (!r->items[i].m) {
            report_partial(r, i, &vo);
            continue; /* the fields it could not read were reported by the decoder */
        }
        n_err = is_movement_validate(r->items[i].m, &vo, errs, MAX_ERRS_PER_ITEM);
        /* A resend of a movement accepted before the ingest-only rules
         * (control characters, attribute sizes, quantity range) existed stays
         * a duplicate: the MES must not see a refusal for what is stored. */
        if (n_err > 0) {
            is_validate_opts_t relaxed = vo;
            relaxed.ingest = 0;
            if (is_movement_validate(r->items[i].m, &relaxed, NULL, 0) == 0 &&
                outbox_is_stored(r->ig->outbox, r->items[i].m))
                n_err = 0;
        }
        for (j = 0; j < n_err && j < MAX_ERRS_PER_ITEM; j++)
            add_error(r, i, item_id(&r->items[i]), errs[j].field, errs[j].error);
        if (n_err > MAX_ERRS_PER_ITEM)
            r->n_errors += n_err - MAX_ERRS_PER_ITEM;
    }
    if (r->n_errors == 0)
        return 0;
    respond_invalid(r, resp);
    return 1;
}

/* ---- accepting ---------------------------------------------------------- */

static void respond_conflict(request_t *r, const outbox_item_t *oi, is_http_response_t *resp) {
    json_t *conflicts = json_array();
    const is_movement_t *first = NULL;
    char msg[512];
    size_t i, first_i = 0;
    int in_request = 0;

    for (i = 0; i < r->n; i++) {
        if (oi[i].status != OUTBOX_CONFLICT)
            continue;
        if (!first) {
            first = oi[i].m;
            first_i = i;
        }
        json_array_append_new(conflicts, json_pack("{s:I, s:s}", "index", (json_int_t)i,
                                                   "movement_id", oi[i].m->movement_id));
    }
    /* The request is rolled back: say whether the other copy is stored or
     * only earlier in this request. */
    for (i = 0; first && i < first_i && !in_request; i++)
        in_request = strcmp(oi[i].m->movement_id, first->movement_id) == 0 &&
                     strcmp(oi[i].m->source_system, first->source_system) == 0;
    if (in_request)
        snprintf(msg, sizeof(msg),
                 "movement_id '%s' from source '%s' appears twice in this request with "
                 "different content; nothing of the request was stored",
                 first->movement_id, first->source_system);
    else
        snprintf(msg, sizeof(msg),
                 "movement_id '%s' from source '%s' was already accepted with different content",
                 first ? first->movement_id : "?", first ? first->source_system : "?");
    is_http_respond_json(resp, 409, json_pack("{s:s, s:o}", "error", msg, "conflicts", conflicts));
    if (is_log_enabled(IS_LOG_WARN))
        is_log(IS_LOG_WARN, "movement conflicts with an accepted one", "movement_id",
               first ? first->movement_id : NULL, "source_system",
               first ? first->source_system : NULL, NULL);
}

/* 422 for the reversals the outbox found not matching their originals; 0 when none is. */
static int respond_mismatch(request_t *r, const outbox_item_t *oi, is_http_response_t *resp) {
    size_t i, first = r->n;

    for (i = 0; i < r->n; i++) {
        if (oi[i].status != OUTBOX_MISMATCH)
            continue;
        if (first == r->n)
            first = i;
        add_error(r, i, oi[i].m->movement_id, oi[i].mismatch_field,
                  oi[i].mismatch ? oi[i].mismatch : "does not match the movement it reverses");
    }
    if (first == r->n)
        return 0;
    respond_invalid(r, resp);
    if (is_log_enabled(IS_LOG_WARN))
        is_log(IS_LOG_WARN, "reversal does not match the movement it reverses", "movement_id",
               oi[first].m->movement_id, "field", oi[first].mismatch_field, "error",
               oi[first].mismatch, NULL);
    return 1;
}

/* A growing text buffer for the 202 body; oom sticks once an allocation failed. */
typedef struct body_buf {
    char *p;
    size_t n, cap;
    int oom;
} body_buf_t;

static void bb_put(body_buf_t *b, const char *s, size_t len) {
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *np;
        while (cap < b->n + len + 1)
            cap *= 2;
        np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void bb_str(body_buf_t *b, const char *s) {
    bb_put(b, s, strlen(s));
}

static void bb_u64(body_buf_t *b, uint64_t v) {
    char num[24];
    int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    bb_put(b, num, (size_t)len);
}

/* s as a JSON string, escaped like jansson's json_dumps without flags: '"',
 * '\\' and control characters; valid UTF-8 (checked at decoding) as is. */
static void bb_json_str(body_buf_t *b, const char *s) {
    const char *run = s;
    bb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        const char *e = NULL;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        bb_put(b, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04X", c);
            e = esc;
        }
        bb_str(b, e);
    }
    bb_put(b, run, (size_t)(s - run));
    bb_put(b, "\"", 1);
}

/*
 * The 202 body, {"accepted":n,"duplicates":n,"items":[{"movement_id","tier",
 * "status","sequence"}]}, written straight into a buffer: building it as a
 * jansson tree and dumping it cost ~8% of the producer's CPU per movement.
 */
static void respond_accepted(request_t *r, const outbox_item_t *oi, is_http_response_t *resp) {
    body_buf_t b = {NULL, 0, 0, 0};
    size_t i, n_new = 0, n_dup = 0;

    for (i = 0; i < r->n; i++)
        n_dup += oi[i].status == OUTBOX_DUPLICATE;
    n_new = r->n - n_dup;
    bb_str(&b, "{\"accepted\":");
    bb_u64(&b, n_new);
    bb_str(&b, ",\"duplicates\":");
    bb_u64(&b, n_dup);
    bb_str(&b, ",\"items\":[");
    for (i = 0; i < r->n; i++) {
        int dup = oi[i].status == OUTBOX_DUPLICATE;
        producer_metrics_movements(r->ig->metrics, oi[i].m->site,
                                   dup ? PRODUCER_OUTCOME_DUPLICATE : PRODUCER_OUTCOME_ACCEPTED, 1);
        bb_str(&b, i ? ",{\"movement_id\":" : "{\"movement_id\":");
        bb_json_str(&b, oi[i].m->movement_id);
        bb_str(&b, ",\"tier\":");
        bb_json_str(&b, oi[i].stored_tier);
        bb_str(&b, dup ? ",\"status\":\"duplicate\",\"sequence\":"
                       : ",\"status\":\"accepted\",\"sequence\":");
        bb_u64(&b, oi[i].sequence);
        bb_put(&b, "}", 1);
        if (is_log_enabled(IS_LOG_DEBUG)) {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)oi[i].sequence);
            is_log(IS_LOG_DEBUG, dup ? "movement duplicate" : "movement accepted", "movement_id",
                   oi[i].m->movement_id, "site", oi[i].m->site, "tier", oi[i].stored_tier,
                   "sequence", seq, NULL);
        }
    }
    bb_str(&b, "]}");
    if (b.oom) {
        /* Committed already: the MES gets a 500 and resends, which answers duplicates. */
        is_http_respond_error(resp, 500, "out of memory building the response");
    } else {
        free(resp->body);
        resp->status = 202;
        resp->content_type = "application/json";
        resp->body = b.p; /* the server frees it */
        resp->body_len = b.n;
        b.p = NULL;
    }
    free(b.p);
    if (is_log_enabled(IS_LOG_INFO)) {
        char a[24], d[24];
        snprintf(a, sizeof(a), "%zu", n_new);
        snprintf(d, sizeof(d), "%zu", n_dup);
        is_log(IS_LOG_INFO, "movements accepted", "accepted", a, "duplicates", d, NULL);
    }
}

/* Classify, stamp and append. Answers 202, 409, 500 or 503. */
static void accept_items(request_t *r, is_http_response_t *resp) {
    const char *prefix = is_policy_topic_prefix(r->ig->policy);
    const char *version = is_policy_version(r->ig->policy);
    outbox_item_t *oi = calloc(r->n, sizeof(*oi));
    char **topics = calloc(r->n, sizeof(char *));
    char errstr[256] = "";
    size_t i;
    is_err_t rc;

    if (!oi || !topics) {
        is_http_respond_error(resp, 500, "out of memory");
        goto out;
    }
    for (i = 0; i < r->n; i++) {
        const is_movement_t *m = r->items[i].m;
        const is_tier_t *tier = is_policy_classify(r->ig->policy, m, NULL);
        char topic[IS_TOPIC_MAX + 1];
        if (is_topic_name(topic, sizeof(topic), prefix, m->site, tier->name) < 0) {
            is_http_respond_error(resp, 500, "cannot name a topic for site '%s' tier '%s'", m->site,
                                  tier->name);
            goto out;
        }
        topics[i] = strdup(topic);
        if (!topics[i]) {
            is_http_respond_error(resp, 500, "out of memory");
            goto out;
        }
        oi[i].m = m;
        oi[i].tier = tier->name;
        oi[i].policy_version = version;
        oi[i].topic = topics[i];
    }
    rc = outbox_append(r->ig->outbox, oi, r->n, is_clock_now_ms(r->ig->clock), errstr,
                       sizeof(errstr));
    if (rc == IS_OK) {
        respond_accepted(r, oi, resp);
    } else if (rc == IS_ERR_CONFLICT) {
        respond_conflict(r, oi, resp);
    } else if (rc == IS_ERR_INVALID && respond_mismatch(r, oi, resp)) {
        /* answered 422 */
    } else {
        is_log(IS_LOG_ERROR, "outbox append failed", "error", errstr, NULL);
        is_http_respond_error(resp, 503, "outbox unavailable, nothing was accepted: %s", errstr);
        snprintf(resp->extra_header, sizeof(resp->extra_header), "Retry-After: %d", RETRY_AFTER_S);
    }
out:
    for (i = 0; topics && i < r->n; i++)
        free(topics[i]);
    for (i = 0; oi && i < r->n; i++)
        free(oi[i].mismatch);
    free(topics);
    free(oi);
}

/* ---- the handler core --------------------------------------------------- */

void ingest_movements(ingest_t *ig, const char *content_type, const char *bearer, const char *body,
                      size_t body_len, is_http_response_t *resp) {
    request_t r;
    int is_json;

    memset(&r, 0, sizeof(r));
    r.ig = ig;
    if (!bearer) {
        is_http_respond_error(resp, 401, "missing bearer token");
        snprintf(resp->extra_header, sizeof(resp->extra_header), "WWW-Authenticate: Bearer");
        goto done;
    }
    if (!*bearer) {
        is_http_respond_error(resp, 401, IS_HTTP_BEARER_MALFORMED);
        snprintf(resp->extra_header, sizeof(resp->extra_header), "WWW-Authenticate: Bearer");
        goto done;
    }
    if (!token_known(ig, bearer)) {
        is_http_respond_error(resp, 401, "unknown token");
        snprintf(resp->extra_header, sizeof(resp->extra_header),
                 "WWW-Authenticate: Bearer error=\"invalid_token\"");
        goto done;
    }
    if (!content_type || !*content_type) {
        is_http_respond_error(resp, 415, "missing Content-Type; accepted: " CT_ACCEPTED);
        goto done;
    }
    is_json = media_type_is(content_type, CT_JSON);
    if (!is_json && !media_type_is(content_type, CT_PROTOBUF)) {
        is_http_respond_error(
            resp, 415, "unsupported Content-Type '%.100s'; accepted: " CT_ACCEPTED, content_type);
        goto done;
    }
    r.errors = json_array();
    if (!r.errors) {
        is_http_respond_error(resp, 500, "out of memory");
        goto done;
    }
    if (is_json ? decode_json(&r, body, body_len, resp) : decode_protobuf(&r, body, body_len, resp))
        goto done;
    if (check_sites(&r, bearer, resp) || check_valid(&r, resp)) {
        count_items(&r, PRODUCER_OUTCOME_REJECTED);
        if (is_log_enabled(IS_LOG_WARN)) {
            char n[24], st[8];
            snprintf(n, sizeof(n), "%zu", r.n);
            snprintf(st, sizeof(st), "%d", resp->status);
            is_log(IS_LOG_WARN, "movements rejected", "status", st, "items", n, "first_movement_id",
                   r.n ? item_id(&r.items[0]) : NULL, NULL);
        }
        goto done;
    }
    accept_items(&r, resp);
    if (resp->status != 202)
        count_items(&r, PRODUCER_OUTCOME_REJECTED);
done:
    producer_metrics_http(ig->metrics, resp->status);
    request_release(&r);
}

/* ---- routes ------------------------------------------------------------- */

void ingest_handle_movements(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    static const char *const no_params[] = {NULL};
    const char *unknown = is_http_query_unknown(req, no_params);
    const char *bearer = is_http_bearer(req);
    /* POST /v1/movements takes no query parameter: one that is ignored
     * (?dry_run=1, ?validate_only=true) would store for real what the client
     * believes it only tried. */
    if (unknown) {
        ingest_t *ig = ctx;
        is_http_respond_error(resp, 400,
                              "unknown query parameter '%.100s': POST " INGEST_PATH_MOVEMENTS
                              " takes none; nothing was stored",
                              unknown);
        producer_metrics_http(ig->metrics, resp->status);
        return;
    }
    /* A header that is there but not "Bearer <token>" ("Basic …", the token
     * alone) is not a missing one: say which. */
    if (!bearer && is_http_header(req, "Authorization"))
        bearer = "";
    ingest_movements(ctx, is_http_header(req, "Content-Type"), bearer, req->body, req->body_len,
                     resp);
}

void ingest_handle_healthz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    (void)ctx;
    (void)req;
    is_http_respond_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

/* Backlog count and age of the oldest unsent row in seconds. */
static int backlog_now(ingest_t *ig, uint64_t *count, double *age_s) {
    int64_t oldest = 0, now;
    *count = 0;
    *age_s = 0;
    if (outbox_backlog(ig->outbox, count, &oldest) != IS_OK)
        return -1;
    now = is_clock_now_ms(ig->clock);
    if (*count > 0 && oldest > 0 && now > oldest)
        *age_s = (double)(now - oldest) / 1000.0; /* whole ms: prints exactly at 10 digits */
    return 0;
}

/* Like is_http_respond_json, but reals printed with 10 significant digits
 * (an age of 6.059 s, not 6.0590000000000002). Takes the reference. */
static void respond_json_rounded(is_http_response_t *resp, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(body);
    if (!text) {
        is_http_respond_error(resp, 500, "out of memory");
        return;
    }
    is_http_respond_text(resp, status, "application/json", text, strlen(text));
    free(text);
}

/* /readyz "topics_missing": the topics movements wait for that the broker
 * lacks (topic_watch.h), at most PRODUCER_METRICS_MAX_MISSING of them. */
static json_t *topics_missing_json(producer_metrics_t *pm) {
    producer_missing_topic_t v[PRODUCER_METRICS_MAX_MISSING];
    size_t n = 0;
    json_t *arr = json_array();

    (void)producer_metrics_topics_missing(pm, v, PRODUCER_METRICS_MAX_MISSING, &n);
    for (size_t i = 0; arr && i < n; i++) {
        char since[IS_RFC3339_LEN];
        is_format_rfc3339(v[i].since_ms, since);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:s}", "topic", v[i].topic,
                                             "site", v[i].site, "tier", v[i].tier, "waiting",
                                             (json_int_t)v[i].waiting, "missing_since", since));
    }
    return arr;
}

void ingest_handle_readyz(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    ingest_t *ig = ctx;
    char err[256] = "";
    uint64_t backlog;
    double age;
    int writable = outbox_probe_writable(ig->outbox, err, sizeof(err)) == IS_OK;
    json_t *body;

    (void)req;
    /* Kafka being down does not stop us accepting: it only grows the backlog. */
    if (backlog_now(ig, &backlog, &age) != 0)
        writable = 0;
    body = json_pack("{s:b, s:s, s:s, s:I, s:f}", "ready", writable, "outbox",
                     writable ? "ok" : "unwritable", "kafka",
                     producer_kafka_state_name(producer_metrics_kafka(ig->metrics)), "backlog",
                     (json_int_t)backlog, "oldest_unsent_age_s", age);
    if (!writable && body && err[0])
        json_object_set_new(body, "outbox_error", json_string(err));
    if (body)
        json_object_set_new(body, "topics_missing", topics_missing_json(ig->metrics));
    respond_json_rounded(resp, writable ? 200 : 503, body);
}

void ingest_handle_metrics(void *ctx, const is_http_request_t *req, is_http_response_t *resp) {
    ingest_t *ig = ctx;
    uint64_t backlog;
    double age;
    size_t len = 0;
    char *text;

    (void)req;
    (void)backlog_now(ig, &backlog, &age);
    text = producer_metrics_render(ig->metrics, backlog, age, ig->outbox, &len);
    if (!text) {
        is_http_respond_error(resp, 500, "out of memory");
        return;
    }
    is_http_respond_text(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

const is_http_route_t *ingest_routes(size_t *n_routes) {
    static const is_http_route_t routes[] = {
        {"POST", INGEST_PATH_MOVEMENTS, ingest_handle_movements},
        {"GET", "/healthz", ingest_handle_healthz},
        {"GET", "/readyz", ingest_handle_readyz},
        {"GET", "/metrics", ingest_handle_metrics},
    };
    *n_routes = sizeof(routes) / sizeof(routes[0]);
    return routes;
}
