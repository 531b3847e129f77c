/*
 * sigv4.c: AWS Signature Version 4 (see sigv4.h). Pure functions over strings;
 * not for sending anything (target_s3.c) nor for reading credentials
 * (credentials.c).
 */
#include "offsite/sigv4.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"

/* A growing string; `failed` sticks after the first allocation failure so
 * callers check once at the end. */
struct sigv4_text {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
};

static void text_append(struct sigv4_text *text, const char *bytes, size_t size)
{
    if (text->failed)
        return;
    if (text->length + size + 1 > text->capacity) {
        size_t capacity = text->capacity ? text->capacity : 256;
        while (capacity < text->length + size + 1)
            capacity *= 2;
        char *grown = realloc(text->data, capacity);
        if (!grown) {
            text->failed = true;
            return;
        }
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->length, bytes, size);
    text->length += size;
    text->data[text->length] = '\0';
}

static void text_append_string(struct sigv4_text *text, const char *string)
{
    text_append(text, string, strlen(string));
}

/* Hands the string over to the caller, or frees it and reports -ENOMEM. */
static int text_finish(struct sigv4_text *text, char **out)
{
    if (text->failed || !text->data) {
        free(text->data);
        *out = NULL;
        return -ENOMEM;
    }
    *out = text->data;
    return 0;
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

int sigv4_uri_encode(const char *text, bool keep_slash, char *out, size_t out_size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t length = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (is_unreserved(*p) || (keep_slash && *p == '/')) {
            if (length + 1 >= out_size)
                return -ENAMETOOLONG;
            out[length++] = (char)*p;
        } else {
            if (length + 3 >= out_size)
                return -ENAMETOOLONG;
            out[length++] = '%';
            out[length++] = hex[*p >> 4];
            out[length++] = hex[*p & 15];
        }
    }
    if (length >= out_size)
        return -ENAMETOOLONG;
    out[length] = '\0';
    return (int)length;
}

