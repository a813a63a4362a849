/*
 * acache.h - the one public header of libacache, a content-addressed cache
 * for compiled artifacts.
 *
 * Data model (docs/architecture.md has it with the layers of the code):
 * an *action id* (32 bytes) names a computation;
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

/* What libacache exports: the functions below and nothing else (the
 * library is built with every other name hidden, and the static library
 * has them made local). */
#if defined(__GNUC__) || defined(__clang__)
#define ACACHE_API __attribute__((visibility("default")))
#else
#define ACACHE_API
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
ACACHE_API const char *acache_status_str(acache_status st);

/*
 * Message describing the last error returned to the calling thread, or ""
 * when there was none. Valid until the thread's next call into libacache.
 */
ACACHE_API const char *acache_last_error(void);

/* Writes the 64 lowercase hex digits of id and a NUL into out. */
ACACHE_API void acache_id_to_hex(const acache_id *id, char out[ACACHE_ID_HEX_SIZE]);

/*
 * Parses exactly 64 hex digits (either case) from text[0..len). Returns
 * ACACHE_EINVAL for any other length or a non-hex character.
 */
ACACHE_API acache_status acache_id_from_hex(const char *text, size_t len, acache_id *out);

/* Writes the 44-character standard base64 form of id and a NUL into out. */
ACACHE_API void acache_id_to_base64(const acache_id *id, char out[ACACHE_ID_BASE64_SIZE]);

/*
 * Parses standard base64 (with padding) from text[0..len). Returns
 * ACACHE_EINVAL unless it decodes to exactly 32 bytes.
 */
ACACHE_API acache_status acache_id_from_base64(const char *text, size_t len, acache_id *out);

