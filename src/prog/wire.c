/*
 * wire.c - the GOCACHEPROG wire format, both sides: request lines in, put
 * bodies decoded as they stream, response lines out (the server,
 * `acache gocacheprog`); request lines out, put bodies encoded, response
 * lines in (the client, the `prog:` store).
 *
 * Pure functions only: this file must never read, write, touch a store,
 * keep global state or call the library's internals (it is compiled into
 * the command too), so that the fuzzer (fuzz/fuzz_gocacheprog.c) and the
 * unit tests can drive every path. Nothing allocated here is sized by a
 * number that came from the other side.
 */
#include "prog/wire.h"

#include <jansson.h>
#include <openssl/evp.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Length of the standard base64 text of a 32-byte id, with padding. */
#define ID_BASE64_LEN (ACACHE_ID_BASE64_SIZE - 1)

static void set_msg(char msg[GCP_MSG_SIZE], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_msg(char msg[GCP_MSG_SIZE], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, GCP_MSG_SIZE, fmt, ap);
    va_end(ap);
}

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
        set_msg(msg, "%s is not a string", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n != ID_BASE64_LEN) {
        set_msg(msg, "%s must be %d bytes as base64 (%d characters), got %zu characters", key,
                ACACHE_ID_SIZE, ID_BASE64_LEN, n);
        return -1;
    }
    if (acache_id_from_base64(json_string_value(v), n, out) != ACACHE_OK) {
        set_msg(msg, "%s is not valid base64 of %d bytes", key, ACACHE_ID_SIZE);
        return -1;
    }
    return 1;
}

static gcp_command command_of(const char *s, size_t n)
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
        set_msg(msg, "request is not a JSON object");
        return GCP_PARSE_FATAL;
    }
    json_t *jid = json_object_get(root, "ID");
    if (!json_is_integer(jid)) {
        set_msg(msg, "request has no integer ID");
        return GCP_PARSE_FATAL;
    }
    req->id = json_integer_value(jid);
    json_t *jcmd = field(root, "Command");
    if (json_is_string(jcmd))
        req->command = command_of(json_string_value(jcmd), json_string_length(jcmd));
    json_t *jsize = field(root, "BodySize");
    if (jsize != NULL) {
        if (!json_is_integer(jsize)) {
            set_msg(msg, "BodySize is not an integer");
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
        set_msg(msg, "%s without ActionID", what);
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
        set_msg(msg, "put without OutputID or ObjectID");
        return GCP_PARSE_ERR;
    }
    req->has_output = true;
    if (req->body_size < 0) {
        set_msg(msg, "negative BodySize %" PRId64, req->body_size);
        return GCP_PARSE_ERR;
    }
    return GCP_PARSE_OK;
}

