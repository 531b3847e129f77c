/*
 * test_manifest.c: the manifest's JSON round trip, what a damaged or foreign
 * manifest produces, and the UTC stamps in archive names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "archive/manifest.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA_B "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* 2026-11-25T08:00:00Z: 20 782 days after 1970-01-01 (date -u -d 2026-11-25 +%s). */
static const time_t november_25 = (time_t)20782 * 86400 + 8 * 3600;

static void fill_example(struct manifest *m)
{
    memset(m, 0, sizeof *m);
    strcpy(m->database, "app");
    m->created = november_25;
    strcpy(m->archive, "app-20261125T080000Z.db.gz");
    strcpy(m->archive_sha256, SHA_A);
    m->archive_bytes = 123456789012;
    m->database_bytes = 9876543210;
    m->page_size = 4096;
    m->page_count = 2411265;
    strcpy(m->sqlite_version, "3.40.1");
    strcpy(m->source_path, "/var/lib/app/app \"prod\".db");
    strcpy(m->compression, "gzip");
    m->level = 6;
    strcpy(m->journal_mode, "wal");
    strcpy(m->verify_method, "integrity_check");
    strcpy(m->verify_result, "ok");
    m->verified = true;
    strcpy(m->schema_sha256, SHA_B);
    strcpy(m->host, "db1.example.org");
    strcpy(m->sqlprodd_version, "0.1.0");
}

static void assert_manifests_equal(const struct manifest *a, const struct manifest *b)
{
    assert_string_equal(a->database, b->database);
    assert_int_equal(a->created, b->created);
    assert_string_equal(a->archive, b->archive);
    assert_string_equal(a->archive_sha256, b->archive_sha256);
    assert_int_equal(a->archive_bytes, b->archive_bytes);
    assert_int_equal(a->database_bytes, b->database_bytes);
    assert_int_equal(a->page_size, b->page_size);
    assert_int_equal(a->page_count, b->page_count);
    assert_string_equal(a->sqlite_version, b->sqlite_version);
    assert_string_equal(a->source_path, b->source_path);
    assert_string_equal(a->compression, b->compression);
    assert_int_equal(a->level, b->level);
    assert_string_equal(a->journal_mode, b->journal_mode);
    assert_string_equal(a->verify_method, b->verify_method);
    assert_string_equal(a->verify_result, b->verify_result);
    assert_int_equal(a->verified, b->verified);
    assert_string_equal(a->schema_sha256, b->schema_sha256);
    assert_string_equal(a->host, b->host);
    assert_string_equal(a->sqlprodd_version, b->sqlprodd_version);
}

static void json_round_trip_keeps_every_field(void **state)
{
    (void)state;
    struct manifest original, parsed;
    struct error err = {0};
    char *json = NULL;
    fill_example(&original);

    assert_int_equal(manifest_to_json(&original, &json, &err), 0);
    assert_int_equal(manifest_from_json(json, strlen(json), &parsed, &err), 0);
    assert_manifests_equal(&original, &parsed);
    free(json);
}

static void json_follows_the_documented_format(void **state)
{
    (void)state;
    struct manifest m;
    struct error err = {0};
    char *json = NULL;
    fill_example(&m);
    assert_int_equal(manifest_to_json(&m, &json, &err), 0);

    size_t length = strlen(json);
    assert_true(length > 2);
    assert_int_equal(json[0], '{');
    assert_int_equal(json[length - 1], '\n');
    assert_non_null(strstr(json, "\n  \"format\": 1,")); /* pretty, format first */

    json_error_t problem;
    json_t *root = json_loads(json, 0, &problem);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "format")), 1);
    assert_string_equal(json_string_value(json_object_get(root, "created")),
                        "2026-11-25T08:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(root, "archive_bytes")), 123456789012);
    json_t *verification = json_object_get(root, "verification");
    assert_string_equal(json_string_value(json_object_get(verification, "method")),
                        "integrity_check");
    assert_true(json_is_true(json_object_get(verification, "verified")));
    json_decref(root);
    free(json);
}

static const char minimal[] = "{\"format\": 1, \"database\": \"app\","
                              " \"created\": \"2026-11-25T08:00:00Z\","
                              " \"archive\": \"app-20261125T080000Z.db.gz\","
                              " \"archive_sha256\": \"" SHA_A "\"}";

static void minimal_manifest_parses_with_defaults(void **state)
{
    (void)state;
    struct manifest m;
    struct error err = {0};
    assert_int_equal(manifest_from_json(minimal, strlen(minimal), &m, &err), 0);
    assert_string_equal(m.database, "app");
    assert_int_equal(m.created, november_25);
    assert_false(m.verified);
    assert_int_equal(m.archive_bytes, 0);
    assert_string_equal(m.host, "");
    /* A manifest from before journal_mode was recorded: restore keeps the
     * mode the archive holds. */
    assert_string_equal(m.journal_mode, "");
}

