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
 * The waiting is ours, through libcurl's socket interface
 * (curl_multi_socket_action): libcurl says which sockets it wants watched
 * and when its next timeout is due, one poll(2) watches them all, and
 * libcurl is told which socket is ready. curl_multi_perform instead runs
 * every transfer each time any socket is ready, each checking its own
 * socket with a poll(2) of its own first, and curl_multi_poll watches a
 * wake-up socket beside them: three polls a request or more, where this
 * needs about one (bench/README.md: bench_fetch counts).
 *
 * Rules: never wait without a bound (every request carries its own
 * timeouts, as with curl_perform, and libcurl ends it when they pass;
 * one poll waits at most POLL_MS); answer every request exactly once;
 * never print.
 */
#include "core/error.h"
#include "remote/curl_request.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* The longest single wait for activity; the requests' own timeouts end
 * them, this only bounds one poll. */
#define POLL_MS 1000
/* The receive buffer of a set's handles: a batch holds records and objects
 * of 256 KiB or less (fetch_many.c), not curl_request.c's large bodies. */
#define SET_RECV_BUFFER (64L << 10)

/* Sockets a set may watch at once: a connection's, and while one is made
 * a second address's, for each request, and a spare. */
#define WATCH_MAX (3 * REMOTE_BATCH_MAX)

/* What libcurl asked a set to watch (on_socket) and when its timer is due
 * (on_timer): libcurl's view, kept across batches with the multi handle. */
typedef struct watch {
    struct pollfd fds[WATCH_MAX];
    size_t n;
    bool timer_on;
    int64_t due_ms; /* on the monotonic clock */
} watch;

/* A multi handle and the easy handles it has run, kept together. */
typedef struct multi_set {
    CURLM *m;
    watch w;
    CURL *e[REMOTE_BATCH_MAX];
    size_t n;
} multi_set;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl's socket callback: watch s for what (or no longer). A socket
 * past WATCH_MAX fails its transfer (libcurl ends it) rather than go
 * unwatched. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sock_arg)
{
    (void)e;
    (void)sock_arg;
    watch *w = arg;
    size_t i = 0;
    while (i < w->n && w->fds[i].fd != s)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < w->n)
            w->fds[i] = w->fds[--w->n];
        return 0;
    }
    if (i == w->n) {
        if (w->n == WATCH_MAX)
            return -1;
        w->fds[w->n++].fd = s;
    }
    w->fds[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                               ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    w->fds[i].revents = 0;
    return 0;
}

/* libcurl's timer callback: run its timeouts in ms (-1: no timer). */
static int on_timer(CURLM *m, long ms, void *arg)
{
    (void)m;
    watch *w = arg;
    w->timer_on = ms >= 0;
    w->due_ms = now_ms() + (ms > 0 ? ms : 0);
    return 0;
}

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
    if (set) {
        c->curl->multi_setopt(set->m, CURLMOPT_SOCKETFUNCTION, on_socket);
        c->curl->multi_setopt(set->m, CURLMOPT_SOCKETDATA, &set->w);
        c->curl->multi_setopt(set->m, CURLMOPT_TIMERFUNCTION, on_timer);
        c->curl->multi_setopt(set->m, CURLMOPT_TIMERDATA, &set->w);
    }
    return set;
}

