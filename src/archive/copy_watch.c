/*
 * copy_watch.c: a pass-through SQLite VFS that notes where VACUUM INTO
 * writes a backup's copy (see copy_watch.h for why).
 *
 * Only files opened through COPY_WATCH_VFS_NAME pass here, which only the
 * backup job's VACUUM INTO URI names; of those, only a main database file
 * whose full path matches a live watch is watched. The application's
 * database and the agent's state never go through this VFS.
 */
#include "archive/copy_watch.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum block_state { BLOCK_UNREAD, BLOCK_CLAIMED, BLOCK_CHANGED };

struct copy_watch {
    struct copy_watch *next; /* in the registry, under registry_lock */
    char *path;              /* as the parent VFS's xFullPathname makes it */
    pthread_mutex_t lock;
    pthread_cond_t progressed;
    int64_t written_end; /* highest byte written + 1 */
    int64_t wanted_end;  /* a reader waits for written_end to reach this; 0: none */
    bool ended;
    unsigned char *blocks; /* enum block_state per block below expected_bytes */
    uint64_t block_count;
};

/* An open file of this VFS: the parent's file follows it in the same
 * allocation (szOsFile is ours plus the parent's). */
struct watch_file {
    sqlite3_file base;
    struct copy_watch *watch; /* NULL: passed through, nothing noted */
    sqlite3_file *real;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct copy_watch *registry;
static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;
static int vfs_registered = SQLITE_ERROR;
static sqlite3_vfs watch_vfs;

static void note_change(struct copy_watch *watch, int64_t offset, int64_t end, bool written);

static sqlite3_vfs *parent_vfs(void)
{
    return watch_vfs.pAppData;
}

static struct watch_file *as_watch_file(sqlite3_file *file)
{
    return (struct watch_file *)file;
}

static int watch_close(sqlite3_file *file)
{
    struct watch_file *wf = as_watch_file(file);
    int rc = wf->real->pMethods->xClose(wf->real);
    wf->real->pMethods = NULL;
    return rc;
}

static int watch_read(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xRead(wf->real, buffer, amount, offset);
}

static int watch_write(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset)
{
    struct watch_file *wf = as_watch_file(file);
    int rc = wf->real->pMethods->xWrite(wf->real, buffer, amount, offset);
    /* Noted even when it failed: part of it may have reached the file. */
    if (wf->watch)
        copy_watch_note_write(wf->watch, offset, amount);
    return rc;
}

static int watch_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    struct watch_file *wf = as_watch_file(file);
    int rc = wf->real->pMethods->xTruncate(wf->real, size);
    if (wf->watch)
        note_change(wf->watch, size, INT64_MAX, false);
    return rc;
}

static int watch_sync(sqlite3_file *file, int flags)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xSync(wf->real, flags);
}

static int watch_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xFileSize(wf->real, size);
}

static int watch_lock(sqlite3_file *file, int level)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xLock(wf->real, level);
}

static int watch_unlock(sqlite3_file *file, int level)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xUnlock(wf->real, level);
}

static int watch_check_reserved_lock(sqlite3_file *file, int *result)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xCheckReservedLock(wf->real, result);
}

static int watch_file_control(sqlite3_file *file, int op, void *argument)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xFileControl(wf->real, op, argument);
}

static int watch_sector_size(sqlite3_file *file)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xSectorSize(wf->real);
}

static int watch_device_characteristics(sqlite3_file *file)
{
    struct watch_file *wf = as_watch_file(file);
    return wf->real->pMethods->xDeviceCharacteristics(wf->real);
}

/* Version 1 methods only: SQLite then neither maps the copy into memory nor
 * uses shared memory for it (VACUUM INTO's output is in rollback mode), and
 * every byte it writes goes through watch_write. */
static const sqlite3_io_methods watch_io_methods = {
    .iVersion = 1,
    .xClose = watch_close,
    .xRead = watch_read,
    .xWrite = watch_write,
    .xTruncate = watch_truncate,
    .xSync = watch_sync,
    .xFileSize = watch_file_size,
    .xLock = watch_lock,
    .xUnlock = watch_unlock,
    .xCheckReservedLock = watch_check_reserved_lock,
    .xFileControl = watch_file_control,
    .xSectorSize = watch_sector_size,
    .xDeviceCharacteristics = watch_device_characteristics,
};

static struct copy_watch *registry_find(const char *path)
{
    struct copy_watch *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (struct copy_watch *watch = registry; watch && !found; watch = watch->next)
        if (strcmp(watch->path, path) == 0)
            found = watch;
    pthread_mutex_unlock(&registry_lock);
    return found;
}

