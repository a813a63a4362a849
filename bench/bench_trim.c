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

int main(int argc, char **argv)
{
    uint64_t n = 1000000, gets = 200000, auto_seconds = 60, trim_seconds = 300;
    const char *fill_only = NULL;
    const char *parent = getenv("TMPDIR");
    /* Each phase's line as it finishes, also into a file or a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!parent || !*parent)
        parent = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--entries") && i + 1 < argc) {
            n = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--gets") && i + 1 < argc) {
            gets = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            parent = argv[++i];
        } else if (!strcmp(argv[i], "--auto-seconds") && i + 1 < argc) {
            auto_seconds = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--trim-seconds") && i + 1 < argc) {
            trim_seconds = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--fill-only") && i + 1 < argc) {
            fill_only = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (n < 100 || gets < 100) {
        fprintf(stderr, "bench_trim: want at least 100 entries and 100 gets\n");
        return 2;
    }
    char dir[4096], spec[4400], auto_spec[4500];
    snprintf(dir, sizeof dir, "%s/acache-bench-trim-XXXXXX", parent);
    if (fill_only)
        snprintf(dir, sizeof dir, "%s", fill_only);
    else if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_trim: cannot make a directory under %s: %s\n", parent, strerror(errno));
        return 1;
    }
    int rc = 1;
    acache_store *s = NULL, *a = NULL;
    latencies base = { calloc(MAX_SAMPLES, sizeof(uint32_t)), 0, 0, 0 };
    latencies during = { calloc(MAX_SAMPLES, sizeof(uint32_t)), 0, 0, 0 };
    latencies after = { calloc(MAX_SAMPLES, sizeof(uint32_t)), 0, 0, 0 };
    latencies warm = { calloc(MAX_SAMPLES, sizeof(uint32_t)), 0, 0, 0 };
    unsigned char buf[256];
    snprintf(spec, sizeof spec, "disk:%s?trim-interval=off", dir);
    if (!base.ns || !during.ns || !after.ns || !warm.ns || acache_open(spec, &s) != ACACHE_OK) {
        fprintf(stderr, "bench_trim: cannot open %s: %s\n", spec, acache_last_error());
        goto out;
    }
    printf("bench_trim: %" PRIu64 " entries in %s\n", n, dir);

    /* fill */
    int64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        acache_id k = key_of(i);
        size_t len = value_of(i, buf);
        if (acache_put(s, &k, buf, len, NULL) != ACACHE_OK) {
            fprintf(stderr, "bench_trim: put %" PRIu64 ": %s\n", i, acache_last_error());
            goto out;
        }
        if (i % (n / 20 + 1) == 0)
            fprintf(stderr, "\rfill %3d%%", (int)(i * 100 / n));
    }
    double fill_s = (double)(now_ns() - t0) / 1e9;
    fprintf(stderr, "\r");
    printf("%-8s %10.2f s  %10.0f puts/s\n", "fill", fill_s, (double)n / fill_s);

    /* age the first half */
    t0 = now_ns();
    struct timespec old[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };
    for (uint64_t i = 0; i < n / 2; i++) {
        acache_id k = key_of(i);
        acache_result r;
        char hex[ACACHE_ID_HEX_SIZE], rec[4400];
        if (acache_get(s, &k, 0, &r) != ACACHE_OK)
            continue;
        acache_id_to_hex(&k, hex);
        snprintf(rec, sizeof rec, "%s/v1/a/%.2s/%s", dir, hex, hex);
        utimensat(AT_FDCWD, rec, old, 0);
        utimensat(AT_FDCWD, r.path, old, 0);
    }
    printf("%-8s %10.2f s  (first half: last used 2 hours ago)\n", "age",
           (double)(now_ns() - t0) / 1e9);
    acache_disk_counters c;
    acache_disk_stats(s, &c);
    uint64_t size = c.bytes;
    printf("store    %" PRIu64 " entries, %" PRIu64 " objects, %.1f MiB\n", c.entries, c.objects,
           (double)size / 1048576.0);
    if (fill_only) {
        rc = 0;
        goto out;
    }

    /* baseline gets, after as many to warm the caches */
    for (uint64_t i = 0; i < gets; i++)
        timed_get(s, n, &warm);
    t0 = now_ns();
    for (uint64_t i = 0; i < gets; i++) {
        if (!timed_get(s, n, &base)) {
            fprintf(stderr, "bench_trim: a recent entry missed\n");
            goto out;
        }
    }
    printf("%-8s %10.2f s  %10.0f gets/s\n", "gets", (double)(now_ns() - t0) / 1e9,
           (double)gets / ((double)(now_ns() - t0) / 1e9));

    /* idle trim */
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report idle, full;
    o.max_size = (int64_t)(size * 2);
    t0 = now_ns();
    acache_trim(s, &o, &idle);
    print_trim("idle", now_ns() - t0, &idle);

    /* a trim at full speed, with gets running */
    trim_job job = { s, ACACHE_TRIM_OPTIONS_INIT, { 0 }, 0, 0, 0 };
    job.opts.max_size = (int64_t)(size * 6 / 10);
    pthread_t th;
    acache_disk_stats(s, &c);
    uint64_t trimmed_before = c.trimmed_entries, removed_timed = 0;
    int64_t timed_ns = -1;
    t0 = now_ns();
    if (pthread_create(&th, NULL, run_trim, &job) != 0) {
        fprintf(stderr, "bench_trim: cannot start a thread\n");
        goto out;
    }
    while (!atomic_load(&job.done)) {
        /* On a machine other work keeps busy, a trim at nice 19 may crawl:
         * gets are timed for --trim-seconds, then the trim finishes at
         * normal priority, untimed. */
        if (timed_ns < 0 && now_ns() - t0 >= (int64_t)trim_seconds * 1000000000LL &&
            atomic_load(&job.tid) != 0) {
            timed_ns = now_ns() - t0;
            setpriority(PRIO_PROCESS, (id_t)atomic_load(&job.tid), 0);
            acache_disk_stats(s, &c);
            removed_timed = c.trimmed_entries - trimmed_before;
        }
        if (timed_ns >= 0) {
            struct timespec pause = { 0, 20000000 };
            nanosleep(&pause, NULL);
            continue;
        }
        if (!timed_get(s, n, &during)) {
            fprintf(stderr, "bench_trim: a recent entry missed during the trim\n");
            pthread_join(th, NULL);
            goto out;
        }
    }
    pthread_join(th, NULL);
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
    for (uint64_t i = 0; i < gets; i++)
        timed_get(s, n, &after);

    /* the automatic trim itself, nothing else running */
    acache_disk_stats(s, &c);
    uint64_t trimmed = c.trimmed_entries;
    snprintf(auto_spec, sizeof auto_spec, "disk:%s?max-size=%" PRIu64 "&trim-interval=0", dir,
             c.bytes * 8 / 10);
    if (acache_open(auto_spec, &a) != ACACHE_OK) {
        fprintf(stderr, "bench_trim: cannot open %s: %s\n", auto_spec, acache_last_error());
        goto out;
    }
    acache_id k = key_of(n + 1);
    size_t len = value_of(n + 1, buf);
    t0 = now_ns();
    if (acache_put(a, &k, buf, len, NULL) != ACACHE_OK) {
        fprintf(stderr, "bench_trim: put: %s\n", acache_last_error());
        goto out;
    }
    bool finished = false;
    while (!finished && now_ns() - t0 < (int64_t)auto_seconds * 1000000000LL) {
        struct timespec pause = { 0, 100000000 };
        nanosleep(&pause, NULL);
        acache_disk_stats(s, &c);
        finished = c.last_trim_finished;
    }
    int64_t auto_ns = now_ns() - t0;
    acache_close(a); /* stops it if it is still running */
    a = NULL;
    acache_disk_stats(s, &c);
    printf("%-8s %10.2f s  removed %" PRIu64 " entries, %.0f per second (%s; its pace depends on "
           "what else runs)\n",
           "auto", (double)auto_ns / 1e9, c.trimmed_entries - trimmed,
           (double)(c.trimmed_entries - trimmed) / ((double)auto_ns / 1e9),
           finished ? "finished" : "stopped at the time limit");

    /* full trim */
    o = (acache_trim_options)ACACHE_TRIM_OPTIONS_INIT;
    o.flags = ACACHE_TRIM_FULL;
    t0 = now_ns();
    acache_trim(s, &o, &full);
    print_trim("full", now_ns() - t0, &full);

    qsort(base.ns, base.n, sizeof *base.ns, cmp_u32);
    qsort(during.ns, during.n, sizeof *during.ns, cmp_u32);
    qsort(after.ns, after.n, sizeof *after.ns, cmp_u32);
    double b50 = pct(&base, 0.5), b99 = pct(&base, 0.99), bmean = base.sum / (double)base.seen;
    double d50 = pct(&during, 0.5), d99 = pct(&during, 0.99), dmean = during.sum / (double)during.seen;
    double a50 = pct(&after, 0.5), a99 = pct(&after, 0.99), amean = after.sum / (double)after.seen;
    printf("\nget-hit latency      p50        p99       mean      gets\n");
    printf("no trim        %8.0f ns %8.0f ns %8.0f ns %9zu\n", b50, b99, bmean, base.seen);
    printf("during trim    %8.0f ns %8.0f ns %8.0f ns %9zu\n", d50, d99, dmean, during.seen);
    printf("no trim, after %8.0f ns %8.0f ns %8.0f ns %9zu\n", a50, a99, amean, after.seen);
    printf("during/before  %8.2fx   %8.2fx   %8.2fx\n", d50 / b50, d99 / b99, dmean / bmean);
    printf("during/after   %8.2fx   %8.2fx   %8.2fx\n", d50 / a50, d99 / a99, dmean / amean);
    /* The worse of the two no-trim baselines is not taken: the better one. */
    b50 = a50 < b50 ? a50 : b50;
    bmean = amean < bmean ? amean : bmean;
    printf("\ntarget: get-hit latency during a trim within %.0fx of without: p50 %.2fx %s, "
           "mean %.2fx %s\n",
           TARGET_GET_RATIO, d50 / b50, d50 / b50 <= TARGET_GET_RATIO ? "PASS" : "MISS",
           dmean / bmean, dmean / bmean <= TARGET_GET_RATIO ? "PASS" : "MISS");
    printf("idle trim: looked at %.2f%% of the store's %" PRIu64 " files (its sweep of a few shards "
           "for expired entries and garbage; the whole store every max-age/10)\n",
           100.0 * (double)idle.files_examined / (double)(2 * n), 2 * n);
    rc = 0;
out:
    acache_close(a);
    acache_close(s);
    free(base.ns);
    free(during.ns);
    free(after.ns);
    free(warm.ns);
    if (!fill_only) {
        fprintf(stderr, "removing %s\n", dir);
        bench_rmtree(dir);
    }
    return rc;
}
