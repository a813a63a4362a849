/*
 * rmtree.h - removes a benchmark's scratch tree, depth first, without
 * following a symbolic link out of it (nftw with FTW_PHYS). Header-only,
 * for the programs under bench/, which include it after <ftw.h> is
 * usable (_GNU_SOURCE or the default feature set of glibc).
 *
 * It never stops at an entry it cannot remove: what is left is left, and
 * the benchmark's numbers never depend on it.
 */
#ifndef ACACHE_BENCH_RMTREE_H
#define ACACHE_BENCH_RMTREE_H

#include <ftw.h>
#include <stdio.h>

static inline int bench_rm_one(const char *path, const struct stat *sb, int flag,
                               struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void bench_rmtree(const char *dir)
{
    nftw(dir, bench_rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

#endif
