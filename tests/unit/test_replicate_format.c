/*
 * test_replicate_format.c: the replica's object names and its JSON manifests
 * (segment sidecar, base.json, index.json, pack manifests): round trips keep every
 * field, names sort in WAL order, and damaged or foreign manifests are
 * refused with a message that names the object and the field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicate/format.h"

#define SHA_A       "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SIDECAR_KEY "app/replica/g00000002/wal/000000000000-000000012416.wal.json"

/* 2026-12-02T11:24:07.123Z */
static const int64_t december_2 = (int64_t)1796210647 * 1000 + 123;

static struct format_commit example_commits[3];

/* Page size 4096: a frame is 4120 bytes, the first frame starts at 32. */
static void fill_segment(struct format_segment *s)
{
    memset(s, 0, sizeof *s);
    s->generation = 2;
    s->start = 0;
    s->end = 32 + 3 * 4120;
    s->page_size = 4096;
    s->salt[0] = 0x663f48f2u;
    s->salt[1] = 0xef0e95bau;
    s->checksum[0] = 0xfffffffeu;
    s->checksum[1] = 7;
    s->big_endian_checksum = false;
    strcpy(s->sha256, SHA_A);
    s->size = 977;
    example_commits[0] = (struct format_commit){1, 32 + 4120, 2, december_2};
    example_commits[1] = (struct format_commit){2, 32 + 2 * 4120, 3, december_2 + 1};
    example_commits[2] = (struct format_commit){3, 32 + 3 * 4120, 1, december_2 + 1000};
    s->commits = example_commits;
    s->commit_count = 3;
}

static void names_are_fixed_width_and_sort_in_wal_order(void **state)
{
    (void)state;
    char gen[16], a[32], b[32], key[FORMAT_KEY_SIZE];
    uint32_t g;
    uint64_t start, end;
    struct error err = {0};

    format_generation_name(1, gen);
    assert_string_equal(gen, "g00000001");
    assert_int_equal(format_generation_parse("g00000042", &g), 0);
    assert_int_equal(g, 42);
    assert_int_equal(format_generation_parse("g00000000", &g), -EINVAL);
    assert_int_equal(format_generation_parse("g0000001", &g), -EINVAL);
    assert_int_equal(format_generation_parse("g0000000x", &g), -EINVAL);

    format_segment_name(0, 111272, a);
    assert_string_equal(a, "000000000000-000000111272");
    format_segment_name(111272, 1000000000, b);
    assert_true(strcmp(a, b) < 0);
    assert_int_equal(
        format_segment_parse("000000111272-000001000000.wal.gz", ".wal.gz", &start, &end), 0);
    assert_int_equal(start, 111272);
    assert_int_equal(end, 1000000);
    assert_int_equal(
        format_segment_parse("000000111272-000001000000.wal.json", ".wal.gz", &start, &end),
        -EINVAL);
    assert_int_equal(format_segment_parse("000000000009-000000000009", "", &start, &end), -EINVAL);

    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_INDEX, 0, 0, 0, &err), 0);
    assert_string_equal(key, "app/replica/index.json");
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_BASE, 1, 0, 0, &err), 0);
    assert_string_equal(key, "app/replica/g00000001/base.db.gz");
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_BASE_JSON, 1, 0, 0, &err), 0);
    assert_string_equal(key, "app/replica/g00000001/base.json");
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SEGMENT, 3, 0, 111272, &err), 0);
    assert_string_equal(key, "app/replica/g00000003/wal/000000000000-000000111272.wal.gz");
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SIDECAR, 3, 0, 111272, &err), 0);
    assert_string_equal(key, "app/replica/g00000003/wal/000000000000-000000111272.wal.json");
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SEGMENT_DIR, 3, 0, 0, &err), 0);
    assert_string_equal(key, "app/replica/g00000003/wal/");
}

static void keys_refuse_names_that_climb_out_of_the_prefix(void **state)
{
    (void)state;
    char key[FORMAT_KEY_SIZE];
    struct error err = {0};

    assert_int_equal(format_key(key, sizeof key, "..", FORMAT_INDEX, 0, 0, 0, &err), -EINVAL);
    assert_non_null(strstr(err.message, "\"..\""));
    assert_int_equal(format_key(key, sizeof key, "a/b", FORMAT_INDEX, 0, 0, 0, &err), -EINVAL);
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_BASE, 0, 0, 0, &err), -EINVAL);
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SEGMENT, 1, 5, 5, &err), -EINVAL);
    assert_int_equal(format_key(key, 20, "app", FORMAT_BASE, 1, 0, 0, &err), -ENAMETOOLONG);
}

