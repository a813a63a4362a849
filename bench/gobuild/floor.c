/*
 * floor.c - the protocol floor for bench/gobuild: a GOCACHEPROG helper that
 * does no storage work at all while it serves. At start it reads every
 * action record of an acache disk store (ROOT/v1/a/XX/<action>) into
 * memory with the answer to a get already formatted; then each get is a
 * hash lookup and one write. A warm `go build` through it costs what the
 * GOCACHEPROG protocol itself costs on this machine (a pipe round trip per
 * lookup, the go command's JSON), so run.sh can show how far acache's
 * helper is from the fastest any helper can be.
 *
 * A put is decoded from base64 as it arrives and written to a file of its
 * own under DIR/floor-objects, unhashed and unchecked, and answered with
 * that path: the floor of a cold build, which must at least move the bytes.
 *
 * A benchmark tool only: it checks nothing, keeps nothing it was given for
 * later gets, trusts the store it reads, and must never be used as a cache.
 * It is not installed.
 *
 * With --spin USEC it tries the one idea left for the warm build's floor:
 * on a virtual machine a reader blocked on the pipe and woken again costs
 * far more than the lookup itself. After answering a request, it checks the
 * pipe (FIONREAD, no blocking) for up to USEC microseconds before it blocks
 * in read(); a request that comes meanwhile is read without a sleep and a
 * wake-up. It spins only right after an answer, at most once per answer,
 * so while requests arrive it may spin, and once they stop it blocks as
 * before: an idle helper never spins. It counts the spins that caught a
 * request and those that ran out, and prints both at the end.
 *
 * Usage: floor [--spin USEC] DIR   (DIR as given to `acache gocacheprog --dir`)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEX 64
#define B64 44

typedef struct answer {
    char key[B64 + 1];   /* the action id as the go command sends it */
    char *tail;          /* the response after {"ID":N */
    size_t tail_len;
    struct answer *next;
} answer;

#define BUCKETS 65536
static answer *table[BUCKETS];

