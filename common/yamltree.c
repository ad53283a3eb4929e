/*
 * yamltree.c — YAML → is_yaml_node_t tree, the project's only libyaml event
 * loop.
 *
 * The parser pulls events and builds the tree by recursive descent: one C
 * frame per nesting level, capped at YT_MAX_DEPTH so a hostile file cannot
 * exhaust the stack. Inputs are config and policy files of a few KiB, read
 * whole into memory (capped at YT_MAX_FILE) so that reader errors, which
 * libyaml reports as byte offsets, can be turned into line numbers too.
 * Duplicate-key detection is a linear scan per key: quadratic, but maps hold
 * tens of keys.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "yamltree.h"

#define YT_MAX_DEPTH 64
#define YT_MAX_FILE  (16 * 1024 * 1024)

typedef struct yt_ctx {
    yaml_parser_t parser;
    const char *name; /* for messages */
    const char *text; /* input, to turn byte offsets into lines */
    size_t len;
    char *errstr;
    size_t errstr_size;
} yt_ctx_t;

static int mark_line(const yaml_mark_t *m) {
    return (int)m->line + 1;
}

/* Line (1-based) of byte offset off in the input. */
static int offset_line(const yt_ctx_t *c, size_t off) {
    int line = 1;
    size_t i;
    for (i = 0; i < off && i < c->len; i++) {
        if (c->text[i] == '\n')
            line++;
    }
    return line;
}

/* Translate a libyaml failure into errstr and an is_err_t. */
static is_err_t parser_error(yt_ctx_t *c) {
    const yaml_parser_t *p = &c->parser;
    const char *problem = p->problem ? p->problem : "syntax error";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        is_errf(c->errstr, c->errstr_size, "%s: out of memory", c->name);
        return IS_ERR_NOMEM;
    case YAML_READER_ERROR:
        is_errf(c->errstr, c->errstr_size, "%s:%d: %s", c->name, offset_line(c, p->problem_offset),
                problem);
        return IS_ERR_CONFIG;
    default:
        if (p->context) {
            is_errf(c->errstr, c->errstr_size, "%s:%d: %s (%s at line %d)", c->name,
                    mark_line(&p->problem_mark), problem, p->context, mark_line(&p->context_mark));
        } else {
            is_errf(c->errstr, c->errstr_size, "%s:%d: %s", c->name, mark_line(&p->problem_mark),
                    problem);
        }
        return IS_ERR_CONFIG;
    }
}

static is_err_t next_event(yt_ctx_t *c, yaml_event_t *ev) {
    if (!yaml_parser_parse(&c->parser, ev)) {
        memset(ev, 0, sizeof(*ev)); /* YAML_NO_EVENT: safe to delete */
        return parser_error(c);
    }
    return IS_OK;
}

static is_yaml_node_t *node_new(is_yaml_kind_t kind, int line) {
    is_yaml_node_t *n = calloc(1, sizeof(*n));
    if (n) {
        n->kind = kind;
        n->line = line;
    }
    return n;
}

void is_yaml_free(is_yaml_node_t *n) {
    size_t i;
    if (!n)
        return;
    for (i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        is_yaml_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->scalar);
    free(n);
}

const is_yaml_node_t *is_yaml_get(const is_yaml_node_t *map, const char *key) {
    size_t i;
    if (!map || map->kind != IS_YAML_MAP || !key)
        return NULL;
    for (i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    }
    return NULL;
}

/* Grow the item (and for maps key) arrays of n so one more entry fits. */
static is_err_t node_reserve(is_yaml_node_t *n, size_t *cap) {
    size_t ncap;
    is_yaml_node_t **items;
    if (n->n < *cap)
        return IS_OK;
    ncap = *cap ? *cap * 2 : 8;
    items = realloc(n->items, ncap * sizeof(*items));
    if (!items)
        return IS_ERR_NOMEM;
    n->items = items;
    if (n->kind == IS_YAML_MAP) {
        char **keys = realloc(n->keys, ncap * sizeof(*keys));
        if (!keys)
            return IS_ERR_NOMEM;
        n->keys = keys;
    }
    *cap = ncap;
    return IS_OK;
}

