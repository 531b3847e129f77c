/*
 * chain.c: the records of deleted backups and the check of a side's chain
 * of backups (chain.h).
 */
#include "archive/chain.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "core/fsutil.h"
#include "core/log.h"

#define CHAIN_FORMAT 1

void chain_record_for(const struct manifest *manifest, const char *id, const char *reason,
                      time_t at, struct chain_record *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->database, sizeof out->database, "%s", manifest->database);
    snprintf(out->backup, sizeof out->backup, "%s", id);
    /* What the backup hashed to when it was deleted, recomputed: a link to
     * it must agree with its content, not with what its manifest claims. */
    manifest_chain_hash(manifest, out->chain_sha256);
    out->at = at;
    snprintf(out->reason, sizeof out->reason, "%s", reason);
}

int chain_record_to_json(const struct chain_record *record, char **json, struct error *err)
{
    char at[21];
    manifest_format_time(record->at, at);
    json_t *root = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s}", "format", CHAIN_FORMAT, "database",
                             record->database, "backup", record->backup, "chain_sha256",
                             record->chain_sha256, "at", at, "reason", record->reason);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text)
        return error_set(err, -ENOMEM, "record of deleted backup %s: cannot encode",
                         record->backup);
    size_t length = strlen(text);
    *json = realloc(text, length + 2);
    if (!*json) {
        free(text);
        return error_set(err, -ENOMEM, "out of memory");
    }
    (*json)[length] = '\n';
    (*json)[length + 1] = '\0';
    return 0;
}

static bool chain_is_sha256(const char *text)
{
    size_t i;
    for (i = 0; text[i]; i++)
        if (!isxdigit((unsigned char)text[i]) || isupper((unsigned char)text[i]))
            return false;
    return i == ARCHIVE_SHA256_HEX - 1;
}

int chain_record_from_json(const char *json, size_t size, struct chain_record *record,
                           struct error *err)
{
    json_error_t problem;
    const char *database = NULL, *backup = NULL, *hash = NULL, *at = NULL, *reason = NULL;
    int format = 0;
    memset(record, 0, sizeof *record);
    json_t *root = json_loadb(json, size, JSON_REJECT_DUPLICATES, &problem);
    if (!root)
        return error_set(err, -EINVAL, "invalid JSON at line %d: %s", problem.line, problem.text);
    int rc = json_unpack(root, "{s:i, s:s, s:s, s:s, s:s, s:s}", "format", &format, "database",
                         &database, "backup", &backup, "chain_sha256", &hash, "at", &at, "reason",
                         &reason);
    time_t stamp, when = 0;
    if (rc != 0 || format != CHAIN_FORMAT || manifest_parse_time(at, &when) != 0 ||
        strlen(database) >= sizeof record->database || manifest_parse_stamp(backup, &stamp) != 0 ||
        !chain_is_sha256(hash) || strlen(reason) >= sizeof record->reason) {
        json_decref(root);
        return error_set(err, -EINVAL,
                         "not a record of a deleted backup (format %d: database, backup, "
                         "chain_sha256, at, reason)",
                         CHAIN_FORMAT);
    }
    snprintf(record->database, sizeof record->database, "%s", database);
    snprintf(record->backup, sizeof record->backup, "%s", backup);
    snprintf(record->chain_sha256, sizeof record->chain_sha256, "%s", hash);
    snprintf(record->reason, sizeof record->reason, "%s", reason);
    record->at = when;
    json_decref(root);
    return 0;
}

void chain_record_name(const char *database, const char *backup, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%s-%s.json", CHAIN_RECORD_DIRECTORY, database, backup);
}

