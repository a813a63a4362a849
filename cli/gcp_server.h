/*
 * gcp_server.h - `acache gocacheprog`'s shared state: the store, the one
 * writer of response lines, the pool of get workers and the session's
 * counters, seen by the reader (gocacheprog.c), the gets (gcp_gets.c), the
 * puts (gcp_puts.c) and the responses (gcp_respond.c).
 *
 * Rules: response lines are written only under out_mu, one whole line at a
 * time; the get queue is guarded by mu; the counters are atomics.
 */
#ifndef ACACHE_GCP_SERVER_H
#define ACACHE_GCP_SERVER_H

#include "clock.h"
#include "gcp_input.h"
#include "gcp_spill.h"
#include "prog/wire.h"

#include "acache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Workers serving gets when remotes are configured. Gets are then I/O-bound,
 * so a few more than the cores of a small machine. With only the local disk
 * store a get takes microseconds, less than handing it to another thread
 * costs, so the reader serves it itself (measured: a warm `go build std`
 * ~10% slower through the pool). --workers overrides either default. */
#define GCP_WORKERS 8
#define GCP_WORKERS_MAX 64
/* Gets waiting for a worker before the reader stops reading. */
#define GCP_QUEUE_MAX 1024

typedef struct get_job {
    struct get_job *next;
    int64_t id;
    acache_id action;
} get_job;

typedef struct gcp_server {
    acache_store *store;
    gcp_spill spill;          /* puts the full cache has no room for */
    bool verbose;
    bool local_first;         /* remotes: serve local hits on the reader */

    pthread_mutex_t out_mu;   /* serializes response lines */
    atomic_bool out_broken;   /* stdout failed (nobody is listening) or was ended */

    pthread_mutex_t mu;       /* guards the queue below */
    pthread_cond_t job_cv;    /* a job was queued, or stopping */
    pthread_cond_t space_cv;  /* the queue has room */
    pthread_cond_t idle_cv;   /* nothing queued or running */
    get_job *head, *tail;
    size_t queued, running;
    bool stopping;
    pthread_t workers[GCP_WORKERS_MAX];
    size_t nworkers;

    atomic_uint_least64_t gets, hits, misses, puts, closes;
    atomic_uint_least64_t bytes_in, bytes_out, errors, busy_ns;
    atomic_bool get_error_shown;

    gcp_input in;
    unsigned char decoded[GCP_BODY_OUT_MAX(GCP_READ_CHUNK)];
} gcp_server;

/* Adds the time since start to the summed time in requests. */
static inline void add_busy(gcp_server *s, int64_t start)
{
    int64_t d = now_ns() - start;
    atomic_fetch_add(&s->busy_ns, d > 0 ? (uint64_t)d : 0);
}

/* ---- gcp_respond.c: response lines on stdout. */

/* Writes one response line (taking line, which may be NULL when it could
 * not be formatted) for id. */
void gcp_respond(gcp_server *s, int64_t id, char *line);
/* Answers id with an error (counted). */
void gcp_respond_err(gcp_server *s, int64_t id, const char *msg);
/* Ends stdout: the reader at the other end sees end of file. */
void gcp_end_stdout(gcp_server *s);

/* ---- gcp_gets.c: gets, on the reader or a pool of workers. */

/* Hands a get to the pool; serves it here when there is no pool. */
void gcp_dispatch_get(gcp_server *s, int64_t id, const acache_id *action);
/* Waits until every get handed to the pool has been answered. */
void gcp_wait_idle(gcp_server *s);
void gcp_start_workers(gcp_server *s, size_t want);
/* Lets the workers finish what is queued, then joins them. */
void gcp_stop_workers(gcp_server *s);

/* ---- gcp_puts.c: puts, their bodies streamed from stdin. */

/*
 * Serves one put: streams its body (if any) from stdin into a put stream
 * and answers. parse_st/parse_msg say whether the request itself was
 * valid; an invalid put's body is still read (and dropped) so the next
 * request is found. Returns 0, or -1 (message printed, stream aborted)
 * when the input is broken and the session cannot go on.
 */
int gcp_serve_put(gcp_server *s, const gcp_request *req, gcp_parse_status parse_st,
              const char *parse_msg);

#endif
