/*
 * test_mem.c - the in-memory backend through the public API: roundtrips,
 * misses, replace, delete, the byte bound and LRU order, oversize puts,
 * references that outlive their entry, threads hammering one store, the
 * per-thread scope and option errors. Tests only.
 *
 * Worker threads never call cmocka asserts (they are not thread-safe);
 * they count failures and the main thread asserts on the counts.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static acache_store *open_mem(const char *spec)
{
    acache_store *s = NULL;
    acache_status st = acache_open(spec, &s);
    if (st != ACACHE_OK)
        fail_msg("acache_open(%s): %s: %s", spec, acache_status_str(st), acache_last_error());
    assert_non_null(s);
    return s;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Ids sharing their first 16 bytes: the same shard and the same hash
 * bucket under any sharding by the leading bytes, so LRU order within one
 * shard is observable and hash chains get exercised. */
static acache_id colliding_id(uint32_t n)
{
    acache_id id;
    memset(id.bytes, 0xA5, sizeof id.bytes);
    memcpy(id.bytes + 16, &n, sizeof n);
    return id;
}

/* Asserts that action maps to exactly data[0..len), and returns via the
 * public API both the metadata and (with ACACHE_GET_DATA) the bytes. */
static void expect_hit(acache_store *s, const acache_id *action, const void *data, size_t len)
{
    acache_result r;
    acache_status st = acache_get(s, action, ACACHE_GET_DATA, &r);
    assert_int_equal(st, ACACHE_OK);
    assert_int_equal(r.size, len);
    assert_string_equal(r.path, "");
    assert_non_null(r.data);
    assert_memory_equal(r.data, data, len);
    acache_id want;
    acache_id_of_bytes(data, len, &want);
    assert_memory_equal(r.output_id.bytes, want.bytes, ACACHE_ID_SIZE);
    acache_result_release(&r);
    assert_null(r.data);
}

static bool is_hit(acache_store *s, const acache_id *action, uint64_t *size)
{
    acache_result r;
    acache_status st = acache_get(s, action, 0, &r);
    assert_true(st == ACACHE_OK || st == ACACHE_MISS);
    if (st == ACACHE_OK && size)
        *size = r.size;
    return st == ACACHE_OK;
}

/* ------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    (void)state;
    acache_store *s = open_mem("mem:?max-size=16M");
    enum { LEN = 100000 };
    unsigned char *buf = malloc(LEN);
    assert_non_null(buf);
    tu_fill(buf, LEN, 1);
    acache_id action = tu_id(1), output, want;
    acache_id_of_bytes(buf, LEN, &want);

    int64_t before = now_ns();
    assert_int_equal(acache_put(s, &action, buf, LEN, &output), ACACHE_OK);
    int64_t after = now_ns();
    assert_memory_equal(output.bytes, want.bytes, ACACHE_ID_SIZE);

    acache_result r;
    assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, LEN);
    assert_memory_equal(r.output_id.bytes, want.bytes, ACACHE_ID_SIZE);
    assert_true(r.time_ns >= before && r.time_ns <= after);
    assert_string_equal(r.path, "");
    assert_non_null(r.data);
    assert_memory_equal(r.data, buf, LEN);
    acache_result_release(&r);
    acache_result_release(&r); /* twice is allowed */
    assert_null(r.data);

    /* without ACACHE_GET_DATA: metadata only, nothing to release */
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_OK);
    assert_null(r.data);
    assert_int_equal(r.size, LEN);
    acache_result_release(&r);

    /* an empty output is a valid entry */
    acache_id empty = tu_id(2);
    assert_int_equal(acache_put(s, &empty, "", 0, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &empty, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, 0);
    acache_result_release(&r);

    acache_stats stats;
    acache_get_stats(s, &stats);
    assert_int_equal(stats.puts, 2);
    assert_int_equal(stats.hits, 3);
    free(buf);
    acache_close(s);
}

