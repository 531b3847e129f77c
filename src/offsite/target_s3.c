/*
 * target_s3.c: a target in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW,
 * R2, B2, Wasabi): PutObject for files up to the part size (from memory up
 * to 1 MiB, read twice above: to hash, then to send), multipart above
 * (s3_multipart.c), GetObject streamed to a file, ListObjectsV2 with paging,
 * DeleteObject. Every object carries Content-MD5 (checked by S3, and the
 * checksum S3 requires beside Object Lock headers) and its SHA-256 as
 * x-amz-meta-sha256 (checked here on download).
 *
 * Not for HTTP details or retries (s3_http.c), XML (s3_xml.c) or signing
 * (sigv4.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"
#include "core/log.h"
#include "offsite/s3.h"

/* Pages of ListObjectsV2 before we call the listing runaway (1000 keys each). */
#define S3_MAX_LIST_PAGES 100000

struct s3_target {
    struct s3_client client;
    CURL *curl; /* for requests made by the calling thread */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_initialize(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static struct s3_target *s3_of(struct target *target)
{
    return target->implementation;
}

static char *full_key(const struct s3_client *client, const char *key)
{
    char *out = NULL;
    return asprintf(&out, "%s%s", client->prefix, key) < 0 ? NULL : out;
}

static void report_put_progress(void *context, int64_t bytes)
{
    const struct io_context *io = ((void **)context)[0];
    const int64_t *total = ((void **)context)[1];
    io_report_progress(io, bytes, *total);
}

/* A PutObject of at most this many bytes is sent from memory, read once;
 * a larger one (up to the part size, 16 MiB by default) is read twice from
 * its source, to hash and to send, so that a put never holds more than this
 * much of an object in memory. */
#define PUT_IN_MEMORY_BYTES (1024 * 1024)
#define PUT_READ_BYTES      (256 * 1024)

/* Reads `size` bytes of the source once, in order, into its SHA-256 and
 * Content-MD5, then lets the source check what it read. `buffer` holds the
 * whole object when `capacity` >= `size` (it is sent from there), else it
 * is a window the bytes pass through, into `stage_fd` when that is open
 * (a source read once: target_source.stage_directory). */
static int hash_source(const struct target_source *source, void *reader, unsigned char *buffer,
                       size_t capacity, int64_t size, int stage_fd, struct s3_body_hashes *hashes,
                       struct error *err)
{
    struct s3_body_hashing hashing = {0};
    bool whole = (int64_t)capacity >= size;
    int rc = 0;
    if (s3_body_hashing_begin(&hashing, true) != 0) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t offset = 0; offset < size && rc == 0;) {
        size_t length = size - offset < (int64_t)capacity ? (size_t)(size - offset) : capacity;
        unsigned char *at = whole ? buffer + offset : buffer;
        rc = source->read(reader, at, length, offset, err);
        if (rc == 0 && stage_fd >= 0 && (rc = io_write_full(stage_fd, at, length)) != 0)
            error_set(err, rc, "cannot stage %s: %s", source->name, strerror(-rc));
        if (rc == 0) {
            s3_body_hashing_update(&hashing, at, length);
            offset += (int64_t)length;
        }
    }
    if (rc == 0 && source->check)
        rc = source->check(reader, err);
    if (rc == 0)
        s3_body_hashing_end(&hashing, hashes);
out:
    s3_body_hashing_discard(&hashing);
    return rc;
}

/* One PutObject of the whole source (it is at most a part). */
static int put_small(struct s3_target *s3, const char *key, const struct target_source *source,
                     const char *sha256_hex, char stored_sha256[IO_SHA256_HEX],
                     const struct io_context *io, struct error *err)
{
    struct s3_request request = {.method = "PUT", .key = key, .download_fd = -1};
    struct s3_response response = {0};
    struct s3_body_hashes hashes;
    char what[1200], retain_until[S3_DATE_SIZE];
    int64_t size = source->size;
    bool in_memory = size <= PUT_IN_MEMORY_BYTES;
    size_t capacity = in_memory ? (size > 0 ? (size_t)size : 1) : PUT_READ_BYTES;
    unsigned char *buffer = malloc(capacity);
    void *progress_context[2] = {(void *)io, &size};
    void *reader = NULL;
    char stage[PATH_MAX] = "";
    int stage_fd = -1;
    struct target_file staged = {.fd = -1};
    struct target_source staged_source;
    int rc;
    s3_describe_key(&s3->client, key, what, sizeof what);
    if (!buffer)
        return error_set(err, -ENOMEM, "%s: out of memory", what);
    if (!in_memory && source->stage_directory) {
        snprintf(stage, sizeof stage, "%s/object", source->stage_directory);
        stage_fd = open(stage, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (stage_fd < 0) {
            rc = error_set(err, -errno, "%s: cannot stage it in %s: %s", what, stage,
                           strerror(errno));
            free(buffer);
            return rc;
        }
    }
    rc = source->open_reader(source->context, &reader, err);
    if (rc == 0)
        rc = hash_source(source, reader, buffer, capacity, size, stage_fd, &hashes, err);
    if (rc == 0 && stage_fd >= 0) {
        /* Sent from the staged copy, which S3 checks against the hashes. */
        source->close_reader(reader);
        reader = NULL;
        target_file_wrap(stage_fd, stage, size, &staged, &staged_source);
    } else if (rc == 0 && !in_memory) {
        /* Sent from a reader of its own, from the start: the one that
         * hashed has been checked and is done. What is sent is not checked
         * again here: S3 refuses a body whose SHA-256 or MD5 differs. */
        source->close_reader(reader);
        reader = NULL;
        rc = source->open_reader(source->context, &reader, err);
    }
    if (rc != 0) {
        error_prefix(err, "%s: ", what);
        goto out;
    }
    if (sha256_hex && strcmp(hashes.sha256, sha256_hex) != 0) {
        rc = error_set(err, -EBADMSG,
                       "%s: the local file changed or is corrupt (sha256 %s, the manifest says "
                       "%s); not uploaded",
                       what, hashes.sha256, sha256_hex);
        goto out;
    }
    s3_request_add_header(&request, "Content-MD5", hashes.md5);
    s3_request_add_object_headers(&s3->client, &request, hashes.sha256, time(NULL), retain_until);
    if (in_memory) {
        request.body = buffer;
    } else if (stage_fd >= 0) {
        request.body_source = &staged_source;
        request.body_reader = &staged;
    } else {
        request.body_source = source;
        request.body_reader = reader;
    }
    request.body_size = (size_t)size;
    request.payload_hash = hashes.sha256;
    request.progress = report_put_progress;
    request.progress_context = progress_context;
    rc = s3_perform(&s3->client, s3->curl, &request, &response, io, err);
    if (rc == 0)
        memcpy(stored_sha256, hashes.sha256, IO_SHA256_HEX);
out:
    if (reader)
        source->close_reader(reader);
    if (stage_fd >= 0) {
        close(stage_fd);
        unlink(stage);
    }
    s3_response_free(&response);
    free(buffer);
    return rc;
}

static int s3_put_source(struct target *target, const char *key, const struct target_source *source,
                         const char *sha256_hex, char stored_sha256[IO_SHA256_HEX],
                         const struct io_context *io, struct error *err)
{
    struct s3_target *s3 = s3_of(target);
    char *object_key = full_key(&s3->client, key);
    int rc;
    if (!object_key)
        return error_set(err, -ENOMEM, "out of memory");
    if (source->size <= s3->client.part_size)
        rc = put_small(s3, object_key, source, sha256_hex, stored_sha256, io, err);
    else
        rc = s3_upload_multipart(&s3->client, s3->curl, object_key, source, sha256_hex,
                                 stored_sha256, io, err);
    free(object_key);
    return rc;
}

static void report_get_progress(void *context, int64_t bytes)
{
    io_report_progress(context, bytes, -1);
}

/* A server that ignored the Range header sent the whole object: keeps
 * bytes [offset, offset + length) of the download, at the start of `fd`. */
static int keep_range(int fd, int64_t offset, int64_t length)
{
    enum { BUFFER_BYTES = 64 * 1024 };
    unsigned char *buffer = malloc(BUFFER_BYTES);
    int rc = buffer ? 0 : -ENOMEM;
    for (int64_t done = 0; rc == 0 && done < length;) {
        size_t step = length - done < BUFFER_BYTES ? (size_t)(length - done) : BUFFER_BYTES;
        rc = io_pread_full(fd, buffer, step, offset + done);
        if (rc == 0 && pwrite(fd, buffer, step, done) != (ssize_t)step)
            rc = errno ? -errno : -EIO;
        done += (int64_t)step;
    }
    free(buffer);
    if (rc == 0 && ftruncate(fd, length) != 0)
        rc = -errno;
    return rc;
}

/* Whether a ranged download holds exactly the bytes asked for. */
static int check_range(int fd, const struct s3_response *response, const char *what, int64_t offset,
                       int64_t length, struct error *err)
{
    if (response->status == 206 && response->downloaded_bytes == length)
        return 0;
    if (response->status == 200 && response->downloaded_bytes >= offset + length) {
        int rc = keep_range(fd, offset, length);
        return rc == 0 ? 0
                       : error_set(err, rc, "%s: cutting bytes %lld+%lld out of the download: %s",
                                   what, (long long)offset, (long long)length, strerror(-rc));
    }
    return error_set(err, -EBADMSG,
                     "%s: asked for bytes %lld+%lld, the server sent %lld (HTTP %ld): the object "
                     "is shorter than its manifest says",
                     what, (long long)offset, (long long)length,
                     (long long)response->downloaded_bytes, response->status);
}

/* The object at `key`, whole (length < 0) or bytes [offset, offset + length). */
static int s3_get(struct target *target, const char *key, int64_t offset, int64_t length,
                  const char *path, char sha256_hex[IO_SHA256_HEX], const struct io_context *io,
                  struct error *err)
{
    struct s3_target *s3 = s3_of(target);
    struct s3_response response = {0};
    char *object_key = full_key(&s3->client, key);
    char what[1200], range[64];
    int rc;
    if (!object_key)
        return error_set(err, -ENOMEM, "out of memory");
    s3_describe_key(&s3->client, object_key, what, sizeof what);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = error_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    struct s3_request request = {.method = "GET", .key = object_key, .download_fd = fd};
    request.progress = report_get_progress;
    request.progress_context = (void *)io;
    if (length >= 0) {
        snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)offset,
                 (long long)(offset + length - 1));
        s3_request_add_header(&request, "range", range);
    }
    rc = s3_perform(&s3->client, s3->curl, &request, &response, io, err);
    if (rc == 0 && length >= 0)
        rc = check_range(fd, &response, what, offset, length, err);
    else if (rc == 0 && response.meta_sha256[0] &&
             strcasecmp(response.meta_sha256, response.downloaded_sha256) != 0)
        rc = error_set(err, -EIO,
                       "%s: the download's sha256 is %s but the object's metadata says %s: "
                       "the stored copy is damaged",
                       what, response.downloaded_sha256, response.meta_sha256);
    /* No fsync: a download is a temporary file that restore reads once and
     * deletes (as target_dir.c's); the restored database is what restore
     * syncs. Syncing 1 GiB here cost about a second for nothing. */
    if (close(fd) != 0 && rc == 0)
        rc = error_set(err, -errno, "cannot write %s: %s", path, strerror(errno));
    if (rc != 0)
        unlink(path);
    else if (length < 0 && sha256_hex)
        snprintf(sha256_hex, IO_SHA256_HEX, "%s", response.downloaded_sha256);
out:
    s3_response_free(&response);
    free(object_key);
    return rc;
}

