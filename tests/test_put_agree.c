/*
 * test_put_agree.c - two puts of one action with different bytes, however
 * they interleave, leave the action's record and its reference agreed: the
 * reference is a hard link to the object the record names (else the
 * object's link count lies, and a trim may take it for garbage while the
 * record names it). A put that made both the reference and the record
 * does not look again; one that met either already there does. Each
 * interleaving is made to happen every time: a test hook runs the other
 * put whole at the named point of the first ("put-linked": its reference
 * is in; "put-recorded": its record is in).
 * It must never assert timings, and never leave its scratch directory.
 */
#include "testutil.h"
#include "os/hook.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEN 3000
#define EMPTY 0 /* seed of the empty output */

typedef tu_disk fixture;

TU_DISK_FIXTURE("agree", "?trim-interval=off")

/* The bytes of seed (none for EMPTY). */
static size_t bytes_of(uint32_t seed, char *buf)
{
    if (seed == EMPTY)
        return 0;
    tu_fill(buf, LEN, seed);
    return LEN;
}

static acache_status put_seed(acache_store *s, const acache_id *action, uint32_t seed)
{
    char buf[LEN];
    size_t len = bytes_of(seed, buf);
    acache_put_stream *ps;
    acache_status st = acache_put_begin(s, action, &ps);
    if (st == ACACHE_OK && len)
        st = acache_put_write(ps, buf, len);
    if (st == ACACHE_OK)
        st = acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, NULL);
    else
        acache_put_abort(ps);
    return st;
}

/* The other put: run whole, once, at `point`. */
typedef struct other {
    acache_store *s;
    const char *point;
    acache_id action;
    uint32_t seed;
    int fired;
    acache_status st;
} other;

static void run_other(void *ctx, const char *point, const char *path)
{
    other *o = ctx;
    (void)path;
    if (o->fired || strcmp(point, o->point) != 0)
        return;
    o->fired = 1;
    o->st = put_seed(o->s, &o->action, o->seed);
}

/* The action answers with seed's bytes, its reference is a link to the
 * object it answers with, and verify finds nothing amiss. */
static void assert_agreed(fixture *f, const acache_id *action, uint32_t seed)
{
    char want[LEN], ref[4400];
    size_t len = bytes_of(seed, want);
    acache_result r;
    assert_int_equal(acache_get(f->s, action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, len);
    if (len)
        assert_memory_equal(r.data, want, len);
    struct stat os, rs;
    assert_int_equal(stat(r.path, &os), 0);
    acache_result_release(&r);
    tu_entry_path(f->dir, 'a', action, ".out", ref, sizeof ref);
    assert_int_equal(stat(ref, &rs), 0);
    assert_int_equal(rs.st_ino, os.st_ino);
    acache_verify_report v;
    assert_int_equal(acache_verify(f->s, NULL, &v), ACACHE_OK);
    assert_int_equal(v.problems, 0);
    assert_int_equal(v.unreferenced, 0);
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s/v1/tmp", f->dir);
    assert_int_equal(tu_count_files(tmp, ""), 0);
}

/* A put of `seed` for a new action, with the other put (`oseed`) run at
 * `point`; the record of the put that renamed its record last wins. */
static void interleave(fixture *f, const char *point, uint32_t seed, uint32_t oseed,
                       uint32_t winner)
{
    acache_id a = tu_id(1);
    other o = { f->s, point, a, oseed, 0, ACACHE_OK };
    os_hook_set(run_other, &o);
    acache_status st = put_seed(f->s, &a, seed);
    os_hook_set(NULL, NULL);
    assert_int_equal(st, ACACHE_OK);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.st, ACACHE_OK);
    assert_agreed(f, &a, winner);
}

/* The other put replaces our reference and renames its record before
 * ours: ours meets it, so we look, and move the reference back to ours. */
static void test_other_put_after_our_link(void **state)
{
    interleave(*state, "put-linked", 11, 22, 11);
}

/* The other put comes after our record: it meets our reference and our
 * record, and its own look leaves them agreed on its bytes. */
static void test_other_put_after_our_record(void **state)
{
    interleave(*state, "put-recorded", 11, 22, 22);
}

/* The same with the empty output, whose put links its reference straight
 * from the existing empty object. */
static void test_empty_put_interleaved(void **state)
{
    fixture *f = *state;
    acache_id seedbed = tu_id(9);
    assert_int_equal(put_seed(f->s, &seedbed, EMPTY), ACACHE_OK);
    interleave(f, "put-linked", EMPTY, 22, EMPTY);
}

static void test_empty_put_other_after_record(void **state)
{
    fixture *f = *state;
    acache_id seedbed = tu_id(9);
    assert_int_equal(put_seed(f->s, &seedbed, EMPTY), ACACHE_OK);
    interleave(f, "put-recorded", EMPTY, 22, 22);
}

/* Puts over an existing entry, one after the other, each with other
 * bytes (the empty one among them): the last one's bytes, agreed. */
static void test_puts_over_existing_entry(void **state)
{
    fixture *f = *state;
    acache_id a = tu_id(1);
    const uint32_t seeds[] = { 11, 22, EMPTY, 22, EMPTY, 33 };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        assert_int_equal(put_seed(f->s, &a, seeds[i]), ACACHE_OK);
        assert_agreed(f, &a, seeds[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_other_put_after_our_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_put_after_our_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_put_interleaved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_put_other_after_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_puts_over_existing_entry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
