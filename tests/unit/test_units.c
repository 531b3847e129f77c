/*
 * test_units.c: sizes and durations as operators write them in
 * sqlprodd.conf, and as status output shows them.
 *
 * Table-driven: every row below is its own cmocka test, named after its
 * input, so a failure names the spelling that broke.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/units.h"

/* ---- tables ----------------------------------------------------------- */

struct size_case {
    const char *text;
    int64_t bytes;
};

static const struct size_case valid_sizes[] = {
    {"4096", 4096},
    {"0", 0},
    {"512B", 512},
    {"512b", 512},
    {"64KB", 64 * 1024},
    {"64kb", 64 * 1024},
    {"16MB", 16 * 1024 * 1024},
    {"16 MB", 16 * 1024 * 1024},
    {"  16MB  ", 16 * 1024 * 1024},
    {"16Mb", 16 * 1024 * 1024},
    {"2GB", INT64_C(2) * 1024 * 1024 * 1024},
    {"2gB", INT64_C(2) * 1024 * 1024 * 1024},
    {"1TB", INT64_C(1) << 40},
    {"007MB", 7 * 1024 * 1024},
    {"1.5MB", 1572864},
    {"3.25KB", 3328},
    {"0.5KB", 512},
    {"1.0B", 1},
    {"2.50GB", INT64_C(5) << 29},
    {"0.0009765625MB", 1024},
    {"8388607TB", INT64_C(8388607) << 40},
    {"9223372036854775807", INT64_MAX},
    {"9223372036854775807B", INT64_MAX},
};

struct rejected_case {
    const char *text;
    int code;
    const char *why; /* must appear in the message */
};

static const struct rejected_case rejected_sizes[] = {
    {"", -EINVAL, "empty size"},
    {"   ", -EINVAL, "empty size"},
    {"-5MB", -EINVAL, "sizes cannot be negative"},
    {"-0", -EINVAL, "negative"},
    {"+5MB", -EINVAL, "expected a number and a unit, e.g. 16MB"},
    {"MB", -EINVAL, "expected a number and a unit, e.g. 16MB"},
    {".5MB", -EINVAL, "expected a number and a unit, e.g. 16MB"},
    {"1.MB", -EINVAL, "expected digits after the '.'"},
    {"0.1KB", -EINVAL, "not a whole number of bytes"},
    {"1.5", -EINVAL, "not a whole number of bytes"},
    {"1.5B", -EINVAL, "not a whole number of bytes"},
    {"1.0000000000000000001TB", -EINVAL, "not a whole number of bytes"},
    {"16MiB", -EINVAL, "unknown unit 'MiB' (write MB"},
    {"16kib", -EINVAL, "unknown unit 'kib' (write KB"},
    {"1GiB", -EINVAL, "(write GB"},
    {"16K", -EINVAL, "unknown unit 'K' (use B, KB, MB, GB or TB)"},
    {"16MBs", -EINVAL, "unknown unit 'MBs'"},
    {"16PB", -EINVAL, "unknown unit 'PB'"},
    {"16 MB extra", -EINVAL, "unexpected 'e' after the unit"},
    {"16MB5", -EINVAL, "unexpected '5' after the unit"},
    {"0x10", -EINVAL, "unknown unit 'x'"},
    {"8388608TB", -ERANGE, "too large"},
    {"9223372036854775808", -ERANGE, "too large"},
    {"99999999999999999999999MB", -ERANGE, "too large"},
    {"9007199254740992KB", -ERANGE, "too large"},
};

struct duration_case {
    const char *text;
    int64_t seconds;
};

static const struct duration_case valid_durations[] = {
    {"90s", 90},
    {"15m", 900},
    {"6h", 21600},
    {"1d", 86400},
    {"2w", 1209600},
    {"1h30m", 5400},
    {"1h 30m", 5400},
    {"1d12h", 129600},
    {" 15 m ", 900},
    {"0h5m", 300},
    {"1w1d1h1m1s", 604800 + 86400 + 3600 + 60 + 1},
    {"106751991167300d", INT64_C(106751991167300) * 86400},
};

static const struct rejected_case rejected_durations[] = {
    {"", -EINVAL, "empty duration"},
    {"0s", -EINVAL, "greater than zero"},
    {"0h0m", -EINVAL, "greater than zero"},
    {"10", -EINVAL, "missing unit (use s, m, h, d or w)"},
    {"1h30", -EINVAL, "missing unit (use s, m, h, d or w)"},
    {"5x", -EINVAL, "unknown unit 'x' (use s, m, h, d or w)"},
    {"15min", -EINVAL, "unknown unit 'min'"},
    {"6H", -EINVAL, "unknown unit 'H'"},
    {"1M", -EINVAL, "unknown unit 'M'"},
    {"-5m", -EINVAL, "durations cannot be negative"},
    {"m", -EINVAL, "expected a number and a unit, e.g. 15m or 1h30m"},
    {"5m!", -EINVAL, "expected a number and a unit, e.g. 15m or 1h30m"},
    {"30m1h", -EINVAL, "units out of order"},
    {"1h1h", -EINVAL, "units out of order"},
    {"1.5h", -EINVAL, "fractions are not supported (write e.g. 1h30m)"},
    {"99999999999999999999s", -ERANGE, "too large"},
    {"15250284452472w", -ERANGE, "too large"},
    {"106751991167300d1000000s", -ERANGE, "too large"},
};

