/*
 * io.c: reads and writes until done, streamed SHA-256 and hex, the stop
 * flag, backoff, interruptible sleep and helper-thread start (see io.h).
 * Not for formats, transports or file-system policy.
 */
#include "core/io.h"

#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Enough to keep a disk or page cache busy; hashing is never the bottleneck. */
#define IO_HASH_BUFFER_BYTES (256 * 1024)

bool io_stopped(const struct io_context *io)
{
    return io && io->stop && *io->stop;
}

void io_report_progress(const struct io_context *io, int64_t done, int64_t total)
{
    if (io && io->progress)
        io->progress(io->progress_context, done, total);
}

int io_sleep_ms(int64_t milliseconds, int64_t slice_ms, const volatile sig_atomic_t *stop)
{
    assert(slice_ms > 0 && slice_ms < 1000);
    while (milliseconds > 0) {
        if (stop && *stop)
            return -ECANCELED;
        int64_t slice = milliseconds < slice_ms ? milliseconds : slice_ms;
        struct timespec pause = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&pause, NULL);
        milliseconds -= slice;
    }
    return stop && *stop ? -ECANCELED : 0;
}

/* The one loop under the four calls below: offset < 0 reads at the file
 * position (read(2)), else at offset (pread(2)). The count, short only at
 * end of file, or -errno. */
static ssize_t io_get(int fd, void *buffer, size_t size, int64_t offset)
{
    size_t done = 0;
    while (done < size) {
        char *to = (char *)buffer + done;
        ssize_t got = offset < 0 ? read(fd, to, size - done)
                                 : pread(fd, to, size - done, (off_t)(offset + (int64_t)done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

/* As io_get, for write(2) and pwrite(2): 0 or -errno. */
static int io_put(int fd, const void *buffer, size_t size, int64_t offset)
{
    size_t done = 0;
    while (done < size) {
        const char *from = (const char *)buffer + done;
        ssize_t put = offset < 0 ? write(fd, from, size - done)
                                 : pwrite(fd, from, size - done, (off_t)(offset + (int64_t)done));
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return -errno;
        done += (size_t)put;
    }
    return 0;
}

ssize_t io_read_full(int fd, void *buffer, size_t size)
{
    return io_get(fd, buffer, size, -1);
}

ssize_t io_read_full_at(int fd, void *buffer, size_t size, int64_t offset)
{
    assert(offset >= 0);
    return io_get(fd, buffer, size, offset);
}

int io_write_full(int fd, const void *buffer, size_t size)
{
    return io_put(fd, buffer, size, -1);
}

int io_pread_full(int fd, void *buffer, size_t size, int64_t offset)
{
    assert(offset >= 0);
    ssize_t got = io_get(fd, buffer, size, offset);
    return got < 0 ? (int)got : (size_t)got < size ? -ENODATA : 0;
}

int io_pwrite_full(int fd, const void *buffer, size_t size, int64_t offset)
{
    assert(offset >= 0);
    return io_put(fd, buffer, size, offset);
}

void io_hex(const void *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *in = bytes;
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * size] = '\0';
}

int io_sha256_begin(struct io_sha256 *hash)
{
    hash->context = EVP_MD_CTX_new();
    if (!hash->context || EVP_DigestInit_ex(hash->context, EVP_sha256(), NULL) != 1) {
        io_sha256_discard(hash);
        return -ENOMEM;
    }
    return 0;
}

void io_sha256_update(struct io_sha256 *hash, const void *data, size_t size)
{
    assert(hash->context);
    EVP_DigestUpdate(hash->context, data, size);
}

void io_sha256_end(struct io_sha256 *hash, char hex[IO_SHA256_HEX])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned length = 0;
    assert(hash->context);
    EVP_DigestFinal_ex(hash->context, digest, &length);
    assert(length * 2 + 1 == IO_SHA256_HEX);
    io_hex(digest, length, hex);
    io_sha256_discard(hash);
}

void io_sha256_discard(struct io_sha256 *hash)
{
    EVP_MD_CTX_free(hash->context);
    hash->context = NULL;
}

void io_sha256_buffer(const void *data, size_t size, char hex[IO_SHA256_HEX])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned length = 0;
    EVP_Digest(data, size, digest, &length, EVP_sha256(), NULL);
    io_hex(digest, length, hex);
}

int io_sha256_fd(int fd, const struct io_context *io, char hex[IO_SHA256_HEX])
{
    struct io_sha256 hash = {0};
    unsigned char *buffer = malloc(IO_HASH_BUFFER_BYTES);
    int rc = buffer ? io_sha256_begin(&hash) : -ENOMEM;

    hex[0] = '\0';
    while (rc == 0) {
        if (io_stopped(io)) {
            rc = -ECANCELED;
            break;
        }
        ssize_t got = io_read_full(fd, buffer, IO_HASH_BUFFER_BYTES);
        if (got < 0)
            rc = (int)got;
        else if (got == 0)
            break;
        else
            io_sha256_update(&hash, buffer, (size_t)got);
    }
    if (rc == 0)
        io_sha256_end(&hash, hex);
    io_sha256_discard(&hash);
    free(buffer);
    return rc;
}

int64_t io_monotonic_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

int64_t io_monotonic_ms(void)
{
    return io_monotonic_us() / 1000;
}

int64_t io_backoff(int64_t base, int64_t max, int doublings, enum io_jitter jitter)
{
    int64_t ceiling = base;
    for (int i = 0; i < doublings && ceiling < max; i++)
        ceiling *= 2;
    if (ceiling > max)
        ceiling = max;
    if (ceiling <= 0)
        return 0;
    int64_t floor = jitter == IO_JITTER_FULL    ? 0
                    : jitter == IO_JITTER_EQUAL ? ceiling / 2
                                                : ceiling;
    int64_t spread = jitter == IO_JITTER_FULL ? ceiling : ceiling / 2;
    if (spread > UINT32_MAX - 1)
        spread = UINT32_MAX - 1;
    /* arc4random: unlike rand(), not the same sequence in every process, so
     * agents started together do not retry in step. */
    return floor + (int64_t)arc4random_uniform((uint32_t)spread + 1);
}

int io_thread_start(pthread_t *thread, void *(*run)(void *), void *argument)
{
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int rc = pthread_create(thread, NULL, run, argument);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return -rc;
}