static int s3_list(struct target *target, const char *prefix, struct target_listing *out,
                   struct error *err)
{
    struct s3_target *s3 = s3_of(target);
    char *list_prefix = full_key(&s3->client, prefix), *token = NULL;
    bool truncated = true;
    int rc = 0;
    if (!list_prefix)
        return error_set(err, -ENOMEM, "out of memory");
    for (int page = 0; truncated && rc == 0; page++) {
        struct s3_request request = {.method = "GET", .download_fd = -1};
        struct s3_response response;
        if (page >= S3_MAX_LIST_PAGES) {
            rc = error_set(err, -E2BIG, "%s: more than %d listing pages", target->description,
                           S3_MAX_LIST_PAGES);
            break;
        }
        s3_request_add_parameter(&request, "list-type", "2");
        s3_request_add_parameter(&request, "prefix", list_prefix);
        if (token)
            s3_request_add_parameter(&request, "continuation-token", token);
        rc = s3_perform(&s3->client, s3->curl, &request, &response, NULL, err);
        char *next = NULL;
        if (rc == 0) {
            rc = s3_xml_parse_listing(response.body, response.body_size, s3->client.prefix, out,
                                      &truncated, &next, err);
            if (rc != 0)
                error_prefix(err, "%s: ", target->description);
        }
        s3_response_free(&response);
        free(token);
        token = next;
    }
    free(token);
    free(list_prefix);
    return rc;
}