static void times_are_rfc3339_utc_with_milliseconds(void **state)
{
    (void)state;
    char text[FORMAT_TIME_SIZE];
    int64_t ms;

    format_time(december_2, text);
    assert_string_equal(text, "2026-12-02T11:24:07.123Z");
    assert_int_equal(format_time_parse(text, &ms), 0);
    assert_int_equal(ms, december_2);
    assert_int_equal(format_time_parse("2026-12-02T11:24:07Z", &ms), 0);
    assert_int_equal(ms, december_2 - 123);
    format_time(december_2 - 123, text);
    assert_string_equal(text, "2026-12-02T11:24:07.000Z");
    assert_int_equal(format_time_parse("2026-02-30T11:24:07.000Z", &ms), -EINVAL);
    assert_int_equal(format_time_parse("2026-12-02 11:24:07.000Z", &ms), -EINVAL);
    assert_int_equal(format_time_parse("2026-12-02T11:24:07.000+01:00", &ms), -EINVAL);
}

static void sidecar_round_trip_keeps_every_field(void **state)
{
    (void)state;
    struct format_segment s, back;
    struct error err = {0};

    fill_segment(&s);
    char *text = format_segment_encode(&s, &err);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"seen_at\": \"2026-12-02T11:24:07.123Z\""));
    assert_int_equal(format_segment_decode(text, strlen(text), SIDECAR_KEY, &back, &err), 0);
    assert_int_equal(back.generation, 2);
    assert_int_equal(back.start, 0);
    assert_int_equal(back.end, s.end);
    assert_int_equal(back.page_size, 4096);
    assert_int_equal(back.salt[0], 0x663f48f2u);
    assert_int_equal(back.salt[1], 0xef0e95bau);
    assert_int_equal(back.checksum[0], 0xfffffffeu);
    assert_int_equal(back.checksum[1], 7);
    assert_false(back.big_endian_checksum);
    assert_string_equal(back.sha256, SHA_A);
    assert_int_equal(back.size, 977);
    assert_int_equal(back.commit_count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(back.commits[i].frame, example_commits[i].frame);
        assert_int_equal(back.commits[i].end_offset, example_commits[i].end_offset);
        assert_int_equal(back.commits[i].db_pages, example_commits[i].db_pages);
        assert_int_equal(back.commits[i].seen_at_ms, example_commits[i].seen_at_ms);
    }
    format_segment_free(&back);
    free(text);
}

/* Decodes `text` and expects a refusal whose message names the object and
 * holds `words`. */
static void assert_sidecar_refused(const char *text, const char *words)
{
    struct format_segment back;
    struct error err = {0};
    assert_int_equal(format_segment_decode(text, strlen(text), SIDECAR_KEY, &back, &err), -EINVAL);
    if (!strstr(err.message, SIDECAR_KEY) || !strstr(err.message, words))
        fail_msg("message \"%s\" lacks the object or \"%s\"", err.message, words);
    assert_null(back.commits);
}

/* The encoded example with `from` replaced by `to` (once). */
static char *edited_sidecar(const char *from, const char *to)
{
    struct format_segment s;
    struct error err = {0};
    fill_segment(&s);
    char *text = format_segment_encode(&s, &err);
    assert_non_null(text);
    char *at = strstr(text, from);
    if (!at)
        fail_msg("\"%s\" not in %s", from, text);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    memcpy(out, text, (size_t)(at - text));
    strcpy(out + (at - text), to);
    strcat(out, at + strlen(from));
    free(text);
    return out;
}

