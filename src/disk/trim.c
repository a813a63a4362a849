/*
 * trim.c - keeps a disk store bounded: evicts least recently used entries
 * down to 90% of max-size, entries unused for max-age, and the leftovers of
 * processes that died; runs in a background thread started by a put at most
 * once per trim-interval, or when asked (acache_trim).
 *
 * How it stays cheap. The size comes from the cross-process estimate
 * (counters.c), so a trim with nothing to evict reads a few small files.
 * When over the limit it works through slices of the 256 action shard
 * directories, starting where the last trim stopped: in each it lists the
 * records, and evicts the oldest of them (a share of the slice twice the
 * share the store must lose, so that about half the store is listed at
 * most) until the estimate is under the low-water mark. Action ids are
 * uniform, so the oldest share of each shard approximates the globally
 * least recently used. Expiry and garbage collection look at a few shards
 * per trim, in turn, so that the whole store is looked at every
 * max-age/10. Its cost follows what it removes.
 *
 * The automatic trim runs at the lowest normal priority (SCHED_OTHER, nice
 * 19, best-effort I/O level 7: not SCHED_IDLE, whose thread, preempted
 * while holding a directory's lock in unlinkat, could hold up the builds'
 * puts into that shard), in 2 ms bursts, and while other tasks run it rests
 * 99 times as long after each burst. It lives in whichever short-lived
 * process did a put, and gets 1% of a CPU on a busy machine, so its unit of
 * work is one shard (a slice of 1 in the size pass; expiry and garbage
 * collection shard by shard), and trim.state is written after each (at
 * most every 50 ms): a process stopped after a fraction of a second has
 * still moved the cursors on, and the next goes on from there. It also
 * does the size pass before the sweep, so that the bound comes first.
 * Explicit trims take slices of 8, and sweep before the size pass.
 *
 * What it must never do: remove an entry used within the grace period
 * (uses are recorded at most every DISK_REFRESH_NS, which is added to it);
 * remove an object some kept action still refers to (an object goes only
 * when its link count says no action holds a reference to it); leave a
 * record whose object is gone (a record goes first, then its reference,
 * then the object); hold up acache_close() (it checks the stop flag before
 * every file); or run in two processes at once (flock on trim.lock).
 */
#include "disk/disk.h"
#include "core/error.h"
#include "os/clock.h"
#include "disk/trim_aside.h"
#include "disk/trim_state.h"
#include "os/hook.h"
#include "os/tempfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SHARDS DISK_SHARDS
/* Action shards listed together by the size pass: an explicit trim takes
 * 8 at a time (a better approximation of LRU on a small store), the
 * automatic one 1 (a unit it can finish, and save, in a short process). */
#define SLICE_EXPLICIT 8
#define SLICE_AUTO 1
#define SEC 1000000000LL
/* A process checks whether a trim is due at most this often. */
#define CHECK_NS (60 * SEC)
/* A trim that was stopped is taken up again after this long. */
#define RETRY_NS (60 * SEC)
#define HEXLEN (2 * ACACHE_ID_SIZE)
/* The automatic trim works in bursts of BURST_NS. After each it looks at
 * the machine: while other tasks are running it rests BUSY_REST times as
 * long as it worked (1% of one CPU: even a nice 19 thread takes a share
 * of the cores, caches, locks and disk the builds it serves use);
 * on an idle machine it goes on at once. */
#define BURST_NS (2 * 1000000LL)
/* An automatic trim writes its position at most this often. */
#define SAVE_NS (50 * 1000000LL)
#define BUSY_REST 99

typedef struct trim_params {
    uint64_t max_size;
    int64_t max_age_ns, grace_ns;
    unsigned flags;
    bool automatic;
    acache_progress_fn progress;
    void *progress_ctx;
    atomic_bool *stop;
} trim_params;

/* One trim in progress. */
typedef struct trim_run {
    disk *d;
    const trim_params *p;
    acache_trim_report *r;
    bool dry;
    int64_t now;
    int64_t protect_from;  /* entries and objects with mtime >= this stay */
    int64_t expire_before; /* entries with mtime < this are expired */
    int64_t stale_before;  /* leftovers changed before this are dead */
    int64_t est;           /* estimated disk usage, updated as we go */
    /* Survivors of a full sweep: what the store holds afterwards. */
    int64_t seen_entries, seen_objects, seen_size;
    bool stopped;
    int64_t burst_start;   /* automatic trims: when the current burst began */
    unsigned calls;
    int64_t saved_ns;      /* automatic trims: when trim.state was last written */
} trim_run;

/* A record met while listing a shard. */
typedef struct rec_item {
    uint8_t id[ACACHE_ID_SIZE];
    int64_t mtime;
    bool has_ref;
} rec_item;

