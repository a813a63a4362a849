/*
 * s3.c - the S3 transport of a remote store: Amazon S3 and what
 * speaks its API (Google Cloud Storage's XML API with HMAC keys,
 * Cloudflare R2, MinIO, Ceph RGW), through libcurl.
 *
 *   s3://BUCKET[/PREFIX][?region=R&endpoint=URL&addressing=path|virtual&...]
 *
 * Names are PREFIX/ac/<hex> and PREFIX/cas/<hex>, as on the other remotes.
 * Requests are signed by libcurl's own AWS Signature Version 4
 * (CURLOPT_AWS_SIGV4), with the credentials aws_creds.c finds, and carry
 * x-amz-content-sha256: the SHA-256 of the body sent (for a raw object,
 * its output id: no second hash), so the server checks the bytes too.
 * With no credentials (mode=ro only) requests go unsigned: a public bucket.
 *
 * What an answer means: GET/HEAD 200 is there, 404 a miss (but 404
 * NoSuchBucket an error); PUT/DELETE 2xx done, DELETE 404 not there.
 * Wrong credentials (403), a wrong region (301, or 400 naming the region)
 * and a missing bucket are errors, which count towards switching the
 * remote off, with one line naming the bucket, region and credential
 * source. A write refused as AccessDenied (keys that may read but not
 * write), or another 4xx, is a refusal: it switches off uploads only.
 * Requests (pooled handles, timeouts) run through curl_request.c; the
 * GETs of a prefetch batch run at once (fetch_many, curl_multi.c).
 *
 * This file must never put the secret or the session token in a message
 * or in what acache_remotes() shows, never follow a redirect, and never
 * print.
 */
#include "remote/aws_creds.h"
#include "remote/curl_request.h"
#include "core/error.h"
#include "remote/remote.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX 2048
/* SHA-256 of no bytes: the payload hash of GET, HEAD and DELETE. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct s3_t {
    char base[URL_MAX - 80];   /* scheme://host/BUCKET[/PREFIX] or scheme://BUCKET.host[/PREFIX] */
    char where[600];           /* "s3 bucket B (region R, credentials SOURCE)" */
    char detail[1024];         /* acache_remote_info.detail (cut to its size) */
    char sigv4[AWS_REGION_MAX + 16];
    aws_creds creds;
    struct curl_slist *headers; /* the session token, or NULL */
    atomic_bool no_bucket;     /* a request was told NoSuchBucket */
    curl_client client;
} s3_t;

/* What a spec says, before the environment fills the gaps. */
typedef struct s3_spec {
    char bucket[256], prefix[512];
    const char *region, *endpoint, *addressing;
} s3_spec;

/* ------------------------------------------------------------------ */
/* Answers                                                              */

/* Copies the text of <tag>...</tag> in xml into out (printable bytes
 * only), or "" when there is none. */
static void xml_field(const char *xml, const char *tag, char *out, size_t size)
{
    char open[40];
    snprintf(open, sizeof open, "<%s>", tag);
    const char *s = strstr(xml, open), *e;
    out[0] = '\0';
    if (!s || !(e = strstr(s += strlen(open), "</")))
        return;
    size_t n = 0;
    for (; s < e && n + 1 < size; s++)
        out[n++] = isprint((unsigned char)*s) ? *s : ' ';
    out[n] = '\0';
}

/* An answer that means the server is fine but the request was wrong for
 * it: the region (301, or 400 naming the right one). */
static acache_status wrong_region(s3_t *s, const curl_req *rq, const char *code,
                                  const char *region)
{
    const char *in = region[0] ? region : rq->header;
    return set_error(ACACHE_EIO, "%s: %s %s: HTTP %ld%s%s: the bucket is in region %s, not %s "
                                 "(set region=%s or AWS_REGION)", s->where,
                     curl_method_name(rq->method), rq->name, rq->code, code[0] ? " " : "", code,
                     in[0] ? in : "(not said)", s->creds.region, in[0] ? in : "REGION");
}

