/*
 * prog.h - a GOCACHEPROG helper program as a backend, as
 * cmd/go's ProgCache. Its one entry point is the constructor the scheme table
 * (src/schemes.c) calls; everything else is behind the ops table.
 */
#ifndef ACACHE_PROG_H
#define ACACHE_PROG_H

#include "core/backend.h"

acache_status prog_open(spec *s, void **self, const backend_ops **ops);

#endif
