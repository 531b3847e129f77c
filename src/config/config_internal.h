/*
 * config_internal.h: shared between the files that make up the config
 * parser. From the top down: config.c (the file, the root keys, targets),
 * config_database.c (database entries), config_paths.c (no two keys on one
 * file), config_values.c (one typed value), config_scan.c (the pre-scan)
 * and config_report.c (mistakes and where they are). Calls point down only.
 * Nothing outside these files includes this: the rest of sqlprodd sees
 * only config.h.
 */
#ifndef SQLPRODD_CONFIG_INTERNAL_H
#define SQLPRODD_CONFIG_INTERNAL_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Long enough for "databases.some-long-name.backup.keep.monthly". */
#define CONFIG_KEY_SIZE 320

/*
 * Upper bounds, documented under LIMITS in sqlprodd.conf(5). Each one keeps
 * a mistake from turning into something worse later: a name that no longer
 * fits a log line or a file name, a schedule that overflows the clock, a
 * file that takes minutes to parse.
 */
/* Bytes in the config file and its included files together. */
#define CONFIG_FILE_MAXIMUM (4 * 1024 * 1024)
/* Bytes in one line, and in one quoted string (which may span lines).
 * libconfig's flex scanner rescans a token from its start each time it
 * refills its 8 KiB buffer, so parsing is quadratic in the longest token:
 * bounding every token keeps it linear in the size of the file. */
#define CONFIG_LINE_MAXIMUM    16384
#define CONFIG_LITERAL_MAXIMUM 16384
/* @include files within @include files, as deep as libconfig allows. */
#define CONFIG_INCLUDE_DEPTH_MAXIMUM 10
/* Characters in a database or target name: it is part of every log line,
 * archive name (NAME_MAX 255), manifest and S3 key of that entry. */
#define CONFIG_NAME_MAXIMUM 64
/* Characters in a path: the agent appends a name, an archive name and a
 * temporary suffix, and the result must stay below PATH_MAX (4096). */
#define CONFIG_PATH_MAXIMUM 3072
/* Characters in any other string value (an S3 key is at most 1024). */
#define CONFIG_STRING_MAXIMUM 1024
/* Seconds in a schedule interval (`every`, `integrity_every`): a job that
 * runs less than once a year is a typo, and the sum last run + interval
 * must stay far from overflow. */
#define CONFIG_INTERVAL_MAXIMUM (366LL * 86400)
/* Seconds of `keep.within`: a hundred years of archives. */
#define CONFIG_RETENTION_MAXIMUM (36525LL * 86400)
/* Bytes in a size (`wal_warn`, `wal_crit`): 1 PiB. */
#define CONFIG_SIZE_MAXIMUM (1024LL * 1024 * 1024 * 1024 * 1024)

/* One mistake, kept with where it was found so that all of them can be put
 * in file order at the end, whatever order the checks ran in. */
struct config_mistake {
    char *line; /* "FILE:LINE: key: what is wrong" */
    char *file; /* source file of the setting, for ordering */
    int line_number;
    size_t sequence; /* ties keep the order of discovery */
};

/* A literal that libconfig would hand back as another value than the one
 * written, found by the pre-scan; the reader of that value reports it with
 * its key. libconfig cuts a string at a NUL character ("\x00" or the byte
 * itself), and libconfig 1.5 keeps only the low 32 bits of an integer
 * written without L (3000000000 reads as -1294967296). */
enum config_literal_fault {
    CONFIG_LITERAL_NUL,
    CONFIG_LITERAL_OUT_OF_RANGE,
};

struct config_literal_site {
    char *file; /* as config_source_name() spells it */
    int line;
    char *name; /* the setting's own name ("path"), "" when unknown */
    char *text; /* the integer as written, for OUT_OF_RANGE */
    enum config_literal_fault fault;
    bool reported;
};

/* The state of one config_load() run. */
struct config_reader {
    const char *file;      /* the path given to config_load() */
    const char *directory; /* its directory, where @include paths start */
    struct config_mistake *mistakes;
    size_t mistake_count;
    size_t mistake_capacity;
    struct config_literal_site *literal_sites;
    size_t literal_site_count;
    size_t scanned_bytes; /* by config_scan(), all files together */
    bool out_of_memory;
};

/* What reading one optional key found. */
enum config_value_result {
    CONFIG_VALUE_INVALID = -1, /* present but wrong: already reported */
    CONFIG_VALUE_ABSENT = 0,
    CONFIG_VALUE_SET = 1,
};

/* config_report.c: where settings come from, and the mistakes found. */

/* An @include'd file's name as the operator can open it: libconfig keeps
 * it as written, relative to the config's directory. Caller frees. */
char *config_source_name(const struct config_reader *reader, const char *file);

/* Records "FILE:LINE: key: message" for `where` (its own line and file). */
void config_report(struct config_reader *reader, const config_setting_t *where, const char *key,
                   const char *format, ...) __attribute__((format(printf, 4, 5)));

