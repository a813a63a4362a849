/*
 * test_prefetch.c - session prefetch (src/compose/prefetch.c) driven
 * directly, with storage operations faked here: no store, no server.
 *
 * Covers what the remote tests cannot pin down: prefetch_close() wakes a
 * loader that waits for the next first lookup instead of leaving it to its
 * timeout (seen through the test points of os/hook.h), a manifest that
 * repeats an id has it fetched once, not once per repeat, and a batch
 * releases each of its ids as soon as that id is over.
 */
#include "testutil.h"

#include "compose/prefetch.h"
#include "os/hook.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Fake storage                                                         */

typedef struct fake {
    unsigned char *manifest;    /* what load answers for any key, or NULL */
    size_t manifest_len;
    atomic_int loads, fetches;
    acache_status fetch_status;
} fake;

static acache_status fake_load(void *ctx, const acache_id *key, bool local_only,
                               unsigned char **data, size_t *len)
{
    fake *f = ctx;
    (void)key;
    atomic_fetch_add(&f->loads, 1);
    if (local_only || !f->manifest)
        return ACACHE_MISS;
    *data = malloc(f->manifest_len);
    assert_non_null(*data);
    memcpy(*data, f->manifest, f->manifest_len);
    *len = f->manifest_len;
    return ACACHE_OK;
}

static bool fake_have(void *ctx, const acache_id *action)
{
    (void)ctx;
    (void)action;
    return false;
}