/* What the status (and S3 error code) of an answer means; see the top. */
static acache_status s3_meaning(s3_t *s, const curl_req *rq)
{
    char code[64], msg[200], region[AWS_REGION_MAX];
    long st = rq->code;
    curl_method m = rq->method;
    bool writes = m == CURL_PUT || m == CURL_DELETE;
    if (writes ? st >= 200 && st < 300 : st == 200)
        return ACACHE_OK;
    xml_field(rq->errbody, "Code", code, sizeof code);
    xml_field(rq->errbody, "Message", msg, sizeof msg);
    xml_field(rq->errbody, "Region", region, sizeof region);
    /* A HEAD has no body to say NoSuchBucket; once a request was told
     * so, its 404 means that too, so uploads to no bucket switch the
     * remote off rather than each start with a "miss". */
    if (st == 404 && m == CURL_HEAD && atomic_load(&s->no_bucket))
        snprintf(code, sizeof code, "NoSuchBucket");
    if (st == 404 && m != CURL_PUT && strcmp(code, "NoSuchBucket") != 0)
        return ACACHE_MISS;
    /* A public bucket that does not let anyone list it says 403 for a
     * name it does not have. */
    if (st == 403 && !s->creds.have_keys && m == CURL_GET && !strcmp(code, "AccessDenied"))
        return ACACHE_MISS;
    const char *named = region[0] ? region : rq->header;
    if (st == 301 || (st == 400 && named[0] && strcmp(named, s->creds.region) != 0))
        return wrong_region(s, rq, code, region);
    if (st == 404 && !strcmp(code, "NoSuchBucket")) {
        atomic_store(&s->no_bucket, true);
        return set_error(ACACHE_EIO, "%s: %s %s: HTTP 404 NoSuchBucket: the bucket does not "
                                     "exist", s->where, curl_method_name(m), rq->name);
    }
    bool refusal = writes && st >= 400 && st < 500 && (st != 403 || !strcmp(code, "AccessDenied"));
    if (st == 403 && !code[0])
        snprintf(msg, sizeof msg, "access denied: a wrong key, secret or token, or no permission");
    return set_error(refusal ? REMOTE_REFUSED : ACACHE_EIO, "%s: %s %s%s: HTTP %ld%s%s%s%s",
                     s->where, curl_method_name(m), rq->name, refusal ? " refused" : "", st,
                     code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
}

/* What one request needs beside its curl_req: its URL, its name for
 * messages, and its payload-hash header in front of the shared list
 * (libcurl only reads the list during the request). */
typedef struct s3_req_bufs {
    char url[URL_MAX], name[80], hash_header[100];
    struct curl_slist first;
} s3_req_bufs;

/* Points rq at hex in ns, signed when there are keys; payload_sha256 is
 * the hex SHA-256 of the body. */
static void s3_prepare(s3_t *s, curl_method m, remote_ns ns, const char *hex,
                       const char *payload_sha256, curl_req *rq, s3_req_bufs *b)
{
    const char *nsname = ns == REMOTE_AC ? "ac" : "cas";
    snprintf(b->url, sizeof b->url, "%s/%s/%s", s->base, nsname, hex);
    /* Messages must fit a reason line: the start of the hex names it well enough. */
    snprintf(b->name, sizeof b->name, "%s/%.12s...", nsname, hex);
    rq->method = m;
    rq->url = b->url;
    rq->name = b->name;
    rq->want_header = "x-amz-bucket-region";
    rq->headers = s->headers;
    if (s->creds.have_keys) {
        snprintf(b->hash_header, sizeof b->hash_header, "x-amz-content-sha256: %s",
                 payload_sha256);
        b->first = (struct curl_slist){ b->hash_header, s->headers };
        rq->headers = &b->first;
        rq->aws_sigv4 = s->sigv4;
        rq->user = s->creds.key_id;
        rq->password = s->creds.secret;
    }
}

/* Runs one request; payload_sha256 is the hex SHA-256 of the body. */
static acache_status s3_run(s3_t *s, curl_method m, remote_ns ns, const char *hex,
                            const char *payload_sha256, curl_req *rq)
{
    s3_req_bufs b;
    s3_prepare(s, m, ns, hex, payload_sha256, rq, &b);
    acache_status st = curl_perform(&s->client, rq, s->where);
    return st != ACACHE_OK ? st : s3_meaning(s, rq);
}

static acache_status s3_fetch(void *t, remote_ns ns, const char *hex, uint64_t limit,
                              const remote_sink *sink)
{
    curl_req rq = { .sink = sink, .limit = limit };
    return s3_run(t, CURL_GET, ns, hex, EMPTY_SHA256, &rq);
}

/* The GETs of a prefetch batch, all at once on one multi handle
 * (curl_multi.c), each signed as s3_fetch signs it: without this, S3
 * waited out a round trip per name where HTTP overlaps them. When every
 * one failed to reach the server, that is the exchange's failure,
 * counted once. */
static acache_status s3_fetch_many(void *t, remote_ns ns, const char *const *hexes, size_t n,
                                   const uint64_t *limits, const remote_sink *sinks,
                                   acache_status *st)
{
    s3_t *s = t;
    curl_req *rqs = calloc(n, sizeof *rqs);
    s3_req_bufs *bufs = malloc(n * sizeof *bufs);
    acache_status err = ACACHE_OK;
    if (!rqs || !bufs) {
        err = set_error(ACACHE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rqs[i].sink = &sinks[i];
        rqs[i].limit = limits[i];
        s3_prepare(s, CURL_GET, ns, hexes[i], EMPTY_SHA256, &rqs[i], &bufs[i]);
    }
    curl_perform_many(&s->client, rqs, n, s->where, st);
    for (size_t i = 0; i < n; i++)
        if (st[i] == ACACHE_OK)
            st[i] = s3_meaning(s, &rqs[i]);
    err = curl_batch_failure(st, n, s->where);
out:
    free(bufs);
    free(rqs);
    return err;
}

static acache_status s3_exists(void *t, remote_ns ns, const char *hex)
{
    curl_req rq = { .sink = NULL };
    return s3_run(t, CURL_HEAD, ns, hex, EMPTY_SHA256, &rq);
}

static acache_status s3_store(void *t, remote_ns ns, const char *hex, const void *data,
                              size_t len, const atomic_bool *cancel)
{
    char sha[ACACHE_ID_HEX_SIZE];
    if (ns == REMOTE_CAS && object_is_raw(data, len)) {
        snprintf(sha, sizeof sha, "%s", hex);   /* the bytes are the object: hex is their hash */
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != ACACHE_ID_SIZE)
            return set_error(ACACHE_EIO, "%s: cannot hash %zu bytes", ((s3_t *)t)->where, len);
        acache_id id;
        memcpy(id.bytes, md, ACACHE_ID_SIZE);
        acache_id_to_hex(&id, sha);
    }
    curl_req rq = { .up = data, .up_len = len, .cancel = cancel };
    return s3_run(t, CURL_PUT, ns, hex, sha, &rq);
}

static acache_status s3_remove(void *t, remote_ns ns, const char *hex)
{
    curl_req rq = { .sink = NULL };
    return s3_run(t, CURL_DELETE, ns, hex, EMPTY_SHA256, &rq);
}

static void s3_describe(void *t, char *out, size_t size)
{
    snprintf(out, size, "%s", ((s3_t *)t)->detail);
}

static void s3_close(void *t)
{
    s3_t *s = t;
    curl_multis_drain(&s->client);
    curl_client_destroy(&s->client);
    s->client.curl->slist_free_all(s->headers);
    aws_creds_wipe(&s->creds);
    free(s);
}

static const transport_ops s3_transport = {
    .fetch = s3_fetch,
    .fetch_many = s3_fetch_many,
    .exists = s3_exists,
    .store = s3_store,
    .remove = s3_remove,
    .close = s3_close,
    .describe = s3_describe,
};

/* ------------------------------------------------------------------ */
/* Opening                                                              */

static bool all_of(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i]))
            return false;
    return true;
}

