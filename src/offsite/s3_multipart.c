/*
 * s3_multipart.c: uploading a large source (a file, or an archive sealed on
 * the way) as an S3 multipart upload.
 *
 * One pass of hashing, ahead of the sending: a hashing thread reads the
 * source once, in order, and computes the whole's SHA-256 and, part by
 * part, each part's payload SHA-256 (which the signature covers and S3
 * checks) and, on a target with Object Lock, its Content-MD5 (which S3 then
 * requires). A few worker threads (target tuning: parallel_parts), each
 * with its own curl handle and reader, send parts in order, each as soon as
 * the hashing thread has passed it. A part is never held in memory (curl
 * reads it piece by piece as it sends), so memory stays at a few MiB
 * whatever the part size and the source's size.
 *
 * What S3 stores is therefore exactly what was hashed: a part that reads
 * differently when it is sent than when it was hashed is refused by its
 * signed payload hash. When the caller knows the source's SHA-256 (a file
 * and its manifest), it is the object's x-amz-meta-sha256 and the upload is
 * completed only if the whole hash matches. When it does not (an archive
 * sealed on the way, whose SHA-256 exists only once it is encrypted), the
 * object goes without that metadata, the hash of what was stored is handed
 * back for the manifest, and the source's own check (target_source.check:
 * the plaintext read matches its manifest) must pass before the upload is
 * completed. Hashing the whole first so that CreateMultipartUpload could
 * carry it cost 2.2 s per GiB before anything was sent (bench/README.md).
 * A failed or cancelled upload is aborted so no invisible parts are left to
 * pay for. Not for small sources (target_s3.c sends those in one PutObject).
 *
 * A source with a stage directory (target_source.stage_directory: bytes
 * fetched back from the target, which a second read would download again)
 * is read once: the hashing thread writes each part to a file there as it
 * hashes it, the worker sends that file and removes it, and the hashing
 * thread waits while parallel_parts + 1 parts are staged, so the local disk
 * holds a few parts, never the object.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/io.h"
#include "core/log.h"
#include "offsite/s3.h"

#define MULTIPART_READ_BYTES (1024 * 1024)

struct multipart {
    struct s3_client *client;
    const char *key;
    char upload_id[1024];
    const struct target_source *source;
    int64_t size;
    int64_t part_size;
    size_t part_count;
    char (*etags)[128];
    struct s3_body_hashes *hashes; /* by part, written by the hashing thread */
    const struct io_context *io;
    char source_sha256[IO_SHA256_HEX]; /* by the hashing thread, at its end */
    const char *stage;                 /* the source's stage_directory, or NULL */
    size_t stage_limit;                /* parts staged at once, at most */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t hashed; /* hashed_parts grew, or the upload failed */
    size_t hashed_parts;   /* hashes[0 .. hashed_parts) are ready */
    size_t next_part;      /* index of the next part to send */
    size_t staged;         /* parts staged and not yet sent */
    int64_t done;
    bool failed;
    struct error error; /* the first failure */
};

static void multipart_fail(struct multipart *upload, const struct error *error)
{
    pthread_mutex_lock(&upload->lock);
    if (!upload->failed) {
        upload->failed = true;
        upload->error = *error;
    }
    pthread_cond_broadcast(&upload->hashed);
    pthread_mutex_unlock(&upload->lock);
}

static bool multipart_failed(struct multipart *upload)
{
    pthread_mutex_lock(&upload->lock);
    bool failed = upload->failed;
    pthread_mutex_unlock(&upload->lock);
    return failed;
}

/* Waits on the upload's condition for at most 100 ms (lock held): a stop
 * is a signal's flag, not something a condition variable hears. */
static void wait_a_moment(struct multipart *upload)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000 * 1000;
    if (until.tv_nsec >= 1000 * 1000 * 1000) {
        until.tv_sec++;
        until.tv_nsec -= 1000 * 1000 * 1000;
    }
    pthread_cond_timedwait(&upload->hashed, &upload->lock, &until);
}

static void stage_path(const struct multipart *upload, size_t index, char path[PATH_MAX])
{
    snprintf(path, PATH_MAX, "%s/part-%05zu", upload->stage, index + 1);
}

