/*
 * test_put_safety.c - what a put answers is its own bytes, and it keeps
 * them however long it takes: an object damaged in place (same size) is
 * replaced by a put of the right bytes, directly or by a promotion from
 * another tier; a temp file a put is still writing survives store opens and
 * trims that would remove it by its age alone; the private names a put
 * holds an object or a reference by are its own, not derived from its
 * temp file's name (free again once that file is renamed).
 */
#include "testutil.h"
#include "os/hook.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEN 5000

typedef tu_disk fixture;

TU_DISK_FIXTURE("putsafe", "?trim-interval=off")

/* Flips one byte of the file in place: same size, same inode. */
static void damage(const char *path)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, LEN / 2), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, LEN / 2), 1);
    close(fd);
}

static void assert_file_holds(const char *path, uint32_t seed)
{
    char want[LEN];
    size_t len = 0;
    tu_fill(want, sizeof want, seed);
    void *got = tu_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, LEN);
    assert_memory_equal(got, want, LEN);
    free(got);
}

static acache_result put_seed(acache_store *s, const acache_id *action, uint32_t seed)
{
    char buf[LEN];
    acache_put_stream *ps;
    acache_result res;
    tu_fill(buf, sizeof buf, seed);
    assert_int_equal(acache_put_begin(s, action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, sizeof buf), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &res), ACACHE_OK);
    return res;
}

/* A put of the right bytes, over an object damaged in place, answers with
 * a path holding the right bytes, and counts a repair. */
static void damaged_then_put(const char *opts)
{
    tu_disk *f = tu_disk_new("putsafe", opts);
    acache_id a = tu_id(1), b = tu_id(2);
    acache_result first = put_seed(f->s, &a, 3);
    damage(first.path);
    acache_result again = put_seed(f->s, &b, 3);
    assert_string_equal(again.path, first.path);
    assert_file_holds(again.path, 3);
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(c.repaired, 1);
    /* Both actions now answer with the right bytes. */
    acache_result r;
    assert_int_equal(acache_get(f->s, &a, ACACHE_GET_DATA, &r), ACACHE_OK);
    acache_result_release(&r);
    assert_file_holds(r.path, 3);
    tu_disk_free(f);
}

static void test_put_over_damaged_object(void **state)
{
    (void)state;
    damaged_then_put("?trim-interval=off");
    damaged_then_put("?trim-interval=off&verify-reads=true");
}

/* An object of the same size and the same bytes is shared, not replaced:
 * no repair is counted and the object keeps its inode. */
static void test_put_of_same_bytes_shares(void **state)
{
    fixture *f = *state;
    acache_id a = tu_id(1), b = tu_id(2);
    acache_result first = put_seed(f->s, &a, 3);
    struct stat before, after;
    assert_int_equal(stat(first.path, &before), 0);
    acache_result again = put_seed(f->s, &b, 3);
    assert_int_equal(stat(again.path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(f->s, &c), ACACHE_OK);
    assert_int_equal(c.repaired, 0);
}

/* A hit in a later tier promoted into a disk tier whose object is damaged
 * in place: the answer is the right bytes. */
static void test_promotion_over_damaged_object(void **state)
{
    fixture *f = *state;
    acache_store *mem = NULL, *t = NULL;
    acache_id a = tu_id(1), b = tu_id(2);
    acache_result first = put_seed(f->s, &a, 4);
    damage(first.path);
    assert_int_equal(acache_open("mem:", &mem), ACACHE_OK);
    put_seed(mem, &b, 4);
    acache_store *chain[2] = { f->s, mem };
    assert_int_equal(acache_tiers(chain, 2, &t), ACACHE_OK);
    acache_result r;
    assert_int_equal(acache_get(t, &b, 0, &r), ACACHE_OK);
    assert_string_equal(r.path, first.path);
    assert_file_holds(r.path, 4);
    /* The tiers own the stores now. */
    acache_close(t);
    f->s = NULL;
}

/* The one temp file of a put under DIR/v1/tmp, into out. */
static void find_temp(const char *dir, char *out, size_t size)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/v1/tmp", dir);
    DIR *dp = opendir(tmp);
    assert_non_null(dp);
    struct dirent *de;
    int found = 0;
    while ((de = readdir(dp)) != NULL)
        if (strncmp(de->d_name, "put-", 4) == 0) {
            assert_true((size_t)snprintf(out, size, "%s/%.*s", tmp, 64, de->d_name) < size);
            found++;
        }
    closedir(dp);
    assert_int_equal(found, 1);
}

