/* The router: one backend made of many stores (see router.h). Commands
 * whose keys have one owner go to it untouched, reply and all; the router
 * itself only splits, fans out and merges the commands that need it. */
#include "backends/router_int.h"
#include "backends/store.h"
#include "util/args.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

backend_keys_fn *backend_command_keys;

/* ---- replies made here ----------------------------------------------------- */

void router_put_reply(struct evbuffer *out, const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
        evbuffer_add_printf(out, "$%zu\r\n", r->len);
        evbuffer_add(out, r->str, r->len);
        evbuffer_add(out, "\r\n", 2);
        break;
    case REDIS_REPLY_STATUS:
        evbuffer_add(out, "+", 1);
        evbuffer_add(out, r->str, r->len);
        evbuffer_add(out, "\r\n", 2);
        break;
    case REDIS_REPLY_ERROR:
        evbuffer_add(out, "-", 1);
        evbuffer_add(out, r->str, r->len);
        evbuffer_add(out, "\r\n", 2);
        break;
    case REDIS_REPLY_INTEGER:
        evbuffer_add_printf(out, ":%lld\r\n", r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        evbuffer_add_printf(out, "*%zu\r\n", r->elements);
        for (size_t i = 0; i < r->elements; i++) router_put_reply(out, r->element[i]);
        break;
    default: /* NIL */
        evbuffer_add(out, "$-1\r\n", 5);
        break;
    }
}

void router_deliver(int mode, backend_reply_fn *fn, void *ctx, const char *resp, size_t len)
{
    if (!fn) return;
    struct evbuffer *raw = evbuffer_new();
    if (!raw) abort();
    evbuffer_add(raw, resp, len);
    backend_reply br = {0};
    br.raw = raw;
    br.raw_len = len;
    redisReply *parsed = NULL;
    if (mode == BACKEND_PARSED) {
        redisReader *rd = redisReaderCreate();
        if (!rd) abort();
        void *obj = NULL;
        if (redisReaderFeed(rd, resp, len) != REDIS_OK || redisReaderGetReply(rd, &obj) != REDIS_OK || !obj) {
            br.error = "ERR backend pool: a merged reply could not be read";
            br.raw = NULL;
            br.raw_len = 0;
        }
        parsed = obj;
        br.parsed = parsed;
        redisReaderFree(rd);
    }
    fn(ctx, &br);
    if (parsed) freeReplyObject(parsed);
    evbuffer_free(raw);
}

typedef struct later_reply {
    int mode;
    backend_reply_fn *fn;
    void *ctx;
    char *resp;
    size_t len;
    char *error;
} later_reply;

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    later_reply *l = arg;
    if (l->error) {
        backend_reply br = {.error = l->error};
        if (l->fn) l->fn(l->ctx, &br);
    } else {
        router_deliver(l->mode, l->fn, l->ctx, l->resp, l->len);
    }
    free(l->resp);
    free(l->error);
    free(l);
}

void router_reply_later(router *r, int mode, backend_reply_fn *fn, void *ctx, const char *resp, size_t len,
                        const char *error)
{
    later_reply *l = calloc(1, sizeof(*l));
    if (!l) abort();
    l->mode = mode;
    l->fn = fn;
    l->ctx = ctx;
    if (error) {
        l->error = strdup(error);
    } else {
        l->resp = malloc(len ? len : 1);
        if (!l->resp) abort();
        memcpy(l->resp, resp, len);
        l->len = len;
    }
    if (!l->error && error) abort();
    static const struct timeval now = {0, 0};
    if (event_base_once(r->evb, -1, EV_TIMEOUT, later_cb, l, &now) != 0) abort();
}

/* ---- requests in flight ------------------------------------------------------ */

void router_pending_add(router *r, router_pending *p, int conn, void (*drop)(router_pending *p))
{
    p->conn = conn;
    p->drop = drop;
    p->prev = NULL;
    p->next = r->pending;
    if (r->pending) r->pending->prev = p;
    r->pending = p;
}

