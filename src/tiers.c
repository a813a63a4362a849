/*
 * tiers.c - the tier combinator: an ordered list of stores behind the same
 * operations table. Get tries the tiers in order and copies a hit into the
 * earlier ones; put writes to every tier at once. The first tier decides:
 * a later tier that fails never fails a get an earlier tier answered, nor a
 * put the first tier took. It never reads or writes storage itself.
 */
#include "backend.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tiers {
    acache_store **stores;
    size_t n;
} tiers;

typedef struct tiers_writer {
    backend_writer base;
    tiers *t;
    backend_writer **ws; /* one per tier; NULL once a lower tier dropped out */
} tiers_writer;

static const backend_ops tiers_ops;

static void count_put(acache_store *s, uint64_t size)
{
    atomic_fetch_add_explicit(&s->counters.puts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->counters.bytes_written, size, memory_order_relaxed);
}

static void count_error(acache_store *s)
{
    atomic_fetch_add_explicit(&s->counters.errors, 1, memory_order_relaxed);
}

static void tiers_close(void *self)
{
    tiers *t = self;
    for (size_t i = 0; i < t->n; i++)
        acache_close(t->stores[i]);
    free(t->stores);
    free(t);
}

/* Copies a hit found in tier `from` into tiers [0, from). Best effort,
 * except that the bytes are hashed on the way in: bytes that do not match
 * their output id return false and must not be served. */
static bool promote(tiers *t, size_t from, const acache_id *action, acache_result *hit,
                    acache_result *first)
{
    for (size_t j = 0; j < from; j++) {
        acache_put_stream *ps = NULL;
        if (acache_put_begin(t->stores[j], action, &ps) != ACACHE_OK)
            continue;
        if (acache_put_write(ps, hit->data, hit->size) != ACACHE_OK) {
            acache_put_abort(ps);
            continue;
        }
        if (acache_put_commit(ps, &hit->output_id, hit->size, j == 0 ? first : NULL) == ACACHE_EINVAL)
            return false;
    }
    return true;
}

static acache_status tiers_get(void *self, const acache_id *action, unsigned flags,
                               acache_result *res)
{
    tiers *t = self;
    acache_status first_err = ACACHE_OK;
    char errmsg[1024] = "";
    for (size_t i = 0; i < t->n; i++) {
        /* Promotion needs the bytes of a hit in a later tier. */
        unsigned want = i == 0 ? flags : flags | ACACHE_GET_DATA;
        acache_status st = acache_get(t->stores[i], action, want, res);
        if (st == ACACHE_MISS)
            continue;
        if (st != ACACHE_OK) {
            if (first_err == ACACHE_OK) {
                first_err = st;
                snprintf(errmsg, sizeof errmsg, "%s", acache_last_error());
            }
            continue;
        }
        if (i > 0) {
            acache_result first;
            first.path[0] = '\0';
            if (!promote(t, i, action, res, &first)) {
                /* The later tier holds bytes that are not what they claim. */
                atomic_fetch_add_explicit(&t->stores[i]->counters.corrupt, 1, memory_order_relaxed);
                acache_result_release(res);
                continue;
            }
            /* Prefer the first tier's local path: it is the home tier. */
            if (first.path[0] && memcmp(&first.output_id, &res->output_id, sizeof first.output_id) == 0)
                memcpy(res->path, first.path, sizeof res->path);
            if (!(flags & ACACHE_GET_DATA))
                acache_result_release(res);
        }
        return ACACHE_OK;
    }
    if (first_err != ACACHE_OK)
        return set_error(first_err, "%s", errmsg);
    return ACACHE_MISS;
}

static acache_status tiers_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    tiers *t = self;
    tiers_writer *tw = calloc(1, sizeof *tw);
    if (!tw || !(tw->ws = calloc(t->n, sizeof *tw->ws))) {
        free(tw);
        return set_error(ACACHE_ENOMEM, "out of memory");
    }
    tw->base.ops = &tiers_ops;
    tw->t = t;
    for (size_t i = 0; i < t->n; i++) {
        acache_store *s = t->stores[i];
        acache_status st = s->ops->put_begin(s->self, action, &tw->ws[i]);
        if (st != ACACHE_OK) {
            count_error(s);
            tw->ws[i] = NULL;
            if (i == 0) {
                free(tw->ws);
                free(tw);
                return st;
            }
        }
    }
    *out = &tw->base;
    return ACACHE_OK;
}

