/*
 * config_report.c: where a setting came from and how a mistake is recorded
 * against it ("FILE:LINE: key: message"), for the files of the config
 * parser. The lowest layer of the parser: it calls none of the others, so
 * that the scanner, the value readers and the key readers can all report.
 */
#include "config/config_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends "FILE:LINE: [key: ]message"; takes ownership of file. */
static void mistake_add(struct config_reader *reader, char *file, int line, const char *key,
                        const char *message)
{
    if (reader->mistake_count == reader->mistake_capacity) {
        size_t capacity = reader->mistake_capacity ? 2 * reader->mistake_capacity : 16;
        struct config_mistake *grown =
            realloc(reader->mistakes, capacity * sizeof *reader->mistakes);
        if (!grown) {
            free(file);
            reader->out_of_memory = true;
            return;
        }
        reader->mistakes = grown;
        reader->mistake_capacity = capacity;
    }
    struct config_mistake *mistake = &reader->mistakes[reader->mistake_count];
    int written = key ? asprintf(&mistake->line, "%s:%d: %s: %s", file, line, key, message)
                      : asprintf(&mistake->line, "%s:%d: %s", file, line, message);
    if (written < 0) {
        free(file);
        reader->out_of_memory = true;
        return;
    }
    mistake->file = file;
    mistake->line_number = line;
    mistake->sequence = reader->mistake_count;
    reader->mistake_count++;
}

/* Formats one mistake at FILE:LINE; takes `file` (allocated) over. */
static void mistake_add_formatted(struct config_reader *reader, char *file, int line,
                                  const char *key, const char *format, va_list args)
{
    char message[768];
    vsnprintf(message, sizeof message, format, args);
    mistake_add(reader, file, line > 0 ? line : 1, key, message);
}

void config_report(struct config_reader *reader, const config_setting_t *where, const char *key,
                   const char *format, ...)
{
    char *file = config_source_name(reader, config_setting_source_file(where));
    if (!file) {
        reader->out_of_memory = true;
        return;
    }
    /* The root group has no line of its own (0): a key missing there is
     * reported at the top of the file. */
    va_list args;
    va_start(args, format);
    mistake_add_formatted(reader, file, config_setting_source_line(where), key, format, args);
    va_end(args);
}

void config_report_at(struct config_reader *reader, const char *file, int line, const char *key,
                      const char *format, ...)
{
    char *copy = strdup(file);
    if (!copy) {
        reader->out_of_memory = true;
        return;
    }
    va_list args;
    va_start(args, format);
    mistake_add_formatted(reader, copy, line, key, format, args);
    va_end(args);
}

char *config_source_name(const struct config_reader *reader, const char *file)
{
    if (!file || strcmp(file, reader->file) == 0)
        return strdup(reader->file);
    if (file[0] == '/' || !reader->directory || strcmp(reader->directory, ".") == 0)
        return strdup(file);
    char *name;
    return asprintf(&name, "%s/%s", reader->directory, file) < 0 ? NULL : name;
}

void config_origin_record(struct config_reader *reader, const config_setting_t *group,
                          const char *name, bool in_defaults, struct config_origin *origin)
{
    const config_setting_t *member = config_setting_get_member(group, name);
    if (!member)
        return;
    char *file = config_source_name(reader, config_setting_source_file(member));
    if (!file) {
        reader->out_of_memory = true;
        return;
    }
    free(origin->file);
    *origin = (struct config_origin){
        .file = file, .line = config_setting_source_line(member), .in_defaults = in_defaults};
}

int config_compare_locations(const char *file_a, int line_a, size_t sequence_a, const char *file_b,
                             int line_b, size_t sequence_b, const char *main_file)
{
    /* The main file first, then included files; each in line order. */
    int a_included = strcmp(file_a, main_file) != 0;
    int b_included = strcmp(file_b, main_file) != 0;
    if (a_included != b_included)
        return a_included - b_included;
    int by_file = strcmp(file_a, file_b);
    if (by_file != 0)
        return by_file;
    if (line_a != line_b)
        return line_a < line_b ? -1 : 1;
    return sequence_a < sequence_b ? -1 : sequence_a > sequence_b;
}
