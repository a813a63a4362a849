/*
 * cmd_putget.c - `acache put` and `acache get`: one entry in or out of the
 * local disk store from the shell. Exit status: 0 ok/hit, 1 miss, 2 error.
 * `get -o FILE` must never open a name someone else could have made first
 * (a predictable temp name, FILE itself): it writes a mkstemp file in
 * FILE's directory and renames it over FILE.
 */
#include "acache.h"
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse_action(const char *hex, acache_id *id)
{
    if (acache_id_from_hex(hex, strlen(hex), id) != ACACHE_OK) {
        cli_err("'%s' is not an action id (64 hex digits): %s", hex, acache_last_error());
        return -1;
    }
    return 0;
}

int cmd_put(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "umask", required_argument, NULL, CLI_OPT_UMASK },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        switch (c) {
        case 'h':
            printf("usage: acache put [--dir DIR] [--umask MASK] ACTION_HEX FILE\n"
                   "Stores FILE ('-' for stdin) as the output of ACTION_HEX and prints its\n"
                   "output id (the SHA-256 of the bytes, hex).\n");
            return 0;
        default: return 2;
        }
    }
    if (argc - optind != 2) {
        cli_err("put: want ACTION_HEX FILE (see acache put --help)");
        return 2;
    }
    acache_id action, output;
    if (parse_action(argv[optind], &action) != 0)
        return 2;
    const char *file = argv[optind + 1];
    int fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_err("put: cannot open %s: %s", file, strerror(errno));
        return 2;
    }
    int rc = 2;
    acache_store *s = cli_open_disk(&o, false);
    if (!s)
        goto out;
    acache_status st = acache_put_fd(s, &action, fd, &output);
    if (st != ACACHE_OK) {
        cli_err("put: %s", acache_last_error());
        goto out;
    }
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&output, hex);
    printf("%s\n", hex);
    rc = 0;
out:
    acache_close(s);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

/* A new, unique temp file beside file (mkstemp: O_CREAT|O_EXCL, so never
 * an existing name and never through a symlink planted there), with the
 * mode a plain create would have given (0666 less the umask). Its name goes
 * to *tmp (free it). -1 (message printed) if it cannot be made. */
static int make_temp_beside(const char *file, char **tmp)
{
    const char *slash = strrchr(file, '/');
    int dirlen = slash ? (int)(slash - file + 1) : 0;
    if (asprintf(tmp, "%.*s.%s.acache-XXXXXX", dirlen, file, slash ? slash + 1 : file) < 0) {
        *tmp = NULL;
        cli_err("get: out of memory");
        return -1;
    }
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        cli_err("get: cannot create a temp file beside %s: %s", file, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) {
        cli_err("get: %s: %s", *tmp, strerror(errno));
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    return fd;
}

/* Copies the entry's bytes to file: written to a unique temp file in the
 * same directory, then renamed over file, so a reader never sees half of
 * it and a symlink at file (or at any name) is replaced, never written
 * through. */
static int copy_out(const acache_result *res, const char *file)
{
    if (strcmp(file, "-") == 0)
        return fwrite(res->data, 1, res->size, stdout) == res->size && fflush(stdout) == 0 ? 0 : -1;
    char *tmp = NULL;
    int fd = make_temp_beside(file, &tmp);
    if (fd < 0)
        return -1;
    const unsigned char *p = res->data;
    size_t left = res->size;
    int err = 0, rc = -1;
    while (left > 0 && !err) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
        } else {
            p += n;
            left -= (size_t)n;
        }
    }
    if (close(fd) != 0 && !err)
        err = errno;
    if (err)
        cli_err("get: writing %s: %s", tmp, strerror(err));
    else if (rename(tmp, file) != 0)
        cli_err("get: renaming to %s: %s", file, strerror(errno));
    else
        rc = 0;
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, CLI_OPT_DIR },
        { "verify-reads", no_argument, NULL, CLI_OPT_VERIFY_READS },
        { "umask", required_argument, NULL, CLI_OPT_UMASK },
        { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    cli_disk_opts o = { 0 };
    const char *outfile = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:h", opts, NULL)) != -1) {
        if (cli_disk_option(c, optarg, &o))
            continue;
        switch (c) {
        case 'o': outfile = optarg; break;
        case 'h':
            printf("usage: acache get [--dir DIR] [--verify-reads] ACTION_HEX [-o FILE]\n"
                   "Prints the local path of the output of ACTION_HEX, or with -o copies it\n"
                   "to FILE ('-' for stdout). Exit status: 0 hit, 1 miss, 2 error.\n"
                   "With --verify-reads the object's SHA-256 is checked first: a corrupt\n"
                   "entry is removed and is a miss.\n");
            return 0;
        default: return 2;
        }
    }
    if (argc - optind != 1) {
        cli_err("get: want ACTION_HEX (see acache get --help)");
        return 2;
    }
    acache_id action;
    if (parse_action(argv[optind], &action) != 0)
        return 2;
    acache_store *s = cli_open_disk(&o, false);
    if (!s)
        return 2;
    int rc = 2;
    acache_result res;
    acache_status st = acache_get(s, &action, outfile ? ACACHE_GET_DATA : 0, &res);
    if (st == ACACHE_MISS) {
        rc = 1;
        goto out;
    }
    if (st != ACACHE_OK) {
        cli_err("get: %s", acache_last_error());
        goto out;
    }
    if (outfile)
        rc = copy_out(&res, outfile) == 0 ? 0 : 2;
    else
        rc = printf("%s\n", res.path) > 0 ? 0 : 2;
    acache_result_release(&res);
out:
    acache_close(s);
    return rc;
}
