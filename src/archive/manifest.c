/*
 * manifest.c: the JSON manifest beside each archive, to and from text and
 * disk, and the UTC stamps used in archive names.
 *
 * Not for deciding when a manifest is written (the backup job writes it last,
 * which is what makes an archive a finished backup) nor for checking an
 * archive against it (restore does). Parsing is strict about the fields it
 * knows, since restore trusts them to build paths and verify checksums, and
 * ignores the ones it does not, so older versions read newer manifests.
 */
#include "archive/manifest.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"

#define MANIFEST_FORMAT 1

/* "2026-11-25T08:00:00Z": ISO 8601 for humans reading the JSON. */
void manifest_format_time(time_t t, char out[21])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        out[0] = '\0';
}

/* Builds a time from UTC fields, refusing fields out of range (month 13,
 * 30 February) by checking that timegm did not have to normalise them. */
static int manifest_make_time(int year, int month, int day, int hour, int minute, int second,
                              time_t *t)
{
    /* No backup predates 1970, and strftime's %Y does not pad years below
     * 1000, so such a time would be written back unreadable ("34-11-25T..."). */
    if (year < 1970)
        return -EINVAL;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    struct tm check = tm;
    time_t value = timegm(&check);
    if (check.tm_year != tm.tm_year || check.tm_mon != tm.tm_mon || check.tm_mday != tm.tm_mday ||
        check.tm_hour != tm.tm_hour || check.tm_min != tm.tm_min || check.tm_sec != tm.tm_sec)
        return -EINVAL;
    *t = value;
    return 0;
}

/* Parses fixed-width digits; the caller has checked they are digits. */
static int manifest_digits(const char *text, int count)
{
    int value = 0;
    for (int i = 0; i < count; i++)
        value = value * 10 + (text[i] - '0');
    return value;
}

/* Checks `text` against a pattern where 'd' is a digit and anything else is itself. */
static bool manifest_matches(const char *text, const char *pattern)
{
    size_t i;
    for (i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd' ? !isdigit((unsigned char)text[i]) : text[i] != pattern[i])
            return false;
    }
    return text[i] == '\0';
}

int manifest_parse_time(const char *text, time_t *t)
{
    if (!manifest_matches(text, "dddd-dd-ddTdd:dd:ddZ"))
        return -EINVAL;
    return manifest_make_time(manifest_digits(text, 4), manifest_digits(text + 5, 2),
                              manifest_digits(text + 8, 2), manifest_digits(text + 11, 2),
                              manifest_digits(text + 14, 2), manifest_digits(text + 17, 2), t);
}

void manifest_format_stamp(time_t t, char out[17])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) == 0)
        out[0] = '\0';
}

int manifest_parse_stamp(const char *text, time_t *t)
{
    if (!text || !manifest_matches(text, "ddddddddTddddddZ"))
        return -EINVAL;
    return manifest_make_time(manifest_digits(text, 4), manifest_digits(text + 4, 2),
                              manifest_digits(text + 6, 2), manifest_digits(text + 9, 2),
                              manifest_digits(text + 11, 2), manifest_digits(text + 13, 2), t);
}

#define MANIFEST_AGE_FORMAT "age-encryption.org/v1"

/* "encryption": {"format": ..., "recipients": [...]}, from the ", "-joined text. */
static int manifest_add_encryption(json_t *root, const struct manifest *manifest)
{
    json_t *recipients = json_array();
    json_t *encryption = json_object();
    char list[sizeof manifest->recipients], *save = NULL;
    snprintf(list, sizeof list, "%s", manifest->recipients);
    for (char *item = strtok_r(list, ", ", &save); item && recipients;
         item = strtok_r(NULL, ", ", &save))
        json_array_append_new(recipients, json_string(item));
    if (!recipients || !encryption) {
        json_decref(recipients);
        json_decref(encryption);
        return -ENOMEM;
    }
    json_object_set_new(encryption, "format", json_string(MANIFEST_AGE_FORMAT));
    json_object_set_new(encryption, "recipients", recipients);
    return json_object_set_new(root, "encryption", encryption);
}

