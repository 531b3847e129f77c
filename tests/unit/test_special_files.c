/*
 * test_special_files.c: only regular files are databases. Each hostile
 * entry at a database path (or at its -wal, -shm, -journal) is refused by
 * database_open_path() before SQLite opens it, at once and with a message
 * naming the path and what it is; the same for archives and manifests read
 * through fs_open_regular(). A hang is a failure: alarm() kills the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/database.h"
#include "core/fsutil.h"

/* Far more than any refusal takes; a blocking open() would never return. */
#define HANG_SECONDS 5

static char root[PATH_MAX];

static void in_root(const char *name, char out[PATH_MAX])
{
    assert_int_equal(fs_join(out, PATH_MAX, root, name), 0);
}

static void make_database(const char *name)
{
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    in_root(name, path);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void make_fifo(const char *name)
{
    char path[PATH_MAX];
    in_root(name, path);
    assert_int_equal(mkfifo(path, 0600), 0);
}

static void make_link(const char *name, const char *target)
{
    char path[PATH_MAX];
    in_root(name, path);
    assert_int_equal(symlink(target, path), 0);
}

static void make_directory(const char *name)
{
    char path[PATH_MAX];
    in_root(name, path);
    assert_int_equal(mkdir(path, 0700), 0);
}

/* A listening unix socket stays a socket on disk after its descriptor is
 * closed, which is what an operator's mistake would leave there. */
static void make_socket(const char *name)
{
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    char path[PATH_MAX];
    in_root(name, path);
    assert_true(strlen(path) < sizeof address.sun_path);
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof address), 0);
    assert_int_equal(listen(fd, 1), 0);
    close(fd);
}

static void fifo_at_path(void)
{
    make_fifo("app.db");
}
static void socket_at_path(void)
{
    make_socket("app.db");
}
static void directory_at_path(void)
{
    make_directory("app.db");
}
static void link_to_dev_null(void)
{
    make_link("app.db", "/dev/null");
}
static void link_to_dev_zero(void)
{
    make_link("app.db", "/dev/zero");
}
static void link_to_fifo(void)
{
    make_fifo("pipe");
    make_link("app.db", "pipe");
}
static void link_loop(void)
{
    make_link("app.db", "loop");
    make_link("loop", "app.db");
}
static void dangling_link(void)
{
    make_link("app.db", "gone.db");
}
static void nothing_there(void)
{
}
static void fifo_as_wal(void)
{
    make_database("app.db");
    make_fifo("app.db-wal");
}
static void fifo_as_shm(void)
{
    make_database("app.db");
    make_fifo("app.db-shm");
}
static void fifo_as_journal(void)
{
    make_database("app.db");
    make_fifo("app.db-journal");
}
static void directory_as_wal(void)
{
    make_database("app.db");
    make_directory("app.db-wal");
}
static void dev_zero_as_journal(void)
{
    make_database("app.db");
    make_link("app.db-journal", "/dev/zero");
}
static void link_to_fifo_as_wal(void)
{
    make_database("app.db");
    make_fifo("pipe");
    make_link("app.db-wal", "pipe");
}
static void link_to_database(void)
{
    make_database("real.db");
    make_link("app.db", "real.db");
}

struct hostile_case {
    const char *name;
    void (*setup)(void);
    const char *path; /* NULL: ROOT/app.db */
    int code;
    const char *message; /* what the message must say, after the path */
};

