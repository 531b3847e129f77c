/*
 * retention.h: which archives to keep. Pure: a list in, a list out.
 *
 * Rules follow restic's `forget`: `last` keeps the N newest; `hourly`,
 * `daily`, `weekly`, `monthly`, `yearly` keep the newest archive of each of
 * the N newest periods that have one; `within` keeps everything newer than
 * the newest archive minus that duration. An archive kept by any rule is
 * kept. Periods are UTC (as the archive names are), weeks are ISO weeks.
 * Two safety rules sit on top: the newest *verified* archive is always kept,
 * and an all-zero policy keeps everything.
 */
#ifndef SQLPRODD_RETENTION_H
#define SQLPRODD_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Retention rules, as restic's `forget --keep-*`. A zero means "rule unused";
 * all zero means "keep everything". */
struct keep_policy {
    int last;
    int hourly;
    int daily;
    int weekly;
    int monthly;
    int yearly;
    int64_t within_seconds;
};


struct retention_item {
    time_t created;   /* backup time (UTC seconds) */
    bool verified;    /* passed verification when taken */
    bool pinned;      /* must be kept whatever the rules say (e.g. upload pending) */
    /* outputs */
    bool keep;
    char reason[64];  /* "last", "daily 2026-11-25", "newest verified", "pinned", ... */
                      /* (the first rule that kept it, in the order last, hourly, daily,
                       * weekly, monthly, yearly, within, pinned, newest verified;
                       * "no keep rules" for an all-zero policy; "" when not kept) */
};

/* Decides keep/reason for every item. Items may come in any order. */
void retention_apply(const struct keep_policy *policy, struct retention_item *items, size_t count);

/* Added to an Object Lock's predicted end: S3 counts the lock from the date
 * the client sent, by the client's clock, and SigV4 lets that clock be up to
 * 15 minutes ahead of the one that stamps LastModified. */
#define RETENTION_LOCK_MARGIN_SECONDS 3600

/* The first time an object whose LastModified is `modified`, uploaded with
 * S3 Object Lock for `days` days, may be deleted. The lock's date is taken
 * when the upload starts and LastModified no earlier (up to the clocks'
 * skew, in the margin), so this is never early. `days` 0: `modified`. */
time_t retention_lock_until(time_t modified, int days);

/* Whether that object is still locked at `now`. */
bool retention_object_is_locked(time_t modified, int days, time_t now);

#endif
