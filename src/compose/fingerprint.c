/*
 * fingerprint.c - engine fingerprints and the namespace wrapper.
 *
 * A fingerprint (name, version, target, CPU features, compiler flags, extra
 * parts) hashes to a 32-byte id. acache_namespace() wraps a store so that
 * every action id is mapped to SHA-256(domain || fingerprint || action)
 * before any backend sees it: an entry is reachable only through the
 * fingerprint it was stored under, with no change to any backend's record
 * format. The host-detection helpers (target, CPU features) are
 * conveniences; nothing here relies on them.
 *
 * This file must never let an id reach a backend unmapped through a
 * namespaced store, and never read anything but cpuid / the auxiliary
 * vector to describe the host.
 */
#include "compose/fingerprint.h"
#include "core/error.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

/* Fixed-length domain tags: with the other inputs of fixed length too,
 * concatenation is unambiguous. */
static const char ns_domain[] = "acache namespace v1";
static const char fp_domain[] = "acache fingerprint v1";

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

/* SHA-256 of data[0..len) with an algorithm fetched once per process. */
static bool sha256(const void *data, size_t len, uint8_t out[ACACHE_ID_SIZE])
{
    unsigned int mdlen = 0;
    pthread_once(&sha256_once, fetch_sha256);
    if (!sha256_md)
        return false;
    return EVP_Digest(data, len, out, &mdlen, sha256_md, NULL) && mdlen == ACACHE_ID_SIZE;
}

/* ------------------------------------------------------------------ */
/* Fingerprint ids                                                      */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lowercase names, sorted, repeats dropped, joined by commas: the one form
 * of a feature set. Returns a malloc'd string or NULL when out of memory. */
static char *canonical_features(const char *text)
{
    const char *seps = ", \t\n";
    size_t len = text ? strlen(text) : 0;
    char *copy = malloc(len + 1), *out = malloc(len + 1);
    char **names = calloc(len / 2 + 1, sizeof *names);
    size_t n = 0, pos = 0;
    char *save = NULL;
    if (!copy || !out || !names) {
        free(out);
        out = NULL;
        goto done;
    }
    for (size_t i = 0; i < len; i++)
        copy[i] = (char)tolower((unsigned char)text[i]);
    copy[len] = '\0';
    for (char *t = strtok_r(copy, seps, &save); t; t = strtok_r(NULL, seps, &save))
        names[n++] = t;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        size_t k = strlen(names[i]);
        if (pos)
            out[pos++] = ',';
        memcpy(out + pos, names[i], k);
        pos += k;
    }
    out[pos] = '\0';
done:
    free(names);
    free(copy);
    return out;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

acache_status acache_fingerprint_id(const acache_fingerprint *fp, acache_id *out)
{
    if (!fp || !out || (fp->nextra && !fp->extra))
        return set_error(ACACHE_EINVAL, "acache_fingerprint_id: NULL argument");
    char *features = canonical_features(fp->cpu_features);
    if (!features)
        return set_error(ACACHE_ENOMEM, "out of memory");
    size_t nparts = 5 + fp->nextra;
    acache_part *parts = calloc(nparts, sizeof *parts);
    acache_status st = ACACHE_OK;
    if (!parts) {
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto out;
    }
    const char *fields[5] = { or_empty(fp->name), or_empty(fp->version), or_empty(fp->target),
                              features, or_empty(fp->flags) };
    for (size_t i = 0; i < 5; i++)
        parts[i] = (acache_part){ fields[i], strlen(fields[i]) };
    for (size_t i = 0; i < fp->nextra; i++)
        parts[5 + i] = fp->extra[i];
    /* key_derive prefixes every part with its length, so no two different
     * fingerprints hash the same bytes. */
    st = acache_key_derive(out, fp_domain, parts, nparts);
out:
    free(parts);
    free(features);
    return st;
}

/* Appends up to 24 characters of s, file-name safe, and a '-'. */
static size_t append_field(char *out, size_t pos, const char *s)
{
    size_t n = 0;
    for (; s && s[n] && n < 24; n++) {
        unsigned char c = (unsigned char)s[n];
        out[pos++] = (isalnum(c) || c == '.' || c == '_' || c == '+') ? (char)c : '_';
    }
    if (n == 0)
        out[pos++] = '_';
    out[pos++] = '-';
    return pos;
}

