/*
 * format.c: names and JSON manifests of a replica (format.h,
 * sqlprodd-format(5)). Pure: text in, text out.
 *
 * The checks of a record are the same on both sides (format_*_check): the
 * encoder refuses what the decoder would refuse, so a bug in the shipper
 * shows up when it writes, not at the restore an operator needs.
 */
#include "replicate/format.h"
#include "replicate/format_json.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAL_HEADER_BYTES       32u
#define WAL_FRAME_HEADER_BYTES 24u

/* ---- names ---- */

void format_generation_name(uint32_t generation, char out[16])
{
    snprintf(out, 16, "g%08" PRIu32, generation);
}

static bool format_all_digits(const char *text, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!isdigit((unsigned char)text[i]))
            return false;
    }
    return true;
}

static uint64_t format_digits_value(const char *text, size_t count)
{
    uint64_t value = 0;
    for (size_t i = 0; i < count; i++)
        value = value * 10 + (uint64_t)(text[i] - '0');
    return value;
}

int format_generation_parse(const char *name, uint32_t *generation)
{
    if (!name || name[0] != 'g' || strlen(name) != 9 || !format_all_digits(name + 1, 8))
        return -EINVAL;
    uint64_t value = format_digits_value(name + 1, 8);
    if (value == 0)
        return -EINVAL;
    *generation = (uint32_t)value;
    return 0;
}

void format_segment_name(uint64_t start, uint64_t end, char out[32])
{
    snprintf(out, 32, "%012" PRIu64 "-%012" PRIu64, start, end);
}

int format_segment_parse(const char *name, const char *suffix, uint64_t *start, uint64_t *end)
{
    if (!name || !suffix || strlen(name) != 25 + strlen(suffix) || name[12] != '-' ||
        !format_all_digits(name, 12) || !format_all_digits(name + 13, 12) ||
        strcmp(name + 25, suffix) != 0)
        return -EINVAL;
    uint64_t s = format_digits_value(name, 12), e = format_digits_value(name + 13, 12);
    if (s >= e)
        return -EINVAL;
    *start = s;
    *end = e;
    return 0;
}

/* A database name becomes one component of every key: it must not climb out
 * of the prefix or split into several components. */
