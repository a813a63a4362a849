/*
 * mem.h - the memory store: a byte-bounded LRU shared by the threads of one
 * process. Its one entry point is the constructor the scheme table
 * (src/schemes.c) calls; everything else is behind the ops table.
 */
#ifndef ACACHE_MEM_H
#define ACACHE_MEM_H

#include "core/backend.h"

acache_status mem_open(spec *s, void **self, const backend_ops **ops);

#endif
