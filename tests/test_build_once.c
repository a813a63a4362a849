/*
 * test_build_once.c - acache_get_or_build(): one build per action however
 * many threads and processes ask at once, failures shared with waiters, a
 * lock holder killed mid-build, a lock held past the timeout, streaming
 * outputs, and a store that does not keep what it was given. Every test
 * bounds its own time (forked children are killed at the end).
 */
#include "testutil.h"

#include "compose/build_once.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("build");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* A build: counts its runs, optionally waits for other threads to wait
 * for it, fails or blocks, and streams `size` bytes of tu_fill(seed) in
 * 64K pieces. */
typedef struct job {
    atomic_int runs;
    const acache_store *store; /* with waiters: the store it builds for */
    unsigned waiters;          /* if > 0: finish only once this many other
                                  threads wait for this build (30 s at most) */
    int sleep_ms;              /* across processes (no waiters to count): makes
                                  the race likely; what is asserted holds
                                  whether the others wait or come late */
    bool fail;
    int block_fd;        /* if >= 0: read one byte from it before finishing */
    int started_fd;      /* if >= 0: write one byte to it when started */
    const char *count_path; /* if set: append one byte per run (across processes) */
    pid_t dead;          /* if > 0: a child that must have died before this runs */
    size_t size;
    uint32_t seed;
} job;

static acache_status build_job(void *ctx, const acache_id *action, acache_put_stream *out)
{
    job *j = ctx;
    atomic_fetch_add(&j->runs, 1);
    if (j->dead > 0) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        assert_int_equal(waitid(P_PID, (id_t)j->dead, &info, WEXITED | WNOHANG | WNOWAIT), 0);
        assert_int_equal(info.si_pid, j->dead); /* it has exited (not reaped yet) */
    }
    if (j->count_path) {
        int fd = open(j->count_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "x", 1), 1);
        close(fd);
    }
    if (j->started_fd >= 0)
        assert_int_equal(write(j->started_fd, "s", 1), 1);
    for (double until = tu_now_s() + 30;
         j->waiters && build_once_waiters(j->store, action) < j->waiters;) {
        if (tu_now_s() > until)
            fail_msg("only %u of %u threads came to wait for the build",
                     build_once_waiters(j->store, action), j->waiters);
        tu_sleep_ms(1);
    }
    if (j->sleep_ms)
        tu_sleep_ms(j->sleep_ms);
    if (j->block_fd >= 0) {
        char c;
        while (read(j->block_fd, &c, 1) < 0 && errno == EINTR)
            ;
    }
    if (j->fail)
        return acache_set_error(ACACHE_EIO, "compiler crashed on purpose");
    unsigned char *buf = malloc(j->size ? j->size : 1);
    tu_fill(buf, j->size, j->seed);
    for (size_t off = 0; off < j->size; off += 65536) {
        size_t n = j->size - off < 65536 ? j->size - off : 65536;
        acache_status st = acache_put_write(out, buf + off, n);
        if (st != ACACHE_OK) {
            free(buf);
            return st;
        }
    }
    free(buf);
    return ACACHE_OK;
}

static job new_job(size_t size, uint32_t seed)
{
    job j;
    memset(&j, 0, sizeof j);
    atomic_init(&j.runs, 0);
    j.block_fd = j.started_fd = -1;
    j.size = size;
    j.seed = seed;
    return j;
}

static void check_bytes(const acache_result *r, size_t size, uint32_t seed)
{
    unsigned char *want = malloc(size ? size : 1);
    tu_fill(want, size, seed);
    assert_int_equal(r->size, size);
    assert_non_null(r->data);
    assert_memory_equal(r->data, want, size);
    free(want);
}

