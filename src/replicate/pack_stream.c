/*
 * pack_stream.c: a pack read from its members on the target (pack_stream.h).
 */
#include "replicate/pack_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replicate/format.h"

struct pack_stream_member {
    char key[FORMAT_KEY_SIZE];
    int64_t offset, size;
    char sha256[IO_SHA256_HEX];
};

struct pack_stream {
    struct target *target;
    const struct io_context *io;
    char stage[PATH_MAX];
    struct pack_stream_member *members;
    size_t count, capacity;
    int64_t size;
    atomic_uint readers; /* numbers the readers' window files */

    pthread_mutex_t lock; /* guards the failure */
    int failed_member;
    int failed_code;
};

/* One reader: the window of one member it holds, and, while it reads in
 * order from the start, the hash of the member it is in. */
struct pack_reader {
    struct pack_stream *stream;
    char path[PATH_MAX];
    int fd;
    int64_t start, length; /* the window: bytes [start, start + length) */
    bool in_order;
    int64_t checked; /* bytes read in order and hashed */
    size_t member;   /* the member `checked` is in */
    bool hashing;    /* `hash` is begun for that member */
    struct io_sha256 hash;
};

int pack_stream_open(struct target *target, const char *stage_directory,
                     const struct io_context *io, struct pack_stream **out, struct error *err)
{
    struct pack_stream *stream = calloc(1, sizeof *stream);
    *out = NULL;
    if (!stream)
        return error_set(err, -ENOMEM, "out of memory");
    stream->target = target;
    stream->io = io;
    snprintf(stream->stage, sizeof stream->stage, "%s", stage_directory);
    stream->failed_member = -1;
    pthread_mutex_init(&stream->lock, NULL);
    *out = stream;
    return 0;
}

void pack_stream_close(struct pack_stream *stream)
{
    if (!stream)
        return;
    pthread_mutex_destroy(&stream->lock);
    free(stream->members);
    free(stream);
}

int pack_stream_add(struct pack_stream *stream, const char *key, int64_t size,
                    const char *sha256_hex, struct error *err)
{
    if (size < 0 || strlen(key) >= FORMAT_KEY_SIZE || strlen(sha256_hex) != IO_SHA256_HEX - 1)
        return error_set(err, -EINVAL, "%s: not a member for a pack (%" PRId64 " bytes)", key,
                         size);
    if (stream->count == stream->capacity) {
        size_t capacity = stream->capacity ? 2 * stream->capacity : 16;
        struct pack_stream_member *grown =
            realloc(stream->members, capacity * sizeof *stream->members);
        if (!grown)
            return error_set(err, -ENOMEM, "out of memory");
        stream->members = grown;
        stream->capacity = capacity;
    }
    struct pack_stream_member *member = &stream->members[stream->count++];
    snprintf(member->key, sizeof member->key, "%s", key);
    snprintf(member->sha256, sizeof member->sha256, "%s", sha256_hex);
    member->offset = stream->size;
    member->size = size;
    stream->size += size;
    return 0;
}

int pack_stream_failed_member(struct pack_stream *stream, int *code)
{
    pthread_mutex_lock(&stream->lock);
    int member = stream->failed_member;
    *code = stream->failed_code;
    pthread_mutex_unlock(&stream->lock);
    return member;
}

/* Records the first member at fault; returns `code`. */
static int stream_fail(struct pack_stream *stream, size_t member, int code)
{
    pthread_mutex_lock(&stream->lock);
    if (stream->failed_member < 0) {
        stream->failed_member = (int)member;
        stream->failed_code = code;
    }
    pthread_mutex_unlock(&stream->lock);
    return code;
}

/* The member holding byte `offset` (< the stream's size). */
static size_t stream_member_at(const struct pack_stream *stream, int64_t offset)
{
    size_t low = 0, high = stream->count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (stream->members[middle].offset <= offset)
            low = middle;
        else
            high = middle;
    }
    return low;
}

static int reader_open(void *context, void **out, struct error *err)
{
    struct pack_stream *stream = context;
    struct pack_reader *reader = calloc(1, sizeof *reader);
    if (!reader)
        return error_set(err, -ENOMEM, "out of memory");
    reader->stream = stream;
    reader->fd = -1;
    reader->in_order = true;
    snprintf(reader->path, sizeof reader->path, "%s/window-%u", stream->stage,
             atomic_fetch_add(&stream->readers, 1) + 1);
    *out = reader;
    return 0;
}

static void reader_drop_window(struct pack_reader *reader)
{
    if (reader->fd >= 0) {
        close(reader->fd);
        unlink(reader->path);
    }
    reader->fd = -1;
    reader->length = 0;
}

static void reader_close(void *context)
{
    struct pack_reader *reader = context;
    reader_drop_window(reader);
    if (reader->hashing)
        io_sha256_discard(&reader->hash);
    free(reader);
}

