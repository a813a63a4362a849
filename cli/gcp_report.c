/*
 * gcp_report.c - `acache gocacheprog`'s reports on stderr (gcp_report.h).
 *
 * Must never write on stdout (it is the protocol's), and never show a
 * secret: remote names and reasons come from the library, which redacts
 * them.
 */
#include "gcp_report.h"
#include "commands.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

void gcp_print_remotes(acache_store *store, bool final)
{
    enum { MAX_SHOWN = 16 };
    acache_remote_info info[MAX_SHOWN];
    size_t n = acache_remotes(store, info, MAX_SHOWN);
    double mib = 1024.0 * 1024.0;
    for (size_t i = 0; i < n && i < MAX_SHOWN; i++) {
        const acache_remote_info *r = &info[i];
        const char *mode = r->readable && r->writable ? "rw" : r->readable ? "ro" : "wo";
        char state[2 * ACACHE_REMOTE_NAME_SIZE];
        if (r->switched_off)
            snprintf(state, sizeof state, "switched off (%s)", r->reason);
        else if (r->uploads_off)
            snprintf(state, sizeof state, "active, uploads switched off (%s)", r->reason);
        else
            snprintf(state, sizeof state, "active");
        if (!final) {
            cli_err("gocacheprog: remote %zu: %s (%s)%s%s", i + 1, r->name, mode,
                    r->detail[0] ? ": " : "", r->detail);
            continue;
        }
        cli_err("gocacheprog: remote %zu: %s (%s): %s; %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
                " rejected, %" PRIu64 " failures; %" PRIu64 " uploads (%.1f MiB), %" PRIu64
                " already there, %" PRIu64 " dropped",
                i + 1, r->name, mode, state, r->hits, r->misses, r->rejected, r->failures,
                r->uploads, (double)r->upload_bytes / mib, r->already, r->dropped);
    }
    acache_prefetch_info pf;
    if (final && acache_prefetch_stats(store, &pf)) {
        if (pf.loaded)
            cli_err("gocacheprog: prefetch: a manifest of %" PRIu64 " entries; %" PRIu64
                    " fetched ahead, %" PRIu64 " already local, %" PRIu64 " not found, %" PRIu64
                    " lookups waited for one",
                    pf.listed, pf.fetched, pf.local, pf.failed, pf.waited);
        else
            cli_err("gocacheprog: prefetch: no manifest for this build");
    }
}

void gcp_log_line(void *ctx, const char *message)
{
    (void)ctx;
    cli_err("%s", message);
}

void gcp_print_summary(uint64_t gets, uint64_t hits, uint64_t misses, uint64_t puts,
                   uint64_t bytes_in, uint64_t bytes_out, uint64_t errors, uint64_t busy_ns,
                   int64_t wall_ns)
{
    double mib = 1024.0 * 1024.0;
    /* The helper's own CPU time too, which bench/gobuild compares between
     * remotes (signing S3 requests must cost little). */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        memset(&ru, 0, sizeof ru);
    cli_err("gocacheprog: %" PRIu64 " gets (%" PRIu64 " hits, %" PRIu64 " misses), %" PRIu64
            " puts, %.1f MiB in, %.1f MiB out, %" PRIu64 " errors; "
            "%.3f s in requests (summed), %.3f s wall; cpu %.3f s user, %.3f s system",
            gets, hits, misses, puts, (double)bytes_in / mib, (double)bytes_out / mib, errors,
            (double)busy_ns / 1e9, (double)wall_ns / 1e9,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
}