static void test_builds_then_hits(void **state)
{
    (void)state;
    acache_store *s = tu_open_disk(dir, "");
    acache_id action = tu_id(1);
    job j = new_job(3 << 20, 1); /* streamed in 48 pieces */
    acache_result r;
    acache_build_outcome how = ACACHE_BUILD_HIT;
    acache_build_options o = { ACACHE_GET_DATA, 0, &how };
    assert_int_equal(acache_get_or_build_ex(s, &action, build_job, &j, &o, &r), ACACHE_OK);
    assert_int_equal(how, ACACHE_BUILD_BUILT);
    check_bytes(&r, j.size, 1);
    assert_true(r.path[0] == '/');
    acache_result_release(&r);

    assert_int_equal(acache_get_or_build_ex(s, &action, build_job, &j, &o, &r), ACACHE_OK);
    assert_int_equal(how, ACACHE_BUILD_HIT);
    check_bytes(&r, j.size, 1);
    acache_result_release(&r);

    /* The plain form: a path, no data. */
    assert_int_equal(acache_get_or_build(s, &action, build_job, &j, &r), ACACHE_OK);
    assert_null(r.data);
    struct stat sb;
    assert_int_equal(stat(r.path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, j.size);
    assert_int_equal(atomic_load(&j.runs), 1);
    acache_close(s);
}

typedef struct racer {
    acache_store *store;
    acache_id action;
    job *j;
    pthread_barrier_t *start;
    acache_status st;
    acache_build_outcome how;
    char msg[256];
    acache_result r;
} racer;

static void *race(void *arg)
{
    racer *x = arg;
    acache_build_options o = { ACACHE_GET_DATA, 0, &x->how };
    pthread_barrier_wait(x->start);
    x->st = acache_get_or_build_ex(x->store, &x->action, build_job, x->j, &o, &x->r);
    snprintf(x->msg, sizeof x->msg, "%s", acache_last_error());
    return NULL;
}

/* n threads ask at once; returns how many got each outcome. */
static void run_race(acache_store *s, const acache_id *action, job *j, racer *xs, size_t n)
{
    pthread_t t[32];
    pthread_barrier_t start;
    assert_true(n <= 32);
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        memset(&xs[i], 0, sizeof xs[i]);
        xs[i].store = s;
        xs[i].action = *action;
        xs[i].j = j;
        xs[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, race, &xs[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
}

static void sixteen_threads(acache_store *s, uint32_t n)
{
    acache_id action = tu_id(100 + n);
    job j = new_job(1 << 20, n);
    j.store = s; /* every other thread waits for the one build */
    j.waiters = 15;
    racer xs[16];
    run_race(s, &action, &j, xs, 16);
    assert_int_equal(atomic_load(&j.runs), 1);
    int built = 0;
    for (int i = 0; i < 16; i++) {
        assert_int_equal(xs[i].st, ACACHE_OK);
        check_bytes(&xs[i].r, j.size, n);
        built += xs[i].how == ACACHE_BUILD_BUILT;
        assert_true(xs[i].how == ACACHE_BUILD_BUILT || xs[i].how == ACACHE_BUILD_WAITED ||
                    xs[i].how == ACACHE_BUILD_HIT);
        acache_result_release(&xs[i].r);
    }
    assert_int_equal(built, 1);
}

static void test_sixteen_threads_one_build_disk(void **state)
{
    (void)state;
    acache_store *s = tu_open_disk(dir, "");
    sixteen_threads(s, 1);
    acache_close(s);
}

static void test_sixteen_threads_one_build_mem(void **state)
{
    (void)state;
    acache_store *s = NULL;
    assert_int_equal(acache_open("mem:?max-size=64M", &s), ACACHE_OK);
    sixteen_threads(s, 2);
    acache_close(s);
}

static void test_failure_shared_not_retried(void **state)
{
    (void)state;
    acache_store *s = tu_open_disk(dir, "");
    acache_id action = tu_id(200);
    job j = new_job(1000, 3);
    j.store = s;
    j.waiters = 7;
    j.fail = true;
    racer xs[8];
    run_race(s, &action, &j, xs, 8);
    assert_int_equal(atomic_load(&j.runs), 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(xs[i].st, ACACHE_EIO);
        assert_non_null(strstr(xs[i].msg, "compiler crashed on purpose"));
        assert_null(xs[i].r.data);
    }
    /* Nothing was stored, nothing is remembered: the next call builds. */
    acache_result r;
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_MISS);
    j.fail = false;
    j.waiters = 0;
    assert_int_equal(acache_get_or_build(s, &action, build_job, &j, &r), ACACHE_OK);
    assert_int_equal(atomic_load(&j.runs), 2);
    acache_close(s);
}

/* A callback that returns an error without a message still gets one. */
static acache_status build_silent_fail(void *ctx, const acache_id *a, acache_put_stream *out)
{
    (void)ctx;
    (void)a;
    acache_put_write(out, "partial", 7);
    return ACACHE_ENOSPC;
}

static void test_failure_without_message(void **state)
{
    (void)state;
    acache_store *s = tu_open_disk(dir, "");
    acache_id action = tu_id(201);
    acache_result r;
    assert_int_equal(acache_get_or_build(s, &action, build_silent_fail, NULL, &r), ACACHE_ENOSPC);
    assert_non_null(strstr(acache_last_error(), "build callback failed"));
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_MISS);
    acache_close(s);
}

/* A mem store too small for the output: the build runs once, and every
 * caller hears that nothing was kept. */
static void test_store_that_forgets(void **state)
{
    (void)state;
    acache_store *s = NULL;
    assert_int_equal(acache_open("mem:?max-size=64K", &s), ACACHE_OK);
    acache_id action = tu_id(300);
    job j = new_job(1 << 20, 4);
    j.store = s;
    j.waiters = 3;
    racer xs[4];
    run_race(s, &action, &j, xs, 4);
    assert_int_equal(atomic_load(&j.runs), 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(xs[i].st, ACACHE_MISS);
        assert_non_null(strstr(xs[i].msg, "did not keep"));
    }
    acache_close(s);
}

static void test_put_write_fd(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/input", dir);
    unsigned char buf[5000];
    tu_fill(buf, sizeof buf, 9);
    tu_write_file(path, buf, sizeof buf);
    acache_store *s = tu_open_disk(dir, "");
    acache_put_stream *ps = NULL;
    acache_id action = tu_id(400);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(acache_put_begin(s, &action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, "head", 4), ACACHE_OK);
    assert_int_equal(acache_put_write_fd(ps, fd), ACACHE_OK);
    close(fd);
    acache_result r;
    assert_int_equal(acache_put_commit(ps, NULL, 4 + sizeof buf, &r), ACACHE_OK);
    assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(r.data, "head", 4);
    assert_memory_equal((const char *)r.data + 4, buf, sizeof buf);
    acache_result_release(&r);
    /* A bad descriptor is an error, not a crash. */
    assert_int_equal(acache_put_begin(s, &action, &ps), ACACHE_OK);
    assert_int_not_equal(acache_put_write_fd(ps, 1000), ACACHE_OK);
    acache_put_abort(ps);
    acache_close(s);
}

/* ------------------------------------------------------------------ */
/* Across processes                                                     */

/* Forks a child that opens its own store and calls get_or_build with j;
 * it exits 0 on ACACHE_OK, 10 + outcome in the low bits otherwise. */
static pid_t child_build(const acache_id *action, job *j, uint32_t timeout_ms)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60); /* never outlive the test by much */
        acache_store *s = tu_open_disk(dir, "");
        acache_result r;
        acache_build_outcome how = ACACHE_BUILD_HIT;
        acache_build_options o = { 0, timeout_ms, &how };
        acache_status st = acache_get_or_build_ex(s, action, build_job, j, &o, &r);
        acache_close(s);
        _exit(st == ACACHE_OK ? (int)how : 100);
    }
    return pid;
}

