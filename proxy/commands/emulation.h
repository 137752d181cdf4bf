/* Redis 7 commands an old store lacks, run by the proxy itself: each is a
 * short procedure of store commands that the store does have, run under the
 * proxy's key locks (the same lock sets scripts take), with Redis 7.0's
 * replies and errors. One table says which store release has each command
 * and option natively; an invocation is emulated when the store is older. */
#ifndef EVALPROXY_EMULATION_H
#define EVALPROXY_EMULATION_H

#include <stddef.h>

#include "proxy/core/dispatch.h"

/* The reply (complete RESP2), and whether the store failed under it. */
typedef void emulation_done_fn(void *ctx, const char *reply, size_t len, int store_failed);

/* Registers the exact-deadline prestep (key_presteps.h). */
void emulation_init(void);

/* Whether the proxy runs this invocation (in database db) itself: the
 * store lacks it, or its keys need work first (key_presteps.h). */
int emulation_wanted(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen);

/* dispatch_hooks.emulate: a client's command, under locks of its own. */
int emulation_dispatch(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
/* dispatch_hooks.emulates: the proxy can stand in for cmd on this store. */
int emulation_emulates(const command_def *cmd);

/* Runs an invocation emulation_wanted said yes to, under locks the caller
 * holds (a script's, a transaction's) on its keys, in database db, on store
 * connection conn. done may be called before this returns. */
void emulation_run_held(const command_def *cmd, int argc, char **argv, size_t *argvlen, int db, int conn,
                        unsigned long long session, emulation_done_fn *done, void *ctx);

/* After the store is gone: frees what still waits for its locks. */
void emulation_shutdown(void);

/* Close hook: a client's emulated command runs on, its reply is dropped. */
void emulation_client_gone(client *c);

#endif
