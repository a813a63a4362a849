/*
 * test_remote_format.c - what remotes hold, without a server: action
 * records (an ActionResult message, signed or not) and object framing
 * (raw, zstd, escaped raw), including every way a stored value can be
 * malformed, cut short or too long.
 */
#include "testutil.h"

#include "core/backend.h"
#include "remote/remote.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char KEY1[] = "0123456789abcdef-key-one";
static const unsigned char KEY2[] = "0123456789abcdef-key-two";

static remote_record sample_record(uint32_t n)
{
    remote_record r = { .contents = NULL };
    acache_id_of_bytes(&n, sizeof n, &r.output);
    r.size = 1000u + n;
    r.time_ns = 1700000000123456789LL + n;
    return r;
}

static void test_record_roundtrip(void **state)
{
    (void)state;
    unsigned char buf[REMOTE_RECORD_MAX];
    acache_id action = tu_id(1);
    remote_record in = sample_record(1), out;
    size_t n = record_encode(&action, &in, NULL, 0, buf);
    assert_true(n > 0 && n <= REMOTE_RECORD_MAX);
    assert_int_equal(record_decode(buf, n, &action, NULL, 0, &out), ACACHE_OK);
    assert_memory_equal(&out.output, &in.output, sizeof in.output);
    assert_int_equal(out.size, in.size);
    assert_int_equal(out.time_ns, in.time_ns);
    /* An empty object at time 0: zero fields are left out and still read. */
    in.size = 0;
    in.time_ns = 0;
    n = record_encode(&action, &in, NULL, 0, buf);
    assert_int_equal(record_decode(buf, n, &action, NULL, 0, &out), ACACHE_OK);
    assert_int_equal(out.size, 0);
    assert_int_equal(out.time_ns, 0);
}

/* A record carrying its object (OutputFile.contents, field 5): decoded,
 * contents point at those bytes in the buffer; a record without them, or
 * with contents of another length than the digest's size, has none; the
 * largest inline object fits in REMOTE_RECORD_MAX with a signature. */
static void test_record_contents(void **state)
{
    (void)state;
    static unsigned char body[REMOTE_INLINE_MAX];
    unsigned char buf[REMOTE_RECORD_MAX];
    acache_id action = tu_id(2);
    tu_fill(body, sizeof body, 3);
    remote_record in = sample_record(2), out;
    in.size = 300;
    in.contents = body;
    size_t n = record_encode(&action, &in, KEY1, sizeof KEY1 - 1, buf);
    assert_int_equal(record_decode(buf, n, &action, KEY1, sizeof KEY1 - 1, &out), ACACHE_OK);
    assert_int_equal(out.size, 300);
    assert_non_null(out.contents);
    assert_true(out.contents > buf && out.contents + 300 <= buf + n);
    assert_memory_equal(out.contents, body, 300);

    in.size = REMOTE_INLINE_MAX;
    n = record_encode(&action, &in, KEY1, sizeof KEY1 - 1, buf);
    assert_true(n > REMOTE_INLINE_MAX && n <= REMOTE_RECORD_MAX);
    assert_int_equal(record_decode(buf, n, &action, KEY1, sizeof KEY1 - 1, &out), ACACHE_OK);
    assert_memory_equal(out.contents, body, REMOTE_INLINE_MAX);

    in.contents = NULL;
    n = record_encode(&action, &in, NULL, 0, buf);
    assert_true(n < 512);
    assert_int_equal(record_decode(buf, n, &action, NULL, 0, &out), ACACHE_OK);
    assert_null(out.contents);

    /* Contents one byte shorter than the digest's size: ignored. The
     * digest's size_bytes (field 2, varint: 0x10 0xac 0x02 for 300) is
     * made to say 301 (0x10 0xad 0x02), the same length. */
    in.size = 300;
    n = record_encode(&action, &in, NULL, 0, buf);
    unsigned char *p = memmem(buf, n, "\x10\xac\x02", 3);
    assert_non_null(p);
    p[1] = 0xad;
    assert_int_equal(record_decode(buf, n, &action, NULL, 0, &out), ACACHE_OK);
    assert_int_equal(out.size, 301);
    assert_null(out.contents);
}

/* The first bytes of the message, as bazel-remote would parse them:
 * field 2 (output_files), length-delimited, then the OutputFile's path. */