/* The fields the request's command needs. */
static gcp_parse_status parse_command(json_t *root, gcp_request *req, char msg[GCP_MSG_SIZE])
{
    json_t *jcmd = field(root, "Command");
    if (jcmd == NULL) {
        set_msg(msg, "request has no Command");
        return GCP_PARSE_ERR;
    }
    if (!json_is_string(jcmd)) {
        set_msg(msg, "Command is not a string");
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
    set_msg(msg, "unknown command \"%s\"", shown);
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
        set_msg(msg, "request is not JSON: %s (column %d)", jerr.text, jerr.column);
        return GCP_PARSE_FATAL;
    }
    gcp_parse_status st = parse_head(root, req, msg);
    if (st == GCP_PARSE_OK)
        st = parse_command(root, req, msg);
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------------ */
/* Scanning a line too long to hold                                     */

enum { SC_KEY, SC_COLON, SC_VALUE, SC_AFTER };   /* phase in the top-level object */
enum { ROLE_NONE, ROLE_KEY, ROLE_VALUE };        /* what the current string is */
enum { KEY_OTHER, KEY_ID, KEY_COMMAND, KEY_SIZE };
enum { VAL_INT, VAL_STRING, VAL_OTHER };

void gcp_scan_init(gcp_scan *sc)
{
    memset(sc, 0, sizeof *sc);
}

/* The value of the current top-level key is known: keep it if it matters. */
static void scan_value(gcp_scan *sc, int kind, int64_t v)
{
    switch (sc->key) {
    case KEY_ID:
        sc->has_id = kind == VAL_INT;
        sc->id = v;
        break;
    case KEY_SIZE:
        sc->size_seen = true;
        sc->size_ok = kind == VAL_INT;
        sc->size = v;
        break;
    case KEY_COMMAND:
        sc->cmd_ok = kind == VAL_STRING && !sc->text_cut;
        memcpy(sc->cmd, sc->text, sc->text_len);
        sc->cmd_len = sc->text_len;
        break;
    }
    sc->phase = SC_AFTER;
}

static void scan_end_number(gcp_scan *sc)
{
    sc->in_num = false;
    bool ok = !sc->num_bad && sc->num_digits > 0;
    int64_t v = (int64_t)sc->num;
    scan_value(sc, ok ? VAL_INT : VAL_OTHER, sc->num_neg ? -v : v);
}

static void scan_end_string(gcp_scan *sc)
{
    sc->in_str = false;
    if (sc->role == ROLE_KEY) {
        sc->key = sc->text_cut ? KEY_OTHER
                : sc->text_len == 2 && !memcmp(sc->text, "ID", 2) ? KEY_ID
                : sc->text_len == 7 && !memcmp(sc->text, "Command", 7) ? KEY_COMMAND
                : sc->text_len == 8 && !memcmp(sc->text, "BodySize", 8) ? KEY_SIZE : KEY_OTHER;
        sc->phase = SC_COLON;
    } else if (sc->role == ROLE_VALUE) {
        scan_value(sc, VAL_STRING, 0);
    }
}

/* One byte inside a string. An escape is kept as its backslash, so an
 * escaped key matches none of the three (the go command sends none). */
static void scan_string_byte(gcp_scan *sc, char c)
{
    if (sc->esc)
        sc->esc = false;
    else if (c == '\\')
        sc->esc = true;
    else if (c == '"') {
        scan_end_string(sc);
        return;
    }
    if (sc->role == ROLE_NONE)
        return;
    if (sc->text_len < sizeof sc->text)
        sc->text[sc->text_len++] = c;
    else
        sc->text_cut = true;
}

/* One byte of a number at the top level; false if it ended the number
 * (the byte is then looked at as structure). */
static bool scan_number_byte(gcp_scan *sc, char c)
{
    if (c >= '0' && c <= '9') {
        unsigned d = (unsigned)(c - '0');
        if (sc->num > ((uint64_t)INT64_MAX - d) / 10)
            sc->num_bad = true;
        else
            sc->num = sc->num * 10 + d;
        sc->num_digits++;
        return true;
    }
    if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        sc->num_bad = true; /* not an integer */
        return true;
    }
    scan_end_number(sc);
    return false;
}

/* One byte outside strings and numbers. */
static void scan_structure(gcp_scan *sc, char c)
{
    bool blank = c == ' ' || c == '\t' || c == '\r';
    bool top_value = sc->depth == 1 && sc->phase == SC_VALUE;
    if (!sc->object || sc->depth == 0) {
        if (blank)
            return;
        if (!sc->object && c == '{') {
            sc->object = true;
            sc->depth = 1;
            sc->phase = SC_KEY;
            return;
        }
        sc->bad = true; /* not an object, or something after it */
        return;
    }
    if (c == '"') {
        sc->in_str = true;
        sc->role = sc->depth == 1 && sc->phase == SC_KEY ? ROLE_KEY
                 : top_value ? ROLE_VALUE : ROLE_NONE;
        sc->text_len = 0;
        sc->text_cut = false;
    } else if (c == '{' || c == '[') {
        if (top_value)
            scan_value(sc, VAL_OTHER, 0);
        if (sc->depth < UINT64_MAX)
            sc->depth++;
    } else if (c == '}' || c == ']') {
        sc->depth--;
    } else if (sc->depth == 1 && c == ':' && sc->phase == SC_COLON) {
        sc->phase = SC_VALUE;
    } else if (sc->depth == 1 && c == ',') {
        sc->phase = SC_KEY;
    } else if (top_value && (c == '-' || (c >= '0' && c <= '9'))) {
        sc->in_num = true;
        sc->num_neg = c == '-';
        sc->num_bad = false;
        sc->num = c == '-' ? 0 : (uint64_t)(c - '0');
        sc->num_digits = c == '-' ? 0 : 1;
    } else if (top_value && !blank) {
        scan_value(sc, VAL_OTHER, 0); /* true, false, null, junk */
    }
}

void gcp_scan_feed(gcp_scan *sc, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !sc->bad; i++) {
        if (sc->in_str)
            scan_string_byte(sc, p[i]);
        else if (!sc->in_num || !scan_number_byte(sc, p[i]))
            scan_structure(sc, p[i]);
    }
}

