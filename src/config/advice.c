/*
 * advice.c: commands for the operator, quoted for sh(1); see advice.h.
 */
#include "config/advice.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What POSIX sh takes literally in an unquoted word (as Python's shlex.quote). */
static bool advice_is_plain(const char *word)
{
    if (!*word)
        return false;
    for (const char *c = word; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-", *c))
            return false;
    return true;
}

/* Appends text to out[*used]; false when it does not fit. */
static bool advice_append(char *out, size_t size, size_t *used, const char *text)
{
    size_t length = strlen(text);
    if (*used + length >= size)
        return false;
    memcpy(out + *used, text, length + 1);
    *used += length;
    return true;
}

static bool advice_has_control(const char *word)
{
    for (const unsigned char *c = (const unsigned char *)word; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return true;
    return false;
}

/* A word with a newline or another control character, on one line:
 * "$(printf 'a\012b')", which POSIX sh and printf(1) turn back into it.
 * Command substitution drops trailing newlines, so a word that ends in one
 * cannot be written this way: "" then. */
static bool advice_quote_with_printf(const char *word, char *out, size_t size, size_t *used)
{
    size_t length = strlen(word);
    if (length > 0 && word[length - 1] == '\n')
        return false;
    bool fits = advice_append(out, size, used, "\"$(printf '");
    for (const unsigned char *c = (const unsigned char *)word; fits && *c; c++) {
        char one[8];
        if (*c < 0x20 || *c == 0x7f)
            snprintf(one, sizeof one, "\\%03o", *c);
        else if (*c == '\'')
            snprintf(one, sizeof one, "'\\''");
        else if (*c == '\\')
            snprintf(one, sizeof one, "\\\\");
        else if (*c == '%')
            snprintf(one, sizeof one, "%%%%");
        else
            snprintf(one, sizeof one, "%c", *c);
        fits = advice_append(out, size, used, one);
    }
    return fits && advice_append(out, size, used, "')\"");
}

const char *advice_quote(const char *word, char *out, size_t size)
{
    size_t used = 0;
    bool fits = true;
    if (size == 0)
        return out;
    out[0] = '\0';
    if (advice_is_plain(word))
        fits = advice_append(out, size, &used, word);
    else if (advice_has_control(word))
        fits = advice_quote_with_printf(word, out, size, &used);
    else {
        fits = advice_append(out, size, &used, "'");
        for (const char *c = word; fits && *c; c++) {
            char one[2] = {*c, '\0'};
            fits = advice_append(out, size, &used, *c == '\'' ? "'\\''" : one);
        }
        fits = fits && advice_append(out, size, &used, "'");
    }
    if (!fits)
        out[0] = '\0';
    return out;
}

static const char *advice_join(char *out, size_t size, size_t used, const char *word, va_list words)
{
    char quoted[ADVICE_MAX];
    for (; word; word = va_arg(words, const char *)) {
        if (!*advice_quote(word, quoted, sizeof quoted) ||
            !advice_append(out, size, &used, used ? " " : "") ||
            !advice_append(out, size, &used, quoted)) {
            out[0] = '\0';
            break;
        }
    }
    return out;
}

const char *advice_command(char *out, size_t size, const char *word, ...)
{
    va_list words;
    if (size == 0)
        return out;
    out[0] = '\0';
    va_start(words, word);
    advice_join(out, size, 0, word, words);
    va_end(words);
    return out;
}

const char *advice_sqlprodd(char *out, size_t size, const struct config *config, const char *word,
                            ...)
{
    char absolute[PATH_MAX];
    size_t used = 0;
    va_list words;
    if (size == 0)
        return out;
    out[0] = '\0';
    if (!advice_append(out, size, &used, "sqlprodd"))
        return out;
    const char *file = config ? config->file : NULL;
    if (file && strcmp(file, CONFIG_DEFAULT_PATH) != 0) {
        char quoted[ADVICE_MAX];
        if (file[0] != '/' && realpath(file, absolute))
            file = absolute;
        if (!*advice_quote(file, quoted, sizeof quoted) ||
            !advice_append(out, size, &used, " -c ") || !advice_append(out, size, &used, quoted)) {
            out[0] = '\0';
            return out;
        }
    }
    va_start(words, word);
    advice_join(out, size, used, word, words);
    va_end(words);
    return out;
}
