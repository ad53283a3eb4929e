/*
 * test_reconcile.c — reconciliation: every class of difference from a table
 * of cases (MES rows, ERP rows, pending movements, extra unit factors →
 * expected differences), the input files (CSV quirks, JSON, errors naming
 * file and line) and the metrics textfile.
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

#include "reconcile.h"

#define SITE     "P1"
#define MAX_ROWS 6

typedef struct trow {
    const char *lot, *location, *status, *uom, *qty; /* material "RM-1" unless lot has "/" */
} trow_t;

typedef struct tpending {
    int type;
    const char *lot, *location, *to_location;
    int from_status, to_status;
    const char *uom, *qty;
} tpending_t;

typedef struct texpect {
    const char *lot, *location, *status, *uom;
    reconcile_class_t cls;
    const char *erp_uom; /* NULL: same as uom */
} texpect_t;

typedef struct tcase {
    const char *name;
    trow_t mes[MAX_ROWS], erp[MAX_ROWS];
    tpending_t pending[MAX_ROWS];
    const char *factor[4]; /* material, from, to, factor */
    size_t n_diffs, matched;
    texpect_t expect[MAX_ROWS]; /* in output order */
} tcase_t;

#define UNR "UNRESTRICTED"
#define BLK "BLOCKED"
#define QI  "QUALITY"

