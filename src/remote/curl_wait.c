/*
 * curl_wait.c - the transfers of a libcurl multi handle run to their end
 * through libcurl's socket interface (see curl_wait.h for why): libcurl's
 * socket and timer callbacks keep a curl_watch, and one poll(2) of its
 * sockets, bounded by CURL_WAIT_POLL_MS and by libcurl's timer, says what
 * to tell curl_multi_socket_action.
 *
 * It must never wait without a bound, never spin (poll only returns early
 * for a socket libcurl asked about, and libcurl is then told of it), never
 * leave a socket libcurl asked about unwatched (one past CURL_WATCH_MAX,
 * which the bound in curl_wait.h rules out, makes libcurl give the multi
 * handle up: curl_watch_run says so, and the caller frees it), and never
 * print.
 */
#include "remote/curl_wait.h"

#include <errno.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl's socket callback: watch s for what (or no longer). */
static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sock_arg)
{
    (void)e;
    (void)sock_arg;
    curl_watch *w = arg;
    size_t i = 0;
    while (i < w->n && w->fds[i].fd != s)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < w->n)
            w->fds[i] = w->fds[--w->n];
        return 0;
    }
    if (i == w->n) {
        if (w->n == CURL_WATCH_MAX)
            return -1; /* libcurl gives the multi handle up */
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
    curl_watch *w = arg;
    w->timer_on = ms >= 0;
    w->due_ms = now_ms() + (ms > 0 ? ms : 0);
    return 0;
}

void curl_watch_attach(const curl_api *curl, CURLM *m, curl_watch *w)
{
    w->n = 0;
    w->timer_on = false;
    curl->multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl->multi_setopt(m, CURLMOPT_SOCKETDATA, w);
    curl->multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
    curl->multi_setopt(m, CURLMOPT_TIMERDATA, w);
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

/* Waits (at most CURL_WAIT_POLL_MS, and not past libcurl's timer) for a
 * watched socket, then tells libcurl what is ready and runs its due
 * timeouts. false: poll itself failed, or libcurl did. */
static bool wait_and_act(const curl_api *curl, CURLM *m, curl_watch *w, int *running)
{
    int64_t left = w->timer_on ? w->due_ms - now_ms() : CURL_WAIT_POLL_MS;
    int ready = 0;
    if (left > 0) {
        ready = poll(w->fds, (nfds_t)w->n,
                     left > CURL_WAIT_POLL_MS ? CURL_WAIT_POLL_MS : (int)left);
        if (ready < 0)
            return errno == EINTR;
    }
    /* on_socket changes w->fds under socket_action: act on a copy. */
    struct pollfd got[CURL_WATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < w->n && ready > 0; i++)
        if (w->fds[i].revents)
            got[n++] = w->fds[i];
    CURLMcode mc = CURLM_OK;
    for (size_t i = 0; i < n && mc == CURLM_OK; i++)
        mc = curl->multi_socket_action(m, got[i].fd, select_bits(&got[i]), running);
    if (mc == CURLM_OK && (ready == 0 || (w->timer_on && w->due_ms <= now_ms())))
        mc = curl->multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, running);
    return mc == CURLM_OK;
}

bool curl_watch_run(const curl_api *curl, CURLM *m, curl_watch *w)
{
    int running = 0;
    /* Adding a transfer set libcurl's timer to now: start what was added. */
    bool ok = curl->multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running) == CURLM_OK;
    while (ok && running > 0)
        ok = wait_and_act(curl, m, w, &running);
    return ok;
}
