/* Undoing what a member that died left half done (see fleet.h, "journal
 * records of scripts"): its runs' records are read from the store, and the
 * keys in slots this member owns are put back, newest first; each record
 * put back becomes a tombstone, so nothing is put back twice. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "backends/backend.h"
#include "fleet/fleet.h"
#include "fleet/fleet_int.h"
#include "util/cluster_slot.h"
#include "util/log.h"

#define RETRY_MS 100
/* Records outlive a member that dies by a day: long enough for any member
 * to put them back, short enough not to pile up in the store. */
#define RECORD_TTL "86400000"

static unsigned running;
static unsigned long long runs_undone, keys_put_back;

void fleet_recovery_info(struct evbuffer *out)
{
    evbuffer_add_printf(out, "fleet_recoveries_running:%u\r\nfleet_runs_undone:%llu\r\nfleet_keys_put_back:%llu\r\n",
                        running, runs_undone, keys_put_back);
}

typedef struct entry {
    int n, db;
    char *key;
    size_t klen;
    backend_image *img;
} entry;

typedef struct run_recovery {
    struct run_recovery *newer, *older; /* every one going on (for a shutdown) */
    fleet_run run;
    int token_known;
    int next;      /* the record to read next */
    entry *e;
    int ne, cap;
    int pending, failed, mine;
    int phase;     /* 0 reading, 1 putting back, 2 marking done */
    struct event *timer;
    void (*done)(void *ctx);
    void *ctx;
} run_recovery;

static void read_next(run_recovery *rr);
static void put_back(run_recovery *rr);

static run_recovery *runs;

static void rr_free(run_recovery *rr)
{
    if (rr->newer) rr->newer->older = rr->older;
    else runs = rr->older;
    if (rr->older) rr->older->newer = rr->newer;
    for (int i = 0; i < rr->ne; i++) {
        free(rr->e[i].key);
        backend_image_free(rr->e[i].img);
    }
    free(rr->e);
    if (rr->timer) event_free(rr->timer);
    free(rr);
}

static void rr_finish(run_recovery *rr)
{
    running--;
    if (rr->ne) runs_undone++;
    void (*done)(void *) = rr->done;
    void *ctx = rr->ctx;
    rr_free(rr);
    if (done) done(ctx);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_recovery *rr = arg;
    if (rr->phase == 0) read_next(rr);
    else put_back(rr);
}

/* The store could not be reached: the same step again a little later (the
 * slots wait meanwhile, as they would for the store). */
static void retry(run_recovery *rr)
{
    if (!rr->timer) rr->timer = evtimer_new(fleet_base(), retry_cb, rr);
    if (!rr->timer) abort();
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(rr->timer, &tv);
}

static int owned_here(const entry *e)
{
    int self = fleet_self();
    return self >= 0 && fleet_slot_owner((int)cluster_key_slot(e->key, e->klen)) == self;
}

static void record_cb(void *ctx, const backend_reply *br)
{
    run_recovery *rr = ctx;
    const redisReply *r = br->parsed;
    if (br->error || !r || r->type == REDIS_REPLY_ERROR) {
        retry(rr);
        return;
    }
    if (r->type != REDIS_REPLY_STRING) { /* the end of the run's records */
        put_back(rr);
        return;
    }
    unsigned long long token;
    entry e = {.n = rr->next};
    int kind = backend_record_decode(r->str, r->len, &token, &e.db, &e.key, &e.klen, &e.img);
    if (kind < 0 || (rr->token_known && token != rr->run.token)) { /* an older run's, left over */
        if (kind > 0) {
            free(e.key);
            backend_image_free(e.img);
        }
        put_back(rr);
        return;
    }
    rr->token_known = 1;
    rr->run.token = token;
    if (kind > 0) {
        if (rr->ne == rr->cap) {
            rr->cap = rr->cap ? rr->cap * 2 : 8;
            rr->e = realloc(rr->e, sizeof(*rr->e) * (size_t)rr->cap);
            if (!rr->e) abort();
        }
        rr->e[rr->ne++] = e;
    }
    rr->next++;
    read_next(rr);
}

