/* What the router shares with its two placements (backends/pool.c,
 * backends/cluster.c). */
#ifndef EVALPROXY_ROUTER_INT_H
#define EVALPROXY_ROUTER_INT_H

#include "backends/router.h"

#define ROUTER_DEDICATED_BASE 2000000

typedef struct router_dedicated {
    int in_use;
    int *child; /* per store: its dedicated connection, or -1 until first used */
} router_dedicated;

typedef struct router_store {
    backend *b;
    char *name;            /* as INFO shows it */
    unsigned long long requests;
    int failures;          /* consecutive sends that found no connection (auto-eject) */
    long long ejected_until_ms; /* 0: in the placement */
} router_store;

typedef struct router router;

/* A request the router keeps while stores answer it (a merge, a cluster
 * request waiting to be sent again...). Listed so that those a released
 * dedicated connection silences, and those left when the router ends, are
 * freed: drop frees one without calling its caller. */
typedef struct router_pending {
    struct router_pending *prev, *next;
    int conn;
    void (*drop)(struct router_pending *p);
} router_pending;

typedef struct router_placement_ops {
    /* Index of the store owning key, or -1 (error() says why). */
    int (*owner)(router *r, const char *key, size_t len);
    /* Which keys one command may carry together (a cluster: the slot);
     * NULL: those of one store. */
    int (*group)(router *r, const char *key, size_t len);
    /* Whether a store holds part of the keyspace now (fan-outs go to those). */
    int (*active)(router *r, int store);
    /* The store for commands without keys. */
    int (*keyless)(router *r);
    /* Sends a routed command in its own way (a cluster follows its
     * redirections); NULL: router_send_direct. */
    int (*send)(router *r, int store, int conn, int db, unsigned long long session, int argc, char **argv,
                const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx);
    void (*info)(router *r, struct evbuffer *out);
    void (*free)(router *r);
    const char *kind; /* "pool", "cluster" */
} router_placement_ops;

struct router {
    backend base;
    struct event_base *evb;
    const router_placement_ops *pl;
    router_store *stores;
    int nstores, capstores;
    router_dedicated *ded;
    int nded;
    int memcached;         /* stores are memcached */
    int tag_braces;        /* the placement hashes what is inside {...} */
    char error[400];
    router_pending *pending; /* the list of router_pending */
    /* For the placement's own state. */
    void *placement_state;
};

/* Whether the router splits this command's keys over stores (MGET, DEL...). */
int router_command_splits(const char *name, size_t len);

void router_pending_add(router *r, router_pending *p, int conn, void (*drop)(router_pending *p));
void router_pending_remove(router *r, router_pending *p);

/* Adds a store (the router owns it from now on); returns its index. */
int router_add_store(router *r, backend *b, const char *name);
/* Sets up the common part; the placement then adds its stores. */
void router_init(router *r, struct event_base *base, const router_placement_ops *pl, int connections, int memcached);
/* Sends a command to one store as send() would (conn: the router's). */
int router_send_to(router *r, int store, int conn, int db, unsigned long long session, int argc, char **argv,
                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx);
/* The same, straight to the store, whatever the placement. */
int router_send_direct(router *r, int store, int conn, int db, unsigned long long session, int argc, char **argv,
                       const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx);
/* The store's connection standing for the router's conn (dedicated ones
 * opened on first use); -1 with the store's error in r->error. */
int router_child_conn(router *r, int store, int conn);
/* A reply made by the router, delivered on the next loop turn (never
 * from inside send). resp: RESP text of the reply; or error text. */
void router_reply_later(router *r, int mode, backend_reply_fn *fn, void *ctx, const char *resp, size_t len,
                        const char *error);
/* Delivers RESP text as a reply in the caller's mode, now. */
void router_deliver(int mode, backend_reply_fn *fn, void *ctx, const char *resp, size_t len);
void router_put_reply(struct evbuffer *out, const redisReply *r);
/* Child learnt its release or command list: mirror it. */
void router_child_learnt(backend *parent);

#endif
