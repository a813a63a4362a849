/*
 * cmd_config.c - `acache config`: the configuration the other commands
 * would use, where each value comes from (a flag, the environment, the
 * default), and whether acache_open() accepts the local store and each
 * remote. Opening a remote never touches the network. It creates no cache
 * directory that does not exist yet.
 */
#include "acache.h"
#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: acache config [--dir DIR] [--max-size SIZE] [--max-age DURATION]\n"
            "                     [--grace DURATION] [--remote SPEC]...\n"
            "Shows the effective configuration, where each value comes from (flag,\n"
            "environment, default), and whether each store spec is accepted. Remotes are\n"
            "--remote, else the whitespace-separated specs in $ACACHE_REMOTE.\n"
            "Exit status 1 if a store would be refused.\n");
}

static void row(const char *name, const char *value, const char *from)
{
    printf("%-14s %s  (%s)\n", name, value, from);
}

/* Shows whether a spec opens (and why not, the spec redacted in the
 * reason too); true if it does. */
static bool try_open(const char *label, const char *spec, const char *from)
{
    acache_store *s = NULL;
    char shown[1024], why[2048] = "";
    acache_status st = acache_open(spec, &s);
    acache_redact(spec, shown, sizeof shown);
    if (st != ACACHE_OK) /* the library's messages are redacted already */
        snprintf(why, sizeof why, "%s", acache_last_error());
    printf("%-14s %s  (%s)\n%-14s %s%s\n", label, shown, from, "", st == ACACHE_OK ? "accepted" : "refused: ",
           why);
    /* Where an s3 remote's region and credentials come from (never the
     * secret: the library does not show it). */
    acache_remote_info info;
    if (st == ACACHE_OK && acache_remotes(s, &info, 1) == 1 && info.detail[0])
        printf("%-14s %s\n", "", info.detail);
    acache_close(s);
    return st == ACACHE_OK;
}

/* The remotes from ACACHE_REMOTE (split on whitespace into *env_copy),
 * when no --remote was given. False when out of memory. */
static bool remotes_from_env(char ***remotes, size_t *nremotes, char **env_copy,
                             const char **from)
{
    const char *env = getenv("ACACHE_REMOTE");
    *from = "--remote";
    if (*nremotes != 0 || !env || !*env)
        return true;
    *from = "ACACHE_REMOTE";
    if (!(*env_copy = strdup(env)))
        return false;
    char **more = realloc(*remotes, (strlen(env) / 2 + 2) * sizeof **remotes);
    if (!more)
        return false;
    *remotes = more;
    char *save = NULL;
    for (char *t = strtok_r(*env_copy, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save))
        (*remotes)[(*nremotes)++] = t;
    return true;
}

/* The rows of the local store's settings. Returns the directory (malloc'd,
 * or NULL when there is none). */
static char *show_settings(const cli_disk_opts *o)
{
    const char *from;
    char text[64];
    char *dir = cli_disk_dir(o, &from);
    row("dir", dir ? dir : "(none: set ACACHE_DIR or HOME)",
        strcmp(from, "--dir") == 0 || strcmp(from, "ACACHE_DIR") == 0 ? from
        : strcmp(from, "XDG_CACHE_HOME") == 0                        ? "default: $XDG_CACHE_HOME/acache"
                                                                     : "default: $HOME/.cache/acache");
    const char *ms = cli_max_size(o, &from);
    uint64_t size = 10ull << 30;
    int64_t ns;
    if (ms && acache_parse_size(ms, &size) != ACACHE_OK) {
        printf("%-14s %s  (%s): %s\n", "max-size", ms, from, acache_last_error());
    } else {
        cli_format_size(size, text, sizeof text);
        row("max-size", text, from);
    }
    struct {
        const char *name, *value, *dflt;
    } durs[] = { { "max-age", o->max_age, "30d" }, { "grace", o->grace, "10m" } };
    for (size_t i = 0; i < 2; i++) {
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", durs[i].name);
        if (durs[i].value && acache_parse_duration(durs[i].value, &ns) != ACACHE_OK)
            printf("%-14s %s  (%s): %s\n", durs[i].name, durs[i].value, flag, acache_last_error());
        else
            row(durs[i].name, durs[i].value ? durs[i].value : durs[i].dflt,
                durs[i].value ? flag : "default");
    }
    row("trim-interval", "1h", "default");
    row("verify-reads", o->verify_reads ? "on" : "off", o->verify_reads ? "--verify-reads" : "default");
    const char *um = cli_umask(o, &from);
    row("umask", um ? um : "077 (private)", from);
    return dir;
}

/* Whether the local store and each remote would open; true if all do. */
static bool show_stores(const char *spec, const char *dir, char **remotes, size_t nremotes,
                        const char *remote_from)
{
    bool ok = true;
    struct stat sb;
    if (!spec) {
        ok = false;
    } else if (dir && stat(dir, &sb) != 0 && errno == ENOENT) {
        printf("%-14s %s  (local)\n%-14s not created yet: made at first use\n", "store", spec, "");
    } else {
        ok &= try_open("store", spec, "local");
    }
    for (size_t i = 0; i < nremotes; i++) {
        char label[32];
        snprintf(label, sizeof label, "remote %zu", i + 1);
        ok &= try_open(label, remotes[i], remote_from);
    }
    if (nremotes == 0)
        printf("%-14s none  (--remote, ACACHE_REMOTE)\n", "remotes");
    return ok;
}

int cmd_config(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "max-size", required_argument, NULL, CLI_OPT_MAX_SIZE },
        { "max-age", required_argument, NULL, CLI_OPT_MAX_AGE },
        { "grace", required_argument, NULL, CLI_OPT_GRACE },
        { "verify-reads", no_argument, NULL, CLI_OPT_VERIFY_READS },
        { "remote", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    char **remotes = calloc((size_t)argc + 1, sizeof *remotes);
    size_t nremotes = 0;
    char *env_copy = NULL, *dir = NULL, *spec = NULL;
    const char *remote_from;
    int rc = 2, c;
    if (!remotes)
        return 2;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        switch (c) {
        case 'r': remotes[nremotes++] = optarg; break;
        case 'h': usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    if (optind != argc) {
        cli_err("config: unexpected argument '%s' (see acache config --help)", argv[optind]);
        goto out;
    }
    if (!remotes_from_env(&remotes, &nremotes, &env_copy, &remote_from))
        goto out;
    dir = show_settings(&o);
    spec = cli_disk_spec(&o);
    rc = show_stores(spec, dir, remotes, nremotes, remote_from) ? 0 : 1;
out:
    free(spec);
    free(dir);
    free(env_copy);
    free(remotes);
    return rc;
}
