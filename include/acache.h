/*
 * acache.h - the one public header of libacache, a content-addressed cache
 * for compiled artifacts.
 *
 * Data model (see DESIGN.md): an *action id* (32 bytes) names a computation;
 * the *action table* maps it to an *output id* (the SHA-256 of the produced
 * bytes), a size and the time it was stored; the *object store* maps output
 * ids to bytes. A store is opened from a spec string ("disk:/path",
 * "mem:?max-size=512M", ...) and several stores can be chained into tiers.
 *
 * Every function returns an acache_status. ACACHE_MISS is not an error: a
 * corrupt, truncated or stale entry is counted and reported as a miss. On an
 * error, acache_last_error() returns a message describing it. The library
 * never prints and never exits.
 *
 * All functions taking an acache_store are thread-safe, except
 * acache_close(), which must not run alongside other calls on the same store.
 * A put stream belongs to one thread at a time.
 */
#ifndef ACACHE_H
#define ACACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ACACHE_VERSION_MAJOR 0
#define ACACHE_VERSION_MINOR 1
#define ACACHE_VERSION_PATCH 0

/* Size of an action id or output id, in bytes (SHA-256). */
#define ACACHE_ID_SIZE 32
/* Buffer sizes for the text forms of an id, including the final NUL. */
#define ACACHE_ID_HEX_SIZE 65
#define ACACHE_ID_BASE64_SIZE 45
/* Longest local path a result can carry, including the final NUL. */
#define ACACHE_PATH_MAX 4096
/* Pass as expected size to acache_put_commit() to accept any size. */
#define ACACHE_SIZE_ANY UINT64_MAX

/* Status of every call. Negative values are errors. */
typedef enum acache_status {
    ACACHE_OK = 0,       /* success */
    ACACHE_MISS = 1,     /* no such entry (or a corrupt one, now removed) */
    ACACHE_EINVAL = -1,  /* invalid argument: bad spec, wrong size, bad id */
    ACACHE_EIO = -2,     /* I/O error from the operating system or a remote */
    ACACHE_ENOSPC = -3,  /* no space left on the device or in the quota */
    ACACHE_ENOMEM = -4,  /* out of memory */
} acache_status;

/* A 32-byte identifier: an action id or an output id. */
typedef struct acache_id {
    uint8_t bytes[ACACHE_ID_SIZE];
} acache_id;

/* An opaque store: one backend, or a chain of tiers. */
typedef struct acache_store acache_store;

/* An opaque put in progress (see acache_put_begin). */
typedef struct acache_put_stream acache_put_stream;

/* ------------------------------------------------------------------ */
/* Errors and ids                                                       */

/* Human-readable name of a status ("ok", "miss", "invalid argument", ...). */
const char *acache_status_str(acache_status st);

/*
 * Message describing the last error returned to the calling thread, or ""
 * when there was none. Valid until the thread's next call into libacache.
 */
const char *acache_last_error(void);

/* Writes the 64 lowercase hex digits of id and a NUL into out. */
void acache_id_to_hex(const acache_id *id, char out[ACACHE_ID_HEX_SIZE]);

/*
 * Parses exactly 64 hex digits (either case) from text[0..len). Returns
 * ACACHE_EINVAL for any other length or a non-hex character.
 */
acache_status acache_id_from_hex(const char *text, size_t len, acache_id *out);

/* Writes the 44-character standard base64 form of id and a NUL into out. */
void acache_id_to_base64(const acache_id *id, char out[ACACHE_ID_BASE64_SIZE]);

/*
 * Parses standard base64 (with padding) from text[0..len). Returns
 * ACACHE_EINVAL unless it decodes to exactly 32 bytes.
 */
acache_status acache_id_from_base64(const char *text, size_t len, acache_id *out);

/* Computes the SHA-256 of data[0..len) into out (an output id). */
void acache_id_of_bytes(const void *data, size_t len, acache_id *out);

/* One input to key derivation. */
typedef struct acache_part {
    const void *data;
    size_t len;
} acache_part;

/*
 * Derives an action id: SHA-256 over the namespace and each part, every one
 * prefixed by its length so that no two different lists of inputs collide
 * by concatenation. ns is a NUL-terminated string (an engine fingerprint,
 * a format version) and may be "" but not NULL.
 */
acache_status acache_key_derive(acache_id *out, const char *ns,
                                const acache_part *parts, size_t nparts);

/* ------------------------------------------------------------------ */
/* Opening and closing                                                  */

/*
 * Opens a store from a spec string:
 *
 *   disk:PATH?OPTIONS   the local disk store rooted at PATH. An empty PATH
 *                       means $ACACHE_DIR, else $XDG_CACHE_HOME/acache, else
 *                       $HOME/.cache/acache. A spec starting with '/' is
 *                       read as disk:SPEC. Options:
 *                         durability=none|fsync  fsync before rename (none)
 *                         verify-reads=on|off    re-hash objects on get (off)
 *                         max-size=SIZE, max-age=DURATION  eviction limits
 *   mem:?OPTIONS        an in-memory store, least recently used first out.
 *                       Options:
 *                         max-size=SIZE          byte bound (default 256M),
 *                                                per thread with scope=thread
 *                         scope=shared|thread    one cache for all threads,
 *                                                or one per thread (shared)
 *                       The bound is split between up to 16 shards; a put
 *                       larger than one shard's share is accepted but not
 *                       kept (a cache may always forget).
 *
 * Sizes take K/M/G/T suffixes (binary); durations s/m/h/d. An unknown
 * scheme or option is ACACHE_EINVAL with a message naming it; a disk path
 * that is a file or a directory that cannot be written is refused with a
 * message naming the path.
 */