bool format_database_name_ok(const char *database)
{
    if (!database || !database[0] || strcmp(database, ".") == 0 || strcmp(database, "..") == 0)
        return false;
    for (const char *p = database; *p; p++) {
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

int format_key(char *out, size_t size, const char *database, enum format_object object,
               uint32_t generation, uint64_t start, uint64_t end, struct error *err)
{
    char gen[16], segment[32];
    int n = -1;

    if (!format_database_name_ok(database))
        return error_set(err, -EINVAL,
                         "database name \"%s\" cannot name objects on a target (empty, \".\", "
                         "\"..\", or holds '/' or a control character)",
                         database ? database : "");
    if (object != FORMAT_INDEX && (generation == 0 || generation > FORMAT_GENERATION_MAX))
        return error_set(err, -EINVAL, "%s: generation %" PRIu32 " out of range 1..%u", database,
                         generation, FORMAT_GENERATION_MAX);
    if ((object == FORMAT_SEGMENT || object == FORMAT_SEALED_SEGMENT || object == FORMAT_SIDECAR) &&
        (start >= end || end > FORMAT_OFFSET_MAX))
        return error_set(err, -EINVAL, "%s: segment range %" PRIu64 "-%" PRIu64 " not valid",
                         database, start, end);
    format_generation_name(generation, gen);
    format_segment_name(start, end, segment);
    switch (object) {
    case FORMAT_INDEX: n = snprintf(out, size, "%s/replica/index.json", database); break;
    case FORMAT_BASE: n = snprintf(out, size, "%s/replica/%s/base.db.gz", database, gen); break;
    case FORMAT_BASE_JSON: n = snprintf(out, size, "%s/replica/%s/base.json", database, gen); break;
    case FORMAT_SEGMENT:
        n = snprintf(out, size, "%s/replica/%s/wal/%s.wal.gz", database, gen, segment);
        break;
    case FORMAT_SIDECAR:
        n = snprintf(out, size, "%s/replica/%s/wal/%s.wal.json", database, gen, segment);
        break;
    case FORMAT_GENERATION_DIR: n = snprintf(out, size, "%s/replica/%s/", database, gen); break;
    case FORMAT_SEGMENT_DIR: n = snprintf(out, size, "%s/replica/%s/wal/", database, gen); break;
    case FORMAT_SEALED_BASE:
        n = snprintf(out, size, "%s/replica/%s/base.db.gz.age", database, gen);
        break;
    case FORMAT_SEALED_SEGMENT:
        n = snprintf(out, size, "%s/replica/%s/wal/%s.wal.gz.age", database, gen, segment);
        break;
    }
    if (n < 0 || (size_t)n >= size)
        return error_set(err, -ENAMETOOLONG, "%s: object key longer than %zu bytes", database,
                         size);
    return 0;
}

/* ---- times ---- */

void format_time(int64_t ms, char out[FORMAT_TIME_SIZE])
{
    time_t seconds = (time_t)(ms / 1000);
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    struct tm tm;
    char base[24];
    if (!gmtime_r(&seconds, &tm) || strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        out[0] = '\0';
        return;
    }
    snprintf(out, FORMAT_TIME_SIZE, "%s.%03dZ", base, millis);
}

static bool format_matches(const char *text, const char *pattern)
{
    size_t i;
    for (i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd' ? !isdigit((unsigned char)text[i]) : text[i] != pattern[i])
            return false;
    }
    return text[i] == '\0';
}

int format_time_parse(const char *text, int64_t *ms)
{
    int millis = 0;
    if (!text)
        return -EINVAL;
    if (format_matches(text, "dddd-dd-ddTdd:dd:dd.dddZ"))
        millis = (int)format_digits_value(text + 20, 3);
    else if (!format_matches(text, "dddd-dd-ddTdd:dd:ddZ"))
        return -EINVAL;
    struct tm tm = {0};
    tm.tm_year = (int)format_digits_value(text, 4) - 1900;
    tm.tm_mon = (int)format_digits_value(text + 5, 2) - 1;
    tm.tm_mday = (int)format_digits_value(text + 8, 2);
    tm.tm_hour = (int)format_digits_value(text + 11, 2);
    tm.tm_min = (int)format_digits_value(text + 14, 2);
    tm.tm_sec = (int)format_digits_value(text + 17, 2);
    if (tm.tm_year < 70)
        return -EINVAL;
    struct tm check = tm;
    time_t seconds = timegm(&check);
    /* timegm normalises 30 February into March: refuse what it had to change. */
    if (check.tm_year != tm.tm_year || check.tm_mon != tm.tm_mon || check.tm_mday != tm.tm_mday ||
        check.tm_hour != tm.tm_hour || check.tm_min != tm.tm_min || check.tm_sec != tm.tm_sec)
        return -EINVAL;
    *ms = (int64_t)seconds * 1000 + millis;
    return 0;
}

/* ---- checks shared by encoders and decoders ---- */

bool format_page_size_ok(uint32_t page_size)
{
    return page_size >= 512 && page_size <= 65536 && (page_size & (page_size - 1)) == 0;
}

bool format_sha256_ok(const char *hex)
{
    size_t i;
    for (i = 0; hex[i]; i++) {
        if (!isdigit((unsigned char)hex[i]) && !(hex[i] >= 'a' && hex[i] <= 'f'))
            return false;
    }
    return i == 64;
}

/* A recipient as age prints it: printable ASCII, no space (one a line in
 * a recipients file), so that it can be pasted into `age -r`. */
static bool format_recipient_ok(const char *text)
{
    size_t length = strlen(text);
    if (length == 0 || length >= FORMAT_RECIPIENT_SIZE)
        return false;
    for (size_t i = 0; i < length; i++)
        if (text[i] <= ' ' || text[i] >= 0x7f)
            return false;
    return true;
}

int format_encryption_check(const struct format_encryption *e, const char *object,
                            struct error *err)
{
    if (e->recipient_count > FORMAT_RECIPIENTS_MAX)
        return error_set(err, -EINVAL, "%s: \"encryption\" names %zu recipients, at most %d",
                         object, e->recipient_count, FORMAT_RECIPIENTS_MAX);
    for (size_t i = 0; i < e->recipient_count; i++)
        if (!format_recipient_ok(e->recipients[i]))
            return error_set(err, -EINVAL,
                             "%s: \"encryption\": recipient %zu is empty, too long or holds a "
                             "space or a control character",
                             object, i + 1);
    return 0;
}

static int format_segment_check(const struct format_segment *s, const char *object,
                                struct error *err)
{
    uint64_t frame_bytes;

    if (s->generation == 0 || s->generation > FORMAT_GENERATION_MAX)
        return error_set(err, -EINVAL, "%s: \"generation\" %" PRIu32 " out of range 1..%u", object,
                         s->generation, FORMAT_GENERATION_MAX);
    if (!format_page_size_ok(s->page_size))
        return error_set(err, -EINVAL, "%s: \"page_size\" %" PRIu32 " is not a WAL page size",
                         object, s->page_size);
    frame_bytes = WAL_FRAME_HEADER_BYTES + s->page_size;
    if (s->start >= s->end || s->end > FORMAT_OFFSET_MAX)
        return error_set(err, -EINVAL,
                         "%s: range \"start\" %" PRIu64 " .. \"end\" %" PRIu64
                         " is empty or too large",
                         object, s->start, s->end);
    if (s->start != 0 &&
        (s->start < WAL_HEADER_BYTES || (s->start - WAL_HEADER_BYTES) % frame_bytes != 0))
        return error_set(err, -EINVAL, "%s: \"start\" %" PRIu64 " is not at a frame boundary",
                         object, s->start);
    if (!format_sha256_ok(s->sha256))
        return error_set(err, -EINVAL, "%s: \"sha256\" is not 64 lower-case hex digits", object);
    if (s->size == 0)
        return error_set(err, -EINVAL, "%s: \"size\" is 0, no gzip member is that small", object);
    if (format_encryption_check(&s->encryption, object, err) < 0)
        return -EINVAL;
    if (s->commit_count == 0 || !s->commits)
        return error_set(err, -EINVAL, "%s: \"commits\" is empty: a segment holds whole commits",
                         object);
    for (size_t i = 0; i < s->commit_count; i++) {
        const struct format_commit *c = &s->commits[i];
        const struct format_commit *before = i ? &s->commits[i - 1] : NULL;
        /* A commit frame's end is where the frame index says it is: what
         * restore cuts with `head -c` must be a frame boundary of this WAL. */
        if (c->frame == 0 || c->end_offset != WAL_HEADER_BYTES + c->frame * frame_bytes)
            return error_set(err, -EINVAL,
                             "%s: commit %zu: \"end_offset\" %" PRIu64 " is not the end of "
                             "frame %" PRIu64 " with pages of %" PRIu32 " bytes",
                             object, i + 1, c->end_offset, c->frame, s->page_size);
        if (c->end_offset <= s->start || c->end_offset > s->end)
            return error_set(err, -EINVAL,
                             "%s: commit %zu: \"end_offset\" %" PRIu64 " outside the segment",
                             object, i + 1, c->end_offset);
        if (before && c->end_offset <= before->end_offset)
            return error_set(err, -EINVAL, "%s: commit %zu: not after commit %zu", object, i + 1,
                             i);
        if (c->db_pages == 0)
            return error_set(err, -EINVAL, "%s: commit %zu: \"db_pages\" is 0", object, i + 1);
        if (c->seen_at_ms <= 0 || (before && c->seen_at_ms < before->seen_at_ms))
            return error_set(err, -EINVAL,
                             "%s: commit %zu: \"seen_at\" missing or before the commit before it",
                             object, i + 1);
    }
    if (s->commits[s->commit_count - 1].end_offset != s->end)
        return error_set(err, -EINVAL,
                         "%s: the last commit ends at %" PRIu64 ", the segment at \"end\" %" PRIu64,
                         object, s->commits[s->commit_count - 1].end_offset, s->end);
    return 0;
}

static int format_base_check(const struct format_base *b, const char *object, struct error *err)
{
    if (b->generation == 0 || b->generation > FORMAT_GENERATION_MAX)
        return error_set(err, -EINVAL, "%s: \"generation\" %" PRIu32 " out of range 1..%u", object,
                         b->generation, FORMAT_GENERATION_MAX);
    if (b->from_generation >= b->generation)
        return error_set(err, -EINVAL,
                         "%s: \"from\" names generation %" PRIu32 ", not one before %" PRIu32,
                         object, b->from_generation, b->generation);
    if (!format_page_size_ok(b->page_size))
        return error_set(err, -EINVAL, "%s: \"page_size\" %" PRIu32 " is not a page size", object,
                         b->page_size);
    if (b->taken_at_ms <= 0)
        return error_set(err, -EINVAL, "%s: \"taken_at\" missing", object);
    if (format_encryption_check(&b->encryption, object, err) < 0)
        return -EINVAL;
    if (b->from_generation == 0) {
        if (!format_sha256_ok(b->sha256))
            return error_set(err, -EINVAL,
                             "%s: \"sha256\" of base.db.gz is not 64 lower-case hex digits",
                             object);
        if (b->size == 0 || b->database_bytes == 0 || b->database_bytes % b->page_size != 0)
            return error_set(err, -EINVAL,
                             "%s: \"size\" or \"database_bytes\" is 0 or not whole pages", object);
    }
    return 0;
}

static int format_index_check(const struct format_index *x, const char *object, struct error *err)
{
    if (!format_database_name_ok(x->database))
        return error_set(err, -EINVAL, "%s: \"database\" is missing or not a name", object);
    if (x->updated_at_ms <= 0)
        return error_set(err, -EINVAL, "%s: \"updated_at\" missing", object);
    for (size_t i = 0; i < x->count; i++) {
        const struct format_index_generation *g = &x->generations[i];
        if (g->generation == 0 || g->generation > FORMAT_GENERATION_MAX ||
            (i && g->generation <= x->generations[i - 1].generation))
            return error_set(err, -EINVAL,
                             "%s: generation %zu: name out of range or not after the one before",
                             object, i + 1);
        if (g->base_from >= g->generation)
            return error_set(err, -EINVAL, "%s: generation %zu: \"base\" names a later generation",
                             object, i + 1);
        if ((g->first_seen_at_ms == 0) != (g->last_seen_at_ms == 0) ||
            g->first_seen_at_ms > g->last_seen_at_ms || g->first_seen_at_ms < 0)
            return error_set(err, -EINVAL,
                             "%s: generation %zu: \"first_seen_at\" after \"last_seen_at\", or "
                             "only one of them",
                             object, i + 1);
    }
    return 0;
}

/* ---- JSON helpers ---- */

json_t *format_json_u64(uint64_t value)
{
    return json_integer((json_int_t)value);
}

int format_set(json_t *object, const char *key, json_t *value)
{
    /* json_object_set_new frees value on failure, and takes NULL as a failure. */
    return json_object_set_new(object, key, value) == 0 ? 0 : -ENOMEM;
}

int format_set_time(json_t *object, const char *key, int64_t ms)
{
    char text[FORMAT_TIME_SIZE];
    format_time(ms, text);
    return format_set(object, key, json_string(text));
}

char *format_dump(json_t *root, struct error *err)
{
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (!text)
        error_set(err, -ENOMEM, "out of memory encoding a replica manifest");
    return text;
}

int format_get_u64(json_t *root, const char *key, uint64_t max, bool required, uint64_t *out,
                   const char *object, struct error *err)
{
    json_t *value = json_object_get(root, key);
    if (!value) {
        if (!required) {
            *out = 0;
            return 0;
        }
        return error_set(err, -EINVAL, "%s: field \"%s\" is missing", object, key);
    }
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        (uint64_t)json_integer_value(value) > max)
        return error_set(err, -EINVAL, "%s: field \"%s\" is not an integer in 0..%" PRIu64, object,
                         key, max);
    *out = (uint64_t)json_integer_value(value);
    return 0;
}

int format_get_u32(json_t *root, const char *key, bool required, uint32_t *out, const char *object,
                   struct error *err)
{
    uint64_t value = 0;
    int rc = format_get_u64(root, key, UINT32_MAX, required, &value, object, err);
    if (rc == 0)
        *out = (uint32_t)value;
    return rc;
}

static int format_get_pair(json_t *root, const char *key, uint32_t out[2], const char *object,
                           struct error *err)
{
    json_t *value = json_object_get(root, key);
    if (!json_is_array(value) || json_array_size(value) != 2)
        return error_set(err, -EINVAL, "%s: field \"%s\" is not a pair of integers", object, key);
    for (size_t i = 0; i < 2; i++) {
        json_t *item = json_array_get(value, i);
        if (!json_is_integer(item) || json_integer_value(item) < 0 ||
            json_integer_value(item) > (json_int_t)UINT32_MAX)
            return error_set(err, -EINVAL, "%s: field \"%s\" holds a value outside 0..%u", object,
                             key, UINT32_MAX);
        out[i] = (uint32_t)json_integer_value(item);
    }
    return 0;
}

int format_get_string(json_t *root, const char *key, bool required, const char **out,
                      const char *object, struct error *err)
{
    json_t *value = json_object_get(root, key);
    if (!value && !required) {
        *out = NULL;
        return 0;
    }
    if (!json_is_string(value))
        return error_set(err, -EINVAL, "%s: field \"%s\" is missing or not a string", object, key);
    *out = json_string_value(value);
    return 0;
}

int format_get_time(json_t *root, const char *key, bool required, int64_t *ms, const char *object,
                    struct error *err)
{
    const char *text = NULL;
    int rc = format_get_string(root, key, required, &text, object, err);
    if (rc < 0)
        return rc;
    if (!text) {
        *ms = 0;
        return 0;
    }
    if (format_time_parse(text, ms) < 0)
        return error_set(err, -EINVAL,
                         "%s: field \"%s\" is \"%s\", not an RFC 3339 UTC time "
                         "(2026-12-02T11:24:07.123Z)",
                         object, key, text);
    return 0;
}

int format_get_sha256(json_t *root, char out[65], bool required, const char *object,
                      struct error *err)
{
    const char *text = NULL;
    int rc = format_get_string(root, "sha256", required, &text, object, err);
    if (rc < 0)
        return rc;
    out[0] = '\0';
    if (text) {
        if (strlen(text) != 64)
            return error_set(err, -EINVAL, "%s: field \"sha256\" is not 64 hex digits", object);
        memcpy(out, text, 65);
    }
    return 0;
}

/* Parses the text into an object and checks "format". */
int format_load(const char *text, size_t length, const char *object, json_t **root,
                struct error *err)
{
    json_error_t jerr;
    uint64_t version = 0;

    *root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &jerr);
    if (!*root)
        return error_set(err, -EINVAL, "%s: not valid JSON (line %d: %s); the object is damaged",
                         object, jerr.line, jerr.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return error_set(err, -EINVAL, "%s: not a JSON object", object);
    }
    if (format_get_u64(*root, "format", UINT32_MAX, true, &version, object, err) < 0 ||
        (version != FORMAT_VERSION &&
         error_set(err, -EINVAL,
                   "%s: \"format\" %" PRIu64 " is not %d: written by another version of "
                   "sqlprodd; restore with that version",
                   object, version, FORMAT_VERSION) < 0)) {
        json_decref(*root);
        *root = NULL;
        return -EINVAL;
    }
    return 0;
}

