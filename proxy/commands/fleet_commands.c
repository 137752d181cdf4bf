/* FLEET LOCK <mode> <keyspace 0|1> [RUN <tag>] [<db> <unit>]...: another
 * member takes units this member owns, for a script, transaction or
 * command it runs that also touches other members' slots. Answered +OK
 * once granted; held until FLEET UNLOCK or until the connection closes (a
 * member that dies gives its units back with its connections). Units held
 * for a script run (RUN) are given back only after what the run recorded
 * for keys here is put back: a run whose member vanished is undone. */
#include "proxy/commands/fleet_commands.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/backend.h"
#include "fleet/fleet.h"
#include "proxy/core/server.h"
#include "util/cluster_slot.h"
#include "proxy/core/locks.h"
#include "proxy/core/reply.h"
#include "util/strconv.h"
#include "util/clock.h"

typedef struct fleet_hold {
    struct fleet_hold *next;
    client *c;
    lock_set *ls;
    reply_slot *slot; /* until granted */
    fleet_run run;    /* place -1: not a script run's */
    /* Units of slots this member does not serve yet (a range it takes over,
     * undone first; a view that has not caught up) are not taken until it
     * does: the requester's writes must not come before the undo. */
    int *slots, nslots;
    struct event *defer;
    long long since_ms;
} fleet_hold;

static void hold_granted(lock_set *ls, void *ctx)
{
    fleet_hold *h = ctx;
    (void)ls;
    if (!h->slot) return;
    reply_ok(h->slot->buf);
    reply_slot *s = h->slot;
    h->slot = NULL;
    client_slot_done(s);
}

static void hold_free(void *ctx)
{
    fleet_hold *h = ctx;
    lock_set_release(h->ls);
    if (h->defer) event_free(h->defer);
    free(h->slots);
    free(h);
}

static int slots_served(const fleet_hold *h)
{
    for (int i = 0; i < h->nslots; i++)
        if (fleet_slot_route(h->slots[i]) != FLEET_SERVE) return 0;
    return 1;
}

static void hold_acquire(fleet_hold *h);

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hold_acquire(arg);
}

static void hold_acquire(fleet_hold *h)
{
    if (!slots_served(h)) {
        long long now = clock_ms();
        if (!h->since_ms) h->since_ms = now;
        if (now - h->since_ms < fleet_wait_limit_ms()) {
            if (!h->defer) h->defer = evtimer_new(server.base, defer_cb, h);
            if (!h->defer) abort();
            static const struct timeval step = {0, 10000};
            evtimer_add(h->defer, &step);
            return;
        }
        /* Answered as refused: the requester starts again from its view. */
        reply_error(h->slot->buf, "CLUSTERDOWN Hash slot not served");
        reply_slot *s = h->slot;
        h->slot = NULL;
        client_slot_done(s);
        return;
    }
    if (lock_set_acquire(h->ls, 0) == LOCK_GRANTED) hold_granted(h->ls, h);
}

/* unlocked: FLEET UNLOCK (the run is over); else the requester's
 * connection closed while holding, so its run may be half done. */
static void release_holds(client *c, int unlocked)
{
    fleet_hold *h = c->fleet_holds;
    c->fleet_holds = NULL;
    while (h) {
        fleet_hold *next = h->next;
        if (h->slot && unlocked) {
            /* Given up before it was granted: answered, so that the
             * requester's connection stays in order. */
            reply_error(h->slot->buf, "ERR FLEET LOCK given up");
            client_slot_done(h->slot);
        }
        h->slot = NULL; /* else the client's slots go with it */
        h->c = NULL;
        if (h->defer) evtimer_del(h->defer);
        /* A little later: what the vanished member sent the store just
         * before may still be on its way there. */
        if (!unlocked && h->run.place >= 0 && lock_set_granted(h->ls))
            fleet_recover_run(&h->run, fleet_lease_ms() / 4, hold_free, h);
        else hold_free(h);
        h = next;
    }
}

static int arg_is(const char *a, size_t len, const char *name) { return strlen(name) == len && !strncasecmp(a, name, len); }

int fleet_own_command(client *c, int argc, char **argv, size_t *argvlen)
{
    if (argvlen[0] != 5 || strncasecmp(argv[0], "fleet", 5)) return 0;
    if (!fleet_enabled()) {
        reply_error(client_reply_buffer(c), "ERR this proxy is not a fleet member (fleet-name)");
        return 1;
    }
    if (argc == 2 && arg_is(argv[1], argvlen[1], "unlock")) {
        /* Requests given up are answered first: the reply buffer is taken
         * after them. */
        release_holds(c, 1);
        reply_ok(client_reply_buffer(c));
        return 1;
    }
    struct evbuffer *out = client_reply_buffer(c);
    long long mode, ks;
    if (argc < 4 || !arg_is(argv[1], argvlen[1], "lock") || (argc - 4) % 2 || !string_to_ll(argv[2], argvlen[2], &mode) ||
        mode < 0 || mode >= LOCK_MODES || !string_to_ll(argv[3], argvlen[3], &ks)) {
        reply_error(out, "ERR syntax error");
        return 1;
    }
    lock_set *ls = NULL;
    fleet_hold *h = calloc(1, sizeof(*h));
    if (!h) abort();
    h->run.place = -1;
    int units = 4;
    if (argc >= 6 && arg_is(argv[4], argvlen[4], "run")) {
        if (fleet_run_parse_tag(argv[5], argvlen[5], &h->run) != 0) {
            free(h);
            reply_error(out, "ERR syntax error");
            return 1;
        }
        units = 6;
    }
    ls = lock_set_new((int)mode, hold_granted, h);
    lock_set_local_only(ls);
    for (int i = units; i < argc; i += 2) {
        long long db;
        if (!string_to_ll(argv[i], argvlen[i], &db) || db < 0) {
            lock_set_release(ls);
            free(h->slots);
            free(h);
            reply_error(out, "ERR syntax error");
            return 1;
        }
        lock_set_add_key(ls, (int)db, argv[i + 1], argvlen[i + 1]);
        if (!(h->nslots & 15)) {
            h->slots = realloc(h->slots, sizeof(*h->slots) * (size_t)(h->nslots + 16));
            if (!h->slots) abort();
        }
        h->slots[h->nslots++] = (int)cluster_key_slot(argv[i + 1], argvlen[i + 1]);
    }
    if (ks) lock_set_add_keyspace(ls);
    if (mode == LOCK_SCRIPT_EXCL) lock_set_set_written(ls, 1); /* its holder may write: WATCH versions move */
    h->c = c;
    h->ls = ls;
    h->next = c->fleet_holds;
    c->fleet_holds = h;
    h->slot = client_slot_add(c);
    hold_acquire(h);
    return 1;
}

void fleet_commands_client_gone(client *c) { release_holds(c, 0); }
