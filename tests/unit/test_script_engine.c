/* Script engine tests. Differential: every script runs on a real
 * redis-server 7.0 (EVAL, the oracle) and on the engine, whose redis.call
 * goes to the same server; the raw reply bytes must be identical. Plus the
 * engine's own duties: many suspended runs, kill, memory limit, time slices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "lua/script_engine.h"

/* ---- a raw RESP connection ------------------------------------------------ */

typedef struct conn {
    int fd;
    char *buf;
    size_t len, cap, pos;
} conn;

static int conn_open(conn *c, int port) {
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

static void conn_close(conn *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static void conn_send(conn *c, int argc, const char **argv, const size_t *lens) {
    size_t cap = 64;
    for (int i = 0; i < argc; i++) cap += lens[i] + 32;
    char *out = malloc(cap);
    size_t n = (size_t)sprintf(out, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        n += (size_t)sprintf(out + n, "$%zu\r\n", lens[i]);
        memcpy(out + n, argv[i], lens[i]);
        n += lens[i];
        out[n++] = '\r';
        out[n++] = '\n';
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(c->fd, out + off, n - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    free(out);
}

static int conn_fill(conn *c) {
    if (c->pos > 0 && c->pos == c->len) c->pos = c->len = 0;
    if (c->len + 65536 > c->cap) {
        c->cap = (c->len + 65536) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (r <= 0) return -1;
    c->len += (size_t)r;
    return 0;
}

/* Length of one complete reply at s (0: incomplete). Iterative: replies can
 * nest thousands deep. */
static size_t resp_complete(const char *s, size_t len) {
    size_t p = 0;
    long pending = 1;
    while (pending > 0) {
        if (p >= len) return 0;
        char t = s[p];
        const char *nl = memmem(s + p, len - p, "\r\n", 2);
        if (!nl) return 0;
        long long n = strtoll(s + p + 1, NULL, 10);
        size_t after = (size_t)(nl - s) + 2;
        pending--;
        switch (t) {
        case '$':
        case '=':
        case '!':
            if (n >= 0) {
                if (after + (size_t)n + 2 > len) return 0;
                after += (size_t)n + 2;
            }
            break;
        case '*':
        case '~':
        case '>':
            if (n > 0) pending += n;
            break;
        case '%': pending += 2 * n; break;
        case '|': pending += 2 * n + 1; break;
        default: break;
        }
        p = after;
    }
    return p;
}

/* Read one reply; returns a malloc'd copy. */
static char *conn_read(conn *c, size_t *outlen) {
    for (;;) {
        size_t n = resp_complete(c->buf + c->pos, c->len - c->pos);
        if (n) {
            char *r = malloc(n + 1);
            memcpy(r, c->buf + c->pos, n);
            r[n] = '\0';
            c->pos += n;
            *outlen = n;
            return r;
        }
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        if (conn_fill(c) != 0) {
            *outlen = 0;
            return strdup("");
        }
    }
}

static char *conn_cmd(conn *c, size_t *outlen, int argc, const char **argv) {
    size_t lens[64];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    conn_send(c, argc, argv, lens);
    return conn_read(c, outlen);
}

static void conn_cmd0(conn *c, int argc, const char **argv) {
    size_t l;
    free(conn_cmd(c, &l, argc, argv));
}

/* ---- the server ------------------------------------------------------------ */

static pid_t server_pid;
static int server_port;
static conn oracle;         /* EVAL on the real server */
static conn store2, store3; /* the engine's store, RESP2 and RESP3 */
static redisContext *store_hiredis;

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    int p = ntohs(a.sin_port);
    close(fd);
    return p;
}

static int start_server(void) {
    server_port = free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", server_port);
    server_pid = fork();
    if (server_pid == 0) {
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (conn_open(&oracle, server_port) == 0) break;
        usleep(20000);
    }
    if (oracle.fd < 0) return -1;
    if (conn_open(&store2, server_port) != 0 || conn_open(&store3, server_port) != 0) return -1;
    const char *hello[] = {"HELLO", "3"};
    conn_cmd0(&store3, 2, hello);
    store_hiredis = redisConnect("127.0.0.1", server_port);
    if (!store_hiredis || store_hiredis->err) return -1;
    return 0;
}

static void stop_server(void) {
    conn_close(&oracle);
    conn_close(&store2);
    conn_close(&store3);
    if (store_hiredis) redisFree(store_hiredis);
    store_hiredis = NULL;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    server_pid = 0;
}

/* ---- the test host ---------------------------------------------------------- */

typedef struct cmdinfo {
    char name[64];
    int known, arity, write, noscript;
    struct cmdinfo *next;
} cmdinfo;

static cmdinfo *cmdinfos;

static cmdinfo *lookup_cmd(const char *name, size_t len) {
    char low[64];
    if (len >= sizeof(low)) len = sizeof(low) - 1;
    for (size_t i = 0; i < len; i++) low[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    low[len] = '\0';
    for (cmdinfo *c = cmdinfos; c; c = c->next)
        if (strcmp(c->name, low) == 0) return c;
    cmdinfo *c = calloc(1, sizeof(*c));
    strcpy(c->name, low);
    redisReply *r = redisCommand(store_hiredis, "COMMAND INFO %s", low);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY) {
        redisReply *i = r->element[0];
        c->known = 1;
        c->arity = (int)i->element[1]->integer;
        for (size_t k = 0; k < i->element[2]->elements; k++) {
            const char *f = i->element[2]->element[k]->str;
            if (strcmp(f, "write") == 0) c->write = 1;
            if (strcmp(f, "noscript") == 0) c->noscript = 1;
        }
    }
    if (r) freeReplyObject(r);
    c->next = cmdinfos;
    cmdinfos = c;
    return c;
}

typedef struct pending {
    script_run *run;
    int argc;
    char **argv;
    size_t *lens;
    int how; /* 0 raw, 1 hiredis */
    struct pending *next;
} pending;

typedef struct result {
    int done;
    char *reply;
    size_t len;
} result;

static struct {
    unsigned long calls, yields;
    pending *queue, *tail;
    script_run *yielded[4096];
    int nyielded;
    int defer_all;  /* never answer inside call() */
    int hold;       /* keep deferred calls queued until released */
    char lastlog[256];
    int lastlevel;
} H;

static void execute(script_run *run, int argc, char **argv, size_t *lens, int how) {
    if (how == 1 && script_run_resp(run) == 2) {
        redisReply *r = redisCommandArgv(store_hiredis, argc, (const char **)argv, lens);
        script_run_reply(run, r);
        freeReplyObject(r);
        return;
    }
    conn *c = script_run_resp(run) == 3 ? &store3 : &store2;
    conn_send(c, argc, (const char **)argv, lens);
    size_t l;
    char *raw = conn_read(c, &l);
    script_run_reply_raw(run, raw, l);
    free(raw);
}

/* Redis's checks in scriptCall, from COMMAND INFO. Returns 1 if answered. */
static int check_command(script_run *run, int argc, char **argv, size_t *lens) {
    cmdinfo *ci = lookup_cmd(argv[0], lens[0]);
    if (!ci->known) {
        script_run_reply_error(run, "ERR Unknown Redis command called from script");
        return 1;
    }
    if ((ci->arity > 0 && argc != ci->arity) || argc < -ci->arity) {
        script_run_reply_error(run, "ERR Wrong number of args calling Redis command from script");
        return 1;
    }
    if (ci->noscript) {
        script_run_reply_error(run, "ERR This Redis command is not allowed from script");
        return 1;
    }
    if (ci->write && ((script_run_flags(run) & SCRIPT_RUN_RO) || (script_run_script_flags(run) & SCRIPT_FLAG_NO_WRITES))) {
        script_run_reply_error(run, "ERR Write commands are not allowed from read-only scripts.");
        return 1;
    }
    if (ci->write) script_run_mark_written(run);
    return 0;
}

static void host_call(void *ctx, script_run *run, int argc, char **argv, size_t *lens) {
    unsigned long k = H.calls++;
    if (check_command(run, argc, argv, lens)) return;
    if (!H.defer_all && k % 3 == 0) {
        execute(run, argc, argv, lens, 0);
        return;
    }
    pending *p = calloc(1, sizeof(*p));
    p->run = run;
    p->argc = argc;
    p->argv = calloc((size_t)argc, sizeof(char *));
    p->lens = calloc((size_t)argc, sizeof(size_t));
    for (int i = 0; i < argc; i++) {
        p->argv[i] = malloc(lens[i] + 1);
        memcpy(p->argv[i], argv[i], lens[i]);
        p->lens[i] = lens[i];
    }
    p->how = (int)(k % 3 == 2);
    if (H.tail) H.tail->next = p;
    else H.queue = p;
    H.tail = p;
}

static void host_yield(void *ctx, script_run *run) {
    H.yields++;
    H.yielded[H.nyielded++] = run;
}

static void host_done(void *ctx, script_run *run, const char *reply, size_t len) {
    result *r = script_run_userdata(run);
    if (!r) return;
    r->done = 1;
    r->reply = malloc(len + 1);
    memcpy(r->reply, reply, len);
    r->reply[len] = '\0';
    r->len = len;
}

static void host_log(void *ctx, int level, const char *msg, size_t len) {
    H.lastlevel = level;
    snprintf(H.lastlog, sizeof(H.lastlog), "%.*s", (int)len, msg);
}

static int host_acl(void *ctx, script_run *run, int argc, char **argv, size_t *lens) {
    return lookup_cmd(argv[0], lens[0])->known ? 1 : -1;
}

static const script_host test_host = {host_call, host_yield, host_done, host_log, host_acl, NULL};

static void pending_free(pending *p) {
    for (int i = 0; i < p->argc; i++) free(p->argv[i]);
    free(p->argv);
    free(p->lens);
    free(p);
}

/* One turn of the test's event loop. Returns 0 when there was nothing to do. */
static int loop_once(void) {
    if (H.queue) {
        pending *p = H.queue;
        H.queue = p->next;
        if (!H.queue) H.tail = NULL;
        execute(p->run, p->argc, p->argv, p->lens, p->how);
        pending_free(p);
        return 1;
    }
    if (H.nyielded) {
        script_run *r = H.yielded[0];
        memmove(H.yielded, H.yielded + 1, sizeof(H.yielded[0]) * (size_t)--H.nyielded);
        script_run_continue(r);
        return 1;
    }
    return 0;
}

static script_engine *E;

/* Run a script body on the engine; returns the reply (malloc'd). */
static char *engine_eval(const char *body, size_t bodylen, int numkeys, int nargs, const char *const *kv, int run_flags,
                         size_t *outlen) {
    char err[1024];
    const script *s = script_engine_load(E, body, bodylen, err, sizeof(err));
    if (!s) {
        char *r = malloc(strlen(err) + 4);
        *outlen = (size_t)sprintf(r, "-%s\r\n", err);
        return r;
    }
    if ((run_flags & SCRIPT_RUN_RO) && !(script_flags(s) & (SCRIPT_FLAG_EVAL_COMPAT | SCRIPT_FLAG_NO_WRITES))) {
        static const char e[] = "-ERR Can not execute a script with write flag using *_ro command.\r\n";
        *outlen = sizeof(e) - 1;
        return strdup(e);
    }
    result res = {0};
    size_t lens[32];
    for (int i = 0; i < numkeys + nargs; i++) lens[i] = strlen(kv[i]);
    script_run_start(E, s, numkeys, (char **)kv, lens, nargs, (char **)kv + numkeys, lens + numkeys, run_flags, &res);
    while (!res.done && loop_once()) {
    }
    assert_true(res.done);
    *outlen = res.len;
    return res.reply;
}

static char *oracle_eval(const char *cmd, const char *body, size_t bodylen, int numkeys, int nargs, const char *const *kv,
                         size_t *outlen) {
    const char *argv[40];
    size_t lens[40];
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", numkeys);
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    argv[1] = body;
    lens[1] = bodylen;
    argv[2] = nk;
    lens[2] = strlen(nk);
    for (int i = 0; i < numkeys + nargs; i++) {
        argv[3 + i] = kv[i];
        lens[3 + i] = strlen(kv[i]);
    }
    conn_send(&oracle, 3 + numkeys + nargs, argv, lens);
    return conn_read(&oracle, outlen);
}

static void flushall(void) {
    const char *f[] = {"FLUSHALL"};
    conn_cmd0(&oracle, 1, f);
}

static void show(const char *label, const char *s, size_t len) {
    fprintf(stderr, "  %s: \"", label);
    size_t lim = len > 600 ? 600 : len;
    for (size_t i = 0; i < lim; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r') fputs("\\r", stderr);
        else if (ch == '\n') fputs("\\n", stderr);
        else if (ch < 32 || ch > 126) fprintf(stderr, "\\x%02x", ch);
        else fputc(ch, stderr);
    }
    fprintf(stderr, "%s\"\n", len > lim ? "..." : "");
}

/* ---- differential cases ------------------------------------------------------ */

typedef struct dcase {
    const char *body;
    int numkeys;
    const char *kv[8];
    int ro; /* EVAL_RO */
    const char *setup; /* a script run on both sides first (EVAL, no keys) */
} dcase;

#define C(b) {b, 0, {NULL}, 0, NULL}
#define CRO(b) {b, 0, {NULL}, 1, NULL}
#define CK(b, nk, ...) {b, nk, __VA_ARGS__, 0, NULL}
static const dcase cases[] = {
    /* conversions: Lua -> RESP */
    C("return 1"),
    C("return -42"),
    C("return 3.99"),
    C("return -3.99"),
    C("return 9007199254740993"),
    C("return 1e30"),
    C("return 1/0"),
    C("return 0/0"),
    C("return 'hello'"),
    C("return ''"),
    C("return 'a\\0b'"),
    C("return true"),
    C("return false"),
    C("return nil"),
    C("return"),
    C("return function() end"),
    C("return {1,2,nil,4}"),
    C("return {1,{2,{3,'x'}},true,false}"),
    C("return {}"),
    C("return {ok='fine'}"),
    C("return {ok='a\\r\\nb'}"),
    C("return {err='bad'}"),
    C("return {err='-bad'}"),
    C("return {err='\\nab\\n'}"),
    C("return {err=''}"),
    C("return {ok=1}"),
    C("return {err=1}"),
    C("return {err=1, ok='x'}"),
    C("return {double=1.5}"),
    C("return {double=0.1}"),
    C("return {double=1/0}"),
    C("return {map={a=1}}"),
    C("return {set={a=true}}"),
    C("return {big_number='123'}"),
    C("return {verbatim_string={format='txt', string='hi'}}"),
    C("return {1, {err='x'}, {ok='y'}, 3}"),
    C("return {1,2,3,x=5}"),
    C("local t = {} for i=1,10000 do t = {t} end return t"),
    C("local t = {} for i=1,500 do t[i]=i*1.5 end return t"),
    C("return redis.error_reply('bad')"),
    C("return redis.error_reply('-bad')"),
    C("return redis.error_reply('MY bad')"),
    C("return redis.error_reply('NOSPACE')"),
    C("return redis.error_reply('')"),
    C("return redis.error_reply('a\\r\\nb c')"),
    C("return redis.error_reply(1)"),
    C("return redis.error_reply()"),
    C("return redis.status_reply('fine')"),
    C("return redis.status_reply(1)"),
    C("local r = redis.error_reply('x') local t={} for k in pairs(r) do t[#t+1]=k end return t"),
    /* conversions: replies -> Lua */
    C("return redis.call('set','k','v')"),
    C("redis.call('set','k','v') return redis.call('get','k')"),
    C("return redis.call('get','nokey')"),
    C("return type(redis.call('get','nokey'))"),
    C("return redis.call('incr','n')"),
    C("return type(redis.call('incr','n'))"),
    C("return redis.call('ping')"),
    C("local r = redis.call('ping') return r.ok"),
    C("redis.call('rpush','l','a','b','c') return redis.call('lrange','l',0,-1)"),
    C("return redis.call('blpop','nolist',1) == false"),
    C("redis.call('hset','h','a','1','b','2') return redis.call('hgetall','h')"),
    C("redis.call('zadd','z',1,'a',2.5,'b') return redis.call('zrange','z',0,-1,'withscores')"),
    C("redis.call('set','k',1.5) return redis.call('get','k')"),
    C("redis.call('set','k',0.1) return redis.call('get','k')"),
    C("redis.call('set','k',1e20) return redis.call('get','k')"),
    C("return redis.call('echo', 12345678901234)"),
    C("return redis.call('echo', -0.0)"),
    C("return redis.call('echo', 1/0)"),
    C("return redis.call('ECHO', 'x')"),
    C("return redis.call('echo', 'a\\0b')"),
    C("return redis.call('echo', true)"),
    C("return redis.call('echo', nil)"),
    C("return redis.call('echo', {})"),
    C("return redis.call()"),
    C("return redis.pcall()"),
    C("return redis.pcall({})"),
    C("local ok, r = pcall(redis.call) return r"),
    C("return redis.call('nosuch')"),
    C("return redis.pcall('nosuch')"),
    C("return redis.call('incr','a','b')"),
    C("return redis.pcall('set')"),
    C("redis.call('set','s','x') return redis.call('incr','s')"),
    C("redis.call('set','s','x') return redis.pcall('incr','s')"),
    C("redis.call('set','s','x') local r = redis.pcall('incr','s') return r.err"),
    C("redis.call('set','s','x') local r = redis.pcall('incr','s') local t={} for k in pairs(r) do t[#t+1]=k end table.sort(t) return t"),
    C("redis.call('set','s','x') return redis.call('lpush','s','y')"),
    C("return {pcall(redis.call,'nosuch')}"),
    C("local ok,e = pcall(redis.call,'nosuch') return type(e)"),
    C("return redis.call('multi')"),
    C("return redis.pcall('eval','return 1','0')"),
    CK("return redis.call('get', KEYS[1])", 1, {"k1"}),
    CK("return {KEYS[1],KEYS[2],ARGV[1],ARGV[2]}", 2, {"a", "b", "c", "d"}),
    CK("return #KEYS + #ARGV", 1, {"a", "b", "c"}),
    CK("KEYS[1]='x' return KEYS[1]", 1, {"a"}),
    CK("table.insert(KEYS,'z') return KEYS", 1, {"a"}),
    CK("redis.call('set',KEYS[1],ARGV[1]) return redis.call('get',KEYS[1])", 1, {"key", "val"}),
    /* RESP3 */
    C("redis.setresp(3) redis.call('hset','h','a','1') return redis.call('hgetall','h')"),
    C("redis.setresp(3) redis.call('hset','h','a','1') local r = redis.call('hgetall','h') return r.map.a"),
    C("redis.setresp(3) return type(redis.call('get','nokey'))"),
    C("redis.setresp(3) return redis.call('get','nokey')"),
    C("redis.setresp(3) redis.call('sadd','s','m') local r = redis.call('smembers','s') return type(r.set)"),
    C("redis.setresp(3) redis.call('zadd','z',1.5,'a') local r = redis.call('zscore','z','a') return r.double * 2"),
    C("redis.setresp(3) return redis.call('exists','x') == 0"),
    C("redis.setresp(3) return {double=0.1}"),
    C("redis.setresp(3) return true"),
    C("redis.setresp(3) return false"),
    C("redis.setresp(4)"),
    C("redis.setresp()"),
    C("return redis.setresp('3')"),
    C("redis.setresp(3) redis.setresp(2) return type(redis.call('get','nokey'))"),
    /* redis.* */
    C("return redis.sha1hex('')"),
    C("return redis.sha1hex('abc')"),
    C("return redis.sha1hex(1)"),
    C("return redis.sha1hex()"),
    C("return redis.sha1hex({})"),
    C("return redis.log(redis.LOG_WARNING,'hello',1,{})"),
    C("return redis.log(redis.LOG_WARNING)"),
    C("return redis.log('x','y')"),
    C("return redis.log(9,'y')"),
    C("return {redis.LOG_DEBUG,redis.LOG_VERBOSE,redis.LOG_NOTICE,redis.LOG_WARNING}"),
    C("return {redis.REPL_NONE,redis.REPL_AOF,redis.REPL_SLAVE,redis.REPL_REPLICA,redis.REPL_ALL}"),
    C("return redis.set_repl(redis.REPL_ALL)"),
    C("return redis.set_repl(99)"),
    C("return redis.set_repl()"),
    C("return redis.replicate_commands()"),
    C("return redis.breakpoint()"),
    C("return redis.debug('x')"),
    C("return redis.REDIS_VERSION"),
    C("return redis.REDIS_VERSION_NUM"),
    C("return redis.acl_check_cmd('get','x')"),
    C("return redis.acl_check_cmd('nosuch')"),
    C("return redis.acl_check_cmd()"),
    C("return redis.acl_check_cmd('get',{})"),
    C("local t={} for k,v in pairs(redis) do t[#t+1]=k end table.sort(t) return t"),
    /* errors */
    C("error('boom')"),
    C("error('boom',0)"),
    C("error('a\\nb')"),
    C("error({err='MY boom'})"),
    C("error({err='boom'})"),
    C("error({err='a\\r\\nb'})"),
    C("error({err='\\nab\\n'})"),
    C("error({err=''})"),
    C("error({err='x', source='src', line=99})"),
    C("error(nil)"),
    C("error(123)"),
    C("local a = nil; return a.b"),
    C("\nlocal function f()\n  error('deep')\nend\nf()"),
    C("return 1 + {}"),
    C("return #nil"),
    C("local s = 'x' .. {}"),
    C("local function r(n) return r(n+1)+1 end return r(1)"),
    C("local function r(n) return n+r(n+1) end return r(1)"),
    C("local ok,e = pcall(error,{err='X y'}) return e"),
    C("local ok,e = pcall(error,'zz') return e"),
    C("local ok,e = pcall(function() error('zz') end) return e"),
    C("local ok,e = pcall(function() local a = nil; return a.b end) return e"),
    C("local ok,e = xpcall(function() error('zz') end, function(m) return 'H:'..tostring(m) end) return e"),
    C("local ok,e = xpcall(function() redis.call('nosuch') end, function(m) return type(m) end) return e"),
    C("return pcall()"),
    C("return {pcall(error)}"),
    /* compile errors and shebang */
    C("return 1 +"),
    C("return ("),
    C("x = = 1"),
    C("return 1 end"),
    C("return 'abc"),
    C("\n\nlocal x = 1 1"),
    C("\033Lua"),
    C("#!lua\nreturn 1"),
    C("#!lua\r\nreturn 1"),
    C("#!lua flags=no-writes\nreturn redis.call('set','x','1')"),
    C("#!lua flags=no-writes\nreturn redis.pcall('set','x','1')"),
    C("#!lua flags=no-writes\nreturn redis.call('get','x')"),
    C("#!lua flags=no-writes,allow-oom,allow-stale,no-cluster,allow-cross-slot-keys\nreturn 1"),
    C("#!lua flags=bogus\nreturn 1"),
    C("#!lua flags=no-writes,,allow-oom\nreturn 1"),
    C("#!lua flags=\nreturn 1"),
    C("#!lua  flags=no-writes\nreturn 1"),
    C("#!lua \"flags=no-writes\"\nreturn 1"),
    C("#!lua \"flags=no-writes\nreturn 1"),
    C("#!lua foo=bar\nreturn 1"),
    C("#!python\nreturn 1"),
    C("#!\nreturn 1"),
    C("#! lua\nreturn 1"),
    C("#!lua"),
    C("#!lua\nerror('x')"),
    C("#!lua\n\nreturn x"),
    C("#!lua\nreturn 1 +"),
    C("#no shebang\nreturn 1"),
    CRO("return redis.call('set','x','1')"),
    CRO("return redis.pcall('set','x','1')"),
    CRO("return redis.call('get','x')"),
    CRO("#!lua\nreturn redis.call('get','x')"),
    CRO("#!lua flags=no-writes\nreturn redis.call('get','x')"),
    /* sandbox */
    C("return x"),
    C("local x = undefinedvar"),
    C("\n\nreturn x"),
    C("return _G.x"),
    C("return _G[true]"),
    C("return rawget(_G,'x')"),
    C("return type(rawget(_G,'string'))"),
    C("x=1"),
    C("_G.x=1"),
    C("KEYS={} return 1"),
    C("rawset(_G,'x',1) return x"),
    C("setmetatable(_G,nil) return 1"),
    C("return type(getmetatable(_G))"),
    C("local t = getmetatable(_G) t.__index = nil return 1"),
    C("local m=getmetatable('') m.__index=nil return 1"),
    C("return type(getmetatable(''))"),
    C("return type(getmetatable('').__index)"),
    C("return rawequal(string, getmetatable('').__index)"),
    C("return getmetatable(string)"),
    C("local t={} for k in pairs(string) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(math) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(table) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(coroutine) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(cjson) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(bit) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(struct) do t[#t+1]=k end table.sort(t) return t"),
    C("local t={} for k in pairs(cmsgpack) do t[#t+1]=k end table.sort(t) return t"),
    C("return rawget(string,'len') ~= nil"),
    C("string.len=nil"),
    C("string.foo=1"),
    C("cjson.encode=nil"),
    C("redis.call=nil"),
    C("math.random=nil"),
    C("rawset(string,'x',1)"),
    CK("local t={} for k,v in pairs(_G) do t[#t+1]=k end table.sort(t) return t", 1, {"k"}),
    C("local n=0 for k,v in pairs(_G) do n=n+1 end return n"),
    C("return os.clock()"),
    C("return type(os)"),
    C("return type(debug)"),
    C("return type(print)"),
    C("return type(loadfile)"),
    C("return type(dofile)"),
    C("return type(getfenv)"),
    C("return type(setfenv)"),
    C("return type(newproxy)"),
    C("return type(module)"),
    C("return type(require)"),
    C("return type(io)"),
    C("return type(package)"),
    C("return _VERSION"),
    C("return loadstring('return 1')()"),
    C("return {loadstring('\\27Lua')}"),
    C("local a,b = loadstring('\\27Lua') return b"),
    C("local a,b = loadstring(string.dump(function() return 1 end)) return b"),
    C("local a,b = loadstring('return (') return b"),
    C("local f = loadstring('return x') return f()"),
    C("local f = loadstring('y=1') return f()"),
    CK("local f = loadstring('return KEYS[1]') return f()", 1, {"kk"}),
    C("return load(function() return nil end) ~= nil"),
    C("local s = string.dump(function() return 1 end) local a,b = load(function() local x = s s = nil return x end) return b"),
    C("local parts = {'return ', '4', '2'} local i = 0 return load(function() i = i + 1 return parts[i] end)()"),
    C("local t = {} t.x=1 setmetatable(t,{}) return t.x"),
    C("local t = setmetatable({}, {__index=function(t,k) return k..'!' end}) return t.hi"),
    C("return select('#', unpack({1,2,3}))"),
    C("return gcinfo() > 0"),
    C("return collectgarbage('count') > 0"),
    C("return string.format('%5.2f', 3.14159)"),
    C("return tostring(1e15)..' '..tostring(0.1)..' '..tostring(1/3)"),
    C("return tonumber('0x10')"),
    C("return string.rep('x', 2^31)"),
    C("return type(table.getn)"),
    C("return math.huge"),
    C("return math.floor(-3.5)"),
    /* PRNG */
    C("return {math.random(1000000), math.random(1000000), math.random(1000000)}"),
    C("return {math.random(1000000), math.random(10,20), math.random(5)}"),
    C("return tostring(math.random())"),
    C("math.randomseed(5) return {math.random(1000000), math.random(1000000)}"),
    C("math.randomseed(-7) return {math.random(1000000), math.random(1000000)}"),
    C("return {math.random(1000000), math.random(1000000)}"),
    C("return math.random(0)"),
    C("return math.random(3,1)"),
    C("return math.random(1,2,3)"),
    /* libraries */
    C("return cjson.encode({1,2,{a=1}})"),
    C("return cjson.decode('[1,2,{\"a\":1.5}]')[3].a"),
    C("return cjson.encode(cjson.decode('{\"a\":null}'))"),
    C("return cjson.decode('[')"),
    C("return cjson.encode({[1]=1,[3]=3})"),
    C("return cjson.encode('x\\ny')"),
    C("return cjson.decode('\"\\\\u00e9\"')"),
    C("return cmsgpack.pack({1,2,3})"),
    C("return {cmsgpack.unpack(cmsgpack.pack({1,2,'x'}))}"),
    C("return cmsgpack.pack('abc', 1.5, true, {a=1})"),
    C("return struct.pack('>I2', 258)"),
    C("return {struct.unpack('>I2', '\\1\\2')}"),
    C("return struct.pack('<i4d', -2, 1.5)"),
    C("return struct.size('>i4h')"),
    C("return bit.band(0xff, 0x0f)"),
    C("return bit.tohex(255)"),
    C("return bit.bxor(5, 3)"),
    C("return bit.lshift(1, 40)"),
    C("return {bit.tobit(2^32+5), bit.bnot(0), bit.arshift(-16, 2)}"),
    /* redis.call from everywhere */
    C("local t = setmetatable({}, {__index=function(t,k) return redis.call('ping') end}) return t.x"),
    C("local t = setmetatable({}, {__newindex=function(t,k,v) rawset(t,k,redis.call('echo',v)) end}) t.a='z' return t.a"),
    C("local m = setmetatable({}, {__add=function(a,b) return redis.call('incrby','n',5) end}) return m + 1"),
    C("local m = setmetatable({}, {__concat=function(a,b) return redis.call('echo','cc') end}) return m .. 'x'"),
    C("local m = setmetatable({}, {__eq=function(a,b) return redis.call('ping').ok == 'PONG' end}) local n = setmetatable({}, getmetatable(m)) return m == n"),
    C("local m = setmetatable({}, {__call=function(self, x) return redis.call('echo', x) end}) return m('called')"),
    C("local t = {3,1,2} table.sort(t, function(a,b) redis.call('ping') return a<b end) return t"),
    C("local t = {} for i=1,30 do t[i]=(i*7)%31 end table.sort(t, function(a,b) return redis.call('echo', a) + 0 < redis.call('echo', b) + 0 end) return t"),
    C("return (string.gsub('abc','%w',function(c) return redis.call('echo',c..c) end))"),
    C("local function it() local i=0 return function() i=i+1 if i<=3 then return redis.call('echo',tostring(i)) end end end local r={} for v in it() do r[#r+1]=v end return r"),
    C("local ok, v = pcall(function() return redis.call('echo','in') end) return v"),
    C("local ok, v = pcall(redis.call, 'echo', 'direct') return v"),
    C("local ok, v = xpcall(function() return redis.call('echo','in') end, function(e) return e end) return v"),
    C("local ok, v = xpcall(function() redis.call('nosuch') end, function(e) return redis.call('echo', 'handled') end) return v"),
    C("local ok, e = pcall(function() pcall(function() redis.call('incr','a','b') end) return redis.call('echo','after') end) return e"),
    C("return coroutine.wrap(function() coroutine.yield(1) end)()"),
    C("return coroutine.wrap(function() return redis.call('ping') end)()"),
    C("local co = coroutine.create(function(a) local b = coroutine.yield(redis.call('echo', a)) return redis.call('echo', b) end) local _, x = coroutine.resume(co, 'one') local _, y = coroutine.resume(co, 'two') return {x, y}"),
    C("local t = setmetatable({}, {__index=function(t,k) local ok, v = pcall(redis.call, 'echo', k) return v end}) return {t.a, t.b}"),
    C("local s = 0 for i=1,200 do s = s + redis.call('incr','counter') end return s"),
    C("local r = {} for i=1,50 do r[i] = redis.call('echo', string.rep('x', i)) end return #table.concat(r)"),
    C("return tostring(cjson.decode(redis.call('echo', '{\"a\":[1,2]}')).a[2])"),
    C("local t = setmetatable({}, {__lt=function(a,b) return redis.call('echo','1') == '1' end}) return t < t"),
    C("local t = setmetatable({}, {__len=function() return 1 end, __unm=function() return redis.call('echo','neg') end}) return -t"),
    C("local t = setmetatable({}, {__tostring=function() return redis.call('echo','ts') end}) return tostring(t)"),
    C("local words = {} for w in string.gmatch('a b c', '%a') do words[#words+1] = redis.call('echo', w) end return words"),
};

static int n_cases(void) { return (int)(sizeof(cases) / sizeof(cases[0])); }

static void run_setup(const char *setup) {
    if (!setup) return;
    const char *argv[] = {"EVAL", setup, "0"};
    conn_cmd0(&oracle, 3, argv);
}

static void test_diff(void **state) {
    const dcase *c = *state;
    int nkv = 0;
    while (nkv < 8 && c->kv[nkv]) nkv++;
    int nargs = nkv - c->numkeys;
    size_t ol, el;
    flushall();
    run_setup(c->setup);
    char *o = oracle_eval(c->ro ? "EVAL_RO" : "EVAL", c->body, strlen(c->body), c->numkeys, nargs, c->kv, &ol);
    flushall();
    run_setup(c->setup);
    char *e = engine_eval(c->body, strlen(c->body), c->numkeys, nargs, c->kv, c->ro ? SCRIPT_RUN_RO : 0, &el);
    if (ol != el || memcmp(o, e, ol) != 0) {
        fprintf(stderr, "mismatch for script:\n");
        show("script", c->body, strlen(c->body));
        show("redis ", o, ol);
        show("engine", e, el);
    }
    int same = ol == el && memcmp(o, e, ol) == 0;
    free(o);
    free(e);
    assert_true(same);
}

/* ---- the engine's own duties ------------------------------------------------- */

static char *eval_simple(const char *body, size_t *len) { return engine_eval(body, strlen(body), 0, 0, NULL, 0, len); }

static void test_many_suspended(void **state) {
    enum { N = 1200 };
    char err[256];
    const char *body = "return redis.call('incr', KEYS[1]) + #ARGV[1]";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    assert_non_null(s);
    flushall();
    H.defer_all = 1;
    result *res = calloc(N, sizeof(*res));
    char keyb[N][16];
    char argb[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keyb[i], sizeof(keyb[i]), "k%d", i % 7);
        snprintf(argb[i], sizeof(argb[i]), "%d", i);
        char *k = keyb[i], *a = argb[i];
        size_t kl = strlen(k), al = strlen(a);
        script_run *r = script_run_start(E, s, 1, &k, &kl, 1, &a, &al, 0, &res[i]);
        assert_non_null(r); /* suspended in redis.call */
    }
    assert_int_equal(script_engine_running(E), N);
    int queued = 0;
    for (pending *p = H.queue; p; p = p->next) queued++;
    assert_int_equal(queued, N);
    while (loop_once()) {
    }
    H.defer_all = 0;
    assert_int_equal(script_engine_running(E), 0);
    long long total = 0;
    for (int i = 0; i < N; i++) {
        assert_true(res[i].done);
        assert_true(res[i].reply[0] == ':');
        total += atoll(res[i].reply + 1) - (long long)strlen(argb[i]);
        free(res[i].reply);
    }
    /* each key k counts 1..n_k; sums are fixed */
    long long expect = 0;
    for (int k = 0; k < 7; k++) {
        long long n = N / 7 + (k < N % 7);
        expect += n * (n + 1) / 2;
    }
    assert_int_equal(total, expect);
    free(res);
}

static void test_kill_suspended(void **state) {
    char err[256];
    const char *body = "local x = 1\nredis.call('set','killed','1')\nreturn 'not reached'";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    assert_non_null(s);
    H.defer_all = 1;
    result res = {0};
    script_run *r = script_run_start(E, s, 0, NULL, NULL, 0, NULL, NULL, 0, &res);
    assert_non_null(r);
    assert_true(script_run_waiting(r));
    /* drop the queued call: the run is killed while waiting */
    pending *p = H.queue;
    H.queue = H.tail = NULL;
    pending_free(p);
    script_run_kill(r, NULL);
    H.defer_all = 0;
    assert_true(res.done);
    char expect[256];
    snprintf(expect, sizeof(expect),
             "-ERR Script killed by user with SCRIPT KILL... script: %s, on @user_script:2.\r\n", script_sha(s));
    assert_string_equal(res.reply, expect);
    free(res.reply);
    assert_int_equal(script_engine_running(E), 0);

    /* a custom error, e.g. to abort a run before re-running it */
    H.defer_all = 1;
    memset(&res, 0, sizeof(res));
    r = script_run_start(E, s, 0, NULL, NULL, 0, NULL, NULL, 0, &res);
    assert_non_null(r);
    p = H.queue;
    H.queue = H.tail = NULL;
    pending_free(p);
    script_run_kill(r, "ERR aborted");
    H.defer_all = 0;
    assert_string_equal(res.reply, "-ERR aborted\r\n");
    free(res.reply);
}

static void host_call_kill(void *ctx, script_run *run, int argc, char **argv, size_t *lens) {
    script_run_kill(run, NULL);
}

static void test_kill_in_callback(void **state) {
    script_host h = test_host;
    h.call = host_call_kill;
    script_engine *e2 = script_engine_new(&h, NULL);
    char err[256];
    const char *body = "pcall(redis.call, 'get', 'x')\nreturn 'survived'";
    const script *s = script_engine_load(e2, body, strlen(body), err, sizeof(err));
    result res = {0};
    script_run *r = script_run_start(e2, s, 0, NULL, NULL, 0, NULL, NULL, 0, &res);
    assert_null(r);
    assert_true(res.done);
    char expect[256];
    snprintf(expect, sizeof(expect),
             "-ERR Script killed by user with SCRIPT KILL... script: %s, on =[C]:-1.\r\n", script_sha(s));
    assert_string_equal(res.reply, expect);
    free(res.reply);
    script_engine_free(e2);
}

static void test_infinite_loop(void **state) {
    char err[256];
    const char *body = "local i = 0\nwhile true do i = i + 1 end";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    script_engine_set_time_slice(E, 1000);
    result res = {0};
    unsigned long y0 = H.yields;
    script_run *r = script_run_start(E, s, 0, NULL, NULL, 0, NULL, NULL, 0, &res);
    assert_non_null(r);
    assert_int_equal(H.nyielded, 1);
    /* keep it going for a few slices, as an event loop would */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(H.nyielded, 1);
        H.nyielded = 0;
        script_run_continue(r);
    }
    assert_true(H.yields - y0 >= 6);
    assert_true(script_run_cpu_usec(r) >= 5000);
    assert_false(script_run_has_written(r));
    H.nyielded = 0;
    script_run_kill(r, NULL);
    assert_true(res.done);
    char expect[256];
    snprintf(expect, sizeof(expect),
             "-ERR Script killed by user with SCRIPT KILL... script: %s, on @user_script:2.\r\n", script_sha(s));
    assert_string_equal(res.reply, expect);
    free(res.reply);
    script_engine_set_time_slice(E, 2000);
}

static void test_other_runs_while_one_loops(void **state) {
    char err[256];
    const char *loop = "local n = 0 for i = 1, 3000000 do n = n + 1 end return n";
    const script *s = script_engine_load(E, loop, strlen(loop), err, sizeof(err));
    script_engine_set_time_slice(E, 500);
    result big = {0};
    script_run *r = script_run_start(E, s, 0, NULL, NULL, 0, NULL, NULL, 0, &big);
    assert_non_null(r);
    /* while it is parked, a short script runs to completion */
    size_t l;
    H.nyielded = 0;
    char *rep = eval_simple("return redis.call('echo','quick')", &l);
    assert_string_equal(rep, "$5\r\nquick\r\n");
    free(rep);
    script_run_continue(r);
    while (!big.done) {
        assert_true(H.nyielded >= 1);
        H.nyielded = 0;
        script_run_continue(r);
    }
    assert_string_equal(big.reply, ":3000000\r\n");
    free(big.reply);
    script_engine_set_time_slice(E, 2000);
}

/* Calls answered as soon as they are made, from the event-loop side (as
 * the memcached backend answers PING), resume the run each time: the slice
 * counts over those resumes, so the run still yields. */
static void test_slice_counts_across_answers(void **state) {
    char err[256];
    const char *body = "while true do redis.call('ping') end";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    script_engine_set_time_slice(E, 1000);
    H.defer_all = 1;
    H.nyielded = 0;
    result res = {0};
    unsigned long y0 = H.yields;
    script_run *r = script_run_start(E, s, 0, NULL, NULL, 0, NULL, NULL, 0, &res);
    assert_non_null(r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double took = 0;
    while (H.yields == y0 && took < 2.0) {
        assert_true(H.queue != NULL);
        loop_once(); /* answers the call: the run resumes and calls again */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    }
    assert_true(H.yields > y0);
    assert_true(took < 0.5);
    /* continued for a share of a slice, it yields again within it */
    assert_int_equal(H.nyielded, 1);
    H.nyielded = 0;
    while (!H.nyielded) {
        if (H.queue) loop_once();
        else script_run_continue_for(r, 100);
    }
    script_run_kill(r, NULL);
    while (H.queue) {
        pending *p = H.queue;
        H.queue = p->next;
        pending_free(p);
    }
    H.tail = NULL;
    H.nyielded = 0;
    assert_true(res.done);
    free(res.reply);
    H.defer_all = 0;
    script_engine_set_time_slice(E, 2000);
}

static void test_memory_limit(void **state) {
    script_engine *e2 = script_engine_new(&test_host, NULL);
    script_engine_set_memory_limit(e2, 8 << 20);
    script_engine *saved = E;
    E = e2;
    size_t l;
    char *rep = eval_simple("local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end return #t", &l);
    assert_true(strncmp(rep, "-ERR Error running script ", 26) == 0);
    assert_non_null(strstr(rep, "not enough memory"));
    free(rep);
    /* a bomb caught by pcall inside the script */
    rep = eval_simple("local ok, e = pcall(function() local s = 'x' while true do s = s .. s end end) return e", &l);
    assert_string_equal(rep, "$17\r\nnot enough memory\r\n");
    free(rep);
    /* and the engine keeps working */
    rep = eval_simple("return redis.call('echo', 'alive')", &l);
    assert_string_equal(rep, "$5\r\nalive\r\n");
    free(rep);
    assert_true(script_engine_lua_memory(e2) < (8u << 20));
    E = saved;
    script_engine_free(e2);
}

static void test_flush_in_flight(void **state) {
    char err[256];
    const char *body = "return redis.call('echo', ARGV[1])";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    char sha[41];
    memcpy(sha, script_sha(s), 41);
    H.defer_all = 1;
    result res = {0};
    char *a = "still";
    size_t al = 5;
    script_run *r = script_run_start(E, s, 0, NULL, NULL, 1, &a, &al, 0, &res);
    assert_non_null(r);
    script_engine_flush(E);
    assert_int_equal(script_engine_count(E), 0);
    assert_null(script_engine_find(E, sha, 40));
    while (loop_once()) {
    }
    H.defer_all = 0;
    assert_string_equal(res.reply, "$5\r\nstill\r\n");
    free(res.reply);
}

static void test_cache(void **state) {
    char err[256];
    const char *body = "return 'cached'";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(strlen(script_sha(s)), 40);
    char upper[41];
    for (int i = 0; i < 40; i++) upper[i] = (char)toupper((unsigned char)script_sha(s)[i]);
    upper[40] = 0;
    assert_ptr_equal(script_engine_find(E, upper, 40), s);
    assert_ptr_equal(script_engine_load(E, body, strlen(body), err, sizeof(err)), s);
    assert_null(script_engine_find(E, upper, 39));
    assert_int_equal(script_flags(s), SCRIPT_FLAG_EVAL_COMPAT);
    const char *b2 = "#!lua flags=no-writes\nreturn 1";
    const script *s2 = script_engine_load(E, b2, strlen(b2), err, sizeof(err));
    assert_int_equal(script_flags(s2), SCRIPT_FLAG_NO_WRITES);
    assert_true(script_engine_scripts_memory(E) > 0);
    /* SHA1 as SCRIPT LOAD reports it */
    const char *argv[] = {"SCRIPT", "LOAD", body};
    size_t l;
    char *rep = conn_cmd(&oracle, &l, 3, argv);
    assert_memory_equal(rep + 5, script_sha(s), 40);
    free(rep);
}

static void test_log(void **state) {
    size_t l;
    char *rep = eval_simple("redis.log(redis.LOG_NOTICE, 'a', 1, 'b') return 1", &l);
    assert_string_equal(rep, ":1\r\n");
    free(rep);
    assert_int_equal(H.lastlevel, SCRIPT_LOG_NOTICE);
    assert_string_equal(H.lastlog, "a 1 b");
}

static void test_resp3_client(void **state) {
    /* A RESP3 client gets the RESP3 shapes of the reply. */
    static const struct {
        const char *body, *expect;
    } t[] = {
        {"return {map={a=1}}", "%1\r\n$1\r\na\r\n:1\r\n"},
        {"return {set={a=true}}", "~1\r\n$1\r\na\r\n"},
        {"return {double=1.5}", ",1.5\r\n"},
        {"return {big_number='123'}", "(123\r\n"},
        {"return nil", "_\r\n"},
        {"return false", "_\r\n"},
        {"redis.setresp(3) return false", "#f\r\n"},
        {"redis.setresp(3) return true", "#t\r\n"},
        {"return {verbatim_string={format='txt', string='hi'}}", "=6\r\ntxt:hi\r\n"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t l;
        char *rep = engine_eval(t[i].body, strlen(t[i].body), 0, 0, NULL, SCRIPT_RUN_RESP3, &l);
        assert_string_equal(rep, t[i].expect);
        free(rep);
    }
}

/* The same scripts through the RESP3 oracle connection (HELLO 3). */
static const char *const resp3_cases[] = {
    "return {map={a=1}}",
    "return {set={a=true}}",
    "return {double=1.5}",
    "return {big_number='123'}",
    "return nil",
    "return false",
    "redis.setresp(3) return false",
    "redis.setresp(3) return true",
    "redis.setresp(3) redis.call('hset','h','f','v') return redis.call('hgetall','h')",
    "redis.setresp(3) return redis.call('get','nokey')",
};

static void test_resp3_oracle(void **state) {
    conn o3;
    assert_int_equal(conn_open(&o3, server_port), 0);
    const char *hello[] = {"HELLO", "3"};
    conn_cmd0(&o3, 2, hello);
    int bad = 0;
    for (size_t i = 0; i < sizeof(resp3_cases) / sizeof(resp3_cases[0]); i++) {
        const char *b = resp3_cases[i];
        flushall();
        const char *argv[] = {"EVAL", b, "0"};
        size_t ol, el;
        char *o = conn_cmd(&o3, &ol, 3, argv);
        flushall();
        char *e = engine_eval(b, strlen(b), 0, 0, NULL, SCRIPT_RUN_RESP3, &el);
        if (ol != el || memcmp(o, e, ol) != 0) {
            bad++;
            show("script", b, strlen(b));
            show("redis ", o, ol);
            show("engine", e, el);
        }
        free(o);
        free(e);
    }
    conn_close(&o3);
    assert_int_equal(bad, 0);
}

static void test_reply_types(void **state) {
    /* hiredis-shaped RESP3 replies handed over as redisReply */
    H.defer_all = 1;
    char err[256];
    const char *body = "local r = redis.call('ping') if type(r) ~= 'table' then return {type(r), tostring(r)} end "
                       "return {type(r), r.double or r.big_number or r.map.k}";
    const script *s = script_engine_load(E, body, strlen(body), err, sizeof(err));
    struct {
        redisReply r;
        const char *expect;
    } t[4];
    memset(t, 0, sizeof(t));
    t[0].r.type = REDIS_REPLY_DOUBLE;
    t[0].r.str = "2.5";
    t[0].r.len = 3;
    t[0].expect = "*2\r\n$5\r\ntable\r\n:2\r\n";
    t[1].r.type = REDIS_REPLY_BIGNUM;
    t[1].r.str = "12345678901234567890";
    t[1].r.len = 20;
    t[1].expect = "*2\r\n$5\r\ntable\r\n$20\r\n12345678901234567890\r\n";
    t[2].r.type = REDIS_REPLY_BOOL;
    t[2].r.integer = 1;
    t[2].expect = "*2\r\n$7\r\nboolean\r\n$4\r\ntrue\r\n";
    redisReply k = {.type = REDIS_REPLY_STRING, .str = "k", .len = 1};
    redisReply v = {.type = REDIS_REPLY_STRING, .str = "v", .len = 1};
    redisReply *kv[2] = {&k, &v};
    t[3].r.type = REDIS_REPLY_MAP;
    t[3].r.elements = 2;
    t[3].r.element = kv;
    t[3].expect = "*2\r\n$5\r\ntable\r\n$1\r\nv\r\n";
    for (int i = 0; i < 4; i++) {
        result res = {0};
        script_run *r = script_run_start(E, s, 0, NULL, NULL, 0, NULL, NULL, 0, &res);
        assert_non_null(r);
        pending *p = H.queue;
        H.queue = H.tail = NULL;
        pending_free(p);
        script_run_reply(r, &t[i].r);
        assert_true(res.done);
        assert_string_equal(res.reply, t[i].expect);
        free(res.reply);
    }
    H.defer_all = 0;
}

static int group_setup(void **state) {
    if (start_server() != 0) return -1;
    E = script_engine_new(&test_host, NULL);
    return E ? 0 : -1;
}

static int group_teardown(void **state) {
    script_engine_free(E);
    E = NULL;
    while (cmdinfos) {
        cmdinfo *n = cmdinfos->next;
        free(cmdinfos);
        cmdinfos = n;
    }
    stop_server();
    return 0;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    static const struct CMUnitTest own[] = {
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_many_suspended),
        cmocka_unit_test(test_kill_suspended),
        cmocka_unit_test(test_kill_in_callback),
        cmocka_unit_test(test_infinite_loop),
        cmocka_unit_test(test_other_runs_while_one_loops),
        cmocka_unit_test(test_slice_counts_across_answers),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_flush_in_flight),
        cmocka_unit_test(test_resp3_client),
        cmocka_unit_test(test_resp3_oracle),
        cmocka_unit_test(test_reply_types),
    };
    int n = n_cases();
    struct CMUnitTest *diff = calloc((size_t)n, sizeof(*diff));
    char **names = calloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        names[i] = malloc(80);
        snprintf(names[i], 80, "diff %03d: ", i);
        size_t o = strlen(names[i]);
        for (const char *p = cases[i].body; *p && o < 79; p++) names[i][o++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
        names[i][o] = '\0';
        diff[i].name = names[i];
        diff[i].test_func = test_diff;
        diff[i].initial_state = (void *)&cases[i];
    }
    /* Differential cases first, on a fresh engine and a fresh server, so that
     * math.random's shared state matches Redis's from the start. */
    int fails = _cmocka_run_group_tests("script_engine_vs_redis", diff, (size_t)n, group_setup, group_teardown);
    fails += cmocka_run_group_tests_name("script_engine", own, group_setup, group_teardown);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(diff);
    return fails ? 1 : 0;
}
