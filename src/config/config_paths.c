/*
 * config_paths.c: refuses a config in which a write of the agent lands on a
 * place that another setting owns (see config_paths.h for the rule).
 *
 * Every place the config names is resolved once into a canonical absolute
 * path plus the device and inode of the place and of each existing
 * ancestor; "equal" and "inside" are then decided on those, so a symlink, a
 * hard link, a bind mount, "/./", "//" or "x/../" does not hide an overlap.
 * Places are grouped by owner (a database with its -wal, -shm and -journal;
 * the textfile with its temp file; each directory root alone) and each pair
 * of owners is reported at most once.
 *
 * Not for opening anything: only lstat(2), stat(2) and realpath(3), so that
 * loading a config never blocks and never changes a file.
 */
#include "config/config_paths.h"
#include "config/config_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"

/* Beyond this depth "inside" is judged on the path string alone. */
#define PATHS_ANCESTORS_MAX 64

enum place_kind {
    PLACE_TEXTFILE,      /* metrics.textfile: replaced after every job */
    PLACE_TEXTFILE_TEMP, /* its temp file: unlinked, then created */
    PLACE_RESTORE,       /* restore --to and its temp files */
    PLACE_DATABASE,      /* a database file: its own jobs write it */
    PLACE_COMPANION,     /* its -wal, -shm or -journal */
    PLACE_TARGET_DIR,    /* a dir target: remote retention deletes there */
    PLACE_STATE_DIR,     /* state.db, locks, temp files removed at start */
    PLACE_BACKUP_DIR,    /* DIR/NAME: backups written, local retention deletes */
};

struct file_id {
    dev_t device;
    ino_t inode;
};

struct place {
    enum place_kind kind;
    size_t owner;     /* index of the group of places that belong together */
    size_t index;     /* database or target index, where there is one */
    const char *role; /* "-wal" for a companion, "temp" for a temp file, else NULL */
    char *written;    /* as the agent builds it, for messages */
    char *path;       /* canonical */
    bool exists;
    struct file_id id;
    struct file_id *ancestors; /* of the existing part, "/" first */
    size_t ancestor_count;
};

struct finding {
    char *line;
    const char *file;
    int line_number;
    size_t sequence;
};

struct paths_check {
    const struct config *config;
    struct place *places;
    size_t count;
    size_t capacity;
    struct finding *findings;
    size_t finding_count;
    bool out_of_memory;
};


/* Appends the components of `tail` to the canonical `out`, folding "",
 * "." and ".." lexically: they name nothing that exists, so no symlink can
 * give them another meaning (SQLite folds them the same way). */
static int fold_components(char *out, size_t out_size, const char *tail)
{
    size_t length = strlen(out);
    while (*tail) {
        while (*tail == '/')
            tail++;
        size_t part = strcspn(tail, "/");
        if (part == 0 || (part == 1 && tail[0] == '.')) {
            tail += part;
            continue;
        }
        if (part == 2 && tail[0] == '.' && tail[1] == '.') {
            char *slash = strrchr(out, '/');
            length = slash == out ? 1 : (size_t)(slash - out);
            out[length] = '\0';
            tail += part;
            continue;
        }
        size_t needed = length + (length > 1 ? 1 : 0) + part;
        if (needed >= out_size)
            return -ENAMETOOLONG;
        if (length > 1)
            out[length++] = '/';
        memcpy(out + length, tail, part);
        length += part;
        out[length] = '\0';
        tail += part;
    }
    return 0;
}

/* Resolves `absolute` (which starts with '/') into out; `hops` counts the
 * dangling symlinks followed, as the kernel's ELOOP limit does. */
