/*
 * http.h: the optional HTTP endpoint (`metrics = { listen = "..."; }`):
 * GET /metrics (Prometheus text), GET /health and GET /health/NAME (JSON,
 * 200 when healthy or degraded, 503 when unhealthy, for load balancers).
 * Served by libmicrohttpd on its own thread, reading the state database
 * through its own read-only connection: a slow or hostile client never
 * holds up the agent's loop or its jobs, and, with absolute deadlines per
 * request and a bounded connection table (http.c), never another client.
 */
#ifndef SQLPRODD_HTTP_H
#define SQLPRODD_HTTP_H

#include "config/config.h"
#include "core/error.h"

struct http_server;

/* Listens on config->metrics_listen. `config` must stay valid until
 * http_stop() (the agent stops the server around a reload). */
int http_start(const struct config *config, struct http_server **out, struct error *err);

/* Closes the socket, waits for the server thread; NULL is a no-op. */
void http_stop(struct http_server *server);

#endif
