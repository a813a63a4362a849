/*
 * test_tiers.c - the tier combinator: read-through with promotion, writes to
 * every tier, and lower tiers that fail without failing the caller.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
    char *dir1, *dir2;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir1 = tu_mkdtemp("tier1");
    f->dir2 = tu_mkdtemp("tier2");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->dir1);
    tu_rmtree(f->dir2);
    free(f->dir1);
    free(f->dir2);
    free(f);
    return 0;
}

static acache_store *chain2(acache_store *a, acache_store *b)
{
    acache_store *stores[2] = { a, b }, *t = NULL;
    assert_int_equal(acache_tiers(stores, 2, &t), ACACHE_OK);
    return t;
}

static void record_path(const char *dir, const acache_id *id, char *out, size_t size)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    snprintf(out, size, "%s/v1/a/%.2s/%s", dir, hex, hex);
}

static void test_put_writes_all(void **state)
{
    fixture *f = *state;
    acache_store *t = chain2(tu_open_disk(f->dir1, ""), tu_open_disk(f->dir2, ""));
    acache_id action = tu_id(1), out;
    char buf[777];
    tu_fill(buf, sizeof buf, 1);
    assert_int_equal(acache_put(t, &action, buf, sizeof buf, &out), ACACHE_OK);
    acache_close(t);
    const char *dirs[] = { f->dir1, f->dir2 };
    for (int i = 0; i < 2; i++) {
        acache_store *s = tu_open_disk(dirs[i], "");
        acache_result r;
        assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
        assert_memory_equal(&r.output_id, &out, sizeof out);
        assert_memory_equal(r.data, buf, sizeof buf);
        acache_result_release(&r);
        acache_close(s);
    }
}

static void test_promotion(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(2), out;
    char buf[2048];
    tu_fill(buf, sizeof buf, 2);
    acache_store *lower = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_put(lower, &action, buf, sizeof buf, &out), ACACHE_OK);
    acache_close(lower);

    acache_store *t = chain2(tu_open_disk(f->dir1, ""), tu_open_disk(f->dir2, ""));
    acache_result r;
    assert_int_equal(acache_get(t, &action, 0, &r), ACACHE_OK);
    assert_null(r.data);
    /* The answer names the first tier's copy. */
    assert_int_equal(strncmp(r.path, f->dir1, strlen(f->dir1)), 0);
    size_t len;
    void *data = tu_read_file(r.path, &len);
    assert_int_equal(len, sizeof buf);
    assert_memory_equal(data, buf, sizeof buf);
    free(data);
    acache_close(t);
    /* The first tier now answers on its own. */
    acache_store *upper = tu_open_disk(f->dir1, "");
    assert_int_equal(acache_get(upper, &action, 0, &r), ACACHE_OK);
    assert_memory_equal(&r.output_id, &out, sizeof out);
    acache_close(upper);
}

static void test_mem_over_disk(void **state)
{
    fixture *f = *state;
    acache_store *mem = NULL;
    assert_int_equal(acache_open("mem:?max-size=16M", &mem), ACACHE_OK);
    acache_id action = tu_id(3);
    char buf[4096];
    tu_fill(buf, sizeof buf, 3);
    acache_store *lower = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_put(lower, &action, buf, sizeof buf, NULL), ACACHE_OK);
    acache_close(lower);
    acache_store *t = chain2(mem, tu_open_disk(f->dir2, ""));
    acache_result r;
    assert_int_equal(acache_get(t, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(r.data, buf, sizeof buf);
    acache_result_release(&r);
    /* Gone from disk, still served from memory. */
    lower = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_delete(lower, &action), ACACHE_OK);
    acache_close(lower);
    assert_int_equal(acache_get(t, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(r.data, buf, sizeof buf);
    acache_result_release(&r);
    acache_close(t);
}

static void test_lower_tier_failures(void **state)
{
    fixture *f = *state;
    acache_store *t = chain2(tu_open_disk(f->dir1, ""), tu_open_disk(f->dir2, ""));
    /* Break the lower tier: its temp directory becomes a file, so it can
     * take no put. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/v1/tmp", f->dir2);
    assert_int_equal(rmdir(tmp), 0);
    tu_write_file(tmp, "x", 1);
    acache_id action = tu_id(4);
    assert_int_equal(acache_put(t, &action, "abc", 3, NULL), ACACHE_OK);
    acache_result r;
    assert_int_equal(acache_get(t, &action, 0, &r), ACACHE_OK);

    /* A lower tier whose get fails (its record is a directory) does not
     * fail a get the first tier answers... */
    acache_id other = tu_id(5);
    char rec[4200];
    record_path(f->dir2, &other, rec, sizeof rec);
    char shard[4200];
    snprintf(shard, sizeof shard, "%.*s", (int)(strrchr(rec, '/') - rec), rec);
    mkdir(shard, 0700);
    assert_int_equal(mkdir(rec, 0700), 0);
    assert_int_equal(acache_get(t, &other, 0, &r), ACACHE_EIO);
    assert_true(strlen(acache_last_error()) > 0);
    acache_store *upper = tu_open_disk(f->dir1, "");
    assert_int_equal(acache_put(upper, &other, "xyz", 3, NULL), ACACHE_OK);
    acache_close(upper);
    assert_int_equal(acache_get(t, &other, 0, &r), ACACHE_OK);
    acache_close(t);
}

static void test_first_tier_failure_fails_put(void **state)
{
    fixture *f = *state;
    acache_store *t = chain2(tu_open_disk(f->dir1, ""), tu_open_disk(f->dir2, ""));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/v1/tmp", f->dir1);
    assert_int_equal(rmdir(tmp), 0);
    tu_write_file(tmp, "x", 1);
    acache_id action = tu_id(6);
    assert_true(acache_put(t, &action, "abc", 3, NULL) < 0);
    acache_stats st;
    acache_get_stats(t, &st);
    assert_int_equal(st.puts, 0);
    assert_true(st.errors >= 1);
    acache_close(t);
}

static void test_poisoned_lower_tier(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(7), out;
    char buf[1000];
    tu_fill(buf, sizeof buf, 7);
    acache_store *lower = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_put(lower, &action, buf, sizeof buf, &out), ACACHE_OK);
    acache_close(lower);
    /* Same size, other bytes, under the same name. */
    char hex[ACACHE_ID_HEX_SIZE], opath[4200];
    acache_id_to_hex(&out, hex);
    snprintf(opath, sizeof opath, "%s/v1/o/%.2s/%s", f->dir2, hex, hex);
    tu_fill(buf, sizeof buf, 8);
    tu_write_file(opath, buf, sizeof buf);
    acache_store *t = chain2(tu_open_disk(f->dir1, ""), tu_open_disk(f->dir2, ""));
    acache_result r;
    assert_int_equal(acache_get(t, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(acache_get(t, &action, ACACHE_GET_DATA, &r), ACACHE_MISS);
    acache_close(t);
    acache_store *upper = tu_open_disk(f->dir1, "");
    assert_int_equal(acache_get(upper, &action, 0, &r), ACACHE_MISS);
    acache_close(upper);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    acache_store *t = NULL;
    assert_int_equal(acache_tiers(NULL, 0, &t), ACACHE_EINVAL);
    acache_store *one = NULL;
    assert_int_equal(acache_open("mem:", &one), ACACHE_OK);
    acache_store *stores[2] = { one, NULL };
    assert_int_equal(acache_tiers(stores, 2, &t), ACACHE_EINVAL); /* takes ownership: no leak */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_writes_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promotion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mem_over_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lower_tier_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_tier_failure_fails_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poisoned_lower_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
