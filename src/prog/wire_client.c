/*
 * wire_client.c - the client's side of the GOCACHEPROG wire format (the
 * `prog:` store, as the go command's ProgCache): request lines and put
 * bodies out, the handshake and response lines in, every field of an
 * answer checked before it is believed.
 *
 * Pure functions only (src/prog/wire.h): this file must never read, write,
 * touch a store, keep global state or call the library's internals (it is
 * compiled into the command and the fuzzer too). Nothing allocated here is
 * sized by a number that came from the other side.
 */
#include "prog/wire.h"

#include <jansson.h>
#include <openssl/evp.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
