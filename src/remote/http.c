/*
 * http.c - the HTTP transport of a remote store, through libcurl,
 * for caches in the bazel-remote layout: bazel-remote itself, nginx with
 * WebDAV PUT, or anything else that answers GET, PUT and HEAD.
 *
 *   http://[USER:PASSWORD@]HOST[:PORT]/BASE?...   (https:// too)
 *
 * Names are BASE/ac/<hex> and BASE/cas/<hex>. GET 200 is a value, 404 a
 * miss; PUT answered 2xx is stored, 4xx refused; DELETE removes a poisoned
 * object. Any other answer, a connection that fails, or one that stalls
 * longer than the timeout is a failure.
 *
 * libcurl itself is loaded by the first http remote opened (curl_load.c),
 * not linked: a process without one never maps it.
 *
 * Each request takes a curl easy handle from a small pool shared by all
 * threads and gives it back after, so connections are reused. Every
 * request has a connect timeout, a total time limit (the timeout plus the
 * time its bytes take at 1 MB/s) and a stall limit. The body of a GET
 * streams straight into the caller's sink, and only once the status is
 * known to be 200. This file must never follow redirects, use signals
 * (CURLOPT_NOSIGNAL), or print.
 */
#include "remote/curl_load.h"
#include "core/error.h"
#include "remote/remote.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of an error page read before giving up on it. */
#define ERROR_BODY_MAX ((size_t)64 << 10)
#define URL_MAX 2048

typedef struct http_t {
    char base[URL_MAX - 80];   /* scheme://authority/BASE, no trailing '/' */
    char where[ACACHE_REMOTE_NAME_SIZE];
    char user[256], pass[256]; /* from the URL, decoded; given to libcurl apart */
    bool auth;
    long connect_ms, timeout_ms;
    struct curl_slist *headers;
    remote_pool pool;
    const curl_api *curl;      /* libcurl, loaded when the first remote opened */
} http_t;

typedef enum method { M_GET, M_HEAD, M_PUT, M_DELETE } method;
static const char *const method_names[] = { "GET", "HEAD", "PUT", "DELETE" };

