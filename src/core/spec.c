/*
 * spec.c - parsing of store spec strings ("scheme:path?key=value&...") and
 * of the sizes and durations their options carry. It only parses: it never
 * opens anything and never reads the environment.
 */
#include "core/error.h"
#include "core/spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void spec_free(spec *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nopts; i++) {
        free(s->opts[i].key);
        free(s->opts[i].value);
    }
    free(s->opts);
    free(s->scheme);
    free(s->path);
    memset(s, 0, sizeof *s);
}

acache_status spec_parse(const char *text, spec *out)
{
    acache_status st = ACACHE_OK;
    memset(out, 0, sizeof *out);
    if (!text || !*text)
        return set_error(ACACHE_EINVAL, "empty store spec");

    const char *colon = strchr(text, ':');
    const char *rest;
    if (text[0] == '/' || text[0] == '.') {
        out->scheme = strdup("disk");
        rest = text;
    } else if (colon) {
        out->scheme = strndup(text, (size_t)(colon - text));
        rest = colon + 1;
    } else {
        return set_error(ACACHE_EINVAL, "store spec '%s': want SCHEME:PATH?OPTIONS, e.g. disk:/var/cache/acache", text);
    }
    const char *q = strchr(rest, '?');
    out->path = q ? strndup(rest, (size_t)(q - rest)) : strdup(rest);
    if (!out->scheme || !out->path) {
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto fail;
    }
    while (q && *q) {
        const char *start = q + 1;
        const char *end = strchr(start, '&');
        if (!end)
            end = start + strlen(start);
        if (end > start) {
            const char *eq = memchr(start, '=', (size_t)(end - start));
            if (!eq || eq == start) {
                st = set_error(ACACHE_EINVAL, "store spec '%s': option '%.*s' is not KEY=VALUE",
                               text, (int)(end - start), start);
                goto fail;
            }
            spec_option *grown = realloc(out->opts, (out->nopts + 1) * sizeof *grown);
            if (!grown) {
                st = set_error(ACACHE_ENOMEM, "out of memory");
                goto fail;
            }
            out->opts = grown;
            spec_option *o = &out->opts[out->nopts++];
            o->key = strndup(start, (size_t)(eq - start));
            o->value = strndup(eq + 1, (size_t)(end - eq - 1));
            o->used = false;
            if (!o->key || !o->value) {
                st = set_error(ACACHE_ENOMEM, "out of memory");
                goto fail;
            }
        }
        q = *end ? end : NULL;
    }
    return ACACHE_OK;
fail:
    spec_free(out);
    return st;
}

const char *spec_get(spec *s, const char *key)
{
    const char *value = NULL;
    for (size_t i = 0; i < s->nopts; i++) {
        if (strcmp(s->opts[i].key, key) == 0) {
            s->opts[i].used = true;
            value = s->opts[i].value; /* the last one wins */
        }
    }
    return value;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool spec_unescape(const char *text, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(text[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(text[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= size)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

acache_status spec_check_unused(const spec *s)
{
    for (size_t i = 0; i < s->nopts; i++)
        if (!s->opts[i].used)
            return set_error(ACACHE_EINVAL, "%s store: unknown option '%s'", s->scheme,
                             s->opts[i].key);
    return ACACHE_OK;
}

/* Parses "<digits>[unit]" where unit is looked up in units/scales. */
static acache_status parse_scaled(const char *what, const char *text, const char *units,
                                  const uint64_t *scales, uint64_t dflt_scale, uint64_t *out)
{
    if (!text || !isdigit((unsigned char)text[0]))
        return set_error(ACACHE_EINVAL, "invalid %s '%s'", what, text ? text : "");
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno)
        return set_error(ACACHE_EINVAL, "invalid %s '%s': too large", what, text);
    uint64_t scale = dflt_scale;
    if (*end) {
        const char *u = strchr(units, toupper((unsigned char)*end));
        if (!u || !*u || end[1] != '\0')
            return set_error(ACACHE_EINVAL, "invalid %s '%s': unknown unit (use %s)", what, text,
                             units);
        scale = scales[u - units];
    }
    if (scale && n > UINT64_MAX / scale)
        return set_error(ACACHE_EINVAL, "invalid %s '%s': too large", what, text);
    *out = (uint64_t)n * scale;
    return ACACHE_OK;
}

acache_status parse_size(const char *text, uint64_t *out)
{
    static const uint64_t scales[] = { 1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40 };
    return parse_scaled("size", text, "KMGT", scales, 1, out);
}

acache_status parse_duration_ns(const char *text, int64_t *out)
{
    static const uint64_t sec = 1000000000ull;
    static const uint64_t scales[] = { sec, 60 * sec, 3600 * sec, 86400 * sec };
    uint64_t ns = 0;
    /* "300ms" is the one two-letter unit. */
    size_t len = text ? strlen(text) : 0;
    if (len > 2 && strcmp(text + len - 2, "ms") == 0) {
        char buf[32];
        if (len - 2 >= sizeof buf)
            return set_error(ACACHE_EINVAL, "invalid duration '%s'", text);
        memcpy(buf, text, len - 2);
        buf[len - 2] = '\0';
        acache_status st = parse_scaled("duration", buf, "", scales, 1000000ull, &ns);
        if (st != ACACHE_OK)
            return set_error(st, "invalid duration '%s'", text);
    } else {
        acache_status st = parse_scaled("duration", text, "SMHD", scales, sec, &ns);
        if (st != ACACHE_OK)
            return st;
    }
    if (ns > INT64_MAX)
        return set_error(ACACHE_EINVAL, "invalid duration '%s': too large", text);
    *out = (int64_t)ns;
    return ACACHE_OK;
}

acache_status parse_bool(const char *key, const char *text, bool *out)
{
    if (!strcmp(text, "on") || !strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes"))
        *out = true;
    else if (!strcmp(text, "off") || !strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no"))
        *out = false;
    else
        return set_error(ACACHE_EINVAL, "option %s: want on or off, got '%s'", key, text);
    return ACACHE_OK;
}

acache_status acache_parse_size(const char *text, uint64_t *out)
{
    if (!out)
        return set_error(ACACHE_EINVAL, "acache_parse_size: NULL argument");
    return parse_size(text, out);
}

acache_status acache_parse_duration(const char *text, int64_t *ns)
{
    if (!ns)
        return set_error(ACACHE_EINVAL, "acache_parse_duration: NULL argument");
    return parse_duration_ns(text, ns);
}
