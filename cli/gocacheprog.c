/*
 * gocacheprog.c - `acache gocacheprog`: serves the go command's build cache
 * over the GOCACHEPROG protocol (Go 1.21-1.23 built with the cacheprog
 * experiment, Go 1.24 and later as they come) on stdin and stdout.
 *
 * One reader thread (the caller's) reads requests in order. Put bodies are
 * inline in stdin, so the reader streams each one itself, straight from a
 * fixed read buffer through the base64 decoder into acache_put_write: a put
 * never holds its body whole. With remotes, gets go to a small pool of
 * workers and are answered as they complete; with only the local store the
 * reader serves them itself (see GCP_WORKERS). Every response is one line
 * written under a mutex by a single write loop, so lines never interleave.
 * A request line longer than GCP_MAX_LINE is not held but scanned as it
 * streams (gcp_scan) and answered Err for its ID; only input that is not a
 * request stream at all (no JSON object, no ID) ends the helper.
 *
 * This file must never print anything on stdout but protocol lines
 * (diagnostics go to stderr through cli_err), never answer a request twice
 * or not at all (the go command waits for every ID), and never let a put
 * whose body was incomplete or did not match its OutputID become visible.
 * Wire format details live in src/prog/wire.h; storage in the library.
 *
 * Its parts: gcp_input.c (request lines from stdin), gcp_gets.c (gets and
 * their workers), gcp_puts.c (puts and their bodies), gcp_respond.c
 * (response lines), gcp_report.c (stderr), gcp_options.c (flags),
 * gcp_spill.c (a full disk); this file reads and dispatches the requests
 * and runs the session.
 */
#include "commands.h"
#include "gcp_options.h"
#include "gcp_report.h"
#include "gcp_server.h"

#include "acache.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Shows a request line in a message: its start, printable bytes only. */
static void show_line(const char *line, size_t len, char out[84])
{
    size_t n = 0;
    for (size_t i = 0; i < len && n < 80; i++) {
        unsigned char c = (unsigned char)line[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > 80) {
        out[77] = out[78] = out[79] = '.';
        n = 80;
    }
    out[n] = '\0';
}

/* Reads and answers requests until end of input. Returns the exit status. */
static int serve(gcp_server *s)
{
    gcp_request req;
    char msg[GCP_MSG_SIZE];

    for (;;) {
        if (atomic_load(&s->out_broken))
            return 1;
        int r = gcp_read_request_line(&s->in);
        if (r == 0)
            return 0;
        if (r < 0)
            return 1;
        int64_t start = now_ns();
        /* A line too long to hold is answered Err for its ID, if it has
         * one; only a line that is no request at all ends the helper. */
        gcp_parse_status st = r == 2 ? gcp_scan_finish(&s->in.scan, &req, msg)
                                     : gcp_parse_request(s->in.line, s->in.line_len, &req, msg);
        if (st == GCP_PARSE_FATAL) {
            char shown[84];
            show_line(s->in.line, s->in.line_len, shown);
            cli_err("gocacheprog: %s: %s", msg, shown);
            return 1;
        }
        if (req.command == GCP_CMD_PUT) {
            if (gcp_serve_put(s, &req, st, msg) != 0)
                return 1;
            continue;
        }
        if (st == GCP_PARSE_ERR) {
            if (s->verbose)
                cli_err("gocacheprog: request %" PRId64 ": %s", req.id, msg);
            gcp_respond_err(s, req.id, msg);
            add_busy(s, start);
            continue;
        }
        switch (req.command) {
        case GCP_CMD_GET:
            gcp_dispatch_get(s, req.id, &req.action);
            break;
        case GCP_CMD_CLOSE: {
            /* Close is answered last: everything before it first. */
            gcp_wait_idle(s);
            atomic_fetch_add(&s->closes, 1);
            gcp_respond(s, req.id, gcp_format_ok(req.id, NULL));
            add_busy(s, start);
            break;
        }
        case GCP_CMD_PUT:
        case GCP_CMD_UNKNOWN:
            break;
        }
    }
}


/* Opens the disk store (its spec from cli_disk_spec(): DIR made absolute,
 * as DiskPath must be, and the limits) and the remotes behind it. Returns 0
 * or the exit status (message printed). */
static int open_stores(const cli_disk_opts *disk, char **remotes, size_t nremotes,
                       acache_store **out)
{
    int rc = 2;
    char *spec = cli_disk_spec(disk);
    acache_store **stores = calloc(nremotes + 1, sizeof *stores);
    size_t n = 0;

    if (spec == NULL || stores == NULL)
        goto out;
    if (acache_open(spec, &stores[n]) != ACACHE_OK) {
        cli_err("gocacheprog: cannot open %s: %s", spec, acache_last_error());
        goto out;
    }
    n++;
    for (size_t i = 0; i < nremotes; i++) {
        if (acache_open(remotes[i], &stores[n]) != ACACHE_OK) {
            cli_err("gocacheprog: cannot open remote %s: %s", remotes[i], acache_last_error());
            goto out;
        }
        n++;
    }
    if (n == 1) {
        *out = stores[0];
    } else {
        acache_status st = acache_tiers(stores, n, out);
        n = 0; /* taken by acache_tiers, also on failure */
        if (st != ACACHE_OK) {
            cli_err("gocacheprog: cannot chain the stores: %s", acache_last_error());
            goto out;
        }
    }
    n = 0;
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        acache_close(stores[i]);
    free(stores);
    free(spec);
    return rc;
}

/* A server on stdin/stdout for store; NULL when out of memory. */
static gcp_server *server_new(acache_store *store, const gcp_opts *o)
{
    gcp_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->store = store;
    gcp_spill_init(&s->spill, store);
    s->verbose = o->verbose;
    s->in.fd = STDIN_FILENO;
    pthread_mutex_init(&s->out_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->job_cv, NULL);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->local_first = o->nremotes > 0;
    return s;
}

/* Frees a server (its store stays open). */
static void server_free(gcp_server *s)
{
    if (s == NULL)
        return;
    gcp_spill_close(&s->spill);
    pthread_cond_destroy(&s->idle_cv);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->job_cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->out_mu);
    free(s->in.line);
    free(s);
}

