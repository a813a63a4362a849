/*
 * test_remote.c - remote tiers against real servers: redis-server and nginx
 * with WebDAV, started on 127.0.0.1 with free ports by remote_servers.py
 * (driven over a pipe, so they die with this process), plus a listener that
 * accepts and never answers, and a port nothing listens on.
 *
 * Every failure path of the remote issue is triggered here: a poisoned
 * object, unsigned or forged records with a key set, read-only mode, mixed
 * compressed and raw objects, a dead remote switched off after consecutive
 * failures, a hanging one bounded by its timeouts, a full upload queue, a
 * flush deadline, refused uploads, server errors, a server killed while in
 * use. Each test bounds its own time.
 *
 * S3 runs the same tests against s3rver behind a proxy that checks every
 * request's SigV4 signature (s3_proxy.py), with the test keys in the
 * environment; its own tests cover wrong credentials of each kind, a wrong
 * region, a missing bucket, anonymous reads, every credential source and
 * virtual-hosted addressing.
 */
#include "testutil.h"

#include "core/backend.h"
#include "compose/prefetch.h"
#include "remote/remote.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The servers                                                          */

typedef struct servers {
    pid_t pid;
    int to, from;
    char *dir;
    int redis, redisauth, nginx, hang, closer, dribble, flood, dead;   /* ports */
    int s3, s3eu, s3moved, s3public, s3hang, s3rver;   /* s3rver: behind the proxies */
    char redis_sock[1024];
    char nginx_root[1024];
    char s3_data[1024];         /* s3rver's directory: BUCKET/KEY._S3rver_object */
    char s3_requests[1024];     /* what the s3 proxy saw, one JSON line each */
} servers;

static servers S; /* shared by the tests; one test starts its own set */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads one line from fd within the deadline; false at end or timeout. */
static bool read_line(int fd, char *buf, size_t size, double deadline)
{
    size_t n = 0;
    while (n + 1 < size) {
        struct pollfd p = { fd, POLLIN, 0 };
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return false;
        char c;
        if (read(fd, &c, 1) != 1)
            return false;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return true;
}

static const char *field(const char *line, const char *key, char *out, size_t size)
{
    char pat[32];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, " ");
    snprintf(out, size, "%.*s", (int)n, p);
    return out;
}

static void servers_start(servers *s, const char *kinds)
{
    char script[PATH_MAX], argbuf[512], *argv[32];
    const char *src = getenv("ACACHE_SOURCE_DIR");
    if (src && *src) {
        snprintf(script, sizeof script, "%s/tests/remote_servers.py", src);
    } else {
        snprintf(script, sizeof script, "%s", __FILE__);
        snprintf(strrchr(script, '/'), sizeof script - (size_t)(strrchr(script, '/') - script),
                 "/remote_servers.py");
    }
    memset(s, 0, sizeof *s);
    s->dir = tu_mkdtemp("servers");
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    size_t argc = 0;
    argv[argc++] = "python3";
    argv[argc++] = script;
    argv[argc++] = "serve";
    argv[argc++] = s->dir;
    snprintf(argbuf, sizeof argbuf, "%s", kinds);
    /* Every kind asked for must reach the script: a dropped one would
     * leave its port 0 and its tests failing far from here. */
    assert_true(strlen(kinds) < sizeof argbuf);
    for (char *save = NULL, *k = strtok_r(argbuf, " ", &save); k;
         k = strtok_r(NULL, " ", &save)) {
        assert_true(argc < sizeof argv / sizeof argv[0] - 1);
        argv[argc++] = k;
    }
    argv[argc] = NULL;
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execvp("python3", argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->to = in[1];
    s->from = out[0];
    char line[PATH_MAX + 200], v[PATH_MAX];
    double deadline = now_s() + 400;   /* the first run installs s3rver (npm) */
    for (;;) {
        if (!read_line(s->from, line, sizeof line, deadline))
            fail_msg("remote_servers.py did not start the servers (%s)", kinds);
        if (!strcmp(line, "ready"))
            break;
        int port = field(line, "port", v, sizeof v) ? atoi(v) : 0;
        if (!strncmp(line, "redis ", 6)) {
            s->redis = port;
            field(line, "sock", s->redis_sock, sizeof s->redis_sock);
        } else if (!strncmp(line, "redisauth ", 10)) {
            s->redisauth = port;
        } else if (!strncmp(line, "nginx ", 6)) {
            s->nginx = port;
            field(line, "root", s->nginx_root, sizeof s->nginx_root);
        } else if (!strncmp(line, "hang ", 5)) {
            s->hang = port;
        } else if (!strncmp(line, "closer ", 7)) {
            s->closer = port;
        } else if (!strncmp(line, "dribble ", 8)) {
            s->dribble = port;
        } else if (!strncmp(line, "flood ", 6)) {
            s->flood = port;
        } else if (!strncmp(line, "dead ", 5)) {
            s->dead = port;
        } else if (!strncmp(line, "s3 ", 3)) {
            s->s3 = port;
            s->s3rver = field(line, "upstream", v, sizeof v) ? atoi(v) : 0;
            field(line, "data", s->s3_data, sizeof s->s3_data);
            field(line, "requests", s->s3_requests, sizeof s->s3_requests);
        } else if (!strncmp(line, "s3-eu ", 6)) {
            s->s3eu = port;
        } else if (!strncmp(line, "s3-moved ", 9)) {
            s->s3moved = port;
        } else if (!strncmp(line, "s3-public ", 10)) {
            s->s3public = port;
        } else if (!strncmp(line, "s3-hang ", 8)) {
            s->s3hang = port;
        }
    }
}

/* Writes to the helper's pipe; a helper that died must not kill the test
 * with SIGPIPE, which otherwise stays at its default: the library must
 * never let one through (hiredis writes to sockets with write(2)). */
static ssize_t to_helper(servers *s, const char *text, size_t len)
{
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    ssize_t n = write(s->to, text, len);
    signal(SIGPIPE, old);
    return n;
}

static void servers_kill(servers *s, const char *kind)
{
    char cmd[64], line[64];
    int n = snprintf(cmd, sizeof cmd, "kill %s\n", kind);
    assert_int_equal(to_helper(s, cmd, (size_t)n), n);
    assert_true(read_line(s->from, line, sizeof line, now_s() + 20));
    assert_string_equal(line, "ok");
}

/* What a scripted server (dribble, flood) did on the next connection that
 * ended: the bytes it sent of its reply's total, and whether the client
 * hung up before the reply was whole. */
static void servers_report(servers *s, const char *kind, long long *sent, long long *total,
                           int *cut)
{
    char cmd[64], line[128], v[32];
    int n = snprintf(cmd, sizeof cmd, "report %s\n", kind);
    assert_int_equal(to_helper(s, cmd, (size_t)n), n);
    assert_true(read_line(s->from, line, sizeof line, now_s() + 40));
    if (!field(line, "sent", v, sizeof v))
        fail_msg("%s: no connection ended (%s)", kind, line);
    *sent = atoll(v);
    *total = atoll(field(line, "of", v, sizeof v) ? v : "0");
    *cut = atoi(field(line, "cut", v, sizeof v) ? v : "0");
}

static void servers_stop(servers *s)
{
    if (s->pid <= 0)
        return;
    (void)to_helper(s, "stop\n", 5); /* it may be gone already */
    close(s->to);
    close(s->from);
    double deadline = now_s() + 20;
    int status;
    while (waitpid(s->pid, &status, WNOHANG) == 0) {
        if (now_s() > deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }
        usleep(20000);
    }
    s->pid = 0;
    tu_rmtree(s->dir);
    free(s->dir);
    s->dir = NULL;
}

/* The test keys (remote_servers.TEST_KEYS) the s3 proxies accept. */
#define S3_KEY_ID "AKIDACACHETEST0000001"
#define S3_SECRET "acache/test+secret/0001"
#define S3_PROFILE_KEY_ID "AKIDACACHEPROFILE0002"
#define S3_PROFILE_SECRET "acache/profile+secret/02"
#define S3_SESSION_KEY_ID "ASIAACACHESESSION0003"
#define S3_SESSION_SECRET "acache/session+secret/03"
#define S3_SESSION_TOKEN "acache-session-token/+=0003"

/* The AWS environment of every test: the test keys (secret, when given:
 * another one), and no files or variables of the machine's. */
static void s3_env_keys(const char *secret)
{
    static const char *const clear[] = { "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                                         "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",
                                         "AWS_ENDPOINT_URL" };
    for (size_t i = 0; i < sizeof clear / sizeof clear[0]; i++)
        unsetenv(clear[i]);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/acache-test/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/acache-test/config", 1);
    setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", secret ? secret : S3_SECRET, 1);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    s3_env_keys(NULL);
    servers_start(&S, "redis redisauth nginx hang closer dribble flood dead s3 s3-eu s3-moved s3-public s3-hang");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    servers_stop(&S);
    return 0;
}

/* ------------------------------------------------------------------ */
/* A name server that does not answer                                   */

/* Lookups of SLOW_HOST block in this getaddrinfo, which stands in for the
 * C library's (this program's definition comes first for the library and
 * hiredis alike), until the test releases them or 20 s pass: a resolver
 * that does not answer. Other names go to the C library. */
#define SLOW_HOST "slow-dns.acache-test.invalid"

static pthread_mutex_t slow_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cv = PTHREAD_COND_INITIALIZER;
static int slow_entered, slow_returned;
static bool slow_released;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    if (node && !strcmp(node, SLOW_HOST)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 20;
        pthread_mutex_lock(&slow_mu);
        slow_entered++;
        while (!slow_released && pthread_cond_timedwait(&slow_cv, &slow_mu, &until) == 0)
            ;
        slow_returned++;
        pthread_mutex_unlock(&slow_mu);
        return EAI_AGAIN;
    }
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    return real ? real(node, service, hints, res) : EAI_SYSTEM;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

typedef enum kind { REDIS, HTTP, S3 } kind;

typedef struct fixture {
    kind k;
    char prefix[32];
    char *dir1, *dir2;
} fixture;

static atomic_int test_no;

static int setup(void **state)
{
    static fixture fxs[3];
    kind k = *state ? *(kind *)*state : REDIS;
    fixture *f = &fxs[k];
    memset(f, 0, sizeof *f);
    f->k = k;
    snprintf(f->prefix, sizeof f->prefix, "t%d", atomic_fetch_add(&test_no, 1));
    f->dir1 = tu_mkdtemp("remote1");
    f->dir2 = tu_mkdtemp("remote2");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->dir1);
    tu_rmtree(f->dir2);
    free(f->dir1);
    free(f->dir2);
    acache_set_log(NULL, NULL);
    s3_env_keys(NULL);
    return 0;
}

static kind REDIS_K = REDIS, HTTP_K = HTTP, S3_K = S3;

/* The spec of this test's remote on a port of kind k; opts may be "". */
static void spec_for(const fixture *f, kind k, int port, const char *opts, char *out, size_t size)
{
    if (k == REDIS)
        snprintf(out, size, "redis://127.0.0.1:%d/0?prefix=%s%s%s", port, f->prefix,
                 *opts ? "&" : "", opts);
    else if (k == S3)
        /* The test server (Python proxy, then Node) takes a few ms a
         * request: give bulk uploads time to drain at close. */
        snprintf(out, size, "s3://acache-test/%s?endpoint=http://127.0.0.1:%d%s%s%s", f->prefix,
                 port, strstr(opts, "flush-timeout") ? "" : "&flush-timeout=60s",
                 *opts ? "&" : "", opts);
    else
        snprintf(out, size, "http://127.0.0.1:%d/cache/%s%s%s", port, f->prefix, *opts ? "?" : "",
                 opts);
}

static acache_store *open_spec(const char *spec)
{
    acache_store *s = NULL;
    acache_status st = acache_open(spec, &s);
    if (st != ACACHE_OK)
        fail_msg("acache_open(%s): %s", spec, acache_last_error());
    return s;
}

static acache_store *open_remote(const fixture *f, const char *opts)
{
    char spec[512];
    spec_for(f, f->k, f->k == REDIS ? S.redis : f->k == S3 ? S.s3 : S.nginx, opts, spec,
             sizeof spec);
    return open_spec(spec);
}

/* disk:dir, then the remote. */
static acache_store *tiered(const char *dir, acache_store *remote)
{
    acache_store *stores[2] = { tu_open_disk(dir, ""), remote }, *t = NULL;
    assert_int_equal(acache_tiers(stores, 2, &t), ACACHE_OK);
    return t;
}

static acache_remote_info info_of(acache_store *s)
{
    acache_remote_info info;
    assert_int_equal(acache_remotes(s, &info, 1), 1);
    return info;
}

