/*
 * prog_helper.h - the `prog:` store's state, private to its two files:
 *   helper.c  the helper process and its reader: spawning, the handshake,
 *             one writer and one reader thread matching answers to
 *             requests, switching off, ending the process
 *   prog.c    the store: options, open and close, get, put (spooled), the
 *             ops table
 * The calls go one way only: prog.c -> helper.c. Both speak the protocol
 * through wire.h.
 *
 * Rules: fields are guarded as their comments say (mu, write_mu, reap_mu);
 * the response buffer is read by open (the handshake), then only by the
 * reader thread; nothing outside these two files includes this header.
 */
#ifndef ACACHE_PROG_HELPER_H
#define ACACHE_PROG_HELPER_H

#include "prog/prog.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest response line read; a response is a few hundred bytes. */
#define PROG_MAX_LINE ((size_t)1 << 20)
/* Bytes of a put kept in memory before the rest goes to a temp file. */
#define PROG_SPOOL_MEM ((size_t)256 << 10)
#define PROG_DEFAULT_TIMEOUT_NS (10LL * 1000000000LL)
/* How long to wait for the status of a helper whose stdout just ended. */
#define PROG_EXIT_GRACE_NS (200LL * 1000000LL)

typedef struct pending {
    struct pending *next;
    int64_t id;
    bool done;
    json_t *resp; /* the answer; NULL when the helper failed first */
    pthread_cond_t cv;
} pending;

typedef struct prog {
    char *cmdline;     /* as given, for messages */
    char **argv;
    char *argbuf;
    pid_t pid;
    int in_fd;         /* our end of the helper's stdin (a socket) */
    int out_fd;        /* our end of the helper's stdout (a pipe) */
    int wake[2];       /* a byte here stops the reader */
    pthread_t reader;
    bool reader_running;
    int64_t timeout_ns, start_timeout_ns, close_timeout_ns;
    bool verify;
    char spool_dir[ACACHE_PATH_MAX];
    bool can_get, can_put, can_close;

    pthread_mutex_t mu;       /* guards everything below up to write_mu */
    pending *pending;
    int64_t next_id;
    bool broken, closing;
    char broken_msg[768];

    pthread_mutex_t write_mu; /* one request on the wire at a time */
    pthread_mutex_t reap_mu;  /* guards pid while it may be reaped */
    bool reaped;
    int wstatus;

    /* Response lines: read by open (handshake), then only by the reader. */
    char *buf;
    size_t start, len, cap;
} prog;

typedef struct prog_writer {
    backend_writer base;
    prog *p;
    acache_id action;
    bool drop;             /* the helper takes no puts */
    unsigned char *mem;    /* the first PROG_SPOOL_MEM bytes */
    size_t memlen;
    int fd;                /* the rest, in an unlinked temp file; -1 if none */
    uint64_t size;
} prog_writer;

/* Waits up to timeout_ns for the helper to exit. True once reaped. */
bool prog_reap(prog *p, int64_t timeout_ns);
/* SIGKILL to the helper unless it was reaped. */
void prog_kill(prog *p);
/*
 * Switches the store off: records why (the first reason wins), fails every
 * pending request and kills the helper. Must be called without p->mu.
 */
void prog_break(prog *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message of a switched-off store, as an error status. */
acache_status prog_broken_error(prog *p);
/* Starts the helper (p->argv) with its stdin and stdout ours. */
acache_status prog_spawn(prog *p);
/* Reads the helper's first line and sets p->can_get, can_put, can_close. */
acache_status prog_handshake(prog *p);
/* The reader thread: every response line to the caller waiting for it. */
void *prog_reader_main(void *arg);
/*
 * Sends one request (with w's body for a put) and waits up to timeout_ns
 * for its answer, which *resp receives. A timeout, or a helper that cannot
 * be written to, switches the store off.
 */
acache_status prog_request(prog *p, const char *cmd, const acache_id *action,
                           const acache_id *output, prog_writer *w, int64_t timeout_ns,
                           json_t **resp);
/* Ends the helper: stdin closed, then up to close-timeout for the exit,
 * then SIGKILL. */
void prog_stop(prog *p);
/* Stops the reader, closes every descriptor, frees p. */
void prog_free(prog *p);

#endif
