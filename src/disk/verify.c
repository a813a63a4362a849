/*
 * verify.c - checks a disk store end to end: every object's SHA-256
 * against its name, every action record against its object and its
 * reference; with ACACHE_VERIFY_REPAIR, removes what is bad and recounts
 * the size estimate.
 *
 * It must never call something a problem that is only another process at
 * work (a put between its steps, a trim between its removals): whatever
 * looks wrong is looked at again first, and the order in which puts and
 * trims change the store (reference, object, record; record, reference,
 * object) decides what can be seen in passing. Leftovers of dead processes
 * and unreferenced objects are reported, not counted as problems: trims
 * remove them. Without REPAIR it changes nothing.
 */
#include "disk/disk.h"
#include "core/error.h"
#include "os/clock.h"
#include "core/sha.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARDS 256
#define HEXLEN (2 * ACACHE_ID_SIZE)
#define CHUNK (1 << 20)

typedef struct verify_run {
    disk *d;
    const acache_verify_options *o;
    acache_verify_report *r;
    bool repair;
    unsigned char *buf;
    EVP_MD_CTX *sha;
    acache_id *bad;            /* corrupt objects found (and removed with repair) */
    size_t nbad, badcap;
    uint64_t total_objects, total_bytes;
    int64_t kept_entries, kept_objects, kept_size;
    int64_t stale_before;
} verify_run;

static void tell(verify_run *v, const char *phase, uint64_t done, uint64_t total)
{
    if (!v->o->progress || v->r->stopped)
        return;
    acache_progress p = { phase, done, total, v->r->bytes, v->total_bytes };
    if (v->o->progress(v->o->progress_ctx, &p) != 0)
        v->r->stopped = 1;
}

/* Reports what is wrong: counted (as a problem unless `counter` is the
 * count of unreferenced records), and shown through the callback. */
static void problem(verify_run *v, uint64_t *counter, const char *rel, const char *what,
                    bool repaired)
{
    char path[ACACHE_PATH_MAX + 80];
    (*counter)++;
    if (counter == &v->r->unreferenced) {
        v->r->references_restored += repaired;
    } else {
        v->r->problems++;
        v->r->repaired += repaired;
    }
    snprintf(path, sizeof path, "%s/%s", v->d->root, rel);
    if (v->o->problem)
        v->o->problem(v->o->problem_ctx, path, what, repaired);
}

/* Hashes the open file; false if it could not be read. */
static bool hash_fd(verify_run *v, int fd, acache_id *out, uint64_t *size)
{
    unsigned int len = 0;
    *size = 0;
    if (!EVP_DigestInit_ex(v->sha, sha256_md(), NULL))
        return false;
    for (;;) {
        ssize_t n = read(fd, v->buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0)
            break;
        *size += (uint64_t)n;
        v->r->bytes += (uint64_t)n;
        if (!EVP_DigestUpdate(v->sha, v->buf, (size_t)n))
            return false;
    }
    return EVP_DigestFinal_ex(v->sha, out->bytes, &len) && len == ACACHE_ID_SIZE;
}

static int cmp_idv(const void *a, const void *b) { return memcmp(a, b, sizeof(acache_id)); }

static bool is_bad(verify_run *v, const acache_id *id)
{
    return v->nbad && bsearch(id, v->bad, v->nbad, sizeof *v->bad, cmp_idv);
}

/* Opens a shard directory ("o/XX"); NULL if it does not exist. */
static DIR *open_shard(verify_run *v, char kind, int shard, int *dfd)
{
    char dir[8];
    snprintf(dir, sizeof dir, "%c/%02x", kind, shard);
    DIR *dp = disk_opendir(v->d, dir);
    *dfd = dp ? dirfd(dp) : -1;
    return dp;
}

/* Counts the objects and their bytes, for progress. */
static void count_objects(verify_run *v)
{
    for (int s = 0; s < SHARDS; s++) {
        int dfd;
        DIR *dp = open_shard(v, 'o', s, &dfd);
        if (!dp)
            continue;
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            struct stat sb;
            if (strlen(de->d_name) == HEXLEN &&
                fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
                v->total_objects++;
                v->total_bytes += (uint64_t)sb.st_size;
            }
        }
        closedir(dp);
    }
}

