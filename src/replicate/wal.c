/*
 * wal.c: reads SQLite's WAL file frame by frame and accepts exactly the
 * frames SQLite's recovery would (see wal.h for what it is not for).
 *
 * The rules, from https://www.sqlite.org/fileformat2.html#walformat and
 * SQLite's wal.c (walIndexRecover, walDecodeFrame):
 * - the header's magic says in which byte order the checksum reads its
 *   32-bit words (0x377f0683: big-endian); every stored integer is
 *   big-endian whatever the magic says;
 * - the header's checksum covers its first 24 bytes, starting from 0,0;
 * - a frame is valid when its salts equal the header's, its page number is
 *   not 0, and its checksum equals the running checksum folded over its
 *   first 8 header bytes and then its page, starting from the previous
 *   frame's checksum (the header's for the first frame);
 * - recovery stops at the first frame that is not valid, and only frames up
 *   to the last valid commit frame (nonzero "size after commit") count.
 */
#include "replicate/wal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"

static uint32_t wal_get32_big(const uint8_t *bytes)
{
    return ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) | ((uint32_t)bytes[2] << 8) |
           (uint32_t)bytes[3];
}

static uint32_t wal_get32_little(const uint8_t *bytes)
{
    return ((uint32_t)bytes[3] << 24) | ((uint32_t)bytes[2] << 16) | ((uint32_t)bytes[1] << 8) |
           (uint32_t)bytes[0];
}

void wal_checksum_update(bool big_endian, const uint8_t *data, uint32_t size, uint32_t checksum[2])
{
    uint32_t s0 = checksum[0];
    uint32_t s1 = checksum[1];

    /* SQLite only ever checksums 8-byte multiples (24-byte header prefix,
     * 8-byte frame header prefix, pages of at least 512 bytes). */
    assert(size % 8 == 0);
    if (big_endian) {
        for (uint32_t i = 0; i < size; i += 8) {
            s0 += wal_get32_big(data + i) + s1;
            s1 += wal_get32_big(data + i + 4) + s0;
        }
    } else {
        for (uint32_t i = 0; i < size; i += 8) {
            s0 += wal_get32_little(data + i) + s1;
            s1 += wal_get32_little(data + i + 4) + s0;
        }
    }
    checksum[0] = s0;
    checksum[1] = s1;
}

int wal_header_parse(const uint8_t bytes[WAL_HEADER_SIZE], struct wal_header *header,
                     struct error *err)
{
    struct wal_header h = {0};
    uint32_t computed[2] = {0, 0};

    h.magic = wal_get32_big(bytes);
    h.version = wal_get32_big(bytes + 4);
    h.page_size = wal_get32_big(bytes + 8);
    h.checkpoint_sequence = wal_get32_big(bytes + 12);
    h.salt[0] = wal_get32_big(bytes + 16);
    h.salt[1] = wal_get32_big(bytes + 20);
    h.checksum[0] = wal_get32_big(bytes + 24);
    h.checksum[1] = wal_get32_big(bytes + 28);

    if (h.magic != WAL_MAGIC_LITTLE && h.magic != WAL_MAGIC_BIG)
        return error_set(err, -EINVAL,
                         "magic number 0x%08x is neither 0x377f0682 nor 0x377f0683: "
                         "not a SQLite WAL file",
                         h.magic);
    h.big_endian_checksum = (h.magic & 1) != 0;
    if (h.version != WAL_VERSION)
        return error_set(err, -EINVAL,
                         "format version %u is not %u, the only WAL version SQLite writes",
                         h.version, WAL_VERSION);
    if (h.page_size < 512 || h.page_size > 65536 || (h.page_size & (h.page_size - 1)) != 0)
        return error_set(err, -EINVAL, "page size %u is not a power of two between 512 and 65536",
                         h.page_size);
    wal_checksum_update(h.big_endian_checksum, bytes, 24, computed);
    if (computed[0] != h.checksum[0] || computed[1] != h.checksum[1])
        return error_set(err, -EINVAL,
                         "header checksum 0x%08x%08x does not match its bytes (0x%08x%08x): "
                         "the header is torn or damaged",
                         h.checksum[0], h.checksum[1], computed[0], computed[1]);
    *header = h;
    return 0;
}

/* pread until `size` bytes or end of file; the count read, or -errno. */
static int64_t wal_read_at(int fd, uint8_t *buffer, size_t size, uint64_t offset)
{
    return io_read_full_at(fd, buffer, size, (int64_t)offset);
}

/* One frame into reader->buffer through the read-ahead buffer; the bytes
 * got (fewer at the end of the file), or -errno. */