static int normalise_absolute(const char *absolute, char *out, size_t out_size, int hops)
{
    char prefix[PATH_MAX], resolved[PATH_MAX];
    if (strlen(absolute) >= sizeof prefix)
        return -ENAMETOOLONG;
    /* The longest prefix that exists, cut at a '/' each time; "/" always does. */
    strcpy(prefix, absolute);
    size_t prefix_length = strlen(prefix);
    while (!realpath(prefix, resolved)) {
        /* A dangling symlink is where SQLite or open(O_CREAT) would create
         * the file: follow it by hand. */
        struct stat st;
        char target[PATH_MAX];
        ssize_t length;
        if (hops < 40 && lstat(prefix, &st) == 0 && S_ISLNK(st.st_mode) &&
            (length = readlink(prefix, target, sizeof target - 1)) > 0) {
            target[length] = '\0';
            char next[PATH_MAX], *slash = strrchr(prefix, '/');
            int written;
            if (target[0] == '/')
                written = snprintf(next, sizeof next, "%s%s", target, absolute + prefix_length);
            else
                written = snprintf(next, sizeof next, "%.*s/%s%s",
                                   (int)(slash == prefix ? 0 : slash - prefix), prefix, target,
                                   absolute + prefix_length);
            if (written < 0 || (size_t)written >= sizeof next)
                return -ENAMETOOLONG;
            return normalise_absolute(next, out, out_size, hops + 1);
        }
        char *slash = strrchr(prefix, '/');
        assert(slash); /* absolute paths start with '/', and "/" resolves */
        prefix_length = slash == prefix ? 1 : (size_t)(slash - prefix);
        prefix[prefix_length] = '\0';
    }
    if (strlen(resolved) >= out_size)
        return -ENAMETOOLONG;
    strcpy(out, resolved);
    return fold_components(out, out_size, absolute + prefix_length);
}

