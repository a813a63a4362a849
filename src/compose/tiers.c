/*
 * tiers.c - the tier combinator: an ordered list of stores behind the same
 * operations table. Get tries the tiers in order and copies a hit into the
 * earlier ones; put writes to every tier. The first tier decides: a later
 * tier that fails never fails a get an earlier tier answered, nor a put the
 * first tier took. It never reads or writes storage itself.
 *
 * Remote tiers (backend_ops.remote, see remote.h) are treated apart:
 *   - a remote hit is streamed straight into a put on the *home* tier (the
 *     first local tier with files, else the first local tier), which hashes
 *     it and keeps it only if it matches its output id; the answer is then
 *     the home tier's copy (its path). A remote's own bytes are never served.
 *   - a remote that fails, or holds bad bytes, makes a get a miss, never an
 *     error: its failures are counted and reported by the remote itself.
 *   - after a put commits locally, remotes get the committed file to upload
 *     in the background (put_file) instead of the bytes in line.
 *   - with remotes, the chain runs the session prefetch (prefetch.h): it
 *     tells it what the session used, and a lookup that misses locally
 *     claims its id so that it never fetches what a prefetch thread is
 *     fetching, but waits for that and looks again.
 */
#include "core/backend.h"
#include "core/error.h"
#include "compose/prefetch.h"
#include "os/clock.h"
#include "remote/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A remote asks for at most REMOTE_PREFETCH_MAX prefetch threads. */
_Static_assert(REMOTE_PREFETCH_MAX <= PREFETCH_MAX_THREADS, "prefetch threads");
/* A prefetch batch goes to a remote's get_many whole. */
_Static_assert(PREFETCH_BATCH <= REMOTE_BATCH_MAX, "prefetch batch");

#define NO_TIER ((size_t)-1)

typedef struct tiers {
    acache_store **stores;
    size_t n;
    size_t file_tier; /* first local tier that keeps files, or NO_TIER */
    prefetch *pf;     /* session prefetch, or NULL (no remote asks for it) */
} tiers;

typedef struct tiers_writer {
    backend_writer base;
    tiers *t;
    acache_id action;
    backend_writer **ws; /* one per tier; NULL once a lower tier dropped out,
                            and for remotes that upload from the file tier */
} tiers_writer;

static const backend_ops tiers_ops;
static acache_status tiers_put_begin(void *self, const acache_id *action, backend_writer **out);
static acache_status tiers_put_write(backend_writer *w, const void *data, size_t len);
static acache_status tiers_put_commit(backend_writer *w, const acache_id *output, uint64_t size,
                                      acache_result *res);
static void tiers_put_abort(backend_writer *w);

#define COUNT(s, field, v) atomic_fetch_add_explicit(&(s)->counters.field, (v), memory_order_relaxed)

static bool is_remote(const acache_store *s) { return s->ops->remote != NULL; }

static void count_put(acache_store *s, uint64_t size)
{
    COUNT(s, puts, 1);
    COUNT(s, bytes_written, size);
}

static void count_error(acache_store *s) { COUNT(s, errors, 1); }

/* The stores of a tier chain, or 0 if store is not one. */
static size_t tiers_list(acache_store *store, acache_store *const **out)
{
    if (store->ops != &tiers_ops)
        return 0;
    tiers *t = store->self;
    *out = t->stores;
    return t->n;
}

/* ------------------------------------------------------------------ */
/* Public: the remotes of a store, found by walking tier chains         */

size_t acache_remotes(acache_store *store, acache_remote_info *out, size_t max)
{
    if (!store)
        return 0;
    acache_store *const *subs;
    size_t n = tiers_list(store, &subs);
    if (n > 0) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += acache_remotes(subs[i], out && total < max ? out + total : NULL,
                                    total < max ? max - total : 0);
        return total;
    }
    if (!store->ops->remote)
        return 0;
    if (out && max > 0)
        store->ops->remote->info(store->self, out);
    return 1;
}

/* Flushes the remotes among stores (and inside tier chains among them),
 * every deadline counted from start_ns, so they drain side by side. */
static void flush_remotes(acache_store *const *stores, size_t n, int64_t start_ns)
{
    for (size_t i = 0; i < n; i++) {
        acache_store *const *subs;
        size_t m = tiers_list(stores[i], &subs);
        if (m > 0)
            flush_remotes(subs, m, start_ns);
        else if (stores[i]->ops->remote)
            stores[i]->ops->remote->flush(stores[i]->self, start_ns);
    }
}

