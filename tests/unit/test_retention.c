/*
 * test_retention.c: the keep policy decides exactly what restic's `forget`
 * would (without restic 0.16's extra "keep the oldest" rule), on fixed
 * timestamps; the expected sets are written out by hand from a calendar.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/retention.h"

#define HOUR 3600
#define DAY  86400

static time_t utc(int year, int month, int day, int hour)
{
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    return timegm(&tm);
}

/* `count` verified archives, `step` seconds apart, the first at `first`. */
static struct retention_item *make_series(time_t first, time_t step, size_t count)
{
    struct retention_item *items = calloc(count, sizeof *items);
    assert_non_null(items);
    for (size_t i = 0; i < count; i++) {
        items[i].created = first + (time_t)i * step;
        items[i].verified = true;
    }
    return items;
}

static size_t count_kept(const struct retention_item *items, size_t count)
{
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        kept += items[i].keep;
    return kept;
}

static const struct retention_item *find(const struct retention_item *items, size_t count,
                                         time_t created)
{
    for (size_t i = 0; i < count; i++) {
        if (items[i].created == created)
            return &items[i];
    }
    fail_msg("no item at %lld", (long long)created);
    return NULL;
}

struct expected_keep {
    int month, day, hour;
    const char *reason; /* NULL: only check that it is kept */
};

/* The SPEC defaults on hourly backups from 2026-09-01T00Z to 2026-10-30T23Z
 * (a Friday). By hand: last 24 = all of Oct 30; daily 7 = 23:00 of Oct 24-29
 * (6 more); weekly 4 = W44 (Oct 30), W43 (Sun Oct 25, already daily), W42
 * (Sun Oct 18), W41 (Sun Oct 11); monthly 6 = Oct (Oct 30) and Sep (Sep 30
 * 23:00), the only months there are. 24 + 6 + 2 + 1 = 33. */
static const struct expected_keep spec_defaults_expected[] = {
    {10, 30, 23, "last"},
    {10, 30, 0, "last"},
    {10, 29, 23, "daily 2026-10-29"},
    {10, 28, 23, "daily 2026-10-28"},
    {10, 27, 23, "daily 2026-10-27"},
    {10, 26, 23, "daily 2026-10-26"},
    {10, 25, 23, "daily 2026-10-25"},
    {10, 24, 23, "daily 2026-10-24"},
    {10, 18, 23, "weekly 2026-W42"},
    {10, 11, 23, "weekly 2026-W41"},
    {9, 30, 23, "monthly 2026-09"},
};

static void check_spec_defaults(struct retention_item *items, size_t count)
{
    const struct keep_policy policy = {.last = 24, .daily = 7, .weekly = 4, .monthly = 6};
    retention_apply(&policy, items, count);

    assert_int_equal(count_kept(items, count), 33);
    for (int hour = 0; hour < 24; hour++)
        assert_true(find(items, count, utc(2026, 10, 30, hour))->keep);
    for (size_t i = 0; i < sizeof spec_defaults_expected / sizeof spec_defaults_expected[0]; i++) {
        const struct expected_keep *e = &spec_defaults_expected[i];
        const struct retention_item *item =
            find(items, count, utc(2026, e->month, e->day, e->hour));
        assert_true(item->keep);
        assert_string_equal(item->reason, e->reason);
    }
    /* Neighbours of kept ones are gone, and gone items carry no reason. */
    const struct retention_item *gone = find(items, count, utc(2026, 10, 29, 22));
    assert_false(gone->keep);
    assert_string_equal(gone->reason, "");
    assert_false(find(items, count, utc(2026, 10, 23, 23))->keep);
    assert_false(find(items, count, utc(2026, 10, 4, 23))->keep);
    assert_false(find(items, count, utc(2026, 9, 1, 0))->keep);
}

static void spec_defaults_on_sixty_days_of_hourly_backups_keep_33(void **state)
{
    (void)state;
    const size_t count = 60 * 24;
    struct retention_item *items = make_series(utc(2026, 9, 1, 0), HOUR, count);
    check_spec_defaults(items, count);
    free(items);
}

static void input_order_does_not_matter(void **state)
{
    (void)state;
    const size_t count = 60 * 24;
    struct retention_item *items = make_series(utc(2026, 9, 1, 0), HOUR, count);
    /* A fixed shuffle (Fisher-Yates with a small LCG). */
    uint32_t seed = 12345;
    for (size_t i = count - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        size_t j = (seed >> 8) % (i + 1);
        struct retention_item swap = items[i];
        items[i] = items[j];
        items[j] = swap;
    }
    check_spec_defaults(items, count);
    free(items);
}

