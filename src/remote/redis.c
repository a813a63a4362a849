/*
 * redis.c - the Redis (or Valkey) transport of a remote store.
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?prefix=P&...
 *   redis+unix:///PATH/TO/SOCKET?db=N&prefix=P&...
 *
 * Names are P:ac:<hex> and P:cas:<hex>, plain string values. A value is
 * read in ranges of REDIS_CHUNK bytes (GETRANGE), each streamed into the
 * caller's sink as it arrives; the first range goes out in one round trip
 * with an EXISTS that tells a missing key from an empty value. A value
 * larger than a chunk is written to a temporary key (which expires in an
 * hour if the writer dies) with SET and APPEND, then renamed into place,
 * so a reader never sees half of it.
 *
 * Time: opening a connection (the name lookup, in a helper thread
 * (resolve.c), the TCP or Unix connect, AUTH, SELECT) has one deadline,
 * the connect timeout; every operation (a fetch, a store, an exists, a
 * remove) has one deadline, the timeout plus the time its bytes take at
 * REMOTE_MIN_RATE_BYTES_PER_MS, as the HTTP transport has, counted over
 * all its commands and reads: a server that dribbles cannot stretch it.
 *
 * hiredis connects (to the numeric addresses of the lookup, one by one)
 * and formats the commands; the commands are sent and the replies read by
 * redis_wire.c, which checks a bulk reply's length from its header before
 * reading it (hiredis' reader would buffer it whole first) and waits with
 * poll(2) against the deadline (hiredis' waits are per read).
 *
 * Connections are kept in a small pool shared by all threads. A connection
 * that saw an I/O error, a timeout or a reply left unread is closed, never
 * reused. This file must never let SIGPIPE reach the process, never wait
 * past a deadline, and never print.
 */
#include "core/error.h"
#include "os/clock.h"
#include "remote/resolve.h"
#include "remote/redis_wire.h"
#include "remote/remote.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
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
/* The longest an integer or status reply may be: no bulk is expected. */
#define NO_BULK 0

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
    int64_t connect_ns, op_ns;
    remote_pool pool;
} redis_t;

/* One connection: hiredis owns the socket, the wire speaks on it. */
typedef struct redis_conn {
    redisContext *c;
    redis_wire w;
} redis_conn;

/* ------------------------------------------------------------------ */
/* Deadlines                                                            */

/* The deadline of an operation that moves `bytes` bytes, from now. */
static int64_t op_deadline(const redis_t *rt, uint64_t bytes)
{
    uint64_t ns_per_byte = 1000000 / REMOTE_MIN_RATE_BYTES_PER_MS;
    uint64_t extra = bytes > (uint64_t)INT64_MAX / 4 / ns_per_byte ? (uint64_t)INT64_MAX / 4
                                                                   : bytes * ns_per_byte;
    return os_mono_ns() + rt->op_ns + (int64_t)extra;
}

