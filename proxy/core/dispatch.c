/* Dispatch: Redis 7.0's checks in Redis's order (unknown command, arity,
 * authentication), then a local handler or the relay to the store. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "proxy/core/client_pause.h"
#include "backends/store.h"
#include "proxy/core/acl.h"
#include "proxy/core/resp3.h"
#include "proxy/core/tracking.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/command_table.h"
#include "proxy/core/dispatch.h"
#include "fleet/fleet.h"
#include "util/cluster_slot.h"
#include "proxy/core/config.h"
#include "proxy/core/locks.h"
#include "util/args.h"
#include "util/log.h"
#include "proxy/core/reply.h"
#include "proxy/core/monitor.h"
#include "proxy/core/server.h"
#include "proxy/core/slowlog.h"
#include "proxy/core/store_refusal.h"
#include "util/clock.h"

/* ---- relaying ------------------------------------------------------------ */

/* Which reply of a write command says it changed nothing (Redis then
 * touches no key, so no WATCH aborts): an error, and for these commands
 * the integer 0 or a nil. */
enum { UNCHANGED_NONE = 0, UNCHANGED_ZERO, UNCHANGED_NIL, UNCHANGED_ERROR, UNCHANGED_ALWAYS };

/* The command an invocation runs: the subcommand's entry for containers. */
static const command_def *invocation_command(int argc, char **argv, size_t *argvlen)
{
    const command_def *cmd = command_lookup(argv[0], argvlen[0]);
    if (cmd && cmd->subcommand_count && argc > 1) cmd = command_lookup_sub(cmd, argv[1], argvlen[1]);
    return cmd;
}

static int write_unchanged_reply(int argc, char **argv, size_t *argvlen)
{
    static const char *const zero[] = {"del", "unlink", "expire", "pexpire", "expireat", "pexpireat", "persist",
                                       "setnx", "msetnx", "renamenx", "copy", "hsetnx", "hdel", "srem", "sadd",
                                       "lpushx", "rpushx", NULL};
    const command_def *cmd = command_lookup(argv[0], argvlen[0]);
    if (!cmd || !(cmd->flags & CMD_WRITE)) return UNCHANGED_NONE;
    for (const char *const *p = zero; *p; p++)
        if (!strcmp(cmd->name, *p)) return UNCHANGED_ZERO;
    if (!strcmp(cmd->name, "getex") && argc == 2) return UNCHANGED_ALWAYS; /* no option: a read */
    if (!strcmp(cmd->name, "setrange") && argc == 4 && argvlen[3] == 0) return UNCHANGED_ALWAYS;
    if (!strcmp(cmd->name, "getdel") || !strcmp(cmd->name, "getex")) return UNCHANGED_NIL;
    if (!strcmp(cmd->name, "set")) {
        /* NX/XX not met: nil; with GET a nil is the old value (none). */
        int cond = 0;
        for (int i = 3; i < argc; i++) {
            if (!strcasecmp(argv[i], "get")) return UNCHANGED_ERROR;
            if (!strcasecmp(argv[i], "nx") || !strcasecmp(argv[i], "xx")) cond = 1;
        }
        return cond ? UNCHANGED_NIL : UNCHANGED_ERROR;
    }
    return UNCHANGED_ERROR;
}

static int reply_is_unchanged(int kind, const backend_reply *r)
{
    if (kind == UNCHANGED_NONE) return 0;
    if (r->error || kind == UNCHANGED_ALWAYS) return 1;
    char head[5] = {0};
    evbuffer_copyout(r->raw, head, sizeof(head));
    if (head[0] == '-') return 1;
    if (kind == UNCHANGED_ZERO) return r->raw_len == 4 && !memcmp(head, ":0\r\n", 4);
    if (kind == UNCHANGED_NIL) return r->raw_len == 5 && !memcmp(head, "$-1\r\n", 5);
    return 0;
}

void dispatch_relay_reply_cb(void *ctx, const backend_reply *r)
{
    reply_slot *s = ctx;
    client *c = s->c;
    if (s->tracked) {
        tracking_write_end(s->tracked, r->error || reply_is_unchanged(s->unchanged_reply, r));
        s->tracked = NULL;
    }
    if (s->locks) {
        if (reply_is_unchanged(s->unchanged_reply, r)) lock_set_set_unchanged(s->locks);
        lock_set_release(s->locks);
        s->locks = NULL;
    }
    if (s->unlocked) {
        s->unlocked = 0;
        locks_unlocked_end(s->unlocked_write);
    }
    if (!r->error && r->raw_len) {
        /* The store's error replies count in errorstats as the proxy's own. */
        char head[64];
        size_t n = r->raw_len < sizeof(head) ? r->raw_len : sizeof(head);
        evbuffer_copyout(r->raw, head, n);
        if (head[0] == '-') {
            s->failed = 1;
            stats_error_reply(head + 1, n - 1);
            s->rejected = store_refusal_note_error(head + 1, n - 1);
        }
    }
    if (r->error) s->failed = 1;
    if (c) {
        c->relay_inflight--;
        if (r->error) {
            server.stats.backend_errors++;
            reply_error(s->buf, r->error);
        } else if (!s->discard) {
            if (c->slots_head == s && !s->shape) {
                /* In order already: straight to the socket, no intermediate copy. */
                evbuffer_remove_buffer(r->raw, c->out, r->raw_len);
            } else {
                evbuffer_remove_buffer(r->raw, s->buf, r->raw_len);
            }
        }
    }
    client_slot_done(s);
    if (c && !c->relay_inflight && c->drain_fn && !(c->flags & CLIENT_CLOSING)) {
        void (*fn)(client *) = c->drain_fn;
        c->drain_fn = NULL;
        fn(c);
    }
}

