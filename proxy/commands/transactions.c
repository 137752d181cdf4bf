/* MULTI/EXEC/DISCARD/WATCH/UNWATCH and blocking commands.
 *
 * A transaction is queued in the proxy (with Redis's +QUEUED and its errors)
 * and at EXEC goes to the store as MULTI, the commands and EXEC written
 * back to back on one connection, so the store runs it atomically and its
 * EXEC reply goes to the client as it is. The union of the queued commands'
 * lock units is held until that reply, which isolates it from scripts.
 * WATCH pins a connection of the client's own for the WATCH ... EXEC span,
 * so the store itself tells whether a watched key changed.
 * A blocking command gets a connection of its own from a bounded pool, so
 * it never stalls the shared pipelined connections. */
#include "proxy/commands/transactions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "fleet/fleet.h"
#include "proxy/core/acl.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/client_pause.h"
#include "proxy/core/config.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/journal.h"
#include "proxy/core/locks.h"
#include "util/args.h"
#include "util/clock.h"
#include "util/log.h"
#include "proxy/commands/pubsub.h"
#include "proxy/core/reply.h"
#include "proxy/core/resp3.h"
#include "proxy/core/tracking.h"
#include "proxy/commands/scripting.h"
#include "proxy/commands/emulation.h"
#include "proxy/commands/expiry_deadlines.h"
#include "proxy/commands/key_presteps.h"
#include "proxy/core/monitor.h"
#include "proxy/core/server.h"
#include "proxy/core/slowlog.h"
#include "proxy/core/store_refusal.h"
#include "util/strconv.h"
#include "proxy/commands/acl_command.h"

typedef struct queued_command {
    const command_def *cmd;
    int argc;
    char **argv; /* argv, argvlen and the bytes: one block */
    size_t *argvlen;
    char *acl_error; /* refused at EXEC: the user's rules changed since it was queued */
    int local;       /* answered by the proxy: EXEC runs its handler in its place */
} queued_command;

typedef struct watched_key {
    lock_watch *w;
    uint64_t version;
    long long token; /* the store's key token at WATCH (backend_key_tokens) */
    int db;
    size_t len;
    char *name;
} watched_key;

typedef struct token_read token_read;

struct watch_versions {
    watched_key *keys;
    int n, cap;
    int snapped;        /* keys[0..snapped) have their versions */
    lock_set *settle;   /* waits for requests in flight without a set */
    token_read *reading; /* tokens of keys[from..n) being read at WATCH */
};

/* Where the store has key tokens, a watched key also counts as changed
 * when its token differs at EXEC: that sees what the proxy's versions
 * cannot (expiry, eviction, FLUSHALL and FLUSHDB of the keys they
 * removed, writers that bypass the proxy), so keyspace-wide writers need
 * not count for every key. */
struct token_read {
    client *c;
    watch_versions *w; /* NULL once the WATCH is gone */
    int from;
};

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int use_key_tokens(void) { return backend_has_key_tokens(server.backend); }

/* Asks the store for the tokens of keys[from..n). */
static int key_tokens_send(watch_versions *w, int from, int conn, backend_reply_fn *fn, void *ctx)
{
    int n = w->n - from;
    int *dbs = malloc(sizeof(int) * (size_t)n);
    char **names = malloc(sizeof(char *) * (size_t)n);
    size_t *lens = malloc(sizeof(size_t) * (size_t)n);
    if (!dbs || !names || !lens) abort();
    for (int i = 0; i < n; i++) {
        dbs[i] = w->keys[from + i].db;
        names[i] = w->keys[from + i].name;
        lens[i] = w->keys[from + i].len;
    }
    int rc = conn < 0 ? -1 : backend_key_tokens(server.backend, conn, n, dbs, names, lens, fn, ctx);
    free(dbs);
    free(names);
    free(lens);
    return rc;
}

/* The tokens in a reply for n keys, or 0 when it is not one. */
static int key_tokens_ok(const backend_reply *r, int n)
{
    const redisReply *p = r->parsed;
    if (r->error || !p || p->type != REDIS_REPLY_ARRAY || p->elements != (size_t)n) return 0;
    for (int i = 0; i < n; i++)
        if (p->element[i]->type != REDIS_REPLY_INTEGER) return 0;
    return 1;
}

struct multi_state {
    queued_command *cmds;
    int count, cap;
    int dirty; /* a command was rejected while queueing: EXEC aborts */
    int store_oom; /* the store is out of memory and would queue none of them: run by the proxy */
    int acl_refused; /* some command got acl_error at EXEC */
};

static unsigned blocking_in_use;
static int has_scripts(const multi_state *m, int db);

enum exec_phase {
    EXEC_STORE_ASK, /* asking the store whether it takes the transaction (store_refusal) */
    EXEC_DRAIN,  /* waiting for the client's relayed commands to be answered */
    EXEC_LOCKS,  /* waiting for its lock units */
    EXEC_CHECK,  /* asking the store whether a watched key changed */
    EXEC_STORE,  /* sent to the store as one MULTI ... EXEC */
    EXEC_RUN,    /* run command by command by the proxy (scripts inside) */
};

typedef struct exec_elem {
    struct exec_run *er;
    int index;
    int reply_turned; /* a local CLIENT REPLY here turned replies on (1) or off (2) */
} exec_elem;

/* One EXEC, from the moment it is read to its reply. It does not depend on
 * its client: a client that goes away meanwhile has its transaction run to
 * the end, as Redis runs a command it has read; only the reply is dropped. */
typedef struct exec_run {
    struct exec_run *older, *newer; /* every EXEC not finished, for shutdown */
    client *c; /* NULL once the client is gone */
    unsigned long long client_id;
    struct acl_user *user; /* who ran EXEC: its scripts' calls are checked against it */
    char exec_word[8];     /* EXEC as the client spelled it (MONITOR) */
    multi_state *m;
    lock_set *ls;
    reply_slot *slot;
    int watch_conn;     /* the client's WATCH connection, taken over at EXEC, or -1 */
    long long watch_deadline_ms; /* the client's, taken over at EXEC */
    watch_versions *wv; /* its WATCH by versions, taken over at EXEC */
    int phase;
    int db;     /* where the commands run; a SELECT inside moves it */
    int new_db; /* EXEC_STORE: the client's database after it (SELECT inside), or -1 */
    /* EXEC_RUN */
    struct evbuffer **replies; /* one per queued command */
    exec_elem *elems;
    int next;      /* next command to start */
    int pending;   /* store replies outstanding */
    int script_running; /* a script, an emulated or a local command is running */
    int stepping;
    reply_capture capture; /* a local command's reply */
    int prestep_next, prestep_db; /* key presteps, done before the first command */
    /* In a fleet, a transaction the proxy runs itself keeps what its keys
     * were as journal records in the store first, so that the fleet undoes
     * it should this member die half way (as a script's, scripting.c). */
    fleet_run frun;
    journal *journal;
    int journal_waiting; /* the first command waits for the records */
    int records_ahead;   /* sent ahead of the commands on one store, not answered yet */
    unsigned long long sent_us; /* EXEC_STORE: when it went to the store */
} exec_run;

static exec_run *exec_runs;

static void multi_free(multi_state *m)
{
    if (!m) return;
    for (int i = 0; i < m->count; i++) {
        free(m->cmds[i].argv);
        free(m->cmds[i].acl_error);
    }
    free(m->cmds);
    free(m);
}

static void watch_versions_free(watch_versions *w)
{
    if (!w) return;
    if (w->settle) lock_set_release(w->settle);
    if (w->reading) w->reading->w = NULL;
    for (int i = 0; i < w->n; i++) {
        lock_watch_end(w->keys[i].w);
        free(w->keys[i].name);
    }
    free(w->keys);
    free(w);
}

static void unwatch(client *c)
{
    watch_versions_free(c->watch_versions);
    c->watch_versions = NULL;
    c->watch_deadline_ms = 0;
    if (c->watch_conn >= 0) {
        backend_release_dedicated(server.backend, c->watch_conn, 0);
        c->watch_conn = -1;
    }
}

