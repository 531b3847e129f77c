/*
 * test_wal_segment.c: segments planned and copied from WAL files that SQLite
 * writes in the test: whole commits only, from the last shipped commit to
 * the last one now, never a frame of an unfinished transaction; their
 * concatenation is the WAL that SQLite replays; bytes that changed between
 * planning and copying are refused.
 */
#include "test_wal_writer.h"

#include "replicate/segment.h"

struct shipped {
    FILE *file; /* every segment appended, as `cat` of the objects would be */
    uint64_t bytes;
};

static int ship_to_file(void *context, const uint8_t *bytes, size_t size)
{
    struct shipped *s = context;
    if (fwrite(bytes, 1, size, s->file) != size)
        return -EIO;
    s->bytes += size;
    return 0;
}

static int plan_next(struct wal_reader *reader, uint64_t max_bytes, size_t max_commits,
                     struct segment_commit *commits, struct segment_plan *plan)
{
    struct segment_limits limits = {.max_bytes = max_bytes, .max_commits = max_commits};
    struct error err = {0};
    int rc = segment_plan_next(reader, &limits, commits, plan, &err);
    if (rc < 0)
        fail_msg("segment_plan_next: %s", err.message);
    return rc;
}

static void copy_ok(int fd, const char *path, const struct segment_plan *plan, struct shipped *out)
{
    struct error err = {0};
    uint64_t before = out->bytes;
    int rc = segment_copy(fd, path, plan, ship_to_file, out, &err);
    if (rc != 0)
        fail_msg("segment_copy: %s", err.message);
    assert_int_equal(out->bytes - before, plan->end - plan->start);
}

/* Whether the file at `path` holds exactly the first `length` bytes of `wal`. */
static bool is_prefix_of(const char *path, const char *wal, uint64_t length)
{
    char copy[PATH_MAX + 16];
    FILE *a, *b;
    int ca, cb;
    bool same = true;

    snprintf(copy, sizeof copy, "%s.prefix", path);
    copy_file(wal, copy, (long long)length);
    a = fopen(path, "rb");
    b = fopen(copy, "rb");
    assert_non_null(a);
    assert_non_null(b);
    do {
        ca = fgetc(a);
        cb = fgetc(b);
        if (ca != cb)
            same = false;
    } while (same && ca != EOF);
    fclose(a);
    fclose(b);
    return same;
}

