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
#include "proxy/transactions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "backends/backend.h"
#include "proxy/acl.h"
#include "proxy/config.h"
#include "proxy/locks.h"
#include "proxy/log.h"
#include "proxy/reply.h"
#include "proxy/scripting.h"
#include "proxy/server.h"

typedef struct queued_command {
    const command_def *cmd;
    int argc;
    char **argv; /* argv, argvlen and the bytes: one block */
    size_t *argvlen;
    char *acl_error; /* refused at EXEC: the user's rules changed since it was queued */
} queued_command;

typedef struct watched_key {
    lock_watch *w;
    uint64_t version;
} watched_key;

struct watch_versions {
    watched_key *keys;
    int n, cap;
    int snapped;        /* keys[0..snapped) have their versions */
    lock_set *settle;   /* waits for requests in flight without a set */
};

struct multi_state {
    queued_command *cmds;
    int count, cap;
    int dirty; /* a command was rejected while queueing: EXEC aborts */
    int acl_refused; /* some command got acl_error at EXEC */
};

static unsigned blocking_in_use;
static int has_scripts(const multi_state *m);

typedef struct exec_elem {
    struct exec_run *er;
    int index;
} exec_elem;

typedef struct exec_run {
    client *c; /* NULL once the client is gone */
    multi_state *m;
    lock_set *ls;
    reply_slot *slot;
    struct evbuffer **replies; /* one per queued command */
    exec_elem *elems;
    int next;      /* next command to start */
    int pending;   /* store replies outstanding */
    int script_running;
    int stepping;
    int db, start_db;
} exec_run;


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
    for (int i = 0; i < w->n; i++) lock_watch_end(w->keys[i].w);
    free(w->keys);
    free(w);
}

static void unwatch(client *c)
{
    watch_versions_free(c->watch_versions);
    c->watch_versions = NULL;
    if (c->watch_conn >= 0) {
        backend_release_dedicated(server.backend, c->watch_conn, 0);
        c->watch_conn = -1;
    }
}

void transactions_client_gone(client *c)
{
    multi_free(c->multi);
    c->multi = NULL;
    if (c->exec_run) {
        /* It runs to the end, as Redis runs what it has read; the reply is dropped. */
        c->exec_run->c = NULL;
        c->exec_run = NULL;
    }
    if (c->exec_locks) {
        /* A WATCH check was in flight: its callback goes with the pinned connection. */
        lock_set_release(c->exec_locks);
        c->exec_locks = NULL;
        multi_free(c->exec_pending);
        c->exec_pending = NULL;
    }
    if (c->dedicated_conn >= 0) {
        /* A blocking command or an EXEC is in flight on it: closing the
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

/* Local commands that the store can run inside its own transaction. */
/* Commands the proxy answers itself outside MULTI that the store can run
 * inside one. PUBLISH reaches the proxy's subscribers through its shared
 * subscriber connection; its count is then the store's (as from a script). */
static int store_can_run(const command_def *cmd)
{
    static const char *const ok[] = {"ping", "echo", "time", "select", "publish", NULL};
    for (const char *const *p = ok; *p; p++)
        if (!strcmp(*p, cmd->name)) return 1;
    return 0;
}

int multi_queue(client *c, const command_def *cmd, int is_local, int argc, char **argv, size_t *argvlen)
{
    multi_state *m = c->multi;
    struct evbuffer *out = client_reply_buffer(c);
    if (is_local && !store_can_run(cmd) && !scripting_is_eval(cmd)) {
        reply_errorf(out, "ERR command '%s' inside MULTI is not supported by evalproxy yet", cmd->name);
        m->dirty = 1;
        return 1;
    }
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) bytes += argvlen[i] + 1;
    char *block = malloc((size_t)argc * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!block) abort();
    queued_command q = {cmd, argc, (char **)block, (size_t *)(block + (size_t)argc * sizeof(char *)), NULL};
    char *data = block + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < argc; i++) {
        memcpy(data, argv[i], argvlen[i]);
        data[argvlen[i]] = '\0';
        q.argv[i] = data;
        q.argvlen[i] = argvlen[i];
        data += argvlen[i] + 1;
    }
    if (m->count == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->cmds = realloc(m->cmds, sizeof(*m->cmds) * (size_t)m->cap);
        if (!m->cmds) abort();
    }
    m->cmds[m->count++] = q;
    reply_status(out, "QUEUED");
    return 1;
}

