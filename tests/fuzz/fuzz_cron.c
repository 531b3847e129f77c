/*
 * fuzz_cron.c: libFuzzer harness for the schedule parser (5-field cron,
 * @aliases) and the next-due arithmetic on whatever it accepts, in time
 * zones with and without DST.
 *
 * Input: the cron text, then optionally a NUL byte and a trailer: one byte
 * picks the time zone (zones[] below), the next four (little-endian) pick
 * "now" within 20 years of 2023-11-14. The text comes first so that a
 * plain-text seed ("30 2 * * *") reaches the parser whole; a missing trailer
 * means UTC at 2023-11-14 22:13:20.
 *
 * Checked on every accepted line: the next run is in the future, on a whole
 * minute, in a chosen month, on a matching day (day-of-month / day-of-week
 * rule of schedule.h), at a chosen hour and minute unless it is the first
 * instant after a DST gap; "never fires" is never contradicted by the
 * calendar and says why, and a line that can fire has a next run.
 * Outcomes for the seed check (fuzz_outcome.h): refused, never, fires, and
 * fires_dst when the next run is within 12 hours of a change of offset.
 *
 * Not for: `every` durations (fuzz_units.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_outcome.h"
#include "policy/schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* POSIX TZ strings, so no tzdata is needed: spring-forward and fall-back at
 * 02:00/03:00 (Europe/Berlin), at 02:00 west of UTC (America/New_York), a
 * 30-minute change (Australia/Lord_Howe), and a change at midnight
 * (America/Santiago: 24:00 Saturday). */
static const char *const zones[] = {
    "UTC0",
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "EST5EDT,M3.2.0,M11.1.0",
    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
};
#define ZONE_COUNT (sizeof zones / sizeof zones[0])

static void use_zone(size_t zone)
{
    static size_t current = ZONE_COUNT;
    if (zone == current)
        return; /* tzset() re-reads the zone: only on a change */
    setenv("TZ", zones[zone], 1);
    tzset();
    current = zone;
}

static bool day_matches(const struct cron_expression *cron, const struct tm *local)
{
    bool by_date = cron->days_of_month & (1u << local->tm_mday);
    bool by_weekday = cron->days_of_week & (1u << local->tm_wday);
    if (cron->day_of_month_restricted && cron->day_of_week_restricted)
        return by_date || by_weekday;
    if (cron->day_of_month_restricted)
        return by_date;
    if (cron->day_of_week_restricted)
        return by_weekday;
    return true;
}

static void check_next(const struct cron_expression *cron, time_t now, time_t next)
{
    if (next <= now || next % 60 != 0)
        abort(); /* the next run is in the future, on a whole minute */
    struct tm local, before;
    time_t just_before = next - 1;
    if (!localtime_r(&next, &local) || !localtime_r(&just_before, &before))
        abort();
    if (!(cron->months & (1u << (local.tm_mon + 1))) || !day_matches(cron, &local))
        abort(); /* a chosen month, a matching day */
    bool after_gap = before.tm_gmtoff < local.tm_gmtoff;
    if (!after_gap && (!(cron->hours & (1u << local.tm_hour)) ||
                       !(cron->minutes & ((uint64_t)1 << local.tm_min))))
        abort(); /* a chosen hour and minute, unless the wall clock skipped them */
}

/* For the seed check: whether the next run is within 12 hours of a change
 * of UTC offset, so a "fires_dst" seed really exercises the DST code. */
static bool runs_near_zone_change(time_t next)
{
    if (!fuzz_tracing() || next == (time_t)-1)
        return false;
    time_t early = next - 12 * 3600, late = next + 12 * 3600;
    struct tm at_early, at_late;
    return localtime_r(&early, &at_early) && localtime_r(&late, &at_late) &&
           at_early.tm_gmtoff != at_late.tm_gmtoff;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) {
        fuzz_outcome("skipped");
        return 0;
    }
    const uint8_t *end = memchr(data, '\0', size);
    size_t text_size = end ? (size_t)(end - data) : size;
    const uint8_t *trailer = end ? end + 1 : data + size;
    size_t trailer_size = size - (size_t)(trailer - data);
    size_t zone = trailer_size >= 1 ? trailer[0] % ZONE_COUNT : 0;
    uint32_t seconds = 0;
    if (trailer_size >= 5)
        memcpy(&seconds, trailer + 1, 4);
    use_zone(zone);

    char *text = malloc(text_size + 1);
    if (!text)
        return 0;
    memcpy(text, data, text_size);
    text[text_size] = '\0';
    struct schedule schedule = {.kind = SCHEDULE_CRON};
    char why[256];
    if (sched_parse_cron(text, &schedule.cron, why, sizeof why) == 0) {
        time_t now = (time_t)1700000000 + (time_t)(seconds % (20u * 365u * 86400u));
        time_t next = sched_cron_next(&schedule.cron, now);
        if (next != (time_t)-1)
            check_next(&schedule.cron, now, next);
        char never[256] = "";
        bool can_fire = sched_cron_can_fire(&schedule.cron, never, sizeof never);
        if (!can_fire && (next != (time_t)-1 || never[0] == '\0'))
            abort(); /* "never fires" is never contradicted by the calendar, and says why */
        if (can_fire && next == (time_t)-1)
            abort(); /* a line that can fire has a next run (9 years hold every Feb 29) */
        fuzz_outcome(!can_fire ? "never" : runs_near_zone_change(next) ? "fires_dst" : "fires");
        (void)sched_next_due(&schedule, now - 3600, now);
        char described[128];
        sched_describe(&schedule, described, sizeof described);
    } else if (strlen(why) == 0) {
        abort(); /* a refusal always says why */
    } else {
        fuzz_outcome("refused");
    }
    free(text);
    return 0;
}
