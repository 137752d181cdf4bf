/* Redis Cluster as the store: the router's placement is the cluster's
 * slot map, learnt with CLUSTER SLOTS from any node, refreshed on a timer
 * and whenever a node answers MOVED. Each routed command follows MOVED
 * (the map is corrected at once) and ASK (ASKING, then the command, on the
 * same connection), waits out TRYAGAIN and CLUSTERDOWN, and is sent again
 * when the owner's connection was not there to take it (a failover in
 * progress), so a client sees the cluster change only as a short delay. */
#include "backends/cluster_map.h"
#include "backends/conn.h"
#include "backends/router_int.h"
#include "backends/store.h"
#include "util/args.h"
#include "util/log.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#define REDIRECTS_MAX 8
#define RETRY_MS 50
#define RETRY_FOR_MS 6000 /* a failover takes a few node timeouts */
/* A slot being migrated answers TRYAGAIN to a multi-key command until its
 * last key has moved: that lasts as long as the operator's migration does. */
#define TRYAGAIN_FOR_MS 60000

typedef struct cluster_state {
    char scheme[16];       /* redis, rediss */
    char *credentials;     /* "user:pass@" or "" */
    int connections;
    store_tls_options tls; /* a copy: nodes are added as the cluster shows them */
    int has_tls;
    int16_t slot_store[CLUSTER_SLOT_COUNT]; /* store index per slot, -1 not served */
    char *is_master;       /* per store: a master in the last map */
    int known;             /* a map was read */
    int refreshing;
    long long last_refresh_ms;
    long long refresh_ms;
    struct event *refresh_ev;
    unsigned long long refreshes, moved, asked, retried;
    int served;            /* slots with an owner */
    /* Per slot, until when it counts as in mid-migration (an ASK or a
     * TRYAGAIN was seen): multi-key commands over it are split key by key,
     * since each key answers where it is while the slot as a whole cannot. */
    long long *migrating_until_ms;
} cluster_state;

#define MIGRATING_FOR_MS 2000

int backend_url_is_cluster(const char *url)
{
    return url && (!strncasecmp(url, "redis-cluster://", 16) || !strncasecmp(url, "rediss-cluster://", 17));
}

/* ---- stores by address ---------------------------------------------------------- */

static int store_for(router *r, const char *host, int port)
{
    char name[300];
    if (strchr(host, ':')) snprintf(name, sizeof(name), "[%s]:%d", host, port);
    else snprintf(name, sizeof(name), "%s:%d", host, port);
    for (int i = 0; i < r->nstores; i++)
        if (!strcasecmp(r->stores[i].name, name)) return i;
    cluster_state *cs = r->placement_state;
    char url[600], err[256];
    if (strchr(host, ':')) snprintf(url, sizeof(url), "%s://%s[%s]:%d", cs->scheme, cs->credentials, host, port);
    else snprintf(url, sizeof(url), "%s://%s%s:%d", cs->scheme, cs->credentials, host, port);
    backend *b = backend_create(r->evb, url, cs->connections, 1, cs->has_tls ? &cs->tls : NULL, err, sizeof(err));
    if (!b) {
        log_warning("backend cluster: node %s: %s", name, err);
        return -1;
    }
    int idx = router_add_store(r, b, name);
    char *m = realloc(cs->is_master, (size_t)r->nstores);
    if (!m) abort();
    cs->is_master = m;
    cs->is_master[idx] = 0;
    log_verbose("backend cluster: node %s added", name);
    return idx;
}

/* The host of a store's "host:port" name (brackets of IPv6 removed). */
static void store_host(router *r, int store, char *buf, size_t len)
{
    const char *name = r->stores[store].name;
    const char *colon = strrchr(name, ':');
    size_t n = colon ? (size_t)(colon - name) : strlen(name);
    if (n >= 2 && name[0] == '[') {
        name++;
        n -= 2;
    }
    snprintf(buf, len, "%.*s", (int)n, name);
}

/* ---- the slot map ------------------------------------------------------------------ */

static void refresh_soon(router *r, long long after_ms);

typedef struct refresh_ctx {
    router *r;
    int store;
} refresh_ctx;