static void exec_continue_gone(evutil_socket_t fd, short what, void *arg);

void transactions_client_gone(client *c)
{
    multi_free(c->multi);
    c->multi = NULL;
    exec_run *er = c->exec_run;
    if (er) {
        er->c = NULL;
        c->exec_run = NULL;
        client_capture_detach(&er->capture);
        /* Its client's relayed commands no longer report when they are
         * answered: go on from the event loop (the locks keep the order). */
        if (er->phase == EXEC_DRAIN) {
            static const struct timeval zero = {0, 0};
            event_base_once(server.base, -1, EV_TIMEOUT, exec_continue_gone, er, &zero);
        }
    }
    if (c->dedicated_conn >= 0) {
        /* A blocking command or a WATCH is in flight on it: closing the
         * connection unblocks the store side; the callbacks are dropped, so
         * finish their slot here. */
        if (c->dedicated_conn != c->watch_conn) {
            backend_release_dedicated(server.backend, c->dedicated_conn, 0);
            if (c->dedicated_blocking) blocking_in_use--;
        }
        reply_slot *s = c->dedicated_slot;
        if (s) {
            if (s->locks) {
                lock_set_release(s->locks);
                s->locks = NULL;
            }
            /* It may have run at the store: its keys' trackers are told. */
            tracking_write_end(s->tracked, 0);
            s->tracked = NULL;
            s->done = 1;
        }
        c->dedicated_conn = -1;
        c->dedicated_slot = NULL;
    }
    unwatch(c);
}

void transactions_reset(client *c)
{
    multi_free(c->multi);
    c->multi = NULL;
    unwatch(c);
}

int multi_length(const client *c) { return c->multi ? c->multi->count : -1; }

size_t multi_memory(const client *c)
{
    /* As Redis's argv_len_sums: argument bytes plus a pointer per argument. */
    size_t bytes = 0;
    for (int i = 0; c->multi && i < c->multi->count; i++) {
        const queued_command *q = &c->multi->cmds[i];
        for (int a = 0; a < q->argc; a++) bytes += q->argvlen[a];
        bytes += (size_t)q->argc * sizeof(void *);
    }
    return bytes;
}

void multi_flag_dirty(client *c)
{
    if (c->multi) c->multi->dirty = 1;
}

void exec_reject(client *c, const char *error)
{
    /* As Redis: a rejected EXEC discards the transaction and the WATCH,
     * inside MULTI or not. */
    multi_free(c->multi);
    c->multi = NULL;
    unwatch(c);
    reply_errorf(client_reply_buffer(c), "EXECABORT Transaction discarded because of: %s", error);
}

/* ---- queueing -------------------------------------------------------------- */

/* Commands the proxy answers itself outside MULTI that the store can run
 * inside one. PUBLISH reaches the proxy's subscribers through its shared
 * subscriber connection; its count is then the store's (as from a script). */
/* Commands the proxy answers itself that EXEC runs in their place, as
 * Redis runs them inside a transaction; the others (AUTH, HELLO, the
 * subscriptions, MONITOR...) change what the connection is. */
static int local_in_exec(const command_def *cmd)
{
    static const char *const ok[] = {"client", "command", "info", "config",   "acl",      "script", "function", "slowlog",
                                     "latency", "debug", "cluster", "readonly", "readwrite", "asking", "monitor",  NULL};
    const char *bar = strchr(cmd->name, '|');
    size_t n = bar ? (size_t)(bar - cmd->name) : strlen(cmd->name);
    for (const char *const *p = ok; *p; p++)
        if (strlen(*p) == n && !strncmp(*p, cmd->name, n)) return 1;
    return 0;
}

static int store_can_run(const command_def *cmd)
{
    static const char *const ok[] = {"ping", "echo", "time", "select", "publish", "spublish", NULL};
    if (pubsub_carried_here(cmd)) return 1; /* PUBSUB where the proxy is the pub/sub server */
    for (const char *const *p = ok; *p; p++)
        if (!strcmp(*p, cmd->name)) return 1;
    return 0;
}

static void multi_append(multi_state *m, const queued_command *q)
{
    if (m->count == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->cmds = realloc(m->cmds, sizeof(*m->cmds) * (size_t)m->cap);
        if (!m->cmds) abort();
    }
    m->cmds[m->count++] = *q;
}

/* A command held back from the queue while the store is asked whether it
 * takes writes: Redis refuses a write (and a deny-oom command) at queueing
 * time when the server refuses writes, and EXEC then aborts. */
typedef struct queue_check {
    reply_slot *slot;
    queued_command q;
} queue_check;

static void queue_checked(void *ctx, const char *error, int oom)
{
    (void)oom;
    queue_check *qc = ctx;
    reply_slot *s = qc->slot;
    client *c = s->c;
    if (c && c->multi && !error) {
        multi_append(c->multi, &qc->q);
        reply_status(s->buf, "QUEUED");
    } else {
        if (c && c->multi) c->multi->dirty = 1;
        if (error) {
            stats_command_rejected(qc->q.cmd);
            reply_error(s->buf, error);
        }
        free(qc->q.argv);
    }
    client_release_reply(s);
    free(qc);
}

int multi_queue(client *c, const command_def *cmd, int is_local, int argc, char **argv, size_t *argvlen)
{
    multi_state *m = c->multi;
    struct evbuffer *out = client_reply_buffer(c);
    int local = is_local && !store_can_run(cmd) && !scripting_is_eval(cmd);
    if (local && !local_in_exec(cmd)) {
        reply_errorf(out, "ERR command '%s' inside MULTI is not supported by evalproxy", cmd->name);
        m->dirty = 1;
        return 1;
    }
    queued_command q = {cmd, argc, NULL, NULL, NULL, local};
    q.argv = args_copy(argc, argv, argvlen, &q.argvlen);
    /* Out of memory, Redis refuses to queue any command; a write also when
     * the server refuses writes. */
    int checks = STORE_CHECK_OOM | (cmd->flags & CMD_WRITE ? STORE_CHECK_WRITE : 0);
    if (store_refusal_wanted(checks)) {
        queue_check *qc = malloc(sizeof(*qc));
        if (!qc) abort();
        qc->q = q;
        if (store_refusal_check(checks, c->db, NULL, 0, queue_checked, qc)) {
            qc->slot = client_hold_reply(c);
            return 1;
        }
        free(qc);
    }
    multi_append(m, &q);
    reply_status(out, "QUEUED");
    return 1;
}

static int command_may_write(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (scripting_is_eval(cmd)) return scripting_may_write(cmd, argc, argv, argvlen);
    if (cmd->flags & (CMD_WRITE | CMD_MAY_REPLICATE)) return 1;
    /* may-replicate in Redis 7.0, a flag COMMAND does not show */
    return !strcmp(cmd->name, "pfcount") || !strcmp(cmd->name, "publish") || !strcmp(cmd->name, "spublish");
}

int transactions_may_write(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (strcmp(cmd->name, "exec")) return command_may_write(cmd, argc, argv, argvlen);
    if (!c->multi) return 0;
    for (int i = 0; i < c->multi->count; i++) {
        const queued_command *q = &c->multi->cmds[i];
        if (command_may_write(q->cmd, q->argc, q->argv, q->argvlen)) return 1;
    }
    return 0;
}

/* ---- EXEC -------------------------------------------------------------------- */

static void exec_unwatch(exec_run *er)
{
    watch_versions_free(er->wv);
    er->wv = NULL;
    if (er->watch_conn >= 0) {
        backend_release_dedicated(server.backend, er->watch_conn, 0);
        er->watch_conn = -1;
    }
}

