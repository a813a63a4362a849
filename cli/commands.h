/*
 * commands.h - the subcommands of the acache command. Each lives in its own
 * file under cli/ and returns the process exit status; main.c dispatches.
 */
#ifndef ACACHE_CLI_COMMANDS_H
#define ACACHE_CLI_COMMANDS_H

int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_gocacheprog(int argc, char **argv);

/* Prints "acache: <message>\n" on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The default cache directory: $ACACHE_DIR, else $XDG_CACHE_HOME/acache,
 * else $HOME/.cache/acache. Returns a malloc'd string or NULL. */
char *cli_default_dir(void);

#endif
