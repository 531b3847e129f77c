/*
 * test_wal_writer.h: what the WAL tests (test_wal*.c) share: a scratch
 * directory, an application connection that commits through SQLite with
 * wal_autocheckpoint off and records what SQLite says after each commit
 * (the wal hook's frame count, the page count), a whole-file scan with the
 * reader, and the file surgery the damage tests do.
 */
#ifndef SQLPRODD_TEST_WAL_WRITER_H
#define SQLPRODD_TEST_WAL_WRITER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replicate/wal.h"

enum { MAX_COMMITS = 512 };

struct fixture {
    char root[PATH_MAX];
};

/* An application connection writing a WAL database, and what SQLite said
 * after each of its commits. */
struct writer {
    sqlite3 *db;
    char path[PATH_MAX];
    char wal_path[PATH_MAX + 8];
    uint32_t page_size;
    int commits;
    uint32_t frames_after[MAX_COMMITS]; /* mxFrame after commit i (wal hook) */
    uint32_t pages_after[MAX_COMMITS];  /* page_count after commit i */
    uint32_t last_hook_frames;
};

/* What the reader found in a whole WAL file. */
struct scan {
    int rc;
    int commits;
    uint64_t frames;
    uint64_t commit_index[MAX_COMMITS];
    uint32_t commit_size[MAX_COMMITS];
    struct wal_position committed;
    struct wal_position next;
    enum wal_stop stop;
    struct wal_header header;
};

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->root, sizeof f->root, "%s/sqlprodd-wal-XXXXXX", tmp);
    if (!mkdtemp(f->root))
        return -1;
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static inline int writer_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct writer *w = arg;
    (void)db;
    (void)name;
    w->last_hook_frames = (uint32_t)frames;
    return SQLITE_OK;
}

static inline void exec_ok(sqlite3 *db, const char *sql)
{
    char *message = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &message);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, message ? message : sqlite3_errstr(rc));
}

static inline int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    int64_t value;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

static inline void writer_open(struct writer *w, const struct fixture *f, const char *name,
                               uint32_t page_size)
{
    char sql[128];

    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s/%s", f->root, name);
    snprintf(w->wal_path, sizeof w->wal_path, "%s-wal", w->path);
    w->page_size = page_size;
    assert_int_equal(sqlite3_open(w->path, &w->db), SQLITE_OK);
    snprintf(sql, sizeof sql, "PRAGMA page_size=%u", page_size);
    exec_ok(w->db, sql);
    exec_ok(w->db, "PRAGMA journal_mode=WAL");
    exec_ok(w->db, "PRAGMA wal_autocheckpoint=0");
    exec_ok(w->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    assert_int_equal(query_int(w->db, "PRAGMA page_size"), page_size);
    /* The hook also disables the autocheckpoint, which uses the same slot. */
    sqlite3_wal_hook(w->db, writer_hook, w);
}

/* One transaction that changes about `pages` pages: a row whose blob
 * overflows into that many pages, plus the b-tree pages it touches. */
static inline void writer_commit(struct writer *w, int pages)
{
    char sql[160];

    assert_true(w->commits < MAX_COMMITS);
    w->last_hook_frames = 0;
    snprintf(sql, sizeof sql, "BEGIN; INSERT INTO t(v) VALUES (randomblob(%d)); COMMIT;",
             pages * (int)w->page_size - 100);
    exec_ok(w->db, sql);
    assert_true(w->last_hook_frames > 0);
    w->frames_after[w->commits] = w->last_hook_frames;
    w->pages_after[w->commits] = (uint32_t)query_int(w->db, "PRAGMA page_count");
    w->commits++;
}

static inline void writer_close(struct writer *w)
{
    if (w->db)
        sqlite3_close(w->db);
    w->db = NULL;
}

static inline void scan_path(const char *path, struct scan *s)
{
    struct wal_reader reader;
    struct wal_frame frame;
    struct error err = {0};
    int fd = open(path, O_RDONLY);
    int rc;

    memset(s, 0, sizeof *s);
    assert_true(fd >= 0);
    s->rc = wal_reader_open(&reader, fd, path, &err);
    if (s->rc < 0) {
        close(fd);
        return;
    }
    s->header = reader.header;
    while ((rc = wal_reader_next(&reader, &frame, &err)) > 0) {
        s->frames++;
        assert_int_equal(frame.index, s->frames);
        assert_true(frame.page_number >= 1);
        if (frame.commit_size != 0) {
            assert_true(s->commits < MAX_COMMITS);
            s->commit_index[s->commits] = frame.index;
            s->commit_size[s->commits] = frame.commit_size;
            s->commits++;
        }
    }
    assert_int_equal(rc, 0);
    s->committed = reader.committed;
    s->next = reader.next;
    s->stop = reader.stop;
    wal_reader_close(&reader);
    close(fd);
}

static inline uint64_t frame_size_of(uint32_t page_size)
{
    return WAL_FRAME_HEADER_SIZE + (uint64_t)page_size;
}

static inline uint64_t offset_after_frame(uint32_t page_size, uint64_t frames)
{
    return WAL_HEADER_SIZE + frames * frame_size_of(page_size);
}

/* Copies the first `length` bytes of `from` (all when length is -1). */
static inline void copy_file(const char *from, const char *to, long long length)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    char buffer[65536];
    long long copied = 0;
    size_t n;

    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0) {
        if (length >= 0 && copied + (long long)n > length)
            n = (size_t)(length - copied);
        assert_int_equal(fwrite(buffer, 1, n, out), n);
        copied += (long long)n;
        if (length >= 0 && copied >= length)
            break;
    }
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static inline long long file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long long)st.st_size;
}

