/*
 * unit_skip.c: a cmocka test that skips is reported to ctest as skipped.
 *
 * cmocka's exit status is the number of failed tests, and a skipped test is
 * not one of them, so a check that never ran here (node not installed, not
 * root) showed as "Passed". tests/CMakeLists.txt links this file into every
 * unit test with `-Wl,--wrap` for cmocka's skip() and group runner: each
 * skip is counted and named, and a run with skips and no failure exits 77,
 * the unit tests' SKIP_RETURN_CODE. The tests themselves stay plain cmocka;
 * nothing here is a test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

enum { UNIT_SKIP_RETURN_CODE = 77 };

static int unit_skipped;

/* The names --wrap gives the real functions and our replacements. */
void __real__skip(const char *const file, const int line);
void __wrap__skip(const char *const file, const int line);
int __real__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);
int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);

void __wrap__skip(const char *const file, const int line)
{
    unit_skipped++;
    fprintf(stderr, "skipped: the test calling skip() at %s:%d\n", file, line);
    __real__skip(file, line);
}

int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown)
{
    int failed =
        __real__cmocka_run_group_tests(group_name, tests, num_tests, group_setup, group_teardown);
    /* 1, not the count: 77 failures must not read as a skip, nor 256 as success. */
    if (failed != 0)
        return 1;
    if (unit_skipped > 0) {
        fprintf(stderr, "%d of %zu tests skipped: ctest reports this test as skipped\n",
                unit_skipped, num_tests);
        return UNIT_SKIP_RETURN_CODE;
    }
    return 0;
}
