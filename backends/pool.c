/* A pool of stores placed as twemproxy places them (util/placement.c):
 * the same server list puts every key on the same server, so a pool moves
 * from twemproxy to evalproxy without moving a key. With auto-eject-hosts
 * a store that keeps failing leaves the placement for a while, and its
 * keys go to the others, as twemproxy does. */
#include "backends/router_int.h"
#include "backends/store.h"
#include "util/log.h"
#include "util/placement.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

typedef struct pool_state {
    placement *pl;
    int distribution, hash;
    char hash_tag[3];
    int auto_eject, failure_limit;
    long long retry_timeout_ms;
    unsigned *weights;
    int ejected; /* how many are out */
    unsigned long long *owned; /* keys placed on each store (INFO share) */
} pool_state;



static void pool_relayout(router *r)
{
    pool_state *ps = r->placement_state;
    int *live = malloc(sizeof(int) * (size_t)r->nstores);
    if (!live) abort();
    ps->ejected = 0;
    for (int i = 0; i < r->nstores; i++) {
        live[i] = !r->stores[i].ejected_until_ms;
        ps->ejected += !live[i];
    }
    placement_set_live(ps->pl, live);
    free(live);
}

/* Ejects stores that failed too often and takes back those whose time is up. */
static void pool_check_health(router *r)
{
    pool_state *ps = r->placement_state;
    if (!ps->auto_eject) return;
    int changed = 0;
    long long now = 0;
    for (int i = 0; i < r->nstores; i++) {
        router_store *s = &r->stores[i];
        if (s->ejected_until_ms) {
            if (!now) now = clock_ms();
            if (now >= s->ejected_until_ms) {
                s->ejected_until_ms = 0;
                s->failures = 0;
                changed = 1;
                log_notice("backend pool: %s is back in the placement", s->name);
            }
        } else if (s->failures >= ps->failure_limit) {
            if (!now) now = clock_ms();
            s->ejected_until_ms = now + ps->retry_timeout_ms;
            changed = 1;
            log_warning("backend pool: %s failed %d times: out of the placement for %lld ms", s->name, s->failures,
                        ps->retry_timeout_ms);
        }
    }
    if (changed) pool_relayout(r);
}

static int pool_owner(router *r, const char *key, size_t len)
{
    pool_state *ps = r->placement_state;
    if (ps->auto_eject) pool_check_health(r);
    int i = placement_owner(ps->pl, key, len);
    if (i < 0) snprintf(r->error, sizeof(r->error), "ERR backend pool: no store is available");
    return i;
}

static int pool_active(router *r, int store) { return !r->stores[store].ejected_until_ms; }

static int pool_keyless(router *r)
{
    pool_state *ps = r->placement_state;
    if (ps->auto_eject) pool_check_health(r);
    /* The first store that is up: commands without keys (PING, PUBLISH and
     * SUBSCRIBE, CLIENT...) do not fail while any store works. */
    for (int i = 0; i < r->nstores; i++)
        if (!r->stores[i].ejected_until_ms && backend_pick(r->stores[i].b, 0) >= 0) return i;
    for (int i = 0; i < r->nstores; i++)
        if (!r->stores[i].ejected_until_ms) return i;
    snprintf(r->error, sizeof(r->error), "ERR backend pool: no store is available");
    return -1;
}

static void pool_info(router *r, struct evbuffer *out)
{
    pool_state *ps = r->placement_state;
    evbuffer_add_printf(out, "backend_distribution:%s\r\nbackend_hash:%s\r\nbackend_hash_tag:%s\r\n",
                        placement_distribution_name(ps->distribution), placement_hash_name(ps->hash), ps->hash_tag);
    evbuffer_add_printf(out, "backend_auto_eject_hosts:%s\r\nbackend_stores_ejected:%d\r\n",
                        ps->auto_eject ? "yes" : "no", ps->ejected);
    unsigned total_weight = 0;
    for (int i = 0; i < r->nstores; i++) total_weight += ps->weights[i];
    for (int i = 0; i < r->nstores; i++) {
        router_store *s = &r->stores[i];
        int ready = 0;
        for (int c = 0; c < r->base.connections; c++) ready += backend_conn_ready(s->b, c);
        const char *state = s->ejected_until_ms ? "ejected" : ready ? "up" : "down";
        evbuffer_add_printf(out, "store%d:name=%s,address=%s,state=%s,weight=%u,share=%.2f,requests=%llu\r\n", i,
                            s->name, s->b->display, state, ps->weights[i],
                            total_weight ? 100.0 * ps->weights[i] / total_weight : 0.0, s->requests);
    }
}

