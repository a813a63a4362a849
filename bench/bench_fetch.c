/*
 * bench_fetch.c - benchmark: a remote fetch into an empty local store,
 * through acache's production path and through its physical floor, on the
 * same servers in the same run. bench/bench_fetch.sh starts the servers,
 * fills them and runs this; see bench/README.md.
 *
 * acache: a child process opens `disk:<empty dir>` and the remote as a
 * tier chain (acache_open + acache_tiers, as `acache gocacheprog` does)
 * and replays the go command's get sequence (--gets, one action id in hex
 * a line) with acache_get(flags 0), as the gocacheprog server does: the
 * first lookups find the session manifest, the prefetch threads fetch,
 * check and store, the lookups wait for them or fetch themselves.
 *
 * floor: a child process with --threads threads (default 4, acache's
 * prefetch default), each with plain sockets to the same server, takes
 * the entries of --plan ("action output size" in hex a line: what the
 * acache run stores) in turn and, per entry, asks for the record and the
 * object in one round trip (Redis: two pipelined GETs on one connection;
 * HTTP: one GET on each of two keep-alive connections, since nginx holds
 * the second answer of a pipelined pair back), or for the record alone
 * when it carries the object (16 KiB or less, acache's inline= default:
 * the object's bytes are the record's contents field), reads the bytes into a
 * reused buffer per connection (256 KiB, --floor-buf; allocated once per
 * thread, nothing per entry), and as each read arrives, hashes it (one
 * SHA-256 of the object, libcrypto EVP with the digest fetched once) and
 * writes it to a temp file, renamed into a two-hex-digit shard directory
 * once the object's hash is checked: per entry, one request round trip,
 * and per file open, write(s), close, rename. The bytes are copied twice
 * (socket to buffer, buffer to file), each while still in cache. No
 * helper can store the same bytes with less work; it stores the objects
 * byte for byte as acache does (a record is the remote's bytes).
 *
 * The parent forks one child per run, interleaving acache and floor
 * (alternating which goes first), and reads each child's wall time and
 * its CPU time (user + system, all threads) and page faults from wait4().
 * It removes the run's store, syncs and pauses between runs, off the clock.
 *
 * A benchmark only: it reports numbers and never asserts them; it writes
 * only under --dir; it exits non-zero only when a run fails.
 *
 *   bench_fetch --gets F --plan F --dir D [--redis SPEC] [--http SPEC]
 *               [--runs N] [--threads N] [--floor-buf BYTES]
 *   bench_fetch --one acache|floor --remote SPEC --gets F --plan F
 *               --dir EMPTY_DIR [--threads N] [--floor-buf BYTES]
 *                                                   (one run, no fork:
 *                                                     for callgrind, strace)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "acache.h"
#include "rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 101
#define MAX_THREADS 64

typedef struct plan_entry {
    char action[65], output[65];
    uint64_t size;
} plan_entry;

typedef struct options {
    const char *gets_file, *plan_file, *dir, *redis, *http, *one, *remote;
    int runs, threads;
} options;

static acache_id *gets;
static size_t ngets;
static plan_entry *plan;
static size_t nplan;
static uint64_t plan_bytes;
/* The floor's buffer per connection (--floor-buf): 256 KiB, so that the
 * bytes a read brings are still in the core's L2 cache when they are
 * hashed and written, with two of the threads on one core; a 1 MiB one
 * took 2.3 times the page faults (1376 against 606 on Redis) for 22%
 * fewer reads (bench/README.md). */
static size_t floor_buf = (size_t)256 << 10;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_fetch: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Inputs                                                               */

static void load_gets(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[256];
    size_t cap = 0;
    if (!f)
        die("cannot open %s", path);
    while (fgets(line, sizeof line, f)) {
        if (strlen(line) < 64)
            continue;
        if (ngets == cap) {
            cap = cap ? cap * 2 : 1024;
            gets = realloc(gets, cap * sizeof *gets);
            if (!gets)
                die("%s", "out of memory");
        }
        if (acache_id_from_hex(line, 64, &gets[ngets]) == ACACHE_OK)
            ngets++;
    }
    fclose(f);
}

