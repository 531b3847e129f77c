/*
 * config_scan.c: one linear pass over sqlprodd.conf and its @include files
 * before libconfig parses them.
 *
 * Why it exists: libconfig's flex scanner reads a file in 8 KiB pieces and,
 * each time a token runs past a piece, rescans that token from its start
 * (yy_get_previous_state). A 10 MB string took 56 s to parse: quadratic in
 * the longest token. Bounding the file, every line and every quoted string
 * here keeps the whole parse linear, and lets each fault be reported as
 * FILE:LINE instead of after a minute of CPU. The pass also opens every
 * @include file the way libconfig will, so that one that cannot be read is
 * reported with its name and the reason (libconfig says only "cannot open
 * include file"), and notes where a string holds a NUL character, which
 * libconfig would silently cut the value at.
 *
 * Not a parser: it knows strings, comments and @include lines, which is
 * all it takes to find the tokens that can be long. The grammar is
 * libconfig's business; what the values mean is config_values.c's.
 */
#include "config/config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"

/* One file being scanned. */
struct scan {
    struct config_reader *reader;
    const char *include_directory;
    char *file; /* the name mistakes carry, as config_source_name() spells it */
    const char *text;
    size_t length;
    int depth;
};

static int scan_path(struct config_reader *reader, const char *display, const char *path,
                     const char *include_directory, int depth, const char *from_file, int from_line,
                     const char *written);

/* Notes a literal libconfig would misread, at the setting `name`. */
static bool note_site(struct scan *scan, int line, const char *name,
                      enum config_literal_fault fault, const char *text, size_t text_length)
{
    struct config_reader *reader = scan->reader;
    if (reader->literal_site_count > 0) {
        const struct config_literal_site *last =
            &reader->literal_sites[reader->literal_site_count - 1];
        if (last->line == line && last->fault == fault && strcmp(last->name, name) == 0 &&
            strcmp(last->file, scan->file) == 0)
            return true;
    }
    struct config_literal_site *grown = realloc(
        reader->literal_sites, (reader->literal_site_count + 1) * sizeof *reader->literal_sites);
    if (!grown)
        return false;
    reader->literal_sites = grown;
    struct config_literal_site *site = &reader->literal_sites[reader->literal_site_count];
    *site = (struct config_literal_site){.line = line, .fault = fault};
    /* An integer is shown as written, but never at length. */
    if (text_length > 40)
        text_length = 40;
    site->file = strdup(scan->file);
    site->name = strdup(name);
    site->text = text ? strndup(text, text_length) : NULL;
    if (!site->file || !site->name || (text && !site->text)) {
        free(site->file);
        free(site->name);
        free(site->text);
        return false;
    }
    reader->literal_site_count++;
    return true;
}

/* The integer literal at text[at] (digits, or 0x and hex digits, after an
 * optional sign at at - 1), as libconfig reads it: an `L` suffix makes it
 * 64-bit, anything else 32-bit. Returns the index after it; *out_of_range
 * says whether its value does not fit. A decimal number ("1.5", "1e9") is
 * not an integer: *is_integer false. */
