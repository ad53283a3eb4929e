/*
 * uom.h — unit-of-measure conversion from MES units to ERP units, applied
 * before posting.
 *
 * A CSV file (uom.conversions): header `mes_uom,erp_uom,factor[,material]`;
 * erp quantity = mes quantity × factor, exactly (factor is a decimal such as
 * 0.001). A row with a material applies to that material only and wins over
 * a row without one. When a table is configured, a movement whose unit has
 * no row is a permanent error naming the unit (and material); with no table
 * configured units pass through unchanged.
 *
 * @locality immutable after load; any thread.
 */
#ifndef INVSYNC_UOM_H
#define INVSYNC_UOM_H

#include <stddef.h>

#include "decimal.h"
#include "error.h"
#include "movement.h"

typedef struct uom_table uom_table_t;

/* Load the CSV; errors name the file, line and bad value. */
is_err_t uom_load(const char *path, uom_table_t **out, char *errstr,
                  size_t errstr_size) IS_MUST_CHECK;
void uom_free(uom_table_t *t); /* NULL is a no-op */

/*
 * Rewrite m's quantity and uom into the ERP's unit, in place (m must own its
 * strings: decoded with protobuf-c's default allocator). IS_ERR_PERMANENT
 * with errstr when no conversion exists or the result does not fit.
 */
is_err_t uom_convert(const uom_table_t *t, is_movement_t *m, char *errstr,
                     size_t errstr_size) IS_MUST_CHECK;

#endif
