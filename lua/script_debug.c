/* The script debugger's Lua side: Redis 7.0's LDB commands and log lines. */
#include "lua/script_debug.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#define LDB_BREAKPOINTS_MAX 64
#define LDB_MAX_LEN_DEFAULT 256
#define LDB_MAX_VALUES_DEPTH (LUA_MINSTACK / 2)

struct ldb_state {
    char *src;    /* the body, cut in lines at its NULs */
    char **lines;
    int nlines;
    int bp[LDB_BREAKPOINTS_MAX];
    int bpcount;
    int step, luabp;
    int currentline;
    int detached;
    int timeout_stop; /* the last stop was a timeout's */
    size_t maxlen;
    int maxlen_hint_sent;
    sbuf logs; /* "+line\r\n" entries */
    int nlogs;
};

ldb_state *ldb_new(const char *src, size_t len)
{
    ldb_state *d = calloc(1, sizeof(*d));
    if (!d) return NULL;
    /* As Redis: trailing newlines go, then the body is split at each \n. */
    while (len && (src[len - 1] == '\n' || src[len - 1] == '\r')) len--;
    d->src = malloc(len + 1);
    int n = 0;
    for (size_t i = 0; i < len; i++)
        if (src[i] == '\n') n++;
    d->lines = malloc(sizeof(char *) * (size_t)(n + 1));
    if (!d->src || !d->lines) {
        ldb_free(d);
        return NULL;
    }
    memcpy(d->src, src, len);
    d->src[len] = '\0';
    if (len) {
        char *p = d->src;
        d->lines[d->nlines++] = p;
        for (size_t i = 0; i < len; i++)
            if (d->src[i] == '\n') {
                d->src[i] = '\0';
                d->lines[d->nlines++] = d->src + i + 1;
            }
    }
    d->step = 1;
    d->maxlen = LDB_MAX_LEN_DEFAULT;
    return d;
}

void ldb_free(ldb_state *d)
{
    if (!d) return;
    free(d->src);
    free(d->lines);
    sb_free(&d->logs);
    free(d);
}

static void ldb_log(ldb_state *d, const char *s, size_t len)
{
    sb_add(&d->logs, "+", 1);
    size_t start = d->logs.len;
    sb_add(&d->logs, s, len);
    if (!d->logs.oom)
        for (size_t i = start; i < d->logs.len; i++)
            if (d->logs.p[i] == '\r' || d->logs.p[i] == '\n') d->logs.p[i] = ' ';
    sb_add(&d->logs, "\r\n", 2);
    d->nlogs++;
}

static void ldb_logs(ldb_state *d, const char *s) { ldb_log(d, s, strlen(s)); }

static void ldb_logf(ldb_state *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ldb_logf(ldb_state *d, const char *fmt, ...)
{
    char buf[512];
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(buf)) {
        ldb_log(d, buf, (size_t)n);
    } else if (n >= 0) {
        /* Long Lua error messages are logged whole, as Redis does. */
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            ldb_log(d, big, (size_t)n);
            free(big);
        }
    }
    va_end(again);
}

/* Longer entries are cut at maxlen, with a hint the first time. */
static void ldb_log_maxlen(ldb_state *d, sbuf *e)
{
    int trimmed = 0;
    if (d->maxlen && e->len > d->maxlen) {
        e->len = d->maxlen;
        sb_add(e, " ...", 4);
        trimmed = 1;
    }
    ldb_log(d, e->p ? e->p : "", e->len);
    if (trimmed && !d->maxlen_hint_sent) {
        d->maxlen_hint_sent = 1;
        ldb_logs(d, "<hint> The above reply was trimmed. Use 'maxlen 0' to disable trimming.");
    }
}

void ldb_take_logs(ldb_state *d, sbuf *out, int end)
{
    if (end) ldb_logs(d, "<endsession>");
    sb_add_header(out, '*', d->nlogs);
    sb_add(out, d->logs.p ? d->logs.p : "", d->logs.len);
    sb_reset(&d->logs);
    d->nlogs = 0;
}

void ldb_detach(ldb_state *d)
{
    d->detached = 1;
    d->step = 0;
    d->bpcount = 0;
    d->luabp = 0;
}

