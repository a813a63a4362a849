/*
 * prog.c - any GOCACHEPROG helper as a store ("prog:COMMAND ARGS"):
 * the client side of the protocol, as the go command's ProgCache.
 *
 * open starts the helper with its stdin on a socket (so that a write to a
 * dead helper is EPIPE, never SIGPIPE) and its stdout on a pipe, and waits
 * for its KnownCommands line. Then one reader thread reads every response
 * line and hands it to the caller waiting for that ID; callers write their
 * requests one at a time under a mutex (one writer), so requests from many
 * threads are in flight at once and answers may come in any order.
 *
 * A put's output id and size are only known at commit, but the protocol
 * wants them before the body: the bytes are spooled (the first 256K in
 * memory, the rest in an unlinked temp file) and streamed at commit as
 * base64, 48K at a time (a multiple of 3, so that the pieces join into one
 * base64 string), so memory never holds a large body whole. A get's bytes
 * are read from the helper's DiskPath, whose size (and, with verify-reads,
 * SHA-256) must match the answer.
 *
 * A helper that exits, writes anything that is not a response (or answers
 * an ID nobody asked), stops reading, or does not answer within the
 * timeout is killed and the store is switched off: every pending and later
 * call fails at once with a message saying why. close sends "close", waits
 * for its answer and for the exit, each with a deadline, then kills.
 *
 * This file must never block without a deadline on the helper, never let a
 * helper's answer be served without checking it against the file it names,
 * never read a line longer than PROG_MAX_LINE, and never print.
 */
#include "prog/prog.h"
#include "core/error.h"
#include "os/tempfile.h"
#include "prog/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
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

/* Longest response line read; a response is a few hundred bytes. */
#define PROG_MAX_LINE ((size_t)1 << 20)
/* Bytes of a put kept in memory before the rest goes to a temp file. */
#define PROG_SPOOL_MEM ((size_t)256 << 10)
#define PROG_DEFAULT_TIMEOUT_NS (10LL * 1000000000LL)
/* How long to wait for the status of a helper whose stdout just ended. */
#define PROG_EXIT_GRACE_NS (200LL * 1000000LL)

typedef struct pending {
    struct pending *next;
    int64_t id;
    bool done;
    json_t *resp; /* the answer; NULL when the helper failed first */
    pthread_cond_t cv;
} pending;

typedef struct prog {
    char *cmdline;     /* as given, for messages */
    char **argv;
    char *argbuf;
    pid_t pid;
    int in_fd;         /* our end of the helper's stdin (a socket) */
    int out_fd;        /* our end of the helper's stdout (a pipe) */
    int wake[2];       /* a byte here stops the reader */
    pthread_t reader;
    bool reader_running;
    int64_t timeout_ns, start_timeout_ns, close_timeout_ns;
    bool verify;
    char spool_dir[ACACHE_PATH_MAX];
    bool can_get, can_put, can_close;

    pthread_mutex_t mu;       /* guards everything below up to write_mu */
    pending *pending;
    int64_t next_id;
    bool broken, closing;
    char broken_msg[768];

    pthread_mutex_t write_mu; /* one request on the wire at a time */
    pthread_mutex_t reap_mu;  /* guards pid while it may be reaped */
    bool reaped;
    int wstatus;

    /* Response lines: read by open (handshake), then only by the reader. */
    char *buf;
    size_t start, len, cap;
} prog;

typedef struct prog_writer {
    backend_writer base;
    prog *p;
    acache_id action;
    bool drop;             /* the helper takes no puts */
    unsigned char *mem;    /* the first PROG_SPOOL_MEM bytes */
    size_t memlen;
    int fd;                /* the rest, in an unlinked temp file; -1 if none */
    uint64_t size;
} prog_writer;

static const backend_ops prog_ops;

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
static bool reap(prog *p, int64_t timeout_ns)
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

static void kill_helper(prog *p)
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
static void prog_break(prog *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prog_break(prog *p, const char *fmt, ...)
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
    kill_helper(p);
}

static acache_status broken_error(prog *p)
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

static acache_status spawn_helper(prog *p)
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

static void *reader_main(void *arg)
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
                reap(p, PROG_EXIT_GRACE_NS);
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
static acache_status request(prog *p, const char *cmd, const acache_id *action,
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
        st = broken_error(p);
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
        st = broken_error(p);
out:
    pthread_cond_destroy(&pd.cv);
    return st;
}

