/* The store's own removals of keys (expiry, eviction), for client-side
 * caching: followed as keyspace events once a client tracks keys. */
#ifndef EVALPROXY_KEY_EVENTS_H
#define EVALPROXY_KEY_EVENTS_H

#include <stddef.h>

/* A client turned tracking on: follow the store's expired and evicted keys
 * (once; again after the connection is lost), each one given to removed. */
typedef void key_removed_fn(const char *key, size_t len);
void key_events_want(key_removed_fn *removed);
/* At shutdown, after the backend is freed. */
void key_events_stop(void);

#endif
