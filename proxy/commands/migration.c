/* Live migration: moving a key (copy with its TTL, then delete from the old
 * store once the new one has it), the keys known to be out of the old
 * store, the background mover, and the keyspace-wide commands answered
 * over both stores. */
#include "proxy/commands/migration.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "backends/conn.h"
#include "proxy/commands/key_presteps.h"
#include "proxy/core/config.h"
#include "proxy/core/locks.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "util/key_set.h"
#include "util/log.h"
#include "util/strconv.h"
#include "util/clock.h"

/* A key set this large (about 100 MB) is dropped and grows again: it only saves checks. */
#define KNOWN_MAX 1000000
/* Moves of the mover in flight at once, and the round trip past which the
 * new store counts as slow and the mover waits. */
#define MOVER_WINDOW 32
#define SLOW_MOVE_US 50000
#define MOVER_TICK_MS 20
#define SCAN_BATCH "1000"

enum mstate { M_MOVING, M_PAUSED, M_DONE };

static struct {
    backend *old;
    int active;          /* keys may still be in the old store */
    key_set *known;      /* (db, key) known to be out of the old store */
    struct event *tick;
    /* counters */
    unsigned long long moved, absent, errors, retries;
    unsigned long long kept_new; /* in both stores when moved: the new store's copy stayed */
    unsigned long long first_touch_moves, first_touch_us;
    long long started_ms, done_ms;
    /* the mover */
    double budget;
    int inflight;
    unsigned long long ewma_us; /* recent moves' round trips */
    int scan_db, scanning, pass_found;
    int use_keys;          /* the old store has no SCAN (before 2.8): KEYS * */
    int pumping;
    int scan_error_logged; /* a listing's error is logged once */
    unsigned long long scan_cursor;
    long long left_estimate; /* keys the last full pass saw, less those moved since */
    long long pass_seen;
    struct mkey *queue_head, *queue_tail;
    long long queued;
    /* moves per second, over the last few seconds */
    unsigned long long rate_moved_at_mark;
    long long rate_mark_ms;
    double rate;
} mig;

typedef struct mkey {
    struct mkey *next;
    int db, failed;
    size_t len;
    char key[];
} mkey;

static const char *old_name(void) { return mig.old ? mig.old->display : "?"; }

static int is_known(int db, const char *key, size_t len) { return key_set_has(mig.known, db, key, len); }

static void known_add(int db, const char *key, size_t len)
{
    if (!mig.active) return; /* the old store is empty: nothing is checked any more */
    if (key_set_count(mig.known) >= KNOWN_MAX) key_set_clear(mig.known);
    key_set_add(mig.known, db, key, len);
}

/* ---- moving one key ---------------------------------------------------------------- */

typedef void move_done_fn(void *ctx, const char *error);

typedef struct move {
    int db, conn, old_conn;
    unsigned long long session, start_us;
    move_done_fn *done;
    void *ctx;
    size_t len;
    char key[];
} move;

static void move_finish(move *m, const char *error)
{
    unsigned long long us = clock_us() - m->start_us;
    mig.ewma_us = mig.ewma_us ? (mig.ewma_us * 7 + us) / 8 : us;
    if (error) mig.errors++;
    move_done_fn *done = m->done;
    void *ctx = m->ctx;
    free(m);
    done(ctx, error);
}

static void move_fail(move *m, const char *why)
{
    char err[400];
    snprintf(err, sizeof(err), "ERR migration: moving the key from the old store %s failed: %s", old_name(),
             why && why[0] == '-' ? why + 1 : why);
    move_finish(m, err);
}

/* The old store no longer has it: the move is done. */
static void old_deleted(void *ctx, const backend_reply *r)
{
    move *m = ctx;
    if (r->error) return move_fail(m, r->error);
    if (r->parsed->type == REDIS_REPLY_ERROR) return move_fail(m, r->parsed->str);
    known_add(m->db, m->key, m->len);
    mig.moved++;
    if (mig.left_estimate > 0) mig.left_estimate--;
    move_finish(m, NULL);
}

static void delete_from_old(move *m);

/* The new store has the copy: only now does the old one let go of it. */
static void new_restored(void *ctx, const backend_reply *r)
{
    move *m = ctx;
    if (r->error) return move_fail(m, r->error);
    if (r->parsed->type == REDIS_REPLY_ERROR) return move_fail(m, r->parsed->str);
    delete_from_old(m);
}

