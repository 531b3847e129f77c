/*
 * test_io.c: the I/O layer (core/io.h) on real descriptors: hex and SHA-256
 * against published vectors and sha256sum, writes and reads until done on a
 * pipe whose transfers signals cut short, the sleep a stop flag ends, the
 * backoff bounds every caller relies on, and helper threads that leave
 * signals to the agent's thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/io.h"

static int64_t now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void hex_matches_known_vectors(void **state)
{
    (void)state;
    char out[64];
    io_hex("", 0, out);
    assert_string_equal(out, "");
    io_hex("\xde\xad\xbe\xef", 4, out);
    assert_string_equal(out, "deadbeef");
    io_hex("\x00\x01\x0f\x10\x7f\x80\xf0\xff", 8, out);
    assert_string_equal(out, "00010f107f80f0ff");
    io_hex("sqlprodd", 8, out);
    assert_string_equal(out, "73716c70726f6464");
}

/* FIPS 180-2 appendix B examples and the empty message. */
static void sha256_matches_nist_vectors(void **state)
{
    (void)state;
    char hex[IO_SHA256_HEX];
    io_sha256_buffer("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    io_sha256_buffer("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    io_sha256_buffer(two_blocks, strlen(two_blocks), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    /* One million 'a', streamed in pieces of uneven sizes. */
    struct io_sha256 hash;
    char a[997];
    memset(a, 'a', sizeof a);
    assert_int_equal(io_sha256_begin(&hash), 0);
    size_t left = 1000000;
    for (size_t piece = 1; left > 0; piece = piece % (sizeof a - 7) + 7) {
        size_t size = piece < left ? piece : left;
        io_sha256_update(&hash, a, size);
        left -= size;
    }
    io_sha256_end(&hash, hex);
    assert_null(hash.context);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* A file larger than io_sha256_fd's buffer and not a multiple of it, hashed
 * from an offset, against what sha256sum says of the same bytes. */
static void sha256_of_a_file_matches_sha256sum(void **state)
{
    (void)state;
    char path[] = "/tmp/sqlprodd-io-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint32_t value = 12345;
    for (int i = 0; i < 700000 / 4; i++) {
        value = value * 1103515245u + 12345u;
        assert_int_equal(write(fd, &value, sizeof value), sizeof value);
    }
    assert_int_equal(write(fd, "tail", 3), 3);

    char command[PATH_MAX + 64], expected[IO_SHA256_HEX], hex[IO_SHA256_HEX];
    snprintf(command, sizeof command, "tail -c +101 %s | sha256sum", path);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    assert_non_null(fgets(expected, sizeof expected, pipe));
    pclose(pipe);

    assert_int_equal(lseek(fd, 100, SEEK_SET), 100);
    assert_int_equal(io_sha256_fd(fd, NULL, hex), 0);
    assert_string_equal(hex, expected);

    /* A stop already set: no digest. */
    volatile sig_atomic_t stop = 1;
    struct io_context io = {.stop = &stop};
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(io_sha256_fd(fd, &io, hex), -ECANCELED);
    assert_string_equal(hex, "");
    close(fd);
    unlink(path);
}

static volatile sig_atomic_t alarms;

static void count_alarm(int signal_number)
{
    (void)signal_number;
    alarms++;
}

/* A timer signal without SA_RESTART every 200 µs interrupts write(2) and
 * read(2) on a one-page pipe: some calls fail with EINTR, others return
 * short counts. */
static void start_interrupting(void)
{
    struct sigaction action = {.sa_handler = count_alarm};
    sigemptyset(&action.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &action, NULL), 0);
    struct itimerval timer = {{0, 200}, {0, 200}};
    alarms = 0;
    assert_int_equal(setitimer(ITIMER_REAL, &timer, NULL), 0);
}

static void stop_interrupting(void)
{
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
}

#define PIPE_PAYLOAD (4 * 1024 * 1024 + 333)

static unsigned char *payload(void)
{
    unsigned char *data = malloc(PIPE_PAYLOAD);
    assert_non_null(data);
    for (size_t i = 0; i < PIPE_PAYLOAD; i++)
        data[i] = (unsigned char)(i * 31 + i / 4093);
    return data;
}

/* A child reads the pipe slowly, in odd sizes, and sends back the SHA-256 of
 * everything it got; the parent's io_write_full must deliver every byte
 * through short writes and writes that fail with EINTR. */
static void write_full_delivers_everything_through_interrupted_writes(void **state)
{
    (void)state;
    int data[2], answer[2];
    assert_int_equal(pipe(data), 0);
    assert_int_equal(pipe(answer), 0);
    fcntl(data[1], F_SETPIPE_SZ, 4096);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(data[1]);
        close(answer[0]);
        struct io_sha256 hash;
        unsigned char buffer[1500];
        char hex[IO_SHA256_HEX];
        if (io_sha256_begin(&hash) != 0)
            _exit(1);
        for (;;) {
            ssize_t got = read(data[0], buffer, sizeof buffer);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                break;
            io_sha256_update(&hash, buffer, (size_t)got);
            /* Slower than the writer: its writes often start on a full
             * pipe, so the timer interrupts some before any byte moved. */
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
        }
        io_sha256_end(&hash, hex);
        _exit(write(answer[1], hex, sizeof hex) == sizeof hex ? 0 : 1);
    }
    close(data[0]);
    close(answer[1]);
    unsigned char *sent = payload();
    char expected[IO_SHA256_HEX], received[IO_SHA256_HEX];
    io_sha256_buffer(sent, PIPE_PAYLOAD, expected);

    start_interrupting();
    int rc = io_write_full(data[1], sent, PIPE_PAYLOAD);
    stop_interrupting();
    assert_int_equal(rc, 0);
    assert_true(alarms > 0);
    close(data[1]);
    assert_int_equal(read(answer[0], received, sizeof received), sizeof received);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_string_equal(received, expected);
    close(answer[0]);
    free(sent);

    /* A closed reader is an error, not a silent loss. */
    int closed[2];
    assert_int_equal(pipe(closed), 0);
    close(closed[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(io_write_full(closed[1], "x", 1), -EPIPE);
    signal(SIGPIPE, SIG_DFL);
    close(closed[1]);
}

/* The mirror image: a child writes in odd sizes, io_read_full gathers
 * whole buffers through short reads and reads that fail with EINTR, and
 * returns a short count only at the end. */
static void read_full_gathers_short_reads_until_end_of_file(void **state)
{
    (void)state;
    int data[2];
    assert_int_equal(pipe(data), 0);
    unsigned char *sent = payload();
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(data[0]);
        for (size_t done = 0, piece = 1; done < PIPE_PAYLOAD; piece = piece % 3000 + 17) {
            size_t size = piece < PIPE_PAYLOAD - done ? piece : PIPE_PAYLOAD - done;
            if (io_write_full(data[1], sent + done, size) != 0)
                _exit(1);
            done += size;
            /* Slower than the reader: its reads often wait on an empty
             * pipe, so the timer interrupts some before any byte came. */
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
        }
        _exit(0);
    }
    close(data[1]);
    unsigned char *got = malloc(PIPE_PAYLOAD);
    assert_non_null(got);
    size_t total = 0;
    start_interrupting();
    for (;;) {
        ssize_t count = io_read_full(data[0], got + total, 1024 * 1024);
        assert_true(count >= 0);
        total += (size_t)count;
        if (count < 1024 * 1024)
            break;
    }
    stop_interrupting();
    assert_int_equal(total, PIPE_PAYLOAD);
    assert_memory_equal(got, sent, PIPE_PAYLOAD);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(data[0]);
    free(got);
    free(sent);
}

static void pread_full_says_when_the_file_ends_first(void **state)
{
    (void)state;
    char path[] = "/tmp/sqlprodd-io-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(io_pwrite_full(fd, "0123456789", 10, 5), 0);
    char buffer[16] = {0};
    assert_int_equal(io_pread_full(fd, buffer, 4, 8), 0);
    assert_memory_equal(buffer, "3456", 4);
    assert_int_equal(io_pread_full(fd, buffer, 8, 10), -ENODATA);
    /* io_read_full_at says how much there was instead, and leaves the position. */
    off_t position = lseek(fd, 0, SEEK_CUR);
    memset(buffer, 0, sizeof buffer);
    assert_int_equal(io_read_full_at(fd, buffer, 8, 12), 3);
    assert_memory_equal(buffer, "789", 3);
    assert_int_equal(io_read_full_at(fd, buffer, 8, 15), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), position);
    close(fd);
    unlink(path);
}

struct stopper {
    volatile sig_atomic_t stop;
    int after_ms;
};

static void *stop_later(void *context)
{
    struct stopper *stopper = context;
    struct timespec pause = {0, stopper->after_ms * 1000000L};
    nanosleep(&pause, NULL);
    stopper->stop = 1;
    return NULL;
}

static void sleep_ends_early_when_stop_is_set(void **state)
{
    (void)state;
    struct stopper stopper = {0, 150};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, stop_later, &stopper), 0);
    int64_t started = now_ms();
    assert_int_equal(io_sleep_ms(20000, 100, &stopper.stop), -ECANCELED);
    int64_t slept = now_ms() - started;
    pthread_join(thread, NULL);
    assert_true(slept >= 140);
    assert_true(slept < 1000);

    /* Set before the call: no sleep at all. */
    started = now_ms();
    assert_int_equal(io_sleep_ms(20000, 100, &stopper.stop), -ECANCELED);
    assert_true(now_ms() - started < 50);
}

