/*
 * test_target_pool.c: a thread's pool of targets on real directory targets:
 * one target per configuration however many databases ask, a target that
 * nobody used for the rest time closed and opened again at the next use
 * (and working), the time to the next rest, a configuration that cannot be
 * opened reported without leaving anything open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "offsite/target_pool.h"

#define REST_MS 200

struct fixture {
    char root[2][64];
    struct target_config config[2];
    volatile sig_atomic_t stop;
    struct target_pool *pool;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    for (int i = 0; i < 2; i++) {
        strcpy(f->root[i], "/tmp/test_target_pool.XXXXXX");
        if (!mkdtemp(f->root[i]))
            return -1;
        f->config[i] = (struct target_config){
            .name = i ? "second" : "first", .type = TARGET_DIR, .path = f->root[i]};
    }
    if (target_pool_new(REST_MS, &f->stop, &f->pool) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char command[256];
    target_pool_free(f->pool);
    snprintf(command, sizeof command, "rm -rf '%s' '%s'", f->root[0], f->root[1]);
    int rc = system(command);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* Puts a small file under `key` through `target` and checks it landed. */
static void put_works(struct target *target, const char *root, const char *key)
{
    char local[128], stored[160];
    struct error err = {0};
    struct stat st;
    snprintf(local, sizeof local, "%s-file", root);
    FILE *file = fopen(local, "w");
    assert_non_null(file);
    fputs("replica object\n", file);
    fclose(file);
    assert_int_equal(target_put_file(target, key, local, NULL, NULL, &err), 0);
    unlink(local);
    snprintf(stored, sizeof stored, "%s/%s", root, key);
    assert_int_equal(stat(stored, &st), 0);
}

static void one_target_per_configuration_whoever_asks(void **state)
{
    struct fixture *f = *state;
    struct target *a = NULL, *b = NULL, *c = NULL;
    struct error err = {0};
    assert_int_equal(target_pool_open_count(f->pool), 0);
    /* Three databases shipping to "first", one to "second". */
    assert_int_equal(target_pool_get(f->pool, &f->config[0], &a, &err), 0);
    assert_int_equal(target_pool_get(f->pool, &f->config[0], &b, &err), 0);
    assert_int_equal(target_pool_get(f->pool, &f->config[0], &b, &err), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(target_pool_get(f->pool, &f->config[1], &c, &err), 0);
    assert_ptr_not_equal(a, c);
    assert_int_equal(target_pool_open_count(f->pool), 2);
    put_works(a, f->root[0], "db1/replica/index.json");
    put_works(c, f->root[1], "db2/replica/index.json");
}

static void an_unused_target_rests_and_opens_again_at_the_next_use(void **state)
{
    struct fixture *f = *state;
    struct target *a = NULL, *c = NULL;
    struct error err = {0};
    assert_int_equal(target_pool_get(f->pool, &f->config[0], &a, &err), 0);
    assert_int_equal(target_pool_get(f->pool, &f->config[1], &c, &err), 0);
    /* Nothing rests before its time; the time left is at most REST_MS. */
    int64_t left = target_pool_rest(f->pool);
    assert_true(left > 0 && left <= REST_MS);
    assert_int_equal(target_pool_open_count(f->pool), 2);

    /* "first" is used again half-way: only "second" rests at REST_MS. */
    sleep_ms(REST_MS / 2);
    assert_int_equal(target_pool_get(f->pool, &f->config[0], &a, &err), 0);
    sleep_ms(REST_MS / 2 + 30);
    left = target_pool_rest(f->pool);
    assert_int_equal(target_pool_open_count(f->pool), 1);
    assert_true(left > 0 && left <= REST_MS / 2);

    sleep_ms(REST_MS / 2 + 30);
    assert_int_equal(target_pool_rest(f->pool), INT64_MAX);
    assert_int_equal(target_pool_open_count(f->pool), 0);

    /* The next use opens it again, and it works. */
    assert_int_equal(target_pool_get(f->pool, &f->config[1], &c, &err), 0);
    assert_int_equal(target_pool_open_count(f->pool), 1);
    put_works(c, f->root[1], "db2/replica/g00000001/base.json");
}

static void a_target_that_cannot_open_is_reported_and_nothing_is_left_open(void **state)
{
    struct fixture *f = *state;
    struct target *t = (struct target *)1;
    struct error err = {0};
    const struct target_config broken = {.name = "broken", .type = TARGET_S3, .bucket = ""};
    assert_true(target_pool_get(f->pool, &broken, &t, &err) < 0);
    assert_null(t);
    assert_non_null(strstr(err.message, "broken"));
    assert_int_equal(target_pool_open_count(f->pool), 0);
    assert_int_equal(target_pool_rest(f->pool), INT64_MAX);
    /* The good one still opens beside it. */
    assert_int_equal(target_pool_get(f->pool, &f->config[0], &t, &err), 0);
    put_works(t, f->root[0], "db1/replica/index.json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(one_target_per_configuration_whoever_asks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_unused_target_rests_and_opens_again_at_the_next_use,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_target_that_cannot_open_is_reported_and_nothing_is_left_open, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
