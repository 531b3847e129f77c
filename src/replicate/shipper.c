/*
 * shipper.c: one database's WAL shipped to its target (shipper.h).
 *
 * Crash reasoning, step by step (design 2.4): a segment's bytes are a pure
 * function of its range (zlib at a fixed level, no name or time in the gzip
 * header), the spool file is fsynced and renamed before state.db records
 * it, and an object is put only from the queue state.db holds. A kill before
 * the record leaves a spool file no queue row names: replica_open removes it
 * and the next round makes it again, same name, same bytes. A kill after the
 * record leaves a queued object: it is put (again) by the next round.
 * A sealed object (encrypt.recipients, seal.h) is not a pure function of
 * its range (age draws a fresh file key each time), but nothing reaches
 * the target before it is recorded, and its sidecar, written beside it in
 * the same round, holds its sha256: a re-made object comes with its own.
 */
#include "replicate/shipper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "archive/archive.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/log.h"
#include "db/database.h"
#include "db/state.h"
#include "replicate/delta.h"
#include "replicate/delta_job.h"
#include "replicate/format.h"
#include "replicate/pin.h"
#include "replicate/seal.h"
#include "replicate/segment.h"
#include "replicate/wal.h"

#define SHIP_SEGMENT_MAX_BYTES   (16u << 20) /* a segment's raw WAL bytes, at most */
#define SHIP_SEGMENT_MAX_COMMITS 8192
#define SHIP_GZIP_LEVEL          6
/* The agent resets the WAL (losslessly) once it holds this much: about the
 * application's default autocheckpoint of 1000 pages of 4 KiB, which the
 * pin would otherwise keep from ever restarting the WAL. */
#define SHIP_RESET_WAL_BYTES (4 << 20)
/* Nothing new this long: the generation is ended (a lossless reset), so
 * that the pin sits on read mark 0, which no checkpoint waits for, and the
 * database needs no watching until one of its files changes. Tried again
 * after as long when other readers kept the end from being reached. */
#define SHIP_QUIET_AFTER_MS 10000

struct replica {
    const struct database_config *db;
    const volatile sig_atomic_t *stop;
    char wal_path[PATH_MAX];
    char spool[PATH_MAX];
    struct state *state; /* borrowed: the caller's thread's connection */
    struct pin pin; /* the read transaction that holds the WAL, and the files kept open */
    struct state_replica row;
    int64_t wal_size, wal_mtime_ns, db_mtime_ns; /* at the last round, for the idle test */
    bool not_wal;                                /* out of WAL mode, break already counted */
    bool spool_full;                             /* at spool_max: WAL let go, break counted */
    bool scheduled_base;                         /* take_base for snapshot_every, no break */
    bool based;                                  /* a base was taken this round */
    int64_t quiet_tried_ms;                      /* the last reset for quiet, or 0 */
    /* The row's `ended` was set by this process, which has held the pin
     * since: only then does a restarted or emptied WAL prove nothing was
     * written after the end shipped. After a restart of the agent the
     * application may have appended and restarted meanwhile. */
    bool end_trusted;
    /* The ended generation whose restart the pin has moved past (off read
     * mark 0: pin_past_end); 0: none. */
    uint32_t pin_past_end_of;
    /* Page deltas (delta.h): the span being gathered, and the one being
     * built on its own thread, if any. */
    struct delta_span span;
    struct delta_job *delta_job;
    struct delta_pages levels[DELTA_LEVELS - 1]; /* the job's while there is one */
    uint32_t chain_base; /* the generation of the last base taken; 0: none since start */
    bool delta_no_room;  /* said that the spool's disk has no room for them */
};

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- spool ---- */

struct spool_sweep {
    struct replica *replica;
    char **queued;
    size_t count, capacity;
};

static void spool_collect(void *context, const char *path)
{
    struct spool_sweep *sweep = context;
    if (sweep->count == sweep->capacity) {
        size_t capacity = sweep->capacity ? 2 * sweep->capacity : 16;
        char **grown = realloc(sweep->queued, capacity * sizeof *grown);
        if (!grown)
            return;
        sweep->queued = grown;
        sweep->capacity = capacity;
    }
    sweep->queued[sweep->count] = strdup(path);
    if (sweep->queued[sweep->count])
        sweep->count++;
}

/* Removes spool files no queued object names: what a kill left between
 * writing a spool file and recording it. They are made again. */
static int spool_clean(struct replica *r, struct error *err)
{
    struct spool_sweep sweep = {.replica = r};
    int rc = state_replica_queued_paths(r->state, spool_collect, &sweep, err);
    DIR *dir = rc == 0 ? opendir(r->spool) : NULL;
    struct dirent *entry;
    while (dir && (entry = readdir(dir)) != NULL) {
        char path[PATH_MAX];
        if (entry->d_name[0] == '.')
            continue;
        if (fs_join(path, sizeof path, r->spool, entry->d_name) != 0)
            continue;
        bool queued = false;
        for (size_t i = 0; i < sweep.count && !queued; i++)
            queued = strcmp(sweep.queued[i], path) == 0;
        if (!queued)
            unlink(path);
    }
    if (dir)
        closedir(dir);
    for (size_t i = 0; i < sweep.count; i++)
        free(sweep.queued[i]);
    free(sweep.queued);
    return rc;
}

/* ---- gzip of a segment, in memory ---- */

struct gzip_sink {
    z_stream z;
    uint8_t *out;
    size_t used, capacity;
    int failed;
};

static int gzip_sink_grow(struct gzip_sink *g)
{
    size_t capacity = g->capacity ? 2 * g->capacity : (1 << 16);
    uint8_t *grown = realloc(g->out, capacity);
    if (!grown)
        return -ENOMEM;
    g->out = grown;
    g->capacity = capacity;
    return 0;
}

static int gzip_sink_feed(struct gzip_sink *g, const uint8_t *bytes, size_t size, int flush)
{
    g->z.next_in = (Bytef *)bytes;
    g->z.avail_in = (uInt)size;
    for (;;) {
        if (g->capacity - g->used < 4096 && gzip_sink_grow(g) < 0)
            return -ENOMEM;
        g->z.next_out = g->out + g->used;
        g->z.avail_out = (uInt)(g->capacity - g->used);
        int zrc = deflate(&g->z, flush);
        g->used = g->capacity - g->z.avail_out;
        if (zrc == Z_STREAM_END)
            return 0;
        if (zrc != Z_OK && zrc != Z_BUF_ERROR)
            return -EIO;
        if (g->z.avail_in == 0 && flush == Z_NO_FLUSH)
            return 0;
    }
}

/* A segment's bytes to its gzip member and, while the span follows, to the
 * span too. A span that fails is dropped; the segment goes on. */
struct segment_sink {
    struct gzip_sink gzip;
    struct delta_span *span; /* NULL: not fed */
    const char *database;
};

static int segment_sink_write(void *context, const uint8_t *bytes, size_t size)
{
    struct segment_sink *sink = context;
    if (sink->span) {
        struct error err = {0};
        if (delta_span_feed(sink->span, bytes, size, &err) != 0) {
            log_event(LOG_WARNING, sink->database, "replicate",
                      "the page delta of generations %" PRIu32 "..%" PRIu32
                      " is given up (%s); the next generation starts another",
                      sink->span->first_generation, sink->span->generation, err.message);
            delta_span_drop(sink->span);
            sink->span = NULL;
        }
    }
    return gzip_sink_feed(&sink->gzip, bytes, size, Z_NO_FLUSH);
}

/* ---- helpers ---- */

static void position_from_row(const struct state_replica *row, struct wal_position *p)
{
    memset(p, 0, sizeof *p);
    p->offset = row->offset;
    p->frame_index = row->frame_index;
    p->checksum[0] = row->checksum[0];
    p->checksum[1] = row->checksum[1];
    p->salt[0] = row->salt[0];
    p->salt[1] = row->salt[1];
    p->page_size = row->page_size;
    p->checkpoint_sequence = row->checkpoint_sequence;
    p->big_endian_checksum = row->big_endian;
}

static void position_to_row(const struct wal_position *p, struct state_replica *row)
{
    row->offset = p->offset;
    row->frame_index = p->frame_index;
    row->checksum[0] = p->checksum[0];
    row->checksum[1] = p->checksum[1];
    row->salt[0] = p->salt[0];
    row->salt[1] = p->salt[1];
    row->page_size = p->page_size;
    row->checkpoint_sequence = p->checkpoint_sequence;
    row->big_endian = p->big_endian_checksum;
}

/* Whether the database file says WAL mode: bytes 18 and 19 of its header
 * are 2 in WAL mode, 1 in rollback-journal mode (fileformat2.html 1.3.4). */
