/* MULTI/EXEC/DISCARD/WATCH/UNWATCH, and blocking commands on connections of
 * their own. */
#ifndef EVALPROXY_TRANSACTIONS_H
#define EVALPROXY_TRANSACTIONS_H

#include "proxy/core/dispatch.h"

command_handler cmd_multi, cmd_exec, cmd_discard, cmd_watch, cmd_unwatch;

/* Queues a command while the client is in MULTI (+QUEUED or Redis's error). */
/* The may_write dispatch hook (CLIENT PAUSE WRITE). */
int transactions_may_write(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
int multi_queue(client *c, const command_def *cmd, int is_local, int argc, char **argv, size_t *argvlen);
/* A command was rejected while queueing: EXEC will answer EXECABORT. */
void multi_flag_dirty(client *c);
int multi_length(const client *c); /* queued commands, -1 outside MULTI */
size_t multi_memory(const client *c); /* CLIENT LIST's multi-mem, as Redis counts it */
/* BLPOP and friends, XREAD BLOCK, WAIT: on a connection of their own. */
void blocking_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
unsigned blocking_clients(void);
/* CLIENT UNBLOCK: 1 if c was blocked in a blocking command and is now answered. */
int blocking_unblock(client *c, int with_error);
/* EXEC refused before it runs (NOAUTH, arity, ...): Redis's EXECABORT with
 * that error (without its '-'); the transaction and the WATCH end. */
void exec_reject(client *c, const char *error);
void transactions_client_gone(client *c);
unsigned long transactions_runs_pending(void); /* EXECs not finished (the drain waits) */
void transactions_shutdown(void); /* after the backend: frees EXECs still in flight */
void transactions_reset(client *c); /* RESET: discard MULTI, UNWATCH */

#endif
