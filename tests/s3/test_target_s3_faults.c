/*
 * test_target_s3_faults.c: the S3 target when things go wrong, against the
 * fault-injecting test server (tests/s3/server.js): 5xx, SlowDown, 408/429
 * retried with backoff until success; other 4xx not retried; connections
 * dropped mid-upload and mid-download; stalls; a refused connection; a stop
 * request during a transfer and during a backoff; a failed multipart upload
 * aborted. Skipped only when node is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "archive/archive.h"
#include "s3_test_fixture.h"
#include "offsite/target.h"

static struct s3_test_fixture fixture;

static int start_server(void **state)
{
    (void)state;
    return s3_test_fixture_start(&fixture, "test_target_s3_faults");
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

static struct target *open_target(int attempts, int64_t base_delay_ms)
{
    const struct target_config config = s3_test_target_config(&fixture, "faults/");
    struct target *target = s3_test_open_target(&config);
    struct target_tuning tuning;
    target_tuning_default(&tuning);
    tuning.attempts = attempts;
    tuning.base_delay_ms = base_delay_ms;
    tuning.max_delay_ms = base_delay_ms * 4;
    tuning.stall_timeout_ms = 1000;
    target_set_tuning(target, &tuning);
    return target;
}

static void file_in_work(char *out, size_t size, const char *name, size_t bytes, unsigned seed)
{
    snprintf(out, size, "%s/%s", fixture.work, name);
    unlink(out);
    if (bytes)
        s3_test_write_random_file(out, bytes, seed);
}

/* The statuses of the logged requests with this method, in order, as "503 503 200". */
static void statuses(json_t *requests, const char *method, char *out, size_t size)
{
    size_t index, length = 0;
    json_t *entry;
    out[0] = '\0';
    json_array_foreach(requests, index, entry)
    {
        if (strcmp(json_string_value(json_object_get(entry, "method")), method) != 0)
            continue;
        json_t *status = json_object_get(entry, "status");
        if (json_is_integer(status))
            length += (size_t)snprintf(out + length, size - length, "%s%lld", length ? " " : "",
                                       (long long)json_integer_value(status));
        else
            length += (size_t)snprintf(out + length, size - length, "%s%s", length ? " " : "",
                                       json_is_string(status) ? json_string_value(status) : "?");
    }
}

static void server_errors_and_slowdown_are_retried_until_success(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128], seen[256];
    struct error err = {0};
    file_in_work(source, sizeof source, "source", 2000, 1);
    s3_test_add_fault(&fixture.server,
                      "[{\"status\": 503, \"code\": \"SlowDown\", \"count\": 2, "
                      "\"method\": \"PUT\"},"
                      " {\"status\": 500, \"code\": \"InternalError\", \"count\": 1, "
                      "\"method\": \"PUT\"},"
                      " {\"status\": 408, \"code\": \"RequestTimeout\", \"count\": 1, "
                      "\"method\": \"PUT\"},"
                      " {\"status\": 429, \"code\": \"TooManyRequests\", \"count\": 1, "
                      "\"method\": \"PUT\"}]");
    struct target *target = open_target(6, 5);
    int rc = target_put_file(target, "app/retried.db.gz", source, NULL, NULL, &err);
    if (rc != 0)
        fail_msg("put: %s", err.message);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    statuses(requests, "PUT", seen, sizeof seen);
    assert_string_equal(seen, "503 503 500 408 429 200");
    assert_true(s3_test_all_signed(requests));
    json_decref(requests);
}

static void exhausted_retries_report_the_last_error(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct error err = {0};
    struct target_listing listing = {0};
    s3_test_add_fault(&fixture.server, "{\"status\": 503, \"code\": \"SlowDown\", \"count\": 10}");
    struct target *target = open_target(3, 5);
    assert_int_equal(target_list(target, "", &listing, &err), -EIO);
    assert_non_null(strstr(err.message, "after 3 attempts"));
    assert_non_null(strstr(err.message, "HTTP 503 SlowDown"));
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(json_array_size(requests), 3);
    json_decref(requests);
}