/* Whether the new store has the key already decides: a copy there is
 * never overwritten. It is the same value (a move cut short between the
 * copy and the delete) or a newer one, so the old store's goes. */
typedef struct move_copy {
    move *m;
    backend_image *img;
    int conn;
} move_copy;

static void delete_from_old(move *m)
{
    char *v[2] = {"DEL", m->key};
    size_t l[2] = {3, m->len};
    if (backend_send_for(mig.old, m->old_conn, m->db, m->session, 2, v, l, BACKEND_PARSED, old_deleted, m) != 0)
        move_fail(m, backend_error(mig.old));
}

static void new_checked(void *ctx, const backend_reply *r)
{
    move_copy *mc = ctx;
    move *m = mc->m;
    backend_image *img = mc->img;
    int conn = mc->conn;
    free(mc);
    if (r->error || r->parsed->type != REDIS_REPLY_INTEGER) {
        backend_image_free(img);
        return move_fail(m, r->error ? r->error : r->parsed->type == REDIS_REPLY_ERROR ? r->parsed->str
                                                                                        : "unexpected reply to EXISTS");
    }
    if (r->parsed->integer > 0) {
        mig.kept_new++;
        backend_image_free(img);
        delete_from_old(m);
        return;
    }
    int rc = backend_restore(server.backend, conn, m->db, m->session, m->key, m->len, img, new_restored, m);
    backend_image_free(img);
    if (rc != 0) move_fail(m, backend_error(server.backend));
}

static void old_captured(void *ctx, backend_image *img, const char *error)
{
    move *m = ctx;
    if (error) return move_fail(m, error);
    if (!img->exists) {
        /* Never there, or gone already: nothing to copy. */
        backend_image_free(img);
        known_add(m->db, m->key, m->len);
        mig.absent++;
        move_finish(m, NULL);
        return;
    }
    char err[256];
    if (backend_image_adapt(img, mig.old, server.backend, err, sizeof(err)) != 0) {
        backend_image_free(img);
        return move_fail(m, err);
    }
    move_copy *mc = malloc(sizeof(*mc));
    if (!mc) abort();
    mc->m = m;
    mc->img = img;
    mc->conn = m->conn >= 0 ? m->conn : backend_pick(server.backend, (unsigned)m->session);
    char *v[2] = {"EXISTS", m->key};
    size_t l[2] = {6, m->len};
    if (mc->conn < 0 || backend_send_for(server.backend, mc->conn, m->db, m->session, 2, v, l, BACKEND_PARSED,
                                         new_checked, mc) != 0) {
        free(mc);
        backend_image_free(img);
        move_fail(m, backend_error(server.backend));
    }
}

/* Moves (db, key) from the old store to the new one, on the new store's
 * connection conn (-1: any). The caller holds the key's lock. */
static void move_key(int db, const char *key, size_t len, int conn, unsigned long long session, move_done_fn *done,
                     void *ctx)
{
    move *m = malloc(sizeof(*m) + len + 1);
    if (!m) abort();
    m->db = db;
    m->conn = conn;
    m->session = session;
    m->done = done;
    m->ctx = ctx;
    m->len = len;
    memcpy(m->key, key, len);
    m->key[len] = '\0';
    m->start_us = clock_us();
    m->old_conn = backend_pick(mig.old, (unsigned)session);
    if (m->old_conn < 0 || backend_capture(mig.old, m->old_conn, db, session, key, len, old_captured, m) != 0) {
        char err[400];
        snprintf(err, sizeof(err), "ERR migration: the old store %s is unavailable (%s)", old_name(),
                 backend_error(mig.old));
        move_finish(m, err);
    }
}

/* ---- the key prestep: move on first touch ---------------------------------------------- */

static int flushes(const command_def *cmd) { return !strcmp(cmd->name, "flushdb") || !strcmp(cmd->name, "flushall"); }

/* The database a MOVE or COPY ... DB sends its key to (-1: none). */
static int other_db(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    long long db = -1;
    if (!strcmp(cmd->name, "move") && argc == 3) {
        if (!string_to_ll(argv[2], argvlen[2], &db)) db = -1;
    } else if (!strcmp(cmd->name, "copy")) {
        for (int j = 3; j + 1 < argc; j++)
            if (!strcasecmp(argv[j], "db") && !string_to_ll(argv[j + 1], argvlen[j + 1], &db)) db = -1;
    }
    return db >= 0 && db < config.databases ? (int)db : -1;
}

