/*
 * replica_apply.c: the WAL of a restore's chain of generations applied to
 * the output (replica_internal.h), batch by batch: each batch of segments
 * fetched on a thread while the one before is inflated (whole by
 * libdeflate, or by zlib's stream) into the sink of its generation, the
 * direct apply (wal_apply.h) or a WAL file that SQLite replays.
 */
#include "restore/replica_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "archive/sealed.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "replicate/wal.h"
#include "replicate/wal_apply.h"

/* ---- inflating segments into a sink ---- */

/* Where a generation's inflated WAL goes: appended to a WAL file that
 * SQLite replays, or fed to the direct apply (wal_apply.h). */
struct replica_sink {
    int fd;                  /* the WAL file, or -1 */
    struct wal_apply *apply; /* or the apply */
};

static int replica_sink_write(const struct replica_sink *sink, const unsigned char *bytes,
                              size_t size, const char *key, struct error *err)
{
    if (sink->apply)
        return wal_apply_feed(sink->apply, bytes, size, err);
    int rc = io_write_full(sink->fd, bytes, size);
    if (rc != 0)
        return error_set(err, rc, "writing the WAL rebuilt from %s: %s", key, strerror(-rc));
    return 0;
}

/* A segment's gzip members inflated into the sink, fed from a file or from
 * a decrypted buffer alike. */
struct replica_inflater {
    z_stream z;
    unsigned char *out;
    bool begun, ended;
    const struct replica_sink *sink;
    uint64_t *written; /* bytes given to it */
    const char *key;   /* the object, for messages */
};

static void replica_inflater_begin(struct replica_inflater *f, const char *key,
                                   const struct replica_sink *sink, uint64_t *written)
{
    *f = (struct replica_inflater){.sink = sink, .written = written, .key = key};
}

/* zlib's stream, set up when a segment first needs it: one inflated whole
 * by libdeflate never does. */
static int replica_inflater_ready(struct replica_inflater *f, struct error *err)
{
    if (f->begun)
        return 0;
    if (!f->out && !(f->out = malloc(REPLICA_BUFFER)))
        return error_set(err, -ENOMEM, "out of memory");
    if (inflateInit2(&f->z, 16 + MAX_WBITS) != Z_OK)
        return error_set(err, -ENOMEM, "zlib: out of memory");
    f->begun = true;
    return 0;
}

/* Feeds `size` bytes; members follow one another (RFC 1952). zlib may hold
 * output back while the buffer is full, so it is asked again then. */
static int replica_inflater_feed(struct replica_inflater *f, const unsigned char *in, size_t size,
                                 struct error *err)
{
    bool full = false;
    int rc = replica_inflater_ready(f, err);
    if (rc != 0)
        return rc;
    f->z.next_in = (Bytef *)in;
    f->z.avail_in = (uInt)size;
    while (f->z.avail_in > 0 || full) {
        if (f->ended) { /* another member follows */
            inflateReset(&f->z);
            f->ended = false;
        }
        f->z.next_out = f->out;
        f->z.avail_out = REPLICA_BUFFER;
        int zrc = inflate(&f->z, Z_NO_FLUSH);
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
            return error_set(err, -EBADMSG, "%s is not a valid gzip stream: %s", f->key,
                             f->z.msg ? f->z.msg : "inflate failed");
        size_t produced = REPLICA_BUFFER - f->z.avail_out;
        rc = produced ? replica_sink_write(f->sink, f->out, produced, f->key, err) : 0;
        if (rc != 0)
            return rc;
        *f->written += produced;
        full = f->z.avail_out == 0;
        if (zrc == Z_STREAM_END) {
            f->ended = true;
            full = false;
        } else if (produced == 0 && zrc == Z_BUF_ERROR) {
            break; /* nothing more without input */
        }
    }
    return 0;
}