static int database_is_wal_fd(int fd, bool *wal)
{
    uint8_t header[20];
    ssize_t got = io_read_full_at(fd, header, sizeof header, 0);
    if (got < 0)
        return (int)got;
    *wal = got == (ssize_t)sizeof header && header[18] == 2 && header[19] == 2;
    return 0;
}

int replica_check_database(const struct database_config *db, struct error *err)
{
    /* Through SQLite, not open(2): closing a descriptor of the file would
     * drop the locks of every connection of this process (pin.h). */
    sqlite3 *connection = NULL;
    char mode[32] = "";
    struct stat st;
    if (stat(db->path, &st) != 0)
        return 0; /* reported as missing elsewhere */
    int rc = database_open(db, true, NULL, &connection, err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode", mode, sizeof mode, err);
    sqlite3_close(connection);
    if (rc < 0)
        return rc;
    if (strcmp(mode, "wal") != 0)
        return error_set(err, -EINVAL,
                         "%s:%d: replicate.target: database \"%s\" (%s) is not in WAL mode: "
                         "only a WAL can be shipped (switch it: sqlite3 %s 'PRAGMA "
                         "journal_mode=WAL')",
                         db->replicate.origin.file ? db->replicate.origin.file : "?",
                         db->replicate.origin.line, db->name, db->path, db->path);
    return 0;
}

/* ---- shipping ---- */

/* The wall clock in milliseconds, rounded up: a seen_at is never before
 * the commit it stamps. */
static int64_t shipper_clock_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + (now.tv_nsec + 999999) / 1000000;
}

/* Whether the database path still names the file this generation follows. */
static bool same_database_file(const struct replica *r)
{
    struct stat st;
    return r->row.db_inode == 0 ||
           (stat(r->db->path, &st) == 0 && (uint64_t)st.st_ino == r->row.db_inode &&
            (uint64_t)st.st_dev == r->row.db_device);
}

/* With recipients, the gzip member is sealed in memory: the spool never
 * holds the plaintext of an encrypted replica. *data is replaced. */
static int seal_segment(const struct sealed_recipients *recipients, uint8_t **data, size_t *size,
                        struct error *err)
{
    unsigned char *sealed = NULL;
    size_t sealed_size = 0;
    if (recipients->count == 0)
        return 0;
    int rc = sealed_seal_buffer(*data, *size, recipients, &sealed, &sealed_size, err);
    if (rc < 0)
        return rc;
    free(*data);
    *data = sealed;
    *size = sealed_size;
    return 0;
}

/* One segment: its WAL bytes as one gzip member (sealed to `recipients`
 * when there are any), written to the spool at `path` (temp, fsync,
 * rename); the stored object's sha256 and size. */
