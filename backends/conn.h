/* Opening a store connection, shared by the RESP and memcached backends:
 * name resolution, a non-blocking connect with a timeout, socket options
 * once connected, and the text that says why a connection failed. */
#ifndef EVALPROXY_BACKEND_CONN_H
#define EVALPROXY_BACKEND_CONN_H

#include <stddef.h>

#include <event2/bufferevent.h>

struct event_base;

/* Where a store listens. */
typedef struct store_addr {
    const char *host; /* name, IP literal, or a unix socket path (starts with '/') */
    int port;
} store_addr;

/* Starts connecting; the event callback gets BEV_EVENT_CONNECTED once the
 * connection is usable, or an error/timeout/EOF. Returns NULL with the
 * reason in why when it cannot even start. */
struct bufferevent *store_conn_open(struct event_base *base, const store_addr *a, long timeout_ms,
                                    bufferevent_data_cb readcb, bufferevent_event_cb eventcb, void *arg,
                                    char *why, size_t whylen);

/* On BEV_EVENT_CONNECTED: socket options, and the connect timeout lifted. */
void store_conn_established(struct bufferevent *bev, const store_addr *a);

/* Why the event callback saw `what` on bev, as a short text in buf. */
const char *store_conn_failure(struct bufferevent *bev, short what, char *buf, size_t len);

#endif
