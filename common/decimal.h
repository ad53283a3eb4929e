/*
 * decimal.h — exact decimal quantities: value = units / 10^scale.
 *
 * Quantities are never binary floats. The text form is what MES and ERP
 * exchange: an optional '-' or '+', digits, optionally '.' and digits
 * ("12.500", "-3", "0.001"). Exponents, NaN, Infinity, leading/trailing
 * spaces, a bare "." or ".5"/"5." are rejected. The scale of the text is kept
 * (12.500 has scale 3), so formatting round-trips.
 */
#ifndef INVSYNC_DECIMAL_H
#define INVSYNC_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define IS_DECIMAL_MAX_SCALE 18
#define IS_DECIMAL_STRLEN    48 /* enough for any formatted decimal + NUL */

typedef struct is_decimal {
    int64_t units;  /* value × 10^scale */
    uint32_t scale; /* digits after the point, ≤ IS_DECIMAL_MAX_SCALE */
} is_decimal_t;

/*
 * Parse s (len bytes, need not be NUL-terminated). More than max_scale
 * fractional digits is IS_ERR_INVALID ("more than N decimal places");
 * a value that does not fit int64 units is IS_ERR_OVERFLOW. errstr says why.
 */
is_err_t is_decimal_parse(const char *s, size_t len, uint32_t max_scale, is_decimal_t *out,
                          char *errstr, size_t errstr_size) IS_MUST_CHECK;
/* Format into buf (IS_DECIMAL_STRLEN bytes). Returns the length. */
size_t is_decimal_format(is_decimal_t d, char *buf, size_t buf_size);
/* Exact rescale; IS_ERR_INVALID if digits would be lost, IS_ERR_OVERFLOW. */
is_err_t is_decimal_rescale(is_decimal_t d, uint32_t scale, is_decimal_t *out) IS_MUST_CHECK;
/* a + b at max(scale); IS_ERR_OVERFLOW when it does not fit. */
is_err_t is_decimal_add(is_decimal_t a, is_decimal_t b, is_decimal_t *out) IS_MUST_CHECK;
/* a - b. */
is_err_t is_decimal_sub(is_decimal_t a, is_decimal_t b, is_decimal_t *out) IS_MUST_CHECK;
/* -d; IS_ERR_OVERFLOW for INT64_MIN units. */
is_err_t is_decimal_negate(is_decimal_t d, is_decimal_t *out) IS_MUST_CHECK;
/* d × factor (both exact), result scale = d.scale + factor.scale, then
 * reduced to at most max_scale if that loses nothing (else IS_ERR_INVALID). */
is_err_t is_decimal_mul(is_decimal_t d, is_decimal_t factor, uint32_t max_scale,
                        is_decimal_t *out) IS_MUST_CHECK;
/* <0, 0, >0 — exact across scales (1.50 == 1.5). */
int is_decimal_cmp(is_decimal_t a, is_decimal_t b);
/* -1, 0, 1 */
int is_decimal_sign(is_decimal_t d);
/* Remove trailing fractional zeros (1.500 → 1.5). */
is_decimal_t is_decimal_normalize(is_decimal_t d);

#endif
