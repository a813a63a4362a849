/*
 * aws_creds.h - finds AWS credentials, region and endpoint as every AWS
 * tool does, for the s3 remote: the environment, then the shared
 * credentials and config files of a profile.
 *
 * Keys, first match wins:
 *   1. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN);
 *   2. the profile AWS_PROFILE (default "default") in the shared
 *      credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 *      ~/.aws/credentials: section [NAME]), then in the config file
 *      (AWS_CONFIG_FILE, else ~/.aws/config: [default] or [profile NAME]);
 *   3. none: anonymous (the caller decides whether that is allowed).
 * Region: AWS_REGION, AWS_DEFAULT_REGION, the profile's `region` in the
 * config file, else us-east-1. Endpoint: AWS_ENDPOINT_URL_S3, then
 * AWS_ENDPOINT_URL, else none (AWS itself).
 *
 * Each value records where it came from (`source`), for messages and
 * `acache config`. The secret and the token must never be put in any
 * message, source or error text, not even a malformed line of a file.
 */
#ifndef ACACHE_AWS_CREDS_H
#define ACACHE_AWS_CREDS_H

#include "acache.h"

#include <stdbool.h>

#define AWS_KEY_ID_MAX 128
#define AWS_SECRET_MAX 128
#define AWS_TOKEN_MAX 4096
#define AWS_REGION_MAX 64
#define AWS_ENDPOINT_MAX 512
#define AWS_SOURCE_MAX (4096 + 256)    /* "profile NAME in PATH" */

typedef struct aws_creds {
    bool have_keys;                     /* false: anonymous */
    char key_id[AWS_KEY_ID_MAX];
    char secret[AWS_SECRET_MAX];        /* never shown */
    char token[AWS_TOKEN_MAX];          /* never shown; "" when none */
    char source[AWS_SOURCE_MAX];        /* where the keys came from */
    char region[AWS_REGION_MAX];
    char region_source[AWS_SOURCE_MAX];
    char endpoint[AWS_ENDPOINT_MAX];    /* "" when none was configured */
    char endpoint_source[AWS_SOURCE_MAX];
} aws_creds;

/*
 * Fills out from the environment and the files it names. ACACHE_OK, or
 * ACACHE_EINVAL (message set, without secrets) when a file that is read is
 * malformed, a value is too long, AWS_ACCESS_KEY_ID comes without
 * AWS_SECRET_ACCESS_KEY (or the other way round), or an AWS_PROFILE named
 * explicitly is in neither file. A missing file is no error.
 */
acache_status aws_creds_find(aws_creds *out);

/* Overwrites the secret and the token (before freeing what holds them). */
void aws_creds_wipe(aws_creds *c);

#endif
