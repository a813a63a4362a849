/*
 * wire.h - the GOCACHEPROG wire format, both sides of it, in one place:
 * the server's (cli/gocacheprog.c, `acache gocacheprog`: parsing one
 * request line, decoding a put body as it streams in, formatting response
 * lines) and the client's (prog.c, the `prog:` store, as the go command's
 * ProgCache: formatting request lines, encoding a put body, reading
 * response lines).
 *
 * Everything here is a pure function of its arguments: no reads, no writes,
 * no store, no threads, no library internals (only acache.h's functions), so
 * that the fuzzer and the unit tests can drive it directly and the command
 * can compile it in beside the library (see CMakeLists.txt). The callers own
 * all I/O.
 *
 * Its parts, one concept each: wire_request.c (a request line parsed),
 * wire_scan.c (a line too long to hold, scanned), wire_body.c (a put body
 * decoded as it streams), wire_response.c (the server's response lines),
 * wire_client.c (the client's side).
 */
#ifndef ACACHE_PROG_WIRE_H
#define ACACHE_PROG_WIRE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "acache.h"

#include <jansson.h>

/* Longest request line accepted, newline excluded. A request is a few
 * hundred bytes; anything near this is not the go command talking. */
#define GCP_MAX_LINE ((size_t)1 << 20)

/* Room for a diagnostic produced by the parser. */
#define GCP_MSG_SIZE 256

/* Writes a diagnostic into msg (GCP_MSG_SIZE bytes); the parts of the
 * wire format share it without calling one another. */
static inline void gcp_set_msg(char msg[GCP_MSG_SIZE], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void gcp_set_msg(char msg[GCP_MSG_SIZE], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, GCP_MSG_SIZE, fmt, ap);
    va_end(ap);
}

typedef enum gcp_command {
    GCP_CMD_UNKNOWN = 0,
    GCP_CMD_GET,
    GCP_CMD_PUT,
    GCP_CMD_CLOSE,
} gcp_command;

/* One request, as far as it could be understood. */
typedef struct gcp_request {
    int64_t id;
    gcp_command command;
    bool has_action;
    bool has_output;
    acache_id action;
    acache_id output;     /* OutputID, else ObjectID */
    int64_t body_size;    /* BodySize as sent (0 when absent) */
} gcp_request;

typedef enum gcp_parse_status {
    /* A valid request. */
    GCP_PARSE_OK = 0,
    /* A request with an ID but something wrong in it: answer Err for that ID
     * (msg says what) and go on. req->command and req->body_size are set as
     * far as possible so that the caller can still skip a put's body. */
    GCP_PARSE_ERR = 1,
    /* Not a request at all (not JSON, not an object, no integer ID, a
     * BodySize that makes the framing unknowable): nothing can be answered. */
    GCP_PARSE_FATAL = 2,
} gcp_parse_status;

/*
 * Parses one request line (line[0..len), without its newline; need not be
 * NUL-terminated). msg (GCP_MSG_SIZE bytes) receives the reason for any
 * status but GCP_PARSE_OK.
 */
gcp_parse_status gcp_parse_request(const char *line, size_t len, gcp_request *req,
                                   char msg[GCP_MSG_SIZE]);

/* Whether a body line follows the request (a put with BodySize > 0). */
bool gcp_request_has_body(const gcp_request *req);

/* Name of a command, for messages. */
const char *gcp_command_name(gcp_command cmd);

/* The command named by s[0..n) ("get", "put", "close"), else
 * GCP_CMD_UNKNOWN. */
gcp_command gcp_command_of(const char *s, size_t n);

/* ------------------------------------------------------------------ */
/* Request lines longer than GCP_MAX_LINE                               */

/*
 * A line too long to hold is not parsed but scanned as it streams by, in
 * constant memory: the scan follows the JSON structure (strings, escapes,
 * nesting) and keeps only the top-level ID, Command and BodySize, in
 * whatever order they come (the last of a repeated key wins, as in the
 * parser). So the line can still be answered with Err for its ID, and a
 * put's body skipped, and the helper goes on. The fields are private to
 * gocacheprog_proto.c.
 */
