/*
 * test_fingerprint.c - engine fingerprints and namespaced stores: every
 * field changes the id, CPU features are a set, an entry stored under one
 * fingerprint is a miss under any other (and with none), and the host
 * detection helpers say something sensible.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("fp");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static acache_id fp_id(const acache_fingerprint *fp)
{
    acache_id id;
    assert_int_equal(acache_fingerprint_id(fp, &id), ACACHE_OK);
    return id;
}

static void test_every_field_counts(void **state)
{
    (void)state;
    acache_part extra = { "llvm-17", 7 };
    acache_fingerprint base = { "engine", "1.2.3", "x86_64-linux", "avx2,sse4.2", "-O2", &extra, 1 };
    acache_id a = fp_id(&base), b;
    acache_fingerprint v[7];
    for (int i = 0; i < 7; i++)
        v[i] = base;
    v[0].name = "engine2";
    v[1].version = "1.2.4";
    v[2].target = "aarch64-linux";
    v[3].cpu_features = "avx2";
    v[4].flags = "-O3";
    v[5].nextra = 0;
    acache_part other = { "llvm-18", 7 };
    v[6].extra = &other;
    for (int i = 0; i < 7; i++) {
        b = fp_id(&v[i]);
        assert_memory_not_equal(&a, &b, sizeof a);
    }
    /* Fields do not run into each other. */
    acache_fingerprint x = { "ab", "c", NULL, NULL, NULL, NULL, 0 };
    acache_fingerprint y = { "a", "bc", NULL, NULL, NULL, NULL, 0 };
    a = fp_id(&x);
    b = fp_id(&y);
    assert_memory_not_equal(&a, &b, sizeof a);
    /* Same input, same id; NULL is "". */
    acache_fingerprint n1 = { "e", NULL, "", NULL, NULL, NULL, 0 };
    acache_fingerprint n2 = { "e", "", NULL, "", "", NULL, 0 };
    a = fp_id(&n1);
    b = fp_id(&n2);
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_cpu_features_are_a_set(void **state)
{
    (void)state;
    acache_fingerprint x = { "e", "1", "t", "sse4.2,AVX2, bmi2", NULL, NULL, 0 };
    acache_fingerprint y = { "e", "1", "t", "bmi2 avx2,avx2,sse4.2", NULL, NULL, 0 };
    acache_id a = fp_id(&x), b = fp_id(&y);
    assert_memory_equal(&a, &b, sizeof a);
    y.cpu_features = "bmi2,avx2";
    b = fp_id(&y);
    assert_memory_not_equal(&a, &b, sizeof a);
}

static void test_string_form(void **state)
{
    (void)state;
    char s[ACACHE_FINGERPRINT_STRING_SIZE], hex[ACACHE_ID_HEX_SIZE];
    acache_fingerprint fp = { "my wasm", "1.0/rc1", "x86_64-linux", "avx2", "-O2", NULL, 0 };
    assert_int_equal(acache_fingerprint_string(&fp, s, sizeof s), ACACHE_OK);
    acache_id id = fp_id(&fp);
    acache_id_to_hex(&id, hex);
    char want[256];
    snprintf(want, sizeof want, "my_wasm-1.0_rc1-x86_64_linux-%.16s", hex);
    assert_string_equal(s, want);
    /* Long fields are cut; the result always fits. */
    char longname[400];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    acache_fingerprint l = { longname, longname, longname, NULL, NULL, NULL, 0 };
    assert_int_equal(acache_fingerprint_string(&l, s, sizeof s), ACACHE_OK);
    assert_true(strlen(s) < sizeof s);
    assert_int_equal(acache_fingerprint_string(&fp, s, 16), ACACHE_EINVAL);
}

static void test_host(void **state)
{
    (void)state;
    char features[ACACHE_CPU_FEATURES_SIZE];
    const char *target = acache_host_target();
    assert_non_null(strchr(target, '-'));
    assert_int_equal(acache_cpu_features(features, sizeof features), ACACHE_OK);
    print_message("host: %s, features: %s\n", target, features);
#if defined(__x86_64__)
    assert_string_equal(target, "x86_64-linux");
    /* SSE2 is part of x86-64 itself. */
    assert_non_null(strstr(features, "sse2"));
#elif defined(__aarch64__)
    assert_non_null(strstr(features, "asimd"));
#endif
    /* Sorted and without repeats: canonical already. */
    char *copy = strdup(features), *save = NULL, *prev = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (prev)
            assert_true(strcmp(prev, t) < 0);
        prev = t;
    }
    free(copy);
    assert_int_equal(acache_cpu_features(features, 8), ACACHE_EINVAL);
}

static acache_store *ns_disk(const acache_id *fp)
{
    acache_store *s = NULL;
    assert_int_equal(acache_namespace(tu_open_disk(dir, ""), fp, &s), ACACHE_OK);
    return s;
}

static int builds;

static acache_status build_other(void *ctx, const acache_id *action, acache_put_stream *out)
{
    (void)action;
    builds++;
    return acache_put_write(out, ctx, strlen(ctx));
}

