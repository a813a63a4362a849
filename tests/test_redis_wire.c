/*
 * test_redis_wire.c - the Redis wire (src/remote/redis_wire.c) on a
 * socket pair, with no server: a pipeline's commands arrive byte for byte
 * as RESP however the socket splits the one sendmsg(2) that carries them
 * (a send buffer far smaller than the commands forces partial sends that
 * end inside one command and go on into the next); a pipeline longer
 * than WIRE_PIPELINE_MAX is refused with nothing sent; a bulk reply
 * larger than the wire's buffer streams whole into the sink.
 *
 * Must never depend on timing: the peer thread reads or writes until it
 * has moved every byte, and every wait has a deadline.
 */
#include "testutil.h"

#include "os/clock.h"
#include "remote/redis_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG ((size_t)700 << 10) /* more than WIRE_BUF_SIZE, and than SO_SNDBUF */

typedef struct peer {
    int fd;
    unsigned char *buf;
    size_t len; /* to read (into buf) or to write (from buf) */
    bool writes;
} peer;

static void *peer_run(void *arg)
{
    peer *p = arg;
    for (size_t done = 0; done < p->len;) {
        ssize_t n = p->writes ? write(p->fd, p->buf + done, p->len - done)
                              : read(p->fd, p->buf + done, p->len - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return NULL;
}

/* A connected pair; a's send buffer as small as the kernel allows. */
static void pair(int *a, int *b)
{
    int sv[2], small = 4096;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    *a = sv[0];
    *b = sv[1];
}

/* RESP for one command: "*N\r\n" and "$len\r\nword\r\n" per word. */
static size_t resp(unsigned char *out, int argc, const char **argv, const size_t *lens)
{
    size_t n = (size_t)sprintf((char *)out, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        n += (size_t)sprintf((char *)out + n, "$%zu\r\n", lens[i]);
        memcpy(out + n, argv[i], lens[i]);
        n += lens[i];
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    return n;
}

static void test_pipeline_split_by_the_socket(void **state)
{
    (void)state;
    int a, b;
    pair(&a, &b);
    char *big1 = malloc(BIG), *big2 = malloc(BIG);
    assert_non_null(big1);
    assert_non_null(big2);
    for (size_t i = 0; i < BIG; i++) {
        big1[i] = (char)('a' + i % 26);
        big2[i] = (char)('A' + i % 23);
    }
    const char *argv[7] = { "SET", "k1", big1, "APPEND", "k1", big2, "PING" };
    size_t lens[7] = { 3, 2, BIG, 6, 2, BIG, 4 };
    int counts[3] = { 3, 3, 1 };
    unsigned char *want = malloc(2 * BIG + 256);
    assert_non_null(want);
    size_t wlen = resp(want, 3, argv, lens);
    wlen += resp(want + wlen, 3, argv + 3, lens + 3);
    wlen += resp(want + wlen, 1, argv + 6, lens + 6);

    peer p = { b, malloc(wlen), wlen, false };
    assert_non_null(p.buf);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, peer_run, &p), 0);
    redis_wire *w = calloc(1, sizeof *w);
    assert_non_null(w);
    wire_init(w, a, "pair");
    assert_int_equal(wire_send(w, 3, counts, argv, lens, os_mono_ns() + 60000000000LL), ACACHE_OK);
    pthread_join(t, NULL);
    assert_false(w->broken);
    assert_memory_equal(p.buf, want, wlen);

    free(w);
    free(p.buf);
    free(want);
    free(big1);
    free(big2);
    close(a);
    close(b);
}

static void test_too_long_a_pipeline_sends_nothing(void **state)
{
    (void)state;
    int a, b;
    pair(&a, &b);
    const char *argv[WIRE_PIPELINE_MAX + 1];
    size_t lens[WIRE_PIPELINE_MAX + 1];
    int counts[WIRE_PIPELINE_MAX + 1];
    for (int i = 0; i <= WIRE_PIPELINE_MAX; i++) {
        argv[i] = "PING";
        lens[i] = 4;
        counts[i] = 1;
    }
    redis_wire *w = calloc(1, sizeof *w);
    assert_non_null(w);
    wire_init(w, a, "pair");
    assert_int_equal(wire_send(w, WIRE_PIPELINE_MAX + 1, counts, argv, lens,
                               os_mono_ns() + 10000000000LL),
                     ACACHE_EINVAL);
    assert_false(w->broken); /* nothing went out: the connection is whole */
    char c;
    assert_int_equal(recv(b, &c, 1, MSG_DONTWAIT), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    /* And the same wire still sends. */
    assert_int_equal(wire_send(w, WIRE_PIPELINE_MAX, counts, argv, lens,
                               os_mono_ns() + 10000000000LL),
                     ACACHE_OK);
    char got[WIRE_PIPELINE_MAX * 14];
    size_t n = 0, want = (size_t)WIRE_PIPELINE_MAX * 14; /* "*1\r\n$4\r\nPING\r\n" */
    while (n < want) {
        ssize_t r = read(b, got + n, want - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    for (size_t i = 0; i < want; i += 14)
        assert_memory_equal(got + i, "*1\r\n$4\r\nPING\r\n", 14);
    free(w);
    close(a);
    close(b);
}

typedef struct collect {
    unsigned char *buf;
    size_t len;
} collect;

static acache_status collect_write(void *ctx, const void *data, size_t len)
{
    collect *c = ctx;
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    return ACACHE_OK;
}

static void test_bulk_larger_than_the_buffer(void **state)
{
    (void)state;
    int a, b;
    pair(&a, &b);
    size_t hlen = (size_t)snprintf(NULL, 0, "$%zu\r\n", BIG);
    unsigned char *reply = malloc(hlen + 1 + BIG + 2 + 5);
    assert_non_null(reply);
    sprintf((char *)reply, "$%zu\r\n", BIG);
    for (size_t i = 0; i < BIG; i++)
        reply[hlen + i] = (unsigned char)(i * 7);
    memcpy(reply + hlen + BIG, "\r\n:42\r\n", 7);
    peer p = { b, reply, hlen + BIG + 7, true };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, peer_run, &p), 0);
    redis_wire *w = calloc(1, sizeof *w);
    collect c = { malloc(BIG), 0 };
    assert_non_null(w);
    assert_non_null(c.buf);
    wire_init(w, a, "pair");
    remote_sink sink = { collect_write, &c };
    wire_reply r;
    int64_t deadline = os_mono_ns() + 60000000000LL;
    assert_int_equal(wire_read(w, BIG, &sink, deadline, &r), ACACHE_OK);
    assert_int_equal(r.type, WIRE_BULK);
    assert_int_equal(r.len, BIG);
    assert_int_equal(c.len, BIG);
    assert_memory_equal(c.buf, reply + hlen, BIG);
    /* The next reply, read from what came after the body. */
    assert_int_equal(wire_read(w, 0, NULL, deadline, &r), ACACHE_OK);
    assert_int_equal(r.type, WIRE_INTEGER);
    assert_int_equal(r.integer, 42);
    pthread_join(t, NULL);
    free(c.buf);
    free(w);
    free(reply);
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_split_by_the_socket),
        cmocka_unit_test(test_too_long_a_pipeline_sends_nothing),
        cmocka_unit_test(test_bulk_larger_than_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
