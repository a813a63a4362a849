/*
 * cmd_trim.c - `acache trim`: trims a disk store now, in the foreground:
 * least recently used entries down to 90% of max-size, entries unused for
 * max-age, leftovers of dead processes; by default over the whole store
 * (and recounting its size), with --quick only what an automatic trim
 * looks at. Progress on a terminal; the outcome on stdout.
 */
#include "acache.h"
#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: acache trim [--dir DIR] [--max-size SIZE] [--max-age DURATION]\n"
            "                   [--grace DURATION] [--dry-run] [--quick]\n"
            "Removes least recently used entries until the cache is under 90%% of\n"
            "max-size (when it is over max-size), entries unused for max-age, and what\n"
            "processes that died left behind. Entries used within the grace period stay\n"
            "(paths a running build holds remain valid). Waits for a trim running in\n"
            "another process.\n"
            "  --dir DIR          the cache (default $ACACHE_DIR, $XDG_CACHE_HOME/acache,\n"
            "                     ~/.cache/acache)\n"
            "  --max-size SIZE    e.g. 10G (default $ACACHE_MAX_SIZE, else 10G); K/M/G/T\n"
            "  --max-age DURATION e.g. 30d (default 30d); s/m/h/d\n"
            "  --grace DURATION   e.g. 10m (default 10m); 0 keeps nothing in use\n"
            "  --dry-run          say what would be removed; remove nothing\n"
            "  --quick            look only at the slice of the cache an automatic trim\n"
            "                     looks at (default: all of it, and recount its size)\n");
}

int cmd_trim(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "max-size", required_argument, NULL, CLI_OPT_MAX_SIZE },
        { "max-age", required_argument, NULL, CLI_OPT_MAX_AGE },
        { "grace", required_argument, NULL, CLI_OPT_GRACE },
        { "umask", required_argument, NULL, CLI_OPT_UMASK },
        { "dry-run", no_argument, NULL, 'n' },
        { "quick", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    acache_trim_options to = ACACHE_TRIM_OPTIONS_INIT;
    bool quick = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:nqh", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        switch (c) {
        case 'n': to.flags |= ACACHE_TRIM_DRY_RUN; break;
        case 'q': quick = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    /* The limits go into the store's spec: the trim applies the store's. */
    acache_store *s = cli_open_existing("trim", argc, argv, &o);
    if (!s)
        return 2;
    cli_progress_state ps;
    cli_progress_init(&ps);
    to.progress = cli_progress;
    to.progress_ctx = &ps;
    if (!quick)
        to.flags |= ACACHE_TRIM_FULL;
    acache_trim_report r;
    int rc = 2;
    /* Say so before waiting for another process's trim. */
    to.flags |= ACACHE_TRIM_NOWAIT;
    acache_status st = acache_trim(s, &to, &r);
    if (st == ACACHE_OK && r.busy) {
        cli_err("trim: another process is trimming this cache; waiting for it");
        to.flags &= ~(unsigned)ACACHE_TRIM_NOWAIT;
        st = acache_trim(s, &to, &r);
    }
    cli_progress_end(&ps);
    if (st != ACACHE_OK) {
        cli_err("trim: %s", acache_last_error());
        goto out;
    }
    char freed[32], before[32], after[32], limit[32], took[24];
    bool dry = to.flags & ACACHE_TRIM_DRY_RUN;
    cli_format_size(r.bytes_removed, freed, sizeof freed);
    cli_format_size(r.size_before, before, sizeof before);
    cli_format_size(r.size_after, after, sizeof after);
    cli_format_size(r.max_size, limit, sizeof limit);
    cli_format_duration(r.duration_ns - r.duration_ns % 1000000, took, sizeof took);
    printf("%s %" PRIu64 " entries, %" PRIu64 " objects and %" PRIu64
           " leftovers: %s (%" PRIu64 " files looked at in %" PRIu64 " directories, %s)\n",
           dry ? "would remove" : "removed", r.entries_removed, r.objects_removed,
           r.leftovers_removed, freed, r.files_examined, r.dirs_listed, took);
    printf("size %s -> %s (max-size %s)%s\n", before, after, limit,
           r.counted ? "; size recounted" : "");
    if (r.stopped)
        printf("stopped before the end\n");
    if (r.kept_in_grace && r.size_after > r.max_size - r.max_size / 10)
        printf("still over 90%% of max-size: %" PRIu64
               " entries were used within the grace period and stay\n",
               r.kept_in_grace);
    rc = 0;
out:
    acache_close(s);
    return rc;
}
