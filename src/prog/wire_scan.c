/*
 * wire_scan.c - a request line too long to hold (past GCP_MAX_LINE),
 * scanned as it streams by: only its top-level ID, Command and BodySize
 * are kept, so that the server can answer that ID with an error and skip
 * the put's body, never holding the line.
 *
 * Pure functions only (src/prog/wire.h): this file must never read, write,
 * touch a store, keep global state or call the library's internals (it is
 * compiled into the command and the fuzzer too). Nothing allocated here is
 * sized by a number that came from the other side.
 */
#include "prog/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        gcp_set_msg(msg, "request line longer than %zu bytes, and not a JSON object", GCP_MAX_LINE);
        return GCP_PARSE_FATAL;
    }
    if (!end.has_id) {
        gcp_set_msg(msg, "request line longer than %zu bytes, with no integer ID", GCP_MAX_LINE);
        return GCP_PARSE_FATAL;
    }
    req->id = end.id;
    req->command = end.cmd_ok ? gcp_command_of(end.cmd, end.cmd_len) : GCP_CMD_UNKNOWN;
    if (end.size_seen && !end.size_ok && req->command == GCP_CMD_PUT) {
        gcp_set_msg(msg, "request line longer than %zu bytes, and its BodySize is not an integer",
                GCP_MAX_LINE);
        return GCP_PARSE_FATAL;
    }
    req->body_size = end.size_seen && end.size_ok ? end.size : 0;
    gcp_set_msg(msg, "request line longer than %zu bytes", GCP_MAX_LINE);
    return GCP_PARSE_ERR;
}