/* "//BUCKET[/PREFIX]" into sp. The prefix keeps to characters that need
 * no escaping and has no empty, "." or ".." segment (libcurl would
 * rewrite those, and the signature with them). */
static acache_status parse_path(const char *path, s3_spec *sp)
{
    const char *p = path + 2, *slash;
    if (strncmp(path, "//", 2) != 0)
        goto bad;
    slash = strchr(p, '/');
    size_t blen = slash ? (size_t)(slash - p) : strlen(p);
    if (blen < 3 || blen >= sizeof sp->bucket || !all_of(p, blen, ".-_") || p[0] == '.')
        goto bad;
    memcpy(sp->bucket, p, blen);
    sp->bucket[blen] = '\0';
    const char *pre = slash ? slash + 1 : "";
    size_t plen = strlen(pre);
    while (plen > 0 && pre[plen - 1] == '/')
        plen--;
    if (plen >= sizeof sp->prefix || !all_of(pre, plen, "-_.~/"))
        goto bad;
    memcpy(sp->prefix, pre, plen);
    sp->prefix[plen] = '\0';
    for (char *seg = sp->prefix; plen > 0 && seg;) {
        char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && !strncmp(seg, "..", 2)))
            goto bad;
        seg = end ? end + 1 : NULL;
    }
    return ACACHE_OK;