void client_when_drained(client *c, void (*fn)(client *c))
{
    if (!c->relay_inflight) fn(c);
    else c->drain_fn = fn;
}

/* The connection a client's next relayed command goes out on. A client keeps
 * its connection while it has commands in flight, so the store runs them in
 * the order the client sent them. */
int client_shared_conn(client *c)
{
    backend *b = server.backend;
    if (c->relay_inflight && backend_conn_ready(b, c->backend_conn)) return c->backend_conn;
    c->backend_conn = backend_pick(b, (unsigned)c->id);
    return c->backend_conn;
}

/* unlocked: 0, or sent without locks (1: a read, 2: may write). */
static void relay_send(client *c, lock_set *ls, int unlocked, int argc, char **argv, size_t *argvlen)
{
    backend *b = server.backend;
    int conn = client_shared_conn(c);
    if (conn < 0) {
        if (ls) lock_set_release(ls);
        server.stats.backend_errors++;
        reply_error(client_reply_buffer(c), backend_error(b));
        return;
    }
    reply_slot *s = client_slot_add(c);
    s->locks = ls;
    if (tracking_active()) s->tracked = tracking_write_begin(c->id, invocation_command(argc, argv, argvlen), argc, argv, argvlen);
    s->unchanged_reply = ls || s->tracked ? (unsigned)write_unchanged_reply(argc, argv, argvlen) : 0;
    if (backend_send_for(b, conn, c->db, c->id, argc, argv, argvlen, BACKEND_RAW, dispatch_relay_reply_cb, s) != 0) {
        if (ls) lock_set_release(ls);
        s->locks = NULL;
        server.stats.backend_errors++;
        reply_error(s->buf, backend_error(b));
        client_slot_done(s);
        return;
    }
    if (unlocked) {
        s->unlocked = 1;
        s->unlocked_write = unlocked == 2;
        locks_unlocked_begin();
    }
    c->relay_inflight++;
    server.stats.relayed_commands++;
}

/* A command whose client went away while it waited for its locks: it
 * still runs, as Redis runs every command it has read, and its reply is
 * dropped. */
typedef struct orphan_command {
    struct orphan_command *prev, *next; /* still waiting or in flight, for shutdown */
    lock_set *ls;
    int argc;
    char **argv; /* argv, lengths and bytes in one block */
    size_t *argvlen;
    int db;
} orphan_command;

static orphan_command *orphans;

unsigned long relay_orphans_pending(void)
{
    unsigned long n = 0;
    for (orphan_command *o = orphans; o; o = o->next) n++;
    return n;
}

static void orphan_free(orphan_command *o)
{
    if (o->prev) o->prev->next = o->next;
    else orphans = o->next;
    if (o->next) o->next->prev = o->prev;
    if (o->ls) lock_set_release(o->ls);
    free(o->argv);
    free(o);
}

static void orphan_reply_cb(void *ctx, const backend_reply *r) { orphan_free(ctx); }

static void orphan_lock_granted(lock_set *ls, void *ctx)
{
    orphan_command *o = ctx;
    backend *b = server.backend;
    int conn = backend_pick(b, 0);
    if (conn < 0 || backend_send(b, conn, o->db, o->argc, o->argv, o->argvlen, BACKEND_RAW, orphan_reply_cb, o) != 0)
        orphan_free(o);
}

/* The client closes while its relayed command waits for locks: hand the
 * command over so it still runs. */
void relay_client_gone(client *c)
{
    if (!c->waiting_locks || !c->waiting_relay) return;
    lock_set *ls = c->waiting_locks;
    c->waiting_locks = NULL;
    int argc = c->parser.argc;
    orphan_command *o = calloc(1, sizeof(*o));
    if (!o) abort();
    o->argv = args_copy(argc, c->parser.argv, c->parser.argvlen, &o->argvlen);
    o->argc = argc;
    o->db = c->db;
    o->ls = ls;
    o->next = orphans;
    if (orphans) orphans->prev = o;
    orphans = o;
    lock_set_retarget(ls, orphan_lock_granted, o);
}

static void relay_lock_granted(lock_set *ls, void *ctx)
{
    client *c = ctx;
    c->waiting_locks = NULL;
    c->waiting_relay = 0;
    /* The parser still holds this command: nothing was read while blocked. */
    relay_send(c, ls, 0, c->parser.argc, c->parser.argv, c->parser.argvlen);
    c->cur_cmd = NULL;
    c->cur_argc = 0;
    c->cur_argv = NULL;
    c->cur_argvlen = NULL;
    client_unblock(c);
}

/* Commands that read or change the whole keyspace (or another database). */
static const char *const keyspace_commands[] = {
    "flushall", "flushdb", "keys", "scan", "randomkey", "swapdb", "dbsize", "move", "copy", NULL,
};


