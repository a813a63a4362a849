/*
 * remote.c - a store on a remote server, built on any transport
 * (remote.h): reads action records and objects and checks them, uploads
 * in the background, and keeps the remote's health.
 *
 * Health: every call that fails to reach the server or times out counts;
 * a success resets the count. After `failures` in a row the remote is
 * switched off for the rest of the process: every later call returns at
 * once (a miss, a dropped upload), and one line goes to the log function.
 * A server that answers but refuses writes switches off only uploads.
 *
 * Uploads: put_file() queues (action, output, local path) and returns.
 * A few uploader threads, started at the first upload, read each object
 * back from the local file, send it unless the remote already has it, then
 * its record. The queue is bounded; what does not fit, or is still queued
 * when a flush runs out of time, is dropped and counted.
 *
 * This file must never let a remote make a call fail that the local store
 * answered, never hand out bytes that were not checked against their id,
 * and never wait on the network without a timeout.
 */
#include "core/error.h"
#include "os/clock.h"
#include "os/fsutil.h"
#include "remote/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

/* Threads uploading to one remote: enough to hide a few round trips. */
#define REMOTE_UPLOADERS 2

/* ------------------------------------------------------------------ */
/* The remote store                                                     */

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

static const backend_ops remote_backend_ops;

#define BUMP(r, field) atomic_fetch_add_explicit(&(r)->field, 1, memory_order_relaxed)

/* Accounts one transport result for the remote's health; returns st. */
static acache_status health(remote *r, acache_status st)
{
    if (st >= 0 && st != REMOTE_REFUSED) {
        atomic_store(&r->fails, 0);
        return st;
    }
    /* A flush that ran out of time cancels what runs: not the server's doing. */
    if (atomic_load(&r->cancel))
        return st;
    char last[512];
    snprintf(last, sizeof last, "%s", acache_last_error());
    if (st == REMOTE_REFUSED) {
        atomic_store(&r->fails, 0);
        if (atomic_fetch_add(&r->refusals, 1) + 1 >= r->cfg.max_failures &&
            !atomic_exchange(&r->uploads_off, true)) {
            pthread_mutex_lock(&r->mu);
            if (!r->reason[0])
                snprintf(r->reason, sizeof r->reason, "the server refused %u uploads in a row: %.200s",
                         r->cfg.max_failures, last);
            pthread_mutex_unlock(&r->mu);
            remote_log("remote %s: uploads switched off: the server refused %u in a row (last: %s)",
                       r->name, r->cfg.max_failures, last);
        }
        return st;
    }
    BUMP(r, failures);
    if (atomic_fetch_add(&r->fails, 1) + 1 >= r->cfg.max_failures &&
        !atomic_exchange(&r->off, true)) {
        pthread_mutex_lock(&r->mu);
        snprintf(r->reason, sizeof r->reason, "%u consecutive failures, the last: %.200s",
                 r->cfg.max_failures, last);
        pthread_mutex_unlock(&r->mu);
        remote_log("remote %s: switched off for the rest of this process after %u consecutive "
                   "failures (last: %s)", r->name, r->cfg.max_failures, last);
    }
    return st;
}

/* Fills a fixed buffer; more than it holds is refused by the transport's
 * limit before it gets here. */
typedef struct buf_sink {
    unsigned char buf[REMOTE_RECORD_MAX];
    size_t len;
} buf_sink;

static acache_status buf_write(void *ctx, const void *data, size_t len)
{
    buf_sink *b = ctx;
    if (len > sizeof b->buf - b->len)
        return set_error(ACACHE_CORRUPT, "action record is too long");
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return ACACHE_OK;
}

/* Passes bytes on and remembers a failure of the caller's sink, which is
 * the caller's problem and not the remote's. */
typedef struct guard_sink {
    const remote_sink *down;
    acache_status st;
} guard_sink;

