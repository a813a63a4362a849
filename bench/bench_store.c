/*
 * bench_store.c - how fast acache's mem: and disk: stores are, next to the
 * plain system calls and libcrypto they are built on, measured in the same
 * run, on the same bytes, single-threaded on one pinned CPU.
 *
 * Measured through the public API (acache.h) only:
 *   - put, small (1 KiB, many distinct keys, every put a new entry with new
 *     bytes) and large (64 MiB, best of 3);
 *   - get-hit with flags 0 (disk: the path, the lookup the GOCACHEPROG
 *     server does; mem: the metadata) and with ACACHE_GET_DATA (disk: a
 *     read-only mapping; mem: a shared reference), the first byte touched;
 *   - baselines: open/write/close/rename of a temp file into a sharded
 *     directory (the least a disk put must do), SHA-256 (libcrypto EVP, one
 *     reused context), SHA-256 + write + rename (the floor of a disk put:
 *     objects are named by their hash), memcpy, SHA-256 + memcpy (the floor
 *     of a mem put), open/read/close and stat of a file.
 * Small ops loop over their keys for a time budget, timed in chunks of
 * n/10 ops: "time/op" is the best chunk (the machine's speed without
 * interference from other processes), "(mean)" is everything. Large ops run
 * round-robin, one untimed warm-up round then 3 timed: the best counts.
 * It prints one table (time per op, ops/s, throughput, ratio to the named
 * baseline) and then target lines with PASS/MISS verdicts.
 *
 * It must never assert a timing: verdicts are only reported, and the exit
 * status is 0 whenever the benchmark ran (1 only when it could not run at
 * all, e.g. a store failed to open or a hit came back as a miss). It never
 * removes anything it did not create: the disk store and the baseline files
 * live in a fresh directory (under --dir, $TMPDIR or /tmp) removed at exit.
 * The page cache is warm throughout; these are not cold-disk numbers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, nftw */
#endif
#include "acache.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define SMALL_SIZE 1024
#define LARGE_SIZE (64u << 20)
#define MAX_ROWS 48
#define MAX_LARGE_REPS 7
/* Small passes are timed in this many chunks: the best chunk is the
 * machine's speed without interference, the mean includes everything. */
#define CHUNKS 10
/* Longest directory we make; files under it always fit in PATH_MAX. */
#define DIR_MAX 1024

/* Targets (reported, never enforced). */
#define TARGET_DISK_GET_PER_S 200000.0
#define TARGET_MEM_GET_PER_S 5000000.0
#define TARGET_LARGE_PUT_RATIO 1.3

/* Time per op: the best chunk (or rep) and the mean over all of them. */
typedef struct timing {
    double best_ns;
    double mean_ns;
} timing;

/* One line of the result table. */
typedef struct row {
    const char *section;      /* "1 KiB" or "64 MiB" group heading */
    const char *op;           /* what was timed */
    const char *store;        /* "mem", "disk", or "plain" for a baseline */
    size_t size;              /* bytes per op */
    timing t;
    bool touches;             /* moves all the bytes: throughput means something */
    const struct row *base;   /* baseline it is compared with, or NULL */
} row;

/* A get loop: gets of keys[i] (or of keys[0] every time, if one). */
typedef struct get_job {
    acache_store *store;
    unsigned flags;
    const acache_id *keys;
    bool one;
} get_job;

typedef struct bench {
    /* how long to run */
    bool quick;
    size_t n;                 /* small entries per pass, a multiple of CHUNKS */
    int put_passes;           /* most timed put passes (each has new keys) */
    double put_budget_s;      /* stop timing puts after this long */
    double get_budget_s;      /* stop timing gets (and baselines) after this long */
    int large_reps;           /* timed reps of each large op, after a warm-up */
    /* where */
    char root[DIR_MAX];       /* our directory; removed at exit */
    char plain[DIR_MAX + 8];  /* root/plain: the baselines' files */
    /* what */
    acache_store *mem, *mem_large, *disk;
    acache_id *keys;          /* (put_passes + 1) x n; pass 0 is the get set */
    acache_id large_keys[2][MAX_LARGE_REPS + 1]; /* [mem, disk][round] */
    unsigned char small[SMALL_SIZE];
    unsigned char small_out[SMALL_SIZE];
    unsigned char *big, *big_out;
    uint64_t tmp_counter;
    EVP_MD_CTX *sha;
    EVP_MD *sha_md;
    acache_store *put_store;  /* for pass_put */
    get_job job;              /* for pass_get */
    /* results */
    row rows[MAX_ROWS];
    size_t nrows;
} bench;