static void damaged_sidecars_are_refused_naming_object_and_field(void **state)
{
    (void)state;
    struct {
        const char *from, *to, *words;
    } cases[] = {
        {"\"page_size\": 4096", "\"page_size\": 4000", "page_size"},
        {"\"end_offset\": 4152", "\"end_offset\": 4153", "end_offset"},
        {"\"seen_at\": \"2026-12-02T11:24:07.124Z\"", "\"seen_at\": \"2026-12-02T11:24:06.000Z\"",
         "seen_at"},
        {"\"seen_at\": \"2026-12-02T11:24:07.123Z\"", "\"seen_at\": \"yesterday\"", "seen_at"},
        {"\"end\": 12392", "\"end\": 12000", "end"},
        {"\"format\": 1", "\"format\": 2", "format"},
        {"\"sha256\": \"9f", "\"sha256\": \"XX", "sha256"},
        {"\"size\": 977", "\"size\": -1", "size"},
        {"\"frame\": 1,", "\"frame\": \"1\",", "frame"},
        {"\"salt\": [", "\"salt\": [1, ", "salt"},
        {"\"generation\": 2", "\"generation\": 0", "generation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = edited_sidecar(cases[i].from, cases[i].to);
        assert_sidecar_refused(text, cases[i].words);
        free(text);
    }
    assert_sidecar_refused("{\"format\": 1, \"generation\": 2", "not valid JSON");
    assert_sidecar_refused("[1, 2]", "not a JSON object");
    assert_sidecar_refused("{\"format\": 1, \"generation\": 2, \"generation\": 3}",
                           "not valid JSON");
    assert_sidecar_refused("{\"format\": 1}", "\"generation\" is missing");
}

static void encoder_refuses_what_restore_would_refuse(void **state)
{
    (void)state;
    struct format_segment s;
    struct error err = {0};

    fill_segment(&s);
    s.end += 1; /* the last commit no longer ends the segment */
    assert_null(format_segment_encode(&s, &err));
    assert_non_null(strstr(err.message, "last commit"));
    fill_segment(&s);
    s.commit_count = 0;
    assert_null(format_segment_encode(&s, &err));
    assert_non_null(strstr(err.message, "commits"));
}

static void base_round_trip_with_file_and_with_link(void **state)
{
    (void)state;
    struct format_base b = {.generation = 1,
                            .frame = 3,
                            .size = 5000,
                            .database_bytes = 40960,
                            .page_size = 4096,
                            .taken_at_ms = december_2},
                       back;
    struct error err = {0};
    strcpy(b.sha256, SHA_A);

    char *text = format_base_encode(&b, &err);
    assert_non_null(text);
    assert_null(strstr(text, "\"from\""));
    assert_int_equal(
        format_base_decode(text, strlen(text), "app/replica/g00000001/base.json", &back, &err), 0);
    assert_int_equal(back.generation, 1);
    assert_int_equal(back.frame, 3);
    assert_int_equal(back.from_generation, 0);
    assert_string_equal(back.sha256, SHA_A);
    assert_int_equal(back.size, 5000);
    assert_int_equal(back.database_bytes, 40960);
    assert_int_equal(back.page_size, 4096);
    assert_int_equal(back.taken_at_ms, december_2);
    free(text);

    struct format_base link = {
        .generation = 7, .from_generation = 6, .page_size = 4096, .taken_at_ms = december_2};
    text = format_base_encode(&link, &err);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"from\": \"g00000006/end\""));
    assert_null(strstr(text, "sha256"));
    assert_int_equal(
        format_base_decode(text, strlen(text), "app/replica/g00000007/base.json", &back, &err), 0);
    assert_int_equal(back.from_generation, 6);
    assert_int_equal(back.generation, 7);
    free(text);
}

