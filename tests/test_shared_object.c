/*
 * test_shared_object.c - one object shared by many actions (the empty
 * object above all: every action with no output has it) stays right: each
 * action's reference is a hard link to it, so its link count is one more
 * than the actions that hold it; a trim takes the actions one by one and
 * the object with the last; an empty object damaged in place is repaired
 * by the next put of it; and what a trim or another put of the same action
 * does between a shared put's link and its record is mended after the
 * record (a test hook acts at that point, "put-shared", every time).
 * It must never assert timings, and never leave its scratch directory.
 */
#include "testutil.h"
#include "os/hook.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N 40
#define DAY 86400L

typedef tu_disk fixture;

TU_DISK_FIXTURE("shared", "?trim-interval=off")

static acache_result put_bytes(acache_store *s, uint32_t action, const char *data, size_t len)
{
    acache_id a = tu_id(action);
    acache_put_stream *ps;
    acache_result res;
    assert_int_equal(acache_put_begin(s, &a, &ps), ACACHE_OK);
    if (len)
        assert_int_equal(acache_put_write(ps, data, len), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &res), ACACHE_OK);
    return res;
}

/* The action's get answers with `len` bytes equal to data. */
static void assert_holds(acache_store *s, uint32_t action, const char *data, size_t len)
{
    acache_id a = tu_id(action);
    acache_result r;
    assert_int_equal(acache_get(s, &a, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, len);
    if (len)
        assert_memory_equal(r.data, data, len);
    struct stat sb;
    assert_int_equal(stat(r.path, &sb), 0);
    assert_int_equal(sb.st_size, (off_t)len);
    acache_result_release(&r);
}

static void assert_miss(acache_store *s, uint32_t action)
{
    acache_id a = tu_id(action);
    acache_result r;
    assert_int_equal(acache_get(s, &a, 0, &r), ACACHE_MISS);
}

/* No problem, and every record's reference is a link to its object. */
static void assert_verified(acache_store *s, uint64_t records, uint64_t objects)
{
    acache_verify_report v;
    assert_int_equal(acache_verify(s, NULL, &v), ACACHE_OK);
    assert_int_equal(v.problems, 0);
    assert_int_equal(v.unreferenced, 0);
    assert_int_equal(v.orphan_objects, 0);
    assert_int_equal(v.records, records);
    assert_int_equal(v.objects, objects);
}

static nlink_t links_of(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_nlink;
}

/* Ages the records and references (so, their objects too) of actions
 * [from, to) by `age` seconds. */
static void age_actions(const char *dir, uint32_t from, uint32_t to, long age)
{
    for (uint32_t i = from; i < to; i++) {
        char path[4400];
        acache_id a = tu_id(i);
        tu_entry_path(dir, 'a', &a, "", path, sizeof path);
        tu_age(path, age);
        tu_entry_path(dir, 'a', &a, ".out", path, sizeof path);
        tu_age(path, age);
    }
}

/* N actions with no output share one empty object, which a trim removes
 * with the last action holding it, never before. */
static void test_empty_object_shared_through_trims(void **state)
{
    fixture *f = *state;
    acache_result first = put_bytes(f->s, 0, NULL, 0);
    for (uint32_t i = 1; i < N; i++) {
        acache_result r = put_bytes(f->s, i, NULL, 0);
        assert_string_equal(r.path, first.path);
    }
    for (uint32_t i = 0; i < N; i++)
        assert_holds(f->s, i, NULL, 0);
    assert_int_equal(links_of(first.path), 1 + N);
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(c.entries, N);
    assert_int_equal(c.objects, 1);
    assert_verified(f->s, N, 1);

    /* Half of them unused for two days: a trim with a one-day limit takes
     * those, and the object stays for the others. */
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report r;
    o.max_age_ns = DAY * 1000000000LL;
    o.grace_ns = 0;
    o.flags = ACACHE_TRIM_FULL;
    age_actions(f->dir, 0, N / 2, 2 * DAY);
    tu_age(first.path, 2 * DAY);
    assert_int_equal(acache_trim(f->s, &o, &r), ACACHE_OK);
    assert_int_equal(r.entries_removed, N / 2);
    assert_int_equal(r.objects_removed, 0);
    for (uint32_t i = 0; i < N / 2; i++)
        assert_miss(f->s, i);
    for (uint32_t i = N / 2; i < N; i++)
        assert_holds(f->s, i, NULL, 0);
    assert_int_equal(links_of(first.path), 1 + N / 2);
    assert_verified(f->s, N / 2, 1);

    /* A put of the empty object for a taken action shares it again. */
    put_bytes(f->s, 0, NULL, 0);
    assert_holds(f->s, 0, NULL, 0);
    assert_int_equal(links_of(first.path), 2 + N / 2);

    /* All unused: the object goes with the last of them. */
    age_actions(f->dir, 0, 1, 2 * DAY);
    age_actions(f->dir, N / 2, N, 2 * DAY);
    tu_age(first.path, 2 * DAY);
    assert_int_equal(acache_trim(f->s, &o, &r), ACACHE_OK);
    assert_int_equal(r.entries_removed, 1 + N / 2);
    assert_int_equal(r.objects_removed, 1);
    assert_int_not_equal(access(first.path, F_OK), 0);
    assert_verified(f->s, 0, 0);

    /* And the next put of it makes it anew. */
    acache_result again = put_bytes(f->s, 7, NULL, 0);
    assert_holds(f->s, 7, NULL, 0);
    assert_int_equal(links_of(again.path), 2);
    assert_verified(f->s, 1, 1);
}

/* An empty object damaged in place (bytes written into it) is replaced
 * by the next put of it, which counts a repair; the actions that shared
 * it answer with no bytes again, and later puts share the new one. */
static void test_damaged_empty_object_repaired(void **state)
{
    fixture *f = *state;
    acache_result first = put_bytes(f->s, 1, NULL, 0);
    put_bytes(f->s, 2, NULL, 0);
    int fd = open(first.path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);

    acache_result r = put_bytes(f->s, 3, NULL, 0);
    assert_string_equal(r.path, first.path);
    struct stat sb;
    assert_int_equal(stat(r.path, &sb), 0);
    assert_int_equal(sb.st_size, 0);
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(c.repaired, 1);
    for (uint32_t i = 1; i <= 3; i++)
        assert_holds(f->s, i, NULL, 0);

    /* Actions 1 and 2 still hold the damaged file by their references;
     * puts of them link their references to the repaired object, and a
     * new action shares it: no more repairs. */
    put_bytes(f->s, 1, NULL, 0);
    put_bytes(f->s, 2, NULL, 0);
    put_bytes(f->s, 4, NULL, 0);
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(c.repaired, 1);
    for (uint32_t i = 1; i <= 4; i++)
        assert_holds(f->s, i, NULL, 0);
    assert_int_equal(links_of(r.path), 5);
    assert_verified(f->s, 4, 1);
}

/* What the hook does at "put-shared" (once), on the store in dir, to the
 * put of `action` sharing the object at `path`. */
typedef struct meanwhile {
    const char *dir;
    uint32_t action;
    int what; /* TRIM_TOOK_IT or OTHER_PUT */
    int fired;
} meanwhile;

enum { TRIM_TOOK_IT, OTHER_PUT };

static void act_meanwhile(void *ctx, const char *point, const char *path)
{
    meanwhile *m = ctx;
    if (m->fired || strcmp(point, "put-shared") != 0)
        return;
    m->fired = 1;
    char rec[4400], ref[4400], other[4400];
    acache_id a = tu_id(m->action);
    tu_entry_path(m->dir, 'a', &a, "", rec, sizeof rec);
    tu_entry_path(m->dir, 'a', &a, ".out", ref, sizeof ref);
    if (m->what == TRIM_TOOK_IT) {
        /* A trim without grace evicts the action's older record, takes the
         * reference (a link to the record's object: ours now) with it,
         * and then the object, which no reference holds any more. */
        assert_int_equal(unlink(rec), 0);
        assert_int_equal(unlink(ref), 0);
        assert_int_equal(unlink(path), 0);
    } else {
        /* Another put of the action, with other bytes, has replaced the
         * reference (its record will come after ours or not at all). */
        snprintf(other, sizeof other, "%s/other", m->dir);
        tu_write_file(other, "other", 5);
        assert_int_equal(unlink(ref), 0);
        assert_int_equal(link(other, ref), 0);
        unlink(other);
    }
}

static void put_meanwhile(fixture *f, int what)
{
    /* The action's older entry, and the empty object with no other holder. */
    put_bytes(f->s, 1, NULL, 0);
    acache_result held = put_bytes(f->s, 2, NULL, 0);
    acache_id two = tu_id(2);
    assert_int_equal(acache_delete(f->s, &two), ACACHE_OK);
    meanwhile m = { f->dir, 1, what, 0 };
    os_hook_set(act_meanwhile, &m);
    acache_result r = put_bytes(f->s, 1, NULL, 0);
    os_hook_set(NULL, NULL);
    assert_int_equal(m.fired, 1);
    assert_string_equal(r.path, held.path);
    assert_holds(f->s, 1, NULL, 0);
    assert_int_equal(links_of(r.path), 2);
    assert_verified(f->s, 1, 1);
}

/* The object a shared put linked is taken before its record is in: its
 * name comes back, from the put's own bytes, and the reference with it. */
static void test_object_taken_before_record(void **state)
{
    put_meanwhile(*state, TRIM_TOOK_IT);
}

/* The reference is replaced by another put of the action before the
 * record: after the record, the reference is to the record's object. */
static void test_reference_replaced_before_record(void **state)
{
    put_meanwhile(*state, OTHER_PUT);
}

/* A shared put leaves nothing in tmp/: no temp file, no private name. */
static void test_shared_put_leaves_no_temp(void **state)
{
    fixture *f = *state;
    char tmp[4400];
    const char data[] = "the same bytes";
    put_bytes(f->s, 1, NULL, 0);
    put_bytes(f->s, 2, data, sizeof data);
    for (uint32_t i = 3; i < 10; i++) {
        put_bytes(f->s, i, NULL, 0);
        put_bytes(f->s, 100 + i, data, sizeof data);
        put_bytes(f->s, 100 + i, data, sizeof data); /* its reference replaced */
    }
    snprintf(tmp, sizeof tmp, "%s/v1/tmp", f->dir);
    assert_int_equal(tu_count_files(tmp, ""), 0);
    for (uint32_t i = 3; i < 10; i++) {
        assert_holds(f->s, i, NULL, 0);
        assert_holds(f->s, 100 + i, data, sizeof data);
    }
    assert_verified(f->s, 2 + 2 * 7, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_object_shared_through_trims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_empty_object_repaired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_object_taken_before_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_replaced_before_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_put_leaves_no_temp, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
