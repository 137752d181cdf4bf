/* Pub/sub: clients subscribe to the proxy, the proxy subscribes once per
 * channel (or pattern) on one subscriber connection to the store and fans
 * each message out to its clients. Many subscribers never mean many store
 * connections. A SUBSCRIBE is answered once the store has confirmed the
 * subscription, so a message published after the reply is never missed.
 *
 * A store without pub/sub (memcached: no connection of the proxy's own to
 * subscribe on) leaves the proxy as the pub/sub server: the same topics
 * and subscribers, with PUBLISH and PUBSUB answered here, from clients,
 * scripts and transactions alike. */
#include "proxy/commands/pubsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "lua/script_engine.h"
#include "proxy/core/config.h"
#include "util/log.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "util/glob.h"

enum { KIND_CHANNEL = 0, KIND_PATTERN = 1, KIND_SHARD = 2, KINDS = 3 };

static const char *const sub_cmd[KINDS] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"};
static const char *const unsub_cmd[KINDS] = {"UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"};
static const char *const sub_word[KINDS] = {"subscribe", "psubscribe", "ssubscribe"};
static const char *const unsub_word[KINDS] = {"unsubscribe", "punsubscribe", "sunsubscribe"};

typedef struct subscribe_wait {
    reply_slot *slot;
    int pending; /* topics of this command not yet confirmed by the store */
} subscribe_wait;

/* A SUBSCRIBE waits for the store to confirm its own subscribe operation:
 * the need-th operation on the topic (whatever follows it). */
typedef struct topic_waiter {
    subscribe_wait *w;
    unsigned need;
} topic_waiter;

typedef struct topic {
    struct topic *hnext;
    int kind;
    size_t len;
    char *name;
    client **subs;
    int nsubs, capsubs;
    unsigned ops_sent, ops_done; /* SUB/UNSUB sent to the store and confirmed */
    int at_store;                /* the last operation sent was a subscribe */
    int fanning;                 /* a message is being delivered: keep the topic */
    topic_waiter *waiters;
    int nwaiters, capwaiters;
    int pattern_index; /* in P.patterns (patterns only) */
} topic;

struct client_pubsub {
    topic **topics[KINDS];
    int count[KINDS], cap[KINDS];
};

static struct {
    topic **buckets;
    size_t nbuckets, count;
    int conn;          /* the subscriber connection, or -1 */
    int dead_conn;     /* a lost one, released from the timer */
    struct event *retry_ev;
    unsigned long long messages, deliveries;
    topic **patterns; /* every pattern topic: PUBLISH looks at these only */
    int npatterns, cappatterns;
} P = {.conn = -1, .dead_conn = -1};

/* The store has no pub/sub of its own (no subscriber connection to be had,
 * as on memcached): the proxy is the pub/sub server. */
static int carried_here(void) { return server.backend && !server.backend->has_dedicated; }

/* ---- topic table ----------------------------------------------------------------- */

