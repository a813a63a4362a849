/*
 * overflow.c - where a disk store's puts go when its file system is full.
 *
 * A full disk must never fail a build: the go command treats a failed put
 * as fatal where it needs the output's path. With the spec option
 * spill=on (which `acache gocacheprog` sets), when any step of a put into
 * the store fails with ENOSPC or EDQUOT (no blocks, no inodes, no quota; before
 * or during the put), the put goes on in a directory of this store's own
 * under $TMPDIR (else /tmp): the bytes written so far are copied there from
 * the put's temp file (still open), and its commit answers with a path in
 * it, valid until the store is closed, when the directory is removed. Such
 * puts are not kept: the next process misses them. Each is counted
 * (stats: spilled).
 *
 * It must never be used while the store has room, never leave its
 * directory behind after acache_close(), and never serve bytes other
 * than the put's own (the object is named by its verified id).
 */
#include "disk/disk.h"
#include "core/error.h"
#include "os/fsutil.h"
#include "os/tempfile.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool overflow_cause(int err) { return err == ENOSPC || err == EDQUOT; }

/* Makes the directory, once per store; 0 or an errno value. */
static int make_dir(disk *d)
{
    int err = 0;
    pthread_mutex_lock(&d->ovf.mu);
    if (!d->ovf.dir[0]) {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(d->ovf.dir, sizeof d->ovf.dir, "%s/acache-overflow-XXXXXX",
                         tmp && *tmp ? tmp : "/tmp");
        if (n < 0 || (size_t)n >= sizeof d->ovf.dir)
            err = ENAMETOOLONG;
        else if (!mkdtemp(d->ovf.dir))
            err = errno;
        if (err)
            d->ovf.dir[0] = '\0';
    }
    pthread_mutex_unlock(&d->ovf.mu);
    return err;
}

int overflow_temp(disk *d, tempfile *t)
{
    int err = make_dir(d);
    return err ? err : tempfile_create(t, d->ovf.dir, "put-");
}

int overflow_adopt(disk *d, tempfile *t, uint64_t written)
{
    tempfile nt;
    int err = overflow_temp(d, &nt);
    if (err)
        return err;
    char buf[65536];
    for (uint64_t off = 0; off < written && !err;) {
        size_t want = written - off < sizeof buf ? (size_t)(written - off) : sizeof buf;
        ssize_t n = pread(t->fd, buf, want, (off_t)off);
        if (n <= 0)
            err = n < 0 ? errno : EIO;
        else if ((err = fs_write_all(nt.fd, buf, (size_t)n)) == 0)
            off += (uint64_t)n;
    }
    if (err) {
        tempfile_discard(&nt);
        return err;
    }
    tempfile_close(t, false);
    *t = nt;
    return 0;
}

int overflow_place(disk *d, tempfile *t, const acache_id *output, char *out)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(output, hex);
    int n = snprintf(out, ACACHE_PATH_MAX, "%s/%s", d->ovf.dir, hex);
    if (n < 0 || n >= ACACHE_PATH_MAX)
        return ENAMETOOLONG;
    /* Same bytes under the same name if another put got there first. */
    int err = tempfile_rename(t, AT_FDCWD, out, 0);
    if (err)
        return err;
    counters_add(&d->cnt, CNT_SPILLED, 1);
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void overflow_close(disk *d)
{
    if (d->ovf.dir[0])
        nftw(d->ovf.dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    d->ovf.dir[0] = '\0';
    pthread_mutex_destroy(&d->ovf.mu);
}
