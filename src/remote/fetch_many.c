/*
 * fetch_many.c - get_many: several actions read from a remote in a few
 * round trips instead of two each. Their records are asked for together
 * (an empty object, or one its record carries, is then done); the objects of the small ones (SMALL_OBJECT bytes or less) then
 * together, SMALL_BYTES at a time; each large one then on its own, as
 * get_into does, so that small entries are never held up behind a large
 * one. On a transport without fetch_many every name is fetched
 * on its own: the same result as get_into, one action after another.
 *
 * Rules, as fetch.c's: every record is checked (signature, action id)
 * before it is believed, and every object decoded, sized and handed on
 * only for the caller to hash (a poisoned one is refused and removed as
 * get_into removes it); a miss is a miss for that action alone; a failure
 * of the caller's sink is never counted against the remote's health; the
 * whole exchange failing counts once, not once per action. done() is
 * called exactly once for every action.
 */
#include "core/error.h"
#include "remote/remote_store.h"

#include <stdlib.h>

/* Objects at most this big are fetched together, ... */
#define SMALL_OBJECT ((uint64_t)256 << 10)
/* ... up to this many bytes at once. */
#define SMALL_BYTES ((uint64_t)2 << 20)

/* Asks for n names together when the transport can; every st[i] starts
 * REMOTE_UNTRIED. Returns the exchange's own failure (not yet counted) and
 * sets *answered when some name got its answer. */
static acache_status together(remote *r, remote_ns ns, const char *const *hexes, size_t n,
                              const uint64_t *limits, const remote_sink *sinks, acache_status *st,
                              bool *answered)
{
    for (size_t i = 0; i < n; i++)
        st[i] = REMOTE_UNTRIED;
    *answered = false;
    if (!r->tops->fetch_many || n < 2)
        return ACACHE_OK;
    acache_status err = r->tops->fetch_many(r->t, ns, hexes, n, limits, sinks, st);
    for (size_t i = 0; i < n && !*answered; i++)
        *answered = st[i] != REMOTE_UNTRIED;
    return err;
}

/* Action i is over at once when its record settles its object (empty,
 * or carried inline): true then. */
static bool give_inline(remote *r, const remote_batch *b, size_t i, const remote_record *rec)
{
    if (!record_inline(r, rec))
        return false;
    acache_result meta;
    record_meta(rec, &meta);
    b->done(b->ctx, i, record_inline_give(rec, b->sink_for(b->ctx, i, &meta)));
    return true;
}

/* Phase one: the records of every action, checked; those that carry
 * their object are done here, while their bytes are at hand. Returns how
 * many need their object fetched (their indices in good[], records in
 * recs[]); every other action is done. */
static size_t get_records(remote *r, const remote_batch *b, remote_record *recs, size_t *good)
{
    char hexes[REMOTE_BATCH_MAX][ACACHE_ID_HEX_SIZE];
    const char *names[REMOTE_BATCH_MAX];
    uint64_t limits[REMOTE_BATCH_MAX];
    remote_sink sinks[REMOTE_BATCH_MAX];
    acache_status st[REMOTE_BATCH_MAX];
    record_buf *bufs = malloc(b->n * sizeof *bufs);
    size_t ngood = 0;
    bool answered;
    if (!bufs) {
        for (size_t i = 0; i < b->n; i++)
            b->done(b->ctx, i, set_error(ACACHE_ENOMEM, "out of memory"));
        return 0;
    }
    for (size_t i = 0; i < b->n; i++) {
        acache_id_to_hex(&b->actions[i], hexes[i]);
        names[i] = hexes[i];
        limits[i] = sizeof bufs[i].buf;
        bufs[i].len = 0;
        sinks[i] = record_sink(&bufs[i]);
    }
    acache_status err = together(r, REMOTE_AC, names, b->n, limits, sinks, st, &answered);
    if (err < 0 || answered)
        remote_health(r, err < 0 ? err : ACACHE_OK);
    for (size_t i = 0; i < b->n; i++) {
        if (st[i] == REMOTE_UNTRIED)
            st[i] = err < 0 ? err
                            : remote_health(r, r->tops->fetch(r->t, REMOTE_AC, names[i],
                                                              limits[i], &sinks[i]));
        st[i] = record_take(r, &b->actions[i], st[i], bufs[i].buf, bufs[i].len, &recs[ngood]);
        if (st[i] == ACACHE_OK && give_inline(r, b, i, &recs[ngood]))
            continue;
        if (st[i] == ACACHE_OK)
            good[ngood++] = i;
        else
            b->done(b->ctx, i, st[i]);
    }
    free(bufs);
    return ngood;
}

/* Starts the object of action i: asks the caller where its bytes go. */
static void object_start(remote *r, const remote_batch *b, size_t i, const remote_record *rec,
                         object_get *o)
{
    acache_result meta;
    record_meta(rec, &meta);
    object_get_begin(o, r, rec, b->sink_for(b->ctx, i, &meta));
}

