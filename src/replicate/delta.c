/*
 * delta.c: page deltas: the shipper's span, the plain delta written from
 * it, and the restore's apply (delta.h).
 */
#include "replicate/delta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/io.h"

#define DELTA_WRITE_BUFFER (1u << 20)

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void delta_header_encode(const struct delta_header *h, uint8_t out[DELTA_HEADER_SIZE])
{
    memcpy(out, DELTA_MAGIC, 8);
    put32(out + 8, h->page_size);
    put32(out + 12, h->db_pages);
    put32(out + 16, (uint32_t)(h->pages >> 32));
    put32(out + 20, (uint32_t)h->pages);
    put32(out + 24, h->first_generation);
    put32(out + 28, h->last_generation);
}

int delta_header_parse(const uint8_t in[DELTA_HEADER_SIZE], struct delta_header *h,
                       const char *object, struct error *err)
{
    if (memcmp(in, DELTA_MAGIC, 8) != 0)
        return error_set(err, -EBADMSG, "%s: not a page delta (no %s header)", object, DELTA_MAGIC);
    h->page_size = get32(in + 8);
    h->db_pages = get32(in + 12);
    h->pages = (uint64_t)get32(in + 16) << 32 | get32(in + 20);
    h->first_generation = get32(in + 24);
    h->last_generation = get32(in + 28);
    if (h->page_size < 512 || h->page_size > 65536 || (h->page_size & (h->page_size - 1)) != 0)
        return error_set(err, -EBADMSG, "%s: page size %u is not a power of two in 512..65536",
                         object, h->page_size);
    if (h->db_pages == 0 || h->pages > h->db_pages)
        return error_set(err, -EBADMSG, "%s: %llu pages of a database of %u pages", object,
                         (unsigned long long)h->pages, h->db_pages);
    return 0;
}

/* ---- the span ---- */

void delta_span_init(struct delta_span *s)
{
    *s = (struct delta_span){.fd = -1};
}

bool delta_span_active(const struct delta_span *s)
{
    return s->fd >= 0;
}

static void delta_span_reset(struct delta_span *s)
{
    if (s->apply_open)
        wal_apply_end(&s->apply);
    free(s->touched);
    delta_span_init(s);
}

void delta_span_drop(struct delta_span *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        unlink(s->path);
    }
    delta_span_reset(s);
}

/* Bit page-1 of a map that grows: 1 when newly set, 0 when it was, -1
 * when the map cannot grow (it is then freed, and *bytes is SIZE_MAX). */
static int delta_bitmap_set(uint8_t **bits, size_t *bytes, uint32_t page)
{
    size_t byte = (page - 1) / 8;
    if (*bytes == SIZE_MAX)
        return -1;
    if (byte >= *bytes) {
        size_t size = *bytes ? *bytes : 4096;
        while (size <= byte)
            size *= 2;
        uint8_t *grown = realloc(*bits, size);
        if (!grown) {
            free(*bits);
            *bits = NULL;
            *bytes = SIZE_MAX;
            return -1;
        }
        memset(grown + *bytes, 0, size - *bytes);
        *bits = grown;
        *bytes = size;
    }
    uint8_t bit = (uint8_t)(1u << ((page - 1) % 8));
    if ((*bits)[byte] & bit)
        return 0;
    (*bits)[byte] |= bit;
    return 1;
}

/* wal_apply's hook: page p was written. A bitmap that cannot grow is
 * reported by the feed (the callback has no way to fail). */
static void delta_span_touch(void *context, uint32_t page)
{
    struct delta_span *s = context;
    if (delta_bitmap_set(&s->touched, &s->touched_bytes, page) == 1)
        s->pages++;
}

static int delta_span_begin_generation(struct delta_span *s, uint32_t generation, struct error *err)
{
    if (s->apply_open)
        wal_apply_end(&s->apply);
    s->apply_open = false;
    /* No target: every frame's page is written (the span keeps them all). */
    int rc = wal_apply_begin(&s->apply, s->fd, 0, UINT32_MAX, err);
    if (rc != 0)
        return rc;
    s->apply.on_page = delta_span_touch;
    s->apply.on_page_context = s;
    s->apply_open = true;
    s->generation = generation;
    s->next_offset = 0;
    return 0;
}

