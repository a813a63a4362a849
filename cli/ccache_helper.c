/*
 * ccache_helper.c - `acache ccache-helper`, also run as
 * `ccache-storage-<scheme>`: ccache's remote storage helper (ccache 4.13+,
 * doc/remote_storage_helper_spec.md). ccache starts it with its whole
 * configuration in CRSH_* variables; it listens on a Unix socket and
 * serves get, put, remove, stop and info to every ccache process with the
 * same settings, in front of one acache remote store (Redis, HTTP, S3).
 *
 * Concurrency: one thread per connection, plus the main thread accepting.
 * A ccache process opens one connection and sends a few requests in
 * order, each answered in order; each request is a blocking library call
 * bounded by the remote's timeouts. A thread per connection keeps each
 * request a straight line of blocking reads and calls, lets gets of
 * different compiles reach the remote in parallel (the remote keeps a pool
 * of live connections), and confines a slow or misbehaving client to its
 * own thread. An event loop would still need a pool of threads for the
 * blocking remote calls, and a state machine per connection on top; the
 * number of connections is the build's parallelism (make -jN), so threads
 * cost little. Connections are capped at HELPER_MAX_CLIENTS.
 *
 * Puts are answered as soon as the value is in the bounded in-memory
 * upload queue (ccache_queue.h says why memory and not a spool); workers
 * upload in the background. Keys become action ids in the helper's own
 * namespace (HELPER_NAMESPACE), values objects under their SHA-256:
 * every remote value is checked by the library before a client sees it,
 * and records are signed with key-file. A remote that fails repeatedly is
 * switched off by the library; from then on every get is a miss and every
 * put is not stored, answered at once. Before that, from the first failed
 * get on, clients are answered at once while ccache_probe.c asks the remote
 * in the background (a hanging server costs one timeout, not `failures`).
 *
 * Its parts: ccache_config.c (the CRSH_* environment), ccache_endpoint.c
 * (the socket), ccache_conn.c (a connection's requests), ccache_info.c
 * (the info answer), ccache_queue.c (uploads), ccache_probe.c (a failing
 * remote); this file starts them, accepts connections, and stops.
 *
 * Must never: print anything but diagnostics ("acache:" on stderr, which
 * ccache sends to /dev/null) and never a secret; replace at the endpoint
 * anything but a stale socket; let one client's bad request touch another
 * client; allocate for a value more than 64 KiB ahead of the bytes that
 * actually arrived (a length is only a claim until they do); wait on the
 * network outside the library's timeouts.
 */
#include "ccache_endpoint.h"
#include "ccache_server.h"
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int g_signal_fd = -1;

static void on_signal(int sig)
{
    char c = 'T';
    (void)sig;
    if (g_signal_fd >= 0) {
        ssize_t r = write(g_signal_fd, &c, 1);
        (void)r;
    }
}

static void log_line(void *ctx, const char *message)
{
    helper *h = ctx;
    char safe[1200];
    ccache_redact(&h->cfg, message, safe, sizeof safe);
    cli_err("ccache-helper: %s", safe);
}

/* What a connection's thread is started with. */
typedef struct conn_start {
    helper *h;
    int fd;
} conn_start;

static void *conn_main(void *arg)
{
    conn_start *cs = arg;
    helper *h = cs->h;
    ccache_conn_serve(h, cs->fd);
    close(cs->fd);
    free(cs);
    pthread_mutex_lock(&h->mu);
    h->clients--;
    bool last = h->clients == 0;
    pthread_mutex_unlock(&h->mu);
    if (last)
        wake_main(h, 'L');
    return NULL;
}

/* Starts a thread for a new connection (or hangs up when over the cap). */
static void start_conn(helper *h, int fd)
{
    conn_start *c = NULL;
    pthread_t t;
    pthread_attr_t attr;
    pthread_mutex_lock(&h->mu);
    bool room = h->clients < HELPER_MAX_CLIENTS;
    if (room)
        h->clients++;
    pthread_mutex_unlock(&h->mu);
    if (!room || !(c = malloc(sizeof *c)))
        goto fail;
    c->h = h;
    c->fd = fd;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (err == 0)
        return;
fail:
    free(c);
    close(fd);
    if (room) {
        pthread_mutex_lock(&h->mu);
        h->clients--;
        pthread_mutex_unlock(&h->mu);
    }
}

/* ------------------------------------------------------------------ */
/* Main loop, start, end                                                */

/* Milliseconds until the idle deadline, -1 for none (clients connected,
 * or no idle timeout); 0 when it has passed. */
