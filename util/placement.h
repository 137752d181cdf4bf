/* Key placement over a pool of stores, as twemproxy (nutcracker 0.5.0) places
 * keys: its twelve hash functions, its ketama, modula and random
 * distributions with their exact layouts, its hash tags and its server
 * naming, so the same server list puts every key on the same store.
 *
 * Bytes above 0x7f widen as the platform's plain char does wherever
 * twemproxy's hashes read a char (one_at_a_time, the fnv family, hsieh), as
 * nutcracker built on the same platform does (sign-extended on x86-64). */
#ifndef EVALPROXY_PLACEMENT_H
#define EVALPROXY_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

/* In twemproxy's order (its hash: names). */
enum placement_hash { PLACEMENT_ONE_AT_A_TIME, PLACEMENT_MD5, PLACEMENT_CRC16, PLACEMENT_CRC32,
    PLACEMENT_CRC32A, PLACEMENT_FNV1_64, PLACEMENT_FNV1A_64, PLACEMENT_FNV1_32, PLACEMENT_FNV1A_32,
    PLACEMENT_HSIEH, PLACEMENT_MURMUR, PLACEMENT_JENKINS };
enum placement_distribution { PLACEMENT_KETAMA, PLACEMENT_MODULA, PLACEMENT_RANDOM };

/* twemproxy's names ("fnv1a_64", "murmur"...); -1 unknown. */
int placement_hash_parse(const char *name);
/* "ketama" "modula" "random"; -1 unknown. */
int placement_distribution_parse(const char *name);
/* The name placement_hash_parse reads for hash, or NULL. */
const char *placement_hash_name(int hash);
const char *placement_distribution_name(int distribution);

/* twemproxy's hash of key (its value for the empty key too; placement
 * itself sends empty keys to hash 0, as twemproxy does); 0 for an unknown hash. */
uint32_t placement_hash(int hash, const char *key, size_t len);

/* The name twemproxy hashes for a server that has no name of its own in the
 * configuration (its rule for port 11211 included); writes into buf, returns its length.
 *
 * "host:port", or "host" alone when port is 11211 (libmemcached's rule). A
 * host starting with '/' is a unix socket path ("/path:weight" in
 * twemproxy's configuration; port is ignored): its name is the path followed
 * by ':' when the path has no ':' of its own, else the path. Like snprintf,
 * the length returned is the whole name's even when buf is too short; buf is
 * always NUL-terminated when buflen > 0. twemproxy hashes the host and port
 * as its file spells them (a host name is not resolved; "h:06379" stays
 * that text), so a configuration reader should pass them on as written or
 * give the exact text as the server's name. */
size_t placement_default_name(const char *host, int port, char *buf, size_t buflen);

typedef struct placement_server { const char *name; size_t name_len; unsigned weight; } placement_server;
typedef struct placement placement;

/* hash_tag: NULL/"" for none, else two characters like "{}" (twemproxy's hash_tag).
 * NULL on a bad argument (unknown distribution or hash, n < 1, a zero
 * weight, a tag that is not two characters, two servers with the same name:
 * twemproxy refuses such a configuration) or when memory runs out. Names
 * are copied. Every server starts live. */
placement *placement_new(int distribution, int hash, const char *hash_tag, const placement_server *servers, int n);
/* Rebuilds the layout with only the servers live[i] != 0 (twemproxy's auto_eject_hosts); 0 ok.
 * -1 when memory runs out; the previous layout stays. */
int placement_set_live(placement *p, const int *live);
/* Index (into servers) of the owner of key; -1 when no server is live.
 * Random distribution: a live server chosen at random on each call (weights
 * play no part, as in twemproxy). */
int placement_owner(const placement *p, const char *key, size_t len);
void placement_free(placement *p);

/* The layout, for tests and diagnostics: the number of points, and up to max
 * of them in order (ketama: the continuum, sorted by value; modula: one
 * point of value 0 per unit of weight; random: one per live server). */
int placement_points(const placement *p, uint32_t *values, int *owners, int max);

#endif
