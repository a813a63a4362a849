/*
 * bench_build_once.c - what acache_get_or_build() costs on a hit, next to
 * the calls it is made of, and how many builds 16 threads asking for the
 * same missing id at once cause.
 *
 * Hits are on a 1 MiB artifact in a disk store, with ACACHE_GET_DATA (a
 * read-only mapping; the first byte is touched, then released):
 *   - acache_get_or_build_ex       the call under test
 *   - ... through acache_namespace the same, with a fingerprinted store
 *   - acache_get                   the lookup it starts with
 *   - open+fstat+mmap+munmap+close of the object file: the floor of a
 *     mapped hit, with no cache at all
 * Each is looped for a time budget in chunks of ops; "best" is the fastest
 * chunk (the machine without interference), "mean" all of them.
 *
 * It must never assert a timing: it reports, and exits 0 whenever it ran
 * (1 when it could not run at all). It removes only the directory it made.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "acache.h"
#include "rmtree.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ARTIFACT_SIZE (1u << 20)
#define THREADS 16
#define CHUNKS 20
#define TARGET_NS 20000.0

static double budget_s = 1.0;
static int rounds = 5;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int die(const char *what, acache_status st)
{
    fprintf(stderr, "bench_build_once: %s: %s: %s\n", what, acache_status_str(st),
            acache_last_error());
    return 1;
}

/* ------------------------------------------------------------------ */
/* Builds                                                               */

typedef struct build_ctx {
    atomic_int runs;
    int sleep_ms;
} build_ctx;

static acache_status build(void *ctx, const acache_id *action, acache_put_stream *out)
{
    build_ctx *b = ctx;
    static unsigned char chunk[64 << 10];
    atomic_fetch_add(&b->runs, 1);
    if (b->sleep_ms) {
        struct timespec ts = { 0, (long)b->sleep_ms * 1000000 };
        nanosleep(&ts, NULL);
    }
    for (size_t off = 0; off < ARTIFACT_SIZE; off += sizeof chunk) {
        chunk[0] = action->bytes[0];
        chunk[1] = (unsigned char)(off >> 16);
        acache_status st = acache_put_write(out, chunk, sizeof chunk);
        if (st != ACACHE_OK)
            return st;
    }
    return ACACHE_OK;
}

typedef struct racer {
    acache_store *s;
    acache_id action;
    build_ctx *b;
    pthread_barrier_t *go;
    acache_status st;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    acache_result res;
    acache_build_options o = { ACACHE_GET_DATA, 0, NULL };
    pthread_barrier_wait(r->go);
    r->st = acache_get_or_build_ex(r->s, &r->action, build, r->b, &o, &res);
    acache_result_release(&res);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Hits                                                                 */

typedef struct hit_case {
    const char *name;
    acache_store *s;
    const acache_id *action;
    const char *path;
    int kind; /* 0 get_or_build, 1 get, 2 open+mmap */
    double best_ns, mean_ns;
} hit_case;

static volatile unsigned char sink;

static bool one_hit(hit_case *c, build_ctx *b)
{
    if (c->kind == 2) {
        int fd = open(c->path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0)
            return false;
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            return false;
        sink = *(const unsigned char *)map;
        munmap(map, (size_t)sb.st_size);
        close(fd);
        return true;
    }
    acache_result r;
    acache_status st;
    if (c->kind == 0) {
        acache_build_options o = { ACACHE_GET_DATA, 0, NULL };
        st = acache_get_or_build_ex(c->s, c->action, build, b, &o, &r);
    } else {
        st = acache_get(c->s, c->action, ACACHE_GET_DATA, &r);
    }
    if (st != ACACHE_OK)
        return false;
    sink = *(const unsigned char *)r.data;
    acache_result_release(&r);
    return true;
}

static bool measure(hit_case *c, build_ctx *b)
{
    /* Calibrate a chunk to about budget/CHUNKS. */
    int n = 100;
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++)
        if (!one_hit(c, b))
            return false;
    double per = (double)(now_ns() - t0) / n;
    long chunk = (long)(budget_s * 1e9 / CHUNKS / (per > 1 ? per : 1));
    if (chunk < 10)
        chunk = 10;
    double best = 1e18, total = 0;
    long ops = 0;
    for (int k = 0; k < CHUNKS; k++) {
        int64_t s = now_ns();
        for (long i = 0; i < chunk; i++)
            if (!one_hit(c, b))
                return false;
        double d = (double)(now_ns() - s);
        total += d;
        ops += chunk;
        if (d / (double)chunk < best)
            best = d / (double)chunk;
    }
    c->best_ns = best;
    c->mean_ns = total / (double)ops;
    return true;
}

/* --quick and --dir; the parent of the scratch directory, or NULL after
 * printing the usage. */
static const char *parse_args(int argc, char **argv)
{
    const char *parent = getenv("TMPDIR");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            budget_s = 0.2;
            rounds = 2;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            parent = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_build_once [--quick] [--dir DIR]\n");
            return NULL;
        }
    }
    return parent && *parent ? parent : "/tmp";
}

/* disk:dir, and a namespace of a second handle on it. */
static acache_status open_stores(const char *dir, acache_store **s, acache_store **ns,
                                 const char **what)
{
    char spec[4200];
    snprintf(spec, sizeof spec, "disk:%s", dir);
    acache_status st = acache_open(spec, s);
    if (st != ACACHE_OK) {
        *what = "open";
        return st;
    }
    acache_fingerprint fp = { "bench", "1", acache_host_target(), NULL, "-O2", NULL, 0 };
    acache_id fp_id;
    acache_fingerprint_id(&fp, &fp_id);
    acache_store *s2 = NULL;
    *what = "namespace";
    if ((st = acache_open(spec, &s2)) != ACACHE_OK)
        return st;
    return acache_namespace(s2, &fp_id, ns);
}