gcp_parse_status gcp_scan_finish(const gcp_scan *sc, gcp_request *req, char msg[GCP_MSG_SIZE])
{
    gcp_scan end = *sc;
    memset(req, 0, sizeof *req);
    if (end.in_num)
        scan_end_number(&end);
    if (!end.object || end.bad) {
        set_msg(msg, "request line longer than %zu bytes, and not a JSON object", GCP_MAX_LINE);
        return GCP_PARSE_FATAL;
    }
    if (!end.has_id) {
        set_msg(msg, "request line longer than %zu bytes, with no integer ID", GCP_MAX_LINE);
        return GCP_PARSE_FATAL;
    }
    req->id = end.id;
    req->command = end.cmd_ok ? command_of(end.cmd, end.cmd_len) : GCP_CMD_UNKNOWN;
    if (end.size_seen && !end.size_ok && req->command == GCP_CMD_PUT) {
        set_msg(msg, "request line longer than %zu bytes, and its BodySize is not an integer",
                GCP_MAX_LINE);
        return GCP_PARSE_FATAL;
    }
    req->body_size = end.size_seen && end.size_ok ? end.size : 0;
    set_msg(msg, "request line longer than %zu bytes", GCP_MAX_LINE);
    return GCP_PARSE_ERR;
}

bool gcp_request_has_body(const gcp_request *req)
{
    return req->command == GCP_CMD_PUT && req->body_size > 0;
}

/* ------------------------------------------------------------------ */
/* Put bodies                                                           */

enum body_state {
    BODY_LEAD,    /* blank lines before the opening quote */
    BODY_STRING,  /* inside the string */
    BODY_ESCAPE,  /* after a backslash inside the string */
    BODY_TAIL,    /* after the closing quote, before the newline */
    BODY_DONE,
};

struct gcp_body {
    EVP_ENCODE_CTX *ctx;
    enum body_state state;
    bool invalid;
    uint64_t nchars;  /* base64 characters so far, padding included */
    unsigned npad;    /* '=' so far */
};

/* The characters EVP_DecodeUpdate is allowed to see, padding aside: it
 * would otherwise skip whitespace silently and stop at '-'. Padding is
 * checked here too, since EVP's own check depends on how the input was
 * split between calls. */
static inline bool is_base64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

gcp_body *gcp_body_new(void)
{
    gcp_body *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->ctx = EVP_ENCODE_CTX_new();
    if (b->ctx == NULL) {
        free(b);
        return NULL;
    }
    EVP_DecodeInit(b->ctx);
    b->state = BODY_LEAD;
    return b;
}

void gcp_body_free(gcp_body *b)
{
    if (b == NULL)
        return;
    EVP_ENCODE_CTX_free(b->ctx);
    free(b);
}

bool gcp_body_valid(const gcp_body *b)
{
    return b->state == BODY_DONE && !b->invalid;
}

static void decode_run(gcp_body *b, const unsigned char *p, size_t n, unsigned char *out,
                       size_t *outlen)
{
    if (n == 0)
        return;
    /* Data after padding. */
    if (b->npad > 0)
        b->invalid = true;
    b->nchars += n;
    while (n > 0 && !b->invalid) {
        int k = n > 65536 ? 65536 : (int)n;
        int got = 0;
        /* An empty input means "end" to EVP_DecodeUpdate: never pass one. */
        if (EVP_DecodeUpdate(b->ctx, out + *outlen, &got, p, k) < 0)
            b->invalid = true;
        else
            *outlen += (size_t)got;
        p += k;
        n -= (size_t)k;
    }
}

/* One '=': only as the third or fourth character of a quantum, and the
 * third only if the fourth is one too (checked when the string ends). */
static void decode_pad(gcp_body *b, const unsigned char *p, unsigned char *out, size_t *outlen)
{
    if (b->nchars % 4 < 2 || b->npad >= 2) {
        b->invalid = true;
        return;
    }
    b->npad++;
    b->nchars++;
    int got = 0;
    if (!b->invalid && EVP_DecodeUpdate(b->ctx, out + *outlen, &got, p, 1) < 0)
        b->invalid = true;
    else
        *outlen += (size_t)got;
}

static void decode_final(gcp_body *b, unsigned char *out, size_t *outlen)
{
    int got = 0;
    if (b->nchars % 4 != 0)
        b->invalid = true;
    if (b->invalid)
        return;
    if (EVP_DecodeFinal(b->ctx, out + *outlen, &got) < 0)
        b->invalid = true;
    else
        *outlen += (size_t)got;
}

