/*
 * config_values.c: reading one typed value out of a libconfig setting and
 * saying precisely what is wrong with it, for the config parser.
 *
 * This is where the wording of sqlprodd.conf's error messages lives (the
 * "expected ..., got ..." and "did you mean ...?" lines an operator reads).
 * It knows nothing about which keys exist where: that is config.c and
 * config_database.c.
 */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/units.h"
#include "policy/schedule.h"

void config_key_join(char *out, size_t out_size, const char *parent, const char *name)
{
    if (parent && parent[0])
        snprintf(out, out_size, "%s.%s", parent, name);
    else
        snprintf(out, out_size, "%s", name);
}

const char *config_type_phrase(const config_setting_t *setting)
{
    switch (config_setting_type(setting)) {
    case CONFIG_TYPE_GROUP: return "a group { ... }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a decimal number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "true/false";
    case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
    case CONFIG_TYPE_LIST: return "a list ( ... )";
    default: return "nothing";
    }
}

static int fold(char c)
{
    return tolower((unsigned char)c);
}

/* Optimal string alignment distance (Levenshtein plus transpositions),
 * case-insensitive: "evry", "Every" and "evrey" all find "every". */
static size_t edit_distance(const char *a, const char *b)
{
    enum { LONGEST = 48 };
    size_t a_length = strlen(a), b_length = strlen(b);
    if (a_length > LONGEST || b_length > LONGEST)
        return SIZE_MAX;
    size_t table[LONGEST + 1][LONGEST + 1];
    for (size_t i = 0; i <= a_length; i++)
        table[i][0] = i;
    for (size_t j = 0; j <= b_length; j++)
        table[0][j] = j;
    for (size_t i = 1; i <= a_length; i++) {
        for (size_t j = 1; j <= b_length; j++) {
            size_t cost = fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1;
            size_t best = table[i - 1][j] + 1;
            if (table[i][j - 1] + 1 < best)
                best = table[i][j - 1] + 1;
            if (table[i - 1][j - 1] + cost < best)
                best = table[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && fold(a[i - 1]) == fold(b[j - 2]) &&
                fold(a[i - 2]) == fold(b[j - 1]) && table[i - 2][j - 2] + 1 < best)
                best = table[i - 2][j - 2] + 1;
            table[i][j] = best;
        }
    }
    return table[a_length][b_length];
}

const char *config_closest(const char *word, const char *const *candidates, size_t count)
{
    const char *best = NULL;
    size_t best_distance = 3;
    for (size_t i = 0; i < count; i++) {
        size_t distance = edit_distance(word, candidates[i]);
        /* Two edits turn any two-letter word into any other: a suggestion
         * must keep at least part of what was written. */
        if (distance < best_distance && distance < strlen(word)) {
            best = candidates[i];
            best_distance = distance;
        }
    }
    return best;
}

bool config_name_is_usable(const char *name)
{
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
           strlen(name);
}

static size_t list_length(const char *const *list)
{
    size_t count = 0;
    while (list && list[count])
        count++;
    return count;
}

static bool list_contains(const char *const *list, const char *word)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], word) == 0)
            return true;
    return false;
}

/* "a, b, c" into out. */
static void list_render(const char *const *list, const char *quote, const char *last_separator,
                        char *out, size_t out_size)
{
    size_t count = list_length(list), used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count && used < out_size; i++) {
        const char *separator = i == 0 ? "" : i + 1 == count ? last_separator : ", ";
        int written =
            snprintf(out + used, out_size - used, "%s%s%s%s", separator, quote, list[i], quote);
        if (written < 0)
            break;
        used += (size_t)written;
    }
}

void config_check_keys(struct config_reader *reader, const config_setting_t *group,
                       const char *group_key, const char *const *known,
                       const struct config_misplaced_key *misplaced)
{
    int count = config_setting_length(group);
    for (int i = 0; i < count; i++) {
        const config_setting_t *member = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(member);
        if (!name || list_contains(known, name))
            continue;
        char key[CONFIG_KEY_SIZE];
        config_key_join(key, sizeof key, group_key, name);
        const char *hint = NULL;
        for (size_t j = 0; misplaced && misplaced[j].name; j++)
            if (strcmp(misplaced[j].name, name) == 0)
                hint = misplaced[j].hint;
        if (hint) {
            config_report(reader, member, key, "unknown key '%s' here (%s)", name, hint);
            continue;
        }
        const char *suggestion = config_closest(name, known, list_length(known));
        if (suggestion) {
            config_report(reader, member, key, "unknown key '%s' (did you mean '%s'?)", name,
                          suggestion);
        } else {
            char choices[512];
            list_render(known, "", ", ", choices, sizeof choices);
            config_report(reader, member, key, "unknown key '%s' (known keys here: %s)", name,
                          choices);
        }
    }
}

