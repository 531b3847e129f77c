/*
 * config_glob.c: database entries by pattern, for a directory of
 * per-tenant databases:
 *
 *     { glob = "/srv/tenants/tenant-*.db"; name = "%stem"; backup = { ... }; }
 *
 * gives one database per matching file, with the entry's settings. Here:
 * the pattern and the name template are read and checked, and the files
 * are found. A match gives no database, and is noted in the glob's
 * `skipped` list instead (the agent logs it, `check` prints it), when it
 * is not a regular file, does not start like an SQLite database, makes a
 * name that is not usable, or names a file or a name an entry already has:
 * a written entry always wins over a pattern, and the first pattern over
 * a later one, so a new file can never take the name (and so the backups)
 * of a database that was there before. Files that belong to a database
 * (-wal, -shm, -journal, sqlprodd's temp and set-aside files) are left out
 * without a note. Not for the entry's settings (config_database.c) or for
 * watching the directory (agent/discovery.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_internal.h"
#include "core/fsutil.h"

#define GLOB_DEFAULT_NAME "%stem"

static bool has_wildcard(const char *text, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (text[i] == '*' || text[i] == '?' || text[i] == '[' || text[i] == '\\')
            return true;
    return false;
}

/* "%stem" (the file name without its last extension), "%file" (the whole
 * file name), "%%"; false for anything else after a '%'. */
static bool template_expand(const char *template, const char *file, char *out, size_t out_size,
                            bool *names_file)
{
    size_t used = 0;
    const char *dot = strrchr(file, '.');
    size_t stem = dot && dot != file ? (size_t)(dot - file) : strlen(file);
    *names_file = false;
    out[0] = '\0';
    for (const char *c = template; *c; c++) {
        const char *piece = c;
        size_t length = 1;
        if (*c == '%') {
            if (strncmp(c, "%stem", 5) == 0) {
                piece = file, length = stem, c += 4, *names_file = true;
            } else if (strncmp(c, "%file", 5) == 0) {
                piece = file, length = strlen(file), c += 4, *names_file = true;
            } else if (c[1] == '%') {
                c++;
            } else {
                return false;
            }
        }
        if (used + length >= out_size)
            length = out_size - 1 - used; /* a long name is refused by its length */
        memcpy(out + used, piece, length);
        used += length;
        out[used] = '\0';
    }
    return true;
}

bool config_glob_read(struct config_reader *reader, const config_setting_t *entry,
                      const char *key, struct config_glob *glob, char **template)
{
    char *pattern = NULL;
    char member_key[CONFIG_KEY_SIZE];
    config_key_join(member_key, sizeof member_key, key, "glob");
    if (config_value_path(reader, entry, key, "glob", &pattern) != CONFIG_VALUE_SET)
        return false;
    const config_setting_t *where = config_setting_get_member(entry, "glob");
    const char *slash = strrchr(pattern, '/');
    const char *file = slash + 1;
    bool usable = true;
    if (has_wildcard(pattern, (size_t)(slash - pattern))) {
        config_report(reader, where, member_key,
                      "\"%s\": wildcards may only be in the file name, not in the directory "
                      "(one directory is watched for new databases)",
                      pattern);
        usable = false;
    } else if (!*file || strcmp(file, ".") == 0 || strcmp(file, "..") == 0) {
        config_report(reader, where, member_key,
                      "\"%s\" names a directory: end it with the files' pattern, such as "
                      "\"%s%s*.db\"",
                      pattern, pattern, *file ? "/" : "");
        usable = false;
    }

    const config_setting_t *name = config_setting_get_member(entry, "name");
    const char *text = GLOB_DEFAULT_NAME;
    config_key_join(member_key, sizeof member_key, key, "name");
    if (name && config_setting_type(name) != CONFIG_TYPE_STRING) {
        config_report(reader, name, member_key, "expected a string such as \"%%stem\", got %s",
                      config_type_phrase(name));
        usable = false;
    } else if (name) {
        text = config_setting_get_string(name);
        char example[256];
        bool names_file = false;
        if (!template_expand(text, "tenant-1.db", example, sizeof example, &names_file)) {
            config_report(reader, name, member_key,
                          "\"%s\": a pattern's name may hold %%stem (the file name without its "
                          "extension), %%file (the whole file name) and %%%% only",
                          text);
            usable = false;
        } else if (!names_file) {
            config_report(reader, name, member_key,
                          "\"%s\" gives every file the same name: put %%stem or %%file in it",
                          text);
            usable = false;
        }
    }
    if (!usable) {
        free(pattern);
        return false;
    }
    *glob = (struct config_glob){.pattern = pattern,
                                 .directory = strndup(pattern, (size_t)(slash - pattern)),
                                 .file_pattern = strdup(file),
                                 .line = config_setting_source_line(entry)};
    *template = strdup(text);
    if (!glob->directory || !glob->file_pattern || !*template) {
        reader->out_of_memory = true;
        return false;
    }
    if (!glob->directory[0]) { /* "/x*.db": the root directory */
        free(glob->directory);
        glob->directory = strdup("/");
    }
    return true;
}

