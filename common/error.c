/*
 * error.c — names and descriptions of is_err_t, table-driven so a new code
 * is one line here and one in error.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "error.h"

static const struct {
    const char *name;
    const char *desc;
} err_table[IS_ERR__COUNT] = {
    {"IS_OK", "success"},
    {"IS_ERR_NOMEM", "out of memory"},
    {"IS_ERR_INVALID", "invalid input"},
    {"IS_ERR_IO", "i/o error"},
    {"IS_ERR_DB", "database error"},
    {"IS_ERR_CONFIG", "configuration error"},
    {"IS_ERR_NOT_FOUND", "not found"},
    {"IS_ERR_CONFLICT", "conflicting content for an existing id"},
    {"IS_ERR_RETRYABLE", "transient failure, retry later"},
    {"IS_ERR_PERMANENT", "permanent failure"},
    {"IS_ERR_KAFKA", "kafka error"},
    {"IS_ERR_OVERFLOW", "value out of range"},
    {"IS_ERR_DUPLICATE", "already done"},
    {"IS_ERR_TOO_LARGE", "over a configured limit"},
    {"IS_ERR_AUTH", "not authorized"},
};

const char *is_err_name(is_err_t err) {
    int i = -(int)err;
    if (i < 0 || i >= IS_ERR__COUNT)
        return "IS_ERR_UNKNOWN";
    return err_table[i].name;
}

const char *is_err_str(is_err_t err) {
    int i = -(int)err;
    if (i < 0 || i >= IS_ERR__COUNT)
        return "unknown error";
    return err_table[i].desc;
}

void is_errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
    va_list ap;
    if (!errstr || errstr_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}