int delta_span_start(struct delta_span *s, const char *path, uint32_t generation, uint32_t chain,
                     int64_t now_ms, struct error *err)
{
    delta_span_drop(s);
    if (snprintf(s->path, sizeof s->path, "%s", path) >= (int)sizeof s->path)
        return error_set(err, -ENAMETOOLONG, "%s: path too long", path);
    s->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        int rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
        delta_span_reset(s);
        return rc;
    }
    s->first_generation = generation;
    s->chain = chain;
    s->started_ms = now_ms;
    int rc = delta_span_begin_generation(s, generation, err);
    if (rc != 0)
        delta_span_drop(s);
    return rc;
}

bool delta_span_continue(struct delta_span *s, uint32_t generation, struct error *err)
{
    if (!delta_span_active(s) || generation != s->generation + 1 ||
        (s->apply.have_header && s->apply.fed != s->next_offset))
        return false;
    return delta_span_begin_generation(s, generation, err) == 0;
}

bool delta_span_follows(const struct delta_span *s, uint32_t generation, uint64_t start)
{
    return delta_span_active(s) && s->apply_open && generation == s->generation &&
           start == s->next_offset && s->apply.fed == start;
}

int delta_span_feed(struct delta_span *s, const uint8_t *bytes, size_t size, struct error *err)
{
    int rc = wal_apply_feed(&s->apply, bytes, size, err);
    if (rc != 0)
        return rc;
    if (s->touched_bytes == SIZE_MAX)
        return error_set(err, -ENOMEM, "out of memory for the delta's page map");
    if (s->apply.stop != WAL_STOP_NONE)
        return error_set(err, -EBADMSG, "the WAL chain stops at frame %llu (%s)",
                         (unsigned long long)s->apply.next.frame_index + 1,
                         wal_stop_name(s->apply.stop));
    s->wal_bytes += size;
    return 0;
}

int delta_span_segment_done(struct delta_span *s, uint64_t end, struct error *err)
{
    const struct wal_apply *a = &s->apply;
    if (a->fed != end || a->fill != 0 || a->committed.offset != end)
        return error_set(err, -EBADMSG,
                         "the segment ends at byte %llu, the delta's WAL at %llu (last commit "
                         "at %llu)",
                         (unsigned long long)end, (unsigned long long)a->fed,
                         (unsigned long long)a->committed.offset);
    if (s->page_size && s->page_size != a->header.page_size)
        return error_set(err, -EBADMSG, "the page size changed from %u to %u", s->page_size,
                         a->header.page_size);
    s->page_size = a->header.page_size;
    s->db_pages = a->committed_pages;
    s->next_offset = end;
    return 0;
}

int delta_span_close(struct delta_span *s, const char *closed_path, struct delta_pages *out,
                     struct error *err)
{
    *out = (struct delta_pages){.fd = -1};
    if (rename(s->path, closed_path) != 0) {
        int rc = error_set(err, -errno, "%s: %s", closed_path, strerror(errno));
        delta_span_drop(s);
        return rc;
    }
    snprintf(out->path, sizeof out->path, "%s", closed_path);
    out->fd = s->fd;
    out->touched = s->touched;
    out->touched_bytes = s->touched_bytes;
    out->pages = s->pages;
    out->wal_bytes = s->wal_bytes;
    out->page_size = s->page_size;
    out->db_pages = s->db_pages;
    out->first_generation = s->first_generation;
    out->last_generation = s->generation;
    out->chain = s->chain;
    out->started_ms = s->started_ms;
    s->touched = NULL; /* now the closed span's */
    delta_span_reset(s);
    return 0;
}

void delta_pages_free(struct delta_pages *p)
{
    if (p->fd >= 0) {
        close(p->fd);
        unlink(p->path);
    }
    free(p->touched);
    *p = (struct delta_pages){.fd = -1};
}