int config_paths_normalise(const char *path, char *out, size_t out_size)
{
    char absolute[PATH_MAX];
    if (path[0] == '/') {
        if (strlen(path) >= sizeof absolute)
            return -ENAMETOOLONG;
        strcpy(absolute, path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -errno;
        if (fs_join(absolute, sizeof absolute, cwd, path) != 0)
            return -ENAMETOOLONG;
    }
    return normalise_absolute(absolute, out, out_size, 0);
}

/* Fills path, exists, id and ancestors from written; 0 or -errno. */
static int place_resolve(struct place *place)
{
    char canonical[PATH_MAX];
    int rc = config_paths_normalise(place->written, canonical, sizeof canonical);
    if (rc != 0)
        return rc;
    if (!(place->path = strdup(canonical)))
        return -ENOMEM;
    struct stat st;
    place->exists = stat(place->path, &st) == 0;
    if (place->exists)
        place->id = (struct file_id){st.st_dev, st.st_ino};
    /* Ancestors by device and inode catch a bind mount of one of them. */
    struct file_id found[PATHS_ANCESTORS_MAX];
    size_t count = 0;
    char ancestor[PATH_MAX];
    for (size_t i = 0; canonical[i] && count < PATHS_ANCESTORS_MAX; i++) {
        if (canonical[i] != '/' || (i == 0 && canonical[1] == '\0'))
            continue;
        size_t length = i == 0 ? 1 : i;
        memcpy(ancestor, canonical, length);
        ancestor[length] = '\0';
        if (stat(ancestor, &st) != 0)
            break;
        found[count++] = (struct file_id){st.st_dev, st.st_ino};
    }
    if (count > 0 && !(place->ancestors = malloc(count * sizeof *found)))
        return -ENOMEM;
    if (count > 0)
        memcpy(place->ancestors, found, count * sizeof *found);
    place->ancestor_count = count;
    return 0;
}

static void place_release(struct place *place)
{
    free(place->written);
    free(place->path);
    free(place->ancestors);
}

static bool same_id(struct file_id a, struct file_id b)
{
    return a.device == b.device && a.inode == b.inode;
}

/* Files that come and go while the application and the agent run: a -wal
 * is deleted at the last close, the textfile replaced after every job. */
static bool place_is_transient(const struct place *place)
{
    return place->kind == PLACE_TEXTFILE || place->kind == PLACE_TEXTFILE_TEMP ||
           place->kind == PLACE_COMPANION || place->kind == PLACE_RESTORE;
}

/* The same inode names the same file only if one of the two stayed in use
 * between the two stat() calls: a database or a directory does, while two
 * transient files may have been freed and created again on one inode number
 * (seen: the textfile's old inode reused by a fresh -wal). */
static bool place_same_file(const struct place *a, const struct place *b)
{
    return a->exists && b->exists && !(place_is_transient(a) && place_is_transient(b)) &&
           same_id(a->id, b->id);
}

static bool place_equal(const struct place *a, const struct place *b)
{
    return strcmp(a->path, b->path) == 0 || place_same_file(a, b);
}

/* Strictly inside: `child` is below `parent`. */
static bool place_inside(const struct place *child, const struct place *parent)
{
    size_t length = strlen(parent->path);
    if (strncmp(child->path, parent->path, length) == 0 &&
        (child->path[length] == '/' || (length == 1 && child->path[1] != '\0')))
        return true;
    if (!parent->exists || place_is_transient(parent) || place_equal(child, parent))
        return false;
    for (size_t i = 0; i < child->ancestor_count; i++)
        if (same_id(child->ancestors[i], parent->id))
            return true;
    return false;
}

static bool place_is_directory_root(const struct place *place)
{
    return place->kind == PLACE_TARGET_DIR || place->kind == PLACE_STATE_DIR ||
           place->kind == PLACE_BACKUP_DIR;
}

static struct place *paths_add(struct paths_check *check, enum place_kind kind, size_t owner,
                               size_t index, const char *role, const char *format, ...)
    __attribute__((format(printf, 6, 7)));

static struct place *paths_add(struct paths_check *check, enum place_kind kind, size_t owner,
                               size_t index, const char *role, const char *format, ...)
{
    if (check->count == check->capacity) {
        size_t capacity = check->capacity ? 2 * check->capacity : 16;
        struct place *grown = realloc(check->places, capacity * sizeof *grown);
        if (!grown) {
            check->out_of_memory = true;
            return NULL;
        }
        check->places = grown;
        check->capacity = capacity;
    }
    struct place *place = &check->places[check->count];
    *place = (struct place){.kind = kind, .owner = owner, .index = index, .role = role};
    va_list args;
    va_start(args, format);
    int written = vasprintf(&place->written, format, args);
    va_end(args);
    if (written < 0) {
        place->written = NULL;
        check->out_of_memory = true;
        return NULL;
    }
    int rc = place_resolve(place);
    if (rc != 0) {
        /* A path too long to resolve cannot be compared; the job that uses
         * it fails with ENAMETOOLONG before it writes anything. */
        check->out_of_memory = check->out_of_memory || rc == -ENOMEM;
        place_release(place);
        return NULL;
    }
    check->count++;
    return place;
}

/* Every place the agent writes or owns, grouped by owner. */
static void paths_collect(struct paths_check *check)
{
    const struct config *config = check->config;
    size_t owner = 0;
    if (config->metrics_textfile) {
        paths_add(check, PLACE_TEXTFILE, owner, 0, NULL, "%s", config->metrics_textfile);
        paths_add(check, PLACE_TEXTFILE_TEMP, owner, 0, "temp", "%s%s", config->metrics_textfile,
                  FS_TEMP_SUFFIX);
        owner++;
    }
    if (config->state_dir)
        paths_add(check, PLACE_STATE_DIR, owner++, 0, NULL, "%s", config->state_dir);
    for (size_t i = 0; i < config->target_count; i++) {
        const struct target_config *target = &config->targets[i];
        if (target->type == TARGET_DIR && target->path)
            paths_add(check, PLACE_TARGET_DIR, owner++, i, NULL, "%s", target->path);
    }
    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *database = &config->databases[i];
        if (!database->path || !database->name)
            continue;
        paths_add(check, PLACE_DATABASE, owner, i, NULL, "%s", database->path);
        for (int part = 1; part < FS_DATABASE_PARTS; part++)
            paths_add(check, PLACE_COMPANION, owner, i, fs_database_suffixes[part], "%s%s",
                      database->path, fs_database_suffixes[part]);
        owner++;
        char directory[PATH_MAX];
        if (database->backup.dir &&
            fs_join(directory, sizeof directory, database->backup.dir, database->name) == 0)
            paths_add(check, PLACE_BACKUP_DIR, owner++, i, NULL, "%s", directory);
    }
}

/* How two places overlap, seen from `subject`. */
enum overlap { OVERLAP_NONE, OVERLAP_EQUAL, OVERLAP_INSIDE, OVERLAP_CONTAINS };

static enum overlap places_overlap(const struct place *subject, const struct place *other)
{
    bool subject_root = place_is_directory_root(subject);
    bool other_root = place_is_directory_root(other);
    /* The textfile's temp file sits beside the textfile: only its name can
     * matter, where it is the name of a database or a journal. */
    if ((subject->kind == PLACE_TEXTFILE_TEMP && other_root) ||
        (other->kind == PLACE_TEXTFILE_TEMP && subject_root))
        return OVERLAP_NONE;
    if (place_equal(subject, other))
        return OVERLAP_EQUAL;
    /* Between two files "inside" means one of them is in fact a directory
     * (a textfile naming the databases' directory): refused as well. */
    if (place_inside(subject, other))
        return OVERLAP_INSIDE;
    if (place_inside(other, subject))
        return OVERLAP_CONTAINS;
    return OVERLAP_NONE;
}

