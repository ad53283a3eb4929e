/*
 * test_genealogy.c — the lot/order graph: backward and forward walks to any
 * depth, depth limits, reversals undoing an edge, rework cycles, roots
 * narrowed by material, unknown lots, and the DOT rendering.
 *
 * The plant used by most tests (site P1):
 *
 *   RM-1/A ─┐                       ┌─ FG-1/X ─┐
 *   RM-2/B ─┼─▶ ORD-1 (mixing) ─────┘          ├─▶ ORD-2 (packing) ─▶ PK-1/Y
 *   RM-3/D ─┘  (issue reversed)     PKG-1/C ───┘
 *   RM-1/A ───▶ ORD-3 ─▶ FG-2/Z                    (A also went into Z)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genealogy.h"

/* A movement at site P1, LINE-1, in KG; a REVERSAL names the movement it
 * reverses (reverses) and may differ from it in location. */
static void add_at(genealogy_t *g, const char *id, int type, const char *material, const char *lot,
                   const char *order, int64_t units, int reversed_type, const char *reverses,
                   const char *location) {
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    int used = -1;
    q.units = units;
    m.movement_id = (char *)id;
    m.source_system = "MES";
    m.site = "P1";
    m.type = type;
    m.reversed_type = reversed_type;
    m.reverses_movement_id = (char *)reverses;
    m.material = (char *)material;
    m.lot = (char *)lot;
    m.location = (char *)location;
    m.uom = "KG";
    m.order_id = (char *)order;
    m.quantity = &q;
    assert_int_equal(genealogy_add(g, &m, &used), IS_OK);
    assert_int_equal(used, order[0] != '\0' && (type == INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE ||
                                                type == INVSYNC__V1__MOVEMENT_TYPE__COMPLETION ||
                                                type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL));
}

static void add(genealogy_t *g, const char *id, int type, const char *material, const char *lot,
                const char *order, int64_t units, int reversed_type) {
    add_at(g, id, type, material, lot, order, units, reversed_type, NULL, "LINE-1");
}

#define GI INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE
#define CO INVSYNC__V1__MOVEMENT_TYPE__COMPLETION
#define RV INVSYNC__V1__MOVEMENT_TYPE__REVERSAL

/* A REVERSAL of GOODS_ISSUE reverses, at location. */
static void add_rv(genealogy_t *g, const char *id, const char *reverses, const char *material,
                   const char *lot, const char *order, int64_t units, const char *location) {
    add_at(g, id, RV, material, lot, order, units, GI, reverses, location);
}

static int setup(void **state) {
    genealogy_t *g = NULL;
    assert_int_equal(genealogy_new(&g), IS_OK);
    add(g, "M1", GI, "RM-1", "A", "ORD-1", 10, 0);
    add(g, "M2", GI, "RM-2", "B", "ORD-1", 5, 0);
    add(g, "M3", GI, "RM-3", "D", "ORD-1", 7, 0);
    add_rv(g, "M4", "M3", "RM-3", "D", "ORD-1", 7, "LINE-1"); /* D was issued by mistake */
    add(g, "M5", CO, "FG-1", "X", "ORD-1", 12, 0);
    add(g, "M6", GI, "FG-1", "X", "ORD-2", 12, 0);
    add(g, "M7", GI, "PKG-1", "C", "ORD-2", 4, 0);
    add(g, "M8", CO, "PK-1", "Y", "ORD-2", 16, 0);
    add(g, "M9", GI, "RM-1", "A", "ORD-3", 3, 0);
    add(g, "M10", CO, "FG-2", "Z", "ORD-3", 3, 0);
    add(g, "M11", INVSYNC__V1__MOVEMENT_TYPE__TRANSFER, "RM-1", "A", "", 1, 0); /* no genealogy */
    add(g, "M12", GI, "RM-1", "A", "ORD-1", 2, 0); /* a second issue: same edge, summed */
    *state = g;
    return 0;
}

static int teardown(void **state) {
    genealogy_free(*state);
    return 0;
}

/* The lot ids of a walk's "inputs" or "outputs", sorted, as "id@generation;...". */
static void lots_of(const json_t *doc, const char *list, char *out, size_t size) {
    size_t i, n = 0;
    json_t *v;
    const char *items[64];
    char tmp[128];
    out[0] = '\0';
    json_array_foreach(json_object_get(doc, list), i, v) {
        items[n++] = json_string_value(json_object_get(v, "id"));
    }
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++)
            if (strcmp(items[a], items[b]) > 0) {
                const char *t = items[a];
                items[a] = items[b];
                items[b] = t;
            }
    for (size_t a = 0; a < n; a++) {
        json_array_foreach(json_object_get(doc, list), i, v) {
            if (strcmp(json_string_value(json_object_get(v, "id")), items[a]) == 0)
                snprintf(tmp, sizeof(tmp), "%s@%d;", items[a],
                         (int)json_integer_value(json_object_get(v, "generation")));
        }
        strncat(out, tmp, size - strlen(out) - 1);
    }
}

