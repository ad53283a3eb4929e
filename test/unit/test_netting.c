/*
 * test_netting.c — netting never makes the ERP refuse what the un-netted
 * sequence would accept (property test over random feasible sequences),
 * ends with the same stock, and actually nets (10,000 issues → 1 line).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netting.h"

#define MAXM 64
static const char *const LOCS[] = {"A", "B", "C"};

typedef struct seq {
    is_movement_t m[MAXM];
    is_movement_t *pm[MAXM];
    Invsync__V1__Decimal q[MAXM];
    char ids[MAXM][16];
    size_t n;
} seq_t;

/* Stock buckets: location x status (1..3). */
typedef struct stock {
    int64_t v[3][4];
} stock_t;

static int loc_index(const char *l) {
    for (int i = 0; i < 3; i++)
        if (strcmp(l, LOCS[i]) == 0)
            return i;
    return -1;
}

/* Apply effects of m with quantity q; returns 0 if something went negative. */
static int apply(stock_t *s, const is_movement_t *m, is_decimal_t q) {
    is_movement_t copy = *m;
    Invsync__V1__Decimal dq = INVSYNC__V1__DECIMAL__INIT;
    is_stock_effect_t fx[4];
    dq.units = q.units;
    dq.scale = q.scale;
    copy.quantity = &dq;
    size_t n = is_movement_effects(&copy, fx);
    assert_true(n > 0);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        int64_t *b = &s->v[loc_index(fx[i].location)][fx[i].status];
        *b += fx[i].delta.units; /* all scale 0 here */
        if (*b < 0)
            ok = 0;
    }
    return ok;
}

static void init_m(seq_t *s, size_t i, int type, const char *loc, const char *to, int64_t qty) {
    is_movement_t *m = &s->m[i];
    invsync__v1__movement__init(m);
    invsync__v1__decimal__init(&s->q[i]);
    s->q[i].units = qty;
    snprintf(s->ids[i], sizeof(s->ids[i]), "M%zu", i);
    m->movement_id = s->ids[i];
    m->source_system = "MES";
    m->site = "S";
    m->material = "RM";
    m->lot = "L";
    m->type = type;
    m->location = (char *)loc;
    m->to_location = (char *)(to ? to : "");
    m->uom = "EA";
    m->order_id = type == INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE ? "O1" : "";
    m->quantity = &s->q[i];
    s->pm[i] = m;
}

/* A random sequence that is feasible from the stock `start`. */
static void random_feasible(seq_t *s, stock_t start, unsigned *rng) {
    static const int types[] = {
        INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, INVSYNC__V1__MOVEMENT_TYPE__TRANSFER,
        INVSYNC__V1__MOVEMENT_TYPE__COMPLETION,  INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT,
        INVSYNC__V1__MOVEMENT_TYPE__SCRAP,       INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE,
        INVSYNC__V1__MOVEMENT_TYPE__RELEASE};
    stock_t cur = start;
    s->n = 0;
    size_t want = 2 + rand_r(rng) % (MAXM - 2);
    for (int tries = 0; s->n < want && tries < 1000; tries++) {
        int type = types[rand_r(rng) % 7];
        const char *loc = LOCS[rand_r(rng) % 3];
        const char *to = LOCS[rand_r(rng) % 3];
        if (type == INVSYNC__V1__MOVEMENT_TYPE__TRANSFER && strcmp(loc, to) == 0)
            continue;
        int64_t qty = 1 + rand_r(rng) % 8;
        if (type == INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT && rand_r(rng) % 2)
            qty = -qty;
        init_m(s, s->n, type, loc, to, qty);
        stock_t next = cur;
        if (apply(&next, &s->m[s->n], is_movement_qty(&s->m[s->n]))) {
            cur = next;
            s->n++;
        }
    }
}

