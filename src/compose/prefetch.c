/*
 * prefetch.c - session prefetch (see prefetch.h): the session's list of
 * used ids, the manifest format, the threads that fetch ahead, and the
 * claims that keep a lookup and a prefetch thread from fetching the same
 * id twice.
 *
 * The session list is a vector of entries in first-seen order with an
 * open-addressing index over it. An entry is SEEN when the session used it
 * and LISTED when the manifest on hand (loaded for the prefetch, or read
 * from the local store at close) names it; a manifest is written at close
 * only when some SEEN id is not LISTED, so a session that builds what the
 * last one built writes nothing.
 *
 * Threads: the first local miss starts one thread, which loads the
 * manifest and then starts the others; each takes the next PREFETCH_BATCH
 * listed ids, skips those that are local or claimed, claims the rest and
 * fetches them together (fetch_many), releasing each as soon as it is
 * over. Claims are a short
 * array of ids in flight under the mutex (lookups in flight plus threads);
 * a lookup that finds its id claimed lists it among the waits, and only
 * the release of a waited-for id wakes the waiters.
 * A manifest's ids are taken once each: a repeated id would be fetched
 * again after a failed fetch, and a lookup of it would wait again.
 * prefetch_close() wakes a loader waiting for the next first lookup; it
 * must never be left to time out.
 *
 * Test points (os/hook.h): "prefetch-key-wait", with the mutex held, just
 * before the loader waits for the next first lookup; and
 * "prefetch-key-wait-timed-out" when that wait ended by its timeout.
 */
#include "compose/prefetch.h"

#include "core/error.h"
#include "os/hook.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define MAGIC_LEN (sizeof PREFETCH_MAGIC - 1)
/* Ids being fetched at once: threads' batches plus the client's lookups.
 * Lookups beyond that go on unclaimed (they may fetch an id twice; never
 * wrongly). */
#define CLAIMS_MAX (PREFETCH_MAX_THREADS * PREFETCH_BATCH + 256)

enum { SEEN = 1, LISTED = 2 };

typedef struct entry {
    acache_id id;
    uint32_t seen_seq; /* order of first use; valid when SEEN */
    uint8_t flags;
} entry;

struct prefetch {
    const prefetch_ops *ops;
    void *ctx;
    unsigned nthreads;
    bool write;

    pthread_mutex_t mu;     /* guards everything below but the atomics */
    pthread_cond_t cv;      /* a claim a lookup waits for was released, or a first
                               lookup came */
    bool started;
    acache_id first[PREFETCH_KEYS]; /* the session's first distinct lookups */
    unsigned nfirst;
    atomic_bool firsts_full; /* nfirst == PREFETCH_KEYS: lookups skip mu */
    entry *entries;         /* in order of insertion */
    uint32_t nentries, cap;
    uint32_t *index;        /* slots: entry number + 1, 0 = empty */
    uint32_t index_cap;     /* a power of two, at least twice nentries */
    uint32_t seen;          /* how many are SEEN */
    bool manifest_known;    /* the LISTED flags reflect a manifest */
    acache_id claims[CLAIMS_MAX];
    size_t nclaims;
    /* The ids lookups are waiting for, one entry per waiting lookup, so
     * that a release wakes them only when it is their id (lookups past
     * CLAIMS_MAX wait unlisted and every release wakes them). */
    acache_id waits[CLAIMS_MAX];
    size_t nwaits, unlisted;
    pthread_t threads[PREFETCH_MAX_THREADS];
    unsigned running;       /* threads made */

    /* The loaded manifest's ids, for the threads (read-only once set). */
    unsigned char *list;
    size_t nlist;
    atomic_size_t next;     /* the next list index to take */
    atomic_bool stop;

    atomic_uint_least64_t fetched, local, failed, waited;
    atomic_bool loaded;
    atomic_bool searched;   /* the loader looked and found no manifest */
};

/* ------------------------------------------------------------------ */
/* Manifest format and key                                              */

