/*
 * curl_multi.c - several requests of a remote transport at once, on one
 * libcurl multi handle: what HTTP has instead of Redis' pipelining. A
 * prefetch batch asks for 16 records, then the small objects they name;
 * one after another, each waits out a round trip, and the server, the
 * client and the build share two cores. Run together they overlap.
 *
 * Each request is set up and finished exactly as curl_perform does it
 * (curl_req_start, curl_req_end: same options, timeouts, limits, sinks and
 * messages) but for a smaller receive buffer; only the waiting is shared.
 * A multi handle keeps the connections its requests opened, so a multi and
 * the easy handles it ran (a "set") are pooled in the client together and
 * reused by the next batch: easy handles made and freed per batch would
 * each fault in a fresh receive buffer.
 *
 * The waiting is curl_wait.c's: one poll(2) of the sockets libcurl asks
 * for, and libcurl told which is ready (fewer polls than
 * curl_multi_perform's loop: see curl_wait.h).
 *
 * Rules: never wait without a bound (every request carries its own
 * timeouts, as with curl_perform, and libcurl ends it when they pass);
 * answer every request exactly once; never print.
 */
#include "core/error.h"
#include "remote/curl_request.h"
#include "remote/curl_wait.h"

#include <stdlib.h>

/* The receive buffer of a set's handles: a batch holds records and objects
 * of 256 KiB or less (fetch_many.c), not curl_request.c's large bodies. */
#define SET_RECV_BUFFER (64L << 10)

/* A multi handle and the easy handles it has run, kept together. */
typedef struct multi_set {
    CURLM *m;
    curl_watch w;
    CURL *e[REMOTE_BATCH_MAX];
    size_t n;
} multi_set;

static void set_free(const curl_api *curl, multi_set *set)
{
    curl->multi_cleanup(set->m);
    for (size_t i = 0; i < set->n; i++)
        curl->easy_cleanup(set->e[i]);
    free(set);
}

void curl_multis_drain(curl_client *c)
{
    multi_set *set;
    while ((set = remote_pool_take(&c->multis)) != NULL)
        set_free(c->curl, set);
}

static multi_set *set_take(curl_client *c)
{
    multi_set *set = remote_pool_take(&c->multis);
    if (set)
        return set;
    set = calloc(1, sizeof *set);
    if (set && !(set->m = c->curl->multi_init())) {
        free(set);
        return NULL;
    }
    if (set)
        curl_watch_attach(c->curl, set->m, &set->w);
    return set;
}

/* Starts rqs[i] on the set's i-th easy handle (made if new). */
static CURL *set_start(curl_client *c, multi_set *set, curl_req *rq, size_t i, char *errbuf)
{
    if (i == set->n) {
        if (!(set->e[i] = c->curl->easy_init()))
            return NULL;
        set->n++;
    }
    curl_req_start(c, rq, set->e[i], SET_RECV_BUFFER, errbuf);
    return set->e[i];
}

/* Notes how each request libcurl has finished ended. */
static void collect(const curl_api *curl, CURLM *m, curl_req *rqs, size_t n, CURLcode *rcs)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl->multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (size_t i = 0; i < n; i++)
            if (rqs[i].e_ == msg->easy_handle)
                rcs[i] = msg->data.result;
    }
}

/* Runs the added requests until none is left, noting how each ended;
 * false: the wait failed (the set is not to be kept). */
static bool run_all(const curl_api *curl, multi_set *set, curl_req *rqs, size_t n,
                    CURLcode *rcs)
{
    bool ok = curl_watch_run(curl, set->m, &set->w);
    collect(curl, set->m, rqs, n, rcs);
    return ok;
}

void curl_perform_many(curl_client *c, curl_req *rqs, size_t n, const char *where,
                       acache_status *st)
{
    const curl_api *curl = c->curl;
    char (*errbufs)[CURL_ERROR_SIZE] = malloc(n * sizeof *errbufs);
    CURLcode rcs[REMOTE_BATCH_MAX];
    bool added[REMOTE_BATCH_MAX] = { false };
    multi_set *set = n <= REMOTE_BATCH_MAX ? set_take(c) : NULL;
    bool keep = true;
    if (!errbufs || !set) {
        for (size_t i = 0; i < n; i++)
            st[i] = set_error(ACACHE_ENOMEM, "%s: out of memory", where);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        st[i] = ACACHE_OK;
        rcs[i] = CURLE_FAILED_INIT; /* until libcurl says how it ended */
        rqs[i].e_ = set_start(c, set, &rqs[i], i, errbufs[i]);
        if (!rqs[i].e_)
            st[i] = set_error(ACACHE_ENOMEM, "%s: cannot make a curl handle", where);
        else
            added[i] = curl->multi_add_handle(set->m, rqs[i].e_) == CURLM_OK;
    }
    keep = run_all(curl, set, rqs, n, rcs);
    for (size_t i = 0; i < n; i++) {
        if (!rqs[i].e_)
            continue;
        if (added[i])
            curl->multi_remove_handle(set->m, rqs[i].e_);
        st[i] = curl_req_end(c, &rqs[i], rcs[i], errbufs[i], where);
    }
out:
    if (set && (!keep || !remote_pool_give(&c->multis, set)))
        set_free(curl, set);
    free(errbufs);
}

acache_status curl_batch_failure(const acache_status *st, size_t n, const char *where)
{
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += st[i] == ACACHE_EIO;
    return n > 0 && failed == n
               ? set_error(ACACHE_EIO, "%s: %zu requests at once all failed", where, n)
               : ACACHE_OK;
}