static json_t *walk(genealogy_t *g, const char *lot, const char *material, genealogy_dir_t dir,
                    int depth) {
    char errstr[256];
    is_err_t rc;
    json_t *doc = genealogy_walk(g, lot, material, NULL, dir, depth, &rc, errstr, sizeof(errstr));
    assert_non_null(doc);
    assert_int_equal(rc, IS_OK);
    return doc;
}

static const struct {
    const char *name, *lot;
    genealogy_dir_t dir;
    int depth;
    const char *inputs, *outputs;
} walks[] = {
    {"backward from X: its inputs, not the reversed D", "X", GENEALOGY_BACKWARD, 0,
     "lot:P1/RM-1/A@-1;lot:P1/RM-2/B@-1;", ""},
    {"backward from Y to any depth", "Y", GENEALOGY_BACKWARD, 0,
     "lot:P1/FG-1/X@-1;lot:P1/PKG-1/C@-1;lot:P1/RM-1/A@-2;lot:P1/RM-2/B@-2;", ""},
    {"backward from Y, one generation", "Y", GENEALOGY_BACKWARD, 1,
     "lot:P1/FG-1/X@-1;lot:P1/PKG-1/C@-1;", ""},
    {"forward from A: the recall scope", "A", GENEALOGY_FORWARD, 0, "",
     "lot:P1/FG-1/X@1;lot:P1/FG-2/Z@1;lot:P1/PK-1/Y@2;"},
    {"forward from A, one generation", "A", GENEALOGY_FORWARD, 1, "",
     "lot:P1/FG-1/X@1;lot:P1/FG-2/Z@1;"},
    {"forward from the reversed D: nothing", "D", GENEALOGY_FORWARD, 0, "", ""},
    {"both ways from X", "X", GENEALOGY_BOTH, 0, "lot:P1/RM-1/A@-1;lot:P1/RM-2/B@-1;",
     "lot:P1/PK-1/Y@1;"},
    {"a raw material has no inputs", "A", GENEALOGY_BACKWARD, 0, "", ""},
};

static void test_walks(void **state) {
    genealogy_t *g = *state;
    for (size_t i = 0; i < sizeof(walks) / sizeof(walks[0]); i++) {
        char in[1024], out[1024];
        json_t *doc = walk(g, walks[i].lot, NULL, walks[i].dir, walks[i].depth);
        lots_of(doc, "inputs", in, sizeof(in));
        lots_of(doc, "outputs", out, sizeof(out));
        print_message("%s: inputs %s outputs %s\n", walks[i].name, in, out);
        assert_string_equal(in, walks[i].inputs);
        assert_string_equal(out, walks[i].outputs);
        json_decref(doc);
    }
}

static void test_edges_carry_net_quantities_and_movements(void **state) {
    genealogy_t *g = *state;
    json_t *doc = walk(g, "X", NULL, GENEALOGY_BACKWARD, 0), *e;
    size_t i;
    int seen_a = 0;
    assert_int_equal(json_array_size(json_object_get(doc, "roots")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(doc, "roots"), 0)),
                        "lot:P1/FG-1/X");
    json_array_foreach(json_object_get(doc, "edges"), i, e) {
        const char *from = json_string_value(json_object_get(e, "from"));
        assert_null(strstr(from, "RM-3")); /* the reversed issue is not followed */
        if (strcmp(from, "lot:P1/RM-1/A") == 0) {
            seen_a = 1;
            assert_string_equal(json_string_value(json_object_get(e, "quantity")), "12");
            assert_string_equal(json_string_value(json_object_get(e, "kind")), "consumed");
            assert_int_equal(json_array_size(json_object_get(e, "movements")), 2);
        }
    }
    assert_true(seen_a);
    json_decref(doc);
}

/* Read from Kafka after `mes-producer republish`, a movement comes twice (its
 * first copy and the one published again): it counts once, by source_system
 * and movement_id (the store's dedup key). Another source's same id is another
 * movement. 300 issues, each added twice, also grow the id table. */
