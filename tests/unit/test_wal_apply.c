/*
 * test_wal_apply.c: a WAL streamed into a database file (replicate/wal_apply.h)
 * gives byte for byte what SQLite's own checkpoint of the same WAL gives.
 *
 * The WALs are written by the SQLite library (test_wal_writer.h): inserts
 * that grow the file, updates that rewrite the same pages again and again,
 * and a delete under auto_vacuum = FULL that shrinks it. The reference is a
 * copy of the database and of the WAL cut at the same commit, opened by
 * SQLite and checkpointed (TRUNCATE). The stream is fed in pieces of every
 * awkward size, so frames and the header arrive split.
 */
#include "test_wal_writer.h"

#include "core/fsutil.h"
#include "replicate/wal_apply.h"

/* The WAL of a database that grows, is rewritten in place and shrinks. */
static void write_history(struct writer *w, const struct fixture *f)
{
    writer_open(w, f, "app.db", 1024);
    /* So that the delete below gives pages back and the file shrinks. */
    exec_ok(w->db, "PRAGMA auto_vacuum = FULL");
    exec_ok(w->db, "VACUUM");
    for (int i = 0; i < 6; i++)
        writer_commit(w, 1 + i % 4);
    for (int i = 0; i < 5; i++) { /* the same rows, so the same pages, again */
        w->last_hook_frames = 0;
        exec_ok(w->db, "UPDATE t SET v = randomblob(length(v)) WHERE id <= 2");
        w->frames_after[w->commits] = w->last_hook_frames;
        w->pages_after[w->commits] = (uint32_t)query_int(w->db, "PRAGMA page_count");
        w->commits++;
    }
    w->last_hook_frames = 0;
    exec_ok(w->db, "DELETE FROM t WHERE id >= 3");
    w->frames_after[w->commits] = w->last_hook_frames;
    w->pages_after[w->commits] = (uint32_t)query_int(w->db, "PRAGMA page_count");
    w->commits++;
}

/* The whole file, with the project's own reader. */
static uint8_t *read_whole(const char *path, size_t *size)
{
    char *data = NULL;
    struct error err = {0};
    assert_int_equal(fs_read_file(path, &data, size, &err), 0);
    return (uint8_t *)data;
}

