/* Emulation of the Redis 7 commands and options an old store lacks.
 *
 * Mechanism. Each emulation is a small C procedure: a few batches of store
 * commands the store has natively, each batch pipelined on one connection,
 * the next batch decided from the replies of the last. Atomicity against
 * everything that goes through the proxy comes from the key locks: a
 * client's emulated command takes the lock set a script would take on its
 * keys (exclusive for writes, read-only-script mode for reads) for its
 * whole span; inside a script or a transaction it runs under the locks
 * those already hold. Where a command writes more than once, the writes go
 * in one MULTI ... EXEC at the store, after the reads that decide them, so
 * a store that fails between steps leaves all or nothing. Inside a script
 * the script's undo journal has already read the command's keys before it
 * runs (on the same connection), so rollback covers emulated writes too.
 *
 * Why not built-in Lua procedures through the script machinery: the
 * replies must be Redis 7.0's byte for byte, and Lua's conversions cannot
 * give a null array (LPOP key count on a missing key, LMPOP), lose
 * integers past 2^53 and mix status and bulk replies; errors raised by
 * redis.call carry script decorations; and every emulated command would
 * show up as a script in INFO, SCRIPT KILL and the script cache. A C
 * procedure writes the exact reply and costs no Lua state or fiber. */
#include "proxy/commands/emulation.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>

#include "backends/backend.h"
#include "proxy/commands/expiry_deadlines.h"
#include "proxy/commands/key_presteps.h"
#include "proxy/commands/migration.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/config.h"
#include "proxy/core/locks.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "proxy/core/tracking.h"
#include "util/glob.h"
#include "util/strconv.h"
#include "util/clock.h"

/* ---- which store release has what ---------------------------------------------
 * From the "since" and "history" fields of Redis's command documentation
 * (commands JSON of Redis 7.2.6). A row applies to an invocation when the
 * command has at least min_argc arguments and, if opt is set, the word opt
 * (and opt2) appears at or after argument `from`; the invocation needs the
 * highest `since` of the rows that apply. A word that is really a value
 * (a member named "nx") only makes the proxy emulate a command the store
 * could have run: never a wrong reply. */
#define V(a, b, c) ((a) * 10000 + (b) * 100 + (c))

typedef struct since_row {
    const char *cmd;
    const char *opt, *opt2;
    int from, min_argc;
    int since;
} since_row;

static const since_row since_table[] = {
    {"set", NULL, NULL, 0, 4, V(2, 6, 12)}, /* any option: older stores know none */
    {"set", "nx", NULL, 3, 0, V(2, 6, 12)},
    {"set", "xx", NULL, 3, 0, V(2, 6, 12)},
    {"set", "ex", NULL, 3, 0, V(2, 6, 12)},
    {"set", "px", NULL, 3, 0, V(2, 6, 12)},
    {"set", "keepttl", NULL, 3, 0, V(6, 0, 0)},
    {"set", "get", NULL, 3, 0, V(6, 2, 0)},
    {"set", "exat", NULL, 3, 0, V(6, 2, 0)},
    {"set", "pxat", NULL, 3, 0, V(6, 2, 0)},
    {"set", "nx", "get", 3, 0, V(7, 0, 0)},
    {"setex", NULL, NULL, 0, 0, V(2, 0, 0)},
    {"psetex", NULL, NULL, 0, 0, V(2, 6, 0)},
    {"getdel", NULL, NULL, 0, 0, V(6, 2, 0)},
    {"getex", NULL, NULL, 0, 0, V(6, 2, 0)},
    {"getset", NULL, NULL, 0, 0, V(1, 0, 0)},
    {"unlink", NULL, NULL, 0, 0, V(4, 0, 0)},
    {"hset", NULL, NULL, 0, 0, V(2, 0, 0)},
    {"hset", NULL, NULL, 0, 5, V(4, 0, 0)},
    {"hmset", NULL, NULL, 0, 0, V(2, 0, 0)},
    {"expire", NULL, NULL, 0, 4, V(7, 0, 0)},
    {"expireat", NULL, NULL, 0, 4, V(7, 0, 0)},
    {"pexpire", NULL, NULL, 0, 0, V(2, 6, 0)},
    {"pexpire", NULL, NULL, 0, 4, V(7, 0, 0)},
    {"pexpireat", NULL, NULL, 0, 0, V(2, 6, 0)},
    {"pexpireat", NULL, NULL, 0, 4, V(7, 0, 0)},
    {"pttl", NULL, NULL, 0, 0, V(2, 8, 0)}, /* 2.6.0, and its -2 reply since 2.8.0 */
    {"ttl", NULL, NULL, 0, 0, V(2, 8, 0)},  /* the -2 reply */
    {"persist", NULL, NULL, 0, 0, V(2, 2, 0)},
    {"lmove", NULL, NULL, 0, 0, V(6, 2, 0)},
    {"rpoplpush", NULL, NULL, 0, 0, V(1, 2, 0)},
    {"lpop", NULL, NULL, 0, 3, V(6, 2, 0)},
    {"rpop", NULL, NULL, 0, 3, V(6, 2, 0)},
    {"smismember", NULL, NULL, 0, 0, V(6, 2, 0)},
    {"lpos", NULL, NULL, 0, 0, V(6, 0, 6)},
    {"zadd", "nx", NULL, 2, 0, V(3, 0, 2)},
    {"zadd", "xx", NULL, 2, 0, V(3, 0, 2)},
    {"zadd", "ch", NULL, 2, 0, V(3, 0, 2)},
    {"zadd", "incr", NULL, 2, 0, V(3, 0, 2)},
    {"zadd", "gt", NULL, 2, 0, V(6, 2, 0)},
    {"zadd", "lt", NULL, 2, 0, V(6, 2, 0)},
    {"copy", NULL, NULL, 0, 0, V(6, 2, 0)},
    {"zrange", "rev", NULL, 4, 0, V(6, 2, 0)},
    {"zrange", "byscore", NULL, 4, 0, V(6, 2, 0)},
    {"zrange", "bylex", NULL, 4, 0, V(6, 2, 0)},
    {"zrange", "limit", NULL, 4, 0, V(6, 2, 0)},
    {"lmpop", NULL, NULL, 0, 0, V(7, 0, 0)},
    {"zmpop", NULL, NULL, 0, 0, V(7, 0, 0)},
    {"scan", NULL, NULL, 0, 0, V(2, 8, 0)},
    {"scan", "type", NULL, 2, 0, V(6, 0, 0)},
    {"sscan", NULL, NULL, 0, 0, V(2, 8, 0)},
    {"hscan", NULL, NULL, 0, 0, V(2, 8, 0)},
    {"zscan", NULL, NULL, 0, 0, V(2, 8, 0)},
    {"object|encoding", NULL, NULL, 0, 0, V(2, 2, 3)},
    {"sintercard", NULL, NULL, 0, 0, V(7, 0, 0)},
    {"exists", NULL, NULL, 0, 3, V(3, 0, 3)},
    {"lpushx", NULL, NULL, 0, 4, V(4, 0, 0)},
    {"rpushx", NULL, NULL, 0, 4, V(4, 0, 0)},
    {"spop", NULL, NULL, 0, 3, V(3, 2, 0)},
    {"srandmember", NULL, NULL, 0, 3, V(2, 6, 0)},
    {"flushall", NULL, NULL, 0, 2, V(4, 0, 0)},
    {"flushall", "sync", NULL, 1, 0, V(6, 2, 0)},
    {"flushdb", NULL, NULL, 0, 2, V(4, 0, 0)},
    {"flushdb", "sync", NULL, 1, 0, V(6, 2, 0)},
};

/* The store release the proxy takes the store for: store-emulate's
 * release:x.y.z when given (testing), else what the backend learnt. */
static int forced_release(void)
{
    const char *s = config.store_emulate;
    if (!s) return 0;
    const char *p = strstr(s, "release:");
    if (!p) return 0;
    int a = 0, b = 0, c = 0;
    if (sscanf(p + 8, "%d.%d.%d", &a, &b, &c) < 2) return 0;
    return V(a, b, c);
}

static int store_release(void)
{
    int v = forced_release();
    return v ? v : server.backend->store_version;
}

/* Whether the store has what needs release v; an unknown release is taken
 * as a current one. */
static int have(int v)
{
    int r = store_release();
    return !r || r >= v;
}

/* store-emulate names the command (or says all). */
static int forced(const char *name)
{
    const char *s = config.store_emulate;
    if (!s) return 0;
    size_t n = strlen(name);
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t') s++;
        size_t w = strcspn(s, " ,\t");
        if ((w == n && !strncasecmp(s, name, n)) || (w == 3 && !strncasecmp(s, "all", 3))) return 1;
        s += w;
    }
    return 0;
}

static int word_at(int argc, char **argv, size_t *argvlen, int from, const char *w)
{
    size_t n = strlen(w);
    for (int i = from; i < argc; i++)
        if (argvlen[i] == n && !strncasecmp(argv[i], w, n)) return 1;
    return 0;
}

/* The release an invocation needs (0: nothing this table knows). */
static int release_needed(const char *name, int argc, char **argv, size_t *argvlen)
{
    int need = 0;
    for (size_t i = 0; i < sizeof(since_table) / sizeof(since_table[0]); i++) {
        const since_row *r = &since_table[i];
        if (strcmp(r->cmd, name) || argc < r->min_argc || r->since <= need) continue;
        if (r->opt && !word_at(argc, argv, argvlen, r->from, r->opt)) continue;
        if (r->opt2 && !word_at(argc, argv, argvlen, r->from, r->opt2)) continue;
        need = r->since;
    }
    return need;
}

/* ---- a running emulation ------------------------------------------------------ */

typedef struct emu emu;
typedef void step_fn(emu *e);

struct emu {
    emu *prev, *next;
    client *c; /* a client's own command: NULL once it is gone */
    reply_slot *slot;
    lock_set *locks;
    emulation_done_fn *done; /* under a script's or a transaction's locks */
    void *done_ctx;
    const command_def *cmd;
    int db, conn;
    unsigned long long session;
    int argc;
    char **argv;
    size_t *argvlen;
    redisReply **r; /* every reply asked for so far, by index */
    int nr, capr;
    int pending;
    step_fn *next_step;
    char *store_err;
    struct evbuffer *out;
    /* the procedure's own state */
    backend_image *img; /* COPY: the source's image */
    tracked_write *tracked; /* a client's write: its keys' trackers are told at the reply */
    long long n[6];
    int f[8];
    int idx[6];
    int then_block; /* a blocking command: after its key presteps it goes on as blocking commands do */
};

static emu *emus;

static void emu_free(emu *e)
{
    if (e->prev) e->prev->next = e->next;
    else emus = e->next;
    if (e->next) e->next->prev = e->prev;
    for (int i = 0; i < e->nr; i++)
        if (e->r[i]) freeReplyObject(e->r[i]);
    free(e->r);
    free(e->store_err);
    backend_image_free(e->img);
    tracking_write_end(e->tracked, 1);
    if (e->out) evbuffer_free(e->out);
    free(e->argv);
    free(e);
}

static emu *emu_new(const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    emu *e = calloc(1, sizeof(*e));
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) bytes += argvlen[i] + 1;
    char *block = malloc((size_t)argc * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!e || !block || !(e->out = evbuffer_new())) abort();
    e->argv = (char **)block;
    e->argvlen = (size_t *)(block + (size_t)argc * sizeof(char *));
    char *data = block + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < argc; i++) {
        memcpy(data, argv[i], argvlen[i]);
        data[argvlen[i]] = '\0';
        e->argv[i] = data;
        e->argvlen[i] = argvlen[i];
        data += argvlen[i] + 1;
    }
    e->argc = argc;
    e->cmd = cmd;
    e->conn = -1;
    e->next = emus;
    if (emus) emus->prev = e;
    emus = e;
    return e;
}

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Whole seconds that never end before ms milliseconds have: rounded up. */
static long long ceil_s(long long ms) { return ms >= 0 ? ms / 1000 + (ms % 1000 != 0) : -((-ms) / 1000); }

/* ---- replies ---------------------------------------------------------------------- */

/* An error as Redis 7.0 words it: old stores say WRONGTYPE differently. */
static void out_error(emu *e, const char *s, size_t len)
{
    static const char wk[] = "wrong kind of value";
    if (len >= sizeof(wk) - 1) {
        for (size_t i = 0; i + sizeof(wk) - 1 <= len; i++)
            if (!memcmp(s + i, wk, sizeof(wk) - 1)) {
                reply_error_uncounted(e->out, "WRONGTYPE Operation against a key holding the wrong kind of value");
                return;
            }
    }
    char *t = malloc(len + 1);
    if (!t) abort();
    memcpy(t, s, len);
    t[len] = '\0';
    reply_error_uncounted(e->out, t);
    free(t);
}