static void damaged_base_json_is_refused_naming_object(void **state)
{
    (void)state;
    const char *object = "app/replica/g00000003/base.json";
    const char *cases[][2] = {
        {"{\"format\":1,\"generation\":3,\"frame\":0,\"from\":\"g00000003/end\","
         "\"page_size\":4096,\"taken_at\":\"2026-12-02T11:24:07.123Z\"}",
         "from"},
        {"{\"format\":1,\"generation\":3,\"frame\":0,\"from\":\"g2/end\","
         "\"page_size\":4096,\"taken_at\":\"2026-12-02T11:24:07.123Z\"}",
         "gNNNNNNNN/end"},
        {"{\"format\":1,\"generation\":3,\"frame\":0,"
         "\"page_size\":4096,\"taken_at\":\"2026-12-02T11:24:07.123Z\"}",
         "sha256"},
        {"{\"format\":1,\"generation\":3,\"frame\":0,\"sha256\":\"" SHA_A "\",\"size\":10,"
         "\"database_bytes\":4000,\"page_size\":4096,\"taken_at\":\"2026-12-02T11:24:07.123Z\"}",
         "database_bytes"},
        {"{\"format\":1,\"generation\":3,\"frame\":-2,\"from\":\"g00000002/end\","
         "\"page_size\":4096,\"taken_at\":\"2026-12-02T11:24:07.123Z\"}",
         "frame"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct format_base back;
        struct error err = {0};
        assert_int_equal(format_base_decode(cases[i][0], strlen(cases[i][0]), object, &back, &err),
                         -EINVAL);
        if (!strstr(err.message, object) || !strstr(err.message, cases[i][1]))
            fail_msg("case %zu: message \"%s\" lacks the object or \"%s\"", i, err.message,
                     cases[i][1]);
    }
}

static void index_round_trip_and_refusals(void **state)
{
    (void)state;
    struct format_index_generation gens[] = {
        {1, december_2, december_2 + 5000, 0, false},
        {2, december_2 + 6000, december_2 + 9000, 1, false},
        {4, 0, 0, 0, true}, /* a scheduled base */
    };
    struct format_index x = {.database = "app",
                             .count = 3,
                             .generations = gens,
                             .updated_at_ms = december_2 + 10000},
                        back;
    struct error err = {0};
    const char *object = "app/replica/index.json";

    char *text = format_index_encode(&x, &err);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"base\": \"g00000001/end\""));
    assert_int_equal(format_index_decode(text, strlen(text), object, &back, &err), 0);
    assert_string_equal(back.database, "app");
    assert_int_equal(back.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(back.generations[i].generation, gens[i].generation);
        assert_int_equal(back.generations[i].first_seen_at_ms, gens[i].first_seen_at_ms);
        assert_int_equal(back.generations[i].last_seen_at_ms, gens[i].last_seen_at_ms);
        assert_int_equal(back.generations[i].base_from, gens[i].base_from);
        assert_int_equal(back.generations[i].snapshot, gens[i].snapshot);
    }
    assert_non_null(strstr(text, "\"snapshot\": true"));
    assert_int_equal(back.updated_at_ms, december_2 + 10000);
    format_index_free(&back);
    free(text);

    const char *bad[][2] = {
        {"{\"format\":1,\"database\":\"app\",\"updated_at\":\"2026-12-02T11:24:07.123Z\","
         "\"generations\":[{\"name\":\"g00000002\",\"base\":\"file\"},"
         "{\"name\":\"g00000001\",\"base\":\"file\"}]}",
         "not after"},
        {"{\"format\":1,\"database\":\"app\",\"updated_at\":\"2026-12-02T11:24:07.123Z\","
         "\"generations\":[{\"name\":\"gen1\",\"base\":\"file\"}]}",
         "gNNNNNNNN"},
        {"{\"format\":1,\"database\":\"app\",\"updated_at\":\"2026-12-02T11:24:07.123Z\","
         "\"generations\":[{\"name\":\"g00000001\",\"base\":\"disk\"}]}",
         "base"},
        {"{\"format\":1,\"database\":\"app\",\"updated_at\":\"2026-12-02T11:24:07.123Z\","
         "\"generations\":[{\"name\":\"g00000001\",\"base\":\"file\","
         "\"first_seen_at\":\"2026-12-02T11:24:08.000Z\","
         "\"last_seen_at\":\"2026-12-02T11:24:07.000Z\"}]}",
         "first_seen_at"},
        {"{\"format\":1,\"database\":\"../x\",\"updated_at\":\"2026-12-02T11:24:07.123Z\","
         "\"generations\":[]}",
         "database"},
        {"{\"format\":1,\"database\":\"app\",\"updated_at\":\"2026-12-02T11:24:07.123Z\","
         "\"generations\":[{\"name\":\"g00000001\",\"base\":\"file\",\"snapshot\":\"yes\"}]}",
         "snapshot"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(format_index_decode(bad[i][0], strlen(bad[i][0]), object, &back, &err),
                         -EINVAL);
        if (!strstr(err.message, object) || !strstr(err.message, bad[i][1]))
            fail_msg("case %zu: message \"%s\" lacks the object or \"%s\"", i, err.message,
                     bad[i][1]);
        assert_null(back.generations);
    }
}

#define RECIPIENT_A "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
#define RECIPIENT_B "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"

static void sealed_names_end_in_age_and_parse_apart_from_plain_ones(void **state)
{
    (void)state;
    char key[FORMAT_KEY_SIZE];
    uint64_t start = 0, end = 0;
    struct error err = {0};

    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SEALED_BASE, 1, 0, 0, &err), 0);
    assert_string_equal(key, "app/replica/g00000001/base.db.gz.age");
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SEALED_SEGMENT, 3, 0, 111272, &err),
                     0);
    assert_string_equal(key, "app/replica/g00000003/wal/000000000000-000000111272.wal.gz.age");
    /* The same range checks as a plain segment. */
    assert_int_equal(format_key(key, sizeof key, "app", FORMAT_SEALED_SEGMENT, 3, 9, 9, &err),
                     -EINVAL);

    assert_int_equal(
        format_segment_parse("000000111272-000001000000.wal.gz.age", ".wal.gz.age", &start, &end),
        0);
    assert_int_equal(start, 111272);
    assert_int_equal(end, 1000000);
    /* Neither suffix passes for the other: restore lists both kinds. */
    assert_int_equal(
        format_segment_parse("000000111272-000001000000.wal.gz.age", ".wal.gz", &start, &end),
        -EINVAL);
    assert_int_equal(
        format_segment_parse("000000111272-000001000000.wal.gz", ".wal.gz.age", &start, &end),
        -EINVAL);
}

