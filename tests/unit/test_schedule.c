/*
 * test_schedule.c: cron parsing, next-match times across month ends, leap
 * years and DST changes, and when a job is due after downtime.
 *
 * The clock is faked with fixed instants written as UTC; expected times are
 * written as an operator reads them, in the zone's local time with its
 * abbreviation ("2024-03-31 03:00 CEST"). Zones come from tzdata through
 * setenv("TZ") + tzset(), and every test puts TZ back to UTC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/schedule.h"

/* ---- helpers ---------------------------------------------------------- */

/* "2024-03-31T01:00Z" -> instant. */
static time_t utc(const char *text)
{
    struct tm fields = {0};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (sscanf(text, "%d-%d-%dT%d:%d:%dZ", &year, &month, &day, &hour, &minute, &second) < 5)
        fail_msg("bad UTC time in test table: %s", text);
    fields.tm_year = year - 1900;
    fields.tm_mon = month - 1;
    fields.tm_mday = day;
    fields.tm_hour = hour;
    fields.tm_min = minute;
    fields.tm_sec = second;
    return timegm(&fields);
}

/* Instant -> "2024-03-31 03:00 CEST" in the current TZ; "never" for -1. */
static void local_text(time_t when, char *out, size_t out_size)
{
    struct tm fields;
    if (when == (time_t)-1) {
        snprintf(out, out_size, "never");
        return;
    }
    localtime_r(&when, &fields);
    strftime(out, out_size, "%Y-%m-%d %H:%M %Z", &fields);
}

/* Switches the process zone; fails loudly when tzdata is missing rather
 * than testing UTC under another name. */
static void use_zone(const char *zone)
{
    setenv("TZ", zone, 1);
    tzset();
    if (strcmp(zone, "UTC") == 0)
        return;
    time_t winter = utc("2024-01-15T12:00Z"), summer = utc("2024-07-15T12:00Z");
    struct tm january, july;
    localtime_r(&winter, &january);
    localtime_r(&summer, &july);
    if (january.tm_gmtoff == 0 && july.tm_gmtoff == 0)
        fail_msg("time zone %s did not load: is tzdata installed?", zone);
}

