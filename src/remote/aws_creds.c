/*
 * aws_creds.c - AWS credentials, region and endpoint from the environment
 * and the shared files, in the order aws_creds.h gives (that of the AWS
 * CLI and SDKs), each value with the name of where it came from.
 *
 * The files are INI as the AWS tools write them: [section] headers, `key =
 * value` lines (keys in any case), whole-line comments starting with # or
 * ;, and indented lines (nested settings such as `s3 =` blocks), which are
 * skipped. Anything else is refused with the file and line number.
 *
 * It must never put a secret or a token (or a line of a file, which may
 * hold one) in a message, must not read more than FILE_MAX bytes of a
 * file, and must never touch the network (instance metadata and web
 * identity are not sources here).
 */
#include "remote/aws_creds.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Larger files are refused: no allocation sized by what a file says. */
#define FILE_MAX ((size_t)1 << 20)

/* What a section of an INI file is asked for. */
typedef struct ini_want {
    const char *key;
    char *out;
    size_t size;
    bool found;
} ini_want;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Copies value into dst; what names it in the error (never the value). */
static acache_status copy_value(char *dst, size_t size, const char *value, size_t len,
                                const char *what)
{
    if (len >= size)
        return set_error(ACACHE_EINVAL, "%s is too long (at most %zu bytes)", what, size - 1);
    memcpy(dst, value, len);
    dst[len] = '\0';
    return ACACHE_OK;
}

/* Reads the whole file into a NUL-terminated buffer; *buf NULL (and OK)
 * when there is no such file. */
