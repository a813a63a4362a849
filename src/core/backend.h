/*
 * backend.h - the operations table every storage backend implements, and the
 * store handle that wraps one.
 *
 * A backend stores action entries and objects; it never hashes and never
 * checks a body against its output id: the store layer (store.c) hashes each
 * put once and hands the backend an output id that is already verified.
 * Backends report a corrupt entry as ACACHE_CORRUPT (below) so the store
 * layer can count it; callers only ever see ACACHE_MISS.
 */
#ifndef ACACHE_BACKEND_H
#define ACACHE_BACKEND_H

#include "acache.h"
#include "core/spec.h"

#include <stdatomic.h>
#include <stdbool.h>

/* Internal status: the entry was corrupt and has been removed. Counted and
 * turned into ACACHE_MISS before it reaches a caller. */
#define ACACHE_CORRUPT ((acache_status)2)

/* A put in progress inside one backend. Each backend embeds this first in
 * its own writer struct. */
typedef struct backend_writer {
    const struct backend_ops *ops;
} backend_writer;

typedef struct backend_ops {
    const char *name;
    /* Frees the backend. */
    void (*close)(void *self);
    /* Looks up an action; fills res as acache_get() documents. */
    acache_status (*get)(void *self, const acache_id *action, unsigned flags,
                         acache_result *res);
    /* Starts a put of the output of action. */
    acache_status (*put_begin)(void *self, const acache_id *action, backend_writer **out);
    acache_status (*put_write)(backend_writer *w, const void *data, size_t len);
    /* Makes the bytes written visible under output (already verified: it is
     * their SHA-256) and frees w. res may be NULL. */
    acache_status (*put_commit)(backend_writer *w, const acache_id *output, uint64_t size,
                                acache_result *res);
    /* Discards the bytes written and frees w. */
    void (*put_abort)(backend_writer *w);
    /* Removes the action entry. */
    acache_status (*del)(void *self, const acache_id *action);
    /* Optional (NULL if none): the absolute local directory this backend
     * keeps its files in (for a disk store, ROOT/v1), where cross-process
     * lock files can live. */
    const char *(*local_dir)(void *self);
    /* Non-NULL for a remote store (Redis, HTTP): what the tier combinator
     * needs beyond this table (remote.h). */
    const struct remote_ops *remote;
} backend_ops;

/* Counters kept by the store layer, updated without locks. */
typedef struct store_counters {
    atomic_uint_least64_t gets, hits, misses, corrupt, puts, errors;
    atomic_uint_least64_t bytes_read, bytes_written;
} store_counters;

struct acache_store {
    const backend_ops *ops;
    void *self;
    store_counters counters;
};

/* Wraps a backend in a store handle; on failure closes the backend. */
acache_status store_wrap(const backend_ops *ops, void *self, acache_store **out);

/* Every backend has this constructor, declared in its own folder's header
 * and named in the scheme table (src/schemes.c): it takes the options it
 * knows from the spec (spec_get) and leaves the others for the table to
 * refuse. */
typedef acache_status (*backend_open_fn)(spec *s, void **self, const backend_ops **ops);

#endif
