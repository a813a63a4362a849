/*
 * gcp_gets.c - `acache gocacheprog`'s gets: served on the reader when only
 * the local store is there (microseconds, less than a hand-off), else by a
 * pool of workers (GCP_WORKERS), local hits still on the reader; each
 * answered as it completes.
 *
 * Must never fail a build (a get that fails is a miss, the first failure
 * shown), answer a hit without a local path (the go command needs one),
 * or let the queue grow past GCP_QUEUE_MAX (the reader waits instead).
 */
#include "gcp_server.h"
#include "commands.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void serve_get(gcp_server *s, int64_t id, const acache_id *action)
{
    int64_t start = now_ns();
    acache_result res;
    char *line;

    memset(&res, 0, sizeof res);
    atomic_fetch_add(&s->gets, 1);
    acache_status st = acache_get(s->store, action, 0, &res);
    if (st == ACACHE_OK && res.path[0] == '/') {
        line = gcp_format_entry(id, &res, NULL);
        atomic_fetch_add(&s->hits, 1);
        atomic_fetch_add(&s->bytes_out, res.size);
    } else {
        /* A get that fails is a miss: the cache must never fail a build.
         * The first failure is shown; the rest only with -v. */
        if (st < 0) {
            atomic_fetch_add(&s->errors, 1);
            if (s->verbose || !atomic_exchange(&s->get_error_shown, true))
                cli_err("gocacheprog: get %" PRId64 " answered as a miss: %s", id,
                        acache_last_error());
        } else if (st == ACACHE_OK) {
            cli_err("gocacheprog: get %" PRId64 " hit an entry with no local path; answered "
                    "as a miss", id);
        }
        line = gcp_format_miss(id, NULL);
        atomic_fetch_add(&s->misses, 1);
    }
    acache_result_release(&res);
    gcp_respond(s, id, line);
    add_busy(s, start);
}

static void *worker_main(void *arg)
{
    gcp_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->head == NULL && !s->stopping)
            pthread_cond_wait(&s->job_cv, &s->mu);
        get_job *job = s->head;
        if (job == NULL) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->head = job->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued--;
        s->running++;
        pthread_cond_signal(&s->space_cv);
        pthread_mutex_unlock(&s->mu);

        serve_get(s, job->id, &job->action);
        free(job);

        pthread_mutex_lock(&s->mu);
        s->running--;
        if (s->queued == 0 && s->running == 0)
            pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Answers a get the local tiers hit, here on the reader; false (nothing
 * answered or counted) when it must go to the remotes. A local hit takes
 * microseconds, less than a hand-off to a worker. */
static bool serve_local_hit(gcp_server *s, int64_t id, const acache_id *action)
{
    int64_t start = now_ns();
    acache_result res;
    memset(&res, 0, sizeof res);
    if (acache_get(s->store, action, ACACHE_GET_LOCAL, &res) != ACACHE_OK || res.path[0] != '/') {
        acache_result_release(&res);
        return false;
    }
    atomic_fetch_add(&s->gets, 1);
    atomic_fetch_add(&s->hits, 1);
    atomic_fetch_add(&s->bytes_out, res.size);
    gcp_respond(s, id, gcp_format_entry(id, &res, NULL));
    acache_result_release(&res);
    add_busy(s, start);
    return true;
}

void gcp_dispatch_get(gcp_server *s, int64_t id, const acache_id *action)
{
    if (s->nworkers > 0 && s->local_first && serve_local_hit(s, id, action))
        return;
    get_job *job = s->nworkers > 0 ? malloc(sizeof *job) : NULL;
    if (job == NULL) {
        serve_get(s, id, action);
        return;
    }
    job->next = NULL;
    job->id = id;
    job->action = *action;
    pthread_mutex_lock(&s->mu);
    while (s->queued >= GCP_QUEUE_MAX)
        pthread_cond_wait(&s->space_cv, &s->mu);
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->queued++;
    pthread_cond_signal(&s->job_cv);
    pthread_mutex_unlock(&s->mu);
}

void gcp_wait_idle(gcp_server *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->queued > 0 || s->running > 0)
        pthread_cond_wait(&s->idle_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void gcp_start_workers(gcp_server *s, size_t want)
{
    if (want == 0)
        return;
    for (size_t i = 0; i < want; i++) {
        if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) != 0)
            break;
        s->nworkers++;
    }
    if (s->nworkers == 0)
        cli_err("gocacheprog: could not start worker threads; serving gets one at a time");
}

void gcp_stop_workers(gcp_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->job_cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
}