/* The order in which a place speaks for a pair: the more specific and the
 * more likely mistaken setting carries the message. */
static int place_rank(enum place_kind kind)
{
    switch (kind) {
    case PLACE_RESTORE: return 0;
    case PLACE_TEXTFILE:
    case PLACE_TEXTFILE_TEMP: return 1;
    case PLACE_DATABASE:
    case PLACE_COMPANION: return 2;
    case PLACE_TARGET_DIR: return 3;
    case PLACE_STATE_DIR: return 4;
    case PLACE_BACKUP_DIR: return 5;
    }
    return 6;
}

/* The origin of a place, and whether it is a built-in default. */
static const struct config_origin *place_origin(const struct config *config,
                                                const struct place *place)
{
    switch (place->kind) {
    case PLACE_TEXTFILE:
    case PLACE_TEXTFILE_TEMP: return &config->metrics_textfile_origin;
    case PLACE_STATE_DIR: return &config->state_dir_origin;
    case PLACE_TARGET_DIR: return &config->targets[place->index].path_origin;
    case PLACE_DATABASE:
    case PLACE_COMPANION: return &config->databases[place->index].path_origin;
    case PLACE_BACKUP_DIR: return &config->databases[place->index].backup.dir_origin;
    case PLACE_RESTORE: break;
    }
    return NULL;
}

static void place_key(const struct config *config, const struct place *place, char *out,
                      size_t out_size)
{
    const struct config_origin *origin = place_origin(config, place);
    switch (place->kind) {
    case PLACE_TEXTFILE:
    case PLACE_TEXTFILE_TEMP: snprintf(out, out_size, "metrics.textfile"); return;
    case PLACE_STATE_DIR: snprintf(out, out_size, "state_dir"); return;
    case PLACE_TARGET_DIR:
        snprintf(out, out_size, "targets.%s.path", config->targets[place->index].name);
        return;
    case PLACE_DATABASE:
    case PLACE_COMPANION:
        snprintf(out, out_size, "databases.%s.path", config->databases[place->index].name);
        return;
    case PLACE_BACKUP_DIR:
        if (origin && origin->in_defaults)
            snprintf(out, out_size, "defaults.backup.dir");
        else
            snprintf(out, out_size, "databases.%s.backup.dir",
                     config->databases[place->index].name);
        return;
    case PLACE_RESTORE: snprintf(out, out_size, "--to"); return;
    }
}

/* " (line 12)", " (line 12 of FILE)" when not in `here`, or " (the built-in
 * default)" when the setting was not written. */
static void origin_phrase(const struct config_origin *origin, const char *here, char *out,
                          size_t out_size)
{
    if (!origin || origin->line <= 0)
        snprintf(out, out_size, " (the built-in default)");
    else if (!here || !origin->file || strcmp(here, origin->file) == 0)
        snprintf(out, out_size, " (line %d)", origin->line);
    else
        snprintf(out, out_size, " (line %d of %s)", origin->line, origin->file);
}

/* What `place` is, for the other side of a message: "the database file of
 * databases.app.path (line 12)". */
static void place_describe(const struct config *config, const struct place *place, const char *here,
                           char *out, size_t out_size)
{
    char key[320], where[PATH_MAX + 64];
    place_key(config, place, key, sizeof key);
    origin_phrase(place_origin(config, place), here, where, sizeof where);
    switch (place->kind) {
    case PLACE_DATABASE: snprintf(out, out_size, "the database file of %s%s", key, where); return;
    case PLACE_COMPANION:
        snprintf(out, out_size, "the %s file of %s%s", place->role, key, where);
        return;
    case PLACE_BACKUP_DIR:
        snprintf(out, out_size, "the backup directory \"%s\" of databases.%s, from %s%s",
                 place->written, config->databases[place->index].name, key, where);
        return;
    case PLACE_TARGET_DIR: snprintf(out, out_size, "the directory of %s%s", key, where); return;
    case PLACE_STATE_DIR:
        snprintf(out, out_size, "state_dir \"%s\"%s", config->state_dir, where);
        return;
    case PLACE_TEXTFILE:
    case PLACE_TEXTFILE_TEMP: snprintf(out, out_size, "%s%s", key, where); return;
    case PLACE_RESTORE: snprintf(out, out_size, "the restore destination"); return;
    }
}

