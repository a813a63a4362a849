/*
 * test_prog.c - the prog: backend, the client side of GOCACHEPROG: against
 * the real `acache gocacheprog` ($ACACHE_BIN), and against helpers that
 * misbehave in every way the protocol allows (tests/prog_helper.py, run by
 * python3 from $ACACHE_SOURCE_DIR): each must end in a clear error within a
 * bounded time, and a disk tier in front must go on serving.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *dir;
static char helper_dir[4200], disk_dir[4200];

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("prog");
    snprintf(helper_dir, sizeof helper_dir, "%s/helper", dir);
    snprintf(disk_dir, sizeof disk_dir, "%s/disk", dir);
    assert_int_equal(mkdir(helper_dir, 0700), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set (run through ctest)", name);
    return v;
}

/* "prog:python3 .../prog_helper.py MODE DIR?opts" */
static void helper_spec(char *out, size_t size, const char *mode, const char *opts)
{
    snprintf(out, size, "prog:python3 %s/tests/prog_helper.py %s %s%s%s",
             env("ACACHE_SOURCE_DIR"), mode, helper_dir, opts ? "?" : "", opts ? opts : "");
}

/* "prog:$ACACHE_BIN gocacheprog --dir DIR/gcp?opts" */
static void gcp_spec(char *out, size_t size, const char *opts)
{
    snprintf(out, size, "prog:%s gocacheprog --dir %s/gcp%s%s", env("ACACHE_BIN"), dir,
             opts ? "?" : "", opts ? opts : "");
}

static acache_store *open_ok(const char *spec)
{
    acache_store *s = NULL;
    acache_status st = acache_open(spec, &s);
    if (st != ACACHE_OK)
        fail_msg("acache_open(%s): %s", spec, acache_last_error());
    return s;
}

static void expect_msg(const char *what)
{
    if (!strstr(acache_last_error(), what))
        fail_msg("error '%s' does not mention '%s'", acache_last_error(), what);
}

static size_t log_count(const char *cmd)
{
    char path[4300];
    size_t len = 0, n = 0;
    snprintf(path, sizeof path, "%s/requests.log", helper_dir);
    char *text = tu_read_file(path, &len);
    if (!text)
        return 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t k = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        n += k == strlen(cmd) && memcmp(line, cmd, k) == 0;
        line += k + 1;
    }
    free(text);
    return n;
}

/* ------------------------------------------------------------------ */
/* Against acache gocacheprog                                           */

static void test_gocacheprog_roundtrip(void **state)
{
    (void)state;
    char spec[8400], gcp[4300];
    gcp_spec(spec, sizeof spec, "timeout=10s");
    snprintf(gcp, sizeof gcp, "%s/gcp/", dir);
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(1), out, other = tu_id(2);
    unsigned char body[3000];
    tu_fill(body, sizeof body, 1);
    acache_result r;
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_MISS);
    assert_int_equal(acache_put(s, &action, body, sizeof body, &out), ACACHE_OK);
    assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(&r.output_id, &out, sizeof out);
    assert_int_equal(r.size, sizeof body);
    assert_memory_equal(r.data, body, sizeof body);
    assert_true(strncmp(r.path, gcp, strlen(gcp)) == 0);
    int64_t now = (int64_t)time(NULL) * 1000000000;
    assert_true(r.time_ns > now - 60 * 1000000000LL && r.time_ns <= now + 2000000000LL);
    acache_result_release(&r);
    assert_int_equal(acache_get(s, &other, 0, &r), ACACHE_MISS);
    /* An empty body has no body line. */
    assert_int_equal(acache_put(s, &other, "", 0, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &other, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, 0);
    acache_result_release(&r);
    /* The protocol has no delete. */
    assert_int_equal(acache_delete(s, &action), ACACHE_MISS);
    double t0 = tu_now_s();
    acache_close(s);
    assert_true(tu_now_s() - t0 < 5.0);
}

