/*
 * sha.h - the one SHA-256 implementation handle every part of the library
 * uses. OpenSSL 3 looks an algorithm up (under a global lock) each time a
 * digest starts unless it is given one fetched beforehand; this fetches it
 * once per process.
 */
#ifndef ACACHE_SHA_H
#define ACACHE_SHA_H

#include <openssl/evp.h>

/* The SHA-256 EVP_MD, fetched on first use; never freed. */
const EVP_MD *sha256_md(void);

#endif
