/*
 * s3_http.c: one S3 request over libcurl, signed with Signature V4 on every
 * attempt, retried with backoff when the failure is worth retrying, and
 * turned into a message that says what to do when it is not.
 *
 * Not for deciding which requests to make (target_s3.c, s3_multipart.c) nor
 * for parsing listings (s3_xml.c). Credentials go into the signature only:
 * never into a message, a log line or curl's verbose output.
 */
#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/io.h"
#include "core/log.h"
#include "offsite/s3.h"

/* Error documents and listing pages are small; a bigger body is not S3's. */
#define S3_MAX_RESPONSE_BODY (32 * 1024 * 1024)

#ifndef SQLPRODD_VERSION
#define SQLPRODD_VERSION "unknown"
#endif

enum s3_outcome { S3_DONE, S3_RETRY, S3_FAIL };

/* What the curl callbacks of one attempt share. */
struct s3_transfer {
    const struct s3_request *request;
    struct s3_response *response;
    const struct io_context *io;
    size_t upload_offset;
    bool capture;                   /* the current response body goes to memory */
    struct io_sha256 download_hash; /* of a body that goes to download_fd */
    int write_errno;
    bool too_large;
    struct error read_error; /* a body_source that failed to read */
    int64_t progress_seen;
};

void s3_describe_key(const struct s3_client *client, const char *key, char *out, size_t size)
{
    snprintf(out, size, "s3://%s/%s", client->bucket, key ? key : "");
}

void s3_request_add_header(struct s3_request *request, const char *name, const char *value)
{
    assert(request->header_count < S3_MAX_EXTRA_HEADERS);
    request->headers[request->header_count++] = (struct sigv4_header){name, value};
}

void s3_request_add_parameter(struct s3_request *request, const char *name, const char *value)
{
    assert(request->parameter_count < S3_MAX_PARAMETERS);
    request->parameters[request->parameter_count++] = (struct sigv4_parameter){name, value};
}

void s3_request_add_object_headers(const struct s3_client *client, struct s3_request *request,
                                   const char *sha256_hex, time_t now,
                                   char retain_until[S3_DATE_SIZE])
{
    retain_until[0] = '\0';
    if (client->object_lock_mode) {
        struct tm until;
        time_t seconds = now + (time_t)client->object_lock_days * 86400;
        assert(client->object_lock_days > 0);
        /* days <= 36500 (config.c): always a four-digit year, so it fits. */
        size_t written = gmtime_r(&seconds, &until)
                             ? strftime(retain_until, S3_DATE_SIZE, "%Y-%m-%dT%H:%M:%SZ", &until)
                             : 0;
        assert(written == S3_DATE_SIZE - 1);
        (void)written;
        s3_request_add_header(request, "x-amz-object-lock-mode", client->object_lock_mode);
        s3_request_add_header(request, "x-amz-object-lock-retain-until-date", retain_until);
    }
    if (sha256_hex && *sha256_hex)
        s3_request_add_header(request, "x-amz-meta-sha256", sha256_hex);
    if (client->storage_class)
        s3_request_add_header(request, "x-amz-storage-class", client->storage_class);
    if (client->sse)
        s3_request_add_header(request, "x-amz-server-side-encryption", client->sse);
    if (client->sse_kms_key_id)
        s3_request_add_header(request, "x-amz-server-side-encryption-aws-kms-key-id",
                              client->sse_kms_key_id);
}

void s3_content_md5(const void *data, size_t size, char out[32])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(data, size, digest, &length, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)length);
}

int s3_body_hashing_begin(struct s3_body_hashing *hashing, bool md5)
{
    if (md5 && (!(hashing->md5 = EVP_MD_CTX_new()) ||
                EVP_DigestInit_ex(hashing->md5, EVP_md5(), NULL) != 1))
        return -ENOMEM;
    return io_sha256_begin(&hashing->sha);
}

