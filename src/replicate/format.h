/*
 * format.h: the names and the JSON manifests of a replica on a target, as
 * sqlprodd-format(5) defines them; the one place both the shipper and
 * restore read and write them.
 *
 * Under the target's prefix, for a database DB:
 *   DB/replica/index.json                       the generations, time ranges
 *   DB/replica/gNNNNNNNN/base.db.gz             page-for-page base (optional)
 *   DB/replica/gNNNNNNNN/base.json              where the base stands
 *   DB/replica/gNNNNNNNN/wal/S-E.wal.gz         one gzip member, WAL bytes [S, E)
 *   DB/replica/gNNNNNNNN/wal/S-E.wal.json       its sidecar: commits, times
 * S and E are byte offsets zero-padded to 12 digits so that names sort.
 * With encryption (encrypt.recipients), the data objects are age files of
 * exactly those bytes, named base.db.gz.age and S-E.wal.gz.age; the JSON
 * manifests stay plain (they hold no data) and say, in "encryption", which
 * recipients each object was sealed to.
 *
 * What it is not: no I/O (text in, text out), no clock (times are
 * parameters), no decisions about what to ship or restore. Decoding is strict
 * about every field it knows, since restore builds keys and cuts WAL files
 * from them, and ignores fields it does not know, so that an older restore
 * reads a newer replica. Every refusal names the object.
 */
#ifndef SQLPRODD_REPLICATE_FORMAT_H
#define SQLPRODD_REPLICATE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define FORMAT_VERSION        1
#define FORMAT_GENERATION_MAX 99999999u       /* eight digits */
#define FORMAT_OFFSET_MAX     999999999999ull /* twelve digits */
#define FORMAT_TIME_SIZE      32              /* "2026-12-02T11:24:07.123Z" + NUL, with room */
#define FORMAT_KEY_SIZE       1024
/* The one encryption format, as "encryption": {"format": ...} names it. */
#define FORMAT_ENCRYPTION_AGE "age-encryption.org/v1"
#define FORMAT_RECIPIENTS_MAX 32  /* as many as encrypt.recipients may hold */
#define FORMAT_RECIPIENT_SIZE 128 /* "age1" + 58 characters, with room for other types */

/* The objects of a replica. */
enum format_object {
    FORMAT_INDEX,          /* DB/replica/index.json */
    FORMAT_BASE,           /* DB/replica/gN/base.db.gz */
    FORMAT_BASE_JSON,      /* DB/replica/gN/base.json */
    FORMAT_SEGMENT,        /* DB/replica/gN/wal/S-E.wal.gz */
    FORMAT_SIDECAR,        /* DB/replica/gN/wal/S-E.wal.json */
    FORMAT_GENERATION_DIR, /* DB/replica/gN/ (a prefix, for listings) */
    FORMAT_SEGMENT_DIR,    /* DB/replica/gN/wal/ (a prefix, for listings) */
    FORMAT_SEALED_BASE,    /* DB/replica/gN/base.db.gz.age */
    FORMAT_SEALED_SEGMENT, /* DB/replica/gN/wal/S-E.wal.gz.age */
};

/* "g00000001". */
void format_generation_name(uint32_t generation, char out[16]);
/* Parses exactly "g" + eight digits, 1..FORMAT_GENERATION_MAX. 0 or -EINVAL. */
int format_generation_parse(const char *name, uint32_t *generation);

/* "000000000000-000000111272". */
void format_segment_name(uint64_t start, uint64_t end, char out[32]);
/* Parses "S-E" followed by `suffix` (".wal.gz", ".wal.gz.age", ".wal.json"
 * or "") and nothing else; S < E. 0 or -EINVAL. */
int format_segment_parse(const char *name, const char *suffix, uint64_t *start, uint64_t *end);

/* The key of an object relative to the target's prefix. `start`/`end` only
 * for segments and sidecars, `generation` not for the index. 0, or -EINVAL
 * when the database name cannot be a key component or the key is too long. */
int format_key(char *out, size_t size, const char *database, enum format_object object,
               uint32_t generation, uint64_t start, uint64_t end, struct error *err);

/* RFC 3339 UTC with milliseconds, "2026-12-02T11:24:07.123Z", from
 * milliseconds since the epoch. */
void format_time(int64_t ms, char out[FORMAT_TIME_SIZE]);
/* Parses what format_time writes, and the same without ".mmm". 0 or -EINVAL. */
int format_time_parse(const char *text, int64_t *ms);

/* Whom an object was sealed to ("encryption" of a sidecar or base.json):
 * the recipients as `age-keygen -y` prints them, so that an operator sees
 * which key opens it. recipient_count 0: the object is not encrypted. */
struct format_encryption {
    size_t recipient_count;
    char recipients[FORMAT_RECIPIENTS_MAX][FORMAT_RECIPIENT_SIZE];
};