static void apply_map(router *r, const cluster_map *m, int from)
{
    cluster_state *cs = r->placement_state;
    int *node_store = malloc(sizeof(int) * (size_t)(m->nnodes ? m->nnodes : 1));
    if (!node_store) abort();
    for (int i = 0; i < m->nmasters; i++) node_store[i] = store_for(r, m->nodes[i].host, m->nodes[i].port);
    memset(cs->is_master, 0, (size_t)r->nstores);
    for (int i = 0; i < m->nmasters; i++)
        if (node_store[i] >= 0) cs->is_master[node_store[i]] = 1;
    int served = 0, changed = 0;
    for (int s = 0; s < CLUSTER_SLOT_COUNT; s++) {
        int o = m->owner[s] >= 0 && m->owner[s] < m->nmasters ? node_store[m->owner[s]] : -1;
        if (o != cs->slot_store[s]) changed++;
        cs->slot_store[s] = (int16_t)o;
        served += o >= 0;
    }
    if (changed || !cs->known)
        log_notice("backend cluster: slot map from %s: %d masters, %d of %d slots served (%d changed)",
                   r->stores[from].name, m->nmasters, served, CLUSTER_SLOT_COUNT, changed);
    cs->served = served;
    cs->known = 1;
    free(node_store);
}

static void refresh_cb(void *ctx, const backend_reply *br)
{
    refresh_ctx *rc = ctx;
    router *r = rc->r;
    cluster_state *cs = r->placement_state;
    cs->refreshing = 0;
    cluster_map m;
    char err[200], host[256];
    int ok = 0;
    if (br->error) {
        log_verbose("backend cluster: CLUSTER SLOTS from %s: %s", r->stores[rc->store].name, br->error);
    } else if (br->parsed && br->parsed->type == REDIS_REPLY_ERROR) {
        log_warning("backend cluster: CLUSTER SLOTS from %s: %s", r->stores[rc->store].name, br->parsed->str);
    } else if (store_host(r, rc->store, host, sizeof(host)),
               cluster_map_from_slots(br->parsed, host, &m, err, sizeof(err)) != 0) {
        log_warning("backend cluster: CLUSTER SLOTS from %s: %s", r->stores[rc->store].name, err);
    } else {
        apply_map(r, &m, rc->store);
        cluster_map_free(&m);
        ok = 1;
    }
    free(rc);
    refresh_soon(r, ok && cs->served == CLUSTER_SLOT_COUNT ? cs->refresh_ms : 100);
}

/* Asks a node for the map: masters of the last map first, then any. */
static void refresh_now(router *r)
{
    cluster_state *cs = r->placement_state;
    if (cs->refreshing) return;
    cs->last_refresh_ms = clock_ms();
    static char *argv[2] = {"CLUSTER", "SLOTS"};
    static const size_t lens[2] = {7, 5};
    int start = (int)(cs->refreshes % (unsigned long long)(r->nstores ? r->nstores : 1));
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < r->nstores; k++) {
            int i = (start + k) % r->nstores;
            if (pass == 0 && !cs->is_master[i]) continue;
            int conn = backend_pick(r->stores[i].b, 0);
            if (conn < 0) continue;
            refresh_ctx *rc = malloc(sizeof(*rc));
            if (!rc) abort();
            rc->r = r;
            rc->store = i;
            if (backend_send(r->stores[i].b, conn, 0, 2, argv, lens, BACKEND_PARSED, refresh_cb, rc) == 0) {
                cs->refreshing = 1;
                cs->refreshes++;
                return;
            }
            free(rc);
        }
    refresh_soon(r, 100); /* no node is reachable yet */
}

static void refresh_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refresh_now(arg);
}

static void refresh_soon(router *r, long long after_ms)
{
    cluster_state *cs = r->placement_state;
    struct timeval tv = {after_ms / 1000, (after_ms % 1000) * 1000};
    evtimer_add(cs->refresh_ev, &tv);
}

/* After MOVED or a lost node: soon, but not for every reply. */
static void refresh_after_change(router *r)
{
    cluster_state *cs = r->placement_state;
    if (cs->refreshing) return;
    long long since = clock_ms() - cs->last_refresh_ms;
    refresh_soon(r, since >= 100 ? 0 : 100 - since);
}

/* ---- placement --------------------------------------------------------------------- */

static int cluster_owner(router *r, const char *key, size_t len)
{
    cluster_state *cs = r->placement_state;
    int s = cs->slot_store[cluster_key_slot(key, len)];
    if (s < 0)
        snprintf(r->error, sizeof(r->error),
                 cs->known ? "CLUSTERDOWN Hash slot not served" : "CLUSTERDOWN the slot map is not known yet");
    return s;
}

