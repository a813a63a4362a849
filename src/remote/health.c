/*
 * health.c - a remote's health: every call that fails to reach the server
 * or times out counts; a success resets the count. After `failures` in a
 * row the remote is switched off for the rest of the process: every later
 * call returns at once (a miss, a dropped upload), and one line goes to the
 * log function. A server that answers but refuses writes switches off only
 * uploads.
 *
 * Rules: it never switches a remote back on; a failure caused by a flush
 * that ran out of time (r->cancel) is not the server's and never counts;
 * the reason kept for acache_remote_info and the log line say what failed,
 * never a secret (the messages come from the transports, which leave
 * passwords and keys out).
 */
#include "core/error.h"
#include "remote/remote_store.h"

#include <stdio.h>

/* Accounts one transport result for the remote's health; returns st. */
acache_status remote_health(remote *r, acache_status st)
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

