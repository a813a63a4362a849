/*
 * ccache_queue.c - the ccache storage helper's bounded in-memory upload
 * queue (see ccache_queue.h for why memory and not a spool).
 *
 * One mutex guards a FIFO list of entries. Workers take the oldest waiting
 * entry, mark it busy, upload it without the lock, then unlink and free it.
 * Lookups scan the list newest first (at most max_entries; a scan costs
 * microseconds against a remote round trip).
 *
 * Must never call into the network with the lock held, never exceed its
 * bounds, and never free an entry a worker is uploading.
 */
#include "ccache_queue.h"
#include "clock.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CCQ_WORKERS_MAX 16

typedef struct ccq_entry {
    struct ccq_entry *prev, *next;
    acache_id action;
    bool busy;              /* a worker is uploading it */
    size_t len;
    unsigned char *data;
} ccq_entry;

struct ccq {
    acache_store *remote;
    size_t max_entries;
    uint64_t max_bytes;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* an entry waits, or stopping */
    pthread_cond_t idle_cv;  /* an entry left */
    ccq_entry *head, *tail;  /* oldest first */
    size_t n;
    uint64_t bytes;
    bool stopping;
    pthread_t threads[CCQ_WORKERS_MAX];
    unsigned nthreads;
    ccq_stats st;
};

/* Unlinks e (the lock held) and frees it. */
static void entry_remove(ccq *q, ccq_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        q->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        q->tail = e->prev;
    q->n--;
    q->bytes -= e->len;
    free(e->data);
    free(e);
    pthread_cond_broadcast(&q->idle_cv);
}

static ccq_entry *first_waiting(ccq *q)
{
    for (ccq_entry *e = q->head; e; e = e->next)
        if (!e->busy)
            return e;
    return NULL;
}

static void *worker_main(void *arg)
{
    ccq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        ccq_entry *e;
        while (!(e = first_waiting(q)) && !q->stopping)
            pthread_cond_wait(&q->work_cv, &q->mu);
        if (!e)
            break;
        e->busy = true;
        pthread_mutex_unlock(&q->mu);
        acache_status st = acache_put(q->remote, &e->action, e->data ? e->data : (void *)"",
                                      e->len, NULL);
        pthread_mutex_lock(&q->mu);
        if (st == ACACHE_OK)
            q->st.uploaded++;
        else
            q->st.failed++;
        entry_remove(q, e);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

ccq *ccq_create(acache_store *remote, size_t max_entries, uint64_t max_bytes, unsigned workers)
{
    ccq *q = calloc(1, sizeof *q);
    pthread_condattr_t ca;
    if (!q)
        return NULL;
    q->remote = remote;
    q->max_entries = max_entries;
    q->max_bytes = max_bytes;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work_cv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (workers > CCQ_WORKERS_MAX)
        workers = CCQ_WORKERS_MAX;
    for (unsigned i = 0; i < workers; i++)
        if (pthread_create(&q->threads[q->nthreads], NULL, worker_main, q) == 0)
            q->nthreads++;
    if (q->nthreads == 0) {
        ccq_destroy(q);
        return NULL;
    }
    return q;
}

bool ccq_push(ccq *q, const acache_id *action, void *data, size_t len)
{
    ccq_entry *e = malloc(sizeof *e);
    pthread_mutex_lock(&q->mu);
    if (!e || q->stopping || q->n >= q->max_entries || len > q->max_bytes - q->bytes) {
        q->st.dropped++;
        pthread_mutex_unlock(&q->mu);
        free(e);
        free(data);
        return false;
    }
    e->action = *action;
    e->busy = false;
    e->len = len;
    e->data = data;
    e->next = NULL;
    e->prev = q->tail;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
    q->bytes += len;
    q->st.queued++;
    pthread_cond_signal(&q->work_cv);
    pthread_mutex_unlock(&q->mu);
    return true;
}

bool ccq_lookup(ccq *q, const acache_id *action, void **data, size_t *len)
{
    bool found = false;
    *data = NULL;
    *len = 0;
    pthread_mutex_lock(&q->mu);
    for (ccq_entry *e = q->tail; e; e = e->prev) {
        if (memcmp(&e->action, action, sizeof *action) != 0)
            continue;
        /* A copy: the entry may be freed as soon as the lock is let go. */
        if (e->len > 0 && !(*data = malloc(e->len)))
            break;
        if (e->len > 0)
            memcpy(*data, e->data, e->len);
        *len = e->len;
        q->st.served++;
        found = true;
        break;
    }
    pthread_mutex_unlock(&q->mu);
    return found;
}

/* An entry of action being uploaded, or NULL (the lock held). */
static ccq_entry *busy_with(ccq *q, const acache_id *action)
{
    for (ccq_entry *e = q->head; e; e = e->next)
        if (e->busy && memcmp(&e->action, action, sizeof *action) == 0)
            return e;
    return NULL;
}

bool ccq_cancel(ccq *q, const acache_id *action)
{
    bool removed = false;
    pthread_mutex_lock(&q->mu);
    ccq_entry *e = q->head;
    while (e) {
        ccq_entry *next = e->next;
        if (!e->busy && memcmp(&e->action, action, sizeof *action) == 0) {
            entry_remove(q, e);
            removed = true;
        }
        e = next;
    }
    /* An upload on its way would undo the remove: wait for it (the
     * remote's timeouts bound it). */
    while (busy_with(q, action)) {
        removed = true;
        pthread_cond_wait(&q->idle_cv, &q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return removed;
}

/* Drops every waiting entry (the lock held). */
static void drop_waiting(ccq *q)
{
    ccq_entry *e = q->head;
    while (e) {
        ccq_entry *next = e->next;
        if (!e->busy) {
            entry_remove(q, e);
            q->st.dropped++;
        }
        e = next;
    }
}

void ccq_flush(ccq *q, int64_t timeout_ns)
{
    int64_t deadline = now_ns() + timeout_ns;
    struct timespec ts = { (time_t)(deadline / 1000000000), (long)(deadline % 1000000000) };
    pthread_mutex_lock(&q->mu);
    while (q->head && now_ns() < deadline)
        pthread_cond_timedwait(&q->idle_cv, &q->mu, &ts);
    drop_waiting(q);
    pthread_mutex_unlock(&q->mu);
}

void ccq_get_stats(ccq *q, ccq_stats *out)
{
    pthread_mutex_lock(&q->mu);
    *out = q->st;
    out->pending = q->n;
    out->pending_bytes = q->bytes;
    pthread_mutex_unlock(&q->mu);
}

void ccq_destroy(ccq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    drop_waiting(q);
    pthread_cond_broadcast(&q->work_cv);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_cond_destroy(&q->idle_cv);
    pthread_cond_destroy(&q->work_cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}