static int replica_inflater_end(struct replica_inflater *f, int rc, struct error *err)
{
    if (rc == 0 && !f->ended)
        rc = error_set(err, -EBADMSG, "%s ends inside a gzip member: the object is truncated",
                       f->key);
    if (f->begun)
        inflateEnd(&f->z);
    free(f->out);
    return rc;
}

/* A plain segment, streamed from its file. */
static int replica_inflate_file(struct replica_inflater *f, const char *path, struct error *err)
{
    unsigned char *in = malloc(REPLICA_BUFFER);
    int input = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    if (!in)
        rc = error_set(err, -ENOMEM, "out of memory");
    else if (input < 0)
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
    while (rc == 0) {
        ssize_t got = io_read_full(input, in, REPLICA_BUFFER);
        if (got < 0)
            rc = error_set(err, (int)got, "%s: %s", path, strerror((int)-got));
        if (got <= 0)
            break;
        rc = replica_inflater_feed(f, in, (size_t)got, err);
    }
    if (input >= 0)
        close(input);
    free(in);
    return rc;
}

static bool replica_whole_grow(unsigned char **buffer, size_t *capacity, size_t size)
{
    if (size <= *capacity)
        return true;
    unsigned char *bigger = realloc(*buffer, size);
    if (!bigger)
        return false;
    *buffer = bigger;
    *capacity = size;
    return true;
}

/* Inflates `packed` (gzip members) whole into exactly `raw_size` bytes and
 * gives them to the sink: 1 when done, 0 when the caller must use zlib's
 * stream instead (no memory, or libdeflate refused: the stream's words then
 * name what is wrong, and a size other than the name's is reported by the
 * caller as for any segment), or the sink's error. */
static int replica_whole_inflate(struct replica_whole *w, struct replica_inflater *f,
                                 const unsigned char *packed, size_t size, size_t raw_size,
                                 struct error *err)
{
    if (raw_size == 0 || raw_size > REPLICA_WHOLE_BYTES)
        return 0;
    if (!w->decompressor && !(w->decompressor = libdeflate_alloc_decompressor()))
        return 0;
    if (!replica_whole_grow(&w->raw, &w->raw_capacity, raw_size))
        return 0;
    size_t in = 0, out = 0;
    while (in < size) {
        size_t used = 0, made = 0;
        if (libdeflate_gzip_decompress_ex(w->decompressor, packed + in, size - in, w->raw + out,
                                          raw_size - out, &used, &made) != LIBDEFLATE_SUCCESS ||
            used == 0)
            return 0;
        in += used;
        out += made;
    }
    if (out != raw_size)
        return 0;
    int rc = replica_sink_write(f->sink, w->raw, out, f->key, err);
    if (rc != 0)
        return rc;
    *f->written += out;
    f->ended = true;
    return 1;
}

/* A plain segment read whole into memory when it and its WAL fit
 * REPLICA_WHOLE_BYTES; 0 when the stream must do it. */
static int replica_inflate_whole_file(struct replica_whole *w, struct replica_inflater *f,
                                      const char *path, size_t raw_size, struct error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 ||
        (uint64_t)st.st_size + raw_size > REPLICA_WHOLE_BYTES ||
        !replica_whole_grow(&w->packed, &w->packed_capacity, (size_t)st.st_size) ||
        io_read_full(fd, w->packed, (size_t)st.st_size) != st.st_size)
        rc = 0;
    else
        rc = replica_whole_inflate(w, f, w->packed, (size_t)st.st_size, raw_size, err);
    if (fd >= 0)
        close(fd);
    return rc;
}

void replica_whole_free(struct replica_whole *w)
{
    if (w->decompressor)
        libdeflate_free_decompressor(w->decompressor);
    free(w->packed);
    free(w->raw);
    memset(w, 0, sizeof *w);
}

/* A sealed segment: read whole (a segment is at most 16 MiB of WAL, less
 * once gzip'd), opened only if every chunk authenticates, then inflated. */