/* What goes wrong, said once for the pair. */
static const char *overlap_consequence(const struct place *subject, const struct place *other,
                                       enum overlap overlap)
{
    bool other_file = other->kind == PLACE_DATABASE || other->kind == PLACE_COMPANION;
    switch (subject->kind) {
    case PLACE_TEXTFILE:
        return other_file && overlap == OVERLAP_EQUAL
                   ? "the agent would overwrite it with metrics text"
                   : "the agent would write its metrics among files it manages: give "
                     "metrics.textfile a path of its own";
    case PLACE_TEXTFILE_TEMP:
        return "the agent removes that temp file before every write of the metrics";
    case PLACE_DATABASE:
    case PLACE_COMPANION:
        if (other->kind == PLACE_DATABASE && subject->kind == PLACE_DATABASE)
            return "two entries may not name the same file (their jobs would run twice and "
                   "fight over one lock)";
        if (other_file)
            return "one entry's jobs would write the other's database";
        return "the agent creates, replaces and deletes files there: keep databases outside "
               "the directories sqlprodd writes";
    case PLACE_TARGET_DIR:
        return other->kind == PLACE_BACKUP_DIR
                   ? "remote retention would delete local archives that local retention keeps"
                   : "remote retention deletes files there: a target needs a directory of its "
                     "own";
    case PLACE_STATE_DIR:
        return "the agent keeps its state and locks there and removes leftover temp files: "
               "state_dir needs a directory of its own";
    case PLACE_BACKUP_DIR:
        return "local retention deletes archives there: each database needs a backup "
               "directory of its own";
    case PLACE_RESTORE: return "restore to a path of its own";
    }
    return "";
}

static const char *overlap_verb(enum overlap overlap)
{
    switch (overlap) {
    case OVERLAP_EQUAL: return "is";
    case OVERLAP_INSIDE: return "lies inside";
    case OVERLAP_CONTAINS: return "contains";
    case OVERLAP_NONE: break;
    }
    return "?";
}

/* "KEY: what" for a pair, without the FILE:LINE prefix. */
static void overlap_message(const struct config *config, const struct place *subject,
                            const struct place *anchor, const struct place *other,
                            enum overlap overlap, const char *here, char *out, size_t out_size)
{
    char key[320], what[PATH_MAX + 128], description[2 * PATH_MAX];
    place_key(config, anchor, key, sizeof key);
    if (anchor->kind == PLACE_BACKUP_DIR)
        snprintf(what, sizeof what, "the backup directory \"%s\" of databases.%s", anchor->written,
                 config->databases[anchor->index].name);
    else
        snprintf(what, sizeof what, "\"%s\"", anchor->written);
    char part[PATH_MAX + 64] = "";
    if (subject != anchor)
        snprintf(part, sizeof part, ": its %s file \"%s\"", subject->role ? subject->role : "",
                 subject->written);
    place_describe(config, other, here, description, sizeof description);
    snprintf(out, out_size, "%s: %s%s %s %s: %s", key, what, part, overlap_verb(overlap),
             description, overlap_consequence(subject, other, overlap));
}

static void paths_report(struct paths_check *check, const char *file, int line, const char *text)
{
    struct finding *grown =
        realloc(check->findings, (check->finding_count + 1) * sizeof *check->findings);
    if (!grown) {
        check->out_of_memory = true;
        return;
    }
    check->findings = grown;
    struct finding *finding = &check->findings[check->finding_count];
    if (asprintf(&finding->line, "%s:%d: %s", file, line, text) < 0) {
        check->out_of_memory = true;
        return;
    }
    finding->file = file;
    finding->line_number = line;
    finding->sequence = check->finding_count++;
}

/* The place that carries the message for the first overlapping pair of
 * owners a and b, or false when they do not overlap. */
static bool owners_overlap(const struct paths_check *check, size_t a_first, size_t a_end,
                           size_t b_first, size_t b_end, const struct place **subject,
                           const struct place **other, enum overlap *overlap)
{
    for (size_t i = a_first; i < a_end; i++) {
        for (size_t j = b_first; j < b_end; j++) {
            const struct place *first = &check->places[i], *second = &check->places[j];
            /* The pair is said by its higher-ranked side; between equals, by
             * the one written later, as a reader meets the mistake there. */
            if (place_rank(first->kind) < place_rank(second->kind) ||
                (place_rank(first->kind) == place_rank(second->kind) && i > j)) {
                *subject = first;
                *other = second;
            } else {
                *subject = second;
                *other = first;
            }
            *overlap = places_overlap(*subject, *other);
            if (*overlap != OVERLAP_NONE)
                return true;
        }
    }
    return false;
}