static void segments_carry_whole_commits_from_the_last_shipped_to_the_last_now(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct segment_commit commits[16];
    struct segment_plan plan;
    struct shipped out = {0};
    struct error err = {0};
    char shipped_path[PATH_MAX + 16], name[32], expected_name[40];
    int fd;

    writer_open(&w, f, "ship.db", 1024);
    for (int i = 0; i < 3; i++)
        writer_commit(&w, 2 + i);
    snprintf(shipped_path, sizeof shipped_path, "%s/shipped-wal", f->root);
    out.file = fopen(shipped_path, "wb");
    assert_non_null(out.file);
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);

    /* First segment: the header and every commit so far (the table's
     * creation, then ours), ending at the last commit frame. */
    assert_int_equal(plan_next(&reader, 0, 16, commits, &plan), 1);
    assert_int_equal(plan.start, 0);
    assert_int_equal(plan.commit_count, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(plan.commits[i + 1].frame_index, w.frames_after[i]);
        assert_int_equal(plan.commits[i + 1].end_offset,
                         offset_after_frame(1024, w.frames_after[i]));
        assert_int_equal(plan.commits[i + 1].db_pages, w.pages_after[i]);
    }
    assert_int_equal(plan.end, offset_after_frame(1024, w.frames_after[2]));
    segment_name(&plan, name);
    snprintf(expected_name, sizeof expected_name, "000000000000-%012llu",
             (unsigned long long)plan.end);
    assert_string_equal(name, expected_name); /* zero-padded: names sort by position */
    assert_false(plan.full); /* it reached the last commit: the round may stop here */
    copy_ok(fd, w.wal_path, &plan, &out);

    /* Two more commits, then a transaction that spills frames and is still
     * open: the next segment starts where the first ended and stops at the
     * last commit, before the frames that are not committed. */
    writer_commit(&w, 3);
    writer_commit(&w, 1);
    exec_ok(w.db, "PRAGMA cache_size=5");
    exec_ok(w.db, "BEGIN; INSERT INTO t(v) VALUES (randomblob(40000));");
    assert_true(file_size(w.wal_path) > (long long)offset_after_frame(1024, w.frames_after[4]));
    assert_int_equal(plan_next(&reader, 0, 16, commits, &plan), 1);
    assert_int_equal(plan.start, offset_after_frame(1024, w.frames_after[2]));
    assert_int_equal(plan.commit_count, 2);
    assert_int_equal(plan.commits[0].frame_index, w.frames_after[3]);
    assert_int_equal(plan.end, offset_after_frame(1024, w.frames_after[4]));
    assert_false(plan.full);
    copy_ok(fd, w.wal_path, &plan, &out);

    /* Nothing committed since: no segment, and the reader has not moved. */
    assert_int_equal(plan_next(&reader, 0, 16, commits, &plan), 0);
    assert_int_equal(reader.next.offset, offset_after_frame(1024, w.frames_after[4]));
    exec_ok(w.db, "ROLLBACK");

    /* The segments end to end are the WAL up to the last commit, and SQLite
     * replays them to the five rows committed. */
    assert_int_equal(fclose(out.file), 0);
    assert_int_equal(out.bytes, offset_after_frame(1024, w.frames_after[4]));
    assert_true(is_prefix_of(shipped_path, w.wal_path, out.bytes));
    assert_int_equal(rows_sqlite_replays(f, &w, shipped_path, "shipped-copy"), 5);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void byte_limit_ends_segments_at_commit_boundaries(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct segment_commit commits[16];
    struct segment_plan plan;
    struct shipped out = {0};
    struct error err = {0};
    char shipped_path[PATH_MAX + 16];
    uint64_t limit = 8 * frame_size_of(1024);
    int fd, segments = 0, big = 0, rc;

    writer_open(&w, f, "limit.db", 1024);
    for (int i = 0; i < 8; i++)
        writer_commit(&w, i == 5 ? 20 : 2); /* one transaction larger than the limit */
    snprintf(shipped_path, sizeof shipped_path, "%s/limited-wal", f->root);
    out.file = fopen(shipped_path, "wb");
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);
    while ((rc = plan_next(&reader, limit, 16, commits, &plan)) == 1) {
        segments++;
        assert_true(plan.commit_count >= 1);
        assert_int_equal(plan.end, plan.commits[plan.commit_count - 1].end_offset);
        /* Cut by the limit exactly when commits follow at once (the
         * shipper goes on only then). */
        assert_int_equal(plan.full, plan.end < (uint64_t)file_size(w.wal_path));
        if (plan.end - plan.start > limit) {
            /* only ever a single transaction too large for the limit */
            assert_int_equal(plan.commit_count, 1);
            big++;
        }
        copy_ok(fd, w.wal_path, &plan, &out);
    }
    assert_int_equal(fclose(out.file), 0);
    assert_int_equal(big, 1);
    assert_true(segments >= 4);
    assert_int_equal(out.bytes, (uint64_t)file_size(w.wal_path));
    assert_true(is_prefix_of(shipped_path, w.wal_path, out.bytes));
    wal_reader_close(&reader);
    close(fd);

    /* A commit list of one: one commit per segment. */
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);
    segments = 0;
    while (plan_next(&reader, 0, 1, commits, &plan) == 1) {
        assert_int_equal(plan.commit_count, 1);
        assert_true(plan.full); /* the list is full, whatever follows */
        segments++;
    }
    assert_int_equal(segments, w.commits + 1); /* + the table's creation */
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void copy_refuses_a_frame_changed_since_the_plan(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct segment_commit commits[16];
    struct segment_plan plan;
    struct shipped out = {0};
    struct error err = {0};
    char copy[PATH_MAX + 16];
    int fd;

    writer_open(&w, f, "changed.db", 1024);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 3);
    snprintf(copy, sizeof copy, "%s/changed-wal", f->root);
    copy_file(w.wal_path, copy, -1);
    fd = open(copy, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, copy, &err), 0);
    assert_int_equal(plan_next(&reader, 0, 16, commits, &plan), 1);
    /* A page in the middle of the planned range changes before the copy. */
    flip_byte(copy, (long long)(offset_after_frame(1024, w.frames_after[1]) + 100));
    out.file = tmpfile();
    assert_int_equal(segment_copy(fd, copy, &plan, ship_to_file, &out, &err), -ESTALE);
    assert_non_null(strstr(err.message, "not shipped"));
    assert_non_null(strstr(err.message, copy));
    fclose(out.file);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void copy_refuses_a_wal_reset_since_the_plan(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct segment_commit commits[16];
    struct segment_plan first, second;
    struct shipped out = {0};
    struct error err = {0};
    int fd;

    writer_open(&w, f, "later.db", 1024);
    for (int i = 0; i < 4; i++)
        writer_commit(&w, 3);
    fd = open(w.wal_path, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, w.wal_path, &err), 0);
    assert_int_equal(plan_next(&reader, 0, 16, commits, &first), 1);
    writer_commit(&w, 3);
    assert_int_equal(plan_next(&reader, 0, 16, commits, &second), 1);
    assert_true(second.start > 0);
    /* Checkpointed and reset by the application before either copy: the
     * ranges now hold another generation's frames. Both segments are
     * refused, and the reason says so. */
    exec_ok(w.db, "PRAGMA wal_checkpoint(PASSIVE)");
    writer_commit(&w, 6);
    out.file = tmpfile();
    assert_int_equal(segment_copy(fd, w.wal_path, &first, ship_to_file, &out, &err), -ESTALE);
    assert_non_null(strstr(err.message, "reset"));
    error_clear(&err);
    assert_int_equal(segment_copy(fd, w.wal_path, &second, ship_to_file, &out, &err), -ESTALE);
    assert_non_null(strstr(err.message, "reset"));
    fclose(out.file);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