/* The lock units a plain command needs, or NULL for none. */
static lock_set *plain_command_locks(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen,
                              lock_granted_fn *fn, void *ctx)
{
    if (!cmd) {
        /* Unknown to Redis 7.0: it may touch anything. */
        lock_set *ls = lock_set_new(LOCK_PLAIN_WRITE, fn, ctx);
        lock_set_add_keyspace(ls);
        return ls;
    }
    int mode = (cmd->flags & CMD_WRITE) ? LOCK_PLAIN_WRITE : LOCK_PLAIN_READ;
    if (command_is_keyspace_wide(cmd)) {
        lock_set *ls = lock_set_new(mode, fn, ctx);
        lock_set_add_keyspace(ls);
        return ls;
    }
    if (cmd->key_spec_count == 0 && !cmd->getkeys) return NULL;
    int stack_keys[32], *keys;
    int n = command_get_keys_any(cmd, argc, argv, argvlen, stack_keys, 32, &keys);
    lock_set *ls = NULL;
    if (n < 0) {
        /* Arguments the store will reject; lock broadly rather than guess. */
        ls = lock_set_new(mode, fn, ctx);
        lock_set_add_keyspace(ls);
    } else if (n > 0) {
        ls = lock_set_new(mode, fn, ctx);
        for (int i = 0; i < n; i++) lock_set_add_key(ls, db, argv[keys[i]], argvlen[keys[i]]);
    }
    if (keys != stack_keys) free(keys);
    return ls;
}

void relay_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (locks_plain_free() && !c->fleet_span) {
        /* No script or transaction holds or wants a lock: nothing to wait for. */
        relay_send(c, NULL, cmd && !(cmd->flags & CMD_WRITE) ? 1 : 2, argc, argv, argvlen);
        return;
    }
    lock_set *ls = plain_command_locks(cmd, c->db, argc, argv, argvlen, relay_lock_granted, c);
    if (ls) {
        int rc = lock_set_acquire(ls, 1);
        if (rc == LOCK_BUSY) {
            reply_error(client_reply_buffer(c), busy_error(lock_set_busy_kind(ls)));
            lock_set_release(ls);
            return;
        }
        if (rc == LOCK_WAITING) {
            c->waiting_locks = ls;
            c->waiting_relay = 1;
            client_block(c);
            return;
        }
    }
    relay_send(c, ls, 0, argc, argv, argvlen);
}

/* ---- the proxy's own view of commands -------------------------------------- */

/* Commands the proxy answers itself, as the families registered them. */
typedef struct local_command {
    const char *name;
    command_handler *handler;
} local_command;

#define LOCAL_COMMANDS_MAX 64
static local_command local_commands[LOCAL_COMMANDS_MAX];
static int local_commands_count;
static dispatch_hooks hooks;

void dispatch_register(const char *name, command_handler *handler)
{
    if (local_commands_count == LOCAL_COMMANDS_MAX) abort();
    local_commands[local_commands_count++] = (local_command){name, handler};
}

void dispatch_set_hooks(const dispatch_hooks *h) { hooks = *h; }

/* Administration of the store itself: refused unless backend-admin-commands. */
static const char *const admin_commands[] = {
    "shutdown", "debug", "replicaof", "slaveof", "failover", "module", "save", "bgsave", "bgrewriteaof",
    "cluster", "pfdebug", "pfselftest", "lastsave", NULL,
};

/* Commands that would take over a shared store connection: never relayed. */
static const char *const connection_takeover_commands[] = {"sync", "psync", "replconf", NULL};

enum command_kind { KIND_RELAY = 0, KIND_LOCAL, KIND_ADMIN, KIND_TAKEOVER, KIND_BLOCKING };

typedef struct command_route {
    int kind;
    command_handler *handler;
    unsigned keyspace : 1; /* command_is_keyspace_wide */
} command_route;

static command_route *routes; /* indexed like command_table */

static int in_list(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (!strcmp(*list, name)) return 1;
    return 0;
}

void dispatch_init(void)
{
    routes = calloc((size_t)command_table_count, sizeof(*routes));
    if (!routes) abort();
    for (int i = 0; i < command_table_count; i++) {
        const char *name = command_table[i].name;
        command_route *r = &routes[i];
        r->keyspace = in_list(keyspace_commands, name);
        for (int j = 0; j < local_commands_count; j++)
            if (!strcmp(local_commands[j].name, name)) r->kind = KIND_LOCAL, r->handler = local_commands[j].handler;
        if (r->kind) continue;
        if (in_list(admin_commands, name)) r->kind = KIND_ADMIN;
        else if (in_list(connection_takeover_commands, name)) r->kind = KIND_TAKEOVER;
        else if (command_table[i].flags & CMD_BLOCKING) r->kind = KIND_BLOCKING;
    }
}

int command_is_keyspace_wide(const command_def *cmd)
{
    /* Top-level commands: looked up once, in dispatch_init. */
    uintptr_t p = (uintptr_t)cmd, base = (uintptr_t)command_table;
    if (routes && p >= base && p < base + (uintptr_t)command_table_count * sizeof(*cmd))
        return routes[(p - base) / sizeof(*cmd)].keyspace;
    return in_list(keyspace_commands, cmd->name);
}