int ldb_detached(const ldb_state *d) { return d->detached; }
int ldb_timeout_stop(const ldb_state *d) { return d->timeout_stop; }
int ldb_stepping(const ldb_state *d) { return d->step || d->luabp || d->bpcount; }

/* ---- source lines and breakpoints ---- */

static const char *source_line(ldb_state *d, int line)
{
    int idx = line - 1;
    if (idx < 0 || idx >= d->nlines) return "<out of range source code line>";
    return d->lines[idx];
}

static int is_breakpoint(ldb_state *d, int line)
{
    for (int j = 0; j < d->bpcount; j++)
        if (d->bp[j] == line) return 1;
    return 0;
}

static int add_breakpoint(ldb_state *d, int line)
{
    if (line <= 0 || line > d->nlines) return 0;
    if (!is_breakpoint(d, line) && d->bpcount != LDB_BREAKPOINTS_MAX) {
        d->bp[d->bpcount++] = line;
        return 1;
    }
    return 0;
}

static int del_breakpoint(ldb_state *d, int line)
{
    for (int j = 0; j < d->bpcount; j++) {
        if (d->bp[j] == line) {
            d->bpcount--;
            /* Redis moves bpcount-j bytes, not entries: kept, for the same listing. */
            memmove(d->bp + j, d->bp + j + 1, (size_t)(d->bpcount - j));
            return 1;
        }
    }
    return 0;
}

static void log_source_line(ldb_state *d, int lnum)
{
    const char *line = source_line(d, lnum);
    int bp = is_breakpoint(d, lnum);
    int current = d->currentline == lnum;
    const char *prefix = current && bp ? "->#" : current ? "-> " : bp ? "  #" : "   ";
    sbuf s = {0};
    sb_addf(&s, "%s%-3d %s", prefix, lnum, line);
    ldb_log(d, s.p ? s.p : "", s.len);
    sb_free(&s);
}

static void list_lines(ldb_state *d, int around, int context)
{
    for (int j = 1; j <= d->nlines; j++) {
        if (around != 0 && abs(around - j) > context) continue;
        log_source_line(d, j);
    }
}

/* ---- values ---- */

/* Redis's sdscatrepr. */
static void cat_repr(sbuf *s, const char *p, size_t len)
{
    sb_add(s, "\"", 1);
    while (len--) {
        unsigned char c = (unsigned char)*p++;
        switch (c) {
        case '\\':
        case '"': sb_addf(s, "\\%c", c); break;
        case '\n': sb_adds(s, "\\n"); break;
        case '\r': sb_adds(s, "\\r"); break;
        case '\t': sb_adds(s, "\\t"); break;
        case '\a': sb_adds(s, "\\a"); break;
        case '\b': sb_adds(s, "\\b"); break;
        default:
            if (isprint(c)) sb_add(s, &c, 1);
            else sb_addf(s, "\\x%02x", c);
            break;
        }
    }
    sb_add(s, "\"", 1);
}