/* Encodes into a fresh allocation (worst case three bytes per byte). */
static char *uri_encode_copy(const char *text, bool keep_slash)
{
    size_t size = strlen(text) * 3 + 1;
    char *out = malloc(size);
    if (out && sigv4_uri_encode(text, keep_slash, out, size) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

void sigv4_format_date(time_t now, char amz_date[SIGV4_AMZ_DATE])
{
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(amz_date, SIGV4_AMZ_DATE, "%Y%m%dT%H%M%SZ", &utc);
}

struct encoded_parameter {
    char *name;
    char *value;
};

static int compare_parameters(const void *a, const void *b)
{
    const struct encoded_parameter *left = a, *right = b;
    int order = strcmp(left->name, right->name);
    return order ? order : strcmp(left->value, right->value);
}

int sigv4_canonical_query(const struct sigv4_parameter *parameters, size_t count, char **out)
{
    struct sigv4_text text = {0};
    struct encoded_parameter *encoded = calloc(count ? count : 1, sizeof *encoded);
    int rc = -ENOMEM;
    if (!encoded)
        goto out;
    for (size_t i = 0; i < count; i++) {
        encoded[i].name = uri_encode_copy(parameters[i].name, false);
        encoded[i].value = uri_encode_copy(parameters[i].value ? parameters[i].value : "", false);
        if (!encoded[i].name || !encoded[i].value)
            goto out;
    }
    /* AWS sorts by the encoded name, then the encoded value. */
    qsort(encoded, count, sizeof *encoded, compare_parameters);
    text_append(&text, "", 0);
    for (size_t i = 0; i < count; i++) {
        if (i)
            text_append(&text, "&", 1);
        text_append_string(&text, encoded[i].name);
        text_append(&text, "=", 1);
        text_append_string(&text, encoded[i].value);
    }
    rc = text_finish(&text, out);
    text.data = NULL;
out:
    free(text.data);
    if (encoded) {
        for (size_t i = 0; i < count; i++) {
            free(encoded[i].name);
            free(encoded[i].value);
        }
        free(encoded);
    }
    return rc;
}

struct canonical_header {
    char *name;  /* lowercased */
    char *value; /* trimmed, inner runs of spaces collapsed */
    size_t order;
};

static int compare_headers(const void *a, const void *b)
{
    const struct canonical_header *left = a, *right = b;
    int order = strcmp(left->name, right->name);
    if (order)
        return order;
    /* Repeated headers keep the order they were given in (values joined by ','). */
    return left->order < right->order ? -1 : left->order > right->order;
}

static char *lowercase_copy(const char *text)
{
    char *copy = strdup(text);
    for (char *p = copy; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return copy;
}

static char *trimmed_copy(const char *text)
{
    char *copy = malloc(strlen(text) + 1);
    if (!copy)
        return NULL;
    size_t length = 0;
    bool space = false;
    while (*text == ' ' || *text == '\t')
        text++;
    for (; *text; text++) {
        if (*text == ' ' || *text == '\t') {
            space = true;
            continue;
        }
        if (space && length > 0)
            copy[length++] = ' ';
        space = false;
        copy[length++] = *text;
    }
    copy[length] = '\0';
    return copy;
}

/* Sorted canonical headers ("name:value\n" each, repeated names merged) and
 * the signed-headers list ("host;x-amz-date"). */
static int canonical_headers(const struct sigv4_request *request, char **headers_out,
                             char **signed_out)
{
    struct sigv4_text headers = {0}, names = {0};
    size_t count = request->header_count;
    struct canonical_header *entries = calloc(count ? count : 1, sizeof *entries);
    int rc = -ENOMEM;
    if (!entries)
        goto out;
    for (size_t i = 0; i < count; i++) {
        if (!request->headers[i].name || !request->headers[i].name[0]) {
            rc = -EINVAL;
            goto out;
        }
        entries[i].name = lowercase_copy(request->headers[i].name);
        entries[i].value = trimmed_copy(request->headers[i].value ? request->headers[i].value : "");
        entries[i].order = i;
        if (!entries[i].name || !entries[i].value)
            goto out;
    }
    qsort(entries, count, sizeof *entries, compare_headers);
    text_append(&headers, "", 0);
    text_append(&names, "", 0);
    for (size_t i = 0; i < count; i++) {
        bool repeated = i > 0 && strcmp(entries[i].name, entries[i - 1].name) == 0;
        if (repeated) {
            /* Replace the previous line's newline with ",value\n". */
            headers.length--;
            text_append(&headers, ",", 1);
        } else {
            if (i > 0)
                text_append(&names, ";", 1);
            text_append_string(&names, entries[i].name);
            text_append_string(&headers, entries[i].name);
            text_append(&headers, ":", 1);
        }
        text_append_string(&headers, entries[i].value);
        text_append(&headers, "\n", 1);
    }
    rc = text_finish(&headers, headers_out);
    headers.data = NULL;
    if (rc == 0) {
        rc = text_finish(&names, signed_out);
        names.data = NULL;
        if (rc != 0) {
            free(*headers_out);
            *headers_out = NULL;
        }
    }
out:
    free(headers.data);
    free(names.data);
    if (entries) {
        for (size_t i = 0; i < count; i++) {
            free(entries[i].name);
            free(entries[i].value);
        }
        free(entries);
    }
    return rc;
}

/* The canonical request, and the signed-headers list the Authorization needs. */
static int build_canonical_request(const struct sigv4_request *request, char **out,
                                   char **signed_headers)
{
    struct sigv4_text text = {0};
    char *query = NULL, *headers = NULL;
    *signed_headers = NULL;
    int rc = sigv4_canonical_query(request->parameters, request->parameter_count, &query);
    if (rc == 0)
        rc = canonical_headers(request, &headers, signed_headers);
    if (rc != 0)
        goto out;
    text_append_string(&text, request->method);
    text_append(&text, "\n", 1);
    text_append_string(&text, request->canonical_uri[0] ? request->canonical_uri : "/");
    text_append(&text, "\n", 1);
    text_append_string(&text, query);
    text_append(&text, "\n", 1);
    text_append_string(&text, headers);
    text_append(&text, "\n", 1);
    text_append_string(&text, *signed_headers);
    text_append(&text, "\n", 1);
    text_append_string(&text, request->payload_hash);
    rc = text_finish(&text, out);
    text.data = NULL;
out:
    if (rc != 0) {
        free(*signed_headers);
        *signed_headers = NULL;
    }
    free(text.data);
    free(query);
    free(headers);
    return rc;
}

int sigv4_canonical_request(const struct sigv4_request *request, char **out)
{
    char *signed_headers = NULL;
    int rc = build_canonical_request(request, out, &signed_headers);
    free(signed_headers);
    return rc;
}

static void hmac_sha256(const void *key, size_t key_size, const char *data,
                        unsigned char out[SHA256_DIGEST_LENGTH])
{
    unsigned int length = SHA256_DIGEST_LENGTH;
    HMAC(EVP_sha256(), key, (int)key_size, (const unsigned char *)data, strlen(data), out, &length);
}

int sigv4_authorization(const struct sigv4_request *request,
                        const struct sigv4_credentials *credentials, const char *region,
                        const char *service, time_t now, char **out)
{
    char amz_date[SIGV4_AMZ_DATE], date[9], scope[256], request_hash[SIGV4_SHA256_HEX];
    char signature[SIGV4_SHA256_HEX];
    char *canonical = NULL, *signed_headers = NULL, *string_to_sign = NULL, *secret = NULL;
    unsigned char key[SHA256_DIGEST_LENGTH], digest[SHA256_DIGEST_LENGTH];
    struct sigv4_text text = {0};
    int rc;

    *out = NULL;
    sigv4_format_date(now, amz_date);
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if ((size_t)snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, region, service) >=
        sizeof scope)
        return -EINVAL;

    rc = build_canonical_request(request, &canonical, &signed_headers);
    if (rc != 0)
        goto out;
    io_sha256_buffer(canonical, strlen(canonical), request_hash);
    rc = -ENOMEM;
    if (asprintf(&string_to_sign, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, request_hash) <
        0) {
        string_to_sign = NULL;
        goto out;
    }
    if (asprintf(&secret, "AWS4%s", credentials->secret_access_key) < 0) {
        secret = NULL;
        goto out;
    }
    /* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
    hmac_sha256(secret, strlen(secret), date, key);
    hmac_sha256(key, sizeof key, region, digest);
    hmac_sha256(digest, sizeof digest, service, key);
    hmac_sha256(key, sizeof key, "aws4_request", digest);
    hmac_sha256(digest, sizeof digest, string_to_sign, key);
    memcpy(digest, key, sizeof digest);
    io_hex(digest, sizeof digest, signature);

    text_append_string(&text, "AWS4-HMAC-SHA256 Credential=");
    text_append_string(&text, credentials->access_key_id);
    text_append(&text, "/", 1);
    text_append_string(&text, scope);
    text_append_string(&text, ",SignedHeaders=");
    text_append_string(&text, signed_headers);
    text_append_string(&text, ",Signature=");
    text_append_string(&text, signature);
    rc = text_finish(&text, out);
    text.data = NULL;
out:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(digest, sizeof digest);
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    free(text.data);
    free(canonical);
    free(signed_headers);
    free(string_to_sign);
    return rc;
}
