/*
 * archive.c: gzip archives of database copies, and back, with the SHA-256
 * of the archive computed as it is written or read.
 *
 * Compression cuts the input into independent blocks that a small pool of
 * threads compresses with libdeflate, each block becoming one gzip member
 * (RFC 1952 allows any number of members; gunzip, zcat and zlib read them
 * all, as they read pigz's output). zstd archives are made the same way,
 * one independent zstd frame per block. Memory is bounded by the few blocks
 * in flight, whatever the database size. Decompression is libdeflate
 * member by member (archive_inflate.c) or streaming libzstd, chosen by the
 * input's magic number.
 *
 * Not for naming, renaming or verifying backups (the backup and restore jobs
 * do that), and not for the manifest (manifest.c). A destination is always a
 * new file: it is created with O_EXCL and removed again on every failure, so a
 * half-written archive never survives a call.
 */
#include "archive/archive.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "archive/archive_internal.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/priority.h"

/* Memory: 2 slots of about 2 MiB (ARCHIVE_BLOCK_BYTES in, as much out) per
 * thread, the threads shared by every compression of the process. */
#define ARCHIVE_DEFAULT_THREADS  2
#define ARCHIVE_MAX_THREADS      32
#define ARCHIVE_SLOTS_PER_THREAD 2
#define ARCHIVE_STREAM_BYTES     (256 * 1024)
#define ARCHIVE_PROGRESS_BYTES   ((int64_t)8 * 1024 * 1024)

enum archive_slot_state { SLOT_FREE, SLOT_FILLED, SLOT_DONE, SLOT_FAILED };

/* One block in flight. The main thread owns a FREE slot and reads into it;
 * a worker owns it from FILLED until it marks it DONE; the main thread then
 * writes it out and frees it. Slot i holds block sequence numbers i mod n. */
struct archive_slot {
    enum archive_slot_state state;
    uint64_t block; /* its number in the input: offset / ARCHIVE_BLOCK_BYTES */
    unsigned char *input;
    size_t input_size;
    unsigned char *output;
    size_t output_size;
};

struct archive_worker;

struct archive_pool {
    pthread_mutex_t lock;
    pthread_cond_t work_ready; /* workers wait: a block was filled, or shutdown */
    pthread_cond_t block_done; /* the main thread waits: a block was compressed */
    struct archive_slot *slots;
    size_t slot_count;
    size_t output_capacity;
    uint64_t submitted; /* blocks handed to workers */
    uint64_t next_to_compress;
    bool shutting_down;
    bool background;
    enum archive_format format;
    int level;
    struct archive_codec *codecs; /* one per worker */
    struct archive_early *early;  /* blocks compressed while the copy was written; may be NULL */
    struct archive_worker *workers;
    pthread_t *threads;
    size_t thread_count; /* taken from the process's budget, given back at stop */
    size_t threads_started;
};

struct archive_worker {
    struct archive_pool *pool;
    size_t index;
};

/* Opens a new destination: it must not exist, so we never clobber a backup. */
static int archive_create_destination(const char *destination, int *fd, struct error *err)
{
    *fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (*fd < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot create %s: %s", destination, strerror(saved));
    }
    return 0;
}

static int archive_open_source(const char *source, int *fd, int64_t *size, struct error *err)
{
    struct stat st;
    *fd = fs_open_regular(source, "a regular file", err);
    if (*fd < 0) {
        int rc = *fd;
        *fd = -1;
        return rc;
    }
    if (fstat(*fd, &st) < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot stat %s: %s", source, strerror(saved));
    }
    *size = (int64_t)st.st_size;
    return 0;
}

/* fsync (when `sync`) then close, both checked: a failed close can be the
 * first report of a failed write-back on some file systems. */
static int archive_finish_destination(const char *destination, int *fd, bool sync,
                                      struct error *err)
{
    if (sync && fsync(*fd) < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot sync %s: %s", destination, strerror(saved));
    }
    int rc = close(*fd);
    *fd = -1;
    if (rc < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot write %s: %s", destination, strerror(saved));
    }
    return 0;
}