static acache_status fake_fetch(void *ctx, const acache_id *action)
{
    fake *f = ctx;
    (void)action;
    atomic_fetch_add(&f->fetches, 1);
    return f->fetch_status;
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

/* Waits (at most 30 s) until the prefetch says it has finished. */
static void wait_finished(prefetch *p)
{
    for (int i = 0; i < 30000; i++) {
        acache_prefetch_info info;
        prefetch_info(p, &info);
        if (info.finished)
            return;
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
    }
    fail_msg("the prefetch did not finish");
}

/* ------------------------------------------------------------------ */
/* The test points                                                      */

static pthread_mutex_t hk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hk_cv = PTHREAD_COND_INITIALIZER;
static int hk_waiting;            /* loader waits begun */
static int hk_timeouts_closing;   /* waits that timed out once close had begun */
static int hk_timeouts_before;    /* ... before it */
static atomic_bool hk_closing;

static void hook(void *ctx, const char *point, const char *path)
{
    (void)ctx;
    (void)path;
    pthread_mutex_lock(&hk_mu);
    if (!strcmp(point, "prefetch-key-wait"))
        hk_waiting++;
    else if (!strcmp(point, "prefetch-key-wait-timed-out"))
        *(atomic_load(&hk_closing) ? &hk_timeouts_closing : &hk_timeouts_before) += 1;
    pthread_cond_broadcast(&hk_cv);
    pthread_mutex_unlock(&hk_mu);
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */

/* A session with one first lookup and no manifest under it: the loader
 * waits for a second lookup that never comes. Closing then must wake it:
 * the wait may not end by its timeout (PREFETCH_KEY_WAIT_NS) once the
 * close has begun. (Tried a few times: a machine slow enough to let the
 * wait time out before the close is reached proves nothing either way.) */
static void test_close_wakes_loader(void **state)
{
    (void)state;
    int proved = 0;
    os_hook_set(hook, NULL);
    for (int round = 0; round < 5 && proved < 2; round++) {
        fake f = { .fetch_status = ACACHE_OK };
        pthread_mutex_lock(&hk_mu);
        hk_waiting = hk_timeouts_closing = hk_timeouts_before = 0;
        pthread_mutex_unlock(&hk_mu);
        atomic_store(&hk_closing, false);
        prefetch *p = prefetch_new(2, false, &fake_ops, &f);
        assert_non_null(p);
        acache_id first = tu_id(1);
        prefetch_lookup(p, &first);
        prefetch_miss(p);
        pthread_mutex_lock(&hk_mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30;
        while (hk_waiting == 0 && pthread_cond_timedwait(&hk_cv, &hk_mu, &until) == 0)
            ;
        assert_int_equal(hk_waiting, 1);
        pthread_mutex_unlock(&hk_mu);
        atomic_store(&hk_closing, true);
        prefetch_close(p);
        pthread_mutex_lock(&hk_mu);
        int closing = hk_timeouts_closing, before = hk_timeouts_before;
        pthread_mutex_unlock(&hk_mu);
        assert_int_equal(closing, 0);
        assert_int_equal(atomic_load(&f.loads), 1);
        proved += before == 0;
    }
    os_hook_set(NULL, NULL);
    assert_true(proved >= 1);
}

/* A manifest listing one id three times (and another once): each is
 * fetched once, so a lookup of it can wait for at most one fetch, even
 * when the fetches fail. */
static void test_manifest_repeats_fetched_once(void **state)
{
    (void)state;
    const acache_id ids[4] = { tu_id(7), tu_id(7), tu_id(8), tu_id(7) };
    size_t magic = sizeof PREFETCH_MAGIC - 1;
    unsigned char buf[sizeof PREFETCH_MAGIC - 1 + 4 * ACACHE_ID_SIZE];
    memcpy(buf, PREFETCH_MAGIC, magic);
    for (size_t i = 0; i < 4; i++)
        memcpy(buf + magic + i * ACACHE_ID_SIZE, ids[i].bytes, ACACHE_ID_SIZE);
    fake f = { .manifest = buf, .manifest_len = sizeof buf, .fetch_status = ACACHE_EIO };
    /* One thread: it takes the list in order, each fetch failing. */
    prefetch *p = prefetch_new(1, false, &fake_ops, &f);
    acache_id first = tu_id(1);
    prefetch_lookup(p, &first);
    prefetch_miss(p);
    wait_finished(p);
    acache_prefetch_info info;
    prefetch_info(p, &info);
    assert_int_equal(info.loaded, 1);
    assert_int_equal(info.listed, 2);
    assert_int_equal(info.failed, 2);
    assert_int_equal(atomic_load(&f.fetches), 2);
    prefetch_close(p);
}

/* ------------------------------------------------------------------ */
/* Batches: each id is released as soon as it is over                  */

static pthread_mutex_t gt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gt_cv = PTHREAD_COND_INITIALIZER;
static bool gt_entered, gt_first_open, gt_rest_open, gt_lookup_over;
static int gt_dones;

static void gate_wait(bool *open)
{
    pthread_mutex_lock(&gt_mu);
    while (!*open)
        pthread_cond_wait(&gt_cv, &gt_mu);
    pthread_mutex_unlock(&gt_mu);
}

/* Waits for *flag like gate_wait, but at most secs seconds (a bound for a
 * hang, not a timing): whether it was set. */
static bool gate_wait_bounded(bool *flag, int secs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += secs;
    pthread_mutex_lock(&gt_mu);
    int err = 0;
    while (!*flag && err != ETIMEDOUT)
        err = pthread_cond_timedwait(&gt_cv, &gt_mu, &until);
    bool set = *flag;
    pthread_mutex_unlock(&gt_mu);
    return set;
}

static void gate_set(bool *flag)
{
    pthread_mutex_lock(&gt_mu);
    *flag = true;
    pthread_cond_broadcast(&gt_cv);
    pthread_mutex_unlock(&gt_mu);
}

/* Ends the first id when the test opens the first gate, the rest when it
 * opens the second. */
static void gated_fetch_many(void *ctx, const acache_id *actions, size_t n, prefetch_done_fn done,
                             void *dctx)
{
    fake *f = ctx;
    (void)actions;
    atomic_fetch_add(&f->fetches, (int)n);
    gate_set(&gt_entered);
    gate_wait(&gt_first_open);
    /* Counted before the call: a lookup it releases then sees the count. */
    pthread_mutex_lock(&gt_mu);
    gt_dones++;
    pthread_mutex_unlock(&gt_mu);
    done(dctx, 0, ACACHE_OK);
    gate_wait(&gt_rest_open);
    for (size_t i = 1; i < n; i++)
        done(dctx, i, ACACHE_OK);
}

static const prefetch_ops gated_ops = { fake_load, fake_have, fake_fetch, fake_store,
                                        gated_fetch_many };

typedef struct lookup {
    prefetch *p;
    acache_id id;
    atomic_bool over;
    bool fetch_it;
} lookup;

static void *lookup_main(void *arg)
{
    lookup *l = arg;
    l->fetch_it = prefetch_claim(l->p, &l->id);
    atomic_store(&l->over, true);
    gate_set(&gt_lookup_over);
    return NULL;
}

/* A lookup of the first id of a batch in flight waits for that id alone:
 * it goes on (to look in the local store again) once that id is over,
 * while the rest of the batch is still being fetched. */
static void test_batch_releases_each_id(void **state)
{
    (void)state;
    enum { N = 5 };
    size_t magic = sizeof PREFETCH_MAGIC - 1;
    unsigned char buf[sizeof PREFETCH_MAGIC - 1 + N * ACACHE_ID_SIZE];
    memcpy(buf, PREFETCH_MAGIC, magic);
    for (uint32_t i = 0; i < N; i++) {
        acache_id id = tu_id(10 + i);
        memcpy(buf + magic + i * ACACHE_ID_SIZE, id.bytes, ACACHE_ID_SIZE);
    }
    fake f = { .manifest = buf, .manifest_len = sizeof buf, .fetch_status = ACACHE_OK };
    prefetch *p = prefetch_new(1, false, &gated_ops, &f);
    acache_id first = tu_id(1);
    prefetch_lookup(p, &first);
    prefetch_miss(p);
    gate_wait(&gt_entered); /* the batch is claimed and in flight */

    lookup l = { .p = p, .id = tu_id(10) };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lookup_main, &l), 0);
    for (int i = 0; i < 30000 && prefetch_waiting(p, &l.id) == 0; i++) {
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL); /* polling for the event, bounded above */
    }
    assert_int_equal(prefetch_waiting(p, &l.id), 1);
    assert_false(atomic_load(&l.over));
    gate_set(&gt_first_open);
    bool over = gate_wait_bounded(&gt_lookup_over, 30);
    pthread_mutex_lock(&gt_mu);
    int dones = gt_dones;
    pthread_mutex_unlock(&gt_mu);
    gate_set(&gt_rest_open); /* whatever happened: let the batch end */
    pthread_join(th, NULL);
    assert_true(over);          /* released with the rest still held */
    assert_int_equal(dones, 1);
    assert_false(l.fetch_it);   /* it waited: look in the local store again */
    wait_finished(p);
    acache_prefetch_info info;
    prefetch_info(p, &info);
    assert_int_equal(info.fetched, N);
    assert_int_equal(info.waited, 1);
    assert_int_equal(atomic_load(&f.fetches), N); /* one batch, each id once */
    prefetch_close(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_wakes_loader),
        cmocka_unit_test(test_manifest_repeats_fetched_once),
        cmocka_unit_test(test_batch_releases_each_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