static void load_plan(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 0;
    plan_entry e;
    if (!f)
        die("cannot open %s", path);
    while (fscanf(f, "%64s %64s %" SCNu64, e.action, e.output, &e.size) == 3) {
        if (nplan == cap) {
            cap = cap ? cap * 2 : 1024;
            plan = realloc(plan, cap * sizeof *plan);
            if (!plan)
                die("%s", "out of memory");
        }
        plan[nplan++] = e;
        plan_bytes += e.size;
    }
    fclose(f);
}

/* ------------------------------------------------------------------ */
/* acache: the production path                                          */

static int run_acache(const char *dir, const char *remote)
{
    char spec[4200];
    acache_store *stores[2], *chain;
    snprintf(spec, sizeof spec, "disk:%s", dir);
    if (acache_open(spec, &stores[0]) != ACACHE_OK || acache_open(remote, &stores[1]) != ACACHE_OK ||
        acache_tiers(stores, 2, &chain) != ACACHE_OK) {
        fprintf(stderr, "bench_fetch: acache: %s\n", acache_last_error());
        return 1;
    }
    size_t hits = 0;
    for (size_t i = 0; i < ngets; i++) {
        acache_result res;
        memset(&res, 0, sizeof res);
        if (acache_get(chain, &gets[i], 0, &res) == ACACHE_OK)
            hits++;
        acache_result_release(&res);
    }
    acache_prefetch_info pi;
    acache_prefetch_stats(chain, &pi);
    acache_close(chain);
    fprintf(stderr,
            "  acache: %zu of %zu gets hit; prefetch loaded %d listed %" PRIu64 " fetched %" PRIu64
            " local %" PRIu64 " failed %" PRIu64 " waited %" PRIu64 "\n",
            hits, ngets, pi.loaded, pi.listed, pi.fetched, pi.local, pi.failed, pi.waited);
    return 0;
}

/* ------------------------------------------------------------------ */
/* floor: plain sockets, one reused buffer, SHA-256, write+rename       */

typedef struct server {
    bool http;
    char host[64];
    int port;
    char prefix[256]; /* Redis key prefix, or the HTTP base path */
} server;

typedef struct conn {
    int fd;
    unsigned char *buf;
    size_t start, end;
} conn;

typedef struct floor_run {
    const server *srv;
    EVP_MD *sha256; /* fetched once: EVP_sha256() looks it up at every init */
    const char *dir;
    atomic_size_t next;
    atomic_size_t bad, failed;
} floor_run;

static void parse_server(const char *spec, server *s)
{
    memset(s, 0, sizeof *s);
    const char *p;
    if (!strncmp(spec, "redis://", 8)) {
        p = spec + 8;
        const char *pre = strstr(spec, "prefix=");
        snprintf(s->prefix, sizeof s->prefix, "%.*s", pre ? (int)strcspn(pre + 7, "&") : 6,
                 pre ? pre + 7 : "acache");
    } else if (!strncmp(spec, "http://", 7)) {
        p = spec + 7;
        s->http = true;
        const char *slash = strchr(p, '/');
        snprintf(s->prefix, sizeof s->prefix, "%.*s", slash ? (int)strcspn(slash, "?") : 0,
                 slash ? slash : "");
    } else {
        die("want a redis:// or http:// spec, got %s", spec);
    }
    if (sscanf(p, "%63[^:]:%d", s->host, &s->port) != 2)
        die("want HOST:PORT in %s", spec);
}

static int dial(const server *s)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port) };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || inet_pton(AF_INET, s->host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static bool conn_fill(conn *c)
{
    if (c->start == c->end)
        c->start = c->end = 0;
    ssize_t n;
    do
        n = read(c->fd, c->buf + c->end, floor_buf - c->end);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return false;
    c->end += (size_t)n;
    return true;
}

/* A line without its CRLF into out (at most max-1 bytes). */
static bool conn_line(conn *c, char *out, size_t max)
{
    for (;;) {
        unsigned char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->start));
            size_t keep = n > 0 && nl[-1] == '\r' ? n - 1 : n;
            if (keep >= max)
                return false;
            memcpy(out, c->buf + c->start, keep);
            out[keep] = '\0';
            c->start += n + 1;
            return true;
        }
        if (c->start > 0) { /* make room at the end */
            memmove(c->buf, c->buf + c->start, c->end - c->start);
            c->end -= c->start;
            c->start = 0;
        }
        if (c->end == floor_buf || !conn_fill(c))
            return false;
    }
}