void acache_flush(acache_store *store)
{
    if (store)
        flush_remotes(&store, 1, os_mono_ns());
}

static void tiers_close(void *self)
{
    tiers *t = self;
    /* The session's manifest is stored (and queued for upload) first. */
    prefetch_close(t->pf);
    /* Remotes drain their uploads at once, each within its flush-timeout. */
    flush_remotes(t->stores, t->n, os_mono_ns());
    for (size_t i = t->n; i-- > 0;)
        acache_close(t->stores[i]);
    free(t->stores);
    free(t);
}

/* Copies a hit (its bytes in hit->data, or its file at hit->path for a
 * remote) into dst. Best effort, except that the bytes are hashed on the
 * way in: bytes that do not match their output id return false and must
 * not be served. */
static bool copy_to(acache_store *dst, const acache_id *action, const acache_result *hit,
                    acache_result *out)
{
    if (is_remote(dst)) {
        const remote_ops *rops = dst->ops->remote;
        if (hit->path[0] && rops->put_file(dst->self, action, &hit->output_id, hit->size,
                                           hit->time_ns, hit->path) == ACACHE_OK)
            count_put(dst, hit->size);
        return true;
    }
    acache_put_stream *ps = NULL;
    if (acache_put_begin(dst, action, &ps) != ACACHE_OK)
        return true;
    if (acache_put_write(ps, hit->data, hit->size) != ACACHE_OK) {
        acache_put_abort(ps);
        return true;
    }
    return acache_put_commit(ps, &hit->output_id, hit->size, out) != ACACHE_EINVAL;
}

/* Copies a hit found in tier `from` into tiers [0, from); first receives
 * tier 0's result. */
static bool promote(tiers *t, size_t from, const acache_id *action, acache_result *hit,
                    acache_result *first)
{
    for (size_t j = 0; j < from; j++)
        if (!copy_to(t->stores[j], action, hit, j == 0 ? first : NULL))
            return false;
    return true;
}

/* A transport may hand a body over in small pieces (libcurl: 16 KiB), each
 * of which would be one write(2) into the file: pieces under HOME_DIRECT
 * are gathered in a buffer of HOME_GATHER bytes and written together
 * (without the buffer, when it cannot be had, one by one as before).
 * Larger pieces go down as they are: copying them costs more than the
 * write(2) it would save. */
#define HOME_DIRECT ((size_t)32 << 10)
#define HOME_GATHER ((size_t)256 << 10)

/* A put on the home tier, begun at the first byte of a remote hit: a
 * remote miss (most lookups of a cold build) costs the home tier nothing. */
typedef struct home_put {
    acache_store *home;
    const acache_id *action;
    const acache_result *meta; /* the record: its size is known before a byte */
    acache_put_stream *ps;
    unsigned char *buf; /* gather_size() bytes, made at the first small piece */
    size_t len;
} home_put;

/* A gather buffer no larger than the object: a batch holds many small
 * puts at once, and a fresh 256 KiB buffer each costs page faults. */
static size_t gather_size(const home_put *hp)
{
    uint64_t size = hp->meta->size;
    return size == 0 ? 1 : size < HOME_GATHER ? (size_t)size : HOME_GATHER;
}

static acache_status home_begin(home_put *hp)
{
    return hp->ps ? ACACHE_OK : acache_put_begin(hp->home, hp->action, &hp->ps);
}

static acache_status home_flush(home_put *hp)
{
    acache_status st = home_begin(hp);
    if (st == ACACHE_OK && hp->len > 0)
        st = acache_put_write(hp->ps, hp->buf, hp->len);
    hp->len = 0;
    return st;
}

static acache_status home_write(void *ctx, const void *data, size_t len)
{
    home_put *hp = ctx;
    size_t cap = gather_size(hp);
    if (len >= HOME_DIRECT || len > cap || (!hp->buf && !(hp->buf = malloc(cap)))) {
        acache_status st = home_flush(hp);
        return st != ACACHE_OK ? st : acache_put_write(hp->ps, data, len);
    }
    if (len > cap - hp->len) {
        acache_status st = home_flush(hp);
        if (st != ACACHE_OK)
            return st;
    }
    memcpy(hp->buf + hp->len, data, len);
    hp->len += len;
    return ACACHE_OK;
}