static uint64_t topic_hash(int kind, const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static topic *topic_find(int kind, const char *name, size_t len)
{
    if (!P.nbuckets) return NULL;
    for (topic *t = P.buckets[topic_hash(kind, name, len) & (P.nbuckets - 1)]; t; t = t->hnext)
        if (t->kind == kind && t->len == len && !memcmp(t->name, name, len)) return t;
    return NULL;
}

static void table_grow(void)
{
    size_t n = P.nbuckets ? P.nbuckets * 2 : 256;
    topic **b = calloc(n, sizeof(*b));
    if (!b) abort();
    for (size_t i = 0; i < P.nbuckets; i++) {
        topic *t = P.buckets[i];
        while (t) {
            topic *next = t->hnext;
            size_t idx = topic_hash(t->kind, t->name, t->len) & (n - 1);
            t->hnext = b[idx];
            b[idx] = t;
            t = next;
        }
    }
    free(P.buckets);
    P.buckets = b;
    P.nbuckets = n;
}

static topic *topic_get(int kind, const char *name, size_t len)
{
    topic *t = topic_find(kind, name, len);
    if (t) return t;
    if (P.count >= P.nbuckets) table_grow();
    t = calloc(1, sizeof(*t));
    if (!t) abort();
    t->kind = kind;
    t->len = len;
    t->name = malloc(len + 1);
    if (!t->name) abort();
    memcpy(t->name, name, len);
    t->name[len] = '\0';
    size_t idx = topic_hash(kind, name, len) & (P.nbuckets - 1);
    t->hnext = P.buckets[idx];
    P.buckets[idx] = t;
    P.count++;
    if (kind == KIND_PATTERN) {
        if (P.npatterns == P.cappatterns) {
            P.cappatterns = P.cappatterns ? P.cappatterns * 2 : 16;
            P.patterns = realloc(P.patterns, sizeof(*P.patterns) * (size_t)P.cappatterns);
            if (!P.patterns) abort();
        }
        t->pattern_index = P.npatterns;
        P.patterns[P.npatterns++] = t;
    }
    return t;
}

static void topic_free(topic *t)
{
    size_t idx = topic_hash(t->kind, t->name, t->len) & (P.nbuckets - 1);
    topic **pp = &P.buckets[idx];
    while (*pp != t) pp = &(*pp)->hnext;
    *pp = t->hnext;
    P.count--;
    if (t->kind == KIND_PATTERN) {
        topic *last = P.patterns[--P.npatterns];
        P.patterns[t->pattern_index] = last;
        last->pattern_index = t->pattern_index;
    }
    free(t->subs);
    free(t->waiters);
    free(t->name);
    free(t);
}

static void wait_done(subscribe_wait *w)
{
    if (--w->pending == 0) {
        client_slot_done(w->slot);
        free(w);
    }
}

/* Answers the SUBSCRIBEs whose operation the store has confirmed (all of
 * them when everything is released, e.g. the connection is lost). */
static void topic_release_waiters_upto(topic *t, unsigned done, int all)
{
    int keep = 0;
    for (int i = 0; i < t->nwaiters; i++) {
        if (all || t->waiters[i].need <= done) wait_done(t->waiters[i].w);
        else t->waiters[keep++] = t->waiters[i];
    }
    t->nwaiters = keep;
}

static void topic_release_waiters(topic *t) { topic_release_waiters_upto(t, 0, 1); }

static void topic_maybe_free(topic *t)
{
    if (t->nsubs == 0 && t->nwaiters == 0 && t->ops_done == t->ops_sent && !t->at_store && !t->fanning)
        topic_free(t);
}

/* ---- the store side ------------------------------------------------------------ */

static void store_op(topic *t, int subscribe)
{
    if (P.conn < 0) {
        t->at_store = 0;
        return;
    }
    char *argv[2] = {(char *)(subscribe ? sub_cmd[t->kind] : unsub_cmd[t->kind]), t->name};
    size_t lens[2] = {strlen(argv[0]), t->len};
    if (backend_send(server.backend, P.conn, 0, 2, argv, lens, BACKEND_PARSED, NULL, NULL) != 0) {
        t->at_store = 0;
        return;
    }
    t->ops_sent++;
    t->at_store = subscribe;
}

static void add_message_header(struct evbuffer *b, int n, const char *word)
{
    reply_array(b, n);
    reply_bulk_cstr(b, word);
}

static void fanout(topic *t, struct evbuffer *msg)
{
    size_t len = evbuffer_get_length(msg);
    const unsigned char *bytes = evbuffer_pullup(msg, -1);
    /* Backwards: a subscriber closed for its output limit is swapped out of
     * the array with one already served, so nobody is skipped. */
    t->fanning++;
    for (int i = t->nsubs - 1; i >= 0; i--) {
        if (i >= t->nsubs) continue;
        client *c = t->subs[i];
        if (c->flags & CLIENT_CLOSING) continue;
        struct evbuffer *out = client_push_buffer(c);
        if (c->resp == 3) {
            /* The same message as a RESP3 push: only its type byte differs. */
            evbuffer_add(out, ">", 1);
            evbuffer_add(out, bytes + 1, len - 1);
        } else {
            evbuffer_add(out, bytes, len);
        }
        P.deliveries++;
        client_output_written(c);
    }
    t->fanning--;
    topic_maybe_free(t);
}

static int element_is(const redisReply *r, const char *word)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(word) && !strncasecmp(r->str, word, r->len);
}

static void schedule_reconnect(void);

/* PUBLISH replies held until the proxy's subscriber connection has passed
 * on what the store sent it before: Redis hands a message to its
 * subscribers before it answers the publisher, but here the two come on
 * different connections. A PING on the subscriber connection, answered
 * after the message, says when (answers come in order). */
typedef struct publish_sync {
    struct publish_sync *next;
    reply_slot *slot;
} publish_sync;
static publish_sync *sync_head, *sync_tail;