void s3_body_hashing_update(struct s3_body_hashing *hashing, const void *data, size_t size)
{
    io_sha256_update(&hashing->sha, data, size);
    if (hashing->md5)
        EVP_DigestUpdate(hashing->md5, data, size);
}

void s3_body_hashing_end(struct s3_body_hashing *hashing, struct s3_body_hashes *out)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_length = 0;
    out->md5[0] = '\0';
    if (hashing->md5) {
        EVP_DigestFinal_ex(hashing->md5, digest, &digest_length);
        EVP_EncodeBlock((unsigned char *)out->md5, digest, (int)digest_length);
        EVP_MD_CTX_free(hashing->md5);
        hashing->md5 = NULL;
    }
    io_sha256_end(&hashing->sha, out->sha256);
}

void s3_body_hashing_discard(struct s3_body_hashing *hashing)
{
    EVP_MD_CTX_free(hashing->md5);
    hashing->md5 = NULL;
    io_sha256_discard(&hashing->sha);
}

void s3_response_free(struct s3_response *response)
{
    free(response->body);
    response->body = NULL;
    response->body_size = 0;
}

CURL *s3_curl_new(void)
{
    return curl_easy_init();
}

static void copy_header_value(char *out, size_t size, const char *value, size_t length)
{
    while (length > 0 &&
           (value[length - 1] == '\r' || value[length - 1] == '\n' || value[length - 1] == ' '))
        length--;
    while (length > 0 && *value == ' ') {
        value++;
        length--;
    }
    if (length >= size)
        length = size - 1;
    memcpy(out, value, length);
    out[length] = '\0';
}

static size_t on_header(char *data, size_t size, size_t count, void *context)
{
    struct s3_transfer *transfer = context;
    struct s3_response *response = transfer->response;
    size_t length = size * count;
    if (length > 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue too): forget the last one. */
        const char *space = memchr(data, ' ', length);
        response->status = space ? strtol(space + 1, NULL, 10) : 0;
        response->etag[0] = response->meta_sha256[0] = response->request_id[0] = '\0';
        transfer->capture =
            response->status < 200 || response->status >= 300 || transfer->request->download_fd < 0;
        return length;
    }
    const char *colon = memchr(data, ':', length);
    if (!colon)
        return length;
    size_t name_length = (size_t)(colon - data);
    const char *value = colon + 1;
    size_t value_length = length - name_length - 1;
    if (name_length == 4 && strncasecmp(data, "etag", 4) == 0)
        copy_header_value(response->etag, sizeof response->etag, value, value_length);
    else if (name_length == 17 && strncasecmp(data, "x-amz-meta-sha256", 17) == 0)
        copy_header_value(response->meta_sha256, sizeof response->meta_sha256, value, value_length);
    else if (name_length == 16 && strncasecmp(data, "x-amz-request-id", 16) == 0)
        copy_header_value(response->request_id, sizeof response->request_id, value, value_length);
    return length;
}

static size_t on_body(char *data, size_t size, size_t count, void *context)
{
    struct s3_transfer *transfer = context;
    struct s3_response *response = transfer->response;
    size_t length = size * count;
    if (transfer->capture) {
        if (response->body_size + length > S3_MAX_RESPONSE_BODY) {
            transfer->too_large = true;
            return 0;
        }
        char *grown = realloc(response->body, response->body_size + length + 1);
        if (!grown) {
            transfer->write_errno = ENOMEM;
            return 0;
        }
        memcpy(grown + response->body_size, data, length);
        response->body = grown;
        response->body_size += length;
        response->body[response->body_size] = '\0';
        return length;
    }
    int rc = io_write_full(transfer->request->download_fd, data, length);
    if (rc < 0) {
        transfer->write_errno = -rc;
        return 0;
    }
    io_sha256_update(&transfer->download_hash, data, length);
    response->downloaded_bytes += (int64_t)length;
    return length;
}

