/*
 * format.c - the bytes a remote holds: action records and objects.
 *
 * An action record (under ac/<action hex>) is a Remote Execution API
 * ActionResult message, encoded by hand, so that bazel-remote, which checks
 * that what is PUT under /ac/ parses as one, takes it as is:
 *
 *   ActionResult {
 *     output_files[2]       { path[1] = "acache-output",
 *                             digest[2] = { hash[1] = <output hex>,
 *                                           size_bytes[2] = <size> },
 *                             contents[5] = <the object's bytes> }
 *     execution_metadata[9] { worker[1] = "acache" or
 *                                         "acache hmac-sha256=<64 hex>",
 *                             worker_completed_timestamp[4] =
 *                                 { seconds[1], nanos[2] } }
 *   }
 *
 * The signature is HMAC-SHA256 over "acache-record-v1", the action id,
 * the output id, the size and the time (8 bytes each, big-endian): over
 * what the record means, not its bytes, so a server that re-encodes the
 * message keeps it valid, and a record copied to another action's name
 * fails.
 *
 * contents (the Remote Execution API's inlined file) is there only for a
 * small object (inline=SIZE), whose raw bytes it holds, so that a reader
 * needs one request for the entry, not two; the object is stored under
 * cas/ as well, for readers that ignore the field (older acache versions
 * skip unknown fields). The signature does not cover contents: the
 * output id does, and a reader hashes contents before using them.
 *
 * An object (under cas/<output hex>) is its raw bytes, as bazel-remote
 * requires (it checks the SHA-256 of every upload), unless it starts with
 * the 8-byte frame magic below. Then it is a 17-byte header (magic, method
 * 0 = stored or 1 = zstd, original size as 8 bytes big-endian) followed by
 * the body. Writers frame an object when compressing it saves space, and
 * also when its raw bytes happen to begin with the magic, so that reading
 * is never ambiguous.
 *
 * This file only encodes and decodes: it never does I/O, and the decoder
 * never delivers more bytes than the record promised.
 */
#include "core/error.h"
#include "remote/remote.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const unsigned char FRAME_MAGIC[8] = { 0x89, 'A', 'C', 'A', 'C', 'H', 'E', 0x1a };
enum { METHOD_STORED = 0, METHOD_ZSTD = 1 };
enum { MODE_UNDECIDED, MODE_RAW, MODE_STORED, MODE_ZSTD };

#define OUTPUT_PATH "acache-output"
#define WORKER "acache"
#define SIG_PREFIX " hmac-sha256="
#define SIG_DOMAIN "acache-record-v1"
/* Decoded bytes handed down at a time when decompressing. */
#define ZBUF_SIZE ((size_t)64 << 10)
/* Compress only when it saves at least 1/32 of the bytes. */
#define MIN_SAVING_SHIFT 5

/* ------------------------------------------------------------------ */
/* Protocol buffer wire format: just what the record needs              */

typedef struct pb_out {
    unsigned char *p;
    size_t len, cap;
} pb_out;

static void pb_byte(pb_out *o, unsigned char b)
{
    if (o->len < o->cap)
        o->p[o->len] = b;
    o->len++;
}

