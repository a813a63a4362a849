/*
 * curl_multi.c - several requests of a remote transport at once, on one
 * libcurl multi handle: what HTTP has instead of Redis' pipelining. A
 * prefetch batch asks for 16 records, then the small objects they name;
 * one after another, each waits out a round trip, and the server, the
 * client and the build share two cores. Run together they overlap.
 *
 * Each request is set up and finished exactly as curl_perform does it
 * (curl_req_start, curl_req_end: same options, timeouts, limits, sinks and
 * messages); only the waiting is shared. A multi handle keeps the
 * connections its requests opened, so multis are pooled in the client
 * like easy handles are, and reused by the next batch.
 *
 * Rules: never wait without a bound (every request carries its own
 * timeouts, as with curl_perform, and libcurl ends it when they pass);
 * answer every request exactly once; never print.
 */
#include "core/error.h"
#include "remote/curl_request.h"

#include <stdlib.h>

/* The longest single wait for activity; the requests' own timeouts end
 * them, this only bounds one poll. */
#define POLL_MS 1000

/* Runs the added requests until none is left, noting how each ended. */
static void run_all(const curl_api *curl, CURLM *m, curl_req *rqs, size_t n, CURLcode *rcs)
{
    int running = 1;
    while (running > 0) {
        if (curl->multi_perform(m, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl->multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            for (size_t i = 0; i < n; i++)
                if (rqs[i].e_ == msg->easy_handle)
                    rcs[i] = msg->data.result;
        }
        if (running > 0 && curl->multi_poll(m, NULL, 0, POLL_MS, NULL) != CURLM_OK)
            break;
    }
}

void curl_perform_many(curl_client *c, curl_req *rqs, size_t n, const char *where,
                       acache_status *st)
{
    const curl_api *curl = c->curl;
    char (*errbufs)[CURL_ERROR_SIZE] = malloc(n * sizeof *errbufs);
    CURLcode *rcs = malloc(n * sizeof *rcs);
    bool *added = calloc(n, sizeof *added);
    CURLM *m = remote_pool_take(&c->multis);
    if (!m)
        m = curl->multi_init();
    if (!errbufs || !rcs || !added || !m) {
        for (size_t i = 0; i < n; i++)
            st[i] = set_error(ACACHE_ENOMEM, "%s: out of memory", where);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        st[i] = ACACHE_OK;
        rcs[i] = CURLE_FAILED_INIT; /* until libcurl says how it ended */
        CURL *e = curl_req_start(c, &rqs[i], errbufs[i], where);
        if (!e) {
            st[i] = ACACHE_ENOMEM;
            continue;
        }
        added[i] = curl->multi_add_handle(m, e) == CURLM_OK;
    }
    run_all(curl, m, rqs, n, rcs);
    for (size_t i = 0; i < n; i++) {
        if (!rqs[i].e_ || st[i] == ACACHE_ENOMEM)
            continue;
        if (added[i])
            curl->multi_remove_handle(m, rqs[i].e_);
        st[i] = curl_req_end(c, &rqs[i], rcs[i], errbufs[i], where);
    }
out:
    if (m && !remote_pool_give(&c->multis, m))
        curl->multi_cleanup(m);
    free(added);
    free(rcs);
    free(errbufs);
}
