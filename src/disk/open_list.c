/*
 * open_list.c - every disk store open in this process, so that the
 * maintenance calls (acache_trim, acache_verify, acache_clear,
 * acache_disk_stats, acache_save_counters) can find the disk store behind a
 * store handle: a tier chain or a namespace only shows its directory
 * (backend op local_dir), and a disk store's local_dir is its root.
 * It never opens or closes a store; disk.c registers each one it opens.
 */
#include "disk/disk.h"
#include "core/error.h"

#include <pthread.h>

/* Every open disk store, so that maintenance calls can find the one behind
 * a store handle (a tier chain or a namespace only shows its directory). */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static disk *open_list;

void disk_register(disk *d)
{
    pthread_mutex_lock(&open_mu);
    d->next_open = open_list;
    open_list = d;
    pthread_mutex_unlock(&open_mu);
}

void disk_unregister(disk *d)
{
    pthread_mutex_lock(&open_mu);
    for (disk **p = &open_list; *p; p = &(*p)->next_open) {
        if (*p == d) {
            *p = d->next_open;
            break;
        }
    }
    pthread_mutex_unlock(&open_mu);
}

disk *disk_of_store(acache_store *store, const char *what)
{
    if (!store) {
        set_error(ACACHE_EINVAL, "%s: NULL store", what);
        return NULL;
    }
    const char *dir = store->ops->local_dir ? store->ops->local_dir(store->self) : NULL;
    disk *found = NULL;
    pthread_mutex_lock(&open_mu);
    for (disk *d = open_list; d && dir; d = d->next_open)
        if (d->root == dir)
            found = d;
    pthread_mutex_unlock(&open_mu);
    if (!found)
        set_error(ACACHE_EINVAL, "%s: the store is not a disk store and its first tier is not "
                                 "one either (open it with a disk: spec)", what);
    return found;
}