static void test_stream(void **state)
{
    (void)state;
    acache_store *s = open_mem("mem:");
    enum { LEN = 300000 };
    unsigned char *buf = malloc(LEN);
    assert_non_null(buf);
    tu_fill(buf, LEN, 7);
    acache_id action = tu_id(10), want;
    acache_id_of_bytes(buf, LEN, &want);

    /* odd-sized chunks so the buffer grows several times */
    acache_put_stream *ps = NULL;
    assert_int_equal(acache_put_begin(s, &action, &ps), ACACHE_OK);
    for (size_t off = 0; off < LEN;) {
        size_t n = LEN - off < 7777 ? LEN - off : 7777;
        assert_int_equal(acache_put_write(ps, buf + off, n), ACACHE_OK);
        off += n;
    }
    acache_result r;
    assert_int_equal(acache_put_commit(ps, &want, LEN, &r), ACACHE_OK);
    assert_int_equal(r.size, LEN);
    assert_memory_equal(r.output_id.bytes, want.bytes, ACACHE_ID_SIZE);
    assert_string_equal(r.path, "");
    assert_null(r.data);
    assert_true(r.time_ns > 0);
    expect_hit(s, &action, buf, LEN);

    /* a wrong expected output stores nothing */
    acache_id other = tu_id(11);
    assert_int_equal(acache_put_begin(s, &other, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, 1000), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, &want, ACACHE_SIZE_ANY, NULL), ACACHE_EINVAL);
    assert_false(is_hit(s, &other, NULL));

    /* abort stores nothing */
    assert_int_equal(acache_put_begin(s, &other, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, 1000), ACACHE_OK);
    acache_put_abort(ps);
    assert_false(is_hit(s, &other, NULL));

    /* abort right after begin */
    assert_int_equal(acache_put_begin(s, &other, &ps), ACACHE_OK);
    acache_put_abort(ps);
    assert_false(is_hit(s, &other, NULL));

    free(buf);
    acache_close(s);
}

static void test_miss(void **state)
{
    (void)state;
    acache_store *s = open_mem("mem:?max-size=1M");
    acache_id a = tu_id(1);
    acache_result r;
    assert_int_equal(acache_get(s, &a, ACACHE_GET_DATA, &r), ACACHE_MISS);
    assert_null(r.data);
    acache_result_release(&r);
    assert_int_equal(acache_delete(s, &a), ACACHE_MISS);

    /* a hit on a colliding id is not a hit on its neighbour */
    acache_id c1 = colliding_id(1), c2 = colliding_id(2);
    assert_int_equal(acache_put(s, &c1, "x", 1, NULL), ACACHE_OK);
    assert_false(is_hit(s, &c2, NULL));

    acache_stats stats;
    acache_get_stats(s, &stats);
    assert_int_equal(stats.misses, 2);
    assert_int_equal(stats.errors, 0);
    acache_close(s);
}

static void test_replace(void **state)
{
    (void)state;
    acache_store *s = open_mem("mem:");
    acache_id a = tu_id(5);
    char x[3000], y[5000];
    tu_fill(x, sizeof x, 1);
    tu_fill(y, sizeof y, 2);
    assert_int_equal(acache_put(s, &a, x, sizeof x, NULL), ACACHE_OK);
    expect_hit(s, &a, x, sizeof x);
    assert_int_equal(acache_put(s, &a, y, sizeof y, NULL), ACACHE_OK);
    expect_hit(s, &a, y, sizeof y);
    assert_int_equal(acache_put(s, &a, x, 10, NULL), ACACHE_OK);
    expect_hit(s, &a, x, 10);
    acache_close(s);
}

