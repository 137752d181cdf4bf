/* Opening a store connection, shared by the RESP and memcached backends:
 * name resolution, a non-blocking connect with a timeout, TLS (certificate
 * and host name checks, SNI) when the URL asks for it, socket options once
 * connected, and the text that says why a connection failed. */
#ifndef EVALPROXY_BACKEND_CONN_H
#define EVALPROXY_BACKEND_CONN_H

#include <stddef.h>

#include <event2/bufferevent.h>

struct event_base;
typedef struct ssl_ctx_st SSL_CTX;

/* Where a store listens. */
typedef struct store_addr {
    const char *host; /* name, IP literal, or a unix socket path (starts with '/') */
    int port;
    SSL_CTX *tls;     /* NULL: plain TCP */
    int tls_verify;   /* check the chain and that it names host */
} store_addr;

/* How the proxy talks TLS to a store (backend-tls-* directives). */
typedef struct store_tls_options {
    const char *ca_file, *ca_dir; /* neither: the system's trusted CAs */
    const char *cert_file, *key_file; /* the proxy's own certificate, optional */
    int verify;
} store_tls_options;

/* A client context for store connections; NULL with the reason in err. */
SSL_CTX *store_tls_ctx_new(const store_tls_options *o, char *err, size_t errlen);

/* Starts connecting; the event callback gets BEV_EVENT_CONNECTED once the
 * connection is usable (for TLS: after the handshake), or an error/timeout/EOF. Returns NULL with the
 * reason in why when it cannot even start. */
struct bufferevent *store_conn_open(struct event_base *base, const store_addr *a, long timeout_ms,
                                    bufferevent_data_cb readcb, bufferevent_event_cb eventcb, void *arg,
                                    char *why, size_t whylen);

/* On BEV_EVENT_CONNECTED: socket options, and the connect timeout lifted. */
void store_conn_established(struct bufferevent *bev, const store_addr *a);

/* Why the event callback saw `what` on bev, as a short text in buf. TLS
 * failures start with "TLS ". */
const char *store_conn_failure(struct bufferevent *bev, short what, char *buf, size_t len);

/* Requests are written by the proxy itself once per event-loop turn, like
 * client replies: every command queued in the turn goes out in one write,
 * with no write event (two epoll_ctl calls and one more loop turn) per
 * batch. Only a full socket hands the rest to the bufferevent's write
 * event. Replies are read by the proxy too, with no FIONREAD before each
 * read as libevent's reads make. TLS connections keep the bufferevent's own
 * reads and writes. A backend embeds one store_writer per connection. */
typedef struct store_writer {
    struct bufferevent *bev;
    struct event *rev;  /* direct: the connection's read event */
    bufferevent_data_cb readcb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    unsigned direct : 1; /* connected, plain TCP: written by store_writer_flush */
    unsigned queued : 1; /* in the list for this loop turn */
    unsigned lone : 1;   /* this turn's batch went out with nothing else in flight */
    unsigned char misses; /* read-after-write attempts that found nothing, in a row */
    unsigned short skip;  /* lone batches left to send without one */
} store_writer;

/* On BEV_EVENT_CONNECTED (after store_conn_established): take over the
 * reads and writes of a plain connection (its callbacks stay the ones given
 * to store_conn_open); output already queued goes this turn. */
void store_writer_connected(store_writer *w, struct bufferevent *bev, const store_addr *a);
/* Output was added to the bufferevent: write it at the end of this turn. */
void store_writer_soon(store_writer *w);
/* As store_writer_soon, for a request sent while the connection had nothing
 * else in flight: its reply is looked for right after the write (see
 * wq_cb). */
void store_writer_soon_lone(store_writer *w);
/* Before the bufferevent is freed (or the writer's memory is). */
void store_writer_forget(store_writer *w);

#endif
