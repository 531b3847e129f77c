/*
 * retention.c: which archives a keep policy keeps, with the reason for each.
 *
 * The rules are restic's `forget --keep-*`: walk the archives newest first;
 * each period rule keeps the first (newest) archive of every period it has
 * not seen yet, until it has kept its count of periods. Calendar periods are
 * UTC, computed here with integer arithmetic (no gmtime, no TZ), and weeks
 * are ISO 8601 weeks, which may straddle a year end.
 *
 * Not for listing, deleting or uploading archives (the prune job does that):
 * pure, a list in and the same list out, no clock and no I/O.
 */
#include "policy/retention.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/calendar.h"

enum retention_period {
    PERIOD_NONE, /* "last": every archive is a period of its own */
    PERIOD_HOUR,
    PERIOD_DAY,
    PERIOD_WEEK,
    PERIOD_MONTH,
    PERIOD_YEAR,
};

/* One counted rule while walking the list: how many periods it may still
 * keep and the period of the archive it kept last. */
struct retention_bucket {
    const char *name;
    enum retention_period period;
    int remaining;
    bool has_last;
    int64_t last;
};

struct retention_entry {
    time_t created;
    size_t index; /* into the caller's array, which keeps its order */
};

/* Division rounding towards minus infinity, so times before 1970 land in
 * the right period. */
/* An ISO week is named by its Thursday: the week belongs to the year that
 * Thursday is in, which is how 2026-12-31 and 2027-01-01 share week 53. */
static int64_t retention_iso_thursday(int64_t days)
{
    int64_t whole_weeks = calendar_floor_divide(days + 3, 7) * 7; /* 1970-01-01 was a Thursday */
    int64_t monday_based = days + 3 - whole_weeks;                /* 0 = Monday .. 6 = Sunday */
    return days - monday_based + 3;
}

/* A number that is equal for two times exactly when they share the period. */
static int64_t retention_period_key(enum retention_period period, time_t created, int64_t position)
{
    int64_t days = calendar_floor_divide((int64_t)created, 86400);
    int64_t year;
    int month, day;

    switch (period) {
    case PERIOD_NONE: return position;
    case PERIOD_HOUR: return calendar_floor_divide((int64_t)created, 3600);
    case PERIOD_DAY: return days;
    case PERIOD_WEEK: return retention_iso_thursday(days);
    case PERIOD_MONTH:
        calendar_civil_from_days(days, &year, &month, &day);
        return year * 12 + (month - 1);
    case PERIOD_YEAR: calendar_civil_from_days(days, &year, &month, &day); return year;
    }
    return position;
}

/* "daily 2026-11-25", "weekly 2026-W53", ...: the rule and the period it kept. */
static void retention_describe(const struct retention_bucket *bucket, time_t created, char *out,
                               size_t out_size)
{
    int64_t days = calendar_floor_divide((int64_t)created, 86400);
    int64_t year;
    int month, day;

    calendar_civil_from_days(days, &year, &month, &day);
    switch (bucket->period) {
    case PERIOD_NONE: snprintf(out, out_size, "%s", bucket->name); break;
    case PERIOD_HOUR: {
        int hour = (int)(calendar_floor_divide((int64_t)created, 3600) - days * 24);
        snprintf(out, out_size, "%s %04" PRId64 "-%02d-%02dT%02d", bucket->name, year, month, day,
                 hour);
        break;
    }
    case PERIOD_DAY:
        snprintf(out, out_size, "%s %04" PRId64 "-%02d-%02d", bucket->name, year, month, day);
        break;
    case PERIOD_WEEK: {
        int64_t thursday = retention_iso_thursday(days);
        calendar_civil_from_days(thursday, &year, &month, &day);
        int64_t week = (thursday - calendar_days_from_civil(year, 1, 1)) / 7 + 1;
        snprintf(out, out_size, "%s %04" PRId64 "-W%02" PRId64, bucket->name, year, week);
        break;
    }
    case PERIOD_MONTH:
        snprintf(out, out_size, "%s %04" PRId64 "-%02d", bucket->name, year, month);
        break;
    case PERIOD_YEAR: snprintf(out, out_size, "%s %04" PRId64, bucket->name, year); break;
    }
}

