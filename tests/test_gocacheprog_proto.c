/*
 * test_gocacheprog_proto.c - unit tests of the GOCACHEPROG wire format
 * (src/prog/wire.h, wire_*.c): request parsing, put body decoding, response
 * formatting. Pure functions, so no process and no store is involved; the
 * end-to-end tests of the server are in test_gocacheprog.sh.
 *
 * The parser lives with the command, not in the library; tests/CMakeLists.txt
 * compiles it into this program.
 */
#include "testutil.h"

#include "prog/wire.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static acache_id id_n(uint8_t n)
{
    acache_id id;
    for (size_t i = 0; i < ACACHE_ID_SIZE; i++)
        id.bytes[i] = (uint8_t)(n + i * 7);
    return id;
}

static const char *b64(acache_id id, char buf[ACACHE_ID_BASE64_SIZE])
{
    acache_id_to_base64(&id, buf);
    return buf;
}

static gcp_parse_status parse(const char *line, gcp_request *req, char msg[GCP_MSG_SIZE])
{
    return gcp_parse_request(line, strlen(line), req, msg);
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */

static void test_get(void **state)
{
    (void)state;
    char line[256], a[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;
    acache_id action = id_n(1);

    snprintf(line, sizeof line, "{\"ID\":7,\"Command\":\"get\",\"ActionID\":\"%s\"}",
             b64(action, a));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.id, 7);
    assert_int_equal(req.command, GCP_CMD_GET);
    assert_true(req.has_action);
    assert_memory_equal(req.action.bytes, action.bytes, ACACHE_ID_SIZE);
    assert_false(gcp_request_has_body(&req));
}

/* The get as the go command writes it is read without jansson; every
 * near miss of that shape must still get jansson's answer. */
static void test_get_plain_and_near_misses(void **state)
{
    (void)state;
    char a[ACACHE_ID_BASE64_SIZE], esc[96], line[512], msg[GCP_MSG_SIZE];
    acache_id action = id_n(0xfb); /* base64 with '/' and '+' in it */
    b64(action, a);
    assert_non_null(strchr(a, '/'));
    size_t e = 0;
    for (const char *p = a; *p; p++) {
        if (*p == '/')
            esc[e++] = '\\';
        esc[e++] = *p;
    }
    esc[e] = '\0';
    static const struct {
        const char *fmt; /* %s: the ActionID's base64 */
        gcp_parse_status st;
        int64_t id;
    } cases[] = {
        { "{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"%s\"}", GCP_PARSE_OK, 1 },
        { "{\"ID\":0,\"Command\":\"get\",\"ActionID\":\"%s\"}", GCP_PARSE_OK, 0 },
        { "{\"ID\":123456789012345678,\"Command\":\"get\",\"ActionID\":\"%s\"} \t\r",
          GCP_PARSE_OK, 123456789012345678 },
        { "{\"ID\":9223372036854775807,\"Command\":\"get\",\"ActionID\":\"%s\"}", GCP_PARSE_OK,
          INT64_MAX },
        { "{\"ID\":-5,\"Command\":\"get\",\"ActionID\":\"%s\"}", GCP_PARSE_OK, -5 },
        { "{\"ID\":7, \"Command\":\"get\",\"ActionID\":\"%s\"}", GCP_PARSE_OK, 7 },
        { "{\"ID\":7,\"Command\":\"get\",\"ActionID\":\"%s\",\"BodySize\":0}", GCP_PARSE_OK, 7 },
        { "{\"ID\":7,\"Command\":\"get\",\"ActionID\":\"%s\"}x", GCP_PARSE_FATAL, 0 },
        { "{\"ID\":7,\"Command\":\"get\",\"ActionID\":\"%s\"}}", GCP_PARSE_FATAL, 0 },
        { "{\"ID\":07,\"Command\":\"get\",\"ActionID\":\"%s\"}", GCP_PARSE_FATAL, 0 },
        { "{\"ID\":99999999999999999999,\"Command\":\"get\",\"ActionID\":\"%s\"}",
          GCP_PARSE_FATAL, 0 },
        { "{\"ID\":7,\"Command\":\"get\",\"ActionID\":\"%.43s!\"}", GCP_PARSE_ERR, 7 },
        { "{\"ID\":7,\"Command\":\"get\",\"ActionID\":\"%.43s\"}", GCP_PARSE_ERR, 7 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gcp_request req;
        snprintf(line, sizeof line, cases[i].fmt, a);
        gcp_parse_status st = parse(line, &req, msg);
        if (st != cases[i].st)
            fail_msg("%s: status %d, want %d (%s)", line, st, cases[i].st, msg);
        if (st == GCP_PARSE_FATAL)
            continue;
        assert_int_equal(req.id, cases[i].id);
        assert_int_equal(req.command, GCP_CMD_GET);
        if (st == GCP_PARSE_OK) {
            assert_true(req.has_action);
            assert_memory_equal(req.action.bytes, action.bytes, ACACHE_ID_SIZE);
            assert_string_equal(msg, "");
        } else {
            assert_true(msg[0] != '\0');
        }
    }
    /* An escaped '/' is the same id. */
    gcp_request req;
    snprintf(line, sizeof line, "{\"ID\":3,\"Command\":\"get\",\"ActionID\":\"%s\"}", esc);
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_memory_equal(req.action.bytes, action.bytes, ACACHE_ID_SIZE);
    /* Cut short anywhere: never read past the end, never OK. */
    snprintf(line, sizeof line, "{\"ID\":3,\"Command\":\"get\",\"ActionID\":\"%s\"}", a);
    for (size_t n = 0; n < strlen(line); n++) {
        char *cut = malloc(n ? n : 1);
        memcpy(cut, line, n);
        assert_int_not_equal(gcp_parse_request(cut, n, &req, msg), GCP_PARSE_OK);
        free(cut);
    }
}

static void test_put(void **state)
{
    (void)state;
    char line[256], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;
    acache_id action = id_n(1), output = id_n(2);

    snprintf(line, sizeof line,
             "{\"ID\":8,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\","
             "\"BodySize\":12345}",
             b64(action, a), b64(output, o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.id, 8);
    assert_int_equal(req.command, GCP_CMD_PUT);
    assert_memory_equal(req.action.bytes, action.bytes, ACACHE_ID_SIZE);
    assert_true(req.has_output);
    assert_memory_equal(req.output.bytes, output.bytes, ACACHE_ID_SIZE);
    assert_int_equal(req.body_size, 12345);
    assert_true(gcp_request_has_body(&req));
}

static void test_put_empty_body(void **state)
{
    (void)state;
    char line[256], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;

    /* Go leaves BodySize out when it is 0 (omitempty). */
    snprintf(line, sizeof line, "{\"ID\":9,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\"}",
             b64(id_n(1), a), b64(id_n(2), o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.body_size, 0);
    assert_false(gcp_request_has_body(&req));
}

static void test_close(void **state)
{
    (void)state;
    char msg[GCP_MSG_SIZE];
    gcp_request req;

    assert_int_equal(parse("{\"ID\":3,\"Command\":\"close\"}", &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.id, 3);
    assert_int_equal(req.command, GCP_CMD_CLOSE);
    /* Surrounding whitespace and a CR are fine. */
    assert_int_equal(parse("  {\"Command\":\"close\", \"ID\":4}\r", &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.id, 4);
}

static void test_put_object_id_only(void **state)
{
    (void)state;
    char line[256], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;
    acache_id output = id_n(5);

    /* Go 1.21-1.23. */
    snprintf(line, sizeof line,
             "{\"ID\":1,\"Command\":\"put\",\"ActionID\":\"%s\",\"ObjectID\":\"%s\",\"BodySize\":3}",
             b64(id_n(1), a), b64(output, o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_memory_equal(req.output.bytes, output.bytes, ACACHE_ID_SIZE);
}

static void test_put_both_ids(void **state)
{
    (void)state;
    char line[300], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE],
        ob[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;
    acache_id output = id_n(5), object = id_n(6);

    snprintf(line, sizeof line,
             "{\"ID\":1,\"Command\":\"put\",\"ActionID\":\"%s\",\"ObjectID\":\"%s\","
             "\"OutputID\":\"%s\",\"BodySize\":3}",
             b64(id_n(1), a), b64(object, ob), b64(output, o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_memory_equal(req.output.bytes, output.bytes, ACACHE_ID_SIZE);

    /* A null OutputID counts as absent. */
    snprintf(line, sizeof line,
             "{\"ID\":1,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":null,"
             "\"ObjectID\":\"%s\"}",
             b64(id_n(1), a), b64(object, ob));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_memory_equal(req.output.bytes, object.bytes, ACACHE_ID_SIZE);
}

/* Fields the go command might add later are ignored, wherever they stand
 * and whatever they hold; the put of a Go 1.24 built with the cacheprog
 * experiment (ObjectID after BodySize) reads as the OutputID it repeats. */
static void test_unknown_fields(void **state)
{
    (void)state;
    char line[512], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;
    acache_id action = id_n(3), output = id_n(4);

    snprintf(line, sizeof line,
             "{\"Hint\":\"x\",\"ID\":5,\"Command\":\"get\",\"ActionID\":\"%s\","
             "\"Extra\":{\"A\":[1,null,{\"B\":true}]},\"N\":1.5}",
             b64(action, a));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.id, 5);
    assert_int_equal(req.command, GCP_CMD_GET);
    assert_memory_equal(req.action.bytes, action.bytes, ACACHE_ID_SIZE);

    snprintf(line, sizeof line,
             "{\"ID\":6,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\","
             "\"BodySize\":9,\"ObjectID\":\"%s\",\"Later\":\"field\"}",
             b64(action, a), b64(output, o), o);
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.command, GCP_CMD_PUT);
    assert_int_equal(req.body_size, 9);
    assert_memory_equal(req.output.bytes, output.bytes, ACACHE_ID_SIZE);

    assert_int_equal(parse("{\"ID\":7,\"Command\":\"close\",\"Reason\":\"done\"}", &req, msg),
                     GCP_PARSE_OK);
    assert_int_equal(req.command, GCP_CMD_CLOSE);
}

static void test_bad_base64_id(void **state)
{
    (void)state;
    char msg[GCP_MSG_SIZE];
    gcp_request req;

    /* 44 characters, but not base64. */
    assert_int_equal(parse("{\"ID\":11,\"Command\":\"get\",\"ActionID\":"
                           "\"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=\"}",
                           &req, msg),
                     GCP_PARSE_ERR);
    assert_int_equal(req.id, 11);
    assert_non_null(strstr(msg, "ActionID"));
    assert_non_null(strstr(msg, "base64"));
    /* Not a string at all. */
    assert_int_equal(parse("{\"ID\":12,\"Command\":\"get\",\"ActionID\":[1,2]}", &req, msg),
                     GCP_PARSE_ERR);
    assert_int_equal(req.id, 12);
}

static void test_wrong_id_length(void **state)
{
    (void)state;
    char msg[GCP_MSG_SIZE];
    gcp_request req;

    /* 16 bytes of base64. */
    assert_int_equal(
        parse("{\"ID\":13,\"Command\":\"get\",\"ActionID\":\"AAECAwQFBgcICQoLDA0ODw==\"}", &req, msg),
        GCP_PARSE_ERR);
    assert_int_equal(req.id, 13);
    assert_non_null(strstr(msg, "32 bytes"));
    /* 33 bytes. */
    assert_int_equal(parse("{\"ID\":14,\"Command\":\"get\",\"ActionID\":"
                           "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
                           &req, msg),
                     GCP_PARSE_ERR);
    /* Empty. */
    assert_int_equal(parse("{\"ID\":15,\"Command\":\"get\",\"ActionID\":\"\"}", &req, msg),
                     GCP_PARSE_ERR);
}

static void test_missing_fields(void **state)
{
    (void)state;
    char line[256], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;

    assert_int_equal(parse("{\"ID\":21,\"Command\":\"get\"}", &req, msg), GCP_PARSE_ERR);
    assert_int_equal(req.id, 21);
    assert_non_null(strstr(msg, "ActionID"));

    snprintf(line, sizeof line, "{\"ID\":22,\"Command\":\"put\",\"ActionID\":\"%s\",\"BodySize\":5}",
             b64(id_n(1), a));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_ERR);
    assert_int_equal(req.id, 22);
    assert_non_null(strstr(msg, "OutputID"));
    /* The body still follows and must be skipped. */
    assert_int_equal(req.command, GCP_CMD_PUT);
    assert_true(gcp_request_has_body(&req));

    snprintf(line, sizeof line, "{\"ID\":23,\"Command\":\"put\",\"OutputID\":\"%s\",\"BodySize\":5}",
             b64(id_n(1), o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_ERR);
    assert_non_null(strstr(msg, "ActionID"));
    assert_true(gcp_request_has_body(&req));

    assert_int_equal(parse("{\"ID\":24}", &req, msg), GCP_PARSE_ERR);
    assert_int_equal(req.id, 24);
    assert_non_null(strstr(msg, "Command"));
    assert_int_equal(parse("{\"ID\":25,\"Command\":7}", &req, msg), GCP_PARSE_ERR);
}

static void test_unknown_command(void **state)
{
    (void)state;
    char msg[GCP_MSG_SIZE];
    gcp_request req;

    assert_int_equal(parse("{\"ID\":31,\"Command\":\"stat\"}", &req, msg), GCP_PARSE_ERR);
    assert_int_equal(req.id, 31);
    assert_int_equal(req.command, GCP_CMD_UNKNOWN);
    assert_non_null(strstr(msg, "unknown command"));
    assert_non_null(strstr(msg, "stat"));
    /* Commands are case-sensitive. */
    assert_int_equal(parse("{\"ID\":32,\"Command\":\"GET\"}", &req, msg), GCP_PARSE_ERR);
    /* A long, non-ASCII name is quoted safely in the message. */
    assert_int_equal(parse("{\"ID\":33,\"Command\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
                           "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
                           "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}",
                           &req, msg),
                     GCP_PARSE_ERR);
    size_t len = 0;
    char *line = gcp_format_err(req.id, msg, &len);
    assert_non_null(line);
    free(line);
}

static void test_not_json(void **state)
{
    (void)state;
    char msg[GCP_MSG_SIZE];
    gcp_request req;
    static const char *const bad[] = {
        "hello",
        "{\"ID\":1,\"Command\":\"get\"",          /* truncated */
        "{\"ID\":1,\"Command\":\"get\"} trailing",
        "[1,2,3]",
        "\"QUJD\"",                              /* a body where a request belongs */
        "{\"Command\":\"close\"}",               /* no ID: nothing to answer */
        "{\"ID\":\"1\",\"Command\":\"close\"}",
        "{\"ID\":1.5,\"Command\":\"close\"}",
        "{\"ID\":null,\"Command\":\"close\"}",
        "",
        "   ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &req, msg), GCP_PARSE_FATAL);
        assert_true(msg[0] != '\0');
    }
    /* The length given is the whole line: no NUL is needed or read. */
    const char buf[] = "{\"ID\":1,\"Command\":\"close\"}garbage";
    assert_int_equal(gcp_parse_request(buf, 26, &req, msg), GCP_PARSE_OK);
    assert_int_equal(gcp_parse_request(buf, 25, &req, msg), GCP_PARSE_FATAL);
    /* An embedded NUL is not JSON. */
    const char nul[] = "{\"ID\":1,\"Command\":\"close\"}\0";
    assert_int_equal(gcp_parse_request(nul, sizeof nul - 1, &req, msg), GCP_PARSE_FATAL);
}

static void test_huge_ids(void **state)
{
    (void)state;
    char msg[GCP_MSG_SIZE];
    gcp_request req;

    assert_int_equal(parse("{\"ID\":9223372036854775807,\"Command\":\"close\"}", &req, msg),
                     GCP_PARSE_OK);
    assert_true(req.id == INT64_MAX);
    size_t len = 0;
    char *line = gcp_format_ok(req.id, &len);
    assert_string_equal(line, "{\"ID\":9223372036854775807}\n");
    assert_int_equal(len, strlen(line));
    free(line);

    assert_int_equal(parse("{\"ID\":-9223372036854775808,\"Command\":\"close\"}", &req, msg),
                     GCP_PARSE_OK);
    assert_true(req.id == INT64_MIN);
    /* Beyond int64 no answer could carry the ID back. */
    assert_int_equal(parse("{\"ID\":9223372036854775808,\"Command\":\"close\"}", &req, msg),
                     GCP_PARSE_FATAL);
    assert_int_equal(parse("{\"ID\":1e400,\"Command\":\"close\"}", &req, msg), GCP_PARSE_FATAL);
    assert_int_equal(
        parse("{\"ID\":123456789012345678901234567890,\"Command\":\"close\"}", &req, msg),
        GCP_PARSE_FATAL);
}

static void test_body_size(void **state)
{
    (void)state;
    char line[256], a[ACACHE_ID_BASE64_SIZE], o[ACACHE_ID_BASE64_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;

    snprintf(line, sizeof line,
             "{\"ID\":41,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\",\"BodySize\":-5}",
             b64(id_n(1), a), b64(id_n(2), o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_ERR);
    assert_int_equal(req.id, 41);
    assert_non_null(strstr(msg, "negative"));
    /* Go writes a body only when BodySize > 0. */
    assert_false(gcp_request_has_body(&req));

    /* A BodySize that is not an integer leaves the framing unknown. */
    snprintf(line, sizeof line,
             "{\"ID\":42,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\",\"BodySize\":\"5\"}",
             b64(id_n(1), a), b64(id_n(2), o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_FATAL);
    snprintf(line, sizeof line,
             "{\"ID\":43,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\",\"BodySize\":5.5}",
             b64(id_n(1), a), b64(id_n(2), o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_FATAL);
    /* On other commands it is only an error. */
    assert_int_equal(parse("{\"ID\":44,\"Command\":\"close\",\"BodySize\":\"x\"}", &req, msg),
                     GCP_PARSE_ERR);
    /* A huge BodySize is only a number: nothing is sized by it. */
    snprintf(line, sizeof line,
             "{\"ID\":45,\"Command\":\"put\",\"ActionID\":\"%s\",\"OutputID\":\"%s\","
             "\"BodySize\":9223372036854775807}",
             b64(id_n(1), a), b64(id_n(2), o));
    assert_int_equal(parse(line, &req, msg), GCP_PARSE_OK);
    assert_true(req.body_size == INT64_MAX);
}

/* ------------------------------------------------------------------ */
/* Bodies                                                               */

typedef struct decoded {
    gcp_body_status st;
    bool valid;
    size_t used;       /* input consumed in total */
    size_t len;        /* bytes decoded */
    unsigned char *data;
    char msg[GCP_MSG_SIZE];
} decoded;

/* Feeds text in pieces of step bytes (then signals end of input if
 * at_eof), collecting what comes out. */
static decoded decode(const char *text, size_t n, size_t step, bool at_eof)
{
    decoded d;
    memset(&d, 0, sizeof d);
    gcp_body *b = gcp_body_new();
    assert_non_null(b);
    d.data = malloc(GCP_BODY_OUT_MAX(n) + 1);
    assert_non_null(d.data);
    unsigned char *out = malloc(GCP_BODY_OUT_MAX(step));
    assert_non_null(out);
    d.st = GCP_BODY_MORE;
    size_t pos = 0;
    while (pos < n && d.st == GCP_BODY_MORE) {
        size_t k = n - pos < step ? n - pos : step;
        size_t used = 0, outlen = 0;
        d.st = gcp_body_feed(b, (const unsigned char *)text + pos, k, &used, out, &outlen, d.msg);
        assert_true(outlen <= GCP_BODY_OUT_MAX(k));
        if (d.st == GCP_BODY_MORE)
            assert_int_equal(used, k);
        memcpy(d.data + d.len, out, outlen);
        d.len += outlen;
        pos += used;
    }
    if (d.st == GCP_BODY_MORE && at_eof)
        d.st = gcp_body_eof(b, d.msg);
    d.used = pos;
    d.valid = d.st == GCP_BODY_DONE && gcp_body_valid(b);
    free(out);
    gcp_body_free(b);
    return d;
}

static void test_body_simple(void **state)
{
    (void)state;
    const char *t = "\n\"aGVsbG8gd29ybGQ=\"\n{\"ID\":2}";
    for (size_t step = 1; step <= strlen(t); step++) {
        decoded d = decode(t, strlen(t), step, false);
        assert_int_equal(d.st, GCP_BODY_DONE);
        assert_true(d.valid);
        assert_int_equal(d.len, 11);
        assert_memory_equal(d.data, "hello world", 11);
        /* The next request is left alone. */
        assert_int_equal(d.used, strlen("\n\"aGVsbG8gd29ybGQ=\"\n"));
        free(d.data);
    }
}

static void test_body_lenient(void **state)
{
    (void)state;
    /* Blank lines (CRLF too) before the body, "\/" escape, CRLF after. */
    const char *t = "\r\n\n  \"\\//8=\" \r\n";
    decoded d = decode(t, strlen(t), 3, false);
    assert_int_equal(d.st, GCP_BODY_DONE);
    assert_true(d.valid);
    assert_int_equal(d.len, 2);
    assert_memory_equal(d.data, "\xff\xff", 2);
    free(d.data);

    /* No newline after the closing quote, then end of input. */
    d = decode("\"QUJD\"", 6, 64, true);
    assert_int_equal(d.st, GCP_BODY_DONE);
    assert_true(d.valid);
    assert_int_equal(d.len, 3);
    free(d.data);

    /* The empty string. */
    d = decode("\"\"\n", 3, 64, false);
    assert_int_equal(d.st, GCP_BODY_DONE);
    assert_true(d.valid);
    assert_int_equal(d.len, 0);
    free(d.data);
}

static void test_body_invalid_base64(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\"QUJD!\"\n",      /* not in the alphabet */
        "\"QUJ\"\n",        /* not a whole quantum */
        "\"QQ==QUJD\"\n",   /* data after padding */
        "\"QQ=\"\n",        /* half the padding */
        "\"QQ=A\"\n",
        "\"Q===\"\n",
        "\"====\"\n",
        "\"QUJDQ===\"\n",
        "\"QU JD\"\n",      /* space (EVP would skip it) */
        "\"QU-JD\"\n",      /* '-' (EVP would stop at it) */
        "\"QUJD\\n\"\n",    /* an escape other than \/ */
        "\"QUJD\\\"AB\"\n", /* an escaped quote does not end the string */
        "\"\xc3\xa9\"\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t step = 1; step <= 16; step += 15) {
            decoded d = decode(bad[i], strlen(bad[i]), step, false);
            assert_int_equal(d.st, GCP_BODY_DONE);
            /* Consumed to the end of its line, but invalid. */
            assert_int_equal(d.used, strlen(bad[i]));
            assert_false(d.valid);
            free(d.data);
        }
    }
}

static void test_body_broken_framing(void **state)
{
    (void)state;
    decoded d = decode("{\"ID\":3}\n", 9, 64, false);
    assert_int_equal(d.st, GCP_BODY_BROKEN);
    assert_non_null(strstr(d.msg, "expected"));
    free(d.data);

    d = decode("\"QUJD\nQUJD\"\n", 12, 64, false);
    assert_int_equal(d.st, GCP_BODY_BROKEN);
    assert_non_null(strstr(d.msg, "closing quote"));
    free(d.data);

    d = decode("\"QUJD\"x\n", 8, 64, false);
    assert_int_equal(d.st, GCP_BODY_BROKEN);
    free(d.data);

    d = decode("\"QUJDQUJD", 9, 4, true);
    assert_int_equal(d.st, GCP_BODY_BROKEN);
    assert_non_null(strstr(d.msg, "end of input"));
    free(d.data);

    d = decode("\n\n", 2, 4, true);
    assert_int_equal(d.st, GCP_BODY_BROKEN);
    free(d.data);
}

static void test_body_large(void **state)
{
    (void)state;
    size_t n = 1000003;
    unsigned char *raw = malloc(n);
    assert_non_null(raw);
    tu_fill(raw, n, 77);
    size_t tn = 4 * ((n + 2) / 3) + 4;
    char *text = malloc(tn);
    assert_non_null(text);
    text[0] = '"';
    int k = EVP_EncodeBlock((unsigned char *)text + 1, raw, (int)n);
    text[1 + k] = '"';
    text[2 + k] = '\n';
    size_t len = (size_t)k + 3;
    static const size_t steps[] = {1, 63, 64, 65, 4096, 65536, GCP_BODY_FEED_MAX};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        decoded d = decode(text, len, steps[i], false);
        assert_int_equal(d.st, GCP_BODY_DONE);
        assert_true(d.valid);
        assert_int_equal(d.len, n);
        assert_memory_equal(d.data, raw, n);
        free(d.data);
    }
    free(text);
    free(raw);
}

/* ------------------------------------------------------------------ */
/* Responses                                                            */

static void test_format(void **state)
{
    (void)state;
    size_t len = 0;
    char *line;

    line = gcp_format_handshake(&len);
    assert_string_equal(line, "{\"ID\":0,\"KnownCommands\":[\"get\",\"put\",\"close\"]}\n");
    assert_int_equal(len, strlen(line));
    free(line);

    line = gcp_format_miss(5, &len);
    assert_string_equal(line, "{\"ID\":5,\"Miss\":true}\n");
    free(line);

    line = gcp_format_err(6, "bad \"thing\"\n\xff", &len);
    assert_string_equal(line, "{\"ID\":6,\"Err\":\"bad \\\"thing\\\"??\"}\n");
    free(line);

    line = gcp_format_ok(7, NULL);
    assert_string_equal(line, "{\"ID\":7}\n");
    free(line);

    acache_result res;
    memset(&res, 0, sizeof res);
    res.output_id = id_n(3);
    res.size = 1234;
    res.time_ns = 1700000000123456789;
    snprintf(res.path, sizeof res.path, "/cache/o/ab/abcdef");
    char o[ACACHE_ID_BASE64_SIZE], want[512];
    snprintf(want, sizeof want,
             "{\"ID\":8,\"OutputID\":\"%s\",\"Size\":1234,\"Time\":\"2023-11-14T22:13:20.123456789Z\","
             "\"DiskPath\":\"/cache/o/ab/abcdef\"}\n",
             b64(res.output_id, o));
    line = gcp_format_entry(8, &res, &len);
    assert_string_equal(line, want);
    free(line);

    /* A path that is not UTF-8 cannot be handed to Go. */
    snprintf(res.path, sizeof res.path, "/cache/\xff");
    line = gcp_format_entry(8, &res, &len);
    assert_null(strstr(line, "DiskPath"));
    free(line);
}

/* What jansson writes for the entry, built field by field: the reference
 * gcp_format_entry's line must match byte for byte (field order, escapes,
 * a path that is not UTF-8 left out). */
static char *entry_by_jansson(int64_t id, const acache_result *res)
{
    char b64v[ACACHE_ID_BASE64_SIZE], when[GCP_TIME_SIZE];
    acache_id_to_base64(&res->output_id, b64v);
    json_t *o = json_object();
    json_object_set_new(o, "ID", json_integer(id));
    json_object_set_new(o, "OutputID", json_string(b64v));
    json_object_set_new(o, "Size", json_integer((json_int_t)res->size));
    if (gcp_format_time(res->time_ns, when))
        json_object_set_new(o, "Time", json_string(when));
    json_t *p = res->path[0] ? json_string(res->path) : NULL;
    if (p)
        json_object_set_new(o, "DiskPath", p);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    memcpy(line, s, n);
    memcpy(line + n, "\n", 2);
    free(s);
    return line;
}

static void test_format_entry_matches_jansson(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "", "/c/v1/o/ab/abcdef", "/with \"quotes\" and \\back\\slashes",
        "/ctl\x01\x08\x09\x0a\x0c\x0d\x1f\x7f/x", "/utf8/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80",
        "/bad/\xff", "/bad/\xc0\xaf", "/bad/\xed\xa0\x80", "/bad/\xf4\x90\x80\x80",
        "/bad/\xe2\x82", "/bad/\xc3", "/ok/\xf4\x8f\xbf\xbf", "/ok/\xef\xbf\xbf",
    };
    static const int64_t times[] = { 0, 1, -1, 1700000000123456789, INT64_MAX, INT64_MIN,
                                     951782400000000000 /* 2000-02-29 */, -62135596800000000 };
    acache_result res;
    memset(&res, 0, sizeof res);
    res.output_id = id_n(9);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        for (size_t t = 0; t < sizeof times / sizeof times[0]; t++) {
            snprintf(res.path, sizeof res.path, "%s", paths[i]);
            res.time_ns = times[t];
            res.size = t * 1000003;
            size_t len = 0;
            char *got = gcp_format_entry((int64_t)(i * 100 + t), &res, &len);
            char *want = entry_by_jansson((int64_t)(i * 100 + t), &res);
            assert_string_equal(got, want);
            assert_int_equal(len, strlen(want));
            free(got);
            free(want);
        }
    }
    /* A path as long as a path can be, every byte escaped to six. */
    memset(res.path, 0x01, sizeof res.path - 1);
    res.path[sizeof res.path - 1] = '\0';
    char *got = gcp_format_entry(INT64_MIN, &res, NULL);
    char *want = entry_by_jansson(INT64_MIN, &res);
    assert_string_equal(got, want);
    free(got);
    free(want);
}

/* gcp_format_time against gmtime_r, over many seconds (RFC 3339, the
 * fraction without trailing zeros, years 0-9999 only). */
static void test_format_time_against_gmtime(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* Years 0000..9999 and a little around them. */
        int64_t sec = (int64_t)(x % 330000000000ull) - 65000000000LL;
        int64_t frac = (int64_t)(x >> 40) % 1000000000;
        if (sec > INT64_MAX / 1000000000 - 1 || sec < INT64_MIN / 1000000000 + 1)
            continue;
        char got[GCP_TIME_SIZE];
        bool ok = gcp_format_time(sec * 1000000000 + frac, got);
        time_t tt = (time_t)sec;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        long year = (long)tm.tm_year + 1900;
        if (year < 0 || year > 9999) {
            assert_false(ok);
            continue;
        }
        assert_true(ok);
        char want[64];
        snprintf(want, sizeof want, "%04ld-%02d-%02dT%02d:%02d:%02d", year, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert_memory_equal(got, want, 19);
    }
}

static void test_format_time(void **state)
{
    (void)state;
    char t[GCP_TIME_SIZE];
    assert_true(gcp_format_time(0, t));
    assert_string_equal(t, "1970-01-01T00:00:00Z");
    assert_true(gcp_format_time(1500000000, t));
    assert_string_equal(t, "1970-01-01T00:00:01.5Z");
    assert_true(gcp_format_time(-1, t));
    assert_string_equal(t, "1969-12-31T23:59:59.999999999Z");
    assert_true(gcp_format_time(1700000000000001000, t));
    assert_string_equal(t, "2023-11-14T22:13:20.000001Z");
    assert_true(gcp_format_time(INT64_MAX, t));
    assert_string_equal(t, "2262-04-11T23:47:16.854775807Z");
    assert_true(gcp_format_time(INT64_MIN, t));
    assert_string_equal(t, "1677-09-21T00:12:43.145224192Z");
}

/* ------------------------------------------------------------------ */
/* The client's side, read back by the server's                        */

/* A request the prog: store writes is the request the server reads, with
 * the blank line after it left for the next read. */
static void test_client_request_round_trip(void **state)
{
    (void)state;
    char line[GCP_REQUEST_SIZE], msg[GCP_MSG_SIZE];
    gcp_request req;
    acache_id a = id_n(3), o = id_n(9);
    size_t n = gcp_format_request(line, 42, "put", &a, &o, 12345);
    assert_int_equal(n, strlen(line));
    assert_true(n > 2 && line[n - 2] == '\n' && line[n - 1] == '\n');
    assert_int_equal(gcp_parse_request(line, n - 2, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.id, 42);
    assert_int_equal(req.command, GCP_CMD_PUT);
    assert_memory_equal(req.action.bytes, a.bytes, ACACHE_ID_SIZE);
    assert_memory_equal(req.output.bytes, o.bytes, ACACHE_ID_SIZE);
    assert_int_equal(req.body_size, 12345);
    assert_non_null(strstr(line, "\"ObjectID\":"));

    n = gcp_format_request(line, 7, "get", &a, NULL, 0);
    assert_int_equal(gcp_parse_request(line, n - 2, &req, msg), GCP_PARSE_OK);
    assert_int_equal(req.command, GCP_CMD_GET);
    assert_false(req.has_output);
    n = gcp_format_request(line, 8, "close", NULL, NULL, 0);
    assert_string_equal(line, "{\"ID\":8,\"Command\":\"close\"}\n\n");
}

/* A body encoded in chunks as the prog: store sends it decodes to the
 * same bytes, whatever its size modulo 3. */
static void test_client_body_round_trip(void **state)
{
    (void)state;
    size_t sizes[] = { 1, 2, 3, GCP_BODY_CHUNK, GCP_BODY_CHUNK + 1, 2 * GCP_BODY_CHUNK + 2 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t size = sizes[k];
        unsigned char *in = malloc(size);
        char *text = malloc(GCP_BODY_ENCODED_SIZE(size) + 8);
        assert_non_null(in);
        assert_non_null(text);
        for (size_t i = 0; i < size; i++)
            in[i] = (unsigned char)(i * 31 + k);
        size_t len = strlen(GCP_BODY_OPEN);
        memcpy(text, GCP_BODY_OPEN, len);
        for (size_t off = 0; off < size; off += GCP_BODY_CHUNK) {
            size_t c = size - off < GCP_BODY_CHUNK ? size - off : GCP_BODY_CHUNK;
            len += gcp_body_encode(in + off, c, text + len);
        }
        memcpy(text + len, GCP_BODY_CLOSE, strlen(GCP_BODY_CLOSE));
        len += strlen(GCP_BODY_CLOSE);
        decoded d = decode(text, len, 4096, false);
        assert_int_equal(d.st, GCP_BODY_DONE);
        assert_true(d.valid);
        assert_int_equal(d.used, len);
        assert_int_equal(d.len, size);
        assert_memory_equal(d.data, in, size);
        free(d.data);
        free(text);
        free(in);
    }
}

/* What the server answers, the client reads back. */
static void test_client_reads_responses(void **state)
{
    (void)state;
    size_t n = 0;
    int64_t id = -1;
    unsigned known = 0;
    char *line = gcp_format_handshake(&n);
    assert_true(gcp_parse_handshake(line, n - 1, &known));
    assert_int_equal(known, GCP_KNOWS_GET | GCP_KNOWS_PUT | GCP_KNOWS_CLOSE);
    free(line);
    assert_false(gcp_parse_handshake("{\"ID\":1,\"KnownCommands\":[]}", 27, &known));
    assert_false(gcp_parse_handshake("not json", 8, &known));

    acache_result res, back;
    memset(&res, 0, sizeof res);
    memset(&back, 0, sizeof back);
    res.output_id = id_n(5);
    res.size = 77;
    res.time_ns = 1700000000123456789LL;
    snprintf(res.path, sizeof res.path, "/cache/o/ab/x");
    line = gcp_format_entry(9, &res, &n);
    json_t *resp = gcp_parse_response(line, n - 1, &id);
    assert_non_null(resp);
    assert_int_equal(id, 9);
    assert_null(gcp_response_err(resp));
    assert_false(gcp_response_miss(resp));
    const char *path = NULL;
    assert_int_equal(gcp_parse_entry(resp, &back, &path), GCP_ENTRY_OK);
    assert_string_equal(path, "/cache/o/ab/x");
    assert_memory_equal(back.output_id.bytes, res.output_id.bytes, ACACHE_ID_SIZE);
    assert_int_equal(back.size, 77);
    assert_int_equal(back.time_ns, res.time_ns);
    json_decref(resp);
    free(line);

    res.path[0] = '\0'; /* no DiskPath: not a hit the client can use */
    line = gcp_format_entry(10, &res, &n);
    resp = gcp_parse_response(line, n - 1, &id);
    assert_int_equal(gcp_parse_entry(resp, &back, &path), GCP_ENTRY_NO_PATH);
    assert_null(gcp_response_path(resp));
    json_decref(resp);
    free(line);

    line = gcp_format_miss(11, &n);
    resp = gcp_parse_response(line, n - 1, &id);
    assert_true(gcp_response_miss(resp));
    assert_int_equal(gcp_parse_entry(resp, &back, &path), GCP_ENTRY_NO_ID);
    json_decref(resp);
    free(line);

    line = gcp_format_err(12, "disk full", &n);
    resp = gcp_parse_response(line, n - 1, &id);
    assert_string_equal(gcp_response_err(resp), "disk full");
    json_decref(resp);
    free(line);

    assert_null(gcp_parse_response("{\"ID\":\"1\"}", 10, &id));
    assert_null(gcp_parse_response("[1]", 3, &id));
}

static void test_client_parse_time(void **state)
{
    (void)state;
    int64_t ns = 0;
    assert_true(gcp_parse_time("1970-01-01T00:00:01Z", &ns));
    assert_int_equal(ns, 1000000000LL);
    assert_true(gcp_parse_time("2023-11-14T23:13:20.5+01:00", &ns));
    /* 23:13:20 at UTC+1 is 22:13:20 UTC, 1700000000 s. */
    assert_int_equal(ns, 1700000000LL * 1000000000LL + 500000000LL);
    assert_false(gcp_parse_time("1969-12-31T23:59:59Z", &ns));
    assert_false(gcp_parse_time("2023-13-01T00:00:00Z", &ns));
    assert_false(gcp_parse_time("2023-11-14T23:13:20", &ns));
    assert_false(gcp_parse_time("2023-11-14T23:13:20.Z", &ns));
}

/* ------------------------------------------------------------------ */
/* Lines too long to hold: the bounded scan                             */

/* Scans text fed in pieces of step bytes (0: whole). */
static gcp_parse_status scan_text(const char *text, size_t step, gcp_request *req, char *msg)
{
    gcp_scan sc;
    size_t n = strlen(text);
    gcp_scan_init(&sc);
    for (size_t at = 0; at < n;) {
        size_t k = step && n - at > step ? step : n - at;
        gcp_scan_feed(&sc, text + at, k);
        at += k;
    }
    return gcp_scan_finish(&sc, req, msg);
}

/* The ID, Command and BodySize of a line are found whatever their order,
 * past decoys in strings and nested values, however the bytes are split;
 * the answer is Err ("longer than"). */
static void test_scan_long_line(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t id;
        gcp_command cmd;
        int64_t size;
    } cases[] = {
        { "{\"ID\":5,\"Command\":\"get\",\"ActionID\":\"AAAA\"}", 5, GCP_CMD_GET, 0 },
        { "  {\"Pad\":\"x\",\"Command\":\"put\",\"BodySize\":12,\"ID\":-3}", -3, GCP_CMD_PUT, 12 },
        { "{\"Pad\":{\"ID\":1,\"a\":[\"}\",{\"ID\":2}]},\"ID\":9,\"Command\":\"close\"}", 9,
          GCP_CMD_CLOSE, 0 },
        { "{\"s\":\"\\\"ID\\\":4, \\\\\",\"ID\" : 8 ,\"Command\":\"get\"}", 8, GCP_CMD_GET, 0 },
        { "{\"ID\":1,\"ID\":2,\"Command\":\"nope\"}", 2, GCP_CMD_UNKNOWN, 0 },
        { "{\"BodySize\":1.5,\"ID\":3,\"Command\":\"get\"}", 3, GCP_CMD_GET, 0 },
        { "{\"Command\":\"put\",\"ID\":4,\"BodySize\":7", 4, GCP_CMD_PUT, 7 }, /* cut short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (size_t step = 0; step < 4; step++) {
            gcp_request req;
            char msg[GCP_MSG_SIZE];
            gcp_parse_status st = scan_text(cases[i].text, step, &req, msg);
            if (st != GCP_PARSE_ERR)
                fail_msg("case %zu step %zu: status %d (%s)", i, step, st, msg);
            assert_int_equal(req.id, cases[i].id);
            assert_int_equal(req.command, cases[i].cmd);
            assert_int_equal(req.body_size, cases[i].size);
            assert_non_null(strstr(msg, "longer than"));
        }
    }
}

/* What cannot be answered ends the stream: not an object, junk after it,
 * no integer ID (a string, a float, one only nested), a put whose
 * BodySize is not an integer (the next request's start is unknowable). */
static void test_scan_long_line_fatal(void **state)
{
    (void)state;
    static const char *const fatal[] = {
        "xxxxxxxx", "[{\"ID\":1}]", "{\"ID\":1} junk", "{\"ID\":\"1\"}", "{\"ID\":1e3}",
        "{\"a\":{\"ID\":1}}", "{\"ID\":99999999999999999999}", "{\"I\\u0044\":1}",
        "{\"ID\":1,\"Command\":\"put\",\"BodySize\":\"12\"}", "",
    };
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++) {
        gcp_request req;
        char msg[GCP_MSG_SIZE];
        if (scan_text(fatal[i], 1, &req, msg) != GCP_PARSE_FATAL)
            fail_msg("'%s' was not fatal", fatal[i]);
        assert_non_null(strstr(msg, "longer than"));
    }
    /* A bad BodySize on anything but a put is that request's error. */
    gcp_request req;
    char msg[GCP_MSG_SIZE];
    assert_int_equal(scan_text("{\"ID\":1,\"Command\":\"get\",\"BodySize\":true}", 0, &req, msg),
                     GCP_PARSE_ERR);
    assert_int_equal(req.body_size, 0);
}

/* On every well-formed request the parser accepts (with or without an
 * error), the scan finds the same ID, Command and BodySize. */
static void test_scan_agrees_with_parser(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"}",
        "{\"Command\":\"put\",\"ID\":22,\"ActionID\":\"x\",\"OutputID\":\"y\",\"BodySize\":3}",
        "{\"ID\":3,\"Command\":\"close\"}", "{\"ID\":4}", "{\"ID\":5,\"Command\":7}",
        "{\"ID\":6,\"Command\":\"get\",\"BodySize\":-1,\"x\":[1,{\"y\":null}]}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        gcp_request a, b;
        char msg[GCP_MSG_SIZE];
        gcp_parse_status st = gcp_parse_request(lines[i], strlen(lines[i]), &a, msg);
        assert_int_not_equal(st, GCP_PARSE_FATAL);
        assert_int_equal(scan_text(lines[i], 2, &b, msg), GCP_PARSE_ERR);
        assert_int_equal(a.id, b.id);
        assert_int_equal(a.command, b.command);
        assert_int_equal(a.body_size, b.body_size);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_get_plain_and_near_misses),
        cmocka_unit_test(test_put),
        cmocka_unit_test(test_put_empty_body),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_put_object_id_only),
        cmocka_unit_test(test_put_both_ids),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_bad_base64_id),
        cmocka_unit_test(test_wrong_id_length),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_unknown_command),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_huge_ids),
        cmocka_unit_test(test_body_size),
        cmocka_unit_test(test_body_simple),
        cmocka_unit_test(test_body_lenient),
        cmocka_unit_test(test_body_invalid_base64),
        cmocka_unit_test(test_body_broken_framing),
        cmocka_unit_test(test_body_large),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_format_entry_matches_jansson),
        cmocka_unit_test(test_format_time_against_gmtime),
        cmocka_unit_test(test_client_request_round_trip),
        cmocka_unit_test(test_client_body_round_trip),
        cmocka_unit_test(test_client_reads_responses),
        cmocka_unit_test(test_client_parse_time),
        cmocka_unit_test(test_scan_long_line),
        cmocka_unit_test(test_scan_long_line_fatal),
        cmocka_unit_test(test_scan_agrees_with_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
