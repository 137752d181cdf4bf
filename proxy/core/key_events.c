/* Keys the store removes by itself (expired, evicted) while clients track
 * keys: the store announces them as keyspace events, which the proxy asks
 * for (notify-keyspace-events gains E, x and e) and follows on a subscriber
 * connection of its own, so that tracking clients are told as Redis tells
 * them. Started by the first CLIENT TRACKING on, kept afterwards. */
#include "proxy/core/key_events.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backends/backend.h"
#include "proxy/core/server.h"
#include "util/log.h"

enum { KE_IDLE, KE_ASKING, KE_FOLLOWING, KE_REFUSED };

static int state = KE_IDLE;
static int stopped;
static key_removed_fn *on_removed;
static int conn = -1;      /* the subscriber connection */
static int dead_conn = -1; /* a lost one, released from the timer */
static struct event *retry_ev;

static void subscribe(void);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (dead_conn >= 0) {
        backend_release_dedicated(server.backend, dead_conn, 0);
        dead_conn = -1;
    }
    if (state == KE_IDLE) key_events_want(on_removed);
}

static void retry_later(void)
{
    if (stopped) return;
    if (!retry_ev) retry_ev = evtimer_new(server.base, retry_cb, NULL);
    if (!retry_ev) abort();
    struct timeval tv = {0, 250000};
    evtimer_add(retry_ev, &tv);
}

static int is(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == n && !memcmp(r->str, s, n);
}

static void push_cb(void *ctx, const backend_reply *br)
{
    (void)ctx;
    if (br->error) {
        log_warning("keyspace events connection to the store lost: %s", br->error);
        dead_conn = conn;
        conn = -1;
        state = KE_IDLE;
        retry_later();
        return;
    }
    const redisReply *r = br->parsed;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 || !is(r->element[0], "pmessage")) return;
    const redisReply *key = r->element[3];
    if (key->type == REDIS_REPLY_STRING && on_removed) on_removed(key->str, key->len);
}

static void subscribe(void)
{
    backend *b = server.backend;
    conn = backend_open_dedicated(b);
    if (conn < 0) {
        state = KE_IDLE;
        retry_later();
        return;
    }
    backend_set_push(b, conn, push_cb, NULL);
    char *argv[3] = {"PSUBSCRIBE", "__keyevent@*__:expired", "__keyevent@*__:evicted"};
    size_t lens[3] = {10, strlen(argv[1]), strlen(argv[2])};
    backend_send(b, conn, 0, 3, argv, lens, BACKEND_PARSED, NULL, NULL);
    state = KE_FOLLOWING;
}

static void config_set_cb(void *ctx, const backend_reply *r)
{
    (void)ctx;
    if (r->error || !r->parsed || r->parsed->type == REDIS_REPLY_ERROR) {
        log_warning("the store refused notify-keyspace-events (%s): clients tracking keys are not told of keys it "
                    "expires or evicts", r->error ? r->error : r->parsed ? r->parsed->str : "?");
        state = r->error ? KE_IDLE : KE_REFUSED;
        if (r->error) retry_later();
        return;
    }
    subscribe();
}

/* The store's flags, with the keyevent class and expired and evicted added. */
static void config_get_cb(void *ctx, const backend_reply *r)
{
    (void)ctx;
    const redisReply *p = r->parsed;
    if (r->error) {
        state = KE_IDLE;
        retry_later();
        return;
    }
    if (!p || p->type != REDIS_REPLY_ARRAY || p->elements != 2 || p->element[1]->type != REDIS_REPLY_STRING) {
        /* Before 2.8 no keyspace events: nothing to follow. */
        state = KE_REFUSED;
        return;
    }
    char flags[64];
    size_t n = p->element[1]->len < 48 ? p->element[1]->len : 48;
    memcpy(flags, p->element[1]->str, n);
    flags[n] = '\0';
    int all = strchr(flags, 'A') != NULL;
    size_t had = n;
    if (!strchr(flags, 'E')) flags[n++] = 'E';
    if (!all && !strchr(flags, 'x')) flags[n++] = 'x';
    if (!all && !strchr(flags, 'e')) flags[n++] = 'e';
    flags[n] = '\0';
    if (n == had) {
        subscribe();
        return;
    }
    backend *b = server.backend;
    int c = backend_pick(b, 0);
    char *argv[4] = {"CONFIG", "SET", "notify-keyspace-events", flags};
    size_t lens[4] = {6, 3, 22, n};
    if (c < 0 || backend_send(b, c, 0, 4, argv, lens, BACKEND_PARSED, config_set_cb, NULL) != 0) {
        state = KE_IDLE;
        retry_later();
    }
}

void key_events_want(key_removed_fn *removed)
{
    backend *b = server.backend;
    on_removed = removed;
    /* One Redis store: a pool's or a cluster's stores each have their own. */
    if (stopped || state != KE_IDLE || !b || !b->one_store || !b->has_dedicated || backend_is_memcached(b)) return;
    int c = backend_pick(b, 0);
    char *argv[3] = {"CONFIG", "GET", "notify-keyspace-events"};
    size_t lens[3] = {6, 3, 22};
    if (c < 0 || backend_send(b, c, 0, 3, argv, lens, BACKEND_PARSED, config_get_cb, NULL) != 0) {
        retry_later();
        return;
    }
    state = KE_ASKING;
}

void key_events_stop(void)
{
    stopped = 1;
    if (retry_ev) event_free(retry_ev);
    retry_ev = NULL;
}