/* Keeps the compiler from dropping work whose result is otherwise unused. */
static volatile uint64_t sink;
/* Called through a volatile pointer so that a copy is never elided. */
static void *(*volatile memcpy_fn)(void *, const void *, size_t) = memcpy;

static char cleanup_dir[DIR_MAX];

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_store: %s\n", what);
    exit(1);
}

static void die_errno(const char *what, const char *path)
{
    fprintf(stderr, "bench_store: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void must(acache_status st, const char *what)
{
    if (st == ACACHE_OK)
        return;
    fprintf(stderr, "bench_store: %s: %s: %s\n", what, acache_status_str(st),
            acache_last_error());
    exit(1);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "bench_store: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void remove_our_dir(void)
{
    if (cleanup_dir[0])
        nftw(cleanup_dir, remove_one, 32, FTW_DEPTH | FTW_PHYS);
    cleanup_dir[0] = '\0';
}

static void sha256(bench *b, const void *data, size_t len, acache_id *out)
{
    unsigned int mdlen = 0;
    if (!EVP_DigestInit_ex(b->sha, b->sha_md, NULL) || !EVP_DigestUpdate(b->sha, data, len) ||
        !EVP_DigestFinal_ex(b->sha, out->bytes, &mdlen) || mdlen != ACACHE_ID_SIZE)
        die("SHA-256 failed");
}

/* Makes bytes that hash differently for every (a, c) without rewriting them. */
static void stamp(unsigned char *buf, uint64_t a, uint64_t c)
{
    memcpy(buf, &a, sizeof a);
    memcpy(buf + sizeof a, &c, sizeof c);
}

static void fill_random(unsigned char *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        memcpy(buf + i, &v, 8);
    }
}

static acache_id make_key(bench *b, uint64_t kind, uint64_t a, uint64_t c)
{
    uint64_t in[4] = { 0x6163616368652d62ull, kind, a, c };
    acache_id id;
    sha256(b, in, sizeof in, &id);
    return id;
}

/* DIR/XX/<hex of id>, built as the disk store builds its paths. */
static void shard_path(char *out, const char *dir, const acache_id *id)
{
    char hex[ACACHE_ID_HEX_SIZE];
    size_t len = strlen(dir);
    acache_id_to_hex(id, hex);
    memcpy(out, dir, len);
    out[len] = '/';
    out[len + 1] = hex[0];
    out[len + 2] = hex[1];
    out[len + 3] = '/';
    memcpy(out + len + 4, hex, ACACHE_ID_HEX_SIZE);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        die_errno("cannot create", path);
}

static void write_all(int fd, const void *data, size_t len, const char *path)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die_errno("cannot write", path);
        p += n;
        len -= (size_t)n;
    }
}

/* The plain way to publish a file: temp file, write, close, rename. */
static void plain_write_rename(bench *b, const void *data, size_t len, const char *dst)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/tmp/t%" PRIu64, b->plain, b->tmp_counter++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        die_errno("cannot create", tmp);
    write_all(fd, data, len, tmp);
    if (close(fd) != 0)
        die_errno("cannot close", tmp);
    if (rename(tmp, dst) != 0)
        die_errno("cannot rename to", dst);
}

/* Reads a whole file into buf (at most cap bytes) the plain way. */
static size_t plain_read(const char *path, unsigned char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno("cannot open", path);
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die_errno("cannot read", path);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return got;
}

static row *add_row(bench *b, const char *section, const char *op, const char *store,
                    size_t size, timing t, bool touches, const row *base)
{
    if (b->nrows == MAX_ROWS)
        die("too many rows");
    row *r = &b->rows[b->nrows++];
    *r = (row){ section, op, store, size, t, touches, base };
    fprintf(stderr, "  %-6s %-5s %-30s best %12.1f ns/op, mean %12.1f ns/op\n", section, store,
            op, t.best_ns, t.mean_ns);
    return r;
}

