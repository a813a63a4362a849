/*
 * mem.c - the in-memory backend ("mem:?max-size=SIZE&scope=...").
 *
 * A byte-bounded, least-recently-used map from action id to an immutable,
 * reference-counted entry {output id, size, time stored, bytes}. It is the
 * fastest tier: a hit is a hash lookup under one shard lock, with no
 * allocation and no copy (ACACHE_GET_DATA hands out a reference to the bytes).
 *
 * scope=shared (the default): one cache for all threads, split into shards
 * chosen by the first byte of the action id. Each shard has its own mutex,
 * its own hash table, its own LRU list and its own byte budget
 * (max-size / nshards), so threads hitting different shards never queue on
 * one lock. Small caches use fewer shards so that each shard keeps at least
 * MEM_MIN_SHARD_BYTES (a 64K cache is one shard of 64K, not sixteen of 4K).
 *
 * scope=thread: every thread gets a private cache (as wasmer's
 * ThreadLocalCache), found through a pthread key, used with no locking at
 * all and freed when the thread exits. max-size then bounds each thread's
 * cache. A put is stored in the cache of the thread that commits it.
 *
 * Sizes are charged as the bytes plus the entry header, so max-size bounds
 * what is really resident. An entry that does not fit in one shard's budget
 * is not stored: its put still succeeds (a cache may always forget) and a
 * later get misses. A put stops buffering as soon as it grows past that
 * bound, so a huge put never holds more than a shard's worth of memory.
 *
 * It must never hash or verify bytes (store.c does that once per put and
 * hands us a verified output id), never free bytes a reader still holds a
 * reference to (an evicted or replaced entry lives until its last
 * acache_result_release()), never call free() or anything slow while holding
 * a shard lock beyond growing a bucket array, and never print or exit.
 */
#include "mem/mem.h"
#include "core/error.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEM_DEFAULT_MAX_SIZE (256ull << 20)
/* Upper bound on shards: enough that a few dozen threads rarely collide. */
#define MEM_MAX_SHARDS 16
/* Shards are halved until each has at least this budget (or one is left),
 * so that small caches can still hold reasonably large entries. */
#define MEM_MIN_SHARD_BYTES (1ull << 20)
/* Initial buckets per shard (a power of two); the table doubles when the
 * entry count passes the bucket count. */
#define MEM_INITIAL_BUCKET_BITS 4
#define MEM_CACHE_LINE 64

/*
 * One stored action. Header and bytes share one allocation. The cache holds
 * one reference while the entry is in a shard; each result handed out with
 * ACACHE_GET_DATA holds another. Everything but the links and refs is
 * immutable once published.
 */
typedef struct mem_entry {
    struct mem_entry *hnext;           /* hash chain; also the free list */
    struct mem_entry *newer, *older;   /* LRU list of the shard */
    atomic_uint_least32_t refs;
    acache_id action;
    acache_id output;
    uint64_t size;
    int64_t time_ns;
    unsigned char data[];
} mem_entry;

typedef struct mem_shard {
    alignas(MEM_CACHE_LINE) pthread_mutex_t lock; /* unused in thread caches */
    mem_entry **buckets;
    unsigned bucket_bits;
    size_t count;
    mem_entry *newest, *oldest;
    uint64_t bytes;   /* charged bytes: sizes plus headers */
} mem_shard;

struct mem_backend;

/* A set of shards: the one shared cache, or one thread's private cache. */
typedef struct mem_cache {
    struct mem_backend *mb;   /* never dereferenced once a thread exits */
    unsigned nshards;         /* copied from mb: see thread_cache_destructor */
    bool locked;              /* shared caches lock their shards */
    mem_shard *shards;
    /* thread caches only: owner and place in the global registry */
    pthread_t owner;
    struct mem_cache *reg_prev, *reg_next;
} mem_cache;

typedef struct mem_backend {
    uint64_t max_size;
    uint64_t shard_budget;
    unsigned nshards;         /* a power of two */
    bool thread_scope;
    mem_cache *shared;        /* scope=shared */
    pthread_key_t key;        /* scope=thread */
} mem_backend;

