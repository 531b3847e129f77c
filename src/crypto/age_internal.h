/*
 * age_internal.h: thin wrappers over OpenSSL's EVP shared by age.c and
 * age_keys.c, and age's unpadded base64. Not part of the crypto layer's
 * interface: callers use age.h.
 */
#ifndef SQLPRODD_AGE_INTERNAL_H
#define SQLPRODD_AGE_INTERNAL_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* HKDF-SHA-256 (extract with salt, expand with info) to 32 bytes. */
int age_hkdf(const unsigned char *ikm, size_t ikm_size, const unsigned char *salt, size_t salt_size,
             const char *info, unsigned char out[32], struct error *err);

/* X25519(secret, basepoint). */
int age_x25519_public(const unsigned char secret[32], unsigned char public_key[32],
                      struct error *err);
/* X25519(secret, peer). -EDOM when the result is all zeros (a low-order
 * peer point), which age requires us to refuse. */
int age_x25519(const unsigned char secret[32], const unsigned char peer[32],
               unsigned char shared[32], struct error *err);

/*
 * ChaCha20-Poly1305 with a 32-byte key, 12-byte nonce and no AAD; `ctx` is
 * reused between calls (NULL: a temporary one). Seal writes size + 16 bytes;
 * open reads size bytes (>= 16) and writes size - 16, returning -EBADMSG
 * when the tag does not verify (out then holds nothing to use).
 */
int age_aead_seal(EVP_CIPHER_CTX *ctx, const unsigned char key[32], const unsigned char nonce[12],
                  const unsigned char *in, size_t size, unsigned char *out, struct error *err);
int age_aead_open(EVP_CIPHER_CTX *ctx, const unsigned char key[32], const unsigned char nonce[12],
                  const unsigned char *in, size_t size, unsigned char *out, struct error *err);

/* Unpadded standard base64 of `size` bytes; out needs age_base64_size + 1. */
size_t age_base64_size(size_t size);
void age_base64_encode(const unsigned char *in, size_t size, char *out);
/* Decodes `length` characters; false unless they are canonical unpadded
 * base64 (no '=', no other character, unused bits zero) that fits `out_size`. */
bool age_base64_decode(const char *in, size_t length, unsigned char *out, size_t out_size,
                       size_t *size);

#endif