/* The (db, argv index) pairs a command touches: its keys, and the name in
 * the target database of MOVE and COPY ... DB. */
typedef struct touched {
    int n, dbs[66], idx[66];
} touched;

static int touched_keys(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen, touched *t)
{
    t->n = 0;
    if (!cmd->key_spec_count && !cmd->getkeys) return 0;
    int keys[64];
    int n = command_get_keys(cmd, argc, argv, argvlen, keys, NULL, 64);
    if (n < 0) return 0;
    if (n > 64) return -1;
    for (int i = 0; i < n; i++) t->dbs[t->n] = db, t->idx[t->n++] = keys[i];
    int other = n > 0 ? other_db(cmd, argc, argv, argvlen) : -1;
    if (other >= 0) {
        int at = !strcmp(cmd->name, "copy") ? 2 : 1;
        t->dbs[t->n] = other, t->idx[t->n++] = at;
    }
    return t->n;
}

static int migration_wanted(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen)
{
    if (!mig.active) return 0;
    if (flushes(cmd) || !strcmp(cmd->name, "swapdb")) return 1;
    touched t;
    int n = touched_keys(cmd, db, argc, argv, argvlen, &t);
    if (n < 0) return 1; /* more keys than a look here takes: checked one by one */
    for (int i = 0; i < n; i++)
        if (!is_known(t.dbs[i], argv[t.idx[i]], argvlen[t.idx[i]])) return 1;
    return 0;
}

typedef struct touch {
    prestep_call call;
    int *dbs, *idx, n, next;
    unsigned long long start_us;
    int moved_any;
    prestep_done_fn *done;
    void *ctx;
} touch;

static void touch_next(void *ctx, const char *error);

static void touch_finish(touch *t, const char *error)
{
    if (t->moved_any && !error) {
        mig.first_touch_moves++;
        mig.first_touch_us += clock_us() - t->start_us;
    }
    prestep_done_fn *done = t->done;
    void *ctx = t->ctx;
    free(t->dbs);
    free(t->idx);
    free(t);
    done(ctx, error);
}

static void touch_next(void *ctx, const char *error)
{
    touch *t = ctx;
    if (error) return touch_finish(t, error);
    while (t->next < t->n) {
        int i = t->next++;
        const char *key = t->call.argv[t->idx[i]];
        size_t len = t->call.argvlen[t->idx[i]];
        if (is_known(t->dbs[i], key, len)) continue;
        t->moved_any = 1;
        move_key(t->dbs[i], key, len, t->dbs[i] == t->call.db ? t->call.conn : -1, t->call.session, touch_next, t);
        return;
    }
    touch_finish(t, NULL);
}

/* FLUSHDB and FLUSHALL empty the old store too (with no options: old
 * releases know none); the mover finds it empty. */
static void old_flushed(void *ctx, const backend_reply *r)
{
    touch *t = ctx;
    const char *err = r->error ? r->error : r->parsed->type == REDIS_REPLY_ERROR ? r->parsed->str : NULL;
    char msg[400];
    if (err) snprintf(msg, sizeof(msg), "ERR migration: flushing the old store %s failed: %s", old_name(), err);
    touch_finish(t, err ? msg : NULL);
}

