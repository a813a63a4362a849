/*
 * fuzz_ccache_proto.c - libFuzzer target over ccache's storage helper wire
 * format (cli/ccache_proto.c): request heads as a stream, and messages.
 *
 * Requests: the input is read as a connection's bytes. The parser must
 * return one of its three statuses; a complete head must lie inside the
 * bytes it was given, name a known request, carry a key no longer than its
 * length byte allows, and a value length within the limit; a refusal must
 * say why; the value bytes are skipped as the server would. Feeding the
 * same head one byte at a time must give the same answer once complete.
 * Messages: any text encodes to at most 256 bytes, cut on a UTF-8 boundary.
 * Never reads or writes a file; never touches a store.
 */
#include "ccache_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                            \
        }                                                                       \
    } while (0)

#define LIMIT ((uint64_t)1 << 20)

/* The same head, given one more byte at a time, is NEED until whole. */
static void check_incremental(const uint8_t *buf, size_t len, const crsh_request *whole)
{
    crsh_request r;
    for (size_t i = 0; i < whole->head_len; i++)
        CHECK(crsh_parse_head(buf, i, LIMIT, &r) == CRSH_PARSE_NEED);
    CHECK(crsh_parse_head(buf, len < whole->head_len ? len : whole->head_len, LIMIT, &r) ==
          CRSH_PARSE_OK);
    CHECK(r.op == whole->op && r.keylen == whole->keylen && r.value_len == whole->value_len &&
          memcmp(r.key, whole->key, r.keylen) == 0);
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    crsh_request req;
    while (pos < size) {
        crsh_parse_status st = crsh_parse_head(data + pos, size - pos, LIMIT, &req);
        CHECK(st == CRSH_PARSE_NEED || st == CRSH_PARSE_OK || st == CRSH_PARSE_BAD);
        if (st == CRSH_PARSE_NEED)
            return;
        if (st == CRSH_PARSE_BAD) {
            CHECK(req.why[0] != '\0');
            return;
        }
        CHECK(req.head_len >= 1 && req.head_len <= size - pos && req.head_len <= CRSH_HEAD_MAX);
        CHECK(req.op <= CRSH_OP_INFO);
        CHECK(req.value_len <= LIMIT);
        CHECK(req.op == CRSH_OP_PUT || req.value_len == 0);
        check_incremental(data + pos, size - pos, &req);
        pos += req.head_len;
        /* The server reads the value; here it is skipped (or runs out). */
        if (req.value_len > size - pos)
            return;
        pos += (size_t)req.value_len;
    }
}

static void fuzz_msg(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    uint8_t out[1 + CRSH_MSG_MAX];
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    size_t n = crsh_msg(out, text);
    size_t tl = strlen(text);
    CHECK(n == 1 + (size_t)out[0] && out[0] <= CRSH_MSG_MAX);
    CHECK(memcmp(out + 1, text, out[0]) == 0);
    if (tl <= CRSH_MSG_MAX)
        CHECK(out[0] == tl);
    else /* cut at a character's start, at most 3 bytes early; or, in
            text that is not UTF-8, at the limit */
        CHECK((((unsigned char)text[out[0]] & 0xC0) != 0x80 && out[0] + 3 >= CRSH_MSG_MAX) ||
              out[0] == CRSH_MSG_MAX);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 0x80)
        fuzz_msg(data + 1, size - 1);
    else
        fuzz_stream(data + 1, size - 1);
    return 0;
}