static void test_delete(void **state)
{
    (void)state;
    acache_store *s = open_mem("mem:");
    acache_id a = tu_id(1), b = tu_id(2);
    assert_int_equal(acache_put(s, &a, "aaaa", 4, NULL), ACACHE_OK);
    assert_int_equal(acache_put(s, &b, "bbbb", 4, NULL), ACACHE_OK);
    assert_int_equal(acache_delete(s, &a), ACACHE_OK);
    assert_false(is_hit(s, &a, NULL));
    expect_hit(s, &b, "bbbb", 4);
    assert_int_equal(acache_delete(s, &a), ACACHE_MISS);

    /* deleting in the middle, head and tail of one hash chain */
    for (uint32_t i = 0; i < 5; i++) {
        acache_id c = colliding_id(i);
        assert_int_equal(acache_put(s, &c, &i, sizeof i, NULL), ACACHE_OK);
    }
    uint32_t gone[] = { 2, 0, 4 };
    for (size_t k = 0; k < 3; k++) {
        acache_id c = colliding_id(gone[k]);
        assert_int_equal(acache_delete(s, &c), ACACHE_OK);
    }
    for (uint32_t i = 0; i < 5; i++) {
        acache_id c = colliding_id(i);
        if (i == 1 || i == 3)
            expect_hit(s, &c, &i, sizeof i);
        else
            assert_false(is_hit(s, &c, NULL));
    }
    /* put after delete works */
    assert_int_equal(acache_put(s, &a, "AA", 2, NULL), ACACHE_OK);
    expect_hit(s, &a, "AA", 2);
    acache_close(s);
}

/*
 * Fills a 64K store ten times over with 1000-byte entries while keeping one
 * entry hot. Whatever the sharding, the bytes resident (sum of the sizes of
 * entries that still hit) never exceed the bound, the newest and the hot
 * entry survive, and the oldest untouched ones are gone.
 */
static void test_lru_bound(void **state)
{
    (void)state;
    enum { BOUND = 64 * 1024, LEN = 1000, N = 640 };
    acache_store *s = open_mem("mem:?max-size=64K");
    char buf[LEN];
    acache_id hot = tu_id(1000000);
    tu_fill(buf, LEN, 99);
    assert_int_equal(acache_put(s, &hot, buf, LEN, NULL), ACACHE_OK);

    for (uint32_t i = 0; i < N; i++) {
        acache_id a = tu_id(i);
        tu_fill(buf, LEN, i);
        assert_int_equal(acache_put(s, &a, buf, LEN, NULL), ACACHE_OK);
        expect_hit(s, &a, buf, LEN);
        assert_true(is_hit(s, &hot, NULL));
        if (i % 64 == 63 || i == N - 1) {
            uint64_t resident = 0, size = 0;
            size_t hits = 0;
            for (uint32_t j = 0; j <= i; j++) {
                acache_id b = tu_id(j);
                if (is_hit(s, &b, &size)) {
                    resident += size;
                    hits++;
                }
            }
            assert_true(is_hit(s, &hot, &size)); /* touched last again */
            resident += size;
            assert_true(resident <= BOUND);
            assert_true(hits >= 1);
        }
    }
    for (uint32_t j = 0; j < 100; j++) {
        acache_id b = tu_id(j);
        assert_false(is_hit(s, &b, NULL));
    }
    acache_close(s);
}

/* Exact LRU order inside one shard, using ids that land in the same shard. */
static void test_lru_order(void **state)
{
    (void)state;
    enum { LEN = 200, N = 400 };
    char buf[LEN];

    /* no gets in between: survivors are exactly the newest puts */
    acache_store *s = open_mem("mem:?max-size=64K");
    for (uint32_t i = 0; i < N; i++) {
        acache_id a = colliding_id(i);
        tu_fill(buf, LEN, i);
        assert_int_equal(acache_put(s, &a, buf, LEN, NULL), ACACHE_OK);
    }
    uint32_t first = N; /* oldest survivor */
    for (uint32_t i = N; i-- > 0;) {
        acache_id a = colliding_id(i);
        if (!is_hit(s, &a, NULL))
            break;
        first = i;
    }
    assert_true(first > 0 && first < N - 1);
    for (uint32_t i = 0; i < first; i++) {
        acache_id a = colliding_id(i);
        assert_false(is_hit(s, &a, NULL));
    }
    acache_close(s);

    /* an entry read after every put survives; the untouched ones age out */
    s = open_mem("mem:?max-size=64K");
    acache_id hot = colliding_id(1000000);
    tu_fill(buf, LEN, 12345);
    assert_int_equal(acache_put(s, &hot, buf, LEN, NULL), ACACHE_OK);
    for (uint32_t i = 0; i < N; i++) {
        acache_id a = colliding_id(i);
        tu_fill(buf, LEN, i);
        assert_int_equal(acache_put(s, &a, buf, LEN, NULL), ACACHE_OK);
        assert_true(is_hit(s, &hot, NULL));
    }
    tu_fill(buf, LEN, 12345);
    expect_hit(s, &hot, buf, LEN);
    acache_id oldest = colliding_id(0);
    assert_false(is_hit(s, &oldest, NULL));
    acache_close(s);
}

