/*
 * backend_disk.c - the local disk store, acache's home tier.
 *
 * Layout under the root directory given in the spec:
 *
 *   ROOT/v1/                     versioned namespace (format version 1)
 *   ROOT/v1/a/XX/<action hex>    action records, one line of text:
 *                                "acache-action-v1 <action> <output> <size> <time_ns>\n"
 *   ROOT/v1/o/XX/<output hex>    objects: the raw bytes, no extension
 *   ROOT/v1/tmp/                 temp files of puts in progress
 *
 * XX is the first two hex digits of the id. Every file is written once: to a
 * unique temp file, then renamed into place (object first, then its record),
 * so a reader sees a whole entry or none, and several processes can share
 * the directory with no lock. Temp files live in v1/tmp rather than beside
 * their final name because an object's name is only known after its last
 * byte; v1/tmp is on the same file system, so the rename stays atomic.
 *
 * This file must never rewrite a file in place (readers may have it mapped)
 * and never serve an object whose size (or, with verify-reads, SHA-256) does
 * not match its record: such entries are removed and reported as corrupt.
 */
#include "backend.h"
#include "error.h"
#include "fsutil.h"
#include "sha.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAGIC "acache-action-v1"
#define RECORD_MAX 256
/* A used entry's time is refreshed at most this often (eviction reads it). */
#define REFRESH_NS (3600LL * 1000000000LL)
/* Temp files older than this belong to a process that died. */
#define STALE_TMP_SEC (3600)

typedef struct disk {
    char root[ACACHE_PATH_MAX]; /* absolute path of ROOT/v1 */
    size_t rootlen;
    int rootfd;                 /* ROOT/v1, so lookups walk 3 components, not all */
    bool fsync;
    bool verify_reads;
    uint64_t max_size;
    int64_t max_age_ns;
} disk;

typedef struct disk_writer {
    backend_writer base;
    disk *d;
    acache_id action;
    int fd;
    char tmp[ACACHE_PATH_MAX];
} disk_writer;

static const backend_ops disk_ops;

/* An entry path relative to rootfd. */
#define REL(d, path) ((path) + (d)->rootlen + 1)

/* ROOT/v1/<kind>/XX/<hex>. The root length was checked at open. */
static void entry_path(const disk *d, char kind, const acache_id *id, char *out)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    char *p = out;
    memcpy(p, d->root, d->rootlen);
    p += d->rootlen;
    *p++ = '/';
    *p++ = kind;
    *p++ = '/';
    *p++ = hex[0];
    *p++ = hex[1];
    *p++ = '/';
    memcpy(p, hex, ACACHE_ID_HEX_SIZE);
}

/* Reads a decimal number of at most 19 digits ending at `stop`. */
static const char *parse_u63(const char *p, char stop, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9' && p - start < 19)
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == start || *p != stop)
        return NULL;
    *out = v;
    return p + 1;
}

/* Parses a record read from the file named by ahex (the action's hex id).
 * This is on every get's path, hence no sscanf and no round trips through
 * binary: the action is compared as text, the output decoded once. */
static acache_status parse_record(const char *buf, size_t n, const char *ahex,
                                  acache_id *output, uint64_t *size, int64_t *time_ns)
{
    /* magic SP action SP output SP size SP time LF */
    const size_t hexlen = 2 * ACACHE_ID_SIZE, mlen = sizeof RECORD_MAGIC - 1;
    if (n < mlen + 2 * (hexlen + 1) + 4 || n > RECORD_MAX || buf[n - 1] != '\n')
        return ACACHE_CORRUPT;
    if (memcmp(buf, RECORD_MAGIC " ", mlen + 1) != 0)
        return ACACHE_CORRUPT;
    const char *p = buf + mlen + 1;
    if (memcmp(p, ahex, hexlen) != 0 || p[hexlen] != ' ')
        return ACACHE_CORRUPT;
    p += hexlen + 1;
    if (p[hexlen] != ' ' || acache_id_from_hex(p, hexlen, output) != ACACHE_OK)
        return ACACHE_CORRUPT;
    p += hexlen + 1;
    uint64_t sz, t;
    if (!(p = parse_u63(p, ' ', &sz)) || !(p = parse_u63(p, '\n', &t)) || p != buf + n)
        return ACACHE_CORRUPT;
    *size = sz;
    *time_ns = (int64_t)t;
    return ACACHE_OK;
}

static void unmap_release(void *ctx, const void *data, uint64_t size)
{
    (void)ctx;
    munmap((void *)data, (size_t)size);
}