bad:
    return set_error(ACACHE_EINVAL, "s3 spec: want s3://BUCKET[/PREFIX] (bucket: 3 or more "
                                    "letters, digits, . - _; prefix: letters, digits, - _ . ~ /), "
                                    "got 's3:%.200s'",
                     path);
}

/* Splits an endpoint URL into scheme ("http"/"https") and host[:port]. */
static acache_status parse_endpoint(const char *url, const char *from, char *scheme,
                                    char *host, size_t hostsize)
{
    const char *h = !strncmp(url, "https://", 8) ? url + 8 : !strncmp(url, "http://", 7) ? url + 7 : NULL;
    size_t n = h ? strcspn(h, "/") : 0;
    if (!h || n == 0 || n >= hostsize || !all_of(h, n, ".-_:[]") || (h[n] && strcmp(h + n, "/")))
        return set_error(ACACHE_EINVAL, "s3 endpoint (from %s): want http[s]://HOST[:PORT] "
                                        "with no path, user or query, got '%.200s'", from, url);
    snprintf(scheme, 8, "%.*s", (int)(h - url - 3), url);
    memcpy(host, h, n);
    host[n] = '\0';
    return ACACHE_OK;
}

/* The base URL, from the endpoint, the addressing and the bucket. */
static acache_status make_base(s3_t *s, const s3_spec *sp, const char *endpoint,
                               const char *endpoint_from)
{
    char scheme[8], host[AWS_ENDPOINT_MAX], aws_host[AWS_REGION_MAX + 32];
    acache_status st;
    if (endpoint) {
        if ((st = parse_endpoint(endpoint, endpoint_from, scheme, host, sizeof host)))
            return st;
    } else {
        snprintf(scheme, sizeof scheme, "https");
        snprintf(aws_host, sizeof aws_host, "s3.%s.amazonaws.com", s->creds.region);
        snprintf(host, sizeof host, "%s", aws_host);
    }
    /* Virtual-hosted names for AWS, unless the bucket has a dot (no
     * certificate matches it); path style for anything else. */
    bool virt = sp->addressing ? !strcmp(sp->addressing, "virtual")
                               : !endpoint && !strchr(sp->bucket, '.');
    if (sp->addressing && !virt && strcmp(sp->addressing, "path") != 0)
        return set_error(ACACHE_EINVAL, "s3 option addressing: want path or virtual, got '%s'",
                         sp->addressing);
    int n = virt ? snprintf(s->base, sizeof s->base, "%s://%s.%s", scheme, sp->bucket, host)
                 : snprintf(s->base, sizeof s->base, "%s://%s/%s", scheme, host, sp->bucket);
    if (n > 0 && (size_t)n < sizeof s->base && sp->prefix[0])
        n += snprintf(s->base + n, sizeof s->base - (size_t)n, "/%s", sp->prefix);
    if (n < 0 || (size_t)n >= sizeof s->base)
        return set_error(ACACHE_EINVAL, "s3 spec: URL too long");
    snprintf(s->detail, sizeof s->detail, "region %s (%.250s), endpoint %s://%.100s (%.40s), %s "
             "addressing, credentials: %.250s", s->creds.region, s->creds.region_source, scheme,
             host, endpoint_from, virt ? "virtual" : "path", s->creds.source);
    return ACACHE_OK;
}