/* One request's state, seen by the callbacks. */
typedef struct request {
    const curl_api *curl;
    CURL *e;
    const remote_sink *sink;
    uint64_t limit, got;
    long code;                /* status, once the body starts */
    acache_status st;         /* why a callback stopped the transfer */
    size_t discarded;
    const unsigned char *up;  /* PUT body */
    size_t up_len, up_pos;
    const atomic_bool *cancel;
} request;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    request *rq = arg;
    size_t len = size * n;
    if (rq->code == 0)
        rq->curl->easy_getinfo(rq->e, CURLINFO_RESPONSE_CODE, &rq->code);
    if (rq->code != 200 || !rq->sink) {
        /* An error page: read (a little of) it so the connection stays usable. */
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

static size_t on_upload(char *buf, size_t size, size_t n, void *arg)
{
    request *rq = arg;
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
    request *rq = arg;
    return rq->cancel && atomic_load(rq->cancel) ? 1 : 0;
}

/* The pool's destructor has no context; every handle came from the one
 * libcurl loaded, so its cleanup is found through curl_load (already done). */
static void handle_free(void *e)
{
    const curl_api *curl;
    if (curl_load(&curl) == ACACHE_OK)
        curl->easy_cleanup(e);
}

/* Runs one request on a pooled handle. Returns ACACHE_OK with *code set
 * when the server answered, a callback's status, or an error. */
static acache_status perform(http_t *h, method m, remote_ns ns, const char *hex, request *rq,
                             long *code)
{
    char url[URL_MAX];
    snprintf(url, sizeof url, "%s/%s/%s", h->base, ns == REMOTE_AC ? "ac" : "cas", hex);
    const curl_api *curl = h->curl;
    CURL *e = remote_pool_take(&h->pool);
    if (!e && !(e = curl->easy_init()))
        return set_error(ACACHE_ENOMEM, "http %s: cannot make a curl handle", h->where);
    /* Reset clears the options but keeps the handle's live connections. */
    curl->easy_reset(e);
    rq->curl = curl;
    rq->e = e;
    uint64_t bytes = m == M_PUT ? rq->up_len : m == M_GET ? rq->limit : 0;
    uint64_t total_ms =
        (uint64_t)h->connect_ms + (uint64_t)h->timeout_ms + bytes / REMOTE_MIN_RATE_BYTES_PER_MS;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl->easy_setopt(e, CURLOPT_URL, url);
    if (h->auth) {
        curl->easy_setopt(e, CURLOPT_USERNAME, h->user);
        curl->easy_setopt(e, CURLOPT_PASSWORD, h->pass);
    }
    curl->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl->easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl->easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
    curl->easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(total_ms > LONG_MAX ? LONG_MAX : total_ms));
    /* A transfer that moves nothing for the timeout (rounded up to a
     * second, curl's unit here) has stalled. */
    curl->easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl->easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (h->timeout_ms + 999) / 1000);
    curl->easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    curl->easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl->easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl->easy_setopt(e, CURLOPT_WRITEDATA, rq);
    curl->easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl->easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl->easy_setopt(e, CURLOPT_XFERINFODATA, rq);
    switch (m) {
    case M_GET:
        break;
    case M_HEAD:
        curl->easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case M_PUT:
        curl->easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl->easy_setopt(e, CURLOPT_READFUNCTION, on_upload);
        curl->easy_setopt(e, CURLOPT_READDATA, rq);
        curl->easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->up_len);
        break;
    case M_DELETE:
        curl->easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    }
    CURLcode rc = curl->easy_perform(e);
    acache_status st = ACACHE_OK;
    *code = 0;
    curl->easy_getinfo(e, CURLINFO_RESPONSE_CODE, code);
    if (rc == CURLE_WRITE_ERROR && rq->st != ACACHE_OK) {
        st = rq->st;
        if (st == ACACHE_CORRUPT) {
            char why[512];
            snprintf(why, sizeof why, "%s", acache_last_error());
            st = set_error(ACACHE_CORRUPT, "http %s: %s %s: %s", h->where, method_names[m], url,
                           why);
        }
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        st = set_error(ACACHE_EIO, "http %s: %s cancelled", h->where, method_names[m]);
    } else if (rc != CURLE_OK) {
        st = set_error(ACACHE_EIO, "http %s: %s %s: %s", h->where, method_names[m], url,
                       errbuf[0] ? errbuf : curl->easy_strerror(rc));
    }
    curl->easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    if (!remote_pool_give(&h->pool, e))
        curl->easy_cleanup(e);
    return st;
}

/* Runs the request and says what its answer means: for GET and HEAD, 200
 * is there and 404 is not; for PUT and DELETE, 2xx is done, 404 (DELETE)
 * is not there, and another 4xx is a refusal. Anything else is a failure. */
static acache_status request_run(http_t *h, method m, remote_ns ns, const char *hex, request *rq)
{
    long code = 0;
    bool writes = m == M_PUT || m == M_DELETE;
    acache_status st = perform(h, m, ns, hex, rq, &code);
    if (st != ACACHE_OK)
        return st;
    if (writes ? code >= 200 && code < 300 : code == 200)
        return ACACHE_OK;
    if (code == 404 && m != M_PUT)
        return ACACHE_MISS;
    if (writes && code >= 400 && code < 500)
        return set_error(REMOTE_REFUSED, "http %s: %s %s refused: HTTP status %ld", h->where,
                         method_names[m], hex, code);
    return set_error(ACACHE_EIO, "http %s: %s %s: HTTP status %ld", h->where, method_names[m],
                     hex, code);
}

static acache_status http_fetch(void *t, remote_ns ns, const char *hex, uint64_t limit,
                                const remote_sink *sink)
{
    request rq = { .sink = sink, .limit = limit };
    return request_run(t, M_GET, ns, hex, &rq);
}

static acache_status http_exists(void *t, remote_ns ns, const char *hex)
{
    request rq = { .sink = NULL };
    return request_run(t, M_HEAD, ns, hex, &rq);
}