/* One commit of a segment (sidecar "commits" entry). */
struct format_commit {
    uint64_t frame;      /* index of the commit frame in its generation, 1-based */
    uint64_t end_offset; /* byte just after the commit frame */
    uint32_t db_pages;   /* database size in pages after the commit */
    int64_t seen_at_ms;  /* when the agent first read it */
};

/* The sidecar of one segment. */
struct format_segment {
    uint32_t generation;
    uint64_t start, end; /* WAL bytes [start, end) of the generation */
    uint32_t page_size;
    uint32_t salt[2];                    /* of the generation's header */
    uint32_t checksum[2];                /* running checksum at `end` */
    bool big_endian_checksum;            /* the header's byte order for checksums */
    char sha256[65];                     /* of the stored object (.wal.gz or .wal.gz.age) */
    uint64_t size;                       /* bytes of the stored object */
    struct format_encryption encryption; /* sealed: the object is S-E.wal.gz.age */
    size_t commit_count;                 /* at least 1 */
    struct format_commit *commits;       /* decoded: owned (format_segment_free) */
};

/* A generation's base.json. */
struct format_base {
    uint32_t generation;
    uint64_t frame;           /* WAL frame index at which the base was copied */
    uint32_t from_generation; /* nonzero: the base is the end of that generation,
                                 and there is no base.db.gz */
    char sha256[65];          /* of the stored base.db.gz[.age] (empty with from) */
    uint64_t size;            /* bytes of the stored base */
    uint64_t database_bytes;  /* bytes of the uncompressed base */
    uint32_t page_size;
    int64_t taken_at_ms;
    /* Sealed: the base is base.db.gz.age; with "from", whom the generation's
     * first segments are sealed to (each sidecar says it for its own). */
    struct format_encryption encryption;
};

struct format_index_generation {
    uint32_t generation;
    int64_t first_seen_at_ms; /* 0: no commit shipped yet */
    int64_t last_seen_at_ms;
    uint32_t base_from; /* 0: "file"; else "gNNNNNNNN/end" of that generation */
    bool snapshot;      /* "snapshot": true: its base file was scheduled, not a break */
};

struct format_index {
    char *database; /* decoded: owned */
    size_t count;
    struct format_index_generation *generations; /* increasing; decoded: owned */
    int64_t updated_at_ms;
};

/* Encoders return a NUL-terminated, malloc'd JSON text (free()), or NULL with
 * err set when the record is not valid (the same checks as decoding: the
 * agent never writes what restore would refuse). */
char *format_segment_encode(const struct format_segment *segment, struct error *err);
char *format_base_encode(const struct format_base *base, struct error *err);
char *format_index_encode(const struct format_index *index, struct error *err);

/* Decoders: `object` names the object in messages ("app/replica/g00000001/base.json").
 * 0, or -EINVAL with err naming the object and the field. */
int format_segment_decode(const char *text, size_t length, const char *object,
                          struct format_segment *out, struct error *err);
int format_base_decode(const char *text, size_t length, const char *object, struct format_base *out,
                       struct error *err);
int format_index_decode(const char *text, size_t length, const char *object,
                        struct format_index *out, struct error *err);

void format_segment_free(struct format_segment *segment);
void format_index_free(struct format_index *index);

/*
 * Page deltas (sqlprodd-format(5) DELTAS): the last image of every page the
 * generations A..B wrote, so that a restore past B applies them instead of
 * every frame of A..B,
 *   DB/replica/deltas/gAAAAAAAA-gBBBBBBBB.pages.gz[.age]   the pages (delta.h)
 *   DB/replica/deltas/gAAAAAAAA-gBBBBBBBB.pages.json       this manifest
 * Applied over any state of the chain from the start of A to the end of B
 * (a base, or the end of an earlier generation), it gives the end of B.
 * Never packed; deleted when B leaves the window.
 */
#define FORMAT_DELTA_NAME_SIZE 24 /* "g00000001-g00000009" and NUL */
#define FORMAT_DELTA_PAGES     ".pages.gz" /* then SEALED_SUFFIX when sealed */
#define FORMAT_DELTA_MANIFEST  ".pages.json"
#define FORMAT_DELTA_MARK      ".pages." /* in both names, and in no other object's */

struct format_delta {
    uint32_t first_generation, last_generation;
    uint32_t page_size;
    uint32_t db_pages;  /* the database size at the end of B */
    uint64_t pages;     /* page images it holds, at most db_pages */
    uint64_t wal_bytes; /* WAL shipped for A..B: what it stands for */
    char sha256[65];    /* of the stored object (.pages.gz[.age]) */
    uint64_t size;      /* bytes of the stored object */
    int64_t built_at_ms;
    struct format_encryption encryption; /* sealed: the object is .pages.gz.age */
};

void format_delta_name(uint32_t first_generation, uint32_t last_generation,
                       char out[FORMAT_DELTA_NAME_SIZE]);
