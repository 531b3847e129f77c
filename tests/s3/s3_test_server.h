/*
 * s3_test_server.h: starts tests/s3/server.js (s3rver behind a front that
 * checks every Signature V4) for a cmocka test, and talks to its admin
 * endpoints: fault injection and the log of requests it saw. Shared by the
 * test_target_s3*.c files; every helper is static inline so each test uses
 * what it needs.
 */
#ifndef SQLPRODD_S3_TEST_SERVER_H
#define SQLPRODD_S3_TEST_SERVER_H

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define S3_TEST_ACCESS_KEY "SQLPRODDTESTACCESSKEY"
#define S3_TEST_SECRET_KEY "sqlprodd/Test+Secret/Key0123456789abcdefXYZ"
#define S3_TEST_BUCKET     "sqlprodd-test"

struct s3_test_server {
    pid_t pid;
    int port;
    char url[64];
};

/* Finds `program` on PATH; true and its path in out when found. */
static inline bool s3_test_find_program(const char *program, char *out, size_t size)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    while (*path) {
        size_t length = strcspn(path, ":");
        snprintf(out, size, "%.*s/%s", (int)length, path, program);
        if (length > 0 && access(out, X_OK) == 0)
            return true;
        path += length + (path[length] == ':');
    }
    return false;
}