void router_pending_remove(router *r, router_pending *p)
{
    if (p->prev) p->prev->next = p->next;
    else if (r->pending == p) r->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* Drops what waits on conn (every request when conn is -1). */
static void drop_pending(router *r, int conn)
{
    router_pending *p = r->pending;
    while (p) {
        router_pending *next = p->next;
        if (conn < 0 || p->conn == conn) p->drop(p);
        p = next;
    }
}

/* ---- stores and connections -------------------------------------------------- */

int router_add_store(router *r, backend *b, const char *name)
{
    if (r->nstores == r->capstores) {
        r->capstores = r->capstores ? r->capstores * 2 : 4;
        r->stores = realloc(r->stores, sizeof(*r->stores) * (size_t)r->capstores);
        if (!r->stores) abort();
    }
    router_store *s = &r->stores[r->nstores];
    memset(s, 0, sizeof(*s));
    s->b = b;
    s->name = strdup(name ? name : b->display);
    if (!s->name) abort();
    b->parent = &r->base;
    b->databases = r->base.databases;
    b->connect_timeout_ms = r->base.connect_timeout_ms;
    b->max_string_len = r->base.max_string_len;
    /* Dedicated connections made before this store existed have none on it. */
    for (int i = 0; i < r->nded; i++) {
        int *c = realloc(r->ded[i].child, sizeof(int) * (size_t)(r->nstores + 1));
        if (!c) abort();
        c[r->nstores] = -1;
        r->ded[i].child = c;
    }
    return r->nstores++;
}

void router_child_learnt(backend *parent)
{
    router *r = (router *)parent;
    int version = 0;
    const backend *from = NULL;
    for (int i = 0; i < r->nstores; i++) {
        const backend *b = r->stores[i].b;
        if (!b->store_version) continue;
        if (!version || b->store_version < version) {
            version = b->store_version;
            from = b;
        }
    }
    r->base.store_version = version;
    r->base.store_commands = from ? from->store_commands : NULL;
    r->base.store_epoch = store_epoch_next();
}

/* The proxy sets these on the router; its stores follow. */
static void sync_settings(router *r)
{
    for (int i = 0; i < r->nstores; i++) {
        backend *b = r->stores[i].b;
        b->connect_timeout_ms = r->base.connect_timeout_ms;
        b->max_string_len = r->base.max_string_len;
        b->databases = r->base.databases;
    }
}

static int is_dedicated(const router *r, int conn)
{
    return conn >= ROUTER_DEDICATED_BASE && conn - ROUTER_DEDICATED_BASE < r->nded &&
           r->ded[conn - ROUTER_DEDICATED_BASE].in_use;
}

/* The store's connection standing for the router's conn; -1 with the
 * store's error in r->error. */
int router_child_conn(router *r, int store, int conn)
{
    router_store *s = &r->stores[store];
    backend *b = s->b;
    int c;
    if (conn >= ROUTER_DEDICATED_BASE) {
        if (!is_dedicated(r, conn)) {
            snprintf(r->error, sizeof(r->error), "ERR backend pool: no such connection");
            return -1;
        }
        router_dedicated *d = &r->ded[conn - ROUTER_DEDICATED_BASE];
        if (d->child[store] < 0) d->child[store] = b->ops->open_dedicated ? backend_open_dedicated(b) : -1;
        c = d->child[store];
    } else {
        c = backend_conn_ready(b, conn) ? conn : backend_pick(b, (unsigned)conn);
    }
    if (c < 0) {
        snprintf(r->error, sizeof(r->error), "%s", backend_error(b));
        s->failures++;
        return -1;
    }
    s->failures = 0;
    return c;
}

int router_send_to(router *r, int store, int conn, int db, unsigned long long session, int argc, char **argv,
                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    if (r->pl->send) return r->pl->send(r, store, conn, db, session, argc, argv, argvlen, mode, fn, ctx);
    return router_send_direct(r, store, conn, db, session, argc, argv, argvlen, mode, fn, ctx);
}

int router_send_direct(router *r, int store, int conn, int db, unsigned long long session, int argc, char **argv,
                       const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    int c = router_child_conn(r, store, conn);
    if (c < 0) return -1;
    router_store *s = &r->stores[store];
    s->requests++;
    if (s->b->ops->send(s->b, c, db, session, argc, argv, argvlen, mode, fn, ctx) != 0) {
        snprintf(r->error, sizeof(r->error), "%s", backend_error(s->b));
        return -1;
    }
    return 0;
}

/* ---- merging replies of several stores ------------------------------------------ */

enum merge_kind {
    MERGE_ELEMENTS, /* MGET: each part's array elements go back to their places */
    MERGE_SUM,      /* DEL, EXISTS, DBSIZE...: integers added */
    MERGE_OK,       /* MSET, FLUSHDB, WATCH: +OK when every part says so */
    MERGE_CONCAT,   /* KEYS: arrays joined */
    MERGE_EXEC,     /* EXEC on a dedicated connection: nil if any part is nil */
    MERGE_RANDOM,   /* RANDOMKEY: any part's key */
    MERGE_INFO,     /* INFO: the first part's text, keyspace lines summed over all */
    MERGE_MSETNX,   /* MSETNX, first step: EXISTS summed, then MSET */
};

typedef struct merge merge;

typedef struct merge_part {
    merge *m;   /* the part is its store's reply callback's context */
    int store;
    int n;      /* argv entries */
    int *pos;   /* MERGE_ELEMENTS: where each key's element goes */
    int npos;
} merge_part;

struct merge {
    router_pending link; /* first: the list holds merges by it */
    router *r;
    int kind;
    int mode;
    backend_reply_fn *fn;
    void *ctx;
    int pending;
    int conn, db;
    unsigned long long session;
    /* results */
    char *error;           /* a transport failure (text without '-') */
    struct evbuffer *err_reply; /* the first error reply */
    long long sum;
    int nil;
    int count;
    struct evbuffer *acc;  /* MERGE_CONCAT, MERGE_EXEC: elements */
    struct evbuffer **elems; /* MERGE_ELEMENTS */
    int nelems;
    int answer_one;        /* MERGE_OK for MSETNX's MSET: answers 1 */
    char **candidates;     /* MERGE_RANDOM */
    size_t *cand_len;
    int ncand;
    char *info_first;      /* MERGE_INFO */
    size_t info_len;
    long long (*info_keys)[2]; /* per db: keys, expires */
    int info_dbs;
    /* MERGE_MSETNX: the MSET to send when no key exists */
    int argc;
    char **argv;
    size_t *argvlen;
    merge_part *parts;
    int nparts;
};

static void merge_free(merge *m)
{
    router_pending_remove(m->r, &m->link);
    free(m->error);
    if (m->err_reply) evbuffer_free(m->err_reply);
    if (m->acc) evbuffer_free(m->acc);
    for (int i = 0; i < m->nelems; i++)
        if (m->elems[i]) evbuffer_free(m->elems[i]);
    free(m->elems);
    for (int i = 0; i < m->ncand; i++) free(m->candidates[i]);
    free(m->candidates);
    free(m->cand_len);
    free(m->info_first);
    free(m->info_keys);
    for (int i = 0; i < m->nparts; i++) free(m->parts[i].pos);
    free(m->parts);
    free(m->argv); /* and the lengths and bytes: one block */
    free(m);
}

static void add_info_keyspace(merge *m, const char *text, size_t len)
{
    /* "db3:keys=10,expires=2,avg_ttl=0" lines */
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        int db;
        long long keys, expires;
        char line[256];
        size_t ll = (size_t)(eol - p) < sizeof(line) - 1 ? (size_t)(eol - p) : sizeof(line) - 1;
        memcpy(line, p, ll);
        line[ll] = '\0';
        if (sscanf(line, "db%d:keys=%lld,expires=%lld", &db, &keys, &expires) == 3 && db >= 0 && db < 100000) {
            if (db >= m->info_dbs) {
                m->info_keys = realloc(m->info_keys, sizeof(*m->info_keys) * (size_t)(db + 1));
                if (!m->info_keys) abort();
                for (int i = m->info_dbs; i <= db; i++) m->info_keys[i][0] = m->info_keys[i][1] = -1;
                m->info_dbs = db + 1;
            }
            if (m->info_keys[db][0] < 0) m->info_keys[db][0] = m->info_keys[db][1] = 0;
            m->info_keys[db][0] += keys;
            m->info_keys[db][1] += expires;
        }
        p = eol + 1;
    }
}

/* INFO's text with its Keyspace section replaced by the sums. */
static void finish_info(merge *m, struct evbuffer *out)
{
    struct evbuffer *text = evbuffer_new();
    if (!text) abort();
    const char *t = m->info_first ? m->info_first : "";
    size_t len = m->info_len;
    const char *ks = NULL;
    for (size_t i = 0; i + 10 <= len; i++)
        if (!memcmp(t + i, "# Keyspace", 10) && (i == 0 || t[i - 1] == '\n')) {
            ks = t + i;
            break;
        }
    size_t head = ks ? (size_t)(ks - t) : len;
    evbuffer_add(text, t, head);
    if (ks || m->info_dbs) {
        evbuffer_add_printf(text, "# Keyspace\r\n");
        for (int db = 0; db < m->info_dbs; db++)
            if (m->info_keys[db][0] > 0)
                evbuffer_add_printf(text, "db%d:keys=%lld,expires=%lld,avg_ttl=0\r\n", db, m->info_keys[db][0],
                                    m->info_keys[db][1]);
        if (ks) {
            /* Whatever follows the Keyspace section in the first store's text. */
            const char *rest = ks + 10;
            const char *next = NULL;
            for (const char *q = rest; q + 2 < t + len; q++)
                if (q[0] == '\n' && q[1] == '#') {
                    next = q + 1;
                    break;
                }
            if (next) {
                evbuffer_add(text, "\r\n", 2);
                evbuffer_add(text, next, (size_t)(t + len - next));
            }
        }
    }
    size_t n = evbuffer_get_length(text);
    evbuffer_add_printf(out, "$%zu\r\n", n);
    evbuffer_add_buffer(out, text);
    evbuffer_add(out, "\r\n", 2);
    evbuffer_free(text);
}

