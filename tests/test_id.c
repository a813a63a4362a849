/*
 * test_id.c - ids (hex, base64, SHA-256), key derivation, spec strings and
 * the size and duration parsers.
 */
#include "testutil.h"
#include "core/backend.h"

#include <string.h>

static void test_hex(void **state)
{
    (void)state;
    acache_id id, back;
    for (int i = 0; i < ACACHE_ID_SIZE; i++)
        id.bytes[i] = (uint8_t)(i * 37 + 5);
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(&id, hex);
    assert_int_equal(strlen(hex), 64);
    assert_int_equal(acache_id_from_hex(hex, 64, &back), ACACHE_OK);
    assert_memory_equal(&id, &back, sizeof id);
    for (char *p = hex; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(acache_id_from_hex(hex, 64, &back), ACACHE_OK);
    assert_memory_equal(&id, &back, sizeof id);
    assert_int_equal(acache_id_from_hex(hex, 63, &back), ACACHE_EINVAL);
    assert_int_equal(acache_id_from_hex(hex, 0, &back), ACACHE_EINVAL);
    hex[10] = 'g';
    assert_int_equal(acache_id_from_hex(hex, 64, &back), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "position 10"));
}

static void test_base64(void **state)
{
    (void)state;
    acache_id id, back;
    acache_id_of_bytes("", 0, &id);
    char b64[ACACHE_ID_BASE64_SIZE];
    acache_id_to_base64(&id, b64);
    /* SHA-256 of nothing, as the go command sends it. */
    assert_string_equal(b64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    assert_int_equal(acache_id_from_base64(b64, strlen(b64), &back), ACACHE_OK);
    assert_memory_equal(&id, &back, sizeof id);
    assert_int_equal(acache_id_from_base64(b64, 43, &back), ACACHE_EINVAL);
    assert_int_equal(acache_id_from_base64("AAAA", 4, &back), ACACHE_EINVAL);
    /* 31 bytes: 44 characters but two '='. */
    assert_int_equal(acache_id_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", 44, &back),
                     ACACHE_EINVAL);
    char bad[ACACHE_ID_BASE64_SIZE];
    memcpy(bad, b64, sizeof bad);
    bad[5] = '*';
    assert_int_equal(acache_id_from_base64(bad, 44, &back), ACACHE_EINVAL);
}

static void test_key_derive(void **state)
{
    (void)state;
    acache_id a, b, c;
    acache_part ab[] = { { "ab", 2 }, { "c", 1 } };
    acache_part a_bc[] = { { "a", 1 }, { "bc", 2 } };
    assert_int_equal(acache_key_derive(&a, "ns", ab, 2), ACACHE_OK);
    assert_int_equal(acache_key_derive(&b, "ns", a_bc, 2), ACACHE_OK);
    assert_memory_not_equal(&a, &b, sizeof a); /* no collision by concatenation */
    assert_int_equal(acache_key_derive(&c, "other", ab, 2), ACACHE_OK);
    assert_memory_not_equal(&a, &c, sizeof a); /* namespaces separate */
    assert_int_equal(acache_key_derive(&c, "ns", ab, 2), ACACHE_OK);
    assert_memory_equal(&a, &c, sizeof a); /* deterministic */
    assert_int_equal(acache_key_derive(&c, "", NULL, 0), ACACHE_OK);
    assert_int_equal(acache_key_derive(&c, NULL, ab, 2), ACACHE_EINVAL);
    acache_part bad[] = { { NULL, 3 } };
    assert_int_equal(acache_key_derive(&c, "ns", bad, 1), ACACHE_EINVAL);
}

static void test_spec(void **state)
{
    (void)state;
    spec s;
    assert_int_equal(spec_parse("disk:/a/b?max-size=10G&max-age=30d", &s), ACACHE_OK);
    assert_string_equal(s.scheme, "disk");
    assert_string_equal(s.path, "/a/b");
    assert_string_equal(spec_get(&s, "max-size"), "10G");
    assert_int_equal(spec_check_unused(&s), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "max-age"));
    assert_string_equal(spec_get(&s, "max-age"), "30d");
    assert_int_equal(spec_check_unused(&s), ACACHE_OK);
    assert_null(spec_get(&s, "nope"));
    spec_free(&s);
    assert_int_equal(spec_parse("/plain/path", &s), ACACHE_OK);
    assert_string_equal(s.scheme, "disk");
    assert_string_equal(s.path, "/plain/path");
    spec_free(&s);
    assert_int_equal(spec_parse("mem:?max-size=1M&", &s), ACACHE_OK);
    assert_string_equal(s.path, "");
    assert_int_equal(s.nopts, 1);
    spec_free(&s);
    assert_int_equal(spec_parse("", &s), ACACHE_EINVAL);
    assert_int_equal(spec_parse("nocolon", &s), ACACHE_EINVAL);
    assert_int_equal(spec_parse("disk:/x?=v", &s), ACACHE_EINVAL);
    assert_int_equal(spec_parse("disk:/x?k", &s), ACACHE_EINVAL);

    acache_store *st = NULL;
    assert_int_equal(acache_open("ftp://example/x", &st), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "ftp"));
    assert_null(st);
}