static int cluster_group(router *r, const char *key, size_t len)
{
    cluster_state *cs = r->placement_state;
    int slot = (int)cluster_key_slot(key, len);
    if (cs->migrating_until_ms[slot] && cs->migrating_until_ms[slot] > clock_ms()) {
        /* A group of its own per key (FNV-1a; equal keys stay together). */
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 16777619u;
        return CLUSTER_SLOT_COUNT + (int)(h & 0x3fffffff);
    }
    return slot;
}

static void mark_migrating(cluster_state *cs, int slot)
{
    if (slot >= 0 && slot < CLUSTER_SLOT_COUNT) cs->migrating_until_ms[slot] = clock_ms() + MIGRATING_FOR_MS;
}

static int cluster_active(router *r, int store)
{
    cluster_state *cs = r->placement_state;
    return cs->is_master[store];
}

static int cluster_keyless(router *r)
{
    cluster_state *cs = r->placement_state;
    /* The same node while it is up: pub/sub and its PINGs stay together. */
    for (int i = 0; i < r->nstores; i++)
        if (cs->is_master[i] && backend_pick(r->stores[i].b, 0) >= 0) return i;
    for (int i = 0; i < r->nstores; i++)
        if (backend_pick(r->stores[i].b, 0) >= 0) return i;
    snprintf(r->error, sizeof(r->error), "CLUSTERDOWN no node of the cluster is reachable");
    return -1;
}

/* ---- sending, with redirections ------------------------------------------------------ */

typedef struct cluster_req {
    router_pending link; /* first */
    router *r;
    int store, conn, db;
    unsigned long long session;
    int mode;
    backend_reply_fn *fn;
    void *ctx;
    int argc;
    char **argv;
    size_t *argvlen;
    int redirects;
    long long first_ms;
    int asking;       /* send ASKING first (an ASK redirection) */
    int asked_last;   /* the last send had ASKING: a TRYAGAIN there is retried with it */
    struct event *retry_ev;
} cluster_req;

static void req_free(cluster_req *q)
{
    router_pending_remove(q->r, &q->link);
    if (q->retry_ev) event_free(q->retry_ev);
    free(q->argv); /* argv, argvlen and the bytes: one block */
    free(q);
}

static int req_send(cluster_req *q);

static void req_drop(router_pending *p) { req_free((cluster_req *)p); }

static void req_fail(cluster_req *q, const char *why)
{
    backend_reply br = {.error = why};
    router_pending_remove(q->r, &q->link); /* its caller may release the connection */
    if (q->fn) q->fn(q->ctx, &br);
    req_free(q);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cluster_req *q = arg;
    if (req_send(q) != 0) {
        router *r = q->r;
        req_fail(q, r->error);
    }
}

static void retry_later(cluster_req *q, long long ms)
{
    cluster_state *cs = q->r->placement_state;
    cs->retried++;
    if (!q->retry_ev) q->retry_ev = evtimer_new(q->r->evb, retry_cb, q);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(q->retry_ev, &tv);
}

static int starts_with(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && !memcmp(s, word, n);
}

