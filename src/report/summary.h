/*
 * summary.h: the one-line summary an operator reads in `systemctl status`
 * ("3 databases: 3 healthy | last backup app 06:21:13 UTC (4.2 MiB) | next: ...").
 */
#ifndef SQLPRODD_SUMMARY_H
#define SQLPRODD_SUMMARY_H

#include <stddef.h>

#include "config/config.h"
#include "db/state.h"

void summary_status_line(const struct config *config, struct state *state, char *out,
                         size_t out_size);

#endif
