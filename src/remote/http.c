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
 * Requests run through curl_request.c: pooled handles (connections reused
 * across requests and threads), timeouts, a GET body streamed into the
 * caller's sink only once the status is 200. The GETs of a prefetch batch
 * run at once (fetch_many, curl_multi.c). This file must never print,
 * and never put the URL in a message: it may carry a password (messages
 * show the spec with the password as "***").
 */
#include "core/error.h"
#include "core/spec.h"
#include "remote/curl_request.h"
#include "remote/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX 2048

typedef struct http_t {
    char base[URL_MAX - 80];   /* scheme://authority/BASE, no trailing '/' */
    char where[ACACHE_REMOTE_NAME_SIZE + 8];
    char user[256], pass[256]; /* from the URL, decoded; given to libcurl apart */
    bool auth;
    struct curl_slist *headers;
    curl_client client;
} http_t;

/* Points rq at name (url and name: the caller's buffers) and the remote's
 * headers and credentials. */
static void request_setup(http_t *h, curl_method m, remote_ns ns, const char *hex, curl_req *rq,
                          char url[URL_MAX], char name[80])
{
    snprintf(url, URL_MAX, "%s/%s/%s", h->base, ns == REMOTE_AC ? "ac" : "cas", hex);
    snprintf(name, 80, "%s/%s", ns == REMOTE_AC ? "ac" : "cas", hex);
    rq->method = m;
    rq->url = url;
    rq->name = name;
    rq->headers = h->headers;
    if (h->auth) {
        rq->user = h->user;
        rq->password = h->pass;
    }
}

/* What an answer means: for GET and HEAD, 200 is there and 404 is not;
 * for PUT and DELETE, 2xx is done, 404 (DELETE) is not there, and another
 * 4xx is a refusal. Anything else is a failure. st: curl_perform's. */
static acache_status request_answer(http_t *h, acache_status st, const curl_req *rq)
{
    if (st != ACACHE_OK)
        return st;
    long code = rq->code;
    curl_method m = rq->method;
    bool writes = m == CURL_PUT || m == CURL_DELETE;
    if (writes ? code >= 200 && code < 300 : code == 200)
        return ACACHE_OK;
    if (code == 404 && m != CURL_PUT)
        return ACACHE_MISS;
    if (writes && code >= 400 && code < 500)
        return set_error(REMOTE_REFUSED, "%s: %s %s refused: HTTP status %ld", h->where,
                         curl_method_name(m), rq->name, code);
    return set_error(ACACHE_EIO, "%s: %s %s: HTTP status %ld", h->where, curl_method_name(m),
                     rq->name, code);
}

static acache_status request_run(http_t *h, curl_method m, remote_ns ns, const char *hex,
                                 curl_req *rq)
{
    char url[URL_MAX], name[80];
    request_setup(h, m, ns, hex, rq, url, name);
    return request_answer(h, curl_perform(&h->client, rq, h->where), rq);
}

static acache_status http_fetch(void *t, remote_ns ns, const char *hex, uint64_t limit,
                                const remote_sink *sink)
{
    curl_req rq = { .sink = sink, .limit = limit };
    return request_run(t, CURL_GET, ns, hex, &rq);
}

/* The GETs of a batch, all at once (curl_multi.c). When every one failed
 * to reach the server, that is the exchange's failure, counted once. */
static acache_status http_fetch_many(void *t, remote_ns ns, const char *const *hexes, size_t n,
                                     const uint64_t *limits, const remote_sink *sinks,
                                     acache_status *st)
{
    http_t *h = t;
    curl_req *rqs = calloc(n, sizeof *rqs);
    char (*urls)[URL_MAX] = malloc(n * sizeof *urls);
    char (*names)[80] = malloc(n * sizeof *names);
    acache_status err = ACACHE_OK;
    if (!rqs || !urls || !names) {
        err = set_error(ACACHE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rqs[i].sink = &sinks[i];
        rqs[i].limit = limits[i];
        request_setup(h, CURL_GET, ns, hexes[i], &rqs[i], urls[i], names[i]);
    }
    curl_perform_many(&h->client, rqs, n, h->where, st);
    for (size_t i = 0; i < n; i++)
        st[i] = request_answer(h, st[i], &rqs[i]);
    err = curl_batch_failure(st, n, h->where);
out:
    free(names);
    free(urls);
    free(rqs);
    return err;
}

static acache_status http_exists(void *t, remote_ns ns, const char *hex)
{
    curl_req rq = { .sink = NULL };
    return request_run(t, CURL_HEAD, ns, hex, &rq);
}

static acache_status http_store(void *t, remote_ns ns, const char *hex, const void *data,
                                size_t len, const atomic_bool *cancel)
{
    curl_req rq = { .up = data, .up_len = len, .cancel = cancel };
    return request_run(t, CURL_PUT, ns, hex, &rq);
}

static acache_status http_remove(void *t, remote_ns ns, const char *hex)
{
    curl_req rq = { .sink = NULL };
    return request_run(t, CURL_DELETE, ns, hex, &rq);
}

static void http_close(void *t)
{
    http_t *h = t;
    curl_multis_drain(&h->client);
    curl_client_destroy(&h->client);
    h->client.curl->slist_free_all(h->headers);
    free(h);
}

static const transport_ops http_transport = {
    .fetch = http_fetch,
    .fetch_many = http_fetch_many,
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
    http_t *h = calloc(1, sizeof *h);
    if (!h)
        return set_error(ACACHE_ENOMEM, "out of memory");
    /* libcurl is loaded here, by the first http remote, not at start. */
    st = curl_client_init(&h->client, (long)((cfg.connect_timeout_ns + 999999) / 1000000),
                          (long)((cfg.timeout_ns + 999999) / 1000000));
    if (st != ACACHE_OK) {
        free(h);
        return st;
    }
    if ((st = take_userinfo(h, &p)) != ACACHE_OK || *p == '\0' || *p == '/') {
        curl_client_destroy(&h->client);
        free(h);
        return st ? st : set_error(ACACHE_EINVAL, "http spec: no host after the user");
    }
    size_t len = strlen(p);
    while (len > 0 && p[len - 1] == '/')
        len--;
    int n = snprintf(h->base, sizeof h->base, "%s://%.*s", s->scheme, (int)len, p);
    if (n < 0 || (size_t)n >= sizeof h->base) {
        curl_client_destroy(&h->client);
        free(h);
        return set_error(ACACHE_EINVAL, "http spec: URL too long");
    }
    char shown[ACACHE_REMOTE_NAME_SIZE];
    remote_display_name(s->scheme, s->path, shown, sizeof shown);
    snprintf(h->where, sizeof h->where, "http %s", shown);
    /* No "Expect: 100-continue": it costs a round trip (or a wait) per PUT. */
    h->headers = h->client.curl->slist_append(NULL, "Expect:");
    if (!h->headers) {
        curl_client_destroy(&h->client);
        free(h);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    return remote_create(&cfg, &http_transport, h, shown, self, ops);
}