static acache_status guard_write(void *ctx, const void *data, size_t len)
{
    guard_sink *g = ctx;
    g->st = g->down->write(g->down->ctx, data, len);
    return g->st;
}

static acache_status remote_get_into(void *self, const acache_id *action, acache_result *meta,
                                     const remote_sink *sink)
{
    remote *r = self;
    char hex[ACACHE_ID_HEX_SIZE], why[512];
    if (!r->cfg.can_read || atomic_load(&r->off))
        return ACACHE_MISS;
    acache_id_to_hex(action, hex);
    buf_sink rb = { .len = 0 };
    remote_sink rs = { buf_write, &rb };
    acache_status st = health(r, r->tops->fetch(r->t, REMOTE_AC, hex, sizeof rb.buf, &rs));
    if (st == ACACHE_MISS) {
        BUMP(r, misses);
        return ACACHE_MISS;
    }
    if (st != ACACHE_OK && st != ACACHE_CORRUPT)
        return st;
    remote_record rec;
    if (st == ACACHE_OK)
        st = record_decode(rb.buf, rb.len, action, r->cfg.key, r->cfg.keylen, &rec);
    if (st != ACACHE_OK) {
        BUMP(r, rejected);
        snprintf(why, sizeof why, "%s", acache_last_error());
        return set_error(ACACHE_CORRUPT, "remote %s: ac/%s refused: %s", r->name, hex, why);
    }
    if (rec.size > r->cfg.max_object) {
        BUMP(r, misses);
        return ACACHE_MISS;
    }
    meta->output_id = rec.output;
    meta->size = rec.size;
    meta->time_ns = rec.time_ns;
    meta->path[0] = '\0';

    guard_sink g = { sink, ACACHE_OK };
    remote_sink gs = { guard_write, &g };
    object_decoder d;
    object_decoder_init(&d, rec.size, &gs);
    remote_sink ds = object_decoder_sink(&d);
    acache_id_to_hex(&rec.output, hex);
    st = r->tops->fetch(r->t, REMOTE_CAS, hex, object_stored_limit(rec.size), &ds);
    if (st == ACACHE_OK)
        st = object_decoder_finish(&d);
    object_decoder_free(&d);
    if (g.st != ACACHE_OK)
        return g.st;
    st = health(r, st);
    if (st == ACACHE_MISS) {
        /* The record outlived its object (evicted by the server). */
        BUMP(r, misses);
        return ACACHE_MISS;
    }
    if (st == ACACHE_CORRUPT) {
        snprintf(why, sizeof why, "%s", acache_last_error());
        /* Left in place, it would stop every later upload of the object. */
        if (r->cfg.can_write)
            health(r, r->tops->remove(r->t, REMOTE_CAS, hex));
        BUMP(r, rejected);
        return set_error(ACACHE_CORRUPT, "remote %s: cas/%s refused%s: %s", r->name, hex,
                         r->cfg.can_write ? " and removed" : "", why);
    }
    return st;
}

static void remote_verdict(void *self, const acache_result *meta, bool good)
{
    remote *r = self;
    if (good) {
        BUMP(r, hits);
        return;
    }
    BUMP(r, rejected);
    if (r->cfg.can_write && !atomic_load(&r->off)) {
        char hex[ACACHE_ID_HEX_SIZE];
        acache_id_to_hex(&meta->output_id, hex);
        health(r, r->tops->remove(r->t, REMOTE_CAS, hex));
    }
}

/* A get on the remote alone: the bytes go to memory and are checked here. */
typedef struct mem_sink {
    const acache_result *meta;
    unsigned char *buf;
    size_t len;
} mem_sink;

static acache_status mem_write(void *ctx, const void *data, size_t len)
{
    mem_sink *m = ctx;
    if (!m->buf && !(m->buf = malloc((size_t)m->meta->size)))
        return set_error(ACACHE_ENOMEM, "out of memory for a %llu-byte object",
                         (unsigned long long)m->meta->size);
    /* The decoder never delivers more than meta->size bytes. */
    memcpy(m->buf + m->len, data, len);
    m->len += len;
    return ACACHE_OK;
}