static void test_gocacheprog_large_put(void **state)
{
    (void)state;
    char spec[8400], opts[4300];
    snprintf(opts, sizeof opts, "spool-dir=%s", dir);
    gcp_spec(spec, sizeof spec, opts);
    acache_store *s = open_ok(spec);
    size_t size = (20u << 20) + 7; /* past the memory spool, not a multiple of 3 */
    unsigned char *body = malloc(size);
    tu_fill(body, size, 2);
    acache_id action = tu_id(3);
    acache_put_stream *ps = NULL;
    assert_int_equal(acache_put_begin(s, &action, &ps), ACACHE_OK);
    for (size_t off = 0; off < size; off += 1000003)
        assert_int_equal(acache_put_write(ps, body + off, size - off < 1000003 ? size - off : 1000003),
                         ACACHE_OK);
    acache_result r;
    assert_int_equal(acache_put_commit(ps, NULL, size, &r), ACACHE_OK);
    assert_true(r.path[0] == '/');
    assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_int_equal(r.size, size);
    assert_memory_equal(r.data, body, size);
    acache_result_release(&r);
    /* The spool was an unlinked file: nothing is left in spool-dir. */
    assert_int_equal(tu_count_files(dir, "acache-prog"), 0);
    free(body);
    acache_close(s);
}

typedef struct worker {
    acache_store *s;
    int n;
    int failures;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 30; i++) {
        acache_id action = tu_id((uint32_t)(1000 * w->n + i));
        unsigned char body[512];
        tu_fill(body, sizeof body, (uint32_t)(1000 * w->n + i));
        acache_result r;
        if (acache_put(w->s, &action, body, sizeof body, NULL) != ACACHE_OK ||
            acache_get(w->s, &action, ACACHE_GET_DATA, &r) != ACACHE_OK) {
            w->failures++;
            continue;
        }
        if (r.size != sizeof body || memcmp(r.data, body, sizeof body) != 0)
            w->failures++;
        acache_result_release(&r);
    }
    return NULL;
}

static void test_gocacheprog_threads(void **state)
{
    (void)state;
    char spec[8400];
    gcp_spec(spec, sizeof spec, NULL);
    acache_store *s = open_ok(spec);
    pthread_t t[8];
    worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){ s, i + 1, 0 };
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    acache_stats st;
    acache_get_stats(s, &st);
    assert_int_equal(st.puts, 240);
    assert_int_equal(st.hits, 240);
    acache_close(s);
}

