/*
 * ccache_probe.h - the ccache storage helper's watch on a failing remote:
 * after one request to the remote has failed, clients' requests stop
 * waiting on it, and a background thread asks the remote instead, until it
 * answers again (clients use it again) or the library switches it off.
 *
 * Why: the library switches a remote off after `failures` consecutive
 * failures, each costing a client the whole timeout when the server hangs.
 * ccache's compiles are often serial at the start of a build (configure
 * steps, generated headers), so three failures on clients' time cost three
 * timeouts of wall time; here they cost one, and the rest are paid by the
 * probe thread while the build runs.
 *
 * Must never: make a client wait on the network while the remote is
 * failing; probe a remote already switched off; hold its lock across a
 * network call; probe faster than one request per CCP_PROBE_GAP_MS (a
 * server that refuses at once is not hammered).
 */
#ifndef ACACHE_CCACHE_PROBE_H
#define ACACHE_CCACHE_PROBE_H

#include "acache.h"

#include <stdbool.h>
#include <stdint.h>

/* The least time between the starts of two probes. */
#define CCP_PROBE_GAP_MS 200

typedef struct ccp ccp;

typedef struct ccp_stats {
    uint64_t probes;        /* requests the probe thread made */
    uint64_t skipped;       /* client requests answered without the remote */
    uint64_t recovered;     /* times a probe found the remote answering again */
} ccp_stats;

/* Starts watching remote (not owned): one thread, idle until a failure.
 * NULL when out of memory or the thread cannot start. */
ccp *ccp_start(acache_store *remote);

/* A request to the remote failed (not a miss): from now on clients are
 * answered without it, and the probe thread takes over. */
void ccp_failed(ccp *p);

/* Whether the remote failed, no probe has had an answer since, and it is
 * not switched off (then the library answers at once itself): the caller
 * answers without the remote (counted as skipped). */
bool ccp_failing(ccp *p);

void ccp_get_stats(ccp *p, ccp_stats *out);

/* Stops the thread (a probe running finishes: the remote's timeouts bound
 * it) and frees everything. NULL is allowed. */
void ccp_stop(ccp *p);

#endif
