/*
 * tempfile.h - the one way acache writes a file: a unique temp file in a
 * directory of the same file system, written, then renamed into place
 * (or, for a spool nobody will ever name, unlinked at once).
 *
 * States of a tempfile (and the only moves between them):
 *
 *   (none) --tempfile_create--> open --tempfile_close--> closed
 *   open|closed --tempfile_rename--> placed (the temp name is gone)
 *   open|closed|placed --tempfile_discard--> (none)
 *
 * tempfile_replace does the whole walk for a small file held in memory.
 * Rules: nothing is ever rewritten in place (readers may have the old file
 * mapped); a temp file never outlives a failure of the caller that made it
 * (discard removes it, and is harmless after a rename); nothing here
 * prints, and every failure comes back as an errno value.
 */
#ifndef ACACHE_TEMPFILE_H
#define ACACHE_TEMPFILE_H

#include <stdbool.h>
#include <stddef.h>

#define TEMPFILE_PATH_MAX 4096

typedef struct tempfile {
    int fd;                        /* open descriptor, or -1 once closed */
    bool named;                    /* path still names our temp file */
    char path[TEMPFILE_PATH_MAX];  /* dir/prefixXXXXXX, absolute when dir is */
} tempfile;

/* tempfile_rename flags. */
#define TEMPFILE_MKDIR 1u /* create the target's missing parent (with the mode of its own parent) and retry */
#define TEMPFILE_SYNC 2u  /* fsync the target's directory after the rename */
/* Give the file mode m just before the rename (without it, it stays 0600):
 * a temp file is private until its bytes are whole. */
#define TEMPFILE_MODE(m) ((((unsigned)(m)) & 0777u) << 8)

/* Creates dir/<prefix>XXXXXX (0600, close-on-exec). 0 or an errno value
 * (ENAMETOOLONG when the name does not fit). */
int tempfile_create(tempfile *t, const char *dir, const char *prefix);
/* Closes the descriptor, after an fsync with sync. 0 or the first errno. */
int tempfile_close(tempfile *t, bool sync);
/* Renames it to name, relative to dirfd (AT_FDCWD for a path), replacing
 * what is there. Closes it first if open (without fsync). 0 or errno; on
 * failure the temp file stays for the caller to discard. */
int tempfile_rename(tempfile *t, int dirfd, const char *name, unsigned flags);
/* Closes it if open and removes it unless it was renamed. */
void tempfile_discard(tempfile *t);

/* A writer that may keep its temp file open for long (a put begun before
 * a build of hours) holds an exclusive flock on it (tempfile_lock, until
 * it closes it); a cleaner removes a leftover temp file only when it can
 * take that lock (tempfile_remove_unlocked), so a live writer is never
 * robbed whatever the file's age, and the file of one that died goes.
 * Both: 0 or an errno value (EWOULDBLOCK: a writer holds it). */
int tempfile_lock(tempfile *t);
int tempfile_remove_unlocked(int dirfd, const char *name);

/* Writes buf to a new temp file in dir and renames it to name (relative
 * to dirfd); with TEMPFILE_SYNC in flags, fsyncs the file before the
 * rename as well. The temp file is gone whatever happens. 0 or errno. */
int tempfile_replace(const char *dir, const char *prefix, int dirfd, const char *name,
                     const void *buf, size_t len, unsigned flags);

/* A spool file nobody will name: unnamed (O_TMPFILE) where the file
 * system allows, else created in dir and unlinked at once. Its bytes go
 * with its descriptor. The descriptor, or -1 with errno. */
int tempfile_anonymous(const char *dir, const char *prefix);

#endif