static void encryption_record_round_trips_and_is_absent_when_plain(void **state)
{
    (void)state;
    struct format_segment s, back;
    struct error err = {0};

    fill_segment(&s);
    char *plain = format_segment_encode(&s, &err);
    assert_non_null(plain);
    assert_null(strstr(plain, "encryption"));
    s.encryption.recipient_count = 2;
    strcpy(s.encryption.recipients[0], RECIPIENT_A);
    strcpy(s.encryption.recipients[1], RECIPIENT_B);
    char *text = format_segment_encode(&s, &err);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"format\": \"age-encryption.org/v1\""));
    assert_int_equal(format_segment_decode(text, strlen(text), SIDECAR_KEY, &back, &err), 0);
    assert_int_equal(back.encryption.recipient_count, 2);
    assert_string_equal(back.encryption.recipients[0], RECIPIENT_A);
    assert_string_equal(back.encryption.recipients[1], RECIPIENT_B);
    format_segment_free(&back);
    assert_int_equal(format_segment_decode(plain, strlen(plain), SIDECAR_KEY, &back, &err), 0);
    assert_int_equal(back.encryption.recipient_count, 0);
    format_segment_free(&back);
    free(text);
    free(plain);

    /* base.json: with a base file and with a link, whose segments it describes. */
    struct format_base b = {.generation = 7,
                            .from_generation = 6,
                            .page_size = 4096,
                            .taken_at_ms = december_2},
                       base_back;
    b.encryption.recipient_count = 1;
    strcpy(b.encryption.recipients[0], RECIPIENT_A);
    text = format_base_encode(&b, &err);
    assert_non_null(text);
    assert_int_equal(
        format_base_decode(text, strlen(text), "app/replica/g00000007/base.json", &base_back, &err),
        0);
    assert_int_equal(base_back.encryption.recipient_count, 1);
    assert_string_equal(base_back.encryption.recipients[0], RECIPIENT_A);
    free(text);

    /* The encoder refuses a recipient that could not be pasted into age -r. */
    strcpy(b.encryption.recipients[0], "age1 with a space");
    assert_null(format_base_encode(&b, &err));
    assert_non_null(strstr(err.message, "recipient 1"));
}

static void damaged_encryption_records_are_refused_naming_object(void **state)
{
    (void)state;
    const char *object = "app/replica/g00000003/base.json";
#define BASE_HEAD                                                                                  \
    "{\"format\":1,\"generation\":3,\"frame\":0,\"from\":\"g00000002/end\","                       \
    "\"page_size\":4096,\"taken_at\":\"2026-12-02T11:24:07.123Z\",\"encryption\":"
    const char *cases[][2] = {
        {BASE_HEAD "\"age\"}", "\"encryption\" is not an object"},
        {BASE_HEAD "{\"recipients\":[\"" RECIPIENT_A "\"]}}", "format"},
        {BASE_HEAD "{\"format\":\"pgp\",\"recipients\":[\"" RECIPIENT_A "\"]}}", "another version"},
        {BASE_HEAD "{\"format\":\"age-encryption.org/v1\",\"recipients\":[]}}", "recipients"},
        {BASE_HEAD "{\"format\":\"age-encryption.org/v1\"}}", "recipients"},
        {BASE_HEAD "{\"format\":\"age-encryption.org/v1\",\"recipients\":[7]}}", "recipient 1"},
        {BASE_HEAD "{\"format\":\"age-encryption.org/v1\",\"recipients\":[\"a\\nb\"]}}",
         "recipient 1"},
    };
#undef BASE_HEAD
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct format_base back;
        struct error err = {0};
        assert_int_equal(format_base_decode(cases[i][0], strlen(cases[i][0]), object, &back, &err),
                         -EINVAL);
        if (!strstr(err.message, object) || !strstr(err.message, cases[i][1]))
            fail_msg("case %zu: message \"%s\" lacks the object or \"%s\"", i, err.message,
                     cases[i][1]);
    }
}

/* ---- packs ---- */

#define SHA_B "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static struct format_pack_object example_objects[3];

/* Generations 3..4: a base.json, a segment and its sidecar, end to end. */
static void fill_pack(struct format_pack *p)
{
    memset(p, 0, sizeof *p);
    memset(example_objects, 0, sizeof example_objects);
    snprintf(example_objects[0].key, FORMAT_PACK_KEY_SIZE, "g00000003/base.json");
    example_objects[0].size = 300;
    snprintf(example_objects[1].key, FORMAT_PACK_KEY_SIZE,
             "g00000004/wal/000000000000-000000012392.wal.gz");
    example_objects[1].offset = 300;
    example_objects[1].size = 5000;
    snprintf(example_objects[2].key, FORMAT_PACK_KEY_SIZE,
             "g00000004/wal/000000000000-000000012392.wal.json");
    example_objects[2].offset = 5300;
    example_objects[2].size = 700;
    for (int i = 0; i < 3; i++)
        memcpy(example_objects[i].sha256, i % 2 ? SHA_A : SHA_B, 65);
    p->database = "app";
    p->first_generation = 3;
    p->last_generation = 4;
    p->id = 42;
    p->level = 1;
    p->size = 6000;
    memcpy(p->sha256, SHA_A, 65);
    p->count = 3;
    p->objects = example_objects;
}

