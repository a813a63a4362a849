/*
 * prog.c - any GOCACHEPROG helper as a store ("prog:COMMAND ARGS"), as
 * the go command's ProgCache: options, open and close, get, put, the ops
 * table. The helper process and its reader are helper.c's; the lines on
 * the wire are wire.h's (src/prog/wire_*.c).
 *
 * A put's output id and size are only known at commit, but the protocol
 * wants them before the body: the bytes are spooled (the first 256K in
 * memory, the rest in an unlinked temp file) and streamed at commit. A
 * get's bytes are read from the helper's DiskPath, whose size (and, with
 * verify-reads, SHA-256) must match the answer. close sends "close", waits
 * for its answer and for the exit, each with a deadline, then kills.
 *
 * This file must never let a helper's answer be served without checking it
 * against the file it names, never start a helper before every option was
 * understood, and never print.
 */
#include "core/error.h"
#include "os/tempfile.h"
#include "prog/prog_helper.h"
#include "prog/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const backend_ops prog_ops;

static void unmap_release(void *ctx, const void *data, uint64_t size)
{
    (void)ctx;
    munmap((void *)data, (size_t)size);
}

/* Checks the file a hit names and, when asked, maps it into res. */
static acache_status check_disk_path(prog *p, const char *path, unsigned flags,
                                     acache_result *res)
{
    acache_status st = ACACHE_OK;
    void *map = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 && errno == ENOENT)
        return set_error(ACACHE_CORRUPT, "prog store '%s': DiskPath %s does not exist; "
                         "not served", p->cmdline, path);
    if (fd < 0)
        return set_errno_error(errno, "prog store '%s': opening DiskPath %s", p->cmdline, path);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != res->size) {
        st = set_error(ACACHE_CORRUPT, "prog store '%s': DiskPath %s is not a file of Size %" PRIu64
                       " bytes; not served", p->cmdline, path, res->size);
        goto out;
    }
    if (res->size > 0 && (p->verify || (flags & ACACHE_GET_DATA))) {
        map = mmap(NULL, (size_t)res->size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            st = set_errno_error(errno, "prog store '%s': mmap %s", p->cmdline, path);
            goto out;
        }
    }
    if (p->verify) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (!EVP_Digest(map ? map : "", (size_t)res->size, md, &mdlen, EVP_sha256(), NULL) ||
            mdlen != ACACHE_ID_SIZE || memcmp(md, res->output_id.bytes, ACACHE_ID_SIZE) != 0) {
            st = set_error(ACACHE_CORRUPT, "prog store '%s': %s does not hash to its OutputID; "
                           "not served", p->cmdline, path);
            goto out;
        }
    }
    snprintf(res->path, sizeof res->path, "%s", path);
    if (flags & ACACHE_GET_DATA) {
        if (map) {
            res->data = map;
            res->release_fn_ = unmap_release;
            map = NULL;
        } else {
            res->data = "";
        }
    }
out:
    if (map)
        munmap(map, (size_t)res->size);
    close(fd);
    return st;
}

static acache_status prog_get(void *self, const acache_id *action, unsigned flags,
                              acache_result *res)
{
    prog *p = self;
    json_t *resp = NULL;
    if (!p->can_get)
        return ACACHE_MISS;
    acache_status st = prog_request(p, "get", action, NULL, NULL, p->timeout_ns, &resp);
    if (st != ACACHE_OK)
        return st;
    const char *err = gcp_response_err(resp), *path = NULL;
    gcp_entry_status es;
    if (err) {
        st = set_error(ACACHE_EIO, "prog store '%s': get failed: %s", p->cmdline, err);
    } else if (gcp_response_miss(resp)) {
        st = ACACHE_MISS;
    } else if ((es = gcp_parse_entry(resp, res, &path)) == GCP_ENTRY_NO_ID) {
        st = set_error(ACACHE_EIO, "prog store '%s': a hit without a valid OutputID and Size",
                       p->cmdline);
    } else if (es == GCP_ENTRY_NO_PATH) {
        st = set_error(ACACHE_EIO, "prog store '%s': a hit without an absolute DiskPath",
                       p->cmdline);
    } else {
        st = check_disk_path(p, path, flags, res);
    }
    json_decref(resp);
    return st;
}

/* ------------------------------------------------------------------ */
/* Puts                                                                 */

