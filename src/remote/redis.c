/*
 * redis.c - the Redis (or Valkey) transport of a remote store,
 * through hiredis.
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?prefix=P&...
 *   redis+unix:///PATH/TO/SOCKET?db=N&prefix=P&...
 *
 * Names are P:ac:<hex> and P:cas:<hex>, plain string values. A value is
 * read in ranges of REDIS_CHUNK bytes (GETRANGE), so neither side holds a
 * large object whole; the first range goes out in one round trip with an
 * EXISTS that tells a missing key from an empty value. A value larger than
 * a chunk is written to a temporary key (which expires in an hour if the
 * writer dies) with SET and APPEND, then renamed into place, so a reader
 * never sees half of it.
 *
 * Connections are opened at first use, with the connect timeout, and kept
 * in a small pool shared by all threads; every read and write on them has
 * the operation timeout (SO_RCVTIMEO/SO_SNDTIMEO). A connection that saw
 * an I/O error is closed, never reused. This file must never let SIGPIPE
 * reach the process (hiredis writes with write(2)) and never print.
 */
#include "core/error.h"
#include "remote/remote.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Bytes per GETRANGE / APPEND. */
#define REDIS_CHUNK ((size_t)4 << 20)
/* A temporary key lives this long if its writer dies before the rename. */
#define TMP_TTL_MS "3600000"
#define KEY_MAX 256

typedef struct redis_t {
    bool unix_sock;
    char host[256];
    int port;
    char sock[PATH_MAX];
    char user[128], pass[256];
    bool auth;
    unsigned long db;
    char prefix[128];
    char where[PATH_MAX + 16];  /* host:port or the socket, for messages */
    struct timeval connect_tv, op_tv;
    remote_pool pool;
} redis_t;

/* ------------------------------------------------------------------ */
/* SIGPIPE: blocked around hiredis calls in this thread, and a SIGPIPE
 * they raised is consumed before it is unblocked.                      */

typedef struct pipe_guard {
    sigset_t old;
    bool pending_before;
} pipe_guard;

static void guard_enter(pipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigpending(&pending);
    g->pending_before = sigismember(&pending, SIGPIPE) == 1;
}

