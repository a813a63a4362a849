/*
 * test_trim.c - keeping a disk store bounded: the size estimate and the
 * counters across processes, trims (least recently used first, grace,
 * max-age, shared objects, leftovers, dry runs, the lock, stopping), the
 * automatic trim, clear, and maintenance calls on stores that are not disk
 * stores.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KB4 4096ull

typedef tu_disk fixture;

TU_DISK_FIXTURE("trim", "?trim-interval=off")

/* An action id in shard `shard` (its first byte), distinct per n. */
static acache_id shard_id(int shard, uint32_t n)
{
    acache_id id = tu_id(n);
    id.bytes[0] = (uint8_t)shard;
    return id;
}

static void put_id(acache_store *s, const acache_id *action, size_t len, uint32_t seed,
                   acache_id *out)
{
    char *buf = malloc(len ? len : 1);
    tu_fill(buf, len, seed);
    assert_int_equal(acache_put(s, action, buf, len, out), ACACHE_OK);
    free(buf);
}

#define path_of tu_entry_path

/* Makes an entry look last used `age` seconds ago (record and object). */
static void age_entry(const char *dir, const acache_id *action, const acache_id *output, long age)
{
    char p[4300];
    path_of(dir, 'a', action, "", p, sizeof p);
    tu_age(p, age);
    path_of(dir, 'o', output, "", p, sizeof p);
    tu_age(p, age);
}

/* Puts entry n (len bytes) and makes it look last used `age` seconds ago. */
static void put_aged(acache_store *s, const char *dir, const acache_id *action, size_t len,
                     uint32_t seed, long age, acache_id *output)
{
    acache_id out;
    put_id(s, action, len, seed, &out);
    age_entry(dir, action, &out, age);
    if (output)
        *output = out;
}

static bool exists(const char *dir, char kind, const acache_id *id, const char *suffix)
{
    char p[4300];
    path_of(dir, kind, id, suffix, p, sizeof p);
    return access(p, F_OK) == 0;
}

static acache_disk_counters stats(acache_store *s)
{
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(s, &c), ACACHE_OK);
    return c;
}

static acache_trim_report trim(acache_store *s, int64_t max_size, int64_t grace, unsigned flags)
{
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report r;
    o.max_size = max_size;
    o.grace_ns = grace;
    o.flags = flags;
    assert_int_equal(acache_trim(s, &o, &r), ACACHE_OK);
    return r;
}

static acache_verify_report verify(acache_store *s, unsigned flags)
{
    acache_verify_options o = { flags, NULL, NULL, NULL, NULL };
    acache_verify_report r;
    assert_int_equal(acache_verify(s, &o, &r), ACACHE_OK);
    return r;
}

/* ------------------------------------------------------------------ */

static void test_estimate_follows_puts(void **state)
{
    fixture *f = *state;
    acache_disk_counters c = stats(f->s);
    assert_true(c.counted_ns > 0); /* created empty: counted */
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.bytes, 0);
    acache_id a = tu_id(1), b = tu_id(2), e = tu_id(3), dup = tu_id(4), out;
    put_id(f->s, &a, 100, 1, NULL);
    put_id(f->s, &b, 5000, 2, NULL);
    put_id(f->s, &e, 0, 3, NULL);
    c = stats(f->s);
    assert_int_equal(c.entries, 3);
    assert_int_equal(c.objects, 3);
    /* 3 records of one block, objects of 1, 2 and 0 blocks. */
    assert_int_equal(c.bytes, 3 * KB4 + KB4 + 2 * KB4);
    assert_int_equal(c.puts, 3);
    assert_int_equal(c.bytes_written, 5100);
    /* The same bytes again under the same action: nothing new. */
    put_id(f->s, &a, 100, 1, NULL);
    /* The same bytes under another action: a record, no object. */
    put_id(f->s, &dup, 100, 1, &out);
    c = stats(f->s);
    assert_int_equal(c.entries, 4);
    assert_int_equal(c.objects, 3);
    assert_int_equal(c.bytes, 4 * KB4 + 3 * KB4);
    assert_int_equal(c.puts, 5);
    /* One object, referred to by two actions (two links and its name). */
    char p[4300];
    struct stat sb;
    path_of(f->dir, 'o', &out, "", p, sizeof p);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_nlink, 3);
    assert_int_equal(acache_delete(f->s, &dup), ACACHE_OK);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_nlink, 2);
    acache_result r;
    assert_int_equal(acache_get(f->s, &a, 0, &r), ACACHE_OK);
    assert_int_equal(acache_get(f->s, &dup, 0, &r), ACACHE_MISS);
    c = stats(f->s);
    assert_int_equal(c.entries, 3);
    assert_int_equal(c.hits, 1);
    assert_int_equal(c.misses, 1);
    assert_int_equal(c.bytes_read, 100);
    /* Another handle, later: the totals persisted. */
    acache_close(f->s);
    f->s = tu_open_disk(f->dir, "?trim-interval=off");
    c = stats(f->s);
    assert_int_equal(c.entries, 3);
    assert_int_equal(c.hits, 1);
    assert_int_equal(c.puts, 5);
}

