/*
 * gcp_report.h - what `acache gocacheprog` tells on stderr about its
 * session: the remotes at start and their counters at exit (-v), the
 * session's summary (-v), and the library's log lines (always).
 */
#ifndef ACACHE_GCP_REPORT_H
#define ACACHE_GCP_REPORT_H

#include "acache.h"

#include <stdbool.h>
#include <stdint.h>

/* One line per remote: where it is (final false), or its state and
 * counters and the session prefetch's (final true). */
void gcp_print_remotes(acache_store *store, bool final);

/* Remote state changes (switched off, uploads refused) reach stderr at
 * once, with or without -v: the library's log function. */
void gcp_log_line(void *ctx, const char *message);

/* The session's counters, its wall time and the process's CPU time. */
void gcp_print_summary(uint64_t gets, uint64_t hits, uint64_t misses, uint64_t puts,
                   uint64_t bytes_in, uint64_t bytes_out, uint64_t errors, uint64_t busy_ns,
                   int64_t wall_ns);

#endif