static void cat_value(sbuf *s, lua_State *L, int idx, int level)
{
    int t = lua_type(L, idx);
    if (level++ == LDB_MAX_VALUES_DEPTH) {
        sb_adds(s, "<max recursion level reached! Nested table?>");
        return;
    }
    switch (t) {
    case LUA_TSTRING: {
        size_t l;
        const char *p = lua_tolstring(L, idx, &l);
        cat_repr(s, p, l);
        break;
    }
    case LUA_TBOOLEAN: sb_adds(s, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER: sb_addf(s, "%g", (double)lua_tonumber(L, idx)); break;
    case LUA_TNIL: sb_adds(s, "nil"); break;
    case LUA_TTABLE: {
        int expected = 1, is_array = 1;
        sbuf r1 = {0}, r2 = {0};
        if (!lua_checkstack(L, 3)) {
            sb_adds(s, "{}");
            break;
        }
        lua_pushnil(L);
        while (lua_next(L, idx - 1)) {
            if (is_array && (lua_type(L, -2) != LUA_TNUMBER || lua_tonumber(L, -2) != expected)) is_array = 0;
            cat_value(&r1, L, -1, level);
            sb_add(&r1, "; ", 2);
            sb_add(&r2, "[", 1);
            cat_value(&r2, L, -2, level);
            sb_add(&r2, "]=", 2);
            cat_value(&r2, L, -1, level);
            sb_add(&r2, "; ", 2);
            lua_pop(L, 1);
            expected++;
        }
        if (r1.len) r1.len -= 2;
        if (r2.len) r2.len -= 2;
        sb_add(s, "{", 1);
        sbuf *pick = is_array ? &r1 : &r2;
        sb_add(s, pick->p ? pick->p : "", pick->len);
        sb_add(s, "}", 1);
        sb_free(&r1);
        sb_free(&r2);
        break;
    }
    case LUA_TFUNCTION:
    case LUA_TUSERDATA:
    case LUA_TTHREAD:
    case LUA_TLIGHTUSERDATA: {
        const char *name = t == LUA_TFUNCTION ? "function"
                           : t == LUA_TUSERDATA ? "userdata"
                           : t == LUA_TTHREAD   ? "thread"
                                                : "light-userdata";
        sb_addf(s, "\"%s@%p\"", name, lua_topointer(L, idx));
        break;
    }
    default: sb_adds(s, "\"<unknown-lua-type>\""); break;
    }
}

static void log_stack_value(ldb_state *d, lua_State *L, const char *prefix)
{
    sbuf s = {0};
    sb_adds(&s, prefix);
    cat_value(&s, L, -1, 0);
    ldb_log_maxlen(d, &s);
    sb_free(&s);
}

void ldb_debug_values(ldb_state *d, lua_State *L)
{
    int argc = lua_gettop(L);
    sbuf s = {0};
    sb_addf(&s, "<debug> line %d: ", d->currentline);
    while (argc--) {
        cat_value(&s, L, -1 - argc, 0);
        if (argc != 0) sb_add(&s, ", ", 2);
    }
    ldb_log(d, s.p ? s.p : "", s.len);
    sb_free(&s);
}

void ldb_breakpoint(ldb_state *d) { d->luabp = 1; }

/* ---- Redis replies in human form (Redis's ldbRedisProtocolToHuman) ---- */

static const char *to_human(sbuf *o, const char *p, const char *end);

static const char *line_end(const char *p, const char *end)
{
    const char *q = memchr(p, '\r', (size_t)(end - p));
    return q ? q : end;
}

static const char *human_aggregate(sbuf *o, const char *reply, const char *end, const char *open,
                                   const char *close, int map)
{
    const char *e = line_end(reply + 1, end);
    long long n = strtoll(reply + 1, NULL, 10);
    const char *p = e + 2 <= end ? e + 2 : end;
    if (reply[0] == '*' && n == -1) {
        sb_adds(o, "NULL");
        return p;
    }
    sb_adds(o, open);
    for (long long j = 0; j < n && p < end; j++) {
        p = to_human(o, p, end);
        if (map) {
            sb_adds(o, " => ");
            p = to_human(o, p, end);
        }
        if (j != n - 1) sb_add(o, ",", 1);
    }
    sb_adds(o, close);
    return p;
}

static const char *to_human(sbuf *o, const char *reply, const char *end)
{
    if (reply >= end) return end;
    const char *e = line_end(reply + 1, end);
    const char *next = e + 2 <= end ? e + 2 : end;
    switch (reply[0]) {
    case ':': sb_add(o, reply + 1, (size_t)(e - reply - 1)); return next;
    case '$': {
        long long n = strtoll(reply + 1, NULL, 10);
        if (n == -1) {
            sb_adds(o, "NULL");
            return next;
        }
        if (n < 0 || n > end - next) n = end - next;
        cat_repr(o, next, (size_t)n);
        return next + n + 2 <= end ? next + n + 2 : end;
    }
    case '+':
    case '-': cat_repr(o, reply, (size_t)(e - reply)); return next;
    case '*': return human_aggregate(o, reply, end, "[", "]", 0);
    case '~': return human_aggregate(o, reply, end, "~(", ")", 0);
    case '%': return human_aggregate(o, reply, end, "{", "}", 1);
    case '_': sb_adds(o, "(null)"); return next;
    case '#': sb_adds(o, reply[1] == 't' ? "#true" : "#false"); return next;
    case ',':
        sb_adds(o, "(double) ");
        sb_add(o, reply + 1, (size_t)(e - reply - 1));
        return next;
    }
    return end;
}

void ldb_log_reply(ldb_state *d, const char *resp, size_t len)
{
    if (!d->step) return;
    sbuf s = {0};
    sb_adds(&s, "<reply> ");
    to_human(&s, resp, resp + len);
    ldb_log_maxlen(d, &s);
    sb_free(&s);
}

void ldb_log_error(ldb_state *d, const char *err, size_t len)
{
    if (!d->step) return;
    sbuf s = {0};
    sb_adds(&s, "<error> ");
    sb_add(&s, err, len);
    ldb_log(d, s.p ? s.p : "", s.len);
    sb_free(&s);
}

void ldb_log_call(ldb_state *d, int argc, char **argv, size_t *lens)
{
    if (!d->step) return;
    sbuf s = {0};
    sb_adds(&s, "<redis>");
    for (int j = 0; j < argc; j++) {
        if (j == 10) {
            sb_addf(&s, " ... (%d more)", argc - j - 1);
            break;
        }
        sb_add(&s, " ", 1);
        sb_add(&s, argv[j], lens[j]);
    }
    ldb_log(d, s.p ? s.p : "", s.len);
    sb_free(&s);
}

/* ---- the line hook ---- */

int ldb_line(ldb_state *d, const lua_Debug *ar, int count_event, int timed_out)
{
    d->currentline = ar->currentline;
    if (d->detached) return count_event && timed_out && strstr(ar->short_src, "user_script") ? 2 : 0;
    int bp = is_breakpoint(d, d->currentline) || d->luabp;
    if (!strstr(ar->short_src, "user_script")) return 0;
    int timeout = 0;
    if (count_event && d->step == 0 && bp == 0) {
        if (!timed_out) return 0;
        timeout = 1;
        d->step = 1;
    }
    if (!d->step && !bp) return 0;
    const char *reason = "step over";
    if (bp) reason = d->luabp ? "redis.breakpoint() called" : "break point";
    else if (timeout) reason = "timeout reached, infinite loop?";
    d->step = 0;
    d->luabp = 0;
    d->timeout_stop = timeout;
    ldb_logf(d, "* Stopped at %d, stop reason = %s", d->currentline, reason);
    log_source_line(d, d->currentline);
    return 1;
}

/* ---- commands ---- */

/* The "arg" table Lua 5.1 gives the vararg function the engine wraps the
 * script in (its first local): Redis runs the body as a chunk, which has
 * none, so the debugger shows none. The wrapper starts on line 1 and ends
 * after the body's last line. */
static int hidden_local(ldb_state *d, lua_State *L, lua_Debug *ar, int i, const char *name)
{
    if (i != 1 || strcmp(name, "arg") != 0) return 0;
    lua_Debug info = *ar;
    if (!lua_getinfo(L, "S", &info)) return 0;
    return !strcmp(info.what, "main") || (info.linedefined == 1 && info.lastlinedefined >= d->nlines);
}

static int is(const char *a, const char *s1, const char *s2)
{
    return !strcasecmp(a, s1) || !strcasecmp(a, s2);
}

static void print_var(ldb_state *d, lua_State *L, const char *name)
{
    lua_Debug ar;
    int l = 0;
    while (lua_getstack(L, l, &ar) != 0) {
        l++;
        const char *n;
        int i = 1;
        while ((n = lua_getlocal(L, &ar, i)) != NULL) {
            i++;
            if (strcmp(name, n) == 0 && !hidden_local(d, L, &ar, i - 1, n)) {
                log_stack_value(d, L, "<value> ");
                lua_pop(L, 1);
                return;
            }
            lua_pop(L, 1);
        }
    }
    if (!strcmp(name, "ARGV") || !strcmp(name, "KEYS")) {
        lua_getglobal(L, name);
        log_stack_value(d, L, "<value> ");
        lua_pop(L, 1);
    } else {
        ldb_logs(d, "No such variable.");
    }
}

static void print_all(ldb_state *d, lua_State *L)
{
    lua_Debug ar;
    int vars = 0;
    if (lua_getstack(L, 0, &ar) != 0) {
        const char *name;
        int i = 1;
        while ((name = lua_getlocal(L, &ar, i)) != NULL) {
            i++;
            if (!strstr(name, "(*temporary)") && !hidden_local(d, L, &ar, i - 1, name)) {
                char prefix[300];
                snprintf(prefix, sizeof(prefix), "<value> %s = ", name);
                log_stack_value(d, L, prefix);
                vars++;
            }
            lua_pop(L, 1);
        }
    }
    if (vars == 0) ldb_logs(d, "No local variables in the current context.");
}

/* Redis's string2l: the whole argument, digits with an optional sign. */
static int parse_long(const char *s, size_t len, long *out)
{
    if (len == 0 || len > 20) return 0;
    char buf[24], *end;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] == '+' || isspace((unsigned char)buf[0])) return 0;
    if (len > 1 && buf[0] == '0') return 0;
    if (len > 2 && buf[0] == '-' && buf[1] == '0') return 0;
    *out = strtol(buf, &end, 10);
    return *end == '\0';
}

