/*
 * build_once.c - acache_get_or_build(): get, and on a miss build exactly
 * once, however many threads and processes ask for the same action at once.
 *
 * In a process: a table of builds in flight, keyed by (store handle,
 * backend id). The first thread to miss becomes the builder; the others
 * sleep on the entry's condition variable and, when it is done, read what
 * the builder stored (or return its error: they do not retry). The entry
 * leaves the table as soon as the build ends, so a later call starts afresh.
 *
 * Across processes (and across store handles of one process): the builder
 * takes flock(2) on ROOT/v1/locks/<backend id hex> of the store's home tier
 * (backend op local_dir). flock belongs to the open file, so the kernel
 * drops it when its holder dies, however it dies. A process that finds the
 * lock held polls for it up to a timeout, then looks in the store again:
 * the holder's entry is there, or the holder died and this one builds. The
 * holder removes the lock file before it lets go; a waiter that then gets
 * the lock on a file no longer at that path lets go and tries again, so
 * only one process ever holds the lock on the file at the path.
 *
 * The hit path is one acache_get(): no lock, no table. This file must never
 * run a build while holding the table mutex, never let two threads of one
 * process build one (store, id) at once, and never make a build fail
 * because a lock file could not be made (it builds without one).
 */
#include "core/backend.h"
#include "compose/build_once.h"
#include "core/error.h"
#include "compose/namespace.h"
#include "os/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Buckets of the in-flight table (a power of two). */
#define INFLIGHT_BUCKETS 64
/* Polling a held lock: first and longest pause between tries. */
#define LOCK_POLL_MIN_NS (1000000LL)
#define LOCK_POLL_MAX_NS (20000000LL)
/* ------------------------------------------------------------------ */
/* Builds in flight in this process                                     */

typedef struct inflight {
    struct inflight *next;
    const acache_store *store;
    acache_id key;            /* the backend id */
    pthread_cond_t done_cv;
    bool done;
    unsigned refs;            /* the builder and each waiter */
    acache_status status;     /* the builder's outcome: OK, MISS or an error */
    char msg[1024];           /* its message, for waiters */
} inflight;

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static inflight *table[INFLIGHT_BUCKETS];

static inflight **bucket(const acache_id *key)
{
    return &table[key->bytes[0] & (INFLIGHT_BUCKETS - 1)];
}

/* Drops one reference; the last frees. Called with table_mu held. */
static void inflight_unref(inflight *e)
{
    if (--e->refs > 0)
        return;
    pthread_cond_destroy(&e->done_cv);
    free(e);
}

/* Publishes the builder's outcome, wakes the waiters and takes the entry
 * out of the table, so that the next caller starts afresh. */