/* tests/s3, the directory of this file and of server.js. */
static inline void s3_test_server_directory(char *out, size_t size)
{
    const char *override = getenv("SQLPRODD_S3_SERVER_DIR");
    if (override) {
        snprintf(out, size, "%s", override);
        return;
    }
    snprintf(out, size, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
}

/*
 * Starts the server with extra arguments (NULL-terminated). Returns 0, or
 * 1 when node is not installed (the caller skips), or -1 with a message on
 * stderr when it is installed but the server cannot start.
 */
static inline int s3_test_server_start(struct s3_test_server *server, const char *const *extra)
{
    char node[512], directory[512], script[600], modules[600];
    memset(server, 0, sizeof *server);
    if (!s3_test_find_program("node", node, sizeof node)) {
        fprintf(stderr, "SKIP: node is not installed: the S3 target tests need Node.js 18+ "
                        "(then run 'npm ci' in tests/s3)\n");
        return 1;
    }
    s3_test_server_directory(directory, sizeof directory);
    snprintf(script, sizeof script, "%s/server.js", directory);
    snprintf(modules, sizeof modules, "%s/node_modules/s3rver", directory);
    if (access(modules, F_OK) != 0) {
        fprintf(stderr,
                "FAIL: %s is missing: install the test server's packages with\n"
                "    npm ci --prefix %s\n",
                modules, directory);
        return -1;
    }
    const char *argv[24] = {node, script, "--port", "0"};
    int argc = 4;
    for (int i = 0; extra && extra[i] && argc < 23; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    int rc = posix_spawn(&server->pid, node, &actions, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    if (rc != 0) {
        close(pipe_fds[0]);
        fprintf(stderr, "FAIL: cannot start %s: %s\n", node, strerror(rc));
        return -1;
    }
    char line[256] = "";
    size_t length = 0;
    struct pollfd poll_fd = {.fd = pipe_fds[0], .events = POLLIN};
    time_t deadline = time(NULL) + 30;
    while (!strchr(line, '\n') && time(NULL) < deadline && length < sizeof line - 1) {
        if (poll(&poll_fd, 1, 1000) <= 0)
            continue;
        ssize_t got = read(pipe_fds[0], line + length, sizeof line - 1 - length);
        if (got <= 0)
            break;
        length += (size_t)got;
        line[length] = '\0';
    }
    /* The server writes nothing more to stdout; a closed pipe does not hurt it. */
    close(pipe_fds[0]);
    const char *at = strstr(line, "://127.0.0.1:");
    if (!at || sscanf(at, "://127.0.0.1:%d", &server->port) != 1) {
        fprintf(stderr, "FAIL: the S3 test server did not start (it said: '%s')\n", line);
        kill(server->pid, SIGKILL);
        waitpid(server->pid, NULL, 0);
        server->pid = 0;
        return -1;
    }
    snprintf(server->url, sizeof server->url, "%s://127.0.0.1:%d",
             strstr(line, "https://") ? "https" : "http", server->port);
    return 0;
}

static inline void s3_test_server_stop(struct s3_test_server *server)
{
    if (server->pid > 0) {
        kill(server->pid, SIGTERM);
        waitpid(server->pid, NULL, 0);
        server->pid = 0;
    }
}

static inline size_t s3_test_collect(char *data, size_t size, size_t count, void *context)
{
    FILE *out = context;
    return fwrite(data, size, count, out);
}

/* An unsigned admin request; returns the HTTP status and the body (malloc'ed) in *body. */
static inline long s3_test_admin(const struct s3_test_server *server, const char *method,
                                 const char *path, const char *json, char **body)
{
    char url[256], *buffer = NULL;
    size_t buffer_size = 0;
    long status = 0;
    FILE *out = open_memstream(&buffer, &buffer_size);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(url, sizeof url, "%s%s", server->url, path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L); /* a test server's own certificate */
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (json)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s3_test_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    fclose(out);
    if (body)
        *body = buffer;
    else
        free(buffer);
    return status;
}

static inline void s3_test_add_fault(const struct s3_test_server *server, const char *json)
{
    if (s3_test_admin(server, "POST", "/__admin/faults", json, NULL) != 200) {
        fprintf(stderr, "the S3 test server refused the fault %s\n", json);
        abort();
    }
}

static inline void s3_test_reset(const struct s3_test_server *server)
{
    s3_test_admin(server, "DELETE", "/__admin/faults", NULL, NULL);
    s3_test_admin(server, "DELETE", "/__admin/requests", NULL, NULL);
}

/* The requests the server saw since the last reset, as a JSON array (caller decrefs). */
static inline json_t *s3_test_requests(const struct s3_test_server *server)
{
    char *body = NULL;
    json_t *requests = NULL;
    if (s3_test_admin(server, "GET", "/__admin/requests", NULL, &body) == 200)
        requests = json_loads(body, 0, NULL);
    free(body);
    return requests;
}

/* How many logged requests have this method and (when not NULL) a query
 * containing `query` and a status equal to `status` (0: any). */
static inline size_t s3_test_count(json_t *requests, const char *method, const char *query,
                                   int status)
{
    size_t index, count = 0;
    json_t *entry;
    json_array_foreach(requests, index, entry)
    {
        const char *entry_method = json_string_value(json_object_get(entry, "method"));
        const char *entry_query = json_string_value(json_object_get(entry, "query"));
        json_t *entry_status = json_object_get(entry, "status");
        if (method && (!entry_method || strcmp(entry_method, method) != 0))
            continue;
        if (query && (!entry_query || !strstr(entry_query, query)))
            continue;
        if (status &&
            (!json_is_integer(entry_status) || json_integer_value(entry_status) != status))
            continue;
        count++;
    }
    return count;
}

/* True when every logged request passed the server's signature check. */
static inline bool s3_test_all_signed(json_t *requests)
{
    size_t index;
    json_t *entry;
    json_array_foreach(requests, index, entry)
    {
        const char *auth = json_string_value(json_object_get(entry, "auth"));
        json_t *fault = json_object_get(entry, "fault");
        if (json_is_string(fault) && strncmp(json_string_value(fault), "drop", 4) == 0)
            continue; /* dropped before the check */
        if (!auth || strcmp(auth, "ok") != 0)
            return false;
    }
    return json_array_size(requests) > 0;
}

/* Writes `size` pseudo-random bytes (seeded) to path. */
static inline void s3_test_write_random_file(const char *path, size_t size, unsigned seed)
{
    FILE *file = fopen(path, "wb");
    unsigned state = seed * 2654435761u + 1;
    unsigned char block[65536];
    for (size_t done = 0; file && done < size;) {
        size_t chunk = size - done < sizeof block ? size - done : sizeof block;
        for (size_t i = 0; i < chunk; i++) {
            state = state * 1103515245u + 12345u;
            block[i] = (unsigned char)(state >> 16);
        }
        fwrite(block, 1, chunk, file);
        done += chunk;
    }
    if (file)
        fclose(file);
}

/* True when both files exist and hold the same bytes. */
static inline bool s3_test_same_file(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    bool same = x && y;
    while (same) {
        int c = fgetc(x), d = fgetc(y);
        if (c != d)
            same = false;
        if (c == EOF || d == EOF)
            break;
    }
    if (x)
        fclose(x);
    if (y)
        fclose(y);
    return same;
}

#endif