static void sleep_without_stop_sleeps_the_whole_time(void **state)
{
    (void)state;
    volatile sig_atomic_t stop = 0;
    int64_t started = now_ms();
    assert_int_equal(io_sleep_ms(230, 100, &stop), 0);
    assert_true(now_ms() - started >= 230);
    started = now_ms();
    assert_int_equal(io_sleep_ms(60, 50, NULL), 0);
    assert_true(now_ms() - started >= 60);
}

/* Draws many delays: all inside [low, high], and they spread over the range
 * (the lowest near low, the highest near high), so jitter is really there. */
static void expect_spread(int64_t base, int64_t max, int doublings, enum io_jitter jitter,
                          int64_t low, int64_t high)
{
    int64_t lowest = INT64_MAX, highest = INT64_MIN;
    for (int i = 0; i < 4000; i++) {
        int64_t delay = io_backoff(base, max, doublings, jitter);
        assert_in_range(delay, low, high);
        lowest = delay < lowest ? delay : lowest;
        highest = delay > highest ? delay : highest;
    }
    assert_true(lowest <= low + (high - low) / 20);
    assert_true(highest >= high - (high - low) / 20);
}

/* The three callers' sequences, as they were before one formula served them:
 * targets (500 ms doubling to 30 s, full jitter), database_exec (100 ms
 * doubling to 6.4 s plus up to half again), the upload queue (1 min doubling
 * to 1 h, at least half of it). */