static void out_reply(emu *e, const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
        reply_bulk(e->out, r->str, r->len);
        break;
    case REDIS_REPLY_STATUS:
        evbuffer_add(e->out, "+", 1);
        evbuffer_add(e->out, r->str, r->len);
        evbuffer_add(e->out, "\r\n", 2);
        break;
    case REDIS_REPLY_ERROR:
        out_error(e, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        reply_integer(e->out, r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        reply_array(e->out, (long long)r->elements);
        for (size_t i = 0; i < r->elements; i++) out_reply(e, r->element[i]);
        break;
    default:
        reply_null_bulk(e->out);
    }
}

static void out_errorf(emu *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_errorf(emu *e, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    reply_error_uncounted(e->out, buf);
}

static void finish(emu *e)
{
    size_t len = evbuffer_get_length(e->out);
    char *reply = malloc(len ? len : 1);
    if (!reply) abort();
    evbuffer_remove(e->out, reply, len);
    int failed = e->store_err != NULL;
    if (e->done) {
        emulation_done_fn *fn = e->done;
        void *ctx = e->done_ctx;
        emu_free(e);
        fn(ctx, reply, len, failed);
        free(reply);
        return;
    }
    if (e->locks) lock_set_release(e->locks);
    e->locks = NULL;
    tracking_write_end(e->tracked, failed || (len && reply[0] == '-'));
    e->tracked = NULL;
    if (len && reply[0] == '-') stats_error_reply(reply + 1, len - 1);
    reply_slot *s = e->slot;
    client *c = e->c;
    s->failed = len && reply[0] == '-';
    if (s->c && !s->discard) evbuffer_add(s->c->slots_head == s && !s->shape ? s->c->out : s->buf, reply, len);
    client_slot_done(s);
    emu_free(e);
    free(reply);
    if (c) client_unblock(c);
}

static void finish_store_error(emu *e)
{
    evbuffer_drain(e->out, evbuffer_get_length(e->out));
    reply_error_uncounted(e->out, e->store_err);
    finish(e);
}

/* ---- talking to the store ----------------------------------------------------------- */

typedef struct batch_ref {
    emu *e;
    int idx;
} batch_ref;

static void batch_cb(void *ctx, const backend_reply *r)
{
    batch_ref *br = ctx;
    emu *e = br->e;
    int idx = br->idx;
    free(br);
    if (r->error) {
        if (!e->store_err && !(e->store_err = strdup(r->error))) abort();
    } else {
        e->r[idx] = backend_reply_copy(r->parsed);
    }
    if (--e->pending || !e->next_step) return;
    step_fn *f = e->next_step;
    e->next_step = NULL;
    if (e->store_err) finish_store_error(e);
    else f(e);
}

/* Arguments of one store command. */
typedef struct args {
    int n, cap;
    char **v;
    size_t *l;
    char num[8][24];
    int nn;
} args;

static void a_b(args *a, const char *p, size_t len)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->v = realloc(a->v, sizeof(char *) * (size_t)a->cap);
        a->l = realloc(a->l, sizeof(size_t) * (size_t)a->cap);
        if (!a->v || !a->l) abort();
    }
    a->v[a->n] = (char *)p;
    a->l[a->n++] = len;
}
static void a_s(args *a, const char *s) { a_b(a, s, strlen(s)); }
static void a_arg(args *a, emu *e, int i) { a_b(a, e->argv[i], e->argvlen[i]); }
static void a_ll(args *a, long long v)
{
    if (a->nn == 8) abort();
    char *p = a->num[a->nn++];
    a_b(a, p, (size_t)snprintf(p, 24, "%lld", v));
}

/* Sends one command; want: its reply is kept (the index is returned),
 * else -1 (MULTI and the commands queued in it). */
static int emu_send(emu *e, args *a, int want)
{
    int idx = -1;
    backend *b = server.backend;
    batch_ref *br = NULL;
    if (want) {
        if (e->nr == e->capr) {
            e->capr = e->capr ? e->capr * 2 : 8;
            e->r = realloc(e->r, sizeof(redisReply *) * (size_t)e->capr);
            if (!e->r) abort();
        }
        idx = e->nr++;
        e->r[idx] = NULL;
        br = malloc(sizeof(*br));
        if (!br) abort();
        br->e = e;
        br->idx = idx;
    }
    int rc = e->store_err ? -1
                          : backend_send_for(b, e->conn, e->db, e->session, a->n, a->v, a->l, BACKEND_PARSED,
                                             want ? batch_cb : NULL, br);
    if (rc != 0) {
        free(br);
        if (!e->store_err && !(e->store_err = strdup(backend_error(b)))) abort();
    } else if (want) {
        e->pending++;
    }
    free(a->v);
    free(a->l);
    memset(a, 0, sizeof(*a));
    return idx;
}

/* A command from C strings and arguments of the invocation: "%k" is
 * argv[n] for the next int, "%d" a long long, anything else a word. */
static int cmdf(emu *e, int want, const char *words, ...)
{
    args a = {0};
    va_list ap;
    va_start(ap, words);
    const char *p = words;
    while (*p) {
        size_t w = strcspn(p, " ");
        if (w == 2 && p[0] == '%' && p[1] == 'k') {
            a_arg(&a, e, va_arg(ap, int));
        } else if (w == 2 && p[0] == '%' && p[1] == 'd') {
            a_ll(&a, va_arg(ap, long long));
        } else if (w == 2 && p[0] == '%' && p[1] == 'b') {
            const char *s = va_arg(ap, const char *);
            a_b(&a, s, va_arg(ap, size_t));
        } else {
            a_b(&a, p, w); /* points into the literal */
        }
        p += w;
        while (*p == ' ') p++;
    }
    va_end(ap);
    return emu_send(e, &a, want);
}

static void multi(emu *e) { cmdf(e, 0, "MULTI"); }
static int exec(emu *e) { return cmdf(e, 1, "EXEC"); }

/* Go on with f once every reply asked for has come. */
static void then(emu *e, step_fn *f)
{
    if (e->pending) {
        e->next_step = f;
        return;
    }
    if (e->store_err) finish_store_error(e);
    else f(e);
}

static const redisReply *R(emu *e, int idx) { return idx >= 0 && idx < e->nr ? e->r[idx] : NULL; }
static int is_err(const redisReply *r) { return !r || r->type == REDIS_REPLY_ERROR; }
/* The first error among a reply and its elements (EXEC's). */
static const redisReply *first_error(const redisReply *r)
{
    if (!r || r->type == REDIS_REPLY_ERROR) return r;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_ERROR) return r->element[i];
    return NULL;
}
/* Finishes with the error if r is (or holds) one, or is missing, or is
 * the nil of an EXEC the store discarded: 1 then. Only replies that are
 * never nil otherwise come here. */
static int fail_on_error(emu *e, const redisReply *r)
{
    if (!r || r->type == REDIS_REPLY_NIL) {
        reply_error_uncounted(e->out, r ? "EXECABORT Transaction discarded" : "ERR no reply from the store");
        finish(e);
        return 1;
    }
    const redisReply *er = first_error(r);
    if (!er) return 0;
    out_error(e, er->str, er->len);
    finish(e);
    return 1;
}

static int arg_is(emu *e, int i, const char *w)
{
    size_t n = strlen(w);
    return e->argvlen[i] == n && !strncasecmp(e->argv[i], w, n);
}

static int arg_ll(emu *e, int i, long long *v) { return string_to_ll(e->argv[i], e->argvlen[i], v); }

#define NOT_INT "ERR value is not an integer or out of range"
#define SYNTAX "ERR syntax error"

static int done_error(emu *e, const char *err)
{
    reply_error_uncounted(e->out, err);
    finish(e);
    return 1;
}

/* The type of a key from TYPE's reply: 'n' none, 's' string, 'l', 'h', 'S'
 * set, 'z', or 'x' anything else; 0 on error. */
static char type_of(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STATUS) return 0;
    if (!strcmp(r->str, "none")) return 'n';
    if (!strcmp(r->str, "string")) return 's';
    if (!strcmp(r->str, "list")) return 'l';
    if (!strcmp(r->str, "hash")) return 'h';
    if (!strcmp(r->str, "set")) return 'S';
    if (!strcmp(r->str, "zset")) return 'z';
    return 'x';
}

static int wrongtype(emu *e) { return done_error(e, "WRONGTYPE Operation against a key holding the wrong kind of value"); }

/* ---- expiry on the store ------------------------------------------------------------
 * Relative times go as PEXPIRE where the store has it (2.6). Before that
 * the store gets EXPIRE in whole seconds rounded up, an upper bound, and
 * the proxy keeps the exact deadline (expiry_deadlines.h): PTTL answers
 * from it, and the first command to touch the key after it has passed
 * deletes the key first. Absolute times likewise. */
static int seconds_only(void) { return !have(V(2, 6, 0)); }

static void send_pexpire(emu *e, int key, long long ms, int want)
{
    if (!seconds_only()) {
        cmdf(e, want, "PEXPIRE %k %d", key, ms);
        return;
    }
    cmdf(e, want, "EXPIRE %k %d", key, ceil_s(ms));
    expiry_deadline_set(e->db, e->argv[key], e->argvlen[key], now_ms() + ms);
}
static void send_pexpireat(emu *e, int key, long long at_ms, int want)
{
    if (!seconds_only()) {
        cmdf(e, want, "PEXPIREAT %k %d", key, at_ms);
        return;
    }
    cmdf(e, want, "EXPIREAT %k %d", key, ceil_s(at_ms));
    expiry_deadline_set(e->db, e->argv[key], e->argvlen[key], at_ms);
}
/* The key's time to live in ms from PTTL, or TTL where there is none. */
static int send_pttl(emu *e, int key)
{
    return have(V(2, 6, 0)) ? cmdf(e, 1, "PTTL %k", key) : cmdf(e, 1, "TTL %k", key);
}
/* The time to live of argv[key] in ms from that reply; *exact says it is
 * to the millisecond (a store with seconds only, and a deadline kept). */
static long long pttl_value(emu *e, int key, const redisReply *r, int *exact)
{
    if (exact) *exact = !seconds_only();
    if (!r || r->type != REDIS_REPLY_INTEGER) return -1;
    if (!seconds_only()) return r->integer;
    long long at;
    if (r->integer < 0) {
        /* No time to live at the store (or no key): a deadline kept is stale. */
        expiry_deadline_drop(e->db, e->argv[key], e->argvlen[key]);
        return r->integer;
    }
    if (!expiry_deadline_get(e->db, e->argv[key], e->argvlen[key], &at)) return r->integer * 1000;
    if (exact) *exact = 1;
    long long left = at - now_ms();
    return left > 0 ? left : 1; /* passed this very moment: still a time to live */
}

/* ---- SET, SETEX, PSETEX, GETEX: Redis 7.0's option parsing ---------------------------- */

enum { X_NONE = 0, X_EX, X_PX, X_EXAT, X_PXAT };
/* f[]: 0 nx, 1 xx, 2 get, 3 keepttl, 4 persist, 5 expiry kind, 6 its argument;
 * n[0]: the expiry in ms (relative or absolute). */
static const char *parse_string_options(emu *e, int from, int is_set)
{
    for (int j = from; j < e->argc; j++) {
        int next = j + 1 < e->argc;
        int ex = e->f[5];
        if (arg_is(e, j, "nx") && !e->f[1] && is_set) e->f[0] = 1;
        else if (arg_is(e, j, "xx") && !e->f[0] && is_set) e->f[1] = 1;
        else if (arg_is(e, j, "get") && is_set) e->f[2] = 1;
        else if (arg_is(e, j, "keepttl") && !e->f[4] && !ex && is_set) e->f[3] = 1;
        else if (arg_is(e, j, "persist") && !is_set && !ex && !e->f[3]) e->f[4] = 1;
        else if (arg_is(e, j, "ex") && !e->f[3] && !e->f[4] && (!ex || ex == X_EX) && next) e->f[5] = X_EX, e->f[6] = ++j;
        else if (arg_is(e, j, "px") && !e->f[3] && !e->f[4] && (!ex || ex == X_PX) && next) e->f[5] = X_PX, e->f[6] = ++j;
        else if (arg_is(e, j, "exat") && !e->f[3] && !e->f[4] && (!ex || ex == X_EXAT) && next)
            e->f[5] = X_EXAT, e->f[6] = ++j;
        else if (arg_is(e, j, "pxat") && !e->f[3] && !e->f[4] && (!ex || ex == X_PXAT) && next)
            e->f[5] = X_PXAT, e->f[6] = ++j;
        else return SYNTAX;
    }
    return NULL;
}