static void migration_run(const prestep_call *call, prestep_done_fn *done, void *ctx)
{
    touch *t = calloc(1, sizeof(*t));
    if (!t) abort();
    t->call = *call;
    t->done = done;
    t->ctx = ctx;
    t->start_us = clock_us();
    const char *name = call->cmd->name;
    if (!strcmp(name, "swapdb")) {
        touch_finish(t, "ERR SWAPDB is not supported while keys are moving from the old store (migrate-from)");
        return;
    }
    if (flushes(call->cmd)) {
        char *v[1] = {!strcmp(name, "flushall") ? "FLUSHALL" : "FLUSHDB"};
        size_t l[1] = {strlen(v[0])};
        int conn = backend_pick(mig.old, (unsigned)call->session);
        if (conn < 0 || backend_send_for(mig.old, conn, call->db, call->session, 1, v, l, BACKEND_PARSED, old_flushed,
                                         t) != 0) {
            char msg[400];
            snprintf(msg, sizeof(msg), "ERR migration: the old store %s is unavailable (%s)", old_name(),
                     backend_error(mig.old));
            touch_finish(t, msg);
        }
        return;
    }
    int n = (call->cmd->key_spec_count || call->cmd->getkeys)
                ? command_get_keys(call->cmd, call->argc, call->argv, call->argvlen, NULL, NULL, 0)
                : 0;
    if (n < 0) n = 0;
    t->dbs = malloc(sizeof(int) * (size_t)(n + 1));
    t->idx = malloc(sizeof(int) * (size_t)(n + 1));
    if (!t->dbs || !t->idx) abort();
    command_get_keys(call->cmd, call->argc, call->argv, call->argvlen, t->idx, NULL, n);
    for (int i = 0; i < n; i++) t->dbs[i] = call->db;
    t->n = n;
    int other = n > 0 ? other_db(call->cmd, call->argc, call->argv, call->argvlen) : -1;
    if (other >= 0) {
        t->dbs[t->n] = other;
        t->idx[t->n++] = !strcmp(name, "copy") ? 2 : 1;
    }
    touch_next(t, NULL);
}

static const key_prestep migration_prestep = {"migration", migration_wanted, migration_run};

/* ---- the background mover ------------------------------------------------------------ */

static void set_done(void)
{
    mig.active = 0;
    mig.done_ms = clock_ms();
    mig.left_estimate = 0;
    key_set_clear(mig.known); /* every key is out of the old store: nothing to check */
    log_notice("migration: the old store %s is empty; every key is in %s (%llu moved)", old_name(),
               server.backend->display, mig.moved);
}

static void mover_pump(void);

static void mover_moved(void *ctx, const char *error)
{
    mkey *k = ctx;
    mig.inflight--;
    if (error) {
        /* Retried later: the key is still in the old store (or in both, the same). */
        log_verbose("%s", error);
        k->failed = 1;
        k->next = NULL;
        if (mig.queue_tail) mig.queue_tail->next = k;
        else mig.queue_head = k;
        mig.queue_tail = k;
        mig.queued++;
        return;
    }
    free(k);
    mover_pump();
}

typedef struct mover_lock {
    lock_set *ls;
    mkey *k;
} mover_lock;

static void mover_locked_done(void *ctx, const char *error)
{
    mover_lock *ml = ctx;
    lock_set_release(ml->ls);
    mkey *k = ml->k;
    free(ml);
    mover_moved(k, error);
}

static void mover_granted(lock_set *ls, void *ctx)
{
    mover_lock *ml = ctx;
    (void)ls;
    mkey *k = ml->k;
    if (!mig.active || is_known(k->db, k->key, k->len)) {
        mover_locked_done(ml, NULL);
        return;
    }
    move_key(k->db, k->key, k->len, -1, 0, mover_locked_done, ml);
}

static void mover_start_one(mkey *k)
{
    mig.inflight++;
    if (k->failed) mig.retries++;
    if (is_known(k->db, k->key, k->len)) {
        mover_moved(k, NULL);
        return;
    }
    mover_lock *ml = malloc(sizeof(*ml));
    if (!ml) abort();
    ml->k = k;
    ml->ls = lock_set_new(LOCK_SCRIPT_EXCL, mover_granted, ml);
    lock_set_add_key(ml->ls, k->db, k->key, k->len);
    lock_set_set_written(ml->ls, 1); /* WATCH by versions sees the move */
    int rc = lock_set_acquire(ml->ls, 0);
    if (rc == LOCK_GRANTED) mover_granted(ml->ls, ml);
}

