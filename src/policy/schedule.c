/*
 * schedule.c: `every` and 5-field cron schedules, and when a job is next due.
 *
 * Not a clock and not a loop: the agent passes "now" in and sleeps on its
 * own. The only outside state read here is the local time zone (TZ, through
 * localtime_r), because cron fields are written in wall-clock time.
 *
 * sched_cron_next() works in "civil seconds" (a local wall-clock time counted
 * as if it were UTC) and walks months and days with plain calendar
 * arithmetic, consulting the zone only for the few days it actually tries.
 * Days on which the UTC offset changes take a slower, exact path.
 */
#include "policy/schedule.h"

#include "core/units.h"
#include "policy/calendar.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SECONDS_PER_DAY 86400
#define MINUTES_PER_DAY 1440
/* How far the search looks before giving up. A line that can never fire
 * ("0 0 31 2 *") is refused by sched_cron_can_fire at load time; the
 * longest gap of one that can is between two February 29ths across a
 * century year that is not a leap year (2096 to 2104): eight years. */
#define SEARCH_MONTHS (9 * 12 + 1)

static int sched_fail(char *why, size_t why_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int sched_fail(char *why, size_t why_size, const char *format, ...)
{
    if (why && why_size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(why, why_size, format, args);
        va_end(args);
    }
    return -EINVAL;
}

/* ---- parsing ---------------------------------------------------------- */

struct cron_field {
    const char *name;         /* as in messages: "hour field: ..." */
    int low, high;            /* accepted values; day-of-week also takes 7 for Sunday */
    int open_high;            /* where `*` and "5/15" end: 6 for day-of-week */
    const char *const *names; /* three-letter names for low, low+1, ... */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const weekday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct cron_field cron_fields[5] = {
    {"minute", 0, 59, 59, NULL},
    {"hour", 0, 23, 23, NULL},
    {"day-of-month", 1, 31, 31, NULL},
    {"month", 1, 12, 12, month_names},
    {"day-of-week", 0, 7, 6, weekday_names},
};

/* One value of a field: a number or, where the field has them, a name.
 * *is_sunday_name lets "fri-sun" mean 5-7 rather than a reversed range. */
static int parse_cron_value(const struct cron_field *field, const char **cursor, int *value,
                            int *is_sunday_name, char *why, size_t why_size)
{
    const char *p = *cursor;
    *is_sunday_name = 0;
    if (isdigit((unsigned char)*p)) {
        long number = 0;
        const char *start = p;
        while (isdigit((unsigned char)*p)) {
            if (number < 1000)
                number = number * 10 + (*p - '0');
            p++;
        }
        if (number < field->low || number > field->high)
            return sched_fail(why, why_size, "%s field: %.*s is out of range %d-%d", field->name,
                              (int)(p - start), start, field->low, field->high);
        *value = (int)number;
    } else if (isalpha((unsigned char)*p)) {
        const char *start = p;
        while (isalpha((unsigned char)*p))
            p++;
        int length = (int)(p - start);
        int found = -1;
        for (int i = 0; field->names && field->names[i]; i++)
            if (length == 3 && strncasecmp(start, field->names[i], 3) == 0)
                found = i;
        if (found < 0 && field->names)
            return sched_fail(why, why_size, "%s field: unknown name '%.*s' (use %s-%s)",
                              field->name, length, start, field->names[0],
                              field == &cron_fields[3] ? "dec" : "sat");
        if (found < 0)
            return sched_fail(why, why_size, "%s field: '%.*s' is not a number", field->name,
                              length, start);
        *value = field->low + found;
        *is_sunday_name = field == &cron_fields[4] && found == 0;
    } else if (*p == '\0' || *p == ',') {
        return sched_fail(why, why_size, "%s field: a range needs an end (write e.g. 1-5)",
                          field->name);
    } else {
        return sched_fail(why, why_size, "%s field: unexpected '%c'", field->name, *p);
    }
    *cursor = p;
    return 0;
}

/* One comma-separated item: `*`, N, N-M, each optionally /STEP; "N/STEP"
 * means N up to the end of the field, as in Vixie cron. */
static int parse_cron_item(const struct cron_field *field, const char **cursor, uint64_t *bits,
                           char *why, size_t why_size)
{
    const char *p = *cursor;
    int low, high, step = 1, sunday;
    if (*p == '*') {
        low = field->low;
        high = field->open_high;
        p++;
    } else {
        int rc = parse_cron_value(field, &p, &low, &sunday, why, why_size);
        if (rc != 0)
            return rc;
        high = low;
        if (*p == '-') {
            p++;
            if ((rc = parse_cron_value(field, &p, &high, &sunday, why, why_size)) != 0)
                return rc;
            if (sunday && low > 0)
                high = 7;
            if (high < low)
                return sched_fail(why, why_size, "%s field: range %d-%d is reversed (write %d-%d)",
                                  field->name, low, high, high, low);
        } else if (*p == '/') {
            high = field->open_high > low ? field->open_high : low;
        }
    }
    if (*p == '/') {
        p++;
        if (!isdigit((unsigned char)*p))
            return sched_fail(why, why_size, "%s field: expected a step after '/'", field->name);
        long number = 0;
        while (isdigit((unsigned char)*p)) {
            if (number < 1000)
                number = number * 10 + (*p - '0');
            p++;
        }
        if (number == 0)
            return sched_fail(why, why_size, "%s field: a step of 0 is not allowed", field->name);
        if (number > field->high - field->low)
            return sched_fail(why, why_size, "%s field: step %ld is out of range 1-%d", field->name,
                              number, field->high - field->low);
        step = (int)number;
    }
    if (*p != '\0' && *p != ',')
        return sched_fail(why, why_size, "%s field: unexpected '%c'", field->name, *p);
    for (int value = low; value <= high; value += step)
        *bits |= (uint64_t)1 << value;
    *cursor = p;
    return 0;
}

static int parse_cron_field(const struct cron_field *field, const char *text, uint64_t *bits,
                            char *why, size_t why_size)
{
    const char *p = text;
    *bits = 0;
    for (;;) {
        if (*p == ',' || *p == '\0')
            return sched_fail(why, why_size, "%s field: empty list item", field->name);
        int rc = parse_cron_item(field, &p, bits, why, why_size);
        if (rc != 0)
            return rc;
        if (*p == '\0')
            return 0;
        p++; /* ',' */
    }
}

/* The @-macros of Vixie cron that describe a time; @reboot does not. */
static const char *expand_macro(const char *word)
{
    static const struct {
        const char *name, *expansion;
    } macros[] = {
        {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
        {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"},
    };
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
        if (strcasecmp(word, macros[i].name) == 0)
            return macros[i].expansion;
    return NULL;
}

/* Cuts `text` at white space in place; the first `most` words go to
 * fields[]. Returns how many words there are, also past `most`. */
static int split_fields(char *text, char **fields, int most)
{
    int count = 0;
    for (char *p = text; *p;) {
        while (isspace((unsigned char)*p))
            *p++ = '\0';
        if (*p == '\0')
            break;
        if (count < most)
            fields[count] = p;
        count++;
        while (*p && !isspace((unsigned char)*p))
            p++;
    }
    return count;
}

int sched_parse_cron(const char *text, struct cron_expression *out, char *why, size_t why_size)
{
    char copy[256];
    char *fields[6];
    int count;

    if (!text)
        text = "";
    if (strlen(text) >= sizeof copy)
        return sched_fail(why, why_size, "cron expression is too long");
    snprintf(copy, sizeof copy, "%s", text);
    count = split_fields(copy, fields, 6);
    if (count == 0)
        return sched_fail(why, why_size, "empty cron expression (write e.g. \"30 3 * * *\")");
    if (fields[0][0] == '@') {
        if (count != 1)
            return sched_fail(why, why_size, "%s takes no fields after it", fields[0]);
        const char *expansion = expand_macro(fields[0]);
        if (!expansion)
            return sched_fail(why, why_size,
                              "unknown macro '%s' (use @hourly, @daily, @weekly, @monthly or "
                              "@yearly)",
                              fields[0]);
        return sched_parse_cron(expansion, out, why, why_size);
    }
    if (count != 5)
        return sched_fail(why, why_size,
                          "expected 5 fields (minute hour day-of-month month day-of-week), got %d",
                          count);

    uint64_t bits[5];
    for (int i = 0; i < 5; i++) {
        int rc = parse_cron_field(&cron_fields[i], fields[i], &bits[i], why, why_size);
        if (rc != 0)
            return rc;
    }
    /* Sunday is 0; 7 is only another way to write it. */
    if (bits[4] & (1u << 7))
        bits[4] = (bits[4] & ~(uint64_t)(1u << 7)) | 1u;

    /* Field by field into zeroed memory, padding included, so two equal
     * expressions are equal byte for byte (configs are compared that way). */
    memset(out, 0, sizeof *out);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->days_of_month = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->days_of_week = (uint8_t)bits[4];
    /* "Restricted" means the field leaves some value out, whatever its
     * spelling: "*" and "1-31" are alike, and a step that skips days is a
     * restriction. Vixie cron looks only at a leading '*' instead, which
     * makes "every other day" with a weekday silently mean "and", not "or". */
    out->day_of_month_restricted = out->days_of_month != 0xfffffffeu;
    out->day_of_week_restricted = out->days_of_week != 0x7fu;
    return 0;
}

/* ---- whether an expression can ever fire -------------------------------- */

/* The chosen days as "31" or "30 or 31". */
static void render_days(uint32_t days, char *out, size_t out_size)
{
    int count = 0, index = 0;
    for (int day = 1; day <= 31; day++)
        count += (days >> day) & 1u;
    size_t used = 0;
    out[0] = '\0';
    for (int day = 1; day <= 31 && used < out_size; day++) {
        if (!(days & (1u << day)))
            continue;
        index++;
        const char *separator = index == 1 ? "" : index == count ? " or " : ", ";
        int written = snprintf(out + used, out_size - used, "%s%d", separator, day);
        if (written < 0)
            break;
        used += (size_t)written;
    }
}

bool sched_cron_can_fire(const struct cron_expression *cron, char *why, size_t why_size)
{
    /* The longest each month can be: February has a 29th in leap years. */
    static const int longest[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    static const char *const full_names[13] = {
        "",     "January", "February",  "March",   "April",    "May",     "June",
        "July", "August",  "September", "October", "November", "December"};
    /* An unrestricted day-of-month matches every day, and a restricted
     * day-of-week alone or beside it matches some day of every month. */
    if (!cron->day_of_month_restricted || cron->day_of_week_restricted)
        return true;
    for (int month = 1; month <= 12; month++) {
        if (!(cron->months & (1u << month)))
            continue;
        uint64_t existing = ((UINT64_C(1) << (longest[month] + 1)) - 1) & ~UINT64_C(1);
        if (cron->days_of_month & existing)
            return true;
    }
    /* None exists: every chosen day is past the end of every chosen month. */
    if (why && why_size > 0) {
        char months[160] = "", days[128];
        size_t used = 0;
        int count = 0, index = 0;
        for (int month = 1; month <= 12; month++)
            count += (cron->months >> month) & 1u;
        for (int month = 1; month <= 12 && used < sizeof months; month++) {
            if (!(cron->months & (1u << month)))
                continue;
            index++;
            const char *separator = index == 1 ? "" : index == count ? " and " : ", ";
            int written =
                snprintf(months + used, sizeof months - used, "%s%s", separator, full_names[month]);
            if (written < 0)
                break;
            used += (size_t)written;
        }
        render_days(cron->days_of_month, days, sizeof days);
        snprintf(why, why_size, "%s %s no day %s", months, count == 1 ? "has" : "have", days);
    }
    return false;
}

/* ---- calendar arithmetic ---------------------------------------------- */

/* Bit d (1-31) set for each day of the month the expression allows. */
static uint32_t matching_days(const struct cron_expression *cron, int64_t first_day, int length)
{
    uint32_t in_month = (uint32_t)(((uint64_t)1 << (length + 1)) - 2);
    uint32_t by_date = cron->days_of_month & in_month;
    uint32_t by_weekday = 0;
    int weekday =
        (int)(first_day + 4 - calendar_floor_divide(first_day + 4, 7) * 7); /* 1970-01-01: Thu */
    for (int day = 1; day <= length; day++, weekday = (weekday + 1) % 7)
        if (cron->days_of_week & (1u << weekday))
            by_weekday |= 1u << day;
    if (cron->day_of_month_restricted && cron->day_of_week_restricted)
        return by_date | by_weekday;
    if (cron->day_of_month_restricted)
        return by_date;
    if (cron->day_of_week_restricted)
        return by_weekday;
    return in_month;
}

/* First matching minute of the day at or after minute_of_day, or -1. */
static int first_minute_from(const struct cron_expression *cron, int minute_of_day)
{
    for (int hour = minute_of_day / 60; hour < 24; hour++) {
        if (!(cron->hours & (1u << hour)))
            continue;
        int from = hour == minute_of_day / 60 ? minute_of_day % 60 : 0;
        uint64_t minutes = cron->minutes & ~(((uint64_t)1 << from) - 1);
        if (minutes)
            return hour * 60 + __builtin_ctzll(minutes);
    }
    return -1;
}

/* ---- time zone -------------------------------------------------------- */

/* Seconds east of UTC at instant t; false if the C library cannot say. */
static bool utc_offset_at(time_t t, int64_t *offset)
{
    struct tm local;
    if (!localtime_r(&t, &local))
        return false;
    *offset = local.tm_gmtoff;
    return true;
}

/* The first instant whose offset is no longer `before`, in (low, high]; the
 * zone is assumed to change at most once in between (three days). */
static time_t find_transition(time_t low, time_t high, int64_t before)
{
    while (high - low > 1) {
        time_t middle = low + (high - low) / 2;
        int64_t offset;
        if (utc_offset_at(middle, &offset) && offset == before)
            low = middle;
        else
            high = middle;
    }
    return high;
}

/*
 * The first instant after `after` on local day `day` (days since 1970 in
 * civil time) that the expression matches, or -1.
 *
 * Wall-clock jobs (some hours left out: "30 2 * * *") run once per matching
 * local time: a time skipped by a spring-forward change runs at the first
 * instant after the gap, a repeated time runs at its first occurrence only.
 * Jobs that run every hour ("0,30 * * * *") follow elapsed time instead:
 * skipped minutes do not exist and repeated ones are real, later minutes,
 * so they keep their rhythm without a burst or a hole. This is the split
 * Vixie cron and cronie make between fixed-time and wildcard jobs.
 */
static time_t first_match_on_day(const struct cron_expression *cron, int64_t day, time_t after)
{
    int64_t day_start = day * SECONDS_PER_DAY;
    /* Probes well outside the day whatever the offset (at most +-15h). */
    time_t probe_before = (time_t)(day_start - SECONDS_PER_DAY);
    time_t probe_after = (time_t)(day_start + 2 * SECONDS_PER_DAY);
    int64_t offset_before, offset_after;
    if (!utc_offset_at(probe_before, &offset_before) || !utc_offset_at(probe_after, &offset_after))
        return (time_t)-1;

    if (offset_before == offset_after) {
        /* The common day: wall clock and UTC move together. */
        int64_t first_instant = day_start - offset_before;
        int64_t from =
            after < first_instant ? 0 : calendar_floor_divide(after - first_instant, 60) + 1;
        if (from >= MINUTES_PER_DAY)
            return (time_t)-1;
        int minute = first_minute_from(cron, (int)from);
        return minute < 0 ? (time_t)-1 : (time_t)(first_instant + minute * 60);
    }

    /* The offset changes at `change`: civil time c existed as c - before
     * (if earlier than the change) and/or as c - after (if not). */
    time_t change = find_transition(probe_before, probe_after, offset_before);
    bool wall_clock = (cron->hours & 0xffffffu) != 0xffffffu;
    time_t best = (time_t)-1;
    for (int minute = first_minute_from(cron, 0); minute >= 0;
         minute = minute + 1 < MINUTES_PER_DAY ? first_minute_from(cron, minute + 1) : -1) {
        int64_t civil = day_start + minute * 60;
        time_t early = (time_t)(civil - offset_before), late = (time_t)(civil - offset_after);
        bool early_exists = early < change, late_exists = late >= change;
        time_t candidates[2];
        int count = 0;
        if (early_exists && late_exists) {
            candidates[count++] = early;
            if (!wall_clock)
                candidates[count++] = late;
        } else if (early_exists) {
            candidates[count++] = early;
        } else if (late_exists) {
            candidates[count++] = late;
        } else if (wall_clock) {
            candidates[count++] = change;
        }
        for (int i = 0; i < count; i++)
            if (candidates[i] > after && (best == (time_t)-1 || candidates[i] < best))
                best = candidates[i];
    }
    return best;
}

time_t sched_cron_next(const struct cron_expression *cron, time_t after)
{
    int64_t offset;
    if (!cron || !cron->minutes || !cron->hours || !cron->months || !utc_offset_at(after, &offset))
        return (time_t)-1;
    /* Start a day early: a fall-back change near midnight can make the
     * next instant belong to the previous local date. */
    int64_t day = calendar_floor_divide((int64_t)after + offset, SECONDS_PER_DAY) - 1;
    int64_t year;
    int month, civil_day;
    calendar_civil_from_days(day, &year, &month, &civil_day);
    int64_t month_start = calendar_days_from_civil(year, month, 1);

    for (int searched = 0; searched < SEARCH_MONTHS; searched++) {
        int length = calendar_days_in_month(year, month);
        if (cron->months & (1u << month)) {
            uint32_t days = matching_days(cron, month_start, length);
            int first = day > month_start ? (int)(day - month_start) + 1 : 1;
            days &= ~(((uint32_t)1 << first) - 1);
            while (days) {
                int day_of_month = __builtin_ctz(days);
                time_t found = first_match_on_day(cron, month_start + day_of_month - 1, after);
                if (found != (time_t)-1)
                    return found;
                days &= days - 1;
            }
        }
        month_start += length;
        if (++month > 12) {
            month = 1;
            year++;
        }
    }
    return (time_t)-1;
}

/* ---- schedules -------------------------------------------------------- */

time_t sched_next_due(const struct schedule *schedule, time_t last_run, time_t now)
{
    time_t next;
    /* A last run "in the future" means the clock was stepped back: count
     * from now rather than stall until the old time comes round again. */
    if (last_run > now)
        last_run = now;
    switch (schedule ? schedule->kind : SCHEDULE_NONE) {
    case SCHEDULE_EVERY:
        if (schedule->every_seconds <= 0)
            return (time_t)-1;
        if (last_run == 0)
            return now;
        if (last_run > 0 && schedule->every_seconds > INT64_MAX - (int64_t)last_run)
            return (time_t)-1;
        next = (time_t)(last_run + schedule->every_seconds);
        return next < now ? now : next;
    case SCHEDULE_CRON:
        if (last_run == 0)
            return sched_cron_next(&schedule->cron, now);
        next = sched_cron_next(&schedule->cron, last_run);
        if (next == (time_t)-1)
            return (time_t)-1;
        return next < now ? now : next;
    case SCHEDULE_NONE:
    default: return (time_t)-1;
    }
}

/* "0-4,30" style text for one field, for a schedule built without text. */
static void describe_field(uint64_t bits, int low, int high, char *out, size_t out_size)
{
    size_t used = 0;
    uint64_t all = (((uint64_t)1 << (high + 1)) - 1) & ~(((uint64_t)1 << low) - 1);
    out[0] = '\0';
    if ((bits & all) == all) {
        snprintf(out, out_size, "*");
        return;
    }
    for (int value = low; value <= high; value++) {
        if (!(bits & ((uint64_t)1 << value)))
            continue;
        int end = value;
        while (end < high && (bits & ((uint64_t)1 << (end + 1))))
            end++;
        int written =
            end == value
                ? snprintf(out + used, out_size - used, "%s%d", used ? "," : "", value)
                : snprintf(out + used, out_size - used, "%s%d-%d", used ? "," : "", value, end);
        if (written < 0 || (size_t)written >= out_size - used)
            return;
        used += (size_t)written;
        value = end;
    }
}

void sched_describe(const struct schedule *schedule, char *out, size_t out_size)
{
    if (!out || out_size == 0)
        return;
    if (!schedule || schedule->kind == SCHEDULE_NONE) {
        snprintf(out, out_size, "off");
        return;
    }
    char text[sizeof schedule->text + 1];
    snprintf(text, sizeof text, "%.*s", (int)sizeof schedule->text, schedule->text);
    if (schedule->kind == SCHEDULE_EVERY) {
        /* The operator's spelling ("90s") when it still says the same
         * thing; the canonical one ("1m30s") otherwise. */
        int64_t seconds;
        char duration[sizeof text];
        if (units_parse_duration(text, &seconds, NULL, 0) == 0 &&
            seconds == schedule->every_seconds)
            snprintf(duration, sizeof duration, "%s", text);
        else
            units_format_duration(schedule->every_seconds, duration, sizeof duration);
        snprintf(out, out_size, "every %s", duration);
        return;
    }
    if (text[0] != '\0') {
        snprintf(out, out_size, "cron %s", text);
        return;
    }
    const struct cron_expression *cron = &schedule->cron;
    char fields[5][128];
    describe_field(cron->minutes, 0, 59, fields[0], sizeof fields[0]);
    describe_field(cron->hours, 0, 23, fields[1], sizeof fields[1]);
    describe_field(cron->days_of_month, 1, 31, fields[2], sizeof fields[2]);
    describe_field(cron->months, 1, 12, fields[3], sizeof fields[3]);
    describe_field(cron->days_of_week, 0, 6, fields[4], sizeof fields[4]);
    snprintf(out, out_size, "cron %s %s %s %s %s", fields[0], fields[1], fields[2], fields[3],
             fields[4]);
}
