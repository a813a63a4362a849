/*
 * wasm2c_run.c - runs a function of a WebAssembly module compiled to
 * native code, compiling it only once: the first run turns the .wasm into C
 * with WABT's wasm2c and into a shared object with the C compiler, through
 * acache_get_or_build(); every later run (and every process running at the
 * same time) loads the cached shared object straight from the cache's
 * file with dlopen and compiles nothing.
 *
 *   wasm2c_run [--cache DIR] [--native] MODULE.wasm FUNCTION [I32...]
 *
 * It prints "compiled: yes (N ms)" or "compiled: no (...)", then
 * "FUNCTION(ARGS) = RESULT". The engine fingerprint holds the versions of
 * wasm2c and of the C compiler, the target, the compiler flags and, with
 * --native (-march=native), the host's CPU features: a cache shared by
 * machines never hands one of them code built for another.
 *
 * Supports modules without imports whose exported functions take and
 * return i32 (or return nothing), as wasm2c 1.0.32 (Debian bookworm)
 * writes them. This is an example: it never changes anything outside its
 * temp directory and the cache.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* posix_spawn, nftw, mkdtemp */
#endif
#include <acache.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define EXAMPLE_VERSION "wasm2c_run 1"
#define MAX_ARGS 4
/* Where Debian's wabt package puts the wasm2c runtime (wasm-rt-impl.c and
 * its headers); WASM2C_RUNTIME_DIR overrides. */
static const char *const runtime_dirs[] = { "/usr/src/wasm2c", "/usr/share/wabt/wasm2c" };

typedef struct options {
    const char *cache;
    const char *cc;
    const char *runtime;
    bool native;
    const uint8_t *wasm;
    size_t wasm_len;
    int compiles;      /* runs of the build callback */
    double compile_ms;
} options;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs argv; with out, captures up to size-1 bytes of its stdout. Returns
 * its exit status, or -1 if it could not run. */
