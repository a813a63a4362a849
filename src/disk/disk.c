/*
 * disk.c - the local disk store, acache's home tier.
 *
 * Layout under the root directory given in the spec:
 *
 *   ROOT/v1/                     versioned namespace (format version 1)
 *   ROOT/v1/a/XX/<action hex>    action records, one line of text:
 *                                "acache-action-v1 <action> <output> <size> <time_ns>\n"
 *   ROOT/v1/a/XX/<action hex>.out  the action's reference to its object: a
 *                                hard link to it
 *   ROOT/v1/o/XX/<output hex>    objects: the raw bytes, no extension
 *   ROOT/v1/tmp/                 temp files of puts in progress
 *   ROOT/v1/stats/               counters across processes (counters.c)
 *   ROOT/v1/trim.lock, trim.state, trim.stop  the trim's lock, its record,
 *                                and a waiter's request that it stop (trim.c)
 *
 * XX is the first two hex digits of the id. Every file is written once: to a
 * unique temp file, then renamed into place, so a reader sees a whole entry
 * or none, and several processes can share the directory with no lock. Temp
 * files live in v1/tmp rather than beside their final name because an
 * object's name is only known after its last byte; v1/tmp is on the same
 * file system, so the rename stays atomic.
 *
 * Objects are shared by every action that produced the same bytes. Each
 * action holds a hard link to its object, so the object's link count is the
 * number of actions referring to it, kept by the kernel and exact across
 * crashes: a trim removes an object only when no link but its own name is
 * left. A put therefore links the bytes as the action's reference first,
 * then gives them the object's name, then writes the record, so an object
 * is never visible with no reference. When the object is there already
 * (always, for the empty one, which is looked for first), the reference
 * is linked straight from it instead, and the put's bytes, the same, keep
 * their temp name until the record is in, to give the object's name back
 * if a trim takes it meanwhile. Another put of the action may replace the
 * reference before the record is in, and a trim evicting an older record
 * of the action may take it: every put looks at its reference again after
 * its record (the one that renames its record last then leaves the two
 * agreed; a trim removes a reference only while no record is there).
 *
 * This file must never rewrite a file in place (readers may have it mapped)
 * and never serve an object whose size (or, with verify-reads, SHA-256) does
 * not match its record: such entries are removed and reported as corrupt.
 */
#include "disk/disk.h"
#include "core/error.h"
#include "os/clock.h"
#include "os/fsutil.h"
#include "os/hook.h"
#include "os/tempfile.h"
#include "core/sha.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct disk_writer {
    backend_writer base;
    disk *d;
    acache_id action;
    tempfile t;                 /* the bytes, in ROOT/v1/tmp/put-XXXXXX */
    uint64_t written;           /* bytes in it so far */
    bool spilled;               /* t is in the overflow (a full disk) */
} disk_writer;

static const backend_ops disk_ops;

/* An entry path relative to rootfd. */
#define REL(d, path) disk_rel((d), (path))

static void unmap_release(void *ctx, const void *data, uint64_t size)
{
    (void)ctx;
    munmap((void *)data, (size_t)size);
}

/* Removes a bad entry (its record, the record's reference, and with opath
 * the object's name) so the next get is a plain miss, and says why. */
static acache_status corrupt(disk *d, const char *rpath, const char *opath, const char *why)
{
    char ref[ACACHE_PATH_MAX + sizeof DISK_REF_SUFFIX];
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rpath);
    if (unlinkat(d->rootfd, REL(d, rpath), 0) == 0) {
        counters_add(&d->cnt, CNT_ENTRIES, -1);
        counters_add(&d->cnt, CNT_SIZE, -(int64_t)disk_usage(DISK_RECORD_MAX));
    }
    unlinkat(d->rootfd, REL(d, ref), 0);
    struct stat sb;
    if (opath && fstatat(d->rootfd, REL(d, opath), &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        unlinkat(d->rootfd, REL(d, opath), 0) == 0) {
        counters_add(&d->cnt, CNT_OBJECTS, -1);
        counters_add(&d->cnt, CNT_SIZE, -(int64_t)disk_usage((uint64_t)sb.st_size));
    }
    return set_error(ACACHE_CORRUPT, "disk store: %s: %s; entry removed", rpath, why);
}

static bool bytes_match(const void *data, uint64_t size, const acache_id *want)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, (size_t)size, md, &mdlen, sha256_md(), NULL))
        return false;
    return mdlen == ACACHE_ID_SIZE && memcmp(md, want->bytes, ACACHE_ID_SIZE) == 0;
}

/* Opens the object, checks its size (and hash with verify-reads) and, when
 * asked, leaves it mapped in res. */
static acache_status open_object(disk *d, const char *rpath, const char *opath,
                                 unsigned flags, acache_result *res)
{
    int fd = open(opath, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return corrupt(d, rpath, NULL, "its object is missing");
        return set_errno_error(errno, "disk store: open %s", opath);
    }
    acache_status st = ACACHE_OK;
    struct stat ost;
    void *map = NULL;
    if (fstat(fd, &ost) != 0) {
        st = set_errno_error(errno, "disk store: stat %s", opath);
        goto out;
    }
    if (!S_ISREG(ost.st_mode) || (uint64_t)ost.st_size != res->size) {
        st = corrupt(d, rpath, opath, "object size does not match its record");
        goto out;
    }
    if (res->size == 0) {
        if ((flags & ACACHE_GET_DATA))
            res->data = "";
        goto out;
    }
    map = mmap(NULL, (size_t)res->size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        st = set_errno_error(errno, "disk store: mmap %s", opath);
        goto out;
    }
    if (d->verify_reads && !bytes_match(map, res->size, &res->output_id)) {
        st = corrupt(d, rpath, opath, "object content does not match its id");
        goto out;
    }
    if (flags & ACACHE_GET_DATA) {
        res->data = map;
        res->release_fn_ = unmap_release;
        map = NULL;
    }
out:
    if (map)
        munmap(map, (size_t)res->size);
    close(fd);
    return st;
}