static int replica_inflate_sealed(struct replica_whole *w, struct replica_inflater *f,
                                  const char *path, const struct archive_keys *keys,
                                  size_t raw_size, struct error *err)
{
    char *sealed = NULL;
    unsigned char *plain = NULL;
    size_t sealed_size = 0, plain_size = 0;
    int rc = fs_read_file(path, &sealed, &sealed_size, err);
    if (rc == 0)
        rc = sealed_open_buffer(sealed, sealed_size, keys, f->key, &plain, &plain_size, err);
    if (rc == 0)
        rc = replica_whole_inflate(w, f, plain, plain_size, raw_size, err);
    if (rc == 0)
        rc = replica_inflater_feed(f, plain, plain_size, err);
    else if (rc == 1)
        rc = 0;
    free(sealed);
    free(plain);
    return rc;
}

/* Whether a fetched object is an age file: by its name, or by its first
 * bytes (a sealed object under a plain name is still opened, not inflated
 * into an error about gzip). */
static bool replica_object_sealed(const char *key, const char *path)
{
    size_t length = strlen(key), suffix = strlen(SEALED_SUFFIX);
    if (length > suffix && strcmp(key + length - suffix, SEALED_SUFFIX) == 0)
        return true;
    unsigned char head[SEALED_MAGIC_PEEK];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? io_read_full(fd, head, sizeof head) : -1;
    if (fd >= 0)
        close(fd);
    return got > 0 && sealed_is_age(head, (size_t)got);
}

/* Inflates every gzip member of the object fetched to `path` (decrypted
 * first when sealed) into `sink`; *written counts the bytes. `raw_size`,
 * the WAL bytes its name says it holds, decides whether it is inflated
 * whole (replica_whole) or streamed. */
static int replica_inflate_append(struct replica_work *work, const char *path, const char *key,
                                  size_t raw_size, const struct replica_sink *sink,
                                  uint64_t *written, struct error *err)
{
    struct replica_inflater f;
    int rc;
    replica_inflater_begin(&f, key, sink, written);
    if (replica_object_sealed(key, path)) {
        rc = replica_inflate_sealed(&work->whole, &f, path, &work->request->keys, raw_size, err);
    } else {
        rc = replica_inflate_whole_file(&work->whole, &f, path, raw_size, err);
        if (rc == 0)
            rc = replica_inflate_file(&f, path, err);
        else if (rc == 1)
            rc = 0;
    }
    return replica_inflater_end(&f, rc, err);
}

/* The segment holding byte `offset` of a generation's WAL, for messages. */
static const struct replica_segment *replica_segment_at(const struct replica_generation *g,
                                                        uint64_t offset)
{
    for (size_t i = 0; i < g->used_segments; i++)
        if (offset < g->segments[i].end)
            return &g->segments[i];
    return &g->segments[g->used_segments - 1];
}

/* ---- applying the chain: a batch fetched ahead while one is applied ---- */

/* One batch of a generation's segments: fetched (in parallel, on a thread
 * of its own) while the main thread inflates and applies the one before. */
struct replica_batch {
    struct replica_work *work;
    struct replica_generation *g;
    size_t first, count;
    struct replica_job *jobs;
    pthread_t thread;
    bool running;
    int rc;
    struct error err;
};

static void *replica_batch_fetch(void *argument)
{
    struct replica_batch *b = argument;
    b->rc = replica_fetch_all(b->work, b->jobs, b->count, &b->err);
    if (b->rc == -ENOENT)
        error_prefix(&b->err, "an object of the replica is missing: ");
    return NULL;
}

/* Names the batch's objects and starts fetching them; on the calling
 * thread when no thread can be started. Temp names are taken here, on the
 * main thread, never while another batch's fetch could take one. */
