/*
 * s3_multipart.c: uploading a large source (a file, or an archive sealed on
 * the way) as an S3 multipart upload.
 *
 * A few worker threads (target tuning: parallel_parts), each with its own
 * curl handle and its own reader of the source, take parts in order. A
 * part is never held in memory: a first pass reads it through a 1 MiB
 * buffer for its Content-MD5 (which S3 checks) and payload SHA-256 (which
 * the signature covers), then curl reads it again, piece by piece, as it
 * sends. So memory stays at a few MiB whatever the part size and the
 * source's size, while parts still go in parallel. One more thread hashes
 * the whole source in order.
 *
 * When the caller knows the source's SHA-256 (a file and its manifest),
 * each part is hashed and sent in one go, and the upload is completed only
 * if the whole hash matches. When it does not (an archive sealed on the
 * way, whose SHA-256 exists only once it is encrypted), every part is
 * hashed first, along with the whole, because CreateMultipartUpload must
 * carry x-amz-meta-sha256; the parts then go with the payload SHA-256 of
 * that first pass (signed; no Content-MD5, which would be a third hash of
 * every byte, but on a target with Object Lock, where S3 requires it), so a
 * source that reads differently the second time is refused by S3 rather
 * than stored. A failed or cancelled upload is aborted so no invisible
 * parts are left to pay for. Not for small sources (target_s3.c sends those
 * in one PutObject).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/io.h"
#include "core/log.h"
#include "offsite/s3.h"

#define MULTIPART_READ_BYTES (1024 * 1024)

/* What a part is sent with: its payload SHA-256, and its Content-MD5 when
 * it is hashed as it is sent ("" after a first pass). */
struct part_hashes {
    char md5[32];
    char sha256[SIGV4_SHA256_HEX];
};

struct multipart {
    struct s3_client *client;
    const char *key;
    char upload_id[1024];
    const struct target_source *source;
    int64_t size;
    int64_t part_size;
    size_t part_count;
    char (*etags)[128];
    struct part_hashes *hashes; /* by part, from the first pass; NULL: hashed as sent */
    bool sending;               /* false during the first pass */
    const struct io_context *io;
    char source_sha256[IO_SHA256_HEX]; /* by the hashing thread */

