/*
 * gcp_options.c - reading `acache gocacheprog`'s flags and $ACACHE_REMOTE
 * (gcp_options.h), and its usage text.
 *
 * Must never take a number without its bounds (--workers), and never let
 * the environment override a flag.
 */
#include "gcp_options.h"
#include "gcp_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: acache gocacheprog [--dir DIR] [--remote SPEC]... [--max-size SIZE]\n"
               "                          [--max-age DURATION] [--grace DURATION]\n"
               "                          [--verify-reads] [--umask MASK] [-v]\n"
               "\n"
               "Serves the go command's build cache: GOCACHEPROG=\"acache gocacheprog\".\n"
               "Go 1.24 and later speak GOCACHEPROG as they come; 1.21-1.23 only when built\n"
               "with GOEXPERIMENT=cacheprog. Tested end to end with Go 1.23 (cacheprog),\n"
               "1.24, 1.25 and 1.26.\n"
               "\n"
               "  --dir DIR        cache directory (default $ACACHE_DIR, else\n"
               "                   $XDG_CACHE_HOME/acache, else ~/.cache/acache)\n"
               "  --remote SPEC    a shared store after the local one (repeatable;\n"
               "                   default $ACACHE_REMOTE, specs separated by spaces)\n"
               "  --max-size SIZE  bound of the local store, e.g. 10G (default\n"
               "                   $ACACHE_MAX_SIZE, else 10G); trimmed in the background\n"
               "  --max-age DURATION  entries unused this long are trimmed (30d)\n"
               "  --grace DURATION entries used within this are never trimmed (10m)\n"
               "  --verify-reads   hash every object before serving it\n"
               "  --umask MASK     share the cache directory with its group: new files\n"
               "                   and directories get 0666/0777 less MASK, e.g. 002\n"
               "                   (default $ACACHE_UMASK, else private: 0600/0700)\n"
               "  --workers N      threads serving gets (default 0 with only the local\n"
               "                   store: the reader serves them; 8 with remotes)\n"
               "  -v               the remotes at start; at exit a summary of the session\n"
               "                   and of each remote (hits, uploads, dropped) on stderr\n");
}

/* Matches --name VALUE and --name=VALUE; advances *i past the value. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cli_err("gocacheprog: %s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int gcp_parse_args(int argc, char **argv, gcp_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            o->verbose = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stderr);
            return 0;
        } else if (strcmp(argv[i], "--verify-reads") == 0) {
            o->disk.verify_reads = true;
        } else if ((r = opt_value(argc, argv, &i, "--dir", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.dir = v;
        } else if ((r = opt_value(argc, argv, &i, "--max-age", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.max_age = v;
        } else if ((r = opt_value(argc, argv, &i, "--umask", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.umask = v;
        } else if ((r = opt_value(argc, argv, &i, "--grace", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.grace = v;
        } else if ((r = opt_value(argc, argv, &i, "--remote", &v)) != 0) {
            if (r < 0)
                return 2;
            o->remotes[o->nremotes++] = (char *)v;
        } else if ((r = opt_value(argc, argv, &i, "--max-size", &v)) != 0) {
            if (r < 0)
                return 2;
            o->disk.max_size = v;
        } else if ((r = opt_value(argc, argv, &i, "--workers", &v)) != 0) {
            if (r < 0)
                return 2;
            char *end = NULL;
            o->workers = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || o->workers < 0 || o->workers > GCP_WORKERS_MAX) {
                cli_err("gocacheprog: --workers wants a number from 0 to %d, got \"%s\"",
                        GCP_WORKERS_MAX, v);
                return 2;
            }
        } else {
            cli_err("gocacheprog: unknown argument %s", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

bool gcp_remotes_from_env(gcp_opts *o)
{
    const char *env = getenv("ACACHE_REMOTE");
    if (o->nremotes != 0 || env == NULL || env[0] == '\0')
        return true;
    const char *sep = " \t\n";
    size_t count = 0;
    o->env_remotes = strdup(env);
    if (o->env_remotes == NULL)
        return false;
    for (const char *t = env; *t; t++)
        if (strchr(sep, *t) == NULL && (t == env || strchr(sep, t[-1]) != NULL))
            count++;
    char **more = realloc(o->remotes, (count + 1) * sizeof *o->remotes);
    if (more == NULL)
        return false;
    o->remotes = more;
    char *save = NULL;
    for (char *t = strtok_r(o->env_remotes, sep, &save); t && o->nremotes < count;
         t = strtok_r(NULL, sep, &save))
        o->remotes[o->nremotes++] = t;
    return true;
}
