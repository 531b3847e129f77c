/*
 * test_advice.c: the commands printed for an operator survive sh(1). Each
 * hostile word is quoted by advice_command and read back by a real sh
 * (`printf '%s' WORD`): what sh hands the program must be the word itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/advice.h"
#include "config/config.h"

/* What sh passes to printf for `command`, in `out`. */
static size_t run_in_sh(const char *command, char *out, size_t size)
{
    FILE *shell = popen(command, "r");
    assert_non_null(shell);
    size_t length = fread(out, 1, size - 1, shell);
    out[length] = '\0';
    assert_int_equal(pclose(shell), 0);
    return length;
}

static void hostile_words_reach_the_program_unchanged(void **state)
{
    (void)state;
    static const char *const words[] = {
        "/var/lib/app/app.db", /* plain: printed as it is */
        "",
        "/srv/my app/app.db",
        "/srv/it's/app.db",
        "'''",
        "/srv/$HOME/app.db",
        "/srv/`id`/app.db",
        "/srv/$(id)/app.db",
        "/srv/a\\b/app.db",
        "/srv/x;rm -rf y/app.db",
        "/srv/*/app.db",
        "~root",
        "-n",
        "/srv/\"double\"/app.db",
        "/srv/!bang/app.db",
        "/srv/{a,b}/app.db",
        "#not a comment",
        "/srv/100%/app.db",
        "/srv/a\nb/app.db",
        "/srv/tab\there/app.db",
        "/srv/del\x7f/app.db",
        "/srv/\x01\x1b[31m/app.db",
        "/srv/'\n'%\\/app.db",
        "/srv/caf\xc3\xa9/app.db",
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char command[ADVICE_MAX], got[ADVICE_MAX];
        advice_command(command, sizeof command, "printf", "%s", words[i], NULL);
        assert_true(command[0] != '\0');
        assert_null(strchr(command, '\n')); /* one line, wherever it is shown */
        size_t length = run_in_sh(command, got, sizeof got);
        if (length != strlen(words[i]) || memcmp(got, words[i], length) != 0)
            fail_msg("word %zu: sh read `%s` as \"%s\"", i, command, got);
    }
}

static void plain_words_are_printed_as_they_are(void **state)
{
    (void)state;
    char command[ADVICE_MAX];
    advice_command(command, sizeof command, "sqlite3", "/var/lib/app/app.db",
                   "PRAGMA journal_mode=WAL", NULL);
    assert_string_equal(command, "sqlite3 /var/lib/app/app.db 'PRAGMA journal_mode=WAL'");
}

static void a_word_ending_in_a_newline_prints_no_command(void **state)
{
    (void)state;
    char command[ADVICE_MAX];
    /* "$(...)" would drop the newline: better no command than another file. */
    advice_command(command, sizeof command, "sqlite3", "/srv/app.db\n", "VACUUM", NULL);
    assert_string_equal(command, "");
}

static void a_command_that_does_not_fit_is_empty_not_cut(void **state)
{
    (void)state;
    char command[32];
    advice_command(command, sizeof command, "sqlite3", "/a/rather/long/path/to/app.db",
                   "PRAGMA integrity_check", NULL);
    assert_string_equal(command, "");
}

static void sqlprodd_carries_the_configuration_unless_it_is_the_default(void **state)
{
    (void)state;
    char command[ADVICE_MAX], directory[PATH_MAX], expected[PATH_MAX + 128];
    struct config config = {0};

    config.file = CONFIG_DEFAULT_PATH;
    advice_sqlprodd(command, sizeof command, &config, "checkpoint", "app", NULL);
    assert_string_equal(command, "sqlprodd checkpoint app");

    config.file = "/etc/sqlprodd/it's.conf";
    advice_sqlprodd(command, sizeof command, &config, "restore", "app", "--to", "/w/a b.db",
                    "--force", NULL);
    assert_string_equal(command, "sqlprodd -c '/etc/sqlprodd/it'\\''s.conf' restore app --to "
                                 "'/w/a b.db' --force");

    /* Relative to where the agent started, not to the operator's shell. */
    char template[] = "/tmp/sqlprodd-advice-XXXXXX";
    assert_non_null(mkdtemp(template));
    snprintf(directory, sizeof directory, "%s/sqlprodd.conf", template);
    FILE *file = fopen(directory, "w");
    assert_non_null(file);
    fclose(file);
    char previous[PATH_MAX];
    assert_non_null(getcwd(previous, sizeof previous));
    assert_int_equal(chdir(template), 0);
    config.file = "sqlprodd.conf";
    advice_sqlprodd(command, sizeof command, &config, "vacuum", "app", NULL);
    assert_int_equal(chdir(previous), 0);
    snprintf(expected, sizeof expected, "sqlprodd -c %s vacuum app", directory);
    assert_string_equal(command, expected);
    unlink(directory);
    rmdir(template);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_words_reach_the_program_unchanged),
        cmocka_unit_test(plain_words_are_printed_as_they_are),
        cmocka_unit_test(a_word_ending_in_a_newline_prints_no_command),
        cmocka_unit_test(a_command_that_does_not_fit_is_empty_not_cut),
        cmocka_unit_test(sqlprodd_carries_the_configuration_unless_it_is_the_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
