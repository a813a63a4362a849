/*
 * clock.h - the command's monotonic clock, for the servers' request
 * timings and waits (gocacheprog, the ccache helper, the progress of
 * disk commands).
 *
 * Rules: monotonic only (never the wall clock: a clock step must not make
 * a request look long or a wait end early); header-only, no state.
 */
#ifndef ACACHE_CLI_CLOCK_H
#define ACACHE_CLI_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
