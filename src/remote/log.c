/*
 * log.c - where the remotes' one-line notices go (acache_set_log): a
 * remote switched off, uploads dropped. The library never prints; with no
 * log function set, the notices are dropped. Every notice goes through
 * acache_redact(): no credential reaches the application's log.
 */
#include "remote/remote.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static acache_log_fn log_fn;
static void *log_ctx;

void acache_set_log(acache_log_fn fn, void *ctx)
{
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_ctx = ctx;
    pthread_mutex_unlock(&log_mu);
}

void remote_log(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char shown[sizeof msg]; /* a message may quote a spec or a URL */
    acache_redact(msg, shown, sizeof shown);
    pthread_mutex_lock(&log_mu);
    acache_log_fn fn = log_fn;
    void *ctx = log_ctx;
    pthread_mutex_unlock(&log_mu);
    if (fn)
        fn(ctx, shown);
}
