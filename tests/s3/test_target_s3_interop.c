/*
 * test_target_s3_interop.c: what the S3 target writes, Debian's aws CLI
 * reads, and the other way round, through the signature-checking test server
 * (tests/s3/server.js). botocore is a second, independent signer: the server
 * accepts its requests and refuses them with a wrong secret, so the server's
 * check is proven against more than our own signer. Skipped only when node
 * is not installed; the aws CLI is a test dependency (scripts/install-deps).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "archive/archive.h"
#include "s3_test_fixture.h"
#include "offsite/target.h"

static struct s3_test_fixture fixture;
static char aws[512];

static int start_server(void **state)
{
    (void)state;
    unsetenv("AWS_PROFILE");
    /* The aws CLI must use only what we give it, and no metadata service. */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("AWS_DEFAULT_REGION", "us-east-1", 1);
    setenv("AWS_CONFIG_FILE", "/dev/null", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
    setenv("AWS_PAGER", "", 1);
    /* Newer CLIs send CRC trailers (aws-chunked) by default; S3 itself takes
     * them, s3rver does not. Debian 12's CLI ignores these. */
    setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required", 1);
    setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required", 1);
    if (s3_test_fixture_start(&fixture, "test_target_s3_interop") != 0)
        return -1;
    if (fixture.node_missing)
        return 0;
    /* Debian's package first: the PATH may hold another one (pyenv, pip). */
    if (access("/usr/bin/aws", X_OK) == 0)
        snprintf(aws, sizeof aws, "/usr/bin/aws");
    else if (!s3_test_find_program("aws", aws, sizeof aws)) {
        fprintf(stderr, "FAIL: the aws CLI is not installed (Debian package awscli, see "
                        "scripts/install-deps)\n");
        return -1;
    }
    return 0;
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

/*
 * Runs `aws --endpoint-url URL ARGS...` (credentials only in the environment)
 * and returns its exit status; its stdout goes to `output` when not NULL.
 */
static int run_aws(char *output, size_t output_size, const char *const *arguments)
{
    char stdout_path[128];
    const char *argv[32] = {aws, "--endpoint-url", fixture.server.url};
    int argc = 3;
    for (int i = 0; arguments[i] && argc < 31; i++)
        argv[argc++] = arguments[i];
    argv[argc] = NULL;
    snprintf(stdout_path, sizeof stdout_path, "%s/aws-stdout", fixture.work);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_path,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int status = -1;
    if (posix_spawn(&pid, aws, &actions, NULL, (char *const *)argv, environ) == 0)
        waitpid(pid, &status, 0);
    posix_spawn_file_actions_destroy(&actions);
    if (output) {
        output[0] = '\0';
        FILE *file = fopen(stdout_path, "r");
        if (file) {
            size_t got = fread(output, 1, output_size - 1, file);
            output[got] = '\0';
            fclose(file);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static struct target *open_target(void)
{
    const struct target_config config = s3_test_target_config(&fixture, "interop/");
    return s3_test_open_target(&config);
}

static void put_by_us(struct target *target, const char *key, const char *path, size_t size,
                      unsigned seed, char sha256[ARCHIVE_SHA256_HEX])
{
    struct error err = {0};
    s3_test_write_random_file(path, size, seed);
    assert_int_equal(archive_sha256_file(path, sha256, &err), 0);
    if (target_put_file(target, key, path, sha256, NULL, &err) != 0)
        fail_msg("put %s: %s", key, err.message);
}

static void what_we_upload_the_aws_cli_lists_and_downloads_intact(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    static const struct {
        const char *key;
        size_t size;
    } objects[] = {
        {"app/app-20240101T000000Z.db.gz", 3000},
        {"app/app-20240102T000000Z.db.gz", 12 * 1024 * 1024 + 1}, /* multipart */
        {"app/with space and \xc3\xbcnicode+plus.db.gz", 500},
    };
    struct target *target = open_target();
    char source[128], copy[128], url[1200], output[4096], sha256[ARCHIVE_SHA256_HEX];
    snprintf(source, sizeof source, "%s/ours", fixture.work);
    snprintf(copy, sizeof copy, "%s/theirs", fixture.work);
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
        put_by_us(target, objects[i].key, source, objects[i].size, 20 + (unsigned)i, sha256);
        snprintf(url, sizeof url, "s3://%s/interop/%s", S3_TEST_BUCKET, objects[i].key);
        unlink(copy);
        const char *cp[] = {"s3", "cp", "--only-show-errors", url, copy, NULL};
        assert_int_equal(run_aws(NULL, 0, cp), 0);
        assert_true(s3_test_same_file(source, copy));

        /* The manifest's sha256 travels as object metadata. */
        char key[1100];
        snprintf(key, sizeof key, "interop/%s", objects[i].key);
        const char *head[] = {"s3api",    "head-object", "--bucket", S3_TEST_BUCKET,
                              "--key",    key,           "--query",  "Metadata.sha256",
                              "--output", "text",        NULL};
        assert_int_equal(run_aws(output, sizeof output, head), 0);
        output[strcspn(output, "\r\n")] = '\0';
        assert_string_equal(output, sha256);
    }
    target_close(target);

    const char *ls[] = {"s3", "ls", "--recursive", "s3://" S3_TEST_BUCKET "/interop/app/", NULL};
    assert_int_equal(run_aws(output, sizeof output, ls), 0);
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
        char line[1200];
        snprintf(line, sizeof line, "%zu interop/%s\n", objects[i].size, objects[i].key);
        if (!strstr(output, line))
            fail_msg("aws s3 ls does not show '%s' in:\n%s", line, output);
    }
    json_t *requests = s3_test_requests(&fixture.server);
    assert_true(s3_test_all_signed(requests));
    json_decref(requests);
}

static void what_the_aws_cli_uploads_we_list_and_download_intact(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    static const struct {
        const char *key;
        size_t size;
    } objects[] = {
        {"cli/cli-20240101T000000Z.db.gz", 2000},
        {"cli/cli-20240102T000000Z.db.gz", 20 * 1024 * 1024}, /* the CLI's multipart */
        {"cli/odd (name) \xe2\x82\xac&=.db.gz", 10},
    };
    struct target *target = open_target();
    struct error err = {0};
    char source[128], copy[128], url[1200];
    snprintf(source, sizeof source, "%s/theirs", fixture.work);
    snprintf(copy, sizeof copy, "%s/ours", fixture.work);
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
        s3_test_write_random_file(source, objects[i].size, 30 + (unsigned)i);
        snprintf(url, sizeof url, "s3://%s/interop/%s", S3_TEST_BUCKET, objects[i].key);
        const char *cp[] = {"s3", "cp", "--only-show-errors", source, url, NULL};
        assert_int_equal(run_aws(NULL, 0, cp), 0);
        unlink(copy);
        if (target_get_file(target, objects[i].key, copy, NULL, &err) != 0)
            fail_msg("get %s: %s", objects[i].key, err.message);
        assert_true(s3_test_same_file(source, copy));
    }
    struct target_listing listing = {0};
    assert_int_equal(target_list(target, "cli/", &listing, &err), 0);
    assert_int_equal(listing.count, sizeof objects / sizeof objects[0]);
    for (size_t i = 0; i < listing.count; i++)
        for (size_t j = 0; j < sizeof objects / sizeof objects[0]; j++)
            if (strcmp(listing.objects[i].key, objects[j].key) == 0)
                assert_int_equal(listing.objects[i].size, (int64_t)objects[j].size);
    target_listing_free(&listing);
    target_close(target);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_true(s3_test_all_signed(requests));
    assert_true(s3_test_count(requests, "PUT", "partNumber=", 200) >= 2);
    json_decref(requests);
}

/* The server's check is not only our own signer agreeing with itself. */
static void the_server_refuses_the_aws_cli_with_a_wrong_secret(void **state)
{
    (void)state;
    if (fixture.node_missing)
        skip();
    const char *ls[] = {"s3", "ls", "s3://" S3_TEST_BUCKET "/", NULL};
    assert_int_equal(run_aws(NULL, 0, ls), 0);
    setenv("AWS_SECRET_ACCESS_KEY", S3_TEST_SECRET_KEY "x", 1);
    assert_int_not_equal(run_aws(NULL, 0, ls), 0);
    json_t *requests = s3_test_requests(&fixture.server);
    assert_int_equal(s3_test_count(requests, "GET", "list-type=2", 200), 1);
    assert_int_equal(s3_test_count(requests, "GET", "list-type=2", 403), 1);
    json_decref(requests);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(what_we_upload_the_aws_cli_lists_and_downloads_intact, reset_server),
        cmocka_unit_test_setup(what_the_aws_cli_uploads_we_list_and_download_intact, reset_server),
        cmocka_unit_test_setup(the_server_refuses_the_aws_cli_with_a_wrong_secret, reset_server),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
