/*
 * test_faults.c - the disk store under faults: processes killed with
 * SIGKILL in the middle of puts and of trims (afterwards verify finds
 * nothing wrong), eight processes putting and getting overlapping keys
 * while trims run (every hit whole and right), and a full file system (a
 * 4 MiB tmpfs: puts fail with ACACHE_ENOSPC and leave nothing behind, what
 * was stored stays readable). Every loop is bounded in rounds and time.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
    char *dir;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp("faults");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void check_clean(const char *dir)
{
    acache_store *s = tu_open_disk(dir, "?trim-interval=off");
    acache_verify_report r;
    assert_int_equal(acache_verify(s, NULL, &r), ACACHE_OK);
    if (r.problems)
        fail_msg("%llu problems: %llu corrupt objects, %llu bad records, %llu dangling, "
                 "%llu unreferenced",
                 (unsigned long long)r.problems, (unsigned long long)r.corrupt_objects,
                 (unsigned long long)r.bad_records, (unsigned long long)r.dangling_records,
                 (unsigned long long)r.unreferenced);
    acache_close(s);
}

/* The bytes of key k as written by writer w: half the keys have one value
 * whoever writes them, half one per writer. */
static size_t value_of(uint32_t k, uint32_t w, char *buf)
{
    size_t len = 500 + (k * 7919u) % 6000;
    tu_fill(buf, len, k % 2 ? k : k * 100 + w);
    return len;
}

/* Puts and gets keys forever with an aggressive automatic trim. */
static void putter(const char *dir, uint32_t w, int keys)
{
    acache_store *s = tu_open_disk(dir, "?max-size=256K&trim-interval=0&grace=0");
    char buf[8000];
    srand((unsigned)getpid());
    for (;;) {
        uint32_t k = (uint32_t)rand() % (uint32_t)keys;
        acache_id a = tu_id(k);
        size_t len = value_of(k, w, buf);
        if (rand() % 3) {
            acache_put_stream *ps;
            if (acache_put_begin(s, &a, &ps) != ACACHE_OK)
                _exit(3);
            /* In pieces, so that a kill can land between them. */
            for (size_t off = 0; off < len; off += 1000)
                acache_put_write(ps, buf + off, len - off < 1000 ? len - off : 1000);
            if (acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, NULL) != ACACHE_OK)
                _exit(4);
        } else {
            acache_result r;
            acache_status st = acache_get(s, &a, ACACHE_GET_DATA, &r);
            if (st == ACACHE_OK) {
                acache_id check;
                acache_id_of_bytes(r.data, r.size, &check);
                if (memcmp(&check, &r.output_id, sizeof check) != 0)
                    _exit(5);
                acache_result_release(&r);
            } else if (st != ACACHE_MISS) {
                _exit(6);
            }
        }
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kills a child after a random few milliseconds; it must not have exited
 * on its own (that would be a failed check). */
static void kill_after(pid_t pid, int max_ms)
{
    usleep((useconds_t)(1000 + rand() % (max_ms * 1000)));
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fail_msg("child exited with %d before it was killed", WEXITSTATUS(status));
}

static void test_kill_during_puts(void **state)
{
    fixture *f = *state;
    srand(1);
    int64_t end = now_ms() + 20000;
    for (int round = 0; round < 60 && now_ms() < end; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            putter(f->dir, (uint32_t)round, 200);
        kill_after(pid, 40);
    }
    check_clean(f->dir);
}

/* A trim killed anywhere: records, references and objects are removed in
 * an order that never leaves a record without its object. */
static void test_kill_during_trims(void **state)
{
    fixture *f = *state;
    srand(2);
    char buf[8000];
    int64_t end = now_ms() + 20000;
    for (int round = 0; round < 30 && now_ms() < end; round++) {
        acache_store *s = tu_open_disk(f->dir, "?trim-interval=off");
        for (uint32_t k = 0; k < 300; k++) {
            acache_id a = tu_id(k + 1000 * (uint32_t)(round % 3));
            size_t len = value_of(k, 0, buf);
            assert_int_equal(acache_put(s, &a, buf, len, NULL), ACACHE_OK);
        }
        acache_close(s);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            s = tu_open_disk(f->dir, "?trim-interval=off");
            acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
            o.max_size = 0;
            o.grace_ns = 0;
            o.flags = round % 2 ? ACACHE_TRIM_FULL : 0;
            for (;;)
                acache_trim(s, &o, NULL);
        }
        kill_after(pid, 30);
    }
    check_clean(f->dir);
    /* A later trim finishes the job: no entry is left. What a killed trim
     * left between removing a record and its reference is kept for an
     * hour (it looks like a put in progress), and so are the objects those
     * references hold. */
    acache_store *s = tu_open_disk(f->dir, "?trim-interval=off");
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    o.max_size = 0;
    o.grace_ns = 0;
    o.flags = ACACHE_TRIM_FULL;
    acache_trim_report r;
    assert_int_equal(acache_trim(s, &o, &r), ACACHE_OK);
    acache_disk_counters c;
    acache_verify_report v;
    assert_int_equal(acache_disk_stats(s, &c), ACACHE_OK);
    assert_int_equal(acache_verify(s, NULL, &v), ACACHE_OK);
    assert_int_equal(c.entries, 0);
    assert_int_equal(v.records, 0);
    assert_int_equal(c.objects, v.objects);
    assert_true(v.objects <= v.leftovers);
    acache_close(s);
    check_clean(f->dir);
}

