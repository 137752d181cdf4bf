/* The request path: every complete command goes through dispatch_command,
 * which checks it, queues it in MULTI, answers it with a registered command
 * family or relays it to the store. The families live above the core and
 * register their handlers and hooks at start (main.c), so dispatch never
 * names them. */
#ifndef EVALPROXY_DISPATCH_H
#define EVALPROXY_DISPATCH_H

#include <stddef.h>

#include "proxy/core/command_table.h"
#include "proxy/core/server.h"

typedef void command_handler(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);

/* What the request path asks of the command families. */
typedef struct dispatch_hooks {
    /* The ACL check of a restricted user: NULL when allowed, else the
     * NOPERM error to refuse the command with (the denial is logged). */
    const char *(*acl_denies)(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
    /* Scripts past busy-reply-threshold (busy-reply-scope all). */
    unsigned (*busy_scripts)(void);
    /* Queues a command between MULTI and EXEC (local: answered by the proxy). */
    int (*multi_queue)(client *c, const command_def *cmd, int local, int argc, char **argv, size_t *argvlen);
    /* An error inside MULTI makes EXEC abort. */
    void (*multi_flag_dirty)(client *c);
    /* A refused EXEC: the transaction is discarded with EXECABORT and this reason. */
    void (*exec_reject)(client *c, const char *reason);
    /* A blocking command (BLPOP, XREAD BLOCK...). */
    command_handler *blocking;
    /* Stores older than Redis 7.0: runs a relayed command itself when the
     * store lacks it, or an option of it, and the proxy can stand in for it;
     * 1 when it took the command. NULL: every command goes to the store. */
    int (*emulate)(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
    /* Whether a command may write, as CLIENT PAUSE WRITE judges it: Redis's
     * write and may-replicate flags, a script's own flags, an EXEC's
     * queued commands. */
    int (*may_write)(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
    /* Whether the proxy can stand in for cmd on this store (COMMAND lists it). */
    int (*emulates)(const command_def *cmd);
    /* A command Redis 7.0 does not have that the proxy answers itself
     * (MIGRATION): 1 when it did. Asked for authenticated, unrestricted
     * users only, before such a command would be relayed. */
    int (*own_command)(client *c, int argc, char **argv, size_t *argvlen);
    /* A command of a client in a Lua debugging session (c->debugging):
     * the debugger's, whatever its name. */
    void (*debug_command)(client *c, int argc, char **argv, size_t *argvlen);
} dispatch_hooks;

/* The store lacks cmd ("client|setname" style name) and the emulates hook
 * does not stand in for it: writes the refusal, "ERR command 'x' is not
 * supported by the store (redis 2.8.24)", into err and returns 1. 0 when
 * the store has it, cannot tell, or the proxy emulates it. Asked just
 * before a command would go to the store (after the emulate hook passed on
 * it) by the relay, MULTI queueing and scripts' redis.call. */
int dispatch_store_refuses(const command_def *cmd, char *err, size_t errlen);
/* Runs a command the proxy answers itself (queued in MULTI, run by EXEC)
 * as dispatch would, past its checks: the caller captures its reply. */
void dispatch_run_local(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);
/* Whether cmd works through the proxy on this store: answered by the proxy,
 * run by the store, or emulated. COMMAND lists only these. */
int dispatch_command_available(const command_def *cmd);
/* How many commands the emulates hook stands in for that the store lacks. */
int dispatch_commands_emulated(void);

/* Hands a blocking command to the blocking hook (after work the proxy did
 * first under its keys' locks, the client still blocked on it). */
void dispatch_blocking_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);

/* A registered handler passing a command on: it is refused as
 * administration of the store (unless backend-admin-commands) or relayed,
 * as if no family had registered it. */
void dispatch_unregistered(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);

/* The reply of a relayed (or forwarded) command into its reply slot. */
struct backend_reply;
void dispatch_relay_reply_cb(void *ctx, const struct backend_reply *r);

/* A fleet (fleet/): where a command runs: here, forwarded to the member
 * that owns its slots, redirected there (fleet-redirect: -MOVED), or after
 * a wait while its slots change hands. */
/* FLEET FORWARD <command...> from another member: unwrapped in place (the
 * client is marked as a member's connection); 1 when it was. */
int fleet_unwrap_forwarded(client *c, int *argc, char **argv, size_t *argvlen);
/* 1 when the command was forwarded, redirected or waits (the client is
 * blocked and it is dispatched again later); 0: it runs here.
 * forwardable: a plain command the owner can run for this client. */
int fleet_route(client *c, const command_def *cmd, int forwardable, int argc, char **argv, size_t *argvlen);
void fleet_client_gone(client *c);


/* Registers the handler of a command the proxy answers itself (before dispatch_init). */
void dispatch_register(const char *name, command_handler *handler);
void dispatch_set_hooks(const dispatch_hooks *hooks);
void dispatch_init(void);
void dispatch_free(void);

#endif