/* Makes room for one more element in *arr (n used of *cap). */
static bool grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? 2 * *cap : 1024;
    void *grown = realloc(*(void **)arr, ncap * elem);
    if (!grown)
        return false;
    *(void **)arr = grown;
    *cap = ncap;
    return true;
}

/* ------------------------------------------------------------------ */
/* Removing things                                                      */

/* Whether other tasks are running now: the number of runnable tasks in
 * /proc/loadavg ("0.50 0.40 0.30 2/345 6789"), less this thread. An
 * instant look, so a build that starts is seen within one burst. If it
 * cannot tell, it assumes the builds need the machine. */
static bool machine_busy(void)
{
    char buf[128];
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    unsigned running = 0, total = 0;
    if (n <= 0)
        return true;
    buf[n] = '\0';
    if (sscanf(buf, "%*s %*s %*s %u/%u", &running, &total) != 2)
        return true;
    return running > 1;
}

/* Whether a process waiting for the trim lock asked for it since this
 * trim started (ROOT/v1/trim.stop touched). */
static bool asked_to_stop(trim_run *t)
{
    struct stat sb;
    return fstatat(t->d->rootfd, "trim.stop", &sb, 0) == 0 && fs_mtime_ns(&sb) >= t->now;
}

/* Rests after a burst of work (automatic trims) while the machine is busy,
 * waking to look at the stop flag every 20 ms so that close never waits
 * long. */
static void pace(trim_run *t)
{
    int64_t now = fs_now_ns();
    if (now - t->burst_start < BURST_NS)
        return;
    if (asked_to_stop(t)) {
        t->stopped = true;
        return;
    }
    if (!machine_busy()) {
        t->burst_start = now;
        return;
    }
    int64_t rest = (now - t->burst_start) * BUSY_REST;
    if (rest > 500 * 1000000LL)
        rest = 500 * 1000000LL; /* a burst the thread was preempted in */
    for (int64_t slept = 0; slept < rest; slept += 20000000LL) {
        if (atomic_load_explicit(t->p->stop, memory_order_relaxed))
            break;
        if (asked_to_stop(t)) {
            t->stopped = true;
            break;
        }
        struct timespec ts = { 0, rest - slept < 20000000LL ? rest - slept : 20000000LL };
        nanosleep(&ts, NULL);
    }
    t->burst_start = fs_now_ns();
}

/* Checked before every file: a stop asked for (close), and the pace of an
 * automatic trim. */
static bool stopping(trim_run *t)
{
    if (!t->stopped && t->p->stop && atomic_load_explicit(t->p->stop, memory_order_relaxed))
        t->stopped = true;
    if (!t->stopped && t->p->automatic && (++t->calls & 63) == 0)
        pace(t);
    return t->stopped;
}

static void progress(trim_run *t, const char *phase, uint64_t done, uint64_t total)
{
    if (!t->p->progress || t->stopped)
        return;
    acache_progress pr = { phase, done, total, t->r->bytes_removed, 0 };
    if (t->p->progress(t->p->progress_ctx, &pr) != 0)
        t->stopped = true;
}

/* An automatic trim saves its position after each shard (at most every
 * SAVE_NS: a store with few entries has many empty shards): the process it
 * runs in may be gone in a second, and one killed loses little. (Stopped
 * by close, it saves where it is anyway.) While it runs, the state still
 * says a trim is under way (finished 0). */
static void save_progress(trim_run *t, trim_state *st)
{
    if (t->dry || !t->p->automatic)
        return;
    int64_t now = fs_now_ns();
    if (now - t->saved_ns < SAVE_NS)
        return;
    t->saved_ns = now;
    st->duration_ns = fs_now_ns() - t->now;
    st->entries_removed = t->r->entries_removed;
    st->bytes_removed = t->r->bytes_removed;
    st->files_examined = t->r->files_examined;
    st->dirs_listed = t->r->dirs_listed;
    trim_state_write(t->d, st);
}

/* Accounts for a removal in the report, the estimate and the counters. */
static void account(trim_run *t, int64_t entries, int64_t objects, int64_t bytes)
{
    t->r->entries_removed += (uint64_t)entries;
    t->r->objects_removed += (uint64_t)objects;
    t->r->bytes_removed += (uint64_t)bytes;
    t->est -= bytes;
    if (t->dry)
        return;
    counters *c = &t->d->cnt;
    counters_add(c, CNT_ENTRIES, -entries);
    counters_add(c, CNT_OBJECTS, -objects);
    counters_add(c, CNT_SIZE, -bytes);
    counters_add(c, CNT_TRIMMED_ENTRIES, entries);
    counters_add(c, CNT_TRIMMED_BYTES, bytes);
    /* A long trim shows its progress in the counters (and a killed one
     * loses little of its accounting). */
    counters_flush_due(c, fs_now_ns(), COUNTERS_GET_FLUSH_NS);
}

