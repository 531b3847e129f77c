/*
 * test_target_s3.c: the S3 target against a real S3 server on 127.0.0.1
 * (s3rver behind tests/s3/server.js, which recomputes every request's
 * Signature V4 with AWS's own signer and refuses a mismatch). Round trips of
 * small and multipart files, awkward keys, paged listings, deletes, wrong
 * credentials, session tokens, TLS verification, virtual-hosted addressing,
 * storage class and SSE headers, sources made on the way (sealed archives).
 * Faults and retries: test_target_s3_faults.c; aws CLI interop:
 * test_target_s3_interop.c. Skipped only when node is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/stat.h>

#include "archive/archive.h"
#include "files_in.h"
#include "offsite/target.h"
#include "s3_test_fixture.h"

static struct s3_test_fixture fixture;

static int start_server(void **state)
{
    (void)state;
    return s3_test_fixture_start(&fixture, "test_target_s3");
}

static int stop_server(void **state)
{
    (void)state;
    return s3_test_fixture_stop(&fixture);
}

static int reset_server(void **state)
{
    (void)state;
    s3_test_fixture_reset(&fixture);
    return 0;
}

static struct target_config test_config(void)
{
    return s3_test_target_config(&fixture, "db/");
}

static struct target *open_target(const struct target_config *config)
{
    struct target *target = s3_test_open_target(config);
    struct target_tuning tuning;
    target_tuning_default(&tuning);
    tuning.base_delay_ms = 5;
    tuning.max_delay_ms = 20;
    target_set_tuning(target, &tuning);
    return target;
}

static void path_in_work(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", fixture.work, name);
}

static const struct target_object *find_object(const struct target_listing *listing,
                                               const char *key)
{
    for (size_t i = 0; i < listing->count; i++)
        if (strcmp(listing->objects[i].key, key) == 0)
            return &listing->objects[i];
    return NULL;
}

/* Puts `size` random bytes under key, gets them back into a new file, and
 * checks the bytes, the listing and the server's view of the requests. */
static void round_trip(struct target *target, const char *key, size_t size, unsigned seed)
{
    char source[128], copy[128], sha256[ARCHIVE_SHA256_HEX];
    struct error err = {0};
    path_in_work(source, sizeof source, "source");
    path_in_work(copy, sizeof copy, "copy");
    unlink(copy);
    s3_test_write_random_file(source, size, seed);
    assert_int_equal(archive_sha256_file(source, sha256, &err), 0);

    int rc = target_put_file(target, key, source, sha256, NULL, &err);
    if (rc != 0)
        fail_msg("put %s: %s", key, err.message);
    char hashed[IO_SHA256_HEX] = "";
    rc = target_get_file_hashed(target, key, copy, hashed, NULL, &err);
    if (rc != 0)
        fail_msg("get %s: %s", key, err.message);
    assert_true(s3_test_same_file(source, copy));
    assert_string_equal(hashed, sha256); /* the hash of what it wrote */
    struct stat st;
    assert_int_equal(stat(copy, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "", &listing, &err), 0);
    const struct target_object *object = find_object(&listing, key);
    if (!object)
        fail_msg("%s is not in the listing", key);
    assert_int_equal(object->size, (int64_t)size);
    assert_true(object->modified > time(NULL) - 600 && object->modified < time(NULL) + 600);
    target_listing_free(&listing);
    unlink(copy);
}

static void small_file_round_trip_is_byte_identical(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    round_trip(target, "app/app-20240101T000000Z.db.gz", 100 * 1024 + 7, 1);
    round_trip(target, "app/empty.db.gz", 0, 2);
    /* Past the 1 MiB a put holds in memory, under the 5 MiB part size:
     * one PutObject still, read from the file as it is sent. */
    round_trip(target, "app/streamed.db.gz", 3 * 1024 * 1024 + 5, 3);
    target_close(target);

    json_t *requests = s3_test_requests(&fixture.server);
    assert_true(s3_test_all_signed(requests));
    /* One PutObject each, with Content-MD5 and the sha256 as metadata. */
    assert_int_equal(s3_test_count(requests, "PUT", NULL, 200), 3);
    size_t index;
    json_t *entry;
    json_array_foreach(requests, index, entry)
    {
        json_t *headers = json_object_get(entry, "headers");
        if (strcmp(json_string_value(json_object_get(entry, "method")), "PUT") != 0)
            continue;
        assert_string_equal(json_string_value(json_object_get(entry, "payload")), "signed");
        assert_non_null(json_object_get(headers, "content-md5"));
        assert_int_equal(strlen(json_string_value(json_object_get(headers, "x-amz-meta-sha256"))),
                         64);
        const char *path = json_string_value(json_object_get(entry, "path"));
        assert_true(strcmp(path, "/sqlprodd-test/db/app/empty.db.gz") == 0 ||
                    strcmp(path, "/sqlprodd-test/db/app/app-20240101T000000Z.db.gz") == 0 ||
                    strcmp(path, "/sqlprodd-test/db/app/streamed.db.gz") == 0);
    }
    json_decref(requests);
}

