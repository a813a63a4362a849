/*
 * ccache_config.h - the ccache storage helper's configuration, read from
 * the CRSH_* environment ccache starts it with: the endpoint, the remote
 * spec (CRSH_URL with each @name=value attribute as the remote option of
 * that name), the idle timeout, and the few remote options the helper uses
 * itself. Also the redaction of the URL's password from any text.
 *
 * Rules: an attribute that is malformed, or a value the helper cannot use,
 * is refused with a message naming it; the password never appears in a
 * message (every text the helper shows passes through ccache_redact).
 */
#ifndef ACACHE_CCACHE_CONFIG_H
#define ACACHE_CCACHE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct helper_config {
    const char *endpoint;   /* CRSH_IPC_ENDPOINT */
    const char *url;        /* CRSH_URL */
    char *spec;             /* the URL with the attributes as options */
    int64_t idle_ns;        /* CRSH_IDLE_TIMEOUT; 0: never */
    int64_t flush_ns;       /* flush-timeout (5s) */
    uint64_t max_object;    /* max-object (512M) */
    size_t queue_entries;   /* upload-queue (4096) */
    char password[256];     /* of the URL, to keep out of every message */
} helper_config;

/* Fills c from the environment; -1 (a message printed) when something is
 * missing or wrong. c->spec is malloc'd (ccache_config_free) even then. */
int ccache_config_read(helper_config *c);

/* Copies msg into out with every occurrence of the URL's password as ***. */
void ccache_redact(const helper_config *c, const char *msg, char *out, size_t size);

void ccache_config_free(helper_config *c);

#endif