static void pb_varint(pb_out *o, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(o, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    pb_byte(o, (unsigned char)v);
}

static void pb_bytes(pb_out *o, unsigned field, const void *data, size_t len)
{
    pb_varint(o, (uint64_t)field << 3 | 2);
    pb_varint(o, len);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    if (room > 0)
        memcpy(o->p + o->len, data, len < room ? len : room);
    o->len += len;
}

/* proto3 leaves zero values out. */
static void pb_uint(pb_out *o, unsigned field, uint64_t v)
{
    if (v == 0)
        return;
    pb_varint(o, (uint64_t)field << 3);
    pb_varint(o, v);
}

typedef struct pb_in {
    const unsigned char *p, *end;
} pb_in;

static bool pb_read_varint(pb_in *in, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && in->p < in->end; shift += 7) {
        unsigned char b = *in->p++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* One field: its number and wire type; for length-delimited fields the
 * bytes (sub), for varints the value. */
typedef struct pb_field {
    unsigned num, wire;
    pb_in sub;
    uint64_t v;
} pb_field;

/* Reads the next field of in into f (fixed-size ones are skipped over).
 * 1: a field; 0: the end of in; -1: malformed. */
static int pb_next(pb_in *in, pb_field *f)
{
    uint64_t key, len;
    if (in->p >= in->end)
        return 0;
    if (!pb_read_varint(in, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return -1;
    f->num = (unsigned)(key >> 3);
    f->wire = (unsigned)(key & 7);
    f->v = 0;
    f->sub = (pb_in){ NULL, NULL };
    switch (f->wire) {
    case 0:
        return pb_read_varint(in, &f->v) ? 1 : -1;
    case 1:
    case 5: {
        size_t n = f->wire == 1 ? 8 : 4;
        if ((size_t)(in->end - in->p) < n)
            return -1;
        in->p += n;
        return 1;
    }
    case 2:
        if (!pb_read_varint(in, &len) || len > (uint64_t)(in->end - in->p))
            return -1;
        f->sub.p = in->p;
        f->sub.end = in->p + len;
        in->p += len;
        return 1;
    default: /* groups: never in our records */
        return -1;
    }
}

/* ------------------------------------------------------------------ */
/* Action records                                                       */

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static bool record_mac(const acache_id *action, const remote_record *rec, const unsigned char *key,
                       size_t keylen, unsigned char mac[32])
{
    unsigned char msg[sizeof SIG_DOMAIN - 1 + 2 * ACACHE_ID_SIZE + 16];
    unsigned char *p = msg;
    memcpy(p, SIG_DOMAIN, sizeof SIG_DOMAIN - 1);
    p += sizeof SIG_DOMAIN - 1;
    memcpy(p, action->bytes, ACACHE_ID_SIZE);
    p += ACACHE_ID_SIZE;
    memcpy(p, rec->output.bytes, ACACHE_ID_SIZE);
    p += ACACHE_ID_SIZE;
    put_be64(p, rec->size);
    put_be64(p + 8, (uint64_t)rec->time_ns);
    unsigned int maclen = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, msg, sizeof msg, mac, &maclen) != NULL &&
           maclen == 32;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* OutputFile { path, digest, contents }: into o, or only counted when o
 * has no room (cap 0). */
static void put_output_file(pb_out *o, const unsigned char *digest, size_t digest_len,
                            const remote_record *rec)
{
    pb_bytes(o, 1, OUTPUT_PATH, sizeof OUTPUT_PATH - 1);
    pb_bytes(o, 2, digest, digest_len);
    if (rec->contents && rec->size <= REMOTE_INLINE_MAX)
        pb_bytes(o, 5, rec->contents, (size_t)rec->size);
}

size_t record_encode(const acache_id *action, const remote_record *rec, const unsigned char *key,
                     size_t keylen, unsigned char *out)
{
    unsigned char digest[128], ts[32], meta[160];
    char hex[ACACHE_ID_HEX_SIZE];
    char worker[sizeof WORKER + sizeof SIG_PREFIX + 64] = WORKER;
    pb_out o;

    acache_id_to_hex(&rec->output, hex);
    o = (pb_out){ digest, 0, sizeof digest };
    pb_bytes(&o, 1, hex, 64);
    pb_uint(&o, 2, rec->size);
    size_t digest_len = o.len;

    o = (pb_out){ NULL, 0, 0 };
    put_output_file(&o, digest, digest_len, rec);
    size_t file_len = o.len;

    o = (pb_out){ ts, 0, sizeof ts };
    pb_uint(&o, 1, (uint64_t)(rec->time_ns / 1000000000));
    pb_uint(&o, 2, (uint64_t)(rec->time_ns % 1000000000));
    size_t ts_len = o.len;

    unsigned char mac[32];
    if (keylen > 0 && record_mac(action, rec, key, keylen, mac)) {
        strcat(worker, SIG_PREFIX);
        hex_encode(mac, sizeof mac, worker + strlen(worker));
    }
    o = (pb_out){ meta, 0, sizeof meta };
    pb_bytes(&o, 1, worker, strlen(worker));
    pb_bytes(&o, 4, ts, ts_len);
    size_t meta_len = o.len;

    o = (pb_out){ out, 0, REMOTE_RECORD_MAX };
    pb_varint(&o, 2 << 3 | 2);
    pb_varint(&o, file_len);
    put_output_file(&o, digest, digest_len, rec);
    pb_bytes(&o, 9, meta, meta_len);
    return o.len;
}

/* Digest { hash, size_bytes } */
static bool parse_digest(pb_in in, remote_record *rec)
{
    bool have_hash = false;
    pb_field f;
    int more;
    rec->size = 0;
    while ((more = pb_next(&in, &f)) > 0) {
        if (f.num == 1 && f.wire == 2) {
            size_t n = (size_t)(f.sub.end - f.sub.p);
            if (acache_id_from_hex((const char *)f.sub.p, n, &rec->output) != ACACHE_OK)
                return false;
            have_hash = true;
        } else if (f.num == 2 && f.wire == 0) {
            if (f.v > INT64_MAX)
                return false;
            rec->size = f.v;
        }
    }
    return more == 0 && have_hash;
}

/* OutputFile { path, digest, contents }: contents only when they are as
 * long as the digest says (else the reader fetches the object). */
static bool parse_output_file(pb_in in, remote_record *rec)
{
    bool have_digest = false;
    pb_in contents = { NULL, NULL };
    pb_field f;
    int more;
    while ((more = pb_next(&in, &f)) > 0) {
        if (f.num == 2 && f.wire == 2) {
            if (!parse_digest(f.sub, rec))
                return false;
            have_digest = true;
        } else if (f.num == 5 && f.wire == 2) {
            contents = f.sub;
        }
    }
    rec->contents = NULL;
    if (have_digest && contents.p && (uint64_t)(contents.end - contents.p) == rec->size)
        rec->contents = contents.p;
    return more == 0 && have_digest;
}

/* Timestamp { seconds, nanos } */
static bool parse_timestamp(pb_in in, int64_t *ns)
{
    uint64_t secs = 0, nanos = 0;
    pb_field f;
    int more;
    while ((more = pb_next(&in, &f)) > 0) {
        if (f.num == 1 && f.wire == 0)
            secs = f.v;
        else if (f.num == 2 && f.wire == 0)
            nanos = f.v;
    }
    if (more < 0 || secs > INT64_MAX / 1000000000 - 1 || nanos >= 1000000000)
        return false;
    *ns = (int64_t)(secs * 1000000000 + nanos);
    return true;
}

/* ExecutedActionMetadata { worker, worker_completed_timestamp } */
static bool parse_metadata(pb_in in, remote_record *rec, pb_in *worker)
{
    bool have_worker = false;
    pb_field f;
    int more;
    rec->time_ns = 0;
    while ((more = pb_next(&in, &f)) > 0) {
        if (f.num == 1 && f.wire == 2) {
            *worker = f.sub;
            have_worker = true;
        } else if (f.num == 4 && f.wire == 2 && !parse_timestamp(f.sub, &rec->time_ns)) {
            return false;
        }
    }
    return more == 0 && have_worker;
}

static bool hex_decode(const unsigned char *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            unsigned char c = in[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return false;
            v = v << 4 | d;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

acache_status record_decode(const unsigned char *buf, size_t len, const acache_id *action,
                            const unsigned char *key, size_t keylen, remote_record *out)
{
    pb_in in = { buf, buf + len }, worker = { NULL, NULL };
    int files = 0, more;
    bool have_meta = false;
    pb_field f;
    while ((more = pb_next(&in, &f)) > 0) {
        if (f.num == 2 && f.wire == 2) {
            if (++files > 1 || !parse_output_file(f.sub, out))
                return set_error(ACACHE_CORRUPT, "action record does not name one output");
        } else if (f.num == 9 && f.wire == 2) {
            if (!parse_metadata(f.sub, out, &worker))
                return set_error(ACACHE_CORRUPT, "action record metadata is malformed");
            have_meta = true;
        }
    }
    if (more < 0)
        return set_error(ACACHE_CORRUPT, "action record is not a valid message");
    size_t wlen = have_meta ? (size_t)(worker.end - worker.p) : 0;
    if (files != 1 || wlen < sizeof WORKER - 1 || memcmp(worker.p, WORKER, sizeof WORKER - 1) != 0)
        return set_error(ACACHE_CORRUPT, "not an acache action record");
    if (keylen == 0)
        return ACACHE_OK;

    /* With a key, only a record signed with it for this action counts. */
    const size_t siglen = sizeof SIG_PREFIX - 1;
    const unsigned char *sig = worker.p + sizeof WORKER - 1;
    unsigned char got[32], want[32];
    if (wlen != sizeof WORKER - 1 + siglen + 64 || memcmp(sig, SIG_PREFIX, siglen) != 0)
        return set_error(ACACHE_CORRUPT, "action record is not signed, and a key is set");
    if (!hex_decode(sig + siglen, 32, got) || !record_mac(action, out, key, keylen, want) ||
        CRYPTO_memcmp(got, want, sizeof want) != 0)
        return set_error(ACACHE_CORRUPT, "action record signature does not match the key");
    return ACACHE_OK;
}

/* ------------------------------------------------------------------ */
/* Objects                                                              */

uint64_t object_stored_limit(uint64_t size)
{
    /* Writers frame only when that is no larger than raw + header. */
    return size > UINT64_MAX - REMOTE_OBJ_HEADER ? UINT64_MAX : size + REMOTE_OBJ_HEADER;
}

static void frame_header(unsigned char *h, int method, uint64_t size)
{
    memcpy(h, FRAME_MAGIC, sizeof FRAME_MAGIC);
    h[8] = (unsigned char)method;
    put_be64(h + 9, size);
}

acache_status object_encode(const void *bytes, size_t size, int level, void *cctx,
                            remote_encoded *out)
{
    out->data = bytes;
    out->len = size;
    out->owned = NULL;
    if (level > 0 && size >= 64) {
        size_t bound = ZSTD_compressBound(size);
        unsigned char *buf = malloc(REMOTE_OBJ_HEADER + bound);
        if (!buf)
            return set_error(ACACHE_ENOMEM, "out of memory compressing %zu bytes", size);
        ZSTD_CCtx *own = NULL;
        if (!cctx)
            cctx = own = ZSTD_createCCtx();
        size_t n = cctx ? ZSTD_compressCCtx(cctx, buf + REMOTE_OBJ_HEADER, bound, bytes, size, level)
                        : (size_t)-1;
        ZSTD_freeCCtx(own);
        if (!ZSTD_isError(n) && n + REMOTE_OBJ_HEADER <= size - (size >> MIN_SAVING_SHIFT)) {
            frame_header(buf, METHOD_ZSTD, size);
            out->data = out->owned = buf;
            out->len = REMOTE_OBJ_HEADER + n;
            return ACACHE_OK;
        }
        free(buf);
    }
    if (size >= sizeof FRAME_MAGIC && memcmp(bytes, FRAME_MAGIC, sizeof FRAME_MAGIC) == 0) {
        unsigned char *buf = malloc(REMOTE_OBJ_HEADER + size);
        if (!buf)
            return set_error(ACACHE_ENOMEM, "out of memory framing %zu bytes", size);
        frame_header(buf, METHOD_STORED, size);
        memcpy(buf + REMOTE_OBJ_HEADER, bytes, size);
        out->data = out->owned = buf;
        out->len = REMOTE_OBJ_HEADER + size;
    }
    return ACACHE_OK;
}

bool object_is_raw(const void *data, size_t len)
{
    return len < sizeof FRAME_MAGIC || memcmp(data, FRAME_MAGIC, sizeof FRAME_MAGIC) != 0;
}

void object_encoded_free(remote_encoded *e)
{
    free(e->owned);
    e->owned = NULL;
}

void object_decoder_init(object_decoder *d, uint64_t size, const remote_sink *down)
{
    memset(d, 0, sizeof *d);
    d->down = down;
    d->size = size;
    d->mode = MODE_UNDECIDED;
}

static acache_status deliver(object_decoder *d, const void *data, size_t len)
{
    if (len == 0)
        return ACACHE_OK;
    if (len > d->size - d->out)
        return set_error(ACACHE_CORRUPT, "object is longer than its record says (%" PRIu64 " bytes)",
                         d->size);
    d->out += len;
    return d->down->write(d->down->ctx, data, len);
}

static acache_status inflate(object_decoder *d, const void *data, size_t len)
{
    ZSTD_inBuffer in = { data, len, 0 };
    while (in.pos < in.size) {
        if (d->frame_done)
            return set_error(ACACHE_CORRUPT, "bytes after the end of a compressed object");
        ZSTD_outBuffer out = { d->buf, ZBUF_SIZE, 0 };
        size_t r = ZSTD_decompressStream(d->dctx, &out, &in);
        if (ZSTD_isError(r))
            return set_error(ACACHE_CORRUPT, "compressed object does not decompress: %s",
                             ZSTD_getErrorName(r));
        if (r == 0)
            d->frame_done = true;
        acache_status st = deliver(d, d->buf, out.pos);
        if (st != ACACHE_OK)
            return st;
    }
    return ACACHE_OK;
}

/* Decides what the object is once its first bytes are in. */
static acache_status decide(object_decoder *d)
{
    if (memcmp(d->head, FRAME_MAGIC, sizeof FRAME_MAGIC) != 0) {
        d->mode = MODE_RAW;
        return deliver(d, d->head, d->headlen);
    }
    if (d->headlen < REMOTE_OBJ_HEADER)
        return ACACHE_OK; /* the rest of the header is still to come */
    uint64_t size = get_be64(d->head + 9);
    if (d->size == OBJECT_SIZE_ANY)
        d->size = size;
    if (size != d->size)
        return set_error(ACACHE_CORRUPT, "object header says %" PRIu64 " bytes, its record %" PRIu64,
                         size, d->size);
    if (d->head[8] == METHOD_STORED) {
        d->mode = MODE_STORED;
        return ACACHE_OK;
    }
    if (d->head[8] != METHOD_ZSTD)
        return set_error(ACACHE_CORRUPT, "object header names unknown method %u", d->head[8]);
    d->mode = MODE_ZSTD;
    d->dctx = ZSTD_createDCtx();
    d->buf = malloc(ZBUF_SIZE);
    if (!d->dctx || !d->buf)
        return set_error(ACACHE_ENOMEM, "out of memory for decompression");
    /* The window a frame asks for is allocated: keep it bounded. */
    ZSTD_DCtx_setParameter(d->dctx, ZSTD_d_windowLogMax, 27);
    return ACACHE_OK;
}

static acache_status decoder_write(void *ctx, const void *data, size_t len)
{
    object_decoder *d = ctx;
    const unsigned char *p = data;
    /* Raw bytes that arrive with their first bytes whole go down as they
     * came, in one piece, not the head apart from the rest. */
    if (d->mode == MODE_UNDECIDED && d->headlen == 0 && len >= sizeof FRAME_MAGIC &&
        memcmp(p, FRAME_MAGIC, sizeof FRAME_MAGIC) != 0) {
        d->mode = MODE_RAW;
        return deliver(d, p, len);
    }
    while (d->mode == MODE_UNDECIDED && len > 0) {
        d->head[d->headlen++] = *p++;
        len--;
        if (d->headlen == sizeof FRAME_MAGIC || d->headlen == REMOTE_OBJ_HEADER) {
            acache_status st = decide(d);
            if (st != ACACHE_OK)
                return st;
        }
    }
    if (len == 0)
        return ACACHE_OK;
    if (d->mode == MODE_ZSTD)
        return inflate(d, p, len);
    return deliver(d, p, len);
}

remote_sink object_decoder_sink(object_decoder *d)
{
    return (remote_sink){ decoder_write, d };
}

acache_status object_decoder_finish(object_decoder *d)
{
    acache_status st = ACACHE_OK;
    if (d->mode == MODE_UNDECIDED) {
        /* Shorter than the magic, or a header cut short. */
        if (d->headlen >= sizeof FRAME_MAGIC)
            return set_error(ACACHE_CORRUPT, "object ends inside its header");
        d->mode = MODE_RAW;
        st = deliver(d, d->head, d->headlen);
        if (st != ACACHE_OK)
            return st;
    }
    if (d->mode == MODE_ZSTD && !d->frame_done)
        return set_error(ACACHE_CORRUPT, "compressed object is cut short");
    if (d->out != d->size && d->size != OBJECT_SIZE_ANY)
        return set_error(ACACHE_CORRUPT, "object has %" PRIu64 " bytes, its record says %" PRIu64,
                         d->out, d->size);
    return ACACHE_OK;
}

void object_decoder_free(object_decoder *d)
{
    ZSTD_freeDCtx(d->dctx);
    free(d->buf);
    d->dctx = NULL;
    d->buf = NULL;
}
