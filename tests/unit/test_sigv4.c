/*
 * test_sigv4.c: the Signature V4 signer against AWS's published examples
 * (Amazon S3 API Reference, "Signature Calculations for the Authorization
 * Header: Transferring Payload in a Single Chunk", and the SigV4 test suite's
 * get-vanilla), with the clock fixed so every signature is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"
#include "offsite/sigv4.h"

/* 2013-05-24T00:00:00Z, the time of every S3 example. */
#define S3_EXAMPLE_TIME ((time_t)1369353600)

static const struct sigv4_credentials s3_example_credentials = {
    .access_key_id = "AKIAIOSFODNN7EXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};

/* GCC 12 at -O3 inlines this into tests whose signed header came back
 * through an out-parameter, and then takes the heap string for a pointer to
 * the local that held its address (-Wdangling-pointer false positive). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
static const char *signature_of(const char *authorization)
{
    const char *signature = strstr(authorization, "Signature=");
    assert_non_null(signature);
    return signature + strlen("Signature=");
}

static void get_object_example_matches_aws(void **state)
{
    (void)state;
    const struct sigv4_header headers[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
        {"x-amz-date", "20130524T000000Z"},
    };
    const struct sigv4_request request = {
        .method = "GET",
        .canonical_uri = "/test.txt",
        .headers = headers,
        .header_count = 4,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *canonical = NULL, *authorization = NULL;
    assert_int_equal(sigv4_canonical_request(&request, &canonical), 0);
    assert_string_equal(canonical,
                        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                        "x-amz-content-sha256:"
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                        "x-amz-date:20130524T000000Z\n\n"
                        "host;range;x-amz-content-sha256;x-amz-date\n"
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME, &authorization),
                     0);
    assert_string_equal(
        authorization,
        "AWS4-HMAC-SHA256 "
        "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(canonical);
    free(authorization);
}

static void put_object_example_matches_aws(void **state)
{
    (void)state;
    const char body[] = "Welcome to Amazon S3.";
    char payload_hash[SIGV4_SHA256_HEX], path[64];
    io_sha256_buffer(body, strlen(body), payload_hash);
    assert_string_equal(payload_hash,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    assert_int_equal(sigv4_uri_encode("/test$file.text", true, path, sizeof path), 17);
    assert_string_equal(path, "/test%24file.text");
    const struct sigv4_header headers[] = {
        {"Host", "examplebucket.s3.amazonaws.com"}, {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
        {"x-amz-date", "20130524T000000Z"},         {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", payload_hash},
    };
    const struct sigv4_request request = {
        .method = "PUT",
        .canonical_uri = path,
        .headers = headers,
        .header_count = 5,
        .payload_hash = payload_hash,
    };
    char *authorization = NULL;
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME, &authorization),
                     0);
    assert_non_null(strstr(authorization, "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                                          "x-amz-storage-class,"));
    assert_string_equal(signature_of(authorization),
                        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    free(authorization);
}

static char *sign_bucket_get(const struct sigv4_parameter *parameters, size_t count)
{
    const struct sigv4_header headers[] = {
        {"host", "examplebucket.s3.amazonaws.com"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
    };
    const struct sigv4_request request = {
        .method = "GET",
        .canonical_uri = "/",
        .parameters = parameters,
        .parameter_count = count,
        .headers = headers,
        .header_count = 3,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *authorization = NULL;
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME, &authorization),
                     0);
    return authorization;
}

/* "GET Bucket Lifecycle": a parameter without a value signs as "lifecycle=",
 * the same rule that "POST ?uploads" (CreateMultipartUpload) relies on. */
static void bare_parameter_example_matches_aws(void **state)
{
    (void)state;
    const struct sigv4_parameter parameters[] = {{"lifecycle", ""}};
    char *authorization = sign_bucket_get(parameters, 1);
    assert_string_equal(signature_of(authorization),
                        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    free(authorization);
}

/* "GET Bucket (List Objects)": given unsorted, as the URL had them. */
static void unsorted_query_example_matches_aws(void **state)
{
    (void)state;
    const struct sigv4_parameter parameters[] = {{"prefix", "J"}, {"max-keys", "2"}};
    char *authorization = sign_bucket_get(parameters, 2);
    assert_string_equal(signature_of(authorization),
                        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(authorization);
}

/* The SigV4 test suite's get-vanilla: another service, another secret. */
static void test_suite_get_vanilla_matches_aws(void **state)
{
    (void)state;
    const struct sigv4_credentials credentials = {
        .access_key_id = "AKIDEXAMPLE",
        .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };
    const struct sigv4_header headers[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    const struct sigv4_request request = {
        .method = "GET",
        .canonical_uri = "/",
        .headers = headers,
        .header_count = 2,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *authorization = NULL;
    assert_int_equal(sigv4_authorization(&request, &credentials, "us-east-1", "service",
                                         (time_t)1440938160, &authorization),
                     0);
    assert_string_equal(
        authorization,
        "AWS4-HMAC-SHA256 "
        "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,"
        "SignedHeaders=host;x-amz-date,"
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    free(authorization);
}

static void uri_encoding_keeps_only_unreserved_characters(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(sigv4_uri_encode("a-b_c.d~e09AZ", false, out, sizeof out), 13);
    assert_string_equal(out, "a-b_c.d~e09AZ");
    sigv4_uri_encode("db/app 1+2=3&x(y)!*'@:,;$", true, out, sizeof out);
    assert_string_equal(out, "db/app%201%2B2%3D3%26x%28y%29%21%2A%27%40%3A%2C%3B%24");
    sigv4_uri_encode("a/b", false, out, sizeof out);
    assert_string_equal(out, "a%2Fb");
    sigv4_uri_encode("\xc3\xa9t\xc3\xa9", true, out, sizeof out); /* "été" in UTF-8 */
    assert_string_equal(out, "%C3%A9t%C3%A9");
    sigv4_uri_encode("%", true, out, sizeof out);
    assert_string_equal(out, "%25");
}

static void uri_encoding_refuses_a_short_buffer(void **state)
{
    (void)state;
    char out[6];
    assert_int_equal(sigv4_uri_encode("abcde", true, out, sizeof out), 5);
    assert_int_equal(sigv4_uri_encode("abcdef", true, out, sizeof out), -ENAMETOOLONG);
    assert_int_equal(sigv4_uri_encode("ab c", true, out, sizeof out), -ENAMETOOLONG);
}

static void canonical_query_sorts_encoded_names_then_values(void **state)
{
    (void)state;
    const struct sigv4_parameter parameters[] = {
        {"prefix", "db/app x"},
        {"list-type", "2"},
        {"uploads", ""},
        {"a", "z"},
        {"a", "b"},
        {"continuation-token", "1+/=="},
    };
    char *query = NULL;
    assert_int_equal(sigv4_canonical_query(parameters, 6, &query), 0);
    assert_string_equal(query, "a=b&a=z&continuation-token=1%2B%2F%3D%3D&list-type=2&"
                               "prefix=db%2Fapp%20x&uploads=");
    free(query);
    assert_int_equal(sigv4_canonical_query(NULL, 0, &query), 0);
    assert_string_equal(query, "");
    free(query);
}

static void canonical_headers_are_lowercased_trimmed_and_merged(void **state)
{
    (void)state;
    const struct sigv4_header headers[] = {
        {"X-Amz-Meta-Note", "  two   spaces\tand tab  "},
        {"Host", "h"},
        {"x-amz-meta-list", "b"},
        {"X-AMZ-META-LIST", "a"},
    };
    const struct sigv4_request request = {
        .method = "PUT",
        .canonical_uri = "",
        .headers = headers,
        .header_count = 4,
        .payload_hash = "p",
    };
    char *canonical = NULL;
    assert_int_equal(sigv4_canonical_request(&request, &canonical), 0);
    assert_string_equal(canonical, "PUT\n/\n\nhost:h\nx-amz-meta-list:b,a\n"
                                   "x-amz-meta-note:two spaces and tab\n\n"
                                   "host;x-amz-meta-list;x-amz-meta-note\np");
    free(canonical);
}

static void a_header_without_a_name_is_refused(void **state)
{
    (void)state;
    const struct sigv4_header headers[] = {{"", "x"}};
    const struct sigv4_request request = {
        .method = "GET",
        .canonical_uri = "/",
        .headers = headers,
        .header_count = 1,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *authorization = (char *)"unchanged";
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME, &authorization),
                     -EINVAL);
    assert_null(authorization);
}

/* A different secret, payload, region or clock must change the signature, and
 * the secret must never appear in the header. */
static void signature_depends_on_secret_payload_region_and_time(void **state)
{
    (void)state;
    const struct sigv4_header headers[] = {
        {"host", "examplebucket.s3.amazonaws.com"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
    };
    struct sigv4_request request = {
        .method = "GET",
        .canonical_uri = "/",
        .headers = headers,
        .header_count = 3,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };
    struct sigv4_credentials other = s3_example_credentials;
    other.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    char *base = NULL, *changed[4] = {0};
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME, &base),
                     0);
    assert_int_equal(
        sigv4_authorization(&request, &other, "us-east-1", "s3", S3_EXAMPLE_TIME, &changed[0]), 0);
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "eu-west-1", "s3",
                                         S3_EXAMPLE_TIME, &changed[1]),
                     0);
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME + 86400, &changed[2]),
                     0);
    request.payload_hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    assert_int_equal(sigv4_authorization(&request, &s3_example_credentials, "us-east-1", "s3",
                                         S3_EXAMPLE_TIME, &changed[3]),
                     0);
    for (int i = 0; i < 4; i++) {
        assert_string_not_equal(signature_of(base), signature_of(changed[i]));
        assert_null(strstr(changed[i], "EXAMPLEKEY"));
        free(changed[i]);
    }
    assert_null(strstr(base, "EXAMPLEKEY"));
    free(base);
}

static void amz_date_is_utc(void **state)
{
    (void)state;
    char date[SIGV4_AMZ_DATE];
    sigv4_format_date(S3_EXAMPLE_TIME, date);
    assert_string_equal(date, "20130524T000000Z");
    sigv4_format_date((time_t)951782400 + 86399, date); /* 2000-02-29, a leap day */
    assert_string_equal(date, "20000229T235959Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_object_example_matches_aws),
        cmocka_unit_test(put_object_example_matches_aws),
        cmocka_unit_test(bare_parameter_example_matches_aws),
        cmocka_unit_test(unsorted_query_example_matches_aws),
        cmocka_unit_test(test_suite_get_vanilla_matches_aws),
        cmocka_unit_test(uri_encoding_keeps_only_unreserved_characters),
        cmocka_unit_test(uri_encoding_refuses_a_short_buffer),
        cmocka_unit_test(canonical_query_sorts_encoded_names_then_values),
        cmocka_unit_test(canonical_headers_are_lowercased_trimmed_and_merged),
        cmocka_unit_test(a_header_without_a_name_is_refused),
        cmocka_unit_test(signature_depends_on_secret_payload_region_and_time),
        cmocka_unit_test(amz_date_is_utc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