/* len body bytes: hashed into sha (if any) and written to fd. */
static bool conn_body(conn *c, uint64_t len, int fd, EVP_MD_CTX *sha)
{
    while (len > 0) {
        if (c->start == c->end && !conn_fill(c))
            return false;
        size_t n = c->end - c->start;
        if (n > len)
            n = (size_t)len;
        const unsigned char *p = c->buf + c->start;
        if (sha && !EVP_DigestUpdate(sha, p, n))
            return false;
        for (size_t done = 0; done < n;) {
            ssize_t w = write(fd, p + done, n - done);
            if (w <= 0)
                return false;
            done += (size_t)w;
        }
        c->start += n;
        len -= n;
    }
    return true;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Objects this small ride in their record (acache's inline= default,
 * REMOTE_INLINE_MAX): for them the record is the only request. */
#define INLINE_MAX ((uint64_t)16 << 10)

/* Both requests of an entry at once, or the record's alone for an entry
 * whose record carries its object. Redis: pipelined on one connection.
 * HTTP: one on each of two connections (nginx holds the second answer of
 * a pipelined pair behind the first one's ACK: milliseconds per entry). */
static bool send_requests(const server *s, const conn *c, const plan_entry *e)
{
    char req[2048];
    int n;
    if (e->size <= INLINE_MAX) {
        n = s->http ? snprintf(req, sizeof req, "GET %s/ac/%s HTTP/1.1\r\nHost: %s\r\n\r\n",
                               s->prefix, e->action, s->host)
                    : snprintf(req, sizeof req, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s:ac:%s\r\n",
                               strlen(s->prefix) + 4 + 64, s->prefix, e->action);
        return send_all(c[0].fd, req, (size_t)n);
    }
    if (s->http) {
        n = snprintf(req, sizeof req, "GET %s/ac/%s HTTP/1.1\r\nHost: %s\r\n\r\n", s->prefix,
                     e->action, s->host);
        if (!send_all(c[0].fd, req, (size_t)n))
            return false;
        n = snprintf(req, sizeof req, "GET %s/cas/%s HTTP/1.1\r\nHost: %s\r\n\r\n", s->prefix,
                     e->output, s->host);
        return send_all(c[1].fd, req, (size_t)n);
    }
    n = snprintf(req, sizeof req,
                 "*2\r\n$3\r\nGET\r\n$%zu\r\n%s:ac:%s\r\n*2\r\n$3\r\nGET\r\n$%zu\r\n%s:cas:%s\r\n",
                 strlen(s->prefix) + 4 + 64, s->prefix, e->action, strlen(s->prefix) + 5 + 64,
                 s->prefix, e->output);
    return send_all(c[0].fd, req, (size_t)n);
}

/* The length of the next reply's body (header consumed); -1 if none. */
static int64_t reply_length(const server *s, conn *c)
{
    char line[1024];
    if (!conn_line(c, line, sizeof line))
        return -1;
    if (!s->http)
        return line[0] == '$' ? strtoll(line + 1, NULL, 10) : -1;
    if (strncmp(line, "HTTP/1.1 200", 12) != 0)
        return -1;
    int64_t len = -1;
    while (conn_line(c, line, sizeof line) && line[0])
        if (!strncasecmp(line, "Content-Length:", 15))
            len = strtoll(line + 15, NULL, 10);
    return len;
}

static bool reply_end(const server *s, conn *c)
{
    char crlf[4];
    return s->http || conn_line(c, crlf, sizeof crlf);
}

/* Writes tmp's file to DIR/KIND/XX/hex, making the shard if needed. */
static bool place(const char *dir, const char *tmp, const char *kind, const char *hex)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/%.2s/%s", dir, kind, hex, hex);
    if (rename(tmp, path) == 0)
        return true;
    if (errno != ENOENT)
        return false;
    snprintf(path, sizeof path, "%s/%s/%.2s", dir, kind, hex);
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return false;
    snprintf(path, sizeof path, "%s/%s/%.2s/%s", dir, kind, hex, hex);
    return rename(tmp, path) == 0;
}

