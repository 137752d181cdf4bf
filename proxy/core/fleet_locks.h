/* Lock units owned by another fleet member, taken from that member: FLEET
 * LOCK on a connection of their own (the member holds them for as long as
 * the connection lives, so a requester that dies releases them), FLEET
 * UNLOCK when done. */
#ifndef EVALPROXY_FLEET_LOCKS_H
#define EVALPROXY_FLEET_LOCKS_H

#include <stddef.h>

typedef struct remote_lock remote_lock;
/* ok 1: granted; 0: failed (the member cannot be reached or refused). */
typedef void remote_lock_fn(void *ctx, int ok);

/* Starts a request for units (db, unit name) at member, in lock mode,
 * plus the whole keyspace when keyspace is set, for run_tag's script run
 * (or NULL). NULL when it cannot even be sent (fn is not called then). */
remote_lock *remote_lock_new(int member, int mode, int keyspace, const char *run_tag);
void remote_lock_add(remote_lock *rl, int db, const char *name, size_t len);
int remote_lock_send(remote_lock *rl, remote_lock_fn *fn, void *ctx);
/* Releases what was granted, or gives up the wait; fn is not called after. */
void remote_lock_free(remote_lock *rl);
/* Closes the request's connection without FLEET UNLOCK: the member holding
 * the units treats its run as vanished (it puts back what the run recorded). */
void remote_lock_drop(remote_lock *rl);

#endif
