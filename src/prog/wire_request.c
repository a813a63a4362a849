/*
 * wire_request.c - the GOCACHEPROG server's side of a request line: parsed
 * (a JSON object, or the plain form of a get) into a gcp_request, every
 * field checked (integer ID, command, ids of exactly 32 bytes in base64, a
 * body size that fits), with a message naming what was wrong.
 *
 * Pure functions only (src/prog/wire.h): this file must never read, write,
 * touch a store, keep global state or call the library's internals (it is
 * compiled into the command and the fuzzer too). Nothing allocated here is
 * sized by a number that came from the other side.
 */
#include "prog/wire.h"

#include <jansson.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the standard base64 text of a 32-byte id, with padding. */
#define ID_BASE64_LEN (ACACHE_ID_BASE64_SIZE - 1)

const char *gcp_command_name(gcp_command cmd)
{
    switch (cmd) {
    case GCP_CMD_GET: return "get";
    case GCP_CMD_PUT: return "put";
    case GCP_CMD_CLOSE: return "close";
    case GCP_CMD_UNKNOWN: break;
    }
    return "unknown";
}

/* A field that is absent or null counts as absent, as Go's omitempty
 * leaves empty fields out. */
static json_t *field(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return json_is_null(v) ? NULL : v;
}

/*
 * Reads the id in field key. Returns 1 when present and valid, 0 when
 * absent, -1 (msg set) when present but not a 32-byte base64 id.
 */
static int parse_id(json_t *root, const char *key, acache_id *out, char msg[GCP_MSG_SIZE])
{
    json_t *v = field(root, key);
    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        gcp_set_msg(msg, "%s is not a string", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n != ID_BASE64_LEN) {
        gcp_set_msg(msg, "%s must be %d bytes as base64 (%d characters), got %zu characters", key,
                ACACHE_ID_SIZE, ID_BASE64_LEN, n);
        return -1;
    }
    if (acache_id_from_base64(json_string_value(v), n, out) != ACACHE_OK) {
        gcp_set_msg(msg, "%s is not valid base64 of %d bytes", key, ACACHE_ID_SIZE);
        return -1;
    }
    return 1;
}

gcp_command gcp_command_of(const char *s, size_t n)
{
    if (n == 3 && memcmp(s, "get", 3) == 0)
        return GCP_CMD_GET;
    if (n == 3 && memcmp(s, "put", 3) == 0)
        return GCP_CMD_PUT;
    if (n == 5 && memcmp(s, "close", 5) == 0)
        return GCP_CMD_CLOSE;
    return GCP_CMD_UNKNOWN;
}

/* Copies at most max bytes of s, replacing anything but printable ASCII, so
 * that a message quoting the request stays valid UTF-8 once truncated. */
static void quote_safe(char *dst, size_t dstsize, const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && i + 1 < dstsize; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    dst[i] = '\0';
}

/*
 * The get as the go command writes it, byte for byte:
 *   {"ID":N,"Command":"get","ActionID":"<44 characters of base64>"}
 * then nothing but JSON whitespace. It is most of the requests of a build,
 * so it is read here without building a JSON object; any other line
 * (other fields, another order, escapes, a bad id) is left to jansson,
 * which gives the same answer for the lines read here.
 */
static bool parse_plain_get(const char *line, size_t len, gcp_request *req)
{
    static const char head[] = "{\"ID\":";
    static const char mid[] = ",\"Command\":\"get\",\"ActionID\":\"";
    const char *p = line, *end = line + len;
    if ((size_t)(end - p) < sizeof head - 1 || memcmp(p, head, sizeof head - 1) != 0)
        return false;
    p += sizeof head - 1;
    /* A JSON integer without sign or leading zero, of at most 18 digits:
     * it cannot overflow an int64. */
    int64_t id = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && p - digits < 18)
        id = id * 10 + (*p++ - '0');
    size_t nd = (size_t)(p - digits);
    if (nd == 0 || (p < end && *p >= '0' && *p <= '9') || (nd > 1 && digits[0] == '0'))
        return false;
    if ((size_t)(end - p) < sizeof mid - 1 + ID_BASE64_LEN + 2 ||
        memcmp(p, mid, sizeof mid - 1) != 0)
        return false;
    p += sizeof mid - 1;
    const char *b64 = p;
    p += ID_BASE64_LEN;
    if (p[0] != '"' || p[1] != '}')
        return false;
    for (const char *q = b64; q < p; q++)
        if (*q == '\\' || *q == '"')
            return false;
    for (p += 2; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    if (acache_id_from_base64(b64, ID_BASE64_LEN, &req->action) != ACACHE_OK)
        return false;
    req->id = id;
    req->command = GCP_CMD_GET;
    req->has_action = true;
    return true;
}