/* A process that dies without closing its store still counts: its puts
 * were written to its own counter file (at most every 50 ms), folded by
 * the next reader. */
static void test_counts_across_processes(void **state)
{
    fixture *f = *state;
    for (int round = 0; round < 2; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            acache_store *s = tu_open_disk(f->dir, "?trim-interval=off");
            for (uint32_t i = 0; i < 10; i++) {
                acache_id a = tu_id(100 * (uint32_t)round + i);
                char buf[64];
                tu_fill(buf, sizeof buf, 100 * (uint32_t)round + i);
                if (acache_put(s, &a, buf, sizeof buf, NULL) != ACACHE_OK)
                    _exit(1);
            }
            if (round == 0) {
                /* What a put counts reaches the file within 50 ms. */
                usleep(100000);
                acache_id last = tu_id(99);
                char one = 1;
                if (acache_put(s, &last, &one, 1, NULL) != ACACHE_OK)
                    _exit(1);
                kill(getpid(), SIGKILL); /* dies without closing */
            }
            acache_close(s);
            _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (round == 0)
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        else
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    acache_disk_counters c = stats(f->s);
    assert_int_equal(c.puts, 21);
    assert_int_equal(c.entries, 21);
    assert_int_equal(c.bytes, 21 * 2 * KB4);
    /* The dead process's file was folded into a shard and removed. */
    char p[4300];
    snprintf(p, sizeof p, "%s/v1/stats", f->dir);
    assert_int_equal(tu_count_files(p, "proc-"), 0); /* we have put nothing */
    /* Read again: nothing counted twice. */
    c = stats(f->s);
    assert_int_equal(c.puts, 21);
}

static void test_trim_under_limit_reads_little(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 300; i++) {
        acache_id a = tu_id(i);
        put_id(f->s, &a, 10, i, NULL);
    }
    acache_trim_report r = trim(f->s, ACACHE_DEFAULT, ACACHE_DEFAULT, 0);
    assert_int_equal(r.entries_removed, 0);
    assert_int_equal(r.bytes_removed, 0);
    assert_int_equal(r.size_before, 300 * 2 * KB4);
    /* Not the whole store: the slice of the sweep (a few shards of 256),
     * tmp and stats; well under the 600 files the store holds. */
    assert_true(r.dirs_listed <= 2 + 2 * 8);
    assert_true(r.files_examined < 100);
    /* A full trim looks at everything and recounts. */
    r = trim(f->s, ACACHE_DEFAULT, ACACHE_DEFAULT, ACACHE_TRIM_FULL);
    assert_true(r.files_examined >= 600);
    assert_int_equal(r.counted, 1);
    assert_int_equal(stats(f->s).entries, 300);
}

/* Within one slice, the oldest go first, and only as many as needed. */
static void test_trim_oldest_first(void **state)
{
    fixture *f = *state;
    enum { N = 20 };
    acache_id a[N], o[N];
    for (int i = 0; i < N; i++) {
        a[i] = shard_id(0x42, (uint32_t)i);
        /* Entry i was last used N - i hours ago: 0 is the oldest. */
        put_aged(f->s, f->dir, &a[i], 4000, (uint32_t)i, (long)(N - i) * 3600, &o[i]);
    }
    /* 20 entries of 2 blocks; max-size 12 entries' worth: down to 90% of
     * it, i.e. 10.8 entries: 10 stay, the 10 oldest go. */
    acache_trim_report r = trim(f->s, 12 * 2 * KB4, ACACHE_DEFAULT, 0);
    assert_int_equal(r.entries_removed, 10);
    assert_int_equal(r.objects_removed, 10);
    assert_int_equal(r.bytes_removed, 10 * 2 * KB4);
    for (int i = 0; i < N; i++) {
        assert_int_equal(exists(f->dir, 'a', &a[i], ""), i >= 10);
        assert_int_equal(exists(f->dir, 'a', &a[i], ".out"), i >= 10);
        assert_int_equal(exists(f->dir, 'o', &o[i], ""), i >= 10);
    }
    assert_int_equal(stats(f->s).entries, 10);
    assert_int_equal(stats(f->s).bytes, 10 * 2 * KB4);
    assert_int_equal(stats(f->s).trimmed_entries, 10);
    /* Under the limit now: a second trim has nothing to do. */
    r = trim(f->s, 12 * 2 * KB4, ACACHE_DEFAULT, 0);
    assert_int_equal(r.entries_removed, 0);
    assert_int_equal(verify(f->s, 0).problems, 0);
}

