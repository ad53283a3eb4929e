/*
 * netting.h — turning the movements of one posting into ERP lines.
 *
 * All movements of a posting belong to one lot and come in acceptance order.
 * With netting on (windowed tiers), a movement joins an earlier line with the
 * same key — (type, location, to_location, order, operation, serial, uom,
 * stock statuses, reason code; site/material/lot are the posting's): a line
 * carries its first movement's fields, so movements that differ in any of
 * them never share one — when that cannot make
 * the ERP refuse what the un-netted sequence would accept: moving a movement
 * earlier is safe for the stock it adds to, and for the stock it takes from
 * only when no line in between touches that stock. Otherwise it starts a new
 * line. So 10,000 issues from one location become one line, while a transfer
 * into a location stays before the issues from it. REVERSALs never merge.
 * A line's quantity stays within what the ERP books (fewer than
 * IS_MOVEMENT_MAX_QTY_DIGITS integer digits, as each movement's): a movement
 * that would take it beyond starts a new line. A line whose net quantity is
 * zero (ADJUSTMENT +5 then -5) is dropped; its movements are still recorded
 * with the posting.
 *
 * With netting off (immediate tiers), one line per movement.
 */
#ifndef INVSYNC_NETTING_H
#define INVSYNC_NETTING_H

#include <stddef.h>

#include "erp.h"

typedef struct netting {
    erp_line_t *lines; /* in posting order */
    size_t n_lines;
    size_t n_dropped; /* lines netted to zero, not sent */
    const char **ids; /* backing store of the lines' movement_ids */
} netting_t;

/* Build lines for ms[0..n). Borrowed movements must outlive out. */
is_err_t netting_build(is_movement_t *const *ms, size_t n, int net, netting_t *out) IS_MUST_CHECK;
void netting_release(netting_t *n);

#endif