/* Anchors would make the tree a graph; we keep it a tree. */
static is_err_t reject_anchor(yt_ctx_t *c, const yaml_event_t *ev, const yaml_char_t *anchor) {
    if (!anchor)
        return IS_OK;
    is_errf(c->errstr, c->errstr_size, "%s:%d: anchors and aliases are not supported (&%s)",
            c->name, mark_line(&ev->start_mark), (const char *)anchor);
    return IS_ERR_CONFIG;
}

static is_err_t parse_node(yt_ctx_t *c, yaml_event_t *ev, int depth, is_yaml_node_t **out);

static is_err_t parse_scalar(yt_ctx_t *c, const yaml_event_t *ev, is_yaml_node_t **out) {
    is_yaml_node_t *n = NULL;
    size_t len = ev->data.scalar.length;
    is_err_t rc = reject_anchor(c, ev, ev->data.scalar.anchor);
    if (rc != IS_OK)
        goto err;
    /* A "\0" escape would silently cut a C string short (a token, a path). */
    if (memchr(ev->data.scalar.value, '\0', len)) {
        is_errf(c->errstr, c->errstr_size, "%s:%d: scalar contains a NUL character", c->name,
                mark_line(&ev->start_mark));
        rc = IS_ERR_CONFIG;
        goto err;
    }
    rc = IS_ERR_NOMEM;
    n = node_new(IS_YAML_SCALAR, mark_line(&ev->start_mark));
    if (!n)
        goto err;
    n->scalar = malloc(len + 1);
    if (!n->scalar)
        goto err;
    memcpy(n->scalar, ev->data.scalar.value, len);
    n->scalar[len] = '\0';
    n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    *out = n;
    return IS_OK;
err:
    if (rc == IS_ERR_NOMEM)
        is_errf(c->errstr, c->errstr_size, "%s: out of memory", c->name);
    is_yaml_free(n);
    return rc;
}