/*
 * Removes rel (below the root) if it still is what the trim decided to
 * remove: the file it looked at (`seen`; a put may have renamed a fresh
 * record over it), with at most max_links links (a put of the same bytes
 * may have linked an object since), not used since protect_from (a get
 * may have refreshed it and answered with it); see trim_aside.c. True
 * when it was removed (in a dry run, when it would be).
 */
static bool remove_checked(trim_run *t, const char *rel, const struct stat *seen, nlink_t max_links)
{
    os_hook_run(rel[0] == 'o' ? "trim-remove-object" : "trim-remove-record", rel);
    return t->dry || aside_remove(t->d->rootfd, rel, seen, max_links, t->protect_from);
}

/* A file a trim that died had moved aside, met while listing dir: put back
 * under its name (and in back), undecided; the listing judges it after its
 * loop. */
static void restore_aside(trim_run *t, const char *dir, const char *name, aside_restored *back)
{
    if (!t->dry)
        aside_restore(t->d->rootfd, dir, name, back);
}

/* Removes an object's name when no reference to it is left (sb is how it
 * was before `dropped` references went) and it was not used within the
 * grace period. */
static void drop_object_if_free(trim_run *t, const char *orel, const struct stat *sb,
                                nlink_t dropped)
{
    if (!S_ISREG(sb->st_mode) || sb->st_nlink > 1 + dropped || fs_mtime_ns(sb) >= t->protect_from)
        return;
    if (!remove_checked(t, orel, sb, 1))
        return;
    account(t, 0, 1, (int64_t)disk_usage((uint64_t)sb->st_size));
}

/*
 * Evicts one entry: its record, its reference, then its object if that was
 * the last reference. The record is opened (to learn its object) and its
 * time looked at again first: a get may have used it since the listing.
 */
static void evict(trim_run *t, const char *ahex)
{
    disk *d = t->d;
    char rrel[8 + HEXLEN], ref[8 + HEXLEN + sizeof DISK_REF_SUFFIX], orel[8 + HEXLEN];
    char buf[DISK_RECORD_MAX + 1];
    snprintf(rrel, sizeof rrel, "a/%.2s/%s", ahex, ahex);
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rrel);
    t->r->files_examined++;
    int fd = openat(d->rootfd, rrel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    struct stat sb;
    ssize_t n = -1;
    if (fstat(fd, &sb) == 0 && fs_mtime_ns(&sb) < t->protect_from)
        n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0)
        return;
    acache_id output;
    uint64_t size;
    int64_t when;
    bool parsed = disk_parse_record(buf, (size_t)n, ahex, &output, &size, &when) == ACACHE_OK;
    if (!remove_checked(t, rrel, &sb, 1))
        return;
    account(t, 1, 0, (int64_t)disk_usage(DISK_RECORD_MAX));
    if (!parsed) {
        /* Its reference, if any, goes with the leftovers. */
        return;
    }
    char ohex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&output, ohex);
    snprintf(orel, sizeof orel, "o/%.2s/%s", ohex, ohex);
    /* The reference goes if it is to this record's object: a put of the
     * same action may have replaced it with its own since, or do so
     * between this look and the removal (so the removal checks again, on
     * the reference moved aside). */
    struct stat rs, os;
    t->r->files_examined += 2;
    if (fstatat(d->rootfd, orel, &os, AT_SYMLINK_NOFOLLOW) != 0)
        return;
    bool ours = fstatat(d->rootfd, ref, &rs, AT_SYMLINK_NOFOLLOW) == 0 &&
                rs.st_ino == os.st_ino && rs.st_dev == os.st_dev;
    if (ours) {
        os_hook_run("trim-remove-ref", ref);
        ours = t->dry || aside_remove_ref(d->rootfd, ref, rrel, &os);
    }
    drop_object_if_free(t, orel, &os, ours ? 1 : 0);
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(((const rec_item *)a)->id, ((const rec_item *)b)->id, ACACHE_ID_SIZE);
}

/* What a listing of an action shard gathers. */
typedef struct action_list {
    rec_item **recs;
    size_t *cap, n;
    char (*refs)[HEXLEN + 1];
    size_t nrefs, refcap;
} action_list;

/* Takes one name of an action shard into l: a record (with its mtime) or
 * a reference. False when out of memory. */
