/*
 * test_units_clock.c: units_format_clock(), the absolute times that status,
 * the systemd status line and health reasons print instead of "12s ago".
 * (Apart from test_units.c only to keep parallel branches apart.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/units.h"

/* 2026-12-02T06:12:03Z */
#define MOMENT ((time_t)1796191923)

static void same_utc_day_shows_only_the_time(void **state)
{
    (void)state;
    char out[64];
    units_format_clock(MOMENT, MOMENT + 3600, out, sizeof out);
    assert_string_equal(out, "06:12:03 UTC");
}

static void other_day_shows_the_date(void **state)
{
    (void)state;
    char out[64];
    units_format_clock(MOMENT, MOMENT + 86400, out, sizeof out);
    assert_string_equal(out, "2026-12-02 06:12:03 UTC");
    units_format_clock(MOMENT, MOMENT - 86400, out, sizeof out);
    assert_string_equal(out, "2026-12-02 06:12:03 UTC");
}

static void too_small_buffer_gives_an_empty_string(void **state)
{
    (void)state;
    char out[8] = "garbage";
    units_format_clock(MOMENT, MOMENT, out, sizeof out);
    assert_string_equal(out, "");
    units_format_clock(MOMENT, MOMENT, out, 0); /* must not write */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_utc_day_shows_only_the_time),
        cmocka_unit_test(other_day_shows_the_date),
        cmocka_unit_test(too_small_buffer_gives_an_empty_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