static size_t scan_integer(const char *text, size_t length, size_t at, bool *is_integer,
                           bool *out_of_range)
{
    bool negative = at > 0 && text[at - 1] == '-';
    bool hex = at + 1 < length && text[at] == '0' && (text[at + 1] == 'x' || text[at + 1] == 'X');
    size_t p = hex ? at + 2 : at;
    uint64_t value = 0;
    bool overflow = false;
    for (; p < length; p++) {
        int digit;
        char c = text[p];
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else if (hex && c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else if (hex && c >= 'A' && c <= 'F')
            digit = c - 'A' + 10;
        else
            break;
        unsigned base = hex ? 16 : 10;
        if (value > (UINT64_MAX - (uint64_t)digit) / base)
            overflow = true;
        else
            value = value * base + (uint64_t)digit;
    }
    *is_integer = !(p < length && !hex && (text[p] == '.' || text[p] == 'e' || text[p] == 'E'));
    bool wide = p < length && text[p] == 'L';
    uint64_t limit = wide ? (uint64_t)INT64_MAX : (uint64_t)INT32_MAX;
    *out_of_range = overflow || value > limit + (negative ? 1 : 0);
    while (p < length && text[p] == 'L')
        p++;
    return p;
}

/* The path libconfig opens for `@include "name"`. libconfig 1.5 (Debian
 * 12) puts the include directory in front of every name, absolute or not;
 * 1.7 leaves an absolute name alone. */
static bool include_path(const char *include_directory, const char *name, char *out,
                         size_t out_size)
{
#if LIBCONFIG_VER_MAJOR > 1 || (LIBCONFIG_VER_MAJOR == 1 && LIBCONFIG_VER_MINOR >= 7)
    if (name[0] == '/') {
        int written = snprintf(out, out_size, "%s", name);
        return written >= 0 && (size_t)written < out_size;
    }
#endif
    int written = include_directory ? snprintf(out, out_size, "%s/%s", include_directory, name)
                                    : snprintf(out, out_size, "%s", name);
    return written >= 0 && (size_t)written < out_size;
}

/* `@include "name"` at line `line`: checks the file, then scans it. */
static int scan_include(struct scan *scan, const char *name, int line)
{
    struct config_reader *reader = scan->reader;
    char path[PATH_MAX];
    if (!include_path(scan->include_directory, name, path, sizeof path)) {
        config_report_at(reader, scan->file, line, NULL, "@include \"%.200s\": path too long",
                         name);
        return 0;
    }
#if LIBCONFIG_VER_MAJOR == 1 && LIBCONFIG_VER_MINOR < 7
    if (name[0] == '/') {
        /* Say how to write it so that it works: relative to the real
         * directory, which is what the kernel resolves ".." against. */
        char real[PATH_MAX] = "", relative[PATH_MAX] = "";
        if (scan->include_directory && realpath(scan->include_directory, real)) {
            size_t used = 0;
            for (const char *p = real; *p && used + 3 < sizeof relative; p++)
                if (*p == '/' && (p[1] != '\0' || p == real))
                    used += (size_t)snprintf(relative + used, sizeof relative - used, "../");
            snprintf(relative + used, sizeof relative - used, "%s", name + 1);
        }
        config_report_at(reader, scan->file, line, NULL,
                         "@include \"%.200s\": libconfig %d.%d opens every @include path inside "
                         "the config's directory (here %.200s); write it relative to that "
                         "directory: @include \"%.400s\"",
                         name, LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, path, relative);
        return 0;
    }
#endif
    if (scan->depth + 1 > CONFIG_INCLUDE_DEPTH_MAXIMUM) {
        config_report_at(reader, scan->file, line, NULL,
                         "@include \"%.200s\": included files nest more than %d deep (does a "
                         "file include itself?)",
                         name, CONFIG_INCLUDE_DEPTH_MAXIMUM);
        return 0;
    }
    /* Mistakes in the included file carry the name libconfig records (as
     * written), spelled as the operator can open it. */
    char *display = config_source_name(reader, name);
    if (!display)
        return -ENOMEM;
    int rc = scan_path(reader, display, path, scan->include_directory, scan->depth + 1, scan->file,
                       line, name);
    free(display);
    return rc;
}

/* At the start of a line: `@include "name"` as libconfig recognises it
 * (blanks, @include, blanks, a quoted name). Returns the index after the
 * line's directive, or `at` when there is none. */
static size_t scan_directive(struct scan *scan, size_t at, int line, int *rc)
{
    const char *text = scan->text;
    size_t p = at;
    while (p < scan->length && (text[p] == ' ' || text[p] == '\t'))
        p++;
    static const char keyword[] = "@include";
    if (scan->length - p < sizeof keyword || memcmp(text + p, keyword, sizeof keyword - 1) != 0)
        return at;
    p += sizeof keyword - 1;
    size_t blanks = p;
    while (p < scan->length && (text[p] == ' ' || text[p] == '\t'))
        p++;
    if (p == blanks || p >= scan->length || text[p] != '"')
        return at;
    size_t start = ++p;
    while (p < scan->length && text[p] != '"' && text[p] != '\n')
        p++;
    if (p >= scan->length || text[p] != '"')
        return at; /* libconfig reports the syntax error */
    size_t name_length = p - start;
    if (name_length >= PATH_MAX || memchr(text + start, '\0', name_length)) {
        config_report_at(scan->reader, scan->file, line, NULL,
                         "@include: the file name is too long or holds a NUL character");
        return p + 1;
    }
    char name[PATH_MAX];
    memcpy(name, text + start, name_length);
    name[name_length] = '\0';
    *rc = scan_include(scan, name, line);
    return p + 1;
}

/* The pass itself: one state per kind of long token. */
/* Where scan_text is in the text: the lexical state and what a fault found
 * there must name. */
struct lexer {
    enum { CODE, STRING, LINE_COMMENT, BLOCK_COMMENT } state;
    int line, string_line, reported_until;
    size_t line_start, string_start;
    bool at_line_start;
    /* The name of the setting being written ("path" in `path = "..."`), so
     * that a fault in its value names it; libconfig has not built the tree
     * that would give the full key yet. */
    char name[CONFIG_KEY_SIZE];
    size_t word_start, word_length;
};

static bool lex_is_word_char(char c, size_t word_length)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '*' ||
           (c == '-' && word_length > 0) || (c >= '0' && c <= '9' && word_length > 0);
}