static int restore_utc(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

static struct cron_expression parse_or_fail(const char *text)
{
    struct cron_expression cron;
    char why[160] = "";
    if (sched_parse_cron(text, &cron, why, sizeof why) != 0)
        fail_msg("'%s' was rejected: %s", text, why);
    return cron;
}

#define ROWS(table)  (sizeof(table) / sizeof((table)[0]))
#define BIT(n)       ((uint64_t)1 << (n))
#define ALL_MINUTES  (~(uint64_t)0 >> 4)
#define ALL_HOURS    0xffffffu
#define ALL_DAYS     0xfffffffeu
#define ALL_MONTHS   0x1ffeu
#define ALL_WEEKDAYS 0x7fu

/* ---- parsing ---------------------------------------------------------- */

struct cron_parse_case {
    const char *text;
    uint64_t minutes;
    uint32_t hours, days_of_month;
    uint16_t months;
    uint8_t days_of_week;
    bool day_of_month_restricted, day_of_week_restricted;
};

static const struct cron_parse_case parsed_crons[] = {
    {"* * * * *", ALL_MINUTES, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"30 3 * * *", BIT(30), BIT(3), ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"  30\t3  *  * *  ", BIT(30), BIT(3), ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"*/15 * * * *", BIT(0) | BIT(15) | BIT(30) | BIT(45), ALL_HOURS, ALL_DAYS, ALL_MONTHS,
     ALL_WEEKDAYS, false, false},
    {"10-50/20 * * * *", BIT(10) | BIT(30) | BIT(50), ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS,
     false, false},
    {"5/15 * * * *", BIT(5) | BIT(20) | BIT(35) | BIT(50), ALL_HOURS, ALL_DAYS, ALL_MONTHS,
     ALL_WEEKDAYS, false, false},
    {"0,30 1-3,22 * * *", BIT(0) | BIT(30), 0x400000u | 0xeu, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS,
     false, false},
    {"0 0 1,15 * *", BIT(0), BIT(0), (1u << 1) | (1u << 15), ALL_MONTHS, ALL_WEEKDAYS, true, false},
    {"0 0 1-31 * 1", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 1u << 1, false, true},
    {"0 0 */2 * *", BIT(0), BIT(0), 0xaaaaaaaau, ALL_MONTHS, ALL_WEEKDAYS, true, false},
    {"0 0 * jan-mar,DEC *", BIT(0), BIT(0), ALL_DAYS, 0xeu | (1u << 12), ALL_WEEKDAYS, false,
     false},
    {"0 0 * */3 *", BIT(0), BIT(0), ALL_DAYS, (1u << 1) | (1u << 4) | (1u << 7) | (1u << 10),
     ALL_WEEKDAYS, false, false},
    {"0 0 * * Mon-Fri", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x3eu, false, true},
    {"0 0 * * 7", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 1u, false, true},
    {"0 0 * * 5-7", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x61u, false, true},
    {"0 0 * * fri-sun", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x61u, false, true},
    {"0 0 * * sat-sun", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x41u, false, true},
    {"0 0 * * sun-sun", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x01u, false, true},
    {"0 0 * * sun-tue", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x07u, false, true},
    {"0 0 * * 0-7", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"0 0 * * sun,sat", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 0x41u, false, true},
    {"59 23 31 12 6", BIT(59), BIT(23), 1u << 31, 1u << 12, 1u << 6, true, true},
    {"@hourly", BIT(0), ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"@daily", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"@midnight", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, false, false},
    {"@weekly", BIT(0), BIT(0), ALL_DAYS, ALL_MONTHS, 1u, false, true},
    {"@monthly", BIT(0), BIT(0), 1u << 1, ALL_MONTHS, ALL_WEEKDAYS, true, false},
    {"@yearly", BIT(0), BIT(0), 1u << 1, 1u << 1, ALL_WEEKDAYS, true, false},
    {"@Annually", BIT(0), BIT(0), 1u << 1, 1u << 1, ALL_WEEKDAYS, true, false},
};

struct cron_reject_case {
    const char *text;
    const char *why; /* the whole message: operators read it verbatim */
};

static const struct cron_reject_case rejected_crons[] = {
    {"", "empty cron expression (write e.g. \"30 3 * * *\")"},
    {"* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
    {"* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"},
    {"60 * * * *", "minute field: 60 is out of range 0-59"},
    {"* 24 * * *", "hour field: 24 is out of range 0-23"},
    {"0 0 0 * *", "day-of-month field: 0 is out of range 1-31"},
    {"0 0 32 * *", "day-of-month field: 32 is out of range 1-31"},
    {"0 0 * 13 *", "month field: 13 is out of range 1-12"},
    {"0 0 * 0 *", "month field: 0 is out of range 1-12"},
    {"0 0 * * 8", "day-of-week field: 8 is out of range 0-7"},
    {"99999999999 * * * *", "minute field: 99999999999 is out of range 0-59"},
    {"50-10 * * * *", "minute field: range 50-10 is reversed (write 10-50)"},
    {"0 0 * * fri-mon", "day-of-week field: range 5-1 is reversed (write 1-5)"},
    {"*/0 * * * *", "minute field: a step of 0 is not allowed"},
    {"0 */24 * * *", "hour field: step 24 is out of range 1-23"},
    {"*/ * * * *", "minute field: expected a step after '/'"},
    {"1,,2 * * * *", "minute field: empty list item"},
    {"1, * * * *", "minute field: empty list item"},
    {"1- * * * *", "minute field: a range needs an end (write e.g. 1-5)"},
    {"5x * * * *", "minute field: unexpected 'x'"},
    {"*-5 * * * *", "minute field: unexpected '-'"},
    {"mon * * * *", "minute field: 'mon' is not a number"},
    {"0 0 L * *", "day-of-month field: 'L' is not a number"},
    {"0 0 ? * *", "day-of-month field: unexpected '?'"},
    {"0 0 * * 1#2", "day-of-week field: unexpected '#'"},
    {"0 0 * foo *", "month field: unknown name 'foo' (use jan-dec)"},
    {"0 0 * * monday", "day-of-week field: unknown name 'monday' (use sun-sat)"},
    {"@reboot", "unknown macro '@reboot' (use @hourly, @daily, @weekly, @monthly or @yearly)"},
    {"@daily 5", "@daily takes no fields after it"},
};

static void cron_parses(void **state)
{
    const struct cron_parse_case *row = *state;
    struct cron_expression cron = parse_or_fail(row->text);
    if (cron.minutes != row->minutes)
        fail_msg("'%s': minutes %#" PRIx64 ", expected %#" PRIx64, row->text, cron.minutes,
                 row->minutes);
    assert_int_equal(cron.hours, row->hours);
    assert_int_equal(cron.days_of_month, row->days_of_month);
    assert_int_equal(cron.months, row->months);
    assert_int_equal(cron.days_of_week, row->days_of_week);
    assert_int_equal(cron.day_of_month_restricted, row->day_of_month_restricted);
    assert_int_equal(cron.day_of_week_restricted, row->day_of_week_restricted);
}

static void cron_is_rejected(void **state)
{
    const struct cron_reject_case *row = *state;
    struct cron_expression cron, untouched;
    memset(&cron, 0x5a, sizeof cron);
    untouched = cron;
    char why[200] = "";
    int rc = sched_parse_cron(row->text, &cron, why, sizeof why);
    if (rc != -EINVAL)
        fail_msg("'%s' returned %d, expected -EINVAL", row->text, rc);
    assert_string_equal(why, row->why);
    assert_memory_equal(&cron, &untouched, sizeof cron);
}

/* ---- next match ------------------------------------------------------- */

struct cron_next_case {
    const char *behaviour;
    const char *zone;
    const char *text;
    const char *after; /* UTC */
    const char *next;  /* local time, or "never" */
};

static const struct cron_next_case next_matches[] = {
    /* Plain arithmetic, in UTC. */
    {"next_quarter_hour", "UTC", "*/15 * * * *", "2024-05-01T10:07Z", "2024-05-01 10:15 UTC"},
    {"strictly_after_a_matching_minute", "UTC", "*/15 * * * *", "2024-05-01T10:15Z",
     "2024-05-01 10:30 UTC"},
    {"seconds_before_a_match", "UTC", "*/15 * * * *", "2024-05-01T10:14:59Z",
     "2024-05-01 10:15 UTC"},
    {"seconds_into_a_matching_minute", "UTC", "*/15 * * * *", "2024-05-01T10:15:30Z",
     "2024-05-01 10:30 UTC"},
    {"daily_after_todays_run", "UTC", "30 3 * * *", "2024-05-01T03:30Z", "2024-05-02 03:30 UTC"},
    {"daily_before_todays_run", "UTC", "30 3 * * *", "2024-05-01T03:29Z", "2024-05-01 03:30 UTC"},
    {"hourly_macro", "UTC", "@hourly", "2024-05-01T10:59:59Z", "2024-05-01 11:00 UTC"},
    {"year_rollover", "UTC", "0 0 1 * *", "2024-12-31T12:00Z", "2025-01-01 00:00 UTC"},
    {"yearly_macro", "UTC", "@yearly", "2024-06-01T00:00Z", "2025-01-01 00:00 UTC"},
    {"last_minute_of_the_year", "UTC", "59 23 31 12 *", "2024-12-31T23:59Z",
     "2025-12-31 23:59 UTC"},
    {"month_name_next_year", "UTC", "0 12 * feb *", "2024-03-01T00:00Z", "2025-02-01 12:00 UTC"},
    {"before_1970", "UTC", "0 0 * * *", "1969-12-31T23:30Z", "1970-01-01 00:00 UTC"},
    /* Month ends and leap years. */
    {"day_31_skips_february", "UTC", "0 0 31 * *", "2024-01-31T00:00Z", "2024-03-31 00:00 UTC"},
    {"day_31_skips_april", "UTC", "0 0 31 * *", "2024-03-31T00:00Z", "2024-05-31 00:00 UTC"},
    {"day_30_skips_february", "UTC", "0 0 30 * *", "2024-01-30T00:00Z", "2024-03-30 00:00 UTC"},
    {"feb_29_in_leap_year", "UTC", "0 0 29 2 *", "2023-06-01T00:00Z", "2024-02-29 00:00 UTC"},
    {"feb_29_waits_four_years", "UTC", "0 0 29 2 *", "2024-03-01T00:00Z", "2028-02-29 00:00 UTC"},
    {"feb_29_skips_2100", "UTC", "0 0 29 2 *", "2099-03-01T00:00Z", "2104-02-29 00:00 UTC"},
    {"feb_29_across_2100_waits_seven_years", "UTC", "0 0 29 2 *", "2097-03-01T00:00Z",
     "2104-02-29 00:00 UTC"},
    {"feb_31_is_never", "UTC", "0 0 31 2 *", "2024-01-01T00:00Z", "never"},
    {"feb_30_is_never", "UTC", "0 0 30 2 *", "2024-01-01T00:00Z", "never"},
    {"day_31_of_short_months_is_never", "UTC", "0 0 31 4,6,9,11 *", "2024-01-01T00:00Z", "never"},
    {"last_day_of_february_in_common_year", "UTC", "0 0 28 2 *", "2025-02-27T00:00Z",
     "2025-02-28 00:00 UTC"},
    /* Day-of-month and day-of-week: "or" when both are restricted. */
    {"dom_or_dow_first_friday", "UTC", "0 0 13 * 5", "2024-01-01T00:00Z", "2024-01-05 00:00 UTC"},
    {"dom_or_dow_the_13th_a_saturday", "UTC", "0 0 13 * 5", "2024-01-12T00:00Z",
     "2024-01-13 00:00 UTC"},
    {"dom_only", "UTC", "0 0 13 * *", "2024-01-01T00:00Z", "2024-01-13 00:00 UTC"},
    {"dow_only_next_monday", "UTC", "0 9 * * mon", "2024-01-01T09:00Z", "2024-01-08 09:00 UTC"},
    {"dow_7_is_sunday", "UTC", "0 0 * * 7", "2024-01-01T00:00Z", "2024-01-07 00:00 UTC"},
    {"full_dom_range_is_unrestricted", "UTC", "0 0 1-31 * 1", "2024-01-01T00:00Z",
     "2024-01-08 00:00 UTC"},
    {"stepped_dom_is_restricted", "UTC", "0 0 */2 * 1", "2024-01-01T00:00Z",
     "2024-01-03 00:00 UTC"},
    {"weekday_in_named_month", "UTC", "0 8 * jun mon-fri", "2024-01-01T00:00Z",
     "2024-06-03 08:00 UTC"},
    /* Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST. */
    {"berlin_skipped_time_runs_at_end_of_gap", "Europe/Berlin", "30 2 * * *", "2024-03-30T12:00Z",
     "2024-03-31 03:00 CEST"},
    {"berlin_skipped_time_runs_once", "Europe/Berlin", "30 2 * * *", "2024-03-31T01:00Z",
     "2024-04-01 02:30 CEST"},
    {"berlin_several_skipped_times_collapse", "Europe/Berlin", "0,30 2 * * *", "2024-03-31T01:00Z",
     "2024-04-01 02:00 CEST"},
    {"berlin_gap_and_next_existing_match_run_once", "Europe/Berlin", "0 2,3 * * *",
     "2024-03-31T01:00Z", "2024-04-01 02:00 CEST"},
    {"berlin_hourly_job_does_not_catch_up_gap", "Europe/Berlin", "5 * * * *", "2024-03-31T00:05Z",
     "2024-03-31 03:05 CEST"},
    {"berlin_quarter_hours_jump_the_gap", "Europe/Berlin", "*/15 * * * *", "2024-03-31T00:50Z",
     "2024-03-31 03:00 CEST"},
    {"berlin_day_after_spring_forward", "Europe/Berlin", "30 2 * * *", "2024-03-31T12:00Z",
     "2024-04-01 02:30 CEST"},
    /* Europe/Berlin: 2024-10-27 03:00 CEST -> 02:00 CET. */
    {"berlin_repeated_time_runs_first", "Europe/Berlin", "30 2 * * *", "2024-10-26T12:00Z",
     "2024-10-27 02:30 CEST"},
    {"berlin_repeated_time_runs_once", "Europe/Berlin", "30 2 * * *", "2024-10-27T00:30Z",
     "2024-10-28 02:30 CET"},
    {"berlin_time_after_repeated_hour", "Europe/Berlin", "0 3 * * *", "2024-10-27T00:30Z",
     "2024-10-27 03:00 CET"},
    {"berlin_quarter_hours_continue_in_repeated_hour", "Europe/Berlin", "*/15 * * * *",
     "2024-10-27T00:50Z", "2024-10-27 02:00 CET"},
    {"berlin_hourly_job_runs_each_real_hour", "Europe/Berlin", "0 * * * *", "2024-10-27T00:00Z",
     "2024-10-27 02:00 CET"},
    {"berlin_winter_midnight", "Europe/Berlin", "0 0 * * *", "2024-01-15T12:00Z",
     "2024-01-16 00:00 CET"},
    {"berlin_summer_midnight", "Europe/Berlin", "0 0 * * *", "2024-07-01T12:00Z",
     "2024-07-02 00:00 CEST"},
    {"berlin_local_midnight_is_utc_evening", "Europe/Berlin", "0 0 * * *", "2024-07-01T21:59Z",
     "2024-07-02 00:00 CEST"},
    {"berlin_month_end_in_local_time", "Europe/Berlin", "0 0 1 * *", "2024-04-30T21:30Z",
     "2024-05-01 00:00 CEST"},
    /* America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT, 2024-11-03 02:00 EDT -> 01:00 EST. */
    {"new_york_skipped_time_runs_at_end_of_gap", "America/New_York", "30 2 * * *",
     "2024-03-09T12:00Z", "2024-03-10 03:00 EDT"},
    {"new_york_skipped_hour_start", "America/New_York", "0 2 * * *", "2024-03-10T06:00Z",
     "2024-03-10 03:00 EDT"},
    {"new_york_repeated_time_runs_first", "America/New_York", "30 1 * * *", "2024-11-02T12:00Z",
     "2024-11-03 01:30 EDT"},
    {"new_york_repeated_time_runs_once", "America/New_York", "30 1 * * *", "2024-11-03T05:30Z",
     "2024-11-04 01:30 EST"},
    {"new_york_half_hours_continue_in_repeated_hour", "America/New_York", "*/30 * * * *",
     "2024-11-03T05:45Z", "2024-11-03 01:00 EST"},
    /* Australia/Lord_Howe moves its clock by 30 minutes: 02:00 -> 02:30. */
    {"lord_howe_half_hour_gap", "Australia/Lord_Howe", "15 2 * * *", "2024-10-05T12:00Z",
     "2024-10-06 02:30 +11"},
};

static void cron_next_matches(void **state)
{
    const struct cron_next_case *row = *state;
    use_zone(row->zone);
    struct cron_expression cron = parse_or_fail(row->text);
    time_t next = sched_cron_next(&cron, utc(row->after));
    char got[64];
    local_text(next, got, sizeof got);
    if (strcmp(got, row->next) != 0)
        fail_msg("%s '%s' after %s: got %s, expected %s", row->zone, row->text, row->after, got,
                 row->next);
}

/* ---- behaviours that need more than one call ---------------------------- */

/* A daily job around both Berlin changes of 2024, run by a loop that takes
 * each result as its next "after": one run per local day, never two, never
 * none, with the skipped 02:30 run at 03:00. */
static void daily_job_runs_once_per_day_through_dst(void **state)
{
    (void)state;
    static const char *const expected[] = {
        "2024-03-30 02:30 CET",  "2024-03-31 03:00 CEST", "2024-04-01 02:30 CEST",
        "2024-10-26 02:30 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:30 CET",
    };
    use_zone("Europe/Berlin");
    struct cron_expression cron = parse_or_fail("30 2 * * *");
    const time_t starts[] = {utc("2024-03-29T12:00Z"), utc("2024-10-25T12:00Z")};
    for (int change = 0; change < 2; change++) {
        time_t when = starts[change];
        for (int run = 0; run < 3; run++) {
            char got[64];
            when = sched_cron_next(&cron, when);
            local_text(when, got, sizeof got);
            assert_string_equal(got, expected[change * 3 + run]);
        }
    }
}

/* A job every 15 minutes keeps 15 real minutes between runs through both
 * changes: no burst at the gap, no hole in the repeated hour. */
static void quarter_hour_job_keeps_real_intervals_through_dst(void **state)
{
    (void)state;
    use_zone("Europe/Berlin");
    struct cron_expression cron = parse_or_fail("*/15 * * * *");
    const char *starts[] = {"2024-03-30T22:00Z", "2024-10-26T22:00Z"};
    for (int change = 0; change < 2; change++) {
        time_t when = utc(starts[change]);
        for (int run = 0; run < 6 * 4; run++) {
            time_t next = sched_cron_next(&cron, when);
            assert_int_equal(next - when, 15 * 60);
            when = next;
        }
    }
}

/* Independent check: a slow reference that walks real minutes and applies
 * the documented DST rules, against sched_cron_next, for pseudo-random
 * expressions and instants around DST changes in several zones. */
static bool reference_fields_match(const struct cron_expression *cron, time_t civil)
{
    struct tm t;
    gmtime_r(&civil, &t);
    if (!(cron->minutes & BIT(t.tm_min)) || !(cron->hours & (1u << t.tm_hour)) ||
        !(cron->months & (1u << (t.tm_mon + 1))))
        return false;
    bool by_date = cron->days_of_month & (1u << t.tm_mday);
    bool by_weekday = cron->days_of_week & (1u << t.tm_wday);
    if (cron->day_of_month_restricted && cron->day_of_week_restricted)
        return by_date || by_weekday;
    if (cron->day_of_month_restricted)
        return by_date;
    return cron->day_of_week_restricted ? by_weekday : true;
}

static long reference_offset(time_t t)
{
    struct tm local;
    localtime_r(&t, &local);
    return local.tm_gmtoff;
}

static time_t reference_next(const struct cron_expression *cron, time_t after, int days)
{
    bool wall_clock = cron->hours != ALL_HOURS;
    time_t t = after - (after % 60 + 60) % 60 + 60;
    for (long i = 0; i < days * 1440L; i++, t += 60) {
        long offset = reference_offset(t);
        time_t civil = t + offset;
        if (reference_fields_match(cron, civil)) {
            bool first = true; /* wall-clock jobs run a repeated time once */
            const long others[2] = {reference_offset(t - 86400), reference_offset(t + 86400)};
            for (int k = 0; k < 2 && wall_clock; k++)
                if (others[k] != offset && civil - others[k] < t &&
                    reference_offset(civil - others[k]) == others[k])
                    first = false;
            if (first)
                return t;
        }
        long before = reference_offset(t - 1);
        for (time_t skipped = t + before; wall_clock && skipped < t + offset; skipped += 60)
            if (reference_fields_match(cron, skipped))
                return t;
    }
    return (time_t)-1;
}

/* A fixed linear congruential sequence: the same cases on every run. */
static uint32_t next_random(uint32_t *seed, size_t below)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) % (uint32_t)below;
}