/* Eight processes put and get 100 overlapping keys (half with a value
 * per process) while the parent trims without grace: every hit is one of
 * the values its key may have, whole. */
static void test_eight_processes_and_trims(void **state)
{
    fixture *f = *state;
    enum { PROCS = 8, KEYS = 100 };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            acache_store *s = tu_open_disk(f->dir, "?trim-interval=off");
            char buf[8000], want[8000];
            int bad = 0;
            int64_t stop = now_ms() + 4000;
            srand((unsigned)p + 10);
            while (now_ms() < stop && !bad) {
                uint32_t k = (uint32_t)rand() % KEYS;
                acache_id a = tu_id(k);
                size_t len = value_of(k, (uint32_t)p, buf);
                if (acache_put(s, &a, buf, len, NULL) != ACACHE_OK)
                    bad = 1;
                k = (uint32_t)rand() % KEYS;
                a = tu_id(k);
                acache_result r;
                acache_status st = acache_get(s, &a, ACACHE_GET_DATA, &r);
                if (st == ACACHE_OK) {
                    bool ok = false;
                    for (uint32_t w = 0; w < PROCS && !ok; w++) {
                        size_t wl = value_of(k, w, want);
                        ok = r.size == wl && memcmp(r.data, want, wl) == 0;
                    }
                    bad |= !ok;
                    acache_result_release(&r);
                } else if (st != ACACHE_MISS) {
                    bad = 1;
                }
            }
            acache_close(s);
            _exit(bad);
        }
    }
    acache_store *s = tu_open_disk(f->dir, "?trim-interval=off");
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    o.max_size = 200 * 1024;
    o.grace_ns = 0;
    int trims = 0;
    int64_t stop = now_ms() + 4000;
    while (now_ms() < stop) {
        o.flags = trims % 4 == 0 ? ACACHE_TRIM_FULL : 0;
        assert_int_equal(acache_trim(s, &o, NULL), ACACHE_OK);
        trims++;
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_true(trims > 0);
    acache_close(s);
    check_clean(f->dir);
}

/* A full file system: a put fails with ACACHE_ENOSPC and leaves nothing;
 * what was stored before stays readable. */
static void test_full_file_system(void **state)
{
    fixture *f = *state;
    char mnt[4300];
    snprintf(mnt, sizeof mnt, "%s/small", f->dir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        fprintf(stderr, "test_full_file_system: skipped: cannot mount a tmpfs (%s); "
                        "run as root to test a full file system\n", strerror(errno));
        skip();
    }
    acache_store *s = tu_open_disk(mnt, "?trim-interval=off");
    char buf[256 * 1024];
    uint32_t stored = 0;
    acache_status st = ACACHE_OK;
    for (uint32_t k = 0; k < 100 && st == ACACHE_OK; k++) {
        acache_id a = tu_id(k);
        tu_fill(buf, sizeof buf, k);
        st = acache_put(s, &a, buf, sizeof buf, NULL);
        if (st == ACACHE_OK)
            stored++;
    }
    assert_int_equal(st, ACACHE_ENOSPC);
    assert_non_null(strstr(acache_last_error(), "No space"));
    assert_true(stored > 3);
    /* Small puts fail too once every block is taken; nothing partial stays. */
    for (uint32_t k = 0; k < 50; k++) {
        acache_id a = tu_id(1000 + k);
        tu_fill(buf, 5000, k);
        acache_put(s, &a, buf, 5000, NULL);
    }
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s/v1/tmp", mnt);
    assert_int_equal(tu_count_files(tmp, ""), 0);
    for (uint32_t k = 0; k < stored; k++) {
        acache_id a = tu_id(k);
        acache_result r;
        assert_int_equal(acache_get(s, &a, ACACHE_GET_DATA, &r), ACACHE_OK);
        tu_fill(buf, sizeof buf, k);
        assert_int_equal(r.size, sizeof buf);
        assert_memory_equal(r.data, buf, sizeof buf);
        acache_result_release(&r);
    }
    acache_verify_report v;
    assert_int_equal(acache_verify(s, NULL, &v), ACACHE_OK);
    assert_int_equal(v.problems, 0);
    assert_int_equal(v.orphan_objects, 0);
    /* Trimming makes room again. */
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    o.max_size = 1024 * 1024;
    o.grace_ns = 0;
    assert_int_equal(acache_trim(s, &o, NULL), ACACHE_OK);
    acache_id a = tu_id(5000);
    tu_fill(buf, sizeof buf, 5000);
    assert_int_equal(acache_put(s, &a, buf, sizeof buf, NULL), ACACHE_OK);
    acache_close(s);
    assert_int_equal(umount(mnt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_during_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_during_trims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eight_processes_and_trims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_file_system, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