static int64_t wal_read_ahead_at(struct wal_reader *reader, size_t size, uint64_t offset)
{
    if (offset < reader->ahead_offset ||
        offset + size > reader->ahead_offset + reader->ahead_length) {
        int64_t got = io_read_full_at(reader->fd, reader->ahead, reader->ahead_capacity,
                                      (int64_t)offset);
        if (got < 0)
            return got;
        reader->ahead_offset = offset;
        reader->ahead_length = (size_t)got;
    }
    size_t available = (size_t)(reader->ahead_offset + reader->ahead_length - offset);
    size_t copied = available < size ? available : size;
    memcpy(reader->buffer, reader->ahead + (offset - reader->ahead_offset), copied);
    return (int64_t)copied;
}

int wal_reader_read_ahead(struct wal_reader *reader, size_t bytes)
{
    size_t frame = (size_t)wal_reader_frame_size(reader);
    if (bytes < frame)
        bytes = frame;
    uint8_t *ahead = malloc(bytes);
    if (!ahead)
        return -ENOMEM;
    free(reader->ahead);
    reader->ahead = ahead;
    reader->ahead_capacity = bytes;
    reader->ahead_length = 0;
    reader->ahead_offset = 0;
    return 0;
}

uint64_t wal_reader_frame_size(const struct wal_reader *reader)
{
    return WAL_FRAME_HEADER_SIZE + (uint64_t)reader->header.page_size;
}

void wal_position_start(const struct wal_header *header, struct wal_position *p)
{
    memset(p, 0, sizeof *p);
    p->offset = WAL_HEADER_SIZE;
    p->frame_index = 0;
    p->checksum[0] = header->checksum[0];
    p->checksum[1] = header->checksum[1];
    p->salt[0] = header->salt[0];
    p->salt[1] = header->salt[1];
    p->page_size = header->page_size;
    p->checkpoint_sequence = header->checkpoint_sequence;
    p->big_endian_checksum = header->big_endian_checksum;
}

static void wal_position_at_start(struct wal_reader *reader)
{
    wal_position_start(&reader->header, &reader->next);
    reader->committed = reader->next;
    reader->stop = WAL_STOP_NONE;
}

int wal_reader_open(struct wal_reader *reader, int fd, const char *path, struct error *err)
{
    uint8_t bytes[WAL_HEADER_SIZE];
    int64_t got;
    int rc;

    memset(reader, 0, sizeof *reader);
    reader->fd = fd;
    reader->path = path;
    got = wal_read_at(fd, bytes, sizeof bytes, 0);
    if (got < 0)
        return error_set(err, (int)got, "%s: cannot read the WAL header: %s", path,
                         strerror((int)-got));
    if (got < WAL_HEADER_SIZE)
        return error_set(err, -ENODATA,
                         "%s: holds %lld bytes, no complete WAL header (empty or truncated WAL)",
                         path, (long long)got);
    rc = wal_header_parse(bytes, &reader->header, err);
    if (rc < 0) {
        error_prefix(err, "%s: ", path);
        return rc;
    }
    reader->buffer = malloc(WAL_FRAME_HEADER_SIZE + (size_t)reader->header.page_size);
    if (!reader->buffer)
        return error_set(err, -ENOMEM, "%s: no memory for one WAL frame of %u bytes", path,
                         reader->header.page_size);
    wal_position_at_start(reader);
    return 0;
}

static bool wal_same_generation(const struct wal_header *header, const struct wal_position *saved)
{
    return header->salt[0] == saved->salt[0] && header->salt[1] == saved->salt[1] &&
           header->page_size == saved->page_size &&
           header->checkpoint_sequence == saved->checkpoint_sequence &&
           header->big_endian_checksum == saved->big_endian_checksum;
}

/* Whether the file still holds the frame `saved` follows, with the same
 * salts and the same cumulative checksum: then every frame before it is the
 * one the chain was computed over. */
