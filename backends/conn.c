/* Store connections: the socket and connect part both backends share. */
#include "backends/conn.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

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

struct bufferevent *store_conn_open(struct event_base *base, const store_addr *a, long timeout_ms,
                                    bufferevent_data_cb readcb, bufferevent_event_cb eventcb, void *arg,
                                    char *why, size_t whylen)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (resolve(a, &ss, &sslen, why, whylen) != 0) return NULL;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        snprintf(why, whylen, "cannot create a connection");
        return NULL;
    }
    bufferevent_setcb(bev, readcb, NULL, eventcb, arg);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(bev, NULL, &tv);
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
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) return "connection timed out";
    if (what & BEV_EVENT_EOF) return "connection closed by store";
    int e = EVUTIL_SOCKET_ERROR();
    snprintf(buf, len, "%s", e ? evutil_socket_error_to_string(e) : "connection error");
    return buf;
}
