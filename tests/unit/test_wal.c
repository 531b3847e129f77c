/*
 * test_wal.c: the WAL reader on WAL files written by SQLite itself.
 *
 * Each test commits transactions through the SQLite library with
 * wal_autocheckpoint off and records, after each commit, what SQLite says
 * the WAL holds: the wal hook's frame count (the WAL's mxFrame) and the
 * database size in pages. The reader must find exactly those commit frames.
 * Damaged WALs (torn, flipped byte, big-endian checksums) are made from
 * those real files, and where it matters SQLite is asked to replay the same
 * bytes, so the reader and SQLite are checked against each other.
 */
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

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->root, sizeof f->root, "%s/sqlprodd-wal-XXXXXX", tmp);
    if (!mkdtemp(f->root))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int writer_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct writer *w = arg;
    (void)db;
    (void)name;
    w->last_hook_frames = (uint32_t)frames;
    return SQLITE_OK;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *message = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &message);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, message ? message : sqlite3_errstr(rc));
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    int64_t value;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

static void writer_open(struct writer *w, const struct fixture *f, const char *name,
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
static void writer_commit(struct writer *w, int pages)
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

static void writer_close(struct writer *w)
{
    if (w->db)
        sqlite3_close(w->db);
    w->db = NULL;
}

static void scan_path(const char *path, struct scan *s)
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

static uint64_t frame_size_of(uint32_t page_size)
{
    return WAL_FRAME_HEADER_SIZE + (uint64_t)page_size;
}

static uint64_t offset_after_frame(uint32_t page_size, uint64_t frames)
{
    return WAL_HEADER_SIZE + frames * frame_size_of(page_size);
}

/* Copies the first `length` bytes of `from` (all when length is -1). */
static void copy_file(const char *from, const char *to, long long length)
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

static long long file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long long)st.st_size;
}

static void flip_byte(const char *path, long long offset)
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
static int64_t rows_sqlite_replays(const struct fixture *f, const struct writer *w,
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

/* ---------------------------------------------------------------- tests */

static void check_commits_match_sqlite(const struct fixture *f, uint32_t page_size)
{
    struct writer w;
    struct scan s;
    char name[32];

    snprintf(name, sizeof name, "p%u.db", page_size);
    writer_open(&w, f, name, page_size);
    for (int i = 0; i < 12; i++)
        writer_commit(&w, 1 + i % 5);
    /* Read in place while the writer keeps the WAL open. */
    scan_path(w.wal_path, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.header.page_size, page_size);
    /* The table's creation is one more commit before ours. */
    assert_int_equal(s.commits, w.commits + 1);
    for (int i = 0; i < w.commits; i++) {
        assert_int_equal(s.commit_index[i + 1], w.frames_after[i]);
        assert_int_equal(s.commit_size[i + 1], w.pages_after[i]);
        /* several pages per transaction, as committed */
        assert_true(s.commit_index[i + 1] - s.commit_index[i] >= (uint64_t)(1 + i % 5));
    }
    assert_int_equal(s.frames, w.frames_after[w.commits - 1]);
    assert_int_equal(s.committed.offset, offset_after_frame(page_size, s.frames));
    assert_int_equal(s.committed.frame_index, s.frames);
    assert_int_equal(s.stop, WAL_STOP_END);
    assert_int_equal((long long)s.committed.offset, file_size(w.wal_path));
    writer_close(&w);
}

static void commit_frames_match_sqlite_for_page_sizes(void **state)
{
    check_commits_match_sqlite(*state, 1024);
    check_commits_match_sqlite(*state, 4096);
    check_commits_match_sqlite(*state, 65536);
}

static void frames_after_the_last_commit_are_not_committed(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    char cut[PATH_MAX + 16];

    writer_open(&w, f, "uncommitted.db", 1024);
    writer_commit(&w, 2);
    writer_commit(&w, 6);
    /* The WAL as it is while the second transaction's frames are being
     * written: every frame whole and valid, the commit frame not there yet. */
    snprintf(cut, sizeof cut, "%s/cut-wal", f->root);
    copy_file(w.wal_path, cut, (long long)offset_after_frame(1024, w.frames_after[1] - 1));
    scan_path(cut, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.stop, WAL_STOP_END);
    assert_int_equal(s.frames, w.frames_after[1] - 1);
    assert_int_equal(s.commit_index[s.commits - 1], w.frames_after[0]);
    assert_int_equal(s.committed.offset, offset_after_frame(1024, w.frames_after[0]));
    assert_true(s.next.offset > s.committed.offset);
    /* SQLite agrees: only the first transaction's row is there. */
    assert_int_equal(rows_sqlite_replays(f, &w, cut, "uncommitted-copy"), 1);
    writer_close(&w);
}

static void torn_last_frame_is_not_accepted(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    char torn[PATH_MAX + 16];

    writer_open(&w, f, "torn.db", 4096);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 3);
    snprintf(torn, sizeof torn, "%s/torn-wal", f->root);
    /* The last frame (the last commit) cut in the middle of its page. */
    copy_file(w.wal_path, torn, file_size(w.wal_path) - 2000);
    scan_path(torn, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.stop, WAL_STOP_SHORT);
    assert_int_equal(s.frames, w.frames_after[3] - 1);
    assert_int_equal(s.commit_index[s.commits - 1], w.frames_after[2]);
    assert_int_equal(s.committed.offset, offset_after_frame(4096, w.frames_after[2]));
    assert_int_equal(rows_sqlite_replays(f, &w, torn, "torn-copy"), 3);
    writer_close(&w);
}

