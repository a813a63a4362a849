/*
 * namespace.h - what build_once.c needs to know about namespaced stores:
 * the id an action has once it reaches the storage backends. Internal to
 * src/; the public side is in acache.h.
 */
#ifndef ACACHE_NAMESPACE_H
#define ACACHE_NAMESPACE_H

#include "core/backend.h"

/* The id under which the backends below store (and any namespace wrappers
 * on top of it) keep the entry of action: action itself for a plain store. */
void store_backend_id(const acache_store *store, const acache_id *action, acache_id *out);

#endif
