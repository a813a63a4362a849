/*
 * cmd_verify.c - `acache verify`: recomputes every object's SHA-256 and
 * checks every action record; lists each problem on stdout; with --repair
 * removes what is bad. Exit status: 0 nothing wrong (or all of it
 * repaired), 1 problems left, 2 the check could not run.
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
            "usage: acache verify [--dir DIR] [--repair]\n"
            "Recomputes the SHA-256 of every object and checks every action record\n"
            "against its object. Prints each problem; exits 1 if any is left.\n"
            "  --dir DIR   the cache (default $ACACHE_DIR, $XDG_CACHE_HOME/acache,\n"
            "              ~/.cache/acache)\n"
            "  --repair    remove corrupt objects and the records naming them, malformed\n"
            "              records and records whose object is missing; restore missing\n"
            "              references; recount the size\n");
}

static void show_problem(void *ctx, const char *path, const char *what, int repaired)
{
    cli_progress_state *ps = ctx;
    cli_progress_end(ps);
    printf("%s: %s%s\n", path, what, repaired ? " (repaired)" : "");
    fflush(stdout);
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "repair", no_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    acache_verify_options vo = { 0, NULL, NULL, NULL, NULL };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:rh", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        switch (c) {
        case 'r': vo.flags |= ACACHE_VERIFY_REPAIR; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    acache_store *s = cli_open_existing("verify", argc, argv, &o);
    if (!s)
        return 2;
    cli_progress_state ps;
    cli_progress_init(&ps);
    vo.progress = cli_progress;
    vo.progress_ctx = &ps;
    vo.problem = show_problem;
    vo.problem_ctx = &ps;
    acache_verify_report r;
    acache_status st = acache_verify(s, &vo, &r);
    cli_progress_end(&ps);
    int rc = 2;
    if (st != ACACHE_OK) {
        cli_err("verify: %s", acache_last_error());
        goto out;
    }
    char bytes[32];
    cli_format_size(r.bytes, bytes, sizeof bytes);
    printf("%" PRIu64 " objects (%s) and %" PRIu64 " records checked: ", r.objects, bytes,
           r.records);
    if (r.problems == 0)
        printf("no problems");
    else
        printf("%" PRIu64 " problems (%" PRIu64 " corrupt objects, %" PRIu64
               " malformed records, %" PRIu64 " records without their object), %" PRIu64
               " repaired",
               r.problems, r.corrupt_objects, r.bad_records, r.dangling_records, r.repaired);
    printf("\n");
    if (r.unreferenced)
        printf("%" PRIu64 " records without their reference to their object (left by a put "
               "that was killed; harmless), %" PRIu64 " restored%s\n",
               r.unreferenced, r.references_restored,
               r.references_restored < r.unreferenced ? ": --repair restores them" : "");
    if (r.orphan_objects || r.leftovers)
        printf("for the next trim: %" PRIu64 " objects no entry refers to, %" PRIu64
               " leftovers of processes that died\n",
               r.orphan_objects, r.leftovers);
    rc = r.problems > r.repaired ? 1 : 0;
out:
    acache_close(s);
    return rc;
}