static int chain_local_path(const struct database_config *db, const char *backup, char *out,
                            size_t out_size, struct error *err)
{
    char directory[4096], name[512];
    if (catalog_directory(db, directory, sizeof directory) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", db->name);
    if (!backup) {
        snprintf(out, out_size, "%s/%s", directory, CHAIN_RECORD_DIRECTORY);
        return 0;
    }
    chain_record_name(db->name, backup, name, sizeof name);
    if (fs_join(out, out_size, directory, name) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", db->name);
    return 0;
}

int chain_write_local(const struct database_config *db, const struct chain_record *record,
                      struct error *err)
{
    char directory[4200], path[4700], *json = NULL;
    int rc = chain_local_path(db, NULL, directory, sizeof directory, err);
    if (rc == 0)
        rc = chain_local_path(db, record->backup, path, sizeof path, err);
    if (rc == 0)
        rc = fs_make_directories(directory, 0700, err);
    if (rc == 0)
        rc = chain_record_to_json(record, &json, err);
    if (rc == 0)
        rc = fs_write_file_atomically(path, json, strlen(json), 0600, err);
    free(json);
    return rc;
}

int chain_delete_local(const struct database_config *db, const struct chain_record *record,
                       struct error *err)
{
    char path[4700];
    int rc = chain_local_path(db, record->backup, path, sizeof path, err);
    if (rc == 0 && unlink(path) != 0 && errno != ENOENT)
        rc = error_set(err, -errno, "cannot remove %s: %s", path, strerror(errno));
    return rc;
}

int chain_list_local(const struct database_config *db, struct chain_record **records,
                     size_t *count, struct error *err)
{
    char directory[4200];
    size_t capacity = 0;
    *records = NULL;
    *count = 0;
    int rc = chain_local_path(db, NULL, directory, sizeof directory, err);
    if (rc != 0)
        return rc;
    DIR *dir = opendir(directory);
    if (!dir)
        return errno == ENOENT ? 0
                               : error_set(err, -errno, "cannot read %s: %s", directory,
                                           strerror(errno));
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        char path[4500], *text = NULL, id[32];
        size_t size = 0;
        time_t created;
        struct error problem = {0};
        if (catalog_parse_archive_name(db->name, entry->d_name, id, &created) == 0 ||
            entry->d_name[0] == '.')
            continue; /* records are NAME-STAMP.json, which is no archive's name */
        if (fs_join(path, sizeof path, directory, entry->d_name) != 0)
            continue;
        if (*count == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            struct chain_record *grown = realloc(*records, capacity * sizeof *grown);
            if (!grown) {
                rc = error_set(err, -ENOMEM, "out of memory");
                break;
            }
            *records = grown;
        }
        if (fs_read_file(path, &text, &size, &problem) == 0 &&
            chain_record_from_json(text, size, &(*records)[*count], &problem) == 0)
            (*count)++;
        else
            log_event(LOG_WARNING, db->name, NULL, "ignoring %s: %s", path, problem.message);
        free(text);
    }
    closedir(dir);
    if (rc != 0) {
        free(*records);
        *records = NULL;
        *count = 0;
    }
    return rc;
}

static const struct chain_member *chain_find_member(const struct chain_member *members,
                                                    size_t count, const char *id)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(members[i].id, id) == 0)
            return &members[i];
    return NULL;
}

static const struct chain_record *chain_find_record(const struct chain_record *records,
                                                    size_t count, const char *id)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(records[i].backup, id) == 0)
            return &records[i];
    return NULL;
}

size_t chain_check(const struct chain_member *members, size_t count,
                   const struct chain_record *records, size_t record_count,
                   chain_problem_fn problem, void *context)
{
    char message[1024], own[ARCHIVE_SHA256_HEX], theirs[ARCHIVE_SHA256_HEX];
    size_t problems = 0;
    for (size_t i = 0; i < count; i++) {
        const struct manifest *m = members[i].manifest;
        manifest_chain_hash(m, own);
        if (m->chain_sha256[0] && strcmp(own, m->chain_sha256) != 0) {
            snprintf(message, sizeof message,
                     "manifest of backup %s was altered after it was written: its fields hash "
                     "to %.12s..., it records %.12s...",
                     members[i].id, own, m->chain_sha256);
            problem(context, members[i].object, message);
            problems++;
        }
        if (!m->previous_backup[0])
            continue; /* the first of a chain, or written before chains */
        const struct chain_member *before = chain_find_member(members, count, m->previous_backup);
        const struct chain_record *record =
            chain_find_record(records, record_count, m->previous_backup);
        if (before) {
            manifest_chain_hash(before->manifest, theirs);
            if (strcmp(theirs, m->previous_sha256) == 0)
                continue;
            snprintf(message, sizeof message,
                     "backup %s is not the one backup %s follows: its manifest hashes to "
                     "%.12s..., %s records %.12s... (altered or replaced)",
                     before->id, members[i].id, theirs, members[i].id, m->previous_sha256);
            problem(context, before->object, message);
        } else if (record && strcmp(record->chain_sha256, m->previous_sha256) == 0) {
            continue;
        } else if (record) {
            snprintf(message, sizeof message,
                     "backup %s, which backup %s follows, is recorded as deleted (%s) with chain "
                     "hash %.12s..., not %.12s...",
                     m->previous_backup, members[i].id, record->reason, record->chain_sha256,
                     m->previous_sha256);
            problem(context, members[i].object, message);
        } else {
            snprintf(message, sizeof message,
                     "backup %s is missing: backup %s follows it, and no record says sqlprodd "
                     "deleted it (deleted behind sqlprodd's back, or lost)",
                     m->previous_backup, members[i].id);
            problem(context, members[i].object, message);
        }
        problems++;
    }
    return problems;
}
