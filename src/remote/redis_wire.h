/*
 * redis_wire.h - Redis commands and replies (RESP2) on a connected socket,
 * every step bounded by the deadline of the operation it belongs to.
 *
 * The Redis transport (backend_redis.c) sends its commands and reads their
 * replies through this, not through hiredis' reader; see redis_wire.c for
 * why. A reply is read one at a time; a bulk reply's length is checked
 * against the caller's limit from its header, before any of its body is
 * read, and its body streams into the caller's sink, so no reply is ever
 * buffered whole. Whatever leaves a reply unread (a timeout, an error, a
 * refused length, a sink that stopped) marks the connection broken: it must
 * then be closed, never reused.
 */
#ifndef ACACHE_REDIS_WIRE_H
#define ACACHE_REDIS_WIRE_H

#include "remote/remote.h"

#include <stdbool.h>
#include <stdint.h>

/* Longest status, error or header line accepted ("-ERR ..." included). */
#define WIRE_LINE_MAX 1024
/* The receive buffer: 256 KiB, so that a 4 MiB GETRANGE comes in 16
 * recv(2) calls rather than 64 (bench/README.md); part of each pooled
 * connection, allocated once. */
#define WIRE_BUF_SIZE ((size_t)256 << 10)
/* The most commands wire_send() sends in one pipeline (one sendmsg):
 * a prefetch batch's GETs (REMOTE_BATCH_MAX) go out together. */
#define WIRE_PIPELINE_MAX 32

typedef struct redis_wire {
    int fd;                     /* owned by the caller */
    const char *where;          /* host:port or socket path, for messages */
    bool broken;
    size_t at, end;             /* unread bytes: buf[at..end) */
    unsigned char buf[WIRE_BUF_SIZE];
} redis_wire;

typedef enum wire_type { WIRE_STATUS, WIRE_ERROR, WIRE_INTEGER, WIRE_BULK, WIRE_NIL } wire_type;

typedef struct wire_reply {
    wire_type type;
    long long integer;          /* WIRE_INTEGER */
    uint64_t len;               /* WIRE_BULK: its length; WIRE_STATUS, WIRE_ERROR: text's */
    char text[WIRE_LINE_MAX];   /* WIRE_STATUS, WIRE_ERROR, without the type byte */
} wire_reply;

void wire_init(redis_wire *w, int fd, const char *where);

/* Sends ncmd commands (1 to WIRE_PIPELINE_MAX) in one go (pipelined, one
 * sendmsg(2) while the socket takes them): counts[i] words each, taken in
 * turn from argv/lens. ACACHE_EINVAL (nothing sent) for another ncmd;
 * ACACHE_EIO (message set, broken) if they could not all be written by
 * deadline_ns (CLOCK_MONOTONIC). */
acache_status wire_send(redis_wire *w, int ncmd, const int *counts, const char **argv,
                        const size_t *lens, int64_t deadline_ns);

/* Reads the next reply by deadline_ns. A bulk reply longer than limit is
 * refused from its header: ACACHE_CORRUPT (message set, broken). A bulk
 * body goes to sink (a status other than ACACHE_OK from it stops the read
 * and is returned, broken), or is read and dropped when sink is NULL.
 * ACACHE_EIO (message set, broken) on a timeout, a closed connection or
 * anything that is not RESP2 of the kinds above (arrays included: no
 * command sent here answers with one). */
acache_status wire_read(redis_wire *w, uint64_t limit, const remote_sink *sink,
                        int64_t deadline_ns, wire_reply *out);

#endif