static void exec_free(exec_run *er)
{
    client_capture_abandon(&er->capture);
    if (er->newer) er->newer->older = er->older;
    else exec_runs = er->older;
    if (er->older) er->older->newer = er->newer;
    if (er->replies)
        for (int i = 0; i < er->m->count; i++)
            if (er->replies[i]) evbuffer_free(er->replies[i]);
    free(er->replies);
    free(er->elems);
    multi_free(er->m);
    acl_user_release(er->user);
    journal_free(er->journal);
    fleet_run_end(&er->frun);
    free(er);
}

/* Whether a transaction may have published: its reply then waits until
 * the proxy's subscribers have the messages, as PUBLISH's does. */
static int may_publish(const multi_state *m)
{
    for (int i = 0; i < m->count; i++) {
        const char *n = m->cmds[i].cmd->name;
        if (!strcmp(n, "publish") || !strcmp(n, "spublish") || scripting_is_eval(m->cmds[i].cmd)) return 1;
    }
    return 0;
}

/* The reply is in er->slot->buf: release everything and let the client go on. */
static void exec_finish(exec_run *er);

static void exec_committed(void *ctx, int ok)
{
    exec_run *er = ctx;
    (void)ok; /* could not be deleted: logged; the writes stay */
    journal_free(er->journal);
    er->journal = NULL;
    exec_finish(er);
}

/* The reply is ready: a fleet member's journal records go first (the reply
 * promises the writes; the locks let others see them), see scripting.c. */
static void exec_finish(exec_run *er)
{
    if (er->journal && journal_recorded(er->journal) && fleet_run_may_write(&er->frun) &&
        journal_commit(er->journal, 30000, exec_committed, er))
        return;
    if (er->ls && er->journal && journal_recorded(er->journal) && !fleet_run_may_write(&er->frun))
        lock_set_abandon(er->ls); /* fenced: the members holding its units undo it */
    if (er->ls) lock_set_release(er->ls);
    er->ls = NULL;
    exec_unwatch(er);
    client *c = er->c;
    if (c) c->exec_run = NULL;
    clients_pause_exec_done(); /* a CLIENT PAUSE inside it reaches the store now */
    if (!(c && er->m && may_publish(er->m) && pubsub_hold_after_publish(er->slot))) client_slot_done(er->slot);
    exec_free(er);
    if (c) client_unblock(c);
}

static void exec_finish_error(exec_run *er, const char *error)
{
    reply_error(er->slot->buf, error);
    exec_finish(er);
}

/* commandstats count each command EXEC ran, as Redis does: a call, failed
 * when its reply is an error (errorstats counted the error where it arose);
 * for a transaction the store ran, from its reply's elements. */
/* Redis logs the commands EXEC runs one by one (EXEC itself never); the
 * proxy does not time them apart, so they count as taking no time. */
static void exec_slowlog(exec_run *er, int i, unsigned long long usec)
{
    const queued_command *q = &er->m->cmds[i];
    if (!slowlog_wants(usec)) return;
    slowlog_command_done(q->cmd, slowlog_args_copy(q->cmd, q->argc, q->argv, q->argvlen), usec,
                         er->c ? er->c->addr : "?:0", er->c ? er->c->name : NULL);
}

static void exec_count_store_reply(exec_run *er, struct evbuffer *raw, size_t raw_len)
{
    static redisReader *reader;
    if (!reader) reader = redisReaderCreate();
    if (!reader) return;
    const char *bytes = (const char *)evbuffer_pullup(raw, (ssize_t)raw_len);
    void *parsed = NULL;
    if (redisReaderFeed(reader, bytes, raw_len) != REDIS_OK || redisReaderGetReply(reader, &parsed) != REDIS_OK ||
        !parsed) {
        redisReaderFree(reader); /* left in a bad state: start afresh next time */
        reader = NULL;
        return;
    }
    redisReply *rr = parsed;
    /* A lone command took the transaction's time (DEBUG SLEEP inside MULTI). */
    unsigned long long usec = er->m->count == 1 && er->sent_us ? clock_us() - er->sent_us : 0;
    if (rr->type == REDIS_REPLY_ARRAY && (int)rr->elements == er->m->count)
        for (size_t i = 0; i < rr->elements; i++) {
            const redisReply *e = rr->element[i];
            int failed = e->type == REDIS_REPLY_ERROR;
            if (failed) stats_error_reply(e->str, e->len);
            stats_command_done(er->m->cmds[i].cmd, 0, failed);
            exec_slowlog(er, i, usec);
        }
    freeReplyObject(rr);
}

/* ---- RESP3 clients: EXEC's elements by their commands' shapes ------------------- */

static int exec_resp3(const exec_run *er) { return er->c && er->c->resp == 3; }

static const resp3_shape *queued_shape(const queued_command *q)
{
    return resp3_shape_for(q->cmd ? q->cmd->name : "", q->argc, q->argv, q->argvlen);
}

/* Client-side caching: what a transaction that ran read and wrote (its
 * scripts tell for their own calls). */
static void exec_tracking(exec_run *er)
{
    if (!tracking_active()) return;
    for (int i = 0; i < er->m->count; i++) {
        queued_command *q = &er->m->cmds[i];
        if (!q->cmd || scripting_is_eval(q->cmd)) continue;
        if (er->c) tracking_read(er->c, q->cmd, q->argc, q->argv, q->argvlen);
        tracking_write_end(tracking_write_begin(er->client_id, q->cmd, q->argc, q->argv, q->argvlen), 0);
    }
}

/* An aborted EXEC (a watched key changed). */
static void exec_null_reply(exec_run *er)
{
    if (exec_resp3(er)) evbuffer_add(er->slot->buf, "_\r\n", 3);
    else reply_null_array(er->slot->buf);
}

/* The store's EXEC reply for the client: as it is, or in RESP3. */
static void exec_store_reply_out(exec_run *er, struct evbuffer *raw, size_t len)
{
    if (!exec_resp3(er)) {
        evbuffer_remove_buffer(raw, er->slot->buf, len);
        return;
    }
    int n = er->m->count;
    const resp3_shape **shapes = malloc(sizeof(*shapes) * (size_t)(n ? n : 1));
    if (!shapes) abort();
    for (int i = 0; i < n; i++) shapes[i] = queued_shape(&er->m->cmds[i]);
    const char *p = (const char *)evbuffer_pullup(raw, (ev_ssize_t)len);
    if (resp3_convert_exec(shapes, n, p, len, er->slot->buf) <= 0) evbuffer_add(er->slot->buf, p, len);
    evbuffer_drain(raw, len);
    free(shapes);
}

static void exec_store_reply_cb(void *ctx, const backend_reply *r)
{
    exec_run *er = ctx;
    if (!r->error) exec_count_store_reply(er, r->raw, r->raw_len);
    if (r->error) {
        reply_error(er->slot->buf, r->error);
    } else {
        /* A SELECT inside a transaction that ran moves the client. */
        char first[2] = {0, 0};
        evbuffer_copyout(r->raw, first, 2);
        if (er->c && er->new_db >= 0 && first[0] == '*' && first[1] != '-') er->c->db = er->new_db;
        if (first[0] == '*' && first[1] != '-') exec_tracking(er);
        exec_store_reply_out(er, r->raw, r->raw_len);
    }
    exec_finish(er);
}

/* The store runs the transaction: MULTI, the commands and EXEC back to back
 * on one connection (the pinned WATCH one, if any). */