static acache_status slurp(const char *path, char **buf)
{
    *buf = NULL;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT || errno == ENOTDIR ? ACACHE_OK
                                                  : set_errno_error(errno, "AWS file %s", path);
    char *b = malloc(FILE_MAX + 1);
    size_t n = b ? fread(b, 1, FILE_MAX + 1, f) : 0;
    acache_status st = ACACHE_OK;
    if (!b)
        st = set_error(ACACHE_ENOMEM, "out of memory");
    else if (ferror(f))
        st = set_errno_error(EIO, "AWS file %s", path);
    else if (n > FILE_MAX)
        st = set_error(ACACHE_EINVAL, "AWS file %s is larger than %zu bytes", path, FILE_MAX);
    fclose(f);
    if (st != ACACHE_OK) {
        free(b);
        return st;
    }
    b[n] = '\0';
    *buf = b;
    return ACACHE_OK;
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* Whether the header text [s, e) (brackets removed, trimmed) names the
 * wanted section: "NAME" exactly, or, with `profile` set, "profile NAME". */
static bool section_is(const char *s, const char *e, const char *name, bool profile)
{
    size_t len = (size_t)(e - s), n = strlen(name);
    if (profile && len > 8 && strncmp(s, "profile", 7) == 0 && isspace((unsigned char)s[7])) {
        s += 8;
        trim(&s, &e);
        len = (size_t)(e - s);
    }
    return len == n && memcmp(s, name, n) == 0;
}

/* One `key = value` line of the wanted section. */
static acache_status ini_value(const char *s, const char *e, const char *path, unsigned lineno,
                               ini_want *want, size_t nwant)
{
    const char *eq = memchr(s, '=', (size_t)(e - s));
    const char *ks = s, *ke = eq ? eq : e;
    trim(&ks, &ke);
    if (!eq || ks == ke)
        return set_error(ACACHE_EINVAL, "AWS file %s: line %u is not 'key = value'", path, lineno);
    const char *vs = eq + 1, *ve = e;
    trim(&vs, &ve);
    for (size_t i = 0; i < nwant; i++) {
        if (strlen(want[i].key) != (size_t)(ke - ks) ||
            strncasecmp(ks, want[i].key, (size_t)(ke - ks)) != 0)
            continue;
        char what[PATH_MAX + 64];
        snprintf(what, sizeof what, "%s in %s (line %u)", want[i].key, path, lineno);
        acache_status st = copy_value(want[i].out, want[i].size, vs, (size_t)(ve - vs), what);
        if (st != ACACHE_OK)
            return st;
        want[i].found = true;
    }
    return ACACHE_OK;
}

/*
 * Looks up the keys of want in section `name` of the INI file at path
 * (with `profile`: the config file's "[profile NAME]", or "[default]").
 * *found says whether the section exists; a missing file has none.
 */
static acache_status ini_read(const char *path, const char *name, bool profile, ini_want *want,
                              size_t nwant, bool *found)
{
    char *buf;
    *found = false;
    acache_status st = slurp(path, &buf);
    if (st != ACACHE_OK || !buf)
        return st;
    bool in = false;
    unsigned lineno = 0;
    for (char *line = buf; line && st == ACACHE_OK; lineno++) {
        char *nl = strchr(line, '\n');
        const char *s = line, *e = nl ? nl : line + strlen(line);
        line = nl ? nl + 1 : NULL;
        bool indented = s < e && (*s == ' ' || *s == '\t');
        trim(&s, &e);
        if (s == e || *s == '#' || *s == ';' || indented)
            continue;
        if (*s == '[') {
            if (e[-1] != ']' || e - s < 3) {
                st = set_error(ACACHE_EINVAL, "AWS file %s: line %u: a section header wants "
                                              "'[NAME]'", path, lineno + 1);
                break;
            }
            const char *hs = s + 1, *he = e - 1;
            trim(&hs, &he);
            in = section_is(hs, he, name, profile);
            *found |= in;
            continue;
        }
        if (in)
            st = ini_value(s, e, path, lineno + 1, want, nwant);
        else if (!memchr(s, '=', (size_t)(e - s)))
            st = set_error(ACACHE_EINVAL, "AWS file %s: line %u is not 'key = value'", path,
                           lineno + 1);
    }
    free(buf);
    return st;
}

/* The path in variable var, else ~/.aws/name; "" when neither is known. */
static acache_status file_path(const char *var, const char *name, char *out, size_t size)
{
    const char *p = env(var), *home = env("HOME");
    int n = p ? snprintf(out, size, "%s", p)
              : home ? snprintf(out, size, "%s/.aws/%s", home, name) : snprintf(out, size, "%s", "");
    if (n < 0 || (size_t)n >= size)
        return set_error(ACACHE_EINVAL, "the path of the AWS %s file is too long", name);
    return ACACHE_OK;
}

static acache_status keys_from_env(aws_creds *c)
{
    const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
    const char *token = env("AWS_SESSION_TOKEN");
    acache_status st;
    if (!id && !secret)
        return ACACHE_OK;
    if (!id || !secret)
        return set_error(ACACHE_EINVAL, "%s is set but %s is not", id ? "AWS_ACCESS_KEY_ID"
                         : "AWS_SECRET_ACCESS_KEY", id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    if ((st = copy_value(c->key_id, sizeof c->key_id, id, strlen(id), "AWS_ACCESS_KEY_ID")) ||
        (st = copy_value(c->secret, sizeof c->secret, secret, strlen(secret),
                         "AWS_SECRET_ACCESS_KEY")) ||
        (token && (st = copy_value(c->token, sizeof c->token, token, strlen(token),
                                   "AWS_SESSION_TOKEN"))))
        return st;
    c->have_keys = true;
    snprintf(c->source, sizeof c->source, "environment (AWS_ACCESS_KEY_ID%s)",
             token ? ", AWS_SESSION_TOKEN" : "");
    return ACACHE_OK;
}

/* Keys of profile in one file (credentials: [NAME]; config: [profile
 * NAME]); also its region when region is given. */
static acache_status keys_from_file(aws_creds *c, const char *path, const char *profile,
                                    bool config, char *region, bool *found)
{
    ini_want w[] = {
        { "aws_access_key_id", c->key_id, sizeof c->key_id, false },
        { "aws_secret_access_key", c->secret, sizeof c->secret, false },
        { "aws_session_token", c->token, sizeof c->token, false },
        { "region", region, AWS_REGION_MAX, false },
    };
    size_t nw = region ? 4 : 3;
    acache_status st = *path ? ini_read(path, profile, config, c->have_keys ? w + 3 : w,
                                        c->have_keys ? nw - 3 : nw, found)
                             : ACACHE_OK;
    if (st != ACACHE_OK || c->have_keys)
        return st;
    if (w[0].found != w[1].found)
        return set_error(ACACHE_EINVAL, "AWS profile %s in %s has %s but no %s", profile, path,
                         w[0].found ? "aws_access_key_id" : "aws_secret_access_key",
                         w[0].found ? "aws_secret_access_key" : "aws_access_key_id");
    if (w[0].found) {
        c->have_keys = true;
        snprintf(c->source, sizeof c->source, "profile %.200s in %s", profile, path);
    } else {
        c->token[0] = '\0';   /* a token alone is not a credential */
    }
    return ACACHE_OK;
}

/* Region and endpoint: the environment first, then the profile's region. */
static acache_status region_and_endpoint(aws_creds *c, const char *profile_region,
                                         const char *conf)
{
    const char *v, *which = NULL;
    acache_status st;
    if ((v = env(which = "AWS_REGION")) || (v = env(which = "AWS_DEFAULT_REGION"))) {
        if ((st = copy_value(c->region, sizeof c->region, v, strlen(v), which)))
            return st;
        snprintf(c->region_source, sizeof c->region_source, "%s", which);
    } else if (profile_region[0]) {
        snprintf(c->region, sizeof c->region, "%s", profile_region);
        snprintf(c->region_source, sizeof c->region_source, "profile %.200s in %s",
                 env("AWS_PROFILE") ? env("AWS_PROFILE") : "default", conf);
    } else {
        snprintf(c->region, sizeof c->region, "us-east-1");
        snprintf(c->region_source, sizeof c->region_source, "default");
    }
    if ((v = env(which = "AWS_ENDPOINT_URL_S3")) || (v = env(which = "AWS_ENDPOINT_URL"))) {
        if ((st = copy_value(c->endpoint, sizeof c->endpoint, v, strlen(v), which)))
            return st;
        snprintf(c->endpoint_source, sizeof c->endpoint_source, "%s", which);
    }
    return ACACHE_OK;
}

acache_status aws_creds_find(aws_creds *c)
{
    char cred_path[PATH_MAX], conf_path[PATH_MAX], region[AWS_REGION_MAX] = "";
    const char *profile = env("AWS_PROFILE");
    bool in_creds = false, in_conf = false;
    memset(c, 0, sizeof *c);
    acache_status st;
    if ((st = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials", cred_path,
                        sizeof cred_path)) ||
        (st = file_path("AWS_CONFIG_FILE", "config", conf_path, sizeof conf_path)))
        return st;
    if ((st = keys_from_env(c)) ||
        (st = keys_from_file(c, cred_path, profile ? profile : "default", false, NULL,
                             &in_creds)) ||
        (st = keys_from_file(c, conf_path, profile ? profile : "default", true, region,
                             &in_conf)))
        goto fail;
    if (profile && !in_creds && !in_conf && !c->source[0]) {
        st = set_error(ACACHE_EINVAL, "AWS_PROFILE names profile %s, which is in neither %s "
                                      "nor %s", profile, cred_path[0] ? cred_path : "(no file)",
                       conf_path[0] ? conf_path : "(no file)");
        goto fail;
    }
    if (!c->have_keys)
        snprintf(c->source, sizeof c->source, "none (anonymous)");
    if ((st = region_and_endpoint(c, region, conf_path)))
        goto fail;
    return ACACHE_OK;
fail:
    aws_creds_wipe(c);
    return st;
}

void aws_creds_wipe(aws_creds *c)
{
    /* volatile: the stores are not dropped as dead before a free(). */
    volatile char *p = c->secret;
    for (size_t i = 0; i < sizeof c->secret; i++)
        p[i] = 0;
    p = c->token;
    for (size_t i = 0; i < sizeof c->token; i++)
        p[i] = 0;
    c->have_keys = false;
}