static void newest_verified_is_kept_when_newer_ones_failed(void **state)
{
    (void)state;
    struct retention_item *items = make_series(utc(2026, 11, 1, 0), DAY, 10);
    items[9].verified = items[8].verified = items[7].verified = false;
    const struct keep_policy policy = {.last = 1};
    retention_apply(&policy, items, 10);

    assert_int_equal(count_kept(items, 10), 2);
    assert_true(items[9].keep);
    assert_string_equal(items[9].reason, "last");
    assert_true(items[6].keep);
    assert_string_equal(items[6].reason, "newest verified");
    assert_false(items[5].keep);
    free(items);
}

static void newest_verified_reason_only_when_no_rule_keeps_it(void **state)
{
    (void)state;
    struct retention_item *items = make_series(utc(2026, 11, 1, 0), DAY, 3);
    const struct keep_policy policy = {.last = 1};
    retention_apply(&policy, items, 3);
    assert_int_equal(count_kept(items, 3), 1);
    assert_string_equal(items[2].reason, "last");
    free(items);
}

static void no_verified_archive_adds_nothing(void **state)
{
    (void)state;
    struct retention_item *items = make_series(utc(2026, 11, 1, 0), DAY, 5);
    for (size_t i = 0; i < 5; i++)
        items[i].verified = false;
    const struct keep_policy policy = {.last = 2};
    retention_apply(&policy, items, 5);
    assert_int_equal(count_kept(items, 5), 2);
    assert_true(items[4].keep && items[3].keep);
    free(items);
}

static void pinned_archives_are_kept_whatever_the_rules(void **state)
{
    (void)state;
    struct retention_item *items = make_series(utc(2026, 11, 1, 0), DAY, 10);
    items[0].pinned = true; /* oldest: only the pin keeps it */
    items[9].pinned = true; /* newest: "last" matches first */
    const struct keep_policy policy = {.last = 2};
    retention_apply(&policy, items, 10);

    assert_int_equal(count_kept(items, 10), 3);
    assert_string_equal(items[0].reason, "pinned");
    assert_string_equal(items[9].reason, "last");
    assert_string_equal(items[8].reason, "last");
    free(items);
}

static void within_is_relative_to_the_newest_archive(void **state)
{
    (void)state;
    /* Five days of hourly backups, long ago: no clock is involved. */
    const size_t count = 5 * 24;
    struct retention_item *items = make_series(utc(2001, 3, 1, 0), HOUR, count);
    const struct keep_policy policy = {.within_seconds = 2 * DAY};
    retention_apply(&policy, items, count);

    /* Strictly newer than newest - 2 days: the 48 newest. */
    assert_int_equal(count_kept(items, count), 48);
    assert_true(items[count - 48].keep);
    assert_string_equal(items[count - 48].reason, "within");
    assert_false(items[count - 49].keep);
    free(items);
}

static void yearly_keeps_the_newest_of_each_year(void **state)
{
    (void)state;
    /* Monthly backups on the 1st, Jan 2022 .. Jun 2026: 54 archives. */
    struct retention_item items[54];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 54; i++) {
        items[i].created = utc(2022 + i / 12, 1 + i % 12, 1, 0);
        items[i].verified = true;
    }
    const struct keep_policy policy = {.yearly = 3};
    retention_apply(&policy, items, 54);

    assert_int_equal(count_kept(items, 54), 3);
    assert_string_equal(find(items, 54, utc(2026, 6, 1, 0))->reason, "yearly 2026");
    assert_string_equal(find(items, 54, utc(2025, 12, 1, 0))->reason, "yearly 2025");
    assert_string_equal(find(items, 54, utc(2024, 12, 1, 0))->reason, "yearly 2024");
    assert_false(find(items, 54, utc(2023, 12, 1, 0))->keep);
}

static void hourly_and_monthly_name_their_period(void **state)
{
    (void)state;
    /* Every 20 minutes for 3 hours, across a month and year end. */
    struct retention_item *items = make_series(utc(2026, 12, 31, 22), 20 * 60, 9);
    const struct keep_policy policy = {.hourly = 2, .monthly = 3};
    retention_apply(&policy, items, 9);

    /* Newest 00:40 (hour 00 of 2027-01-01), then 23:40 of 2026-12-31. */
    assert_int_equal(count_kept(items, 9), 2);
    assert_string_equal(items[8].reason, "hourly 2027-01-01T00");
    assert_string_equal(items[5].reason, "hourly 2026-12-31T23");
    assert_false(items[2].keep); /* hour 22: hourly ran out; December already kept by monthly */

    const struct keep_policy monthly = {.monthly = 3};
    retention_apply(&monthly, items, 9);
    assert_int_equal(count_kept(items, 9), 2);
    assert_string_equal(items[8].reason, "monthly 2027-01");
    assert_string_equal(items[5].reason, "monthly 2026-12");
    free(items);
}