/* Finds `name` in `group` and checks its type; NULL when absent or of the
 * wrong type (then *result says which). `expected` completes "expected ...". */
static const config_setting_t *member_of_type(struct config_reader *reader,
                                              const config_setting_t *group, const char *group_key,
                                              const char *name, const int *types,
                                              const char *expected,
                                              enum config_value_result *result)
{
    const config_setting_t *member = config_setting_get_member(group, name);
    if (!member) {
        *result = CONFIG_VALUE_ABSENT;
        return NULL;
    }
    for (size_t i = 0; types[i] != CONFIG_TYPE_NONE; i++) {
        if (config_setting_type(member) == types[i]) {
            *result = CONFIG_VALUE_SET;
            return member;
        }
    }
    char key[CONFIG_KEY_SIZE];
    config_key_join(key, sizeof key, group_key, name);
    /* `enabled = "false"` and `level = "6"` are common; say what to do. */
    const char *hint = "";
    if (config_setting_type(member) == CONFIG_TYPE_STRING) {
        const char *text = config_setting_get_string(member);
        char *end = NULL;
        strtod(text, &end);
        bool numeric = text[0] && end && *end == '\0';
        bool boolean = strcasecmp(text, "true") == 0 || strcasecmp(text, "false") == 0;
        if ((numeric && types[0] == CONFIG_TYPE_INT) || (boolean && types[0] == CONFIG_TYPE_BOOL))
            hint = " (write it without quotes)";
    }
    config_report(reader, member, key, "expected %s, got %s%s", expected,
                  config_type_phrase(member), hint);
    *result = CONFIG_VALUE_INVALID;
    return NULL;
}

static const int string_types[] = {CONFIG_TYPE_STRING, CONFIG_TYPE_NONE};
static const int integer_types[] = {CONFIG_TYPE_INT, CONFIG_TYPE_INT64, CONFIG_TYPE_NONE};
static const int number_types[] = {CONFIG_TYPE_INT, CONFIG_TYPE_INT64, CONFIG_TYPE_FLOAT,
                                   CONFIG_TYPE_NONE};
static const int bool_types[] = {CONFIG_TYPE_BOOL, CONFIG_TYPE_NONE};

/* Reports a string that holds a NUL, which libconfig hands back cut short. */
static bool string_is_cut(struct config_reader *reader, const config_setting_t *member,
                          const char *key)
{
    if (!config_literal_fault(reader, member, CONFIG_LITERAL_NUL))
        return false;
    config_report(reader, member, key,
                  "contains a NUL character (\\x00 or a zero byte), which would silently cut the "
                  "value short");
    return true;
}

/* The string at `member` when it is whole and at most `maximum` bytes;
 * NULL after reporting it otherwise. */
static const char *string_within(struct config_reader *reader, const config_setting_t *member,
                                 const char *group_key, const char *name, size_t maximum)
{
    char key[CONFIG_KEY_SIZE];
    config_key_join(key, sizeof key, group_key, name);
    if (string_is_cut(reader, member, key))
        return NULL;
    const char *text = config_setting_get_string(member);
    size_t length = strlen(text);
    if (length > maximum) {
        config_report(reader, member, key, "too long (%zu characters, at most %zu)", length,
                      maximum);
        return NULL;
    }
    return text;
}

/* Replaces *out with a copy of text. */
static enum config_value_result store_copy(struct config_reader *reader, const char *text,
                                           char **out)
{
    char *copy = strdup(text);
    if (!copy) {
        reader->out_of_memory = true;
        return CONFIG_VALUE_INVALID;
    }
    free(*out);
    *out = copy;
    return CONFIG_VALUE_SET;
}