static void scan_cb(void *ctx, const backend_reply *r)
{
    (void)ctx;
    mig.scanning = 0;
    const redisReply *p = r->parsed;
    if (!r->error && p->type == REDIS_REPLY_ERROR && !mig.use_keys && strstr(p->str, "unknown command")) {
        mig.use_keys = 1; /* before 2.8: KEYS lists a database in one reply */
        return;
    }
    const redisReply *keys = NULL;
    if (mig.use_keys) keys = p;
    else if (p && p->type == REDIS_REPLY_ARRAY && p->elements == 2) keys = p->element[1];
    if (r->error || !keys || keys->type != REDIS_REPLY_ARRAY) {
        if (!r->error && !mig.scan_error_logged) {
            log_warning("migration: listing the keys of the old store %s failed: %s", old_name(),
                        p->type == REDIS_REPLY_ERROR ? p->str : "unexpected reply");
            mig.scan_error_logged = 1;
        }
        return; /* asked again on a later tick */
    }
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *e = keys->element[i];
        if (e->type != REDIS_REPLY_STRING || is_known(mig.scan_db, e->str, e->len)) continue;
        mkey *k = malloc(sizeof(*k) + e->len);
        if (!k) abort();
        k->next = NULL;
        k->db = mig.scan_db;
        k->failed = 0;
        k->len = e->len;
        memcpy(k->key, e->str, e->len);
        if (mig.queue_tail) mig.queue_tail->next = k;
        else mig.queue_head = k;
        mig.queue_tail = k;
        mig.queued++;
    }
    mig.pass_found += keys->elements > 0;
    mig.pass_seen += (long long)keys->elements;
    mig.scan_cursor = mig.use_keys ? 0 : strtoull(p->element[0]->str ? p->element[0]->str : "0", NULL, 10);
    if (mig.scan_cursor != 0) return;
    if (++mig.scan_db < config.databases) return;
    /* A whole pass over every database. */
    mig.scan_db = 0;
    if (!mig.pass_found && !mig.queued && !mig.inflight) set_done();
    else mig.left_estimate = mig.pass_seen;
    mig.pass_found = 0;
    mig.pass_seen = 0;
}

static void scan_more(void)
{
    char cur[24];
    int n = snprintf(cur, sizeof(cur), "%llu", mig.scan_cursor);
    char *v[4] = {"SCAN", cur, "COUNT", SCAN_BATCH};
    size_t l[4] = {4, (size_t)n, 5, sizeof(SCAN_BATCH) - 1};
    if (mig.use_keys) v[0] = "KEYS", v[1] = "*", l[1] = 1;
    int conn = backend_pick(mig.old, 7);
    if (conn >= 0 && backend_send(mig.old, conn, mig.scan_db, mig.use_keys ? 2 : 4, v, l, BACKEND_PARSED, scan_cb,
                                  NULL) == 0)
        mig.scanning = 1;
}

/* Starts what the budget and the window allow; called on each tick and as
 * each move ends, so the window stays full between ticks. */
static void mover_pump(void)
{
    if (!mig.active || config.migrate_pause || mig.pumping) return;
    if (mig.ewma_us > SLOW_MOVE_US && mig.inflight) return; /* the new store (or the old) is slow: wait */
    if (backend_pick(mig.old, 0) < 0 || backend_pick(server.backend, 0) < 0) return; /* a store is down: wait */
    mig.pumping = 1; /* a move that ends at once does not start more from inside this loop */
    while (mig.budget >= 1.0 && mig.inflight < MOVER_WINDOW && mig.queue_head) {
        mkey *k = mig.queue_head;
        mig.queue_head = k->next;
        if (!mig.queue_head) mig.queue_tail = NULL;
        mig.queued--;
        mig.budget -= 1.0;
        mover_start_one(k);
    }
    mig.pumping = 0;
    if (!mig.queue_head && !mig.scanning && mig.queued == 0) scan_more();
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    long long now = clock_ms();
    if (now - mig.rate_mark_ms >= 2000) {
        mig.rate = (double)(mig.moved - mig.rate_moved_at_mark) * 1000.0 / (double)(now - mig.rate_mark_ms);
        mig.rate_moved_at_mark = mig.moved;
        mig.rate_mark_ms = now;
    }
    if (!mig.active) return;
    if (config.migrate_pause) {
        mig.budget = 0;
        return;
    }
    mig.budget += (double)config.migrate_rate * MOVER_TICK_MS / 1000.0;
    double cap = (double)config.migrate_rate / 5.0 + 1.0; /* at most 200 ms of moves saved up */
    if (mig.budget > cap) mig.budget = cap;
    mover_pump();
}