static void free_release(void *ctx, const void *data, uint64_t size)
{
    (void)data;
    (void)size;
    free(ctx);
}

static acache_status remote_get(void *self, const acache_id *action, unsigned flags,
                                acache_result *res)
{
    remote *r = self;
    if (flags & ACACHE_GET_LOCAL)
        return ACACHE_MISS;
    mem_sink m = { res, NULL, 0 };
    remote_sink sink = { mem_write, &m };
    acache_status st = remote_get_into(r, action, res, &sink);
    if (st != ACACHE_OK) {
        free(m.buf);
        return st;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bool good = EVP_Digest(m.buf ? m.buf : (unsigned char *)"", m.len, md, &mdlen, EVP_sha256(),
                           NULL) &&
                mdlen == ACACHE_ID_SIZE && memcmp(md, res->output_id.bytes, ACACHE_ID_SIZE) == 0;
    remote_verdict(r, res, good);
    if (!good) {
        free(m.buf);
        return set_error(ACACHE_CORRUPT, "remote %s: object does not match its id; removed",
                         r->name);
    }
    if (flags & ACACHE_GET_DATA) {
        res->data = m.buf ? (const void *)m.buf : (const void *)"";
        res->release_fn_ = m.buf ? free_release : NULL;
        res->release_ctx_ = m.buf;
    } else {
        free(m.buf);
    }
    return ACACHE_OK;
}

/* Sends one entry: the object unless the remote has it, then the record. */
static acache_status upload_entry(remote *r, const acache_id *action, const acache_id *output,
                                  const void *bytes, uint64_t size, int64_t time_ns, void *cctx)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(output, hex);
    acache_status st = health(r, r->tops->exists(r->t, REMOTE_CAS, hex));
    if (st == ACACHE_OK) {
        BUMP(r, already);
    } else if (st == ACACHE_MISS) {
        remote_encoded enc;
        st = object_encode(bytes, (size_t)size, r->cfg.zstd_level, cctx, &enc);
        if (st == ACACHE_OK) {
            st = health(r, r->tops->store(r->t, REMOTE_CAS, hex, enc.data, enc.len, &r->cancel));
            if (st == ACACHE_OK)
                atomic_fetch_add(&r->upload_bytes, enc.len);
        }
        object_encoded_free(&enc);
    }
    if (st != ACACHE_OK)
        return st;
    unsigned char rec[REMOTE_RECORD_MAX];
    remote_record rr = { *output, size, time_ns };
    size_t n = record_encode(action, &rr, r->cfg.key, r->cfg.keylen, rec);
    acache_id_to_hex(action, hex);
    st = health(r, r->tops->store(r->t, REMOTE_AC, hex, rec, n, &r->cancel));
    if (st == ACACHE_OK) {
        atomic_store(&r->refusals, 0);
        atomic_fetch_add(&r->upload_bytes, n);
        BUMP(r, uploads);
    }
    return st;
}

/* Uploads one queued entry, reading its bytes back from the local file. */
static void upload_run(remote *r, const upload *u, void *cctx)
{
    if (atomic_load(&r->off) || atomic_load(&r->uploads_off) || atomic_load(&r->cancel)) {
        BUMP(r, dropped);
        return;
    }
    void *map = NULL;
    struct stat sb;
    acache_status st = ACACHE_EIO;
    int fd = open(u->path, O_RDONLY | O_CLOEXEC);
    /* Gone (evicted) or not what was committed: nothing to send. */
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != u->size)
        goto out;
    if (u->size > 0) {
        map = mmap(NULL, (size_t)u->size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            goto out;
        }
    }
    st = upload_entry(r, &u->action, &u->output, map ? map : "", u->size, u->time_ns, cctx);