/* What was used within the grace period stays, whatever the size; with
 * grace 0 nothing does. */
static void test_trim_grace(void **state)
{
    fixture *f = *state;
    acache_id a[10], o[10];
    for (int i = 0; i < 10; i++) {
        a[i] = tu_id((uint32_t)i);
        put_id(f->s, &a[i], 100, (uint32_t)i, &o[i]);
    }
    /* 0-4 used 2 hours ago; 5-9 just now. */
    for (int i = 0; i < 5; i++)
        age_entry(f->dir, &a[i], &o[i], 7200);
    acache_trim_report r = trim(f->s, 0, ACACHE_DEFAULT, 0);
    assert_int_equal(r.entries_removed, 5);
    assert_true(r.kept_in_grace >= 5);
    for (int i = 0; i < 10; i++)
        assert_int_equal(exists(f->dir, 'a', &a[i], ""), i >= 5);
    acache_result res;
    for (int i = 5; i < 10; i++)
        assert_int_equal(acache_get(f->s, &a[i], 0, &res), ACACHE_OK);
    /* Used 15 minutes ago: within grace (10m) plus the 10m a use may go
     * unrecorded. Used 25 minutes ago: not. */
    age_entry(f->dir, &a[5], &o[5], 15 * 60);
    age_entry(f->dir, &a[6], &o[6], 25 * 60);
    r = trim(f->s, 0, ACACHE_DEFAULT, 0);
    assert_int_equal(r.entries_removed, 1);
    assert_true(exists(f->dir, 'a', &a[5], ""));
    assert_false(exists(f->dir, 'a', &a[6], ""));
    /* A longer grace keeps more. */
    age_entry(f->dir, &a[7], &o[7], 25 * 60);
    r = trim(f->s, 0, 3600LL * 1000000000LL, 0);
    assert_int_equal(r.entries_removed, 0);
    r = trim(f->s, 0, 0, 0);
    assert_int_equal(r.entries_removed, 4);
    assert_int_equal(stats(f->s).entries, 0);
    assert_int_equal(stats(f->s).bytes, 0);
    assert_int_equal(verify(f->s, 0).problems, 0);
}

static void test_trim_max_age(void **state)
{
    fixture *f = *state;
    acache_id a[6], o[6];
    for (int i = 0; i < 6; i++) {
        a[i] = tu_id((uint32_t)i);
        put_id(f->s, &a[i], 100, (uint32_t)i, &o[i]);
    }
    /* 0-2 unused for 40 days, 3 for 20 days, 4-5 fresh. */
    for (int i = 0; i < 3; i++)
        age_entry(f->dir, &a[i], &o[i], 40L * 86400);
    age_entry(f->dir, &a[3], &o[3], 20L * 86400);
    acache_trim_options opt = ACACHE_TRIM_OPTIONS_INIT;
    opt.flags = ACACHE_TRIM_FULL;
    acache_trim_report r;
    assert_int_equal(acache_trim(f->s, &opt, &r), ACACHE_OK);
    assert_int_equal(r.entries_removed, 3);
    assert_int_equal(r.max_age_ns, 30LL * 86400 * 1000000000LL);
    for (int i = 0; i < 6; i++)
        assert_int_equal(exists(f->dir, 'a', &a[i], ""), i >= 3);
    /* A shorter max-age from the spec. */
    acache_store *s = tu_open_disk(f->dir, "?max-age=7d&trim-interval=off");
    assert_int_equal(acache_trim(s, &opt, &r), ACACHE_OK);
    assert_int_equal(r.entries_removed, 1);
    assert_false(exists(f->dir, 'a', &a[3], ""));
    acache_close(s);
}