static void guard_leave(pipe_guard *g)
{
    sigset_t pending;
    if (!g->pending_before && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        sigset_t set;
        struct timespec zero = { 0, 0 };
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigtimedwait(&set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */

static const char *conn_error(const redisContext *c)
{
    /* A read that hit SO_RCVTIMEO reports EAGAIN. */
    if (c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily unavailable"))
        return "timed out waiting for the server";
    if (c->err == REDIS_ERR_EOF)
        return "the server closed the connection";
    return c->errstr[0] ? c->errstr : "connection error";
}

static void conn_free(void *c) { redisFree(c); }

/* Sends argc commands (argv/lens each hold one command's words, split by
 * counts) and reads their replies into replies[]. false (message set, the
 * connection unusable) on an I/O error. */
static bool run(redis_t *rt, redisContext *c, int ncmd, const int *counts, const char **argv,
                const size_t *lens, redisReply **replies)
{
    pipe_guard g;
    bool ok = true;
    guard_enter(&g);
    for (int i = 0, at = 0; i < ncmd; at += counts[i], i++)
        if (redisAppendCommandArgv(c, counts[i], argv + at, lens + at) != REDIS_OK)
            ok = false;
    for (int i = 0; i < ncmd; i++) {
        replies[i] = NULL;
        if (ok && redisGetReply(c, (void **)&replies[i]) != REDIS_OK)
            ok = false;
    }
    guard_leave(&g);
    if (!ok) {
        for (int i = 0; i < ncmd; i++)
            if (replies[i])
                freeReplyObject(replies[i]);
        set_error(ACACHE_EIO, "redis %s: %s", rt->where, conn_error(c));
    }
    return ok;
}

/* One command; NULL (message set) on an I/O error. */
static redisReply *run1(redis_t *rt, redisContext *c, int argc, const char **argv,
                        const size_t *lens)
{
    redisReply *reply = NULL;
    return run(rt, c, 1, &argc, argv, lens, &reply) ? reply : NULL;
}

static bool reply_ok(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STATUS && r->len == 2 && !memcmp(r->str, "OK", 2);
}

static acache_status reply_error(redis_t *rt, const char *what, const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        return set_error(ACACHE_EIO, "redis %s: %s: %.*s", rt->where, what, (int)r->len, r->str);
    return set_error(ACACHE_EIO, "redis %s: %s: unexpected reply", rt->where, what);
}

/* A command a new connection needs (AUTH, SELECT), answered OK or not. */
static bool conn_setup(redis_t *rt, redisContext *c, const char *what, int argc,
                       const char **argv, const size_t *lens, acache_status *st)
{
    redisReply *r = run1(rt, c, argc, argv, lens);
    if (!r) {
        *st = ACACHE_EIO;
        return false;
    }
    bool ok = reply_ok(r);
    if (!ok)
        *st = reply_error(rt, what, r);
    freeReplyObject(r);
    return ok;
}

static redisContext *conn_open(redis_t *rt, acache_status *st)
{
    pipe_guard g;
    guard_enter(&g);
    redisContext *c = rt->unix_sock ? redisConnectUnixWithTimeout(rt->sock, rt->connect_tv)
                                    : redisConnectWithTimeout(rt->host, rt->port, rt->connect_tv);
    guard_leave(&g);
    if (!c) {
        *st = set_error(ACACHE_ENOMEM, "redis %s: out of memory", rt->where);
        return NULL;
    }
    if (c->err) {
        *st = set_error(ACACHE_EIO, "redis %s: cannot connect: %s", rt->where, conn_error(c));
        goto fail;
    }
    if (redisSetTimeout(c, rt->op_tv) != REDIS_OK) {
        *st = set_error(ACACHE_EIO, "redis %s: cannot set timeouts: %s", rt->where, conn_error(c));
        goto fail;
    }
    if (!rt->unix_sock)
        redisEnableKeepAlive(c);
    if (rt->auth) {
        const char *argv[3] = { "AUTH", rt->user, rt->pass };
        size_t lens[3] = { 4, strlen(rt->user), strlen(rt->pass) };
        int skip = rt->user[0] ? 0 : 1; /* AUTH password, or AUTH user password */
        argv[skip] = "AUTH";
        lens[skip] = 4;
        if (!conn_setup(rt, c, "AUTH", 3 - skip, argv + skip, lens + skip, st))
            goto fail;
    }
    if (rt->db) {
        char db[24];
        int n = snprintf(db, sizeof db, "%lu", rt->db);
        const char *argv[2] = { "SELECT", db };
        size_t lens[2] = { 6, (size_t)n };
        if (!conn_setup(rt, c, "SELECT", 2, argv, lens, st))
            goto fail;
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

static redisContext *conn_get(redis_t *rt, acache_status *st)
{
    redisContext *c = remote_pool_take(&rt->pool);
    return c ? c : conn_open(rt, st);
}

static void conn_release(redis_t *rt, redisContext *c)
{
    if (c->err || !remote_pool_give(&rt->pool, c))
        redisFree(c);
}

static int make_key(const redis_t *rt, remote_ns ns, const char *hex, char key[KEY_MAX])
{
    return snprintf(key, KEY_MAX, "%s:%s:%s", rt->prefix, ns == REMOTE_AC ? "ac" : "cas", hex);
}

/* ------------------------------------------------------------------ */
/* Transport operations                                                 */

static acache_status redis_fetch(void *t, remote_ns ns, const char *hex, uint64_t limit,
                                 const remote_sink *sink)
{
    redis_t *rt = t;
    char key[KEY_MAX], from[24], to[24];
    acache_status st = ACACHE_OK;
    size_t klen = (size_t)make_key(rt, ns, hex, key);
    redisContext *c = conn_get(rt, &st);
    if (!c)
        return st;
    /* limit + 1 bytes are asked for, so that a longer value shows. */
    uint64_t pos = 0, want = limit < REDIS_CHUNK ? limit + 1 : REDIS_CHUNK;
    int counts[2] = { 2, 4 };
    const char *argv[6] = { "EXISTS", key, "GETRANGE", key, from, to };
    size_t lens[6] = { 6, klen, 8, klen, 0, 0 };
    redisReply *replies[2];
    bool first = true;
    for (;;) {
        lens[4] = (size_t)snprintf(from, sizeof from, "%" PRIu64, pos);
        lens[5] = (size_t)snprintf(to, sizeof to, "%" PRIu64, pos + want - 1);
        if (!run(rt, c, first ? 2 : 1, first ? counts : counts + 1, first ? argv : argv + 2,
                 first ? lens : lens + 2, replies)) {
            st = ACACHE_EIO;
            break;
        }
        redisReply *range = replies[first ? 1 : 0];
        if (first && (replies[0]->type != REDIS_REPLY_INTEGER || replies[0]->integer == 0)) {
            st = replies[0]->type == REDIS_REPLY_INTEGER ? ACACHE_MISS
                                                         : reply_error(rt, "EXISTS", replies[0]);
        } else if (range->type != REDIS_REPLY_STRING) {
            st = reply_error(rt, "GETRANGE", range);
        } else if (range->len > limit - pos) {
            st = set_error(ACACHE_CORRUPT, "redis %s: %s is longer than %" PRIu64 " bytes",
                           rt->where, key, limit);
        } else if (range->len > 0) {
            st = sink->write(sink->ctx, range->str, range->len);
        }
        size_t got = range->type == REDIS_REPLY_STRING ? range->len : 0;
        for (int i = 0; i < (first ? 2 : 1); i++)
            freeReplyObject(replies[i]);
        first = false;
        pos += got;
        if (st != ACACHE_OK || got < want)
            break;
        want = limit + 1 - pos < REDIS_CHUNK ? limit + 1 - pos : REDIS_CHUNK;
    }
    conn_release(rt, c);
    return st;
}

/* CMD KEY, for EXISTS and DEL, which answer with a count: ACACHE_OK if
 * it is not 0, ACACHE_MISS if it is. An error reply to a write (DEL) is a
 * refusal. */
static acache_status key_count(redis_t *rt, const char *cmd, bool writes, remote_ns ns,
                               const char *hex)
{
    char key[KEY_MAX];
    acache_status st = ACACHE_OK;
    size_t klen = (size_t)make_key(rt, ns, hex, key);
    redisContext *c = conn_get(rt, &st);
    if (!c)
        return st;
    const char *argv[2] = { cmd, key };
    size_t lens[2] = { strlen(cmd), klen };
    redisReply *r = run1(rt, c, 2, argv, lens);
    if (!r)
        st = ACACHE_EIO;
    else if (r->type == REDIS_REPLY_INTEGER)
        st = r->integer > 0 ? ACACHE_OK : ACACHE_MISS;
    else if (writes && r->type == REDIS_REPLY_ERROR)
        st = set_error(REMOTE_REFUSED, "redis %s: %s refused: %.*s", rt->where, cmd, (int)r->len,
                       r->str);
    else
        st = reply_error(rt, cmd, r);
    if (r)
        freeReplyObject(r);
    conn_release(rt, c);
    return st;
}

static acache_status redis_exists(void *t, remote_ns ns, const char *hex)
{
    return key_count(t, "EXISTS", false, ns, hex);
}

/* A write the server answered with an error (read-only replica, out of
 * memory, no permission) is refused, not failed. */
static acache_status write_reply(redis_t *rt, const char *what, redisReply *r)
{
    acache_status st = ACACHE_OK;
    if (!r)
        return ACACHE_EIO;
    if (r->type == REDIS_REPLY_ERROR)
        st = set_error(REMOTE_REFUSED, "redis %s: %s refused: %.*s", rt->where, what, (int)r->len,
                       r->str);
    else if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_INTEGER)
        st = reply_error(rt, what, r);
    freeReplyObject(r);
    return st;
}

/* A large value: SET tmp first-chunk PX, APPEND tmp chunk..., RENAME. */
static acache_status store_chunked(redis_t *rt, redisContext *c, const char *key, const char *hex,
                                   const char *data, size_t len, const atomic_bool *cancel)
{
    char tmp[KEY_MAX];
    uint64_t salt = 0;
    if (getrandom(&salt, sizeof salt, GRND_NONBLOCK) != sizeof salt)
        salt = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&salt;
    size_t tlen = (size_t)snprintf(tmp, sizeof tmp, "%s:tmp:%s.%016" PRIx64, rt->prefix, hex, salt);
    size_t klen = strlen(key);
    acache_status st = ACACHE_OK;
    for (size_t pos = 0; pos < len && st == ACACHE_OK; pos += REDIS_CHUNK) {
        size_t n = len - pos < REDIS_CHUNK ? len - pos : REDIS_CHUNK;
        if (atomic_load(cancel)) {
            st = set_error(ACACHE_EIO, "redis %s: upload cancelled", rt->where);
            break;
        }
        if (pos == 0) {
            const char *argv[5] = { "SET", tmp, data, "PX", TMP_TTL_MS };
            size_t lens[5] = { 3, tlen, n, 2, sizeof TMP_TTL_MS - 1 };
            st = write_reply(rt, "SET", run1(rt, c, 5, argv, lens));
        } else {
            const char *argv[3] = { "APPEND", tmp, data + pos };
            size_t lens[3] = { 6, tlen, n };
            st = write_reply(rt, "APPEND", run1(rt, c, 3, argv, lens));
        }
    }
    if (st == ACACHE_OK) {
        int counts[2] = { 3, 2 };
        const char *argv[5] = { "RENAME", tmp, key, "PERSIST", key };
        size_t lens[5] = { 6, tlen, klen, 7, klen };
        redisReply *r[2];
        if (!run(rt, c, 2, counts, argv, lens, r))
            return ACACHE_EIO;
        st = write_reply(rt, "RENAME", r[0]);
        acache_status st2 = write_reply(rt, "PERSIST", r[1]);
        return st != ACACHE_OK ? st : st2;
    }
    if (!c->err) {
        /* Best effort; the key expires anyway. */
        const char *argv[2] = { "DEL", tmp };
        size_t lens[2] = { 3, tlen };
        redisReply *r = run1(rt, c, 2, argv, lens);
        if (r)
            freeReplyObject(r);
    }
    return st;
}

static acache_status redis_store(void *t, remote_ns ns, const char *hex, const void *data,
                                 size_t len, const atomic_bool *cancel)
{
    redis_t *rt = t;
    char key[KEY_MAX];
    acache_status st = ACACHE_OK;
    size_t klen = (size_t)make_key(rt, ns, hex, key);
    redisContext *c = conn_get(rt, &st);
    if (!c)
        return st;
    if (len > REDIS_CHUNK) {
        st = store_chunked(rt, c, key, hex, data, len, cancel);
    } else {
        const char *argv[3] = { "SET", key, len ? data : "" };
        size_t lens[3] = { 3, klen, len };
        st = write_reply(rt, "SET", run1(rt, c, 3, argv, lens));
    }
    conn_release(rt, c);
    return st;
}

static acache_status redis_remove(void *t, remote_ns ns, const char *hex)
{
    return key_count(t, "DEL", true, ns, hex);
}

static void redis_close(void *t)
{
    redis_t *rt = t;
    remote_pool_destroy(&rt->pool, conn_free);
    free(rt);
}

static const transport_ops redis_transport = {
    .fetch = redis_fetch,
    .exists = redis_exists,
    .store = redis_store,
    .remove = redis_remove,
    .close = redis_close,
};

/* ------------------------------------------------------------------ */
/* Opening                                                              */

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Copies text[0..n) into out, decoding %XX escapes. */
static bool percent_decode(const char *text, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(text[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(text[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= size)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

static void to_timeval(int64_t ns, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ns / 1000000000);
    tv->tv_usec = (suseconds_t)(ns % 1000000000 / 1000);
    if (tv->tv_sec == 0 && tv->tv_usec == 0)
        tv->tv_usec = 1;
}

/* [[user]:password@] at the start of the authority; moves *p past it. */
static acache_status parse_userinfo(redis_t *rt, const char **p, const char *end)
{
    const char *at = NULL;
    for (const char *q = *p; q < end; q++)
        if (*q == '@')
            at = q;
    if (!at)
        return ACACHE_OK;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    if (!colon)
        return set_error(ACACHE_EINVAL, "redis spec: want [USER]:PASSWORD@ before the host");
    if (!percent_decode(*p, (size_t)(colon - *p), rt->user, sizeof rt->user) ||
        !percent_decode(colon + 1, (size_t)(at - colon - 1), rt->pass, sizeof rt->pass))
        return set_error(ACACHE_EINVAL, "redis spec: user or password too long or badly escaped");
    rt->auth = true;
    *p = at + 1;
    return ACACHE_OK;
}

static acache_status parse_tcp(redis_t *rt, const char *path)
{
    if (strncmp(path, "//", 2) != 0)
        return set_error(ACACHE_EINVAL, "redis spec: want redis://HOST[:PORT][/DB]");
    const char *p = path + 2, *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    acache_status st = parse_userinfo(rt, &p, end);
    if (st != ACACHE_OK)
        return st;
    const char *host_end, *port = NULL;
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(end - p));
        if (!host_end)
            return set_error(ACACHE_EINVAL, "redis spec: unclosed '[' in the host");
        p++;
        if (host_end + 1 < end && host_end[1] == ':')
            port = host_end + 2;
        else if (host_end + 1 != end)
            return set_error(ACACHE_EINVAL, "redis spec: junk after the host");
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = end;
    }
    if (host_end == p || (size_t)(host_end - p) >= sizeof rt->host)
        return set_error(ACACHE_EINVAL, "redis spec: missing or overlong host");
    memcpy(rt->host, p, (size_t)(host_end - p));
    rt->host[host_end - p] = '\0';
    rt->port = 6379;
    if (port) {
        char buf[8];
        unsigned long v;
        if (end - port <= 0 || end - port >= (long)sizeof buf)
            return set_error(ACACHE_EINVAL, "redis spec: bad port");
        memcpy(buf, port, (size_t)(end - port));
        buf[end - port] = '\0';
        char *e;
        v = strtoul(buf, &e, 10);
        if (*e || v == 0 || v > 65535 || buf[0] == '-')
            return set_error(ACACHE_EINVAL, "redis spec: bad port '%s'", buf);
        rt->port = (int)v;
    }
    if (slash && slash[1]) {
        char *e;
        rt->db = strtoul(slash + 1, &e, 10);
        if (*e || slash[1] == '-' || rt->db > 100000)
            return set_error(ACACHE_EINVAL, "redis spec: bad database number '%s'", slash + 1);
    }
    snprintf(rt->where, sizeof rt->where, "%s%s%s:%d", strchr(rt->host, ':') ? "[" : "", rt->host,
             strchr(rt->host, ':') ? "]" : "", rt->port);
    return ACACHE_OK;
}

static acache_status parse_unix(redis_t *rt, const char *path)
{
    const char *p = path;
    if (!strncmp(p, "//", 2)) {
        p += 2;
        const char *slash = strchr(p, '/');
        acache_status st = parse_userinfo(rt, &p, slash ? slash : p + strlen(p));
        if (st != ACACHE_OK)
            return st;
    }
    if (p[0] != '/' || strlen(p) >= sizeof rt->sock)
        return set_error(ACACHE_EINVAL, "redis+unix spec: want redis+unix:///ABSOLUTE/PATH");
    snprintf(rt->sock, sizeof rt->sock, "%s", p);
    snprintf(rt->where, sizeof rt->where, "%s", rt->sock);
    rt->unix_sock = true;
    return ACACHE_OK;
}

acache_status redis_open(spec *s, void **self, const backend_ops **ops)
{
    remote_config cfg;
    char name[ACACHE_REMOTE_NAME_SIZE];
    acache_status st = remote_config_parse(s, &cfg);
    if (st != ACACHE_OK)
        return st;
    redis_t *rt = calloc(1, sizeof *rt);
    if (!rt)
        return set_error(ACACHE_ENOMEM, "out of memory");
    st = strcmp(s->scheme, "redis+unix") == 0 ? parse_unix(rt, s->path) : parse_tcp(rt, s->path);
    if (st != ACACHE_OK)
        goto fail;
    const char *v;
    if ((v = spec_get(s, "db"))) {
        char *e;
        rt->db = strtoul(v, &e, 10);
        if (!*v || *e || *v == '-' || rt->db > 100000) {
            st = set_error(ACACHE_EINVAL, "redis option db: want a number, got '%s'", v);
            goto fail;
        }
    }
    v = spec_get(s, "prefix");
    snprintf(rt->prefix, sizeof rt->prefix, "%s", v ? v : "acache");
    if (!rt->prefix[0] || (v && strlen(v) >= sizeof rt->prefix) || strpbrk(rt->prefix, " \t\r\n")) {
        st = set_error(ACACHE_EINVAL, "redis option prefix: want 1 to %zu characters, no spaces",
                       sizeof rt->prefix - 1);
        goto fail;
    }
    to_timeval(cfg.connect_timeout_ns, &rt->connect_tv);
    to_timeval(cfg.timeout_ns, &rt->op_tv);
    remote_pool_init(&rt->pool);
    remote_display_name(s->scheme, s->path, name, sizeof name);
    return remote_create(&cfg, &redis_transport, rt, name, self, ops);
fail:
    free(rt);
    return st;
}
