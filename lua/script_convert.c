/* Conversions between RESP replies and Lua values, as Redis 7.0 does them. */
#include "lua/script_internal.h"
#include "lua/script_engine.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sbuf ---------------------------------------------------------------- */

void sb_reset(sbuf *b) {
    b->len = 0;
    b->oom = 0;
}

void sb_free(sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

static int sb_reserve(sbuf *b, size_t n) {
    if (b->oom) return -1;
    if (b->len + n + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void sb_add(sbuf *b, const void *s, size_t n) {
    if (sb_reserve(b, n) != 0) return;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_adds(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

void sb_addf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(tmp)) {
        sb_add(b, tmp, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A RESP header: the type byte, a decimal integer, CRLF. Hot enough (every
 * reply and every bulk) that it does not go through printf. */
void sb_add_header(sbuf *b, char type, long long v) {
    char tmp[24];
    size_t i = sizeof(tmp);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    tmp[--i] = type;
    sb_add(b, tmp + i, sizeof(tmp) - i);
}

/* ---- redisReply -> RESP --------------------------------------------------- */

static void bulk(sbuf *b, char type, const char *s, size_t len) {
    sb_add_header(b, type, (long long)len);
    sb_add(b, s, len);
    sb_add(b, "\r\n", 2);
}

static void line(sbuf *b, char type, const char *s, size_t len) {
    sb_add(b, &type, 1);
    sb_add(b, s, len);
    sb_add(b, "\r\n", 2);
}

void conv_reply_to_resp(sbuf *b, const redisReply *r) {
    size_t i;
    if (!r) {
        sb_adds(b, "$-1\r\n");
        return;
    }
    switch (r->type) {
    case REDIS_REPLY_STRING: bulk(b, '$', r->str, r->len); break;
    case REDIS_REPLY_STATUS: line(b, '+', r->str, r->len); break;
    case REDIS_REPLY_ERROR: line(b, '-', r->str, r->len); break;
    case REDIS_REPLY_INTEGER: sb_add_header(b, ':', r->integer); break;
    case REDIS_REPLY_NIL: sb_adds(b, "$-1\r\n"); break;
    case REDIS_REPLY_DOUBLE: line(b, ',', r->str, r->len); break;
    case REDIS_REPLY_BOOL: sb_adds(b, r->integer ? "#t\r\n" : "#f\r\n"); break;
    case REDIS_REPLY_BIGNUM: line(b, '(', r->str, r->len); break;
    case REDIS_REPLY_VERB: bulk(b, '=', r->str, r->len); break;
    case REDIS_REPLY_MAP:
    case REDIS_REPLY_ATTR:
        sb_add_header(b, r->type == REDIS_REPLY_MAP ? '%' : '|', (long long)(r->elements / 2));
        for (i = 0; i < r->elements; i++) conv_reply_to_resp(b, r->element[i]);
        break;
    case REDIS_REPLY_SET:
    case REDIS_REPLY_PUSH:
    case REDIS_REPLY_ARRAY:
    default:
        sb_add_header(b, r->type == REDIS_REPLY_SET ? '~' : '*', (long long)r->elements);
        for (i = 0; i < r->elements; i++) conv_reply_to_resp(b, r->element[i]);
        break;
    }
}

/* ---- RESP -> Lua ---------------------------------------------------------- */

void conv_push_error(lua_State *L, const char *s, size_t len) {
    const char *code = "ERR";
    size_t codelen = 3;
    const char *msg = s;
    size_t msglen = len;
    if (len > 0 && s[0] == '-') {
        const char *sp = memchr(s, ' ', len);
        if (!sp) {
            msg = s + 1;
            msglen = len - 1;
        } else {
            code = s + 1;
            codelen = (size_t)(sp - s - 1);
            msg = sp + 1;
            msglen = len - (size_t)(sp + 1 - s);
        }
    }
    while (msglen && (msg[0] == '\r' || msg[0] == '\n')) msg++, msglen--;
    while (msglen && (msg[msglen - 1] == '\r' || msg[msglen - 1] == '\n')) msglen--;
    lua_createtable(L, 0, 1);
    luaL_Buffer lb;
    lua_pushliteral(L, "err");
    luaL_buffinit(L, &lb);
    luaL_addlstring(&lb, code, codelen);
    luaL_addchar(&lb, ' ');
    luaL_addlstring(&lb, msg, msglen);
    luaL_pushresult(&lb);
    lua_rawset(L, -3);
}

typedef struct rparser {
    const char *p, *end;
    int bad;
} rparser;

static const char *rp_line(rparser *rp, size_t *len) {
    const char *s = rp->p;
    const char *e = s;
    while (e + 1 < rp->end && !(e[0] == '\r' && e[1] == '\n')) e++;
    if (e + 1 >= rp->end) {
        rp->bad = 1;
        rp->p = rp->end;
        *len = 0;
        return s;
    }
    *len = (size_t)(e - s);
    rp->p = e + 2;
    return s;
}

static long long rp_num(const char *s, size_t len) {
    char tmp[64];
    if (len >= sizeof(tmp)) len = sizeof(tmp) - 1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return strtoll(tmp, NULL, 10);
}

static const char *rp_blob(rparser *rp, long long n) {
    if (n < 0 || (size_t)(rp->end - rp->p) < (size_t)n + 2) {
        rp->bad = 1;
        rp->p = rp->end;
        return NULL;
    }
    const char *s = rp->p;
    rp->p += n + 2;
    return s;
}

static void ensure(lua_State *L, int n) {
    if (!lua_checkstack(L, n)) luaL_error(L, "reached lua stack limit");
}

/* push: 0 parses and discards (attributes). */
static void rp_value(lua_State *L, rparser *rp, int push, int depth) {
    if (rp->p >= rp->end || rp->bad) {
        rp->bad = 1;
        if (push) lua_pushboolean(L, 0);
        return;
    }
    if (depth > 1000) luaL_error(L, "reached lua stack limit");
    char t = *rp->p++;
    size_t len;
    const char *s = rp_line(rp, &len);
    long long n;
    size_t i;
    if (push) ensure(L, 5);
    switch (t) {
    case '+':
        if (!push) break;
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "ok");
        lua_pushlstring(L, s, len);
        lua_rawset(L, -3);
        break;
    case '-':
    case '!':
        if (t == '!') {
            const char *blob = rp_blob(rp, rp_num(s, len));
            n = rp_num(s, len);
            if (!blob) n = 0;
            if (!push) break;
            /* a blob error carries no leading '-' */
            luaL_Buffer lb;
            luaL_buffinit(L, &lb);
            luaL_addchar(&lb, '-');
            if (blob) luaL_addlstring(&lb, blob, (size_t)n);
            luaL_pushresult(&lb);
            size_t l2;
            const char *e2 = lua_tolstring(L, -1, &l2);
            conv_push_error(L, e2, l2);
            lua_remove(L, -2);
        } else {
            if (!push) break;
            conv_push_error(L, s - 1, len + 1);
        }
        /* Redis marks replies' errors so its error stats count them once. */
        lua_pushliteral(L, "ignore_error_stats_update");
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        break;
    case ':':
        if (push) lua_pushnumber(L, (lua_Number)rp_num(s, len));
        break;
    case '$':
        n = rp_num(s, len);
        if (n < 0) {
            if (push) lua_pushboolean(L, 0);
            break;
        } else {
            const char *blob = rp_blob(rp, n);
            if (!push) break;
            if (blob) lua_pushlstring(L, blob, (size_t)n);
            else lua_pushboolean(L, 0);
        }
        break;
    case '=': {
        n = rp_num(s, len);
        const char *blob = rp_blob(rp, n);
        if (!push) break;
        if (!blob || n < 4) {
            lua_pushboolean(L, 0);
            break;
        }
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "verbatim_string");
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "string");
        lua_pushlstring(L, blob + 4, (size_t)n - 4);
        lua_rawset(L, -3);
        lua_pushliteral(L, "format");
        lua_pushlstring(L, blob, 3);
        lua_rawset(L, -3);
        lua_rawset(L, -3);
        break;
    }
    case '_':
        if (push) lua_pushnil(L);
        break;
    case '#':
        if (push) lua_pushboolean(L, len > 0 && s[0] == 't');
        break;
    case ',': {
        if (!push) break;
        char tmp[128];
        size_t l = len < sizeof(tmp) - 1 ? len : sizeof(tmp) - 1;
        memcpy(tmp, s, l);
        tmp[l] = '\0';
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "double");
        lua_pushnumber(L, strtod(tmp, NULL));
        lua_rawset(L, -3);
        break;
    }
    case '(':
        if (!push) break;
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "big_number");
        lua_pushlstring(L, s, len);
        lua_rawset(L, -3);
        break;
    case '*':
    case '>':
        n = rp_num(s, len);
        if (n < 0) {
            if (push) lua_pushboolean(L, 0);
            break;
        }
        if (push) lua_createtable(L, n < 1024 ? (int)n : 1024, 0);
        for (i = 0; i < (size_t)n && !rp->bad; i++) {
            rp_value(L, rp, push, depth + 1);
            if (push) lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case '%':
    case '~':
        n = rp_num(s, len);
        if (n < 0) n = 0;
        if (push) {
            lua_createtable(L, 0, 1);
            lua_pushstring(L, t == '%' ? "map" : "set");
            /* Grown as Redis grows it (no pre-sizing): a script walking it
             * with pairs() sees the keys in Redis's order. */
            lua_newtable(L);
        }
        for (i = 0; i < (size_t)n && !rp->bad; i++) {
            rp_value(L, rp, push, depth + 1);
            if (t == '%') rp_value(L, rp, push, depth + 1);
            else if (push) lua_pushboolean(L, 1);
            if (push) {
                /* A nil key (RESP3 null) can not index a table. */
                if (lua_isnil(L, -2)) lua_pop(L, 2);
                else lua_rawset(L, -3);
            }
        }
        if (push) lua_rawset(L, -3);
        break;
    case '|':
        n = rp_num(s, len);
        for (i = 0; i < (size_t)n * 2 && !rp->bad; i++) rp_value(L, rp, 0, depth + 1);
        rp_value(L, rp, push, depth);
        break;
    default:
        rp->bad = 1;
        if (push) lua_pushboolean(L, 0);
        break;
    }
}

int conv_resp_to_lua(lua_State *L, const char *p, size_t len) {
    rparser rp = {p, p + len, 0};
    int top = lua_gettop(L);
    rp_value(L, &rp, 1, 0);
    if (rp.bad) {
        lua_settop(L, top);
        conv_push_error(L, "ERR Protocol error in the reply given to the script",
                        strlen("ERR Protocol error in the reply given to the script"));
        return -1;
    }
    /* An error at the top level is what redis.call raises. */
    if (len > 0 && (p[0] == '-' || p[0] == '!')) return 1;
    return 0;
}

/* ---- Lua -> RESP ---------------------------------------------------------- */

/* Redis builds error and status lines from C strings: stop at a NUL. */
static size_t cstrlen(const char *s, size_t len) {
    const char *z = memchr(s, '\0', len);
    return z ? (size_t)(z - s) : len;
}

void conv_error_line(sbuf *b, const char *text, size_t len) {
    sb_add(b, "-", 1);
    size_t start = b->len;
    sb_add(b, text, len);
    if (b->oom) return;
    for (size_t i = start; i < b->len; i++)
        if (b->p[i] == '\r' || b->p[i] == '\n') b->p[i] = ' ';
    sb_add(b, "\r\n", 2);
}

/* {err=...} inside a reply: "-%s", then CR/LF trimmed at the ends and mapped
 * to spaces inside. */
static void reply_error(sbuf *b, const char *s, size_t len) {
    len = cstrlen(s, len);
    while (len && (s[len - 1] == '\r' || s[len - 1] == '\n')) len--;
    conv_error_line(b, s, len);
}

static void reply_status(sbuf *b, const char *s, size_t len) {
    len = cstrlen(s, len);
    sb_add(b, "+", 1);
    size_t start = b->len;
    sb_add(b, s, len);
    if (b->oom) return;
    for (size_t i = start; i < b->len; i++)
        if (b->p[i] == '\r' || b->p[i] == '\n') b->p[i] = ' ';
    sb_add(b, "\r\n", 2);
}

static void reply_null(sbuf *b, int client_resp) { sb_adds(b, client_resp == 3 ? "_\r\n" : "$-1\r\n"); }

static void reply_double(sbuf *b, double d, int client_resp) {
    if (isinf(d)) {
        if (client_resp == 2) bulk(b, '$', d > 0 ? "inf" : "-inf", d > 0 ? 3 : 4);
        else sb_adds(b, d > 0 ? ",inf\r\n" : ",-inf\r\n");
        return;
    }
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%.17g", d);
    if (client_resp == 2) bulk(b, '$', tmp, (size_t)n);
    else line(b, ',', tmp, (size_t)n);
}

/* Lua's (long long) cast of a double, with x86-64's answer for the values C
 * leaves undefined (NaN, out of range), which is what Redis replies. */
static long long num_to_ll(lua_Number n) {
    if (n != n || n >= 9223372036854775808.0 || n < -9223372036854775808.0) return INT64_MIN;
    return (long long)n;
}

enum { FR_ARRAY, FR_MAP, FR_SET };
enum { PH_KEY, PH_VALUE, PH_NEXT };

typedef struct frame {
    int kind, phase;
    long j, n;
} frame;

/* Look up t[field] raw (t on top); leaves the value pushed; returns its type. */
static int rawfield(lua_State *L, const char *field) {
    lua_pushstring(L, field);
    lua_rawget(L, -2);
    return lua_type(L, -1);
}

/* Start converting the value on top. Returns 1 when a container frame was
 * opened (the table stays on the stack), 0 when the value was fully written
 * and popped. */
static int start_value(lua_State *L, sbuf *b, int script_resp, int client_resp, frame *fr) {
    if (!lua_checkstack(L, 4)) {
        sb_adds(b, "-ERR reached lua stack limit\r\n");
        lua_pop(L, 1);
        return 0;
    }
    size_t len;
    const char *s;
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, -1, &len);
        bulk(b, '$', s, len);
        break;
    case LUA_TBOOLEAN:
        if (script_resp == 2) {
            if (lua_toboolean(L, -1)) sb_adds(b, ":1\r\n");
            else reply_null(b, client_resp);
        } else {
            int v = lua_toboolean(L, -1);
            if (client_resp == 3) sb_adds(b, v ? "#t\r\n" : "#f\r\n");
            else sb_adds(b, v ? ":1\r\n" : ":0\r\n");
        }
        break;
    case LUA_TNUMBER: sb_add_header(b, ':', num_to_ll(lua_tonumber(L, -1))); break;
    case LUA_TTABLE:
        if (rawfield(L, "err") == LUA_TSTRING) {
            lua_pop(L, 1);
            lua_getfield(L, -1, "err"); /* Redis reads it with metamethods here */
            s = lua_tolstring(L, -1, &len);
            if (s) {
                reply_error(b, s, len);
            } else {
                sb_adds(b, "-ERR unknown error\r\n");
            }
            lua_pop(L, 2);
            return 0;
        }
        lua_pop(L, 1);
        if (rawfield(L, "ok") == LUA_TSTRING) {
            s = lua_tolstring(L, -1, &len);
            reply_status(b, s, len);
            lua_pop(L, 2);
            return 0;
        }
        lua_pop(L, 1);
        if (rawfield(L, "double") == LUA_TNUMBER) {
            reply_double(b, lua_tonumber(L, -1), client_resp);
            lua_pop(L, 2);
            return 0;
        }
        lua_pop(L, 1);
        if (rawfield(L, "big_number") == LUA_TSTRING) {
            s = lua_tolstring(L, -1, &len);
            char *tmp = malloc(len + 1);
            if (tmp) {
                memcpy(tmp, s, len);
                for (size_t i = 0; i < len; i++)
                    if (tmp[i] == '\r' || tmp[i] == '\n') tmp[i] = ' ';
                if (client_resp == 2) bulk(b, '$', tmp, len);
                else line(b, '(', tmp, len);
                free(tmp);
            } else {
                b->oom = 1;
            }
            lua_pop(L, 2);
            return 0;
        }
        lua_pop(L, 1);
        if (rawfield(L, "verbatim_string") == LUA_TTABLE) {
            /* stack: t, v */
            lua_pushliteral(L, "format");
            lua_rawget(L, -2);
            lua_pushliteral(L, "string");
            lua_rawget(L, -3);
            /* stack: t, v, format, string */
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                const char *fmt = lua_tostring(L, -2);
                s = lua_tolstring(L, -1, &len);
                if (client_resp == 2) {
                    bulk(b, '$', s, len);
                } else {
                    char f3[3] = {' ', ' ', ' '};
                    for (int i = 0; i < 3 && fmt[i]; i++) f3[i] = fmt[i];
                    sb_add_header(b, '=', (long long)(len + 4));
                    sb_add(b, f3, 3);
                    sb_add(b, ":", 1);
                    sb_add(b, s, len);
                    sb_add(b, "\r\n", 2);
                }
                lua_pop(L, 4);
                return 0;
            }
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
        if (rawfield(L, "map") == LUA_TTABLE) {
            long n = 0;
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                lua_pop(L, 1);
                n++;
            }
            sb_add_header(b, client_resp == 3 ? '%' : '*', client_resp == 3 ? n : n * 2);
            lua_pushnil(L);
            fr->kind = FR_MAP;
            fr->phase = PH_NEXT;
            return 1;
        }
        lua_pop(L, 1);
        if (rawfield(L, "set") == LUA_TTABLE) {
            long n = 0;
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                lua_pop(L, 1);
                n++;
            }
            sb_add_header(b, client_resp == 3 ? '~' : '*', n);
            lua_pushnil(L);
            fr->kind = FR_SET;
            fr->phase = PH_NEXT;
            return 1;
        }
        lua_pop(L, 1);
        {
            long n = 0;
            for (;;) {
                lua_rawgeti(L, -1, (int)(n + 1));
                int nil = lua_isnil(L, -1);
                lua_pop(L, 1);
                if (nil) break;
                n++;
            }
            sb_add_header(b, '*', n);
            fr->kind = FR_ARRAY;
            fr->j = 1;
            fr->n = n;
            return 1;
        }
    default: reply_null(b, client_resp); break;
    }
    lua_pop(L, 1);
    return 0;
}

