/*
 * cli.h: the commands of sqlprodd(8) other than `run`, one file each in
 * src/cli/. main.c parses the global options and loads the configuration;
 * each command parses its own arguments and returns an exit status:
 * 0 success, 1 a job or check failed, 2 usage or configuration error.
 */
#ifndef SQLPRODD_CLI_H
#define SQLPRODD_CLI_H

#include <signal.h>

#include "config/config.h"

enum cli_exit { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* Set by SIGINT/SIGTERM during a one-off command: jobs abort cleanly. */
extern volatile sig_atomic_t cli_stop;

int cli_check(const struct config *config, int argc, char **argv);
int cli_status(const struct config *config, int argc, char **argv);
int cli_run_job(const struct config *config, const char *job, int argc, char **argv);
int cli_backups(const struct config *config, int argc, char **argv);
int cli_restore(const struct config *config, int argc, char **argv);
int cli_verify(const struct config *config, int argc, char **argv);
/* `reload [--pid PID]`; config is NULL when the file was refused: the
 * agent is still told (it then says so in its status) and the exit is 2. */
int cli_reload(const struct config *config, int argc, char **argv);

/* Selects the databases a command acts on: all, or the one named (NULL with
 * an error message on stderr when it does not exist). */
const struct database_config *cli_select_database(const struct config *config, const char *name);

#endif
