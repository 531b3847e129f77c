/*
 * io.h: the small I/O layer under everything that moves bytes (archive,
 * targets, restore, the coming replication), in the spirit of Redis's rio.c.
 *
 * It holds what those modules used to write each for themselves: reads and
 * writes until done, streamed SHA-256 and hex, the I/O context (stop flag,
 * progress, background priority) that long operations carry, the one
 * backoff formula, the one sleep that a stop request cuts short, and the one
 * way to start a helper thread. Not for file-system policy (temp names,
 * durable renames: fsutil.h) nor for any format or transport.
 */
#ifndef SQLPRODD_IO_H
#define SQLPRODD_IO_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* 64 lowercase hex digits and NUL. */
#define IO_SHA256_HEX 65

/* Called now and then with bytes done out of total (-1: unknown). */
typedef void (*io_progress_fn)(void *context, int64_t done, int64_t total);

/* What a long operation (compress, upload, download) carries: how to tell
 * it to stop and whom to tell how far it got. Every field may be zero and
 * the whole context NULL. */
struct io_context {
    const volatile sig_atomic_t *stop; /* non-zero: give up with -ECANCELED */
    io_progress_fn progress;
    void *progress_context;
    bool background; /* the agent's own schedule: helper threads run at the
                        lowest priority (priority.h) so the application's come first */
};

/* True once io->stop is set (false for a NULL io or stop). */
bool io_stopped(const struct io_context *io);

/* Calls io->progress, if there is one. */
void io_report_progress(const struct io_context *io, int64_t done, int64_t total);

/* Sleeps `milliseconds` in slices of at most `slice_ms`; returns -ECANCELED
 * as soon as *stop is set (also when it is set on entry), else 0. */
int io_sleep_ms(int64_t milliseconds, int64_t slice_ms, const volatile sig_atomic_t *stop);

/* read(2) until `size` bytes or end of file, retrying after EINTR and short
 * reads: the count (short only at end of file), or -errno. */
ssize_t io_read_full(int fd, void *buffer, size_t size);

/* As io_read_full, with pread(2) at `offset` (the file position stays). */
ssize_t io_read_full_at(int fd, void *buffer, size_t size, int64_t offset);

/* write(2) all of `size` bytes, retrying after EINTR and short writes: 0 or -errno. */
int io_write_full(int fd, const void *buffer, size_t size);

/* pread(2) / pwrite(2) of exactly `size` bytes at `offset`, retried after
 * EINTR and short transfers. 0, or -errno; -ENODATA when the file ends
 * first (it shrank under us). */
int io_pread_full(int fd, void *buffer, size_t size, int64_t offset);
int io_pwrite_full(int fd, const void *buffer, size_t size, int64_t offset);

/* Lowercase hex of `size` bytes into out[2 * size + 1], NUL-terminated. */
void io_hex(const void *bytes, size_t size, char *out);

/* A SHA-256 fed piece by piece (OpenSSL EVP underneath). */
struct io_sha256 {
    struct evp_md_ctx_st *context;
};

/* 0, or -ENOMEM. io_sha256_discard is safe after a failure. */
int io_sha256_begin(struct io_sha256 *hash);
void io_sha256_update(struct io_sha256 *hash, const void *data, size_t size);
/* Writes the digest in hex and frees the state. */
void io_sha256_end(struct io_sha256 *hash, char hex[IO_SHA256_HEX]);
/* Frees the state without a digest; NULL state is fine. */
void io_sha256_discard(struct io_sha256 *hash);

/* SHA-256 of a buffer, in hex. */
void io_sha256_buffer(const void *data, size_t size, char hex[IO_SHA256_HEX]);

/* SHA-256 of what `fd` holds from its current position to its end.
 * 0, -ENOMEM, -ECANCELED once io->stop is set, or -errno of a read. */
int io_sha256_fd(int fd, const struct io_context *io, char hex[IO_SHA256_HEX]);

/* CLOCK_MONOTONIC in milliseconds: for deadlines and idle times, which a
 * step of the wall clock must neither cut short nor stretch. */
int64_t io_monotonic_ms(void);
/* The same clock in microseconds: for how long a lock was held. */
int64_t io_monotonic_us(void);

/* How the delay is drawn below the backoff ceiling c = min(max, base * 2^doublings):
 * FULL in [0, c] (AWS's "full jitter": many clients of one server spread
 * out), EQUAL in [c/2, c] (a floor, for retries that must not come back at
 * once), ABOVE in [c, c + c/2] (at least the ceiling). */
enum io_jitter { IO_JITTER_FULL, IO_JITTER_EQUAL, IO_JITTER_ABOVE };

/* The wait before a retry, in the caller's unit (ms, s): exponential backoff
 * from `base`, doubled `doublings` times but never past `max`, with jitter. */
int64_t io_backoff(int64_t base, int64_t max, int doublings, enum io_jitter jitter);

/* pthread_create with every signal blocked in the new thread, so that
 * SIGTERM and friends keep going to the thread that owns signal handling
 * (the agent's loop); the caller's mask is restored. 0 or -errno. */
int io_thread_start(pthread_t *thread, void *(*run)(void *), void *argument);

#endif