/* Computes the SHA-256 of data[0..len) into out (an output id). */
ACACHE_API void acache_id_of_bytes(const void *data, size_t len, acache_id *out);

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
ACACHE_API acache_status acache_key_derive(acache_id *out, const char *ns,
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
 *                         max-size=SIZE          trim down to 90% of it
 *                                                when over it (10G)
 *                         max-age=DURATION       entries unused this long
 *                                                are trimmed (30d)
 *                         grace=DURATION         entries used within this
 *                                                are never trimmed (10m)
 *                         trim-interval=DURATION|off  automatic trims at
 *                                                most this often (1h)
 *   mem:?OPTIONS        an in-memory store, least recently used first out.
 *                       Options:
 *                         max-size=SIZE          byte bound (default 256M),
 *                                                per thread with scope=thread
 *                         scope=shared|thread    one cache for all threads,
 *                                                or one per thread (shared)
 *                       The bound is split between up to 16 shards; a put
 *                       larger than one shard's share is accepted but not
 *                       kept (a cache may always forget).
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?OPTIONS
 *   redis+unix:///PATH/TO/SOCKET?OPTIONS
 *                       a Redis or Valkey server (hiredis); keys are
 *                       PREFIX:ac:<action hex> and PREFIX:cas:<output hex>.
 *                       Options: prefix=P ("acache"), db=N (0).
 *   http://[USER:PASSWORD@]HOST[:PORT]/BASE?OPTIONS  (or https://)
 *                       an HTTP cache in the bazel-remote layout (libcurl):
 *                       GET, PUT and HEAD of BASE/ac/<hex>, BASE/cas/<hex>.
 *                       Both remotes take (docs/remotes.md has the details):
 *                         mode=rw|ro|wo          read and/or upload (rw)
 *                         compress=off|zstd[:LEVEL]  objects stored with
 *                                                zstd (off; readers take both)
 *                         timeout=DURATION       a request waiting on the
 *                                                server fails (1s)
 *                         connect-timeout=DURATION  (the timeout)
 *                         flush-timeout=DURATION uploads still queued at
 *                                                close are dropped (5s)
 *                         failures=N             consecutive failures that
 *                                                switch the remote off (3)
 *                         upload-queue=N         uploads waiting (4096)
 *                         max-object=SIZE        larger objects are neither
 *                                                uploaded nor fetched (512M)
 *                         key-file=PATH          sign action records with
 *                                                HMAC-SHA256 and refuse those
 *                                                without a valid signature
 *                                                ($ACACHE_REMOTE_KEY_FILE)
 *                       Opening a remote never touches the network; it is
 *                       reached at its first use. Use it as a tier behind a
 *                       local store (acache_tiers).
 *
 * Sizes take K/M/G/T suffixes (binary); durations ms/s/m/h/d. An unknown
 * scheme or option is ACACHE_EINVAL with a message naming it; a disk path
 * that is a file or a directory that cannot be written is refused with a
 * message naming the path.
 *
 * Sharing a disk store: any number of processes on one machine may open
 * the same directory at once and get, put, delete and trim in it, with no
 * daemon and no lock on the hot path: every file is written to a unique
 * temp file and renamed into place (a reader sees a whole entry or none),
 * counters are kept per process and folded under flock(2), and trims,
 * verify and clear take the trim lock (flock on ROOT/v1/trim.lock), so
 * that at most one runs at a time. This relies on a local POSIX file
 * system: atomic rename(2) and link(2) within one directory tree, exact
 * link counts, and flock(2) that excludes other processes. Network file
 * systems (NFS, SMB/CIFS, sshfs, 9p) may not give those: flock may be
 * local to one client or ignored, and renames and times may be seen late
 * by other clients. Do not share a disk store between machines through
 * one; share entries between machines with a remote (redis://, http://)
 * behind each machine's local store instead.
 */
ACACHE_API acache_status acache_open(const char *spec, acache_store **out);

/*
 * Chains stores into tiers, first to last: get tries each in order and
 * copies a hit into the earlier ones; put writes to all. A lower tier that
 * fails never fails a get an upper tier answered, nor a put the first tier
 * took. Takes ownership of the n stores (also on failure); the array itself
 * stays the caller's.
 */
ACACHE_API acache_status acache_tiers(acache_store *const *stores, size_t n, acache_store **out);

/* Closes a store, releasing everything it holds. NULL is allowed. */
ACACHE_API void acache_close(acache_store *store);

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
    /*
     * Ask only the tiers that answer without the network (up to the first
     * remote): a miss here may still be a hit in a remote. For serving
     * local hits on a fast path and handing misses to other threads.
     */
    ACACHE_GET_LOCAL = 1u << 1,
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
ACACHE_API acache_status acache_get(acache_store *store, const acache_id *action,
                         unsigned flags, acache_result *result);

/* Releases result->data, if any. Safe to call on any result, twice. */
ACACHE_API void acache_result_release(acache_result *result);

/* ------------------------------------------------------------------ */
/* Put                                                                  */

/*
 * Stores data[0..len) as the output of action. If output is not NULL it
 * receives the output id (the SHA-256 of data).
 */
ACACHE_API acache_status acache_put(acache_store *store, const acache_id *action,
                         const void *data, size_t len, acache_id *output);

/* Stores everything read from fd until end of file, as acache_put(). */
ACACHE_API acache_status acache_put_fd(acache_store *store, const acache_id *action, int fd,
                            acache_id *output);

/*
 * Starts a streaming put: the bytes are hashed and written as they come, so
 * for the disk store memory does not grow with their size (a mem store keeps
 * at most one shard's share of them). Finish with acache_put_commit() or
 * acache_put_abort(); until then nothing is visible to readers.
 */
ACACHE_API acache_status acache_put_begin(acache_store *store, const acache_id *action,
                               acache_put_stream **out);

/* Appends len bytes to a streaming put. */
ACACHE_API acache_status acache_put_write(acache_put_stream *stream, const void *data, size_t len);

/*
 * Finishes a streaming put. If expect_output is not NULL the bytes must hash
 * to it, and unless expect_size is ACACHE_SIZE_ANY there must be exactly that
 * many; otherwise ACACHE_EINVAL is returned and nothing is stored. If result
 * is not NULL it is filled as by acache_get() (without data). The stream is
 * freed whatever the outcome.
 */
ACACHE_API acache_status acache_put_commit(acache_put_stream *stream, const acache_id *expect_output,
                                uint64_t expect_size, acache_result *result);

/* Abandons a streaming put and frees it; nothing is stored. NULL is allowed. */
ACACHE_API void acache_put_abort(acache_put_stream *stream);

/* ------------------------------------------------------------------ */
/* Delete and stats                                                     */

/*
 * Removes the action entry (objects are shared between actions and are left
 * for eviction). Deleting a missing entry is ACACHE_MISS.
 */
ACACHE_API acache_status acache_delete(acache_store *store, const acache_id *action);

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
ACACHE_API void acache_get_stats(acache_store *store, acache_stats *out);

/* ------------------------------------------------------------------ */
/* Remotes: their state, background uploads, log messages               */
/* (docs/remotes.md has the model in full)                              */

/*
 * The library never prints. What a person should hear about at once (a
 * remote switched off, uploads refused) goes, as one line without a
 * trailing newline, to the function set here; with none set it is dropped.
 * fn may be called from any thread, also inside other libacache calls:
 * it must not call into libacache. NULL turns the messages off.
 */
typedef void (*acache_log_fn)(void *ctx, const char *message);
ACACHE_API void acache_set_log(acache_log_fn fn, void *ctx);

/*
 * Copies text (a spec, a URL, or a message that may hold them) into out
 * (size bytes, always terminated, cut if it does not fit) with credentials
 * replaced by "***": all of the user information of "scheme://USER:PASS@"
 * (up to the last '@' before the path, as the parsers read it) and the
 * value of any option whose name says it is a secret ("key=", "token=",
 * "password=", "secret=" ...). Every message the library makes has been
 * through it; a program printing a spec itself should do the same.
 */
ACACHE_API void acache_redact(const char *text, char *out, size_t size);

/* Room for acache_remote_info.name and .reason. */
#define ACACHE_REMOTE_NAME_SIZE 256
/* Room for acache_remote_info.detail (it may name files). */
#define ACACHE_REMOTE_DETAIL_SIZE 768

/* The state of one remote store. Counters are since it was opened. */
typedef struct acache_remote_info {
    char name[ACACHE_REMOTE_NAME_SIZE];   /* its spec without options, with
                                             any user and password as "***" */
    int readable;          /* mode lets gets use it (rw, ro) */
    int writable;          /* mode lets puts upload to it (rw, wo) */
    int switched_off;      /* failed repeatedly: unused for the rest of the
                              process */
    int uploads_off;       /* the server refused uploads repeatedly: no more
                              uploads, gets go on */
    char reason[ACACHE_REMOTE_NAME_SIZE]; /* why it is off, or "" */
    uint64_t hits;         /* gets it served (bytes checked) */
    uint64_t misses;       /* gets it did not have */
    uint64_t rejected;     /* entries refused: a record malformed or without a
                              valid signature, bytes not matching their id */
    uint64_t failures;     /* calls that failed: connection, timeout, server error */
    uint64_t uploads;      /* entries uploaded */
    uint64_t upload_bytes; /* bytes sent for them (after compression) */
    uint64_t already;      /* uploads whose object the remote already had */
    uint64_t dropped;      /* uploads given up: queue full, remote off, flush
                              deadline, local file gone, too large, failed */
    uint64_t pending;      /* uploads queued or running now */
    char detail[ACACHE_REMOTE_DETAIL_SIZE]; /* more about where it is, or "":
                              for s3, the region, endpoint, addressing and
                              where the credentials came from (never a
                              secret) */
} acache_remote_info;

/*
 * Fills out[0..max) with the remotes of store (a remote, or the remotes of
 * a tier chain, in order) and returns how many there are (which may exceed
 * max; 0 for a store without remotes).
 */
ACACHE_API size_t acache_remotes(acache_store *store, acache_remote_info *out, size_t max);

/*
 * Waits for the background uploads of store's remotes, each for at most
 * its flush-timeout (counted from this call, all at once); what is left is
 * dropped and counted. acache_close() does this too; call it first to read
 * the final counters with acache_remotes(). The store stays usable.
 */
ACACHE_API void acache_flush(acache_store *store);

/*
 * Writes what this process has counted on store's disk tier (a disk store,
 * or the first tier of a chain) to its counter file now: one write, so the
 * counts survive even if the process is killed before acache_close() folds
 * them. Nothing for a store without a disk tier. A server that tells its
 * client it is done before closing the store (acache gocacheprog closes
 * its stdout first: the go command waits for that) calls this first.
 */
ACACHE_API void acache_save_counters(acache_store *store);

/*
 * Session prefetch (docs/remotes.md): a tier chain with a remote remembers
 * the ids a session used and, at close, stores that list (a manifest)
 * under a key derived from its first lookup. A later session with the same
 * first lookup that misses locally loads it and fetches the entries it
 * lists from the remotes in the background, ahead of its own lookups. Each
 * remote's `prefetch=N` option sets the threads (default 4; 0 for none).
 */
typedef struct acache_prefetch_info {
    int loaded;          /* this session found a manifest and used it */
    uint64_t listed;     /* ids it listed */
    uint64_t fetched;    /* entries fetched from a remote ahead of use */
    uint64_t local;      /* listed entries the local store already had
                            (or a lookup of the session was fetching) */
    uint64_t failed;     /* listed entries no remote could serve */
    uint64_t waited;     /* lookups that waited for a fetch under way */
    int finished;        /* it has ended: no manifest was found, or every
                            listed entry has been dealt with */
} acache_prefetch_info;

/* Fills out for a tier chain with session prefetch and returns 1; returns
 * 0 (out zeroed) for any other store. */
ACACHE_API int acache_prefetch_stats(acache_store *store, acache_prefetch_info *out);

/* ------------------------------------------------------------------ */
/* For runtimes and compilers: build once, engine fingerprints          */
/* (docs/runtimes.md has the guarantees in full)                        */

#if defined(__GNUC__) || defined(__clang__)
#define ACACHE_PRINTF_(f, a) __attribute__((format(printf, f, a)))
#else
#define ACACHE_PRINTF_(f, a)
#endif

/*
 * Sets the calling thread's error message (what acache_last_error()
 * returns) and returns st, so that a build callback can say why it failed:
 * `return acache_set_error(ACACHE_EIO, "wasm2c exited with %d", code);`.
 */
ACACHE_API acache_status acache_set_error(acache_status st, const char *fmt, ...) ACACHE_PRINTF_(2, 3);

/* Appends everything read from fd until end of file to a streaming put
 * (in bounded chunks: memory does not grow with the file). */
ACACHE_API acache_status acache_put_write_fd(acache_put_stream *stream, int fd);

/*
 * Produces the output of action. It writes the bytes to out with
 * acache_put_write() or acache_put_write_fd(), as they come or all at once,
 * and returns ACACHE_OK to store them or an error status (ideally through
 * acache_set_error()) to store nothing. It must not commit or abort out.
 */
typedef acache_status (*acache_build_fn)(void *ctx, const acache_id *action,
                                         acache_put_stream *out);

/* How acache_get_or_build() came by its result. */
typedef enum acache_build_outcome {
    ACACHE_BUILD_HIT = 0,             /* it was in the store; nothing ran */
    ACACHE_BUILD_BUILT = 1,           /* this call ran the build callback */
    ACACHE_BUILD_WAITED = 2,          /* another thread of this process built it */
    ACACHE_BUILD_WAITED_PROCESS = 3,  /* another process built it while we waited */
    ACACHE_BUILD_BUILT_AFTER_TIMEOUT = 4, /* another process held the build lock
                                             past the timeout; this call built too */
} acache_build_outcome;

/* Default for acache_build_options.lock_timeout_ms: 5 minutes. */
#define ACACHE_BUILD_LOCK_TIMEOUT_MS 300000u

typedef struct acache_build_options {
    unsigned flags;            /* ACACHE_GET_DATA: also map the bytes into
                                  result->data (as acache_get()) */
    uint32_t lock_timeout_ms;  /* longest wait for another process building
                                  the same id before building anyway;
                                  0 means ACACHE_BUILD_LOCK_TIMEOUT_MS */
    acache_build_outcome *outcome; /* if not NULL, receives the outcome */
} acache_build_options;

/*
 * Returns the output of action, running build only when no store tier has
 * it. However many threads ask for the same action of the same store handle
 * at once, build runs in one of them; the others wait and then read what it
 * stored. Across processes (and store handles) sharing a disk store, the
 * builder holds a lock file, ROOT/v1/locks/<hex>; a process that finds it
 * held waits for the result instead of building too, up to
 * lock_timeout_ms, and builds anyway after that. The kernel drops the lock
 * of a holder that dies; the next one then finds the entry still missing
 * and builds.
 *
 * On ACACHE_OK result is filled as by acache_get() (a path for disk, and
 * the mapped bytes with ACACHE_GET_DATA). A failed build (build returned
 * an error) is returned, with its message, by the builder and by every
 * thread that waited on it: waiters do not retry, and nothing is stored,
 * so the next call builds again. ACACHE_MISS means build succeeded but the
 * store did not keep the output (a mem store smaller than it, a GOCACHEPROG
 * helper that takes no puts), so there is nothing to return. A failing get
 * is treated as a miss; a store that cannot take the put fails the call.
 */
ACACHE_API acache_status acache_get_or_build(acache_store *store, const acache_id *action,
                                  acache_build_fn build, void *ctx, acache_result *result);

/* acache_get_or_build() with options (opts may be NULL for the defaults). */
ACACHE_API acache_status acache_get_or_build_ex(acache_store *store, const acache_id *action,
                                     acache_build_fn build, void *ctx,
                                     const acache_build_options *opts,
                                     acache_result *result);

/*
 * What makes compiled code usable here and not elsewhere. Every field may
 * be NULL (same as ""). cpu_features is a set: names separated by commas
 * or spaces, compared without regard to order, case or repeats;
 * everything else is compared byte for byte.
 */
typedef struct acache_fingerprint {
    const char *name;          /* the engine or compiler, e.g. "mywasm" */
    const char *version;       /* its exact version */
    const char *target;        /* what the code runs on, e.g. acache_host_target() */
    const char *cpu_features;  /* what the code may use, e.g. acache_cpu_features() */
    const char *flags;         /* compiler settings that change the code */
    const acache_part *extra;  /* anything else that changes the code */
    size_t nextra;
} acache_fingerprint;

/* Computes the 32-byte id of a fingerprint (SHA-256 of every field). */
ACACHE_API acache_status acache_fingerprint_id(const acache_fingerprint *fp, acache_id *out);

/* Room for acache_fingerprint_string(). */
#define ACACHE_FINGERPRINT_STRING_SIZE 128

/*
 * Writes a readable, file-name-safe namespace string for fp,
 * "name-version-target-<first 16 hex digits of its id>", each field cut to
 * 24 characters of [A-Za-z0-9._+] ('_' for others). size must be at least
 * ACACHE_FINGERPRINT_STRING_SIZE.
 */
ACACHE_API acache_status acache_fingerprint_string(const acache_fingerprint *fp, char *out, size_t size);

/* The target this library was compiled for, e.g. "x86_64-linux". */
ACACHE_API const char *acache_host_target(void);

/* Room for acache_cpu_features(). */
#define ACACHE_CPU_FEATURES_SIZE 512

/*
 * Writes the host CPU's features as a sorted, comma-separated list (x86-64:
 * from cpuid through __builtin_cpu_supports, e.g. "avx,avx2,bmi2,...";
 * aarch64: from getauxval(AT_HWCAP), e.g. "aes,asimd,atomics,..."). Other
 * architectures give "". size must be at least ACACHE_CPU_FEATURES_SIZE.
 */
ACACHE_API acache_status acache_cpu_features(char *out, size_t size);

/*
 * Wraps store in the namespace of a fingerprint id: every action id is
 * mapped to SHA-256("acache namespace v1" || fingerprint || action) before
 * any tier sees it, so an entry is found only through a store wrapped with
 * the fingerprint it was stored under. An entry stored under another
 * fingerprint, or with no namespace, is a plain miss, never a hit. Takes
 * ownership of store (also on failure). Delete and get_or_build work
 * through the wrapper as on any store.
 */
ACACHE_API acache_status acache_namespace(acache_store *store, const acache_id *fingerprint,
                               acache_store **out);

/*
 * acache_key_derive() under a fingerprint: derives an action id from parts
 * with the fingerprint's hex id as the namespace. For keys handed to stores
 * that cannot be wrapped (another process, the acache command).
 */
ACACHE_API acache_status acache_fingerprint_key(acache_id *out, const acache_id *fingerprint,
                                     const acache_part *parts, size_t nparts);

/*
 * Any GOCACHEPROG helper as a store (for acache_open(), alone or as a tier):
 *
 *   prog:COMMAND ARG...?OPTIONS     or    prog:?cmd=COMMAND ARG...&OPTIONS
 *
 * The command line is split on spaces and tabs, with no quoting or
 * escapes: no argument can hold a space, and none can hold '?' (first
 * form) or '&' (second form); wrap anything else in a script. COMMAND is
 * looked up in PATH. The helper is started at open and must send its
 * KnownCommands within start-timeout. Gets return the helper's DiskPath
 * (checked for size, and with verify-reads for its SHA-256); puts are
 * spooled (memory, then a temp file) and streamed to the helper as base64.
 * A get on a helper without "get" is a miss; a put on one without "put" is
 * dropped. A helper that exits, writes anything but responses, or does not
 * answer a request within timeout is stopped and every later call fails at
 * once with ACACHE_EIO: put it behind a local tier with acache_tiers().
 * Delete is not in the protocol: it is ACACHE_MISS. Options:
 *   timeout=DURATION        per request (default 10s)
 *   start-timeout=DURATION  for the KnownCommands line (default 10s)
 *   close-timeout=DURATION  for close's answer, then for the exit, before
 *                           the helper is killed (default 10s)
 *   verify-reads=on|off     hash every hit against its OutputID (on)
 *   spool-dir=PATH          where puts larger than 256K wait (TMPDIR)
 */

/* ------------------------------------------------------------------ */
/* Maintenance: limits, trim, verify, clear, counters of a disk store   */
/* (docs/maintenance.md has the guarantees in full)                     */

/*
 * These operate on a disk store, or on a store whose first tier (its home)
 * is one, also through acache_namespace(); any other store is
 * ACACHE_EINVAL with a message saying so.
 *
 * A disk store keeps itself bounded with no daemon: a put that finds the
 * last trim older than trim-interval starts one in a background thread,
 * off the put's path, at the lowest normal priority (nice 19, best-effort
 * I/O level 7) and, while other tasks run, working 1% of the time; it saves
 * its position after each shard directory, so short-lived processes each
 * move it on; acache_close() stops it promptly. One process at
 * a time trims (an flock on ROOT/v1/trim.lock, dropped by the kernel if the
 * holder dies). A trim removes, least recently used first, down to 90% of
 * max-size; entries unused for max-age; and leftovers of processes that
 * died. It never removes an entry used within the grace period (nor, as
 * uses are recorded at most every 10 minutes, within 10 minutes more), so
 * paths handed to a running build stay valid; and it removes an object only
 * when no action it keeps refers to it. Without work to do it reads a few
 * small files; with work, it reads only the part of the store it evicts
 * from. A get racing with a removal is a miss, never an error.
 */

/* Pass for an option to use the store's own setting (its spec's, or the
 * default): max-size 10G, max-age 30d, grace 10m. */
#define ACACHE_DEFAULT (-1)

/* Progress of a long operation: phase names what is being done ("sweep",
 * "evict", "objects", "records", ...); total is 0 when unknown. */
typedef struct acache_progress {
    const char *phase;
    uint64_t done, total;
    uint64_t bytes_done, bytes_total;
} acache_progress;

/* Called now and then during a trim or verify. Returning non-zero stops the
 * operation early, leaving the store consistent. */
typedef int (*acache_progress_fn)(void *ctx, const acache_progress *progress);

/* Flags for acache_trim_options.flags. */
enum {
    /* Report what would be removed; remove nothing. */
    ACACHE_TRIM_DRY_RUN = 1u << 0,
    /* Look at the whole store: enforce max-age on every entry, remove every
     * leftover, and recount the size estimate. Without it a trim does what
     * the automatic one does: a slice of the store at a time. */
    ACACHE_TRIM_FULL = 1u << 1,
    /* Return at once (report->busy set) if another trim is running, instead
     * of waiting for it. */
    ACACHE_TRIM_NOWAIT = 1u << 2,
};

typedef struct acache_trim_options {
    int64_t max_size;   /* bytes to stay under, or ACACHE_DEFAULT */
    int64_t max_age_ns; /* entries unused for longer go, or ACACHE_DEFAULT */
    int64_t grace_ns;   /* what was used within this stays, or ACACHE_DEFAULT;
                           0 protects nothing, not even paths a build holds */
    unsigned flags;     /* ACACHE_TRIM_* */
    acache_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} acache_trim_options;

/* Options that use every setting of the store: no flags, no progress. */
#define ACACHE_TRIM_OPTIONS_INIT { ACACHE_DEFAULT, ACACHE_DEFAULT, ACACHE_DEFAULT, 0, NULL, NULL }

typedef struct acache_trim_report {
    uint64_t size_before;     /* estimated disk usage of the store before */
    uint64_t size_after;      /* and after */
    uint64_t max_size;        /* the limits the trim applied */
    int64_t max_age_ns, grace_ns;
    uint64_t entries_removed; /* action records (least recently used, or expired) */
    uint64_t objects_removed; /* objects no kept action referred to any more */
    uint64_t bytes_removed;   /* disk usage freed */
    uint64_t leftovers_removed; /* temp files and references of dead processes */
    uint64_t kept_in_grace;   /* entries the size limit wanted, kept as recent */
    uint64_t dirs_listed;     /* the trim's cost: directories read, */
    uint64_t files_examined;  /* files looked at (one stat or open each) */
    int64_t duration_ns;
    int busy;                 /* another trim was running (ACACHE_TRIM_NOWAIT) */
    int stopped;              /* stopped early (progress callback, close) */
    int counted;              /* the size estimate was recounted */
} acache_trim_report;

/*
 * Trims the store now, in the calling thread (the automatic trim runs the
 * same code in the background). opts may be NULL for the store's settings;
 * report may be NULL. Waits for a trim running elsewhere unless
 * ACACHE_TRIM_NOWAIT.
 */
ACACHE_API acache_status acache_trim(acache_store *store, const acache_trim_options *opts,
                          acache_trim_report *report);

/* Flags for acache_verify_options.flags. */
enum {
    /* Remove what is bad: corrupt objects and the records that name them,
     * malformed records, records whose object is missing or of the wrong
     * size; and give every record its reference to its object again. */
    ACACHE_VERIFY_REPAIR = 1u << 0,
};

typedef struct acache_verify_options {
    unsigned flags;              /* ACACHE_VERIFY_* */
    acache_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    /* Called for each problem (path, what is wrong, and whether it was
     * repaired); may be NULL. */
    void (*problem)(void *ctx, const char *path, const char *what, int repaired);
    void *problem_ctx;
} acache_verify_options;

typedef struct acache_verify_report {
    uint64_t objects, records, bytes;  /* examined (bytes hashed) */
    /* Problems: */
    uint64_t corrupt_objects;   /* content whose SHA-256 is not its name */
    uint64_t bad_records;       /* malformed, or not naming their own action */
    uint64_t dangling_records;  /* object missing, corrupt, or not of the
                                   recorded size */
    uint64_t problems;          /* the sum of the three above */
    uint64_t repaired;          /* problems removed (ACACHE_VERIFY_REPAIR) */
    /* Not problems (a put killed between its steps leaves them; at worst an
     * entry is evicted early, a miss), but repaired with REPAIR: */
    uint64_t unreferenced;      /* records whose reference to their object is
                                   missing or to other bytes */
    uint64_t references_restored;
    /* Not problems: what a trim removes in passing. */
    uint64_t orphan_objects;    /* objects no action refers to */
    uint64_t leftovers;         /* temp files, references without a record */
    int stopped;                /* stopped early by the progress callback */
} acache_verify_report;

/*
 * Recomputes every object's SHA-256 and checks every action record against
 * its object. Returns ACACHE_OK when it could look at everything, whether
 * or not it found problems (see report->problems); an error when it could
 * not read the store. Safe while other processes use the store: what
 * changes under it is looked at again before it is called a problem.
 * opts may be NULL (check only); report may not.
 */
ACACHE_API acache_status acache_verify(acache_store *store, const acache_verify_options *opts,
                            acache_verify_report *report);

/*
 * Removes every entry of the store, in use or not (temp files of puts still
 * running are left alone), and resets the size estimate. report may be
 * NULL; entries_removed, objects_removed and bytes_removed are filled.
 */
ACACHE_API acache_status acache_clear(acache_store *store, acache_trim_report *report);

/* The store's counters, summed over every process that used it. */
typedef struct acache_disk_counters {
    char dir[ACACHE_PATH_MAX];  /* the store's directory (ROOT/v1) */
    uint64_t max_size;          /* the store's settings */
    int64_t max_age_ns, grace_ns;
    int64_t trim_interval_ns;   /* -1 when automatic trims are off */
    /* What it holds: an estimate kept up to date by every put and trim,
     * exact after a full trim or a repairing verify. */
    uint64_t entries, objects, bytes;
    int64_t counted_ns;         /* when last counted in full; 0 never */
    /* Since the store was created: */
    uint64_t hits, misses, corrupt, errors, puts;
    uint64_t bytes_written, bytes_read;
    uint64_t trimmed_entries, trimmed_bytes;
    /* The last trim (last_trim_ns 0: none yet): */
    int64_t last_trim_ns, last_trim_duration_ns;
    int last_trim_finished;     /* 0 while running, or if it was stopped */
    uint64_t last_trim_entries_removed, last_trim_bytes_removed;
    uint64_t last_trim_files_examined, last_trim_dirs_listed; /* its cost */
    /* Objects a put found damaged (same size, other bytes) and replaced
     * with the bytes it had just verified. */
    uint64_t repaired;
    /* Puts its full file system (no blocks, inodes or quota) sent to a
     * directory of the process's own under $TMPDIR, removed at close. */
    uint64_t spilled;
} acache_disk_counters;

/* Fills out with the store's counters (this process's included). */
ACACHE_API acache_status acache_disk_stats(acache_store *store, acache_disk_counters *out);

/* Parses a size ("10G", "512M", "4096"; K/M/G/T are binary). */
ACACHE_API acache_status acache_parse_size(const char *text, uint64_t *out);
/* Parses a duration ("30d", "10m", "90s", "300ms"; plain numbers are s). */
ACACHE_API acache_status acache_parse_duration(const char *text, int64_t *ns);

#ifdef __cplusplus
}
#endif
#endif /* ACACHE_H */
