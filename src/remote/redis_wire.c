/*
 * redis_wire.c - Redis commands and replies (RESP2) on a connected socket,
 * under a deadline per operation (see redis_wire.h).
 *
 * Why not hiredis' own reading: redisGetReply() on a blocking context
 * waits with SO_RCVTIMEO, a limit per read(2), so a server that sends one
 * byte just inside each timeout holds an operation for as long as it likes;
 * and its reply reader buffers a bulk reply whole before the caller sees
 * its length, so a server announcing "$1099511627776" is answered with
 * memory until the process dies. hiredis has no hook for either (its
 * reader takes no size limit; its non-blocking API still hands out only
 * whole replies). So hiredis opens the connection and formats commands
 * (redisFormatCommandArgv), and this file does the I/O on the socket with
 * poll(2) against the operation's deadline, and parses replies itself:
 * only the RESP2 replies the transport's commands can get (status, error,
 * integer, bulk string, nil), with a bounded line length, and a bulk's
 * length checked before its body is read and then streamed.
 *
 * Rules: never wait past the deadline; never allocate by a length that
 * came from the server; never raise SIGPIPE (send with MSG_NOSIGNAL);
 * mark the connection broken whenever a reply is left half read; never
 * print.
 */
#include "remote/redis_wire.h"

#include "core/error.h"
#include "os/clock.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void wire_init(redis_wire *w, int fd, const char *where)
{
    w->fd = fd;
    w->where = where;
    w->broken = false;
    w->at = w->end = 0;
}

/* Marks w broken and sets the message "redis WHERE: what". */
static acache_status wire_fail(redis_wire *w, acache_status st, const char *what)
{
    w->broken = true;
    return set_error(st, "redis %s: %s", w->where, what);
}

/* Waits until fd is ready for events, or the deadline passes. */
static acache_status wait_ready(redis_wire *w, short events, int64_t deadline_ns)
{
    for (;;) {
        int64_t left = deadline_ns - os_mono_ns();
        if (left <= 0)
            return wire_fail(w, ACACHE_EIO, "timed out waiting for the server");
        struct pollfd p = { w->fd, events, 0 };
        int ms = (int)((left + 999999) / 1000000 > 1000000 ? 1000000 : (left + 999999) / 1000000);
        int n = poll(&p, 1, ms);
        if (n > 0)
            return ACACHE_OK; /* ready, or an error the next call reports */
        if (n < 0 && errno != EINTR)
            return wire_fail(w, ACACHE_EIO, strerror(errno));
    }
}

static acache_status send_all(redis_wire *w, const char *p, size_t len, int64_t deadline_ns)
{
    while (len > 0) {
        ssize_t n = send(w->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            acache_status st = wait_ready(w, POLLOUT, deadline_ns);
            if (st != ACACHE_OK)
                return st;
            continue;
        }
        return wire_fail(w, ACACHE_EIO, n < 0 ? strerror(errno) : "cannot write");
    }
    return ACACHE_OK;
}

/* The commands of a pipeline go out in one send(2): sent one by one, each
 * would wake the server (and, on a small machine, switch this thread out)
 * before the next was written. */
acache_status wire_send(redis_wire *w, int ncmd, const int *counts, const char **argv,
                        const size_t *lens, int64_t deadline_ns)
{
    if (w->broken)
        return wire_fail(w, ACACHE_EIO, "connection unusable");
    char *all = NULL;
    size_t total = 0;
    acache_status st = ACACHE_OK;
    for (int i = 0, at = 0; i < ncmd && st == ACACHE_OK; at += counts[i], i++) {
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, counts[i], argv + at, lens + at);
        if (len < 0) {
            st = wire_fail(w, ACACHE_ENOMEM, "out of memory");
            break;
        }
        if (ncmd == 1) {
            st = send_all(w, cmd, (size_t)len, deadline_ns);
        } else {
            char *grown = realloc(all, total + (size_t)len);
            if (grown) {
                memcpy(grown + total, cmd, (size_t)len);
                all = grown;
                total += (size_t)len;
            } else {
                st = wire_fail(w, ACACHE_ENOMEM, "out of memory");
            }
        }
        redisFreeCommand(cmd);
    }
    if (st == ACACHE_OK && ncmd > 1)
        st = send_all(w, all, total, deadline_ns);
    free(all);
    return st;
}

/* Reads more bytes into buf, moving what is unread to its front first. */
static acache_status fill(redis_wire *w, int64_t deadline_ns)
{
    if (w->at > 0) {
        memmove(w->buf, w->buf + w->at, w->end - w->at);
        w->end -= w->at;
        w->at = 0;
    }
    for (;;) {
        ssize_t n = recv(w->fd, w->buf + w->end, sizeof w->buf - w->end, MSG_DONTWAIT);
        if (n > 0) {
            w->end += (size_t)n;
            return ACACHE_OK;
        }
        if (n == 0)
            return wire_fail(w, ACACHE_EIO, "the server closed the connection");
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return wire_fail(w, ACACHE_EIO, strerror(errno));
        acache_status st = wait_ready(w, POLLIN, deadline_ns);
        if (st != ACACHE_OK)
            return st;
    }
}