static int wal_saved_frame_matches(struct wal_reader *reader, const struct wal_position *saved,
                                   bool *matches, struct error *err)
{
    uint64_t frame_size = wal_reader_frame_size(reader);
    uint8_t bytes[WAL_FRAME_HEADER_SIZE];
    struct stat st;
    int64_t got;

    *matches = false;
    if (fstat(reader->fd, &st) < 0)
        return error_set(err, -errno, "%s: cannot stat the WAL: %s", reader->path, strerror(errno));
    /* A file cut short of the saved position lost frames the chain ran
     * over, even when the header of the last one is still there. */
    if ((uint64_t)st.st_size < saved->offset)
        return 0;
    if (saved->offset < WAL_HEADER_SIZE || (saved->offset - WAL_HEADER_SIZE) % frame_size != 0 ||
        (saved->offset - WAL_HEADER_SIZE) / frame_size != saved->frame_index)
        return 0;
    if (saved->frame_index == 0) {
        *matches = saved->checksum[0] == reader->header.checksum[0] &&
                   saved->checksum[1] == reader->header.checksum[1];
        return 0;
    }
    got = wal_read_at(reader->fd, bytes, sizeof bytes, saved->offset - frame_size);
    if (got < 0)
        return error_set(err, (int)got, "%s: cannot read the frame at offset %llu: %s",
                         reader->path, (unsigned long long)(saved->offset - frame_size),
                         strerror((int)-got));
    if (got < WAL_FRAME_HEADER_SIZE)
        return 0;
    *matches = wal_get32_big(bytes + 8) == saved->salt[0] &&
               wal_get32_big(bytes + 12) == saved->salt[1] &&
               wal_get32_big(bytes + 16) == saved->checksum[0] &&
               wal_get32_big(bytes + 20) == saved->checksum[1];
    return 0;
}

/* Whether the file still begins with the header the reader read: its salts
 * and checksum, the bytes a restart or a truncation changes. */
static bool wal_header_still_there(const struct wal_reader *reader)
{
    uint8_t bytes[WAL_HEADER_SIZE];
    if (wal_read_at(reader->fd, bytes, sizeof bytes, 0) != WAL_HEADER_SIZE)
        return false;
    return wal_get32_big(bytes + 16) == reader->header.salt[0] &&
           wal_get32_big(bytes + 20) == reader->header.salt[1] &&
           wal_get32_big(bytes + 24) == reader->header.checksum[0] &&
           wal_get32_big(bytes + 28) == reader->header.checksum[1];
}

/* How often a resume reads again a WAL that restarted while it was read. */
#define WAL_RESUME_ATTEMPTS 4

int wal_reader_resume(struct wal_reader *reader, int fd, const char *path,
                      const struct wal_position *saved, enum wal_resume *result, struct error *err)
{
    for (int attempt = 1;; attempt++) {
        bool matches = false;
        int rc = wal_reader_open(reader, fd, path, err);
        if (rc == -ENODATA) {
            error_clear(err);
            *result = WAL_RESUME_NO_HEADER;
            return 0;
        }
        if (rc < 0)
            return rc;
        if (!wal_same_generation(&reader->header, saved)) {
            *result = WAL_RESUME_RESTARTED;
            return 0;
        }
        rc = wal_saved_frame_matches(reader, saved, &matches, err);
        if (rc < 0)
            return rc;
        if (matches) {
            reader->next = *saved;
            reader->committed = *saved;
            *result = WAL_RESUME_CONTINUES;
            return 0;
        }
        /* The header and the saved frame are two reads: a checkpoint that
         * restarted or truncated the WAL between them (which a pin on read
         * mark 0 allows at any moment) left a new header, not a broken
         * chain. Only a frame missing under the header still there is. */
        if (wal_header_still_there(reader) || attempt == WAL_RESUME_ATTEMPTS) {
            *result = WAL_RESUME_BROKEN;
            return 0;
        }
        wal_reader_close(reader);
    }
}

int wal_reader_next(struct wal_reader *reader, struct wal_frame *frame, struct error *err)
{
    struct wal_position *next = &reader->next;
    uint64_t frame_size = wal_reader_frame_size(reader);
    const uint8_t *bytes = reader->buffer;
    int64_t got;

    assert(reader->buffer != NULL);
    assert(next->page_size == reader->header.page_size);
    if (reader->stop != WAL_STOP_NONE)
        return 0;
    got = reader->ahead ? wal_read_ahead_at(reader, (size_t)frame_size, next->offset)
                        : wal_read_at(reader->fd, reader->buffer, (size_t)frame_size, next->offset);
    if (got < 0)
        return error_set(err, (int)got, "%s: cannot read the WAL frame at offset %llu: %s",
                         reader->path, (unsigned long long)next->offset, strerror((int)-got));
    if ((uint64_t)got < frame_size) {
        reader->stop = got == 0 ? WAL_STOP_END : WAL_STOP_SHORT;
        return 0;
    }
    reader->stop = wal_frame_accept(next, bytes, frame);
    if (reader->stop != WAL_STOP_NONE)
        return 0;
    if (frame->commit_size != 0)
        reader->committed = *next;
    assert(reader->committed.offset <= next->offset);
    return 1;
}