/* ---- keyspace-wide reads over both stores ----------------------------------------------
 * DBSIZE adds the two counts, KEYS joins the two lists, RANDOMKEY picks one
 * of the two stores' answers. SCAN walks the old store first, then the new
 * one: a key that moves while the walk is on moves into the part still to
 * come, so every key there from start to end is returned. The cursor says
 * which: 0 starts, odd 2c+1 is the old store's cursor c, even 2(c+1) the
 * new store's cursor c. Each runs under the keyspace lock, so no key is
 * half moved (counted in neither or both). */

enum union_kind { U_DBSIZE, U_KEYS, U_RANDOMKEY, U_SCAN };

typedef struct union_req {
    reply_slot *slot;
    lock_set *ls;
    int kind, db, argc, pending, scan_old;
    char **argv;
    size_t *argvlen;
    redisReply *r[2]; /* 0: old store, 1: new store */
    char err[400];
} union_req;

static void union_free(union_req *u)
{
    for (int i = 0; i < 2; i++)
        if (u->r[i]) freeReplyObject(u->r[i]);
    for (int i = 0; i < u->argc; i++) free(u->argv[i]);
    free(u->argv);
    free(u->argvlen);
    free(u);
}

static void out_bulk_or_nil(struct evbuffer *out, const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_STRING) reply_bulk(out, r->str, r->len);
    else reply_null_bulk(out);
}

static void out_elements(struct evbuffer *out, const redisReply *r)
{
    for (size_t i = 0; r && i < r->elements; i++) out_bulk_or_nil(out, r->element[i]);
}

static void union_answer(union_req *u)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) abort();
    const redisReply *o = u->r[0], *n = u->r[1];
    for (int i = 0; i < 2 && !u->err[0]; i++)
        if (u->r[i] && u->r[i]->type == REDIS_REPLY_ERROR) snprintf(u->err, sizeof(u->err), "%s", u->r[i]->str);
    if (u->err[0]) {
        reply_error_uncounted(out, u->err);
    } else if (u->kind == U_DBSIZE) {
        reply_integer(out, (o ? o->integer : 0) + (n ? n->integer : 0));
    } else if (u->kind == U_KEYS) {
        reply_array(out, (long long)((o ? o->elements : 0) + (n ? n->elements : 0)));
        out_elements(out, o);
        out_elements(out, n);
    } else if (u->kind == U_RANDOMKEY) {
        int have_o = o && o->type == REDIS_REPLY_STRING, have_n = n && n->type == REDIS_REPLY_STRING;
        out_bulk_or_nil(out, have_o && (!have_n || (random() & 1)) ? o : have_n ? n : NULL);
    } else {
        const redisReply *r = u->scan_old ? o : n;
        unsigned long long c = r && r->elements == 2 && r->element[0]->str ? strtoull(r->element[0]->str, NULL, 10) : 0;
        unsigned long long next = u->scan_old ? (c ? 2 * c + 1 : 2) : (c ? 2 * (c + 1) : 0);
        char num[24];
        int len = snprintf(num, sizeof(num), "%llu", next);
        reply_array(out, 2);
        reply_bulk(out, num, (size_t)len);
        const redisReply *keys = r && r->elements == 2 ? r->element[1] : NULL;
        reply_array(out, keys ? (long long)keys->elements : 0);
        out_elements(out, keys);
    }
    lock_set_release(u->ls);
    reply_slot *s = u->slot;
    client *c = s->c;
    size_t len = evbuffer_get_length(out);
    char first = 0;
    evbuffer_copyout(out, &first, 1);
    s->failed = first == '-';
    if (c && !s->discard) evbuffer_add_buffer(c->slots_head == s && !s->shape ? c->out : s->buf, out);
    (void)len;
    evbuffer_free(out);
    client_slot_done(s);
    union_free(u);
    if (c) client_unblock(c);
}

typedef struct union_ref {
    union_req *u;
    int which;
} union_ref;

static void union_reply_cb(void *ctx, const backend_reply *r)
{
    union_ref *ref = ctx;
    union_req *u = ref->u;
    int which = ref->which;
    free(ref);
    if (r->error && !u->err[0])
        snprintf(u->err, sizeof(u->err), which ? "%s" : "ERR migration: the old store %s is unavailable (%s)",
                 which ? r->error : old_name(), r->error);
    else if (!r->error && r->parsed->type == REDIS_REPLY_ARRAY && r->parsed->elements == 2 && u->kind == U_SCAN &&
             r->parsed->element[1]->type != REDIS_REPLY_ARRAY && !u->err[0])
        snprintf(u->err, sizeof(u->err), "ERR unexpected SCAN reply");
    if (!r->error) u->r[which] = backend_reply_copy(r->parsed);
    if (--u->pending == 0) union_answer(u);
}