/* The session: handshake, requests until close or EOF, then everything
 * the go command waits for, in the order it waits. The exit status;
 * *storep is closed (and NULL) when the store had to spill. */
static int run_session(gcp_server *s, const gcp_opts *o, int64_t t0, acache_store **storep)
{
    acache_store *store = s->store;
    if (o->verbose)
        gcp_print_remotes(store, false);
    gcp_respond(s, 0, gcp_format_handshake(NULL));
    gcp_start_workers(s, o->workers >= 0 ? (size_t)o->workers : o->nremotes > 0 ? GCP_WORKERS : 0);
    int rc = serve(s);
    /* Answers already due are written before exiting, also on error. */
    gcp_wait_idle(s);
    gcp_stop_workers(s);
    if (rc == 0 && atomic_load(&s->out_broken))
        rc = 1;
    /* Uploads still queued go out now, within each remote's flush-timeout. */
    acache_flush(store);
    /* The -v summary still comes out before the go command returns. */
    if (o->verbose) {
        gcp_print_summary(atomic_load(&s->gets), atomic_load(&s->hits), atomic_load(&s->misses),
                      atomic_load(&s->puts), atomic_load(&s->bytes_in),
                      atomic_load(&s->bytes_out), atomic_load(&s->errors),
                      atomic_load(&s->busy_ns), now_ns() - t0);
        gcp_print_remotes(store, true);
    }
    /* The go command waits for our stdout to end, not for us to exit: end
     * it now, once everything the build did is safe (uploads above, counts
     * written here), and leave closing the store (folding the counts,
     * stopping a trim, writing a prefetch manifest) and exiting off its
     * path. */
    acache_save_counters(store);
    /* Spilled outputs (a full disk) go before the go command returns: it
     * used them during the build, and nothing may be left behind. Those
     * the store spilled itself go when it is closed: then, now. */
    uint64_t overflowed = gcp_spill_overflowed(&s->spill);
    if (overflowed > 0) {
        cli_err("gocacheprog: the cache's file system is full (no space, inodes or quota): "
                "%" PRIu64 " new outputs of this run were kept in $TMPDIR until now, not in the cache",
                overflowed);
        acache_close(store);
        *storep = s->store = NULL;
    }
    gcp_spill_close(&s->spill);
    gcp_end_stdout(s);
    return rc;
}

int cmd_gocacheprog(int argc, char **argv)
{
    gcp_opts o = { .workers = -1 };
    acache_store *store = NULL;
    gcp_server *s = NULL;
    int rc = 2;
    int64_t t0 = now_ns();

    o.remotes = calloc((size_t)argc + 1, sizeof *o.remotes);
    if (o.remotes == NULL)
        goto out;
    if ((rc = gcp_parse_args(argc, argv, &o)) >= 0)
        goto out;
    rc = 2;
    if (!gcp_remotes_from_env(&o))
        goto out;
    acache_set_log(gcp_log_line, NULL);
    /* The go command needs a path for every put: a full disk sends puts
     * to $TMPDIR rather than fail them (src/disk/overflow.c). */
    o.disk.spill = true;
    rc = open_stores(&o.disk, o.remotes, o.nremotes, &store);
    if (rc != 0)
        goto out;
    if ((s = server_new(store, &o)) == NULL) {
        cli_err("gocacheprog: out of memory");
        rc = 1;
        goto out;
    }
    /* A reader gone away must surface as EPIPE, so that the open put is
     * aborted, not as a silent death by signal. */
    signal(SIGPIPE, SIG_IGN);
    rc = run_session(s, &o, t0, &store);
out:
    acache_close(store);
    server_free(s);
    free(o.env_remotes);
    free(o.remotes);
    return rc;
}