/* The objects of n small actions (idx[], recs[]) in one exchange. */
static void get_small(remote *r, const remote_batch *b, const size_t *idx,
                      const remote_record *recs, size_t n)
{
    object_get *o = malloc(n * sizeof *o);
    const char *names[REMOTE_BATCH_MAX] = { NULL };
    uint64_t limits[REMOTE_BATCH_MAX] = { 0 };
    remote_sink sinks[REMOTE_BATCH_MAX] = { { NULL, NULL } };
    acache_status st[REMOTE_BATCH_MAX];
    bool answered, sink_failed = false;
    if (!o) {
        for (size_t k = 0; k < n; k++)
            b->done(b->ctx, idx[k], set_error(ACACHE_ENOMEM, "out of memory"));
        return;
    }
    for (size_t k = 0; k < n; k++) {
        object_start(r, b, idx[k], &recs[k], &o[k]);
        names[k] = o[k].hex;
        limits[k] = object_stored_limit(recs[k].size);
        sinks[k] = o[k].in;
    }
    acache_status err = together(r, REMOTE_CAS, names, n, limits, sinks, st, &answered);
    for (size_t k = 0; k < n; k++)
        sink_failed = sink_failed || o[k].sink_st != ACACHE_OK;
    if ((err < 0 && !sink_failed) || (err >= 0 && answered))
        remote_health(r, err < 0 ? err : ACACHE_OK);
    for (size_t k = 0; k < n; k++) {
        acache_status s;
        if (st[k] != REMOTE_UNTRIED)
            s = object_get_end(&o[k], st[k], false);
        else if (err < 0)
            s = object_get_end(&o[k], err, false);
        else
            s = object_get_end(&o[k], r->tops->fetch(r->t, REMOTE_CAS, names[k], limits[k], &o[k].in),
                               true);
        b->done(b->ctx, idx[k], s);
    }
    free(o);
}

/* Phase two: the objects of the good records, small ones together first,
 * then each large one. */
static void get_objects(remote *r, const remote_batch *b, const remote_record *recs,
                        const size_t *good, size_t ngood)
{
    size_t idx[REMOTE_BATCH_MAX], n = 0;
    remote_record small[REMOTE_BATCH_MAX];
    uint64_t bytes = 0;
    for (size_t k = 0; k < ngood; k++) {
        if (recs[k].size > SMALL_OBJECT)
            continue;
        if (n > 0 && bytes + recs[k].size > SMALL_BYTES) {
            get_small(r, b, idx, small, n);
            n = 0;
            bytes = 0;
        }
        idx[n] = good[k];
        small[n++] = recs[k];
        bytes += recs[k].size;
    }
    if (n > 0)
        get_small(r, b, idx, small, n);
    for (size_t k = 0; k < ngood; k++) {
        if (recs[k].size <= SMALL_OBJECT)
            continue;
        object_get o;
        object_start(r, b, good[k], &recs[k], &o);
        acache_status st = r->tops->fetch(r->t, REMOTE_CAS, o.hex, object_stored_limit(recs[k].size),
                                          &o.in);
        b->done(b->ctx, good[k], object_get_end(&o, st, true));
    }
}

/* Action i alone, as get_into does it, for a transport that cannot ask
 * for several names at once. */
static void get_one(remote *r, const remote_batch *b, size_t i)
{
    char hex[ACACHE_ID_HEX_SIZE];
    record_buf rb = { .len = 0 };
    remote_sink rs = record_sink(&rb);
    remote_record rec;
    acache_id_to_hex(&b->actions[i], hex);
    acache_status st = remote_health(r, r->tops->fetch(r->t, REMOTE_AC, hex, sizeof rb.buf, &rs));
    st = record_take(r, &b->actions[i], st, rb.buf, rb.len, &rec);
    if (st != ACACHE_OK) {
        b->done(b->ctx, i, st);
        return;
    }
    if (give_inline(r, b, i, &rec))
        return;
    object_get o;
    object_start(r, b, i, &rec, &o);
    st = r->tops->fetch(r->t, REMOTE_CAS, o.hex, object_stored_limit(rec.size), &o.in);
    b->done(b->ctx, i, object_get_end(&o, st, true));
}

void remote_get_many(void *self, const remote_batch *b)
{
    remote *r = self;
    if (!r->cfg.can_read || atomic_load(&r->off) || b->n > REMOTE_BATCH_MAX) {
        for (size_t i = 0; i < b->n; i++)
            b->done(b->ctx, i,
                    b->n > REMOTE_BATCH_MAX ? set_error(ACACHE_EINVAL, "too many at once")
                                            : ACACHE_MISS);
        return;
    }
    if (!r->tops->fetch_many) {
        /* Nothing to gain from phases: each action whole, in order, so
         * the first is over after two round trips, not after every
         * record of the batch. */
        for (size_t i = 0; i < b->n; i++)
            get_one(r, b, i);
        return;
    }
    remote_record recs[REMOTE_BATCH_MAX];
    size_t good[REMOTE_BATCH_MAX];
    size_t ngood = get_records(r, b, recs, good);
    get_objects(r, b, recs, good, ngood);
}