static const struct hostile_case hostile_cases[] = {
    {"fifo", fifo_at_path, NULL, -EINVAL, "app.db is a FIFO, not a database file"},
    {"socket", socket_at_path, NULL, -EINVAL, "app.db is a socket, not a database file"},
    {"dev_null", NULL, "/dev/null", -EINVAL,
     "/dev/null is a character device, not a database file"},
    {"dev_zero", NULL, "/dev/zero", -EINVAL,
     "/dev/zero is a character device, not a database file"},
    {"directory", directory_at_path, NULL, -EINVAL, "app.db is a directory, not a database file"},
    {"symlink_to_dev_null", link_to_dev_null, NULL, -EINVAL,
     "app.db is a character device, not a database file"},
    {"symlink_to_dev_zero", link_to_dev_zero, NULL, -EINVAL,
     "app.db is a character device, not a database file"},
    {"symlink_to_fifo", link_to_fifo, NULL, -EINVAL, "app.db is a FIFO, not a database file"},
    {"symlink_loop", link_loop, NULL, -ELOOP, "app.db is a symbolic link loop"},
    {"dangling_symlink", dangling_link, NULL, -ENOENT,
     "app.db is a symbolic link to a file that does not exist"},
    {"missing", nothing_there, NULL, -ENOENT, "app.db does not exist"},
    {"fifo_as_wal", fifo_as_wal, NULL, -EINVAL,
     "app.db-wal is a FIFO, not a database file (the -wal file of"},
    {"fifo_as_shm", fifo_as_shm, NULL, -EINVAL,
     "app.db-shm is a FIFO, not a database file (the -shm file of"},
    {"fifo_as_journal", fifo_as_journal, NULL, -EINVAL,
     "app.db-journal is a FIFO, not a database file (the -journal file of"},
    {"directory_as_wal", directory_as_wal, NULL, -EINVAL,
     "app.db-wal is a directory, not a database file"},
    {"dev_zero_as_journal", dev_zero_as_journal, NULL, -EINVAL,
     "app.db-journal is a character device, not a database file"},
    {"symlink_to_fifo_as_wal", link_to_fifo_as_wal, NULL, -EINVAL,
     "app.db-wal is a FIFO, not a database file"},
    {"symlink_to_a_database", link_to_database, NULL, 0, NULL},
};

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(root, sizeof root, "%s/sqlprodd-special-XXXXXX", tmp);
    return mkdtemp(root) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    chmod(root, 0700);
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void database_open_refuses_what_is_not_a_regular_file(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof hostile_cases / sizeof hostile_cases[0]; i++) {
        const struct hostile_case *c = &hostile_cases[i];
        char path[PATH_MAX];
        assert_int_equal(teardown(NULL), 0);
        assert_int_equal(setup(NULL), 0);
        if (c->setup)
            c->setup();
        if (c->path)
            snprintf(path, sizeof path, "%s", c->path);
        else
            in_root("app.db", path);
        struct error err = {0};
        sqlite3 *connection = NULL;
        alarm(HANG_SECONDS);
        int rc = database_open_path(path, true, NULL, &connection, &err);
        alarm(0);
        sqlite3_close(connection);
        if (rc != c->code || (c->message && !strstr(err.message, c->message)))
            fail_msg("case %s: got %d \"%s\", expected %d \"%s\"", c->name, rc, err.message,
                     c->code, c->message ? c->message : "");
        if (c->code != 0 && !strstr(err.message, path))
            fail_msg("case %s: the message does not name %s: %s", c->name, path, err.message);
    }
}

/* Archives and manifests are read through fs_open_regular(): a FIFO in
 * their place fails at once instead of waiting for a writer. */
static void archive_sources_must_be_regular_files(void **state)
{
    (void)state;
    char path[PATH_MAX];
    struct error err = {0};
    char *data = NULL;
    make_fifo("app-20261202T000000Z.db.gz.json");
    in_root("app-20261202T000000Z.db.gz.json", path);
    alarm(HANG_SECONDS);
    assert_int_equal(fs_read_file(path, &data, NULL, &err), -EINVAL);
    alarm(0);
    assert_non_null(strstr(err.message, "app-20261202T000000Z.db.gz.json is a FIFO, not a"));
    alarm(HANG_SECONDS);
    assert_int_equal(fs_open_regular("/dev/zero", "a regular file", &err), -EINVAL);
    alarm(0);
    assert_string_equal(err.message, "/dev/zero is a character device, not a regular file");
}

/* Runs `check` in a child that has dropped root, as the sqlprodd user would
 * be: root reads everything, so permission cases need another uid. */
static void as_nobody(void (*check)(void))
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
            _exit(3);
        alarm(HANG_SECONDS);
        check();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void expect_permission_denied(const char *path)
{
    struct error err = {0};
    sqlite3 *connection = NULL;
    int rc = database_open_path(path, true, NULL, &connection, &err);
    sqlite3_close(connection);
    if (rc != -EACCES || !strstr(err.message, "permission denied") ||
        !strstr(err.message, "ReadWritePaths") || !strstr(err.message, path) ||
        strstr(err.message, "does not exist")) {
        fprintf(stderr, "%s: got %d \"%s\"\n", path, rc, err.message);
        _exit(1);
    }
}

static char unreadable_path[PATH_MAX], hidden_path[PATH_MAX];

static void open_unreadable(void)
{
    expect_permission_denied(unreadable_path);
}
static void open_hidden(void)
{
    expect_permission_denied(hidden_path);
}

/* A database the agent may not read is "permission denied" with the fix,
 * not "does not exist": the file without read permission, and the file in
 * a directory the agent may not search. */
static void unreadable_database_is_permission_denied_not_missing(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* needs root to become another user */
    assert_int_equal(chmod(root, 0755), 0);
    make_database("app.db");
    in_root("app.db", unreadable_path);
    assert_int_equal(chmod(unreadable_path, 0600), 0);
    as_nobody(open_unreadable);

    make_directory("private");
    make_database("private/app.db");
    in_root("private/app.db", hidden_path);
    char directory[PATH_MAX];
    in_root("private", directory);
    assert_int_equal(chmod(directory, 0700), 0);
    as_nobody(open_hidden);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(database_open_refuses_what_is_not_a_regular_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(archive_sources_must_be_regular_files, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable_database_is_permission_denied_not_missing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
