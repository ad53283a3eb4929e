/*
 * yamltree.h — a small YAML document → tree loader on libyaml.
 *
 * config.c and policy.c both read YAML; this module owns the one libyaml
 * event loop and hands back a plain tree of scalars, mappings and sequences
 * with 1-based line numbers so callers can write "file.yaml:12: ..." errors.
 * Files are small (tens of KiB), loaded once at start-up or on reload.
 *
 * Rules: block and flow styles are accepted; only the first document of a
 * stream is read (a second document is an error); an empty document loads as
 * an empty MAP; anchors and aliases are rejected; a duplicate mapping key is
 * an error naming the key and its line; mapping keys must be scalars. Scalars
 * are kept as text (no type resolution): "yes", "1" and "~" stay strings, and
 * `quoted` tells whether the scalar was written in quotes (so callers can
 * tell `null` from `"null"`).
 *
 * Thread-safety: no shared state; a tree is immutable after loading and may be
 * read from any thread.
 */
#ifndef INVSYNC_YAMLTREE_H
#define INVSYNC_YAMLTREE_H

#include <stddef.h>

#include "error.h"

typedef enum { IS_YAML_SCALAR, IS_YAML_MAP, IS_YAML_SEQ } is_yaml_kind_t;

typedef struct is_yaml_node is_yaml_node_t;
struct is_yaml_node {
    is_yaml_kind_t kind;
    int line;               /* 1-based line where the node starts */
    char *scalar;           /* SCALAR: NUL-terminated text; NULL otherwise */
    size_t n;               /* MAP: number of pairs; SEQ: number of items */
    char **keys;            /* MAP: n keys, in document order */
    is_yaml_node_t **items; /* MAP: n values (items[i] belongs to keys[i]); SEQ: n items */
    int quoted;             /* SCALAR: 1 when written single- or double-quoted */
};

/*
 * Parse the file at path. On success *out owns the tree (free with
 * is_yaml_free). On error *out is NULL and errstr holds
 * "path:12: mapping values are not allowed here" (or "cannot open 'path': ..."
 * with IS_ERR_IO). Syntax and structure errors return IS_ERR_CONFIG.
 */
is_err_t is_yaml_load_file(const char *path, is_yaml_node_t **out, char *errstr,
                           size_t errstr_size) IS_MUST_CHECK;

/*
 * Same as is_yaml_load_file for a buffer of len bytes (need not be
 * NUL-terminated); name is used in error messages in place of the path.
 */
is_err_t is_yaml_load_string(const char *text, size_t len, const char *name, is_yaml_node_t **out,
                             char *errstr, size_t errstr_size) IS_MUST_CHECK;

/* Free a tree; NULL is a no-op. */
void is_yaml_free(is_yaml_node_t *n);

/* The value for key in a MAP; NULL if absent or map is NULL or not a MAP. */
const is_yaml_node_t *is_yaml_get(const is_yaml_node_t *map, const char *key);

#endif