static void req_reply_cb(void *ctx, const backend_reply *br)
{
    cluster_req *q = ctx;
    router *r = q->r;
    cluster_state *cs = r->placement_state;
    char head[300];
    size_t hl = 0;
    if (!br->error) {
        if (br->parsed) {
            if (br->parsed->type == REDIS_REPLY_ERROR) {
                hl = br->parsed->len < sizeof(head) - 1 ? br->parsed->len : sizeof(head) - 1;
                memcpy(head, br->parsed->str, hl);
            }
        } else if (br->raw && br->raw_len > 1) {
            size_t n = br->raw_len < sizeof(head) ? br->raw_len : sizeof(head);
            evbuffer_copyout(br->raw, head, n);
            if (head[0] == '-') {
                const char *eol = memchr(head, '\r', n);
                hl = eol ? (size_t)(eol - head - 1) : 0;
                memmove(head, head + 1, hl);
            }
        }
    }
    head[hl] = '\0';
    int slot, port;
    char host[256];
    int kind = hl ? cluster_redirect_parse(head, hl, &slot, host, sizeof(host), &port) : CLUSTER_REDIRECT_NONE;
    if (kind != CLUSTER_REDIRECT_NONE && q->redirects < REDIRECTS_MAX) {
        /* A node that does not know the target's address: the same host. */
        if (!host[0] || !strcmp(host, "?")) store_host(r, q->store, host, sizeof(host));
        int to = store_for(r, host, port);
        if (to >= 0) {
            q->redirects++;
            q->store = to;
            if (kind == CLUSTER_REDIRECT_MOVED) {
                cs->moved++;
                if (slot >= 0 && slot < CLUSTER_SLOT_COUNT) {
                    cs->slot_store[slot] = (int16_t)to;
                    cs->is_master[to] = 1;
                }
                refresh_after_change(r);
            } else {
                cs->asked++;
                q->asking = 1;
                mark_migrating(cs, slot);
            }
            if (req_send(q) != 0) req_fail(q, r->error);
            return;
        }
    }
    if (hl && (starts_with(head, hl, "TRYAGAIN") || starts_with(head, hl, "CLUSTERDOWN")) &&
        clock_ms() - q->first_ms < (head[0] == 'T' ? TRYAGAIN_FOR_MS : RETRY_FOR_MS)) {
        if (head[0] == 'T' && q->argc > 2 && router_command_splits(q->argv[0], q->argvlen[0])) {
            /* Keys on both sides of a migration: sent again, key by key. */
            mark_migrating(cs, (int)cluster_key_slot(q->argv[1], q->argvlen[1]));
            cs->retried++;
            if (r->base.ops->send(&r->base, q->conn, q->db, q->session, q->argc, q->argv, q->argvlen, q->mode,
                                  q->fn, q->ctx) != 0)
                req_fail(q, r->error);
            else
                req_free(q);
            return;
        }
        /* A migration moving this command's keys, or a failover: wait. */
        if (head[0] == 'C') refresh_after_change(r);
        q->asking = head[0] == 'T' && q->asked_last;
        retry_later(q, head[0] == 'T' ? 20 : 100);
        return;
    }
    router_pending_remove(r, &q->link); /* its caller may release the connection */
    if (q->fn) q->fn(q->ctx, br);
    req_free(q);
}

/* 0: sent, or waiting to be; -1: refused now (r->error). */
static int req_send(cluster_req *q)
{
    router *r = q->r;
    int c = router_child_conn(r, q->store, q->conn);
    if (c < 0) {
        /* The owner is down: after a failover the map names another. */
        if (clock_ms() - q->first_ms >= RETRY_FOR_MS) return -1;
        refresh_after_change(r);
        retry_later(q, RETRY_MS);
        return 0;
    }
    backend *b = r->stores[q->store].b;
    r->stores[q->store].requests++;
    q->asked_last = q->asking;
    if (q->asking) {
        static char *asking[1] = {"ASKING"};
        static const size_t asking_len[1] = {6};
        q->asking = 0;
        if (b->ops->send(b, c, q->db, q->session, 1, asking, asking_len, BACKEND_RAW, NULL, NULL) != 0) {
            snprintf(r->error, sizeof(r->error), "%s", backend_error(b));
            return -1;
        }
    }
    if (b->ops->send(b, c, q->db, q->session, q->argc, q->argv, q->argvlen, q->mode, req_reply_cb, q) != 0) {
        snprintf(r->error, sizeof(r->error), "%s", backend_error(b));
        return -1;
    }
    return 0;
}

/* Where the slot map moved a command's store meanwhile (a retry). */
static int cluster_send(router *r, int store, int conn, int db, unsigned long long session, int argc, char **argv,
                        const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    cluster_req *q = calloc(1, sizeof(*q));
    if (!q) abort();
    router_pending_add(r, &q->link, conn, req_drop);
    q->argv = args_copy(argc, argv, argvlen, &q->argvlen);
    q->argc = argc;
    q->r = r;
    q->store = store;
    q->conn = conn;
    q->db = db;
    q->session = session;
    q->mode = mode;
    q->fn = fn;
    q->ctx = ctx;
    q->first_ms = clock_ms();
    if (req_send(q) != 0) {
        req_free(q);
        return -1;
    }
    return 0;
}