static void test_oversize(void **state)
{
    (void)state;
    enum { BIG = 128 * 1024 };
    acache_store *s = open_mem("mem:?max-size=64K");
    unsigned char *buf = malloc(BIG);
    assert_non_null(buf);
    tu_fill(buf, BIG, 3);
    acache_id a = tu_id(1), out, want;
    acache_id_of_bytes(buf, BIG, &want);

    /* larger than the whole store: accepted, not stored */
    assert_int_equal(acache_put(s, &a, buf, BIG, &out), ACACHE_OK);
    assert_memory_equal(out.bytes, want.bytes, ACACHE_ID_SIZE);
    assert_false(is_hit(s, &a, NULL));

    /* streamed past the bound in small writes: the same, with res filled */
    acache_id b = tu_id(2);
    acache_put_stream *ps = NULL;
    assert_int_equal(acache_put_begin(s, &b, &ps), ACACHE_OK);
    for (int rep = 0; rep < 8; rep++)
        for (size_t off = 0; off < BIG; off += 4096)
            assert_int_equal(acache_put_write(ps, buf + off, 4096), ACACHE_OK);
    acache_result r;
    assert_int_equal(acache_put_commit(ps, NULL, 8ull * BIG, &r), ACACHE_OK);
    assert_int_equal(r.size, 8ull * BIG);
    assert_false(is_hit(s, &b, NULL));

    /* an oversize put replaces (forgets) the older output of its action */
    assert_int_equal(acache_put(s, &a, "small", 5, NULL), ACACHE_OK);
    expect_hit(s, &a, "small", 5);
    assert_int_equal(acache_put(s, &a, buf, BIG, NULL), ACACHE_OK);
    assert_false(is_hit(s, &a, NULL));

    /* the store still works */
    assert_int_equal(acache_put(s, &b, buf, 1000, NULL), ACACHE_OK);
    expect_hit(s, &b, buf, 1000);
    free(buf);
    acache_close(s);
}

/* A reference taken with ACACHE_GET_DATA outlives replace, eviction,
 * delete and even close of the store. */
