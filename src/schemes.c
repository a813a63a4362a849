/*
 * schemes.c - acache_open(): the scheme table, the one place that knows
 * every backend. It parses the spec, hands it to the backend its scheme
 * names, and refuses an option no backend asked for.
 *
 * This file sits above every layer (docs/architecture.md) and nothing
 * includes it; a new backend is one line here and one folder below.
 */
#include "core/backend.h"
#include "core/error.h"
#include "disk/disk.h"
#include "mem/mem.h"
#include "prog/prog.h"
#include "remote/remote.h"

#include <string.h>

static const struct {
    const char *scheme;
    backend_open_fn open;
} backends[] = {
    { "disk", disk_open },
    { "mem", mem_open },
    { "prog", prog_open },
    { "redis", redis_open },
    { "redis+unix", redis_open },
    { "http", http_open },
    { "https", http_open },
    { "s3", s3_open },
};

acache_status acache_open(const char *text, acache_store **out)
{
    spec sp;
    void *self = NULL;
    const backend_ops *ops = NULL;
    if (!out)
        return set_error(ACACHE_EINVAL, "acache_open: NULL argument");
    *out = NULL;
    acache_status st = spec_parse(text, &sp);
    if (st != ACACHE_OK)
        return st;
    backend_open_fn open_fn = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(sp.scheme, backends[i].scheme) == 0)
            open_fn = backends[i].open;
    if (!open_fn) {
        st = set_error(ACACHE_EINVAL, "store spec '%s': unknown or unsupported scheme '%s' (known: disk, mem, prog, redis, redis+unix, http, https, s3)",
                       text, sp.scheme);
        goto out;
    }
    st = open_fn(&sp, &self, &ops);
    if (st != ACACHE_OK)
        goto out;
    st = spec_check_unused(&sp);
    if (st != ACACHE_OK) {
        ops->close(self);
        goto out;
    }
    st = store_wrap(ops, self, out);
out:
    spec_free(&sp);
    return st;
}