/* The optional "encryption" object: only age v1 is known. */
static int manifest_take_encryption(json_t *root, struct manifest *manifest, struct error *err)
{
    json_t *encryption = json_object_get(root, "encryption");
    if (!encryption || json_is_null(encryption))
        return 0;
    json_t *format = json_object_get(encryption, "format");
    json_t *recipients = json_object_get(encryption, "recipients");
    if (!json_is_object(encryption) || !json_is_string(format) ||
        strcmp(json_string_value(format), MANIFEST_AGE_FORMAT) != 0)
        return error_set(err, -EINVAL,
                         "manifest: field \"encryption\" must be {\"format\": \"%s\", "
                         "\"recipients\": [...]}",
                         MANIFEST_AGE_FORMAT);
    manifest->encrypted = true;
    size_t used = 0, index;
    json_t *value;
    json_array_foreach(recipients, index, value)
    {
        if (!json_is_string(value))
            return error_set(err, -EINVAL, "manifest: encryption.recipients[%zu] is not a string",
                             index);
        int written = snprintf(manifest->recipients + used, sizeof manifest->recipients - used,
                               "%s%s", used ? ", " : "", json_string_value(value));
        if (written < 0 || (size_t)written >= sizeof manifest->recipients - used)
            return error_set(err, -EINVAL, "manifest: encryption.recipients is too long");
        used += (size_t)written;
    }
    return 0;
}

/* plain_sha256, "fingerprint" and "chain", each only when recorded. */
static int manifest_add_optional(json_t *root, const struct manifest *manifest)
{
    int rc = 0;
    if (manifest->plain_sha256[0])
        rc |= json_object_set_new(root, "plain_sha256", json_string(manifest->plain_sha256));
    if (manifest->rows_sha256[0])
        rc |= json_object_set_new(
            root, "fingerprint",
            json_pack("{s:I, s:I, s:s}", "tables", (json_int_t)manifest->table_count, "rows",
                      (json_int_t)manifest->row_count, "rows_sha256", manifest->rows_sha256));
    if (manifest->chain_sha256[0])
        rc |= json_object_set_new(
            root, "chain",
            json_pack("{s:s, s:s?, s:s?}", "sha256", manifest->chain_sha256, "previous",
                      manifest->previous_backup[0] ? manifest->previous_backup : NULL,
                      "previous_sha256",
                      manifest->previous_sha256[0] ? manifest->previous_sha256 : NULL));
    return rc ? -ENOMEM : 0;
}

void manifest_chain_hash(const struct manifest *manifest, char hex[ARCHIVE_SHA256_HEX])
{
    char created[21], *text = NULL;
    manifest_format_time(manifest->created, created);
    /* One field per line, in a fixed order: no field can run into the next
     * (none holds a newline: they are names, digits and hex). */
    int length = asprintf(
        &text,
        "sqlprodd-backup-chain-1\n%s\n%s\n%s\n%lld\n%d\n%lld\n%s\n%lld\n%lld\n%s\n%s\n%s\n%d\n%s\n",
        manifest->database, created,
        manifest->plain_sha256[0] ? manifest->plain_sha256 : manifest->archive_sha256,
        (long long)manifest->database_bytes, manifest->page_size, (long long)manifest->page_count,
        manifest->schema_sha256, (long long)manifest->table_count, (long long)manifest->row_count,
        manifest->rows_sha256, manifest->verify_method, manifest->verify_result,
        (int)manifest->verified, manifest->previous_sha256);
    if (length < 0) {
        hex[0] = '\0';
        return;
    }
    io_sha256_buffer(text, (size_t)length, hex);
    free(text);
}

