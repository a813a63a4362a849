/*
 * counters.c - a disk store's counters across processes (see counters.h for
 * the scheme): per-process files written with one pwrite and no lock,
 * folded into a few shard files under short flocks.
 *
 * It must never take a lock on the path of a get or a put, never fail a
 * store operation (every error here is swallowed: counters are best
 * effort), and never count a process's totals twice, even when a process
 * dies in the middle of folding them. A name read from a file (a shard's
 * "folded") is acted on only if it is one this file makes: anyone who can
 * write stats/ must not be able to remove a file outside it.
 */
#include "disk/counters.h"
#include "os/clock.h"
#include "os/tempfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATS_DIR "stats"
#define SHARDS 8
#define MAGIC "acache-counters-v1"
#define FILE_MAX 2048
/* After failing to create its file, a process tries again this much later. */
#define RETRY_NS (10LL * 1000000000LL)
/* An unreadable process file this old is not being created: removed. */
#define JUNK_NS (60LL * 1000000000LL)

static const char *const field_names[CNT_COUNT] = {
    [CNT_HITS] = "hits",
    [CNT_MISSES] = "misses",
    [CNT_CORRUPT] = "corrupt",
    [CNT_ERRORS] = "errors",
    [CNT_PUTS] = "puts",
    [CNT_BYTES_WRITTEN] = "bytes-written",
    [CNT_BYTES_READ] = "bytes-read",
    [CNT_TRIMMED_ENTRIES] = "trimmed-entries",
    [CNT_TRIMMED_BYTES] = "trimmed-bytes",
    [CNT_REPAIRED] = "repaired",
    [CNT_SPILLED] = "spilled",
    [CNT_ENTRIES] = "entries",
    [CNT_OBJECTS] = "objects",
    [CNT_SIZE] = "size",
};

/* What one counter file holds. */
typedef struct counter_file {
    int64_t v[CNT_COUNT];
    int64_t counted_ns;
    char folded[64]; /* shards: the process file folded last */
} counter_file;

void counters_init(counters *c, const char *root, int rootfd, fs_perms perms)
{
    memset(c, 0, sizeof *c);
    c->root = root;
    c->rootfd = rootfd;
    c->perms = perms;
    c->procfd = -1;
    c->pid = getpid();
    pthread_mutex_init(&c->mu, NULL);
}

/* A child of fork() that goes on using its parent's store counts for
 * itself: it drops the parent's file (whose flock stays the parent's)
 * and its counts so far. Called with mu held. */
static void fork_check(counters *c)
{
    if (c->pid == getpid())
        return;
    if (c->procfd >= 0)
        close(c->procfd);
    c->procfd = -1;
    c->procname[0] = '\0';
    for (int i = 0; i < CNT_COUNT; i++)
        atomic_store(&c->v[i], 0);
    memset(c->written, 0, sizeof c->written);
    c->pid = getpid();
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Formats a counter file; returns its length. */
static size_t format_file(const counter_file *f, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, MAGIC "\n");
    for (int i = 0; i < CNT_COUNT; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s %" PRId64 "\n", field_names[i], f->v[i]);
    n += (size_t)snprintf(buf + n, size - n, "counted %" PRId64 "\n", f->counted_ns);
    if (f->folded[0])
        n += (size_t)snprintf(buf + n, size - n, "folded %s\n", f->folded);
    n += (size_t)snprintf(buf + n, size - n, "end %016" PRIx64 "\n", fnv1a(buf, n));
    return n;
}

/* Whether name is one of the process files this file makes
 * (proc-<pid>-<mkostemp letters>): a plain name in stats/, nothing else. */
static bool is_proc_name(const char *name)
{
    size_t n = strlen(name);
    if (n <= 5 || n >= sizeof ((counter_file *)0)->folded || strncmp(name, "proc-", 5) != 0)
        return false;
    for (size_t i = 5; i < n; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-'))
            return false;
    }
    return true;
}

/* Parses a counter file; false if it is not whole (torn, or junk). Lines
 * after "end" are left over from a longer earlier version: ignored. A
 * "folded" that is not a process file's name is dropped, never used. */
static bool parse_file(const char *buf, size_t n, counter_file *f)
{
    memset(f, 0, sizeof *f);
    size_t mlen = sizeof MAGIC - 1;
    if (n < mlen + 1 || memcmp(buf, MAGIC "\n", mlen + 1) != 0)
        return false;
    const char *p = buf + mlen + 1, *end = buf + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return false;
        char line[128];
        size_t len = (size_t)(nl - p);
        if (len >= sizeof line)
            return false;
        memcpy(line, p, len);
        line[len] = '\0';
        if (strncmp(line, "end ", 4) == 0) {
            char *stop = NULL;
            uint64_t sum = strtoull(line + 4, &stop, 16);
            return *stop == '\0' && sum == fnv1a(buf, (size_t)(p - buf));
        }
        char *sp = strchr(line, ' ');
        if (!sp)
            return false;
        *sp = '\0';
        const char *value = sp + 1;
        if (strcmp(line, "folded") == 0) {
            if (is_proc_name(value))
                snprintf(f->folded, sizeof f->folded, "%s", value);
        } else {
            char *stop = NULL;
            errno = 0;
            long long x = strtoll(value, &stop, 10);
            if (errno || *stop != '\0' || stop == value)
                return false;
            if (strcmp(line, "counted") == 0)
                f->counted_ns = x;
            for (int i = 0; i < CNT_COUNT; i++)
                if (strcmp(line, field_names[i]) == 0)
                    f->v[i] = x;
        }
        p = nl + 1;
    }
    return false;
}