static bool list_action(trim_run *t, int dfd, const char *name, action_list *l)
{
    size_t len = strlen(name);
    if (len == HEXLEN + sizeof DISK_REF_SUFFIX - 1 && strcmp(name + HEXLEN, DISK_REF_SUFFIX) == 0 &&
        disk_is_hex(name, HEXLEN)) {
        if (!grow(&l->refs, &l->refcap, l->nrefs, sizeof *l->refs))
            return false;
        memcpy(l->refs[l->nrefs], name, HEXLEN);
        l->refs[l->nrefs++][HEXLEN] = '\0';
        return true;
    }
    if (len != HEXLEN || !disk_is_hex(name, HEXLEN))
        return true;
    struct stat sb;
    t->r->files_examined++;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
        return true;
    if (!grow(l->recs, l->cap, l->n, sizeof **l->recs))
        return false;
    rec_item *it = &(*l->recs)[l->n++];
    acache_id_from_hex(name, HEXLEN, (acache_id *)it->id);
    it->mtime = fs_mtime_ns(&sb);
    it->has_ref = false;
    return true;
}

/* Pairs the references of l with its records; those with none go to the
 * front of l->refs. Returns how many have none. */
static size_t pair_refs(action_list *l)
{
    size_t n = l->n, norphans = 0;
    if (n > 1)
        qsort(*l->recs, n, sizeof **l->recs, cmp_id);
    for (size_t i = 0; i < l->nrefs; i++) {
        rec_item key;
        acache_id_from_hex(l->refs[i], HEXLEN, (acache_id *)key.id);
        rec_item *found = n ? bsearch(&key, *l->recs, n, sizeof **l->recs, cmp_id) : NULL;
        if (found)
            found->has_ref = true;
        else
            memcpy(l->refs[norphans++], l->refs[i], HEXLEN + 1);
    }
    return norphans;
}

/* Reads the action shard directory XX: its records (with their mtimes and
 * whether they have a reference), and the names of references that have
 * no record. Returns the number of records. */
static long list_actions(trim_run *t, int shard, rec_item **recs, size_t *cap, char (**orphans)[HEXLEN + 1],
                         size_t *norphans)
{
    char dir[8];
    snprintf(dir, sizeof dir, "a/%02x", shard);
    DIR *dp = disk_opendir(t->d, dir);
    if (!dp)
        return 0;
    int dfd = dirfd(dp);
    t->r->dirs_listed++;
    action_list l = { .recs = recs, .cap = cap };
    aside_restored back = { 0 };
    bool ok = true;
    struct dirent *de;
    while (ok && (de = readdir(dp)) != NULL && !stopping(t)) {
        if (aside_is(de->d_name))
            restore_aside(t, dir, de->d_name, &back);
        else if (!aside_was_restored(&back, de->d_name))
            ok = list_action(t, dfd, de->d_name, &l);
    }
    for (size_t i = 0; ok && i < back.n; i++)
        ok = list_action(t, dfd, back.names[i], &l);
    aside_restored_free(&back);
    closedir(dp);
    if (!orphans) {
        free(l.refs);
        return (long)l.n;
    }
    *norphans = pair_refs(&l);
    *orphans = l.refs;
    return (long)l.n;
}

static int cmp_mtime(const void *a, const void *b)
{
    int64_t x = ((const rec_item *)a)->mtime, y = ((const rec_item *)b)->mtime;
    return x < y ? -1 : x > y;
}

/* A reference with no record: a put died between the two, or a trim
 * between removing the record and the reference. Removed once its bytes
 * have not been written or used for DISK_STALE_NS, as temp files are (a
 * put links its reference right after its last write). */
static void drop_orphan_ref(trim_run *t, const char *ahex)
{
    char rrel[8 + HEXLEN], ref[8 + HEXLEN + sizeof DISK_REF_SUFFIX];
    snprintf(rrel, sizeof rrel, "a/%.2s/%s", ahex, ahex);
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rrel);
    struct stat sb;
    t->r->files_examined++;
    if (fstatat(t->d->rootfd, ref, &sb, AT_SYMLINK_NOFOLLOW) != 0 || fs_mtime_ns(&sb) >= t->stale_before ||
        faccessat(t->d->rootfd, rrel, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return;
    /* Its object, if this was its last reference, goes in the sweep of
     * its own shard. */
    if (t->dry || unlinkat(t->d->rootfd, ref, 0) == 0)
        t->r->leftovers_removed++;
}

/* Gives a record that has none its reference (records written before
 * references existed), so that its object is not taken for garbage. */
static void add_ref(trim_run *t, const char *ahex)
{
    char rrel[8 + HEXLEN], ref[8 + HEXLEN + sizeof DISK_REF_SUFFIX], orel[8 + HEXLEN];
    char buf[DISK_RECORD_MAX + 1];
    snprintf(rrel, sizeof rrel, "a/%.2s/%s", ahex, ahex);
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rrel);
    int fd = openat(t->d->rootfd, rrel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    t->r->files_examined++;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    acache_id output;
    uint64_t size;
    int64_t when;
    if (n <= 0 || disk_parse_record(buf, (size_t)n, ahex, &output, &size, &when) != ACACHE_OK)
        return;
    char ohex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&output, ohex);
    snprintf(orel, sizeof orel, "o/%.2s/%s", ohex, ohex);
    if (!t->dry)
        linkat(t->d->rootfd, orel, t->d->rootfd, ref, 0);
}

