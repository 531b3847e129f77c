/*
 * test_archive.c: archives of a real SQLite database, checked with the tools
 * a user would reach for (gzip -t, gzip -dc | cmp, sha256sum), and every way
 * an archive can go wrong leaving no file behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "archive/archive.h"
#include "shell_command.h"

/* Bigger than the 8 MiB progress step, so a callback fires mid-way. */
#define SOURCE_ROWS 110000

struct fixture {
    char root[256];
    char database[PATH_MAX];
    char archive[PATH_MAX]; /* level 6 archive of database, made once */
    struct archive_result made;
};

static struct fixture fixture;

static void path_in(const char *name, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s", fixture.root, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int64_t size_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int64_t)st.st_size;
}

static void sha256sum_of(const char *path, char hex[ARCHIVE_SHA256_HEX])
{
    char command[PATH_MAX + 32];
    snprintf(command, sizeof command, "sha256sum %s", path);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    assert_non_null(fgets(hex, ARCHIVE_SHA256_HEX, pipe));
    pclose(pipe);
    assert_int_equal(strlen(hex), 64);
}

static void write_bytes(const char *path, const void *data, size_t size)
{
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, size, file), size);
    assert_int_equal(fclose(file), 0);
}

static void copy_file(const char *from, const char *to)
{
    assert_int_equal(run("cp %s %s", from, to), 0);
}

/* Rows a real application might hold: ids, names, amounts, dates and free
 * text, some repetitive and some not, so the data compresses like a real
 * database rather than like zeros or noise. */