static redisContext *redis_conn(void)
{
    struct timeval tv = { 5, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", S.redis, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

/* Path of a value in nginx's root. */
static void http_path(const fixture *f, const char *ns, const char *hex, char *out, size_t size)
{
    snprintf(out, size, "%s/cache/%s/%s/%s", S.nginx_root, f->prefix, ns, hex);
}

/* Puts a value into s3rver directly (unsigned, past the proxy). */
static void s3_raw_put(const char *prefix, const char *ns, const char *hex, const void *data,
                       size_t len)
{
    char tmp[] = "/tmp/acache-s3-raw-XXXXXX", cmd[1024];
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof cmd, "curl -sf -o /dev/null -X PUT --data-binary @%s "
             "http://127.0.0.1:%d/acache-test/%s/%s/%s", tmp, S.s3rver, prefix, ns, hex);
    int rc = system(cmd);
    unlink(tmp);
    assert_int_equal(rc, 0);
}

/* Where s3rver keeps the bytes of acache-test/PREFIX/NS/HEX. */
static void s3_path(const char *prefix, const char *ns, const char *hex, char *out, size_t size)
{
    snprintf(out, size, "%s/acache-test/%s/%s/%s._S3rver_object", S.s3_data, prefix, ns, hex);
}

static size_t s3_objects;
static int s3_count_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    size_t n = strlen(path), m = strlen("._S3rver_object");
    if (type == FTW_F && n > m && !strcmp(path + n - m, "._S3rver_object"))
        s3_objects++;
    return 0;
}

/* Sets a value on the remote behind acache's back. */
static void raw_set(const fixture *f, const char *ns, const acache_id *id, const void *data,
                    size_t len)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    if (f->k == S3) {
        s3_raw_put(f->prefix, ns, hex, data, len);
    } else if (f->k == REDIS) {
        redisContext *c = redis_conn();
        redisReply *r = redisCommand(c, "SET %s:%s:%s %b", f->prefix, ns, hex, data, len);
        assert_non_null(r);
        freeReplyObject(r);
        redisFree(c);
    } else {
        char path[PATH_MAX], dir[PATH_MAX];
        http_path(f, ns, hex, path, sizeof path);
        snprintf(dir, sizeof dir, "%s/cache/%s/%s", S.nginx_root, f->prefix, ns);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
        assert_int_equal(system(cmd), 0);
        tu_write_file(path, data, len);
    }
}

/* Length of a value on the remote, or -1 if it has none. */
static long raw_len(const fixture *f, const char *ns, const acache_id *id)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    if (f->k == REDIS) {
        redisContext *c = redis_conn();
        redisReply *r = redisCommand(c, "EXISTS %s:%s:%s", f->prefix, ns, hex);
        long exists = r ? (long)r->integer : 0;
        freeReplyObject(r);
        r = redisCommand(c, "STRLEN %s:%s:%s", f->prefix, ns, hex);
        long len = r ? (long)r->integer : -1;
        freeReplyObject(r);
        redisFree(c);
        return exists ? len : -1;
    }
    char path[PATH_MAX];
    if (f->k == S3)
        s3_path(f->prefix, ns, hex, path, sizeof path);
    else
        http_path(f, ns, hex, path, sizeof path);
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Removes a value from the remote behind acache's back. */
static void raw_del(const fixture *f, const char *ns, const acache_id *id)
{
    char hex[ACACHE_ID_HEX_SIZE];
    acache_id_to_hex(id, hex);
    if (f->k == REDIS) {
        redisContext *c = redis_conn();
        freeReplyObject(redisCommand(c, "DEL %s:%s:%s", f->prefix, ns, hex));
        redisFree(c);
    } else if (f->k == S3) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "curl -sf -o /dev/null -X DELETE "
                 "http://127.0.0.1:%d/acache-test/%s/%s/%s", S.s3rver, f->prefix, ns, hex);
        assert_int_equal(system(cmd), 0);
    } else {
        char path[PATH_MAX];
        http_path(f, ns, hex, path, sizeof path);
        assert_int_equal(unlink(path), 0);
    }
    assert_int_equal(raw_len(f, ns, id), -1);
}

/* Number of values this test has on the remote. */
static size_t raw_count(const fixture *f)
{
    if (f->k == REDIS) {
        redisContext *c = redis_conn();
        redisReply *r = redisCommand(c, "KEYS %s:*", f->prefix);
        size_t n = r ? r->elements : 0;
        freeReplyObject(r);
        redisFree(c);
        return n;
    }
    char dir[PATH_MAX];
    if (f->k == S3) {
        snprintf(dir, sizeof dir, "%s/acache-test/%s", S.s3_data, f->prefix);
        s3_objects = 0;
        nftw(dir, s3_count_one, 16, FTW_PHYS);
        return s3_objects;
    }
    snprintf(dir, sizeof dir, "%s/cache/%s", S.nginx_root, f->prefix);
    return tu_count_files(dir, "");
}

static void put_bytes(acache_store *s, uint32_t n, size_t size, acache_id *out)
{
    unsigned char *buf = malloc(size ? size : 1);
    tu_fill(buf, size, n);
    acache_id action = tu_id(n);
    assert_int_equal(acache_put(s, &action, buf, size, out), ACACHE_OK);
    free(buf);
}

static void expect_bytes(acache_store *s, uint32_t n, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    tu_fill(buf, size, n);
    acache_id action = tu_id(n);
    acache_result r;
    acache_status st = acache_get(s, &action, ACACHE_GET_DATA, &r);
    if (st != ACACHE_OK)
        fail_msg("get %u: %s: %s", n, acache_status_str(st), acache_last_error());
    assert_int_equal(r.size, size);
    assert_memory_equal(r.data, buf, size);
    acache_result_release(&r);
    free(buf);
}

/* Log lines the library sent. */
static atomic_int log_count;
static char log_last[1024];

static void log_capture(void *ctx, const char *msg)
{
    (void)ctx;
    atomic_fetch_add(&log_count, 1);
    snprintf(log_last, sizeof log_last, "%s", msg);
}

static void capture_logs(void)
{
    atomic_store(&log_count, 0);
    log_last[0] = '\0';
    acache_set_log(log_capture, NULL);
}

/* Gets of ids [first, first + n) through t: every one a miss. */
static void expect_misses(acache_store *t, uint32_t first, uint32_t n)
{
    for (uint32_t i = first; i < first + n; i++) {
        acache_id action = tu_id(i);
        acache_result res;
        assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
    }
}

/* The remote of t is switched off, says why (reason names `why`), and one
 * line went to the log; failures counted, unless 0 is passed. */
static acache_remote_info expect_switched_off(acache_store *t, uint64_t failures, const char *why)
{
    acache_remote_info info = info_of(t);
    assert_int_equal(info.switched_off, 1);
    if (failures)
        assert_int_equal(info.failures, failures);
    if (!strstr(info.reason, why))
        fail_msg("reason '%s' does not say '%s'", info.reason, why);
    assert_int_equal(log_count, 1);
    assert_non_null(strstr(log_last, "switched off for the rest of this process"));
    return info;
}

/* ------------------------------------------------------------------ */
/* Round trips                                                          */

/* The remote alone: sizes around every boundary (empty, shorter than the
 * frame magic, one Redis chunk and more), raw bytes that look like a frame,
 * missing entries, delete. */
static void test_roundtrip(void **state)
{
    fixture *f = *state;
    acache_store *r = open_remote(f, "");
    const size_t sizes[] = { 0, 1, 7, 1000, (4u << 20) + 123 };
    for (uint32_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        acache_id out;
        put_bytes(r, 100 + i, sizes[i], &out);
        expect_bytes(r, 100 + i, sizes[i]);
        assert_int_equal(raw_len(f, "cas", &out), (long)sizes[i]);
    }
    unsigned char magic[64] = { 0x89, 'A', 'C', 'A', 'C', 'H', 'E', 0x1a };
    acache_id action = tu_id(200), out;
    assert_int_equal(acache_put(r, &action, magic, sizeof magic, &out), ACACHE_OK);
    acache_result res;
    assert_int_equal(acache_get(r, &action, ACACHE_GET_DATA, &res), ACACHE_OK);
    assert_memory_equal(res.data, magic, sizeof magic);
    assert_string_equal(res.path, "");
    acache_result_release(&res);

    action = tu_id(999);
    assert_int_equal(acache_get(r, &action, 0, &res), ACACHE_MISS);
    action = tu_id(100);
    assert_int_equal(acache_get(r, &action, ACACHE_GET_LOCAL, &res), ACACHE_MISS);
    assert_int_equal(acache_delete(r, &action), ACACHE_OK);
    assert_int_equal(acache_get(r, &action, 0, &res), ACACHE_MISS);
    acache_remote_info info = info_of(r);
    assert_int_equal(info.failures, 0);
    assert_int_equal(info.rejected, 0);
    assert_int_equal(info.switched_off, 0);
    acache_close(r);
}

/* What one machine stores, another with an empty disk store gets from the
 * remote: the answer is a path in its own store, and the next get stays
 * local. */
static void test_tiered_serves_from_remote(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, ""));
    for (uint32_t i = 0; i < 20; i++)
        put_bytes(a, i, 1000 * i, NULL);
    acache_flush(a);
    acache_remote_info info = info_of(a);
    assert_int_equal(info.uploads, 20);
    assert_int_equal(info.dropped, 0);
    assert_int_equal(info.pending, 0);
    acache_close(a);

    acache_store *b = tiered(f->dir2, open_remote(f, ""));
    acache_id action = tu_id(3);
    acache_result res;
    assert_int_equal(acache_get(b, &action, ACACHE_GET_LOCAL, &res), ACACHE_MISS);
    for (uint32_t i = 0; i < 20; i++) {
        action = tu_id(i);
        assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_OK);
        assert_int_equal(strncmp(res.path, f->dir2, strlen(f->dir2)), 0);
        assert_int_equal(res.size, 1000 * i);
        expect_bytes(b, i, 1000 * i);
    }
    info = info_of(b);
    assert_int_equal(info.hits, 20);
    /* Now local: found without the remote. */
    action = tu_id(5);
    assert_int_equal(acache_get(b, &action, ACACHE_GET_LOCAL, &res), ACACHE_OK);
    acache_close(b);
    acache_store *local = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_get(local, &action, 0, &res), ACACHE_OK);
    acache_close(local);
}

/* A remote hit of every size goes whole into the local store, however the
 * transport hands it over (libcurl in 16 KiB pieces, gathered before they
 * are written; Redis in larger ones, written as they come): sizes around
 * the gather buffer (256 KiB) and past a Redis chunk (4 MiB). */
static void test_tiered_fetch_sizes(void **state)
{
    fixture *f = *state;
    const size_t sizes[] = { 0, 1, 16383, 16385, (256u << 10) - 1, (256u << 10) + 1,
                             (1u << 20) + 7, (4u << 20) + 123 };
    const uint32_t n = sizeof sizes / sizeof sizes[0];
    /* Timeouts with room on a busy machine (5.4 MiB go each way). */
    const char *opts = "prefetch=0&timeout=30s&flush-timeout=5m";
    acache_store *a = tiered(f->dir1, open_remote(f, opts));
    for (uint32_t i = 0; i < n; i++)
        put_bytes(a, 300 + i, sizes[i], NULL);
    acache_flush(a);
    assert_int_equal(info_of(a).uploads, n);
    acache_close(a);

    acache_store *b = tiered(f->dir2, open_remote(f, opts));
    for (uint32_t i = 0; i < n; i++) {
        acache_id action = tu_id(300 + i);
        acache_result res;
        assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_OK);
        assert_int_equal(res.size, sizes[i]);
        assert_int_equal(strncmp(res.path, f->dir2, strlen(f->dir2)), 0);
    }
    assert_int_equal(info_of(b).hits, n);
    acache_close(b);
    /* What the local store holds on its own, read back byte for byte. */
    acache_store *local = tu_open_disk(f->dir2, "");
    for (uint32_t i = 0; i < n; i++)
        expect_bytes(local, 300 + i, sizes[i]);
    acache_close(local);
}

/* Behind a memory tier and a disk tier: the hit lands in the disk tier
 * (the one with files), is copied up into memory, and keeps the time it
 * was first stored, which `go clean -testcache` compares against. */
static void test_three_tiers(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, ""));
    put_bytes(a, 1, 4096, NULL);
    acache_id action = tu_id(1);
    acache_result first;
    assert_int_equal(acache_get(a, &action, 0, &first), ACACHE_OK);
    acache_close(a);
    usleep(20000);

    acache_store *mem = NULL;
    assert_int_equal(acache_open("mem:?max-size=8M", &mem), ACACHE_OK);
    acache_store *stores[3] = { mem, tu_open_disk(f->dir2, ""), open_remote(f, "") }, *t = NULL;
    assert_int_equal(acache_tiers(stores, 3, &t), ACACHE_OK);
    acache_result res;
    assert_int_equal(acache_get(t, &action, ACACHE_GET_DATA, &res), ACACHE_OK);
    assert_int_equal(strncmp(res.path, f->dir2, strlen(f->dir2)), 0);
    assert_int_equal(res.time_ns, first.time_ns);
    unsigned char want[4096];
    tu_fill(want, sizeof want, 1);
    assert_memory_equal(res.data, want, sizeof want);
    acache_result_release(&res);
    /* Now in memory: answered there, without the remote. */
    assert_int_equal(acache_get(t, &action, ACACHE_GET_LOCAL | ACACHE_GET_DATA, &res), ACACHE_OK);
    assert_string_equal(res.path, "");
    acache_result_release(&res);
    assert_int_equal(info_of(t).hits, 1);
    acache_close(t);
}

