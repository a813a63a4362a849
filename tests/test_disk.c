/*
 * test_disk.c - the local disk store: round trips, the on-disk layout, and
 * every failure path (corrupt, truncated and dangling entries, unwritable
 * directories, aborted and killed puts, concurrent writers), and the
 * counters' reading of stats/ (a failing fdopendir, a tampered shard).
 */
#include "testutil.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* While fail_fdopendir is set, fdopendir fails as it does out of memory,
 * leaving the descriptor open (it takes it only on success). This
 * definition comes first for the library linked into this program. */
static atomic_bool fail_fdopendir;

DIR *fdopendir(int fd)
{
    if (atomic_load(&fail_fdopendir)) {
        errno = ENOMEM;
        return NULL;
    }
    DIR *(*real)(int);
    *(void **)&real = dlsym(RTLD_NEXT, "fdopendir");
    return real ? real(fd) : NULL;
}

/* How many descriptors this process has open. */
static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

typedef struct fixture {
    char *dir;
    acache_store *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp("disk");
    f->s = tu_open_disk(f->dir, "");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    acache_close(f->s);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void entry_file(const char *dir, char kind, const acache_id *id, char *out, size_t size)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    snprintf(out, size, "%s/v1/%c/%.2s/%s", dir, kind, hex, hex);
}

static void put_bytes(acache_store *s, uint32_t key, size_t len, uint32_t seed, acache_id *out)
{
    char *buf = malloc(len ? len : 1);
    tu_fill(buf, len, seed);
    acache_id action = tu_id(key);
    assert_int_equal(acache_put(s, &action, buf, len, out), ACACHE_OK);
    free(buf);
}

static void test_roundtrip(void **state)
{
    fixture *f = *state;
    char buf[5000];
    tu_fill(buf, sizeof buf, 7);
    acache_id action = tu_id(1), output, want;
    acache_id_of_bytes(buf, sizeof buf, &want);
    assert_int_equal(acache_put(f->s, &action, buf, sizeof buf, &output), ACACHE_OK);
    assert_memory_equal(&output, &want, sizeof want);

    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
    assert_memory_equal(&r.output_id, &want, sizeof want);
    assert_int_equal(r.size, sizeof buf);
    assert_null(r.data);
    assert_true(r.path[0] == '/');
    /* The object is named by its hex output id, no extension. */
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&want, hex);
    const char *base = strrchr(r.path, '/') + 1;
    assert_string_equal(base, hex);
    size_t len = 0;
    void *data = tu_read_file(r.path, &len);
    assert_int_equal(len, sizeof buf);
    assert_memory_equal(data, buf, sizeof buf);
    free(data);
    int64_t now = (int64_t)time(NULL) * 1000000000;
    assert_true(r.time_ns > now - 60 * 1000000000LL && r.time_ns < now + 60 * 1000000000LL);

    assert_int_equal(acache_get(f->s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_non_null(r.data);
    assert_memory_equal(r.data, buf, sizeof buf);
    acache_result_release(&r);
    assert_null(r.data);
    acache_result_release(&r);

    acache_stats st;
    acache_get_stats(f->s, &st);
    assert_int_equal(st.puts, 1);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.bytes_written, sizeof buf);
}

static void test_miss_and_delete(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(2);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(acache_delete(f->s, &action), ACACHE_MISS);
    put_bytes(f->s, 2, 10, 1, NULL);
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
    assert_int_equal(acache_delete(f->s, &action), ACACHE_OK);
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    acache_stats st;
    acache_get_stats(f->s, &st);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.errors, 0);
}

static void test_empty_object(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(3), output;
    assert_int_equal(acache_put(f->s, &action, "", 0, &output), ACACHE_OK);
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&output, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, 0);
    assert_non_null(r.data);
    acache_result_release(&r);
}

static void test_replace_same_action(void **state)
{
    fixture *f = *state;
    acache_id a, b;
    put_bytes(f->s, 4, 100, 1, &a);
    put_bytes(f->s, 4, 200, 2, &b);
    acache_id action = tu_id(4);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
    assert_memory_equal(&r.output_id, &b, sizeof b);
    assert_int_equal(r.size, 200);
}