static int s3_delete(struct target *target, const char *key, struct error *err)
{
    struct s3_target *s3 = s3_of(target);
    struct s3_response response;
    char *object_key = full_key(&s3->client, key);
    if (!object_key)
        return error_set(err, -ENOMEM, "out of memory");
    struct s3_request request = {.method = "DELETE", .key = object_key, .download_fd = -1};
    int rc = s3_perform(&s3->client, s3->curl, &request, &response, NULL, err);
    if (rc == -ENOENT && response.status == 404 && strstr(err->message, "no such object")) {
        error_clear(err);
        rc = 0; /* already gone: what we wanted */
    }
    s3_response_free(&response);
    free(object_key);
    return rc;
}

static void s3_close(struct target *target)
{
    struct s3_target *s3 = s3_of(target);
    if (!s3)
        return;
    struct s3_client *client = &s3->client;
    credentials_clear(&client->credentials);
    free(client->base_url);
    free(client->host);
    free(client->base_path);
    free(client->bucket);
    free(client->prefix);
    free(client->region);
    free(client->storage_class);
    free(client->sse);
    free(client->sse_kms_key_id);
    if (s3->curl)
        curl_easy_cleanup(s3->curl);
    free(s3);
    target->implementation = NULL;
}

static const struct target_operations s3_operations = {
    .put_source = s3_put_source,
    .get = s3_get,
    .list = s3_list,
    .delete_object = s3_delete,
    .close = s3_close,
};

