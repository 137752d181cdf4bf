/* SCRIPT DEBUG YES: a debugging session works on private copies of the
 * keys it touches, so that its writes are never seen by anyone and nobody
 * waits for it (Redis forks for this). Each key is copied at the session's
 * first touch to a name of its own in the same database
 * (LDB_PRIVATE_PREFIX, the session's id, ':', the key), with the store's
 * image and restore (DUMP/RESTORE, or memcached's item), and the session's
 * redis.call reach the copies; the copies are deleted when it ends. */
#ifndef EVALPROXY_SCRIPT_DEBUG_PROXY_H
#define EVALPROXY_SCRIPT_DEBUG_PROXY_H

#include <stddef.h>

#include "proxy/core/command_table.h"

#define LDB_PRIVATE_PREFIX "__evalproxy_ldb:"

typedef struct ldb_private ldb_private;

/* NULL when lua-debug-sessions-max sessions are running already. */
ldb_private *ldb_private_new(unsigned long long session);
/* Deletes the session's copies (queued on the store) and forgets it. */
void ldb_private_free(ldb_private *p);
unsigned ldb_private_sessions(void);

typedef void ldb_ready_fn(void *ctx, const char *err);
/* Before a redis.call of the session: copies the keys it names that were
 * not copied yet, then points *argv at an argument vector (the session's,
 * valid until the next call) whose keys are the private names, and calls
 * ready (before returning when no copy was needed; returns 1 then, else 0).
 * err: the call cannot run on a private copy (the text for the script). */
int ldb_private_prepare(ldb_private *p, const command_def *cmd, int db, int *argc, char ***argv, size_t **argvlen,
                        ldb_ready_fn *ready, void *ctx);

#endif