static void union_send(union_req *u, int which, int argc, char **argv, size_t *argvlen)
{
    backend *b = which ? server.backend : mig.old;
    union_ref *ref = malloc(sizeof(*ref));
    if (!ref) abort();
    ref->u = u;
    ref->which = which;
    u->pending++;
    int conn = backend_pick(b, (unsigned)u->db);
    if (conn < 0 || backend_send(b, conn, u->db, argc, argv, argvlen, BACKEND_PARSED, union_reply_cb, ref) != 0) {
        backend_reply br = {.error = backend_error(b)};
        union_reply_cb(ref, &br);
    }
}

static void union_granted(lock_set *ls, void *ctx)
{
    union_req *u = ctx;
    (void)ls;
    u->pending = 1; /* until both are sent */
    if (u->kind != U_SCAN) {
        union_send(u, 0, u->argc, u->argv, u->argvlen);
        union_send(u, 1, u->argc, u->argv, u->argvlen);
    } else {
        unsigned long long cur = strtoull(u->argv[1], NULL, 10), store_cur;
        u->scan_old = cur == 0 || (cur & 1);
        store_cur = cur == 0 ? 0 : (cur & 1) ? (cur - 1) / 2 : cur / 2 - 1;
        if (u->scan_old && !mig.active) u->scan_old = 0, store_cur = 0; /* the old store is empty now */
        char num[24];
        int n = snprintf(num, sizeof(num), "%llu", store_cur);
        char *saved = u->argv[1];
        size_t saved_len = u->argvlen[1];
        u->argv[1] = num;
        u->argvlen[1] = (size_t)n;
        union_send(u, u->scan_old ? 0 : 1, u->argc, u->argv, u->argvlen);
        u->argv[1] = saved;
        u->argvlen[1] = saved_len;
    }
    if (--u->pending == 0) union_answer(u);
}

int migration_keyspace_dispatch(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!mig.old || !cmd) return 0;
    int kind;
    if (!strcmp(cmd->name, "dbsize")) kind = U_DBSIZE;
    else if (!strcmp(cmd->name, "keys")) kind = U_KEYS;
    else if (!strcmp(cmd->name, "randomkey")) kind = U_RANDOMKEY;
    else if (!strcmp(cmd->name, "scan")) kind = U_SCAN;
    else return 0;
    if (kind == U_SCAN) {
        /* Cursors stay encoded once the old store is empty: a walk begun before goes on. */
        if (argc < 2 || !argvlen[1] || strspn(argv[1], "0123456789") != argvlen[1] || argvlen[1] > 20) {
            reply_error(client_reply_buffer(c), "ERR invalid cursor");
            return 1;
        }
    } else if (!mig.active) {
        return 0;
    }
    union_req *u = calloc(1, sizeof(*u));
    if (!u) abort();
    u->kind = kind;
    u->db = c->db;
    u->argc = argc;
    u->argv = malloc(sizeof(char *) * (size_t)argc);
    u->argvlen = malloc(sizeof(size_t) * (size_t)argc);
    if (!u->argv || !u->argvlen) abort();
    for (int i = 0; i < argc; i++) {
        u->argv[i] = malloc(argvlen[i] + 1);
        if (!u->argv[i]) abort();
        memcpy(u->argv[i], argv[i], argvlen[i]);
        u->argv[i][argvlen[i]] = '\0';
        u->argvlen[i] = argvlen[i];
    }
    u->ls = lock_set_new(LOCK_SCRIPT_RO, union_granted, u);
    lock_set_add_keyspace(u->ls);
    u->slot = client_slot_add(c);
    client_block(c);
    if (lock_set_acquire(u->ls, 0) == LOCK_GRANTED) union_granted(u->ls, u);
    return 1;
}

/* ---- start, stop, INFO -------------------------------------------------------------- */