static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strncmp(host, "localhost:", 10) == 0 || strncmp(host, "[::1]", 5) == 0 ||
           (strlen(host) > 10 && strstr(host, ".localhost") != NULL);
}

/*
 * Splits the endpoint into scheme, authority and path, and derives the URL
 * base, Host header and path prefix for path-style or virtual-hosted access.
 */
static int s3_parse_endpoint(const struct target_config *config, struct s3_client *client,
                             struct error *err)
{
    const char *endpoint = config->endpoint;
    const char *scheme_end = endpoint ? strstr(endpoint, "://") : NULL;
    if (!scheme_end ||
        (strncasecmp(endpoint, "http://", 7) != 0 && strncasecmp(endpoint, "https://", 8) != 0))
        return error_set(err, -EINVAL,
                         "target %s: endpoint must start with https:// (or http:// for a local "
                         "server)",
                         config->name);
    const char *authority = scheme_end + 3;
    size_t authority_length = strcspn(authority, "/?#");
    if (authority_length == 0 || authority[authority_length] == '?' ||
        authority[authority_length] == '#')
        return error_set(err, -EINVAL, "target %s: endpoint %s has no host, or has a query",
                         config->name, endpoint);
    const char *path = authority + authority_length;
    size_t path_length = strlen(path);
    while (path_length > 0 && path[path_length - 1] == '/')
        path_length--;
    int scheme_length = (int)(scheme_end - endpoint);
    int rc;
    char encoded_bucket[256];
    if (sigv4_uri_encode(config->bucket, false, encoded_bucket, sizeof encoded_bucket) < 0)
        return error_set(err, -EINVAL, "target %s: bucket name too long", config->name);
    if (config->path_style) {
        rc = asprintf(&client->base_url, "%.*s://%.*s", scheme_length, endpoint,
                      (int)authority_length, authority);
        if (rc >= 0)
            rc = asprintf(&client->host, "%.*s", (int)authority_length, authority);
        if (rc >= 0)
            rc = asprintf(&client->base_path, "%.*s/%s", (int)path_length, path, encoded_bucket);
    } else {
        rc = asprintf(&client->base_url, "%.*s://%s.%.*s", scheme_length, endpoint, config->bucket,
                      (int)authority_length, authority);
        if (rc >= 0)
            rc = asprintf(&client->host, "%s.%.*s", config->bucket, (int)authority_length,
                          authority);
        if (rc >= 0)
            rc = asprintf(&client->base_path, "%.*s", (int)path_length, path);
    }
    if (rc < 0)
        return error_set(err, -ENOMEM, "target %s: out of memory", config->name);
    if (strncasecmp(endpoint, "http://", 7) == 0 && !is_loopback(client->host))
        log_event(LOG_WARNING, NULL, NULL,
                  "target %s: endpoint %s is plain http to a host that is not this machine: "
                  "archives travel unencrypted; use https",
                  config->name, endpoint);
    return 0;
}

