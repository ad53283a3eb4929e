/*
 * decimal.c — exact decimal arithmetic on (int64 units, uint32 scale) pairs:
 * strict parsing of the text form MES and ERP exchange, formatting that
 * round-trips, rescaling, add/sub/negate/mul and comparison. There is no
 * floating point anywhere; every operation is overflow-checked, using
 * __int128 for intermediate products so that no step can wrap. Inputs are
 * small (one quantity per movement), so clarity wins over speed.
 */
#include <stdint.h>
#include <string.h>

#include "decimal.h"

__extension__ typedef __int128 i128;

#define POW10_MAX 38 /* 10^38 < 2^127 */

/* 10^n for n ≤ POW10_MAX. */
static i128 pow10_i128(uint32_t n) {
    i128 v = 1;
    for (uint32_t i = 0; i < n; i++)
        v *= 10;
    return v;
}

static int fits_int64(i128 v) {
    return v >= (i128)INT64_MIN && v <= (i128)INT64_MAX;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

is_err_t is_decimal_parse(const char *s, size_t len, uint32_t max_scale, is_decimal_t *out,
                          char *errstr, size_t errstr_size) {
    const size_t show = len > 40 ? 40 : len; /* never echo a huge input back */
    size_t i = 0, int_digits = 0, frac_digits = 0;
    int negative = 0;
    uint64_t mag = 0;

    if (max_scale > IS_DECIMAL_MAX_SCALE)
        max_scale = IS_DECIMAL_MAX_SCALE;
    if (!s || len == 0) {
        is_errf(errstr, errstr_size, "empty decimal");
        return IS_ERR_INVALID;
    }
    if (s[0] == '-' || s[0] == '+') {
        negative = s[0] == '-';
        i++;
    }
    /* Shape first: digits+ ( '.' digits+ )? and nothing else. */
    for (size_t j = i; j < len && is_digit(s[j]); j++)
        int_digits++;
    if (i + int_digits < len && s[i + int_digits] == '.') {
        for (size_t j = i + int_digits + 1; j < len && is_digit(s[j]); j++)
            frac_digits++;
        if (i + int_digits + 1 + frac_digits != len || frac_digits == 0 || int_digits == 0)
            goto bad_shape;
    } else if (i + int_digits != len || int_digits == 0) {
        goto bad_shape;
    }
    if (frac_digits > max_scale) {
        is_errf(errstr, errstr_size, "more than %u decimal places", (unsigned)max_scale);
        return IS_ERR_INVALID;
    }
    /* Magnitude of all digits, checked against 2^63 (INT64_MIN's magnitude). */
    for (; i < len; i++) {
        if (s[i] == '.')
            continue;
        unsigned d = (unsigned)(s[i] - '0');
        if (mag > (((uint64_t)1 << 63) - d) / 10)
            goto too_large;
        mag = mag * 10 + d;
    }
    if (!negative && mag > (uint64_t)INT64_MAX)
        goto too_large;
    out->units = negative ? (int64_t)(-(i128)mag) : (int64_t)mag;
    out->scale = (uint32_t)frac_digits;
    return IS_OK;

bad_shape:
    is_errf(errstr, errstr_size,
            "'%.*s' is not a decimal number (expected digits such as \"12.500\")", (int)show, s);
    return IS_ERR_INVALID;
too_large:
    is_errf(errstr, errstr_size, "'%.*s' is too large", (int)show, s);
    return IS_ERR_OVERFLOW;
}

/* Append c at position *n if it fits (leaving room for the NUL); count it regardless. */
static void put(char *buf, size_t buf_size, size_t *n, char c) {
    if (buf && *n + 1 < buf_size)
        buf[*n] = c;
    (*n)++;
}

/*
 * snprintf-like: writes at most buf_size bytes including the NUL and returns
 * the full length of the text, so a return ≥ buf_size means it was cut.
 * Any scale is handled (a Decimal from the wire may carry a silly one).
 */
size_t is_decimal_format(is_decimal_t d, char *buf, size_t buf_size) {
    char digits[20]; /* 2^63 has 19 digits */
    size_t nd = 0, n = 0;
    uint64_t mag = d.units < 0 ? (uint64_t)0 - (uint64_t)d.units : (uint64_t)d.units;

    do {
        digits[nd++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag);
    if (d.units < 0)
        put(buf, buf_size, &n, '-');
    if (d.scale == 0) {
        while (nd)
            put(buf, buf_size, &n, digits[--nd]);
    } else {
        /* Total digits shown: at least scale + 1 (a leading "0."). */
        uint64_t total = nd > (uint64_t)d.scale ? nd : (uint64_t)d.scale + 1;
        for (uint64_t pos = total; pos > 0; pos--) {
            if (pos == d.scale)
                put(buf, buf_size, &n, '.');
            put(buf, buf_size, &n, pos <= nd ? digits[pos - 1] : '0');
        }
    }
    if (buf && buf_size)
        buf[n < buf_size ? n : buf_size - 1] = '\0';
    return n;
}

is_err_t is_decimal_rescale(is_decimal_t d, uint32_t scale, is_decimal_t *out) {
    i128 v = d.units;
    if (scale > IS_DECIMAL_MAX_SCALE)
        return IS_ERR_INVALID;
    if (scale >= d.scale) {
        /* |units| < 2^63 and the factor ≤ 10^18: the product fits i128. */
        v *= pow10_i128(scale - d.scale);
    } else {
        uint32_t diff = d.scale - scale;
        if (diff > 19) {
            if (v != 0) /* |units| < 10^19 cannot be a multiple of 10^20+ */
                return IS_ERR_INVALID;
        } else {
            i128 p = pow10_i128(diff);
            if (v % p != 0)
                return IS_ERR_INVALID;
            v /= p;
        }
    }
    if (!fits_int64(v))
        return IS_ERR_OVERFLOW;
    out->units = (int64_t)v;
    out->scale = scale;
    return IS_OK;
}

/* a.units·10^(s-a.scale) + sign·b.units·10^(s-b.scale) at s = max(scale). */
static is_err_t add_signed(is_decimal_t a, is_decimal_t b, int sign, is_decimal_t *out) {
    uint32_t s = a.scale > b.scale ? a.scale : b.scale;
    i128 v;
    if (s > IS_DECIMAL_MAX_SCALE)
        return IS_ERR_INVALID;
    v = (i128)a.units * pow10_i128(s - a.scale) +
        (i128)sign * (i128)b.units * pow10_i128(s - b.scale);
    if (!fits_int64(v))
        return IS_ERR_OVERFLOW;
    out->units = (int64_t)v;
    out->scale = s;
    return IS_OK;
}

is_err_t is_decimal_add(is_decimal_t a, is_decimal_t b, is_decimal_t *out) {
    return add_signed(a, b, 1, out);
}

is_err_t is_decimal_sub(is_decimal_t a, is_decimal_t b, is_decimal_t *out) {
    return add_signed(a, b, -1, out);
}

is_err_t is_decimal_negate(is_decimal_t d, is_decimal_t *out) {
    if (d.units == INT64_MIN)
        return IS_ERR_OVERFLOW;
    out->units = -d.units;
    out->scale = d.scale;
    return IS_OK;
}

is_err_t is_decimal_mul(is_decimal_t d, is_decimal_t factor, uint32_t max_scale,
                        is_decimal_t *out) {
    i128 v = (i128)d.units * (i128)factor.units; /* < 2^126: cannot overflow */
    uint64_t scale = (uint64_t)d.scale + factor.scale;

    if (max_scale > IS_DECIMAL_MAX_SCALE)
        max_scale = IS_DECIMAL_MAX_SCALE;
    while (scale > max_scale && v % 10 == 0) {
        v /= 10;
        scale--;
    }
    if (scale > max_scale)
        return IS_ERR_INVALID; /* digits would be lost */
    /* Still too big: dropping more trailing zeros keeps the value exact. */
    while (!fits_int64(v) && scale > 0 && v % 10 == 0) {
        v /= 10;
        scale--;
    }
    if (!fits_int64(v))
        return IS_ERR_OVERFLOW;
    out->units = (int64_t)v;
    out->scale = (uint32_t)scale;
    return IS_OK;
}

int is_decimal_sign(is_decimal_t d) {
    return d.units < 0 ? -1 : d.units > 0;
}

int is_decimal_cmp(is_decimal_t a, is_decimal_t b) {
    int sa = is_decimal_sign(a), sb = is_decimal_sign(b);
    if (sa != sb || sa == 0)
        return sa < sb ? -1 : sa > sb;
    if (a.scale == b.scale)
        return a.units < b.units ? -1 : a.units > b.units;
    uint32_t diff = a.scale > b.scale ? a.scale - b.scale : b.scale - a.scale;
    if (diff >= 20) {
        /*
         * |x| < 10^19 / 10^scale, so the operand with 20+ more places is
         * smaller in magnitude than any non-zero value of the other.
         */
        int a_bigger = a.scale < b.scale;
        return (a_bigger ? 1 : -1) * sa;
    }
    /* 2^63 · 10^19 < 2^127: exact. */
    i128 va = (i128)a.units * (a.scale < b.scale ? pow10_i128(diff) : 1);
    i128 vb = (i128)b.units * (b.scale < a.scale ? pow10_i128(diff) : 1);
    return va < vb ? -1 : va > vb;
}

is_decimal_t is_decimal_normalize(is_decimal_t d) {
    while (d.scale > 0 && d.units % 10 == 0) {
        d.units /= 10;
        d.scale--;
    }
    return d;
}