static void iso_week_spans_the_year_end(void **state)
{
    (void)state;
    /* 2026-12-31 (Thu) and 2027-01-01 (Fri) are both in 2026-W53. */
    struct retention_item items[2] = {
        {.created = utc(2026, 12, 31, 12), .verified = true},
        {.created = utc(2027, 1, 1, 12), .verified = true},
    };
    const struct keep_policy policy = {.weekly = 2};
    retention_apply(&policy, items, 2);
    assert_true(items[1].keep);
    assert_string_equal(items[1].reason, "weekly 2026-W53");
    assert_false(items[0].keep);
}

static void iso_weeks_around_new_year(void **state)
{
    (void)state;
    /* Daily at noon, 2026-12-20 .. 2027-01-06. W53 is Mon 12-28 .. Sun 01-03;
     * 2027-W01 starts Mon 01-04; W52 ends Sun 12-27. */
    const size_t count = 18;
    struct retention_item *items = make_series(utc(2026, 12, 20, 12), DAY, count);
    const struct keep_policy policy = {.weekly = 3};
    retention_apply(&policy, items, count);

    assert_int_equal(count_kept(items, count), 3);
    assert_string_equal(find(items, count, utc(2027, 1, 6, 12))->reason, "weekly 2027-W01");
    assert_string_equal(find(items, count, utc(2027, 1, 3, 12))->reason, "weekly 2026-W53");
    assert_string_equal(find(items, count, utc(2026, 12, 27, 12))->reason, "weekly 2026-W52");
    assert_false(find(items, count, utc(2026, 12, 31, 12))->keep);
    assert_false(find(items, count, utc(2027, 1, 4, 12))->keep);
    free(items);
}

static void empty_list_is_fine(void **state)
{
    (void)state;
    const struct keep_policy policy = {.last = 3};
    retention_apply(&policy, NULL, 0);
}

static void all_zero_policy_keeps_everything(void **state)
{
    (void)state;
    struct retention_item *items = make_series(utc(2026, 1, 1, 0), DAY, 30);
    items[29].verified = false;
    const struct keep_policy policy = {0};
    retention_apply(&policy, items, 30);
    assert_int_equal(count_kept(items, 30), 30);
    for (size_t i = 0; i < 30; i++)
        assert_string_equal(items[i].reason, "no keep rules");
    free(items);
}

static void outputs_are_reset_on_every_call(void **state)
{
    (void)state;
    struct retention_item *items = make_series(utc(2026, 1, 1, 0), DAY, 5);
    for (size_t i = 0; i < 5; i++) {
        items[i].keep = true;
        strcpy(items[i].reason, "stale");
    }
    const struct keep_policy policy = {.last = 1};
    retention_apply(&policy, items, 5);
    assert_int_equal(count_kept(items, 5), 1);
    assert_string_equal(items[0].reason, "");
    free(items);
}

/* Small cases side by side: daily backups at 06:00 from 2026-01-01; how many
 * each policy keeps. */
struct count_case {
    const char *name;
    struct keep_policy policy;
    size_t days;
    size_t expected;
};

static const struct count_case count_cases[] = {
    {"last beyond the list keeps all", {.last = 50}, 20, 20},
    {"daily 7 on 20 days", {.daily = 7}, 20, 7},
    {"last 3 overlaps daily 5", {.last = 3, .daily = 5}, 20, 5},
    /* 2026-01-01 is a Thursday: W01 = Jan 1-4, W02 Jan 5-11, W03 Jan 12-18, W04 19-20. */
    {"weekly 10 on 20 days: four weeks exist", {.weekly = 10}, 20, 4},
    /* Jan 20 (monthly Jan) and Dec's none: one month exists. */
    {"monthly 6 on 20 days of January", {.monthly = 6}, 20, 1},
    {"hourly 5 on daily backups keeps 5 days", {.hourly = 5}, 20, 5},
    {"within 3 days of daily backups", {.within_seconds = 3 * DAY}, 20, 3},
    {"within 3 days plus 1s", {.within_seconds = 3 * DAY + 1}, 20, 4},
    {"negative counts mean unused", {.last = -1, .daily = 2}, 20, 2},
};

