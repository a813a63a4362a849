/*
 * trim_state.c - ROOT/v1/trim.state: the last trim (when, how long, what it
 * removed) and where the next one goes on (the cursors of the size pass and
 * the sweep). Read by the trim and by acache_disk_stats, written by the
 * trim as it goes and by disk_open for a new store. Best effort both ways:
 * a missing or damaged file reads as zeros, and it is only ever replaced
 * whole (os/tempfile.c), never rewritten in place.
 */
#include "disk/trim_state.h"
#include "os/clock.h"
#include "os/tempfile.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAGIC "acache-trim-v1"


void trim_state_read(disk *d, trim_state *s)
{
    char buf[1024];
    memset(s, 0, sizeof *s);
    int fd = openat(d->rootfd, "trim.state", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    if (strncmp(buf, STATE_MAGIC "\n", sizeof STATE_MAGIC) != 0)
        return;
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        { "started", offsetof(trim_state, started_ns) },
        { "finished", offsetof(trim_state, finished_ns) },
        { "duration", offsetof(trim_state, duration_ns) },
        { "entries-removed", offsetof(trim_state, entries_removed) },
        { "bytes-removed", offsetof(trim_state, bytes_removed) },
        { "files-examined", offsetof(trim_state, files_examined) },
        { "dirs-listed", offsetof(trim_state, dirs_listed) },
        { "size-cursor", offsetof(trim_state, size_cursor) },
        { "sweep-cursor", offsetof(trim_state, sweep_cursor) },
    };
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        long long v = strtoll(sp + 1, NULL, 10);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(line, keys[i].key) == 0)
                memcpy((char *)s + keys[i].off, &(int64_t){ v }, sizeof(int64_t));
    }
    s->size_cursor = ((s->size_cursor % DISK_SHARDS) + DISK_SHARDS) % DISK_SHARDS;
    s->sweep_cursor = ((s->sweep_cursor % DISK_SHARDS) + DISK_SHARDS) % DISK_SHARDS;
}

void trim_state_write(disk *d, const trim_state *s)
{
    char tmp[ACACHE_PATH_MAX + 8], buf[1024];
    int n = snprintf(buf, sizeof buf,
                     STATE_MAGIC "\nstarted %" PRId64 "\nfinished %" PRId64 "\nduration %" PRId64
                                 "\nentries-removed %" PRIu64 "\nbytes-removed %" PRIu64
                                 "\nfiles-examined %" PRIu64 "\ndirs-listed %" PRIu64
                                 "\nsize-cursor %" PRId64 "\nsweep-cursor %" PRId64 "\n",
                     s->started_ns, s->finished_ns, s->duration_ns, s->entries_removed,
                     s->bytes_removed, s->files_examined, s->dirs_listed, s->size_cursor,
                     s->sweep_cursor);
    snprintf(tmp, sizeof tmp, "%s/tmp", d->root);
    tempfile_replace(tmp, "state-", d->rootfd, "trim.state", buf, (size_t)n,
                     TEMPFILE_MODE(d->perms.file));
}

void trim_last(disk *d, acache_disk_counters *out)
{
    trim_state st;
    trim_state_read(d, &st);
    out->last_trim_ns = st.started_ns;
    out->last_trim_duration_ns = st.duration_ns;
    out->last_trim_finished = st.finished_ns != 0;
    out->last_trim_entries_removed = st.entries_removed;
    out->last_trim_bytes_removed = st.bytes_removed;
    out->last_trim_files_examined = st.files_examined;
    out->last_trim_dirs_listed = st.dirs_listed;
}

void trim_mark_fresh(disk *d)
{
    trim_state st;
    memset(&st, 0, sizeof st);
    st.started_ns = st.finished_ns = fs_now_ns();
    trim_state_write(d, &st);
}
