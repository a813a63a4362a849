/*
 * collide.c - a program with functions of its own named like acache's
 * internal ones (set_error, parse_size, spec_parse), linked against
 * libacache.a and libacache.so by tests/link/symbols.sh. It must link (no
 * duplicate symbol), and each side must keep calling its own functions:
 * the library's parse_size still parses "1M" inside acache_open and
 * acache_parse_size, and the program's still answers 42. Prints "ok".
 */
#include "acache.h"

#include <stdio.h>
#include <string.h>

static int own_calls;

/* Not the library's signatures on purpose: a mix-up would show. */
int set_error(const char *what)
{
    own_calls++;
    return what ? (int)strlen(what) : -1;
}

int parse_size(const char *text)
{
    own_calls++;
    return text ? 42 : 0;
}

int spec_parse(void) { return own_calls++; }

static int check(int cond, const char *what)
{
    if (!cond)
        fprintf(stderr, "collide: %s\n", what);
    return cond ? 0 : 1;
}

int main(void)
{
    int bad = 0;
    uint64_t size = 0;
    acache_store *s = NULL;
    acache_id action, output;
    acache_result res;

    bad += check(parse_size("1M") == 42 && set_error("four") == 4 && spec_parse() == 2,
                 "the program's own functions were not called");
    bad += check(acache_parse_size("1M", &size) == ACACHE_OK && size == (1u << 20),
                 "acache_parse_size did not use the library's parser");
    bad += check(acache_open("mem:?max-size=1M", &s) == ACACHE_OK, "acache_open(mem:) failed");
    if (s) {
        acache_id_of_bytes("collide", 7, &action);
        bad += check(acache_put(s, &action, "bytes", 5, &output) == ACACHE_OK, "put failed");
        bad += check(acache_get(s, &action, 0, &res) == ACACHE_OK && res.size == 5, "get missed");
        acache_result_release(&res);
        acache_close(s);
    }
    s = NULL;
    bad += check(acache_open("mem:?max-size=lots", &s) != ACACHE_OK &&
                     strstr(acache_last_error(), "lots") != NULL,
                 "a bad size was not refused with the library's message");
    bad += check(own_calls == 3, "the library called the program's functions");
    if (bad == 0)
        puts("ok");
    return bad ? 1 : 0;
}
