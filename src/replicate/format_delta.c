/*
 * format_delta.c: the names and the manifest of a page delta (format.h,
 * sqlprodd-format(5) DELTAS). Pure: text in, text out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "replicate/format.h"
#include "replicate/format_json.h"

void format_delta_name(uint32_t first_generation, uint32_t last_generation,
                       char out[FORMAT_DELTA_NAME_SIZE])
{
    snprintf(out, FORMAT_DELTA_NAME_SIZE, "g%08" PRIu32 "-g%08" PRIu32, first_generation,
             last_generation);
}

int format_delta_parse(const char *name, const char *suffix, uint32_t *first_generation,
                       uint32_t *last_generation)
{
    char first[10], last[10];
    uint32_t a, b;
    if (strlen(name) != 19 + strlen(suffix) || strcmp(name + 19, suffix) != 0 || name[9] != '-')
        return -EINVAL;
    memcpy(first, name, 9);
    first[9] = '\0';
    memcpy(last, name + 10, 9);
    last[9] = '\0';
    if (format_generation_parse(first, &a) < 0 || format_generation_parse(last, &b) < 0 || a > b)
        return -EINVAL;
    *first_generation = a;
    *last_generation = b;
    return 0;
}

int format_delta_key(char *out, size_t size, const char *database, uint32_t first_generation,
                     uint32_t last_generation, const char *suffix, struct error *err)
{
    char name[FORMAT_DELTA_NAME_SIZE];
    int n;
    if (!format_database_name_ok(database))
        return error_set(err, -EINVAL, "database name \"%s\" cannot name objects on a target",
                         database ? database : "");
    if (first_generation == 0) {
        n = snprintf(out, size, "%s/replica/deltas/", database);
    } else {
        if (first_generation > last_generation || last_generation > FORMAT_GENERATION_MAX)
            return error_set(err, -EINVAL,
                             "%s: delta of generations %" PRIu32 "..%" PRIu32 " not valid",
                             database, first_generation, last_generation);
        format_delta_name(first_generation, last_generation, name);
        n = snprintf(out, size, "%s/replica/deltas/%s%s", database, name, suffix);
    }
    if (n < 0 || (size_t)n >= size)
        return error_set(err, -ENAMETOOLONG, "%s: object key longer than %zu bytes", database,
                         size);
    return 0;
}

static int format_delta_check(const struct format_delta *d, const char *object, struct error *err)
{
    if (d->first_generation == 0 || d->first_generation > d->last_generation ||
        d->last_generation > FORMAT_GENERATION_MAX)
        return error_set(err, -EINVAL,
                         "%s: generations %" PRIu32 "..%" PRIu32 " are not a range of 1..%u",
                         object, d->first_generation, d->last_generation, FORMAT_GENERATION_MAX);
    if (!format_page_size_ok(d->page_size))
        return error_set(err, -EINVAL,
                         "%s: page_size %" PRIu32 " is not a power of two in 512..65536", object,
                         d->page_size);
    if (d->db_pages == 0 || d->pages > d->db_pages)
        return error_set(err, -EINVAL,
                         "%s: holds %" PRIu64 " pages of a database of %" PRIu32
                         " pages (at least 1, and no more pages than that)",
                         object, d->pages, d->db_pages);
    if (!format_sha256_ok(d->sha256))
        return error_set(err, -EINVAL, "%s: \"sha256\" is not 64 hex digits", object);
    return format_encryption_check(&d->encryption, object, err);
}

char *format_delta_encode(const struct format_delta *d, struct error *err)
{
    char name[FORMAT_DELTA_NAME_SIZE], object[FORMAT_DELTA_NAME_SIZE + 16], first[16], last[16];
    char *text;
    int rc = 0;
    format_delta_name(d->first_generation, d->last_generation, name);
    snprintf(object, sizeof object, "%s" FORMAT_DELTA_MANIFEST, name);
    if (format_delta_check(d, object, err) < 0)
        return NULL;
    json_t *root = json_object();
    if (!root)
        goto nomem;
    format_generation_name(d->first_generation, first);
    format_generation_name(d->last_generation, last);
    rc |= format_set(root, "format", json_integer(FORMAT_VERSION));
    rc |= format_set(root, "first_generation", json_string(first));
    rc |= format_set(root, "last_generation", json_string(last));
    rc |= format_set(root, "page_size", json_integer(d->page_size));
    rc |= format_set(root, "db_pages", json_integer(d->db_pages));
    rc |= format_set(root, "pages", format_json_u64(d->pages));
    rc |= format_set(root, "wal_bytes", format_json_u64(d->wal_bytes));
    rc |= format_set(root, "sha256", json_string(d->sha256));
    rc |= format_set(root, "size", format_json_u64(d->size));
    rc |= format_set_time(root, "built_at", d->built_at_ms);
    rc |= format_set_encryption(root, &d->encryption);
    if (rc != 0)
        goto nomem;
    text = format_dump(root, err);
    json_decref(root);
    return text;
nomem:
    json_decref(root);
    error_set(err, -ENOMEM, "out of memory encoding %s", object);
    return NULL;
}

static int format_get_generation(json_t *root, const char *key, uint32_t *out, const char *object,
                                 struct error *err)
{
    const char *text = NULL;
    int rc = format_get_string(root, key, true, &text, object, err);
    if (rc == 0 && format_generation_parse(text, out) < 0)
        rc =
            error_set(err, -EINVAL, "%s: field \"%s\" is \"%s\", not gNNNNNNNN", object, key, text);
    return rc;
}

int format_delta_decode(const char *text, size_t length, const char *object,
                        struct format_delta *out, struct error *err)
{
    json_t *root = NULL;
    memset(out, 0, sizeof *out);
    int rc = format_load(text, length, object, &root, err);
    if (rc < 0)
        return rc;
    if ((rc = format_get_generation(root, "first_generation", &out->first_generation, object,
                                    err)) < 0 ||
        (rc = format_get_generation(root, "last_generation", &out->last_generation, object, err)) <
            0 ||
        (rc = format_get_u32(root, "page_size", true, &out->page_size, object, err)) < 0 ||
        (rc = format_get_u32(root, "db_pages", true, &out->db_pages, object, err)) < 0 ||
        (rc = format_get_u64(root, "pages", UINT32_MAX, true, &out->pages, object, err)) < 0 ||
        (rc = format_get_u64(root, "wal_bytes", INT64_MAX, false, &out->wal_bytes, object, err)) <
            0 ||
        (rc = format_get_sha256(root, out->sha256, true, object, err)) < 0 ||
        (rc = format_get_u64(root, "size", INT64_MAX, true, &out->size, object, err)) < 0 ||
        (rc = format_get_time(root, "built_at", true, &out->built_at_ms, object, err)) < 0 ||
        (rc = format_get_encryption(root, &out->encryption, object, err)) < 0)
        goto out;
    rc = format_delta_check(out, object, err);
out:
    json_decref(root);
    return rc;
}