acache_status acache_open(const char *spec, acache_store **out);

/*
 * Chains stores into tiers, first to last: get tries each in order and
 * copies a hit into the earlier ones; put writes to all. A lower tier that
 * fails never fails a get an upper tier answered, nor a put the first tier
 * took. Takes ownership of the n stores (also on failure); the array itself
 * stays the caller's.
 */
acache_status acache_tiers(acache_store *const *stores, size_t n, acache_store **out);

/* Closes a store, releasing everything it holds. NULL is allowed. */
void acache_close(acache_store *store);

/* ------------------------------------------------------------------ */
/* Get                                                                  */

/* Flags for acache_get(). */
enum {
    /*
     * Also return the bytes in result->data: a read-only mapping of the
     * file for disk, a shared reference for mem. Release it with
     * acache_result_release().
     */
    ACACHE_GET_DATA = 1u << 0,
};

/* What a get (or a committed put) returns. */
typedef struct acache_result {
    acache_id output_id;          /* SHA-256 of the bytes */
    uint64_t size;                /* size of the bytes */
    int64_t time_ns;              /* when stored, ns since the Unix epoch */
    char path[ACACHE_PATH_MAX];   /* absolute local path of the bytes, or "" */
    const void *data;             /* with ACACHE_GET_DATA: the bytes, else NULL;
                                     valid until acache_result_release(), even
                                     after the entry is replaced or evicted */
    /* private: how to release data */
    void (*release_fn_)(void *ctx, const void *data, uint64_t size);
    void *release_ctx_;
} acache_result;

/*
 * Looks up an action id. On ACACHE_OK result is filled; the path, if any,
 * names a file holding exactly result->size bytes that stays valid after the
 * store is closed (until evicted). Returns ACACHE_MISS when there is no
 * usable entry.
 */
acache_status acache_get(acache_store *store, const acache_id *action,
                         unsigned flags, acache_result *result);

/* Releases result->data, if any. Safe to call on any result, twice. */
void acache_result_release(acache_result *result);

/* ------------------------------------------------------------------ */
/* Put                                                                  */

/*
 * Stores data[0..len) as the output of action. If output is not NULL it
 * receives the output id (the SHA-256 of data).
 */
acache_status acache_put(acache_store *store, const acache_id *action,
                         const void *data, size_t len, acache_id *output);

/* Stores everything read from fd until end of file, as acache_put(). */
acache_status acache_put_fd(acache_store *store, const acache_id *action, int fd,
                            acache_id *output);

/*
 * Starts a streaming put: the bytes are hashed and written as they come, so
 * for the disk store memory does not grow with their size (a mem store keeps
 * at most one shard's share of them). Finish with acache_put_commit() or
 * acache_put_abort(); until then nothing is visible to readers.
 */
acache_status acache_put_begin(acache_store *store, const acache_id *action,
                               acache_put_stream **out);

/* Appends len bytes to a streaming put. */
acache_status acache_put_write(acache_put_stream *stream, const void *data, size_t len);

/*
 * Finishes a streaming put. If expect_output is not NULL the bytes must hash
 * to it, and unless expect_size is ACACHE_SIZE_ANY there must be exactly that
 * many; otherwise ACACHE_EINVAL is returned and nothing is stored. If result
 * is not NULL it is filled as by acache_get() (without data). The stream is
 * freed whatever the outcome.
 */
acache_status acache_put_commit(acache_put_stream *stream, const acache_id *expect_output,
                                uint64_t expect_size, acache_result *result);

/* Abandons a streaming put and frees it; nothing is stored. NULL is allowed. */
void acache_put_abort(acache_put_stream *stream);

/* ------------------------------------------------------------------ */
/* Delete and stats                                                     */

/*
 * Removes the action entry (objects are shared between actions and are left
 * for eviction). Deleting a missing entry is ACACHE_MISS.
 */
acache_status acache_delete(acache_store *store, const acache_id *action);

/* Counters of one store handle since it was opened. */
typedef struct acache_stats {
    uint64_t gets;          /* get calls */
    uint64_t hits;          /* gets that returned ACACHE_OK */
    uint64_t misses;        /* gets that returned ACACHE_MISS */
    uint64_t corrupt;       /* entries found corrupt (counted among misses) */
    uint64_t puts;          /* puts committed */
    uint64_t errors;        /* calls that returned an error */
    uint64_t bytes_read;    /* bytes of hits */
    uint64_t bytes_written; /* bytes of committed puts */
} acache_stats;

/* Copies the store's counters into out. */
void acache_get_stats(acache_store *store, acache_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* ACACHE_H */