/* ---- "encryption" ---- */

/* Written only for a sealed object: an unencrypted replica's manifests stay
 * byte for byte what they were. */
int format_set_encryption(json_t *root, const struct format_encryption *e)
{
    if (e->recipient_count == 0)
        return 0;
    json_t *record = json_object(), *list = json_array();
    int rc = record && list ? 0 : -ENOMEM;
    for (size_t i = 0; i < e->recipient_count && rc == 0; i++)
        rc = json_array_append_new(list, json_string(e->recipients[i])) == 0 ? 0 : -ENOMEM;
    if (rc != 0) {
        json_decref(list);
        json_decref(record);
        return rc;
    }
    rc |= format_set(record, "format", json_string(FORMAT_ENCRYPTION_AGE));
    rc |= format_set(record, "recipients", list);
    rc |= format_set(root, "encryption", record);
    return rc;
}

/* Optional; when present, the one format this restore can open, and at
 * least one recipient (an object sealed to nobody opens for nobody). */
int format_get_encryption(json_t *root, struct format_encryption *out, const char *object,
                          struct error *err)
{
    json_t *record = json_object_get(root, "encryption");
    const char *format = NULL;
    memset(out, 0, sizeof *out);
    if (!record)
        return 0;
    if (!json_is_object(record))
        return error_set(err, -EINVAL, "%s: field \"encryption\" is not an object", object);
    if (format_get_string(record, "format", true, &format, object, err) < 0) {
        error_prefix(err, "\"encryption\": ");
        return -EINVAL;
    }
    if (strcmp(format, FORMAT_ENCRYPTION_AGE) != 0)
        return error_set(err, -EINVAL,
                         "%s: \"encryption\" is \"%s\", not \"" FORMAT_ENCRYPTION_AGE
                         "\": written by another version of sqlprodd; restore with that version",
                         object, format);
    json_t *list = json_object_get(record, "recipients");
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > FORMAT_RECIPIENTS_MAX)
        return error_set(err, -EINVAL,
                         "%s: \"encryption\": \"recipients\" is not a list of 1..%d recipients",
                         object, FORMAT_RECIPIENTS_MAX);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *text = json_string_value(json_array_get(list, i));
        if (!text || !format_recipient_ok(text))
            return error_set(err, -EINVAL,
                             "%s: \"encryption\": recipient %zu is not a recipient string", object,
                             i + 1);
        snprintf(out->recipients[i], FORMAT_RECIPIENT_SIZE, "%s", text);
        out->recipient_count = i + 1;
    }
    return 0;
}

