/*
 * cmd_clear.c - `acache clear`: removes every entry of a disk store, in use
 * or not. Counters of hits and misses are kept; the size becomes 0.
 */
#include "acache.h"
#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: acache clear [--dir DIR]\n"
               "Removes every entry of the cache, including those a running build may be\n"
               "reading (to keep those, use acache trim --max-size 0 instead).\n"
               "  --dir DIR   the cache (default $ACACHE_DIR, $XDG_CACHE_HOME/acache,\n"
               "              ~/.cache/acache)\n");
}

int cmd_clear(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    acache_store *s = cli_open_existing("clear", argc, argv, &o);
    if (!s)
        return 2;
    acache_trim_report r;
    int rc = 2;
    if (acache_clear(s, &r) != ACACHE_OK) {
        cli_err("clear: %s", acache_last_error());
    } else {
        char freed[32];
        cli_format_size(r.bytes_removed, freed, sizeof freed);
        printf("removed %" PRIu64 " entries and %" PRIu64 " objects: %s\n", r.entries_removed,
               r.objects_removed, freed);
        rc = 0;
    }
    acache_close(s);
    return rc;
}