/* ---- EXEC -------------------------------------------------------------------- */

typedef struct exec_call {
    client *c;
    multi_state *m;
    lock_set *locks;
    int new_db; /* the client's database after EXEC (SELECT inside), or -1 */
} exec_call;

static void exec_reply_cb(void *ctx, const backend_reply *r)
{
    reply_slot *s = ctx;
    client *c = s->c;
    if (s->locks) {
        lock_set_release(s->locks);
        s->locks = NULL;
    }
    if (c) {
        int new_db = c->exec_new_db;
        c->exec_new_db = -1;
        if (c->dedicated_slot == s) {
            c->dedicated_slot = NULL;
            c->dedicated_conn = -1;
        }
        if (r->error) {
            reply_error(s->buf, r->error);
        } else {
            /* A SELECT inside a transaction that ran moves the client. */
            char first[2] = {0, 0};
            evbuffer_copyout(r->raw, first, 2);
            if (new_db >= 0 && first[0] == '*' && first[1] != '-') c->db = new_db;
            evbuffer_remove_buffer(r->raw, s->buf, r->raw_len);
        }
        /* WATCH ends with EXEC, as in Redis. */
        if (c->watch_conn >= 0) unwatch(c);
        client_slot_done(s);
        client_unblock(c);
        return;
    }
    client_slot_done(s);
}

/* Returns 1 when the transaction went out (the client stays blocked until
 * EXEC's reply), 0 when it failed at once (an error reply is queued). */
static int exec_send(client *c, multi_state *m, lock_set *ls)
{
    backend *b = server.backend;
    int pinned = c->watch_conn >= 0;
    int conn = pinned ? c->watch_conn : client_shared_conn(c);
    int db = c->db, new_db = -1;
    reply_slot *s = client_slot_add(c);
    s->locks = ls;
    char *mv[1] = {"MULTI"}, *ev[1] = {"EXEC"};
    size_t ml[1] = {5}, el[1] = {4};
    int ok = conn >= 0 && backend_send(b, conn, db, 1, mv, ml, BACKEND_RAW, NULL, NULL) == 0;
    for (int i = 0; ok && i < m->count; i++) {
        queued_command *q = &m->cmds[i];
        ok = backend_send(b, conn, db, q->argc, q->argv, q->argvlen, BACKEND_RAW, NULL, NULL) == 0;
        if (!strcmp(q->cmd->name, "select")) {
            long long id;
            if (string_to_ll(q->argv[1], q->argvlen[1], &id) && id >= 0 && id < config.databases) new_db = (int)id;
        }
    }
    if (ok) ok = backend_send(b, conn, db, 1, ev, el, BACKEND_RAW, exec_reply_cb, s) == 0;
    if (ok && new_db >= 0) {
        /* The store's connection moved with the SELECT: bring it back to the
         * database the proxy believes it is in. */
        char num[16];
        int n = snprintf(num, sizeof(num), "%d", db);
        char *sv[2] = {"SELECT", num};
        size_t sl[2] = {6, (size_t)n};
        backend_send(b, conn, db, 2, sv, sl, BACKEND_RAW, NULL, NULL);
    }
    multi_free(m);
    if (!ok) {
        /* Nothing was sent, or the connection fails and errors every reply. */
        if (s->locks) lock_set_release(s->locks);
        s->locks = NULL;
        reply_error(s->buf, backend_error(b));
        client_slot_done(s);
        unwatch(c);
        return 0;
    }
    c->exec_new_db = new_db;
    if (pinned) {
        c->dedicated_conn = conn;
        c->dedicated_slot = s;
    }
    return 1; /* later commands wait for EXEC's reply: they must not overtake it */
}

/* ---- EXEC run by the proxy (scripts inside) ------------------------------------ */

static void exec_run_step(exec_run *er);

static void exec_run_finish(exec_run *er)
{
    reply_slot *s = er->slot;
    reply_array(s->buf, er->m->count);
    for (int i = 0; i < er->m->count; i++) {
        evbuffer_add_buffer(s->buf, er->replies[i]);
        evbuffer_free(er->replies[i]);
    }
    lock_set_release(er->ls);
    client *c = er->c;
    if (c) {
        c->exec_run = NULL;
        c->db = er->db; /* a SELECT inside moves the client, as in Redis */
    }
    client_slot_done(s);
    multi_free(er->m);
    free(er->replies);
    free(er->elems);
    free(er);
    if (c) client_unblock(c);
}

