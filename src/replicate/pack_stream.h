/*
 * pack_stream.h: the bytes of a pack being merged, read from its members
 * where they are, on the target (design 2.7, "streamed merges").
 *
 * A merge used to download its members into a local file as large as the
 * pack and upload that; packs could therefore not grow past what the state
 * disk could spare (4 GiB), and a heavy writer's restore read more objects
 * than the issue allows. Here the pack is a target_source: reading it
 * fetches each member's bytes with ranged GETs, a window of at most
 * PACK_STREAM_WINDOW_BYTES at a time, into a file of the stage directory,
 * and an upload reads it once (target_source.stage_directory). A reader
 * that reads in order checks every member against the SHA-256 recorded
 * when it was put, and its `check` refuses the upload unless every member
 * was read and matched, so a member that changed on the target is never
 * packed under a fresh hash.
 */
#ifndef SQLPRODD_REPLICATE_PACK_STREAM_H
#define SQLPRODD_REPLICATE_PACK_STREAM_H

#include <stdint.h>

#include "core/error.h"
#include "core/io.h"
#include "offsite/target.h"

#define PACK_STREAM_WINDOW_BYTES (8LL << 20)

struct pack_stream;

/* A stream over `target` whose windows go to `stage_directory` (which the
 * upload stages its parts in too: one directory the caller empties). */
int pack_stream_open(struct target *target, const char *stage_directory,
                     const struct io_context *io, struct pack_stream **out, struct error *err);
void pack_stream_close(struct pack_stream *stream);

/* Appends the object `key` of `size` bytes (>= 0) whose SHA-256 was
 * `sha256_hex` when it was put. */
int pack_stream_add(struct pack_stream *stream, const char *key, int64_t size,
                    const char *sha256_hex, struct error *err);

/* The pack as an upload source, valid while the stream is open; `name`
 * names it in messages. */
void pack_stream_source(struct pack_stream *stream, const char *name, struct target_source *source);

/* After a failed upload: the index (in the order added) of the member that
 * was missing (-ENOENT), shorter than recorded or different (-EBADMSG);
 * -1 when no member was at fault. *code is that error. */
int pack_stream_failed_member(struct pack_stream *stream, int *code);

#endif
