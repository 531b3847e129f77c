/*
 * s3_test_fixture.h: the cmocka group fixture the test_target_s3*.c files
 * share: one S3 test server for the whole group (s3_test_server.h), a
 * scratch directory, the test credentials in the environment, and targets
 * opened on that server. What each file tunes (retries, delays, prefixes)
 * stays in the file.
 */
#ifndef SQLPRODD_S3_TEST_FIXTURE_H
#define SQLPRODD_S3_TEST_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "s3_test_server.h"
#include "offsite/target.h"

struct s3_test_fixture {
    struct s3_test_server server;
    bool node_missing; /* the tests skip */
    char work[64];     /* scratch directory, removed by s3_test_fixture_stop */
};

/* The only credentials the server accepts, in the AWS_* variables the target reads. */
static inline void s3_test_use_credentials(void)
{
    setenv("AWS_ACCESS_KEY_ID", S3_TEST_ACCESS_KEY, 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_TEST_SECRET_KEY, 1);
    unsetenv("AWS_SESSION_TOKEN");
}

/*
 * Group setup: makes /tmp/NAME.XXXXXX, sets the credentials and starts the
 * server. Returns 0 (with node_missing set when node is not installed) or
 * -1 when the server cannot start.
 */
static inline int s3_test_fixture_start(struct s3_test_fixture *fixture, const char *name)
{
    memset(fixture, 0, sizeof *fixture);
    snprintf(fixture->work, sizeof fixture->work, "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(fixture->work))
        return -1;
    s3_test_use_credentials();
    int rc = s3_test_server_start(&fixture->server, NULL);
    fixture->node_missing = rc == 1;
    return rc < 0 ? -1 : 0;
}

/* Group teardown: stops the server and removes the scratch directory. */
static inline int s3_test_fixture_stop(struct s3_test_fixture *fixture)
{
    s3_test_server_stop(&fixture->server);
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", fixture->work);
    return system(command) == 0 ? 0 : -1;
}

/* Per-test setup: the credentials back, no faults and an empty request log. */
static inline void s3_test_fixture_reset(struct s3_test_fixture *fixture)
{
    s3_test_use_credentials();
    if (!fixture->node_missing)
        s3_test_reset(&fixture->server);
}

/* The target "offsite" on the fixture's server: path-style, 5 MiB parts,
 * keys under `prefix`. */
static inline struct target_config s3_test_target_config(struct s3_test_fixture *fixture,
                                                         char *prefix)
{
    return (struct target_config){
        .name = "offsite",
        .type = TARGET_S3,
        .endpoint = fixture->server.url,
        .region = "us-east-1",
        .bucket = S3_TEST_BUCKET,
        .prefix = prefix,
        .path_style = true,
        .part_size = 5 * 1024 * 1024,
        .tls_verify = true,
    };
}

/* target_open, failing the test with its message when it fails. */
static inline struct target *s3_test_open_target(const struct target_config *config)
{
    struct target *target = NULL;
    struct error err = {0};
    if (target_open(config, &target, &err) != 0)
        fail_msg("target_open: %s", err.message);
    return target;
}

#endif