static void read_next(run_recovery *rr)
{
    backend *b = fleet_store();
    char key[400];
    size_t kl = fleet_run_record_key(&rr->run, rr->next, key, sizeof(key));
    char *v[2] = {"GET", key};
    size_t l[2] = {3, kl};
    int conn = backend_pick(b, (unsigned)rr->run.place);
    if (conn < 0 || backend_send(b, conn, 0, 2, v, l, BACKEND_PARSED, record_cb, rr) != 0) retry(rr);
}

static void step_cb(void *ctx, const backend_reply *br)
{
    run_recovery *rr = ctx;
    if (br->error || (br->parsed && br->parsed->type == REDIS_REPLY_ERROR)) rr->failed = 1;
    if (--rr->pending) return;
    if (rr->failed) {
        retry(rr); /* putting an image back twice is harmless: all again */
        return;
    }
    if (rr->phase == 1) {
        keys_put_back += (unsigned long long)rr->mine;
        /* Marked done, so that no later recovery puts them back again. */
        rr->phase = 2;
        backend *b = fleet_store();
        int conn = backend_pick(b, (unsigned)rr->run.place);
        size_t tl;
        char *tomb = backend_record_tombstone(rr->run.token, &tl);
        for (int i = 0; i < rr->ne && conn >= 0; i++) {
            if (!owned_here(&rr->e[i])) continue;
            char key[400];
            size_t kl = fleet_run_record_key(&rr->run, rr->e[i].n, key, sizeof(key));
            char *v[5] = {"SET", key, tomb, "PX", RECORD_TTL};
            size_t l[5] = {3, kl, tl, 2, strlen(RECORD_TTL)};
            if (backend_send(b, conn, 0, 5, v, l, BACKEND_PARSED, step_cb, rr) == 0) rr->pending++;
        }
        free(tomb);
        if (rr->pending) return;
    }
    rr_finish(rr);
}

static void put_back(run_recovery *rr)
{
    rr->phase = 1;
    rr->failed = 0;
    backend *b = fleet_store();
    int conn = backend_pick(b, (unsigned)rr->run.place);
    if (conn < 0) {
        retry(rr);
        return;
    }
    rr->mine = 0;
    for (int i = rr->ne; i-- > 0;) {
        entry *e = &rr->e[i];
        if (!owned_here(e)) continue;
        rr->mine++;
        if (backend_restore(b, conn, e->db, 0, e->key, e->klen, e->img, step_cb, rr) != 0) {
            rr->failed = 1;
            break;
        }
        rr->pending++;
    }
    if (rr->pending) return;
    if (rr->failed) {
        retry(rr);
        return;
    }
    rr_finish(rr);
}

void fleet_recover_run(const fleet_run *r, long long after_ms, void (*done)(void *ctx), void *ctx)
{
    run_recovery *rr = calloc(1, sizeof(*rr));
    if (!rr) abort();
    rr->older = runs;
    if (runs) runs->newer = rr;
    runs = rr;
    rr->run = *r;
    rr->token_known = r->token != 0;
    rr->done = done;
    rr->ctx = ctx;
    running++;
    if (after_ms <= 0) {
        read_next(rr);
        return;
    }
    rr->timer = evtimer_new(fleet_base(), retry_cb, rr);
    if (!rr->timer) abort();
    struct timeval tv = {(time_t)(after_ms / 1000), (suseconds_t)(after_ms % 1000) * 1000};
    evtimer_add(rr->timer, &tv);
}

/* ---- a member that left: every place's head, then each run found ------------ */

typedef struct member_recovery {
    struct member_recovery *newer, *older;
    char id[FLEET_ID_LEN + 1];
    int runs_left;
    struct event *timer;
    void (*done)(void *ctx);
    void *ctx;
} member_recovery;

static void read_heads(member_recovery *mr);

static member_recovery *members;

