/*
 * test_yamltree.c — the YAML loader: block and flow styles, line numbers,
 * quoting, empty documents, and every rejection (syntax, duplicates,
 * anchors/aliases, multiple documents, non-scalar keys, missing file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "yamltree.h"

static is_yaml_node_t *load_ok(const char *text) {
    is_yaml_node_t *root = NULL;
    char err[256] = "";
    is_err_t rc = is_yaml_load_string(text, strlen(text), "t.yaml", &root, err, sizeof(err));
    if (rc != IS_OK)
        fail_msg("unexpected error %d: %s", rc, err);
    assert_non_null(root);
    return root;
}

static void test_block_map(void **state) {
    const char *y = "# comment\n"
                    "http:\n"
                    "  listen: \":8080\"\n"
                    "  threads: 4\n"
                    "sites:\n"
                    "  - PLANT1\n"
                    "  - 'PLANT2'\n";
    is_yaml_node_t *root = load_ok(y);
    const is_yaml_node_t *http, *listen, *threads, *sites;
    (void)state;
    assert_int_equal(root->kind, IS_YAML_MAP);
    assert_int_equal(root->n, 2);
    assert_string_equal(root->keys[0], "http");
    assert_string_equal(root->keys[1], "sites");
    http = is_yaml_get(root, "http");
    assert_non_null(http);
    assert_int_equal(http->kind, IS_YAML_MAP);
    assert_int_equal(http->line, 3);
    listen = is_yaml_get(http, "listen");
    assert_int_equal(listen->kind, IS_YAML_SCALAR);
    assert_string_equal(listen->scalar, ":8080");
    assert_int_equal(listen->quoted, 1);
    assert_int_equal(listen->line, 3);
    threads = is_yaml_get(http, "threads");
    assert_string_equal(threads->scalar, "4");
    assert_int_equal(threads->quoted, 0);
    assert_int_equal(threads->line, 4);
    sites = is_yaml_get(root, "sites");
    assert_int_equal(sites->kind, IS_YAML_SEQ);
    assert_int_equal(sites->n, 2);
    assert_string_equal(sites->items[0]->scalar, "PLANT1");
    assert_int_equal(sites->items[0]->quoted, 0);
    assert_string_equal(sites->items[1]->scalar, "PLANT2");
    assert_int_equal(sites->items[1]->quoted, 1);
    assert_int_equal(sites->items[1]->line, 7);
    assert_null(is_yaml_get(root, "nope"));
    assert_null(is_yaml_get(sites, "PLANT1"));
    assert_null(is_yaml_get(NULL, "x"));
    is_yaml_free(root);
}

static void test_flow_style(void **state) {
    const char *y = "tiers:\n"
                    "  realtime: { cadence: immediate, stale_after: 2m }\n"
                    "rules:\n"
                    "  - { when: { type: [QUARANTINE, RELEASE] }, tier: realtime }\n";
    is_yaml_node_t *root = load_ok(y);
    const is_yaml_node_t *rt, *rules, *when, *type;
    (void)state;
    rt = is_yaml_get(is_yaml_get(root, "tiers"), "realtime");
    assert_non_null(rt);
    assert_int_equal(rt->n, 2);
    assert_string_equal(is_yaml_get(rt, "stale_after")->scalar, "2m");
    rules = is_yaml_get(root, "rules");
    assert_int_equal(rules->kind, IS_YAML_SEQ);
    assert_int_equal(rules->n, 1);
    assert_int_equal(rules->items[0]->line, 4);
    when = is_yaml_get(rules->items[0], "when");
    type = is_yaml_get(when, "type");
    assert_int_equal(type->kind, IS_YAML_SEQ);
    assert_int_equal(type->n, 2);
    assert_string_equal(type->items[1]->scalar, "RELEASE");
    is_yaml_free(root);
}

static void test_scalars_kept_as_text(void **state) {
    const char *y = "a: yes\nb: ~\nc:\nd: \"null\"\ne: |\n  two\n  lines\nf: 'it''s'\n"
                    "g: \"tab\\there\"\n";
    is_yaml_node_t *root = load_ok(y);
    (void)state;
    assert_string_equal(is_yaml_get(root, "a")->scalar, "yes");
    assert_string_equal(is_yaml_get(root, "b")->scalar, "~");
    assert_string_equal(is_yaml_get(root, "c")->scalar, "");
    assert_int_equal(is_yaml_get(root, "c")->quoted, 0);
    assert_string_equal(is_yaml_get(root, "d")->scalar, "null");
    assert_int_equal(is_yaml_get(root, "d")->quoted, 1);
    assert_string_equal(is_yaml_get(root, "e")->scalar, "two\nlines\n");
    assert_int_equal(is_yaml_get(root, "e")->quoted, 0);
    assert_string_equal(is_yaml_get(root, "f")->scalar, "it's");
    assert_string_equal(is_yaml_get(root, "g")->scalar, "tab\there");
    is_yaml_free(root);
}

static void test_empty_documents(void **state) {
    static const char *const empties[] = {"", "# only a comment\n", "---\n", "---\n...\n",
                                          "\n\n   \n"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        is_yaml_node_t *root = load_ok(empties[i]);
        assert_int_equal(root->kind, IS_YAML_MAP);
        assert_int_equal(root->n, 0);
        is_yaml_free(root);
    }
}

static void test_top_level_scalar_and_seq(void **state) {
    is_yaml_node_t *root = load_ok("hello\n");
    (void)state;
    assert_int_equal(root->kind, IS_YAML_SCALAR);
    assert_string_equal(root->scalar, "hello");
    is_yaml_free(root);
    root = load_ok("[1, 2, 3]");
    assert_int_equal(root->kind, IS_YAML_SEQ);
    assert_int_equal(root->n, 3);
    is_yaml_free(root);
}

static void test_not_nul_terminated(void **state) {
    const char buf[] = {'a', ':', ' ', '1', '\n', 'b', ':', ' ', '2', 'X'};
    is_yaml_node_t *root = NULL;
    char err[128];
    (void)state;
    /* Only the first 9 bytes: the trailing 'X' must not be read. */
    assert_int_equal(is_yaml_load_string(buf, 9, "t.yaml", &root, err, sizeof(err)), IS_OK);
    assert_string_equal(is_yaml_get(root, "b")->scalar, "2");
    is_yaml_free(root);
}