static void exec_elem_cb(void *ctx, const backend_reply *r)
{
    exec_elem *el = ctx;
    exec_run *er = el->er;
    if (r->error) reply_error(er->replies[el->index], r->error);
    else evbuffer_remove_buffer(r->raw, er->replies[el->index], r->raw_len);
    er->pending--;
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
        if (scripting_is_eval(q->cmd)) {
            if (er->pending) return;
            er->next++;
            er->script_running = 1;
            scripting_eval_in_exec(er->c, q->cmd, q->argc, q->argv, q->argvlen, er->ls, er->db, exec_script_done,
                                   &er->elems[i]);
            continue;
        }
        er->next++;
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
        int conn = backend_pick(b, er->c ? (unsigned)er->c->id : 0);
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

static void exec_run_start(client *c, multi_state *m, lock_set *ls)
{
    exec_run *er = calloc(1, sizeof(*er));
    if (!er) abort();
    er->c = c;
    er->m = m;
    er->ls = ls;
    er->db = er->start_db = c->db;
    er->replies = calloc((size_t)m->count, sizeof(*er->replies));
    er->elems = calloc((size_t)m->count, sizeof(*er->elems));
    if (!er->replies || !er->elems) abort();
    for (int i = 0; i < m->count; i++) {
        er->replies[i] = evbuffer_new();
        er->elems[i].er = er;
        er->elems[i].index = i;
    }
    er->slot = client_slot_add(c);
    c->exec_run = er;
    exec_run_step(er);
}

/* With WATCH, an empty transaction on the pinned connection asks the store
 * whether a watched key changed; the proxy's locks are already held. */
static void watch_check_cb(void *ctx, const backend_reply *r)
{
    client *c = ctx;
    multi_state *m = c->exec_pending;
    lock_set *ls = c->exec_locks;
    c->exec_pending = NULL;
    c->exec_locks = NULL;
    char first[2] = {0, 0};
    if (!r->error) evbuffer_copyout(r->raw, first, 2);
    unwatch(c);
    if (r->error || first[0] != '*' || first[1] == '-') {
        struct evbuffer *out = client_reply_buffer(c);
        if (r->error) reply_error(out, r->error);
        else reply_null_array(out);
        lock_set_release(ls);
        multi_free(m);
        client_unblock(c);
        return;
    }
    exec_run_start(c, m, ls);
}

/* Also true when a command is refused at EXEC: the proxy then runs the
 * transaction itself, answering the refused command with its error. */
static int has_scripts(const multi_state *m)
{
    if (m->acl_refused) return 1;
    for (int i = 0; i < m->count; i++)
        if (scripting_is_eval(m->cmds[i].cmd)) return 1;
    return 0;
}

/* WATCH without a pinned connection: did a writer through the proxy touch
 * a watched key since? */
static int watched_changed(client *c)
{
    watch_versions *w = c->watch_versions;
    if (!w) return 0;
    for (int i = 0; i < w->n; i++)
        if (lock_watch_version(w->keys[i].w) != w->keys[i].version) return 1;
    return 0;
}

static void exec_go(client *c, multi_state *m, lock_set *ls)
{
    if (c->watch_versions) {
        int changed = watched_changed(c);
        unwatch(c);
        if (changed) {
            reply_null_array(client_reply_buffer(c));
            lock_set_release(ls);
            multi_free(m);
            client_unblock(c);
            return;
        }
    }
    if (!has_scripts(m) && server.backend->has_transactions) {
        if (!exec_send(c, m, ls)) client_unblock(c);
        return;
    }
    if (c->watch_conn >= 0) {
        char *mv[1] = {"MULTI"}, *ev[1] = {"EXEC"};
        size_t ml[1] = {5}, el[1] = {4};
        backend *b = server.backend;
        c->exec_pending = m;
        c->exec_locks = ls;
        if (backend_send(b, c->watch_conn, c->db, 1, mv, ml, BACKEND_RAW, NULL, NULL) == 0 &&
            backend_send(b, c->watch_conn, c->db, 1, ev, el, BACKEND_RAW, watch_check_cb, c) == 0)
            return;
        c->exec_pending = NULL;
        c->exec_locks = NULL;
        unwatch(c);
    }
    exec_run_start(c, m, ls);
}

static void exec_lock_granted(lock_set *ls, void *ctx)
{
    client *c = ctx;
    c->waiting_locks = NULL;
    multi_state *m = c->exec_pending;
    c->exec_pending = NULL;
    exec_go(c, m, ls);
}

static void exec_after_drain(client *c)
{
    multi_state *m = c->exec_pending;
    /* Every queued command's units, in one set. */
    int write = 0, keyspace = 0, scripts = 0;
    for (int i = 0; i < m->count; i++) {
        if (m->cmds[i].cmd->flags & CMD_WRITE) write = 1;
        if (scripting_is_eval(m->cmds[i].cmd)) scripts = 1;
    }
    /* With scripts inside, the proxy runs the transaction itself: it must
     * exclude everyone from its keys for the whole span. */
    int by_proxy = scripts || !server.backend->has_transactions;
    int mode = by_proxy ? LOCK_SCRIPT_EXCL : write ? LOCK_PLAIN_WRITE : LOCK_PLAIN_READ;
    lock_set *ls = lock_set_new(mode, exec_lock_granted, c);
    if (by_proxy && write) lock_set_set_written(ls, 1); /* so WATCHers see it */
    int db = c->db;
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
    int rc = lock_set_acquire(ls, 1);
    if (rc == LOCK_BUSY) {
        /* As Redis rejects EXEC while a script is busy: the transaction is discarded. */
        const char *busy = busy_error(lock_set_busy_kind(ls));
        lock_set_release(ls);
        multi_free(m);
        c->exec_pending = NULL;
        unwatch(c);
        reply_errorf(client_reply_buffer(c), "EXECABORT Transaction discarded because of: %s", busy);
        client_unblock(c);
        return;
    }
    if (rc == LOCK_WAITING) {
        c->waiting_locks = ls;
        return;
    }
    c->exec_pending = NULL;
    exec_go(c, m, ls);
}

static void exec_command(client *c)
{
    multi_state *m = c->multi;
    struct evbuffer *out;
    if (!m) {
        reply_error(client_reply_buffer(c), "ERR EXEC without MULTI");
        return;
    }
    c->multi = NULL;
    if (m->dirty) {
        out = client_reply_buffer(c);
        reply_error(out, "EXECABORT Transaction discarded because of previous errors.");
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
            if (q->acl_error) m->acl_refused = 1;
        }
    c->exec_pending = m;
    client_block(c);
    /* With WATCH the transaction goes on the client's own connection: the
     * commands it sent before must have run first. */
    if (c->watch_conn >= 0 || c->watch_versions || !server.backend->has_transactions || has_scripts(m))
        client_when_drained(c, exec_after_drain);
    else exec_after_drain(c);
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

static void watch_after_drain(client *c)
{
    int argc = c->parser.argc;
    char **argv = c->parser.argv;
    size_t *argvlen = c->parser.argvlen;
    backend *b = server.backend;
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
static void watch_versions_settled(lock_set *ls, void *ctx)
{
    client *c = ctx;
    watch_versions *w = c->watch_versions;
    w->settle = NULL;
    lock_set_release(ls);
    for (; w->snapped < w->n; w->snapped++) w->keys[w->snapped].version = lock_watch_version(w->keys[w->snapped].w);
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
        w->keys[w->n].w = lock_watch_begin(c->db, c->parser.argv[i], c->parser.argvlen[i]);
        w->keys[w->n].version = 0;
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

static void blocking_reply_cb(void *ctx, const backend_reply *r)
{
    reply_slot *s = ctx;
    client *c = s->c;
    if (!c) {
        client_slot_done(s);
        return;
    }
    if (r->error) reply_error(s->buf, r->error);
    else evbuffer_remove_buffer(r->raw, s->buf, r->raw_len);
    backend_release_dedicated(server.backend, c->dedicated_conn, 1);
    blocking_in_use--;
    c->blocking_cmd = NULL;
    c->dedicated_conn = -1;
    c->dedicated_slot = NULL;
    c->dedicated_blocking = 0;
    client_slot_done(s);
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
    client_slot_done(s);
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