static void test_record_is_an_action_result(void **state)
{
    (void)state;
    unsigned char buf[REMOTE_RECORD_MAX];
    acache_id action = tu_id(2);
    remote_record in = sample_record(2);
    size_t n = record_encode(&action, &in, NULL, 0, buf);
    assert_int_equal(buf[0], (2 << 3) | 2);
    assert_int_equal(buf[2], (1 << 3) | 2);
    assert_int_equal(buf[3], strlen("acache-output"));
    assert_memory_equal(buf + 4, "acache-output", 13);
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&in.output, hex);
    assert_non_null(memmem(buf, n, hex, 64));
    /* execution_metadata (field 9) comes after, in field order. */
    assert_int_equal(buf[2 + buf[1]], (9 << 3) | 2);
}

static void test_record_signatures(void **state)
{
    (void)state;
    unsigned char buf[REMOTE_RECORD_MAX];
    acache_id action = tu_id(3), other = tu_id(4);
    remote_record in = sample_record(3), out;
    size_t plain = record_encode(&action, &in, NULL, 0, buf);
    /* Unsigned records are refused once a key is set... */
    assert_int_equal(record_decode(buf, plain, &action, KEY1, sizeof KEY1 - 1, &out), ACACHE_CORRUPT);
    assert_non_null(strstr(acache_last_error(), "not signed"));

    size_t n = record_encode(&action, &in, KEY1, sizeof KEY1 - 1, buf);
    /* ...signed ones are read with the key, and without any key. */
    assert_int_equal(record_decode(buf, n, &action, KEY1, sizeof KEY1 - 1, &out), ACACHE_OK);
    assert_int_equal(record_decode(buf, n, &action, NULL, 0, &out), ACACHE_OK);
    /* Another key, or the record moved under another action: refused. */
    assert_int_equal(record_decode(buf, n, &action, KEY2, sizeof KEY2 - 1, &out), ACACHE_CORRUPT);
    assert_non_null(strstr(acache_last_error(), "signature"));
    assert_int_equal(record_decode(buf, n, &other, KEY1, sizeof KEY1 - 1, &out), ACACHE_CORRUPT);
    /* The signature covers the size and time: changing either changes it. */
    unsigned char *sig = memmem(buf, n, " hmac-sha256=", 13);
    assert_non_null(sig);
    remote_record changed = in;
    changed.size++;
    unsigned char other_buf[REMOTE_RECORD_MAX];
    size_t on = record_encode(&action, &changed, KEY1, sizeof KEY1 - 1, other_buf);
    unsigned char *other_sig = memmem(other_buf, on, " hmac-sha256=", 13);
    assert_non_null(other_sig);
    assert_memory_not_equal(sig + 13, other_sig + 13, 64);
    changed = in;
    changed.time_ns++;
    on = record_encode(&action, &changed, KEY1, sizeof KEY1 - 1, other_buf);
    other_sig = memmem(other_buf, on, " hmac-sha256=", 13);
    assert_memory_not_equal(sig + 13, other_sig + 13, 64);
    /* A flipped signature digit: refused. */
    for (size_t i = 0; i < 64; i++) {
        buf[sig - buf + 13 + i] ^= 1;
        assert_int_equal(record_decode(buf, n, &action, KEY1, sizeof KEY1 - 1, &out), ACACHE_CORRUPT);
        buf[sig - buf + 13 + i] ^= 1;
    }
}

static void test_record_malformed(void **state)
{
    (void)state;
    unsigned char buf[REMOTE_RECORD_MAX];
    acache_id action = tu_id(5);
    remote_record in = sample_record(5), out;
    size_t n = record_encode(&action, &in, KEY1, sizeof KEY1 - 1, buf);
    /* Every truncation and every single-byte flip: never a crash, and a
     * truncation is never read as the record. */
    for (size_t len = 0; len < n; len++) {
        acache_status st = record_decode(buf, len, &action, NULL, 0, &out);
        if (st == ACACHE_OK)
            assert_true(memcmp(&out.output, &in.output, sizeof in.output) != 0 ||
                        out.size != in.size || out.time_ns != in.time_ns);
        else
            assert_int_equal(st, ACACHE_CORRUPT);
    }
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (unsigned char)(1 << bit);
            acache_status st = record_decode(buf, n, &action, KEY1, sizeof KEY1 - 1, &out);
            assert_true(st == ACACHE_CORRUPT || st == ACACHE_OK);
            buf[i] ^= (unsigned char)(1 << bit);
        }
    }
    /* Random bytes. */
    for (uint32_t seed = 0; seed < 2000; seed++) {
        unsigned char junk[200];
        size_t len = seed % sizeof junk;
        tu_fill(junk, len, seed);
        acache_status st = record_decode(junk, len, &action, NULL, 0, &out);
        assert_true(st == ACACHE_CORRUPT || st == ACACHE_OK);
    }
    /* Text, as another tool might have left under ac/. */
    const char *text = "acache-action-v1 not a protobuf\n";
    assert_int_equal(record_decode((const unsigned char *)text, strlen(text), &action, NULL, 0, &out),
                     ACACHE_CORRUPT);
}