static void unmap_release(void *ctx, const void *data, uint64_t size)
{
    (void)ctx;
    munmap((void *)data, (size_t)size);
}

/* Checks the file a hit names and, when asked, maps it into res. */
static acache_status check_disk_path(prog *p, const char *path, unsigned flags,
                                     acache_result *res)
{
    acache_status st = ACACHE_OK;
    void *map = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 && errno == ENOENT)
        return set_error(ACACHE_CORRUPT, "prog store '%s': DiskPath %s does not exist; "
                         "not served", p->cmdline, path);
    if (fd < 0)
        return set_errno_error(errno, "prog store '%s': opening DiskPath %s", p->cmdline, path);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != res->size) {
        st = set_error(ACACHE_CORRUPT, "prog store '%s': DiskPath %s is not a file of Size %" PRIu64
                       " bytes; not served", p->cmdline, path, res->size);
        goto out;
    }
    if (res->size > 0 && (p->verify || (flags & ACACHE_GET_DATA))) {
        map = mmap(NULL, (size_t)res->size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            st = set_errno_error(errno, "prog store '%s': mmap %s", p->cmdline, path);
            goto out;
        }
    }
    if (p->verify) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (!EVP_Digest(map ? map : "", (size_t)res->size, md, &mdlen, EVP_sha256(), NULL) ||
            mdlen != ACACHE_ID_SIZE || memcmp(md, res->output_id.bytes, ACACHE_ID_SIZE) != 0) {
            st = set_error(ACACHE_CORRUPT, "prog store '%s': %s does not hash to its OutputID; "
                           "not served", p->cmdline, path);
            goto out;
        }
    }
    snprintf(res->path, sizeof res->path, "%s", path);
    if (flags & ACACHE_GET_DATA) {
        if (map) {
            res->data = map;
            res->release_fn_ = unmap_release;
            map = NULL;
        } else {
            res->data = "";
        }
    }
out:
    if (map)
        munmap(map, (size_t)res->size);
    close(fd);
    return st;
}

static acache_status prog_get(void *self, const acache_id *action, unsigned flags,
                              acache_result *res)
{
    prog *p = self;
    json_t *resp = NULL;
    if (!p->can_get)
        return ACACHE_MISS;
    acache_status st = request(p, "get", action, NULL, NULL, p->timeout_ns, &resp);
    if (st != ACACHE_OK)
        return st;
    const char *err = gcp_response_err(resp), *path = NULL;
    gcp_entry_status es;
    if (err) {
        st = set_error(ACACHE_EIO, "prog store '%s': get failed: %s", p->cmdline, err);
    } else if (gcp_response_miss(resp)) {
        st = ACACHE_MISS;
    } else if ((es = gcp_parse_entry(resp, res, &path)) == GCP_ENTRY_NO_ID) {
        st = set_error(ACACHE_EIO, "prog store '%s': a hit without a valid OutputID and Size",
                       p->cmdline);
    } else if (es == GCP_ENTRY_NO_PATH) {
        st = set_error(ACACHE_EIO, "prog store '%s': a hit without an absolute DiskPath",
                       p->cmdline);
    } else {
        st = check_disk_path(p, path, flags, res);
    }
    json_decref(resp);
    return st;
}

/* ------------------------------------------------------------------ */
/* Puts                                                                 */

static acache_status prog_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    prog *p = self;
    pthread_mutex_lock(&p->mu);
    bool broken = p->broken;
    pthread_mutex_unlock(&p->mu);
    if (broken)
        return broken_error(p);
    prog_writer *w = calloc(1, sizeof *w);
    if (!w)
        return set_error(ACACHE_ENOMEM, "out of memory");
    w->base.ops = &prog_ops;
    w->p = p;
    w->action = *action;
    w->drop = !p->can_put;
    w->fd = -1;
    *out = &w->base;
    return ACACHE_OK;
}

static int spool_file(prog_writer *w)
{
    return tempfile_anonymous(w->p->spool_dir, "acache-prog-");
}

