/*
 * layout.c - where the disk store keeps things under ROOT/v1 (entry paths,
 * shard directories) and the one format it writes itself, the action
 * record. The layout is described at the top of disk.c. Shared by the
 * store, the trim, verify and clear, so that none of them reaches into
 * another for it. Pure functions apart from opendir: never writes.
 */
#include "disk/disk.h"
#include "core/error.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* ROOT/v1/<kind>/XX/<hex>. The root length was checked at open. */
void disk_entry_path(const disk *d, char kind, const acache_id *id, char *out)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    char *p = out;
    memcpy(p, d->root, d->rootlen);
    p += d->rootlen;
    *p++ = '/';
    *p++ = kind;
    *p++ = '/';
    *p++ = hex[0];
    *p++ = hex[1];
    *p++ = '/';
    memcpy(p, hex, ACACHE_ID_HEX_SIZE);
}

DIR *disk_opendir(const disk *d, const char *rel)
{
    int fd = openat(d->rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp && fd >= 0)
        close(fd);
    return dp;
}

/* Reads a decimal number of at most 19 digits ending at `stop`. */
static const char *parse_u63(const char *p, char stop, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9' && p - start < 19)
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == start || *p != stop)
        return NULL;
    *out = v;
    return p + 1;
}

/* Parses a record read from the file named by ahex (the action's hex id).
 * This is on every get's path, hence no sscanf and no round trips through
 * binary: the action is compared as text, the output decoded once. */
acache_status disk_parse_record(const char *buf, size_t n, const char *ahex,
                                acache_id *output, uint64_t *size, int64_t *time_ns)
{
    /* magic SP action SP output SP size SP time LF */
    const size_t hexlen = 2 * ACACHE_ID_SIZE, mlen = sizeof DISK_RECORD_MAGIC - 1;
    if (n < mlen + 2 * (hexlen + 1) + 4 || n > DISK_RECORD_MAX || buf[n - 1] != '\n')
        return ACACHE_CORRUPT;
    if (memcmp(buf, DISK_RECORD_MAGIC " ", mlen + 1) != 0)
        return ACACHE_CORRUPT;
    const char *p = buf + mlen + 1;
    if (memcmp(p, ahex, hexlen) != 0 || p[hexlen] != ' ')
        return ACACHE_CORRUPT;
    p += hexlen + 1;
    if (p[hexlen] != ' ' || acache_id_from_hex(p, hexlen, output) != ACACHE_OK)
        return ACACHE_CORRUPT;
    p += hexlen + 1;
    uint64_t sz, t;
    if (!(p = parse_u63(p, ' ', &sz)) || !(p = parse_u63(p, '\n', &t)) || p != buf + n)
        return ACACHE_CORRUPT;
    *size = sz;
    *time_ns = (int64_t)t;
    return ACACHE_OK;
}

bool disk_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}