static int publish_sync_start(reply_slot *s)
{
    char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    if (P.conn < 0 || backend_send(server.backend, P.conn, 0, 1, argv, lens, BACKEND_PARSED, NULL, NULL) != 0)
        return 0;
    publish_sync *ps = calloc(1, sizeof(*ps));
    if (!ps) abort();
    ps->slot = s;
    if (sync_tail) sync_tail->next = ps;
    else sync_head = ps;
    sync_tail = ps;
    return 1;
}

int pubsub_hold_after_publish(reply_slot *s)
{
    if (carried_here() || P.count == 0) return 0; /* no subscriber of the proxy's to wait for */
    return publish_sync_start(s);
}

/* The oldest held reply goes (all of them: the connection is gone). */
static void publish_sync_release(int all)
{
    while (sync_head) {
        publish_sync *ps = sync_head;
        sync_head = ps->next;
        if (!sync_head) sync_tail = NULL;
        client_slot_done(ps->slot);
        free(ps);
        if (!all) break;
    }
}

/* The PING's answer; a release that refuses PING while subscribed (before
 * 2.8) answers with an error, in the same place. */
static int is_pong(const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) return 1;
    if (r->type == REDIS_REPLY_STATUS) return r->len == 4 && !strncasecmp(r->str, "pong", 4);
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 && element_is(r->element[0], "pong");
}

