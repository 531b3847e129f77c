/*
 * summary.h: the one-line summary an operator reads in `systemctl status`
 * ("3 databases: 3 healthy | last backup app 06:21:13 UTC (4.2 MiB) | next: ...").
 * Not where "next" is decided: the agent says which job it will run next.
 */
#ifndef SQLPRODD_SUMMARY_H
#define SQLPRODD_SUMMARY_H

#include <stddef.h>
#include <time.h>

#include "config/config.h"
#include "db/state.h"

/* The job the agent will start next, by its own due times; database NULL
 * when nothing is scheduled. */
struct summary_next {
    time_t due;
    const char *database;
    const char *job;
};

void summary_status_line(const struct config *config, struct state *state,
                         const struct summary_next *next, char *out, size_t out_size);

#endif