static void missing_required_fields_are_named(void **state)
{
    (void)state;
    static const char *required[] = {"database", "created", "archive", "archive_sha256"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        json_t *root = json_loads(minimal, 0, NULL);
        assert_non_null(root);
        assert_int_equal(json_object_del(root, required[i]), 0);
        char *text = json_dumps(root, 0);
        json_decref(root);

        struct manifest m;
        struct error err = {0};
        char expected[128];
        snprintf(expected, sizeof expected, "manifest: required field \"%s\" is missing",
                 required[i]);
        assert_int_equal(manifest_from_json(text, strlen(text), &m, &err), -EINVAL);
        assert_string_equal(err.message, expected);
        free(text);
    }
}

static void garbage_json_reports_line_and_column(void **state)
{
    (void)state;
    static const char garbage[] = "{\n  \"database\": \"app\",\n  oops\n}\n";
    struct manifest m;
    struct error err = {0};
    assert_int_equal(manifest_from_json(garbage, strlen(garbage), &m, &err), -EINVAL);
    /* jansson's position is where the bad token ends. */
    assert_string_equal(err.message, "manifest: invalid JSON at line 3, column 6: "
                                     "string or '}' expected near 'oops'");

    static const char *not_objects[] = {"[]", "42", "\"text\"", ""};
    for (size_t i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++)
        assert_int_equal(manifest_from_json(not_objects[i], strlen(not_objects[i]), &m, &err),
                         -EINVAL);
}

static void unknown_fields_are_ignored(void **state)
{
    (void)state;
    json_t *root = json_loads(minimal, 0, NULL);
    json_object_set_new(root, "replication",
                        json_pack("{s:s, s:[i,i]}", "scheme", "wal", "keys", 1, 2));
    json_object_set_new(root, "retention_hint", json_string("forever"));
    char *text = json_dumps(root, 0);
    json_decref(root);

    struct manifest m;
    struct error err = {0};
    assert_int_equal(manifest_from_json(text, strlen(text), &m, &err), 0);
    assert_string_equal(m.archive, "app-20261125T080000Z.db.gz");
    free(text);
}

/* An encrypted archive's manifest says so, and to whom; a scheme this
 * sqlprodd does not know is refused rather than read as plaintext. */
static void encryption_round_trips(void **state)
{
    (void)state;
    struct manifest m, back;
    struct error err = {0};
    char *text = NULL;
    assert_int_equal(manifest_from_json(minimal, strlen(minimal), &m, &err), 0);
    assert_false(m.encrypted);
    m.encrypted = true;
    snprintf(m.recipients, sizeof m.recipients, "%s",
             "age1vw5ler3arx9twtaks473z5jm7zww5vz58046jsar6hk42klf7c5ssnek8t, "
             "age1rk6jz2cu9w25tezhfym94253cq5e7chu5sjrkp84dxfjpq0u8ugs87kuew");
    assert_int_equal(manifest_to_json(&m, &text, &err), 0);
    assert_non_null(strstr(text, "\"format\": \"age-encryption.org/v1\""));
    assert_int_equal(manifest_from_json(text, strlen(text), &back, &err), 0);
    assert_true(back.encrypted);
    assert_string_equal(back.recipients, m.recipients);
    free(text);

    json_t *root = json_loads(minimal, 0, NULL);
    json_object_set_new(root, "encryption", json_pack("{s:s}", "format", "aes-256-cbc"));
    text = json_dumps(root, 0);
    json_decref(root);
    assert_int_equal(manifest_from_json(text, strlen(text), &back, &err), -EINVAL);
    assert_non_null(strstr(err.message, "encryption"));
    free(text);
}

struct bad_field {
    const char *key;
    json_t *(*make)(void);
    const char *expected; /* a substring of the message */
};

static json_t *make_traversal(void)
{
    return json_string("../../etc/passwd");
}
static json_t *make_short_hash(void)
{
    return json_string("abc123");
}
static json_t *make_string_number(void)
{
    return json_string("12");
}
static json_t *make_format_two(void)
{
    return json_integer(2);
}
static json_t *make_local_time(void)
{
    return json_string("2026-11-25 08:00:00");
}
static json_t *make_negative(void)
{
    return json_integer(-1);
}
static json_t *make_number(void)
{
    return json_integer(7);
}

static json_t *make_sql_injection(void)
{
    return json_string("wal;drop");
}