int manifest_to_json(const struct manifest *manifest, char **json, struct error *err)
{
    char created[21];
    int rc = 0;

    *json = NULL;
    manifest_format_time(manifest->created, created);
    /* json_pack keeps insertion order (jansson >= 2.8), so the file reads
     * in the documented order. */
    json_error_t problem;
    json_t *root = json_pack_ex(
        &problem, 0,
        "{s:i, s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:s, s:s, s:s, s:i, s:s,"
        " s:{s:s, s:s, s:b}, s:s, s:s, s:s}",
        "format", MANIFEST_FORMAT, "database", manifest->database, "created", created, "archive",
        manifest->archive, "archive_sha256", manifest->archive_sha256, "archive_bytes",
        (json_int_t)manifest->archive_bytes, "database_bytes", (json_int_t)manifest->database_bytes,
        "page_size", manifest->page_size, "page_count", (json_int_t)manifest->page_count,
        "sqlite_version", manifest->sqlite_version, "source_path", manifest->source_path,
        "compression", manifest->compression, "level", manifest->level, "journal_mode",
        manifest->journal_mode, "verification", "method", manifest->verify_method, "result",
        manifest->verify_result, "verified", (int)manifest->verified, "schema_sha256",
        manifest->schema_sha256, "host", manifest->host, "sqlprodd_version",
        manifest->sqlprodd_version);
    if (!root)
        /* Only invalid UTF-8 in a string gets here (e.g. a source path). */
        return error_set(err, -EINVAL, "manifest for %s: cannot encode: %s", manifest->database,
                         problem.text);
    if ((manifest->encrypted && manifest_add_encryption(root, manifest) != 0) ||
        manifest_add_optional(root, manifest) != 0) {
        json_decref(root);
        return error_set(err, -ENOMEM, "manifest for %s: cannot encode: out of memory",
                         manifest->database);
    }

    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        rc = error_set(err, -ENOMEM, "manifest for %s: cannot encode: out of memory",
                       manifest->database);
        goto out;
    }
    size_t length = strlen(text);
    *json = malloc(length + 2);
    if (!*json) {
        rc = error_set(err, -ENOMEM, "manifest for %s: cannot encode: out of memory",
                       manifest->database);
        goto out;
    }
    memcpy(*json, text, length);
    (*json)[length] = '\n';
    (*json)[length + 1] = '\0';

out:
    free(text);
    json_decref(root);
    return rc;
}

/* Copies a string member into a fixed buffer. `parent` names the enclosing
 * object in messages ("verification.method"), NULL at the top level. */
static int manifest_take_string(json_t *object, const char *parent, const char *key, bool required,
                                char *out, size_t out_size, struct error *err)
{
    char label[64];
    snprintf(label, sizeof label, "%s%s%s", parent ? parent : "", parent ? "." : "", key);

    json_t *value = json_object_get(object, key);
    if (!value) {
        if (required)
            return error_set(err, -EINVAL, "manifest: required field \"%s\" is missing", label);
        out[0] = '\0';
        return 0;
    }
    if (!json_is_string(value))
        return error_set(err, -EINVAL, "manifest: field \"%s\" must be a string", label);
    size_t length = json_string_length(value);
    if (length >= out_size)
        return error_set(err, -EINVAL,
                         "manifest: field \"%s\" is too long (%zu bytes, at most %zu)", label,
                         length, out_size - 1);
    if (memchr(json_string_value(value), '\0', length))
        return error_set(err, -EINVAL, "manifest: field \"%s\" contains a NUL character", label);
    memcpy(out, json_string_value(value), length + 1);
    return 0;
}

static int manifest_take_integer(json_t *object, const char *key, int64_t minimum, int64_t maximum,
                                 int64_t *out, struct error *err)
{
    json_t *value = json_object_get(object, key);
    *out = 0;
    if (!value)
        return 0;
    if (!json_is_integer(value))
        return error_set(err, -EINVAL, "manifest: field \"%s\" must be an integer", key);
    json_int_t number = json_integer_value(value);
    if (number < minimum || number > maximum)
        return error_set(err, -EINVAL, "manifest: field \"%s\" is out of range (%lld)", key,
                         (long long)number);
    *out = (int64_t)number;
    return 0;
}