static void other_client_errors_are_not_retried(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128];
    struct error err = {0};
    file_in_work(source, sizeof source, "source", 100, 2);
    s3_test_add_fault(&fixture.server,
                      "{\"status\": 400, \"code\": \"InvalidArgument\", \"count\": 5}");
    struct target *target = open_target(6, 5);
    assert_int_equal(target_put_file(target, "app/refused.db.gz", source, NULL, NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "HTTP 400 InvalidArgument"));
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(json_array_size(requests), 1);
    json_decref(requests);
}

static void connection_dropped_mid_upload_is_retried(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128], copy[128], seen[256];
    struct error err = {0};
    file_in_work(source, sizeof source, "source", 11 * 1024 * 1024, 3);
    file_in_work(copy, sizeof copy, "copy", 0, 0);
    s3_test_add_fault(&fixture.server, "{\"mode\": \"drop\", \"count\": 1, \"method\": \"PUT\", "
                                       "\"query\": \"partNumber\"}");
    struct target *target = open_target(4, 5);
    int rc = target_put_file(target, "app/dropped.db.gz", source, NULL, NULL, &err);
    if (rc != 0)
        fail_msg("put: %s", err.message);
    assert_int_equal(target_get_file(target, "app/dropped.db.gz", copy, NULL, &err), 0);
    assert_true(s3_test_same_file(source, copy));
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    statuses(requests, "PUT", seen, sizeof seen);
    assert_non_null(strstr(seen, "dropped"));
    assert_int_equal(s3_test_count(requests, "PUT", "partNumber=", 200), 3);
    json_decref(requests);
}

static void connection_dropped_mid_download_is_retried(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128], copy[128];
    struct error err = {0};
    file_in_work(source, sizeof source, "source", 3 * 1024 * 1024, 4);
    file_in_work(copy, sizeof copy, "copy", 0, 0);
    struct target *target = open_target(4, 5);
    assert_int_equal(target_put_file(target, "app/download.db.gz", source, NULL, NULL, &err), 0);
    s3_test_add_fault(
        &fixture.server,
        "{\"mode\": \"drop\", \"when\": \"response\", \"count\": 1, \"method\": \"GET\"}");
    int rc = target_get_file(target, "app/download.db.gz", copy, NULL, &err);
    if (rc != 0)
        fail_msg("get: %s", err.message);
    assert_true(s3_test_same_file(source, copy));
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(s3_test_count(requests, "GET", NULL, 200), 2); /* cut, then whole */
    json_decref(requests);
}

static void a_stalled_response_times_out_and_is_retried(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    struct error err = {0};
    struct target_listing listing = {0};
    s3_test_add_fault(&fixture.server, "{\"mode\": \"delay\", \"ms\": 8000, \"count\": 1}");
    struct target *target = open_target(3, 5);
    time_t started = time(NULL);
    int rc = target_list(target, "", &listing, &err);
    if (rc != 0)
        fail_msg("list: %s", err.message);
    assert_true(time(NULL) - started < 7); /* gave up on the stalled attempt early */
    target_listing_free(&listing);
    target_close(target);
}