static void merge_finish(merge *m)
{
    /* Off the list first: the caller may release its connection now. */
    router_pending_remove(m->r, &m->link);
    struct evbuffer *out = evbuffer_new();
    if (!out) abort();
    if (m->error) {
        backend_reply br = {.error = m->error};
        if (m->fn) m->fn(m->ctx, &br);
        evbuffer_free(out);
        merge_free(m);
        return;
    }
    if (m->err_reply && m->kind != MERGE_EXEC) {
        evbuffer_add_buffer(out, m->err_reply);
    } else {
        switch (m->kind) {
        case MERGE_ELEMENTS:
            evbuffer_add_printf(out, "*%d\r\n", m->nelems);
            for (int i = 0; i < m->nelems; i++) {
                if (m->elems[i]) evbuffer_add_buffer(out, m->elems[i]);
                else evbuffer_add(out, "$-1\r\n", 5);
            }
            break;
        case MERGE_SUM:
            evbuffer_add_printf(out, ":%lld\r\n", m->sum);
            break;
        case MERGE_OK:
            if (m->answer_one) evbuffer_add(out, ":1\r\n", 4);
            else evbuffer_add(out, "+OK\r\n", 5);
            break;
        case MERGE_CONCAT:
            evbuffer_add_printf(out, "*%d\r\n", m->count);
            evbuffer_add_buffer(out, m->acc);
            break;
        case MERGE_EXEC:
            if (m->nil) {
                evbuffer_add(out, "*-1\r\n", 5);
            } else if (m->err_reply) {
                evbuffer_add_buffer(out, m->err_reply);
            } else {
                evbuffer_add_printf(out, "*%d\r\n", m->count);
                evbuffer_add_buffer(out, m->acc);
            }
            break;
        case MERGE_RANDOM:
            if (!m->ncand) {
                evbuffer_add(out, "$-1\r\n", 5);
            } else {
                int i = rand() % m->ncand;
                evbuffer_add_printf(out, "$%zu\r\n", m->cand_len[i]);
                evbuffer_add(out, m->candidates[i], m->cand_len[i]);
                evbuffer_add(out, "\r\n", 2);
            }
            break;
        case MERGE_INFO:
            finish_info(m, out);
            break;
        default:
            break;
        }
    }
    size_t len = evbuffer_get_length(out);
    char *text = (char *)evbuffer_pullup(out, (ev_ssize_t)len);
    router_deliver(m->mode, m->fn, m->ctx, text ? text : "", len);
    evbuffer_free(out);
    merge_free(m);
}

static int merge_send_parts(merge *m, int argc, char **argv, const size_t *argvlen, const int *owner,
                            const int *group, int nkeys, int first, int step);

/* Keys that one command may carry together: the same store in a pool, the
 * same slot in a cluster (its nodes refuse keys of several slots). */
static int key_group(router *r, const char *key, size_t len, int owner)
{
    return r->pl->group ? r->pl->group(r, key, len) : owner;
}

static void msetnx_step(merge *m)
{
    if (m->error || m->err_reply || m->sum > 0) {
        /* A key exists (MSETNX sets nothing and answers 0), or a failure. */
        m->kind = MERGE_SUM;
        m->sum = 0;
        merge_finish(m);
        return;
    }
    /* Second step: the MSET, split the same way. */
    m->kind = MERGE_OK;
    m->answer_one = 1;
    int nkeys = (m->argc - 1) / 2;
    int *owner = malloc(sizeof(int) * (size_t)(nkeys ? nkeys : 1));
    int *group = malloc(sizeof(int) * (size_t)(nkeys ? nkeys : 1));
    if (!owner || !group) abort();
    for (int i = 0; i < nkeys; i++) {
        owner[i] = m->r->pl->owner(m->r, m->argv[1 + 2 * i], m->argvlen[1 + 2 * i]);
        group[i] = key_group(m->r, m->argv[1 + 2 * i], m->argvlen[1 + 2 * i], owner[i]);
    }
    static char mset[] = "MSET";
    char *saved = m->argv[0];
    size_t saved_len = m->argvlen[0];
    m->argv[0] = mset;
    m->argvlen[0] = 4;
    for (int i = 0; i < m->nparts; i++) free(m->parts[i].pos);
    free(m->parts);
    m->parts = NULL;
    m->nparts = 0;
    int rc = merge_send_parts(m, m->argc, m->argv, m->argvlen, owner, group, nkeys, 1, 2);
    m->argv[0] = saved;
    m->argvlen[0] = saved_len;
    free(owner);
    free(group);
    if (rc != 0) {
        if (!m->error) m->error = strdup(m->r->error);
        merge_finish(m);
    }
}

static void part_reply(merge *m, merge_part *p, const backend_reply *br)
{
    if (br->error) {
        if (!m->error) m->error = strdup(br->error);
        return;
    }
    const redisReply *r = br->parsed;
    if (!r) return;
    int kind = m->kind;
    if (r->type == REDIS_REPLY_ERROR) {
        if (!m->err_reply) {
            m->err_reply = evbuffer_new();
            if (!m->err_reply) abort();
            router_put_reply(m->err_reply, r);
        }
        return;
    }
    switch (kind) {
    case MERGE_ELEMENTS:
        if (r->type != REDIS_REPLY_ARRAY) break;
        for (size_t i = 0; i < r->elements && (int)i < p->npos; i++) {
            int at = p->pos[i];
            if (at < 0 || at >= m->nelems) continue;
            m->elems[at] = evbuffer_new();
            if (!m->elems[at]) abort();
            router_put_reply(m->elems[at], r->element[i]);
        }
        break;
    case MERGE_SUM:
    case MERGE_MSETNX:
        if (r->type == REDIS_REPLY_INTEGER) m->sum += r->integer;
        break;
    case MERGE_CONCAT:
    case MERGE_EXEC:
        if (r->type == REDIS_REPLY_NIL) m->nil = 1;
        if (r->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < r->elements; i++) router_put_reply(m->acc, r->element[i]);
            m->count += (int)r->elements;
        }
        break;
    case MERGE_RANDOM:
        if (r->type == REDIS_REPLY_STRING) {
            m->candidates = realloc(m->candidates, sizeof(char *) * (size_t)(m->ncand + 1));
            m->cand_len = realloc(m->cand_len, sizeof(size_t) * (size_t)(m->ncand + 1));
            if (!m->candidates || !m->cand_len) abort();
            m->candidates[m->ncand] = malloc(r->len ? r->len : 1);
            if (!m->candidates[m->ncand]) abort();
            memcpy(m->candidates[m->ncand], r->str, r->len);
            m->cand_len[m->ncand++] = r->len;
        }
        break;
    case MERGE_INFO:
        if (r->type == REDIS_REPLY_STRING) {
            if (p->store == m->parts[0].store) {
                free(m->info_first);
                m->info_first = malloc(r->len + 1);
                if (!m->info_first) abort();
                memcpy(m->info_first, r->str, r->len);
                m->info_first[r->len] = '\0';
                m->info_len = r->len;
            }
            add_info_keyspace(m, r->str, r->len);
        }
        break;
    default:
        break;
    }
}