/* Collects decoded bytes. */
typedef struct collect {
    unsigned char *buf;
    size_t len, cap;
} collect;

static acache_status collect_write(void *ctx, const void *data, size_t len)
{
    collect *c = ctx;
    assert_true(c->len + len <= c->cap);
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    return ACACHE_OK;
}

/* Decodes stored[0..len) expecting size bytes, fed step bytes at a time. */
static acache_status decode(const void *stored, size_t len, uint64_t size, size_t step,
                            collect *c)
{
    remote_sink down = { collect_write, c };
    object_decoder d;
    object_decoder_init(&d, size, &down);
    remote_sink in = object_decoder_sink(&d);
    acache_status st = ACACHE_OK;
    for (size_t pos = 0; pos < len && st == ACACHE_OK; pos += step) {
        size_t n = len - pos < step ? len - pos : step;
        st = in.write(in.ctx, (const unsigned char *)stored + pos, n);
    }
    if (st == ACACHE_OK)
        st = object_decoder_finish(&d);
    object_decoder_free(&d);
    return st;
}

static void roundtrip(const unsigned char *bytes, size_t size, int level, bool expect_framed)
{
    remote_encoded enc;
    assert_int_equal(object_encode(bytes, size, level, NULL, &enc), ACACHE_OK);
    assert_int_equal(enc.owned != NULL, expect_framed);
    assert_true(enc.len <= object_stored_limit(size));
    const size_t steps[] = { 1, 3, 17, 4096, (size_t)-1 };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        collect c = { malloc(size + 1), 0, size + 1 };
        assert_int_equal(decode(enc.data, enc.len, size, steps[i], &c), ACACHE_OK);
        assert_int_equal(c.len, size);
        assert_memory_equal(c.buf, bytes, size);
        free(c.buf);
    }
    object_encoded_free(&enc);
}

static void test_object_framing(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    unsigned char *text = malloc(big), *noise = malloc(big);
    for (size_t i = 0; i < big; i++)
        text[i] = (unsigned char)"the quick brown fox jumps over the lazy dog\n"[i % 44];
    tu_fill(noise, big, 9);
    roundtrip(text, big, 0, false);      /* raw */
    roundtrip(text, big, 3, true);       /* zstd */
    roundtrip(noise, big, 3, false);     /* does not compress: raw */
    roundtrip(text, 0, 3, false);        /* empty */
    roundtrip(text, 10, 19, false);      /* too small to compress */
    /* Raw bytes that begin with the frame magic are escaped... */
    unsigned char magic[100] = { 0x89, 'A', 'C', 'A', 'C', 'H', 'E', 0x1a };
    tu_fill(magic + 8, sizeof magic - 8, 3);
    roundtrip(magic, sizeof magic, 0, true);
    roundtrip(magic, 8, 0, true);
    /* ...and shorter prefixes of it are plain raw. */
    for (size_t n = 1; n < 8; n++)
        roundtrip(magic, n, 0, false);
    free(text);
    free(noise);
}