/* A file name, not a path: restore joins it to a directory. */
static int manifest_check_name(const char *key, const char *name, struct error *err)
{
    if (name[0] == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return error_set(err, -EINVAL,
                         "manifest: field \"%s\" must be a plain file name, not \"%s\"", key, name);
    return 0;
}

/* 64 hex digits, stored lowercase as archive_sha256_file reports them. */
static int manifest_check_sha256(const char *key, char *hex, bool allow_empty, struct error *err)
{
    size_t length = strlen(hex);
    if (length == 0 && allow_empty)
        return 0;
    bool valid = length == ARCHIVE_SHA256_HEX - 1;
    for (size_t i = 0; valid && i < length; i++) {
        valid = isxdigit((unsigned char)hex[i]);
        hex[i] = (char)tolower((unsigned char)hex[i]);
    }
    if (!valid)
        return error_set(err, -EINVAL, "manifest: field \"%s\" must be 64 hexadecimal digits", key);
    return 0;
}

/* Restore hands journal_mode to a PRAGMA: only a word of lowercase
 * letters and digits (a mode this version does not know is reported by
 * restore, not refused here, so that the backup still restores). */
static int manifest_check_journal_mode(const char *mode, struct error *err)
{
    for (const char *c = mode; *c; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c))
            return error_set(err, -EINVAL,
                             "manifest: field \"journal_mode\" must be a word like \"wal\", not "
                             "\"%s\"",
                             mode);
    return 0;
}

/* The string members of struct manifest: where each lives in the JSON. */
struct manifest_text_field {
    const char *parent; /* NULL: top level */
    const char *key;
    size_t offset, size;
    bool required;
};

#define MANIFEST_TEXT(parent, key, member, required)                                               \
    {                                                                                              \
        parent, key, offsetof(struct manifest, member), sizeof(((struct manifest *)0)->member),    \
            required                                                                               \
    }

static const struct manifest_text_field manifest_text_fields[] = {
    MANIFEST_TEXT(NULL, "database", database, true),
    MANIFEST_TEXT(NULL, "archive", archive, true),
    MANIFEST_TEXT(NULL, "archive_sha256", archive_sha256, true),
    MANIFEST_TEXT(NULL, "sqlite_version", sqlite_version, false),
    MANIFEST_TEXT(NULL, "source_path", source_path, false),
    MANIFEST_TEXT(NULL, "compression", compression, false),
    MANIFEST_TEXT(NULL, "journal_mode", journal_mode, false),
    MANIFEST_TEXT(NULL, "schema_sha256", schema_sha256, false),
    MANIFEST_TEXT(NULL, "host", host, false),
    MANIFEST_TEXT(NULL, "sqlprodd_version", sqlprodd_version, false),
    MANIFEST_TEXT("verification", "method", verify_method, false),
    MANIFEST_TEXT("verification", "result", verify_result, false),
};

static int manifest_take_texts(json_t *root, struct manifest *manifest, struct error *err)
{
    json_t *verification = json_object_get(root, "verification");
    if (verification && !json_is_object(verification))
        return error_set(err, -EINVAL, "manifest: field \"verification\" must be an object");

    for (size_t i = 0; i < sizeof manifest_text_fields / sizeof manifest_text_fields[0]; i++) {
        const struct manifest_text_field *field = &manifest_text_fields[i];
        json_t *object = field->parent ? verification : root;
        char *out = (char *)manifest + field->offset;
        if (!object) {
            out[0] = '\0'; /* no "verification" object: an unverified backup */
            continue;
        }
        int rc = manifest_take_string(object, field->parent, field->key, field->required, out,
                                      field->size, err);
        if (rc < 0)
            return rc;
    }
    json_t *verified = verification ? json_object_get(verification, "verified") : NULL;
    if (verified && !json_is_boolean(verified))
        return error_set(err, -EINVAL,
                         "manifest: field \"verification.verified\" must be true or false");
    manifest->verified = verified && json_is_true(verified);
    return 0;
}