/* An object shared by two actions stays while either is kept. */
static void test_shared_object(void **state)
{
    fixture *f = *state;
    acache_id a = shard_id(1, 1), b = shard_id(2, 2), oa, ob;
    put_id(f->s, &a, 3000, 7, &oa);
    put_id(f->s, &b, 3000, 7, &ob);
    assert_memory_equal(&oa, &ob, sizeof oa);
    age_entry(f->dir, &a, &oa, 7200);
    char p[4300];
    path_of(f->dir, 'a', &b, "", p, sizeof p);
    assert_int_equal(utimensat(AT_FDCWD, p, NULL, 0), 0); /* b is recent */
    acache_trim_report r = trim(f->s, 0, ACACHE_DEFAULT, 0);
    assert_int_equal(r.entries_removed, 1);
    assert_int_equal(r.objects_removed, 0);
    assert_true(exists(f->dir, 'o', &oa, ""));
    acache_result res;
    assert_int_equal(acache_get(f->s, &b, ACACHE_GET_DATA, &res), ACACHE_OK);
    assert_int_equal(res.size, 3000);
    acache_result_release(&res);
    /* b goes too (grace 0): now the object has no referrer and goes. */
    r = trim(f->s, 0, 0, 0);
    assert_int_equal(r.entries_removed, 1);
    assert_int_equal(r.objects_removed, 1);
    assert_false(exists(f->dir, 'o', &oa, ""));
}

/* Objects nobody refers to (a deleted action's), references without a
 * record and temp files of dead processes go; young ones stay. */
static void test_leftovers(void **state)
{
    fixture *f = *state;
    acache_id a = tu_id(1), b = tu_id(2), oa, ob;
    put_id(f->s, &a, 100, 1, &oa);
    put_id(f->s, &b, 100, 2, &ob);
    assert_int_equal(acache_delete(f->s, &a), ACACHE_OK); /* oa: unreferenced */
    char rec[4300], tmp[4300], young[4300];
    path_of(f->dir, 'a', &b, "", rec, sizeof rec);
    assert_int_equal(unlink(rec), 0); /* b.out: a reference with no record */
    snprintf(tmp, sizeof tmp, "%s/v1/tmp/put-dead01", f->dir);
    tu_write_file(tmp, "partial", 7);
    snprintf(young, sizeof young, "%s/v1/tmp/put-alive1", f->dir);
    tu_write_file(young, "partial", 7);
    /* All of it fresh: kept. */
    acache_trim_report r = trim(f->s, ACACHE_DEFAULT, ACACHE_DEFAULT, ACACHE_TRIM_FULL);
    assert_int_equal(r.objects_removed + r.leftovers_removed, 0);
    acache_verify_report v = verify(f->s, 0);
    assert_int_equal(v.problems, 0);
    assert_int_equal(v.orphan_objects, 1);
    assert_int_equal(v.leftovers, 1 + 0); /* the reference; temps are young */
    /* Two hours later. */
    path_of(f->dir, 'o', &oa, "", rec, sizeof rec);
    tu_age(rec, 7200);
    path_of(f->dir, 'a', &b, ".out", rec, sizeof rec);
    tu_age(rec, 7200);
    tu_age(tmp, 7200);
    r = trim(f->s, ACACHE_DEFAULT, ACACHE_DEFAULT, ACACHE_TRIM_FULL);
    assert_int_equal(r.objects_removed, 2); /* oa, then ob once b.out went */
    assert_int_equal(r.leftovers_removed, 2);
    assert_false(exists(f->dir, 'o', &oa, ""));
    assert_false(exists(f->dir, 'a', &b, ".out"));
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(access(young, F_OK), 0);
    acache_disk_counters c = stats(f->s);
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.objects, 0);
}

static void test_dry_run(void **state)
{
    fixture *f = *state;
    acache_id a[8], o[8];
    for (int i = 0; i < 8; i++) {
        a[i] = tu_id((uint32_t)i);
        put_aged(f->s, f->dir, &a[i], 100, (uint32_t)i, 7200, &o[i]);
    }
    acache_trim_report r = trim(f->s, 0, ACACHE_DEFAULT, ACACHE_TRIM_DRY_RUN);
    assert_int_equal(r.entries_removed, 8);
    assert_int_equal(r.objects_removed, 8);
    assert_int_equal(r.bytes_removed, 16 * KB4);
    for (int i = 0; i < 8; i++)
        assert_true(exists(f->dir, 'o', &o[i], ""));
    acache_disk_counters c = stats(f->s);
    assert_int_equal(c.entries, 8);
    assert_int_equal(c.trimmed_entries, 0);
    /* Full and dry: expired entries are not counted twice. */
    r = trim(f->s, 0, ACACHE_DEFAULT, ACACHE_TRIM_DRY_RUN | ACACHE_TRIM_FULL);
    assert_int_equal(r.entries_removed, 8);
}