/* The tier a hit in remote tier i is stored into: the file tier if it comes
 * before i, else the first local tier before i, else NO_TIER. */
static size_t home_for(const tiers *t, size_t i)
{
    if (t->file_tier < i)
        return t->file_tier;
    for (size_t j = 0; j < i; j++)
        if (!is_remote(t->stores[j]))
            return j;
    return NO_TIER;
}

static void count_remote_get(acache_store *s, acache_status st, uint64_t size)
{
    COUNT(s, gets, 1);
    if (st == ACACHE_OK) {
        COUNT(s, hits, 1);
        COUNT(s, bytes_read, size);
    } else if (st < 0) {
        COUNT(s, errors, 1);
    } else {
        if (st == ACACHE_CORRUPT)
            COUNT(s, corrupt, 1);
        COUNT(s, misses, 1);
    }
}

/* What get_into (or a get_many) of remote tier i gave for action, whose
 * bytes went to hp: commits them in the home tier h, which checks them,
 * tells the remote the verdict, copies the entry into the other tiers
 * before i, and answers with the home tier's copy. Every failure is a
 * miss. */
static acache_status remote_hit_end(tiers *t, size_t i, size_t h, home_put *hp,
                                    const acache_result *meta, acache_status st, unsigned flags,
                                    acache_result *res)
{
    acache_store *s = t->stores[i], *home = t->stores[h];
    const remote_ops *rops = s->ops->remote;
    if (st == ACACHE_OK)
        st = home_flush(hp); /* an empty object writes nothing */
    free(hp->buf);
    hp->buf = NULL;
    if (st != ACACHE_OK) {
        acache_put_abort(hp->ps);
        count_remote_get(s, st, 0);
        return ACACHE_MISS;
    }
    st = acache_put_commit(hp->ps, &meta->output_id, meta->size, res);
    if (st == ACACHE_OK || st == ACACHE_EINVAL)
        rops->verdict(s->self, meta, st == ACACHE_OK);
    count_remote_get(s, st == ACACHE_OK ? ACACHE_OK : st == ACACHE_EINVAL ? ACACHE_CORRUPT : st,
                     meta->size);
    if (st != ACACHE_OK)
        return ACACHE_MISS;
    /* The time it was first stored: what `go clean -testcache` compares. */
    res->time_ns = meta->time_ns;
    for (size_t j = 0; j < i; j++) {
        if (j == h)
            continue;
        acache_result m;
        memset(&m, 0, sizeof m);
        if (is_remote(t->stores[j])) {
            copy_to(t->stores[j], hp->action, res, NULL);
        } else if (home->ops->get(home->self, hp->action, ACACHE_GET_DATA, &m) == ACACHE_OK) {
            copy_to(t->stores[j], hp->action, &m, NULL);
            acache_result_release(&m);
        }
    }
    if (flags & ACACHE_GET_DATA) {
        if (home->ops->get(home->self, hp->action, flags & ~(unsigned)ACACHE_GET_LOCAL, res) !=
            ACACHE_OK)
            return ACACHE_MISS;
        res->time_ns = meta->time_ns;
    }
    return ACACHE_OK;
}

/* Looks action up in remote tier i and, on a hit, stores it in the home
 * tier, which checks it, and answers with the home tier's copy. */
static acache_status get_remote(tiers *t, size_t i, const acache_id *action, unsigned flags,
                                acache_result *res)
{
    acache_store *s = t->stores[i];
    size_t h = home_for(t, i);
    if (h == NO_TIER) /* nowhere to keep it: the remote's own checked bytes */
        return acache_get(s, action, flags, res) == ACACHE_OK ? ACACHE_OK : ACACHE_MISS;
    acache_result meta;
    memset(&meta, 0, sizeof meta);
    home_put hp = { t->stores[h], action, &meta, NULL, NULL, 0 };
    remote_sink sink = { home_write, &hp };
    acache_status st = s->ops->remote->get_into(s->self, action, &meta, &sink);
    return remote_hit_end(t, i, h, &hp, &meta, st, flags, res);
}