static int manifest_take_numbers(json_t *root, struct manifest *manifest, struct error *err)
{
    int64_t page_size = 0, level = 0;
    int rc;

    if ((rc = manifest_take_integer(root, "archive_bytes", 0, INT64_MAX, &manifest->archive_bytes,
                                    err)) < 0)
        return rc;
    if ((rc = manifest_take_integer(root, "database_bytes", 0, INT64_MAX, &manifest->database_bytes,
                                    err)) < 0)
        return rc;
    if ((rc = manifest_take_integer(root, "page_count", 0, INT64_MAX, &manifest->page_count, err)) <
        0)
        return rc;
    if ((rc = manifest_take_integer(root, "page_size", 0, 65536, &page_size, err)) < 0)
        return rc;
    if ((rc = manifest_take_integer(root, "level", 0, 12, &level, err)) < 0)
        return rc;
    manifest->page_size = (int)page_size;
    manifest->level = (int)level;
    return 0;
}

/* The optional "fingerprint" and "chain" objects. */
static int manifest_take_links(json_t *root, struct manifest *manifest, struct error *err)
{
    json_t *fingerprint = json_object_get(root, "fingerprint");
    json_t *chain = json_object_get(root, "chain");
    int rc;
    if (fingerprint && !json_is_object(fingerprint))
        return error_set(err, -EINVAL, "manifest: field \"fingerprint\" must be an object");
    if (chain && !json_is_object(chain))
        return error_set(err, -EINVAL, "manifest: field \"chain\" must be an object");
    if (fingerprint) {
        if ((rc = manifest_take_integer(fingerprint, "tables", 0, INT64_MAX, &manifest->table_count,
                                        err)) < 0 ||
            (rc = manifest_take_integer(fingerprint, "rows", 0, INT64_MAX, &manifest->row_count,
                                        err)) < 0 ||
            (rc = manifest_take_string(fingerprint, "fingerprint", "rows_sha256", true,
                                       manifest->rows_sha256, sizeof manifest->rows_sha256, err)) <
                0 ||
            (rc = manifest_check_sha256("fingerprint.rows_sha256", manifest->rows_sha256, false,
                                        err)) < 0)
            return rc;
    }
    if (!chain)
        return 0;
    json_t *previous = json_object_get(chain, "previous");
    json_t *previous_sha256 = json_object_get(chain, "previous_sha256");
    if ((rc = manifest_take_string(chain, "chain", "sha256", true, manifest->chain_sha256,
                                   sizeof manifest->chain_sha256, err)) < 0 ||
        (rc = manifest_check_sha256("chain.sha256", manifest->chain_sha256, false, err)) < 0)
        return rc;
    if (previous && !json_is_null(previous)) {
        time_t at;
        if ((rc = manifest_take_string(chain, "chain", "previous", true, manifest->previous_backup,
                                       sizeof manifest->previous_backup, err)) < 0)
            return rc;
        if (manifest_parse_stamp(manifest->previous_backup, &at) != 0)
            return error_set(err, -EINVAL,
                             "manifest: field \"chain.previous\" must be a backup id like "
                             "20261125T080000Z");
    }
    if (previous_sha256 && !json_is_null(previous_sha256)) {
        if ((rc = manifest_take_string(chain, "chain", "previous_sha256", true,
                                       manifest->previous_sha256, sizeof manifest->previous_sha256,
                                       err)) < 0 ||
            (rc = manifest_check_sha256("chain.previous_sha256", manifest->previous_sha256, false,
                                        err)) < 0)
            return rc;
    }
    if (!manifest->previous_backup[0] != !manifest->previous_sha256[0])
        return error_set(err, -EINVAL,
                         "manifest: fields \"chain.previous\" and \"chain.previous_sha256\" "
                         "go together");
    return 0;
}