/* Waits until a part may be staged, and counts it: false when the upload
 * failed or we stop. */
static bool take_stage_room(struct multipart *upload)
{
    pthread_mutex_lock(&upload->lock);
    while (!upload->failed && upload->staged >= upload->stage_limit && !io_stopped(upload->io))
        wait_a_moment(upload);
    bool room = !upload->failed && upload->staged < upload->stage_limit;
    if (room)
        upload->staged++;
    pthread_mutex_unlock(&upload->lock);
    return room;
}

/* The hashing thread: the source once, in order; each part's hashes are
 * published as soon as its last byte is read, the whole's at the end. */
static void *multipart_hash_source(void *context)
{
    struct multipart *upload = context;
    const struct target_source *source = upload->source;
    struct error error = {0};
    unsigned char *buffer = malloc(MULTIPART_READ_BYTES);
    struct io_sha256 whole = {0};
    struct s3_body_hashing part = {0};
    bool md5 = upload->client->object_lock_mode != NULL;
    void *reader = NULL;
    int stage_fd = -1;
    char stage[PATH_MAX];
    if (!buffer || io_sha256_begin(&whole) != 0 || s3_body_hashing_begin(&part, md5) != 0) {
        error_set(&error, -ENOMEM, "out of memory hashing %s for %s", source->name, upload->key);
        goto out;
    }
    if (source->open_reader(source->context, &reader, &error) != 0)
        goto out;
    for (size_t index = 0; index < upload->part_count; index++) {
        int64_t first = (int64_t)index * upload->part_size;
        int64_t end =
            first + upload->part_size < upload->size ? first + upload->part_size : upload->size;
        if (upload->stage) {
            if (!take_stage_room(upload))
                goto out;
            stage_path(upload, index, stage);
            stage_fd = open(stage, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (stage_fd < 0) {
                error_set(&error, -errno, "cannot stage part %zu of %s in %s: %s", index + 1,
                          upload->key, stage, strerror(errno));
                goto out;
            }
        }
        for (int64_t offset = first; offset < end; offset += MULTIPART_READ_BYTES) {
            if (multipart_failed(upload) || io_stopped(upload->io))
                goto out;
            int64_t left = end - offset;
            size_t length = (size_t)(left < MULTIPART_READ_BYTES ? left : MULTIPART_READ_BYTES);
            if (source->read(reader, buffer, length, offset, &error) != 0)
                goto out;
            io_sha256_update(&whole, buffer, length);
            s3_body_hashing_update(&part, buffer, length);
            int rc = stage_fd >= 0 ? io_write_full(stage_fd, buffer, length) : 0;
            if (rc != 0) {
                error_set(&error, rc, "cannot stage part %zu of %s in %s: %s", index + 1,
                          upload->key, stage, strerror(-rc));
                goto out;
            }
        }
        if (stage_fd >= 0) {
            int rc = close(stage_fd);
            stage_fd = -1;
            if (rc != 0) {
                error_set(&error, -errno, "cannot stage part %zu of %s in %s: %s", index + 1,
                          upload->key, stage, strerror(errno));
                goto out;
            }
        }
        s3_body_hashing_end(&part, &upload->hashes[index]);
        pthread_mutex_lock(&upload->lock);
        upload->hashed_parts = index + 1;
        pthread_cond_broadcast(&upload->hashed);
        pthread_mutex_unlock(&upload->lock);
        if (index + 1 < upload->part_count && s3_body_hashing_begin(&part, md5) != 0) {
            error_set(&error, -ENOMEM, "out of memory hashing %s for %s", source->name,
                      upload->key);
            goto out;
        }
    }
    /* Every byte was read once, in order: what the source checks. */
    if (source->check && source->check(reader, &error) != 0)
        goto out;
    io_sha256_end(&whole, upload->source_sha256);
out:
    if (error.code)
        multipart_fail(upload, &error);
    if (stage_fd >= 0)
        close(stage_fd);
    if (reader)
        source->close_reader(reader);
    s3_body_hashing_discard(&part);
    io_sha256_discard(&whole);
    free(buffer);
    return NULL;
}

/* Takes the next part's number; false when none is left or we stop. */
static bool take_part(struct multipart *upload, size_t *index, int64_t *offset, size_t *length)
{
    bool taken = false;
    pthread_mutex_lock(&upload->lock);
    if (!upload->failed && upload->next_part < upload->part_count && !io_stopped(upload->io)) {
        *index = upload->next_part++;
        *offset = (int64_t)*index * upload->part_size;
        int64_t left = upload->size - *offset;
        *length = (size_t)(left < upload->part_size ? left : upload->part_size);
        taken = true;
    }
    pthread_mutex_unlock(&upload->lock);
    return taken;
}

/* Waits until part `index` is hashed: false when the upload failed or we
 * stop. */
static bool wait_hashed(struct multipart *upload, size_t index)
{
    pthread_mutex_lock(&upload->lock);
    while (!upload->failed && upload->hashed_parts <= index && !io_stopped(upload->io))
        wait_a_moment(upload);
    bool ready = !upload->failed && upload->hashed_parts > index;
    pthread_mutex_unlock(&upload->lock);
    return ready;
}

/* Sends part `index` (`length` bytes from `offset`) with its hashes: from
 * the source, or from the file it was staged in (removed once sent). */
static int send_part(struct multipart *upload, CURL *curl, void *reader, size_t index,
                     int64_t offset, size_t length, const struct s3_body_hashes *hashes,
                     struct error *error)
{
    char number[24], stage[PATH_MAX];
    struct s3_request request = {.method = "PUT", .key = upload->key, .download_fd = -1};
    struct s3_response response = {0};
    struct target_file staged = {.fd = -1};
    struct target_source staged_source;
    int rc;
    snprintf(number, sizeof number, "%zu", index + 1);
    s3_request_add_parameter(&request, "partNumber", number);
    s3_request_add_parameter(&request, "uploadId", upload->upload_id);
    if (hashes->md5[0])
        s3_request_add_header(&request, "Content-MD5", hashes->md5);
    request.body_source = upload->source;
    request.body_reader = reader;
    request.body_offset = offset;
    if (upload->stage) {
        stage_path(upload, index, stage);
        if ((rc = target_file_open(stage, &staged, &staged_source, error)) != 0)
            return rc;
        request.body_source = &staged_source;
        request.body_reader = &staged;
        request.body_offset = 0;
    }
    request.body_size = length;
    request.payload_hash = hashes->sha256;
    rc = s3_perform(upload->client, curl, &request, &response, upload->io, error);
    if (upload->stage) {
        target_file_close(&staged);
        if (rc == 0) {
            unlink(stage);
            pthread_mutex_lock(&upload->lock);
            upload->staged--;
            pthread_cond_broadcast(&upload->hashed);
            pthread_mutex_unlock(&upload->lock);
        }
    }
    if (rc == 0 && !response.etag[0])
        rc = error_set(error, -EPROTO, "the server sent no ETag for %s", upload->key);
    if (rc == 0)
        memcpy(upload->etags[index], response.etag, sizeof upload->etags[index]);
    s3_response_free(&response);
    if (rc != 0)
        error_prefix(error, "part %zu: ", index + 1);
    return rc;
}

static void *multipart_worker(void *context)
{
    struct multipart *upload = context;
    const struct target_source *source = upload->source;
    struct error error = {0};
    CURL *curl = s3_curl_new();
    void *reader = NULL;
    size_t index, length;
    int64_t offset;
    if (!curl) {
        error_set(&error, -ENOMEM, "out of memory for an upload worker");
        multipart_fail(upload, &error);
        goto out;
    }
    if (!upload->stage && source->open_reader(source->context, &reader, &error) != 0) {
        multipart_fail(upload, &error);
        goto out;
    }
    while (take_part(upload, &index, &offset, &length)) {
        if (!wait_hashed(upload, index))
            break;
        if (send_part(upload, curl, reader, index, offset, length, &upload->hashes[index],
                      &error) != 0) {
            multipart_fail(upload, &error);
            break;
        }
        pthread_mutex_lock(&upload->lock);
        upload->done += (int64_t)length;
        io_report_progress(upload->io, upload->done, upload->size);
        pthread_mutex_unlock(&upload->lock);
    }
out:
    if (reader)
        source->close_reader(reader);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

/* Runs the hashing thread and the workers over every part; the calling
 * thread is one of the workers. Helper threads block signals: those belong
 * to the agent's thread. Without a thread for the hashing, it runs first,
 * here: slower, not wrong. */
static void run_workers(struct multipart *upload)
{
    int wanted = upload->client->target->tuning.parallel_parts;
    if ((size_t)wanted > upload->part_count)
        wanted = (int)upload->part_count;
    pthread_t threads[65];
    int started = 0;
    if (wanted > 64)
        wanted = 64;
    upload->next_part = 0;
    upload->stage_limit = (size_t)wanted + 1;
    bool hashing = io_thread_start(&threads[0], multipart_hash_source, upload) == 0;
    if (!hashing && upload->stage) {
        /* Hashing first would stage the whole object before any part went. */
        struct error error;
        error_set(&error, -EAGAIN, "%s: cannot start the hashing thread", upload->key);
        multipart_fail(upload, &error);
        return;
    }
    if (!hashing)
        multipart_hash_source(upload);
    for (int i = 1; i < wanted; i++) {
        if (io_thread_start(&threads[1 + started], multipart_worker, upload) != 0)
            break; /* fewer threads is slower, not wrong */
        started++;
    }
    multipart_worker(upload);
    for (int i = 0; i < started; i++)
        pthread_join(threads[1 + i], NULL);
    if (hashing)
        pthread_join(threads[0], NULL);
}

static int create_upload(struct multipart *upload, CURL *curl, const char *sha256_hex,
                         struct error *err)
{
    struct s3_request request = {.method = "POST", .key = upload->key, .download_fd = -1};
    struct s3_response response;
    char retain_until[S3_DATE_SIZE];
    s3_request_add_parameter(&request, "uploads", "");
    s3_request_add_object_headers(upload->client, &request, sha256_hex, time(NULL), retain_until);
    int rc = s3_perform(upload->client, curl, &request, &response, upload->io, err);
    if (rc == 0 && s3_xml_parse_upload_id(response.body, response.body_size, upload->upload_id,
                                          sizeof upload->upload_id) != 0) {
        char what[1200];
        s3_describe_key(upload->client, upload->key, what, sizeof what);
        rc =
            error_set(err, -EPROTO, "%s: CreateMultipartUpload answered without an UploadId", what);
    }
    s3_response_free(&response);
    return rc;
}

/* Best effort, one attempt even when stopping, of at most 3 s so that a
 * server that never answers cannot hold up SIGTERM: a failed abort leaves
 * parts that a lifecycle rule (AbortIncompleteMultipartUpload) cleans up. */
static void abort_upload(struct multipart *upload, CURL *curl)
{
    struct s3_request request = {.method = "DELETE", .key = upload->key, .download_fd = -1};
    struct s3_response response;
    struct error error = {0};
    char what[1200];
    s3_describe_key(upload->client, upload->key, what, sizeof what);
    s3_request_add_parameter(&request, "uploadId", upload->upload_id);
    request.attempts = 1;
    request.despite_stop_ms = 3000; /* SIGTERM ends everything within 5 s */
    int rc = s3_perform(upload->client, curl, &request, &response, NULL, &error);
    if (rc == -EOPNOTSUPP)
        log_event(LOG_NOTICE, NULL, NULL,
                  "%s: this server does not support AbortMultipartUpload (HTTP %ld); its "
                  "incomplete upload may keep the parts already sent",
                  what, response.status);
    else if (rc != 0 && response.status != 404)
        log_event(LOG_WARNING, NULL, NULL,
                  "%s: could not abort the incomplete multipart upload: %s; a bucket lifecycle "
                  "rule AbortIncompleteMultipartUpload removes such parts",
                  what, error.message);
    s3_response_free(&response);
}

static int complete_upload(struct multipart *upload, CURL *curl, const char *sha256_hex,
                           struct error *err)
{
    struct s3_request request = {.method = "POST", .key = upload->key, .download_fd = -1};
    struct s3_response response = {0};
    char *body = NULL;
    size_t body_size = 0;
    if (s3_xml_complete_body(upload->etags, upload->part_count, &body, &body_size) != 0)
        return error_set(err, -ENOMEM, "out of memory completing %s", upload->key);
    s3_request_add_parameter(&request, "uploadId", upload->upload_id);
    s3_request_add_header(&request, "Content-Type", "application/xml");
    request.body = (const unsigned char *)body;
    request.body_size = body_size;
    request.body_may_hold_error = true;
    int rc = s3_perform(upload->client, curl, &request, &response, upload->io, err);
    s3_response_free(&response);
    if (rc == -ENOENT && sha256_hex) {
        /* NoSuchUpload after a retry: the first attempt may have completed it. */
        struct s3_request head = {.method = "HEAD", .key = upload->key, .download_fd = -1};
        struct error ignored;
        if (s3_perform(upload->client, curl, &head, &response, upload->io, &ignored) == 0 &&
            strcmp(response.meta_sha256, sha256_hex) == 0)
            rc = 0;
        s3_response_free(&response);
    }
    free(body);
    return rc;
}

/* The part size for `size` bytes: the configured one, doubled until S3's
 * 10000-part limit holds. */
static int64_t choose_part_size(int64_t configured, int64_t size)
{
    int64_t part_size = configured < S3_MIN_PART_SIZE ? S3_MIN_PART_SIZE : configured;
    while ((size + part_size - 1) / part_size > S3_MAX_PARTS)
        part_size *= 2;
    return part_size;
}

int s3_upload_multipart(struct s3_client *client, CURL *curl, const char *key,
                        const struct target_source *source, const char *sha256_hex,
                        char stored_sha256[IO_SHA256_HEX], const struct io_context *io,
                        struct error *err)
{
    struct multipart upload = {
        .client = client,
        .key = key,
        .source = source,
        .size = source->size,
        .io = io,
        .stage = source->stage_directory,
    };
    char what[1200];
    bool created = false;
    int rc;

    s3_describe_key(client, key, what, sizeof what);
    upload.part_size = choose_part_size(client->part_size, upload.size);
    upload.part_count = (size_t)((upload.size + upload.part_size - 1) / upload.part_size);
    upload.etags = calloc(upload.part_count, sizeof *upload.etags);
    upload.hashes = calloc(upload.part_count, sizeof *upload.hashes);
    pthread_mutex_init(&upload.lock, NULL);
    pthread_cond_init(&upload.hashed, NULL);
    if (!upload.etags || !upload.hashes) {
        rc = error_set(err, -ENOMEM, "%s: out of memory", what);
        goto out;
    }
    if ((rc = create_upload(&upload, curl, sha256_hex, err)) != 0)
        goto out;
    created = true;

    run_workers(&upload);
    if (upload.failed) {
        *err = upload.error;
        rc = upload.error.code ? upload.error.code : -EIO;
        goto out;
    }
    if (io_stopped(io)) {
        rc = error_set(err, -ECANCELED, "%s: upload cancelled", what);
        goto out;
    }
    if (sha256_hex && strcmp(upload.source_sha256, sha256_hex) != 0) {
        rc = error_set(err, -EBADMSG,
                       "%s: the local file changed or is corrupt (sha256 %s, the manifest says "
                       "%s); upload abandoned",
                       what, upload.source_sha256, sha256_hex);
        goto out;
    }
    if ((rc = complete_upload(&upload, curl, sha256_hex, err)) == 0) {
        created = false;
        if (stored_sha256)
            snprintf(stored_sha256, IO_SHA256_HEX, "%s", upload.source_sha256);
    }
out:
    if (created)
        abort_upload(&upload, curl);
    for (size_t index = 0; upload.stage && index < upload.part_count; index++) {
        char stage[PATH_MAX];
        stage_path(&upload, index, stage);
        unlink(stage); /* a part hashed and never sent */
    }
    pthread_cond_destroy(&upload.hashed);
    pthread_mutex_destroy(&upload.lock);
    free(upload.hashes);
    free(upload.etags);
    return rc;
}
