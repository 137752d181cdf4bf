/* Many stores behind one backend: a pool placed as twemproxy places keys,
 * or a Redis Cluster placed by its slot map. Either is a backend like any
 * other: each command goes to the store that owns its keys; the multi-key
 * commands Redis Cluster clients split (MGET, MSET, DEL, UNLINK, EXISTS,
 * TOUCH, MSETNX, WATCH) are split by owner and their replies merged in
 * Redis's order; the keyspace-wide ones (DBSIZE, KEYS, SCAN, RANDOMKEY,
 * FLUSHDB, FLUSHALL, INFO's keyspace) go to every store; anything else
 * whose keys have several owners gets Redis Cluster's CROSSSLOT error. */
#ifndef EVALPROXY_ROUTER_H
#define EVALPROXY_ROUTER_H

#include "backends/backend.h"

/* The key arguments of a command line (argv indexes into pos, at most max;
 * returns how many there are, more than max meaning call again with more
 * room, 0 for none, -1 when the line is not a valid command). Set by
 * whoever knows the command table before a router is created. */
typedef int backend_keys_fn(int argc, char **argv, const size_t *argvlen, int *pos, int max);
extern backend_keys_fn *backend_command_keys;

typedef struct backend_pool_member {
    const char *url;
    unsigned weight; /* twemproxy's server weight; 0 counts as 1 */
    const char *name; /* twemproxy's server name (placement), or NULL */
} backend_pool_member;

typedef struct backend_pool_options {
    const char *distribution; /* ketama | modula | random */
    const char *hash;         /* twemproxy's hash names: fnv1a_64, md5, murmur, crc32, ... */
    const char *hash_tag;     /* two characters such as "{}", or NULL */
    int auto_eject_hosts;
    int server_failure_limit;
    long long server_retry_timeout_ms;
} backend_pool_options;

struct store_tls_options;

/* A pool of stores of one kind (all RESP or all memcached). NULL with err. */
backend *backend_pool_create(struct event_base *base, const backend_pool_member *members, int n,
                             const backend_pool_options *opt, int connections,
                             const struct store_tls_options *tls, char *err, size_t errlen);

/* redis-cluster://[user:pass@]host:port[,host:port...] (rediss-cluster://
 * for TLS): the seeds from which the slot map is learnt. NULL with err. */
backend *backend_cluster_create(struct event_base *base, const char *url, int connections,
                                const struct store_tls_options *tls, char *err, size_t errlen);

/* How often the slot map of a Redis Cluster is read again (ms). */
extern long long backend_cluster_refresh_ms;

/* Whether a URL names a Redis Cluster. */
int backend_url_is_cluster(const char *url);

#endif