static int manifest_take_fields(json_t *root, struct manifest *manifest, struct error *err)
{
    char created[32];
    int64_t format = MANIFEST_FORMAT;
    int rc;

    if (json_object_get(root, "format")) {
        if ((rc = manifest_take_integer(root, "format", 0, INT32_MAX, &format, err)) < 0)
            return rc;
        if (format != MANIFEST_FORMAT)
            return error_set(err, -EINVAL,
                             "manifest: format %lld is not supported (this sqlprodd reads "
                             "format %d)",
                             (long long)format, MANIFEST_FORMAT);
    }
    if ((rc = manifest_take_texts(root, manifest, err)) < 0)
        return rc;
    if ((rc = manifest_take_string(root, NULL, "created", true, created, sizeof created, err)) < 0)
        return rc;
    if (manifest_parse_time(created, &manifest->created) < 0)
        return error_set(err, -EINVAL,
                         "manifest: field \"created\" is \"%s\", not a UTC time like "
                         "2026-11-25T08:00:00Z",
                         created);
    if ((rc = manifest_check_name("database", manifest->database, err)) < 0)
        return rc;
    if ((rc = manifest_check_name("archive", manifest->archive, err)) < 0)
        return rc;
    if ((rc = manifest_check_sha256("archive_sha256", manifest->archive_sha256, false, err)) < 0)
        return rc;
    if ((rc = manifest_check_sha256("schema_sha256", manifest->schema_sha256, true, err)) < 0)
        return rc;
    if ((rc = manifest_check_journal_mode(manifest->journal_mode, err)) < 0)
        return rc;
    if ((rc = manifest_take_encryption(root, manifest, err)) < 0)
        return rc;
    if ((rc = manifest_take_string(root, NULL, "plain_sha256", false, manifest->plain_sha256,
                                   sizeof manifest->plain_sha256, err)) < 0 ||
        (rc = manifest_check_sha256("plain_sha256", manifest->plain_sha256, true, err)) < 0)
        return rc;
    if ((rc = manifest_take_links(root, manifest, err)) < 0)
        return rc;
    return manifest_take_numbers(root, manifest, err);
}

int manifest_from_json(const char *json, size_t size, struct manifest *manifest, struct error *err)
{
    json_error_t problem;

    memset(manifest, 0, sizeof *manifest);
    json_t *root = json_loadb(json, size, JSON_REJECT_DUPLICATES, &problem);
    if (!root)
        return error_set(err, -EINVAL, "manifest: invalid JSON at line %d, column %d: %s",
                         problem.line, problem.column, problem.text);
    int rc;
    if (!json_is_object(root))
        rc = error_set(err, -EINVAL, "manifest: the top level must be a JSON object");
    else
        rc = manifest_take_fields(root, manifest, err);
    json_decref(root);
    if (rc < 0)
        memset(manifest, 0, sizeof *manifest);
    return rc;
}

int manifest_read(const char *path, struct manifest *manifest, struct error *err)
{
    char *text = NULL;
    size_t size = 0;

    int rc = fs_read_file(path, &text, &size, err);
    if (rc < 0) {
        memset(manifest, 0, sizeof *manifest);
        return rc;
    }
    rc = manifest_from_json(text, size, manifest, err);
    if (rc < 0 && err) {
        /* "manifest: X" becomes "manifest PATH: X". */
        static const char generic[] = "manifest: ";
        char detail[sizeof err->message];
        const char *rest = err->message;
        if (strncmp(rest, generic, sizeof generic - 1) == 0)
            rest += sizeof generic - 1;
        snprintf(detail, sizeof detail, "%s", rest);
        error_set(err, rc, "manifest %s: %s", path, detail);
    }
    free(text);
    return rc;
}

int manifest_write(const char *path, const struct manifest *manifest, struct error *err)
{
    char *json = NULL;

    int rc = manifest_to_json(manifest, &json, err);
    if (rc < 0)
        return rc;
    rc = fs_write_file_atomically(path, json, strlen(json), 0600, err);
    free(json);
    return rc;
}