void dispatch_free(void)
{
    while (orphans) orphan_free(orphans);
    free(routes);
    routes = NULL;
}

/* ---- what the store has ------------------------------------------------------------ */

/* Whether the store has a command is asked for every relayed command and
 * every redis.call: answers are kept per command until the store's
 * release or command list changes (its store_epoch). */
#define HAS_CACHE_SIZE 256
static struct {
    const command_def *cmd;
    const backend *b;
    unsigned long long epoch;
    int has;
} has_cache[HAS_CACHE_SIZE];

static int store_has(const backend *b, const command_def *cmd)
{
    if (!b->store_epoch) return backend_store_has_command(b, cmd->name, strlen(cmd->name));
    size_t i = ((uintptr_t)cmd / sizeof(*cmd)) % HAS_CACHE_SIZE;
    if (has_cache[i].cmd == cmd && has_cache[i].b == b && has_cache[i].epoch == b->store_epoch) return has_cache[i].has;
    int has = backend_store_has_command(b, cmd->name, strlen(cmd->name));
    has_cache[i].cmd = cmd;
    has_cache[i].b = b;
    has_cache[i].epoch = b->store_epoch;
    has_cache[i].has = has;
    return has;
}

int dispatch_store_refuses(const command_def *cmd, char *err, size_t errlen)
{
    backend *b = server.backend;
    if (!b || store_has(b, cmd) != 0) return 0;
    if (hooks.emulates && hooks.emulates(cmd)) return 0;
    char v[32];
    snprintf(err, errlen, "ERR command '%s' is not supported by the store (redis %s)", cmd->name,
             store_version_text(b->store_version, v, sizeof(v)));
    return 1;
}

static int route_is_local(const command_def *cmd)
{
    const char *bar = strchr(cmd->name, '|');
    const command_def *top = bar ? command_lookup(cmd->name, (size_t)(bar - cmd->name)) : cmd;
    return top && routes && routes[top - command_table].kind == KIND_LOCAL;
}

static void reply_admin_refused(client *c, const char *name);

void dispatch_run_local(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    const char *bar = strchr(cmd->name, '|');
    const command_def *top = bar ? command_lookup(cmd->name, (size_t)(bar - cmd->name)) : cmd;
    const command_route *r = top ? &routes[top - command_table] : NULL;
    if (r && r->kind == KIND_LOCAL) {
        r->handler(c, cmd, argc, argv, argvlen);
        return;
    }
    /* Refused outside MULTI: the same refusal, in its place. */
    if (r && r->kind == KIND_ADMIN) reply_admin_refused(c, top->name);
    else reply_errorf(client_reply_buffer(c), "ERR command '%s' is not supported through evalproxy", cmd->name);
}

int dispatch_command_available(const command_def *cmd)
{
    if (route_is_local(cmd)) return 1;
    if (!server.backend || store_has(server.backend, cmd) != 0) return 1;
    return hooks.emulates && hooks.emulates(cmd);
}

int dispatch_commands_emulated(void)
{
    if (!hooks.emulates || !server.backend) return 0;
    int n = 0;
    for (int i = 0; i < command_table_count; i++) {
        const command_def *d = &command_table[i];
        if (!d->subcommand_count) {
            n += !route_is_local(d) && backend_store_has_command(server.backend, d->name, strlen(d->name)) == 0 &&
                 hooks.emulates(d);
            continue;
        }
        for (int s = 0; s < d->subcommand_count; s++) {
            const command_def *sd = &d->subcommands[s];
            n += !route_is_local(sd) &&
                 backend_store_has_command(server.backend, sd->name, strlen(sd->name)) == 0 && hooks.emulates(sd);
        }
    }
    return n;
}

const char *busy_error(int kind)
{
    return kind == LOCK_BUSY_FUNCTION
               ? "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
               : BUSY_ERROR;
}

/* A command refused before it runs, as Redis's rejectCommand: inside MULTI
 * it flags the transaction, and a refused EXEC discards it (EXECABORT, with
 * the reason as Redis words it: its own texts have no "ERR " there). */
static void reject_command(client *c, const command_def *cmd, const char *error)
{
    stats_command_rejected(cmd);
    if (cmd && !strcmp(cmd->name, "exec")) {
        hooks.exec_reject(c, strncmp(error, "ERR ", 4) ? error : error + 4);
        return;
    }
    hooks.multi_flag_dirty(c);
    reply_error(client_reply_buffer(c), error);
}

/* Redis 7.0: "unknown command 'x', with args beginning with: 'a' 'b' " where
 * the argument list stops once it reaches 128 bytes. */
static void reply_unknown_command(client *c, int argc, char **argv)
{
    char args[512];
    size_t off = 0;
    args[0] = '\0';
    for (int i = 1; i < argc && off < 128; i++) {
        int room = 128 - (int)off;
        int n = snprintf(args + off, sizeof(args) - off, "'%.*s' ", room, argv[i]);
        if (n < 0) break;
        off += (size_t)n;
        if (off >= sizeof(args)) off = sizeof(args) - 1;
    }
    reply_errorf(client_reply_buffer(c), "ERR unknown command '%.128s', with args beginning with: %s", argv[0], args);
}