typedef struct mem_writer {
    backend_writer base;
    mem_backend *mb;
    acache_id action;
    mem_entry *e;             /* header + cap bytes of buffer, or NULL */
    size_t cap;
    uint64_t len;             /* bytes written so far (saturating) */
    bool too_big;             /* past the shard budget: will not be stored */
} mem_writer;

/*
 * Every thread cache of every scope=thread backend, under one mutex that is
 * taken only when a thread cache is created or destroyed and at close, never
 * on get or put. It is global rather than per backend so that a thread-exit
 * destructor racing with close() can tell, before touching anything, whether
 * the cache it was handed still exists.
 */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mem_cache *registry;

static const backend_ops mem_ops;

/* ------------------------------------------------------------------ */
/* Entries                                                             */

static void entry_unref(mem_entry *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

/* release_fn_ of results carrying data: drops the reader's reference. */
static void mem_release(void *ctx, const void *data, uint64_t size)
{
    (void)data;
    (void)size;
    if (ctx)
        entry_unref(ctx);
}

static uint64_t entry_charge(const mem_entry *e)
{
    return sizeof(mem_entry) + e->size;
}

static void free_list(mem_entry *e)
{
    while (e) {
        mem_entry *next = e->hnext;
        entry_unref(e);
        e = next;
    }
}

/* ------------------------------------------------------------------ */
/* Shards: hash table + LRU list. Callers hold the shard lock if any.  */

/* Ids are SHA-256 digests, so their first 8 bytes are already uniform;
 * the multiply spreads them over the top bits we index with, which also
 * keeps the first byte (the shard choice) from biasing the buckets. */
static inline uint64_t id_hash(const acache_id *id)
{
    uint64_t h;
    memcpy(&h, id->bytes, sizeof h);
    return h * 0x9E3779B97F4A7C15ull;
}

static inline size_t bucket_of(const mem_shard *sh, uint64_t h)
{
    return (size_t)(h >> (64 - sh->bucket_bits));
}

static inline mem_shard *shard_of(const mem_cache *c, const acache_id *id)
{
    return &c->shards[id->bytes[0] & (c->nshards - 1)];
}

static inline void shard_lock(const mem_cache *c, mem_shard *sh)
{
    if (c->locked)
        pthread_mutex_lock(&sh->lock);
}

static inline void shard_unlock(const mem_cache *c, mem_shard *sh)
{
    if (c->locked)
        pthread_mutex_unlock(&sh->lock);
}

static mem_entry **shard_find(mem_shard *sh, const acache_id *id, uint64_t h)
{
    mem_entry **pp = &sh->buckets[bucket_of(sh, h)];
    while (*pp && memcmp((*pp)->action.bytes, id->bytes, ACACHE_ID_SIZE) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(mem_shard *sh, mem_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        sh->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        sh->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(mem_shard *sh, mem_entry *e)
{
    e->newer = NULL;
    e->older = sh->newest;
    if (sh->newest)
        sh->newest->newer = e;
    else
        sh->oldest = e;
    sh->newest = e;
}

/* Unlinks *pp (found by shard_find) from the table and the LRU list; the
 * caller owns the cache's reference afterwards. */
static mem_entry *shard_remove_at(mem_shard *sh, mem_entry **pp)
{
    mem_entry *e = *pp;
    *pp = e->hnext;
    e->hnext = NULL;
    lru_unlink(sh, e);
    sh->count--;
    sh->bytes -= entry_charge(e);
    return e;
}

/* Doubles the bucket array. Failure is harmless: chains just get longer. */
static void shard_grow(mem_shard *sh)
{
    if (sh->bucket_bits >= 40)
        return;
    unsigned bits = sh->bucket_bits + 1;
    mem_entry **nb = calloc((size_t)1 << bits, sizeof *nb);
    if (!nb)
        return;
    size_t old_n = (size_t)1 << sh->bucket_bits;
    for (size_t i = 0; i < old_n; i++) {
        mem_entry *e = sh->buckets[i];
        while (e) {
            mem_entry *next = e->hnext;
            size_t b = (size_t)(id_hash(&e->action) >> (64 - bits));
            e->hnext = nb[b];
            nb[b] = e;
            e = next;
        }
    }
    free(sh->buckets);
    sh->buckets = nb;
    sh->bucket_bits = bits;
}

/* ------------------------------------------------------------------ */
/* Caches                                                              */

static void cache_free(mem_cache *c)
{
    if (!c)
        return;
    if (c->shards) {
        for (unsigned i = 0; i < c->nshards; i++) {
            mem_shard *sh = &c->shards[i];
            mem_entry *e = sh->newest;
            while (e) {
                mem_entry *older = e->older;
                entry_unref(e);
                e = older;
            }
            free(sh->buckets);
            if (c->locked)
                pthread_mutex_destroy(&sh->lock);
        }
        free(c->shards);
    }
    free(c);
}

static acache_status cache_new(mem_backend *mb, bool locked, mem_cache **out)
{
    acache_status st = ACACHE_OK;
    unsigned ninit = 0;
    mem_cache *c = calloc(1, sizeof *c);
    if (!c) {
        st = set_error(ACACHE_ENOMEM, "mem: out of memory creating a cache");
        goto out;
    }
    c->mb = mb;
    c->nshards = mb->nshards;
    c->shards = aligned_alloc(MEM_CACHE_LINE, mb->nshards * sizeof(mem_shard));
    if (!c->shards) {
        st = set_error(ACACHE_ENOMEM, "mem: out of memory creating a cache");
        goto out;
    }
    memset(c->shards, 0, mb->nshards * sizeof(mem_shard));
    for (; ninit < mb->nshards; ninit++) {
        mem_shard *sh = &c->shards[ninit];
        sh->bucket_bits = MEM_INITIAL_BUCKET_BITS;
        sh->buckets = calloc((size_t)1 << sh->bucket_bits, sizeof *sh->buckets);
        if (!sh->buckets) {
            st = set_error(ACACHE_ENOMEM, "mem: out of memory creating a cache");
            goto out;
        }
        if (locked) {
            int rc = pthread_mutex_init(&sh->lock, NULL);
            if (rc != 0) {
                free(sh->buckets);
                sh->buckets = NULL;
                st = set_errno_error(rc, "mem: pthread_mutex_init");
                goto out;
            }
        }
    }
    c->locked = locked;
out:
    if (st != ACACHE_OK && c) {
        /* only the first ninit shards are initialized */
        if (c->shards) {
            for (unsigned i = 0; i < ninit; i++) {
                free(c->shards[i].buckets);
                if (locked)
                    pthread_mutex_destroy(&c->shards[i].lock);
            }
            free(c->shards);
        }
        free(c);
        c = NULL;
    }
    *out = c;
    return st;
}

/* Caller holds registry_lock. */
static void registry_link(mem_cache *c)
{
    c->reg_prev = NULL;
    c->reg_next = registry;
    if (registry)
        registry->reg_prev = c;
    registry = c;
}

/* Caller holds registry_lock. */
static void registry_unlink(mem_cache *c)
{
    if (c->reg_prev)
        c->reg_prev->reg_next = c->reg_next;
    else
        registry = c->reg_next;
    if (c->reg_next)
        c->reg_next->reg_prev = c->reg_prev;
    c->reg_prev = c->reg_next = NULL;
}

/* pthread key destructor: the thread is exiting, free its cache, unless
 * close() already did (then it is no longer registered). Membership is
 * checked by address before the cache is touched; the owner check guards
 * against a new cache of another thread that reused the address. Once the
 * cache is unlinked, close() may free the backend at any moment, so freeing
 * the cache must not look at c->mb. */
static void thread_cache_destructor(void *value)
{
    mem_cache *victim = NULL;
    pthread_mutex_lock(&registry_lock);
    for (mem_cache *c = registry; c; c = c->reg_next) {
        if (c == value) {
            if (pthread_equal(c->owner, pthread_self())) {
                registry_unlink(c);
                victim = c;
            }
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    cache_free(victim);
}

/* The calling thread's cache (scope=thread), created on first use. */
static acache_status thread_cache(mem_backend *mb, mem_cache **out)
{
    acache_status st = ACACHE_OK;
    mem_cache *c = pthread_getspecific(mb->key);
    if (c)
        goto out;
    st = cache_new(mb, false, &c);
    if (st != ACACHE_OK)
        goto out;
    c->owner = pthread_self();
    pthread_mutex_lock(&registry_lock);
    registry_link(c);
    pthread_mutex_unlock(&registry_lock);
    int rc = pthread_setspecific(mb->key, c);
    if (rc != 0) {
        pthread_mutex_lock(&registry_lock);
        registry_unlink(c);
        pthread_mutex_unlock(&registry_lock);
        cache_free(c);
        c = NULL;
        st = set_errno_error(rc, "mem: pthread_setspecific");
    }
out:
    *out = c;
    return st;
}

/* The cache a get or delete looks in; NULL when this thread has none. */
static inline mem_cache *cache_for_read(mem_backend *mb)
{
    if (!mb->thread_scope)
        return mb->shared;
    return pthread_getspecific(mb->key);
}

/* The cache a commit stores into, creating this thread's if need be. */
static acache_status cache_for_write(mem_backend *mb, mem_cache **out)
{
    if (!mb->thread_scope) {
        *out = mb->shared;
        return ACACHE_OK;
    }
    return thread_cache(mb, out);
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */

static void mem_close(void *self)
{
    mem_backend *mb = self;
    if (!mb)
        return;
    if (mb->thread_scope) {
        mem_cache *mine = NULL;
        pthread_mutex_lock(&registry_lock);
        mem_cache *c = registry;
        while (c) {
            mem_cache *next = c->reg_next;
            if (c->mb == mb) {
                registry_unlink(c);
                c->reg_next = mine;
                mine = c;
            }
            c = next;
        }
        pthread_mutex_unlock(&registry_lock);
        /* Threads still alive keep a stale value under the key; deleting
         * the key means their destructors will not run for it, and any that
         * already started find nothing registered. */
        pthread_setspecific(mb->key, NULL);
        pthread_key_delete(mb->key);
        while (mine) {
            mem_cache *next = mine->reg_next;
            cache_free(mine);
            mine = next;
        }
    } else {
        cache_free(mb->shared);
    }
    free(mb);
}

static acache_status mem_get(void *self, const acache_id *action, unsigned flags,
                             acache_result *res)
{
    mem_backend *mb = self;
    mem_cache *c = cache_for_read(mb);
    res->data = NULL;
    res->release_fn_ = NULL;
    res->release_ctx_ = NULL;
    if (!c)
        return ACACHE_MISS;

    uint64_t h = id_hash(action);
    mem_shard *sh = shard_of(c, action);
    shard_lock(c, sh);
    mem_entry *e = *shard_find(sh, action, h);
    if (!e) {
        shard_unlock(c, sh);
        return ACACHE_MISS;
    }
    if (sh->newest != e) {
        lru_unlink(sh, e);
        lru_push_newest(sh, e);
    }
    res->output_id = e->output;
    res->size = e->size;
    res->time_ns = e->time_ns;
    res->path[0] = '\0';
    if (flags & ACACHE_GET_DATA) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        res->data = e->data;
        res->release_fn_ = mem_release;
        res->release_ctx_ = e;
    }
    shard_unlock(c, sh);
    return ACACHE_OK;
}

static acache_status mem_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    mem_backend *mb = self;
    mem_writer *w = calloc(1, sizeof *w);
    if (!w)
        return set_error(ACACHE_ENOMEM, "mem: out of memory starting a put");
    w->base.ops = &mem_ops;
    w->mb = mb;
    w->action = *action;
    /* a shard too small for even an empty entry stores nothing */
    w->too_big = mb->shard_budget < sizeof(mem_entry);
    *out = &w->base;
    return ACACHE_OK;
}

/* Most bytes a stored entry may have: the shard budget minus the header. */
static uint64_t writer_limit(const mem_writer *w)
{
    return w->mb->shard_budget - sizeof(mem_entry);
}

static void writer_give_up(mem_writer *w)
{
    free(w->e);
    w->e = NULL;
    w->cap = 0;
    w->too_big = true;
}

static acache_status mem_put_write(backend_writer *bw, const void *data, size_t len)
{
    mem_writer *w = (mem_writer *)bw;
    if (len == 0)
        return ACACHE_OK;
    if (!w->too_big && len > writer_limit(w) - w->len)
        writer_give_up(w);
    if (w->too_big) {
        w->len = (len > UINT64_MAX - w->len) ? UINT64_MAX : w->len + len;
        return ACACHE_OK;
    }

    size_t need = (size_t)w->len + len;
    if (need > w->cap) {
        /* A single write (acache_put) gets an exact buffer; streams double,
         * but never past what could be stored. */
        size_t cap = w->cap ? w->cap * 2 : need;
        if (cap < need)
            cap = need;
        if (cap > writer_limit(w))
            cap = (size_t)writer_limit(w);
        mem_entry *ne = realloc(w->e, sizeof(mem_entry) + cap);
        if (!ne)
            return set_error(ACACHE_ENOMEM, "mem: out of memory buffering %zu bytes", need);
        w->e = ne;
        w->cap = cap;
    }
    memcpy(w->e->data + w->len, data, len);
    w->len = need;
    return ACACHE_OK;
}

static void mem_put_abort(backend_writer *bw)
{
    mem_writer *w = (mem_writer *)bw;
    if (!w)
        return;
    free(w->e);
    free(w);
}

/* Turns the writer's buffer into an entry of exactly size bytes (the
 * doubling slack trimmed, so that the charge is what is resident; an empty
 * put has no buffer yet). NULL when out of memory. */
static mem_entry *entry_from_writer(mem_writer *w, const acache_id *output, uint64_t size,
                                    int64_t now)
{
    if (!w->e || w->cap != size) {
        mem_entry *ne = realloc(w->e, sizeof(mem_entry) + (size_t)size);
        if (ne)
            w->e = ne;
        else if (!w->e)
            return NULL;
        w->cap = (size_t)size;
    }
    mem_entry *e = w->e;
    w->e = NULL;
    e->hnext = e->newer = e->older = NULL;
    atomic_init(&e->refs, 1);
    e->action = w->action;
    e->output = *output;
    e->size = size;
    e->time_ns = now;
    return e;
}

/* Puts e in its shard, replacing the action's old entry, and evicts the
 * oldest entries over the shard's budget. Returns what left the shard, to
 * be freed outside the lock. */
static mem_entry *shard_insert(mem_backend *mb, mem_cache *c, mem_entry *e)
{
    mem_entry *dead = NULL;
    uint64_t h = id_hash(&e->action);
    mem_shard *sh = shard_of(c, &e->action);
    uint64_t budget = mb->shard_budget;
    shard_lock(c, sh);
    mem_entry **pp = shard_find(sh, &e->action, h);
    if (*pp) {
        dead = shard_remove_at(sh, pp);
    } else if (sh->count >= ((size_t)1 << sh->bucket_bits)) {
        shard_grow(sh);
        pp = shard_find(sh, &e->action, h);
    }
    e->hnext = *pp;
    *pp = e;
    lru_push_newest(sh, e);
    sh->count++;
    sh->bytes += entry_charge(e);
    /* the new entry fits on its own (writer_limit), so it is never the
     * victim */
    while (sh->bytes > budget && sh->oldest != e) {
        mem_entry *victim = sh->oldest;
        mem_entry **vp = shard_find(sh, &victim->action, id_hash(&victim->action));
        shard_remove_at(sh, vp);
        victim->hnext = dead;
        dead = victim;
    }
    shard_unlock(c, sh);
    return dead;
}

/* A put too big to keep: an older output of this action must not outlive
 * the put that superseded it. Returns the removed entry, if any. */
static mem_entry *shard_forget(mem_backend *mb, const acache_id *action)
{
    mem_entry *dead = NULL;
    mem_cache *c = cache_for_read(mb);
    if (c) {
        mem_shard *sh = shard_of(c, action);
        shard_lock(c, sh);
        mem_entry **pp = shard_find(sh, action, id_hash(action));
        if (*pp)
            dead = shard_remove_at(sh, pp);
        shard_unlock(c, sh);
    }
    return dead;
}

static acache_status mem_put_commit(backend_writer *bw, const acache_id *output, uint64_t size,
                                    acache_result *res)
{
    mem_writer *w = (mem_writer *)bw;
    acache_status st = ACACHE_OK;
    mem_entry *dead = NULL;
    struct timespec ts;
    int64_t now;

    if (size != w->len) {
        st = set_error(ACACHE_EINVAL, "mem: put of %llu bytes committed as %llu",
                       (unsigned long long)w->len, (unsigned long long)size);
        goto out;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;

    if (!w->too_big) {
        mem_cache *c = NULL;
        st = cache_for_write(w->mb, &c);
        if (st != ACACHE_OK)
            goto out;
        mem_entry *e = entry_from_writer(w, output, size, now);
        if (!e) {
            st = set_error(ACACHE_ENOMEM, "mem: out of memory storing an entry");
            goto out;
        }
        dead = shard_insert(w->mb, c, e);
    } else {
        dead = shard_forget(w->mb, &w->action);
    }

    if (res) {
        res->output_id = *output;
        res->size = size;
        res->time_ns = now;
        res->path[0] = '\0';
        res->data = NULL;
        res->release_fn_ = NULL;
        res->release_ctx_ = NULL;
    }
out:
    free_list(dead);
    mem_put_abort(bw);
    return st;
}

static acache_status mem_del(void *self, const acache_id *action)
{
    mem_backend *mb = self;
    mem_cache *c = cache_for_read(mb);
    mem_entry *e = NULL;
    if (!c)
        return ACACHE_MISS;
    mem_shard *sh = shard_of(c, action);
    shard_lock(c, sh);
    mem_entry **pp = shard_find(sh, action, id_hash(action));
    if (*pp)
        e = shard_remove_at(sh, pp);
    shard_unlock(c, sh);
    if (!e)
        return ACACHE_MISS;
    entry_unref(e);
    return ACACHE_OK;
}

static const backend_ops mem_ops = {
    .name = "mem",
    .close = mem_close,
    .get = mem_get,
    .put_begin = mem_put_begin,
    .put_write = mem_put_write,
    .put_commit = mem_put_commit,
    .put_abort = mem_put_abort,
    .del = mem_del,
};

/* ------------------------------------------------------------------ */
/* Opening                                                             */

acache_status mem_open(spec *s, void **self, const backend_ops **ops)
{
    acache_status st = ACACHE_OK;
    mem_backend *mb = NULL;
    uint64_t max_size = MEM_DEFAULT_MAX_SIZE;
    bool thread_scope = false;

    if (s->path && s->path[0]) {
        st = set_error(ACACHE_EINVAL, "mem: unexpected path '%s' (use mem:?max-size=SIZE)",
                       s->path);
        goto out;
    }
    const char *v = spec_get(s, "max-size");
    if (v) {
        st = parse_size(v, &max_size);
        if (st != ACACHE_OK) {
            /* parse_size's message names the value; copy it before
             * prefixing since set_error writes the same buffer */
            char why[512];
            snprintf(why, sizeof why, "%s", acache_last_error());
            if (why[0])
                st = set_error(ACACHE_EINVAL, "mem: max-size: %s", why);
            else
                st = set_error(ACACHE_EINVAL, "mem: invalid max-size '%s'", v);
            goto out;
        }
        if (max_size == 0) {
            st = set_error(ACACHE_EINVAL, "mem: max-size must be greater than 0");
            goto out;
        }
    }
    v = spec_get(s, "scope");
    if (v) {
        if (strcmp(v, "shared") == 0) {
            thread_scope = false;
        } else if (strcmp(v, "thread") == 0) {
            thread_scope = true;
        } else {
            st = set_error(ACACHE_EINVAL, "mem: invalid scope '%s' (want shared or thread)", v);
            goto out;
        }
    }

    mb = calloc(1, sizeof *mb);
    if (!mb) {
        st = set_error(ACACHE_ENOMEM, "mem: out of memory");
        goto out;
    }
    mb->max_size = max_size;
    mb->nshards = MEM_MAX_SHARDS;
    while (mb->nshards > 1 && max_size / mb->nshards < MEM_MIN_SHARD_BYTES)
        mb->nshards /= 2;
    mb->shard_budget = max_size / mb->nshards;
    mb->thread_scope = thread_scope;

    if (thread_scope) {
        int rc = pthread_key_create(&mb->key, thread_cache_destructor);
        if (rc != 0) {
            st = set_errno_error(rc, "mem: pthread_key_create");
            free(mb);
            mb = NULL;
            goto out;
        }
    } else {
        st = cache_new(mb, true, &mb->shared);
        if (st != ACACHE_OK) {
            free(mb);
            mb = NULL;
            goto out;
        }
    }
out:
    *self = mb;
    *ops = st == ACACHE_OK ? &mem_ops : NULL;
    return st;
}
