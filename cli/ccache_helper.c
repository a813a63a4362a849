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
 * Must never: print anything but diagnostics ("acache:" on stderr, which
 * ccache sends to /dev/null) and never a secret; replace at the endpoint
 * anything but a stale socket; let one client's bad request touch another
 * client; allocate for a value more than 64 KiB ahead of the bytes that
 * actually arrived (a length is only a claim until they do); wait on the
 * network outside the library's timeouts.
 */
#include "ccache_probe.h"
#include "ccache_proto.h"
#include "ccache_queue.h"
#include "commands.h"

#include "acache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The namespace of ccache's keys: never an id another producer (the go
 * command, a runtime) uses on a shared remote. */
#define HELPER_NAMESPACE "acache ccache-storage-helper v1"
#define HELPER_MAX_CLIENTS 1024
/* A request started must be complete within this; between requests a
 * client may wait as long as it likes (ccache compiles meanwhile). */
#define HELPER_REQUEST_TIMEOUT_MS 30000
/* Upload queue: bytes held (the entry bound is the remote's upload-queue). */
#define HELPER_QUEUE_BYTES ((uint64_t)256 << 20)
#define HELPER_UPLOADERS 4
#define HELPER_READ_BUF ((size_t)64 << 10)
/* The answer to a get or remove while the remote is failing (its last
 * request failed and no probe has had an answer since). */
#define HELPER_FAILING_MSG "remote failed its last request: not asked until a background probe " \
                           "gets an answer"

/* ------------------------------------------------------------------ */
/* Configuration from the environment                                  */

typedef struct helper_config {
    const char *endpoint;   /* CRSH_IPC_ENDPOINT */
    const char *url;        /* CRSH_URL */
    char *spec;             /* the URL with the attributes as options */
    int64_t idle_ns;        /* CRSH_IDLE_TIMEOUT; 0: never */
    int64_t flush_ns;       /* flush-timeout (5s) */
    uint64_t max_object;    /* max-object (512M) */
    size_t queue_entries;   /* upload-queue (4096) */
    char password[256];     /* of the URL, to keep out of every message */
} helper_config;

/* Copies msg into out with every occurrence of the URL's password as ***. */
static void redact(const helper_config *c, const char *msg, char *out, size_t size)
{
    size_t plen = strlen(c->password), o = 0;
    while (*msg && o + 1 < size) {
        if (plen > 0 && !strncmp(msg, c->password, plen)) {
            o += (size_t)snprintf(out + o, size - o, "***");
            msg += plen;
            continue;
        }
        out[o++] = *msg++;
    }
    out[o < size ? o : size - 1] = '\0';
}

/* The password of scheme://user:password@host/..., if any. */
static void find_password(const char *url, char *out, size_t size)
{
    out[0] = '\0';
    const char *host = strstr(url, "://");
    if (!host)
        return;
    host += 3;
    size_t hlen = strcspn(host, "/?");
    const char *at = NULL;
    for (const char *p = host; p < host + hlen; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(host, ':', (size_t)(at - host)) : NULL;
    if (colon && at > colon + 1)
        snprintf(out, size, "%.*s", (int)(at - colon - 1), colon + 1);
}

static bool attr_name_ok(const char *k)
{
    if (!*k)
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '-' || *k == '_'))
            return false;
    return true;
}

/* Reads the helper's own uses of three remote options (the remote parses
 * and checks them too). */
static int take_attr(helper_config *c, const char *k, const char *v)
{
    int64_t ns;
    uint64_t n;
    if (!strcmp(k, "flush-timeout")) {
        if (acache_parse_duration(v, &ns) != ACACHE_OK)
            return -1;
        c->flush_ns = ns;
    } else if (!strcmp(k, "max-object")) {
        if (acache_parse_size(v, &n) != ACACHE_OK || n == 0)
            return -1;
        c->max_object = n;
    } else if (!strcmp(k, "upload-queue")) {
        char *end;
        unsigned long long q = strtoull(v, &end, 10);
        if (!*v || *end || q == 0 || q > 1000000)
            return -1;
        c->queue_entries = (size_t)q;
    }
    return 0;
}

