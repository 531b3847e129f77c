/*
 * http.c: the HTTP endpoint (see http.h), a thin wrapper around
 * libmicrohttpd. Not for what the answers say: metrics.c renders /metrics,
 * the health job decides the verdicts /health repeats.
 *
 * Bounds, so that a flood or a broken client costs the agent nothing and
 * never keeps /health from a load balancer:
 * - one thread runs libmicrohttpd's epoll loop (no FD_SETSIZE ceiling) and
 *   the clock below; no client blocks another;
 * - every request has an absolute deadline, not only libmicrohttpd's idle
 *   timeout, which a client resets with one byte every few seconds: its
 *   header must be complete HTTP_HEADER_SECONDS after the connection opened
 *   (or the previous answer was sent), its answer sent HTTP_ANSWER_SECONDS
 *   after that; a late connection is shut down whatever still trickles in;
 * - at most HTTP_CONNECTION_LIMIT connections: a new one pushes out the one
 *   that has waited longest for its header, so a crowd of silent or slow
 *   clients cannot keep a fresh probe out even before their deadlines;
 * - HTTP_MEMORY_LIMIT bytes per connection for the request (a longer header
 *   is refused by libmicrohttpd); request bodies are never read.
 */
#include "report/http.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jobs/job.h"
#include "core/io.h"
#include "core/log.h"
#include "report/metrics.h"
#include "db/state.h"

#define HTTP_CONNECTION_LIMIT 256
/* libmicrohttpd's own limit sits above ours, so that it keeps accepting
 * while the connections we pushed out are being closed. */
#define HTTP_CONNECTION_SPARE 64
#define HTTP_HEADER_SECONDS   5
#define HTTP_ANSWER_SECONDS   10
/* libmicrohttpd's idle timeout only backs the two deadlines up: between
 * them, they cover a connection's whole life. */
#define HTTP_IDLE_SECONDS 20
#define HTTP_MEMORY_LIMIT (32 * 1024)

/* One TCP connection, from libmicrohttpd's STARTED to its CLOSED notice. */
struct http_client {
    struct http_client *previous, *next;
    int fd;
    bool answering;      /* the request header is complete */
    bool dropped;        /* shut down by us; closed on libmicrohttpd's next turn */
    int64_t deadline_ms; /* monotonic */
};

struct http_server {
    struct MHD_Daemon *daemon;
    const struct config *config;
    struct state *state; /* opened on first use, only by the server thread */
    pthread_t thread;
    int wake[2];                 /* http_stop() writes here to end the loop */
    struct http_client *clients; /* only touched by the server thread */
    size_t client_count;         /* not yet dropped */
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

/* Shuts the connection down: libmicrohttpd sees the end of the stream on
 * its next turn and closes it (and tells http_notify_connection). The
 * descriptor stays libmicrohttpd's to close. */
static void http_drop_client(struct http_server *server, struct http_client *client,
                             const char *why)
{
    assert(!client->dropped);
    client->dropped = true;
    server->client_count--;
    shutdown(client->fd, SHUT_RDWR);
    log_event(LOG_DEBUG, NULL, "http", "closed a connection: %s", why);
}

/* The connection still waiting for its header with the nearest deadline:
 * the one that has waited longest. */
static struct http_client *http_oldest_waiting_client(struct http_server *server)
{
    struct http_client *oldest = NULL;
    for (struct http_client *c = server->clients; c; c = c->next)
        if (!c->dropped && !c->answering && (!oldest || c->deadline_ms < oldest->deadline_ms))
            oldest = c;
    return oldest;
}

static void http_notify_connection(void *context, struct MHD_Connection *connection,
                                   void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    struct http_server *server = context;
    struct http_client *client = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!client)
            return;
        if (!client->dropped)
            server->client_count--;
        if (client->previous)
            client->previous->next = client->next;
        else
            server->clients = client->next;
        if (client->next)
            client->next->previous = client->previous;
        free(client);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    client = calloc(1, sizeof *client);
    if (!client || !info) {
        /* Untracked, it would escape the deadlines: refuse it instead. */
        free(client);
        if (info)
            shutdown(info->connect_fd, SHUT_RDWR);
        return;
    }
    client->fd = info->connect_fd;
    client->deadline_ms = io_monotonic_ms() + HTTP_HEADER_SECONDS * 1000;
    client->next = server->clients;
    if (server->clients)
        server->clients->previous = client;
    server->clients = client;
    server->client_count++;
    *socket_context = client;
    if (server->client_count > HTTP_CONNECTION_LIMIT) {
        struct http_client *oldest = http_oldest_waiting_client(server);
        if (oldest)
            http_drop_client(server, oldest, "connection limit reached, its header was the oldest");
    }
}