static int run(char *const argv[], char *out, size_t size)
{
    int pp[2] = { -1, -1 }, status = 0;
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out) {
        if (pipe(pp) != 0)
            return -1;
        posix_spawn_file_actions_adddup2(&fa, pp[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&fa, pp[0]);
    }
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (out) {
        close(pp[1]);
        size_t n = 0;
        ssize_t got;
        while (err == 0 && n + 1 < size && (got = read(pp[0], out + n, size - 1 - n)) != 0) {
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                break;
            n += (size_t)got;
        }
        out[n] = '\0';
        close(pp[0]);
    }
    if (err != 0) {
        fprintf(stderr, "wasm2c_run: cannot run %s: %s\n", argv[0], strerror(err));
        return -1;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The first line of `argv --version`, or "unknown". */
static void version_of(const char *prog, char *out, size_t size)
{
    char *argv[] = { (char *)prog, "--version", NULL };
    char buf[1024];
    if (run(argv, buf, sizeof buf) != 0)
        snprintf(buf, sizeof buf, "unknown");
    buf[strcspn(buf, "\n")] = '\0';
    snprintf(out, size, "%s: %s", prog, buf);
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            char *grown = realloc(buf, cap ? cap * 2 : 65536);
            if (!grown)
                break;
            buf = grown;
            cap = cap ? cap * 2 : 65536;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    bool ok = !ferror(f) && buf;
    fclose(f);
    if (!ok) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static bool write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = false;
    return ok;
}

/* ------------------------------------------------------------------ */
/* The glue: stable entry points around wasm2c's generated names        */

/*
 * Reads module.h and writes glue.c: a table of the exported functions that
 * take and return i32 only, each behind a wrapper that catches traps.
 */
static acache_status write_glue(const char *tmp)
{
    char path[4096];
    size_t len = 0;
    if (snprintf(path, sizeof path, "%s/module.h", tmp) >= (int)sizeof path)
        return acache_set_error(ACACHE_EINVAL, "path too long: %s", tmp);
    char *h = read_file(path, &len);
    if (!h)
        return acache_set_error(ACACHE_EIO, "wasm2c wrote no %s", path);
    h = realloc(h, len + 1);
    h[len] = '\0';
    acache_status st = ACACHE_OK;
    /* wasm2c 1.0.32 names: Z_<module>_instantiate(Z_<module>_instance_t*) */
    if (!strstr(h, "void Z_mod_instantiate(Z_mod_instance_t*);")) {
        st = acache_set_error(ACACHE_EINVAL, "module.h has no Z_mod_instantiate(Z_mod_instance_t*): "
                              "the module has imports, or this wasm2c names things differently "
                              "from 1.0.32");
        goto out;
    }
    if (snprintf(path, sizeof path, "%s/glue.c", tmp) >= (int)sizeof path) {
        st = acache_set_error(ACACHE_EINVAL, "path too long: %s", tmp);
        goto out;
    }
    FILE *g = fopen(path, "w");
    if (!g) {
        st = acache_set_error(ACACHE_EIO, "cannot write %s", path);
        goto out;
    }
    fprintf(g, "#include <stdlib.h>\n#include \"module.h\"\n#include \"wasm-rt-impl.h\"\n"
               "typedef int (*call_fn)(void *, const u32 *, u32 *);\n"
               "typedef struct { const char *name; call_fn call; int nparams; } example_export;\n");
    char table[16384] = "";
    size_t tlen = 0;
    int count = 0;
    for (char *p = strstr(h, "/* export: '"); p; p = strstr(p + 1, "/* export: '")) {
        char name[256], line[1024], ret[32], sym[512], params[512] = "";
        char *q = p + strlen("/* export: '");
        char *end = strstr(q, "' */\n");
        if (!end || (size_t)(end - q) >= sizeof name)
            continue;
        snprintf(name, sizeof name, "%.*s", (int)(end - q), q);
        /* The declaration on the next line: "u32 Z_modZ_f(Z_mod_instance_t*, u32);" */
        snprintf(line, sizeof line, "%.*s", (int)strcspn(end + 5, "\n"), end + 5);
        if (sscanf(line, "%31s %511[^(](Z_mod_instance_t*%511[^)]);", ret, sym, params) < 2)
            continue;
        if (strcmp(ret, "u32") != 0 && strcmp(ret, "void") != 0)
            continue;
        int np = 0;
        bool ok = true;
        for (char *t = strtok(params, ", "); t; t = strtok(NULL, ", "))
            ok &= strcmp(t, "u32") == 0 && ++np <= MAX_ARGS;
        if (!ok || strchr(name, '"') || strchr(name, '\\'))
            continue;
        fprintf(g, "static int call_%d(void *inst, const u32 *a, u32 *r) {\n"
                   "  (void)a; wasm_rt_trap_t trap = wasm_rt_impl_try();\n"
                   "  if (trap) return (int)trap;\n  %s%s(inst", count, strcmp(ret, "u32") == 0 ? "*r = " : "*r = 0; ", sym);
        for (int i = 0; i < np; i++)
            fprintf(g, ", a[%d]", i);
        fprintf(g, ");\n  return 0;\n}\n");
        tlen += (size_t)snprintf(table + tlen, sizeof table - tlen, "  { \"%s\", call_%d, %d },\n",
                                 name, count, np);
        if (tlen >= sizeof table)
            break;
        count++;
    }
    fprintf(g, "const example_export example_exports[] = {\n%s  { 0, 0, 0 }\n};\n"
               "void *example_instantiate(void) {\n"
               "  static int ready;\n"
               "  if (!ready) { wasm_rt_init(); Z_mod_init_module(); ready = 1; }\n"
               "  Z_mod_instance_t *i = calloc(1, sizeof *i);\n"
               "  if (i) Z_mod_instantiate(i);\n  return i;\n}\n"
               "void example_free(void *i) { Z_mod_free(i); free(i); }\n"
               "const char *example_strerror(int trap) { return wasm_rt_strerror((wasm_rt_trap_t)trap); }\n",
            table);
    if (fclose(g) != 0)
        st = acache_set_error(ACACHE_EIO, "cannot write %s", path);
out:
    free(h);
    return st;
}

/* ------------------------------------------------------------------ */
/* The build callback                                                   */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static const char *cc_flags(const options *o)
{
    return o->native ? "-O2 -fPIC -shared -march=native" : "-O2 -fPIC -shared";
}

/* .wasm -> wasm2c -> C -> cc -> shared object, streamed into the cache. */
static acache_status compile(void *ctx, const acache_id *action, acache_put_stream *out)
{
    options *o = ctx;
    char tmp[4096], wasm[4200], csrc[4200], glue[4200], so[4200], impl[4200], inc[4200];
    acache_status st = ACACHE_OK;
    double t0 = now_ms();
    (void)action;
    o->compiles++;
    const char *base = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/wasm2c-run-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp))
        return acache_set_error(ACACHE_EIO, "mkdtemp %s: %s", tmp, strerror(errno));
    snprintf(wasm, sizeof wasm, "%s/module.wasm", tmp);
    snprintf(csrc, sizeof csrc, "%s/module.c", tmp);
    snprintf(glue, sizeof glue, "%s/glue.c", tmp);
    snprintf(so, sizeof so, "%s/module.so", tmp);
    snprintf(impl, sizeof impl, "%s/wasm-rt-impl.c", o->runtime);
    snprintf(inc, sizeof inc, "-I%s", o->runtime);
    if (!write_file(wasm, o->wasm, o->wasm_len)) {
        st = acache_set_error(ACACHE_EIO, "cannot write %s", wasm);
        goto out;
    }
    char *w2c[] = { "wasm2c", wasm, "-n", "mod", "-o", csrc, NULL };
    int rc = run(w2c, NULL, 0);
    if (rc != 0) {
        st = acache_set_error(ACACHE_EIO, "wasm2c failed (status %d)", rc);
        goto out;
    }
    if ((st = write_glue(tmp)) != ACACHE_OK)
        goto out;
    char flags[256], *cc[32];
    int n = 0;
    snprintf(flags, sizeof flags, "%s", cc_flags(o));
    cc[n++] = (char *)o->cc;
    for (char *t = strtok(flags, " "); t; t = strtok(NULL, " "))
        cc[n++] = t;
    char inc_tmp[4200];
    snprintf(inc_tmp, sizeof inc_tmp, "-I%s", tmp);
    char *rest[] = { inc, inc_tmp, glue, csrc, impl, "-o", so, "-lm", NULL };
    for (int i = 0; rest[i]; i++)
        cc[n++] = rest[i];
    cc[n] = NULL;
    rc = run(cc, NULL, 0);
    if (rc != 0) {
        st = acache_set_error(ACACHE_EIO, "%s failed (status %d)", o->cc, rc);
        goto out;
    }
    int fd = open(so, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = acache_set_error(ACACHE_EIO, "%s: %s", so, strerror(errno));
        goto out;
    }
    st = acache_put_write_fd(out, fd);
    close(fd);
out:
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    o->compile_ms = now_ms() - t0;
    return st;
}

