/*
 * bech32.h: the Bech32 text encoding of age keys (BIP 173, without its
 * 90-character limit, as age uses it: "age1..." and "AGE-SECRET-KEY-1...").
 *
 * Pure: bytes in, text out and back; no keys are interpreted here (age.c
 * decides what an HRP means). Not Bech32m, not segwit addresses.
 */
#ifndef SQLPRODD_BECH32_H
#define SQLPRODD_BECH32_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Characters bech32_encode writes for `hrp` and `size` bytes, with the NUL. */
size_t bech32_encoded_size(size_t hrp_length, size_t size);

/* Writes hrp "1" data checksum, lowercase, or uppercase when `upper` (age's
 * identities are uppercase). -ENOSPC when `out` is too small. */
int bech32_encode(char *out, size_t out_size, const char *hrp, const unsigned char *data,
                  size_t size, bool upper);

/*
 * Reads a Bech32 string: `hrp` receives the part before the last '1' in
 * lowercase, `data` the decoded bytes. The string must be all lowercase or
 * all uppercase, with a valid checksum and no leftover bits. -EINVAL with a
 * message saying which rule failed; -ENOSPC when hrp or data do not fit.
 */
int bech32_decode(const char *text, char *hrp, size_t hrp_size, unsigned char *data,
                  size_t data_size, size_t *size, struct error *err);

#endif
