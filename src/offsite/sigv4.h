/*
 * sigv4.h: AWS Signature Version 4 for S3 requests, computed with OpenSSL.
 *
 * Pure: no clock (the caller passes the time), no I/O, no globals; so AWS's
 * published examples are exact unit tests. Not an HTTP client: target_s3.c
 * builds the request, asks here for the Authorization header, and sends
 * exactly the path, query and headers it signed.
 *
 * Why not libcurl's CURLOPT_AWS_SIGV4: the libcurl of Debian 12 (7.88) signs
 * an unsorted query and "POST ?uploads" wrongly and never adds
 * x-amz-content-sha256, which S3 requires.
 */
#ifndef SQLPRODD_SIGV4_H
#define SQLPRODD_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define SIGV4_SHA256_HEX 65 /* 64 hex digits and NUL, as IO_SHA256_HEX (core/io.h) */
#define SIGV4_AMZ_DATE   17 /* "20130524T000000Z" and NUL */
/* SHA-256 of the empty string: the payload hash of a request without a body. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct sigv4_header {
    const char *name; /* any case; signed lowercased */
    const char *value;
};

/* A query parameter, not encoded; value "" for a bare name ("?uploads"). */
struct sigv4_parameter {
    const char *name;
    const char *value;
};

struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL without one */
};

struct sigv4_request {
    const char *method;        /* "GET", "PUT", ... */
    const char *canonical_uri; /* the path as sent: already encoded with sigv4_uri_encode */
    const struct sigv4_parameter *parameters;
    size_t parameter_count;
    /* Every header to sign, host, x-amz-date and x-amz-content-sha256 included
     * (and x-amz-security-token with a session token). */
    const struct sigv4_header *headers;
    size_t header_count;
    const char *payload_hash; /* lowercase hex SHA-256 of the body */
};

/*
 * Appends the URI encoding of `text` to out: every byte but A-Z a-z 0-9 - _ .
 * ~ becomes %XX (uppercase hex); '/' is kept when keep_slash (object key paths)
 * and encoded otherwise (query names and values). Returns the length written
 * (excluding the NUL), or -ENAMETOOLONG when out_size is too small.
 */
int sigv4_uri_encode(const char *text, bool keep_slash, char *out, size_t out_size);

/* "20130524T000000Z" for `now` (UTC). */
void sigv4_format_date(time_t now, char amz_date[SIGV4_AMZ_DATE]);

/*
 * The sorted, encoded query string ("list-type=2&prefix=a%2Fb", "uploads="):
 * what the canonical request holds, and what the URL may carry as well.
 * *out is malloc'ed. Returns 0 or -ENOMEM.
 */
int sigv4_canonical_query(const struct sigv4_parameter *parameters, size_t count, char **out);

/* The canonical request of the SigV4 documentation; *out is malloc'ed.
 * Returns 0, -EINVAL (a header without a name) or -ENOMEM. */
int sigv4_canonical_request(const struct sigv4_request *request, char **out);

/*
 * The value of the Authorization header for `request` at time `now`, whose
 * x-amz-date header the caller must have set to sigv4_format_date(now).
 * *out is malloc'ed; the secret never appears in it. Returns 0, -EINVAL or
 * -ENOMEM.
 */
int sigv4_authorization(const struct sigv4_request *request,
                        const struct sigv4_credentials *credentials, const char *region,
                        const char *service, time_t now, char **out);

#endif