static acache_status tiers_put_write(backend_writer *w, const void *data, size_t len)
{
    tiers_writer *tw = (tiers_writer *)w;
    for (size_t i = 0; i < tw->t->n; i++) {
        backend_writer *bw = tw->ws[i];
        if (!bw)
            continue;
        acache_status st = bw->ops->put_write(bw, data, len);
        if (st != ACACHE_OK) {
            if (i == 0)
                return st;
            count_error(tw->t->stores[i]);
            bw->ops->put_abort(bw);
            tw->ws[i] = NULL;
        }
    }
    return ACACHE_OK;
}

static void tiers_writer_free(tiers_writer *tw)
{
    free(tw->ws);
    free(tw);
}

static void tiers_put_abort(backend_writer *w)
{
    tiers_writer *tw = (tiers_writer *)w;
    for (size_t i = 0; i < tw->t->n; i++)
        if (tw->ws[i])
            tw->ws[i]->ops->put_abort(tw->ws[i]);
    tiers_writer_free(tw);
}

static acache_status tiers_put_commit(backend_writer *w, const acache_id *output, uint64_t size,
                                      acache_result *res)
{
    tiers_writer *tw = (tiers_writer *)w;
    tiers *t = tw->t;
    backend_writer *first = tw->ws[0];
    tw->ws[0] = NULL;
    acache_status st = first->ops->put_commit(first, output, size, res);
    if (st != ACACHE_OK) {
        count_error(t->stores[0]);
        tiers_put_abort(w);
        return st;
    }
    count_put(t->stores[0], size);
    for (size_t i = 1; i < t->n; i++) {
        backend_writer *bw = tw->ws[i];
        if (!bw)
            continue;
        if (bw->ops->put_commit(bw, output, size, NULL) == ACACHE_OK)
            count_put(t->stores[i], size);
        else
            count_error(t->stores[i]);
    }
    tiers_writer_free(tw);
    return ACACHE_OK;
}

static acache_status tiers_del(void *self, const acache_id *action)
{
    tiers *t = self;
    acache_status result = ACACHE_MISS;
    for (size_t i = 0; i < t->n; i++) {
        acache_status st = acache_delete(t->stores[i], action);
        if (st == ACACHE_OK)
            result = ACACHE_OK;
        else if (st < 0 && i == 0)
            return st;
    }
    return result;
}

/* The first tier that has a local directory (the home tier). */
static const char *tiers_local_dir(void *self)
{
    tiers *t = self;
    for (size_t i = 0; i < t->n; i++) {
        acache_store *s = t->stores[i];
        if (s->ops->local_dir)
            return s->ops->local_dir(s->self);
    }
    return NULL;
}

static const backend_ops tiers_ops = {
    .name = "tiers",
    .close = tiers_close,
    .get = tiers_get,
    .put_begin = tiers_put_begin,
    .put_write = tiers_put_write,
    .put_commit = tiers_put_commit,
    .put_abort = tiers_put_abort,
    .del = tiers_del,
    .local_dir = tiers_local_dir,
};

acache_status acache_tiers(acache_store *const *stores, size_t n, acache_store **out)
{
    acache_status st = ACACHE_OK;
    tiers *t = NULL;
    if (!out || (n && !stores) || n == 0) {
        st = set_error(ACACHE_EINVAL, "acache_tiers: need at least one store");
        goto fail;
    }
    *out = NULL;
    t = calloc(1, sizeof *t);
    if (!t || !(t->stores = calloc(n, sizeof *t->stores))) {
        free(t);
        t = NULL;
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (!stores[i]) {
            free(t->stores);
            free(t);
            t = NULL;
            st = set_error(ACACHE_EINVAL, "acache_tiers: store %zu is NULL", i);
            goto fail;
        }
        t->stores[i] = stores[i];
    }
    t->n = n;
    return store_wrap(&tiers_ops, t, out);
fail:
    for (size_t i = 0; stores && i < n; i++)
        acache_close(stores[i]);
    return st;
}