static void reply_unknown_subcommand(client *c, char **argv)
{
    char upper[64];
    size_t i;
    for (i = 0; argv[0][i] && i < sizeof(upper) - 1; i++) upper[i] = (char)toupper((unsigned char)argv[0][i]);
    upper[i] = '\0';
    reply_errorf(client_reply_buffer(c), "ERR unknown subcommand '%.128s'. Try %s HELP.", argv[1], upper);
}

static void dispatch_run(client *c, int argc, char **argv, size_t *argvlen);

/* A command the store lacks and nothing stands in for gets a clear refusal
 * instead of the store's older, confusing text. */
static int store_refused(client *c, const command_def *cmd)
{
    char err[200];
    if (!dispatch_store_refuses(cmd, err, sizeof(err))) return 0;
    reply_error(client_reply_buffer(c), err);
    return 1;
}

/* How a RESP3 client's reply to cmd is converted from RESP2. Scripts and
 * functions write their reply in the client's protocol themselves, and
 * EXEC converts each command's reply by that command's shape. */
static const resp3_shape *reply_shape(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    static const char *const own_protocol[] = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro",
                                               "exec", NULL};
    if (in_list(own_protocol, cmd->name)) return NULL;
    return resp3_shape_for(cmd->name, argc, argv, argvlen);
}

/* Times what runs: a command answered now is counted here, one answered
 * later when its reply slot is done (client_slot_add carries it there). */
void dispatch_blocking_command(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    hooks.blocking(c, cmd, argc, argv, argvlen);
}

static void reply_admin_refused(client *c, const char *name)
{
    reply_errorf(client_reply_buffer(c),
                 "ERR command '%s' administers the store and is not relayed by evalproxy "
                 "(set backend-admin-commands yes to allow it)",
                 name);
}

/* A command for the store, past dispatch's checks: SORT's ACL options, then
 * the proxy's stand-in on an older store, a refusal, or the relay. */
static void relay_checked(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    const char *sort_err = acl_sort_option_denied(c->user, cmd, argc, argv, argvlen);
    if (sort_err) {
        reply_error(client_reply_buffer(c), sort_err);
        return;
    }
    if (hooks.emulate && hooks.emulate(c, cmd, argc, argv, argvlen)) return;
    if (store_refused(c, cmd)) return;
    relay_command(c, cmd, argc, argv, argvlen);
}

/* What dispatch_run does with a command no family registered, once it has
 * passed the checks; only the administration rule and the relay apply to
 * the commands that fall back here (CLUSTER, READONLY, READWRITE, ASKING). */
void dispatch_unregistered(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    const char *bar = strchr(cmd->name, '|');
    char top[64];
    snprintf(top, sizeof(top), "%.*s", bar ? (int)(bar - cmd->name) : (int)strlen(cmd->name), cmd->name);
    if (in_list(admin_commands, top) && !config.backend_admin_commands) {
        reply_admin_refused(c, top);
        return;
    }
    relay_checked(c, cmd, argc, argv, argvlen);
}

void dispatch_command(client *c, int argc, char **argv, size_t *argvlen)
{
    if (argc == 0) return;
    if (tracking_active()) tracking_limit(); /* as Redis, before each command */
    if ((argv[0][0] | 0x20) == 'f' && fleet_unwrap_forwarded(c, &argc, argv, argvlen) && argc == 0) return;
    unsigned long long errors = stats_error_replies();
    /* RESP3: until the command is known, only nulls would change. */
    c->cur_shape = c->resp == 3 ? resp3_shape_for("", argc, argv, argvlen) : NULL;
    c->cur_cmd = NULL;
    c->cur_start_us = clock_recent_us();
    c->cur_argc = argc;
    c->cur_argv = argv;
    c->cur_argvlen = argvlen;
    dispatch_run(c, argc, argv, argvlen);
    if (c->monitor_cmd) {
        /* After it ran, as Redis: a SELECT shows the new database. */
        monitor_feed(c, c->db, c->monitor_cmd, argc, argv, argvlen);
        c->monitor_cmd = NULL;
    }
    if (c->tracking) tracking_command_done(c);
    if (c->cur_cmd && c->waiting_locks && c->waiting_relay) {
        /* Waiting for its locks: timed until its reply, by the slot it gets
         * once they are granted (the parser keeps its arguments till then). */
        return;
    }
    if (c->cur_cmd) {
        unsigned long long usec = clock_recent_refresh() - c->cur_start_us;
        stats_command_done(c->cur_cmd, usec, stats_error_replies() != errors);
        slowlog_command_done(c->cur_cmd, slowlog_wants(usec) ? slowlog_args_copy(c->cur_cmd, argc, argv, argvlen) : NULL, usec, c->addr, c->name);
        c->cur_cmd = NULL;
    }
    c->cur_argc = 0;
    c->cur_argv = NULL;
    c->cur_argvlen = NULL;
}

