/*
 * hook.h - named points where a test can run code in the middle of an
 * operation: between a check and the step that relies on it, so that a
 * race the check must survive is made to happen every time instead of
 * waited for. The library never sets a hook; unset, a point costs one
 * atomic load. A hook runs on the thread that reached the point and may
 * call back into the library (its own store included).
 */
#ifndef ACACHE_HOOK_H
#define ACACHE_HOOK_H

/* point names the place ("trim-remove-record", ...); path what the code
 * is about to act on (or NULL). */
typedef void (*os_hook_fn)(void *ctx, const char *point, const char *path);

/* Sets (or, with NULL, clears) the hook of the whole process. */
void os_hook_set(os_hook_fn fn, void *ctx);
/* Runs the hook, if one is set, at `point`. */
void os_hook_run(const char *point, const char *path);

#endif
