/*
 * options.c - the spec options every remote shares (timeouts, failures,
 * uploads, compression, signing key, prefetch, inline objects), parsed into a
 * remote_config, and the display name that hides credentials. It never
 * opens a connection and never lets a key or password into a message.
 */
#include "core/error.h"
#include "remote/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define KEY_MIN 16

static acache_status parse_count(const char *key, const char *text, unsigned long min,
                                 unsigned long max, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (!*text || *text == '-' || *end || errno || v < min || v > max)
        return set_error(ACACHE_EINVAL, "remote option %s: want a number from %lu to %lu, got '%s'",
                         key, min, max, text);
    *out = v;
    return ACACHE_OK;
}

static acache_status parse_timeout(const char *key, const char *text, bool zero_ok, int64_t *out)
{
    acache_status st = parse_duration_ns(text, out);
    if (st != ACACHE_OK)
        return set_error(st, "remote option %s: want a duration such as 300ms or 2s, got '%s'", key,
                         text);
    if ((*out == 0 && !zero_ok) || *out > 3600LL * 1000000000)
        return set_error(ACACHE_EINVAL, "remote option %s: '%s' is out of range (%s1h)", key, text,
                         zero_ok ? "0 to " : "1ms to ");
    return ACACHE_OK;
}

/* Reads the signing key: the file's bytes without trailing whitespace. */
static acache_status read_key(const char *path, remote_config *cfg)
{
    acache_status st = ACACHE_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return set_errno_error(errno, "remote key file %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = set_errno_error(errno, "remote key file %s", path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size > (off_t)sizeof cfg->key) {
        st = set_error(ACACHE_EINVAL, "remote key file %s: want a regular file of at most %zu bytes",
                       path, sizeof cfg->key);
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, cfg->key + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            st = set_errno_error(n < 0 ? errno : EIO, "remote key file %s", path);
            goto out;
        }
        got += (size_t)n;
    }
    while (got > 0 && (cfg->key[got - 1] == '\n' || cfg->key[got - 1] == '\r' ||
                       cfg->key[got - 1] == ' ' || cfg->key[got - 1] == '\t'))
        got--;
    if (got < KEY_MIN) {
        st = set_error(ACACHE_EINVAL, "remote key file %s holds %zu bytes; a key needs at least %d",
                       path, got, KEY_MIN);
        goto out;
    }
    cfg->keylen = got;
out:
    close(fd);
    return st;
}

acache_status remote_config_parse(spec *s, remote_config *cfg)
{
    const char *v;
    acache_status st;
    unsigned long n = 0;
    memset(cfg, 0, sizeof *cfg);
    cfg->can_read = cfg->can_write = true;
    cfg->timeout_ns = 1000000000LL;
    cfg->flush_timeout_ns = 5000000000LL;
    cfg->max_failures = 3;
    cfg->queue_max = 4096;
    cfg->max_object = 512ull << 20;
    cfg->prefetch = 4;
    cfg->inline_max = REMOTE_INLINE_MAX;

    if ((v = spec_get(s, "mode"))) {
        if (!strcmp(v, "ro"))
            cfg->can_write = false;
        else if (!strcmp(v, "wo"))
            cfg->can_read = false;
        else if (strcmp(v, "rw") != 0)
            return set_error(ACACHE_EINVAL, "remote option mode: want rw, ro or wo, got '%s'", v);
    }
    if ((v = spec_get(s, "compress"))) {
        if (!strcmp(v, "zstd")) {
            cfg->zstd_level = 3;
        } else if (!strncmp(v, "zstd:", 5)) {
            if ((st = parse_count("compress", v + 5, 1, (unsigned long)ZSTD_maxCLevel(), &n)))
                return st;
            cfg->zstd_level = (int)n;
        } else if (strcmp(v, "off") != 0 && strcmp(v, "none") != 0) {
            return set_error(ACACHE_EINVAL, "remote option compress: want off, zstd or zstd:LEVEL, "
                                            "got '%s'", v);
        }
    }
    if ((v = spec_get(s, "timeout")) && (st = parse_timeout("timeout", v, false, &cfg->timeout_ns)))
        return st;
    cfg->connect_timeout_ns = cfg->timeout_ns;
    if ((v = spec_get(s, "connect-timeout")) &&
        (st = parse_timeout("connect-timeout", v, false, &cfg->connect_timeout_ns)))
        return st;
    if ((v = spec_get(s, "flush-timeout")) &&
        (st = parse_timeout("flush-timeout", v, true, &cfg->flush_timeout_ns)))
        return st;
    if ((v = spec_get(s, "failures"))) {
        if ((st = parse_count("failures", v, 1, 1000, &n)))
            return st;
        cfg->max_failures = (unsigned)n;
    }
    if ((v = spec_get(s, "upload-queue"))) {
        if ((st = parse_count("upload-queue", v, 1, 1000000, &n)))
            return st;
        cfg->queue_max = n;
    }
    if ((v = spec_get(s, "max-object"))) {
        if ((st = parse_size(v, &cfg->max_object)) || cfg->max_object == 0)
            return set_error(ACACHE_EINVAL, "remote option max-object: want a size such as 64M, "
                                            "got '%s'", v);
    }
    if ((v = spec_get(s, "prefetch"))) {
        if ((st = parse_count("prefetch", v, 0, REMOTE_PREFETCH_MAX, &n)))
            return st;
        cfg->prefetch = (unsigned)n;
    }
    if ((v = spec_get(s, "inline"))) {
        uint64_t sz = 0;
        if (parse_size(v, &sz) != ACACHE_OK || sz > REMOTE_INLINE_MAX)
            return set_error(ACACHE_EINVAL, "remote option inline: want a size from 0 to %zuk, "
                                            "got '%s'", REMOTE_INLINE_MAX >> 10, v);
        cfg->inline_max = (size_t)sz;
    }
    v = spec_get(s, "key-file");
    if (!v || !*v)
        v = getenv("ACACHE_REMOTE_KEY_FILE");
    if (v && *v && (st = read_key(v, cfg)))
        return st;
    return ACACHE_OK;
}

void remote_display_name(const char *scheme, const char *rest, char *out, size_t size)
{
    char raw[ACACHE_REMOTE_NAME_SIZE * 4];
    snprintf(raw, sizeof raw, "%s:%.*s", scheme, (int)strcspn(rest, "?"), rest);
    acache_redact(raw, out, size);
}