static void dispatch_run(client *c, int argc, char **argv, size_t *argvlen)
{
    server.stats.commands_processed++;

    if (c->debugging && hooks.debug_command) {
        hooks.debug_command(c, argc, argv, argvlen);
        return;
    }

    /* Redis 7.0 answers QUIT before anything else, authenticated or not. */
    if (argvlen[0] == 4 && !strcasecmp(argv[0], "quit")) {
        c->last_cmd = "quit";
        c->flags &= ~CLIENT_REPLY_SKIP;
        reply_ok(client_reply_buffer(c));
        client_close_after_reply(c);
        if (!c->slots_head && evbuffer_get_length(c->out) == 0) client_close(c);
        return;
    }

    const command_def *top = command_lookup(argv[0], argvlen[0]);
    const command_def *cmd = top;
    if (top && top->subcommand_count && argc >= 2) {
        cmd = command_lookup_sub(top, argv[1], argvlen[1]);
        if (!cmd && !strcmp(top->name, "client") && argvlen[1] == 7 && !strcasecmp(argv[1], "setinfo")) {
            /* CLIENT SETINFO (Redis 7.2) is sent by current client libraries on connect. */
            struct evbuffer *out = client_reply_buffer(c);
            if (argc != 4) reply_error(out, "ERR wrong number of arguments for 'client|setinfo' command");
            else if (client_auth_required(c)) reply_error(out, "NOAUTH Authentication required.");
            else routes[top - command_table].handler(c, top, argc, argv, argvlen);
            return;
        }
        if (!cmd) {
            reply_unknown_subcommand(c, argv);
            hooks.multi_flag_dirty(c);
            return;
        }
    }
    int authed = !client_auth_required(c);
    if (!cmd) {
        /* Commands Redis 7.0 lacks may be the store's own: relay them, but
         * never for a client that has not authenticated, nor for a user
         * whose rules could not cover them. */
        /* A known release that lacks it too: Redis 7.0's answer, not the
         * store's older wording. */
        if (authed && !c->multi && c->user->unrestricted && hooks.own_command &&
            hooks.own_command(c, argc, argv, argvlen))
            return;
        if (!authed || c->multi || !c->user->unrestricted ||
            backend_store_has_command(server.backend, argv[0], argvlen[0]) == 0) {
            /* Inside MULTI, as in Redis: an unknown command aborts the transaction. */
            reply_unknown_command(c, argc, argv);
            hooks.multi_flag_dirty(c);
            return;
        }
        c->last_cmd = "unknown";
        relay_command(c, NULL, argc, argv, argvlen);
        return;
    }
    if ((cmd->arity > 0 && cmd->arity != argc) || argc < -cmd->arity) {
        char err[128];
        snprintf(err, sizeof(err), "ERR wrong number of arguments for '%s' command", cmd->name);
        reject_command(c, cmd, err);
        return;
    }
    if (!authed && !(cmd->flags & CMD_NO_AUTH)) {
        reject_command(c, cmd, "NOAUTH Authentication required.");
        return;
    }
    if (c->multi && (cmd->flags & CMD_NO_MULTI)) {
        reject_command(c, cmd, "ERR Command not allowed inside a transaction");
        return;
    }
    if (!c->user->unrestricted) {
        const char *denied = hooks.acl_denies(c, cmd, argc, argv, argvlen);
        if (denied) {
            reject_command(c, cmd, denied);
            return;
        }
    }
    /* A monitor is a replica to Redis: it may not touch keys. */
    if (monitor_active() && monitor_is(c) && (cmd->flags & (CMD_WRITE | CMD_READONLY | CMD_MAY_REPLICATE))) {
        reject_command(c, cmd, "ERR Replica can't interact with the keyspace");
        return;
    }
    c->last_cmd = cmd->name;
    if (c->resp == 3) c->cur_shape = reply_shape(cmd, argc, argv, argvlen);
    /* A RESP2 client with subscriptions may only run these, as in Redis. */
    if (client_subscribed(c) && c->resp == 2) {
        static const char *const allowed[] = {"ping", "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe",
                                              "psubscribe", "punsubscribe", "quit", "reset", NULL};
        if (!in_list(allowed, top->name)) {
            char err[256];
            snprintf(err, sizeof(err),
                     "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are "
                     "allowed in this context",
                     cmd->name);
            reject_command(c, cmd, err);
            return;
        }
    }
    /* busy-reply-scope all: while any script is past busy-reply-threshold,
     * every command but the few Redis allows gets -BUSY, as in Redis. */
    if (config.busy_reply_scope_all && hooks.busy_scripts() && !(cmd->flags & CMD_ALLOW_BUSY)) {
        reject_command(c, cmd, busy_error(locks_busy_kind()));
        return;
    }

    /* CLIENT PAUSE: after the checks that answer at once, as in Redis. */
    if (clients_pause_holds(1) && hooks.may_write &&
        clients_pause_holds(hooks.may_write(c, cmd, argc, argv, argvlen))) {
        client_pause_postpone(c);
        return;
    }
    const command_route *r = &routes[top - command_table];
    if (c->multi) {
        const char *n = top->name;
        if (strcmp(n, "exec") && strcmp(n, "discard") && strcmp(n, "multi") && strcmp(n, "watch") &&
            strcmp(n, "reset")) {
            char err[200];
            /* Refused at once, as Redis refuses an unknown command: EXEC then aborts. */
            if ((r->kind == KIND_RELAY || r->kind == KIND_BLOCKING ||
                 (r->kind == KIND_ADMIN && config.backend_admin_commands)) &&
                dispatch_store_refuses(cmd, err, sizeof(err))) {
                reject_command(c, cmd, err);
                return;
            }
            int local = r->kind != KIND_RELAY && r->kind != KIND_BLOCKING;
            /* A DEBUG the store runs (backend-admin-commands) is queued for it. */
            if (!strcmp(top->name, "debug") && config.backend_admin_commands && argc >= 2 &&
                strcasecmp(argv[1], "protocol") && strcasecmp(argv[1], "set-disable-deny-scripts"))
                local = 0;
            hooks.multi_queue(c, cmd, local, argc, argv, argvlen);
            return;
        }
    }
    /* A fleet: the member owning the keys' slots runs the command. */
    if (fleet_enabled() &&
        fleet_route(c, cmd, r->kind == KIND_RELAY, argc, argv, argvlen))
        return;
    c->cur_cmd = cmd; /* it runs: commandstats counts it (not the commands EXEC runs) */
    /* MONITOR: scripts show before the calls they make; EXEC shows itself
     * after its commands (transactions.c); administration never shows. */
    if (monitor_active() && !(cmd->flags & CMD_ADMIN) && strcmp(top->name, "exec")) {
        if (cmd->flags & CMD_SKIP_MONITOR) monitor_feed(c, c->db, cmd, argc, argv, argvlen);
        else c->monitor_cmd = cmd;
    }
    if (c->tracking && r->kind != KIND_LOCAL) tracking_read(c, cmd, argc, argv, argvlen);
    switch (r->kind) {
    case KIND_LOCAL:
        r->handler(c, cmd, argc, argv, argvlen);
        return;
    case KIND_ADMIN:
        if (config.backend_admin_commands) {
            /* A store made a replica refuses writes (and DEBUG may change its limits). */
            store_refusal_note_change(c->id);
            break;
        }
        reply_admin_refused(c, top->name);
        return;
    case KIND_TAKEOVER:
        reply_errorf(client_reply_buffer(c), "ERR command '%s' is not supported through evalproxy", top->name);
        return;
    case KIND_BLOCKING:
        /* XREAD/XREADGROUP only block with BLOCK; without it they are plain reads. */
        if (!strcmp(top->name, "xread") || !strcmp(top->name, "xreadgroup")) {
            int blocking = 0;
            for (int i = 1; i < argc; i++)
                if (!strcasecmp(argv[i], "block")) blocking = 1;
                else if (!strcasecmp(argv[i], "streams")) break;
            if (!blocking) break;
        }
        if (hooks.emulate && hooks.emulate(c, cmd, argc, argv, argvlen)) return;
        if (store_refused(c, cmd)) return;
        hooks.blocking(c, cmd, argc, argv, argvlen);
        return;
    default:
        break;
    }
    relay_checked(c, cmd, argc, argv, argvlen);
}