/* ---- segment sidecar ---- */

char *format_segment_encode(const struct format_segment *s, struct error *err)
{
    char gen[16], name[32], *text = NULL;
    json_t *root = NULL, *commits = NULL, *pair;
    int rc = 0;

    format_generation_name(s->generation, gen);
    format_segment_name(s->start, s->end, name);
    if (format_segment_check(s, name, err) < 0)
        return NULL;
    root = json_object();
    commits = json_array();
    if (!root || !commits)
        goto nomem;
    rc |= format_set(root, "format", json_integer(FORMAT_VERSION));
    rc |= format_set(root, "generation", json_integer(s->generation));
    rc |= format_set(root, "start", format_json_u64(s->start));
    rc |= format_set(root, "end", format_json_u64(s->end));
    rc |= format_set(root, "page_size", json_integer(s->page_size));
    rc |= format_set(root, "big_endian_checksum", json_boolean(s->big_endian_checksum));
    pair = json_pack("[II]", (json_int_t)s->salt[0], (json_int_t)s->salt[1]);
    rc |= format_set(root, "salt", pair);
    pair = json_pack("[II]", (json_int_t)s->checksum[0], (json_int_t)s->checksum[1]);
    rc |= format_set(root, "checksum", pair);
    rc |= format_set(root, "sha256", json_string(s->sha256));
    rc |= format_set(root, "size", format_json_u64(s->size));
    rc |= format_set_encryption(root, &s->encryption);
    for (size_t i = 0; i < s->commit_count && rc == 0; i++) {
        json_t *c = json_object();
        if (!c || json_array_append_new(commits, c) < 0)
            goto nomem;
        rc |= format_set(c, "frame", format_json_u64(s->commits[i].frame));
        rc |= format_set(c, "end_offset", format_json_u64(s->commits[i].end_offset));
        rc |= format_set(c, "db_pages", json_integer(s->commits[i].db_pages));
        rc |= format_set_time(c, "seen_at", s->commits[i].seen_at_ms);
    }
    rc |= format_set(root, "commits", commits);
    commits = NULL;
    if (rc != 0)
        goto nomem;
    text = format_dump(root, err);
    json_decref(root);
    return text;
nomem:
    json_decref(commits);
    json_decref(root);
    error_set(err, -ENOMEM, "out of memory encoding sidecar %s", name);
    return NULL;
}

int format_segment_decode(const char *text, size_t length, const char *object,
                          struct format_segment *out, struct error *err)
{
    json_t *root = NULL, *commits;
    int rc;
    uint64_t value = 0;

