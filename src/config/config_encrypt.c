/*
 * config_encrypt.c: the `encrypt = { ... }` group of `defaults` and of a
 * database entry (sqlprodd.conf(5), ENCRYPTION).
 *
 * Recipients are public keys ("age1..."), given in the config, in a
 * recipients file (age -R's format: one a line, '#' comments), or both;
 * writing either replaces the inherited set as a whole, so that rotating a
 * key in `defaults` reaches every database that does not name its own. The
 * file is read here, at load, because a key that does not parse must stop
 * the agent before a backup goes out unencrypted or to the wrong key. The
 * identity (secret key) is only named here, never read: the agent's jobs
 * never need it, restore reads it (restore/identity.c).
 */
#include "config/config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"

/* A recipients file holds public keys only: a few KiB, never more. */
#define RECIPIENTS_FILE_MAXIMUM (64 * 1024)

static const char *const encrypt_keys[] = {"recipients", "recipients_file", "identity",
                                           "identity_credential", "local", "enabled", NULL};

void config_encrypt_release(struct encrypt_settings *encrypt)
{
    free(encrypt->recipients);
    free(encrypt->recipients_file);
    free(encrypt->identity);
    free(encrypt->identity_credential);
    encrypt->recipients = NULL;
    encrypt->recipient_count = 0;
    encrypt->recipients_file = encrypt->identity = encrypt->identity_credential = NULL;
}

static int copy_text(char **out, const char *text)
{
    *out = text ? strdup(text) : NULL;
    return text && !*out ? -ENOMEM : 0;
}

int config_encrypt_copy(struct encrypt_settings *to, const struct encrypt_settings *from)
{
    *to = (struct encrypt_settings){.local = from->local};
    if (from->recipient_count) {
        to->recipients = malloc(from->recipient_count * sizeof *to->recipients);
        if (!to->recipients)
            return -ENOMEM;
        memcpy(to->recipients, from->recipients, from->recipient_count * sizeof *to->recipients);
        to->recipient_count = from->recipient_count;
    }
    if (copy_text(&to->recipients_file, from->recipients_file) != 0 ||
        copy_text(&to->identity, from->identity) != 0 ||
        copy_text(&to->identity_credential, from->identity_credential) != 0) {
        config_encrypt_release(to);
        return -ENOMEM;
    }
    return 0;
}

/* The set being built from one group: duplicates dropped (one stanza per
 * key is enough), at most ENCRYPT_RECIPIENTS_MAXIMUM. */
struct recipient_set {
    struct age_recipient items[ENCRYPT_RECIPIENTS_MAXIMUM];
    size_t count;
    bool too_many;
};

static void set_add(struct recipient_set *set, const struct age_recipient *recipient)
{
    for (size_t i = 0; i < set->count; i++)
        if (memcmp(set->items[i].public_key, recipient->public_key, AGE_KEY_SIZE) == 0)
            return;
    if (set->count == ENCRYPT_RECIPIENTS_MAXIMUM) {
        set->too_many = true;
        return;
    }
    set->items[set->count++] = *recipient;
}

/* `recipients = ( "age1...", ... )`, or [ ... ], or one string. */
static bool read_recipient_list(struct config_reader *reader, const config_setting_t *group,
                                const char *key, struct recipient_set *set)
{
    const config_setting_t *member = config_setting_get_member(group, "recipients");
    char member_key[CONFIG_KEY_SIZE], element_key[CONFIG_KEY_SIZE + 16];
    if (!member)
        return false;
    config_key_join(member_key, sizeof member_key, key, "recipients");
    int type = config_setting_type(member);
    bool single = type == CONFIG_TYPE_STRING;
    if (!single && type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY) {
        config_report(reader, member, member_key,
                      "expected a list of public keys ( \"age1...\", ... ), got %s",
                      config_type_phrase(member));
        return true;
    }
    int count = single ? 1 : config_setting_length(member);
    for (int i = 0; i < count; i++) {
        const config_setting_t *element = single ? member : config_setting_get_elem(member, i);
        if (single)
            snprintf(element_key, sizeof element_key, "%s", member_key);
        else
            snprintf(element_key, sizeof element_key, "%s[%d]", member_key, i);
        const char *text = config_setting_get_string(element);
        if (!text) {
            config_report(reader, element, element_key,
                          "expected a public key \"age1...\" (a string), got %s",
                          config_type_phrase(element));
            continue;
        }
        struct age_recipient recipient;
        struct error why = {0};
        if (age_recipient_parse(text, &recipient, &why) != 0) {
            config_report(reader, element, element_key, "%s", why.message);
            continue;
        }
        set_add(set, &recipient);
    }
    if (count == 0)
        config_report(reader, member, member_key,
                      "is empty: give at least one public key \"age1...\" (age-keygen -y "
                      "prints it), or write enabled = false to turn encryption off");
    return true;
}