static void exec_send(exec_run *er)
{
    backend *b = server.backend;
    int conn = er->watch_conn >= 0 ? er->watch_conn
               : er->c               ? client_shared_conn(er->c)
                                     : backend_pick(b, (unsigned)er->client_id);
    int db = er->db;
    char *mv[1] = {"MULTI"}, *ev[1] = {"EXEC"};
    size_t ml[1] = {5}, el[1] = {4};
    multi_state *m = er->m;
    int ok = conn >= 0 && backend_send(b, conn, db, 1, mv, ml, BACKEND_RAW, NULL, NULL) == 0;
    for (int i = 0; ok && i < m->count; i++) {
        queued_command *q = &m->cmds[i];
        ok = backend_send(b, conn, db, q->argc, q->argv, q->argvlen, BACKEND_RAW, NULL, NULL) == 0;
        if (!strcmp(q->cmd->name, "select")) {
            long long id;
            if (string_to_ll(q->argv[1], q->argvlen[1], &id) && id >= 0 && id < config.databases)
                er->new_db = (int)id;
        }
    }
    if (ok) ok = backend_send(b, conn, db, 1, ev, el, BACKEND_RAW, exec_store_reply_cb, er) == 0;
    if (!ok) {
        /* Nothing was sent, or the connection fails and errors every reply. */
        exec_finish_error(er, backend_error(b));
        return;
    }
    er->phase = EXEC_STORE;
    er->sent_us = clock_us();
    if (er->new_db >= 0) {
        /* The store's connection moved with the SELECT: bring it back to the
         * database the proxy believes it is in. */
        char num[16];
        int n = snprintf(num, sizeof(num), "%d", db);
        char *sv[2] = {"SELECT", num};
        size_t sl[2] = {6, (size_t)n};
        backend_send(b, conn, db, 2, sv, sl, BACKEND_RAW, NULL, NULL);
    }
}

/* ---- EXEC run by the proxy (scripts inside) ------------------------------------ */

static void exec_run_step(exec_run *er);

static void exec_run_finish(exec_run *er)
{
    /* A member fenced meanwhile leaves its records to the fleet, which
     * undoes the transaction. */
    if (er->journal && journal_recorded(er->journal) && !fleet_run_may_write(&er->frun)) {
        exec_finish_error(er, "ERR this fleet member lost its lease while the transaction ran; the fleet undoes "
                              "what it wrote");
        return;
    }
    struct evbuffer *out = er->slot->buf;
    reply_array(out, er->m->count);
    int off = 0; /* CLIENT REPLY OFF inside: what follows is not sent, as in Redis */
    for (int i = 0; i < er->m->count; i++) {
        char first = 0;
        evbuffer_copyout(er->replies[i], &first, 1);
        stats_command_done(er->m->cmds[i].cmd, 0, first == '-');
        exec_slowlog(er, i, 0);
        queued_command *q = &er->m->cmds[i];
        size_t len = evbuffer_get_length(er->replies[i]);
        if (er->elems[i].reply_turned) off = er->elems[i].reply_turned == 2;
        if (off) {
            evbuffer_drain(er->replies[i], len);
            continue;
        }
        /* Scripts answer in the client's protocol already. */
        if (exec_resp3(er) && !scripting_is_eval(q->cmd) && len) {
            const char *p = (const char *)evbuffer_pullup(er->replies[i], -1);
            if (resp3_convert(queued_shape(q), p, len, out) > 0) {
                evbuffer_drain(er->replies[i], len);
                continue;
            }
        }
        evbuffer_add_buffer(out, er->replies[i]);
    }
    if (er->c) er->c->db = er->db; /* a SELECT inside moves the client, as in Redis */
    exec_tracking(er);
    exec_finish(er);
}

static void exec_elem_cb(void *ctx, const backend_reply *r)
{
    exec_elem *el = ctx;
    exec_run *er = el->er;
    if (r->error) {
        reply_error(er->replies[el->index], r->error);
    } else {
        char head[40];
        size_t n = r->raw_len < sizeof(head) ? r->raw_len : sizeof(head);
        evbuffer_copyout(r->raw, head, n);
        if (n && head[0] == '-') stats_error_reply(head + 1, n - 1); /* the store's error, counted as Redis would */
        evbuffer_remove_buffer(r->raw, er->replies[el->index], r->raw_len);
    }
    er->pending--;
    exec_run_step(er);
}

/* A command the proxy emulates (an old store) ran in its place. */
static void exec_emulated_done(void *ctx, const char *reply, size_t len, int store_failed)
{
    exec_elem *el = ctx;
    exec_run *er = el->er;
    (void)store_failed;
    if (len && reply[0] == '-') stats_error_reply(reply + 1, len - 1);
    evbuffer_add(er->replies[el->index], reply, len);
    er->script_running = 0;
    exec_run_step(er);
}

static void exec_script_done(void *ctx, const char *reply, size_t len)
{
    exec_elem *el = ctx;
    exec_run *er = el->er;
    evbuffer_add(er->replies[el->index], reply, len);
    er->script_running = 0;
    exec_run_step(er);
}

/* A script inside EXEC takes its client's id, user and database; once the
 * client is gone they come from the transaction, through a stand-in. */
static void exec_start_script(exec_run *er, queued_command *q, exec_elem *el)
{
    client stand_in, *c = er->c;
    if (!c) {
        memset(&stand_in, 0, sizeof(stand_in));
        stand_in.id = er->client_id;
        stand_in.user = er->user;
        stand_in.db = er->db;
        stand_in.watch_conn = stand_in.dedicated_conn = stand_in.backend_conn = -1;
        c = &stand_in;
    }
    scripting_eval_in_exec(c, q->cmd, q->argc, q->argv, q->argvlen, er->ls, er->db, exec_script_done, el);
}

static void exec_local_done(void *ctx)
{
    exec_run *er = ctx;
    er->script_running = 0;
    exec_run_step(er);
}

/* A command the proxy answers itself, run as its client sent it (in the
 * transaction's database), its reply captured into the transaction's. */
static void exec_run_local(exec_run *er, queued_command *q, int i)
{
    client *c = er->c;
    if (!c) {
        /* Nobody reads the reply; the proxy's own state is the client's. */
        reply_error(er->replies[i], "ERR client gone");
        return;
    }
    if (!strcmp(q->cmd->name, "monitor")) {
        /* As Redis refuses it inside EXEC (a client that must get a reply per command). */
        reply_error(er->replies[i], "ERR MONITOR isn't allowed for DENY BLOCKING client");
        return;
    }
    const command_def *cur_cmd = c->cur_cmd;
    const resp3_shape *cur_shape = c->cur_shape;
    reply_slot *cur_reply = c->cur_reply;
    int db = c->db;
    c->cur_cmd = NULL; /* EXEC counts it */
    c->cur_shape = NULL; /* EXEC converts it for RESP3 */
    c->cur_reply = NULL;
    c->db = er->db;
    er->capture.buf = er->replies[i];
    er->capture.done = exec_local_done;
    er->capture.ctx = er;
    client_capture_begin(c, &er->capture);
    er->script_running = 1;
    int was_off = (c->flags & CLIENT_REPLY_OFF) != 0;
    dispatch_run_local(c, q->cmd, q->argc, q->argv, q->argvlen);
    int all = client_capture_end(c, &er->capture);
    int is_off = (c->flags & CLIENT_REPLY_OFF) != 0;
    if (was_off != is_off) er->elems[i].reply_turned = is_off ? 2 : 1;
    /* It may have closed its own client (CLIENT KILL): c is still readable
     * until the next loop turn. */
    if (er->c) {
        c->cur_cmd = cur_cmd;
        c->cur_shape = cur_shape;
        c->cur_reply = cur_reply;
        c->db = db;
    }
    if (all) er->script_running = 0;
}

/* Commands go out in order; a script starts once everything before it has
 * answered (its calls may take another connection), and what follows it
 * waits for it. */
