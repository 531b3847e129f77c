/*
 * test_replica_objects.c: restore's view of a replica's objects, loose or
 * packed (restore/replica_objects.h), on a dir target: packed objects are
 * listed and cut out byte for byte, the newest pack wins, and compaction
 * racing the restore (objects packed between the listing of the packs and
 * of a generation, a loose object packed after the listing, a pack merged
 * away after its manifest was read) costs one new listing, not the
 * restore.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"
#include "offsite/target.h"
#include "replicate/format.h"
#include "restore/replica_objects.h"

#define SEGMENT "g00000002/wal/000000000000-000000004152.wal.gz"
#define SIDECAR "g00000002/wal/000000000000-000000004152.wal.json"
#define BASE    "g00000002/base.json"

struct fixture {
    char root[64];
    char temp[PATH_MAX];
    unsigned serial;
    struct target *target;
};

static void temp_path(void *context, const char *what, char out[PATH_MAX])
{
    struct fixture *f = context;
    snprintf(out, PATH_MAX, "%s/tmp-%u-%s", f->root, f->serial++, what);
}

static void write_file(const char *path, const void *data, size_t size)
{
    char directory[PATH_MAX];
    snprintf(directory, sizeof directory, "%s", path);
    for (char *slash = strchr(directory + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = 0;
        mkdir(directory, 0700);
        *slash = '/';
    }
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, size, file), size);
    fclose(file);
}

static void object_path(const struct fixture *f, const char *key, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/app/replica/%s", f->root, key);
}

/* The bytes of each example object: its key repeated, so a wrong cut shows. */
static void object_bytes(const char *key, char *out, size_t *size)
{
    *size = 0;
    for (int i = 0; i < 3; i++)
        *size += (size_t)sprintf(out + *size, "%s#%d;", key, i);
}

static void write_loose(const struct fixture *f, const char *key)
{
    char path[PATH_MAX], data[512];
    size_t size;
    object_path(f, key, path);
    object_bytes(key, data, &size);
    write_file(path, data, size);
}

/* Packs `keys` as an operator would: the pack, then its manifest. */
static void write_pack(const struct fixture *f, const char *const *keys, size_t count, uint64_t id,
                       bool corrupt)
{
    char pack[8192], manifest[8192], data[512], path[PATH_MAX], name[FORMAT_PACK_NAME_SIZE];
    char hex[IO_SHA256_HEX];
    size_t size = 0, used = 0, length;
    struct format_pack header = {.database = "app", .level = 1, .id = id, .count = count};
    struct format_pack_object objects[8];
    assert_true(count <= 8);
    header.first_generation = header.last_generation = 2;
    for (size_t i = 0; i < count; i++) {
        object_bytes(keys[i], data, &length);
        memset(&objects[i], 0, sizeof objects[i]);
        snprintf(objects[i].key, sizeof objects[i].key, "%s", keys[i]);
        objects[i].offset = size;
        objects[i].size = length;
        io_sha256_buffer(data, length, objects[i].sha256);
        memcpy(pack + size, data, length);
        size += length;
    }
    io_sha256_buffer(pack, size, hex);
    header.size = size;
    memcpy(header.sha256, hex, sizeof hex);
    header.objects = objects;
    struct error err = {0};
    char *text = format_pack_encode(&header, &err);
    assert_non_null(text);
    used = strlen(text);
    memcpy(manifest, text, used + 1);
    free(text);
    if (corrupt)
        pack[objects[0].size / 2] ^= 1; /* inside the first object */
    format_pack_name(2, 2, id, name);
    snprintf(path, sizeof path, "%s/app/replica/packs/%s.pack", f->root, name);
    write_file(path, pack, size);
    snprintf(path, sizeof path, "%s/app/replica/packs/%s.pack.json", f->root, name);
    write_file(path, manifest, used);
}

static void remove_pack(const struct fixture *f, uint64_t id)
{
    char path[PATH_MAX], name[FORMAT_PACK_NAME_SIZE];
    format_pack_name(2, 2, id, name);
    snprintf(path, sizeof path, "%s/app/replica/packs/%s.pack", f->root, name);
    unlink(path);
    snprintf(path, sizeof path, "%s/app/replica/packs/%s.pack.json", f->root, name);
    unlink(path);
}