/* Reads a counter file from fd; retries a few times over a torn read. */
static bool read_file_fd(int fd, counter_file *f)
{
    char buf[FILE_MAX];
    for (int tries = 0; tries < 5; tries++) {
        ssize_t n = pread(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return false;
        if (parse_file(buf, (size_t)n, f))
            return true;
    }
    return false;
}

static bool read_file_at(int dirfd, const char *name, counter_file *f)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    memset(f, 0, sizeof *f);
    if (fd < 0)
        return false;
    bool ok = read_file_fd(fd, f);
    close(fd);
    return ok;
}

static int stats_dir(counters *c)
{
    int fd = openat(c->rootfd, STATS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && fs_mkdirat(c->rootfd, STATS_DIR, c->perms.dir) == 0)
        fd = openat(c->rootfd, STATS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd;
}

/* Which shard a process file folds into: a function of its name only, so
 * that whoever folds it (its owner or a later reader) picks the same one. */
static int shard_of(const char *name) { return (int)(fnv1a(name, strlen(name)) % SHARDS); }

static int lock_shard(counters *c, int dirfd, int shard)
{
    char name[32];
    snprintf(name, sizeof name, "lock-%d", shard);
    int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, c->perms.file);
    if (fd < 0)
        return -1;
    fs_share(fd, &c->perms);
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void unlock_shard(int fd)
{
    if (fd >= 0)
        close(fd); /* drops the flock */
}

/* Replaces a shard file (temp file, then rename). The caller holds its lock. */
static bool write_shard(counters *c, int dirfd, int shard, const counter_file *f)
{
    char buf[FILE_MAX], dir[ACACHE_PATH_MAX + 16], prefix[32], name[32];
    size_t n = format_file(f, buf, sizeof buf);
    snprintf(dir, sizeof dir, "%s/" STATS_DIR, c->root);
    snprintf(prefix, sizeof prefix, ".shard-%d-", shard);
    snprintf(name, sizeof name, "shard-%d", shard);
    return tempfile_replace(dir, prefix, dirfd, name, buf, n, TEMPFILE_MODE(c->perms.file)) == 0;
}

/*
 * Adds add[] into a shard; when name is given, it is a process file whose
 * totals add[] are, removed once folded. Holding the shard's lock, it first
 * removes the file the shard folded last if it is still there (its folder
 * died between the fold and the removal), and skips a file already folded.
 */
static void fold_locked(counters *c, int dirfd, int shard, const int64_t *add, const char *name,
                        ino_t ino)
{
    counter_file f;
    char sname[32];
    struct stat sb;
    snprintf(sname, sizeof sname, "shard-%d", shard);
    read_file_at(dirfd, sname, &f);
    if (f.folded[0] && (!name || strcmp(f.folded, name) != 0))
        unlinkat(dirfd, f.folded, 0);
    if (name && strcmp(f.folded, name) == 0) {
        unlinkat(dirfd, name, 0);
        return;
    }
    /* Gone, or another file by now: someone folded it while we read it. */
    if (name && (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || sb.st_ino != ino))
        return;
    for (int i = 0; i < CNT_COUNT; i++)
        f.v[i] += add[i];
    snprintf(f.folded, sizeof f.folded, "%s", name ? name : "");
    if (write_shard(c, dirfd, shard, &f) && name)
        unlinkat(dirfd, name, 0);
}

static void fold(counters *c, int dirfd, int shard, const int64_t *add, const char *name,
                 ino_t ino)
{
    int lk = lock_shard(c, dirfd, shard);
    if (lk < 0)
        return;
    fold_locked(c, dirfd, shard, add, name, ino);
    unlock_shard(lk);
}

static void snapshot(counters *c, int64_t *out)
{
    for (int i = 0; i < CNT_COUNT; i++)
        out[i] = atomic_load_explicit(&c->v[i], memory_order_relaxed);
}

/* Creates this process's file: a unique name, locked before its first
 * byte is written (a reader that finds it empty and fresh leaves it). */
static bool create_proc_file(counters *c)
{
    char dir[ACACHE_PATH_MAX + 16], prefix[40];
    tempfile t;
    int dirfd = stats_dir(c);
    if (dirfd < 0)
        return false;
    close(dirfd);
    snprintf(dir, sizeof dir, "%s/" STATS_DIR, c->root);
    snprintf(prefix, sizeof prefix, "proc-%ld-", (long)getpid());
    if (tempfile_create(&t, dir, prefix) != 0)
        return false;
    fs_share(t.fd, &c->perms);
    while (flock(t.fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            tempfile_discard(&t);
            return false;
        }
    }
    /* Kept under its unique name: it is this process's file, not renamed. */
    c->procfd = t.fd;
    snprintf(c->procname, sizeof c->procname, "%s", strrchr(t.path, '/') + 1);
    return true;
}

static void flush_locked(counters *c, int64_t now)
{
    counter_file f;
    char buf[FILE_MAX];
    fork_check(c);
    memset(&f, 0, sizeof f);
    snapshot(c, f.v);
    /* Nothing new since the last write (or nothing at all yet, and no file
     * to make for it): the file already says it. */
    if (memcmp(f.v, c->written, sizeof c->written) == 0)
        return;
    if (c->procfd < 0) {
        if (now < c->retry_ns)
            return;
        if (!create_proc_file(c)) {
            c->retry_ns = now + RETRY_NS;
            return;
        }
    }
    size_t n = format_file(&f, buf, sizeof buf);
    if (pwrite(c->procfd, buf, n, 0) == (ssize_t)n)
        memcpy(c->written, f.v, sizeof c->written);
}

void counters_flush(counters *c)
{
    pthread_mutex_lock(&c->mu);
    flush_locked(c, fs_now_ns());
    pthread_mutex_unlock(&c->mu);
}

void counters_flush_due(counters *c, int64_t now, int64_t every_ns)
{
    int64_t last = atomic_load_explicit(&c->last_flush_ns, memory_order_relaxed);
    if (now - last < every_ns || !atomic_compare_exchange_strong(&c->last_flush_ns, &last, now))
        return;
    counters_flush(c);
}

void counters_close(counters *c)
{
    int64_t v[CNT_COUNT];
    bool any = false;
    fork_check(c);
    snapshot(c, v);
    for (int i = 0; i < CNT_COUNT; i++)
        any |= v[i] != 0;
    int dirfd = any || c->procfd >= 0 ? stats_dir(c) : -1;
    if (dirfd >= 0) {
        struct stat sb;
        if (c->procfd >= 0 && fstat(c->procfd, &sb) == 0)
            fold(c, dirfd, shard_of(c->procname), v, c->procname, sb.st_ino);
        else if (c->procfd < 0)
            fold(c, dirfd, (int)(getpid() % SHARDS), v, NULL, 0);
        close(dirfd);
    }
    if (c->procfd >= 0)
        close(c->procfd);
    c->procfd = -1;
    pthread_mutex_destroy(&c->mu);
}

/* Sums what the directory holds. With fold_dead, the files of processes
 * that died are folded first; without (all shard locks held), only read. */
static void sum_dir(counters *c, int dirfd, bool fold_dead, counter_totals *out)
{
    memset(out, 0, sizeof *out);
    int dfd = dup(dirfd);
    DIR *dp = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!dp && dfd >= 0)
        close(dfd); /* fdopendir takes the descriptor only when it succeeds */
    if (dp) {
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            if (!is_proc_name(de->d_name) || strcmp(de->d_name, c->procname) == 0)
                continue;
            int fd = openat(dirfd, de->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0)
                continue;
            counter_file f;
            bool ok = read_file_fd(fd, &f);
            if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
                /* Alive: its running totals count. */
                for (int i = 0; ok && i < CNT_COUNT; i++)
                    out->v[i] += f.v[i];
            } else {
                /* Dead: its totals are not in any shard yet. */
                struct stat sb;
                ok = read_file_fd(fd, &f) && fstat(fd, &sb) == 0; /* now that nobody writes it */
                if (ok && fold_dead)
                    fold(c, dirfd, shard_of(de->d_name), f.v, de->d_name, sb.st_ino);
                for (int i = 0; ok && !fold_dead && i < CNT_COUNT; i++)
                    out->v[i] += f.v[i];
                if (!ok && fold_dead && fstat(fd, &sb) == 0 &&
                    fs_now_ns() - (int64_t)sb.st_mtime * 1000000000LL > JUNK_NS)
                    unlinkat(dirfd, de->d_name, 0);
            }
            close(fd);
        }
        closedir(dp);
    }
    for (int i = 0; i < CNT_COUNT; i++)
        out->v[i] += c->procfd >= 0 ? c->written[i] : atomic_load(&c->v[i]);
    for (int s = 0; s < SHARDS; s++) {
        char name[32];
        counter_file f;
        snprintf(name, sizeof name, "shard-%d", s);
        if (!read_file_at(dirfd, name, &f))
            continue;
        for (int i = 0; i < CNT_COUNT; i++)
            out->v[i] += f.v[i];
        if (f.counted_ns > out->counted_ns)
            out->counted_ns = f.counted_ns;
    }
}