/* The place that names a group: a database rather than its journal, the
 * textfile rather than its temp file. */
static const struct place *owner_anchor(const struct paths_check *check, const struct place *place)
{
    if (place->kind == PLACE_COMPANION || place->kind == PLACE_TEXTFILE_TEMP)
        for (size_t i = 0; i < check->count; i++)
            if (check->places[i].owner == place->owner && !check->places[i].role)
                return &check->places[i];
    return place;
}

/* Where a message about `anchor` goes: its own line, or for a built-in
 * default the database entry (backup.dir) or the top of the file. */
static void anchor_location(const struct config *config, const struct place *anchor,
                            const char **file, int *line)
{
    const struct config_origin *origin = place_origin(config, anchor);
    if (origin && origin->line > 0 && origin->file) {
        *file = origin->file;
        *line = origin->line;
        return;
    }
    if (anchor->kind == PLACE_BACKUP_DIR) {
        const struct database_config *database = &config->databases[anchor->index];
        *file = database->path_origin.file ? database->path_origin.file : config->file;
        *line = database->line > 0 ? database->line : 1;
        return;
    }
    *file = config->file;
    *line = 1;
}

static void paths_compare_owners(struct paths_check *check, size_t a_first, size_t a_end,
                                 size_t b_first, size_t b_end)
{
    const struct place *subject, *other;
    enum overlap overlap;
    if (!owners_overlap(check, a_first, a_end, b_first, b_end, &subject, &other, &overlap))
        return;
    const struct place *anchor = owner_anchor(check, subject);
    /* A built-in default cannot be fixed where it is not written: let the
     * written side speak when there is one. */
    const struct config_origin *anchor_origin = place_origin(check->config, anchor);
    const struct place *other_anchor = owner_anchor(check, other);
    const struct config_origin *other_origin = place_origin(check->config, other_anchor);
    if ((!anchor_origin || anchor_origin->line <= 0) && other_origin && other_origin->line > 0) {
        const struct place *swap = subject;
        subject = other;
        other = swap;
        anchor = other_anchor;
        overlap = overlap == OVERLAP_INSIDE     ? OVERLAP_CONTAINS
                  : overlap == OVERLAP_CONTAINS ? OVERLAP_INSIDE
                                                : overlap;
    }
    const char *file;
    int line;
    anchor_location(check->config, anchor, &file, &line);
    char text[3 * PATH_MAX + 1024];
    overlap_message(check->config, subject, anchor, other, overlap, file, text, sizeof text);
    paths_report(check, file, line, text);
}

static int compare_findings(const void *left, const void *right, void *main_file)
{
    const struct finding *a = left, *b = right;
    return config_compare_locations(a->file, a->line_number, a->sequence, b->file, b->line_number,
                                    b->sequence, main_file);
}

static void paths_check_free(struct paths_check *check)
{
    for (size_t i = 0; i < check->finding_count; i++)
        free(check->findings[i].line);
    free(check->findings);
    for (size_t i = 0; i < check->count; i++)
        place_release(&check->places[i]);
    free(check->places);
}

/* The textfile is replaced by a new regular file on every write: a FIFO,
 * socket or device that stands there was put there for another purpose
 * ("/dev/null" to silence it, as root, would lose the device). A symlink
 * is fine: the rename replaces the link itself. A directory cannot be
 * renamed over; one that holds what the config names is refused above. */
static void paths_check_textfile_kind(struct paths_check *check)
{
    const struct config *config = check->config;
    struct stat st;
    if (!config->metrics_textfile || lstat(config->metrics_textfile, &st) != 0 ||
        S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode))
        return;
    const struct config_origin *origin = &config->metrics_textfile_origin;
    const char *file = origin->file ? origin->file : config->file;
    char text[PATH_MAX + 512];
    snprintf(text, sizeof text,
             "metrics.textfile: \"%s\" is %s, not a file: the agent replaces the textfile with "
             "a new regular file after every job; give metrics.textfile a path of its own",
             config->metrics_textfile, fs_file_kind(st.st_mode));
    paths_report(check, file, origin->line > 0 ? origin->line : 1, text);
}