static void retention_keep(struct retention_item *item, const char *reason)
{
    if (item->keep)
        return; /* the first rule that matched names the reason */
    item->keep = true;
    snprintf(item->reason, sizeof item->reason, "%s", reason);
}

static int retention_compare_newest_first(const void *left, const void *right)
{
    const struct retention_entry *a = left, *b = right;
    if (a->created != b->created)
        return a->created > b->created ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static bool retention_policy_is_empty(const struct keep_policy *policy)
{
    return !policy ||
           (policy->last <= 0 && policy->hourly <= 0 && policy->daily <= 0 && policy->weekly <= 0 &&
            policy->monthly <= 0 && policy->yearly <= 0 && policy->within_seconds <= 0);
}

static void retention_keep_all(struct retention_item *items, size_t count, const char *reason)
{
    for (size_t i = 0; i < count; i++)
        retention_keep(&items[i], reason);
}

/* Keeps `item` (the position-th newest) for `bucket` when it is the first
 * archive of a period the bucket has not counted yet, and rules remain. */
static void retention_offer(struct retention_bucket *bucket, struct retention_item *item,
                            size_t position)
{
    char reason[sizeof item->reason];
    if (bucket->remaining <= 0)
        return;
    int64_t key = retention_period_key(bucket->period, item->created, (int64_t)position);
    if (bucket->has_last && bucket->last == key)
        return;
    bucket->has_last = true;
    bucket->last = key;
    bucket->remaining--;
    retention_describe(bucket, item->created, reason, sizeof reason);
    retention_keep(item, reason);
}

void retention_apply(const struct keep_policy *policy, struct retention_item *items, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        items[i].keep = false;
        items[i].reason[0] = '\0';
    }
    if (count == 0)
        return;
    if (retention_policy_is_empty(policy)) {
        retention_keep_all(items, count, "no keep rules");
        return;
    }
    /* The caller's order is how it maps results back to files, so we sort
     * a copy of the times instead of the items. */
    struct retention_entry *order = malloc(count * sizeof *order);
    if (!order) {
        /* Deleting nothing is the one safe answer we can give without memory. */
        retention_keep_all(items, count, "out of memory");
        return;
    }
    for (size_t i = 0; i < count; i++) {
        order[i].created = items[i].created;
        order[i].index = i;
    }
    qsort(order, count, sizeof *order, retention_compare_newest_first);

    /* In the order reasons are reported. */
    struct retention_bucket buckets[] = {
        {"last", PERIOD_NONE, policy->last, false, 0},
        {"hourly", PERIOD_HOUR, policy->hourly, false, 0},
        {"daily", PERIOD_DAY, policy->daily, false, 0},
        {"weekly", PERIOD_WEEK, policy->weekly, false, 0},
        {"monthly", PERIOD_MONTH, policy->monthly, false, 0},
        {"yearly", PERIOD_YEAR, policy->yearly, false, 0},
    };
    const time_t newest = order[0].created;
    bool verified_seen = false;

    for (size_t position = 0; position < count; position++) {
        struct retention_item *item = &items[order[position].index];

        /* Every bucket sees every archive, whether or not an earlier rule
         * kept it already: each rule counts its own periods. */
        for (size_t b = 0; b < sizeof buckets / sizeof buckets[0]; b++)
            retention_offer(&buckets[b], item, position);
        /* Compared as an unsigned difference: newest >= created, and this
         * cannot overflow where newest - within could. */
        if (policy->within_seconds > 0 &&
            (uint64_t)newest - (uint64_t)item->created < (uint64_t)policy->within_seconds)
            retention_keep(item, "within");
        if (item->pinned)
            retention_keep(item, "pinned");
        if (item->verified && !verified_seen) {
            verified_seen = true;
            retention_keep(item, "newest verified");
        }
    }
    free(order);
}

time_t retention_lock_until(time_t modified, int days)
{
    if (days <= 0)
        return modified;
    return modified + (time_t)days * 86400 + RETENTION_LOCK_MARGIN_SECONDS;
}

bool retention_object_is_locked(time_t modified, int days, time_t now)
{
    return days > 0 && now < retention_lock_until(modified, days);
}