/*
 * Sweeps action shard XX: expired records, references without a record,
 * records without a reference. With a full trim, also counts what stays.
 */
static void sweep_actions(trim_run *t, int shard, rec_item **recs, size_t *cap)
{
    char (*orphans)[HEXLEN + 1] = NULL;
    size_t norphans = 0;
    char hex[ACACHE_ID_HEX_SIZE];
    long n = list_actions(t, shard, recs, cap, &orphans, &norphans);
    for (long i = 0; i < n && !stopping(t); i++) {
        rec_item *it = &(*recs)[i];
        acache_id_to_hex((const acache_id *)it->id, hex);
        if (it->mtime < t->expire_before && it->mtime < t->protect_from) {
            uint64_t before = t->r->entries_removed;
            evict(t, hex);
            if (t->r->entries_removed > before)
                continue;
        } else if (!it->has_ref) {
            add_ref(t, hex);
        }
        t->seen_entries++;
        t->seen_size += (int64_t)disk_usage(DISK_RECORD_MAX);
    }
    for (size_t i = 0; i < norphans && !stopping(t); i++)
        drop_orphan_ref(t, orphans[i]);
    free(orphans);
}

/* Removes the object o/XX/name if nobody refers to it; with a full trim,
 * counts it if it stays. */
static void sweep_object(trim_run *t, int dfd, int shard, const char *name)
{
    if (strlen(name) != HEXLEN || !disk_is_hex(name, HEXLEN))
        return;
    struct stat sb;
    t->r->files_examined++;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
        return;
    char orel[8 + HEXLEN];
    snprintf(orel, sizeof orel, "o/%02x/%s", shard, name);
    if (sb.st_nlink == 1 && fs_mtime_ns(&sb) < t->protect_from && remove_checked(t, orel, &sb, 1)) {
        account(t, 0, 1, (int64_t)disk_usage((uint64_t)sb.st_size));
        return;
    }
    t->seen_objects++;
    t->seen_size += (int64_t)disk_usage((uint64_t)sb.st_size);
}

/* Sweeps object shard XX: objects nobody refers to. */
static void sweep_objects(trim_run *t, int shard)
{
    char dir[8];
    snprintf(dir, sizeof dir, "o/%02x", shard);
    DIR *dp = disk_opendir(t->d, dir);
    if (!dp)
        return;
    int dfd = dirfd(dp);
    t->r->dirs_listed++;
    aside_restored back = { 0 };
    struct dirent *de;
    while ((de = readdir(dp)) != NULL && !stopping(t)) {
        if (aside_is(de->d_name))
            restore_aside(t, dir, de->d_name, &back);
        else if (!aside_was_restored(&back, de->d_name))
            sweep_object(t, dfd, shard, de->d_name);
    }
    for (size_t i = 0; i < back.n && !stopping(t); i++)
        sweep_object(t, dfd, shard, back.names[i]);
    aside_restored_free(&back);
    closedir(dp);
}

/* Sweeps k shards from `first`: their records first, then their objects,
 * so that an object whose last reference a swept record held goes too.
 * Returns how many shards were swept whole (a trim stopped halfway goes
 * on from there next time). An automatic trim sweeps shard by shard
 * (records, then objects: an object is only ever removed once no reference
 * holds it, so the order is a matter of when, not whether), and saves its
 * position in st (if given) after each. */
static int sweep(trim_run *t, trim_state *st, int first, int k, rec_item **recs, size_t *cap)
{
    int done = 0;
    if (t->p->automatic) {
        for (int i = 0; i < k && !stopping(t); i++) {
            int shard = (first + i) % SHARDS;
            sweep_actions(t, shard, recs, cap);
            sweep_objects(t, shard);
            if (t->stopped)
                break;
            done++;
            if (st) {
                st->sweep_cursor = (shard + 1) % SHARDS;
                save_progress(t, st);
            }
        }
        return done;
    }
    for (int i = 0; i < k && !stopping(t); i++) {
        sweep_actions(t, (first + i) % SHARDS, recs, cap);
        progress(t, "sweep", (uint64_t)i + 1, 2 * (uint64_t)k);
    }
    for (int i = 0; i < k && !stopping(t); i++) {
        sweep_objects(t, (first + i) % SHARDS);
        progress(t, "sweep", (uint64_t)(k + i) + 1, 2 * (uint64_t)k);
        done += !stopping(t);
    }
    return done;
}