static int copy_optional(char **to, const char *from)
{
    if (!from || !*from)
        return 0;
    *to = strdup(from);
    return *to ? 0 : -ENOMEM;
}

int target_s3_open(const struct target_config *config, struct target *target, struct error *err)
{
    struct s3_target *s3 = calloc(1, sizeof *s3);
    int rc;
    if (!s3)
        return error_set(err, -ENOMEM, "target %s: out of memory", config->name);
    struct s3_client *client = &s3->client;
    target->implementation = s3;
    target->operations = &s3_operations;
    client->target = target;
    if (!config->bucket || !*config->bucket) {
        rc = error_set(err, -EINVAL, "target %s: bucket must be set", config->name);
        goto out;
    }
    pthread_once(&curl_once, curl_initialize);
    if (curl_init_result != CURLE_OK) {
        rc = error_set(err, -EIO, "target %s: libcurl failed to initialise: %s", config->name,
                       curl_easy_strerror(curl_init_result));
        goto out;
    }
    s3_xml_init();
    if ((rc = s3_parse_endpoint(config, client, err)) != 0)
        goto out;
    client->part_size =
        config->part_size >= S3_MIN_PART_SIZE ? config->part_size : 16 * 1024 * 1024;
    client->tls_verify = config->tls_verify;
    if (config->object_lock_days > 0) {
        client->object_lock_mode =
            config->object_lock_mode == OBJECT_LOCK_COMPLIANCE ? "COMPLIANCE" : "GOVERNANCE";
        client->object_lock_days = config->object_lock_days;
    }
    if (copy_optional(&client->bucket, config->bucket) != 0 ||
        copy_optional(&client->region,
                      config->region && *config->region ? config->region : "us-east-1") != 0 ||
        copy_optional(&client->storage_class, config->storage_class) != 0 ||
        copy_optional(&client->sse, config->sse) != 0 ||
        copy_optional(&client->sse_kms_key_id, config->sse_kms_key_id) != 0 ||
        !(client->prefix = strdup(config->prefix ? config->prefix : "")) ||
        !(s3->curl = s3_curl_new())) {
        rc = error_set(err, -ENOMEM, "target %s: out of memory", config->name);
        goto out;
    }
    rc = config->credential ? credentials_load_credential(config->credential, config->profile,
                                                          &client->credentials, err)
                            : credentials_load(config->credentials_file, config->profile,
                                               &client->credentials, err);
    if (rc != 0) {
        error_prefix(err, "target %s: ", config->name);
        goto out;
    }
    snprintf(target->description, sizeof target->description, "s3://%s/%s at %s", client->bucket,
             client->prefix, config->endpoint);
out:
    if (rc != 0)
        s3_close(target);
    return rc;
}