static acache_status prog_put_begin(void *self, const acache_id *action, backend_writer **out)
{
    prog *p = self;
    pthread_mutex_lock(&p->mu);
    bool broken = p->broken;
    pthread_mutex_unlock(&p->mu);
    if (broken)
        return prog_broken_error(p);
    prog_writer *w = calloc(1, sizeof *w);
    if (!w)
        return set_error(ACACHE_ENOMEM, "out of memory");
    w->base.ops = &prog_ops;
    w->p = p;
    w->action = *action;
    w->drop = !p->can_put;
    w->fd = -1;
    *out = &w->base;
    return ACACHE_OK;
}

static int spool_file(prog_writer *w)
{
    return tempfile_anonymous(w->p->spool_dir, "acache-prog-");
}

static acache_status prog_put_write(backend_writer *bw, const void *data, size_t len)
{
    prog_writer *w = (prog_writer *)bw;
    const unsigned char *c = data;
    if (w->drop)
        return ACACHE_OK;
    if (w->memlen < PROG_SPOOL_MEM) {
        if (!w->mem && !(w->mem = malloc(PROG_SPOOL_MEM)))
            return set_error(ACACHE_ENOMEM, "out of memory");
        size_t k = PROG_SPOOL_MEM - w->memlen < len ? PROG_SPOOL_MEM - w->memlen : len;
        memcpy(w->mem + w->memlen, c, k);
        w->memlen += k;
        w->size += k;
        c += k;
        len -= k;
    }
    if (len == 0)
        return ACACHE_OK;
    if (w->fd < 0 && (w->fd = spool_file(w)) < 0)
        return set_errno_error(errno, "prog store: cannot spool a put in %s", w->p->spool_dir);
    while (len > 0) {
        ssize_t n = write(w->fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return set_errno_error(errno, "prog store: spooling a put in %s", w->p->spool_dir);
        c += n;
        len -= (size_t)n;
        w->size += (uint64_t)n;
    }
    return ACACHE_OK;
}

static void prog_put_abort(backend_writer *bw)
{
    prog_writer *w = (prog_writer *)bw;
    if (w->fd >= 0)
        close(w->fd);
    free(w->mem);
    free(w);
}

static acache_status prog_put_commit(backend_writer *bw, const acache_id *output, uint64_t size,
                                     acache_result *res)
{
    prog_writer *w = (prog_writer *)bw;
    prog *p = w->p;
    json_t *resp = NULL;
    acache_status st = ACACHE_OK;
    if (res) {
        res->output_id = *output;
        res->size = size;
        res->time_ns = (int64_t)time(NULL) * 1000000000;
        res->path[0] = '\0';
        res->data = NULL;
    }
    if (w->drop)
        goto out; /* a helper that only gets: dropped, as the protocol allows */
    if (size != w->size) {
        st = set_error(ACACHE_EINVAL, "prog store: put of %" PRIu64 " bytes committed as %" PRIu64,
                       w->size, size);
        goto out;
    }
    st = prog_request(p, "put", &w->action, output, w, p->timeout_ns, &resp);
    if (st != ACACHE_OK)
        goto out;
    const char *err = gcp_response_err(resp);
    if (err) {
        st = set_error(ACACHE_EIO, "prog store '%s': put failed: %s", p->cmdline, err);
        goto out;
    }
    const char *path = gcp_response_path(resp);
    struct stat sb;
    /* The path is handed on only if it holds what was put. */
    if (res && path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size == size)
        snprintf(res->path, sizeof res->path, "%s", path);
out:
    json_decref(resp);
    prog_put_abort(bw);
    return st;
}

static acache_status prog_del(void *self, const acache_id *action)
{
    (void)self;
    (void)action;
    return ACACHE_MISS; /* the protocol has no delete */
}

/* ------------------------------------------------------------------ */
/* Open and close                                                       */

static void prog_close(void *self)
{
    prog *p = self;
    pthread_mutex_lock(&p->mu);
    bool say_close = p->can_close && !p->broken;
    pthread_mutex_unlock(&p->mu);
    if (say_close) {
        json_t *resp = NULL;
        prog_request(p, "close", NULL, NULL, NULL, p->close_timeout_ns, &resp);
        json_decref(resp);
    }
    prog_stop(p);
    prog_free(p);
}

/* Splits the command line on spaces and tabs into p->argv. */
static acache_status split_command(prog *p, const char *cmd)
{
    size_t len = strlen(cmd);
    p->argbuf = malloc(len + 1);
    p->argv = calloc(len / 2 + 2, sizeof *p->argv);
    p->cmdline = strdup(cmd);
    if (!p->argbuf || !p->argv || !p->cmdline)
        return set_error(ACACHE_ENOMEM, "out of memory");
    memcpy(p->argbuf, cmd, len + 1);
    size_t argc = 0;
    char *save = NULL;
    for (char *t = strtok_r(p->argbuf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        p->argv[argc++] = t;
    p->argv[argc] = NULL;
    if (argc == 0)
        return set_error(ACACHE_EINVAL, "prog store: no command (want prog:COMMAND ARGS or "
                         "prog:?cmd=COMMAND)");
    return ACACHE_OK;
}

static acache_status parse_options(prog *p, spec *s, const char **cmd)
{
    const char *v;
    acache_status st = ACACHE_OK;
    const char *opt = spec_get(s, "cmd");
    if (opt && s->path[0])
        return set_error(ACACHE_EINVAL, "prog store: give the command after 'prog:' or as "
                         "cmd=, not both");
    *cmd = opt ? opt : s->path;
    p->timeout_ns = p->start_timeout_ns = p->close_timeout_ns = PROG_DEFAULT_TIMEOUT_NS;
    p->verify = true;
    if ((v = spec_get(s, "timeout")) && (st = parse_duration_ns(v, &p->timeout_ns)))
        return st;
    if ((v = spec_get(s, "start-timeout")) && (st = parse_duration_ns(v, &p->start_timeout_ns)))
        return st;
    if ((v = spec_get(s, "close-timeout")) && (st = parse_duration_ns(v, &p->close_timeout_ns)))
        return st;
    if ((v = spec_get(s, "verify-reads")) && (st = parse_bool("verify-reads", v, &p->verify)))
        return st;
    if (p->timeout_ns <= 0 || p->start_timeout_ns <= 0 || p->close_timeout_ns <= 0)
        return set_error(ACACHE_EINVAL, "prog store: timeouts must be more than 0");
    v = spec_get(s, "spool-dir");
    if (!v || !*v)
        v = getenv("TMPDIR");
    if (!v || !*v)
        v = "/tmp";
    if (snprintf(p->spool_dir, sizeof p->spool_dir, "%s", v) >= (int)sizeof p->spool_dir)
        return set_error(ACACHE_EINVAL, "prog store: spool-dir too long");
    /* Unknown options are refused before anything is started. */
    return spec_check_unused(s);
}

acache_status prog_open(spec *s, void **self, const backend_ops **ops)
{
    const char *cmd = NULL;
    acache_status st = ACACHE_OK;
    prog *p = calloc(1, sizeof *p);
    if (!p)
        return set_error(ACACHE_ENOMEM, "out of memory");
    p->in_fd = p->out_fd = p->wake[0] = p->wake[1] = -1;
    p->next_id = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->write_mu, NULL);
    pthread_mutex_init(&p->reap_mu, NULL);
    p->reaped = true; /* nothing to reap until spawned */
    if ((st = parse_options(p, s, &cmd)) != ACACHE_OK || (st = split_command(p, cmd)) != ACACHE_OK)
        goto fail;
    p->cap = 64 << 10;
    if (!(p->buf = malloc(p->cap))) {
        st = set_error(ACACHE_ENOMEM, "out of memory");
        goto fail;
    }
    if (pipe2(p->wake, O_CLOEXEC) != 0) {
        st = set_errno_error(errno, "prog store: pipe");
        goto fail;
    }
    if ((st = prog_spawn(p)) != ACACHE_OK)
        goto fail;
    p->reaped = false;
    if ((st = prog_handshake(p)) != ACACHE_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", acache_last_error());
        prog_kill(p);
        prog_reap(p, INT64_MAX / 2);
        st = set_error(st, "%s", msg);
        goto fail;
    }
    if (pthread_create(&p->reader, NULL, prog_reader_main, p) != 0) {
        st = set_error(ACACHE_ENOMEM, "prog store '%s': cannot start the reader thread",
                       p->cmdline);
        prog_stop(p);
        goto fail;
    }
    p->reader_running = true;
    *self = p;
    *ops = &prog_ops;
    return ACACHE_OK;
fail:
    prog_free(p);
    return st;
}

static const backend_ops prog_ops = {
    .name = "prog",
    .close = prog_close,
    .get = prog_get,
    .put_begin = prog_put_begin,
    .put_write = prog_put_write,
    .put_commit = prog_put_commit,
    .put_abort = prog_put_abort,
    .del = prog_del,
    .local_dir = NULL,
};