static char errbuf[256];

static const char *expire_time_error(const char *cmdname)
{
    snprintf(errbuf, sizeof(errbuf), "ERR invalid expire time in '%s' command", cmdname);
    return errbuf;
}

/* Redis 7.0's getExpireMillisecondsOrReply: the error, or NULL with n[0]
 * set (relative ms for EX/PX, absolute for EXAT/PXAT). */
static const char *expiry_check(emu *e, const char *cmdname)
{
    long long v;
    if (!arg_ll(e, e->f[6], &v)) return NOT_INT;
    int seconds = e->f[5] == X_EX || e->f[5] == X_EXAT;
    if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) return expire_time_error(cmdname);
    if (seconds) v *= 1000;
    long long base = (e->f[5] == X_EX || e->f[5] == X_PX) ? now_ms() : 0;
    if (v > LLONG_MAX - base) return expire_time_error(cmdname);
    e->n[0] = v;
    return NULL;
}

/* The same, finishing with the error: 0 then. */
static int expiry_ms(emu *e, const char *cmdname)
{
    const char *err = expiry_check(e, cmdname);
    if (err) done_error(e, err);
    return !err;
}

/* The write of SET (key argv[1], value argv[vi]) with its expiry; its
 * reply index is idx[2] (EXEC's when it takes several commands). */
static void set_write(emu *e, int vi, long long keep_ms)
{
    int x = e->f[5];
    if (x == X_EX || x == X_PX) {
        long long ms = e->n[0];
        if (have(V(2, 6, 12))) e->idx[2] = cmdf(e, 1, "SET %k %k PX %d", 1, vi, ms);
        else if (have(V(2, 6, 0))) e->idx[2] = cmdf(e, 1, "PSETEX %k %d %k", 1, ms, vi);
        else {
            e->idx[2] = cmdf(e, 1, "SETEX %k %d %k", 1, ceil_s(ms), vi);
            expiry_deadline_set(e->db, e->argv[1], e->argvlen[1], now_ms() + ms);
        }
        return;
    }
    if (x == X_EXAT || x == X_PXAT || keep_ms > 0) {
        multi(e);
        cmdf(e, 0, "SET %k %k", 1, vi);
        if (x) send_pexpireat(e, 1, e->n[0], 0);
        else send_pexpire(e, 1, keep_ms, 0);
        e->idx[2] = exec(e);
        return;
    }
    e->idx[2] = cmdf(e, 1, "SET %k %k", 1, vi);
}

static void set_written(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[2]))) return;
    if (e->f[2]) out_reply(e, R(e, e->idx[0]));
    else reply_ok(e->out);
    finish(e);
}

static void set_decide(emu *e)
{
    int found;
    if (e->f[2]) {
        const redisReply *g = R(e, e->idx[0]);
        if (is_err(g)) {
            fail_on_error(e, g);
            return;
        }
        found = g->type == REDIS_REPLY_STRING;
    } else {
        const redisReply *x = R(e, e->idx[1]);
        found = x && x->type == REDIS_REPLY_INTEGER && x->integer > 0;
    }
    if ((e->f[0] && found) || (e->f[1] && !found)) {
        if (e->f[2]) out_reply(e, R(e, e->idx[0]));
        else reply_null_bulk(e->out);
        finish(e);
        return;
    }
    long long keep = e->f[3] ? pttl_value(e, 1, R(e, e->idx[3]), NULL) : 0;
    set_write(e, e->f[7], keep);
    then(e, set_written);
}

/* SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT t|KEEPTTL]; SETEX and
 * PSETEX come here with the expiry set and f[7] the value's index. */
static void set_start(emu *e, const char *cmdname)
{
    if (e->f[5] && !expiry_ms(e, cmdname)) return;
    e->idx[0] = e->idx[1] = e->idx[3] = -1;
    if (e->f[2]) e->idx[0] = cmdf(e, 1, "GET %k", 1);
    else if (e->f[0] || e->f[1]) e->idx[1] = cmdf(e, 1, "EXISTS %k", 1);
    if (e->f[3]) e->idx[3] = send_pttl(e, 1);
    then(e, set_decide);
}

static void emu_set(emu *e)
{
    const char *err = parse_string_options(e, 3, 1);
    if (err) {
        done_error(e, err);
        return;
    }
    e->f[7] = 2;
    set_start(e, "set");
}

static void emu_setex(emu *e)
{
    e->f[5] = !strcmp(e->cmd->name, "psetex") ? X_PX : X_EX;
    e->f[6] = 2;
    e->f[7] = 3;
    set_start(e, e->cmd->name);
}

/* GETEX key [EX|PX|EXAT|PXAT t|PERSIST]: the expiry is checked after the
 * value is read, as in Redis 7.0. */
static void getex_written(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[1]))) return;
    out_reply(e, R(e, e->idx[0]));
    finish(e);
}

static void getex_read(emu *e)
{
    const redisReply *g = R(e, e->idx[0]);
    if (is_err(g) || g->type != REDIS_REPLY_STRING) {
        if (is_err(g)) fail_on_error(e, g);
        else {
            out_reply(e, g);
            finish(e);
        }
        return;
    }
    if (e->f[5] && !expiry_ms(e, "getex")) return;
    e->idx[1] = -1;
    if (e->f[5] == X_EX || e->f[5] == X_PX) send_pexpire(e, 1, e->n[0], 1), e->idx[1] = e->nr - 1;
    else if (e->f[5] && e->n[0] <= now_ms()) e->idx[1] = cmdf(e, 1, "DEL %k", 1);
    else if (e->f[5]) send_pexpireat(e, 1, e->n[0], 1), e->idx[1] = e->nr - 1;
    else if (e->f[4]) e->idx[1] = cmdf(e, 1, "PERSIST %k", 1);
    if (e->idx[1] < 0) {
        out_reply(e, g);
        finish(e);
        return;
    }
    then(e, getex_written);
}

static void emu_getex(emu *e)
{
    const char *err = parse_string_options(e, 2, 0);
    if (err) {
        done_error(e, err);
        return;
    }
    e->idx[0] = cmdf(e, 1, "GET %k", 1);
    then(e, getex_read);
}

/* GETDEL and GETSET: the value, then the write if it is a string. */
static void getw_written(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[1]))) return;
    out_reply(e, R(e, e->idx[0]));
    finish(e);
}

static void getw_read(emu *e)
{
    const redisReply *g = R(e, e->idx[0]);
    if (is_err(g)) {
        fail_on_error(e, g);
        return;
    }
    int getset = !strcmp(e->cmd->name, "getset");
    if (g->type != REDIS_REPLY_STRING && !getset) {
        out_reply(e, g);
        finish(e);
        return;
    }
    e->idx[1] = getset ? cmdf(e, 1, "SET %k %k", 1, 2) : cmdf(e, 1, "DEL %k", 1);
    then(e, getw_written);
}

static void emu_getw(emu *e)
{
    e->idx[0] = cmdf(e, 1, "GET %k", 1);
    then(e, getw_read);
}

/* UNLINK: DEL frees the same keys, only not in the background. */
static void passthrough(emu *e)
{
    const redisReply *r = R(e, e->idx[0]);
    if (!r) return (void)fail_on_error(e, r);
    out_reply(e, r);
    finish(e);
}

static void emu_unlink(emu *e)
{
    args a = {0};
    a_s(&a, "DEL");
    for (int i = 1; i < e->argc; i++) a_arg(&a, e, i);
    e->idx[0] = emu_send(e, &a, 1);
    then(e, passthrough);
}

/* HSET key f v [f v ...] and HMSET: HMSET between two HLENs, in one
 * transaction; HSET answers how many fields are new. */
static void hset_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    if (!strcmp(e->cmd->name, "hmset")) reply_ok(e->out);
    else if (x->elements == 3) reply_integer(e->out, x->element[2]->integer - x->element[0]->integer);
    else reply_error_uncounted(e->out, "ERR unexpected reply from the store");
    finish(e);
}

static void emu_hset(emu *e)
{
    if (e->argc % 2 == 1) {
        out_errorf(e, "ERR wrong number of arguments for '%s' command", e->cmd->name);
        finish(e);
        return;
    }
    multi(e);
    cmdf(e, 0, "HLEN %k", 1);
    args a = {0};
    a_s(&a, "HMSET");
    for (int i = 1; i < e->argc; i++) a_arg(&a, e, i);
    emu_send(e, &a, 0);
    cmdf(e, 0, "HLEN %k", 1);
    e->idx[0] = exec(e);
    then(e, hset_done);
}

/* ---- EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT [NX|XX|GT|LT]; TTL, PTTL -------------------- */

/* f: 0 nx, 1 xx, 2 gt, 3 lt; n[0] the absolute time in ms. */
static void expire_write_done(emu *e)
{
    const redisReply *r = R(e, e->idx[2]);
    if (fail_on_error(e, r)) return;
    reply_integer(e->out, r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? 1 : 0);
    finish(e);
}

static void expire_write(emu *e)
{
    if (e->n[0] <= now_ms()) e->idx[2] = cmdf(e, 1, "DEL %k", 1);
    else send_pexpireat(e, 1, e->n[0], 1), e->idx[2] = e->nr - 1;
    then(e, expire_write_done);
}

static void expire_decide(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    if (x->integer <= 0) {
        reply_integer(e->out, 0);
        finish(e);
        return;
    }
    long long ttl = pttl_value(e, 1, R(e, e->idx[1]), NULL);
    long long cur = ttl >= 0 ? now_ms() + ttl : -1;
    long long when = e->n[0];
    if ((e->f[0] && cur != -1) || (e->f[1] && cur == -1) || (e->f[2] && (when <= cur || cur == -1)) ||
        (e->f[3] && when >= cur && cur != -1)) {
        reply_integer(e->out, 0);
        finish(e);
        return;
    }
    expire_write(e);
}

/* EXPIRE's arguments as Redis 7.0 checks them: the error, or NULL with
 * f[0..3] and n[0] (the absolute time in ms) set. */
static const char *expire_parse(emu *e)
{
    const char *name = e->cmd->name;
    int ms = name[0] == 'p', at = strstr(name, "at") != NULL;
    for (int j = 3; j < e->argc; j++) {
        if (arg_is(e, j, "nx")) e->f[0] = 1;
        else if (arg_is(e, j, "xx")) e->f[1] = 1;
        else if (arg_is(e, j, "gt")) e->f[2] = 1;
        else if (arg_is(e, j, "lt")) e->f[3] = 1;
        else {
            snprintf(errbuf, sizeof(errbuf), "ERR Unsupported option %.200s", e->argv[j]);
            return errbuf;
        }
    }
    if (e->f[0] && (e->f[1] || e->f[2] || e->f[3]))
        return "ERR NX and XX, GT or LT options at the same time are not compatible";
    if (e->f[2] && e->f[3]) return "ERR GT and LT options at the same time are not compatible";
    long long when;
    if (!arg_ll(e, 2, &when)) return NOT_INT;
    long long base = at ? 0 : now_ms();
    if (!ms) {
        if (when > LLONG_MAX / 1000 || when < LLONG_MIN / 1000) return expire_time_error(name);
        when *= 1000;
    }
    if (when > LLONG_MAX - base) return expire_time_error(name);
    e->n[0] = when + base;
    return NULL;
}

static void emu_expire(emu *e)
{
    const char *err = expire_parse(e);
    if (err) return (void)done_error(e, err);
    e->idx[0] = cmdf(e, 1, "EXISTS %k", 1);
    e->idx[1] = send_pttl(e, 1);
    then(e, expire_decide);
}

static void ttl_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x) || fail_on_error(e, R(e, e->idx[1]))) return;
    if (x->integer <= 0) {
        reply_integer(e->out, -2);
    } else {
        int exact;
        long long ms = pttl_value(e, 1, R(e, e->idx[1]), &exact);
        if (ms < 0) reply_integer(e->out, ms);
        else if (!strcmp(e->cmd->name, "pttl")) reply_integer(e->out, ms);
        else reply_integer(e->out, exact ? (ms + 500) / 1000 : ms / 1000);
    }
    finish(e);
}

static void emu_ttl(emu *e)
{
    e->idx[0] = cmdf(e, 1, "EXISTS %k", 1);
    e->idx[1] = send_pttl(e, 1);
    then(e, ttl_done);
}

