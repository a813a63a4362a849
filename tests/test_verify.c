/*
 * test_verify.c - acache_verify: a clean store has no problems; each kind of
 * damage (corrupt object, malformed record, record whose object is gone or
 * of the wrong size, record without its reference) is found, reported
 * through the callback, and repaired with ACACHE_VERIFY_REPAIR; garbage is
 * reported but is no problem; progress is shown and can stop it.
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
    tu_disk *t;
    char *dir;
    acache_store *s;
    acache_id a[4], o[4];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->t = tu_disk_new("verify", "?trim-interval=off");
    f->dir = f->t->dir;
    f->s = f->t->s;
    char buf[3000];
    for (uint32_t i = 0; i < 4; i++) {
        tu_fill(buf, sizeof buf, i);
        f->a[i] = tu_id(i);
        assert_int_equal(acache_put(f->s, &f->a[i], buf, sizeof buf, &f->o[i]), ACACHE_OK);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_disk_free(f->t);
    free(f);
    return 0;
}

#define path_of tu_entry_path

typedef struct seen {
    int problems, repaired, progress;
    char last[4400];
} seen;

static void on_problem(void *ctx, const char *path, const char *what, int repaired)
{
    seen *s = ctx;
    s->problems++;
    s->repaired += repaired;
    snprintf(s->last, sizeof s->last, "%s: %s", path, what);
}

static int on_progress(void *ctx, const acache_progress *p)
{
    seen *s = ctx;
    assert_non_null(p->phase);
    assert_true(p->total == 0 || p->done <= p->total);
    s->progress++;
    return 0;
}

static acache_verify_report run(fixture *f, unsigned flags, seen *sn)
{
    acache_verify_options o = { flags, on_progress, sn, on_problem, sn };
    acache_verify_report r;
    memset(sn, 0, sizeof *sn);
    assert_int_equal(acache_verify(f->s, &o, &r), ACACHE_OK);
    return r;
}

static void test_clean(void **state)
{
    fixture *f = *state;
    seen sn;
    acache_verify_report r = run(f, 0, &sn);
    assert_int_equal(r.problems, 0);
    assert_int_equal(r.objects, 4);
    assert_int_equal(r.records, 4);
    assert_int_equal(r.bytes, 4 * 3000);
    assert_int_equal(sn.problems, 0);
    assert_true(sn.progress >= 4);
    /* NULL options: a plain check. */
    assert_int_equal(acache_verify(f->s, NULL, &r), ACACHE_OK);
    assert_int_equal(r.problems, 0);
}

/* Same size, other bytes: only the hash tells. Found, then removed with
 * the record that names it; never served afterwards. */
static void test_corrupt_object(void **state)
{
    fixture *f = *state;
    char opath[4300], junk[3000];
    path_of(f->dir, 'o', &f->o[1], "", opath, sizeof opath);
    tu_fill(junk, sizeof junk, 99);
    tu_write_file(opath, junk, sizeof junk);
    seen sn;
    acache_verify_report r = run(f, 0, &sn);
    assert_int_equal(r.corrupt_objects, 1);
    assert_int_equal(r.dangling_records, 1); /* its record names a corrupt object */
    assert_int_equal(r.problems, 2);
    assert_int_equal(r.repaired, 0);
    assert_int_equal(sn.problems, 2);
    assert_non_null(strstr(sn.last, "corrupt"));
    assert_int_equal(access(opath, F_OK), 0); /* a check changes nothing */

    r = run(f, ACACHE_VERIFY_REPAIR, &sn);
    assert_int_equal(r.problems, 2);
    assert_int_equal(r.repaired, 2);
    assert_int_equal(sn.repaired, 2);
    assert_int_equal(access(opath, F_OK), -1);
    acache_result res;
    assert_int_equal(acache_get(f->s, &f->a[1], 0, &res), ACACHE_MISS);
    assert_int_equal(acache_get(f->s, &f->a[2], 0, &res), ACACHE_OK);
    r = run(f, 0, &sn);
    assert_int_equal(r.problems, 0);
    /* The repair recounted the estimate. */
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(c.entries, 3);
    assert_int_equal(c.objects, 3);
}

