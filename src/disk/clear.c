/*
 * clear.c - empties a disk store: every record, reference and object, in
 * use or not; then sets the size estimate to what is left.
 *
 * It must never remove the temp file of a put still running (only those
 * a dead process left), the store's own directories, or its counters of
 * hits and misses; and it runs only while no trim does (the trim lock).
 */
#include "disk/disk.h"
#include "core/error.h"
#include "os/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Removes every file of one shard directory ("a/XX" or "o/XX"). */
static void clear_shard(disk *d, char kind, int shard, acache_trim_report *r)
{
    char dir[8];
    snprintf(dir, sizeof dir, "%c/%02x", kind, shard);
    DIR *dp = disk_opendir(d, dir);
    if (!dp)
        return;
    int dfd = dirfd(dp);
    r->dirs_listed++;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat sb;
        r->files_examined++;
        if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(sb.st_mode) ||
            unlinkat(dfd, de->d_name, 0) != 0)
            continue;
        bool ref = strchr(de->d_name, '.') != NULL;
        if (kind == 'o') {
            r->objects_removed++;
            r->bytes_removed += disk_usage((uint64_t)sb.st_size);
        } else if (!ref) {
            r->entries_removed++;
            r->bytes_removed += disk_usage(DISK_RECORD_MAX);
        }
    }
    closedir(dp);
}

acache_status acache_clear(acache_store *store, acache_trim_report *report)
{
    acache_trim_report scratch;
    acache_trim_report *r = report ? report : &scratch;
    memset(r, 0, sizeof *r);
    disk *d = disk_of_store(store, "acache_clear");
    if (!d)
        return ACACHE_EINVAL;
    int64_t start = fs_now_ns();
    int lock = disk_trim_lock(d, true);
    if (lock < 0)
        return set_errno_error(errno, "acache_clear: cannot lock %s/trim.lock", d->root);
    counter_totals before;
    counters_read(&d->cnt, &before);
    r->size_before = before.v[CNT_SIZE] > 0 ? (uint64_t)before.v[CNT_SIZE] : 0;
    /* Records (and references) first, so that no record outlives its
     * object even if this is interrupted. */
    for (int s = 0; s < 256; s++)
        clear_shard(d, 'a', s, r);
    for (int s = 0; s < 256; s++)
        clear_shard(d, 'o', s, r);
    counters_calibrate(&d->cnt, 0, 0, 0);
    r->duration_ns = fs_now_ns() - start;
    close(lock);
    return ACACHE_OK;
}