static void emu_persist(emu *e)
{
    e->idx[0] = cmdf(e, 1, "PERSIST %k", 1);
    then(e, passthrough);
}

/* ---- lists -------------------------------------------------------------------------- */

/* LMOVE src dst LEFT|RIGHT LEFT|RIGHT, RPOPLPUSH src dst: the element is
 * read, then popped and pushed in one transaction. f: 0 from right, 1 to right. */
static void lmove_done(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[3]))) return;
    out_reply(e, R(e, e->idx[2]));
    finish(e);
}

static void lmove_read(emu *e)
{
    char ts = type_of(R(e, e->idx[0])), td = type_of(R(e, e->idx[1]));
    if (!ts || !td) {
        fail_on_error(e, is_err(R(e, e->idx[0])) ? R(e, e->idx[0]) : R(e, e->idx[1]));
        return;
    }
    if (ts == 'n') {
        reply_null_bulk(e->out);
        finish(e);
        return;
    }
    if (ts != 'l' || (td != 'n' && td != 'l')) {
        wrongtype(e);
        return;
    }
    const redisReply *v = R(e, e->idx[2]);
    if (fail_on_error(e, v)) return;
    multi(e);
    cmdf(e, 0, e->f[0] ? "RPOP %k" : "LPOP %k", 1);
    cmdf(e, 0, e->f[1] ? "RPUSH %k %b" : "LPUSH %k %b", 2, v->str, (size_t)v->len);
    e->idx[3] = exec(e);
    then(e, lmove_done);
}

static void emu_lmove(emu *e)
{
    if (!strcmp(e->cmd->name, "lmove")) {
        for (int i = 3; i <= 4; i++)
            if (!arg_is(e, i, "left") && !arg_is(e, i, "right")) {
                done_error(e, SYNTAX);
                return;
            }
        e->f[0] = arg_is(e, 3, "right");
        e->f[1] = arg_is(e, 4, "right");
    } else {
        e->f[0] = 1;
        e->f[1] = 0;
    }
    e->idx[0] = cmdf(e, 1, "TYPE %k", 1);
    e->idx[1] = cmdf(e, 1, "TYPE %k", 2);
    e->idx[2] = cmdf(e, 1, "LINDEX %k %d", 1, e->f[0] ? -1LL : 0LL);
    then(e, lmove_read);
}

/* LPOP/RPOP key count: the elements are read, then trimmed off. */
static void pop_done(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[2]))) return;
    const redisReply *r = R(e, e->idx[1]);
    reply_array(e->out, (long long)r->elements);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *el = r->element[e->f[0] ? r->elements - 1 - i : i];
        reply_bulk(e->out, el->str, el->len);
    }
    finish(e);
}

static void pop_read(emu *e)
{
    char t = type_of(R(e, e->idx[0]));
    if (!t) return (void)fail_on_error(e, R(e, e->idx[0]));
    if (t == 'n') {
        reply_null_array(e->out);
        finish(e);
        return;
    }
    if (t != 'l') return (void)wrongtype(e);
    if (e->n[0] == 0) {
        reply_array(e->out, 0);
        finish(e);
        return;
    }
    const redisReply *r = R(e, e->idx[1]);
    if (fail_on_error(e, r)) return;
    long long got = (long long)r->elements;
    e->idx[2] = e->f[0] ? cmdf(e, 1, "LTRIM %k 0 %d", 1, -(got + 1)) : cmdf(e, 1, "LTRIM %k %d -1", 1, got);
    then(e, pop_done);
}

static void emu_pop(emu *e)
{
    e->f[0] = e->cmd->name[0] == 'r';
    if (e->argc > 3) {
        out_errorf(e, "ERR wrong number of arguments for '%s' command", e->cmd->name);
        finish(e);
        return;
    }
    if (e->argc == 2) {
        e->idx[0] = cmdf(e, 1, e->f[0] ? "RPOP %k" : "LPOP %k", 1);
        then(e, passthrough);
        return;
    }
    long long n;
    if (!arg_ll(e, 2, &n) || n < 0) {
        done_error(e, "ERR value is out of range, must be positive");
        return;
    }
    e->n[0] = n;
    e->idx[0] = cmdf(e, 1, "TYPE %k", 1);
    /* Old stores read LRANGE's bounds as 32-bit ints: a count past that
     * reads the whole list. */
    if (n == 0) e->idx[1] = -1;
    else if (n > INT_MAX) e->idx[1] = cmdf(e, 1, "LRANGE %k 0 -1", 1);
    else if (e->f[0]) e->idx[1] = cmdf(e, 1, "LRANGE %k %d -1", 1, -n);
    else e->idx[1] = cmdf(e, 1, "LRANGE %k 0 %d", 1, n - 1);
    then(e, pop_read);
}

/* LPOS key element [RANK r] [COUNT n] [MAXLEN len] over the list read whole. */
static void lpos_read(emu *e)
{
    char t = type_of(R(e, e->idx[0]));
    if (!t) return (void)fail_on_error(e, R(e, e->idx[0]));
    long long rank = e->n[0], count = e->n[1], maxlen = e->n[2];
    if (t == 'n') {
        if (count != -1) reply_array(e->out, 0);
        else reply_null_bulk(e->out);
        finish(e);
        return;
    }
    if (t != 'l') return (void)wrongtype(e);
    const redisReply *l = R(e, e->idx[1]);
    if (fail_on_error(e, l)) return;
    long long len = (long long)l->elements, matches = 0, found = 0;
    struct evbuffer *hits = evbuffer_new();
    if (!hits) abort();
    int step = rank > 0 ? 1 : -1;
    long long skip = (rank > 0 ? rank : -rank) - 1;
    long long want = count == -1 ? 1 : count;
    long long i = rank > 0 ? 0 : len - 1;
    for (long long seen = 0; i >= 0 && i < len && (!maxlen || seen < maxlen); i += step, seen++) {
        const redisReply *el = l->element[i];
        if (el->len != e->argvlen[2] || memcmp(el->str, e->argv[2], el->len)) continue;
        if (matches++ < skip) continue;
        reply_integer(hits, i);
        if (++found == want && want) break;
    }
    if (count != -1) {
        reply_array(e->out, found);
        evbuffer_add_buffer(e->out, hits);
    } else if (found) {
        evbuffer_add_buffer(e->out, hits);
    } else {
        reply_null_bulk(e->out);
    }
    evbuffer_free(hits);
    finish(e);
}

/* LPOS's options: the error, or NULL with n[0..2] rank, count, maxlen. */
static const char *lpos_parse(emu *e)
{
    long long rank = 1, count = -1, maxlen = 0;
    for (int j = 3; j < e->argc; j++) {
        int more = e->argc - 1 - j;
        long long v;
        if (arg_is(e, j, "rank") && more) {
            j++;
            if (!arg_ll(e, j, &v)) return NOT_INT;
            if (v == LLONG_MIN)
                return "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
            if (v == 0)
                return "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use "
                       "negative to start from the end of the list";
            rank = v;
        } else if (arg_is(e, j, "count") && more) {
            j++;
            if (!arg_ll(e, j, &v) || v < 0) return "ERR COUNT can't be negative";
            count = v;
        } else if (arg_is(e, j, "maxlen") && more) {
            j++;
            if (!arg_ll(e, j, &v) || v < 0) return "ERR MAXLEN can't be negative";
            maxlen = v;
        } else {
            return SYNTAX;
        }
    }
    e->n[0] = rank;
    e->n[1] = count;
    e->n[2] = maxlen;
    return NULL;
}

static void emu_lpos(emu *e)
{
    const char *err = lpos_parse(e);
    if (err) return (void)done_error(e, err);
    e->idx[0] = cmdf(e, 1, "TYPE %k", 1);
    e->idx[1] = cmdf(e, 1, "LRANGE %k 0 -1", 1);
    then(e, lpos_read);
}

/* ---- sets ------------------------------------------------------------------------------ */

static void smismember_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    out_reply(e, x);
    finish(e);
}

static void emu_smismember(emu *e)
{
    multi(e);
    for (int i = 2; i < e->argc; i++) cmdf(e, 0, "SISMEMBER %k %k", 1, i);
    e->idx[0] = exec(e);
    then(e, smismember_done);
}

/* SINTERCARD numkeys key [key ...] [LIMIT limit]: SINTER's size. */
static void sintercard_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    long long n = (long long)x->elements;
    if (e->n[0] && n > e->n[0]) n = e->n[0];
    reply_integer(e->out, n);
    finish(e);
}

static void emu_sintercard(emu *e)
{
    long long nk, limit = 0;
    if (!arg_ll(e, 1, &nk) || nk <= 0) return (void)done_error(e, "ERR numkeys should be greater than 0");
    if (nk > e->argc - 2) return (void)done_error(e, "ERR Number of keys can't be greater than number of args");
    for (int j = 2 + (int)nk; j < e->argc; j++) {
        if (arg_is(e, j, "limit") && j + 1 < e->argc) {
            j++;
            if (!arg_ll(e, j, &limit) || limit < 0) return (void)done_error(e, "ERR LIMIT can't be negative");
        } else {
            return (void)done_error(e, SYNTAX);
        }
    }
    e->n[0] = limit;
    args a = {0};
    a_s(&a, "SINTER");
    for (int i = 0; i < nk; i++) a_arg(&a, e, 2 + i);
    e->idx[0] = emu_send(e, &a, 1);
    then(e, sintercard_done);
}

/* SPOP key count (3.2) and SRANDMEMBER key count (2.6): the members read,
 * chosen in the proxy; SPOP removes them in the same step. f[0]: SPOP. */
static void set_members_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    finish(e);
}

static void set_members_read(emu *e)
{
    const redisReply *t = R(e, e->idx[0]), *m = R(e, e->idx[1]);
    char type = type_of(t);
    if (type == 'n') {
        reply_array(e->out, 0);
        finish(e);
        return;
    }
    if (type != 'S') return (void)wrongtype(e);
    if (fail_on_error(e, m)) return;
    long long count = e->n[0], size = (long long)m->elements;
    int uniq = e->f[1];
    if (count == 0 || size == 0) {
        reply_array(e->out, 0);
        finish(e);
        return;
    }
    if (!uniq) {
        /* SRANDMEMBER with a negative count: members may repeat. */
        reply_array(e->out, count);
        for (long long i = 0; i < count; i++) {
            const redisReply *el = m->element[random() % size];
            reply_bulk(e->out, el->str, el->len);
        }
        finish(e);
        return;
    }
    long long n = count < size ? count : size;
    size_t *pick = malloc(sizeof(size_t) * (size_t)size);
    if (!pick) abort();
    for (long long i = 0; i < size; i++) pick[i] = (size_t)i;
    for (long long i = 0; i < n; i++) { /* a partial Fisher-Yates shuffle */
        long long j = i + random() % (size - i);
        size_t tmp = pick[i];
        pick[i] = pick[j];
        pick[j] = tmp;
    }
    reply_array(e->out, n);
    args a = {0};
    a_s(&a, "SREM");
    a_arg(&a, e, 1);
    for (long long i = 0; i < n; i++) {
        const redisReply *el = m->element[pick[i]];
        reply_bulk(e->out, el->str, el->len);
        a_b(&a, el->str, el->len);
    }
    free(pick);
    if (!e->f[0]) {
        free(a.v);
        free(a.l);
        finish(e);
        return;
    }
    e->idx[0] = emu_send(e, &a, 1);
    then(e, set_members_done);
}

/* Counts a store that has the command may take otherwise: SRANDMEMBER
 * with -2^63 loops for ever on releases before 7.0; SPOP words its
 * refusals differently. */
static const char *set_members_check(emu *e)
{
    long long count;
    if (e->argc != 3) return e->argc > 3 ? SYNTAX : NULL;
    if (!arg_ll(e, 2, &count)) return NOT_INT;
    if (!strcmp(e->cmd->name, "spop") ? count < 0 : count == LLONG_MIN) return "out of range";
    return NULL;
}

static void emu_set_members(emu *e)
{
    int spop = !strcmp(e->cmd->name, "spop");
    long long count;
    if (e->argc > 3) return (void)done_error(e, SYNTAX);
    e->f[0] = spop;
    e->f[1] = 1;
    if (spop) {
        if (!arg_ll(e, 2, &count) || count < 0) return (void)done_error(e, "ERR value is out of range, must be positive");
    } else {
        if (!arg_ll(e, 2, &count)) return (void)done_error(e, NOT_INT);
        if (count == LLONG_MIN)
            return (void)done_error(e, "ERR value is out of range, value must between -9223372036854775807 and "
                                       "9223372036854775807");
        if (count < 0) count = -count, e->f[1] = 0;
    }
    e->n[0] = count;
    e->idx[0] = cmdf(e, 1, "TYPE %k", 1);
    e->idx[1] = cmdf(e, 1, "SMEMBERS %k", 1);
    then(e, set_members_read);
}