static struct http_client *http_client_of(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* The answer is sent: a kept-alive connection starts waiting for the next
 * header, under the same deadline as a new one. */
static void http_request_completed(void *context, struct MHD_Connection *connection, void **request,
                                   enum MHD_RequestTerminationCode code)
{
    (void)context;
    (void)request;
    (void)code;
    struct http_client *client = http_client_of(connection);
    if (client && !client->dropped) {
        client->answering = false;
        client->deadline_ms = io_monotonic_ms() + HTTP_HEADER_SECONDS * 1000;
    }
}

static void http_drop_late_clients(struct http_server *server, int64_t now_ms)
{
    for (struct http_client *c = server->clients; c; c = c->next)
        if (!c->dropped && now_ms >= c->deadline_ms)
            http_drop_client(server, c,
                             c->answering ? "its answer was not taken in time"
                                          : "its request header was not complete in time");
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
    struct db_facts facts = {0};
    if (state && state_get_facts(state, db->name, &facts, NULL) != 0)
        memset(&facts, 0, sizeof facts);
    char *lines = facts.health_reason_lines; /* split in place */
    *rank = facts.known & FACT_HEALTH ? (int)facts.health + 1 : 0; /* 0: not checked yet */
    long long at = facts.known & FACT_HEALTH_CHECKED_AT ? (long long)facts.health_checked_at : 0;
    const char *health = *rank ? health_level_name(facts.health) : "unknown";
    json_t *reasons = json_array();
    for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        json_array_append_new(reasons, json_string(line));
    json_t *object = json_object();
    json_object_set_new(object, "name", json_string(db->name));
    json_object_set_new(object, "health", json_string(health));
    json_object_set_new(object, "reasons", reasons);
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

/* Called once the request header is complete. Answers on the first call,
 * before any request body: nothing we serve takes one, so a body is never
 * buffered (libmicrohttpd discards it and closes the connection). */
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
    struct http_client *client = http_client_of(connection);
    if (client && !client->dropped && !client->answering) {
        client->answering = true;
        client->deadline_ms = io_monotonic_ms() + HTTP_ANSWER_SECONDS * 1000;
    }
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

/* The server thread: libmicrohttpd's epoll descriptor, the wake pipe, and
 * the deadlines, in one loop. */
static void *http_serve(void *argument)
{
    struct http_server *server = argument;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd watched[2] = {{.fd = info->epoll_fd, .events = POLLIN},
                                {.fd = server->wake[0], .events = POLLIN}};
    for (;;) {
        /* Sleeps until libmicrohttpd has work, its own timer, or the next
         * deadline; with no connection, until a client or http_stop(). */
        int64_t now_ms = io_monotonic_ms(), wait_ms = INT_MAX;
        MHD_UNSIGNED_LONG_LONG mhd_ms;
        if (MHD_get_timeout(server->daemon, &mhd_ms) == MHD_YES && mhd_ms < (unsigned)INT_MAX)
            wait_ms = (int64_t)mhd_ms;
        for (struct http_client *c = server->clients; c; c = c->next)
            if (!c->dropped && c->deadline_ms - now_ms < wait_ms)
                wait_ms = c->deadline_ms > now_ms ? c->deadline_ms - now_ms : 0;
        if (poll(watched, 2, wait_ms == INT_MAX ? -1 : (int)wait_ms) < 0 && errno != EINTR)
            log_event(LOG_WARNING, NULL, "http", "poll: %s", strerror(errno));
        if (watched[1].revents)
            break;
        MHD_run(server->daemon);
        http_drop_late_clients(server, io_monotonic_ms());
    }
    return NULL;
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
    server->wake[0] = server->wake[1] = -1;
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (address->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_answer, server, MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL,
        MHD_OPTION_SOCK_ADDR, address->ai_addr, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(HTTP_CONNECTION_LIMIT + HTTP_CONNECTION_SPARE),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_IDLE_SECONDS,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT, MHD_OPTION_NOTIFY_CONNECTION,
        http_notify_connection, server, MHD_OPTION_NOTIFY_COMPLETED, http_request_completed, server,
        MHD_OPTION_END);
    int saved = errno;
    freeaddrinfo(address);
    if (!server->daemon) {
        free(server);
        return error_set(err, saved ? -saved : -EIO, "metrics.listen: cannot listen on %s: %s",
                         config->metrics_listen,
                         saved ? strerror(saved) : "libmicrohttpd refused to start");
    }
    if (pipe2(server->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = error_set(err, -errno, "metrics.listen: cannot make a pipe: %s", strerror(errno));
        goto fail;
    }
    rc = io_thread_start(&server->thread, http_serve, server);
    if (rc != 0) {
        rc =
            error_set(err, rc, "metrics.listen: cannot start the server thread: %s", strerror(-rc));
        goto fail;
    }
    *out = server;
    return 0;

fail:
    MHD_stop_daemon(server->daemon);
    if (server->wake[0] >= 0) {
        close(server->wake[0]);
        close(server->wake[1]);
    }
    free(server);
    return rc;
}

void http_stop(struct http_server *server)
{
    if (!server)
        return;
    char byte = 1;
    if (write(server->wake[1], &byte, 1) < 0)
        log_event(LOG_WARNING, NULL, "http", "cannot wake the server thread: %s", strerror(errno));
    pthread_join(server->thread, NULL);
    /* Closes every connection, each through http_notify_connection. */
    MHD_stop_daemon(server->daemon);
    assert(!server->clients);
    close(server->wake[0]);
    close(server->wake[1]);
    state_close(server->state);
    free(server);
}