void conv_lua_to_resp(lua_State *L, sbuf *b, int script_resp, int client_resp) {
    frame *st = NULL;
    size_t depth = 0, cap = 0;
    frame fr;
    if (!start_value(L, b, script_resp, client_resp, &fr)) return;
    for (;;) {
        if (depth == cap) {
            size_t nc = cap ? cap * 2 : 64;
            frame *ns = realloc(st, nc * sizeof(*ns));
            if (!ns) {
                b->oom = 1;
                break;
            }
            st = ns;
            cap = nc;
        }
        st[depth++] = fr;
        /* Advance the innermost container until it needs a child converted. */
        for (;;) {
            frame *f = &st[depth - 1];
            int child = 0;
            if (f->kind == FR_ARRAY) {
                if (f->j <= f->n) {
                    lua_rawgeti(L, -1, (int)f->j);
                    f->j++;
                    child = 1;
                } else {
                    lua_pop(L, 1); /* the array */
                }
            } else if (f->kind == FR_MAP) {
                /* stack: outer, map, [key] */
                if (f->phase == PH_NEXT) {
                    if (lua_next(L, -2)) {
                        lua_pushvalue(L, -2); /* key copy, converted first */
                        f->phase = PH_KEY;
                        child = 1;
                    } else {
                        lua_pop(L, 2); /* map and outer table */
                    }
                } else if (f->phase == PH_KEY) {
                    f->phase = PH_VALUE; /* key written; value on top now */
                    child = 1;
                } else {
                    f->phase = PH_NEXT;
                    continue;
                }
            } else { /* FR_SET */
                if (f->phase == PH_NEXT) {
                    if (lua_next(L, -2)) {
                        lua_pop(L, 1);
                        lua_pushvalue(L, -1);
                        f->phase = PH_VALUE;
                        child = 1;
                    } else {
                        lua_pop(L, 2);
                    }
                } else {
                    f->phase = PH_NEXT;
                    continue;
                }
            }
            if (child) {
                if (start_value(L, b, script_resp, client_resp, &fr)) break; /* descend */
                continue; /* child done; keep advancing this frame */
            }
            /* frame finished */
            depth--;
            if (depth == 0) goto out;
        }
    }
out:
    free(st);
}