acache_status acache_fingerprint_string(const acache_fingerprint *fp, char *out, size_t size)
{
    acache_id id;
    char hex[ACACHE_ID_HEX_SIZE];
    if (!out || size < ACACHE_FINGERPRINT_STRING_SIZE)
        return set_error(ACACHE_EINVAL, "acache_fingerprint_string: need %d bytes of room",
                         ACACHE_FINGERPRINT_STRING_SIZE);
    acache_status st = acache_fingerprint_id(fp, &id);
    if (st != ACACHE_OK)
        return st;
    acache_id_to_hex(&id, hex);
    size_t pos = 0; /* at most 3 * 25 + 16 + 1 < 128 */
    pos = append_field(out, pos, fp->name);
    pos = append_field(out, pos, fp->version);
    pos = append_field(out, pos, fp->target);
    memcpy(out + pos, hex, 16);
    out[pos + 16] = '\0';
    return ACACHE_OK;
}

acache_status acache_fingerprint_key(acache_id *out, const acache_id *fingerprint,
                                     const acache_part *parts, size_t nparts)
{
    char hex[ACACHE_ID_HEX_SIZE];
    if (!fingerprint)
        return set_error(ACACHE_EINVAL, "acache_fingerprint_key: NULL fingerprint");
    acache_id_to_hex(fingerprint, hex);
    return acache_key_derive(out, hex, parts, nparts);
}

/* ------------------------------------------------------------------ */
/* The host                                                             */

const char *acache_host_target(void)
{
#if defined(__x86_64__)
#define ACACHE_ARCH_ "x86_64"
#elif defined(__aarch64__)
#define ACACHE_ARCH_ "aarch64"
#elif defined(__i386__)
#define ACACHE_ARCH_ "i386"
#elif defined(__riscv) && __riscv_xlen == 64
#define ACACHE_ARCH_ "riscv64"
#elif defined(__arm__)
#define ACACHE_ARCH_ "arm"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ACACHE_ARCH_ "ppc64le"
#elif defined(__s390x__)
#define ACACHE_ARCH_ "s390x"
#else
#define ACACHE_ARCH_ "unknown"
#endif
#if defined(__linux__)
#define ACACHE_OS_ "linux"
#elif defined(__APPLE__)
#define ACACHE_OS_ "darwin"
#elif defined(__FreeBSD__)
#define ACACHE_OS_ "freebsd"
#else
#define ACACHE_OS_ "unknown"
#endif
    return ACACHE_ARCH_ "-" ACACHE_OS_;
}

typedef struct feature_bit {
    const char *name;
    unsigned reg;  /* which word of the table below */
    unsigned bit;
} feature_bit;

#if defined(__x86_64__) || defined(__i386__)
/* Words: 0 = leaf 1 ECX, 1 = leaf 1 EDX, 2 = leaf 7 EBX, 3 = leaf 7 ECX,
 * 4 = leaf 7 EDX, 5 = leaf 0x80000001 ECX. Sorted by name. */
enum { L1C, L1D, L7B, L7C, L7D, LX1C, NWORDS };
static const feature_bit x86_features[] = {
    { "adx", L7B, 19 },         { "aes", L1C, 25 },          { "avx", L1C, 28 },
    { "avx2", L7B, 5 },         { "avx512bitalg", L7C, 12 }, { "avx512bw", L7B, 30 },
    { "avx512cd", L7B, 28 },    { "avx512dq", L7B, 17 },     { "avx512f", L7B, 16 },
    { "avx512fp16", L7D, 23 },  { "avx512ifma", L7B, 21 },   { "avx512vbmi", L7C, 1 },
    { "avx512vbmi2", L7C, 6 },  { "avx512vl", L7B, 31 },     { "avx512vnni", L7C, 11 },
    { "avx512vpopcntdq", L7C, 14 }, { "bmi", L7B, 3 },       { "bmi2", L7B, 8 },
    { "cmov", L1D, 15 },        { "f16c", L1C, 29 },         { "fma", L1C, 12 },
    { "fma4", LX1C, 16 },       { "gfni", L7C, 8 },          { "lzcnt", LX1C, 5 },
    { "movbe", L1C, 22 },       { "pclmul", L1C, 1 },        { "popcnt", L1C, 23 },
    { "rdrnd", L1C, 30 },       { "rdseed", L7B, 18 },       { "sha", L7B, 29 },
    { "sse", L1D, 25 },         { "sse2", L1D, 26 },         { "sse3", L1C, 0 },
    { "sse4.1", L1C, 19 },      { "sse4.2", L1C, 20 },       { "sse4a", LX1C, 6 },
    { "ssse3", L1C, 9 },        { "vaes", L7C, 9 },          { "vpclmulqdq", L7C, 10 },
    { "xop", LX1C, 11 },
};

/* Whether the OS saves the registers a feature needs: 1 = YMM state
 * (AVX and everything VEX-encoded on 256 bits), 2 = ZMM state too. */