static void push_cb(void *ctx, const backend_reply *br)
{
    (void)ctx;
    if (br->error) {
        publish_sync_release(1);
        log_warning("pub/sub connection to the store lost: %s", br->error);
        P.dead_conn = P.conn;
        P.conn = -1;
        for (size_t i = 0; i < P.nbuckets; i++)
            for (topic *t = P.buckets[i]; t; t = t->hnext) {
                t->at_store = 0;
                t->ops_sent = t->ops_done = 0;
                topic_release_waiters(t);
            }
        schedule_reconnect();
        return;
    }
    const redisReply *r = br->parsed;
    if (r && is_pong(r)) {
        publish_sync_release(0);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    const redisReply *w = r->element[0];
    int kind = -1;
    if (element_is(w, "message")) kind = KIND_CHANNEL;
    else if (element_is(w, "smessage")) kind = KIND_SHARD;
    if (kind >= 0) {
        const redisReply *ch = r->element[1], *payload = r->element[2];
        topic *t = topic_find(kind, ch->str, ch->len);
        P.messages++;
        if (!t || !t->nsubs) return;
        struct evbuffer *msg = evbuffer_new();
        add_message_header(msg, 3, kind == KIND_CHANNEL ? "message" : "smessage");
        reply_bulk(msg, ch->str, ch->len);
        reply_bulk(msg, payload->str, payload->len);
        fanout(t, msg);
        evbuffer_free(msg);
        return;
    }
    if (element_is(w, "pmessage") && r->elements == 4) {
        const redisReply *pat = r->element[1], *ch = r->element[2], *payload = r->element[3];
        topic *t = topic_find(KIND_PATTERN, pat->str, pat->len);
        P.messages++;
        if (!t || !t->nsubs) return;
        struct evbuffer *msg = evbuffer_new();
        add_message_header(msg, 4, "pmessage");
        reply_bulk(msg, pat->str, pat->len);
        reply_bulk(msg, ch->str, ch->len);
        reply_bulk(msg, payload->str, payload->len);
        fanout(t, msg);
        evbuffer_free(msg);
        return;
    }
    for (int k = 0; k < KINDS; k++) {
        int sub = element_is(w, sub_word[k]);
        if (!sub && !element_is(w, unsub_word[k])) continue;
        const redisReply *name = r->element[1];
        if (name->type != REDIS_REPLY_STRING) return;
        topic *t = topic_find(k, name->str, name->len);
        if (!t) return;
        if (t->ops_done < t->ops_sent) t->ops_done++;
        topic_release_waiters_upto(t, t->ops_done, 0);
        topic_maybe_free(t);
        return;
    }
}

static void open_conn(void)
{
    if (P.conn >= 0) return;
    int conn = backend_open_dedicated(server.backend);
    if (conn < 0) {
        schedule_reconnect();
        return;
    }
    P.conn = conn;
    backend_set_push(server.backend, conn, push_cb, NULL);
    for (size_t i = 0; i < P.nbuckets; i++)
        for (topic *t = P.buckets[i]; t; t = t->hnext)
            if (t->nsubs) store_op(t, 1);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (P.dead_conn >= 0) {
        backend_release_dedicated(server.backend, P.dead_conn, 0);
        P.dead_conn = -1;
    }
    int any = 0;
    for (size_t i = 0; i < P.nbuckets && !any; i++)
        for (topic *t = P.buckets[i]; t; t = t->hnext)
            if (t->nsubs) any = 1;
    if (any) open_conn();
}

static void schedule_reconnect(void)
{
    if (!P.retry_ev) P.retry_ev = evtimer_new(server.base, retry_cb, NULL);
    struct timeval tv = {0, 250000};
    evtimer_add(P.retry_ev, &tv);
}

/* ---- clients ------------------------------------------------------------------- */

static struct client_pubsub *client_ps(client *c)
{
    if (!c->pubsub) {
        c->pubsub = calloc(1, sizeof(*c->pubsub));
        if (!c->pubsub) abort();
    }
    return c->pubsub;
}

int pubsub_client_topics_pass(const client *c, int (*ok)(void *ctx, const char *name, size_t len, int is_pattern),
                              void *ctx)
{
    if (!c->pubsub) return 1;
    for (int k = 0; k < KINDS; k++)
        for (int i = 0; i < c->pubsub->count[k]; i++) {
            const topic *t = c->pubsub->topics[k][i];
            if (!ok(ctx, t->name, t->len, k == KIND_PATTERN)) return 0;
        }
    return 1;
}

int pubsub_count(const client *c, int shard)
{
    if (!c->pubsub) return 0;
    if (shard) return c->pubsub->count[KIND_SHARD];
    return c->pubsub->count[KIND_CHANNEL] + c->pubsub->count[KIND_PATTERN];
}

int pubsub_count_kind(const client *c, int kind) { return c->pubsub ? c->pubsub->count[kind] : 0; }

int pubsub_subscribed(const client *c)
{
    return c->pubsub &&
           (c->pubsub->count[KIND_CHANNEL] + c->pubsub->count[KIND_PATTERN] + c->pubsub->count[KIND_SHARD]) > 0;
}

static int client_has(struct client_pubsub *ps, topic *t)
{
    for (int i = 0; i < ps->count[t->kind]; i++)
        if (ps->topics[t->kind][i] == t) return 1;
    return 0;
}

static void subscribe_one(client *c, topic *t)
{
    struct client_pubsub *ps = client_ps(c);
    int k = t->kind;
    if (ps->count[k] == ps->cap[k]) {
        ps->cap[k] = ps->cap[k] ? ps->cap[k] * 2 : 4;
        ps->topics[k] = realloc(ps->topics[k], sizeof(topic *) * (size_t)ps->cap[k]);
        if (!ps->topics[k]) abort();
    }
    ps->topics[k][ps->count[k]++] = t;
    c->subscriptions[k] = ps->count[k];
    if (t->nsubs == t->capsubs) {
        t->capsubs = t->capsubs ? t->capsubs * 2 : 4;
        t->subs = realloc(t->subs, sizeof(client *) * (size_t)t->capsubs);
        if (!t->subs) abort();
    }
    t->subs[t->nsubs++] = c;
    if (!t->at_store && !carried_here()) {
        if (P.conn < 0) open_conn();
        else store_op(t, 1);
    }
}

static void unsubscribe_one(client *c, topic *t)
{
    struct client_pubsub *ps = c->pubsub;
    int k = t->kind;
    for (int i = 0; i < ps->count[k]; i++)
        if (ps->topics[k][i] == t) {
            ps->topics[k][i] = ps->topics[k][--ps->count[k]];
            c->subscriptions[k] = ps->count[k];
            break;
        }
    for (int i = 0; i < t->nsubs; i++)
        if (t->subs[i] == c) {
            t->subs[i] = t->subs[--t->nsubs];
            break;
        }
    if (t->nsubs == 0) {
        if (t->at_store) store_op(t, 0);
        topic_maybe_free(t);
    }
}

/* Subscription events are pushes: '>' for a RESP3 client. */
static void push_header(struct evbuffer *out, const client *c, int n)
{
    if (c->resp == 3) evbuffer_add_printf(out, ">%d\r\n", n);
    else reply_array(out, n);
}

static void reply_sub_event(struct evbuffer *out, const client *c, const char *word, const topic *t, const char *name,
                            size_t len, int count)
{
    push_header(out, c, 3);
    reply_bulk_cstr(out, word);
    if (t) reply_bulk(out, t->name, t->len);
    else if (name) reply_bulk(out, name, len);
    else if (c->resp == 3) evbuffer_add(out, "_\r\n", 3);
    else reply_null_bulk(out);
    reply_integer(out, count);
}

static void subscribe_command(client *c, int kind, int argc, char **argv, size_t *argvlen)
{
    reply_slot *s = client_slot_add(c);
    s->discard = 0; /* confirmations are pushes: CLIENT REPLY OFF/SKIP keep them */
    s->shape = NULL;  /* written in the client's protocol */
    subscribe_wait *w = calloc(1, sizeof(*w));
    if (!w) abort();
    w->slot = s;
    w->pending = 1; /* held until every topic is looked at */
    for (int i = 1; i < argc; i++) {
        topic *t = topic_get(kind, argv[i], argvlen[i]);
        if (!client_has(client_ps(c), t)) subscribe_one(c, t);
        reply_sub_event(s->buf, c, sub_word[kind], t, NULL, 0, pubsub_count(c, kind == KIND_SHARD));
        if (t->at_store && t->ops_done < t->ops_sent && P.conn >= 0) {
            if (t->nwaiters == t->capwaiters) {
                t->capwaiters = t->capwaiters ? t->capwaiters * 2 : 4;
                t->waiters = realloc(t->waiters, sizeof(*t->waiters) * (size_t)t->capwaiters);
                if (!t->waiters) abort();
            }
            t->waiters[t->nwaiters].w = w;
            t->waiters[t->nwaiters].need = t->ops_sent; /* the subscribe just sent (or in flight) */
            t->nwaiters++;
            w->pending++;
        }
    }
    wait_done(w);
}

static void unsubscribe_command(client *c, int kind, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_push_buffer(c); /* pushes, as the confirmations of SUBSCRIBE */
    struct client_pubsub *ps = c->pubsub;
    int shard = kind == KIND_SHARD;
    if (argc == 1) {
        if (!ps || ps->count[kind] == 0) {
            reply_sub_event(out, c, unsub_word[kind], NULL, NULL, 0, pubsub_count(c, shard));
            return;
        }
        while (ps->count[kind]) {
            topic *t = ps->topics[kind][0];
            /* Reply before the topic may be freed. */
            char *name = t->name;
            size_t len = t->len;
            push_header(out, c, 3);
            reply_bulk_cstr(out, unsub_word[kind]);
            reply_bulk(out, name, len);
            unsubscribe_one(c, t);
            reply_integer(out, pubsub_count(c, shard));
        }
        return;
    }
    for (int i = 1; i < argc; i++) {
        topic *t = topic_find(kind, argv[i], argvlen[i]);
        if (t && ps && client_has(ps, t)) unsubscribe_one(c, t);
        reply_sub_event(out, c, unsub_word[kind], NULL, argv[i], argvlen[i], pubsub_count(c, shard));
    }
}

void cmd_subscribe(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int kind = !strcmp(cmd->name, "psubscribe") ? KIND_PATTERN : !strcmp(cmd->name, "ssubscribe") ? KIND_SHARD
                                                                                                   : KIND_CHANNEL;
    subscribe_command(c, kind, argc, argv, argvlen);
}

void cmd_unsubscribe(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int kind = !strcmp(cmd->name, "punsubscribe") ? KIND_PATTERN : !strcmp(cmd->name, "sunsubscribe") ? KIND_SHARD
                                                                                                       : KIND_CHANNEL;
    unsubscribe_command(c, kind, argc, argv, argvlen);
}

void pubsub_client_gone(client *c)
{
    struct client_pubsub *ps = c->pubsub;
    if (!ps) return;
    for (int k = 0; k < KINDS; k++) {
        while (ps->count[k]) unsubscribe_one(c, ps->topics[k][0]);
        free(ps->topics[k]);
    }
    free(ps);
    c->pubsub = NULL;
}

/* ---- PUBLISH and PUBSUB NUMSUB: counts as if every client were the store's ------- */

/* A topic counts through the proxy once the store has confirmed its
 * subscription: before that, a message published at the store would not
 * reach its clients, so counting them would promise a delivery that never
 * comes. Meanwhile the store's own count stands as it is (it includes the
 * proxy's connection exactly when the store has already subscribed it). */
static int topic_settled(const topic *t) { return t && t->at_store && t->ops_done == t->ops_sent; }

/* Receivers through the proxy, and how many of the store's count are the
 * proxy's own subscriber connection. */
static void local_receivers(int kind, const char *ch, size_t len, long long *clients, long long *store_side)
{
    *clients = 0;
    *store_side = 0;
    topic *t = topic_find(kind, ch, len);
    if (topic_settled(t)) {
        *clients += t->nsubs;
        *store_side += 1;
    }
    if (kind != KIND_CHANNEL) return;
    for (int i = 0; i < P.npatterns; i++) {
        topic *p = P.patterns[i];
        if (!topic_settled(p) || !glob_match(p->name, p->len, ch, len, 0)) continue;
        *clients += p->nsubs;
        *store_side += 1;
    }
}

typedef struct count_fix {
    reply_slot *slot;
    int kind;
    int is_numsub;
    char **names;
    size_t *lens;
    int n;
} count_fix;

static void count_fix_cb(void *ctx, const backend_reply *br)
{
    count_fix *f = ctx;
    reply_slot *s = f->slot;
    const redisReply *r = br->parsed;
    if (br->error) {
        reply_error(s->buf, br->error);
    } else if (!f->is_numsub && r && r->type == REDIS_REPLY_INTEGER) {
        long long clients, store_side;
        local_receivers(f->kind, f->names[0], f->lens[0], &clients, &store_side);
        long long n = r->integer - store_side;
        reply_integer(s->buf, (n < 0 ? 0 : n) + clients);
        if (clients && publish_sync_start(s)) {
            free(f->names);
            free(f);
            return;
        }
    } else if (f->is_numsub && r && r->type == REDIS_REPLY_ARRAY) {
        reply_array(s->buf, (long long)r->elements);
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *name = r->element[i], *num = r->element[i + 1];
            reply_bulk(s->buf, name->str, name->len);
            topic *t = topic_find(f->kind, name->str, name->len);
            int settled = topic_settled(t);
            long long n = num->integer - settled;
            reply_integer(s->buf, (n < 0 ? 0 : n) + (settled ? t->nsubs : 0));
        }
    } else {
        evbuffer_remove_buffer(br->raw, s->buf, br->raw_len);
    }
    free(f->names);
    free(f);
    client_slot_done(s);
}

