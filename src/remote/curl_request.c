/*
 * curl_request.c - one request of an HTTP-speaking remote (http, s3) on a
 * libcurl easy handle taken from a small pool shared by all threads and
 * given back after, so connections are reused across requests and threads.
 * Each pooled easy handle has a multi handle of its own to run on, waited
 * on through libcurl's socket interface (curl_wait.c: fewer polls than
 * curl_easy_perform, which is the same thing with a private multi handle
 * and curl_multi_poll's loop).
 *
 * Every request has a connect timeout, a total time limit (the timeout
 * plus the time its bytes take at 1 MB/s) and a stall limit. The body of a
 * GET streams into the caller's sink only once the status is known to be
 * 200; an error body is read (a little of it kept) so the connection stays
 * usable. This file must never follow redirects, use signals, print, or
 * put a URL (which may carry a password) in a message.
 */
#include "remote/curl_request.h"
#include "core/error.h"
#include "remote/curl_wait.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libcurl's receive buffer (default 16 KiB): a body arrives in as few
 * recv(2) and poll(2) calls as the socket allows. Kept by the pooled
 * handle across requests (bench/README.md: bench_fetch counts). */
#define CURL_RECV_BUFFER (512L << 10)
/* The slowest transfer rate allowed for, in bytes per millisecond. */
#define MIN_RATE_BYTES_PER_MS 1000
/* Bytes of an error page read before giving up on it. */
#define ERROR_BODY_MAX ((size_t)64 << 10)

static const char *const method_names[] = { "GET", "HEAD", "PUT", "DELETE" };

const char *curl_method_name(curl_method m)
{
    return method_names[m];
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    curl_req *rq = arg;
    size_t len = size * n;
    if (rq->code == 0)
        rq->curl_->easy_getinfo(rq->e_, CURLINFO_RESPONSE_CODE, &rq->code);
    if (rq->code != 200 || !rq->sink) {
        size_t keep = sizeof rq->errbody - 1 - rq->errlen;
        keep = len < keep ? len : keep;
        memcpy(rq->errbody + rq->errlen, data, keep);
        rq->errlen += keep;
        rq->errbody[rq->errlen] = '\0';
        rq->discarded += len;
        return rq->discarded > ERROR_BODY_MAX ? 0 : len;
    }
    if (len > rq->limit - rq->got) {
        rq->st = set_error(ACACHE_CORRUPT, "more than the %" PRIu64 " bytes expected", rq->limit);
        return 0;
    }
    rq->got += len;
    rq->st = rq->sink->write(rq->sink->ctx, data, len);
    return rq->st == ACACHE_OK ? len : 0;
}

/* Keeps the value of the header the caller asked for. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    curl_req *rq = arg;
    size_t len = size * n, klen = strlen(rq->want_header);
    if (len > klen + 1 && data[klen] == ':' && strncasecmp(data, rq->want_header, klen) == 0) {
        const char *v = data + klen + 1, *e = data + len;
        while (v < e && isspace((unsigned char)*v))
            v++;
        while (e > v && isspace((unsigned char)e[-1]))
            e--;
        snprintf(rq->header, sizeof rq->header, "%.*s", (int)(e - v), v);
    }
    return len;
}

static size_t on_upload(char *buf, size_t size, size_t n, void *arg)
{
    curl_req *rq = arg;
    size_t room = size * n, left = rq->up_len - rq->up_pos;
    size_t take = left < room ? left : room;
    memcpy(buf, rq->up + rq->up_pos, take);
    rq->up_pos += take;
    return take;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    curl_req *rq = arg;
    return rq->cancel && atomic_load(rq->cancel) ? 1 : 0;
}

/* A pooled single-request handle: the easy handle (its receive buffer
 * kept warm) and the multi handle it runs on, which holds the connections
 * it made, and what that multi handle is waiting for. */
typedef struct curl_single {
    CURL *e;
    CURLM *m;
    curl_watch w;
} curl_single;

static void single_free(const curl_api *curl, curl_single *s)
{
    if (s->m)
        curl->multi_cleanup(s->m);
    if (s->e)
        curl->easy_cleanup(s->e);
    free(s);
}

/* The pool's destructor has no context; every handle came from the one
 * libcurl loaded, so its cleanup is found through curl_load (already done). */
static void handle_free(void *s)
{
    const curl_api *curl;
    if (curl_load(&curl) == ACACHE_OK)
        single_free(curl, s);
}

/* An idle single from the pool, or a new one; NULL: out of memory. */
static curl_single *single_take(curl_client *c)
{
    curl_single *s = remote_pool_take(&c->pool);
    if (s)
        return s;
    if (!(s = calloc(1, sizeof *s)))
        return NULL;
    s->e = c->curl->easy_init();
    s->m = c->curl->multi_init();
    if (!s->e || !s->m) {
        single_free(c->curl, s);
        return NULL;
    }
    curl_watch_attach(c->curl, s->m, &s->w);
    return s;
}

acache_status curl_client_init(curl_client *c, long connect_ms, long timeout_ms)
{
    acache_status st = curl_load(&c->curl);
    if (st != ACACHE_OK)
        return st;
    c->connect_ms = connect_ms;
    c->timeout_ms = timeout_ms;
    remote_pool_init(&c->pool);
    remote_pool_init(&c->multis);
    return ACACHE_OK;
}

/* The multis' pool is emptied by curl_multis_drain() (curl_multi.c, which
 * calls this file, never the other way round) before the client goes. */
