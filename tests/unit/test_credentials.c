/*
 * test_credentials.c: reading S3 credentials from a shared-credentials file
 * (real files in a temp directory, real permission checks) and from the
 * environment, and keeping secrets out of every message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "offsite/credentials.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY="

static const char sample[] = "# written by hand\n"
                             "[default]\n"
                             "aws_access_key_id = AKIADEFAULT\n"
                             "aws_secret_access_key = " SECRET "\n"
                             "\n"
                             "[profile backup]\r\n"
                             "  ; an indented comment\r\n"
                             "AWS_ACCESS_KEY_ID=AKIABACKUP\r\n"
                             "aws_secret_access_key=second/secret+=\r\n"
                             "aws_session_token = token/with+chars==\r\n"
                             "s3 =\r\n"
                             "    max_concurrent_requests = 4\r\n"
                             "[other]\n"
                             "aws_access_key_id = AKIAOTHER\n";

struct directory {
    char path[64];
    char file[128];
};

static int make_directory(void **state)
{
    struct directory *directory = calloc(1, sizeof *directory);
    strcpy(directory->path, "/tmp/test_credentials.XXXXXX");
    assert_non_null(mkdtemp(directory->path));
    snprintf(directory->file, sizeof directory->file, "%s/credentials", directory->path);
    *state = directory;
    return 0;
}

static int remove_directory(void **state)
{
    struct directory *directory = *state;
    unlink(directory->file);
    rmdir(directory->path);
    free(directory);
    return 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
    assert_int_equal(chmod(path, mode), 0);
}

static void default_profile_is_read(void **state)
{
    (void)state;
    struct credentials credentials = {0};
    struct error err = {0};
    assert_int_equal(credentials_parse(sample, "test", NULL, &credentials, &err), 0);
    assert_string_equal(credentials.access_key_id, "AKIADEFAULT");
    assert_string_equal(credentials.secret_access_key, SECRET);
    assert_null(credentials.session_token);
    credentials_clear(&credentials);
    assert_null(credentials.access_key_id);
    assert_null(credentials.secret_access_key);
}

static void named_profile_with_token_and_crlf_is_read(void **state)
{
    (void)state;
    struct credentials credentials = {0};
    struct error err = {0};
    assert_int_equal(credentials_parse(sample, "test", "backup", &credentials, &err), 0);
    assert_string_equal(credentials.access_key_id, "AKIABACKUP");
    assert_string_equal(credentials.secret_access_key, "second/secret+=");
    assert_string_equal(credentials.session_token, "token/with+chars==");
    credentials_clear(&credentials);
}

static void missing_profile_and_missing_secret_are_named(void **state)
{
    (void)state;
    struct credentials credentials = {0};
    struct error err = {0};
    assert_int_equal(credentials_parse(sample, "test", "nope", &credentials, &err), -ENOENT);
    assert_string_equal(err.message, "test: no profile [nope]");
    assert_int_equal(credentials_parse(sample, "test", "other", &credentials, &err), -EINVAL);
    assert_string_equal(err.message, "test: profile [other] has no aws_secret_access_key");
    assert_null(credentials.access_key_id);
}

static void a_malformed_line_is_reported_without_its_content(void **state)
{
    (void)state;
    struct credentials credentials = {0};
    struct error err = {0};
    const char text[] =
        "[default]\naws_access_key_id = AKIA\nwJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n";
    assert_int_equal(credentials_parse(text, "creds", NULL, &credentials, &err), -EINVAL);
    assert_string_equal(err.message, "creds:3: expected 'name = value'");
    assert_null(strstr(err.message, "EXAMPLEKEY"));
}

static void private_file_is_read(void **state)
{
    struct directory *directory = *state;
    struct credentials credentials = {0};
    struct error err = {0};
    write_file(directory->file, sample, 0600);
    assert_int_equal(credentials_load(directory->file, "backup", &credentials, &err), 0);
    assert_string_equal(credentials.access_key_id, "AKIABACKUP");
    credentials_clear(&credentials);
    write_file(directory->file, sample, 0400);
    assert_int_equal(credentials_load_file(directory->file, NULL, &credentials, &err), 0);
    assert_string_equal(credentials.secret_access_key, SECRET);
    credentials_clear(&credentials);
}

static void file_readable_by_others_is_refused(void **state)
{
    struct directory *directory = *state;
    struct credentials credentials = {0};
    struct error err = {0};
    const mode_t refused[] = {0644, 0604, 0602, 0601, 0620, 0660, 0610, 0670, 0777};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        write_file(directory->file, sample, refused[i]);
        assert_int_equal(credentials_load_file(directory->file, NULL, &credentials, &err), -EPERM);
        assert_null(credentials.access_key_id);
        assert_null(strstr(err.message, "EXAMPLEKEY"));
        char mode[32];
        snprintf(mode, sizeof mode, "(mode %04o, owner ", (unsigned)refused[i]);
        assert_non_null(strstr(err.message, mode));
        assert_non_null(strstr(err.message, directory->file));
        assert_non_null(strstr(err.message, "chmod 640 "));
    }
    write_file(directory->file, sample, 0604);
    credentials_load_file(directory->file, NULL, &credentials, &err);
    assert_non_null(strstr(err.message, "is accessible by others"));
    write_file(directory->file, sample, 0660);
    credentials_load_file(directory->file, NULL, &credentials, &err);
    assert_non_null(strstr(err.message, "is writable or executable by its group"));
}

static void group_name_of(gid_t gid, char *out, size_t size)
{
    struct group *entry = getgrgid(gid);
    if (entry)
        snprintf(out, size, "%s", entry->gr_name);
    else
        snprintf(out, size, "%u", (unsigned)gid);
}

/* A gid that is not ours, for a file root chowns to it. */
static gid_t foreign_group(void)
{
    struct group *nogroup = getgrnam("nogroup");
    gid_t gid = nogroup ? nogroup->gr_gid : 65534;
    assert_int_not_equal(gid, getegid());
    return gid;
}

