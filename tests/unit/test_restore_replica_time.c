/*
 * test_restore_replica_time.c: what `restore --at` accepts as a time:
 * latest, a relative time before now, RFC 3339 with its zone (Z or an
 * offset, with or without a fraction); and what it refuses (no zone, junk
 * after the time, an impossible offset), each with a message saying what
 * is expected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "restore/replica.h"

/* 2026-12-02T10:15:00Z */
static const int64_t ten_fifteen = (int64_t)1796206500 * 1000;

static int64_t parsed(const char *text, int64_t now)
{
    struct error err = {0};
    int64_t at = 0;
    assert_int_equal(replica_parse_time(text, now, &at, &err), 0);
    return at;
}

static void latest_and_relative_times(void **state)
{
    (void)state;
    assert_true(parsed("latest", ten_fifteen) == REPLICA_LATEST);
    assert_true(parsed("-15m", ten_fifteen) == ten_fifteen - 15 * 60 * 1000);
    assert_true(parsed("-2h", ten_fifteen) == ten_fifteen - 2 * 3600 * 1000);
}

static void rfc3339_with_zone_fraction_and_offset(void **state)
{
    (void)state;
    assert_true(parsed("2026-12-02T10:15:00Z", 0) == ten_fifteen);
    assert_true(parsed("2026-12-02T10:15:00.250Z", 0) == ten_fifteen + 250);
    assert_true(parsed("2026-12-02T10:15:00.5Z", 0) == ten_fifteen + 500);
    assert_true(parsed("2026-12-02T11:15:00+01:00", 0) == ten_fifteen);
    assert_true(parsed("2026-12-02T05:45:00-04:30", 0) == ten_fifteen);
    assert_true(parsed("2026-12-02 10:15:00Z", 0) == ten_fifteen);
}

static void ambiguous_or_malformed_times_are_refused(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "2026-12-02T10:15:00", /* no zone: whose 10:15? */
        "2026-12-02T10:15:00Zjunk",
        "2026-12-02T10:15:00+1:00",
        "2026-12-02T10:15:00+24:00",
        "2026-12-02T10:15:00.Z",
        "yesterday",
        "-15 parsecs",
        "",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        struct error err = {0};
        int64_t at = 0;
        assert_int_equal(replica_parse_time(refused[i], 0, &at, &err), -EINVAL);
        assert_non_null(strstr(err.message, refused[i][0] == '-' ? "-15m" : "expected latest"));
    }
}

static void times_format_as_rfc3339_utc_with_milliseconds(void **state)
{
    (void)state;
    char text[REPLICA_TIME_TEXT];
    replica_format_time(ten_fifteen + 7, text);
    assert_string_equal(text, "2026-12-02T10:15:00.007Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(latest_and_relative_times),
        cmocka_unit_test(rfc3339_with_zone_fraction_and_offset),
        cmocka_unit_test(ambiguous_or_malformed_times_are_refused),
        cmocka_unit_test(times_format_as_rfc3339_utc_with_milliseconds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