static const tcase_t cases[] = {
    {.name = "equal rows agree (scales differ)",
     .mes = {{"L1", "WH", UNR, "KG", "10.500"}},
     .erp = {{"L1", "WH", UNR, "KG", "10.5"}},
     .n_diffs = 0,
     .matched = 1},
    {.name = "a queued completion explains the difference exactly",
     .mes = {{"L1", "WH", UNR, "EA", "10"}},
     .erp = {{"L1", "WH", UNR, "EA", "7"}},
     .pending = {{INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, "L1", "WH", NULL, 0, 0, "EA", "3"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "EA", RECONCILE_PENDING}}},
    {.name = "a queued quarantine explains both statuses",
     .mes = {{"L1", "WH", BLK, "EA", "5"}, {"L1", "WH", UNR, "EA", "5"}},
     .erp = {{"L1", "WH", UNR, "EA", "10"}},
     .pending = {{INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE, "L1", "WH", NULL, 0, 0, "EA", "5"}},
     .n_diffs = 2,
     .expect = {{"L1", "WH", UNR, "EA", RECONCILE_PENDING},
                {"L1", "WH", BLK, "EA", RECONCILE_PENDING}}},
    {.name = "pending on a key that agrees is not a difference",
     .mes = {{"L1", "WH", UNR, "EA", "10"}},
     .erp = {{"L1", "WH", UNR, "EA", "10"}},
     .pending = {{INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, "L1", "WH", NULL, 0, 0, "EA", "3"}},
     .n_diffs = 0,
     .matched = 1},
    {.name = "pending that explains only part is unexplained",
     .mes = {{"L1", "WH", UNR, "EA", "10"}},
     .erp = {{"L1", "WH", UNR, "EA", "5"}},
     .pending = {{INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, "L1", "WH", NULL, 0, 0, "EA", "3"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "EA", RECONCILE_UNEXPLAINED}}},
    {.name = "the ERP has the negated quantity: sign",
     .mes = {{"L1", "WH", UNR, "KG", "10.25"}},
     .erp = {{"L1", "WH", UNR, "KG", "-10.25"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "KG", RECONCILE_SIGN}}},
    {.name = "same unit, ERP = MES x 1000: uom",
     .mes = {{"L1", "WH", UNR, "KG", "12.5"}},
     .erp = {{"L1", "WH", UNR, "KG", "12500"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "KG", RECONCILE_UOM}}},
    {.name = "same unit, ERP = MES / 1000: uom",
     .mes = {{"L1", "WH", UNR, "G", "12500"}},
     .erp = {{"L1", "WH", UNR, "G", "12.5"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "G", RECONCILE_UOM}}},
    {.name = "two units that convert exactly: one uom difference",
     .mes = {{"L1", "WH", UNR, "KG", "12.5"}},
     .erp = {{"L1", "WH", UNR, "G", "12500"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "KG", RECONCILE_UOM, "G"}}},
    {.name = "two units, the inverse factor",
     .mes = {{"L1", "WH", UNR, "G", "250"}},
     .erp = {{"L1", "WH", UNR, "KG", "0.25"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "G", RECONCILE_UOM, "KG"}}},
    {.name = "two units that do not convert: unexplained on both",
     .mes = {{"L1", "WH", UNR, "KG", "12.5"}},
     .erp = {{"L1", "WH", UNR, "G", "12000"}},
     .n_diffs = 2,
     .expect = {{"L1", "WH", UNR, "G", RECONCILE_UNEXPLAINED},
                {"L1", "WH", UNR, "KG", RECONCILE_UNEXPLAINED}}},
    {.name = "a material-specific factor",
     .mes = {{"L1", "WH", UNR, "BOX", "2"}},
     .erp = {{"L1", "WH", UNR, "EA", "48"}},
     .factor = {"RM-1", "BOX", "EA", "24"},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "BOX", RECONCILE_UOM, "EA"}}},
    {.name = "a factor of another material does not apply",
     .mes = {{"L1", "WH", UNR, "BOX", "2"}},
     .erp = {{"L1", "WH", UNR, "EA", "48"}},
     .factor = {"RM-9", "BOX", "EA", "24"},
     .n_diffs = 2,
     .expect = {{"L1", "WH", UNR, "BOX", RECONCILE_UNEXPLAINED},
                {"L1", "WH", UNR, "EA", RECONCILE_UNEXPLAINED}}},
    {.name = "quarantine not applied in the ERP: status pair",
     .mes = {{"L1", "FG", BLK, "EA", "40"}},
     .erp = {{"L1", "FG", UNR, "EA", "40"}},
     .n_diffs = 2,
     .expect = {{"L1", "FG", UNR, "EA", RECONCILE_STATUS},
                {"L1", "FG", BLK, "EA", RECONCILE_STATUS}}},
    {.name = "a status pair needs the same quantity",
     .mes = {{"L1", "FG", BLK, "EA", "40"}},
     .erp = {{"L1", "FG", UNR, "EA", "30"}},
     .n_diffs = 2,
     .expect = {{"L1", "FG", UNR, "EA", RECONCILE_UNEXPLAINED},
                {"L1", "FG", BLK, "EA", RECONCILE_UNEXPLAINED}}},
    {.name = "a status pair needs the same location",
     .mes = {{"L1", "FG", QI, "EA", "40"}},
     .erp = {{"L1", "WH", UNR, "EA", "40"}},
     .n_diffs = 2,
     .expect = {{"L1", "FG", QI, "EA", RECONCILE_UNEXPLAINED},
                {"L1", "WH", UNR, "EA", RECONCILE_UNEXPLAINED}}},
    {.name = "a lot only in MES",
     .mes = {{"L1", "WH", UNR, "EA", "10"}, {"L2", "WH", UNR, "EA", "5"}},
     .erp = {{"L1", "WH", UNR, "EA", "10"}},
     .n_diffs = 1,
     .matched = 1,
     .expect = {{"L2", "WH", UNR, "EA", RECONCILE_MISSING_LOT}}},
    {.name = "a lot only in the ERP, at two locations",
     .mes = {{"L1", "WH", UNR, "EA", "10"}},
     .erp = {{"L1", "WH", UNR, "EA", "10"},
             {"L9", "WH", UNR, "EA", "1"},
             {"L9", "LINE", UNR, "EA", "2"}},
     .n_diffs = 2,
     .matched = 1,
     .expect = {{"L9", "LINE", UNR, "EA", RECONCILE_MISSING_LOT},
                {"L9", "WH", UNR, "EA", RECONCILE_MISSING_LOT}}},
    {.name = "a lot whose completion is still queued is pending, not missing",
     .mes = {{"L3", "FG", UNR, "EA", "8"}},
     .pending = {{INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, "L3", "FG", NULL, 0, 0, "EA", "8"}},
     .n_diffs = 1,
     .expect = {{"L3", "FG", UNR, "EA", RECONCILE_PENDING}}},
    {.name = "plain quantity drift is unexplained and comes first",
     .mes = {{"L1", "WH", UNR, "EA", "10"}, {"L2", "WH", UNR, "EA", "5"}},
     .erp = {{"L1", "WH", UNR, "EA", "9"}, {"L2", "WH", UNR, "EA", "-5"}},
     .n_diffs = 2,
     .expect = {{"L1", "WH", UNR, "EA", RECONCILE_UNEXPLAINED},
                {"L2", "WH", UNR, "EA", RECONCILE_SIGN}}},
    {.name = "units that differ only in case, same quantity: one uom difference",
     .mes = {{"L1", "WH", UNR, "ea", "10"}},
     .erp = {{"L1", "WH", UNR, "EA", "10"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "ea", RECONCILE_UOM, "EA"}}},
    {.name = "units that differ only in case, another quantity: one unexplained key",
     .mes = {{"L1", "WH", UNR, "ea", "10"}},
     .erp = {{"L1", "WH", UNR, "EA", "12"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "ea", RECONCILE_UNEXPLAINED, "EA"}}},
    {.name = "units that differ only in case, negated: sign",
     .mes = {{"L1", "WH", UNR, "Kg", "2.5"}},
     .erp = {{"L1", "WH", UNR, "KG", "-2.5"}},
     .n_diffs = 1,
     .expect = {{"L1", "WH", UNR, "Kg", RECONCILE_SIGN, "KG"}}},
    {.name = "a pending transfer covers both locations",
     .mes = {{"L1", "WH", UNR, "KG", "6"}, {"L1", "LINE", UNR, "KG", "4"}},
     .erp = {{"L1", "WH", UNR, "KG", "10"}},
     .pending = {{INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "L1", "WH", "LINE", 0, 0, "KG", "4"}},
     .n_diffs = 2,
     .expect = {{"L1", "LINE", UNR, "KG", RECONCILE_PENDING},
                {"L1", "WH", UNR, "KG", RECONCILE_PENDING}}},
};