enum config_value_result config_value_string(struct config_reader *reader,
                                             const config_setting_t *group, const char *group_key,
                                             const char *name, char **out)
{
    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, name, string_types, "a string", &result);
    if (!member)
        return result;
    const char *text = string_within(reader, member, group_key, name, CONFIG_STRING_MAXIMUM);
    if (!text)
        return CONFIG_VALUE_INVALID;
    return store_copy(reader, text, out);
}

enum config_value_result config_value_path(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           const char *name, char **out)
{
    enum config_value_result result;
    const config_setting_t *member = member_of_type(reader, group, group_key, name, string_types,
                                                    "a string (an absolute path)", &result);
    if (!member)
        return result;
    const char *text = string_within(reader, member, group_key, name, CONFIG_PATH_MAXIMUM);
    if (!text)
        return CONFIG_VALUE_INVALID;
    /* The agent runs from / under systemd: a relative path would silently
     * mean something else than it does in the operator's shell. */
    if (text[0] != '/') {
        char key[CONFIG_KEY_SIZE];
        config_key_join(key, sizeof key, group_key, name);
        config_report(reader, member, key, "must be an absolute path (starting with /), got \"%s\"",
                      text);
        return CONFIG_VALUE_INVALID;
    }
    return store_copy(reader, text, out);
}

enum config_value_result config_value_name(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           char **out)
{
    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, "name", string_types, "a string", &result);
    if (!member)
        return result;
    char key[CONFIG_KEY_SIZE];
    config_key_join(key, sizeof key, group_key, "name");
    if (string_is_cut(reader, member, key))
        return CONFIG_VALUE_INVALID;
    const char *name = config_setting_get_string(member);
    size_t length = strlen(name);
    /* Checked first: a long name would not fit the message below. */
    if (length > CONFIG_NAME_MAXIMUM) {
        config_report(reader, member, key,
                      "too long (%zu characters, at most %d): it becomes part of every log line, "
                      "directory and archive name of this entry",
                      length, CONFIG_NAME_MAXIMUM);
        return CONFIG_VALUE_INVALID;
    }
    if (!config_name_is_usable(name)) {
        config_report(reader, member, key,
                      "\"%s\" is not a usable name: use only letters, digits, '_', '.' and '-', "
                      "and not \".\" or \"..\" (it becomes a directory name)",
                      name);
        return CONFIG_VALUE_INVALID;
    }
    return store_copy(reader, name, out);
}

bool config_entry_is_group(struct config_reader *reader, const config_setting_t *entry,
                          const char *key, const char *shape)
{
    if (config_setting_type(entry) == CONFIG_TYPE_GROUP)
        return true;
    config_report(reader, entry, key, "expected a group %s, got %s", shape,
                  config_type_phrase(entry));
    return false;
}

void config_value_entry_name(struct config_reader *reader, const config_setting_t *entry,
                             const char *list, unsigned index, const char *purpose, char **out,
                             char *key, size_t key_size)
{
    snprintf(key, key_size, "%s[%u]", list, index);
    enum config_value_result result = config_value_name(reader, entry, key, out);
    if (result == CONFIG_VALUE_ABSENT)
        config_report(reader, entry, key, "missing 'name' (%s)", purpose);
    if (result == CONFIG_VALUE_SET)
        snprintf(key, key_size, "%s.%s", list, *out);
}

enum config_value_result config_value_bool(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           const char *name, bool *out)
{
    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, name, bool_types, "true or false", &result);
    if (member)
        *out = config_setting_get_bool(member) != 0;
    return result;
}

/* "must be between MIN and MAX, got TEXT"; an open range (no maximum but
 * INT_MAX) has no "between": say which end was crossed. */
static void int_report_range(struct config_reader *reader, const config_setting_t *member,
                             const char *group_key, const char *name, int minimum, int maximum,
                             bool above, const char *text)
{
    char key[CONFIG_KEY_SIZE];
    config_key_join(key, sizeof key, group_key, name);
    if (maximum != INT_MAX)
        config_report(reader, member, key, "must be between %d and %d, got %s", minimum, maximum,
                      text);
    else if (above)
        config_report(reader, member, key, "too large (at most %d), got %s", maximum, text);
    else
        config_report(reader, member, key, "must be %d or more, got %s", minimum, text);
}

