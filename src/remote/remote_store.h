/*
 * remote_store.h - the remote store's state, private to the files that
 * make it up (remote.h is what the transports and the tiers see):
 *   remote.c    the store: create, close, the ops tables, puts, deletes, info
 *   health.c    counting failures and switching a remote off
 *   fetch.c     gets: the record, then the object, checked against its id
 *   uploader.c  the background upload queue, its threads and its flush
 * The calls go one way only: remote.c calls the other three, fetch.c and
 * uploader.c call health.c, and health.c calls none of them.
 *
 * Rules: every field below `mu` is read or written only under it; the
 * counters are atomics bumped with BUMP and never reset; nothing outside
 * these four files includes this header.
 */
#ifndef ACACHE_REMOTE_STORE_H
#define ACACHE_REMOTE_STORE_H

#include "remote/remote.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Threads uploading to one remote: enough to hide a few round trips. */
#define REMOTE_UPLOADERS 2

/* One queued upload: the committed local file to send. */
typedef struct upload {
    struct upload *next;
    acache_id action, output;
    uint64_t size;
    int64_t time_ns;
    char path[];
} upload;

typedef struct remote {
    remote_config cfg;
    const transport_ops *tops;
    void *t;
    char name[ACACHE_REMOTE_NAME_SIZE];

    atomic_uint fails;          /* consecutive failures */
    atomic_uint refusals;       /* consecutive refused writes */
    atomic_bool off, uploads_off;
    atomic_bool cancel;         /* a flush ran out of time: stop what runs */

    pthread_mutex_t mu;         /* guards everything below */
    pthread_cond_t work_cv;     /* an upload was queued, or stopping */
    pthread_cond_t idle_cv;     /* nothing queued or running */
    upload *head, *tail;
    size_t queued, busy;
    bool stopping;
    pthread_t threads[REMOTE_UPLOADERS];
    size_t nthreads;
    bool threads_tried;
    char reason[ACACHE_REMOTE_NAME_SIZE];

    atomic_uint_least64_t hits, misses, rejected, failures;
    atomic_uint_least64_t uploads, upload_bytes, already, dropped;
} remote;

#define BUMP(r, field) atomic_fetch_add_explicit(&(r)->field, 1, memory_order_relaxed)

/* health.c: accounts one transport result for the remote's health; returns st. */
acache_status remote_health(remote *r, acache_status st);

/* fetch.c: the remote_ops and backend_ops entries for reading. */
acache_status remote_get_into(void *self, const acache_id *action, acache_result *meta,
                              const remote_sink *sink);
void remote_verdict(void *self, const acache_result *meta, bool good);
acache_status remote_get(void *self, const acache_id *action, unsigned flags,
                         acache_result *res);
unsigned remote_prefetch(void *self);

/* uploader.c: sending entries, now (remote_upload_entry, with cctx NULL
 * or a ZSTD_CCtx) or queued for the uploader threads. */
acache_status remote_upload_entry(remote *r, const acache_id *action, const acache_id *output,
                                  const void *bytes, uint64_t size, int64_t time_ns, void *cctx);
acache_status remote_put_file(void *self, const acache_id *action, const acache_id *output,
                              uint64_t size, int64_t time_ns, const char *path);
void remote_flush(void *self, int64_t start_ns);

#endif
