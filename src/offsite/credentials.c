/*
 * credentials.c: reading an S3 target's access key (see credentials.h). Not
 * for signing (sigv4.c) and never for logging: no message here quotes a line
 * of the file, since any line may hold a secret.
 */
#include "offsite/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/advice.h"
#include "core/io.h"

/* Far larger than any real credentials file; a bigger one is a mistake. */
#define CREDENTIALS_MAX_FILE_SIZE (256 * 1024)

void credentials_clear(struct credentials *credentials)
{
    char **fields[] = {&credentials->access_key_id, &credentials->secret_access_key,
                       &credentials->session_token};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (*fields[i]) {
            explicit_bzero(*fields[i], strlen(*fields[i]));
            free(*fields[i]);
            *fields[i] = NULL;
        }
    }
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trims [start, end) in place; returns the new start and writes a NUL at the end. */
static char *trim(char *start, char *end)
{
    while (start < end && is_blank(*start))
        start++;
    while (end > start && is_blank(end[-1]))
        end--;
    *end = '\0';
    return start;
}

static int replace_field(char **field, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -ENOMEM;
    if (*field) {
        explicit_bzero(*field, strlen(*field));
        free(*field);
    }
    *field = copy;
    return 0;
}

/* "[default]" and "[profile prod]" both name a profile, as in ~/.aws/config. */
static bool section_is(const char *section, const char *profile)
{
    if (strncmp(section, "profile", 7) == 0 && is_blank(section[7])) {
        section += 8;
        while (is_blank(*section))
            section++;
    }
    return strcmp(section, profile) == 0;
}

/* Where a key of the file goes; NULL for keys we do not use. */
static char **credentials_field(struct credentials *found, const char *name)
{
    if (strcasecmp(name, "aws_access_key_id") == 0)
        return &found->access_key_id;
    if (strcasecmp(name, "aws_secret_access_key") == 0)
        return &found->secret_access_key;
    if (strcasecmp(name, "aws_session_token") == 0 || strcasecmp(name, "aws_security_token") == 0)
        return &found->session_token;
    return NULL;
}

/* "name = value" (`equals` points at its '=') in the profile we read:
 * keeps the value of a key we use. */
static int credentials_take_value(struct credentials *found, char *content, char *equals,
                                  const char *source, struct error *err)
{
    char *value_end = content + strlen(content);
    char *name = trim(content, equals);
    char *value = trim(equals + 1, value_end);
    char **field = credentials_field(found, name);
    int rc = field ? replace_field(field, value) : 0;
    return rc == 0 ? 0 : error_set(err, rc, "%s: out of memory", source);
}

/* A profile needs both keys; an empty session token is none. */
static int credentials_check_found(struct credentials *found, const char *source,
                                   const char *profile, struct error *err)
{
    if (!found->access_key_id || !*found->access_key_id)
        return error_set(err, -EINVAL, "%s: profile [%s] has no aws_access_key_id", source,
                         profile);
    if (!found->secret_access_key || !*found->secret_access_key)
        return error_set(err, -EINVAL, "%s: profile [%s] has no aws_secret_access_key", source,
                         profile);
    if (found->session_token && !*found->session_token) {
        free(found->session_token);
        found->session_token = NULL;
    }
    return 0;
}

int credentials_parse(const char *text, const char *source, const char *profile,
                      struct credentials *out, struct error *err)
{
    struct credentials found = {0};
    char *copy = strdup(text);
    bool in_profile = false, profile_seen = false, after_value = false;
    int line_number = 0, rc = 0;
    if (!profile)
        profile = "default";
    if (!copy)
        return error_set(err, -ENOMEM, "%s: out of memory", source);

