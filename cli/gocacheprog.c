/*
 * gocacheprog.c - `acache gocacheprog`: serves the go command's build cache
 * over the GOCACHEPROG protocol (Go 1.21-1.23 built with the cacheprog
 * experiment, Go 1.24 and later as they come) on stdin and stdout.
 *
 * One reader thread (the caller's) reads requests in order. Put bodies are
 * inline in stdin, so the reader streams each one itself, straight from a
 * fixed read buffer through the base64 decoder into acache_put_write: a put
 * never holds its body whole. With remotes, gets go to a small pool of
 * workers and are answered as they complete; with only the local store the
 * reader serves them itself (see GCP_WORKERS). Every response is one line
 * written under a mutex by a single write loop, so lines never interleave.
 * A request line longer than GCP_MAX_LINE is not held but scanned as it
 * streams (gcp_scan) and answered Err for its ID; only input that is not a
 * request stream at all (no JSON object, no ID) ends the helper.
 *
 * This file must never print anything on stdout but protocol lines
 * (diagnostics go to stderr through cli_err), never answer a request twice
 * or not at all (the go command waits for every ID), and never let a put
 * whose body was incomplete or did not match its OutputID become visible.
 * Wire format details live in src/prog/wire.c; storage in the library.
 */
#include "commands.h"
#include "prog/wire.h"
#include "gcp_spill.h"

#include "acache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Workers serving gets when remotes are configured. Gets are then I/O-bound,
 * so a few more than the cores of a small machine. With only the local disk
 * store a get takes microseconds, less than handing it to another thread
 * costs, so the reader serves it itself (measured: a warm `go build std`
 * ~10% slower through the pool). --workers overrides either default. */
#define GCP_WORKERS 8
#define GCP_WORKERS_MAX 64
/* Gets waiting for a worker before the reader stops reading. */
#define GCP_QUEUE_MAX 1024
/* Bytes read from stdin at a time; also the most a body holds in memory. */
#define GCP_READ_CHUNK ((size_t)64 << 10)

/* ------------------------------------------------------------------ */
/* Input                                                                */

typedef struct input {
    int fd;
    size_t pos, len;      /* unread bytes are buf[pos..len) */
    bool eof;
    int err;              /* errno of a failed read, or 0 */
    char *line;           /* the current request line, NUL-terminated */
    size_t line_len, line_cap;
    gcp_scan scan;        /* a line longer than GCP_MAX_LINE, scanned instead */
    unsigned char buf[GCP_READ_CHUNK];
} input;

/* Makes sure some unread bytes are buffered; false at end of input (or
 * after a read error, with in->err set). */