static void test_bad_records(void **state)
{
    fixture *f = *state;
    char rpath[4300], opath[4300];
    /* 0: malformed. */
    path_of(f->dir, 'a', &f->a[0], "", rpath, sizeof rpath);
    tu_write_file(rpath, "garbage\n", 8);
    /* 1: its object removed by hand. */
    path_of(f->dir, 'o', &f->o[1], "", opath, sizeof opath);
    assert_int_equal(unlink(opath), 0);
    /* 2: its object truncated (a new file: the reference keeps the old). */
    path_of(f->dir, 'o', &f->o[2], "", opath, sizeof opath);
    assert_int_equal(unlink(opath), 0);
    tu_write_file(opath, "short", 5);
    seen sn;
    acache_verify_report r = run(f, 0, &sn);
    assert_int_equal(r.bad_records, 1);
    assert_int_equal(r.corrupt_objects, 1); /* the short object's bytes are not its name */
    assert_int_equal(r.dangling_records, 2);
    r = run(f, ACACHE_VERIFY_REPAIR, &sn);
    assert_int_equal(r.repaired, r.problems);
    r = run(f, 0, &sn);
    assert_int_equal(r.problems, 0);
    assert_int_equal(r.records, 1);
}

/* A record without its reference (a put killed between its steps, a cache
 * written before references existed): not a problem (at worst its object
 * is evicted early), but reported, and repaired by linking it again. */
static void test_unreferenced(void **state)
{
    fixture *f = *state;
    char ref[4300], opath[4300];
    path_of(f->dir, 'a', &f->a[3], ".out", ref, sizeof ref);
    assert_int_equal(unlink(ref), 0);
    seen sn;
    acache_verify_report r = run(f, 0, &sn);
    assert_int_equal(r.unreferenced, 1);
    assert_int_equal(r.problems, 0);
    assert_int_equal(sn.problems, 1); /* shown all the same */
    assert_int_equal(r.orphan_objects, 1); /* its object looks unreferenced */
    r = run(f, ACACHE_VERIFY_REPAIR, &sn);
    assert_int_equal(r.references_restored, 1);
    assert_int_equal(r.repaired, 0);
    struct stat a, b;
    path_of(f->dir, 'o', &f->o[3], "", opath, sizeof opath);
    assert_int_equal(stat(ref, &a), 0);
    assert_int_equal(stat(opath, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    r = run(f, 0, &sn);
    assert_int_equal(r.unreferenced, 0);
    assert_int_equal(r.orphan_objects, 0);
    /* A reference to other bytes (a re-put with new bytes, killed before
     * its record): the same. */
    char other[4300];
    path_of(f->dir, 'o', &f->o[2], "", other, sizeof other);
    assert_int_equal(unlink(ref), 0);
    assert_int_equal(link(other, ref), 0);
    r = run(f, ACACHE_VERIFY_REPAIR, &sn);
    assert_int_equal(r.unreferenced, 1);
    assert_int_equal(r.references_restored, 1);
    assert_non_null(strstr(sn.last, "other bytes"));
    r = run(f, 0, &sn);
    assert_int_equal(r.unreferenced, 0);
}

/* Garbage is not a problem: what a dead put leaves, an object nobody
 * refers to. */
static void test_garbage_is_no_problem(void **state)
{
    fixture *f = *state;
    assert_int_equal(acache_delete(f->s, &f->a[0]), ACACHE_OK);
    char ref[4300];
    path_of(f->dir, 'a', &f->a[1], "", ref, sizeof ref);
    assert_int_equal(unlink(ref), 0); /* leaves a1.out: a reference without record */
    seen sn;
    acache_verify_report r = run(f, 0, &sn);
    assert_int_equal(r.problems, 0);
    assert_int_equal(r.orphan_objects, 1);
    assert_int_equal(r.leftovers, 1);
}

static int stop_at_once(void *ctx, const acache_progress *p)
{
    (void)ctx;
    (void)p;
    return 1;
}

static void test_stop(void **state)
{
    fixture *f = *state;
    acache_verify_options o = { 0, stop_at_once, NULL, NULL, NULL };
    acache_verify_report r;
    assert_int_equal(acache_verify(f->s, &o, &r), ACACHE_OK);
    assert_int_equal(r.stopped, 1);
    assert_true(r.objects < 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreferenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_is_no_problem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