static void test_cmd_option_form(void **state)
{
    (void)state;
    char spec[8400];
    snprintf(spec, sizeof spec, "prog:?cmd=%s gocacheprog --dir %s/gcp&timeout=5s",
             env("ACACHE_BIN"), dir);
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(4);
    acache_result r;
    assert_int_equal(acache_put(s, &action, "x", 1, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_OK);
    acache_close(s);
}

/* A value only the helper has is found through tiers and promoted. */
static void test_tiers_promote_from_helper(void **state)
{
    (void)state;
    char spec[8400];
    gcp_spec(spec, sizeof spec, NULL);
    acache_id action = tu_id(5);
    acache_store *prog = open_ok(spec);
    assert_int_equal(acache_put(prog, &action, "shared", 6, NULL), ACACHE_OK);
    acache_close(prog);

    acache_store *both[2] = { tu_open_disk(disk_dir, ""), open_ok(spec) }, *t = NULL;
    assert_int_equal(acache_tiers(both, 2, &t), ACACHE_OK);
    acache_result r;
    assert_int_equal(acache_get(t, &action, 0, &r), ACACHE_OK);
    assert_true(strncmp(r.path, disk_dir, strlen(disk_dir)) == 0);
    acache_close(t);
    acache_store *disk = tu_open_disk(disk_dir, "");
    assert_int_equal(acache_get(disk, &action, 0, &r), ACACHE_OK);
    acache_close(disk);
}

/* ------------------------------------------------------------------ */
/* Specs                                                                */

static void test_spec_errors(void **state)
{
    (void)state;
    acache_store *s = NULL;
    assert_int_equal(acache_open("prog:", &s), ACACHE_EINVAL);
    expect_msg("no command");
    assert_int_equal(acache_open("prog:a?cmd=b", &s), ACACHE_EINVAL);
    expect_msg("not both");
    assert_int_equal(acache_open("prog:true?bogus=1", &s), ACACHE_EINVAL);
    expect_msg("bogus");
    assert_int_equal(acache_open("prog:true?timeout=0", &s), ACACHE_EINVAL);
    assert_int_equal(acache_open("prog:true?timeout=soon", &s), ACACHE_EINVAL);
    double t0 = tu_now_s();
    assert_true(acache_open("prog:/nonexistent/helper --flag", &s) < 0);
    /* posix_spawn reports a failed exec; where it cannot (valgrind), the
     * child's exit status 127 says it. */
    if (!strstr(acache_last_error(), "(exit status 127)"))
        expect_msg("cannot start helper '/nonexistent/helper --flag'");
    assert_true(tu_now_s() - t0 < 2.0);
    assert_null(s);
}

/* ------------------------------------------------------------------ */
/* Broken helpers                                                       */

/* Opening must fail with msg, within [min_s, max_s]. */
static void open_fails(const char *mode, const char *opts, const char *msg, double min_s,
                       double max_s)
{
    char spec[8400];
    acache_store *s = NULL;
    helper_spec(spec, sizeof spec, mode, opts);
    double t0 = tu_now_s();
    assert_int_equal(acache_open(spec, &s), ACACHE_EIO);
    double took = tu_now_s() - t0;
    expect_msg(msg);
    print_message("%s: '%s' after %.2fs\n", mode, acache_last_error(), took);
    assert_true(took >= min_s && took < max_s);
    assert_null(s);
}

static void test_exit_early(void **state)
{
    (void)state;
    open_fails("exit-early", NULL, "exited before saying which commands it knows (exit status 3)",
               0, 5);
}

static void test_garbage_first(void **state)
{
    (void)state;
    open_fails("garbage-first", NULL, "'hello, I am not a cache'", 0, 5);
}

static void test_silent_start(void **state)
{
    (void)state;
    open_fails("silent-start", "start-timeout=300ms", "said nothing within 300ms", 0.28, 5);
}

/* The first get fails with msg within max_s; every call after fails at
 * once; close is quick. */
static void first_get_fails(const char *mode, const char *opts, const char *msg, double min_s,
                            double max_s)
{
    char spec[8400];
    helper_spec(spec, sizeof spec, mode, opts);
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(6);
    acache_result r;
    double t0 = tu_now_s();
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_EIO);
    double took = tu_now_s() - t0;
    expect_msg(msg);
    print_message("%s: '%s' after %.2fs\n", mode, acache_last_error(), took);
    assert_true(took >= min_s && took < max_s);
    t0 = tu_now_s();
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_EIO);
    expect_msg(msg);
    acache_put_stream *ps = NULL;
    assert_int_equal(acache_put_begin(s, &action, &ps), ACACHE_EIO);
    /* Neither waited for the helper (the silent one would take its 3 s
     * timeout each): a bound far above two failing calls on a busy
     * machine, below one wait. */
    assert_true(tu_now_s() - t0 < 2.5);
    acache_stats st;
    acache_get_stats(s, &st);
    assert_int_equal(st.errors, 3);
    t0 = tu_now_s();
    acache_close(s);
    assert_true(tu_now_s() - t0 < 2.0);
}

static void test_exit_after_handshake(void **state)
{
    (void)state;
    first_get_fails("exit-after-handshake", "timeout=5s", "exited before close (exit status 4)",
                    0, 4);
}

