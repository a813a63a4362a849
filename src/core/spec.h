/*
 * spec.h - store spec strings ("scheme:path?key=value&...", spec.c) and
 * the value parsers their options share (sizes, durations, booleans).
 *
 * Rules: parsing only, never opening anything nor reading the
 * environment; an option no backend asked for is refused
 * (spec_check_unused), never ignored; every parser refuses what it does
 * not fully understand rather than guessing.
 */
#ifndef ACACHE_SPEC_H
#define ACACHE_SPEC_H

#include "acache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A parsed "scheme:path?key=value&..." spec. */
typedef struct spec_option {
    char *key;
    char *value;
    bool used;
} spec_option;

typedef struct spec {
    char *scheme;       /* "disk", "mem", ... */
    char *path;         /* everything between ':' and '?' */
    spec_option *opts;
    size_t nopts;
} spec;

acache_status spec_parse(const char *text, spec *out);
void spec_free(spec *s);
/* Returns the option's value (and marks it used), or NULL. */
const char *spec_get(spec *s, const char *key);
/* ACACHE_EINVAL naming the first option nobody asked for. */
acache_status spec_check_unused(const spec *s);
/* Copies text[0..n) into out (size bytes), decoding %XX escapes; false if
 * an escape is bad or it does not fit. For the user and password of a
 * remote's URL. */
bool spec_unescape(const char *text, size_t n, char *out, size_t size);

/* Value parsers shared by all backends. */
acache_status parse_size(const char *text, uint64_t *out);
acache_status parse_duration_ns(const char *text, int64_t *out);
acache_status parse_bool(const char *key, const char *text, bool *out);

#endif