/* One character of code at *i (which it may move past what it consumed). */
static int lex_code(struct scan *scan, struct lexer *lx, size_t *i)
{
    const char *text = scan->text;
    char c = text[*i];
    if (lex_is_word_char(c, lx->word_length)) {
        if (lx->word_length == 0 || lx->word_start + lx->word_length != *i) {
            lx->word_start = *i;
            lx->word_length = 0;
        }
        lx->word_length++;
        return 0;
    }
    if ((c == '=' || c == ':') && lx->word_length > 0) {
        size_t copied =
            lx->word_length < sizeof lx->name - 1 ? lx->word_length : sizeof lx->name - 1;
        memcpy(lx->name, text + lx->word_start, copied);
        lx->name[copied] = '\0';
    }
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
        lx->word_length = 0;
    if (c >= '0' && c <= '9') {
        bool is_integer, out_of_range;
        size_t start = *i > 0 && (text[*i - 1] == '-' || text[*i - 1] == '+') ? *i - 1 : *i;
        size_t end = scan_integer(text, scan->length, *i, &is_integer, &out_of_range);
        if (is_integer && out_of_range &&
            !note_site(scan, lx->line, lx->name, CONFIG_LITERAL_OUT_OF_RANGE, text + start,
                       end - start))
            return -ENOMEM;
        /* The rest of a decimal number is only digits and signs. */
        *i = end - 1;
        return 0;
    }
    if (c == '"') {
        lx->state = STRING;
        lx->string_start = *i;
        lx->string_line = lx->line;
    } else if (c == '#' || (c == '/' && *i + 1 < scan->length && text[*i + 1] == '/')) {
        lx->state = LINE_COMMENT;
    } else if (c == '/' && *i + 1 < scan->length && text[*i + 1] == '*') {
        lx->state = BLOCK_COMMENT;
        (*i)++;
    }
    return 0;
}

static void lex_report_long_string(struct scan *scan, const struct lexer *lx, size_t length)
{
    config_report_at(scan->reader, scan->file, lx->string_line, lx->name[0] ? lx->name : NULL,
                     "quoted string too long (%zu bytes, at most %d)", length,
                     CONFIG_LITERAL_MAXIMUM);
}

/* One character inside a quoted string at *i. */
static int lex_string(struct scan *scan, struct lexer *lx, size_t *i)
{
    const char *text = scan->text;
    char c = text[*i];
    if (c == '\\' && *i + 1 < scan->length) {
        /* libconfig turns \xHH into that byte, and \x00 ends its string. */
        if (text[*i + 1] == 'x' && *i + 3 < scan->length && text[*i + 2] == '0' &&
            text[*i + 3] == '0' &&
            !note_site(scan, lx->string_line, lx->name, CONFIG_LITERAL_NUL, NULL, 0))
            return -ENOMEM;
        if (text[*i + 1] != '\n')
            (*i)++;
    } else if (c == '\0') {
        if (!note_site(scan, lx->string_line, lx->name, CONFIG_LITERAL_NUL, NULL, 0))
            return -ENOMEM;
    } else if (c == '"') {
        lx->state = CODE;
        if (*i - lx->string_start - 1 > CONFIG_LITERAL_MAXIMUM) {
            lex_report_long_string(scan, lx, *i - lx->string_start - 1);
            lx->reported_until = lx->line;
        }
    }
    return 0;
}

