/*
 * uploader.c - sending entries to a remote: the object unless the remote
 * already has it, then its record (carrying the object too when it is
 * small: inline=). remote_put_file() queues (action,
 * output, local path) and returns; a few uploader threads, started at the
 * first upload, read each object back from the local file and send it.
 * The queue is bounded (queue-max); what does not fit, or is still queued
 * when a flush runs out of time, is dropped and counted.
 *
 * Rules: a put never waits for its upload; an upload never sends a file
 * whose size is not the one committed (it was evicted or replaced); the
 * record is sent only after its object; a flush never waits past its
 * deadline for what is queued, and cancels what is being sent.
 */
#include "os/clock.h"
#include "remote/remote_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

/* Sends one entry: the object unless the remote has it, then the record. */
acache_status remote_upload_entry(remote *r, const acache_id *action, const acache_id *output,
                                  const void *bytes, uint64_t size, int64_t time_ns, void *cctx)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(output, hex);
    acache_status st = remote_health(r, r->tops->exists(r->t, REMOTE_CAS, hex));
    if (st == ACACHE_OK) {
        BUMP(r, already);
    } else if (st == ACACHE_MISS) {
        remote_encoded enc;
        st = object_encode(bytes, (size_t)size, r->cfg.zstd_level, cctx, &enc);
        if (st == ACACHE_OK) {
            st = remote_health(r, r->tops->store(r->t, REMOTE_CAS, hex, enc.data, enc.len, &r->cancel));
            if (st == ACACHE_OK)
                atomic_fetch_add(&r->upload_bytes, enc.len);
        }
        object_encoded_free(&enc);
    }
    if (st != ACACHE_OK)
        return st;
    unsigned char rec[REMOTE_RECORD_MAX];
    remote_record rr = { *output, size, time_ns, NULL };
    /* A small object rides in its record too: one request for a reader. */
    if (size > 0 && size <= r->cfg.inline_max)
        rr.contents = bytes;
    size_t n = record_encode(action, &rr, r->cfg.key, r->cfg.keylen, rec);
    acache_id_to_hex(action, hex);
    st = remote_health(r, r->tops->store(r->t, REMOTE_AC, hex, rec, n, &r->cancel));
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
    st = remote_upload_entry(r, &u->action, &u->output, map ? map : "", u->size, u->time_ns, cctx);
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

acache_status remote_put_file(void *self, const acache_id *action, const acache_id *output,
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

void remote_flush(void *self, int64_t start_ns)
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