static acache_status get_entry(disk *d, const acache_id *action, unsigned flags,
                               acache_result *res)
{
    char rpath[ACACHE_PATH_MAX];
    char buf[DISK_RECORD_MAX + 1];
    acache_status st = ACACHE_OK;
    disk_entry_path(d, 'a', action, rpath);

    int fd = openat(d->rootfd, REL(d, rpath), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ACACHE_MISS;
        return set_errno_error(errno, "disk store: open %s", rpath);
    }
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    struct stat rst;
    if (n < 0 || fstat(fd, &rst) != 0) {
        st = set_errno_error(errno, "disk store: read %s", rpath);
        goto out;
    }
    const char *ahex = rpath + strlen(rpath) - 2 * ACACHE_ID_SIZE;
    st = disk_parse_record(buf, (size_t)n, ahex, &res->output_id, &res->size, &res->time_ns);
    if (st != ACACHE_OK) {
        st = corrupt(d, rpath, NULL, "malformed action record");
        goto out;
    }
    disk_entry_path(d, 'o', &res->output_id, res->path);
    if ((flags & ACACHE_GET_DATA) || d->verify_reads) {
        st = open_object(d, rpath, res->path, flags, res);
        if (st != ACACHE_OK)
            goto out;
    } else {
        struct stat ost;
        if (fstatat(d->rootfd, REL(d, res->path), &ost, 0) != 0) {
            if (errno == ENOENT)
                st = corrupt(d, rpath, NULL, "its object is missing");
            else
                st = set_errno_error(errno, "disk store: stat %s", res->path);
            goto out;
        }
        if (!S_ISREG(ost.st_mode) || (uint64_t)ost.st_size != res->size) {
            st = corrupt(d, rpath, res->path, "object size does not match its record");
            goto out;
        }
    }
    /* Eviction reads the record's mtime as the last use; refresh it (and the
     * object's) at most every DISK_REFRESH_NS so hits stay read-only. A
     * trim removes only what is older than that plus its grace period, so
     * this hit may be racing with the removal of its object: if the object
     * is gone by the time it is touched, the hit is a miss. */
    if (fs_now_ns() - fs_mtime_ns(&rst) > DISK_REFRESH_NS) {
        futimens(fd, NULL);
        if (utimensat(d->rootfd, REL(d, res->path), NULL, 0) != 0 && errno == ENOENT)
            st = set_error(ACACHE_MISS, "disk store: %s was evicted", res->path);
    }
out:
    close(fd);
    return st;
}

static acache_status disk_get(void *self, const acache_id *action, unsigned flags,
                              acache_result *res)
{
    disk *d = self;
    acache_status st = get_entry(d, action, flags, res);
    if (st == ACACHE_OK) {
        counters_add(&d->cnt, CNT_HITS, 1);
        counters_add(&d->cnt, CNT_BYTES_READ, (int64_t)res->size);
    } else if (st == ACACHE_MISS || st == ACACHE_CORRUPT) {
        counters_add(&d->cnt, CNT_MISSES, 1);
        if (st == ACACHE_CORRUPT)
            counters_add(&d->cnt, CNT_CORRUPT, 1);
    } else {
        counters_add(&d->cnt, CNT_ERRORS, 1);
    }
    counters_flush_due(&d->cnt, fs_now_ns(), COUNTERS_GET_FLUSH_NS);
    return st;
}

/* A new temp file ROOT/v1/tmp/<prefix>XXXXXX. */
static acache_status make_temp(disk *d, const char *prefix, tempfile *t)
{
    char dir[ACACHE_PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/tmp", d->root);
    int err = tempfile_create(t, dir, prefix);
    if (err)
        return set_errno_error(err, "disk store: cannot create a temp file in %s/tmp", d->root);
    return ACACHE_OK;
}

static acache_status disk_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    disk *d = self;
    disk_writer *w = calloc(1, sizeof *w);
    if (!w)
        return set_error(ACACHE_ENOMEM, "out of memory");
    w->base.ops = &disk_ops;
    w->d = d;
    w->action = *action;
    acache_status st = make_temp(d, "put-", &w->t);
    if (st == ACACHE_ENOSPC && d->spill && overflow_temp(d, &w->t) == 0) {
        w->spilled = true; /* no inode, block or quota left for it */
        st = ACACHE_OK;
    }
    if (st != ACACHE_OK) {
        counters_add(&d->cnt, CNT_ERRORS, 1);
        free(w);
        return st;
    }
    /* Held until the commit is over: a build may take hours between its
     * put's first and last write, and cleaners go by this lock, not by
     * the file's age (where flock is not supported, nobody can take it,
     * and the file is left to this put). */
    tempfile_lock(&w->t);
    *out = &w->base;
    return ACACHE_OK;
}