static int scan_text(struct scan *scan)
{
    struct lexer lx = {.state = CODE, .line = 1, .at_line_start = true};
    for (size_t i = 0; i <= scan->length; i++) {
        char c = i < scan->length ? scan->text[i] : '\n';
        if (c == '\n' || i == scan->length) {
            size_t length = i - lx.line_start;
            /* A line made long by a string already reported is not news. */
            if (length > CONFIG_LINE_MAXIMUM && lx.line > lx.reported_until)
                config_report_at(scan->reader, scan->file, lx.line, NULL,
                                 "line too long (%zu bytes, at most %d)", length,
                                 CONFIG_LINE_MAXIMUM);
        }
        if (i == scan->length)
            break;
        if (lx.at_line_start && lx.state == CODE) {
            int rc = 0;
            size_t after = scan_directive(scan, i, lx.line, &rc);
            if (rc != 0)
                return rc;
            lx.at_line_start = false;
            if (after != i) {
                i = after - 1;
                continue;
            }
        }
        int rc = 0;
        switch (lx.state) {
        case CODE: rc = lex_code(scan, &lx, &i); break;
        case STRING: rc = lex_string(scan, &lx, &i); break;
        case LINE_COMMENT:
            if (c == '\n')
                lx.state = CODE;
            break;
        case BLOCK_COMMENT:
            if (c == '*' && i + 1 < scan->length && scan->text[i + 1] == '/') {
                lx.state = CODE;
                i++;
            }
            break;
        }
        if (rc != 0)
            return rc;
        if (c == '\n') {
            lx.line++;
            lx.line_start = i + 1;
            lx.at_line_start = true;
        }
    }
    if (lx.state == STRING && scan->length - lx.string_start - 1 > CONFIG_LITERAL_MAXIMUM)
        lex_report_long_string(scan, &lx, scan->length - lx.string_start - 1);
    return 0;
}

/* What read_bounded() returns for a FIFO, socket or device. */
#define NOT_A_REGULAR_FILE 1

/* Reads a regular file of at most `room` bytes into a new buffer. A
 * non-blocking open, so that a FIFO named by mistake cannot hang us. */
static int read_bounded(const char *path, size_t room, char **out, size_t *length, bool *too_large)
{
    *out = NULL;
    *length = 0;
    *too_large = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = NOT_A_REGULAR_FILE;
        goto out;
    }
    /* Room for one byte more than allowed tells a file past the limit,
     * whatever fstat() said; its size is only a first guess. */
    size_t capacity = (uintmax_t)st.st_size < room ? (size_t)st.st_size + 4096 : room + 1;
    if (capacity > room + 1)
        capacity = room + 1;
    char *buffer = malloc(capacity);
    if (!buffer) {
        rc = -ENOMEM;
        goto out;
    }
    size_t used = 0;
    for (;;) {
        if (used == capacity) {
            if (capacity > room)
                break;
            size_t grown_capacity = capacity * 2 > room + 1 ? room + 1 : capacity * 2;
            char *grown = realloc(buffer, grown_capacity);
            if (!grown) {
                free(buffer);
                rc = -ENOMEM;
                goto out;
            }
            buffer = grown;
            capacity = grown_capacity;
        }
        ssize_t got = io_read_full(fd, buffer + used, capacity - used);
        if (got < 0) {
            rc = (int)got;
            free(buffer);
            goto out;
        }
        used += (size_t)got;
        if (used < capacity)
            break; /* end of file */
    }
    if (used > room) {
        *too_large = true;
        free(buffer);
        goto out;
    }
    *out = buffer;
    *length = used;
out:
    close(fd);
    return rc;
}