/* Fetches the window that starts at `offset`: up to the end of its member,
 * at most PACK_STREAM_WINDOW_BYTES. */
static int reader_fetch(struct pack_reader *reader, int64_t offset, struct error *err)
{
    struct pack_stream *stream = reader->stream;
    size_t index = stream_member_at(stream, offset);
    const struct pack_stream_member *member = &stream->members[index];
    int64_t within = offset - member->offset, length = member->size - within;
    if (length > PACK_STREAM_WINDOW_BYTES)
        length = PACK_STREAM_WINDOW_BYTES;
    reader_drop_window(reader);
    unlink(reader->path); /* a window a kill left, by the same name */
    int rc = target_get_range(stream->target, member->key, within, length, reader->path, stream->io,
                              err);
    if (rc == -ENOENT || rc == -EBADMSG)
        return stream_fail(stream, index, rc);
    if (rc < 0)
        return rc;
    reader->fd = open(reader->path, O_RDONLY | O_CLOEXEC);
    if (reader->fd < 0) {
        rc = error_set(err, -errno, "%s: %s", reader->path, strerror(errno));
        unlink(reader->path);
        return rc;
    }
    reader->start = offset;
    reader->length = length;
    return 0;
}

/* Hashes bytes read in order into their members, and compares each member
 * with its recorded SHA-256 as its last byte passes (an empty member as the
 * bytes pass its place, or at the end). */
static int reader_check_bytes(struct pack_reader *reader, const unsigned char *bytes,
                              int64_t length, struct error *err)
{
    struct pack_stream *stream = reader->stream;
    while (reader->member < stream->count && (length > 0 || reader->checked == stream->size)) {
        const struct pack_stream_member *member = &stream->members[reader->member];
        if (!reader->hashing) {
            if (io_sha256_begin(&reader->hash) != 0)
                return error_set(err, -ENOMEM, "out of memory");
            reader->hashing = true;
        }
        int64_t step = member->offset + member->size - reader->checked;
        if (step > length)
            step = length;
        io_sha256_update(&reader->hash, bytes, (size_t)step);
        bytes += step;
        length -= step;
        reader->checked += step;
        if (reader->checked < member->offset + member->size)
            continue;
        char hex[IO_SHA256_HEX];
        io_sha256_end(&reader->hash, hex);
        reader->hashing = false;
        if (strcmp(hex, member->sha256) != 0) {
            error_set(err, -EBADMSG,
                      "%s on %s has SHA-256 %s, not the SHA-256 %s it was put with: it changed "
                      "on the target",
                      member->key, target_describe(stream->target), hex, member->sha256);
            return stream_fail(stream, reader->member, -EBADMSG);
        }
        reader->member++;
    }
    return 0;
}

static int reader_read(void *context, unsigned char *buffer, size_t length, int64_t offset,
                       struct error *err)
{
    struct pack_reader *reader = context;
    struct pack_stream *stream = reader->stream;
    if (offset < 0 || (int64_t)length > stream->size - offset)
        return error_set(err, -EINVAL, "read past the end of a pack of %" PRId64 " bytes",
                         stream->size);
    if (offset != reader->checked)
        reader->in_order = false;
    while (length > 0) {
        int rc;
        if (reader->fd < 0 || offset < reader->start || offset >= reader->start + reader->length) {
            if ((rc = reader_fetch(reader, offset, err)) < 0)
                return rc;
        }
        int64_t step = reader->start + reader->length - offset;
        if (step > (int64_t)length)
            step = (int64_t)length;
        if ((rc = io_pread_full(reader->fd, buffer, (size_t)step, offset - reader->start)) != 0)
            return error_set(err, rc, "%s: %s", reader->path, strerror(-rc));
        if (reader->in_order && (rc = reader_check_bytes(reader, buffer, step, err)) < 0)
            return rc;
        buffer += step;
        offset += step;
        length -= (size_t)step;
    }
    return 0;
}

/* Every member read in order and matched: what makes the pack uploadable. */
static int reader_check(void *context, struct error *err)
{
    struct pack_reader *reader = context;
    int rc = reader->in_order ? reader_check_bytes(reader, NULL, 0, err) : 0;
    if (rc < 0)
        return rc;
    if (!reader->in_order || reader->member != reader->stream->count)
        return error_set(err, -EIO,
                         "the pack's members were not all read in order (%" PRId64 " of %" PRId64
                         " bytes checked): not uploaded",
                         reader->checked, reader->stream->size);
    return 0;
}

void pack_stream_source(struct pack_stream *stream, const char *name, struct target_source *source)
{
    *source = (struct target_source){.name = name,
                                     .size = stream->size,
                                     .context = stream,
                                     .open_reader = reader_open,
                                     .read = reader_read,
                                     .close_reader = reader_close,
                                     .check = reader_check,
                                     .stage_directory = stream->stage};
}
