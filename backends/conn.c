/* Store connections: the socket and connect part both backends share. */
#include "backends/conn.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "util/sock_read.h"
#include "util/clock.h"

#define STORE_READ_MAX (256 * 1024)

static int is_unix_path(const store_addr *a) { return a->host[0] == '/'; }

static int resolve(const store_addr *a, struct sockaddr_storage *ss, socklen_t *sslen, char *why, size_t whylen)
{
    memset(ss, 0, sizeof(*ss));
    if (is_unix_path(a)) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", a->host);
        *sslen = sizeof(*sun);
        return 0;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof(port), "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(why, whylen, "cannot resolve %s: %s", a->host, gai_strerror(rc));
        if (res) freeaddrinfo(res);
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

SSL_CTX *store_tls_ctx_new(const store_tls_options *o, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", openssl_reason());
        return NULL;
    }
    /* bufferevent_openssl may retry a write with a moved buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A store that closes without close_notify has closed, not failed. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (o->ca_file || o->ca_dir) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, o->ca_dir) != 1) {
            snprintf(err, errlen, "cannot load the store's CA certificates from %s: %s",
                     o->ca_file ? o->ca_file : o->ca_dir, openssl_reason());
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load the system's CA certificates: %s", openssl_reason());
        goto fail;
    }
    const char *key = o->key_file ? o->key_file : o->cert_file;
    if (o->key_file && !o->cert_file) {
        snprintf(err, errlen, "backend-tls-key-file needs backend-tls-cert-file");
        goto fail;
    }
    if (o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            snprintf(err, errlen, "cannot load the certificate %s: %s", o->cert_file, openssl_reason());
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "cannot load the private key %s: %s", key, openssl_reason());
            goto fail;
        }
    }
    /* Nothing left on OpenSSL's error queue for a later connection to
     * mistake for its own failure. */
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A TLS connection that checks the store's certificate against the URL's
 * host: a name (also sent as SNI) or an IP address. */
static struct bufferevent *tls_bufferevent(struct event_base *base, const store_addr *a, char *why, size_t whylen)
{
    SSL *ssl = SSL_new(a->tls);
    if (!ssl) {
        snprintf(why, whylen, "TLS setup failed: %s", openssl_reason());
        return NULL;
    }
    int ip = is_ip_literal(a->host);
    if (!ip) SSL_set_tlsext_host_name(ssl, a->host);
    if (a->tls_verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, a->host) : X509_VERIFY_PARAM_set1_host(param, a->host, 0);
        if (ok != 1) {
            snprintf(why, whylen, "TLS setup failed: cannot check certificates against %s", a->host);
            SSL_free(ssl);
            return NULL;
        }
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        snprintf(why, whylen, "cannot create a connection");
        return NULL;
    }
    /* A store that closes without close_notify has still closed: EOF, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct bufferevent *store_conn_open(struct event_base *base, const store_addr *a, long timeout_ms,
                                    bufferevent_data_cb readcb, bufferevent_event_cb eventcb, void *arg,
                                    char *why, size_t whylen)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (resolve(a, &ss, &sslen, why, whylen) != 0) return NULL;
    struct bufferevent *bev;
    if (a->tls && !is_unix_path(a)) {
        bev = tls_bufferevent(base, a, why, whylen);
        if (!bev) return NULL;
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
            snprintf(why, whylen, "cannot create a connection");
            return NULL;
        }
    }
    bufferevent_setcb(bev, readcb, NULL, eventcb, arg);
    /* Replies are read in big bites: a store connection that many clients
     * share must drain fast, and libevent's default is 16 KiB a wakeup. */
    bufferevent_set_max_single_read(bev, STORE_READ_MAX);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    /* For TLS the timeout also covers the handshake, which waits on reads:
     * a store that accepts but never answers must not hang the connection. */
    bufferevent_set_timeouts(bev, a->tls ? &tv : NULL, &tv);
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&ss, (int)sslen) != 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}

void store_conn_established(struct bufferevent *bev, const store_addr *a)
{
    int fd = bufferevent_getfd(bev);
    int one = 1;
    if (!is_unix_path(a)) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    bufferevent_set_timeouts(bev, NULL, NULL);
}

const char *store_conn_failure(struct bufferevent *bev, short what, char *buf, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    unsigned long tls_err = ssl ? bufferevent_get_openssl_error(bev) : 0;
    if (tls_err) {
        /* The first error says what went wrong; the rest is OpenSSL's trail. */
        while (bufferevent_get_openssl_error(bev)) {
        }
        const char *reason = ERR_reason_error_string(tls_err);
        long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK)
            snprintf(buf, len, "TLS handshake failed: %s (%s)", reason ? reason : "error",
                     X509_verify_cert_error_string(verify));
        else
            snprintf(buf, len, "TLS error: %s", reason ? reason : "unknown");
        return buf;
    }
    if (what & BEV_EVENT_TIMEOUT) return "connection timed out";
    if (what & BEV_EVENT_EOF) return "connection closed by store";
    int e = EVUTIL_SOCKET_ERROR();
    snprintf(buf, len, "%s", e ? evutil_socket_error_to_string(e) : "connection error");
    return buf;
}

/* ---- reading ------------------------------------------------------------------ */

enum { READ_NONE, READ_DATA, READ_GONE };