static void cron_next_agrees_with_minute_by_minute_reference(void **state)
{
    (void)state;
    static const char *const minutes[] = {"*", "*/15", "0", "30", "0,30", "5-10", "59"};
    static const char *const hours[] = {"*", "2", "1-3", "*/2", "0", "23", "2,3"};
    static const char *const days[] = {"*", "*", "1", "31", "29", "*/2", "1-7"};
    static const char *const months[] = {"*", "*", "2", "3,10", "11", "3-11"};
    static const char *const weekdays[] = {"*", "*", "0", "1-5", "6,0"};
    /* Each zone with one of its changes, as UTC instants. */
    static const struct {
        const char *zone, *change;
    } changes[] = {
        {"Europe/Berlin", "2024-03-31T01:00Z"},       {"Europe/Berlin", "2024-10-27T01:00Z"},
        {"America/New_York", "2024-03-10T07:00Z"},    {"America/New_York", "2024-11-03T06:00Z"},
        {"Australia/Lord_Howe", "2024-10-05T15:30Z"}, {"Australia/Lord_Howe", "2024-04-06T15:00Z"},
        {"America/Sao_Paulo", "2018-11-04T03:00Z"},   {"America/Sao_Paulo", "2019-02-17T02:00Z"},
        {"Pacific/Chatham", "2024-04-06T14:00Z"},     {"Pacific/Chatham", "2024-09-28T14:00Z"},
    };
    uint32_t seed = 12345;
    for (int i = 0; i < 200; i++) {
        const char *minute = minutes[next_random(&seed, ROWS(minutes))];
        const char *hour = hours[next_random(&seed, ROWS(hours))];
        const char *day = days[next_random(&seed, ROWS(days))];
        const char *month = months[next_random(&seed, ROWS(months))];
        const char *weekday = weekdays[next_random(&seed, ROWS(weekdays))];
        size_t pick = next_random(&seed, ROWS(changes));
        const char *zone = changes[pick].zone;
        /* from 30 hours before the change to 6 hours after it */
        time_t after = utc(changes[pick].change) - 30 * 3600 + next_random(&seed, 36 * 3600);
        char text[64];
        snprintf(text, sizeof text, "%s %s %s %s %s", minute, hour, day, month, weekday);
        use_zone(zone);
        struct cron_expression cron = parse_or_fail(text);
        int window = 6;
        time_t expected = reference_next(&cron, after, window);
        time_t got = sched_cron_next(&cron, after);
        if (expected == (time_t)-1 && (got == (time_t)-1 || got >= after + window * 86400))
            continue;
        if (got != expected)
            fail_msg("%s '%s' after %" PRId64 ": got %" PRId64 ", reference %" PRId64, zone, text,
                     (int64_t)after, (int64_t)got, (int64_t)expected);
    }
}