static void multipart_round_trip_uses_parts_of_the_part_size(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    round_trip(target, "app/big.db.gz", 12 * 1024 * 1024 + 3, 3);
    target_close(target);

    json_t *requests = s3_test_requests(&fixture.server);
    assert_true(s3_test_all_signed(requests));
    assert_int_equal(s3_test_count(requests, "POST", "uploads", 200), 1);
    assert_int_equal(s3_test_count(requests, "PUT", "partNumber=", 200), 3);
    assert_int_equal(s3_test_count(requests, "POST", "uploadId=", 200), 1);
    assert_int_equal(s3_test_count(requests, "DELETE", NULL, 0), 0);
    size_t index;
    json_t *entry;
    json_array_foreach(requests, index, entry)
    {
        const char *query = json_string_value(json_object_get(entry, "query"));
        if (!strstr(query, "partNumber="))
            continue;
        int64_t bytes = json_integer_value(json_object_get(entry, "bytes"));
        assert_true(bytes == 5 * 1024 * 1024 || bytes == 2 * 1024 * 1024 + 3);
        /* Checked by S3 through the signed payload SHA-256: no MD5 pass
         * (test_object_lock.py: with Object Lock, where S3 requires one). */
        assert_string_equal(json_string_value(json_object_get(entry, "payload")), "signed");
        assert_null(json_object_get(json_object_get(entry, "headers"), "content-md5"));
    }
    json_decref(requests);
}

static void wrong_secret_is_refused_with_a_clear_error(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128];
    struct error err = {0};
    path_in_work(source, sizeof source, "source");
    s3_test_write_random_file(source, 1000, 4);
    setenv("AWS_SECRET_ACCESS_KEY", S3_TEST_SECRET_KEY "wrong", 1);
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    int rc = target_put_file(target, "app/refused.db.gz", source, NULL, NULL, &err);
    assert_int_equal(rc, -EACCES);
    assert_string_equal(err.message,
                        "access denied by S3 for s3://sqlprodd-test/db/app/refused.db.gz: "
                        "SignatureDoesNotMatch \xe2\x80\x94 check the secret key, the clock "
                        "(skew), or the bucket policy");
    assert_null(strstr(err.message, S3_TEST_SECRET_KEY));
    target_close(target);

    /* Refused by the server's signature check, once: a 403 is not retried. */
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(json_array_size(requests), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(requests, 0), "auth")),
                        "SignatureDoesNotMatch");
    json_decref(requests);

    s3_test_use_credentials();
    setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN", 1);
    target = open_target(&config);
    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "", &listing, &err), -EACCES);
    assert_non_null(strstr(err.message, "InvalidAccessKeyId"));
    assert_non_null(strstr(err.message, "check the access key id"));
    target_close(target);
}

