/*
 * genealogy.h — lot genealogy from movement history (`erp-consumer
 * genealogy`): which lots went into which orders and what came out.
 *
 * The graph has two kinds of node: lots (site, material, lot) and
 * production orders (site, order_id). A GOODS_ISSUE to an order is an edge
 * lot → order ("consumed"); a COMPLETION from an order is an edge order →
 * lot ("produced"). A REVERSAL of either subtracts from its original's edge
 * when it matches that original (is_movement_reversal_check, as the consumer
 * checks it) and is the first REVERSAL of it that does; any other REVERSAL
 * (not matching, a second one, its original not added) undoes nothing and
 * is reported in "ignored_reversals". An edge whose net quantity (per unit)
 * is no longer positive was undone and is not followed. Other movement
 * types carry no genealogy and are ignored.
 *
 *   backward from lot X: the orders that produced X, the lots issued to
 *            those orders, their producing orders, ... (what went into X)
 *   forward from lot Y:  the orders that consumed Y, the lots they
 *            produced, ... (where Y went: a recall's scope)
 *
 * Depth counts lot generations (1 = direct inputs / outputs; 0 = no
 * limit). Cycles (rework: a lot issued to an order that produced it) are
 * visited once.
 *
 * Load: movements are appended in O(1); the graph is sorted once on the
 * first walk (O(e log e)); a walk is O(visited · log e). In memory.
 * Single-threaded.
 */
#ifndef INVSYNC_GENEALOGY_H
#define INVSYNC_GENEALOGY_H

#include <jansson.h>
#include <stdio.h>

#include "error.h"
#include "movement.h"

typedef enum genealogy_dir {
    GENEALOGY_BACKWARD = 1,
    GENEALOGY_FORWARD = 2,
    GENEALOGY_BOTH = 3,
} genealogy_dir_t;

typedef struct genealogy genealogy_t;

is_err_t genealogy_new(genealogy_t **out) IS_MUST_CHECK;
void genealogy_free(genealogy_t *g); /* NULL is a no-op */

/*
 * Add a movement (copied). *used (may be NULL) = 1 when it is an edge, 0
 * when its type carries no genealogy or it has no order_id, or when a
 * movement with the same source_system and movement_id was added before (a
 * copy published again, read from Kafka: it counts once). Adding after a
 * walk is IS_ERR_INVALID. IS_ERR_NOMEM.
 */
is_err_t genealogy_add(genealogy_t *g, const is_movement_t *m, int *used) IS_MUST_CHECK;

/*
 * Walk from every lot node named lot (narrowed by material and site when
 * not NULL). Returns
 *   {"lot","material","site","direction","depth",
 *    "roots":[id...],
 *    "nodes":[{"id","kind":"lot","site","material","lot","level","root"} |
 *             {"id","kind":"order","site","order_id","level"}],
 *    "edges":[{"from","to","kind":"consumed"|"produced","quantity","uom",
 *              "movements":[ids]}],
 *    "inputs":[{"id","generation"}], "outputs":[{"id","generation"}],
 *    "ignored_reversals":[{"movement_id","reverses","reason"}]}
 * where ids are "lot:<site>/<material>/<lot>" and "order:<site>/<order>"
 * with '%' and '/' inside a field written %25 and %2F (one id per node; the
 * node's own fields are unescaped),
 * level is signed edge hops from the root (negative backward) and
 * generation the signed lot generation; ignored_reversals are the
 * REVERSALs that undo nothing (see above) whose lot or order is a node of
 * the result, in the order added. NULL with errstr when no such lot
 * has a GOODS_ISSUE or COMPLETION (IS_ERR_NOT_FOUND in *rc) or on ENOMEM.
 */
json_t *genealogy_walk(genealogy_t *g, const char *lot, const char *material, const char *site,
                       genealogy_dir_t dir, int depth, is_err_t *rc, char *errstr,
                       size_t errstr_size);

/* Graphviz DOT of a walk's result (material flows left to right; roots filled). */
int genealogy_write_dot(const json_t *walk, FILE *f);

/* "backward" | "forward" | "both" → dir; 0 when unknown. */
genealogy_dir_t genealogy_dir_parse(const char *s);

/*
 * `erp-consumer genealogy --config F --lot LOT [--material M] [--site S]
 * [--direction backward|forward|both] [--depth N] [--format json|dot]
 * [--from T1 --to T2]`; argv[0] is "genealogy". History comes from the
 * consumer's store (every movement it received), or with --from/--to from
 * Kafka (replay.h). Exit: 0 ok, 2 bad arguments, 1 lot not found or the
 * store/Kafka failed, 3 the range reaches before the data Kafka keeps.
 */
int genealogy_cli(int argc, char **argv);

#endif
