/*
 * tempfile.c - temp files written once, then renamed into place
 * (tempfile.h has the states), and the lock that tells a live writer's
 * temp file from a dead one's. It must never write to a name other than
 * its own temp file, never leave a temp file behind after a discard,
 * never remove a temp file whose writer holds its lock, and never print.
 */
#include "os/tempfile.h"
#include "os/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int tempfile_create(tempfile *t, const char *dir, const char *prefix)
{
    t->fd = -1;
    t->named = false;
    int n = snprintf(t->path, sizeof t->path, "%s/%sXXXXXX", dir, prefix);
    if (n < 0 || (size_t)n >= sizeof t->path)
        return ENAMETOOLONG;
    t->fd = mkostemp(t->path, O_CLOEXEC);
    if (t->fd < 0)
        return errno;
    t->named = true;
    return 0;
}

int tempfile_close(tempfile *t, bool sync)
{
    int err = 0;
    if (t->fd < 0)
        return 0;
    if (sync && fsync(t->fd) != 0)
        err = errno;
    if (close(t->fd) != 0 && !err)
        err = errno;
    t->fd = -1;
    return err;
}

/* Creates the parent directory of name (relative to dirfd); 0 when it is
 * there now, made by us or by someone else. */
static int make_parent(int dirfd, const char *name)
{
    char dir[TEMPFILE_PATH_MAX];
    const char *slash = strrchr(name, '/');
    size_t len = slash ? (size_t)(slash - name) : 0;
    if (len == 0 || len >= sizeof dir)
        return EINVAL;
    memcpy(dir, name, len);
    dir[len] = '\0';
    if (mkdirat(dirfd, dir, 0700) != 0)
        return errno == EEXIST ? 0 : errno;
    /* The mode (and setgid) of the directory it is made in: a store shared
     * by a group stays shared. */
    struct stat up;
    char *slash2 = strrchr(dir, '/');
    if (slash2)
        *slash2 = '\0';
    if (fstatat(dirfd, slash2 ? dir : ".", &up, 0) == 0 && (up.st_mode & 07777) != 0700) {
        if (slash2)
            *slash2 = '/';
        fchmodat(dirfd, dir, up.st_mode & 07777, 0);
    }
    return 0;
}

/* fsyncs the directory holding name (relative to dirfd). */
static int sync_parent(int dirfd, const char *name)
{
    char dir[TEMPFILE_PATH_MAX];
    const char *slash = strrchr(name, '/');
    size_t len = slash ? (size_t)(slash - name) : 0;
    if (len >= sizeof dir)
        return EINVAL;
    if (len == 0) {
        dir[0] = '.';
        len = 1;
    } else {
        memcpy(dir, name, len);
    }
    dir[len] = '\0';
    int fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return err;
}

int tempfile_rename(tempfile *t, int dirfd, const char *name, unsigned flags)
{
    int err = tempfile_close(t, false);
    if (err)
        return err;
    if ((flags >> 8) & 0777u)
        chmod(t->path, (mode_t)((flags >> 8) & 0777u));
    if (renameat(AT_FDCWD, t->path, dirfd, name) != 0) {
        if (errno != ENOENT || !(flags & TEMPFILE_MKDIR))
            return errno;
        if ((err = make_parent(dirfd, name)) != 0)
            return err;
        if (renameat(AT_FDCWD, t->path, dirfd, name) != 0)
            return errno;
    }
    t->named = false;
    return flags & TEMPFILE_SYNC ? sync_parent(dirfd, name) : 0;
}

void tempfile_discard(tempfile *t)
{
    tempfile_close(t, false);
    if (t->named)
        unlink(t->path);
    t->named = false;
}

int tempfile_lock(tempfile *t)
{
    while (flock(t->fd, LOCK_EX | LOCK_NB) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

int tempfile_remove_unlocked(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno;
    tempfile t = { .fd = fd };
    int err = tempfile_lock(&t);
    struct stat mine, now;
    if (!err && (fstat(fd, &mine) != 0 || fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0))
        err = errno;
    else if (!err && (mine.st_ino != now.st_ino || mine.st_dev != now.st_dev))
        err = ESTALE; /* replaced since it was opened: looked at next time */
    if (!err && unlinkat(dirfd, name, 0) != 0)
        err = errno;
    close(fd);
    return err;
}

int tempfile_replace(const char *dir, const char *prefix, int dirfd, const char *name,
                     const void *buf, size_t len, unsigned flags)
{
    tempfile t;
    int err = tempfile_create(&t, dir, prefix);
    if (err)
        return err;
    err = fs_write_all(t.fd, buf, len);
    if (!err)
        err = tempfile_close(&t, flags & TEMPFILE_SYNC);
    if (!err)
        err = tempfile_rename(&t, dirfd, name, flags);
    tempfile_discard(&t);
    return err;
}

int tempfile_anonymous(const char *dir, const char *prefix)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    tempfile t;
    int err = tempfile_create(&t, dir, prefix);
    if (err) {
        errno = err;
        return -1;
    }
    unlink(t.path);
    return t.fd;
}