static void copy_refuses_frames_rewritten_with_a_valid_chain(void **state)
{
    struct fixture *f = *state;
    struct writer w;
    struct wal_reader reader;
    struct segment_commit commits[16];
    struct segment_plan plan;
    struct shipped out = {0};
    struct error err = {0};
    char copy[PATH_MAX + 16];
    int fd;

    /* Planned over commits 1..3; then the third transaction's frames are
     * other bytes with a chain that is valid again from the second commit
     * on: every frame passes on its own, only the end of the chain differs
     * from the plan. */
    writer_open(&w, f, "rewritten.db", 1024);
    for (int i = 0; i < 3; i++)
        writer_commit(&w, 2);
    snprintf(copy, sizeof copy, "%s/rewritten-wal", f->root);
    copy_file(w.wal_path, copy, -1);
    fd = open(copy, O_RDONLY);
    assert_int_equal(wal_reader_open(&reader, fd, copy, &err), 0);
    assert_int_equal(plan_next(&reader, 0, 16, commits, &plan), 1);
    assert_int_equal(plan.end, offset_after_frame(1024, w.frames_after[2]));
    flip_byte(copy, (long long)(offset_after_frame(1024, w.frames_after[2] - 1) +
                                WAL_FRAME_HEADER_SIZE + 300));
    rewrite_checksums(copy, 1024, false);
    out.file = tmpfile();
    assert_int_equal(segment_copy(fd, copy, &plan, ship_to_file, &out, &err), -ESTALE);
    assert_non_null(strstr(err.message, "not the planned ones"));
    fclose(out.file);
    wal_reader_close(&reader);
    close(fd);
    writer_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            segments_carry_whole_commits_from_the_last_shipped_to_the_last_now, setup, teardown),
        cmocka_unit_test_setup_teardown(byte_limit_ends_segments_at_commit_boundaries, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(copy_refuses_a_frame_changed_since_the_plan, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(copy_refuses_a_wal_reset_since_the_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_refuses_frames_rewritten_with_a_valid_chain, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
