/*
 * remote_store.h - the remote store's state, private to the files that
 * make it up (remote.h is what the transports and the tiers see):
 *   remote.c    the store: create, close, the ops tables, puts, deletes, info
 *   health.c    counting failures and switching a remote off
 *   fetch.c     gets: the record, then the object, checked against its id
 *   fetch_many.c   gets of several actions at once, from fetch.c's parts
 *   uploader.c  the background upload queue, its threads and its flush
 * The calls go one way only: remote.c calls the others, fetch_many.c
 * calls fetch.c, fetch.c and uploader.c call health.c, and health.c calls
 * none of them.
 *
 * Rules: every field below `mu` is read or written only under it; the
 * counters are atomics bumped with BUMP and never reset; nothing outside
 * these files includes this header.
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

/* fetch.c: the parts of a get, for fetch_many.c. */
typedef struct record_buf {
    unsigned char buf[REMOTE_RECORD_MAX];
    size_t len;
} record_buf;
/* A sink filling b; more than it holds is ACACHE_CORRUPT. */
remote_sink record_sink(record_buf *b);
/* Checks what fetching the record of action gave (st: the transport's
 * status, its health already counted): ACACHE_OK with rec filled, or the
 * miss, refusal or error get_into returns (counted). */
acache_status record_take(remote *r, const acache_id *action, acache_status st,
                          const unsigned char *buf, size_t len, remote_record *rec);
/* Whether rec settles its object without a fetch: the object is empty,
 * or rec carries it and those bytes hash to its id (contents that do not
 * are counted as refused; the object is then fetched as usual). */
bool record_inline(remote *r, const remote_record *rec);
/* Hands the bytes of a record for which record_inline() held to sink:
 * what the sink returns. */
acache_status record_inline_give(const remote_record *rec, const remote_sink *sink);
/* meta's output_id, size and time_ns from rec. */
void record_meta(const remote_record *rec, acache_result *meta);

/* An object being fetched: the transport writes into `in`, which decodes
 * into the caller's sink; a failure of that sink is remembered apart. It
 * must not move between begin and end. */
typedef struct object_get {
    remote *r;
    remote_record rec;
    char hex[ACACHE_ID_HEX_SIZE];
    const remote_sink *down;
    acache_status sink_st;
    remote_sink guard;
    object_decoder d;
    remote_sink in;
} object_get;
void object_get_begin(object_get *o, remote *r, const remote_record *rec, const remote_sink *sink);
/* After the transport's status st for it: what get_into returns (a bad
 * object removed and counted). count: st still has to be counted for the
 * remote's health (never when the caller's sink failed). */
acache_status object_get_end(object_get *o, acache_status st, bool count);

/* fetch_many.c: remote_ops.get_many. */
void remote_get_many(void *self, const remote_batch *b);

/* uploader.c: sending entries, now (remote_upload_entry, with cctx NULL
 * or a ZSTD_CCtx) or queued for the uploader threads. */
acache_status remote_upload_entry(remote *r, const acache_id *action, const acache_id *output,
                                  const void *bytes, uint64_t size, int64_t time_ns, void *cctx);
acache_status remote_put_file(void *self, const acache_id *action, const acache_id *output,
                              uint64_t size, int64_t time_ns, const char *path);
void remote_flush(void *self, int64_t start_ns);

#endif
