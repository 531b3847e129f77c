/*
 * age_internal.h: what age.c, age_decrypt.c and age_keys.c share: the
 * format's constants and derivations, thin wrappers over OpenSSL's EVP, and
 * age's unpadded base64. Not part of the crypto layer's interface:
 * callers use age.h.
 */
#ifndef SQLPRODD_AGE_INTERNAL_H
#define SQLPRODD_AGE_INTERNAL_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "crypto/age.h"

#define AGE_VERSION_LINE   "age-encryption.org/v1"
#define AGE_VERSION_PREFIX "age-encryption.org/"
#define AGE_FILE_KEY_SIZE  16
#define AGE_NONCE_SIZE     16
#define AGE_MAC_SIZE       32
#define AGE_SEALED_CHUNK   (AGE_CHUNK_SIZE + AGE_TAG_SIZE)
#define AGE_X25519_INFO    "age-encryption.org/v1/X25519"

/* Section "Payload": the 12-byte nonce of chunk `index`. */
void age_chunk_nonce(uint64_t index, bool last, unsigned char nonce[12]);
/* Section "Header MAC": HMAC-SHA-256 keyed from the file key. */
int age_header_mac(const unsigned char file_key[AGE_FILE_KEY_SIZE], const unsigned char *header,
                   size_t size, unsigned char mac[AGE_MAC_SIZE], struct error *err);
/* Section "Payload": the payload key from the file key and nonce. */
int age_payload_key(const unsigned char file_key[AGE_FILE_KEY_SIZE],
                    const unsigned char nonce[AGE_NONCE_SIZE], unsigned char key[32],
                    struct error *err);

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
