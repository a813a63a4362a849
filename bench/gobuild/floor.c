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

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--spin")) {
        char *end = NULL;
        long us = strtol(argv[2], &end, 10);
        if (!*argv[2] || *end || us < 0 || us > 10000) {
            fprintf(stderr, "floor: --spin wants microseconds from 0 to 10000\n");
            return 2;
        }
        spin_ns = us * 1000;
        argv += 2;
        argc -= 2;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: floor [--spin USEC] DIR\n");
        return 2;
    }
    char root[4096];
    if (!realpath(argv[1], root)) {
        fprintf(stderr, "floor: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    size_t n = load(root);
    fprintf(stderr, "floor: %zu records of %s in memory\n", n, root);
    static const char hello[] = "{\"ID\":0,\"KnownCommands\":[\"get\",\"put\",\"close\"]}\n";
    char objdir[4200];
    snprintf(objdir, sizeof objdir, "%s/floor-objects", root);
    mkdir(objdir, 0700);
    long nput = 0;
    say(hello, sizeof hello - 1);

    static char buf[1 << 16];
    size_t len = 0;
    /* A put body being streamed: its file, and undecoded base64 bytes. */
    int body_fd = -1;
    long long body_id = 0;
    char body_path[4400], quad[4];
    int nquad = 0;
    for (;;) {
        if (body_fd >= 0) {
            /* The body line: a JSON string of base64, then a newline. */
            size_t i = 0;
            unsigned char out[3 * (sizeof buf / 4) + 3];
            size_t o = 0;
            bool end = false;
            for (; i < len; i++) {
                char c = buf[i];
                if (c == '\n') {
                    end = true;
                    i++;
                    break;
                }
                int v = b64val(c);
                if (v < 0)
                    continue; /* the quotes, padding */
                quad[nquad++] = (char)v;
                if (nquad == 4) {
                    out[o++] = (unsigned char)(quad[0] << 2 | quad[1] >> 4);
                    out[o++] = (unsigned char)(quad[1] << 4 | quad[2] >> 2);
                    out[o++] = (unsigned char)(quad[2] << 6 | quad[3]);
                    nquad = 0;
                }
            }
            if (end && nquad >= 2)
                out[o++] = (unsigned char)(quad[0] << 2 | quad[1] >> 4);
            if (end && nquad == 3)
                out[o++] = (unsigned char)(quad[1] << 4 | quad[2] >> 2);
            if (o && write(body_fd, out, o) != (ssize_t)o)
                exit(1);
            memmove(buf, buf + i, len - i);
            len -= i;
            if (end) {
                close(body_fd);
                body_fd = -1;
                nquad = 0;
                char out_line[4600];
                int n = snprintf(out_line, sizeof out_line, "{\"ID\":%lld,\"DiskPath\":\"%s\"}\n",
                                 body_id, body_path);
                say(out_line, (size_t)n);
            }
        }
        char *nl;
        while (body_fd < 0 && (nl = memchr(buf, '\n', len))) {
            *nl = '\0';
            size_t used = (size_t)(nl - buf) + 1;
            char *id = strstr(buf, "\"ID\":");
            if (id) {
                long long req = strtoll(id + 5, NULL, 10);
                char head[64], *act = strstr(buf, "\"ActionID\":\"");
                int hl = snprintf(head, sizeof head, "{\"ID\":%lld", req);
                answer *e = NULL;
                if (act && strlen(act + 12) >= B64) {
                    char key[B64 + 1];
                    memcpy(key, act + 12, B64);
                    key[B64] = '\0';
                    for (e = table[hash_of(key)]; e && strcmp(e->key, key); e = e->next)
                        ;
                }
                char out[1200];
                size_t ol = (size_t)hl;
                memcpy(out, head, ol);
                char *bs = strstr(buf, "\"BodySize\":");
                long long body_size = bs ? strtoll(bs + 11, NULL, 10) : 0;
                if (strstr(buf, "\"Command\":\"put\"")) {
                    snprintf(body_path, sizeof body_path, "%s/%ld", objdir, nput++);
                    body_fd = open(body_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                    if (body_fd < 0)
                        exit(1);
                    body_id = req;
                    if (body_size == 0) { /* no body line */
                        close(body_fd);
                        body_fd = -1;
                        ol += (size_t)snprintf(out + ol, sizeof out - ol, ",\"DiskPath\":\"%s\"}\n",
                                               body_path);
                        say(out, ol);
                    }
                } else if (strstr(buf, "\"Command\":\"get\"") && e) {
                    memcpy(out + ol, e->tail, e->tail_len);
                    ol += e->tail_len;
                    say(out, ol);
                } else if (strstr(buf, "\"Command\":\"get\"")) {
                    memcpy(out + ol, ",\"Miss\":true}\n", 14);
                    ol += 14;
                    say(out, ol);
                } else {
                    memcpy(out + ol, "}\n", 2);
                    ol += 2;
                    say(out, ol);
                }
            }
            memmove(buf, buf + used, len - used);
            len -= used;
        }
        if (body_fd < 0 && len == sizeof buf)
            len = 0; /* a request line this long is not the go command's */
        if (body_fd >= 0 && len > 0)
            continue;
        spin_for_input();
        ssize_t r = read(0, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (spin_ns > 0)
                fprintf(stderr, "floor: spin %" PRId64 " us: %ld spins caught a request, %ld ran out\n",
                        spin_ns / 1000, spins_caught, spins_out);
            return 0;
        }
        len += (size_t)r;
    }
}
