/* TLS for clients: one server context built from the tls-* directives. */
#ifndef EVALPROXY_TLS_H
#define EVALPROXY_TLS_H

#include <stddef.h>

struct bufferevent;
typedef struct ssl_st SSL;

/* Builds a context from the current tls-* values and, on success, puts it
 * in place of the old one (connections already open keep theirs). Does
 * nothing while tls-port is 0. 0, or -1 with the reason in err (the old
 * context stays). */
int tls_configure(char *err, size_t errlen);
/* A new server-side TLS connection object, or NULL (reason logged). */
SSL *tls_new_server_ssl(void);
/* 1 when a tls-* directive (one that goes into the context) is named. */
int tls_is_context_directive(const char *name, size_t len);
/* Why a TLS bufferevent failed, from OpenSSL's queue, or NULL when it
 * holds nothing (the error was a plain socket one). */
const char *tls_bufferevent_error(struct bufferevent *bev, char *buf, size_t len);
void tls_shutdown(void);

#endif
