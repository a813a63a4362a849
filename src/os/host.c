/*
 * host.c - what the machine is: its target ("x86_64-linux") and the CPU
 * features a compiler may rely on, from cpuid or the auxiliary vector.
 * The fingerprint helpers (compose/fingerprint.c) format them for users.
 * It must never read anything but cpuid / the auxiliary vector, and never
 * fail: an unknown machine has no features.
 */
#include "os/host.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

const char *os_host_target(void)
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

size_t os_host_features(const char **names, size_t max)
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

size_t os_host_features(const char **names, size_t max)
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
size_t os_host_features(const char **names, size_t max)
{
    (void)names;
    (void)max;
    return 0;
}
#endif
