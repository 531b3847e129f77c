/*
 * config_internal.h: shared between the files that make up the config
 * parser (config.c, config_database.c, config_values.c). Nothing outside
 * them includes this: the rest of sqlprodd sees only config.h.
 */
#ifndef SQLPRODD_CONFIG_INTERNAL_H
#define SQLPRODD_CONFIG_INTERNAL_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Long enough for "databases.some-long-name.backup.keep.monthly". */
#define CONFIG_KEY_SIZE 320

/* One mistake, kept with where it was found so that all of them can be put
 * in file order at the end, whatever order the checks ran in. */
struct config_mistake {
    char *line; /* "FILE:LINE: key: what is wrong" */
    char *file; /* source file of the setting, for ordering */
    int line_number;
    size_t sequence; /* ties keep the order of discovery */
};

/* The state of one config_load() run. */
struct config_reader {
    const char *file;      /* the path given to config_load() */
    const char *directory; /* its directory, where @include paths start */
    struct config_mistake *mistakes;
    size_t mistake_count;
    size_t mistake_capacity;
    bool out_of_memory;
};

/* What reading one optional key found. */
enum config_value_result {
    CONFIG_VALUE_INVALID = -1, /* present but wrong: already reported */
    CONFIG_VALUE_ABSENT = 0,
    CONFIG_VALUE_SET = 1,
};

/* Records "FILE:LINE: key: message" for `where` (its own line and file). */
/* An @include'd file's name as the operator can open it: libconfig keeps
 * it as written, relative to the config's directory. Caller frees. */
char *config_source_name(const struct config_reader *reader, const char *file);

void config_report(struct config_reader *reader, const config_setting_t *where, const char *key,
                   const char *format, ...) __attribute__((format(printf, 4, 5)));

/* Records where the member `name` of `group` was written (when present)
 * into *origin, replacing what it held. */
void config_origin_record(struct config_reader *reader, const config_setting_t *group,
                          const char *name, bool in_defaults, struct config_origin *origin);

/* "parent.name", or "name" when parent is empty. */
void config_key_join(char *out, size_t out_size, const char *parent, const char *name);

/* "a string", "an integer", "a group { }", ... for "got ..." messages. */
const char *config_type_phrase(const config_setting_t *setting);

/* The candidate nearest to `word` when it is a plausible typo (edit
 * distance at most 2), else NULL. */
const char *config_closest(const char *word, const char *const *candidates, size_t count);

/* [A-Za-z0-9_.-]+ and not "." or "..": database and target names become
 * directory names and S3 key prefixes. */
bool config_name_is_usable(const char *name);

/* A key that is valid elsewhere, and where it goes: "it belongs in
 * backup = { ... }". */
struct config_misplaced_key {
    const char *name;
    const char *hint;
};

/* Reports every member of `group` whose name is not in the NULL-terminated
 * `known` list, with a hint when it is in `misplaced` (may be NULL; ends
 * with a NULL name) or a suggestion when it looks like a typo. */
void config_check_keys(struct config_reader *reader, const config_setting_t *group,
                       const char *group_key, const char *const *known,
                       const struct config_misplaced_key *misplaced);

/*
 * Typed readers for an optional member `name` of `group`. Each reports a
 * wrong type or a bad value itself, leaves *out untouched unless it returns
 * CONFIG_VALUE_SET, and (for strings) replaces and frees the old *out.
 */
enum config_value_result config_value_string(struct config_reader *reader,
                                             const config_setting_t *group, const char *group_key,
                                             const char *name, char **out);
enum config_value_result config_value_path(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           const char *name, char **out);
enum config_value_result config_value_bool(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           const char *name, bool *out);
enum config_value_result config_value_int(struct config_reader *reader,
                                          const config_setting_t *group, const char *group_key,
                                          const char *name, int minimum, int maximum, int *out);
enum config_value_result config_value_ratio(struct config_reader *reader,
                                            const config_setting_t *group, const char *group_key,
                                            const char *name, double *out);
enum config_value_result config_value_size(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           const char *name, int64_t *out);
enum config_value_result config_value_duration(struct config_reader *reader,
                                               const config_setting_t *group, const char *group_key,
                                               const char *name, int64_t *out);
/* The index into the NULL-terminated `choices` of the value written. */
enum config_value_result config_value_choice(struct config_reader *reader,
                                             const config_setting_t *group, const char *group_key,
                                             const char *name, const char *const *choices,
                                             int *out);
/* Reads `every`, `cron` and `enabled` of a job group into *schedule and
 * *enabled, as an override of what they held. */
void config_value_schedule(struct config_reader *reader, const config_setting_t *group,
                           const char *group_key, struct schedule *schedule, bool *enabled);

/* Reads the job groups and the defaults merge: config_database.c. The
 * targets must already be in `config` (upload.target is checked against
 * them). Returns 0 or -ENOMEM. */
int config_read_databases(struct config_reader *reader, const config_setting_t *root,
                          struct config *config);

/* Frees the strings of one database entry (not the struct itself). */
void config_database_release(struct database_config *database);

#endif