/* ---- sorted sets ------------------------------------------------------------------------ */

/* Redis 7.0's getDoubleFromObject. */
static int parse_double(const char *s, size_t len, double *out)
{
    if (!len || isspace((unsigned char)s[0]) || len > 5000) return 0;
    char buf[5001], *end;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    double v = strtod(buf, &end);
    if ((size_t)(end - buf) != len || isnan(v) ||
        (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL || fpclassify(v) == FP_ZERO)))
        return 0;
    *out = v;
    return 1;
}

/* ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]:
 * the members' scores are read, Redis's rules applied here, and the
 * changes written as plain ZADD (or ZINCRBY for INCR).
 * f: 0 nx 1 xx 2 gt 3 lt 4 ch 5 incr; n[0] first score's index. */
static void zadd_done(emu *e)
{
    const redisReply *w = R(e, e->idx[1]);
    if (fail_on_error(e, w)) return;
    if (e->f[5]) {
        if (w->type == REDIS_REPLY_ARRAY && w->elements == 1) out_reply(e, w->element[0]);
        else out_reply(e, w);
    } else {
        reply_integer(e->out, e->n[1]);
    }
    finish(e);
}

static void zadd_read(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    char t = type_of(x->element[0]);
    if (t != 'n' && t != 'z') return (void)wrongtype(e);
    int first = (int)e->n[0], pairs = (e->argc - first) / 2;
    /* Members as they stand while the pairs are applied in order. */
    double *cur = calloc((size_t)pairs, sizeof(double));
    char *has = calloc((size_t)pairs, 1), *take = calloc((size_t)pairs, 1);
    if (!cur || !has || !take) abort();
    for (int i = 0; i < pairs; i++) {
        const redisReply *s = x->element[1 + i];
        if (s->type == REDIS_REPLY_STRING) {
            has[i] = 1;
            parse_double(s->str, s->len, &cur[i]);
        }
    }
    long long added = 0, updated = 0, processed = 0;
    int nan_err = 0;
    if (t == 'n' && e->f[1]) pairs = 0; /* XX on no key: nothing */
    for (int i = 0; i < pairs && !nan_err; i++) {
        const char *m = e->argv[first + 2 * i + 1];
        size_t ml = e->argvlen[first + 2 * i + 1];
        /* The member as an earlier pair of the same call left it. */
        int exists = has[i];
        double cs = cur[i];
        for (int k = i - 1; k >= 0; k--)
            if (e->argvlen[first + 2 * k + 1] == ml && !memcmp(e->argv[first + 2 * k + 1], m, ml)) {
                exists = has[k];
                cs = cur[k];
                break;
            }
        has[i] = (char)exists;
        cur[i] = cs;
        double score;
        parse_double(e->argv[first + 2 * i], e->argvlen[first + 2 * i], &score);
        if (exists) {
            if (e->f[0]) continue;
            if (e->f[5]) {
                score += cs;
                if (isnan(score)) {
                    nan_err = 1;
                    break;
                }
            }
            if ((e->f[3] && score >= cs) || (e->f[2] && score <= cs)) continue;
            processed++;
            if (score != cs) {
                updated++;
                take[i] = 1;
            }
            cur[i] = score;
        } else if (!e->f[1]) {
            take[i] = 1;
            added++;
            processed++;
            cur[i] = score;
            has[i] = 1;
        }
    }
    free(has);
    if (nan_err) {
        free(cur);
        free(take);
        return (void)done_error(e, "ERR resulting score is not a number (NaN)");
    }
    e->n[1] = e->f[4] ? added + updated : added;
    if (e->f[5] && !processed) {
        free(cur);
        free(take);
        reply_null_bulk(e->out);
        finish(e);
        return;
    }
    int any = 0;
    for (int i = 0; i < pairs; i++) any |= take[i];
    if (e->f[5]) {
        /* The store works out the new score (and formats it) itself. */
        if (any) e->idx[1] = cmdf(e, 1, "ZINCRBY %k %k %k", 1, first, first + 1);
        else e->idx[1] = cmdf(e, 1, "ZSCORE %k %k", 1, first + 1);
    } else if (any) {
        multi(e);
        for (int i = 0; i < pairs; i++)
            if (take[i]) cmdf(e, 0, "ZADD %k %k %k", 1, first + 2 * i, first + 2 * i + 1);
        e->idx[1] = exec(e);
    } else {
        e->idx[1] = -1;
    }
    free(cur);
    free(take);
    if (e->idx[1] < 0) {
        reply_integer(e->out, e->n[1]);
        finish(e);
        return;
    }
    then(e, zadd_done);
}

/* ZADD's options and scores: the error, or NULL with f[] and n[0] (the
 * first score's index) set. */
static const char *zadd_parse(emu *e)
{
    int j = 2;
    for (; j < e->argc; j++) {
        if (arg_is(e, j, "nx")) e->f[0] = 1;
        else if (arg_is(e, j, "xx")) e->f[1] = 1;
        else if (arg_is(e, j, "gt")) e->f[2] = 1;
        else if (arg_is(e, j, "lt")) e->f[3] = 1;
        else if (arg_is(e, j, "ch")) e->f[4] = 1;
        else if (arg_is(e, j, "incr")) e->f[5] = 1;
        else break;
    }
    int elements = e->argc - j;
    if (elements % 2 || !elements) return SYNTAX;
    elements /= 2;
    if (e->f[0] && e->f[1]) return "ERR XX and NX options at the same time are not compatible";
    if ((e->f[2] && e->f[0]) || (e->f[3] && e->f[0]) || (e->f[2] && e->f[3]))
        return "ERR GT, LT, and/or NX options at the same time are not compatible";
    if (e->f[5] && elements > 1) return "ERR INCR option supports a single increment-element pair";
    for (int i = 0; i < elements; i++) {
        double d;
        if (!parse_double(e->argv[j + 2 * i], e->argvlen[j + 2 * i], &d)) return "ERR value is not a valid float";
    }
    e->n[0] = j;
    return NULL;
}

static void emu_zadd(emu *e)
{
    const char *err = zadd_parse(e);
    if (err) return (void)done_error(e, err);
    int j = (int)e->n[0], elements = (e->argc - j) / 2;
    multi(e);
    cmdf(e, 0, "TYPE %k", 1);
    for (int i = 0; i < elements; i++) cmdf(e, 0, "ZSCORE %k %k", 1, j + 2 * i + 1);
    e->idx[0] = exec(e);
    then(e, zadd_read);
}

/* ---- keys ------------------------------------------------------------------------------- */

/* EXISTS with several keys (3.0.3): each counted, a key named twice twice. */
static void exists_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    long long n = 0;
    for (size_t i = 0; i < x->elements; i++)
        if (x->element[i]->type == REDIS_REPLY_INTEGER) n += x->element[i]->integer;
    reply_integer(e->out, n);
    finish(e);
}

static void emu_exists(emu *e)
{
    multi(e);
    for (int i = 1; i < e->argc; i++) cmdf(e, 0, "EXISTS %k", i);
    e->idx[0] = exec(e);
    then(e, exists_done);
}

/* LPUSHX and RPUSHX with several elements (4.0): one push each, in one
 * transaction; the list's length after the last. */
static void pushx_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    out_reply(e, x->element[x->elements - 1]);
    finish(e);
}

static void emu_pushx(emu *e)
{
    int left = e->cmd->name[0] == 'l';
    multi(e);
    for (int i = 2; i < e->argc; i++) cmdf(e, 0, left ? "LPUSHX %k %k" : "RPUSHX %k %k", 1, i);
    e->idx[0] = exec(e);
    then(e, pushx_done);
}

/* FLUSHALL and FLUSHDB [ASYNC|SYNC] (4.0, 6.2): flushed at once, which
 * is what SYNC asks and what ASYNC's caller sees. */
static const char *flush_check(emu *e)
{
    if (e->argc > 2 || (e->argc == 2 && !arg_is(e, 1, "async") && !arg_is(e, 1, "sync"))) return SYNTAX;
    return NULL;
}

static void emu_flush(emu *e)
{
    const char *err = flush_check(e);
    if (err) return (void)done_error(e, err);
    e->idx[0] = cmdf(e, 1, !strcmp(e->cmd->name, "flushall") ? "FLUSHALL" : "FLUSHDB");
    then(e, passthrough);
}

/* MOVE key db: before 2.6 the moved key loses its time to live; the proxy
 * gives it back in the destination database (and its exact deadline).
 * n[0]: the destination, n[1]: the time to live in ms (0: none). */
static const char *move_check(emu *e)
{
    long long db;
    if (!arg_ll(e, 2, &db) || db < 0 || db >= config.databases) return "7.0's error"; /* worded otherwise before */
    return have(V(2, 6, 0)) ? NULL : "keeps no time to live";
}

static void move_expired(emu *e)
{
    out_reply(e, R(e, e->idx[0]));
    finish(e);
}

static void move_moved(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    if (x->type != REDIS_REPLY_INTEGER || x->integer != 1 || e->n[1] <= 0) return move_expired(e);
    int saved = e->db;
    e->db = (int)e->n[0];
    send_pexpire(e, 1, e->n[1], 0);
    e->db = saved;
    expiry_deadline_drop(e->db, e->argv[1], e->argvlen[1]);
    then(e, move_expired);
}

static void move_read(emu *e)
{
    int exact;
    e->n[1] = pttl_value(e, 1, R(e, e->idx[1]), &exact);
    if (e->n[1] < 0) e->n[1] = 0;
    else if (!exact) e->n[1] += 1000; /* the store's whole seconds: never shorter */
    args a = {0};
    for (int i = 0; i < e->argc; i++) a_arg(&a, e, i);
    e->idx[0] = emu_send(e, &a, 1);
    then(e, move_moved);
}

static void emu_move(emu *e)
{
    long long db;
    if (!arg_ll(e, 2, &db)) return (void)done_error(e, NOT_INT);
    if (db < INT_MIN || db > INT_MAX)
        return (void)done_error(e, "ERR value is out of range, value must between -2147483648 and 2147483647");
    if (db < 0 || db >= config.databases) return (void)done_error(e, "ERR DB index is out of range");
    if (db == e->db) return (void)done_error(e, "ERR source and destination objects are the same");
    e->n[0] = db;
    e->idx[1] = send_pttl(e, 1);
    then(e, move_read);
}

/* RENAME and RENAMENX of a key to its own name: before 3.2 an error,
 * since then OK (RENAMENX: 0) when the key exists. */
static int rename_same(emu *e)
{
    return e->argc == 3 && e->argvlen[1] == e->argvlen[2] && !memcmp(e->argv[1], e->argv[2], e->argvlen[1]) &&
           !have(V(3, 2, 0));
}

/* Also where either key has an exact deadline: it goes with the key. */
static const char *rename_check(emu *e)
{
    if (e->argc != 3) return NULL;
    if (rename_same(e)) return "same name";
    if (seconds_only() && (expiry_deadline_earliest(e->argv[1], e->argvlen[1]) ||
                           expiry_deadline_earliest(e->argv[2], e->argvlen[2])))
        return "deadline";
    return NULL;
}

static void rename_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    if (x->type == REDIS_REPLY_STATUS || (x->type == REDIS_REPLY_INTEGER && x->integer == 1)) {
        long long at;
        int had = expiry_deadline_get(e->db, e->argv[1], e->argvlen[1], &at);
        expiry_deadline_drop(e->db, e->argv[1], e->argvlen[1]);
        expiry_deadline_drop(e->db, e->argv[2], e->argvlen[2]);
        if (had) expiry_deadline_set(e->db, e->argv[2], e->argvlen[2], at);
    }
    out_reply(e, x);
    finish(e);
}

static void rename_same_done(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (fail_on_error(e, x)) return;
    if (x->integer <= 0) reply_error_uncounted(e->out, "ERR no such key");
    else if (!strcmp(e->cmd->name, "renamenx")) reply_integer(e->out, 0);
    else reply_ok(e->out);
    finish(e);
}

static void emu_rename(emu *e)
{
    if (!rename_same(e)) {
        args a = {0};
        for (int i = 0; i < e->argc; i++) a_arg(&a, e, i);
        e->idx[0] = emu_send(e, &a, 1);
        then(e, rename_done);
        return;
    }
    e->idx[0] = cmdf(e, 1, "EXISTS %k", 1);
    then(e, rename_same_done);
}

