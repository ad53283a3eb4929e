/*
 * cli.h — erp-consumer's operator commands that work on the store file
 * directly (safe while the service runs: SQLite WAL, the poster picks the
 * change up on its next cycle):
 *
 *   pause  --site S [--tier T] --by WHO --reason WHY
 *   resume --site S [--tier T] --by WHO --reason WHY
 *   flush  --site S [--tier T] --by WHO --reason WHY   (manual shift end)
 *   failed [list] | failed retry|skip POSTING_ID --by WHO --reason WHY
 *   trace  --movement ID | --document DOC
 *   audit  verify
 *
 * Output is JSON on stdout; errors on stderr. Exit 0 ok, 1 failed/not found
 * (an id that is not a failed posting, a movement or document unknown, a
 * pause that does not exist: HTTP 404 in the API), 2 usage or an unknown
 * site or tier name (HTTP 400).
 */
#ifndef INVSYNC_CLI_H
#define INVSYNC_CLI_H

#include "consumer_config.h"

typedef struct cli_args {
    const char *site, *tier, *by, *reason, *movement, *document;
    int argc; /* positional arguments after the command */
    char **argv;
} cli_args_t;

/* 1 when cmd is one of the commands above. */
int cli_is_admin_command(const char *cmd);
int cli_run(const char *cmd, const consumer_config_t *cfg, const cli_args_t *args);

#endif