static is_decimal_t dec(const char *s) {
    is_decimal_t d;
    assert_int_equal(is_decimal_parse(s, strlen(s), 18, &d, NULL, 0), IS_OK);
    return d;
}

static void add_rows(reconcile_t *r, reconcile_side_t side, const trow_t *rows) {
    for (size_t i = 0; i < MAX_ROWS && rows[i].lot; i++)
        assert_int_equal(reconcile_add_row(r, side, SITE, "RM-1", rows[i].lot, rows[i].location,
                                           is_stock_status_parse(rows[i].status), rows[i].uom,
                                           dec(rows[i].qty)),
                         IS_OK);
}

static void add_pending(reconcile_t *r, const tpending_t *p, size_t i) {
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    is_decimal_t d = dec(p->qty);
    char id[16];
    snprintf(id, sizeof(id), "MV-%zu", i);
    q.units = d.units;
    q.scale = d.scale;
    m.movement_id = id;
    m.source_system = "MES";
    m.site = SITE;
    m.material = "RM-1";
    m.type = p->type;
    m.lot = (char *)p->lot;
    m.location = (char *)p->location;
    m.to_location = (char *)(p->to_location ? p->to_location : "");
    m.from_status = p->from_status;
    m.to_status = p->to_status;
    m.uom = (char *)p->uom;
    m.order_id = "ORD-1";
    m.quantity = &q;
    assert_int_equal(reconcile_add_pending(r, &m, "queued"), IS_OK);
}

static void test_classification_table(void **state) {
    (void)state;
    char errstr[256];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const tcase_t *tc = &cases[c];
        reconcile_t *r = NULL;
        print_message("case: %s\n", tc->name);
        assert_int_equal(reconcile_new(&r), IS_OK);
        add_rows(r, RECONCILE_MES, tc->mes);
        add_rows(r, RECONCILE_ERP, tc->erp);
        for (size_t i = 0; i < MAX_ROWS && tc->pending[i].lot; i++)
            add_pending(r, &tc->pending[i], i);
        if (tc->factor[1])
            assert_int_equal(reconcile_add_factor(r, tc->factor[0], tc->factor[1], tc->factor[2],
                                                  dec(tc->factor[3])),
                             IS_OK);
        assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
        if (reconcile_count(r) != tc->n_diffs) {
            for (size_t i = 0; i < reconcile_count(r); i++)
                print_message("  got %s %s/%s: %s\n",
                              reconcile_class_name(reconcile_diff(r, i)->cls),
                              reconcile_diff(r, i)->lot, reconcile_diff(r, i)->location,
                              reconcile_diff(r, i)->explanation);
        }
        assert_int_equal(reconcile_count(r), tc->n_diffs);
        assert_int_equal(reconcile_matched(r), tc->matched);
        for (size_t i = 0; i < tc->n_diffs; i++) {
            const reconcile_diff_t *d = reconcile_diff(r, i);
            const texpect_t *e = &tc->expect[i];
            print_message("  %s %s/%s %s %s: %s\n", reconcile_class_name(d->cls), d->lot,
                          d->location, is_stock_status_name(d->status), d->uom, d->explanation);
            assert_string_equal(reconcile_class_name(d->cls), reconcile_class_name(e->cls));
            assert_string_equal(d->lot, e->lot);
            assert_string_equal(d->location, e->location);
            assert_string_equal(is_stock_status_name(d->status), e->status);
            assert_string_equal(d->uom, e->uom);
            assert_string_equal(d->erp_uom, e->erp_uom ? e->erp_uom : e->uom);
            assert_true(d->explanation[0] != '\0');
        }
        reconcile_free(r);
    }
}