/* A store made before counters existed (or whose counters were lost) is
 * counted by its first trim. */
static void test_recount(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 30; i++) {
        acache_id a = tu_id(i);
        put_id(f->s, &a, 5000, i, NULL);
    }
    acache_close(f->s);
    char p[4300];
    snprintf(p, sizeof p, "%s/v1/stats", f->dir);
    tu_rmtree(p);
    f->s = tu_open_disk(f->dir, "?trim-interval=off");
    acache_disk_counters c = stats(f->s);
    assert_int_equal(c.counted_ns, 0);
    assert_int_equal(c.entries, 0);
    acache_trim_report r = trim(f->s, ACACHE_DEFAULT, ACACHE_DEFAULT, 0);
    assert_int_equal(r.counted, 1);
    c = stats(f->s);
    assert_true(c.counted_ns > 0);
    assert_int_equal(c.entries, 30);
    assert_int_equal(c.objects, 30);
    assert_int_equal(c.bytes, 30 * 3 * KB4);
}

static int cancel_after_one(void *ctx, const acache_progress *p)
{
    (void)p;
    return ++*(int *)ctx >= 1;
}

/* A trim stopped halfway (progress callback, or close) leaves a store
 * with nothing wrong, and says it stopped. */
static void test_trim_stopped(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 400; i++) {
        acache_id a = tu_id(i);
        put_aged(f->s, f->dir, &a, 100, i, 7200, NULL);
    }
    int calls = 0;
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    acache_trim_report r;
    o.max_size = 0;
    o.flags = ACACHE_TRIM_FULL;
    o.progress = cancel_after_one;
    o.progress_ctx = &calls;
    assert_int_equal(acache_trim(f->s, &o, &r), ACACHE_OK);
    assert_int_equal(r.stopped, 1);
    assert_true(r.entries_removed < 400);
    assert_int_equal(stats(f->s).last_trim_finished, 0);
    assert_int_equal(verify(f->s, 0).problems, 0);
    /* The next one finishes the work. */
    r = trim(f->s, 0, ACACHE_DEFAULT, 0);
    assert_int_equal(r.stopped, 0);
    assert_int_equal(stats(f->s).entries, 0);
    assert_int_equal(stats(f->s).last_trim_finished, 1);
}

typedef struct trim_arg {
    acache_store *s;
    acache_trim_report r;
    acache_status st;
} trim_arg;

static void *trim_thread(void *p)
{
    trim_arg *t = p;
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    t->st = acache_trim(t->s, &o, &t->r);
    return NULL;
}

/* One trim at a time: a held lock makes NOWAIT report busy, and a plain
 * trim wait for it. */
static void test_trim_lock(void **state)
{
    fixture *f = *state;
    char p[4300];
    snprintf(p, sizeof p, "%s/v1/trim.lock", f->dir);
    int fd = open(p, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    acache_trim_report r = trim(f->s, ACACHE_DEFAULT, ACACHE_DEFAULT, ACACHE_TRIM_NOWAIT);
    assert_int_equal(r.busy, 1);
    trim_arg t = { .s = f->s, .st = ACACHE_EIO };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trim_thread, &t), 0);
    usleep(100000);
    close(fd); /* the waiting trim goes on */
    pthread_join(th, NULL);
    assert_int_equal(t.st, ACACHE_OK);
    assert_int_equal(t.r.busy, 0);
}

/* A put past trim-interval trims in the background, off the put's path. */
static void test_auto_trim(void **state)
{
    fixture *f = *state;
    acache_store *s = tu_open_disk(f->dir, "?max-size=400K&trim-interval=0&grace=0");
    for (uint32_t i = 0; i < 100; i++) {
        acache_id a = tu_id(i);
        put_id(s, &a, 4000, i, NULL);
    }
    /* A trim runs at most once per interval (here: whenever the last one
     * is done), started by a put: what was put since it started waits for
     * the next. Keep putting, slowly, until one has brought the store
     * under max-size. On a quiet machine that takes about a second; on a
     * busy one the trim runs at nice 19 and rests while other tasks run,
     * and it was seen to need more than 30 s at a load average of 20, so
     * the bound (5 minutes) only catches a trim that never finishes. */
    acache_disk_counters c = stats(s);
    for (uint32_t i = 0; i < 6000 && !(c.bytes <= 400 * 1024 && c.last_trim_finished); i++) {
        usleep(50000);
        acache_id a = tu_id(10000 + i);
        put_id(s, &a, 10, i, NULL);
        c = stats(s);
    }
    assert_true(c.bytes <= 400 * 1024);
    assert_true(c.trimmed_entries > 0);
    assert_true(c.last_trim_ns > 0);
    acache_close(s);
    acache_verify_report v = verify(f->s, 0);
    assert_int_equal(v.problems, 0);
    /* Off: nothing is trimmed however large. */
    s = tu_open_disk(f->dir, "?max-size=1K&trim-interval=off&grace=0");
    uint64_t before = stats(s).trimmed_entries;
    for (uint32_t i = 0; i < 20; i++) {
        acache_id a = tu_id(1000 + i);
        put_id(s, &a, 4000, i, NULL);
    }
    usleep(200000);
    assert_int_equal(stats(s).trimmed_entries, before);
    acache_close(s);
}