    pthread_mutex_t lock; /* guards everything below */
    size_t next_part;     /* index of the next part to hash or send */
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

static bool multipart_failed(struct multipart *upload)
{
    pthread_mutex_lock(&upload->lock);
    bool failed = upload->failed;
    pthread_mutex_unlock(&upload->lock);
    return failed;
}

/* The whole source's SHA-256, in order, alongside the parts. */
static void *multipart_hash_source(void *context)
{
    struct multipart *upload = context;
    const struct target_source *source = upload->source;
    struct error error = {0};
    unsigned char *buffer = malloc(MULTIPART_READ_BYTES);
    struct io_sha256 hash = {0};
    void *reader = NULL;
    if (!buffer || io_sha256_begin(&hash) != 0) {
        error_set(&error, -ENOMEM, "out of memory hashing %s for %s", source->name, upload->key);
        goto out;
    }
    if (source->open_reader(source->context, &reader, &error) != 0)
        goto out;
    for (int64_t offset = 0; offset < upload->size; offset += MULTIPART_READ_BYTES) {
        if (multipart_failed(upload) || io_stopped(upload->io))
            goto out;
        int64_t left = upload->size - offset;
        size_t length = (size_t)(left < MULTIPART_READ_BYTES ? left : MULTIPART_READ_BYTES);
        if (source->read(reader, buffer, length, offset, &error) != 0)
            goto out;
        io_sha256_update(&hash, buffer, length);
    }
    io_sha256_end(&hash, upload->source_sha256);
out:
    if (error.code)
        multipart_fail(upload, &error);
    if (reader)
        source->close_reader(reader);
    io_sha256_discard(&hash);
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

/* A part's SHA-256 (hex), and its Content-MD5 (base64) when `md5`. */
static int hash_part(struct multipart *upload, void *reader, unsigned char *buffer, int64_t offset,
                     size_t length, bool md5, struct part_hashes *hashes, struct error *error)
{
    const struct target_source *source = upload->source;
    EVP_MD_CTX *md5_context = md5 ? EVP_MD_CTX_new() : NULL;
    struct io_sha256 sha = {0};
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_length = 0;
    int rc = 0;
    hashes->md5[0] = '\0';
    if ((md5 && (!md5_context || EVP_DigestInit_ex(md5_context, EVP_md5(), NULL) != 1)) ||
        io_sha256_begin(&sha) != 0) {
        rc = error_set(error, -ENOMEM, "out of memory hashing %s", source->name);
        goto out;
    }
    for (size_t done = 0; done < length;) {
        size_t chunk = length - done < MULTIPART_READ_BYTES ? length - done : MULTIPART_READ_BYTES;
        if ((rc = source->read(reader, buffer, chunk, offset + (int64_t)done, error)) != 0)
            goto out;
        if (md5)
            EVP_DigestUpdate(md5_context, buffer, chunk);
        io_sha256_update(&sha, buffer, chunk);
        done += chunk;
    }
    if (md5) {
        EVP_DigestFinal_ex(md5_context, digest, &digest_length);
        EVP_EncodeBlock((unsigned char *)hashes->md5, digest, (int)digest_length);
    }
    io_sha256_end(&sha, hashes->sha256);
out:
    EVP_MD_CTX_free(md5_context);
    io_sha256_discard(&sha);
    return rc;
}

/* Sends part `index` (`length` bytes from `offset`) with its hashes. */
static int send_part(struct multipart *upload, CURL *curl, void *reader, size_t index,
                     int64_t offset, size_t length, const struct part_hashes *hashes,
                     struct error *error)
{
    char number[24];
    struct s3_request request = {.method = "PUT", .key = upload->key, .download_fd = -1};
    struct s3_response response = {0};
    snprintf(number, sizeof number, "%zu", index + 1);
    s3_request_add_parameter(&request, "partNumber", number);
    s3_request_add_parameter(&request, "uploadId", upload->upload_id);
    if (hashes->md5[0])
        s3_request_add_header(&request, "Content-MD5", hashes->md5);
    request.body_source = upload->source;
    request.body_reader = reader;
    request.body_offset = offset;
    request.body_size = length;
    request.payload_hash = hashes->sha256;
    int rc = s3_perform(upload->client, curl, &request, &response, upload->io, error);
    if (rc == 0 && !response.etag[0])
        rc = error_set(error, -EPROTO, "the server sent no ETag for %s", upload->key);
    if (rc == 0)
        memcpy(upload->etags[index], response.etag, sizeof upload->etags[index]);
    s3_response_free(&response);
    return rc;
}

/* One part's turn: hashed (first pass, or as it is sent), then sent. */
static int process_part(struct multipart *upload, CURL *curl, void *reader, unsigned char *buffer,
                        size_t index, int64_t offset, size_t length, struct error *error)
{
    struct part_hashes local, *hashes = upload->hashes ? &upload->hashes[index] : &local;
    int rc = 0;
    /* The first pass gives no Content-MD5: MD5 is the slowest of its
     * hashes (0.7 GB/s here against 1.8 for SHA-256), and for a part whose
     * payload SHA-256 is signed, S3 checks that instead (UploadPart). But
     * not on a target with Object Lock: there S3 refuses an UploadPart
     * without Content-MD5 (or x-amz-checksum-*), whatever was signed. */
    bool md5 = !upload->hashes || upload->client->object_lock_mode;
    if (!upload->hashes || !upload->sending)
        rc = hash_part(upload, reader, buffer, offset, length, md5, hashes, error);
    if (rc == 0 && upload->sending)
        rc = send_part(upload, curl, reader, index, offset, length, hashes, error);
    if (rc != 0)
        error_prefix(error, "part %zu: ", index + 1);
    return rc;
}

static void *multipart_worker(void *context)
{
    struct multipart *upload = context;
    const struct target_source *source = upload->source;
    struct error error = {0};
    CURL *curl = upload->sending ? s3_curl_new() : NULL;
    unsigned char *buffer = malloc(MULTIPART_READ_BYTES);
    void *reader = NULL;
    size_t index, length;
    int64_t offset;
    if ((upload->sending && !curl) || !buffer) {
        error_set(&error, -ENOMEM, "out of memory for an upload worker");
        multipart_fail(upload, &error);
        goto out;
    }
    if (source->open_reader(source->context, &reader, &error) != 0) {
        multipart_fail(upload, &error);
        goto out;
    }
    while (take_part(upload, &index, &offset, &length)) {
        if (process_part(upload, curl, reader, buffer, index, offset, length, &error) != 0) {
            multipart_fail(upload, &error);
            break;
        }
        if (upload->sending) {
            pthread_mutex_lock(&upload->lock);
            upload->done += (int64_t)length;
            io_report_progress(upload->io, upload->done, upload->size);
            pthread_mutex_unlock(&upload->lock);
        }
    }
out:
    if (reader)
        source->close_reader(reader);
    free(buffer);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

/* Runs the workers over every part, and the whole hash with them when
 * asked; the calling thread is one of the workers. Helper threads block
 * signals: those belong to the agent's thread. */
static void run_workers(struct multipart *upload, bool hash_source)
{
    int wanted = upload->client->target->tuning.parallel_parts;
    if ((size_t)wanted > upload->part_count)
        wanted = (int)upload->part_count;
    pthread_t threads[65];
    int started = 0;
    if (wanted > 64)
        wanted = 64;
    upload->next_part = 0;
    bool hashing = hash_source && io_thread_start(&threads[0], multipart_hash_source, upload) == 0;
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
    else if (hash_source)
        multipart_hash_source(upload);
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

/* The first pass of an upload whose SHA-256 the caller does not know:
 * every part's hashes and the whole's, before anything is sent. */
static int hash_first(struct multipart *upload, const char *what, struct error *err)
{
    upload->hashes = calloc(upload->part_count, sizeof *upload->hashes);
    if (!upload->hashes)
        return error_set(err, -ENOMEM, "%s: out of memory", what);
    upload->sending = false;
    run_workers(upload, true);
    upload->sending = true;
    if (upload->failed) {
        *err = upload->error;
        return upload->error.code ? upload->error.code : -EIO;
    }
    if (io_stopped(upload->io))
        return error_set(err, -ECANCELED, "%s: upload cancelled", what);
    return 0;
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
        .sending = true,
        .io = io,
    };
    char what[1200];
    bool created = false;
    int rc;

    s3_describe_key(client, key, what, sizeof what);
    upload.part_size = choose_part_size(client->part_size, upload.size);
    upload.part_count = (size_t)((upload.size + upload.part_size - 1) / upload.part_size);
    upload.etags = calloc(upload.part_count, sizeof *upload.etags);
    pthread_mutex_init(&upload.lock, NULL);
    if (!upload.etags) {
        rc = error_set(err, -ENOMEM, "%s: out of memory", what);
        goto out;
    }
    /* The object's SHA-256: the caller's, checked against what was sent,
     * or the first pass's, whose parts S3 checks one by one. */
    const char *object_sha256 = sha256_hex;
    if (!sha256_hex) {
        if ((rc = hash_first(&upload, what, err)) != 0)
            goto out;
        object_sha256 = upload.source_sha256;
    }
    if ((rc = create_upload(&upload, curl, object_sha256, err)) != 0)
        goto out;
    created = true;

    run_workers(&upload, !upload.hashes);
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
        rc = error_set(err, -EIO,
                       "%s: the local file changed or is corrupt (sha256 %s, the manifest says "
                       "%s); upload abandoned",
                       what, upload.source_sha256, sha256_hex);
        goto out;
    }
    if ((rc = complete_upload(&upload, curl, object_sha256, err)) == 0) {
        created = false;
        snprintf(stored_sha256, IO_SHA256_HEX, "%s", object_sha256);
    }
out:
    if (created)
        abort_upload(&upload, curl);
    pthread_mutex_destroy(&upload.lock);
    free(upload.hashes);
    free(upload.etags);
    return rc;
}