void prefetch_key(const acache_id *first, acache_id *key)
{
    acache_part part = { first->bytes, sizeof first->bytes };
    acache_key_derive(key, "acache-manifest-v1", &part, 1);
}

long prefetch_decode(const unsigned char *data, size_t len)
{
    if (len < MAGIC_LEN || memcmp(data, PREFETCH_MAGIC, MAGIC_LEN) != 0)
        return -1;
    size_t body = len - MAGIC_LEN;
    if (body % ACACHE_ID_SIZE != 0 || body / ACACHE_ID_SIZE > PREFETCH_MAX_IDS)
        return -1;
    return (long)(body / ACACHE_ID_SIZE);
}

/* ------------------------------------------------------------------ */
/* The session list                                                     */

static uint32_t slot_of(const acache_id *id, uint32_t cap)
{
    uint32_t h;
    memcpy(&h, id->bytes, sizeof h); /* ids are SHA-256 outputs: uniform */
    return h & (cap - 1);
}

static bool grow_index(prefetch *p)
{
    uint32_t cap = p->index_cap ? p->index_cap * 2 : 1024;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return false;
    for (uint32_t i = 0; i < p->nentries; i++) {
        uint32_t s = slot_of(&p->entries[i].id, cap);
        while (index[s])
            s = (s + 1) & (cap - 1);
        index[s] = i + 1;
    }
    free(p->index);
    p->index = index;
    p->index_cap = cap;
    return true;
}

/* The entry of id, added (flags 0) if new; NULL when full or out of
 * memory. Under mu. */
static entry *entry_get(prefetch *p, const acache_id *id)
{
    if (p->index_cap) {
        for (uint32_t s = slot_of(id, p->index_cap); p->index[s]; s = (s + 1) & (p->index_cap - 1)) {
            entry *e = &p->entries[p->index[s] - 1];
            if (memcmp(e->id.bytes, id->bytes, ACACHE_ID_SIZE) == 0)
                return e;
        }
    }
    if (p->nentries >= PREFETCH_MAX_IDS)
        return NULL;
    if ((uint64_t)(p->nentries + 1) * 2 > p->index_cap && !grow_index(p))
        return NULL;
    if (p->nentries == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 512;
        entry *e = realloc(p->entries, (size_t)cap * sizeof *e);
        if (!e)
            return NULL;
        p->entries = e;
        p->cap = cap;
    }
    entry *e = &p->entries[p->nentries++];
    memset(e, 0, sizeof *e);
    e->id = *id;
    uint32_t s = slot_of(id, p->index_cap);
    while (p->index[s])
        s = (s + 1) & (p->index_cap - 1);
    p->index[s] = p->nentries;
    return e;
}

/* Marks the ids of a manifest LISTED and moves each to the front once,
 * dropping repeats; returns how many are left. Under mu. */
static size_t mark_listed(prefetch *p, unsigned char *ids, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        acache_id id;
        memcpy(id.bytes, ids + i * ACACHE_ID_SIZE, ACACHE_ID_SIZE);
        entry *e = entry_get(p, &id);
        if (e && (e->flags & LISTED))
            continue; /* a repeat */
        if (e)
            e->flags |= LISTED;
        memmove(ids + kept * ACACHE_ID_SIZE, id.bytes, ACACHE_ID_SIZE);
        kept++;
    }
    p->manifest_known = true;
    return kept;
}