static void backoff_stays_within_each_callers_bounds(void **state)
{
    (void)state;
    expect_spread(500, 30000, 0, IO_JITTER_FULL, 0, 500);
    expect_spread(500, 30000, 3, IO_JITTER_FULL, 0, 4000);
    expect_spread(500, 30000, 6, IO_JITTER_FULL, 0, 30000);
    expect_spread(500, 30000, 40, IO_JITTER_FULL, 0, 30000);

    expect_spread(100, 6400, 0, IO_JITTER_ABOVE, 100, 150);
    expect_spread(100, 6400, 2, IO_JITTER_ABOVE, 400, 600);
    expect_spread(100, 6400, 6, IO_JITTER_ABOVE, 6400, 9600);
    expect_spread(100, 6400, 9, IO_JITTER_ABOVE, 6400, 9600);

    expect_spread(60, 3600, 0, IO_JITTER_EQUAL, 30, 60);
    expect_spread(60, 3600, 4, IO_JITTER_EQUAL, 480, 960);
    expect_spread(60, 3600, 6, IO_JITTER_EQUAL, 1800, 3600);

    /* No base (tests turn delays off): no wait. */
    assert_int_equal(io_backoff(0, 30000, 5, IO_JITTER_FULL), 0);
    assert_int_equal(io_backoff(0, 0, 5, IO_JITTER_ABOVE), 0);
}

static void *report_mask(void *context)
{
    sigset_t *mask = context;
    pthread_sigmask(SIG_SETMASK, NULL, mask);
    return NULL;
}

/* The helper blocks every signal; the caller's own mask is as before. */
static void started_thread_leaves_signals_to_the_caller(void **state)
{
    (void)state;
    sigset_t before, after, in_thread;
    sigemptyset(&in_thread);
    pthread_sigmask(SIG_SETMASK, NULL, &before);
    assert_false(sigismember(&before, SIGTERM));

    pthread_t thread;
    assert_int_equal(io_thread_start(&thread, report_mask, &in_thread), 0);
    pthread_join(thread, NULL);
    pthread_sigmask(SIG_SETMASK, NULL, &after);

    assert_true(sigismember(&in_thread, SIGTERM));
    assert_true(sigismember(&in_thread, SIGINT));
    assert_true(sigismember(&in_thread, SIGHUP));
    assert_true(sigismember(&in_thread, SIGCHLD));
    assert_false(sigismember(&after, SIGTERM));
    assert_false(sigismember(&after, SIGHUP));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hex_matches_known_vectors),
        cmocka_unit_test(sha256_matches_nist_vectors),
        cmocka_unit_test(sha256_of_a_file_matches_sha256sum),
        cmocka_unit_test(write_full_delivers_everything_through_interrupted_writes),
        cmocka_unit_test(read_full_gathers_short_reads_until_end_of_file),
        cmocka_unit_test(pread_full_says_when_the_file_ends_first),
        cmocka_unit_test(sleep_ends_early_when_stop_is_set),
        cmocka_unit_test(sleep_without_stop_sleeps_the_whole_time),
        cmocka_unit_test(backoff_stays_within_each_callers_bounds),
        cmocka_unit_test(started_thread_leaves_signals_to_the_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