/* ------------------------------------------------------------------ */
/* Main                                                                 */

typedef int (*call_fn)(void *, const uint32_t *, uint32_t *);
typedef struct example_export {
    const char *name;
    call_fn call;
    int nparams;
} example_export;

static int usage(void)
{
    fprintf(stderr, "usage: wasm2c_run [--cache DIR] [--native] MODULE.wasm FUNCTION [I32...]\n"
                    "  --cache DIR  the acache directory (default $ACACHE_DIR, else\n"
                    "               $XDG_CACHE_HOME/acache, else ~/.cache/acache)\n"
                    "  --native     compile with -march=native (the CPU features join\n"
                    "               the fingerprint)\n"
                    "Environment: CC (default cc), WASM2C_RUNTIME_DIR (where\n"
                    "wasm-rt-impl.c and wasm-rt.h are; default /usr/src/wasm2c).\n");
    return 2;
}

static const char *find_runtime(void)
{
    const char *env = getenv("WASM2C_RUNTIME_DIR");
    if (env && *env)
        return env;
    for (size_t i = 0; i < sizeof runtime_dirs / sizeof runtime_dirs[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/wasm-rt-impl.c", runtime_dirs[i]);
        if (access(path, R_OK) == 0)
            return runtime_dirs[i];
    }
    return NULL;
}

static int fail(const char *what, acache_status st)
{
    fprintf(stderr, "wasm2c_run: %s: %s: %s\n", what, acache_status_str(st), acache_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    options o = { .cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc" };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--cache") == 0 && i + 1 < argc)
            o.cache = argv[++i];
        else if (strcmp(argv[i], "--native") == 0)
            o.native = true;
        else
            return usage();
    }
    if (argc - i < 2 || argc - i - 2 > MAX_ARGS)
        return usage();
    const char *module = argv[i], *func = argv[i + 1];
    uint32_t args[MAX_ARGS] = { 0 };
    int nargs = argc - i - 2;
    for (int k = 0; k < nargs; k++)
        args[k] = (uint32_t)strtoul(argv[i + 2 + k], NULL, 0);
    if (!(o.runtime = find_runtime())) {
        fprintf(stderr, "wasm2c_run: no wasm2c runtime (wasm-rt-impl.c) found: install wabt "
                        "or set WASM2C_RUNTIME_DIR\n");
        return 1;
    }
    uint8_t *wasm = read_file(module, &o.wasm_len);
    if (!wasm) {
        fprintf(stderr, "wasm2c_run: cannot read %s: %s\n", module, strerror(errno));
        return 1;
    }
    o.wasm = wasm;

    /* The engine fingerprint: everything that changes the machine code. */
    char w2c_version[1200], cc_version[1200], features[ACACHE_CPU_FEATURES_SIZE] = "";
    version_of("wasm2c", w2c_version, sizeof w2c_version);
    version_of(o.cc, cc_version, sizeof cc_version);
    if (o.native && acache_cpu_features(features, sizeof features) != ACACHE_OK)
        return fail("cpu features", ACACHE_EIO);
    char version[2600];
    snprintf(version, sizeof version, "%s; %s; %s", EXAMPLE_VERSION, w2c_version, cc_version);
    acache_fingerprint fp = { "acache-wasm2c-example", version, acache_host_target(), features,
                              cc_flags(&o), NULL, 0 };
    acache_id fp_id, action;
    acache_fingerprint_id(&fp, &fp_id);
    acache_part part = { o.wasm, o.wasm_len };
    acache_key_derive(&action, "wasm module", &part, 1);

    char spec[4200];
    snprintf(spec, sizeof spec, "disk:%s", o.cache ? o.cache : "");
    acache_store *disk = NULL, *store = NULL;
    acache_status st = acache_open(spec, &disk);
    if (st != ACACHE_OK)
        return fail(spec, st);
    if ((st = acache_namespace(disk, &fp_id, &store)) != ACACHE_OK)
        return fail("namespace", st);

    double t0 = now_ms();
    acache_result res;
    acache_build_outcome how = ACACHE_BUILD_HIT;
    acache_build_options bo = { 0, 0, &how };
    st = acache_get_or_build_ex(store, &action, compile, &o, &bo, &res);
    if (st != ACACHE_OK)
        return fail("compile", st);
    double got_ms = now_ms() - t0;
    static const char *const hows[] = { "cache hit", "built here", "built by another thread",
                                        "built by another process",
                                        "built here after waiting" };
    if (o.compiles)
        printf("compiled: yes (%.1f ms)\n", o.compile_ms);
    else
        printf("compiled: no (%s, %.3f ms)\n", hows[how], got_ms);

    /* The cache's file is the shared object: no copy. */
    void *so = dlopen(res.path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "wasm2c_run: dlopen %s: %s\n", res.path, dlerror());
        return 1;
    }
    const example_export *exports = (const example_export *)dlsym(so, "example_exports");
    void *(*instantiate)(void) = (void *(*)(void))dlsym(so, "example_instantiate");
    void (*free_instance)(void *) = (void (*)(void *))dlsym(so, "example_free");
    const char *(*trap_text)(int) = (const char *(*)(int))dlsym(so, "example_strerror");
    if (!exports || !instantiate || !free_instance || !trap_text) {
        fprintf(stderr, "wasm2c_run: %s lacks the example's entry points\n", res.path);
        return 1;
    }
    const example_export *e = exports;
    while (e->name && strcmp(e->name, func) != 0)
        e++;
    if (!e->name) {
        fprintf(stderr, "wasm2c_run: %s exports no function %s taking and returning i32\n", module,
                func);
        return 1;
    }
    if (e->nparams != nargs) {
        fprintf(stderr, "wasm2c_run: %s takes %d arguments, got %d\n", func, e->nparams, nargs);
        return 1;
    }
    void *inst = instantiate();
    uint32_t result = 0;
    int trap = inst ? e->call(inst, args, &result) : -1;
    if (trap != 0) {
        fprintf(stderr, "wasm2c_run: %s: %s\n", func, inst ? trap_text(trap) : "out of memory");
        return 1;
    }
    printf("%s(", func);
    for (int k = 0; k < nargs; k++)
        printf("%s%" PRIu32, k ? ", " : "", args[k]);
    printf(") = %" PRIu32 "\n", result);
    free_instance(inst);
    /* The module stays loaded until exit: its code is in use until then. */
    acache_close(store);
    free(wasm);
    return 0;
}
