/*
 * curl_request.h - one HTTP request of a remote transport (http, s3) on a
 * pooled libcurl easy handle: the handle pool, the timeouts, streaming a
 * 200 body into a sink, sending a body from memory, keeping the start of
 * an error body and one response header, and libcurl's own AWS Signature
 * Version 4 when asked.
 *
 * It says what the server answered (the status); what an answer means is
 * the transport's business. It must never follow redirects, use signals
 * (CURLOPT_NOSIGNAL), print, or put a URL, user name or password in a
 * message (messages name the request by the caller's `where` and the
 * object's name only).
 */
#ifndef ACACHE_CURL_REQUEST_H
#define ACACHE_CURL_REQUEST_H

#include "remote/curl_load.h"
#include "remote/remote.h"

#include <stdatomic.h>

/* Bytes of an error body kept for the transport to read (S3's XML). */
#define CURL_REQ_ERRBODY 1024

/* What every request of one remote shares. */
typedef struct curl_client {
    const curl_api *curl;
    remote_pool pool;          /* idle single-request handles (an easy handle
                                  and a multi handle to wait on it), with
                                  their connections */
    remote_pool multis;        /* idle multi handles with their easy handles
                                  (curl_multi.c), and their connections */
    long connect_ms, timeout_ms;
} curl_client;

typedef enum curl_method { CURL_GET, CURL_HEAD, CURL_PUT, CURL_DELETE } curl_method;

typedef struct curl_req {
    curl_method method;
    const char *url;
    const char *name;                /* "ac/<hex>", for messages */
    const struct curl_slist *headers;
    const remote_sink *sink;         /* GET: receives a 200 body */
    uint64_t limit;                  /* GET: more is ACACHE_CORRUPT */
    const unsigned char *up;         /* PUT body */
    size_t up_len;
    const atomic_bool *cancel;       /* set: give up (an error) */
    const char *aws_sigv4;           /* "aws:amz:REGION:s3", or NULL */
    const char *user, *password;     /* the key pair for aws_sigv4, else basic auth; or NULL */
    const char *want_header;         /* lower case; its value kept below */

    /* Filled by curl_perform (private: up_pos, got, discarded, st). */
    long code;
    char errbody[CURL_REQ_ERRBODY];  /* the start of a non-200 body, NUL-ended */
    size_t errlen;
    char header[128];                /* want_header's value, or "" */
    size_t up_pos;
    uint64_t got;
    size_t discarded;
    acache_status st;
    const curl_api *curl_;
    void *e_;
} curl_req;

/* Loads libcurl (curl_load) and sets up c. */
acache_status curl_client_init(curl_client *c, long connect_ms, long timeout_ms);
void curl_client_destroy(curl_client *c);

/* Runs rq. ACACHE_OK with rq->code set when the server answered (any
 * status); a sink's status; ACACHE_CORRUPT past the limit; or ACACHE_EIO
 * (cannot connect, timeout, cancelled), the message naming `where`. */
acache_status curl_perform(curl_client *c, curl_req *rq, const char *where);

/* The two halves of curl_perform, for curl_multi.c: handle e set up for
 * rq, with a receive buffer of recv_buffer bytes (give a handle the same
 * size every time: libcurl reallocates its buffer to a new size, and a new
 * buffer faults in afresh), errbuf (CURL_ERROR_SIZE bytes) receiving
 * libcurl's message; then, once libcurl has run it to rc, what
 * curl_perform returns. The handle stays the caller's. */
void curl_req_start(curl_client *c, curl_req *rq, CURL *e, long recv_buffer, char *errbuf);
acache_status curl_req_end(curl_client *c, curl_req *rq, CURLcode rc, const char *errbuf,
                           const char *where);
/* Frees the multi handles curl_perform_many pooled in c, with their
 * connections: call it before curl_client_destroy if it was ever called. */
void curl_multis_drain(curl_client *c);

/* Runs rqs[0..n) at once (on connections of their own, kept for the next
 * call); st[i] is what curl_perform would return for rqs[i]. */
void curl_perform_many(curl_client *c, curl_req *rqs, size_t n, const char *where,
                       acache_status *st);
/* After a batch's statuses st[0..n) have their meaning: the exchange's
 * own failure when every request failed to reach the server (counted
 * once by the caller), else ACACHE_OK. */
acache_status curl_batch_failure(const acache_status *st, size_t n, const char *where);

/* "GET", "HEAD", ... */
const char *curl_method_name(curl_method m);

#endif