static void flipped_byte_stops_the_chain_there(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    char damaged[PATH_MAX + 16];
    uint64_t bad_frame;

    writer_open(&w, f, "flipped.db", 1024);
    for (int i = 0; i < 6; i++)
        writer_commit(&w, 3);
    snprintf(damaged, sizeof damaged, "%s/flipped-wal", f->root);
    copy_file(w.wal_path, damaged, -1);
    /* A byte in the page of the second frame of the fourth transaction;
     * every frame after it is intact on its own, but the chain is broken. */
    bad_frame = w.frames_after[2] + 2;
    flip_byte(damaged,
              (long long)(offset_after_frame(1024, bad_frame - 1) + WAL_FRAME_HEADER_SIZE + 500));
    scan_path(damaged, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.stop, WAL_STOP_CHECKSUM);
    assert_int_equal(s.frames, bad_frame - 1);
    assert_int_equal(s.commit_index[s.commits - 1], w.frames_after[2]);
    assert_int_equal(s.committed.offset, offset_after_frame(1024, w.frames_after[2]));
    /* SQLite's recovery stops at the same commit. */
    assert_int_equal(rows_sqlite_replays(f, &w, damaged, "flipped-copy"), 3);
    writer_close(&w);
}

/* The test's own checksum, written from the file format document and not
 * shared with the reader, so a reader that ignored the byte order fails. */
static void reference_checksum(bool big_endian, const uint8_t *data, uint32_t size, uint32_t c[2])
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

static void put32(uint8_t *p, uint32_t v)
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
static void rewrite_checksums(const char *path, uint32_t page_size, bool big_endian)
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

static void big_endian_checksums_are_read_as_sqlite_reads_them(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan little, big;
    char copy[PATH_MAX + 16];

    writer_open(&w, f, "big.db", 4096);
    for (int i = 0; i < 5; i++)
        writer_commit(&w, 2);
    snprintf(copy, sizeof copy, "%s/big-wal", f->root);
    copy_file(w.wal_path, copy, -1);
    rewrite_checksums(copy, 4096, true);
    /* SQLite itself replays the rewritten file: the rewrite is right. */
    assert_int_equal(rows_sqlite_replays(f, &w, copy, "big-copy"), 5);
    scan_path(w.wal_path, &little);
    scan_path(copy, &big);
    assert_int_equal(big.rc, 0);
    assert_false(little.header.big_endian_checksum);
    assert_true(big.header.big_endian_checksum);
    assert_int_equal(big.stop, WAL_STOP_END);
    assert_int_equal(big.frames, little.frames);
    assert_int_equal(big.commits, little.commits);
    assert_memory_equal(big.commit_index, little.commit_index, sizeof big.commit_index);
    assert_int_equal(big.committed.offset, little.committed.offset);
    writer_close(&w);
}