static void test_summary_counts_and_absolute_quantities(void **state) {
    (void)state;
    reconcile_t *r = NULL;
    char errstr[256], q[IS_DECIMAL_STRLEN];
    size_t n;
    is_decimal_t abs;
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, SITE, "M", "A", "WH", 0, "EA", dec("10")),
                     IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_ERP, SITE, "M", "A", "WH", 0, "EA", dec("12.5")), IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, SITE, "M", "B", "WH", 0, "EA", dec("1")),
                     IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_ERP, SITE, "M", "B", "WH", 0, "EA", dec("2")),
                     IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    reconcile_summary(r, RECONCILE_UNEXPLAINED, &n, &abs);
    is_decimal_format(is_decimal_normalize(abs), q, sizeof(q));
    assert_int_equal(n, 2);
    assert_string_equal(q, "3.5");
    assert_int_equal(reconcile_diff(r, 0)->difference.units, -25); /* 10 - 12.5 */
    reconcile_summary(r, RECONCILE_PENDING, &n, &abs);
    assert_int_equal(n, 0);
    reconcile_free(r);
}

static void test_site_filter_drops_other_sites(void **state) {
    (void)state;
    reconcile_t *r = NULL;
    char errstr[256];
    assert_int_equal(reconcile_new(&r), IS_OK);
    reconcile_set_site(r, SITE);
    assert_int_equal(reconcile_add_row(r, RECONCILE_ERP, "P2", "M", "A", "WH", 0, "EA", dec("1")),
                     IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_count(r), 0);
    assert_int_equal(reconcile_rows(r, RECONCILE_ERP), 0);
    reconcile_free(r);
}

/* ---- files ------------------------------------------------------------------------- */

typedef struct files {
    char dir[64];
} files_t;

