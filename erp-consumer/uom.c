/*
 * uom.c — MES → ERP unit conversion (uom.h). Tables are small (tens to a
 * few thousand rows); lookups are a linear scan per movement, which stays
 * far below the cost of the ERP call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uom.h"

#define UOM_FIELD 64

typedef struct uom_row {
    char mes[UOM_FIELD], erp[UOM_FIELD], material[IS_MOVEMENT_MAX_STR + 1];
    is_decimal_t factor;
    int line; /* in the file, for messages */
} uom_row_t;

struct uom_table {
    size_t n;
    uom_row_t *rows;
};

/* Split a CSV line on commas (no quoting: units and material codes have no commas). */
static int split(char *line, char **fields, int max) {
    int n = 0;
    char *save = NULL;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *tok = strtok_r(line, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ')
            tok[--len] = '\0';
        fields[n++] = tok;
    }
    return n;
}

is_err_t uom_load(const char *path, uom_table_t **out, char *errstr, size_t errstr_size) {
    char line[512], err[160];
    int lineno = 0;
    uom_table_t *t = calloc(1, sizeof(*t));
    FILE *f = fopen(path, "r");
    *out = NULL;
    if (!t || !f) {
        is_errf(errstr, errstr_size, "cannot open '%s': %s", path,
                f ? "out of memory" : strerror(errno));
        goto fail;
    }
    while (fgets(line, sizeof(line), f)) {
        char *fld[5];
        lineno++;
        if (line[0] == '#' || line[strspn(line, " \r\n")] == '\0')
            continue;
        int n = split(line, fld, 5);
        if (lineno == 1 && n >= 3 && strcmp(fld[0], "mes_uom") == 0)
            continue; /* header */
        if (n < 3 || n > 4) {
            is_errf(errstr, errstr_size,
                    "%s:%d: expected mes_uom,erp_uom,factor[,material], got %d field(s)", path,
                    lineno, n);
            goto fail;
        }
        uom_row_t r;
        memset(&r, 0, sizeof(r));
        if (strlen(fld[0]) >= UOM_FIELD || strlen(fld[1]) >= UOM_FIELD ||
            (n == 4 && strlen(fld[3]) > IS_MOVEMENT_MAX_STR)) {
            is_errf(errstr, errstr_size, "%s:%d: unit or material too long", path, lineno);
            goto fail;
        }
        if (is_decimal_parse(fld[2], strlen(fld[2]), IS_DECIMAL_MAX_SCALE, &r.factor, err,
                             sizeof(err)) != IS_OK ||
            is_decimal_sign(r.factor) <= 0) {
            is_errf(errstr, errstr_size, "%s:%d: factor '%s' is not a positive decimal", path,
                    lineno, fld[2]);
            goto fail;
        }
        snprintf(r.mes, sizeof(r.mes), "%s", fld[0]);
        snprintf(r.erp, sizeof(r.erp), "%s", fld[1]);
        if (n == 4)
            snprintf(r.material, sizeof(r.material), "%s", fld[3]);
        r.line = lineno;
        /* Two rows for one unit (and material) would leave the factor to file order. */
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->rows[i].mes, r.mes) == 0 &&
                strcmp(t->rows[i].material, r.material) == 0) {
                is_errf(errstr, errstr_size,
                        "%s:%d: a second row for MES unit '%s'%s%s%s (the first is line %d)", path,
                        lineno, r.mes, r.material[0] ? " and material '" : "", r.material,
                        r.material[0] ? "'" : "", t->rows[i].line);
                goto fail;
            }
        uom_row_t *rows = realloc(t->rows, (t->n + 1) * sizeof(*rows));
        if (!rows) {
            is_errf(errstr, errstr_size, "out of memory");
            goto fail;
        }
        t->rows = rows;
        t->rows[t->n++] = r;
    }
    fclose(f);
    *out = t;
    return IS_OK;
fail:
    if (f)
        fclose(f);
    uom_free(t);
    return IS_ERR_CONFIG;
}

void uom_free(uom_table_t *t) {
    if (!t)
        return;
    free(t->rows);
    free(t);
}

is_err_t uom_convert(const uom_table_t *t, is_movement_t *m, char *errstr, size_t errstr_size) {
    const uom_row_t *best = NULL;
    is_decimal_t q, out;
    for (size_t i = 0; i < t->n; i++) {
        const uom_row_t *r = &t->rows[i];
        if (strcmp(r->mes, m->uom) != 0)
            continue;
        if (r->material[0] && strcmp(r->material, m->material) == 0) {
            best = r; /* material-specific wins */
            break;
        }
        if (!r->material[0] && !best)
            best = r;
    }
    if (!best) {
        is_errf(errstr, errstr_size,
                "no unit conversion for material '%s' from MES unit '%s' to an ERP unit "
                "(add a row to uom.conversions)",
                m->material, m->uom);
        return IS_ERR_PERMANENT;
    }
    q = is_movement_qty(m);
    if (is_decimal_mul(q, best->factor, IS_DECIMAL_MAX_SCALE, &out) != IS_OK) {
        is_errf(errstr, errstr_size, "converting %s %s to %s does not fit", m->material, m->uom,
                best->erp);
        return IS_ERR_PERMANENT;
    }
    char *uom = strdup(best->erp);
    if (!uom)
        return IS_ERR_RETRYABLE;
    if (m->uom && m->uom != protobuf_c_empty_string)
        free(m->uom);
    m->uom = uom;
    m->quantity->units = out.units;
    m->quantity->scale = out.scale;
    return IS_OK;
}
