/*
 * trim_state.h - the trim's record in ROOT/v1/trim.state (trim_state.c).
 */
#ifndef ACACHE_TRIM_STATE_H
#define ACACHE_TRIM_STATE_H

#include "disk/disk.h"

/* What trim.state holds: the last trim, and where the next one goes on. */
typedef struct trim_state {
    int64_t started_ns, finished_ns, duration_ns;
    uint64_t entries_removed, bytes_removed, files_examined, dirs_listed;
    /* The last action shard the size pass finished; the next shard the
     * sweep takes. */
    int64_t size_cursor, sweep_cursor;
} trim_state;

/* Reads trim.state; zeros where it is missing or damaged. */
void trim_state_read(disk *d, trim_state *s);
/* Replaces trim.state (temp file, then rename). Best effort. */
void trim_state_write(disk *d, const trim_state *s);

#endif
