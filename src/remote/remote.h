/*
 * remote.h - what the remote backends (Redis, HTTP) share.
 *
 * A remote store is two layers. A *transport* (redis.c,
 * http.c) moves bytes under a name: fetch, exists, store, remove,
 * in one of two namespaces, "ac" (action records) and "cas" (objects). The
 * *remote* layer (remote.c) builds a store on any transport: it encodes
 * and checks action records (format.c), frames and compresses
 * objects, keeps the remote's health (consecutive failures switch it off),
 * and uploads in the background from a bounded queue.
 *
 * The tier combinator talks to a remote through remote_ops (the `remote`
 * field of its backend_ops): it streams a remote hit straight into a put
 * on the home tier, which verifies it, and queues uploads that are read
 * back from the home tier's committed files.
 *
 * Nothing here may block on the network outside a call that has a timeout,
 * print, or hand a caller bytes that were not checked against their id.
 */
#ifndef ACACHE_REMOTE_H
#define ACACHE_REMOTE_H

#include "core/backend.h"

#include <pthread.h>

/* Internal status from a transport: the server refused a write (HTTP 403,
 * 405, 413; a Redis error reply such as -READONLY or -OOM). The server is
 * alive, so this is not a failure that switches the remote off for reads;
 * enough of them in a row switch off uploads. */
#define REMOTE_REFUSED ((acache_status)3)
/* Internal status of one name of a fetch_many that was not answered: the
 * exchange ended before it (a reply refused unread breaks a Redis
 * connection). The remote layer fetches it again on its own. */
#define REMOTE_UNTRIED ((acache_status)4)
/* The most names asked for together (fetch_many, get_many). */
#define REMOTE_BATCH_MAX 32

/* The slowest a transfer may move: an operation's deadline is its timeout
 * plus the time its bytes take at this rate. */
#define REMOTE_MIN_RATE_BYTES_PER_MS 1000

/* The largest object a record may carry inside it (inline=SIZE; its
 * default and its most). */
#define REMOTE_INLINE_MAX ((size_t)16 << 10)
/* Longest encoded action record; a longer value is not one of ours. */
#define REMOTE_RECORD_MAX (512 + REMOTE_INLINE_MAX)
/* The most session-prefetch threads a remote may ask for (prefetch=N); the
 * tier combinator's prefetch has room for this many. */
#define REMOTE_PREFETCH_MAX 64
/* Size of the frame header in front of a compressed (or escaped) object. */
#define REMOTE_OBJ_HEADER 17

typedef enum remote_ns { REMOTE_AC, REMOTE_CAS } remote_ns;

/* Receives bytes as a transport fetches them. A status other than
 * ACACHE_OK stops the fetch, which then returns that status. */
typedef struct remote_sink {
    acache_status (*write)(void *ctx, const void *data, size_t len);
    void *ctx;
} remote_sink;

/* The operations a transport implements. Every call is bounded by the
 * remote's timeouts and safe to make from several threads at once. Status:
 * ACACHE_OK; ACACHE_MISS (no such name); ACACHE_CORRUPT (a value longer
 * than `limit`); REMOTE_REFUSED (store, remove); a sink's own status; or an
 * error (< 0) with its message set: the server could not be reached or
 * did not answer in time, which counts towards switching the remote off. */
typedef struct transport_ops {
    /* Streams the value of name into sink; more than limit bytes is
     * ACACHE_CORRUPT. */
    acache_status (*fetch)(void *t, remote_ns ns, const char *hex, uint64_t limit,
                           const remote_sink *sink);
    /* ACACHE_OK if name has a value, ACACHE_MISS if not. */
    acache_status (*exists)(void *t, remote_ns ns, const char *hex);
    /* Sets the value of name to data[0..len). Gives up early, as an error,
     * once *cancel is set (a flush ran out of time). */
    acache_status (*store)(void *t, remote_ns ns, const char *hex, const void *data,
                           size_t len, const atomic_bool *cancel);
    /* Optional (NULL: the remote layer calls fetch once per name): the
     * values of n (<= REMOTE_BATCH_MAX) names of one namespace, asked for
     * together (Redis: pipelined GETs, one round trip), value i streamed
     * into sinks[i] and its status, as fetch would give it, in st[i]. The
     * caller sets every st[i] to REMOTE_UNTRIED; names the exchange did
     * not reach keep it. Returns an error (< 0) only when the exchange
     * itself failed (the server, not one name): that counts once. */
    acache_status (*fetch_many)(void *t, remote_ns ns, const char *const *hexes, size_t n,
                                const uint64_t *limits, const remote_sink *sinks,
                                acache_status *st);
    /* Removes name; ACACHE_MISS if there was none (when the server says). */
    acache_status (*remove)(void *t, remote_ns ns, const char *hex);
    void (*close)(void *t);
    /* Optional: what acache_remote_info.detail shows (s3: region,
     * endpoint, where the credentials came from; never a secret). */
    void (*describe)(void *t, char *out, size_t size);
} transport_ops;

