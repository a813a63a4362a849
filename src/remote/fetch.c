/*
 * fetch.c - reading a remote: an action record, checked (its signature,
 * its action id) before anything it says is believed, then the object it
 * names, decoded and streamed to the caller's sink, which checks it
 * against its id (remote_verdict says how that went). An empty object, or
 * one the record carries (inline=), needs no second request: its bytes
 * are hashed here before the sink sees them. remote_get is the
 * same for a remote used alone: the bytes go to memory and are checked
 * here.
 *
 * Rules: never hand out bytes that were not checked against their id;
 * never size an allocation by a number from the server before it has been
 * checked against max-object; a failure of the caller's sink is the
 * caller's, never counted against the remote's health; an object that
 * does not match its id is removed (when writable), since left in place it
 * would stop every later upload of it.
 */
#include "core/error.h"
#include "remote/remote_store.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static acache_status buf_write(void *ctx, const void *data, size_t len)
{
    record_buf *b = ctx;
    if (len > sizeof b->buf - b->len)
        return set_error(ACACHE_CORRUPT, "action record is too long");
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return ACACHE_OK;
}

remote_sink record_sink(record_buf *b)
{
    return (remote_sink){ buf_write, b };
}

/* Passes bytes on and remembers a failure of the caller's sink, which is
 * the caller's problem and not the remote's. */
static acache_status guard_write(void *ctx, const void *data, size_t len)
{
    object_get *o = ctx;
    o->sink_st = o->down->write(o->down->ctx, data, len);
    return o->sink_st;
}

/* Hashes what streams by. */
static acache_status hash_write(void *ctx, const void *data, size_t len)
{
    return EVP_DigestUpdate(ctx, data, len) ? ACACHE_OK : set_error(ACACHE_EIO, "SHA-256 failed");
}

/*
 * Whether the object cas/<hex> fails its hash: fetched again on its own,
 * whatever size its record gave (a record without a signature may lie
 * about the size of a good object, and a reader must not delete that
 * object for it), decoded, and hashed as it streams by. False when it
 * cannot tell (a network error): nothing is deleted on a guess.
 */
static bool object_fails_hash(remote *r, const char *hex, const acache_id *output)
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (!sha || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(sha);
        return false;
    }
    remote_sink hs = { hash_write, sha };
    object_decoder d;
    object_decoder_init(&d, OBJECT_SIZE_ANY, &hs);
    remote_sink ds = object_decoder_sink(&d);
    acache_status st = r->tops->fetch(r->t, REMOTE_CAS, hex, object_stored_limit(r->cfg.max_object), &ds);
    if (st == ACACHE_OK)
        st = object_decoder_finish(&d);
    object_decoder_free(&d);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bool fails = st == ACACHE_CORRUPT;
    if (st == ACACHE_OK)
        fails = !EVP_DigestFinal_ex(sha, md, &mdlen) || mdlen != ACACHE_ID_SIZE ||
                memcmp(md, output->bytes, ACACHE_ID_SIZE) != 0;
    EVP_MD_CTX_free(sha);
    return fails;
}

acache_status record_take(remote *r, const acache_id *action, acache_status st,
                          const unsigned char *buf, size_t len, remote_record *rec)
{
    char hex[ACACHE_ID_HEX_SIZE], why[512];
    if (st == ACACHE_MISS) {
        BUMP(r, misses);
        return ACACHE_MISS;
    }
    if (st != ACACHE_OK && st != ACACHE_CORRUPT)
        return st;
    if (st == ACACHE_OK)
        st = record_decode(buf, len, action, r->cfg.key, r->cfg.keylen, rec);
    if (st != ACACHE_OK) {
        BUMP(r, rejected);
        snprintf(why, sizeof why, "%s", acache_last_error());
        acache_id_to_hex(action, hex);
        return set_error(ACACHE_CORRUPT, "remote %s: ac/%s refused: %s", r->name, hex, why);
    }
    if (rec->size > r->cfg.max_object) {
        BUMP(r, misses);
        return ACACHE_MISS;
    }
    return ACACHE_OK;
}

void object_get_begin(object_get *o, remote *r, const remote_record *rec, const remote_sink *sink)
{
    o->r = r;
    o->rec = *rec;
    acache_id_to_hex(&rec->output, o->hex);
    o->down = sink;
    o->sink_st = ACACHE_OK;
    o->guard = (remote_sink){ guard_write, o };
    object_decoder_init(&o->d, rec->size, &o->guard);
    o->in = object_decoder_sink(&o->d);
}

acache_status object_get_end(object_get *o, acache_status st, bool count)
{
    remote *r = o->r;
    char why[512];
    if (st == ACACHE_OK)
        st = object_decoder_finish(&o->d);
    object_decoder_free(&o->d);
    if (o->sink_st != ACACHE_OK)
        return o->sink_st;
    if (count)
        st = remote_health(r, st);
    if (st == ACACHE_MISS) {
        /* The record outlived its object (evicted by the server). */
        BUMP(r, misses);
        return ACACHE_MISS;
    }
    if (st == ACACHE_CORRUPT) {
        snprintf(why, sizeof why, "%s", acache_last_error());
        /* Left in place, a bad object would stop every later upload of
         * it; but it goes only if it fails its own hash: a record that
         * nobody signed may be what is wrong. */
        bool removed = r->cfg.can_write && object_fails_hash(r, o->hex, &o->rec.output);
        if (removed)
            remote_health(r, r->tops->remove(r->t, REMOTE_CAS, o->hex));
        BUMP(r, rejected);
        return set_error(ACACHE_CORRUPT, "remote %s: cas/%s refused%s: %s", r->name, o->hex,
                         removed ? " and removed" : "", why);
    }
    return st;
}