static void test_layout_permissions(void **state)
{
    fixture *f = *state;
    put_bytes(f->s, 5, 10, 1, NULL);
    const char *subs[] = { "", "/v1", "/v1/a", "/v1/o", "/v1/tmp" };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char p[4200];
        struct stat sb;
        snprintf(p, sizeof p, "%s%s", f->dir, subs[i]);
        assert_int_equal(stat(p, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        if (i > 0)
            assert_int_equal(sb.st_mode & 0777, 0700);
    }
    /* Nested missing parents are created 0700 too. */
    char nested[4200];
    snprintf(nested, sizeof nested, "%s/x/y", f->dir);
    acache_store *s = tu_open_disk(nested, "");
    struct stat sb;
    snprintf(nested, sizeof nested, "%s/x", f->dir);
    assert_int_equal(stat(nested, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    acache_close(s);
    assert_int_equal(tu_count_files(f->dir, "put-"), 0);
    assert_int_equal(tu_count_files(f->dir, "rec-"), 0);
}

static void test_truncated_object(void **state)
{
    fixture *f = *state;
    acache_id out, action = tu_id(6);
    put_bytes(f->s, 6, 4096, 3, &out);
    char opath[4200], rpath[4200];
    entry_file(f->dir, 'o', &out, opath, sizeof opath);
    entry_file(f->dir, 'a', &action, rpath, sizeof rpath);
    assert_int_equal(truncate(opath, 100), 0);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    acache_stats st;
    acache_get_stats(f->s, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(access(opath, F_OK), -1);
    assert_int_equal(access(rpath, F_OK), -1);
    /* Stored again, it is served again. */
    put_bytes(f->s, 6, 4096, 3, NULL);
    assert_int_equal(acache_get(f->s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    acache_result_release(&r);
}

static void test_truncated_object_mapped(void **state)
{
    fixture *f = *state;
    acache_id out, action = tu_id(7);
    put_bytes(f->s, 7, 4096, 3, &out);
    char opath[4200];
    entry_file(f->dir, 'o', &out, opath, sizeof opath);
    assert_int_equal(truncate(opath, 0), 0);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, ACACHE_GET_DATA, &r), ACACHE_MISS);
    assert_null(r.data);
}

static void test_content_mismatch(void **state)
{
    fixture *f = *state;
    acache_store *vs = tu_open_disk(f->dir, "?verify-reads=on");
    acache_id out, action = tu_id(8);
    put_bytes(vs, 8, 1000, 4, &out);
    char opath[4200];
    entry_file(f->dir, 'o', &out, opath, sizeof opath);
    /* Same size, different bytes: only the hash can tell. */
    char junk[1000];
    tu_fill(junk, sizeof junk, 99);
    tu_write_file(opath, junk, sizeof junk);
    acache_result r;
    assert_int_equal(acache_get(vs, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(acache_get(vs, &action, ACACHE_GET_DATA, &r), ACACHE_MISS);
    acache_stats st;
    acache_get_stats(vs, &st);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(access(opath, F_OK), -1);
    /* A good object passes verification. */
    put_bytes(vs, 8, 1000, 4, NULL);
    assert_int_equal(acache_get(vs, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    acache_result_release(&r);
    acache_close(vs);
}

static void test_record_missing_object(void **state)
{
    fixture *f = *state;
    acache_id out, action = tu_id(9);
    put_bytes(f->s, 9, 50, 5, &out);
    char opath[4200], rpath[4200];
    entry_file(f->dir, 'o', &out, opath, sizeof opath);
    entry_file(f->dir, 'a', &action, rpath, sizeof rpath);
    assert_int_equal(unlink(opath), 0);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(access(rpath, F_OK), -1);
    acache_stats st;
    acache_get_stats(f->s, &st);
    assert_int_equal(st.corrupt, 1);
}

static void test_malformed_records(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(10);
    char rpath[4200];
    entry_file(f->dir, 'a', &action, rpath, sizeof rpath);
    char ahex[ACACHE_ID_HEX_SIZE], other[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&action, ahex);
    acache_id o = tu_id(11);
    acache_id_to_hex(&o, other);
    char line[600];
    const char *bad[] = { "", "garbage\n", "acache-action-v1 %s %s 10 5", /* no newline */
                          "acache-action-v1 %s %s -1 5\n", "acache-action-v1 %s %s 10 5 extra\n",
                          "acache-action-v1 %s %s 10\n" };
    put_bytes(f->s, 10, 10, 1, NULL); /* creates the shard directory */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(line, sizeof line, bad[i], ahex, other);
        tu_write_file(rpath, line, strlen(line));
        acache_result r;
        assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
        assert_int_equal(access(rpath, F_OK), -1);
    }
    /* A record copied under another action's name is not served. */
    snprintf(line, sizeof line, "acache-action-v1 %s %s 10 5\n", other, other);
    tu_write_file(rpath, line, strlen(line));
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    acache_stats st;
    acache_get_stats(f->s, &st);
    assert_int_equal(st.corrupt, 7);
    assert_int_equal(st.errors, 0);
}

static void test_stream_and_abort(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(12);
    acache_put_stream *ps;
    char chunk[1000];
    tu_fill(chunk, sizeof chunk, 1);
    assert_int_equal(acache_put_begin(f->s, &action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, chunk, sizeof chunk), ACACHE_OK);
    assert_int_equal(tu_count_files(f->dir, "put-"), 1);
    acache_put_abort(ps);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(tu_count_files(f->dir, "put-"), 0);

    /* Many writes, then a commit with the right id and size. */
    char *all = malloc(10 * sizeof chunk);
    assert_int_equal(acache_put_begin(f->s, &action, &ps), ACACHE_OK);
    for (int i = 0; i < 10; i++) {
        tu_fill(chunk, sizeof chunk, (uint32_t)i);
        memcpy(all + i * sizeof chunk, chunk, sizeof chunk);
        assert_int_equal(acache_put_write(ps, chunk, sizeof chunk), ACACHE_OK);
    }
    acache_id want;
    acache_id_of_bytes(all, 10 * sizeof chunk, &want);
    assert_int_equal(acache_put_commit(ps, &want, 10 * sizeof chunk, &r), ACACHE_OK);
    assert_memory_equal(&r.output_id, &want, sizeof want);
    assert_true(r.path[0] == '/');
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
    assert_int_equal(r.size, 10 * sizeof chunk);
    free(all);
}

static void test_commit_mismatch(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(13), wrong = tu_id(999);
    acache_put_stream *ps;
    acache_result r;
    /* Wrong output id. */
    assert_int_equal(acache_put_begin(f->s, &action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, "hello", 5), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, &wrong, 5, NULL), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "expected output id"));
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    /* Right id, wrong size. */
    acache_id right;
    acache_id_of_bytes("hello", 5, &right);
    assert_int_equal(acache_put_begin(f->s, &action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, "hello", 5), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, &right, 6, NULL), ACACHE_EINVAL);
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(tu_count_files(f->dir, "put-"), 0);
    /* The wrong object was never written either. */
    char opath[4200];
    entry_file(f->dir, 'o', &right, opath, sizeof opath);
    assert_int_equal(access(opath, F_OK), -1);
}

static void test_put_fd(void **state)
{
    fixture *f = *state;
    char path[4200];
    snprintf(path, sizeof path, "%s/input", f->dir);
    size_t len = 3 * 1024 * 1024 + 17;
    char *buf = malloc(len);
    tu_fill(buf, len, 42);
    tu_write_file(path, buf, len);
    int fd = open(path, O_RDONLY);
    acache_id action = tu_id(14), out, want;
    assert_int_equal(acache_put_fd(f->s, &action, fd, &out), ACACHE_OK);
    close(fd);
    acache_id_of_bytes(buf, len, &want);
    assert_memory_equal(&out, &want, sizeof want);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, len);
    assert_memory_equal(r.data, buf, len);
    acache_result_release(&r);
    /* A descriptor that cannot be read is an error, and stores nothing. */
    acache_id other = tu_id(15);
    assert_true(acache_put_fd(f->s, &other, -1, NULL) < 0);
    assert_int_equal(acache_get(f->s, &other, 0, &r), ACACHE_MISS);
    free(buf);
}

static void test_refresh_time(void **state)
{
    fixture *f = *state;
    acache_id out, action = tu_id(16);
    put_bytes(f->s, 16, 10, 1, &out);
    char rpath[4200], opath[4200];
    entry_file(f->dir, 'a', &action, rpath, sizeof rpath);
    entry_file(f->dir, 'o', &out, opath, sizeof opath);
    time_t now = time(NULL);
    /* Used 5 minutes ago: left alone (uses are recorded every 10). */
    struct timespec ts[2] = { { now - 300, 0 }, { now - 300, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, rpath, ts, 0), 0);
    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
    struct stat sb;
    assert_int_equal(stat(rpath, &sb), 0);
    assert_int_equal(sb.st_mtime, now - 300);
    /* Used two hours ago: refreshed, record and object. */
    struct timespec old[2] = { { now - 7200, 0 }, { now - 7200, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, rpath, old, 0), 0);
    assert_int_equal(utimensat(AT_FDCWD, opath, old, 0), 0);
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
    assert_int_equal(stat(rpath, &sb), 0);
    assert_true(sb.st_mtime >= now - 5);
    assert_int_equal(stat(opath, &sb), 0);
    assert_true(sb.st_mtime >= now - 5);
}

static void test_path_is_file(void **state)
{
    fixture *f = *state;
    char path[4200], spec[4300];
    snprintf(path, sizeof path, "%s/afile", f->dir);
    tu_write_file(path, "x", 1);
    snprintf(spec, sizeof spec, "disk:%s", path);
    acache_store *s = NULL;
    assert_int_equal(acache_open(spec, &s), ACACHE_EINVAL);
    assert_null(s);
    assert_non_null(strstr(acache_last_error(), path));
    assert_non_null(strstr(acache_last_error(), "not a directory"));
}

/* Opening a directory the process cannot write must fail with its name. As
 * root, permissions do not bind, so the check runs in a child that drops to
 * the nobody user. */
static void test_unwritable_dir(void **state)
{
    fixture *f = *state;
    char path[4200];
    snprintf(path, sizeof path, "%s/ro", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(chmod(f->dir, 0755), 0);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        if (geteuid() != 0)
            chmod(path, 0555);
        char spec[4300];
        snprintf(spec, sizeof spec, "disk:%s", path);
        acache_store *s = NULL;
        acache_status st = acache_open(spec, &s);
        const char *msg = acache_last_error();
        if (write(pipefd[1], msg, strlen(msg)) < 0)
            _exit(4);
        _exit(st == ACACHE_OK ? 1 : 0);
    }
    close(pipefd[1]);
    char msg[2000] = "";
    ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(pipefd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(msg, path));
    chmod(path, 0755);
}

static void test_bad_options(void **state)
{
    fixture *f = *state;
    const char *opts[] = { "?durability=sometimes", "?verify-reads=maybe", "?max-size=12Q",
                           "?max-age=forever", "?colour=blue", "?novalue" };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        char spec[4300];
        snprintf(spec, sizeof spec, "disk:%s%s", f->dir, opts[i]);
        acache_store *s = NULL;
        assert_int_equal(acache_open(spec, &s), ACACHE_EINVAL);
        assert_null(s);
        assert_true(strlen(acache_last_error()) > 0);
    }
    acache_store *s = tu_open_disk(f->dir, "?durability=fsync&max-size=1G&max-age=7d");
    put_bytes(s, 17, 100, 1, NULL);
    acache_close(s);
}

static void test_default_dir(void **state)
{
    fixture *f = *state;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/fromenv", f->dir);
    setenv("ACACHE_DIR", dir, 1);
    acache_store *s = NULL;
    assert_int_equal(acache_open("disk:", &s), ACACHE_OK);
    put_bytes(s, 18, 10, 1, NULL);
    acache_close(s);
    unsetenv("ACACHE_DIR");
    /* One object; one record and its reference (a link to the object). */
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/v1/o", dir);
    assert_int_equal(tu_count_files(sub, ""), 1);
    snprintf(sub, sizeof sub, "%s/v1/a", dir);
    assert_int_equal(tu_count_files(sub, ""), 2);
}

/* A child process starts a put and is killed mid-stream: no entry appears,
 * and its temp file is removed once it is old enough to be surely dead. */
static void test_killed_mid_put(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(19);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        acache_store *s = tu_open_disk(f->dir, "");
        acache_put_stream *ps;
        char chunk[4096];
        tu_fill(chunk, sizeof chunk, 1);
        if (acache_put_begin(s, &action, &ps) != ACACHE_OK)
            _exit(1);
        for (int i = 0; i < 100; i++)
            acache_put_write(ps, chunk, sizeof chunk);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));

    acache_result r;
    assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(tu_count_files(f->dir, "put-"), 1);
    /* A fresh temp file may belong to a live put elsewhere: kept. */
    acache_close(tu_open_disk(f->dir, ""));
    assert_int_equal(tu_count_files(f->dir, "put-"), 1);
    /* Once old, it is removed at the next open. */
    char tmpdir[4200];
    snprintf(tmpdir, sizeof tmpdir, "%s/v1/tmp", f->dir);
    DIR *dp = opendir(tmpdir);
    struct dirent *de;
    time_t old = time(NULL) - 7200;
    struct timespec ts[2] = { { old, 0 }, { old, 0 } };
    while ((de = readdir(dp)))
        if (de->d_name[0] != '.')
            utimensat(dirfd(dp), de->d_name, ts, 0);
    closedir(dp);
    acache_close(tu_open_disk(f->dir, ""));
    assert_int_equal(tu_count_files(f->dir, "put-"), 0);
}

