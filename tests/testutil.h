/*
 * testutil.h - helpers shared by the cmocka tests: scratch directories,
 * deterministic bytes, ids. Tests only; never linked into the library.
 */
#ifndef ACACHE_TESTUTIL_H
#define ACACHE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acache.h"

/* Creates a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *tu_mkdtemp(const char *tag);
/* Removes a directory tree (like rm -rf); ignores errors. */
void tu_rmtree(const char *path);
/* Fills buf with bytes derived from seed (same seed, same bytes). */
void tu_fill(void *buf, size_t len, uint32_t seed);
/* An action id derived from n. */
acache_id tu_id(uint32_t n);
/* Opens "disk:<dir>" plus extra options ("" or "?a=b"), asserting success. */
acache_store *tu_open_disk(const char *dir, const char *opts);
/* Reads a whole file into a malloc'd buffer; returns NULL if missing. */
void *tu_read_file(const char *path, size_t *len);
/* Writes a whole file, asserting success. */
void tu_write_file(const char *path, const void *data, size_t len);
/* Number of regular files under dir whose name starts with prefix (recursive). */
size_t tu_count_files(const char *dir, const char *prefix);

/* A scratch directory with a disk store open on it (opts as for
 * tu_open_disk), for cmocka setup and teardown. */
typedef struct tu_disk {
    char *dir;
    acache_store *s;
} tu_disk;
tu_disk *tu_disk_new(const char *tag, const char *opts);
void tu_disk_free(tu_disk *f);
/* Defines setup() and teardown() for a cmocka group whose state is a
 * tu_disk made with tag and opts. */
#define TU_DISK_FIXTURE(tag, opts)                                                                 \
    static int setup(void **state)                                                                 \
    {                                                                                              \
        *state = tu_disk_new(tag, opts);                                                           \
        return 0;                                                                                  \
    }                                                                                              \
    static int teardown(void **state)                                                              \
    {                                                                                              \
        tu_disk_free(*state);                                                                      \
        return 0;                                                                                  \
    }
/* DIR/v1/<kind>/XX/<hex><suffix>: a record ('a', suffix "" or ".out") or
 * an object ('o') of the disk store in dir. */
void tu_entry_path(const char *dir, char kind, const acache_id *id, const char *suffix,
                   char *out, size_t size);
/* Sets a file's access and modification times to `age` seconds ago. */
void tu_age(const char *path, long age);
/* Seconds on the monotonic clock, for bounding how long a call takes. */
double tu_now_s(void);
/* Sleeps ms milliseconds, through signals. */
void tu_sleep_ms(int ms);

#endif