typedef struct gcp_scan {
    bool object, bad;           /* first byte '{'; not an object (or junk after it) */
    bool in_str, esc, in_num;
    int phase, role, key;       /* where in the top-level object; what the text is */
    uint64_t depth;
    char text[16];              /* the current top-level string, cut */
    size_t text_len;
    bool text_cut;
    bool num_neg, num_bad;
    uint64_t num;
    unsigned num_digits;
    bool has_id, size_seen, size_ok, cmd_ok;
    int64_t id, size;
    char cmd[16];
    size_t cmd_len;
} gcp_scan;

void gcp_scan_init(gcp_scan *sc);
/* Scans the next n bytes of the line (no newline among them). */
void gcp_scan_feed(gcp_scan *sc, const char *p, size_t n);
/*
 * After the whole line: GCP_PARSE_ERR with req's id, command and body_size
 * set as far as found and msg saying the line was too long; or
 * GCP_PARSE_FATAL when the line is not a JSON object, has no integer ID, or
 * is a put whose BodySize is not an integer (where the next request starts
 * is unknowable).
 */
gcp_parse_status gcp_scan_finish(const gcp_scan *sc, gcp_request *req, char msg[GCP_MSG_SIZE]);

/* ------------------------------------------------------------------ */
/* Put bodies                                                           */

/*
 * A put body is a JSON string of standard base64 on its own line, after any
 * number of blank lines. gcp_body decodes it incrementally: feed it whatever
 * bytes arrive and it hands back decoded bytes, so nothing is ever held
 * whole. Characters outside the base64 alphabet (the escape \/ is allowed,
 * as JSON encoders may write it) make the body invalid, but the string is
 * still consumed up to its closing quote so that the stream stays in step.
 */
typedef struct gcp_body gcp_body;

typedef enum gcp_body_status {
    GCP_BODY_MORE = 0,  /* every byte fed was used; feed more */
    GCP_BODY_DONE,      /* the body line ended; *used tells where */
    GCP_BODY_BROKEN,    /* the framing is broken: no string, or a newline in it */
} gcp_body_status;

/* Largest input accepted by one gcp_body_feed() call. */
#define GCP_BODY_FEED_MAX ((size_t)1 << 20)
/* Output room gcp_body_feed() needs for n input bytes. */
#define GCP_BODY_OUT_MAX(n) ((n) / 4 * 3 + 128)

/* Returns a new decoder, or NULL when out of memory. */
gcp_body *gcp_body_new(void);
void gcp_body_free(gcp_body *b);

/*
 * Consumes input from in[0..len) (len <= GCP_BODY_FEED_MAX) and writes the
 * bytes it decodes to out (GCP_BODY_OUT_MAX(len) bytes of room), their
 * count in *outlen. *used is how much input was taken: all of it unless the
 * body line ended (DONE) inside it; the rest belongs to the next request.
 * On BROKEN, msg (GCP_MSG_SIZE bytes) says why.
 */
gcp_body_status gcp_body_feed(gcp_body *b, const unsigned char *in, size_t len, size_t *used,
                              unsigned char *out, size_t *outlen, char msg[GCP_MSG_SIZE]);

/*
 * The input ended. DONE if the closing quote had been seen (a missing final
 * newline is forgiven), else BROKEN with msg set.
 */
gcp_body_status gcp_body_eof(gcp_body *b, char msg[GCP_MSG_SIZE]);

/* After DONE: whether the string was valid base64. */
bool gcp_body_valid(const gcp_body *b);

/* ------------------------------------------------------------------ */
/* Responses                                                            */

/*
 * Each formatter returns one response line ending in "\n" (NUL-terminated,
 * its length in *len unless len is NULL) in a malloc'd buffer the caller
 * frees, or NULL when out of memory.
 */

/* {"ID":0,"KnownCommands":["get","put","close"]} */
char *gcp_format_handshake(size_t *len);
/* {"ID":n,"Miss":true} */
char *gcp_format_miss(int64_t id, size_t *len);
/* {"ID":n,"Err":"msg"} */
char *gcp_format_err(int64_t id, const char *msg, size_t *len);
/* {"ID":n} */
char *gcp_format_ok(int64_t id, size_t *len);
/*
 * A get hit or a committed put: {"ID":n,"OutputID":"..","Size":N,
 * "Time":"..","DiskPath":".."}. Time is left out when res->time_ns cannot
 * be written as an RFC 3339 time, DiskPath when res->path is empty.
 */
