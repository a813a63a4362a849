/*
 * gcp_spill.h - where `acache gocacheprog` puts what the cache's file
 * system has no room for (see gcp_spill.c).
 */
#ifndef ACACHE_GCP_SPILL_H
#define ACACHE_GCP_SPILL_H

#include "acache.h"

#include <stdint.h>

typedef struct gcp_spill {
    char *cache_dir;     /* the local store's directory, or NULL */
    char *dir;           /* the spill directory, once made */
    acache_store *store; /* a disk store in it, once opened */
    int failed;          /* could not make one: do not try again */
    acache_store *home;  /* the store whose full disk the library spills */
    uint64_t spilled_before; /* its spilled count when the run began */
} gcp_spill;

/* Remembers the local store's directory (the home tier of store). */
void gcp_spill_init(gcp_spill *sp, acache_store *store);

/* The store a put of body_size bytes goes to: store, or the spill store
 * when the cache's file system has no room for it. */
acache_store *gcp_spill_route(gcp_spill *sp, acache_store *store, uint64_t body_size);

/* How many puts the store itself sent elsewhere during this run (a disk
 * that filled up during a put, or ran out of inodes or quota: spill=on in
 * its spec, src/disk/overflow.c); their directory goes when the store is
 * closed. */
uint64_t gcp_spill_overflowed(gcp_spill *sp);

/* Closes the spill store and removes its directory. */
void gcp_spill_close(gcp_spill *sp);

#endif
