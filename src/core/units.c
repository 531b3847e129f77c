/*
 * units.c: sizes ("16MB") and durations ("1h30m") as operators write them in
 * sqlprodd.conf, and their rendering for status output.
 *
 * Not for configuration structure (config.c says which key wants which unit
 * and adds FILE:LINE) and not for clocks: everything here is pure text and
 * integer arithmetic, so it is exact and cheap to test.
 */
#include "core/units.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Fills `why` when the caller gave room for it; returns `code` so error paths
 * read as one statement. */
static int units_fail(char *why, size_t why_size, int code, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static int units_fail(char *why, size_t why_size, int code, const char *format, ...)
{
    if (why && why_size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(why, why_size, format, args);
        va_end(args);
    }
    return code;
}

static const char *skip_spaces(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Reads a run of decimal digits into *value; -ERANGE past INT64_MAX, but the
 * whole run is still consumed so the caller can report it. */
static int parse_digits(const char **cursor, uint64_t *value)
{
    const char *p = *cursor;
    uint64_t total = 0;
    bool overflow = false;
    while (isdigit((unsigned char)*p)) {
        unsigned digit = (unsigned)(*p - '0');
        if (total > ((uint64_t)INT64_MAX - digit) / 10)
            overflow = true;
        else
            total = total * 10 + digit;
        p++;
    }
    *cursor = p;
    *value = total;
    return overflow ? -ERANGE : 0;
}

/* Copies the unit word (letters only) at p into unit; returns its length. */
static size_t read_word(const char *p, char *unit, size_t unit_size)
{
    size_t length = 0;
    while (isalpha((unsigned char)p[length]))
        length++;
    size_t copied = length < unit_size - 1 ? length : unit_size - 1;
    memcpy(unit, p, copied);
    unit[copied] = '\0';
    return length;
}

/*
 * fraction / 10^digits of 2^shift bytes, when that is a whole number.
 * 10^d = 2^d * 5^d, so the product is whole exactly when 5^d divides the
 * fraction and the remaining power of two is covered by the shift: no
 * floating point, no overflow (the quotient is below 2^d <= 2^shift).
 */
static bool fraction_in_bytes(uint64_t fraction, int digits, int shift, uint64_t *bytes)
{
    while (digits > 0 && fraction % 10 == 0) {
        fraction /= 10;
        digits--;
    }
    uint64_t power_of_five = 1;
    for (int i = 0; i < digits; i++)
        power_of_five *= 5;
    if (fraction % power_of_five != 0)
        return false;
    fraction /= power_of_five;
    if (digits > shift) {
        uint64_t mask = ((uint64_t)1 << (digits - shift)) - 1;
        if (fraction & mask)
            return false;
        *bytes = fraction >> (digits - shift);
    } else {
        *bytes = fraction << (shift - digits);
    }
    return true;
}

int units_parse_size(const char *text, int64_t *bytes, char *why, size_t why_size)
{
    static const struct {
        const char *name;
        int shift;
    } units[] = {{"", 0}, {"B", 0}, {"KB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
    const char *p = skip_spaces(text ? text : "");
    uint64_t whole = 0, fraction = 0;
    int fraction_digits = 0;

    if (*p == '\0')
        return units_fail(why, why_size, -EINVAL, "empty size (write e.g. 16MB)");
    if (*p == '-')
        return units_fail(why, why_size, -EINVAL, "sizes cannot be negative");
    if (!isdigit((unsigned char)*p))
        return units_fail(why, why_size, -EINVAL, "expected a number and a unit, e.g. 16MB");
    bool too_large = parse_digits(&p, &whole) != 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return units_fail(why, why_size, -EINVAL, "expected digits after the '.'");
        /* 18 digits fit in uint64_t; more precision than that cannot be
         * whole bytes for any unit up to TB once trailing zeros are gone. */
        while (isdigit((unsigned char)*p)) {
            if (fraction_digits < 18) {
                fraction = fraction * 10 + (uint64_t)(*p - '0');
                fraction_digits++;
            } else if (*p != '0') {
                return units_fail(why, why_size, -EINVAL, "not a whole number of bytes");
            }
            p++;
        }
    }

    p = skip_spaces(p);
    char unit[16];
    size_t unit_length = read_word(p, unit, sizeof unit);
    int shift = -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (unit_length < sizeof unit && strcasecmp(unit, units[i].name) == 0)
            shift = units[i].shift;
    if (shift < 0) {
        if (unit_length == 3 && tolower((unsigned char)unit[1]) == 'i' &&
            tolower((unsigned char)unit[2]) == 'b' && strchr("KMGTkmgt", unit[0]))
            return units_fail(why, why_size, -EINVAL,
                              "unknown unit '%s' (write %cB: sizes here are powers of 1024)", unit,
                              toupper((unsigned char)unit[0]));
        return units_fail(why, why_size, -EINVAL, "unknown unit '%s' (use B, KB, MB, GB or TB)",
                          unit);
    }
    p = skip_spaces(p + unit_length);
    if (*p != '\0')
        return units_fail(why, why_size, -EINVAL, "unexpected '%c' after the unit", *p);

    uint64_t fraction_bytes = 0;
    if (fraction_digits > 0 &&
        !fraction_in_bytes(fraction, fraction_digits, shift, &fraction_bytes))
        return units_fail(why, why_size, -EINVAL, "not a whole number of bytes");
    if (too_large || whole > ((uint64_t)INT64_MAX >> shift) ||
        (whole << shift) > (uint64_t)INT64_MAX - fraction_bytes)
        return units_fail(why, why_size, -ERANGE, "too large (at most 8388607TB)");
    *bytes = (int64_t)((whole << shift) + fraction_bytes);
    return 0;
}

/* Seconds per duration unit, largest first: a combined duration must list
 * its units in this order, each at most once ("1h30m", not "30m1h"). */
static const struct {
    char name;
    int64_t seconds;
} duration_units[] = {{'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

#define DURATION_UNIT_COUNT (int)(sizeof duration_units / sizeof duration_units[0])

int units_parse_duration(const char *text, int64_t *seconds, char *why, size_t why_size)
{
    const char *p = skip_spaces(text ? text : "");
    int64_t total = 0;
    int previous_unit = -1;

    if (*p == '\0')
        return units_fail(why, why_size, -EINVAL, "empty duration (write e.g. 15m)");
    if (*p == '-')
        return units_fail(why, why_size, -EINVAL, "durations cannot be negative");
    while (*p != '\0') {
        if (!isdigit((unsigned char)*p))
            return units_fail(why, why_size, -EINVAL,
                              "expected a number and a unit, e.g. 15m or 1h30m");
        uint64_t count;
        bool too_large = parse_digits(&p, &count) != 0;
        if (*p == '.')
            return units_fail(why, why_size, -EINVAL,
                              "fractions are not supported (write e.g. 1h30m)");
        p = skip_spaces(p);
        char unit[16];
        size_t unit_length = read_word(p, unit, sizeof unit);
        if (unit_length == 0)
            return units_fail(why, why_size, -EINVAL, "missing unit (use s, m, h, d or w)");
        int index = -1;
        for (int i = 0; i < DURATION_UNIT_COUNT; i++)
            if (unit_length == 1 && unit[0] == duration_units[i].name)
                index = i;
        if (index < 0)
            return units_fail(why, why_size, -EINVAL, "unknown unit '%s' (use s, m, h, d or w)",
                              unit);
        if (index <= previous_unit)
            return units_fail(why, why_size, -EINVAL,
                              "units out of order (largest first, each once: 1h30m)");
        previous_unit = index;
        int64_t unit_seconds = duration_units[index].seconds;
        if (too_large || count > (uint64_t)(INT64_MAX / unit_seconds) ||
            (int64_t)count * unit_seconds > INT64_MAX - total)
            return units_fail(why, why_size, -ERANGE, "too large");
        total += (int64_t)count * unit_seconds;
        p = skip_spaces(p + unit_length);
    }
    if (total == 0)
        return units_fail(why, why_size, -EINVAL, "duration must be greater than zero");
    *seconds = total;
    return 0;
}

/* |value| without the undefined negation of INT64_MIN. */
static uint64_t magnitude(int64_t value)
{
    return value < 0 ? (uint64_t)(-(value + 1)) + 1 : (uint64_t)value;
}

void units_format_size(int64_t bytes, char *out, size_t out_size)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!out || out_size == 0)
        return;
    const char *sign = bytes < 0 ? "-" : "";
    uint64_t value = magnitude(bytes);
    if (value < 1024) {
        snprintf(out, out_size, "%s%" PRIu64 " B", sign, value);
        return;
    }
    /* Tenths of the largest unit that keeps the number at or above 1.0,
     * rounded half up in integers; a value that rounds to 1024.0 moves up
     * a unit so 1048575 bytes reads "1.0 MiB", not "1024.0 KiB". */
    int unit = 1;
    while (unit < 6 && value >> (10 * (unit + 1)) != 0)
        unit++;
    int shift = 10 * unit;
    uint64_t remainder = value & (((uint64_t)1 << shift) - 1);
    uint64_t tenths =
        (value >> shift) * 10 + ((remainder * 10 + ((uint64_t)1 << (shift - 1))) >> shift);
    if (tenths >= 10240 && unit < 6) {
        unit++;
        shift += 10;
        remainder = value & (((uint64_t)1 << shift) - 1);
        tenths = (value >> shift) * 10 + ((remainder * 10 + ((uint64_t)1 << (shift - 1))) >> shift);
    }
    snprintf(out, out_size, "%s%" PRIu64 ".%" PRIu64 " %s", sign, tenths / 10, tenths % 10,
             names[unit]);
}

void units_format_duration(int64_t seconds, char *out, size_t out_size)
{
    /* Days are the largest unit shown: "45d3h" reads better in a status
     * line than "6w3d3h", and it parses back all the same. */
    static const struct {
        char name;
        uint64_t seconds;
    } parts[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    if (!out || out_size == 0)
        return;
    uint64_t value = magnitude(seconds);
    const char *sign = seconds < 0 ? "-" : "";
    if (value == 0) {
        snprintf(out, out_size, "0s");
        return;
    }
    int first = 0;
    while (value < parts[first].seconds)
        first++;
    uint64_t major = value / parts[first].seconds;
    if (first == 3) {
        snprintf(out, out_size, "%s%" PRIu64 "s", sign, major);
        return;
    }
    /* The two most significant units, truncated: 93784 s is "1d2h". */
    uint64_t minor = value % parts[first].seconds / parts[first + 1].seconds;
    if (minor == 0)
        snprintf(out, out_size, "%s%" PRIu64 "%c", sign, major, parts[first].name);
    else
        snprintf(out, out_size, "%s%" PRIu64 "%c%" PRIu64 "%c", sign, major, parts[first].name,
                 minor, parts[first + 1].name);
}

void units_format_clock(time_t t, time_t now, char *out, size_t out_size)
{
    struct tm when, today;
    if (!out || out_size == 0)
        return;
    gmtime_r(&t, &when);
    gmtime_r(&now, &today);
    bool same_day = when.tm_year == today.tm_year && when.tm_yday == today.tm_yday;
    if (strftime(out, out_size, same_day ? "%H:%M:%S UTC" : "%Y-%m-%d %H:%M:%S UTC", &when) == 0)
        out[0] = '\0'; /* too small: empty rather than undefined */
}