    memset(out, 0, sizeof *out);
    rc = format_load(text, length, object, &root, err);
    if (rc < 0)
        return rc;
    if ((rc = format_get_u32(root, "generation", true, &out->generation, object, err)) < 0 ||
        (rc = format_get_u64(root, "start", FORMAT_OFFSET_MAX, true, &out->start, object, err)) <
            0 ||
        (rc = format_get_u64(root, "end", FORMAT_OFFSET_MAX, true, &out->end, object, err)) < 0 ||
        (rc = format_get_u32(root, "page_size", true, &out->page_size, object, err)) < 0 ||
        (rc = format_get_pair(root, "salt", out->salt, object, err)) < 0 ||
        (rc = format_get_pair(root, "checksum", out->checksum, object, err)) < 0 ||
        (rc = format_get_sha256(root, out->sha256, true, object, err)) < 0 ||
        (rc = format_get_u64(root, "size", INT64_MAX, true, &out->size, object, err)) < 0 ||
        (rc = format_get_encryption(root, &out->encryption, object, err)) < 0)
        goto out;
    json_t *order = json_object_get(root, "big_endian_checksum");
    if (order && !json_is_boolean(order)) {
        rc = error_set(err, -EINVAL, "%s: field \"big_endian_checksum\" is not true or false",
                       object);
        goto out;
    }
    out->big_endian_checksum = json_is_true(order);
    commits = json_object_get(root, "commits");
    if (!json_is_array(commits) || json_array_size(commits) == 0) {
        rc = error_set(err, -EINVAL, "%s: field \"commits\" is missing or empty", object);
        goto out;
    }
    out->commits = calloc(json_array_size(commits), sizeof *out->commits);
    if (!out->commits) {
        rc = error_set(err, -ENOMEM, "%s: out of memory", object);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(commits); i++) {
        json_t *c = json_array_get(commits, i);
        struct format_commit *commit = &out->commits[i];
        if (!json_is_object(c)) {
            rc = error_set(err, -EINVAL, "%s: commit %zu is not an object", object, i + 1);
            goto out;
        }
        if ((rc = format_get_u64(c, "frame", UINT32_MAX, true, &commit->frame, object, err)) < 0 ||
            (rc = format_get_u64(c, "end_offset", FORMAT_OFFSET_MAX, true, &commit->end_offset,
                                 object, err)) < 0 ||
            (rc = format_get_u64(c, "db_pages", UINT32_MAX, true, &value, object, err)) < 0 ||
            (rc = format_get_time(c, "seen_at", true, &commit->seen_at_ms, object, err)) < 0) {
            error_prefix(err, "commit %zu: ", i + 1);
            goto out;
        }
        commit->db_pages = (uint32_t)value;
        out->commit_count = i + 1;
    }
    rc = format_segment_check(out, object, err);
out:
    json_decref(root);
    if (rc < 0)
        format_segment_free(out);
    return rc;
}

void format_segment_free(struct format_segment *segment)
{
    free(segment->commits);
    segment->commits = NULL;
    segment->commit_count = 0;
}

/* ---- base.json ---- */

char *format_base_encode(const struct format_base *b, struct error *err)
{
    char gen[16], from[32], *text;
    json_t *root;
    int rc = 0;

    format_generation_name(b->generation, gen);
    if (format_base_check(b, gen, err) < 0)
        return NULL;
    root = json_object();
    if (!root)
        goto nomem;
    rc |= format_set(root, "format", json_integer(FORMAT_VERSION));
    rc |= format_set(root, "generation", json_integer(b->generation));
    rc |= format_set(root, "frame", format_json_u64(b->frame));
    if (b->from_generation) {
        format_generation_name(b->from_generation, from);
        strcat(from, "/end");
        rc |= format_set(root, "from", json_string(from));
    } else {
        rc |= format_set(root, "sha256", json_string(b->sha256));
        rc |= format_set(root, "size", format_json_u64(b->size));
        rc |= format_set(root, "database_bytes", format_json_u64(b->database_bytes));
    }
    rc |= format_set(root, "page_size", json_integer(b->page_size));
    rc |= format_set_time(root, "taken_at", b->taken_at_ms);
    rc |= format_set_encryption(root, &b->encryption);
    if (rc != 0)
        goto nomem;
    text = format_dump(root, err);
    json_decref(root);
    return text;
nomem:
    json_decref(root);
    error_set(err, -ENOMEM, "out of memory encoding %s/base.json", gen);
    return NULL;
}

/* "gNNNNNNNN/end" -> N. */
static int format_parse_end_link(const char *text, uint32_t *generation)
{
    char name[16];
    if (strlen(text) != 13 || strcmp(text + 9, "/end") != 0)
        return -EINVAL;
    memcpy(name, text, 9);
    name[9] = '\0';
    return format_generation_parse(name, generation);
}

int format_base_decode(const char *text, size_t length, const char *object, struct format_base *out,
                       struct error *err)
{
    json_t *root = NULL;
    const char *from = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    rc = format_load(text, length, object, &root, err);
    if (rc < 0)
        return rc;
    if ((rc = format_get_u32(root, "generation", true, &out->generation, object, err)) < 0 ||
        (rc = format_get_u64(root, "frame", UINT32_MAX, true, &out->frame, object, err)) < 0 ||
        (rc = format_get_string(root, "from", false, &from, object, err)) < 0 ||
        (rc = format_get_u32(root, "page_size", true, &out->page_size, object, err)) < 0 ||
        (rc = format_get_time(root, "taken_at", true, &out->taken_at_ms, object, err)) < 0 ||
        (rc = format_get_encryption(root, &out->encryption, object, err)) < 0)
        goto out;
    if (from && format_parse_end_link(from, &out->from_generation) < 0) {
        rc = error_set(err, -EINVAL, "%s: field \"from\" is \"%s\", not \"gNNNNNNNN/end\"", object,
                       from);
        goto out;
    }
    if (!from &&
        ((rc = format_get_sha256(root, out->sha256, true, object, err)) < 0 ||
         (rc = format_get_u64(root, "size", INT64_MAX, true, &out->size, object, err)) < 0 ||
         (rc = format_get_u64(root, "database_bytes", INT64_MAX, true, &out->database_bytes, object,
                              err)) < 0))
        goto out;
    rc = format_base_check(out, object, err);
out:
    json_decref(root);
    return rc;
}