static void test_netting_keeps_feasibility_property(void **state) {
    (void)state;
    unsigned rng = 12345;
    size_t merged_total = 0;
    for (int iter = 0; iter < 5000; iter++) {
        seq_t s;
        stock_t start;
        memset(&start, 0, sizeof(start));
        for (int l = 0; l < 3; l++)
            for (int st = 1; st <= 3; st++)
                start.v[l][st] = rand_r(&rng) % 6;
        random_feasible(&s, start, &rng);
        stock_t orig = start, netted = start;
        for (size_t i = 0; i < s.n; i++)
            assert_true(apply(&orig, &s.m[i], is_movement_qty(&s.m[i])));
        netting_t nt;
        assert_int_equal(netting_build(s.pm, s.n, 1, &nt), IS_OK);
        size_t ids = 0;
        for (size_t i = 0; i < nt.n_lines; i++) {
            if (!apply(&netted, nt.lines[i].m, nt.lines[i].quantity))
                fail_msg("iteration %d: netted line %zu of %zu goes negative", iter, i, nt.n_lines);
            ids += nt.lines[i].n_movement_ids;
        }
        assert_memory_equal(&orig, &netted, sizeof(orig));
        assert_true(ids <= s.n);
        merged_total += s.n - nt.n_lines;
        netting_release(&nt);
    }
    assert_true(merged_total > 1000); /* it does net, not just pass everything through */
}

static void test_ten_thousand_issues_one_line(void **state) {
    (void)state;
    enum { N = 10000 };
    is_movement_t *m = calloc(N, sizeof(*m));
    is_movement_t **pm = calloc(N, sizeof(*pm));
    Invsync__V1__Decimal *q = calloc(N, sizeof(*q));
    char(*ids)[16] = calloc(N, sizeof(*ids));
    for (int i = 0; i < N; i++) {
        invsync__v1__movement__init(&m[i]);
        invsync__v1__decimal__init(&q[i]);
        q[i].units = 125; /* 0.125 */
        q[i].scale = 3;
        snprintf(ids[i], sizeof(ids[i]), "GI-%d", i);
        m[i].movement_id = ids[i];
        m[i].site = "S";
        m[i].material = "RM";
        m[i].lot = "L";
        m[i].type = INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE;
        m[i].location = "LINE-1";
        m[i].order_id = "ORD-1";
        m[i].uom = "KG";
        m[i].quantity = &q[i];
        pm[i] = &m[i];
    }
    netting_t nt;
    assert_int_equal(netting_build(pm, N, 1, &nt), IS_OK);
    assert_int_equal(nt.n_lines, 1);
    assert_int_equal(nt.lines[0].n_movement_ids, N);
    assert_int_equal(nt.lines[0].quantity.units, 1250000); /* 1250.000 exactly */
    assert_int_equal(nt.lines[0].quantity.scale, 3);
    assert_string_equal(nt.lines[0].movement_ids[N - 1], "GI-9999");
    netting_release(&nt);
    /* Netting off: one line per movement. */
    assert_int_equal(netting_build(pm, N, 0, &nt), IS_OK);
    assert_int_equal(nt.n_lines, N);
    netting_release(&nt);
    free(m);
    free(pm);
    free(q);
    free(ids);
}

static void test_transfer_stays_before_issue_from_destination(void **state) {
    (void)state;
    seq_t s;
    memset(&s, 0, sizeof(s));
    init_m(&s, 0, INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "B", NULL, 5);
    init_m(&s, 1, INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "A", "B", 10);
    init_m(&s, 2, INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "B", NULL, 12);
    s.n = 3;
    netting_t nt;
    assert_int_equal(netting_build(s.pm, 3, 1, &nt), IS_OK);
    /* The second issue must not move before the transfer that feeds it. */
    assert_int_equal(nt.n_lines, 3);
    assert_string_equal(nt.lines[1].m->movement_id, "M1");
    netting_release(&nt);
}

