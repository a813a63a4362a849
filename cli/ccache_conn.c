/*
 * ccache_conn.c - one ccache client's connection to the storage helper,
 * served on its own thread: the greeting, then each request read, answered
 * and done in order (get, put, remove, info, stop).
 *
 * A get is answered from the upload queue if the key waits there, else
 * from the remote (checked by the library), and at once with an error
 * while the remote is failing (ccache_probe.h); a put is answered once its
 * value is queued; a remove cancels queued uploads and deletes the record.
 *
 * Must never: allocate for a value more than HELPER_READ_BUF ahead of the
 * bytes that actually arrived (a length is only a claim until they do);
 * let this client's bad request touch another client (it is answered and
 * this connection closed); store anything of a request cut off midway;
 * show a secret in an answer (errors pass through ccache_redact).
 */
#include "ccache_proto.h"
#include "ccache_server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct conn {
    helper *h;
    int fd;
    size_t pos, len;        /* unread bytes are buf[pos..len) */
    uint8_t buf[HELPER_READ_BUF];
} conn;

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
        ccache_redact(&c->h->cfg, msg, safe, sizeof safe);
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


static int serve_info(conn *c)
{
    size_t len = 0;
    uint8_t *out = ccache_info_answer(c->h, &len);
    int r = out ? send_all(c->fd, out, len) : -1;
    free(out);
    return r;
}

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

void ccache_conn_serve(helper *h, int fd)
{
    conn *c = malloc(sizeof *c);
    if (!c)
        return;
    c->h = h;
    c->fd = fd;
    c->pos = c->len = 0;
    serve_conn(c);
    free(c);
}
