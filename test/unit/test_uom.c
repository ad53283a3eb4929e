/*
 * test_uom.c — MES → ERP unit conversion: exact factors, material-specific
 * rows, a missing unit is a permanent error naming both sides, bad files
 * name the line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uom.h"

static char path[64];

static void write_file(const char *text) {
    snprintf(path, sizeof(path), "/tmp/test_uom.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A decoded-style movement owning its uom string. */
static is_movement_t *movement(const char *material, const char *uom, int64_t units,
                               uint32_t scale) {
    is_movement_t *m = calloc(1, sizeof(*m));
    invsync__v1__movement__init(m);
    m->material = strdup(material);
    m->uom = strdup(uom);
    m->quantity = calloc(1, sizeof(*m->quantity));
    invsync__v1__decimal__init(m->quantity);
    m->quantity->units = units;
    m->quantity->scale = scale;
    return m;
}

static void test_conversions(void **state) {
    (void)state;
    char errstr[256];
    uom_table_t *t = NULL;
    write_file("mes_uom,erp_uom,factor,material\n"
               "G,KG,0.001\n"
               "PC,EA,1\n"
               "BOX,EA,12,PKG-201\n"
               "BOX,EA,10\n");
    assert_int_equal(uom_load(path, &t, errstr, sizeof(errstr)), IS_OK);
    unlink(path);
    static const struct {
        const char *material, *uom;
        int64_t units;
        uint32_t scale;
        const char *want_uom;
        int64_t want_units; /* at want_scale */
        uint32_t want_scale;
    } cases[] = {
        {"RM-101", "G", 12500, 0, "KG", 12500, 3}, /* 12500 g = 12.500 kg */
        {"RM-101", "G", 1, 3, "KG", 1, 6},         /* 0.001 g = 0.000001 kg */
        {"FG-301", "PC", 7, 0, "EA", 7, 0},
        {"PKG-201", "BOX", 2, 0, "EA", 24, 0}, /* material-specific row wins */
        {"PKG-202", "BOX", 2, 0, "EA", 20, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_movement_t *m =
            movement(cases[i].material, cases[i].uom, cases[i].units, cases[i].scale);
        assert_int_equal(uom_convert(t, m, errstr, sizeof(errstr)), IS_OK);
        assert_string_equal(m->uom, cases[i].want_uom);
        is_decimal_t got = is_movement_qty(m), want = {cases[i].want_units, cases[i].want_scale};
        if (is_decimal_cmp(got, want) != 0)
            fail_msg("case %zu: got %lld/10^%u", i, (long long)got.units, got.scale);
        invsync__v1__movement__free_unpacked(m, NULL);
    }
    is_movement_t *m = movement("RM-101", "LB", 1, 0);
    assert_int_equal(uom_convert(t, m, errstr, sizeof(errstr)), IS_ERR_PERMANENT);
    assert_non_null(strstr(errstr, "'LB'"));
    assert_non_null(strstr(errstr, "'RM-101'"));
    assert_string_equal(m->uom, "LB"); /* untouched on failure */
    invsync__v1__movement__free_unpacked(m, NULL);
    uom_free(t);
}

static void test_bad_files(void **state) {
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"G,KG\n", ":1: expected mes_uom,erp_uom,factor"},
        {"G,KG,0.001\nPC,EA,abc\n", ":2: factor 'abc' is not a positive decimal"},
        {"G,KG,-1\n", ":1: factor '-1' is not a positive decimal"},
        {"G,KG,1e3\n", ":1: factor '1e3'"},
        /* Which factor applies must not depend on file order. */
        {"KG,G,1000\nKG,G,100\n", ":2: a second row for MES unit 'KG' (the first is line 1)"},
        {"BAG,KG,25,RM-1\nPC,EA,1\nBAG,KG,20,RM-1\n",
         ":3: a second row for MES unit 'BAG' and material 'RM-1' (the first is line 1)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char errstr[256];
        uom_table_t *t = NULL;
        write_file(cases[i].text);
        assert_int_equal(uom_load(path, &t, errstr, sizeof(errstr)), IS_ERR_CONFIG);
        unlink(path);
        assert_null(t);
        if (!strstr(errstr, cases[i].want))
            fail_msg("case %zu: '%s' does not contain '%s'", i, errstr, cases[i].want);
    }
    char errstr[256];
    uom_table_t *t = NULL;
    assert_int_equal(uom_load("/nonexistent/uom.csv", &t, errstr, sizeof(errstr)), IS_ERR_CONFIG);
    assert_non_null(strstr(errstr, "cannot open '/nonexistent/uom.csv'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