static void pack_manifest_round_trip_keeps_every_object(void **state)
{
    (void)state;
    struct format_pack p, back;
    struct error err = {0};
    fill_pack(&p);
    char *text = format_pack_encode(&p, &err);
    assert_non_null(text);
    /* JSON Lines: a compact header line, then one line per object. */
    size_t newlines = 0;
    for (const char *c = text; *c; c++)
        newlines += *c == '\n';
    assert_int_equal(newlines, 1 + 3);
    assert_int_equal(format_pack_decode(text, strlen(text), "m.pack.json", &back, &err), 0);
    assert_string_equal(back.database, "app");
    assert_int_equal(back.first_generation, 3);
    assert_int_equal(back.last_generation, 4);
    assert_int_equal(back.id, 42);
    assert_int_equal(back.level, 1);
    assert_int_equal(back.size, 6000);
    assert_string_equal(back.sha256, SHA_A);
    assert_int_equal(back.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(back.objects[i].key, example_objects[i].key);
        assert_int_equal(back.objects[i].offset, example_objects[i].offset);
        assert_int_equal(back.objects[i].size, example_objects[i].size);
        assert_string_equal(back.objects[i].sha256, example_objects[i].sha256);
    }
    assert_int_equal(back.objects[0].generation, 3);
    assert_int_equal(back.objects[2].generation, 4);
    format_pack_free(&back);
    free(text);
}

/* The encoder refuses the pack (NULL) and so does the decoder, when the
 * encoder's checks are bypassed by editing the text. */
static void assert_pack_refused(const struct format_pack *p, const char *words)
{
    struct error err = {0};
    char *text = format_pack_encode(p, &err);
    assert_null(text);
    if (!strstr(err.message, words))
        fail_msg("expected \"%s\" in: %s", words, err.message);
}

static void assert_pack_text_refused(const char *text, const char *words)
{
    struct format_pack out;
    struct error err = {0};
    assert_int_equal(
        format_pack_decode(text, strlen(text), "app/replica/packs/x.pack.json", &out, &err),
        -EINVAL);
    if (!strstr(err.message, "app/replica/packs/x.pack.json") || !strstr(err.message, words))
        fail_msg("expected the object and \"%s\" in: %s", words, err.message);
    assert_null(out.objects);
}

static void damaged_pack_manifests_are_refused_naming_object(void **state)
{
    (void)state;
    struct format_pack p;
    fill_pack(&p);
    example_objects[1].offset = 301; /* a gap */
    assert_pack_refused(&p, "starts at 301");
    fill_pack(&p);
    example_objects[2].offset = 5200; /* an overlap */
    assert_pack_refused(&p, "starts at 5200");
    fill_pack(&p);
    snprintf(example_objects[1].key, FORMAT_PACK_KEY_SIZE,
             "g00000005/wal/000000000000-000000012392.wal.gz");
    assert_pack_refused(&p, "outside the pack's generations");
    fill_pack(&p);
    snprintf(example_objects[0].key, FORMAT_PACK_KEY_SIZE, "g00000003/base.db.gz");
    assert_pack_refused(&p, "not a key a pack may hold");
    fill_pack(&p);
    snprintf(example_objects[0].key, FORMAT_PACK_KEY_SIZE, "g00000003/base.db.gz.age");
    assert_pack_refused(&p, "not a key a pack may hold");
    fill_pack(&p);
    snprintf(example_objects[0].key, FORMAT_PACK_KEY_SIZE, "g00000003/../g00000004/base.json");
    assert_pack_refused(&p, "not a key a pack may hold");
    fill_pack(&p);
    p.size = 6001;
    assert_pack_refused(&p, "the pack is 6001 bytes");
    fill_pack(&p);
    p.size = 5999;
    assert_pack_refused(&p, "ends after the pack's 5999 bytes");

    /* The same refusals from text, as restore reads it (JSON Lines). */
    const char *sha = "\"sha256\":\"" SHA_A "\"";
    char text[2048];
#define HEADER(size, count)                                                                        \
    "{\"format\":1,\"database\":\"app\",\"first_generation\":3,\"last_generation\":4,\"id\":42,"   \
    "\"level\":1,\"size\":" #size ",%s,\"count\":" #count "}\n"
    snprintf(text, sizeof text,
             HEADER(20, 2) "{\"key\":\"g00000003/base.json\",\"offset\":0,\"size\":10,%s}\n"
                           "{\"key\":\"g00000004/base.json\",\"offset\":11,\"size\":9,%s}\n",
             sha, sha, sha);
    assert_pack_text_refused(text, "starts at 11");
    snprintf(text, sizeof text,
             HEADER(10, 1) "{\"key\":\"g00000009/base.json\",\"offset\":0,\"size\":10,%s}\n", sha,
             sha);
    assert_pack_text_refused(text, "outside the pack's generations");
    snprintf(text, sizeof text,
             HEADER(10, 1) "{\"key\":\"g00000003/base.db.gz\",\"offset\":0,\"size\":10,%s}\n", sha,
             sha);
    assert_pack_text_refused(text, "not a key a pack may hold");
    snprintf(text, sizeof text,
             HEADER(10, 1) "{\"key\":\"g00000003/wal/../../../etc/base.json\",\"offset\":0,"
                           "\"size\":10,%s}\n",
             sha, sha);
    assert_pack_text_refused(text, "not a key a pack may hold");
    snprintf(text, sizeof text,
             HEADER(12, 1) "{\"key\":\"g00000003/base.json\",\"offset\":0,\"size\":10,%s}\n", sha,
             sha);
    assert_pack_text_refused(text, "pack of 12 bytes");
    snprintf(text, sizeof text,
             HEADER(10, 2) "{\"key\":\"g00000003/base.json\",\"offset\":0,\"size\":10,%s}\n", sha,
             sha);
    assert_pack_text_refused(text, "1 of 2 objects");
#undef HEADER
}

