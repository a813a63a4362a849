/*
 * ccache_endpoint.h - the ccache storage helper's Unix socket: made with
 * umask 077 at the path ccache names, replacing only a stale socket, and
 * removed on the way out only if it is still the one this process bound.
 */
#ifndef ACACHE_CCACHE_ENDPOINT_H
#define ACACHE_CCACHE_ENDPOINT_H

#include <sys/stat.h>

/* Binds and listens on path with umask 077; *bound gets what was made
 * there. The listening fd, or -1 (a message printed): anything at path but
 * a stale socket (a live socket, a file) is refused, never replaced. */
int ccache_endpoint_listen(const char *path, struct stat *bound);

/* Removes the socket at path if it is still the one this process bound. */
void ccache_endpoint_unlink(const char *path, const struct stat *bound);

#endif
