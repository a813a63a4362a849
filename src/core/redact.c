/*
 * redact.c - acache_redact(): the one place where credentials are taken out
 * of text before anyone sees it. Every message the library makes passes
 * through it (set_error, the log lines of remotes, the names of remotes),
 * and so does every line the command prints about a spec.
 *
 * What counts as a credential:
 *   - the user information of a URL: in "scheme://USERINFO@host/...", all
 *     of USERINFO, up to the LAST '@' before the first '/' or blank, which
 *     is how the spec parsers read it (a password may hold '@', ':', '%40');
 *   - the value of an option whose name says it is a secret: a name that
 *     has a word password, passwd, pass, pwd, secret, token, auth,
 *     credential(s) or apikey, or ends in the word key ("key=",
 *     "access-key="), words being split by '-' and '_'. "key-file=PATH"
 *     names a file, not a secret, and is shown.
 * It must err on the side of hiding: a text it cannot read for sure (a
 * blank in the middle of a URL, say) loses more than the credential, never
 * less. It never allocates and never fails.
 */
#include "acache.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

typedef struct outbuf {
    char *p;
    size_t size, n;
} outbuf;

static void put(outbuf *o, const char *s, size_t len)
{
    for (size_t i = 0; i < len && o->n + 1 < o->size; i++)
        o->p[o->n++] = s[i];
}

/* Where a URL's authority (or an option's value) ends. */
static bool ends_authority(char c)
{
    return c == '\0' || c == '/' || isspace((unsigned char)c) || c == '\'' || c == '"' ||
           c == '<' || c == '>' || c == '`';
}

static bool ends_value(char c)
{
    return c == '\0' || c == '&' || isspace((unsigned char)c) || c == '\'' || c == '"' ||
           c == ')' || c == ',' || c == ';';
}

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

static bool word_is(const char *w, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(w, word, n) == 0;
}

/* Whether an option name (name[0..n)) says its value is a secret. */
static bool secret_name(const char *name, size_t n)
{
    static const char *const words[] = { "password", "passwd", "pass", "pwd", "secret",
                                         "token", "auth", "credential", "credentials", "apikey" };
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && name[i] != '-' && name[i] != '_')
            continue;
        const char *w = name + start;
        size_t wl = i - start;
        for (size_t k = 0; k < sizeof words / sizeof *words; k++)
            if (word_is(w, wl, words[k]))
                return true;
        if (i == n && word_is(w, wl, "key"))
            return true;
        start = i + 1;
    }
    return false;
}

/* At text + i, "://": copies it, hides the user information if the
 * authority has any, and returns the index to go on from. */
static size_t url_authority(const char *text, size_t i, outbuf *o)
{
    size_t a = i + 3, e = a, at = 0;
    bool has_at = false;
    put(o, "://", 3);
    for (; !ends_authority(text[e]); e++)
        if (text[e] == '@') {
            at = e;
            has_at = true;
        }
    if (!has_at)
        return a;
    put(o, "***", 3);
    return at; /* the '@' and the host are copied as they come */
}

/* At text + i, the start of a word: if it is NAME=VALUE with a secret
 * name, copies "NAME=***" and returns the index after the value; else
 * returns i. */
static size_t secret_option(const char *text, size_t i, outbuf *o)
{
    size_t e = i;
    while (is_name_char(text[e]))
        e++;
    if (e == i || text[e] != '=' || !secret_name(text + i, e - i))
        return i;
    put(o, text + i, e - i + 1);
    put(o, "***", 3);
    e++;
    while (!ends_value(text[e]))
        e++;
    return e;
}

void acache_redact(const char *text, char *out, size_t size)
{
    outbuf o = { out, size, 0 };
    if (!out || size == 0)
        return;
    if (!text)
        text = "";
    size_t i = 0;
    while (text[i]) {
        if (text[i] == ':' && text[i + 1] == '/' && text[i + 2] == '/') {
            i = url_authority(text, i, &o);
            continue;
        }
        if (is_name_char(text[i]) && (i == 0 || !is_name_char(text[i - 1]))) {
            size_t next = secret_option(text, i, &o);
            if (next != i) {
                i = next;
                continue;
            }
        }
        put(&o, text + i, 1);
        i++;
    }
    out[o.n] = '\0';
}