static void keys_with_awkward_characters_round_trip(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    static const char *const keys[] = {
        "odd/with space.db.gz",
        "odd/\xc3\xbcnic\xc3\xb6"
        "de-\xe2\x82\xac.db.gz", /* "ünicöde-€" */
        "odd/plus+equals=amp&semi;.db.gz",
        "odd/(paren)!*'~@$,:.db.gz",
        "odd/percent%20literal.db.gz",
        "odd/question?hash#bracket[].db.gz",
        "odd/dots..and.db.gz",
    };
    const size_t count = sizeof keys / sizeof keys[0];
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    for (size_t i = 0; i < count; i++)
        round_trip(target, keys[i], 1000 + i, 10 + (unsigned)i);

    struct target_listing listing = {0};
    struct error err = {0};
    assert_int_equal(target_list(target, "odd/", &listing, &err), 0);
    assert_int_equal(listing.count, count);
    for (size_t i = 0; i < count; i++) {
        if (!find_object(&listing, keys[i]))
            fail_msg("'%s' is missing from the listing", keys[i]);
    }
    target_listing_free(&listing);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(target_delete(target, keys[i], &err), 0);
    assert_int_equal(target_list(target, "odd/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_close(target);

    json_t *requests = s3_test_requests(&fixture.server);
    assert_true(s3_test_all_signed(requests));
    json_decref(requests);
}

static void keys_that_could_escape_are_refused(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    static const char *const bad[] = {"", "/abs", "a/../b", "a//b", "./a", "a/", "tab\there"};
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct error err = {0};
    char source[128];
    path_in_work(source, sizeof source, "source");
    s3_test_write_random_file(source, 10, 5);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(target_put_file(target, bad[i], source, NULL, NULL, &err), -EINVAL);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(json_array_size(requests), 0);
    json_decref(requests);
}

static void listing_pages_past_1000_keys_and_delete_empties_it(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    enum { OBJECTS = 1100 };
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct error err = {0};
    char source[128], key[64];
    path_in_work(source, sizeof source, "tiny");
    s3_test_write_random_file(source, 16, 6);
    for (int i = 0; i < OBJECTS; i++) {
        snprintf(key, sizeof key, "many/many-%05d.db.gz", i);
        if (target_put_file(target, key, source, NULL, NULL, &err) != 0)
            fail_msg("put %s: %s", key, err.message);
    }
    s3_test_reset(&fixture.server);

    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "many/", &listing, &err), 0);
    assert_int_equal(listing.count, OBJECTS);
    for (int i = 0; i < OBJECTS; i++) {
        snprintf(key, sizeof key, "many/many-%05d.db.gz", i);
        assert_non_null(find_object(&listing, key));
    }
    target_listing_free(&listing);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(s3_test_count(requests, "GET", "list-type=2", 200), 2);
    assert_int_equal(s3_test_count(requests, "GET", "continuation-token=", 200), 1);
    assert_true(s3_test_all_signed(requests));
    json_decref(requests);

    /* A prefix that matches part of the set. */
    assert_int_equal(target_list(target, "many/many-0100", &listing, &err), 0);
    assert_int_equal(listing.count, 10);
    target_listing_free(&listing);

    for (int i = 0; i < OBJECTS; i++) {
        snprintf(key, sizeof key, "many/many-%05d.db.gz", i);
        assert_int_equal(target_delete(target, key, &err), 0);
    }
    assert_int_equal(target_list(target, "many/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_close(target);
}

static void delete_of_a_missing_key_is_not_an_error(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct error err = {0};
    assert_int_equal(target_delete(target, "app/never-existed.db.gz", &err), 0);
    target_close(target);
}

static void get_of_a_missing_key_leaves_no_file(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct error err = {0};
    char copy[128];
    path_in_work(copy, sizeof copy, "missing-copy");
    assert_int_equal(target_get_file(target, "app/never-existed.db.gz", copy, NULL, &err), -ENOENT);
    assert_string_equal(err.message,
                        "no such object s3://sqlprodd-test/db/app/never-existed.db.gz");
    assert_int_equal(access(copy, F_OK), -1);

    /* An existing destination is never overwritten. */
    s3_test_write_random_file(copy, 10, 7);
    assert_int_equal(target_get_file(target, "app/never-existed.db.gz", copy, NULL, &err), -EEXIST);
    assert_int_equal(access(copy, F_OK), 0);
    unlink(copy);
    target_close(target);
}

/* Whether the file at `path` holds bytes [offset, offset + length) of `whole`. */
static bool holds_range(const char *path, const char *whole, long offset, long length)
{
    FILE *a = fopen(path, "rb"), *b = fopen(whole, "rb");
    bool same = a && b && fseek(b, offset, SEEK_SET) == 0;
    long count = 0;
    int x = 0, y = 0;
    while (same && (x = fgetc(a)) != EOF && count < length) {
        y = fgetc(b);
        same = x == y;
        count++;
    }
    same = same && x == EOF && count == length;
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    return same;
}

/* The Range header and status of the last GET the server saw. */
static void last_get(char *range, size_t size, long *status)
{
    json_t *requests = s3_test_requests(&fixture.server);
    range[0] = '\0';
    *status = 0;
    for (size_t i = json_array_size(requests); i-- > 0;) {
        json_t *entry = json_array_get(requests, i);
        if (strcmp(json_string_value(json_object_get(entry, "method")), "GET") != 0)
            continue;
        const char *header =
            json_string_value(json_object_get(json_object_get(entry, "headers"), "range"));
        snprintf(range, size, "%s", header ? header : "");
        *status = (long)json_integer_value(json_object_get(entry, "status"));
        break;
    }
    json_decref(requests);
}

static void ranged_get_gives_exactly_the_bytes_asked_for(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct error err = {0};
    char source[128], part[128], range[64];
    long status = 0;
    path_in_work(source, sizeof source, "whole");
    path_in_work(part, sizeof part, "part");
    s3_test_write_random_file(source, 300 * 1024, 11);
    assert_int_equal(target_put_file(target, "app/whole.pack", source, NULL, NULL, &err), 0);

    /* One GET with the range; the bytes, and only them. */
    unlink(part);
    long before = target_objects_read();
    if (target_get_range(target, "app/whole.pack", 1000, 70000, part, NULL, &err) != 0)
        fail_msg("ranged get: %s", err.message);
    assert_true(holds_range(part, source, 1000, 70000));
    assert_int_equal(target_objects_read(), before + 1);
    last_get(range, sizeof range, &status);
    assert_string_equal(range, "bytes=1000-70999");
    assert_int_equal(status, 206);

    /* The last byte alone. */
    unlink(part);
    assert_int_equal(
        target_get_range(target, "app/whole.pack", 300 * 1024 - 1, 1, part, NULL, &err), 0);
    assert_true(holds_range(part, source, 300 * 1024 - 1, 1));

    /* A server that ignores Range sends the whole object: still the range. */
    s3_test_add_fault(&fixture.server, "{\"mode\": \"ignore-range\", \"method\": \"GET\"}");
    unlink(part);
    if (target_get_range(target, "app/whole.pack", 5000, 123456, part, NULL, &err) != 0)
        fail_msg("ranged get, range ignored: %s", err.message);
    assert_true(holds_range(part, source, 5000, 123456));
    last_get(range, sizeof range, &status);
    assert_int_equal(status, 200);

    /* An object shorter than the range (a pack cut short): refused, no file. */
    unlink(part);
    assert_int_equal(
        target_get_range(target, "app/whole.pack", 300 * 1024 - 10, 20, part, NULL, &err),
        -EBADMSG);
    assert_non_null(strstr(err.message, "asked for bytes 307190+20, the server sent 10"));
    assert_int_equal(access(part, F_OK), -1);
    /* ... or that ends before the range begins. */
    assert_int_not_equal(
        target_get_range(target, "app/whole.pack", 400 * 1024, 20, part, NULL, &err), 0);
    assert_int_equal(access(part, F_OK), -1);
    /* Not a range at all. */
    assert_int_equal(target_get_range(target, "app/whole.pack", 0, 0, part, NULL, &err), -EINVAL);

    unlink(source);
    target_close(target);
}

static void missing_bucket_is_named(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    config.bucket = "no-such-bucket";
    struct target *target = open_target(&config);
    struct error err = {0};
    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "", &listing, &err), -ENOENT);
    assert_non_null(strstr(err.message, "no such bucket 'no-such-bucket'"));
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(json_array_size(requests), 1); /* a 404 is not retried */
    json_decref(requests);
}

