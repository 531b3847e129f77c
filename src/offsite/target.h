/*
 * target.h: where archives go off-site, behind one small interface.
 *
 * A target stores objects under keys "NAME/NAME-STAMP.db.gz" and
 * "NAME/NAME-STAMP.db.gz.json" (below the target's prefix for S3, below its
 * path for dir). Implementations: target_dir.c (a mounted directory, written
 * with temp file + fsync + rename) and target_s3.c (S3 API, Signature V4,
 * multipart for large files). Retries with backoff are the implementation's
 * job; a returned error is final for this attempt.
 */
#ifndef SQLPRODD_TARGET_H
#define SQLPRODD_TARGET_H

#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "core/error.h"
#include "core/io.h"

struct target;

struct target_object {
    char key[1024];    /* relative to the target's prefix/path */
    int64_t size;
    time_t modified;
};

struct target_listing {
    struct target_object *objects;
    size_t count;
};

/* Opens a target from its validated config (reads credentials for S3; they are
 * never logged). */
int target_open(const struct target_config *config, struct target **out, struct error *err);
void target_close(struct target *target);

/* Every request of this target, including the ones that take no io_context
 * (list, delete), is given up and fails with -ECANCELED soon after *stop is
 * set: a server that accepts and never answers must not outlast SIGTERM. */
void target_set_stop(struct target *target, const volatile sig_atomic_t *stop);

/* Uploads the local file at `path` under `key`. `sha256_hex` (may be NULL) is
 * stored as object metadata (x-amz-meta-sha256) and used for integrity checks:
 * a file whose bytes do not hash to it is not stored, and the call fails with
 * -EBADMSG (the local file is damaged: retrying will not help). Uses
 * multipart above the part size. Honors io->stop. */
int target_put_file(struct target *target, const char *key, const char *path,
                    const char *sha256_hex, const struct io_context *io, struct error *err);

/*
 * Bytes to upload that are made on the way rather than read from a file as
 * they are (an archive encrypted while it is sent: archive/sealed.h).
 * `read` fills exactly `length` bytes from `offset` (< size) or fails with
 * err set; each thread that reads opens a reader of its own.
 */
struct target_source {
    const char *name; /* the local file behind it, for messages */
    int64_t size;
    void *context;
    int (*open_reader)(void *context, void **reader, struct error *err);
    int (*read)(void *reader, unsigned char *buffer, size_t length, int64_t offset,
                struct error *err);
    void (*close_reader)(void *reader);
    /* Optional: called on a reader that has read the whole source once, in
     * order, before the object is made visible; nonzero refuses the upload
     * (an archive sealed on the way checks its plaintext against its
     * manifest here, -EBADMSG when it does not match). */
    int (*check)(void *reader, struct error *err);
    /* Optional: a directory only this upload writes to, for a source that is
     * costly to read twice (a pack merged from objects fetched back from the
     * target: replicate/pack_stream.h). An upload then reads the source once,
     * in order: S3 keeps each part in a file here from its hashing until it
     * is sent (at most parallel_parts + 1 parts at a time) instead of reading
     * it again to send it; a dir target reads every source once anyway.
     * What a kill leaves here is the caller's to remove. */
    const char *stage_directory;
};

/* Uploads a source under `key`. `sha256_hex` (may be NULL) is what the bytes
 * must hash to, as for target_put_file; the SHA-256 of what was stored is
 * written to `stored_sha256` (may be NULL). On S3 a known `sha256_hex`
 * is the object's x-amz-meta-sha256; without one, a large source (sent in
 * parts) goes without that metadata, since its hash exists only once it is
 * sent (s3_multipart.c), and a small one carries the hash of what it sent. */
int target_put_source(struct target *target, const char *key, const struct target_source *source,
                      const char *sha256_hex, char stored_sha256[IO_SHA256_HEX],
                      const struct io_context *io, struct error *err);

/* Downloads `key` into a new local file at `path` (0600, must not exist),
 * not synced to disk: it is a temporary copy for the caller to read. On
 * failure `path` does not exist afterwards. */
int target_get_file(struct target *target, const char *key, const char *path,
                    const struct io_context *io, struct error *err);

/* As target_get_file, with the SHA-256 of the bytes written to `path`,
 * hashed as they were written: a caller checking a download against a
 * manifest need not read it again. */
int target_get_file_hashed(struct target *target, const char *key, const char *path,
                           char sha256_hex[IO_SHA256_HEX], const struct io_context *io,
                           struct error *err);

/* Downloads bytes [offset, offset + length) of `key` into a new local file
 * at `path`, as target_get_file (length > 0). An object that ends before
 * offset + length fails with -EBADMSG naming both sizes. Nothing of the
 * object's own checksum can be checked on a part: the caller checks what it
 * cut out (a pack's members, each against its SHA-256). */
int target_get_range(struct target *target, const char *key, int64_t offset, int64_t length,
                     const char *path, const struct io_context *io, struct error *err);

/* Objects target_get_file and target_get_range downloaded in this process
 * so far (a ranged GET counts as one), on any target. */
long target_objects_read(void);

/* Lists every object whose key starts with `prefix` (all pages). */
int target_list(struct target *target, const char *prefix, struct target_listing *out,
                struct error *err);
void target_listing_free(struct target_listing *listing);

/* Deletes `key`; deleting a missing key is not an error. */
int target_delete(struct target *target, const char *key, struct error *err);

/* Removes what put_file calls killed midway left below `directory_key` (a
 * database's NAME): a dir target's temp files, which no listing shows and
 * nothing else would remove. S3 leaves none under a name: a PUT is atomic,
 * and a multipart upload cut by SIGKILL is for the bucket's lifecycle rule
 * (AbortIncompleteMultipartUpload). Call with the database's lock held.
 * Returns how many were removed, or a negative error. */
int target_remove_temp_files(struct target *target, const char *directory_key, struct error *err);

/* A description for messages without secrets: "s3://bucket/prefix at endpoint", "dir /mnt/nas". */
const char *target_describe(const struct target *target);

/* How hard a target tries and how much it does at once. target_open starts
 * from target_tuning_default(); tests shorten the delays. */
struct target_tuning {
    int attempts;               /* tries per request, at least 1 (default 6) */
    int64_t base_delay_ms;      /* the first retry waits up to this (500) */
    int64_t max_delay_ms;       /* no retry waits longer (30000) */
    int64_t connect_timeout_ms; /* (15000) */
    int64_t stall_timeout_ms;   /* slower than 1 KiB/s for this long: retried (60000) */
    int parallel_parts;         /* S3 multipart: parts in flight at once (4) */
};

void target_tuning_default(struct target_tuning *tuning);
void target_set_tuning(struct target *target, const struct target_tuning *tuning);

#endif