static size_t on_read(char *buffer, size_t size, size_t count, void *context)
{
    struct s3_transfer *transfer = context;
    const struct s3_request *request = transfer->request;
    size_t left = request->body_size - transfer->upload_offset;
    size_t length = size * count < left ? size * count : left;
    if (length > 0 && request->body_source) {
        int64_t offset = request->body_offset + (int64_t)transfer->upload_offset;
        if (request->body_source->read(request->body_reader, (unsigned char *)buffer, length,
                                       offset, &transfer->read_error) != 0)
            return CURL_READFUNC_ABORT;
    } else if (length > 0) {
        memcpy(buffer, request->body + transfer->upload_offset, length);
    }
    transfer->upload_offset += length;
    return length;
}

/* curl rewinds when it resends on a reused connection that turned out dead. */
static int on_seek(void *context, curl_off_t offset, int origin)
{
    struct s3_transfer *transfer = context;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > transfer->request->body_size)
        return CURL_SEEKFUNC_FAIL;
    transfer->upload_offset = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static int on_progress(void *context, curl_off_t download_total, curl_off_t download_now,
                       curl_off_t upload_total, curl_off_t upload_now)
{
    (void)download_total;
    (void)upload_total;
    struct s3_transfer *transfer = context;
    if (io_stopped(transfer->io))
        return 1; /* CURLE_ABORTED_BY_CALLBACK */
    const struct s3_request *request = transfer->request;
    int64_t now = request->download_fd >= 0 ? (int64_t)download_now : (int64_t)upload_now;
    if (request->progress && now != transfer->progress_seen) {
        request->progress(request->progress_context, now);
        transfer->progress_seen = now;
    }
    return 0;
}

/* The path as sent and signed: base path, then the key encoded per segment. */
static char *s3_canonical_uri(const struct s3_client *client, const char *key)
{
    size_t base = strlen(client->base_path);
    size_t size = base + (key ? strlen(key) * 3 : 0) + 3;
    char *uri = malloc(size);
    if (!uri)
        return NULL;
    memcpy(uri, client->base_path, base + 1);
    if (key) {
        uri[base] = '/';
        sigv4_uri_encode(key, true, uri + base + 1, size - base - 1);
    } else if (base == 0) {
        strcpy(uri, "/");
    }
    return uri;
}

static struct curl_slist *append_header(struct curl_slist *list, bool *failed, const char *name,
                                        const char *value)
{
    char *line = NULL;
    if (*failed || asprintf(&line, "%s: %s", name, value) < 0) {
        *failed = true;
        return list;
    }
    struct curl_slist *grown = curl_slist_append(list, line);
    free(line);
    if (!grown) {
        *failed = true;
        return list;
    }
    return grown;
}

static void set_method(CURL *curl, const struct s3_request *request)
{
    const char *method = request->method;
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)request->body_size);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)request->body_size);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
                         request->body ? (const char *)request->body : "");
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
}

static void set_common_options(const struct s3_client *client, CURL *curl,
                               struct s3_transfer *transfer, char *error_buffer)
{
    const struct target_tuning *tuning = &client->target->tuning;
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect breaks the signature */
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);     /* keys may hold "./" */
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "sqlprodd/" SQLPRODD_VERSION);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)tuning->connect_timeout_ms);
    /* A stalled transfer (slower than 1 KiB/s, in whole seconds) is retried. */
    long stall_seconds = (long)((tuning->stall_timeout_ms + 999) / 1000);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, stall_seconds > 0 ? stall_seconds : 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, client->tls_verify ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, client->tls_verify ? 2L : 0L);
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, transfer);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, transfer);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, transfer);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, transfer);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, transfer);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
}

/* Builds the signed header list for one attempt at time `now`. */
static int build_headers(const struct s3_client *client, const struct s3_request *request,
                         const char *canonical_uri, const char *payload_hash, time_t now,
                         struct curl_slist **out)
{
    char amz_date[SIGV4_AMZ_DATE];
    struct sigv4_header headers[S3_MAX_EXTRA_HEADERS + 4];
    size_t count = 0;
    char *authorization = NULL;
    bool failed = false, has_content_type = false;
    struct curl_slist *list = NULL;

