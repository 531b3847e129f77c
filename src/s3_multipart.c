/*
 * s3_multipart.c: uploading a large file as an S3 multipart upload.
 *
 * A few worker threads (target tuning: parallel_parts), each with its own
 * curl handle and one part-sized buffer, take parts in order: memory stays at
 * parallel_parts * part_size whatever the file's size. Parts are read under a
 * lock so the whole file's SHA-256 is computed in order on the way, and
 * compared with the manifest's before the upload is completed. Every part
 * carries Content-MD5, which S3 checks. A failed or cancelled upload is
 * aborted so no invisible parts are left to pay for. Not for small files
 * (target_s3.c sends those in one PutObject).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "s3.h"

struct multipart {
    struct s3_client *client;
    const char *key;
    char upload_id[1024];
    int fd;
    int64_t size;
    int64_t part_size;
    size_t part_count;
    char (*etags)[128];
    const struct archive_io *io;

    pthread_mutex_t lock; /* guards everything below, and reading the file */
    size_t next_part;     /* index of the next part to read */
    EVP_MD_CTX *file_hash;
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
    pthread_mutex_unlock(&upload->lock);
}

static int read_part(int fd, unsigned char *buffer, size_t length, int64_t offset)
{
    size_t done = 0;
    while (done < length) {
        ssize_t got = pread(fd, buffer + done, length - done, (off_t)(offset + (int64_t)done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -ENODATA; /* the file shrank under us */
        done += (size_t)got;
    }
    return 0;
}

/* Takes the next part, reads it and feeds the file hash; false when done. */
static bool take_part(struct multipart *upload, unsigned char *buffer, size_t *index,
                      size_t *length, struct error *error)
{
    bool taken = false;
    pthread_mutex_lock(&upload->lock);
    if (!upload->failed && upload->next_part < upload->part_count && !target_stopped(upload->io)) {
        *index = upload->next_part++;
        int64_t offset = (int64_t)*index * upload->part_size;
        int64_t left = upload->size - offset;
        *length = (size_t)(left < upload->part_size ? left : upload->part_size);
        int rc = read_part(upload->fd, buffer, *length, offset);
        if (rc == 0) {
            EVP_DigestUpdate(upload->file_hash, buffer, *length);
            taken = true;
        } else {
            error_set(error, rc, "cannot read part %zu of the file for %s: %s", *index + 1,
                      upload->key, rc == -ENODATA ? "it shrank while uploading" : strerror(-rc));
            upload->failed = true;
            upload->error = *error;
        }
    }
    pthread_mutex_unlock(&upload->lock);
    return taken;
}

static int upload_part(struct multipart *upload, CURL *curl, size_t index,
                       const unsigned char *buffer, size_t length, struct error *error)
{
    char number[24], md5[32], sha256[SIGV4_SHA256_HEX];
    struct s3_request request = {.method = "PUT", .key = upload->key, .download_fd = -1};
    struct s3_response response;
    snprintf(number, sizeof number, "%zu", index + 1);
    s3_content_md5(buffer, length, md5);
    sigv4_sha256_hex(buffer, length, sha256);
    s3_request_add_parameter(&request, "partNumber", number);
    s3_request_add_parameter(&request, "uploadId", upload->upload_id);
    s3_request_add_header(&request, "Content-MD5", md5);
    request.body = buffer;
    request.body_size = length;
    request.payload_hash = sha256;
    int rc = s3_perform(upload->client, curl, &request, &response, upload->io, error);
    if (rc == 0 && !response.etag[0])
        rc = error_set(error, -EPROTO, "part %zu of %s: the server sent no ETag", index + 1,
                       upload->key);
    if (rc == 0)
        memcpy(upload->etags[index], response.etag, sizeof upload->etags[index]);
    else
        error_prefix(error, "part %zu: ", index + 1);
    s3_response_free(&response);
    return rc;
}

static void *multipart_worker(void *context)
{
    struct multipart *upload = context;
    struct error error = {0};
    CURL *curl = s3_curl_new();
    unsigned char *buffer = malloc((size_t)upload->part_size);
    size_t index, length;
    if (!curl || !buffer) {
        error_set(&error, -ENOMEM, "out of memory for a %lld-byte part buffer",
                  (long long)upload->part_size);
        multipart_fail(upload, &error);
        goto out;
    }
    while (take_part(upload, buffer, &index, &length, &error)) {
        if (upload_part(upload, curl, index, buffer, length, &error) != 0) {
            multipart_fail(upload, &error);
            break;
        }
        pthread_mutex_lock(&upload->lock);
        upload->done += (int64_t)length;
        target_report_progress(upload->io, upload->done, upload->size);
        pthread_mutex_unlock(&upload->lock);
    }
out:
    free(buffer);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

/* Runs the workers; the calling thread is one of them. */
static void run_workers(struct multipart *upload)
{
    int wanted = upload->client->target->tuning.parallel_parts;
    if ((size_t)wanted > upload->part_count)
        wanted = (int)upload->part_count;
    pthread_t threads[64];
    int started = 0;
    if (wanted > 64)
        wanted = 64;
    for (int i = 1; i < wanted; i++) {
        if (pthread_create(&threads[started], NULL, multipart_worker, upload) != 0)
            break; /* fewer threads is slower, not wrong */
        started++;
    }
    multipart_worker(upload);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

static int create_upload(struct multipart *upload, CURL *curl, const char *sha256_hex,
                         struct error *err)
{
    struct s3_request request = {.method = "POST", .key = upload->key, .download_fd = -1};
    struct s3_response response;
    s3_request_add_parameter(&request, "uploads", "");
    s3_request_add_object_headers(upload->client, &request, sha256_hex);
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

/* Best effort, one attempt even when stopping: a failed abort leaves parts
 * that a lifecycle rule (AbortIncompleteMultipartUpload) cleans up. */
static void abort_upload(struct multipart *upload, CURL *curl)
{
    struct s3_request request = {.method = "DELETE", .key = upload->key, .download_fd = -1};
    struct s3_response response;
    struct error error = {0};
    char what[1200];
    s3_describe_key(upload->client, upload->key, what, sizeof what);
    s3_request_add_parameter(&request, "uploadId", upload->upload_id);
    request.attempts = 1;
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

int s3_upload_multipart(struct s3_client *client, CURL *curl, const char *key, int fd, int64_t size,
                        const char *sha256_hex, const struct archive_io *io, struct error *err)
{
    struct multipart upload = {
        .client = client,
        .key = key,
        .fd = fd,
        .size = size,
        .io = io,
    };
    char file_sha256[ARCHIVE_SHA256_HEX], what[1200];
    bool created = false;
    int rc;

    s3_describe_key(client, key, what, sizeof what);
    upload.part_size = choose_part_size(client->part_size, size);
    upload.part_count = (size_t)((size + upload.part_size - 1) / upload.part_size);
    upload.etags = calloc(upload.part_count, sizeof *upload.etags);
    upload.file_hash = EVP_MD_CTX_new();
    pthread_mutex_init(&upload.lock, NULL);
    if (!upload.etags || !upload.file_hash ||
        EVP_DigestInit_ex(upload.file_hash, EVP_sha256(), NULL) != 1) {
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
    if (target_stopped(io)) {
        rc = error_set(err, -ECANCELED, "%s: upload cancelled", what);
        goto out;
    }
    unsigned char digest[32];
    EVP_DigestFinal_ex(upload.file_hash, digest, NULL);
    for (int i = 0; i < 32; i++)
        snprintf(file_sha256 + 2 * i, 3, "%02x", digest[i]);
    if (sha256_hex && strcmp(file_sha256, sha256_hex) != 0) {
        rc = error_set(err, -EIO,
                       "%s: the local file changed or is corrupt (sha256 %s, the manifest says "
                       "%s); upload abandoned",
                       what, file_sha256, sha256_hex);
        goto out;
    }
    if ((rc = complete_upload(&upload, curl, sha256_hex, err)) == 0)
        created = false;
out:
    if (created)
        abort_upload(&upload, curl);
    pthread_mutex_destroy(&upload.lock);
    EVP_MD_CTX_free(upload.file_hash);
    free(upload.etags);
    return rc;
}