static unsigned hash_of(const char *k)
{
    unsigned h = 2166136261u;
    for (int i = 0; i < B64; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h % BUCKETS;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static bool unhex(const char *h, unsigned char *out)
{
    for (int i = 0; i < HEX / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return false;
        out[i] = (unsigned char)v;
    }
    return true;
}

/* Reads one record: "acache-action-v1 <action> <output> <size> <time_ns>". */
static void load_record(const char *root, const char *path)
{
    char buf[512], a[HEX + 1], o[HEX + 1];
    uint64_t size;
    int64_t t;
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    if (sscanf(buf, "acache-action-v1 %64s %64s %" SCNu64 " %" SCNd64, a, o, &size, &t) != 4)
        return;
    unsigned char ab[32], ob[32];
    if (!unhex(a, ab) || !unhex(o, ob))
        return;
    answer *e = calloc(1, sizeof *e);
    char ob64[B64 + 1], when[64];
    b64(ab, 32, e->key);
    b64(ob, 32, ob64);
    time_t secs = (time_t)(t / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char tail[1024];
    int len = snprintf(tail, sizeof tail,
                       ",\"OutputID\":\"%s\",\"Size\":%" PRIu64 ",\"Time\":\"%s.%09" PRId64
                       "Z\",\"DiskPath\":\"%s/v1/o/%.2s/%s\"}\n",
                       ob64, size, when, t % 1000000000, root, o, o);
    e->tail = strdup(tail);
    e->tail_len = (size_t)len;
    unsigned h = hash_of(e->key);
    e->next = table[h];
    table[h] = e;
}

static size_t load(const char *root)
{
    size_t count = 0;
    for (int x = 0; x < 256; x++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/v1/a/%02x", root, x);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strlen(de->d_name) != HEX)
                continue; /* ".", "..", "<action>.out" links */
            char p[4500];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            load_record(root, p);
            count++;
        }
        closedir(d);
    }
    return count;
}

/* --spin: how long to look for the next request before blocking (ns),
 * whether something was answered since the last read, and the outcomes. */
static int64_t spin_ns;
static bool answered;
static long spins_caught, spins_out;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Right after an answer: waits up to spin_ns for input without sleeping.
 * Returns when input is there or the time is up (then read() blocks). */
static void spin_for_input(void)
{
    if (spin_ns <= 0 || !answered)
        return;
    answered = false;
    int64_t end = now_ns() + spin_ns;
    int n = 0;
    do {
        if (ioctl(0, FIONREAD, &n) != 0)
            return;
        if (n > 0) {
            spins_caught++;
            return;
        }
    } while (now_ns() < end);
    spins_out++;
}

static void say(const char *s, size_t n)
{
    answered = true;
    while (n > 0) {
        ssize_t w = write(1, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            exit(1);
        s += w;
        n -= (size_t)w;
    }
}

/* The state of one session: the read buffer and a put body in progress. */
typedef struct session {
    char objdir[4200];
    long nput;
    char buf[1 << 16];
    size_t len;
    int body_fd;            /* a put body being streamed, or -1 */
    long long body_id;
    char body_path[4400];
    char quad[4];           /* undecoded base64 values */
    int nquad;
} session;

static void drop(session *s, size_t used)
{
    memmove(s->buf, s->buf + used, s->len - used);
    s->len -= used;
}

/* Decodes what the buffer holds of the body line (a JSON string of
 * base64, then a newline) into the body's file; answers the put at its
 * end. */
static void feed_body(session *s)
{
    unsigned char out[3 * (sizeof s->buf / 4) + 3];
    size_t i = 0, o = 0;
    bool end = false;
    for (; i < s->len; i++) {
        char c = s->buf[i];
        if (c == '\n') {
            end = true;
            i++;
            break;
        }
        int v = b64val(c);
        if (v < 0)
            continue; /* the quotes, padding */
        s->quad[s->nquad++] = (char)v;
        if (s->nquad == 4) {
            out[o++] = (unsigned char)(s->quad[0] << 2 | s->quad[1] >> 4);
            out[o++] = (unsigned char)(s->quad[1] << 4 | s->quad[2] >> 2);
            out[o++] = (unsigned char)(s->quad[2] << 6 | s->quad[3]);
            s->nquad = 0;
        }
    }
    if (end && s->nquad >= 2)
        out[o++] = (unsigned char)(s->quad[0] << 2 | s->quad[1] >> 4);
    if (end && s->nquad == 3)
        out[o++] = (unsigned char)(s->quad[1] << 4 | s->quad[2] >> 2);
    if (o && write(s->body_fd, out, o) != (ssize_t)o)
        exit(1);
    drop(s, i);
    if (end) {
        close(s->body_fd);
        s->body_fd = -1;
        s->nquad = 0;
        char line[4600];
        int n = snprintf(line, sizeof line, "{\"ID\":%lld,\"DiskPath\":\"%s\"}\n", s->body_id,
                         s->body_path);
        say(line, (size_t)n);
    }
}

/* The answer of a get: from the table, or a miss. */
static const answer *lookup(const char *line)
{
    const char *act = strstr(line, "\"ActionID\":\"");
    if (!act || strlen(act + 12) < B64)
        return NULL;
    char key[B64 + 1];
    memcpy(key, act + 12, B64);
    key[B64] = '\0';
    const answer *e = table[hash_of(key)];
    while (e && strcmp(e->key, key))
        e = e->next;
    return e;
}

/* Opens a put's file; a put of no bytes is answered at once. */
static void start_put(session *s, const char *line, long long req, char *out, size_t ol)
{
    const char *bs = strstr(line, "\"BodySize\":");
    long long body_size = bs ? strtoll(bs + 11, NULL, 10) : 0;
    snprintf(s->body_path, sizeof s->body_path, "%s/%ld", s->objdir, s->nput++);
    s->body_fd = open(s->body_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (s->body_fd < 0)
        exit(1);
    s->body_id = req;
    if (body_size == 0) { /* no body line */
        close(s->body_fd);
        s->body_fd = -1;
        ol += (size_t)snprintf(out + ol, 1200 - ol, ",\"DiskPath\":\"%s\"}\n", s->body_path);
        say(out, ol);
    }
}

/* Answers one request line (NUL-ended). */
static void answer_line(session *s, const char *line)
{
    const char *id = strstr(line, "\"ID\":");
    if (!id)
        return;
    long long req = strtoll(id + 5, NULL, 10);
    char out[1200];
    size_t ol = (size_t)snprintf(out, sizeof out, "{\"ID\":%lld", req);
    bool get = strstr(line, "\"Command\":\"get\"") != NULL;
    const answer *e = get ? lookup(line) : NULL;
    if (strstr(line, "\"Command\":\"put\"")) {
        start_put(s, line, req, out, ol);
        return;
    }
    if (e) {
        memcpy(out + ol, e->tail, e->tail_len);
        ol += e->tail_len;
    } else if (get) {
        memcpy(out + ol, ",\"Miss\":true}\n", 14);
        ol += 14;
    } else {
        memcpy(out + ol, "}\n", 2);
        ol += 2;
    }
    say(out, ol);
}

/* Answers every whole request line in the buffer, until a put's body. */
static void answer_lines(session *s)
{
    char *nl;
    while (s->body_fd < 0 && (nl = memchr(s->buf, '\n', s->len))) {
        *nl = '\0';
        size_t used = (size_t)(nl - s->buf) + 1;
        answer_line(s, s->buf);
        drop(s, used);
    }
    if (s->body_fd < 0 && s->len == sizeof s->buf)
        s->len = 0; /* a request line this long is not the go command's */
}

/* --spin USEC DIR or DIR: the store's root, resolved; exits on bad usage. */
static void parse_args(int argc, char **argv, char root[4096])
{
    if (argc == 4 && !strcmp(argv[1], "--spin")) {
        char *end = NULL;
        long us = strtol(argv[2], &end, 10);
        if (!*argv[2] || *end || us < 0 || us > 10000) {
            fprintf(stderr, "floor: --spin wants microseconds from 0 to 10000\n");
            exit(2);
        }
        spin_ns = us * 1000;
        argv += 2;
        argc -= 2;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: floor [--spin USEC] DIR\n");
        exit(2);
    }
    if (!realpath(argv[1], root)) {
        fprintf(stderr, "floor: %s: %s\n", argv[1], strerror(errno));
        exit(2);
    }
}

int main(int argc, char **argv)
{
    char root[4096];
    parse_args(argc, argv, root);
    size_t n = load(root);
    fprintf(stderr, "floor: %zu records of %s in memory\n", n, root);
    static session s = { .body_fd = -1 };
    snprintf(s.objdir, sizeof s.objdir, "%s/floor-objects", root);
    mkdir(s.objdir, 0700);
    static const char hello[] = "{\"ID\":0,\"KnownCommands\":[\"get\",\"put\",\"close\"]}\n";
    say(hello, sizeof hello - 1);
    for (;;) {
        if (s.body_fd >= 0)
            feed_body(&s);
        answer_lines(&s);
        if (s.body_fd >= 0 && s.len > 0)
            continue;
        spin_for_input();
        ssize_t r = read(0, s.buf + s.len, sizeof s.buf - s.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        s.len += (size_t)r;
    }
    if (spin_ns > 0)
        fprintf(stderr, "floor: spin %" PRId64 " us: %ld spins caught a request, %ld ran out\n",
                spin_ns / 1000, spins_caught, spins_out);
    return 0;
}