/* Temp files of puts whose process died: anything in tmp/ not changed for
 * DISK_STALE_NS whose lock no writer holds, and the temp files of counter
 * writes. */
static void sweep_temps(trim_run *t, const char *sub)
{
    DIR *dp = disk_opendir(t->d, sub);
    if (!dp)
        return;
    int dfd = dirfd(dp);
    t->r->dirs_listed++;
    struct dirent *de;
    bool in_tmp = strcmp(sub, "tmp") == 0;
    while ((de = readdir(dp)) != NULL && !stopping(t)) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (!in_tmp && strncmp(de->d_name, ".shard-", 7) != 0)
            continue;
        struct stat sb;
        t->r->files_examined++;
        if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
            fs_mtime_ns(&sb) >= t->stale_before)
            continue;
        /* In tmp/, a put still running holds its temp file's lock. */
        if (t->dry || (in_tmp ? tempfile_remove_unlocked(dfd, de->d_name) : unlinkat(dfd, de->d_name, 0)) == 0)
            t->r->leftovers_removed++;
    }
    closedir(dp);
}

/* ------------------------------------------------------------------ */
/* The size pass                                                        */

/*
 * Evicts least recently used entries until the estimate is at the
 * low-water mark, one slice at a time (SLICE_EXPLICIT shards, or
 * SLICE_AUTO for the automatic trim, which saves the cursor after each).
 * In the first round each slice gives up to twice the share the whole
 * store must lose, oldest first; if that was not enough (entries in their
 * grace period, an uneven store), a second round takes all it may.
 */
static void size_pass(trim_run *t, trim_state *st, rec_item **recs, size_t *cap)
{
    int64_t high = (int64_t)t->p->max_size;
    int64_t low = high - high / 10;
    if (t->est <= high)
        return;
    int64_t need = t->est - low;
    uint64_t kept = 0;
    int width = t->p->automatic ? SLICE_AUTO : SLICE_EXPLICIT;
    for (int round = 0; round < (t->dry ? 1 : 2) && t->est > low && !stopping(t); round++) {
        kept = 0;
        for (int i = 0; i < SHARDS / width && t->est > low && !stopping(t); i++) {
            int first = (int)((st->size_cursor + 1) % SHARDS);
            size_t ncand = 0, nall = 0;
            for (int k = 0; k < width && !stopping(t); k++) {
                int s = (first + k) % SHARDS;
                rec_item *part = NULL;
                size_t pcap = 0;
                long n = list_actions(t, s, &part, &pcap, NULL, NULL);
                for (long j = 0; j < n; j++) {
                    nall++;
                    if (part[j].mtime >= t->protect_from) {
                        kept++;
                        continue;
                    }
                    /* A dry run of a full trim counted the expired already. */
                    if (t->dry && (t->p->flags & ACACHE_TRIM_FULL) && part[j].mtime < t->expire_before)
                        continue;
                    if (!grow(recs, cap, ncand, sizeof **recs))
                        break;
                    (*recs)[ncand++] = part[j];
                }
                free(part);
            }
            if (stopping(t))
                break;
            /* A dry run removes nothing, so a second round would count the
             * same entries again: it takes everything in one. */
            double share = round == 0 && !t->dry ? 2.0 * (double)(t->est - low) / (double)t->est : 1.0;
            size_t quota = share >= 1.0 ? nall : (size_t)(share * (double)nall) + 1;
            if (ncand > 1)
                qsort(*recs, ncand, sizeof **recs, cmp_mtime);
            char hex[ACACHE_ID_HEX_SIZE];
            for (size_t j = 0; j < ncand && j < quota && t->est > low && !stopping(t); j++) {
                acache_id_to_hex((const acache_id *)(*recs)[j].id, hex);
                evict(t, hex);
            }
            if (!stopping(t)) {
                st->size_cursor = (first + width - 1) % SHARDS;
                save_progress(t, st);
            }
            progress(t, "evict", (uint64_t)(need - (t->est - low)), (uint64_t)need);
        }
    }
    if (t->est > low)
        t->r->kept_in_grace = kept;
}

/* ------------------------------------------------------------------ */
/* A whole trim                                                         */

/* How many shards one trim sweeps so that the whole store is swept every
 * max-age/10 when a trim runs every trim-interval. */