struct format_case {
    int64_t value;
    const char *text;
};

static const struct format_case formatted_sizes[] = {
    {0, "0 B"},
    {512, "512 B"},
    {1023, "1023 B"},
    {1024, "1.0 KiB"},
    {1536, "1.5 KiB"},
    {1075, "1.0 KiB"}, /* 1.0498 rounds down */
    {1076, "1.1 KiB"}, /* 1.0508 rounds up */
    {4404019, "4.2 MiB"},
    {1048575, "1.0 MiB"}, /* not "1024.0 KiB" */
    {1048576, "1.0 MiB"},
    {INT64_C(16) << 20, "16.0 MiB"},
    {INT64_C(5) << 29, "2.5 GiB"},
    {INT64_C(3) << 40, "3.0 TiB"},
    {INT64_MAX, "8.0 EiB"},
    {-2048, "-2.0 KiB"},
    {INT64_MIN, "-8.0 EiB"},
};

static const struct format_case formatted_durations[] = {
    {0, "0s"},       {42, "42s"},      {60, "1m"},     {90, "1m30s"},
    {750, "12m30s"}, {3600, "1h"},     {3660, "1h1m"}, {3599, "59m59s"},
    {86400, "1d"},   {86460, "1d"}, /* the minute is below the two units shown */
    {93784, "1d2h"}, {1209600, "14d"}, {-30, "-30s"},  {INT64_MIN, "-106751991167300d15h"},
};

/* ---- test bodies ------------------------------------------------------ */

static void size_parses(void **state)
{
    const struct size_case *row = *state;
    int64_t bytes = -1;
    char why[128] = "";
    int rc = units_parse_size(row->text, &bytes, why, sizeof why);
    if (rc != 0)
        fail_msg("'%s' was rejected (%d): %s", row->text, rc, why);
    if (bytes != row->bytes)
        fail_msg("'%s' gave %" PRId64 " bytes, expected %" PRId64, row->text, bytes, row->bytes);
}

static void check_rejected(const struct rejected_case *row, int rc, int64_t value, const char *why)
{
    if (rc != row->code)
        fail_msg("'%s' returned %d (value %" PRId64 ", why '%s'), expected %d", row->text, rc,
                 value, why, row->code);
    if (!strstr(why, row->why))
        fail_msg("'%s': message '%s' does not say '%s'", row->text, why, row->why);
    /* A rejected value must not leak into the caller's setting. */
    assert_int_equal(value, 12345);
}

static void size_is_rejected(void **state)
{
    const struct rejected_case *row = *state;
    int64_t bytes = 12345;
    char why[128] = "";
    int rc = units_parse_size(row->text, &bytes, why, sizeof why);
    check_rejected(row, rc, bytes, why);
}

static void duration_parses(void **state)
{
    const struct duration_case *row = *state;
    int64_t seconds = -1;
    char why[128] = "";
    int rc = units_parse_duration(row->text, &seconds, why, sizeof why);
    if (rc != 0)
        fail_msg("'%s' was rejected (%d): %s", row->text, rc, why);
    if (seconds != row->seconds)
        fail_msg("'%s' gave %" PRId64 " s, expected %" PRId64, row->text, seconds, row->seconds);
}

static void duration_is_rejected(void **state)
{
    const struct rejected_case *row = *state;
    int64_t seconds = 12345;
    char why[128] = "";
    int rc = units_parse_duration(row->text, &seconds, why, sizeof why);
    check_rejected(row, rc, seconds, why);
}

static void size_formats(void **state)
{
    const struct format_case *row = *state;
    char out[32];
    units_format_size(row->value, out, sizeof out);
    if (strcmp(out, row->text) != 0)
        fail_msg("%" PRId64 " bytes printed as '%s', expected '%s'", row->value, out, row->text);
}

static void duration_formats(void **state)
{
    const struct format_case *row = *state;
    char out[32];
    units_format_duration(row->value, out, sizeof out);
    if (strcmp(out, row->text) != 0)
        fail_msg("%" PRId64 " s printed as '%s', expected '%s'", row->value, out, row->text);
}

/* ---- single behaviours ------------------------------------------------ */