static void test_a_movement_read_twice_counts_once(void **state) {
    (void)state;
    genealogy_t *g = NULL;
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    char id[32];
    int used = -1;
    assert_int_equal(genealogy_new(&g), IS_OK);
    q.units = 2;
    m.source_system = "MES";
    m.site = "P1";
    m.type = GI;
    m.material = "RM-1";
    m.lot = "A";
    m.location = "LINE-1";
    m.uom = "KG";
    m.order_id = "ORD-1";
    m.quantity = &q;
    m.movement_id = id;
    for (int copy = 0; copy < 2; copy++) {
        for (int i = 0; i < 300; i++) {
            snprintf(id, sizeof(id), "GI-%d", i);
            assert_int_equal(genealogy_add(g, &m, &used), IS_OK);
            assert_int_equal(used, copy == 0);
        }
    }
    m.source_system = "MES-2"; /* GI-0 of another source: another movement */
    snprintf(id, sizeof(id), "GI-0");
    assert_int_equal(genealogy_add(g, &m, &used), IS_OK);
    assert_int_equal(used, 1);
    add(g, "CO-1", CO, "FG-1", "X", "ORD-1", 600, 0);
    m.source_system = "MES"; /* CO-1's republished copy */
    snprintf(id, sizeof(id), "CO-1");
    m.type = CO;
    m.material = "FG-1";
    m.lot = "X";
    q.units = 600;
    assert_int_equal(genealogy_add(g, &m, &used), IS_OK);
    assert_int_equal(used, 0);
    json_t *doc = walk(g, "X", NULL, GENEALOGY_BACKWARD, 0), *e;
    size_t i;
    json_array_foreach(json_object_get(doc, "edges"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "from")), "lot:P1/RM-1/A") == 0) {
            assert_string_equal(json_string_value(json_object_get(e, "quantity")), "602");
            assert_int_equal(json_array_size(json_object_get(e, "movements")), 301);
        } else {
            assert_string_equal(json_string_value(json_object_get(e, "quantity")), "600");
            assert_int_equal(json_array_size(json_object_get(e, "movements")), 1);
        }
    }
    assert_int_equal(json_array_size(json_object_get(doc, "edges")), 2);
    json_decref(doc);
    genealogy_free(g);
}

/* The net quantity of the edge from lot:P1/<material>/<lot> in a walk ("" when not followed). */
static const char *edge_qty(const json_t *doc, const char *from) {
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "edges"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "from")), from) == 0)
            return json_string_value(json_object_get(e, "quantity"));
    }
    return "";
}

/*
 * Read from Kafka there is no posting state: a REVERSAL the consumer failed
 * as not matching its original (and an operator skipped) is on the topic
 * like any other. RV-G1 was sent before G1 and names another location: the
 * ERP booked G1, so R1 went into FG-G. It used to cancel G1's edge anyway —
 * FG-G had no inputs and a recall of R1 missed FG-G. It undoes nothing now
 * and is reported; a REVERSAL that matches its original still undoes it,
 * even read before it.
 */
static void test_a_reversal_that_does_not_match_its_original_undoes_nothing(void **state) {
    (void)state;
    genealogy_t *g = NULL;
    char in[256], out[256];
    json_t *doc, *ig;
    assert_int_equal(genealogy_new(&g), IS_OK);
    add_rv(g, "RV-G1", "G1", "RM-1", "R1", "ORD-G", 7, "LINE-2");
    add(g, "G1", GI, "RM-1", "R1", "ORD-G", 7, 0);
    add_rv(g, "RV-G2", "G2", "RM-2", "R2", "ORD-G", 3, "LINE-1"); /* matches: R2 not used */
    add(g, "G2", GI, "RM-2", "R2", "ORD-G", 3, 0);
    add(g, "C1", CO, "FG-1", "FG-G", "ORD-G", 10, 0);
    doc = walk(g, "FG-G", NULL, GENEALOGY_BACKWARD, 0);
    lots_of(doc, "inputs", in, sizeof(in));
    assert_string_equal(in, "lot:P1/RM-1/R1@-1;");
    assert_string_equal(edge_qty(doc, "lot:P1/RM-1/R1"), "7");
    ig = json_object_get(doc, "ignored_reversals");
    assert_int_equal(json_array_size(ig), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ig, 0), "movement_id")),
                        "RV-G1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ig, 0), "reverses")),
                        "G1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ig, 0), "reason")),
                        "reversal does not match G1: location is LINE-2, the original's is LINE-1");
    json_decref(doc);
    doc = walk(g, "R1", NULL, GENEALOGY_FORWARD, 0);
    lots_of(doc, "outputs", out, sizeof(out));
    assert_string_equal(out, "lot:P1/FG-1/FG-G@1;");
    json_decref(doc);
    doc = walk(g, "R2", NULL, GENEALOGY_FORWARD, 0);
    lots_of(doc, "outputs", out, sizeof(out));
    assert_string_equal(out, "");
    json_decref(doc);
    genealogy_free(g);
}

