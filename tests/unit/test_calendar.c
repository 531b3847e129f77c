/*
 * test_calendar.c: the calendar schedule.c and retention.c share, against
 * the C library's own gmtime_r and timegm over every day from 1600 to 2400,
 * and a few dates anyone can check by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <time.h>

#include "policy/calendar.h"

static void known_dates_have_known_day_numbers(void **state)
{
    (void)state;
    assert_int_equal(calendar_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(calendar_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(calendar_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(calendar_days_from_civil(2000, 2, 29), 11016);
    int64_t year;
    int month, day;
    calendar_civil_from_days(20818, &year, &month, &day);
    assert_int_equal(year, 2026);
    assert_int_equal(month, 12);
    assert_int_equal(day, 31);
}

/* Every day of eight centuries, both directions, as glibc sees it. */
static void every_day_matches_gmtime_both_ways(void **state)
{
    (void)state;
    int64_t first = calendar_days_from_civil(1600, 1, 1),
            last = calendar_days_from_civil(2400, 12, 31);
    for (int64_t days = first; days <= last; days++) {
        time_t t = (time_t)(days * 86400);
        struct tm utc;
        assert_non_null(gmtime_r(&t, &utc));
        int64_t year;
        int month, day;
        calendar_civil_from_days(days, &year, &month, &day);
        assert_int_equal(year, utc.tm_year + 1900);
        assert_int_equal(month, utc.tm_mon + 1);
        assert_int_equal(day, utc.tm_mday);
        assert_int_equal(calendar_days_from_civil(year, month, day), days);
        if (utc.tm_mday == 1) {
            struct tm next = utc;
            next.tm_mon++;
            next.tm_mday = 0; /* timegm normalises day 0 to the last day of tm_mon */
            time_t end = timegm(&next);
            gmtime_r(&end, &next);
            assert_int_equal(calendar_days_in_month(year, month), next.tm_mday);
        }
    }
}

static void floor_divide_rounds_toward_minus_infinity(void **state)
{
    (void)state;
    assert_int_equal(calendar_floor_divide(7, 2), 3);
    assert_int_equal(calendar_floor_divide(-7, 2), -4);
    assert_int_equal(calendar_floor_divide(-8, 2), -4);
    assert_int_equal(calendar_floor_divide(-1, 86400), -1);
    assert_int_equal(calendar_floor_divide(0, 86400), 0);
    assert_int_equal(calendar_floor_divide(7, -2), -4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_dates_have_known_day_numbers),
        cmocka_unit_test(every_day_matches_gmtime_both_ways),
        cmocka_unit_test(floor_divide_rounds_toward_minus_infinity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