static void exec_run_step(exec_run *er)
{
    backend *b = server.backend;
    /* A script may finish inside scripting_eval_in_exec, which steps again:
     * the outer call carries on instead of nesting. */
    if (er->stepping) return;
    er->stepping = 1;
    while (!er->script_running && er->next < er->m->count) {
        int i = er->next;
        queued_command *q = &er->m->cmds[i];
        if (q->acl_error) {
            er->next++;
            reply_error(er->replies[i], q->acl_error);
            continue;
        }
        if (q->local) {
            if (er->pending) break;
            er->next++;
            exec_run_local(er, q, i);
            continue;
        }
        if (scripting_is_eval(q->cmd)) {
            if (er->pending) break; /* exec_elem_cb steps again once they have answered */
            er->next++;
            er->script_running = 1;
            exec_start_script(er, q, &er->elems[i]);
            continue;
        }
        if (emulation_wanted(q->cmd, er->db, q->argc, q->argv, q->argvlen)) {
            /* Like a script: after what came before, under the transaction's locks. */
            if (er->pending) break;
            er->next++;
            er->script_running = 1;
            emulation_run_held(q->cmd, q->argc, q->argv, q->argvlen, er->db, backend_pick(b, (unsigned)er->client_id),
                               er->client_id, exec_emulated_done, &er->elems[i]);
            continue;
        }
        er->next++;
        if (pubsub_run_here(q->cmd, q->argc, q->argv, q->argvlen, er->replies[i])) continue;
        if (!strcmp(q->cmd->name, "select")) {
            long long id;
            if (!string_to_ll(q->argv[1], q->argvlen[1], &id)) {
                reply_error(er->replies[i], "ERR value is not an integer or out of range");
            } else if (id < 0 || id >= config.databases) {
                reply_error(er->replies[i], "ERR DB index is out of range");
            } else {
                er->db = (int)id;
                reply_ok(er->replies[i]);
            }
            continue;
        }
        int conn = backend_pick(b, (unsigned)er->client_id);
        if (conn < 0 || backend_send(b, conn, er->db, q->argc, q->argv, q->argvlen, BACKEND_RAW, exec_elem_cb,
                                     &er->elems[i]) != 0) {
            reply_error(er->replies[i], backend_error(b));
            continue;
        }
        er->pending++;
    }
    er->stepping = 0;
    if (!er->script_running && !er->pending && er->next == er->m->count) exec_run_finish(er);
}

static void exec_presteps(exec_run *er);

static void exec_records_written(void *ctx, int ok)
{
    exec_run *er = ctx;
    if (er->records_ahead) {
        /* The commands went right behind them (one store); the run waits
         * for this answer before it finishes. */
        er->records_ahead = 0;
        if (!ok) log_warning("fleet: a transaction's journal record was refused by the store; should this member "
                             "die before it ends, the fleet cannot undo it");
        er->pending--;
        exec_run_step(er);
        return;
    }
    if (!ok) {
        exec_finish_error(er, "EXECABORT Transaction discarded because of: the fleet could not keep its journal in "
                              "the store");
        return;
    }
    exec_run_step(er);
}

static void exec_records_go(exec_run *er)
{
    int conn = backend_pick(server.backend, (unsigned)er->client_id);
    int rc = journal_persist(er->journal, conn, 0, exec_records_written, er);
    if (rc < 0) {
        exec_records_written(er, 0);
    } else if (rc == 0) {
        exec_run_step(er);
    } else if (journal_records_ordered(er->journal)) {
        er->records_ahead = 1;
        er->pending++; /* the records' answer, as one of the commands' */
        exec_run_step(er);
    }
}

static void exec_journal_settled(void *ctx)
{
    exec_run *er = ctx;
    if (er->journal_waiting && !journal_pending(er->journal)) {
        er->journal_waiting = 0;
        exec_records_go(er);
    }
}

/* A fleet member's transaction that writes: the images of every key its
 * commands (and its scripts' declared keys) may write, read before the
 * first of them runs, and kept in the store; then the commands. */
static void exec_journal(exec_run *er)
{
    if (er->frun.place < 0) {
        exec_run_step(er);
        return;
    }
    backend *b = server.backend;
    int conn = backend_pick(b, (unsigned)er->client_id);
    er->journal = journal_new(exec_journal_settled, er);
    journal_set_durable(er->journal, &er->frun);
    int db = er->db;
    for (int i = 0; i < er->m->count && conn >= 0; i++) {
        queued_command *q = &er->m->cmds[i];
        long long id;
        if (!strcmp(q->cmd->name, "select")) {
            if (q->argc == 2 && string_to_ll(q->argv[1], q->argvlen[1], &id) && id >= 0 && id < config.databases)
                db = (int)id;
            continue;
        }
        int first = 0, n = 0, keys[64];
        const int *at = keys;
        if (scripting_is_eval(q->cmd)) {
            n = scripting_eval_keys(q->cmd, q->argc, q->argv, q->argvlen, &first);
            at = NULL;
        } else if ((q->cmd->flags & CMD_WRITE) && (q->cmd->key_spec_count || q->cmd->getkeys)) {
            n = command_get_keys(q->cmd, q->argc, q->argv, q->argvlen, keys, NULL, 64);
            if (n > 64) n = 0; /* keyspace-wide in effect: locked whole, nothing to image */
        }
        for (int k = 0; k < n; k++) {
            int a = at ? at[k] : first + k;
            if (journal_has(er->journal, db, q->argv[a], q->argvlen[a])) continue;
            journal_capture(er->journal, b, conn, db, er->client_id, q->argv[a], q->argvlen[a]);
        }
    }
    if (journal_pending(er->journal)) er->journal_waiting = 1;
    else exec_records_go(er);
}

static void exec_prestep_done(void *ctx, const char *error)
{
    exec_run *er = ctx;
    if (error) {
        char msg[512];
        snprintf(msg, sizeof(msg), "EXECABORT Transaction discarded because of: %s", error);
        exec_finish_error(er, msg);
        return;
    }
    exec_presteps(er);
}

/* Before the first command: what must happen to every queued command's keys
 * (key_presteps.h; a key still in a migration's old store moves), so that
 * a failure there leaves the whole transaction unrun, not half done.
 * Scripts inside do their own. */
static void exec_presteps(exec_run *er)
{
    multi_state *m = er->m;
    while (er->prestep_next < m->count) {
        queued_command *q = &m->cmds[er->prestep_next++];
        long long id;
        if (!strcmp(q->cmd->name, "select")) {
            if (q->argc == 2 && string_to_ll(q->argv[1], q->argvlen[1], &id) && id >= 0 && id < config.databases)
                er->prestep_db = (int)id;
            continue;
        }
        if (q->acl_error || scripting_is_eval(q->cmd) ||
            !key_presteps_wanted(q->cmd, er->prestep_db, q->argc, q->argv, q->argvlen))
            continue;
        prestep_call call = {q->cmd, q->argc, q->argv, q->argvlen, er->prestep_db,
                             backend_pick(server.backend, (unsigned)er->client_id), er->client_id};
        key_presteps_run(&call, exec_prestep_done, er);
        return;
    }
    exec_journal(er);
}

static void exec_run_start(exec_run *er)
{
    multi_state *m = er->m;
    er->phase = EXEC_RUN;
    er->replies = calloc((size_t)m->count, sizeof(*er->replies));
    er->elems = calloc((size_t)m->count, sizeof(*er->elems));
    if (m->count && (!er->replies || !er->elems)) abort();
    for (int i = 0; i < m->count; i++) {
        er->replies[i] = evbuffer_new();
        if (!er->replies[i]) abort();
        er->elems[i].er = er;
        er->elems[i].index = i;
    }
    er->prestep_db = er->db;
    exec_presteps(er);
}

/* With WATCH, an empty transaction on the pinned connection asks the store
 * whether a watched key changed; the proxy's locks are already held. */
static void watch_check_cb(void *ctx, const backend_reply *r)
{
    exec_run *er = ctx;
    char first[2] = {0, 0};
    if (!r->error) evbuffer_copyout(r->raw, first, 2);
    exec_unwatch(er);
    if (r->error) {
        exec_finish_error(er, r->error);
        return;
    }
    if (first[0] != '*' || first[1] == '-') {
        exec_null_reply(er);
        exec_finish(er);
        return;
    }
    exec_run_start(er);
}

/* Whether the proxy runs any queued command itself (emulation_wanted),
 * each asked in the database it will run in (db at EXEC, then SELECTs). */
