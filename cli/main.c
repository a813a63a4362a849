/*
 * main.c - the acache command: dispatches subcommands and holds the few
 * helpers they share. Subcommands live in their own files (commands.h).
 * Diagnostics go to stderr prefixed "acache:"; stdout is the command's
 * output only (for gocacheprog, the protocol and nothing else).
 */
#include "acache.h"
#include "commands.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_err(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Whatever the message quotes (a spec, a URL), no credential shows. */
    char shown[sizeof msg];
    acache_redact(msg, shown, sizeof shown);
    fprintf(stderr, "acache: %s\n", shown);
}

char *cli_default_dir(void)
{
    const char *env = getenv("ACACHE_DIR");
    char *out = NULL;
    if (env && *env)
        return strdup(env);
    if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        if (asprintf(&out, "%s/acache", env) < 0)
            return NULL;
        return out;
    }
    if ((env = getenv("HOME")) && *env) {
        if (asprintf(&out, "%s/.cache/acache", env) < 0)
            return NULL;
        return out;
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: acache COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  gocacheprog [--dir DIR] [--remote SPEC]... [--max-size SIZE] [--max-age D]\n"
            "              [--grace D] [--verify-reads] [-v]\n"
            "                       serve the go command's build cache (GOCACHEPROG)\n"
            "  put [--dir DIR] ACTION_HEX FILE\n"
            "                       store FILE ('-' for stdin) as the output of ACTION_HEX;\n"
            "                       prints the output id\n"
            "  get [--dir DIR] [--verify-reads] ACTION_HEX [-o FILE]\n"
            "                       print the local path of the output of ACTION_HEX, or copy\n"
            "                       it to FILE; exit 0 on a hit, 1 on a miss, 2 on an error\n"
            "  stats [--dir DIR] [--json]\n"
            "                       entries, size, hits, misses, errors, last trim\n"
            "  trim [--dir DIR] [--max-size SIZE] [--max-age DURATION] [--grace DURATION]\n"
            "       [--dry-run] [--quick]\n"
            "                       remove least recently used entries down to 90%% of\n"
            "                       max-size, entries unused for max-age, leftovers\n"
            "  verify [--dir DIR] [--repair]\n"
            "                       recompute every object's SHA-256, check every record;\n"
            "                       exit 1 on problems (--repair removes what is bad)\n"
            "  clear [--dir DIR]    remove every entry\n"
            "  config [--dir DIR] [--remote SPEC]... [--max-size SIZE] ...\n"
            "                       the effective configuration and where it comes from\n"
            "  ccache-helper        ccache's remote storage helper (started by ccache 4.13+;\n"
            "                       also run as ccache-storage-SCHEME; see its --help)\n"
            "  version              print the version\n"
            "  help                 print this text\n"
            "\n"
            "A cache directory shared by a group: --umask 002 (or $ACACHE_UMASK) on every\n"
            "command that writes to it (gocacheprog, put, get, trim).\n"
            "The cache directory is --dir, else $ACACHE_DIR, else $XDG_CACHE_HOME/acache,\n"
            "else ~/.cache/acache. It is kept under max-size (--max-size, else\n"
            "$ACACHE_MAX_SIZE, else 10G) and max-age (30d) by automatic trims. Every\n"
            "command takes --help.\n");
}

/* ccache looks for its storage helper as ccache-storage-<scheme>: a link
 * of that name to acache runs the helper. So does acache itself, run with
 * no arguments in the environment ccache gives a helper (helper=/usr/bin/acache). */
static bool started_as_ccache_helper(int argc, const char *argv0)
{
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    if (strncmp(base, "ccache-storage-", 15) == 0 && base[15] != '\0')
        return true;
    return argc == 1 && getenv("CRSH_IPC_ENDPOINT") && getenv("CRSH_URL");
}

int main(int argc, char **argv)
{
    if (argc > 0 && started_as_ccache_helper(argc, argv[0]))
        return cmd_ccache_helper(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("acache %d.%d.%d\n", ACACHE_VERSION_MAJOR, ACACHE_VERSION_MINOR,
               ACACHE_VERSION_PATCH);
        return 0;
    }
    if (!strcmp(cmd, "put"))
        return cmd_put(argc - 1, argv + 1);
    if (!strcmp(cmd, "get"))
        return cmd_get(argc - 1, argv + 1);
    if (!strcmp(cmd, "gocacheprog"))
        return cmd_gocacheprog(argc - 1, argv + 1);
    if (!strcmp(cmd, "stats"))
        return cmd_stats(argc - 1, argv + 1);
    if (!strcmp(cmd, "trim"))
        return cmd_trim(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify"))
        return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(cmd, "clear"))
        return cmd_clear(argc - 1, argv + 1);
    if (!strcmp(cmd, "config"))
        return cmd_config(argc - 1, argv + 1);
    if (!strcmp(cmd, "ccache-helper"))
        return cmd_ccache_helper(argc - 1, argv + 1);
    cli_err("unknown command '%s' (try 'acache help')", cmd);
    return 2;
}