static void test_data_ref_outlives_entry(void **state)
{
    (void)state;
    enum { LEN = 8000 };
    acache_store *s = open_mem("mem:?max-size=64K");
    unsigned char x[LEN], y[LEN];
    tu_fill(x, LEN, 1);
    tu_fill(y, LEN, 2);
    acache_id a = tu_id(1);

    acache_result replaced, evicted, deleted, closed;
    assert_int_equal(acache_put(s, &a, x, LEN, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &a, ACACHE_GET_DATA, &replaced), ACACHE_OK);
    assert_int_equal(acache_put(s, &a, y, LEN, NULL), ACACHE_OK);
    expect_hit(s, &a, y, LEN);
    assert_memory_equal(replaced.data, x, LEN);

    acache_id b = tu_id(2);
    assert_int_equal(acache_put(s, &b, x, LEN, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &b, ACACHE_GET_DATA, &evicted), ACACHE_OK);
    for (uint32_t i = 100; i < 300; i++) {
        acache_id c = tu_id(i);
        assert_int_equal(acache_put(s, &c, y, LEN, NULL), ACACHE_OK);
    }
    assert_false(is_hit(s, &b, NULL));
    assert_memory_equal(evicted.data, x, LEN);

    acache_id d = tu_id(3);
    assert_int_equal(acache_put(s, &d, x, LEN, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &d, ACACHE_GET_DATA, &deleted), ACACHE_OK);
    assert_int_equal(acache_delete(s, &d), ACACHE_OK);
    assert_memory_equal(deleted.data, x, LEN);

    assert_int_equal(acache_put(s, &d, y, LEN, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &d, ACACHE_GET_DATA, &closed), ACACHE_OK);
    acache_close(s);
    assert_memory_equal(closed.data, y, LEN);

    acache_result_release(&replaced);
    acache_result_release(&evicted);
    acache_result_release(&deleted);
    acache_result_release(&closed);
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */

enum { HAMMER_THREADS = 8, HAMMER_KEYS = 64, HAMMER_OPS = 20000 };

/* Bytes of version v of key k: an 8-byte header {k, v} then filler. The
 * length depends on (k, v) so replaces change the size too. */
static size_t hammer_len(uint32_t k, uint32_t v)
{
    return 8 + (size_t)((k * 2654435761u ^ v * 40503u) % 6000u);
}

static void hammer_fill(unsigned char *buf, uint32_t k, uint32_t v)
{
    size_t len = hammer_len(k, v);
    memcpy(buf, &k, 4);
    memcpy(buf + 4, &v, 4);
    tu_fill(buf + 8, len - 8, k * 7919u ^ v);
}

typedef struct hammer_arg {
    acache_store *s;
    const acache_id *keys;
    unsigned idx;
    uint64_t hits, misses, bad;
} hammer_arg;

static void *hammer_main(void *p)
{
    hammer_arg *h = p;
    unsigned char buf[8 + 6000], want[8 + 6000];
    uint64_t x = 0x9E3779B97F4A7C15ull * (h->idx + 1);
    for (uint32_t n = 0; n < HAMMER_OPS; n++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t k = (uint32_t)(x % HAMMER_KEYS);
        unsigned op = (unsigned)((x >> 20) % 16);
        const acache_id *key = &h->keys[k];
        if (op < 4) {
            uint32_t v = (h->idx << 24) | n;
            hammer_fill(buf, k, v);
            if (acache_put(h->s, key, buf, hammer_len(k, v), NULL) != ACACHE_OK)
                h->bad++;
        } else if (op == 4) {
            /* a streamed put in two halves */
            uint32_t v = (h->idx << 24) | n;
            size_t len = hammer_len(k, v);
            acache_put_stream *ps = NULL;
            hammer_fill(buf, k, v);
            if (acache_put_begin(h->s, key, &ps) != ACACHE_OK ||
                acache_put_write(ps, buf, len / 2) != ACACHE_OK ||
                acache_put_write(ps, buf + len / 2, len - len / 2) != ACACHE_OK ||
                acache_put_commit(ps, NULL, len, NULL) != ACACHE_OK)
                h->bad++;
        } else if (op == 5) {
            acache_status st = acache_delete(h->s, key);
            if (st != ACACHE_OK && st != ACACHE_MISS)
                h->bad++;
        } else {
            acache_result r;
            acache_status st = acache_get(h->s, key, ACACHE_GET_DATA, &r);
            if (st == ACACHE_MISS) {
                h->misses++;
                continue;
            }
            if (st != ACACHE_OK || r.size < 8) {
                h->bad++;
                acache_result_release(&r);
                continue;
            }
            uint32_t rk, rv;
            memcpy(&rk, r.data, 4);
            memcpy(&rv, (const unsigned char *)r.data + 4, 4);
            acache_id sum;
            acache_id_of_bytes(r.data, r.size, &sum);
            if (rk != k || r.size != hammer_len(k, rv) ||
                memcmp(sum.bytes, r.output_id.bytes, ACACHE_ID_SIZE) != 0) {
                h->bad++;
            } else {
                hammer_fill(want, k, rv);
                if (memcmp(want, r.data, r.size) != 0)
                    h->bad++;
                else
                    h->hits++;
            }
            acache_result_release(&r);
        }
    }
    return NULL;
}

static void hammer(const char *spec)
{
    acache_store *s = open_mem(spec);
    acache_id keys[HAMMER_KEYS];
    for (uint32_t k = 0; k < HAMMER_KEYS; k++)
        keys[k] = tu_id(k);
    pthread_t th[HAMMER_THREADS];
    hammer_arg args[HAMMER_THREADS];
    for (unsigned i = 0; i < HAMMER_THREADS; i++) {
        args[i] = (hammer_arg){ .s = s, .keys = keys, .idx = i };
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &args[i]), 0);
    }
    uint64_t hits = 0, bad = 0;
    for (unsigned i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        hits += args[i].hits;
        bad += args[i].bad;
    }
    assert_int_equal(bad, 0);
    assert_true(hits > 0);
    acache_stats stats;
    acache_get_stats(s, &stats);
    assert_int_equal(stats.errors, 0);
    acache_close(s);
}

