/*
 * trim_aside.h - how a trim removes a file that a get or put may reach at
 * the same moment (trim_aside.c): moved to a private name in its own
 * directory, looked at again, then unlinked or put back; and the files a
 * trim that died left aside, put back by the next listing of their
 * directory and judged once, after that listing.
 */
#ifndef ACACHE_TRIM_ASIDE_H
#define ACACHE_TRIM_ASIDE_H

#include "disk/disk.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#define ASIDE_HEXLEN (2 * ACACHE_ID_SIZE)
/* The longest name aside: an action's reference, <hex>.out. */
#define ASIDE_NAME_SIZE (ASIDE_HEXLEN + sizeof DISK_REF_SUFFIX)

/*
 * Removes rel ("a/XX/<name>" or "o/XX/<name>", below rootfd) if it still
 * is the file `seen`, with at most max_links links and an mtime before
 * protect_from; otherwise puts it back. True when it was removed.
 */
bool aside_remove(int rootfd, const char *rel, const struct stat *seen, nlink_t max_links,
                  int64_t protect_from);

/*
 * Removes an evicted action's reference ref ("a/XX/<action>.out") if, once
 * moved aside, it still is a link to the record's object and no record is
 * at rec ("a/XX/<action>"): a put of the action that wrote its record
 * meanwhile keeps it. Otherwise puts it back. True when removed. (A put
 * looks at its reference after its record, so either the put sees the
 * reference gone and links it again, or this sees the record.)
 */
bool aside_remove_ref(int rootfd, const char *ref, const char *rec, const struct stat *object);

/* The names one listing of a directory put back from aside. */
typedef struct aside_restored {
    char (*names)[ASIDE_NAME_SIZE];
    size_t n, cap;
} aside_restored;

/* True if name, met while listing a shard directory, is a file a trim
 * moved aside. */
bool aside_is(const char *name);
/* Puts dir/name (dir "a/XX" or "o/XX", name aside_is) back under its own
 * name, and adds that name to back: a name added to a directory while it
 * is being read may or may not be returned by readdir, so the listing
 * skips the names in back (aside_was_restored) and judges them after its
 * loop. */
void aside_restore(int rootfd, const char *dir, const char *name, aside_restored *back);
bool aside_was_restored(const aside_restored *back, const char *name);
void aside_restored_free(aside_restored *back);

#endif