static int any_emulated(const multi_state *m, int db)
{
    for (int i = 0; i < m->count; i++) {
        queued_command *q = &m->cmds[i];
        long long id;
        if (!strcmp(q->cmd->name, "select")) {
            if (q->argc == 2 && string_to_ll(q->argv[1], q->argvlen[1], &id) && id >= 0 && id < config.databases)
                db = (int)id;
            continue;
        }
        if (emulation_wanted(q->cmd, db, q->argc, q->argv, q->argvlen)) return 1;
    }
    return 0;
}

/* Also true when a command is refused at EXEC: the proxy then runs the
 * transaction itself, answering the refused command with its error. */
static int has_scripts(const multi_state *m, int db)
{
    if (m->acl_refused || m->store_oom) return 1;
    for (int i = 0; i < m->count; i++)
        if (scripting_is_eval(m->cmds[i].cmd) || m->cmds[i].local) return 1;
    return any_emulated(m, db);
}

/* WATCH without a pinned connection: did a writer through the proxy touch
 * a watched key since? */
static int watched_changed(const watch_versions *w)
{
    int tokens = use_key_tokens();
    for (int i = 0; i < w->n; i++) {
        const lock_watch *lw = w->keys[i].w;
        if ((tokens ? lock_watch_key_version(lw) : lock_watch_version(lw)) != w->keys[i].version) return 1;
    }
    return 0;
}

static void exec_proceed(exec_run *er);

/* The watched keys' tokens now, read under the transaction's locks. */

/* MONITOR: as Redis, the commands EXEC runs, then EXEC itself (alone when
 * a watched key changed). */
static void exec_monitor(exec_run *er, int with_commands)
{
    if (!monitor_active() || !er->c) return;
    for (int i = 0; with_commands && i < er->m->count; i++) {
        const queued_command *q = &er->m->cmds[i];
        if (!q->cmd || !(q->cmd->flags & CMD_ADMIN))
            monitor_feed(er->c, er->db, q->cmd, q->argc, q->argv, q->argvlen);
    }
    /* As the client spelled it, as Redis shows it. */
    char *ev[1] = {er->exec_word};
    size_t el[1] = {strlen(er->exec_word)};
    monitor_feed(er->c, er->c->db, NULL, 1, ev, el);
}

/* WATCH judged: a changed key answers EXEC with a null array, as Redis. */
static void exec_watch_judged(exec_run *er, int changed)
{
    exec_unwatch(er);
    if (changed) {
        exec_monitor(er, 0);
        exec_null_reply(er);
        exec_finish(er);
        return;
    }
    exec_proceed(er);
}

static void exec_tokens_cb(void *ctx, const backend_reply *r)
{
    exec_run *er = ctx;
    watch_versions *w = er->wv;
    if (!key_tokens_ok(r, w->n)) {
        exec_finish_error(er, r->error ? r->error : "ERR unexpected reply from the store for WATCH");
        return;
    }
    int changed = 0;
    for (int i = 0; i < w->n; i++)
        if (r->parsed->element[i]->integer != w->keys[i].token) changed = 1;
    exec_watch_judged(er, changed);
}

static void exec_go(exec_run *er)
{
    /* Before 2.6 the store keeps time to live in whole seconds: a watched
     * key whose exact deadline (the proxy's) passed since WATCH has
     * expired, and Redis 7.0 then aborts EXEC. */
    if (er->watch_deadline_ms && wall_ms() >= er->watch_deadline_ms) {
        exec_watch_judged(er, 1);
        return;
    }
    if (er->wv) {
        int changed = watched_changed(er->wv);
        if (!changed && use_key_tokens() && er->wv->n) {
            int conn = backend_pick(server.backend, (unsigned)er->client_id);
            if (key_tokens_send(er->wv, 0, conn, exec_tokens_cb, er) != 0) {
                exec_finish_error(er, backend_error(server.backend));
                return;
            }
            er->phase = EXEC_CHECK;
            return;
        }
        exec_watch_judged(er, changed);
        return;
    }
    exec_proceed(er);
}

static void exec_proceed(exec_run *er)
{
    exec_monitor(er, 1);
    if (!has_scripts(er->m, er->db) && server.backend->has_transactions) {
        exec_send(er);
        return;
    }
    if (er->watch_conn >= 0) {
        char *mv[1] = {"MULTI"}, *ev[1] = {"EXEC"};
        size_t ml[1] = {5}, el[1] = {4};
        backend *b = server.backend;
        if (backend_send(b, er->watch_conn, er->db, 1, mv, ml, BACKEND_RAW, NULL, NULL) == 0 &&
            backend_send(b, er->watch_conn, er->db, 1, ev, el, BACKEND_RAW, watch_check_cb, er) == 0) {
            er->phase = EXEC_CHECK;
            return;
        }
        exec_finish_error(er, backend_error(b));
        return;
    }
    exec_run_start(er);
}

static void exec_lock_granted(lock_set *ls, void *ctx)
{
    exec_run *er = ctx;
    (void)ls;
    exec_go(er);
}

/* Refused because of a busy script: as Redis rejects EXEC then, the
 * transaction is discarded. */
static void exec_busy(exec_run *er, const char *busy)
{
    reply_errorf(er->slot->buf, "EXECABORT Transaction discarded because of: %s", busy);
    exec_finish(er);
}

/* Every queued command's units, in one set, then run it. */
static void exec_lock(exec_run *er)
{
    multi_state *m = er->m;
    int write = 0, keyspace = 0, scripts = 0;
    for (int i = 0; i < m->count; i++) {
        if (m->cmds[i].cmd->flags & CMD_WRITE) write = 1;
        if (scripting_is_eval(m->cmds[i].cmd) || m->cmds[i].local) scripts = 1;
    }
    if (any_emulated(m, er->db)) scripts = 1;
    /* With scripts inside, the proxy runs the transaction itself: it must
     * exclude everyone from its keys for the whole span. */
    int by_proxy = scripts || !server.backend->has_transactions || m->acl_refused || m->store_oom;
    int mode = by_proxy ? LOCK_SCRIPT_EXCL : write ? LOCK_PLAIN_WRITE : LOCK_PLAIN_READ;
    lock_set *ls = lock_set_new(mode, exec_lock_granted, er);
    if (by_proxy && write) lock_set_set_written(ls, 1); /* so WATCHers see it */
    if (by_proxy && write && fleet_enabled()) {
        fleet_run_end(&er->frun);
        fleet_run_begin(&er->frun);
        lock_set_set_run(ls, er->frun.place >= 0 ? er->frun.tag : NULL);
    }
    int db = er->db;
    for (int i = 0; i < m->count && !keyspace; i++) {
        queued_command *q = &m->cmds[i];
        if (!strcmp(q->cmd->name, "select")) {
            long long id;
            if (string_to_ll(q->argv[1], q->argvlen[1], &id) && id >= 0 && id < config.databases) db = (int)id;
            continue;
        }
        if (command_is_keyspace_wide(q->cmd)) {
            keyspace = 1;
            break;
        }
        if (scripting_is_eval(q->cmd)) {
            int first, n = scripting_eval_keys(q->cmd, q->argc, q->argv, q->argvlen, &first);
            for (int k = 0; k < n; k++) lock_set_add_key(ls, db, q->argv[first + k], q->argvlen[first + k]);
            continue;
        }
        if (!q->cmd->key_spec_count && !q->cmd->getkeys) continue;
        int keys[64];
        int n = command_get_keys(q->cmd, q->argc, q->argv, q->argvlen, keys, NULL, 64);
        if (n < 0 || n > 64) {
            keyspace = 1;
            break;
        }
        for (int k = 0; k < n; k++) lock_set_add_key(ls, db, q->argv[keys[k]], q->argvlen[keys[k]]);
    }
    if (keyspace) lock_set_add_keyspace(ls);
    er->ls = ls;
    er->phase = EXEC_LOCKS;
    int rc = lock_set_acquire(ls, 1);
    if (rc == LOCK_BUSY) {
        exec_busy(er, busy_error(lock_set_busy_kind(ls)));
        return;
    }
    if (rc == LOCK_GRANTED) exec_go(er);
}

static void exec_drained(client *c) { exec_lock(c->exec_run); }