static void drained(void *set)
{
    (void)set;
}

void curl_client_destroy(curl_client *c)
{
    remote_pool_destroy(&c->multis, drained);
    remote_pool_destroy(&c->pool, handle_free);
}

/* Sets the options of rq on the (reset) handle e. */
static void set_options(const curl_client *c, CURL *e, curl_req *rq, long recv_buffer,
                        char *errbuf)
{
    const curl_api *curl = c->curl;
    uint64_t bytes = rq->method == CURL_PUT ? rq->up_len : rq->method == CURL_GET ? rq->limit : 0;
    uint64_t total_ms =
        (uint64_t)c->connect_ms + (uint64_t)c->timeout_ms + bytes / MIN_RATE_BYTES_PER_MS;
    curl->easy_setopt(e, CURLOPT_URL, rq->url);
    curl->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl->easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl->easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
    curl->easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(total_ms > LONG_MAX ? LONG_MAX : total_ms));
    /* A transfer that moves nothing for the timeout (rounded up to a
     * second, curl's unit here) has stalled. */
    curl->easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl->easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (c->timeout_ms + 999) / 1000);
    curl->easy_setopt(e, CURLOPT_HTTPHEADER, rq->headers);
    curl->easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl->easy_setopt(e, CURLOPT_BUFFERSIZE, recv_buffer);
    curl->easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl->easy_setopt(e, CURLOPT_WRITEDATA, rq);
    curl->easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl->easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl->easy_setopt(e, CURLOPT_XFERINFODATA, rq);
    if (rq->want_header) {
        curl->easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl->easy_setopt(e, CURLOPT_HEADERDATA, rq);
    }
    if (rq->aws_sigv4)
        curl->easy_setopt(e, CURLOPT_AWS_SIGV4, rq->aws_sigv4);
    if (rq->user) {
        curl->easy_setopt(e, CURLOPT_USERNAME, rq->user);
        curl->easy_setopt(e, CURLOPT_PASSWORD, rq->password);
    }
    switch (rq->method) {
    case CURL_GET:
        break;
    case CURL_HEAD:
        curl->easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case CURL_PUT:
        curl->easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl->easy_setopt(e, CURLOPT_READFUNCTION, on_upload);
        curl->easy_setopt(e, CURLOPT_READDATA, rq);
        curl->easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->up_len);
        /* Where "Expect: 100-continue" is sent (s3, see there), send the
         * body at once rather than wait a second for the 100. */
        curl->easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
        break;
    case CURL_DELETE:
        curl->easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    }
}

void curl_req_start(curl_client *c, curl_req *rq, CURL *e, long recv_buffer, char *errbuf)
{
    /* Reset clears the options but keeps the handle's live connections. */
    c->curl->easy_reset(e);
    rq->curl_ = c->curl;
    rq->e_ = e;
    rq->code = 0;
    rq->errlen = 0;
    rq->errbody[0] = rq->header[0] = '\0';
    rq->st = ACACHE_OK;
    errbuf[0] = '\0';
    set_options(c, e, rq, recv_buffer, errbuf);
}

acache_status curl_req_end(curl_client *c, curl_req *rq, CURLcode rc, const char *errbuf,
                           const char *where)
{
    const curl_api *curl = c->curl;
    const char *m = method_names[rq->method];
    CURL *e = rq->e_;
    acache_status st = ACACHE_OK;
    curl->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &rq->code);
    if (rc == CURLE_WRITE_ERROR && rq->st != ACACHE_OK) {
        st = rq->st;
        if (st == ACACHE_CORRUPT) {
            char why[512];
            snprintf(why, sizeof why, "%s", acache_last_error());
            st = set_error(ACACHE_CORRUPT, "%s: %s %s: %s", where, m, rq->name, why);
        }
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        st = set_error(ACACHE_EIO, "%s: %s %s cancelled", where, m, rq->name);
    } else if (rc != CURLE_OK) {
        st = set_error(ACACHE_EIO, "%s: %s %s: %s", where, m, rq->name,
                       errbuf[0] ? errbuf : curl->easy_strerror(rc));
    }
    curl->easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    return st;
}

/* Runs the request set up on s->e to its end: how it ended (libcurl's
 * code; CURLE_FAILED_INIT when the wait itself failed, *broken then set). */
static CURLcode single_run(const curl_api *curl, curl_single *s, bool *broken)
{
    CURLcode rc = CURLE_FAILED_INIT;
    if (curl->multi_add_handle(s->m, s->e) != CURLM_OK) {
        *broken = true;
        return CURLE_OUT_OF_MEMORY;
    }
    *broken = !curl_watch_run(curl, s->m, &s->w);
    CURLMsg *msg;
    int left;
    while ((msg = curl->multi_info_read(s->m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == s->e)
            rc = msg->data.result;
    curl->multi_remove_handle(s->m, s->e);
    return rc;
}

acache_status curl_perform(curl_client *c, curl_req *rq, const char *where)
{
    char errbuf[CURL_ERROR_SIZE];
    curl_single *s = single_take(c);
    if (!s)
        return set_error(ACACHE_ENOMEM, "%s: cannot make a curl handle", where);
    curl_req_start(c, rq, s->e, CURL_RECV_BUFFER, errbuf);
    bool broken;
    acache_status st = curl_req_end(c, rq, single_run(c->curl, s, &broken), errbuf, where);
    if (broken || !remote_pool_give(&c->pool, s))
        single_free(c->curl, s);
    return st;
}
