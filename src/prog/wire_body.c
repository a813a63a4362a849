/*
 * wire_body.c - a put's body as it streams in: one JSON string of standard
 * base64 on its own line, decoded piece by piece (EVP's decoder), with the
 * characters, padding and the closing quote checked as they come, so that
 * no body is ever held whole.
 *
 * Pure functions only (src/prog/wire.h): this file must never read, write,
 * touch a store, keep global state or call the library's internals (it is
 * compiled into the command and the fuzzer too). Nothing allocated here is
 * sized by a number that came from the other side.
 */
#include "prog/wire.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum body_state {
    BODY_LEAD,    /* blank lines before the opening quote */
    BODY_STRING,  /* inside the string */
    BODY_ESCAPE,  /* after a backslash inside the string */
    BODY_TAIL,    /* after the closing quote, before the newline */
    BODY_DONE,
};

struct gcp_body {
    EVP_ENCODE_CTX *ctx;
    enum body_state state;
    bool invalid;
    uint64_t nchars;  /* base64 characters so far, padding included */
    unsigned npad;    /* '=' so far */
};

/* The characters EVP_DecodeUpdate is allowed to see, padding aside: it
 * would otherwise skip whitespace silently and stop at '-'. Padding is
 * checked here too, since EVP's own check depends on how the input was
 * split between calls. */
static inline bool is_base64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

gcp_body *gcp_body_new(void)
{
    gcp_body *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->ctx = EVP_ENCODE_CTX_new();
    if (b->ctx == NULL) {
        free(b);
        return NULL;
    }
    EVP_DecodeInit(b->ctx);
    b->state = BODY_LEAD;
    return b;
}

void gcp_body_free(gcp_body *b)
{
    if (b == NULL)
        return;
    EVP_ENCODE_CTX_free(b->ctx);
    free(b);
}

bool gcp_body_valid(const gcp_body *b)
{
    return b->state == BODY_DONE && !b->invalid;
}

static void decode_run(gcp_body *b, const unsigned char *p, size_t n, unsigned char *out,
                       size_t *outlen)
{
    if (n == 0)
        return;
    /* Data after padding. */
    if (b->npad > 0)
        b->invalid = true;
    b->nchars += n;
    while (n > 0 && !b->invalid) {
        int k = n > 65536 ? 65536 : (int)n;
        int got = 0;
        /* An empty input means "end" to EVP_DecodeUpdate: never pass one. */
        if (EVP_DecodeUpdate(b->ctx, out + *outlen, &got, p, k) < 0)
            b->invalid = true;
        else
            *outlen += (size_t)got;
        p += k;
        n -= (size_t)k;
    }
}

/* One '=': only as the third or fourth character of a quantum, and the
 * third only if the fourth is one too (checked when the string ends). */
static void decode_pad(gcp_body *b, const unsigned char *p, unsigned char *out, size_t *outlen)
{
    if (b->nchars % 4 < 2 || b->npad >= 2) {
        b->invalid = true;
        return;
    }
    b->npad++;
    b->nchars++;
    int got = 0;
    if (!b->invalid && EVP_DecodeUpdate(b->ctx, out + *outlen, &got, p, 1) < 0)
        b->invalid = true;
    else
        *outlen += (size_t)got;
}

static void decode_final(gcp_body *b, unsigned char *out, size_t *outlen)
{
    int got = 0;
    if (b->nchars % 4 != 0)
        b->invalid = true;
    if (b->invalid)
        return;
    if (EVP_DecodeFinal(b->ctx, out + *outlen, &got) < 0)
        b->invalid = true;
    else
        *outlen += (size_t)got;
}

static const char *char_name(unsigned char c, char buf[8])
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "0x%02x", c);
    return buf;
}

gcp_body_status gcp_body_feed(gcp_body *b, const unsigned char *in, size_t len, size_t *used,
                              unsigned char *out, size_t *outlen, char msg[GCP_MSG_SIZE])
{
    size_t i = 0;
    char cb[8];

    *outlen = 0;
    *used = 0;
    if (len > GCP_BODY_FEED_MAX) {
        gcp_set_msg(msg, "internal error: body chunk too large");
        return GCP_BODY_BROKEN;
    }
    while (i < len) {
        unsigned char c = in[i];
        switch (b->state) {
        case BODY_LEAD:
            if (c == '"') {
                b->state = BODY_STRING;
            } else if (c != '\n' && c != '\r' && c != ' ' && c != '\t') {
                gcp_set_msg(msg, "expected the put body (a JSON string) but found %s",
                        char_name(c, cb));
                return GCP_BODY_BROKEN;
            }
            i++;
            break;
        case BODY_STRING: {
            size_t start = i;
            while (i < len && is_base64_char(in[i]))
                i++;
            decode_run(b, in + start, i - start, out, outlen);
            if (i == len)
                break;
            c = in[i++];
            if (c == '=') {
                decode_pad(b, in + i - 1, out, outlen);
            } else if (c == '"') {
                decode_final(b, out, outlen);
                b->state = BODY_TAIL;
            } else if (c == '\\') {
                b->state = BODY_ESCAPE;
            } else if (c == '\n') {
                gcp_set_msg(msg, "the put body line ended before its closing quote");
                return GCP_BODY_BROKEN;
            } else {
                b->invalid = true;
            }
            break;
        }
        case BODY_ESCAPE:
            if (c == '\n') {
                gcp_set_msg(msg, "the put body line ended before its closing quote");
                return GCP_BODY_BROKEN;
            }
            /* "\/" is a legal JSON spelling of '/'; any other escape cannot
             * be part of base64. */
            if (c == '/')
                decode_run(b, in + i, 1, out, outlen);
            else
                b->invalid = true;
            b->state = BODY_STRING;
            i++;
            break;
        case BODY_TAIL:
            if (c == '\n') {
                b->state = BODY_DONE;
                *used = i + 1;
                return GCP_BODY_DONE;
            }
            if (c != '\r' && c != ' ' && c != '\t') {
                gcp_set_msg(msg, "unexpected %s after the put body", char_name(c, cb));
                return GCP_BODY_BROKEN;
            }
            i++;
            break;
        case BODY_DONE:
            return GCP_BODY_DONE;
        }
    }
    *used = len;
    return GCP_BODY_MORE;
}

gcp_body_status gcp_body_eof(gcp_body *b, char msg[GCP_MSG_SIZE])
{
    switch (b->state) {
    case BODY_TAIL:
        b->state = BODY_DONE;
        return GCP_BODY_DONE;
    case BODY_DONE:
        return GCP_BODY_DONE;
    case BODY_LEAD:
        gcp_set_msg(msg, "end of input before the put body");
        return GCP_BODY_BROKEN;
    case BODY_STRING:
    case BODY_ESCAPE:
        break;
    }
    gcp_set_msg(msg, "end of input in the middle of the put body");
    return GCP_BODY_BROKEN;
}