static void *archive_worker_run(void *argument)
{
    struct archive_worker *worker = argument;
    struct archive_pool *pool = worker->pool;
    struct archive_codec *codec = &pool->codecs[worker->index];

    if (pool->background)
        priority_lower_this_thread();

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->shutting_down && pool->next_to_compress == pool->submitted)
            pthread_cond_wait(&pool->work_ready, &pool->lock);
        if (pool->shutting_down)
            break;
        struct archive_slot *slot = &pool->slots[pool->next_to_compress % pool->slot_count];
        assert(slot->state == SLOT_FILLED);
        pool->next_to_compress++;
        pthread_mutex_unlock(&pool->lock);

        size_t produced = 0;
        if (pool->early)
            produced =
                archive_early_take(pool->early, pool->format, pool->level, slot->block, slot->input,
                                   slot->input_size, slot->output, pool->output_capacity);
        if (produced == 0)
            produced = archive_codec_compress(codec, slot->input, slot->input_size, slot->output,
                                              pool->output_capacity);

        pthread_mutex_lock(&pool->lock);
        slot->output_size = produced;
        slot->state = produced > 0 ? SLOT_DONE : SLOT_FAILED;
        pthread_cond_signal(&pool->block_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* The compression threads of the whole process: when a replica's base and a
 * backup compress at once, the one that starts second takes what the first
 * leaves of its own `threads`, and at least one. Together they hold the
 * memory of one compression and one thread more (2 slots of 2 MiB and a
 * codec a thread), not of two: that was the agent's peak RSS. The price,
 * where cores are spare: the second compresses with fewer threads than it
 * asked for. */
static pthread_mutex_t archive_budget_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t archive_threads_busy;

static size_t archive_threads_take(size_t wanted)
{
    pthread_mutex_lock(&archive_budget_lock);
    size_t granted = archive_threads_busy < wanted ? wanted - archive_threads_busy : 1;
    archive_threads_busy += granted;
    pthread_mutex_unlock(&archive_budget_lock);
    return granted;
}

static void archive_threads_give_back(size_t count)
{
    pthread_mutex_lock(&archive_budget_lock);
    archive_threads_busy -= count;
    pthread_mutex_unlock(&archive_budget_lock);
}

static void archive_pool_stop(struct archive_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->shutting_down = true;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < pool->threads_started; i++)
        pthread_join(pool->threads[i], NULL);

    for (size_t i = 0; pool->slots && i < pool->slot_count; i++) {
        free(pool->slots[i].input);
        free(pool->slots[i].output);
    }
    for (size_t i = 0; pool->codecs && i < pool->thread_count; i++)
        archive_codec_free(&pool->codecs[i]);
    free(pool->slots);
    free(pool->codecs);
    free(pool->workers);
    free(pool->threads);
    archive_threads_give_back(pool->thread_count);
    pthread_cond_destroy(&pool->block_done);
    pthread_cond_destroy(&pool->work_ready);
    pthread_mutex_destroy(&pool->lock);
}

static size_t archive_thread_count(const struct archive_options *options)
{
    if (!options || options->threads <= 0)
        return ARCHIVE_DEFAULT_THREADS;
    if (options->threads > ARCHIVE_MAX_THREADS)
        return ARCHIVE_MAX_THREADS;
    return (size_t)options->threads;
}