static void inflight_finish(inflight *e, acache_status st, const char *msg)
{
    pthread_mutex_lock(&table_mu);
    e->done = true;
    e->status = st;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    for (inflight **p = bucket(&e->key); *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    pthread_cond_broadcast(&e->done_cv);
    inflight_unref(e);
    pthread_mutex_unlock(&table_mu);
}

/* ------------------------------------------------------------------ */
/* The lock between processes                                           */

typedef struct proc_lock {
    int fd;
    char path[ACACHE_PATH_MAX];
} proc_lock;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Whether fd is still the file at path (the holder removes it on release). */
static bool still_linked(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Best effort: the pid of the holder, for a message. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

typedef enum lock_result {
    LOCK_TAKEN,      /* free at once */
    LOCK_AFTER_WAIT, /* someone held it; now we do */
    LOCK_TIMED_OUT,  /* someone still holds it */
    LOCK_NONE,       /* no lock could be made (message set); build without */
} lock_result;

static lock_result lock_take(const char *dir, const acache_id *key, uint32_t timeout_ms,
                             proc_lock *lk)
{
    char hex[ACACHE_ID_HEX_SIZE], locks[ACACHE_PATH_MAX];
    acache_id_to_hex(key, hex);
    lk->fd = -1;
    int n = snprintf(locks, sizeof locks, "%s/locks", dir);
    if (n < 0 || (size_t)n >= sizeof locks ||
        snprintf(lk->path, sizeof lk->path, "%s/%s", locks, hex) >= (int)sizeof lk->path) {
        set_error(ACACHE_EINVAL, "build lock: path too long under %s", dir);
        return LOCK_NONE;
    }
    /* A store shared by a group (its umask option) shares its locks too:
     * they take the permissions of the store's directory. */
    struct stat ds;
    fs_perms perms = FS_PERMS_PRIVATE;
    if (stat(dir, &ds) == 0 && (ds.st_mode & 0070))
        perms = (fs_perms){ ds.st_mode & 07777, ds.st_mode & 0666 };
    int merr = fs_mkdirat(AT_FDCWD, locks, perms.dir);
    if (merr && merr != EEXIST) {
        set_errno_error(merr, "build lock: cannot create %s", locks);
        return LOCK_NONE;
    }
    int64_t deadline = mono_ns() + (int64_t)timeout_ms * 1000000;
    int64_t pause = LOCK_POLL_MIN_NS;
    bool waited = false;
    int fd = -1;
    for (;;) {
        if (fd < 0) {
            fd = open(lk->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, perms.file);
            if (fd >= 0)
                fs_share(fd, &perms);
            if (fd < 0) {
                set_errno_error(errno, "build lock: cannot open %s", lk->path);
                return LOCK_NONE;
            }
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            if (still_linked(fd, lk->path)) {
                char pid[32];
                int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
                if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) < 0) {
                    /* The pid is only for messages. */
                }
                lk->fd = fd;
                return waited ? LOCK_AFTER_WAIT : LOCK_TAKEN;
            }
            /* Its holder removed it as we got it: take the new one. */
            close(fd);
            fd = -1;
            continue;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            set_errno_error(errno, "build lock: flock %s", lk->path);
            close(fd);
            return LOCK_NONE;
        }
        waited = true;
        int64_t now = mono_ns();
        if (now >= deadline) {
            set_error(ACACHE_EIO, "build lock %s: still held by process %ld after %u ms; "
                      "building without it", lk->path, holder_pid(fd), timeout_ms);
            close(fd);
            return LOCK_TIMED_OUT;
        }
        sleep_ns(pause < deadline - now ? pause : deadline - now);
        if (pause < LOCK_POLL_MAX_NS)
            pause *= 2;
    }
}

static void lock_release(proc_lock *lk)
{
    if (lk->fd < 0)
        return;
    /* Unlinked before unlocked: see the top of the file. */
    unlink(lk->path);
    close(lk->fd);
    lk->fd = -1;
}

/* ------------------------------------------------------------------ */
/* Building                                                             */

/* Runs the callback into a put and commits it; then fills res as a get
 * would. ACACHE_MISS when the store took the put but does not have it. */
static acache_status run_build(acache_store *store, const acache_id *action,
                               acache_build_fn build, void *ctx, unsigned flags,
                               acache_result *res)
{
    acache_put_stream *ps = NULL;
    acache_result committed;
    acache_status st = acache_put_begin(store, action, &ps);
    if (st != ACACHE_OK)
        return st;
    clear_error();
    acache_status bst = build(ctx, action, ps);
    if (bst != ACACHE_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", acache_last_error());
        acache_put_abort(ps);
        if (bst > 0)
            bst = ACACHE_EIO; /* only an error may say the build failed */
        if (msg[0])
            return set_error(bst, "%s", msg);
        return set_error(bst, "build callback failed (%s)", acache_status_str(bst));
    }
    memset(&committed, 0, sizeof committed);
    st = acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &committed);
    if (st != ACACHE_OK)
        return st;
    if (!(flags & ACACHE_GET_DATA) && committed.path[0]) {
        memcpy(res, &committed, sizeof *res);
        return ACACHE_OK;
    }
    st = acache_get(store, action, flags, res);
    if (st == ACACHE_MISS)
        set_error(ACACHE_MISS, "built, but the store did not keep the output (%llu bytes)",
                  (unsigned long long)committed.size);
    return st;
}