static void virtual_hosted_addressing_works(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char endpoint[64];
    struct target_config config = test_config();
    snprintf(endpoint, sizeof endpoint, "http://localhost:%d", fixture.server.port);
    config.endpoint = endpoint;
    config.path_style = false;
    config.prefix = "";
    struct target *target = open_target(&config);
    round_trip(target, "vhost/app-1.db.gz", 6 * 1024 * 1024, 8); /* multipart too */
    struct error err = {0};
    assert_int_equal(target_delete(target, "vhost/app-1.db.gz", &err), 0);
    target_close(target);

    json_t *requests = s3_test_requests(&fixture.server);
    assert_true(s3_test_all_signed(requests));
    json_t *first = json_array_get(requests, 0);
    char host[64];
    snprintf(host, sizeof host, "sqlprodd-test.localhost:%d", fixture.server.port);
    assert_string_equal(json_string_value(json_object_get(first, "host")), host);
    assert_string_equal(json_string_value(json_object_get(first, "path")), "/vhost/app-1.db.gz");
    json_decref(requests);
}

static void storage_class_and_encryption_headers_are_sent(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    config.storage_class = "STANDARD_IA";
    config.sse = "AES256";
    struct target *target = open_target(&config);
    char source[128];
    struct error err = {0};
    path_in_work(source, sizeof source, "source");
    s3_test_write_random_file(source, 6 * 1024 * 1024, 9);
    assert_int_equal(target_put_file(target, "sse/multipart.db.gz", source, NULL, NULL, &err), 0);
    s3_test_write_random_file(source, 1000, 9);
    assert_int_equal(target_put_file(target, "sse/single.db.gz", source, NULL, NULL, &err), 0);
    target_close(target);

    json_t *requests = s3_test_requests(&fixture.server);
    size_t index, carrying = 0;
    json_t *entry;
    json_array_foreach(requests, index, entry)
    {
        json_t *headers = json_object_get(entry, "headers");
        const char *storage = json_string_value(json_object_get(headers, "x-amz-storage-class"));
        const char *sse =
            json_string_value(json_object_get(headers, "x-amz-server-side-encryption"));
        if (storage && sse && strcmp(storage, "STANDARD_IA") == 0 && strcmp(sse, "AES256") == 0)
            carrying++;
    }
    /* CreateMultipartUpload and the single PutObject; parts do not repeat them. */
    assert_int_equal(carrying, 2);
    assert_true(s3_test_all_signed(requests));
    json_decref(requests);
}

