/*
 * test_delta.c: a page delta (replicate/delta.h) gathered from the segments
 * of two generations of a real WAL, written out and applied over the base,
 * gives byte for byte what SQLite's own checkpoints of those WALs give.
 *
 * The WALs are written by the SQLite library (test_wal_writer.h): inserts
 * that grow the file, updates that rewrite the same pages, a checkpoint
 * that restarts the WAL (the second generation), and a delete under
 * auto_vacuum = FULL that shrinks the file, so that pages the delta saw
 * beyond the end are left out. Segments are cut at commits, as the shipper
 * cuts them, and fed in pieces of every awkward size.
 */
#include "test_wal_writer.h"

#include "core/fsutil.h"
#include "replicate/delta.h"

static uint8_t *read_whole(const char *path, size_t *size)
{
    char *data = NULL;
    struct error err = {0};
    assert_int_equal(fs_read_file(path, &data, size, &err), 0);
    return (uint8_t *)data;
}

struct history {
    char base[PATH_MAX + 16];      /* the database file before generation 1 */
    char wal[2][PATH_MAX + 16];    /* each generation's WAL, as it ended */
    uint32_t cuts[2][MAX_COMMITS]; /* segment ends: frames after a commit */
    int cut_count[2];
    char reference[PATH_MAX + 16]; /* the database after both, checkpointed */
};

static void rewrite(struct writer *w)
{
    w->last_hook_frames = 0;
    exec_ok(w->db, "UPDATE t SET v = randomblob(length(v)) WHERE id <= 2");
    w->frames_after[w->commits++] = w->last_hook_frames;
}

