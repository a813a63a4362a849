/*
 * testutil.c - helpers shared by the cmocka tests. Tests only.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <time.h>
#include <unistd.h>

char *tu_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *path = NULL;
    assert_true(asprintf(&path, "%s/acache-test-%s-XXXXXX", base, tag) > 0);
    assert_non_null(mkdtemp(path));
    return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

void tu_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_fill(void *buf, size_t len, uint32_t seed)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

acache_id tu_id(uint32_t n)
{
    acache_id id;
    char text[32];
    snprintf(text, sizeof text, "%u", n);
    acache_part part = { text, strlen(text) };
    assert_int_equal(acache_key_derive(&id, "test", &part, 1), ACACHE_OK);
    return id;
}

acache_store *tu_open_disk(const char *dir, const char *opts)
{
    char spec[4200];
    snprintf(spec, sizeof spec, "disk:%s%s", dir, opts ? opts : "");
    acache_store *s = NULL;
    acache_status st = acache_open(spec, &s);
    if (st != ACACHE_OK)
        fail_msg("acache_open(%s): %s: %s", spec, acache_status_str(st), acache_last_error());
    return s;
}

void *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

void tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static const char *count_prefix;
static size_t count_n;

static int count_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    if (flag == FTW_F && strncmp(p + ftw->base, count_prefix, strlen(count_prefix)) == 0)
        count_n++;
    return 0;
}

tu_disk *tu_disk_new(const char *tag, const char *opts)
{
    tu_disk *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_mkdtemp(tag);
    f->s = tu_open_disk(f->dir, opts);
    return f;
}

void tu_disk_free(tu_disk *f)
{
    acache_close(f->s);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
}

void tu_entry_path(const char *dir, char kind, const acache_id *id, const char *suffix,
                   char *out, size_t size)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    snprintf(out, size, "%s/v1/%c/%.2s/%s%s", dir, kind, hex, hex, suffix);
}

void tu_age(const char *path, long age)
{
    time_t t = time(NULL) - age;
    struct timespec ts[2] = { { t, 0 }, { t, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

size_t tu_count_files(const char *dir, const char *prefix)
{
    count_prefix = prefix;
    count_n = 0;
    nftw(dir, count_one, 16, FTW_PHYS);
    return count_n;
}

double tu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tu_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
