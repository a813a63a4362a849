/*
 * test_trim_races.c - a trim never removes what a concurrent get or put has
 * just handed out. Each race is made to happen every time: a test hook
 * (os/hook.h) runs the get or put at the point where the trim has made its
 * decision and is about to remove the file, and the test then checks that
 * what the get or put answered is still there and whole. What a trim that
 * died left aside is put back and judged by the next.
 */
#include "testutil.h"
#include "os/hook.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEN 3000
#define MINUTE (60LL * 1000000000LL)

typedef struct race {
    acache_store *s;
    const char *point;   /* the hook point to act at */
    char hex[ACACHE_ID_HEX_SIZE]; /* ... on the path naming this id */
    int what;            /* GET_ACTION, PUT_SAME, PUT_OTHER */
    acache_id action;    /* the action the hook gets or puts */
    uint32_t seed;       /* the bytes it puts */
    int fired;
    acache_status st;
    acache_result res;   /* what the get or put answered */
} race;

enum { GET_ACTION, PUT_BYTES };

static void put_seed(acache_store *s, const acache_id *action, uint32_t seed, acache_result *res)
{
    char buf[LEN];
    acache_put_stream *ps;
    tu_fill(buf, sizeof buf, seed);
    assert_int_equal(acache_put_begin(s, action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, sizeof buf), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, res), ACACHE_OK);
}

static void at_point(void *ctx, const char *point, const char *path)
{
    race *r = ctx;
    if (r->fired || strcmp(point, r->point) != 0 || !path || !strstr(path, r->hex))
        return;
    r->fired = 1;
    if (r->what == GET_ACTION) {
        r->st = acache_get(r->s, &r->action, 0, &r->res);
    } else {
        char buf[LEN];
        acache_put_stream *ps;
        tu_fill(buf, sizeof buf, r->seed);
        r->st = acache_put_begin(r->s, &r->action, &ps);
        if (r->st == ACACHE_OK)
            r->st = acache_put_write(ps, buf, sizeof buf);
        if (r->st == ACACHE_OK)
            r->st = acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &r->res);
    }
}

/* Runs a trim with the hook r armed. */
static void trim_with(race *r, int64_t max_size, unsigned flags)
{
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report rep;
    o.max_size = max_size;
    o.grace_ns = MINUTE;
    o.flags = flags;
    os_hook_set(at_point, r);
    acache_status st = acache_trim(r->s, &o, &rep);
    os_hook_set(NULL, NULL);
    assert_int_equal(st, ACACHE_OK);
    assert_int_equal(r->fired, 1);
    assert_int_equal(r->st, ACACHE_OK);
}

/* The entry's record, reference and object (those there are), last used
 * two hours ago. */
static void age_entry(const char *dir, const acache_id *action, const acache_id *output)
{
    char p[4200];
    tu_entry_path(dir, 'a', action, "", p, sizeof p);
    if (access(p, F_OK) == 0)
        tu_age(p, 7200);
    tu_entry_path(dir, 'a', action, ".out", p, sizeof p);
    if (access(p, F_OK) == 0)
        tu_age(p, 7200);
    tu_entry_path(dir, 'o', output, "", p, sizeof p);
    tu_age(p, 7200);
}

/* The path a get or put answered holds the bytes of seed, and a get of
 * action hits with them. */