    sigv4_format_date(now, amz_date);
    headers[count++] = (struct sigv4_header){"host", client->host};
    headers[count++] = (struct sigv4_header){"x-amz-date", amz_date};
    headers[count++] = (struct sigv4_header){"x-amz-content-sha256", payload_hash};
    if (client->credentials.session_token)
        headers[count++] =
            (struct sigv4_header){"x-amz-security-token", client->credentials.session_token};
    for (size_t i = 0; i < request->header_count; i++) {
        headers[count++] = request->headers[i];
        has_content_type =
            has_content_type || strcasecmp(request->headers[i].name, "content-type") == 0;
    }
    const struct sigv4_request signing = {
        .method = request->method,
        .canonical_uri = canonical_uri,
        .parameters = request->parameters,
        .parameter_count = request->parameter_count,
        .headers = headers,
        .header_count = count,
        .payload_hash = payload_hash,
    };
    const struct sigv4_credentials credentials = {
        .access_key_id = client->credentials.access_key_id,
        .secret_access_key = client->credentials.secret_access_key,
        .session_token = client->credentials.session_token,
    };
    int rc = sigv4_authorization(&signing, &credentials, client->region, "s3", now, &authorization);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < count; i++)
        list = append_header(list, &failed, headers[i].name, headers[i].value);
    list = append_header(list, &failed, "Authorization", authorization);
    /* No "Expect: 100-continue" round trip, and no form content type on POST. */
    if (!failed && !(list = curl_slist_append(list, "Expect:")))
        failed = true;
    if (!failed && !has_content_type && !(list = curl_slist_append(list, "Content-Type:")))
        failed = true;
    free(authorization);
    if (failed) {
        curl_slist_free_all(list);
        return -ENOMEM;
    }
    *out = list;
    return 0;
}

static bool curl_error_is_transient(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SEND_FAIL_REWIND: return true;
    default: return false;
    }
}

static int curl_error_code(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE: return -EPROTO;
    default: return -EIO;
    }
}

static bool http_status_is_transient(long status, const char *code)
{
    /* 501 NotImplemented will not change on a retry; other 5xx may. */
    return (status >= 500 && status != 501) || status == 408 || status == 429 ||
           strcmp(code, "SlowDown") == 0 || strcmp(code, "RequestTimeout") == 0 ||
           strcmp(code, "InternalError") == 0;
}

/* The final message for an HTTP error, naming the object and the likely fix. */
static int http_error(const struct s3_client *client, const struct s3_request *request, long status,
                      const struct s3_error_document *document, const char *what, struct error *err)
{
    const char *code = document->code[0] ? document->code : "no error code";
    const char *hint;
    if (status == 403) {
        if (strcmp(code, "InvalidAccessKeyId") == 0)
            hint = "check the access key id and the endpoint";
        else if (strcmp(code, "RequestTimeTooSkewed") == 0)
            hint = "this machine's clock is off: synchronise it (NTP)";
        else if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
                 strcmp(code, "TokenRefreshRequired") == 0)
            hint = "the session token is invalid or expired: renew the credentials";
        else
            hint = "check the secret key, the clock (skew), or the bucket policy";
        return error_set(err, -EACCES, "access denied by S3 for %s: %s \xe2\x80\x94 %s", what, code,
                         hint);
    }
    if (status == 404 && strcmp(code, "NoSuchBucket") == 0)
        return error_set(err, -ENOENT,
                         "no such bucket '%s' at %s (NoSuchBucket): check bucket, endpoint "
                         "and region",
                         client->bucket, client->base_url);
    if (status == 404 && (strcmp(code, "NoSuchKey") == 0 || !request->key || !document->code[0]))
        return error_set(err, -ENOENT, "no such object %s", what);
    if (document->region[0] && strcasecmp(document->region, client->region) != 0)
        return error_set(err, -EINVAL,
                         "%s: %s: the bucket is in region %s, not %s: set region = \"%s\"", what,
                         code, document->region, client->region, document->region);
    if (status == 301 || status == 307)
        return error_set(err, -EINVAL,
                         "%s: S3 redirects (HTTP %ld %s): check the endpoint and region, or set "
                         "path_style = true",
                         what, status, code);
    if (client->object_lock_mode && status == 400 && strstr(document->message, "Object Lock"))
        return error_set(err, -EINVAL,
                         "%s: %s failed: HTTP 400 %s: %s \xe2\x80\x94 object_lock needs a "
                         "bucket with Object Lock enabled, and s3:PutObjectRetention",
                         what, request->method, code, document->message);
    int rc = status == 405 || status == 501 ? -EOPNOTSUPP : status >= 500 ? -EIO : -EINVAL;
    return error_set(err, rc, "%s: %s failed: HTTP %ld %s%s%s", what, request->method, status, code,
                     document->message[0] ? ": " : "", document->message);
}

