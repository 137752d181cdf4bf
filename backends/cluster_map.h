/* A Redis Cluster's slot map as the router uses it: which master serves
 * each of the 16384 slots, read from a CLUSTER SLOTS reply and corrected by
 * the MOVED and ASK redirections the nodes answer with. */
#ifndef EVALPROXY_CLUSTER_MAP_H
#define EVALPROXY_CLUSTER_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "util/cluster_slot.h"

typedef struct cluster_node {
    char *host;
    int port;
    char *id; /* the node's 40-character name; NULL when the reply has none (before Redis 4.0) */
} cluster_node;

typedef struct cluster_map {
    int nnodes;
    cluster_node *nodes; /* masters first, in the order CLUSTER SLOTS lists them, then replicas */
    int nmasters;
    int16_t owner[CLUSTER_SLOT_COUNT]; /* master node index per slot; -1 when no node serves it */
} cluster_map;

/* Builds a map from a CLUSTER SLOTS reply. Each entry is
 * [start, end, master, replica...], each node [endpoint, port, id?, ...];
 * what follows the id (7.0's networking metadata) is not read. An endpoint
 * that is empty, "?" or nil means the node's address is unknown to the one
 * asked, and `asked_host` (the host the reply came from) stands for it. A
 * node listed in several entries (its slots in several ranges) is one node,
 * known by host and port. Replicas are kept in nodes after the masters, so a
 * failover can be recognised, never as owners; a node listed as a master
 * anywhere is a master. An empty reply is a map where no slot is served.
 *
 * `out` need not be initialised. Returns 0, or -1 with a reason in err (a
 * reply of the wrong shape, a slot out of range, an unknown endpoint and no
 * asked_host, no memory); on -1 `out` is an empty map, safe to free. */
int cluster_map_from_slots(const redisReply *r, const char *asked_host, cluster_map *out, char *err,
                           size_t errlen);

/* Frees the nodes and leaves an empty map. */
void cluster_map_free(cluster_map *m);

/* The index in m->nodes of the node at host:port (host compared without
 * case, as names in DNS), or -1. */
int cluster_map_find(const cluster_map *m, const char *host, int port);

#define CLUSTER_REDIRECT_NONE 0
#define CLUSTER_REDIRECT_MOVED 1 /* the slot has a new owner: update the map */
#define CLUSTER_REDIRECT_ASK 2   /* only this command goes there, preceded by ASKING */

/* Reads an error reply's text, without its '-': "MOVED 3999 127.0.0.1:6381"
 * -> CLUSTER_REDIRECT_MOVED, "ASK 3999 127.0.0.1:6381" -> CLUSTER_REDIRECT_ASK,
 * anything else (another error, a malformed redirection, a host longer than
 * hostlen - 1) -> 0. On a redirection fills slot, port and host,
 * NUL-terminated; the endpoint is split at its last ':' so an IPv6 address
 * keeps its colons ("[...]" brackets are removed). The host is "?" or empty
 * when the redirecting node does not know the target's address: the target
 * is then on the host that sent the redirection. Leaves the outputs alone
 * when it returns 0. */
int cluster_redirect_parse(const char *text, size_t len, int *slot, char *host, size_t hostlen, int *port);

#endif