static int files_setup(void **state) {
    files_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_reconcile.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int files_teardown(void **state) {
    files_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* The path is f->dir/name; returned in a buffer of its own per name. */
static const char *write_file(files_t *f, const char *name, const char *text) {
    static char paths[4][160];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof(paths[0]), "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

static char *read_text(const char *path) {
    static char buf[8192];
    FILE *fp = fopen(path, "r");
    size_t n;
    assert_non_null(fp);
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void test_csv_quirks_are_accepted(void **state) {
    files_t *f = *state;
    reconcile_t *r = NULL;
    char errstr[256];
    const char *mes = write_file(f, "mes.csv",
                                 "\xEF\xBB\xBF# MES snapshot 06:00\r\n"
                                 "quantity,site,material,lot,location,stock_status,uom,note\r\n"
                                 "\r\n"
                                 "10,P1,RM-1,\"L,1\",WH,unrestricted,KG,\"said \"\"hi\"\"\"\r\n"
                                 "2.5,P1,RM-1,\"L,1\",WH,,KG,\r\n");
    const char *erp = write_file(f, "erp.json",
                                 "[{\"site\":\"P1\",\"material\":\"RM-1\",\"lot\":\"L,1\","
                                 "\"location\":\"WH\",\"stock_status\":\"UNRESTRICTED\","
                                 "\"uom\":\"KG\",\"quantity\":\"12.500\"}]\n");
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_load_file(r, RECONCILE_MES, mes, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_load_file(r, RECONCILE_ERP, erp, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_rows(r, RECONCILE_MES), 2);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_count(r), 0);
    assert_int_equal(reconcile_matched(r), 1);
    reconcile_free(r);
}

/* Old Mac exports end lines with a lone CR; exact quantities may carry more zeros than 18
 * places (or than int64 units hold): both are read as meant. */
static void test_cr_only_lines_and_trailing_zeros_are_accepted(void **state) {
    files_t *f = *state;
    reconcile_t *r = NULL;
    char errstr[256] = "";
    const char *mes = write_file(f, "mes.csv",
                                 "site,material,lot,location,stock_status,uom,quantity\r"
                                 "P1,RM-1,L1,WH,,EA,54.000000000000000000000\r"
                                 "\r"
                                 "P1,RM-1,L2,WH,,EA,-7.50000000000000000000000000\r"
                                 "P1,RM-1,L3,WH,,EA,3\r\n"
                                 "P1,RM-1,L4,WH,,EA,0.000000000000000000000\n");
    const char *erp =
        write_file(f, "erp.csv",
                   "site,material,lot,location,stock_status,uom,quantity\n"
                   "P1,RM-1,L1,WH,,EA,54\nP1,RM-1,L2,WH,,EA,-7.5\nP1,RM-1,L3,WH,,EA,3\n");
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_load_file(r, RECONCILE_MES, mes, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_load_file(r, RECONCILE_ERP, erp, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_rows(r, RECONCILE_MES), 4);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_count(r), 0);
    assert_int_equal(reconcile_matched(r), 3);
    reconcile_free(r);
}

static void test_bad_files_name_file_line_and_value(void **state) {
    files_t *f = *state;
    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"site,material,lot,location,uom,quantity\n", "no column 'stock_status'"},
        /* every missing column is named, not only the last one */
        {"site,material,lot,quantity\n",
         "mes.csv:1: the header has no columns 'location', 'stock_status', 'uom' (needed: "},
        /* JSON that is not an array of rows: told it must be CSV, with the header */
        {"{\"site\":\"P1\",\"material\":\"M\"}\n",
         "mes.csv:1: this is a JSON object, not a snapshot: the file must be CSV with the header "
         "site,material,lot,location,stock_status,uom,quantity"},
        {"\n{\"rows\":[]}\n{\"rows\":[]}\n", "mes.csv:2: this is a JSON object"},
        {"[[\"P1\",\"M\"]]", "mes.csv: row 1: expected an object with the keys site,material,"},
        /* a non-zero digit beyond 18 places is still refused */
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,L,WH,,EA,1."
         "0000000000000000001\n",
         "mes.csv:2: quantity '1.0000000000000000001': more than 18 decimal places"},
        {"site,material,lot,location,stock_status,uom,quantity\rP1,M,L,WH,FROZEN,EA,1\r",
         "mes.csv:2: unknown stock_status 'FROZEN'"},
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,L,WH,FROZEN,EA,1\n",
         "mes.csv:2: unknown stock_status 'FROZEN'"},
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,L,WH,,EA,1e3\n",
         "mes.csv:2: quantity '1e3'"},
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,,WH,,EA,1\n",
         "mes.csv:2: 'lot' is empty"},
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,\"L,WH,,EA,1\n",
         "mes.csv:2: malformed CSV"},
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,L\n", "mes.csv:2: 3 column"},
        /* an unquoted thousands separator: read as 1, it would be drift that is not there */
        {"site,material,lot,location,stock_status,uom,quantity\nP1,M,L,WH,,EA,1,000\n",
         "mes.csv:2: 8 column(s), the header has 7: a value with an unquoted comma"},
        /* two columns of one name: which one holds the value is a guess */
        {"site,material,lot,location,stock_status,uom,quantity,site\nP1,M,L,WH,,EA,1,P2\n",
         "mes.csv:1: the header names the column 'site' twice (columns 1 and 8)"},
        {"", "empty file"},
        {"[{\"site\":\"P1\",\"material\":\"M\",\"lot\":\"L\",\"location\":\"W\",\"uom\":\"EA\","
         "\"quantity\":1.5}]",
         "row 1: 'quantity' must be a string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reconcile_t *r = NULL;
        char errstr[256] = "";
        const char *path = write_file(f, "mes.csv", bad[i].text);
        assert_int_equal(reconcile_new(&r), IS_OK);
        assert_int_equal(reconcile_load_file(r, RECONCILE_MES, path, errstr, sizeof(errstr)),
                         IS_ERR_INVALID);
        print_message("%s\n", errstr);
        assert_non_null(strstr(errstr, bad[i].expect));
        reconcile_free(r);
    }
    reconcile_t *r = NULL;
    char errstr[256];
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(
        reconcile_load_file(r, RECONCILE_MES, "/nonexistent/x.csv", errstr, sizeof(errstr)),
        IS_ERR_IO);
    assert_non_null(strstr(errstr, "cannot open '/nonexistent/x.csv'"));
    reconcile_free(r);
}