/* What the steps of one attempt share. */
struct s3_attempt {
    struct s3_client *client;
    CURL *curl;
    const struct s3_request *request;
    struct s3_response *response;
    const char *what; /* "s3://bucket/key", for messages */
    char *reason;     /* a short cause, for the log line of a retry */
    size_t reason_size;
    struct s3_transfer transfer;
    struct curl_slist *headers;
    char *url;
    char error_buffer[CURL_ERROR_SIZE];
    int rc;
    struct error *err;
};

/* A retry starts the download over: an empty file and a fresh digest. */
static enum s3_outcome attempt_start_download(struct s3_attempt *attempt)
{
    int fd = attempt->request->download_fd;
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        attempt->rc = error_set(attempt->err, -errno, "%s: cannot rewind the download: %s",
                                attempt->what, strerror(errno));
        return S3_FAIL;
    }
    if (io_sha256_begin(&attempt->transfer.download_hash) != 0) {
        attempt->rc = error_set(attempt->err, -ENOMEM, "%s: out of memory", attempt->what);
        return S3_FAIL;
    }
    return S3_DONE;
}

/* The URL and the headers, signed at this second (a retry signs afresh). */
static enum s3_outcome attempt_sign(struct s3_attempt *attempt, const char *payload_hash)
{
    const struct s3_client *client = attempt->client;
    const struct s3_request *request = attempt->request;
    char *uri = s3_canonical_uri(client, request->key), *query = NULL;
    enum s3_outcome outcome = S3_FAIL;

    if (!uri || sigv4_canonical_query(request->parameters, request->parameter_count, &query) != 0 ||
        asprintf(&attempt->url, "%s%s%s%s", client->base_url, uri, *query ? "?" : "", query) < 0) {
        attempt->url = NULL;
        attempt->rc = error_set(attempt->err, -ENOMEM, "%s: out of memory", attempt->what);
        goto out;
    }
    attempt->rc = build_headers(client, request, uri, payload_hash, time(NULL), &attempt->headers);
    if (attempt->rc != 0) {
        error_set(attempt->err, attempt->rc, "%s: cannot sign the request", attempt->what);
        goto out;
    }
    outcome = S3_DONE;
out:
    free(uri);
    free(query);
    return outcome;
}

static CURLcode attempt_send(struct s3_attempt *attempt)
{
    CURL *curl = attempt->curl;
    curl_easy_reset(curl); /* keeps the connection cache */
    set_common_options(attempt->client, curl, &attempt->transfer, attempt->error_buffer);
    if (attempt->request->despite_stop_ms > 0)
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)attempt->request->despite_stop_ms);
    set_method(curl, attempt->request);
    curl_easy_setopt(curl, CURLOPT_URL, attempt->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, attempt->headers);
    return curl_easy_perform(curl);
}

