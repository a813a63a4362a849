/*
 * curl_load.c - loads libcurl on first use (see curl_load.h for why): one
 * dlopen, one dlsym per function, one curl_global_init, all under a
 * pthread_once, so that a process that never opens an http remote never
 * maps libcurl and one that does initialises it exactly once.
 *
 * It must never unload the library (handles and the global state live for
 * the process), never retry a failed load (the answer is fixed for the
 * process, and every caller gets the same message), and never print.
 */
#include "remote/curl_load.h"
#include "core/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static curl_api api_table;
static acache_status load_st;
static char load_msg[512];

/* Looks up one symbol into *slot; false (load_msg set) when it is missing.
 * The slot is written through a void * of the same size and representation,
 * the POSIX way of storing dlsym's answer in a function pointer. */
static bool resolve(void *lib, const char *name, void *slot)
{
    dlerror();
    void *sym = dlsym(lib, name);
    if (sym == NULL) {
        const char *why = dlerror();
        snprintf(load_msg, sizeof load_msg, "cannot use " CURL_LOAD_SONAME ": %s",
                 why ? why : name);
        return false;
    }
    memcpy(slot, &sym, sizeof sym);
    return true;
}

static void load(void)
{
    load_st = ACACHE_EIO;
    void *lib = dlopen(CURL_LOAD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(load_msg, sizeof load_msg,
                 "cannot load " CURL_LOAD_SONAME " (http and s3 remotes need libcurl; on Debian "
                 "the package libcurl4): %s",
                 why ? why : "unknown error");
        return;
    }
    curl_api a;
    _Static_assert(sizeof a.easy_init == sizeof(void *), "function pointers as wide as void *");
    if (!resolve(lib, "curl_global_init", &a.global_init) ||
        !resolve(lib, "curl_easy_init", &a.easy_init) ||
        !resolve(lib, "curl_easy_setopt", &a.easy_setopt) ||
        !resolve(lib, "curl_easy_getinfo", &a.easy_getinfo) ||
        !resolve(lib, "curl_easy_reset", &a.easy_reset) ||
        !resolve(lib, "curl_easy_cleanup", &a.easy_cleanup) ||
        !resolve(lib, "curl_easy_strerror", &a.easy_strerror) ||
        !resolve(lib, "curl_slist_append", &a.slist_append) ||
        !resolve(lib, "curl_slist_free_all", &a.slist_free_all) ||
        !resolve(lib, "curl_multi_init", &a.multi_init) ||
        !resolve(lib, "curl_multi_add_handle", &a.multi_add_handle) ||
        !resolve(lib, "curl_multi_remove_handle", &a.multi_remove_handle) ||
        !resolve(lib, "curl_multi_setopt", &a.multi_setopt) ||
        !resolve(lib, "curl_multi_socket_action", &a.multi_socket_action) ||
        !resolve(lib, "curl_multi_info_read", &a.multi_info_read) ||
        !resolve(lib, "curl_multi_cleanup", &a.multi_cleanup))
        return; /* lib stays mapped: harmless, and dlclose could run its destructors */
    CURLcode rc = a.global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(load_msg, sizeof load_msg, "libcurl failed to initialise: %s",
                 a.easy_strerror(rc));
        return;
    }
    api_table = a;
    load_st = ACACHE_OK;
}

acache_status curl_load(const curl_api **api)
{
    pthread_once(&load_once, load);
    if (load_st != ACACHE_OK)
        return set_error(load_st, "http: %s", load_msg);
    *api = &api_table;
    return ACACHE_OK;
}
