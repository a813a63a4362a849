/*
 * fsutil.h - small file-system helpers shared by the local backends: the OS
 * layer, kept apart from cache logic. Errors are returned as errno values.
 */
#ifndef ACACHE_FSUTIL_H
#define ACACHE_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Creates path and any missing parents with mode; 0 or an errno value. */
int fs_mkdir_p(const char *path, mode_t mode);
/* Writes all len bytes, retrying short writes and EINTR; 0 or errno. */
int fs_write_all(int fd, const void *buf, size_t len);
/* fsyncs the directory holding path. */
int fs_fsync_parent(const char *path);

#endif