static void test_object_corrupt(void **state)
{
    (void)state;
    size_t size = 100000;
    unsigned char *text = malloc(size);
    for (size_t i = 0; i < size; i++)
        text[i] = (unsigned char)('a' + i % 7);
    remote_encoded enc;
    assert_int_equal(object_encode(text, size, 3, NULL, &enc), ACACHE_OK);
    assert_non_null(enc.owned);
    unsigned char *copy = malloc(enc.len + REMOTE_OBJ_HEADER + 1000);
    collect c = { malloc(size + 1), 0, size + 1 };
    /* Cut short anywhere: corrupt. */
    for (size_t len = 0; len < enc.len; len += 1 + len / 4) {
        c.len = 0;
        assert_int_equal(decode(enc.data, len, size, 1000, &c), ACACHE_CORRUPT);
    }
    /* Trailing bytes after the frame: corrupt. */
    memcpy(copy, enc.data, enc.len);
    memcpy(copy + enc.len, "junkjunkjunk", 10);
    c.len = 0;
    assert_int_equal(decode(copy, enc.len + 10, size, 1000, &c), ACACHE_CORRUPT);
    /* Header size disagreeing with the record, unknown method. */
    c.len = 0;
    assert_int_equal(decode(enc.data, enc.len, size - 1, 1000, &c), ACACHE_CORRUPT);
    memcpy(copy, enc.data, enc.len);
    copy[8] = 7;
    c.len = 0;
    assert_int_equal(decode(copy, enc.len, size, 1000, &c), ACACHE_CORRUPT);
    /* A raw object longer or shorter than its record: corrupt, and never
     * more than the record's size delivered. */
    c.len = 0;
    assert_int_equal(decode(text, size, size - 10, 1000, &c), ACACHE_CORRUPT);
    assert_true(c.len <= size - 10);
    c.len = 0;
    assert_int_equal(decode(text, size - 10, size, 1000, &c), ACACHE_CORRUPT);
    /* Garbage behind a valid header. */
    memcpy(copy, enc.data, REMOTE_OBJ_HEADER);
    tu_fill(copy + REMOTE_OBJ_HEADER, 1000, 4);
    c.len = 0;
    assert_int_equal(decode(copy, REMOTE_OBJ_HEADER + 1000, size, 100, &c), ACACHE_CORRUPT);
    free(c.buf);
    free(copy);
    free(text);
    object_encoded_free(&enc);
}

static acache_status refuse_write(void *ctx, const void *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return ACACHE_ENOSPC;
}

/* The downstream sink's own failure comes back as it is. */
/* Counts the pieces a decoder hands down. */
static acache_status count_write(void *ctx, const void *data, size_t len)
{
    (void)data;
    size_t *pieces = ctx;
    (*pieces)++;
    assert_true(len > 0);
    return ACACHE_OK;
}

/* Raw bytes that arrive in one piece go down in one piece: the head the
 * decoder looks at is not written apart from the rest (one write(2) more
 * per fetched object). */
static void test_object_raw_one_piece(void **state)
{
    (void)state;
    unsigned char bytes[4096];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 7 + 1);
    size_t pieces = 0;
    remote_sink down = { count_write, &pieces };
    object_decoder d;
    object_decoder_init(&d, sizeof bytes, &down);
    remote_sink in = object_decoder_sink(&d);
    assert_int_equal(in.write(in.ctx, bytes, sizeof bytes), ACACHE_OK);
    assert_int_equal(object_decoder_finish(&d), ACACHE_OK);
    object_decoder_free(&d);
    assert_int_equal(pieces, 1);
    /* One piece longer than the record says is refused, as before. */
    pieces = 0;
    object_decoder_init(&d, sizeof bytes - 1, &down);
    in = object_decoder_sink(&d);
    assert_int_equal(in.write(in.ctx, bytes, sizeof bytes), ACACHE_CORRUPT);
    object_decoder_free(&d);
    assert_int_equal(pieces, 0);
}

static void test_object_sink_failure(void **state)
{
    (void)state;
    unsigned char bytes[300];
    tu_fill(bytes, sizeof bytes, 1);
    remote_sink down = { refuse_write, NULL };
    object_decoder d;
    object_decoder_init(&d, sizeof bytes, &down);
    remote_sink in = object_decoder_sink(&d);
    assert_int_equal(in.write(in.ctx, bytes, sizeof bytes), ACACHE_ENOSPC);
    object_decoder_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_record_contents),
        cmocka_unit_test(test_record_is_an_action_result),
        cmocka_unit_test(test_record_signatures),
        cmocka_unit_test(test_record_malformed),
        cmocka_unit_test(test_object_framing),
        cmocka_unit_test(test_object_corrupt),
        cmocka_unit_test(test_object_raw_one_piece),
        cmocka_unit_test(test_object_sink_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
