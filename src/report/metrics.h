/*
 * metrics.h: Prometheus text exposition of the agent's state, for
 * node_exporter's textfile collector (written atomically) and the HTTP
 * endpoint (http.c). Metric names follow Prometheus conventions: base units,
 * `_total` for counters, HELP and TYPE for every family.
 */
#ifndef SQLPRODD_METRICS_H
#define SQLPRODD_METRICS_H

#include <stddef.h>

#include "config/config.h"
#include "core/error.h"
#include "db/state.h"

/* Renders every family into a malloc'd text (caller frees). */
int metrics_render(const struct config *config, struct state *state, char **text, size_t *size,
                   struct error *err);

/* Renders and writes config->metrics_textfile atomically (mode 0644: the
 * collector runs as another user; metrics hold no secrets). The agent after
 * every job and each one-off command write it, one at a time. */
int metrics_write_textfile(const struct config *config, struct state *state, struct error *err);

#endif