/* Starts rqs[i] on the set's i-th easy handle (made if new). */
static CURL *set_start(curl_client *c, multi_set *set, curl_req *rq, size_t i, char *errbuf,
                       const char *where)
{
    if (i == set->n) {
        if (!(set->e[i] = c->curl->easy_init()))
            return NULL;
        set->n++;
    }
    return curl_req_start(c, rq, set->e[i], SET_RECV_BUFFER, errbuf, where);
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

/* What poll said of a watched socket, in libcurl's terms: an error or a
 * hang-up is for libcurl's own recv or send to find and name. */
static int select_bits(const struct pollfd *p)
{
    int bits = 0;
    if ((p->events & POLLIN) && (p->revents & (POLLIN | POLLERR | POLLHUP)))
        bits |= CURL_CSELECT_IN;
    if ((p->events & POLLOUT) && (p->revents & (POLLOUT | POLLERR | POLLHUP)))
        bits |= CURL_CSELECT_OUT;
    if (p->revents & POLLNVAL)
        bits |= CURL_CSELECT_ERR;
    return bits;
}

/* Waits (at most POLL_MS, and not past libcurl's timer) for a watched
 * socket, then tells libcurl what is ready and runs its due timeouts.
 * false: poll itself failed, or libcurl did. */
static bool wait_and_act(const curl_api *curl, multi_set *set, int *running)
{
    watch *w = &set->w;
    int64_t left = w->timer_on ? w->due_ms - now_ms() : POLL_MS;
    int ready = 0;
    if (left > 0) {
        ready = poll(w->fds, (nfds_t)w->n, left > POLL_MS ? POLL_MS : (int)left);
        if (ready < 0)
            return errno == EINTR;
    }
    /* on_socket changes w->fds under socket_action: act on a copy. */
    struct pollfd got[WATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < w->n && ready > 0; i++)
        if (w->fds[i].revents)
            got[n++] = w->fds[i];
    CURLMcode mc = CURLM_OK;
    for (size_t i = 0; i < n && mc == CURLM_OK; i++)
        mc = curl->multi_socket_action(set->m, got[i].fd, select_bits(&got[i]), running);
    if (mc == CURLM_OK && (ready == 0 || (w->timer_on && w->due_ms <= now_ms())))
        mc = curl->multi_socket_action(set->m, CURL_SOCKET_TIMEOUT, 0, running);
    return mc == CURLM_OK;
}

/* Runs the added requests until none is left, noting how each ended. */
static void run_all(const curl_api *curl, multi_set *set, curl_req *rqs, size_t n,
                    CURLcode *rcs)
{
    int running = 0;
    /* Adding the handles set libcurl's timer to now: start them. */
    bool ok = curl->multi_socket_action(set->m, CURL_SOCKET_TIMEOUT, 0, &running) == CURLM_OK;
    collect(curl, set->m, rqs, n, rcs);
    while (ok && running > 0) {
        ok = wait_and_act(curl, set, &running);
        collect(curl, set->m, rqs, n, rcs);
    }
}

void curl_perform_many(curl_client *c, curl_req *rqs, size_t n, const char *where,
                       acache_status *st)
{
    const curl_api *curl = c->curl;
    char (*errbufs)[CURL_ERROR_SIZE] = malloc(n * sizeof *errbufs);
    CURLcode rcs[REMOTE_BATCH_MAX];
    bool added[REMOTE_BATCH_MAX] = { false };
    multi_set *set = n <= REMOTE_BATCH_MAX ? set_take(c) : NULL;
    if (!errbufs || !set) {
        for (size_t i = 0; i < n; i++)
            st[i] = set_error(ACACHE_ENOMEM, "%s: out of memory", where);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        st[i] = ACACHE_OK;
        rcs[i] = CURLE_FAILED_INIT; /* until libcurl says how it ended */
        rqs[i].e_ = set_start(c, set, &rqs[i], i, errbufs[i], where);
        if (!rqs[i].e_)
            st[i] = set_error(ACACHE_ENOMEM, "%s: cannot make a curl handle", where);
        else
            added[i] = curl->multi_add_handle(set->m, rqs[i].e_) == CURLM_OK;
    }
    run_all(curl, set, rqs, n, rcs);
    for (size_t i = 0; i < n; i++) {
        if (!rqs[i].e_)
            continue;
        if (added[i])
            curl->multi_remove_handle(set->m, rqs[i].e_);
        st[i] = curl_req_end(c, &rqs[i], rcs[i], errbufs[i], where, true);
    }
out:
    if (set && !remote_pool_give(&c->multis, set))
        set_free(curl, set);
    free(errbufs);
}