/* Closing a store whose background trim has much to do returns (the trim
 * stops), and leaves nothing wrong behind. */
static void test_close_stops_auto_trim(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 2000; i++) {
        acache_id a = tu_id(i);
        put_id(f->s, &a, 10, i, NULL);
    }
    for (int round = 0; round < 5; round++) {
        acache_store *s = tu_open_disk(f->dir, "?max-size=1K&trim-interval=0&grace=0");
        acache_id a = tu_id(5000 + (uint32_t)round);
        put_id(s, &a, 10, 1, NULL); /* starts a trim */
        acache_close(s);            /* stops it */
        assert_int_equal(verify(f->s, 0).problems, 0);
    }
}

/* Waits (30 s at most) until a trim of s's store that started at or after
 * since_ns (the real-time clock, as trim.state) is under way: trim.state,
 * written under the lock as it starts, says so. Looking at the lock itself
 * would take it for a moment, and an automatic trim finding it taken gives
 * up. */
static void wait_trim_running(acache_store *s, int64_t since_ns)
{
    for (double until = tu_now_s() + 30;; tu_sleep_ms(2)) {
        acache_disk_counters c = stats(s);
        if (c.last_trim_ns >= since_ns && !c.last_trim_finished)
            return;
        if (tu_now_s() > until)
            fail_msg("no trim started");
    }
}

static void *spin(void *p)
{
    atomic_bool *stop = p;
    while (!atomic_load(stop))
        ;
    return NULL;
}

/* On a busy machine the automatic trim works 1% of the time, so it may
 * hold the lock for long: a trim (clear, repair) that waits for it asks it
 * to stop, and gets the lock. */
static void test_waiting_trim_stops_auto_trim(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 2000; i++) {
        acache_id a = tu_id(i);
        put_aged(f->s, f->dir, &a, 10, i, 7200, NULL);
    }
    atomic_bool stop = false;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spin, &stop), 0); /* the machine is busy */
    acache_store *s = tu_open_disk(f->dir, "?max-size=0&trim-interval=0&grace=0");
    acache_id a = tu_id(9999);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now); /* trim.state's clock */
    int64_t before = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec - 1000000000LL;
    put_id(s, &a, 10, 1, NULL); /* starts the automatic trim */
    wait_trim_running(s, before);
    acache_trim_report r = trim(f->s, 0, 0, 0);
    atomic_store(&stop, true);
    pthread_join(th, NULL);
    assert_int_equal(r.busy, 0);
    assert_true(r.entries_removed > 0); /* the automatic one had stopped */
    assert_int_equal(stats(f->s).entries, 0);
    acache_close(s);
    assert_int_equal(verify(f->s, 0).problems, 0);
}

/* On a busy machine the automatic trim gets 1% of a CPU, in processes that
 * may live a few seconds (a gocacheprog session): each must move it on, so
 * that over many sessions the store comes back under max-size. Each session
 * here opens the store, starts the trim with a put, waits until the trim
 * has removed something (30 s at most), and closes (which stops it). With
 * max-age=1d a trim also sweeps 107 of the 256 shards for expired entries:
 * done before any removal, that would make every session start over. */