/*
 * A movement is reversed once (the consumer refuses a second REVERSAL), and
 * a REVERSAL whose original is not in the history read (older than --from)
 * cannot be checked: neither subtracts from the issues read with it. A
 * REVERSAL that does not match does not stop a later one that does.
 */
static void test_only_the_first_matching_reversal_of_a_movement_counts(void **state) {
    (void)state;
    genealogy_t *g = NULL;
    json_t *doc, *ig;
    size_t i;
    json_t *v;
    char ids[256] = "";
    assert_int_equal(genealogy_new(&g), IS_OK);
    add(g, "G3", GI, "RM-1", "A", "ORD-R", 7, 0);
    add(g, "G4", GI, "RM-1", "A", "ORD-R", 5, 0);
    add_rv(g, "RV-G3a", "G3", "RM-1", "A", "ORD-R", 7, "LINE-1");
    add_rv(g, "RV-G3b", "G3", "RM-1", "A", "ORD-R", 7, "LINE-1"); /* refused: G3 is reversed */
    add_rv(g, "RV-G0", "G0", "RM-1", "A", "ORD-R", 5, "LINE-1");  /* G0 was not read */
    add(g, "G5", GI, "RM-2", "B", "ORD-R", 4, 0);
    add_rv(g, "RV-G5a", "G5", "RM-2", "B", "ORD-R", 4, "LINE-9"); /* does not match */
    add_rv(g, "RV-G5b", "G5", "RM-2", "B", "ORD-R", 4, "LINE-1"); /* matches: counts */
    add(g, "C2", CO, "FG-1", "Q", "ORD-R", 5, 0);
    doc = walk(g, "Q", NULL, GENEALOGY_BACKWARD, 0);
    assert_string_equal(edge_qty(doc, "lot:P1/RM-1/A"), "5"); /* G4 */
    assert_string_equal(edge_qty(doc, "lot:P1/RM-2/B"), "");
    ig = json_object_get(doc, "ignored_reversals");
    json_array_foreach(ig, i, v) {
        strcat(ids, json_string_value(json_object_get(v, "movement_id")));
        strcat(ids, ";");
    }
    assert_string_equal(ids, "RV-G3b;RV-G0;RV-G5a;");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ig, 0), "reason")),
                        "reversal refused: reverses G3, which RV-G3a already reverses");
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(ig, 1), "reason")),
                           "reversal of G0 ignored"));
    json_decref(doc);
    genealogy_free(g);
}

static void test_rework_cycle_terminates(void **state) {
    (void)state;
    genealogy_t *g = NULL;
    assert_int_equal(genealogy_new(&g), IS_OK);
    add(g, "R1", GI, "FG-1", "R", "ORD-RW", 5, 0);
    add(g, "R2", CO, "FG-1", "R", "ORD-RW", 5, 0);
    add(g, "R3", GI, "RM-1", "S", "ORD-RW", 1, 0);
    json_t *doc = walk(g, "R", NULL, GENEALOGY_BOTH, 0);
    char in[256];
    lots_of(doc, "inputs", in, sizeof(in));
    assert_string_equal(in, "lot:P1/RM-1/S@-1;");
    assert_int_equal(json_array_size(json_object_get(doc, "nodes")), 3);
    json_decref(doc);
    genealogy_free(g);
}

static void test_material_narrows_the_roots(void **state) {
    (void)state;
    genealogy_t *g = NULL;
    assert_int_equal(genealogy_new(&g), IS_OK);
    add(g, "N1", CO, "FG-1", "L1", "ORD-A", 1, 0);
    add(g, "N2", CO, "FG-2", "L1", "ORD-B", 1, 0);
    json_t *doc = walk(g, "L1", NULL, GENEALOGY_BACKWARD, 0);
    assert_int_equal(json_array_size(json_object_get(doc, "roots")), 2);
    json_decref(doc);
    doc = walk(g, "L1", "FG-2", GENEALOGY_BACKWARD, 0);
    assert_int_equal(json_array_size(json_object_get(doc, "roots")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(doc, "roots"), 0)),
                        "lot:P1/FG-2/L1");
    json_decref(doc);
    genealogy_free(g);
}