static acache_status disk_put_write(backend_writer *bw, const void *data, size_t len)
{
    disk_writer *w = (disk_writer *)bw;
    int err = fs_write_all(w->t.fd, data, len);
    if (err && overflow_cause(err) && w->d->spill && !w->spilled) {
        /* The disk filled up during the put. */
        tempfile old = w->t;
        if (overflow_adopt(w->d, &w->t, w->written) == 0) {
            old.fd = -1;
            tempfile_discard(&old);
            w->spilled = true;
            err = fs_write_all(w->t.fd, data, len);
        }
    }
    if (!err)
        w->written += len;
    if (err) {
        counters_add(&w->d->cnt, CNT_ERRORS, 1);
        return set_errno_error(err, "disk store: writing %s", w->t.path);
    }
    return ACACHE_OK;
}

static void disk_put_abort(backend_writer *bw)
{
    disk_writer *w = (disk_writer *)bw;
    tempfile_discard(&w->t);
    free(w);
}

/* fsyncs the directory holding rel (below the root), under durability=fsync. */
static int sync_parent(disk *d, const char *rel)
{
    char path[2 * ACACHE_PATH_MAX];
    if (!d->fsync)
        return 0;
    snprintf(path, sizeof path, "%s/%s", d->root, rel);
    return fs_fsync_parent(path);
}

/* Renames the record's temp file to rpath. With *created set (the put
 * made the action's reference: there most likely is no record either),
 * it tries not to replace a record, and clears *created when one was
 * there (or where the file system cannot tell). 0 or an errno value. */
static int place_record(disk *d, tempfile *t, const char *rpath, bool *created)
{
    /* A temp file is made 0600: the mode is set only when the store is
     * shared (as fs_share does for objects), not with a chmod(2) per put. */
    unsigned mode = d->perms.file != 0600 ? TEMPFILE_MODE(d->perms.file) : 0;
    if (*created) {
        if (mode)
            chmod(t->path, d->perms.file & 0777);
        mode = 0;
        if (renameat2(AT_FDCWD, t->path, d->rootfd, REL(d, rpath), RENAME_NOREPLACE) == 0) {
            t->named = false;
            return sync_parent(d, REL(d, rpath));
        }
        if (errno != EEXIST && errno != EINVAL && errno != ENOSYS && errno != ENOENT)
            return errno;
        *created = false;
    }
    return tempfile_rename(t, d->rootfd, REL(d, rpath),
                           TEMPFILE_MKDIR | mode | (d->fsync ? TEMPFILE_SYNC : 0));
}

/* Writes the action record for a committed object (*created: as for
 * place_record). */
static acache_status write_record(disk *d, const acache_id *action, const acache_id *output,
                                  uint64_t size, int64_t time_ns, bool *created)
{
    char rpath[ACACHE_PATH_MAX], line[DISK_RECORD_MAX];
    char ahex[ACACHE_ID_HEX_SIZE], ohex[ACACHE_ID_HEX_SIZE];
    tempfile t;
    int err = 0;
    acache_id_to_hex(action, ahex);
    acache_id_to_hex(output, ohex);
    int n = snprintf(line, sizeof line, DISK_RECORD_MAGIC " %s %s %" PRIu64 " %" PRId64 "\n", ahex,
                     ohex, size, time_ns);
    acache_status st = make_temp(d, "rec-", &t);
    if (st != ACACHE_OK)
        return st;
    err = fs_write_all(t.fd, line, (size_t)n);
    int cerr = tempfile_close(&t, d->fsync);
    if (err || cerr) {
        st = set_errno_error(err ? err : cerr, "disk store: writing %s", t.path);
        goto fail;
    }
    disk_entry_path(d, 'a', action, rpath);
    if ((err = place_record(d, &t, rpath, created)) != 0) {
        st = set_errno_error(err, "disk store: renaming %s to %s", t.path, rpath);
        goto fail;
    }
    return ACACHE_OK;
fail:
    tempfile_discard(&t);
    return st;
}

/* Creates the shard directory of rel ("a/XX/..." or "o/XX/...") after an
 * ENOENT; 0 when it is there now (made by us or by someone else), else
 * mkdir's errno value (ENOSPC, EDQUOT: the real cause of the ENOENT). */
static int make_shard(disk *d, const char *rel)
{
    char dir[8];
    memcpy(dir, rel, 4);
    dir[4] = '\0';
    int err = fs_mkdirat(d->rootfd, dir, d->perms.dir);
    return err == EEXIST ? 0 : err;
}

/* Links (dirfd, name) as the private temp name path ("tmp/ref-..." or
 * "tmp/own-..."). The name is unique while our temp file lives, so it is
 * free unless a process that died left it: only then is it removed first
 * (one system call less per shared object than removing it every time). */
static int link_private(int dirfd, const char *name, const char *path)
{
    if (linkat(dirfd, name, AT_FDCWD, path, 0) == 0)
        return 0;
    if (errno != EEXIST)
        return errno;
    unlink(path);
    return linkat(dirfd, name, AT_FDCWD, path, 0) == 0 ? 0 : errno;
}

/* A name in tmp/ no other live put uses: this process's id (unique among
 * the live ones) and a count of its own. A process that died may have
 * left one with the same id: its users unlink it first. */
static void private_name(const disk *d, const char *what, char *out)
{
    static atomic_uint seq;
    /* The root leaves room for it (disk_open). */
    if (snprintf(out, ACACHE_PATH_MAX, "%s/tmp/%s-%ld-%u", d->root, what, (long)getpid(),
                 atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed)) >= ACACHE_PATH_MAX)
        out[0] = '\0';
}

