/*
 * test_json_arena.c — unit tests for mes-producer/json_arena.c: trees parsed
 * with the arena on are intact, span several blocks, are released by a
 * reset and the blocks reused; values made with the arena off (before,
 * during and after an arena's life) are ordinary heap values; another
 * thread's allocations are not affected, and a thread that exits without
 * json_arena_thread_release does not leak its blocks. Run under ASan/valgrind
 * to catch a heap value mistaken for an arena one or the reverse, and (LSan)
 * a leaked block.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "json_arena.h"

/* A JSON array of n objects, large enough to need several 1 MiB blocks. */
static char *big_doc(size_t n, size_t *len) {
    size_t cap = n * 160 + 16, i, off = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    s[off++] = '[';
    for (i = 0; i < n; i++)
        off += (size_t)snprintf(s + off, cap - off,
                                "%s{\"movement_id\":\"MV-%zu\",\"site\":\"P1\",\"qty\":\"%zu.5\","
                                "\"attributes\":{\"k\":\"v%zu\"}}",
                                i ? "," : "", i, i, i);
    s[off++] = ']';
    s[off] = '\0';
    *len = off;
    return s;
}

static void check_doc(json_t *root, size_t n) {
    size_t i;
    assert_true(json_is_array(root));
    assert_int_equal(json_array_size(root), n);
    for (i = 0; i < n; i += n / 7 + 1) {
        char want[32];
        json_t *o = json_array_get(root, i);
        snprintf(want, sizeof want, "MV-%zu", i);
        assert_string_equal(json_string_value(json_object_get(o, "movement_id")), want);
        snprintf(want, sizeof want, "v%zu", i);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(o, "attributes"), "k")), want);
    }
}

static void test_parse_in_arena_then_reset_and_reuse(void **state) {
    size_t len, round;
    char *doc = big_doc(20000, &len);                      /* several MiB of nodes */
    json_t *before = json_pack("{s:s}", "made", "before"); /* heap */
    (void)state;

    for (round = 0; round < 3; round++) {
        json_error_t err;
        json_t *root, *during;
        char *text;

        json_arena_on();
        root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &err);
        json_arena_off();
        assert_non_null(root);
        /* Made with the arena off while the tree lives: heap, freed for real. */
        during = json_pack("{s:i}", "round", (int)round);
        text = json_dumps(during, JSON_COMPACT);
        assert_non_null(text);
        free(text); /* json_dumps output is a plain heap string */
        json_decref(during);
        check_doc(root, 20000);
        json_decref(root);
        json_arena_reset();
    }
    assert_string_equal(json_string_value(json_object_get(before, "made")), "before");
    json_decref(before);
    free(doc);
}

static void test_parse_error_in_arena(void **state) {
    json_error_t err;
    json_t *root;
    (void)state;

    json_arena_on();
    root = json_loads("[{\"a\":1},{\"a\":1,\"a\":2}]", JSON_REJECT_DUPLICATES, &err);
    json_arena_off();
    assert_null(root);
    assert_true(err.line == 1 && err.text[0] != '\0');
    json_arena_reset();
}

static void *other_thread(void *p) {
    json_t *v = json_pack("{s:s}", "thread", "other"); /* this thread has no arena on */
    (void)p;
    assert_non_null(v);
    json_decref(v);
    return NULL;
}

static void test_other_threads_use_the_heap(void **state) {
    pthread_t th;
    size_t len;
    char *doc = big_doc(100, &len);
    json_error_t err;
    json_t *root;
    (void)state;

    json_arena_on();
    root = json_loadb(doc, len, 0, &err);
    assert_int_equal(pthread_create(&th, NULL, other_thread, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    json_arena_off();
    check_doc(root, 100);
    json_decref(root);
    json_arena_reset();
    free(doc);
}

/* Like an HTTP pool thread: parses in its arena, never releases it, exits. */
static void *parsing_thread(void *p) {
    size_t len;
    char *doc = big_doc(100, &len);
    json_error_t err;
    json_t *root;
    (void)p;

    json_arena_on();
    root = json_loadb(doc, len, 0, &err);
    json_arena_off();
    check_doc(root, 100);
    json_decref(root);
    json_arena_reset(); /* keeps the block for the thread's next request */
    free(doc);
    return NULL;
}

/* Fails under LSan (make asan) if an exiting thread's blocks are not freed. */
static void test_exiting_thread_frees_its_arena(void **state) {
    pthread_t th;
    int i;
    (void)state;

    for (i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&th, NULL, parsing_thread, NULL), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_in_arena_then_reset_and_reuse),
        cmocka_unit_test(test_parse_error_in_arena),
        cmocka_unit_test(test_other_threads_use_the_heap),
        cmocka_unit_test(test_exiting_thread_frees_its_arena),
    };
    int rc;
    json_arena_install();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_arena_thread_release();
    return rc;
}
