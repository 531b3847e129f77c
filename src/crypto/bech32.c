/*
 * bech32.c: Bech32 (BIP 173) for age keys. The checksum is a BCH code over
 * 5-bit groups, not cryptography: it catches typing mistakes in a pasted key.
 */
#include "crypto/bech32.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

static const char bech32_charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t bech32_polymod_step(uint32_t checksum, unsigned value)
{
    static const uint32_t generator[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd,
                                          0x2a1462b3};
    uint32_t top = checksum >> 25;
    checksum = ((checksum & 0x1ffffff) << 5) ^ value;
    for (int i = 0; i < 5; i++)
        if ((top >> i) & 1)
            checksum ^= generator[i];
    return checksum;
}

/* The checksum state after the expanded HRP (high bits, 0, low bits). */
static uint32_t bech32_polymod_hrp(const char *hrp, size_t length)
{
    uint32_t checksum = 1;
    for (size_t i = 0; i < length; i++)
        checksum =
            bech32_polymod_step(checksum, (unsigned char)tolower((unsigned char)hrp[i]) >> 5);
    checksum = bech32_polymod_step(checksum, 0);
    for (size_t i = 0; i < length; i++)
        checksum =
            bech32_polymod_step(checksum, (unsigned char)tolower((unsigned char)hrp[i]) & 31);
    return checksum;
}

size_t bech32_encoded_size(size_t hrp_length, size_t size)
{
    return hrp_length + 1 + (size * 8 + 4) / 5 + 6 + 1;
}

int bech32_encode(char *out, size_t out_size, const char *hrp, const unsigned char *data,
                  size_t size, bool upper)
{
    size_t hrp_length = strlen(hrp);
    if (out_size < bech32_encoded_size(hrp_length, size))
        return -ENOSPC;
    size_t at = 0;
    for (size_t i = 0; i < hrp_length; i++)
        out[at++] = (char)tolower((unsigned char)hrp[i]);
    out[at++] = '1';
    uint32_t checksum = bech32_polymod_hrp(hrp, hrp_length);
    uint32_t accumulator = 0;
    int bits = 0;
    for (size_t i = 0; i < size; i++) {
        accumulator = (accumulator << 8) | data[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            unsigned group = (accumulator >> bits) & 31;
            checksum = bech32_polymod_step(checksum, group);
            out[at++] = bech32_charset[group];
        }
    }
    if (bits > 0) {
        unsigned group = (accumulator << (5 - bits)) & 31;
        checksum = bech32_polymod_step(checksum, group);
        out[at++] = bech32_charset[group];
    }
    for (int i = 0; i < 6; i++)
        checksum = bech32_polymod_step(checksum, 0);
    checksum ^= 1;
    for (int i = 0; i < 6; i++)
        out[at++] = bech32_charset[(checksum >> (5 * (5 - i))) & 31];
    out[at] = '\0';
    if (upper)
        for (size_t i = 0; i < at; i++)
            out[i] = (char)toupper((unsigned char)out[i]);
    return 0;
}

int bech32_decode(const char *text, char *hrp, size_t hrp_size, unsigned char *data,
                  size_t data_size, size_t *size, struct error *err)
{
    size_t length = strlen(text);
    bool has_lower = false, has_upper = false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 33 || c > 126)
            return error_set(err, -EINVAL, "character %zu is not printable ASCII", i + 1);
        has_lower |= islower(c) != 0;
        has_upper |= isupper(c) != 0;
    }
    if (has_lower && has_upper)
        return error_set(err, -EINVAL, "mixes upper and lower case");
    const char *separator = strrchr(text, '1');
    if (!separator || separator == text)
        return error_set(err, -EINVAL, "has no '1' separator after its prefix");
    size_t hrp_length = (size_t)(separator - text);
    size_t groups = length - hrp_length - 1;
    if (groups < 6)
        return error_set(err, -EINVAL, "is too short for its 6-character checksum");
    if (hrp_length + 1 > hrp_size)
        return -ENOSPC;
    for (size_t i = 0; i < hrp_length; i++)
        hrp[i] = (char)tolower((unsigned char)text[i]);
    hrp[hrp_length] = '\0';

    uint32_t checksum = bech32_polymod_hrp(text, hrp_length);
    uint32_t accumulator = 0;
    int bits = 0;
    size_t written = 0;
    for (size_t i = 0; i < groups; i++) {
        char c = (char)tolower((unsigned char)separator[1 + i]);
        const char *found = strchr(bech32_charset, c);
        if (!found || c == '\0')
            return error_set(err, -EINVAL, "'%c' is not a Bech32 character", separator[1 + i]);
        unsigned group = (unsigned)(found - bech32_charset);
        checksum = bech32_polymod_step(checksum, group);
        if (i >= groups - 6)
            continue; /* checksum groups carry no data */
        accumulator = (accumulator << 5) | group;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (written == data_size)
                return -ENOSPC;
            data[written++] = (unsigned char)(accumulator >> bits);
        }
    }
    if (checksum != 1)
        return error_set(err, -EINVAL, "has a wrong checksum (a mistyped or cut character)");
    if (bits >= 5 || (accumulator & ((1u << bits) - 1)) != 0)
        return error_set(err, -EINVAL, "has leftover bits after its data");
    *size = written;
    return 0;
}
