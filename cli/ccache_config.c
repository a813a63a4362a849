/*
 * ccache_config.c - reading the ccache storage helper's configuration from
 * ccache's CRSH_* environment (ccache_config.h), and keeping the URL's
 * password out of every text it shows.
 *
 * Must never: accept an attribute name outside [a-z0-9-_] or a value with
 * '&', '?' or '#' (it would change the spec's other options); show the
 * password; take a number from the environment without a bound.
 */
#include "ccache_config.h"
#include "commands.h"

#include "acache.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies msg into out with every occurrence of the URL's password as ***. */
void ccache_redact(const helper_config *c, const char *msg, char *out, size_t size)
{
    size_t plen = strlen(c->password), o = 0;
    while (*msg && o + 1 < size) {
        if (plen > 0 && !strncmp(msg, c->password, plen)) {
            o += (size_t)snprintf(out + o, size - o, "***");
            msg += plen;
            continue;
        }
        out[o++] = *msg++;
    }
    out[o < size ? o : size - 1] = '\0';
}

/* The password of scheme://user:password@host/..., if any. */
static void find_password(const char *url, char *out, size_t size)
{
    out[0] = '\0';
    const char *host = strstr(url, "://");
    if (!host)
        return;
    host += 3;
    size_t hlen = strcspn(host, "/?");
    const char *at = NULL;
    for (const char *p = host; p < host + hlen; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(host, ':', (size_t)(at - host)) : NULL;
    if (colon && at > colon + 1)
        snprintf(out, size, "%.*s", (int)(at - colon - 1), colon + 1);
}

static bool attr_name_ok(const char *k)
{
    if (!*k)
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '-' || *k == '_'))
            return false;
    return true;
}

/* Reads the helper's own uses of three remote options (the remote parses
 * and checks them too). */
static int take_attr(helper_config *c, const char *k, const char *v)
{
    int64_t ns;
    uint64_t n;
    if (!strcmp(k, "flush-timeout")) {
        if (acache_parse_duration(v, &ns) != ACACHE_OK)
            return -1;
        c->flush_ns = ns;
    } else if (!strcmp(k, "max-object")) {
        if (acache_parse_size(v, &n) != ACACHE_OK || n == 0)
            return -1;
        c->max_object = n;
    } else if (!strcmp(k, "upload-queue")) {
        char *end;
        unsigned long long q = strtoull(v, &end, 10);
        if (!*v || *end || q == 0 || q > 1000000)
            return -1;
        c->queue_entries = (size_t)q;
    }
    return 0;
}

/* Appends "?k=v" or "&k=v" to *spec for one CRSH_ATTR_* pair. */
static int append_attr(helper_config *c, char **spec, unsigned i)
{
    char kname[64], vname[64], *grown = NULL;
    snprintf(kname, sizeof kname, "CRSH_ATTR_KEY_%u", i);
    snprintf(vname, sizeof vname, "CRSH_ATTR_VALUE_%u", i);
    const char *k = getenv(kname), *v = getenv(vname);
    if (!k || !v) {
        cli_err("ccache-helper: %s or %s is not set (CRSH_NUM_ATTR says %u)", kname, vname, i + 1);
        return -1;
    }
    if (!attr_name_ok(k) || strpbrk(v, "&?#")) {
        cli_err("ccache-helper: attribute @%s: want @name=value with a name of [a-z0-9-] "
                "and a value without '&', '?' or '#'", k);
        return -1;
    }
    if (take_attr(c, k, v) != 0) {
        cli_err("ccache-helper: attribute @%s: bad value '%s'", k, v);
        return -1;
    }
    if (asprintf(&grown, "%s%c%s=%s", *spec, strchr(*spec, '?') ? '&' : '?', k, v) < 0)
        return -1;
    free(*spec);
    *spec = grown;
    return 0;
}

int ccache_config_read(helper_config *c)
{
    memset(c, 0, sizeof *c);
    c->flush_ns = 5000000000LL;
    c->max_object = (uint64_t)512 << 20;
    c->queue_entries = 4096;
    c->endpoint = getenv("CRSH_IPC_ENDPOINT");
    c->url = getenv("CRSH_URL");
    if (!c->endpoint || !*c->endpoint || !c->url || !*c->url) {
        cli_err("ccache-helper: CRSH_IPC_ENDPOINT and CRSH_URL must be set (ccache sets them; "
                "see 'acache ccache-helper --help')");
        return -1;
    }
    find_password(c->url, c->password, sizeof c->password);
    const char *idle = getenv("CRSH_IDLE_TIMEOUT");
    if (idle && *idle) {
        char *end;
        unsigned long long s = strtoull(idle, &end, 10);
        if (*end || s > 100000000ULL) {
            cli_err("ccache-helper: CRSH_IDLE_TIMEOUT: want seconds, got '%s'", idle);
            return -1;
        }
        c->idle_ns = (int64_t)s * 1000000000LL;
    }
    const char *na = getenv("CRSH_NUM_ATTR");
    unsigned long nattr = na && *na ? strtoul(na, NULL, 10) : 0;
    if (nattr > 1000) {
        cli_err("ccache-helper: CRSH_NUM_ATTR: '%s' is out of range", na);
        return -1;
    }
    if (!(c->spec = strdup(c->url)))
        return -1;
    for (unsigned i = 0; i < nattr; i++)
        if (append_attr(c, &c->spec, i) != 0)
            return -1;
    return 0;
}

void ccache_config_free(helper_config *c)
{
    free(c->spec);
    c->spec = NULL;
}