static void refused_connection_is_retried_then_reported(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    /* A port nobody listens on: bind one, note it, close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof address), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);
    char endpoint[64];
    struct target *target = open_target(2, 5);
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", ntohs(address.sin_port));
    target_close(target);

    const struct target_config config = {
        .name = "down",
        .type = TARGET_S3,
        .endpoint = endpoint,
        .bucket = S3_TEST_BUCKET,
        .path_style = true,
        .tls_verify = true,
    };
    struct error err = {0};
    struct target_listing listing = {0};
    assert_int_equal(target_open(&config, &target, &err), 0);
    struct target_tuning tuning;
    target_tuning_default(&tuning);
    tuning.attempts = 2;
    tuning.base_delay_ms = 5;
    target_set_tuning(target, &tuning);
    assert_int_equal(target_list(target, "", &listing, &err), -ECONNREFUSED);
    assert_non_null(strstr(err.message, "after 2 attempts"));
    assert_non_null(strstr(err.message, "s3://sqlprodd-test/"));
    target_close(target);
}

struct stopper {
    volatile sig_atomic_t stop;
    int after_ms;
};

static void *stop_later(void *context)
{
    struct stopper *stopper = context;
    struct timespec pause = {.tv_sec = stopper->after_ms / 1000,
                             .tv_nsec = (long)(stopper->after_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
    stopper->stop = 1;
    return NULL;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void stop_during_a_transfer_cancels_and_aborts_the_upload(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128];
    struct error err = {0};
    file_in_work(source, sizeof source, "source", 11 * 1024 * 1024, 5);
    s3_test_add_fault(&fixture.server,
                      "{\"mode\": \"delay\", \"ms\": 20000, \"count\": 10, \"method\": "
                      "\"PUT\", \"query\": \"partNumber\"}");
    struct target *target = open_target(6, 5);
    struct target_tuning tuning;
    target_tuning_default(&tuning);
    tuning.stall_timeout_ms = 60000;
    target_set_tuning(target, &tuning);
    struct stopper stopper = {.after_ms = 300};
    const struct io_context io = {.stop = &stopper.stop};
    /* As the upload job does: the abort is still sent after the stop. */
    target_set_stop(target, &stopper.stop);
    pthread_t thread;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_create(&thread, NULL, stop_later, &stopper);
    assert_int_equal(target_put_file(target, "app/stopped.db.gz", source, NULL, &io, &err),
                     -ECANCELED);
    assert_true(seconds_since(&start) < 5.0);
    pthread_join(thread, NULL);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(s3_test_count(requests, "DELETE", "uploadId=", 0), 1);
    assert_int_equal(s3_test_count(requests, "POST", "uploadId=", 0), 0);
    json_decref(requests);
}

static void stop_during_a_backoff_cancels(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128];
    struct error err = {0};
    file_in_work(source, sizeof source, "source", 100, 6);
    s3_test_add_fault(&fixture.server, "{\"status\": 503, \"code\": \"SlowDown\", \"count\": 10}");
    struct target *target = open_target(6, 10000);
    struct stopper stopper = {.after_ms = 300};
    const struct io_context io = {.stop = &stopper.stop};
    pthread_t thread;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_create(&thread, NULL, stop_later, &stopper);
    int rc = target_put_file(target, "app/backoff.db.gz", source, NULL, &io, &err);
    pthread_join(thread, NULL);
    /* The first backoff may draw a short delay (full jitter) and retry first. */
    assert_int_equal(rc, -ECANCELED);
    assert_true(seconds_since(&start) < 5.0);
    target_close(target);
}

static void failed_part_aborts_the_multipart_upload(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    char source[128];
    struct error err = {0};
    struct target_listing listing = {0};
    file_in_work(source, sizeof source, "source", 16 * 1024 * 1024, 7);
    s3_test_add_fault(&fixture.server,
                      "{\"status\": 400, \"code\": \"InvalidArgument\", \"count\": 100, "
                      "\"method\": \"PUT\", \"query\": \"partNumber\"}");
    struct target *target = open_target(3, 5);
    assert_int_equal(target_put_file(target, "app/aborted.db.gz", source, NULL, NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "part "));
    assert_non_null(strstr(err.message, "InvalidArgument"));
    assert_int_equal(target_list(target, "app/aborted", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    /* s3rver answers AbortMultipartUpload with 405; it was still asked. */
    assert_int_equal(s3_test_count(requests, "DELETE", "uploadId=", 0), 1);
    assert_int_equal(s3_test_count(requests, "POST", "uploadId=", 0), 0);
    json_decref(requests);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(server_errors_and_slowdown_are_retried_until_success, reset_server),
        cmocka_unit_test_setup(exhausted_retries_report_the_last_error, reset_server),
        cmocka_unit_test_setup(other_client_errors_are_not_retried, reset_server),
        cmocka_unit_test_setup(connection_dropped_mid_upload_is_retried, reset_server),
        cmocka_unit_test_setup(connection_dropped_mid_download_is_retried, reset_server),
        cmocka_unit_test_setup(a_stalled_response_times_out_and_is_retried, reset_server),
        cmocka_unit_test_setup(refused_connection_is_retried_then_reported, reset_server),
        cmocka_unit_test_setup(stop_during_a_transfer_cancels_and_aborts_the_upload, reset_server),
        cmocka_unit_test_setup(stop_during_a_backoff_cancels, reset_server),
        cmocka_unit_test_setup(failed_part_aborts_the_multipart_upload, reset_server),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