/* `name` is exactly gAAAAAAAA-gBBBBBBBB + `suffix`, A <= B. 0 or -EINVAL. */
int format_delta_parse(const char *name, const char *suffix, uint32_t *first_generation,
                       uint32_t *last_generation);
/* DB/replica/deltas/NAME + suffix; first_generation 0: the prefix alone. */
int format_delta_key(char *out, size_t size, const char *database, uint32_t first_generation,
                     uint32_t last_generation, const char *suffix, struct error *err);
char *format_delta_encode(const struct format_delta *delta, struct error *err);
int format_delta_decode(const char *text, size_t length, const char *object,
                        struct format_delta *out, struct error *err);

/*
 * Packs (compaction, sqlprodd-format(5) PACKS): the objects of a run of
 * generations, byte for byte, concatenated in the order they were shipped,
 *   DB/replica/packs/gAAAAAAAA-gBBBBBBBB.NNNNNNNNNNNN.pack
 *   DB/replica/packs/gAAAAAAAA-gBBBBBBBB.NNNNNNNNNNNN.pack.json
 * A..B the generations its objects belong to, N the pack's number (never
 * reused for a database). The manifest is JSON Lines, so that a pack of
 * many thousand objects is written and merged a line at a time: a header
 * line (the pack's generations, id, level, size, SHA-256 and object count),
 * then one line per object in pack order with its key (relative to
 * DB/replica/), offset, size and SHA-256; an object of a pack is
 * `tail -c +OFFSET+1 PACK | head -c SIZE`. Base files (base.db.gz[.age])
 * are never packed: they are uploaded once per snapshot.
 */
#define FORMAT_PACK_NAME_SIZE   48 /* "g00000001-g00000009.000000000042" and NUL */
#define FORMAT_PACK_ID_MAX      999999999999ull
#define FORMAT_PACK_KEY_SIZE    64  /* a relative key: "g00000001/wal/S-E.wal.gz.age" is 50 */
#define FORMAT_PACK_OBJECTS_MAX 1048576

struct format_pack_object {
    char key[FORMAT_PACK_KEY_SIZE]; /* relative to DB/replica/ */
    uint32_t generation;            /* of the key */
    uint64_t offset, size;
    char sha256[65];
};

struct format_pack {
    char *database; /* decoded: owned */
    uint32_t first_generation, last_generation;
    uint64_t id;
    uint32_t level;  /* 1: made of loose objects; L + 1: of packs of level L */
    uint64_t size;   /* bytes of the .pack */
    char sha256[65]; /* of the .pack */
    size_t count;
    struct format_pack_object *objects; /* in pack order; decoded: owned */
};

/* "g00000001-g00000009.000000000042". */
void format_pack_name(uint32_t first_generation, uint32_t last_generation, uint64_t id,
                      char out[FORMAT_PACK_NAME_SIZE]);
/* Parses a name followed by `suffix` (".pack", ".pack.json") and nothing
 * else: first <= last, id 1..FORMAT_PACK_ID_MAX. 0 or -EINVAL. */
int format_pack_parse(const char *name, const char *suffix, uint32_t *first_generation,
                      uint32_t *last_generation, uint64_t *id);
/* DB/replica/packs/NAME.pack, or with `manifest` NAME.pack.json; with
 * id 0, the directory DB/replica/packs/ (a prefix, for listings). */
int format_pack_key(char *out, size_t size, const char *database, uint32_t first_generation,
                    uint32_t last_generation, uint64_t id, bool manifest, struct error *err);
/* Whether `key` (relative to DB/replica/) is an object that packs may hold:
 * gN/base.json, gN/wal/S-E.wal.gz, gN/wal/S-E.wal.gz.age, gN/wal/S-E.wal.json.
 * 0 with its generation, or -EINVAL. */
int format_packable_parse(const char *key, uint32_t *generation);

/* The whole manifest: header line and object lines, each ending in '\n'. */
char *format_pack_encode(const struct format_pack *pack, struct error *err);
/* Strict: "count" objects contiguous from offset 0 up to "size", every
 * key packable and of a generation in the pack's range. */
int format_pack_decode(const char *text, size_t length, const char *object,
                       struct format_pack *out, struct error *err);
/* A line at a time (no '\n'), for manifests too long to hold: the header
 * (pack->objects unused, pack->count the number of object lines), and an
 * object line that must start at `offset` within `pack`. */
char *format_pack_header_encode(const struct format_pack *pack, struct error *err);
char *format_pack_object_encode(const struct format_pack_object *object, struct error *err);
int format_pack_header_decode(const char *line, size_t length, const char *object,
                              struct format_pack *out, struct error *err);
int format_pack_object_decode(const char *line, size_t length, const struct format_pack *pack,
                              uint64_t offset, const char *object, struct format_pack_object *out,
                              struct error *err);
void format_pack_free(struct format_pack *pack);

#endif