/* A NUL ends a C string: every row after it would be dropped without a word, and a
 * snapshot missing its second half reads as lots missing in MES. */
static void test_snapshot_with_a_nul_byte_is_refused(void **state) {
    files_t *f = *state;
    static const char text[] = "site,material,lot,location,stock_status,uom,quantity\n"
                               "P1,M,L1,WH,,EA,1\n"
                               "\0P1,M,L2,WH,,EA,2\n";
    char path[200], errstr[256] = "";
    reconcile_t *r = NULL;
    snprintf(path, sizeof(path), "%s/nul.csv", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, sizeof(text) - 1, fp), sizeof(text) - 1);
    fclose(fp);
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_load_file(r, RECONCILE_MES, path, errstr, sizeof(errstr)),
                     IS_ERR_INVALID);
    assert_non_null(strstr(errstr, "nul.csv:3: a NUL byte at offset 70"));
    reconcile_free(r);
    /* Empty fields after the header's last column (a trailing comma) shift nothing. */
    const char *ok = write_file(f, "trailing.csv",
                                "site,material,lot,location,stock_status,uom,quantity\n"
                                "P1,M,L1,WH,,EA,1,,\n");
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_load_file(r, RECONCILE_MES, ok, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_rows(r, RECONCILE_MES), 1);
    reconcile_free(r);
}

static void test_factor_file_and_metrics_textfile(void **state) {
    files_t *f = *state;
    reconcile_t *r = NULL;
    char errstr[256], metrics[160];
    const char *uom = write_file(f, "uom.csv", "from_uom,to_uom,factor,material\nPAL,EA,480,\n");
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_load_file(r, -1, uom, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, SITE, "M", "A", "WH", 0, "PAL", dec("2")),
                     IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_ERP, SITE, "M", "A", "WH", 0, "EA", dec("960")),
                     IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, SITE, "M", "B", "WH", 0, "EA", dec("3")),
                     IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_diff(r, 0)->cls, RECONCILE_UOM);
    assert_int_equal(reconcile_diff(r, 1)->cls, RECONCILE_MISSING_LOT);
    snprintf(metrics, sizeof(metrics), "%s/reconcile.prom", f->dir);
    assert_int_equal(reconcile_write_metrics(r, metrics, 1764460800123, errstr, sizeof(errstr)),
                     IS_OK);
    const char *text = read_text(metrics);
    assert_non_null(strstr(text, "# TYPE invsync_reconcile_differences gauge\n"));
    assert_non_null(strstr(text, "invsync_reconcile_differences{class=\"unexplained\"} 0\n"));
    assert_non_null(strstr(text, "invsync_reconcile_differences{class=\"uom\"} 1\n"));
    assert_non_null(strstr(text, "invsync_reconcile_abs_quantity{class=\"missing-lot\"} 3\n"));
    assert_non_null(strstr(text, "invsync_reconcile_last_run_timestamp_seconds 1764460800.123\n"));
    assert_int_equal(access(metrics, F_OK), 0);
    char tmp[200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", metrics);
    assert_int_equal(access(tmp, F_OK), -1); /* renamed into place */
    reconcile_free(r);
}