static void test_auto_trim_short_sessions(void **state)
{
    fixture *f = *state;
    const uint32_t n = 3000;
    for (uint32_t i = 0; i < n; i++) {
        acache_id a = tu_id(i);
        put_aged(f->s, f->dir, &a, 10, i, 7200, NULL);
    }
    /* A record and an object of one block each: 8 KiB an entry. The limit
     * is 95% of that; the trim goes down to 90% of the limit. */
    const uint64_t max = (uint64_t)n * 8 * 1024 * 95 / 100;
    char opts[128];
    snprintf(opts, sizeof opts, "?max-size=%" PRIu64 "&max-age=1d&trim-interval=0&grace=0", max);
    acache_disk_counters c = stats(f->s);
    uint64_t first = c.entries, prev = c.entries;
    assert_true(c.bytes > max);
    atomic_bool stop = false;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spin, &stop), 0); /* the machine is busy */
    int sessions = 0, shrank = 0;
    double t0 = tu_now_s();
    while (sessions < 20 && c.bytes > max) {
        acache_store *s = tu_open_disk(f->dir, opts);
        acache_id a = tu_id(100000 + (uint32_t)sessions);
        put_id(s, &a, 10, 1, NULL); /* starts the automatic trim */
        for (double until = tu_now_s() + 30; stats(s).entries >= prev && tu_now_s() < until;)
            tu_sleep_ms(5); /* polling for the event: fewer than before the put */
        acache_close(s); /* stops it */
        sessions++;
        c = stats(f->s);
        shrank += c.entries < prev;
        print_message("session %d: %" PRIu64 " entries, %" PRIu64 " bytes (limit %" PRIu64 ")\n",
                      sessions, c.entries, c.bytes, max);
        prev = c.entries;
    }
    atomic_store(&stop, true);
    pthread_join(th, NULL);
    double secs = tu_now_s() - t0;
    double removed = (double)first - (double)c.entries;
    print_message("%d sessions, %.1f s: %.0f entries removed (%.0f/s)\n", sessions, secs, removed,
                  removed / secs);
    /* The sessions moved it on (each started where the last one stopped;
     * on a machine loaded beyond the spinning thread one may get nearly no
     * CPU), and brought the store under max-size, or clearly toward it. */
    assert_true(2 * shrank >= sessions);
    assert_true(c.bytes <= max || removed >= n / 50);
    assert_int_equal(verify(f->s, 0).problems, 0);
}

typedef struct race_arg {
    acache_store *s;
    atomic_bool *stop;
    int bad, hits;
} race_arg;

static void *race_getter(void *p)
{
    race_arg *a = p;
    while (!atomic_load(a->stop)) {
        for (uint32_t k = 0; k < 64; k++) {
            acache_id id = tu_id(k);
            acache_result r;
            acache_status st = acache_get(a->s, &id, ACACHE_GET_DATA, &r);
            if (st == ACACHE_OK) {
                acache_id check;
                char want[2000];
                tu_fill(want, sizeof want, k);
                acache_id_of_bytes(r.data, r.size, &check);
                if (r.size != sizeof want || memcmp(r.data, want, sizeof want) != 0 ||
                    memcmp(&check, &r.output_id, sizeof check) != 0)
                    a->bad++;
                a->hits++;
                acache_result_release(&r);
            } else if (st != ACACHE_MISS) {
                a->bad++;
            }
        }
    }
    return NULL;
}

/* Gets racing with removals see whole entries or misses, never errors. */
static void test_get_races_trim(void **state)
{
    fixture *f = *state;
    atomic_bool stop = false;
    race_arg args[2] = { { f->s, &stop, 0, 0 }, { f->s, &stop, 0, 0 } };
    pthread_t th[2];
    char buf[2000];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_getter, &args[i]), 0);
    time_t end = time(NULL) + 3;
    while (time(NULL) < end) {
        for (uint32_t k = 0; k < 64; k++) {
            acache_id id = tu_id(k);
            tu_fill(buf, sizeof buf, k);
            assert_int_equal(acache_put(f->s, &id, buf, sizeof buf, NULL), ACACHE_OK);
        }
        trim(f->s, 0, 0, 0);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    assert_int_equal(verify(f->s, 0).problems, 0);
}

static void test_clear(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 50; i++) {
        acache_id a = tu_id(i);
        put_id(f->s, &a, 3000, i, NULL);
    }
    acache_result r;
    acache_id a0 = tu_id(0);
    assert_int_equal(acache_get(f->s, &a0, 0, &r), ACACHE_OK);
    char young[4300];
    snprintf(young, sizeof young, "%s/v1/tmp/put-running", f->dir);
    tu_write_file(young, "x", 1);
    acache_trim_report rep;
    assert_int_equal(acache_clear(f->s, &rep), ACACHE_OK);
    assert_int_equal(rep.entries_removed, 50);
    assert_int_equal(rep.objects_removed, 50);
    assert_int_equal(rep.bytes_removed, 50 * 2 * KB4);
    char p[4300];
    snprintf(p, sizeof p, "%s/v1/a", f->dir);
    assert_int_equal(tu_count_files(p, ""), 0);
    snprintf(p, sizeof p, "%s/v1/o", f->dir);
    assert_int_equal(tu_count_files(p, ""), 0);
    assert_int_equal(access(young, F_OK), 0);
    assert_int_equal(acache_get(f->s, &a0, 0, &r), ACACHE_MISS);
    acache_disk_counters c = stats(f->s);
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.bytes, 0);
    assert_int_equal(c.hits, 1); /* history stays */
    /* It works again afterwards. */
    put_id(f->s, &a0, 10, 1, NULL);
    assert_int_equal(acache_get(f->s, &a0, 0, &r), ACACHE_OK);
}

