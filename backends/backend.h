/* The one interface between the proxy and a store. A backend owns its
 * connections; callers send argv commands and get a completion callback,
 * either with the raw reply bytes (relayed as they are) or a parsed reply. */
#ifndef EVALPROXY_BACKEND_H
#define EVALPROXY_BACKEND_H

#include <stddef.h>
#include <hiredis/hiredis.h>

struct event_base;
struct evbuffer;
typedef struct ssl_ctx_st SSL_CTX;

enum backend_reply_mode {
    BACKEND_RAW = 0,    /* reply bytes are handed over untouched */
    BACKEND_PARSED = 1, /* reply parsed into a hiredis redisReply */
};

typedef struct backend_reply {
    const char *error;     /* set when the request failed without a reply (text without '-') */
    struct evbuffer *raw;  /* BACKEND_RAW: the reply is the first raw_len bytes; the callback may move them */
    size_t raw_len;
    const redisReply *parsed; /* BACKEND_PARSED: valid during the callback */
} backend_reply;

typedef void backend_reply_fn(void *ctx, const backend_reply *reply);

/* Set by whoever measures the store (the metrics): called with each reply's
 * round trip, from the request being queued to its reply being read (RESP
 * stores). NULL: nothing is timed. */
extern void (*backend_round_trip_observer)(unsigned long long usec);

typedef struct backend backend;

/* What a key was, for an undo journal: read just before a write to it and
 * put back by backend_restore. Kept in the store's own form (a DUMP payload;
 * a memcached item's value and client flags) so that nothing is lost. */
typedef struct backend_image {
    int exists;                 /* 0: there was no such key (restoring deletes it) */
    char *data;                 /* the serialized value */
    size_t len;
    long long ttl_ms;           /* time to live when read, -1: none */
    unsigned long long flags;   /* memcached: the item's client flags */
    char kind;                  /* 0: data is a DUMP payload; else the type read element by element
                                 * ('s' string, 'l' list, 'h' hash, 'S' set, 'z' sorted set, 'x' stream) */
    long long read_ms;          /* monotonic clock when read: the TTL counts down from there */
} backend_image;
/* img (the callee's to free with backend_image_free), or NULL with error. */
typedef void backend_image_fn(void *ctx, backend_image *img, const char *error);
void backend_image_free(backend_image *img);

typedef struct backend_ops {
    /* Index of a usable connection, preferring `hint % connections`; -1 if none. */
    int (*pick)(backend *b, unsigned hint);
    int (*conn_ready)(backend *b, int conn);
    /* Queue a command on `conn` to run in database `db`. 0, or -1 when the
     * connection cannot take it (see error()). The callback runs later, never
     * from inside send. `session` names whose command it is (a client): a
     * backend that may start a command before an earlier one on the same
     * connection is done does so only across sessions, never for 0. */
    int (*send)(backend *b, int conn, int db, unsigned long long session, int argc, char **argv,
                const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx);
    /* Why the store is unusable right now, as a Redis error text. */
    const char *(*error)(backend *b);
    /* "name:value\r\n" lines for INFO. */
    void (*info)(backend *b, struct evbuffer *out);
    void (*free)(backend *b);
    /* A connection of one client's own (MULTI/WATCH spans, blocking
     * commands): usable at once, never shared, never reconnected. Returns
     * its id for send(), or -1. Released connections in good order are kept
     * for reuse; reuse 0 closes it (its pending callbacks are dropped). */
    int (*open_dedicated)(backend *b);
    void (*release_dedicated)(backend *b, int conn, int reuse);
    /* Turns a dedicated connection into a subscriber: replies nobody asked
     * for (messages, subscribe confirmations) go to fn, parsed; sends on it
     * expect no reply of their own. fn gets an error when it is lost. */
    void (*set_push)(backend *b, int conn, backend_reply_fn *fn, void *ctx);
    /* Stores with no WATCH of their own (NULL elsewhere): a parsed array
     * reply of one integer per key (key i in database dbs[i]) that changes
     * whenever the key's item is written, deleted, expires or is evicted,
     * whoever did it (0: no such key). A change of expiry alone may leave
     * it as it was. */
    int (*key_tokens)(backend *b, int conn, int nkeys, const int *dbs, char **keys, const size_t *klens,
                      backend_reply_fn *fn, void *ctx);
    /* Queues on conn what reads key's image (0, or -1 as send). Sent just
     * before a write on the same connection and session, it is answered
     * before the write runs, at no extra round trip. */
    int (*capture)(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                   backend_image_fn *fn, void *ctx);
    /* Queues what puts key back as img says; fn gets the store's answer
     * (an error reply when it failed). */
    int (*restore)(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                   const backend_image *img, backend_reply_fn *fn, void *ctx);
} backend_ops;

