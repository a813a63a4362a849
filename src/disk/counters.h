/*
 * counters.h - a disk store's counters, kept across processes: hits,
 * misses, errors, puts, bytes, and the estimate of what the store holds
 * (entries, objects, disk usage) that tells a trim, without a scan,
 * whether it has work to do.
 *
 * Each process counts in memory and writes its running totals to its own
 * file, ROOT/v1/stats/proc-<pid>-<random>, with one pwrite and no lock (a
 * put at most every 50 ms, a get at most every 5 s). It
 * holds an flock on that file for as long as it lives. At close it folds
 * its totals into one of a few shard files (ROOT/v1/stats/shard-N, chosen
 * by its file's name) under that shard's lock file, then removes its file.
 * The file of a process that died (its flock is gone) is folded by the next
 * reader. A fold is made idempotent by the shard remembering the last file
 * it folded: a crash between the fold and the removal is caught before the
 * next fold into that shard.
 *
 * Readers sum the shards and the live process files. Nothing here is ever
 * on the path of a get except adding to in-memory atomics (and, at most
 * every few seconds, one pwrite). A put writes at most every 50 ms, so a
 * process killed loses at most its last 50 ms of counts.
 */
#ifndef ACACHE_COUNTERS_H
#define ACACHE_COUNTERS_H

#include "acache.h"
#include "os/fsutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* What is counted. Every field is a signed sum of deltas. */
enum counter_field {
    CNT_HITS,
    CNT_MISSES,
    CNT_CORRUPT,         /* entries found corrupt and removed (among misses) */
    CNT_ERRORS,
    CNT_PUTS,
    CNT_BYTES_WRITTEN,   /* bytes of committed puts */
    CNT_BYTES_READ,      /* bytes of hits */
    CNT_TRIMMED_ENTRIES, /* entries removed by trims */
    CNT_TRIMMED_BYTES,   /* disk usage freed by trims */
    CNT_REPAIRED,        /* objects a put found damaged and replaced */
    CNT_SPILLED,         /* puts the full file system sent to the overflow */
    CNT_ENTRIES,         /* estimate: action records held */
    CNT_OBJECTS,         /* estimate: objects held */
    CNT_SIZE,            /* estimate: disk usage of records and objects */
    CNT_COUNT
};

/* The counters of one open disk store. */
typedef struct counters {
    const char *root;                 /* ROOT/v1 (absolute; the store's) */
    int rootfd;                       /* ROOT/v1 */
    fs_perms perms;                   /* of the files and directories made */
    atomic_int_least64_t v[CNT_COUNT]; /* this process's totals */
    atomic_int_least64_t last_flush_ns;
    pthread_mutex_t mu;               /* guards the fields below */
    pid_t pid;                        /* the process counting (fork) */
    int procfd;                       /* our file in stats/, or -1 */
    char procname[64];
    int64_t retry_ns;                 /* when to try creating it again */
    int64_t written[CNT_COUNT];       /* what the file holds */
} counters;

/* Totals across processes, as read from the stats directory. */
typedef struct counter_totals {
    int64_t v[CNT_COUNT];
    int64_t counted_ns; /* when the estimate was last set from a full count; 0 never */
} counter_totals;

void counters_init(counters *c, const char *root, int rootfd, fs_perms perms);

static inline void counters_add(counters *c, enum counter_field f, int64_t n)
{
    atomic_fetch_add_explicit(&c->v[f], n, memory_order_relaxed);
}

/* Writes this process's totals to its file (creating it the first time).
 * Best effort: a store that cannot write its counters still works. */
void counters_flush(counters *c);

/* counters_flush() unless the last one was less than every_ns ago; now is
 * fs_now_ns(). */
void counters_flush_due(counters *c, int64_t now, int64_t every_ns);
/* How often gets (and trims) and puts write the process's counts. */
#define COUNTERS_GET_FLUSH_NS (5LL * 1000000000LL)
#define COUNTERS_PUT_FLUSH_NS (50LL * 1000000LL)

/* Folds this process's totals into a shard and removes its file. */
void counters_close(counters *c);

/* Sums the shards and every process file (this process's after a flush),
 * folding the files of processes that died. */
void counters_read(counters *c, counter_totals *out);

/* Sets the estimate (entries, objects, size) to what a full count found,
 * and records the time of the count. */
void counters_calibrate(counters *c, int64_t entries, int64_t objects, int64_t size);

/* Marks a store created empty as counted (its estimate starts exact). */
void counters_mark_counted(counters *c);

#endif
