/*
 * remote.c - a store on a remote server, built on any transport
 * (remote.h): creating and closing it, its two ops tables (backend_ops for
 * a remote used alone, remote_ops for the tiers), a put on the remote
 * alone (held, then sent at commit), deletes and the counters. Its parts:
 * health.c (switching off), fetch.c (gets), fetch_many.c (gets of several
 * at once), uploader.c (background uploads); remote_store.h holds the
 * state they share.
 *
 * This store must never let a remote make a call fail that the local
 * store answered, never hand out bytes that were not checked against
 * their id, and never wait on the network without a timeout.
 */
#include "core/error.h"
#include "os/clock.h"
#include "remote/remote_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const backend_ops remote_backend_ops;

static void remote_info(void *self, acache_remote_info *out)
{
    remote *r = self;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", r->name);
    out->readable = r->cfg.can_read;
    out->writable = r->cfg.can_write;
    out->switched_off = atomic_load(&r->off);
    out->uploads_off = atomic_load(&r->uploads_off);
    out->hits = atomic_load(&r->hits);
    out->misses = atomic_load(&r->misses);
    out->rejected = atomic_load(&r->rejected);
    out->failures = atomic_load(&r->failures);
    out->uploads = atomic_load(&r->uploads);
    out->upload_bytes = atomic_load(&r->upload_bytes);
    out->already = atomic_load(&r->already);
    out->dropped = atomic_load(&r->dropped);
    pthread_mutex_lock(&r->mu);
    snprintf(out->reason, sizeof out->reason, "%s", r->reason);
    out->pending = r->queued + r->busy;
    pthread_mutex_unlock(&r->mu);
    if (r->tops->describe)
        r->tops->describe(r->t, out->detail, sizeof out->detail);
}

static void remote_close(void *self)
{
    remote *r = self;
    remote_flush(r, os_mono_ns());
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->work_cv);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < r->nthreads; i++)
        pthread_join(r->threads[i], NULL);
    r->tops->close(r->t);
    pthread_cond_destroy(&r->idle_cv);
    pthread_cond_destroy(&r->work_cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* A put on the remote alone: the bytes are held (up to max-object) and
 * sent at commit, synchronously. */
typedef struct remote_writer {
    backend_writer base;
    remote *r;
    acache_id action;
    unsigned char *buf;
    size_t len, cap;
} remote_writer;

static acache_status remote_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    remote *r = self;
    if (!r->cfg.can_write)
        return set_error(ACACHE_EINVAL, "remote %s is read-only (mode=ro)", r->name);
    remote_writer *w = calloc(1, sizeof *w);
    if (!w)
        return set_error(ACACHE_ENOMEM, "out of memory");
    w->base.ops = &remote_backend_ops;
    w->r = r;
    w->action = *action;
    *out = &w->base;
    return ACACHE_OK;
}

static acache_status remote_put_write(backend_writer *bw, const void *data, size_t len)
{
    remote_writer *w = (remote_writer *)bw;
    if (len > w->r->cfg.max_object - w->len)
        return set_error(ACACHE_EINVAL, "remote %s: object larger than max-object", w->r->name);
    if (w->len + len > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + len)
            cap *= 2;
        unsigned char *buf = realloc(w->buf, cap);
        if (!buf)
            return set_error(ACACHE_ENOMEM, "out of memory");
        w->buf = buf;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, data, len);
    w->len += len;
    return ACACHE_OK;
}

static void remote_put_abort(backend_writer *bw)
{
    remote_writer *w = (remote_writer *)bw;
    free(w->buf);
    free(w);
}

static acache_status remote_put_commit(backend_writer *bw, const acache_id *output, uint64_t size,
                                       acache_result *res)
{
    remote_writer *w = (remote_writer *)bw;
    remote *r = w->r;
    int64_t now = fs_now_ns();
    acache_status st;
    if (atomic_load(&r->off) || atomic_load(&r->uploads_off))
        st = set_error(ACACHE_EIO, "remote %s is switched off", r->name);
    else
        st = remote_upload_entry(r, &w->action, output, w->buf ? w->buf : (unsigned char *)"", size,
                                 now, NULL);
    if (st == REMOTE_REFUSED)
        st = ACACHE_EIO; /* its message is set */
    if (st == ACACHE_OK && res) {
        res->output_id = *output;
        res->size = size;
        res->time_ns = now;
        res->path[0] = '\0';
    }
    remote_put_abort(bw);
    return st;
}

static acache_status remote_del(void *self, const acache_id *action)
{
    remote *r = self;
    char hex[ACACHE_ID_HEX_SIZE];
    if (!r->cfg.can_write)
        return set_error(ACACHE_EINVAL, "remote %s is read-only (mode=ro)", r->name);
    if (atomic_load(&r->off))
        return set_error(ACACHE_EIO, "remote %s is switched off", r->name);
    acache_id_to_hex(action, hex);
    acache_status st = remote_health(r, r->tops->remove(r->t, REMOTE_AC, hex));
    return st == REMOTE_REFUSED ? ACACHE_EIO : st;
}

static const remote_ops remote_remote_ops = {
    .get_into = remote_get_into,
    .get_many = remote_get_many,
    .verdict = remote_verdict,
    .put_file = remote_put_file,
    .flush = remote_flush,
    .info = remote_info,
    .prefetch = remote_prefetch,
};

static const backend_ops remote_backend_ops = {
    .name = "remote",
    .close = remote_close,
    .get = remote_get,
    .put_begin = remote_put_begin,
    .put_write = remote_put_write,
    .put_commit = remote_put_commit,
    .put_abort = remote_put_abort,
    .del = remote_del,
    .remote = &remote_remote_ops,
};

acache_status remote_create(const remote_config *cfg, const transport_ops *tops, void *t,
                            const char *name, void **self, const backend_ops **ops)
{
    remote *r = calloc(1, sizeof *r);
    pthread_condattr_t ca;
    if (!r) {
        tops->close(t);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    r->cfg = *cfg;
    r->tops = tops;
    r->t = t;
    snprintf(r->name, sizeof r->name, "%s", name);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->work_cv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    *self = r;
    *ops = &remote_backend_ops;
    return ACACHE_OK;
}
