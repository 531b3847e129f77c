/*
 * agent.h: `sqlprodd run`, the long-running agent.
 *
 * One event loop owns time and signals (as in Redis's ae.c): it sleeps in
 * poll(2) until the next job is due, a signal arrives (signalfd) or a worker
 * finishes; it never wakes up just to look. Jobs run on a small pool of
 * worker threads (`workers`), at most one job per database at a time, so the
 * loop stays free to answer the watchdog and signals while a long backup runs.
 */
#ifndef SQLPRODD_AGENT_H
#define SQLPRODD_AGENT_H

#include "config/config.h"

/* Runs until SIGTERM/SIGINT. Takes ownership of `config`. Returns an exit
 * status: 0 after a clean stop, 1 when it could not start. */
int agent_run(struct config *config, const char *config_path);

#endif
