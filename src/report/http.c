/*
 * http.c: the HTTP endpoint (see http.h), a thin wrapper around
 * libmicrohttpd. Not for what the answers say: metrics.c renders /metrics,
 * the health job decides the verdicts /health repeats.
 *
 * Bounds, so that a flood or a broken client costs the agent nothing: one
 * server thread, at most HTTP_CONNECTION_LIMIT connections, each dropped
 * after HTTP_TIMEOUT_SECONDS of silence and given HTTP_MEMORY_LIMIT bytes
 * for its request; request bodies are never read.
 */
#include "http.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "jobs/job.h"
#include "log.h"
#include "metrics.h"
#include "state.h"

#define HTTP_CONNECTION_LIMIT 32
#define HTTP_TIMEOUT_SECONDS  10
#define HTTP_MEMORY_LIMIT     (32 * 1024)

struct http_server {
    struct MHD_Daemon *daemon;
    const struct config *config;
    struct state *state; /* opened on first use, only by the server thread */
};

static void http_log(void *context, const char *format, va_list args)
{
    (void)context;
    char line[512];
    vsnprintf(line, sizeof line, format, args);
    size_t length = strlen(line);
    while (length && (line[length - 1] == '\n' || line[length - 1] == '\r'))
        line[--length] = '\0';
    log_event(LOG_DEBUG, NULL, "http", "%s", line);
}

/* The agent creates its state at start-up; until then there is none. */
static struct state *http_state(struct http_server *server)
{
    struct error err = {0};
    if (!server->state && state_open_readonly(server->config->state_dir, &server->state, &err) != 0)
        log_event(LOG_WARNING, NULL, "http", "%s", err.message);
    return server->state;
}

/* Queues `body` (malloc'd; freed by libmicrohttpd) with a status and type. */
static enum MHD_Result http_reply(struct MHD_Connection *connection, unsigned int status,
                                  const char *content_type, char *body, size_t size)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result http_reply_text(struct MHD_Connection *connection, unsigned int status,
                                       const char *text)
{
    char *body = strdup(text);
    if (!body)
        return MHD_NO;
    return http_reply(connection, status, "text/plain; charset=utf-8", body, strlen(body));
}

static json_t *health_of_database(struct state *state, const struct database_config *db, int *rank)
{
    char health[32] = "", lines[2048] = "", checked[32] = "";
    if (state) {
        state_get_value(state, db->name, "health", health, sizeof health, NULL);
        state_get_value(state, db->name, "health_reason_lines", lines, sizeof lines, NULL);
        state_get_value(state, db->name, "health_checked_at", checked, sizeof checked, NULL);
    }
    *rank = health_level_parse(health) + 1; /* 0: not checked yet */
    json_t *reasons = json_array();
    for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        json_array_append_new(reasons, json_string(line));
    json_t *object = json_object();
    json_object_set_new(object, "name", json_string(db->name));
    json_object_set_new(object, "health", json_string(*rank ? health : "unknown"));
    json_object_set_new(object, "reasons", reasons);
    long long at = strtoll(checked, NULL, 10);
    json_object_set_new(object, "checked_at", at > 0 ? json_integer(at) : json_null());
    return object;
}

/* /health (every database) or /health/NAME (one): the worst verdict
 * decides the status code, so a load balancer can use either. */