/* COPY source destination [DB n] [REPLACE]: the source's image (DUMP, or
 * its type's reads where the store has no DUMP) restored under the
 * destination's name, with its time to live. */
static void copy_restored(void *ctx, const backend_reply *r)
{
    emu *e = ctx;
    e->pending--;
    if (r->error) {
        if (!e->store_err && !(e->store_err = strdup(r->error))) abort();
        finish_store_error(e);
        return;
    }
    if (r->parsed && r->parsed->type == REDIS_REPLY_ERROR) {
        out_error(e, r->parsed->str, r->parsed->len);
    } else {
        /* The copy has the source's time to live: its exact deadline too. */
        long long at;
        expiry_deadline_drop(e->f[1], e->argv[2], e->argvlen[2]);
        if (expiry_deadline_get(e->db, e->argv[1], e->argvlen[1], &at))
            expiry_deadline_set(e->f[1], e->argv[2], e->argvlen[2], at);
        reply_integer(e->out, 1);
    }
    finish(e);
}

static void copy_imaged(void *ctx, backend_image *img, const char *error)
{
    emu *e = ctx;
    e->pending--;
    if (!img) {
        backend_image_free(img);
        if (!e->store_err && !(e->store_err = strdup(error ? error : "ERR cannot read the source key"))) abort();
        if (!e->pending) finish_store_error(e);
        return;
    }
    /* EXISTS destination was sent right after: wait for it. */
    e->img = img;
    if (!e->pending && e->next_step) {
        step_fn *f = e->next_step;
        e->next_step = NULL;
        if (e->store_err) finish_store_error(e);
        else f(e);
    }
}

static void copy_dumped(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[1]))) return;
    reply_integer(e->out, 1);
    finish(e);
}

static void copy_decide(emu *e)
{
    backend_image *img = e->img;
    e->img = NULL;
    const redisReply *x = R(e, e->idx[0]);
    if (!img || fail_on_error(e, x)) {
        if (img) backend_image_free(img);
        else if (!e->store_err) done_error(e, "ERR cannot read the source key");
        return;
    }
    if (!img->exists || (x->integer > 0 && !e->f[0])) {
        backend_image_free(img);
        reply_integer(e->out, 0);
        finish(e);
        return;
    }
    int db = (int)e->n[0];
    backend *b = server.backend;
    if (!img->kind) {
        /* A DUMP payload: DEL and RESTORE in one transaction (RESTORE's
         * REPLACE is 3.0's), in the destination's database. */
        long long left = img->ttl_ms;
        if (left > 0) {
            left -= clock_ms() - img->read_ms;
            if (left <= 0) left = 1;
        }
        int saved = e->db;
        e->db = db;
        multi(e);
        cmdf(e, 0, "DEL %k", 2);
        cmdf(e, 0, "RESTORE %k %d %b", 2, left > 0 ? left : 0LL, img->data, img->len);
        e->idx[1] = exec(e);
        e->db = saved;
        backend_image_free(img);
        then(e, copy_dumped);
        return;
    }
    if (backend_restore(b, e->conn, db, e->session, e->argv[2], e->argvlen[2], img, copy_restored, e) != 0) {
        backend_image_free(img);
        if (!e->store_err && !(e->store_err = strdup(backend_error(b)))) abort();
        finish_store_error(e);
        return;
    }
    backend_image_free(img);
    e->pending++;
}

static void emu_copy(emu *e)
{
    long long db = e->db;
    for (int j = 3; j < e->argc; j++) {
        if (arg_is(e, j, "replace")) {
            e->f[0] = 1;
        } else if (arg_is(e, j, "db") && j + 1 < e->argc) {
            j++;
            if (!arg_ll(e, j, &db) || db < INT_MIN || db > INT_MAX) return (void)done_error(e, NOT_INT);
        } else {
            return (void)done_error(e, SYNTAX);
        }
    }
    if (db < 0 || db >= config.databases) return (void)done_error(e, "ERR DB index is out of range");
    if (db == e->db && e->argvlen[1] == e->argvlen[2] && !memcmp(e->argv[1], e->argv[2], e->argvlen[1]))
        return (void)done_error(e, "ERR source and destination objects are the same");
    e->n[0] = db;
    e->f[1] = (int)db;
    backend *b = server.backend;
    if (backend_capture(b, e->conn, e->db, e->session, e->argv[1], e->argvlen[1], copy_imaged, e) != 0) {
        if (!(e->store_err = strdup(backend_error(b)))) abort();
        finish_store_error(e);
        return;
    }
    e->pending++;
    int saved = e->db;
    e->db = (int)db;
    e->idx[0] = cmdf(e, 1, "EXISTS %k", 2);
    e->db = saved;
    then(e, copy_decide);
}


/* ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count]
 * [WITHSCORES]: checked as Redis 7.0 does, then run as the ZRANGE,
 * ZREVRANGE, Z[REV]RANGEBYSCORE or Z[REV]RANGEBYLEX the store has. */
static int score_bound_ok(const char *s)
{
    char *end;
    double v = strtod(s[0] == '(' ? s + 1 : s, &end);
    return end[0] == '\0' && !isnan(v);
}

static int lex_bound_ok(const char *s, size_t len)
{
    if (len == 1 && (s[0] == '+' || s[0] == '-')) return 1;
    return len >= 1 && (s[0] == '(' || s[0] == '[');
}

/* f: 0 withscores, 1 rev, 2 range type (0 rank, 1 score, 2 lex), 3 limit given; n: 0 offset, 1 count. */
static const char *zrange_parse(emu *e)
{
    e->n[1] = -1;
    for (int j = 4; j < e->argc; j++) {
        int left = e->argc - j - 1;
        if (arg_is(e, j, "withscores")) {
            e->f[0] = 1;
        } else if (arg_is(e, j, "limit") && left >= 2) {
            if (!arg_ll(e, j + 1, &e->n[0]) || !arg_ll(e, j + 2, &e->n[1])) return NOT_INT;
            e->f[3] = 1;
            j += 2;
        } else if (!e->f[1] && arg_is(e, j, "rev")) {
            e->f[1] = 1;
        } else if (!e->f[2] && arg_is(e, j, "bylex")) {
            e->f[2] = 2;
        } else if (!e->f[2] && arg_is(e, j, "byscore")) {
            e->f[2] = 1;
        } else {
            return SYNTAX;
        }
    }
    /* As in 7.0: LIMIT with a count of -1 is no limit, allowed by rank. */
    if (e->f[3] && e->n[1] != -1 && !e->f[2])
        return "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
    if (e->f[0] && e->f[2] == 2) return "ERR syntax error, WITHSCORES not supported in combination with BYLEX";
    long long v;
    if (!e->f[2] && (!arg_ll(e, 2, &v) || !arg_ll(e, 3, &v))) return NOT_INT;
    if (e->f[2] == 1 && (!score_bound_ok(e->argv[2]) || !score_bound_ok(e->argv[3]))) return "ERR min or max is not a float";
    if (e->f[2] == 2 && (!lex_bound_ok(e->argv[2], e->argvlen[2]) || !lex_bound_ok(e->argv[3], e->argvlen[3])))
        return "ERR min or max not valid string range item";
    return NULL;
}

static void emu_zrange(emu *e)
{
    const char *err = zrange_parse(e);
    if (err) return (void)done_error(e, err);
    if (e->f[2] == 2 && !have(V(2, 8, 9)))
        return (void)done_error(e, "ERR ZRANGE BYLEX needs a store of Redis 2.8.9 or newer");
    static const char *const names[3][2] = {
        {"ZRANGE", "ZREVRANGE"}, {"ZRANGEBYSCORE", "ZREVRANGEBYSCORE"}, {"ZRANGEBYLEX", "ZREVRANGEBYLEX"}};
    args a = {0};
    a_s(&a, names[e->f[2]][e->f[1]]);
    a_arg(&a, e, 1);
    a_arg(&a, e, 2);
    a_arg(&a, e, 3);
    if (e->f[0]) a_s(&a, "WITHSCORES");
    if (e->f[3] && e->f[2]) {
        a_s(&a, "LIMIT");
        a_ll(&a, e->n[0]);
        a_ll(&a, e->n[1]);
    }
    e->idx[0] = emu_send(e, &a, 1);
    then(e, passthrough);
}

/* LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count] and ZMPOP ... MIN|MAX:
 * every key's type and first elements read in one transaction, then the
 * first that has any trimmed. f: 0 from the right/max, 1 zset; n[0] count,
 * n[1] numkeys. */
static const char *mpop_parse(emu *e)
{
    long long nk, count = -1;
    if (!arg_ll(e, 1, &nk) || nk < 1) return "ERR numkeys should be greater than 0";
    if (nk > e->argc - 2) return SYNTAX;
    long long where = 2 + nk;
    if (where >= e->argc) return SYNTAX;
    e->f[1] = e->cmd->name[0] == 'z';
    if (arg_is(e, (int)where, e->f[1] ? "min" : "left")) e->f[0] = 0;
    else if (arg_is(e, (int)where, e->f[1] ? "max" : "right")) e->f[0] = 1;
    else return SYNTAX;
    for (int j = (int)where + 1; j < e->argc; j++) {
        int more = e->argc - 1 - j;
        if (count == -1 && arg_is(e, j, "count") && more) {
            j++;
            if (!arg_ll(e, j, &count) || count < 1) return "ERR count should be greater than 0";
        } else {
            return SYNTAX;
        }
    }
    e->n[0] = count == -1 ? 1 : count;
    e->n[1] = nk;
    return NULL;
}

static void mpop_done(emu *e)
{
    if (fail_on_error(e, R(e, e->idx[1]))) return;
    const redisReply *x = R(e, e->idx[0]);
    const redisReply *r = x->element[2 * e->n[2] + 1];
    int k = 2 + (int)e->n[2];
    reply_array(e->out, 2);
    reply_bulk(e->out, e->argv[k], e->argvlen[k]);
    if (e->f[1]) {
        reply_array(e->out, (long long)r->elements / 2);
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            reply_array(e->out, 2);
            reply_bulk(e->out, r->element[i]->str, r->element[i]->len);
            reply_bulk(e->out, r->element[i + 1]->str, r->element[i + 1]->len);
        }
    } else {
        reply_array(e->out, (long long)r->elements);
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *el = r->element[e->f[0] ? r->elements - 1 - i : i];
            reply_bulk(e->out, el->str, el->len);
        }
    }
    finish(e);
}

static void mpop_read(emu *e)
{
    const redisReply *x = R(e, e->idx[0]);
    if (!x || x->type != REDIS_REPLY_ARRAY || (long long)x->elements != 2 * e->n[1]) {
        fail_on_error(e, x && x->type == REDIS_REPLY_ARRAY ? NULL : x);
        if (x && x->type == REDIS_REPLY_ARRAY) done_error(e, "ERR unexpected reply from the store");
        return;
    }
    for (long long i = 0; i < e->n[1]; i++) {
        char t = type_of(x->element[2 * i]);
        if (t == 'n') continue;
        if (t != (e->f[1] ? 'z' : 'l')) return (void)wrongtype(e);
        const redisReply *r = x->element[2 * i + 1];
        if (r->type != REDIS_REPLY_ARRAY || !r->elements) continue;
        e->n[2] = i;
        int k = 2 + (int)i;
        long long got = e->f[1] ? (long long)r->elements / 2 : (long long)r->elements;
        if (e->f[1]) e->idx[1] = e->f[0] ? cmdf(e, 1, "ZREMRANGEBYRANK %k %d -1", k, -got)
                                         : cmdf(e, 1, "ZREMRANGEBYRANK %k 0 %d", k, got - 1);
        else e->idx[1] = e->f[0] ? cmdf(e, 1, "LTRIM %k 0 %d", k, -(got + 1)) : cmdf(e, 1, "LTRIM %k %d -1", k, got);
        then(e, mpop_done);
        return;
    }
    reply_null_array(e->out);
    finish(e);
}

static void emu_mpop(emu *e)
{
    const char *err = mpop_parse(e);
    if (err) return (void)done_error(e, err);
    long long n = e->n[0] > INT_MAX ? -1 : e->n[0];
    multi(e);
    for (long long i = 0; i < e->n[1]; i++) {
        int k = 2 + (int)i;
        cmdf(e, 0, "TYPE %k", k);
        if (e->f[1] && n < 0) cmdf(e, 0, e->f[0] ? "ZREVRANGE %k 0 -1 WITHSCORES" : "ZRANGE %k 0 -1 WITHSCORES", k);
        else if (e->f[1]) cmdf(e, 0, e->f[0] ? "ZREVRANGE %k 0 %d WITHSCORES" : "ZRANGE %k 0 %d WITHSCORES", k, n - 1);
        else if (n < 0) cmdf(e, 0, "LRANGE %k 0 -1", k);
        else if (e->f[0]) cmdf(e, 0, "LRANGE %k %d -1", k, -n);
        else cmdf(e, 0, "LRANGE %k 0 %d", k, n - 1);
    }
    e->idx[0] = exec(e);
    then(e, mpop_read);
}