static void policy_counts_table(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof count_cases / sizeof count_cases[0]; c++) {
        const struct count_case *test = &count_cases[c];
        struct retention_item *items = make_series(utc(2026, 1, 1, 6), DAY, test->days);
        retention_apply(&test->policy, items, test->days);
        size_t kept = count_kept(items, test->days);
        if (kept != test->expected)
            fail_msg("%s: kept %zu, expected %zu", test->name, kept, test->expected);
        assert_true(items[test->days - 1].keep); /* the newest, always */
        free(items);
    }
}

static void equal_times_count_separately_for_last(void **state)
{
    (void)state;
    struct retention_item items[3] = {
        {.created = utc(2026, 5, 1, 0), .verified = true},
        {.created = utc(2026, 5, 1, 0), .verified = true},
        {.created = utc(2026, 4, 1, 0), .verified = true},
    };
    const struct keep_policy last = {.last = 2};
    retention_apply(&last, items, 3);
    assert_true(items[0].keep && items[1].keep);
    assert_false(items[2].keep);

    const struct keep_policy daily = {.daily = 2};
    retention_apply(&daily, items, 3);
    /* One of the twins (the first in input order) stands for the day. */
    assert_true(items[0].keep);
    assert_false(items[1].keep);
    assert_true(items[2].keep);
}

static void an_object_under_lock_is_held_until_its_days_and_the_margin_have_passed(void **state)
{
    (void)state;
    const time_t uploaded = utc(2026, 12, 2, 10);
    const time_t free_at = uploaded + 30 * DAY + RETENTION_LOCK_MARGIN_SECONDS;
    assert_int_equal(retention_lock_until(uploaded, 30), free_at);
    assert_true(retention_object_is_locked(uploaded, 30, uploaded));
    assert_true(retention_object_is_locked(uploaded, 30, uploaded + 30 * DAY));
    /* The margin covers a client clock up to SigV4's 15 minutes ahead. */
    assert_true(RETENTION_LOCK_MARGIN_SECONDS >= 15 * 60);
    assert_true(retention_object_is_locked(uploaded, 30, free_at - 1));
    assert_false(retention_object_is_locked(uploaded, 30, free_at));
    assert_false(retention_object_is_locked(uploaded, 30, free_at + 365 * DAY));
    /* One day, and the longest a config accepts. */
    assert_true(retention_object_is_locked(uploaded, 1, uploaded + DAY));
    assert_false(retention_object_is_locked(uploaded, 1, uploaded + DAY + HOUR));
    assert_int_equal(retention_lock_until(uploaded, 36500),
                     uploaded + (time_t)36500 * DAY + RETENTION_LOCK_MARGIN_SECONDS);
}

static void without_object_lock_nothing_is_held(void **state)
{
    (void)state;
    const time_t uploaded = utc(2026, 12, 2, 10);
    assert_int_equal(retention_lock_until(uploaded, 0), uploaded);
    assert_false(retention_object_is_locked(uploaded, 0, uploaded));
    assert_false(retention_object_is_locked(uploaded, 0, uploaded - DAY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_defaults_on_sixty_days_of_hourly_backups_keep_33),
        cmocka_unit_test(input_order_does_not_matter),
        cmocka_unit_test(newest_verified_is_kept_when_newer_ones_failed),
        cmocka_unit_test(newest_verified_reason_only_when_no_rule_keeps_it),
        cmocka_unit_test(no_verified_archive_adds_nothing),
        cmocka_unit_test(pinned_archives_are_kept_whatever_the_rules),
        cmocka_unit_test(within_is_relative_to_the_newest_archive),
        cmocka_unit_test(yearly_keeps_the_newest_of_each_year),
        cmocka_unit_test(hourly_and_monthly_name_their_period),
        cmocka_unit_test(iso_week_spans_the_year_end),
        cmocka_unit_test(iso_weeks_around_new_year),
        cmocka_unit_test(empty_list_is_fine),
        cmocka_unit_test(all_zero_policy_keeps_everything),
        cmocka_unit_test(outputs_are_reset_on_every_call),
        cmocka_unit_test(policy_counts_table),
        cmocka_unit_test(equal_times_count_separately_for_last),
        cmocka_unit_test(an_object_under_lock_is_held_until_its_days_and_the_margin_have_passed),
        cmocka_unit_test(without_object_lock_nothing_is_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