/* ---- index.json ---- */

char *format_index_encode(const struct format_index *x, struct error *err)
{
    char gen[16], from[32], *text;
    json_t *root, *list;
    int rc = 0;

    if (format_index_check(x, "index.json", err) < 0)
        return NULL;
    root = json_object();
    list = json_array();
    if (!root || !list)
        goto nomem;
    rc |= format_set(root, "format", json_integer(FORMAT_VERSION));
    rc |= format_set(root, "database", json_string(x->database));
    for (size_t i = 0; i < x->count && rc == 0; i++) {
        const struct format_index_generation *g = &x->generations[i];
        json_t *item = json_object();
        if (!item || json_array_append_new(list, item) < 0)
            goto nomem;
        format_generation_name(g->generation, gen);
        rc |= format_set(item, "name", json_string(gen));
        if (g->first_seen_at_ms) {
            rc |= format_set_time(item, "first_seen_at", g->first_seen_at_ms);
            rc |= format_set_time(item, "last_seen_at", g->last_seen_at_ms);
        }
        if (g->base_from) {
            format_generation_name(g->base_from, from);
            strcat(from, "/end");
            rc |= format_set(item, "base", json_string(from));
        } else {
            rc |= format_set(item, "base", json_string("file"));
            if (g->snapshot)
                rc |= format_set(item, "snapshot", json_true());
        }
    }
    rc |= format_set(root, "generations", list);
    list = NULL;
    rc |= format_set_time(root, "updated_at", x->updated_at_ms);
    if (rc != 0)
        goto nomem;
    text = format_dump(root, err);
    json_decref(root);
    return text;
nomem:
    json_decref(list);
    json_decref(root);
    error_set(err, -ENOMEM, "out of memory encoding %s/replica/index.json", x->database);
    return NULL;
}

int format_index_decode(const char *text, size_t length, const char *object,
                        struct format_index *out, struct error *err)
{
    json_t *root = NULL, *list;
    const char *database = NULL, *name = NULL, *base = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    rc = format_load(text, length, object, &root, err);
    if (rc < 0)
        return rc;
    if ((rc = format_get_string(root, "database", true, &database, object, err)) < 0 ||
        (rc = format_get_time(root, "updated_at", true, &out->updated_at_ms, object, err)) < 0)
        goto out;
    out->database = strdup(database);
    list = json_object_get(root, "generations");
    if (!json_is_array(list)) {
        rc = error_set(err, -EINVAL, "%s: field \"generations\" is missing or not a list", object);
        goto out;
    }
    out->generations = calloc(json_array_size(list) + 1, sizeof *out->generations);
    if (!out->database || !out->generations) {
        rc = error_set(err, -ENOMEM, "%s: out of memory", object);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *item = json_array_get(list, i);
        struct format_index_generation *g = &out->generations[i];
        if (!json_is_object(item)) {
            rc = error_set(err, -EINVAL, "%s: generation %zu is not an object", object, i + 1);
            goto out;
        }
        if ((rc = format_get_string(item, "name", true, &name, object, err)) < 0 ||
            (rc = format_get_string(item, "base", true, &base, object, err)) < 0 ||
            (rc = format_get_time(item, "first_seen_at", false, &g->first_seen_at_ms, object,
                                  err)) < 0 ||
            (rc = format_get_time(item, "last_seen_at", false, &g->last_seen_at_ms, object, err)) <
                0) {
            error_prefix(err, "generation %zu: ", i + 1);
            goto out;
        }
        if (format_generation_parse(name, &g->generation) < 0) {
            rc = error_set(err, -EINVAL, "%s: generation %zu: \"name\" is \"%s\", not gNNNNNNNN",
                           object, i + 1, name);
            goto out;
        }
        json_t *snapshot = json_object_get(item, "snapshot");
        if (snapshot && !json_is_boolean(snapshot)) {
            rc = error_set(err, -EINVAL, "%s: generation %s: \"snapshot\" is not true or false",
                           object, name);
            goto out;
        }
        g->snapshot = json_is_true(snapshot);
        if (strcmp(base, "file") != 0 && format_parse_end_link(base, &g->base_from) < 0) {
            rc = error_set(err, -EINVAL,
                           "%s: generation %s: \"base\" is \"%s\", not \"file\" or "
                           "\"gNNNNNNNN/end\"",
                           object, name, base);
            goto out;
        }
        out->count = i + 1;
    }
    rc = format_index_check(out, object, err);
out:
    json_decref(root);
    if (rc < 0)
        format_index_free(out);
    return rc;
}

void format_index_free(struct format_index *index)
{
    free(index->database);
    free(index->generations);
    index->database = NULL;
    index->generations = NULL;
    index->count = 0;
}

/* ---- packs ---- */

void format_pack_name(uint32_t first_generation, uint32_t last_generation, uint64_t id,
                      char out[FORMAT_PACK_NAME_SIZE])
{
    snprintf(out, FORMAT_PACK_NAME_SIZE, "g%08" PRIu32 "-g%08" PRIu32 ".%012" PRIu64,
             first_generation, last_generation, id);
}

int format_pack_parse(const char *name, const char *suffix, uint32_t *first_generation,
                      uint32_t *last_generation, uint64_t *id)
{
    /* g00000001-g00000009.000000000042 is 32 characters. */
    char first[10], last[10];
    if (!name || !suffix || strlen(name) != 32 + strlen(suffix) || name[9] != '-' ||
        name[19] != '.' || !format_all_digits(name + 20, 12) || strcmp(name + 32, suffix) != 0)
        return -EINVAL;
    memcpy(first, name, 9);
    first[9] = '\0';
    memcpy(last, name + 10, 9);
    last[9] = '\0';
    uint32_t a, b;
    uint64_t n = format_digits_value(name + 20, 12);
    if (format_generation_parse(first, &a) < 0 || format_generation_parse(last, &b) < 0 || a > b ||
        n == 0)
        return -EINVAL;
    *first_generation = a;
    *last_generation = b;
    *id = n;
    return 0;
}

