/*
 * ccache_proto.c - parser and encoders of ccache's storage helper protocol
 * version 1 (see ccache_proto.h).
 *
 * Must never read past the buffer it is given, never accept a length it
 * has not checked against what is there or against the caller's limit, and
 * never write a message longer than 255 bytes or cut one inside a UTF-8
 * character.
 */
#include "ccache_proto.h"

#include <stdio.h>
#include <string.h>

/* Reads a key (u8 length and bytes) at buf[*pos]. */
static crsh_parse_status parse_key(const uint8_t *buf, size_t len, size_t *pos, crsh_request *req)
{
    if (*pos >= len)
        return CRSH_PARSE_NEED;
    size_t klen = buf[*pos];
    if (len - *pos - 1 < klen)
        return CRSH_PARSE_NEED;
    req->keylen = (uint8_t)klen;
    memcpy(req->key, buf + *pos + 1, klen);
    *pos += 1 + klen;
    return CRSH_PARSE_OK;
}

/* The rest of a put head after its key: flags, value length. */
static crsh_parse_status parse_put_tail(const uint8_t *buf, size_t len, size_t *pos,
                                        uint64_t max_value, crsh_request *req)
{
    if (len - *pos < 1 + 8)
        return CRSH_PARSE_NEED;
    req->flags = buf[*pos];
    memcpy(&req->value_len, buf + *pos + 1, 8);
    *pos += 1 + 8;
    if (req->value_len > max_value) {
        snprintf(req->why, sizeof req->why, "value of %llu bytes is larger than the limit (%llu)",
                 (unsigned long long)req->value_len, (unsigned long long)max_value);
        return CRSH_PARSE_BAD;
    }
    return CRSH_PARSE_OK;
}

crsh_parse_status crsh_parse_head(const uint8_t *buf, size_t len, uint64_t max_value,
                                  crsh_request *req)
{
    size_t pos = 1;
    crsh_parse_status st;
    memset(req, 0, sizeof *req);
    if (len == 0)
        return CRSH_PARSE_NEED;
    req->op = buf[0];
    switch (req->op) {
    case CRSH_OP_STOP:
    case CRSH_OP_INFO:
        break;
    case CRSH_OP_GET:
    case CRSH_OP_REMOVE:
        if ((st = parse_key(buf, len, &pos, req)) != CRSH_PARSE_OK)
            return st;
        break;
    case CRSH_OP_PUT:
        if ((st = parse_key(buf, len, &pos, req)) != CRSH_PARSE_OK)
            return st;
        if ((st = parse_put_tail(buf, len, &pos, max_value, req)) != CRSH_PARSE_OK)
            return st;
        break;
    default:
        snprintf(req->why, sizeof req->why, "unknown request 0x%02x", req->op);
        return CRSH_PARSE_BAD;
    }
    req->head_len = pos;
    return CRSH_PARSE_OK;
}

size_t crsh_greeting(uint8_t *out)
{
    out[0] = CRSH_PROTOCOL_VERSION;
    out[1] = 2;
    out[2] = CRSH_CAP_GET_PUT_REMOVE;
    out[3] = CRSH_CAP_INFO;
    return 4;
}

/* The longest prefix of s[0..n) that does not end inside a UTF-8
 * character: a cut backs up over at most 3 continuation bytes (10xxxxxx)
 * to the start of the character it falls in. Text that is not UTF-8 (more
 * continuation bytes in a row than a character has) is cut at n. */
static size_t utf8_cut(const char *s, size_t n)
{
    size_t full = strlen(s);
    if (full <= n)
        return full;
    for (size_t end = n; end + 3 >= n && end > 0; end--)
        if (((unsigned char)s[end] & 0xC0) != 0x80)
            return end;
    return n;
}

size_t crsh_msg(uint8_t *out, const char *msg)
{
    const char *m = msg ? msg : "";
    size_t n = utf8_cut(m, CRSH_MSG_MAX);
    out[0] = (uint8_t)n;
    memcpy(out + 1, m, n);
    return 1 + n;
}

size_t crsh_status(uint8_t *out, uint8_t status, const char *msg)
{
    out[0] = status;
    if (status != CRSH_ERR)
        return 1;
    return 1 + crsh_msg(out + 1, msg);
}

size_t crsh_value_head(uint8_t *out, uint64_t len)
{
    out[0] = CRSH_OK;
    memcpy(out + 1, &len, 8);
    return 9;
}

size_t crsh_info(uint8_t *out, const char *identity, const char *const *diag, size_t n)
{
    if (n > 255)
        n = 255;
    size_t pos = crsh_msg(out, identity);
    out[pos++] = (uint8_t)n;
    for (size_t i = 0; i < n; i++)
        pos += crsh_msg(out + pos, diag[i]);
    return pos;
}