static void test_threads_hammer(void **state)
{
    (void)state;
    hammer("mem:?max-size=256M");   /* plenty of room: mostly hits */
    hammer("mem:?max-size=128K");   /* evicting all the time */
    hammer("mem:?max-size=128K&scope=thread");
}

/* ---- scope=thread ---- */

typedef struct scope_arg {
    acache_store *s;
    acache_id mine, other;
    int other_status, mine_status;
    acache_result kept;            /* a reference handed back to main */
    pthread_barrier_t *stop;       /* when set: wait twice before exiting */
} scope_arg;

static void *scope_main(void *p)
{
    scope_arg *a = p;
    acache_result r;
    a->other_status = acache_get(a->s, &a->other, 0, &r);
    if (acache_put(a->s, &a->mine, "thread data", 11, NULL) != ACACHE_OK)
        a->mine_status = -100;
    else
        a->mine_status = acache_get(a->s, &a->mine, ACACHE_GET_DATA, &a->kept);
    for (uint32_t i = 0; i < 50; i++) {
        char buf[500];
        acache_id id = a->mine;
        id.bytes[31] ^= (uint8_t)(i + 1);
        tu_fill(buf, sizeof buf, i);
        acache_put(a->s, &id, buf, sizeof buf, NULL);
    }
    if (a->stop) {
        pthread_barrier_wait(a->stop); /* cache populated */
        pthread_barrier_wait(a->stop); /* store closed: exit now */
    }
    return NULL;
}

static void test_scope_thread(void **state)
{
    (void)state;
    acache_store *s = open_mem("mem:?scope=thread&max-size=1M");
    acache_id a = tu_id(1), b = tu_id(2);
    assert_int_equal(acache_put(s, &a, "main", 4, NULL), ACACHE_OK);
    expect_hit(s, &a, "main", 4);

    /* thread B does not see A's entry, and A does not see B's */
    scope_arg arg = { .s = s, .mine = b, .other = a };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, scope_main, &arg), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(arg.other_status, ACACHE_MISS);
    assert_int_equal(arg.mine_status, ACACHE_OK);
    assert_false(is_hit(s, &b, NULL));
    expect_hit(s, &a, "main", 4);
    assert_int_equal(acache_delete(s, &b), ACACHE_MISS);
    /* the thread's cache is gone, its reference is not */
    assert_int_equal(arg.kept.size, 11);
    assert_memory_equal(arg.kept.data, "thread data", 11);
    acache_result_release(&arg.kept);

    /* several threads that fill their caches and exit: freed at exit */
    enum { NT = 6 };
    pthread_t ths[NT];
    scope_arg args[NT];
    for (unsigned i = 0; i < NT; i++) {
        args[i] = (scope_arg){ .s = s, .mine = tu_id(100 + i), .other = a };
        assert_int_equal(pthread_create(&ths[i], NULL, scope_main, &args[i]), 0);
    }
    for (unsigned i = 0; i < NT; i++) {
        assert_int_equal(pthread_join(ths[i], NULL), 0);
        assert_int_equal(args[i].other_status, ACACHE_MISS);
        assert_int_equal(args[i].mine_status, ACACHE_OK);
        acache_result_release(&args[i].kept);
    }

    /* threads still alive at close: close frees their caches, and their
     * exit afterwards must not touch the closed store */
    pthread_barrier_t stop;
    assert_int_equal(pthread_barrier_init(&stop, NULL, NT + 1), 0);
    for (unsigned i = 0; i < NT; i++) {
        args[i] = (scope_arg){ .s = s, .mine = tu_id(200 + i), .other = a, .stop = &stop };
        assert_int_equal(pthread_create(&ths[i], NULL, scope_main, &args[i]), 0);
    }
    pthread_barrier_wait(&stop);
    acache_close(s);
    pthread_barrier_wait(&stop);
    for (unsigned i = 0; i < NT; i++) {
        assert_int_equal(pthread_join(ths[i], NULL), 0);
        assert_int_equal(args[i].mine_status, ACACHE_OK);
        assert_memory_equal(args[i].kept.data, "thread data", 11);
        acache_result_release(&args[i].kept);
    }
    pthread_barrier_destroy(&stop);
}