/* What every remote spec may set, parsed by remote_config_parse(). */
typedef struct remote_config {
    bool can_read, can_write;       /* mode=rw|ro|wo */
    int zstd_level;                 /* compress=zstd[:LEVEL]; 0 = off */
    int64_t timeout_ns;             /* timeout= */
    int64_t connect_timeout_ns;     /* connect-timeout= */
    int64_t flush_timeout_ns;       /* flush-timeout= */
    unsigned max_failures;          /* failures= */
    size_t queue_max;               /* upload-queue= */
    uint64_t max_object;            /* max-object= */
    unsigned prefetch;              /* prefetch= (threads; 0: off) */
    size_t inline_max;              /* inline= (objects this small ride in their record) */
    unsigned char key[1024];        /* key-file= or $ACACHE_REMOTE_KEY_FILE */
    size_t keylen;                  /* 0: records are neither signed nor checked */
} remote_config;

/* Parses the options above out of s (marking them used). */
acache_status remote_config_parse(spec *s, remote_config *cfg);

/* Builds a remote store on transport t (taking ownership of t, also on
 * failure). name is what messages and acache_remotes() show. */
acache_status remote_create(const remote_config *cfg, const transport_ops *tops, void *t,
                            const char *name, void **self, const backend_ops **ops);

/* Writes spec text into out without the options and through
 * acache_redact(): any "user:password@" shown as "***@". */
void remote_display_name(const char *scheme, const char *rest, char *out, size_t size);

/* Sends one line to the application's log function, if it set one. */
void remote_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A get_many: actions[0..n), and what to do as each goes. */
typedef struct remote_batch {
    const acache_id *actions;
    size_t n;                   /* at most REMOTE_BATCH_MAX */
    /* The record of actions[i] was checked (meta: output_id, size,
     * time_ns): the sink its bytes go to. Called at most once per i. */
    const remote_sink *(*sink_for)(void *ctx, size_t i, const acache_result *meta);
    /* actions[i] is over, with what get_into would have returned; called
     * exactly once per i, as soon as it is over. */
    void (*done)(void *ctx, size_t i, acache_status st);
    void *ctx;
} remote_batch;

/*
 * The extra operations of a remote store (backend_ops.remote), used by the
 * tier combinator.
 */
typedef struct remote_ops {
    /* Looks up action: fills meta's output_id, size and time_ns, then
     * streams the object's bytes (decoded) into sink. The bytes are NOT yet
     * checked: the caller hashes them and reports with verdict(). Returns
     * ACACHE_OK, ACACHE_MISS (also when switched off or write-only),
     * ACACHE_CORRUPT (a record refused), a sink status, or an error. */
    acache_status (*get_into)(void *self, const acache_id *action, acache_result *meta,
                              const remote_sink *sink);
    /* get_into for several actions, in fewer round trips where the
     * transport allows (fetch_many): their records together, then the
     * objects of the small ones together, then each large one. Every
     * record and object is checked as get_into checks it. */
    void (*get_many)(void *self, const remote_batch *b);
    /* After a get_into (or a get_many done) that returned ACACHE_OK: whether the bytes matched
     * meta->output_id. A mismatch is counted and the object removed from
     * the remote (unless read-only). */
    void (*verdict)(void *self, const acache_result *meta, bool good);
    /* Queues an upload of the committed local file at path and returns at
     * once: ACACHE_OK if queued, ACACHE_MISS if not taken (read-only,
     * switched off, queue full: counted as dropped). */
    acache_status (*put_file)(void *self, const acache_id *action, const acache_id *output,
                              uint64_t size, int64_t time_ns, const char *path);
    /* Waits for queued uploads until start_ns plus the flush-timeout; what
     * is left then is dropped and counted. */
    void (*flush)(void *self, int64_t start_ns);
    void (*info)(void *self, acache_remote_info *out);
    /* Its prefetch= option: session prefetch threads (prefetch.h), 0 for
     * none. */
    unsigned (*prefetch)(void *self);
} remote_ops;