typedef struct thread_arg {
    acache_store *s;
    int id;
    int failures;
} thread_arg;

enum { SAME_KEY_THREADS = 8, SAME_KEY_ROUNDS = 200 };

static void *same_key_worker(void *p)
{
    thread_arg *a = p;
    acache_id action = tu_id(20);
    char buf[8192];
    for (int i = 0; i < SAME_KEY_ROUNDS; i++) {
        /* Each thread writes its own content: the key ends up with one of
         * them, whole. */
        uint32_t seed = (uint32_t)(a->id * 1000 + i % 3);
        tu_fill(buf, sizeof buf, seed);
        if (acache_put(a->s, &action, buf, sizeof buf, NULL) != ACACHE_OK)
            a->failures++;
        acache_result r;
        acache_status st = acache_get(a->s, &action, ACACHE_GET_DATA, &r);
        if (st != ACACHE_OK) {
            a->failures++;
            continue;
        }
        acache_id check;
        acache_id_of_bytes(r.data, r.size, &check);
        if (r.size != sizeof buf || memcmp(&check, &r.output_id, sizeof check) != 0)
            a->failures++;
        acache_result_release(&r);
    }
    return NULL;
}

static void test_threads_same_key(void **state)
{
    fixture *f = *state;
    pthread_t th[SAME_KEY_THREADS];
    thread_arg args[SAME_KEY_THREADS];
    for (int i = 0; i < SAME_KEY_THREADS; i++) {
        args[i] = (thread_arg){ f->s, i, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, same_key_worker, &args[i]), 0);
    }
    for (int i = 0; i < SAME_KEY_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    acache_stats st;
    acache_get_stats(f->s, &st);
    assert_int_equal(st.puts, SAME_KEY_THREADS * SAME_KEY_ROUNDS);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(tu_count_files(f->dir, "put-"), 0);
    assert_int_equal(tu_count_files(f->dir, "rec-"), 0);
}