/* Checks one object file. */
static void check_object(verify_run *v, int dfd, const char *name, int shard)
{
    char rel[8 + HEXLEN];
    snprintf(rel, sizeof rel, "o/%02x/%s", shard, name);
    acache_id want, got;
    uint64_t size = 0;
    if (acache_id_from_hex(name, HEXLEN, &want) != ACACHE_OK)
        return;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return; /* evicted meanwhile */
        struct stat sb;
        bool ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && hash_fd(v, fd, &got, &size);
        close(fd);
        if (ok && memcmp(&got, &want, sizeof got) == 0) {
            v->r->objects++;
            if (sb.st_nlink == 1)
                v->r->orphan_objects++;
            v->kept_objects++;
            v->kept_size += (int64_t)disk_usage((uint64_t)sb.st_size);
            return;
        }
        /* Replaced under us (a put replacing a damaged copy)? Once more. */
        struct stat now;
        if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0)
            return;
        if (now.st_ino == sb.st_ino && now.st_dev == sb.st_dev)
            break;
    }
    v->r->objects++;
    bool fixed = v->repair && unlinkat(dfd, name, 0) == 0;
    problem(v, &v->r->corrupt_objects, rel, "content does not match its name (SHA-256)", fixed);
    if (!fixed) {
        v->kept_objects++;
        v->kept_size += (int64_t)disk_usage(size);
    }
    if (v->nbad == v->badcap) {
        size_t cap = v->badcap ? 2 * v->badcap : 16;
        acache_id *grown = realloc(v->bad, cap * sizeof *grown);
        if (!grown)
            return;
        v->bad = grown;
        v->badcap = cap;
    }
    v->bad[v->nbad++] = want;
}

/* Removes a record and its reference (repair). */
static bool drop_record(verify_run *v, const char *rrel)
{
    char ref[8 + HEXLEN + sizeof DISK_REF_SUFFIX];
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rrel);
    if (!v->repair || unlinkat(v->d->rootfd, rrel, 0) != 0)
        return false;
    unlinkat(v->d->rootfd, ref, 0);
    return true;
}

