/*
 * error.h - the per-thread error message behind acache_last_error().
 * Library code sets it right before returning an error; it never prints.
 */
#ifndef ACACHE_ERROR_H
#define ACACHE_ERROR_H

#include "acache.h"

/* Records a message for the calling thread and returns st, so that error
 * paths read `return set_error(ACACHE_EIO, "...", ...);`. */
acache_status set_error(acache_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* set_error() with the status and text that fit errno (ENOSPC, ENOMEM, EIO). */
acache_status set_errno_error(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Maps an errno value to a status. */
acache_status status_from_errno(int err);

void clear_error(void);

#endif