static int spool_segment(struct replica *r, int fd, const struct segment_plan *plan,
                         const struct sealed_recipients *recipients, const char *path,
                         char sha[IO_SHA256_HEX], size_t *gz_size, struct error *err)
{
    struct segment_sink sink = {.database = r->db->name};
    struct gzip_sink *g = &sink.gzip;
    if (delta_span_active(&r->span)) {
        if (delta_span_follows(&r->span, r->row.generation, plan->start))
            sink.span = &r->span;
        else
            delta_span_drop(&r->span); /* a segment it did not see: no delta of it */
    }
    if (deflateInit2(&g->z, SHIP_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return error_set(err, -ENOMEM, "zlib: cannot start a gzip stream");
    int rc = segment_copy(fd, r->wal_path, plan, segment_sink_write, &sink, err);
    if (rc == 0)
        rc = gzip_sink_feed(g, NULL, 0, Z_FINISH);
    deflateEnd(&g->z);
    if (rc == -ESTALE)
        error_prefix(err, "%s: the WAL changed while it was copied: ", r->db->name);
    if (rc == 0)
        rc = seal_segment(recipients, &g->out, &g->used, err);
    if (rc == 0) {
        io_sha256_buffer(g->out, g->used, sha);
        *gz_size = g->used;
        rc = fs_write_file_atomically(path, g->out, g->used, 0600, err);
    }
    free(g->out);
    /* Bytes the span took from a segment that is not shipped. */
    if (rc != 0 && sink.span)
        delta_span_drop(&r->span);
    return rc;
}

/* Ships every whole commit after the reader's position into spool files and
 * records them; with `all`, to the last commit now. seen_at is the wall
 * clock read after the segment's frames were read, so never before any of
 * its commits happened (a round may have waited for the write lock since it
 * began at `now_ms`), and never before the last one recorded (a clock
 * stepped back). `restore --at T` relies on it: no commit made after T. */
static int ship_segments(struct replica *r, struct wal_reader *reader, int fd, int64_t now_ms,
                         struct state_replica_object *extra, size_t extra_count, uint32_t base_from,
                         const char *break_reason, struct error *err)
{
    struct segment_commit *commits = calloc(SHIP_SEGMENT_MAX_COMMITS, sizeof *commits);
    struct format_commit *entries = calloc(SHIP_SEGMENT_MAX_COMMITS, sizeof *entries);
    struct segment_limits limits = {.max_bytes = SHIP_SEGMENT_MAX_BYTES,
                                    .max_commits = SHIP_SEGMENT_MAX_COMMITS};
    int64_t seen_at = now_ms > r->row.last_seen_at_ms ? now_ms : r->row.last_seen_at_ms;
    bool first = true;
    int rc = 0;

    if (!commits || !entries) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        struct segment_plan plan;
        struct state_replica_object objects[6];
        size_t count = 0;
        char name[32], path[PATH_MAX], sidecar_path[PATH_MAX], sha[IO_SHA256_HEX];

        rc = segment_plan_next(reader, &limits, commits, &plan, err);
        if (rc < 0)
            goto out;
        int64_t read_at = shipper_clock_ms();
        if (read_at > seen_at)
            seen_at = read_at;
        if (rc == 0) {
            /* Nothing to ship; still record a new generation or a base. */
            rc = 0;
            if (first && (extra_count || break_reason || base_from))
                rc = state_save_replica(r->state, r->db->name, &r->row, extra, extra_count,
                                        base_from, 0, 0, break_reason, err);
            goto out;
        }
        segment_name(&plan, name);
        /* Read at each segment: a reloaded configuration seals the next. */
        struct sealed_recipients recipients = sealed_recipients_of(r->db);
        bool sealed = recipients.count > 0;
        snprintf(path, sizeof path, "%s/g%08" PRIu32 "-%s.wal.gz%s", r->spool, r->row.generation,
                 name, sealed ? SEALED_SUFFIX : "");
        size_t gz_size = 0;
        rc = spool_segment(r, fd, &plan, &recipients, path, sha, &gz_size, err);
        if (rc < 0)
            goto out;

        struct format_segment sidecar = {.generation = r->row.generation,
                                         .start = plan.start,
                                         .end = plan.end,
                                         .page_size = plan.to.page_size,
                                         .salt = {plan.to.salt[0], plan.to.salt[1]},
                                         .checksum = {plan.to.checksum[0], plan.to.checksum[1]},
                                         .big_endian_checksum = plan.to.big_endian_checksum,
                                         .size = gz_size,
                                         .commit_count = plan.commit_count,
                                         .commits = entries};
        memcpy(sidecar.sha256, sha, sizeof sidecar.sha256);
        replica_seal_describe(&recipients, &sidecar.encryption);
        for (size_t i = 0; i < plan.commit_count; i++)
            entries[i] = (struct format_commit){.frame = plan.commits[i].frame_index,
                                                .end_offset = plan.commits[i].end_offset,
                                                .db_pages = plan.commits[i].db_pages,
                                                .seen_at_ms = seen_at};
        char *json = format_segment_encode(&sidecar, err);
        if (!json) {
            rc = err ? err->code : -EINVAL;
            goto out;
        }
        snprintf(sidecar_path, sizeof sidecar_path, "%s/g%08" PRIu32 "-%s.wal.json", r->spool,
                 r->row.generation, name);
        rc = fs_write_file_atomically(sidecar_path, json, strlen(json), 0600, err);
        free(json);
        if (rc < 0)
            goto out;

        if (first)
            for (size_t i = 0; i < extra_count && count < 4; i++)
                objects[count++] = extra[i];
        objects[count].generation = r->row.generation;
        snprintf(objects[count].path, sizeof objects[count].path, "%s", path);
        format_key(objects[count].key, sizeof objects[count].key, r->db->name,
                   sealed ? FORMAT_SEALED_SEGMENT : FORMAT_SEGMENT, r->row.generation, plan.start,
                   plan.end, NULL);
        count++;
        objects[count].generation = r->row.generation;
        snprintf(objects[count].path, sizeof objects[count].path, "%s", sidecar_path);
        format_key(objects[count].key, sizeof objects[count].key, r->db->name, FORMAT_SIDECAR,
                   r->row.generation, plan.start, plan.end, NULL);
        count++;

        /* Read, then look, then record: a database renamed over ours keeps
         * the path's -wal and -shm, and a writer of the new file may carry
         * on with the old header's salts; frames read before the look are
         * ours only if the path still names the file of this generation. */
        if (!same_database_file(r)) {
            rc = error_set(err, -ESTALE,
                           "%s: the database file was replaced while its WAL was read; the next "
                           "round starts a new generation from it",
                           r->db->name);
            goto out;
        }
        struct state_replica next = r->row;
        position_to_row(&plan.to, &next);
        next.last_seen_at_ms = seen_at;
        next.ended = false;
        next.shipped_bytes += (int64_t)(plan.end - plan.start);
        rc = state_save_replica(r->state, r->db->name, &next, objects, count, first ? base_from : 0,
                                seen_at, seen_at, first ? break_reason : NULL, err);
        if (rc < 0)
            goto out;
        r->row = next;
        first = false;
        if (delta_span_active(&r->span)) {
            struct error span_err = {0};
            if (delta_span_segment_done(&r->span, plan.end, &span_err) != 0) {
                log_event(LOG_WARNING, r->db->name, "replicate",
                          "the page delta of generations %" PRIu32 "..%" PRIu32
                          " is given up (%s); the next generation starts another",
                          r->span.first_generation, r->span.generation, span_err.message);
                delta_span_drop(&r->span);
            }
        }
        /* What the writer committed while this segment was written waits
         * for the next round: chasing it would cut a segment of a few
         * commits every few ms for as long as the writer keeps up. */
        if (!plan.full)
            break;
    }
out:
    free(commits);
    free(entries);
    return rc;
}

/* ---- page deltas (delta.h, delta_job.h) ---- */

static bool deltas_on(const struct replica *r)
{
    return r->db->replicate.deltas && r->db->replicate.delta_every_seconds > 0;
}

/* A finished build: its objects queued (they go up after the segments
 * before them), or its failure logged. Nothing of the replica depends on a
 * delta: a restore without it replays the segments, which stay. */
static void delta_collect(struct replica *r)
{
    if (!r->delta_job || !delta_job_done(r->delta_job))
        return;
    struct state_replica_object objects[2 * DELTA_LEVELS];
    struct format_delta records[DELTA_LEVELS];
    size_t object_count = 0, record_count = 0;
    struct error err = {0};
    int rc = delta_job_finish(r->delta_job, objects, &object_count, records, &record_count, &err);
    r->delta_job = NULL;
    if (rc == 0 && object_count &&
        (rc = state_queue_replica_objects(r->state, r->db->name, objects, object_count, &err)) !=
            0) {
        for (size_t i = 0; i < object_count; i++)
            unlink(objects[i].path);
    }
    if (rc != 0) {
        log_event(LOG_WARNING, r->db->name, "replicate",
                  "no page delta of generations ending before %" PRIu32 ": %s", r->row.generation,
                  err.message);
        return;
    }
    for (size_t i = 0; i < record_count; i++)
        log_event(LOG_INFO, r->db->name, "replicate",
                  "page delta of generations %" PRIu32 "..%" PRIu32 " queued: %" PRIu64
                  " pages in %" PRIu64 " bytes, for %" PRIu64 " bytes of WAL",
                  records[i].first_generation, records[i].last_generation, records[i].pages,
                  records[i].size, records[i].wal_bytes);
}

/* The span closed at the end of its last generation, handed to a job. */
static void delta_close(struct replica *r, int64_t now_ms)
{
    char closed[PATH_MAX];
    struct delta_pages pages;
    struct error err = {0};
    snprintf(closed, sizeof closed, "%s/%s", r->spool, DELTA_SPOOL_CLOSED);
    int rc = delta_span_close(&r->span, closed, &pages, &err);
    if (rc == 0)
        rc = delta_job_start(&r->delta_job, &pages, r->levels,
                             r->db->replicate.delta_every_seconds * 1000, r->spool, r->db->name,
                             sealed_recipients_of(r->db), now_ms, &err);
    if (rc != 0)
        log_event(LOG_WARNING, r->db->name, "replicate", "no page delta: %s", err.message);
}

/* Whether the spool's file system has room for the page files a span and
 * its levels may take (DELTA_LEVELS + 1 database sizes at worst, when
 * every page is written): where it has not, no delta is gathered, and the
 * replica goes on without (said once, and again once there is room). */
static bool delta_room(struct replica *r)
{
    struct statvfs fs;
    struct stat st;
    if (statvfs(r->spool, &fs) != 0 || stat(r->db->path, &st) != 0)
        return true; /* the next write will say what is wrong */
    uint64_t free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize;
    uint64_t wanted = (uint64_t)st.st_size * (DELTA_LEVELS + 1);
    bool room = free_bytes >= wanted;
    if (room && r->delta_no_room)
        log_event(LOG_NOTICE, r->db->name, "replicate", "page deltas resume: %s has room again",
                  r->spool);
    else if (!room && !r->delta_no_room)
        log_event(LOG_WARNING, r->db->name, "replicate",
                  "no page deltas: %s has %llu MiB free, they may take %llu MiB (%d times the "
                  "database); restores replay the WAL meanwhile",
                  r->spool, (unsigned long long)(free_bytes >> 20),
                  (unsigned long long)(wanted >> 20), DELTA_LEVELS + 1);
    r->delta_no_room = !room;
    return room;
}

/* Generation `generation` begins: from a base (continued false), or where
 * the last one ended. The span goes on, or closes when it is due and no
 * job is under way (the job makes its delta only where worth it, and
 * merges it into the levels either way), or starts anew. */
static void delta_generation_began(struct replica *r, uint32_t generation, bool continued,
                                   int64_t now_ms)
{
    struct error err = {0};
    delta_collect(r);
    if (!continued)
        r->chain_base = generation;
    if (!deltas_on(r)) {
        delta_span_drop(&r->span);
        return;
    }
    if (continued && delta_span_active(&r->span) && generation == r->span.generation + 1 &&
        !r->delta_job && now_ms - r->span.started_ms >= r->db->replicate.delta_every_seconds * 1000)
        delta_close(r, now_ms);
    if (continued && delta_span_continue(&r->span, generation, &err))
        return;
    if (!delta_room(r)) {
        delta_span_drop(&r->span);
        return;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->spool, DELTA_SPOOL_OPEN);
    if (delta_span_start(&r->span, path, generation, r->chain_base, now_ms, &err) != 0)
        log_event(LOG_WARNING, r->db->name, "replicate",
                  "no page delta from generation %" PRIu32 ": %s", generation, err.message);
}

/* Writes base.json for the current generation into the spool and names it
 * as an object. */
static int spool_base_json(struct replica *r, const struct format_base *base,
                           struct state_replica_object *object, struct error *err)
{
    char *json = format_base_encode(base, err);
    if (!json)
        return err ? err->code : -EINVAL;
    object->generation = base->generation;
    snprintf(object->path, sizeof object->path, "%s/g%08" PRIu32 "-base.json", r->spool,
             base->generation);
    format_key(object->key, sizeof object->key, r->db->name, FORMAT_BASE_JSON, base->generation, 0,
               0, NULL);
    int rc = fs_write_file_atomically(object->path, json, strlen(json), 0600, err);
    free(json);
    return rc;
}

static void record_break(struct replica *r, const char *reason, const char *detail)
{
    log_event(LOG_WARNING, r->db->name, "replicate",
              "replication break (%s): %s; starting generation %" PRIu32 " from a fresh base",
              reason, detail, r->row.generation + 1);
}

/*
 * A new generation from a fresh base. Under the write lock, briefly: F, the
 * WAL's last commit, is where the base stands; a read transaction begun
 * then sees exactly the database at F; the WAL up to F is copied aside
 * (once the lock goes, a writer may restart the WAL over it); and the
 * generation is ended at F and the pin renewed, as a reset round does.
 * Then, with writers going on (design defect 7: a 1 GiB base held them up
 * for seconds), the pages are copied from that read transaction and
 * compressed, and one state.db transaction records the base, base.json
 * and the WAL up to F, shipped from the copy aside. base.json says F, and
 * restore never stops before it (design finding 3).
 */

/* The first `bytes` of the WAL (`fd`) into a new spool file `to`. */
static int base_wal_copy(struct replica *r, int fd, uint64_t bytes, const char *to,
                         struct error *err)
{
    enum { CHUNK = 1 << 20 };
    unlink(to);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        return error_set(err, -errno, "%s: cannot create %s: %s", r->db->name, to, strerror(errno));
    uint8_t *buffer = malloc(CHUNK);
    int rc = buffer ? 0 : error_set(err, -ENOMEM, "out of memory");
    for (uint64_t at = 0; rc == 0 && at < bytes;) {
        size_t want = bytes - at < CHUNK ? (size_t)(bytes - at) : CHUNK;
        ssize_t got = io_read_full_at(fd, buffer, want, (int64_t)at);
        if (got != (ssize_t)want)
            rc = error_set(err, got < 0 ? (int)got : -EIO,
                           "%s: cannot read the WAL up to offset %llu: %s", r->db->name,
                           (unsigned long long)bytes, got < 0 ? strerror((int)-got) : "short");
        else if (io_write_full(out, buffer, want) < 0)
            rc = error_set(err, -errno, "%s: %s: %s", r->db->name, to, strerror(errno));
        at += want;
    }
    free(buffer);
    close(out);
    if (rc < 0)
        unlink(to);
    return rc;
}

/* Under the caller's write lock: the pin ends, and a PASSIVE checkpoint
 * backfills what it can; *log_frames and *done as SQLite reports them
 * (both 0 when it could not run). The caller renews the pin before the
 * lock goes. */
/* A PASSIVE checkpoint on a connection of its own (the pin's holds a read
 * transaction, and a checkpoint needs none); *log_frames and *done as
 * sqlite3_wal_checkpoint_v2 gives them, 0 when it could not run. */
static void checkpoint_passive(struct replica *r, int *log_frames, int *done)
{
    *log_frames = *done = 0;
    sqlite3 *checkpointer = NULL;
    struct error ignored = {0};
    if (database_open(r->db, false, r->stop, &checkpointer, &ignored) == 0) {
        sqlite3_wal_checkpoint_v2(checkpointer, NULL, SQLITE_CHECKPOINT_PASSIVE, log_frames, done);
        sqlite3_close(checkpointer);
    }
}

static void unpin_and_checkpoint(struct replica *r, int *log_frames, int *done)
{
    pin_end(&r->pin);
    checkpoint_passive(r, log_frames, done);
}

/* Still under the write lock: the generation ends at F when the WAL is all
 * backfilled there (nothing can commit, so F is its last commit), and the
 * pin is renewed before the lock goes, as in reset_losslessly: on read mark
 * 0 it lets the WAL restart once, at F, and a base is often taken with the
 * WAL all backfilled, when a pin can only have mark 0. */
static void base_end_at(struct replica *r, bool have_header, uint64_t base_frame, bool *ended)
{
    int log_frames, done;
    unpin_and_checkpoint(r, &log_frames, &done);
    *ended = have_header && log_frames == done && (uint64_t)log_frames == base_frame;
    r->end_trusted = pin_renew(&r->pin) && *ended;
}

/* The pages of `snapshot` (a read transaction) into the spool file `raw`. */
static int base_pages(struct replica *r, sqlite3 *snapshot, const char *raw, struct error *err)
{
    sqlite3 *copy = NULL;
    sqlite3_backup *backup = NULL;
    int rc = 0;
    unlink(raw);
    if (sqlite3_open_v2(raw, &copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        !(backup = sqlite3_backup_init(copy, "main", snapshot, "main"))) {
        rc = error_set(err, -EIO, "%s: cannot start the base copy into %s: %s", r->db->name, raw,
                       sqlite3_errmsg(copy));
    } else {
        int step = sqlite3_backup_step(backup, -1);
        sqlite3_backup_finish(backup);
        if (step != SQLITE_DONE)
            rc = error_set(err, -EIO, "%s: base copy into %s failed: %s", r->db->name, raw,
                           sqlite3_errstr(step));
    }
    sqlite3_close(copy);
    return rc;
}

/* `raw` gzipped into the spool as `gz` (then removed). With recipients the
 * gzip file is sealed as it is written, and `gz` becomes the sealed file's
 * path: one pass, and no plaintext copy in the spool. */
static int base_compress(struct replica *r, const char *raw, char gz[PATH_MAX],
                         const struct sealed_recipients *recipients, int64_t *database_bytes,
                         struct archive_result *result, struct error *err)
{
    int rc = 0;
    struct archive_options options = {.recipients = recipients->items,
                                      .recipient_count = recipients->count};
    unlink(gz);
    if (recipients->count > 0) {
        /* A sealed base under the plain name would be taken for plaintext. */
        if (strlen(gz) + strlen(SEALED_SUFFIX) >= PATH_MAX)
            rc = error_set(err, -ENAMETOOLONG, "%s: the spool path %s is too long for %s%s",
                           r->db->name, r->spool, gz, SEALED_SUFFIX);
        else
            strcat(gz, SEALED_SUFFIX);
        unlink(gz); /* a kill between sealing and recording left one behind */
    }
    if (rc == 0) {
        *database_bytes = fs_file_size(raw, "");
        rc = archive_compress_format(raw, gz, ARCHIVE_GZIP, SHIP_GZIP_LEVEL, NULL, &options,
                                     result, err);
    }
    unlink(raw);
    return rc;
}

static int take_base(struct replica *r, int64_t now_ms, const char *reason, struct error *err)
{
    sqlite3 *writer = NULL, *snapshot = NULL;
    char gz[PATH_MAX], raw[PATH_MAX], wal_copy[PATH_MAX];
    struct state_replica_object objects[2];
    struct archive_result result = {0};
    struct wal_reader reader = {0};
    bool reader_open = false, ended = false;
    int fd = -1, copy_fd = -1, rc;
    struct stat st;
    uint32_t generation = r->row.generation + 1;
    snprintf(gz, sizeof gz, "%s/g%08" PRIu32 "-base.db.gz", r->spool, generation);
    snprintf(raw, sizeof raw, "%s/g%08" PRIu32 "-base.db", r->spool, generation);
    snprintf(wal_copy, sizeof wal_copy, "%s/g%08" PRIu32 "-base.wal", r->spool, generation);
    if (pin_keep_open(r->db->path, &r->pin.db_fd, &st) != 0)
        return error_set(err, -errno, "%s: %s", r->db->path, strerror(errno));
    rc = database_open(r->db, false, r->stop, &writer, err);
    if (rc < 0)
        return rc;
    bool gave_way = false;
    if (!pin_begin_write(&r->pin, writer, &gave_way)) {
        rc = error_set(err, -EBUSY,
                       "%s: no write lock within %d ms for the base (%s); retried next round",
                       r->db->name, r->db->checkpoint.max_wait_ms,
                       gave_way ? "the application's checkpoint goes first" : "busy writers");
        goto out;
    }
    struct state_replica next = r->row;
    next.generation = generation;
    next.ended = false;
    next.db_device = (uint64_t)st.st_dev;
    next.db_inode = (uint64_t)st.st_ino;
    next.base_taken_at_ms = now_ms;
    if (reason) {
        snprintf(next.last_break, sizeof next.last_break, "%s", reason);
        next.last_break_at_ms = now_ms;
    }

    /* Under the write lock the WAL ends at its last commit: that frame is
     * where the base stands. A second reader ships the generation from 0,
     * from the copy aside. */
    uint64_t base_frame = 0, wal_bytes = 0;
    bool have_header = false;
    fd = open(r->wal_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct wal_reader probe;
        rc = wal_reader_open(&probe, fd, r->wal_path, err);
        if (rc == 0) {
            have_header = true;
            rc = wal_reader_scan(&probe, err);
            base_frame = probe.committed.frame_index;
            wal_bytes = probe.committed.offset;
            wal_reader_close(&probe);
        }
        if (rc == -ENODATA)
            rc = 0;
    }
    /* Begun under the write lock, the read transaction sees exactly F. */
    if (rc == 0 && (rc = pin_read_transaction(r->db, r->stop, &snapshot, err)) < 0)
        error_prefix(err, "%s: the base: ", r->db->name);
    if (rc == 0 && have_header)
        rc = base_wal_copy(r, fd, wal_bytes, wal_copy, err);
    if (rc < 0)
        goto out;
    if (have_header) {
        copy_fd = open(wal_copy, O_RDONLY | O_CLOEXEC);
        rc = copy_fd < 0 ? error_set(err, -errno, "%s: %s", wal_copy, strerror(errno))
                         : wal_reader_open(&reader, copy_fd, wal_copy, err);
        if (rc < 0)
            goto out;
        reader_open = true;
    }
    base_end_at(r, have_header, base_frame, &ended);
    /* The write lock goes: writers go on while the pages are copied. */
    sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(writer);
    writer = NULL;

    int64_t page_size = 4096;
    database_query_int(snapshot, "PRAGMA page_size", &page_size, NULL);
    rc = base_pages(r, snapshot, raw, err);
    /* The read transaction goes as soon as the pages are copied: it holds
     * a read mark that keeps the WAL from restarting. */
    sqlite3_exec(snapshot, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(snapshot);
    snapshot = NULL;
    int64_t database_bytes = 0;
    struct sealed_recipients recipients = sealed_recipients_of(r->db);
    if (rc == 0)
        rc = base_compress(r, raw, gz, &recipients, &database_bytes, &result, err);
    if (rc < 0)
        goto out;

    if (reader_open) {
        position_to_row(&reader.next, &next);
    } else {
        /* No WAL header: the first one to appear starts this generation. */
        memset(next.salt, 0, sizeof next.salt);
        next.offset = 0;
        next.frame_index = 0;
        next.page_size = 0;
    }

    struct format_base base = {.generation = next.generation,
                               .frame = base_frame,
                               .size = (uint64_t)result.output_bytes,
                               .database_bytes = (uint64_t)database_bytes,
                               .taken_at_ms = now_ms};
    base.page_size = (uint32_t)page_size;
    memcpy(base.sha256, result.sha256, sizeof base.sha256);
    replica_seal_describe(&recipients, &base.encryption);
    objects[0].generation = next.generation;
    snprintf(objects[0].path, sizeof objects[0].path, "%s", gz);
    format_key(objects[0].key, sizeof objects[0].key, r->db->name,
               recipients.count ? FORMAT_SEALED_BASE : FORMAT_BASE, next.generation, 0, 0, NULL);
    rc = spool_base_json(r, &base, &objects[1], err);
    if (rc < 0)
        goto out;

    r->row = next;
    delta_generation_began(r, next.generation, false, now_ms);
    if (base_frame == 0) {
        /* No commit in the WAL: the base alone is the database as of now,
         * restorable from its taken_at on (the generation's first time). */
        rc = state_save_replica(r->state, r->db->name, &r->row, objects, 2, 0, now_ms, now_ms,
                                reason, err);
    } else {
        rc = ship_segments(r, &reader, copy_fd, now_ms, objects, 2, 0, reason, err);
    }
    if (rc == 0)
        log_event(LOG_INFO, r->db->name, "replicate",
                  "generation %" PRIu32 " started from a base of %lld bytes at WAL frame %" PRIu64
                  "%s",
                  r->row.generation, (long long)database_bytes, base_frame,
                  r->scheduled_base ? " (snapshot_every)" : "");
    /* Told apart from a break in index.json; lost in a kill right here,
     * which only makes `backups --remote` show a break that was not. */
    if (rc == 0 && r->scheduled_base)
        rc = state_replica_mark_snapshot(r->state, r->db->name, r->row.generation, err);
    /* Shipped to F, where the lock found the WAL all backfilled: ended. */
    if (rc == 0 && ended && r->row.frame_index == base_frame) {
        r->row.ended = true;
        rc = state_save_replica(r->state, r->db->name, &r->row, NULL, 0, 0, 0, 0, NULL, err);
    }
out:
    if (rc < 0) {
        /* Nothing recorded: state.db still holds the old row, whose end
         * the pin no longer vouches for (renewed at the base's F). */
        struct error ignored;
        state_get_replica(r->state, r->db->name, &r->row, &ignored);
        r->end_trusted = false;
    }
    if (reader_open)
        wal_reader_close(&reader);
    if (copy_fd >= 0)
        close(copy_fd);
    unlink(wal_copy);
    unlink(raw);
    if (fd >= 0)
        close(fd);
    if (snapshot) {
        sqlite3_exec(snapshot, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(snapshot);
    }
    if (writer) {
        sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(writer);
    }
    return rc;
}

/* A generation that starts where the last one ended (the agent shipped it
 * to its end before letting the WAL restart): base.json links to it. */
static int continue_generation(struct replica *r, struct wal_reader *reader, int fd, int64_t now_ms,
                               struct error *err)
{
    struct state_replica_object object;
    uint32_t from = r->row.generation;
    struct format_base base = {.generation = from + 1,
                               .frame = 0,
                               .from_generation = from,
                               .page_size = reader->header.page_size,
                               .taken_at_ms = now_ms};
    /* No base file to seal, but the operator still reads here whom the
     * generation's segments are sealed to. */
    struct sealed_recipients recipients = sealed_recipients_of(r->db);
    replica_seal_describe(&recipients, &base.encryption);
    int rc = spool_base_json(r, &base, &object, err);
    if (rc < 0)
        return rc;
    /* Routine (every 4 MiB of WAL, and after each quiet spell): debug. */
    log_event(LOG_DEBUG, r->db->name, "replicate",
              "generation %" PRIu32 " continues from the end of generation %" PRIu32
              " (WAL restarted once: salt-1 %08" PRIx32 ", checkpoint sequence %" PRIu32 ")",
              from + 1, from, reader->header.salt[0], reader->header.checkpoint_sequence);
    r->row.generation = from + 1;
    r->row.ended = false;
    position_to_row(&reader->next, &r->row);
    delta_generation_began(r, from + 1, true, now_ms);
    return ship_segments(r, reader, fd, now_ms, &object, 1, from, NULL, err);
}

/*
 * The agent's own lossless reset (design 2.3 step 3), or the yield to an
 * application checkpointer already holding the write lock (step 6): with
 * nothing able to commit, ship to the last commit, end the pin, and let the
 * WAL be backfilled; the generation is marked ended only when every frame
 * was backfilled and no other reader holds a read mark, so that the next
 * writer must restart the WAL at the exact end shipped. `held`: a connection
 * of the caller already holding the write lock (take_base), else NULL.
 */
static int yield_to_checkpointer(struct replica *r, int fd, struct wal_reader *reader,
                                 struct error *err);

static int reset_losslessly(struct replica *r, int64_t now_ms, bool yield, sqlite3 *held,
                            struct error *err)
{
    sqlite3 *writer = NULL;
    struct wal_reader reader = {0};
    struct wal_position saved;
    enum wal_resume resume;
    int fd = -1, rc = 0;
    int64_t locked_us = 0; /* when the write lock was had: the application waits from then */
    uint64_t locked_offset = r->row.offset;

    if (!yield && !held) {
        rc = database_open(r->db, false, r->stop, &writer, err);
        if (rc < 0)
            return rc;
        bool gave_way = false;
        if (!pin_begin_write(&r->pin, writer, &gave_way)) {
            sqlite3_close(writer);
            writer = NULL;
            /* The application checkpoints itself: let it (step 6). */
            if (gave_way)
                return reset_losslessly(r, now_ms, true, NULL, err);
            /* The WAL grows until a later round gets the lock (step 5). */
            log_event(LOG_DEBUG, r->db->name, "replicate",
                      "reset round skipped: no write lock within %d ms",
                      r->db->checkpoint.max_wait_ms);
            return 0;
        }
        locked_us = io_monotonic_us();
    }
    fd = open(r->wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto out;
    position_from_row(&r->row, &saved);
    rc = wal_reader_resume(&reader, fd, r->wal_path, &saved, &resume, err);
    if (rc < 0 || resume != WAL_RESUME_CONTINUES) {
        if (!yield)
            log_event(LOG_DEBUG, r->db->name, "replicate",
                      "reset round skipped: the WAL does not continue the generation (%d, %s)",
                      (int)resume, rc < 0 && err ? err->message : "");
        rc = 0; /* the next round sorts it out */
        goto out;
    }
    rc = ship_segments(r, &reader, fd, now_ms, NULL, 0, 0, NULL, err);
    if (rc < 0)
        goto out;
    if (yield)
        return yield_to_checkpointer(r, fd, &reader, err);
    int log_frames, done;
    unpin_and_checkpoint(r, &log_frames, &done);
    bool readers = pin_other_readers(&r->pin);
    /* Ended: everything up to the last commit is shipped (nothing can
     * commit now) and every frame is backfilled. Another reader may keep
     * the next write from restarting the WAL, or may be gone by then: the
     * generation then either goes on in the same WAL (shipped as ever) or
     * continues after the one restart the pin allows, at this end. Not
     * ending it for the reader's sake made that restart a break (defect 9). */
    log_event(LOG_DEBUG, r->db->name, "replicate",
              "reset round: shipped to frame %" PRIu64 ", checkpoint log=%d done=%d, other "
              "readers: %s",
              r->row.frame_index, log_frames, done, readers ? "yes" : "no");
    if (log_frames == done && r->row.frame_index == (uint64_t)log_frames) {
        r->row.ended = true;
        rc = state_save_replica(r->state, r->db->name, &r->row, NULL, 0, 0, 0, 0, NULL, err);
        /* Re-pin before letting the write lock go. Everything is backfilled,
         * so this reader uses read mark 0: it does not stop the next writer
         * from restarting the WAL (which needs marks 1..4 free), but a
         * checkpoint cannot backfill past it (that needs mark 0), so the
         * WAL cannot restart a second time before the next round reads the
         * new generation (design 2.3 step 4). */
        if (rc == 0)
            r->end_trusted = pin_renew(&r->pin);
    } else {
        /* Not ended (frames not backfilled, as another reader's snapshot
         * needs them): hold the WAL again before the write lock goes, as
         * between rounds; this pin takes a read mark that keeps the WAL from
         * restarting until the next round. Without a pin, the application
         * could append, checkpoint and restart the WAL before our next
         * round reads what it appended: a break. */
        (void)pin_renew(&r->pin);
    }
out:
    if (fd >= 0) {
        wal_reader_close(&reader);
        close(fd);
    }
    if (writer) {
        sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL);
        log_event(LOG_DEBUG, r->db->name, "replicate",
                  "reset round: write lock held %.1f ms, %" PRIu64 " bytes of WAL shipped in it",
                  (double)(io_monotonic_us() - locked_us) / 1000.0,
                  r->row.offset > locked_offset ? r->row.offset - locked_offset : 0);
        sqlite3_close(writer);
    }
    return rc;
}

/*
 * Design 2.3 step 6: an application's FULL/RESTART/TRUNCATE checkpoint waits
 * for our pin, and everything up to the last commit in the file is shipped.
 * A new pin is begun before the old one goes, and the wal-index then says
 * where the WAL's last commit is: if it is the end shipped, the new pin's
 * snapshot ends there too, and from then on the WAL can restart at most
 * once, at that end. On read mark 1..4 it cannot restart at all (a restart
 * needs them free); on read mark 0, which SQLite gives a reader only when
 * every frame is backfilled, it can restart once, but frames written after
 * that restart cannot be backfilled past our mark 0, and without that no
 * second restart. So the end is recorded, then the old pin let go. If a
 * commit came after what was shipped (a writer, not a checkpointer, held
 * the lock), nothing is recorded and the old pin is kept: the next look
 * ships it and yields then. Nothing here depends on who holds which lock.
 */
static int yield_to_checkpointer(struct replica *r, int fd, struct wal_reader *reader,
                                 struct error *err)
{
    wal_reader_close(reader);
    close(fd);
    sqlite3 *next = pin_begin(&r->pin);
    if (!next)
        return 0;
    if (!pin_wal_ends_at(&r->pin, r->row.frame_index, r->row.salt)) {
        sqlite3_exec(next, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(next);
        return 0;
    }
    int rc = 0;
    if (!r->row.ended) {
        log_event(LOG_DEBUG, r->db->name, "replicate",
                  "yielding to the application's waiting checkpoint: shipped to frame %" PRIu64
                  ", the WAL may restart there",
                  r->row.frame_index);
        r->row.ended = true;
        rc = state_save_replica(r->state, r->db->name, &r->row, NULL, 0, 0, 0, 0, NULL, err);
    }
    if (rc < 0) {
        r->row.ended = false;
        sqlite3_exec(next, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(next);
        return rc;
    }
    pin_swap(&r->pin, next);
    r->end_trusted = true;
    return 0;
}

/* ---- the round ---- */

/* A commit of the ended generation found after its recorded end (design
 * 1.1: a restart leaves the older frames behind the new ones): it was made
 * after the end shipped, so the restart was not the clean one. An error
 * reading counts as found: a fresh base costs time, a gap costs data. */
static bool old_commit_follows(struct replica *r, int fd, const struct wal_position *end)
{
    bool follows = false;
    struct error ignored = {0};
    if (wal_commit_follows(fd, r->wal_path, end, &follows, &ignored) < 0)
        return true;
    return follows;
}

static int start_over(struct replica *r, int64_t now_ms, const char *reason, const char *detail,
                      struct error *err)
{
    if (reason) {
        record_break(r, reason, detail);
        /* Nothing of the broken generation is left to protect: an
         * application checkpoint waiting for the pin goes first. */
        pin_end(&r->pin);
        r->end_trusted = false;
    }
    int rc = take_base(r, now_ms, reason, err);
    if (rc == 0)
        r->based = true;
    return rc;
}

/* Out of WAL mode: no pin, and the break counted once (not again on each
 * round, nor after a restart of the agent). */
static int round_not_wal(struct replica *r, int64_t now_ms, struct error *err)
{
    pin_end(&r->pin);
    if (r->not_wal)
        return 0;
    r->not_wal = true;
    log_event(LOG_ERR, r->db->name, "replicate",
              "%s is not in WAL mode: nothing can be shipped until it is again (then a new "
              "generation starts from a fresh base)",
              r->db->path);
    if (r->row.generation == 0 || strcmp(r->row.last_break, "not_wal") == 0)
        return 0;
    snprintf(r->row.last_break, sizeof r->row.last_break, "not_wal");
    r->row.last_break_at_ms = now_ms;
    r->row.ended = false;
    r->row.db_inode = 0; /* forces a base once back in WAL mode */
    return state_save_replica(r->state, r->db->name, &r->row, NULL, 0, 0, 0, 0, "not_wal", err);
}

/*
 * The spool at replicate.spool_max: the target has not taken objects for
 * long. Holding the pin now would keep the WAL from restarting (nothing
 * more can be shipped to let it), so the WAL is let go, once, as a counted
 * break, and nothing is shipped until the uploads have drained the spool to
 * half the bound (it shrinks only by uploads: the target is back). The
 * state is kept in the row (db_inode 0 forces the base), so a restart of
 * the agent meanwhile neither counts the break again nor ships. 1 while
 * full (the round ends here), 0 to go on, or an error.
 */
static int round_spool(struct replica *r, int64_t now_ms, struct error *err)
{
    int64_t bound = r->db->replicate.spool_max_bytes;
    if (bound <= 0)
        return 0;
    int64_t spooled = replica_spool_bytes(r->spool);
    if (spooled < 0)
        return error_set(err, (int)spooled, "%s: cannot read the spool %s: %s", r->db->name,
                         r->spool, strerror((int)-spooled));
    if (r->spool_full) {
        if (spooled > bound / 2)
            return 1;
        log_event(LOG_NOTICE, r->db->name, "replicate",
                  "the spool has drained to %lld bytes: shipping again from a fresh base",
                  (long long)spooled);
        r->spool_full = false;
        return 0;
    }
    if (spooled < bound)
        return 0;
    log_event(LOG_ERR, r->db->name, "replicate",
              "the spool holds %lld bytes, replicate.spool_max is %lld: the target has not "
              "taken objects for too long; shipping stops and the WAL is let go (the "
              "application's checkpoints go on): restore --at reaches no further than the "
              "last commit queued until the target is back and a new base is up",
              (long long)spooled, (long long)bound);
    record_break(r, "spool_full", "the spool reached replicate.spool_max");
    pin_end(&r->pin);
    r->end_trusted = false;
    r->spool_full = true;
    snprintf(r->row.last_break, sizeof r->row.last_break, "spool_full");
    r->row.last_break_at_ms = now_ms;
    r->row.ended = false;
    r->row.db_inode = 0; /* forces a base once shipping again */
    int rc = state_save_replica(r->state, r->db->name, &r->row, NULL, 0, 0, 0, 0, "spool_full",
                                err);
    return rc < 0 ? rc : 1;
}

/* What the WAL says against the saved position, once it was resumed. */
static int round_resumed(struct replica *r, struct wal_reader *reader, int *fd,
                         const struct wal_position *saved, enum wal_resume resume, int64_t now_ms,
                         struct error *err)
{
    switch (resume) {
    case WAL_RESUME_CONTINUES: {
        int rc = ship_segments(r, reader, *fd, now_ms, NULL, 0, 0, NULL, err);
        if (rc == 0 && r->row.ended && r->pin.connection)
            r->end_trusted = true;
        return rc;
    }
    case WAL_RESUME_RESTARTED: {
        /* Clean only when this process has held a pin since it recorded
         * the end (the WAL could then restart once, at that end:
         * yield_to_checkpointer), nothing of the old generation follows
         * the end, and the header is that one restart's: salt-1 one more
         * than ours (a restart takes it from the shared wal-index), or a
         * fresh pair with checkpoint sequence 0 (the first writer after
         * another connection's TRUNCATE draws new salts when its own
         * counter is 0). The sequence is each connection's private count,
         * not a count of restarts: it is not compared. */
        bool one_restart =
            reader->header.salt[0] == r->row.salt[0] + 1 || reader->header.checkpoint_sequence == 0;
        bool at_end = r->row.ended && r->end_trusted && one_restart;
        bool old_follows = at_end && old_commit_follows(r, *fd, saved);
        if (at_end && !old_follows)
            return continue_generation(r, reader, *fd, now_ms, err);
        /* Which condition failed: what the next look at a break needs. */
        log_event(LOG_DEBUG, r->db->name, "replicate",
                  "the WAL restart is not a continuation: generation ended %s, end vouched "
                  "for by the pin %s, salt-1 %08" PRIx32 " after %08" PRIx32
                  " (checkpoint sequence %" PRIu32 "), an old commit after the end %s",
                  r->row.ended ? "yes" : "no", r->end_trusted ? "yes" : "no",
                  reader->header.salt[0], r->row.salt[0], reader->header.checkpoint_sequence,
                  !at_end       ? "not looked for"
                  : old_follows ? "yes"
                                : "no");
        wal_reader_close(reader);
        close(*fd);
        *fd = -1;
        return start_over(r, now_ms, "restarted",
                          "the WAL was restarted by someone else before every commit in it was "
                          "shipped",
                          err);
    }
    case WAL_RESUME_BROKEN:
        wal_reader_close(reader);
        close(*fd);
        *fd = -1;
        return start_over(r, now_ms, "broken", "the WAL no longer holds the frame last shipped",
                          err);
    case WAL_RESUME_NO_HEADER: return 0;
    }
    return 0;
}

/* Follows the generation in the -wal: ships what came, or starts over. */
static int round_follow(struct replica *r, int64_t now_ms, struct error *err)
{
    int fd = open(r->wal_path, O_RDONLY | O_CLOEXEC);
    struct wal_reader reader = {0};
    struct wal_position saved;
    enum wal_resume resume = WAL_RESUME_NO_HEADER;
    int rc = 0;
    position_from_row(&r->row, &saved);
    /* An end recorded before the agent restarted: pin first, then look; the
     * generation still ending there (no restart seen, nothing after it) is
     * then proof that nothing was written since. */
    if (r->row.ended && !r->end_trusted)
        pin_renew(&r->pin);
    if (fd >= 0 && r->row.page_size == 0) {
        /* The base found no WAL header: the first one to appear is this
         * generation's. */
        rc = wal_reader_open(&reader, fd, r->wal_path, err);
        if (rc == 0) {
            resume = WAL_RESUME_CONTINUES;
            position_to_row(&reader.next, &r->row);
            rc = ship_segments(r, &reader, fd, now_ms, NULL, 0, 0, NULL, err);
            wal_reader_close(&reader);
        } else if (rc == -ENODATA) {
            rc = 0;
        }
    } else if (fd >= 0) {
        rc = wal_reader_resume(&reader, fd, r->wal_path, &saved, &resume, err);
        if (rc == 0) {
            rc = round_resumed(r, &reader, &fd, &saved, resume, now_ms, err);
            if (fd >= 0)
                wal_reader_close(&reader);
        }
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0 && resume == WAL_RESUME_NO_HEADER && !(r->row.ended && r->end_trusted) &&
        r->row.page_size != 0)
        rc = start_over(r, now_ms, "no_header",
                        "the WAL was emptied or removed before every commit in it was shipped",
                        err);
    return rc;
}

/* Nothing new for SHIP_QUIET_AFTER_MS: time to end the generation so that
 * nothing needs watching (replica_quiet); at most once per that time. */
static bool round_quiet_due(struct replica *r, int64_t now_ms)
{
    if (r->row.ended || r->row.page_size == 0 || !r->pin.connection ||
        now_ms - r->row.last_seen_at_ms < SHIP_QUIET_AFTER_MS ||
        now_ms - r->quiet_tried_ms < SHIP_QUIET_AFTER_MS)
        return false;
    r->quiet_tried_ms = now_ms;
    return true;
}

/*
 * Before a reset round for the WAL's size takes the write lock: the pin
 * moves to the WAL's end as it is now, and a PASSIVE checkpoint backfills up
 * to it, beside the application's commits. The checkpoint under the lock
 * then copies only the frames that came since, and the application waits
 * for those alone, not for the whole second's WAL and its fsync.
 *
 * Nothing shipped depends on it. The new pin holds a read mark 1..4 while
 * any frame is not backfilled, so the WAL still cannot restart under frames
 * not shipped yet; it gets mark 0 only when everything is backfilled, which
 * the old pin allowed only up to frames already shipped.
 */
static void backfill_before_reset(struct replica *r)
{
    int log_frames, done;
    if (pin_renew(&r->pin))
        checkpoint_passive(r, &log_frames, &done);
}

/* Design 2.3 steps 3 and 6, and snapshot_every; then the pin moves on. */
static int round_reset_and_pin(struct replica *r, int64_t now_ms, bool force_reset,
                               struct error *err)
{
    int rc = 0;
    /* After a base too: the WAL it was taken with ends where it was shipped,
     * so the next generation can start from its end without another base. */
    bool yield = pin_checkpointer_waits(&r->pin);
    bool snapshot_due = !r->based && now_ms - r->row.base_taken_at_ms >=
                                         r->db->replicate.snapshot_every_seconds * 1000;
    bool quiet_due = round_quiet_due(r, now_ms);
    bool wal_due = r->row.offset > SHIP_RESET_WAL_BYTES;
    if (wal_due && !yield && !r->row.ended)
        backfill_before_reset(r);
    if (yield || force_reset || r->based || snapshot_due || quiet_due || wal_due)
        rc = reset_losslessly(r, now_ms, yield, NULL, err);
    /* A fresh base every snapshot_every, taken where the generation just
     * ended cleanly (no break), so a restore replays at most that much WAL. */
    if (rc == 0 && snapshot_due && !yield && r->row.ended && r->end_trusted) {
        r->scheduled_base = true;
        rc = start_over(r, now_ms, NULL, NULL, err);
        r->scheduled_base = false;
        if (rc == 0)
            rc = reset_losslessly(r, now_ms, false, NULL, err);
    }
    if (rc == 0 && !r->row.ended)
        pin_renew(&r->pin);
    return rc;
}

/*
 * What the idle test of the next round compares with: the files as they
 * were before this round read them, so that a commit made after the read
 * (a writer let go by a reset round commits at once) changes them. A file
 * time is taken from a coarse clock (a tick of a few ms; a second on some
 * filesystems), so a commit in the same tick as the look would leave it
 * unchanged, and a WAL restarted in place keeps its size: a time this close
 * to the look is not remembered, and the next round reads the WAL.
 */
#define IDLE_SETTLED_NS (2 * 1000000000LL)

static void round_remember_files(struct replica *r, const struct stat *db_st, bool have_wal,
                                 const struct stat *wal_st, int64_t looked_at_ns)
{
    int64_t db_mtime = mtime_ns(db_st), wal_mtime = have_wal ? mtime_ns(wal_st) : 0;
    if (looked_at_ns - db_mtime < IDLE_SETTLED_NS ||
        (have_wal && looked_at_ns - wal_mtime < IDLE_SETTLED_NS)) {
        r->wal_size = -2; /* no file has this size: the next round reads */
        return;
    }
    r->wal_size = have_wal ? wal_st->st_size : -1;
    r->wal_mtime_ns = wal_mtime;
    r->db_mtime_ns = db_mtime;
}

int replica_round(struct replica *r, int64_t now_ms, bool force_reset, struct error *err)
{
    struct stat db_st, wal_st;
    bool wal_mode = false;
    delta_collect(r);
    int rc = pin_keep_open(r->db->path, &r->pin.db_fd, &db_st);
    if (rc == 0)
        rc = database_is_wal_fd(r->pin.db_fd, &wal_mode);
    if (rc < 0)
        return error_set(err, rc, "%s: %s", r->db->path, strerror(-rc));
    if (!wal_mode)
        return round_not_wal(r, now_ms, err);
    bool was_not_wal = r->not_wal;
    r->based = false;
    r->not_wal = false;

    struct timespec looked_at;
    clock_gettime(CLOCK_REALTIME, &looked_at);
    bool have_wal = stat(r->wal_path, &wal_st) == 0;
    int64_t wal_size = have_wal ? wal_st.st_size : -1;
    int64_t wal_mtime = have_wal ? mtime_ns(&wal_st) : 0;
    /* An idle database: one stat of each file, nothing else. */
    if (!force_reset && !was_not_wal && r->row.generation > 0 && wal_size == r->wal_size &&
        wal_mtime == r->wal_mtime_ns && mtime_ns(&db_st) == r->db_mtime_ns &&
        (uint64_t)db_st.st_ino == r->row.db_inode) {
        if (pin_checkpointer_waits(&r->pin))
            return reset_losslessly(r, now_ms, true, NULL, err);
        if (round_quiet_due(r, now_ms))
            return reset_losslessly(r, now_ms, false, NULL, err);
        return 0;
    }

    rc = round_spool(r, now_ms, err);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if (r->row.generation == 0) {
        rc = start_over(r, now_ms, NULL, NULL, err);
    } else if (r->row.db_inode == 0 && (strcmp(r->row.last_break, "not_wal") == 0 ||
                                        strcmp(r->row.last_break, "spool_full") == 0)) {
        rc = start_over(r, now_ms, NULL, NULL, err); /* counted when it happened */
    } else if ((uint64_t)db_st.st_ino != r->row.db_inode ||
               (uint64_t)db_st.st_dev != r->row.db_device) {
        pin_end(&r->pin);
        rc = start_over(r, now_ms, "replaced", "the database file was replaced (another inode)",
                        err);
    } else {
        rc = round_follow(r, now_ms, err);
    }
    if (rc == 0)
        rc = round_reset_and_pin(r, now_ms, force_reset, err);
    if (rc == 0)
        round_remember_files(r, &db_st, have_wal, &wal_st,
                             (int64_t)looked_at.tv_sec * 1000000000LL + looked_at.tv_nsec);
    return rc;
}

bool replica_quiet(const struct replica *r)
{
    /* Ended by this process and pinned since, or based with no WAL header
     * yet (an empty WAL): the pin is on read mark 0 (everything was
     * backfilled, or there was nothing), which a FULL, RESTART or TRUNCATE
     * checkpoint does not wait for while nothing new is written; a write
     * changes the -wal, and the caller's file watch ends the quiet. */
    /* A delta being built is looked for at each round. */
    /* A pin moved past the end (pin_past_end) holds a read mark 1..4. */
    return r->row.generation > 0 && r->pin.connection && !r->not_wal && !r->spool_full &&
           !r->delta_job &&
           ((r->row.ended && r->end_trusted && r->pin_past_end_of != r->row.generation) ||
            r->row.page_size == 0);
}

/*
 * Defect 14. A generation ends with the pin on read mark 0, which lets the
 * WAL restart once and keeps every checkpoint from backfilling anything.
 * Until the next round, each of the application's commits past 1000 frames
 * then ran its autocheckpoint in vain, after sorting every frame of the WAL:
 * 17 us more a commit at 3000 frames, 98 us at 12000 (measured). Once the
 * application has restarted the WAL, a new pin takes a read mark 1..4 (the
 * new generation has frames, none backfilled): the WAL can restart no more
 * (the one restart the end allowed has happened), the application's
 * checkpoints backfill up to the pin, and after that they find nothing to
 * sort. The pin is held without a gap (pin_renew), so the end stays vouched
 * for.
 */
static void pin_past_end(struct replica *r)
{
    if (!r->row.ended || !r->end_trusted || r->pin_past_end_of == r->row.generation ||
        !pin_wal_restarted_since(&r->pin, r->row.salt))
        return;
    if (pin_renew(&r->pin))
        r->pin_past_end_of = r->row.generation;
}

int replica_watch(struct replica *r, int64_t now_ms, struct error *err)
{
    if (!r->pin.connection || r->row.generation == 0 || r->not_wal)
        return 0;
    /* A database renamed over ours: SQLite finds the -wal and -shm by path,
     * so while our pin keeps the old file's wal-index alive, a writer of the
     * new file trusts it (its page count included) and damages the new
     * file. Let go at once; the next round starts a new generation. */
    if (!same_database_file(r)) {
        pin_end(&r->pin);
        r->end_trusted = false;
        return 0;
    }
    pin_past_end(r);
    /* Only a pin can keep an application's checkpoint waiting. Follow the
     * WAL first: after a restart, the generation continues before the
     * next yield can record its end. */
    if (!pin_checkpointer_waits(&r->pin))
        return 0;
    int rc = round_follow(r, now_ms, err);
    if (rc == 0 && r->pin.connection && pin_checkpointer_waits(&r->pin))
        rc = reset_losslessly(r, now_ms, true, NULL, err);
    return rc;
}

int64_t replica_lag_ms(const struct state_replica *row, int64_t now_ms)
{
    if (row->generation == 0)
        return -1;
    if (row->queued_objects == 0 && row->uploaded_seen_at_ms >= row->last_seen_at_ms &&
        row->uploaded_seen_at_ms > 0)
        return 0;
    int64_t on_target = row->uploaded_seen_at_ms ? row->uploaded_seen_at_ms
                                                 : row->base_taken_at_ms;
    return now_ms > on_target ? now_ms - on_target : 0;
}

static bool spool_is_base(const char *name, size_t length)
{
    static const char plain[] = "-base.db.gz", sealed[] = "-base.db.gz" SEALED_SUFFIX;
    return (length > sizeof plain - 1 && strcmp(name + length - (sizeof plain - 1), plain) == 0) ||
           (length > sizeof sealed - 1 && strcmp(name + length - (sizeof sealed - 1), sealed) == 0);
}

/* A page delta waiting for the target (delta_job.c: NAME.pages.gz[.age]
 * and NAME.pages.json): traffic, not an outage. A merged one holds the
 * pages of 12 or 144 spans, 2 GB for 24 minutes of the bench's writer: as
 * part of the bound it broke replication twice an hour with the target up. */
static bool spool_is_delta(const char *name)
{
    return strstr(name, FORMAT_DELTA_MARK) != NULL;
}

int64_t replica_spool_bytes(const char *spool)
{
    DIR *dir = opendir(spool);
    if (!dir)
        return errno == ENOENT ? 0 : -errno;
    int64_t total = 0, newest_base = 0;
    char newest_name[64] = "";
    struct dirent *entry;
    struct stat st;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.' || spool_is_delta(entry->d_name) ||
            fstatat(dirfd(dir), entry->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
            continue;
        total += st.st_size;
        /* gNNNNNNNN-base.db.gz[.age]: the names sort as the generations do. */
        size_t length = strlen(entry->d_name);
        if (length < sizeof newest_name && spool_is_base(entry->d_name, length) &&
            strcmp(entry->d_name, newest_name) > 0) {
            snprintf(newest_name, sizeof newest_name, "%s", entry->d_name);
            newest_base = st.st_size;
        }
    }
    closedir(dir);
    return total - newest_base;
}

int replica_spool_directory(const char *state_dir, const char *database, char *out, size_t size,
                            struct error *err)
{
    char directory[PATH_MAX];
    snprintf(directory, sizeof directory, "%s/replica", state_dir);
    if (fs_join(out, size, directory, database) != 0)
        return error_set(err, -ENAMETOOLONG, "%s: spool path too long", database);
    return 0;
}

int replica_open(const struct database_config *db, const char *state_dir, struct state *state,
                 const volatile sig_atomic_t *stop, struct replica **out, struct error *err)
{
    struct replica *r = calloc(1, sizeof *r);
    int rc;

    *out = NULL;
    if (!r)
        return error_set(err, -ENOMEM, "out of memory");
    r->db = db;
    r->stop = stop;
    r->state = state;
    r->wal_size = -2;
    delta_span_init(&r->span);
    for (int i = 0; i < DELTA_LEVELS - 1; i++)
        r->levels[i] = (struct delta_pages){.fd = -1};
    pin_init(&r->pin, db, stop);
    snprintf(r->wal_path, sizeof r->wal_path, "%s-wal", db->path);
    if ((rc = replica_spool_directory(state_dir, db->name, r->spool, sizeof r->spool, err)) < 0)
        goto fail;
    if ((rc = fs_make_directories(r->spool, 0700, err)) < 0 ||
        (rc = state_get_replica(r->state, db->name, &r->row, err)) < 0 ||
        (rc = spool_clean(r, err)) < 0)
        goto fail;
    /* A span seen by a process that is gone: its frames are not all known. */
    static const char *const delta_files[] = {DELTA_SPOOL_OPEN, DELTA_SPOOL_CLOSED,
                                              DELTA_SPOOL_PLAIN, DELTA_SPOOL_LEVEL "2",
                                              DELTA_SPOOL_LEVEL "3"};
    for (size_t i = 0; i < sizeof delta_files / sizeof *delta_files; i++) {
        char path[PATH_MAX];
        if (fs_join(path, sizeof path, r->spool, delta_files[i]) == 0)
            unlink(path);
    }
    r->spool_full = r->row.db_inode == 0 && strcmp(r->row.last_break, "spool_full") == 0;
    *out = r;
    return 0;
fail:
    replica_close(r);
    return rc;
}

void replica_close(struct replica *r)
{
    if (!r)
        return;
    delta_job_cancel(r->delta_job);
    delta_span_drop(&r->span);
    for (int i = 0; i < DELTA_LEVELS - 1; i++)
        delta_pages_free(&r->levels[i]);
    pin_close(&r->pin);
    free(r);
}