static int watch_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                      int *out_flags)
{
    struct watch_file *wf = as_watch_file(file);
    sqlite3_vfs *parent = vfs->pAppData;
    wf->real = (sqlite3_file *)(wf + 1);
    wf->watch = NULL;
    wf->real->pMethods = NULL;
    int rc = parent->xOpen(parent, name, wf->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (wf->real->pMethods)
            wf->real->pMethods->xClose(wf->real);
        file->pMethods = NULL;
        return rc;
    }
    if (name && (flags & SQLITE_OPEN_MAIN_DB))
        wf->watch = registry_find(name);
    file->pMethods = &watch_io_methods;
    return SQLITE_OK;
}

/* The rest of the VFS is the parent's. */
static int watch_delete(sqlite3_vfs *vfs, const char *name, int sync_directory)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xDelete(parent, name, sync_directory);
}

static int watch_access(sqlite3_vfs *vfs, const char *name, int flags, int *result)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xAccess(parent, name, flags, result);
}

static int watch_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xFullPathname(parent, name, size, out);
}

static void *watch_dl_open(sqlite3_vfs *vfs, const char *name)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xDlOpen(parent, name);
}

static void watch_dl_error(sqlite3_vfs *vfs, int size, char *message)
{
    sqlite3_vfs *parent = vfs->pAppData;
    parent->xDlError(parent, size, message);
}

static void (*watch_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xDlSym(parent, handle, symbol);
}

static void watch_dl_close(sqlite3_vfs *vfs, void *handle)
{
    sqlite3_vfs *parent = vfs->pAppData;
    parent->xDlClose(parent, handle);
}

static int watch_randomness(sqlite3_vfs *vfs, int size, char *out)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xRandomness(parent, size, out);
}

static int watch_sleep(sqlite3_vfs *vfs, int microseconds)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xSleep(parent, microseconds);
}

static int watch_current_time(sqlite3_vfs *vfs, double *now)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xCurrentTime(parent, now);
}

static int watch_get_last_error(sqlite3_vfs *vfs, int size, char *message)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xGetLastError(parent, size, message);
}

static int watch_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *now)
{
    sqlite3_vfs *parent = vfs->pAppData;
    return parent->xCurrentTimeInt64(parent, now);
}

static void register_vfs(void)
{
    sqlite3_vfs *parent = sqlite3_vfs_find(NULL);
    if (!parent || parent->iVersion < 2)
        return;
    watch_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct watch_file) + parent->szOsFile,
        .mxPathname = parent->mxPathname,
        .zName = COPY_WATCH_VFS_NAME,
        .pAppData = parent,
        .xOpen = watch_open,
        .xDelete = watch_delete,
        .xAccess = watch_access,
        .xFullPathname = watch_full_pathname,
        .xDlOpen = watch_dl_open,
        .xDlError = watch_dl_error,
        .xDlSym = watch_dl_sym,
        .xDlClose = watch_dl_close,
        .xRandomness = watch_randomness,
        .xSleep = watch_sleep,
        .xCurrentTime = watch_current_time,
        .xGetLastError = watch_get_last_error,
        .xCurrentTimeInt64 = watch_current_time_int64,
    };
    vfs_registered = sqlite3_vfs_register(&watch_vfs, 0);
}

/* Frees what copy_watch_create allocated; the lock and registry are the
 * caller's to undo. */
static void watch_free(struct copy_watch *watch)
{
    if (!watch)
        return;
    free(watch->blocks);
    free(watch->path);
    free(watch);
}

int copy_watch_create(const char *path, int64_t expected_bytes, struct copy_watch **out,
                      struct error *err)
{
    *out = NULL;
    pthread_once(&vfs_once, register_vfs);
    if (vfs_registered != SQLITE_OK)
        return error_set(err, -ENOSYS, "cannot register the %s SQLite VFS", COPY_WATCH_VFS_NAME);

    sqlite3_vfs *parent = parent_vfs();
    struct copy_watch *watch = calloc(1, sizeof *watch);
    if (watch) {
        watch->path = calloc(1, (size_t)parent->mxPathname + 1);
        watch->block_count =
            expected_bytes > 0 ? (uint64_t)expected_bytes / COPY_WATCH_BLOCK_BYTES + 1 : 0;
        watch->blocks = calloc(watch->block_count + 1, 1);
    }
    if (!watch || !watch->path || !watch->blocks) {
        watch_free(watch);
        return error_set(err, -ENOMEM, "cannot watch %s: out of memory", path);
    }
    if (parent->xFullPathname(parent, path, parent->mxPathname + 1, watch->path) != SQLITE_OK) {
        watch_free(watch);
        return error_set(err, -ENAMETOOLONG, "cannot watch %s: SQLite cannot resolve its path",
                         path);
    }
    pthread_mutex_init(&watch->lock, NULL);
    pthread_cond_init(&watch->progressed, NULL);