/* curl's own failure: a network error is retried when it may pass. */
static enum s3_outcome judge_curl_error(struct s3_attempt *attempt, CURLcode code)
{
    const struct s3_client *client = attempt->client;
    const char *what = attempt->what, *method = attempt->request->method;
    const char *reason = attempt->reason;

    snprintf(attempt->reason, attempt->reason_size, "%s",
             attempt->error_buffer[0] ? attempt->error_buffer : curl_easy_strerror(code));
    if (curl_error_is_transient(code)) {
        attempt->rc = error_set(attempt->err, curl_error_code(code), "%s: %s failed: %s", what,
                                method, reason);
        return S3_RETRY;
    }
    if (code == CURLE_PEER_FAILED_VERIFICATION) {
        /* A bucket name with dots cannot match a wildcard certificate. */
        bool dotted = strchr(client->bucket, '.') && strstr(client->host, client->bucket);
        attempt->rc = error_set(attempt->err, -EPROTO,
                                "%s: the TLS certificate of %s is not trusted (%s): %s", what,
                                client->base_url, reason,
                                dotted ? "a bucket name with dots needs path_style = true"
                                       : "fix the endpoint or the CA store (tls_verify = false is "
                                         "for testing only)");
        return S3_FAIL;
    }
    attempt->rc =
        error_set(attempt->err, curl_error_code(code), "%s: %s failed: %s", what, method, reason);
    return S3_FAIL;
}

/* A transfer that did not finish: cancelled, our side of it failed, or curl's. */
static enum s3_outcome judge_transfer(struct s3_attempt *attempt, CURLcode code)
{
    const struct s3_transfer *transfer = &attempt->transfer;
    const char *what = attempt->what;

    if (code == CURLE_ABORTED_BY_CALLBACK && io_stopped(transfer->io)) {
        attempt->rc =
            error_set(attempt->err, -ECANCELED, "%s: %s cancelled", what, attempt->request->method);
        return S3_FAIL;
    }
    if (transfer->write_errno) {
        attempt->rc =
            error_set(attempt->err, -transfer->write_errno, "%s: cannot write the download: %s",
                      what, strerror(transfer->write_errno));
        return S3_FAIL;
    }
    if (transfer->read_error.code) {
        *attempt->err = transfer->read_error;
        attempt->rc = transfer->read_error.code;
        return S3_FAIL;
    }
    if (transfer->too_large) {
        attempt->rc = error_set(attempt->err, -EPROTO,
                                "%s: the response is larger than %d bytes: is %s an S3 endpoint?",
                                what, S3_MAX_RESPONSE_BODY, attempt->client->base_url);
        return S3_FAIL;
    }
    return judge_curl_error(attempt, code);
}

/* A complete HTTP response: a 2xx is done (unless its body holds an error),
 * anything else fails with S3's error document, retried when it may pass. */
static enum s3_outcome judge_response(struct s3_attempt *attempt)
{
    const struct s3_request *request = attempt->request;
    struct s3_response *response = attempt->response;
    struct s3_error_document document = {0};
    bool failed = response->status < 200 || response->status >= 300;

    if (!failed && request->body_may_hold_error && response->body &&
        s3_xml_parse_error(response->body, response->body_size, &document) == 0) {
        failed = true; /* S3 can answer 200 and then report an error in the body */
        response->status = 500;
    } else if (failed && response->body) {
        s3_xml_parse_error(response->body, response->body_size, &document);
    }
    if (!failed) {
        if (attempt->transfer.download_hash.context)
            io_sha256_end(&attempt->transfer.download_hash, response->downloaded_sha256);
        attempt->rc = 0;
        return S3_DONE;
    }
    snprintf(attempt->reason, attempt->reason_size, "HTTP %ld %s", response->status,
             document.code[0] ? document.code : "");
    attempt->rc = http_error(attempt->client, request, response->status, &document, attempt->what,
                             attempt->err);
    return http_status_is_transient(response->status, document.code) ? S3_RETRY : S3_FAIL;
}

