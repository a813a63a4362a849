/*
 * resolve.c - host name lookups that end by a deadline (see resolve.h).
 *
 * A numeric address is taken as it is, without a thread. A name is looked
 * up by getaddrinfo() in a detached helper thread, with every signal
 * blocked (the application's handlers must not run on it); the caller
 * waits on a condition variable until the answer or the deadline. The
 * lookup's state is shared by the two and reference-counted: whichever of
 * them lets go last frees it, so a caller that gave up returns at once and
 * the thread, whenever getaddrinfo() comes back, cleans up after itself.
 * Nothing here may wait without the deadline or print.
 */
#include "remote/resolve.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

typedef struct lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* done was set; on CLOCK_MONOTONIC */
    int refs;                   /* the caller and the thread: 2, then 1, then 0 */
    bool done;
    int rc;                     /* getaddrinfo()'s answer */
    int err;                    /* errno after it, for EAI_SYSTEM */
    resolved res;
    char host[];
} lookup;

static void lookup_unref(lookup *l)
{
    pthread_mutex_lock(&l->mu);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (last) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
}

/* The numeric forms of a getaddrinfo() answer. */
static void collect(const struct addrinfo *ai, resolved *out)
{
    out->n = 0;
    for (; ai && out->n < RESOLVE_MAX; ai = ai->ai_next)
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, out->addr[out->n], NI_MAXHOST, NULL, 0,
                        NI_NUMERICHOST) == 0)
            out->n++;
}

/* The thread. l->res is written before done is set under the mutex, and
 * read by the caller only after it saw done, so it needs no lock itself. */
static void *lookup_main(void *arg)
{
    lookup *l = arg;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai = NULL;
    errno = 0;
    int rc = getaddrinfo(l->host, NULL, &hints, &ai);
    int err = errno;
    if (rc == 0) {
        collect(ai, &l->res);
        freeaddrinfo(ai);
        if (l->res.n == 0)
            rc = EAI_NONAME;
    }
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->err = err;
    l->done = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    return NULL;
}

static bool is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A new lookup of host, shared by the caller and a thread; NULL (message
 * set) if either could not be made. */
static lookup *lookup_start(const char *host, acache_status *st)
{
    size_t n = strlen(host);
    lookup *l = calloc(1, sizeof *l + n + 1);
    if (!l) {
        *st = set_error(ACACHE_ENOMEM, "looking up %s: out of memory", host);
        return NULL;
    }
    memcpy(l->host, host, n + 1);
    l->refs = 2;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&l->mu, NULL);

    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&thread, &attr, lookup_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        *st = set_error(ACACHE_ENOMEM, "looking up %s: cannot start a thread: %s", host,
                        strerror(rc));
        l->refs = 1;
        lookup_unref(l);
        return NULL;
    }
    return l;
}

acache_status resolve_host(const char *host, int64_t deadline_ns, resolved *out)
{
    out->n = 0;
    if (is_numeric(host)) {
        snprintf(out->addr[0], sizeof out->addr[0], "%s", host);
        out->n = 1;
        return ACACHE_OK;
    }
    acache_status st = ACACHE_OK;
    lookup *l = lookup_start(host, &st);
    if (!l)
        return st;
    struct timespec until = { (time_t)(deadline_ns / 1000000000),
                              (long)(deadline_ns % 1000000000) };
    pthread_mutex_lock(&l->mu);
    while (!l->done && pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
        ;
    bool done = l->done;
    int rc = l->rc, err = l->err;
    if (done && rc == 0)
        *out = l->res;
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    if (!done)
        return set_error(ACACHE_EIO, "looking up %s: no answer within the connect timeout", host);
    if (rc == EAI_SYSTEM)
        return set_error(ACACHE_EIO, "looking up %s: %s", host, strerror(err ? err : EIO));
    if (rc != 0)
        return set_error(ACACHE_EIO, "looking up %s: %s", host, gai_strerror(rc));
    return ACACHE_OK;
}