static int sweep_shards(const disk *d, const trim_params *p)
{
    double interval = (double)(d->trim_interval_ns > 0 ? d->trim_interval_ns : 3600 * SEC);
    double period = (double)(p->max_age_ns / 10);
    if (period <= interval)
        return SHARDS;
    int k = (int)(SHARDS * interval / period) + 1;
    return k > SHARDS ? SHARDS : k;
}

static bool trim_due(disk *d, int64_t now)
{
    trim_state st;
    struct stat sb;
    if (fstatat(d->rootfd, "trim.state", &sb, 0) != 0)
        return true;
    trim_state_read(d, &st);
    if (st.finished_ns == 0)
        return now - fs_mtime_ns(&sb) >= (d->trim_interval_ns < RETRY_NS ? d->trim_interval_ns : RETRY_NS);
    return now - st.started_ns >= d->trim_interval_ns;
}

/* Runs a trim holding the lock. */
static void trim_locked(disk *d, const trim_params *p, acache_trim_report *r)
{
    rec_item *recs = NULL;
    size_t cap = 0;
    trim_state st;
    trim_run t = { .d = d, .p = p, .r = r, .dry = p->flags & ACACHE_TRIM_DRY_RUN };
    t.now = t.burst_start = fs_now_ns();
    /* A use is recorded at most every DISK_REFRESH_NS: what was used within
     * the grace period may look that much older. Grace 0 keeps nothing. */
    t.protect_from = p->grace_ns > 0 ? t.now - p->grace_ns - DISK_REFRESH_NS : t.now + 1;
    t.expire_before = t.now - p->max_age_ns;
    t.stale_before = t.now - DISK_STALE_NS;
    trim_state_read(d, &st);
    if (!t.dry) {
        /* Until it finishes, the state says a trim is under way. */
        st.started_ns = t.now;
        st.finished_ns = st.duration_ns = 0;
        st.entries_removed = st.bytes_removed = st.files_examined = st.dirs_listed = 0;
        trim_state_write(d, &st);
    }

    counter_totals tot;
    counters_read(&d->cnt, &tot);
    t.est = tot.v[CNT_SIZE];
    r->size_before = (uint64_t)(t.est > 0 ? t.est : 0);
    /* A store that was never counted (made before counters existed, or
     * whose counters were lost) is counted now, in full, once. */
    bool full = (p->flags & ACACHE_TRIM_FULL) || tot.counted_ns == 0;

    sweep_temps(&t, "tmp");
    sweep_temps(&t, "stats");
    int k = full ? SHARDS : sweep_shards(d, p);
    int first = (int)st.sweep_cursor;
    /* An automatic trim, with little CPU and perhaps little time, keeps the
     * store bounded first: the size pass, then expiry and garbage. (A full
     * trim counts the store in its sweep, which the size pass needs.) */
    bool size_first = p->automatic && !full;
    if (size_first)
        size_pass(&t, &st, &recs, &cap);
    if (!stopping(&t))
        st.sweep_cursor = (first + sweep(&t, &st, first, k, &recs, &cap)) % SHARDS;
    if (full && !stopping(&t) && !t.dry) {
        counters_calibrate(&d->cnt, t.seen_entries, t.seen_objects, t.seen_size);
        t.est = t.seen_size;
        r->counted = 1;
    }
    if (!size_first)
        size_pass(&t, &st, &recs, &cap);
    /* Over the limit with nothing left to evict: unless the store really is
     * full of entries in their grace period, the estimate is off (a file
     * system restored, entries removed by hand). Counted again, at most
     * once a day. */
    if (!full && !t.dry && !stopping(&t) && t.est > (int64_t)(p->max_size - p->max_size / 10) &&
        t.now - tot.counted_ns > 86400 * SEC) {
        t.seen_entries = t.seen_objects = t.seen_size = 0;
        sweep(&t, NULL, 0, SHARDS, &recs, &cap);
        if (!stopping(&t)) {
            counters_calibrate(&d->cnt, t.seen_entries, t.seen_objects, t.seen_size);
            t.est = t.seen_size;
            r->counted = 1;
            size_pass(&t, &st, &recs, &cap);
        }
    }
    free(recs);

    r->size_after = (uint64_t)(t.est > 0 ? t.est : 0);
    r->stopped = t.stopped;
    r->duration_ns = fs_now_ns() - t.now;
    if (!t.dry) {
        counters_flush(&d->cnt);
        st.finished_ns = t.stopped ? 0 : fs_now_ns();
        st.duration_ns = r->duration_ns;
        st.entries_removed = r->entries_removed;
        st.bytes_removed = r->bytes_removed;
        st.files_examined = r->files_examined;
        st.dirs_listed = r->dirs_listed;
        trim_state_write(d, &st);
    }
}