static bool delta_touched(const struct delta_pages *p, uint32_t page)
{
    size_t byte = (page - 1) / 8;
    return byte < p->touched_bytes && (p->touched[byte] >> ((page - 1) % 8) & 1);
}

bool delta_pages_worth(const struct delta_pages *p)
{
    return p->fd >= 0 && p->pages > 0 && p->db_pages > 0 &&
           p->wal_bytes / 2 >= p->pages * (uint64_t)p->page_size;
}

int delta_pages_merge(struct delta_pages *into, const struct delta_pages *from, const char *path,
                      struct error *err)
{
    if (into->fd >= 0 &&
        (into->chain != from->chain || into->last_generation + 1 != from->first_generation ||
         into->page_size != from->page_size))
        delta_pages_free(into);
    if (into->fd < 0) {
        *into = (struct delta_pages){.first_generation = from->first_generation,
                                     .chain = from->chain,
                                     .started_ms = from->started_ms,
                                     .page_size = from->page_size};
        snprintf(into->path, sizeof into->path, "%s", path);
        into->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (into->fd < 0) {
            int rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
            delta_pages_free(into);
            return rc;
        }
    }
    uint8_t *page = malloc(from->page_size);
    int rc = page ? 0 : error_set(err, -ENOMEM, "out of memory");
    size_t highest = from->touched_bytes * 8;
    for (size_t n = 1; n <= highest && rc == 0; n++) {
        if (!delta_touched(from, (uint32_t)n))
            continue;
        off_t at = (off_t)(n - 1) * from->page_size;
        if ((rc = io_pread_full(from->fd, page, from->page_size, at)) != 0 ||
            (rc = io_pwrite_full(into->fd, page, from->page_size, at)) != 0) {
            error_set(err, rc, "merging page %zu into %s: %s", n, into->path, strerror(-rc));
            break;
        }
        int set = delta_bitmap_set(&into->touched, &into->touched_bytes, (uint32_t)n);
        if (set < 0)
            rc = error_set(err, -ENOMEM, "out of memory for the page map of %s", into->path);
        into->pages += set == 1;
    }
    free(page);
    if (rc != 0) {
        delta_pages_free(into);
        return rc;
    }
    into->last_generation = from->last_generation;
    into->db_pages = from->db_pages;
    into->wal_bytes += from->wal_bytes;
    return 0;
}

/* ---- the builder ---- */

int delta_write_plain(const struct delta_pages *p, const char *path,
                      const volatile sig_atomic_t *stop, uint64_t *pages, struct error *err)
{
    struct delta_header header = {.page_size = p->page_size,
                                  .db_pages = p->db_pages,
                                  .first_generation = p->first_generation,
                                  .last_generation = p->last_generation};
    for (uint32_t page = 1; page <= p->db_pages; page++)
        header.pages += delta_touched(p, page);
    *pages = header.pages;
    size_t record = DELTA_RECORD_HEAD + (size_t)p->page_size;
    uint8_t *buffer = malloc(DELTA_WRITE_BUFFER + record);
    if (!buffer)
        return error_set(err, -ENOMEM, "out of memory");
    int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    delta_header_encode(&header, buffer);
    size_t used = DELTA_HEADER_SIZE;
    for (uint32_t page = 1; page <= p->db_pages && rc == 0; page++) {
        if (!delta_touched(p, page))
            continue;
        if (stop && *stop) {
            rc = error_set(err, -ECANCELED, "stopped by a signal");
            break;
        }
        put32(buffer + used, page);
        rc = io_pread_full(p->fd, buffer + used + DELTA_RECORD_HEAD, p->page_size,
                           (int64_t)(page - 1) * p->page_size);
        if (rc != 0) {
            error_set(err, rc, "%s: page %u: %s", p->path, page, strerror(-rc));
            break;
        }
        used += record;
        if (used >= DELTA_WRITE_BUFFER) {
            if ((rc = io_write_full(fd, buffer, used)) != 0)
                error_set(err, rc, "%s: %s", path, strerror(-rc));
            used = 0;
        }
    }
    if (rc == 0 && used && (rc = io_write_full(fd, buffer, used)) != 0)
        error_set(err, rc, "%s: %s", path, strerror(-rc));
    if (close(fd) != 0 && rc == 0)
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (rc != 0)
        unlink(path);
out:
    free(buffer);
    return rc;
}

