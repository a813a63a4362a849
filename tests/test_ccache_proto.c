/*
 * test_ccache_proto.c - unit tests of ccache's storage helper wire format
 * (cli/ccache_proto.c): request heads, the greeting, statuses, messages
 * cut on UTF-8 boundaries, info answers. Pure functions, so no process and
 * no store is involved; the helper itself, with the real ccache and with
 * malformed clients, is tested by test_ccache_helper.sh.
 *
 * The parser lives with the command, not in the library; tests/CMakeLists.txt
 * compiles it into this program.
 */
#include "testutil.h"

#include "ccache_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT ((uint64_t)1 << 20)

static size_t put_head(uint8_t *buf, const char *key, uint64_t len)
{
    size_t k = strlen(key), n = 0;
    buf[n++] = CRSH_OP_PUT;
    buf[n++] = (uint8_t)k;
    memcpy(buf + n, key, k);
    n += k;
    buf[n++] = CRSH_PUT_OVERWRITE;
    memcpy(buf + n, &len, 8);
    return n + 8;
}

/* Every prefix of a head is NEED; the whole is OK with its fields. */
static void test_put_head(void **state)
{
    (void)state;
    uint8_t buf[CRSH_HEAD_MAX + 16];
    crsh_request r;
    size_t n = put_head(buf, "0123456789abcdef0123", 4096);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(crsh_parse_head(buf, i, LIMIT, &r), CRSH_PARSE_NEED);
    memcpy(buf + n, "tail", 4);
    assert_int_equal(crsh_parse_head(buf, n + 4, LIMIT, &r), CRSH_PARSE_OK);
    assert_int_equal(r.op, CRSH_OP_PUT);
    assert_int_equal(r.keylen, 20);
    assert_memory_equal(r.key, "0123456789abcdef0123", 20);
    assert_int_equal(r.flags, CRSH_PUT_OVERWRITE);
    assert_int_equal(r.value_len, 4096);
    assert_int_equal(r.head_len, n);
}

static void test_get_remove_stop_info(void **state)
{
    (void)state;
    crsh_request r;
    uint8_t get[] = { CRSH_OP_GET, 3, 'a', 'b', 'c' };
    assert_int_equal(crsh_parse_head(get, sizeof get, LIMIT, &r), CRSH_PARSE_OK);
    assert_int_equal(r.head_len, 5);
    assert_int_equal(r.value_len, 0);
    uint8_t rm[] = { CRSH_OP_REMOVE, 0 };
    assert_int_equal(crsh_parse_head(rm, sizeof rm, LIMIT, &r), CRSH_PARSE_OK);
    assert_int_equal(r.keylen, 0);
    uint8_t stop[] = { CRSH_OP_STOP, CRSH_OP_INFO };
    assert_int_equal(crsh_parse_head(stop, 2, LIMIT, &r), CRSH_PARSE_OK);
    assert_int_equal(r.head_len, 1);
    assert_int_equal(r.op, CRSH_OP_STOP);
    assert_int_equal(crsh_parse_head(stop + 1, 1, LIMIT, &r), CRSH_PARSE_OK);
    assert_int_equal(r.op, CRSH_OP_INFO);
    assert_int_equal(crsh_parse_head(stop, 0, LIMIT, &r), CRSH_PARSE_NEED);
}

/* A key length past the data is NEED (the server waits, with a timeout),
 * never a read past the buffer. */
static void test_short_key(void **state)
{
    (void)state;
    crsh_request r;
    uint8_t *buf = malloc(12); /* exact size: ASan catches any overread */
    buf[0] = CRSH_OP_GET;
    buf[1] = 200;
    memset(buf + 2, 'k', 10);
    assert_int_equal(crsh_parse_head(buf, 12, LIMIT, &r), CRSH_PARSE_NEED);
    free(buf);
}

static void test_bad_requests(void **state)
{
    (void)state;
    crsh_request r;
    uint8_t unknown[] = { 0x09, 1, 2, 3 };
    assert_int_equal(crsh_parse_head(unknown, sizeof unknown, LIMIT, &r), CRSH_PARSE_BAD);
    assert_non_null(strstr(r.why, "unknown request 0x09"));
    uint8_t buf[CRSH_HEAD_MAX];
    size_t n = put_head(buf, "k", (uint64_t)1 << 63);
    assert_int_equal(crsh_parse_head(buf, n, LIMIT, &r), CRSH_PARSE_BAD);
    assert_non_null(strstr(r.why, "larger than"));
    n = put_head(buf, "k", LIMIT);
    assert_int_equal(crsh_parse_head(buf, n, LIMIT, &r), CRSH_PARSE_OK);
    n = put_head(buf, "k", LIMIT + 1);
    assert_int_equal(crsh_parse_head(buf, n, LIMIT, &r), CRSH_PARSE_BAD);
}

static void test_greeting_and_status(void **state)
{
    (void)state;
    uint8_t out[CRSH_STATUS_MAX];
    assert_int_equal(crsh_greeting(out), 4);
    assert_memory_equal(out, "\x01\x02\x00\x01", 4);
    assert_int_equal(crsh_status(out, CRSH_NOOP, "ignored"), 1);
    assert_int_equal(out[0], CRSH_NOOP);
    assert_int_equal(crsh_status(out, CRSH_ERR, "no"), 4);
    assert_memory_equal(out, "\x02\x02no", 4);
    assert_int_equal(crsh_value_head(out, 300), 9);
    uint64_t len;
    memcpy(&len, out + 1, 8);
    assert_int_equal(out[0], CRSH_OK);
    assert_int_equal(len, 300);
}

/* Long messages are cut to 255 bytes, never inside a character. */
static void test_msg_cut(void **state)
{
    (void)state;
    uint8_t out[1 + CRSH_MSG_MAX];
    char text[600];
    text[0] = 'x'; /* then 2-byte characters: a cut at 255 would split one */
    for (size_t i = 0; i < 200; i++)
        memcpy(text + 1 + 2 * i, "\xc3\xa9", 2);
    text[401] = '\0';
    size_t n = crsh_msg(out, text);
    assert_int_equal(out[0], 255); /* byte 255 starts a character */
    assert_int_equal(n, 256);
    crsh_msg(out, text + 1);
    assert_int_equal(out[0], 254); /* byte 255 is inside one */
    assert_memory_equal(out + 1, text + 1, 254);
    memset(text, 'a', 254);
    memcpy(text + 254, "\xe2\x82\xac", 4); /* a 3-byte character at 254 */
    crsh_msg(out, text);
    assert_int_equal(out[0], 254);
    memset(text, 0x80, 400); /* not UTF-8: cut at the limit */
    text[400] = '\0';
    crsh_msg(out, text);
    assert_int_equal(out[0], 255);
    assert_int_equal(crsh_msg(out, NULL), 1);
    assert_int_equal(out[0], 0);
}

static void test_info(void **state)
{
    (void)state;
    const char *diag[] = { "one", "two" };
    uint8_t out[4 * (1 + CRSH_MSG_MAX) + 1];
    size_t n = crsh_info(out, "acache", diag, 2);
    assert_int_equal(n, 1 + 6 + 1 + 4 + 4);
    assert_memory_equal(out, "\x06" "acache" "\x02" "\x03one" "\x03two", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_head),
        cmocka_unit_test(test_get_remove_stop_info),
        cmocka_unit_test(test_short_key),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_greeting_and_status),
        cmocka_unit_test(test_msg_cut),
        cmocka_unit_test(test_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