void prefetch_lookup(prefetch *p, const acache_id *action)
{
    if (atomic_load_explicit(&p->firsts_full, memory_order_relaxed))
        return; /* every lookup after the first few: nothing to do */
    pthread_mutex_lock(&p->mu);
    bool known = false;
    for (unsigned i = 0; i < p->nfirst && !known; i++)
        known = memcmp(p->first[i].bytes, action->bytes, ACACHE_ID_SIZE) == 0;
    if (!known && p->nfirst < PREFETCH_KEYS) {
        p->first[p->nfirst++] = *action;
        atomic_store(&p->firsts_full, p->nfirst == PREFETCH_KEYS);
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

void prefetch_note(prefetch *p, const acache_id *action)
{
    if (atomic_load_explicit(&p->stop, memory_order_relaxed))
        return; /* closing: the manifest's own put */
    pthread_mutex_lock(&p->mu);
    entry *e = entry_get(p, action);
    if (e && !(e->flags & SEEN)) {
        e->flags |= SEEN;
        e->seen_seq = p->seen++;
    }
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------ */
/* Claims                                                               */

static ssize_t id_find(const acache_id *ids, size_t n, const acache_id *id)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(ids[i].bytes, id->bytes, ACACHE_ID_SIZE) == 0)
            return (ssize_t)i;
    return -1;
}

static ssize_t claim_find(const prefetch *p, const acache_id *id)
{
    return id_find(p->claims, p->nclaims, id);
}

/* Waits until nobody claims id. Under mu. */
static void wait_unclaimed(prefetch *p, const acache_id *id)
{
    bool listed = p->nwaits < CLAIMS_MAX;
    if (listed)
        p->waits[p->nwaits++] = *id;
    else
        p->unlisted++;
    while (claim_find(p, id) >= 0)
        pthread_cond_wait(&p->cv, &p->mu);
    if (listed) {
        /* Other waits may have ended meanwhile: find this one again. */
        size_t w = (size_t)id_find(p->waits, p->nwaits, id);
        p->waits[w] = p->waits[--p->nwaits];
    } else {
        p->unlisted--;
    }
}

bool prefetch_claim(prefetch *p, const acache_id *action)
{
    pthread_mutex_lock(&p->mu);
    if (!p->started) {
        pthread_mutex_unlock(&p->mu);
        return true;
    }
    bool waited = claim_find(p, action) >= 0;
    if (waited)
        wait_unclaimed(p, action);
    if (!waited && p->nclaims < CLAIMS_MAX)
        p->claims[p->nclaims++] = *action;
    pthread_mutex_unlock(&p->mu);
    if (waited)
        atomic_fetch_add(&p->waited, 1);
    return !waited;
}

void prefetch_release(prefetch *p, const acache_id *action)
{
    pthread_mutex_lock(&p->mu);
    ssize_t i = claim_find(p, action);
    if (i >= 0) {
        p->claims[i] = p->claims[--p->nclaims];
        /* Waking every waiter at every release (four threads' worth) cost
         * a futex call and a context switch per waiter each time. */
        if (p->unlisted > 0 || id_find(p->waits, p->nwaits, action) >= 0)
            pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

unsigned prefetch_waiting(prefetch *p, const acache_id *action)
{
    unsigned n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nwaits; i++)
        n += memcmp(p->waits[i].bytes, action->bytes, ACACHE_ID_SIZE) == 0;
    n += (unsigned)p->unlisted; /* unknown ids: counted for any */
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* A thread's claim: false if the id is claimed already (a lookup fetches
 * it) or there is no room. */
static bool try_claim(prefetch *p, const acache_id *id)
{
    pthread_mutex_lock(&p->mu);
    bool ok = claim_find(p, id) < 0 && p->nclaims < CLAIMS_MAX;
    if (ok)
        p->claims[p->nclaims++] = *id;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Threads                                                              */

/* The ids of a thread's batch in flight, for the done callback. */
typedef struct batch {
    prefetch *p;
    acache_id ids[PREFETCH_BATCH];
    size_t n;
} batch;

static void batch_done(void *dctx, size_t i, acache_status st)
{
    batch *b = dctx;
    prefetch_release(b->p, &b->ids[i]);
    atomic_fetch_add(st == ACACHE_OK ? &b->p->fetched : &b->p->failed, 1);
}

/* Takes list[from, to): each id that is neither local nor claimed is
 * claimed and goes into b. */
static void batch_take(prefetch *p, size_t from, size_t to, batch *b)
{
    b->p = p;
    b->n = 0;
    for (size_t i = from; i < to; i++) {
        acache_id id;
        memcpy(id.bytes, p->list + i * ACACHE_ID_SIZE, ACACHE_ID_SIZE);
        if (p->ops->have(p->ctx, &id) || !try_claim(p, &id)) {
            atomic_fetch_add(&p->local, 1); /* here, or a lookup is fetching it */
            continue;
        }
        b->ids[b->n++] = id;
    }
}

static void *worker_main(void *arg)
{
    prefetch *p = arg;
    batch b;
    for (;;) {
        if (atomic_load_explicit(&p->stop, memory_order_relaxed))
            break;
        size_t i = atomic_fetch_add(&p->next, PREFETCH_BATCH);
        if (i >= p->nlist)
            break;
        batch_take(p, i, i + PREFETCH_BATCH < p->nlist ? i + PREFETCH_BATCH : p->nlist, &b);
        if (b.n > 0 && p->ops->fetch_many) {
            p->ops->fetch_many(p->ctx, b.ids, b.n, batch_done, &b);
            continue;
        }
        for (size_t k = 0; k < b.n; k++)
            batch_done(&b, k, p->ops->fetch(p->ctx, &b.ids[k]));
    }
    return NULL;
}

/* Loads the manifest of one of the session's first lookups, trying each as
 * it comes (waiting up to PREFETCH_KEY_WAIT_NS for the next). Returns its
 * ids (after the magic, moved to the front of the buffer) and their count,
 * or 0. */
static size_t load_manifest(prefetch *p, unsigned char **ids)
{
    for (unsigned k = 0; k < PREFETCH_KEYS; k++) {
        acache_id key;
        pthread_mutex_lock(&p->mu);
        if (k >= p->nfirst && !atomic_load(&p->stop)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += PREFETCH_KEY_WAIT_NS;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            int rc = 0;
            os_hook_run("prefetch-key-wait", NULL);
            while (k >= p->nfirst && !atomic_load(&p->stop) &&
                   (rc = pthread_cond_timedwait(&p->cv, &p->mu, &until)) == 0)
                ;
            if (rc == ETIMEDOUT)
                os_hook_run("prefetch-key-wait-timed-out", NULL);
        }
        bool have = k < p->nfirst;
        if (have)
            prefetch_key(&p->first[k], &key);
        pthread_mutex_unlock(&p->mu);
        if (!have || atomic_load(&p->stop))
            return 0;
        unsigned char *data = NULL;
        size_t len = 0;
        if (p->ops->load(p->ctx, &key, false, &data, &len) != ACACHE_OK)
            continue;
        long n = prefetch_decode(data, len);
        if (n <= 0) {
            free(data);
            continue;
        }
        memmove(data, data + MAGIC_LEN, (size_t)n * ACACHE_ID_SIZE);
        *ids = data;
        return (size_t)n;
    }
    return 0;
}

/* The first thread: loads the manifest, starts the others, then works. */
static void *loader_main(void *arg)
{
    prefetch *p = arg;
    unsigned char *ids = NULL;
    size_t n = load_manifest(p, &ids);
    if (n == 0) {
        atomic_store(&p->searched, true);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    n = mark_listed(p, ids, n);
    p->list = ids;
    p->nlist = n;
    atomic_store(&p->loaded, true);
    for (unsigned i = 1; i < p->nthreads && !atomic_load(&p->stop); i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
            break;
        p->running++;
    }
    pthread_mutex_unlock(&p->mu);
    return worker_main(p);
}

void prefetch_miss(prefetch *p)
{
    if (p->nthreads == 0)
        return;
    pthread_mutex_lock(&p->mu);
    if (!p->started && p->nfirst > 0 && !atomic_load(&p->stop)) {
        p->started = true;
        if (pthread_create(&p->threads[0], NULL, loader_main, p) == 0)
            p->running = 1;
    }
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                             */

prefetch *prefetch_new(unsigned threads, bool write, const prefetch_ops *ops, void *ctx)
{
    prefetch *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->ops = ops;
    p->ctx = ctx;
    p->nthreads = threads > PREFETCH_MAX_THREADS ? PREFETCH_MAX_THREADS : threads;
    p->write = write;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

void prefetch_info(prefetch *p, acache_prefetch_info *out)
{
    memset(out, 0, sizeof *out);
    out->loaded = atomic_load(&p->loaded);
    out->fetched = atomic_load(&p->fetched);
    out->local = atomic_load(&p->local);
    out->failed = atomic_load(&p->failed);
    out->waited = atomic_load(&p->waited);
    pthread_mutex_lock(&p->mu);
    out->listed = p->nlist;
    pthread_mutex_unlock(&p->mu);
    out->finished = atomic_load(&p->searched) ||
                    (out->loaded && out->fetched + out->local + out->failed >= out->listed);
}

static int by_seen(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    return x->seen_seq < y->seen_seq ? -1 : x->seen_seq > y->seen_seq;
}

/* Stores the session's manifest if it lists an id the one on hand does
 * not. Best effort: a manifest is only a hint. */
static void write_manifest(prefetch *p)
{
    if (!p->write || p->nfirst == 0 || p->seen < PREFETCH_MIN_IDS)
        return;
    acache_id keys[PREFETCH_KEYS];
    for (unsigned k = 0; k < p->nfirst; k++)
        prefetch_key(&p->first[k], &keys[k]);
    if (!p->manifest_known) {
        /* This session loaded none (its first lookup hit): the local store
         * may hold one an earlier session wrote. */
        for (unsigned k = 0; k < p->nfirst && !p->manifest_known; k++) {
            unsigned char *data = NULL;
            size_t len = 0;
            if (p->ops->load(p->ctx, &keys[k], true, &data, &len) == ACACHE_OK) {
                long n = prefetch_decode(data, len);
                if (n > 0)
                    mark_listed(p, data + MAGIC_LEN, (size_t)n);
            }
            free(data);
        }
    }
    /* Written when the session used an id the manifest on hand lacks, or
     * left a quarter of it unused (a cold build's manifest lists what a
     * warm one never asks for). */
    uint32_t news = 0, unused = 0, listed = 0;
    for (uint32_t i = 0; i < p->nentries; i++) {
        uint8_t f = p->entries[i].flags;
        news += f == SEEN;
        unused += f == LISTED;
        listed += (f & LISTED) != 0;
    }
    if (news == 0 && (uint64_t)unused * 4 <= listed)
        return;
    entry **seen = malloc((size_t)p->seen * sizeof *seen);
    size_t len = MAGIC_LEN + (size_t)p->seen * ACACHE_ID_SIZE;
    unsigned char *buf = malloc(len);
    if (seen && buf) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < p->nentries; i++)
            if (p->entries[i].flags & SEEN)
                seen[n++] = &p->entries[i];
        qsort(seen, n, sizeof *seen, by_seen);
        memcpy(buf, PREFETCH_MAGIC, MAGIC_LEN);
        for (uint32_t i = 0; i < n; i++)
            memcpy(buf + MAGIC_LEN + (size_t)i * ACACHE_ID_SIZE, seen[i]->id.bytes, ACACHE_ID_SIZE);
        /* The same bytes under each key: one object, a record per key. */
        for (unsigned k = 0; k < p->nfirst; k++)
            p->ops->store(p->ctx, &keys[k], buf, len);
    }
    free(seen);
    free(buf);
}

void prefetch_close(prefetch *p)
{
    if (!p)
        return;
    /* Set under mu and broadcast: a loader waiting for the next first
     * lookup wakes now (it checks stop under mu, so it cannot miss it). */
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    /* The loader makes the other threads under mu; once it has returned,
     * running says how many there are. */
    bool any = p->running > 0;
    pthread_mutex_unlock(&p->mu);
    if (any) {
        pthread_join(p->threads[0], NULL);
        for (unsigned i = 1; i < p->running; i++)
            pthread_join(p->threads[i], NULL);
    }
    write_manifest(p);
    free(p->list);
    free(p->entries);
    free(p->index);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