/* Names of files that belong to a database or to sqlprodd, not databases. */
static bool belongs_to_a_database(const char *file)
{
    static const char *const endings[] = {"-wal", "-shm", "-journal", NULL};
    size_t length = strlen(file);
    for (size_t i = 0; endings[i]; i++) {
        size_t n = strlen(endings[i]);
        if (length > n && strcmp(file + length - n, endings[i]) == 0)
            return true;
    }
    return strstr(file, FS_TEMP_SUFFIX) || strstr(file, ".replaced-");
}

/* A regular file that is empty (a database not written yet) or starts
 * with SQLite's header; else why not. Opened without blocking and
 * without following a FIFO's writer. */
static const char *not_a_database(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return "gone, or a dangling symbolic link";
    if (!S_ISREG(st.st_mode))
        return "not a regular file";
    if (st.st_size == 0)
        return NULL;
    char header[16];
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return "cannot be read by the agent";
    ssize_t got = read(fd, header, sizeof header);
    close(fd);
    if (got != (ssize_t)sizeof header || memcmp(header, "SQLite format 3", 16) != 0)
        return "not an SQLite database (no SQLite header)";
    return NULL;
}

int config_glob_skip(struct config_glob *glob, const char *path, const char *why)
{
    char **grown = realloc(glob->skipped, (glob->skipped_count + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    glob->skipped = grown;
    if (asprintf(&glob->skipped[glob->skipped_count], "%s: %s", path, why) < 0)
        return -ENOMEM;
    glob->skipped_count++;
    return 0;
}

int config_glob_find(struct config_glob *pattern, const char *template,
                     struct config_glob_match **matches, size_t *count)
{
    glob_t found;
    *matches = NULL;
    *count = 0;
    int rc = glob(pattern->pattern, GLOB_ERR, NULL, &found);
    if (rc == GLOB_NOMATCH)
        return 0;
    if (rc == GLOB_NOSPACE)
        return -ENOMEM;
    if (rc != 0) /* GLOB_ABORTED: the directory cannot be read (yet) */
        return config_glob_skip(pattern, pattern->directory, "cannot be read: no database found there");
    *matches = calloc(found.gl_pathc ? found.gl_pathc : 1, sizeof **matches);
    if (!*matches) {
        globfree(&found);
        return -ENOMEM;
    }
    for (size_t i = 0; i < found.gl_pathc && rc == 0; i++) {
        const char *path = found.gl_pathv[i];
        const char *file = strrchr(path, '/') + 1;
        char name[CONFIG_NAME_MAXIMUM + 2];
        bool names_file;
        const char *why;
        if (belongs_to_a_database(file))
            continue;
        if ((why = not_a_database(path))) {
            rc = config_glob_skip(pattern, path, why);
            continue;
        }
        template_expand(template, file, name, sizeof name, &names_file);
        if (strlen(name) > CONFIG_NAME_MAXIMUM || !config_name_is_usable(name)) {
            char why_name[CONFIG_NAME_MAXIMUM + 200];
            snprintf(why_name, sizeof why_name,
                     "its name \"%.*s\" is not usable (letters, digits, '_', '.' and '-', at most "
                     "%d): rename the file, or give it an entry of its own",
                     CONFIG_NAME_MAXIMUM, name, CONFIG_NAME_MAXIMUM);
            rc = config_glob_skip(pattern, path, why_name);
            continue;
        }
        struct config_glob_match *match = &(*matches)[*count];
        match->path = strdup(path);
        match->name = strdup(name);
        if (!match->path || !match->name) {
            free(match->path);
            free(match->name);
            rc = -ENOMEM;
            break;
        }
        (*count)++;
    }
    globfree(&found);
    return rc;
}

void config_glob_release(struct config_glob *glob)
{
    free(glob->pattern);
    free(glob->directory);
    free(glob->file_pattern);
    for (size_t i = 0; i < glob->skipped_count; i++)
        free(glob->skipped[i]);
    free(glob->skipped);
    *glob = (struct config_glob){0};
}
