/*
 * s3.h: the S3 client behind target_s3.c, shared by its files. Calls point
 * down only: target_s3.c -> s3_multipart.c (large uploads) -> s3_http.c (one
 * signed request with retries) -> s3_xml.c (the XML S3 speaks) and sigv4.c
 * -> target_common.c. Not a general S3 SDK: only the calls a backup target
 * needs.
 */
#ifndef SQLPRODD_S3_H
#define SQLPRODD_S3_H

#include <curl/curl.h>
#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/io.h"
#include "offsite/credentials.h"
#include "offsite/sigv4.h"
#include "offsite/target_internal.h"

#define S3_MAX_PARTS         10000
#define S3_MIN_PART_SIZE     (5 * 1024 * 1024)
#define S3_MAX_EXTRA_HEADERS 8
#define S3_MAX_PARAMETERS    4

struct s3_client {
    struct target *target; /* for tuning and description */
    char *base_url;        /* "https://bucket.s3.amazonaws.com", "http://127.0.0.1:9000" */
    char *host;            /* the Host header, as signed */
    char *base_path;       /* "" (virtual-hosted) or "/bucket" (path-style), encoded */
    char *bucket;
    char *prefix; /* the target's key prefix, "" or "db/" */
    char *region;
    char *storage_class; /* NULL: bucket default */
    char *sse;           /* NULL, "AES256", "aws:kms" */
    char *sse_kms_key_id;
    /* Object Lock on every upload: "GOVERNANCE" or "COMPLIANCE" for this many
     * days from the request; NULL: none. */
    const char *object_lock_mode;
    int object_lock_days;
    int64_t part_size;
    bool tls_verify;
    struct credentials credentials;
};

struct s3_request {
    const char *method;
    const char *key; /* the full object key (prefix included), NULL for the bucket */
    struct sigv4_parameter parameters[S3_MAX_PARAMETERS];
    size_t parameter_count;
    struct sigv4_header headers[S3_MAX_EXTRA_HEADERS]; /* signed too */
    size_t header_count;
    const unsigned char *body; /* PUT/POST payload in memory, may be NULL */
    size_t body_size;
    /* Or a PUT payload of body_size bytes read on demand from this reader
     * (a part of a target_source), from offset body_offset on: curl asks
     * for it in pieces, and again from the start on a resend. */
    const struct target_source *body_source;
    void *body_reader;
    int64_t body_offset;
    const char *payload_hash; /* hex SHA-256 of body; computed when NULL */
    int download_fd;          /* >= 0: a 2xx body goes here (rewritten on retry) */
    bool body_may_hold_error; /* CompleteMultipartUpload can fail inside a 200 */
    int attempts;             /* 0: the target's tuning */
    /* Clean-up sent after a stop (AbortMultipartUpload): not cancelled by
     * the stop flag, but bounded to this many milliseconds in all. */
    int64_t despite_stop_ms; /* 0: an ordinary request, cancelled on stop */
    /* Called with the bytes sent or received so far by this attempt; may be NULL. */
    void (*progress)(void *context, int64_t bytes);
    void *progress_context;
};

struct s3_response {
    long status;
    char *body; /* NUL-terminated, or NULL; malloc'ed */
    size_t body_size;
    char etag[128];
    char meta_sha256[IO_SHA256_HEX]; /* x-amz-meta-sha256, "" when absent */
    char request_id[128];
    char downloaded_sha256[IO_SHA256_HEX]; /* with download_fd */
    int64_t downloaded_bytes;
};

/* "s3://bucket/key" for messages (never credentials). */
void s3_describe_key(const struct s3_client *client, const char *key, char *out, size_t size);

/* Adds a signed extra header / query parameter (the strings must outlive the call). */
void s3_request_add_header(struct s3_request *request, const char *name, const char *value);
void s3_request_add_parameter(struct s3_request *request, const char *name, const char *value);

/*
 * Sends `request` on `curl` (one handle per thread), signing every attempt
 * afresh, and retries connection errors, timeouts, 5xx, 408, 429 and
 * SlowDown with backoff (target tuning). Returns 0 on a 2xx, else a negative
 * code with a message naming s3://bucket/key and the likely fix; -ECANCELED
 * once io->stop is set. The response is filled in either case; free it with
 * s3_response_free.
 */
int s3_perform(struct s3_client *client, CURL *curl, const struct s3_request *request,
               struct s3_response *response, const struct io_context *io, struct error *err);
void s3_response_free(struct s3_response *response);

/* Base64 MD5 for Content-MD5 and hex SHA-256 of a buffer. */
void s3_content_md5(const void *data, size_t size, char out[32]);

/* What a body is sent with: its payload SHA-256 (hex), and its Content-MD5
 * (base64) when it was asked for ("" otherwise). */
struct s3_body_hashes {
    char md5[32];
    char sha256[SIGV4_SHA256_HEX];
};

/* The running hashes of a body read in pieces: a single PutObject's, or one
 * part's of a multipart upload. */
struct s3_body_hashing {
    struct io_sha256 sha;
    EVP_MD_CTX *md5; /* NULL: no Content-MD5 */
};

/* 0, or -ENOMEM. s3_body_hashing_discard is safe after a failure. */
int s3_body_hashing_begin(struct s3_body_hashing *hashing, bool md5);
void s3_body_hashing_update(struct s3_body_hashing *hashing, const void *data, size_t size);
/* Writes the hashes and frees what begin took. */
void s3_body_hashing_end(struct s3_body_hashing *hashing, struct s3_body_hashes *out);
void s3_body_hashing_discard(struct s3_body_hashing *hashing);

/* s3_xml.c. Each returns 0, or -EPROTO when the XML is not what S3 sends. */
struct s3_error_document {
    char code[64];
    char message[512];
    char region[64]; /* the bucket's region, when S3 says */
};
int s3_xml_parse_error(const char *xml, size_t size, struct s3_error_document *out);
int s3_xml_parse_upload_id(const char *xml, size_t size, char *upload_id, size_t upload_id_size);
/* One page of ListObjectsV2: adds keys starting with `strip` (minus it) to out. */
int s3_xml_parse_listing(const char *xml, size_t size, const char *strip,
                         struct target_listing *out, bool *truncated, char **next_token,
                         struct error *err);
/* <CompleteMultipartUpload> for parts 1..count; *out is malloc'ed. */
int s3_xml_complete_body(char (*etags)[128], size_t count, char **out, size_t *out_size);
void s3_xml_init(void);

/* s3_multipart.c: uploads `source` to `key` (target_put_source). */
int s3_upload_multipart(struct s3_client *client, CURL *curl, const char *key,
                        const struct target_source *source, const char *sha256_hex,
                        char stored_sha256[IO_SHA256_HEX], const struct io_context *io,
                        struct error *err);

/* "2026-12-02T10:00:00Z" and its NUL. */
#define S3_DATE_SIZE 21

/* Headers every new object carries: metadata sha256, storage class, SSE and,
 * on a target with Object Lock, its mode and the date `now` + days, written
 * into `retain_until` (which must outlive the request). S3 refuses Object
 * Lock headers without Content-MD5 or an x-amz-checksum-* on PutObject and
 * on every UploadPart of such an upload: the callers send Content-MD5. */
void s3_request_add_object_headers(const struct s3_client *client, struct s3_request *request,
                                   const char *sha256_hex, time_t now,
                                   char retain_until[S3_DATE_SIZE]);

CURL *s3_curl_new(void);

#endif