static void pool_free(router *r)
{
    pool_state *ps = r->placement_state;
    if (!ps) return;
    placement_free(ps->pl);
    free(ps->weights);
    free(ps->owned);
    free(ps);
}

static const router_placement_ops pool_ops = {pool_owner, NULL, pool_active, pool_keyless, NULL, pool_info, pool_free,
                                              "pool"};

backend *backend_pool_create(struct event_base *base, const backend_pool_member *members, int n,
                             const backend_pool_options *opt, int connections, const struct store_tls_options *tls,
                             char *err, size_t errlen)
{
    if (n < 1 || n > 1024) {
        snprintf(err, errlen, "a pool has 1 to 1024 stores"); /* SCAN's cursor names one of 1024 */
        return NULL;
    }
    int distribution = placement_distribution_parse(opt->distribution ? opt->distribution : "ketama");
    if (distribution < 0) {
        snprintf(err, errlen, "unknown distribution '%s' (ketama, modula or random)", opt->distribution);
        return NULL;
    }
    int hash = placement_hash_parse(opt->hash ? opt->hash : "fnv1a_64");
    if (hash < 0) {
        snprintf(err, errlen, "unknown hash '%s'", opt->hash);
        return NULL;
    }
    if (opt->hash_tag && opt->hash_tag[0] && strlen(opt->hash_tag) != 2) {
        snprintf(err, errlen, "hash-tag must be two characters, such as \"{}\"");
        return NULL;
    }
    router *r = calloc(1, sizeof(*r));
    pool_state *ps = calloc(1, sizeof(*ps));
    if (!r || !ps) abort();
    r->placement_state = ps;
    ps->distribution = distribution;
    ps->hash = hash;
    if (opt->hash_tag) snprintf(ps->hash_tag, sizeof(ps->hash_tag), "%s", opt->hash_tag);
    ps->auto_eject = opt->auto_eject_hosts;
    ps->failure_limit = opt->server_failure_limit > 0 ? opt->server_failure_limit : 2;
    ps->retry_timeout_ms = opt->server_retry_timeout_ms > 0 ? opt->server_retry_timeout_ms : 30000;
    ps->weights = calloc((size_t)n, sizeof(unsigned));
    ps->owned = calloc((size_t)n, sizeof(unsigned long long));
    placement_server *servers = calloc((size_t)n, sizeof(*servers));
    char (*names)[300] = calloc((size_t)n, sizeof(*names));
    if (!ps->weights || !ps->owned || !servers || !names) abort();
    int memcached = -1;
    router_init(r, base, &pool_ops, connections, 0);
    for (int i = 0; i < n; i++) {
        backend_url u;
        char why[256];
        if (backend_url_parse(members[i].url, &u, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "store %d: %s", i + 1, why);
            goto fail;
        }
        int is_mc = !strncmp(u.scheme, "memcached", 9);
        if (memcached >= 0 && is_mc != memcached) {
            backend_url_free(&u);
            snprintf(err, errlen, "a pool holds stores of one kind: %s is not like the first", members[i].url);
            goto fail;
        }
        memcached = is_mc;
        if (members[i].name && members[i].name[0]) snprintf(names[i], sizeof(names[i]), "%s", members[i].name);
        else placement_default_name(u.host, u.port, names[i], sizeof(names[i]));
        backend_url_free(&u);
        backend *b = backend_create(base, members[i].url, connections, 16, tls, why, sizeof(why));
        if (!b) {
            snprintf(err, errlen, "store %d: %s", i + 1, why);
            goto fail;
        }
        ps->weights[i] = members[i].weight ? members[i].weight : 1;
        servers[i].name = names[i];
        servers[i].name_len = strlen(names[i]);
        servers[i].weight = ps->weights[i];
        router_add_store(r, b, names[i]);
    }
    router_init(r, base, &pool_ops, connections, memcached);
    r->base.default_db = r->stores[0].b->default_db;
    r->tag_braces = !strcmp(ps->hash_tag, "{}");
    ps->pl = placement_new(distribution, hash, ps->hash_tag[0] ? ps->hash_tag : NULL, servers, n);
    if (!ps->pl) {
        snprintf(err, errlen, "the pool's placement could not be built");
        goto fail;
    }
    char disp[64];
    snprintf(disp, sizeof(disp), "pool of %d", n);
    r->base.display = strdup(disp);
    free(servers);
    free(names);
    return &r->base;
fail:
    free(servers);
    free(names);
    r->base.display = NULL;
    r->base.ops->free(&r->base);
    return NULL;
}