/* ------------------------------------------------------------------ */
/* Record and object formats (format.c)                          */

typedef struct remote_record {
    acache_id output;
    uint64_t size;
    int64_t time_ns;
    /* The object's own bytes (size of them) when the record carries them
     * (OutputFile.contents), else NULL. Decoded: they point into the
     * record's buffer and are not yet checked against output. */
    const unsigned char *contents;
} remote_record;

/* Encodes the record of action into out (REMOTE_RECORD_MAX bytes), signed
 * with key when keylen > 0, carrying rec->contents when set (at most
 * REMOTE_INLINE_MAX bytes). Returns its length. */
size_t record_encode(const acache_id *action, const remote_record *rec, const unsigned char *key,
                     size_t keylen, unsigned char *out);

/* Decodes a record fetched for action. ACACHE_CORRUPT (message set) when
 * it is malformed, names another action, or, with a key, carries no valid
 * signature. */
acache_status record_decode(const unsigned char *buf, size_t len, const acache_id *action,
                            const unsigned char *key, size_t keylen, remote_record *out);

/* An object as it is sent: raw, or a frame header and then zstd (or, for
 * raw bytes that happen to begin with the frame magic, the bytes as they
 * are). data points into the caller's bytes or into owned. */
typedef struct remote_encoded {
    const void *data;
    size_t len;
    void *owned;
} remote_encoded;

/* Encodes size bytes for upload, compressed with cctx (a ZSTD_CCtx, may
 * be NULL: one is made) when level > 0 and that saves space. */
acache_status object_encode(const void *bytes, size_t size, int level, void *cctx,
                            remote_encoded *out);
void object_encoded_free(remote_encoded *e);

/* Whether an object's stored form is its raw bytes (no frame header): then
 * its SHA-256 is its output id, which a transport may send as the hash of
 * the body (S3's x-amz-content-sha256) without hashing it again. */
bool object_is_raw(const void *data, size_t len);

/* The most bytes the stored form of a size-byte object may take. */
uint64_t object_stored_limit(uint64_t size);

/* Turns the stored form back into the object's bytes as it streams by,
 * passing them to `down` and checking that there are exactly `size`. */
typedef struct object_decoder {
    const remote_sink *down;
    uint64_t size, out;             /* expected and delivered bytes */
    unsigned char head[REMOTE_OBJ_HEADER];
    size_t headlen;                 /* bytes of head gathered so far */
    int mode;                       /* undecided, raw, stored, zstd */
    void *dctx;                     /* ZSTD_DCtx, for zstd */
    unsigned char *buf;             /* zstd output buffer */
    bool frame_done;
} object_decoder;

/* size OBJECT_SIZE_ANY: whatever size the object has (a check of the
 * object alone, when its record cannot be trusted). */
#define OBJECT_SIZE_ANY UINT64_MAX
void object_decoder_init(object_decoder *d, uint64_t size, const remote_sink *down);
/* A sink feeding the decoder. */
remote_sink object_decoder_sink(object_decoder *d);
/* After the last byte: ACACHE_OK or ACACHE_CORRUPT. */
acache_status object_decoder_finish(object_decoder *d);
void object_decoder_free(object_decoder *d);

/* ------------------------------------------------------------------ */
/* A small pool of idle connections, shared by the transports           */

#define REMOTE_POOL_MAX 16

typedef struct remote_pool {
    pthread_mutex_t mu;
    void *idle[REMOTE_POOL_MAX];
    size_t n;
} remote_pool;

void remote_pool_init(remote_pool *p);
/* An idle handle, or NULL when there is none (make a new one). */
void *remote_pool_take(remote_pool *p);
/* Keeps h for reuse; false when the pool is full (free it yourself). */
bool remote_pool_give(remote_pool *p, void *h);
/* Frees every idle handle with free_fn and destroys the pool. */
void remote_pool_destroy(remote_pool *p, void (*free_fn)(void *));

/* Backend constructors, named in the scheme table (src/schemes.c). */
acache_status redis_open(spec *s, void **self, const backend_ops **ops);
acache_status http_open(spec *s, void **self, const backend_ops **ops);
acache_status s3_open(spec *s, void **self, const backend_ops **ops);

#endif
