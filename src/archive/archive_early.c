/*
 * archive_early.c: compressing the blocks of a copy that VACUUM INTO has
 * written far enough past, into a spool, for archive.c to take later (see
 * archive_early.h for the rules that keep the archive exact).
 *
 * Block 0 is never compressed early: it holds page 1 and the root pages,
 * which SQLite rewrites until the copy is committed.
 */
#include "archive/archive_early.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive_internal.h"
#include "core/io.h"
#include "core/priority.h"

_Static_assert(ARCHIVE_BLOCK_BYTES == COPY_WATCH_BLOCK_BYTES,
               "the watch must hand out the blocks archive.c compresses");

struct early_member {
    int64_t spool_offset;
    uint32_t size; /* 0: none */
    uint32_t crc;  /* of the block as it was compressed */
};

struct archive_early {
    char *source;
    struct copy_watch *watch;
    const volatile sig_atomic_t *stop;
    bool background;
    enum archive_format format;
    int level;
    int spool;
    struct early_member *members; /* indexed by block number */
    uint64_t member_count;
    pthread_t thread;
    bool thread_started;
    uint64_t compressed, rewritten;
    atomic_uint_fast64_t taken, mismatched;
};

static bool early_keep(struct archive_early *early, uint64_t block, int64_t offset, size_t size,
                       uint32_t crc)
{
    if (block >= early->member_count) {
        uint64_t count = block * 2 + 16;
        struct early_member *grown = realloc(early->members, count * sizeof *grown);
        if (!grown)
            return false;
        memset(grown + early->member_count, 0, (count - early->member_count) * sizeof *grown);
        early->members = grown;
        early->member_count = count;
    }
    early->members[block] = (struct early_member){offset, (uint32_t)size, crc};
    early->compressed++;
    return true;
}

/* Any failure here only ends early compression: archive.c compresses
 * whatever has no member. */
static void *early_run(void *argument)
{
    struct archive_early *early = argument;
    struct archive_codec codec;
    unsigned char *input = malloc(ARCHIVE_BLOCK_BYTES);
    unsigned char *output = NULL;
    int64_t spool_end = 0;
    int source = -1;

    if (early->background)
        priority_lower_this_thread();
    if (archive_codec_init(&codec, early->format, early->level) == 0)
        output = malloc(codec.output_capacity);
    for (uint64_t block = 1; input && output && !(early->stop && *early->stop); block++) {
        if (!copy_watch_claim(early->watch, block))
            break;
        /* Opened late: the file exists once the watch saw a write. */
        if (source < 0 && (source = open(early->source, O_RDONLY | O_CLOEXEC)) < 0)
            break;
        if (io_pread_full(source, input, ARCHIVE_BLOCK_BYTES,
                          (int64_t)block * ARCHIVE_BLOCK_BYTES) != 0)
            break;
        uint32_t crc = archive_block_crc(input, ARCHIVE_BLOCK_BYTES);
        size_t size = archive_codec_compress(&codec, input, ARCHIVE_BLOCK_BYTES, output,
                                             codec.output_capacity);
        if (size == 0 || io_pwrite_full(early->spool, output, size, spool_end) != 0 ||
            !early_keep(early, block, spool_end, size, crc))
            break;
        spool_end += (int64_t)size;
    }
    if (source >= 0)
        close(source);
    archive_codec_free(&codec);
    free(output);
    free(input);
    return NULL;
}

int archive_early_start(const char *source, const char *spool_directory, struct copy_watch *watch,
                        enum archive_format format, int level, const struct io_context *io,
                        struct archive_early **out, struct error *err)
{
    struct archive_early *early = calloc(1, sizeof *early);
    *out = NULL;
    if (!early || !(early->source = strdup(source))) {
        free(early);
        return error_set(err, -ENOMEM, "cannot compress %s early: out of memory", source);
    }
    early->watch = watch;
    early->stop = io ? io->stop : NULL;
    early->background = io && io->background;
    early->format = format;
    early->level = level;
    /* O_TMPFILE: a file without a name, so nothing is left behind, ever. */
    early->spool = open(spool_directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (early->spool < 0) {
        int saved = errno;
        archive_early_free(early);
        return error_set(err, -saved, "cannot create a spool file in %s: %s", spool_directory,
                         strerror(saved));
    }

    int rc = io_thread_start(&early->thread, early_run, early);
    if (rc != 0) {
        archive_early_free(early);
        return error_set(err, rc, "cannot start early compression: %s", strerror(-rc));
    }
    early->thread_started = true;
    *out = early;
    return 0;
}

void archive_early_finish(struct archive_early *early)
{
    if (!early || !early->thread_started)
        return;
    pthread_join(early->thread, NULL);
    early->thread_started = false;
    for (uint64_t block = 0; block < early->member_count; block++) {
        if (early->members[block].size && copy_watch_changed(early->watch, block)) {
            early->members[block].size = 0;
            early->rewritten++;
        }
    }
}

void archive_early_get_stats(const struct archive_early *early, struct archive_early_stats *stats)
{
    *stats = (struct archive_early_stats){0};
    if (!early)
        return;
    stats->compressed = early->compressed;
    stats->rewritten = early->rewritten;
    stats->taken = atomic_load(&early->taken);
    stats->mismatched = atomic_load(&early->mismatched);
}

void archive_early_free(struct archive_early *early)
{
    if (!early)
        return;
    if (early->thread_started) {
        copy_watch_end(early->watch);
        archive_early_finish(early);
    }
    if (early->spool >= 0)
        close(early->spool);
    free(early->members);
    free(early->source);
    free(early);
}

size_t archive_early_take(struct archive_early *early, enum archive_format format, int level,
                          uint64_t block, const unsigned char *input, size_t size,
                          unsigned char *output, size_t capacity)
{
    if (early->thread_started || format != early->format || level != early->level ||
        block >= early->member_count || size != ARCHIVE_BLOCK_BYTES)
        return 0;
    const struct early_member *member = &early->members[block];
    if (member->size == 0 || member->size > capacity)
        return 0;
    if (archive_block_crc(input, size) != member->crc) {
        atomic_fetch_add(&early->mismatched, 1);
        return 0;
    }
    if (io_pread_full(early->spool, output, member->size, member->spool_offset) != 0)
        return 0;
    /* Give the space back at once: the archive grows while the spool shrinks,
     * so early compression needs no more disk at its peak than without it. */
    fallocate(early->spool, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, member->spool_offset,
              member->size);
    atomic_fetch_add(&early->taken, 1);
    return member->size;
}