/* ---- a fleet: where a command runs ------------------------------------------------ */

#define WAIT_STEP_MS 10

enum { DEST_HERE = 0 }; /* else member index + 1 */

int fleet_unwrap_forwarded(client *c, int *argc, char **argv, size_t *argvlen)
{
    /* FORWARD from the member the client reached; FORWARD2 from a member
     * that was sent one and whose view named another owner (views differ
     * for a moment around a change): that one is not sent on again. */
    if (*argc < 3 || argvlen[0] != 5 || (argvlen[1] != 7 && argvlen[1] != 8) || strncasecmp(argv[0], "fleet", 5) ||
        strncasecmp(argv[1], "forward", 7) || (argvlen[1] == 8 && argv[1][7] != '2') || !fleet_enabled())
        return 0;
    int hops = argvlen[1] == 8 ? 2 : 1;
    /* In place: the parser's arrays stay its own (the bytes are in its arena). */
    memmove(argv, argv + 2, sizeof(*argv) * (size_t)(*argc - 2));
    memmove(argvlen, argvlen + 2, sizeof(*argvlen) * (size_t)(*argc - 2));
    *argc -= 2;
    if (argv == c->parser.argv) c->parser.argc = *argc;
    c->fleet_peer = hops;
    return 1;
}

/* ---- waiting ------------------------------------------------------------------ */

static void rerun(client *c)
{
    c->flags &= ~CLIENT_BLOCKED;
    dispatch_command(c, c->parser.argc, c->parser.argv, c->parser.argvlen);
    if (c->flags & CLIENT_CLOSING) return;
    if (!(c->flags & CLIENT_BLOCKED)) client_unblock(c);
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rerun(arg);
}

/* The command stays in the parser; it is dispatched again shortly. */
static void wait_a_little(client *c)
{
    if (!c->fleet_wait_ev) c->fleet_wait_ev = evtimer_new(server.base, wait_cb, c);
    if (!c->fleet_wait_ev) abort();
    struct timeval tv = {0, WAIT_STEP_MS * 1000};
    evtimer_add(c->fleet_wait_ev, &tv);
    client_block(c);
}

static void drained(client *c) { rerun(c); }

void fleet_client_gone(client *c)
{
    if (c->fleet_wait_ev) event_free(c->fleet_wait_ev);
    c->fleet_wait_ev = NULL;
}