/* A recipients file: read as a regular file only (a FIFO would hang the
 * load), small, each non-comment line a public key. Its own line numbers
 * are in the message, after the config's. */
static void read_recipients_file(struct config_reader *reader, const config_setting_t *group,
                                 const char *key, const char *path, struct recipient_set *set)
{
    const config_setting_t *member = config_setting_get_member(group, "recipients_file");
    char member_key[CONFIG_KEY_SIZE];
    config_key_join(member_key, sizeof member_key, key, "recipients_file");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        config_report(reader, member, member_key, "cannot read %s: %s", path, strerror(errno));
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        config_report(reader, member, member_key, "%s is not a regular file", path);
        close(fd);
        return;
    }
    if (st.st_size > RECIPIENTS_FILE_MAXIMUM) {
        config_report(reader, member, member_key,
                      "%s is larger than %d bytes: a recipients file holds public keys only",
                      path, RECIPIENTS_FILE_MAXIMUM);
        close(fd);
        return;
    }
    char *text = malloc((size_t)st.st_size + 1);
    ssize_t got = text ? io_read_full(fd, text, (size_t)st.st_size) : -ENOMEM;
    close(fd);
    if (got < 0) {
        config_report(reader, member, member_key, "cannot read %s: %s", path,
                      strerror((int)-got));
        free(text);
        return;
    }
    text[got] = '\0';
    size_t before = set->count;
    int line_number = 0;
    for (char *line = text, *next; line && *line; line = next) {
        line_number++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t length = strlen(line);
        if (length && line[length - 1] == '\r')
            line[--length] = '\0';
        if (length == 0 || line[0] == '#')
            continue;
        struct age_recipient recipient;
        struct error why = {0};
        if (age_recipient_parse(line, &recipient, &why) != 0) {
            config_report(reader, member, member_key, "%s:%d: %s", path, line_number,
                          why.message);
            continue;
        }
        set_add(set, &recipient);
    }
    free(text);
    if (set->count == before)
        config_report(reader, member, member_key,
                      "%s holds no public key: one \"age1...\" a line, '#' starts a comment",
                      path);
}

void config_read_encrypt(struct config_reader *reader, const config_setting_t *parent,
                         const char *parent_key, struct encrypt_settings *encrypt, bool *enabled)
{
    char key[CONFIG_KEY_SIZE];
    config_key_join(key, sizeof key, parent_key, "encrypt");
    const config_setting_t *group = config_setting_get_member(parent, "encrypt");
    if (!group)
        return;
    if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
        config_report(reader, group, key,
                      "expected a group { recipients = ( \"age1...\" ); }, got %s",
                      config_type_phrase(group));
        return;
    }
    config_check_keys(reader, group, key, encrypt_keys, NULL);

    struct recipient_set set = {0};
    bool listed = read_recipient_list(reader, group, key, &set);
    bool filed = config_value_path(reader, group, key, "recipients_file",
                                   &encrypt->recipients_file) == CONFIG_VALUE_SET;
    if (filed)
        read_recipients_file(reader, group, key, encrypt->recipients_file, &set);
    else if (listed) {
        free(encrypt->recipients_file); /* the inherited file no longer applies */
        encrypt->recipients_file = NULL;
    }
    if (set.too_many) {
        char member_key[CONFIG_KEY_SIZE];
        config_key_join(member_key, sizeof member_key, key, listed ? "recipients" : "recipients_file");
        config_report(reader, config_setting_get_member(group, listed ? "recipients" : "recipients_file"),
                      member_key, "more than %d recipients: every one is a stanza in every object",
                      ENCRYPT_RECIPIENTS_MAXIMUM);
    }
    if (listed || filed) {
        free(encrypt->recipients);
        encrypt->recipients = NULL;
        encrypt->recipient_count = 0;
        if (set.count) {
            encrypt->recipients = malloc(set.count * sizeof *encrypt->recipients);
            if (encrypt->recipients) {
                memcpy(encrypt->recipients, set.items, set.count * sizeof *encrypt->recipients);
                encrypt->recipient_count = set.count;
            } else {
                reader->out_of_memory = true;
            }
        }
    }
    config_value_path(reader, group, key, "identity", &encrypt->identity);
    config_value_string(reader, group, key, "identity_credential", &encrypt->identity_credential);
    if (encrypt->identity_credential &&
        (!encrypt->identity_credential[0] || strchr(encrypt->identity_credential, '/'))) {
        char member_key[CONFIG_KEY_SIZE];
        config_key_join(member_key, sizeof member_key, key, "identity_credential");
        config_report(reader, config_setting_get_member(group, "identity_credential"), member_key,
                      "must be a credential's name (LoadCredential=NAME:PATH), not \"%s\"",
                      encrypt->identity_credential);
    }
    config_value_bool(reader, group, key, "local", &encrypt->local);
    config_value_bool(reader, group, key, "enabled", enabled);
}
