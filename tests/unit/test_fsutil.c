/*
 * test_fsutil.c: directories, durable and atomic writes, temp-file cleanup
 * and path joining, on a real file system under a fresh temp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fsutil.h"

struct fixture {
    char root[PATH_MAX];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->root, sizeof f->root, "%s/sqlprodd-fsutil-XXXXXX", tmp);
    if (!mkdtemp(f->root))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void path_in(const struct fixture *f, const char *name, char out[PATH_MAX])
{
    assert_int_equal(fs_join(out, PATH_MAX, f->root, name), 0);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    assert_int_equal(fclose(file), 0);
}

static void make_directories_creates_every_level_with_the_exact_mode(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char path[PATH_MAX], middle[PATH_MAX];
    path_in(f, "a//b/c/", path);
    path_in(f, "a/b", middle);

    /* A strict umask must not narrow the mode we asked for. */
    mode_t old = umask(077);
    int rc = fs_make_directories(path, 0750, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(path), 0750);
    assert_int_equal(mode_of(middle), 0750);
    /* Again: existing directories are fine. */
    assert_int_equal(fs_make_directories(path, 0700, &err), 0);
    assert_int_equal(mode_of(path), 0750);
}

static void make_directories_leaves_existing_directories_alone(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char parent[PATH_MAX], child[PATH_MAX];
    path_in(f, "existing", parent);
    path_in(f, "existing/new", child);
    assert_int_equal(mkdir(parent, 0755), 0);
    assert_int_equal(chmod(parent, 0755), 0);

    assert_int_equal(fs_make_directories(child, 0700, &err), 0);
    assert_int_equal(mode_of(parent), 0755);
    assert_int_equal(mode_of(child), 0700);
}

static void make_directories_through_a_file_names_the_file(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char file[PATH_MAX], below[PATH_MAX], expected[PATH_MAX + 64];
    path_in(f, "plain", file);
    path_in(f, "plain/sub/dir", below);
    write_text(file, "x");

    assert_int_equal(fs_make_directories(below, 0700, &err), -ENOTDIR);
    assert_int_equal(err.code, -ENOTDIR);
    snprintf(expected, sizeof expected, "cannot create directory %s: Not a directory", file);
    assert_string_equal(err.message, expected);
}

/* Runs the check as `nobody` when we are root, since root is never denied. */
static void make_directories_reports_permission_denied(void **state)
{
    struct fixture *f = *state;
    char locked[PATH_MAX], below[PATH_MAX], expected[PATH_MAX + 64];
    path_in(f, "locked", locked);
    path_in(f, "locked/app", below);
    assert_int_equal(mkdir(locked, 0555), 0);
    assert_int_equal(chmod(locked, 0555), 0);
    assert_int_equal(chmod(f->root, 0711), 0);
    snprintf(expected, sizeof expected, "cannot create directory %s: Permission denied", below);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct error err = {0};
        if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
            _exit(2);
        int rc = fs_make_directories(below, 0700, &err);
        _exit(rc == -EACCES && strcmp(err.message, expected) == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(exists(below));
    chmod(locked, 0700);
}

static void write_atomically_writes_content_with_mode_and_no_temp(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char path[PATH_MAX], temp[PATH_MAX + 32];
    path_in(f, "state.json", path);
    snprintf(temp, sizeof temp, "%s%s", path, FS_TEMP_SUFFIX);

    mode_t old = umask(077);
    int rc = fs_write_file_atomically(path, "first\n", 6, 0640, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(path), 0640);
    assert_false(exists(temp));

    /* Replacing: the new content, whatever a crash left at the temp name. */
    write_text(temp, "leftover from a crash");
    assert_int_equal(fs_write_file_atomically(path, "second", 6, 0600, &err), 0);
    char *data = NULL;
    size_t size = 0;
    assert_int_equal(fs_read_file(path, &data, &size, &err), 0);
    assert_int_equal(size, 6);
    assert_string_equal(data, "second");
    assert_int_equal(mode_of(path), 0600);
    assert_false(exists(temp));
    free(data);
}

static void write_atomically_into_a_missing_directory_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char path[PATH_MAX];
    path_in(f, "missing/state.json", path);

    assert_int_equal(fs_write_file_atomically(path, "x", 1, 0600, &err), -ENOENT);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "No such file or directory"));
}

static void remove_temp_files_removes_only_ours_and_only_here(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char a[PATH_MAX], b[PATH_MAX], keep[PATH_MAX], sub[PATH_MAX], nested[PATH_MAX];
    path_in(f, "app-1.db.gz" FS_TEMP_SUFFIX, a);
    path_in(f, "app.json" FS_TEMP_SUFFIX, b);
    path_in(f, "app-1.db.gz", keep);
    path_in(f, "sub", sub);
    path_in(f, "sub/x" FS_TEMP_SUFFIX, nested);
    write_text(a, "a");
    write_text(b, "b");
    write_text(keep, "keep");
    assert_int_equal(mkdir(sub, 0700), 0);
    write_text(nested, "nested");
    char directory[PATH_MAX];
    path_in(f, "odd" FS_TEMP_SUFFIX, directory);
    assert_int_equal(mkdir(directory, 0700), 0); /* not a file of ours: left alone */

    assert_int_equal(fs_remove_temp_files(f->root, &err), 2);
    assert_false(exists(a));
    assert_false(exists(b));
    assert_true(exists(keep));
    assert_true(exists(nested));
    assert_true(exists(directory));
    assert_int_equal(fs_remove_temp_files(f->root, &err), 0);
}

static void remove_temp_files_in_a_missing_directory_is_zero(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char missing[PATH_MAX];
    path_in(f, "nothing-here", missing);
    assert_int_equal(fs_remove_temp_files(missing, &err), 0);
}

