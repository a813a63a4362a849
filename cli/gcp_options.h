/*
 * gcp_options.h - `acache gocacheprog`'s command line and environment:
 * the disk store's options, the remotes (--remote, else $ACACHE_REMOTE),
 * the number of get workers, -v.
 */
#ifndef ACACHE_GCP_OPTIONS_H
#define ACACHE_GCP_OPTIONS_H

#include "commands.h"

#include <stdbool.h>
#include <stddef.h>

/* The command line of a session. */
typedef struct gcp_opts {
    cli_disk_opts disk; /* --dir, --max-size, --max-age, --grace, --verify-reads */
    bool verbose;
    long workers;       /* -1: the default */
    char **remotes;     /* --remote, else the words of ACACHE_REMOTE */
    size_t nremotes;
    char *env_remotes;  /* the copy of ACACHE_REMOTE they point into */
} gcp_opts;

/* Reads the flags into o (o->remotes has room for argc entries). Returns
 * -1 to go on, else the exit status (--help: 0; a bad flag: 2, with a
 * message and the usage). */
int gcp_parse_args(int argc, char **argv, gcp_opts *o);

/* Flags override the environment: ACACHE_REMOTE only without --remote.
 * False when out of memory. */
bool gcp_remotes_from_env(gcp_opts *o);

#endif
