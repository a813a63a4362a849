/*
 * ccache_probe.c - the ccache storage helper's background probe of a
 * failing remote (ccache_probe.h says why).
 *
 * One mutex guards the state: `failing` (set by a client's failed request,
 * cleared when a probe gets an answer) and the counters. The thread sleeps
 * on a condition variable until the remote is failing, then gets a fixed
 * id of its own namespace (never stored: a healthy server answers "miss" in
 * one round trip) without the lock, at most once per CCP_PROBE_GAP_MS. Each
 * probe that fails counts towards the library's switch-off like any other
 * request; once the remote is switched off, `failing` is cleared too (the
 * library answers every request at once then) and nothing is probed.
 *
 * Must never hold the lock across the network, never probe a remote that
 * is switched off, and never let a client wait for a probe.
 */
#include "ccache_probe.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define CCP_NAMESPACE "acache ccache-storage-helper probe v1"

struct ccp {
    acache_store *remote;
    acache_id probe_id;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* failing, or stopping */
    bool failing, stopping;
    ccp_stats st;
    pthread_t thread;
};

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static bool switched_off(ccp *p)
{
    acache_remote_info ri;
    return acache_remotes(p->remote, &ri, 1) < 1 || ri.switched_off;
}

/* One request to the remote: true if the server answered (hit or miss). */
static bool probe_once(ccp *p)
{
    acache_result res;
    acache_status st = acache_get(p->remote, &p->probe_id, 0, &res);
    if (st == ACACHE_OK)
        acache_result_release(&res);
    return st == ACACHE_OK || st == ACACHE_MISS;
}

static void *probe_main(void *arg)
{
    ccp *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && !p->failing)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping)
            break;
        pthread_mutex_unlock(&p->mu);
        struct timespec next;
        deadline_in(&next, CCP_PROBE_GAP_MS);
        bool tried = !switched_off(p);
        bool answered = tried && probe_once(p);
        /* The probe's own failure may be the one that switched it off. */
        bool off = !answered && switched_off(p);
        pthread_mutex_lock(&p->mu);
        p->st.probes += tried;
        if (off || answered) {
            /* Answered: clients use it again. Switched off: the library
             * answers them at once from now on. */
            p->failing = false;
            p->st.recovered += answered;
            continue;
        }
        while (!p->stopping && pthread_cond_timedwait(&p->cv, &p->mu, &next) == 0)
            ;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ccp *ccp_start(acache_store *remote)
{
    ccp *p = calloc(1, sizeof *p);
    pthread_condattr_t ca;
    if (!p)
        return NULL;
    p->remote = remote;
    acache_part part = { "probe", 5 };
    acache_key_derive(&p->probe_id, CCP_NAMESPACE, &part, 1);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, probe_main, p) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

void ccp_failed(ccp *p)
{
    pthread_mutex_lock(&p->mu);
    p->failing = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

bool ccp_failing(ccp *p)
{
    pthread_mutex_lock(&p->mu);
    bool failing = p->failing;
    pthread_mutex_unlock(&p->mu);
    /* Switched off by now (maybe a moment before the thread saw it): the
     * library answers at once, as a miss. */
    if (!failing || switched_off(p))
        return false;
    pthread_mutex_lock(&p->mu);
    p->st.skipped++;
    pthread_mutex_unlock(&p->mu);
    return true;
}

void ccp_get_stats(ccp *p, ccp_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
}

void ccp_stop(ccp *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
