/*
 * pool.c - idle connection handles kept for reuse by a transport (one
 * Redis context or curl handle per request in flight, at most
 * REMOTE_POOL_MAX idle). It never opens or frees a handle itself except
 * through the free function it is given at destroy.
 */
#include "remote/remote.h"

#include <pthread.h>

void remote_pool_init(remote_pool *p)
{
    pthread_mutex_init(&p->mu, NULL);
    p->n = 0;
}

void *remote_pool_take(remote_pool *p)
{
    void *h = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        h = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    return h;
}

bool remote_pool_give(remote_pool *p, void *h)
{
    bool kept = false;
    pthread_mutex_lock(&p->mu);
    if (p->n < REMOTE_POOL_MAX) {
        p->idle[p->n++] = h;
        kept = true;
    }
    pthread_mutex_unlock(&p->mu);
    return kept;
}

void remote_pool_destroy(remote_pool *p, void (*free_fn)(void *))
{
    for (size_t i = 0; i < p->n; i++)
        free_fn(p->idle[i]);
    p->n = 0;
    pthread_mutex_destroy(&p->mu);
}