/* ---- forwarding ----------------------------------------------------------------- */

static int forward(client *c, int member, int argc, char **argv, size_t *argvlen)
{
    backend *peer = fleet_peer(member);
    int conn = peer ? backend_pick(peer, (unsigned)c->id) : -1;
    if (conn < 0) return -1;
    char *wargv_buf[16];
    size_t wlen_buf[16];
    char **wargv = argc + 2 <= 16 ? wargv_buf : malloc(sizeof(char *) * (size_t)(argc + 2));
    size_t *wlen = argc + 2 <= 16 ? wlen_buf : malloc(sizeof(size_t) * (size_t)(argc + 2));
    if (!wargv || !wlen) abort();
    wargv[0] = "FLEET";
    wlen[0] = 5;
    wargv[1] = c->fleet_peer ? "FORWARD2" : "FORWARD";
    wlen[1] = c->fleet_peer ? 8 : 7;
    memcpy(wargv + 2, argv, sizeof(char *) * (size_t)argc);
    memcpy(wlen + 2, argvlen, sizeof(size_t) * (size_t)argc);
    reply_slot *s = client_slot_add(c);
    int rc = backend_send_for(peer, conn, c->db, c->id, argc + 2, wargv, wlen, BACKEND_RAW, dispatch_relay_reply_cb, s);
    if (wargv != wargv_buf) free(wargv);
    if (wlen != wlen_buf) free(wlen);
    if (rc != 0) {
        reply_error(s->buf, backend_error(peer));
        client_slot_done(s);
        return 0;
    }
    c->relay_inflight++;
    c->fleet_dest = member + 1;
    fleet_count_forwarded();
    return 0;
}

/* ---- the decision --------------------------------------------------------------------- */

int fleet_route(client *c, const command_def *cmd, int forwardable, int argc, char **argv, size_t *argvlen)
{
    c->fleet_span = 0;
    if (!fleet_enabled() || !cmd) return 0;
    if (command_is_keyspace_wide(cmd)) {
        c->fleet_span = 1; /* the keyspace unit of every member */
        return 0;
    }
    if (cmd->key_spec_count == 0 && !cmd->getkeys) {
        if (c->relay_inflight && c->fleet_dest != DEST_HERE && !c->drain_fn) {
            client_when_drained(c, drained);
            client_block(c);
            return 1;
        }
        c->fleet_dest = DEST_HERE;
        return 0;
    }
    int stack_keys[32], *keys;
    int n = command_get_keys_any(cmd, argc, argv, argvlen, stack_keys, 32, &keys);
    int owner = -3, waits = 0, here = 0, first_slot = -1, one_slot = 1;
    for (int i = 0; i < n; i++) {
        int slot = (int)cluster_key_slot(argv[keys[i]], argvlen[keys[i]]);
        if (first_slot < 0) first_slot = slot;
        else if (slot != first_slot) one_slot = 0;
        int r = fleet_slot_route(slot);
        if (r == FLEET_WAIT) waits = 1;
        else if (r == FLEET_SERVE) here = 1;
        else if (owner == -3) owner = r;
        else if (owner != r) owner = -4; /* several others */
    }
    if (keys != stack_keys) free(keys);
    /* Keys of several members: it runs here, holding the others' units. */
    c->fleet_span = owner == -4 || (owner >= 0 && (here || !forwardable));
    if (n <= 0) return 0;

    long long now = clock_ms();
    /* A member forwarded it here: it runs here, or waits until this member
     * serves its slots (views differ for a moment around a change). */
    if (c->fleet_peer > 1 && owner >= 0) waits = 1;
    if (waits) {
        if (!c->fleet_wait_since_ms) c->fleet_wait_since_ms = now;
        if (now - c->fleet_wait_since_ms < fleet_wait_limit_ms()) {
            wait_a_little(c);
            return 1;
        }
        c->fleet_wait_since_ms = 0;
        reply_error(client_reply_buffer(c), "CLUSTERDOWN Hash slot not served");
        return 1;
    }
    c->fleet_wait_since_ms = 0;
    int dest = DEST_HERE;
    int remote_only = !here && owner >= 0;
    if (remote_only && config.fleet_redirect && !c->fleet_peer && one_slot) {
        const fleet_member *m = fleet_member_at(owner);
        fleet_count_redirected();
        reply_errorf(client_reply_buffer(c), "MOVED %d %s:%d", first_slot, m->host, m->port);
        return 1;
    }
    if (remote_only && forwardable) dest = owner + 1;
    /* A client's commands run in its order: a change of place waits for
     * the replies still owed by the other place. */
    if (c->relay_inflight && c->fleet_dest != dest && !c->drain_fn) {
        client_when_drained(c, drained);
        client_block(c);
        return 1;
    }
    if (dest == DEST_HERE) {
        c->fleet_dest = DEST_HERE;
        return 0;
    }
    if (forward(c, owner, argc, argv, argvlen) != 0) {
        /* The owner cannot be reached: wait for it, or for the view to drop it. */
        if (!c->fleet_wait_since_ms) c->fleet_wait_since_ms = now;
        wait_a_little(c);
    }
    return 1;
}