/* A database without a -wal file has an empty log: size 0, not an error. */
static void file_size_of_a_wal_and_of_a_missing_one(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char database[PATH_MAX], wal[PATH_MAX + 8];
    path_in(f, "app.db", database);
    snprintf(wal, sizeof wal, "%s-wal", database);
    assert_int_equal(fs_file_size(database, "-wal"), 0);
    assert_int_equal(fs_write_file_atomically(wal, "12345", 5, 0600, &err), 0);
    assert_int_equal(fs_file_size(database, "-wal"), 5);
    assert_int_equal(fs_file_size(database, ""), 0);
}

static void read_file_reads_everything_nul_terminated(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char path[PATH_MAX], empty[PATH_MAX];
    path_in(f, "big", path);
    path_in(f, "empty", empty);

    /* Larger than any first guess, with a NUL inside. */
    size_t length = 3 * 1024 * 1024 + 7;
    char *content = malloc(length);
    for (size_t i = 0; i < length; i++)
        content[i] = (char)(i * 31 % 251);
    assert_int_equal(fs_write_file_atomically(path, content, length, 0600, &err), 0);
    char *data = NULL;
    size_t size = 0;
    assert_int_equal(fs_read_file(path, &data, &size, &err), 0);
    assert_int_equal(size, length);
    assert_memory_equal(data, content, length);
    assert_int_equal(data[length], '\0');
    free(data);
    free(content);

    write_text(empty, "");
    assert_int_equal(fs_read_file(empty, &data, &size, &err), 0);
    assert_int_equal(size, 0);
    assert_string_equal(data, "");
    free(data);
}

static void read_file_reads_files_whose_size_is_unknown(void **state)
{
    (void)state;
    struct error err = {0};
    char *data = NULL;
    size_t size = 0;
    /* /proc files report size 0 but have content. */
    assert_int_equal(fs_read_file("/proc/self/status", &data, &size, &err), 0);
    assert_true(size > 0);
    assert_non_null(strstr(data, "Name:"));
    free(data);
}

static void read_file_missing_names_the_path(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char path[PATH_MAX], expected[PATH_MAX + 64];
    path_in(f, "absent.json", path);
    char *data = (char *)"untouched";
    size_t size = 99;

    assert_int_equal(fs_read_file(path, &data, &size, &err), -ENOENT);
    assert_null(data);
    snprintf(expected, sizeof expected, "cannot open %s: No such file or directory", path);
    assert_string_equal(err.message, expected);
}

static void rename_durably_moves_and_reports_both_paths(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char from[PATH_MAX], to[PATH_MAX];
    path_in(f, "from", from);
    path_in(f, "to", to);
    write_text(from, "payload");

    assert_int_equal(fs_rename_durably(from, to, &err), 0);
    assert_false(exists(from));
    assert_true(exists(to));

    assert_int_equal(fs_rename_durably(from, to, &err), -ENOENT);
    assert_non_null(strstr(err.message, from));
    assert_non_null(strstr(err.message, to));
}

static void sync_reports_missing_paths(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    char file[PATH_MAX], missing[PATH_MAX];
    path_in(f, "file", file);
    path_in(f, "missing", missing);
    write_text(file, "x");

    assert_int_equal(fs_sync_file(file, &err), 0);
    assert_int_equal(fs_sync_directory(f->root, &err), 0);
    assert_int_equal(fs_sync_file(missing, &err), -ENOENT);
    assert_non_null(strstr(err.message, missing));
    assert_int_equal(fs_sync_directory(missing, &err), -ENOENT);
    assert_non_null(strstr(err.message, missing));
    assert_int_equal(fs_sync_directory(file, &err), -ENOTDIR);
}

struct join_case {
    const char *directory, *name, *expected;
};

static void join_puts_exactly_one_slash_between(void **state)
{
    (void)state;
    static const struct join_case cases[] = {
        {"/var/backups", "app", "/var/backups/app"},
        {"/var/backups/", "app", "/var/backups/app"},
        {"/var/backups//", "/app", "/var/backups/app"},
        {"/", "app", "/app"},
        {"//", "app", "/app"},
        {"relative", "app.db.gz", "relative/app.db.gz"},
        {"", "app", "app"},
        {"/a", "b/c", "/a/b/c"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(fs_join(out, sizeof out, cases[i].directory, cases[i].name), 0);
        assert_string_equal(out, cases[i].expected);
    }
}

static void join_refuses_what_does_not_fit(void **state)
{
    (void)state;
    char out[17];
    assert_int_equal(fs_join(out, sizeof out, "/var/backups", "app"), 0); /* 16 + NUL */
    assert_int_equal(fs_join(out, sizeof out, "/var/backups", "apps"), -ENAMETOOLONG);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(make_directories_creates_every_level_with_the_exact_mode,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(make_directories_leaves_existing_directories_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(make_directories_through_a_file_names_the_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(make_directories_reports_permission_denied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(write_atomically_writes_content_with_mode_and_no_temp,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(write_atomically_into_a_missing_directory_fails_cleanly,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(remove_temp_files_removes_only_ours_and_only_here, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(remove_temp_files_in_a_missing_directory_is_zero, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_file_reads_everything_nul_terminated, setup, teardown),
        cmocka_unit_test(read_file_reads_files_whose_size_is_unknown),
        cmocka_unit_test_setup_teardown(read_file_missing_names_the_path, setup, teardown),
        cmocka_unit_test_setup_teardown(rename_durably_moves_and_reports_both_paths, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sync_reports_missing_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(file_size_of_a_wal_and_of_a_missing_one, setup, teardown),
        cmocka_unit_test(join_puts_exactly_one_slash_between),
        cmocka_unit_test(join_refuses_what_does_not_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