static void write_generations(struct writer *w, const struct fixture *f, struct history *h)
{
    memset(h, 0, sizeof *h);
    writer_open(w, f, "app.db", 1024);
    exec_ok(w->db, "PRAGMA auto_vacuum = FULL");
    exec_ok(w->db, "VACUUM");
    exec_ok(w->db, "PRAGMA wal_checkpoint(TRUNCATE)");
    snprintf(h->base, sizeof h->base, "%s/base.db", f->root);
    copy_file(w->path, h->base, -1);
    for (int gen = 0; gen < 2; gen++) {
        w->commits = 0;
        for (int i = 0; i < 5; i++)
            writer_commit(w, 1 + (i + gen) % 4);
        for (int i = 0; i < 4; i++)
            rewrite(w);
        if (gen == 1) { /* shrink: pages the span saw end up past the end */
            w->last_hook_frames = 0;
            exec_ok(w->db, "DELETE FROM t WHERE id >= 3");
            w->frames_after[w->commits++] = w->last_hook_frames;
        }
        /* Segments of 1, 3, 2... commits, ending on the last. */
        for (int c = 0; c < w->commits; c += 1 + c % 3)
            h->cuts[gen][h->cut_count[gen]++] = w->frames_after[c];
        if (h->cuts[gen][h->cut_count[gen] - 1] != w->frames_after[w->commits - 1])
            h->cuts[gen][h->cut_count[gen]++] = w->frames_after[w->commits - 1];
        snprintf(h->wal[gen], sizeof h->wal[gen], "%s/gen%d.wal", f->root, gen + 1);
        copy_file(w->wal_path, h->wal[gen], -1);
        /* The WAL restarts at the next write: a new generation. */
        exec_ok(w->db, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
    snprintf(h->reference, sizeof h->reference, "%s/reference.db", f->root);
    copy_file(w->path, h->reference, -1);
}

/* Every segment of both generations fed to a span, `piece` bytes at a
 * time, then closed into *pages. */
static void gather(const struct fixture *f, const struct history *h, size_t piece,
                   struct delta_pages *pages)
{
    struct delta_span span;
    struct error err = {0};
    char path[PATH_MAX + 16], closed[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/span", f->root);
    snprintf(closed, sizeof closed, "%s/closed", f->root);
    delta_span_init(&span);
    assert_int_equal(delta_span_start(&span, path, 1, 1, 1000, &err), 0);
    for (int gen = 0; gen < 2; gen++) {
        if (gen == 1)
            assert_true(delta_span_continue(&span, 2, &err));
        size_t wal_size = 0;
        uint8_t *wal = read_whole(h->wal[gen], &wal_size);
        uint64_t start = 0;
        for (int s = 0; s < h->cut_count[gen]; s++) {
            uint64_t end = offset_after_frame(1024, h->cuts[gen][s]);
            assert_true(end <= wal_size);
            assert_true(delta_span_follows(&span, (uint32_t)gen + 1, start));
            for (uint64_t at = start; at < end; at += piece) {
                size_t size = end - at < piece ? (size_t)(end - at) : piece;
                assert_int_equal(delta_span_feed(&span, wal + at, size, &err), 0);
            }
            assert_int_equal(delta_span_segment_done(&span, end, &err), 0);
            start = end;
        }
        free(wal);
    }
    assert_true(span.pages > 0);
    assert_int_equal(delta_span_close(&span, closed, pages, &err), 0);
    assert_false(delta_span_active(&span));
    assert_int_equal(pages->first_generation, 1);
    assert_int_equal(pages->last_generation, 2);
}

/* The plain delta applied over a copy of the base, fed `piece` bytes at a
 * time; the result's bytes. */
static uint8_t *apply_plain(const struct fixture *f, const struct history *h, const char *plain,
                            size_t piece, size_t *size)
{
    char out_path[PATH_MAX + 16];
    struct error err = {0};
    struct delta_apply a;
    size_t plain_size = 0;
    uint8_t *bytes = read_whole(plain, &plain_size);
    snprintf(out_path, sizeof out_path, "%s/out.db", f->root);
    copy_file(h->base, out_path, -1);
    int out = open(out_path, O_WRONLY);
    assert_true(out >= 0);
    assert_int_equal(delta_apply_begin(&a, out, "plain", &err), 0);
    for (size_t at = 0; at < plain_size; at += piece)
        assert_int_equal(delta_apply_feed(&a, bytes + at,
                                          plain_size - at < piece ? plain_size - at : piece, &err),
                         0);
    assert_int_equal(delta_apply_finish(&a, &err), 0);
    assert_int_equal(ftruncate(out, (off_t)a.header.db_pages * a.header.page_size), 0);
    close(out);
    delta_apply_end(&a);
    free(bytes);
    return read_whole(out_path, size);
}

static void a_delta_of_two_generations_gives_what_sqlite_checkpoints(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    struct history h;
    write_generations(&w, f, &h);
    size_t expected_size = 0;
    uint8_t *expected = read_whole(h.reference, &expected_size);
    const size_t pieces[] = {1, 7, 24, 1024 + 24, 65536};
    for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
        struct delta_pages pages;
        struct error err = {0};
        char plain[PATH_MAX + 16];
        uint64_t written = 0;
        gather(f, &h, pieces[p], &pages);
        assert_int_equal((uint64_t)pages.db_pages * 1024, expected_size);
        snprintf(plain, sizeof plain, "%s/plain", f->root);
        assert_int_equal(delta_write_plain(&pages, plain, NULL, &written, &err), 0);
        /* Pages seen past the final size are not in it. */
        assert_true(written < pages.pages);
        assert_true(written <= pages.db_pages);
        delta_pages_free(&pages);
        const size_t apply_pieces[] = {1, 13, 1024 + 4, 1 << 20};
        for (size_t q = 0; q < sizeof apply_pieces / sizeof apply_pieces[0]; q++) {
            size_t size = 0;
            uint8_t *got = apply_plain(f, &h, plain, apply_pieces[q], &size);
            assert_int_equal(size, expected_size);
            assert_memory_equal(got, expected, size);
            free(got);
        }
    }
    free(expected);
    writer_close(&w);
}

/* One span per generation, `gen` only (chain 1), closed into *pages. */
static void gather_one(const struct fixture *f, const struct history *h, int gen, uint32_t chain,
                       struct delta_pages *pages)
{
    struct delta_span span;
    struct error err = {0};
    char path[PATH_MAX + 16], closed[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/span", f->root);
    snprintf(closed, sizeof closed, "%s/closed-%d", f->root, gen);
    delta_span_init(&span);
    assert_int_equal(delta_span_start(&span, path, (uint32_t)gen + 1, chain, gen, &err), 0);
    size_t wal_size = 0;
    uint8_t *wal = read_whole(h->wal[gen], &wal_size);
    uint64_t end = offset_after_frame(1024, h->cuts[gen][h->cut_count[gen] - 1]);
    assert_int_equal(delta_span_feed(&span, wal, end, &err), 0);
    assert_int_equal(delta_span_segment_done(&span, end, &err), 0);
    free(wal);
    assert_int_equal(delta_span_close(&span, closed, pages, &err), 0);
}

static void spans_merged_into_a_level_give_the_delta_of_both(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    struct history h;
    write_generations(&w, f, &h);
    struct delta_pages first, second, level = {.fd = -1};
    struct error err = {0};
    char level_path[PATH_MAX + 16], plain[PATH_MAX + 16];
    snprintf(level_path, sizeof level_path, "%s/level", f->root);
    snprintf(plain, sizeof plain, "%s/plain", f->root);
    gather_one(f, &h, 0, 1, &first);
    gather_one(f, &h, 1, 1, &second);
    assert_int_equal(delta_pages_merge(&level, &first, level_path, &err), 0);
    assert_int_equal(delta_pages_merge(&level, &second, level_path, &err), 0);
    assert_int_equal(level.first_generation, 1);
    assert_int_equal(level.last_generation, 2);
    assert_int_equal(level.started_ms, 0);
    assert_int_equal(level.wal_bytes, first.wal_bytes + second.wal_bytes);
    uint64_t written = 0;
    assert_int_equal(delta_write_plain(&level, plain, NULL, &written, &err), 0);
    size_t expected_size = 0, size = 0;
    uint8_t *expected = read_whole(h.reference, &expected_size);
    uint8_t *got = apply_plain(f, &h, plain, 65536, &size);
    assert_int_equal(size, expected_size);
    assert_memory_equal(got, expected, size);
    free(got);
    free(expected);
    /* A span of another chain (a base came between): the level starts
     * anew from it rather than bridge the base. */
    struct delta_pages other;
    gather_one(f, &h, 1, 9, &other);
    assert_int_equal(delta_pages_merge(&level, &other, level_path, &err), 0);
    assert_int_equal(level.first_generation, 2);
    assert_int_equal(level.chain, 9);
    assert_int_equal(level.pages, other.pages);
    /* It follows generation 1 of chain 1 without a gap, and still starts
     * anew: a base came between. */
    delta_pages_free(&level);
    assert_int_equal(delta_pages_merge(&level, &first, level_path, &err), 0);
    assert_int_equal(delta_pages_merge(&level, &other, level_path, &err), 0);
    assert_int_equal(level.first_generation, 2);
    assert_int_equal(level.chain, 9);
    /* ... and one that skips a generation, the same. */
    delta_pages_free(&level);
    assert_int_equal(delta_pages_merge(&level, &second, level_path, &err), 0);
    assert_int_equal(delta_pages_merge(&level, &first, level_path, &err), 0);
    assert_int_equal(level.first_generation, 1);
    assert_int_equal(level.last_generation, 1);
    delta_pages_free(&level);
    delta_pages_free(&first);
    delta_pages_free(&second);
    delta_pages_free(&other);
    writer_close(&w);
}

static void a_segment_the_span_did_not_see_whole_is_refused(void **state)
{
    const struct fixture *f = *state;
    struct writer w;
    struct history h;
    write_generations(&w, f, &h);
    struct delta_span span;
    struct error err = {0};
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/span", f->root);
    delta_span_init(&span);
    assert_int_equal(delta_span_start(&span, path, 7, 7, 0, &err), 0);
    /* Another generation, or not where the last segment ended. */
    assert_false(delta_span_follows(&span, 8, 0));
    assert_false(delta_span_follows(&span, 7, 4096));
    assert_true(delta_span_follows(&span, 7, 0));
    size_t wal_size = 0;
    uint8_t *wal = read_whole(h.wal[0], &wal_size);
    uint64_t end = offset_after_frame(1024, h.cuts[0][0]);
    /* Fed short of the segment's end: it did not end there on a commit. */
    assert_int_equal(delta_span_feed(&span, wal, end - 100, &err), 0);
    assert_int_equal(delta_span_segment_done(&span, end, &err), -EBADMSG);
    delta_span_drop(&span);
    assert_false(delta_span_active(&span));
    assert_int_equal(access(path, F_OK), -1);
    /* A generation that does not follow the span's last one. */
    assert_int_equal(delta_span_start(&span, path, 7, 7, 0, &err), 0);
    assert_false(delta_span_continue(&span, 9, &err));
    /* A damaged frame: the chain stops, the feed says so. */
    flip_byte(h.wal[0], (long long)offset_after_frame(1024, 1) + WAL_FRAME_HEADER_SIZE + 9);
    free(wal);
    wal = read_whole(h.wal[0], &wal_size);
    assert_int_equal(delta_span_feed(&span, wal, wal_size, &err), -EBADMSG);
    delta_span_drop(&span);
    free(wal);
    writer_close(&w);
}

static void a_plain_delta_that_is_not_whole_or_in_order_is_refused(void **state)
{
    const struct fixture *f = *state;
    struct error err = {0};
    uint8_t buffer[DELTA_HEADER_SIZE + 2 * (DELTA_RECORD_HEAD + 512) + 1] = {0};
    struct delta_header header = {
        .page_size = 512, .db_pages = 4, .pages = 2, .first_generation = 1, .last_generation = 1};
    char out_path[PATH_MAX + 16];
    snprintf(out_path, sizeof out_path, "%s/out.db", f->root);
    int out = open(out_path, O_WRONLY | O_CREAT, 0600);
    assert_true(out >= 0);
    uint8_t *second = buffer + DELTA_HEADER_SIZE + DELTA_RECORD_HEAD + 512;
    struct {
        uint32_t first_page, second_page;
        size_t length;
        const char *why;
    } cases[] = {
        {2, 2, sizeof buffer - 1, "page 2 twice"},
        {3, 1, sizeof buffer - 1, "decreasing"},
        {2, 5, sizeof buffer - 1, "past db_pages"},
        {1, 3, sizeof buffer, "a byte after the last record"},
        {1, 3, sizeof buffer - 2, "cut short"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct delta_apply a;
        delta_header_encode(&header, buffer);
        buffer[DELTA_HEADER_SIZE + 3] = (uint8_t)cases[i].first_page;
        second[3] = (uint8_t)cases[i].second_page;
        assert_int_equal(delta_apply_begin(&a, out, "d", &err), 0);
        int rc = delta_apply_feed(&a, buffer, cases[i].length, &err);
        if (rc == 0)
            rc = delta_apply_finish(&a, &err);
        if (rc != -EBADMSG)
            fail_msg("%s: %d", cases[i].why, rc);
        delta_apply_end(&a);
    }
    /* Not a delta at all, and a header of an impossible page size. */
    struct delta_apply a;
    struct delta_header parsed;
    memcpy(buffer, "SQLite f", 8);
    assert_int_equal(delta_header_parse(buffer, &parsed, "d", &err), -EBADMSG);
    header.page_size = 1000;
    delta_header_encode(&header, buffer);
    assert_int_equal(delta_header_parse(buffer, &parsed, "d", &err), -EBADMSG);
    assert_int_equal(delta_apply_begin(&a, out, "d", &err), 0);
    assert_int_equal(delta_apply_finish(&a, &err), -EBADMSG);
    delta_apply_end(&a);
    close(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_delta_of_two_generations_gives_what_sqlite_checkpoints,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(spans_merged_into_a_level_give_the_delta_of_both, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_segment_the_span_did_not_see_whole_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_plain_delta_that_is_not_whole_or_in_order_is_refused,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