/*
 * Links (dirfd, name) as rel, replacing whatever rel names (through the
 * unused temp name tmpref and a rename: link() itself never replaces).
 * tmpref is named here, the first time one is needed (most links replace
 * nothing). *created says whether rel is new. Returns 0 or an errno
 * value; ENOENT means the source is gone.
 */
static int link_into(disk *d, int dirfd, const char *name, const char *rel, char *tmpref,
                     bool *created)
{
    for (int tries = 0; tries < 3; tries++) {
        if (linkat(dirfd, name, d->rootfd, rel, 0) == 0) {
            *created = true;
            return sync_parent(d, rel);
        }
        int err = errno;
        if (err == ENOENT) {
            /* No shard directory yet, or the source is gone: the next try
             * tells them apart. */
            int merr = make_shard(d, rel);
            if (merr == 0)
                continue;
            return merr;
        }
        if (err != EEXIST)
            return err;
        if (!tmpref[0])
            private_name(d, "ref", tmpref);
        if ((err = link_private(dirfd, name, tmpref)) != 0)
            return err;
        err = renameat(AT_FDCWD, tmpref, d->rootfd, rel) == 0 ? 0 : errno;
        /* Renaming a link over another link to the same file does nothing
         * and leaves the temp name: it goes either way. */
        unlink(tmpref);
        if (err)
            return err;
        *created = false;
        return sync_parent(d, rel);
    }
    return ENOENT;
}

/* Renames tmp to rel unless rel exists (EEXIST then, and tmp stays). */
static int place_new(disk *d, const char *tmp, const char *rel)
{
    for (int tries = 0; tries < 3; tries++) {
        if (renameat2(AT_FDCWD, tmp, d->rootfd, rel, RENAME_NOREPLACE) == 0)
            return sync_parent(d, rel);
        int err = errno;
        if (err == EINVAL || err == ENOSYS) {
            /* No RENAME_NOREPLACE here (some network file systems): a hard
             * link fails on an existing name just as well. */
            if (linkat(AT_FDCWD, tmp, d->rootfd, rel, 0) == 0) {
                unlink(tmp);
                return sync_parent(d, rel);
            }
            err = errno;
        }
        if (err != ENOENT)
            return err;
        if ((err = make_shard(d, rel)) != 0)
            return err;
    }
    return ENOENT;
}

/* Whether the object orel holds the same `size` bytes as the temp file
 * fd: an object damaged in place keeps its size, and a put must never
 * answer with bytes other than the ones it has just verified. False also
 * when it cannot tell (the object is then replaced: always safe). */
static bool same_bytes(disk *d, const char *orel, int fd, uint64_t size)
{
    if (size == 0)
        return true;
    int ofd = openat(d->rootfd, orel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (ofd < 0)
        return false;
    void *theirs = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, ofd, 0);
    void *ours = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    close(ofd);
    bool same = theirs != MAP_FAILED && ours != MAP_FAILED && memcmp(theirs, ours, (size_t)size) == 0;
    if (theirs != MAP_FAILED)
        munmap(theirs, (size_t)size);
    if (ours != MAP_FAILED)
        munmap(ours, (size_t)size);
    return same;
}