/* Called for every database on every tick: an impossible expression must
 * give up after its bounded search, not walk five years of minutes. */
static void impossible_expression_gives_up_quickly(void **state)
{
    (void)state;
    use_zone("Europe/Berlin");
    struct cron_expression cron = parse_or_fail("0 0 31 2 *");
    clock_t start = clock();
    for (int i = 0; i < 2000; i++)
        assert_int_equal(sched_cron_next(&cron, utc("2024-01-01T00:00Z") + i * 3600), (time_t)-1);
    double seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
    if (seconds > 2.0)
        fail_msg("2000 impossible searches took %.2f s", seconds);
}

static void empty_expression_never_matches(void **state)
{
    (void)state;
    struct cron_expression cron = {0};
    assert_int_equal(sched_cron_next(&cron, utc("2024-01-01T00:00Z")), (time_t)-1);
    assert_int_equal(sched_cron_next(NULL, utc("2024-01-01T00:00Z")), (time_t)-1);
}

/* ---- whether an expression can fire at all ----------------------------- */

struct firing_verdict {
    const char *text;
    bool can_fire;
    const char *why; /* when it cannot */
};

static const struct firing_verdict firing_verdicts[] = {
    {"0 0 31 2 *", false, "February has no day 31"},
    {"0 0 30 2 *", false, "February has no day 30"},
    {"0 0 31 4 *", false, "April has no day 31"},
    {"0 0 30,31 feb *", false, "February has no day 30 or 31"},
    {"0 0 31 4,6,9,11 *", false, "April, June, September and November have no day 31"},
    {"*/5 * 31 feb,apr *", false, "February and April have no day 31"},
    {"0 0 30-31 2 *", false, "February has no day 30 or 31"},
    /* Fires: in some year, in some chosen month, or through its weekday. */
    {"0 0 29 2 *", true, NULL},
    {"0 0 31 1,2 *", true, NULL},
    {"0 0 30,31 2,4 *", true, NULL},
    {"0 0 31 2 mon", true, NULL},
    {"0 0 31 2 1-5", true, NULL},
    {"0 0 31 * *", true, NULL},
    {"0 0 * 2 *", true, NULL},
    {"0 0 1-31 2 *", true, NULL},
    {"@yearly", true, NULL},
};