static void wrong_fields_are_refused_with_the_field_named(void **state)
{
    (void)state;
    const struct bad_field cases[] = {
        {"archive", make_traversal, "\"archive\" must be a plain file name"},
        {"database", make_traversal, "\"database\" must be a plain file name"},
        {"archive_sha256", make_short_hash, "\"archive_sha256\" must be 64 hexadecimal digits"},
        {"schema_sha256", make_short_hash, "\"schema_sha256\" must be 64 hexadecimal digits"},
        {"archive_bytes", make_string_number, "\"archive_bytes\" must be an integer"},
        {"archive_bytes", make_negative, "\"archive_bytes\" is out of range"},
        {"format", make_format_two, "format 2 is not supported"},
        {"created", make_local_time, "\"created\" is \"2026-11-25 08:00:00\""},
        {"host", make_number, "\"host\" must be a string"},
        {"journal_mode", make_sql_injection, "\"journal_mode\" must be a word like \"wal\""},
        {"journal_mode", make_number, "\"journal_mode\" must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *root = json_loads(minimal, 0, NULL);
        json_object_set_new(root, cases[i].key, cases[i].make());
        char *text = json_dumps(root, 0);
        json_decref(root);

        struct manifest m;
        struct error err = {0};
        assert_int_equal(manifest_from_json(text, strlen(text), &m, &err), -EINVAL);
        if (!strstr(err.message, cases[i].expected))
            fail_msg("%s: unexpected message: %s", cases[i].key, err.message);
        free(text);
    }
}

static void uppercase_hash_is_read_as_lowercase(void **state)
{
    (void)state;
    char text[sizeof minimal];
    strcpy(text, minimal);
    char *hash = strstr(text, SHA_A);
    for (size_t i = 0; i < 64; i++)
        hash[i] = (char)(hash[i] >= 'a' && hash[i] <= 'f' ? hash[i] - 32 : hash[i]);
    struct manifest m;
    struct error err = {0};
    assert_int_equal(manifest_from_json(text, strlen(text), &m, &err), 0);
    assert_string_equal(m.archive_sha256, SHA_A);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The fingerprint and the chain link round-trip; the first backup of a chain
 * writes null links; a lone "previous" is refused. */
static void fingerprint_and_chain_round_trip(void **state)
{
    (void)state;
    struct manifest m, back;
    struct error err = {0};
    char *json = NULL;
    fill_example(&m);
    m.table_count = 12;
    m.row_count = 3456789;
    strcpy(m.rows_sha256, SHA_B);
    strcpy(m.plain_sha256, SHA_B);
    strcpy(m.previous_backup, "20261125T070000Z");
    strcpy(m.previous_sha256, SHA_A);
    manifest_chain_hash(&m, m.chain_sha256);
    assert_int_equal(manifest_to_json(&m, &json, &err), 0);
    assert_int_equal(manifest_from_json(json, strlen(json), &back, &err), 0);
    assert_int_equal(back.table_count, 12);
    assert_int_equal(back.row_count, 3456789);
    assert_string_equal(back.rows_sha256, SHA_B);
    assert_string_equal(back.plain_sha256, SHA_B);
    assert_string_equal(back.previous_backup, "20261125T070000Z");
    assert_string_equal(back.previous_sha256, SHA_A);
    assert_string_equal(back.chain_sha256, m.chain_sha256);
    free(json);

    m.previous_backup[0] = m.previous_sha256[0] = '\0';
    assert_int_equal(manifest_to_json(&m, &json, &err), 0);
    assert_non_null(strstr(json, "\"previous\": null"));
    assert_int_equal(manifest_from_json(json, strlen(json), &back, &err), 0);
    assert_string_equal(back.previous_backup, "");
    free(json);

    const char *lone = "{\"database\":\"app\",\"created\":\"2026-11-25T08:00:00Z\","
                       "\"archive\":\"a.db.gz\",\"archive_sha256\":\"" SHA_A "\","
                       "\"chain\":{\"sha256\":\"" SHA_A "\",\"previous\":\"20261125T070000Z\"}}";
    assert_int_equal(manifest_from_json(lone, strlen(lone), &back, &err), -EINVAL);
    assert_non_null(strstr(err.message, "chain.previous"));
}

/* The chain hash changes with every field that says what the backup holds,
 * and with the link; it ignores what differs between the local manifest and
 * the one of a copy sealed on upload. */
static void chain_hash_covers_content_and_link(void **state)
{
    (void)state;
    struct manifest m, other;
    char base[65], changed[65];
    fill_example(&m);
    manifest_chain_hash(&m, base);
    assert_int_equal(strlen(base), 64);

    other = m;
    other.row_count = 1;
    manifest_chain_hash(&other, changed);
    assert_string_not_equal(base, changed);
    other = m;
    strcpy(other.previous_sha256, SHA_A);
    manifest_chain_hash(&other, changed);
    assert_string_not_equal(base, changed);
    other = m;
    other.database_bytes++;
    manifest_chain_hash(&other, changed);
    assert_string_not_equal(base, changed);
    other = m;
    strcpy(other.archive_sha256, SHA_B);
    manifest_chain_hash(&other, changed);
    assert_string_not_equal(base, changed);

    /* Sealed on upload: another archive, its hash, size and name, the plain
     * archive's hash kept in plain_sha256. */
    other = m;
    strcpy(other.plain_sha256, m.archive_sha256);
    strcpy(other.archive_sha256, SHA_B);
    strcpy(other.archive, "app-20261125T080000Z.db.gz.age");
    other.archive_bytes += 200;
    other.encrypted = true;
    manifest_chain_hash(&other, changed);
    assert_string_equal(base, changed);
}

static void write_and_read_through_a_file(void **state)
{
    (void)state;
    char root[256], path[PATH_MAX], temp[PATH_MAX + 32], expected[PATH_MAX + 64];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(root, sizeof root, "%s/sqlprodd-manifest-XXXXXX", tmp);
    assert_non_null(mkdtemp(root));
    assert_int_equal(fs_join(path, sizeof path, root, "app-20261125T080000Z.db.gz.json"), 0);
    snprintf(temp, sizeof temp, "%s%s", path, FS_TEMP_SUFFIX);

    struct manifest original, parsed;
    struct error err = {0};
    fill_example(&original);
    assert_int_equal(manifest_write(path, &original, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(access(temp, F_OK), -1);
    assert_int_equal(manifest_read(path, &parsed, &err), 0);
    assert_manifests_equal(&original, &parsed);

    /* A damaged file is named in the message. */
    assert_int_equal(fs_write_file_atomically(path, "{\"database\":", 12, 0600, &err), 0);
    assert_int_equal(manifest_read(path, &parsed, &err), -EINVAL);
    snprintf(expected, sizeof expected, "manifest %s: invalid JSON at line 1, column ", path);
    if (strncmp(err.message, expected, strlen(expected)) != 0)
        fail_msg("unexpected message: %s", err.message);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(manifest_read(path, &parsed, &err), -ENOENT);
    assert_non_null(strstr(err.message, path));
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void stamps_round_trip_in_utc(void **state)
{
    (void)state;
    char stamp[17];
    time_t t = 0;

    manifest_format_stamp(november_25, stamp);
    assert_string_equal(stamp, "20261125T080000Z");
    assert_int_equal(manifest_parse_stamp(stamp, &t), 0);
    assert_int_equal(t, november_25);

    manifest_format_stamp(0, stamp);
    assert_string_equal(stamp, "19700101T000000Z");

    /* Leap day and the last second of a year. */
    assert_int_equal(manifest_parse_stamp("20280229T235959Z", &t), 0);
    manifest_format_stamp(t, stamp);
    assert_string_equal(stamp, "20280229T235959Z");
    assert_int_equal(manifest_parse_stamp("20261231T235959Z", &t), 0);
    assert_int_equal(t + 1, (time_t)20819 * 86400); /* 2027-01-01 */
}

static void stamps_reject_what_is_not_a_stamp(void **state)
{
    (void)state;
    static const char *bad[] = {
        "2026-11-25",
        "20261325T000000Z",
        "20260230T000000Z",
        "20261125T240000Z",
        "20261125T086000Z",
        "20261125T080060Z",
        "20261125T080000",
        "20261125T080000Zx",
        "20261125 080000Z",
        "2026112aT080000Z",
        "",
        "20261100T000000Z",
        "+2026125T080000Z",
        "2026-11-25T08:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        time_t t = 12345;
        if (manifest_parse_stamp(bad[i], &t) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(t, 12345);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_round_trip_keeps_every_field),
        cmocka_unit_test(json_follows_the_documented_format),
        cmocka_unit_test(minimal_manifest_parses_with_defaults),
        cmocka_unit_test(missing_required_fields_are_named),
        cmocka_unit_test(garbage_json_reports_line_and_column),
        cmocka_unit_test(unknown_fields_are_ignored),
        cmocka_unit_test(encryption_round_trips),
        cmocka_unit_test(wrong_fields_are_refused_with_the_field_named),
        cmocka_unit_test(uppercase_hash_is_read_as_lowercase),
        cmocka_unit_test(fingerprint_and_chain_round_trip),
        cmocka_unit_test(chain_hash_covers_content_and_link),
        cmocka_unit_test(write_and_read_through_a_file),
        cmocka_unit_test(stamps_round_trip_in_utc),
        cmocka_unit_test(stamps_reject_what_is_not_a_stamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