/* Scans the file at `path` (named `display` in mistakes). `from_file` and
 * `from_line` are where it was included (NULL for the main file), and
 * `written` the name as the @include line wrote it. */
static int scan_path(struct config_reader *reader, const char *display, const char *path,
                     const char *include_directory, int depth, const char *from_file, int from_line,
                     const char *written)
{
    size_t room = reader->scanned_bytes < CONFIG_FILE_MAXIMUM
                      ? CONFIG_FILE_MAXIMUM - reader->scanned_bytes
                      : 0;
    char *text;
    size_t length;
    bool too_large;
    int rc = read_bounded(path, room, &text, &length, &too_large);
    const char *where_file = from_file ? from_file : display;
    int where_line = from_file ? from_line : 1;
    if (rc == -ENOMEM)
        return rc;
    if (rc != 0) {
        const char *why = rc == NOT_A_REGULAR_FILE ? "not a regular file" : strerror(-rc);
        if (from_file)
            config_report_at(reader, where_file, where_line, NULL,
                             "@include \"%.200s\": cannot open %.400s: %s", written, path, why);
        else
            config_report_at(reader, where_file, where_line, NULL, "cannot read %.400s: %s", path,
                             why);
        return 0;
    }
    if (too_large) {
        if (from_file)
            config_report_at(reader, where_file, where_line, NULL,
                             "@include \"%.200s\": the configuration with its included files is "
                             "larger than %d MiB",
                             written, CONFIG_FILE_MAXIMUM >> 20);
        else
            config_report_at(reader, where_file, where_line, NULL,
                             "the file is larger than %d MiB: is it the right file?",
                             CONFIG_FILE_MAXIMUM >> 20);
        return 0;
    }
    reader->scanned_bytes += length;
    struct scan scan = {
        .reader = reader,
        .include_directory = include_directory,
        .file = strdup(display),
        .text = text,
        .length = length,
        .depth = depth,
    };
    if (!scan.file) {
        free(text);
        return -ENOMEM;
    }
    rc = scan_text(&scan);
    free(scan.file);
    free(text);
    return rc;
}

int config_scan(struct config_reader *reader, const char *path, const char *include_directory)
{
    reader->scanned_bytes = 0;
    return scan_path(reader, reader->file, path, include_directory, 0, NULL, 0, NULL);
}

const struct config_literal_site *config_literal_fault(struct config_reader *reader,
                                                       const config_setting_t *member,
                                                       enum config_literal_fault fault)
{
    if (reader->literal_site_count == 0)
        return NULL;
    const char *name = config_setting_name(member);
    char *file = config_source_name(reader, config_setting_source_file(member));
    if (!file) {
        reader->out_of_memory = true;
        return NULL;
    }
    int line = config_setting_source_line(member);
    struct config_literal_site *found = NULL;
    for (size_t i = 0; i < reader->literal_site_count && !found; i++) {
        struct config_literal_site *site = &reader->literal_sites[i];
        if (site->fault == fault && site->line == line && strcmp(site->file, file) == 0 &&
            strcmp(site->name, name ? name : "") == 0)
            found = site;
    }
    free(file);
    if (found)
        found->reported = true;
    return found;
}

void config_literal_sites_finish(struct config_reader *reader, bool report)
{
    for (size_t i = 0; i < reader->literal_site_count; i++) {
        struct config_literal_site *site = &reader->literal_sites[i];
        const char *key = site->name[0] ? site->name : NULL;
        if (report && !site->reported && site->fault == CONFIG_LITERAL_NUL)
            config_report_at(reader, site->file, site->line, key,
                             "a quoted string here contains a NUL character (\\x00 or a zero "
                             "byte), which would silently cut its value short");
        else if (report && !site->reported)
            config_report_at(reader, site->file, site->line, key,
                             "the integer %s is out of range (at most %d, or %lld written with "
                             "an L suffix)",
                             site->text, INT32_MAX, (long long)INT64_MAX);
        free(site->file);
        free(site->name);
        free(site->text);
    }
    free(reader->literal_sites);
    reader->literal_sites = NULL;
    reader->literal_site_count = 0;
}