static void frame_naming_page_zero_is_refused(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    char copy[PATH_MAX + 16];
    uint8_t zero[4] = {0, 0, 0, 0};
    int fd;

    writer_open(&w, f, "zero.db", 1024);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 2);
    snprintf(copy, sizeof copy, "%s/zero-wal", f->root);
    copy_file(w.wal_path, copy, -1);
    /* The first frame of the third transaction names page 0; the checksums
     * are made right again, so only the page number can refuse it. */
    fd = open(copy, O_RDWR);
    assert_int_equal(pwrite(fd, zero, 4, (off_t)offset_after_frame(1024, w.frames_after[1])), 4);
    close(fd);
    rewrite_checksums(copy, 1024, false);
    scan_path(copy, &s);
    assert_int_equal(s.stop, WAL_STOP_PAGE_ZERO);
    assert_int_equal(s.frames, w.frames_after[1]);
    assert_int_equal(s.committed.frame_index, w.frames_after[1]);
    /* SQLite's recovery stops there too. */
    assert_int_equal(rows_sqlite_replays(f, &w, copy, "zero-copy"), 2);
    writer_close(&w);
}

static void restarted_wal_ignores_the_older_generation(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan before, after;
    struct wal_reader reader;
    struct error err = {0};
    enum wal_resume result;
    int fd;

    writer_open(&w, f, "restart.db", 1024);
    for (int i = 0; i < 8; i++)
        writer_commit(&w, 4);
    scan_path(w.wal_path, &before);
    /* Everything checkpointed and no reader: the next writer starts the
     * WAL over from its first frame, with new salts. */
    exec_ok(w.db, "PRAGMA wal_checkpoint(PASSIVE)");
    writer_commit(&w, 1);
    assert_true(w.frames_after[8] < w.frames_after[7]);
    scan_path(w.wal_path, &after);
    assert_int_equal(after.rc, 0);
    assert_int_equal(after.header.salt[0], before.header.salt[0] + 1);
    assert_int_equal(after.header.checkpoint_sequence, before.header.checkpoint_sequence + 1);
    /* Only the new generation's frames: the old ones further on are left in
     * the file (it is not truncated) but their salts are the old ones. */
    assert_true(file_size(w.wal_path) > (long long)after.committed.offset);
    assert_int_equal(after.stop, WAL_STOP_SALT);
    assert_int_equal(after.frames, w.frames_after[8]);
    assert_int_equal(after.commits, 1);
    assert_int_equal(after.committed.offset, offset_after_frame(1024, w.frames_after[8]));

    /* A position saved in the old generation no longer continues. */
    fd = open(w.wal_path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(wal_reader_resume(&reader, fd, w.wal_path, &before.committed, &result, &err),
                     0);
    assert_int_equal(result, WAL_RESUME_RESTARTED);
    assert_int_equal(reader.next.offset, WAL_HEADER_SIZE);
    assert_int_equal(reader.header.salt[0], after.header.salt[0]);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void resume_from_a_saved_position_equals_a_full_read(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan first, full;
    struct wal_reader reader;
    struct wal_frame frame;
    struct error err = {0};
    enum wal_resume result;
    uint64_t commits_after = 0;
    int fd, rc;

    writer_open(&w, f, "resume.db", 4096);
    for (int i = 0; i < 3; i++)
        writer_commit(&w, 2);
    scan_path(w.wal_path, &first);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 3);
    scan_path(w.wal_path, &full);

    fd = open(w.wal_path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(wal_reader_resume(&reader, fd, w.wal_path, &first.committed, &result, &err),
                     0);
    assert_int_equal(result, WAL_RESUME_CONTINUES);
    while ((rc = wal_reader_next(&reader, &frame, &err)) > 0) {
        /* no frame before the saved position is read again */
        assert_true(frame.index > first.committed.frame_index);
        if (frame.commit_size != 0)
            assert_int_equal(frame.index, w.frames_after[3 + commits_after++]);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(commits_after, 4);
    assert_memory_equal(&reader.committed, &full.committed, sizeof reader.committed);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void resume_detects_a_chain_that_no_longer_follows(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    struct wal_reader reader;
    struct error err = {0};
    enum wal_resume result;
    char copy[PATH_MAX + 16];
    struct wal_position saved;
    int fd;

    writer_open(&w, f, "broken.db", 1024);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 2);
    scan_path(w.wal_path, &s);
    saved = s.committed;
    saved.offset = offset_after_frame(1024, w.frames_after[1]);
    saved.frame_index = w.frames_after[1];
    /* The checksum after commit 2, as a full read computes it. */
    {
        struct wal_reader r2;
        struct wal_frame frame;
        fd = open(w.wal_path, O_RDONLY);
        assert_int_equal(wal_reader_open(&r2, fd, w.wal_path, &err), 0);
        while (wal_reader_next(&r2, &frame, &err) > 0 && frame.index < w.frames_after[1])
            ;
        memcpy(saved.checksum, r2.next.checksum, sizeof saved.checksum);
        wal_reader_close(&r2);
        close(fd);
    }
    snprintf(copy, sizeof copy, "%s/broken-wal", f->root);

    /* Intact: continues. */
    copy_file(w.wal_path, copy, -1);
    fd = open(copy, O_RDONLY);
    assert_int_equal(wal_reader_resume(&reader, fd, copy, &saved, &result, &err), 0);
    assert_int_equal(result, WAL_RESUME_CONTINUES);
    wal_reader_close(&reader);
    close(fd);

    /* The frame the position follows holds another checksum. */
    flip_byte(copy, (long long)(saved.offset - frame_size_of(1024) + 17));
    fd = open(copy, O_RDONLY);
    assert_int_equal(wal_reader_resume(&reader, fd, copy, &saved, &result, &err), 0);
    assert_int_equal(result, WAL_RESUME_BROKEN);
    assert_int_equal(reader.next.offset, WAL_HEADER_SIZE);
    wal_reader_close(&reader);
    close(fd);

    /* The file is shorter than the saved position. */
    copy_file(w.wal_path, copy, (long long)saved.offset - 1);
    fd = open(copy, O_RDONLY);
    assert_int_equal(wal_reader_resume(&reader, fd, copy, &saved, &result, &err), 0);
    assert_int_equal(result, WAL_RESUME_BROKEN);
    wal_reader_close(&reader);
    close(fd);

    /* Emptied by a TRUNCATE checkpoint. */
    copy_file(w.wal_path, copy, 0);
    fd = open(copy, O_RDONLY);
    assert_int_equal(wal_reader_resume(&reader, fd, copy, &saved, &result, &err), 0);
    assert_int_equal(result, WAL_RESUME_NO_HEADER);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void header_fields_are_validated(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_header header;
    struct error err = {0};
    uint8_t real[WAL_HEADER_SIZE], bytes[WAL_HEADER_SIZE];
    uint32_t c[2];
    int fd;

    writer_open(&w, f, "header.db", 4096);
    writer_commit(&w, 1);
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(pread(fd, real, sizeof real, 0), sizeof real);
    close(fd);
    assert_int_equal(wal_header_parse(real, &header, &err), 0);
    assert_int_equal(header.page_size, 4096);
    assert_int_equal(header.version, WAL_VERSION);

    struct {
        int offset;
        uint32_t value;
        const char *word;
    } cases[] = {
        {0, 0x377f0681u, "magic"}, {4, 3007001u, "version"},  {8, 1000u, "page size"},
        {8, 256u, "page size"},    {8, 131072u, "page size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bytes, real, sizeof bytes);
        put32(bytes + cases[i].offset, cases[i].value);
        /* a correct checksum, so only the field itself can be refused */
        c[0] = c[1] = 0;
        reference_checksum(false, bytes, 24, c);
        put32(bytes + 24, c[0]);
        put32(bytes + 28, c[1]);
        error_clear(&err);
        assert_int_equal(wal_header_parse(bytes, &header, &err), -EINVAL);
        assert_non_null(strstr(err.message, cases[i].word));
    }
    memcpy(bytes, real, sizeof bytes);
    bytes[19] ^= 1; /* salt-1 changed, checksum kept */
    assert_int_equal(wal_header_parse(bytes, &header, &err), -EINVAL);
    assert_non_null(strstr(err.message, "checksum"));
    writer_close(&w);
}

static void empty_wal_has_no_header(void **state)
{
    struct fixture *f = *state;
    struct wal_reader reader;
    struct error err = {0};
    char path[PATH_MAX + 16];
    int fd;

    snprintf(path, sizeof path, "%s/empty-wal", f->root);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(wal_reader_open(&reader, fd, path, &err), -ENODATA);
    assert_non_null(strstr(err.message, path));
    wal_reader_close(&reader);
    close(fd);
}

static void live_wal_is_followed_after_rewind(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct error err = {0};
    int fd;

    writer_open(&w, f, "live.db", 4096);
    writer_commit(&w, 2);
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);
    assert_int_equal(wal_reader_scan(&reader, &err), 0);
    assert_int_equal(reader.committed.frame_index, w.frames_after[0]);
    writer_commit(&w, 3);
    /* stopped stays stopped until rewound */
    assert_int_equal(wal_reader_scan(&reader, &err), 0);
    assert_int_equal(reader.committed.frame_index, w.frames_after[0]);
    wal_reader_rewind_to_commit(&reader);
    assert_int_equal(wal_reader_scan(&reader, &err), 0);
    assert_int_equal(reader.committed.frame_index, w.frames_after[1]);
    assert_int_equal(reader.stop, WAL_STOP_END);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void rolled_back_frames_are_replaced_after_rewind(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct error err = {0};
    uint64_t spilled_end;
    int fd;

    writer_open(&w, f, "rollback.db", 1024);
    writer_commit(&w, 2);
    /* A transaction larger than the page cache spills frames into the WAL
     * before it commits: they are there, valid, and not committed. */
    exec_ok(w.db, "PRAGMA cache_size=5");
    exec_ok(w.db, "BEGIN; INSERT INTO t(v) VALUES (randomblob(60000));");
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);
    assert_int_equal(wal_reader_scan(&reader, &err), 0);
    spilled_end = reader.next.frame_index;
    assert_true(spilled_end > w.frames_after[0] + 5);
    assert_int_equal(reader.committed.frame_index, w.frames_after[0]);
    /* Rolled back: the next transaction overwrites those frames, chained
     * from the last commit. Only a reader that went back to it follows. */
    exec_ok(w.db, "ROLLBACK");
    writer_commit(&w, 3);
    assert_true(w.frames_after[1] < spilled_end);
    wal_reader_rewind_to_commit(&reader);
    assert_int_equal(wal_reader_scan(&reader, &err), 0);
    assert_int_equal(reader.committed.frame_index, w.frames_after[1]);
    assert_int_equal(reader.stop, WAL_STOP_CHECKSUM);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(commit_frames_match_sqlite_for_page_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(frames_after_the_last_commit_are_not_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(torn_last_frame_is_not_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_stops_the_chain_there, setup, teardown),
        cmocka_unit_test_setup_teardown(big_endian_checksums_are_read_as_sqlite_reads_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(frame_naming_page_zero_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(restarted_wal_ignores_the_older_generation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(resume_from_a_saved_position_equals_a_full_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(resume_detects_a_chain_that_no_longer_follows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(header_fields_are_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_wal_has_no_header, setup, teardown),
        cmocka_unit_test_setup_teardown(live_wal_is_followed_after_rewind, setup, teardown),
        cmocka_unit_test_setup_teardown(rolled_back_frames_are_replaced_after_rewind, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
