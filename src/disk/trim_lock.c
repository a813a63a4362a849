/*
 * trim_lock.c - the trim lock, ROOT/v1/trim.lock: trims, clear and repairs
 * take it so that they never run at once, in this process or any other
 * (flock(2) belongs to the open file: the kernel drops it when its holder
 * dies, however it dies). One that waits first asks an automatic trim
 * holding it to stop, by touching ROOT/v1/trim.stop. It never waits
 * without being asked to, and never removes the lock file (a waiter may
 * hold it open).
 */
#include "disk/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int disk_trim_lock(disk *d, bool wait)
{
    int fd = openat(d->rootfd, "trim.lock", O_RDWR | O_CREAT | O_CLOEXEC, d->perms.file);
    if (fd < 0)
        return -1;
    fs_share(fd, &d->perms);
    bool asked = false;
    while (flock(fd, LOCK_EX | (wait && asked ? 0 : LOCK_NB)) != 0) {
        if (errno == EWOULDBLOCK && wait && !asked) {
            /* An automatic trim, slow on a busy machine, stops for us. */
            int stop = openat(d->rootfd, "trim.stop", O_WRONLY | O_CREAT | O_CLOEXEC, d->perms.file);
            if (stop >= 0) {
                fs_share(stop, &d->perms);
                futimens(stop, NULL);
                close(stop);
            }
            asked = true;
            continue;
        }
        if (errno != EINTR) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
    }
    return fd;
}