static void cron_firing_verdict(void **state)
{
    const struct firing_verdict *row = *state;
    struct cron_expression cron = parse_or_fail(row->text);
    char why[128] = "";
    bool can_fire = sched_cron_can_fire(&cron, why, sizeof why);
    if (can_fire != row->can_fire)
        fail_msg("'%s': can fire %d, expected %d (%s)", row->text, can_fire, row->can_fire, why);
    if (!row->can_fire)
        assert_string_equal(why, row->why);
}

/* The verdict from the fields alone agrees with a real search over the
 * calendar (five years from a leap year, in UTC) for every day from 28 on
 * in every month, alone and paired. */
static void firing_verdict_agrees_with_the_calendar(void **state)
{
    (void)state;
    for (int first = 1; first <= 12; first++) {
        for (int second = first; second <= 12; second++) {
            for (int day = 28; day <= 31; day++) {
                char text[64];
                snprintf(text, sizeof text, "0 0 %d %d,%d *", day, first, second);
                struct cron_expression cron = parse_or_fail(text);
                bool searched = sched_cron_next(&cron, utc("2023-06-01T00:00Z")) != (time_t)-1;
                if (sched_cron_can_fire(&cron, NULL, 0) != searched)
                    fail_msg("'%s': verdict %d, calendar search %d", text, !searched, searched);
            }
        }
    }
}