static void exec_begin(exec_run *er)
{
    /* With WATCH the transaction goes on the client's own connection: the
     * commands it sent before must have run first. */
    int drain = er->watch_conn >= 0 || er->wv || !server.backend->has_transactions || has_scripts(er->m, er->db);
    er->phase = EXEC_DRAIN;
    if (drain && er->c) client_when_drained(er->c, exec_drained);
    else exec_lock(er);
}

static void exec_store_checked(void *ctx, const char *error, int oom)
{
    exec_run *er = ctx;
    int denyoom = 0;
    for (int i = 0; i < er->m->count; i++)
        if (er->m->cmds[i].cmd->flags & CMD_DENYOOM) denyoom = 1;
    if (error && (!oom || denyoom)) {
        reply_errorf(er->slot->buf, "EXECABORT Transaction discarded because of: %s", error);
        exec_finish(er);
        return;
    }
    /* Reads only: they run, though the store would queue none of them now. */
    if (error) er->m->store_oom = 1;
    exec_begin(er);
}

static void exec_continue_gone(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    exec_lock(arg);
}

static void exec_command(client *c)
{
    multi_state *m = c->multi;
    if (!m) {
        reply_error(client_reply_buffer(c), "ERR EXEC without MULTI");
        return;
    }
    c->multi = NULL;
    if (m->dirty) {
        /* EXEC runs (and shows in MONITOR), then aborts, as in Redis. */
        if (monitor_active() && c->cur_argc > 0)
            monitor_feed(c, c->db, NULL, 1, c->cur_argv, c->cur_argvlen);
        reply_error(client_reply_buffer(c), "EXECABORT Transaction discarded because of previous errors.");
        multi_free(m);
        unwatch(c);
        return;
    }
    /* As Redis, EXEC checks every command again: the user's rules may have
     * changed since it was queued. */
    if (!c->user->unrestricted)
        for (int i = 0; i < m->count; i++) {
            queued_command *q = &m->cmds[i];
            q->acl_error = acl_exec_recheck(c, q->cmd, q->argc, q->argv, q->argvlen);
            /* SORT's BY/GET refusal is the command's own error, in its place. */
            const char *sort_err = q->acl_error ? NULL : acl_sort_option_denied(c->user, q->cmd, q->argc, q->argv, q->argvlen);
            if (sort_err && !(q->acl_error = strdup(sort_err))) abort();
            if (q->acl_error) m->acl_refused = 1;
        }
    exec_run *er = calloc(1, sizeof(*er));
    if (!er) abort();
    er->frun.place = -1;
    er->c = c;
    er->client_id = c->id;
    er->user = c->user;
    acl_user_retain(er->user);
    er->m = m;
    er->db = c->db;
    er->new_db = -1;
    /* EXEC ends the WATCH, as in Redis; the transaction takes what it needs of it. */
    er->watch_conn = c->watch_conn;
    c->watch_conn = -1;
    er->watch_deadline_ms = c->watch_deadline_ms;
    c->watch_deadline_ms = 0;
    er->wv = c->watch_versions;
    c->watch_versions = NULL;
    er->slot = client_slot_add(c);
    snprintf(er->exec_word, sizeof(er->exec_word), "%.*s", c->cur_argc > 0 && c->cur_argvlen[0] == 4 ? 4 : 0,
             c->cur_argc > 0 ? c->cur_argv[0] : "");
    if (!er->exec_word[0]) memcpy(er->exec_word, "EXEC", 5);
    er->older = exec_runs;
    if (exec_runs) exec_runs->newer = er;
    exec_runs = er;
    c->exec_run = er;
    client_block(c);
    /* As Redis checks EXEC: out of memory, one deny-oom command aborts it,
     * and when the server refuses writes, one write. */
    int checks = m->count ? STORE_CHECK_OOM : 0;
    for (int i = 0; i < m->count; i++)
        if (m->cmds[i].cmd->flags & CMD_WRITE) checks |= STORE_CHECK_WRITE;
    er->phase = EXEC_STORE_ASK;
    if (store_refusal_check(checks, er->db, NULL, 0, exec_store_checked, er)) return;
    exec_begin(er);
}

unsigned long transactions_runs_pending(void)
{
    unsigned long n = 0;
    for (exec_run *er = exec_runs; er; er = er->older) n++;
    return n;
}

void transactions_shutdown(void)
{
    /* The backend is gone; what is left never gets its replies. Scripts
     * inside EXEC have already released the lock set they borrowed. */
    while (exec_runs) {
        exec_run *er = exec_runs;
        if (er->ls && !er->script_running) lock_set_release(er->ls);
        er->ls = NULL;
        watch_versions_free(er->wv);
        er->wv = NULL;
        if (er->c) er->c->exec_run = NULL;
        exec_free(er);
    }
}

/* ---- WATCH ----------------------------------------------------------------- */

static void watch_reply_cb(void *ctx, const backend_reply *r)
{
    reply_slot *s = ctx;
    client *c = s->c;
    if (c) {
        if (r->error) reply_error(s->buf, r->error);
        else evbuffer_remove_buffer(r->raw, s->buf, r->raw_len);
        if (c->dedicated_slot == s) {
            c->dedicated_slot = NULL;
            c->dedicated_conn = -1;
        }
        client_slot_done(s);
        client_unblock(c);
        return;
    }
    client_slot_done(s);
}

/* Stores before 2.6: the earliest exact deadline among keys being watched
 * that has not passed yet (see exec_go). */
static void watch_note_deadlines(client *c, int argc, char **argv, size_t *argvlen)
{
    if (!expiry_deadline_count()) return;
    long long now = wall_ms();
    for (int i = 1; i < argc; i++) {
        long long at;
        if (expiry_deadline_get(c->db, argv[i], argvlen[i], &at) && at > now &&
            (!c->watch_deadline_ms || at < c->watch_deadline_ms))
            c->watch_deadline_ms = at;
    }
}

static void watch_after_drain(client *c)
{
    int argc = c->parser.argc;
    char **argv = c->parser.argv;
    size_t *argvlen = c->parser.argvlen;
    backend *b = server.backend;
    watch_note_deadlines(c, argc, argv, argvlen);
    reply_slot *s = client_slot_add(c);
    if (backend_send(b, c->watch_conn, c->db, argc, argv, argvlen, BACKEND_RAW, watch_reply_cb, s) != 0) {
        reply_error(s->buf, backend_error(b));
        client_slot_done(s);
        unwatch(c);
        client_unblock(c);
        return;
    }
    c->dedicated_conn = c->watch_conn;
    c->dedicated_slot = s;
}

/* Every request sent without a set has been answered: the versions of the
 * keys just watched now include every write that could precede the WATCH. */
static void watch_tokens_cb(void *ctx, const backend_reply *r)
{
    token_read *t = ctx;
    watch_versions *w = t->w;
    client *c = t->c;
    int from = t->from;
    free(t);
    if (!w) return; /* the WATCH (or its client) is gone */
    w->reading = NULL;
    if (!key_tokens_ok(r, w->n - from)) {
        reply_error(client_reply_buffer(c), r->error ? r->error : "ERR unexpected reply from the store for WATCH");
        unwatch(c);
    } else {
        for (int i = from; i < w->n; i++) w->keys[i].token = r->parsed->element[i - from]->integer;
        reply_ok(client_reply_buffer(c));
    }
    client_unblock(c);
}

static void watch_versions_settled(lock_set *ls, void *ctx)
{
    client *c = ctx;
    watch_versions *w = c->watch_versions;
    w->settle = NULL;
    lock_set_release(ls);
    int from = w->snapped, tokens = use_key_tokens();
    for (; w->snapped < w->n; w->snapped++) {
        const lock_watch *lw = w->keys[w->snapped].w;
        w->keys[w->snapped].version = tokens ? lock_watch_key_version(lw) : lock_watch_version(lw);
    }
    if (tokens && from < w->n) {
        token_read *t = malloc(sizeof(*t));
        if (!t) abort();
        *t = (token_read){c, w, from};
        if (key_tokens_send(w, from, client_shared_conn(c), watch_tokens_cb, t) == 0) {
            w->reading = t;
            return;
        }
        free(t);
        reply_error(client_reply_buffer(c), backend_error(server.backend));
        unwatch(c);
        client_unblock(c);
        return;
    }
    reply_ok(client_reply_buffer(c));
    client_unblock(c);
}

