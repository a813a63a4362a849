/*
 * test_prefetch_claims.c - the session prefetch's claims, on fake storage
 * operations (prefetch_ops): a lookup of an id a prefetch thread is
 * fetching waits for that fetch, is woken when it ends (and not fetched a
 * second time), and then looks locally again.
 *
 * The fake fetch blocks on a gate the test opens, and the test opens it
 * only once prefetch_waiting() says the lookup waits: no sleeps decide
 * the order. It must never assert a timing.
 */
#include "compose/prefetch.h"
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { NIDS = 2 };

typedef struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    acache_id ids[NIDS];
    bool open[NIDS];     /* the gate of each id's fetch */
    bool started[NIDS];  /* its fetch has begun */
    int fetches[NIDS];   /* and how often it ran */
} fake;

static int index_of(fake *f, const acache_id *id)
{
    for (int i = 0; i < NIDS; i++)
        if (!memcmp(f->ids[i].bytes, id->bytes, ACACHE_ID_SIZE))
            return i;
    return -1;
}

/* Any key names the manifest listing ids[0], ids[1]. */
static acache_status fake_load(void *ctx, const acache_id *key, bool local_only,
                               unsigned char **data, size_t *len)
{
    fake *f = ctx;
    (void)key;
    (void)local_only;
    size_t magic = sizeof PREFETCH_MAGIC - 1;
    *len = magic + NIDS * ACACHE_ID_SIZE;
    *data = malloc(*len);
    assert_non_null(*data);
    memcpy(*data, PREFETCH_MAGIC, magic);
    for (int i = 0; i < NIDS; i++)
        memcpy(*data + magic + (size_t)i * ACACHE_ID_SIZE, f->ids[i].bytes, ACACHE_ID_SIZE);
    return ACACHE_OK;
}

static bool fake_have(void *ctx, const acache_id *action)
{
    fake *f = ctx;
    int i = index_of(f, action);
    pthread_mutex_lock(&f->mu);
    bool have = i >= 0 && f->fetches[i] > 0;
    pthread_mutex_unlock(&f->mu);
    return have;
}

static acache_status fake_fetch(void *ctx, const acache_id *action)
{
    fake *f = ctx;
    int i = index_of(f, action);
    assert_true(i >= 0);
    pthread_mutex_lock(&f->mu);
    f->started[i] = true;
    pthread_cond_broadcast(&f->cv);
    while (!f->open[i])
        pthread_cond_wait(&f->cv, &f->mu);
    f->fetches[i]++;
    pthread_mutex_unlock(&f->mu);
    return ACACHE_OK;
}

static acache_status fake_store(void *ctx, const acache_id *key, const void *data, size_t len)
{
    (void)ctx;
    (void)key;
    (void)data;
    (void)len;
    return ACACHE_OK;
}

static const prefetch_ops fake_ops = { fake_load, fake_have, fake_fetch, fake_store, NULL };

typedef struct lookup {
    prefetch *p;
    acache_id id;
    bool claimed; /* prefetch_claim's answer */
    pthread_t thread;
} lookup;

static void *lookup_main(void *arg)
{
    lookup *l = arg;
    l->claimed = prefetch_claim(l->p, &l->id);
    if (l->claimed)
        prefetch_release(l->p, &l->id);
    return NULL;
}

static void wait_started(fake *f, int i)
{
    pthread_mutex_lock(&f->mu);
    while (!f->started[i])
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void wait_waiting(prefetch *p, const acache_id *id, unsigned n)
{
    for (double until = tu_now_s() + 30; prefetch_waiting(p, id) < n;) {
        if (tu_now_s() > until)
            fail_msg("the lookup did not come to wait for the fetch");
        tu_sleep_ms(1);
    }
}

static void open_gate(fake *f, int i)
{
    pthread_mutex_lock(&f->mu);
    f->open[i] = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Two lookups wait for the fetch of ids[0] under way; a claim of another id
 * taken and released meanwhile leaves them waiting; the end of the fetch
 * wakes both, neither fetches again. Then the same for ids[1] and one
 * lookup. */
static void test_lookup_waits_for_its_fetch(void **state)
{
    (void)state;
    fake f = { .ids = { tu_id(1), tu_id(2) } };
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    prefetch *p = prefetch_new(1, false, &fake_ops, &f);
    assert_non_null(p);
    acache_id first = tu_id(100), other = tu_id(3);
    prefetch_lookup(p, &first);
    prefetch_miss(p);
    wait_started(&f, 0);

    lookup l[3] = { { p, f.ids[0], true, 0 }, { p, f.ids[0], true, 0 }, { p, f.ids[1], true, 0 } };
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&l[i].thread, NULL, lookup_main, &l[i]), 0);
    wait_waiting(p, &f.ids[0], 2);
    assert_true(prefetch_claim(p, &other));
    prefetch_release(p, &other);
    assert_int_equal(prefetch_waiting(p, &f.ids[0]), 2);
    open_gate(&f, 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(l[i].thread, NULL);
        assert_false(l[i].claimed); /* waited: look locally again */
    }
    assert_int_equal(prefetch_waiting(p, &f.ids[0]), 0);

    wait_started(&f, 1);
    assert_int_equal(pthread_create(&l[2].thread, NULL, lookup_main, &l[2]), 0);
    wait_waiting(p, &f.ids[1], 1);
    open_gate(&f, 1);
    pthread_join(l[2].thread, NULL);
    assert_false(l[2].claimed);
    prefetch_close(p);
    assert_int_equal(f.fetches[0], 1);
    assert_int_equal(f.fetches[1], 1);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_waits_for_its_fetch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