/* The consumer converts units before posting (uom.conversions): so does reconcile. */
static void test_configured_conversions_are_not_drift(void **state) {
    files_t *f = *state;
    reconcile_t *r = NULL;
    char errstr[256];
    /* uom.h's format: the header is optional, spaces around fields are trimmed. */
    const char *conv = write_file(f, "uom.csv", "# MES -> ERP\nBOX, EA, 24\nBOX,EA,20,RM-2\n");
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(
        reconcile_load_file(r, RECONCILE_FILE_CONVERSIONS, conv, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, SITE, "RM-1", "A", "WH", 0, "BOX", dec("2")), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_ERP, SITE, "RM-1", "A", "WH", 0, "EA", dec("48")), IS_OK);
    /* The material's own row wins: 3 BOX of RM-2 are 60 EA; one box is still queued. */
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, SITE, "RM-2", "B", "WH", 0, "BOX", dec("3")), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_ERP, SITE, "RM-2", "B", "WH", 0, "EA", dec("40")), IS_OK);
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    q.units = 1;
    m.movement_id = "MV-B";
    m.site = SITE;
    m.type = INVSYNC__V1__MOVEMENT_TYPE__COMPLETION;
    m.material = "RM-2";
    m.lot = "B";
    m.location = "WH";
    m.uom = "BOX";
    m.quantity = &q;
    assert_int_equal(reconcile_add_pending(r, &m, "queued"), IS_OK);
    /* Posted unconverted: 5 EA where 5 BOX = 120 EA were due. */
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, SITE, "RM-1", "C", "WH", 0, "BOX", dec("5")), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_ERP, SITE, "RM-1", "C", "WH", 0, "EA", dec("5")), IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_matched(r), 1);
    assert_int_equal(reconcile_count(r), 2);
    assert_int_equal(reconcile_diff(r, 0)->cls, RECONCILE_PENDING);
    assert_string_equal(reconcile_diff(r, 0)->lot, "B");
    assert_string_equal(reconcile_diff(r, 0)->uom, "EA");
    assert_int_equal(reconcile_diff(r, 1)->cls, RECONCILE_UOM);
    assert_string_equal(reconcile_diff(r, 1)->lot, "C");
    reconcile_free(r);
}

/* A site neither the consumer nor the ERP knows is not a missing lot: its rows are unexplained
 * and listed; sites known to either are compared as usual. */
static void test_unknown_site_is_unexplained_and_listed(void **state) {
    (void)state;
    static const char *const known[] = {SITE};
    reconcile_t *r = NULL;
    char errstr[256];
    size_t n = 0;
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_set_known_sites(r, known, 1), IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, SITE, "M", "A", "WH", 0, "EA", dec("10")),
                     IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_ERP, SITE, "M", "A", "WH", 0, "EA", dec("10")),
                     IS_OK);
    /* P2: the store never heard from it, but the ERP has stock there: known. */
    assert_int_equal(reconcile_add_row(r, RECONCILE_ERP, "P2", "M", "B", "WH", 0, "EA", dec("1")),
                     IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, "P2", "M", "C", "WH", 0, "EA", dec("4")),
                     IS_OK);
    /* A material the ERP has no stock of at all at a known site: still a missing lot. */
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, SITE, "NEW-1", "N", "WH", 0, "EA", dec("2")), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, "PLANT7", "M", "X", "WH", 0, "EA", dec("5")), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, "PLANT7", "M", "Y", "WH", 0, "EA", dec("6")), IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_string_equal(reconcile_unknown_site(r, 0, &n), "PLANT7");
    assert_int_equal(n, 2);
    assert_null(reconcile_unknown_site(r, 1, NULL));
    assert_int_equal(reconcile_count(r), 5);
    for (size_t i = 0; i < 2; i++) {
        const reconcile_diff_t *d = reconcile_diff(r, i);
        assert_int_equal(d->cls, RECONCILE_UNEXPLAINED);
        assert_string_equal(d->site, "PLANT7");
        assert_non_null(strstr(d->explanation, "site PLANT7 is unknown"));
    }
    assert_int_equal(reconcile_diff(r, 2)->cls, RECONCILE_MISSING_LOT);
    assert_non_null(strstr(reconcile_diff(r, 2)->explanation, "no stock of NEW-1 at all at P1"));
    assert_int_equal(reconcile_diff(r, 3)->cls, RECONCILE_MISSING_LOT); /* P2 B, only in the ERP */
    assert_int_equal(reconcile_diff(r, 4)->cls, RECONCILE_MISSING_LOT); /* P2 C, only in MES */
    assert_string_equal(reconcile_diff(r, 4)->lot, "C");
    reconcile_free(r);

    /* The check is on only when the caller gave the known sites. */
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(
        reconcile_add_row(r, RECONCILE_MES, "PLANT7", "M", "X", "WH", 0, "EA", dec("5")), IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(reconcile_diff(r, 0)->cls, RECONCILE_MISSING_LOT);
    assert_null(reconcile_unknown_site(r, 0, NULL));
    reconcile_free(r);
}