/* ---- next due --------------------------------------------------------- */

enum { NEVER_RAN = 0 };

struct next_due_case {
    const char *behaviour;
    const char *schedule; /* "every 900", "cron 0 * * * *" or "none" */
    const char *last_run; /* UTC, or NULL: never ran */
    const char *now;      /* UTC */
    const char *due;      /* UTC, or "never" */
};

static const struct next_due_case next_due_cases[] = {
    {"none_is_never_due", "none", NULL, "2024-05-01T10:00Z", "never"},
    {"none_is_never_due_after_a_run", "none", "2024-05-01T09:00Z", "2024-05-01T10:00Z", "never"},
    {"every_never_ran_is_due_now", "every 900", NULL, "2024-05-01T10:07Z", "2024-05-01T10:07Z"},
    {"every_waits_its_interval", "every 900", "2024-05-01T10:00Z", "2024-05-01T10:05Z",
     "2024-05-01T10:15Z"},
    {"every_due_exactly_now", "every 900", "2024-05-01T10:00Z", "2024-05-01T10:15Z",
     "2024-05-01T10:15Z"},
    {"every_missed_runs_collapse_into_now", "every 900", "2024-05-01T02:00Z", "2024-05-01T10:07Z",
     "2024-05-01T10:07Z"},
    {"every_ignores_calendar_and_dst", "every 86400", "2024-03-30T23:00Z", "2024-03-31T00:00Z",
     "2024-03-31T23:00Z"},
    {"cron_never_ran_waits_for_next_match", "cron */15 * * * *", NULL, "2024-05-01T10:07Z",
     "2024-05-01T10:15Z"},
    {"cron_next_match_after_last_run", "cron */15 * * * *", "2024-05-01T10:15:20Z",
     "2024-05-01T10:20Z", "2024-05-01T10:30Z"},
    {"cron_missed_runs_collapse_into_now", "cron 0 * * * *", "2024-04-30T10:00Z",
     "2024-05-01T10:07Z", "2024-05-01T10:07Z"},
    {"cron_missed_daily_run_catches_up_now", "cron 30 3 * * *", "2024-04-29T03:30Z",
     "2024-05-01T12:00Z", "2024-05-01T12:00Z"},
    {"cron_impossible_is_never_due", "cron 0 0 31 2 *", "2024-01-01T00:00Z", "2024-05-01T10:00Z",
     "never"},
    {"cron_impossible_never_ran", "cron 0 0 31 2 *", NULL, "2024-05-01T10:00Z", "never"},
    {"every_after_clock_stepped_back_counts_from_now", "every 3600", "2024-05-01T12:00Z",
     "2024-05-01T10:00Z", "2024-05-01T11:00Z"},
    {"cron_after_clock_stepped_back_counts_from_now", "cron 0 * * * *", "2024-05-01T12:00Z",
     "2024-05-01T10:07Z", "2024-05-01T11:00Z"},
};