static int wait_child(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static size_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

static void test_processes_one_build(void **state)
{
    (void)state;
    char count[4200];
    snprintf(count, sizeof count, "%s/count-procs", dir);
    acache_id action = tu_id(500);
    job j = new_job(1 << 20, 5);
    j.sleep_ms = 300;
    j.count_path = count;
    pid_t kids[4];
    int outcomes[8] = { 0 };
    for (int i = 0; i < 4; i++)
        kids[i] = child_build(&action, &j, 20000);
    for (int i = 0; i < 4; i++) {
        int rc = wait_child(kids[i]);
        assert_true(rc >= 0 && rc < 8);
        outcomes[rc]++;
    }
    assert_int_equal(file_size(count), 1);
    assert_int_equal(outcomes[ACACHE_BUILD_BUILT], 1);
    /* The others waited on the lock (or, if late, hit). */
    assert_int_equal(outcomes[ACACHE_BUILD_WAITED_PROCESS] + outcomes[ACACHE_BUILD_HIT], 3);
    /* The lock file is gone once released. */
    char locks[4200];
    snprintf(locks, sizeof locks, "%s/v1/locks", dir);
    assert_int_equal(tu_count_files(locks, ""), 0);
}

static void test_holder_killed(void **state)
{
    (void)state;
    char count[4200];
    snprintf(count, sizeof count, "%s/count-killed", dir);
    acache_id action = tu_id(600);
    int started[2], block[2];
    assert_int_equal(pipe(started), 0);
    assert_int_equal(pipe(block), 0);
    job j = new_job(4096, 6);
    j.started_fd = started[1];
    j.block_fd = block[0]; /* the holder never finishes */
    j.count_path = count;
    pid_t holder = child_build(&action, &j, 20000);
    char c;
    assert_int_equal(read(started[0], &c, 1), 1); /* it holds the lock now */

    /* This process waits on the lock; kill the holder 300 ms into it. */
    fflush(NULL);
    pid_t killer = fork();
    if (killer == 0) {
        tu_sleep_ms(300);
        kill(holder, SIGKILL);
        _exit(0);
    }
    job mine = new_job(4096, 6);
    mine.count_path = count;
    mine.dead = holder; /* ours runs only once the holder is gone */
    acache_store *s = tu_open_disk(dir, "");
    acache_result r;
    acache_build_outcome how = ACACHE_BUILD_HIT;
    acache_build_options o = { ACACHE_GET_DATA, 20000, &how };
    assert_int_equal(acache_get_or_build_ex(s, &action, build_job, &mine, &o, &r), ACACHE_OK);
    /* Built on the holder's death (checked in build_job), not after the
     * lock timeout (that would be ACACHE_BUILD_BUILT_AFTER_TIMEOUT). */
    assert_int_equal(how, ACACHE_BUILD_BUILT);
    assert_int_equal(atomic_load(&mine.runs), 1);
    check_bytes(&r, 4096, 6);
    acache_result_release(&r);
    assert_int_equal(wait_child(holder), -SIGKILL);
    assert_int_equal(wait_child(killer), 0);
    assert_int_equal(file_size(count), 2); /* the dead one's build and ours */
    for (int i = 0; i < 2; i++) {
        close(started[i]);
        close(block[i]);
    }
    acache_close(s);
}

static void test_lock_timeout(void **state)
{
    (void)state;
    acache_id action = tu_id(700);
    int started[2], block[2];
    assert_int_equal(pipe(started), 0);
    assert_int_equal(pipe(block), 0);
    job j = new_job(4096, 7);
    j.started_fd = started[1];
    j.block_fd = block[0];
    pid_t holder = child_build(&action, &j, 20000);
    char c;
    assert_int_equal(read(started[0], &c, 1), 1);

    job mine = new_job(4096, 7);
    acache_store *s = tu_open_disk(dir, "");
    acache_result r;
    acache_build_outcome how = ACACHE_BUILD_HIT;
    acache_build_options o = { 0, 300, &how };
    double t0 = tu_now_s();
    assert_int_equal(acache_get_or_build_ex(s, &action, build_job, &mine, &o, &r), ACACHE_OK);
    double took = (tu_now_s() - t0) * 1000;
    assert_int_equal(how, ACACHE_BUILD_BUILT_AFTER_TIMEOUT);
    assert_int_equal(atomic_load(&mine.runs), 1);
    assert_true(took >= 280 && took < 5000);

    /* Let the holder finish: it stores the same bytes, harmlessly. */
    assert_int_equal(write(block[1], "g", 1), 1);
    assert_int_equal(wait_child(holder), ACACHE_BUILD_BUILT);
    assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    check_bytes(&r, 4096, 7);
    acache_result_release(&r);
    for (int i = 0; i < 2; i++) {
        close(started[i]);
        close(block[i]);
    }
    acache_close(s);
}

/* Two handles on one directory in one process exclude each other through
 * the lock file, as two processes do. */
static void test_two_handles_one_process(void **state)
{
    (void)state;
    acache_store *a = tu_open_disk(dir, ""), *b = tu_open_disk(dir, "");
    acache_id action = tu_id(800);
    job j = new_job(2048, 8);
    j.sleep_ms = 200;
    racer xs[2];
    pthread_t t[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++) {
        memset(&xs[i], 0, sizeof xs[i]);
        xs[i].store = i ? b : a;
        xs[i].action = action;
        xs[i].j = &j;
        xs[i].start = &start;
        pthread_create(&t[i], NULL, race, &xs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(xs[i].st, ACACHE_OK);
        acache_result_release(&xs[i].r);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&j.runs), 1);
    assert_true((xs[0].how == ACACHE_BUILD_BUILT) != (xs[1].how == ACACHE_BUILD_BUILT));
    acache_close(a);
    acache_close(b);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    acache_store *s = tu_open_disk(dir, "");
    acache_id action = tu_id(900);
    acache_result r;
    assert_int_equal(acache_get_or_build(NULL, &action, build_job, NULL, &r), ACACHE_EINVAL);
    assert_int_equal(acache_get_or_build(s, &action, NULL, NULL, &r), ACACHE_EINVAL);
    assert_int_equal(acache_get_or_build(s, NULL, build_job, NULL, &r), ACACHE_EINVAL);
    acache_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_builds_then_hits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sixteen_threads_one_build_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sixteen_threads_one_build_mem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_shared_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_without_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_that_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_write_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_processes_one_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holder_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_one_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    alarm(300); /* the whole program, whatever hangs */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
