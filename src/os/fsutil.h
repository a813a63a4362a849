/*
 * fsutil.h - small file-system helpers shared by the local backends: the OS
 * layer, kept apart from cache logic. Errors are returned as errno values.
 */
#ifndef ACACHE_FSUTIL_H
#define ACACHE_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Creates path and any missing parents with exactly mode; 0 or an errno
 * value. */
int fs_mkdir_p(const char *path, mode_t mode);
/* Permissions of what a store creates: private (0700 directories, 0600
 * files) unless a umask shares them with a group (fs_perms_from_umask). */
typedef struct fs_perms {
    mode_t dir;  /* with S_ISGID when shared: new entries keep the group */
    mode_t file;
} fs_perms;
#define FS_PERMS_PRIVATE ((fs_perms){ 0700, 0600 })
/* The permissions a umask ("002", "027": octal, at most 0777) gives; 0,
 * or EINVAL for a malformed one. */
int fs_perms_from_umask(const char *text, fs_perms *out);
/* mkdirat with exactly mode (the process umask aside, setgid kept); 0,
 * or an errno value (EEXIST when it is there already). */
int fs_mkdirat(int dirfd, const char *name, mode_t mode);
/* Gives an open file the store's file mode (temp files are made 0600 and
 * stay so until their bytes are whole: call it just before they are
 * named). */
void fs_share(int fd, const fs_perms *perms);
/* Writes all len bytes, retrying short writes and EINTR; 0 or errno. */
int fs_write_all(int fd, const void *buf, size_t len);
/* fsyncs the directory holding path. */
int fs_fsync_parent(const char *path);
/* A file's mtime in nanoseconds since the epoch. */
static inline int64_t fs_mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

#endif
