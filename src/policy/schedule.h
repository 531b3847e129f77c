/*
 * schedule.h: when a job is due. Parses `every = "15m"` and 5-field
 * `cron = "m h dom mon dow"` and computes the next due time.
 *
 * Pure: the clock is a parameter. Cron fields are evaluated in local time
 * (the TZ environment variable), with the usual cron rules: when both
 * day-of-month and day-of-week are restricted, either may match; a local
 * time skipped by a DST change does not exist (the next existing minute
 * that matches is used), a repeated one runs once.
 *
 * In detail, as Vixie cron and cronie split fixed-time and wildcard jobs:
 *  - "Restricted" means the field leaves some value out, however it is
 *    spelled: "1-31" is not restricted, "* /2" (without the blank) is.
 *  - A job whose hour field leaves some hour out ("30 2 * * *") keeps wall
 *    clock time: on a spring-forward day its skipped 02:30 runs once, at the
 *    first minute after the gap (03:00 in Europe/Berlin); on a fall-back day
 *    it runs at the first 02:30 only.
 *  - A job that runs every hour ("0,30 * * * *") keeps elapsed time: a
 *    skipped minute just does not happen (the job runs again within the
 *    hour) and the repeated hour's minutes are real, later minutes that run.
 */
#ifndef SQLPRODD_SCHEDULE_H
#define SQLPRODD_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cron_expression {
    uint64_t minutes;       /* bit n set: minute n (0-59) matches */
    uint32_t hours;         /* 0-23 */
    uint32_t days_of_month; /* 1-31 */
    uint16_t months;        /* 1-12 */
    uint8_t days_of_week;   /* 0-6, Sunday = 0 (7 is accepted as Sunday) */
    bool day_of_month_restricted;
    bool day_of_week_restricted;
};

enum schedule_kind {
    SCHEDULE_NONE = 0, /* no schedule, or enabled = false: never runs by itself */
    SCHEDULE_EVERY,
    SCHEDULE_CRON,
};

struct schedule {
    enum schedule_kind kind;
    int64_t every_seconds;       /* SCHEDULE_EVERY */
    struct cron_expression cron; /* SCHEDULE_CRON */
    char text[64];               /* as written in the config, for messages */
};

/* Parses a 5-field cron line: `*`, numbers, lists `1,15`, ranges `1-5`,
 * steps `* /15` and `10-50/5`, month and weekday names (jan, mon) are
 * accepted. Returns 0, or -EINVAL with `why` naming the field and the fault
 * ("hour field: 24 is out of range 0-23").
 * Also: "5/15" means 5-59/15; names are three letters, any case; 7 is
 * Sunday and "fri-sun" is 5-7; @hourly, @daily (@midnight), @weekly,
 * @monthly and @yearly (@annually). Rejected: a field count other than 5,
 * out-of-range values, reversed ranges, a step of 0 or wider than the
 * field, empty list items, anything else (L, W, #, ?). *out is written only
 * on success; `why` may be NULL. */
int sched_parse_cron(const char *text, struct cron_expression *out, char *why, size_t why_size);

/* Whether the expression matches at least one minute in some year, decided
 * from its fields alone (no clock, no time zone): false when day-of-month
 * is restricted, day-of-week is not, and none of the chosen days exists in
 * any chosen month, February counted with 29 days ("0 0 31 2 *", "0 0 31
 * 4,6 *", "0 0 30 2 *"). When both day fields are restricted either one
 * matches, and every month has every weekday, so such a line always fires.
 * On false, `why` (may be NULL) says what is missing: "February has no day
 * 31". */
bool sched_cron_can_fire(const struct cron_expression *cron, char *why, size_t why_size);

/* The first minute strictly after `after` that the expression matches, or
 * (time_t)-1 if none exists within 9 years: one more than the longest gap
 * between two February 29ths (2096 to 2104), so "0 0 29 2 *" always fires.
 * Cost: calendar arithmetic over months and days plus two localtime_r()
 * calls per day tried; about a microsecond, more on a DST-change day. */
time_t sched_cron_next(const struct cron_expression *cron, time_t after);

/*
 * When the job is next due, given the start of its last run (0 = never ran)
 * and now:
 *  - every: never ran -> now; otherwise last_run + every, but never earlier
 *    than now (missed runs while the agent was down collapse into one run now).
 *  - cron: never ran -> next match after now; otherwise the next match after
 *    last_run, and if that is already past -> now (one catch-up run).
 *  - none: (time_t)-1, never due.
 * A last run later than now (the clock was stepped back) counts as now.
 */
time_t sched_next_due(const struct schedule *schedule, time_t last_run, time_t now);

/* Renders the schedule for status output: "every 15m", "cron 30 3 * * *", "off".
 * Uses schedule->text when it is set (for `every`, when it still parses to
 * every_seconds); otherwise renders the fields ("cron 0,30 1-5 * * *"). */
void sched_describe(const struct schedule *schedule, char *out, size_t out_size);

#endif