/* The Debian convention (root:ssl-cert 0640 for /etc/ssl/private), with
 * the group we run as: the table of owners, groups and modes. Changing the
 * owner needs root, as the tests run in CI. */
static void file_shared_only_with_our_group_is_accepted(void **state)
{
    struct directory *directory = *state;
    if (geteuid() != 0)
        skip();
    const uid_t nobody = 65534;
    const gid_t ours = getegid(), foreign = foreign_group();
    const struct {
        uid_t owner;
        gid_t group;
        mode_t mode;
        int expected;
        const char *problem;
    } table[] = {
        {0, ours, 0640, 0, NULL},
        {0, ours, 0440, 0, NULL},
        {0, ours, 0600, 0, NULL},
        {0, foreign, 0600, 0, NULL}, /* the group cannot read it: its name does not matter */
        {0, foreign, 0640, -EPERM, "is readable by the group "},
        {0, foreign, 0440, -EPERM, "is readable by the group "},
        {0, ours, 0660, -EPERM, "is writable or executable by its group "},
        {0, ours, 0644, -EPERM, "is accessible by others"},
        {nobody, ours, 0600, -EPERM, "is owned by "},
        {nobody, ours, 0640, -EPERM, "is owned by "},
    };
    char our_name[64], foreign_name[64], fix[512];
    group_name_of(ours, our_name, sizeof our_name);
    group_name_of(foreign, foreign_name, sizeof foreign_name);
    snprintf(fix, sizeof fix, "run `chown root:%s %s && chmod 640 %s`", our_name, directory->file,
             directory->file);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        struct credentials credentials = {0};
        struct error err = {0};
        write_file(directory->file, sample, table[i].mode);
        assert_int_equal(chown(directory->file, table[i].owner, table[i].group), 0);
        assert_int_equal(chmod(directory->file, table[i].mode), 0); /* chown cleared nothing */
        int rc = credentials_load_file(directory->file, NULL, &credentials, &err);
        if (rc != table[i].expected)
            fail_msg("owner %u group %u mode %04o: %d (%s)", (unsigned)table[i].owner,
                     (unsigned)table[i].group, (unsigned)table[i].mode, rc, err.message);
        if (rc == 0) {
            assert_string_equal(credentials.secret_access_key, SECRET);
            credentials_clear(&credentials);
            continue;
        }
        assert_non_null(strstr(err.message, table[i].problem));
        assert_non_null(strstr(err.message, fix));
        if (table[i].group == foreign) {
            char owner[160];
            snprintf(owner, sizeof owner, "owner root:%s)", foreign_name);
            assert_non_null(strstr(err.message, owner));
        }
    }
}