static void relay_with_count_fix(client *c, int kind, int is_numsub, int argc, char **argv, size_t *argvlen,
                                 int first_name)
{
    backend *b = server.backend;
    int conn = client_shared_conn(c);
    if (conn < 0) {
        reply_error(client_reply_buffer(c), backend_error(b));
        return;
    }
    count_fix *f = calloc(1, sizeof(*f));
    if (!f) abort();
    int n = argc - first_name;
    /* The names are needed when the reply comes: keep a copy. */
    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += argvlen[first_name + i] + 1;
    char *block = malloc((size_t)n * (sizeof(char *) + sizeof(size_t)) + bytes + 1);
    if (!block) abort();
    f->names = (char **)block;
    f->lens = (size_t *)(block + (size_t)n * sizeof(char *));
    char *data = block + (size_t)n * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < n; i++) {
        memcpy(data, argv[first_name + i], argvlen[first_name + i]);
        f->names[i] = data;
        f->lens[i] = argvlen[first_name + i];
        data += f->lens[i] + 1;
    }
    f->n = n;
    f->kind = kind;
    f->is_numsub = is_numsub;
    f->slot = client_slot_add(c);
    if (backend_send(b, conn, c->db, argc, argv, argvlen, BACKEND_PARSED, count_fix_cb, f) != 0) {
        reply_error(f->slot->buf, backend_error(b));
        client_slot_done(f->slot);
        free(f->names);
        free(f);
    }
}