/* ---- the apply ---- */

int delta_apply_begin(struct delta_apply *a, int out, const char *object, struct error *err)
{
    *a = (struct delta_apply){.out = out, .object = object};
    if (!(a->record = malloc(DELTA_HEADER_SIZE)))
        return error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int delta_apply_header(struct delta_apply *a, struct error *err)
{
    int rc = delta_header_parse(a->record, &a->header, a->object, err);
    if (rc != 0)
        return rc;
    uint8_t *record = realloc(a->record, DELTA_RECORD_HEAD + (size_t)a->header.page_size);
    if (!record)
        return error_set(err, -ENOMEM, "out of memory");
    a->record = record;
    a->run_max = DELTA_WRITE_BUFFER / a->header.page_size;
    if (!(a->run = malloc(DELTA_WRITE_BUFFER)))
        return error_set(err, -ENOMEM, "out of memory");
    a->have_header = true;
    return 0;
}

static int delta_apply_flush(struct delta_apply *a, struct error *err)
{
    if (a->run_pages == 0)
        return 0;
    size_t page_size = a->header.page_size;
    int rc = io_pwrite_full(a->out, a->run, a->run_pages * page_size,
                            (int64_t)(a->run_first - 1) * (int64_t)page_size);
    if (rc != 0)
        return error_set(err, rc, "writing pages %u.. of %s: %s", a->run_first, a->object,
                         strerror(-rc));
    a->run_pages = 0;
    return 0;
}

static int delta_apply_record(struct delta_apply *a, struct error *err)
{
    uint32_t page = get32(a->record);
    if (page <= a->last_page || page > a->header.db_pages)
        return error_set(err, -EBADMSG,
                         "%s: record %llu names page %u, after page %u of a database of %u "
                         "pages (pages come in increasing order)",
                         a->object, (unsigned long long)a->records + 1, page, a->last_page,
                         a->header.db_pages);
    if (a->run_pages > 0 && (page != a->run_first + a->run_pages || a->run_pages == a->run_max)) {
        int rc = delta_apply_flush(a, err);
        if (rc != 0)
            return rc;
    }
    if (a->run_pages == 0)
        a->run_first = page;
    memcpy(a->run + a->run_pages * a->header.page_size, a->record + DELTA_RECORD_HEAD,
           a->header.page_size);
    a->run_pages++;
    a->last_page = page;
    a->records++;
    return 0;
}

int delta_apply_feed(struct delta_apply *a, const uint8_t *bytes, size_t size, struct error *err)
{
    a->fed += size;
    while (size > 0) {
        if (a->have_header && a->records == a->header.pages)
            return error_set(err, -EBADMSG, "%s: bytes after its %llu pages", a->object,
                             (unsigned long long)a->header.pages);
        size_t want =
            a->have_header ? DELTA_RECORD_HEAD + (size_t)a->header.page_size : DELTA_HEADER_SIZE;
        size_t take = want - a->fill < size ? want - a->fill : size;
        memcpy(a->record + a->fill, bytes, take);
        a->fill += take;
        bytes += take;
        size -= take;
        if (a->fill < want)
            break;
        int rc = a->have_header ? delta_apply_record(a, err) : delta_apply_header(a, err);
        a->fill = 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

int delta_apply_finish(struct delta_apply *a, struct error *err)
{
    if (!a->have_header)
        return error_set(err, -EBADMSG, "%s: %llu bytes, no complete header", a->object,
                         (unsigned long long)a->fed);
    if (a->records != a->header.pages || a->fill != 0)
        return error_set(err, -EBADMSG, "%s: ends after %llu of its %llu pages", a->object,
                         (unsigned long long)a->records, (unsigned long long)a->header.pages);
    return delta_apply_flush(a, err);
}

void delta_apply_end(struct delta_apply *a)
{
    free(a->record);
    free(a->run);
    a->record = a->run = NULL;
}