static void cmd_break(ldb_state *d, int argc, char **argv, size_t *lens)
{
    if (argc == 1) {
        if (d->bpcount == 0) {
            ldb_logs(d, "No breakpoints set. Use 'b <line>' to add one.");
            return;
        }
        ldb_logf(d, "%d breakpoints set:", d->bpcount);
        for (int j = 0; j < d->bpcount; j++) log_source_line(d, d->bp[j]);
        return;
    }
    for (int j = 1; j < argc; j++) {
        long line;
        if (!parse_long(argv[j], lens[j], &line)) {
            ldb_logf(d, "Invalid argument:'%.*s'", (int)(lens[j] > 400 ? 400 : lens[j]), argv[j]);
        } else if (line == 0) {
            d->bpcount = 0;
            ldb_logs(d, "All breakpoints removed.");
        } else if (line > 0) {
            if (d->bpcount == LDB_BREAKPOINTS_MAX) ldb_logs(d, "Too many breakpoints set.");
            else if (add_breakpoint(d, (int)line)) list_lines(d, (int)line, 1);
            else ldb_logs(d, "Wrong line number.");
        } else {
            if (del_breakpoint(d, (int)-line)) ldb_logs(d, "Breakpoint removed.");
            else ldb_logs(d, "No breakpoint in the specified line.");
        }
    }
}