static const char *char_name(unsigned char c, char buf[8])
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "0x%02x", c);
    return buf;
}

gcp_body_status gcp_body_feed(gcp_body *b, const unsigned char *in, size_t len, size_t *used,
                              unsigned char *out, size_t *outlen, char msg[GCP_MSG_SIZE])
{
    size_t i = 0;
    char cb[8];

    *outlen = 0;
    *used = 0;
    if (len > GCP_BODY_FEED_MAX) {
        set_msg(msg, "internal error: body chunk too large");
        return GCP_BODY_BROKEN;
    }
    while (i < len) {
        unsigned char c = in[i];
        switch (b->state) {
        case BODY_LEAD:
            if (c == '"') {
                b->state = BODY_STRING;
            } else if (c != '\n' && c != '\r' && c != ' ' && c != '\t') {
                set_msg(msg, "expected the put body (a JSON string) but found %s",
                        char_name(c, cb));
                return GCP_BODY_BROKEN;
            }
            i++;
            break;
        case BODY_STRING: {
            size_t start = i;
            while (i < len && is_base64_char(in[i]))
                i++;
            decode_run(b, in + start, i - start, out, outlen);
            if (i == len)
                break;
            c = in[i++];
            if (c == '=') {
                decode_pad(b, in + i - 1, out, outlen);
            } else if (c == '"') {
                decode_final(b, out, outlen);
                b->state = BODY_TAIL;
            } else if (c == '\\') {
                b->state = BODY_ESCAPE;
            } else if (c == '\n') {
                set_msg(msg, "the put body line ended before its closing quote");
                return GCP_BODY_BROKEN;
            } else {
                b->invalid = true;
            }
            break;
        }
        case BODY_ESCAPE:
            if (c == '\n') {
                set_msg(msg, "the put body line ended before its closing quote");
                return GCP_BODY_BROKEN;
            }
            /* "\/" is a legal JSON spelling of '/'; any other escape cannot
             * be part of base64. */
            if (c == '/')
                decode_run(b, in + i, 1, out, outlen);
            else
                b->invalid = true;
            b->state = BODY_STRING;
            i++;
            break;
        case BODY_TAIL:
            if (c == '\n') {
                b->state = BODY_DONE;
                *used = i + 1;
                return GCP_BODY_DONE;
            }
            if (c != '\r' && c != ' ' && c != '\t') {
                set_msg(msg, "unexpected %s after the put body", char_name(c, cb));
                return GCP_BODY_BROKEN;
            }
            i++;
            break;
        case BODY_DONE:
            return GCP_BODY_DONE;
        }
    }
    *used = len;
    return GCP_BODY_MORE;
}

gcp_body_status gcp_body_eof(gcp_body *b, char msg[GCP_MSG_SIZE])
{
    switch (b->state) {
    case BODY_TAIL:
        b->state = BODY_DONE;
        return GCP_BODY_DONE;
    case BODY_DONE:
        return GCP_BODY_DONE;
    case BODY_LEAD:
        set_msg(msg, "end of input before the put body");
        return GCP_BODY_BROKEN;
    case BODY_STRING:
    case BODY_ESCAPE:
        break;
    }
    set_msg(msg, "end of input in the middle of the put body");
    return GCP_BODY_BROKEN;
}

/* ------------------------------------------------------------------ */
/* Responses                                                            */

/* Takes obj (NULL allowed: out of memory) and returns its line. */
static char *dump_line(json_t *obj, size_t *len)
{
    char *line = NULL;
    char *s = NULL;

    if (obj == NULL)
        goto out;
    s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL)
        goto out;
    size_t n = strlen(s);
    line = malloc(n + 2);
    if (line == NULL)
        goto out;
    memcpy(line, s, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    if (len != NULL)
        *len = n + 1;
out:
    free(s);
    json_decref(obj);
    return line;
}

