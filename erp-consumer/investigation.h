/*
 * investigation.h — what the investigation commands (`erp-consumer replay`,
 * `genealogy`, `reconcile`; docs/INVESTIGATIONS.md) share: loading the
 * configuration the same way, reading movements out of the consumer's
 * store, and quoting CSV fields.
 *
 * @locality the command's thread.
 */
#ifndef INVSYNC_INVESTIGATION_H
#define INVSYNC_INVESTIGATION_H

#include <sqlite3.h>
#include <stddef.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "consumer_config.h"
#include "error.h"
#include "movement.h"

/*
 * Load the configuration at path (NULL: defaults and environment) into cfg
 * and start logging at its log.level (the default level when that is not a
 * level). Returns 0, or 2 (the commands' exit status for bad input) after
 * printing "erp-consumer <cmd>: <what is wrong>" on stderr and releasing
 * cfg.
 */
int investigation_load_config(const char *cmd, const char *path, consumer_config_t *cfg);

/* One decoded movement of investigation_store_movements; st is on its row (for further
 * columns). Anything but IS_OK stops the walk and is returned. */
typedef is_err_t (*investigation_movement_cb)(void *opaque, const is_movement_t *m,
                                              sqlite3_stmt *st);

/*
 * Open cfg's store, run sql and call cb for each row's movement: column 0
 * is the payload, column id_col the movement_id (named when a payload does
 * not decode: IS_ERR_INVALID, "store: movement '<id>' cannot be decoded").
 * Parameters ?1..?n_ints are bound to ints, and ?(n_ints + 1) to site when
 * site is not NULL. Errors of the store come back as they are, with errstr.
 */
is_err_t investigation_store_movements(const consumer_config_t *cfg, const char *sql,
                                       const int *ints, size_t n_ints, const char *site, int id_col,
                                       investigation_movement_cb cb, void *opaque, char *errstr,
                                       size_t errstr_size) IS_MUST_CHECK;

/* One CSV field: as is, or double-quoted ("" inside) when it holds a comma, quote, CR or LF.
 * No separator is written. */
void investigation_csv_field(FILE *f, const char *s);

/*
 * For a command's getopt loop: 1, after saying so on stderr ("<prefix>: --site is given
 * twice ..."), when c is an option that takes a value and was given before (the last value
 * would silently replace the first: `--site A --site B` reads B only). seen starts at 0;
 * opts has at most 32 entries. A flag given twice is harmless: 0.
 */
int investigation_option_twice(const char *prefix, const struct option *opts, int c,
                               uint32_t *seen);

#endif