    for (char *line = copy, *next; line; line = next) {
        char *end = strchr(line, '\n');
        next = end ? end + 1 : NULL;
        if (!end)
            end = line + strlen(line);
        line_number++;
        bool indented = is_blank(*line) && *line != '\r';
        char *content = trim(line, end);
        if (!*content || *content == '#' || *content == ';')
            continue;
        if (indented && after_value)
            continue; /* continues the previous value (nested settings such as "s3 =") */
        if (*content == '[') {
            char *close = strchr(content, ']');
            if (!close) {
                rc = error_set(err, -EINVAL, "%s:%d: a section header must end with ']'", source,
                               line_number);
                goto out;
            }
            char *name = trim(content + 1, close);
            in_profile = section_is(name, profile);
            profile_seen = profile_seen || in_profile;
            after_value = false;
            continue;
        }
        char *equals = strchr(content, '=');
        if (!equals) {
            /* No quote of the line: it may be a secret pasted on its own. */
            rc = error_set(err, -EINVAL, "%s:%d: expected 'name = value'", source, line_number);
            goto out;
        }
        after_value = true;
        if (!in_profile)
            continue;
        if ((rc = credentials_take_value(&found, content, equals, source, err)) != 0)
            goto out;
    }

    if (!profile_seen) {
        rc = error_set(err, -ENOENT, "%s: no profile [%s]", source, profile);
        goto out;
    }
    if ((rc = credentials_check_found(&found, source, profile, err)) != 0)
        goto out;
    *out = found;
    found = (struct credentials){0};
out:
    credentials_clear(&found);
    explicit_bzero(copy, strlen(text));
    free(copy);
    return rc;
}

static void user_name(uid_t uid, char *out, size_t size)
{
    struct passwd entry, *found = NULL;
    char buffer[1024];
    if (getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found)
        snprintf(out, size, "%s", found->pw_name);
    else
        snprintf(out, size, "%u", (unsigned)uid);
}

static void group_name(gid_t gid, char *out, size_t size)
{
    struct group entry, *found = NULL;
    char buffer[1024];
    if (getgrgid_r(gid, &entry, buffer, sizeof buffer, &found) == 0 && found)
        snprintf(out, size, "%s", found->gr_name);
    else
        snprintf(out, size, "%u", (unsigned)gid);
}

/*
 * Whether a secret in this file is shared with nobody but the agent. The
 * Debian convention for keys (/etc/ssl/private: root:ssl-cert 0640) is
 * accepted in the form root:GROUP 0640, GROUP being the group this process
 * runs as: owned by root or by our user, readable by the group only when
 * the group is ours, writable by no group, no access at all for others.
 */
int credentials_check_access(const char *path, const struct stat *st, const char *what,
                             struct error *err)
{
    uid_t our_user = geteuid();
    gid_t our_group = getegid();
    mode_t mode = st->st_mode & 07777;
    char problem[256], owner[64], group[64], we[64], our[64];
    user_name(st->st_uid, owner, sizeof owner);
    group_name(st->st_gid, group, sizeof group);
    user_name(our_user, we, sizeof we);
    group_name(our_group, our, sizeof our);

    if (st->st_uid != 0 && st->st_uid != our_user)
        snprintf(problem, sizeof problem,
                 "is owned by %s, neither root nor %s (the user sqlprodd runs as)", owner, we);
    else if (mode & S_IRWXO)
        snprintf(problem, sizeof problem, "is accessible by others");
    else if (mode & (S_IWGRP | S_IXGRP))
        snprintf(problem, sizeof problem, "is writable or executable by its group %s", group);
    else if ((mode & S_IRGRP) && st->st_gid != our_group)
        snprintf(problem, sizeof problem,
                 "is readable by the group %s, which is not %s (the group sqlprodd runs as)", group,
                 our);
    else
        return 0;
    char owners[80], chown_command[ADVICE_MAX], chmod_command[ADVICE_MAX];
    snprintf(owners, sizeof owners, "root:%s", our);
    return error_set(
        err, -EPERM,
        "%s %s (mode %04o, owner %s:%s) %s: run `%s && %s` so that "
        "only root and the group %s can read it",
        what, path, (unsigned)mode, owner, group, problem,
        advice_command(chown_command, sizeof chown_command, "chown", owners, path, NULL),
        advice_command(chmod_command, sizeof chmod_command, "chmod", "640", path, NULL), our);
}