static void missing_file_and_directory_are_refused(void **state)
{
    struct directory *directory = *state;
    struct credentials credentials = {0};
    struct error err = {0};
    unlink(directory->file);
    assert_int_equal(credentials_load_file(directory->file, NULL, &credentials, &err), -ENOENT);
    assert_non_null(strstr(err.message, directory->file));
    assert_int_equal(chmod(directory->path, 0700), 0);
    assert_int_equal(credentials_load_file(directory->path, NULL, &credentials, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not a regular file"));
}

/* LoadCredential=offsite.credentials:PATH: systemd copies the file into the
 * service's private $CREDENTIALS_DIRECTORY, root-owned and readable through
 * an ACL, a mode the credentials_file check would refuse (its group bits
 * show the ACL mask). The file is read by name, whatever that mode. */
static void systemd_credential_is_read_from_the_credentials_directory(void **state)
{
    struct directory *directory = *state;
    struct credentials credentials = {0};
    struct error err = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/offsite.credentials", directory->path);
    write_file(path, sample, 0444);
    assert_int_equal(credentials_load_file(path, NULL, &credentials, &err), -EPERM);
    setenv("CREDENTIALS_DIRECTORY", directory->path, 1);
    assert_int_equal(credentials_load_credential("offsite.credentials", "backup", &credentials,
                                                 &err),
                     0);
    assert_string_equal(credentials.access_key_id, "AKIABACKUP");
    credentials_clear(&credentials);
    assert_int_equal(credentials_load_credential("other", NULL, &credentials, &err), -ENOENT);
    assert_non_null(strstr(err.message, "/other"));
    /* Outside a unit with credentials: what to do, not just "not found". */
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(credentials_load_credential("offsite.credentials", NULL, &credentials, &err),
                     -ENOENT);
    assert_non_null(strstr(err.message, "LoadCredential=offsite.credentials:PATH"));
    assert_null(credentials.access_key_id);
    unlink(path);
}

static void environment_is_the_fallback(void **state)
{
    (void)state;
    struct credentials credentials = {0};
    struct error err = {0};
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    assert_int_equal(credentials_load(NULL, NULL, &credentials, &err), -ENOENT);
    assert_non_null(strstr(err.message, "AWS_ACCESS_KEY_ID"));

    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    assert_int_equal(credentials_load(NULL, NULL, &credentials, &err), -EINVAL);
    assert_string_equal(
        err.message, "no credentials: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");

    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    setenv("AWS_SESSION_TOKEN", "", 1);
    assert_int_equal(credentials_load(NULL, NULL, &credentials, &err), 0);
    assert_string_equal(credentials.access_key_id, "AKIAENV");
    assert_string_equal(credentials.secret_access_key, SECRET);
    assert_null(credentials.session_token);
    credentials_clear(&credentials);

    setenv("AWS_SESSION_TOKEN", "session", 1);
    assert_int_equal(credentials_load(NULL, NULL, &credentials, &err), 0);
    assert_string_equal(credentials.session_token, "session");
    credentials_clear(&credentials);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_profile_is_read),
        cmocka_unit_test(named_profile_with_token_and_crlf_is_read),
        cmocka_unit_test(missing_profile_and_missing_secret_are_named),
        cmocka_unit_test(a_malformed_line_is_reported_without_its_content),
        cmocka_unit_test_setup_teardown(private_file_is_read, make_directory, remove_directory),
        cmocka_unit_test_setup_teardown(file_readable_by_others_is_refused, make_directory,
                                        remove_directory),
        cmocka_unit_test_setup_teardown(file_shared_only_with_our_group_is_accepted, make_directory,
                                        remove_directory),
        cmocka_unit_test_setup_teardown(missing_file_and_directory_are_refused, make_directory,
                                        remove_directory),
        cmocka_unit_test(environment_is_the_fallback),
        cmocka_unit_test_setup_teardown(systemd_credential_is_read_from_the_credentials_directory,
                                        make_directory, remove_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
