/*
 * ccache_endpoint.c - the ccache storage helper's listening socket
 * (ccache_endpoint.h). Helpers started at once for one endpoint take turns
 * through a lock on its directory, so one never removes the socket another
 * has just bound.
 *
 * Must never replace anything at the endpoint but a stale socket (nothing
 * listening on it), never leave the process's umask changed, and never
 * unlink a socket another helper has bound since.
 */
#include "ccache_endpoint.h"
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Whether something listens on the socket at path. */
static bool socket_alive(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: leave it alone */
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    close(fd);
    return r == 0 || (err != ECONNREFUSED && err != ENOENT);
}

/* Removes a stale socket at path; refuses anything else. */
static int clear_endpoint(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : (cli_err("ccache-helper: %s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(sb.st_mode)) {
        cli_err("ccache-helper: %s exists and is not a socket; refusing to replace it", path);
        return -1;
    }
    if (socket_alive(path)) {
        cli_err("ccache-helper: another helper already listens on %s", path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        cli_err("ccache-helper: cannot remove the stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Takes an exclusive flock on the directory holding path (no file of our
 * own beside ccache's: ccache itself keeps "<endpoint>.lock" there). */
static int lock_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        cli_err("ccache-helper: cannot lock %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Binds and listens on path with umask 077. Helpers started at once for
 * the same endpoint take turns (a lock on its directory), so one never
 * removes the socket another has just bound. */
int ccache_endpoint_listen(const char *path, struct stat *bound)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path) {
        cli_err("ccache-helper: socket path too long: %s", path);
        return -1;
    }
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    mode_t old = umask(077);
    int fd = -1, lock = lock_dir_of(path);
    if (lock < 0 || clear_endpoint(path) != 0)
        goto out;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0 ||
        lstat(path, bound) != 0) {
        cli_err("ccache-helper: cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
out:
    if (lock >= 0)
        close(lock);
    umask(old);
    return fd;
}

/* Removes the socket if it is still the one this process bound. */
void ccache_endpoint_unlink(const char *path, const struct stat *bound)
{
    struct stat sb;
    if (lstat(path, &sb) == 0 && sb.st_ino == bound->st_ino && sb.st_dev == bound->st_dev)
        unlink(path);
}