int format_pack_key(char *out, size_t size, const char *database, uint32_t first_generation,
                    uint32_t last_generation, uint64_t id, bool manifest, struct error *err)
{
    char name[FORMAT_PACK_NAME_SIZE];
    int n;
    if (!format_database_name_ok(database))
        return error_set(err, -EINVAL, "database name \"%s\" cannot name objects on a target",
                         database ? database : "");
    if (id == 0) {
        n = snprintf(out, size, "%s/replica/packs/", database);
    } else {
        if (first_generation == 0 || first_generation > last_generation ||
            last_generation > FORMAT_GENERATION_MAX || id > FORMAT_PACK_ID_MAX)
            return error_set(err, -EINVAL,
                             "%s: pack %" PRIu64 " of generations %" PRIu32 "..%" PRIu32
                             " not valid",
                             database, id, first_generation, last_generation);
        format_pack_name(first_generation, last_generation, id, name);
        n = snprintf(out, size, "%s/replica/packs/%s%s", database, name,
                     manifest ? ".pack.json" : ".pack");
    }
    if (n < 0 || (size_t)n >= size)
        return error_set(err, -ENAMETOOLONG, "%s: object key longer than %zu bytes", database,
                         size);
    return 0;
}

int format_packable_parse(const char *key, uint32_t *generation)
{
    char gen[10];
    uint64_t start, end;
    if (!key || strlen(key) < 10 || key[9] != '/')
        return -EINVAL;
    memcpy(gen, key, 9);
    gen[9] = '\0';
    if (format_generation_parse(gen, generation) < 0)
        return -EINVAL;
    const char *rest = key + 10;
    if (strcmp(rest, "base.json") == 0)
        return 0;
    if (strncmp(rest, "wal/", 4) != 0)
        return -EINVAL;
    rest += 4;
    if (format_segment_parse(rest, ".wal.gz", &start, &end) == 0 ||
        format_segment_parse(rest, ".wal.gz.age", &start, &end) == 0 ||
        format_segment_parse(rest, ".wal.json", &start, &end) == 0)
        return 0;
    return -EINVAL;
}

/* The checks of one object line: its key, its hash, and that it starts
 * where the one before it ended (`offset`). */
static int format_pack_object_check(const struct format_pack *p, const struct format_pack_object *o,
                                    uint64_t offset, const char *object, struct error *err)
{
    uint32_t generation;
    if (format_packable_parse(o->key, &generation) < 0)
        return error_set(err, -EINVAL,
                         "%s: \"%s\" is not a key a pack may hold (gN/base.json, "
                         "gN/wal/S-E.wal.gz[.age], gN/wal/S-E.wal.json)",
                         object, o->key);
    if (generation < p->first_generation || generation > p->last_generation)
        return error_set(err, -EINVAL,
                         "%s: object %s is outside the pack's generations %" PRIu32 "..%" PRIu32,
                         object, o->key, p->first_generation, p->last_generation);
    if (o->offset != offset)
        return error_set(err, -EINVAL,
                         "%s: object %s starts at %" PRIu64 ", not at %" PRIu64
                         " where the one before it ends",
                         object, o->key, o->offset, offset);
    if (!format_sha256_ok(o->sha256))
        return error_set(err, -EINVAL, "%s: object %s: \"sha256\" is not 64 hex digits", object,
                         o->key);
    if (o->size > p->size - offset)
        return error_set(err, -EINVAL, "%s: object %s ends after the pack's %" PRIu64 " bytes",
                         object, o->key, p->size);
    return 0;
}

static int format_pack_header_check(const struct format_pack *p, const char *object,
                                    struct error *err)
{
    if (p->first_generation == 0 || p->first_generation > p->last_generation ||
        p->last_generation > FORMAT_GENERATION_MAX)
        return error_set(err, -EINVAL, "%s: generations %" PRIu32 "..%" PRIu32 " not valid", object,
                         p->first_generation, p->last_generation);
    if (p->id == 0 || p->id > FORMAT_PACK_ID_MAX)
        return error_set(err, -EINVAL, "%s: \"id\" out of range 1..%llu", object,
                         (unsigned long long)FORMAT_PACK_ID_MAX);
    if (p->level == 0)
        return error_set(err, -EINVAL, "%s: \"level\" is 0", object);
    if (!format_sha256_ok(p->sha256))
        return error_set(err, -EINVAL, "%s: \"sha256\" is not 64 lowercase hex digits", object);
    if (p->count == 0 || p->count > FORMAT_PACK_OBJECTS_MAX)
        return error_set(err, -EINVAL, "%s: \"count\" %zu is not in 1..%d", object, p->count,
                         FORMAT_PACK_OBJECTS_MAX);
    return 0;
}

char *format_pack_header_encode(const struct format_pack *p, struct error *err)
{
    char name[FORMAT_PACK_NAME_SIZE], *text = NULL;
    int rc = 0;
    format_pack_name(p->first_generation, p->last_generation, p->id, name);
    if (format_pack_header_check(p, name, err) < 0)
        return NULL;
    json_t *root = json_object();
    if (!root)
        goto nomem;
    rc |= format_set(root, "format", json_integer(FORMAT_VERSION));
    rc |= format_set(root, "database", json_string(p->database));
    rc |= format_set(root, "first_generation", json_integer(p->first_generation));
    rc |= format_set(root, "last_generation", json_integer(p->last_generation));
    rc |= format_set(root, "id", format_json_u64(p->id));
    rc |= format_set(root, "level", json_integer(p->level));
    rc |= format_set(root, "size", format_json_u64(p->size));
    rc |= format_set(root, "sha256", json_string(p->sha256));
    rc |= format_set(root, "count", format_json_u64(p->count));
    if (rc == 0)
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text)
        return text;
nomem:
    error_set(err, -ENOMEM, "out of memory encoding %s.pack.json", name);
    return NULL;
}

char *format_pack_object_encode(const struct format_pack_object *o, struct error *err)
{
    char *text = NULL;
    int rc = 0;
    json_t *item = json_object();
    if (item) {
        rc |= format_set(item, "key", json_string(o->key));
        rc |= format_set(item, "offset", format_json_u64(o->offset));
        rc |= format_set(item, "size", format_json_u64(o->size));
        rc |= format_set(item, "sha256", json_string(o->sha256));
        if (rc == 0)
            text = json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(item);
    }
    if (!text)
        error_set(err, -ENOMEM, "out of memory encoding a pack manifest line");
    return text;
}

