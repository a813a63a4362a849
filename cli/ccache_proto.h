/*
 * ccache_proto.h - the wire format of ccache's remote storage helper
 * protocol, version 1 (ccache's doc/remote_storage_helper_spec.md): a
 * parser for request heads and encoders for every answer. Pure functions
 * over byte buffers, shared by the server (ccache_helper.c), its tests and
 * the libFuzzer target.
 *
 * A request is a *head* (opcode, key, put flags, value length) and, for a
 * put, the value bytes after it. The parser reads only heads, at most
 * CRSH_HEAD_MAX bytes, so it never allocates and never trusts a length it
 * has not checked: the server reads the value itself, after checking its
 * length against its own limit.
 *
 * Rules: integers are in host byte order (both ends are on one host);
 * keys and messages are at most 255 bytes; a message is cut on a UTF-8
 * character boundary, never in the middle of one.
 */
#ifndef ACACHE_CCACHE_PROTO_H
#define ACACHE_CCACHE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define CRSH_PROTOCOL_VERSION 1

/* Requests. */
enum {
    CRSH_OP_GET = 0x00,
    CRSH_OP_PUT = 0x01,
    CRSH_OP_REMOVE = 0x02,
    CRSH_OP_STOP = 0x03,
    CRSH_OP_INFO = 0x04,
};

/* Answers. */
enum {
    CRSH_OK = 0x00,   /* done (get: a value follows) */
    CRSH_NOOP = 0x01, /* get: not found; put: not stored; remove: not removed */
    CRSH_ERR = 0x02,  /* a message follows */
};

/* Capabilities sent in the greeting. */
enum {
    CRSH_CAP_GET_PUT_REMOVE = 0x00,
    CRSH_CAP_INFO = 0x01,
};

/* Put flag bit 0: overwrite an existing value (unset: only a hint). */
#define CRSH_PUT_OVERWRITE 0x01

#define CRSH_KEY_MAX 255
#define CRSH_MSG_MAX 255
/* Longest head: put opcode, key length, key, flags, value length. */
#define CRSH_HEAD_MAX (1 + 1 + CRSH_KEY_MAX + 1 + 8)
/* Longest greeting: version, count, two capabilities. */
#define CRSH_GREETING_MAX 4
/* Room for one status with a message, or a get hit's status and length. */
#define CRSH_STATUS_MAX (1 + 1 + CRSH_MSG_MAX)

typedef enum crsh_parse_status {
    CRSH_PARSE_NEED = 0, /* the head is not complete yet: read more */
    CRSH_PARSE_OK = 1,   /* a whole head; see crsh_request */
    CRSH_PARSE_BAD = 2,  /* not a request we can read past: answer and close */
} crsh_parse_status;

typedef struct crsh_request {
    uint8_t op;                  /* CRSH_OP_* */
    uint8_t keylen;
    uint8_t key[CRSH_KEY_MAX];   /* get, put, remove */
    uint8_t flags;               /* put */
    uint64_t value_len;          /* put: value bytes following the head */
    size_t head_len;             /* bytes of the buffer the head took */
    char why[96];                /* CRSH_PARSE_BAD: what was wrong */
} crsh_request;

/*
 * Parses one request head from buf[0..len). A put whose value is longer
 * than max_value is CRSH_PARSE_BAD (its bytes cannot be skipped safely: a
 * length of 2^63 would keep the connection busy forever), as is an unknown
 * opcode (the length of what follows is unknown).
 */
crsh_parse_status crsh_parse_head(const uint8_t *buf, size_t len, uint64_t max_value,
                                  crsh_request *req);

/* The greeting: version 1, capabilities get/put/remove and info. Returns
 * its length (at most CRSH_GREETING_MAX). */
size_t crsh_greeting(uint8_t *out);

/* Writes a message, u8 length and at most CRSH_MSG_MAX bytes of msg cut on
 * a UTF-8 boundary, into out (room for 1 + CRSH_MSG_MAX). Returns bytes. */
size_t crsh_msg(uint8_t *out, const char *msg);

/* Writes a status byte and, for CRSH_ERR, the message (CRSH_STATUS_MAX
 * bytes of room). Returns bytes. */
size_t crsh_status(uint8_t *out, uint8_t status, const char *msg);

/* Writes CRSH_OK and a value length: what precedes a get hit's bytes
 * (9 bytes). */
size_t crsh_value_head(uint8_t *out, uint64_t len);

/*
 * Writes an info answer: identity, count, then up to 255 diagnostics.
 * out must hold (1 + n) * (1 + CRSH_MSG_MAX) + 1 bytes; more than 255
 * diagnostics are cut. Returns bytes.
 */
size_t crsh_info(uint8_t *out, const char *identity, const char *const *diag, size_t n);

#endif