/* Looks action up tier by tier (only in the remotes if remotes_only). */
static acache_status chain_get(tiers *t, const acache_id *action, unsigned flags,
                               acache_result *res, bool remotes_only)
{
    acache_status first_err = ACACHE_OK;
    char errmsg[1024] = "";
    for (size_t i = 0; i < t->n; i++) {
        if (remotes_only && !is_remote(t->stores[i]))
            continue;
        if (is_remote(t->stores[i])) {
            if (flags & ACACHE_GET_LOCAL)
                break;
            if (get_remote(t, i, action, flags, res) == ACACHE_OK)
                return ACACHE_OK;
            continue;
        }
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
                COUNT(t->stores[i], corrupt, 1);
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

static acache_status tiers_get(void *self, const acache_id *action, unsigned flags,
                               acache_result *res)
{
    tiers *t = self;
    if (!t->pf)
        return chain_get(t, action, flags, res, false);
    prefetch_lookup(t->pf, action);
    acache_status st = chain_get(t, action, flags | ACACHE_GET_LOCAL, res, false);
    acache_status local_st = st;
    char errmsg[1024] = "";
    if (st < 0)
        snprintf(errmsg, sizeof errmsg, "%s", acache_last_error());
    if (st != ACACHE_OK && !(flags & ACACHE_GET_LOCAL)) {
        prefetch_miss(t->pf);
        /* A prefetch thread fetching it makes us wait, then look again. */
        while (!prefetch_claim(t->pf, action)) {
            st = chain_get(t, action, flags | ACACHE_GET_LOCAL, res, false);
            if (st == ACACHE_OK)
                break;
        }
        if (st != ACACHE_OK) {
            st = chain_get(t, action, flags, res, true);
            prefetch_release(t->pf, action);
            /* No tier had it and a local tier failed: that is the answer. */
            if (st == ACACHE_MISS && local_st < 0)
                st = set_error(local_st, "%s", errmsg);
        }
    }
    if (st == ACACHE_OK)
        prefetch_note(t->pf, action);
    return st;
}

/* ------------------------------------------------------------------ */
/* What the session prefetch does through the chain (prefetch_ops)      */

static acache_status pf_load(void *ctx, const acache_id *key, bool local_only,
                             unsigned char **data, size_t *len)
{
    tiers *t = ctx;
    acache_result res;
    memset(&res, 0, sizeof res);
    acache_status st = chain_get(t, key, ACACHE_GET_DATA | (local_only ? ACACHE_GET_LOCAL : 0), &res,
                                 false);
    if (st != ACACHE_OK)
        return st;
    *len = (size_t)res.size;
    *data = malloc(*len ? *len : 1);
    if (*data && *len)
        memcpy(*data, res.data, *len);
    acache_result_release(&res);
    return *data ? ACACHE_OK : set_error(ACACHE_ENOMEM, "out of memory");
}

/* The local tier a remote hit goes to (home_for() of the first remote). */
static acache_store *pf_home(tiers *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (is_remote(t->stores[i])) {
            size_t h = home_for(t, i);
            return h == NO_TIER ? NULL : t->stores[h];
        }
    return NULL;
}

static bool pf_have(void *ctx, const acache_id *action)
{
    acache_store *home = pf_home(ctx);
    acache_result res;
    memset(&res, 0, sizeof res);
    if (!home || acache_get(home, action, 0, &res) != ACACHE_OK)
        return false;
    acache_result_release(&res);
    return true;
}

static acache_status pf_fetch(void *ctx, const acache_id *action)
{
    tiers *t = ctx;
    for (size_t i = 0; i < t->n; i++) {
        if (!is_remote(t->stores[i]))
            continue;
        acache_result res;
        memset(&res, 0, sizeof res);
        if (get_remote(t, i, action, 0, &res) == ACACHE_OK) {
            acache_result_release(&res);
            return ACACHE_OK;
        }
    }
    return ACACHE_MISS;
}

/* A batch of the prefetch on one remote tier (remote_ops.get_many). */
typedef struct pf_many {
    tiers *t;
    size_t ri, h;               /* the remote tier and its home tier */
    const acache_id *actions;
    const size_t *pos;          /* each one's index in the prefetch's batch */
    bool last;                  /* no later remote: a miss is final */
    prefetch_done_fn done;
    void *dctx;
    home_put hp[PREFETCH_BATCH];
    acache_result meta[PREFETCH_BATCH];
    remote_sink sinks[PREFETCH_BATCH];
    acache_status st[PREFETCH_BATCH];
} pf_many;

static const remote_sink *many_sink_for(void *ctx, size_t i, const acache_result *meta)
{
    pf_many *m = ctx;
    m->meta[i] = *meta;
    m->sinks[i] = (remote_sink){ home_write, &m->hp[i] };
    return &m->sinks[i];
}

static void many_done(void *ctx, size_t i, acache_status st)
{
    pf_many *m = ctx;
    acache_result res;
    memset(&res, 0, sizeof res);
    m->st[i] = remote_hit_end(m->t, m->ri, m->h, &m->hp[i], &m->meta[i], st, 0, &res);
    if (m->st[i] == ACACHE_OK)
        acache_result_release(&res);
    if (m->st[i] == ACACHE_OK || m->last)
        m->done(m->dctx, m->pos[i], m->st[i]);
}

/* The remote tier after tier `after` (NO_TIER: the first), or NO_TIER. */
static size_t next_remote(const tiers *t, size_t after)
{
    for (size_t i = after == NO_TIER ? 0 : after + 1; i < t->n; i++)
        if (is_remote(t->stores[i]))
            return i;
    return NO_TIER;
}

/* Asks remote tier ri for the n actions at pos[] of the batch; leaves in
 * pos[] those it did not have and returns how many (0 from the last
 * remote, which has reported every one). */
static size_t pf_many_on(tiers *t, size_t ri, const acache_id *actions, size_t *pos, size_t n,
                         prefetch_done_fn done, void *dctx)
{
    pf_many *m = malloc(sizeof *m);
    acache_id ids[PREFETCH_BATCH];
    size_t h = home_for(t, ri), left = 0;
    bool last = next_remote(t, ri) == NO_TIER;
    if (!m || h == NO_TIER || !t->stores[ri]->ops->remote->get_many) {
        for (size_t k = 0; k < n; k++) {
            acache_result res;
            memset(&res, 0, sizeof res);
            acache_status st = get_remote(t, ri, &actions[pos[k]], 0, &res);
            if (st == ACACHE_OK)
                acache_result_release(&res);
            if (st == ACACHE_OK || last)
                done(dctx, pos[k], st);
            else
                pos[left++] = pos[k];
        }
        free(m);
        return left;
    }
    *m = (pf_many){ .t = t, .ri = ri, .h = h, .actions = ids, .pos = pos, .last = last,
                    .done = done, .dctx = dctx };
    for (size_t k = 0; k < n; k++) {
        ids[k] = actions[pos[k]];
        m->hp[k] = (home_put){ t->stores[h], &ids[k], &m->meta[k], NULL, NULL, 0 };
        m->meta[k].size = 0;
    }
    remote_batch b = { ids, n, many_sink_for, many_done, m };
    t->stores[ri]->ops->remote->get_many(t->stores[ri]->self, &b);
    for (size_t k = 0; k < n && !last; k++)
        if (m->st[k] != ACACHE_OK)
            pos[left++] = pos[k];
    free(m);
    return left;
}

/* The batch through each remote in turn, each asked for what the ones
 * before it did not have. */
static void pf_fetch_many(void *ctx, const acache_id *actions, size_t n, prefetch_done_fn done,
                          void *dctx)
{
    tiers *t = ctx;
    size_t pos[PREFETCH_BATCH], left = n < PREFETCH_BATCH ? n : PREFETCH_BATCH;
    for (size_t k = 0; k < left; k++)
        pos[k] = k;
    for (size_t ri = next_remote(t, NO_TIER); ri != NO_TIER && left > 0; ri = next_remote(t, ri))
        left = pf_many_on(t, ri, actions, pos, left, done, dctx);
    for (size_t k = 0; k < left; k++)
        done(dctx, pos[k], ACACHE_MISS); /* no remote at all */
}

/* Whether a remote of the chain answered this session and is still on. */
static bool remote_reached(tiers *t)
{
    for (size_t i = 0; i < t->n; i++) {
        if (!is_remote(t->stores[i]))
            continue;
        acache_remote_info info;
        t->stores[i]->ops->remote->info(t->stores[i]->self, &info);
        if (!info.switched_off && info.hits + info.misses + info.uploads + info.already > 0)
            return true;
    }
    return false;
}

/* A manifest goes through the whole chain if a remote answered this
 * session; else only to the local store, so that a session that never
 * needed a remote (all local hits) does not wait at exit for an upload to
 * one that may be dead or hanging. */
static acache_status pf_store(void *ctx, const acache_id *key, const void *data, size_t len)
{
    tiers *t = ctx;
    acache_id out;
    backend_writer *w = NULL;
    if (!remote_reached(t)) {
        acache_store *home = pf_home(t);
        return home ? acache_put(home, key, data, len, NULL) : ACACHE_MISS;
    }
    acache_id_of_bytes(data, len, &out);
    acache_status st = tiers_put_begin(t, key, &w);
    if (st == ACACHE_OK && (st = tiers_put_write(w, data, len)) != ACACHE_OK)
        tiers_put_abort(w);
    if (st == ACACHE_OK)
        st = tiers_put_commit(w, &out, len, NULL);
    return st;
}

static const prefetch_ops tiers_prefetch_ops = {
    .load = pf_load,
    .have = pf_have,
    .fetch = pf_fetch,
    .fetch_many = pf_fetch_many,
    .store = pf_store,
};

int acache_prefetch_stats(acache_store *store, acache_prefetch_info *out)
{
    memset(out, 0, sizeof *out);
    if (!store || store->ops != &tiers_ops || !((tiers *)store->self)->pf)
        return 0;
    prefetch_info(((tiers *)store->self)->pf, out);
    return 1;
}

/* Remotes after the first tier upload from the file tier's copy. */
static bool uploads_from_file(const tiers *t, size_t i)
{
    return i > 0 && is_remote(t->stores[i]) && t->file_tier != NO_TIER;
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
    tw->action = *action;
    for (size_t i = 0; i < t->n; i++) {
        acache_store *s = t->stores[i];
        if (uploads_from_file(t, i))
            continue;
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
    acache_result own, file;
    if (!res)
        res = &own;
    res->path[0] = '\0';
    file.path[0] = '\0';
    tw->ws[0] = NULL;
    acache_status st = first->ops->put_commit(first, output, size, res);
    if (st != ACACHE_OK) {
        count_error(t->stores[0]);
        tiers_put_abort(w);
        return st;
    }
    count_put(t->stores[0], size);
    if (t->file_tier == 0)
        file = *res;
    for (size_t i = 1; i < t->n; i++) {
        backend_writer *bw = tw->ws[i];
        if (!bw)
            continue;
        if (bw->ops->put_commit(bw, output, size, i == t->file_tier ? &file : NULL) == ACACHE_OK)
            count_put(t->stores[i], size);
        else
            count_error(t->stores[i]);
    }
    for (size_t i = 1; i < t->n; i++)
        if (uploads_from_file(t, i) && file.path[0])
            copy_to(t->stores[i], &tw->action, &file, NULL);
    if (t->pf)
        prefetch_note(t->pf, &tw->action);
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
    t->file_tier = NO_TIER;
    for (size_t i = 0; i < n; i++) {
        if (!stores[i]) {
            free(t->stores);
            free(t);
            t = NULL;
            st = set_error(ACACHE_EINVAL, "acache_tiers: store %zu is NULL", i);
            goto fail;
        }
        t->stores[i] = stores[i];
        if (t->file_tier == NO_TIER && !is_remote(stores[i]) && stores[i]->ops->local_dir)
            t->file_tier = i;
    }
    t->n = n;
    /* Session prefetch: as many threads as the remote asking most wants;
     * manifests written if a remote that asks for it takes uploads. */
    unsigned threads = 0;
    bool write = false, any = false;
    for (size_t i = 0; i < n; i++) {
        if (!is_remote(stores[i]) || !stores[i]->ops->remote->prefetch)
            continue;
        unsigned want = stores[i]->ops->remote->prefetch(stores[i]->self);
        if (want == 0)
            continue;
        acache_remote_info info;
        stores[i]->ops->remote->info(stores[i]->self, &info);
        any = true;
        if (info.readable && want > threads)
            threads = want;
        write = write || info.writable;
    }
    if (any && pf_home(t) && !(t->pf = prefetch_new(threads, write, &tiers_prefetch_ops, t))) {
        free(t->stores);
        free(t);
        t = NULL;
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto fail;
    }
    return store_wrap(&tiers_ops, t, out);
fail:
    for (size_t i = 0; stores && i < n; i++)
        acache_close(stores[i]);
    return st;
}