static void part_cb(void *ctx, const backend_reply *br)
{
    merge_part *p = ctx;
    merge *m = p->m;
    part_reply(m, p, br);
    if (--m->pending > 0) return;
    if (m->kind == MERGE_MSETNX) {
        msetnx_step(m);
        return;
    }
    merge_finish(m);
}

/* Sends one command per owner with its keys (and the step-1 arguments that
 * follow each key): argv[0], then for key i argv[first + i*step .. + step).
 * The trailing arguments after the keys, if any, are added to every part.
 * 0, or -1 when not one part could be sent. */
static int merge_send_parts(merge *m, int argc, char **argv, const size_t *argvlen, const int *owner,
                            const int *group, int nkeys, int first, int step)
{
    router *r = m->r;
    int tail_from = first + nkeys * step;
    int tail = argc - tail_from;
    char **pargv = malloc(sizeof(char *) * (size_t)argc);
    size_t *plen = malloc(sizeof(size_t) * (size_t)argc);
    int *done = calloc((size_t)(nkeys ? nkeys : 1), sizeof(int));
    m->parts = calloc((size_t)(nkeys ? nkeys : 1), sizeof(merge_part));
    if (!pargv || !plen || !done || !m->parts) abort();
    int sent = 0, failed = 0;
    m->pending++; /* held while sending, so that no reply finishes the merge early */
    for (int i = 0; i < nkeys; i++) {
        if (done[i]) continue;
        int store = owner[i];
        merge_part *p = &m->parts[m->nparts];
        p->store = store;
        p->pos = malloc(sizeof(int) * (size_t)nkeys);
        if (!p->pos) abort();
        int n = 0;
        pargv[n] = argv[0];
        plen[n++] = argvlen[0];
        for (int j = i; j < nkeys; j++) {
            if (done[j] || group[j] != group[i]) continue;
            done[j] = 1;
            p->pos[p->npos++] = j;
            for (int k = 0; k < step; k++) {
                pargv[n] = argv[first + j * step + k];
                plen[n++] = argvlen[first + j * step + k];
            }
        }
        for (int k = 0; k < tail; k++) {
            pargv[n] = argv[tail_from + k];
            plen[n++] = argvlen[tail_from + k];
        }
        p->n = n;
        int part = m->nparts++;
        if (store < 0) {
            failed++;
            if (!m->error) m->error = strdup(r->error);
            continue;
        }
        p->m = m;
        m->pending++;
        if (router_send_to(r, store, m->conn, m->db, m->session, n, pargv, plen, BACKEND_PARSED, part_cb,
                           &m->parts[part]) != 0) {
            m->pending--;
            failed++;
            if (!m->error) m->error = strdup(r->error);
            continue;
        }
        sent++;
    }
    m->pending--;
    free(pargv);
    free(plen);
    free(done);
    if (!sent) return -1;
    (void)failed;
    return 0;
}

/* Sends argv whole to every store in `stores` (NULL: all). */
static int merge_send_all(merge *m, int argc, char **argv, const size_t *argvlen, const int *stores, int nstores)
{
    router *r = m->r;
    int total = stores ? nstores : r->nstores;
    m->parts = calloc((size_t)(total ? total : 1), sizeof(merge_part));
    if (!m->parts) abort();
    int sent = 0;
    m->pending++;
    for (int i = 0; i < total; i++) {
        int store = stores ? stores[i] : i;
        if (!stores && !r->pl->active(r, store)) continue;
        merge_part *p = &m->parts[m->nparts];
        p->store = store;
        p->m = m;
        m->nparts++;
        m->pending++;
        if (router_send_to(r, store, m->conn, m->db, m->session, argc, argv, argvlen, BACKEND_PARSED, part_cb, p) !=
            0) {
            m->pending--;
            if (!m->error) m->error = strdup(r->error);
            continue;
        }
        sent++;
    }
    m->pending--;
    return sent ? 0 : -1;
}

static void merge_drop(router_pending *p) { merge_free((merge *)p); }

static merge *merge_new(router *r, int kind, int conn, int db, unsigned long long session, int mode,
                        backend_reply_fn *fn, void *ctx)
{
    merge *m = calloc(1, sizeof(*m));
    if (!m) abort();
    router_pending_add(r, &m->link, conn, merge_drop);
    m->r = r;
    m->kind = kind;
    m->conn = conn;
    m->db = db;
    m->session = session;
    m->mode = mode;
    m->fn = fn;
    m->ctx = ctx;
    if (kind == MERGE_CONCAT || kind == MERGE_EXEC) {
        m->acc = evbuffer_new();
        if (!m->acc) abort();
    }
    return m;
}

/* After the sends: -1 (nothing sent; the caller reports r->error) or 0. */
static int merge_started(merge *m, int rc)
{
    if (rc != 0) {
        snprintf(m->r->error, sizeof(m->r->error), "%s", m->error ? m->error : m->r->error);
        merge_free(m);
        return -1;
    }
    return 0;
}

/* ---- the commands the router answers itself ---------------------------------- */

static int name_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && !strncasecmp(s, name, len);
}

static const char crossslot[] = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/* MGET, DEL... whose keys are argv[first], argv[first+step]...; 1: handled. */
static int split_keys(router *r, int conn, int db, unsigned long long session, int argc, char **argv,
                      const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx, int kind, int first,
                      int step, int *rc)
{
    int nkeys = (argc - first) / step;
    if (nkeys < 1 || (argc - first) % step) return 0; /* the store gives the arity error */
    int owner_buf[16], group_buf[16];
    int *owner = nkeys <= 16 ? owner_buf : malloc(sizeof(int) * (size_t)nkeys);
    int *group = nkeys <= 16 ? group_buf : malloc(sizeof(int) * (size_t)nkeys);
    if (!owner || !group) abort();
    int single = 1;
    for (int i = 0; i < nkeys; i++) {
        owner[i] = r->pl->owner(r, argv[first + i * step], argvlen[first + i * step]);
        group[i] = key_group(r, argv[first + i * step], argvlen[first + i * step], owner[i]);
        if (group[i] != group[0]) single = 0;
    }
    if (single) {
        if (owner != owner_buf) free(owner);
        if (group != group_buf) free(group);
        return 0; /* one store (one slot): sent whole */
    }
    merge *m = merge_new(r, kind, conn, db, session, mode, fn, ctx);
    if (kind == MERGE_ELEMENTS) {
        m->nelems = nkeys;
        m->elems = calloc((size_t)nkeys, sizeof(*m->elems));
        if (!m->elems) abort();
    }
    if (kind == MERGE_MSETNX) {
        /* First the EXISTS of every key, then, when none exists, the MSET. */
        m->argc = argc;
        m->argv = args_copy(argc, argv, argvlen, &m->argvlen);
        char **eargv = malloc(sizeof(char *) * (size_t)(nkeys + 1));
        size_t *elen = malloc(sizeof(size_t) * (size_t)(nkeys + 1));
        if (!eargv || !elen) abort();
        eargv[0] = "EXISTS";
        elen[0] = 6;
        for (int i = 0; i < nkeys; i++) {
            eargv[1 + i] = argv[first + i * step];
            elen[1 + i] = argvlen[first + i * step];
        }
        *rc = merge_started(m, merge_send_parts(m, nkeys + 1, eargv, elen, owner, group, nkeys, 1, 1));
        free(eargv);
        free(elen);
    } else {
        *rc = merge_started(m, merge_send_parts(m, argc, argv, argvlen, owner, group, nkeys, first, step));
    }
    if (owner != owner_buf) free(owner);
    if (group != group_buf) free(group);
    return 1;
}

