/*
 * helper.c - the `prog:` store's helper process and its reader: the
 * client side of the GOCACHEPROG conversation, as the go command's
 * ProgCache holds it (the lines themselves are wire.h's).
 *
 * prog_spawn starts the helper with its stdin on a socket (so that a write
 * to a dead helper is EPIPE, never SIGPIPE) and its stdout on a pipe;
 * prog_handshake waits for its KnownCommands line. Then one reader thread
 * reads every response line and hands it to the caller waiting for that
 * ID; callers write their requests one at a time under a mutex (one
 * writer), so requests from many threads are in flight at once and answers
 * may come in any order. A put's body is streamed from its spool as base64,
 * GCP_BODY_CHUNK at a time, so memory never holds a large body whole.
 *
 * A helper that exits, writes anything that is not a response (or answers
 * an ID nobody asked), stops reading, or does not answer within the
 * timeout is killed and the store is switched off: every pending and later
 * call fails at once with a message saying why.
 *
 * This file must never block without a deadline on the helper (but for
 * the reader, which a byte on p->wake stops), never read a line longer
 * than PROG_MAX_LINE, never answer a caller with another's response, and
 * never print.
 */
#include "core/error.h"
#include "prog/prog_helper.h"
#include "prog/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int ms_left(int64_t deadline)
{
    int64_t left = deadline - mono_ns();
    if (left <= 0)
        return 0;
    left = (left + 999999) / 1000000;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static void format_duration(int64_t ns, char *out, size_t size)
{
    if (ns % 1000000000 == 0)
        snprintf(out, size, "%llds", (long long)(ns / 1000000000));
    else
        snprintf(out, size, "%lldms", (long long)(ns / 1000000));
}

/* ------------------------------------------------------------------ */
/* The helper process                                                   */

/* Waits up to timeout_ns for the helper to exit. True once reaped. */
bool prog_reap(prog *p, int64_t timeout_ns)
{
    int64_t deadline = mono_ns() + timeout_ns;
    int64_t pause = 1000000;
    pthread_mutex_lock(&p->reap_mu);
    while (!p->reaped) {
        pid_t r = waitpid(p->pid, &p->wstatus, WNOHANG);
        if (r == p->pid || (r < 0 && errno != EINTR)) {
            if (r < 0)
                p->wstatus = -1; /* reaped elsewhere (SIGCHLD ignored) */
            p->reaped = true;
            break;
        }
        if (mono_ns() >= deadline)
            break;
        struct timespec ts = { 0, (long)pause };
        nanosleep(&ts, NULL);
        if (pause < 20000000)
            pause *= 2;
    }
    bool done = p->reaped;
    pthread_mutex_unlock(&p->reap_mu);
    return done;
}

void prog_kill(prog *p)
{
    pthread_mutex_lock(&p->reap_mu);
    if (!p->reaped)
        kill(p->pid, SIGKILL); /* not reaped: the pid is still ours */
    pthread_mutex_unlock(&p->reap_mu);
}

/* " (exit status N)" or " (killed by signal N)" once reaped, else "". */
static void exit_text(prog *p, char *out, size_t size)
{
    out[0] = '\0';
    pthread_mutex_lock(&p->reap_mu);
    if (p->reaped && p->wstatus != -1) {
        if (WIFEXITED(p->wstatus))
            snprintf(out, size, " (exit status %d)", WEXITSTATUS(p->wstatus));
        else if (WIFSIGNALED(p->wstatus))
            snprintf(out, size, " (killed by signal %d)", WTERMSIG(p->wstatus));
    }
    pthread_mutex_unlock(&p->reap_mu);
}

/*
 * Switches the store off: records why (the first reason wins), fails every
 * pending request and kills the helper. Must be called without p->mu.
 */
void prog_break(prog *p, const char *fmt, ...)
{
    pthread_mutex_lock(&p->mu);
    if (!p->broken) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->broken_msg, sizeof p->broken_msg, fmt, ap);
        va_end(ap);
        p->broken = true;
        for (pending *pd = p->pending; pd; pd = pd->next) {
            pd->done = true;
            pthread_cond_signal(&pd->cv);
        }
    }
    pthread_mutex_unlock(&p->mu);
    prog_kill(p);
}

acache_status prog_broken_error(prog *p)
{
    pthread_mutex_lock(&p->mu);
    acache_status st = set_error(ACACHE_EIO, "prog store '%s': %s", p->cmdline, p->broken_msg);
    pthread_mutex_unlock(&p->mu);
    return st;
}

