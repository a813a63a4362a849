/*
 * clock.h - the monotonic clock, for deadlines and intervals inside one
 * process. It must never be compared with a time stored in a file (use
 * fs_now_ns, the wall clock, for those).
 */
#ifndef ACACHE_CLOCK_H
#define ACACHE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns. */
int64_t os_mono_ns(void);

#endif