static void replica_batch_start(struct replica_batch *b)
{
    struct replica_work *work = b->work;
    const struct replica_generation *g = b->g;
    for (size_t k = 0; k < b->count; k++) {
        const struct replica_segment *s = &g->segments[b->first + k];
        memset(&b->jobs[k], 0, sizeof b->jobs[k]);
        replica_segment_key(work, g, s, SEGMENT_SUFFIX(s), b->jobs[k].key);
        b->jobs[k].sha256 = s->sha256;
        b->jobs[k].size = s->size;
        replica_temp_path(work, "segment", b->jobs[k].path);
    }
    error_clear(&b->err);
    b->running = io_thread_start(&b->thread, replica_batch_fetch, b) == 0;
    if (!b->running)
        replica_batch_fetch(b);
}

static void replica_batch_wait(struct replica_batch *b)
{
    if (b->running)
        pthread_join(b->thread, NULL);
    b->running = false;
}

static void replica_batch_remove(struct replica_batch *b)
{
    for (size_t k = 0; k < b->count; k++)
        unlink(b->jobs[k].path);
    b->count = 0;
}

/* Each segment's sidecar names the salts of the generation's header: a
 * segment of another generation (or WAL) put under this name is refused. */
static int replica_check_salts(const struct replica_work *work, const struct replica_generation *g,
                               const struct replica_segment *s, const struct wal_header *header,
                               struct error *err)
{
    if (s->salt[0] == header->salt[0] && s->salt[1] == header->salt[1])
        return 0;
    return error_set(err, -EBADMSG,
                     "%s belongs to a WAL with salts %08x,%08x, the header of generation %s "
                     "(in %s) has %08x,%08x",
                     SIDECAR_KEY(s), s->salt[0], s->salt[1], g->window.name,
                     SEGMENT_KEY(&g->segments[0]), header->salt[0], header->salt[1]);
}

/* The chain stopped at `next` (why: `stop`) before the commit the sidecars
 * say it reaches. */
static int replica_chain_stops(const struct replica_work *work, const struct replica_generation *g,
                               const struct wal_position *next, enum wal_stop stop,
                               struct error *err)
{
    uint64_t at = next->offset;
    return error_set(err, -EBADMSG,
                     "the WAL chain of generation %s breaks at byte %llu (%s, frame %llu), in "
                     "%s; the sidecars say commits reach byte %llu (frame %llu): the object is "
                     "damaged, restore to a time before it",
                     g->window.name, (unsigned long long)at, wal_stop_name(stop),
                     (unsigned long long)next->frame_index + 1,
                     SEGMENT_KEY(replica_segment_at(g, at)),
                     (unsigned long long)g->target.end_offset, (unsigned long long)g->target.frame);
}

/* The chain's last commit is the one the last sidecar ends with. */
static int replica_check_end(const struct replica_work *work, const struct replica_generation *g,
                             const struct wal_position *committed, struct error *err)
{
    const struct replica_segment *last = &g->segments[g->used_segments - 1];
    if (last->end != g->target.end_offset || (committed->checksum[0] == last->checksum[0] &&
                                              committed->checksum[1] == last->checksum[1]))
        return 0;
    return error_set(err, -EBADMSG,
                     "the WAL chain of generation %s ends with checksum %08x,%08x, %s says "
                     "%08x,%08x: the segments are not the ones shipped",
                     g->window.name, committed->checksum[0], committed->checksum[1],
                     SIDECAR_KEY(last), last->checksum[0], last->checksum[1]);
}

/* The whole chain from the header: every frame up to the cut accepted, and
 * the cut the end of a commit. */