    pthread_mutex_lock(&registry_lock);
    watch->next = registry;
    registry = watch;
    pthread_mutex_unlock(&registry_lock);
    *out = watch;
    return 0;
}

void copy_watch_destroy(struct copy_watch *watch)
{
    if (!watch)
        return;
    pthread_mutex_lock(&registry_lock);
    for (struct copy_watch **link = &registry; *link; link = &(*link)->next) {
        if (*link == watch) {
            *link = watch->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    pthread_cond_destroy(&watch->progressed);
    pthread_mutex_destroy(&watch->lock);
    watch_free(watch);
}

int copy_watch_uri(const struct copy_watch *watch, char *out, size_t size)
{
    static const char digits[] = "0123456789ABCDEF";
    static const char suffix[] = "?vfs=" COPY_WATCH_VFS_NAME;
    size_t used = (size_t)snprintf(out, size, "file:");
    for (const unsigned char *c = (const unsigned char *)watch->path; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || strchr("/._-~", *c);
        if (used + 4 + sizeof suffix > size)
            return -ENAMETOOLONG;
        if (plain) {
            out[used++] = (char)*c;
        } else {
            out[used++] = '%';
            out[used++] = digits[*c >> 4];
            out[used++] = digits[*c & 15];
        }
    }
    memcpy(out + used, suffix, sizeof suffix);
    return 0;
}

/* Bytes [offset, end) changed; a write also moves the frontier, a truncation
 * (everything from `offset` on is gone or zero) does not. */
static void note_change(struct copy_watch *watch, int64_t offset, int64_t end, bool written)
{
    if (offset < 0 || end <= offset)
        return;
    uint64_t first = (uint64_t)offset / COPY_WATCH_BLOCK_BYTES;
    uint64_t last = (uint64_t)(end - 1) / COPY_WATCH_BLOCK_BYTES;

    pthread_mutex_lock(&watch->lock);
    for (uint64_t block = first; block <= last && block < watch->block_count; block++)
        if (watch->blocks[block] == BLOCK_CLAIMED)
            watch->blocks[block] = BLOCK_CHANGED;
    if (written && end > watch->written_end) {
        watch->written_end = end;
        if (watch->wanted_end && end >= watch->wanted_end)
            pthread_cond_signal(&watch->progressed);
    }
    pthread_mutex_unlock(&watch->lock);
}

void copy_watch_note_write(struct copy_watch *watch, int64_t offset, int64_t size)
{
    if (offset >= 0 && size > 0 && size <= INT64_MAX - offset)
        note_change(watch, offset, offset + size, true);
}

void copy_watch_end(struct copy_watch *watch)
{
    pthread_mutex_lock(&watch->lock);
    watch->ended = true;
    pthread_cond_broadcast(&watch->progressed);
    pthread_mutex_unlock(&watch->lock);
}

bool copy_watch_claim(struct copy_watch *watch, uint64_t block)
{
    int64_t needed = (int64_t)(block + 1) * COPY_WATCH_BLOCK_BYTES + COPY_WATCH_MARGIN_BYTES;
    bool claimed = false;

    pthread_mutex_lock(&watch->lock);
    if (block < watch->block_count) {
        watch->wanted_end = needed;
        while (!watch->ended && watch->written_end < needed)
            pthread_cond_wait(&watch->progressed, &watch->lock);
        watch->wanted_end = 0;
        claimed = !watch->ended;
        if (claimed)
            watch->blocks[block] = BLOCK_CLAIMED;
    }
    pthread_mutex_unlock(&watch->lock);
    return claimed;
}

bool copy_watch_changed(struct copy_watch *watch, uint64_t block)
{
    pthread_mutex_lock(&watch->lock);
    bool changed = block >= watch->block_count || watch->blocks[block] != BLOCK_CLAIMED;
    pthread_mutex_unlock(&watch->lock);
    return changed;
}

bool copy_watch_claimed(struct copy_watch *watch, uint64_t block)
{
    pthread_mutex_lock(&watch->lock);
    bool claimed = block < watch->block_count && watch->blocks[block] != BLOCK_UNREAD;
    pthread_mutex_unlock(&watch->lock);
    return claimed;
}