/* Gets of different ids from many threads at once. */
typedef struct par_arg {
    acache_store *s;
    uint32_t first;
    atomic_int *ok;
} par_arg;

static void *par_get(void *arg)
{
    par_arg *p = arg;
    for (uint32_t i = p->first; i < p->first + 25; i++) {
        acache_id action = tu_id(i);
        acache_result res;
        if (acache_get(p->s, &action, 0, &res) == ACACHE_OK && res.size == 3000 + i)
            atomic_fetch_add(p->ok, 1);
    }
    return NULL;
}

static void test_parallel_gets(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, ""));
    for (uint32_t i = 0; i < 200; i++)
        put_bytes(a, 1000 + i, 3000 + 1000 + i, NULL);
    acache_close(a);
    acache_store *b = tiered(f->dir2, open_remote(f, ""));
    pthread_t th[8];
    par_arg args[8];
    atomic_int ok = 0;
    for (int i = 0; i < 8; i++) {
        args[i] = (par_arg){ b, 1000 + 25 * (uint32_t)i, &ok };
        pthread_create(&th[i], NULL, par_get, &args[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    acache_remote_info info = info_of(b);
    if (ok != 200)
        fail_msg("%d of 200 gets right; remote: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
                 " rejected, %" PRIu64 " failures (%s); %s", (int)ok, info.hits, info.misses,
                 info.rejected, info.failures, info.reason, acache_last_error());
    assert_int_equal(info_of(b).hits, 200);
    assert_int_equal(info_of(b).failures, 0);
    acache_close(b);
}

/* ------------------------------------------------------------------ */
/* What a remote holds is not trusted                                   */

/* Wrong bytes under a valid name are never served, counted, and removed
 * (so that the next upload can replace them) unless read-only. (inline=0:
 * the records must not carry the objects, or the reader would never look
 * under cas/.) */
static void test_poisoned_object(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, "inline=0"));
    acache_id out1, out2;
    put_bytes(a, 1, 5000, &out1);
    put_bytes(a, 2, 5000, &out2);
    acache_close(a);
    unsigned char bad[5000];
    tu_fill(bad, sizeof bad, 77);
    raw_set(f, "cas", &out1, bad, sizeof bad);
    raw_set(f, "cas", &out2, bad, sizeof bad);

    acache_store *b = tiered(f->dir2, open_remote(f, "mode=ro"));
    acache_id action = tu_id(2);
    acache_result res;
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    assert_int_equal(acache_get(b, &action, ACACHE_GET_DATA, &res), ACACHE_MISS);
    assert_int_equal(info_of(b).rejected, 2);
    assert_int_equal(info_of(b).hits, 0);
    assert_int_equal(raw_len(f, "cas", &out2), 5000); /* read-only: left alone */
    acache_close(b);

    b = tiered(f->dir2, open_remote(f, ""));
    action = tu_id(1);
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    assert_int_equal(info_of(b).rejected, 1);
    assert_int_equal(info_of(b).failures, 0);
    assert_int_equal(raw_len(f, "cas", &out1), -1); /* removed */
    acache_stats st;
    acache_get_stats(b, &st);
    assert_int_equal(st.hits, 0);
    acache_close(b);
    /* Nothing reached the local store. */
    acache_store *local = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_get(local, &action, 0, &res), ACACHE_MISS);
    acache_close(local);

    /* The remote alone does the same check. */
    acache_store *r = open_remote(f, "mode=ro");
    action = tu_id(2);
    assert_int_equal(acache_get(r, &action, ACACHE_GET_DATA, &res), ACACHE_MISS);
    acache_close(r);
    /* A fresh upload replaces the removed object. */
    a = tiered(f->dir1, open_remote(f, "inline=0"));
    action = tu_id(1);
    acache_store *one = tu_open_disk(f->dir1, "");
    assert_int_equal(acache_delete(one, &action), ACACHE_OK);
    acache_close(one);
    put_bytes(a, 1, 5000, NULL);
    acache_close(a);
    b = tiered(f->dir2, open_remote(f, ""));
    expect_bytes(b, 1, 5000);
    acache_close(b);
}

/* A record that is not ours, or names an object the remote lost. */
static void test_bad_records(void **state)
{
    fixture *f = *state;
    acache_id action = tu_id(1);
    raw_set(f, "ac", &action, "garbage, not a record", 21);
    unsigned char big[4000];
    tu_fill(big, sizeof big, 1);
    acache_id action2 = tu_id(2);
    raw_set(f, "ac", &action2, big, sizeof big);
    /* prefetch=0 here and below: a manifest lookup would count too. */
    acache_store *b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    acache_result res;
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    assert_int_equal(acache_get(b, &action2, 0, &res), ACACHE_MISS);
    assert_int_equal(info_of(b).rejected, 2);
    acache_close(b);

    acache_store *a = tiered(f->dir1, open_remote(f, "inline=0"));
    acache_id out;
    put_bytes(a, 3, 100, &out);
    acache_close(a);
    raw_del(f, "cas", &out);
    b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    action = tu_id(3);
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    assert_int_equal(info_of(b).misses, 1);
    assert_int_equal(info_of(b).rejected, 0);
    acache_close(b);
}

/* Without a signing key anyone may write a record: one whose size
 * disagrees with a good shared object is refused, and the object, which
 * passes its hash, stays for the records that name it rightly. An object
 * that fails its hash still goes. */
static void test_lying_record_keeps_object(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, "prefetch=0&inline=0"));
    acache_id out;
    put_bytes(a, 1, 5000, &out);
    acache_close(a);
    long stored = raw_len(f, "cas", &out);
    assert_true(stored > 0);
    for (int i = 0; i < 2; i++) {
        /* Larger, then smaller, than the object. */
        remote_record rec = { .output = out, .size = i ? 4000 : 6000, .time_ns = 1 };
        unsigned char buf[REMOTE_RECORD_MAX];
        acache_id liar = tu_id(50 + (uint32_t)i);
        size_t n = record_encode(&liar, &rec, NULL, 0, buf);
        raw_set(f, "ac", &liar, buf, n);
        tu_rmtree(f->dir2);
        acache_store *b = tiered(f->dir2, open_remote(f, "prefetch=0"));
        acache_result res;
        assert_int_equal(acache_get(b, &liar, 0, &res), ACACHE_MISS);
        assert_int_equal(info_of(b).rejected, 1);
        acache_close(b);
        assert_int_equal(raw_len(f, "cas", &out), stored);
    }
    /* The honest record still gets its object. */
    tu_rmtree(f->dir2);
    acache_store *b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    expect_bytes(b, 1, 5000);
    acache_close(b);
    /* An object that fails its hash (and its record's size) goes. */
    unsigned char bad[3000];
    tu_fill(bad, sizeof bad, 99);
    raw_set(f, "cas", &out, bad, sizeof bad);
    tu_rmtree(f->dir2);
    b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    acache_id action = tu_id(1);
    acache_result res;
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    acache_close(b);
    assert_int_equal(raw_len(f, "cas", &out), -1);
}

/* Objects of at most inline= bytes ride in their record, so that a reader
 * needs only the record; larger ones, and every object when inline=0, do
 * not; an empty object is never asked for. Contents that are not the
 * object are refused (counted) and the object is fetched from cas/
 * instead, which stays. */
static void test_inline_objects(void **state)
{
    fixture *f = *state;
    const size_t sizes[] = { 0, 100, REMOTE_INLINE_MAX, REMOTE_INLINE_MAX + 1 };
    acache_store *a = tiered(f->dir1, open_remote(f, "prefetch=0"));
    acache_id outs[4];
    for (uint32_t i = 0; i < 4; i++)
        put_bytes(a, 4000 + i, sizes[i], &outs[i]);
    acache_close(a);
    for (uint32_t i = 0; i < 4; i++) {
        acache_id action = tu_id(4000 + i);
        long rec = raw_len(f, "ac", &action);
        assert_true(i == 0 || i == 3 ? rec < 512 : rec > (long)sizes[i]);
        raw_del(f, "cas", &outs[i]);
    }
    /* Only the records are left. */
    acache_store *b = tiered(f->dir2, open_remote(f, "prefetch=0&mode=ro"));
    for (uint32_t i = 0; i < 3; i++)
        expect_bytes(b, 4000 + i, sizes[i]);
    expect_misses(b, 4003, 1);
    assert_int_equal(info_of(b).hits, 3);
    assert_int_equal(info_of(b).rejected, 0);
    acache_close(b);

    /* A record whose contents are other bytes: not served. */
    unsigned char bad[100];
    tu_fill(bad, sizeof bad, 7);
    remote_record rec = { .output = outs[1], .size = sizeof bad, .time_ns = 1, .contents = bad };
    unsigned char buf[REMOTE_RECORD_MAX];
    acache_id liar = tu_id(4010);
    raw_set(f, "ac", &liar, buf, record_encode(&liar, &rec, NULL, 0, buf));
    tu_rmtree(f->dir2);
    b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    acache_result res;
    assert_int_equal(acache_get(b, &liar, 0, &res), ACACHE_MISS);
    assert_int_equal(info_of(b).rejected, 1);
    acache_close(b);
    /* With the object back under cas/ (inline=0: only there), the liar's
     * record gets the right bytes from it, and the object stays. */
    a = tiered(f->dir1, open_remote(f, "prefetch=0&inline=0"));
    acache_store *one = tu_open_disk(f->dir1, "");
    acache_id action = tu_id(4001);
    assert_int_equal(acache_delete(one, &action), ACACHE_OK);
    acache_close(one);
    put_bytes(a, 4001, sizes[1], NULL);
    acache_close(a);
    assert_true(raw_len(f, "ac", &action) < 512);
    tu_rmtree(f->dir2);
    b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    assert_int_equal(acache_get(b, &liar, ACACHE_GET_DATA, &res), ACACHE_OK);
    tu_fill(bad, sizeof bad, 4001);
    assert_int_equal(res.size, sizeof bad);
    assert_memory_equal(res.data, bad, sizeof bad);
    acache_result_release(&res);
    assert_int_equal(info_of(b).rejected, 1);
    assert_int_equal(info_of(b).hits, 1);
    acache_close(b);
    assert_int_equal(raw_len(f, "cas", &outs[1]), (long)sizes[1]);
}

static void write_key(const char *dir, const char *name, const char *key, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    tu_write_file(path, key, strlen(key));
}

/* A get of action from an empty disk store in front of the remote opened
 * with opts; rejected receives the remote's count of refused entries. */
static acache_status fresh_get(fixture *f, const char *opts, const acache_id *action,
                               uint64_t *rejected)
{
    acache_result res;
    tu_rmtree(f->dir2);
    acache_store *b = tiered(f->dir2, open_remote(f, opts));
    acache_status st = acache_get(b, action, 0, &res);
    *rejected = info_of(b).rejected;
    acache_close(b);
    return st;
}

/* With a key, records must carry its signature; objects need none. */
static void test_signed_records(void **state)
{
    fixture *f = *state;
    char k1[PATH_MAX], k2[PATH_MAX], shortk[PATH_MAX], opts1[PATH_MAX + 16], opts[PATH_MAX + 16];
    uint64_t rejected;
    write_key(f->dir1, "k1", "first-secret-key-0123456789\n", k1, sizeof k1);
    write_key(f->dir1, "k2", "second-secret-key-0123456789", k2, sizeof k2);
    write_key(f->dir1, "short", "tooshort\n", shortk, sizeof shortk);
    snprintf(opts1, sizeof opts1, "key-file=%s", k1);

    /* Unsigned writer, keyed reader: refused. */
    acache_store *a = tiered(f->dir1, open_remote(f, ""));
    put_bytes(a, 1, 100, NULL);
    acache_close(a);
    acache_id action = tu_id(1);
    assert_int_equal(fresh_get(f, opts1, &action, &rejected), ACACHE_MISS);
    assert_int_equal(rejected, 1);

    /* Signed writer (key from the environment): the same key reads it, a
     * reader without a key reads it, another key does not. */
    setenv("ACACHE_REMOTE_KEY_FILE", k1, 1);
    a = tiered(f->dir1, open_remote(f, ""));
    unsetenv("ACACHE_REMOTE_KEY_FILE");
    put_bytes(a, 2, 100, NULL);
    acache_close(a);
    action = tu_id(2);
    assert_int_equal(fresh_get(f, opts1, &action, &rejected), ACACHE_OK);
    assert_int_equal(fresh_get(f, "", &action, &rejected), ACACHE_OK);
    snprintf(opts, sizeof opts, "key-file=%s", k2);
    assert_int_equal(fresh_get(f, opts, &action, &rejected), ACACHE_MISS);
    assert_int_equal(rejected, 1);

    /* A signed record copied under another action's name: refused. */
    if (f->k == REDIS) {
        char hex[ACACHE_ID_HEX_SIZE], mhex[ACACHE_ID_HEX_SIZE];
        acache_id moved = tu_id(3);
        acache_id_to_hex(&action, hex);
        acache_id_to_hex(&moved, mhex);
        redisContext *c = redis_conn();
        redisReply *rep = redisCommand(c, "GET %s:ac:%s", f->prefix, hex);
        assert_int_equal(rep->type, REDIS_REPLY_STRING);
        freeReplyObject(redisCommand(c, "SET %s:ac:%s %b", f->prefix, mhex, rep->str, rep->len));
        freeReplyObject(rep);
        redisFree(c);
        assert_int_equal(fresh_get(f, opts1, &moved, &rejected), ACACHE_MISS);
        assert_int_equal(rejected, 1);
    }

    /* A key file that is too short, or missing, is refused at open. */
    char spec[PATH_MAX + 200];
    snprintf(opts, sizeof opts, "key-file=%s", shortk);
    spec_for(f, f->k, 1, opts, spec, sizeof spec);
    acache_store *s = NULL;
    assert_int_equal(acache_open(spec, &s), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "at least"));
    snprintf(opts, sizeof opts, "key-file=%s/none", f->dir1);
    spec_for(f, f->k, 1, opts, spec, sizeof spec);
    assert_true(acache_open(spec, &s) < 0);
}