int migration_start(struct event_base *base, char *err, size_t errlen)
{
    if (!config.migrate_from) return 0;
    if (!strcmp(config.migrate_from, config.backend_url)) {
        snprintf(err, errlen, "migrate-from names the same store as backend: keys would be deleted, not moved");
        return -1;
    }
    store_tls_options tls;
    config_store_tls(&tls);
    char why[256];
    mig.old = backend_create(base, config.migrate_from, config.backend_connections, config.databases, &tls, why,
                             sizeof(why));
    if (!mig.old) {
        snprintf(err, errlen, "migrate-from: %s", why);
        return -1;
    }
    mig.old->connect_timeout_ms = config.backend_connect_timeout_ms;
    mig.old->max_string_len = config.proto_max_bulk_len;
    mig.known = key_set_new();
    mig.active = 1;
    mig.started_ms = mig.rate_mark_ms = clock_ms();
    mig.left_estimate = -1;
    key_prestep_register(&migration_prestep);
    mig.tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, MOVER_TICK_MS * 1000};
    event_add(mig.tick, &tv);
    log_notice("migration: moving keys from %s to %s at %lld keys/s", mig.old->display, server.backend->display,
               config.migrate_rate);
    return 0;
}

void migration_shutdown(void)
{
    if (mig.tick) event_free(mig.tick);
    mig.tick = NULL;
    backend_free(mig.old); /* fails what is in flight */
    mig.old = NULL;
    while (mig.queue_head) {
        mkey *k = mig.queue_head;
        mig.queue_head = k->next;
        free(k);
    }
    mig.queue_tail = NULL;
    key_set_free(mig.known);
    mig.known = NULL;
    mig.active = 0;
}

static const char *state_name(void)
{
    if (!mig.active) return "done";
    return config.migrate_pause ? "paused" : "moving";
}

void migration_info(struct evbuffer *out)
{
    if (!mig.old) return;
    long long left = mig.active ? mig.left_estimate : 0;
    if (mig.active && left < mig.queued) left = mig.queued;
    double rate = mig.rate;
    long long eta = !mig.active ? 0 : left < 0 || rate < 1 ? -1 : (long long)((double)left / rate);
    evbuffer_add_printf(out,
                        "migration_from:%s\r\nmigration_state:%s\r\nmigration_keys_moved:%llu\r\n"
                        "migration_keys_left:%lld\r\nmigration_keys_absent:%llu\r\nmigration_errors:%llu\r\n"
                        "migration_retries:%llu\r\nmigration_kept_new:%llu\r\nmigration_rate:%.0f\r\nmigration_rate_limit:%lld\r\n"
                        "migration_eta_seconds:%lld\r\nmigration_moves_in_flight:%d\r\n"
                        "migration_first_touch_moves:%llu\r\nmigration_first_touch_avg_us:%llu\r\n"
                        "migration_known_keys:%zu\r\nmigration_old_store_status:%s\r\n",
                        mig.old->display, state_name(), mig.moved, left, mig.absent, mig.errors, mig.retries, mig.kept_new, rate,
                        config.migrate_rate, eta, mig.inflight, mig.first_touch_moves,
                        mig.first_touch_moves ? mig.first_touch_us / mig.first_touch_moves : 0,
                        mig.known ? key_set_count(mig.known) : 0,
                        backend_pick(mig.old, 0) >= 0 ? "up" : "down");
}

int migration_own_command(client *c, int argc, char **argv, size_t *argvlen)
{
    if (argvlen[0] != 9 || strcasecmp(argv[0], "migration")) return 0;
    struct evbuffer *out = client_reply_buffer(c);
    if (argc == 2 && !strcasecmp(argv[1], "status")) {
        if (!mig.old) {
            reply_bulk(out, "migration_state:none\r\n", 22);
            return 1;
        }
        struct evbuffer *t = evbuffer_new();
        if (!t) abort();
        migration_info(t);
        size_t n = evbuffer_get_length(t);
        reply_bulk(out, (const char *)evbuffer_pullup(t, -1), n);
        evbuffer_free(t);
    } else if (argc == 2 && (!strcasecmp(argv[1], "pause") || !strcasecmp(argv[1], "resume"))) {
        config.migrate_pause = !strcasecmp(argv[1], "pause");
        reply_ok(out);
    } else {
        reply_error(out, "ERR syntax error, try MIGRATION STATUS|PAUSE|RESUME");
    }
    return 1;
}