enum config_value_result config_value_int(struct config_reader *reader,
                                          const config_setting_t *group, const char *group_key,
                                          const char *name, int minimum, int maximum, int *out)
{
    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, name, integer_types, "an integer", &result);
    if (!member)
        return result;
    /* libconfig 1.5 keeps 32 bits of 3000000000: the pre-scan kept the
     * digits as written. */
    const struct config_literal_site *site =
        config_literal_fault(reader, member, CONFIG_LITERAL_OUT_OF_RANGE);
    if (site) {
        int_report_range(reader, member, group_key, name, minimum, maximum, site->text[0] != '-',
                         site->text);
        return CONFIG_VALUE_INVALID;
    }
    long long value = config_setting_get_int64(member);
    if (value < minimum || value > maximum) {
        char text[32];
        snprintf(text, sizeof text, "%lld", value);
        int_report_range(reader, member, group_key, name, minimum, maximum, value > maximum,
                         text);
        return CONFIG_VALUE_INVALID;
    }
    *out = (int)value;
    return CONFIG_VALUE_SET;
}

enum config_value_result config_value_ratio(struct config_reader *reader,
                                            const config_setting_t *group, const char *group_key,
                                            const char *name, double *out)
{
    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, name, number_types, "a number like 0.2", &result);
    if (!member)
        return result;
    const struct config_literal_site *site =
        config_literal_fault(reader, member, CONFIG_LITERAL_OUT_OF_RANGE);
    if (site) {
        char key[CONFIG_KEY_SIZE];
        config_key_join(key, sizeof key, group_key, name);
        config_report(reader, member, key, "must be between 0 and 1, got %s", site->text);
        return CONFIG_VALUE_INVALID;
    }
    double value = config_setting_type(member) == CONFIG_TYPE_FLOAT
                       ? config_setting_get_float(member)
                       : (double)config_setting_get_int64(member);
    if (!(value >= 0.0 && value <= 1.0)) {
        char key[CONFIG_KEY_SIZE];
        config_key_join(key, sizeof key, group_key, name);
        config_report(reader, member, key, "must be between 0 and 1, got %g", value);
        return CONFIG_VALUE_INVALID;
    }
    *out = value;
    return CONFIG_VALUE_SET;
}

/* A quantity an operator writes as text with a unit ("100MB", "15m"):
 * parsed by `parse`, at most `maximum`, whose wording `limit` gives. */
struct quantity_kind {
    const char *example; /* "a string like \"15m\"" */
    const char *noun;    /* "size", "duration": "bad NOUN \"x\": why" */
    int (*parse)(const char *text, int64_t *out, char *why, size_t why_size);
};

static enum config_value_result quantity_read(struct config_reader *reader,
                                              const config_setting_t *group, const char *group_key,
                                              const char *name, const struct quantity_kind *kind,
                                              int64_t maximum, const char *limit, int64_t *out)
{
    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, name, string_types, kind->example, &result);
    if (!member)
        return result;
    const char *text = string_within(reader, member, group_key, name, CONFIG_STRING_MAXIMUM);
    if (!text)
        return CONFIG_VALUE_INVALID;
    char why[256] = "";
    int64_t value;
    int rc = kind->parse(text, &value, why, sizeof why);
    if (rc != 0 || value > maximum) {
        char key[CONFIG_KEY_SIZE];
        config_key_join(key, sizeof key, group_key, name);
        if (rc == 0 || rc == -ERANGE)
            config_report(reader, member, key, "\"%s\" is too large (at most %s)", text, limit);
        else
            config_report(reader, member, key, "bad %s \"%s\": %s", kind->noun, text, why);
        return CONFIG_VALUE_INVALID;
    }
    *out = value;
    return CONFIG_VALUE_SET;
}

enum config_value_result config_value_size(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           const char *name, int64_t *out)
{
    static const struct quantity_kind size = {"a string like \"100MB\"", "size", units_parse_size};
    char limit[32];
    snprintf(limit, sizeof limit, "%lldTB", CONFIG_SIZE_MAXIMUM >> 40);
    return quantity_read(reader, group, group_key, name, &size, CONFIG_SIZE_MAXIMUM, limit, out);
}