/* Receives one reply into a new temp file (hashing it if sha); -1 on
 * failure, else the body length. */
static int64_t receive(floor_run *fr, conn *c, const char *tmp, EVP_MD_CTX *sha)
{
    int64_t len = reply_length(fr->srv, c);
    if (len < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && conn_body(c, (uint64_t)len, fd, sha) && reply_end(fr->srv, c);
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    return ok ? len : -1;
}

/* The bytes of field `want` (length-delimited) of the message [p, end),
 * or NULL. */
static const unsigned char *pb_find(const unsigned char *p, const unsigned char *end,
                                    unsigned want, size_t *len)
{
    while (p < end) {
        uint64_t key = 0, v = 0;
        for (unsigned sh = 0; p < end && sh < 64; sh += 7) {
            key |= (uint64_t)(*p & 0x7f) << sh;
            if (!(*p++ & 0x80))
                break;
        }
        if ((key & 7) != 0 && (key & 7) != 2)
            return NULL;
        for (unsigned sh = 0; p < end && sh < 64; sh += 7) {
            v |= (uint64_t)(*p & 0x7f) << sh;
            if (!(*p++ & 0x80))
                break;
        }
        if ((key & 7) == 0)
            continue;
        if (v > (uint64_t)(end - p))
            return NULL;
        if (key >> 3 == want) {
            *len = (size_t)v;
            return p;
        }
        p += v;
    }
    return NULL;
}

/* fd gets [p, p+n); closed. */
static bool write_file(const char *path, const unsigned char *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0;
    for (size_t done = 0; ok && done < n;) {
        ssize_t w = write(fd, p + done, n - done);
        ok = w > 0;
        done += ok ? (size_t)w : 0;
    }
    return fd >= 0 && close(fd) == 0 && ok;
}

/* An entry whose record carries its object: the record's bytes whole in
 * the buffer, written as the record; its contents (ActionResult field 2,
 * OutputFile field 5; none for an empty object) hashed and written as the
 * object. */
static bool floor_inline(floor_run *fr, conn *c, const plan_entry *e, EVP_MD_CTX *sha,
                         const char *rtmp, const char *otmp, unsigned char *md, unsigned *mdlen)
{
    int64_t len = reply_length(fr->srv, c);
    if (len < 0 || (uint64_t)len > floor_buf)
        return false;
    if (c->start > 0 && floor_buf - c->start < (uint64_t)len) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    while (c->end - c->start < (uint64_t)len)
        if (!conn_fill(c))
            return false;
    const unsigned char *rec = c->buf + c->start, *body = (const unsigned char *)"";
    size_t flen = 0, blen = 0;
    const unsigned char *file = pb_find(rec, rec + len, 2, &flen);
    if (file && e->size > 0)
        body = pb_find(file, file + flen, 5, &blen);
    if (!file || !body || blen != e->size || !write_file(rtmp, rec, (size_t)len) ||
        !EVP_DigestInit_ex(sha, fr->sha256, NULL) || !EVP_DigestUpdate(sha, body, blen) ||
        !EVP_DigestFinal_ex(sha, md, mdlen) || !write_file(otmp, body, blen))
        return false;
    c->start += (size_t)len;
    return reply_end(fr->srv, c);
}

static bool floor_entry(floor_run *fr, conn *c, const plan_entry *e, EVP_MD_CTX *sha, int tid)
{
    char rtmp[4400], otmp[4400];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    acache_id want;
    snprintf(rtmp, sizeof rtmp, "%s/tmp/r%d", fr->dir, tid);
    snprintf(otmp, sizeof otmp, "%s/tmp/o%d", fr->dir, tid);
    conn *oc = fr->srv->http ? &c[1] : &c[0]; /* where the object comes */
    if (!send_requests(fr->srv, c, e))
        return false;
    if (e->size <= INLINE_MAX) {
        if (!floor_inline(fr, &c[0], e, sha, rtmp, otmp, md, &mdlen))
            return false;
    } else if (receive(fr, &c[0], rtmp, NULL) < 0 || !EVP_DigestInit_ex(sha, fr->sha256, NULL) ||
               receive(fr, oc, otmp, sha) < 0 || !EVP_DigestFinal_ex(sha, md, &mdlen)) {
        return false;
    }
    acache_id_from_hex(e->output, 64, &want);
    if (mdlen != ACACHE_ID_SIZE || memcmp(md, want.bytes, ACACHE_ID_SIZE) != 0) {
        atomic_fetch_add(&fr->bad, 1);
        unlink(otmp);
        unlink(rtmp);
        return true;
    }
    return place(fr->dir, otmp, "o", e->output) && place(fr->dir, rtmp, "a", e->action);
}

static _Atomic int next_tid;

static void *floor_thread(void *arg)
{
    floor_run *fr = arg;
    int tid = atomic_fetch_add(&next_tid, 1);
    /* The record's connection and, for HTTP, the object's, each with its
     * own reused buffer. */
    int nconn = fr->srv->http ? 2 : 1;
    unsigned char *buf = malloc(floor_buf);
    conn c[2] = { { -1, buf, 0, 0 }, { -1, NULL, 0, 0 } };
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    bool ok = buf && sha;
    for (int i = 0; i < nconn && ok; i++)
        ok = (c[i].fd = dial(fr->srv)) >= 0;
    if (nconn == 2 && ok)
        ok = (c[1].buf = malloc(floor_buf)) != NULL;
    if (!ok) {
        atomic_fetch_add(&fr->failed, 1);
    } else {
        for (size_t i; (i = atomic_fetch_add(&fr->next, 1)) < nplan;) {
            if (!floor_entry(fr, c, &plan[i], sha, tid)) {
                atomic_fetch_add(&fr->failed, 1);
                break;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (c[i].fd >= 0)
            close(c[i].fd);
        free(c[i].buf);
    }
    EVP_MD_CTX_free(sha);
    return NULL;
}

static int run_floor(const char *dir, const char *remote, int threads)
{
    server srv;
    char path[4200];
    parse_server(remote, &srv);
    for (const char *const *sub = (const char *const[]){ "tmp", "o", "a", NULL }; *sub; sub++) {
        snprintf(path, sizeof path, "%s/%s", dir, *sub);
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            die("cannot make %s", path);
    }
    floor_run fr = { .srv = &srv, .dir = dir, .sha256 = EVP_MD_fetch(NULL, "SHA256", NULL) };
    if (!fr.sha256)
        die("%s", "no SHA-256 in libcrypto");
    pthread_t t[MAX_THREADS];
    int n = 0;
    for (; n < threads; n++)
        if (pthread_create(&t[n], NULL, floor_thread, &fr) != 0)
            break;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    size_t bad = atomic_load(&fr.bad), failed = atomic_load(&fr.failed);
    fprintf(stderr, "  floor: %zu entries, %zu did not match their id, %zu threads failed\n", nplan,
            bad, failed);
    EVP_MD_free(fr.sha256);
    return failed || n < threads ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Runs, interleaved, and the report                                    */

typedef struct sample {
    double wall, cpu, minflt;
} sample;

static int run_one(const options *o, const char *mode, const char *remote, const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        die("cannot make %s", dir);
    if (!strcmp(mode, "acache"))
        return run_acache(dir, remote);
    return run_floor(dir, remote, o->threads);
}

/* Forks one run; its wall time, CPU time and faults into *out. */
static bool timed_run(const options *o, const char *mode, const char *remote, const char *dir,
                      sample *out)
{
    fflush(NULL);
    int64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid == 0)
        _exit(run_one(o, mode, remote, dir));
    int status = 0;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid)
        return false;
    out->wall = (double)(now_ns() - t0) / 1e9;
    out->cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
    out->minflt = (double)ru.ru_minflt;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const sample *s, int n, size_t field)
{
    double v[MAX_RUNS];
    for (int i = 0; i < n; i++)
        v[i] = *(const double *)((const char *)&s[i] + field);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void report(const char *name, const sample *ac, const sample *fl, int n)
{
    double mib = (double)plan_bytes / (1 << 20);
    const sample *both[2] = { ac, fl };
    const char *modes[2] = { "acache", "floor" };
    double wall[2], cpu[2];
    for (int m = 0; m < 2; m++) {
        wall[m] = median(both[m], n, offsetof(sample, wall));
        cpu[m] = median(both[m], n, offsetof(sample, cpu));
        printf("%-6s %-7s %9.3f s %9.3f s %9.2f ms %10.0f\n", name, modes[m], wall[m], cpu[m],
               cpu[m] * 1000 / mib, median(both[m], n, offsetof(sample, minflt)));
    }
    printf("%-6s acache/floor: wall %.2fx, cpu %.2fx\n", name, wall[0] / wall[1], cpu[0] / cpu[1]);
}

static int run_all(const options *o)
{
    const char *names[2] = { "redis", "http" }, *specs[2] = { o->redis, o->http };
    static sample res[2][2][MAX_RUNS];
    char dir[4200];
    printf("%zu gets, %zu entries, %.1f MiB of objects; %d runs per mode and server, floor "
           "threads %d\n", ngets, nplan, (double)plan_bytes / (1 << 20), o->runs, o->threads);
    for (int r = 0; r < o->runs; r++) {
        for (int s = 0; s < 2; s++) {
            if (!specs[s])
                continue;
            for (int k = 0; k < 2; k++) {
                int m = (k + r) % 2; /* alternate which mode goes first */
                const char *mode = m == 0 ? "acache" : "floor";
                snprintf(dir, sizeof dir, "%s/r%d-%s-%s", o->dir, r, names[s], mode);
                sample *x = &res[s][m][r];
                if (!timed_run(o, mode, specs[s], dir, x)) {
                    fprintf(stderr, "bench_fetch: run %d %s %s failed\n", r, names[s], mode);
                    return 1;
                }
                printf("run %d %-6s %-7s wall %7.3f s  cpu %7.3f s  minflt %8.0f\n", r + 1,
                       names[s], mode, x->wall, x->cpu, x->minflt);
                fflush(stdout);
                /* Off the clock: the run's store goes, so that the next
                 * run reuses its memory (tmpfs) instead of touching memory
                 * this virtual machine never used, which costs a fault in
                 * the host per page: kept, every run from the 15th on took
                 * three times the CPU time, acache's and the floor's. */
                bench_rmtree(dir);
                sync(); /* the write-back is not the next run's */
                usleep(500000);
            }
        }
    }
    printf("\n== medians of %d runs (%.1f MiB) ==\n", o->runs, (double)plan_bytes / (1 << 20));
    printf("%-6s %-7s %11s %11s %12s %10s\n", "server", "mode", "wall", "cpu", "cpu/MiB",
           "minflt");
    for (int s = 0; s < 2; s++)
        if (specs[s])
            report(names[s], res[s][0], res[s][1], o->runs);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_fetch --gets F --plan F --dir D [--redis SPEC] [--http SPEC] [--runs N]\n"
            "                   [--threads N] [--floor-buf BYTES]\n"
            "       bench_fetch --one acache|floor --remote SPEC --gets F --plan F --dir EMPTY\n"
            "                   [--threads N] [--floor-buf BYTES]\n"
            "(bench/bench_fetch.sh starts the servers, fills them and runs this)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o = { .runs = 5, .threads = 4 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--gets")) o.gets_file = v;
        else if (!strcmp(a, "--plan")) o.plan_file = v;
        else if (!strcmp(a, "--dir")) o.dir = v;
        else if (!strcmp(a, "--redis")) o.redis = v;
        else if (!strcmp(a, "--http")) o.http = v;
        else if (!strcmp(a, "--one")) o.one = v;
        else if (!strcmp(a, "--remote")) o.remote = v;
        else if (!strcmp(a, "--runs")) o.runs = atoi(v);
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--floor-buf")) floor_buf = (size_t)strtoul(v, NULL, 0);
        else usage();
    }
    if (!o.gets_file || !o.plan_file || !o.dir || o.runs < 1 || o.runs > MAX_RUNS ||
        o.threads < 1 || o.threads > MAX_THREADS || floor_buf < 4096)
        usage();
    load_gets(o.gets_file);
    load_plan(o.plan_file);
    if (o.one) {
        if (!o.remote || (strcmp(o.one, "acache") && strcmp(o.one, "floor")))
            usage();
        return run_one(&o, o.one, o.remote, o.dir);
    }
    if (!o.redis && !o.http)
        usage();
    return run_all(&o);
}
