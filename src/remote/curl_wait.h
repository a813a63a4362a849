/*
 * curl_wait.h - running the transfers added to a libcurl multi handle to
 * their end through libcurl's socket interface (curl_multi_socket_action):
 * libcurl says which sockets it wants watched and when its next timeout is
 * due, one poll(2) watches them all, and libcurl is told which socket is
 * ready. Both a single request (curl_request.c) and a batch (curl_multi.c)
 * wait this way.
 *
 * Why not curl_easy_perform or curl_multi_perform + curl_multi_poll:
 * libcurl 7.88 then runs every transfer each time, each checking its own
 * socket with a poll(2) of its own first, and curl_multi_poll watches a
 * wake-up socket beside them: a poll or two a request more than this.
 *
 * Rules: never wait without a bound (one poll waits at most
 * CURL_WAIT_POLL_MS and never past libcurl's timer, which ends each
 * transfer at its own timeouts); never print.
 */
#ifndef ACACHE_CURL_WAIT_H
#define ACACHE_CURL_WAIT_H

#include "remote/curl_load.h"
#include "remote/remote.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/* The longest single wait; the transfers' own timeouts end them. */
#define CURL_WAIT_POLL_MS 1000
/* Sockets watched at once: a connection's, and while one is made a second
 * address's and a name lookup's, for each transfer of a batch. */
#define CURL_WATCH_MAX (3 * REMOTE_BATCH_MAX)

/* What libcurl asked to be watched and when its timer is due: its view,
 * kept with the multi handle for as long as it lives. */
typedef struct curl_watch {
    struct pollfd fds[CURL_WATCH_MAX];
    size_t n;
    bool timer_on;
    int64_t due_ms; /* on the monotonic clock */
} curl_watch;

/* Makes m tell w its sockets and timer; w must live as long as m. */
void curl_watch_attach(const curl_api *curl, CURLM *m, curl_watch *w);

/* Runs the transfers added to m until none is left: true; false when poll
 * or libcurl failed (those still running then never finished, and m may
 * be unusable: free it rather than keep it). How each finished one ended
 * is in libcurl's messages (curl_multi_info_read). */
bool curl_watch_run(const curl_api *curl, CURLM *m, curl_watch *w);

#endif