/*
 * Which pairs of owners can overlap at all, without comparing every pair
 * (ten thousand databases of a glob entry make 10^8 pairs): two places
 * overlap only when they have the same path or file, or one's path, or
 * the file of one of its ancestors, is the other. So every place is
 * looked up by path and by file, and each place looks up its own path,
 * each '/' prefix of it, its file and its ancestors' files: the pairs
 * found are the only ones places_overlap can accept.
 */
struct place_index {
    size_t *slots; /* place number + 1; 0: empty */
    size_t mask;
};

static size_t place_path_hash(const char *path, size_t length)
{
    return config_hash_bytes(path, length, 0);
}

static size_t place_id_hash(struct file_id id)
{
    size_t hash = config_hash_bytes(&id.device, sizeof id.device, 1);
    return config_hash_bytes(&id.inode, sizeof id.inode, hash);
}

static bool place_index_init(struct place_index *index, size_t count)
{
    size_t size = 16;
    while (size < 2 * count)
        size *= 2;
    index->mask = size - 1;
    index->slots = calloc(size, sizeof *index->slots);
    return index->slots != NULL;
}

static void place_index_add(struct place_index *index, size_t hash, size_t place)
{
    size_t at = hash & index->mask;
    while (index->slots[at])
        at = (at + 1) & index->mask;
    index->slots[at] = place + 1;
}

struct owner_pairs {
    size_t (*pairs)[2];
    size_t count, capacity;
    bool out_of_memory;
};

static void owner_pairs_add(struct owner_pairs *pairs, size_t a, size_t b)
{
    if (a == b)
        return;
    if (pairs->count == pairs->capacity) {
        size_t capacity = pairs->capacity ? 2 * pairs->capacity : 16;
        size_t(*grown)[2] = realloc(pairs->pairs, capacity * sizeof *grown);
        if (!grown) {
            pairs->out_of_memory = true;
            return;
        }
        pairs->pairs = grown;
        pairs->capacity = capacity;
    }
    pairs->pairs[pairs->count][0] = a < b ? a : b;
    pairs->pairs[pairs->count][1] = a < b ? b : a;
    pairs->count++;
}

/* Every place filed under `hash` in `index` whose path is path[0, length). */
static void pairs_by_path(const struct paths_check *check, const struct place_index *index,
                          size_t place, const char *path, size_t length, struct owner_pairs *pairs)
{
    for (size_t at = place_path_hash(path, length) & index->mask; index->slots[at];
         at = (at + 1) & index->mask) {
        const struct place *other = &check->places[index->slots[at] - 1];
        if (strlen(other->path) == length && memcmp(other->path, path, length) == 0)
            owner_pairs_add(pairs, check->places[place].owner, other->owner);
    }
}

static void pairs_by_id(const struct paths_check *check, const struct place_index *index,
                        size_t place, struct file_id id, struct owner_pairs *pairs)
{
    for (size_t at = place_id_hash(id) & index->mask; index->slots[at];
         at = (at + 1) & index->mask) {
        const struct place *other = &check->places[index->slots[at] - 1];
        if (same_id(other->id, id))
            owner_pairs_add(pairs, check->places[place].owner, other->owner);
    }
}

static int compare_pairs(const void *left, const void *right)
{
    const size_t *a = left, *b = right;
    return a[0] != b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] != b[1] ? (a[1] < b[1] ? -1 : 1) : 0;
}

/* The owner pairs that may overlap, each once, in the order of owners. */
static void paths_candidate_pairs(struct paths_check *check, struct owner_pairs *pairs)
{
    struct place_index by_path = {0}, by_id = {0};
    if (!place_index_init(&by_path, check->count) || !place_index_init(&by_id, check->count)) {
        pairs->out_of_memory = true;
        goto out;
    }
    for (size_t i = 0; i < check->count; i++) {
        const struct place *place = &check->places[i];
        place_index_add(&by_path, place_path_hash(place->path, strlen(place->path)), i);
        if (place->exists)
            place_index_add(&by_id, place_id_hash(place->id), i);
    }
    for (size_t i = 0; i < check->count; i++) {
        const struct place *place = &check->places[i];
        const char *path = place->path;
        pairs_by_path(check, &by_path, i, path, strlen(path), pairs);
        for (size_t length = 1; path[length]; length++)
            if (path[length] == '/' || length == 1)
                pairs_by_path(check, &by_path, i, path, length, pairs);
        if (place->exists)
            pairs_by_id(check, &by_id, i, place->id, pairs);
        for (size_t a = 0; a < place->ancestor_count; a++)
            pairs_by_id(check, &by_id, i, place->ancestors[a], pairs);
    }
    if (pairs->count > 1)
        qsort(pairs->pairs, pairs->count, sizeof *pairs->pairs, compare_pairs);
out:
    free(by_path.slots);
    free(by_id.slots);
}