/* ------------------------------------------------------------------ */
/* The automatic trim                                                   */

static void *auto_trim_main(void *arg)
{
    disk *d = arg;
    /* Below the builds it serves, for this thread only: the lowest normal
     * CPU priority (SCHED_OTHER, nice 19) and the lowest best-effort I/O
     * priority (level 7). Not SCHED_IDLE nor the idle I/O class: a thread
     * that may wait indefinitely while a CPU is busy could do so holding a
     * directory's lock (inside unlinkat or renameat) and hold up the puts
     * into that shard. Its share of the machine is bounded by pace(). */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    setpriority(PRIO_PROCESS, (id_t)tid, 19);
    syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, tid, (2 << 13) | 7 /* BE, level 7 */);

    int fd = disk_trim_lock(d, false);
    if (fd >= 0) {
        /* Another process may have trimmed while we waited to start. */
        if (trim_due(d, fs_now_ns())) {
            trim_params p = {
                .max_size = d->max_size, .max_age_ns = d->max_age_ns, .grace_ns = d->grace_ns,
                .automatic = true, .stop = &d->at.stop,
            };
            acache_trim_report r;
            memset(&r, 0, sizeof r);
            trim_locked(d, &p, &r);
        }
    }
    if (fd >= 0)
        close(fd);
    atomic_store(&d->at.done, true);
    return NULL;
}

void trim_after_put(disk *d)
{
    if (d->trim_interval_ns < 0)
        return;
    int64_t now = fs_now_ns();
    int64_t next = atomic_load_explicit(&d->at.next_check_ns, memory_order_relaxed);
    int64_t every = d->trim_interval_ns < CHECK_NS ? d->trim_interval_ns : CHECK_NS;
    if (now < next || !atomic_compare_exchange_strong(&d->at.next_check_ns, &next, now + every))
        return;
    if (!trim_due(d, now))
        return;
    pthread_mutex_lock(&d->at.mu);
    if (d->at.started && d->at.pid == getpid()) {
        if (!atomic_load(&d->at.done)) {
            pthread_mutex_unlock(&d->at.mu);
            return;
        }
        pthread_join(d->at.thread, NULL);
    }
    d->at.started = false;
    atomic_store(&d->at.stop, false);
    atomic_store(&d->at.done, false);
    /* Signals stay with the application's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&d->at.thread, NULL, auto_trim_main, d) == 0) {
        d->at.started = true;
        d->at.pid = getpid();
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_unlock(&d->at.mu);
}

void trim_stop(disk *d)
{
    pthread_mutex_lock(&d->at.mu);
    /* After a fork the thread belongs to the parent: nothing to join. */
    if (d->at.started && d->at.pid == getpid()) {
        atomic_store(&d->at.stop, true);
        pthread_join(d->at.thread, NULL);
    }
    d->at.started = false;
    pthread_mutex_unlock(&d->at.mu);
}

/* ------------------------------------------------------------------ */
/* The public calls                                                     */

acache_status acache_trim(acache_store *store, const acache_trim_options *opts,
                          acache_trim_report *report)
{
    static const acache_trim_options defaults = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report scratch;
    acache_trim_report *r = report ? report : &scratch;
    memset(r, 0, sizeof *r);
    disk *d = disk_of_store(store, "acache_trim");
    if (!d)
        return ACACHE_EINVAL;
    const acache_trim_options *o = opts ? opts : &defaults;
    if (o->max_size < ACACHE_DEFAULT || o->max_age_ns < ACACHE_DEFAULT || o->grace_ns < ACACHE_DEFAULT)
        return set_error(ACACHE_EINVAL, "acache_trim: a limit is negative");
    trim_params p = {
        .max_size = o->max_size == ACACHE_DEFAULT ? d->max_size : (uint64_t)o->max_size,
        .max_age_ns = o->max_age_ns == ACACHE_DEFAULT ? d->max_age_ns : o->max_age_ns,
        .grace_ns = o->grace_ns == ACACHE_DEFAULT ? d->grace_ns : o->grace_ns,
        .flags = o->flags,
        .progress = o->progress,
        .progress_ctx = o->progress_ctx,
    };
    r->max_size = p.max_size;
    r->max_age_ns = p.max_age_ns;
    r->grace_ns = p.grace_ns;
    int fd = disk_trim_lock(d, !(o->flags & ACACHE_TRIM_NOWAIT));
    if (fd < 0) {
        if (errno == EWOULDBLOCK) {
            r->busy = 1;
            return ACACHE_OK;
        }
        return set_errno_error(errno, "acache_trim: cannot lock %s/trim.lock", d->root);
    }
    trim_locked(d, &p, r);
    close(fd);
    return ACACHE_OK;
}