static struct schedule schedule_from(const char *description)
{
    struct schedule schedule = {.kind = SCHEDULE_NONE};
    if (strncmp(description, "every ", 6) == 0) {
        schedule.kind = SCHEDULE_EVERY;
        schedule.every_seconds = strtoll(description + 6, NULL, 10);
    } else if (strncmp(description, "cron ", 5) == 0) {
        schedule.kind = SCHEDULE_CRON;
        schedule.cron = parse_or_fail(description + 5);
        snprintf(schedule.text, sizeof schedule.text, "%s", description + 5);
    }
    return schedule;
}

static void next_due_is(void **state)
{
    const struct next_due_case *row = *state;
    struct schedule schedule = schedule_from(row->schedule);
    time_t last_run = row->last_run ? utc(row->last_run) : NEVER_RAN;
    time_t due = sched_next_due(&schedule, last_run, utc(row->now));
    time_t expected = strcmp(row->due, "never") == 0 ? (time_t)-1 : utc(row->due);
    if (due != expected) {
        char got[64];
        local_text(due, got, sizeof got);
        fail_msg("%s: due %s, expected %s", row->behaviour, got, row->due);
    }
}

/* The agent was down for three hours: one catch-up run at start-up, then
 * back on the hour, not three runs in a row. */
static void downtime_gives_one_catch_up_run_then_the_schedule(void **state)
{
    (void)state;
    struct schedule schedule = schedule_from("cron 0 * * * *");
    time_t now = utc("2024-05-01T10:07Z");
    time_t due = sched_next_due(&schedule, utc("2024-05-01T07:00:30Z"), now);
    assert_int_equal(due, now);
    time_t finished = now + 40;
    assert_int_equal(sched_next_due(&schedule, finished, finished), utc("2024-05-01T11:00Z"));
}

static void every_does_not_overflow(void **state)
{
    (void)state;
    struct schedule schedule = {.kind = SCHEDULE_EVERY, .every_seconds = INT64_MAX};
    time_t now = utc("2024-05-01T10:00Z");
    assert_int_equal(sched_next_due(&schedule, now - 60, now), (time_t)-1);
    assert_int_equal(sched_next_due(NULL, now - 60, now), (time_t)-1);
}

/* ---- describe --------------------------------------------------------- */

struct describe_case {
    enum schedule_kind kind;
    int64_t every_seconds;
    const char *cron; /* parsed into the expression; NULL for every/none */
    const char *text; /* schedule->text as config.c stored it */
    const char *description;
};

static const struct describe_case descriptions[] = {
    {SCHEDULE_NONE, 0, NULL, "", "off"},
    {SCHEDULE_EVERY, 900, NULL, "15m", "every 15m"},
    {SCHEDULE_EVERY, 90, NULL, "90s", "every 90s"},
    {SCHEDULE_EVERY, 90, NULL, "", "every 1m30s"},
    {SCHEDULE_EVERY, 5400, NULL, "1h30m", "every 1h30m"},
    {SCHEDULE_EVERY, 3600, NULL, "15m", "every 1h"}, /* stale text loses to the value */
    {SCHEDULE_CRON, 0, "30 3 * * *", "30 3 * * *", "cron 30 3 * * *"},
    {SCHEDULE_CRON, 0, "0 0 * * mon-fri", "0 0 * * mon-fri", "cron 0 0 * * mon-fri"},
    {SCHEDULE_CRON, 0, "@daily", "@daily", "cron @daily"},
    {SCHEDULE_CRON, 0, "*/15 * * * *", "", "cron 0,15,30,45 * * * *"},
    {SCHEDULE_CRON, 0, "0,30 1-5 1,15 jan-mar mon-fri", "", "cron 0,30 1-5 1,15 1-3 1-5"},
    {SCHEDULE_CRON, 0, "0 0 * * 7", "", "cron 0 0 * * 0"},
};