/* ------------------------------------------------------------------ */
/* Small ops: a pass is b->n ops over distinct keys, timed in CHUNKS    */
/* chunks; pass 0 is the untimed warm-up (for puts: the get set).      */

typedef void (*pass_fn)(bench *b, int pass, size_t lo, size_t hi);

/* Times passes first, first+1, ... chunk by chunk until budget_s has been
 * spent (or max_passes ran). */
static timing run_passes(bench *b, pass_fn fn, int first, int max_passes, double budget_s)
{
    const size_t chunk = b->n / CHUNKS;
    int64_t spent = 0, best = INT64_MAX;
    uint64_t ops = 0;
    for (int p = first; p < first + max_passes && (double)spent < budget_s * 1e9; p++) {
        for (size_t lo = 0; lo < b->n && (double)spent < budget_s * 1e9; lo += chunk) {
            int64_t t0 = now_ns();
            fn(b, p, lo, lo + chunk);
            int64_t t = now_ns() - t0;
            spent += t;
            ops += chunk;
            if (t < best)
                best = t;
        }
    }
    return (timing){ (double)best / (double)chunk, (double)spent / (double)ops };
}

/* Gets and read-only baselines: one untimed pass, then loop for the budget. */
static timing run_loop(bench *b, pass_fn fn)
{
    fn(b, 0, 0, b->n);
    return run_passes(b, fn, 0, INT_MAX, b->get_budget_s);
}

/* Puts: pass 0 (untimed) stores the entries later passes' gets look up;
 * every timed pass stores new keys with new bytes. */
static timing run_puts(bench *b, pass_fn fn)
{
    fn(b, 0, 0, b->n);
    return run_passes(b, fn, 1, b->put_passes, b->put_budget_s);
}

static const acache_id *key(bench *b, int pass, size_t i)
{
    return &b->keys[(size_t)pass * b->n + i];
}

static void pass_put(bench *b, int pass, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        stamp(b->small, (uint64_t)pass, i);
        must(acache_put(b->put_store, key(b, pass, i), b->small, SMALL_SIZE, NULL), "put");
    }
}

static void pass_get(bench *b, int pass, size_t lo, size_t hi)
{
    (void)pass;
    const get_job *g = &b->job;
    acache_result res;
    for (size_t i = lo; i < hi; i++) {
        const acache_id *k = g->one ? &g->keys[0] : &g->keys[i];
        acache_status st = acache_get(g->store, k, g->flags, &res);
        if (st != ACACHE_OK)
            must(st == ACACHE_MISS ? ACACHE_EIO : st, "get of a stored entry missed");
        if (res.data)
            sink += *(const unsigned char *)res.data;
        sink += res.size;
        acache_result_release(&res);
    }
}

static void pass_plain_write_rename(bench *b, int pass, size_t lo, size_t hi)
{
    char dst[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/w", b->plain);
    for (size_t i = lo; i < hi; i++) {
        stamp(b->small, (uint64_t)pass, i);
        shard_path(dst, dir, key(b, pass, i));
        plain_write_rename(b, b->small, SMALL_SIZE, dst);
    }
}

static void pass_plain_sha_write_rename(bench *b, int pass, size_t lo, size_t hi)
{
    char dst[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/o", b->plain);
    for (size_t i = lo; i < hi; i++) {
        acache_id out;
        stamp(b->small, (uint64_t)pass, i);
        sha256(b, b->small, SMALL_SIZE, &out);
        shard_path(dst, dir, &out);
        plain_write_rename(b, b->small, SMALL_SIZE, dst);
    }
}

/* Reads the files pass 0 of pass_plain_write_rename wrote. */
static void pass_plain_read(bench *b, int pass, size_t lo, size_t hi)
{
    (void)pass;
    char path[PATH_MAX], dir[PATH_MAX];
    unsigned char buf[4096];
    snprintf(dir, sizeof dir, "%s/w", b->plain);
    for (size_t i = lo; i < hi; i++) {
        shard_path(path, dir, key(b, 0, i));
        sink += plain_read(path, buf, sizeof buf);
    }
}

static void pass_plain_stat(bench *b, int pass, size_t lo, size_t hi)
{
    (void)pass;
    char path[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/w", b->plain);
    for (size_t i = lo; i < hi; i++) {
        struct stat st;
        shard_path(path, dir, key(b, 0, i));
        if (stat(path, &st) != 0)
            die_errno("cannot stat", path);
        sink += (uint64_t)st.st_size;
    }
}

static void pass_memcpy(bench *b, int pass, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        stamp(b->small, (uint64_t)pass, i);
        memcpy_fn(b->small_out, b->small, SMALL_SIZE);
    }
    sink += b->small_out[SMALL_SIZE - 1];
}

static void pass_sha(bench *b, int pass, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        acache_id out;
        stamp(b->small, (uint64_t)pass, i);
        sha256(b, b->small, SMALL_SIZE, &out);
        sink += out.bytes[0];
    }
}

static void pass_sha_memcpy(bench *b, int pass, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        acache_id out;
        stamp(b->small, (uint64_t)pass, i);
        sha256(b, b->small, SMALL_SIZE, &out);
        memcpy_fn(b->small_out, b->small, SMALL_SIZE);
        sink += out.bytes[0];
    }
}