static void pack_names_round_trip_and_refuse_what_is_not_one(void **state)
{
    (void)state;
    char name[FORMAT_PACK_NAME_SIZE], with_suffix[64], key[FORMAT_KEY_SIZE];
    uint32_t first = 0, last = 0;
    uint64_t id = 0;
    struct error err = {0};
    format_pack_name(1, 9, 42, name);
    assert_string_equal(name, "g00000001-g00000009.000000000042");
    snprintf(with_suffix, sizeof with_suffix, "%s.pack", name);
    assert_int_equal(format_pack_parse(with_suffix, ".pack", &first, &last, &id), 0);
    assert_int_equal(first, 1);
    assert_int_equal(last, 9);
    assert_int_equal(id, 42);
    snprintf(with_suffix, sizeof with_suffix, "%s.pack.json", name);
    assert_int_equal(format_pack_parse(with_suffix, ".pack.json", &first, &last, &id), 0);
    assert_int_equal(format_pack_parse(with_suffix, ".pack", &first, &last, &id), -EINVAL);
    format_pack_name(99999999u, 99999999u, FORMAT_PACK_ID_MAX, name);
    snprintf(with_suffix, sizeof with_suffix, "%s.pack", name);
    assert_int_equal(format_pack_parse(with_suffix, ".pack", &first, &last, &id), 0);
    assert_int_equal(first, 99999999u);
    assert_int_equal(id, FORMAT_PACK_ID_MAX);
    assert_int_equal(
        format_pack_parse("g00000009-g00000001.000000000042.pack", ".pack", &first, &last, &id),
        -EINVAL); /* first after last */
    assert_int_equal(
        format_pack_parse("g00000001-g00000009.000000000000.pack", ".pack", &first, &last, &id),
        -EINVAL); /* id 0 */
    assert_int_equal(
        format_pack_parse("g00000001-g00000009.00000000004.pack", ".pack", &first, &last, &id),
        -EINVAL);
    assert_int_equal(format_pack_parse("g00000001-g00000009.000000000042.pack.sqlprodd-tmp",
                                       ".pack", &first, &last, &id),
                     -EINVAL);
    assert_int_equal(format_pack_key(key, sizeof key, "app", 1, 9, 42, true, &err), 0);
    assert_string_equal(key, "app/replica/packs/g00000001-g00000009.000000000042.pack.json");
    assert_int_equal(format_pack_key(key, sizeof key, "app", 0, 0, 0, false, &err), 0);
    assert_string_equal(key, "app/replica/packs/");
    assert_int_equal(format_pack_key(key, sizeof key, "..", 1, 9, 42, false, &err), -EINVAL);
    uint32_t generation = 0;
    assert_int_equal(
        format_packable_parse("g00000003/wal/000000000000-000000012392.wal.gz.age", &generation),
        0);
    assert_int_equal(generation, 3);
    assert_int_equal(format_packable_parse("g00000003/base.db.gz", &generation), -EINVAL);
    assert_int_equal(format_packable_parse("g00000003/../base.json", &generation), -EINVAL);
}

