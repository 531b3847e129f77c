/*
 * sandbox.h: what the agent may write, checked from where it runs.
 *
 * Under sqlprodd.service the agent sees the file system through systemd's
 * sandbox (ProtectSystem=strict: everything read-only but ReadWritePaths=),
 * so a directory a shell may write can be read-only to the agent. Only the
 * agent itself can tell: it checks at start-up and after each reload, and
 * each missing access comes with its fix, for a read-only path the exact
 * drop-in line (ReadWritePaths=DIR).
 *
 * Not for: the configuration's own checks (config/), nor for reporting
 * (the agent logs the lines and puts the first in its status line).
 */
#ifndef SQLPRODD_SANDBOX_H
#define SQLPRODD_SANDBOX_H

#include <stddef.h>

#include "config/config.h"

struct sandbox_problem {
    const char *database; /* NULL for agent-wide paths (state_dir, metrics) */
    char path[4096];      /* what is missing access */
    char fix[4200];       /* "ReadWritePaths=/var/lib/myapp" or a sentence */
    char message[8800];   /* the whole line for the journal */
};

struct sandbox_report {
    struct sandbox_problem *problems;
    size_t count;
};

/* Checks every path the agent writes under `config`; returns the number of
 * problems (0: all writable) or a negative errno (out of memory). */
int sandbox_check(const struct config *config, struct sandbox_report *report);
void sandbox_report_free(struct sandbox_report *report);

#endif
