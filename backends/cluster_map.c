#include "backends/cluster_map.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void map_clear(cluster_map *m)
{
    m->nnodes = 0;
    m->nmasters = 0;
    m->nodes = NULL;
    for (int s = 0; s < CLUSTER_SLOT_COUNT; s++) m->owner[s] = -1;
}

void cluster_map_free(cluster_map *m)
{
    if (!m) return;
    for (int i = 0; i < m->nnodes; i++) {
        free(m->nodes[i].host);
        free(m->nodes[i].id);
    }
    free(m->nodes);
    map_clear(m);
}

int cluster_map_find(const cluster_map *m, const char *host, int port)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strcasecmp(m->nodes[i].host, host) == 0) return i;
    return -1;
}

static int is_text(const redisReply *e)
{
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS;
}

/* The address of one node entry, [endpoint, port, id?, ...], checked; the
 * host points into the reply or is asked_host. */
typedef struct node_ref {
    const char *host;
    size_t hostlen;
    int port;
    const char *id;
    size_t idlen;
} node_ref;

static int read_node(const redisReply *e, const char *asked_host, node_ref *out, char *err, size_t errlen)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) {
        set_err(err, errlen, "CLUSTER SLOTS: a node is not an array of endpoint and port");
        return -1;
    }
    const redisReply *ep = e->element[0], *port = e->element[1];
    if (ep->type == REDIS_REPLY_NIL || (is_text(ep) && (ep->len == 0 || (ep->len == 1 && ep->str[0] == '?')))) {
        /* The node answering does not know this node's address. */
        if (!asked_host) {
            set_err(err, errlen, "CLUSTER SLOTS: a node's endpoint is unknown and no asked host was given");
            return -1;
        }
        out->host = asked_host;
        out->hostlen = strlen(asked_host);
    } else if (is_text(ep) && !memchr(ep->str, '\0', ep->len)) {
        out->host = ep->str;
        out->hostlen = ep->len;
    } else {
        set_err(err, errlen, "CLUSTER SLOTS: a node's endpoint is not a string");
        return -1;
    }
    if (port->type != REDIS_REPLY_INTEGER || port->integer <= 0 || port->integer > 65535) {
        set_err(err, errlen, "CLUSTER SLOTS: a node's port is not an integer in 1..65535");
        return -1;
    }
    out->port = (int)port->integer;
    out->id = NULL;
    out->idlen = 0;
    if (e->elements >= 3) {
        const redisReply *id = e->element[2];
        if (is_text(id) && id->len > 0) {
            out->id = id->str;
            out->idlen = id->len;
        } else if (id->type != REDIS_REPLY_NIL && !is_text(id)) {
            set_err(err, errlen, "CLUSTER SLOTS: a node's id is not a string");
            return -1;
        }
    }
    return 0;
}

static char *copy_text(const char *s, size_t len)
{
    char *c = malloc(len + 1);
    if (c) {
        memcpy(c, s, len);
        c[len] = '\0';
    }
    return c;
}

static int find_ref(const cluster_map *m, const node_ref *n)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == n->port && strlen(m->nodes[i].host) == n->hostlen &&
            strncasecmp(m->nodes[i].host, n->host, n->hostlen) == 0)
            return i;
    return -1;
}

/* The node's index, added at the end when it is not there yet; -1 when out
 * of memory. */
static int add_node(cluster_map *m, int *cap, const node_ref *n)
{
    int i = find_ref(m, n);
    if (i >= 0) {
        if (!m->nodes[i].id && n->id && !(m->nodes[i].id = copy_text(n->id, n->idlen))) return -1;
        return i;
    }
    if (m->nnodes == *cap) {
        int ncap = *cap ? *cap * 2 : 8;
        cluster_node *nodes = realloc(m->nodes, (size_t)ncap * sizeof *nodes);
        if (!nodes) return -1;
        m->nodes = nodes;
        *cap = ncap;
    }
    cluster_node *c = &m->nodes[m->nnodes];
    c->host = copy_text(n->host, n->hostlen);
    c->id = n->id ? copy_text(n->id, n->idlen) : NULL;
    c->port = n->port;
    if (!c->host || (n->id && !c->id)) {
        free(c->host);
        free(c->id);
        return -1;
    }
    return m->nnodes++;
}