static void test_sizes_durations(void **state)
{
    (void)state;
    uint64_t n;
    assert_int_equal(parse_size("0", &n), ACACHE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(parse_size("512", &n), ACACHE_OK);
    assert_int_equal(n, 512);
    assert_int_equal(parse_size("4k", &n), ACACHE_OK);
    assert_int_equal(n, 4096);
    assert_int_equal(parse_size("10G", &n), ACACHE_OK);
    assert_int_equal(n, 10ull << 30);
    assert_int_equal(parse_size("2T", &n), ACACHE_OK);
    assert_int_equal(n, 2ull << 40);
    assert_int_equal(parse_size("", &n), ACACHE_EINVAL);
    assert_int_equal(parse_size("-1", &n), ACACHE_EINVAL);
    assert_int_equal(parse_size("10X", &n), ACACHE_EINVAL);
    assert_int_equal(parse_size("10MB", &n), ACACHE_EINVAL);
    assert_int_equal(parse_size("99999999999999999999", &n), ACACHE_EINVAL);
    assert_int_equal(parse_size("99999999999T", &n), ACACHE_EINVAL);
    int64_t d;
    assert_int_equal(parse_duration_ns("30d", &d), ACACHE_OK);
    assert_int_equal(d, 30LL * 86400 * 1000000000LL);
    assert_int_equal(parse_duration_ns("10m", &d), ACACHE_OK);
    assert_int_equal(d, 600LL * 1000000000LL);
    assert_int_equal(parse_duration_ns("300ms", &d), ACACHE_OK);
    assert_int_equal(d, 300LL * 1000000LL);
    assert_int_equal(parse_duration_ns("5", &d), ACACHE_OK);
    assert_int_equal(d, 5LL * 1000000000LL);
    assert_int_equal(parse_duration_ns("1w", &d), ACACHE_EINVAL);
    assert_int_equal(parse_duration_ns("ms", &d), ACACHE_EINVAL);
    bool b;
    assert_int_equal(parse_bool("k", "on", &b), ACACHE_OK);
    assert_true(b);
    assert_int_equal(parse_bool("k", "off", &b), ACACHE_OK);
    assert_false(b);
    assert_int_equal(parse_bool("k", "perhaps", &b), ACACHE_EINVAL);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(acache_status_str(ACACHE_OK), "ok");
    assert_string_equal(acache_status_str(ACACHE_MISS), "miss");
    assert_string_equal(acache_status_str(ACACHE_ENOSPC), "no space left");
    assert_string_equal(acache_status_str((acache_status)-99), "unknown status");
}

/* Credentials out of any text: the user information of every URL (to its
 * last '@' before the path), secret-looking option values; nothing else. */
static void test_redact(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "http://alice:p@ss:w%40rd@host:1/c?mode=ro", "http://***@host:1/c?mode=ro" },
        { "redis://:pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0" },
        { "redis://h:1/0?prefix=a@b", "redis://h:1/0?prefix=a@b" },
        { "GET http://u:x@y@h/ac/00: URL using bad format", "GET http://***@h/ac/00: URL using bad format" },
        { "a http://u:1@h and https://v:2@k/x", "a http://***@h and https://***@k/x" },
        { "s3://b?token=abc&key=K1&access-key=A2&key-file=/k&x=1",
          "s3://b?token=***&key=***&access-key=***&key-file=/k&x=1" },
        { "option 'password=hunter2' refused", "option 'password=***' refused" },
        { "disk:/var/cache/acache?max-size=1G", "disk:/var/cache/acache?max-size=1G" },
        { "monkey=1 turnkey=2 keys=3", "monkey=1 turnkey=2 keys=3" },
        { "", "" },
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        acache_redact(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].out);
    }
    acache_redact("http://alice:secret@host/", out, 12); /* cut, still hidden */
    assert_string_equal(out, "http://***@");
    /* The library's messages pass through it. */
    acache_store *s = NULL;
    assert_int_not_equal(acache_open("http://u:p@ss@h/c?oops&token=t0k", &s), ACACHE_OK);
    assert_null(strstr(acache_last_error(), "p@ss"));
    assert_null(strstr(acache_last_error(), "t0k"));
    assert_int_equal(acache_set_error(ACACHE_EIO, "at redis://a:b@c/0"), ACACHE_EIO);
    assert_string_equal(acache_last_error(), "at redis://***@c/0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_key_derive),
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_sizes_durations),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