enum wal_stop wal_frame_accept(struct wal_position *next, const uint8_t *bytes,
                               struct wal_frame *frame)
{
    uint32_t checksum[2];
    if (wal_get32_big(bytes + 8) != next->salt[0] || wal_get32_big(bytes + 12) != next->salt[1])
        return WAL_STOP_SALT;
    if (wal_get32_big(bytes) == 0)
        return WAL_STOP_PAGE_ZERO;
    checksum[0] = next->checksum[0];
    checksum[1] = next->checksum[1];
    wal_checksum_update(next->big_endian_checksum, bytes, 8, checksum);
    wal_checksum_update(next->big_endian_checksum, bytes + WAL_FRAME_HEADER_SIZE, next->page_size,
                        checksum);
    if (checksum[0] != wal_get32_big(bytes + 16) || checksum[1] != wal_get32_big(bytes + 20))
        return WAL_STOP_CHECKSUM;

    frame->offset = next->offset;
    frame->index = next->frame_index + 1;
    frame->page_number = wal_get32_big(bytes);
    frame->commit_size = wal_get32_big(bytes + 4);
    frame->page = bytes + WAL_FRAME_HEADER_SIZE;

    next->offset += WAL_FRAME_HEADER_SIZE + (uint64_t)next->page_size;
    next->frame_index++;
    next->checksum[0] = checksum[0];
    next->checksum[1] = checksum[1];
    return WAL_STOP_NONE;
}

int wal_reader_scan(struct wal_reader *reader, struct error *err)
{
    struct wal_frame frame;
    int rc;

    while ((rc = wal_reader_next(reader, &frame, err)) > 0)
        ;
    return rc;
}

void wal_reader_rewind_to_commit(struct wal_reader *reader)
{
    reader->next = reader->committed;
    reader->stop = WAL_STOP_NONE;
    reader->ahead_length = 0; /* read again what was appended since */
}

int wal_commit_follows(int fd, const char *path, const struct wal_position *end, bool *follows,
                       struct error *err)
{
    struct wal_reader reader = {.fd = fd, .path = path};
    *follows = false;
    if (end->page_size < 512 || end->page_size > 65536)
        return 0;
    reader.header.page_size = end->page_size;
    reader.header.big_endian_checksum = end->big_endian_checksum;
    reader.header.salt[0] = end->salt[0];
    reader.header.salt[1] = end->salt[1];
    reader.buffer = malloc(WAL_FRAME_HEADER_SIZE + (size_t)end->page_size);
    if (!reader.buffer)
        return error_set(err, -ENOMEM, "out of memory");
    reader.next = reader.committed = *end;
    int rc = wal_reader_scan(&reader, err);
    *follows = reader.committed.offset > end->offset;
    wal_reader_close(&reader);
    return rc;
}

void wal_reader_close(struct wal_reader *reader)
{
    free(reader->buffer);
    reader->buffer = NULL;
    free(reader->ahead);
    reader->ahead = NULL;
}

/* WalIndexHdr (wal.c in SQLite), native byte order, twice in a row: iVersion
 * u32 at 0, isInit u8 at 12, szPage u16 at 14 (1 means 65536), mxFrame u32
 * at 16, aSalt[2] at 32 (the bytes of the WAL header, big-endian). */
#define WAL_INDEX_HEADER_SIZE 48

int wal_index_read(int fd, struct wal_index *index)
{
    uint8_t bytes[2 * WAL_INDEX_HEADER_SIZE];
    for (int attempt = 0; attempt < 100; attempt++) {
        ssize_t got = pread(fd, bytes, sizeof bytes, 0);
        if (got < 0)
            return -errno;
        if ((size_t)got < sizeof bytes)
            return -EAGAIN;
        if (memcmp(bytes, bytes + WAL_INDEX_HEADER_SIZE, WAL_INDEX_HEADER_SIZE) != 0 ||
            bytes[12] == 0)
            continue;
        uint16_t page_size;
        uint32_t last_frame;
        memcpy(&page_size, bytes + 14, sizeof page_size);
        memcpy(&last_frame, bytes + 16, sizeof last_frame);
        index->page_size = page_size == 1 ? 65536 : page_size;
        index->last_frame = last_frame;
        index->salt[0] = wal_get32_big(bytes + 32);
        index->salt[1] = wal_get32_big(bytes + 36);
        return 0;
    }
    return -EAGAIN;
}

const char *wal_stop_name(enum wal_stop stop)
{
    switch (stop) {
    case WAL_STOP_NONE: return "not stopped";
    case WAL_STOP_END: return "end of file";
    case WAL_STOP_SHORT: return "partial frame at the end";
    case WAL_STOP_SALT: return "frame of another WAL generation (salts differ)";
    case WAL_STOP_CHECKSUM: return "checksum chain broken";
    case WAL_STOP_PAGE_ZERO: return "frame names page 0";
    }
    return "unknown";
}
