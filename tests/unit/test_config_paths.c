/*
 * test_config_paths.c: no write of the agent lands on something it does not
 * own. Each case is a config loaded with config_load() over a real
 * temporary tree (database files with the SQLite header, directories,
 * symlinks, hard links), as `sqlprodd check` loads it: a hostile one must
 * come back refused with one "FILE:LINE: key: ..." line naming both keys, a
 * sound one must load. Also the restore destination check and the second
 * guard (fsutil never replaces a file that starts with the SQLite header).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_paths.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/lock.h"
#include "offsite/target.h"

static const char sqlite_header[16] = "SQLite format 3";

struct tree {
    char root[PATH_MAX];
    char cwd[PATH_MAX];
};

static void make_file(const char *root, const char *name, bool database)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    char page[4096] = {0};
    if (database)
        memcpy(page, sqlite_header, sizeof sqlite_header);
    else
        memcpy(page, "plain text\n", 11);
    assert_int_equal(write(fd, page, sizeof page), (ssize_t)sizeof page);
    close(fd);
}

static void make_directory(const char *root, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, name);
    assert_int_equal(mkdir(path, 0700), 0);
}

/*
 * ROOT/w/app.db, other.db (databases), link.db -> app.db, hard.db = app.db,
 * ROOT/backups/app/, ROOT/state/, ROOT/nas/, ROOT/metrics/,
 * ROOT/statelink -> nas, ROOT/dangling.db -> w/new.db (not there yet).
 */
