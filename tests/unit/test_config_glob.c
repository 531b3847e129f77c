/*
 * test_config_glob.c: database entries by pattern (config/config_glob.c)
 * on a real directory: which files become databases, with which names and
 * settings, which are passed over and why, and the mistakes reported at
 * their line.
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
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char directory[64];

static void make_file(const char *name, const char *content, size_t size)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fwrite(content, 1, size, file), size);
    assert_int_equal(fclose(file), 0);
}

/* The first bytes of an SQLite database: enough for the header check. */
static void make_database(const char *name)
{
    static const char header[100] = "SQLite format 3";
    make_file(name, header, sizeof header);
}

static int set_up(void **state)
{
    (void)state;
    snprintf(directory, sizeof directory, "/tmp/sqlprodd-test-glob-XXXXXX");
    assert_non_null(mkdtemp(directory));
    return 0;
}

static int tear_down(void **state)
{
    (void)state;
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", directory);
    assert_int_equal(system(command), 0);
    return 0;
}

/* Loads `text` (with DIR replaced by the test directory). */
static int load(const char *text, struct config **config, struct config_diagnostics *diag)
{
    char path[256], body[4096];
    const char *at = strstr(text, "DIR");
    size_t used = 0;
    while (at) {
        used += (size_t)snprintf(body + used, sizeof body - used, "%.*s%s", (int)(at - text), text,
                                 directory);
        text = at + 3;
        at = strstr(text, "DIR");
    }
    snprintf(body + used, sizeof body - used, "%s", text);
    snprintf(path, sizeof path, "%s/sqlprodd.conf", directory);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(body, file);
    fclose(file);
    *config = NULL;
    memset(diag, 0, sizeof *diag);
    return config_load(path, config, diag);
}

static struct config *load_good(const char *text)
{
    struct config *config;
    struct config_diagnostics diag;
    int rc = load(text, &config, &diag);
    for (size_t i = 0; i < diag.count; i++)
        print_error("unexpected: %s\n", diag.lines[i]);
    assert_int_equal(rc, 0);
    config_diagnostics_free(&diag);
    return config;
}

/* The one diagnostic of a bad text ends with `expected` (after FILE:). */
static void assert_refused(const char *text, const char *expected)
{
    struct config *config;
    struct config_diagnostics diag;
    int rc = load(text, &config, &diag);
    assert_int_equal(rc, -EINVAL);
    assert_null(config);
    if (diag.count != 1 || !strstr(diag.lines[0], expected)) {
        print_error("want: ...%s\n", expected);
        for (size_t i = 0; i < diag.count; i++)
            print_error("got:  %s\n", diag.lines[i]);
        fail();
    }
    config_diagnostics_free(&diag);
}

static const char *skipped_reason(const struct config_glob *glob, const char *file)
{
    for (size_t i = 0; i < glob->skipped_count; i++)
        if (strstr(glob->skipped[i], file))
            return glob->skipped[i];
    return NULL;
}

static void each_database_file_becomes_a_database_with_the_entry_settings(void **state)
{
    (void)state;
    make_database("beta.db");
    make_database("alpha.db");
    make_file("gamma.db", "", 0); /* created, not written yet: a database too */
    make_database("alpha.db-wal");
    make_database("alpha.db-journal");
    make_database("other.sqlite");
    struct config *config = load_good(
        "databases = ( { glob = \"DIR/*.db\"; backup = { every = \"2h\"; dir = \"/srv/b\"; }; } "
        ");\n");
    assert_int_equal(config->database_count, 3);
    const char *names[] = {"alpha", "beta", "gamma"};
    for (size_t i = 0; i < 3; i++) {
        const struct database_config *db = &config->databases[i];
        char path[256];
        snprintf(path, sizeof path, "%s/%s.db", directory, names[i]);
        assert_string_equal(db->name, names[i]);
        assert_string_equal(db->path, path);
        assert_int_equal(db->backup.schedule.every_seconds, 7200);
        assert_string_equal(db->backup.dir, "/srv/b");
        assert_int_equal(db->glob, 0);
        assert_int_equal(db->line, 1);
        assert_ptr_equal(config_find_database(config, names[i]), db);
    }
    assert_int_equal(config->glob_count, 1);
    assert_int_equal(config->globs[0].databases, 3);
    assert_int_equal(config->globs[0].skipped_count, 0); /* -wal, -journal: silently */
    assert_string_equal(config->globs[0].directory, directory);
    assert_string_equal(config->globs[0].file_pattern, "*.db");
    config_free(config);
}

