/* CLIENT PAUSE: for a while, commands that may write (WRITE) or every
 * command (ALL) wait, in the order they came, until the pause ends (its
 * timeout or CLIENT UNPAUSE), as Redis 7.0 postpones them. Scripts and
 * transactions already running go on. */
#ifndef EVALPROXY_CLIENT_PAUSE_H
#define EVALPROXY_CLIENT_PAUSE_H

#include "proxy/core/server.h"

/* Pauses until end_ms (wall clock, ms); a pause in force keeps the later
 * end and the stricter kind, as Redis. A pause of writes pauses a Redis
 * store's writes too (6.2 and later), so that its expiry stops as Redis's
 * does; in_exec: asked inside a transaction the proxy runs, whose commands
 * after it must still reach the store: that waits for clients_pause_exec_done. */
void clients_pause(long long end_ms, int all, int in_exec);
void clients_unpause(void);
void clients_pause_exec_done(void);
/* Whether a command (that may write, or not) waits now. */
int clients_pause_holds(int may_write);
/* The client's command being dispatched waits for the pause to end. */
void client_pause_postpone(client *c);
/* Clients waiting (INFO's blocked_clients counts them, as Redis). */
unsigned clients_postponed(void);
void client_pause_init(void);
void client_pause_shutdown(void);

#endif