/* Always leaves the pool safe to pass to archive_pool_stop, even on failure. */
static int archive_pool_start(struct archive_pool *pool, enum archive_format format, int level,
                              const struct io_context *io, const struct archive_options *options,
                              struct error *err)
{
    memset(pool, 0, sizeof *pool);
    size_t thread_count = archive_threads_take(archive_thread_count(options));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work_ready, NULL);
    pthread_cond_init(&pool->block_done, NULL);
    pool->thread_count = thread_count;
    pool->format = format;
    pool->level = level;
    pool->background = io && io->background;
    pool->early = options ? options->early : NULL;
    pool->slot_count = thread_count * ARCHIVE_SLOTS_PER_THREAD;
    pool->codecs = calloc(thread_count, sizeof *pool->codecs);
    pool->workers = calloc(thread_count, sizeof *pool->workers);
    pool->threads = calloc(thread_count, sizeof *pool->threads);
    pool->slots = calloc(pool->slot_count, sizeof *pool->slots);
    if (!pool->codecs || !pool->workers || !pool->threads || !pool->slots)
        return error_set(err, -ENOMEM, "cannot start compression: out of memory");

    for (size_t i = 0; i < thread_count; i++) {
        if (archive_codec_init(&pool->codecs[i], format, level) != 0)
            return error_set(err, -ENOMEM, "cannot start %s level %d compression: out of memory",
                             archive_format_name(format), level);
        pool->output_capacity = pool->codecs[i].output_capacity;
    }
    for (size_t i = 0; i < pool->slot_count; i++) {
        pool->slots[i].input = malloc(ARCHIVE_BLOCK_BYTES);
        pool->slots[i].output = malloc(pool->output_capacity);
        if (!pool->slots[i].input || !pool->slots[i].output)
            return error_set(err, -ENOMEM, "cannot start compression: out of memory");
    }

    int rc = 0;
    for (size_t i = 0; i < thread_count; i++) {
        pool->workers[i].pool = pool;
        pool->workers[i].index = i;
        rc = io_thread_start(&pool->threads[i], archive_worker_run, &pool->workers[i]);
        if (rc != 0)
            break;
        pool->threads_started++;
    }
    if (rc != 0)
        return error_set(err, rc, "cannot start compression threads: %s", strerror(-rc));
    return 0;
}

/* Where compressed blocks go: the destination, through an age encryptor
 * when the archive is sealed; the digest and count are of what is stored. */
struct archive_writer {
    int fd;
    const char *path;
    struct io_sha256 *digest;
    struct age_encryptor *encryptor; /* NULL: stored as compressed */
    int64_t stored_bytes;
};

static int archive_writer_store(void *context, const unsigned char *data, size_t size,
                                struct error *err)
{
    struct archive_writer *writer = context;
    int rc = io_write_full(writer->fd, data, size);
    if (rc < 0)
        return error_set(err, rc, "cannot write %s: %s", writer->path, strerror(-rc));
    io_sha256_update(writer->digest, data, size);
    writer->stored_bytes += (int64_t)size;
    return 0;
}

static int archive_writer_put(struct archive_writer *writer, const unsigned char *data,
                              size_t size, struct error *err)
{
    if (writer->encryptor)
        return age_encrypt_update(writer->encryptor, data, size, err);
    return archive_writer_store(writer, data, size, err);
}

/* Writes a compressed block (its slot DONE, the lock not held), adds it to
 * the counts, and frees the slot. */