/* SQLite's checkpoint of the database with its WAL cut after `frames`. */
static uint8_t *sqlite_reference(const struct fixture *f, const struct writer *w, uint64_t frames,
                                 size_t *size)
{
    char db_copy[PATH_MAX + 16], wal_copy[PATH_MAX + 32];
    sqlite3 *db = NULL;
    snprintf(db_copy, sizeof db_copy, "%s/reference.db", f->root);
    snprintf(wal_copy, sizeof wal_copy, "%s-wal", db_copy);
    copy_file(w->path, db_copy, -1);
    copy_file(w->wal_path, wal_copy, (long long)offset_after_frame(w->page_size, frames));
    assert_int_equal(sqlite3_open_v2(db_copy, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
    return read_whole(db_copy, size);
}

/* The database file as the writer left it (what was checkpointed before
 * the WAL began: the base), with the WAL fed to wal_apply `piece` bytes at
 * a time; the output's bytes, or NULL when the apply failed (*rc says). */
static uint8_t *apply_stream(const struct fixture *f, const struct writer *w, uint64_t frame,
                             uint32_t pages, size_t piece, struct wal_apply *a, int *rc,
                             size_t *size)
{
    char out_path[PATH_MAX + 16];
    struct error err = {0};
    size_t wal_size = 0;
    uint8_t *wal = read_whole(w->wal_path, &wal_size);
    snprintf(out_path, sizeof out_path, "%s/out.db", f->root);
    copy_file(w->path, out_path, -1);
    int out = open(out_path, O_WRONLY);
    assert_true(out >= 0);
    assert_int_equal(wal_apply_begin(a, out, frame, pages, &err), 0);
    *rc = 0;
    for (size_t at = 0; at < wal_size && *rc == 0; at += piece)
        *rc = wal_apply_feed(a, wal + at, wal_size - at < piece ? wal_size - at : piece, &err);
    if (*rc == 0)
        wal_apply_finish(a);
    if (*rc == 0 && a->reached)
        assert_int_equal(ftruncate(out, (off_t)pages * a->header.page_size), 0);
    close(out);
    free(wal);
    return *rc == 0 ? read_whole(out_path, size) : NULL;
}

static void every_commit_applies_as_sqlite_checkpoints_it(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    write_history(&w, f);
    /* The last commit shrank the file: the cut is tested too. */
    assert_true(w.pages_after[w.commits - 1] < w.pages_after[w.commits - 2]);
    const size_t pieces[] = {1, 7, 24, 1024 + 24, 1024 + 25, 65536};
    for (int c = 0; c < w.commits; c++) {
        size_t expected_size = 0;
        uint8_t *expected = sqlite_reference(f, &w, w.frames_after[c], &expected_size);
        for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
            struct wal_apply a;
            size_t size = 0;
            int rc;
            uint8_t *got =
                apply_stream(f, &w, w.frames_after[c], w.pages_after[c], pieces[p], &a, &rc, &size);
            assert_int_equal(rc, 0);
            assert_true(a.reached);
            assert_int_equal(a.committed.frame_index, w.frames_after[c]);
            assert_int_equal(a.committed.offset, offset_after_frame(1024, w.frames_after[c]));
            assert_int_equal(size, expected_size);
            assert_memory_equal(got, expected, size);
            free(got);
            wal_apply_end(&a);
        }
        free(expected);
    }
    writer_close(&w);
}

static void a_broken_chain_stops_at_the_damaged_frame(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    write_history(&w, f);
    /* A byte of the page of the first frame of commit 4. */
    uint64_t frame = w.frames_after[2] + 1;
    flip_byte(w.wal_path,
              (long long)offset_after_frame(1024, frame - 1) + WAL_FRAME_HEADER_SIZE + 9);
    struct wal_apply a;
    size_t size = 0;
    int rc;
    uint8_t *got = apply_stream(f, &w, w.frames_after[w.commits - 1], w.pages_after[w.commits - 1],
                                4096, &a, &rc, &size);
    assert_int_equal(rc, 0);
    assert_false(a.reached);
    assert_int_equal(a.stop, WAL_STOP_CHECKSUM);
    assert_int_equal(a.next.frame_index, frame - 1);
    assert_int_equal(a.committed.frame_index, w.frames_after[2]);
    free(got);
    wal_apply_end(&a);
    writer_close(&w);
}

static void the_stream_ending_early_is_said_end_or_short(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    write_history(&w, f);
    char out_path[PATH_MAX + 16];
    snprintf(out_path, sizeof out_path, "%s/out.db", f->root);
    copy_file(w.path, out_path, -1);
    size_t wal_size = 0;
    uint8_t *wal = read_whole(w.wal_path, &wal_size);
    int out = open(out_path, O_WRONLY);
    struct error err = {0};
    uint64_t cut[] = {offset_after_frame(1024, w.frames_after[1]),
                      offset_after_frame(1024, w.frames_after[1]) + 500, 20};
    enum wal_stop said[] = {WAL_STOP_END, WAL_STOP_SHORT, WAL_STOP_SHORT};
    for (int i = 0; i < 3; i++) {
        struct wal_apply a;
        assert_int_equal(wal_apply_begin(&a, out, w.frames_after[w.commits - 1],
                                         w.pages_after[w.commits - 1], &err),
                         0);
        assert_int_equal(wal_apply_feed(&a, wal, cut[i], &err), 0);
        wal_apply_finish(&a);
        assert_false(a.reached);
        assert_int_equal(a.stop, said[i]);
        assert_int_equal(a.have_header, cut[i] >= WAL_HEADER_SIZE);
        wal_apply_end(&a);
    }
    close(out);
    free(wal);
    writer_close(&w);
}

static void a_target_that_is_not_that_commit_is_refused(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    write_history(&w, f);
    struct wal_apply a;
    size_t size = 0;
    int rc;
    /* The right frame, another size: the sidecar does not describe the WAL. */
    uint8_t *got =
        apply_stream(f, &w, w.frames_after[3], w.pages_after[3] + 2, 65536, &a, &rc, &size);
    assert_null(got);
    assert_int_equal(rc, -EBADMSG);
    assert_int_equal(a.bad_frame, w.frames_after[3]);
    assert_int_equal(a.bad_pages, w.pages_after[3]);
    wal_apply_end(&a);
    /* Not a commit frame at all: it states 0 pages. */
    got = apply_stream(f, &w, w.frames_after[3] - 1, w.pages_after[3], 65536, &a, &rc, &size);
    assert_null(got);
    assert_int_equal(rc, -EBADMSG);
    assert_int_equal(a.bad_pages, 0);
    wal_apply_end(&a);
    writer_close(&w);
}

static void a_header_that_is_not_a_wal_is_refused(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    write_history(&w, f);
    flip_byte(w.wal_path, 2); /* the magic number */
    struct wal_apply a;
    size_t size = 0;
    int rc;
    uint8_t *got = apply_stream(f, &w, w.frames_after[0], w.pages_after[0], 13, &a, &rc, &size);
    assert_null(got);
    assert_int_equal(rc, -EINVAL);
    assert_false(a.have_header);
    assert_int_equal(a.pages_written, 0);
    wal_apply_end(&a);
    writer_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_commit_applies_as_sqlite_checkpoints_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_broken_chain_stops_at_the_damaged_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(the_stream_ending_early_is_said_end_or_short, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_target_that_is_not_that_commit_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_header_that_is_not_a_wal_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