static void test_garbage_answer(void **state)
{
    (void)state;
    first_get_fails("garbage", "timeout=5s",
                    "wrote a line that is not a response: 'panic: something went wrong'", 0, 4);
}

static void test_silent_helper(void **state)
{
    (void)state;
    first_get_fails("silent", "timeout=3s&close-timeout=300ms", "no answer to get 1 within 3s",
                    2.95, 10);
}

static void test_unknown_id(void **state)
{
    (void)state;
    first_get_fails("unknown-id", "timeout=5s", "answered request 1001, which nobody is waiting for",
                    0, 4);
}

static void test_close_not_answered(void **state)
{
    (void)state;
    char spec[8400];
    helper_spec(spec, sizeof spec, "no-close", "close-timeout=300ms");
    acache_store *s = open_ok(spec);
    acache_result r;
    acache_id action = tu_id(7);
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_MISS);
    double t0 = tu_now_s();
    acache_close(s); /* no answer: 300 ms; no exit: 300 ms; then killed */
    double took = tu_now_s() - t0;
    print_message("close of a helper that ignores it: %.2fs\n", took);
    assert_true(took >= 0.28 && took < 3.0);
    assert_int_equal(log_count("close"), 1);
}

static void test_get_only_helper(void **state)
{
    (void)state;
    char spec[8400];
    helper_spec(spec, sizeof spec, "get-only", NULL);
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(8);
    acache_result r;
    /* Dropped, as the protocol allows: OK, with no path. */
    acache_put_stream *ps = NULL;
    assert_int_equal(acache_put_begin(s, &action, &ps), ACACHE_OK);
    assert_int_equal(acache_put_write(ps, "dropped", 7), ACACHE_OK);
    assert_int_equal(acache_put_commit(ps, NULL, 7, &r), ACACHE_OK);
    assert_string_equal(r.path, "");
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_MISS);
    acache_close(s);
    assert_int_equal(log_count("put"), 0);
    assert_int_equal(log_count("get"), 1);
}

static void test_put_only_helper(void **state)
{
    (void)state;
    char spec[8400];
    helper_spec(spec, sizeof spec, "put-only", NULL);
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(9);
    acache_result r;
    assert_int_equal(acache_put(s, &action, "kept", 4, NULL), ACACHE_OK);
    /* A miss without asking. */
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_MISS);
    acache_close(s);
    assert_int_equal(log_count("put"), 1);
    assert_int_equal(log_count("get"), 0);
}

typedef struct getter {
    acache_store *s;
    uint32_t n;
    acache_status st;
    bool right;
} getter;

static void *get_one(void *arg)
{
    getter *g = arg;
    acache_id action = tu_id(100 + g->n);
    acache_result r;
    char want[32];
    snprintf(want, sizeof want, "value %u", g->n);
    g->st = acache_get(g->s, &action, ACACHE_GET_DATA, &r);
    g->right = g->st == ACACHE_OK && r.size == strlen(want) && memcmp(r.data, want, r.size) == 0;
    acache_result_release(&r);
    return NULL;
}