static void parse_without_why_buffer_still_reports_the_error(void **state)
{
    (void)state;
    int64_t value = 7;
    assert_int_equal(units_parse_size("16MiB", &value, NULL, 0), -EINVAL);
    assert_int_equal(units_parse_duration("10", &value, NULL, 0), -EINVAL);
    assert_int_equal(units_parse_size(NULL, &value, NULL, 0), -EINVAL);
    assert_int_equal(units_parse_duration(NULL, &value, NULL, 0), -EINVAL);
    assert_int_equal(value, 7);
}

static void long_message_is_cut_to_the_buffer(void **state)
{
    (void)state;
    char why[12];
    memset(why, 'x', sizeof why);
    int64_t value;
    assert_int_equal(units_parse_size("16MiB", &value, why, sizeof why), -EINVAL);
    assert_int_equal(strlen(why), sizeof why - 1);
    assert_string_equal(why, "unknown uni");
}

static void long_unit_is_reported_without_overflow(void **state)
{
    (void)state;
    char why[128];
    int64_t value;
    assert_int_equal(units_parse_size("5abcdefghijklmnopqrstuvwxyz", &value, why, sizeof why),
                     -EINVAL);
    assert_non_null(strstr(why, "unknown unit 'abcdefghijklmno'"));
    assert_int_equal(units_parse_duration("5abcdefghijklmnopqrstuvwxyz", &value, why, sizeof why),
                     -EINVAL);
    assert_non_null(strstr(why, "unknown unit 'abcdefghijklmno'"));
}

static void format_respects_small_and_empty_buffers(void **state)
{
    (void)state;
    char out[8];
    memset(out, '#', sizeof out);
    units_format_size(4404019, out, 0);
    units_format_duration(750, out, 0);
    assert_int_equal(out[0], '#');
    units_format_size(4404019, out, 4);
    assert_string_equal(out, "4.2");
    assert_int_equal(out[4], '#');
    memset(out, '#', sizeof out);
    units_format_duration(93784, out, 3);
    assert_string_equal(out, "1d");
    assert_int_equal(out[3], '#');
}

/* What status prints must read back as the same setting when nothing was
 * cut off: an operator copies "every 1h30m" from `status` into the config. */
static void formatted_duration_parses_back(void **state)
{
    (void)state;
    static const int64_t values[] = {1, 59, 60, 90, 3600, 5400, 86400, 90000, 604800, 2592000};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char text[32];
        int64_t seconds = 0;
        units_format_duration(values[i], text, sizeof text);
        assert_int_equal(units_parse_duration(text, &seconds, NULL, 0), 0);
        assert_int_equal(seconds, values[i]);
    }
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
    char name[160];
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
        .initial_state = (void *)row,
    };
    list->count++;
}

#define ROWS(table)                (sizeof(table) / sizeof((table)[0]))
#define ADD_SINGLE(list, function) add_test(list, function, NULL, "%s", #function)

int main(void)
{
    struct test_list list = {0};
    for (size_t i = 0; i < ROWS(valid_sizes); i++)
        add_test(&list, size_parses, &valid_sizes[i], "size_parses '%s'", valid_sizes[i].text);
    for (size_t i = 0; i < ROWS(rejected_sizes); i++)
        add_test(&list, size_is_rejected, &rejected_sizes[i], "size_is_rejected '%s'",
                 rejected_sizes[i].text);
    for (size_t i = 0; i < ROWS(valid_durations); i++)
        add_test(&list, duration_parses, &valid_durations[i], "duration_parses '%s'",
                 valid_durations[i].text);
    for (size_t i = 0; i < ROWS(rejected_durations); i++)
        add_test(&list, duration_is_rejected, &rejected_durations[i], "duration_is_rejected '%s'",
                 rejected_durations[i].text);
    for (size_t i = 0; i < ROWS(formatted_sizes); i++)
        add_test(&list, size_formats, &formatted_sizes[i], "size_formats %" PRId64 " as '%s'",
                 formatted_sizes[i].value, formatted_sizes[i].text);
    for (size_t i = 0; i < ROWS(formatted_durations); i++)
        add_test(&list, duration_formats, &formatted_durations[i],
                 "duration_formats %" PRId64 " as '%s'", formatted_durations[i].value,
                 formatted_durations[i].text);
    ADD_SINGLE(&list, parse_without_why_buffer_still_reports_the_error);
    ADD_SINGLE(&list, long_message_is_cut_to_the_buffer);
    ADD_SINGLE(&list, long_unit_is_reported_without_overflow);
    ADD_SINGLE(&list, format_respects_small_and_empty_buffers);
    ADD_SINGLE(&list, formatted_duration_parses_back);

    int failed = _cmocka_run_group_tests("units", list.tests, list.count, NULL, NULL);
    for (size_t i = 0; i < list.count; i++)
        free(list.names[i]);
    free(list.names);
    free(list.tests);
    return failed;
}