/* mode=ro writes nothing, not even when it finds bad bytes; mode=wo
 * uploads but never asks. */
static void test_modes(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, "mode=ro"));
    for (uint32_t i = 0; i < 5; i++)
        put_bytes(a, i, 500, NULL);
    acache_id action = tu_id(0);
    assert_int_equal(acache_delete(a, &action), ACACHE_OK); /* local only */
    acache_flush(a);
    acache_remote_info info = info_of(a);
    assert_int_equal(info.writable, 0);
    assert_int_equal(info.uploads, 0);
    assert_int_equal(info.dropped, 0);
    acache_close(a);
    assert_int_equal(raw_count(f), 0);
    acache_store *r = open_remote(f, "mode=ro");
    assert_int_equal(acache_put(r, &action, "x", 1, NULL), ACACHE_EINVAL);
    acache_close(r);

    a = tiered(f->dir1, open_remote(f, "mode=wo"));
    put_bytes(a, 10, 500, NULL);
    acache_close(a);
    assert_int_equal(raw_count(f), 2);
    acache_store *b = tiered(f->dir2, open_remote(f, "mode=wo"));
    action = tu_id(10);
    acache_result res;
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    assert_int_equal(info_of(b).misses, 0); /* never asked */
    acache_close(b);
    b = tiered(f->dir2, open_remote(f, "mode=ro"));
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_OK);
    acache_close(b);
    assert_int_equal(raw_count(f), 2);
}

/* compress=zstd stores less; every reader takes both forms. */
static void test_compression(void **state)
{
    fixture *f = *state;
    size_t size = 200000;
    unsigned char *text = malloc(size);
    for (size_t i = 0; i < size; i++)
        text[i] = (unsigned char)"compressible text, compressible text\n"[i % 37];
    acache_id a1 = tu_id(1), a2 = tu_id(2), o1, o2;
    acache_store *zw = tiered(f->dir1, open_remote(f, "compress=zstd:5"));
    assert_int_equal(acache_put(zw, &a1, text, size, &o1), ACACHE_OK);
    put_bytes(zw, 3, 100000, NULL); /* random bytes: stored raw */
    acache_close(zw);
    text[0] = 'X';
    acache_store *rw = tiered(f->dir1, open_remote(f, ""));
    assert_int_equal(acache_put(rw, &a2, text, size, &o2), ACACHE_OK);
    acache_close(rw);
    assert_true(raw_len(f, "cas", &o1) < (long)size / 10);
    assert_int_equal(raw_len(f, "cas", &o2), (long)size);

    /* A plain reader and a compressing reader both read both. */
    const char *readers[] = { "", "compress=zstd" };
    for (int i = 0; i < 2; i++) {
        tu_rmtree(f->dir2);
        acache_store *b = tiered(f->dir2, open_remote(f, readers[i]));
        acache_result res;
        assert_int_equal(acache_get(b, &a1, ACACHE_GET_DATA, &res), ACACHE_OK);
        assert_int_equal(res.size, size);
        assert_int_equal(((const unsigned char *)res.data)[0], 'c');
        assert_memory_equal((const unsigned char *)res.data + 1, text + 1, size - 1);
        acache_result_release(&res);
        assert_int_equal(acache_get(b, &a2, ACACHE_GET_DATA, &res), ACACHE_OK);
        assert_memory_equal(res.data, text, size);
        acache_result_release(&res);
        expect_bytes(b, 3, 100000);
        assert_int_equal(info_of(b).rejected, 0);
        acache_close(b);
    }
    free(text);
}

/* An object over max-object is neither uploaded nor fetched. */
static void test_max_object(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, "max-object=1K"));
    put_bytes(a, 1, 2048, NULL);
    put_bytes(a, 2, 512, NULL);
    acache_flush(a);
    assert_int_equal(info_of(a).dropped, 1);
    assert_int_equal(info_of(a).uploads, 1);
    acache_close(a);
    a = tiered(f->dir1, open_remote(f, ""));
    acache_id action = tu_id(1);
    acache_store *one = tu_open_disk(f->dir1, "");
    assert_int_equal(acache_delete(one, &action), ACACHE_OK);
    acache_close(one);
    put_bytes(a, 1, 2048, NULL);
    acache_close(a);
    acache_store *b = tiered(f->dir2, open_remote(f, "max-object=1K"));
    acache_result res;
    assert_int_equal(acache_get(b, &action, 0, &res), ACACHE_MISS);
    expect_bytes(b, 2, 512);
    acache_close(b);
}

/* ------------------------------------------------------------------ */
/* Dead, hanging, failing, killed                                       */

/* Nothing listens: each call fails at once; after `failures` in a row
 * the remote is off, with one log line, and later calls cost nothing. */
static void test_dead_remote_switched_off(void **state)
{
    fixture *f = *state;
    char spec[512];
    capture_logs();
    /* prefetch=0: a manifest lookup racing the gets would fail too. */
    spec_for(f, f->k, S.dead, "failures=3&timeout=2s&prefetch=0", spec, sizeof spec);
    double t0 = now_s();
    acache_store *t = tiered(f->dir1, open_spec(spec));
    expect_misses(t, 0, 3);
    acache_remote_info info = expect_switched_off(t, 3, "3 consecutive failures");
    assert_non_null(strstr(log_last, "127.0.0.1"));
    acache_result res;
    for (uint32_t i = 10; i < 100; i++) {
        acache_id action = tu_id(i);
        assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
        put_bytes(t, i, 100, NULL); /* the local store takes it */
        assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_OK);
    }
    info = info_of(t);
    assert_int_equal(info.failures, 3);
    assert_int_equal(info.dropped, 90);
    assert_int_equal(log_count, 1);
    acache_close(t);
    assert_true(now_s() - t0 < 5.0);
}

/* Accepts and never answers: every call ends at its timeout; the remote
 * is switched off after three; puts return at once and close drops what
 * is left when flush-timeout runs out. */
static void test_hanging_remote(void **state)
{
    fixture *f = *state;
    char spec[512];
    capture_logs();
    spec_for(f, f->k, S.hang, "timeout=200ms&flush-timeout=300ms", spec, sizeof spec);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    double t0 = now_s();
    for (uint32_t i = 0; i < 10; i++)
        put_bytes(t, i, 1000, NULL);
    assert_true(now_s() - t0 < 1.0); /* puts do not wait for the remote */
    t0 = now_s();
    expect_misses(t, 100, 10);
    /* At most a few calls waited out a timeout before it was switched off
     * (the switch-off threshold, and an upload and a get in flight then),
     * against 20 for a remote never switched off: counted, not timed. */
    assert_true(info_of(t).failures <= 6);
    expect_switched_off(t, 0, "consecutive failures");
    t0 = now_s();
    acache_close(t);
    assert_true(now_s() - t0 < 1.5);
}

/* A full queue drops (and counts) rather than blocks; a flush that runs out
 * of time drops the rest. */
static void test_queue_full_and_flush_deadline(void **state)
{
    fixture *f = *state;
    char spec[512];
    spec_for(f, f->k, S.hang,
             "timeout=300ms&failures=1000&upload-queue=2&flush-timeout=200ms", spec, sizeof spec);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    double t0 = now_s();
    for (uint32_t i = 0; i < 20; i++)
        put_bytes(t, i, 1000, NULL);
    assert_true(now_s() - t0 < 1.0);
    acache_remote_info info = info_of(t);
    assert_true(info.dropped >= 16);
    assert_true(info.pending <= 4);
    t0 = now_s();
    acache_flush(t);
    double took = now_s() - t0;
    assert_true(took < 1.5);
    info = info_of(t);
    assert_int_equal(info.pending, 0);
    assert_int_equal(info.dropped, 20);
    assert_int_equal(info.uploads, 0);
    assert_int_equal(info.switched_off, 0); /* failures=1000 */
    acache_close(t);
}

/* The server answers PUT with 405: uploads are switched off, gets go on. */
static void test_uploads_refused(void **state)
{
    fixture *f = *state;
    (void)f;
    char spec[512];
    capture_logs();
    /* nginx serves /readonly/ without WebDAV. Put an entry there by hand. */
    acache_store *w = tiered(f->dir1, open_remote(f, ""));
    put_bytes(w, 1, 300, NULL);
    acache_close(w);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/readonly' && cp -r '%s/cache/%s/ac' '%s/cache/%s/cas' "
             "'%s/readonly/'", S.nginx_root, S.nginx_root, f->prefix, S.nginx_root, f->prefix,
             S.nginx_root);
    assert_int_equal(system(cmd), 0);
    snprintf(spec, sizeof spec, "http://127.0.0.1:%d/readonly", S.nginx);
    acache_store *t = tiered(f->dir2, open_spec(spec));
    for (uint32_t i = 10; i < 15; i++)
        put_bytes(t, i, 100, NULL);
    acache_flush(t);
    acache_remote_info info = info_of(t);
    assert_int_equal(info.uploads_off, 1);
    assert_int_equal(info.switched_off, 0);
    assert_int_equal(info.uploads, 0);
    assert_int_equal(info.dropped, 5);
    assert_int_equal(log_count, 1);
    assert_non_null(strstr(log_last, "uploads switched off"));
    assert_non_null(strstr(info.reason, "405"));
    expect_bytes(t, 1, 300); /* gets still served */
    acache_close(t);
}

/* 500 for everything: failures, then off. */
static void test_server_errors(void **state)
{
    fixture *f = *state;
    char spec[512];
    capture_logs();
    snprintf(spec, sizeof spec, "http://127.0.0.1:%d/broken?prefetch=0", S.nginx);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    expect_misses(t, 0, 5);
    expect_switched_off(t, 3, "500");
    acache_close(t);
}

/* A server that closes the connection while a large value is still being
 * written: the writer gets EPIPE, which must be an error, never a SIGPIPE
 * that kills the process (SIGPIPE is at its default in this test). */
static void test_closed_mid_write(void **state)
{
    fixture *f = *state;
    char spec[512];
    spec_for(f, f->k, S.closer, "timeout=2s", spec, sizeof spec);
    acache_store *r = open_spec(spec);
    size_t size = 6u << 20;
    unsigned char *buf = malloc(size);
    tu_fill(buf, size, 5);
    acache_id action = tu_id(1);
    for (int i = 0; i < 3; i++)
        assert_true(acache_put(r, &action, buf, size, NULL) < 0);
    assert_true(info_of(r).failures >= 1);
    free(buf);
    acache_close(r);
}

/* Killed while in use: nothing fails, the remote goes off, close is quick. */
typedef struct kill_arg {
    acache_store *s;
    atomic_bool *stop;
    atomic_int *errors;
    uint32_t base;
} kill_arg;

static void *kill_worker(void *arg)
{
    kill_arg *k = arg;
    for (uint32_t i = 0; !atomic_load(k->stop) && i < 100000; i++) {
        acache_id action = tu_id(k->base + i % 400);
        acache_result res;
        acache_status st = acache_get(k->s, &action, 0, &res);
        if (st < 0)
            atomic_fetch_add(k->errors, 1);
        if (st == ACACHE_MISS) {
            unsigned char buf[20000];
            tu_fill(buf, sizeof buf, k->base + i);
            if (acache_put(k->s, &action, buf, sizeof buf, NULL) != ACACHE_OK)
                atomic_fetch_add(k->errors, 1);
        }
    }
    return NULL;
}

