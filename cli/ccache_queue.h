/*
 * ccache_queue.h - the ccache storage helper's upload queue: values ccache
 * has put, held in memory until a few worker threads have stored them in
 * the remote (acache_put on the remote store, which checks and signs).
 *
 * Bounded memory, by design (not a spool on disk): ccache has already
 * written every value to its own local cache before it puts it, so a
 * second copy on disk would only cost writes; a value the helper cannot
 * keep is a remote miss later, never a wrong answer. The bound is in
 * entries and in bytes; a put that does not fit is dropped and counted,
 * never waited for.
 *
 * While queued or being uploaded, a value is also served to gets of the
 * same key (it came from a client, which the protocol trusts), so a key
 * put by one ccache process is found by the next even before the remote
 * has it.
 *
 * Must never block a put on the network, never hold more than its bounds,
 * and never lose track of an entry: every one is uploaded, dropped at a
 * flush deadline, or cancelled, and counted as such.
 */
#ifndef ACACHE_CCACHE_QUEUE_H
#define ACACHE_CCACHE_QUEUE_H

#include "acache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ccq ccq;

typedef struct ccq_stats {
    uint64_t queued;        /* puts taken */
    uint64_t uploaded;      /* stored in the remote */
    uint64_t failed;        /* the remote refused or failed (or is off) */
    uint64_t dropped;       /* not taken (full), or left at a flush deadline */
    uint64_t served;        /* gets answered from the queue */
    uint64_t pending;       /* entries queued or uploading now */
    uint64_t pending_bytes; /* their bytes */
} ccq_stats;

/* Starts a queue uploading to remote (not owned) with `workers` threads.
 * NULL when out of memory or no thread could start. */
ccq *ccq_create(acache_store *remote, size_t max_entries, uint64_t max_bytes, unsigned workers);

/* Queues len bytes at data (taking ownership of data, a malloc'd buffer,
 * whatever the outcome) as the value of action. True if queued; false if
 * it did not fit or the queue is stopping (counted as dropped). */
bool ccq_push(ccq *q, const acache_id *action, void *data, size_t len);

/* If action is queued or uploading, returns a malloc'd copy of its newest
 * value in *data (NULL for an empty one) and its length; else false. */
bool ccq_lookup(ccq *q, const acache_id *action, void **data, size_t *len);

/* Removes the entries of action that wait, and waits for one being
 * uploaded to finish (then the caller deletes it from the remote: a remove
 * is never undone by an upload still on its way). True if there was one. */
bool ccq_cancel(ccq *q, const acache_id *action);

/* Waits until the queue is empty, for at most timeout_ns; what is still
 * waiting then is dropped and counted. Uploads running go on. */
void ccq_flush(ccq *q, int64_t timeout_ns);

void ccq_get_stats(ccq *q, ccq_stats *out);

/* Stops the workers (an upload running finishes: the remote's timeouts
 * bound it), drops what is left and frees the queue. NULL is allowed. */
void ccq_destroy(ccq *q);

#endif
