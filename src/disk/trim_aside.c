/*
 * trim_aside.c - a trim's removals that a concurrent get or put can never
 * see half done (trim_aside.h).
 *
 * Rules: a file is only ever unlinked under its private aside name, after
 * it was seen there to be what the trim decided to remove; anything else
 * goes back under its name, and a newer file that took the name meanwhile
 * is never replaced (RENAME_NOREPLACE). A file left aside by a trim that
 * died is put back undecided, and the listing that put it back looks at
 * it exactly once.
 */
#include "disk/trim_aside.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "a/XX/<name>" -> "a/XX/.t-<name>": aside in its own directory (a rename
 * there costs one directory, not two), under a name no listing takes for
 * an entry and that says where it goes back. One trim runs at a time. */
#define ASIDE_PREFIX ".t-"

static void aside_name(const char *rel, char *out, size_t size)
{
    snprintf(out, size, "%.5s" ASIDE_PREFIX "%s", rel, rel + 5);
}

/* Puts a file moved aside back under its name. If the name was taken
 * meanwhile, the file there is newer and stays: ours goes (for an object,
 * the same bytes; for a record, an older one). True when a file is under
 * rel afterwards. */
static bool put_back(int fd, const char *aside, const char *rel)
{
    if (renameat2(fd, aside, fd, rel, RENAME_NOREPLACE) == 0)
        return true;
    if ((errno == EINVAL || errno == ENOSYS) && linkat(fd, aside, fd, rel, 0) != 0 &&
        errno != EEXIST)
        return false; /* it stays aside: the next trim puts it back */
    unlinkat(fd, aside, 0);
    return true;
}

/* Moves rel to its aside name (written to aside). */
static bool move_aside(int fd, const char *rel, char *aside, size_t size)
{
    aside_name(rel, aside, size);
    return renameat2(fd, rel, fd, aside, RENAME_NOREPLACE) == 0 ||
           (errno == EINVAL && renameat(fd, rel, fd, aside) == 0);
}

/* Looking again before an unlink is not enough, as a get or put could come
 * between the look and the unlink; so the file is first moved to a private
 * name, where no get or put can reach it, then looked at, then either
 * unlinked or moved back. A get in between sees a miss, never a path that
 * then vanishes. */
bool aside_remove(int fd, const char *rel, const struct stat *seen, nlink_t max_links,
                  int64_t protect_from)
{
    char aside[16 + ASIDE_NAME_SIZE];
    struct stat now;
    if (!move_aside(fd, rel, aside, sizeof aside))
        return false;
    if (fstatat(fd, aside, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == seen->st_ino &&
        now.st_dev == seen->st_dev && now.st_nlink <= max_links &&
        fs_mtime_ns(&now) < protect_from && unlinkat(fd, aside, 0) == 0)
        return true;
    put_back(fd, aside, rel);
    return false;
}

bool aside_remove_ref(int fd, const char *ref, const char *rec, const struct stat *object)
{
    char aside[16 + ASIDE_NAME_SIZE];
    struct stat now;
    if (!move_aside(fd, ref, aside, sizeof aside))
        return false;
    bool same = fstatat(fd, aside, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
                now.st_ino == object->st_ino && now.st_dev == object->st_dev;
    if (same && faccessat(fd, rec, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT &&
        unlinkat(fd, aside, 0) == 0)
        return true;
    put_back(fd, aside, ref);
    return false;
}

bool aside_is(const char *name)
{
    return strncmp(name, ASIDE_PREFIX, sizeof ASIDE_PREFIX - 1) == 0;
}

/* Adds name to back; a name it cannot hold (out of memory) is judged by a
 * later trim instead. */
static void remember(aside_restored *back, const char *name)
{
    if (back->n == back->cap) {
        size_t ncap = back->cap ? 2 * back->cap : 8;
        void *grown = realloc(back->names, ncap * sizeof *back->names);
        if (!grown)
            return;
        back->names = grown;
        back->cap = ncap;
    }
    snprintf(back->names[back->n++], sizeof *back->names, "%s", name);
}

void aside_restore(int fd, const char *dir, const char *name, aside_restored *back)
{
    char aside[16 + ASIDE_NAME_SIZE], rel[8 + ASIDE_NAME_SIZE];
    const char *own = name + sizeof ASIDE_PREFIX - 1;
    size_t len = strlen(own);
    if ((len != ASIDE_HEXLEN && (len != ASIDE_NAME_SIZE - 1 ||
                                 strcmp(own + ASIDE_HEXLEN, DISK_REF_SUFFIX) != 0)) ||
        !disk_is_hex(own, ASIDE_HEXLEN) || memcmp(dir + 2, own, 2) != 0)
        return;
    snprintf(aside, sizeof aside, "%.4s/%s", dir, name);
    snprintf(rel, sizeof rel, "%.4s/%s", dir, own);
    if (put_back(fd, aside, rel))
        remember(back, own);
}

bool aside_was_restored(const aside_restored *back, const char *name)
{
    for (size_t i = 0; i < back->n; i++)
        if (strcmp(back->names[i], name) == 0)
            return true;
    return false;
}

void aside_restored_free(aside_restored *back)
{
    free(back->names);
    back->names = NULL;
    back->n = back->cap = 0;
}