/* SCAN, SSCAN, HSCAN, ZSCAN before 2.8: the whole keyspace (KEYS) or the
 * whole key in one reply with cursor 0. COUNT is only a hint in Redis, so
 * this is a valid iteration, and one that can neither repeat nor skip an
 * element. A cursor other than 0 (not one this gave out) ends at once.
 * f: 0 cursor was 0, 1 TYPE given (n[0]: its argument), 2 MATCH given
 * (n[1]: its argument); for keys: idx[0] KEYS, idx[1] the TYPEs. */
static const char *scan_parse(emu *e, int first_opt, int allow_type)
{
    const char *c = e->argv[first_opt - 1];
    size_t cl = e->argvlen[first_opt - 1];
    char *end;
    errno = 0;
    unsigned long long cur = strtoull(c, &end, 10);
    if (!cl || isspace((unsigned char)c[0]) || end != c + cl || errno == ERANGE)
        return "ERR invalid cursor";
    e->f[0] = cur == 0;
    for (int j = first_opt; j < e->argc; j++) {
        int left = e->argc - 1 - j;
        if (arg_is(e, j, "count") && left >= 1) {
            long long v;
            if (!arg_ll(e, j + 1, &v)) return NOT_INT;
            if (v < 1) return SYNTAX;
            j++;
        } else if (arg_is(e, j, "match") && left >= 1) {
            e->f[2] = 1;
            e->n[1] = ++j;
        } else if (allow_type && arg_is(e, j, "type") && left >= 1) {
            e->f[1] = 1;
            e->n[0] = ++j;
        } else {
            return SYNTAX;
        }
    }
    return NULL;
}

static int scan_match(emu *e, const char *s, size_t len)
{
    if (!e->f[2]) return 1;
    int m = (int)e->n[1];
    return glob_match(e->argv[m], e->argvlen[m], s, len, 0);
}

static void scan_keys_typed(emu *e)
{
    const redisReply *k = R(e, e->idx[0]), *t = e->f[1] ? R(e, e->idx[1]) : NULL;
    if (fail_on_error(e, k) || (t && fail_on_error(e, t))) return;
    struct evbuffer *keys = evbuffer_new();
    if (!keys) abort();
    long long n = 0;
    for (size_t i = 0; i < k->elements; i++) {
        const redisReply *key = k->element[i];
        if (!scan_match(e, key->str, key->len)) continue;
        if (t) {
            int ti = (int)e->n[0];
            const redisReply *ty = i < t->elements ? t->element[i] : NULL;
            if (!ty || ty->type != REDIS_REPLY_STATUS || strlen(ty->str) != e->argvlen[ti] ||
                strncasecmp(ty->str, e->argv[ti], e->argvlen[ti]))
                continue;
        }
        reply_bulk(keys, key->str, key->len);
        n++;
    }
    reply_array(e->out, 2);
    reply_bulk(e->out, "0", 1);
    reply_array(e->out, n);
    evbuffer_add_buffer(e->out, keys);
    evbuffer_free(keys);
    finish(e);
}

static void scan_keys(emu *e)
{
    const redisReply *k = R(e, e->idx[0]);
    if (fail_on_error(e, k)) return;
    if (!e->f[1] || !k->elements) return scan_keys_typed(e);
    multi(e);
    for (size_t i = 0; i < k->elements; i++) cmdf(e, 0, "TYPE %b", k->element[i]->str, (size_t)k->element[i]->len);
    e->idx[1] = exec(e);
    then(e, scan_keys_typed);
}

static void scan_empty(emu *e)
{
    reply_array(e->out, 2);
    reply_bulk(e->out, "0", 1);
    reply_array(e->out, 0);
    finish(e);
}

static void scan_elements(emu *e)
{
    char t = type_of(R(e, e->idx[0]));
    char want = e->cmd->name[0] == 's' ? 'S' : e->cmd->name[0];
    if (!t) return (void)fail_on_error(e, R(e, e->idx[0]));
    if (t == 'n') return scan_empty(e);
    if (t != want) return (void)wrongtype(e);
    const char *err = scan_parse(e, 3, 0);
    if (err) return (void)done_error(e, err);
    if (!e->f[0]) return scan_empty(e);
    const redisReply *r = R(e, e->idx[1]);
    if (fail_on_error(e, r)) return;
    int pairs = want != 'S';
    struct evbuffer *out = evbuffer_new();
    if (!out) abort();
    long long n = 0;
    for (size_t i = 0; i < r->elements; i += pairs ? 2 : 1) {
        const redisReply *el = r->element[i];
        if (!scan_match(e, el->str, el->len)) continue;
        reply_bulk(out, el->str, el->len);
        n++;
        if (pairs && i + 1 < r->elements) {
            reply_bulk(out, r->element[i + 1]->str, r->element[i + 1]->len);
            n++;
        }
    }
    reply_array(e->out, 2);
    reply_bulk(e->out, "0", 1);
    reply_array(e->out, n);
    evbuffer_add_buffer(e->out, out);
    evbuffer_free(out);
    finish(e);
}

static void emu_scan(emu *e)
{
    if (!strcmp(e->cmd->name, "scan")) {
        const char *err = scan_parse(e, 2, 1);
        if (err) return (void)done_error(e, err);
        if (!e->f[0]) return scan_empty(e);
        e->idx[0] = cmdf(e, 1, "KEYS *");
        then(e, scan_keys);
        return;
    }
    /* The cursor is checked first, then the key, then the options, as in 7.0. */
    const char *c = e->argv[2];
    char *end;
    errno = 0;
    strtoull(c, &end, 10);
    if (!e->argvlen[2] || isspace((unsigned char)c[0]) || end != c + e->argvlen[2] || errno == ERANGE)
        return (void)done_error(e, "ERR invalid cursor");
    e->idx[0] = cmdf(e, 1, "TYPE %k", 1);
    if (e->cmd->name[0] == 's') e->idx[1] = cmdf(e, 1, "SMEMBERS %k", 1);
    else if (e->cmd->name[0] == 'h') e->idx[1] = cmdf(e, 1, "HGETALL %k", 1);
    else e->idx[1] = cmdf(e, 1, "ZRANGE %k 0 -1 WITHSCORES", 1);
    then(e, scan_elements);
}

/* OBJECT ENCODING on a store without OBJECT: what the store would say
 * (an unknown command) would confuse; this says what is missing. */
static void emu_object_encoding(emu *e)
{
    int v = store_release();
    out_errorf(e, "ERR command 'object|encoding' is not supported by the store (redis %d.%d.%d)", v / 10000,
               v / 100 % 100, v % 100);
    finish(e);
}

/* ---- the emulations ------------------------------------------------------------------ */

/* Redis 7.0's argument checks, for stores that run the command but check
 * its arguments otherwise (an older release accepts SET k v NX XX, or
 * EXPIRE k 9223372036854775807): such an invocation is emulated, and the
 * emulation gives 7.0's error. */
static const char *set_check(emu *e)
{
    const char *err = parse_string_options(e, 3, 1);
    return err ? err : e->f[5] ? expiry_check(e, "set") : NULL;
}

static const char *setex_check(emu *e)
{
    e->f[5] = !strcmp(e->cmd->name, "psetex") ? X_PX : X_EX;
    e->f[6] = 2;
    return expiry_check(e, e->cmd->name);
}

static const char *hset_check(emu *e)
{
    if (e->argc % 2 == 0) return NULL;
    snprintf(errbuf, sizeof(errbuf), "ERR wrong number of arguments for '%s' command", e->cmd->name);
    return errbuf;
}

typedef struct emulation {
    const char *name;
    step_fn *start;
    const char *(*check)(emu *e); /* NULL: an older store checks as 7.0 does */
} emulation;

static const emulation emulations[] = {
    {"set", emu_set, set_check},
    {"setex", emu_setex, setex_check},
    {"psetex", emu_setex, setex_check},
    {"getdel", emu_getw, NULL},
    {"getset", emu_getw, NULL},
    {"getex", emu_getex, NULL},
    {"unlink", emu_unlink, NULL},
    {"hset", emu_hset, hset_check},
    {"hmset", emu_hset, hset_check},
    {"expire", emu_expire, expire_parse},
    {"pexpire", emu_expire, expire_parse},
    {"expireat", emu_expire, expire_parse},
    {"pexpireat", emu_expire, expire_parse},
    {"ttl", emu_ttl, NULL},
    {"pttl", emu_ttl, NULL},
    {"persist", emu_persist, NULL},
    {"lmove", emu_lmove, NULL},
    {"rpoplpush", emu_lmove, NULL},
    {"lpop", emu_pop, NULL},
    {"rpop", emu_pop, NULL},
    {"lpos", emu_lpos, lpos_parse},
    {"smismember", emu_smismember, NULL},
    {"sintercard", emu_sintercard, NULL},
    {"zadd", emu_zadd, zadd_parse},
    {"copy", emu_copy, NULL},
    {"zrange", emu_zrange, zrange_parse},
    {"lmpop", emu_mpop, NULL},
    {"zmpop", emu_mpop, NULL},
    {"scan", emu_scan, NULL},
    {"sscan", emu_scan, NULL},
    {"hscan", emu_scan, NULL},
    {"zscan", emu_scan, NULL},
    {"object|encoding", emu_object_encoding, NULL},
    {"exists", emu_exists, NULL},
    {"lpushx", emu_pushx, NULL},
    {"rpushx", emu_pushx, NULL},
    {"spop", emu_set_members, set_members_check},
    {"srandmember", emu_set_members, set_members_check},
    {"flushall", emu_flush, flush_check},
    {"flushdb", emu_flush, flush_check},
    {"rename", emu_rename, rename_check},
    {"move", emu_move, move_check},
    {"renamenx", emu_rename, rename_check},
};

static const emulation *find_emulation(const char *name)
{
    for (size_t i = 0; i < sizeof(emulations) / sizeof(emulations[0]); i++)
        if (!strcmp(emulations[i].name, name)) return &emulations[i];
    return NULL;
}

/* Only Redis stores: memcached's backend answers these commands itself. */
static int store_is_redis(void) { return server.backend && server.backend->has_transactions && server.backend->has_dedicated; }

/* Whether this invocation needs its emulation on this store. */
static int needs_emulation(const emulation *em, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (forced(cmd->name)) return 1;
    int v = store_release();
    if (!v) return 0;
    if (release_needed(cmd->name, argc, argv, argvlen) > v) return 1;
    /* Native whole seconds would leave a deadline kept for the key stale:
     * the emulation sets the new one. */
    if (v < V(2, 6, 0) && (!strcmp(cmd->name, "expire") || !strcmp(cmd->name, "expireat") ||
                           !strcmp(cmd->name, "setex")))
        return 1;
    if (v < V(7, 0, 0) && em->check) {
        emu t;
        memset(&t, 0, sizeof(t));
        t.cmd = cmd;
        t.argc = argc;
        t.argv = argv;
        t.argvlen = argvlen;
        return em->check(&t) != NULL;
    }
    return 0;
}

/* ---- exact deadlines on stores with whole seconds -------------------------------------
 * A command that touches a key whose deadline has passed runs as an
 * emulation: the key is deleted first (if the store still has a time to
 * live on it), then the command runs as it is. RENAME and MOVE carry the
 * deadline with the key (their emulations); the FLUSH commands and SWAPDB
 * make every deadline void, which can only let a key live to its
 * rounded-up second, never end it early. Blocking commands are left alone
 * (they would wait holding locks). */
static int moves_databases(const char *name)
{
    return !strcmp(name, "flushdb") || !strcmp(name, "flushall") || !strcmp(name, "swapdb");
}
static int lists_keys(const char *name)
{
    return !strcmp(name, "keys") || !strcmp(name, "scan") || !strcmp(name, "randomkey") || !strcmp(name, "dbsize");
}

static int deadlines_touched(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen)
{
    (void)db;
    if (!expiry_deadline_count() || !seconds_only() || (cmd->flags & CMD_BLOCKING)) return 0;
    if (moves_databases(cmd->name)) return 1;
    long long now = now_ms();
    if (lists_keys(cmd->name)) return expiry_deadline_any_due(now);
    if (!cmd->key_spec_count && !cmd->getkeys) return 0;
    int keys[64];
    int n = command_get_keys(cmd, argc, argv, argvlen, keys, NULL, 64);
    for (int i = 0; i < n && i < 64; i++) {
        long long at = expiry_deadline_earliest(argv[keys[i]], argvlen[keys[i]]);
        if (at && at <= now) return 1;
    }
    return 0;
}

