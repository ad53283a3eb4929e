/*
 * test_utf8.c — is_utf8_char_len: the lengths of well-formed characters at
 * each size and edge, and 0 for everything RFC 3629 forbids or n cuts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "utf8.h"

static void test_char_lengths(void **state) {
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;   /* bytes readable */
        size_t len; /* expected */
    } cases[] = {
        {"A", 1, 1},
        {"\x7f", 1, 1},
        {"", 1, 1}, /* NUL: a 1-byte character; callers stop at it */
        {"\xc2\x80", 2, 2},
        {"\xc3\x89x", 3, 2}, /* É */
        {"\xdf\xbf", 2, 2},
        {"\xe0\xa0\x80", 3, 3},
        {"\xe2\x80\x8b", 3, 3}, /* U+200B */
        {"\xed\x9f\xbf", 3, 3}, /* U+D7FF, below the surrogates */
        {"\xef\xbf\xbf", 3, 3},
        {"\xf0\x90\x80\x80", 4, 4},
        {"\xf4\x8f\xbf\xbf", 4, 4}, /* U+10FFFF */
        {"\x80", 1, 0},             /* a continuation byte alone */
        {"\xbf", 1, 0},
        {"\xc0\xaf", 2, 0},         /* overlong '/' */
        {"\xc1\xbf", 2, 0},         /* overlong */
        {"\xe0\x80\xaf", 3, 0},     /* overlong */
        {"\xf0\x80\x80\xaf", 4, 0}, /* overlong */
        {"\xed\xa0\x80", 3, 0},     /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 3, 0},     /* U+DFFF */
        {"\xf4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xff", 1, 0},
        {"\xc3\x89", 1, 0},         /* cut by n */
        {"\xe2\x80\x8b", 2, 0},     /* cut by n */
        {"\xf0\x90\x80\x80", 3, 0}, /* cut by n */
        {"\xc3x", 2, 0},            /* lead byte, then no continuation */
        {"\xe2\x80x", 3, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t got = is_utf8_char_len((const unsigned char *)cases[i].bytes, cases[i].n);
        if (got != cases[i].len)
            fail_msg("case %zu: length %zu, want %zu", i, got, cases[i].len);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_char_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
