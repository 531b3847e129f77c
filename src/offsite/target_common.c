/*
 * target_common.c: what the target implementations (target_dir.c,
 * target_s3.c, s3_*.c) share below the factory: the retry clock (backoff
 * with full jitter from the target's tuning, sleeps a stop request cuts
 * short), listings, and local files as upload sources. It calls nothing
 * in offsite/ above it; the formulas themselves are core/io.c's. Not for
 * dispatch (target.c) nor transports.
 */
#include "offsite/target_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Short enough that SIGTERM ends a backoff "within seconds", as SPEC.md asks. */
#define TARGET_SLEEP_SLICE_MS 100

int64_t target_retry_delay_ms(const struct target_tuning *tuning, int retry)
{
    /* Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
     * many agents retrying one endpoint spread out instead of colliding. */
    return io_backoff(tuning->base_delay_ms, tuning->max_delay_ms, retry - 1, IO_JITTER_FULL);
}

int target_retry_sleep(int64_t milliseconds, const struct io_context *io)
{
    return io_sleep_ms(milliseconds, TARGET_SLEEP_SLICE_MS, io ? io->stop : NULL);
}

int target_listing_add(struct target_listing *listing, const char *key, int64_t size,
                       time_t modified, struct error *err)
{
    size_t length = strlen(key);
    if (length >= sizeof listing->objects[0].key)
        return error_set(err, -ENAMETOOLONG, "key too long (%zu bytes) in listing", length);
    /* Grow by doubling: listings of tens of thousands of keys stay cheap. */
    if ((listing->count & (listing->count - 1)) == 0) {
        size_t capacity = listing->count ? listing->count * 2 : 16;
        struct target_object *grown = realloc(listing->objects, capacity * sizeof *grown);
        if (!grown)
            return error_set(err, -ENOMEM, "out of memory listing objects");
        listing->objects = grown;
    }
    struct target_object *object = &listing->objects[listing->count++];
    memcpy(object->key, key, length + 1);
    object->size = size;
    object->modified = modified;
    return 0;
}

void target_listing_free(struct target_listing *listing)
{
    free(listing->objects);
    listing->objects = NULL;
    listing->count = 0;
}

static int file_open_reader(void *context, void **reader, struct error *err)
{
    (void)err;
    *reader = context;
    return 0;
}

static int file_read(void *reader, unsigned char *buffer, size_t length, int64_t offset,
                     struct error *err)
{
    const struct target_file *file = reader;
    int rc = io_pread_full(file->fd, buffer, length, file->offset + offset);
    if (rc != 0)
        return error_set(err, rc, "cannot read %s: %s", file->path,
                         rc == -ENODATA ? "it shrank while uploading" : strerror(-rc));
    return 0;
}

static void file_close_reader(void *reader)
{
    (void)reader;
}

void target_file_wrap(int fd, const char *path, int64_t size, struct target_file *file,
                      struct target_source *source)
{
    *file = (struct target_file){.fd = fd, .path = path};
    *source = (struct target_source){.name = path,
                                     .size = size,
                                     .context = file,
                                     .open_reader = file_open_reader,
                                     .read = file_read,
                                     .close_reader = file_close_reader};
}

int target_file_open(const char *path, struct target_file *file, struct target_source *source,
                     struct error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rc = error_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    target_file_wrap(fd, path, (int64_t)st.st_size, file, source);
    file->owned = true;
    return 0;
}

void target_file_close(struct target_file *file)
{
    if (file->owned && file->fd >= 0)
        close(file->fd);
    file->fd = -1;
}