static void test_unknown_lot_and_late_add(void **state) {
    genealogy_t *g = *state;
    char errstr[256];
    is_err_t rc;
    assert_null(
        genealogy_walk(g, "NOPE", NULL, NULL, GENEALOGY_BACKWARD, 0, &rc, errstr, sizeof(errstr)));
    assert_int_equal(rc, IS_ERR_NOT_FOUND);
    assert_non_null(strstr(errstr, "lot 'NOPE'"));
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    assert_int_equal(genealogy_add(g, &m, NULL), IS_ERR_INVALID); /* the graph is built */
}

/* Ids join their fields with '/': a '/' (or the escape character '%') inside
 * a material or lot is escaped, so material "A/B" lot "C" and material "A"
 * lot "B/C" stay two nodes with two ids. */
static void test_ids_escape_slash_so_lots_do_not_merge(void **state) {
    genealogy_t *g = NULL;
    size_t i;
    json_t *n;
    (void)state;
    assert_int_equal(genealogy_new(&g), IS_OK);
    add(g, "S1", GI, "A/B", "C", "ORD/1", 1, 0);
    add(g, "S2", GI, "A", "B/C", "ORD/1", 2, 0);
    add(g, "S3", GI, "A%2FB", "C", "ORD/1", 4, 0); /* already looks escaped */
    add(g, "S4", CO, "FG-1", "X", "ORD/1", 7, 0);
    json_t *doc = walk(g, "X", NULL, GENEALOGY_BACKWARD, 0);
    char in[512];
    lots_of(doc, "inputs", in, sizeof(in));
    assert_string_equal(in, "lot:P1/A%252FB/C@-1;lot:P1/A%2FB/C@-1;lot:P1/A/B%2FC@-1;");
    assert_int_equal(json_array_size(json_object_get(doc, "edges")), 4);
    json_array_foreach(json_object_get(doc, "nodes"), i, n) {
        /* The fields themselves stay as the MES sent them. */
        if (strcmp(json_string_value(json_object_get(n, "id")), "lot:P1/A/B%2FC") == 0)
            assert_string_equal(json_string_value(json_object_get(n, "lot")), "B/C");
        if (strcmp(json_string_value(json_object_get(n, "kind")), "order") == 0)
            assert_string_equal(json_string_value(json_object_get(n, "id")), "order:P1/ORD%2F1");
    }
    json_decref(doc);
    genealogy_free(g);
}

static void test_dot_output(void **state) {
    genealogy_t *g = NULL;
    char path[] = "/tmp/test_genealogy.XXXXXX", text[4096];
    (void)state;
    assert_int_equal(genealogy_new(&g), IS_OK);
    add(g, "Q1", GI, "RM-\"1\"", "A", "ORD-1", 10, 0);
    add(g, "Q2", CO, "FG-1", "X", "ORD-1", 10, 0);
    json_t *doc = walk(g, "X", NULL, GENEALOGY_BACKWARD, 0);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    assert_int_equal(genealogy_write_dot(doc, f), 0);
    rewind(f);
    text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
    fclose(f);
    remove(path);
    print_message("%s", text);
    assert_true(strncmp(text, "digraph genealogy {", 19) == 0);
    assert_non_null(strstr(text, "\"lot:P1/FG-1/X\" [shape=box, label=\"FG-1\\nX\\n(P1)\", "
                                 "style=filled"));
    assert_non_null(strstr(text, "\"order:P1/ORD-1\" [shape=ellipse"));
    assert_non_null(
        strstr(text, "\"lot:P1/RM-\\\"1\\\"/A\" -> \"order:P1/ORD-1\" [label=\"10 KG\"]"));
    assert_non_null(strstr(text, "\"order:P1/ORD-1\" -> \"lot:P1/FG-1/X\""));
    json_decref(doc);
    genealogy_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_walks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edges_carry_net_quantities_and_movements, setup,
                                        teardown),
        cmocka_unit_test(test_rework_cycle_terminates),
        cmocka_unit_test(test_a_reversal_that_does_not_match_its_original_undoes_nothing),
        cmocka_unit_test(test_only_the_first_matching_reversal_of_a_movement_counts),
        cmocka_unit_test(test_a_movement_read_twice_counts_once),
        cmocka_unit_test(test_material_narrows_the_roots),
        cmocka_unit_test(test_ids_escape_slash_so_lots_do_not_merge),
        cmocka_unit_test_setup_teardown(test_unknown_lot_and_late_add, setup, teardown),
        cmocka_unit_test(test_dot_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
