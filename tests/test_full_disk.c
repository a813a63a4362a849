/*
 * test_full_disk.c - a full disk never fails a put: on a tmpfs mounted
 * with few inodes or few blocks, filled before or during a put, the put
 * answers with a path holding its bytes (in the store's overflow under
 * $TMPDIR, removed at close), counted as spilled; with no overflow either,
 * the error names the real cause (no space), not a missing directory.
 * Needs root (mount); skipped, saying why, where mounting is not allowed.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
    char *dir;    /* a scratch directory, the mount point */
    char cache[4200], fill[4200];
    int mounted;
} fixture;

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->mounted)
        umount2(f->dir, MNT_DETACH);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Mounts a tmpfs with opts on a fresh directory; skips the test when the
 * kernel says no (not root, no CAP_SYS_ADMIN, a container). */
static fixture *mount_tmpfs(void **state, const char *opts)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    f->dir = tu_mkdtemp("fulldisk");
    if (mount("tmpfs", f->dir, "tmpfs", 0, opts) != 0) {
        print_message("skipped: cannot mount a tmpfs (%s): the full-disk tests need root\n",
                      strerror(errno));
        skip();
    }
    f->mounted = 1;
    snprintf(f->cache, sizeof f->cache, "%s/cache", f->dir);
    snprintf(f->fill, sizeof f->fill, "%s/fill", f->dir);
    assert_int_equal(mkdir(f->fill, 0700), 0);
    return f;
}

/* Creates empty files until the file system has no inode left. */
static void use_all_inodes(fixture *f)
{
    char p[4300];
    for (int i = 0;; i++) {
        snprintf(p, sizeof p, "%s/i%d", f->fill, i);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) {
            assert_int_equal(errno, ENOSPC);
            return;
        }
        close(fd);
    }
}

/* Writes a file until the file system has no block left, then frees
 * `leave` bytes of it. */
static void use_all_blocks(fixture *f, off_t leave)
{
    char p[4300], buf[65536];
    memset(buf, 'f', sizeof buf);
    snprintf(p, sizeof p, "%s/blocks", f->fill);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    off_t total = 0;
    for (;;) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n <= 0) {
            assert_int_equal(errno, ENOSPC);
            break;
        }
        total += n;
    }
    assert_int_equal(ftruncate(fd, total > leave ? total - leave : 0), 0);
    close(fd);
}

static void assert_outside_with(const fixture *f, const acache_result *r, const void *want,
                                size_t len)
{
    assert_int_not_equal(strncmp(r->path, f->dir, strlen(f->dir)), 0); /* not on the full disk */
    size_t got_len = 0;
    void *got = tu_read_file(r->path, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, want, len);
    free(got);
}

static uint64_t spilled(acache_store *s)
{
    acache_disk_counters c;
    assert_int_equal(acache_disk_stats(s, &c), ACACHE_OK);
    return c.spilled;
}

/* No inode left before the put: its temp file goes to the overflow. */
static void test_no_inodes_before_put(void **state)
{
    fixture *f = mount_tmpfs(state, "size=16m,nr_inodes=64");
    acache_store *s = tu_open_disk(f->cache, "?trim-interval=off&spill=on");
    use_all_inodes(f);
    char buf[10000];
    tu_fill(buf, sizeof buf, 1);
    acache_id a = tu_id(1);
    acache_put_stream *ps;
    acache_result r;
    assert_int_equal(acache_put_begin(s, &a, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, sizeof buf), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &r), ACACHE_OK);
    assert_outside_with(f, &r, buf, sizeof buf);
    assert_int_equal(spilled(s), 1);
    char overflow[ACACHE_PATH_MAX];
    snprintf(overflow, sizeof overflow, "%s", r.path);
    acache_close(s);
    assert_int_not_equal(access(overflow, F_OK), 0); /* removed at close */
}

/* Inodes run out after the put began: its commit (shard directories,
 * links, the record) finds no room, and the bytes go to the overflow. */
static void test_no_inodes_at_commit(void **state)
{
    fixture *f = mount_tmpfs(state, "size=16m,nr_inodes=64");
    acache_store *s = tu_open_disk(f->cache, "?trim-interval=off&spill=on");
    char buf[10000];
    tu_fill(buf, sizeof buf, 2);
    acache_id a = tu_id(2);
    acache_put_stream *ps;
    acache_result r;
    assert_int_equal(acache_put_begin(s, &a, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, sizeof buf), ACACHE_OK);
    use_all_inodes(f);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &r), ACACHE_OK);
    assert_outside_with(f, &r, buf, sizeof buf);
    assert_int_equal(spilled(s), 1);
    acache_close(s);
}

/* Blocks run out in the middle of the put's writes. */
static void test_no_blocks_during_put(void **state)
{
    fixture *f = mount_tmpfs(state, "size=4m,nr_inodes=1000");
    acache_store *s = tu_open_disk(f->cache, "?trim-interval=off&spill=on");
    size_t len = 1 << 20;
    char *buf = malloc(len);
    tu_fill(buf, len, 3);
    acache_id a = tu_id(3);
    acache_put_stream *ps;
    acache_result r;
    assert_int_equal(acache_put_begin(s, &a, &ps), ACACHE_OK);
    use_all_blocks(f, 64 * 1024);
    for (size_t off = 0; off < len; off += 32 * 1024)
        assert_int_equal(acache_put_write(ps, buf + off, 32 * 1024), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &r), ACACHE_OK);
    assert_outside_with(f, &r, buf, len);
    assert_int_equal(spilled(s), 1);
    acache_close(s);
    free(buf);
}

/* With no room anywhere (the overflow's $TMPDIR does not exist), the put
 * fails, and says the disk is full: a shard directory that could not be
 * made is not reported as a missing file. */
static void test_real_cause_reported(void **state)
{
    fixture *f = mount_tmpfs(state, "size=16m,nr_inodes=64");
    acache_store *s = tu_open_disk(f->cache, "?trim-interval=off&spill=on");
    char buf[100];
    tu_fill(buf, sizeof buf, 4);
    acache_id a = tu_id(4);
    acache_put_stream *ps;
    acache_result r;
    assert_int_equal(acache_put_begin(s, &a, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, sizeof buf), ACACHE_OK);
    use_all_inodes(f);
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TMPDIR", "/nonexistent/acache-test", 1);
    acache_status st = acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, &r);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
    assert_int_equal(st, ACACHE_ENOSPC);
    print_message("%s\n", acache_last_error());
    assert_non_null(strstr(acache_last_error(), strerror(ENOSPC)));
    acache_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_inodes_before_put, teardown),
        cmocka_unit_test_teardown(test_no_inodes_at_commit, teardown),
        cmocka_unit_test_teardown(test_no_blocks_during_put, teardown),
        cmocka_unit_test_teardown(test_real_cause_reported, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