static void test_adjustments_netting_to_zero_are_dropped(void **state) {
    (void)state;
    seq_t s;
    memset(&s, 0, sizeof(s));
    init_m(&s, 0, INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "A", NULL, 5);
    init_m(&s, 1, INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT, "A", NULL, -5);
    s.n = 2;
    netting_t nt;
    assert_int_equal(netting_build(s.pm, 2, 1, &nt), IS_OK);
    assert_int_equal(nt.n_lines, 0);
    assert_int_equal(nt.n_dropped, 1);
    netting_release(&nt);
}

/* Ten completions of 999,999,999,999 each: the ERP books every one of them
 * (12 integer digits), but not their sum. Netting must not turn postable
 * movements into a refused line: the sum is split into lines it can book,
 * in order, each movement in exactly one. */
static void test_sum_beyond_what_the_erp_books_starts_a_new_line(void **state) {
    (void)state;
    seq_t s;
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; i < 10; i++)
        init_m(&s, i, INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, "A", NULL, 999999999999LL);
    s.n = 10;
    netting_t nt;
    assert_int_equal(netting_build(s.pm, s.n, 1, &nt), IS_OK);
    assert_true(nt.n_lines > 1);
    size_t ids = 0;
    for (size_t l = 0; l < nt.n_lines; l++) {
        assert_true(is_movement_qty_in_range(nt.lines[l].quantity));
        assert_int_equal(nt.lines[l].quantity.units,
                         999999999999LL * (int64_t)nt.lines[l].n_movement_ids);
        for (size_t k = 0; k < nt.lines[l].n_movement_ids; k++, ids++) {
            char want[16];
            snprintf(want, sizeof want, "M%zu", ids);
            assert_string_equal(nt.lines[l].movement_ids[k], want);
        }
    }
    assert_int_equal(ids, 10);
    netting_release(&nt);
}

/* A line carries its first movement's fields: completions of three serial
 * numbers, or issues to two operations, netted into one line would book the
 * first serial (operation) with the others' quantity and lose the rest. */
static void test_serials_and_operations_are_not_netted_together(void **state) {
    (void)state;
    seq_t s;
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; i < 3; i++)
        init_m(&s, i, INVSYNC__V1__MOVEMENT_TYPE__COMPLETION, "A", NULL, 1);
    s.m[0].serial = "SN-0";
    s.m[1].serial = "SN-1";
    s.m[2].serial = "SN-0";
    for (size_t i = 3; i < 6; i++) {
        init_m(&s, i, INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE, "A", NULL, 1);
        s.m[i].operation = i == 5 ? "0020" : "0010";
    }
    s.n = 6;
    netting_t nt;
    assert_int_equal(netting_build(s.pm, s.n, 1, &nt), IS_OK);
    /* SN-0 twice, SN-1, op 0010 twice, op 0020. */
    assert_int_equal(nt.n_lines, 4);
    for (size_t l = 0; l < nt.n_lines; l++) {
        for (size_t k = 0; k < nt.lines[l].n_movement_ids; k++) {
            const is_movement_t *m = s.pm[atoi(nt.lines[l].movement_ids[k] + 1)];
            assert_string_equal(m->serial ? m->serial : "",
                                nt.lines[l].m->serial ? nt.lines[l].m->serial : "");
            assert_string_equal(m->operation ? m->operation : "",
                                nt.lines[l].m->operation ? nt.lines[l].m->operation : "");
        }
    }
    assert_int_equal(nt.lines[0].n_movement_ids, 2);
    assert_int_equal(nt.lines[0].quantity.units, 2);
    netting_release(&nt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netting_keeps_feasibility_property),
        cmocka_unit_test(test_ten_thousand_issues_one_line),
        cmocka_unit_test(test_transfer_stays_before_issue_from_destination),
        cmocka_unit_test(test_adjustments_netting_to_zero_are_dropped),
        cmocka_unit_test(test_sum_beyond_what_the_erp_books_starts_a_new_line),
        cmocka_unit_test(test_serials_and_operations_are_not_netted_together),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