/* Rows the targets are judged on. */
typedef struct results {
    const row *disk_get, *mem_get, *mem_get_data, *large_disk_put, *large_floor;
} results;

static void bench_small(bench *b, results *out)
{
    const char *sec = "1 KiB";
    fprintf(stderr, "small: %zu entries per pass, %d chunks per pass\n", b->n, CHUNKS);

    /* Baselines. Pass 0 of write+rename leaves the files read and stat use. */
    row *wr = add_row(b, sec, "write+rename", "plain", SMALL_SIZE,
                      run_puts(b, pass_plain_write_rename), true, NULL);
    row *swr = add_row(b, sec, "sha256+write+rename", "plain", SMALL_SIZE,
                       run_puts(b, pass_plain_sha_write_rename), true, wr);
    row *rd = add_row(b, sec, "open+read+close", "plain", SMALL_SIZE,
                      run_loop(b, pass_plain_read), true, NULL);
    add_row(b, sec, "stat", "plain", SMALL_SIZE, run_loop(b, pass_plain_stat), false, rd);
    row *mc = add_row(b, sec, "memcpy", "plain", SMALL_SIZE, run_loop(b, pass_memcpy), true, NULL);
    add_row(b, sec, "sha256", "plain", SMALL_SIZE, run_loop(b, pass_sha), true, NULL);
    row *smc = add_row(b, sec, "sha256+memcpy", "plain", SMALL_SIZE,
                       run_loop(b, pass_sha_memcpy), true, NULL);

    b->put_store = b->mem;
    add_row(b, sec, "put", "mem", SMALL_SIZE, run_puts(b, pass_put), true, smc);
    b->job = (get_job){ b->mem, 0, key(b, 0, 0), false };
    out->mem_get = add_row(b, sec, "get-hit", "mem", SMALL_SIZE, run_loop(b, pass_get), false, mc);
    b->job.flags = ACACHE_GET_DATA;
    out->mem_get_data = add_row(b, sec, "get-hit data (ref)", "mem", SMALL_SIZE,
                                run_loop(b, pass_get), false, mc);

    b->put_store = b->disk;
    add_row(b, sec, "put", "disk", SMALL_SIZE, run_puts(b, pass_put), true, swr);
    b->job = (get_job){ b->disk, 0, key(b, 0, 0), false };
    out->disk_get = add_row(b, sec, "get-hit path", "disk", SMALL_SIZE,
                            run_loop(b, pass_get), false, rd);
    b->job.flags = ACACHE_GET_DATA;
    add_row(b, sec, "get-hit data (mmap)", "disk", SMALL_SIZE, run_loop(b, pass_get), false, rd);
}

/* ------------------------------------------------------------------ */
/* Large ops: one call is one timed op. Round 0 warms up (untimed), then */
/* every op runs once per round, round-robin, so that baselines and the  */
/* store see the same machine state (page cache, memory, other load).    */

typedef int64_t (*rep_fn)(bench *b, int round);

static void unlink_or_die(const char *path)
{
    if (unlink(path) != 0)
        die_errno("cannot remove", path);
}

static int64_t large_write_rename(bench *b, int round)
{
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/w/large-%d", b->plain, round);
    stamp(b->big, 1, (uint64_t)round);
    int64_t t0 = now_ns();
    plain_write_rename(b, b->big, LARGE_SIZE, dst);
    int64_t t = now_ns() - t0;
    unlink_or_die(dst);
    return t;
}

