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

#endif