/* Credentials, region and endpoint: the spec over the environment. */
static acache_status s3_setup(s3_t *s, const s3_spec *sp, const remote_config *cfg)
{
    acache_status st = aws_creds_find(&s->creds);
    if (st != ACACHE_OK)
        return st;
    if (sp->region) {
        snprintf(s->creds.region, sizeof s->creds.region, "%.*s",
                 (int)sizeof s->creds.region - 1, sp->region);
        snprintf(s->creds.region_source, sizeof s->creds.region_source, "region=");
    }
    /* It goes into a host name and the signature: letters, digits, '-'. */
    const char *r = sp->region ? sp->region : s->creds.region;
    if (!r[0] || strlen(r) >= sizeof s->creds.region || !all_of(r, strlen(r), "-"))
        return set_error(ACACHE_EINVAL, "s3 region (from %.200s): want a region such as "
                                        "eu-west-1, got '%.80s'", s->creds.region_source, r);
    if (!s->creds.have_keys && cfg->can_write)
        return set_error(ACACHE_EINVAL, "s3://%s: no AWS credentials found (AWS_ACCESS_KEY_ID, "
                                        "the AWS_PROFILE profile in the shared credentials or "
                                        "config file); anonymous access needs mode=ro",
                         sp->bucket);
    const char *endpoint = sp->endpoint ? sp->endpoint
                           : s->creds.endpoint[0] ? s->creds.endpoint : NULL;
    const char *from = sp->endpoint ? "endpoint=" : endpoint ? s->creds.endpoint_source
                                                             : "AWS default";
    if ((st = make_base(s, sp, endpoint, from)))
        return st;
    snprintf(s->sigv4, sizeof s->sigv4, "aws:amz:%s:s3", s->creds.region);
    snprintf(s->where, sizeof s->where, "s3 bucket %s (region %s, credentials: %.200s)",
             sp->bucket, s->creds.region, s->creds.source);
    /* No "Expect:" line to turn 100-continue off, as http does: libcurl
     * 7.88 signs it as an (empty) "expect" header that it never sends.
     * curl_request.c sends bodies without waiting for the 100 instead. */
    if (s->creds.token[0]) {
        char *h = malloc(strlen(s->creds.token) + 32);
        if (h) {
            sprintf(h, "x-amz-security-token: %s", s->creds.token);
            s->headers = s->client.curl->slist_append(NULL, h);
            memset(h, 0, strlen(h));
            free(h);
        }
        if (!s->headers)
            return set_error(ACACHE_ENOMEM, "out of memory");
    }
    return ACACHE_OK;
}

acache_status s3_open(spec *sp_in, void **self, const backend_ops **ops)
{
    remote_config cfg;
    s3_spec sp = { .region = spec_get(sp_in, "region"), .endpoint = spec_get(sp_in, "endpoint"),
                   .addressing = spec_get(sp_in, "addressing") };
    acache_status st = remote_config_parse(sp_in, &cfg);
    if (st != ACACHE_OK || (st = parse_path(sp_in->path, &sp)) != ACACHE_OK)
        return st;
    s3_t *s = calloc(1, sizeof *s);
    if (!s)
        return set_error(ACACHE_ENOMEM, "out of memory");
    /* libcurl is loaded here, by the first remote that needs it. */
    st = curl_client_init(&s->client, (long)((cfg.connect_timeout_ns + 999999) / 1000000),
                          (long)((cfg.timeout_ns + 999999) / 1000000));
    if (st != ACACHE_OK) {
        free(s);
        return st;
    }
    if ((st = s3_setup(s, &sp, &cfg)) != ACACHE_OK) {
        s3_close(s);
        return st;
    }
    char name[sizeof sp.bucket + sizeof sp.prefix + 8]; /* remote_create cuts it */
    snprintf(name, sizeof name, "s3://%s%s%s", sp.bucket, sp.prefix[0] ? "/" : "", sp.prefix);
    return remote_create(&cfg, &s3_transport, s, name, self, ops);
}
