/* Whether the store refuses writes now. Redis 7.0 refuses a script that
 * declares flags (a shebang, or a function) before it runs when the server
 * is out of memory (-OOM, unless allow-oom or no-writes), cannot persist
 * (-MISCONF), lacks good replicas (-NOREPLICAS) or is a read-only replica
 * (-READONLY), unless the script is no-writes; FUNCTION LOAD and RESTORE
 * likewise. The proxy asks the store with a write that changes nothing, but
 * only while the store may be refusing: for a while after it refused
 * something or a CONFIG SET went to it. */
#ifndef EVALPROXY_STORE_REFUSAL_H
#define EVALPROXY_STORE_REFUSAL_H

#include <stddef.h>

enum {
    STORE_CHECK_WRITE = 1, /* -MISCONF, -NOREPLICAS, -READONLY */
    STORE_CHECK_OOM = 2,   /* -OOM (alone: as for a command queued in MULTI) */
};

/* An error reply from the store (text without the '-'): whether it is a
 * refusal by the store's state, which Redis counts as a rejected call, not
 * a failed one. A refusal of writes starts the watch. */
int store_refusal_note_error(const char *err, size_t len);
/* A CONFIG SET (or REPLICAOF) from this client goes to the store: its
 * limits may have changed. The store is asked on the connection the
 * client's commands take, so that it answers after the change. */
void store_refusal_note_change(unsigned long long client_id);

/* error: Redis 7.0's reply to give instead of running (or the backend's
 * error when the store could not be asked), or NULL to go on; oom: the
 * error is -OOM. */
typedef void store_refusal_fn(void *ctx, const char *error, int oom);

/* Whether store_refusal_check would ask the store now (so that callers
 * keep what the answer needs only then). */
int store_refusal_wanted(int checks);

/* 0: nothing to ask (fn is never called: go on at once); 1: fn is called
 * once the store has answered (never from inside this call). The key, if
 * any, picks the store among several. */
int store_refusal_check(int checks, int db, const char *key, size_t keylen, store_refusal_fn *fn, void *ctx);

#endif
