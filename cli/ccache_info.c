/*
 * ccache_info.c - the ccache storage helper's answer to an info request:
 * its identity (the acache version) and, as diagnostics ccache writes to
 * its log, each remote's state and counters, the upload queue's, the
 * probe's and the helper's own.
 *
 * Must never show a secret (every line passes through ccache_redact) or a
 * line over the protocol's 255 bytes (crsh_info cuts them).
 */
#include "ccache_proto.h"
#include "ccache_server.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELPER_DIAG_MAX 32

typedef struct diag_list {
    char text[HELPER_DIAG_MAX][CRSH_MSG_MAX + 1];
    size_t n;
} diag_list;

static void diag_add(diag_list *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diag_add(diag_list *d, const char *fmt, ...)
{
    if (d->n >= HELPER_DIAG_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text[d->n++], sizeof d->text[0], fmt, ap);
    va_end(ap);
}

static void diag_remote(diag_list *d, const acache_remote_info *ri)
{
    const char *mode = ri->readable && ri->writable ? "rw" : ri->readable ? "ro" : "wo";
    const char *state = ri->switched_off ? "switched off"
                        : ri->uploads_off ? "active, uploads switched off" : "active";
    diag_add(d, "remote %s (%s): %s", ri->name, mode, state);
    if (ri->reason[0])
        diag_add(d, "remote %s: why: %s", ri->name, ri->reason);
    diag_add(d, "remote %s: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " rejected, %" PRIu64
                " failures; %" PRIu64 " uploads (%.1f MiB), %" PRIu64 " already there, %" PRIu64
                " dropped, %" PRIu64 " pending",
             ri->name, ri->hits, ri->misses, ri->rejected, ri->failures, ri->uploads,
             (double)ri->upload_bytes / (1024.0 * 1024.0), ri->already, ri->dropped, ri->pending);
}

static void collect_info(helper *h, diag_list *d)
{
    acache_remote_info ri[4];
    size_t n = acache_remotes(h->remote, ri, 4);
    for (size_t i = 0; i < n && i < 4; i++)
        diag_remote(d, &ri[i]);
    ccq_stats qs;
    ccq_get_stats(h->queue, &qs);
    diag_add(d, "upload queue (memory): %" PRIu64 " pending (%.1f MiB of %.0f MiB), %" PRIu64
                " queued, %" PRIu64 " uploaded, %" PRIu64 " failed, %" PRIu64 " dropped, %" PRIu64
                " gets served from it",
             qs.pending, (double)qs.pending_bytes / (1024.0 * 1024.0),
             (double)HELPER_QUEUE_BYTES / (1024.0 * 1024.0), qs.queued, qs.uploaded, qs.failed,
             qs.dropped, qs.served);
    ccp_stats ps;
    ccp_get_stats(h->probe, &ps);
    diag_add(d, "failing remote: %" PRIu64 " requests answered without it, %" PRIu64
                " background probes, %" PRIu64 " recoveries",
             ps.skipped, ps.probes, ps.recovered);
    pthread_mutex_lock(&h->mu);
    size_t clients = h->clients;
    pthread_mutex_unlock(&h->mu);
    diag_add(d, "helper: pid %ld, up %" PRId64 " s, %zu clients; %" PRIu64 " gets (%" PRIu64
                " hits, %" PRIu64 " misses), %" PRIu64 " puts, %" PRIu64 " removes, %" PRIu64
                " errors, %" PRIu64 " bad requests",
             (long)getpid(), (now_ns() - h->started_ns) / 1000000000, clients,
             (uint64_t)atomic_load(&h->gets), (uint64_t)atomic_load(&h->hits),
             (uint64_t)atomic_load(&h->misses), (uint64_t)atomic_load(&h->puts),
             (uint64_t)atomic_load(&h->removes), (uint64_t)atomic_load(&h->errors),
             (uint64_t)atomic_load(&h->bad));
}

uint8_t *ccache_info_answer(helper *h, size_t *len)
{
    diag_list *d = calloc(1, sizeof *d);
    uint8_t *out = malloc((HELPER_DIAG_MAX + 1) * (1 + CRSH_MSG_MAX) + 1);
    const char *ptrs[HELPER_DIAG_MAX];
    char identity[64];
    if (!d || !out) {
        free(d);
        free(out);
        return NULL;
    }
    collect_info(h, d);
    for (size_t i = 0; i < d->n; i++) {
        char safe[CRSH_MSG_MAX + 1];
        ccache_redact(&h->cfg, d->text[i], safe, sizeof safe);
        memcpy(d->text[i], safe, sizeof safe);
        ptrs[i] = d->text[i];
    }
    snprintf(identity, sizeof identity, "acache %d.%d.%d ccache-helper", ACACHE_VERSION_MAJOR,
             ACACHE_VERSION_MINOR, ACACHE_VERSION_PATCH);
    *len = crsh_info(out, identity, ptrs, d->n);
    free(d);
    return out;
}