struct backend {
    const backend_ops *ops;
    char *display;  /* host:port or path; never credentials */
    int connections;
    int default_db; /* the database new clients start in */
    int databases;  /* how many databases clients may SELECT (the proxy's setting) */
    int has_transactions; /* the store runs MULTI/EXEC itself */
    int has_dedicated;    /* open_dedicated works (WATCH, blocking, pub/sub) */
    long long connect_timeout_ms; /* connect (and TLS handshake) limit; 0: the default */
    long long max_string_len;     /* proto-max-bulk-len: strings the proxy builds stay within it */
    int has_dump; /* RESP stores: 1 DUMP works, -1 it does not (images by type), 0 not known yet */
    int has_pttl; /* RESP stores: 1 PTTL works, -1 it does not (before 2.6: TTL, EXPIRE), 0 not known yet */
    /* The store's release, learnt at connect: major*10000 + minor*100 + patch
     * (20418 for Redis 2.4.18); 0 while unknown, or for a store that is not
     * Redis (memcached, whose commands the backend answers itself). */
    int store_version;
    /* The names the store's COMMAND listed (backends/store.h); NULL where
     * it has none, and then the release alone tells. */
    struct store_commands *store_commands;
    /* Changes (to store_epoch_next(), a number no backend had before)
     * whenever store_version or store_commands do, so answers about them
     * can be kept; 0: never learnt. */
    unsigned long long store_epoch;
    /* The router this store is part of (a pool, a cluster), or NULL: told
     * when the store's release or command list is learnt. */
    struct backend *parent;
    /* A Redis Cluster: database 0 only, and SELECT of another is refused
     * with Redis Cluster's words. */
    int cluster_mode;
    /* One store (not a pool's or a cluster's router): one session's
     * commands on one connection run in the order sent, whatever their keys. */
    int one_store;
};

/* Whether the store has a command (lower-case name; "client|setname" for a
 * subcommand): 1 yes, 0 no, -1 not known (not learnt yet, or not Redis). */
int backend_store_has_command(const backend *b, const char *name, size_t len);

/* A connection attempt's time limit. */
static inline long long backend_connect_timeout(const backend *b)
{
    return b->connect_timeout_ms > 0 ? b->connect_timeout_ms : 2000;
}

struct store_tls_options;

/* Creates the backend for a URL (redis://, rediss://, unix://, memcached://,
 * memcacheds://); tls applies to the TLS schemes. NULL with err set on a bad
 * URL or TLS setup. databases: how many databases clients may SELECT. */
backend *backend_create(struct event_base *base, const char *url, int connections, int databases,
                        const struct store_tls_options *tls, char *err, size_t errlen);

