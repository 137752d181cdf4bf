/* Live migration from an old store (migrate-from) to the store the proxy
 * fronts (backend). A key moves on first touch: before any command, script
 * call or transaction touches a key that may still be in the old store,
 * the proxy copies it (value and TTL) to the new store and deletes it from
 * the old one, holding the key's lock (a key prestep, key_presteps.h). A
 * background mover walks the old store and moves every key the same way
 * at migrate-rate keys a second. The old store's contents are the state:
 * a restarted proxy carries on where it was. */
#ifndef EVALPROXY_MIGRATION_H
#define EVALPROXY_MIGRATION_H

#include <stddef.h>

#include "proxy/core/dispatch.h"

struct event_base;
struct evbuffer;

/* Connects to migrate-from (when set) and starts the mover. 0, or -1 with
 * err set on a bad URL. */
int migration_start(struct event_base *base, char *err, size_t errlen);
void migration_shutdown(void);

/* "# Migration" lines for INFO (nothing when no migration is configured). */
void migration_info(struct evbuffer *out);

/* A client's DBSIZE, KEYS, SCAN or RANDOMKEY while keys may be in the old
 * store: answered over both stores under the keyspace lock (1), else 0. */
int migration_keyspace_dispatch(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);

/* MIGRATION STATUS|PAUSE|RESUME (dispatch_hooks.own_command): 1 when argv is one. */
int migration_own_command(client *c, int argc, char **argv, size_t *argvlen);

#endif