/* Reads a record; 1 whole, 0 malformed, -1 gone. */
static int read_record(verify_run *v, const char *rrel, const char *ahex, acache_id *output,
                       uint64_t *size)
{
    char buf[DISK_RECORD_MAX + 1];
    int64_t when;
    int fd = openat(v->d->rootfd, rrel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n >= 0 && disk_parse_record(buf, (size_t)n, ahex, output, size, &when) == ACACHE_OK;
}

/* Checks one record against its object and its reference. */
static void check_record(verify_run *v, const char *ahex)
{
    char rrel[8 + HEXLEN], ref[8 + HEXLEN + sizeof DISK_REF_SUFFIX], orel[8 + HEXLEN];
    char why[160];
    acache_id output;
    uint64_t size = 0;
    snprintf(rrel, sizeof rrel, "a/%.2s/%s", ahex, ahex);
    snprintf(ref, sizeof ref, "%s" DISK_REF_SUFFIX, rrel);
    int rc = read_record(v, rrel, ahex, &output, &size);
    if (rc < 0)
        return;
    v->r->records++;
    if (rc == 0) {
        /* A record is renamed into place whole: malformed is malformed. */
        problem(v, &v->r->bad_records, rrel, "malformed action record", drop_record(v, rrel));
        return;
    }
    char ohex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&output, ohex);
    snprintf(orel, sizeof orel, "o/%.2s/%s", ohex, ohex);
    struct stat os, rs;
    int err = fstatat(v->d->rootfd, orel, &os, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
    why[0] = '\0';
    if (is_bad(v, &output))
        snprintf(why, sizeof why, "its object %s is corrupt", ohex);
    else if (err == ENOENT)
        snprintf(why, sizeof why, "its object %s is missing", ohex);
    else if (err == 0 && (!S_ISREG(os.st_mode) || (uint64_t)os.st_size != size))
        snprintf(why, sizeof why, "its object has %" PRIu64 " bytes, the record says %" PRIu64,
                 (uint64_t)os.st_size, size);
    if (why[0]) {
        /* Evicted meanwhile? A trim removes the record before the object. */
        if (faccessat(v->d->rootfd, rrel, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
            return;
        problem(v, &v->r->dangling_records, rrel, why, drop_record(v, rrel));
        return;
    }
    if (err != 0)
        return;
    bool missing = fstatat(v->d->rootfd, ref, &rs, AT_SYMLINK_NOFOLLOW) != 0;
    if (missing || rs.st_ino != os.st_ino || rs.st_dev != os.st_dev) {
        char tmp[ACACHE_PATH_MAX + 64];
        bool fixed = false;
        if (v->repair) {
            snprintf(tmp, sizeof tmp, "%s/tmp/ref-verify-%ld", v->d->root, (long)getpid());
            unlink(tmp);
            fixed = linkat(v->d->rootfd, orel, AT_FDCWD, tmp, 0) == 0 &&
                    renameat(AT_FDCWD, tmp, v->d->rootfd, ref) == 0;
            unlink(tmp);
        }
        problem(v, &v->r->unreferenced, rrel,
                missing ? "no reference to its object (it could be evicted under it)"
                        : "its reference is to other bytes than its object",
                fixed);
    }
    v->kept_entries++;
    v->kept_size += (int64_t)disk_usage(DISK_RECORD_MAX);
}

static void check_records(verify_run *v, int shard)
{
    int dfd;
    DIR *dp = open_shard(v, 'a', shard, &dfd);
    if (!dp)
        return;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL && !v->r->stopped) {
        size_t len = strlen(de->d_name);
        if (len == HEXLEN && disk_is_hex(de->d_name, HEXLEN)) {
            check_record(v, de->d_name);
        } else if (len == HEXLEN + sizeof DISK_REF_SUFFIX - 1 &&
                   strcmp(de->d_name + HEXLEN, DISK_REF_SUFFIX) == 0) {
            char rec[HEXLEN + 1];
            memcpy(rec, de->d_name, HEXLEN);
            rec[HEXLEN] = '\0';
            if (faccessat(dfd, rec, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
                v->r->leftovers++;
        }
    }
    closedir(dp);
}

static void count_temps(verify_run *v)
{
    DIR *dp = disk_opendir(v->d, "tmp");
    if (!dp)
        return;
    int dfd = dirfd(dp);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        struct stat sb;
        if (de->d_name[0] != '.' && fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            (int64_t)sb.st_mtime * 1000000000LL < v->stale_before)
            v->r->leftovers++;
    }
    closedir(dp);
}

acache_status acache_verify(acache_store *store, const acache_verify_options *opts,
                            acache_verify_report *report)
{
    static const acache_verify_options none = { 0, NULL, NULL, NULL, NULL };
    if (!report)
        return set_error(ACACHE_EINVAL, "acache_verify: NULL report");
    memset(report, 0, sizeof *report);
    disk *d = disk_of_store(store, "acache_verify");
    if (!d)
        return ACACHE_EINVAL;
    verify_run v = { .d = d, .o = opts ? opts : &none, .r = report };
    v.repair = v.o->flags & ACACHE_VERIFY_REPAIR;
    v.stale_before = fs_now_ns() - DISK_STALE_NS;
    acache_status st = ACACHE_OK;
    int lock = -1;
    v.buf = malloc(CHUNK);
    v.sha = EVP_MD_CTX_new();
    if (!v.buf || !v.sha) {
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto out;
    }
    if (v.repair) {
        /* No trim runs while we repair (and recount). */
        lock = disk_trim_lock(d, true);
        if (lock < 0) {
            st = set_errno_error(errno, "acache_verify: cannot lock %s/trim.lock", d->root);
            goto out;
        }
    }
    count_objects(&v);
    uint64_t done = 0;
    for (int s = 0; s < SHARDS && !report->stopped; s++) {
        int dfd;
        DIR *dp = open_shard(&v, 'o', s, &dfd);
        if (!dp)
            continue;
        struct dirent *de;
        while ((de = readdir(dp)) != NULL && !report->stopped) {
            if (strlen(de->d_name) != HEXLEN || !disk_is_hex(de->d_name, HEXLEN))
                continue;
            check_object(&v, dfd, de->d_name, s);
            tell(&v, "objects", ++done, v.total_objects);
        }
        closedir(dp);
    }
    if (v.nbad)
        qsort(v.bad, v.nbad, sizeof *v.bad, cmp_idv);
    for (int s = 0; s < SHARDS && !report->stopped; s++) {
        check_records(&v, s);
        tell(&v, "records", (uint64_t)s + 1, SHARDS);
    }
    count_temps(&v);
    if (v.repair && !report->stopped)
        counters_calibrate(&d->cnt, v.kept_entries, v.kept_objects, v.kept_size);
out:
    if (lock >= 0)
        close(lock);
    EVP_MD_CTX_free(v.sha);
    free(v.buf);
    free(v.bad);
    return st;
}