static void delta_names_and_manifest_round_trip_and_refuse_what_is_not_one(void **state)
{
    (void)state;
    char name[FORMAT_DELTA_NAME_SIZE], key[FORMAT_KEY_SIZE];
    uint32_t first = 0, last = 0;
    struct error err = {0};
    format_delta_name(3, 41, name);
    assert_string_equal(name, "g00000003-g00000041");
    assert_int_equal(
        format_delta_parse("g00000003-g00000041.pages.json", ".pages.json", &first, &last), 0);
    assert_int_equal(first, 3);
    assert_int_equal(last, 41);
    assert_int_equal(
        format_delta_parse("g00000041-g00000003.pages.json", ".pages.json", &first, &last),
        -EINVAL); /* first after last */
    assert_int_equal(
        format_delta_parse("g00000003-g00000041.pages.gz.age", ".pages.gz", &first, &last),
        -EINVAL);
    assert_int_equal(format_delta_parse("g00000003-g0000041.pages.gz", ".pages.gz", &first, &last),
                     -EINVAL);
    assert_int_equal(format_delta_key(key, sizeof key, "app", 3, 41, ".pages.gz.age", &err), 0);
    assert_string_equal(key, "app/replica/deltas/g00000003-g00000041.pages.gz.age");
    assert_int_equal(format_delta_key(key, sizeof key, "app", 0, 0, "", &err), 0);
    assert_string_equal(key, "app/replica/deltas/");
    assert_int_equal(format_delta_key(key, sizeof key, "../x", 3, 41, ".pages.gz", &err), -EINVAL);
    /* A packer never takes a delta: deltas are few and restored whole. */
    uint32_t generation = 0;
    assert_int_equal(format_packable_parse("deltas/g00000003-g00000041.pages.gz", &generation),
                     -EINVAL);

    struct format_delta d = {.first_generation = 3,
                             .last_generation = 41,
                             .page_size = 4096,
                             .db_pages = 1000,
                             .pages = 250,
                             .wal_bytes = 123456789,
                             .size = 4242,
                             .built_at_ms = 1764936000123};
    memset(d.sha256, 'a', 64);
    d.encryption.recipient_count = 1;
    snprintf(d.encryption.recipients[0], sizeof d.encryption.recipients[0], "age1example");
    char *text = format_delta_encode(&d, &err);
    assert_non_null(text);
    struct format_delta back;
    assert_int_equal(format_delta_decode(text, strlen(text), "m", &back, &err), 0);
    assert_memory_equal(&back, &d, sizeof d);
    free(text);
    d.pages = 1001; /* more pages than the database holds */
    assert_null(format_delta_encode(&d, &err));
    assert_non_null(strstr(err.message, "1001 pages"));
    const char *refused[][2] = {
        {"{\"format\":1,\"first_generation\":\"g3\",\"last_generation\":\"g00000041\"}",
         "first_generation"},
        {"{\"format\":1,\"first_generation\":\"g00000003\",\"last_generation\":\"g00000041\","
         "\"page_size\":1000,\"db_pages\":9,\"pages\":1,\"sha256\":\"" /* 64 a */
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":1,"
         "\"built_at\":\"2026-12-05T10:00:00.000Z\"}",
         "page_size"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(
            format_delta_decode(refused[i][0], strlen(refused[i][0]), "deltas/x.json", &back, &err),
            -EINVAL);
        assert_non_null(strstr(err.message, "deltas/x.json"));
        if (!strstr(err.message, refused[i][1]))
            fail_msg("%s: %s", refused[i][1], err.message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_are_fixed_width_and_sort_in_wal_order),
        cmocka_unit_test(keys_refuse_names_that_climb_out_of_the_prefix),
        cmocka_unit_test(times_are_rfc3339_utc_with_milliseconds),
        cmocka_unit_test(sidecar_round_trip_keeps_every_field),
        cmocka_unit_test(damaged_sidecars_are_refused_naming_object_and_field),
        cmocka_unit_test(encoder_refuses_what_restore_would_refuse),
        cmocka_unit_test(base_round_trip_with_file_and_with_link),
        cmocka_unit_test(damaged_base_json_is_refused_naming_object),
        cmocka_unit_test(index_round_trip_and_refusals),
        cmocka_unit_test(sealed_names_end_in_age_and_parse_apart_from_plain_ones),
        cmocka_unit_test(encryption_record_round_trips_and_is_absent_when_plain),
        cmocka_unit_test(damaged_encryption_records_are_refused_naming_object),
        cmocka_unit_test(pack_manifest_round_trip_keeps_every_object),
        cmocka_unit_test(damaged_pack_manifests_are_refused_naming_object),
        cmocka_unit_test(pack_names_round_trip_and_refuse_what_is_not_one),
        cmocka_unit_test(delta_names_and_manifest_round_trip_and_refuse_what_is_not_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
