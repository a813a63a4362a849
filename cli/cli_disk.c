/*
 * cli_disk.c - what the commands that work on the local disk store share:
 * the options naming it and its limits (--dir, --max-size, --max-age,
 * --grace, --verify-reads, --umask), the spec built from them, and how sizes,
 * durations and progress are shown.
 *
 * It must never print on stdout (commands own their output) and never
 * create a cache directory a command only looks at.
 */
#include "acache.h"
#include "clock.h"
#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_disk_option(int c, const char *arg, cli_disk_opts *o)
{
    switch (c) {
    case CLI_OPT_DIR: o->dir = arg; return 1;
    case CLI_OPT_MAX_SIZE: o->max_size = arg; return 1;
    case CLI_OPT_MAX_AGE: o->max_age = arg; return 1;
    case CLI_OPT_GRACE: o->grace = arg; return 1;
    case CLI_OPT_VERIFY_READS: o->verify_reads = true; return 1;
    case CLI_OPT_UMASK: o->umask = arg; return 1;
    default: return 0;
    }
}

const char *cli_max_size(const cli_disk_opts *o, const char **from)
{
    const char *env = getenv("ACACHE_MAX_SIZE");
    if (o->max_size) {
        *from = "--max-size";
        return o->max_size;
    }
    if (env && *env) {
        *from = "ACACHE_MAX_SIZE";
        return env;
    }
    *from = "default";
    return NULL;
}

const char *cli_umask(const cli_disk_opts *o, const char **from)
{
    const char *env = getenv("ACACHE_UMASK");
    if (o->umask) {
        *from = "--umask";
        return o->umask;
    }
    if (env && *env) {
        *from = "ACACHE_UMASK";
        return env;
    }
    *from = "default";
    return NULL;
}

char *cli_disk_dir(const cli_disk_opts *o, const char **from)
{
    const char *env;
    if (o->dir) {
        *from = "--dir";
        return strdup(o->dir);
    }
    if ((env = getenv("ACACHE_DIR")) && *env)
        *from = "ACACHE_DIR";
    else if ((env = getenv("XDG_CACHE_HOME")) && *env)
        *from = "XDG_CACHE_HOME";
    else
        *from = "HOME";
    return cli_default_dir();
}

/* A value goes into a spec string: it must not smuggle in other options. */
static bool value_ok(const char *name, const char *v)
{
    uint64_t size;
    int64_t ns;
    acache_status st = strcmp(name, "max-size") == 0 ? acache_parse_size(v, &size)
                                                     : acache_parse_duration(v, &ns);
    if (st != ACACHE_OK || strpbrk(v, "?&=") != NULL) {
        cli_err("--%s: %s", name, acache_last_error());
        return false;
    }
    return true;
}

char *cli_disk_spec(const cli_disk_opts *o)
{
    const char *from;
    char *dir = cli_disk_dir(o, &from), *spec = NULL, *cwd = NULL;
    const char *max_size = cli_max_size(o, &from);
    const char *umask = cli_umask(o, &from);
    if (!dir || !*dir) {
        cli_err("no cache directory: pass --dir, or set ACACHE_DIR or HOME");
        goto out;
    }
    if (strchr(dir, '?')) {
        cli_err("cache directory %s contains '?', which a store spec cannot hold", dir);
        goto out;
    }
    if ((max_size && !value_ok("max-size", max_size)) ||
        (o->max_age && !value_ok("max-age", o->max_age)) || (o->grace && !value_ok("grace", o->grace)))
        goto out;
    if (umask && (!*umask || strlen(umask) > 4 || strspn(umask, "01234567") != strlen(umask))) {
        cli_err("%s: umask must be octal digits, such as 002 or 027, got '%s'", from, umask);
        goto out;
    }
    /* Absolute: the store hands out paths that must stay valid elsewhere. */
    if (dir[0] != '/' && !(cwd = getcwd(NULL, 0))) {
        cli_err("cannot make %s absolute: %s", dir, strerror(errno));
        goto out;
    }
    if (asprintf(&spec, "disk:%s%s%s?verify-reads=%s%s%s%s%s%s%s%s%s%s", cwd ? cwd : "", cwd ? "/" : "",
                 dir, o->verify_reads ? "on" : "off", max_size ? "&max-size=" : "",
                 max_size ? max_size : "", o->max_age ? "&max-age=" : "",
                 o->max_age ? o->max_age : "", o->grace ? "&grace=" : "",
                 o->grace ? o->grace : "", o->spill ? "&spill=on" : "", umask ? "&umask=" : "",
                 umask ? umask : "") < 0) {
        spec = NULL;
        cli_err("out of memory");
    }
out:
    free(cwd);
    free(dir);
    return spec;
}