static void credentials_file_is_used_and_must_be_private(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char file[128];
    path_in_work(file, sizeof file, "credentials");
    FILE *out = fopen(file, "w");
    assert_non_null(out);
    fprintf(out,
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n"
            "[profile backup]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
            S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY);
    fclose(out);
    chmod(file, 0600);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");

    struct target_config config = test_config();
    config.credentials_file = file;
    config.profile = "backup";
    struct target *target = open_target(&config);
    struct target_listing listing = {0};
    struct error err = {0};
    assert_int_equal(target_list(target, "", &listing, &err), 0);
    target_listing_free(&listing);
    target_close(target);

    chmod(file, 0644);
    target = NULL;
    assert_int_equal(target_open(&config, &target, &err), -EPERM);
    assert_null(target);
    assert_non_null(strstr(err.message, "target offsite: credentials file"));
    assert_non_null(strstr(err.message, "chmod 640"));

    config.credentials_file = NULL;
    assert_int_equal(target_open(&config, &target, &err), -ENOENT);
    assert_non_null(strstr(err.message, "AWS_ACCESS_KEY_ID"));
    unlink(file);
}

static void changed_file_is_not_uploaded(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    char source[128];
    struct error err = {0};
    const char *wrong = "0000000000000000000000000000000000000000000000000000000000000000";
    path_in_work(source, sizeof source, "source");
    s3_test_write_random_file(source, 1000, 11);
    assert_int_equal(target_put_file(target, "bad/small.db.gz", source, wrong, NULL, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.message, "changed or is corrupt"));
    s3_test_write_random_file(source, 11 * 1024 * 1024, 11);
    assert_int_equal(target_put_file(target, "bad/large.db.gz", source, wrong, NULL, &err),
                     -EBADMSG);
    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "bad/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_listing_free(&listing);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    /* The multipart upload was abandoned: AbortMultipartUpload was sent. */
    assert_int_equal(s3_test_count(requests, "DELETE", "uploadId=", 0), 1);
    json_decref(requests);
}

/* A source made on the way, as a sealed archive is: byte n is a function
 * of n and of a version, 0 but with `differ`: then the first read of each
 * 64 KiB block gives version 0 and every later read version 1 (a source
 * that reads differently the second time). */
#define MADE_BLOCK  (64 * 1024)
#define MADE_BLOCKS 256
struct made_source {
    int64_t size;
    bool differ;
    bool read[MADE_BLOCKS];
    int reads[MADE_BLOCKS]; /* how often each block was read */
    bool refuse; /* its check says no, as a sealed archive changed underneath would */
    const char *stage; /* if set, the most files it held at a read go to staged_most */
    int staged_most;
    pthread_mutex_t lock;
};

static unsigned char made_byte(int64_t n, int version)
{
    uint64_t x = ((uint64_t)n + ((uint64_t)version << 48)) * 0x9E3779B97F4A7C15ull;
    return (unsigned char)(x >> 56);
}

static int made_open(void *context, void **reader, struct error *err)
{
    (void)err;
    *reader = context;
    return 0;
}

static int made_read(void *reader, unsigned char *buffer, size_t length, int64_t offset,
                     struct error *err)
{
    (void)err;
    struct made_source *made = reader;
    pthread_mutex_lock(&made->lock);
    for (size_t i = 0; i < length; i++) {
        int64_t n = offset + (int64_t)i;
        buffer[i] = made_byte(n, made->differ && made->read[n / MADE_BLOCK]);
    }
    for (int64_t block = offset / MADE_BLOCK;
         length > 0 && block <= (offset + (int64_t)length - 1) / MADE_BLOCK; block++) {
        made->read[block] = true;
        /* A block counts once per pass, however it is cut into reads. */
        if (offset <= block * MADE_BLOCK)
            made->reads[block]++;
    }
    if (made->stage) {
        int staged = files_in(made->stage);
        if (staged > made->staged_most)
            made->staged_most = staged;
    }
    pthread_mutex_unlock(&made->lock);
    return 0;
}