out:
    if (st != ACACHE_OK)
        BUMP(r, dropped);
    if (map)
        munmap(map, (size_t)u->size);
    if (fd >= 0)
        close(fd);
}

static void *uploader_main(void *arg)
{
    remote *r = arg;
    ZSTD_CCtx *cctx = r->cfg.zstd_level > 0 ? ZSTD_createCCtx() : NULL;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->head && !r->stopping)
            pthread_cond_wait(&r->work_cv, &r->mu);
        upload *u = r->head;
        if (!u)
            break;
        r->head = u->next;
        if (!r->head)
            r->tail = NULL;
        r->queued--;
        r->busy++;
        pthread_mutex_unlock(&r->mu);
        upload_run(r, u, cctx);
        free(u);
        pthread_mutex_lock(&r->mu);
        r->busy--;
        if (!r->head && r->busy == 0)
            pthread_cond_broadcast(&r->idle_cv);
    }
    pthread_mutex_unlock(&r->mu);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

static acache_status remote_put_file(void *self, const acache_id *action, const acache_id *output,
                                     uint64_t size, int64_t time_ns, const char *path)
{
    remote *r = self;
    if (!r->cfg.can_write)
        return ACACHE_MISS;
    size_t plen = strlen(path);
    upload *u = NULL;
    if (atomic_load(&r->off) || atomic_load(&r->uploads_off) || size > r->cfg.max_object ||
        !(u = malloc(sizeof *u + plen + 1)))
        goto drop;
    u->next = NULL;
    u->action = *action;
    u->output = *output;
    u->size = size;
    u->time_ns = time_ns;
    memcpy(u->path, path, plen + 1);

    pthread_mutex_lock(&r->mu);
    if (!r->threads_tried) {
        r->threads_tried = true;
        for (size_t i = 0; i < REMOTE_UPLOADERS; i++)
            if (pthread_create(&r->threads[r->nthreads], NULL, uploader_main, r) == 0)
                r->nthreads++;
    }
    if (r->stopping || r->nthreads == 0 || r->queued >= r->cfg.queue_max) {
        pthread_mutex_unlock(&r->mu);
        goto drop;
    }
    if (r->tail)
        r->tail->next = u;
    else
        r->head = u;
    r->tail = u;
    r->queued++;
    pthread_cond_signal(&r->work_cv);
    pthread_mutex_unlock(&r->mu);
    return ACACHE_OK;
drop:
    free(u);
    BUMP(r, dropped);
    return ACACHE_MISS;
}

static void remote_flush(void *self, int64_t start_ns)
{
    remote *r = self;
    int64_t deadline = start_ns + r->cfg.flush_timeout_ns;
    struct timespec ts = { (time_t)(deadline / 1000000000), (long)(deadline % 1000000000) };
    pthread_mutex_lock(&r->mu);
    while ((r->head || r->busy) && os_mono_ns() < deadline)
        pthread_cond_timedwait(&r->idle_cv, &r->mu, &ts);
    while (r->head) {
        upload *u = r->head;
        r->head = u->next;
        r->queued--;
        free(u);
        BUMP(r, dropped);
    }
    r->tail = NULL;
    if (r->busy) {
        /* Out of time: what is being sent gives up at its next chance. */
        atomic_store(&r->cancel, true);
        while (r->busy)
            pthread_cond_wait(&r->idle_cv, &r->mu);
        atomic_store(&r->cancel, false);
    }
    pthread_mutex_unlock(&r->mu);
}

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
        st = upload_entry(r, &w->action, output, w->buf ? w->buf : (unsigned char *)"", size, now,
                          NULL);
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
    acache_status st = health(r, r->tops->remove(r->t, REMOTE_AC, hex));
    return st == REMOTE_REFUSED ? ACACHE_EIO : st;
}

static unsigned remote_prefetch(void *self)
{
    return ((remote *)self)->cfg.prefetch;
}

static const remote_ops remote_remote_ops = {
    .get_into = remote_get_into,
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