static inline int backend_pick(backend *b, unsigned hint) { return b->ops->pick(b, hint); }
static inline int backend_conn_ready(backend *b, int conn) { return b->ops->conn_ready(b, conn); }
static inline int backend_send(backend *b, int conn, int db, int argc, char **argv, const size_t *argvlen,
                               int mode, backend_reply_fn *fn, void *ctx)
{
    return b->ops->send(b, conn, db, 0, argc, argv, argvlen, mode, fn, ctx);
}
/* The same for one client's command (session: its id, never 0). */
static inline int backend_send_for(backend *b, int conn, int db, unsigned long long session, int argc, char **argv,
                                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    return b->ops->send(b, conn, db, session, argc, argv, argvlen, mode, fn, ctx);
}
static inline const char *backend_error(backend *b) { return b->ops->error(b); }
static inline void backend_info(backend *b, struct evbuffer *out) { b->ops->info(b, out); }
static inline void backend_free(backend *b) { if (b) b->ops->free(b); }
static inline int backend_open_dedicated(backend *b) { return b->ops->open_dedicated(b); }
static inline void backend_set_push(backend *b, int conn, backend_reply_fn *fn, void *ctx)
{
    b->ops->set_push(b, conn, fn, ctx);
}
static inline int backend_has_key_tokens(const backend *b) { return b->ops->key_tokens != NULL; }
static inline int backend_key_tokens(backend *b, int conn, int nkeys, const int *dbs, char **keys,
                                     const size_t *klens, backend_reply_fn *fn, void *ctx)
{
    return b->ops->key_tokens(b, conn, nkeys, dbs, keys, klens, fn, ctx);
}
static inline void backend_release_dedicated(backend *b, int conn, int reuse)
{
    b->ops->release_dedicated(b, conn, reuse);
}
static inline int backend_capture(backend *b, int conn, int db, unsigned long long session, const char *key,
                                  size_t len, backend_image_fn *fn, void *ctx)
{
    return b->ops->capture(b, conn, db, session, key, len, fn, ctx);
}
static inline int backend_restore(backend *b, int conn, int db, unsigned long long session, const char *key,
                                  size_t len, const backend_image *img, backend_reply_fn *fn, void *ctx)
{
    return b->ops->restore(b, conn, db, session, key, len, img, fn, ctx);
}
/* The RESP stores' capture and restore (DUMP + PTTL; RESTORE ... REPLACE or
 * DEL), written with send only. */
int backend_resp_capture(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         backend_image_fn *fn, void *ctx);
int backend_resp_restore(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         const backend_image *img, backend_reply_fn *fn, void *ctx);
/* A copy of a parsed reply that outlives the callback (freeReplyObject frees it). */
redisReply *backend_reply_copy(const redisReply *r);
/* Whether b is a memcached store (items, not Redis types). */
int backend_is_memcached(const backend *b);
/* The RDB version a DUMP payload was written in (-1: too short). */
int backend_dump_rdb_version(const char *data, size_t len);
/* The newest RDB version a Redis release reads (0: unknown, taken as current). */
int backend_rdb_version_read(int release);
/* Makes an image read from `from` fit for backend_restore on `to` (a copy
 * between stores): a memcached item becomes a string and back; a DUMP
 * payload newer than `to` reads is refused. 0, or -1 with err set. */
int backend_image_adapt(backend_image *img, const backend *from, const backend *to, char *err, size_t errlen);
/* A journal record as a fleet keeps it in the store: the key (db, name) a
 * run (token) wrote and what it was, its TTL as a wall-clock deadline so
 * that another process can put it back. The encoding, malloc'ed, and its
 * length. A tombstone stands for a record already put back. */
char *backend_record_encode(unsigned long long token, int db, const char *key, size_t klen, const backend_image *img,
                            size_t *len);
char *backend_record_tombstone(unsigned long long token, size_t *len);
/* 1: a record (key and img are the caller's to free); 0: a tombstone (only
 * token is set); -1: neither. */
int backend_record_decode(const char *data, size_t len, unsigned long long *token, int *db, char **key, size_t *klen,
                          backend_image **img);

/* Parsed form of a backend URL. */
typedef struct backend_url {
    char scheme[16];
    int tls;         /* rediss://, memcacheds:// */
    char *host;      /* or unix socket path */
    int port;
    char *user, *password;
    int db;
} backend_url;

int backend_url_parse(const char *url, backend_url *out, char *err, size_t errlen);
void backend_url_free(backend_url *u);

/* tls: the client context for TLS URLs (the backend takes a reference), else NULL. */
backend *backend_resp_create(struct event_base *base, const backend_url *u, int connections, SSL_CTX *tls,
                             int tls_verify);
backend *backend_memcached_create(struct event_base *base, const backend_url *u, int connections, SSL_CTX *tls,
                                  int tls_verify);

#endif