static int made_check(void *reader, struct error *err)
{
    const struct made_source *made = reader;
    return made->refuse ? error_set(err, -EIO, "made changed or is corrupt") : 0;
}

static void made_close(void *reader)
{
    (void)reader;
}

/* A made source of 12 MiB + 5 (three parts of 5 MiB) and its target_source. */
static void made_init(struct made_source *made, struct target_source *source)
{
    *made = (struct made_source){.size = 12 * 1024 * 1024 + 5};
    /* Here, not in made_read: that runs on the upload's threads, where a
     * failed cmocka assertion cannot unwind. */
    assert_true(made->size <= (int64_t)MADE_BLOCK * MADE_BLOCKS);
    pthread_mutex_init(&made->lock, NULL);
    *source = (struct target_source){.name = "made",
                                     .size = made->size,
                                     .context = made,
                                     .open_reader = made_open,
                                     .read = made_read,
                                     .close_reader = made_close,
                                     .check = made_check};
}

static void made_sha256(int64_t size, char out[IO_SHA256_HEX])
{
    struct io_sha256 hash;
    unsigned char piece[4096];
    assert_int_equal(io_sha256_begin(&hash), 0);
    for (int64_t at = 0; at < size; at += (int64_t)sizeof piece) {
        size_t length = size - at < (int64_t)sizeof piece ? (size_t)(size - at) : sizeof piece;
        for (size_t i = 0; i < length; i++)
            piece[i] = made_byte(at + (int64_t)i, 0);
        io_sha256_update(&hash, piece, length);
    }
    io_sha256_end(&hash, out);
}

static void a_source_of_unknown_hash_is_hashed_before_it_is_sent(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct made_source made;
    struct target_source source;
    made_init(&made, &source);
    char expected[IO_SHA256_HEX], stored[IO_SHA256_HEX], copy[128], copied[IO_SHA256_HEX];
    struct error err = {0};
    made_sha256(made.size, expected);
    int rc = target_put_source(target, "app/made.db.gz.age", &source, NULL, stored, NULL, &err);
    if (rc != 0)
        fail_msg("put: %s", err.message);
    assert_string_equal(stored, expected);
    path_in_work(copy, sizeof copy, "copy");
    unlink(copy);
    assert_int_equal(target_get_file(target, "app/made.db.gz.age", copy, NULL, &err), 0);
    assert_int_equal(archive_sha256_file(copy, copied, &err), 0);
    assert_string_equal(copied, expected);
    unlink(copy);
    target_close(target);

    /* The hash exists only once the object is sent: no x-amz-meta-sha256
     * (what was stored is handed back for the manifest). */
    json_t *requests = s3_test_requests(&fixture.server);
    size_t index;
    json_t *entry;
    int creates = 0;
    json_array_foreach(requests, index, entry)
    {
        const char *query = json_string_value(json_object_get(entry, "query"));
        if (strcmp(json_string_value(json_object_get(entry, "method")), "POST") != 0 ||
            !strstr(query, "uploads"))
            continue;
        json_t *headers = json_object_get(entry, "headers");
        assert_null(json_object_get(headers, "x-amz-meta-sha256"));
        creates++;
    }
    assert_int_equal(creates, 1);
    assert_int_equal(s3_test_count(requests, "PUT", "partNumber=", 200), 3);
    /* Each part checked by its signed payload SHA-256 (no MD5 pass). */
    json_array_foreach(requests, index, entry)
    {
        const char *query = json_string_value(json_object_get(entry, "query"));
        if (!strstr(query, "partNumber="))
            continue;
        assert_string_equal(json_string_value(json_object_get(entry, "payload")), "signed");
        assert_null(json_object_get(json_object_get(entry, "headers"), "content-md5"));
    }
    json_decref(requests);
    pthread_mutex_destroy(&made.lock);
}

/* Puts a made source that must be refused (its message holding `expect`):
 * nothing under bad/, the multipart upload aborted, never completed. */
static void refused_and_aborted(void (*spoil)(struct made_source *), const char *expect)
{
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct made_source made;
    struct target_source source;
    made_init(&made, &source);
    spoil(&made);
    struct error err = {0};
    int rc = target_put_source(target, "bad/made.db.gz.age", &source, NULL, NULL, NULL, &err);
    assert_true(rc < 0);
    if (!strstr(err.message, expect))
        fail_msg("%s", err.message);
    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "bad/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_listing_free(&listing);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(s3_test_count(requests, "DELETE", "uploadId=", 0), 1);
    assert_int_equal(s3_test_count(requests, "POST", "uploadId=", 0), 0);
    json_decref(requests);
    pthread_mutex_destroy(&made.lock);
}