/* The next line, without its CRLF: *line points into buf, valid until the
 * next read. A line of WIRE_LINE_MAX bytes or more is refused. */
static acache_status read_line(redis_wire *w, int64_t deadline_ns, const char **line,
                               size_t *len)
{
    size_t scanned = 0;
    for (;;) {
        const unsigned char *start = w->buf + w->at;
        size_t have = w->end - w->at;
        for (size_t i = scanned ? scanned - 1 : 0; i + 1 < have && i + 1 < WIRE_LINE_MAX; i++) {
            if (start[i] == '\r' && start[i + 1] == '\n') {
                *line = (const char *)start;
                *len = i;
                w->at += i + 2;
                return ACACHE_OK;
            }
        }
        if (have >= WIRE_LINE_MAX)
            return wire_fail(w, ACACHE_EIO, "a reply line too long: not a Redis server?");
        scanned = have;
        acache_status st = fill(w, deadline_ns);
        if (st != ACACHE_OK)
            return st;
    }
}

/* A decimal number, with a sign if negative_ok; false if it is not one or
 * does not fit. */
static bool parse_number(const char *s, size_t n, bool negative_ok, long long *out)
{
    bool neg = n > 0 && s[0] == '-' && negative_ok;
    size_t i = neg ? 1 : 0;
    unsigned long long v = 0;
    if (i == n || n - i > 19)
        return false;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > (unsigned long long)INT64_MAX)
        return false;
    *out = neg ? -(long long)v : (long long)v;
    return true;
}

/* A bulk body of len bytes and its CRLF, into sink (or dropped). */
static acache_status read_body(redis_wire *w, uint64_t len, const remote_sink *sink,
                               int64_t deadline_ns)
{
    while (len > 0) {
        if (w->at == w->end) {
            acache_status st = fill(w, deadline_ns);
            if (st != ACACHE_OK)
                return st;
        }
        size_t take = w->end - w->at < len ? w->end - w->at : (size_t)len;
        if (sink) {
            acache_status st = sink->write(sink->ctx, w->buf + w->at, take);
            if (st != ACACHE_OK) {
                w->broken = true; /* the rest of the body is unread */
                return st;
            }
        }
        w->at += take;
        len -= take;
    }
    while (w->end - w->at < 2) {
        acache_status st = fill(w, deadline_ns);
        if (st != ACACHE_OK)
            return st;
    }
    if (w->buf[w->at] != '\r' || w->buf[w->at + 1] != '\n')
        return wire_fail(w, ACACHE_EIO, "a bulk reply not ended by CRLF: not a Redis server?");
    w->at += 2;
    return ACACHE_OK;
}

static acache_status read_bulk(redis_wire *w, const char *line, size_t n, uint64_t limit,
                               const remote_sink *sink, int64_t deadline_ns, wire_reply *out)
{
    long long v;
    if (!parse_number(line, n, true, &v) || v < -1)
        return wire_fail(w, ACACHE_EIO, "a bad bulk length: not a Redis server?");
    if (v == -1) {
        out->type = WIRE_NIL;
        return ACACHE_OK;
    }
    out->type = WIRE_BULK;
    out->len = (uint64_t)v;
    if (out->len > limit) {
        char why[160];
        snprintf(why, sizeof why, "a reply of %" PRIu64 " bytes, where at most %" PRIu64
                 " may come: refused unread", out->len, limit);
        return wire_fail(w, ACACHE_CORRUPT, why);
    }
    return read_body(w, out->len, sink, deadline_ns);
}

acache_status wire_read(redis_wire *w, uint64_t limit, const remote_sink *sink,
                        int64_t deadline_ns, wire_reply *out)
{
    const char *line = NULL;
    size_t n = 0;
    if (w->broken)
        return wire_fail(w, ACACHE_EIO, "connection unusable");
    acache_status st = read_line(w, deadline_ns, &line, &n);
    if (st != ACACHE_OK)
        return st;
    if (n == 0)
        return wire_fail(w, ACACHE_EIO, "an empty reply line: not a Redis server?");
    out->len = 0;
    out->text[0] = '\0';
    switch (line[0]) {
    case '+':
    case '-':
        out->type = line[0] == '+' ? WIRE_STATUS : WIRE_ERROR;
        out->len = n - 1;
        memcpy(out->text, line + 1, n - 1); /* n < WIRE_LINE_MAX */
        out->text[n - 1] = '\0';
        return ACACHE_OK;
    case ':':
        out->type = WIRE_INTEGER;
        if (!parse_number(line + 1, n - 1, true, &out->integer))
            return wire_fail(w, ACACHE_EIO, "a bad integer reply: not a Redis server?");
        return ACACHE_OK;
    case '$':
        return read_bulk(w, line + 1, n - 1, limit, sink, deadline_ns, out);
    default:
        return wire_fail(w, ACACHE_EIO, "an unexpected kind of reply: not a Redis server?");
    }
}