static int needs_state(const char *name)
{
    if (strncmp(name, "avx512", 6) == 0)
        return 2;
    static const char *const ymm[] = { "avx", "avx2", "f16c", "fma", "fma4", "vaes",
                                       "vpclmulqdq", "xop" };
    for (size_t i = 0; i < sizeof ymm / sizeof ymm[0]; i++)
        if (strcmp(name, ymm[i]) == 0)
            return 1;
    return 0;
}

static size_t host_features(const char **names, size_t max)
{
    unsigned words[NWORDS] = { 0 }, a = 0, b = 0, c = 0, d = 0;
    unsigned top = (unsigned)__get_cpuid_max(0, NULL);
    if (top >= 1 && __get_cpuid(1, &a, &b, &c, &d)) {
        words[L1C] = c;
        words[L1D] = d;
    }
    if (top >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        words[L7B] = b;
        words[L7C] = c;
        words[L7D] = d;
    }
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000001u &&
        __get_cpuid(0x80000001u, &a, &b, &c, &d))
        words[LX1C] = c;
    /* XCR0 says which register states the OS saves on a context switch:
     * without it, AVX code faults however capable the CPU is. */
    bool ymm = false, zmm = false;
    if (words[L1C] & (1u << 27)) { /* OSXSAVE */
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        ymm = (lo & 0x6) == 0x6;
        zmm = ymm && (lo & 0xe0) == 0xe0;
    }
    size_t n = 0;
    for (size_t i = 0; i < sizeof x86_features / sizeof x86_features[0] && n < max; i++) {
        const feature_bit *f = &x86_features[i];
        int need = needs_state(f->name);
        if (!(words[f->reg] & (1u << f->bit)) || (need == 1 && !ymm) || (need == 2 && !zmm))
            continue;
        names[n++] = f->name;
    }
    return n;
}
#elif defined(__aarch64__) && defined(__linux__)
/* Words: 0 = AT_HWCAP, 1 = AT_HWCAP2. Only bits this libc names. */
static const feature_bit arm_features[] = {
#ifdef HWCAP_AES
    { "aes", 0, 3 },
#endif
#ifdef HWCAP_ASIMD
    { "asimd", 0, 1 },
#endif
#ifdef HWCAP_ASIMDDP
    { "asimddp", 0, 20 },
#endif
#ifdef HWCAP_ASIMDFHM
    { "asimdfhm", 0, 23 },
#endif
#ifdef HWCAP_ASIMDHP
    { "asimdhp", 0, 10 },
#endif
#ifdef HWCAP_ASIMDRDM
    { "asimdrdm", 0, 12 },
#endif
#ifdef HWCAP_ATOMICS
    { "atomics", 0, 8 },
#endif
#ifdef HWCAP2_BF16
    { "bf16", 1, 14 },
#endif
#ifdef HWCAP_CRC32
    { "crc32", 0, 7 },
#endif
#ifdef HWCAP_DCPOP
    { "dcpop", 0, 16 },
#endif
#ifdef HWCAP_FCMA
    { "fcma", 0, 14 },
#endif
#ifdef HWCAP_FP
    { "fp", 0, 0 },
#endif
#ifdef HWCAP_FPHP
    { "fphp", 0, 9 },
#endif
#ifdef HWCAP2_I8MM
    { "i8mm", 1, 13 },
#endif
#ifdef HWCAP_JSCVT
    { "jscvt", 0, 13 },
#endif
#ifdef HWCAP_LRCPC
    { "lrcpc", 0, 15 },
#endif
#ifdef HWCAP_PACA
    { "paca", 0, 30 },
#endif
#ifdef HWCAP_PMULL
    { "pmull", 0, 4 },
#endif
#ifdef HWCAP_SHA1
    { "sha1", 0, 5 },
#endif
#ifdef HWCAP_SHA2
    { "sha2", 0, 6 },
#endif
#ifdef HWCAP_SHA3
    { "sha3", 0, 17 },
#endif
#ifdef HWCAP_SHA512
    { "sha512", 0, 21 },
#endif
#ifdef HWCAP_SVE
    { "sve", 0, 22 },
#endif
#ifdef HWCAP2_SVE2
    { "sve2", 1, 1 },
#endif
    { NULL, 0, 0 },
};

static size_t host_features(const char **names, size_t max)
{
    unsigned long words[2] = { getauxval(AT_HWCAP), 0 };
#ifdef AT_HWCAP2
    words[1] = getauxval(AT_HWCAP2);
#endif
    size_t n = 0;
    for (const feature_bit *f = arm_features; f->name && n < max; f++)
        if (words[f->reg] & (1ul << f->bit))
            names[n++] = f->name;
    return n;
}
#else
static size_t host_features(const char **names, size_t max)
{
    (void)names;
    (void)max;
    return 0;
}
#endif

