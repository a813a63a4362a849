/*
 * gcp_spill.c - what `acache gocacheprog` does when the cache's file
 * system is full. The go command treats a failed put as fatal in places
 * (its module index), so a full disk would fail the build; the cache must
 * never do that. A put that the file system has no room for goes instead
 * to a disk store in a directory of this process's own under $TMPDIR (on
 * another file system, if there is one), whose DiskPath the go command
 * reads for the rest of its run; the directory is removed at exit. Such
 * puts are not kept: the next run misses them.
 *
 * It must never send a put elsewhere while the cache has room, nor leave
 * its directory behind after a normal exit, nor when the store in it
 * cannot be opened.
 */
#include "gcp_spill.h"
#include "commands.h"

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* Room kept free beyond the body: its record, directories, counters. */
#define MARGIN ((uint64_t)1 << 20)

void gcp_spill_init(gcp_spill *sp, acache_store *store)
{
    acache_disk_counters c;
    memset(sp, 0, sizeof *sp);
    if (acache_disk_stats(store, &c) == ACACHE_OK) {
        sp->cache_dir = strdup(c.dir);
        sp->home = store;
        sp->spilled_before = c.spilled;
    }
}

static bool has_room(const char *dir, uint64_t size)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return true; /* cannot tell: let the store say */
    return (uint64_t)vfs.f_bavail * vfs.f_frsize >= size + MARGIN;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw);

static void remove_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

acache_store *gcp_spill_route(gcp_spill *sp, acache_store *store, uint64_t body_size)
{
    if (!sp->cache_dir || has_room(sp->cache_dir, body_size))
        return store;
    if (!sp->store && !sp->failed) {
        const char *tmp = getenv("TMPDIR");
        char *spec = NULL;
        if (asprintf(&sp->dir, "%s/acache-spill-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
            sp->dir = NULL;
        bool made = sp->dir && mkdtemp(sp->dir);
        if (!made || asprintf(&spec, "disk:%s?trim-interval=off", sp->dir) < 0 ||
            acache_open(spec, &sp->store) != ACACHE_OK) {
            sp->failed = 1;
            sp->store = NULL;
            /* Made, but no store in it: it goes now, with whatever the
             * failed open left in it. */
            if (made)
                remove_tree(sp->dir);
        }
        free(spec);
        if (sp->failed)
            cli_err("gocacheprog: the cache's file system is full, and no room elsewhere "
                    "for this run's outputs");
        else
            cli_err("gocacheprog: the cache's file system is full: this run's new outputs "
                    "go to %s (removed at exit), not into the cache", sp->dir);
    }
    return sp->store && has_room(sp->dir, body_size) ? sp->store : store;
}

uint64_t gcp_spill_overflowed(gcp_spill *sp)
{
    acache_disk_counters c;
    if (!sp->home || acache_disk_stats(sp->home, &c) != ACACHE_OK || c.spilled < sp->spilled_before)
        return 0;
    return c.spilled - sp->spilled_before;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void gcp_spill_close(gcp_spill *sp)
{
    acache_close(sp->store);
    if (sp->dir && sp->store)
        remove_tree(sp->dir);
    free(sp->dir);
    free(sp->cache_dir);
    memset(sp, 0, sizeof *sp);
}