static int64_t large_sha_write_rename(bench *b, int round)
{
    char dst[PATH_MAX], dir[PATH_MAX];
    acache_id out;
    snprintf(dir, sizeof dir, "%s/o", b->plain);
    stamp(b->big, 2, (uint64_t)round);
    int64_t t0 = now_ns();
    sha256(b, b->big, LARGE_SIZE, &out);
    shard_path(dst, dir, &out);
    plain_write_rename(b, b->big, LARGE_SIZE, dst);
    int64_t t = now_ns() - t0;
    unlink_or_die(dst);
    return t;
}

static int64_t large_sha(bench *b, int round)
{
    acache_id out;
    stamp(b->big, 3, (uint64_t)round);
    int64_t t0 = now_ns();
    sha256(b, b->big, LARGE_SIZE, &out);
    int64_t t = now_ns() - t0;
    sink += out.bytes[0];
    return t;
}

static int64_t large_memcpy(bench *b, int round)
{
    stamp(b->big, 4, (uint64_t)round);
    int64_t t0 = now_ns();
    memcpy_fn(b->big_out, b->big, LARGE_SIZE);
    int64_t t = now_ns() - t0;
    sink += b->big_out[LARGE_SIZE - 1];
    return t;
}

static int64_t large_sha_memcpy(bench *b, int round)
{
    acache_id out;
    stamp(b->big, 5, (uint64_t)round);
    int64_t t0 = now_ns();
    sha256(b, b->big, LARGE_SIZE, &out);
    memcpy_fn(b->big_out, b->big, LARGE_SIZE);
    int64_t t = now_ns() - t0;
    sink += out.bytes[0] + b->big_out[0];
    return t;
}

/* Reads the file bench_large wrote before the rounds. */
static int64_t large_read(bench *b, int round)
{
    (void)round;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/big", b->plain);
    int64_t t0 = now_ns();
    size_t got = plain_read(path, b->big_out, LARGE_SIZE);
    int64_t t = now_ns() - t0;
    if (got != LARGE_SIZE)
        die("short read of the large baseline file");
    return t;
}

/* Puts under a new key with new bytes. Every round's entry but the last is
 * removed afterwards (untimed), as the baselines remove their files. */
static int64_t large_put(bench *b, int round, int which, acache_store *store)
{
    const acache_id *k = &b->large_keys[which][round];
    stamp(b->big, 10 + (uint64_t)which, (uint64_t)round);
    int64_t t0 = now_ns();
    must(acache_put(store, k, b->big, LARGE_SIZE, NULL), "large put");
    int64_t t = now_ns() - t0;
    if (round < b->large_reps) {
        acache_result res;
        must(acache_get(store, k, 0, &res), "get after large put");
        if (res.path[0])
            unlink_or_die(res.path);
        must(acache_delete(store, k), "delete after large put");
    }
    return t;
}

static int64_t large_put_mem(bench *b, int round) { return large_put(b, round, 0, b->mem_large); }
static int64_t large_put_disk(bench *b, int round) { return large_put(b, round, 1, b->disk); }

/* A mapped get whose every byte is then read, as a runtime loading a
 * compiled module would. */
static int64_t large_get_mapped_read_all(bench *b, int round)
{
    (void)round;
    acache_result res;
    uint64_t x = 0;
    int64_t t0 = now_ns();
    must(acache_get(b->disk, &b->large_keys[1][b->large_reps], ACACHE_GET_DATA, &res),
         "large get");
    const uint64_t *w = res.data; /* page-aligned mapping */
    for (size_t i = 0; i < res.size / sizeof *w; i++)
        x ^= w[i];
    acache_result_release(&res);
    int64_t t = now_ns() - t0;
    sink += x;
    return t;
}

/* Runs every op of fns once per round (round 0 untimed) into out[]. */
static void run_rounds(bench *b, const rep_fn *fns, size_t nfns, timing *out)
{
    int64_t best[16], sum[16] = { 0 };
    for (size_t i = 0; i < nfns; i++)
        best[i] = INT64_MAX;
    for (int round = 0; round <= b->large_reps; round++) {
        for (size_t i = 0; i < nfns; i++) {
            int64_t t = fns[i](b, round);
            if (round == 0)
                continue;
            sum[i] += t;
            if (t < best[i])
                best[i] = t;
        }
    }
    for (size_t i = 0; i < nfns; i++)
        out[i] = (timing){ (double)best[i], (double)sum[i] / b->large_reps };
}