/* Appends "?k=v" or "&k=v" to *spec for one CRSH_ATTR_* pair. */
static int append_attr(helper_config *c, char **spec, unsigned i)
{
    char kname[64], vname[64], *grown = NULL;
    snprintf(kname, sizeof kname, "CRSH_ATTR_KEY_%u", i);
    snprintf(vname, sizeof vname, "CRSH_ATTR_VALUE_%u", i);
    const char *k = getenv(kname), *v = getenv(vname);
    if (!k || !v) {
        cli_err("ccache-helper: %s or %s is not set (CRSH_NUM_ATTR says %u)", kname, vname, i + 1);
        return -1;
    }
    if (!attr_name_ok(k) || strpbrk(v, "&?#")) {
        cli_err("ccache-helper: attribute @%s: want @name=value with a name of [a-z0-9-] "
                "and a value without '&', '?' or '#'", k);
        return -1;
    }
    if (take_attr(c, k, v) != 0) {
        cli_err("ccache-helper: attribute @%s: bad value '%s'", k, v);
        return -1;
    }
    if (asprintf(&grown, "%s%c%s=%s", *spec, strchr(*spec, '?') ? '&' : '?', k, v) < 0)
        return -1;
    free(*spec);
    *spec = grown;
    return 0;
}

static int parse_env(helper_config *c)
{
    memset(c, 0, sizeof *c);
    c->flush_ns = 5000000000LL;
    c->max_object = (uint64_t)512 << 20;
    c->queue_entries = 4096;
    c->endpoint = getenv("CRSH_IPC_ENDPOINT");
    c->url = getenv("CRSH_URL");
    if (!c->endpoint || !*c->endpoint || !c->url || !*c->url) {
        cli_err("ccache-helper: CRSH_IPC_ENDPOINT and CRSH_URL must be set (ccache sets them; "
                "see 'acache ccache-helper --help')");
        return -1;
    }
    find_password(c->url, c->password, sizeof c->password);
    const char *idle = getenv("CRSH_IDLE_TIMEOUT");
    if (idle && *idle) {
        char *end;
        unsigned long long s = strtoull(idle, &end, 10);
        if (*end || s > 100000000ULL) {
            cli_err("ccache-helper: CRSH_IDLE_TIMEOUT: want seconds, got '%s'", idle);
            return -1;
        }
        c->idle_ns = (int64_t)s * 1000000000LL;
    }
    const char *na = getenv("CRSH_NUM_ATTR");
    unsigned long nattr = na && *na ? strtoul(na, NULL, 10) : 0;
    if (nattr > 1000) {
        cli_err("ccache-helper: CRSH_NUM_ATTR: '%s' is out of range", na);
        return -1;
    }
    if (!(c->spec = strdup(c->url)))
        return -1;
    for (unsigned i = 0; i < nattr; i++)
        if (append_attr(c, &c->spec, i) != 0)
            return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The endpoint                                                         */

/* Whether something listens on the socket at path. */
static bool socket_alive(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: leave it alone */
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    close(fd);
    return r == 0 || (err != ECONNREFUSED && err != ENOENT);
}

/* Removes a stale socket at path; refuses anything else. */
static int clear_endpoint(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : (cli_err("ccache-helper: %s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(sb.st_mode)) {
        cli_err("ccache-helper: %s exists and is not a socket; refusing to replace it", path);
        return -1;
    }
    if (socket_alive(path)) {
        cli_err("ccache-helper: another helper already listens on %s", path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        cli_err("ccache-helper: cannot remove the stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Takes an exclusive flock on the directory holding path (no file of our
 * own beside ccache's: ccache itself keeps "<endpoint>.lock" there). */
static int lock_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        cli_err("ccache-helper: cannot lock %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Binds and listens on path with umask 077. Helpers started at once for
 * the same endpoint take turns (a lock on its directory), so one never
 * removes the socket another has just bound. */
static int listen_endpoint(const char *path, struct stat *bound)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path) {
        cli_err("ccache-helper: socket path too long: %s", path);
        return -1;
    }
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    mode_t old = umask(077);
    int fd = -1, lock = lock_dir_of(path);
    if (lock < 0 || clear_endpoint(path) != 0)
        goto out;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0 ||
        lstat(path, bound) != 0) {
        cli_err("ccache-helper: cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
out:
    if (lock >= 0)
        close(lock);
    umask(old);
    return fd;
}

/* Removes the socket if it is still the one this process bound. */
static void unlink_endpoint(const char *path, const struct stat *bound)
{
    struct stat sb;
    if (lstat(path, &sb) == 0 && sb.st_ino == bound->st_ino && sb.st_dev == bound->st_dev)
        unlink(path);
}

/* ------------------------------------------------------------------ */
/* Server state                                                         */

typedef struct helper {
    helper_config cfg;
    acache_store *remote;
    ccq *queue;
    ccp *probe;             /* a failing remote asked in the background */
    int listen_fd;
    struct stat bound;
    int wake[2];            /* a byte: a client left, stop, or a signal */
    pthread_mutex_t mu;
    size_t clients;
    atomic_bool stop;
    int64_t started_ns;
    atomic_uint_least64_t gets, hits, misses, puts, removes, errors, bad;
} helper;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wake_main(helper *h, char why)
{
    ssize_t r = write(h->wake[1], &why, 1);
    (void)r; /* a full pipe already says "look" */
}

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
    redact(&h->cfg, message, safe, sizeof safe);
    cli_err("ccache-helper: %s", safe);
}

static void derive_action(const crsh_request *req, acache_id *out)
{
    acache_part part = { req->key, req->keylen };
    acache_key_derive(out, HELPER_NAMESPACE, &part, 1);
}

/* Whether the remote is switched off, and whether it takes uploads now
 * (writable, not switched off, uploads not refused). */
static bool remote_off(helper *h, bool *takes_puts)
{
    acache_remote_info ri;
    if (acache_remotes(h->remote, &ri, 1) < 1) {
        *takes_puts = false;
        return true;
    }
    *takes_puts = ri.writable && !ri.switched_off && !ri.uploads_off;
    return ri.switched_off;
}

/* ------------------------------------------------------------------ */
/* A connection                                                         */

typedef struct conn {
    helper *h;
    int fd;
    size_t pos, len;        /* unread bytes are buf[pos..len) */
    uint8_t buf[HELPER_READ_BUF];
} conn;

static int send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads more bytes into the buffer: waits without limit for the first
 * byte of a request (midway false), at most the request timeout within one.
 * 0 on success; -1 on end of file, error or timeout. */
static int fill(conn *c, bool midway)
{
    if (c->pos > 0) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    struct pollfd p = { c->fd, POLLIN, 0 };
    int r;
    while ((r = poll(&p, 1, midway ? HELPER_REQUEST_TIMEOUT_MS : -1)) < 0 && errno == EINTR)
        ;
    if (r <= 0)
        return -1;
    ssize_t n;
    while ((n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len)) < 0 && errno == EINTR)
        ;
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 0;
}

static int answer(conn *c, uint8_t status, const char *msg)
{
    uint8_t out[CRSH_STATUS_MAX];
    char safe[512];
    if (status == CRSH_ERR) {
        atomic_fetch_add(&c->h->errors, 1);
        redact(&c->h->cfg, msg, safe, sizeof safe);
        msg = safe;
    }
    return send_all(c->fd, out, crsh_status(out, status, msg));
}

/* Reads a put's value: what is buffered, then the rest as it arrives,
 * the buffer growing with the bytes received, never ahead of them. */
static int read_value(conn *c, uint64_t len, unsigned char **out)
{
    size_t cap = len < HELPER_READ_BUF ? (size_t)len : HELPER_READ_BUF, got = 0;
    unsigned char *v = len > 0 ? malloc(cap) : NULL;
    if (len > 0 && !v)
        return -1;
    while (got < len) {
        if (c->pos == c->len && fill(c, true) != 0)
            goto fail;
        size_t n = c->len - c->pos;
        if (n > len - got)
            n = (size_t)(len - got);
        if (got + n > cap) {
            size_t ncap = cap * 2 < len ? cap * 2 : (size_t)len;
            while (ncap < got + n)
                ncap = ncap * 2 < len ? ncap * 2 : (size_t)len;
            unsigned char *g = realloc(v, ncap);
            if (!g)
                goto fail;
            v = g;
            cap = ncap;
        }
        memcpy(v + got, c->buf + c->pos, n);
        c->pos += n;
        got += n;
    }
    *out = v;
    return 0;
fail:
    free(v);
    return -1;
}

static int serve_get(conn *c, const crsh_request *req)
{
    helper *h = c->h;
    acache_id action;
    void *data = NULL;
    size_t len = 0;
    uint8_t head[9];
    atomic_fetch_add(&h->gets, 1);
    derive_action(req, &action);
    if (ccq_lookup(h->queue, &action, &data, &len)) {
        atomic_fetch_add(&h->hits, 1);
        int r = send_all(c->fd, head, crsh_value_head(head, len));
        if (r == 0 && len > 0)
            r = send_all(c->fd, data, len);
        free(data);
        return r;
    }
    if (ccp_failing(h->probe))
        return answer(c, CRSH_ERR, HELPER_FAILING_MSG);
    acache_result res;
    acache_status st = acache_get(h->remote, &action, ACACHE_GET_DATA, &res);
    if (st == ACACHE_MISS) {
        atomic_fetch_add(&h->misses, 1);
        return answer(c, CRSH_NOOP, NULL);
    }
    if (st != ACACHE_OK) {
        ccp_failed(h->probe);
        return answer(c, CRSH_ERR, acache_last_error());
    }
    atomic_fetch_add(&h->hits, 1);
    int r = send_all(c->fd, head, crsh_value_head(head, res.size));
    if (r == 0 && res.size > 0)
        r = send_all(c->fd, res.data, (size_t)res.size);
    acache_result_release(&res);
    return r;
}

static int serve_put(conn *c, const crsh_request *req)
{
    helper *h = c->h;
    unsigned char *value = NULL;
    acache_id action;
    if (read_value(c, req->value_len, &value) != 0)
        return -1; /* the client went away mid-value: nothing is stored */
    atomic_fetch_add(&h->puts, 1);
    derive_action(req, &action);
    bool takes_puts;
    remote_off(h, &takes_puts);
    if (!takes_puts) {
        free(value);
        return answer(c, CRSH_NOOP, NULL);
    }
    bool queued = ccq_push(h->queue, &action, value, (size_t)req->value_len);
    return answer(c, queued ? CRSH_OK : CRSH_NOOP, NULL);
}

static int serve_remove(conn *c, const crsh_request *req)
{
    helper *h = c->h;
    acache_id action;
    atomic_fetch_add(&h->removes, 1);
    derive_action(req, &action);
    bool cancelled = ccq_cancel(h->queue, &action), takes_puts;
    /* A switched-off remote is not asked: the answer is at once. */
    if (ccp_failing(h->probe))
        return answer(c, cancelled ? CRSH_OK : CRSH_ERR, HELPER_FAILING_MSG);
    acache_status st = remote_off(h, &takes_puts) ? ACACHE_MISS : acache_delete(h->remote, &action);
    if (st == ACACHE_OK || cancelled)
        return answer(c, CRSH_OK, NULL);
    if (st == ACACHE_MISS)
        return answer(c, CRSH_NOOP, NULL);
    ccp_failed(h->probe);
    return answer(c, CRSH_ERR, acache_last_error());
}

/* ------------------------------------------------------------------ */
/* Info                                                                 */

#define HELPER_DIAG_MAX 32

typedef struct diag_list {
    char text[HELPER_DIAG_MAX][CRSH_MSG_MAX + 1];
    size_t n;
} diag_list;

static void diag_add(diag_list *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diag_add(diag_list *d, const char *fmt, ...)
{
    if (d->n >= HELPER_DIAG_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text[d->n++], sizeof d->text[0], fmt, ap);
    va_end(ap);
}

static void diag_remote(diag_list *d, const acache_remote_info *ri)
{
    const char *mode = ri->readable && ri->writable ? "rw" : ri->readable ? "ro" : "wo";
    const char *state = ri->switched_off ? "switched off"
                        : ri->uploads_off ? "active, uploads switched off" : "active";
    diag_add(d, "remote %s (%s): %s", ri->name, mode, state);
    if (ri->reason[0])
        diag_add(d, "remote %s: why: %s", ri->name, ri->reason);
    diag_add(d, "remote %s: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " rejected, %" PRIu64
                " failures; %" PRIu64 " uploads (%.1f MiB), %" PRIu64 " already there, %" PRIu64
                " dropped, %" PRIu64 " pending",
             ri->name, ri->hits, ri->misses, ri->rejected, ri->failures, ri->uploads,
             (double)ri->upload_bytes / (1024.0 * 1024.0), ri->already, ri->dropped, ri->pending);
}

static void collect_info(helper *h, diag_list *d)
{
    acache_remote_info ri[4];
    size_t n = acache_remotes(h->remote, ri, 4);
    for (size_t i = 0; i < n && i < 4; i++)
        diag_remote(d, &ri[i]);
    ccq_stats qs;
    ccq_get_stats(h->queue, &qs);
    diag_add(d, "upload queue (memory): %" PRIu64 " pending (%.1f MiB of %.0f MiB), %" PRIu64
                " queued, %" PRIu64 " uploaded, %" PRIu64 " failed, %" PRIu64 " dropped, %" PRIu64
                " gets served from it",
             qs.pending, (double)qs.pending_bytes / (1024.0 * 1024.0),
             (double)HELPER_QUEUE_BYTES / (1024.0 * 1024.0), qs.queued, qs.uploaded, qs.failed,
             qs.dropped, qs.served);
    ccp_stats ps;
    ccp_get_stats(h->probe, &ps);
    diag_add(d, "failing remote: %" PRIu64 " requests answered without it, %" PRIu64
                " background probes, %" PRIu64 " recoveries",
             ps.skipped, ps.probes, ps.recovered);
    pthread_mutex_lock(&h->mu);
    size_t clients = h->clients;
    pthread_mutex_unlock(&h->mu);
    diag_add(d, "helper: pid %ld, up %" PRId64 " s, %zu clients; %" PRIu64 " gets (%" PRIu64
                " hits, %" PRIu64 " misses), %" PRIu64 " puts, %" PRIu64 " removes, %" PRIu64
                " errors, %" PRIu64 " bad requests",
             (long)getpid(), (now_ns() - h->started_ns) / 1000000000, clients,
             (uint64_t)atomic_load(&h->gets), (uint64_t)atomic_load(&h->hits),
             (uint64_t)atomic_load(&h->misses), (uint64_t)atomic_load(&h->puts),
             (uint64_t)atomic_load(&h->removes), (uint64_t)atomic_load(&h->errors),
             (uint64_t)atomic_load(&h->bad));
}

static int serve_info(conn *c)
{
    diag_list *d = calloc(1, sizeof *d);
    uint8_t *out = malloc((HELPER_DIAG_MAX + 1) * (1 + CRSH_MSG_MAX) + 1);
    const char *ptrs[HELPER_DIAG_MAX];
    char identity[64];
    int r = -1;
    if (!d || !out)
        goto out;
    collect_info(c->h, d);
    for (size_t i = 0; i < d->n; i++) {
        char safe[CRSH_MSG_MAX + 1];
        redact(&c->h->cfg, d->text[i], safe, sizeof safe);
        memcpy(d->text[i], safe, sizeof safe);
        ptrs[i] = d->text[i];
    }
    snprintf(identity, sizeof identity, "acache %d.%d.%d ccache-helper", ACACHE_VERSION_MAJOR,
             ACACHE_VERSION_MINOR, ACACHE_VERSION_PATCH);
    r = send_all(c->fd, out, crsh_info(out, identity, ptrs, d->n));
out:
    free(d);
    free(out);
    return r;
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */

/* Serves one request whose head is in the buffer; -1 closes the
 * connection. */
static int serve_request(conn *c, const crsh_request *req)
{
    switch (req->op) {
    case CRSH_OP_GET:
        return serve_get(c, req);
    case CRSH_OP_PUT:
        return serve_put(c, req);
    case CRSH_OP_REMOVE:
        return serve_remove(c, req);
    case CRSH_OP_INFO:
        return serve_info(c);
    case CRSH_OP_STOP:
        answer(c, CRSH_OK, NULL);
        atomic_store(&c->h->stop, true);
        wake_main(c->h, 'S');
        return -1;
    }
    return -1;
}

static void serve_conn(conn *c)
{
    uint8_t greeting[CRSH_GREETING_MAX];
    crsh_request req;
    if (send_all(c->fd, greeting, crsh_greeting(greeting)) != 0)
        return;
    for (;;) {
        crsh_parse_status ps;
        while ((ps = crsh_parse_head(c->buf + c->pos, c->len - c->pos, c->h->cfg.max_object,
                                     &req)) == CRSH_PARSE_NEED)
            if (fill(c, c->len > c->pos) != 0)
                return; /* closed (or stalled) mid-request: nothing done */
        if (ps == CRSH_PARSE_BAD) {
            /* What follows cannot be found: say why, then hang up. */
            atomic_fetch_add(&c->h->bad, 1);
            answer(c, CRSH_ERR, req.why);
            return;
        }
        c->pos += req.head_len;
        if (serve_request(c, &req) != 0)
            return;
    }
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    helper *h = c->h;
    serve_conn(c);
    close(c->fd);
    free(c);
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
    conn *c = NULL;
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
    c->pos = c->len = 0;
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
    unlink_endpoint(h->cfg.endpoint, &h->bound);
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
        redact(&h->cfg, acache_last_error(), safe, sizeof safe);
        cli_err("ccache-helper: %s", safe);
        return -1;
    }
    if (acache_remotes(s, NULL, 0) == 0) {
        redact(&h->cfg, h->cfg.url, safe, sizeof safe);
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
    if (parse_env(&h->cfg) != 0 || open_remote(h) != 0)
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
    if ((h->listen_fd = listen_endpoint(h->cfg.endpoint, &h->bound)) < 0)
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
    free(h->cfg.spec);
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