static struct timeval timeval_until(int64_t deadline_ns)
{
    int64_t left = deadline_ns - os_mono_ns();
    if (left < 1000)
        left = 1000; /* hiredis takes 0 as "no timeout" */
    struct timeval tv = { (time_t)(left / 1000000000), (suseconds_t)(left % 1000000000 / 1000) };
    return tv;
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */

static void conn_free(void *p)
{
    redis_conn *rc = p;
    redisFree(rc->c);
    free(rc);
}

static bool reply_ok(const wire_reply *r)
{
    return r->type == WIRE_STATUS && !strcmp(r->text, "OK");
}

static acache_status reply_error(redis_t *rt, const char *what, const wire_reply *r)
{
    if (r->type == WIRE_ERROR)
        return set_error(ACACHE_EIO, "redis %s: %s: %s", rt->where, what, r->text);
    return set_error(ACACHE_EIO, "redis %s: %s: unexpected reply", rt->where, what);
}

/* Sends one command and reads its reply (no bulk expected). */
static acache_status run1(redis_conn *rc, int argc, const char **argv, const size_t *lens,
                          int64_t deadline_ns, wire_reply *r)
{
    acache_status st = wire_send(&rc->w, 1, &argc, argv, lens, deadline_ns);
    return st != ACACHE_OK ? st : wire_read(&rc->w, NO_BULK, NULL, deadline_ns, r);
}

/* A command a new connection needs (AUTH, SELECT), answered OK or not. */
static acache_status conn_setup(redis_t *rt, redis_conn *rc, const char *what, int argc,
                                const char **argv, const size_t *lens, int64_t deadline_ns)
{
    wire_reply r;
    acache_status st = run1(rc, argc, argv, lens, deadline_ns, &r);
    if (st == ACACHE_OK && !reply_ok(&r))
        st = reply_error(rt, what, &r);
    return st < 0 ? st : st == ACACHE_OK ? ACACHE_OK : ACACHE_EIO;
}

/* A hiredis connection to the server, made by the deadline: to the socket,
 * or to each address the host name has in turn. */
static redisContext *conn_connect(redis_t *rt, int64_t deadline_ns, acache_status *st)
{
    resolved addrs;
    if (rt->unix_sock) {
        addrs.n = 1;
    } else if ((*st = resolve_host(rt->host, deadline_ns, &addrs)) != ACACHE_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", acache_last_error());
        set_error(*st, "redis %s: cannot connect: %s", rt->where, why);
        return NULL;
    }
    char why[256] = "";
    for (unsigned i = 0; i < addrs.n; i++) {
        if (os_mono_ns() >= deadline_ns)
            break;
        struct timeval tv = timeval_until(deadline_ns);
        redisContext *c = rt->unix_sock ? redisConnectUnixWithTimeout(rt->sock, tv)
                                        : redisConnectWithTimeout(addrs.addr[i], rt->port, tv);
        if (!c) {
            *st = set_error(ACACHE_ENOMEM, "redis %s: out of memory", rt->where);
            return NULL;
        }
        if (!c->err)
            return c;
        snprintf(why, sizeof why, "%s", c->errstr[0] ? c->errstr : "connection error");
        redisFree(c);
    }
    *st = set_error(ACACHE_EIO, "redis %s: cannot connect: %s", rt->where,
                    why[0] ? why : "timed out");
    return NULL;
}

static redis_conn *conn_open(redis_t *rt, acache_status *st)
{
    int64_t deadline = os_mono_ns() + rt->connect_ns;
    redis_conn *rc = calloc(1, sizeof *rc);
    if (!rc) {
        *st = set_error(ACACHE_ENOMEM, "redis %s: out of memory", rt->where);
        return NULL;
    }
    if (!(rc->c = conn_connect(rt, deadline, st))) {
        free(rc);
        return NULL;
    }
    wire_init(&rc->w, rc->c->fd, rt->where);
    if (!rt->unix_sock)
        redisEnableKeepAlive(rc->c);
    if (rt->auth) {
        const char *argv[3] = { "AUTH", rt->user, rt->pass };
        size_t lens[3] = { 4, strlen(rt->user), strlen(rt->pass) };
        int skip = rt->user[0] ? 0 : 1; /* AUTH password, or AUTH user password */
        argv[skip] = "AUTH";
        lens[skip] = 4;
        if ((*st = conn_setup(rt, rc, "AUTH", 3 - skip, argv + skip, lens + skip, deadline)))
            goto fail;
    }
    if (rt->db) {
        char db[24];
        int n = snprintf(db, sizeof db, "%lu", rt->db);
        const char *argv[2] = { "SELECT", db };
        size_t lens[2] = { 6, (size_t)n };
        if ((*st = conn_setup(rt, rc, "SELECT", 2, argv, lens, deadline)))
            goto fail;
    }
    return rc;
fail:
    conn_free(rc);
    return NULL;
}

static redis_conn *conn_get(redis_t *rt, acache_status *st)
{
    redis_conn *rc = remote_pool_take(&rt->pool);
    return rc ? rc : conn_open(rt, st);
}

static void conn_release(redis_t *rt, redis_conn *rc)
{
    if (rc->w.broken || !remote_pool_give(&rt->pool, rc))
        conn_free(rc);
}

static int make_key(const redis_t *rt, remote_ns ns, const char *hex, char key[KEY_MAX])
{
    return snprintf(key, KEY_MAX, "%s:%s:%s", rt->prefix, ns == REMOTE_AC ? "ac" : "cas", hex);
}

/* ------------------------------------------------------------------ */
/* Transport operations                                                 */

/* EXISTS key and GETRANGE key 0 want-1 in one round trip: the range goes
 * to sink if the key exists. ACACHE_MISS if it does not. */
static acache_status fetch_first(redis_t *rt, redis_conn *rc, const char **argv,
                                 const size_t *lens, uint64_t max, const remote_sink *sink,
                                 int64_t deadline, uint64_t *got)
{
    int counts[2] = { 2, 4 };
    wire_reply ex, range;
    acache_status st = wire_send(&rc->w, 2, counts, argv, lens, deadline);
    if (st == ACACHE_OK)
        st = wire_read(&rc->w, NO_BULK, NULL, deadline, &ex);
    if (st != ACACHE_OK)
        return st;
    bool there = ex.type == WIRE_INTEGER && ex.integer != 0;
    st = wire_read(&rc->w, max, there ? sink : NULL, deadline, &range);
    if (st != ACACHE_OK)
        return st;
    if (ex.type != WIRE_INTEGER)
        return reply_error(rt, "EXISTS", &ex);
    if (!there)
        return ACACHE_MISS;
    if (range.type != WIRE_BULK)
        return reply_error(rt, "GETRANGE", &range);
    *got = range.len;
    return ACACHE_OK;
}

/* GETRANGE key from to, into sink. */
static acache_status fetch_next(redis_t *rt, redis_conn *rc, const char **argv,
                                const size_t *lens, uint64_t max, const remote_sink *sink,
                                int64_t deadline, uint64_t *got)
{
    int count = 4;
    wire_reply range;
    acache_status st = wire_send(&rc->w, 1, &count, argv, lens, deadline);
    if (st == ACACHE_OK)
        st = wire_read(&rc->w, max, sink, deadline, &range);
    if (st != ACACHE_OK)
        return st;
    if (range.type != WIRE_BULK)
        return reply_error(rt, "GETRANGE", &range);
    *got = range.len;
    return ACACHE_OK;
}

static acache_status redis_fetch(void *t, remote_ns ns, const char *hex, uint64_t limit,
                                 const remote_sink *sink)
{
    redis_t *rt = t;
    char key[KEY_MAX], from[24], to[24];
    acache_status st = ACACHE_OK;
    size_t klen = (size_t)make_key(rt, ns, hex, key);
    redis_conn *rc = conn_get(rt, &st);
    if (!rc)
        return st;
    int64_t deadline = op_deadline(rt, limit);
    /* limit + 1 bytes are asked for, so that a longer value shows; a reply
     * longer than what was asked for, or than limit, is refused unread. */
    uint64_t pos = 0, want = limit < REDIS_CHUNK ? limit + 1 : REDIS_CHUNK;
    const char *argv[6] = { "EXISTS", key, "GETRANGE", key, from, to };
    size_t lens[6] = { 6, klen, 8, klen, 0, 0 };
    for (bool first = true;; first = false) {
        uint64_t got = 0, max = want <= limit - pos ? want : limit - pos;
        lens[4] = (size_t)snprintf(from, sizeof from, "%" PRIu64, pos);
        lens[5] = (size_t)snprintf(to, sizeof to, "%" PRIu64, pos + want - 1);
        st = first ? fetch_first(rt, rc, argv, lens, max, sink, deadline, &got)
                   : fetch_next(rt, rc, argv + 2, lens + 2, max, sink, deadline, &got);
        pos += got;
        if (st != ACACHE_OK || got < want)
            break;
        want = limit + 1 - pos < REDIS_CHUNK ? limit + 1 - pos : REDIS_CHUNK;
    }
    conn_release(rt, rc);
    return st;
}

/* The reply to GET i of a pipeline, read into sinks[i]: a bulk is the
 * value, nil no such key. false when the connection cannot go on. */
static bool many_read(redis_t *rt, redis_conn *rc, uint64_t limit, const remote_sink *sink,
                      int64_t deadline, acache_status *st)
{
    wire_reply r;
    acache_status s = wire_read(&rc->w, limit, sink, deadline, &r);
    if (s != ACACHE_OK) {
        *st = s;
        return !rc->w.broken;
    }
    if (r.type == WIRE_NIL)
        *st = ACACHE_MISS;
    else if (r.type == WIRE_BULK)
        *st = ACACHE_OK;
    else
        *st = reply_error(rt, "GET", &r);
    return true;
}

/* GET of every name in one round trip. A value is never large here (the
 * caller batches small ones), so GET's whole reply, streamed by the wire
 * from its checked length, stands in for EXISTS + GETRANGE: nil tells a
 * missing key from an empty value. */
static acache_status redis_fetch_many(void *t, remote_ns ns, const char *const *hexes, size_t n,
                                      const uint64_t *limits, const remote_sink *sinks,
                                      acache_status *st)
{
    redis_t *rt = t;
    char keys[REMOTE_BATCH_MAX][KEY_MAX];
    const char *argv[2 * REMOTE_BATCH_MAX];
    size_t lens[2 * REMOTE_BATCH_MAX];
    int counts[REMOTE_BATCH_MAX];
    uint64_t bytes = 0;
    acache_status err = ACACHE_OK;
    if (n == 0 || n > REMOTE_BATCH_MAX)
        return n == 0 ? ACACHE_OK : set_error(ACACHE_EINVAL, "redis: too many names at once");
    for (size_t i = 0; i < n; i++) {
        argv[2 * i] = "GET";
        lens[2 * i] = 3;
        argv[2 * i + 1] = keys[i];
        lens[2 * i + 1] = (size_t)make_key(rt, ns, hexes[i], keys[i]);
        counts[i] = 2;
        bytes += limits[i];
    }
    redis_conn *rc = conn_get(rt, &err);
    if (!rc)
        return err;
    int64_t deadline = op_deadline(rt, bytes);
    /* Every GET goes out before the first reply is read: one round trip
     * (in several writes if the wire takes fewer commands at once). */
    for (size_t i = 0; err == ACACHE_OK && i < n; i += WIRE_PIPELINE_MAX) {
        size_t k = n - i < WIRE_PIPELINE_MAX ? n - i : WIRE_PIPELINE_MAX;
        err = wire_send(&rc->w, (int)k, counts + i, argv + 2 * i, lens + 2 * i, deadline);
    }
    for (size_t i = 0; err == ACACHE_OK && i < n; i++) {
        if (!many_read(rt, rc, limits[i], &sinks[i], deadline, &st[i]) && st[i] < 0 &&
            st[i] != ACACHE_CORRUPT)
            err = st[i]; /* the connection failed, not the name */
        if (rc->w.broken)
            break;
    }
    conn_release(rt, rc);
    return err;
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
    redis_conn *rc = conn_get(rt, &st);
    if (!rc)
        return st;
    const char *argv[2] = { cmd, key };
    size_t lens[2] = { strlen(cmd), klen };
    wire_reply r;
    st = run1(rc, 2, argv, lens, op_deadline(rt, 0), &r);
    if (st != ACACHE_OK)
        st = st == ACACHE_CORRUPT ? reply_error(rt, cmd, &r) : st;
    else if (r.type == WIRE_INTEGER)
        st = r.integer > 0 ? ACACHE_OK : ACACHE_MISS;
    else if (writes && r.type == WIRE_ERROR)
        st = set_error(REMOTE_REFUSED, "redis %s: %s refused: %s", rt->where, cmd, r.text);
    else
        st = reply_error(rt, cmd, &r);
    conn_release(rt, rc);
    return st;
}

static acache_status redis_exists(void *t, remote_ns ns, const char *hex)
{
    return key_count(t, "EXISTS", false, ns, hex);
}

/* The reply to a write. One the server answered with an error (read-only
 * replica, out of memory, no permission) is refused, not failed. */
static acache_status write_reply(redis_t *rt, const char *what, acache_status st,
                                 const wire_reply *r)
{
    if (st == ACACHE_CORRUPT) /* a bulk reply, refused by NO_BULK */
        return set_error(ACACHE_EIO, "redis %s: %s: unexpected reply", rt->where, what);
    if (st != ACACHE_OK)
        return st;
    if (r->type == WIRE_ERROR)
        return set_error(REMOTE_REFUSED, "redis %s: %s refused: %s", rt->where, what, r->text);
    if (r->type != WIRE_STATUS && r->type != WIRE_INTEGER)
        return reply_error(rt, what, r);
    return ACACHE_OK;
}

/* One write command and its reply. */
static acache_status write1(redis_t *rt, redis_conn *rc, const char *what, int argc,
                            const char **argv, const size_t *lens, int64_t deadline)
{
    wire_reply r;
    acache_status st = run1(rc, argc, argv, lens, deadline, &r);
    return write_reply(rt, what, st, &r);
}

/* RENAME tmp key and PERSIST key, in one round trip. */
static acache_status rename_into_place(redis_t *rt, redis_conn *rc, const char *tmp,
                                       size_t tlen, const char *key, int64_t deadline)
{
    int counts[2] = { 3, 2 };
    size_t klen = strlen(key);
    const char *argv[5] = { "RENAME", tmp, key, "PERSIST", key };
    size_t lens[5] = { 6, tlen, klen, 7, klen };
    wire_reply r[2];
    acache_status st = wire_send(&rc->w, 2, counts, argv, lens, deadline);
    if (st != ACACHE_OK)
        return st;
    acache_status st1 = write_reply(rt, "RENAME", wire_read(&rc->w, NO_BULK, NULL, deadline, &r[0]),
                                    &r[0]);
    if (rc->w.broken)
        return st1;
    acache_status st2 = write_reply(rt, "PERSIST",
                                    wire_read(&rc->w, NO_BULK, NULL, deadline, &r[1]), &r[1]);
    return st1 != ACACHE_OK ? st1 : st2;
}

/* A large value: SET tmp first-chunk PX, APPEND tmp chunk..., RENAME. */
static acache_status store_chunked(redis_t *rt, redis_conn *rc, const char *key, const char *hex,
                                   const char *data, size_t len, const atomic_bool *cancel,
                                   int64_t deadline)
{
    char tmp[KEY_MAX];
    uint64_t salt = 0;
    if (getrandom(&salt, sizeof salt, GRND_NONBLOCK) != sizeof salt)
        salt = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&salt;
    size_t tlen = (size_t)snprintf(tmp, sizeof tmp, "%s:tmp:%s.%016" PRIx64, rt->prefix, hex, salt);
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
            st = write1(rt, rc, "SET", 5, argv, lens, deadline);
        } else {
            const char *argv[3] = { "APPEND", tmp, data + pos };
            size_t lens[3] = { 6, tlen, n };
            st = write1(rt, rc, "APPEND", 3, argv, lens, deadline);
        }
    }
    if (st == ACACHE_OK)
        return rename_into_place(rt, rc, tmp, tlen, key, deadline);
    if (!rc->w.broken) {
        /* Best effort, within what is left of the deadline; the key
         * expires anyway. The first failure's message is kept. */
        char why[512];
        snprintf(why, sizeof why, "%s", acache_last_error());
        const char *argv[2] = { "DEL", tmp };
        size_t lens[2] = { 3, tlen };
        wire_reply r;
        (void)run1(rc, 2, argv, lens, deadline, &r);
        set_error(st, "%s", why);
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
    redis_conn *rc = conn_get(rt, &st);
    if (!rc)
        return st;
    int64_t deadline = op_deadline(rt, len);
    if (len > REDIS_CHUNK) {
        st = store_chunked(rt, rc, key, hex, data, len, cancel, deadline);
    } else {
        const char *argv[3] = { "SET", key, len ? data : "" };
        size_t lens[3] = { 3, klen, len };
        st = write1(rt, rc, "SET", 3, argv, lens, deadline);
    }
    conn_release(rt, rc);
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
    .fetch_many = redis_fetch_many,
    .exists = redis_exists,
    .store = redis_store,
    .remove = redis_remove,
    .close = redis_close,
};

/* ------------------------------------------------------------------ */
/* Opening                                                              */

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
    if (!spec_unescape(*p, (size_t)(colon - *p), rt->user, sizeof rt->user) ||
        !spec_unescape(colon + 1, (size_t)(at - colon - 1), rt->pass, sizeof rt->pass))
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
    rt->connect_ns = cfg.connect_timeout_ns;
    rt->op_ns = cfg.timeout_ns;
    remote_pool_init(&rt->pool);
    remote_display_name(s->scheme, s->path, name, sizeof name);
    return remote_create(&cfg, &redis_transport, rt, name, self, ops);
fail:
    free(rt);
    return st;
}