/* A response object holding only ID, or NULL. */
static json_t *response(int64_t id)
{
    json_t *obj = json_object();
    if (obj != NULL && json_object_set_new(obj, "ID", json_integer(id)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Sets key to value (taking it) or drops obj: every failure is out of
 * memory and ends in dump_line(NULL). */
static json_t *with(json_t *obj, const char *key, json_t *value)
{
    if (obj == NULL || value == NULL) {
        json_decref(obj);
        json_decref(value);
        return NULL;
    }
    /* json_object_set_new takes value even when it fails. */
    if (json_object_set_new(obj, key, value) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

char *gcp_format_handshake(size_t *len)
{
    json_t *known = json_array();
    if (known != NULL && (json_array_append_new(known, json_string("get")) != 0 ||
                          json_array_append_new(known, json_string("put")) != 0 ||
                          json_array_append_new(known, json_string("close")) != 0)) {
        json_decref(known);
        known = NULL;
    }
    return dump_line(with(response(0), "KnownCommands", known), len);
}

char *gcp_format_miss(int64_t id, size_t *len)
{
    return dump_line(with(response(id), "Miss", json_true()), len);
}

char *gcp_format_ok(int64_t id, size_t *len)
{
    return dump_line(response(id), len);
}

char *gcp_format_err(int64_t id, const char *msg, size_t *len)
{
    /* Messages can quote library errors naming paths; keep them valid
     * UTF-8 whatever they hold. */
    char safe[512];
    size_t n = strlen(msg);
    size_t i = 0;
    for (; i < n && i + 1 < sizeof safe; i++) {
        unsigned char c = (unsigned char)msg[i];
        safe[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    safe[i] = '\0';
    if (safe[0] == '\0')
        snprintf(safe, sizeof safe, "error");
    return dump_line(with(response(id), "Err", json_string(safe)), len);
}

char *gcp_format_entry(int64_t id, const acache_result *res, size_t *len)
{
    char b64[ACACHE_ID_BASE64_SIZE];
    char when[GCP_TIME_SIZE];

    acache_id_to_base64(&res->output_id, b64);
    /* Size is an int64 in Go; a result never comes near the limit. */
    json_int_t size = res->size > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)res->size;
    json_t *obj = with(response(id), "OutputID", json_string(b64));
    obj = with(obj, "Size", json_integer(size));
    if (gcp_format_time(res->time_ns, when))
        obj = with(obj, "Time", json_string(when));
    if (res->path[0] != '\0') {
        /* json_string refuses text that is not UTF-8: such a path cannot be
         * handed to Go, so it is left out (the server answers a miss). */
        json_t *p = json_string(res->path);
        if (p != NULL)
            obj = with(obj, "DiskPath", p);
    }
    return dump_line(obj, len);
}

bool gcp_format_time(int64_t ns, char out[GCP_TIME_SIZE])
{
    char buf[96];
    struct tm tm;
    int64_t sec = ns / 1000000000;
    int64_t frac = ns % 1000000000;

    out[0] = '\0';
    if (frac < 0) {
        frac += 1000000000;
        sec -= 1;
    }
    time_t t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL)
        return false;
    long year = (long)tm.tm_year + 1900;
    if (year < 0 || year > 9999)
        return false;
    int n = snprintf(buf, sizeof buf, "%04ld-%02d-%02dT%02d:%02d:%02d", year, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n < 0 || (size_t)n >= sizeof buf)
        return false;
    if (frac != 0) {
        char digits[16];
        snprintf(digits, sizeof digits, "%09" PRId64, frac);
        size_t d = 9;
        while (d > 0 && digits[d - 1] == '0')
            d--;
        digits[d] = '\0';
        n += snprintf(buf + n, sizeof buf - (size_t)n, ".%s", digits);
    }
    snprintf(buf + n, sizeof buf - (size_t)n, "Z");
    if (strlen(buf) >= GCP_TIME_SIZE)
        return false;
    strcpy(out, buf);
    return true;
}

/* ------------------------------------------------------------------ */
/* The client's side                                                    */

size_t gcp_format_request(char out[GCP_REQUEST_SIZE], int64_t id, const char *cmd,
                          const acache_id *action, const acache_id *output, uint64_t body_size)
{
    char a64[ACACHE_ID_BASE64_SIZE], o64[ACACHE_ID_BASE64_SIZE];
    int n = snprintf(out, GCP_REQUEST_SIZE, "{\"ID\":%" PRId64 ",\"Command\":\"%s\"", id, cmd);
    if (action) {
        acache_id_to_base64(action, a64);
        n += snprintf(out + n, GCP_REQUEST_SIZE - (size_t)n, ",\"ActionID\":\"%s\"", a64);
    }
    if (output) {
        /* Helpers written for Go 1.21-1.23 read ObjectID; later ones OutputID. */
        acache_id_to_base64(output, o64);
        n += snprintf(out + n, GCP_REQUEST_SIZE - (size_t)n,
                      ",\"OutputID\":\"%s\",\"ObjectID\":\"%s\",\"BodySize\":%" PRIu64, o64, o64,
                      body_size);
    }
    n += snprintf(out + n, GCP_REQUEST_SIZE - (size_t)n, "}\n\n");
    return (size_t)n;
}

size_t gcp_body_encode(const unsigned char *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

bool gcp_parse_handshake(const char *line, size_t n, unsigned *known)
{
    json_t *resp = json_loadb(line, n, 0, NULL);
    json_t *id = json_object_get(resp, "ID"), *cmds = json_object_get(resp, "KnownCommands");
    bool ok = json_is_integer(id) && json_integer_value(id) == 0 && json_is_array(cmds);
    size_t i;
    json_t *cmd;
    *known = 0;
    if (ok) {
        json_array_foreach(cmds, i, cmd) {
            const char *c = json_string_value(cmd);
            if (!c)
                continue;
            *known |= strcmp(c, "get") == 0 ? GCP_KNOWS_GET : 0;
            *known |= strcmp(c, "put") == 0 ? GCP_KNOWS_PUT : 0;
            *known |= strcmp(c, "close") == 0 ? GCP_KNOWS_CLOSE : 0;
        }
    }
    json_decref(resp);
    return ok;
}

json_t *gcp_parse_response(const char *line, size_t n, int64_t *id)
{
    json_t *resp = json_loadb(line, n, 0, NULL);
    json_t *jid = json_is_object(resp) ? json_object_get(resp, "ID") : NULL;
    if (!json_is_integer(jid)) {
        json_decref(resp);
        return NULL;
    }
    *id = (int64_t)json_integer_value(jid);
    return resp;
}

const char *gcp_response_err(json_t *resp)
{
    json_t *e = json_object_get(resp, "Err");
    return json_is_string(e) && json_string_length(e) > 0 ? json_string_value(e) : NULL;
}

bool gcp_response_miss(json_t *resp)
{
    return json_is_true(json_object_get(resp, "Miss"));
}

const char *gcp_response_path(json_t *resp)
{
    json_t *path = json_object_get(resp, "DiskPath");
    if (!json_is_string(path) || json_string_value(path)[0] != '/' ||
        json_string_length(path) >= ACACHE_PATH_MAX)
        return NULL;
    return json_string_value(path);
}

gcp_entry_status gcp_parse_entry(json_t *resp, acache_result *res, const char **path)
{
    json_t *out = json_object_get(resp, "OutputID"), *size = json_object_get(resp, "Size");
    json_t *when = json_object_get(resp, "Time");
    if (!json_is_string(out) ||
        acache_id_from_base64(json_string_value(out), json_string_length(out),
                              &res->output_id) != ACACHE_OK ||
        !json_is_integer(size) || json_integer_value(size) < 0)
        return GCP_ENTRY_NO_ID;
    if (!(*path = gcp_response_path(resp)))
        return GCP_ENTRY_NO_PATH;
    res->size = (uint64_t)json_integer_value(size);
    res->time_ns = 0;
    if (json_is_string(when))
        gcp_parse_time(json_string_value(when), &res->time_ns);
    return GCP_ENTRY_OK;
}

static bool two_digits(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return false;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

bool gcp_parse_time(const char *s, int64_t *out)
{
    int y1, y2, mo, d, h, mi, se, zh = 0, zm = 0;
    if (strlen(s) < 20 || !two_digits(s, &y1) || !two_digits(s + 2, &y2) || s[4] != '-' ||
        !two_digits(s + 5, &mo) || s[7] != '-' || !two_digits(s + 8, &d) ||
        (s[10] != 'T' && s[10] != 't') || !two_digits(s + 11, &h) || s[13] != ':' ||
        !two_digits(s + 14, &mi) || s[16] != ':' || !two_digits(s + 17, &se))
        return false;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 9)
                frac = frac * 10 + (*p - '0');
        if (digits == 0)
            return false;
        for (; digits < 9; digits++)
            frac *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && two_digits(p + 1, &zh) && p[3] == ':' &&
               two_digits(p + 4, &zm)) {
        sign = *p == '+' ? 1 : -1;
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    struct tm tm = { .tm_year = y1 * 100 + y2 - 1900, .tm_mon = mo - 1, .tm_mday = d,
                     .tm_hour = h, .tm_min = mi, .tm_sec = se };
    int64_t t = (int64_t)timegm(&tm) - sign * (zh * 3600 + zm * 60);
    if (t < 0)
        return false;
    *out = t * 1000000000 + frac;
    return true;
}