static inline void flip_byte(const char *path, long long offset)
{
    int fd = open(path, O_RDWR);
    uint8_t byte;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, offset), 1);
    byte ^= 0x5a;
    assert_int_equal(pwrite(fd, &byte, 1, offset), 1);
    close(fd);
}

/* Rows a plain sqlite3 connection sees in a copy of the database whose
 * -wal is `wal_copy` (SQLite's own recovery replays the WAL). */
static inline int64_t rows_sqlite_replays(const struct fixture *f, const struct writer *w,
                                          const char *wal_copy, const char *name)
{
    char db_copy[PATH_MAX + 16], wal_target[PATH_MAX + 32];
    sqlite3 *db = NULL;
    int64_t rows;

    snprintf(db_copy, sizeof db_copy, "%s/%s.db", f->root, name);
    snprintf(wal_target, sizeof wal_target, "%s-wal", db_copy);
    copy_file(w->path, db_copy, -1);
    copy_file(wal_copy, wal_target, -1);
    assert_int_equal(sqlite3_open_v2(db_copy, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    rows = query_int(db, "SELECT count(*) FROM t");
    sqlite3_close(db);
    return rows;
}

/* The test's own checksum, written from the file format document and not
 * shared with the reader, so a reader that ignored the byte order fails. */
static inline void reference_checksum(bool big_endian, const uint8_t *data, uint32_t size,
                                      uint32_t c[2])
{
    for (uint32_t i = 0; i < size; i += 8) {
        uint32_t x[2];
        for (int k = 0; k < 2; k++) {
            const uint8_t *p = data + i + 4 * k;
            x[k] = big_endian
                       ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
                       : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
        }
        c[0] += x[0] + c[1];
        c[1] += x[1] + c[0];
    }
}

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Rewrites the magic and every checksum of a WAL in the given byte order,
 * as a machine of that order writing the same frames would have: used to
 * make a big-endian WAL from a real one, and to keep the chain valid
 * around a frame the test changed on purpose. */
static inline void rewrite_checksums(const char *path, uint32_t page_size, bool big_endian)
{
    int fd = open(path, O_RDWR);
    uint8_t header[WAL_HEADER_SIZE];
    uint8_t *frame = malloc(frame_size_of(page_size));
    uint32_t c[2] = {0, 0};
    off_t offset = WAL_HEADER_SIZE;

    assert_true(fd >= 0);
    assert_non_null(frame);
    assert_int_equal(pread(fd, header, sizeof header, 0), sizeof header);
    put32(header, big_endian ? WAL_MAGIC_BIG : WAL_MAGIC_LITTLE);
    reference_checksum(big_endian, header, 24, c);
    put32(header + 24, c[0]);
    put32(header + 28, c[1]);
    assert_int_equal(pwrite(fd, header, sizeof header, 0), sizeof header);
    while (pread(fd, frame, frame_size_of(page_size), offset) ==
           (ssize_t)frame_size_of(page_size)) {
        reference_checksum(big_endian, frame, 8, c);
        reference_checksum(big_endian, frame + WAL_FRAME_HEADER_SIZE, page_size, c);
        put32(frame + 16, c[0]);
        put32(frame + 20, c[1]);
        assert_int_equal(pwrite(fd, frame, WAL_FRAME_HEADER_SIZE, offset), WAL_FRAME_HEADER_SIZE);
        offset += (off_t)frame_size_of(page_size);
    }
    free(frame);
    close(fd);
}

#endif
