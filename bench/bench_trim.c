/*
 * bench_trim.c - what keeping a large disk store bounded costs: a trim of a
 * store of 1,000,000 small entries (--entries N to run smaller), and the
 * latency of get-hits while a trim runs, against the same gets with no
 * trim, measured in the same run on the same store.
 *
 * Phases:
 *   fill     N entries of 64-191 bytes through acache_put (one object each)
 *   age      the first half made to look last used two hours ago
 *   gets     baseline: get-hits (flags 0, the GOCACHEPROG server's lookup)
 *            of random keys of the recent half, each timed, after as many
 *            untimed to warm the caches
 *   idle     a trim with nothing to evict (the store under max-size): what
 *            the hourly automatic trim of a store in bounds costs
 *   trim     the trim an automatic one does (no ACACHE_TRIM_FULL) with
 *            max-size at 60% of the store, so it evicts down to 54%: in a
 *            thread of its own at the automatic trim's CPU priority (idle)
 *            but at full speed (the automatic trim, while other tasks run,
 *            works 1% of the time: this is the worst case for the gets),
 *            while the same gets run, timed, until it has finished or for
 *            --trim-seconds (300): a machine kept busy by other work may
 *            leave an idle-priority thread almost no CPU, so after that
 *            the trim finishes at normal priority, untimed
 *   after    the baseline gets again, no trim running
 *   auto     the automatic trim itself, for up to --auto-seconds (60): a
 *            handle with a lower max-size and trim-interval=0 puts one
 *            entry, which starts it; nothing else runs meanwhile; what it
 *            removed per second
 *   full     ACACHE_TRIM_FULL, as `acache trim` does: the whole store looked
 *            at and recounted
 * Reported: time and rate of each phase; for each trim its duration, what
 * it removed and what it looked at (files examined, directories listed);
 * get latency (p50, p99, mean) before, during and after the trim and the
 * ratios; target verdicts. Timings are never asserted: the exit status is 0
 * whenever the benchmark ran, 1 when it could not (a store did not open, a
 * recent entry missed), 2 for a bad option.
 *
 * It never removes anything it did not create: everything lives in a fresh
 * directory (under --dir, else $TMPDIR, else /tmp) removed at the end. A
 * million entries take about 8 GB of disk (two 4 KiB blocks each).
 *
 * --fill-only DIR makes the store in DIR (fill and age, nothing else) and
 * keeps it: bench/trim_gobuild.sh gives it to the automatic trim that runs
 * while the go command builds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "acache.h"
#include "rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (4u << 20)
#define TARGET_GET_RATIO 2.0

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static acache_id key_of(uint64_t i)
{
    acache_id id;
    acache_part part = { &i, sizeof i };
    acache_key_derive(&id, "bench-trim", &part, 1);
    return id;
}

/* Distinct bytes for entry i: its number, then filler. */
static size_t value_of(uint64_t i, unsigned char *buf)
{
    size_t len = 64 + (size_t)(i * 2654435761u % 128);
    memcpy(buf, &i, sizeof i);
    for (size_t j = sizeof i; j < len; j++)
        buf[j] = (unsigned char)(i * 31 + j);
    return len;
}

typedef struct latencies {
    uint32_t *ns;
    size_t n, seen;
    double sum;
} latencies;