/* Two processes write the same 200 keys at once, each with its own bytes
 * for half of them, while reading back: every read is whole and matches its
 * id, and at the end every key holds one of the two values. */
static void test_two_processes(void **state)
{
    fixture *f = *state;
    enum { KEYS = 200 };
    pid_t pids[2];
    for (int p = 0; p < 2; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            acache_store *s = tu_open_disk(f->dir, "");
            int bad = 0;
            char buf[3000];
            for (int round = 0; round < 3; round++) {
                for (uint32_t k = 0; k < KEYS; k++) {
                    uint32_t seed = k % 2 ? k : k * 10 + (uint32_t)p;
                    tu_fill(buf, sizeof buf, seed);
                    acache_id action = tu_id(1000 + k);
                    if (acache_put(s, &action, buf, sizeof buf, NULL) != ACACHE_OK)
                        bad++;
                    acache_result r;
                    if (acache_get(s, &action, ACACHE_GET_DATA, &r) != ACACHE_OK) {
                        bad++;
                        continue;
                    }
                    acache_id check;
                    acache_id_of_bytes(r.data, r.size, &check);
                    if (memcmp(&check, &r.output_id, sizeof check) != 0)
                        bad++;
                    acache_result_release(&r);
                }
            }
            acache_close(s);
            _exit(bad ? 1 : 0);
        }
    }
    for (int p = 0; p < 2; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    char buf[3000];
    for (uint32_t k = 0; k < KEYS; k++) {
        acache_id action = tu_id(1000 + k), want[2];
        for (int p = 0; p < 2; p++) {
            tu_fill(buf, sizeof buf, k % 2 ? k : k * 10 + (uint32_t)p);
            acache_id_of_bytes(buf, sizeof buf, &want[p]);
        }
        acache_result r;
        assert_int_equal(acache_get(f->s, &action, 0, &r), ACACHE_OK);
        assert_true(memcmp(&r.output_id, &want[0], sizeof want[0]) == 0 ||
                    memcmp(&r.output_id, &want[1], sizeof want[1]) == 0);
    }
    assert_int_equal(tu_count_files(f->dir, "put-"), 0);
}