static void watch_versions_after_drain(client *c)
{
    if (!c->watch_versions) {
        c->watch_versions = calloc(1, sizeof(*c->watch_versions));
        if (!c->watch_versions) abort();
    }
    watch_versions *w = c->watch_versions;
    for (int i = 1; i < c->parser.argc; i++) {
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 8;
            w->keys = realloc(w->keys, sizeof(*w->keys) * (size_t)w->cap);
            if (!w->keys) abort();
        }
        /* From here plain requests take sets, so their writes count. */
        watched_key *k = &w->keys[w->n];
        k->w = lock_watch_begin(c->db, c->parser.argv[i], c->parser.argvlen[i]);
        k->version = 0;
        k->token = 0;
        k->db = c->db;
        k->len = c->parser.argvlen[i];
        k->name = malloc(k->len + 1);
        if (!k->name) abort();
        memcpy(k->name, c->parser.argv[i], k->len + 1);
        w->n++;
    }
    lock_set *ls = lock_set_new(LOCK_SCRIPT_RO, watch_versions_settled, c);
    if (lock_set_acquire(ls, 0) == LOCK_GRANTED) {
        watch_versions_settled(ls, c);
        return;
    }
    w->settle = ls; /* released by unwatch should the client go meanwhile */
}

static void watch_command(client *c)
{
    if (c->multi) {
        reply_error(client_reply_buffer(c), "ERR WATCH inside MULTI is not allowed");
        return;
    }
    if (!server.backend->has_dedicated) {
        /* The store cannot watch: the proxy's write versions do. */
        client_block(c);
        client_when_drained(c, watch_versions_after_drain);
        return;
    }
    if (c->watch_conn < 0) {
        c->watch_conn = backend_open_dedicated(server.backend);
        if (c->watch_conn < 0) {
            reply_error(client_reply_buffer(c), backend_error(server.backend));
            return;
        }
    }
    client_block(c);
    client_when_drained(c, watch_after_drain);
}

/* ---- blocking commands ------------------------------------------------------- */

/* A blocking command's write (BLMOVE's push) tells the keys' trackers after
 * its reply, as Redis; one that timed out or failed changed nothing. The
 * slot is taken from first (done, it may be reused). */
static tracked_write *slot_take_tracked(reply_slot *s)
{
    tracked_write *tw = s->tracked;
    s->tracked = NULL;
    return tw;
}

static void blocking_reply_cb(void *ctx, const backend_reply *r)
{
    reply_slot *s = ctx;
    client *c = s->c;
    char head[2] = {0, 0};
    if (!r->error) evbuffer_copyout(r->raw, head, 2);
    int unchanged = r->error || head[0] == '-' || head[1] == '-';
    tracked_write *tw = slot_take_tracked(s);
    if (!c) {
        client_slot_done(s);
        tracking_write_end(tw, unchanged);
        return;
    }
    if (r->error) {
        reply_error(s->buf, r->error);
    } else {
        char head[64];
        size_t n = r->raw_len < sizeof(head) ? r->raw_len : sizeof(head);
        evbuffer_copyout(r->raw, head, n);
        if (n && head[0] == '-') stats_error_reply(head + 1, n - 1); /* -NOGROUP and the like, as Redis counts */
        evbuffer_remove_buffer(r->raw, s->buf, r->raw_len);
    }
    backend_release_dedicated(server.backend, c->dedicated_conn, 1);
    blocking_in_use--;
    c->blocking_cmd = NULL;
    c->dedicated_conn = -1;
    c->dedicated_slot = NULL;
    c->dedicated_blocking = 0;
    client_slot_done(s);
    tracking_write_end(tw, unchanged);
    client_unblock(c);
}

static void blocking_after_drain(client *c)
{
    backend *b = server.backend;
    int conn = backend_open_dedicated(b);
    if (conn < 0) {
        reply_error(client_reply_buffer(c), backend_error(b));
        client_unblock(c);
        return;
    }
    reply_slot *s = client_slot_add(c);
    if (backend_send(b, conn, c->db, c->parser.argc, c->parser.argv, c->parser.argvlen, BACKEND_RAW,
                     blocking_reply_cb, s) != 0) {
        backend_release_dedicated(b, conn, 0);
        reply_error(s->buf, backend_error(b));
        client_slot_done(s);
        client_unblock(c);
        return;
    }
    blocking_in_use++;
    c->dedicated_conn = conn;
    c->dedicated_slot = s;
    c->dedicated_blocking = 1;
    c->blocking_cmd = command_lookup(c->parser.argv[0], c->parser.argvlen[0]);
    if (tracking_active())
        s->tracked = tracking_write_begin(c->id, command_resolve(c->parser.argc, c->parser.argv, c->parser.argvlen, NULL),
                                          c->parser.argc, c->parser.argv, c->parser.argvlen);
    client_blocking_sent(c);
}

int blocking_unblock(client *c, int with_error)
{
    if (!c->dedicated_blocking || c->dedicated_conn < 0 || !c->dedicated_slot) return 0;
    const command_def *cmd = c->blocking_cmd;
    if (cmd && !strcmp(cmd->name, "wait")) return 0; /* as in Redis: WAIT is not unblockable */
    /* Closing its store connection ends the wait at the store; the client
     * gets what a timeout gives, or the UNBLOCKED error. */
    backend_release_dedicated(server.backend, c->dedicated_conn, 0);
    blocking_in_use--;
    reply_slot *s = c->dedicated_slot;
    if (with_error) reply_error(s->buf, "UNBLOCKED client unblocked via CLIENT UNBLOCK");
    else if (cmd && (!strcmp(cmd->name, "blmove") || !strcmp(cmd->name, "brpoplpush"))) reply_null_bulk(s->buf);
    else reply_null_array(s->buf);
    c->dedicated_conn = -1;
    c->dedicated_slot = NULL;
    c->dedicated_blocking = 0;
    tracked_write *tw = slot_take_tracked(s);
    client_slot_done(s);
    tracking_write_end(tw, 1);
    client_unblock(c);
    return 1;
}

void blocking_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!server.backend->has_dedicated) {
        /* No connection of its own to block on: the store gets it like any
         * other command (memcached refuses it with its usual text). */
        relay_command(c, cmd, argc, argv, argvlen);
        return;
    }
    if ((long long)blocking_in_use >= config.backend_blocking_connections) {
        reply_errorf(client_reply_buffer(c),
                     "ERR no store connection left for blocking commands (backend-blocking-connections is %lld)",
                     config.backend_blocking_connections);
        return;
    }
    client_block(c);
    /* Commands the client sent before must reach the store first. */
    client_when_drained(c, blocking_after_drain);
}

unsigned blocking_clients(void) { return blocking_in_use; }

/* ---- entry points --------------------------------------------------------------- */

void cmd_multi(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (c->multi) {
        reply_error(client_reply_buffer(c), "ERR MULTI calls can not be nested");
        return;
    }
    c->multi = calloc(1, sizeof(*c->multi));
    if (!c->multi) abort();
    reply_ok(client_reply_buffer(c));
}

void cmd_exec(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen) { exec_command(c); }

void cmd_discard(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (!c->multi) {
        reply_error(client_reply_buffer(c), "ERR DISCARD without MULTI");
        return;
    }
    multi_free(c->multi);
    c->multi = NULL;
    unwatch(c);
    reply_ok(client_reply_buffer(c));
}

void cmd_watch(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen) { watch_command(c); }

void cmd_unwatch(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    unwatch(c);
    reply_ok(client_reply_buffer(c));
}