static void mr_free(member_recovery *mr)
{
    if (mr->newer) mr->newer->older = mr->older;
    else members = mr->older;
    if (mr->older) mr->older->newer = mr->newer;
    if (mr->timer) event_free(mr->timer);
    free(mr);
}

static void member_run_done(void *ctx)
{
    member_recovery *mr = ctx;
    if (--mr->runs_left) return;
    running--;
    void (*done)(void *) = mr->done;
    void *dctx = mr->ctx;
    mr_free(mr);
    if (done) done(dctx);
}

static void heads_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_heads(arg);
}

static void heads_retry(member_recovery *mr)
{
    if (!mr->timer) mr->timer = evtimer_new(fleet_base(), heads_retry_cb, mr);
    if (!mr->timer) abort();
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(mr->timer, &tv);
}

static void heads_cb(void *ctx, const backend_reply *br)
{
    member_recovery *mr = ctx;
    const redisReply *r = br->parsed;
    if (br->error || !r || r->type != REDIS_REPLY_ARRAY) {
        heads_retry(mr);
        return;
    }
    mr->runs_left = 1; /* this function's own, dropped at the end */
    for (size_t i = 0; i < r->elements && i < FLEET_RUN_PLACES; i++) {
        const redisReply *h = r->element[i];
        if (h->type != REDIS_REPLY_STRING) continue;
        unsigned long long token;
        int db;
        char *key = NULL;
        size_t klen;
        backend_image *img = NULL;
        int kind = backend_record_decode(h->str, h->len, &token, &db, &key, &klen, &img);
        free(key);
        backend_image_free(img);
        if (kind < 0) continue;
        fleet_run run = {.place = (int)i, .token = token};
        memcpy(run.id, mr->id, sizeof(run.id));
        mr->runs_left++;
        fleet_recover_run(&run, 0, member_run_done, mr);
    }
    member_run_done(mr);
}

static void read_heads(member_recovery *mr)
{
    backend *b = fleet_store();
    char **v = calloc(FLEET_RUN_PLACES + 1, sizeof(*v));
    size_t *l = calloc(FLEET_RUN_PLACES + 1, sizeof(*l));
    char *keys = malloc((size_t)FLEET_RUN_PLACES * 400);
    if (!v || !l || !keys) abort();
    v[0] = "MGET";
    l[0] = 4;
    fleet_run run = {0};
    memcpy(run.id, mr->id, sizeof(run.id));
    for (int i = 0; i < FLEET_RUN_PLACES; i++) {
        run.place = i;
        v[1 + i] = keys + (size_t)i * 400;
        l[1 + i] = fleet_run_record_key(&run, 0, v[1 + i], 400);
    }
    int conn = backend_pick(b, 0);
    if (conn < 0 || backend_send(b, conn, 0, FLEET_RUN_PLACES + 1, v, l, BACKEND_PARSED, heads_cb, mr) != 0)
        heads_retry(mr);
    free(v);
    free(l);
    free(keys);
}

void fleet_recover_member(const char *id, void (*done)(void *ctx), void *ctx)
{
    member_recovery *mr = calloc(1, sizeof(*mr));
    if (!mr) abort();
    mr->older = members;
    if (members) members->newer = mr;
    members = mr;
    snprintf(mr->id, sizeof(mr->id), "%s", id);
    mr->done = done;
    mr->ctx = ctx;
    running++;
    read_heads(mr);
}

void fleet_recovery_stop(void)
{
    /* Shutting down: what is not put back yet stays recorded in the store,
     * for whoever serves those slots next. Each waiting holder is let go. */
    while (runs) {
        run_recovery *rr = runs;
        void (*done)(void *) = rr->done;
        void *ctx = rr->ctx;
        running--;
        rr_free(rr);
        if (done && done != member_run_done) done(ctx);
    }
    while (members) {
        member_recovery *mr = members;
        void (*done)(void *) = mr->done;
        void *ctx = mr->ctx;
        running--;
        mr_free(mr);
        if (done) done(ctx);
    }
}