static int setup(void **state)
{
    struct tree *tree = calloc(1, sizeof *tree);
    snprintf(tree->root, sizeof tree->root, "/tmp/sqlprodd-test-paths-XXXXXX");
    if (!tree || !mkdtemp(tree->root) || !getcwd(tree->cwd, sizeof tree->cwd))
        return -1;
    make_directory(tree->root, "w");
    make_directory(tree->root, "backups");
    make_directory(tree->root, "backups/app");
    make_directory(tree->root, "state");
    make_directory(tree->root, "nas");
    make_directory(tree->root, "metrics");
    make_file(tree->root, "w/app.db", true);
    make_file(tree->root, "w/other.db", true);
    char path[PATH_MAX], target[PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics/pipe.prom", tree->root);
    if (mkfifo(path, 0600) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/w/link.db", tree->root);
    if (symlink("app.db", path) != 0)
        return -1;
    snprintf(target, sizeof target, "%s/w/app.db", tree->root);
    snprintf(path, sizeof path, "%s/w/hard.db", tree->root);
    if (link(target, path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/statelink", tree->root);
    if (symlink("nas", path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/dangling.db", tree->root);
    if (symlink("w/new.db", path) != 0)
        return -1;
    *state = tree;
    return 0;
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
    struct tree *tree = *state;
    if (chdir(tree->cwd) != 0)
        return -1;
    nftw(tree->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(tree);
    return 0;
}

/* Replaces every '@' in `template` with the tree's root. */
static void expand(const struct tree *tree, const char *template, char *out, size_t out_size)
{
    size_t used = 0;
    for (const char *c = template; *c && used + 1 < out_size; c++) {
        if (*c == '@')
            used += (size_t)snprintf(out + used, out_size - used, "%s", tree->root);
        else
            out[used++] = *c;
    }
    out[used < out_size ? used : out_size - 1] = '\0';
}

/* The fields of the config every case varies; NULL keeps the sound value.
 * Lines: 1 state_dir, 2 targets, 4 app, 5 other, 7 metrics. */
struct layout {
    const char *state_dir;
    const char *target;        /* targets.nas.path */
    const char *second_target; /* targets.nas2.path, on line 2 too, or NULL */
    const char *app_path;
    const char *app_dir;
    const char *other_path;
    const char *other_dir;
    const char *textfile;
};

static const struct layout sound = {
    .state_dir = "@/state",
    .target = "@/nas",
    .app_path = "@/w/app.db",
    .app_dir = "@/backups",
    .other_path = "@/w/other.db",
    .other_dir = "@/backups",
    .textfile = "@/metrics/sqlprodd.prom",
};

#define PICK(field) (layout->field ? layout->field : sound.field)

/* Writes the config of `layout` under the tree; path receives its name. */
static void write_layout(const struct tree *tree, const struct layout *layout, char *path,
                         size_t path_size)
{
    char second[PATH_MAX] = "";
    if (layout->second_target)
        snprintf(second, sizeof second, ", { name = \"nas2\"; type = \"dir\"; path = \"%s\"; }",
                 layout->second_target);
    char template[16384], text[32768];
    snprintf(template, sizeof template,
             "state_dir = \"%s\";\n"
             "targets = ( { name = \"nas\"; type = \"dir\"; path = \"%s\"; }%s );\n"
             "databases = (\n"
             "  { name = \"app\"; path = \"%s\"; backup = { dir = \"%s\"; }; },\n"
             "  { name = \"other\"; path = \"%s\"; backup = { dir = \"%s\"; }; }\n"
             ");\n"
             "metrics = { textfile = \"%s\"; };\n",
             PICK(state_dir), PICK(target), second, PICK(app_path), PICK(app_dir), PICK(other_path),
             PICK(other_dir), PICK(textfile));
    expand(tree, template, text, sizeof text);
    snprintf(path, path_size, "%s/sqlprodd.conf", tree->root);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
}

struct hostile_case {
    const char *what;
    struct layout layout;
    int line;              /* where the refusal is reported */
    const char *key;       /* the key it is reported under */
    const char *other_key; /* the other key the line must name, with its line */
};

/* Each is a mistake an operator can make; all must be refused by check,
 * start-up and reload (all of which go through config_load). */
static const struct hostile_case hostile_cases[] = {
    /* The issue's own cases. */
    {"textfile is the database",
     {.textfile = "@/w/app.db"},
     7,
     "metrics.textfile",
     "databases.app.path (line 4)"},
    {"dir target is the backup directory",
     {.target = "@/backups"},
     2,
     "targets.nas.path",
     "databases.app.backup.dir (line 4)"},
    {"one file as //./",
     {.other_path = "@/w//./app.db"},
     5,
     "databases.other.path",
     "databases.app.path (line 4)"},
    {"one file by a symlink",
     {.other_path = "@/w/link.db"},
     5,
     "databases.other.path",
     "databases.app.path (line 4)"},
    /* Further hostile cases of the same kinds. */
    {"one file by a hard link",
     {.other_path = "@/w/hard.db"},
     5,
     "databases.other.path",
     "databases.app.path (line 4)"},
    {"one file through a missing x/../",
     {.other_path = "@/w/missing/../app.db"},
     5,
     "databases.other.path",
     "databases.app.path (line 4)"},
    {"one file through /./ twice",
     {.other_path = "@/./w/./app.db"},
     5,
     "databases.other.path",
     "databases.app.path (line 4)"},
    {"one file not there yet, by a dangling symlink",
     {.app_path = "@/w/new.db", .other_path = "@/dangling.db"},
     5,
     "databases.other.path",
     "databases.app.path (line 4)"},
    {"a database is another's -wal",
     {.other_path = "@/w/app.db-wal"},
     5,
     "databases.other.path",
     "the -wal file of databases.app.path (line 4)"},
    {"textfile is the database's -wal",
     {.textfile = "@/w/app.db-wal"},
     7,
     "metrics.textfile",
     "the -wal file of databases.app.path (line 4)"},
    {"textfile is the database's -journal",
     {.textfile = "@/w/other.db-journal"},
     7,
     "metrics.textfile",
     "the -journal file of databases.other.path (line 5)"},
    {"textfile is the database by a symlink",
     {.textfile = "@/w/link.db"},
     7,
     "metrics.textfile",
     "databases.app.path (line 4)"},
    {"textfile's temp file is a database",
     {.other_path = "@/metrics/sqlprodd.prom.sqlprodd-tmp"},
     7,
     "metrics.textfile",
     "databases.other.path (line 5)"},
    {"textfile inside a backup directory",
     {.textfile = "@/backups/app/metrics.prom"},
     7,
     "metrics.textfile",
     "databases.app.backup.dir (line 4)"},
    {"textfile is state_dir/state.db",
     {.textfile = "@/state/state.db"},
     7,
     "metrics.textfile",
     "state_dir \"@/state\" (line 1)"},
    {"textfile is a FIFO",
     {.textfile = "@/metrics/pipe.prom"},
     7,
     "metrics.textfile",
     "is a FIFO, not a file"},
    {"textfile is a device (only looked at: never written by a check)",
     {.textfile = "/dev/null"},
     7,
     "metrics.textfile",
     "is a character device, not a file"},
    {"textfile is state_dir itself",
     {.textfile = "@/state"},
     7,
     "metrics.textfile",
     "state_dir \"@/state\" (line 1)"},
    {"textfile is the databases' directory",
     {.textfile = "@/w"},
     7,
     "metrics.textfile",
     "databases.app.path (line 4)"},
    {"textfile inside a dir target",
     {.textfile = "@/nas/app/x.prom"},
     7,
     "metrics.textfile",
     "targets.nas.path (line 2)"},
    {"state_dir is a target's path",
     {.state_dir = "@/nas"},
     2,
     "targets.nas.path",
     "state_dir \"@/nas\" (line 1)"},
    {"state_dir is a target's path by a symlink",
     {.state_dir = "@/statelink"},
     2,
     "targets.nas.path",
     "state_dir \"@/statelink\" (line 1)"},
    {"state_dir inside a backup directory",
     {.state_dir = "@/backups/app/state"},
     1,
     "state_dir",
     "databases.app.backup.dir (line 4)"},
    {"state_dir holds the backup directories",
     {.state_dir = "@/backups"},
     1,
     "state_dir",
     "databases.app.backup.dir (line 4)"},
    {"backup directory is a target's path",
     {.target = "@/backups/app"},
     2,
     "targets.nas.path",
     "databases.app.backup.dir (line 4)"},
    {"target is the parent of a backup directory",
     {.app_dir = "@/nas/deep", .other_dir = "@/backups"},
     2,
     "targets.nas.path",
     "databases.app.backup.dir (line 4)"},
    {"target inside a backup directory",
     {.target = "@/backups/app/nas"},
     2,
     "targets.nas.path",
     "databases.app.backup.dir (line 4)"},
    {"two targets with one path",
     {.second_target = "@/nas/"},
     2,
     "targets.nas2.path",
     "targets.nas.path (line 2)"},
    {"two targets nested",
     {.second_target = "@/nas/inner"},
     2,
     "targets.nas2.path",
     "targets.nas.path (line 2)"},
    {"target path with a trailing /. on the backups",
     {.target = "@/backups/."},
     2,
     "targets.nas.path",
     "databases.app.backup.dir (line 4)"},
    {"database inside state_dir",
     {.other_path = "@/state/other.db"},
     5,
     "databases.other.path",
     "state_dir \"@/state\" (line 1)"},
    {"database inside a backup directory",
     {.other_path = "@/backups/app/other.db"},
     5,
     "databases.other.path",
     "databases.app.backup.dir (line 4)"},
    {"database inside a dir target",
     {.other_path = "@/nas/other.db"},
     5,
     "databases.other.path",
     "targets.nas.path (line 2)"},
    {"database inside its own backup directory",
     {.app_path = "@/backups/app/app.db"},
     4,
     "databases.app.path",
     "databases.app.backup.dir (line 4)"},
    {"backup directory inside another's",
     {.other_dir = "@/backups/app/"},
     5,
     "databases.other.backup.dir",
     "databases.app.backup.dir (line 4)"},
};

static void hostile_configs_are_refused_naming_both_keys(void **state)
{
    const struct tree *tree = *state;
    size_t failures = 0;
    for (size_t i = 0; i < sizeof hostile_cases / sizeof *hostile_cases; i++) {
        const struct hostile_case *c = &hostile_cases[i];
        char path[PATH_MAX], prefix[PATH_MAX + 400], other[PATH_MAX + 200];
        write_layout(tree, &c->layout, path, sizeof path);
        struct config *config = NULL;
        struct config_diagnostics diag = {0};
        int rc = config_load(path, &config, &diag);
        snprintf(prefix, sizeof prefix, "%s:%d: %s: ", path, c->line, c->key);
        expand(tree, c->other_key, other, sizeof other);
        /* The first line is the pair asked about; a path can overlap more
         * than one place (a target holding every backup directory). */
        bool ok = rc == -EINVAL && !config && diag.count >= 1 &&
                  strncmp(diag.lines[0], prefix, strlen(prefix)) == 0 &&
                  strstr(diag.lines[0], other) != NULL;
        if (getenv("SHOW"))
            for (size_t j = 0; j < diag.count; j++)
                fprintf(stderr, "[%s] %s\n", c->what, diag.lines[j]);
        if (!ok) {
            failures++;
            print_error("case \"%s\": rc %d, %zu lines; wanted \"%s...\" naming \"%s\"\n", c->what,
                        rc, diag.count, prefix, other);
            for (size_t j = 0; j < diag.count; j++)
                print_error("  got: %s\n", diag.lines[j]);
        }
        config_free(config);
        config_diagnostics_free(&diag);
    }
    assert_int_equal(failures, 0);
}

/* Layouts that share a parent, a prefix or a directory without overlap. */
static const struct layout sound_layouts[] = {
    {0}, /* two entries with one backup `dir` and different names */
    {.app_dir = "@/backups",
     .other_dir = "@/backups2",
     .target = "@/backups3",
     .textfile = "@/backups-metrics.prom"},
    {.app_dir = "@/backups/", .other_dir = "@/backups//"},
    {.app_dir = "@/w", .other_dir = "@/w"}, /* @/w/app beside @/w/app.db */
    {.textfile = "@/w/metrics.prom"},       /* beside the databases */
    {.state_dir = "@/state2", .target = "@/nas/../nas2"},
    {.app_path = "@/w/new.db"}, /* not created yet */
};

static void sound_layouts_load(void **state)
{
    const struct tree *tree = *state;
    for (size_t i = 0; i < sizeof sound_layouts / sizeof *sound_layouts; i++) {
        char path[PATH_MAX];
        write_layout(tree, &sound_layouts[i], path, sizeof path);
        struct config *config = NULL;
        struct config_diagnostics diag = {0};
        int rc = config_load(path, &config, &diag);
        for (size_t j = 0; j < diag.count; j++)
            print_error("layout %zu: unexpected: %s\n", i, diag.lines[j]);
        assert_int_equal(rc, 0);
        config_free(config);
        config_diagnostics_free(&diag);
    }
}

/* An overlap with a setting in `defaults` is reported there, and one with a
 * built-in default at the entry that inherits it. */
static void inherited_backup_dir_is_named_where_it_is_written(void **state)
{
    const struct tree *tree = *state;
    char template[2048], text[8192], path[PATH_MAX], want[PATH_MAX + 200];
    snprintf(template, sizeof template,
             "state_dir = \"@/state\";\n"
             "defaults = {\n"
             "  backup = { dir = \"@/backups\"; };\n"
             "};\n"
             "targets = ( { name = \"nas\"; type = \"dir\"; path = \"@/backups/app\"; } );\n"
             "databases = ( { name = \"app\"; path = \"@/w/app.db\"; } );\n");
    expand(tree, template, text, sizeof text);
    snprintf(path, sizeof path, "%s/inherited.conf", tree->root);
    FILE *file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
    struct config *config = NULL;
    struct config_diagnostics diag = {0};
    assert_int_equal(config_load(path, &config, &diag), -EINVAL);
    assert_int_equal(diag.count, 1);
    snprintf(want, sizeof want, "%s:5: targets.nas.path: ", path);
    assert_true(strncmp(diag.lines[0], want, strlen(want)) == 0);
    assert_non_null(strstr(diag.lines[0], "from defaults.backup.dir (line 3)"));
    config_diagnostics_free(&diag);

    /* state_dir written, backup.dir built in: the message is on state_dir. */
    snprintf(template, sizeof template,
             "state_dir = \"/var/backups/sqlprodd/app\";\n"
             "databases = ( { name = \"app\"; path = \"@/w/app.db\"; } );\n");
    expand(tree, template, text, sizeof text);
    file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
    assert_int_equal(config_load(path, &config, &diag), -EINVAL);
    assert_int_equal(diag.count, 1);
    snprintf(want, sizeof want, "%s:1: state_dir: ", path);
    assert_true(strncmp(diag.lines[0], want, strlen(want)) == 0);
    assert_non_null(strstr(diag.lines[0], "(the built-in default)"));
    config_diagnostics_free(&diag);
}

/* A setting in an @include'd file is named with that file. */
static void overlap_across_an_included_file_names_that_file(void **state)
{
    const struct tree *tree = *state;
    char template[2048], text[8192], path[PATH_MAX], included[PATH_MAX], want[PATH_MAX + 200];
    snprintf(included, sizeof included, "%s/databases.conf", tree->root);
    snprintf(template, sizeof template,
             "databases = (\n"
             "  { name = \"app\"; path = \"@/w/app.db\"; backup = { dir = \"@/backups\"; }; }\n"
             ");\n");
    expand(tree, template, text, sizeof text);
    FILE *file = fopen(included, "w");
    fputs(text, file);
    fclose(file);
    snprintf(template, sizeof template,
             "state_dir = \"@/state\";\n"
             "metrics = { textfile = \"@/w/hard.db\"; };\n");
    expand(tree, template, text, sizeof text);
    /* Added after expand(), which would take its '@' for the root. */
    strcat(text, "@include \"databases.conf\"\n");
    snprintf(path, sizeof path, "%s/main.conf", tree->root);
    file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
    struct config *config = NULL;
    struct config_diagnostics diag = {0};
    assert_int_equal(config_load(path, &config, &diag), -EINVAL);
    assert_int_equal(diag.count, 1);
    snprintf(want, sizeof want, "%s:2: metrics.textfile: ", path);
    if (strncmp(diag.lines[0], want, strlen(want)) != 0)
        print_error("got: %s\n", diag.lines[0]);
    assert_true(strncmp(diag.lines[0], want, strlen(want)) == 0);
    snprintf(want, sizeof want, "databases.app.path (line 2 of %s)", included);
    assert_non_null(strstr(diag.lines[0], want));
    config_diagnostics_free(&diag);
}

static void paths_normalise_like_the_kernel_and_sqlite(void **state)
{
    const struct tree *tree = *state;
    static const struct {
        const char *given, *expected;
    } cases[] = {
        {"@/w/app.db", "@/w/app.db"},
        {"@/w//./app.db", "@/w/app.db"},
        {"@/w/link.db", "@/w/app.db"},
        {"@/w/missing/../app.db", "@/w/app.db"},
        {"@/w/missing/deeper/", "@/w/missing/deeper"},
        {"@/statelink/x/./y/..", "@/nas/x"},
        {"@/dangling.db", "@/w/new.db"},
        {"@/../../../..", "/"},
    };
    char real_root[PATH_MAX];
    assert_non_null(realpath(tree->root, real_root));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char given[PATH_MAX], expected[PATH_MAX], got[PATH_MAX];
        expand(tree, cases[i].given, given, sizeof given);
        struct tree real = *tree;
        snprintf(real.root, sizeof real.root, "%s", real_root);
        expand(&real, cases[i].expected, expected, sizeof expected);
        assert_int_equal(config_paths_normalise(given, got, sizeof got), 0);
        assert_string_equal(got, expected);
    }
    /* Relative to the current directory, as `restore --to x.db` is. */
    char directory[PATH_MAX], got[PATH_MAX], expected[PATH_MAX];
    snprintf(directory, sizeof directory, "%s/state", tree->root);
    assert_int_equal(chdir(directory), 0);
    assert_int_equal(config_paths_normalise("./x/../restored.db", got, sizeof got), 0);
    snprintf(expected, sizeof expected, "%s/state/restored.db", real_root);
    assert_string_equal(got, expected);
    assert_int_equal(chdir(tree->cwd), 0);
}

static struct config *load_sound(const struct tree *tree)
{
    char path[PATH_MAX];
    write_layout(tree, &(struct layout){0}, path, sizeof path);
    struct config *config = NULL;
    struct config_diagnostics diag = {0};
    assert_int_equal(config_load(path, &config, &diag), 0);
    return config;
}

static void restore_destination_may_not_land_on_what_the_config_owns(void **state)
{
    const struct tree *tree = *state;
    struct config *config = load_sound(tree);
    const struct database_config *app = config_find_database(config, "app");
    static const struct {
        const char *to;
        const char *names; /* NULL: allowed */
    } cases[] = {
        {"@/w/app.db", NULL}, /* its own live path: restore's --force decides */
        {"@/w/restored.db", NULL},
        {"@/w/other.db", "databases.other.path (line 5)"},
        {"@/w/hard.db", NULL}, /* a second name of app's own file: restore's rules */
        {"@/w/app.db-wal", "the -wal file of databases.app.path (line 4)"},
        {"@/w/other.db-shm", "the -shm file of databases.other.path (line 5)"},
        {"@/backups/app/restored.db", "databases.app.backup.dir (line 4)"},
        {"@/backups/other", "databases.other.backup.dir (line 5)"},
        {"@/nas/restored.db", "targets.nas.path (line 2)"},
        {"@/state/state.db", "state_dir"},
        {"@/metrics/sqlprodd.prom", "metrics.textfile (line 7)"},
        {"@/w/other.db.sqlprodd-tmp/../other.db", "databases.other.path (line 5)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char to[PATH_MAX];
        expand(tree, cases[i].to, to, sizeof to);
        struct error err = {0};
        int rc = config_paths_check_restore_target(config, app, to, &err);
        if (!cases[i].names) {
            if (rc != 0)
                print_error("%s: unexpected: %s\n", to, err.message);
            assert_int_equal(rc, 0);
        } else {
            if (rc == 0 || !strstr(err.message, cases[i].names))
                print_error("%s: rc %d, \"%s\"; wanted it to name %s\n", to, rc, err.message,
                            cases[i].names);
            assert_int_equal(rc, -EPERM);
            assert_non_null(strstr(err.message, cases[i].names));
        }
    }
    /* The same destination is another database when restoring `other`. */
    char to[PATH_MAX];
    expand(tree, "@/w/link.db", to, sizeof to);
    struct error err = {0};
    assert_int_equal(
        config_paths_check_restore_target(config, config_find_database(config, "other"), to, &err),
        -EPERM);
    assert_non_null(strstr(err.message, "databases.app.path (line 4)"));
    config_free(config);
}

/* The second guard: a path that became a database after the config was
 * checked is still not replaced. */
static void atomic_write_never_replaces_a_database(void **state)
{
    const struct tree *tree = *state;
    char path[PATH_MAX], temp[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics/became.db", tree->root);
    make_file(tree->root, "metrics/became.db", true);
    struct error err = {0};
    assert_int_equal(fs_write_file_atomically(path, "metrics\n", 8, 0644, &err), -EEXIST);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "SQLite database"));
    int fd = open(path, O_RDONLY);
    char header[16];
    assert_int_equal(read(fd, header, sizeof header), 16);
    close(fd);
    assert_memory_equal(header, sqlite_header, 16);
    snprintf(temp, sizeof temp, "%s%s", path, FS_TEMP_SUFFIX);
    assert_int_equal(access(temp, F_OK), -1); /* nothing left behind */

    /* A stale "temp file" that is a database is not removed either. */
    make_file(tree->root, "metrics/x.prom.sqlprodd-tmp", true);
    snprintf(path, sizeof path, "%s/metrics/x.prom", tree->root);
    snprintf(temp, sizeof temp, "%s%s", path, FS_TEMP_SUFFIX);
    assert_int_equal(fs_write_file_atomically(path, "m\n", 2, 0644, &err), -EEXIST);
    assert_int_equal(access(temp, F_OK), 0);
    assert_int_equal(access(path, F_OK), -1);
}

static void atomic_write_replaces_its_own_text_files_and_nothing_else(void **state)
{
    const struct tree *tree = *state;
    char path[PATH_MAX];
    struct error err = {0};
    make_file(tree->root, "metrics/plain.prom", false);
    snprintf(path, sizeof path, "%s/metrics/plain.prom", tree->root);
    assert_int_equal(fs_write_file_atomically(path, "new\n", 4, 0644, &err), 0);
    char text[8] = {0};
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, text, sizeof text - 1), 4);
    close(fd);
    assert_string_equal(text, "new\n");
    /* A FIFO, a device or a directory where the textfile goes was put there
     * for another purpose: looking never blocks, and it is left as it is. */
    struct stat st;
    snprintf(path, sizeof path, "%s/metrics/fifo.prom", tree->root);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(fs_refuse_to_replace(path, &err), -EEXIST);
    assert_non_null(strstr(err.message, "a FIFO"));
    assert_int_equal(fs_write_file_atomically(path, "m\n", 2, 0644, &err), -EEXIST);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    snprintf(path, sizeof path, "%s/metrics/directory.prom", tree->root);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(fs_write_file_atomically(path, "m\n", 2, 0644, &err), -EEXIST);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* As root (CI), a copy of /dev/null's device node: replacing it is what
     * textfile = "/dev/null" would have done to the real one. */
    snprintf(path, sizeof path, "%s/metrics/null.prom", tree->root);
    if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        assert_int_equal(fs_write_file_atomically(path, "m\n", 2, 0644, &err), -EEXIST);
        assert_non_null(strstr(err.message, "a character device"));
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
    }
    /* A symlink is replaced as a link: what it points to is untouched. */
    snprintf(path, sizeof path, "%s/metrics/link.prom", tree->root);
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%s/metrics/plain.prom", tree->root);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(fs_write_file_atomically(path, "l\n", 2, 0644, &err), 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

static void file_starts_with_sqlite_header(const char *path)
{
    char header[16];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, header, sizeof header), 16);
    close(fd);
    assert_memory_equal(header, sqlite_header, 16);
}

/* The holder line truncates the lock file: a database there stays whole. */
static void lock_file_that_is_a_database_is_not_truncated(void **state)
{
    const struct tree *tree = *state;
    make_directory(tree->root, "state/locks");
    make_file(tree->root, "state/locks/app.lock", true);
    char state_dir[PATH_MAX], path[PATH_MAX];
    snprintf(state_dir, sizeof state_dir, "%s/state", tree->root);
    snprintf(path, sizeof path, "%s/locks/app.lock", state_dir);
    struct database_lock lock;
    struct error err = {0};
    assert_int_equal(lock_acquire(&lock, state_dir, "app", "test", false, NULL, NULL, 0, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4096);
    file_starts_with_sqlite_header(path);
    /* An ordinary lock file is taken as before. */
    assert_int_equal(lock_acquire(&lock, state_dir, "other", "test", false, NULL, NULL, 0, &err),
                     0);
    lock_release(&lock);
}

/* A dir target replaces an object on re-upload, but never a database that
 * sits under the object's name. */
static void dir_target_never_replaces_a_database(void **state)
{
    const struct tree *tree = *state;
    make_directory(tree->root, "nas/app");
    make_file(tree->root, "nas/app/app-20261202T000000Z.db.gz", true);
    make_file(tree->root, "metrics/upload.db.gz", false);
    char root[PATH_MAX], source[PATH_MAX], destination[PATH_MAX];
    snprintf(root, sizeof root, "%s/nas", tree->root);
    snprintf(source, sizeof source, "%s/metrics/upload.db.gz", tree->root);
    snprintf(destination, sizeof destination, "%s/app/app-20261202T000000Z.db.gz", root);
    struct target_config config = {.name = "nas", .type = TARGET_DIR, .path = root};
    struct target *target = NULL;
    struct error err = {0};
    assert_int_equal(target_open(&config, &target, &err), 0);
    int rc = target_put_file(target, "app/app-20261202T000000Z.db.gz", source, NULL, NULL, &err);
    assert_int_equal(rc, -EEXIST);
    assert_non_null(strstr(err.message, destination));
    file_starts_with_sqlite_header(destination);
    /* An archive that is not a database is replaced as before. */
    assert_int_equal(
        target_put_file(target, "app/app-20261202T010000Z.db.gz", source, NULL, NULL, &err), 0);
    assert_int_equal(
        target_put_file(target, "app/app-20261202T010000Z.db.gz", source, NULL, NULL, &err), 0);
    target_close(target);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_configs_are_refused_naming_both_keys),
        cmocka_unit_test(sound_layouts_load),
        cmocka_unit_test(inherited_backup_dir_is_named_where_it_is_written),
        cmocka_unit_test(overlap_across_an_included_file_names_that_file),
        cmocka_unit_test(paths_normalise_like_the_kernel_and_sqlite),
        cmocka_unit_test(restore_destination_may_not_land_on_what_the_config_owns),
        cmocka_unit_test(atomic_write_never_replaces_a_database),
        cmocka_unit_test(atomic_write_replaces_its_own_text_files_and_nothing_else),
        cmocka_unit_test(lock_file_that_is_a_database_is_not_truncated),
        cmocka_unit_test(dir_target_never_replaces_a_database),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