/* Reads what the socket holds into the input buffer (util/sock_read: no
 * FIONREAD before each read), then calls the read callback, or the event
 * callback at EOF or on an error. Returns READ_NONE when nothing was there
 * (w untouched), else whether callbacks ran (after which w and its
 * bufferevent may be gone). */
static int reader_read(store_writer *w)
{
    struct bufferevent *bev = w->bev;
    int end;
    size_t n = sock_read(bufferevent_get_input(bev), bufferevent_getfd(bev), STORE_READ_MAX, &end);
    if (n) {
        w->readcb(bev, w->cbarg);
        return READ_DATA;
    }
    if (end != SOCK_READ_MORE) {
        w->eventcb(bev, BEV_EVENT_READING | (end == SOCK_READ_EOF ? BEV_EVENT_EOF : BEV_EVENT_ERROR), w->cbarg);
        return READ_GONE;
    }
    return READ_NONE;
}

static void reader_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reader_read(arg);
}

/* ---- writing ------------------------------------------------------------------ */

/* Connections with output to flush, in the order their first request of
 * the turn was queued: what the proxy read first reaches the store first,
 * also across connections (a client's EXEC on its WATCH connection before
 * another client's write that would touch a watched key). */
static store_writer **wq;
static size_t wq_head, wq_n, wq_cap;
static struct event *wq_ev;

/* Returns whether everything went out. */
static int writer_flush(store_writer *w)
{
    struct bufferevent *bev = w->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    while (evbuffer_get_length(out) && evbuffer_write(out, fd) > 0) {
    }
    /* Left over (socket full, or an error the write event will report). */
    if (evbuffer_get_length(out)) {
        bufferevent_enable(bev, EV_WRITE);
        return 0;
    }
    if (bufferevent_get_enabled(bev) & EV_WRITE) bufferevent_disable(bev, EV_WRITE);
    return 1;
}

/* Read-after-write: a request that went out alone is usually all its
 * caller waits for (a script's redis.call, one client's command), and a
 * store on the same host often answers before the write returns. Reading
 * at once then spares the loop's epoll_wait; the reply is handled in this
 * turn, and a script's next call goes out in it too. Misses back off (2, 4
 * ... 64 lone batches without a try), so a store that answers later costs
 * one read in many; a chain of hits yields to the loop after
 * SPEC_BUDGET_US, so other connections wait no longer than that. */
#define SPEC_BUDGET_US 200
#define SPEC_MISSES_MAX 6

static void wq_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    unsigned long long t0 = 0;
    while (wq_head < wq_n) {
        store_writer *w = wq[wq_head++];
        int lone = w->lone;
        w->queued = 0;
        w->lone = 0;
        if (!w->direct || !writer_flush(w) || !lone || !w->rev) continue;
        if (w->skip) {
            w->skip--;
            continue;
        }
        unsigned long long now = clock_us();
        if (!t0) t0 = now;
        else if (now - t0 >= SPEC_BUDGET_US) continue;
        unsigned misses = w->misses;
        w->misses = 0; /* a hit may free w: reset before */
        if (reader_read(w) == READ_NONE) {
            w->misses = (unsigned char)(misses < SPEC_MISSES_MAX ? misses + 1 : misses);
            w->skip = (unsigned short)((1u << w->misses) - 1);
        }
    }
    wq_head = wq_n = 0;
}

void store_writer_soon(store_writer *w)
{
    if (!w->direct || w->queued) return;
    if (wq_n == wq_cap) {
        wq_cap = wq_cap ? wq_cap * 2 : 16;
        wq = realloc(wq, sizeof(*wq) * wq_cap);
        if (!wq) abort();
    }
    if (!wq_ev) {
        wq_ev = event_new(bufferevent_get_base(w->bev), -1, 0, wq_cb, NULL);
        if (!wq_ev) abort();
    }
    wq[wq_n++] = w;
    w->queued = 1;
    if (wq_n == 1) event_active(wq_ev, 0, 0);
}

void store_writer_soon_lone(store_writer *w)
{
    if (!w->direct) return;
    /* Only a batch that is all new: a request queued behind others in this
     * turn's output waits for their replies too. */
    if (!w->queued) w->lone = 1;
    store_writer_soon(w);
}

void store_writer_connected(store_writer *w, struct bufferevent *bev, const store_addr *a)
{
    w->bev = bev;
    if (a->tls) return;
    bufferevent_getcb(bev, &w->readcb, NULL, &w->eventcb, &w->cbarg);
    w->rev = event_new(bufferevent_get_base(bev), bufferevent_getfd(bev), EV_READ | EV_PERSIST, reader_cb, w);
    if (!w->rev) abort();
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    event_add(w->rev, NULL);
    w->direct = 1;
    w->misses = 0;
    w->skip = 0;
    if (evbuffer_get_length(bufferevent_get_output(bev))) store_writer_soon(w);
}

void store_writer_forget(store_writer *w)
{
    w->direct = 0;
    w->lone = 0;
    w->bev = NULL;
    if (w->rev) {
        event_free(w->rev);
        w->rev = NULL;
    }
    if (!w->queued) return;
    for (size_t i = wq_head; i < wq_n; i++)
        if (wq[i] == w) {
            memmove(wq + i, wq + i + 1, sizeof(*wq) * (wq_n - i - 1));
            wq_n--;
            break;
        }
    w->queued = 0;
}