/* A put begun two hours ago (a long build between its first and last
 * write) keeps its temp file through a store open and a full trim, and
 * commits. A temp file whose writer is gone still goes. */
static void test_long_put_keeps_temp(void **state)
{
    fixture *f = *state;
    acache_id a = tu_id(1);
    char buf[LEN], path[4600], dead[4600];
    tu_fill(buf, sizeof buf, 9);
    acache_put_stream *ps;
    assert_int_equal(acache_put_begin(f->s, &a, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, LEN / 2), ACACHE_OK);
    find_temp(f->dir, path, sizeof path);
    tu_age(path, 7200);
    snprintf(dead, sizeof dead, "%s/v1/tmp/put-dead00", f->dir);
    tu_write_file(dead, "x", 1);
    tu_age(dead, 7200);

    acache_store *other = tu_open_disk(f->dir, "?trim-interval=off");
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report rep;
    o.flags = ACACHE_TRIM_FULL;
    assert_int_equal(acache_trim(other, &o, &rep), ACACHE_OK);
    acache_close(other);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_not_equal(access(dead, F_OK), 0);

    assert_int_equal(acache_put_write(ps, buf + LEN / 2, LEN - LEN / 2), ACACHE_OK);
    acache_result res;
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &res), ACACHE_OK);
    assert_file_holds(res.path, 9);
}

/* Another put, given the temp file name ours had (free once ours is
 * gone), holds its own object under names derived from it ("own-" and
 * "ref-" with the same suffix, as the code once named its private names,
 * "ref-" still being one). */
typedef struct other_put {
    char held[2][4600];
    char bytes[4600];
    int fired;
} other_put;

static void take_freed_name(void *ctx, const char *point, const char *path)
{
    other_put *o = ctx;
    if (strcmp(point, "put-temp-gone") != 0 || o->fired)
        return;
    o->fired = 1;
    const char *slash = strrchr(path, '/');
    assert_non_null(slash);
    assert_int_equal(strncmp(slash + 1, "put-", 4), 0);
    for (int i = 0; i < 2; i++) {
        snprintf(o->held[i], sizeof o->held[i], "%.*s/%s%s", (int)(slash - path), path,
                 i ? "ref-" : "own-", slash + 5);
        unlink(o->held[i]); /* as a put does: "left by a process that died" */
        assert_int_equal(link(o->bytes, o->held[i]), 0);
    }
}

/* A put sharing an existing object leaves alone the names another put
 * holds, even one given its temp file's old name. */
static void test_private_names_are_unique(void **state)
{
    fixture *f = *state;
    acache_id a = tu_id(1), b = tu_id(2);
    other_put o;
    memset(&o, 0, sizeof o);
    snprintf(o.bytes, sizeof o.bytes, "%s/other-bytes", f->dir);
    tu_write_file(o.bytes, "other", 5);
    put_seed(f->s, &a, 5);
    os_hook_set(take_freed_name, &o);
    acache_result r = put_seed(f->s, &b, 5); /* shares a's object */
    os_hook_set(NULL, NULL);
    assert_int_equal(o.fired, 1);
    assert_file_holds(r.path, 5);
    for (int i = 0; i < 2; i++)
        assert_int_equal(access(o.held[i], F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_over_damaged_object),
        cmocka_unit_test_setup_teardown(test_put_of_same_bytes_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promotion_over_damaged_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_put_keeps_temp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_private_names_are_unique, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