/* Each bad input must fail with IS_ERR_CONFIG and this exact message. */
static void test_errors(void **state) {
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"a: 1\nb: x: y\n", "t.yaml:2: mapping values are not allowed in this context"},
        {"a: 1\nb: 2\na: 3\n", "t.yaml:3: duplicate key 'a' (first at line 1)"},
        {"x:\n  k: 1\n  k: 2\n", "t.yaml:3: duplicate key 'k' (first at line 2)"},
        {"a: {k: 1, k: 2}\n", "t.yaml:1: duplicate key 'k' (first at line 1)"},
        {"a: &anc 1\nb: 2\n", "t.yaml:1: anchors and aliases are not supported (&anc)"},
        {"a: 1\nb: *anc\n", "t.yaml:2: anchors and aliases are not supported (*anc)"},
        {"base: &b {x: 1}\n", "t.yaml:1: anchors and aliases are not supported (&b)"},
        {"a: 1\n---\nb: 2\n", "t.yaml:2: only one YAML document is allowed"},
        {"? [a, b]\n: 1\n", "t.yaml:1: mapping keys must be scalars"},
        {"a: \"x\\0y\"\n", "t.yaml:1: scalar contains a NUL character"},
        {"a: [1, 2\n", "t.yaml:2: did not find expected ',' or ']' (while parsing a flow "
                       "sequence at line 1)"},
        {"a: 1\nb: \xff\n", "t.yaml:2: invalid leading UTF-8 octet"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_yaml_node_t *root = (is_yaml_node_t *)1;
        char err[256] = "";
        is_err_t rc = is_yaml_load_string(cases[i].text, strlen(cases[i].text), "t.yaml", &root,
                                          err, sizeof(err));
        if (rc != IS_ERR_CONFIG || strcmp(err, cases[i].want) != 0)
            fail_msg("case %zu: rc %d err '%s', want '%s'", i, rc, err, cases[i].want);
        assert_null(root);
    }
}

static void test_depth_limit(void **state) {
    char buf[1024];
    size_t i, n = 0;
    is_yaml_node_t *root = NULL;
    char err[256];
    (void)state;
    for (i = 0; i < 200; i++)
        buf[n++] = '[';
    for (i = 0; i < 200; i++)
        buf[n++] = ']';
    assert_int_equal(is_yaml_load_string(buf, n, "t.yaml", &root, err, sizeof(err)), IS_ERR_CONFIG);
    assert_non_null(strstr(err, "nesting deeper than"));
    assert_null(root);
}

static void test_load_file(void **state) {
    char path[] = "/tmp/test_yamltree_XXXXXX";
    int fd = mkstemp(path);
    const char *y = "k: v\nbad: [\n";
    is_yaml_node_t *root = NULL;
    char err[512], want[512];
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "k: v\n", 5), 5);
    close(fd);
    assert_int_equal(is_yaml_load_file(path, &root, err, sizeof(err)), IS_OK);
    assert_string_equal(is_yaml_get(root, "k")->scalar, "v");
    is_yaml_free(root);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, y, strlen(y)), (ssize_t)strlen(y));
    close(fd);
    assert_int_equal(is_yaml_load_file(path, &root, err, sizeof(err)), IS_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:3:", path);
    assert_memory_equal(err, want, strlen(want));
    unlink(path);

    assert_int_equal(is_yaml_load_file(path, &root, err, sizeof(err)), IS_ERR_IO);
    snprintf(want, sizeof(want), "cannot open '%s': No such file or directory", path);
    assert_string_equal(err, want);
    assert_null(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_map),
        cmocka_unit_test(test_flow_style),
        cmocka_unit_test(test_scalars_kept_as_text),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_top_level_scalar_and_seq),
        cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