static enum MHD_Result http_health(struct http_server *server, struct MHD_Connection *connection,
                                   const char *only)
{
    static const char *const words[] = {"unknown", "healthy", "degraded", "unhealthy"};
    const struct config *config = server->config;
    struct state *state = http_state(server);
    json_t *databases = json_array();
    int worst = 0;
    bool found = false;
    for (size_t i = 0; i < config->database_count; i++) {
        if (only && strcmp(config->databases[i].name, only) != 0)
            continue;
        int rank;
        found = true;
        json_array_append_new(databases, health_of_database(state, &config->databases[i], &rank));
        if (rank > worst)
            worst = rank;
    }
    if (only && !found) {
        json_decref(databases);
        return http_reply_text(connection, MHD_HTTP_NOT_FOUND, "no such database\n");
    }
    json_t *root = json_object();
    json_object_set_new(root, "status", json_string(words[worst]));
    json_object_set_new(root, "version", json_string(SQLPRODD_VERSION));
    json_object_set_new(root, "time", json_integer((json_int_t)time(NULL)));
    json_object_set_new(root, "databases", databases);
    char *body = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!body)
        return MHD_NO;
    size_t size = strlen(body);
    char *copy = realloc(body, size + 2); /* a trailing newline for curl users */
    if (!copy) {
        free(body);
        return MHD_NO;
    }
    copy[size++] = '\n';
    copy[size] = '\0';
    return http_reply(connection, worst == 3 ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                      "application/json", copy, size);
}

static enum MHD_Result http_metrics(struct http_server *server, struct MHD_Connection *connection)
{
    struct state *state = http_state(server);
    if (!state)
        return http_reply_text(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "no agent state yet: no job has run\n");
    char *text = NULL;
    size_t size = 0;
    struct error err = {0};
    if (metrics_render(server->config, state, &text, &size, &err) != 0) {
        log_event(LOG_WARNING, NULL, "http", "%s", err.message);
        return http_reply_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR,
                               "cannot render metrics\n");
    }
    return http_reply(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
                      size);
}

/* Answers on the first call, before any request body: nothing we serve
 * takes one, so a body is never buffered (libmicrohttpd discards it and
 * closes the connection). */
static enum MHD_Result http_answer(void *context, struct MHD_Connection *connection,
                                   const char *url, const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **request)
{
    struct http_server *server = context;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)request;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return http_reply_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "only GET and HEAD are served\n");
    if (strcmp(url, "/metrics") == 0)
        return http_metrics(server, connection);
    if (strcmp(url, "/health") == 0)
        return http_health(server, connection, NULL);
    if (strncmp(url, "/health/", 8) == 0 && url[8])
        return http_health(server, connection, url + 8);
    return http_reply_text(connection, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /health\n");
}

/* "HOST:PORT" or "[V6]:PORT" (checked by config.c) -> a socket address. */
static int http_resolve(const char *listen, struct addrinfo **out, struct error *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    size_t length = colon ? (size_t)(colon - listen) : 0;
    if (!colon || length == 0 || length >= sizeof host)
        return error_set(err, -EINVAL, "metrics.listen: bad address \"%s\"", listen);
    memcpy(host, listen, length);
    host[length] = '\0';
    if (host[0] == '[' && length >= 2 && host[length - 1] == ']') {
        memmove(host, host + 1, length - 2);
        host[length - 2] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int rc = getaddrinfo(host, colon + 1, &hints, out);
    if (rc != 0)
        return error_set(err, -EINVAL, "metrics.listen: cannot resolve \"%s\": %s", listen,
                         gai_strerror(rc));
    return 0;
}

int http_start(const struct config *config, struct http_server **out, struct error *err)
{
    struct addrinfo *address = NULL;
    *out = NULL;
    int rc = http_resolve(config->metrics_listen, &address, err);
    if (rc != 0)
        return rc;
    struct http_server *server = calloc(1, sizeof *server);
    if (!server) {
        freeaddrinfo(address);
        return error_set(err, -ENOMEM, "out of memory");
    }
    server->config = config;
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (address->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_answer, server, MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL,
        MHD_OPTION_SOCK_ADDR, address->ai_addr, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_TIMEOUT_SECONDS,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT, MHD_OPTION_END);
    int saved = errno;
    freeaddrinfo(address);
    if (!server->daemon) {
        free(server);
        return error_set(err, saved ? -saved : -EIO, "metrics.listen: cannot listen on %s: %s",
                         config->metrics_listen,
                         saved ? strerror(saved) : "libmicrohttpd refused to start");
    }
    *out = server;
    return 0;
}

void http_stop(struct http_server *server)
{
    if (!server)
        return;
    MHD_stop_daemon(server->daemon);
    state_close(server->state);
    free(server);
}