static void make_it_refuse(struct made_source *made)
{
    made->refuse = true;
}

static void make_it_differ(struct made_source *made)
{
    made->differ = true;
}

/* A source whose own check fails once it has been read whole (a sealed
 * archive whose plaintext is not its manifest's) is never completed. */
static void a_source_that_fails_its_check_is_not_stored(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    refused_and_aborted(make_it_refuse, "made changed or is corrupt");
}

/* A part is sent only once the hashing pass has read it: that read is the
 * first, so the hashes are of version 0, and every part reads as version 1
 * when it is sent. S3 refuses each by its signed payload hash. Hashing a
 * part again as it is sent would store what was never hashed whole. */
static void a_source_that_reads_differently_is_not_stored(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    refused_and_aborted(make_it_differ, "XAmzContentSHA256Mismatch");
}

/* A source costly to read twice (a pack read back from the target) names a
 * stage directory: then every byte is read once, each part waits in a file
 * there from its hashing until it is sent, at most parallel_parts + 1 of
 * them at a time (never the whole object), and nothing is left there, on
 * success as on failure. Both ways: in parts, and in one PutObject of more
 * than the 1 MiB that is sent from memory. */
static void staged_put(int64_t size, const char *key, int parts)
{
    struct target_config config = test_config();
    struct target *target = open_target(&config);
    struct target_tuning tuning;
    target_tuning_default(&tuning);
    tuning.base_delay_ms = 5;
    tuning.max_delay_ms = 20;
    tuning.parallel_parts = 2; /* at most 3 parts staged: fewer than the 4 */
    target_set_tuning(target, &tuning);
    struct made_source made;
    struct target_source source;
    char stage[128], expected[IO_SHA256_HEX], stored[IO_SHA256_HEX], copy[128],
        copied[IO_SHA256_HEX];
    struct error err = {0};
    path_in_work(stage, sizeof stage, "stage");
    assert_int_equal(mkdir(stage, 0700) == 0 || errno == EEXIST, 1);
    made_init(&made, &source);
    made.size = source.size = size;
    made.stage = source.stage_directory = stage;
    made_sha256(size, expected);
    int rc = target_put_source(target, key, &source, NULL, stored, NULL, &err);
    if (rc != 0)
        fail_msg("put: %s", err.message);
    assert_string_equal(stored, expected);
    for (int64_t block = 0; block * MADE_BLOCK < size; block++)
        if (made.reads[block] != 1)
            fail_msg("block %" PRId64 " was read %d times", block, made.reads[block]);
    assert_true(made.staged_most >= 1);
    assert_true(made.staged_most <= tuning.parallel_parts + 1);
    assert_true(made.staged_most < parts || parts == 1);
    assert_int_equal(files_in(stage), 0);
    path_in_work(copy, sizeof copy, "copy");
    unlink(copy);
    assert_int_equal(target_get_file(target, key, copy, NULL, &err), 0);
    assert_int_equal(archive_sha256_file(copy, copied, &err), 0);
    assert_string_equal(copied, expected);
    unlink(copy);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(s3_test_count(requests, "PUT", "partNumber=", 200), parts > 1 ? parts : 0);
    json_decref(requests);

    /* A part the server refuses: nothing stored, nothing left staged. */
    s3_test_reset(&fixture.server);
    s3_test_add_fault(&fixture.server, parts > 1 ? "{\"status\": 500, \"count\": 100, \"method\": "
                                                   "\"PUT\", \"query\": \"partNumber\"}"
                                                 : "{\"status\": 500, \"count\": 100, \"method\": "
                                                   "\"PUT\"}");
    memset(made.reads, 0, sizeof made.reads);
    assert_true(target_put_source(target, "bad/staged", &source, NULL, NULL, NULL, &err) < 0);
    assert_int_equal(files_in(stage), 0);
    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "bad/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_listing_free(&listing);
    target_close(target);
    rmdir(stage);
    pthread_mutex_destroy(&made.lock);
}

static void a_staged_source_is_read_once_in_parts(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    staged_put(MADE_BLOCK * MADE_BLOCKS, "app/packs/staged.pack", 4); /* 16 MiB: 5+5+5+1 */
}

static void a_staged_source_is_read_once_in_one_put(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    staged_put(3 * 1024 * 1024 + 7, "app/packs/small.pack", 1);
}