/* Removes a bad entry so the next get is a plain miss, and says why. */
static acache_status corrupt(const char *rpath, const char *opath, const char *why)
{
    unlink(rpath);
    if (opath)
        unlink(opath);
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
            return corrupt(rpath, NULL, "its object is missing");
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
        st = corrupt(rpath, opath, "object size does not match its record");
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
        st = corrupt(rpath, opath, "object content does not match its id");
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

static acache_status disk_get(void *self, const acache_id *action, unsigned flags,
                              acache_result *res)
{
    disk *d = self;
    char rpath[ACACHE_PATH_MAX];
    char buf[RECORD_MAX + 1];
    acache_status st = ACACHE_OK;
    entry_path(d, 'a', action, rpath);

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
    st = parse_record(buf, (size_t)n, ahex, &res->output_id, &res->size, &res->time_ns);
    if (st != ACACHE_OK) {
        st = corrupt(rpath, NULL, "malformed action record");
        goto out;
    }
    entry_path(d, 'o', &res->output_id, res->path);
    if ((flags & ACACHE_GET_DATA) || d->verify_reads) {
        st = open_object(d, rpath, res->path, flags, res);
        if (st != ACACHE_OK)
            goto out;
    } else {
        struct stat ost;
        if (fstatat(d->rootfd, REL(d, res->path), &ost, 0) != 0) {
            if (errno == ENOENT)
                st = corrupt(rpath, NULL, "its object is missing");
            else
                st = set_errno_error(errno, "disk store: stat %s", res->path);
            goto out;
        }
        if (!S_ISREG(ost.st_mode) || (uint64_t)ost.st_size != res->size) {
            st = corrupt(rpath, res->path, "object size does not match its record");
            goto out;
        }
    }
    /* Eviction reads the record's mtime as the last use; refresh it (and the
     * object's) at most once an hour so hits stay read-only. */
    int64_t mtime_ns = (int64_t)rst.st_mtim.tv_sec * 1000000000 + rst.st_mtim.tv_nsec;
    if (fs_now_ns() - mtime_ns > REFRESH_NS) {
        futimens(fd, NULL);
        utimensat(AT_FDCWD, res->path, NULL, 0);
    }
out:
    close(fd);
    return st;
}

static acache_status make_temp(disk *d, const char *what, char *path, int *fd)
{
    int n = snprintf(path, ACACHE_PATH_MAX, "%s/tmp/%s-XXXXXX", d->root, what);
    if (n < 0 || n >= ACACHE_PATH_MAX)
        return set_error(ACACHE_EINVAL, "disk store: path too long: %s", d->root);
    *fd = mkostemp(path, O_CLOEXEC);
    if (*fd < 0)
        return set_errno_error(errno, "disk store: cannot create a temp file in %s/tmp", d->root);
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
    acache_status st = make_temp(d, "put", w->tmp, &w->fd);
    if (st != ACACHE_OK) {
        free(w);
        return st;
    }
    *out = &w->base;
    return ACACHE_OK;
}

static acache_status disk_put_write(backend_writer *bw, const void *data, size_t len)
{
    disk_writer *w = (disk_writer *)bw;
    int err = fs_write_all(w->fd, data, len);
    if (err)
        return set_errno_error(err, "disk store: writing %s", w->tmp);
    return ACACHE_OK;
}

static void disk_put_abort(backend_writer *bw)
{
    disk_writer *w = (disk_writer *)bw;
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp);
    free(w);
}