static void test_killed_while_in_use(void **state)
{
    fixture *f = *state;
    servers own;
    servers_start(&own, f->k == REDIS ? "redis" : "nginx");
    char spec[512];
    capture_logs();
    spec_for(f, f->k, f->k == REDIS ? own.redis : own.nginx, "timeout=500ms", spec, sizeof spec);
    /* Fill the remote a bit, then work against it from an empty store. */
    acache_store *a = tiered(f->dir1, open_spec(spec));
    for (uint32_t i = 0; i < 200; i++)
        put_bytes(a, 5000 + i, 20000, NULL);
    acache_close(a);
    acache_store *t = tiered(f->dir2, open_spec(spec));
    atomic_bool stop = false;
    atomic_int errors = 0;
    pthread_t th[4];
    kill_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (kill_arg){ t, &stop, &errors, 5000 + 100 * (uint32_t)i };
        pthread_create(&th[i], NULL, kill_worker, &args[i]);
    }
    usleep(100000);
    servers_kill(&own, f->k == REDIS ? "redis" : "nginx");
    usleep(500000);
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(errors, 0);
    /* If the workers found everything locally by then, new ids reach it. */
    for (uint32_t i = 9000; i < 9010 && !info_of(t).switched_off; i++) {
        acache_id action = tu_id(i);
        acache_result res;
        assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
    }
    expect_switched_off(t, 0, "consecutive failures");
    double t0 = now_s();
    acache_close(t);
    assert_true(now_s() - t0 < 2.0);
    servers_stop(&own);
}

/* ------------------------------------------------------------------ */
/* get_many: several actions at once, as get_into gives each            */

/* What one get gave: its status, record and bytes. */
typedef struct got {
    acache_status st;
    acache_result meta;
    unsigned char *bytes;
    size_t len;
    int sinks, dones;
} got;

static acache_status got_write(void *ctx, const void *data, size_t len)
{
    got *g = ctx;
    g->bytes = realloc(g->bytes, g->len + len + 1);
    assert_non_null(g->bytes);
    memcpy(g->bytes + g->len, data, len);
    g->len += len;
    return ACACHE_OK;
}

typedef struct many {
    got *g;
    remote_sink sinks[REMOTE_BATCH_MAX];
} many;

static const remote_sink *many_sink_for(void *ctx, size_t i, const acache_result *meta)
{
    many *m = ctx;
    m->g[i].meta = *meta;
    m->g[i].sinks++;
    m->sinks[i] = (remote_sink){ got_write, &m->g[i] };
    return &m->sinks[i];
}

static void many_done(void *ctx, size_t i, acache_status st)
{
    many *m = ctx;
    m->g[i].st = st;
    m->g[i].dones++;
}

#define GM_N 14u
/* Sizes of the entries 3000 + i: an empty object, small ones, and two
 * larger than a batch takes together (fetch_many.c's SMALL_OBJECT). */
static size_t gm_size(uint32_t i)
{
    return i == 0 ? 0 : i == 6 || i == 11 ? (300u << 10) + i : 700 + 13 * (size_t)i;
}

/* The same ids through get_into one by one and through one get_many:
 * the same status, record and bytes for each, with a poisoned object, a
 * garbage record, a record too long to be one (on Redis it breaks the
 * pipeline: those after it are asked for again), and an id never stored
 * among them; done once for each. On Redis, good small entries come in
 * two GET pipelines, with no EXISTS or GETRANGE. (inline=0: objects
 * under cas/ only; test_inline_objects covers the records that carry
 * theirs.) */
static void test_get_many_same_as_single(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, "prefetch=0&inline=0"));
    acache_id ids[GM_N], outs[GM_N];
    for (uint32_t i = 0; i < GM_N; i++) {
        ids[i] = tu_id(3000 + i);
        if (i != 12) /* never stored */
            put_bytes(a, 3000 + i, gm_size(i), &outs[i]);
    }
    acache_close(a);
    unsigned char bad[2000];
    tu_fill(bad, sizeof bad, 99);
    raw_set(f, "cas", &outs[4], bad, gm_size(4)); /* poisoned: same size, other bytes */
    raw_set(f, "ac", &ids[8], "garbage, not a record", 21);
    raw_set(f, "ac", &ids[9], bad, sizeof bad); /* longer than any record */

    acache_store *r = open_remote(f, "prefetch=0&mode=ro");
    const remote_ops *rops = r->ops->remote;
    got one[GM_N], all[GM_N];
    memset(one, 0, sizeof one);
    memset(all, 0, sizeof all);
    for (uint32_t i = 0; i < GM_N; i++) {
        remote_sink sink = { got_write, &one[i] };
        one[i].st = rops->get_into(r->self, &ids[i], &one[i].meta, &sink);
    }
    many m = { all, { { NULL, NULL } } };
    remote_batch b = { ids, GM_N, many_sink_for, many_done, &m };
    rops->get_many(r->self, &b);
    for (uint32_t i = 0; i < GM_N; i++) {
        if (all[i].dones != 1 || all[i].st != one[i].st)
            fail_msg("id %u: get_many %s (done %d times), get_into %s", i,
                     acache_status_str(all[i].st), all[i].dones, acache_status_str(one[i].st));
        if (one[i].st != ACACHE_OK)
            continue;
        assert_int_equal(all[i].sinks, 1);
        assert_memory_equal(&all[i].meta.output_id, &one[i].meta.output_id, ACACHE_ID_SIZE);
        assert_int_equal(all[i].meta.size, one[i].meta.size);
        assert_int_equal(all[i].meta.time_ns, one[i].meta.time_ns);
        assert_int_equal(all[i].len, one[i].len);
        assert_int_equal(all[i].len, gm_size(i));
        if (all[i].len)
            assert_memory_equal(all[i].bytes, one[i].bytes, all[i].len);
    }
    /* What each is: the caller hashes the poisoned bytes and refuses them. */
    assert_int_equal(all[4].st, ACACHE_OK);
    assert_memory_not_equal(all[3].bytes, all[4].bytes, all[3].len);
    assert_int_equal(all[8].st, ACACHE_CORRUPT);
    assert_int_equal(all[9].st, ACACHE_CORRUPT);
    assert_int_equal(all[12].st, ACACHE_MISS);
    for (uint32_t i = 0; i < GM_N; i++) {
        free(one[i].bytes);
        free(all[i].bytes);
    }

    if (f->k == REDIS) {
        redisContext *c = redis_conn();
        freeReplyObject(redisCommand(c, "CONFIG RESETSTAT"));
        memset(all, 0, sizeof all);
        remote_batch good = { ids, 4, many_sink_for, many_done, &m }; /* 0-3: small, good */
        rops->get_many(r->self, &good);
        for (uint32_t i = 0; i < 4; i++) {
            assert_int_equal(all[i].st, ACACHE_OK);
            free(all[i].bytes);
        }
        redisReply *rep = redisCommand(c, "INFO commandstats");
        assert_non_null(rep);
        /* 4 records, 3 objects: entry 0's object is empty, and an empty
         * object is never asked for. */
        assert_non_null(strstr(rep->str, "cmdstat_get:calls=7,"));
        assert_null(strstr(rep->str, "cmdstat_getrange:"));
        assert_null(strstr(rep->str, "cmdstat_exists:"));
        freeReplyObject(rep);
        redisFree(c);
    }
    acache_close(r);
}

/* A batch of 8 (ids first..first+7) asked of r, which cannot answer: every
 * action is done exactly once, with an error, and no bytes. Returns the
 * seconds it took. */
static double expect_batch_fails(acache_store *r, uint32_t first)
{
    acache_id ids[8];
    got all[8];
    memset(all, 0, sizeof all);
    for (uint32_t i = 0; i < 8; i++)
        ids[i] = tu_id(first + i);
    many m = { all, { { NULL, NULL } } };
    remote_batch b = { ids, 8, many_sink_for, many_done, &m };
    double t0 = now_s();
    r->ops->remote->get_many(r->self, &b);
    double took = now_s() - t0;
    for (uint32_t i = 0; i < 8; i++) {
        assert_int_equal(all[i].dones, 1);
        assert_int_equal(all[i].sinks, 0);
        assert_true(all[i].st < 0);
    }
    return took;
}

/* A batch asked of a dead server (Redis: one pipeline; HTTP, S3: requests at
 * once) fails as one exchange: one failure towards switching the remote
 * off, not one per action; every action is done, with an error. */
static void test_get_many_dead_counts_once(void **state)
{
    fixture *f = *state;
    char spec[512];
    spec_for(f, f->k, S.dead, "failures=100&timeout=2s&prefetch=0", spec, sizeof spec);
    acache_store *r = open_spec(spec);
    expect_batch_fails(r, 3100);
    assert_int_equal(info_of(r).failures, 1);
    assert_false(info_of(r).switched_off);
    acache_close(r);
}

/* Longer than any request of test_get_many_hang_and_close may take by its
 * own limits, on any load: only a request that never ends reaches it. */
#define HANG_BOUND_S 30.0

/* Every action of a batch is done exactly once, with an error, and a
 * single get is an error too, ...
 *  - asked of a server that accepts and never answers: the requests end at
 *    their own stall limit (HTTP, S3: libcurl's timer, which the wait,
 *    curl_wait.c, must run; one poll alone would not end them), not later;
 *  - asked of a server that answers garbage and hangs up (HTTP, S3: a
 *    socket that polls as hung up, handed to libcurl to read and name). */
static void test_get_many_hang_and_close(void **state)
{
    fixture *f = *state;
    const int ports[2] = { S.hang, S.closer };
    for (int p = 0; p < 2; p++) {
        char spec[512];
        spec_for(f, f->k, ports[p], "failures=100&timeout=300ms&prefetch=0", spec, sizeof spec);
        acache_store *r = open_spec(spec);
        double took = expect_batch_fails(r, 3200);
        /* That they end at all, by their own limits (the stall limit is
         * the timeout rounded up to a second): a bound for a hang, far
         * above any load, not a measure of speed. */
        if (took >= HANG_BOUND_S)
            fail_msg("%s: a batch took %.1f s", p ? "closer" : "hang", took);
        got one;
        memset(&one, 0, sizeof one);
        remote_sink sink = { got_write, &one };
        acache_id id = tu_id(3200);
        double t0 = now_s();
        assert_true(r->ops->remote->get_into(r->self, &id, &one.meta, &sink) < 0);
        took = now_s() - t0;
        assert_int_equal(one.len, 0);
        if (took >= HANG_BOUND_S)
            fail_msg("%s: a get took %.1f s", p ? "closer" : "hang", took);
        acache_close(r);
    }
}

/* ------------------------------------------------------------------ */
/* Session prefetch                                                     */

#define PF_FIRST 2000u
#define PF_N 100u
#define PF_SIZE(i) (1500 + 37 * (size_t)(i))

/* A cold session: for each id a get that misses, then a put; at close it
 * stores its manifest (it used PF_N >= PREFETCH_MIN_IDS ids). */
static void pf_cold_session(fixture *f, const char *dir)
{
    acache_store *a = tiered(dir, open_remote(f, ""));
    for (uint32_t i = PF_FIRST; i < PF_FIRST + PF_N; i++) {
        acache_id action = tu_id(i);
        acache_result res;
        assert_int_equal(acache_get(a, &action, 0, &res), ACACHE_MISS);
        put_bytes(a, i, PF_SIZE(i), NULL);
    }
    acache_close(a);
}

/* Waits (30 s at most) until the prefetch of t has ended (been through its
 * whole manifest, or found none), and returns what it did. */
static acache_prefetch_info pf_wait(acache_store *t)
{
    acache_prefetch_info pf;
    double deadline = now_s() + 30;
    for (;;) {
        assert_int_equal(acache_prefetch_stats(t, &pf), 1);
        if (pf.finished)
            return pf;
        if (now_s() > deadline)
            fail_msg("prefetch not done: loaded %d, listed %" PRIu64 ", fetched %" PRIu64, pf.loaded,
                     pf.listed, pf.fetched);
        tu_sleep_ms(10); /* polling for the event, bounded above */
    }
}

/* A session that starts as the last one did, with an empty local store,
 * finds every entry local after asking for one: fetched ahead (in
 * batches), checked, byte for byte. One whose object was poisoned on the
 * remote is never stored, nor one whose record is garbage; the others of
 * their batches are. A session that used nothing new writes no new
 * manifest. */
