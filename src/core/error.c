/*
 * error.c - per-thread error messages and status names.
 * Must never print or exit: the caller decides what to show. Every
 * message passes through acache_redact() (redact.c) as it is set: a spec
 * or URL in it, or in the text of a library it quotes (libcurl's errors
 * carry the URL), never shows a credential.
 */
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *acache_last_error(void) { return last_error; }

void clear_error(void) { last_error[0] = '\0'; }

acache_status set_error(acache_status st, const char *fmt, ...)
{
    char raw[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    acache_redact(raw, last_error, sizeof last_error);
    return st;
}

acache_status status_from_errno(int err)
{
    switch (err) {
    case ENOSPC:
    case EDQUOT:
        return ACACHE_ENOSPC;
    case ENOMEM:
        return ACACHE_ENOMEM;
    case EINVAL:
    case ENAMETOOLONG:
        return ACACHE_EINVAL;
    default:
        return ACACHE_EIO;
    }
}

acache_status set_errno_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof last_error)
        snprintf(last_error + n, sizeof last_error - (size_t)n, ": %s", strerror(err));
    return status_from_errno(err);
}

const char *acache_status_str(acache_status st)
{
    switch (st) {
    case ACACHE_OK: return "ok";
    case ACACHE_MISS: return "miss";
    case ACACHE_EINVAL: return "invalid argument";
    case ACACHE_EIO: return "I/O error";
    case ACACHE_ENOSPC: return "no space left";
    case ACACHE_ENOMEM: return "out of memory";
    }
    return "unknown status";
}

acache_status acache_set_error(acache_status st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!fmt) {
        clear_error();
        return st;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return set_error(st, "%s", msg);
}
