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
#include "test_wal_writer.h"

#include "core/io.h"

/* ---------------------------------------------------------------- seam */

/* The file-read seam (linked with --wrap=io_read_full_at for this test
 * only): `after_header_read`, when set, runs once, right after a read of the
 * 32-byte WAL header, so that a real SQLite checkpoint can change the file
 * between the reader's two reads. */
ssize_t __real_io_read_full_at(int fd, void *buffer, size_t size, int64_t offset);
ssize_t __wrap_io_read_full_at(int fd, void *buffer, size_t size, int64_t offset);
static void (*after_header_read)(void *context);
static void *after_header_context;

ssize_t __wrap_io_read_full_at(int fd, void *buffer, size_t size, int64_t offset)
{
    ssize_t got = __real_io_read_full_at(fd, buffer, size, offset);
    if (offset == 0 && size == WAL_HEADER_SIZE && after_header_read) {
        void (*hook)(void *) = after_header_read;
        after_header_read = NULL;
        hook(after_header_context);
    }
    return got;
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

/* After a restart the older generation's frames stay behind the new ones:
 * commits made after a shipped end and before the restart are still there
 * to be found, which is how the shipper tells a lossy restart from its own. */
static void commits_after_a_shipped_end_survive_a_restart(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan shipped, all;
    struct error err = {0};
    bool follows = true;
    int fd;

    writer_open(&w, f, "follows.db", 1024);
    for (int i = 0; i < 6; i++)
        writer_commit(&w, 3);
    scan_path(w.wal_path, &shipped); /* what the agent shipped */
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 2);         /* made after, never shipped */
    scan_path(w.wal_path, &all);
    exec_ok(w.db, "PRAGMA wal_checkpoint(PASSIVE)");
    writer_commit(&w, 1); /* restarts the WAL: 1 commit of the new generation */

    fd = open(w.wal_path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(wal_commit_follows(fd, w.wal_path, &shipped.committed, &follows, &err), 0);
    assert_true(follows);
    /* Shipped to the very end before the restart: nothing follows. */
    assert_int_equal(wal_commit_follows(fd, w.wal_path, &all.committed, &follows, &err), 0);
    assert_false(follows);
    close(fd);
    writer_close(&w);
}

/* The wal-index header, read from the -shm as the shipper reads it, says
 * what SQLite's own wal hook and WAL header say: the last committed frame
 * and the salts, through commits, a restart, and a TRUNCATE made by another
 * connection (whose restart bumps salt-1 in the shared header). */
static void wal_index_says_what_sqlite_says(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    struct wal_index index;
    char shm_path[PATH_MAX + 8];

    writer_open(&w, f, "index.db", 4096);
    for (int i = 0; i < 5; i++)
        writer_commit(&w, 2);
    snprintf(shm_path, sizeof shm_path, "%s-shm", w.path);
    int shm = open(shm_path, O_RDONLY);
    assert_true(shm >= 0);
    assert_int_equal(wal_index_read(shm, &index), 0);
    scan_path(w.wal_path, &s);
    assert_int_equal(index.last_frame, w.frames_after[w.commits - 1]);
    assert_int_equal(index.last_frame, s.frames);
    assert_int_equal(index.page_size, 4096);
    assert_int_equal(index.salt[0], s.header.salt[0]);
    assert_int_equal(index.salt[1], s.header.salt[1]);

    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(w.path, &other), SQLITE_OK);
    exec_ok(other, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_int_equal(wal_index_read(shm, &index), 0);
    assert_int_equal(index.last_frame, 0);
    assert_int_equal(index.salt[0], s.header.salt[0] + 1);
    sqlite3_close(other);

    writer_commit(&w, 3);
    assert_int_equal(wal_index_read(shm, &index), 0);
    assert_int_equal(index.last_frame, w.frames_after[w.commits - 1]);
    scan_path(w.wal_path, &s);
    assert_int_equal(index.salt[0], s.header.salt[0]);
    assert_int_equal(index.salt[1], s.header.salt[1]);
    close(shm);
    writer_close(&w);
}

/* Read-ahead (a restore's reader) sees exactly what frame-by-frame reading
 * sees: every frame, commit and stop, across buffer boundaries that cut
 * frames, on a WAL with uncommitted frames and an older generation behind. */
static void read_ahead_reads_what_frame_by_frame_reads(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan plain;
    struct error err = {0};

    writer_open(&w, f, "ahead.db", 1024);
    for (int i = 0; i < 12; i++)
        writer_commit(&w, 1 + i % 4);
    exec_ok(w.db, "PRAGMA wal_checkpoint(PASSIVE)");
    for (int i = 0; i < 5; i++) /* restarts: the old generation stays behind */
        writer_commit(&w, 2);
    scan_path(w.wal_path, &plain);
    size_t sizes[] = {1, 1048 * 3 + 7, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        struct wal_reader reader;
        struct wal_frame frame;
        uint64_t frames = 0;
        int commits = 0, rc;
        int fd = open(w.wal_path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);
        assert_int_equal(wal_reader_read_ahead(&reader, sizes[k]), 0);
        while ((rc = wal_reader_next(&reader, &frame, &err)) > 0) {
            frames++;
            if (frame.commit_size != 0)
                assert_int_equal(frame.index, plain.commit_index[commits++]);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(frames, plain.frames);
        assert_int_equal(commits, plain.commits);
        assert_int_equal(reader.stop, plain.stop);
        assert_memory_equal(&reader.committed, &plain.committed, sizeof plain.committed);
        wal_reader_close(&reader);
        close(fd);
    }
    assert_int_equal(plain.stop, WAL_STOP_SALT);
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

static void checkpoint_truncate(void *context)
{
    struct writer *w = context;
    assert_int_equal(sqlite3_exec(w->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
}

static void checkpoint_restart_and_write_past(void *context)
{
    struct writer *w = context;
    assert_int_equal(sqlite3_exec(w->db, "PRAGMA wal_checkpoint(RESTART)", NULL, NULL, NULL),
                     SQLITE_OK);
    for (int i = 0; i < 8; i++)
        writer_commit(w, 2); /* over the frame the position follows */
}

/* A pin on read mark 0 lets an application's checkpoint restart or empty
 * the WAL at any moment, so also between the resume's read of the header
 * and its read of the saved frame (seen in CI as a break of a quiet
 * database beside `PRAGMA wal_checkpoint(TRUNCATE)`). What the file holds
 * then is a new header or none, never a broken chain. */
static void resume_reads_again_a_wal_restarted_between_its_reads(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct scan s;
    struct wal_reader reader;
    struct error err = {0};
    enum wal_resume result;
    int fd;

    writer_open(&w, f, "raced.db", 1024);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 2);
    scan_path(w.wal_path, &s);
    fd = open(w.wal_path, O_RDONLY);

    after_header_read = checkpoint_truncate;
    after_header_context = &w;
    assert_int_equal(wal_reader_resume(&reader, fd, w.wal_path, &s.committed, &result, &err), 0);
    assert_null(after_header_read); /* the checkpoint ran between the reads */
    assert_int_equal(file_size(w.wal_path), 0);
    assert_int_equal(result, WAL_RESUME_NO_HEADER);
    wal_reader_close(&reader);

    for (int i = 0; i < 4; i++)
        writer_commit(&w, 2);
    scan_path(w.wal_path, &s);
    after_header_read = checkpoint_restart_and_write_past;
    assert_int_equal(wal_reader_resume(&reader, fd, w.wal_path, &s.committed, &result, &err), 0);
    assert_null(after_header_read);
    assert_int_equal(result, WAL_RESUME_RESTARTED);
    assert_int_equal(reader.next.offset, WAL_HEADER_SIZE);
    assert_int_not_equal(reader.header.salt[0], s.header.salt[0]);
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
        cmocka_unit_test_setup_teardown(commits_after_a_shipped_end_survive_a_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_ahead_reads_what_frame_by_frame_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(resume_from_a_saved_position_equals_a_full_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(resume_detects_a_chain_that_no_longer_follows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(resume_reads_again_a_wal_restarted_between_its_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(header_fields_are_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_wal_has_no_header, setup, teardown),
        cmocka_unit_test_setup_teardown(wal_index_says_what_sqlite_says, setup, teardown),
        cmocka_unit_test_setup_teardown(live_wal_is_followed_after_rewind, setup, teardown),
        cmocka_unit_test_setup_teardown(rolled_back_frames_are_replaced_after_rewind, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
