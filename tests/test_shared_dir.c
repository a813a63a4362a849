/*
 * test_shared_dir.c - a cache directory shared by a group (the umask
 * option): new directories and files get 0777/0666 less the umask,
 * whatever the process's own umask; directories are setgid and keep the
 * group of the top directory; a put's temp file stays private (0600)
 * until its bytes are whole; without the option everything is private.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GROUP 4321 /* any group: the test runs as root, or skips */

static int teardown(void **state)
{
    char *dir = *state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static void assert_mode(const char *path, mode_t want, gid_t gid)
{
    struct stat sb;
    assert_int_equal(lstat(path, &sb), 0);
    if ((sb.st_mode & 07777) != want || sb.st_gid != gid)
        print_message("%s: mode %04o group %u, want %04o group %u\n", path,
                      (unsigned)(sb.st_mode & 07777), (unsigned)sb.st_gid, (unsigned)want,
                      (unsigned)gid);
    assert_int_equal(sb.st_mode & 07777, want);
    assert_int_equal(sb.st_gid, gid);
}

/* Every file under dir/sub has mode want and group gid. */
static void assert_tree(const char *dir, const char *sub, mode_t dmode, mode_t fmode, gid_t gid)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *dp = opendir(path);
    assert_non_null(dp);
    assert_mode(path, dmode, gid);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char child[1024];
        snprintf(child, sizeof child, "%.700s/%.255s", sub, de->d_name);
        snprintf(path, sizeof path, "%.3000s/%s", dir, child);
        struct stat sb;
        assert_int_equal(lstat(path, &sb), 0);
        if (S_ISDIR(sb.st_mode))
            assert_tree(dir, child, dmode, fmode, gid);
        else
            assert_mode(path, fmode, gid);
    }
    closedir(dp);
}

/* The temp file of the put in progress under dir/v1/tmp has mode want. */
static void assert_temp_mode(const char *dir, mode_t want)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/v1/tmp", dir);
    DIR *dp = opendir(path);
    assert_non_null(dp);
    struct dirent *de;
    int seen = 0;
    while ((de = readdir(dp)) != NULL) {
        if (strncmp(de->d_name, "put-", 4) != 0)
            continue;
        struct stat sb;
        assert_int_equal(fstatat(dirfd(dp), de->d_name, &sb, 0), 0);
        assert_int_equal(sb.st_mode & 07777, want);
        seen++;
    }
    closedir(dp);
    assert_int_equal(seen, 1);
}

/* Opens a store with opts on a fresh directory of group GROUP, mode 0775
 * (no setgid: the store keeps its group anyway), puts, trims, and checks
 * every mode. */
static void shared(void **state, const char *opts, mode_t dmode, mode_t fmode, gid_t gid)
{
    char *dir = tu_mkdtemp("shared");
    *state = dir;
    if (chown(dir, (uid_t)-1, GROUP) != 0) {
        print_message("skipped: cannot give a directory another group (not root)\n");
        skip();
    }
    assert_int_equal(chmod(dir, 0775), 0);
    mode_t old = umask(077); /* the process's own umask plays no part */
    acache_store *s = tu_open_disk(dir, opts);
    char buf[3000];
    tu_fill(buf, sizeof buf, 1);
    acache_id a = tu_id(1), b = tu_id(2);
    acache_put_stream *ps;
    assert_int_equal(acache_put_begin(s, &a, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, buf, sizeof buf), ACACHE_OK);
    assert_temp_mode(dir, 0600);
    assert_int_equal(acache_put_commit(ps, NULL, ACACHE_SIZE_ANY, NULL), ACACHE_OK);
    assert_int_equal(acache_put(s, &b, "other", 5, NULL), ACACHE_OK);
    acache_trim_options o = ACACHE_TRIM_OPTIONS_INIT;
    assert_int_equal(acache_trim(s, &o, NULL), ACACHE_OK);
    acache_close(s);
    umask(old);
    assert_tree(dir, "v1", dmode, fmode, gid);
}

static void test_umask_002(void **state) { shared(state, "?trim-interval=off&umask=002", 02775, 0664, GROUP); }

static void test_umask_027(void **state) { shared(state, "?trim-interval=off&umask=027", 02750, 0640, GROUP); }

/* No umask: private, as before (the group is the process's). */
static void test_private_by_default(void **state)
{
    shared(state, "?trim-interval=off", 0700, 0600, getegid());
}

static void test_bad_umask(void **state)
{
    char *dir = tu_mkdtemp("shared");
    *state = dir;
    const char *bad[] = { "?umask=8", "?umask=1777", "?umask=", "?umask=0o22", "?umask=-2" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char spec[4300];
        acache_store *s = NULL;
        snprintf(spec, sizeof spec, "disk:%s%s", dir, bad[i]);
        assert_int_equal(acache_open(spec, &s), ACACHE_EINVAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_umask_002, teardown),
        cmocka_unit_test_teardown(test_umask_027, teardown),
        cmocka_unit_test_teardown(test_private_by_default, teardown),
        cmocka_unit_test_teardown(test_bad_umask, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