static void bench_large(bench *b, results *out)
{
    const char *sec = "64 MiB";
    enum { WR, SWR, RD, MC, SHA, SMC, PUT_MEM, PUT_DISK, NOPS };
    static const rep_fn fns[NOPS] = {
        [WR] = large_write_rename, [SWR] = large_sha_write_rename, [RD] = large_read,
        [MC] = large_memcpy, [SHA] = large_sha, [SMC] = large_sha_memcpy,
        [PUT_MEM] = large_put_mem, [PUT_DISK] = large_put_disk,
    };
    timing t[NOPS];
    fprintf(stderr, "large: %u MiB, 1 warm-up round + %d timed, round-robin\n", LARGE_SIZE >> 20,
            b->large_reps);

    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/big", b->plain);
    stamp(b->big, 6, 0);
    plain_write_rename(b, b->big, LARGE_SIZE, path);
    run_rounds(b, fns, NOPS, t);

    row *wr = add_row(b, sec, "write+rename", "plain", LARGE_SIZE, t[WR], true, NULL);
    row *swr = add_row(b, sec, "sha256+write+rename", "plain", LARGE_SIZE, t[SWR], true, wr);
    row *rd = add_row(b, sec, "open+read+close", "plain", LARGE_SIZE, t[RD], true, NULL);
    row *mc = add_row(b, sec, "memcpy", "plain", LARGE_SIZE, t[MC], true, NULL);
    add_row(b, sec, "sha256", "plain", LARGE_SIZE, t[SHA], true, NULL);
    row *smc = add_row(b, sec, "sha256+memcpy", "plain", LARGE_SIZE, t[SMC], true, NULL);

    add_row(b, sec, "put", "mem", LARGE_SIZE, t[PUT_MEM], true, smc);
    /* Gets of a large entry do not touch its bytes: loop them like small ones. */
    b->job = (get_job){ b->mem_large, 0, &b->large_keys[0][b->large_reps], true };
    add_row(b, sec, "get-hit", "mem", LARGE_SIZE, run_loop(b, pass_get), false, mc);
    b->job.flags = ACACHE_GET_DATA;
    add_row(b, sec, "get-hit data (ref)", "mem", LARGE_SIZE, run_loop(b, pass_get), false, mc);

    out->large_disk_put = add_row(b, sec, "put", "disk", LARGE_SIZE, t[PUT_DISK], true, swr);
    out->large_floor = swr;
    b->job = (get_job){ b->disk, 0, &b->large_keys[1][b->large_reps], true };
    add_row(b, sec, "get-hit path", "disk", LARGE_SIZE, run_loop(b, pass_get), false, rd);
    b->job.flags = ACACHE_GET_DATA;
    add_row(b, sec, "get-hit data (mmap)", "disk", LARGE_SIZE, run_loop(b, pass_get), false, rd);
    const rep_fn read_all = large_get_mapped_read_all;
    timing ra;
    run_rounds(b, &read_all, 1, &ra);
    add_row(b, sec, "get-hit data (mmap) + read all", "disk", LARGE_SIZE, ra, true, rd);
}

/* ------------------------------------------------------------------ */
/* Report                                                              */

static const char *fmt_time(double ns, char *buf, size_t len)
{
    if (ns < 1e3)
        snprintf(buf, len, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, len, "%.2f us", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, len, "%.2f ms", ns / 1e6);
    else
        snprintf(buf, len, "%.2f s", ns / 1e9);
    return buf;
}

static const char *fmt_rate(double per_s, char *buf, size_t len)
{
    if (per_s >= 1e6)
        snprintf(buf, len, "%.2f M/s", per_s / 1e6);
    else if (per_s >= 1e3)
        snprintf(buf, len, "%.1f k/s", per_s / 1e3);
    else
        snprintf(buf, len, "%.1f /s", per_s);
    return buf;
}

static const char *fmt_bytes_per_s(double bps, char *buf, size_t len)
{
    if (bps >= 1e9)
        snprintf(buf, len, "%.2f GB/s", bps / 1e9);
    else
        snprintf(buf, len, "%.0f MB/s", bps / 1e6);
    return buf;
}