/* Writes the action record for a committed object. */
static acache_status write_record(disk *d, const acache_id *action, const acache_id *output,
                                  uint64_t size, int64_t time_ns)
{
    char tmp[ACACHE_PATH_MAX], rpath[ACACHE_PATH_MAX], line[RECORD_MAX];
    char ahex[ACACHE_ID_HEX_SIZE], ohex[ACACHE_ID_HEX_SIZE];
    int fd = -1, err = 0;
    acache_id_to_hex(action, ahex);
    acache_id_to_hex(output, ohex);
    int n = snprintf(line, sizeof line, RECORD_MAGIC " %s %s %" PRIu64 " %" PRId64 "\n", ahex,
                     ohex, size, time_ns);
    acache_status st = make_temp(d, "rec", tmp, &fd);
    if (st != ACACHE_OK)
        return st;
    err = fs_write_all(fd, line, (size_t)n);
    if (!err && d->fsync && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (err) {
        st = set_errno_error(err, "disk store: writing %s", tmp);
        goto fail;
    }
    entry_path(d, 'a', action, rpath);
    err = fs_rename_into(tmp, rpath, d->fsync);
    if (err) {
        st = set_errno_error(err, "disk store: renaming %s to %s", tmp, rpath);
        goto fail;
    }
    return ACACHE_OK;
fail:
    unlink(tmp);
    return st;
}

static acache_status disk_put_commit(backend_writer *bw, const acache_id *output, uint64_t size,
                                     acache_result *res)
{
    disk_writer *w = (disk_writer *)bw;
    disk *d = w->d;
    char opath[ACACHE_PATH_MAX];
    acache_status st = ACACHE_OK;
    int err = 0;
    if (d->fsync && fsync(w->fd) != 0)
        err = errno;
    if (close(w->fd) != 0 && !err)
        err = errno;
    w->fd = -1;
    if (err) {
        st = set_errno_error(err, "disk store: writing %s", w->tmp);
        goto out;
    }
    entry_path(d, 'o', output, opath);
    /* Renaming over an existing object is safe: same name, same bytes, and
     * a reader that has the old file open or mapped keeps its inode. */
    err = fs_rename_into(w->tmp, opath, d->fsync);
    if (err) {
        st = set_errno_error(err, "disk store: renaming %s to %s", w->tmp, opath);
        goto out;
    }
    int64_t now = fs_now_ns();
    st = write_record(d, &w->action, output, size, now);
    if (st != ACACHE_OK)
        goto out;
    if (res) {
        res->output_id = *output;
        res->size = size;
        res->time_ns = now;
        memcpy(res->path, opath, sizeof opath);
        res->data = NULL;
    }
out:
    if (st != ACACHE_OK)
        unlink(w->tmp);
    free(w);
    return st;
}

static acache_status disk_del(void *self, const acache_id *action)
{
    disk *d = self;
    char rpath[ACACHE_PATH_MAX];
    entry_path(d, 'a', action, rpath);
    if (unlink(rpath) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ACACHE_MISS;
        return set_errno_error(errno, "disk store: removing %s", rpath);
    }
    return ACACHE_OK;
}

static void disk_close(void *self)
{
    disk *d = self;
    if (d->rootfd >= 0)
        close(d->rootfd);
    free(d);
}

static const char *disk_local_dir(void *self) { return ((disk *)self)->root; }

/* Removes temp files left by processes that died mid-put. Only old ones:
 * a young temp file may belong to a put still running elsewhere. */
static void remove_stale_temps(disk *d)
{
    char dir[ACACHE_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/tmp", d->root);
    DIR *dp = n > 0 && (size_t)n < sizeof dir ? opendir(dir) : NULL;
    if (!dp)
        return;
    time_t cutoff = time(NULL) - STALE_TMP_SEC;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && st.st_mtime < cutoff)
            unlinkat(dirfd(dp), de->d_name, 0);
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
    d->max_size = 10ull << 30;
    d->max_age_ns = 30LL * 86400 * 1000000000LL;
    if ((v = spec_get(s, "durability"))) {
        if (strcmp(v, "fsync") == 0)
            d->fsync = true;
        else if (strcmp(v, "none") != 0)
            return set_error(ACACHE_EINVAL, "disk store: durability must be none or fsync, got '%s'", v);
    }
    if ((v = spec_get(s, "verify-reads")) && (st = parse_bool("verify-reads", v, &d->verify_reads)))
        return st;
    if ((v = spec_get(s, "max-size")) && (st = parse_size(v, &d->max_size)))
        return st;
    if ((v = spec_get(s, "max-age")) && (st = parse_duration_ns(v, &d->max_age_ns)))
        return st;
    return ACACHE_OK;
}

acache_status disk_open(spec *s, void **self, const backend_ops **ops)
{
    static const char *const subdirs[] = { "", "/a", "/o", "/tmp" };
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

    int err = fs_mkdir_p(given, 0700);
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
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        char dir[ACACHE_PATH_MAX];
        int n = snprintf(dir, sizeof dir, "%s%s", d->root, subdirs[i]);
        if (n < 0 || (size_t)n >= sizeof dir) {
            st = set_error(ACACHE_EINVAL, "disk store: path too long: %s", d->root);
            goto fail;
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            st = set_errno_error(errno, "disk store: cannot create directory %s", dir);
            goto fail;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            st = set_errno_error(errno, "disk store: cannot write to directory %s", dir);
            goto fail;
        }
    }
    d->rootfd = open(d->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (d->rootfd < 0) {
        st = set_errno_error(errno, "disk store: cannot open directory %s", d->root);
        goto fail;
    }
    remove_stale_temps(d);
    *self = d;
    *ops = &disk_ops;
    return ACACHE_OK;
fail:
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