static acache_status prog_put_write(backend_writer *bw, const void *data, size_t len)
{
    prog_writer *w = (prog_writer *)bw;
    const unsigned char *c = data;
    if (w->drop)
        return ACACHE_OK;
    if (w->memlen < PROG_SPOOL_MEM) {
        if (!w->mem && !(w->mem = malloc(PROG_SPOOL_MEM)))
            return set_error(ACACHE_ENOMEM, "out of memory");
        size_t k = PROG_SPOOL_MEM - w->memlen < len ? PROG_SPOOL_MEM - w->memlen : len;
        memcpy(w->mem + w->memlen, c, k);
        w->memlen += k;
        w->size += k;
        c += k;
        len -= k;
    }
    if (len == 0)
        return ACACHE_OK;
    if (w->fd < 0 && (w->fd = spool_file(w)) < 0)
        return set_errno_error(errno, "prog store: cannot spool a put in %s", w->p->spool_dir);
    while (len > 0) {
        ssize_t n = write(w->fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return set_errno_error(errno, "prog store: spooling a put in %s", w->p->spool_dir);
        c += n;
        len -= (size_t)n;
        w->size += (uint64_t)n;
    }
    return ACACHE_OK;
}

static void prog_put_abort(backend_writer *bw)
{
    prog_writer *w = (prog_writer *)bw;
    if (w->fd >= 0)
        close(w->fd);
    free(w->mem);
    free(w);
}

static acache_status prog_put_commit(backend_writer *bw, const acache_id *output, uint64_t size,
                                     acache_result *res)
{
    prog_writer *w = (prog_writer *)bw;
    prog *p = w->p;
    json_t *resp = NULL;
    acache_status st = ACACHE_OK;
    if (res) {
        res->output_id = *output;
        res->size = size;
        res->time_ns = (int64_t)time(NULL) * 1000000000;
        res->path[0] = '\0';
        res->data = NULL;
    }
    if (w->drop)
        goto out; /* a helper that only gets: dropped, as the protocol allows */
    if (size != w->size) {
        st = set_error(ACACHE_EINVAL, "prog store: put of %" PRIu64 " bytes committed as %" PRIu64,
                       w->size, size);
        goto out;
    }
    st = request(p, "put", &w->action, output, w, p->timeout_ns, &resp);
    if (st != ACACHE_OK)
        goto out;
    const char *err = gcp_response_err(resp);
    if (err) {
        st = set_error(ACACHE_EIO, "prog store '%s': put failed: %s", p->cmdline, err);
        goto out;
    }
    const char *path = gcp_response_path(resp);
    struct stat sb;
    /* The path is handed on only if it holds what was put. */
    if (res && path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size == size)
        snprintf(res->path, sizeof res->path, "%s", path);
out:
    json_decref(resp);
    prog_put_abort(bw);
    return st;
}

static acache_status prog_del(void *self, const acache_id *action)
{
    (void)self;
    (void)action;
    return ACACHE_MISS; /* the protocol has no delete */
}

/* ------------------------------------------------------------------ */
/* Open and close                                                       */

static void prog_free(prog *p)
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

/* Ends the helper: stdin closed, then up to close-timeout for the exit,
 * then SIGKILL. */
static void stop_helper(prog *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_mutex_unlock(&p->mu);
    shutdown(p->in_fd, SHUT_WR);
    if (!reap(p, p->close_timeout_ns)) {
        kill_helper(p);
        reap(p, INT64_MAX / 2);
    }
}

static void prog_close(void *self)
{
    prog *p = self;
    pthread_mutex_lock(&p->mu);
    bool say_close = p->can_close && !p->broken;
    pthread_mutex_unlock(&p->mu);
    if (say_close) {
        json_t *resp = NULL;
        request(p, "close", NULL, NULL, NULL, p->close_timeout_ns, &resp);
        json_decref(resp);
    }
    stop_helper(p);
    prog_free(p);
}

/* Reads the helper's first line: {"ID":0,"KnownCommands":[...]}. */
static acache_status handshake(prog *p)
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
        reap(p, PROG_EXIT_GRACE_NS);
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

/* Splits the command line on spaces and tabs into p->argv. */
static acache_status split_command(prog *p, const char *cmd)
{
    size_t len = strlen(cmd);
    p->argbuf = malloc(len + 1);
    p->argv = calloc(len / 2 + 2, sizeof *p->argv);
    p->cmdline = strdup(cmd);
    if (!p->argbuf || !p->argv || !p->cmdline)
        return set_error(ACACHE_ENOMEM, "out of memory");
    memcpy(p->argbuf, cmd, len + 1);
    size_t argc = 0;
    char *save = NULL;
    for (char *t = strtok_r(p->argbuf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        p->argv[argc++] = t;
    p->argv[argc] = NULL;
    if (argc == 0)
        return set_error(ACACHE_EINVAL, "prog store: no command (want prog:COMMAND ARGS or "
                         "prog:?cmd=COMMAND)");
    return ACACHE_OK;
}

static acache_status parse_options(prog *p, spec *s, const char **cmd)
{
    const char *v;
    acache_status st = ACACHE_OK;
    const char *opt = spec_get(s, "cmd");
    if (opt && s->path[0])
        return set_error(ACACHE_EINVAL, "prog store: give the command after 'prog:' or as "
                         "cmd=, not both");
    *cmd = opt ? opt : s->path;
    p->timeout_ns = p->start_timeout_ns = p->close_timeout_ns = PROG_DEFAULT_TIMEOUT_NS;
    p->verify = true;
    if ((v = spec_get(s, "timeout")) && (st = parse_duration_ns(v, &p->timeout_ns)))
        return st;
    if ((v = spec_get(s, "start-timeout")) && (st = parse_duration_ns(v, &p->start_timeout_ns)))
        return st;
    if ((v = spec_get(s, "close-timeout")) && (st = parse_duration_ns(v, &p->close_timeout_ns)))
        return st;
    if ((v = spec_get(s, "verify-reads")) && (st = parse_bool("verify-reads", v, &p->verify)))
        return st;
    if (p->timeout_ns <= 0 || p->start_timeout_ns <= 0 || p->close_timeout_ns <= 0)
        return set_error(ACACHE_EINVAL, "prog store: timeouts must be more than 0");
    v = spec_get(s, "spool-dir");
    if (!v || !*v)
        v = getenv("TMPDIR");
    if (!v || !*v)
        v = "/tmp";
    if (snprintf(p->spool_dir, sizeof p->spool_dir, "%s", v) >= (int)sizeof p->spool_dir)
        return set_error(ACACHE_EINVAL, "prog store: spool-dir too long");
    /* Unknown options are refused before anything is started. */
    return spec_check_unused(s);
}

acache_status prog_open(spec *s, void **self, const backend_ops **ops)
{
    const char *cmd = NULL;
    acache_status st = ACACHE_OK;
    prog *p = calloc(1, sizeof *p);
    if (!p)
        return set_error(ACACHE_ENOMEM, "out of memory");
    p->in_fd = p->out_fd = p->wake[0] = p->wake[1] = -1;
    p->next_id = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->write_mu, NULL);
    pthread_mutex_init(&p->reap_mu, NULL);
    p->reaped = true; /* nothing to reap until spawned */
    if ((st = parse_options(p, s, &cmd)) != ACACHE_OK || (st = split_command(p, cmd)) != ACACHE_OK)
        goto fail;
    p->cap = 64 << 10;
    if (!(p->buf = malloc(p->cap))) {
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto fail;
    }
    if (pipe2(p->wake, O_CLOEXEC) != 0) {
        st = set_errno_error(errno, "prog store: pipe");
        goto fail;
    }
    if ((st = spawn_helper(p)) != ACACHE_OK)
        goto fail;
    p->reaped = false;
    if ((st = handshake(p)) != ACACHE_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", acache_last_error());
        kill_helper(p);
        reap(p, INT64_MAX / 2);
        st = set_error(st, "%s", msg);
        goto fail;
    }
    if (pthread_create(&p->reader, NULL, reader_main, p) != 0) {
        st = set_error(ACACHE_ENOMEM, "prog store '%s': cannot start the reader thread",
                       p->cmdline);
        stop_helper(p);
        goto fail;
    }
    p->reader_running = true;
    *self = p;
    *ops = &prog_ops;
    return ACACHE_OK;
fail:
    prog_free(p);
    return st;
}

static const backend_ops prog_ops = {
    .name = "prog",
    .close = prog_close,
    .get = prog_get,
    .put_begin = prog_put_begin,
    .put_write = prog_put_write,
    .put_commit = prog_put_commit,
    .put_abort = prog_put_abort,
    .del = prog_del,
    .local_dir = NULL,
};
