/*
 * gcp_input.c - reading `acache gocacheprog`'s request lines from stdin
 * (gcp_input.h).
 *
 * Must never hold more of a line than GCP_MAX_LINE (a longer one is
 * scanned as it streams, gcp_scan), grow the line buffer ahead of the bytes
 * that arrived, or lose bytes that follow a line (a put's body).
 */
#include "gcp_input.h"
#include "commands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool gcp_in_fill(gcp_input *in)
{
    if (in->pos < in->len)
        return true;
    if (in->eof)
        return false;
    for (;;) {
        ssize_t n = read(in->fd, in->buf, sizeof in->buf);
        if (n > 0) {
            in->pos = 0;
            in->len = (size_t)n;
            return true;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            in->err = errno;
        in->eof = true;
        return false;
    }
}

static bool line_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Appends to the line buffer, which only grows as far as the bytes that
 * actually arrived, and never past GCP_MAX_LINE. */
static bool line_append(gcp_input *in, const unsigned char *p, size_t n)
{
    if (in->line_len + n + 1 > in->line_cap) {
        size_t cap = in->line_cap ? in->line_cap : 4096;
        while (cap < in->line_len + n + 1)
            cap *= 2;
        if (cap > GCP_MAX_LINE + 1)
            cap = GCP_MAX_LINE + 1;
        char *line = realloc(in->line, cap);
        if (line == NULL)
            return false;
        in->line = line;
        in->line_cap = cap;
    }
    memcpy(in->line + in->line_len, p, n);
    in->line_len += n;
    in->line[in->line_len] = '\0';
    return true;
}

/* The line in hand would grow past GCP_MAX_LINE: scans what is held (kept
 * for messages) and the rest of the line as it is read, to its newline or
 * the end of input, in constant memory, into in->scan. Returns 2, or -1
 * (message printed) on a read error. */
static int scan_long_line(gcp_input *in)
{
    gcp_scan_init(&in->scan);
    gcp_scan_feed(&in->scan, in->line, in->line_len);
    for (;;) {
        if (!gcp_in_fill(in)) {
            if (in->err == 0)
                return 2;
            cli_err("gocacheprog: reading stdin: %s", strerror(in->err));
            return -1;
        }
        const char *p = (const char *)in->buf + in->pos;
        size_t avail = in->len - in->pos;
        const char *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        gcp_scan_feed(&in->scan, p, take);
        in->pos += take + (nl ? 1 : 0);
        if (nl)
            return 2;
    }
}

/* Reads the next line that is not blank (gcp_input.h). */
int gcp_read_request_line(gcp_input *in)
{
    in->line_len = 0;
    for (;;) {
        if (!gcp_in_fill(in)) {
            if (in->err != 0) {
                cli_err("gocacheprog: reading stdin: %s", strerror(in->err));
                return -1;
            }
            /* A last line without its newline still counts. */
            if (in->line_len == 0 || line_is_blank(in->line, in->line_len))
                return 0;
            return 1;
        }
        unsigned char *p = in->buf + in->pos;
        size_t avail = in->len - in->pos;
        unsigned char *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        if (in->line_len + take > GCP_MAX_LINE)
            return scan_long_line(in);
        if (take > 0 && !line_append(in, p, take)) {
            cli_err("gocacheprog: out of memory reading a request");
            return -1;
        }
        in->pos += take;
        if (nl == NULL)
            continue;
        in->pos++;
        if (in->line_len > 0 && !line_is_blank(in->line, in->line_len))
            return 1;
        in->line_len = 0;
    }
}