static acache_status http_store(void *t, remote_ns ns, const char *hex, const void *data,
                                size_t len, const atomic_bool *cancel)
{
    request rq = { .up = data, .up_len = len, .cancel = cancel };
    return request_run(t, M_PUT, ns, hex, &rq);
}

static acache_status http_remove(void *t, remote_ns ns, const char *hex)
{
    request rq = { .sink = NULL };
    return request_run(t, M_DELETE, ns, hex, &rq);
}

static void http_close(void *t)
{
    http_t *h = t;
    remote_pool_destroy(&h->pool, handle_free);
    h->curl->slist_free_all(h->headers);
    free(h);
}

static const transport_ops http_transport = {
    .fetch = http_fetch,
    .exists = http_exists,
    .store = http_store,
    .remove = http_remove,
    .close = http_close,
};

/* Takes "USER[:PASSWORD]@" (up to the last '@' of the authority, as every
 * parser here reads it) off the URL at *p ("//..."), which is left at the
 * host: libcurl gets the URL without them, and them, decoded, by
 * CURLOPT_USERNAME/PASSWORD, so that a password holding '@' or ':' works
 * and curl's messages, which quote the URL, carry no secret. */
static acache_status take_userinfo(http_t *h, const char **p)
{
    const char *auth = *p + 2, *end = auth + strcspn(auth, "/"), *at = NULL;
    for (const char *q = auth; q < end; q++)
        if (*q == '@')
            at = q;
    *p = auth;
    if (!at)
        return ACACHE_OK;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *user_end = colon ? colon : at;
    if (!spec_unescape(auth, (size_t)(user_end - auth), h->user, sizeof h->user) ||
        !spec_unescape(colon ? colon + 1 : at, colon ? (size_t)(at - colon - 1) : 0, h->pass,
                       sizeof h->pass))
        return set_error(ACACHE_EINVAL, "http spec: user or password too long or badly escaped");
    h->auth = true;
    *p = at + 1;
    return ACACHE_OK;
}

acache_status http_open(spec *s, void **self, const backend_ops **ops)
{
    remote_config cfg;
    acache_status st = remote_config_parse(s, &cfg);
    if (st != ACACHE_OK)
        return st;
    /* Everything in the URL must stay in it: no spaces, no fragment. */
    const char *p = s->path;
    if (strncmp(p, "//", 2) != 0 || p[2] == '\0' || p[2] == '/' || strpbrk(p, " \t\r\n#")) {
        char shown[ACACHE_REMOTE_NAME_SIZE];
        remote_display_name(s->scheme, p, shown, sizeof shown);
        return set_error(ACACHE_EINVAL, "http spec: want %s://HOST[:PORT]/BASE, got '%s'",
                         s->scheme, shown);
    }
    /* libcurl is loaded here, by the first http remote, not at start. */
    const curl_api *curl;
    st = curl_load(&curl);
    if (st != ACACHE_OK)
        return st;
    http_t *h = calloc(1, sizeof *h);
    if (!h)
        return set_error(ACACHE_ENOMEM, "out of memory");
    if ((st = take_userinfo(h, &p)) != ACACHE_OK || *p == '\0' || *p == '/') {
        free(h);
        return st ? st : set_error(ACACHE_EINVAL, "http spec: no host after the user");
    }
    size_t len = strlen(p);
    while (len > 0 && p[len - 1] == '/')
        len--;
    int n = snprintf(h->base, sizeof h->base, "%s://%.*s", s->scheme, (int)len, p);
    if (n < 0 || (size_t)n >= sizeof h->base) {
        free(h);
        return set_error(ACACHE_EINVAL, "http spec: URL too long");
    }
    remote_display_name(s->scheme, s->path, h->where, sizeof h->where);
    h->connect_ms = (long)((cfg.connect_timeout_ns + 999999) / 1000000);
    h->timeout_ms = (long)((cfg.timeout_ns + 999999) / 1000000);
    /* No "Expect: 100-continue": it costs a round trip (or a wait) per PUT. */
    h->curl = curl;
    h->headers = curl->slist_append(NULL, "Expect:");
    if (!h->headers) {
        free(h);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    remote_pool_init(&h->pool);
    return remote_create(&cfg, &http_transport, h, h->where, self, ops);
}