enum config_value_result config_value_duration(struct config_reader *reader,
                                               const config_setting_t *group, const char *group_key,
                                               const char *name, int64_t maximum, int64_t *out)
{
    static const struct quantity_kind duration = {"a string like \"15m\"", "duration",
                                                  units_parse_duration};
    char limit[32];
    units_format_duration(maximum, limit, sizeof limit);
    return quantity_read(reader, group, group_key, name, &duration, maximum, limit, out);
}

enum config_value_result config_value_choice(struct config_reader *reader,
                                             const config_setting_t *group, const char *group_key,
                                             const char *name, const char *const *choices, int *out)
{
    char rendered[256];
    list_render(choices, "\"", " or ", rendered, sizeof rendered);
    char expected[300];
    snprintf(expected, sizeof expected, "%s", rendered);

    enum config_value_result result;
    const config_setting_t *member =
        member_of_type(reader, group, group_key, name, string_types, expected, &result);
    if (!member)
        return result;
    const char *text = string_within(reader, member, group_key, name, CONFIG_STRING_MAXIMUM);
    if (!text)
        return CONFIG_VALUE_INVALID;
    /* Case does not matter ("aes256", "INFO"); the canonical spelling of
     * the choice is what the caller stores. */
    for (int i = 0; choices[i]; i++) {
        if (strcasecmp(choices[i], text) == 0) {
            *out = i;
            return CONFIG_VALUE_SET;
        }
    }
    char key[CONFIG_KEY_SIZE];
    config_key_join(key, sizeof key, group_key, name);
    const char *suggestion = config_closest(text, choices, list_length(choices));
    if (suggestion)
        config_report(reader, member, key, "unknown value \"%s\" (did you mean \"%s\"?)", text,
                      suggestion);
    else
        config_report(reader, member, key, "unknown value \"%s\" (expected %s)", text, rendered);
    return CONFIG_VALUE_INVALID;
}

static void schedule_set_text(struct schedule *schedule, const char *text)
{
    snprintf(schedule->text, sizeof schedule->text, "%s", text);
}

void config_value_schedule(struct config_reader *reader, const config_setting_t *group,
                           const char *group_key, struct schedule *schedule, bool *enabled)
{
    bool has_every = config_setting_get_member(group, "every") != NULL;
    bool has_cron = config_setting_get_member(group, "cron") != NULL;
    if (has_every && has_cron) {
        /* Which one the operator meant is a guess we will not make. */
        config_report(reader, group, group_key, "both 'every' and 'cron' are set; keep one");
    }

    int64_t seconds;
    if (config_value_duration(reader, group, group_key, "every", CONFIG_INTERVAL_MAXIMUM,
                              &seconds) == CONFIG_VALUE_SET &&
        !has_cron) {
        memset(schedule, 0, sizeof *schedule);
        schedule->kind = SCHEDULE_EVERY;
        schedule->every_seconds = seconds;
        schedule_set_text(schedule,
                          config_setting_get_string(config_setting_get_member(group, "every")));
    }

    enum config_value_result result;
    const config_setting_t *cron = member_of_type(reader, group, group_key, "cron", string_types,
                                                  "a string like \"30 3 * * *\"", &result);
    const char *text =
        cron ? string_within(reader, cron, group_key, "cron", CONFIG_STRING_MAXIMUM) : NULL;
    if (text) {
        struct cron_expression expression;
        char why[256] = "";
        char key[CONFIG_KEY_SIZE];
        config_key_join(key, sizeof key, group_key, "cron");
        if (sched_parse_cron(text, &expression, why, sizeof why) != 0) {
            config_report(reader, cron, key, "bad cron expression \"%s\": %s", text, why);
        } else if (!sched_cron_can_fire(&expression, why, sizeof why)) {
            /* Otherwise the job is silently "not scheduled" for good. */
            config_report(reader, cron, key, "\"%s\" never fires: %s", text, why);
        } else if (!has_every) {
            memset(schedule, 0, sizeof *schedule);
            schedule->kind = SCHEDULE_CRON;
            memcpy(&schedule->cron, &expression, sizeof expression);
            schedule_set_text(schedule, text);
        }
    }

    config_value_bool(reader, group, group_key, "enabled", enabled);
}