/* A header-only (truncated) snapshot against a side with rows is refused, naming the file. */
static void test_empty_snapshot_is_refused(void **state) {
    (void)state;
    static const struct {
        int mes_rows, erp_rows, other_site; /* other_site: the MES rows are of P2 */
        const char *erp_name, *expect;      /* expect NULL: accepted */
    } cases[] = {
        {0, 3, 0, NULL,
         "mes.csv: no rows (a header only, or a truncated export?): refusing to "
         "compare an empty snapshot with the ERP's 3 row(s)"},
        {2, 3, 1, NULL, "mes.csv: no rows for site P1 (2 of other sites)"},
        {0, 0, 0, NULL, NULL}, /* nothing on either side: nothing wrong */
        {2, 0, 0, NULL, NULL}, /* the adapter's empty answer is not a file */
        {2, 0, 0, "erp.csv", "erp.csv: no rows"},
        {2, 3, 0, "erp.csv", NULL},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        reconcile_t *r = NULL;
        char errstr[256] = "";
        assert_int_equal(reconcile_new(&r), IS_OK);
        reconcile_set_site(r, SITE);
        for (int i = 0; i < cases[c].mes_rows; i++)
            assert_int_equal(reconcile_add_row(r, RECONCILE_MES, cases[c].other_site ? "P2" : SITE,
                                               "M", "A", "WH", 0, "EA", dec("1")),
                             IS_OK);
        for (int i = 0; i < cases[c].erp_rows; i++)
            assert_int_equal(
                reconcile_add_row(r, RECONCILE_ERP, SITE, "M", "A", "WH", 0, "EA", dec("1")),
                IS_OK);
        is_err_t rc =
            reconcile_check_inputs(r, "mes.csv", cases[c].erp_name, errstr, sizeof(errstr));
        print_message("case %zu: %s\n", c, errstr);
        if (cases[c].expect) {
            assert_int_equal(rc, IS_ERR_INVALID);
            assert_non_null(strstr(errstr, cases[c].expect));
        } else {
            assert_int_equal(rc, IS_OK);
        }
        reconcile_free(r);
    }
}

static void test_csv_output_quotes_and_header(void **state) {
    files_t *f = *state;
    reconcile_t *r = NULL;
    char errstr[256], path[160];
    FILE *fp;
    assert_int_equal(reconcile_new(&r), IS_OK);
    assert_int_equal(reconcile_add_row(r, RECONCILE_MES, SITE, "M", "A,1", "WH", 0, "EA", dec("1")),
                     IS_OK);
    assert_int_equal(reconcile_run(r, errstr, sizeof(errstr)), IS_OK);
    snprintf(path, sizeof(path), "%s/out.csv", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(reconcile_write_csv(r, fp), 0);
    fclose(fp);
    const char *text = read_text(path);
    assert_true(strncmp(text, "class,site,material,lot,location,stock_status,uom,", 50) == 0);
    assert_non_null(strstr(text, "\nmissing-lot,P1,M,\"A,1\",WH,UNRESTRICTED,EA,1,EA,0,0,1,"));
    reconcile_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classification_table),
        cmocka_unit_test(test_summary_counts_and_absolute_quantities),
        cmocka_unit_test(test_site_filter_drops_other_sites),
        cmocka_unit_test(test_unknown_site_is_unexplained_and_listed),
        cmocka_unit_test(test_empty_snapshot_is_refused),
        cmocka_unit_test_setup_teardown(test_cr_only_lines_and_trailing_zeros_are_accepted,
                                        files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_csv_quirks_are_accepted, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_name_file_line_and_value, files_setup,
                                        files_teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_with_a_nul_byte_is_refused, files_setup,
                                        files_teardown),
        cmocka_unit_test_setup_teardown(test_factor_file_and_metrics_textfile, files_setup,
                                        files_teardown),
        cmocka_unit_test_setup_teardown(test_configured_conversions_are_not_drift, files_setup,
                                        files_teardown),
        cmocka_unit_test_setup_teardown(test_csv_output_quotes_and_header, files_setup,
                                        files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