/* SCAN cursor: the store's cursor times SCAN_STORES, plus the store's
 * index (a constant, so that a cursor keeps its meaning when a cluster
 * shows more nodes); 0 starts at the first store and ends after the last. A
 * store that is done hands over to the next within the same call while
 * fewer keys than COUNT were found, so a keyspace that fits one COUNT is
 * scanned in one call, as on one store. */
#define SCAN_STORES 1024ULL

typedef struct scan_ctx {
    router_pending link; /* first */
    router *r;
    int store;
    int mode;
    backend_reply_fn *fn;
    void *ctx;
    int conn, db;
    unsigned long long session;
    long long want;          /* COUNT (10 by default) */
    long long found;
    struct evbuffer *keys;   /* keys found so far, RESP */
    int argc;
    char **argv;             /* a copy; argv[1] is rewritten per store */
    size_t *argvlen;
} scan_ctx;

static int next_live_store(router *r, int from)
{
    for (int i = from; i < r->nstores; i++)
        if (r->pl->active(r, i)) return i;
    return -1;
}

static void scan_free(scan_ctx *sc)
{
    router_pending_remove(sc->r, &sc->link);
    free(sc->argv); /* and the lengths and bytes: one block */
    evbuffer_free(sc->keys);
    free(sc);
}

static void scan_drop(router_pending *p) { scan_free((scan_ctx *)p); }

static void scan_reply_now(scan_ctx *sc, unsigned long long next)
{
    router_pending_remove(sc->r, &sc->link);
    struct evbuffer *out = evbuffer_new();
    if (!out) abort();
    char num[32];
    int nl = snprintf(num, sizeof(num), "%llu", next);
    evbuffer_add_printf(out, "*2\r\n$%d\r\n%s\r\n*%lld\r\n", nl, num, sc->found);
    evbuffer_add_buffer(out, sc->keys);
    size_t len = evbuffer_get_length(out);
    router_deliver(sc->mode, sc->fn, sc->ctx, (char *)evbuffer_pullup(out, -1), len);
    evbuffer_free(out);
    scan_free(sc);
}

static int scan_step(scan_ctx *sc, unsigned long long own);

static void scan_cb(void *ctx, const backend_reply *br)
{
    scan_ctx *sc = ctx;
    const redisReply *p = br->parsed;
    router_pending_remove(sc->r, &sc->link); /* its caller may release the connection */
    if (br->error || !p || p->type != REDIS_REPLY_ARRAY || p->elements != 2 ||
        p->element[0]->type != REDIS_REPLY_STRING || p->element[1]->type != REDIS_REPLY_ARRAY) {
        if (br->error) {
            if (sc->fn) sc->fn(sc->ctx, br);
        } else if (p) {
            struct evbuffer *out = evbuffer_new();
            if (!out) abort();
            router_put_reply(out, p);
            size_t len = evbuffer_get_length(out);
            router_deliver(sc->mode, sc->fn, sc->ctx, (char *)evbuffer_pullup(out, -1), len);
            evbuffer_free(out);
        }
        scan_free(sc);
        return;
    }
    const redisReply *keys = p->element[1];
    for (size_t i = 0; i < keys->elements; i++) router_put_reply(sc->keys, keys->element[i]);
    sc->found += (long long)keys->elements;
    unsigned long long cur = strtoull(p->element[0]->str, NULL, 10);
    if (cur != 0) {
        scan_reply_now(sc, cur * SCAN_STORES + (unsigned long long)sc->store);
        return;
    }
    int next = next_live_store(sc->r, sc->store + 1);
    if (next < 0) {
        scan_reply_now(sc, 0);
        return;
    }
    if (sc->found >= sc->want) {
        scan_reply_now(sc, (unsigned long long)next);
        return;
    }
    sc->store = next;
    router_pending_add(sc->r, &sc->link, sc->conn, scan_drop);
    if (scan_step(sc, 0) != 0) scan_reply_now(sc, (unsigned long long)next);
}

static int scan_step(scan_ctx *sc, unsigned long long own)
{
    char num[32];
    int nl = snprintf(num, sizeof(num), "%llu", own);
    char *saved = sc->argv[1];
    size_t saved_len = sc->argvlen[1];
    sc->argv[1] = num;
    sc->argvlen[1] = (size_t)nl;
    int rc = router_send_to(sc->r, sc->store, sc->conn, sc->db, sc->session, sc->argc, sc->argv, sc->argvlen,
                            BACKEND_PARSED, scan_cb, sc);
    sc->argv[1] = saved;
    sc->argvlen[1] = saved_len;
    return rc;
}

static int scan_send(router *r, int conn, int db, unsigned long long session, int argc, char **argv,
                     const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    char buf[32];
    char *end;
    if (argvlen[1] == 0 || argvlen[1] >= sizeof(buf))
        return router_send_to(r, r->pl->keyless(r), conn, db, session, argc, argv, argvlen, mode, fn, ctx);
    memcpy(buf, argv[1], argvlen[1]);
    buf[argvlen[1]] = '\0';
    unsigned long long cursor = strtoull(buf, &end, 10);
    if (*end || buf[0] == '-' || buf[0] == '+') /* the store answers "invalid cursor" */
        return router_send_to(r, r->pl->keyless(r), conn, db, session, argc, argv, argvlen, mode, fn, ctx);
    int store = cursor == 0 ? next_live_store(r, 0) : (int)(cursor % SCAN_STORES);
    if (store >= r->nstores) {
        /* No store of ours made this cursor: nothing more to scan. */
        static const char done[] = "*2\r\n$1\r\n0\r\n*0\r\n";
        router_reply_later(r, mode, fn, ctx, done, sizeof(done) - 1, NULL);
        return 0;
    }
    if (store < 0) {
        snprintf(r->error, sizeof(r->error), "ERR backend %s: no store is available", r->base.display);
        return -1;
    }
    scan_ctx *sc = calloc(1, sizeof(*sc));
    if (!sc) abort();
    *sc = (scan_ctx){{0}, r, store, mode, fn, ctx, conn, db, session, 10, 0, evbuffer_new(), argc, NULL, NULL};
    router_pending_add(r, &sc->link, conn, scan_drop);
    if (!sc->keys) abort();
    sc->argv = args_copy(argc, argv, argvlen, &sc->argvlen);
    for (int i = 2; i + 1 < argc; i++)
        if (name_is(argv[i], argvlen[i], "count")) {
            long long c = strtoll(sc->argv[i + 1], NULL, 10);
            if (c > 0) sc->want = c;
        }
    int rc = scan_step(sc, cursor / SCAN_STORES);
    if (rc != 0) scan_free(sc);
    return rc;
}