static void describe_reads(void **state)
{
    const struct describe_case *row = *state;
    struct schedule schedule = {.kind = row->kind, .every_seconds = row->every_seconds};
    if (row->cron)
        schedule.cron = parse_or_fail(row->cron);
    snprintf(schedule.text, sizeof schedule.text, "%s", row->text);
    char out[128];
    sched_describe(&schedule, out, sizeof out);
    assert_string_equal(out, row->description);
}

static void describe_respects_small_buffers(void **state)
{
    (void)state;
    struct schedule schedule = {.kind = SCHEDULE_CRON, .cron = parse_or_fail("30 3 * * *")};
    snprintf(schedule.text, sizeof schedule.text, "30 3 * * *");
    char out[8];
    memset(out, '#', sizeof out);
    sched_describe(&schedule, out, 0);
    assert_int_equal(out[0], '#');
    sched_describe(&schedule, out, 6);
    assert_string_equal(out, "cron ");
    assert_int_equal(out[6], '#');
    /* text filling all 64 bytes, without a terminator */
    memset(schedule.text, '1', sizeof schedule.text);
    schedule.kind = SCHEDULE_EVERY;
    schedule.every_seconds = 60;
    char wide[128];
    sched_describe(&schedule, wide, sizeof wide);
    assert_string_equal(wide, "every 1m");
}

/* ---- registration ----------------------------------------------------- */

struct test_list {
    struct CMUnitTest *tests;
    char **names;
    size_t count;
};

static void add_test(struct test_list *list, CMUnitTestFunction function, const void *row,
                     const char *format, ...) __attribute__((format(printf, 4, 5)));

static void add_test(struct test_list *list, CMUnitTestFunction function, const void *row,
                     const char *format, ...)
{
    char name[200];
    va_list args;
    va_start(args, format);
    vsnprintf(name, sizeof name, format, args);
    va_end(args);
    list->tests = realloc(list->tests, (list->count + 1) * sizeof *list->tests);
    list->names = realloc(list->names, (list->count + 1) * sizeof *list->names);
    if (!list->tests || !list->names || !(list->names[list->count] = strdup(name)))
        abort();
    list->tests[list->count] = (struct CMUnitTest){
        .name = list->names[list->count],
        .test_func = function,
        .teardown_func = restore_utc,
        .initial_state = (void *)row,
    };
    list->count++;
}

#define ADD_SINGLE(list, function) add_test(list, function, NULL, "%s", #function)

int main(void)
{
    struct test_list list = {0};
    for (size_t i = 0; i < ROWS(parsed_crons); i++)
        add_test(&list, cron_parses, &parsed_crons[i], "cron_parses '%s'", parsed_crons[i].text);
    for (size_t i = 0; i < ROWS(rejected_crons); i++)
        add_test(&list, cron_is_rejected, &rejected_crons[i], "cron_is_rejected '%s'",
                 rejected_crons[i].text);
    for (size_t i = 0; i < ROWS(next_matches); i++)
        add_test(&list, cron_next_matches, &next_matches[i], "cron_next %s",
                 next_matches[i].behaviour);
    ADD_SINGLE(&list, daily_job_runs_once_per_day_through_dst);
    ADD_SINGLE(&list, quarter_hour_job_keeps_real_intervals_through_dst);
    ADD_SINGLE(&list, cron_next_agrees_with_minute_by_minute_reference);
    ADD_SINGLE(&list, impossible_expression_gives_up_quickly);
    ADD_SINGLE(&list, empty_expression_never_matches);
    for (size_t i = 0; i < ROWS(firing_verdicts); i++)
        add_test(&list, cron_firing_verdict, &firing_verdicts[i], "cron_firing_verdict '%s'",
                 firing_verdicts[i].text);
    ADD_SINGLE(&list, firing_verdict_agrees_with_the_calendar);
    for (size_t i = 0; i < ROWS(next_due_cases); i++)
        add_test(&list, next_due_is, &next_due_cases[i], "next_due %s",
                 next_due_cases[i].behaviour);
    ADD_SINGLE(&list, downtime_gives_one_catch_up_run_then_the_schedule);
    ADD_SINGLE(&list, every_does_not_overflow);
    for (size_t i = 0; i < ROWS(descriptions); i++)
        add_test(&list, describe_reads, &descriptions[i], "describe '%s'",
                 descriptions[i].description);
    ADD_SINGLE(&list, describe_respects_small_buffers);

    int failed = _cmocka_run_group_tests("schedule", list.tests, list.count, NULL, NULL);
    for (size_t i = 0; i < list.count; i++)
        free(list.names[i]);
    free(list.names);
    free(list.tests);
    return failed;
}
