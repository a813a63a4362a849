/*
 * gcp_respond.c - `acache gocacheprog`'s response lines on stdout, written
 * whole, one at a time, under the server's output mutex, by whichever
 * thread has the answer.
 *
 * Must never write anything on stdout but whole protocol lines, never
 * interleave two lines, and never leave a request without its answer (out
 * of memory still answers its ID).
 */
#include "gcp_server.h"
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void gcp_respond(gcp_server *s, int64_t id, char *line)
{
    char fallback[96];
    const char *p = line;
    size_t len = line ? strlen(line) : 0;
    int err = 0;

    if (line == NULL) {
        /* Out of memory: the go command still needs an answer for id. */
        int n = snprintf(fallback, sizeof fallback, "{\"ID\":%" PRId64 ",\"Err\":\"out of memory\"}\n",
                         id);
        p = fallback;
        len = (size_t)n;
    }
    pthread_mutex_lock(&s->out_mu);
    if (!atomic_load(&s->out_broken)) {
        err = write_all(STDOUT_FILENO, p, len);
        if (err != 0)
            atomic_store(&s->out_broken, true);
    }
    pthread_mutex_unlock(&s->out_mu);
    if (err != 0)
        cli_err("gocacheprog: writing stdout: %s", strerror(err));
    free(line);
}

/* Ends stdout: the reader at the other end sees end of file. /dev/null
 * takes its place, so the descriptor is never reused for a file that a
 * stray write could then damage. Left as it is if /dev/null cannot be
 * opened (the reader then sees the end at exit). */
void gcp_end_stdout(gcp_server *s)
{
    pthread_mutex_lock(&s->out_mu);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        close(fd);
        atomic_store(&s->out_broken, true);
    }
    pthread_mutex_unlock(&s->out_mu);
}

void gcp_respond_err(gcp_server *s, int64_t id, const char *msg)
{
    atomic_fetch_add(&s->errors, 1);
    gcp_respond(s, id, gcp_format_err(id, msg, NULL));
}