/* Moves fd to 3 or above, so that dup2 onto 0 or 1 never meets itself. */
static int fd_above_stdio(int fd)
{
    if (fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return moved;
}

acache_status prog_spawn(prog *p)
{
    int in_sv[2] = { -1, -1 }, out_pp[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dflt;
    acache_status st = ACACHE_OK;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sv) != 0 ||
        pipe2(out_pp, O_CLOEXEC) != 0) {
        st = set_errno_error(errno, "prog store '%s': cannot make pipes", p->cmdline);
        goto out;
    }
    in_sv[1] = fd_above_stdio(in_sv[1]);
    out_pp[1] = fd_above_stdio(out_pp[1]);
    if (in_sv[1] < 0 || out_pp[1] < 0) {
        st = set_errno_error(errno, "prog store '%s': cannot make pipes", p->cmdline);
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_sv[1], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_pp[1], STDOUT_FILENO);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int err = posix_spawnp(&p->pid, p->argv[0], &fa, &attr, p->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err != 0) {
        st = set_errno_error(err, "prog store: cannot start helper '%s'", p->cmdline);
        goto out;
    }
    p->in_fd = in_sv[0];
    p->out_fd = out_pp[0];
    in_sv[0] = out_pp[0] = -1;
    fcntl(p->in_fd, F_SETFL, fcntl(p->in_fd, F_GETFL) | O_NONBLOCK);
out:
    for (int i = 0; i < 2; i++) {
        if (in_sv[i] >= 0)
            close(in_sv[i]);
        if (out_pp[i] >= 0)
            close(out_pp[i]);
    }
    return st;
}

/* ------------------------------------------------------------------ */
/* Reading response lines                                               */

typedef enum line_status {
    LINE_OK,
    LINE_EOF,
    LINE_TIMEOUT,
    LINE_STOPPED,
    LINE_TOO_LONG,
    LINE_ERROR, /* errno in *err */
} line_status;

/* Reads the next line (NUL-terminated in place, valid until the next call)
 * by deadline (< 0: none), or until a byte arrives on p->wake. */
static line_status read_line(prog *p, int64_t deadline, char **line, size_t *n, int *err)
{
    for (;;) {
        char *nl = memchr(p->buf + p->start, '\n', p->len - p->start);
        if (nl) {
            *line = p->buf + p->start;
            *n = (size_t)(nl - *line);
            *nl = '\0';
            p->start = (size_t)(nl - p->buf) + 1;
            return LINE_OK;
        }
        if (p->start > 0) {
            memmove(p->buf, p->buf + p->start, p->len - p->start);
            p->len -= p->start;
            p->start = 0;
        }
        if (p->len >= PROG_MAX_LINE)
            return LINE_TOO_LONG;
        if (p->cap - p->len < 4096) {
            size_t cap = p->cap * 2 > PROG_MAX_LINE + 1 ? PROG_MAX_LINE + 1 : p->cap * 2;
            char *grown = realloc(p->buf, cap);
            if (!grown) {
                *err = ENOMEM;
                return LINE_ERROR;
            }
            p->buf = grown;
            p->cap = cap;
        }
        struct pollfd fds[2] = { { p->out_fd, POLLIN, 0 }, { p->wake[0], POLLIN, 0 } };
        int r = poll(fds, 2, deadline < 0 ? -1 : ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *err = errno;
            return LINE_ERROR;
        }
        if (r == 0)
            return LINE_TIMEOUT;
        if (fds[1].revents)
            return LINE_STOPPED;
        ssize_t got = read(p->out_fd, p->buf + p->len, p->cap - p->len);
        if (got == 0)
            return LINE_EOF;
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            *err = errno;
            return LINE_ERROR;
        }
        p->len += (size_t)got;
    }
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* The start of a line, printable bytes only, for a message. */
static void show_line(const char *line, size_t n, char out[72])
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < 64; i++) {
        unsigned char c = (unsigned char)line[i];
        out[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > 64)
        memcpy(out + k, "...", 3), k += 3;
    out[k] = '\0';
}

