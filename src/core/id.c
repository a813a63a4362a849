/*
 * id.c - 32-byte ids: hex and base64 forms, SHA-256 of bytes, and key
 * derivation. Hashing and base64 come from libcrypto; never hand-rolled.
 */
#include "acache.h"
#include "core/error.h"
#include "core/sha.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

void acache_id_to_hex(const acache_id *id, char out[ACACHE_ID_HEX_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < ACACHE_ID_SIZE; i++) {
        out[2 * i] = digits[id->bytes[i] >> 4];
        out[2 * i + 1] = digits[id->bytes[i] & 15];
    }
    out[2 * ACACHE_ID_SIZE] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

acache_status acache_id_from_hex(const char *text, size_t len, acache_id *out)
{
    if (!text || !out)
        return set_error(ACACHE_EINVAL, "id: NULL argument");
    if (len != 2 * ACACHE_ID_SIZE)
        return set_error(ACACHE_EINVAL, "id: want 64 hex digits, got %zu characters", len);
    for (size_t i = 0; i < ACACHE_ID_SIZE; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return set_error(ACACHE_EINVAL, "id: not a hex digit at position %zu",
                             hi < 0 ? 2 * i : 2 * i + 1);
        out->bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    return ACACHE_OK;
}

void acache_id_to_base64(const acache_id *id, char out[ACACHE_ID_BASE64_SIZE])
{
    EVP_EncodeBlock((unsigned char *)out, id->bytes, ACACHE_ID_SIZE);
}

acache_status acache_id_from_base64(const char *text, size_t len, acache_id *out)
{
    /* 32 bytes are always 44 characters with exactly one '=' of padding. */
    if (!text || !out)
        return set_error(ACACHE_EINVAL, "id: NULL argument");
    if (len != ACACHE_ID_BASE64_SIZE - 1 || text[len - 1] != '=' || text[len - 2] == '=')
        return set_error(ACACHE_EINVAL, "id: base64 text of %zu characters is not 32 bytes", len);
    unsigned char buf[48];
    int n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
    if (n != ACACHE_ID_SIZE + 1)
        return set_error(ACACHE_EINVAL, "id: invalid base64");
    memcpy(out->bytes, buf, ACACHE_ID_SIZE);
    return ACACHE_OK;
}

static const EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256)
        sha256 = EVP_sha256(); /* still correct, only slower */
}

const EVP_MD *sha256_md(void)
{
    pthread_once(&sha256_once, fetch_sha256);
    return sha256;
}

void acache_id_of_bytes(const void *data, size_t len, acache_id *out)
{
    unsigned int mdlen = 0;
    EVP_Digest(data, len, out->bytes, &mdlen, sha256_md(), NULL);
}

static int hash_part(EVP_MD_CTX *ctx, const void *data, size_t len)
{
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)len >> (8 * i));
    return EVP_DigestUpdate(ctx, prefix, sizeof prefix) && (len == 0 || EVP_DigestUpdate(ctx, data, len));
}

acache_status acache_key_derive(acache_id *out, const char *ns, const acache_part *parts,
                                size_t nparts)
{
    static const char domain[] = "acache key v1";
    acache_status st = ACACHE_OK;
    if (!out || !ns || (nparts && !parts))
        return set_error(ACACHE_EINVAL, "key derivation: NULL argument");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return set_error(ACACHE_ENOMEM, "key derivation: out of memory");
    int ok = EVP_DigestInit_ex(ctx, sha256_md(), NULL) &&
             hash_part(ctx, domain, sizeof domain - 1) && hash_part(ctx, ns, strlen(ns));
    for (size_t i = 0; ok && i < nparts; i++) {
        if (parts[i].len && !parts[i].data) {
            st = set_error(ACACHE_EINVAL, "key derivation: part %zu has no data", i);
            goto out;
        }
        ok = hash_part(ctx, parts[i].data, parts[i].len);
    }
    unsigned int mdlen = 0;
    if (!ok || !EVP_DigestFinal_ex(ctx, out->bytes, &mdlen) || mdlen != ACACHE_ID_SIZE)
        st = set_error(ACACHE_EIO, "key derivation: SHA-256 failed");
out:
    EVP_MD_CTX_free(ctx);
    return st;
}