static int idle_wait_ms(helper *h, int64_t *idle_since)
{
    pthread_mutex_lock(&h->mu);
    size_t clients = h->clients;
    pthread_mutex_unlock(&h->mu);
    if (clients > 0 || h->cfg.idle_ns == 0) {
        *idle_since = 0;
        return -1;
    }
    if (*idle_since == 0)
        *idle_since = now_ns();
    int64_t left = *idle_since + h->cfg.idle_ns - now_ns();
    if (left <= 0)
        return 0;
    return left / 1000000 > 3600000 ? 3600000 : (int)(left / 1000000) + 1;
}

/* Accepts until stopped ('S'), signalled ('T') or idle; returns which. */
static char serve(helper *h)
{
    int64_t idle_since = 0;
    for (;;) {
        if (atomic_load(&h->stop))
            return 'S';
        int ms = idle_wait_ms(h, &idle_since);
        if (ms == 0)
            return 'I';
        struct pollfd p[2] = { { h->listen_fd, POLLIN, 0 }, { h->wake[0], POLLIN, 0 } };
        if (poll(p, 2, ms) < 0 && errno != EINTR)
            return 'T';
        if (p[1].revents & POLLIN) {
            char buf[64];
            ssize_t n = read(h->wake[0], buf, sizeof buf);
            if (n > 0 && memchr(buf, 'T', (size_t)n))
                return 'T';
        }
        if (p[0].revents & POLLIN) {
            int fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                start_conn(h, fd);
        }
    }
}

/* Stops listening: the socket goes first, so the next ccache starts a new
 * helper instead of connecting to one on its way out. Connections already
 * queued are still served. */
