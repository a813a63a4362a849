/*
 * store.c - the store handle every caller holds around one backend's ops
 * table: hashes every put exactly once and checks it against what the
 * caller expected, turns corrupt entries into counted misses, keeps the
 * counters. It knows no backend by name (src/schemes.c opens them). It must
 * never hand a backend an output id it has not computed itself.
 */
#include "core/backend.h"
#include "core/error.h"
#include "core/sha.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct acache_put_stream {
    acache_store *store;
    backend_writer *w;
    EVP_MD_CTX *sha;
    uint64_t size;
    acache_status failed; /* first write error, reported again at commit */
};

/* Chunk of acache_put_write_fd(). */
#define FD_CHUNK ((size_t)1 << 20)

#define COUNT(store, field, n) atomic_fetch_add_explicit(&(store)->counters.field, (n), memory_order_relaxed)

acache_status store_wrap(const backend_ops *ops, void *self, acache_store **out)
{
    acache_store *s = calloc(1, sizeof *s);
    if (!s) {
        ops->close(self);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    s->ops = ops;
    s->self = self;
    *out = s;
    return ACACHE_OK;
}

void acache_close(acache_store *store)
{
    if (!store)
        return;
    store->ops->close(store->self);
    free(store);
}

static void result_reset(acache_result *res)
{
    res->data = NULL;
    res->release_fn_ = NULL;
    res->release_ctx_ = NULL;
    res->path[0] = '\0';
}

acache_status acache_get(acache_store *store, const acache_id *action, unsigned flags,
                         acache_result *res)
{
    if (!store || !action || !res)
        return set_error(ACACHE_EINVAL, "acache_get: NULL argument");
    result_reset(res);
    COUNT(store, gets, 1);
    acache_status st = store->ops->get(store->self, action, flags, res);
    if (st == ACACHE_OK) {
        COUNT(store, hits, 1);
        COUNT(store, bytes_read, res->size);
        return ACACHE_OK;
    }
    acache_result_release(res);
    result_reset(res);
    if (st == ACACHE_CORRUPT) {
        COUNT(store, corrupt, 1);
        st = ACACHE_MISS;
    }
    if (st == ACACHE_MISS)
        COUNT(store, misses, 1);
    else
        COUNT(store, errors, 1);
    return st;
}

void acache_result_release(acache_result *res)
{
    if (!res || !res->release_fn_)
        return;
    res->release_fn_(res->release_ctx_, res->data, res->size);
    res->release_fn_ = NULL;
    res->release_ctx_ = NULL;
    res->data = NULL;
}

acache_status acache_put_begin(acache_store *store, const acache_id *action,
                               acache_put_stream **out)
{
    if (!store || !action || !out)
        return set_error(ACACHE_EINVAL, "acache_put_begin: NULL argument");
    *out = NULL;
    acache_put_stream *ps = calloc(1, sizeof *ps);
    if (!ps)
        return set_error(ACACHE_ENOMEM, "out of memory");
    ps->store = store;
    ps->sha = EVP_MD_CTX_new();
    if (!ps->sha || !EVP_DigestInit_ex(ps->sha, sha256_md(), NULL)) {
        EVP_MD_CTX_free(ps->sha);
        free(ps);
        COUNT(store, errors, 1);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    acache_status st = store->ops->put_begin(store->self, action, &ps->w);
    if (st != ACACHE_OK) {
        EVP_MD_CTX_free(ps->sha);
        free(ps);
        COUNT(store, errors, 1);
        return st;
    }
    *out = ps;
    return ACACHE_OK;
}

acache_status acache_put_write(acache_put_stream *ps, const void *data, size_t len)
{
    if (!ps || (len && !data))
        return set_error(ACACHE_EINVAL, "acache_put_write: NULL argument");
    if (ps->failed != ACACHE_OK)
        return ps->failed;
    if (len == 0)
        return ACACHE_OK;
    acache_status st = ps->w->ops->put_write(ps->w, data, len);
    if (st == ACACHE_OK && !EVP_DigestUpdate(ps->sha, data, len))
        st = set_error(ACACHE_EIO, "SHA-256 update failed");
    if (st != ACACHE_OK)
        ps->failed = st;
    ps->size += len;
    return st;
}

static void stream_free(acache_put_stream *ps)
{
    EVP_MD_CTX_free(ps->sha);
    free(ps);
}

void acache_put_abort(acache_put_stream *ps)
{
    if (!ps)
        return;
    ps->w->ops->put_abort(ps->w);
    stream_free(ps);
}

acache_status acache_put_commit(acache_put_stream *ps, const acache_id *expect_output,
                                uint64_t expect_size, acache_result *res)
{
    if (!ps)
        return set_error(ACACHE_EINVAL, "acache_put_commit: NULL stream");
    acache_store *store = ps->store;
    acache_status st = ps->failed;
    acache_id output;
    unsigned int mdlen = 0;
    if (res)
        result_reset(res);
    if (st != ACACHE_OK)
        goto abort;
    if (!EVP_DigestFinal_ex(ps->sha, output.bytes, &mdlen) || mdlen != ACACHE_ID_SIZE) {
        st = set_error(ACACHE_EIO, "SHA-256 failed");
        goto abort;
    }
    if (expect_size != ACACHE_SIZE_ANY && expect_size != ps->size) {
        st = set_error(ACACHE_EINVAL, "put: got %llu bytes, expected %llu; nothing stored",
                       (unsigned long long)ps->size, (unsigned long long)expect_size);
        goto abort;
    }
    if (expect_output && memcmp(expect_output, &output, sizeof output) != 0) {
        char want[ACACHE_ID_HEX_SIZE], got[ACACHE_ID_HEX_SIZE];
        acache_id_to_hex(expect_output, want);
        acache_id_to_hex(&output, got);
        st = set_error(ACACHE_EINVAL, "put: body SHA-256 is %s, expected output id %s; nothing stored",
                       got, want);
        goto abort;
    }
    st = ps->w->ops->put_commit(ps->w, &output, ps->size, res);
    if (st == ACACHE_OK) {
        COUNT(store, puts, 1);
        COUNT(store, bytes_written, ps->size);
    } else {
        COUNT(store, errors, 1);
    }
    stream_free(ps);
    return st;
abort:
    COUNT(store, errors, 1);
    acache_put_abort(ps);
    return st;
}

acache_status acache_put_write_fd(acache_put_stream *stream, int fd)
{
    acache_status st = ACACHE_OK;
    if (!stream || fd < 0)
        return set_error(ACACHE_EINVAL, "acache_put_write_fd: bad argument");
    char *buf = malloc(FD_CHUNK);
    if (!buf)
        return set_error(ACACHE_ENOMEM, "out of memory");
    for (;;) {
        ssize_t n = read(fd, buf, FD_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = set_errno_error(errno, "put: reading input");
            break;
        }
        if (n == 0)
            break;
        if ((st = acache_put_write(stream, buf, (size_t)n)) != ACACHE_OK)
            break;
    }
    free(buf);
    return st;
}

acache_status acache_put(acache_store *store, const acache_id *action, const void *data,
                         size_t len, acache_id *output)
{
    acache_put_stream *ps = NULL;
    acache_result res;
    acache_status st = acache_put_begin(store, action, &ps);
    if (st != ACACHE_OK)
        return st;
    st = acache_put_write(ps, data, len);
    if (st != ACACHE_OK) {
        acache_put_abort(ps);
        return st;
    }
    st = acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &res);
    if (st == ACACHE_OK && output)
        *output = res.output_id;
    return st;
}

acache_status acache_put_fd(acache_store *store, const acache_id *action, int fd,
                            acache_id *output)
{
    acache_put_stream *ps = NULL;
    acache_result res;
    acache_status st = acache_put_begin(store, action, &ps);
    if (st != ACACHE_OK)
        return st;
    st = acache_put_write_fd(ps, fd);
    if (st != ACACHE_OK) {
        acache_put_abort(ps);
        return st;
    }
    st = acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &res);
    if (st == ACACHE_OK && output)
        *output = res.output_id;
    return st;
}

acache_status acache_delete(acache_store *store, const acache_id *action)
{
    if (!store || !action)
        return set_error(ACACHE_EINVAL, "acache_delete: NULL argument");
    acache_status st = store->ops->del(store->self, action);
    if (st < 0)
        COUNT(store, errors, 1);
    return st;
}

void acache_get_stats(acache_store *store, acache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!store)
        return;
    store_counters *c = &store->counters;
    out->gets = atomic_load(&c->gets);
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->corrupt = atomic_load(&c->corrupt);
    out->puts = atomic_load(&c->puts);
    out->errors = atomic_load(&c->errors);
    out->bytes_read = atomic_load(&c->bytes_read);
    out->bytes_written = atomic_load(&c->bytes_written);
}
