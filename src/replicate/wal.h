/*
 * wal.h: a reader of SQLite's write-ahead log file, for shipping it.
 *
 * It parses the 32-byte WAL header and walks the frames with the cumulative
 * checksum chain and the salts, exactly as SQLite's own recovery does
 * (https://www.sqlite.org/fileformat2.html#walformat, "4.1 WAL File Format"
 * and "4.3 Checksum Algorithm"; wal.c: walIndexRecover, walDecodeFrame), so
 * that what it accepts is what `sqlite3` replays from the same bytes. It
 * reports each frame's page number and commit marker and keeps the position
 * just after the last valid commit frame: frames after it are not committed
 * and must never be shipped.
 *
 * A position (offset, running checksum, salts) can be saved and resumed
 * without rereading the file from its start; resuming tells a WAL that still
 * continues from one that was restarted (new salts) or that no longer holds
 * the saved chain.
 *
 * What it is not: it never opens the file through SQLite, never takes
 * SQLite's locks and never writes. The caller owns the fd and decides what a
 * stop means (a frame being written now looks like a torn one); holding a
 * read transaction so the bytes stay put is the caller's job too. Memory is
 * one buffer of one frame (at most 64 KiB + 24 bytes).
 */
#ifndef SQLPRODD_REPLICATE_WAL_H
#define SQLPRODD_REPLICATE_WAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

#define WAL_HEADER_SIZE       32
#define WAL_FRAME_HEADER_SIZE 24
#define WAL_MAGIC_LITTLE      0x377f0682u /* checksums over little-endian words */
#define WAL_MAGIC_BIG         0x377f0683u /* checksums over big-endian words */
#define WAL_VERSION           3007000u

/* The WAL header, every field as SQLite stores it (big-endian on disk). */
struct wal_header {
    uint32_t magic;
    uint32_t version;
    uint32_t page_size; /* 512..65536, a power of two */
    uint32_t checkpoint_sequence;
    uint32_t salt[2];
    uint32_t checksum[2];     /* over the first 24 bytes */
    bool big_endian_checksum; /* magic & 1 */
};

/*
 * Where to continue reading one generation of a WAL (one header, one salt
 * pair). Saved only at a frame boundary; the agent saves the one after the
 * last commit it shipped. Plain data: it can be stored and read back as is.
 */
struct wal_position {
    uint64_t offset;      /* byte offset of the next frame */
    uint64_t frame_index; /* frames before offset (1-based index of the next is +1) */
    uint32_t checksum[2]; /* checksum of the frame before offset, or of the header */
    uint32_t salt[2];
    uint32_t page_size;
    uint32_t checkpoint_sequence;
    bool big_endian_checksum;
};

/* One frame the chain accepted. `page` points into the reader's buffer and
 * stays valid until the next call on the reader. */
struct wal_frame {
    uint64_t offset;      /* of the frame header in the file */
    uint64_t index;       /* 1 for the first frame after the header */
    uint32_t page_number; /* >= 1 */
    uint32_t commit_size; /* database size in pages after this commit; 0: not a commit */
    const uint8_t *page;  /* page_size bytes */
};

/* Why wal_reader_next stopped. Only the caller can tell a frame being
 * written now (a write in progress) from a damaged one: check again later,
 * or under the write lock. */
enum wal_stop {
    WAL_STOP_NONE = 0,  /* not stopped yet */
    WAL_STOP_END,       /* end of file exactly at a frame boundary */
    WAL_STOP_SHORT,     /* fewer bytes than one frame: torn or being written */
    WAL_STOP_SALT,      /* salts differ from the header's: an older generation's frame */
    WAL_STOP_CHECKSUM,  /* salts match, checksum does not: torn, being written, or damaged */
    WAL_STOP_PAGE_ZERO, /* page number 0, which no frame may name */
};

/* What wal_reader_resume found. */
enum wal_resume {
    WAL_RESUME_CONTINUES = 0, /* same generation, the saved chain is still there */
    WAL_RESUME_RESTARTED,     /* another header (new salts, page size or byte order) */
    WAL_RESUME_BROKEN,        /* same header, but the saved frame is gone or differs */
    WAL_RESUME_NO_HEADER,     /* the file holds no complete header (truncated, or empty) */
};

struct wal_reader {
    int fd;                        /* owned by the caller */
    const char *path;              /* for messages only */
    struct wal_header header;      /* of the generation being read */
    struct wal_position next;      /* after the last accepted frame */
    struct wal_position committed; /* after the last accepted commit frame */
    enum wal_stop stop;
    uint8_t *buffer; /* WAL_FRAME_HEADER_SIZE + page_size bytes */
    /* Read-ahead (wal_reader_read_ahead): bytes [ahead_offset, + ahead_length). */
    uint8_t *ahead;
    size_t ahead_capacity, ahead_length;
    uint64_t ahead_offset;
};

/* Parses and validates 32 header bytes: magic, version 3007000, page size
 * and the header checksum. 0, or -EINVAL with err saying which field. */