static bool in_fill(input *in)
{
    if (in->pos < in->len)
        return true;
    if (in->eof)
        return false;
    for (;;) {
        ssize_t n = read(in->fd, in->buf, sizeof in->buf);
        if (n > 0) {
            in->pos = 0;
            in->len = (size_t)n;
            return true;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            in->err = errno;
        in->eof = true;
        return false;
    }
}

static bool line_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Appends to the line buffer, which only grows as far as the bytes that
 * actually arrived, and never past GCP_MAX_LINE. */
static bool line_append(input *in, const unsigned char *p, size_t n)
{
    if (in->line_len + n + 1 > in->line_cap) {
        size_t cap = in->line_cap ? in->line_cap : 4096;
        while (cap < in->line_len + n + 1)
            cap *= 2;
        if (cap > GCP_MAX_LINE + 1)
            cap = GCP_MAX_LINE + 1;
        char *line = realloc(in->line, cap);
        if (line == NULL)
            return false;
        in->line = line;
        in->line_cap = cap;
    }
    memcpy(in->line + in->line_len, p, n);
    in->line_len += n;
    in->line[in->line_len] = '\0';
    return true;
}

/* The line in hand would grow past GCP_MAX_LINE: scans what is held (kept
 * for messages) and the rest of the line as it is read, to its newline or
 * the end of input, in constant memory, into in->scan. Returns 2, or -1
 * (message printed) on a read error. */
static int scan_long_line(input *in)
{
    gcp_scan_init(&in->scan);
    gcp_scan_feed(&in->scan, in->line, in->line_len);
    for (;;) {
        if (!in_fill(in)) {
            if (in->err == 0)
                return 2;
            cli_err("gocacheprog: reading stdin: %s", strerror(in->err));
            return -1;
        }
        const char *p = (const char *)in->buf + in->pos;
        size_t avail = in->len - in->pos;
        const char *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        gcp_scan_feed(&in->scan, p, take);
        in->pos += take + (nl ? 1 : 0);
        if (nl)
            return 2;
    }
}

/*
 * Reads the next line that is not blank into in->line. Returns 1 for a
 * line, 2 for a line longer than GCP_MAX_LINE (scanned into in->scan, not
 * held), 0 at end of input, -1 (message printed) when the input cannot be
 * read.
 */
static int read_request_line(input *in)
{
    in->line_len = 0;
    for (;;) {
        if (!in_fill(in)) {
            if (in->err != 0) {
                cli_err("gocacheprog: reading stdin: %s", strerror(in->err));
                return -1;
            }
            /* A last line without its newline still counts. */
            if (in->line_len == 0 || line_is_blank(in->line, in->line_len))
                return 0;
            return 1;
        }
        unsigned char *p = in->buf + in->pos;
        size_t avail = in->len - in->pos;
        unsigned char *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        if (in->line_len + take > GCP_MAX_LINE)
            return scan_long_line(in);
        if (take > 0 && !line_append(in, p, take)) {
            cli_err("gocacheprog: out of memory reading a request");
            return -1;
        }
        in->pos += take;
        if (nl == NULL)
            continue;
        in->pos++;
        if (in->line_len > 0 && !line_is_blank(in->line, in->line_len))
            return 1;
        in->line_len = 0;
    }
}

/* ------------------------------------------------------------------ */
/* The server                                                           */

typedef struct get_job {
    struct get_job *next;
    int64_t id;
    acache_id action;
} get_job;

typedef struct server {
    acache_store *store;
    gcp_spill spill;          /* puts the full cache has no room for */
    bool verbose;
    bool local_first;         /* remotes: serve local hits on the reader */

    pthread_mutex_t out_mu;   /* serializes response lines */
    atomic_bool out_broken;   /* stdout failed (nobody is listening) or was ended */

    pthread_mutex_t mu;       /* guards the queue below */
    pthread_cond_t job_cv;    /* a job was queued, or stopping */
    pthread_cond_t space_cv;  /* the queue has room */
    pthread_cond_t idle_cv;   /* nothing queued or running */
    get_job *head, *tail;
    size_t queued, running;
    bool stopping;
    pthread_t workers[GCP_WORKERS_MAX];
    size_t nworkers;

    atomic_uint_least64_t gets, hits, misses, puts, closes;
    atomic_uint_least64_t bytes_in, bytes_out, errors, busy_ns;
    atomic_bool get_error_shown;

    input in;
    unsigned char decoded[GCP_BODY_OUT_MAX(GCP_READ_CHUNK)];
} server;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void add_busy(server *s, int64_t start)
{
    int64_t d = now_ns() - start;
    atomic_fetch_add(&s->busy_ns, d > 0 ? (uint64_t)d : 0);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one response line (taking line, which may be NULL when it could
 * not be formatted) for id. */
static void respond(server *s, int64_t id, char *line)
{
    char fallback[96];
    const char *p = line;
    size_t len = line ? strlen(line) : 0;
    int err = 0;

    if (line == NULL) {
        /* Out of memory: the go command still needs an answer for id. */
        int n = snprintf(fallback, sizeof fallback, "{\"ID\":%" PRId64 ",\"Err\":\"out of memory\"}\n",
                         id);
        p = fallback;
        len = (size_t)n;
    }
    pthread_mutex_lock(&s->out_mu);
    if (!atomic_load(&s->out_broken)) {
        err = write_all(STDOUT_FILENO, p, len);
        if (err != 0)
            atomic_store(&s->out_broken, true);
    }
    pthread_mutex_unlock(&s->out_mu);
    if (err != 0)
        cli_err("gocacheprog: writing stdout: %s", strerror(err));
    free(line);
}

/* Ends stdout: the reader at the other end sees end of file. /dev/null
 * takes its place, so the descriptor is never reused for a file that a
 * stray write could then damage. Left as it is if /dev/null cannot be
 * opened (the reader then sees the end at exit). */
static void end_stdout(server *s)
{
    pthread_mutex_lock(&s->out_mu);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        close(fd);
        atomic_store(&s->out_broken, true);
    }
    pthread_mutex_unlock(&s->out_mu);
}

static void respond_err(server *s, int64_t id, const char *msg)
{
    atomic_fetch_add(&s->errors, 1);
    respond(s, id, gcp_format_err(id, msg, NULL));
}

static void serve_get(server *s, int64_t id, const acache_id *action)
{
    int64_t start = now_ns();
    acache_result res;
    char *line;

    memset(&res, 0, sizeof res);
    atomic_fetch_add(&s->gets, 1);
    acache_status st = acache_get(s->store, action, 0, &res);
    if (st == ACACHE_OK && res.path[0] == '/') {
        line = gcp_format_entry(id, &res, NULL);
        atomic_fetch_add(&s->hits, 1);
        atomic_fetch_add(&s->bytes_out, res.size);
    } else {
        /* A get that fails is a miss: the cache must never fail a build.
         * The first failure is shown; the rest only with -v. */
        if (st < 0) {
            atomic_fetch_add(&s->errors, 1);
            if (s->verbose || !atomic_exchange(&s->get_error_shown, true))
                cli_err("gocacheprog: get %" PRId64 " answered as a miss: %s", id,
                        acache_last_error());
        } else if (st == ACACHE_OK) {
            cli_err("gocacheprog: get %" PRId64 " hit an entry with no local path; answered "
                    "as a miss", id);
        }
        line = gcp_format_miss(id, NULL);
        atomic_fetch_add(&s->misses, 1);
    }
    acache_result_release(&res);
    respond(s, id, line);
    add_busy(s, start);
}

static void *worker_main(void *arg)
{
    server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->head == NULL && !s->stopping)
            pthread_cond_wait(&s->job_cv, &s->mu);
        get_job *job = s->head;
        if (job == NULL) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->head = job->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued--;
        s->running++;
        pthread_cond_signal(&s->space_cv);
        pthread_mutex_unlock(&s->mu);

        serve_get(s, job->id, &job->action);
        free(job);

        pthread_mutex_lock(&s->mu);
        s->running--;
        if (s->queued == 0 && s->running == 0)
            pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Answers a get the local tiers hit, here on the reader; false (nothing
 * answered or counted) when it must go to the remotes. A local hit takes
 * microseconds, less than a hand-off to a worker. */
static bool serve_local_hit(server *s, int64_t id, const acache_id *action)
{
    int64_t start = now_ns();
    acache_result res;
    memset(&res, 0, sizeof res);
    if (acache_get(s->store, action, ACACHE_GET_LOCAL, &res) != ACACHE_OK || res.path[0] != '/') {
        acache_result_release(&res);
        return false;
    }
    atomic_fetch_add(&s->gets, 1);
    atomic_fetch_add(&s->hits, 1);
    atomic_fetch_add(&s->bytes_out, res.size);
    respond(s, id, gcp_format_entry(id, &res, NULL));
    acache_result_release(&res);
    add_busy(s, start);
    return true;
}

/* Hands a get to the pool; serves it here when there is no pool. */
static void dispatch_get(server *s, int64_t id, const acache_id *action)
{
    if (s->nworkers > 0 && s->local_first && serve_local_hit(s, id, action))
        return;
    get_job *job = s->nworkers > 0 ? malloc(sizeof *job) : NULL;
    if (job == NULL) {
        serve_get(s, id, action);
        return;
    }
    job->next = NULL;
    job->id = id;
    job->action = *action;
    pthread_mutex_lock(&s->mu);
    while (s->queued >= GCP_QUEUE_MAX)
        pthread_cond_wait(&s->space_cv, &s->mu);
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->queued++;
    pthread_cond_signal(&s->job_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Waits until every get handed to the pool has been answered. */
static void wait_idle(server *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->queued > 0 || s->running > 0)
        pthread_cond_wait(&s->idle_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void start_workers(server *s, size_t want)
{
    if (want == 0)
        return;
    for (size_t i = 0; i < want; i++) {
        if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) != 0)
            break;
        s->nworkers++;
    }
    if (s->nworkers == 0)
        cli_err("gocacheprog: could not start worker threads; serving gets one at a time");
}

/* Lets the workers finish what is queued, then joins them. */
static void stop_workers(server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->job_cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
}

/* A put being served: its stream (NULL once it failed), what came in, and
 * the answer's error ("" while all is well). */
typedef struct put_job {
    server *s;
    const gcp_request *req;
    acache_put_stream *stream;
    uint64_t got, want;
    char err[GCP_MSG_SIZE + 160];
} put_job;

/* Hands decoded bytes to the stream. Past BodySize the put has failed:
 * stop writing, keep reading to the end of the line. */
static void put_bytes(put_job *p, const unsigned char *data, size_t len)
{
    p->got += len;
    if (p->stream != NULL && p->got > p->want) {
        acache_put_abort(p->stream);
        p->stream = NULL;
        snprintf(p->err, sizeof p->err, "body is longer than BodySize %" PRIu64, p->want);
    } else if (p->stream != NULL && acache_put_write(p->stream, data, len) != ACACHE_OK) {
        snprintf(p->err, sizeof p->err, "cannot store: %s", acache_last_error());
        acache_put_abort(p->stream);
        p->stream = NULL;
    }
}

/* Reads the body line from stdin into the put. -1 (message printed) when
 * the input is broken and the session cannot go on. */
static int read_body(put_job *p)
{
    server *s = p->s;
    input *in = &s->in;
    char msg[GCP_MSG_SIZE];
    int rc = -1;
    gcp_body *body = gcp_body_new();
    if (body == NULL) {
        cli_err("gocacheprog: put %" PRId64 ": out of memory", p->req->id);
        return -1;
    }
    for (;;) {
        gcp_body_status bst;
        size_t used = 0, outlen = 0;
        if (!in_fill(in)) {
            if (in->err != 0) {
                cli_err("gocacheprog: put %" PRId64 ": reading stdin: %s", p->req->id,
                        strerror(in->err));
                goto out;
            }
            bst = gcp_body_eof(body, msg);
        } else {
            bst = gcp_body_feed(body, in->buf + in->pos, in->len - in->pos, &used, s->decoded,
                                &outlen, msg);
            in->pos += used;
        }
        if (bst == GCP_BODY_BROKEN) {
            cli_err("gocacheprog: put %" PRId64 ": %s", p->req->id, msg);
            goto out;
        }
        if (outlen > 0)
            put_bytes(p, s->decoded, outlen);
        if (bst == GCP_BODY_DONE)
            break;
    }
    if (p->err[0] == '\0' && !gcp_body_valid(body))
        snprintf(p->err, sizeof p->err, "body is not valid base64");
    rc = 0;
out:
    gcp_body_free(body);
    return rc;
}

/* Commits a put whose body arrived whole, and answers it if it is stored. */
static void commit_put(put_job *p)
{
    acache_result res;
    memset(&res, 0, sizeof res);
    acache_status st = acache_put_commit(p->stream, &p->req->output, p->want, &res);
    p->stream = NULL;
    if (st == ACACHE_EINVAL) {
        snprintf(p->err, sizeof p->err, "body does not match its OutputID: %s",
                 acache_last_error());
    } else if (st != ACACHE_OK) {
        snprintf(p->err, sizeof p->err, "cannot store: %s", acache_last_error());
    } else if (res.path[0] != '/') {
        snprintf(p->err, sizeof p->err, "stored, but the store gave no local path");
    } else {
        respond(p->s, p->req->id, gcp_format_entry(p->req->id, &res, NULL));
    }
    acache_result_release(&res);
}

/*
 * Serves one put: streams its body (if any) from stdin into a put stream
 * and answers. parse_st/parse_msg say whether the request itself was
 * valid; an invalid put's body is still read (and dropped) so the next
 * request is found. Returns 0, or -1 (message printed, stream aborted)
 * when the input is broken and the session cannot go on.
 */
static int serve_put(server *s, const gcp_request *req, gcp_parse_status parse_st,
                     const char *parse_msg)
{
    int64_t start = now_ns();
    put_job p = { .s = s, .req = req, .want = req->body_size > 0 ? (uint64_t)req->body_size : 0 };
    int rc = -1;

    atomic_fetch_add(&s->puts, 1);
    if (parse_st != GCP_PARSE_OK)
        snprintf(p.err, sizeof p.err, "%s", parse_msg);
    else if (acache_put_begin(gcp_spill_route(&s->spill, s->store, p.want), &req->action,
                              &p.stream) != ACACHE_OK)
        snprintf(p.err, sizeof p.err, "cannot store: %s", acache_last_error());

    if (gcp_request_has_body(req) && read_body(&p) != 0)
        goto out;
    atomic_fetch_add(&s->bytes_in, p.got);

    if (p.err[0] == '\0' && p.got != p.want)
        snprintf(p.err, sizeof p.err, "body has %" PRIu64 " bytes but BodySize is %" PRIu64,
                 p.got, p.want);
    if (p.err[0] == '\0')
        commit_put(&p);
    if (p.err[0] != '\0') {
        acache_put_abort(p.stream);
        p.stream = NULL;
        if (s->verbose)
            cli_err("gocacheprog: put %" PRId64 ": %s", req->id, p.err);
        respond_err(s, req->id, p.err);
    }
    rc = 0;
out:
    /* On a broken input nothing is answered and nothing half-written may
     * stay: the stream is dropped. */
    acache_put_abort(p.stream);
    add_busy(s, start);
    return rc;
}

/* Shows a request line in a message: its start, printable bytes only. */
static void show_line(const char *line, size_t len, char out[84])
{
    size_t n = 0;
    for (size_t i = 0; i < len && n < 80; i++) {
        unsigned char c = (unsigned char)line[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > 80) {
        out[77] = out[78] = out[79] = '.';
        n = 80;
    }
    out[n] = '\0';
}

/* Reads and answers requests until end of input. Returns the exit status. */
static int serve(server *s)
{
    gcp_request req;
    char msg[GCP_MSG_SIZE];

    for (;;) {
        if (atomic_load(&s->out_broken))
            return 1;
        int r = read_request_line(&s->in);
        if (r == 0)
            return 0;
        if (r < 0)
            return 1;
        int64_t start = now_ns();
        /* A line too long to hold is answered Err for its ID, if it has
         * one; only a line that is no request at all ends the helper. */
        gcp_parse_status st = r == 2 ? gcp_scan_finish(&s->in.scan, &req, msg)
                                     : gcp_parse_request(s->in.line, s->in.line_len, &req, msg);
        if (st == GCP_PARSE_FATAL) {
            char shown[84];
            show_line(s->in.line, s->in.line_len, shown);
            cli_err("gocacheprog: %s: %s", msg, shown);
            return 1;
        }
        if (req.command == GCP_CMD_PUT) {
            if (serve_put(s, &req, st, msg) != 0)
                return 1;
            continue;
        }
        if (st == GCP_PARSE_ERR) {
            if (s->verbose)
                cli_err("gocacheprog: request %" PRId64 ": %s", req.id, msg);
            respond_err(s, req.id, msg);
            add_busy(s, start);
            continue;
        }
        switch (req.command) {
        case GCP_CMD_GET:
            dispatch_get(s, req.id, &req.action);
            break;
        case GCP_CMD_CLOSE: {
            /* Close is answered last: everything before it first. */
            wait_idle(s);
            atomic_fetch_add(&s->closes, 1);
            respond(s, req.id, gcp_format_ok(req.id, NULL));
            add_busy(s, start);
            break;
        }
        case GCP_CMD_PUT:
        case GCP_CMD_UNKNOWN:
            break;
        }
    }
}

/* One line per remote: its state and counters, for -v. */
static void print_remotes(acache_store *store, bool final)
{
    enum { MAX_SHOWN = 16 };
    acache_remote_info info[MAX_SHOWN];
    size_t n = acache_remotes(store, info, MAX_SHOWN);
    double mib = 1024.0 * 1024.0;
    for (size_t i = 0; i < n && i < MAX_SHOWN; i++) {
        const acache_remote_info *r = &info[i];
        const char *mode = r->readable && r->writable ? "rw" : r->readable ? "ro" : "wo";
        char state[2 * ACACHE_REMOTE_NAME_SIZE];
        if (r->switched_off)
            snprintf(state, sizeof state, "switched off (%s)", r->reason);
        else if (r->uploads_off)
            snprintf(state, sizeof state, "active, uploads switched off (%s)", r->reason);
        else
            snprintf(state, sizeof state, "active");
        if (!final) {
            cli_err("gocacheprog: remote %zu: %s (%s)%s%s", i + 1, r->name, mode,
                    r->detail[0] ? ": " : "", r->detail);
            continue;
        }
        cli_err("gocacheprog: remote %zu: %s (%s): %s; %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
                " rejected, %" PRIu64 " failures; %" PRIu64 " uploads (%.1f MiB), %" PRIu64
                " already there, %" PRIu64 " dropped",
                i + 1, r->name, mode, state, r->hits, r->misses, r->rejected, r->failures,
                r->uploads, (double)r->upload_bytes / mib, r->already, r->dropped);
    }
    acache_prefetch_info pf;
    if (final && acache_prefetch_stats(store, &pf)) {
        if (pf.loaded)
            cli_err("gocacheprog: prefetch: a manifest of %" PRIu64 " entries; %" PRIu64
                    " fetched ahead, %" PRIu64 " already local, %" PRIu64 " not found, %" PRIu64
                    " lookups waited for one",
                    pf.listed, pf.fetched, pf.local, pf.failed, pf.waited);
        else
            cli_err("gocacheprog: prefetch: no manifest for this build");
    }
}

/* Remote state changes (switched off, uploads refused) reach stderr at
 * once, with or without -v. */
static void log_line(void *ctx, const char *message)
{
    (void)ctx;
    cli_err("%s", message);
}

static void print_summary(server *s, int64_t wall_ns)
{
    double mib = 1024.0 * 1024.0;
    /* The helper's own CPU time too, which bench/gobuild compares between
     * remotes (signing S3 requests must cost little). */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        memset(&ru, 0, sizeof ru);
    cli_err("gocacheprog: %" PRIu64 " gets (%" PRIu64 " hits, %" PRIu64 " misses), %" PRIu64
            " puts, %.1f MiB in, %.1f MiB out, %" PRIu64 " errors; "
            "%.3f s in requests (summed), %.3f s wall; cpu %.3f s user, %.3f s system",
            (uint64_t)atomic_load(&s->gets), (uint64_t)atomic_load(&s->hits),
            (uint64_t)atomic_load(&s->misses), (uint64_t)atomic_load(&s->puts),
            (double)atomic_load(&s->bytes_in) / mib, (double)atomic_load(&s->bytes_out) / mib,
            (uint64_t)atomic_load(&s->errors), (double)atomic_load(&s->busy_ns) / 1e9,
            (double)wall_ns / 1e9, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
}

/* ------------------------------------------------------------------ */
/* Options and setup                                                    */

static void usage(FILE *f)
{
    fprintf(f, "usage: acache gocacheprog [--dir DIR] [--remote SPEC]... [--max-size SIZE]\n"
               "                          [--max-age DURATION] [--grace DURATION]\n"
               "                          [--verify-reads] [--umask MASK] [-v]\n"
               "\n"
               "Serves the go command's build cache: GOCACHEPROG=\"acache gocacheprog\".\n"
               "Go 1.24 and later speak GOCACHEPROG as they come; 1.21-1.23 only when built\n"
               "with GOEXPERIMENT=cacheprog. Tested end to end with Go 1.23 (cacheprog),\n"
               "1.24, 1.25 and 1.26.\n"
               "\n"
               "  --dir DIR        cache directory (default $ACACHE_DIR, else\n"
               "                   $XDG_CACHE_HOME/acache, else ~/.cache/acache)\n"
               "  --remote SPEC    a shared store after the local one (repeatable;\n"
               "                   default $ACACHE_REMOTE, specs separated by spaces)\n"
               "  --max-size SIZE  bound of the local store, e.g. 10G (default\n"
               "                   $ACACHE_MAX_SIZE, else 10G); trimmed in the background\n"
               "  --max-age DURATION  entries unused this long are trimmed (30d)\n"
               "  --grace DURATION entries used within this are never trimmed (10m)\n"
               "  --verify-reads   hash every object before serving it\n"
               "  --umask MASK     share the cache directory with its group: new files\n"
               "                   and directories get 0666/0777 less MASK, e.g. 002\n"
               "                   (default $ACACHE_UMASK, else private: 0600/0700)\n"
               "  --workers N      threads serving gets (default 0 with only the local\n"
               "                   store: the reader serves them; 8 with remotes)\n"
               "  -v               the remotes at start; at exit a summary of the session\n"
               "                   and of each remote (hits, uploads, dropped) on stderr\n");
}

/* Matches --name VALUE and --name=VALUE; advances *i past the value. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cli_err("gocacheprog: %s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

/* Opens the disk store (its spec from cli_disk_spec(): DIR made absolute,
 * as DiskPath must be, and the limits) and the remotes behind it. Returns 0
 * or the exit status (message printed). */
static int open_stores(const cli_disk_opts *disk, char **remotes, size_t nremotes,
                       acache_store **out)
{
    int rc = 2;
    char *spec = cli_disk_spec(disk);
    acache_store **stores = calloc(nremotes + 1, sizeof *stores);
    size_t n = 0;

    if (spec == NULL || stores == NULL)
        goto out;
    if (acache_open(spec, &stores[n]) != ACACHE_OK) {
        cli_err("gocacheprog: cannot open %s: %s", spec, acache_last_error());
        goto out;
    }
    n++;
    for (size_t i = 0; i < nremotes; i++) {
        if (acache_open(remotes[i], &stores[n]) != ACACHE_OK) {
            cli_err("gocacheprog: cannot open remote %s: %s", remotes[i], acache_last_error());
            goto out;
        }
        n++;
    }
    if (n == 1) {
        *out = stores[0];
    } else {
        acache_status st = acache_tiers(stores, n, out);
        n = 0; /* taken by acache_tiers, also on failure */
        if (st != ACACHE_OK) {
            cli_err("gocacheprog: cannot chain the stores: %s", acache_last_error());
            goto out;
        }
    }
    n = 0;
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        acache_close(stores[i]);
    free(stores);
    free(spec);
    return rc;
}

/* The command line of a session. */
typedef struct gcp_opts {
    cli_disk_opts disk; /* --dir, --max-size, --max-age, --grace, --verify-reads */
    bool verbose;
    long workers;       /* -1: the default */
    char **remotes;     /* --remote, else the words of ACACHE_REMOTE */
    size_t nremotes;
    char *env_remotes;  /* the copy of ACACHE_REMOTE they point into */
} gcp_opts;

/* Reads the flags into o. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, gcp_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            o->verbose = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stderr);
            return 0;
        } else if (strcmp(argv[i], "--verify-reads") == 0) {
            o->disk.verify_reads = true;
        } else if ((r = opt_value(argc, argv, &i, "--dir", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.dir = v;
        } else if ((r = opt_value(argc, argv, &i, "--max-age", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.max_age = v;
        } else if ((r = opt_value(argc, argv, &i, "--umask", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.umask = v;
        } else if ((r = opt_value(argc, argv, &i, "--grace", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.grace = v;
        } else if ((r = opt_value(argc, argv, &i, "--remote", &v)) != 0) {
            if (r < 0)
                return 2;
            o->remotes[o->nremotes++] = (char *)v;
        } else if ((r = opt_value(argc, argv, &i, "--max-size", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.max_size = v;
        } else if ((r = opt_value(argc, argv, &i, "--workers", &v)) != 0) {
            if (r < 0)
                return 2;
            char *end = NULL;
            o->workers = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || o->workers < 0 || o->workers > GCP_WORKERS_MAX) {
                cli_err("gocacheprog: --workers wants a number from 0 to %d, got \"%s\"",
                        GCP_WORKERS_MAX, v);
                return 2;
            }
        } else {
            cli_err("gocacheprog: unknown argument %s", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* Flags override the environment: ACACHE_REMOTE only without --remote.
 * False when out of memory. */
static bool remotes_from_env(gcp_opts *o)
{
    const char *env = getenv("ACACHE_REMOTE");
    if (o->nremotes != 0 || env == NULL || env[0] == '\0')
        return true;
    const char *sep = " \t\n";
    size_t count = 0;
    o->env_remotes = strdup(env);
    if (o->env_remotes == NULL)
        return false;
    for (const char *t = env; *t; t++)
        if (strchr(sep, *t) == NULL && (t == env || strchr(sep, t[-1]) != NULL))
            count++;
    char **more = realloc(o->remotes, (count + 1) * sizeof *o->remotes);
    if (more == NULL)
        return false;
    o->remotes = more;
    char *save = NULL;
    for (char *t = strtok_r(o->env_remotes, sep, &save); t && o->nremotes < count;
         t = strtok_r(NULL, sep, &save))
        o->remotes[o->nremotes++] = t;
    return true;
}

/* A server on stdin/stdout for store; NULL when out of memory. */
static server *server_new(acache_store *store, const gcp_opts *o)
{
    server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->store = store;
    gcp_spill_init(&s->spill, store);
    s->verbose = o->verbose;
    s->in.fd = STDIN_FILENO;
    pthread_mutex_init(&s->out_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->job_cv, NULL);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->local_first = o->nremotes > 0;
    return s;
}

/* Frees a server (its store stays open). */
static void server_free(server *s)
{
    if (s == NULL)
        return;
    gcp_spill_close(&s->spill);
    pthread_cond_destroy(&s->idle_cv);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->job_cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->out_mu);
    free(s->in.line);
    free(s);
}

/* The session: handshake, requests until close or EOF, then everything
 * the go command waits for, in the order it waits. The exit status;
 * *storep is closed (and NULL) when the store had to spill. */
static int run_session(server *s, const gcp_opts *o, int64_t t0, acache_store **storep)
{
    acache_store *store = s->store;
    if (o->verbose)
        print_remotes(store, false);
    respond(s, 0, gcp_format_handshake(NULL));
    start_workers(s, o->workers >= 0 ? (size_t)o->workers : o->nremotes > 0 ? GCP_WORKERS : 0);
    int rc = serve(s);
    /* Answers already due are written before exiting, also on error. */
    wait_idle(s);
    stop_workers(s);
    if (rc == 0 && atomic_load(&s->out_broken))
        rc = 1;
    /* Uploads still queued go out now, within each remote's flush-timeout. */
    acache_flush(store);
    /* The -v summary still comes out before the go command returns. */
    if (o->verbose) {
        print_summary(s, now_ns() - t0);
        print_remotes(store, true);
    }
    /* The go command waits for our stdout to end, not for us to exit: end
     * it now, once everything the build did is safe (uploads above, counts
     * written here), and leave closing the store (folding the counts,
     * stopping a trim, writing a prefetch manifest) and exiting off its
     * path. */
    acache_save_counters(store);
    /* Spilled outputs (a full disk) go before the go command returns: it
     * used them during the build, and nothing may be left behind. Those
     * the store spilled itself go when it is closed: then, now. */
    uint64_t overflowed = gcp_spill_overflowed(&s->spill);
    if (overflowed > 0) {
        cli_err("gocacheprog: the cache's file system is full (no space, inodes or quota): "
                "%" PRIu64 " new outputs of this run were kept in $TMPDIR until now, not in the cache",
                overflowed);
        acache_close(store);
        *storep = s->store = NULL;
    }
    gcp_spill_close(&s->spill);
    end_stdout(s);
    return rc;
}

int cmd_gocacheprog(int argc, char **argv)
{
    gcp_opts o = { .workers = -1 };
    acache_store *store = NULL;
    server *s = NULL;
    int rc = 2;
    int64_t t0 = now_ns();

    o.remotes = calloc((size_t)argc + 1, sizeof *o.remotes);
    if (o.remotes == NULL)
        goto out;
    if ((rc = parse_args(argc, argv, &o)) >= 0)
        goto out;
    rc = 2;
    if (!remotes_from_env(&o))
        goto out;
    acache_set_log(log_line, NULL);
    /* The go command needs a path for every put: a full disk sends puts
     * to $TMPDIR rather than fail them (src/disk/overflow.c). */
    o.disk.spill = true;
    rc = open_stores(&o.disk, o.remotes, o.nremotes, &store);
    if (rc != 0)
        goto out;
    if ((s = server_new(store, &o)) == NULL) {
        cli_err("gocacheprog: out of memory");
        rc = 1;
        goto out;
    }
    /* A reader gone away must surface as EPIPE, so that the open put is
     * aborted, not as a silent death by signal. */
    signal(SIGPIPE, SIG_IGN);
    rc = run_session(s, &o, t0, &store);
out:
    acache_close(store);
    server_free(s);
    free(o.env_remotes);
    free(o.remotes);
    return rc;
}
