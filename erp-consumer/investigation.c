/*
 * investigation.c — the plumbing replay, genealogy and reconcile share
 * (investigation.h).
 */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "investigation.h"
#include "log.h"
#include "store.h"

int investigation_load_config(const char *cmd, const char *path, consumer_config_t *cfg) {
    char errstr[1024];
    is_log_level_t level = IS_LOG_INFO;
    if (consumer_config_load(cfg, path, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer %s: %s\n", cmd, errstr);
        consumer_config_release(cfg);
        return 2;
    }
    if (is_log_level_parse(cfg->log_level, &level) == IS_OK)
        is_log_init("erp-consumer", level);
    return 0;
}

is_err_t investigation_store_movements(const consumer_config_t *cfg, const char *sql,
                                       const int *ints, size_t n_ints, const char *site, int id_col,
                                       investigation_movement_cb cb, void *opaque, char *errstr,
                                       size_t errstr_size) {
    store_t *s = NULL;
    sqlite3_stmt *st = NULL;
    is_err_t rc = store_open_existing(cfg->store_path, consumer_config_store_sync(cfg), &s, errstr,
                                      errstr_size);
    if (rc != IS_OK)
        return rc;
    rc = is_db_prepare(store_db(s), sql, &st, errstr, errstr_size);
    if (rc == IS_OK) {
        for (size_t i = 0; i < n_ints; i++)
            sqlite3_bind_int(st, (int)i + 1, ints[i]);
        if (site)
            sqlite3_bind_text(st, (int)n_ints + 1, site, -1, SQLITE_TRANSIENT);
    }
    while (rc == IS_OK && sqlite3_step(st) == SQLITE_ROW) {
        is_movement_t *m = invsync__v1__movement__unpack(NULL, (size_t)sqlite3_column_bytes(st, 0),
                                                         sqlite3_column_blob(st, 0));
        if (!m) {
            is_errf(errstr, errstr_size, "store: movement '%s' cannot be decoded",
                    (const char *)sqlite3_column_text(st, id_col));
            rc = IS_ERR_INVALID;
            break;
        }
        rc = cb(opaque, m, st);
        invsync__v1__movement__free_unpacked(m, NULL);
    }
    sqlite3_finalize(st);
    store_close(s);
    return rc;
}

void investigation_csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int investigation_option_twice(const char *prefix, const struct option *opts, int c,
                               uint32_t *seen) {
    for (unsigned i = 0; opts[i].name && i < 32; i++) {
        if (opts[i].val != c)
            continue;
        if (opts[i].has_arg == no_argument)
            return 0;
        if (*seen & (1u << i)) {
            fprintf(stderr,
                    "%s: --%s is given twice; give it once (a second one would replace the "
                    "first)\n",
                    prefix, opts[i].name);
            return 1;
        }
        *seen |= 1u << i;
        return 0;
    }
    return 0;
}