/* A store per thread-scope open: two stores do not share thread caches,
 * and reopening after close works (pthread keys are recycled). */
static void test_scope_thread_reopen(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        acache_store *s1 = open_mem("mem:?scope=thread");
        acache_store *s2 = open_mem("mem:?scope=thread");
        acache_id a = tu_id(1);
        assert_int_equal(acache_put(s1, &a, "one", 3, NULL), ACACHE_OK);
        assert_false(is_hit(s2, &a, NULL));
        expect_hit(s1, &a, "one", 3);
        assert_int_equal(acache_put(s2, &a, "two", 3, NULL), ACACHE_OK);
        expect_hit(s2, &a, "two", 3);
        expect_hit(s1, &a, "one", 3);
        acache_close(s1);
        expect_hit(s2, &a, "two", 3);
        acache_close(s2);
    }
}

/* ---- options ---- */

static void expect_einval(const char *spec, const char *needle)
{
    static int sentinel;
    acache_store *s = (acache_store *)&sentinel; /* must come back NULL */
    acache_status st = acache_open(spec, &s);
    if (st != ACACHE_EINVAL)
        fail_msg("acache_open(%s) = %s, want EINVAL", spec, acache_status_str(st));
    assert_null(s);
    const char *msg = acache_last_error();
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    if (needle && !strstr(msg, needle))
        fail_msg("acache_open(%s): message '%s' does not mention '%s'", spec, msg, needle);
}

static void test_bad_options(void **state)
{
    (void)state;
    expect_einval("mem:?max-size=abc", "abc");
    expect_einval("mem:?max-size=12Q", "12Q");
    expect_einval("mem:?max-size=0", "max-size");
    expect_einval("mem:?scope=bogus", "bogus");
    expect_einval("mem:?scope=", "scope");
    expect_einval("mem:?frobnicate=1", "frobnicate");
    expect_einval("mem:?max-size=1M&frobnicate=1", "frobnicate");
    expect_einval("mem:/some/path", "/some/path");

    /* and the good ones open */
    const char *good[] = { "mem:", "mem:?", "mem:?max-size=1G&scope=shared",
                           "mem:?scope=thread&max-size=100", "mem:?max-size=1" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        acache_close(open_mem(good[i]));

    /* a store too small for any entry still accepts puts */
    acache_store *s = open_mem("mem:?max-size=1");
    acache_id a = tu_id(1);
    assert_int_equal(acache_put(s, &a, "", 0, NULL), ACACHE_OK);
    assert_false(is_hit(s, &a, NULL));
    acache_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_miss),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_lru_bound),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_data_ref_outlives_entry),
        cmocka_unit_test(test_threads_hammer),
        cmocka_unit_test(test_scope_thread),
        cmocka_unit_test(test_scope_thread_reopen),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