static void note(latencies *l, int64_t ns)
{
    l->seen++;
    l->sum += (double)ns;
    if (l->n < MAX_SAMPLES)
        l->ns[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
    else
        l->ns[next_rand() % MAX_SAMPLES] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(latencies *l, double p)
{
    if (l->n == 0)
        return 0;
    return (double)l->ns[(size_t)(p * (double)(l->n - 1))];
}

/* One timed get-hit of a random recent entry; false on a miss. */
static bool timed_get(acache_store *s, uint64_t n, latencies *l)
{
    uint64_t half = n / 2;
    acache_id k = key_of(half + next_rand() % (n - half));
    acache_result r;
    int64_t t0 = now_ns();
    acache_status st = acache_get(s, &k, 0, &r);
    note(l, now_ns() - t0);
    return st == ACACHE_OK;
}

/* A trim run in a thread of its own. */
typedef struct trim_job {
    acache_store *s;
    acache_trim_options opts;
    acache_trim_report r;
    int64_t ns;
    atomic_int tid; /* the thread's id, for setpriority */
    atomic_bool done;
} trim_job;

static void *run_trim(void *arg)
{
    trim_job *j = arg;
    atomic_store(&j->tid, (int)gettid());
    /* The automatic trim's CPU priority (nice 19, this thread only), so
     * that what is measured is what a trim does to gets, not a second busy
     * thread's preemption; but not its pacing: this is the worst case. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    int64_t t0 = now_ns();
    acache_trim(j->s, &j->opts, &j->r);
    j->ns = now_ns() - t0;
    atomic_store(&j->done, true);
    return NULL;
}

static void print_trim(const char *name, int64_t ns, const acache_trim_report *r)
{
    printf("%-8s %10.4f s  %" PRIu64 " files examined, %" PRIu64 " directories listed, %" PRIu64
           " removed\n",
           name, (double)ns / 1e9, r->files_examined, r->dirs_listed, r->entries_removed);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_trim [--entries N] [--gets N] [--dir DIR | --fill-only DIR]\n"
               "  --entries N     entries in the store (default 1000000)\n"
               "  --gets N        timed gets of the baseline (default 200000)\n"
               "  --dir DIR       where the store goes (default $TMPDIR, else /tmp)\n"
               "  --auto-seconds N  how long to watch the automatic trim (default 60)\n"
               "  --trim-seconds N  how long to time gets during the trim (default 300)\n"
               "  --fill-only DIR make the store in DIR (fill and age only) and keep it\n");
}

typedef struct args {
    uint64_t n, gets, auto_seconds, trim_seconds;
    const char *fill_only, *parent;
} args;

/* The command line into a; -1: go on; else the exit status. */
static int parse_args(int argc, char **argv, args *a)
{
    const char *parent = getenv("TMPDIR");
    *a = (args){ 1000000, 200000, 60, 300, NULL, parent && *parent ? parent : "/tmp" };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--entries") && i + 1 < argc) {
            a->n = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--gets") && i + 1 < argc) {
            a->gets = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            a->parent = argv[++i];
        } else if (!strcmp(argv[i], "--auto-seconds") && i + 1 < argc) {
            a->auto_seconds = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--trim-seconds") && i + 1 < argc) {
            a->trim_seconds = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--fill-only") && i + 1 < argc) {
            a->fill_only = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (a->n < 100 || a->gets < 100) {
        fprintf(stderr, "bench_trim: want at least 100 entries and 100 gets\n");
        return 2;
    }
    return -1;
}

/* What the phases share. */
typedef struct bench {
    const args *a;
    char dir[4096];
    acache_store *s;
    latencies base, during, after, warm;
    uint64_t size; /* the store's bytes after the fill */
} bench;

/* n entries of 1 to 256 bytes. */
static bool fill(bench *b)
{
    unsigned char buf[256];
    uint64_t n = b->a->n;
    int64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        acache_id k = key_of(i);
        size_t len = value_of(i, buf);
        if (acache_put(b->s, &k, buf, len, NULL) != ACACHE_OK) {
            fprintf(stderr, "bench_trim: put %" PRIu64 ": %s\n", i, acache_last_error());
            return false;
        }
        if (i % (n / 20 + 1) == 0)
            fprintf(stderr, "\rfill %3d%%", (int)(i * 100 / n));
    }
    double fill_s = (double)(now_ns() - t0) / 1e9;
    fprintf(stderr, "\r");
    printf("%-8s %10.2f s  %10.0f puts/s\n", "fill", fill_s, (double)n / fill_s);
    return true;
}

/* The first half last used 2 hours ago; prints the store's size. */
static void age_half(bench *b)
{
    int64_t t0 = now_ns();
    struct timespec old[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };
    for (uint64_t i = 0; i < b->a->n / 2; i++) {
        acache_id k = key_of(i);
        acache_result r;
        char hex[ACACHE_ID_HEX_SIZE], rec[4400];
        if (acache_get(b->s, &k, 0, &r) != ACACHE_OK)
            continue;
        acache_id_to_hex(&k, hex);
        snprintf(rec, sizeof rec, "%s/v1/a/%.2s/%s", b->dir, hex, hex);
        utimensat(AT_FDCWD, rec, old, 0);
        utimensat(AT_FDCWD, r.path, old, 0);
    }
    printf("%-8s %10.2f s  (first half: last used 2 hours ago)\n", "age",
           (double)(now_ns() - t0) / 1e9);
    acache_disk_counters c;
    acache_disk_stats(b->s, &c);
    b->size = c.bytes;
    printf("store    %" PRIu64 " entries, %" PRIu64 " objects, %.1f MiB\n", c.entries, c.objects,
           (double)b->size / 1048576.0);
}

/* Baseline gets, after as many to warm the caches. */
static bool baseline_gets(bench *b)
{
    for (uint64_t i = 0; i < b->a->gets; i++)
        timed_get(b->s, b->a->n, &b->warm);
    int64_t t0 = now_ns();
    for (uint64_t i = 0; i < b->a->gets; i++) {
        if (!timed_get(b->s, b->a->n, &b->base)) {
            fprintf(stderr, "bench_trim: a recent entry missed\n");
            return false;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("%-8s %10.2f s  %10.0f gets/s\n", "gets", secs, (double)b->a->gets / secs);
    return true;
}

/* Gets timed while the trim job runs, for at most --trim-seconds; then the
 * trim finishes at normal priority, untimed. The time gets were timed
 * (-1: all of it) and what the trim removed by then. */
static bool gets_during(bench *b, trim_job *job, int64_t t0, int64_t *timed_ns,
                        uint64_t *removed_timed)
{
    acache_disk_counters c;
    acache_disk_stats(b->s, &c);
    uint64_t trimmed_before = c.trimmed_entries;
    *timed_ns = -1;
    while (!atomic_load(&job->done)) {
        /* On a machine other work keeps busy, a trim at nice 19 may crawl. */
        if (*timed_ns < 0 && now_ns() - t0 >= (int64_t)b->a->trim_seconds * 1000000000LL &&
            atomic_load(&job->tid) != 0) {
            *timed_ns = now_ns() - t0;
            setpriority(PRIO_PROCESS, (id_t)atomic_load(&job->tid), 0);
            acache_disk_stats(b->s, &c);
            *removed_timed = c.trimmed_entries - trimmed_before;
        }
        if (*timed_ns >= 0) {
            struct timespec pause = { 0, 20000000 };
            nanosleep(&pause, NULL);
            continue;
        }
        if (!timed_get(b->s, b->a->n, &b->during)) {
            fprintf(stderr, "bench_trim: a recent entry missed during the trim\n");
            return false;
        }
    }
    return true;
}

/* A trim at full speed down to 60% of the store, with gets running; then
 * the gets after it. */
static bool trim_with_gets(bench *b)
{
    trim_job job = { b->s, ACACHE_TRIM_OPTIONS_INIT, { 0 }, 0, 0, 0 };
    job.opts.max_size = (int64_t)(b->size * 6 / 10);
    pthread_t th;
    uint64_t removed_timed = 0;
    int64_t timed_ns = -1, t0 = now_ns();
    if (pthread_create(&th, NULL, run_trim, &job) != 0) {
        fprintf(stderr, "bench_trim: cannot start a thread\n");
        return false;
    }
    bool ok = gets_during(b, &job, t0, &timed_ns, &removed_timed);
    pthread_join(th, NULL);
    if (!ok)
        return false;
    print_trim("trim", job.ns, &job.r);
    if (timed_ns >= 0)
        printf("         gets timed for its first %.1f s (at nice 19; it removed %" PRIu64
               " entries meanwhile), the rest at normal priority, untimed\n",
               (double)timed_ns / 1e9, removed_timed);
    else
        printf("         gets timed for all of it (at nice 19)\n");
    printf("         %.0f entries removed per second, %.2f files looked at per entry removed\n",
           (double)job.r.entries_removed / ((double)job.ns / 1e9),
           job.r.entries_removed ? (double)job.r.files_examined / (double)job.r.entries_removed : 0.0);
    for (uint64_t i = 0; i < b->a->gets; i++)
        timed_get(b->s, b->a->n, &b->after);
    return true;
}

/* The automatic trim itself, started by a put on a second handle with a
 * lower max-size, nothing else running, watched for --auto-seconds. */
static bool auto_trim(bench *b)
{
    acache_disk_counters c;
    acache_disk_stats(b->s, &c);
    uint64_t trimmed = c.trimmed_entries;
    char spec[4500];
    snprintf(spec, sizeof spec, "disk:%s?max-size=%" PRIu64 "&trim-interval=0", b->dir,
             c.bytes * 8 / 10);
    acache_store *a = NULL;
    if (acache_open(spec, &a) != ACACHE_OK) {
        fprintf(stderr, "bench_trim: cannot open %s: %s\n", spec, acache_last_error());
        return false;
    }
    unsigned char buf[256];
    acache_id k = key_of(b->a->n + 1);
    size_t len = value_of(b->a->n + 1, buf);
    int64_t t0 = now_ns();
    if (acache_put(a, &k, buf, len, NULL) != ACACHE_OK) {
        fprintf(stderr, "bench_trim: put: %s\n", acache_last_error());
        acache_close(a);
        return false;
    }
    bool finished = false;
    while (!finished && now_ns() - t0 < (int64_t)b->a->auto_seconds * 1000000000LL) {
        struct timespec pause = { 0, 100000000 };
        nanosleep(&pause, NULL);
        acache_disk_stats(b->s, &c);
        finished = c.last_trim_finished;
    }
    int64_t auto_ns = now_ns() - t0;
    acache_close(a); /* stops it if it is still running */
    acache_disk_stats(b->s, &c);
    printf("%-8s %10.2f s  removed %" PRIu64 " entries, %.0f per second (%s; its pace depends on "
           "what else runs)\n",
           "auto", (double)auto_ns / 1e9, c.trimmed_entries - trimmed,
           (double)(c.trimmed_entries - trimmed) / ((double)auto_ns / 1e9),
           finished ? "finished" : "stopped at the time limit");
    return true;
}

/* An acache_trim with o, timed and printed under name. */
static void timed_trim(bench *b, const char *name, const acache_trim_options *o,
                       acache_trim_report *r)
{
    int64_t t0 = now_ns();
    acache_trim(b->s, o, r);
    print_trim(name, now_ns() - t0, r);
}

/* The latency table and the target. */
static void report(bench *b, const acache_trim_report *idle)
{
    latencies *base = &b->base, *during = &b->during, *after = &b->after;
    qsort(base->ns, base->n, sizeof *base->ns, cmp_u32);
    qsort(during->ns, during->n, sizeof *during->ns, cmp_u32);
    qsort(after->ns, after->n, sizeof *after->ns, cmp_u32);
    double b50 = pct(base, 0.5), b99 = pct(base, 0.99), bmean = base->sum / (double)base->seen;
    double d50 = pct(during, 0.5), d99 = pct(during, 0.99);
    double dmean = during->sum / (double)during->seen;
    double a50 = pct(after, 0.5), a99 = pct(after, 0.99), amean = after->sum / (double)after->seen;
    printf("\nget-hit latency      p50        p99       mean      gets\n");
    printf("no trim        %8.0f ns %8.0f ns %8.0f ns %9zu\n", b50, b99, bmean, base->seen);
    printf("during trim    %8.0f ns %8.0f ns %8.0f ns %9zu\n", d50, d99, dmean, during->seen);
    printf("no trim, after %8.0f ns %8.0f ns %8.0f ns %9zu\n", a50, a99, amean, after->seen);
    printf("during/before  %8.2fx   %8.2fx   %8.2fx\n", d50 / b50, d99 / b99, dmean / bmean);
    printf("during/after   %8.2fx   %8.2fx   %8.2fx\n", d50 / a50, d99 / a99, dmean / amean);
    /* The worse of the two no-trim baselines is not taken: the better one. */
    b50 = a50 < b50 ? a50 : b50;
    bmean = amean < bmean ? amean : bmean;
    printf("\ntarget: get-hit latency during a trim within %.0fx of without: p50 %.2fx %s, "
           "mean %.2fx %s\n",
           TARGET_GET_RATIO, d50 / b50, d50 / b50 <= TARGET_GET_RATIO ? "PASS" : "MISS",
           dmean / bmean, dmean / bmean <= TARGET_GET_RATIO ? "PASS" : "MISS");
    uint64_t n = b->a->n;
    printf("idle trim: looked at %.2f%% of the store's %" PRIu64 " files (its sweep of a few shards "
           "for expired entries and garbage; the whole store every max-age/10)\n",
           100.0 * (double)idle->files_examined / (double)(2 * n), 2 * n);
}

/* Every phase after the fill: gets, trims, the report. */
static bool measure(bench *b)
{
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report idle, full;
    if (!baseline_gets(b))
        return false;
    o.max_size = (int64_t)(b->size * 2);
    timed_trim(b, "idle", &o, &idle);
    if (!trim_with_gets(b) || !auto_trim(b))
        return false;
    o = (acache_trim_options)ACACHE_TRIM_OPTIONS_INIT;
    o.flags = ACACHE_TRIM_FULL;
    timed_trim(b, "full", &o, &full);
    report(b, &idle);
    return true;
}

static latencies latencies_new(void)
{
    return (latencies){ calloc(MAX_SAMPLES, sizeof(uint32_t)), 0, 0, 0 };
}

int main(int argc, char **argv)
{
    args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    /* Each phase's line as it finishes, also into a file or a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    bench b = { .a = &a };
    snprintf(b.dir, sizeof b.dir, "%s/acache-bench-trim-XXXXXX", a.parent);
    if (a.fill_only)
        snprintf(b.dir, sizeof b.dir, "%s", a.fill_only);
    else if (!mkdtemp(b.dir)) {
        fprintf(stderr, "bench_trim: cannot make a directory under %s: %s\n", a.parent,
                strerror(errno));
        return 1;
    }
    char spec[4400];
    snprintf(spec, sizeof spec, "disk:%s?trim-interval=off", b.dir);
    b.base = latencies_new();
    b.during = latencies_new();
    b.after = latencies_new();
    b.warm = latencies_new();
    rc = 1;
    if (!b.base.ns || !b.during.ns || !b.after.ns || !b.warm.ns ||
        acache_open(spec, &b.s) != ACACHE_OK) {
        fprintf(stderr, "bench_trim: cannot open %s: %s\n", spec, acache_last_error());
    } else {
        printf("bench_trim: %" PRIu64 " entries in %s\n", a.n, b.dir);
        if (fill(&b)) {
            age_half(&b);
            rc = a.fill_only || measure(&b) ? 0 : 1;
        }
    }
    acache_close(b.s);
    free(b.base.ns);
    free(b.during.ns);
    free(b.after.ns);
    free(b.warm.ns);
    if (!a.fill_only) {
        fprintf(stderr, "removing %s\n", b.dir);
        bench_rmtree(b.dir);
    }
    return rc;
}