/* ---- the proxy as the pub/sub server (stores without pub/sub) ----------------- */

/* Delivers a message as Redis does: the channel's subscribers first, then
 * every matching pattern's (shard channels have no patterns). Returns the
 * receivers, counted as Redis counts them. */
static long long publish_here(int kind, const char *ch, size_t chlen, const char *msg, size_t msglen)
{
    topic *stack[16], **hit = stack;
    int nhit = 0, caphit = 16;
    topic *t = topic_find(kind, ch, chlen);
    if (t && t->nsubs) hit[nhit++] = t;
    for (int i = 0; kind == KIND_CHANNEL && i < P.npatterns; i++) {
        topic *p = P.patterns[i];
        if (!p->nsubs || !glob_match(p->name, p->len, ch, chlen, 0)) continue;
        if (nhit == caphit) {
            caphit *= 2;
            topic **n = malloc(sizeof(*n) * (size_t)caphit);
            if (!n) abort();
            memcpy(n, hit, sizeof(*n) * (size_t)nhit);
            if (hit != stack) free(hit);
            hit = n;
        }
        hit[nhit++] = p;
    }
    P.messages++;
    /* Counted and pinned before any delivery: a subscriber closed for its
     * output limit leaves its topics, which must outlive this loop. */
    long long receivers = 0;
    for (int i = 0; i < nhit; i++) {
        receivers += hit[i]->nsubs;
        hit[i]->fanning++;
    }
    struct evbuffer *m = evbuffer_new();
    for (int i = 0; i < nhit; i++) {
        topic *h = hit[i];
        if (h->kind == KIND_PATTERN) {
            add_message_header(m, 4, "pmessage");
            reply_bulk(m, h->name, h->len);
        } else {
            add_message_header(m, 3, kind == KIND_SHARD ? "smessage" : "message");
        }
        reply_bulk(m, ch, chlen);
        reply_bulk(m, msg, msglen);
        fanout(h, m);
        evbuffer_drain(m, evbuffer_get_length(m));
    }
    evbuffer_free(m);
    for (int i = 0; i < nhit; i++) {
        hit[i]->fanning--;
        topic_maybe_free(hit[i]);
    }
    if (hit != stack) free(hit);
    return receivers;
}