/* Parse the pairs of a mapping whose MAPPING_START has been consumed into n. */
static is_err_t parse_map_body(yt_ctx_t *c, is_yaml_node_t *n, int depth) {
    yaml_event_t ev;
    size_t cap = 0, i;
    int *key_lines = NULL; /* first line of each key, for duplicate messages */
    is_yaml_node_t *value = NULL;
    char *key = NULL;
    is_err_t rc;

    memset(&ev, 0, sizeof(ev));
    for (;;) {
        rc = next_event(c, &ev);
        if (rc != IS_OK)
            goto done;
        if (ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (ev.type != YAML_SCALAR_EVENT) {
            is_errf(c->errstr, c->errstr_size, "%s:%d: mapping keys must be scalars", c->name,
                    mark_line(&ev.start_mark));
            rc = IS_ERR_CONFIG;
            goto done;
        }
        rc = reject_anchor(c, &ev, ev.data.scalar.anchor);
        if (rc != IS_OK)
            goto done;
        for (i = 0; i < n->n; i++) {
            if (strcmp(n->keys[i], (const char *)ev.data.scalar.value) == 0) {
                is_errf(c->errstr, c->errstr_size, "%s:%d: duplicate key '%s' (first at line %d)",
                        c->name, mark_line(&ev.start_mark), n->keys[i], key_lines[i]);
                rc = IS_ERR_CONFIG;
                goto done;
            }
        }
        rc = IS_ERR_NOMEM;
        key = strdup((const char *)ev.data.scalar.value);
        if (!key)
            goto done;
        if (node_reserve(n, &cap) != IS_OK)
            goto done;
        {
            int *kl = realloc(key_lines, cap * sizeof(*kl));
            if (!kl)
                goto done;
            key_lines = kl;
        }
        key_lines[n->n] = mark_line(&ev.start_mark);
        yaml_event_delete(&ev);

        rc = next_event(c, &ev);
        if (rc != IS_OK)
            goto done;
        rc = parse_node(c, &ev, depth + 1, &value);
        if (rc != IS_OK)
            goto done;
        n->keys[n->n] = key;
        n->items[n->n] = value;
        n->n++;
        key = NULL;
        value = NULL;
    }
    rc = IS_OK;
done:
    if (rc == IS_ERR_NOMEM)
        is_errf(c->errstr, c->errstr_size, "%s: out of memory", c->name);
    yaml_event_delete(&ev);
    free(key);
    free(key_lines);
    return rc;
}

/* Parse the items of a sequence whose SEQUENCE_START has been consumed into n. */
static is_err_t parse_seq_body(yt_ctx_t *c, is_yaml_node_t *n, int depth) {
    yaml_event_t ev;
    size_t cap = 0;
    is_yaml_node_t *item = NULL;
    is_err_t rc;

    memset(&ev, 0, sizeof(ev));
    for (;;) {
        rc = next_event(c, &ev);
        if (rc != IS_OK)
            goto done;
        if (ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (node_reserve(n, &cap) != IS_OK) {
            rc = IS_ERR_NOMEM;
            is_errf(c->errstr, c->errstr_size, "%s: out of memory", c->name);
            goto done;
        }
        rc = parse_node(c, &ev, depth + 1, &item);
        if (rc != IS_OK)
            goto done;
        n->items[n->n++] = item;
    }
    rc = IS_OK;
done:
    yaml_event_delete(&ev);
    return rc;
}

/*
 * Build the node that starts with *ev. Takes ownership of *ev (it is deleted
 * before returning). On error *out is untouched and errstr is filled.
 */
static is_err_t parse_node(yt_ctx_t *c, yaml_event_t *ev, int depth, is_yaml_node_t **out) {
    is_yaml_node_t *n = NULL;
    is_err_t rc;

    if (depth > YT_MAX_DEPTH) {
        is_errf(c->errstr, c->errstr_size, "%s:%d: nesting deeper than %d levels", c->name,
                mark_line(&ev->start_mark), YT_MAX_DEPTH);
        rc = IS_ERR_CONFIG;
        goto done;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        rc = parse_scalar(c, ev, &n);
        break;
    case YAML_ALIAS_EVENT:
        is_errf(c->errstr, c->errstr_size, "%s:%d: anchors and aliases are not supported (*%s)",
                c->name, mark_line(&ev->start_mark), (const char *)ev->data.alias.anchor);
        rc = IS_ERR_CONFIG;
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        rc = reject_anchor(c, ev,
                           is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
        if (rc != IS_OK)
            break;
        n = node_new(is_map ? IS_YAML_MAP : IS_YAML_SEQ, mark_line(&ev->start_mark));
        if (!n) {
            is_errf(c->errstr, c->errstr_size, "%s: out of memory", c->name);
            rc = IS_ERR_NOMEM;
            break;
        }
        rc = is_map ? parse_map_body(c, n, depth) : parse_seq_body(c, n, depth);
        break;
    }
    default:
        is_errf(c->errstr, c->errstr_size, "%s:%d: unexpected YAML event %d", c->name,
                mark_line(&ev->start_mark), (int)ev->type);
        rc = IS_ERR_CONFIG;
        break;
    }
done:
    yaml_event_delete(ev);
    if (rc != IS_OK) {
        is_yaml_free(n);
        return rc;
    }
    *out = n;
    return IS_OK;
}

/* Expect an event of the given type (consumed and deleted). */
static is_err_t expect_event(yt_ctx_t *c, yaml_event_type_t type, yaml_event_t *ev) {
    is_err_t rc = next_event(c, ev);
    if (rc != IS_OK)
        return rc;
    if (ev->type != type) {
        is_errf(c->errstr, c->errstr_size, "%s:%d: unexpected YAML event %d", c->name,
                mark_line(&ev->start_mark), (int)ev->type);
        yaml_event_delete(ev);
        return IS_ERR_CONFIG;
    }
    yaml_event_delete(ev);
    return IS_OK;
}

is_err_t is_yaml_load_string(const char *text, size_t len, const char *name, is_yaml_node_t **out,
                             char *errstr, size_t errstr_size) {
    yt_ctx_t c;
    yaml_event_t ev;
    is_yaml_node_t *root = NULL;
    int parser_ready = 0;
    is_err_t rc;

    memset(&c, 0, sizeof(c));
    memset(&ev, 0, sizeof(ev));
    c.name = name ? name : "<string>";
    c.text = text;
    c.len = len;
    c.errstr = errstr;
    c.errstr_size = errstr_size;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!out || (!text && len)) {
        is_errf(errstr, errstr_size, "%s: invalid argument", c.name);
        return IS_ERR_INVALID;
    }
    *out = NULL;

    rc = IS_ERR_NOMEM;
    if (!yaml_parser_initialize(&c.parser)) {
        is_errf(errstr, errstr_size, "%s: out of memory", c.name);
        goto done;
    }
    parser_ready = 1;
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)(text ? text : ""), len);

    rc = expect_event(&c, YAML_STREAM_START_EVENT, &ev);
    if (rc != IS_OK)
        goto done;
    rc = next_event(&c, &ev);
    if (rc != IS_OK)
        goto done;
    if (ev.type == YAML_STREAM_END_EVENT) {
        /* Nothing but comments and whitespace: an empty mapping. */
        yaml_event_delete(&ev);
        root = node_new(IS_YAML_MAP, 1);
        rc = root ? IS_OK : IS_ERR_NOMEM;
        if (!root)
            is_errf(errstr, errstr_size, "%s: out of memory", c.name);
        goto done;
    }
    /* ev is DOCUMENT_START: libyaml guarantees it after STREAM_START. */
    yaml_event_delete(&ev);
    rc = next_event(&c, &ev);
    if (rc != IS_OK)
        goto done;
    rc = parse_node(&c, &ev, 0, &root);
    if (rc != IS_OK)
        goto done;
    if (root->kind == IS_YAML_SCALAR && !root->quoted && root->scalar[0] == '\0') {
        /* "---" alone: libyaml yields an empty plain scalar. */
        free(root->scalar);
        root->scalar = NULL;
        root->kind = IS_YAML_MAP;
    }
    rc = expect_event(&c, YAML_DOCUMENT_END_EVENT, &ev);
    if (rc != IS_OK)
        goto done;
    rc = next_event(&c, &ev);
    if (rc != IS_OK)
        goto done;
    if (ev.type != YAML_STREAM_END_EVENT) {
        is_errf(errstr, errstr_size, "%s:%d: only one YAML document is allowed", c.name,
                mark_line(&ev.start_mark));
        rc = IS_ERR_CONFIG;
        goto done;
    }
    rc = IS_OK;
