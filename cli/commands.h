/*
 * commands.h - the subcommands of the acache command. Each lives in its own
 * file under cli/ and returns the process exit status; main.c dispatches.
 */
#ifndef ACACHE_CLI_COMMANDS_H
#define ACACHE_CLI_COMMANDS_H

#include "acache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_gocacheprog(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_trim(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_clear(int argc, char **argv);
int cmd_config(int argc, char **argv);
/* ccache's remote storage helper; also what main() runs when the binary is
 * named ccache-storage-<scheme>. argv[0] is the command's name. */
int cmd_ccache_helper(int argc, char **argv);

/* Prints "acache: <message>\n" on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The default cache directory: $ACACHE_DIR, else $XDG_CACHE_HOME/acache,
 * else $HOME/.cache/acache. Returns a malloc'd string or NULL. */
char *cli_default_dir(void);

/* ---- cli_disk.c: options and output shared by the disk-store commands. */

/* Options naming the local disk store and its limits (NULL: not given). */
typedef struct cli_disk_opts {
    const char *dir;       /* --dir */
    const char *max_size;  /* --max-size */
    const char *max_age;   /* --max-age */
    const char *grace;     /* --grace */
    bool verify_reads;     /* --verify-reads */
    const char *umask;     /* --umask: a directory shared by a group */
    bool spill;            /* spill=on: puts a full disk has no room for go to
                            * $TMPDIR (gocacheprog: the go command needs a path) */
} cli_disk_opts;

/* getopt_long codes of those options, for each command's option table:
 * { "dir", required_argument, NULL, CLI_OPT_DIR }, ... */
enum {
    CLI_OPT_DIR = 'd',
    CLI_OPT_MAX_SIZE = 0x100,
    CLI_OPT_MAX_AGE,
    CLI_OPT_GRACE,
    CLI_OPT_VERIFY_READS,
    CLI_OPT_UMASK,
};

/* Takes option c if it is one of the above; returns 1 if it was. */
int cli_disk_option(int c, const char *arg, cli_disk_opts *o);
/* The directory (--dir, else the default) and where it came from. */
char *cli_disk_dir(const cli_disk_opts *o, const char **from);
/* The max-size text (--max-size, else $ACACHE_MAX_SIZE) or NULL for the
 * store's default, and where it came from. */
const char *cli_max_size(const cli_disk_opts *o, const char **from);
/* The umask text (--umask, else $ACACHE_UMASK) or NULL (a private store),
 * and where it came from. */
const char *cli_umask(const cli_disk_opts *o, const char **from);
/* "disk:DIR?..." with DIR absolute and the limits given; malloc'd, or NULL
 * (message printed). */
char *cli_disk_spec(const cli_disk_opts *o);
/* Opens the disk store; with must_exist, refuses a directory that does not
 * exist rather than creating it. NULL on failure (message printed). */
acache_store *cli_open_disk(const cli_disk_opts *o, bool must_exist);
/* For a command that takes no operands: refuses any left after its
 * options (argv[optind]...), then opens the existing disk store. */
acache_store *cli_open_existing(const char *cmd, int argc, char **argv, const cli_disk_opts *o);

/* "1.5 GiB", "512 B". */
void cli_format_size(uint64_t bytes, char *buf, size_t size);
/* "30d", "10m", "90s"; "off" when negative. */
void cli_format_duration(int64_t ns, char *buf, size_t size);

/* Progress on stderr, only when it is a terminal (an acache_progress_fn
 * whose ctx is a cli_progress_state). */
typedef struct cli_progress_state {
    bool tty, shown;
    int64_t last_ns;
} cli_progress_state;
void cli_progress_init(cli_progress_state *s);
int cli_progress(void *ctx, const acache_progress *p);
/* Clears the progress line, if one is shown. */
void cli_progress_end(cli_progress_state *s);

#endif
