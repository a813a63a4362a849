/*
 * stats.c - acache_disk_stats(): a disk store's settings, its
 * counters summed over every process that used it, and its last trim.
 * It only reads (folding the counter files of dead processes aside).
 * Also acache_save_counters(): this process's counts written now rather
 * than at the next flush.
 */
#include "disk/disk.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

static uint64_t clamp0(int64_t v) { return v > 0 ? (uint64_t)v : 0; }

acache_status acache_disk_stats(acache_store *store, acache_disk_counters *out)
{
    if (!out)
        return set_error(ACACHE_EINVAL, "acache_disk_stats: NULL argument");
    memset(out, 0, sizeof *out);
    disk *d = disk_of_store(store, "acache_disk_stats");
    if (!d)
        return ACACHE_EINVAL;
    counter_totals t;
    counters_read(&d->cnt, &t);
    snprintf(out->dir, sizeof out->dir, "%s", d->root);
    out->max_size = d->max_size;
    out->max_age_ns = d->max_age_ns;
    out->grace_ns = d->grace_ns;
    out->trim_interval_ns = d->trim_interval_ns;
    out->entries = clamp0(t.v[CNT_ENTRIES]);
    out->objects = clamp0(t.v[CNT_OBJECTS]);
    out->bytes = clamp0(t.v[CNT_SIZE]);
    out->counted_ns = t.counted_ns;
    out->hits = clamp0(t.v[CNT_HITS]);
    out->misses = clamp0(t.v[CNT_MISSES]);
    out->corrupt = clamp0(t.v[CNT_CORRUPT]);
    out->errors = clamp0(t.v[CNT_ERRORS]);
    out->puts = clamp0(t.v[CNT_PUTS]);
    out->bytes_written = clamp0(t.v[CNT_BYTES_WRITTEN]);
    out->bytes_read = clamp0(t.v[CNT_BYTES_READ]);
    out->trimmed_entries = clamp0(t.v[CNT_TRIMMED_ENTRIES]);
    out->trimmed_bytes = clamp0(t.v[CNT_TRIMMED_BYTES]);
    out->repaired = clamp0(t.v[CNT_REPAIRED]);
    out->spilled = clamp0(t.v[CNT_SPILLED]);
    trim_last(d, out);
    return ACACHE_OK;
}

void acache_save_counters(acache_store *store)
{
    /* Only stores with a local directory can have a disk tier; asking the
     * others would leave an error message behind. */
    if (!store || !store->ops->local_dir || !store->ops->local_dir(store->self))
        return;
    disk *d = disk_of_store(store, "acache_save_counters");
    if (d)
        counters_flush(&d->cnt);
}
