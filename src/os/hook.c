/*
 * hook.c - the test hook (hook.h). Holds one function and its argument;
 * never calls anything else, never allocates.
 */
#include "os/hook.h"

#include <stdatomic.h>
#include <stddef.h>

static _Atomic(os_hook_fn) hook_fn;
static void *_Atomic hook_ctx;

void os_hook_set(os_hook_fn fn, void *ctx)
{
    atomic_store(&hook_ctx, ctx);
    atomic_store(&hook_fn, fn);
}

void os_hook_run(const char *point, const char *path)
{
    os_hook_fn fn = atomic_load_explicit(&hook_fn, memory_order_acquire);
    if (fn)
        fn(atomic_load(&hook_ctx), point, path);
}