/* Maintenance needs a disk store, directly or as the home tier. */
static void test_needs_disk_store(void **state)
{
    fixture *f = *state;
    acache_store *mem = NULL;
    assert_int_equal(acache_open("mem:", &mem), ACACHE_OK);
    acache_trim_report r;
    acache_verify_report v;
    acache_disk_counters c;
    assert_int_equal(acache_trim(mem, NULL, &r), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "not a disk store"));
    assert_int_equal(acache_verify(mem, NULL, &v), ACACHE_EINVAL);
    assert_int_equal(acache_clear(mem, NULL), ACACHE_EINVAL);
    assert_int_equal(acache_disk_stats(mem, &c), ACACHE_EINVAL);
    assert_int_equal(acache_trim(NULL, NULL, &r), ACACHE_EINVAL);
    /* A disk store behind a memory tier is the home tier. */
    acache_store *stores[2] = { mem, tu_open_disk(f->dir, "") }, *t = NULL;
    assert_int_equal(acache_tiers(stores, 2, &t), ACACHE_OK);
    acache_id a = tu_id(1);
    put_id(t, &a, 100, 1, NULL);
    assert_int_equal(acache_disk_stats(t, &c), ACACHE_OK);
    assert_int_equal(c.entries, 1);
    assert_int_equal(acache_trim(t, NULL, &r), ACACHE_OK);
    assert_int_equal(acache_verify(t, NULL, &v), ACACHE_OK);
    acache_close(t);
    /* And through a namespace. */
    acache_id fp = tu_id(77);
    acache_store *ns = NULL;
    assert_int_equal(acache_namespace(tu_open_disk(f->dir, ""), &fp, &ns), ACACHE_OK);
    assert_int_equal(acache_disk_stats(ns, &c), ACACHE_OK);
    assert_int_equal(c.entries, 1);
    assert_int_equal(acache_trim(ns, NULL, &r), ACACHE_OK);
    acache_close(ns);
    /* Negative limits other than ACACHE_DEFAULT are refused. */
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    o.max_size = -5;
    assert_int_equal(acache_trim(f->s, &o, &r), ACACHE_EINVAL);
    assert_int_equal(acache_verify(f->s, NULL, NULL), ACACHE_EINVAL);
}

static void test_spec_options(void **state)
{
    fixture *f = *state;
    const char *bad[] = { "?grace=soon", "?trim-interval=often", "?max-size=-1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char spec[4300];
        snprintf(spec, sizeof spec, "disk:%s%s", f->dir, bad[i]);
        acache_store *s = NULL;
        assert_int_equal(acache_open(spec, &s), ACACHE_EINVAL);
    }
    acache_store *s = tu_open_disk(f->dir, "?max-size=2G&max-age=7d&grace=1m&trim-interval=2h");
    acache_disk_counters c = stats(s);
    assert_int_equal(c.max_size, 2ull << 30);
    assert_int_equal(c.max_age_ns, 7LL * 86400 * 1000000000LL);
    assert_int_equal(c.grace_ns, 60LL * 1000000000LL);
    assert_int_equal(c.trim_interval_ns, 7200LL * 1000000000LL);
    acache_close(s);
    uint64_t size;
    int64_t ns;
    assert_int_equal(acache_parse_size("3M", &size), ACACHE_OK);
    assert_int_equal(size, 3u << 20);
    assert_int_equal(acache_parse_duration("90s", &ns), ACACHE_OK);
    assert_int_equal(ns, 90LL * 1000000000LL);
    assert_int_equal(acache_parse_size("lots", &size), ACACHE_EINVAL);
    assert_int_equal(acache_parse_duration("1y", &ns), ACACHE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_estimate_follows_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_under_limit_reads_little, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_max_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_stops_auto_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_trim_stops_auto_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_trim_short_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_races_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs_disk_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