void counters_read(counters *c, counter_totals *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    if (c->procfd >= 0)
        flush_locked(c, fs_now_ns());
    int dirfd = stats_dir(c);
    if (dirfd >= 0) {
        sum_dir(c, dirfd, true, out);
        close(dirfd);
    } else {
        for (int i = 0; i < CNT_COUNT; i++)
            out->v[i] = atomic_load(&c->v[i]);
    }
    pthread_mutex_unlock(&c->mu);
}

void counters_calibrate(counters *c, int64_t entries, int64_t objects, int64_t size)
{
    int locks[SHARDS];
    counter_totals now;
    int dirfd = stats_dir(c);
    if (dirfd < 0)
        return;
    counters_read(c, &now); /* folds the dead first */
    pthread_mutex_lock(&c->mu);
    int held = 0;
    for (; held < SHARDS; held++)
        if ((locks[held] = lock_shard(c, dirfd, held)) < 0)
            break;
    if (held == SHARDS) {
        /* With every shard locked, nobody folds: the sum is stable but for
         * live processes' own files, whose later deltas are new puts. */
        sum_dir(c, dirfd, false, &now);
        int64_t add[CNT_COUNT] = { 0 };
        add[CNT_ENTRIES] = entries - now.v[CNT_ENTRIES];
        add[CNT_OBJECTS] = objects - now.v[CNT_OBJECTS];
        add[CNT_SIZE] = size - now.v[CNT_SIZE];
        counter_file f;
        read_file_at(dirfd, "shard-0", &f);
        if (f.folded[0])
            unlinkat(dirfd, f.folded, 0);
        f.folded[0] = '\0';
        for (int i = 0; i < CNT_COUNT; i++)
            f.v[i] += add[i];
        f.counted_ns = fs_now_ns();
        write_shard(c, dirfd, 0, &f);
    }
    for (int i = 0; i < held; i++)
        unlock_shard(locks[i]);
    pthread_mutex_unlock(&c->mu);
    close(dirfd);
}

void counters_mark_counted(counters *c)
{
    int dirfd = stats_dir(c);
    if (dirfd < 0)
        return;
    int lk = lock_shard(c, dirfd, 0);
    if (lk >= 0) {
        counter_file f;
        read_file_at(dirfd, "shard-0", &f);
        if (f.counted_ns == 0) {
            f.counted_ns = fs_now_ns();
            write_shard(c, dirfd, 0, &f);
        }
        unlock_shard(lk);
    }
    close(dirfd);
}
