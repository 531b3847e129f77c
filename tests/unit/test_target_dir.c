/*
 * test_target_dir.c: the directory target on a real temp directory: durable
 * round trips, modes, listings by prefix that skip temp files, deletes,
 * refusal of a missing root (an unmounted NAS), of a changed source file and
 * of keys that would climb out of the root, cancellation, and the start-up
 * removal of a killed upload's temp files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"
#include "core/fsutil.h"
#include "offsite/target.h"

struct fixture {
    char root[64];  /* the target's path */
    char local[96]; /* files outside the target */
    struct target *target;
};

static void write_bytes(const char *path, size_t size, unsigned seed)
{
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    for (size_t i = 0; i < size; i++)
        fputc((int)((i * 31 + seed) & 0xff), file);
    fclose(file);
}

static bool same_file(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    bool same = x && y;
    while (same) {
        int c = fgetc(x), d = fgetc(y);
        same = c == d;
        if (c == EOF || d == EOF)
            break;
    }
    if (x)
        fclose(x);
    if (y)
        fclose(y);
    return same;
}

static int setup(void **state)
{
    struct fixture *fixture = calloc(1, sizeof *fixture);
    struct error err = {0};
    strcpy(fixture->root, "/tmp/test_target_dir.XXXXXX");
    if (!mkdtemp(fixture->root))
        return -1;
    snprintf(fixture->local, sizeof fixture->local, "%s-local", fixture->root);
    mkdir(fixture->local, 0700);
    const struct target_config config = {.name = "nas", .type = TARGET_DIR, .path = fixture->root};
    if (target_open(&config, &fixture->target, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    *state = fixture;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fixture = *state;
    char command[256];
    target_close(fixture->target);
    snprintf(command, sizeof command, "rm -rf '%s' '%s'", fixture->root, fixture->local);
    int rc = system(command);
    free(fixture);
    return rc == 0 ? 0 : -1;
}

static void round_trip_keeps_bytes_and_private_modes(void **state)
{
    struct fixture *fixture = *state;
    char source[128], copy[128], stored[160], sha256[ARCHIVE_SHA256_HEX];
    struct error err = {0};
    struct stat st;
    snprintf(source, sizeof source, "%s/source", fixture->local);
    snprintf(copy, sizeof copy, "%s/copy", fixture->local);
    write_bytes(source, 3 * 1024 * 1024 + 5, 1);
    assert_int_equal(archive_sha256_file(source, sha256, &err), 0);

    assert_int_equal(
        target_put_file(fixture->target, "app/app-1.db.gz", source, sha256, NULL, &err), 0);
    snprintf(stored, sizeof stored, "%s/app/app-1.db.gz", fixture->root);
    assert_true(same_file(source, stored));
    assert_int_equal(stat(stored, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(stored, sizeof stored, "%s/app", fixture->root);
    assert_int_equal(stat(stored, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(target_get_file(fixture->target, "app/app-1.db.gz", copy, NULL, &err), 0);
    assert_true(same_file(source, copy));
    assert_int_equal(stat(copy, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Putting again replaces the object. */
    write_bytes(source, 10, 2);
    assert_int_equal(target_put_file(fixture->target, "app/app-1.db.gz", source, NULL, NULL, &err),
                     0);
    unlink(copy);
    char hashed[IO_SHA256_HEX] = "";
    assert_int_equal(
        target_get_file_hashed(fixture->target, "app/app-1.db.gz", copy, hashed, NULL, &err), 0);
    assert_true(same_file(source, copy));
    assert_int_equal(archive_sha256_file(copy, sha256, &err), 0);
    assert_string_equal(hashed, sha256); /* the hash of what it wrote */
}

static void listing_filters_by_prefix_and_skips_temp_files(void **state)
{
    struct fixture *fixture = *state;
    char source[128], leftover[160];
    struct error err = {0};
    struct target_listing listing = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    write_bytes(source, 100, 3);
    const char *keys[] = {"app/app-1.db.gz", "app/app-1.db.gz.json", "app/app-2.db.gz",
                          "other/other-1.db.gz", "application/x.db.gz"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(target_put_file(fixture->target, keys[i], source, NULL, NULL, &err), 0);
    /* What a crash mid-upload leaves behind is not an object. */
    snprintf(leftover, sizeof leftover, "%s/app/app-3.db.gz%s", fixture->root, FS_TEMP_SUFFIX);
    write_bytes(leftover, 10, 4);

    assert_int_equal(target_list(fixture->target, "app/", &listing, &err), 0);
    assert_int_equal(listing.count, 3);
    for (size_t i = 0; i < listing.count; i++) {
        assert_int_equal(strncmp(listing.objects[i].key, "app/", 4), 0);
        assert_int_equal(listing.objects[i].size, 100);
        assert_true(listing.objects[i].modified > time(NULL) - 600);
    }
    target_listing_free(&listing);
    assert_int_equal(target_list(fixture->target, "", &listing, &err), 0);
    assert_int_equal(listing.count, 5);
    target_listing_free(&listing);
    assert_int_equal(target_list(fixture->target, "app/app-2", &listing, &err), 0);
    assert_int_equal(listing.count, 1);
    assert_string_equal(listing.objects[0].key, "app/app-2.db.gz");
    target_listing_free(&listing);
    assert_int_equal(target_list(fixture->target, "nothing/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_listing_free(&listing);
}

static void remove_temp_files_takes_only_what_a_killed_upload_left_of_that_database(void **state)
{
    struct fixture *fixture = *state;
    char source[128], path[192];
    struct error err = {0};
    struct target_listing listing = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    write_bytes(source, 100, 6);
    assert_int_equal(target_put_file(fixture->target, "app/app-1.db.gz", source, NULL, NULL, &err),
                     0);
    const char *leftovers[] = {"app/app-2.db.gz", "app/app-2.db.gz.json"};
    const char *kept[] = {"other/other-2.db.gz", "application/x.db.gz"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s%s", fixture->root, leftovers[i], FS_TEMP_SUFFIX);
        write_bytes(path, 10, 7);
    }
    /* Another database's directories, one a prefix of this name. */
    snprintf(path, sizeof path, "%s/other", fixture->root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/application", fixture->root);
    mkdir(path, 0700);
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s%s", fixture->root, kept[i], FS_TEMP_SUFFIX);
        write_bytes(path, 10, 8);
    }

    assert_int_equal(target_remove_temp_files(fixture->target, "app", &err), 2);
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s%s", fixture->root, leftovers[i], FS_TEMP_SUFFIX);
        assert_int_equal(access(path, F_OK), -1);
        snprintf(path, sizeof path, "%s/%s%s", fixture->root, kept[i], FS_TEMP_SUFFIX);
        assert_int_equal(access(path, F_OK), 0);
    }
    assert_int_equal(target_list(fixture->target, "app/", &listing, &err), 0);
    assert_int_equal(listing.count, 1); /* the complete object stays */
    target_listing_free(&listing);
    /* A database that never uploaded has no directory: nothing to do. */
    assert_int_equal(target_remove_temp_files(fixture->target, "never", &err), 0);
    assert_int_equal(target_remove_temp_files(fixture->target, "../x", &err), -EINVAL);
}

static void delete_removes_and_missing_is_fine(void **state)
{
    struct fixture *fixture = *state;
    char source[128];
    struct error err = {0};
    struct target_listing listing = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    write_bytes(source, 10, 5);
    assert_int_equal(target_put_file(fixture->target, "app/x.db.gz", source, NULL, NULL, &err), 0);
    assert_int_equal(target_delete(fixture->target, "app/x.db.gz", &err), 0);
    assert_int_equal(target_delete(fixture->target, "app/x.db.gz", &err), 0);
    assert_int_equal(target_list(fixture->target, "app/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
}

/* A delete takes the folders it emptied with it, as a bucket has no empty
 * folders, and stops at one still holding something; never the root. */
static void delete_removes_the_folders_it_empties_but_never_the_root(void **state)
{
    struct fixture *fixture = *state;
    char source[128], path[256];
    struct stat st;
    struct error err = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    write_bytes(source, 10, 5);
    assert_int_equal(
        target_put_file(fixture->target, "app/replica/g1/wal/a.wal.gz", source, NULL, NULL, &err),
        0);
    assert_int_equal(
        target_put_file(fixture->target, "app/replica/g2/base.json", source, NULL, NULL, &err), 0);
    assert_int_equal(target_delete(fixture->target, "app/replica/g1/wal/a.wal.gz", &err), 0);
    snprintf(path, sizeof path, "%s/app/replica/g1", fixture->root);
    assert_int_equal(stat(path, &st), -1);
    snprintf(path, sizeof path, "%s/app/replica/g2/base.json", fixture->root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(target_delete(fixture->target, "app/replica/g2/base.json", &err), 0);
    snprintf(path, sizeof path, "%s/app", fixture->root);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat(fixture->root, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

static void get_of_a_missing_key_leaves_no_file_and_never_overwrites(void **state)
{
    struct fixture *fixture = *state;
    char copy[128], source[128];
    struct error err = {0};
    snprintf(copy, sizeof copy, "%s/copy", fixture->local);
    snprintf(source, sizeof source, "%s/source", fixture->local);
    assert_int_equal(target_get_file(fixture->target, "app/none.db.gz", copy, NULL, &err), -ENOENT);
    assert_non_null(strstr(err.message, "no such object app/none.db.gz"));
    assert_int_equal(access(copy, F_OK), -1);
    write_bytes(source, 10, 6);
    write_bytes(copy, 10, 7);
    assert_int_equal(target_put_file(fixture->target, "app/y.db.gz", source, NULL, NULL, &err), 0);
    assert_int_equal(target_get_file(fixture->target, "app/y.db.gz", copy, NULL, &err), -EEXIST);
    assert_false(same_file(source, copy));
}

static void ranged_get_copies_exactly_the_bytes_asked_for(void **state)
{
    struct fixture *fixture = *state;
    char source[128], part[128];
    struct error err = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    snprintf(part, sizeof part, "%s/part", fixture->local);
    write_bytes(source, 200000, 3);
    assert_int_equal(target_put_file(fixture->target, "app/p.pack", source, NULL, NULL, &err), 0);
    long before = target_objects_read();
    assert_int_equal(target_get_range(fixture->target, "app/p.pack", 777, 100000, part, NULL, &err),
                     0);
    assert_int_equal(target_objects_read(), before + 1);
    FILE *got = fopen(part, "rb");
    assert_non_null(got);
    long count = 0;
    for (int c; (c = fgetc(got)) != EOF; count++)
        if (c != (int)(((777 + count) * 31 + 3) & 0xff))
            fail_msg("byte %ld of the range differs", count);
    fclose(got);
    assert_int_equal(count, 100000);

    /* An object shorter than the range: refused naming both sizes, no file. */
    unlink(part);
    assert_int_equal(target_get_range(fixture->target, "app/p.pack", 199990, 20, part, NULL, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.message, "app/p.pack is 200000 bytes, not the 200010"));
    assert_int_equal(access(part, F_OK), -1);
    assert_int_equal(target_get_range(fixture->target, "app/none.pack", 0, 1, part, NULL, &err),
                     -ENOENT);
    assert_int_equal(access(part, F_OK), -1);
}

static void changed_source_is_not_stored(void **state)
{
    struct fixture *fixture = *state;
    char source[128], stored[160];
    struct error err = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    write_bytes(source, 1000, 8);
    const char *wrong = "1111111111111111111111111111111111111111111111111111111111111111";
    assert_int_equal(target_put_file(fixture->target, "app/z.db.gz", source, wrong, NULL, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.message, "changed or is corrupt"));
    snprintf(stored, sizeof stored, "%s/app/z.db.gz", fixture->root);
    assert_int_equal(access(stored, F_OK), -1);
    snprintf(stored, sizeof stored, "%s/app/z.db.gz%s", fixture->root, FS_TEMP_SUFFIX);
    assert_int_equal(access(stored, F_OK), -1);
}

static void keys_cannot_leave_the_root(void **state)
{
    struct fixture *fixture = *state;
    char source[128];
    struct error err = {0};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    write_bytes(source, 10, 9);
    const char *bad[] = {"../escape.db.gz", "app/../../escape", "/etc/passwd", "app//x", "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(target_put_file(fixture->target, bad[i], source, NULL, NULL, &err),
                         -EINVAL);
        assert_int_equal(target_delete(fixture->target, bad[i], &err), -EINVAL);
    }
}

static void a_missing_root_is_refused_not_created(void **state)
{
    struct fixture *fixture = *state;
    char missing[128];
    struct error err = {0};
    struct target *target = NULL;
    snprintf(missing, sizeof missing, "%s/not-mounted", fixture->root);
    const struct target_config config = {.name = "nas", .type = TARGET_DIR, .path = missing};
    assert_int_equal(target_open(&config, &target, &err), -ENOENT);
    assert_null(target);
    assert_non_null(strstr(err.message, "is the share mounted?"));
    assert_int_equal(access(missing, F_OK), -1);
    assert_string_equal(target_describe(fixture->target) + 4, fixture->root);
}

static void stop_cancels_and_leaves_nothing(void **state)
{
    struct fixture *fixture = *state;
    char source[128], copy[128], stored[160];
    struct error err = {0};
    volatile sig_atomic_t stop = 0;
    const struct io_context io = {.stop = &stop};
    snprintf(source, sizeof source, "%s/source", fixture->local);
    snprintf(copy, sizeof copy, "%s/copy", fixture->local);
    write_bytes(source, 100, 10);
    assert_int_equal(target_put_file(fixture->target, "app/s.db.gz", source, NULL, &io, &err), 0);
    stop = 1;
    assert_int_equal(target_put_file(fixture->target, "app/t.db.gz", source, NULL, &io, &err),
                     -ECANCELED);
    assert_int_equal(target_get_file(fixture->target, "app/s.db.gz", copy, &io, &err), -ECANCELED);
    assert_int_equal(access(copy, F_OK), -1);
    snprintf(stored, sizeof stored, "%s/app/t.db.gz", fixture->root);
    assert_int_equal(access(stored, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_keeps_bytes_and_private_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(listing_filters_by_prefix_and_skips_temp_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            remove_temp_files_takes_only_what_a_killed_upload_left_of_that_database, setup,
            teardown),
        cmocka_unit_test_setup_teardown(delete_removes_and_missing_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_removes_the_folders_it_empties_but_never_the_root,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(get_of_a_missing_key_leaves_no_file_and_never_overwrites,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_get_copies_exactly_the_bytes_asked_for, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(changed_source_is_not_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(keys_cannot_leave_the_root, setup, teardown),
        cmocka_unit_test_setup_teardown(a_missing_root_is_refused_not_created, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_cancels_and_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