static int create_database(const char *path)
{
    static const char *words[] = {"invoice", "paid",    "pending", "refund",  "shipped",
                                  "Berlin",  "Lisbon",  "Oslo",    "express", "standard",
                                  "gift",    "returns", "note",    "urgent",  "customer"};
    sqlite3 *db = NULL;
    sqlite3_stmt *insert = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "PRAGMA journal_mode=OFF; BEGIN;"
                          "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, amount REAL,"
                          " quantity INTEGER, created TEXT, note TEXT);"
                          "CREATE INDEX orders_customer ON orders(customer);",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", -1, &insert,
                                NULL);
    uint32_t seed = 42;
    for (int i = 0; rc == SQLITE_OK && i < SOURCE_ROWS; i++) {
        char customer[32], created[32], note[160];
        seed = seed * 1664525u + 1013904223u;
        snprintf(customer, sizeof customer, "customer-%05u", seed % 20000);
        snprintf(created, sizeof created, "2026-%02u-%02uT%02u:%02u:00Z", seed % 12 + 1,
                 (seed >> 4) % 28 + 1, (seed >> 9) % 24, (seed >> 14) % 60);
        size_t used = 0;
        for (int w = 0; w < 6; w++) {
            seed = seed * 1664525u + 1013904223u;
            used += (size_t)snprintf(note + used, sizeof note - used, "%s %u ",
                                     words[(seed >> 16) % 15], seed % 100000);
        }
        sqlite3_bind_int(insert, 1, i + 1);
        sqlite3_bind_text(insert, 2, customer, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(insert, 3, (double)(seed % 1000000) / 100.0);
        sqlite3_bind_int(insert, 4, (int)(seed % 50));
        sqlite3_bind_text(insert, 5, created, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(insert, 6, note, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(insert) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup_group(void **state)
{
    (void)state;
    struct error err = {0};
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fixture.root, sizeof fixture.root, "%s/sqlprodd-archive-XXXXXX", tmp);
    if (!mkdtemp(fixture.root))
        return -1;
    path_in("source.db", fixture.database);
    path_in("source.db.gz", fixture.archive);
    if (create_database(fixture.database) < 0)
        return -1;
    if (archive_compress(fixture.database, fixture.archive, 6, NULL, &fixture.made, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    nftw(fixture.root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

struct progress_log {
    int calls;
    int64_t last_done, last_total;
    volatile sig_atomic_t *stop_on_first_call;
};

static void record_progress(void *context, int64_t done, int64_t total)
{
    struct progress_log *log = context;
    log->calls++;
    log->last_done = done;
    log->last_total = total;
    if (log->stop_on_first_call)
        *log->stop_on_first_call = 1;
}

static void database_archive_is_gzip_that_gzip_and_sha256sum_agree_with(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    struct progress_log progress = {0};
    struct io_context io = {.progress = record_progress, .progress_context = &progress};
    char archive[PATH_MAX], expected[ARCHIVE_SHA256_HEX], hashed[ARCHIVE_SHA256_HEX];
    path_in("checked.db.gz", archive);

    int64_t source_size = size_of(fixture.database);
    assert_true(source_size > 8 * 1024 * 1024);
    assert_int_equal(archive_compress(fixture.database, archive, 6, &io, &result, &err), 0);

    assert_int_equal(run("gzip -t %s", archive), 0);
    assert_int_equal(run("gzip -dc %s | cmp -s - %s", archive, fixture.database), 0);
    sha256sum_of(archive, expected);
    assert_string_equal(result.sha256, expected);
    assert_int_equal(archive_sha256_file(archive, hashed, &err), 0);
    assert_string_equal(hashed, expected);

    assert_int_equal(result.input_bytes, source_size);
    assert_int_equal(result.output_bytes, size_of(archive));
    assert_true(result.output_bytes < source_size / 2);
    struct stat st;
    assert_int_equal(stat(archive, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    assert_true(progress.calls >= 2);
    assert_int_equal(progress.last_done, source_size);
    assert_int_equal(progress.last_total, source_size);
    unlink(archive);
}

/* How many of this process's threads run under `policy`. */
static int threads_under(int policy)
{
    DIR *tasks = opendir("/proc/self/task");
    assert_non_null(tasks);
    int count = 0;
    for (struct dirent *entry; (entry = readdir(tasks)) != NULL;) {
        if (entry->d_name[0] != '.' && sched_getscheduler((pid_t)atoi(entry->d_name)) == policy)
            count++;
    }
    closedir(tasks);
    return count;
}

/* Counted on the calling thread while the compression threads are busy:
 * how many of this process's threads run at SCHED_IDLE. */
static void count_idle_threads(void *context, int64_t done, int64_t total)
{
    int *most_idle = context;
    (void)done;
    (void)total;
    int idle = threads_under(SCHED_IDLE);
    if (idle > *most_idle)
        *most_idle = idle;
}

/* The agent's scheduled backups must give way to the application at once:
 * their compression threads run at SCHED_IDLE, a one-off's do not, and the
 * calling thread (the agent's worker) keeps its priority either way. */
static void background_compression_threads_run_at_sched_idle(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char archive[PATH_MAX];
    path_in("background.db.gz", archive);

    for (int background = 0; background <= 1; background++) {
        int most_idle = 0;
        struct io_context io = {.progress = count_idle_threads,
                                .progress_context = &most_idle,
                                .background = background};
        struct archive_options options = {.threads = 2};
        assert_int_equal(archive_compress_format(fixture.database, archive, ARCHIVE_GZIP, 6, &io,
                                                 &options, &result, &err),
                         0);
        assert_string_equal(result.sha256, fixture.made.sha256);
        assert_int_equal(most_idle, background ? 2 : 0);
        assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
        unlink(archive);
    }
}

/* A compression held at its first progress report, workers alive, until
 * released: the first of two that run at once. */
struct held_compression {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool holding, released;
    int workers; /* its threads at SCHED_IDLE while held */
    int rc;
    char archive[PATH_MAX];
};

static void hold_at_first_report(void *context, int64_t done, int64_t total)
{
    struct held_compression *held = context;
    (void)done;
    (void)total;
    pthread_mutex_lock(&held->lock);
    if (!held->holding) {
        held->workers = threads_under(SCHED_IDLE);
        held->holding = true;
        pthread_cond_broadcast(&held->changed);
        while (!held->released)
            pthread_cond_wait(&held->changed, &held->lock);
    }
    pthread_mutex_unlock(&held->lock);
}

static void *compress_held(void *context)
{
    struct held_compression *held = context;
    struct error err = {0};
    struct archive_result result;
    struct io_context io = {
        .progress = hold_at_first_report, .progress_context = held, .background = true};
    struct archive_options options = {.threads = 4};
    held->rc = archive_compress_format(fixture.database, held->archive, ARCHIVE_GZIP, 6, &io,
                                       &options, &result, &err);
    return NULL;
}

/* Counted on the calling thread: the most workers (SCHED_OTHER threads
 * beyond `*context`'s first value, the callers) seen while it runs. */
static void count_other_threads(void *context, int64_t done, int64_t total)
{
    int *counts = context; /* [0] the callers, [1] the most workers seen */
    (void)done;
    (void)total;
    int workers = threads_under(SCHED_OTHER) - counts[0];
    if (workers > counts[1])
        counts[1] = workers;
}

/* A replica's base and a backup that compress at once share the threads
 * (and so the memory) of one compression: the second gets what the first
 * leaves of its own `threads`, here none, so one; once the first is done,
 * a compression gets all it asks for again. Its archive is the same. */
static void compressions_at_once_share_one_thread_budget(void **state)
{
    (void)state;
    struct held_compression held = {.lock = PTHREAD_MUTEX_INITIALIZER,
                                    .changed = PTHREAD_COND_INITIALIZER};
    path_in("held.db.gz", held.archive);
    pthread_t first;
    assert_int_equal(pthread_create(&first, NULL, compress_held, &held), 0);
    pthread_mutex_lock(&held.lock);
    while (!held.holding)
        pthread_cond_wait(&held.changed, &held.lock);
    pthread_mutex_unlock(&held.lock);
    assert_int_equal(held.workers, 4);

    char archive[PATH_MAX];
    path_in("second.db.gz", archive);
    for (int round = 0; round < 2; round++) {
        struct error err = {0};
        struct archive_result result;
        int counts[2] = {threads_under(SCHED_OTHER), 0}; /* this thread, and the first's caller */
        struct io_context io = {.progress = count_other_threads, .progress_context = counts};
        struct archive_options options = {.threads = 4};
        assert_int_equal(archive_compress_format(fixture.database, archive, ARCHIVE_GZIP, 6, &io,
                                                 &options, &result, &err),
                         0);
        assert_string_equal(result.sha256, fixture.made.sha256);
        assert_int_equal(counts[1], round == 0 ? 1 : 4);
        unlink(archive);
        if (round == 0) { /* the first finishes, and gives its threads back */
            pthread_mutex_lock(&held.lock);
            held.released = true;
            pthread_cond_broadcast(&held.changed);
            pthread_mutex_unlock(&held.lock);
            pthread_join(first, NULL);
            assert_int_equal(held.rc, 0);
            unlink(held.archive);
        }
    }
}

static void round_trip_gives_back_the_same_working_database(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char restored[PATH_MAX];
    path_in("restored.db", restored);

    assert_int_equal(archive_decompress(fixture.archive, restored, NULL, NULL, &result, &err), 0);
    assert_int_equal(run("cmp -s %s %s", restored, fixture.database), 0);
    assert_string_equal(result.sha256, fixture.made.sha256); /* of the compressed input */
    assert_int_equal(result.input_bytes, size_of(fixture.archive));
    assert_int_equal(result.output_bytes, size_of(fixture.database));
    struct stat st;
    assert_int_equal(stat(restored, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    sqlite3 *db = NULL;
    sqlite3_stmt *query = NULL;
    assert_int_equal(sqlite3_open_v2(restored, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM orders),"
                                        " (SELECT integrity_check FROM pragma_integrity_check)",
                                        -1, &query, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(query), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(query, 0), SOURCE_ROWS);
    assert_string_equal((const char *)sqlite3_column_text(query, 1), "ok");
    sqlite3_finalize(query);
    sqlite3_close(db);
    unlink(restored);
}

/* What a consumer was handed: written to a file in order, refusing once
 * `refuse_after` bytes have come when it is not 0. */
struct consumed {
    FILE *file;
    int64_t bytes, refuse_after;
    int calls;
};

static int consume_to_file(void *context, const void *data, size_t size, struct error *err)
{
    struct consumed *c = context;
    c->calls++;
    if (c->refuse_after && c->bytes + (int64_t)size > c->refuse_after)
        return error_set(err, -ENOSPC, "the consumer is full");
    c->bytes += (int64_t)size;
    return fwrite(data, 1, size, c->file) == size ? 0 : error_set(err, -EIO, "fwrite");
}

/* archive_decompress_into hands a consumer the same bytes archive_decompress
 * writes, gzip and zstd, in pieces and in order, with the same digest; a
 * consumer's error stops it with that error; damage is found as it reads. */
static void decompressing_into_a_consumer_gives_the_same_bytes(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result made, result;
    char zstd[PATH_MAX], taken[PATH_MAX], half[PATH_MAX];
    path_in("into.db.zst", zstd);
    path_in("taken.db", taken);
    path_in("into-half.db.gz", half);
    assert_int_equal(
        archive_compress_format(fixture.database, zstd, ARCHIVE_ZSTD, 3, NULL, NULL, &made, &err),
        0);
    const char *archives[] = {fixture.archive, zstd};
    const char *digests[] = {fixture.made.sha256, made.sha256};
    for (int i = 0; i < 2; i++) {
        struct consumed c = {.file = fopen(taken, "wb")};
        assert_non_null(c.file);
        assert_int_equal(
            archive_decompress_into(archives[i], consume_to_file, &c, NULL, NULL, &result, &err),
            0);
        assert_int_equal(fclose(c.file), 0);
        assert_true(c.calls > 1);
        assert_int_equal(c.bytes, size_of(fixture.database));
        assert_int_equal(result.output_bytes, c.bytes);
        assert_string_equal(result.sha256, digests[i]);
        assert_int_equal(run("cmp -s %s %s", taken, fixture.database), 0);

        /* No result asked for: nothing hashed, the same bytes. */
        c = (struct consumed){.file = fopen(taken, "wb")};
        assert_int_equal(
            archive_decompress_into(archives[i], consume_to_file, &c, NULL, NULL, NULL, &err), 0);
        assert_int_equal(fclose(c.file), 0);
        assert_int_equal(run("cmp -s %s %s", taken, fixture.database), 0);

        c = (struct consumed){.file = fopen(taken, "wb"), .refuse_after = 3 << 20};
        assert_int_equal(
            archive_decompress_into(archives[i], consume_to_file, &c, NULL, NULL, &result, &err),
            -ENOSPC);
        fclose(c.file);
        assert_string_equal(err.message, "the consumer is full");
    }
    assert_int_equal(
        run("head -c %lld %s > %s", (long long)size_of(fixture.archive) / 2, fixture.archive, half),
        0);
    struct consumed c = {.file = fopen(taken, "wb")};
    assert_int_equal(archive_decompress_into(half, consume_to_file, &c, NULL, NULL, &result, &err),
                     -EBADMSG);
    fclose(c.file);
    assert_non_null(strstr(err.message, "truncated or corrupt"));
    assert_true(c.bytes > 0); /* what came before the damage was handed over */
    unlink(zstd);
    unlink(taken);
    unlink(half);
}

/* Sealed as it is compressed (encrypt.local): an age file that the age
 * tool opens into the very gzip archive, that decompresses with the
 * identity only, and whose sha256 is of the stored bytes. */
static void sealed_archive_opens_with_its_identity_only(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result made, result;
    struct age_identity identity, stranger;
    struct age_recipient recipient;
    char archive[PATH_MAX], restored[PATH_MAX], key[PATH_MAX], text[256];
    path_in("sealed.db.gz.age", archive);
    path_in("sealed-restored.db", restored);
    path_in("sealed-key.txt", key);
    assert_int_equal(age_identity_generate(&identity, &err), 0);
    assert_int_equal(age_identity_generate(&stranger, &err), 0);
    age_identity_recipient(&identity, &recipient);
    struct archive_options options = {.recipients = &recipient, .recipient_count = 1};
    assert_int_equal(archive_compress_format(fixture.database, archive, ARCHIVE_GZIP, 6, NULL,
                                             &options, &made, &err),
                     0);
    assert_int_equal(made.output_bytes, size_of(archive));
    assert_int_equal(run("head -c 22 %s | grep -qx age-encryption.org/v1", archive), 0);
    assert_true(run("gzip -t < %s 2>/dev/null", archive) != 0); /* not readable as it is */
    char sha[ARCHIVE_SHA256_HEX];
    assert_int_equal(archive_sha256_file(archive, sha, &err), 0);
    assert_string_equal(made.sha256, sha);

    /* No key, the wrong key: refused, nothing left behind. */
    struct archive_keys none = {0}, wrong = {&stranger, 1, "the-object"};
    assert_int_equal(archive_decompress(archive, restored, &none, NULL, &result, &err), -ENOKEY);
    assert_non_null(strstr(err.message, "--identity"));
    assert_int_equal(archive_decompress(archive, restored, &wrong, NULL, &result, &err), -EACCES);
    assert_non_null(strstr(err.message, "the-object"));
    assert_int_equal(access(restored, F_OK), -1);

    struct archive_keys keys = {&identity, 1, NULL};
    assert_int_equal(archive_decompress(archive, restored, &keys, NULL, &result, &err), 0);
    assert_int_equal(run("cmp -s %s %s", restored, fixture.database), 0);
    assert_string_equal(result.sha256, sha);
    unlink(restored);

    if (run("command -v age >/dev/null") == 0) {
        assert_true(age_identity_file_text(&identity, 0, text, sizeof text) > 0);
        FILE *file = fopen(key, "w");
        assert_non_null(file);
        fputs(text, file);
        fclose(file);
        assert_int_equal(run("age -d -i %s %s | gunzip | cmp -s - %s", key, archive,
                             fixture.database),
                         0);
        unlink(key);
    }
    unlink(archive);
    age_identity_wipe(&identity);
    age_identity_wipe(&stranger);
}

/* Decompressing `archive` fails as corrupt, naming it, and leaves nothing. */
static void assert_rejected_as_corrupt(const char *archive)
{
    struct error err = {0};
    struct archive_result result;
    char restored[PATH_MAX], prefix[PATH_MAX + 64];
    path_in("rejected.db", restored);

    assert_int_equal(archive_decompress(archive, restored, NULL, NULL, &result, &err), -EBADMSG);
    snprintf(prefix, sizeof prefix, "archive %s is truncated or corrupt: ", archive);
    if (strncmp(err.message, prefix, strlen(prefix)) != 0)
        fail_msg("unexpected message: %s", err.message);
    assert_false(exists(restored));
}

static void truncated_archive_is_refused_and_leaves_nothing(void **state)
{
    (void)state;
    char half[PATH_MAX], no_trailer[PATH_MAX];
    path_in("half.db.gz", half);
    path_in("no-trailer.db.gz", no_trailer);
    int64_t size = size_of(fixture.archive);

    copy_file(fixture.archive, half);
    assert_int_equal(truncate(half, size / 2), 0);
    assert_rejected_as_corrupt(half);

    /* Only the last member's 8-byte trailer (CRC, length) missing. */
    copy_file(fixture.archive, no_trailer);
    assert_int_equal(truncate(no_trailer, size - 8), 0);
    assert_rejected_as_corrupt(no_trailer);
}

static void corrupt_byte_is_refused(void **state)
{
    (void)state;
    char corrupt[PATH_MAX];
    path_in("corrupt.db.gz", corrupt);
    copy_file(fixture.archive, corrupt);

    int fd = open(corrupt, O_RDWR);
    assert_true(fd >= 0);
    off_t middle = (off_t)(size_of(corrupt) / 2);
    unsigned char byte;
    assert_int_equal(pread(fd, &byte, 1, middle), 1);
    byte ^= 0x55;
    assert_int_equal(pwrite(fd, &byte, 1, middle), 1);
    close(fd);

    assert_int_not_equal(run("gzip -t %s 2>/dev/null", corrupt), 0); /* gzip agrees */
    assert_rejected_as_corrupt(corrupt);
}

static void trailing_garbage_is_refused(void **state)
{
    (void)state;
    char garbage[PATH_MAX];
    path_in("garbage.db.gz", garbage);
    copy_file(fixture.archive, garbage);
    assert_int_equal(run("printf 'not gzip' >> %s", garbage), 0);
    assert_rejected_as_corrupt(garbage);
}

static void empty_archive_file_is_refused(void **state)
{
    (void)state;
    char empty[PATH_MAX];
    path_in("empty-file.gz", empty);
    write_bytes(empty, "", 0);
    assert_rejected_as_corrupt(empty);
}

static void stop_flag_cancels_and_leaves_no_file(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    volatile sig_atomic_t stop = 1;
    struct io_context io = {.stop = &stop};
    char archive[PATH_MAX], restored[PATH_MAX];
    path_in("stopped.db.gz", archive);
    path_in("stopped.db", restored);

    assert_int_equal(archive_compress(fixture.database, archive, 6, &io, &result, &err),
                     -ECANCELED);
    assert_int_equal(err.code, -ECANCELED);
    assert_false(exists(archive));
    assert_int_equal(archive_decompress(fixture.archive, restored, NULL, &io, &result, &err), -ECANCELED);
    assert_false(exists(restored));
}

static void stop_during_compression_cancels_midway(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    volatile sig_atomic_t stop = 0;
    struct progress_log progress = {.stop_on_first_call = &stop};
    struct io_context io = {
        .stop = &stop, .progress = record_progress, .progress_context = &progress};
    char archive[PATH_MAX], restored[PATH_MAX];
    path_in("midway.db.gz", archive);
    path_in("midway.db", restored);

    assert_int_equal(archive_compress(fixture.database, archive, 6, &io, &result, &err),
                     -ECANCELED);
    assert_int_equal(progress.calls, 1);
    assert_true(progress.last_done < progress.last_total);
    assert_false(exists(archive));

    /* Decompression reports every 8 MiB of compressed input: noise does not
     * compress, so 10 MiB of it makes an archive large enough. */
    char noise[PATH_MAX], large[PATH_MAX];
    path_in("noise", noise);
    path_in("noise.gz", large);
    size_t size = 10 * 1024 * 1024;
    unsigned char *bytes = malloc(size);
    uint32_t seed = 7;
    for (size_t i = 0; i < size; i++) {
        seed = seed * 1664525u + 1013904223u;
        bytes[i] = (unsigned char)(seed >> 24);
    }
    write_bytes(noise, bytes, size);
    free(bytes);
    assert_int_equal(run("gzip -1 -c %s > %s", noise, large), 0);

    stop = 0;
    progress.calls = 0;
    assert_int_equal(archive_decompress(large, restored, NULL, &io, &result, &err), -ECANCELED);
    assert_int_equal(progress.calls, 1);
    assert_true(progress.last_done < progress.last_total);
    assert_false(exists(restored));
    unlink(large);
    unlink(noise);
}

static void existing_destination_is_refused_and_kept(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char existing[PATH_MAX], expected[PATH_MAX + 64];
    path_in("precious", existing);
    write_bytes(existing, "precious", 8);
    snprintf(expected, sizeof expected, "cannot create %s: File exists", existing);

    assert_int_equal(archive_compress(fixture.database, existing, 6, NULL, &result, &err), -EEXIST);
    assert_string_equal(err.message, expected);
    assert_int_equal(archive_decompress(fixture.archive, existing, NULL, NULL, &result, &err), -EEXIST);
    assert_int_equal(run("printf precious | cmp -s - %s", existing), 0);
}

static void empty_input_gives_a_valid_empty_gzip(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char empty[PATH_MAX], archive[PATH_MAX], restored[PATH_MAX];
    path_in("empty.db", empty);
    path_in("empty.db.gz", archive);
    path_in("empty-restored.db", restored);
    write_bytes(empty, "", 0);

    assert_int_equal(archive_compress(empty, archive, 6, NULL, &result, &err), 0);
    assert_int_equal(result.input_bytes, 0);
    assert_true(result.output_bytes > 0);
    assert_int_equal(run("gzip -t %s", archive), 0);
    assert_int_equal(run("test -z \"$(gzip -dc %s)\"", archive), 0);
    assert_int_equal(archive_decompress(archive, restored, NULL, NULL, &result, &err), 0);
    assert_int_equal(size_of(restored), 0);
}

static void levels_one_and_nine_round_trip_and_nine_is_smaller(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result fast, small;
    char level1[PATH_MAX], level9[PATH_MAX], bad[PATH_MAX];
    path_in("level1.db.gz", level1);
    path_in("level9.db.gz", level9);
    path_in("level10.db.gz", bad);

    assert_int_equal(archive_compress(fixture.database, level1, 1, NULL, &fast, &err), 0);
    assert_int_equal(archive_compress(fixture.database, level9, 9, NULL, &small, &err), 0);
    assert_int_equal(run("gzip -dc %s | cmp -s - %s", level1, fixture.database), 0);
    assert_int_equal(run("gzip -dc %s | cmp -s - %s", level9, fixture.database), 0);
    assert_true(small.output_bytes < fast.output_bytes);
    assert_true(small.output_bytes <= fixture.made.output_bytes);

    assert_int_equal(archive_compress(fixture.database, bad, 10, NULL, &fast, &err), -EINVAL);
    assert_int_equal(archive_compress(fixture.database, bad, 0, NULL, &fast, &err), -EINVAL);
    assert_false(exists(bad));
    unlink(level1);
    unlink(level9);
}

/* backup.level is gzip's scale: at every level the archive must be about as
 * small as the one `gzip -N` makes of the same database (the tool a user
 * would compare with), and a higher level never gives a bigger archive. */
static void gzip_scale_levels_match_gzip_itself(void **state)
{
    (void)state;
    struct error err = {0};
    char archive[PATH_MAX], reference[PATH_MAX];
    path_in("scale.db.gz", archive);
    path_in("reference.gz", reference);
    int64_t previous = INT64_MAX;

    for (int level = 1; level <= 9; level++) {
        struct archive_result result;
        int native = archive_deflate_level(level);
        assert_in_range(native, 1, 9);
        assert_int_equal(archive_compress(fixture.database, archive, native, NULL, &result, &err),
                         0);
        assert_int_equal(run("gzip -%d -c %s > %s", level, fixture.database, reference), 0);
        int64_t gzip_bytes = size_of(reference);
        print_message("gzip -%d: %lld bytes, libdeflate %d: %lld bytes (%.3fx)\n", level,
                      (long long)gzip_bytes, native, (long long)result.output_bytes,
                      (double)result.output_bytes / (double)gzip_bytes);
        assert_true(result.output_bytes * 100 <= gzip_bytes * 103);
        assert_true(result.output_bytes <= previous);
        previous = result.output_bytes;
        unlink(archive);
        unlink(reference);
    }
}

static void thread_count_does_not_change_the_archive(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char archive[PATH_MAX];
    path_in("threads.db.gz", archive);

    const int counts[] = {1, 3, 8};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        struct archive_options options = {.threads = counts[i]};
        assert_int_equal(archive_compress_format(fixture.database, archive, ARCHIVE_GZIP, 6, NULL,
                                                 &options, &result, &err),
                         0);
        assert_string_equal(result.sha256, fixture.made.sha256);
        unlink(archive);
    }
}

static void members_written_by_gzip_itself_are_all_read(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char first[PATH_MAX], second[PATH_MAX], archive[PATH_MAX], restored[PATH_MAX];
    path_in("part1", first);
    path_in("part2", second);
    path_in("parts.gz", archive);
    path_in("parts", restored);
    write_bytes(first, "first part\n", 11);
    write_bytes(second, "second part\n", 12);

    assert_int_equal(run("gzip -c %s > %s && gzip -9c %s >> %s", first, archive, second, archive),
                     0);
    assert_int_equal(archive_decompress(archive, restored, NULL, NULL, &result, &err), 0);
    assert_int_equal(run("cat %s %s | cmp -s - %s", first, second, restored), 0);
}

/* sqlprodd's members (whole, with libdeflate) followed by one that gzip made
 * of the whole database (bigger than a block: zlib's streaming inflate takes
 * over): everything is read, and the digest is still that of the whole
 * file, as sha256sum says. */
static void a_big_member_after_ours_is_read_and_the_digest_covers_all(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char archive[PATH_MAX], restored[PATH_MAX], expected[ARCHIVE_SHA256_HEX];
    path_in("mixed.gz", archive);
    path_in("mixed", restored);

    assert_int_equal(
        run("cat %s > %s && gzip -c %s >> %s", fixture.archive, archive, fixture.database, archive),
        0);
    assert_int_equal(archive_decompress(archive, restored, NULL, NULL, &result, &err), 0);
    assert_int_equal(run("cat %s %s | cmp -s - %s", fixture.database, fixture.database, restored),
                     0);
    sha256sum_of(archive, expected);
    assert_string_equal(result.sha256, expected);
    assert_int_equal(result.input_bytes, size_of(archive));
    assert_int_equal(result.output_bytes, 2 * size_of(fixture.database));
    unlink(restored);
    unlink(archive);
}

static void missing_source_is_named_and_creates_nothing(void **state)
{
    (void)state;
    struct error err = {0};
    struct archive_result result;
    char missing[PATH_MAX], archive[PATH_MAX], expected[PATH_MAX + 64];
    char hex[ARCHIVE_SHA256_HEX];
    path_in("missing.db", missing);
    path_in("missing.db.gz", archive);
    snprintf(expected, sizeof expected, "cannot open %s: No such file or directory", missing);

    assert_int_equal(archive_compress(missing, archive, 6, NULL, &result, &err), -ENOENT);
    assert_string_equal(err.message, expected);
    assert_false(exists(archive));
    assert_int_equal(archive_decompress(missing, archive, NULL, NULL, &result, &err), -ENOENT);
    assert_false(exists(archive));
    assert_int_equal(archive_sha256_file(missing, hex, &err), -ENOENT);
    assert_string_equal(err.message, expected);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(database_archive_is_gzip_that_gzip_and_sha256sum_agree_with),
        cmocka_unit_test(round_trip_gives_back_the_same_working_database),
        cmocka_unit_test(decompressing_into_a_consumer_gives_the_same_bytes),
        cmocka_unit_test(sealed_archive_opens_with_its_identity_only),
        cmocka_unit_test(truncated_archive_is_refused_and_leaves_nothing),
        cmocka_unit_test(corrupt_byte_is_refused),
        cmocka_unit_test(trailing_garbage_is_refused),
        cmocka_unit_test(empty_archive_file_is_refused),
        cmocka_unit_test(stop_flag_cancels_and_leaves_no_file),
        cmocka_unit_test(stop_during_compression_cancels_midway),
        cmocka_unit_test(existing_destination_is_refused_and_kept),
        cmocka_unit_test(empty_input_gives_a_valid_empty_gzip),
        cmocka_unit_test(levels_one_and_nine_round_trip_and_nine_is_smaller),
        cmocka_unit_test(gzip_scale_levels_match_gzip_itself),
        cmocka_unit_test(thread_count_does_not_change_the_archive),
        cmocka_unit_test(background_compression_threads_run_at_sched_idle),
        cmocka_unit_test(compressions_at_once_share_one_thread_budget),
        cmocka_unit_test(members_written_by_gzip_itself_are_all_read),
        cmocka_unit_test(a_big_member_after_ours_is_read_and_the_digest_covers_all),
        cmocka_unit_test(missing_source_is_named_and_creates_nothing),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