/* Keyless commands on a dedicated connection that concern every store it
 * has used (the WATCH check at EXEC: MULTI, EXEC; UNWATCH, DISCARD). */
static int dedicated_broadcast(router *r, int conn, int db, unsigned long long session, int argc, char **argv,
                               const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx, int kind)
{
    router_dedicated *d = &r->ded[conn - ROUTER_DEDICATED_BASE];
    int stores[64], n = 0;
    for (int i = 0; i < r->nstores && n < 64; i++)
        if (d->child[i] >= 0) stores[n++] = i;
    if (!n) {
        /* Nothing watched anywhere: what one store would say. */
        const char *text = kind == MERGE_EXEC ? "*0\r\n" : "+OK\r\n";
        router_reply_later(r, mode, fn, ctx, text, strlen(text), NULL);
        return 0;
    }
    merge *m = merge_new(r, kind, conn, db, session, mode, fn, ctx);
    return merge_started(m, merge_send_all(m, argc, argv, argvlen, stores, n));
}

static int fan_out(router *r, int conn, int db, unsigned long long session, int argc, char **argv,
                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx, int kind)
{
    merge *m = merge_new(r, kind, conn, db, session, mode, fn, ctx);
    return merge_started(m, merge_send_all(m, argc, argv, argvlen, NULL, 0));
}

/* The store holding the keys a SORT pattern forms, as Redis Cluster's
 * patternHashSlot sees it: the owner of its hash tag when one closes
 * before any wildcard, the owner of the pattern itself when it has no
 * wildcard, else -1 (anywhere). */
static int pattern_store(router *r, const char *p, size_t len)
{
    size_t open = (size_t)-1;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '*' || c == '?' || c == '[' || c == '\\') return -1;
        if (open == (size_t)-1 && c == '{') {
            open = i;
        } else if (open != (size_t)-1 && c == '}') {
            if (i == open + 1 || !r->tag_braces) return -1; /* an empty tag: the whole key counts */
            return r->pl->owner(r, p, i + 1);
        }
    }
    return r->pl->owner(r, p, len);
}

/* SORT's BY and GET read keys the command line does not name: refused,
 * with Redis Cluster's words, unless they are on the sorted key's store. */
static int sort_refused(router *r, int argc, char **argv, const size_t *argvlen, int mode, backend_reply_fn *fn,
                        void *ctx)
{
    if (argc < 2) return 0;
    int owner = -2;
    for (int j = 2; j + 1 < argc; j++) {
        const char *what = NULL;
        if (name_is(argv[j], argvlen[j], "by")) {
            if (memchr(argv[j + 1], '*', argvlen[j + 1])) what = "BY";
        } else if (name_is(argv[j], argvlen[j], "get")) {
            if (!(argvlen[j + 1] == 1 && argv[j + 1][0] == '#')) what = "GET";
        } else if (name_is(argv[j], argvlen[j], "limit")) {
            j += 2;
            continue;
        } else {
            continue;
        }
        j++;
        if (!what) continue;
        if (owner == -2) owner = r->pl->owner(r, argv[1], argvlen[1]);
        if (pattern_store(r, argv[j], argvlen[j]) == owner && owner >= 0) continue;
        char text[160];
        int n = snprintf(text, sizeof(text),
                         "-ERR %s option of SORT denied in Cluster mode when keys formed by the pattern may be in "
                         "different slots.\r\n",
                         what);
        router_reply_later(r, mode, fn, ctx, text, (size_t)n, NULL);
        return 1;
    }
    return 0;
}

/* Commands whose keys the router splits over stores and whose replies it
 * merges; keys are argv[1], argv[1 + step]... */
static const struct split_command {
    const char *name;
    int kind, step;
} split_commands[] = {
    {"mget", MERGE_ELEMENTS, 1}, {"mset", MERGE_OK, 2}, {"msetnx", MERGE_MSETNX, 2}, {"del", MERGE_SUM, 1},
    {"unlink", MERGE_SUM, 1},    {"exists", MERGE_SUM, 1}, {"touch", MERGE_SUM, 1},    {"watch", MERGE_OK, 1},
};

static const struct split_command *split_command_of(const char *n, size_t l)
{
    for (size_t i = 0; i < sizeof(split_commands) / sizeof(split_commands[0]); i++)
        if ((n[0] | 0x20) == split_commands[i].name[0] && name_is(n, l, split_commands[i].name))
            return &split_commands[i];
    return NULL;
}

int router_command_splits(const char *name, size_t len)
{
    return split_command_of(name, len) != NULL;
}

