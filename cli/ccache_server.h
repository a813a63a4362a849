/*
 * ccache_server.h - the ccache storage helper's shared state: what the
 * accepting loop (ccache_helper.c), each connection's thread
 * (ccache_conn.c) and the info answer (ccache_info.c) all see, with the
 * helper's limits.
 *
 * Rules: clients is guarded by mu; the counters are atomics; everything
 * else is set before the first connection is accepted and only read after.
 */
#ifndef ACACHE_CCACHE_SERVER_H
#define ACACHE_CCACHE_SERVER_H

#include "ccache_config.h"
#include "clock.h"
#include "ccache_probe.h"
#include "ccache_queue.h"

#include "acache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The namespace of ccache's keys: never an id another producer (the go
 * command, a runtime) uses on a shared remote. */
#define HELPER_NAMESPACE "acache ccache-storage-helper v1"
#define HELPER_MAX_CLIENTS 1024
/* A request started must be complete within this; between requests a
 * client may wait as long as it likes (ccache compiles meanwhile). */
#define HELPER_REQUEST_TIMEOUT_MS 30000
/* Upload queue: bytes held (the entry bound is the remote's upload-queue). */
#define HELPER_QUEUE_BYTES ((uint64_t)256 << 20)
#define HELPER_UPLOADERS 4
#define HELPER_READ_BUF ((size_t)64 << 10)
/* The answer to a get or remove while the remote is failing (its last
 * request failed and no probe has had an answer since). */
#define HELPER_FAILING_MSG "remote failed its last request: not asked until a background probe " \
                           "gets an answer"

typedef struct helper {
    helper_config cfg;
    acache_store *remote;
    ccq *queue;
    ccp *probe;             /* a failing remote asked in the background */
    int listen_fd;
    struct stat bound;
    int wake[2];            /* a byte: a client left, stop, or a signal */
    pthread_mutex_t mu;
    size_t clients;
    atomic_bool stop;
    int64_t started_ns;
    atomic_uint_least64_t gets, hits, misses, puts, removes, errors, bad;
} helper;

/* Wakes the accepting loop: 'L' a client left, 'S' stop, 'T' a signal. */
static inline void wake_main(helper *h, char why)
{
    ssize_t r = write(h->wake[1], &why, 1);
    (void)r; /* a full pipe already says "look" */
}

/* Serves the connection fd until it ends or stops the helper; the caller
 * closes fd (ccache_conn.c). */
void ccache_conn_serve(helper *h, int fd);

/* The answer to an info request: identity and diagnostics, redacted, in
 * a malloc'd buffer; its length in *len. NULL when out of memory
 * (ccache_info.c). */
uint8_t *ccache_info_answer(helper *h, size_t *len);

#endif