/* The same for a place found before libconfig parsed the file: "FILE:LINE:
 * message" (key NULL) or "FILE:LINE: key: message". */
void config_report_at(struct config_reader *reader, const char *file, int line, const char *key,
                      const char *format, ...) __attribute__((format(printf, 5, 6)));

/* Records where the member `name` of `group` was written (when present)
 * into *origin, replacing what it held. */
void config_origin_record(struct config_reader *reader, const config_setting_t *group,
                          const char *name, bool in_defaults, struct config_origin *origin);

/* Orders diagnostics: the main file first, then included files, each in
 * line order, ties in the order of discovery (a qsort_r comparison). */
int config_compare_locations(const char *file_a, int line_a, size_t sequence_a, const char *file_b,
                             int line_b, size_t sequence_b, const char *main_file);

/*
 * The linear pre-scan of config_scan.c, run before libconfig reads `path`:
 * checks the size of the file and its @include files (CONFIG_FILE_MAXIMUM),
 * the length of every line and quoted string, and that every @include
 * names a regular file that can be opened, reporting each fault as
 * FILE:LINE. Notes literals libconfig would misread in reader->literal_sites.
 * Returns 0 (then reader->mistake_count says whether to parse) or -ENOMEM.
 */
int config_scan(struct config_reader *reader, const char *path, const char *include_directory);

/* The site of `fault` at the setting `member` (same file, line and name),
 * marked reported; NULL when there is none. */
const struct config_literal_site *config_literal_fault(struct config_reader *reader,
                                                       const config_setting_t *member,
                                                       enum config_literal_fault fault);

/* Reports the sites no value reader claimed (with the setting's own name
 * as key, as the full key is not known there) when `report`; frees them. */
void config_literal_sites_finish(struct config_reader *reader, bool report);

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

/* Reads `name` of an entry (a database or a target): a usable name of at
 * most CONFIG_NAME_MAXIMUM characters, reported otherwise. */
enum config_value_result config_value_name(struct config_reader *reader,
                                           const config_setting_t *group, const char *group_key,
                                           char **out);

/* config_query.c: fills config->database_order (names are unique by
 * then). 0 or -ENOMEM. */
int config_order_databases(struct config *config);

/* FNV-1a of `size` bytes from `seed`, for the hash tables over thousands
 * of databases (config_database.c, config_paths.c). */
size_t config_hash_bytes(const void *data, size_t size, size_t seed);

/* config_glob.c: database entries by pattern (struct config_glob). */
struct config_glob_match {
    char *path;
    char *name;
};

/* Reads `glob` and `name` (the name template, default "%stem") of the
 * entry at `key` into *glob and *template, reporting each mistake; false
 * when the entry cannot be used. */
bool config_glob_read(struct config_reader *reader, const config_setting_t *entry,
                      const char *key, struct config_glob *glob, char **template);

/* The files the pattern matches now, sorted by path, each with its name;
 * matches that give no database are noted in glob->skipped. 0 or -ENOMEM.
 * The caller frees each match's strings and the array. */
int config_glob_find(struct config_glob *glob, const char *template,
                     struct config_glob_match **matches, size_t *count);

/* Notes "PATH: why" in glob->skipped. 0 or -ENOMEM. */
int config_glob_skip(struct config_glob *glob, const char *path, const char *why);

void config_glob_release(struct config_glob *glob);

/* Whether an entry of a list is a group; reports "expected a group SHAPE,
 * got ..." at KEY when it is not. */
bool config_entry_is_group(struct config_reader *reader, const config_setting_t *entry,
                          const char *key, const char *shape);

/* The name of entry number `index` of a list ("databases", "targets"), and
 * the key its messages use: "LIST.NAME" when the name is usable, else
 * "LIST[INDEX]" so that messages still point somewhere. `purpose` says what
 * the name is for when it is missing. */
void config_value_entry_name(struct config_reader *reader, const config_setting_t *entry,
                             const char *list, unsigned index, const char *purpose, char **out,
                             char *key, size_t key_size);

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
/* A duration of at most `maximum` seconds. */
enum config_value_result config_value_duration(struct config_reader *reader,
                                               const config_setting_t *group, const char *group_key,
                                               const char *name, int64_t maximum, int64_t *out);
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

/* config_encrypt.c: `encrypt = { ... }` over the inherited settings, and
 * the deep copy and release of those settings. */
void config_read_encrypt(struct config_reader *reader, const config_setting_t *parent,
                         const char *parent_key, struct encrypt_settings *encrypt, bool *enabled);
int config_encrypt_copy(struct encrypt_settings *to, const struct encrypt_settings *from);
void config_encrypt_release(struct encrypt_settings *encrypt);

/* Frees the strings of one database entry (not the struct itself). */
void config_database_release(struct database_config *database);

#endif