static void print_table(const bench *b)
{
    char t[32], m[32], r[32], bw[32], ratio[80];
    const char *section = "";
    printf("%-31s %-5s %10s %11s %11s %10s  %s\n", "operation", "store", "time/op", "(mean)",
           "ops/s", "throughput", "vs baseline (time ratio)");
    for (size_t i = 0; i < b->nrows; i++) {
        const row *w = &b->rows[i];
        if (strcmp(section, w->section) != 0) {
            section = w->section;
            if (strcmp(section, "1 KiB") == 0)
                printf("-- 1 KiB, %zu distinct keys: best chunk of %zu ops (mean over %.1f s)\n",
                       b->n, b->n / CHUNKS, b->get_budget_s);
            else
                printf("-- %s: best of %d rep%s (mean); gets looped like small ones\n", section,
                       b->large_reps, b->large_reps == 1 ? "" : "s");
        }
        if (w->touches)
            fmt_bytes_per_s((double)w->size / w->t.best_ns * 1e9, bw, sizeof bw);
        else
            snprintf(bw, sizeof bw, "-");
        double q = w->base ? w->t.best_ns / w->base->t.best_ns : 0;
        if (!w->base)
            snprintf(ratio, sizeof ratio, "-");
        else if (q >= 0.01)
            snprintf(ratio, sizeof ratio, "%6.2fx %s", q, w->base->op);
        else
            snprintf(ratio, sizeof ratio, "%.0ex %s", q, w->base->op);
        char mean[40];
        snprintf(mean, sizeof mean, "(%s)", fmt_time(w->t.mean_ns, m, sizeof m));
        printf("%-31s %-5s %10s %11s %11s %10s  %s\n", w->op, w->store,
               fmt_time(w->t.best_ns, t, sizeof t), mean,
               fmt_rate(1e9 / w->t.best_ns, r, sizeof r), bw, ratio);
    }
}

static void print_targets(const results *res)
{
    char a[32], c[32], d[32];
    double disk = 1e9 / res->disk_get->t.best_ns, mem = 1e9 / res->mem_get->t.best_ns;
    double ratio = res->large_disk_put->t.best_ns / res->large_floor->t.best_ns;
    printf("\ntargets (on the best times; reported, never enforced):\n");
    printf("  %-4s disk get-hit (path), 1 KiB: %s, target >= %.0f k/s (mean: %s)\n",
           disk >= TARGET_DISK_GET_PER_S ? "PASS" : "MISS", fmt_rate(disk, a, sizeof a),
           TARGET_DISK_GET_PER_S / 1e3, fmt_rate(1e9 / res->disk_get->t.mean_ns, c, sizeof c));
    printf("  %-4s mem get-hit, 1 KiB: %s, target >= %.0f M/s (with ACACHE_GET_DATA: %s)\n",
           mem >= TARGET_MEM_GET_PER_S ? "PASS" : "MISS", fmt_rate(mem, a, sizeof a),
           TARGET_MEM_GET_PER_S / 1e6, fmt_rate(1e9 / res->mem_get_data->t.best_ns, c, sizeof c));
    printf("  %-4s disk put, 64 MiB: %s = %.2fx sha256+write+rename (%s), target <= %.1fx\n",
           ratio <= TARGET_LARGE_PUT_RATIO ? "PASS" : "MISS",
           fmt_time(res->large_disk_put->t.best_ns, a, sizeof a), ratio,
           fmt_time(res->large_floor->t.best_ns, d, sizeof d), TARGET_LARGE_PUT_RATIO);
}

static const char *fs_name(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) != 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0x6969: return "nfs";
    default: return "other";
    }
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_store [--quick] [--dir DIR]\n"
               "  --quick    shorter runs (CI smoke): fewer keys, shorter loops, 1 large rep\n"
               "  --dir DIR  put the disk store in a fresh subdirectory of DIR\n"
               "             (default $TMPDIR, else /tmp); it is removed at the end\n");
}