acache_store *cli_open_disk(const cli_disk_opts *o, bool must_exist)
{
    acache_store *s = NULL;
    const char *from;
    char *spec = NULL, *dir = NULL;
    if (must_exist) {
        struct stat sb;
        dir = cli_disk_dir(o, &from);
        if (dir && stat(dir, &sb) != 0) {
            cli_err("no cache at %s: %s", dir, strerror(errno));
            goto out;
        }
    }
    spec = cli_disk_spec(o);
    if (spec && acache_open(spec, &s) != ACACHE_OK)
        cli_err("%s", acache_last_error());
out:
    free(spec);
    free(dir);
    return s;
}

acache_store *cli_open_existing(const char *cmd, int argc, char **argv, const cli_disk_opts *o)
{
    if (optind != argc) {
        cli_err("%s: unexpected argument '%s' (see acache %s --help)", cmd, argv[optind], cmd);
        return NULL;
    }
    return cli_open_disk(o, true);
}

void cli_format_size(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    if (bytes < 1024) {
        snprintf(buf, size, "%" PRIu64 " B", bytes);
        return;
    }
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, units[u]);
}

void cli_format_duration(int64_t ns, char *buf, size_t size)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = { { "d", 86400000000000LL }, { "h", 3600000000000LL }, { "m", 60000000000LL },
                  { "s", 1000000000LL }, { "ms", 1000000LL } };
    if (ns < 0) {
        snprintf(buf, size, "off");
        return;
    }
    /* The largest unit that divides it, so that it reads back the same. */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ns >= units[i].ns && ns % units[i].ns == 0) {
            snprintf(buf, size, "%" PRId64 "%s", ns / units[i].ns, units[i].unit);
            return;
        }
    }
    if (ns >= 1000000000LL)
        snprintf(buf, size, "%.1fs", (double)ns / 1e9);
    else
        snprintf(buf, size, "%" PRId64 "ms", ns / 1000000);
}

int cli_progress(void *ctx, const acache_progress *p)
{
    cli_progress_state *s = ctx;
    if (!s->tty)
        return 0;
    int64_t now = now_ns();
    if (now - s->last_ns < 100000000LL && !(p->total && p->done == p->total))
        return 0;
    s->last_ns = now;
    char done[32], total[32];
    if (p->bytes_total) {
        cli_format_size(p->bytes_done, done, sizeof done);
        cli_format_size(p->bytes_total, total, sizeof total);
        fprintf(stderr, "\racache: %s %" PRIu64 "/%" PRIu64 " (%s of %s)   ", p->phase, p->done,
                p->total, done, total);
    } else if (p->total) {
        fprintf(stderr, "\racache: %s %" PRIu64 "/%" PRIu64 " (%" PRIu64 "%%)   ", p->phase,
                p->done, p->total, p->done * 100 / p->total);
    } else {
        fprintf(stderr, "\racache: %s %" PRIu64 "   ", p->phase, p->done);
    }
    s->shown = true;
    return 0;
}

void cli_progress_init(cli_progress_state *s)
{
    memset(s, 0, sizeof *s);
    s->tty = isatty(STDERR_FILENO) == 1;
}

void cli_progress_end(cli_progress_state *s)
{
    if (s->shown)
        fprintf(stderr, "\r\033[K");
    s->shown = false;
}