static int replica_check_chain(const struct replica_work *work, const char *wal_path,
                               const struct replica_generation *g, uint64_t *frames,
                               struct error *err)
{
    struct wal_reader reader;
    int fd = open(wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(err, -errno, "%s: %s", wal_path, strerror(errno));
    int rc = wal_reader_open(&reader, fd, wal_path, err);
    if (rc != 0) {
        error_prefix(err, "the WAL header in %s: ", SEGMENT_KEY(&g->segments[0]));
        close(fd);
        return rc == -ENODATA ? -EBADMSG : rc;
    }
    wal_reader_read_ahead(&reader, REPLICA_READ_AHEAD);
    rc = wal_reader_scan(&reader, err);
    for (size_t i = 0; i < g->used_segments && rc == 0; i++)
        rc = replica_check_salts(work, g, &g->segments[i], &reader.header, err);
    if (rc == 0 && (reader.committed.offset != g->target.end_offset ||
                    reader.committed.frame_index != g->target.frame))
        rc = replica_chain_stops(work, g, &reader.next, reader.stop, err);
    if (rc == 0)
        rc = replica_check_end(work, g, &reader.committed, err);
    *frames = reader.committed.frame_index;
    wal_reader_close(&reader);
    close(fd);
    return rc;
}

/* SQLite replays the WAL on open; TRUNCATE copies every frame into the file. */
static int replica_replay(const char *output, const struct replica_generation *g, uint64_t frames,
                          struct error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *statement = NULL;
    int rc = 0;
    if (sqlite3_open_v2(output, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = error_set(err, -EIO, "cannot open %s to replay generation %s: %s", output,
                       g->window.name, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &statement, NULL) !=
            SQLITE_OK ||
        sqlite3_step(statement) != SQLITE_ROW) {
        rc = error_set(err, -EIO, "replaying generation %s into %s: %s", g->window.name, output,
                       sqlite3_errmsg(db));
        goto out;
    }
    int busy = sqlite3_column_int(statement, 0);
    int64_t log = sqlite3_column_int64(statement, 1), done = sqlite3_column_int64(statement, 2);
    sqlite3_finalize(statement);
    statement = NULL;
    /* TRUNCATE reports 0/0 once it emptied the log: ask what the header says. */
    if (busy != 0 || (log != 0 && log != done)) {
        rc = error_set(err, -EIO,
                       "replaying generation %s: SQLite checkpointed %lld of %lld frames (busy "
                       "%d)",
                       g->window.name, (long long)done, (long long)log, busy);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &statement, NULL) != SQLITE_OK ||
        sqlite3_step(statement) != SQLITE_ROW) {
        rc = error_set(err, -EIO, "%s: %s", output, sqlite3_errmsg(db));
        goto out;
    }
    int64_t pages = sqlite3_column_int64(statement, 0);
    if (pages != g->target.db_pages)
        rc =
            error_set(err, -EBADMSG,
                      "after generation %s (%llu frames) %s has %lld pages, the sidecar's db_pages "
                      "says %u: SQLite did not replay the whole WAL",
                      g->window.name, (unsigned long long)frames, output, (long long)pages,
                      g->target.db_pages);
out:
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return rc;
}

/*
 * One generation being applied, in one of two ways:
 *   - pages (the default; docs/replication-design.md 2.5.4, wal_apply.h):
 *     what SQLite's checkpoint does without its WAL index and without a WAL
 *     file: each segment is inflated straight into the database file, frame
 *     by frame as the chain accepts them up to the cut, then the file is
 *     cut to the commit's size. Each byte of WAL is inflated and read once,
 *     and a chain that breaks is named as the segment holding it ends;
 *   - sqlite: the generation's WAL built as OUTPUT-wal, its chain checked,
 *     then checkpointed by SQLite (TRUNCATE).
 */
struct replica_stage {
    struct replica_generation *g;
    struct replica_sink sink;
    struct wal_apply apply;
    int out;                     /* pages: the database file */
    char wal_path[PATH_MAX + 8]; /* sqlite: OUTPUT-wal */
    uint64_t written;            /* bytes of WAL inflated */
};

static int replica_stage_begin(struct replica_work *work, struct replica_generation *g,
                               struct replica_stage *stage, struct error *err)
{
    const char *output = work->request->output;
    *stage = (struct replica_stage){.g = g, .out = -1, .sink = {.fd = -1}};
    if (work->request->apply == REPLICA_APPLY_PAGES) {
        if ((stage->out = open(output, O_WRONLY | O_CLOEXEC)) < 0)
            return error_set(err, -errno, "%s: %s", output, strerror(errno));
        stage->sink.apply = &stage->apply;
        return wal_apply_begin(&stage->apply, stage->out, g->target.frame, g->target.db_pages, err);
    }
    snprintf(stage->wal_path, sizeof stage->wal_path, "%s-wal", output);
    unlink(stage->wal_path);
    stage->sink.fd = open(stage->wal_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (stage->sink.fd < 0)
        return error_set(err, -errno, "%s: %s", stage->wal_path, strerror(errno));
    return 0;
}

/* A fetched batch, in order, into the stage's sink. */
static int replica_stage_feed(struct replica_work *work, struct replica_stage *stage,
                              const struct replica_batch *b, struct error *err)
{
    const struct replica_generation *g = stage->g;
    const struct replica_sink *sink = &stage->sink;
    const struct wal_apply *apply = sink->apply;
    int rc = 0;
    for (size_t k = 0; k < b->count && rc == 0; k++) {
        const struct replica_segment *s = &g->segments[b->first + k];
        const struct replica_job *job = &b->jobs[k];
        uint64_t before = stage->written;
        rc = replica_inflate_append(work, job->path, job->key, (size_t)(s->end - s->start), sink,
                                    &stage->written, err);
        unlink(job->path);
        if (rc == -EBADMSG && apply && apply->bad_frame)
            rc = error_set(err, -EBADMSG,
                           "the commit frame %llu of generation %s says %u pages, the "
                           "sidecar's db_pages says %u: the sidecar does not describe this WAL",
                           (unsigned long long)apply->bad_frame, g->window.name, apply->bad_pages,
                           g->target.db_pages);
        if (rc == -EINVAL && apply && !apply->have_header) {
            error_prefix(err, "the WAL header in %s: ", SEGMENT_KEY(&g->segments[0]));
            rc = -EBADMSG;
        }
        if (rc == 0 && stage->written - before != s->end - s->start)
            rc = error_set(err, -EBADMSG,
                           "%s holds %llu bytes of WAL, its name says %llu: the object is "
                           "damaged",
                           job->key, (unsigned long long)(stage->written - before),
                           (unsigned long long)(s->end - s->start));
        if (rc == 0 && apply && apply->have_header)
            rc = replica_check_salts(work, g, s, &apply->header, err);
        if (rc == 0 && apply && apply->stop != WAL_STOP_NONE && !apply->reached)
            rc = replica_chain_stops(work, g, &apply->next, apply->stop, err);
    }
    return rc;
}

/* The generation's last checks, then the file cut (pages) or the WAL
 * replayed (sqlite). With rc != 0, only cleans up. */
static int replica_stage_end(struct replica_work *work, struct replica_stage *stage, int rc,
                             struct error *err)
{
    const struct replica_generation *g = stage->g;
    const char *output = work->request->output;
    if (stage->sink.apply) {
        struct wal_apply *apply = &stage->apply;
        if (rc == 0) {
            wal_apply_finish(apply);
            if (!apply->have_header)
                rc = error_set(err, -EBADMSG,
                               "the WAL header in %s: holds %llu bytes, no complete WAL header",
                               SEGMENT_KEY(&g->segments[0]), (unsigned long long)apply->fed);
            else if (!apply->reached || apply->committed.offset != g->target.end_offset)
                rc = replica_chain_stops(work, g, &apply->next, apply->stop, err);
        }
        if (rc == 0)
            rc = replica_check_end(work, g, &apply->committed, err);
        if (rc == 0 &&
            ftruncate(stage->out, (off_t)g->target.db_pages * apply->header.page_size) != 0)
            rc = error_set(err, -errno, "%s: %s", output, strerror(errno));
        if (stage->out >= 0 && close(stage->out) != 0 && rc == 0)
            rc = error_set(err, -errno, "%s: %s", output, strerror(errno));
        wal_apply_end(apply);
        return rc;
    }
    uint64_t frames = 0;
    if (stage->sink.fd >= 0) {
        if (rc == 0 && ftruncate(stage->sink.fd, (off_t)g->target.end_offset) != 0)
            rc = error_set(err, -errno, "%s: %s", stage->wal_path, strerror(errno));
        if (close(stage->sink.fd) != 0 && rc == 0)
            rc = error_set(err, -errno, "%s: %s", stage->wal_path, strerror(errno));
    }
    if (rc == 0)
        rc = replica_check_chain(work, stage->wal_path, g, &frames, err);
    if (rc == 0)
        rc = replica_replay(output, g, frames, err);
    if (stage->wal_path[0])
        unlink(stage->wal_path);
    return rc;
}

/* The next batch after `b` in the chain (generations in order, at most
 * REPLICA_BATCH segments each, never across generations); false at the end. */
static bool replica_batch_next(struct replica_work *work, const struct replica_batch *b,
                               struct replica_batch *next)
{
    size_t i = b->g ? (size_t)(b->g - work->chain) : 0;
    size_t first = b->g ? b->first + b->count : 0;
    while (i < work->chain_count && !work->chain[i].base_only) {
        struct replica_generation *g = &work->chain[i];
        if (first < g->used_segments) {
            size_t count = g->used_segments - first;
            next->g = g;
            next->first = first;
            next->count = count > REPLICA_BATCH ? REPLICA_BATCH : count;
            return true;
        }
        i++;
        first = 0;
    }
    return false;
}

/* Every generation of the chain after the base, in order: while the main
 * thread inflates and applies one batch, the next is fetched. Disk holds
 * two batches, memory two batches of jobs. */
int replica_apply_chain(struct replica_work *work, struct replica_job *jobs[2],
                        struct replica_result *result, struct error *err)
{
    struct replica_batch batches[2] = {{.work = work, .jobs = jobs[0]},
                                       {.work = work, .jobs = jobs[1]}};
    struct replica_batch *current = &batches[0], *ahead = &batches[1];
    struct replica_stage stage = {0};
    bool staged = false, more = replica_batch_next(work, &(struct replica_batch){0}, current);
    int rc = 0;
    result->applied = work->request->apply;
    if (more)
        replica_batch_start(current);
    while (more && rc == 0) {
        replica_batch_wait(current);
        ahead->g = NULL;
        if (replica_batch_next(work, current, ahead))
            replica_batch_start(ahead);
        rc = current->rc;
        if (rc != 0)
            error_set(err, rc, "%s", current->err.message);
        if (rc == 0 && current->first == 0) {
            if (staged) {
                rc = replica_stage_end(work, &stage, rc, err);
                staged = false;
            }
            /* The page deltas that stand for the generations before it. */
            uint32_t number = 0;
            format_generation_parse(current->g->window.name, &number);
            if (rc == 0)
                rc = replica_apply_deltas(work, number, result, err);
            if (rc == 0) {
                rc = replica_stage_begin(work, current->g, &stage, err);
                staged = true;
            }
        }
        if (rc == 0)
            rc = replica_stage_feed(work, &stage, current, err);
        if (rc == 0 && current->first + current->count == current->g->used_segments) {
            result->segments += current->g->used_segments;
            result->commits += current->g->used_commits;
        }
        if (rc == 0 && work->request->stop && *work->request->stop)
            rc = error_set(err, -ECANCELED, "stopped by a signal");
        replica_batch_remove(current);
        more = ahead->g != NULL;
        struct replica_batch *swap = current;
        current = ahead;
        ahead = swap;
    }
    if (staged)
        rc = replica_stage_end(work, &stage, rc, err);
    /* A batch still fetched when something failed: it starts nothing more,
     * and its files go too. */
    if (rc != 0)
        work->abandoned = 1;
    replica_batch_wait(current);
    replica_batch_remove(current);
    return rc;
}