static void a_name_template_and_a_written_entry_that_wins(void **state)
{
    (void)state;
    make_database("acme.db");
    make_database("globex.db");
    make_database("initech.db");
    struct config *config = load_good(
        "databases = (\n"
        "  { glob = \"DIR/*.db\"; name = \"t-%stem\"; },\n"
        "  { name = \"t-globex\"; path = \"/srv/elsewhere.db\"; },\n"
        "  { name = \"acme\"; path = \"DIR/acme.db\"; }\n"
        ");\n");
    /* acme.db is an entry's file, t-globex an entry's name: both go to the
     * entries, wherever they are written. */
    assert_int_equal(config->database_count, 3);
    assert_string_equal(config->databases[0].name, "t-initech");
    assert_string_equal(config->databases[1].name, "t-globex");
    assert_string_equal(config->databases[1].path, "/srv/elsewhere.db");
    assert_int_equal(config->databases[1].glob, -1);
    assert_string_equal(config->databases[2].name, "acme");
    const struct config_glob *glob = &config->globs[0];
    assert_int_equal(glob->databases, 1);
    assert_int_equal(glob->skipped_count, 2);
    assert_non_null(
        strstr(skipped_reason(glob, "/acme.db"), "another entry or pattern has this file"));
    assert_non_null(strstr(skipped_reason(glob, "/globex.db"),
                           "its name \"t-globex\" is another database's"));
    config_free(config);
}

static void files_that_are_no_database_are_passed_over_with_the_reason(void **state)
{
    (void)state;
    char path[256];
    make_database("good.db");
    make_file("text.db", "hello, this is not a database\n", 30);
    make_database("two words.db");
    snprintf(path, sizeof path, "%s/pipe.db", directory);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(path, sizeof path, "%s/dir.db", directory);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/dangling.db", directory);
    assert_int_equal(symlink("/nonexistent/x.db", path), 0);
    snprintf(path, sizeof path, "%s/link.db", directory);
    assert_int_equal(symlink("good.db", path), 0);
    struct config *config = load_good("databases = ( { glob = \"DIR/*.db\"; } );\n");
    /* A symbolic link to a database is the same file: only its first name
     * (in sorted order) is a database. */
    assert_int_equal(config->database_count, 1);
    assert_string_equal(config->databases[0].name, "good");
    const struct config_glob *glob = &config->globs[0];
    assert_non_null(strstr(skipped_reason(glob, "/link.db"), "has this file (under this name or"));
    assert_non_null(strstr(skipped_reason(glob, "/text.db"), "not an SQLite database"));
    assert_non_null(strstr(skipped_reason(glob, "/pipe.db"), "not a regular file"));
    assert_non_null(strstr(skipped_reason(glob, "/dir.db"), "not a regular file"));
    assert_non_null(strstr(skipped_reason(glob, "/dangling.db"), "dangling"));
    assert_non_null(strstr(skipped_reason(glob, "/two words.db"), "\"two words\" is not usable"));
    assert_int_equal(glob->skipped_count, 6);
    config_free(config);
}

static void an_empty_or_missing_directory_gives_no_database(void **state)
{
    (void)state;
    struct config *config = load_good("databases = ( { glob = \"DIR/*.db\"; } );\n");
    assert_int_equal(config->database_count, 0);
    assert_int_equal(config->globs[0].databases, 0);
    config_free(config);
    config = load_good("databases = ( { glob = \"DIR/later/*.db\"; } );\n");
    assert_int_equal(config->database_count, 0);
    config_free(config);
}

static void mistakes_are_reported_at_their_line_and_key(void **state)
{
    (void)state;
    make_database("a.db");
    assert_refused("databases = (\n { glob = \"DIR/*/x.db\"; } );\n",
                   ":2: databases[0].glob: \"");
    assert_refused("databases = (\n { glob = \"DIR/*/x.db\"; } );\n",
                   "wildcards may only be in the file name, not in the directory (one directory "
                   "is watched for new databases)");
    assert_refused("databases = ( { glob = \"tenants/*.db\"; } );\n",
                   ":1: databases[0].glob: must be an absolute path (starting with /), got "
                   "\"tenants/*.db\"");
    assert_refused("databases = (\n\n { glob = \"DIR/*.db\"; name = \"same\"; } );\n",
                   ":3: databases[0].name: \"same\" gives every file the same name: put %stem or "
                   "%file in it");
    assert_refused("databases = ( { glob = \"DIR/*.db\"; name = \"%host-%stem\"; } );\n",
                   "databases[0].name: \"%host-%stem\": a pattern's name may hold %stem (the file "
                   "name without its extension), %file (the whole file name) and %% only");
    assert_refused("databases = ( { glob = \"DIR/*.db\"; path = \"DIR/a.db\"; } );\n",
                   "databases[0]: give 'path' (one database) or 'glob' (one per matching file), "
                   "not both");
    assert_refused("databases = ( { glob = \"DIR/*.db\"; backup = { every = \"soon\"; }; } );\n",
                   "databases[0].backup.every");
    assert_refused("databases = ( { glob = \"DIR/\"; } );\n", "names a directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            each_database_file_becomes_a_database_with_the_entry_settings, set_up, tear_down),
        cmocka_unit_test_setup_teardown(a_name_template_and_a_written_entry_that_wins, set_up,
                                        tear_down),
        cmocka_unit_test_setup_teardown(
            files_that_are_no_database_are_passed_over_with_the_reason, set_up, tear_down),
        cmocka_unit_test_setup_teardown(an_empty_or_missing_directory_gives_no_database, set_up,
                                        tear_down),
        cmocka_unit_test_setup_teardown(mistakes_are_reported_at_their_line_and_key, set_up,
                                        tear_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
