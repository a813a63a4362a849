/*
 * gcp_input.h - `acache gocacheprog`'s stdin: request lines read from a
 * fixed buffer (a put's body is read from the same buffer by the put, see
 * gcp_puts.c), a line too long to hold scanned instead of held.
 */
#ifndef ACACHE_GCP_INPUT_H
#define ACACHE_GCP_INPUT_H

#include "prog/wire.h"

#include <stdbool.h>
#include <stddef.h>

/* Bytes read from stdin at a time; also the most a body holds in memory. */
#define GCP_READ_CHUNK ((size_t)64 << 10)

typedef struct gcp_input {
    int fd;
    size_t pos, len;      /* unread bytes are buf[pos..len) */
    bool eof;
    int err;              /* errno of a failed read, or 0 */
    char *line;           /* the current request line, NUL-terminated */
    size_t line_len, line_cap;
    gcp_scan scan;        /* a line longer than GCP_MAX_LINE, scanned instead */
    unsigned char buf[GCP_READ_CHUNK];
} gcp_input;

/* Makes sure some unread bytes are buffered; false at end of input (or
 * after a read error, with in->err set). */
bool gcp_in_fill(gcp_input *in);

/*
 * Reads the next line that is not blank into in->line. Returns 1 for a
 * line, 2 for a line longer than GCP_MAX_LINE (scanned into in->scan, not
 * held), 0 at end of input, -1 (message printed) when the input cannot be
 * read.
 */
int gcp_read_request_line(gcp_input *in);

#endif