static void add_channel_list(struct evbuffer *out, int kind, const char *pat, size_t patlen)
{
    struct evbuffer *names = evbuffer_new();
    long long n = 0;
    for (size_t i = 0; i < P.nbuckets; i++)
        for (topic *t = P.buckets[i]; t; t = t->hnext) {
            if (t->kind != kind || !t->nsubs || (pat && !glob_match(pat, patlen, t->name, t->len, 0))) continue;
            reply_bulk(names, t->name, t->len);
            n++;
        }
    reply_array(out, n);
    evbuffer_add_buffer(out, names);
    evbuffer_free(names);
}

static const char *const pubsub_help[] = {
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
    NULL,
};

/* PUBSUB <subcommand> (argc >= 2, arity checked) from the proxy's topics. */
static void pubsub_command_here(const command_def *cmd, int argc, char **argv, size_t *argvlen,
                                struct evbuffer *out)
{
    const char *sub = strchr(cmd->name, '|');
    sub = sub ? sub + 1 : "";
    int shard = !strncmp(sub, "shard", 5);
    if (!strcmp(sub, "help")) {
        long long n = 0;
        while (pubsub_help[n]) n++;
        reply_array(out, n);
        for (long long i = 0; i < n; i++) reply_status(out, pubsub_help[i]);
    } else if ((!strcmp(sub, "channels") || !strcmp(sub, "shardchannels")) && argc <= 3) {
        add_channel_list(out, shard ? KIND_SHARD : KIND_CHANNEL, argc == 3 ? argv[2] : NULL,
                         argc == 3 ? argvlen[2] : 0);
    } else if (!strcmp(sub, "numsub") || !strcmp(sub, "shardnumsub")) {
        reply_array(out, 2LL * (argc - 2));
        for (int i = 2; i < argc; i++) {
            topic *t = topic_find(shard ? KIND_SHARD : KIND_CHANNEL, argv[i], argvlen[i]);
            reply_bulk(out, argv[i], argvlen[i]);
            reply_integer(out, t ? t->nsubs : 0);
        }
    } else if (!strcmp(sub, "numpat")) {
        long long n = 0;
        for (int i = 0; i < P.npatterns; i++) n += P.patterns[i]->nsubs > 0;
        reply_integer(out, n);
    } else {
        reply_errorf(out, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try PUBSUB HELP.",
                     argv[1]);
    }
}

static int is_publish(const command_def *cmd)
{
    return !strcmp(cmd->name, "publish") || !strcmp(cmd->name, "spublish");
}

int pubsub_carried_here(const command_def *cmd)
{
    return carried_here() && (is_publish(cmd) || !strncmp(cmd->name, "pubsub|", 7));
}

int pubsub_run_here(const command_def *cmd, int argc, char **argv, size_t *argvlen, struct evbuffer *out)
{
    if (!pubsub_carried_here(cmd)) return 0;
    if (is_publish(cmd)) {
        int kind = cmd->name[0] == 's' ? KIND_SHARD : KIND_CHANNEL;
        reply_integer(out, publish_here(kind, argv[1], argvlen[1], argv[2], argvlen[2]));
        return 1;
    }
    pubsub_command_here(cmd, argc, argv, argvlen, out);
    return 1;
}

int pubsub_script_call(struct script_run *run, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!pubsub_carried_here(cmd)) return 0;
    struct evbuffer *r = evbuffer_new();
    pubsub_run_here(cmd, argc, argv, argvlen, r);
    size_t len = evbuffer_get_length(r);
    script_run_reply_raw(run, (const char *)evbuffer_pullup(r, -1), len);
    evbuffer_free(r);
    return 1;
}

/* A client's PUBLISH goes out once the commands it sent before have taken
 * effect at the store, as Redis orders them: a subscriber that reads a key
 * on the message sees what the publisher wrote first. A no-op behind them
 * on the client's store connection says when. */
