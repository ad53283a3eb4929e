/*
 * reconcile_input.c — reconcile_load_file: on-hand snapshots, unit factors
 * and the consumer's uom.conversions, from CSV or a JSON array of objects
 * (the formats are in reconcile.h). Rows go in through reconcile_add_row,
 * reconcile_add_factor and reconcile_add_conversion.
 *
 * Load: the whole file is read into memory once (at most 1 GiB) and split
 * in place.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile.h"

#define MAX_FILE_BYTES (1LL << 30) /* a snapshot larger than 1 GiB is a mistake */
#define MAX_COLS       64

static is_err_t read_all(const char *path, char **out, size_t *len, char *errstr,
                         size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    if (!f) {
        is_errf(errstr, errstr_size, "cannot open '%s': %s", path, strerror(errno));
        return IS_ERR_IO;
    }
    for (;;) {
        if (cap - n < 65536) {
            char *grown;
            cap = cap ? cap * 2 : 131072;
            if ((long long)cap > MAX_FILE_BYTES + 1 || !(grown = realloc(buf, cap + 1))) {
                is_errf(errstr, errstr_size, "'%s' is larger than 1 GiB or memory ran out", path);
                free(buf);
                fclose(f);
                return IS_ERR_TOO_LARGE;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        is_errf(errstr, errstr_size, "cannot read '%s'", path);
        free(buf);
        fclose(f);
        return IS_ERR_IO;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return IS_OK;
}

/* Split one CSV line in place; quoted fields are unescaped. Returns field count or -1. */
static int split_csv(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *start;
        if (n == max)
            return -1;
        if (*p == '"') {
            char *w = ++p;
            start = w;
            for (;;) {
                if (*p == '\0')
                    return -1; /* unterminated quote */
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            if (*p != ',' && *p != '\0')
                return -1;
            *w = '\0';
        } else {
            char *end;
            start = p + strspn(p, " \t");
            while (*p && *p != ',')
                p++;
            for (end = p; end > start && (end[-1] == ' ' || end[-1] == '\t'); end--)
                ;
            if (*p == '\0') {
                *end = '\0';
                fields[n++] = start;
                break;
            }
            *p++ = '\0';
            *end = '\0';
            fields[n++] = start;
            continue;
        }
        fields[n++] = start;
        if (*p == '\0')
            break;
        *p++ = '\0';
    }
    return n;
}

static int parse_status(const char *s) {
    char up[48];
    size_t i;
    if (!s || !*s)
        return INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
    for (i = 0; s[i] && i < sizeof(up) - 1; i++)
        up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    up[i] = '\0';
    return is_stock_status_parse(up);
}

static const char *const row_cols[] = {"site",         "material", "lot",     "location",
                                       "stock_status", "uom",      "quantity"};
static const char *const factor_cols[] = {"from_uom", "to_uom", "factor", "material"};
static const char *const conversion_cols[] = {"mes_uom", "erp_uom", "factor", "material"};

/*
 * The length of qs without the trailing zeros of its fraction ("54.000" → "54"),
 * so that an exact value written with more zeros than IS_DECIMAL_MAX_SCALE
 * places (or than int64 units hold) still parses; a non-zero digit beyond the
 * limit is still refused by the parser. Only a plain [+-]digits.digits is
 * trimmed: anything else is left for the parser to name.
 */
static size_t trimmed_len(const char *qs) {
    size_t len = strlen(qs), i = qs[0] == '-' || qs[0] == '+', dot;
    size_t int_digits = strspn(qs + i, "0123456789");
    dot = i + int_digits;
    if (int_digits == 0 || qs[dot] != '.' || dot + 1 == len ||
        strspn(qs + dot + 1, "0123456789") != len - dot - 1)
        return len;
    while (len > dot + 1 && qs[len - 1] == '0')
        len--;
    return len == dot + 1 ? dot : len;
}

/* One row's values (in row_cols / factor_cols order) into r. */
static is_err_t take_values(reconcile_t *r, int side, const char *const *v, const char *where,
                            char *errstr, size_t errstr_size) {
    char why[160];
    is_decimal_t q;
    const char *qs = side < 0 ? v[2] : v[6];
    if (is_decimal_parse(qs, trimmed_len(qs), IS_DECIMAL_MAX_SCALE, &q, why, sizeof(why)) !=
        IS_OK) {
        is_errf(errstr, errstr_size, "%s: %s '%s': %s", where, side < 0 ? "factor" : "quantity", qs,
                why);
        return IS_ERR_INVALID;
    }
    if (side < 0) {
        if (!*v[0] || !*v[1] || is_decimal_sign(q) <= 0) {
            is_errf(errstr, errstr_size,
                    "%s: a factor needs from_uom, to_uom and a factor greater than zero", where);
            return IS_ERR_INVALID;
        }
        return side == RECONCILE_FILE_CONVERSIONS ? reconcile_add_conversion(r, v[3], v[0], v[1], q)
                                                  : reconcile_add_factor(r, v[3], v[0], v[1], q);
    }
    for (int k = 0; k < 6; k++) {
        if (k != 4 && !*v[k]) {
            is_errf(errstr, errstr_size, "%s: '%s' is empty", where, row_cols[k]);
            return IS_ERR_INVALID;
        }
    }
    int status = parse_status(v[4]);
    if (status == 0) {
        is_errf(errstr, errstr_size,
                "%s: unknown stock_status '%s' (UNRESTRICTED, QUALITY or BLOCKED)", where, v[4]);
        return IS_ERR_INVALID;
    }
    return reconcile_add_row(r, (reconcile_side_t)side, v[0], v[1], v[2], v[3], status, v[5], q);
}

static const char *header_of(int side) {
    return side == RECONCILE_FILE_CONVERSIONS ? "mes_uom,erp_uom,factor[,material]"
           : side < 0                         ? "from_uom,to_uom,factor[,material]"
                      : "site,material,lot,location,stock_status,uom,quantity";
}

static is_err_t load_json_rows(reconcile_t *r, int side, const char *path, const char *text,
                               char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr), *row;
    const char *const *cols = side == RECONCILE_FILE_CONVERSIONS ? conversion_cols
                              : side < 0                         ? factor_cols
                                                                 : row_cols;
    size_t n_cols = side < 0 ? 4 : 7, i;
    is_err_t rc = IS_OK;
    if (!doc || !json_is_array(doc)) {
        is_errf(errstr, errstr_size, "%s:%d: %s", path, doc ? 1 : jerr.line,
                doc ? "expected a JSON array of rows" : jerr.text);
        json_decref(doc);
        return IS_ERR_INVALID;
    }
    json_array_foreach(doc, i, row) {
        const char *v[7];
        char where[300];
        snprintf(where, sizeof(where), "%s: row %zu", path, i + 1);
        if (!json_is_object(row)) {
            is_errf(errstr, errstr_size, "%s: expected an object with the keys %s", where,
                    header_of(side));
            rc = IS_ERR_INVALID;
            break;
        }
        for (size_t k = 0; k < n_cols && rc == IS_OK; k++) {
            json_t *val = json_object_get(row, cols[k]);
            v[k] = json_is_string(val) ? json_string_value(val) : "";
            if (val && !json_is_string(val) && !json_is_null(val)) {
                is_errf(errstr, errstr_size, "%s: '%s' must be a string (quantities as \"12.5\")",
                        where, cols[k]);
                rc = IS_ERR_INVALID;
            }
        }
        if (rc == IS_OK)
            rc = take_values(r, side, v, where, errstr, errstr_size);
        if (rc != IS_OK)
            break;
    }
    json_decref(doc);
    return rc;
}

is_err_t reconcile_load_file(reconcile_t *r, int side, const char *path, char *errstr,
                             size_t errstr_size) {
    char *text = NULL, *p, *line;
    size_t len = 0, lineno = 0;
    const char *const *cols = side == RECONCILE_FILE_CONVERSIONS ? conversion_cols
                              : side < 0                         ? factor_cols
                                                                 : row_cols;
    size_t n_cols = side < 0 ? 4 : 7, n_required = side < 0 ? 3 : 7;
    int idx[7], have_header = 0, header_fields = 0;
    is_err_t rc = read_all(path, &text, &len, errstr, errstr_size);
    if (rc != IS_OK)
        return rc;
    /* The parsers below read C strings: a NUL would end the file there and
     * silently drop every row after it (a damaged or UTF-16 export). */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        for (const char *c = text; c < nul; c++)
            lineno += *c == '\n';
        is_errf(errstr, errstr_size,
                "%s:%zu: a NUL byte at offset %zu: not a text snapshot (a damaged file, or "
                "UTF-16: export it as UTF-8)",
                path, lineno + 1, (size_t)(nul - text));
        free(text);
        return IS_ERR_INVALID;
    }
    p = text;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    line = p + strspn(p, " \t\r\n");
    if (*line == '[') {
        rc = load_json_rows(r, side, path, line, errstr, errstr_size);
        free(text);
        return rc;
    }
    if (*line == '{') {
        /* A JSON object or JSON lines: not a format of ours, and as CSV it would only get a
         * confusing header error. */
        for (const char *c = p; c < line; c++)
            lineno += *c == '\n' || (*c == '\r' && c[1] != '\n');
        is_errf(errstr, errstr_size,
                "%s:%zu: this is a JSON object, not a snapshot: the file must be CSV with the "
                "header %s (or a JSON array of such objects)",
                path, lineno + 1, header_of(side));
        free(text);
        return IS_ERR_INVALID;
    }
    for (line = p; rc == IS_OK && line && *line; line = p) {
        char *fields[MAX_COLS], where[300], *end;
        const char *v[7];
        int n;
        /* A line ends at LF, CRLF or a lone CR (old Mac exports). */
        end = line + strcspn(line, "\r\n");
        if (*end == '\0') {
            p = NULL;
        } else {
            p = end + (end[0] == '\r' && end[1] == '\n' ? 2 : 1);
            *end = '\0';
        }
        lineno++;
        if (line[strspn(line, " \t")] == '\0' || line[0] == '#')
            continue;
        snprintf(where, sizeof(where), "%s:%zu", path, lineno);
        n = split_csv(line, fields, MAX_COLS);
        if (n < 0) {
            is_errf(errstr, errstr_size,
                    "%s: malformed CSV (unterminated quote or more than %d "
                    "columns)",
                    where, MAX_COLS);
            rc = IS_ERR_INVALID;
            break;
        }
        if (!have_header && side == RECONCILE_FILE_CONVERSIONS &&
            strcmp(fields[0], "mes_uom") != 0) {
            /* uom.conversions may have no header (uom.h): the columns are positional. */
            for (size_t k = 0; k < n_cols; k++)
                idx[k] = (int)k;
            header_fields = (int)n_cols;
            have_header = 1;
        }
        if (!have_header) {
            char missing[200] = "";
            size_t n_missing = 0, used = 0;
            for (size_t k = 0; k < n_cols && rc == IS_OK; k++) {
                idx[k] = -1;
                for (int c = 0; c < n; c++) {
                    if (strcmp(fields[c], cols[k]) != 0)
                        continue;
                    if (idx[k] >= 0) {
                        /* Which of the two holds the value is a guess: refuse. */
                        is_errf(errstr, errstr_size,
                                "%s: the header names the column '%s' twice (columns %d and %d)",
                                where, cols[k], idx[k] + 1, c + 1);
                        rc = IS_ERR_INVALID;
                        break;
                    }
                    idx[k] = c;
                }
                if (idx[k] < 0 && k < n_required && used < sizeof(missing)) {
                    int w = snprintf(missing + used, sizeof(missing) - used, "%s'%s'",
                                     n_missing ? ", " : "", cols[k]);
                    used += w > 0 ? (size_t)w : 0;
                    n_missing++;
                }
            }
            if (rc == IS_OK && n_missing) {
                is_errf(errstr, errstr_size, "%s: the header has no column%s %s (needed: %s)",
                        where, n_missing > 1 ? "s" : "", missing, header_of(side));
                rc = IS_ERR_INVALID;
            }
            header_fields = n;
            have_header = 1;
            continue;
        }
        /* A value beyond the header's columns shifted the row: an unquoted
         * comma ("1,000" read as 1). Empty trailing fields are harmless. */
        for (int c = header_fields; c < n && rc == IS_OK; c++) {
            if (*fields[c]) {
                is_errf(errstr, errstr_size,
                        "%s: %d column(s), the header has %d: a value with an unquoted comma "
                        "(quote it: \"1,000\")?",
                        where, n, header_fields);
                rc = IS_ERR_INVALID;
            }
        }
        if (rc != IS_OK)
            break;
        for (size_t k = 0; k < n_cols; k++) {
            if (idx[k] >= n && k < n_required) {
                is_errf(errstr, errstr_size, "%s: %d column(s), the header has more", where, n);
                rc = IS_ERR_INVALID;
                break;
            }
            v[k] = idx[k] < 0 || idx[k] >= n ? "" : fields[idx[k]];
        }
        if (rc == IS_OK)
            rc = take_values(r, side, v, where, errstr, errstr_size);
    }
    if (rc == IS_OK && !have_header) {
        is_errf(errstr, errstr_size, "%s: empty file (expected a header line)", path);
        rc = IS_ERR_INVALID;
    }
    free(text);
    return rc;
}
