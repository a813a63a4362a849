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
 * A benchmark tool only: it answers puts with an error (nothing is stored),
 * trusts the store it reads, and must never be used as a cache. It is not
 * installed.
 *
 * Usage: floor DIR   (DIR as given to `acache gocacheprog --dir`)
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

static void say(const char *s, size_t n)
{
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
    if (argc != 2) {
        fprintf(stderr, "usage: floor DIR\n");
        return 2;
    }
    char root[4096];
    if (!realpath(argv[1], root)) {
        fprintf(stderr, "floor: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    size_t n = load(root);
    fprintf(stderr, "floor: %zu records of %s in memory\n", n, root);
    static const char hello[] = "{\"ID\":0,\"KnownCommands\":[\"get\",\"close\"]}\n";
    say(hello, sizeof hello - 1);

    static char buf[1 << 16];
    size_t len = 0;
    for (;;) {
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
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
                if (strstr(buf, "\"Command\":\"get\"") && e) {
                    memcpy(out + ol, e->tail, e->tail_len);
                    ol += e->tail_len;
                } else if (strstr(buf, "\"Command\":\"get\"")) {
                    memcpy(out + ol, ",\"Miss\":true}\n", 14);
                    ol += 14;
                } else if (strstr(buf, "\"Command\":\"close\"")) {
                    memcpy(out + ol, "}\n", 2);
                    ol += 2;
                } else {
                    static const char err[] = ",\"Err\":\"floor: serves gets only\"}\n";
                    memcpy(out + ol, err, sizeof err - 1);
                    ol += sizeof err - 1;
                }
                say(out, ol);
            }
            memmove(buf, buf + used, len - used);
            len -= used;
        }
        if (len == sizeof buf)
            len = 0; /* a line this long is not a request of a warm build */
        ssize_t r = read(0, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        len += (size_t)r;
    }
}