static void cmd_eval(ldb_state *d, lua_State *L, int argc, char **argv, size_t *lens)
{
    sbuf code = {0}, expr = {0};
    for (int j = 1; j < argc; j++) {
        if (j > 1) sb_add(&code, " ", 1);
        sb_add(&code, argv[j], lens[j]);
    }
    sb_adds(&expr, "return ");
    sb_add(&expr, code.p ? code.p : "", code.len);
    if (luaL_loadbuffer(L, expr.p, expr.len, "@ldb_eval")) {
        lua_pop(L, 1);
        if (luaL_loadbuffer(L, code.p ? code.p : "", code.len, "@ldb_eval")) {
            ldb_logf(d, "<error> %s", lua_tostring(L, -1));
            lua_pop(L, 1);
            sb_free(&code);
            sb_free(&expr);
            return;
        }
    }
    sb_free(&code);
    sb_free(&expr);
    if (lua_pcall(L, 0, 1, 0)) {
        const char *e = lua_tostring(L, -1);
        ldb_logf(d, "<error> %s", e ? e : "(null)");
        lua_pop(L, 1);
        return;
    }
    log_stack_value(d, L, "<retval> ");
    lua_pop(L, 1);
}

void ldb_redis_call(ldb_state *d, lua_State *L, int argc, char **argv, size_t *lens)
{
    if (!lua_checkstack(L, argc + 1)) {
        ldb_logs(d, "<reply> max lua stack reached");
        return;
    }
    lua_getglobal(L, "redis");
    lua_pushstring(L, "call");
    lua_gettable(L, -2);
    for (int j = 1; j < argc; j++) lua_pushlstring(L, argv[j], lens[j]);
    d->step = 1; /* redis.call logs the command and its reply */
    lua_pcall(L, argc - 1, 1, 0);
    d->step = 0;
    lua_pop(L, 2);
}