/* Four gets in flight at once, answered last first. */
static void test_answers_in_any_order(void **state)
{
    (void)state;
    char spec[8400];
    helper_spec(spec, sizeof spec, "reverse", "timeout=20s");
    acache_store *s = open_ok(spec);
    for (uint32_t i = 0; i < 4; i++) {
        char value[32];
        acache_id action = tu_id(100 + i);
        snprintf(value, sizeof value, "value %u", i);
        assert_int_equal(acache_put(s, &action, value, strlen(value), NULL), ACACHE_OK);
    }
    pthread_t t[4];
    getter g[4];
    for (uint32_t i = 0; i < 4; i++) {
        g[i] = (getter){ s, i, ACACHE_OK, false };
        pthread_create(&t[i], NULL, get_one, &g[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(g[i].st, ACACHE_OK);
        assert_true(g[i].right);
    }
    acache_close(s);
}

static void bad_hit(const char *mode, const char *msg)
{
    char spec[8400];
    helper_spec(spec, sizeof spec, mode, NULL);
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(10);
    acache_result r;
    assert_int_equal(acache_put(s, &action, "twelve bytes", 12, NULL), ACACHE_OK);
    assert_int_equal(acache_get(s, &action, ACACHE_GET_DATA, &r), ACACHE_MISS);
    assert_null(r.data);
    acache_stats st;
    acache_get_stats(s, &st);
    assert_int_equal(st.corrupt, 1);
    expect_msg(msg);
    acache_close(s);
}

static void test_hit_with_wrong_size(void **state)
{
    (void)state;
    bad_hit("wrong-size", "Size");
}

static void test_hit_with_wrong_bytes(void **state)
{
    (void)state;
    bad_hit("wrong-hash", "does not hash");
    /* Without verify-reads, only the size is checked. */
    char spec[8400];
    helper_spec(spec, sizeof spec, "wrong-hash", "verify-reads=off");
    acache_store *s = open_ok(spec);
    acache_id action = tu_id(10);
    acache_result r;
    assert_int_equal(acache_get(s, &action, 0, &r), ACACHE_OK);
    acache_close(s);
}

static acache_status build_text(void *ctx, const acache_id *action, acache_put_stream *out)
{
    (void)action;
    return acache_put_write(out, ctx, strlen(ctx));
}

/* A disk tier in front of a helper that fails: everything the disk has
 * is still served, puts and builds still land on disk, and each failure
 * is bounded. */
static void tiers_survive(const char *mode)
{
    char spec[8400];
    helper_spec(spec, sizeof spec, mode, "timeout=300ms&close-timeout=300ms");
    acache_store *both[2] = { tu_open_disk(disk_dir, ""), open_ok(spec) }, *t = NULL;
    assert_int_equal(acache_tiers(both, 2, &t), ACACHE_OK);
    acache_id stored = tu_id(20), missing = tu_id(21), built = tu_id(22);
    acache_result r;
    double t0 = tu_now_s();
    assert_int_equal(acache_put(t, &stored, "on disk", 7, NULL), ACACHE_OK);
    assert_true(tu_now_s() - t0 < 4.0);
    t0 = tu_now_s();
    assert_int_equal(acache_get(t, &stored, ACACHE_GET_DATA, &r), ACACHE_OK);
    assert_memory_equal(r.data, "on disk", 7);
    assert_true(strncmp(r.path, disk_dir, strlen(disk_dir)) == 0);
    acache_result_release(&r);
    /* A miss asks the helper, which is switched off by now: at once. */
    acache_status st = acache_get(t, &missing, 0, &r);
    assert_true(st == ACACHE_MISS || st == ACACHE_EIO);
    assert_true(tu_now_s() - t0 < 1.0);
    /* A build goes through, onto the disk tier. */
    assert_int_equal(acache_get_or_build_ex(t, &built, build_text, "built",
                                            &(acache_build_options){ ACACHE_GET_DATA, 0, NULL },
                                            &r),
                     ACACHE_OK);
    assert_memory_equal(r.data, "built", 5);
    acache_result_release(&r);
    assert_true(tu_now_s() - t0 < 1.0);
    acache_close(t);
}

static void test_tiers_fall_back(void **state)
{
    (void)state;
    const char *modes[] = { "silent", "exit-after-handshake", "garbage" };
    for (size_t i = 0; i < 3; i++) {
        print_message("tiers(disk, prog %s)\n", modes[i]);
        tiers_survive(modes[i]);
        tu_rmtree(disk_dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gocacheprog_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gocacheprog_large_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gocacheprog_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_option_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiers_promote_from_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_after_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_not_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_only_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_only_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answers_in_any_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hit_with_wrong_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hit_with_wrong_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiers_fall_back, setup, teardown),
    };
    alarm(300); /* the whole program, whatever hangs */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