/* 1 when the router answers the command itself (rc set). */
static int router_special(router *r, int conn, int db, unsigned long long session, int argc, char **argv,
                          const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx, int *rc)
{
    const char *n = argv[0];
    size_t l = argvlen[0];
    if (l < 3 || l > 9) return 0;
    const struct split_command *sc = split_command_of(n, l);
    if (sc) return split_keys(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, sc->kind, 1, sc->step, rc);
    switch (n[0] | 0x20) {
    case 'm':
        if (name_is(n, l, "multi") && is_dedicated(r, conn)) {
            *rc = dedicated_broadcast(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_OK);
            return 1;
        }
        return 0;
    case 'd':
        if (name_is(n, l, "dbsize") && argc == 1) {
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_SUM);
            return 1;
        }
        if (name_is(n, l, "discard") && is_dedicated(r, conn)) {
            *rc = dedicated_broadcast(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_OK);
            return 1;
        }
        return 0;
    case 'u':
        if (name_is(n, l, "unwatch") && is_dedicated(r, conn)) {
            *rc = dedicated_broadcast(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_OK);
            return 1;
        }
        return 0;
    case 'e':
        if (name_is(n, l, "exec") && is_dedicated(r, conn)) {
            *rc = dedicated_broadcast(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_EXEC);
            return 1;
        }
        return 0;
    case 'k':
        if (name_is(n, l, "keys") && argc == 2) {
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_CONCAT);
            return 1;
        }
        return 0;
    case 's':
        if ((name_is(n, l, "sort") || name_is(n, l, "sort_ro")) &&
            sort_refused(r, argc, argv, argvlen, mode, fn, ctx)) {
            *rc = 0;
            return 1;
        }
        if (name_is(n, l, "swapdb") && argc == 3) {
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_OK);
            return 1;
        }
        if (name_is(n, l, "scan") && argc >= 2) {
            *rc = scan_send(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx);
            return 1;
        }
        return 0;
    case 'r':
        if (name_is(n, l, "randomkey") && argc == 1) {
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_RANDOM);
            return 1;
        }
        return 0;
    case 'f':
        if ((name_is(n, l, "flushdb") || name_is(n, l, "flushall")) && argc <= 2) {
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_OK);
            return 1;
        }
        return 0;
    case 'c':
        /* A setting of the store is every store's. */
        if (name_is(n, l, "config") && argc >= 2 &&
            (name_is(argv[1], argvlen[1], "set") || name_is(argv[1], argvlen[1], "resetstat"))) {
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_OK);
            return 1;
        }
        return 0;
    case 'i':
        if (name_is(n, l, "info")) {
            int keyspace = argc == 1;
            for (int i = 1; i < argc; i++)
                keyspace |= name_is(argv[i], argvlen[i], "keyspace") || name_is(argv[i], argvlen[i], "all") ||
                            name_is(argv[i], argvlen[i], "everything") || name_is(argv[i], argvlen[i], "default");
            if (!keyspace) return 0;
            *rc = fan_out(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, MERGE_INFO);
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- backend_ops ----------------------------------------------------------------- */

static int rt_send(backend *b, int conn, int db, unsigned long long session, int argc, char **argv,
                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    router *r = (router *)b;
    if (argc < 1) return -1;
    int rc;
    if (router_special(r, conn, db, session, argc, argv, argvlen, mode, fn, ctx, &rc)) return rc;
    int pos_buf[16], *pos = pos_buf;
    int nkeys = backend_command_keys ? backend_command_keys(argc, argv, argvlen, pos, 16) : 0;
    if (nkeys > 16) {
        pos = malloc(sizeof(int) * (size_t)nkeys);
        if (!pos) abort();
        nkeys = backend_command_keys(argc, argv, argvlen, pos, nkeys);
    }
    int store;
    if (nkeys <= 0) {
        store = r->pl->keyless(r);
    } else {
        store = r->pl->owner(r, argv[pos[0]], argvlen[pos[0]]);
        for (int i = 1; i < nkeys && store >= 0; i++) {
            if (r->pl->owner(r, argv[pos[i]], argvlen[pos[i]]) != store) {
                if (pos != pos_buf) free(pos);
                router_reply_later(r, mode, fn, ctx, crossslot, sizeof(crossslot) - 1, NULL);
                return 0;
            }
        }
    }
    if (pos != pos_buf) free(pos);
    if (store < 0) return -1;
    return router_send_to(r, store, conn, db, session, argc, argv, argvlen, mode, fn, ctx);
}

static int rt_pick(backend *b, unsigned hint)
{
    router *r = (router *)b;
    sync_settings(r);
    int n = b->connections;
    for (int i = 0; i < r->nstores; i++)
        if (backend_pick(r->stores[i].b, hint) >= 0) return (int)(hint % (unsigned)n);
    snprintf(r->error, sizeof(r->error), "%s", r->nstores ? backend_error(r->stores[0].b) : "ERR no store");
    return -1;
}

static int rt_conn_ready(backend *b, int conn)
{
    router *r = (router *)b;
    if (conn >= ROUTER_DEDICATED_BASE) return is_dedicated(r, conn);
    if (conn < 0 || conn >= b->connections) return 0;
    for (int i = 0; i < r->nstores; i++)
        if (backend_conn_ready(r->stores[i].b, conn)) return 1;
    return 0;
}

static const char *rt_error(backend *b)
{
    router *r = (router *)b;
    if (!r->error[0]) snprintf(r->error, sizeof(r->error), "ERR backend %s is unavailable", b->display);
    return r->error;
}

static void rt_info(backend *b, struct evbuffer *out)
{
    router *r = (router *)b;
    int ready = 0, total = 0;
    for (int i = 0; i < r->nstores; i++)
        for (int c = 0; c < b->connections; c++) {
            total++;
            ready += backend_conn_ready(r->stores[i].b, c);
        }
    evbuffer_add_printf(out, "backend_type:%s\r\nbackend_address:%s\r\nbackend_status:%s\r\nbackend_stores:%d\r\n",
                        r->pl->kind, b->display, ready ? "up" : "down", r->nstores);
    /* Every store's connections: tests wait for all of them. */
    evbuffer_add_printf(out, "backend_connections:%d\r\nbackend_connections_ready:%d\r\n", total, ready);
    r->pl->info(r, out);
}

static void rt_free(backend *b)
{
    router *r = (router *)b;
    /* The stores fail what they still have (callbacks run); what waits on
     * no store (a request to be sent again) is dropped after. */
    for (int i = 0; i < r->nstores; i++) {
        backend_free(r->stores[i].b);
        r->stores[i].b = NULL;
    }
    drop_pending(r, -1);
    if (r->pl->free) r->pl->free(r);
    for (int i = 0; i < r->nstores; i++) free(r->stores[i].name);
    free(r->stores);
    for (int i = 0; i < r->nded; i++) free(r->ded[i].child);
    free(r->ded);
    free(b->display);
    free(r);
}

static int rt_open_dedicated(backend *b)
{
    router *r = (router *)b;
    int slot = -1;
    for (int i = 0; i < r->nded; i++)
        if (!r->ded[i].in_use) {
            slot = i;
            break;
        }
    if (slot < 0) {
        r->ded = realloc(r->ded, sizeof(*r->ded) * (size_t)(r->nded + 1));
        if (!r->ded) abort();
        slot = r->nded++;
        r->ded[slot].child = malloc(sizeof(int) * (size_t)(r->capstores ? r->capstores : 1));
        if (!r->ded[slot].child) abort();
    }
    router_dedicated *d = &r->ded[slot];
    d->in_use = 1;
    d->child = realloc(d->child, sizeof(int) * (size_t)(r->nstores ? r->nstores : 1));
    if (!d->child) abort();
    for (int i = 0; i < r->nstores; i++) d->child[i] = -1;
    return ROUTER_DEDICATED_BASE + slot;
}

static void rt_release_dedicated(backend *b, int conn, int reuse)
{
    router *r = (router *)b;
    if (!is_dedicated(r, conn)) return;
    router_dedicated *d = &r->ded[conn - ROUTER_DEDICATED_BASE];
    d->in_use = 0;
    for (int i = 0; i < r->nstores; i++)
        if (d->child[i] >= 0) {
            int c = d->child[i];
            d->child[i] = -1;
            backend_release_dedicated(r->stores[i].b, c, reuse);
        }
    /* The stores dropped their callbacks: what waited for them goes too. */
    drop_pending(r, conn);
}

static void rt_set_push(backend *b, int conn, backend_reply_fn *fn, void *ctx)
{
    router *r = (router *)b;
    int store = r->pl->keyless(r);
    if (store < 0) return;
    int c = router_child_conn(r, store, conn);
    if (c >= 0) backend_set_push(r->stores[store].b, c, fn, ctx);
}

static int rt_capture(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                      backend_image_fn *fn, void *ctx)
{
    router *r = (router *)b;
    int store = r->pl->owner(r, key, len);
    if (store < 0) return -1;
    int c = router_child_conn(r, store, conn);
    if (c < 0) return -1;
    backend *s = r->stores[store].b;
    if (s->ops->capture(s, c, db, session, key, len, fn, ctx) != 0) {
        snprintf(r->error, sizeof(r->error), "%s", backend_error(s));
        return -1;
    }
    return 0;
}

static int rt_restore(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                      const backend_image *img, backend_reply_fn *fn, void *ctx)
{
    router *r = (router *)b;
    int store = r->pl->owner(r, key, len);
    if (store < 0) return -1;
    int c = router_child_conn(r, store, conn);
    if (c < 0) return -1;
    backend *s = r->stores[store].b;
    if (s->ops->restore(s, c, db, session, key, len, img, fn, ctx) != 0) {
        snprintf(r->error, sizeof(r->error), "%s", backend_error(s));
        return -1;
    }
    return 0;
}

/* Key tokens (memcached pools): each store's for its keys, in order. */
typedef struct tokens_merge {
    int pending;
    int nkeys;
    long long *tokens;
    char *error;
    backend_reply_fn *fn;
    void *ctx;
} tokens_merge;

typedef struct tokens_ctx {
    tokens_merge *t;
    int *pos;
    int n;
} tokens_ctx;

static void tokens_finish(tokens_merge *t)
{
    if (t->error) {
        backend_reply br = {.error = t->error};
        t->fn(t->ctx, &br);
    } else {
        struct evbuffer *out = evbuffer_new();
        if (!out) abort();
        evbuffer_add_printf(out, "*%d\r\n", t->nkeys);
        for (int i = 0; i < t->nkeys; i++) evbuffer_add_printf(out, ":%lld\r\n", t->tokens[i]);
        size_t len = evbuffer_get_length(out);
        router_deliver(BACKEND_PARSED, t->fn, t->ctx, (char *)evbuffer_pullup(out, -1), len);
        evbuffer_free(out);
    }
    free(t->error);
    free(t->tokens);
    free(t);
}

static void tokens_cb(void *ctx, const backend_reply *br)
{
    tokens_ctx *tc = ctx;
    tokens_merge *t = tc->t;
    const redisReply *p = br->parsed;
    if (br->error) {
        if (!t->error) t->error = strdup(br->error);
    } else if (p && p->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < p->elements && (int)i < tc->n; i++)
            if (p->element[i]->type == REDIS_REPLY_INTEGER) t->tokens[tc->pos[i]] = p->element[i]->integer;
    } else if (!t->error) {
        t->error = strdup("ERR backend pool: unexpected key token reply");
    }
    free(tc->pos);
    free(tc);
    if (--t->pending == 0) tokens_finish(t);
}