static int archive_write_block(struct archive_pool *pool, struct archive_slot *slot,
                               struct archive_writer *writer, struct archive_result *result,
                               struct error *err)
{
    assert(slot->state == SLOT_DONE);
    int rc = archive_writer_put(writer, slot->output, slot->output_size, err);
    if (rc < 0)
        return rc;
    result->input_bytes += (int64_t)slot->input_size;
    result->output_bytes = writer->stored_bytes;
    pthread_mutex_lock(&pool->lock);
    slot->state = SLOT_FREE;
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

/* Reads the next block of `in` into the free slot `next` (the lock not
 * held) and hands it to the workers; *input_done once the input ends. */
static int archive_submit_block(struct archive_pool *pool, struct archive_slot *next, bool first,
                                int in, const char *source, bool *input_done, struct error *err)
{
    ssize_t got = io_read_full(in, next->input, ARCHIVE_BLOCK_BYTES);
    if (got < 0)
        return error_set(err, (int)got, "cannot read %s: %s", source, strerror((int)-got));
    *input_done = got < ARCHIVE_BLOCK_BYTES;
    /* An empty input still becomes one (empty) member: a zero-byte
     * file is not valid gzip. */
    if (got == 0 && !first)
        return 0;
    next->input_size = (size_t)got;
    pthread_mutex_lock(&pool->lock);
    next->block = pool->submitted;
    next->state = SLOT_FILLED;
    pool->submitted++;
    pthread_cond_signal(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

/* The main thread's side of compression: read blocks into free slots, write
 * compressed ones in order. It sleeps only when it can neither write the
 * oldest block (still being compressed) nor read a new one (every slot in
 * use, or the input is exhausted). */
static int archive_compress_blocks(struct archive_pool *pool, int in,
                                   struct archive_writer *writer, const char *source,
                                   const struct io_context *io,
                                   int64_t total, struct archive_result *result, struct error *err)
{
    uint64_t written = 0;
    bool input_done = false;
    int64_t reported = 0;
    int rc = 0;

    while (rc == 0) {
        if (io_stopped(io))
            return error_set(err, -ECANCELED, "compressing %s was cancelled", source);

        pthread_mutex_lock(&pool->lock);
        struct archive_slot *oldest = &pool->slots[written % pool->slot_count];
        bool in_flight = written < pool->submitted;
        if (in_flight && oldest->state == SLOT_DONE) {
            pthread_mutex_unlock(&pool->lock);
            rc = archive_write_block(pool, oldest, writer, result, err);
            written++;
            if (rc == 0 && result->input_bytes - reported >= ARCHIVE_PROGRESS_BYTES) {
                reported = result->input_bytes;
                io_report_progress(io, reported, total);
            }
        } else if (in_flight && oldest->state == SLOT_FAILED) {
            pthread_mutex_unlock(&pool->lock);
            return error_set(err, -EIO, "cannot compress %s: %s could not compress a block", source,
                             pool->format == ARCHIVE_ZSTD ? "libzstd" : "libdeflate");
        } else if (!input_done && pool->submitted - written < pool->slot_count) {
            struct archive_slot *next = &pool->slots[pool->submitted % pool->slot_count];
            bool first = pool->submitted == 0;
            assert(next->state == SLOT_FREE);
            pthread_mutex_unlock(&pool->lock);
            rc = archive_submit_block(pool, next, first, in, source, &input_done, err);
        } else if (input_done && !in_flight) {
            pthread_mutex_unlock(&pool->lock);
            /* age: the final chunk, written only now, makes the file whole. */
            if (writer->encryptor && (rc = age_encrypt_finish(writer->encryptor, err)) != 0)
                return rc;
            result->output_bytes = writer->stored_bytes;
            io_report_progress(io, result->input_bytes, total);
            return 0;
        } else {
            pthread_cond_wait(&pool->block_done, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    return rc;
}

int archive_deflate_level(int gzip_level)
{
    /* For each gzip level N, the fastest libdeflate level (1-9) whose
     * archive is at most 1.02x of gzip -N's on every kind of data of
     * bench/compression.py's corpus (bench/corpus.py, 128 MiB each: text,
     * numbers, UUID and hex tokens, JSON, compressed blobs, short order rows
     * with a random token), never lower for a higher N. Measured 2026-12-03
     * on 32 1 MiB members of each VACUUM INTO copy, libdeflate 1.14 against
     * gzip 1.12 (worst kind; one core's MB/s over the corpus): 1 -> 2, as
     * level 1 is 1.023x gzip -1 on numbers (2: at most 0.999x, 106 MB/s);
     * 4 -> 2 (1.017x json); 6 -> 5 (1.019x text, 73 MB/s; level 6 is 63, and
     * makes the default backup of text and orders miss 0.25x of the cron
     * script's time); 7-9 -> 6 (1.015x, 1.019x, 1.019x text; level 9 is
     * 15 MB/s). Whole archives: level 6 at most 1.018x gzip -6, level 9
     * 1.018x gzip -9, level 1 0.999x gzip -1. bench/README.md: the tables. */
    static const int levels[10] = {5, 2, 2, 2, 2, 5, 5, 6, 6, 6};
    return gzip_level >= 1 && gzip_level <= 9 ? levels[gzip_level] : 5;
}

int archive_zstd_level(int gzip_level)
{
    /* The same rule on the same corpus (zstd has no target of its own;
     * "about gzip -N's size" is the same 1.02x): zstd 1 is 1.025x gzip -1 on
     * numbers, 2 holds up to gzip -5 (1.009x orders, 300 MB/s), 3 up to
     * gzip -7 (1.020x orders, 204 MB/s), 4 and 5 are no smaller on the
     * orders, 6 holds for gzip -8 and -9 (at most 1.002x, 75 MB/s). */
    static const int levels[10] = {3, 2, 2, 2, 2, 2, 3, 3, 6, 6};
    return gzip_level >= 1 && gzip_level <= 9 ? levels[gzip_level] : 3;
}

const char *archive_format_name(enum archive_format format)
{
    return format == ARCHIVE_ZSTD ? "zstd" : "gzip";
}

const char *archive_format_suffix(enum archive_format format)
{
    return format == ARCHIVE_ZSTD ? ".db.zst" : ".db.gz";
}

/* What compression and decompression both hold: the source, the digest and
 * the new destination, which is removed again unless everything worked. */
struct archive_files {
    int in, out;
    int64_t total; /* size of the source */
    struct io_sha256 digest;
    bool created;
    bool discard; /* no file: the output goes to a consumer */
    bool sync;    /* the destination is synced before it is handed out */
};

static int archive_files_open(const char *source, const char *destination,
                              struct archive_files *files, struct error *err)
{
    *files = (struct archive_files){.in = -1, .out = -1};
    int rc = archive_open_source(source, &files->in, &files->total, err);
    if (rc == 0)
        rc = io_sha256_begin(&files->digest) == 0
                 ? 0
                 : error_set(err, -ENOMEM, "cannot hash %s: out of memory", source);
    if (!destination) {
        files->discard = true;
        return rc;
    }
    if (rc == 0)
        rc = archive_create_destination(destination, &files->out, err);
    files->created = rc == 0;
    return rc;
}

/* Called with the outcome so far: on success, syncs the destination (when
 * files->sync), closes it and hands out the result with its digest; on any
 * failure, removes it. */
static int archive_files_close(struct archive_files *files, const char *destination, int rc,
                               struct archive_result *local, struct archive_result *result,
                               struct error *err)
{
    if (rc == 0 && !files->discard)
        rc = archive_finish_destination(destination, &files->out, files->sync, err);
    if (rc == 0) {
        io_sha256_end(&files->digest, local->sha256);
        if (result)
            *result = *local;
    }
    if (files->in >= 0)
        close(files->in);
    if (files->out >= 0)
        close(files->out);
    if (rc < 0 && files->created)
        unlink(destination);
    io_sha256_discard(&files->digest);
    return rc;
}

int archive_compress(const char *source, const char *destination, int level,
                     const struct io_context *io, struct archive_result *result, struct error *err)
{
    return archive_compress_format(source, destination, ARCHIVE_GZIP, level, io, NULL, result, err);
}

int archive_compress_format(const char *source, const char *destination, enum archive_format format,
                            int level, const struct io_context *io,
                            const struct archive_options *options, struct archive_result *result,
                            struct error *err)
{
    struct archive_result local = {0};
    struct archive_files files;

    int highest = format == ARCHIVE_ZSTD ? ZSTD_maxCLevel() : 9;
    if (level < 1 || level > highest)
        return error_set(err, -EINVAL, "cannot compress %s: %s level %d is not in 1-%d", source,
                         archive_format_name(format), level, highest);
    int rc = archive_files_open(source, destination, &files, err);
    files.sync = true; /* a backup archive is kept */
    struct archive_writer writer = {.fd = files.out, .path = destination, .digest = &files.digest};
    if (rc == 0 && options && options->recipient_count > 0)
        rc = age_encryptor_new(options->recipients, options->recipient_count,
                               archive_writer_store, &writer, &writer.encryptor, err);
    if (rc == 0) {
        struct archive_pool pool;
        rc = archive_pool_start(&pool, format, level, io, options, err);
        if (rc == 0)
            rc = archive_compress_blocks(&pool, files.in, &writer, source, io, files.total,
                                         &local, err);
        archive_pool_stop(&pool);
    }
    age_encryptor_free(writer.encryptor);
    return archive_files_close(&files, destination, rc, &local, result, err);
}

/* One call of a codec's decode function: it consumes from
 * input[position, size) and fills output[0, produced). */
struct archive_decode_step {
    unsigned char *input;
    size_t size, position;
    unsigned char *output;
    size_t capacity, produced;
    bool unit_open; /* a gzip member or zstd frame has begun and not ended */
};

/* What a codec adds to archive_decode_stream: the sizes of its fixed stream
 * buffers and one step of decoding, returning 0 or a negative code with err
 * set. The caller starts and ends the codec's state. */
struct archive_decoder {
    size_t input_capacity, output_capacity;
    void *state;
    int (*decode)(void *state, struct archive_decode_step *step, const char *source,
                  struct error *err);
};

/* The loop both codecs share: read, hash, decode, write, count, report.
 * The input may only end exactly where a member or frame ends. */
static int archive_decode_stream(const struct archive_decoder *decoder, struct archive_input *in,
                                 const struct archive_sink *sink, const char *source,
                                 const struct io_context *io, int64_t total,
                                 struct archive_result *result, struct error *err)
{
    unsigned char *input = malloc(decoder->input_capacity);
    unsigned char *output = malloc(decoder->output_capacity);
    struct archive_decode_step step = {
        .input = input, .output = output, .capacity = decoder->output_capacity};
    bool saw_unit = false;
    int64_t reported = 0;
    int rc = 0;

    if (!input || !output) {
        rc = error_set(err, -ENOMEM, "cannot decompress %s: out of memory", source);
        goto out;
    }
    for (;;) {
        if (io_stopped(io)) {
            rc = error_set(err, -ECANCELED, "decompressing %s was cancelled", source);
            goto out;
        }
        if (step.position == step.size) {
            ssize_t got = archive_input_read(in, input, decoder->input_capacity, err);
            if (got < 0) {
                rc = (int)got;
                goto out;
            }
            if (got == 0)
                break;
            result->input_bytes = in->stored_bytes;
            step.position = 0;
            step.size = (size_t)got;
        }
        rc = decoder->decode(decoder->state, &step, source, err);
        if (rc < 0)
            goto out;
        saw_unit = true;
        if ((rc = archive_sink_write(sink, output, step.produced, err)) < 0)
            goto out;
        result->output_bytes += (int64_t)step.produced;
        if (result->input_bytes - reported >= ARCHIVE_PROGRESS_BYTES) {
            reported = result->input_bytes;
            io_report_progress(io, reported, total);
        }
    }
    if (!saw_unit)
        rc = error_set(err, -EBADMSG, "archive %s is truncated or corrupt: it is empty", source);
    else if (step.unit_open)
        rc = error_set(err, -EBADMSG, "archive %s is truncated or corrupt: unexpected end of file",
                       source);
    else
        io_report_progress(io, result->input_bytes, total);

out:
    free(input);
    free(output);
    return rc;
}

static int archive_unzstd_step(void *state, struct archive_decode_step *step, const char *source,
                               struct error *err)
{
    ZSTD_inBuffer input = {step->input, step->size, step->position};
    ZSTD_outBuffer output = {step->output, step->capacity, 0};
    size_t z = ZSTD_decompressStream(state, &output, &input);
    if (ZSTD_isError(z))
        return error_set(err, -EBADMSG, "archive %s is truncated or corrupt: %s", source,
                         ZSTD_getErrorName(z));
    step->position = input.pos;
    step->produced = output.pos;
    step->unit_open = z != 0; /* 0: a frame ended here and everything it held is out */
    return 0;
}

/* Decompresses every zstd frame of `in` into `sink`. */
static int archive_unzstd_frames(struct archive_input *in, const struct archive_sink *sink,
                                 const char *source, const struct io_context *io, int64_t total,
                                 struct archive_result *result, struct error *err)
{
    ZSTD_DStream *stream = ZSTD_createDStream();
    struct archive_decoder decoder = {ZSTD_DStreamInSize(), ZSTD_DStreamOutSize(), stream,
                                      archive_unzstd_step};

    if (!stream)
        return error_set(err, -ENOMEM, "cannot decompress %s: out of memory", source);
    int rc = archive_decode_stream(&decoder, in, sink, source, io, total, result, err);
    ZSTD_freeDStream(stream);
    return rc;
}

/* zstd frames start with 28 b5 2f fd; anything else goes to zlib, which
 * says what is wrong with it. */
static int archive_is_zstd(struct archive_input *in, bool *zstd, struct error *err)
{
    unsigned char magic[4];
    bool have = false;
    int rc = archive_input_peek(in, magic, sizeof magic, &have, err);
    *zstd = have && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd;
    return rc;
}

/* Opens, hashes and decrypts `source` and decodes it, zstd or gzip, into
 * the file `destination` or, when it is NULL, into `consume`. */
static int archive_decode(const char *source, const char *destination, archive_consumer consume,
                          void *context, const struct archive_keys *keys,
                          const struct io_context *io, struct archive_result *result,
                          struct error *err)
{
    struct archive_result local = {0};
    struct archive_files files;
    struct archive_input input = {.fd = -1};
    bool zstd = false;

    int rc = archive_files_open(source, destination, &files, err);
    struct archive_sink sink = {
        .fd = files.out, .name = destination, .consume = consume, .context = context};
    if (rc == 0)
        rc = archive_input_open(&input, files.in, source, result ? &files.digest : NULL, keys, err);
    if (rc == 0)
        rc = archive_is_zstd(&input, &zstd, err);
    if (rc == 0 && zstd)
        rc = archive_unzstd_frames(&input, &sink, source, io, files.total, &local, err);
    else if (rc == 0)
        rc = archive_inflate_members(&input, &sink, source, io, files.total, &local, err);
    archive_input_close(&input);
    return archive_files_close(&files, destination, rc, &local, result, err);
}

int archive_decompress(const char *source, const char *destination, const struct archive_keys *keys,
                       const struct io_context *io, struct archive_result *result,
                       struct error *err)
{
    return archive_decode(source, destination, NULL, NULL, keys, io, result, err);
}

int archive_decompress_into(const char *source, archive_consumer consume, void *context,
                            const struct archive_keys *keys, const struct io_context *io,
                            struct archive_result *result, struct error *err)
{
    return archive_decode(source, NULL, consume, context, keys, io, result, err);
}

static int archive_discard(void *context, const void *data, size_t size, struct error *err)
{
    (void)context, (void)data, (void)size, (void)err;
    return 0;
}

int archive_check(const char *source, const struct archive_keys *keys, const struct io_context *io,
                  struct archive_result *result, struct error *err)
{
    return archive_decode(source, NULL, archive_discard, NULL, keys, io, result, err);
}

int archive_sha256_file(const char *path, char hex[ARCHIVE_SHA256_HEX], struct error *err)
{
    int in = -1;
    int64_t size = 0;

    hex[0] = '\0';
    int rc = archive_open_source(path, &in, &size, err);
    if (rc == 0 && (rc = io_sha256_fd(in, NULL, hex)) < 0)
        error_set(err, rc, "cannot hash %s: %s", path, strerror(-rc));
    if (in >= 0)
        close(in);
    return rc;
}