static void session_token_is_signed_and_sent(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct s3_test_server token_server;
    const char *const arguments[] = {"--session-token", "session/token+value==", NULL};
    assert_int_equal(s3_test_server_start(&token_server, arguments), 0);
    char endpoint[64];
    struct target_config config = test_config();
    snprintf(endpoint, sizeof endpoint, "%s", token_server.url);
    config.endpoint = endpoint;
    struct target_listing listing = {0};
    struct error err = {0};

    struct target *target = open_target(&config);
    assert_int_equal(target_list(target, "", &listing, &err), -EACCES);
    assert_non_null(strstr(err.message, "InvalidToken"));
    target_close(target);

    setenv("AWS_SESSION_TOKEN", "session/token+value==", 1);
    target = open_target(&config);
    int rc = target_list(target, "", &listing, &err);
    if (rc != 0)
        fail_msg("list with a session token: %s", err.message);
    target_listing_free(&listing);
    target_close(target);
    unsetenv("AWS_SESSION_TOKEN");
    s3_test_server_stop(&token_server);
}

/* https is verified unless tls_verify = false: a self-signed server is refused. */
static void tls_is_verified_unless_disabled(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char certificate[128], key[128], command[512];
    path_in_work(certificate, sizeof certificate, "server.pem");
    path_in_work(key, sizeof key, "server.key");
    snprintf(command, sizeof command,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout '%s' -out '%s' "
             ">/dev/null 2>&1",
             key, certificate);
    assert_int_equal(system(command), 0);
    struct s3_test_server tls_server;
    const char *const arguments[] = {"--tls-cert", certificate, "--tls-key", key, NULL};
    assert_int_equal(s3_test_server_start(&tls_server, arguments), 0);
    assert_int_equal(strncmp(tls_server.url, "https://", 8), 0);

    char endpoint[64];
    struct target_config config = test_config();
    snprintf(endpoint, sizeof endpoint, "%s", tls_server.url);
    config.endpoint = endpoint;
    struct target_listing listing = {0};
    struct error err = {0};
    struct target *target = open_target(&config);
    assert_int_equal(target_list(target, "", &listing, &err), -EPROTO);
    assert_non_null(strstr(err.message, "is not trusted"));
    target_close(target);

    config.tls_verify = false;
    target = open_target(&config);
    round_trip(target, "tls/app-1.db.gz", 2000, 12);
    target_close(target);
    json_t *requests = s3_test_requests(&tls_server);
    assert_true(s3_test_all_signed(requests));
    json_decref(requests);
    s3_test_server_stop(&tls_server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(small_file_round_trip_is_byte_identical, reset_server),
        cmocka_unit_test_setup(multipart_round_trip_uses_parts_of_the_part_size, reset_server),
        cmocka_unit_test_setup(wrong_secret_is_refused_with_a_clear_error, reset_server),
        cmocka_unit_test_setup(keys_with_awkward_characters_round_trip, reset_server),
        cmocka_unit_test_setup(keys_that_could_escape_are_refused, reset_server),
        cmocka_unit_test_setup(listing_pages_past_1000_keys_and_delete_empties_it, reset_server),
        cmocka_unit_test_setup(delete_of_a_missing_key_is_not_an_error, reset_server),
        cmocka_unit_test_setup(get_of_a_missing_key_leaves_no_file, reset_server),
        cmocka_unit_test_setup(ranged_get_gives_exactly_the_bytes_asked_for, reset_server),
        cmocka_unit_test_setup(missing_bucket_is_named, reset_server),
        cmocka_unit_test_setup(virtual_hosted_addressing_works, reset_server),
        cmocka_unit_test_setup(storage_class_and_encryption_headers_are_sent, reset_server),
        cmocka_unit_test_setup(credentials_file_is_used_and_must_be_private, reset_server),
        cmocka_unit_test_setup(changed_file_is_not_uploaded, reset_server),
        cmocka_unit_test_setup(a_source_of_unknown_hash_is_hashed_before_it_is_sent, reset_server),
        cmocka_unit_test_setup(a_source_that_reads_differently_is_not_stored, reset_server),
        cmocka_unit_test_setup(a_source_that_fails_its_check_is_not_stored, reset_server),
        cmocka_unit_test_setup(a_staged_source_is_read_once_in_parts, reset_server),
        cmocka_unit_test_setup(a_staged_source_is_read_once_in_one_put, reset_server),
        cmocka_unit_test_setup(session_token_is_signed_and_sent, reset_server),
        cmocka_unit_test_setup(tls_is_verified_unless_disabled, reset_server),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
