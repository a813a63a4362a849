/*
 * cmd_stats.c - `acache stats`: what a disk store holds and how it has been
 * used, summed over every process that used it; human-readable or --json.
 * It only reads: it never creates a cache directory or changes an entry.
 */
#include "acache.h"
#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: acache stats [--dir DIR] [--json]\n"
               "Shows the entries, size, hits, misses, errors and last trim of the cache,\n"
               "counted across every process that used it. Entries and size are an estimate\n"
               "kept up to date by every put and trim (exact after `acache trim`).\n"
               "  --dir DIR   the cache (default $ACACHE_DIR, $XDG_CACHE_HOME/acache,\n"
               "              ~/.cache/acache)\n"
               "  --json      one JSON object on stdout (sizes in bytes, times in ns)\n"
               "  --max-size SIZE, --max-age DURATION, --grace DURATION\n"
               "              the limits shown (as acache trim and gocacheprog take them;\n"
               "              default $ACACHE_MAX_SIZE or 10G, 30d, 10m)\n");
}

static int print_json(const acache_disk_counters *c)
{
    json_t *o = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:I}",
        "dir", c->dir, "entries", (json_int_t)c->entries, "objects", (json_int_t)c->objects,
        "bytes", (json_int_t)c->bytes, "max_size", (json_int_t)c->max_size, "max_age_ns",
        (json_int_t)c->max_age_ns, "grace_ns", (json_int_t)c->grace_ns, "trim_interval_ns",
        (json_int_t)c->trim_interval_ns, "hits", (json_int_t)c->hits, "misses",
        (json_int_t)c->misses, "errors", (json_int_t)c->errors, "corrupt", (json_int_t)c->corrupt,
        "puts", (json_int_t)c->puts, "bytes_written", (json_int_t)c->bytes_written, "bytes_read",
        (json_int_t)c->bytes_read, "trimmed_entries", (json_int_t)c->trimmed_entries,
        "trimmed_bytes", (json_int_t)c->trimmed_bytes, "counted_ns", (json_int_t)c->counted_ns,
        "last_trim_ns", (json_int_t)c->last_trim_ns, "last_trim_duration_ns",
        (json_int_t)c->last_trim_duration_ns, "last_trim_finished", c->last_trim_finished,
        "last_trim_entries_removed", (json_int_t)c->last_trim_entries_removed,
        "last_trim_bytes_removed", (json_int_t)c->last_trim_bytes_removed,
        "last_trim_files_examined", (json_int_t)c->last_trim_files_examined,
        "last_trim_dirs_listed", (json_int_t)c->last_trim_dirs_listed);
    if (o)
        json_object_set_new(o, "repaired", json_integer((json_int_t)c->repaired));
    if (o)
        json_object_set_new(o, "spilled", json_integer((json_int_t)c->spilled));
    if (!o) {
        cli_err("stats: out of memory");
        return 2;
    }
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text) {
        cli_err("stats: out of memory");
        return 2;
    }
    int rc = printf("%s\n", text) > 0 ? 0 : 2;
    free(text);
    return rc;
}

/* "2024-05-01 12:00:00 (3m ago)" */
static void format_when(int64_t ns, char *buf, size_t size)
{
    time_t t = (time_t)(ns / 1000000000LL);
    struct tm tm;
    char when[64], ago[32];
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    int64_t d = (int64_t)time(NULL) * 1000000000LL - ns;
    d -= d % 1000000000LL;
    if (d < 1000000000LL)
        snprintf(ago, sizeof ago, "just now");
    else {
        char dur[24];
        int64_t unit = d >= 86400000000000LL ? 86400000000000LL
                       : d >= 3600000000000LL ? 3600000000000LL
                       : d >= 60000000000LL   ? 60000000000LL
                                              : 1000000000LL;
        cli_format_duration(d - d % unit, dur, sizeof dur);
        snprintf(ago, sizeof ago, "%s ago", dur);
    }
    snprintf(buf, size, "%s (%s)", when, ago);
}

static void print_human(const acache_disk_counters *c)
{
    char a[32], b[32], age[24], grace[24], every[24];
    uint64_t gets = c->hits + c->misses;
    printf("cache directory  %s\n", c->dir);
    printf("entries          %" PRIu64 " (%" PRIu64 " objects)\n", c->entries, c->objects);
    cli_format_size(c->bytes, a, sizeof a);
    cli_format_size(c->max_size, b, sizeof b);
    printf("size             %s of %s (%.0f%%)%s\n", a, b,
           c->max_size ? 100.0 * (double)c->bytes / (double)c->max_size : 0.0,
           c->counted_ns ? "" : "  [never counted: run acache trim]");
    printf("hits             %" PRIu64 " (%.1f%% of %" PRIu64 " gets)\n", c->hits,
           gets ? 100.0 * (double)c->hits / (double)gets : 0.0, gets);
    printf("misses           %" PRIu64 " (%" PRIu64 " of them corrupt entries, removed)\n",
           c->misses, c->corrupt);
    printf("errors           %" PRIu64 "\n", c->errors);
    if (c->spilled)
        printf("spilled          %" PRIu64 " puts the full disk had no room for\n", c->spilled);
    if (c->repaired)
        printf("repaired         %" PRIu64 " damaged objects, replaced by puts\n", c->repaired);
    cli_format_size(c->bytes_written, a, sizeof a);
    cli_format_size(c->bytes_read, b, sizeof b);
    printf("puts             %" PRIu64 " (%s); hits read %s\n", c->puts, a, b);
    cli_format_size(c->trimmed_bytes, a, sizeof a);
    printf("trimmed          %" PRIu64 " entries, %s in all\n", c->trimmed_entries, a);
    if (c->last_trim_ns) {
        char when[128], took[24];
        format_when(c->last_trim_ns, when, sizeof when);
        cli_format_size(c->last_trim_bytes_removed, a, sizeof a);
        cli_format_duration(c->last_trim_duration_ns - c->last_trim_duration_ns % 1000000, took,
                            sizeof took);
        if (c->last_trim_finished)
            printf("last trim        %s, took %s, removed %" PRIu64 " entries (%s), looked at %" PRIu64
                   " files\n",
                   when, took, c->last_trim_entries_removed, a, c->last_trim_files_examined);
        else
            printf("last trim        %s, not finished (running, or stopped)\n", when);
    } else {
        printf("last trim        never\n");
    }
    cli_format_size(c->max_size, a, sizeof a);
    cli_format_duration(c->max_age_ns, age, sizeof age);
    cli_format_duration(c->grace_ns, grace, sizeof grace);
    cli_format_duration(c->trim_interval_ns, every, sizeof every);
    printf("limits           max-size %s, max-age %s, grace %s, automatic trim every %s\n", a,
           age, grace, every);
}

int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "max-size", required_argument, NULL, CLI_OPT_MAX_SIZE },
        { "max-age", required_argument, NULL, CLI_OPT_MAX_AGE },
        { "grace", required_argument, NULL, CLI_OPT_GRACE },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:jh", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        switch (c) {
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    acache_store *s = cli_open_existing("stats", argc, argv, &o);
    if (!s)
        return 2;
    acache_disk_counters cnt;
    int rc = 2;
    if (acache_disk_stats(s, &cnt) != ACACHE_OK) {
        cli_err("stats: %s", acache_last_error());
    } else if (json) {
        rc = print_json(&cnt);
    } else {
        print_human(&cnt);
        rc = 0;
    }
    acache_close(s);
    return rc;
}