static int credentials_read(const char *path, const char *profile, bool check_access,
                            struct credentials *out, struct error *err);

int credentials_load_file(const char *path, const char *profile, struct credentials *out,
                          struct error *err)
{
    return credentials_read(path, profile, true, out, err);
}

int credentials_load_credential(const char *name, const char *profile, struct credentials *out,
                                struct error *err)
{
    const char *directory = getenv("CREDENTIALS_DIRECTORY");
    *out = (struct credentials){0};
    if (!directory || !*directory)
        return error_set(err, -ENOENT,
                         "credential %s: $CREDENTIALS_DIRECTORY is not set: only a unit with "
                         "LoadCredential=%s:PATH (sqlprodd.service's drop-in) receives it; from a "
                         "shell run `systemd-run --pipe --wait -p LoadCredential=%s:PATH sqlprodd "
                         "...` or use credentials_file",
                         name, name, name);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", directory, name) >= sizeof path)
        return error_set(err, -ENAMETOOLONG, "credential %s: path too long", name);
    return credentials_read(path, profile, false, out, err);
}

static int credentials_read(const char *path, const char *profile, bool check_access,
                            struct credentials *out, struct error *err)
{
    char *text = NULL;
    size_t length = 0;
    struct stat st;
    int rc = 0;
    *out = (struct credentials){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return error_set(err, -errno, "credentials file %s: %s", path, strerror(errno));
    /* fstat on the open descriptor, so the file checked is the file read. */
    if (fstat(fd, &st) != 0) {
        rc = error_set(err, -errno, "credentials file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = error_set(err, -EINVAL, "credentials file %s is not a regular file", path);
        goto out;
    }
    rc = check_access ? credentials_check_access(path, &st, "credentials file", err) : 0;
    if (rc != 0)
        goto out;
    if (st.st_size > CREDENTIALS_MAX_FILE_SIZE) {
        rc = error_set(err, -EFBIG, "credentials file %s is larger than %d bytes", path,
                       CREDENTIALS_MAX_FILE_SIZE);
        goto out;
    }
    length = (size_t)st.st_size + 1; /* all of it is wiped at the end, even after a failed read */
    text = malloc(length);
    if (!text) {
        rc = error_set(err, -ENOMEM, "credentials file %s: out of memory", path);
        goto out;
    }
    ssize_t got = io_read_full(fd, text, length - 1);
    if (got < 0) {
        rc = error_set(err, (int)got, "credentials file %s: %s", path, strerror((int)-got));
        goto out;
    }
    text[got] = '\0';
    rc = credentials_parse(text, path, profile, out, err);
out:
    if (text) {
        explicit_bzero(text, length);
        free(text);
    }
    close(fd);
    return rc;
}

static const char *environment_value(const char *name)
{
    const char *value = getenv(name);
    return value && *value ? value : NULL;
}

int credentials_load_environment(struct credentials *out, struct error *err)
{
    const char *key = environment_value("AWS_ACCESS_KEY_ID");
    const char *secret = environment_value("AWS_SECRET_ACCESS_KEY");
    const char *token = environment_value("AWS_SESSION_TOKEN");
    *out = (struct credentials){0};
    if (!key && !secret)
        return error_set(err, -ENOENT,
                         "no credentials: set credentials_file in the target, or the environment "
                         "variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    if (!key || !secret)
        return error_set(err, -EINVAL, "no credentials: %s is set but %s is not",
                         key ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                         key ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    out->access_key_id = strdup(key);
    out->secret_access_key = strdup(secret);
    out->session_token = token ? strdup(token) : NULL;
    if (!out->access_key_id || !out->secret_access_key || (token && !out->session_token)) {
        credentials_clear(out);
        return error_set(err, -ENOMEM, "credentials: out of memory");
    }
    return 0;
}

int credentials_load(const char *file, const char *profile, struct credentials *out,
                     struct error *err)
{
    if (file)
        return credentials_load_file(file, profile, out, err);
    return credentials_load_environment(out, err);
}