/* The builder's side, once it owns the in-flight entry. */
static acache_status lead(acache_store *store, const acache_id *action, const acache_id *key,
                          acache_build_fn build, void *ctx, const acache_build_options *o,
                          acache_result *res, acache_build_outcome *outcome)
{
    proc_lock lk = { .fd = -1 };
    lock_result lr = LOCK_NONE;
    const char *dir = store->ops->local_dir ? store->ops->local_dir(store->self) : NULL;
    acache_status st;
    if (dir) {
        uint32_t timeout = o->lock_timeout_ms ? o->lock_timeout_ms : ACACHE_BUILD_LOCK_TIMEOUT_MS;
        lr = lock_take(dir, key, timeout, &lk);
        /* Whoever held it may have stored the entry since our miss. */
        if (lr == LOCK_TAKEN || lr == LOCK_AFTER_WAIT) {
            st = acache_get(store, action, o->flags, res);
            if (st == ACACHE_OK) {
                *outcome = lr == LOCK_AFTER_WAIT ? ACACHE_BUILD_WAITED_PROCESS : ACACHE_BUILD_HIT;
                goto out;
            }
        }
    }
    st = run_build(store, action, build, ctx, o->flags, res);
    *outcome = lr == LOCK_TIMED_OUT ? ACACHE_BUILD_BUILT_AFTER_TIMEOUT : ACACHE_BUILD_BUILT;
out:
    lock_release(&lk);
    return st;
}

unsigned build_once_waiters(const acache_store *store, const acache_id *action)
{
    acache_id key;
    unsigned n = 0;
    store_backend_id(store, action, &key);
    pthread_mutex_lock(&table_mu);
    for (inflight *e = *bucket(&key); e; e = e->next)
        if (e->store == store && memcmp(&e->key, &key, sizeof key) == 0 && !e->done)
            n = e->refs - 1;
    pthread_mutex_unlock(&table_mu);
    return n;
}

acache_status acache_get_or_build_ex(acache_store *store, const acache_id *action,
                                     acache_build_fn build, void *ctx,
                                     const acache_build_options *opts, acache_result *res)
{
    static const acache_build_options defaults = { 0, 0, NULL };
    const acache_build_options *o = opts ? opts : &defaults;
    acache_build_outcome outcome = ACACHE_BUILD_HIT;
    acache_status st;
    if (!store || !action || !build || !res)
        return set_error(ACACHE_EINVAL, "acache_get_or_build: NULL argument");

    st = acache_get(store, action, o->flags, res);
    if (st == ACACHE_OK)
        goto out;

    acache_id key;
    store_backend_id(store, action, &key);
    pthread_mutex_lock(&table_mu);
    inflight *e = *bucket(&key);
    while (e && (e->store != store || memcmp(&e->key, &key, sizeof key) != 0))
        e = e->next;
    if (e) {
        e->refs++;
        while (!e->done)
            pthread_cond_wait(&e->done_cv, &table_mu);
        acache_status built = e->status;
        char msg[sizeof e->msg];
        memcpy(msg, e->msg, sizeof msg);
        inflight_unref(e);
        pthread_mutex_unlock(&table_mu);
        outcome = ACACHE_BUILD_WAITED;
        if (built != ACACHE_OK) {
            st = set_error(built, "%s", msg);
            goto out;
        }
        st = acache_get(store, action, o->flags, res);
        if (st == ACACHE_MISS)
            set_error(ACACHE_MISS, "built by another thread, but the store did not keep it");
        goto out;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&table_mu);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    e->store = store;
    e->key = key;
    e->refs = 1;
    pthread_cond_init(&e->done_cv, NULL);
    e->next = *bucket(&key);
    *bucket(&key) = e;
    pthread_mutex_unlock(&table_mu);

    st = lead(store, action, &key, build, ctx, o, res, &outcome);
    inflight_finish(e, st, st == ACACHE_OK ? "" : acache_last_error());
out:
    if (o->outcome)
        *o->outcome = outcome;
    return st;
}

acache_status acache_get_or_build(acache_store *store, const acache_id *action,
                                  acache_build_fn build, void *ctx, acache_result *result)
{
    return acache_get_or_build_ex(store, action, build, ctx, NULL, result);
}
