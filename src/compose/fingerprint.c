/*
 * fingerprint.c - engine fingerprints: a fingerprint (name, version,
 * target, CPU features, compiler flags, extra parts) hashes to a 32-byte
 * id, the one a namespace (namespace.c) is opened with. The host helpers
 * (acache_host_target, acache_cpu_features) are conveniences over
 * os/host.c; nothing here relies on them.
 *
 * This file must never let two different fingerprints share an id (every
 * part is length-prefixed under a fixed domain tag) and never print.
 */
#include "core/error.h"
#include "os/host.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fixed-length domain tag: with the other inputs of fixed length too,
 * concatenation is unambiguous. */
static const char fp_domain[] = "acache fingerprint v1";

/* ------------------------------------------------------------------ */
/* Fingerprint ids                                                      */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lowercase names, sorted, repeats dropped, joined by commas: the one form
 * of a feature set. Returns a malloc'd string or NULL when out of memory. */
static char *canonical_features(const char *text)
{
    const char *seps = ", \t\n";
    size_t len = text ? strlen(text) : 0;
    char *copy = malloc(len + 1), *out = malloc(len + 1);
    char **names = calloc(len / 2 + 1, sizeof *names);
    size_t n = 0, pos = 0;
    char *save = NULL;
    if (!copy || !out || !names) {
        free(out);
        out = NULL;
        goto done;
    }
    for (size_t i = 0; i < len; i++)
        copy[i] = (char)tolower((unsigned char)text[i]);
    copy[len] = '\0';
    for (char *t = strtok_r(copy, seps, &save); t; t = strtok_r(NULL, seps, &save))
        names[n++] = t;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        size_t k = strlen(names[i]);
        if (pos)
            out[pos++] = ',';
        memcpy(out + pos, names[i], k);
        pos += k;
    }
    out[pos] = '\0';
done:
    free(names);
    free(copy);
    return out;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

acache_status acache_fingerprint_id(const acache_fingerprint *fp, acache_id *out)
{
    if (!fp || !out || (fp->nextra && !fp->extra))
        return set_error(ACACHE_EINVAL, "acache_fingerprint_id: NULL argument");
    char *features = canonical_features(fp->cpu_features);
    if (!features)
        return set_error(ACACHE_ENOMEM, "out of memory");
    size_t nparts = 5 + fp->nextra;
    acache_part *parts = calloc(nparts, sizeof *parts);
    acache_status st = ACACHE_OK;
    if (!parts) {
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto out;
    }
    const char *fields[5] = { or_empty(fp->name), or_empty(fp->version), or_empty(fp->target),
                              features, or_empty(fp->flags) };
    for (size_t i = 0; i < 5; i++)
        parts[i] = (acache_part){ fields[i], strlen(fields[i]) };
    for (size_t i = 0; i < fp->nextra; i++)
        parts[5 + i] = fp->extra[i];
    /* key_derive prefixes every part with its length, so no two different
     * fingerprints hash the same bytes. */
    st = acache_key_derive(out, fp_domain, parts, nparts);
out:
    free(parts);
    free(features);
    return st;
}

/* Appends up to 24 characters of s, file-name safe, and a '-'. */
static size_t append_field(char *out, size_t pos, const char *s)
{
    size_t n = 0;
    for (; s && s[n] && n < 24; n++) {
        unsigned char c = (unsigned char)s[n];
        out[pos++] = (isalnum(c) || c == '.' || c == '_' || c == '+') ? (char)c : '_';
    }
    if (n == 0)
        out[pos++] = '_';
    out[pos++] = '-';
    return pos;
}

acache_status acache_fingerprint_string(const acache_fingerprint *fp, char *out, size_t size)
{
    acache_id id;
    char hex[ACACHE_ID_HEX_SIZE];
    if (!out || size < ACACHE_FINGERPRINT_STRING_SIZE)
        return set_error(ACACHE_EINVAL, "acache_fingerprint_string: need %d bytes of room",
                         ACACHE_FINGERPRINT_STRING_SIZE);
    acache_status st = acache_fingerprint_id(fp, &id);
    if (st != ACACHE_OK)
        return st;
    acache_id_to_hex(&id, hex);
    size_t pos = 0; /* at most 3 * 25 + 16 + 1 < 128 */
    pos = append_field(out, pos, fp->name);
    pos = append_field(out, pos, fp->version);
    pos = append_field(out, pos, fp->target);
    memcpy(out + pos, hex, 16);
    out[pos + 16] = '\0';
    return ACACHE_OK;
}

acache_status acache_fingerprint_key(acache_id *out, const acache_id *fingerprint,
                                     const acache_part *parts, size_t nparts)
{
    char hex[ACACHE_ID_HEX_SIZE];
    if (!fingerprint)
        return set_error(ACACHE_EINVAL, "acache_fingerprint_key: NULL fingerprint");
    acache_id_to_hex(fingerprint, hex);
    return acache_key_derive(out, hex, parts, nparts);
}

/* ------------------------------------------------------------------ */
/* The host                                                             */

const char *acache_host_target(void) { return os_host_target(); }

acache_status acache_cpu_features(char *out, size_t size)
{
    const char *names[64];
    if (!out || size < ACACHE_CPU_FEATURES_SIZE)
        return set_error(ACACHE_EINVAL, "acache_cpu_features: need %d bytes of room",
                         ACACHE_CPU_FEATURES_SIZE);
    size_t n = os_host_features(names, sizeof names / sizeof names[0]), pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + pos, size - pos, "%s%s", pos ? "," : "", names[i]);
        if (w < 0 || (size_t)w >= size - pos)
            return set_error(ACACHE_EINVAL, "acache_cpu_features: list too long");
        pos += (size_t)w;
    }
    return ACACHE_OK;
}