static void test_prefetch_session(void **state)
{
    fixture *f = *state;
    pf_cold_session(f, f->dir1);
    acache_id key, first = tu_id(PF_FIRST);
    prefetch_key(&first, &key);
    assert_true(raw_len(f, "ac", &key) > 0); /* the manifest's record */

    /* Poison the object of the last id. */
    acache_store *probe = tu_open_disk(f->dir1, "");
    acache_id last = tu_id(PF_FIRST + PF_N - 1);
    acache_result res;
    assert_int_equal(acache_get(probe, &last, 0, &res), ACACHE_OK);
    acache_id poisoned = res.output_id;
    acache_close(probe);
    unsigned char *bad = malloc(PF_SIZE(PF_FIRST + PF_N - 1));
    tu_fill(bad, PF_SIZE(PF_FIRST + PF_N - 1), 4242);
    raw_set(f, "cas", &poisoned, bad, PF_SIZE(PF_FIRST + PF_N - 1));
    free(bad);
    /* And the record of one in the middle of a batch is garbage. */
    acache_id garbled = tu_id(PF_FIRST + PREFETCH_BATCH + 3);
    raw_set(f, "ac", &garbled, "garbage, not a record", 21);
    size_t keys_before = raw_count(f);

    acache_store *b = tiered(f->dir2, open_remote(f, ""));
    assert_int_equal(acache_get(b, &first, 0, &res), ACACHE_OK);
    acache_prefetch_info pf = pf_wait(b);
    assert_int_equal(pf.loaded, 1);
    assert_int_equal(pf.listed, PF_N);
    assert_int_equal(pf.failed, 2);
    assert_true(pf.fetched >= PF_N - 3); /* the first one may be fetched by the get */
    assert_int_equal(acache_get(b, &garbled, ACACHE_GET_LOCAL, &res), ACACHE_MISS);
    /* Every other entry is local now, though nobody asked for it. */
    for (uint32_t i = PF_FIRST; i < PF_FIRST + PF_N - 1; i++) {
        acache_id action = tu_id(i);
        if (i == PF_FIRST + PREFETCH_BATCH + 3)
            continue;
        assert_int_equal(acache_get(b, &action, ACACHE_GET_LOCAL, &res), ACACHE_OK);
        expect_bytes(b, i, PF_SIZE(i));
    }
    assert_int_equal(acache_get(b, &last, ACACHE_GET_LOCAL, &res), ACACHE_MISS);
    assert_int_equal(acache_get(b, &last, 0, &res), ACACHE_MISS);
    assert_true(info_of(b).rejected >= 1);
    acache_close(b);
    /* It used only listed ids: no new manifest. (The poisoned object was
     * removed from the remote: one key fewer.) */
    assert_int_equal(raw_count(f), keys_before - 1);
    acache_store *local = tu_open_disk(f->dir2, "");
    assert_int_equal(acache_get(local, &last, 0, &res), ACACHE_MISS);
    acache_close(local);
}

/* A parallel build does not always start with the same lookup: the
 * manifest is found under any of the first PREFETCH_KEYS lookups of the
 * session that wrote it. prefetch=0 turns it off. */
static void test_prefetch_keys_and_off(void **state)
{
    fixture *f = *state;
    pf_cold_session(f, f->dir1);
    acache_id third = tu_id(PF_FIRST + 2), other = tu_id(PF_FIRST + 50);
    acache_result res;

    acache_store *b = tiered(f->dir2, open_remote(f, ""));
    assert_int_equal(acache_get(b, &third, 0, &res), ACACHE_OK);
    acache_prefetch_info pf = pf_wait(b);
    assert_int_equal(pf.loaded, 1);
    assert_int_equal(pf.listed, PF_N);
    assert_int_equal(pf.failed, 0);
    assert_int_equal(acache_get(b, &other, ACACHE_GET_LOCAL, &res), ACACHE_OK);
    acache_close(b);

    tu_rmtree(f->dir2);
    b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    assert_int_equal(acache_prefetch_stats(b, &pf), 0);
    assert_int_equal(acache_get(b, &third, 0, &res), ACACHE_OK);
    /* No prefetch exists to wait for: nothing else is fetched. */
    assert_int_equal(acache_get(b, &other, ACACHE_GET_LOCAL, &res), ACACHE_MISS);
    acache_close(b);
}

/* A manifest is a hint that is checked like anything else: one whose bytes
 * are not a manifest, or a record that is garbage, prefetches nothing and
 * costs the session nothing but the lookup. */
static void test_prefetch_bad_manifest(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, "prefetch=0"));
    for (uint32_t i = 0; i < 20; i++)
        put_bytes(a, 3000 + i, 100, NULL);
    acache_id first = tu_id(3000), key;
    prefetch_key(&first, &key);
    const char junk[] = "acache-manifest-v1\nnot a multiple of 32";
    assert_int_equal(acache_put(a, &key, junk, sizeof junk - 1, NULL), ACACHE_OK);
    acache_id first2 = tu_id(3001), key2;
    prefetch_key(&first2, &key2);
    acache_close(a);
    raw_set(f, "ac", &key2, "garbage, not a record", 21);

    for (int round = 0; round < 2; round++) {
        tu_rmtree(f->dir2);
        acache_store *b = tiered(f->dir2, open_remote(f, ""));
        acache_id start = round == 0 ? first : first2;
        acache_result res;
        assert_int_equal(acache_get(b, &start, 0, &res), ACACHE_OK);
        acache_prefetch_info pf = pf_wait(b); /* it looked, and gave up */
        assert_int_equal(pf.loaded, 0);
        assert_int_equal(pf.fetched, 0);
        acache_id other = tu_id(3010);
        assert_int_equal(acache_get(b, &other, ACACHE_GET_LOCAL, &res), ACACHE_MISS);
        assert_int_equal(acache_get(b, &other, 0, &res), ACACHE_OK);
        assert_int_equal(info_of(b).failures, 0);
        acache_close(b);
    }
}

/* A session that used fewer than PREFETCH_MIN_IDS ids, or whose remote is
 * read-only, stores no manifest. */
static void test_prefetch_small_or_ro(void **state)
{
    fixture *f = *state;
    acache_store *a = tiered(f->dir1, open_remote(f, ""));
    for (uint32_t i = 0; i < PREFETCH_MIN_IDS - 1; i++) {
        acache_id action = tu_id(4000 + i);
        acache_result res;
        assert_int_equal(acache_get(a, &action, 0, &res), ACACHE_MISS);
        put_bytes(a, 4000 + i, 100, NULL);
    }
    acache_close(a);
    acache_id first = tu_id(4000), key;
    prefetch_key(&first, &key);
    assert_int_equal(raw_len(f, "ac", &key), -1);

    /* Read-only: the local store gets the manifest, the remote nothing. */
    tu_rmtree(f->dir2);
    acache_store *b = tiered(f->dir2, open_remote(f, "mode=ro"));
    for (uint32_t i = 0; i < PREFETCH_MIN_IDS + 4; i++) {
        acache_id action = tu_id(4000 + i);
        acache_result res;
        acache_get(b, &action, 0, &res);
        if (i >= PREFETCH_MIN_IDS - 1)
            put_bytes(b, 4000 + i, 100, NULL);
    }
    acache_close(b);
    assert_int_equal(raw_len(f, "ac", &key), -1);
}

/* A session that never needed its remote (every lookup a local hit)
 * keeps its manifest local: it must not wait at exit for an upload to a
 * remote that may be dead or hanging. */
static void test_prefetch_local_only(void **state)
{
    fixture *f = *state;
    acache_store *d = tu_open_disk(f->dir1, "");
    for (uint32_t i = 0; i < PREFETCH_MIN_IDS + 4; i++)
        put_bytes(d, 5000 + i, 100, NULL);
    acache_close(d);
    acache_store *t = tiered(f->dir1, open_remote(f, ""));
    for (uint32_t i = 0; i < PREFETCH_MIN_IDS + 4; i++) {
        acache_id action = tu_id(5000 + i);
        acache_result res;
        assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_OK);
    }
    acache_close(t);
    acache_id first = tu_id(5000), key;
    prefetch_key(&first, &key);
    assert_int_equal(raw_len(f, "ac", &key), -1);
    assert_int_equal(raw_count(f), 0);
    d = tu_open_disk(f->dir1, "");
    acache_result res;
    assert_int_equal(acache_get(d, &key, 0, &res), ACACHE_OK); /* kept locally */
    acache_close(d);
}

/* ------------------------------------------------------------------ */
/* Redis specifics, specs                                               */

/* A password holding '@', ':' and "%40" (the parsers read the user
 * information up to the last '@'): the remote works with it (libcurl gets
 * the credentials apart from the URL), and no message shows any of it: not
 * the remote's name, not a refused spec, not a failure's message, not the
 * "switched off" log line (libcurl's errors quote the URL). */
static void test_credentials_never_shown(void **state)
{
    fixture *f = *state;
    static const char *const pieces[] = { "alice", "p@ss", "ss:w", "40rd", "w@rd", "tok-s3" };
    char spec[512];
    const char *scheme = f->k == REDIS ? "redis" : "http";
    capture_logs();
    /* Refused specs: an unknown option, an option that is not KEY=VALUE. */
    const char *bad[] = { "%s://alice:p@ss:w%%40rd@127.0.0.1:%d/x?nosuch=1&token=tok-s3",
                          "%s://alice:p@ss:w%%40rd@127.0.0.1:%d/x?oops&token=tok-s3" };
    for (size_t i = 0; i < 2; i++) {
        acache_store *s = NULL;
        snprintf(spec, sizeof spec, bad[i], scheme, S.dead);
        assert_int_not_equal(acache_open(spec, &s), ACACHE_OK);
        for (size_t k = 0; k < 6; k++)
            if (strstr(acache_last_error(), pieces[k]))
                fail_msg("'%s' shows '%s'", acache_last_error(), pieces[k]);
    }
    /* A remote that fails once and is switched off. */
    if (f->k == REDIS)
        snprintf(spec, sizeof spec, "redis://alice:p@ss:w%%40rd@127.0.0.1:%d/0?failures=1&prefetch=0",
                 S.dead);
    else
        snprintf(spec, sizeof spec, "http://alice:p@ss:w%%40rd@127.0.0.1:%d/cache?failures=1&prefetch=0",
                 S.dead);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    expect_misses(t, 1, 1);
    acache_remote_info info = expect_switched_off(t, 1, "consecutive failures");
    for (size_t k = 0; k < 6; k++)
        if (strstr(info.name, pieces[k]) || strstr(info.reason, pieces[k]) ||
            strstr(log_last, pieces[k]))
            fail_msg("'%s' / '%s' / '%s' shows '%s'", info.name, info.reason, log_last, pieces[k]);
    assert_non_null(strstr(info.name, "://***@127.0.0.1"));
    acache_close(t);
    if (f->k == REDIS)
        return; /* the test server wants no password */
    /* nginx ignores the credentials: what matters is that they reach it
     * without breaking the URL. */
    snprintf(spec, sizeof spec, "http://alice:p@ss:w%%40rd@127.0.0.1:%d/cache/%s", S.nginx,
             f->prefix);
    acache_store *a = tiered(f->dir1, open_spec(spec));
    put_bytes(a, 7, 3000, NULL);
    acache_flush(a);
    assert_int_equal(info_of(a).uploads, 1);
    acache_close(a);
    acache_store *b = tiered(f->dir2, open_spec(spec));
    expect_bytes(b, 7, 3000);
    acache_close(b);
}

/* A server that sends its reply one byte every 0.5 s (the whole of it
 * takes 20 s): the get is a miss once its deadline passes, well before the
 * reply is done, and the client hangs up on the dribble. Each read returns
 * within the timeout, so a timeout per read would wait to the end. */
static void test_redis_deadline_per_operation(void **state)
{
    fixture *f = *state;
    char spec[512];
    long long sent, total;
    int cut;
    spec_for(f, REDIS, S.dribble, "timeout=1s&prefetch=0", spec, sizeof spec);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    acache_id action = tu_id(1);
    acache_result res;
    double t0 = now_s();
    assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
    double took = now_s() - t0;
    servers_report(&S, "dribble", &sent, &total, &cut);
    if (!cut || sent >= total || took >= 5.0)
        fail_msg("the get waited %.1fs; the server sent %lld of %lld bytes, cut=%d", took, sent,
                 total, cut);
    assert_int_equal(info_of(t).failures, 1);
    acache_close(t);
}

/* A server that announces a 1 TiB value and streams it: the reply is
 * refused from its header (the record may take 512 bytes), as a rejected
 * record, and the client hangs up instead of reading what follows. */
static void test_redis_bulk_refused_from_header(void **state)
{
    fixture *f = *state;
    char spec[512];
    long long sent, total;
    int cut;
    spec_for(f, REDIS, S.flood, "timeout=2s&prefetch=0", spec, sizeof spec);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    acache_id action = tu_id(1);
    acache_result res;
    assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
    servers_report(&S, "flood", &sent, &total, &cut);
    /* What the sockets' buffers took before the hang-up, no more. */
    if (!cut || sent >= 16 << 20)
        fail_msg("the server sent %lld of %lld bytes, cut=%d", sent, total, cut);
    acache_remote_info info = info_of(t);
    assert_int_equal(info.rejected, 1);
    assert_int_equal(info.failures, 0);
    acache_close(t);
}

/* A host name whose lookup never answers: the get is a miss within the
 * connect timeout, while the lookup is still blocked (it is left to finish
 * on its own), and the failure counts towards switching the remote off. */