void *prog_reader_main(void *arg)
{
    prog *p = arg;
    for (;;) {
        char *line = NULL, shown[72], status[64];
        size_t n = 0;
        int err = 0;
        line_status ls = read_line(p, -1, &line, &n, &err);
        if (ls == LINE_STOPPED)
            return NULL;
        if (ls == LINE_EOF) {
            pthread_mutex_lock(&p->mu);
            bool closing = p->closing;
            pthread_mutex_unlock(&p->mu);
            if (!closing) {
                prog_reap(p, PROG_EXIT_GRACE_NS);
                exit_text(p, status, sizeof status);
                prog_break(p, "the helper exited before close%s", status);
            }
            return NULL;
        }
        if (ls == LINE_TOO_LONG) {
            prog_break(p, "the helper wrote a line longer than %zu bytes", PROG_MAX_LINE);
            return NULL;
        }
        if (ls != LINE_OK) {
            prog_break(p, "reading the helper's stdout: %s", strerror(err));
            return NULL;
        }
        if (blank(line, n))
            continue;
        int64_t id = 0;
        json_t *resp = gcp_parse_response(line, n, &id);
        if (!resp) {
            show_line(line, n, shown);
            prog_break(p, "the helper wrote a line that is not a response: '%s'", shown);
            return NULL;
        }
        pthread_mutex_lock(&p->mu);
        pending *pd = p->pending;
        while (pd && (pd->id != id || pd->done))
            pd = pd->next;
        if (pd) {
            pd->resp = resp;
            pd->done = true;
            pthread_cond_signal(&pd->cv);
        }
        pthread_mutex_unlock(&p->mu);
        if (!pd) {
            json_decref(resp);
            prog_break(p, "the helper answered request %" PRId64 ", which nobody is waiting for",
                       id);
            return NULL;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */

/* Writes everything, waiting at most p->timeout_ns for each bit of room.
 * Returns 0 or an errno value (ETIMEDOUT when the helper stopped reading). */
static int send_all(prog *p, const void *data, size_t len)
{
    const char *c = data;
    while (len > 0) {
        ssize_t n = send(p->in_fd, c, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = { p->in_fd, POLLOUT, 0 };
            int r = poll(&pf, 1, ms_left(mono_ns() + p->timeout_ns));
            if (r == 0)
                return ETIMEDOUT;
            if (r < 0 && errno != EINTR)
                return errno;
            continue;
        }
        return n < 0 ? errno : EIO;
    }
    return 0;
}

/* Reads up to n spooled bytes from offset off. */
static size_t spool_read(prog_writer *w, uint64_t off, unsigned char *buf, size_t n, int *err)
{
    size_t got = 0;
    if (off < w->memlen) {
        size_t k = w->memlen - (size_t)off < n ? w->memlen - (size_t)off : n;
        memcpy(buf, w->mem + off, k);
        got = k;
    }
    while (got < n && off + got < w->size) {
        ssize_t r = pread(w->fd, buf + got, n - got, (off_t)(off + got - w->memlen));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *err = r < 0 ? errno : EIO;
            break;
        }
        got += (size_t)r;
    }
    return got;
}

/* The body line (wire.h): a JSON string of standard base64, streamed. */
static int send_body(prog *p, prog_writer *w)
{
    unsigned char *in = malloc(GCP_BODY_CHUNK);
    char *out = malloc(GCP_BODY_ENCODED_SIZE(GCP_BODY_CHUNK));
    int err = in && out ? send_all(p, GCP_BODY_OPEN, strlen(GCP_BODY_OPEN)) : ENOMEM;
    for (uint64_t off = 0; !err && off < w->size;) {
        size_t want = w->size - off < GCP_BODY_CHUNK ? (size_t)(w->size - off) : GCP_BODY_CHUNK;
        size_t got = spool_read(w, off, in, want, &err);
        if (err)
            break;
        err = send_all(p, out, gcp_body_encode(in, got, out));
        off += got;
    }
    if (!err)
        err = send_all(p, GCP_BODY_CLOSE, strlen(GCP_BODY_CLOSE));
    free(in);
    free(out);
    return err;
}

static void unlink_pending(prog *p, pending *pd)
{
    for (pending **q = &p->pending; *q; q = &(*q)->next) {
        if (*q == pd) {
            *q = pd->next;
            return;
        }
    }
}

/*
 * Sends one request (with w's body for a put) and waits up to timeout_ns
 * for its answer, which *resp receives. A timeout, or a helper that cannot
 * be written to, switches the store off.
 */
acache_status prog_request(prog *p, const char *cmd, const acache_id *action,
                           const acache_id *output, prog_writer *w, int64_t timeout_ns,
                           json_t **resp)
{
    pending pd = { .next = NULL };
    pthread_condattr_t ca;
    char line[GCP_REQUEST_SIZE], took[32];
    acache_status st = ACACHE_OK;
    *resp = NULL;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pd.cv, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&p->mu);
    if (p->broken) {
        pthread_mutex_unlock(&p->mu);
        st = prog_broken_error(p);
        goto out;
    }
    pd.id = p->next_id++;
    pd.next = p->pending;
    p->pending = &pd;
    pthread_mutex_unlock(&p->mu);

    size_t n = gcp_format_request(line, pd.id, cmd, action, output, w ? w->size : 0);

    pthread_mutex_lock(&p->write_mu);
    int err = send_all(p, line, n);
    if (!err && w && w->size > 0)
        err = send_body(p, w);
    pthread_mutex_unlock(&p->write_mu);
    if (err) {
        format_duration(p->timeout_ns, took, sizeof took);
        if (err == ETIMEDOUT)
            prog_break(p, "the helper stopped reading its stdin for %s (%s %" PRId64 ")", took,
                       cmd, pd.id);
        else
            prog_break(p, "writing to the helper: %s", strerror(err));
    }

    int64_t deadline = mono_ns() + timeout_ns;
    struct timespec ts;
    pthread_mutex_lock(&p->mu);
    while (!pd.done) {
        int64_t d = deadline;
        ts.tv_sec = (time_t)(d / 1000000000);
        ts.tv_nsec = (long)(d % 1000000000);
        if (pthread_cond_timedwait(&pd.cv, &p->mu, &ts) == ETIMEDOUT && !pd.done) {
            pthread_mutex_unlock(&p->mu);
            format_duration(timeout_ns, took, sizeof took);
            prog_break(p, "no answer to %s %" PRId64 " within %s", cmd, pd.id, took);
            pthread_mutex_lock(&p->mu);
        }
    }
    unlink_pending(p, &pd);
    *resp = pd.resp;
    pthread_mutex_unlock(&p->mu);
    if (!*resp)
        st = prog_broken_error(p);
out:
    pthread_cond_destroy(&pd.cv);
    return st;
}

/* ------------------------------------------------------------------ */
/* Start and end                                                        */

/* Reads the helper's first line: {"ID":0,"KnownCommands":[...]}. */
acache_status prog_handshake(prog *p)
{
    int64_t deadline = mono_ns() + p->start_timeout_ns;
    char *line = NULL, shown[72], took[32], status[64];
    size_t n = 0;
    int err = 0;
    line_status ls;
    do
        ls = read_line(p, deadline, &line, &n, &err);
    while (ls == LINE_OK && blank(line, n));
    switch (ls) {
    case LINE_OK:
        break;
    case LINE_EOF:
        prog_reap(p, PROG_EXIT_GRACE_NS);
        exit_text(p, status, sizeof status);
        return set_error(ACACHE_EIO, "prog store '%s': the helper exited before saying which "
                         "commands it knows%s", p->cmdline, status);
    case LINE_TIMEOUT:
        format_duration(p->start_timeout_ns, took, sizeof took);
        return set_error(ACACHE_EIO, "prog store '%s': the helper said nothing within %s "
                         "(start-timeout)", p->cmdline, took);
    case LINE_TOO_LONG:
        return set_error(ACACHE_EIO, "prog store '%s': the helper's first line is longer "
                         "than %zu bytes", p->cmdline, PROG_MAX_LINE);
    default:
        return set_errno_error(err, "prog store '%s': reading the helper's stdout", p->cmdline);
    }
    unsigned known = 0;
    if (!gcp_parse_handshake(line, n, &known)) {
        show_line(line, n, shown);
        return set_error(ACACHE_EIO, "prog store '%s': the helper's first line is not "
                         "{\"ID\":0,\"KnownCommands\":[...]}: '%s'", p->cmdline, shown);
    }
    p->can_get = known & GCP_KNOWS_GET;
    p->can_put = known & GCP_KNOWS_PUT;
    p->can_close = known & GCP_KNOWS_CLOSE;
    if (!p->can_get && !p->can_put)
        return set_error(ACACHE_EIO, "prog store '%s': the helper knows neither get nor put",
                         p->cmdline);
    return ACACHE_OK;
}

/* Ends the helper: stdin closed, then up to close-timeout for the exit,
 * then SIGKILL. */
void prog_stop(prog *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_mutex_unlock(&p->mu);
    shutdown(p->in_fd, SHUT_WR);
    if (!prog_reap(p, p->close_timeout_ns)) {
        prog_kill(p);
        prog_reap(p, INT64_MAX / 2);
    }
}

void prog_free(prog *p)
{
    if (p->reader_running) {
        ssize_t w;
        do
            w = write(p->wake[1], "x", 1);
        while (w < 0 && errno == EINTR);
        pthread_join(p->reader, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    if (p->in_fd >= 0)
        close(p->in_fd);
    if (p->out_fd >= 0)
        close(p->out_fd);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->write_mu);
    pthread_mutex_destroy(&p->reap_mu);
    free(p->buf);
    free(p->argv);
    free(p->argbuf);
    free(p->cmdline);
    free(p);
}