static int rt_key_tokens(backend *b, int conn, int nkeys, const int *dbs, char **keys, const size_t *klens,
                         backend_reply_fn *fn, void *ctx)
{
    router *r = (router *)b;
    if (nkeys == 0) {
        router_reply_later(r, BACKEND_PARSED, fn, ctx, "*0\r\n", 4, NULL);
        return 0;
    }
    tokens_merge *t = calloc(1, sizeof(*t));
    int *owner = malloc(sizeof(int) * (size_t)(nkeys ? nkeys : 1));
    int *done = calloc((size_t)(nkeys ? nkeys : 1), sizeof(int));
    int *sdbs = malloc(sizeof(int) * (size_t)(nkeys ? nkeys : 1));
    char **skeys = malloc(sizeof(char *) * (size_t)(nkeys ? nkeys : 1));
    size_t *slens = malloc(sizeof(size_t) * (size_t)(nkeys ? nkeys : 1));
    t->tokens = calloc((size_t)(nkeys ? nkeys : 1), sizeof(long long));
    if (!t || !owner || !done || !sdbs || !skeys || !slens || !t->tokens) abort();
    t->nkeys = nkeys;
    t->fn = fn;
    t->ctx = ctx;
    for (int i = 0; i < nkeys; i++) owner[i] = r->pl->owner(r, keys[i], klens[i]);
    int rc = 0;
    t->pending = 1;
    for (int i = 0; i < nkeys && rc == 0; i++) {
        if (done[i]) continue;
        int store = owner[i];
        tokens_ctx *tc = malloc(sizeof(*tc));
        if (!tc) abort();
        tc->t = t;
        tc->pos = malloc(sizeof(int) * (size_t)nkeys);
        if (!tc->pos) abort();
        tc->n = 0;
        for (int j = i; j < nkeys; j++) {
            if (done[j] || owner[j] != store) continue;
            done[j] = 1;
            sdbs[tc->n] = dbs[j];
            skeys[tc->n] = keys[j];
            slens[tc->n] = klens[j];
            tc->pos[tc->n++] = j;
        }
        int c = store < 0 ? -1 : router_child_conn(r, store, conn);
        backend *s = store < 0 ? NULL : r->stores[store].b;
        t->pending++;
        if (c < 0 || !s->ops->key_tokens || s->ops->key_tokens(s, c, tc->n, sdbs, skeys, slens, tokens_cb, tc) != 0) {
            t->pending--;
            if (s) snprintf(r->error, sizeof(r->error), "%s", backend_error(s));
            free(tc->pos);
            free(tc);
            rc = -1;
        }
    }
    free(owner);
    free(done);
    free(sdbs);
    free(skeys);
    free(slens);
    if (rc != 0 && t->pending == 1) {
        free(t->tokens);
        free(t);
        return -1;
    }
    if (rc != 0 && !t->error) t->error = strdup(r->error);
    if (--t->pending == 0) {
        /* Every part answered already (never from inside send: parts are
         * answered on a later loop turn), or none was sent. */
        tokens_finish(t);
    }
    return 0;
}

static const backend_ops router_ops = {rt_pick, rt_conn_ready, rt_send, rt_error, rt_info, rt_free,
                                       rt_open_dedicated, rt_release_dedicated, rt_set_push, NULL,
                                       rt_capture, rt_restore};
static const backend_ops router_ops_tokens = {rt_pick, rt_conn_ready, rt_send, rt_error, rt_info, rt_free,
                                              rt_open_dedicated, rt_release_dedicated, rt_set_push,
                                              rt_key_tokens, rt_capture, rt_restore};

void router_init(router *r, struct event_base *base, const router_placement_ops *pl, int connections, int memcached)
{
    r->base.ops = memcached ? &router_ops_tokens : &router_ops;
    r->base.connections = connections;
    /* The proxy runs transactions itself under its locks: a store's
     * MULTI covers only its own keys. WATCH uses each store's own. */
    r->base.has_transactions = 0;
    r->base.has_dedicated = !memcached;
    r->evb = base;
    r->pl = pl;
    r->memcached = memcached;
}