static void test_redis_name_lookup_bounded(void **state)
{
    fixture *f = *state;
    char spec[512];
    snprintf(spec, sizeof spec,
             "redis://%s:%d/0?prefix=%s&connect-timeout=300ms&timeout=300ms&prefetch=0&failures=2",
             SLOW_HOST, S.redis, f->prefix);
    capture_logs();
    acache_store *t = tiered(f->dir1, open_spec(spec));
    acache_id action = tu_id(1);
    acache_result res;
    assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
    pthread_mutex_lock(&slow_mu);
    int entered = slow_entered, returned = slow_returned;
    pthread_mutex_unlock(&slow_mu);
    assert_int_equal(entered, 1);
    assert_int_equal(returned, 0); /* the get did not wait for the lookup */
    assert_int_equal(acache_get(t, &action, 0, &res), ACACHE_MISS);
    acache_remote_info info = expect_switched_off(t, 2, "looking up");
    assert_non_null(strstr(info.reason, SLOW_HOST));
    pthread_mutex_lock(&slow_mu);
    slow_released = true;
    pthread_cond_broadcast(&slow_cv);
    pthread_mutex_unlock(&slow_mu);
    acache_close(t);
}

static void test_redis_auth_and_unix(void **state)
{
    fixture *f = *state;
    char spec[PATH_MAX + 200];
    snprintf(spec, sizeof spec, "redis://:acache-test-pw@127.0.0.1:%d/2?prefix=%s", S.redisauth,
             f->prefix);
    acache_store *r = open_spec(spec);
    put_bytes(r, 1, 100, NULL);
    expect_bytes(r, 1, 100);
    acache_remote_info info = info_of(r);
    assert_null(strstr(info.name, "acache-test-pw"));
    assert_non_null(strstr(info.name, "://***@127.0.0.1"));
    acache_close(r);

    capture_logs();
    snprintf(spec, sizeof spec, "redis://:wrong@127.0.0.1:%d?prefix=%s&failures=1&prefetch=0",
             S.redisauth,
             f->prefix);
    r = tiered(f->dir1, open_spec(spec));
    expect_misses(r, 1, 1);
    expect_switched_off(r, 1, "AUTH");
    assert_null(strstr(log_last, ":wrong@"));
    acache_close(r);

    snprintf(spec, sizeof spec, "redis+unix://%s?prefix=%s&db=3", S.redis_sock, f->prefix);
    r = open_spec(spec);
    put_bytes(r, 2, 100000, NULL);
    expect_bytes(r, 2, 100000);
    acache_close(r);
}

static void test_specs(void **state)
{
    (void)state;
    static const char *const good[] = {
        "redis://127.0.0.1", "redis://localhost:6380/1", "redis://[::1]:6379/0",
        "redis://user:pw@host:1/2?prefix=a&timeout=300ms&connect-timeout=1s",
        "redis+unix:///run/redis.sock?db=1", "http://127.0.0.1:8080", "http://h/a/b/",
        "https://u:p@h:8443/cache?mode=ro&compress=zstd:19&flush-timeout=0",
        "http://h/c?failures=1&upload-queue=1&max-object=1G&mode=wo",
        "http://h?inline=0", "http://h?inline=16k", "redis://h?inline=100",
    };
    static const char *const bad[] = {
        "redis:", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/x",
        "redis://[::1", "redis+unix://relative.sock", "redis://h?prefix=", "redis://h?db=x",
        "http:", "http://", "http:///x", "http://h/a?mode=rx", "http://h?compress=lz4",
        "http://h?compress=zstd:99", "http://h?timeout=0", "http://h?timeout=5x",
        "http://h?failures=0", "http://h?upload-queue=0", "http://h?max-object=0",
        "http://h?flush-timeout=2h", "http://h?nosuch=1", "redis://h?key-file=/nonexistent",
        "http://h?inline=17k", "http://h?inline=x", "redis://h?inline=-1",
    };
    double t0 = now_s();
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        acache_store *s = NULL;
        acache_status st = acache_open(good[i], &s);
        if (st != ACACHE_OK)
            fail_msg("%s: %s", good[i], acache_last_error());
        acache_close(s);
    }
    /* Opening touches no network: all of the above took no time. */
    assert_true(now_s() - t0 < 0.5);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        acache_store *s = NULL;
        if (acache_open(bad[i], &s) == ACACHE_OK)
            fail_msg("%s was accepted", bad[i]);
        assert_null(s);
        assert_true(strlen(acache_last_error()) > 0);
    }
    acache_store *s = NULL;
    assert_int_equal(acache_open("https://user:secret@h:1/c?mode=ro", &s), ACACHE_OK);
    acache_remote_info info = info_of(s);
    assert_string_equal(info.name, "https://***@h:1/c");
    assert_int_equal(info.readable, 1);
    assert_int_equal(info.writable, 0);
    acache_close(s);
    /* Not remotes. */
    acache_store *m = NULL;
    assert_int_equal(acache_open("mem:", &m), ACACHE_OK);
    assert_int_equal(acache_remotes(m, NULL, 0), 0);
    acache_flush(m);
    acache_close(m);
}

/* A password in an http spec never reaches a message: not in the reason a
 * remote was switched off, nor in the line logged (the URL, which holds
 * it, is never quoted). */
static void test_http_password_not_shown(void **state)
{
    fixture *f = *state;
    char spec[512];
    capture_logs();
    snprintf(spec, sizeof spec, "http://user:pw-0123-secret@127.0.0.1:%d/cache?prefetch=0",
             S.dead);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    expect_misses(t, 0, 3);
    acache_remote_info info = expect_switched_off(t, 3, "consecutive failures");
    if (strstr(log_last, "pw-0123-secret") || strstr(info.reason, "pw-0123-secret") ||
        strstr(info.name, "pw-0123-secret"))
        fail_msg("the password is shown: %s", log_last);
    assert_non_null(strstr(log_last, "***@127.0.0.1"));
    assert_null(strstr(log_last, "user:"));
    acache_close(t);
}

/* ------------------------------------------------------------------ */
/* S3                                                                   */

/* Lines of the s3 proxy's request log holding every non-NULL string. */
static size_t s3_log_count(const char *a, const char *b, const char *c)
{
    size_t len = 0, n = 0;
    char *raw = tu_read_file(S.s3_requests, &len), *text = raw ? strndup(raw, len) : NULL;
    free(raw);
    if (!text)
        return 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if ((!a || strstr(line, a)) && (!b || strstr(line, b)) && (!c || strstr(line, c)))
            n++;
    free(text);
    return n;
}

/* Every request signed with the test key, none refused; the object sent
 * once with its hash (the proxy checks x-amz-content-sha256), then found
 * already there for a second action with the same bytes. */
static void test_s3_requests_signed(void **state)
{
    fixture *f = *state;
    char pfx[64], cas[80];
    snprintf(pfx, sizeof pfx, "\"/acache-test/%s/", f->prefix);
    snprintf(cas, sizeof cas, "\"/acache-test/%s/cas/", f->prefix);
    acache_store *a = tiered(f->dir1, open_remote(f, "prefetch=0"));
    put_bytes(a, 1, 3000, NULL);
    acache_flush(a);
    unsigned char buf[3000];
    tu_fill(buf, sizeof buf, 1);
    acache_id action2 = tu_id(2);
    assert_int_equal(acache_put(a, &action2, buf, sizeof buf, NULL), ACACHE_OK);
    acache_flush(a);
    acache_remote_info info = info_of(a);
    if (info.uploads != 2 || info.already != 1)
        fail_msg("%" PRIu64 " uploads, %" PRIu64 " already there (%s)", info.uploads,
                 info.already, info.reason);
    assert_int_equal(info.failures, 0);
    assert_non_null(strstr(info.detail, "credentials: environment (AWS_ACCESS_KEY_ID)"));
    assert_null(strstr(info.detail, S3_SECRET));
    acache_close(a);
    acache_store *b = tiered(f->dir2, open_remote(f, "prefetch=0"));
    expect_bytes(b, 1, 3000);
    acache_result res;
    assert_int_equal(acache_get(b, &action2, 0, &res), ACACHE_OK);
    assert_int_equal(res.size, 3000);
    acache_close(b);

    size_t all = s3_log_count(pfx, NULL, NULL);
    assert_true(all >= 7); /* HEAD, PUT cas, PUT ac, HEAD, PUT ac, GET ac, GET cas */
    assert_int_equal(s3_log_count(pfx, "\"akid\": \"" S3_KEY_ID "\"", NULL), all);
    assert_int_equal(s3_log_count(pfx, "\"status\": 4", NULL),
                     s3_log_count(pfx, "\"status\": 404", "\"HEAD\""));
    assert_int_equal(s3_log_count(cas, "\"PUT\"", NULL), 1);
    assert_int_equal(s3_log_count(pfx, "\"PUT\"", "\"hashed\": true"), 3);
}

/* Switched off after three failing gets, one line naming the bucket,
 * region, credential source and the server's code, never the secret; the
 * local store goes on. */
static void expect_s3_off(fixture *f, uint32_t first, const char *code, const char *secret)
{
    capture_logs();
    acache_store *t = tiered(f->dir1, open_remote(f, "prefetch=0"));
    expect_misses(t, first, 3);
    acache_remote_info info = expect_switched_off(t, 3, code);
    const char *want = "s3 bucket acache-test (region us-east-1, credentials: environment "
                       "(AWS_ACCESS_KEY_ID";
    if (!strstr(log_last, want) || !strstr(log_last, code))
        fail_msg("'%s' does not say '%s' and %s", log_last, want, code);
    if (strstr(log_last, secret) || strstr(info.reason, secret) || strstr(info.detail, secret))
        fail_msg("a secret is shown: %s", log_last);
    put_bytes(t, first + 10, 100, NULL);
    expect_bytes(t, first + 10, 100);
    acache_close(t);
}

static void test_s3_wrong_credentials(void **state)
{
    fixture *f = *state;
    s3_env_keys("wrong/secret+key");
    expect_s3_off(f, 0, "SignatureDoesNotMatch", "wrong/secret+key");
    s3_env_keys(NULL);
    setenv("AWS_ACCESS_KEY_ID", "AKIDNOSUCHKEY0000000", 1);
    expect_s3_off(f, 100, "InvalidAccessKeyId", S3_SECRET);
    /* Temporary keys without their token, then with a wrong one. */
    setenv("AWS_ACCESS_KEY_ID", S3_SESSION_KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_SESSION_SECRET, 1);
    expect_s3_off(f, 200, "InvalidToken", S3_SESSION_SECRET);
    setenv("AWS_SESSION_TOKEN", "not-the-token", 1);
    expect_s3_off(f, 300, "InvalidToken", "not-the-token");
}

/* A bucket in another region: AWS answers 400 naming it, or 301. */
static void test_s3_wrong_region(void **state)
{
    fixture *f = *state;
    int ports[2] = { S.s3eu, S.s3moved };
    const char *codes[2] = { "AuthorizationHeaderMalformed", "PermanentRedirect" };
    char spec[512];
    for (int i = 0; i < 2; i++) {
        capture_logs();
        spec_for(f, S3, ports[i], "prefetch=0", spec, sizeof spec);
        acache_store *t = tiered(f->dir1, open_spec(spec));
        expect_misses(t, (uint32_t)i * 10, 3);
        expect_switched_off(t, 3, "the bucket is in region eu-west-1, not us-east-1");
        assert_non_null(strstr(log_last, codes[i]));
        assert_non_null(strstr(log_last, "s3 bucket acache-test (region us-east-1"));
        acache_close(t);
    }
    spec_for(f, S3, S.s3eu, "region=eu-west-1", spec, sizeof spec);
    acache_store *r = open_spec(spec);
    put_bytes(r, 50, 700, NULL);
    expect_bytes(r, 50, 700);
    assert_non_null(strstr(info_of(r).detail, "region eu-west-1 (region=)"));
    acache_close(r);
}

/* A bucket that does not exist: gets fail (404 NoSuchBucket is not a
 * miss) and switch the remote off; uploads fail too. */
static void test_s3_missing_bucket(void **state)
{
    fixture *f = *state;
    char spec[512];
    capture_logs();
    snprintf(spec, sizeof spec, "s3://acache-missing/%s?endpoint=http://127.0.0.1:%d&prefetch=0",
             f->prefix, S.s3);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    expect_misses(t, 0, 3);
    expect_switched_off(t, 3, "NoSuchBucket");
    assert_non_null(strstr(log_last, "s3 bucket acache-missing (region us-east-1"));
    acache_close(t);

    capture_logs();
    t = tiered(f->dir2, open_spec(spec));
    for (uint32_t i = 0; i < 3; i++)
        put_bytes(t, 20 + i, 100, NULL);
    acache_flush(t);
    acache_remote_info info = info_of(t);
    assert_int_equal(info.uploads, 0);
    assert_int_equal(info.dropped, 3);
    assert_int_equal(info.switched_off, 1);
    assert_non_null(strstr(info.reason, "NoSuchBucket"));
    acache_close(t);
}

/* No credentials: mode=ro reads a public bucket unsigned; anything that
 * would write is refused at open. */