/* One round: THREADS threads ask for one missing id at once. The number
 * of builds in *runs, the time all took in *ms. */
static acache_status race_round(acache_store *s, int round, int *runs, double *ms)
{
    char name[32];
    snprintf(name, sizeof name, "race-%d", round);
    acache_part part = { name, strlen(name) };
    acache_id action;
    acache_key_derive(&action, "bench", &part, 1);
    build_ctx b = { 0, 20 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, THREADS);
    racer rs[THREADS];
    pthread_t t[THREADS];
    int64_t t0 = now_ns();
    for (int i = 0; i < THREADS; i++) {
        rs[i] = (racer){ s, action, &b, &go, ACACHE_OK };
        pthread_create(&t[i], NULL, race, &rs[i]);
    }
    acache_status st = ACACHE_OK;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        if (rs[i].st != ACACHE_OK)
            st = rs[i].st;
    }
    *ms = (double)(now_ns() - t0) / 1e6;
    pthread_barrier_destroy(&go);
    *runs = atomic_load(&b.runs);
    return st;
}

/* All rounds: the most builds of one round, and its slowest time. */
static acache_status race_rounds(acache_store *s, int *worst, double *worst_ms)
{
    printf("-- %d threads asking for the same missing id at once (1 MiB output, 20 ms build)\n",
           THREADS);
    *worst = 0;
    *worst_ms = 0;
    for (int round = 0; round < rounds; round++) {
        int runs;
        double ms;
        acache_status st = race_round(s, round, &runs, &ms);
        if (st != ACACHE_OK)
            return st;
        printf("round %d: %d build(s), all %d threads served in %.1f ms\n", round + 1, runs,
               THREADS, ms);
        if (runs > *worst)
            *worst = runs;
        if (ms > *worst_ms)
            *worst_ms = ms;
    }
    return ACACHE_OK;
}

/* Hits on a 1 MiB artifact, each way, against open+mmap; prints the table
 * and the targets. */
static int measure_hits(acache_store *s, acache_store *ns, int worst, double worst_ms)
{
    acache_part part = { "hit", 3 };
    acache_id action;
    acache_key_derive(&action, "bench", &part, 1);
    build_ctx b = { 0, 0 };
    acache_result r;
    acache_build_options o = { 0, 0, NULL };
    acache_status st;
    if ((st = acache_get_or_build_ex(s, &action, build, &b, &o, &r)) != ACACHE_OK ||
        (st = acache_get_or_build_ex(ns, &action, build, &b, &o, &r)) != ACACHE_OK ||
        (st = acache_get(s, &action, 0, &r)) != ACACHE_OK)
        return die("prepare hit", st);
    hit_case cases[] = {
        { "open+fstat+mmap+munmap+close", NULL, NULL, r.path, 2, 0, 0 },
        { "acache_get (GET_DATA)", s, &action, NULL, 1, 0, 0 },
        { "acache_get_or_build (GET_DATA)", s, &action, NULL, 0, 0, 0 },
        { "  ... through acache_namespace", ns, &action, NULL, 0, 0, 0 },
    };
    size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < ncases; i++)
        if (!measure(&cases[i], &b))
            return die(cases[i].name, ACACHE_MISS);
    printf("\n-- hit on a 1 MiB artifact, mapped (first byte touched), best chunk (mean)\n");
    printf("%-34s %10s %12s  %s\n", "operation", "time/op", "(mean)", "vs open+mmap");
    for (size_t i = 0; i < ncases; i++)
        printf("%-34s %8.2f us %9.2f us  %5.2fx\n", cases[i].name, cases[i].best_ns / 1e3,
               cases[i].mean_ns / 1e3, cases[i].best_ns / cases[0].best_ns);
    printf("\ntargets:\n");
    printf("  16 threads, same missing id: exactly 1 build per round: %s (worst round: %d, "
           "%.1f ms)\n", worst == 1 ? "PASS" : "MISS", worst, worst_ms);
    printf("  get_or_build hit, 1 MiB mapped, < 20 us: %s (%.2f us; namespaced %.2f us)\n",
           cases[2].best_ns < TARGET_NS ? "PASS" : "MISS", cases[2].best_ns / 1e3,
           cases[3].best_ns / 1e3);
    if (atomic_load(&b.runs) != 2)
        printf("  (unexpected: %d builds while measuring hits)\n", atomic_load(&b.runs));
    return 0;
}

int main(int argc, char **argv)
{
    const char *parent = parse_args(argc, argv);
    if (!parent)
        return 2;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/acache-bench-XXXXXX", parent);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    acache_store *s = NULL, *ns = NULL;
    const char *what = "";
    int worst = 0, rc;
    double worst_ms = 0;
    acache_status st = open_stores(dir, &s, &ns, &what);
    if (st != ACACHE_OK)
        rc = die(what, st);
    else if ((st = race_rounds(s, &worst, &worst_ms)) != ACACHE_OK)
        rc = die("race", st);
    else
        rc = measure_hits(s, ns, worst, worst_ms);
    acache_close(s);
    acache_close(ns);
    bench_rmtree(dir);
    return rc;
}