typedef struct publish_wait {
    reply_slot *slot;
    int kind;
    size_t chlen, msglen;
    char data[]; /* the channel, then the message */
} publish_wait;

static void publish_wait_cb(void *ctx, const backend_reply *br)
{
    (void)br; /* a failed store connection still lets the message go */
    publish_wait *w = ctx;
    reply_integer(w->slot->buf, publish_here(w->kind, w->data, w->chlen, w->data + w->chlen, w->msglen));
    client_slot_done(w->slot);
    free(w);
}

static void publish_in_order(client *c, int kind, char **argv, size_t *argvlen)
{
    publish_wait *w = malloc(sizeof(*w) + argvlen[1] + argvlen[2] + 1);
    if (!w) abort();
    w->kind = kind;
    w->chlen = argvlen[1];
    w->msglen = argvlen[2];
    memcpy(w->data, argv[1], argvlen[1]);
    memcpy(w->data + argvlen[1], argv[2], argvlen[2]);
    w->slot = client_slot_add(c);
    char *pv[1] = {"PING"};
    size_t pl[1] = {4};
    int conn = client_shared_conn(c);
    if (conn < 0 ||
        backend_send_for(server.backend, conn, c->db, c->id, 1, pv, pl, BACKEND_RAW, publish_wait_cb, w) != 0)
        publish_wait_cb(w, NULL);
}

/* ---- commands ------------------------------------------------------------------ */

void cmd_publish(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int kind = !strcmp(cmd->name, "spublish") ? KIND_SHARD : KIND_CHANNEL;
    if (carried_here()) publish_in_order(c, kind, argv, argvlen);
    else relay_with_count_fix(c, kind, 0, argc, argv, argvlen, 1);
}

void cmd_pubsub(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (pubsub_run_here(cmd, argc, argv, argvlen, client_reply_buffer(c))) return;
    if (backend_store_has_command(server.backend, cmd->name, strlen(cmd->name)) == 0) {
        /* An older store without it (PUBSUB came in 2.8, the shard ones in
         * 7.0): the proxy's own clients' subscriptions answer. */
        pubsub_command_here(cmd, argc, argv, argvlen, client_reply_buffer(c));
        return;
    }
    if (!strcmp(cmd->name, "pubsub|numsub")) relay_with_count_fix(c, KIND_CHANNEL, 1, argc, argv, argvlen, 2);
    else if (!strcmp(cmd->name, "pubsub|shardnumsub")) relay_with_count_fix(c, KIND_SHARD, 1, argc, argv, argvlen, 2);
    else relay_command(c, cmd, argc, argv, argvlen);
}

void pubsub_info(struct evbuffer *out)
{
    /* "none": the store has no pub/sub and the proxy carries it alone. */
    evbuffer_add_printf(out, "pubsub_topics:%zu\r\npubsub_store_connection:%s\r\npubsub_messages:%llu\r\n"
                             "pubsub_deliveries:%llu\r\n",
                        P.count, carried_here() ? "none" : P.conn >= 0 ? "up" : "down", P.messages,
                        P.deliveries);
}

/* INFO stats' counts: topics the proxy's clients are subscribed to. */
void pubsub_stats_info(struct evbuffer *out)
{
    size_t n[KINDS] = {0, 0, 0};
    for (size_t i = 0; i < P.nbuckets; i++)
        for (topic *t = P.buckets[i]; t; t = t->hnext)
            if (t->nsubs) n[t->kind]++;
    evbuffer_add_printf(out, "pubsub_channels:%zu\r\npubsub_patterns:%zu\r\npubsubshard_channels:%zu\r\n",
                        n[KIND_CHANNEL], n[KIND_PATTERN], n[KIND_SHARD]);
}

void pubsub_shutdown(void)
{
    if (P.retry_ev) event_free(P.retry_ev);
    P.retry_ev = NULL;
    for (size_t i = 0; i < P.nbuckets; i++) {
        topic *t = P.buckets[i];
        while (t) {
            topic *next = t->hnext;
            for (int w = 0; w < t->nwaiters; w++) wait_done(t->waiters[w].w); /* frees the orphaned slot */
            free(t->subs);
            free(t->waiters);
            free(t->name);
            free(t);
            t = next;
        }
    }
    free(P.buckets);
    P.buckets = NULL;
    P.nbuckets = P.count = 0;
    free(P.patterns);
    P.patterns = NULL;
    P.npatterns = P.cappatterns = 0;
}
