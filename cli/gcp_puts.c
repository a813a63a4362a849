/*
 * gcp_puts.c - `acache gocacheprog`'s puts: the body line streamed from
 * stdin through the base64 decoder into a put stream, never held whole,
 * then committed against its OutputID and BodySize.
 *
 * Must never let a put whose body was incomplete, too long, not base64 or
 * not matching its OutputID become visible (the stream is aborted), and
 * never lose the place in stdin: an invalid put's body is still read.
 */
#include "gcp_server.h"
#include "commands.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* A put being served: its stream (NULL once it failed), what came in, and
 * the answer's error ("" while all is well). */
typedef struct put_job {
    gcp_server *s;
    const gcp_request *req;
    acache_put_stream *stream;
    uint64_t got, want;
    char err[GCP_MSG_SIZE + 160];
} put_job;

/* Hands decoded bytes to the stream. Past BodySize the put has failed:
 * stop writing, keep reading to the end of the line. */
static void put_bytes(put_job *p, const unsigned char *data, size_t len)
{
    p->got += len;
    if (p->stream != NULL && p->got > p->want) {
        acache_put_abort(p->stream);
        p->stream = NULL;
        snprintf(p->err, sizeof p->err, "body is longer than BodySize %" PRIu64, p->want);
    } else if (p->stream != NULL && acache_put_write(p->stream, data, len) != ACACHE_OK) {
        snprintf(p->err, sizeof p->err, "cannot store: %s", acache_last_error());
        acache_put_abort(p->stream);
        p->stream = NULL;
    }
}

/* Reads the body line from stdin into the put. -1 (message printed) when
 * the input is broken and the session cannot go on. */
static int read_body(put_job *p)
{
    gcp_server *s = p->s;
    gcp_input *in = &s->in;
    char msg[GCP_MSG_SIZE];
    int rc = -1;
    gcp_body *body = gcp_body_new();
    if (body == NULL) {
        cli_err("gocacheprog: put %" PRId64 ": out of memory", p->req->id);
        return -1;
    }
    for (;;) {
        gcp_body_status bst;
        size_t used = 0, outlen = 0;
        if (!gcp_in_fill(in)) {
            if (in->err != 0) {
                cli_err("gocacheprog: put %" PRId64 ": reading stdin: %s", p->req->id,
                        strerror(in->err));
                goto out;
            }
            bst = gcp_body_eof(body, msg);
        } else {
            bst = gcp_body_feed(body, in->buf + in->pos, in->len - in->pos, &used, s->decoded,
                                &outlen, msg);
            in->pos += used;
        }
        if (bst == GCP_BODY_BROKEN) {
            cli_err("gocacheprog: put %" PRId64 ": %s", p->req->id, msg);
            goto out;
        }
        if (outlen > 0)
            put_bytes(p, s->decoded, outlen);
        if (bst == GCP_BODY_DONE)
            break;
    }
    if (p->err[0] == '\0' && !gcp_body_valid(body))
        snprintf(p->err, sizeof p->err, "body is not valid base64");
    rc = 0;
out:
    gcp_body_free(body);
    return rc;
}

/* Commits a put whose body arrived whole, and answers it if it is stored. */
static void commit_put(put_job *p)
{
    acache_result res;
    memset(&res, 0, sizeof res);
    acache_status st = acache_put_commit(p->stream, &p->req->output, p->want, &res);
    p->stream = NULL;
    if (st == ACACHE_EINVAL) {
        snprintf(p->err, sizeof p->err, "body does not match its OutputID: %s",
                 acache_last_error());
    } else if (st != ACACHE_OK) {
        snprintf(p->err, sizeof p->err, "cannot store: %s", acache_last_error());
    } else if (res.path[0] != '/') {
        snprintf(p->err, sizeof p->err, "stored, but the store gave no local path");
    } else {
        gcp_respond(p->s, p->req->id, gcp_format_entry(p->req->id, &res, NULL));
    }
    acache_result_release(&res);
}

/* Serves one put (gcp_server.h). */
int gcp_serve_put(gcp_server *s, const gcp_request *req, gcp_parse_status parse_st,
              const char *parse_msg)
{
    int64_t start = now_ns();
    put_job p = { .s = s, .req = req, .want = req->body_size > 0 ? (uint64_t)req->body_size : 0 };
    int rc = -1;

    atomic_fetch_add(&s->puts, 1);
    if (parse_st != GCP_PARSE_OK)
        snprintf(p.err, sizeof p.err, "%s", parse_msg);
    else if (acache_put_begin(gcp_spill_route(&s->spill, s->store, p.want), &req->action,
                              &p.stream) != ACACHE_OK)
        snprintf(p.err, sizeof p.err, "cannot store: %s", acache_last_error());

    if (gcp_request_has_body(req) && read_body(&p) != 0)
        goto out;
    atomic_fetch_add(&s->bytes_in, p.got);

    if (p.err[0] == '\0' && p.got != p.want)
        snprintf(p.err, sizeof p.err, "body has %" PRIu64 " bytes but BodySize is %" PRIu64,
                 p.got, p.want);
    if (p.err[0] == '\0')
        commit_put(&p);
    if (p.err[0] != '\0') {
        acache_put_abort(p.stream);
        p.stream = NULL;
        if (s->verbose)
            cli_err("gocacheprog: put %" PRId64 ": %s", req->id, p.err);
        gcp_respond_err(s, req->id, p.err);
    }
    rc = 0;
out:
    /* On a broken input nothing is answered and nothing half-written may
     * stay: the stream is dropped. */
    acache_put_abort(p.stream);
    add_busy(s, start);
    return rc;
}
