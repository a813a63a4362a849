/*
 * curl_load.h - libcurl, loaded at run time: the table of the libcurl
 * functions the http transport calls, filled by dlopen("libcurl.so.4") the
 * first time an http:// or https:// remote is opened.
 *
 * libcurl and the two dozen libraries it needs cost milliseconds for the
 * dynamic loader to map, on every start of every process that links it,
 * and most starts (every `go` command's gocacheprog helper) never open an
 * http remote. So neither libacache nor the acache command links it; only
 * its header is used, for the types of the functions below.
 */
#ifndef ACACHE_CURL_LOAD_H
#define ACACHE_CURL_LOAD_H

#include "acache.h"

#include <curl/curl.h>

/* The soname loaded: the ABI of libcurl 7.16 and later (Debian's). */
#define CURL_LOAD_SONAME "libcurl.so.4"

/* The libcurl functions used, typed by libcurl's own declarations. */
typedef struct curl_api {
    __typeof__(&curl_global_init) global_init;
    __typeof__(&curl_easy_init) easy_init;
    __typeof__(&curl_easy_setopt) easy_setopt;
    __typeof__(&curl_easy_getinfo) easy_getinfo;
    __typeof__(&curl_easy_reset) easy_reset;
    __typeof__(&curl_easy_cleanup) easy_cleanup;
    __typeof__(&curl_easy_strerror) easy_strerror;
    __typeof__(&curl_slist_append) slist_append;
    __typeof__(&curl_slist_free_all) slist_free_all;
    /* Requests run on multi handles (curl_wait.c). */
    __typeof__(&curl_multi_init) multi_init;
    __typeof__(&curl_multi_add_handle) multi_add_handle;
    __typeof__(&curl_multi_remove_handle) multi_remove_handle;
    __typeof__(&curl_multi_setopt) multi_setopt;
    __typeof__(&curl_multi_socket_action) multi_socket_action;
    __typeof__(&curl_multi_info_read) multi_info_read;
    __typeof__(&curl_multi_cleanup) multi_cleanup;
} curl_api;

/*
 * Loads libcurl and runs curl_global_init, once per process (later calls,
 * from any thread, return what the first found). Returns ACACHE_OK with
 * *api set, or an error naming the library and why it could not be used
 * (the dynamic loader's message). The library is never unloaded.
 */
acache_status curl_load(const curl_api **api);

#endif