/* The counters sum the stats directory; when fdopendir fails there, the
 * descriptor it was given is closed, not leaked, and the stats still come. */
static void test_stats_fdopendir_fails(void **state)
{
    fixture *f = *state;
    put_bytes(f->s, 1, 100, 1, NULL);
    acache_disk_counters dc;
    assert_int_equal(acache_disk_stats(f->s, &dc), ACACHE_OK); /* stats/ exists now */
    int before = open_fds();
    atomic_store(&fail_fdopendir, true);
    for (int i = 0; i < 5; i++)
        assert_int_equal(acache_disk_stats(f->s, &dc), ACACHE_OK);
    atomic_store(&fail_fdopendir, false);
    assert_int_equal(open_fds(), before);
    assert_int_equal(dc.puts, 1);
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A shard file of the stats directory, tampered with (its checksum made
 * right) to name "../victim" as the file it folded last: the next fold
 * into it must not remove v1/victim, nor anything but a process file. */
static void test_stats_folded_name_checked(void **state)
{
    fixture *f = *state;
    char path[4096], victim[4096], text[256];
    put_bytes(f->s, 1, 100, 1, NULL);
    acache_close(f->s); /* folds its counts: stats/ and a shard exist */
    f->s = NULL;
    snprintf(victim, sizeof victim, "%s/v1/victim", f->dir);
    tu_write_file(victim, "keep", 4);
    for (int shard = 0; shard < 8; shard++) {
        int n = snprintf(text, sizeof text, "acache-counters-v1\nputs 0\nfolded ../victim\n");
        snprintf(text + n, sizeof text - (size_t)n, "end %016llx\n",
                 (unsigned long long)fnv1a(text, (size_t)n));
        snprintf(path, sizeof path, "%s/v1/stats/shard-%d", f->dir, shard);
        tu_write_file(path, text, strlen(text));
    }
    /* A process that puts, reads the stats and closes: its counts are
     * folded into a shard, which first removes what that shard "folded". */
    f->s = tu_open_disk(f->dir, "");
    put_bytes(f->s, 2, 100, 2, NULL);
    acache_disk_counters dc;
    assert_int_equal(acache_disk_stats(f->s, &dc), ACACHE_OK);
    acache_close(f->s);
    f->s = tu_open_disk(f->dir, "");
    assert_int_equal(acache_disk_stats(f->s, &dc), ACACHE_OK);
    assert_int_equal(access(victim, F_OK), 0);
    assert_int_equal(dc.puts, 1); /* the tampered shards count 0; then one put */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_same_action, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_object_mapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_missing_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_is_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_mid_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_same_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_fdopendir_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_folded_name_checked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