bool record_inline(remote *r, const remote_record *rec)
{
    if (rec->size > 0 && !rec->contents)
        return false;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const void *bytes = rec->size > 0 ? (const void *)rec->contents : (const void *)"";
    bool good = EVP_Digest(bytes, (size_t)rec->size, md, &mdlen, EVP_sha256(), NULL) &&
                mdlen == ACACHE_ID_SIZE && memcmp(md, rec->output.bytes, ACACHE_ID_SIZE) == 0;
    /* Contents that are not the object cost a fetch of the object, never
     * its removal: the record is what is wrong. */
    if (!good && rec->size > 0)
        BUMP(r, rejected);
    return good;
}

acache_status record_inline_give(const remote_record *rec, const remote_sink *sink)
{
    return rec->size > 0 ? sink->write(sink->ctx, rec->contents, (size_t)rec->size) : ACACHE_OK;
}

void record_meta(const remote_record *rec, acache_result *meta)
{
    meta->output_id = rec->output;
    meta->size = rec->size;
    meta->time_ns = rec->time_ns;
    meta->path[0] = '\0';
}

acache_status remote_get_into(void *self, const acache_id *action, acache_result *meta,
                              const remote_sink *sink)
{
    remote *r = self;
    char hex[ACACHE_ID_HEX_SIZE];
    if (!r->cfg.can_read || atomic_load(&r->off))
        return ACACHE_MISS;
    acache_id_to_hex(action, hex);
    record_buf rb = { .len = 0 };
    remote_sink rs = record_sink(&rb);
    acache_status st = remote_health(r, r->tops->fetch(r->t, REMOTE_AC, hex, sizeof rb.buf, &rs));
    remote_record rec;
    if ((st = record_take(r, action, st, rb.buf, rb.len, &rec)) != ACACHE_OK)
        return st;
    record_meta(&rec, meta);
    if (record_inline(r, &rec))
        return record_inline_give(&rec, sink);
    object_get o;
    object_get_begin(&o, r, &rec, sink);
    st = r->tops->fetch(r->t, REMOTE_CAS, o.hex, object_stored_limit(rec.size), &o.in);
    return object_get_end(&o, st, true);
}

void remote_verdict(void *self, const acache_result *meta, bool good)
{
    remote *r = self;
    if (good) {
        BUMP(r, hits);
        return;
    }
    BUMP(r, rejected);
    if (r->cfg.can_write && !atomic_load(&r->off)) {
        char hex[ACACHE_ID_HEX_SIZE];
        acache_id_to_hex(&meta->output_id, hex);
        remote_health(r, r->tops->remove(r->t, REMOTE_CAS, hex));
    }
}

/* A get on the remote alone: the bytes go to memory and are checked here. */
typedef struct mem_sink {
    const acache_result *meta;
    unsigned char *buf;
    size_t len;
} mem_sink;

static acache_status mem_write(void *ctx, const void *data, size_t len)
{
    mem_sink *m = ctx;
    if (!m->buf && !(m->buf = malloc((size_t)m->meta->size)))
        return set_error(ACACHE_ENOMEM, "out of memory for a %llu-byte object",
                         (unsigned long long)m->meta->size);
    /* The decoder never delivers more than meta->size bytes. */
    memcpy(m->buf + m->len, data, len);
    m->len += len;
    return ACACHE_OK;
}

static void free_release(void *ctx, const void *data, uint64_t size)
{
    (void)data;
    (void)size;
    free(ctx);
}

acache_status remote_get(void *self, const acache_id *action, unsigned flags,
                         acache_result *res)
{
    remote *r = self;
    if (flags & ACACHE_GET_LOCAL)
        return ACACHE_MISS;
    mem_sink m = { res, NULL, 0 };
    remote_sink sink = { mem_write, &m };
    acache_status st = remote_get_into(r, action, res, &sink);
    if (st != ACACHE_OK) {
        free(m.buf);
        return st;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bool good = EVP_Digest(m.buf ? m.buf : (unsigned char *)"", m.len, md, &mdlen, EVP_sha256(),
                           NULL) &&
                mdlen == ACACHE_ID_SIZE && memcmp(md, res->output_id.bytes, ACACHE_ID_SIZE) == 0;
    remote_verdict(r, res, good);
    if (!good) {
        free(m.buf);
        return set_error(ACACHE_CORRUPT, "remote %s: object does not match its id; removed",
                         r->name);
    }
    if (flags & ACACHE_GET_DATA) {
        res->data = m.buf ? (const void *)m.buf : (const void *)"";
        res->release_fn_ = m.buf ? free_release : NULL;
        res->release_ctx_ = m.buf;
    } else {
        free(m.buf);
    }
    return ACACHE_OK;
}

/* The prefetch hook: how many entries of a session manifest to fetch ahead. */
unsigned remote_prefetch(void *self)
{
    return ((remote *)self)->cfg.prefetch;
}