int config_paths_check(const struct config *config, struct config_diagnostics *diag)
{
    struct paths_check check = {.config = config};
    paths_collect(&check);
    paths_check_textfile_kind(&check);
    /* Groups are contiguous: where each owner's places begin and end. */
    size_t owners = check.count ? check.places[check.count - 1].owner + 1 : 0;
    size_t *first = calloc(owners + 1, sizeof *first), *end = calloc(owners + 1, sizeof *end);
    struct owner_pairs pairs = {0};
    if (!first || !end) {
        check.out_of_memory = true;
    } else {
        for (size_t i = check.count; i-- > 0;)
            first[check.places[i].owner] = i;
        for (size_t i = 0; i < check.count; i++)
            end[check.places[i].owner] = i + 1;
        paths_candidate_pairs(&check, &pairs);
        check.out_of_memory |= pairs.out_of_memory;
    }
    for (size_t p = 0; p < pairs.count && !check.out_of_memory; p++) {
        if (p > 0 && compare_pairs(pairs.pairs[p], pairs.pairs[p - 1]) == 0)
            continue;
        size_t a = pairs.pairs[p][0], b = pairs.pairs[p][1];
        paths_compare_owners(&check, first[a], end[a], first[b], end[b]);
    }
    free(pairs.pairs);
    free(first);
    free(end);
    int rc = check.out_of_memory ? -ENOMEM : check.finding_count > 0 ? -EINVAL : 0;
    if (check.finding_count > 1)
        qsort_r(check.findings, check.finding_count, sizeof *check.findings, compare_findings,
                (void *)config->file);
    for (size_t i = 0; diag && rc == -EINVAL && i < check.finding_count; i++) {
        char **grown = realloc(diag->lines, (diag->count + 1) * sizeof *diag->lines);
        if (!grown) {
            rc = -ENOMEM;
            break;
        }
        diag->lines = grown;
        diag->lines[diag->count++] = check.findings[i].line;
        check.findings[i].line = NULL;
    }
    paths_check_free(&check);
    return rc;
}

int config_paths_check_restore_target(const struct config *config,
                                      const struct database_config *database, const char *path,
                                      struct error *err)
{
    struct paths_check check = {.config = config};
    paths_collect(&check);
    size_t configured = check.count;
    size_t owner = configured ? check.places[configured - 1].owner + 1 : 0;
    /* Restore writes PATH, then its temp files beside it (cli_restore.c). */
    paths_add(&check, PLACE_RESTORE, owner, 0, NULL, "%s", path);
    paths_add(&check, PLACE_RESTORE, owner, 0, "temp", "%s%s", path, FS_TEMP_SUFFIX);
    paths_add(&check, PLACE_RESTORE, owner, 0, "temp", "%s.archive%s", path, FS_TEMP_SUFFIX);
    paths_add(&check, PLACE_RESTORE, owner, 0, "temp", "%s.manifest%s", path, FS_TEMP_SUFFIX);
    int rc = check.out_of_memory ? -ENOMEM : 0;
    for (size_t i = configured; rc == 0 && i < check.count; i++) {
        const struct place *restore = &check.places[i];
        for (size_t j = 0; j < configured; j++) {
            const struct place *place = &check.places[j];
            /* The live database itself: restore's own rules (--force). */
            if (place->kind == PLACE_DATABASE && !restore->role &&
                &config->databases[place->index] == database)
                continue;
            enum overlap overlap = places_overlap(restore, place);
            if (overlap == OVERLAP_NONE)
                continue;
            char description[2 * PATH_MAX];
            place_describe(config, place, config->file, description, sizeof description);
            if (restore->role)
                rc = error_set(err, -EPERM,
                               "--to \"%s\": its temp file \"%s\" %s %s: restore to a path of "
                               "its own",
                               path, restore->written, overlap_verb(overlap), description);
            else
                rc = error_set(err, -EPERM, "--to \"%s\" %s %s: restore to a path of its own", path,
                               overlap_verb(overlap), description);
            break;
        }
    }
    if (rc == 0 && check.out_of_memory)
        rc = error_set(err, -ENOMEM, "out of memory");
    paths_check_free(&check);
    return rc;
}