/* One attempt: sign, send, judge; decides whether to retry. */
static enum s3_outcome attempt_once(struct s3_attempt *attempt, const char *payload_hash,
                                    const struct io_context *io)
{
    enum s3_outcome outcome = S3_DONE;

    s3_response_free(attempt->response);
    memset(attempt->response, 0, sizeof *attempt->response);
    attempt->transfer =
        (struct s3_transfer){.request = attempt->request, .response = attempt->response, .io = io};
    attempt->error_buffer[0] = '\0';
    if (attempt->request->download_fd >= 0)
        outcome = attempt_start_download(attempt);
    if (outcome == S3_DONE)
        outcome = attempt_sign(attempt, payload_hash);
    if (outcome == S3_DONE) {
        CURLcode code = attempt_send(attempt);
        const struct s3_transfer *transfer = &attempt->transfer;
        if (code != CURLE_OK || transfer->write_errno || transfer->too_large ||
            transfer->read_error.code)
            outcome = judge_transfer(attempt, code);
        else
            outcome = judge_response(attempt);
    }
    io_sha256_discard(&attempt->transfer.download_hash);
    curl_slist_free_all(attempt->headers);
    free(attempt->url);
    attempt->headers = NULL;
    attempt->url = NULL;
    return outcome;
}

/* Requests that take no I/O context (list, delete) still end on the
 * target's stop flag; clean-up sent despite a stop ends on none. */
static const struct io_context *request_io(const struct s3_client *client,
                                           const struct s3_request *request,
                                           const struct io_context *io,
                                           struct io_context *with_stop)
{
    if (request->despite_stop_ms > 0)
        return NULL;
    if (io && io->stop)
        return io;
    *with_stop = io ? *io : (struct io_context){0};
    with_stop->stop = client->target->stop;
    return with_stop;
}

int s3_perform(struct s3_client *client, CURL *curl, const struct s3_request *request,
               struct s3_response *response, const struct io_context *io, struct error *err)
{
    const struct target_tuning *tuning = &client->target->tuning;
    char payload_hash[IO_SHA256_HEX], what[1200], reason[CURL_ERROR_SIZE + 64];
    struct io_context with_stop;
    struct s3_attempt attempt = {.client = client,
                                 .curl = curl,
                                 .request = request,
                                 .response = response,
                                 .what = what,
                                 .reason = reason,
                                 .reason_size = sizeof reason,
                                 .rc = -EIO,
                                 .err = err};
    int attempts = request->attempts > 0 ? request->attempts : tuning->attempts;

    io = request_io(client, request, io, &with_stop);
    memset(response, 0, sizeof *response);
    s3_describe_key(client, request->key, what, sizeof what);
    assert(!request->body_source || request->payload_hash); /* no body to hash here */
    if (request->payload_hash)
        snprintf(payload_hash, sizeof payload_hash, "%s", request->payload_hash);
    else
        io_sha256_buffer(request->body ? (const void *)request->body : "", request->body_size,
                         payload_hash);

    for (int number = 1;; number++) {
        if (io_stopped(io))
            return error_set(err, -ECANCELED, "%s: %s cancelled", what, request->method);
        reason[0] = '\0';
        enum s3_outcome outcome = attempt_once(&attempt, payload_hash, io);
        if (outcome == S3_DONE)
            return 0;
        if (outcome == S3_FAIL)
            return attempt.rc;
        if (number >= attempts) {
            if (attempts > 1)
                error_prefix(err, "after %d attempts: ", attempts);
            return attempt.rc;
        }
        int64_t delay = target_retry_delay_ms(tuning, number);
        log_event(LOG_WARNING, NULL, NULL, "%s: %s attempt %d of %d failed (%s); retrying in %.1fs",
                  what, request->method, number, attempts, reason, (double)delay / 1000.0);
        if (target_retry_sleep(delay, io) != 0)
            return error_set(err, -ECANCELED, "%s: %s cancelled", what, request->method);
    }
}
