/*
 * build_once.h - what build_once.c shows the rest of the library (and its
 * tests) beyond the public acache_get_or_build().
 */
#ifndef ACACHE_BUILD_ONCE_H
#define ACACHE_BUILD_ONCE_H

#include "acache.h"

/* How many threads of this process wait for the build of action on store
 * that one thread is running now (0 when none runs). For tests, which wait
 * for every racer to be waiting instead of sleeping and hoping. */
unsigned build_once_waiters(const acache_store *store, const acache_id *action);

#endif
