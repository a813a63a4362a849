/*
 * clock.h - the two clocks: the monotonic clock (os_mono_ns), for
 * deadlines and intervals inside one process, and the wall clock
 * (fs_now_ns), for times stored in files and records or compared with a
 * file's mtime. A monotonic time must never be compared with a stored
 * time, nor a wall time used for a deadline (it jumps).
 */
#ifndef ACACHE_CLOCK_H
#define ACACHE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns. */
int64_t os_mono_ns(void);
/* CLOCK_REALTIME in ns since the Unix epoch (the name says it is the
 * time files carry). */
int64_t fs_now_ns(void);

#endif
