/*
 * sealed.h: objects encrypted to their recipients before they leave the
 * machine, in the age v1 format (crypto/age.h), so that `age -d -i key.txt`
 * opens them and the bucket alone reveals nothing of the data.
 *
 * A sealed object is an age file whose plaintext is the object as it would
 * be unencrypted (a gzip or zstd archive, a gzip'd WAL segment); its name
 * gets ".age" after the usual one. A file is sealed as it is read (a
 * sealed view, for uploads: age chunks are independent), a buffer in one
 * go.
 * Opening a file is archive_decompress's job (archive.h); opening a
 * buffer is here, for the replica's small objects.
 */
#ifndef SQLPRODD_SEALED_H
#define SQLPRODD_SEALED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"
#include "config/config.h"
#include "core/error.h"
#include "core/io.h"
#include "crypto/age.h"

/* The suffix a sealed object's name gets. */
#define SEALED_SUFFIX ".age"
/* Bytes that sealed_is_age needs to tell. */
#define SEALED_MAGIC_PEEK 40

/* Whether `head` (the first bytes of a file) begins an age file, binary or
 * ASCII-armored (which the decryptor then refuses by name). */
bool sealed_is_age(const unsigned char *head, size_t size);

/* The recipients to seal to; count 0 means "not sealed". */
struct sealed_recipients {
    const struct age_recipient *items;
    size_t count;
};

/* A database's recipients: count 0 when it does not encrypt. */
static inline struct sealed_recipients sealed_recipients_of(const struct database_config *db)
{
    return (struct sealed_recipients){db->encrypt.recipients, db->encrypt.recipient_count};
}

/* Encrypts `size` bytes into *out (malloc'd, *out_size bytes). */
int sealed_seal_buffer(const void *data, size_t size, const struct sealed_recipients *recipients,
                       unsigned char **out, size_t *out_size, struct error *err);

/* Decrypts a sealed buffer into *out (malloc'd). `object` names it in
 * messages. Nothing is returned unless the whole object authenticated. */
int sealed_open_buffer(const void *data, size_t size, const struct archive_keys *keys,
                       const char *object, unsigned char **out, size_t *out_size,
                       struct error *err);

/*
 * A plain file seen as its sealed form without writing that anywhere: the
 * bytes at any offset are encrypted as they are read, so that an upload
 * sends an archive kept unencrypted here as NAME.age with no sealed copy
 * on disk (sealed_view.c). The file key and nonce are drawn once, at
 * open: every read of one view gives the same bytes, as a sealed file
 * would. The file must be a regular file; if it shrinks, reads fail.
 * Readers are one per thread; the view outlives them.
 */
struct sealed_view;
struct sealed_view_reader;

int sealed_view_open(const char *path, const struct sealed_recipients *recipients,
                     struct sealed_view **view, struct error *err);
/* The sealed form's size in bytes. */
int64_t sealed_view_size(const struct sealed_view *view);
/* What the plaintext must hash to (the archive's manifest), for
 * sealed_view_reader_check; set before readers are opened. */
void sealed_view_expect_plain(struct sealed_view *view, const char *plain_sha256);
void sealed_view_close(struct sealed_view *view);

int sealed_view_reader_open(struct sealed_view *view, struct sealed_view_reader **reader,
                            struct error *err);
/* Exactly `length` bytes of the sealed form from `offset` (offset + length
 * <= the size). Sequential reads encrypt each chunk once. */
int sealed_view_read(struct sealed_view_reader *reader, unsigned char *buffer, size_t length,
                     int64_t offset, struct error *err);
void sealed_view_reader_close(struct sealed_view_reader *reader);
/* Once `reader` has read the whole view in order: 0 when the plaintext it
 * encrypted hashes to what sealed_view_expect_plain said (or nothing was
 * said); -EBADMSG naming both hashes when the file changed or is corrupt. */
int sealed_view_reader_check(struct sealed_view_reader *reader, struct error *err);

/* "age1abc..., age1def..." (recipients as `age-keygen -y` prints them), for
 * manifests and `backups --remote`; cut with "..." when it does not fit. */
void sealed_describe_recipients(const struct sealed_recipients *recipients, char *out,
                                size_t size);

#endif