int wal_header_parse(const uint8_t bytes[WAL_HEADER_SIZE], struct wal_header *header,
                     struct error *err);

/* The checksum of SQLite's WAL ("4.3 Checksum Algorithm"): folds `size`
 * bytes (a multiple of 8) into checksum[2], words read big-endian when
 * big_endian is true, else little-endian. */
void wal_checksum_update(bool big_endian, const uint8_t *data, uint32_t size, uint32_t checksum[2]);

/* The position of the first frame after `header`: offset 32, frame 0, the
 * header's checksum and salts. */
void wal_position_start(const struct wal_header *header, struct wal_position *start);

/* Whether the frame in `bytes` (WAL_FRAME_HEADER_SIZE + page_size of them)
 * continues the chain at `next`, as SQLite's recovery decides: salts, a
 * page number, the cumulative checksum. WAL_STOP_NONE with *frame filled
 * (its page points into `bytes`) and *next moved past it; otherwise why
 * not, *next unchanged. wal_reader_next reads a file with it; a caller
 * that has the bytes some other way (inflated from a replica) uses it
 * directly. */
enum wal_stop wal_frame_accept(struct wal_position *next, const uint8_t *bytes,
                               struct wal_frame *frame);

/*
 * Reads the header from `fd` and positions the reader at the first frame.
 * 0; -ENODATA when the file holds no complete header yet (a WAL emptied by
 * a TRUNCATE checkpoint, or never written); -EINVAL when the header is not
 * valid; -errno on a read error. `path` is only named in messages and must
 * outlive the reader.
 */
int wal_reader_open(struct wal_reader *reader, int fd, const char *path, struct error *err);

/*
 * Reopens a reader at a saved position, checking that the file still holds
 * the same generation and the frame the position follows (a 24-byte read,
 * not a rescan). Returns 0 and sets *result; on WAL_RESUME_CONTINUES the
 * reader continues at `saved`, on WAL_RESUME_RESTARTED and
 * WAL_RESUME_BROKEN it is at the first frame of the header now in the file
 * (a new generation for the caller), on WAL_RESUME_NO_HEADER it holds
 * nothing and must only be closed. A saved frame found missing is read
 * again under a fresh look at the header: a WAL restarted or emptied
 * between the two reads is RESTARTED or NO_HEADER, not BROKEN. -EINVAL (a
 * header that is not valid) or -errno on errors.
 */
int wal_reader_resume(struct wal_reader *reader, int fd, const char *path,
                      const struct wal_position *saved, enum wal_resume *result, struct error *err);

/*
 * Reads the next frame. 1 with *frame filled when the chain accepts it; 0
 * when it stops (reader->stop says why; reader->committed is the end of
 * what may be shipped); -errno on a read error. Once stopped, it stays
 * stopped until wal_reader_rewind_to_commit.
 */
int wal_reader_next(struct wal_reader *reader, struct wal_frame *frame, struct error *err);

/* Reads on until the chain stops; reader->committed is then the end of the
 * last commit. 0 or -errno. */
int wal_reader_scan(struct wal_reader *reader, struct error *err);

/* Forgets frames read past the last commit and clears the stop, so a later
 * wal_reader_next sees frames appended since (a live WAL grows). */
void wal_reader_rewind_to_commit(struct wal_reader *reader);

/* Frame size in the file for this reader's page size. */
uint64_t wal_reader_frame_size(const struct wal_reader *reader);

void wal_reader_close(struct wal_reader *reader);

/* Reads frames `bytes` at a time instead of one pread each: for a file no
 * one writes while it is read (a restore's WAL), where it cuts the system
 * calls a hundredfold. Never for a live WAL (a frame being written would be
 * kept as read). 0 or -ENOMEM (the reader then reads frame by frame). */
int wal_reader_read_ahead(struct wal_reader *reader, size_t bytes);

/*
 * Whether a whole commit of the generation `end` belongs to still follows
 * `end` in the file: after a restart, the older generation's frames stay
 * behind the new ones until overwritten, so a commit found there was made
 * after `end` and before the restart. *follows false proves nothing when
 * the new generation has already overwritten that offset. 0 or -errno.
 */
int wal_commit_follows(int fd, const char *path, const struct wal_position *end, bool *follows,
                       struct error *err);

/*
 * What the wal-index (the -shm file) says of the WAL now: its first 48-byte
 * header, which SQLite updates at every commit and restart. `last_frame` is
 * the WAL's last committed frame (mxFrame), `salt` the generation's salts as
 * the WAL header stores them. Readers and writers map this file; pread sees
 * the same pages.
 */
struct wal_index {
    uint32_t last_frame;
    uint32_t salt[2];
    uint32_t page_size;
};

/* Reads the header from the -shm `fd`, retrying while its two copies differ
 * (SQLite writes one, then the other). 0; -EAGAIN when they never agreed or
 * it is not initialised (then the caller trusts nothing); -errno. */
int wal_index_read(int fd, struct wal_index *index);

/* A name for a stop, for logs and messages. */
const char *wal_stop_name(enum wal_stop stop);

#endif