int format_pack_header_decode(const char *line, size_t length, const char *object,
                              struct format_pack *out, struct error *err)
{
    json_t *root = NULL;
    const char *database = NULL;
    uint64_t level = 0, count = 0;
    int rc;

    memset(out, 0, sizeof *out);
    rc = format_load(line, length, object, &root, err);
    if (rc < 0)
        return rc;
    if ((rc = format_get_string(root, "database", true, &database, object, err)) < 0 ||
        (rc = format_get_u32(root, "first_generation", true, &out->first_generation, object, err)) <
            0 ||
        (rc = format_get_u32(root, "last_generation", true, &out->last_generation, object, err)) <
            0 ||
        (rc = format_get_u64(root, "id", FORMAT_PACK_ID_MAX, true, &out->id, object, err)) < 0 ||
        (rc = format_get_u64(root, "level", 64, true, &level, object, err)) < 0 ||
        (rc = format_get_u64(root, "size", INT64_MAX, true, &out->size, object, err)) < 0 ||
        (rc = format_get_sha256(root, out->sha256, true, object, err)) < 0 ||
        (rc = format_get_u64(root, "count", FORMAT_PACK_OBJECTS_MAX, true, &count, object, err)) <
            0)
        goto out;
    out->level = (uint32_t)level;
    out->count = (size_t)count;
    if (!(out->database = strdup(database))) {
        rc = error_set(err, -ENOMEM, "%s: out of memory", object);
        goto out;
    }
    rc = format_pack_header_check(out, object, err);
out:
    json_decref(root);
    if (rc < 0)
        format_pack_free(out);
    return rc;
}

int format_pack_object_decode(const char *line, size_t length, const struct format_pack *pack,
                              uint64_t offset, const char *object, struct format_pack_object *out,
                              struct error *err)
{
    json_error_t jerr;
    const char *key = NULL;
    int rc;
    memset(out, 0, sizeof *out);
    json_t *item = json_loadb(line, length, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(item)) {
        json_decref(item);
        return error_set(err, -EINVAL,
                         "%s: an object line is not a JSON object; the manifest is damaged",
                         object);
    }
    if ((rc = format_get_string(item, "key", true, &key, object, err)) < 0 ||
        (rc = format_get_u64(item, "offset", INT64_MAX, true, &out->offset, object, err)) < 0 ||
        (rc = format_get_u64(item, "size", INT64_MAX, true, &out->size, object, err)) < 0 ||
        (rc = format_get_sha256(item, out->sha256, true, object, err)) < 0)
        goto out;
    if (strlen(key) >= sizeof out->key) {
        rc = error_set(err, -EINVAL, "%s: \"%s\" is not a key a pack may hold", object, key);
        goto out;
    }
    snprintf(out->key, sizeof out->key, "%s", key);
    format_packable_parse(out->key, &out->generation);
    rc = format_pack_object_check(pack, out, offset, object, err);
out:
    json_decref(item);
    return rc;
}

char *format_pack_encode(const struct format_pack *p, struct error *err)
{
    char name[FORMAT_PACK_NAME_SIZE];
    uint64_t offset = 0;
    format_pack_name(p->first_generation, p->last_generation, p->id, name);
    for (size_t i = 0; i < p->count; i++) {
        if (format_pack_object_check(p, &p->objects[i], offset, name, err) < 0)
            return NULL;
        offset += p->objects[i].size;
    }
    if (offset != p->size) {
        error_set(err, -EINVAL, "%s: the objects end at %" PRIu64 ", the pack is %" PRIu64 " bytes",
                  name, offset, p->size);
        return NULL;
    }
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    char *line = out ? format_pack_header_encode(p, err) : NULL;
    int rc = line ? 0 : -1;
    if (line)
        fprintf(out, "%s\n", line);
    free(line);
    for (size_t i = 0; rc == 0 && i < p->count; i++) {
        if (!(line = format_pack_object_encode(&p->objects[i], err)))
            rc = -1;
        else
            fprintf(out, "%s\n", line);
        free(line);
    }
    if (out && fclose(out) != 0)
        rc = -1;
    if (rc != 0 || !out) {
        free(text);
        if (!out)
            error_set(err, -ENOMEM, "out of memory encoding %s.pack.json", name);
        return NULL;
    }
    return text;
}

int format_pack_decode(const char *text, size_t length, const char *object, struct format_pack *out,
                       struct error *err)
{
    const char *end = text + length, *line = text;
    const char *newline = memchr(line, '\n', length);
    if (!newline)
        return error_set(err, -EINVAL, "%s: no header line; the manifest is damaged", object);
    int rc = format_pack_header_decode(line, (size_t)(newline - line), object, out, err);
    if (rc < 0)
        return rc;
    out->objects = calloc(out->count, sizeof *out->objects);
    if (!out->objects) {
        format_pack_free(out);
        return error_set(err, -ENOMEM, "%s: out of memory", object);
    }
    uint64_t offset = 0;
    size_t count = out->count;
    out->count = 0;
    line = newline + 1;
    while (line < end && out->count < count) {
        newline = memchr(line, '\n', (size_t)(end - line));
        const char *stop = newline ? newline : end;
        rc = format_pack_object_decode(line, (size_t)(stop - line), out, offset, object,
                                       &out->objects[out->count], err);
        if (rc < 0) {
            error_prefix(err, "line %zu: ", out->count + 2);
            format_pack_free(out);
            return rc;
        }
        offset += out->objects[out->count].size;
        out->count++;
        line = newline ? newline + 1 : end;
    }
    if (out->count != count || line < end || offset != out->size) {
        rc = error_set(err, -EINVAL,
                       "%s: %zu of %zu objects ending at %" PRIu64 " in a pack of %" PRIu64
                       " bytes; the manifest is damaged or cut short",
                       object, out->count, count, offset, out->size);
        format_pack_free(out);
        return rc;
    }
    return 0;
}

void format_pack_free(struct format_pack *pack)
{
    free(pack->database);
    free(pack->objects);
    pack->database = NULL;
    pack->objects = NULL;
    pack->count = 0;
}