static void test_s3_anonymous(void **state)
{
    fixture *f = *state;
    char spec[512];
    snprintf(spec, sizeof spec, "s3://acache-public/%s?endpoint=http://127.0.0.1:%d", f->prefix,
             S.s3);
    acache_store *w = tiered(f->dir1, open_spec(spec));
    put_bytes(w, 1, 2000, NULL);
    acache_flush(w);
    assert_int_equal(info_of(w).uploads, 1);
    acache_close(w);

    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    acache_store *x = NULL;
    snprintf(spec, sizeof spec, "s3://acache-public/%s?endpoint=http://127.0.0.1:%d", f->prefix,
             S.s3public);
    assert_int_equal(acache_open(spec, &x), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "anonymous access needs mode=ro"));
    strcat(spec, "&mode=ro");
    acache_store *r = tiered(f->dir2, open_spec(spec));
    expect_bytes(r, 1, 2000);
    expect_misses(r, 5, 2);
    acache_remote_info info = info_of(r);
    assert_int_equal(info.hits, 1);
    assert_int_equal(info.failures, 0);
    assert_non_null(strstr(info.detail, "credentials: none (anonymous)"));
    acache_close(r);
    /* A bucket that refuses anonymous reads (403 AccessDenied, as S3 says
     * for a name it lacks when listing is not allowed): misses. */
    spec_for(f, S3, S.s3, "mode=ro&prefetch=0", spec, sizeof spec);
    r = tiered(f->dir2, open_spec(spec));
    expect_misses(r, 10, 4);
    assert_int_equal(info_of(r).switched_off, 0);
    acache_close(r);
}

/* One remote-alone round trip with the credentials of the environment as
 * it is; the proxy must have seen key_id for it (the s3 proxy's log: the
 * others' are not read, they check the same keys). */
static void s3_roundtrip(fixture *f, const char *spec, uint32_t n, const char *key_id,
                         const char *source)
{
    char port[16];
    snprintf(port, sizeof port, ":%d", S.s3);
    bool logged = strstr(spec, port) != NULL || !strstr(spec, "endpoint=");
    char akid[96];
    snprintf(akid, sizeof akid, "\"akid\": \"%s\"", key_id);
    size_t before = s3_log_count(f->prefix, akid, NULL);
    acache_store *r = open_spec(spec);
    put_bytes(r, n, 500 + n, NULL);
    expect_bytes(r, n, 500 + n);
    acache_remote_info info = info_of(r);
    if (!strstr(info.detail, source))
        fail_msg("detail '%s' does not say '%s'", info.detail, source);
    acache_close(r);
    size_t after = s3_log_count(f->prefix, akid, NULL);
    /* The object's HEAD and PUT, the record's PUT, the record's GET (it
     * carries the object, inline=). */
    if (logged && after < before + 4)
        fail_msg("roundtrip %u: the proxy saw %zu requests with %s", n, after - before, key_id);
}

static void test_s3_credential_sources(void **state)
{
    fixture *f = *state;
    char spec[512], eu[512], path[PATH_MAX], text[512], home[PATH_MAX];
    spec_for(f, S3, S.s3, "", spec, sizeof spec);
    spec_for(f, S3, S.s3eu, "", eu, sizeof eu);
    /* The environment, with a session token. */
    setenv("AWS_ACCESS_KEY_ID", S3_SESSION_KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_SESSION_SECRET, 1);
    setenv("AWS_SESSION_TOKEN", S3_SESSION_TOKEN, 1);
    s3_roundtrip(f, spec, 1, S3_SESSION_KEY_ID, "environment (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN)");
    /* A named profile in the shared credentials file. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    snprintf(path, sizeof path, "%s/credentials", f->dir1);
    snprintf(text, sizeof text, "[default]\naws_access_key_id = AKIDNOTTHISONE\n"
             "aws_secret_access_key = x\n[ci]\naws_access_key_id = %s\n"
             "aws_secret_access_key = %s\n", S3_PROFILE_KEY_ID, S3_PROFILE_SECRET);
    tu_write_file(path, text, strlen(text));
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "ci", 1);
    s3_roundtrip(f, spec, 2, S3_PROFILE_KEY_ID, "credentials: profile ci in ");
    /* Its region from the config file: the bucket is in eu-west-1. */
    snprintf(path, sizeof path, "%s/config", f->dir1);
    snprintf(text, sizeof text, "[default]\nregion = us-west-2\n[profile ci]\nregion = eu-west-1\n");
    tu_write_file(path, text, strlen(text));
    setenv("AWS_CONFIG_FILE", path, 1);
    s3_roundtrip(f, eu, 3, S3_PROFILE_KEY_ID, "region eu-west-1 (profile ci in ");
    /* Keys in the config file's profile. */
    snprintf(text, sizeof text, "[profile cfg]\naws_access_key_id = %s\n"
             "aws_secret_access_key = %s\n", S3_KEY_ID, S3_SECRET);
    tu_write_file(path, text, strlen(text));
    setenv("AWS_PROFILE", "cfg", 1);
    s3_roundtrip(f, spec, 4, S3_KEY_ID, "credentials: profile cfg in ");
    /* The default profile in ~/.aws/credentials; region from AWS_REGION,
     * then AWS_DEFAULT_REGION. */
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
    const char *old_home = getenv("HOME");
    snprintf(home, sizeof home, "%s", old_home ? old_home : "");
    snprintf(path, sizeof path, "%s/.aws", f->dir2);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/.aws/credentials", f->dir2);
    snprintf(text, sizeof text, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
             S3_PROFILE_KEY_ID, S3_PROFILE_SECRET);
    tu_write_file(path, text, strlen(text));
    setenv("HOME", f->dir2, 1);
    s3_roundtrip(f, spec, 5, S3_PROFILE_KEY_ID, "credentials: profile default in ");
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    s3_roundtrip(f, eu, 6, S3_PROFILE_KEY_ID, "region eu-west-1 (AWS_DEFAULT_REGION)");
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_DEFAULT_REGION", "us-east-1", 1);
    s3_roundtrip(f, eu, 7, S3_PROFILE_KEY_ID, "region eu-west-1 (AWS_REGION)");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    /* The endpoint from AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL. */
    char url[128], bare[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", S.s3);
    snprintf(bare, sizeof bare, "s3://acache-test/%s", f->prefix);
    setenv("AWS_ENDPOINT_URL", url, 1);
    s3_roundtrip(f, bare, 8, S3_PROFILE_KEY_ID, "(AWS_ENDPOINT_URL), path addressing");
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
    setenv("AWS_ENDPOINT_URL_S3", url, 1);
    s3_roundtrip(f, bare, 9, S3_PROFILE_KEY_ID, "(AWS_ENDPOINT_URL_S3)");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_S3");
    setenv("HOME", home, 1);
}

/* addressing=virtual: the bucket in the host name (BUCKET.localhost). */
static void test_s3_virtual_addressing(void **state)
{
    fixture *f = *state;
    char spec[512], path[96];
    snprintf(spec, sizeof spec, "s3://acache-test/%s?endpoint=http://localhost:%d&"
             "addressing=virtual", f->prefix, S.s3);
    acache_store *r = open_spec(spec);
    put_bytes(r, 1, 1234, NULL);
    expect_bytes(r, 1, 1234);
    assert_non_null(strstr(info_of(r).detail, "virtual addressing"));
    acache_close(r);
    snprintf(path, sizeof path, "\"path\": \"/%s/", f->prefix);
    assert_true(s3_log_count(path, "\"status\": 200", NULL) >= 3);
}

/* A server that reads each request and never answers. */
static void test_s3_hanging(void **state)
{
    fixture *f = *state;
    char spec[512];
    capture_logs();
    spec_for(f, S3, S.s3hang, "timeout=200ms&flush-timeout=300ms&prefetch=0", spec, sizeof spec);
    acache_store *t = tiered(f->dir1, open_spec(spec));
    double t0 = now_s();
    for (uint32_t i = 0; i < 5; i++)
        put_bytes(t, i, 1000, NULL);
    assert_true(now_s() - t0 < 1.0);
    expect_misses(t, 100, 10);
    expect_switched_off(t, 0, "consecutive failures");
    t0 = now_s();
    acache_close(t);
    assert_true(now_s() - t0 < 1.5);
}

/* What an s3 spec may say; opening never touches the network. */
static void test_s3_specs(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "s3:", "s3://", "s3://ab", "s3://a%20b", "s3://bucket/../x", "s3://bucket/a//b",
        "s3://bucket/a/./b", "s3://bucket/sp ace", "s3://bucket?addressing=diagonal",
        "s3://bucket?endpoint=ftp://h", "s3://bucket?endpoint=http://u:p@h",
        "s3://bucket?endpoint=http://h/path", "s3://bucket?endpoint=http://h?x=1",
        "s3://bucket?region=eu_west!", "s3://bucket?region=", "s3://bucket?nosuch=1",
        "s3://bucket?mode=rx", "s3://bucket?compress=lz4",
    };
    acache_store *s = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (acache_open(bad[i], &s) != ACACHE_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_null(strstr(acache_last_error(), S3_SECRET));
    }
    static const struct {
        const char *spec, *name, *detail;
    } good[] = {
        { "s3://my-bucket/go/ci/?region=eu-central-1&compress=zstd&timeout=2s", "s3://my-bucket/go/ci",
          "region eu-central-1 (region=), endpoint https://s3.eu-central-1.amazonaws.com "
          "(AWS default), virtual addressing" },
        { "s3://my.bucket", "s3://my.bucket", "endpoint https://s3.us-east-1.amazonaws.com "
                                              "(AWS default), path addressing" },
        { "s3://b_1?endpoint=https://storage.googleapis.com&region=auto", "s3://b_1",
          "region auto (region=), endpoint https://storage.googleapis.com (endpoint=), path" },
        { "s3://bkt?endpoint=http://minio:9000/&addressing=virtual&mode=wo", "s3://bkt",
          "endpoint http://minio:9000 (endpoint=), virtual addressing" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        s = open_spec(good[i].spec);
        acache_remote_info info = info_of(s);
        assert_string_equal(info.name, good[i].name);
        if (!strstr(info.detail, good[i].detail))
            fail_msg("'%s': detail '%s' does not say '%s'", good[i].spec, info.detail,
                     good[i].detail);
        acache_close(s);
    }
    setenv("AWS_REGION", "eu/west", 1);
    assert_int_equal(acache_open("s3://bucket", &s), ACACHE_EINVAL);
    assert_non_null(strstr(acache_last_error(), "s3 region (from AWS_REGION)"));
    setenv("AWS_REGION", "ap-south-1", 1);
    s = open_spec("s3://bucket");
    assert_non_null(strstr(info_of(s).detail, "region ap-south-1 (AWS_REGION), endpoint "
                                              "https://s3.ap-south-1.amazonaws.com"));
    acache_close(s);
    unsetenv("AWS_REGION");
}

#define BOTH(fn)                                                                    \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &REDIS_K),         \
        cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &HTTP_K)
#define ALL(fn) BOTH(fn), cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &S3_K)
#define ONE(fn, k) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &k)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ALL(test_roundtrip),
        ALL(test_tiered_serves_from_remote),
        BOTH(test_tiered_fetch_sizes),
        ALL(test_three_tiers),
        ALL(test_parallel_gets),
        ALL(test_poisoned_object),
        ALL(test_bad_records),
        BOTH(test_lying_record_keeps_object),
        ALL(test_signed_records),
        ALL(test_modes),
        ALL(test_compression),
        ALL(test_max_object),
        ALL(test_dead_remote_switched_off),
        ALL(test_hanging_remote),
        ALL(test_queue_full_and_flush_deadline),
        ONE(test_uploads_refused, HTTP_K),
        ONE(test_server_errors, HTTP_K),
        BOTH(test_closed_mid_write),
        BOTH(test_killed_while_in_use),
        ALL(test_get_many_same_as_single),
        ALL(test_inline_objects),
        ALL(test_get_many_dead_counts_once),
        ALL(test_get_many_hang_and_close),
        ALL(test_prefetch_session),
        ALL(test_prefetch_keys_and_off),
        ALL(test_prefetch_bad_manifest),
        ALL(test_prefetch_small_or_ro),
        ALL(test_prefetch_local_only),
        ONE(test_redis_auth_and_unix, REDIS_K),
        BOTH(test_credentials_never_shown),
        ONE(test_redis_deadline_per_operation, REDIS_K),
        ONE(test_redis_bulk_refused_from_header, REDIS_K),
        ONE(test_redis_name_lookup_bounded, REDIS_K),
        ONE(test_specs, REDIS_K),
        ONE(test_http_password_not_shown, HTTP_K),
        ONE(test_s3_requests_signed, S3_K),
        ONE(test_s3_wrong_credentials, S3_K),
        ONE(test_s3_wrong_region, S3_K),
        ONE(test_s3_missing_bucket, S3_K),
        ONE(test_s3_anonymous, S3_K),
        ONE(test_s3_credential_sources, S3_K),
        ONE(test_s3_virtual_addressing, S3_K),
        ONE(test_s3_hanging, S3_K),
        ONE(test_s3_specs, S3_K),
    };
    /* ACACHE_TEST_FILTER=test_s3_*: only those (a cmocka pattern). */
    if (getenv("ACACHE_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ACACHE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
