/*
 * host.h - detection of the machine acache runs on (host.c). Plain
 * answers, no errors, no allocation.
 */
#ifndef ACACHE_HOST_H
#define ACACHE_HOST_H

#include <stddef.h>

/* "<arch>-<os>", as compiled for, e.g. "x86_64-linux". */
const char *os_host_target(void);
/* Fills names with up to max static strings: the CPU features this machine
 * has and the OS enables, lowercase; returns how many. */
size_t os_host_features(const char **names, size_t max);

#endif