/* Reads the record rrel (for the action ahex): the output it names. */
static bool read_output(disk *d, const char *rrel, const char *ahex, acache_id *output)
{
    char buf[DISK_RECORD_MAX + 1];
    uint64_t size;
    int64_t when;
    int fd = openat(d->rootfd, rrel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 && disk_parse_record(buf, (size_t)n, ahex, output, &size, &when) == ACACHE_OK;
}

/*
 * Makes the action's reference a link to the object its record names.
 * Two puts of one action with different bytes each replace the reference,
 * then the record: interleaved, the last record may name one object and
 * the reference hold the other. Each put calls this after its record, and
 * goes round again after every change, so the last one leaves them agreed.
 */
static void match_ref(disk *d, const char *rpath, const char *ref, char *tmpref)
{
    const char *ahex = rpath + strlen(rpath) - 2 * ACACHE_ID_SIZE;
    for (int round = 0; round < 4; round++) {
        acache_id out;
        char opath[ACACHE_PATH_MAX];
        struct stat os, rs;
        bool created;
        if (!read_output(d, REL(d, rpath), ahex, &out))
            return;
        disk_entry_path(d, 'o', &out, opath);
        if (fstatat(d->rootfd, REL(d, opath), &os, AT_SYMLINK_NOFOLLOW) != 0)
            return; /* evicted: the record will be too */
        if (fstatat(d->rootfd, REL(d, ref), &rs, AT_SYMLINK_NOFOLLOW) == 0 &&
            rs.st_ino == os.st_ino && rs.st_dev == os.st_dev)
            return;
        if (link_into(d, d->rootfd, REL(d, opath), REL(d, ref), tmpref, &created) != 0)
            return;
    }
}

/* One commit in progress: the names it uses and what it has done so far,
 * so that a failure undoes exactly that. */
typedef struct commit {
    disk *d;
    disk_writer *w;
    uint64_t size;
    char opath[ACACHE_PATH_MAX], rpath[ACACHE_PATH_MAX];
    char ref[ACACHE_PATH_MAX + sizeof DISK_REF_SUFFIX];
    /* tmp/ref-<pid>-<n>, to replace the reference: named when first needed
     * ("" until then), as getpid(2) costs a system call and most puts
     * replace no reference. */
    char tmpref[ACACHE_PATH_MAX];
    struct stat mine;             /* the file our reference is, once known */
    bool mine_known;
    bool new_entry, new_object, linked, placed;
    bool shared;     /* our reference is to an object that was there before */
    bool temp_named; /* the temp file's name is still ours (not renamed, not removed) */
} commit;


/* Names the paths the commit uses (fsync of the temp file under
 * durability=fsync). The temp file stays open, and its lock held, until
 * the commit ends: it is ours until the object is in place, its bytes are
 * compared with an existing object's, and when an existing object is
 * shared its name holds the same bytes until the record is in. */
static acache_status commit_start(commit *c, const acache_id *output)
{
    disk_writer *w = c->w;
    int err = c->d->fsync && fsync(w->t.fd) != 0 ? errno : 0;
    /* Whole now: from here on it may be read by the store's group. */
    fs_share(w->t.fd, &c->d->perms);
    if (err)
        return set_errno_error(err, "disk store: writing %s", w->t.path);
    disk_entry_path(c->d, 'o', output, c->opath);
    disk_entry_path(c->d, 'a', &w->action, c->rpath);
    snprintf(c->ref, sizeof c->ref, "%s" DISK_REF_SUFFIX, c->rpath);
    /* Named when first needed, and not from the temp file's suffix: once
     * that file is renamed its name is free, and another put may be given
     * it while this one still uses this. */
    c->tmpref[0] = '\0';
    return ACACHE_OK;
}

/* The temp file's name goes (its bytes are in place under another name,
 * or not needed): from now on another put may be given it. */
static void temp_gone(commit *c)
{
    if (!c->temp_named)
        return;
    unlink(c->w->t.path);
    c->temp_named = false;
    os_hook_run("put-temp-gone", c->w->t.path);
}

/* Step 1 for bytes that may be a new object: the action's reference is a
 * link to the temp file, so that the bytes are never visible under their
 * object name with no reference (a trim would take them for garbage). */
static acache_status link_temp(commit *c)
{
    disk_writer *w = c->w;
    int err = link_into(c->d, AT_FDCWD, w->t.path, REL(c->d, c->ref), c->tmpref, &c->new_entry);
    if (err)
        return set_errno_error(err, "disk store: linking %s to %s", w->t.path, c->ref);
    c->linked = true;
    return ACACHE_OK;
}

/*
 * The object exists with our bytes (obj: as it was seen): used again. Our
 * reference becomes a link to it (objects are shared); our bytes are
 * dropped once the record is in, their name kept until then to give the
 * object's name back if a trim removes it meanwhile (commit_mend).
 * c->placed stays false when it vanished meanwhile (the caller goes on as
 * for a new object).
 */
static acache_status share_object(commit *c, const struct stat *obj)
{
    disk *d = c->d;
    bool created = false;
    /* A trim must see it as recent: one with a grace period looks at the
     * time after moving the file aside, so from here on it leaves it. */
    if (utimensat(d->rootfd, REL(d, c->opath), NULL, 0) != 0 && errno == ENOENT)
        return ACACHE_OK;
    /* A reference to our temp file made a moment ago (step 1) goes first,
     * so that the link below is one call rather than a link to a private
     * name and a rename (if another put of this action replaced it since,
     * the record decides which stays: commit_mend). */
    if (c->linked)
        unlinkat(d->rootfd, REL(d, c->ref), 0);
    int err = link_into(d, d->rootfd, REL(d, c->opath), REL(d, c->ref), c->tmpref, &created);
    if ((err == ENOENT || err == EMLINK) && c->linked) {
        /* Gone (our bytes take its place: the caller goes round again),
         * or too many links to it (our own copy stays the reference, the
         * object's name serves the same bytes): the reference is to our
         * bytes again. */
        int lerr = link_into(d, AT_FDCWD, c->w->t.path, REL(d, c->ref), c->tmpref, &created);
        if (lerr)
            return set_errno_error(lerr, "disk store: linking %s to %s", c->w->t.path, c->ref);
        if (err == EMLINK) {
            temp_gone(c);
            c->placed = true;
        }
        return ACACHE_OK;
    }
    if (err == ENOENT || err == EMLINK)
        return ACACHE_OK; /* gone, or full of links: placed as a new object */
    if (err)
        return set_errno_error(err, "disk store: linking %s to %s", c->opath, c->ref);
    if (!c->linked)
        c->new_entry = created;
    c->linked = c->placed = c->shared = c->mine_known = true;
    c->mine = *obj;
    /* Between our link and our record: a trim or another put may act. */
    os_hook_run("put-shared", c->opath);
    return ACACHE_OK;
}

/* The empty object exists in any store that has met an action with no
 * output (a third of a go build's), so its put looks for it first and,
 * when it is there and empty, links the reference straight from it: no
 * reference to the temp file, no rename, no comparison of bytes. */
static acache_status share_first(commit *c)
{
    disk *d = c->d;
    struct stat sb;
    if (c->size != 0 || fstatat(d->rootfd, REL(d, c->opath), &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(sb.st_mode) || sb.st_size != 0)
        return ACACHE_OK; /* new, or damaged: placed (or repaired) as a new object */
    return share_object(c, &sb);
}

/* Step 2: the object's name. When the object exists already, the reference
 * moves to it and these bytes are dropped; when it vanishes meanwhile (a
 * trim took it for garbage), ours take its place. */
static acache_status place_object(commit *c)
{
    disk *d = c->d;
    const char *tmp = c->w->t.path;
    acache_status st = ACACHE_OK;
    struct stat sb;
    for (int tries = 0; !c->placed && st == ACACHE_OK; tries++) {
        int err = tries < 4 ? place_new(d, tmp, REL(d, c->opath)) : EAGAIN;
        if (err == 0) {
            c->new_object = c->placed = true;
            c->temp_named = false;
        } else if (err != EEXIST) {
            st = set_errno_error(err, "disk store: renaming %s to %s", tmp, c->opath);
        } else if (fstatat(d->rootfd, REL(d, c->opath), &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            continue;
        } else if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != c->size ||
                   !same_bytes(d, REL(d, c->opath), c->w->t.fd, c->size)) {
            /* A damaged copy (even of the right size): ours, just
             * verified, replaces it in one rename (a reader that has the
             * old one open keeps it). */
            if (renameat(AT_FDCWD, tmp, d->rootfd, REL(d, c->opath)) != 0) {
                st = set_errno_error(errno, "disk store: renaming %s to %s", tmp, c->opath);
            } else {
                counters_add(&d->cnt, CNT_REPAIRED, 1);
                c->placed = true;
                c->temp_named = false;
            }
        } else {
            st = share_object(c, &sb);
        }
    }
    return st;
}

/* Whether the reference still is the file this put made it: our temp
 * file (looked at when first asked: most puts never ask) or the object it
 * shared. */
static bool ref_is_ours(commit *c)
{
    struct stat sb;
    if (!c->mine_known && fstat(c->w->t.fd, &c->mine) != 0)
        return false;
    c->mine_known = true;
    return fstatat(c->d->rootfd, REL(c->d, c->ref), &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
           sb.st_ino == c->mine.st_ino && sb.st_dev == c->mine.st_dev;
}

/*
 * After the record: mends what another process may have done meanwhile.
 * Nothing to mend while our reference is the file we made it: the
 * object's name goes only when no reference holds it. Else another put of
 * this action replaced it, or a trim evicting an older record of this
 * action took it as that record's (a shared object's reference is a link
 * to that record's object). A trim removes a reference only if no record
 * is there once it has moved it aside (trim_aside.c), so looking after our
 * record always catches it, even when this put made both. A shared object
 * may then have gone as garbage, and its name comes back from our bytes.
 */
static void commit_mend(commit *c)
{
    disk *d = c->d;
    struct stat sb;
    if (ref_is_ours(c))
        return;
    if (c->shared && c->temp_named &&
        fstatat(d->rootfd, REL(d, c->opath), &sb, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
        linkat(AT_FDCWD, c->w->t.path, d->rootfd, REL(d, c->opath), 0);
    match_ref(d, c->rpath, c->ref, c->tmpref);
}

static void commit_count(commit *c)
{
    counters *cnt = &c->d->cnt;
    counters_add(cnt, CNT_PUTS, 1);
    counters_add(cnt, CNT_BYTES_WRITTEN, (int64_t)c->size);
    if (c->new_entry) {
        counters_add(cnt, CNT_ENTRIES, 1);
        counters_add(cnt, CNT_SIZE, (int64_t)disk_usage(DISK_RECORD_MAX));
    }
    if (c->new_object) {
        counters_add(cnt, CNT_OBJECTS, 1);
        counters_add(cnt, CNT_SIZE, (int64_t)disk_usage(c->size));
    }
    counters_flush_due(cnt, fs_now_ns(), COUNTERS_PUT_FLUSH_NS);
}

/* Nothing partial stays: our reference (if it still is ours), and the
 * object if we made it and nobody else refers to it. */
static void commit_undo(commit *c)
{
    disk *d = c->d;
    struct stat sb;
    if (c->linked && ref_is_ours(c))
        unlinkat(d->rootfd, REL(d, c->ref), 0);
    if (c->new_object && fstatat(d->rootfd, REL(d, c->opath), &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        sb.st_nlink == 1)
        unlinkat(d->rootfd, REL(d, c->opath), 0);
    temp_gone(c);
}

/* Fills a put's result with its path. */
static void put_result(acache_result *res, const acache_id *output, uint64_t size, int64_t now,
                       const char *path)
{
    if (!res)
        return;
    res->output_id = *output;
    res->size = size;
    res->time_ns = now;
    snprintf(res->path, sizeof res->path, "%s", path);
    res->data = NULL;
}

/* Commits a put whose file system is full into the overflow: from its
 * temp file there or, after a step of the store's commit failed for want
 * of room, from the put's temp file, still open (the store's names for it
 * are gone already). */
static acache_status commit_overflow(disk_writer *w, const acache_id *output, uint64_t size,
                                     acache_result *res)
{
    char path[ACACHE_PATH_MAX];
    int err = w->spilled ? 0 : overflow_adopt(w->d, &w->t, size);
    if (!err)
        w->spilled = true;
    if (!err)
        err = overflow_place(w->d, &w->t, output, path);
    if (err) {
        /* The cause stays the full disk, as the first message says. */
        char first[512];
        snprintf(first, sizeof first, "%s", acache_last_error());
        return set_error(ACACHE_ENOSPC, "%s; no room in the overflow either: %s",
                         first[0] ? first : "disk store: no space left", strerror(err));
    }
    put_result(res, output, size, fs_now_ns(), path);
    return ACACHE_OK;
}

static acache_status disk_put_commit(backend_writer *bw, const acache_id *output, uint64_t size,
                                     acache_result *res)
{
    disk_writer *w = (disk_writer *)bw;
    commit c = { .d = w->d, .w = w, .size = size, .temp_named = true };
    int64_t now = 0;
    acache_status st = ACACHE_OK;
    if (w->spilled) {
        if ((st = commit_overflow(w, output, size, res)) != ACACHE_OK)
            counters_add(&c.d->cnt, CNT_ERRORS, 1);
        tempfile_discard(&w->t);
        free(w);
        return st;
    }
    st = commit_start(&c, output);
    if (st == ACACHE_OK)
        st = share_first(&c);
    if (st != ACACHE_OK)
        goto out;
    /* 1. and 2.: unless an existing object took the reference already,
     * the reference to our bytes, then the object's name. */
    if (!c.placed && (st = link_temp(&c)) != ACACHE_OK)
        goto out;
    os_hook_run("put-linked", c.ref);
    if ((st = place_object(&c)) != ACACHE_OK)
        goto out;
    /* 3. The record: from now on the entry is visible. */
    now = fs_now_ns();
    bool rec_created = c.new_entry;
    if ((st = write_record(c.d, &w->action, output, size, now, &rec_created)) != ACACHE_OK)
        goto out;
    os_hook_run("put-recorded", c.rpath);
    commit_mend(&c);
    put_result(res, output, size, now, c.opath);
    commit_count(&c);
    trim_after_put(c.d);
out:
    if (st != ACACHE_OK) {
        commit_undo(&c);
        /* No room for a step (a shard directory, a link, the record): the
         * bytes, verified and still open, go to the overflow. */
        if (st == ACACHE_ENOSPC && c.d->spill)
            st = commit_overflow(w, output, size, res);
        if (st != ACACHE_OK)
            counters_add(&c.d->cnt, CNT_ERRORS, 1);
    }
    temp_gone(&c); /* a shared object's: its bytes are not needed now */
    if (w->spilled)
        tempfile_discard(&w->t); /* gone if placed; else ours to remove */
    else
        tempfile_close(&w->t, false);
    free(w);
    return st;
}

static acache_status disk_del(void *self, const acache_id *action)
{
    disk *d = self;
    char rpath[ACACHE_PATH_MAX], ref[ACACHE_PATH_MAX + sizeof DISK_REF_SUFFIX];
    disk_entry_path(d, 'a', action, rpath);
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rpath);
    if (unlinkat(d->rootfd, REL(d, rpath), 0) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ACACHE_MISS;
        counters_add(&d->cnt, CNT_ERRORS, 1);
        return set_errno_error(errno, "disk store: removing %s", rpath);
    }
    /* The object, now perhaps unreferenced, is left to the trim: a build
     * may still be reading it. */
    unlinkat(d->rootfd, REL(d, ref), 0);
    counters_add(&d->cnt, CNT_ENTRIES, -1);
    counters_add(&d->cnt, CNT_SIZE, -(int64_t)disk_usage(DISK_RECORD_MAX));
    return ACACHE_OK;
}

static void disk_close(void *self)
{
    disk *d = self;
    trim_stop(d);
    overflow_close(d);
    counters_close(&d->cnt);
    disk_unregister(d);
    pthread_mutex_destroy(&d->at.mu);
    if (d->rootfd >= 0)
        close(d->rootfd);
    free(d);
}

static const char *disk_local_dir(void *self) { return ((disk *)self)->root; }

/* Removes temp files left by processes that died mid-put: old ones whose
 * lock no writer holds (a put's writer holds it however long it runs; a
 * young file may be one whose writer has not locked it yet). */
static void remove_stale_temps(disk *d)
{
    char dir[ACACHE_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/tmp", d->root);
    DIR *dp = n > 0 && (size_t)n < sizeof dir ? opendir(dir) : NULL;
    if (!dp)
        return;
    time_t cutoff = time(NULL) - (time_t)(DISK_STALE_NS / 1000000000LL);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && st.st_mtime < cutoff)
            tempfile_remove_unlocked(dirfd(dp), de->d_name);
    }
    closedir(dp);
}

static acache_status default_dir(char *out, size_t size)
{
    const char *env = getenv("ACACHE_DIR");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return ACACHE_OK;
    }
    env = getenv("XDG_CACHE_HOME");
    if (env && *env) {
        snprintf(out, size, "%s/acache", env);
        return ACACHE_OK;
    }
    env = getenv("HOME");
    if (env && *env) {
        snprintf(out, size, "%s/.cache/acache", env);
        return ACACHE_OK;
    }
    return set_error(ACACHE_EINVAL, "disk store: no directory given and none of ACACHE_DIR, "
                                    "XDG_CACHE_HOME, HOME is set");
}

static acache_status parse_options(disk *d, spec *s)
{
    const char *v;
    acache_status st = ACACHE_OK;
    d->max_size = DISK_DEFAULT_MAX_SIZE;
    d->max_age_ns = DISK_DEFAULT_MAX_AGE_NS;
    d->grace_ns = DISK_DEFAULT_GRACE_NS;
    d->trim_interval_ns = DISK_DEFAULT_TRIM_INTERVAL_NS;
    if ((v = spec_get(s, "durability"))) {
        if (strcmp(v, "fsync") == 0)
            d->fsync = true;
        else if (strcmp(v, "none") != 0)
            return set_error(ACACHE_EINVAL, "disk store: durability must be none or fsync, got '%s'", v);
    }
    if ((v = spec_get(s, "verify-reads")) && (st = parse_bool("verify-reads", v, &d->verify_reads)))
        return st;
    if ((v = spec_get(s, "spill")) && (st = parse_bool("spill", v, &d->spill)))
        return st;
    d->perms = FS_PERMS_PRIVATE;
    if ((v = spec_get(s, "umask")) && fs_perms_from_umask(v, &d->perms) != 0)
        return set_error(ACACHE_EINVAL, "disk store: umask must be octal, at most 0777 (002, 027), got '%s'", v);
    if ((v = spec_get(s, "max-size")) && (st = parse_size(v, &d->max_size)))
        return st;
    if ((v = spec_get(s, "max-age")) && (st = parse_duration_ns(v, &d->max_age_ns)))
        return st;
    if ((v = spec_get(s, "grace")) && (st = parse_duration_ns(v, &d->grace_ns)))
        return st;
    if ((v = spec_get(s, "trim-interval"))) {
        if (strcmp(v, "off") == 0)
            d->trim_interval_ns = -1;
        else if ((st = parse_duration_ns(v, &d->trim_interval_ns)))
            return st;
    }
    return ACACHE_OK;
}

/* Makes ROOT/v1 and its fixed subdirectories where missing (*fresh: v1
 * was new) with the store's permissions; shared, in the group gid of the
 * top directory. Each must be writable. */
static acache_status make_dirs(disk *d, gid_t gid, bool *fresh)
{
    static const char *const subdirs[] = { "", "/a", "/o", "/tmp", "/stats" };
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        char dir[ACACHE_PATH_MAX];
        int n = snprintf(dir, sizeof dir, "%s%s", d->root, subdirs[i]);
        if (n < 0 || (size_t)n >= sizeof dir)
            return set_error(ACACHE_EINVAL, "disk store: path too long: %s", d->root);
        int merr = fs_mkdirat(AT_FDCWD, dir, d->perms.dir);
        if (merr == 0) {
            *fresh |= i == 0; /* a new store: its counters start exact */
            /* Shared: the group of the top directory, kept below by setgid. */
            if (d->perms.dir != 0700 && lchown(dir, (uid_t)-1, gid) == 0)
                chmod(dir, d->perms.dir);
        } else if (merr != EEXIST) {
            return set_errno_error(merr, "disk store: cannot create directory %s", dir);
        }
        if (access(dir, W_OK | X_OK) != 0)
            return set_errno_error(errno, "disk store: cannot write to directory %s", dir);
    }
    return ACACHE_OK;
}

acache_status disk_open(spec *s, void **self, const backend_ops **ops)
{
    bool fresh = false;
    char given[ACACHE_PATH_MAX], real[PATH_MAX];
    acache_status st = ACACHE_OK;
    disk *d = calloc(1, sizeof *d);
    if (!d)
        return set_error(ACACHE_ENOMEM, "out of memory");
    d->rootfd = -1;
    if ((st = parse_options(d, s)) != ACACHE_OK)
        goto fail;
    if (s->path[0])
        snprintf(given, sizeof given, "%s", s->path);
    else if ((st = default_dir(given, sizeof given)) != ACACHE_OK)
        goto fail;

    int err = fs_mkdir_p(given, d->perms.dir);
    struct stat sb;
    if (stat(given, &sb) != 0) {
        st = set_errno_error(err ? err : errno, "disk store: cannot create directory %s", given);
        goto fail;
    }
    if (!S_ISDIR(sb.st_mode)) {
        st = set_error(ACACHE_EINVAL, "disk store: %s is not a directory", given);
        goto fail;
    }
    if (!realpath(given, real)) {
        st = set_errno_error(errno, "disk store: cannot resolve %s", given);
        goto fail;
    }
    /* Room for "/v1/a/XX/<64 hex>" after the root. */
    if (strlen(real) + 80 >= ACACHE_PATH_MAX) {
        st = set_error(ACACHE_EINVAL, "disk store: path too long: %s", real);
        goto fail;
    }
    d->rootlen = (size_t)snprintf(d->root, sizeof d->root, "%s/v1", real);
    if ((st = make_dirs(d, sb.st_gid, &fresh)) != ACACHE_OK)
        goto fail;
    d->rootfd = open(d->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (d->rootfd < 0) {
        st = set_errno_error(errno, "disk store: cannot open directory %s", d->root);
        goto fail;
    }
    remove_stale_temps(d);
    counters_init(&d->cnt, d->root, d->rootfd, d->perms);
    if (fresh) {
        counters_mark_counted(&d->cnt);
        trim_mark_fresh(d);
    }
    pthread_mutex_init(&d->at.mu, NULL);
    pthread_mutex_init(&d->ovf.mu, NULL);
    disk_register(d);
    *self = d;
    *ops = &disk_ops;
    return ACACHE_OK;
fail:
    if (d->rootfd >= 0)
        close(d->rootfd);
    free(d);
    return st;
}

static const backend_ops disk_ops = {
    .name = "disk",
    .close = disk_close,
    .get = disk_get,
    .put_begin = disk_put_begin,
    .put_write = disk_put_write,
    .put_commit = disk_put_commit,
    .put_abort = disk_put_abort,
    .del = disk_del,
    .local_dir = disk_local_dir,
};
