/*
 * prefetch.h - session prefetch for a tier chain with remotes.
 *
 * A client builds the same things again and again, and looks up much the
 * same action ids, in much the same order, each time. The go command does
 * so one or two ids at a time, so a build served from a remote into an
 * empty local store pays every remote round trip in turn. Session prefetch
 * turns that latency into throughput:
 *
 *   - a tier chain remembers the ids its session used (gets that hit,
 *     puts), in the order it first used them;
 *   - when it closes, it stores that list, a *manifest*, as an ordinary
 *     cache entry (local, and uploaded like any put) under action ids
 *     derived from each of the session's first PREFETCH_KEYS lookups (a
 *     parallel build does not always start with the same one), unless the
 *     manifest it already had lists all of them;
 *   - the next session that misses in the local store looks for a manifest
 *     under its own first lookups, loads the first it finds (through the
 *     chain) and fetches
 *     the entries it lists from the remotes in background threads, several
 *     at a time, ahead of the client's own lookups. A lookup of an id that
 *     a prefetch thread is fetching waits for it instead of fetching twice.
 *
 * A manifest is only a hint: every entry it names is fetched and checked
 * like any remote hit, so a stale or forged manifest costs bandwidth, never
 * a wrong answer. Manifests are signed like any record when a remote key is
 * set. This file owns the session list, the manifest format and the
 * threads; tiers.c supplies the storage operations (prefetch_ops).
 *
 * What it must never do: hold up a lookup for anything but a fetch of that
 * same id already running; keep running after prefetch_close(); write a
 * manifest from a session that used fewer than PREFETCH_MIN_IDS ids.
 */
#ifndef ACACHE_PREFETCH_H
#define ACACHE_PREFETCH_H

#include "acache.h"

#include <stdbool.h>
#include <stddef.h>

/* Sessions that used fewer ids write no manifest (a `go env`, a `go list`). */
#define PREFETCH_MIN_IDS 16
/* The most ids a session remembers, and a manifest may list (32 MiB). */
#define PREFETCH_MAX_IDS (1u << 20)
/* How many of a session's first lookups name its manifest. */
#define PREFETCH_KEYS 4
/* How long the loader waits for the next first lookup to try. */
#define PREFETCH_KEY_WAIT_NS (200 * 1000000LL)
/* The most prefetch threads a chain may run. */
#define PREFETCH_MAX_THREADS 64
/* How many consecutive ids of a manifest a thread takes at once (and hands
 * to fetch_many): their records and small objects then come in a round
 * trip or two instead of two per id. */
#define PREFETCH_BATCH 16

/* Called by fetch_many as each of its ids is over. */
typedef void (*prefetch_done_fn)(void *dctx, size_t i, acache_status st);

/* What the tier chain does for the prefetch. ctx is the chain. */
typedef struct prefetch_ops {
    /* Reads the entry stored under key into a malloc'ed buffer (*data, *len;
     * the caller frees it). local_only: look only in the local tiers.
     * ACACHE_OK, ACACHE_MISS, or an error. */
    acache_status (*load)(void *ctx, const acache_id *key, bool local_only, unsigned char **data,
                          size_t *len);
    /* Whether the local store already holds action. */
    bool (*have)(void *ctx, const acache_id *action);
    /* Fetches action from the remotes into the local store (checked). */
    acache_status (*fetch)(void *ctx, const acache_id *action);
    /* Stores data[0..len) under key through the whole chain. */
    acache_status (*store)(void *ctx, const acache_id *key, const void *data, size_t len);
    /* Optional (NULL: fetch each): fetches actions[0..n) (n at most
     * PREFETCH_BATCH) as fetch does, calling done(dctx, i, status) exactly
     * once for each, as soon as it is over. */
    void (*fetch_many)(void *ctx, const acache_id *actions, size_t n, prefetch_done_fn done,
                       void *dctx);
} prefetch_ops;

typedef struct prefetch prefetch;

/* A prefetch with up to `threads` fetching threads (0: it remembers and
 * writes manifests but never reads one), writing manifests if `write`.
 * NULL when out of memory. */
prefetch *prefetch_new(unsigned threads, bool write, const prefetch_ops *ops, void *ctx);

/* A lookup of action starts: the session's first ones name its manifest. */
void prefetch_lookup(prefetch *p, const acache_id *action);
/* The session used action: a get that hit, or a put. */
void prefetch_note(prefetch *p, const acache_id *action);
/* A lookup missed locally: starts the prefetch (once per session). */
void prefetch_miss(prefetch *p);

/* Before fetching action from the remotes. true: go on, then call
 * prefetch_release(); false: a prefetch of action was running and has
 * ended meanwhile, so look in the local store again first (and then call
 * prefetch_claim() again). */
bool prefetch_claim(prefetch *p, const acache_id *action);
void prefetch_release(prefetch *p, const acache_id *action);

void prefetch_info(prefetch *p, acache_prefetch_info *out);

/* How many lookups are waiting in prefetch_claim() for action, for tests
 * that must know a lookup waits before they let its fetch end. */
unsigned prefetch_waiting(prefetch *p, const acache_id *action);

/* Stops the threads (a fetch under way finishes, within the remote's
 * timeouts), writes the session's manifest if it lists anything new, and
 * frees p. Call before the chain's remotes flush their uploads. */
void prefetch_close(prefetch *p);

/* A manifest key: the one for a session that looked first up early. */
void prefetch_key(const acache_id *first, acache_id *key);

/* Manifest bytes: PREFETCH_MAGIC, then 32 bytes per id. */
#define PREFETCH_MAGIC "acache-manifest-v1\n"
/* Checks a manifest and returns how many ids it lists (at data +
 * sizeof PREFETCH_MAGIC - 1), or -1 if it is not one. */
long prefetch_decode(const unsigned char *data, size_t len);

#endif
