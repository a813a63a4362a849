/*
 * namespace.c - acache_namespace(): wraps a store so that every action id
 * is mapped to SHA-256(domain || fingerprint || action) before any backend
 * sees it: an entry is reachable only through the fingerprint it was
 * stored under, with no change to any backend's record format.
 *
 * This file must never let an id reach a backend unmapped through a
 * namespaced store.
 */
#include "compose/namespace.h"
#include "core/error.h"
#include "core/sha.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* A fixed-length domain tag: with the other inputs of fixed length too,
 * concatenation is unambiguous. */
static const char ns_domain[] = "acache namespace v1";

typedef struct ns {
    acache_store *inner;
    acache_id fingerprint;
} ns;

static const backend_ops ns_ops;

static void ns_map(const ns *n, const acache_id *action, acache_id *out)
{
    uint8_t buf[sizeof ns_domain - 1 + 2 * ACACHE_ID_SIZE];
    memcpy(buf, ns_domain, sizeof ns_domain - 1);
    memcpy(buf + sizeof ns_domain - 1, n->fingerprint.bytes, ACACHE_ID_SIZE);
    memcpy(buf + sizeof ns_domain - 1 + ACACHE_ID_SIZE, action->bytes, ACACHE_ID_SIZE);
    unsigned int mdlen = 0;
    const EVP_MD *md = sha256_md();
    if (!md || !EVP_Digest(buf, sizeof buf, out->bytes, &mdlen, md, NULL) ||
        mdlen != ACACHE_ID_SIZE) {
        /* libcrypto without SHA-256 cannot have stored anything either;
         * an id that no real action maps to keeps the namespace closed. */
        memset(out->bytes, 0xff, ACACHE_ID_SIZE);
    }
}

void store_backend_id(const acache_store *store, const acache_id *action, acache_id *out)
{
    *out = *action;
    while (store->ops == &ns_ops) {
        const ns *n = store->self;
        ns_map(n, out, out);
        store = n->inner;
    }
}

static void ns_close(void *self)
{
    ns *n = self;
    acache_close(n->inner);
    free(n);
}

/* The inner backend is called directly, not through acache_get(), so that
 * a corrupt entry reaches the outer store layer, which counts it. */
static acache_status ns_get(void *self, const acache_id *action, unsigned flags,
                            acache_result *res)
{
    ns *n = self;
    acache_id mapped;
    ns_map(n, action, &mapped);
    return n->inner->ops->get(n->inner->self, &mapped, flags, res);
}

/* The inner backend's writer is handed out as it is: its own ops finish it. */
static acache_status ns_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    ns *n = self;
    acache_id mapped;
    ns_map(n, action, &mapped);
    return n->inner->ops->put_begin(n->inner->self, &mapped, out);
}

static acache_status ns_del(void *self, const acache_id *action)
{
    ns *n = self;
    acache_id mapped;
    ns_map(n, action, &mapped);
    return n->inner->ops->del(n->inner->self, &mapped);
}

static const char *ns_local_dir(void *self)
{
    ns *n = self;
    return n->inner->ops->local_dir ? n->inner->ops->local_dir(n->inner->self) : NULL;
}

/* Writers are always the inner backend's, so these are never called. */
static acache_status ns_put_write(backend_writer *w, const void *data, size_t len)
{
    return w->ops->put_write(w, data, len);
}

static acache_status ns_put_commit(backend_writer *w, const acache_id *output, uint64_t size,
                                   acache_result *res)
{
    return w->ops->put_commit(w, output, size, res);
}

static void ns_put_abort(backend_writer *w) { w->ops->put_abort(w); }

static const backend_ops ns_ops = {
    .name = "namespace",
    .close = ns_close,
    .get = ns_get,
    .put_begin = ns_put_begin,
    .put_write = ns_put_write,
    .put_commit = ns_put_commit,
    .put_abort = ns_put_abort,
    .del = ns_del,
    .local_dir = ns_local_dir,
};

acache_status acache_namespace(acache_store *store, const acache_id *fingerprint,
                               acache_store **out)
{
    if (!store || !fingerprint || !out) {
        acache_close(store);
        return set_error(ACACHE_EINVAL, "acache_namespace: NULL argument");
    }
    *out = NULL;
    ns *n = calloc(1, sizeof *n);
    if (!n) {
        acache_close(store);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    n->inner = store;
    n->fingerprint = *fingerprint;
    return store_wrap(&ns_ops, n, out);
}