static void setup(bench *b, const char *parent)
{
    char path[PATH_MAX];
    if (strlen(parent) + 64 > DIR_MAX)
        die("--dir: path too long");
    snprintf(b->root, sizeof b->root, "%s/acache-bench-XXXXXX", parent);
    if (strchr(b->root, '?'))
        die("--dir must not contain '?' (it would be read as store options)");
    if (!mkdtemp(b->root))
        die_errno("cannot create a directory in", parent);
    snprintf(cleanup_dir, sizeof cleanup_dir, "%s", b->root);
    atexit(remove_our_dir);

    /* Baselines get the same two-hex-digit sharding as the store, made
     * now so that no baseline pays for a mkdir. */
    snprintf(b->plain, sizeof b->plain, "%s/plain", b->root);
    make_dir(b->plain);
    static const char *const subs[] = { "tmp", "w", "o" };
    for (size_t s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/%s", b->plain, subs[s]);
        make_dir(path);
        for (int x = 0; s > 0 && x < 256; x++) {
            snprintf(path, sizeof path, "%s/%s/%02x", b->plain, subs[s], x);
            make_dir(path);
        }
    }

    snprintf(path, sizeof path, "disk:%s/store", b->root);
    must(acache_open(path, &b->disk), path);
    /* Room for every small put pass without eviction. */
    must(acache_open("mem:?max-size=1G", &b->mem), "mem:?max-size=1G");
    /* A 64 MiB entry must fit one shard (max-size / 16). */
    must(acache_open("mem:?max-size=2G", &b->mem_large), "mem:?max-size=2G");

    b->sha = EVP_MD_CTX_new();
    b->sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!b->sha || !b->sha_md)
        die("cannot set up SHA-256");

    b->keys = malloc((size_t)(b->put_passes + 1) * b->n * sizeof *b->keys);
    b->big = malloc(LARGE_SIZE);
    b->big_out = malloc(LARGE_SIZE);
    if (!b->keys || !b->big || !b->big_out)
        die("out of memory");
    for (int p = 0; p <= b->put_passes; p++)
        for (size_t i = 0; i < b->n; i++)
            b->keys[(size_t)p * b->n + i] = make_key(b, 1, (uint64_t)p, i);
    for (int w = 0; w < 2; w++)
        for (int r = 0; r < b->large_reps; r++)
            b->large_keys[w][r] = make_key(b, 2, (uint64_t)w, (uint64_t)r);
    fill_random(b->small, SMALL_SIZE, 42);
    fill_random(b->big, LARGE_SIZE, 43);
    memset(b->big_out, 1, LARGE_SIZE); /* fault it in now, not in a timed copy */
}

static void teardown(bench *b)
{
    acache_close(b->disk);
    acache_close(b->mem);
    acache_close(b->mem_large);
    EVP_MD_CTX_free(b->sha);
    EVP_MD_free(b->sha_md);
    free(b->keys);
    free(b->big);
    free(b->big_out);
    remove_our_dir();
}

static int pin_to_one_cpu(void)
{
    int cpu = sched_getcpu();
    cpu_set_t set;
    if (cpu < 0)
        return -1;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? cpu : -1;
}

int main(int argc, char **argv)
{
    static bench b; /* large: rows and buffers */
    const char *parent = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            b.quick = true;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            parent = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!parent) {
        const char *t = getenv("TMPDIR");
        parent = t && *t ? t : "/tmp";
    }
    b.n = b.quick ? 2000 : 10000;
    b.put_passes = b.quick ? 2 : 16;
    b.put_budget_s = b.quick ? 0.1 : 1.0;
    b.get_budget_s = b.quick ? 0.1 : 1.5;
    b.large_reps = b.quick ? 1 : 3; /* at most MAX_LARGE_REPS */

    int cpu = pin_to_one_cpu();
    setup(&b, parent);
    char where[32] = "not pinned";
    if (cpu >= 0)
        snprintf(where, sizeof where, "pinned to CPU %d", cpu);
    printf("bench_store: acache %d.%d.%d, %s run, one thread (%s), store in %s (%s)\n",
           ACACHE_VERSION_MAJOR, ACACHE_VERSION_MINOR, ACACHE_VERSION_PATCH,
           b.quick ? "quick" : "full", where, b.root, fs_name(b.root));
    printf("page cache warm; no fsync (durability=none); ratio = time per op / baseline's\n\n");
    fflush(stdout);

    results res = { 0 };
    bench_small(&b, &res);
    bench_large(&b, &res);
    print_table(&b);
    print_targets(&res);
    teardown(&b);
    return 0;
}