done:
    yaml_event_delete(&ev);
    if (parser_ready)
        yaml_parser_delete(&c.parser);
    if (rc != IS_OK) {
        is_yaml_free(root);
        return rc;
    }
    *out = root;
    return IS_OK;
}

is_err_t is_yaml_load_file(const char *path, is_yaml_node_t **out, char *errstr,
                           size_t errstr_size) {
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    is_err_t rc;

    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!path || !out) {
        is_errf(errstr, errstr_size, "invalid argument");
        return IS_ERR_INVALID;
    }
    *out = NULL;
    rc = IS_ERR_IO;
    f = fopen(path, "rb");
    if (!f) {
        is_errf(errstr, errstr_size, "cannot open '%s': %s", path, strerror(errno));
        goto done;
    }
    /* Read in chunks rather than trusting st_size: works for pipes and /proc. */
    for (;;) {
        if (len == cap) {
            char *nb;
            if (cap >= YT_MAX_FILE) {
                is_errf(errstr, errstr_size, "%s: file is larger than %d bytes", path, YT_MAX_FILE);
                rc = IS_ERR_TOO_LARGE;
                goto done;
            }
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (!nb) {
                is_errf(errstr, errstr_size, "%s: out of memory", path);
                rc = IS_ERR_NOMEM;
                goto done;
            }
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        is_errf(errstr, errstr_size, "cannot read '%s': %s", path, strerror(errno));
        goto done;
    }
    rc = is_yaml_load_string(buf, len, path, out, errstr, errstr_size);
done:
    if (f)
        fclose(f);
    free(buf);
    return rc;
}