/* What every request has: an object, an integer ID, and (on a put, before
 * anything else can be answered) a BodySize that says where the next
 * request starts. Sets req->command when Command is a string. */
static gcp_parse_status parse_head(json_t *root, gcp_request *req, char msg[GCP_MSG_SIZE])
{
    if (!json_is_object(root)) {
        gcp_set_msg(msg, "request is not a JSON object");
        return GCP_PARSE_FATAL;
    }
    json_t *jid = json_object_get(root, "ID");
    if (!json_is_integer(jid)) {
        gcp_set_msg(msg, "request has no integer ID");
        return GCP_PARSE_FATAL;
    }
    req->id = json_integer_value(jid);
    json_t *jcmd = field(root, "Command");
    if (json_is_string(jcmd))
        req->command = gcp_command_of(json_string_value(jcmd), json_string_length(jcmd));
    json_t *jsize = field(root, "BodySize");
    if (jsize != NULL) {
        if (!json_is_integer(jsize)) {
            gcp_set_msg(msg, "BodySize is not an integer");
            return req->command == GCP_CMD_PUT ? GCP_PARSE_FATAL : GCP_PARSE_ERR;
        }
        req->body_size = json_integer_value(jsize);
    }
    return GCP_PARSE_OK;
}

/* The ActionID a get or a put must have. */
static gcp_parse_status parse_action(json_t *root, gcp_request *req, const char *what,
                                     char msg[GCP_MSG_SIZE])
{
    int r = parse_id(root, "ActionID", &req->action, msg);
    if (r < 0)
        return GCP_PARSE_ERR;
    if (r == 0) {
        gcp_set_msg(msg, "%s without ActionID", what);
        return GCP_PARSE_ERR;
    }
    req->has_action = true;
    return GCP_PARSE_OK;
}

static gcp_parse_status parse_put(json_t *root, gcp_request *req, char msg[GCP_MSG_SIZE])
{
    if (parse_action(root, req, "put", msg) != GCP_PARSE_OK)
        return GCP_PARSE_ERR;
    /* Go 1.21-1.23 call it ObjectID, 1.24 sends OutputID (and maybe both),
     * 1.25 only OutputID. */
    int r = parse_id(root, "OutputID", &req->output, msg);
    if (r == 0)
        r = parse_id(root, "ObjectID", &req->output, msg);
    if (r < 0)
        return GCP_PARSE_ERR;
    if (r == 0) {
        gcp_set_msg(msg, "put without OutputID or ObjectID");
        return GCP_PARSE_ERR;
    }
    req->has_output = true;
    if (req->body_size < 0) {
        gcp_set_msg(msg, "negative BodySize %" PRId64, req->body_size);
        return GCP_PARSE_ERR;
    }
    return GCP_PARSE_OK;
}

/* The fields the request's command needs. */
static gcp_parse_status parse_command(json_t *root, gcp_request *req, char msg[GCP_MSG_SIZE])
{
    json_t *jcmd = field(root, "Command");
    if (jcmd == NULL) {
        gcp_set_msg(msg, "request has no Command");
        return GCP_PARSE_ERR;
    }
    if (!json_is_string(jcmd)) {
        gcp_set_msg(msg, "Command is not a string");
        return GCP_PARSE_ERR;
    }
    switch (req->command) {
    case GCP_CMD_GET:
        return parse_action(root, req, "get", msg);
    case GCP_CMD_PUT:
        return parse_put(root, req, msg);
    case GCP_CMD_CLOSE:
        return GCP_PARSE_OK;
    case GCP_CMD_UNKNOWN:
        break;
    }
    char shown[41];
    quote_safe(shown, sizeof shown, json_string_value(jcmd), json_string_length(jcmd));
    gcp_set_msg(msg, "unknown command \"%s\"", shown);
    return GCP_PARSE_ERR;
}

gcp_parse_status gcp_parse_request(const char *line, size_t len, gcp_request *req,
                                   char msg[GCP_MSG_SIZE])
{
    memset(req, 0, sizeof *req);
    msg[0] = '\0';
    if (parse_plain_get(line, len, req))
        return GCP_PARSE_OK;
    memset(req, 0, sizeof *req);
    msg[0] = '\0';

    json_error_t jerr;
    json_t *root = json_loadb(line, len, 0, &jerr);
    if (root == NULL) {
        gcp_set_msg(msg, "request is not JSON: %s (column %d)", jerr.text, jerr.column);
        return GCP_PARSE_FATAL;
    }
    gcp_parse_status st = parse_head(root, req, msg);
    if (st == GCP_PARSE_OK)
        st = parse_command(root, req, msg);
    json_decref(root);
    return st;
}


bool gcp_request_has_body(const gcp_request *req)
{
    return req->command == GCP_CMD_PUT && req->body_size > 0;
}