static void test_mismatch_is_a_miss(void **state)
{
    (void)state;
    acache_fingerprint f1 = { "engine", "1", "x86_64-linux", "avx2", "-O2", NULL, 0 };
    acache_fingerprint f2 = f1;
    f2.cpu_features = "sse2"; /* the same engine on a machine without AVX2 */
    acache_id id1 = fp_id(&f1), id2 = fp_id(&f2), action = tu_id(1);
    acache_result r;

    acache_store *s1 = ns_disk(&id1);
    assert_int_equal(acache_put(s1, &action, "avx2 code", 9, NULL), ACACHE_OK);
    acache_close(s1);

    acache_store *s2 = ns_disk(&id2), *raw = tu_open_disk(dir, "");
    assert_int_equal(acache_get(s2, &action, ACACHE_GET_DATA, &r), ACACHE_MISS);
    assert_int_equal(acache_get(raw, &action, 0, &r), ACACHE_MISS);
    /* get_or_build under the other fingerprint builds its own. */
    builds = 0;
    assert_int_equal(acache_get_or_build_ex(s2, &action, build_other, "sse2 code",
                                            &(acache_build_options){ ACACHE_GET_DATA, 0, NULL },
                                            &r),
                     ACACHE_OK);
    assert_int_equal(builds, 1);
    assert_memory_equal(r.data, "sse2 code", 9);
    acache_result_release(&r);

    /* Each namespace keeps its own; the store reopened finds them. */
    s1 = ns_disk(&id1);
    assert_int_equal(acache_get(s1, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(r.data, "avx2 code", 9);
    acache_result_release(&r);
    assert_int_equal(acache_get_or_build(s1, &action, build_other, "never", &r), ACACHE_OK);
    assert_int_equal(builds, 1);

    /* Delete goes through the namespace too. */
    assert_int_equal(acache_delete(s1, &action), ACACHE_OK);
    assert_int_equal(acache_get(s1, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(acache_get(s2, &action, 0, &r), ACACHE_OK);
    acache_stats st;
    acache_get_stats(s2, &st);
    assert_int_equal(st.puts, 1);
    acache_close(s1);
    acache_close(s2);
    acache_close(raw);
}

/* A namespace over tiers and over mem: the wrapper composes. */
static void test_namespace_composes(void **state)
{
    (void)state;
    acache_fingerprint f = { "engine", "2", NULL, NULL, NULL, NULL, 0 };
    acache_id id = fp_id(&f), action = tu_id(2);
    acache_store *mem = NULL, *tiers = NULL, *ns = NULL;
    assert_int_equal(acache_open("mem:", &mem), ACACHE_OK);
    acache_store *both[2] = { mem, tu_open_disk(dir, "") };
    assert_int_equal(acache_tiers(both, 2, &tiers), ACACHE_OK);
    assert_int_equal(acache_namespace(tiers, &id, &ns), ACACHE_OK);
    assert_int_equal(acache_put(ns, &action, "bytes", 5, NULL), ACACHE_OK);
    acache_result r;
    assert_int_equal(acache_get(ns, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(r.data, "bytes", 5);
    acache_result_release(&r);
    acache_close(ns);
    /* The disk tier holds it under the mapped id only. */
    acache_store *raw = tu_open_disk(dir, "");
    assert_int_equal(acache_get(raw, &action, 0, &r), ACACHE_MISS);
    acache_close(raw);
    assert_int_equal(acache_namespace(NULL, &id, &ns), ACACHE_EINVAL);
}

static void test_fingerprint_key(void **state)
{
    (void)state;
    acache_fingerprint f1 = { "e", "1", NULL, NULL, NULL, NULL, 0 }, f2 = f1;
    f2.version = "2";
    acache_id id1 = fp_id(&f1), id2 = fp_id(&f2), k1, k2, k3;
    acache_part input = { "module bytes", 12 };
    assert_int_equal(acache_fingerprint_key(&k1, &id1, &input, 1), ACACHE_OK);
    assert_int_equal(acache_fingerprint_key(&k2, &id2, &input, 1), ACACHE_OK);
    assert_int_equal(acache_fingerprint_key(&k3, &id1, &input, 1), ACACHE_OK);
    assert_memory_not_equal(&k1, &k2, sizeof k1);
    assert_memory_equal(&k1, &k3, sizeof k1);
    /* The same as key_derive under the fingerprint's hex form. */
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&id1, hex);
    assert_int_equal(acache_key_derive(&k2, hex, &input, 1), ACACHE_OK);
    assert_memory_equal(&k1, &k2, sizeof k1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_counts),
        cmocka_unit_test(test_cpu_features_are_a_set),
        cmocka_unit_test(test_string_form),
        cmocka_unit_test(test_host),
        cmocka_unit_test_setup_teardown(test_mismatch_is_a_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_composes, setup, teardown),
        cmocka_unit_test(test_fingerprint_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
