/*
 * fsutil.c - file-system helpers: mkdir -p, full writes, rename into place.
 * Knows nothing of the cache layout; never removes anything.
 */
#include "os/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        int err = fs_mkdirat(AT_FDCWD, buf, mode);
        if (err && err != EEXIST)
            return err;
        *p = saved;
        if (saved == '\0')
            break;
    }
    return 0;
}

int fs_perms_from_umask(const char *text, fs_perms *out)
{
    size_t n = strlen(text);
    if (n == 0 || n > 4 || strspn(text, "01234567") != n)
        return EINVAL;
    unsigned long mask = strtoul(text, NULL, 8);
    if (mask > 0777)
        return EINVAL;
    out->dir = (0777 & ~(mode_t)mask) | S_ISGID;
    out->file = 0666 & ~(mode_t)mask;
    return 0;
}

int fs_mkdirat(int dirfd, const char *name, mode_t mode)
{
    if (mkdirat(dirfd, name, mode & 0777) != 0)
        return errno;
    /* mkdir applies the process umask and may drop setgid: set exactly. */
    if ((mode & 07777) != 0700)
        fchmodat(dirfd, name, mode, 0);
    return 0;
}

void fs_share(int fd, const fs_perms *perms)
{
    if (perms->file != 0600)
        fchmod(fd, perms->file);
}

int fs_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return ENOSPC;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fs_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    if (len == 0 || len >= sizeof dir)
        return EINVAL;
    memcpy(dir, path, len);
    dir[len] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return err;
}
