/*
 * credentials.h: the access key an S3 target signs with.
 *
 * From an AWS shared-credentials file (the format of ~/.aws/credentials:
 * [profile] sections of aws_access_key_id, aws_secret_access_key and
 * optionally aws_session_token), which must be shared with nobody but the
 * agent (see credentials_load_file), or else from the AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN environment variables. Secrets never appear in an error
 * message; they are wiped from memory when cleared.
 */
#ifndef SQLPRODD_CREDENTIALS_H
#define SQLPRODD_CREDENTIALS_H

#include <stddef.h>
#include <sys/stat.h>

#include "core/error.h"

struct credentials {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL without one */
};

/* From `file` (profile `profile`, "default" when NULL) or, when file is NULL,
 * from the environment. On failure *out is left cleared. */
int credentials_load(const char *file, const char *profile, struct credentials *out,
                     struct error *err);

/* The file alone: refused unless a regular file owned by root or our user,
 * with no access for others, none but read for its group, and that only
 * when the group is the one we run as (root:sqlprodd 0640, or 0600). */
int credentials_load_file(const char *path, const char *profile, struct credentials *out,
                          struct error *err);

int credentials_load_environment(struct credentials *out, struct error *err);

/* The rule above for any file holding a secret (an age identity too), on
 * the stat of the descriptor about to be read; `what` names the file in the
 * message ("identity file"). 0, or -EPERM with the chown/chmod to run. */
int credentials_check_access(const char *path, const struct stat *st, const char *what,
                             struct error *err);

/*
 * A systemd credential: $CREDENTIALS_DIRECTORY/NAME, put there by
 * LoadCredential=NAME:PATH (systemd.exec(5)). Its mode is not checked: the
 * directory is systemd's, private to the service, and the file is made
 * readable for the service's user alone (an ACL or ownership, systemd's
 * choice). Outside a unit with credentials, -ENOENT naming what to do.
 */
int credentials_load_credential(const char *name, const char *profile, struct credentials *out,
                                struct error *err);

/*
 * Parses shared-credentials text (pure; for the file loader and tests). `source`
 * names the text in messages. Accepts "[name]" and "[profile name]" headers,
 * "key = value" lines, '#' and ';' comment lines, and ignores indented
 * continuation lines and unknown keys, as the AWS CLI does.
 */
int credentials_parse(const char *text, const char *source, const char *profile,
                      struct credentials *out, struct error *err);

/* Wipes and frees the strings; safe on a cleared or zeroed struct. */
void credentials_clear(struct credentials *credentials);

#endif
