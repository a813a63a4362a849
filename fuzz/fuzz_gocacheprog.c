/*
 * fuzz_gocacheprog.c - libFuzzer target over the GOCACHEPROG wire format
 * (src/prog/wire.h, wire_*.c): request lines, put bodies, response lines.
 *
 * The first input byte picks the mode. Requests: whatever the line, the
 * parser must return one of its three statuses with a message when it
 * refuses, and anything it accepts must format into a response; the scan
 * of an over-long line must come to the same verdict whether it is fed
 * whole or in pieces, and answer only with an error or a fatal status. Bodies:
 * the decoder must never write past its documented output bound, and
 * feeding the same bytes in different pieces must give the same result.
 * Never reads or writes a file; never touches a store.
 */
#include "prog/wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* A line must be one JSON object and a newline, and nothing else. */
static void check_line(char *line, int64_t id)
{
    CHECK(line != NULL);
    size_t n = strlen(line);
    CHECK(n >= 2 && line[0] == '{' && line[n - 2] == '}' && line[n - 1] == '\n');
    CHECK(memchr(line, '\n', n - 1) == NULL);
    char want[40];
    snprintf(want, sizeof want, "{\"ID\":%lld", (long long)id);
    CHECK(strncmp(line, want, strlen(want)) == 0);
    free(line);
}

/* Scans data fed in pieces of step bytes. */
static gcp_parse_status scan_in_pieces(const uint8_t *data, size_t size, size_t step,
                                       gcp_request *req, char *msg)
{
    gcp_scan sc;
    gcp_scan_init(&sc);
    for (size_t at = 0; at < size; at += step)
        gcp_scan_feed(&sc, (const char *)data + at, size - at < step ? size - at : step);
    return gcp_scan_finish(&sc, req, msg);
}

static void fuzz_scan(const uint8_t *data, size_t size)
{
    gcp_request whole, pieces;
    char msg[GCP_MSG_SIZE], msg2[GCP_MSG_SIZE];
    size_t step = size ? (size_t)data[0] % 7 + 1 : 1;
    gcp_parse_status a = scan_in_pieces(data, size, size ? size : 1, &whole, msg);
    gcp_parse_status b = scan_in_pieces(data, size, step, &pieces, msg2);
    CHECK(a == GCP_PARSE_ERR || a == GCP_PARSE_FATAL);
    CHECK(a == b && strcmp(msg, msg2) == 0 && msg[0] != '\0');
    if (a == GCP_PARSE_ERR) {
        CHECK(whole.id == pieces.id && whole.command == pieces.command &&
              whole.body_size == pieces.body_size);
        check_line(gcp_format_err(whole.id, msg, NULL), whole.id);
    }
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    fuzz_scan(data, size);
    gcp_request req;
    char msg[GCP_MSG_SIZE];
    gcp_parse_status st = gcp_parse_request((const char *)data, size, &req, msg);

    CHECK(st == GCP_PARSE_OK || st == GCP_PARSE_ERR || st == GCP_PARSE_FATAL);
    if (st != GCP_PARSE_OK)
        CHECK(msg[0] != '\0');
    if (st == GCP_PARSE_FATAL)
        return;
    if (st == GCP_PARSE_OK) {
        CHECK(req.command != GCP_CMD_UNKNOWN);
        if (req.command == GCP_CMD_GET)
            CHECK(req.has_action);
        if (req.command == GCP_CMD_PUT)
            CHECK(req.has_action && req.has_output && req.body_size >= 0);
    }
    CHECK(!gcp_request_has_body(&req) || (req.command == GCP_CMD_PUT && req.body_size > 0));
    check_line(gcp_format_err(req.id, msg, NULL), req.id);
    check_line(gcp_format_miss(req.id, NULL), req.id);
    check_line(gcp_format_ok(req.id, NULL), req.id);

    acache_result res;
    memset(&res, 0, sizeof res);
    res.output_id = req.output;
    res.size = (uint64_t)req.body_size;
    res.time_ns = req.id;
    /* The request's bytes as a path: anything, including non-UTF-8. */
    size_t n = size < sizeof res.path - 2 ? size : sizeof res.path - 2;
    res.path[0] = '/';
    memcpy(res.path + 1, data, n);
    res.path[n + 1] = '\0';
    check_line(gcp_format_entry(req.id, &res, NULL), req.id);
}

typedef struct body_result {
    gcp_body_status st;
    bool valid;
    size_t used;
    size_t len;
    unsigned char *out;
} body_result;

/* Decodes data fed in pieces of step bytes, then end of input. */
static body_result decode(const uint8_t *data, size_t size, size_t step)
{
    body_result r = {GCP_BODY_MORE, false, 0, 0, malloc(GCP_BODY_OUT_MAX(size) + 1)};
    unsigned char *chunk_out = malloc(GCP_BODY_OUT_MAX(step));
    gcp_body *b = gcp_body_new();
    char msg[GCP_MSG_SIZE];
    CHECK(r.out != NULL && chunk_out != NULL && b != NULL);

    while (r.used < size && r.st == GCP_BODY_MORE) {
        size_t k = size - r.used < step ? size - r.used : step;
        size_t used = 0, outlen = 0;
        r.st = gcp_body_feed(b, data + r.used, k, &used, chunk_out, &outlen, msg);
        CHECK(used <= k);
        CHECK(outlen <= GCP_BODY_OUT_MAX(k));
        CHECK(r.st != GCP_BODY_MORE || used == k);
        CHECK(r.len + outlen <= GCP_BODY_OUT_MAX(size));
        memcpy(r.out + r.len, chunk_out, outlen);
        r.len += outlen;
        r.used += used;
    }
    if (r.st == GCP_BODY_MORE)
        r.st = gcp_body_eof(b, msg);
    r.valid = r.st == GCP_BODY_DONE && gcp_body_valid(b);
    gcp_body_free(b);
    free(chunk_out);
    return r;
}

static void fuzz_body(const uint8_t *data, size_t size)
{
    if (size < 1 || size > GCP_BODY_FEED_MAX)
        return;
    size_t step = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    body_result whole = decode(data, size, size ? size : 1);
    body_result piecewise = decode(data, size, step);
    CHECK(whole.st == piecewise.st);
    if (whole.st == GCP_BODY_DONE) {
        CHECK(whole.used == piecewise.used);
        CHECK(whole.valid == piecewise.valid);
        if (whole.valid)
            CHECK(whole.len == piecewise.len && memcmp(whole.out, piecewise.out, whole.len) == 0);
    }
    free(whole.out);
    free(piecewise.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_body(data + 1, size - 1);
    else
        fuzz_request(data + 1, size - 1);
    return 0;
}
