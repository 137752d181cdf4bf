/* Work that must happen before a command touches its keys, while the
 * command holds those keys' locks: the exact deadlines of keys on stores
 * with whole-second expiry (a key past its deadline is deleted first), a
 * key still in the old store of a migration (moved first). Every path that
 * runs a command under locks (a client's command run by the proxy, a
 * script's redis.call, a transaction's command) asks here, so each kind of
 * work lives in one place. */
#ifndef EVALPROXY_KEY_PRESTEPS_H
#define EVALPROXY_KEY_PRESTEPS_H

#include <stddef.h>

#include "proxy/core/command_table.h"

/* The invocation the work is for, and where it will run. */
typedef struct prestep_call {
    const command_def *cmd;
    int argc;
    char **argv;
    size_t *argvlen;
    int db;
    int conn; /* the store connection the command will go on */
    unsigned long long session;
} prestep_call;

/* error: NULL when done, else the error reply text (without '-') the
 * command is answered with instead of running. */
typedef void prestep_done_fn(void *ctx, const char *error);

typedef struct key_prestep {
    const char *name;
    /* Whether this invocation needs the work: asked for every command, so
     * it must cost next to nothing when there is none. */
    int (*wanted)(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen);
    /* Does the work; done may be called before run returns. */
    void (*run)(const prestep_call *call, prestep_done_fn *done, void *ctx);
} key_prestep;

void key_prestep_register(const key_prestep *p);
int key_presteps_wanted(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen);
/* Runs every prestep the invocation wants, in registration order, then
 * done (at the first error, with it). The call's arrays must live until done. */
void key_presteps_run(const prestep_call *call, prestep_done_fn *done, void *ctx);

#endif