/* Checks the shape of every entry before anything is kept, so a bad reply
 * is refused as a whole. */
static int check_entries(const redisReply *r, const char *asked_host, char *err, size_t errlen)
{
    if (r->type != REDIS_REPLY_ARRAY) {
        set_err(err, errlen, "CLUSTER SLOTS: the reply is not an array");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
            set_err(err, errlen, "CLUSTER SLOTS: entry %zu is not an array of start, end and nodes", i);
            return -1;
        }
        const redisReply *start = e->element[0], *end = e->element[1];
        if (start->type != REDIS_REPLY_INTEGER || end->type != REDIS_REPLY_INTEGER || start->integer < 0 ||
            end->integer < start->integer || end->integer >= CLUSTER_SLOT_COUNT) {
            set_err(err, errlen, "CLUSTER SLOTS: entry %zu has no slot range within 0..16383", i);
            return -1;
        }
        for (size_t j = 2; j < e->elements; j++) {
            node_ref n;
            if (read_node(e->element[j], asked_host, &n, err, errlen) < 0) return -1;
        }
    }
    return 0;
}

int cluster_map_from_slots(const redisReply *r, const char *asked_host, cluster_map *out, char *err,
                           size_t errlen)
{
    map_clear(out);
    if (!r) {
        set_err(err, errlen, "CLUSTER SLOTS: no reply");
        return -1;
    }
    if (check_entries(r, asked_host, err, errlen) < 0) return -1;

    int cap = 0;
    /* Masters first, each once, in the order of their first range. */
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        node_ref n;
        read_node(e->element[2], asked_host, &n, NULL, 0);
        int idx = add_node(out, &cap, &n);
        if (idx < 0) goto oom;
        if (idx > INT16_MAX) {
            set_err(err, errlen, "CLUSTER SLOTS: more masters than a map holds");
            cluster_map_free(out);
            return -1;
        }
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++) out->owner[s] = (int16_t)idx;
    }
    out->nmasters = out->nnodes;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        for (size_t j = 3; j < e->elements; j++) {
            node_ref n;
            read_node(e->element[j], asked_host, &n, NULL, 0);
            if (add_node(out, &cap, &n) < 0) goto oom;
        }
    }
    return 0;

oom:
    set_err(err, errlen, "CLUSTER SLOTS: out of memory");
    cluster_map_free(out);
    return -1;
}

/* Digits only, no sign, value <= max; -1 otherwise. */
static long parse_bounded(const char *s, size_t len, long max)
{
    if (len == 0 || len > 6) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

int cluster_redirect_parse(const char *text, size_t len, int *slot, char *host, size_t hostlen, int *port)
{
    int kind;
    size_t pos;
    if (len > 6 && memcmp(text, "MOVED ", 6) == 0) {
        kind = CLUSTER_REDIRECT_MOVED;
        pos = 6;
    } else if (len > 4 && memcmp(text, "ASK ", 4) == 0) {
        kind = CLUSTER_REDIRECT_ASK;
        pos = 4;
    } else {
        return CLUSTER_REDIRECT_NONE;
    }
    const char *sp = memchr(text + pos, ' ', len - pos);
    if (!sp) return CLUSTER_REDIRECT_NONE;
    long s = parse_bounded(text + pos, (size_t)(sp - (text + pos)), CLUSTER_SLOT_COUNT - 1);
    if (s < 0) return CLUSTER_REDIRECT_NONE;

    const char *ep = sp + 1, *end = text + len, *colon = NULL;
    for (const char *c = ep; c < end; c++)
        if (*c == ':') colon = c;
    if (!colon) return CLUSTER_REDIRECT_NONE;
    long p = parse_bounded(colon + 1, (size_t)(end - colon - 1), 65535);
    if (p <= 0) return CLUSTER_REDIRECT_NONE;

    const char *h = ep;
    size_t hlen = (size_t)(colon - ep);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (memchr(h, ' ', hlen) || memchr(h, '\0', hlen) || hlen >= hostlen) return CLUSTER_REDIRECT_NONE;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *slot = (int)s;
    *port = (int)p;
    return kind;
}
