/*
 * resolve.h - host name lookups that end by a deadline.
 *
 * getaddrinfo() cannot be given a timeout, and a name server that does not
 * answer holds it for as long as the resolver's own retries take (tens of
 * seconds). resolve_host() runs the lookup in a helper thread and stops
 * waiting at the deadline; a lookup still running then finishes on its own
 * and frees what it holds. It must never make its caller wait past the
 * deadline, and never touch the caller's memory after it returned.
 */
#ifndef ACACHE_RESOLVE_H
#define ACACHE_RESOLVE_H

#include "acache.h"

#include <netdb.h>
#include <stdint.h>

#define RESOLVE_MAX 8

/* The addresses of a name, numeric ("192.0.2.1", "2001:db8::1"), in the
 * order getaddrinfo() gave them. */
typedef struct resolved {
    char addr[RESOLVE_MAX][NI_MAXHOST];
    unsigned n;
} resolved;

/* Looks up host (a name or a numeric address) for a TCP connection, giving
 * up at deadline_ns (CLOCK_MONOTONIC). ACACHE_OK with at least one address;
 * ACACHE_EIO (message set: "looking up HOST: ...") when the lookup failed
 * or did not end in time; ACACHE_ENOMEM when no thread could be started. */
acache_status resolve_host(const char *host, int64_t deadline_ns, resolved *out);

#endif