char *gcp_format_entry(int64_t id, const acache_result *res, size_t *len);

/*
 * Writes ns (since the Unix epoch) as RFC 3339 with nanoseconds in UTC, as
 * Go's time.RFC3339Nano: "2006-01-02T15:04:05.999999999Z", trailing zeros
 * of the fraction dropped. Returns false (out = "") for a year outside
 * 0000..9999, which Go would refuse to parse. out needs 36 bytes.
 */
#define GCP_TIME_SIZE 36
bool gcp_format_time(int64_t ns, char out[GCP_TIME_SIZE]);

/* ------------------------------------------------------------------ */
/* The client's side: requests out, put bodies encoded, responses in     */

/* Room for one request line (ids as base64, the command, an integer). */
#define GCP_REQUEST_SIZE 512

/*
 * Writes request id for cmd into out: {"ID":id,"Command":"cmd"} with
 * "ActionID" when action is given and, when output is given, "OutputID",
 * "ObjectID" (the same id, for helpers written for Go 1.21-1.23) and
 * "BodySize"; then a newline and a blank line. Returns its length.
 */
size_t gcp_format_request(char out[GCP_REQUEST_SIZE], int64_t id, const char *cmd,
                          const acache_id *action, const acache_id *output, uint64_t body_size);

/* A put body on the wire: GCP_BODY_OPEN, then the bytes as standard base64
 * encoded GCP_BODY_CHUNK at a time (a multiple of 3, so that the pieces
 * join into one base64 string), then GCP_BODY_CLOSE. */
#define GCP_BODY_OPEN "\""
#define GCP_BODY_CLOSE "\"\n"
#define GCP_BODY_CHUNK ((size_t)48 << 10)
/* Output room gcp_body_encode() needs for n <= GCP_BODY_CHUNK bytes. */
#define GCP_BODY_ENCODED_SIZE(n) (((n) + 2) / 3 * 4 + 1)
/* Encodes in[0..n) as base64 into out; returns the characters written. */
size_t gcp_body_encode(const unsigned char *in, size_t n, char *out);

/* Bits of gcp_parse_handshake's *known. */
#define GCP_KNOWS_GET 1u
#define GCP_KNOWS_PUT 2u
#define GCP_KNOWS_CLOSE 4u

/* Whether line[0..n) is {"ID":0,"KnownCommands":[...]}; *known gets the
 * commands listed that a client can use. */
bool gcp_parse_handshake(const char *line, size_t n, unsigned *known);

/* A response line: an object with an integer ID (in *id), which the
 * caller owns (json_decref), or NULL when the line is not a response. */
json_t *gcp_parse_response(const char *line, size_t n, int64_t *id);

/* A response's non-empty "Err", or NULL. */
const char *gcp_response_err(json_t *resp);
/* Whether a response says "Miss":true. */
bool gcp_response_miss(json_t *resp);
/* A response's DiskPath when it is absolute and shorter than
 * ACACHE_PATH_MAX, else NULL. Valid as long as resp. */
const char *gcp_response_path(json_t *resp);

typedef enum gcp_entry_status {
    GCP_ENTRY_OK = 0,
    GCP_ENTRY_NO_ID,    /* no valid OutputID and Size */
    GCP_ENTRY_NO_PATH,  /* no absolute DiskPath */
} gcp_entry_status;

/*
 * A get's hit: OutputID into res->output_id, then Size, Time (0 when absent
 * or not RFC 3339) into res, and the DiskPath into *path (valid as long as
 * resp). Nothing in res is to be trusted until the file is checked.
 */
gcp_entry_status gcp_parse_entry(json_t *resp, acache_result *res, const char **path);

/* RFC 3339 ("2006-01-02T15:04:05.999999999Z07:00") to ns since the epoch;
 * false for anything else or a time before 1970. */
bool gcp_parse_time(const char *s, int64_t *out);

#endif