static void remove_loose(const struct fixture *f, const char *key)
{
    char path[PATH_MAX];
    object_path(f, key, path);
    assert_int_equal(unlink(path), 0);
}

/* The object fetched to `path` holds exactly the bytes of `key`. */
static void assert_object(const char *path, const char *key)
{
    char expected[512], got[1024];
    size_t size;
    object_bytes(key, expected, &size);
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    size_t read = fread(got, 1, sizeof got, file);
    fclose(file);
    assert_int_equal(read, size);
    assert_memory_equal(got, expected, size);
    unlink(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/test_replica_objects.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    const struct target_config config = {.name = "nas", .type = TARGET_DIR, .path = f->root};
    struct error err = {0};
    if (target_open(&config, &f->target, &err) != 0)
        return -1;
    snprintf(f->temp, sizeof f->temp, "%s/fetched", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char command[PATH_MAX + 16];
    target_close(f->target);
    snprintf(command, sizeof command, "rm -rf '%s'", f->root);
    int ignored = system(command);
    (void)ignored;
    free(f);
    return 0;
}

static struct replica_objects *open_objects(struct fixture *f)
{
    struct replica_objects *objects = NULL;
    struct error err = {0};
    int rc = replica_objects_open(f->target, "nas", "app", 0, temp_path, f, &objects, &err);
    if (rc != 0)
        fail_msg("%s", err.message);
    return objects;
}

static void get(struct replica_objects *objects, struct fixture *f, const char *key, int expected,
                const char *words)
{
    char full[FORMAT_KEY_SIZE];
    bool packed = false;
    struct error err = {0};
    snprintf(full, sizeof full, "app/replica/%s", key);
    int rc = replica_objects_packed(objects, full, &packed, &err);
    if (rc == 0)
        rc = replica_objects_get(objects, full, f->temp, packed, &err);
    if (rc != expected)
        fail_msg("get %s: %d, expected %d: %s", key, rc, expected, err.message);
    if (rc == 0)
        assert_object(f->temp, key);
    else
        assert_int_not_equal(access(f->temp, F_OK), 0);
    if (words && !strstr(err.message, words))
        fail_msg("expected \"%s\" in: %s", words, err.message);
}

static void packed_objects_are_listed_and_cut_out_byte_for_byte(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {BASE, SEGMENT, SIDECAR};
    write_pack(f, keys, 3, 7, false);
    struct replica_objects *objects = open_objects(f);
    struct target_listing listing = {0};
    struct error err = {0};
    assert_int_equal(replica_objects_list_segments(objects, 2, &listing, &err), 0);
    assert_int_equal(listing.count, 2); /* the segment and its sidecar, not base.json */
    assert_string_equal(listing.objects[0].key, "app/replica/" SEGMENT);
    target_listing_free(&listing);
    get(objects, f, BASE, 0, NULL);
    get(objects, f, SEGMENT, 0, NULL);
    get(objects, f, SIDECAR, 0, NULL);
    int64_t bytes = 0;
    assert_int_equal(replica_objects_packs_fetched(objects, &bytes), 1); /* downloaded once */
    assert_true(bytes > 0);
    replica_objects_close(objects);
    char left[PATH_MAX];
    snprintf(left, sizeof left, "%s/tmp-1-pack", f->root);
    assert_int_not_equal(access(left, F_OK), 0); /* the pack's temp file is gone */
}

static void a_loose_object_packed_after_the_listing_is_found_in_the_new_pack(void **state)
{
    struct fixture *f = *state;
    write_loose(f, SEGMENT);
    write_loose(f, SIDECAR);
    struct replica_objects *objects = open_objects(f);
    struct target_listing listing = {0};
    struct error err = {0};
    assert_int_equal(replica_objects_list_segments(objects, 2, &listing, &err), 0);
    assert_int_equal(listing.count, 2);
    target_listing_free(&listing);
    /* The compactor runs now: pack up, manifest up, loose ones deleted. */
    static const char *const keys[] = {SEGMENT, SIDECAR};
    write_pack(f, keys, 2, 1, false);
    remove_loose(f, SEGMENT);
    remove_loose(f, SIDECAR);
    get(objects, f, SEGMENT, 0, NULL);
    get(objects, f, SIDECAR, 0, NULL);
    replica_objects_close(objects);
}

static void objects_packed_between_the_two_listings_are_listed_in_their_pack(void **state)
{
    struct fixture *f = *state;
    write_loose(f, SEGMENT);
    write_loose(f, SIDECAR);
    struct replica_objects *objects = open_objects(f); /* packs listed: none */
    /* The compactor runs before the generation's wal/ is listed. */
    static const char *const keys[] = {SEGMENT, SIDECAR};
    write_pack(f, keys, 2, 1, false);
    remove_loose(f, SEGMENT);
    remove_loose(f, SIDECAR);
    struct target_listing listing = {0};
    struct error err = {0};
    assert_int_equal(replica_objects_list_segments(objects, 2, &listing, &err), 0);
    assert_int_equal(listing.count, 2);
    target_listing_free(&listing);
    get(objects, f, SEGMENT, 0, NULL);
    replica_objects_close(objects);
}

static void a_pack_merged_away_after_its_manifest_was_read_is_found_in_the_bigger_one(void **state)
{
    struct fixture *f = *state;
    static const char *const small[] = {SEGMENT};
    static const char *const big[] = {BASE, SEGMENT, SIDECAR};
    write_pack(f, small, 1, 1, false);
    struct replica_objects *objects = open_objects(f);
    get(objects, f, BASE, -ENOENT, "app/replica/" BASE); /* not packed yet, not loose */
    bool packed = false;
    struct error err = {0};
    assert_int_equal(replica_objects_packed(objects, "app/replica/" SEGMENT, &packed, &err), 0);
    assert_true(packed);
    /* The merge: the bigger pack up, the small one deleted. */
    write_pack(f, big, 3, 2, false);
    remove_pack(f, 1);
    get(objects, f, SEGMENT, 0, NULL);
    get(objects, f, BASE, 0, NULL);
    replica_objects_close(objects);
}

static void the_newest_pack_wins_and_a_damaged_one_is_named(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {SEGMENT, SIDECAR};
    write_pack(f, keys, 2, 1, false);
    write_pack(f, keys, 2, 3, true); /* newest, one byte of the segment flipped */
    struct replica_objects *objects = open_objects(f);
    get(objects, f, SEGMENT, -EBADMSG, "g00000002-g00000002.000000000003.pack on target nas");
    /* Each object is checked on its own: the pack's intact sidecar is served. */
    get(objects, f, SIDECAR, 0, NULL);
    replica_objects_close(objects);
    remove_pack(f, 3);
    objects = open_objects(f);
    get(objects, f, SEGMENT, 0, NULL);
    replica_objects_close(objects);
}

static void a_pack_without_its_manifest_does_not_count(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {SEGMENT, SIDECAR};
    char path[PATH_MAX], name[FORMAT_PACK_NAME_SIZE];
    write_pack(f, keys, 2, 4, false);
    format_pack_name(2, 2, 4, name);
    snprintf(path, sizeof path, "%s/app/replica/packs/%s.pack.json", f->root, name);
    unlink(path);
    struct replica_objects *objects = open_objects(f);
    struct target_listing listing = {0};
    struct error err = {0};
    assert_int_equal(replica_objects_list_segments(objects, 2, &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_listing_free(&listing);
    get(objects, f, SEGMENT, -ENOENT, "app/replica/" SEGMENT " is missing");
    int64_t size = 0;
    assert_int_equal(replica_objects_check_packed(objects, "app/replica/" SEGMENT, &size, &err),
                     -ENOENT);
    replica_objects_close(objects);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(packed_objects_are_listed_and_cut_out_byte_for_byte, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_loose_object_packed_after_the_listing_is_found_in_the_new_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(
            objects_packed_between_the_two_listings_are_listed_in_their_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_pack_merged_away_after_its_manifest_was_read_is_found_in_the_bigger_one, setup,
            teardown),
        cmocka_unit_test_setup_teardown(the_newest_pack_wins_and_a_damaged_one_is_named, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_pack_without_its_manifest_does_not_count, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