acache_status acache_cpu_features(char *out, size_t size)
{
    const char *names[64];
    if (!out || size < ACACHE_CPU_FEATURES_SIZE)
        return set_error(ACACHE_EINVAL, "acache_cpu_features: need %d bytes of room",
                         ACACHE_CPU_FEATURES_SIZE);
    size_t n = host_features(names, sizeof names / sizeof names[0]), pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + pos, size - pos, "%s%s", pos ? "," : "", names[i]);
        if (w < 0 || (size_t)w >= size - pos)
            return set_error(ACACHE_EINVAL, "acache_cpu_features: list too long");
        pos += (size_t)w;
    }
    return ACACHE_OK;
}

/* ------------------------------------------------------------------ */
/* The namespace wrapper                                                */

typedef struct ns {
    acache_store *inner;
    acache_id fingerprint;
} ns;

static const backend_ops ns_ops;

static void ns_map(const ns *n, const acache_id *action, acache_id *out)
{
    uint8_t buf[sizeof ns_domain - 1 + 2 * ACACHE_ID_SIZE];
    memcpy(buf, ns_domain, sizeof ns_domain - 1);
    memcpy(buf + sizeof ns_domain - 1, n->fingerprint.bytes, ACACHE_ID_SIZE);
    memcpy(buf + sizeof ns_domain - 1 + ACACHE_ID_SIZE, action->bytes, ACACHE_ID_SIZE);
    if (!sha256(buf, sizeof buf, out->bytes)) {
        /* libcrypto without SHA-256 cannot have stored anything either;
         * an id that no real action maps to keeps the namespace closed. */
        memset(out->bytes, 0xff, ACACHE_ID_SIZE);
    }
}

void store_backend_id(const acache_store *store, const acache_id *action, acache_id *out)
{
    *out = *action;
    while (store->ops == &ns_ops) {
        const ns *n = store->self;
        ns_map(n, out, out);
        store = n->inner;
    }
}

static void ns_close(void *self)
{
    ns *n = self;
    acache_close(n->inner);
    free(n);
}

/* The inner backend is called directly, not through acache_get(), so that
 * a corrupt entry reaches the outer store layer, which counts it. */
static acache_status ns_get(void *self, const acache_id *action, unsigned flags,
                            acache_result *res)
{
    ns *n = self;
    acache_id mapped;
    ns_map(n, action, &mapped);
    return n->inner->ops->get(n->inner->self, &mapped, flags, res);
}

/* The inner backend's writer is handed out as it is: its own ops finish it. */
static acache_status ns_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    ns *n = self;
    acache_id mapped;
    ns_map(n, action, &mapped);
    return n->inner->ops->put_begin(n->inner->self, &mapped, out);
}

static acache_status ns_del(void *self, const acache_id *action)
{
    ns *n = self;
    acache_id mapped;
    ns_map(n, action, &mapped);
    return n->inner->ops->del(n->inner->self, &mapped);
}

static const char *ns_local_dir(void *self)
{
    ns *n = self;
    return n->inner->ops->local_dir ? n->inner->ops->local_dir(n->inner->self) : NULL;
}

/* Writers are always the inner backend's, so these are never called. */
static acache_status ns_put_write(backend_writer *w, const void *data, size_t len)
{
    return w->ops->put_write(w, data, len);
}

static acache_status ns_put_commit(backend_writer *w, const acache_id *output, uint64_t size,
                                   acache_result *res)
{
    return w->ops->put_commit(w, output, size, res);
}

static void ns_put_abort(backend_writer *w) { w->ops->put_abort(w); }

static const backend_ops ns_ops = {
    .name = "namespace",
    .close = ns_close,
    .get = ns_get,
    .put_begin = ns_put_begin,
    .put_write = ns_put_write,
    .put_commit = ns_put_commit,
    .put_abort = ns_put_abort,
    .del = ns_del,
    .local_dir = ns_local_dir,
};

acache_status acache_namespace(acache_store *store, const acache_id *fingerprint,
                               acache_store **out)
{
    if (!store || !fingerprint || !out) {
        acache_close(store);
        return set_error(ACACHE_EINVAL, "acache_namespace: NULL argument");
    }
    *out = NULL;
    ns *n = calloc(1, sizeof *n);
    if (!n) {
        acache_close(store);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    n->inner = store;
    n->fingerprint = *fingerprint;
    return store_wrap(&ns_ops, n, out);
}