static void stop_listening(helper *h)
{
    ccache_endpoint_unlink(h->cfg.endpoint, &h->bound);
    int fd;
    fcntl(h->listen_fd, F_SETFL, fcntl(h->listen_fd, F_GETFL) | O_NONBLOCK);
    /* (Accepted sockets do not inherit O_NONBLOCK on Linux.) */
    while ((fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        start_conn(h, fd);
    close(h->listen_fd);
    h->listen_fd = -1;
}

/* After an idle timeout or a signal: waits for the last clients, then the
 * uploads (within flush-timeout). */
static void wait_clients(helper *h)
{
    for (;;) {
        pthread_mutex_lock(&h->mu);
        size_t clients = h->clients;
        pthread_mutex_unlock(&h->mu);
        if (clients == 0 || atomic_load(&h->stop))
            return;
        struct pollfd p = { h->wake[0], POLLIN, 0 };
        if (poll(&p, 1, 1000) > 0) {
            char buf[64];
            ssize_t n = read(h->wake[0], buf, sizeof buf);
            (void)n;
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: acache ccache-helper            (or the acache binary named ccache-storage-SCHEME)\n"
"\n"
"ccache's remote storage helper (ccache 4.13 and later). ccache starts it on\n"
"its own, once per set of remote settings, and talks to it over a Unix\n"
"socket (protocol version 1: get, put, remove, stop, info).\n"
"\n"
"Configuration comes from ccache, in the environment:\n"
"  CRSH_IPC_ENDPOINT   socket path to create (umask 077). A stale socket there\n"
"                      is replaced; a live one, or anything not a socket, is not\n"
"                      (exit 1).\n"
"  CRSH_URL            an acache remote spec: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],\n"
"                      redis+unix:///SOCKET, http://HOST[:PORT]/BASE, https://...,\n"
"                      s3://BUCKET/PREFIX (docs/remotes.md)\n"
"  CRSH_IDLE_TIMEOUT   seconds without clients before it exits (0: never)\n"
"  CRSH_NUM_ATTR, CRSH_ATTR_KEY_<i>, CRSH_ATTR_VALUE_<i>\n"
"                      ccache's @name=value attributes: each one is the remote\n"
"                      option of that name, e.g. @compress=zstd @key-file=PATH\n"
"                      @prefix=P @timeout=500ms @failures=3 @flush-timeout=5s\n"
"                      @upload-queue=N @max-object=SIZE @mode=rw|ro|wo.\n"
"                      An unknown one is refused at start (exit 1, with a message).\n"
"\n"
"In ccache's configuration:\n"
"  remote_storage = redis://cache:6379 helper=/usr/bin/acache-ccache @compress=zstd\n"
"or install links named ccache-storage-redis, ccache-storage-http, ... to the\n"
"acache binary in a libexec_dirs directory, next to ccache, or in PATH\n"
"(cmake -DACACHE_CCACHE_LINKS=ON installs them; docs/ccache.md).\n"
"\n"
"Keys: each ccache key is an acache action id in the helper's own namespace;\n"
"values are objects named by their SHA-256, checked on every fetch (a value\n"
"that fails is a miss, counted as rejected, never served); records are signed\n"
"and checked with @key-file (or $ACACHE_REMOTE_KEY_FILE).\n"
"\n"
"Puts are answered once the value is in a bounded in-memory queue (at most\n"
"upload-queue entries and 256 MiB; more is not stored and counted as dropped)\n"
"and uploaded in the background. A remote that fails `failures` times in a\n"
"row is switched off: every later request is answered at once (miss, not\n"
"stored). After one failed get, gets and removes are answered at once with an\n"
"error while a background probe asks the remote (at most every 200 ms): an\n"
"answer puts it back in use; failed probes count towards `failures`.\n"
"On an idle exit, a stop request or SIGTERM the socket is removed\n"
"first, then queued uploads are flushed for at most flush-timeout.\n"
"\n"
"The info request answers with the acache version and, as diagnostics that\n"
"ccache writes to its log (log_file), each remote's state: active or switched\n"
"off and why, hits, misses, rejected, failures, uploads, dropped, and the\n"
"queue's counters.\n"
"Diagnostics go to stderr (ccache points it at /dev/null).\n");
}

/* Opens the remote; messages never show the URL's password. */
static int open_remote(helper *h)
{
    acache_store *s = NULL;
    char safe[1200];
    acache_status st = acache_open(h->cfg.spec, &s);
    if (st != ACACHE_OK) {
        ccache_redact(&h->cfg, acache_last_error(), safe, sizeof safe);
        cli_err("ccache-helper: %s", safe);
        return -1;
    }
    if (acache_remotes(s, NULL, 0) == 0) {
        ccache_redact(&h->cfg, h->cfg.url, safe, sizeof safe);
        cli_err("ccache-helper: %s is not a remote store (want redis://, redis+unix://, http://, "
                "https://, s3://)", safe);
        acache_close(s);
        return -1;
    }
    h->remote = s;
    return 0;
}

static int start(helper *h)
{
    if (ccache_config_read(&h->cfg) != 0 || open_remote(h) != 0)
        return -1;
    if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        cli_err("ccache-helper: pipe: %s", strerror(errno));
        return -1;
    }
    h->queue = ccq_create(h->remote, h->cfg.queue_entries, HELPER_QUEUE_BYTES, HELPER_UPLOADERS);
    if (!h->queue) {
        cli_err("ccache-helper: cannot start the upload threads");
        return -1;
    }
    if (!(h->probe = ccp_start(h->remote))) {
        cli_err("ccache-helper: cannot start the probe thread");
        return -1;
    }
    if ((h->listen_fd = ccache_endpoint_listen(h->cfg.endpoint, &h->bound)) < 0)
        return -1;
    acache_set_log(log_line, h);
    g_signal_fd = h->wake[1];
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

/* Flushes the uploads within flush-timeout and releases everything. */
static void finish(helper *h)
{
    if (h->queue)
        ccq_flush(h->queue, h->cfg.flush_ns);
    ccq_destroy(h->queue);
    ccp_stop(h->probe);
    acache_set_log(NULL, NULL);
    acache_close(h->remote);
    if (h->wake[0] >= 0) {
        g_signal_fd = -1;
        close(h->wake[0]);
        close(h->wake[1]);
    }
    ccache_config_free(&h->cfg);
    pthread_mutex_destroy(&h->mu);
}

int cmd_ccache_helper(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc > 1) {
        cli_err("ccache-helper: takes no arguments (ccache configures it through CRSH_*; "
                "see --help)");
        return 2;
    }
    helper h = { .listen_fd = -1, .wake = { -1, -1 } };
    pthread_mutex_init(&h.mu, NULL);
    h.started_ns = now_ns();
    if (start(&h) != 0) {
        if (h.listen_fd >= 0)
            close(h.listen_fd);
        finish(&h);
        return 1;
    }
    char why = serve(&h);
    stop_listening(&h);
    if (why != 'I') {
        /* ccache's stop, or a signal: exit now, without waiting for
         * clients; only the queued uploads get their flush-timeout. */
        ccq_flush(h.queue, h.cfg.flush_ns);
        _exit(0);
    }
    wait_clients(&h);
    if (atomic_load(&h.stop)) {
        ccq_flush(h.queue, h.cfg.flush_ns);
        _exit(0);
    }
    finish(&h);
    return 0;
}

