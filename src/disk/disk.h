/*
 * disk.h - the disk store's internals, shared by the files of src/disk:
 * layout.c (paths and the record format), open_list.c (the open stores),
 * counters.c (counts across processes), trim.c (eviction; trim_aside.c,
 * its checked removals), verify.c, clear.c and stats.c (maintenance), and
 * disk.c (open, get, put, delete; the layout is described at its top), the
 * only one that calls the trim from a put. Above src/disk, only the scheme table includes it (for
 * disk_open).
 */
#ifndef ACACHE_DISK_H
#define ACACHE_DISK_H

#include "core/backend.h"
#include "disk/counters.h"
#include "os/fsutil.h"
#include "os/tempfile.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

/* Shard directories per kind: XX, the first two hex digits of an id. */
#define DISK_SHARDS 256
#define DISK_RECORD_MAGIC "acache-action-v1"
#define DISK_RECORD_MAX 256
/* An action's reference to its object: a/XX/<action hex> DISK_REF_SUFFIX,
 * a hard link to the object, so that the object's link count says how many
 * actions refer to it. */
#define DISK_REF_SUFFIX ".out"
/* A used entry's time is refreshed at most this often; a trim therefore
 * keeps everything whose time is within grace + DISK_REFRESH_NS. */
#define DISK_REFRESH_NS (10LL * 60 * 1000000000LL)
/* Temp files and unreferenced links this old belong to a process that
 * died; younger ones may belong to a put still running elsewhere. */
#define DISK_STALE_NS (3600LL * 1000000000LL)
/* Defaults of the spec options. */
#define DISK_DEFAULT_MAX_SIZE (10ull << 30)
#define DISK_DEFAULT_MAX_AGE_NS (30LL * 86400 * 1000000000LL)
#define DISK_DEFAULT_GRACE_NS (10LL * 60 * 1000000000LL)
#define DISK_DEFAULT_TRIM_INTERVAL_NS (3600LL * 1000000000LL)

/* The automatic trim of one open store: at most one background thread. */
typedef struct auto_trim {
    pthread_mutex_t mu;         /* guards started/thread */
    bool started;               /* a thread was created and not yet joined */
    pthread_t thread;
    pid_t pid;                  /* the process that created it (fork) */
    atomic_bool stop;           /* set by close: the thread stops promptly */
    atomic_bool done;           /* the thread has finished */
    atomic_int_least64_t next_check_ns;
} auto_trim;

/* Where puts go when the store's file system is full (overflow.c). */
typedef struct overflow {
    pthread_mutex_t mu;         /* guards making dir */
    char dir[ACACHE_PATH_MAX];  /* "" until the first such put */
} overflow;

typedef struct disk {
    char root[ACACHE_PATH_MAX]; /* absolute path of ROOT/v1 */
    size_t rootlen;
    int rootfd;                 /* ROOT/v1, so lookups walk 3 components, not all */
    bool fsync;
    bool verify_reads;
    bool spill;                 /* spill=on: full disk -> overflow.c */
    fs_perms perms;             /* umask=: modes of what the store makes */
    uint64_t max_size;
    int64_t max_age_ns;
    int64_t grace_ns;
    int64_t trim_interval_ns;   /* < 0: no automatic trim */
    counters cnt;
    auto_trim at;
    overflow ovf;
    struct disk *next_open;     /* the list of open disk stores */
} disk;

/* The backend constructor (the scheme table's "disk"). */
acache_status disk_open(spec *s, void **self, const backend_ops **ops);

/* Disk usage of a file of this size, as the estimate counts it: whole
 * 4 KiB blocks (what ext4, xfs and tmpfs allocate). */
static inline uint64_t disk_usage(uint64_t size) { return (size + 4095) & ~(uint64_t)4095; }

/* layout.c: true if s[0..n) is lowercase hex, as the store's names are. */
bool disk_is_hex(const char *s, size_t n);
/* layout.c: ROOT/v1/<kind>/XX/<hex> into out (ACACHE_PATH_MAX bytes). */
void disk_entry_path(const disk *d, char kind, const acache_id *id, char *out);

/* The part of an absolute entry path below ROOT/v1/, for *at() calls. */
static inline const char *disk_rel(const disk *d, const char *path)
{
    return path + d->rootlen + 1;
}

/* layout.c: parses a record read from the file named by ahex (the action's hex id).
 * ACACHE_CORRUPT unless it is whole and names that action. */
acache_status disk_parse_record(const char *buf, size_t n, const char *ahex,
                                acache_id *output, uint64_t *size, int64_t *time_ns);

/* layout.c: opens the directory rel below ROOT/v1 ("a/3f", "tmp") for reading; NULL
 * if it cannot (it does not exist, most often). */
DIR *disk_opendir(const disk *d, const char *rel);

/* trim_lock.c: takes the trim lock (ROOT/v1/trim.lock), waiting for it or not.
 * Returns the descriptor holding it (close it to let go), or -1 with errno
 * (EWOULDBLOCK: another process holds it). Trims, clear and repairs take
 * it, so that they never run at once. One that waits first asks an
 * automatic trim holding it to stop (ROOT/v1/trim.stop), as that one may
 * be slow on a busy machine. */
int disk_trim_lock(disk *d, bool wait);

/* open_list.c: the disk store a store handle is, or whose home tier is
 * (NULL otherwise, with an error message naming `what`). */
disk *disk_of_store(acache_store *store, const char *what);
/* open_list.c: adds a store disk_open made / removes one disk_close frees. */
void disk_register(disk *d);
void disk_unregister(disk *d);

/* trim.c: starts a background trim when one is due (called after a put). */
void trim_after_put(disk *d);
/* trim.c: stops the background trim, if any, and waits for it (close). */
void trim_stop(disk *d);
/* trim_state.c: records a new, empty store as just trimmed (the first trim is
 * due one interval later). */
void trim_mark_fresh(disk *d);
/* trim_state.c: fills the last_trim_* fields from ROOT/v1/trim.state. */
void trim_last(disk *d, acache_disk_counters *out);

/* overflow.c: whether err (ENOSPC, EDQUOT) sends a put to the overflow. */
bool overflow_cause(int err);
/* overflow.c: a new temp file in the overflow directory (made on first
 * use); 0 or an errno value. */
int overflow_temp(disk *d, tempfile *t);
/* overflow.c: moves a put to the overflow: its first `written` bytes are
 * copied from t into a new temp file there, which replaces t (the old one
 * is closed; removing its name is the caller's: it may be renamed
 * already); 0 or an errno value. */
int overflow_adopt(disk *d, tempfile *t, uint64_t written);
/* overflow.c: renames the overflow temp file t to its object name there,
 * into out (ACACHE_PATH_MAX bytes), and counts a spilled put. */
int overflow_place(disk *d, tempfile *t, const acache_id *output, char *out);
/* overflow.c: removes the overflow directory, if any (close). */
void overflow_close(disk *d);

#endif