static void assert_whole(acache_store *s, const acache_result *answered, const acache_id *action,
                         uint32_t seed)
{
    char want[LEN];
    size_t len = 0;
    tu_fill(want, sizeof want, seed);
    void *got = tu_read_file(answered->path, &len);
    assert_non_null(got);
    assert_int_equal(len, LEN);
    assert_memory_equal(got, want, LEN);
    free(got);
    acache_result r;
    assert_int_equal(acache_get(s, action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, LEN);
    assert_memory_equal(r.data, want, LEN);
    assert_string_equal(r.path, answered->path);
    acache_result_release(&r);
}

static int setup(void **state)
{
    *state = tu_disk_new("trimrace", "?trim-interval=off");
    return 0;
}

static int teardown(void **state)
{
    os_hook_set(NULL, NULL);
    tu_disk_free(*state);
    return 0;
}

/* A get refreshes the entry between the trim's look at its record and the
 * removal: the record and its object stay. */
static void test_get_refreshes_during_evict(void **state)
{
    tu_disk *f = *state;
    acache_id a = tu_id(1);
    acache_result first;
    put_seed(f->s, &a, 1, &first);
    age_entry(f->dir, &a, &first.output_id);
    race r = { .s = f->s, .point = "trim-remove-record", .what = GET_ACTION, .action = a };
    acache_id_to_hex(&a, r.hex);
    trim_with(&r, 0, 0);
    assert_whole(f->s, &r.res, &a, 1);
}

/* An object no action refers to any more is linked by a put of the same
 * bytes under a new action between the sweep's look and the removal. */
static void test_put_links_object_during_sweep(void **state)
{
    tu_disk *f = *state;
    acache_id a = tu_id(1), b = tu_id(2);
    acache_result first;
    put_seed(f->s, &a, 7, &first);
    assert_int_equal(acache_delete(f->s, &a), ACACHE_OK);
    age_entry(f->dir, &a, &first.output_id);
    race r = { .s = f->s, .point = "trim-remove-object", .what = PUT_BYTES, .action = b, .seed = 7 };
    acache_id_to_hex(&first.output_id, r.hex);
    trim_with(&r, 1LL << 40, ACACHE_TRIM_FULL);
    assert_string_equal(r.res.path, first.path);
    assert_whole(f->s, &r.res, &b, 7);
}

/* The same when the trim drops the object after evicting its last action. */
static void test_put_links_object_during_evict(void **state)
{
    tu_disk *f = *state;
    acache_id a = tu_id(1), b = tu_id(2);
    acache_result first;
    put_seed(f->s, &a, 7, &first);
    age_entry(f->dir, &a, &first.output_id);
    race r = { .s = f->s, .point = "trim-remove-object", .what = PUT_BYTES, .action = b, .seed = 7 };
    acache_id_to_hex(&first.output_id, r.hex);
    trim_with(&r, 0, 0);
    assert_whole(f->s, &r.res, &b, 7);
}

/* A put of the same action renames a fresh record over the one the trim
 * looked at: the fresh record, and its object, stay. */
static void test_fresh_record_renamed_over(void **state)
{
    tu_disk *f = *state;
    acache_id a = tu_id(1);
    acache_result first;
    put_seed(f->s, &a, 1, &first);
    age_entry(f->dir, &a, &first.output_id);
    race r = { .s = f->s, .point = "trim-remove-record", .what = PUT_BYTES, .action = a, .seed = 2 };
    acache_id_to_hex(&a, r.hex);
    trim_with(&r, 0, 0);
    assert_whole(f->s, &r.res, &a, 2);
}

/* A put of the same action (seed's bytes) runs whole after the trim evicted
 * the record and found the reference still its object's, just before it
 * removes it: the put's reference stays, so its entry keeps its object
 * (verify finds nothing wrong). */
static void put_during_ref_removal(tu_disk *f, uint32_t seed)
{
    acache_id a = tu_id(1);
    acache_result first;
    put_seed(f->s, &a, 1, &first);
    age_entry(f->dir, &a, &first.output_id);
    race r = { .s = f->s, .point = "trim-remove-ref", .what = PUT_BYTES, .action = a, .seed = seed };
    acache_id_to_hex(&a, r.hex);
    trim_with(&r, 0, 0);
    assert_whole(f->s, &r.res, &a, seed);
    acache_verify_report v;
    assert_int_equal(acache_verify(f->s, NULL, &v), ACACHE_OK);
    assert_int_equal(v.unreferenced, 0);
    assert_int_equal(v.problems, 0);
}

/* With other bytes, the put's reference is to its own object. */
static void test_put_replaces_reference_during_evict(void **state)
{
    put_during_ref_removal(*state, 2);
}

/* With the same bytes, it is a link to the very object the trim saw, and
 * the put's record is in by the time the trim removes it. */
static void test_put_same_bytes_during_ref_removal(void **state)
{
    put_during_ref_removal(*state, 1);
}

/* A trim at a put's "put-shared" point (its reference is a link to the
 * object it found with its bytes, its record not yet in) evicting the
 * action's older record, whose object that is: the trim takes the
 * reference as the old record's. The older record had no reference (as
 * records written before references existed), so the put made the
 * reference, and its record is renamed in with no record left to replace:
 * it keeps a reference all the same. */
static void at_put_shared_trim(void *ctx, const char *point, const char *path)
{
    race *r = ctx;
    if (r->fired || strcmp(point, "put-shared") != 0 || !path || !strstr(path, r->hex))
        return;
    r->fired = 1;
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    o.max_size = 0;
    o.grace_ns = MINUTE;
    r->st = acache_trim(r->s, &o, NULL);
}

static void test_trim_between_shared_link_and_record(void **state)
{
    tu_disk *f = *state;
    acache_id a = tu_id(1);
    acache_result first, second;
    put_seed(f->s, &a, 7, &first);
    age_entry(f->dir, &a, &first.output_id);
    char ref[4200];
    tu_entry_path(f->dir, 'a', &a, ".out", ref, sizeof ref);
    assert_int_equal(unlink(ref), 0);
    race r = { .s = f->s };
    acache_id_to_hex(&first.output_id, r.hex);
    os_hook_set(at_put_shared_trim, &r);
    put_seed(f->s, &a, 7, &second);
    os_hook_set(NULL, NULL);
    assert_int_equal(r.fired, 1);
    assert_int_equal(r.st, ACACHE_OK);
    assert_whole(f->s, &second, &a, 7);
    acache_verify_report v;
    assert_int_equal(acache_verify(f->s, NULL, &v), ACACHE_OK);
    assert_int_equal(v.unreferenced, 0);
    assert_int_equal(v.problems, 0);
}

/* Moves an entry's file to the name a trim gives it aside (.t-<name> in
 * its own directory), where a trim that died there leaves it. */
static void leave_aside(const char *dir, char kind, const acache_id *id, const char *suffix)
{
    char p[4200], q[4300];
    tu_entry_path(dir, kind, id, suffix, p, sizeof p);
    const char *name = strrchr(p, '/') + 1;
    snprintf(q, sizeof q, "%.*s.t-%s", (int)(name - p), p, name);
    assert_int_equal(rename(p, q), 0);
}

/* Trims that died left objects and records aside. The next trim puts each
 * back and judges it in the same listing (readdir may or may not return a
 * name added while it reads), once: a full trim without grace leaves no
 * entry, no object and nothing aside, and its counts say so. */
static void test_dead_trims_asides_judged(void **state)
{
    tu_disk *f = *state;
    enum { N = 32 };
    for (uint32_t i = 0; i < N; i++) {
        acache_id a = tu_id(i);
        acache_result res;
        put_seed(f->s, &a, 100 + i, &res);
        age_entry(f->dir, &a, &res.output_id);
        if (i % 2) {
            /* Died removing the object of an entry it had evicted. */
            char p[4200];
            tu_entry_path(f->dir, 'a', &a, "", p, sizeof p);
            assert_int_equal(unlink(p), 0);
            tu_entry_path(f->dir, 'a', &a, ".out", p, sizeof p);
            assert_int_equal(unlink(p), 0);
            leave_aside(f->dir, 'o', &res.output_id, "");
        } else {
            /* Died removing a record. */
            leave_aside(f->dir, 'a', &a, "");
        }
    }
    assert_int_equal(tu_count_files(f->dir, ".t-"), N);
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report rep;
    o.max_size = 0;
    o.grace_ns = 0;
    o.flags = ACACHE_TRIM_FULL;
    assert_int_equal(acache_trim(f->s, &o, &rep), ACACHE_OK);
    assert_int_equal(tu_count_files(f->dir, ".t-"), 0);
    assert_int_equal(rep.entries_removed, N / 2);
    acache_disk_counters c;
    acache_verify_report v;
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(acache_verify(f->s, NULL, &v), ACACHE_OK);
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.objects, 0);
    assert_int_equal(v.records, 0);
    assert_int_equal(v.objects, 0);
    assert_int_equal(v.problems, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_refreshes_during_evict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_links_object_during_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_links_object_during_evict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_record_renamed_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_replaces_reference_during_evict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_same_bytes_during_ref_removal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_between_shared_link_and_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_trims_asides_judged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
