/*
 * wire_response.c - the GOCACHEPROG server's response lines: the
 * handshake, a miss, an ok, an error, an entry (OutputID, Size, Time,
 * DiskPath), each one JSON object on one line, and Go's time format.
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
#include <time.h>

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