static void cmd_trace(ldb_state *d, lua_State *L)
{
    lua_Debug ar;
    int level = 0;
    while (lua_getstack(L, level, &ar)) {
        lua_getinfo(L, "Snl", &ar);
        if (strstr(ar.short_src, "user_script") != NULL) {
            ldb_logf(d, "%s %s:", level == 0 ? "In" : "From", ar.name ? ar.name : "top level");
            log_source_line(d, ar.currentline);
        }
        level++;
    }
    if (level == 0) ldb_logs(d, "<error> Can't retrieve Lua stack.");
}

static void cmd_maxlen(ldb_state *d, int argc, char **argv)
{
    if (argc == 2) {
        int v = atoi(argv[1]);
        d->maxlen_hint_sent = 1;
        if (v != 0 && v <= 60) v = 60;
        d->maxlen = (size_t)v;
    }
    if (d->maxlen) ldb_logf(d, "<value> replies are truncated at %d bytes.", (int)d->maxlen);
    else ldb_logs(d, "<value> replies are unlimited.");
}

static const char *const help_lines[] = {
    "Redis Lua debugger help:",
    "[h]elp               Show this help.",
    "[s]tep               Run current line and stop again.",
    "[n]ext               Alias for step.",
    "[c]ontinue           Run till next breakpoint.",
    "[l]ist               List source code around current line.",
    "[l]ist [line]        List source code around [line].",
    "                     line = 0 means: current position.",
    "[l]ist [line] [ctx]  In this form [ctx] specifies how many lines",
    "                     to show before/after [line].",
    "[w]hole              List all source code. Alias for 'list 1 1000000'.",
    "[p]rint              Show all the local variables.",
    "[p]rint <var>        Show the value of the specified variable.",
    "                     Can also show global vars KEYS and ARGV.",
    "[b]reak              Show all breakpoints.",
    "[b]reak <line>       Add a breakpoint to the specified line.",
    "[b]reak -<line>      Remove breakpoint from the specified line.",
    "[b]reak 0            Remove all breakpoints.",
    "[t]race              Show a backtrace.",
    "[e]val <code>        Execute some Lua code (in a different callframe).",
    "[r]edis <cmd>        Execute a Redis command.",
    "[m]axlen [len]       Trim logged Redis replies and Lua var dumps to len.",
    "                     Specifying zero as <len> means unlimited.",
    "[a]bort              Stop the execution of the script. In sync",
    "                     mode dataset changes will be retained.",
    "",
    "Debugger functions you can call from Lua scripts:",
    "redis.debug()        Produce logs in the debugger console.",
    "redis.breakpoint()   Stop execution like if there was a breakpoint in the",
    "                     next line of code.",
    NULL,
};

int ldb_command(ldb_state *d, lua_State *L, int argc, char **argv, size_t *lens)
{
    const char *c = argv[0];
    if (is(c, "h", "help")) {
        for (int i = 0; help_lines[i]; i++) ldb_logs(d, help_lines[i]);
    } else if (is(c, "s", "step") || is(c, "n", "next")) {
        d->step = 1;
        return LDB_GO;
    } else if (is(c, "c", "continue")) {
        return LDB_GO;
    } else if (is(c, "t", "trace")) {
        cmd_trace(d, L);
    } else if (is(c, "m", "maxlen")) {
        cmd_maxlen(d, argc, argv);
    } else if (is(c, "b", "break")) {
        cmd_break(d, argc, argv, lens);
    } else if (is(c, "e", "eval")) {
        cmd_eval(d, L, argc, argv, lens);
    } else if (is(c, "a", "abort")) {
        return LDB_ABORT;
    } else if (argc > 1 && is(c, "r", "redis")) {
        return LDB_REDIS;
    } else if (is(c, "p", "print")) {
        if (argc == 2) print_var(d, L, argv[1]);
        else print_all(d, L);
    } else if (is(c, "l", "list")) {
        int around = d->currentline, ctx = 5;
        if (argc > 1) {
            int num = atoi(argv[1]);
            if (num > 0) around = num;
        }
        if (argc > 2) ctx = atoi(argv[2]);
        list_lines(d, around, ctx);
    } else if (is(c, "w", "whole")) {
        list_lines(d, 1, 1000000);
    } else {
        ldb_logs(d, "<error> Unknown Redis Lua debugger command or wrong number of arguments.");
    }
    return LDB_STAY;
}