/* The keys past their deadline, each checked with TTL before it is deleted. */
typedef struct due_check {
    int db, conn;
    unsigned long long session;
    char **due;
    size_t *duelen;
    int ndue, capdue, answered;
    long long *ttl;
    prestep_done_fn *done;
    void *ctx;
} due_check;

static void due_add(void *ctx, const char *key, size_t len)
{
    due_check *d = ctx;
    if (d->ndue == d->capdue) {
        d->capdue = d->capdue ? d->capdue * 2 : 4;
        d->due = realloc(d->due, sizeof(*d->due) * (size_t)d->capdue);
        d->duelen = realloc(d->duelen, sizeof(*d->duelen) * (size_t)d->capdue);
        if (!d->due || !d->duelen) abort();
    }
    char *k = malloc(len ? len : 1);
    if (!k) abort();
    memcpy(k, key, len);
    d->due[d->ndue] = k;
    d->duelen[d->ndue++] = len;
}

static void due_check_free(due_check *d)
{
    for (int i = 0; i < d->ndue; i++) free(d->due[i]);
    free(d->due);
    free(d->duelen);
    free(d->ttl);
    free(d);
}

/* The store's TTL of each key past its deadline has come: a key that still
 * has one is the key the deadline was kept for, and is deleted (on the
 * command's connection, so before the command). */
typedef struct due_ref {
    due_check *d;
    int i;
} due_ref;

static void due_answered(due_check *d, int i, long long ttl)
{
    d->ttl[i] = ttl;
    if (++d->answered < d->ndue) return;
    const char *err = NULL;
    for (int k = 0; k < d->ndue; k++) {
        if (d->ttl[k] == -3 && !err) err = backend_error(server.backend);
        if (d->ttl[k] >= 0) {
            char *v[2] = {"DEL", d->due[k]};
            size_t l[2] = {3, d->duelen[k]};
            backend_send_for(server.backend, d->conn, d->db, d->session, 2, v, l, BACKEND_PARSED, NULL, NULL);
        }
        expiry_deadline_drop(d->db, d->due[k], d->duelen[k]);
    }
    prestep_done_fn *done = d->done;
    void *dctx = d->ctx;
    char errbuf[256];
    if (err) snprintf(errbuf, sizeof(errbuf), "%s", err);
    due_check_free(d);
    done(dctx, err ? errbuf : NULL);
}

static void due_ttl_cb(void *ctx, const backend_reply *r)
{
    due_ref *ref = ctx;
    long long ttl = -3; /* -3: no answer */
    if (!r->error && r->parsed && r->parsed->type == REDIS_REPLY_INTEGER) ttl = r->parsed->integer;
    due_check *d = ref->d;
    int i = ref->i;
    free(ref);
    due_answered(d, i, ttl);
}

static void deadlines_run(const prestep_call *call, prestep_done_fn *done, void *ctx)
{
    due_check *d = calloc(1, sizeof(*d));
    if (!d) abort();
    d->db = call->db;
    d->conn = call->conn;
    d->session = call->session;
    d->done = done;
    d->ctx = ctx;
    const char *name = call->cmd->name;
    long long now = now_ms();
    if (moves_databases(name)) {
        expiry_deadline_drop_all();
    } else if (lists_keys(name)) {
        expiry_deadline_each_due(call->db, now, due_add, d);
    } else {
        int keys[64];
        int n = command_get_keys(call->cmd, call->argc, call->argv, call->argvlen, keys, NULL, 64);
        for (int i = 0; i < n && i < 64; i++) {
            const char *k = call->argv[keys[i]];
            size_t len = call->argvlen[keys[i]];
            long long at;
            if (expiry_deadline_get(call->db, k, len, &at) && at <= now) due_add(d, k, len);
        }
    }
    if (!d->ndue) {
        due_check_free(d);
        done(ctx, NULL);
        return;
    }
    d->ttl = calloc((size_t)d->ndue, sizeof(*d->ttl));
    if (!d->ttl) abort();
    int failed_from = d->ndue;
    for (int i = 0; i < d->ndue; i++) {
        char *v[2] = {"TTL", d->due[i]};
        size_t l[2] = {3, d->duelen[i]};
        due_ref *ref = malloc(sizeof(*ref));
        if (!ref) abort();
        ref->d = d;
        ref->i = i;
        if (backend_send_for(server.backend, d->conn, d->db, d->session, 2, v, l, BACKEND_PARSED, due_ttl_cb, ref) !=
            0) {
            free(ref);
            failed_from = i;
            break;
        }
    }
    /* What went out still answers; the rest count as unanswered. */
    for (int i = failed_from, n = d->ndue; i < n; i++) due_answered(d, i, -3);
}

static const key_prestep deadlines_prestep = {"expiry-deadlines", deadlines_touched, deadlines_run};

void emulation_init(void) { key_prestep_register(&deadlines_prestep); }

int emulation_wanted(const command_def *cmd, int db, int argc, char **argv, size_t *argvlen)
{
    if (!cmd) return 0;
    if (key_presteps_wanted(cmd, db, argc, argv, argvlen)) return 1;
    /* Every relayed command asks: a current or unknown store costs one test. */
    if ((!config.store_emulate || !config.store_emulate[0]) &&
        (!server.backend || !server.backend->store_version || server.backend->store_version >= V(7, 0, 0)))
        return 0;
    if (!store_is_redis()) return 0;
    const emulation *em = find_emulation(cmd->name);
    return em && needs_emulation(em, cmd, argc, argv, argvlen);
}

/* OBJECT ENCODING's entry only words the refusal: it does not work. */
int emulation_emulates(const command_def *cmd)
{
    return cmd && store_is_redis() && find_emulation(cmd->name) && strcmp(cmd->name, "object|encoding");
}

/* The invocation itself: its emulation, or as it is. */
static void emu_body(emu *e)
{
    const emulation *em = find_emulation(e->cmd->name);
    if (em && needs_emulation(em, e->cmd, e->argc, e->argv, e->argvlen)) {
        em->start(e);
        return;
    }
    args a = {0};
    for (int i = 0; i < e->argc; i++) a_arg(&a, e, i);
    e->idx[0] = emu_send(e, &a, 1);
    then(e, passthrough);
}

/* A blocking command's keys are ready: it blocks on a connection of its own
 * as any other does (the client stayed blocked meanwhile, so the command
 * is still the one it is reading). */
static void blocking_presteps_done(emu *e, const char *error)
{
    if (e->locks) lock_set_release(e->locks);
    e->locks = NULL;
    client *c = e->c;
    if (c && error) {
        reply_slot *s = client_slot_add(c);
        reply_error_uncounted(s->buf, error);
        client_slot_done(s);
        client_unblock(c);
    } else if (c) {
        dispatch_blocking_command(c, e->cmd, e->argc, e->argv, e->argvlen);
    }
    emu_free(e);
}

static void presteps_done(void *ctx, const char *error)
{
    emu *e = ctx;
    if (e->then_block) {
        blocking_presteps_done(e, error);
        return;
    }
    if (error) {
        reply_error_uncounted(e->out, error);
        finish(e);
        return;
    }
    emu_body(e);
}

/* What must happen to the keys first (key_presteps.h), then the command. */
static void emu_start(emu *e)
{
    if (!key_presteps_wanted(e->cmd, e->db, e->argc, e->argv, e->argvlen)) {
        emu_body(e);
        return;
    }
    prestep_call call = {e->cmd, e->argc, e->argv, e->argvlen, e->db, e->conn, e->session};
    key_presteps_run(&call, presteps_done, e);
}

void emulation_run_held(const command_def *cmd, int argc, char **argv, size_t *argvlen, int db, int conn,
                        unsigned long long session, emulation_done_fn *done, void *ctx)
{
    emu *e = emu_new(cmd, argc, argv, argvlen);
    e->db = db;
    e->conn = conn;
    e->session = session;
    e->done = done;
    e->done_ctx = ctx;
    if (conn < 0 && !(e->store_err = strdup(backend_error(server.backend)))) abort();
    if (e->store_err) finish_store_error(e);
    else emu_start(e);
}

static void emu_lock_granted(lock_set *ls, void *ctx)
{
    emu *e = ctx;
    (void)ls;
    if (e->c) e->conn = client_shared_conn(e->c);
    else e->conn = backend_pick(server.backend, (unsigned)e->session);
    if (e->conn < 0) {
        if (e->then_block) {
            blocking_presteps_done(e, backend_error(server.backend));
            return;
        }
        if (!(e->store_err = strdup(backend_error(server.backend)))) abort();
        finish_store_error(e);
        return;
    }
    emu_start(e);
}

int emulation_dispatch(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (migration_keyspace_dispatch(c, cmd, argc, argv, argvlen)) return 1;
    if (!emulation_wanted(cmd, c->db, argc, argv, argvlen)) return 0;
    emu *e = emu_new(cmd, argc, argv, argvlen);
    e->c = c;
    e->db = c->db;
    e->session = c->id;
    const emulation *em = find_emulation(cmd->name);
    if ((cmd->flags & CMD_BLOCKING) && !(store_is_redis() && em && needs_emulation(em, cmd, argc, argv, argvlen))) {
        /* Only its keys need work first: that is done under their locks,
         * then it blocks as usual, holding none (a wait holds no lock). */
        e->then_block = 1;
        lock_set *ls = lock_set_new(LOCK_SCRIPT_EXCL, emu_lock_granted, e);
        int keys[64];
        int n = command_get_keys(cmd, argc, argv, argvlen, keys, NULL, 64);
        if (n < 0 || n > 64) lock_set_add_keyspace(ls);
        else
            for (int i = 0; i < n; i++) lock_set_add_key(ls, c->db, argv[keys[i]], argvlen[keys[i]]);
        lock_set_set_written(ls, 1);
        e->locks = ls;
        client_block(c);
        if (lock_set_acquire(ls, 0) == LOCK_GRANTED) emu_lock_granted(ls, e);
        return 1;
    }
    /* The lock set a script on these keys would take: no other script,
     * transaction or plain command sees the steps half done. */
    /* may delete or move keys first */
    int writes = (cmd->flags & CMD_WRITE) || key_presteps_wanted(cmd, c->db, argc, argv, argvlen);
    lock_set *ls = lock_set_new(writes ? LOCK_SCRIPT_EXCL : LOCK_SCRIPT_RO, emu_lock_granted, e);
    int keys[64];
    int n = (cmd->key_spec_count || cmd->getkeys) ? command_get_keys(cmd, argc, argv, argvlen, keys, NULL, 64) : 0;
    if (n < 0 || n > 64 || command_is_keyspace_wide(cmd)) lock_set_add_keyspace(ls);
    else
        for (int i = 0; i < n; i++) lock_set_add_key(ls, c->db, argv[keys[i]], argvlen[keys[i]]);
    if (!strcmp(cmd->name, "copy")) {
        /* COPY ... DB n: the destination lives in that database. */
        for (int j = 3; j + 1 < argc; j++) {
            long long db;
            if (!strcasecmp(argv[j], "db") && string_to_ll(argv[j + 1], argvlen[j + 1], &db) && db >= 0 &&
                db < config.databases)
                lock_set_add_key(ls, (int)db, argv[2], argvlen[2]);
        }
    }
    if (writes) lock_set_set_written(ls, 1); /* WATCH by versions sees the write */
    e->locks = ls;
    e->tracked = tracking_write_begin(c->id, cmd, argc, argv, argvlen);
    e->slot = client_slot_add(c);
    client_block(c);
    int rc = lock_set_acquire(ls, 1);
    if (rc == LOCK_BUSY) {
        reply_error_uncounted(e->out, busy_error(lock_set_busy_kind(ls)));
        finish(e);
        return 1;
    }
    if (rc == LOCK_GRANTED) emu_lock_granted(ls, e);
    return 1;
}

void emulation_shutdown(void)
{
    /* What the failing store answered is done; these still waited for locks. */
    while (emus) {
        emu *e = emus;
        if (e->locks) lock_set_release(e->locks);
        e->locks = NULL;
        if (e->slot) client_slot_done(e->slot);
        emu_free(e);
    }
}

void emulation_client_gone(client *c)
{
    for (emu *e = emus; e; e = e->next)
        if (e->c == c) e->c = NULL;
}
