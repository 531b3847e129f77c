/*
 * archive.h: turning a verified database copy into a gzip or zstd archive,
 * and back.
 *
 * Streams with bounded memory (a few buffers, whatever the database size),
 * computing the archive's SHA-256 (core/io.h) while writing it. The output
 * is standard gzip that gunzip, zcat and zlib read, or zstd frames that zstd
 * reads. Nothing here renames into final names: the backup job owns that.
 */
#ifndef SQLPRODD_ARCHIVE_H
#define SQLPRODD_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/io.h"
#include "crypto/age.h"

#define ARCHIVE_SHA256_HEX IO_SHA256_HEX

/* What archive_compress_format writes. gzip is the default and what every
 * tool reads; zstd (NAME-STAMP.db.zst) is smaller and faster to unpack. */
enum archive_format { ARCHIVE_GZIP, ARCHIVE_ZSTD };

struct archive_early;

/* What compression may use beyond its I/O context; NULL: the defaults. */
struct archive_options {
    int threads;                 /* compression threads; 0 means 2 */
    struct archive_early *early; /* blocks compressed while the source was still
                                    being written (archive_early.h); may be NULL */
    const struct age_recipient *recipients; /* seal the archive to these as it is
                                               written (an age file, sealed.h) */
    size_t recipient_count;                 /* 0: not sealed */
};

struct archive_result {
    int64_t input_bytes;
    int64_t output_bytes; /* as stored: sealed, when it was */
    char sha256[ARCHIVE_SHA256_HEX]; /* of the output file, lowercase hex */
};

/* Compresses `source` into `destination` (created 0600, must not exist),
 * gzip at libdeflate's `level` (1-9), fsyncs it. On any failure `destination` is removed.
 * io may be NULL (io->background: the compression threads run at the lowest
 * priority, priority.h, so the application's come first). The output is a series of gzip members,
 * one per 1 MiB of input (so `gzip -l` shows only the last member's size; gunzip reads all).
 * Errors: -EINVAL bad level, -EEXIST destination exists, -ECANCELED stop
 * was set, other -errno from the system. */
int archive_compress(const char *source, const char *destination, int level,
                     const struct io_context *io, struct archive_result *result, struct error *err);

/* As archive_compress, in `format`: for ARCHIVE_ZSTD the output is a series
 * of independent zstd frames, one per 1 MiB of input (`zstd -d` and
 * libzstd read them all), and `level` is zstd's, 1-19. */
int archive_compress_format(const char *source, const char *destination, enum archive_format format,
                            int level, const struct io_context *io,
                            const struct archive_options *options, struct archive_result *result,
                            struct error *err);

/* backup.level is on gzip's 1-9 scale and means "an archive about as small
 * as gzip -N makes, in the least time". These are the codecs' own levels
 * that keep that promise: libdeflate 6 -> 5 (gzip -6's size within 2.5%,
 * 1.5x faster than libdeflate 6), zstd 6 -> 3. */
int archive_deflate_level(int gzip_level);
int archive_zstd_level(int gzip_level);

/* "gzip" / "zstd", and the archive's file name suffix ".db.gz" / ".db.zst". */
const char *archive_format_name(enum archive_format format);
const char *archive_format_suffix(enum archive_format format);

/* The identities that may open an encrypted archive (an age v1 file, as
 * archive/sealed.h writes and `age -r` makes). */
struct archive_keys {
    const struct age_identity *identities;
    size_t count;
    const char *object; /* how decryption's messages name the archive (an object
                           on a target rather than its temp copy); NULL: its path */
};

/* Decompresses gzip or zstd `source` (told apart by their magic numbers;
 * any number of gzip members or zstd frames) into `destination`
 * (created 0600, must not exist); result->sha256 is that of the
 * *compressed input*, so the caller can check it against a manifest. On any
 * failure (corrupt or truncated input included) `destination` is removed.
 * A corrupt or truncated archive (or trailing garbage) is -EBADMSG.
 * An age file is decrypted on the way with one of `keys` (NULL: none): one
 * that no key opens is -ENOKEY; one altered or cut short, -EBADMSG; the
 * sha256 is still that of the stored (encrypted) file. `result` may be
 * NULL: nothing is hashed (the caller checked the file). Not synced: a
 * restore syncs the database once, when it is complete (a replica's base
 * is only its first part), and checks its sync's outcome. */
int archive_decompress(const char *source, const char *destination,
                       const struct archive_keys *keys, const struct io_context *io,
                       struct archive_result *result, struct error *err);

/* Takes the next `size` bytes of a decompressed archive, in order;
 * returns 0, or a negative code with err set to stop decompressing. */
typedef int (*archive_consumer)(void *context, const void *data, size_t size, struct error *err);

/* As archive_decompress, handing the output to `consume` as it is made
 * instead of writing a file: for a caller that parses what it reads (a
 * page delta) and would only read a temp copy back. The input's checks
 * come as it is read, so `consume` may have taken part of an archive that
 * then fails (-EBADMSG at its damage): its work is to be thrown away. */
int archive_decompress_into(const char *source, archive_consumer consume, void *context,
                            const struct archive_keys *keys, const struct io_context *io,
                            struct archive_result *result, struct error *err);

/* Reads `source` as archive_decompress does, to its end, and keeps nothing:
 * proves it decompresses (and decrypts, with `keys`) and counts what it
 * holds (result->output_bytes), with result->sha256 that of the stored file.
 * For verify: no disk space, memory bounded as for a restore. */
int archive_check(const char *source, const struct archive_keys *keys, const struct io_context *io,
                  struct archive_result *result, struct error *err);

/* SHA-256 of a file, lowercase hex. */
int archive_sha256_file(const char *path, char hex[ARCHIVE_SHA256_HEX], struct error *err);

#endif