static void cluster_info(router *r, struct evbuffer *out)
{
    cluster_state *cs = r->placement_state;
    int masters = 0;
    for (int i = 0; i < r->nstores; i++) masters += cs->is_master[i];
    evbuffer_add_printf(out,
                        "backend_cluster_state:%s\r\nbackend_cluster_slots_served:%d\r\n"
                        "backend_cluster_masters:%d\r\nbackend_cluster_map_refreshes:%llu\r\n"
                        "backend_cluster_moved:%llu\r\nbackend_cluster_asked:%llu\r\nbackend_cluster_retried:%llu\r\n",
                        cs->served == CLUSTER_SLOT_COUNT ? "ok" : "fail", cs->served, masters, cs->refreshes,
                        cs->moved, cs->asked, cs->retried);
    for (int i = 0; i < r->nstores; i++) {
        int slots = 0;
        for (int s = 0; s < CLUSTER_SLOT_COUNT; s++) slots += cs->slot_store[s] == i;
        int ready = 0;
        for (int c = 0; c < r->base.connections; c++) ready += backend_conn_ready(r->stores[i].b, c);
        evbuffer_add_printf(out, "store%d:address=%s,role=%s,state=%s,slots=%d,requests=%llu\r\n", i,
                            r->stores[i].name, cs->is_master[i] ? "master" : "other", ready ? "up" : "down", slots,
                            r->stores[i].requests);
    }
}

static void cluster_free(router *r)
{
    cluster_state *cs = r->placement_state;
    if (!cs) return;
    if (cs->refresh_ev) event_free(cs->refresh_ev);
    free(cs->credentials);
    free(cs->is_master);
    free(cs->migrating_until_ms);
    free(cs);
}

static const router_placement_ops cluster_ops = {cluster_owner, cluster_group, cluster_active, cluster_keyless, cluster_send,
                                                 cluster_info,  cluster_free,   "cluster"};

long long backend_cluster_refresh_ms = 5000;

backend *backend_cluster_create(struct event_base *base, const char *url, int connections,
                                const struct store_tls_options *tls, char *err, size_t errlen)
{
    int secure = !strncasecmp(url, "rediss-cluster://", 17);
    const char *rest = url + (secure ? 17 : 16);
    router *r = calloc(1, sizeof(*r));
    cluster_state *cs = calloc(1, sizeof(*cs));
    if (!r || !cs) abort();
    r->placement_state = cs;
    cs->migrating_until_ms = calloc(CLUSTER_SLOT_COUNT, sizeof(*cs->migrating_until_ms));
    if (!cs->migrating_until_ms) abort();
    snprintf(cs->scheme, sizeof(cs->scheme), "%s", secure ? "rediss" : "redis");
    const char *at = strrchr(rest, '@');
    cs->credentials = at ? strndup(rest, (size_t)(at - rest + 1)) : strdup("");
    if (!cs->credentials) abort();
    if (at) rest = at + 1;
    cs->connections = connections;
    if (tls) {
        cs->tls = *tls;
        cs->has_tls = 1;
    }
    cs->refresh_ms = backend_cluster_refresh_ms;
    memset(cs->slot_store, 0xff, sizeof(cs->slot_store));
    router_init(r, base, &cluster_ops, connections, 0);
    r->tag_braces = 1;
    r->base.cluster_mode = 1;
    /* Seeds: host:port, comma separated. The display names no credentials. */
    char *seeds = strdup(rest);
    char disp[512];
    snprintf(disp, sizeof(disp), "%s-cluster://%s", cs->scheme, rest);
    r->base.display = strdup(disp);
    if (!seeds || !r->base.display) abort();
    char *save = NULL;
    for (char *tok = strtok_r(seeds, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || !end || *end || port < 1 || port > 65535) {
            snprintf(err, errlen, "bad cluster seed '%s' (host:port expected)", tok);
            goto fail;
        }
        *colon = '\0';
        char *host = tok;
        if (host[0] == '[' && colon > host + 1 && colon[-1] == ']') {
            host++;
            colon[-1] = '\0';
        }
        if (store_for(r, host, (int)port) < 0) {
            snprintf(err, errlen, "cluster seed %s:%ld could not be set up", host, port);
            goto fail;
        }
    }
    if (!r->nstores) {
        snprintf(err, errlen, "a Redis Cluster URL names at least one node: redis-cluster://host:port[,host:port]");
        goto fail;
    }
    free(seeds);
    cs->refresh_ev = evtimer_new(base, refresh_timer_cb, r);
    if (!cs->refresh_ev) abort();
    refresh_soon(r, 0);
    return &r->base;
fail:
    free(seeds);
    r->base.ops->free(&r->base);
    return NULL;
}
