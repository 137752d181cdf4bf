/* string.find, match, gmatch and gsub with Lua 5.1's pattern matching, but
 * without its C recursion.
 *
 * Lua 5.1's matcher recurses once per pattern item it is inside (each '?',
 * '*', '-', '+' item and each capture), so a long pattern overflows any C
 * stack: Redis's 8 MiB main thread takes about 175 000 'a?' items and then
 * crashes. Here the same search runs as a loop over a stack of choice points
 * kept in the Lua heap (under lua-memory-limit), in the same order, with the
 * same results and the same errors raised at the same moments. */
#include "lua/fiber.h"
#include "lua/lua_libs.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define L_ESC '%'
#define SPECIALS "^$*+?.([%-"
#define uchar(c) ((unsigned char)(c))

/* What a choice point does when the match after it fails. */
enum {
    CP_CAPTURE_OPEN, /* drop the capture it opened */
    CP_CAPTURE_CLOSE, /* reopen the capture it closed */
    CP_OPTIONAL,      /* 'x?': go on without the item */
    CP_MAX_EXPAND,    /* 'x*', 'x+': one repetition fewer */
    CP_MIN_EXPAND,    /* 'x-': one repetition more */
};

typedef struct choice {
    int kind;
    int level;       /* CP_CAPTURE_CLOSE: the capture */
    const char *s;   /* subject position of the item */
    const char *p;   /* the item (CP_MIN_EXPAND) */
    const char *ep;  /* the item's end (its quantifier) */
    ptrdiff_t i;     /* CP_MAX_EXPAND: repetitions being tried */
} choice;

#define LOCAL_CHOICES 32

typedef struct match_state {
    const char *src_init, *src_end;
    lua_State *L;
    int level; /* captures, finished or not */
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[LUA_MAXCAPTURES];
    choice *stack;
    size_t depth, cap;
    int stack_slot; /* Lua stack index of the userdata holding a grown stack, 0 if none */
    choice local[LOCAL_CHOICES];
} match_state;

static void ms_init(match_state *ms, lua_State *L, const char *s, size_t len) {
    ms->L = L;
    ms->src_init = s;
    ms->src_end = s + len;
    ms->level = 0;
    ms->stack = ms->local;
    ms->depth = 0;
    ms->cap = LOCAL_CHOICES;
    ms->stack_slot = 0;
}

static choice *push_choice(match_state *ms) {
    if (ms->depth == ms->cap) {
        /* A userdata, so that a Lua error (memory, a bad pattern further on)
         * can never leak it and lua-memory-limit covers it. */
        if (ms->cap > SIZE_MAX / 2 / sizeof(choice)) luaL_error(ms->L, "pattern too complex");
        size_t ncap = ms->cap * 2;
        choice *n = lua_newuserdata(ms->L, ncap * sizeof(choice));
        memcpy(n, ms->stack, ms->depth * sizeof(choice));
        if (ms->stack_slot) {
            lua_replace(ms->L, ms->stack_slot);
        } else {
            ms->stack_slot = lua_gettop(ms->L);
        }
        ms->stack = n;
        ms->cap = ncap;
    }
    return &ms->stack[ms->depth++];
}

static int check_capture(match_state *ms, int l) {
    l -= '1';
    if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
        return luaL_error(ms->L, "invalid capture index");
    return l;
}

static int capture_to_close(match_state *ms) {
    int level = ms->level;
    for (level--; level >= 0; level--)
        if (ms->capture[level].len == CAP_UNFINISHED) return level;
    return luaL_error(ms->L, "invalid pattern capture");
}

static const char *classend(match_state *ms, const char *p) {
    switch (*p++) {
    case L_ESC:
        if (*p == '\0') luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[':
        if (*p == '^') p++;
        do { /* look for a ']' */
            if (*p == '\0') luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*(p++) == L_ESC && *p != '\0') p++; /* skip escapes (e.g. '%]') */
        } while (*p != ']');
        return p + 1;
    default: return p;
    }
}

static int match_class(int c, int cl) {
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    case 'z': res = (c == 0); break;
    default: return (cl == c);
    }
    return (islower(cl) ? res : !res);
}

static int matchbracketclass(int c, const char *p, const char *ec) {
    int sig = 1;
    if (*(p + 1) == '^') {
        sig = 0;
        p++; /* skip the '^' */
    }
    while (++p < ec) {
        if (*p == L_ESC) {
            p++;
            if (match_class(c, uchar(*p))) return sig;
        } else if ((*(p + 1) == '-') && (p + 2 < ec)) {
            p += 2;
            if (uchar(*(p - 2)) <= c && c <= uchar(*p)) return sig;
        } else if (uchar(*p) == c) {
            return sig;
        }
    }
    return !sig;
}

static int singlematch(int c, const char *p, const char *ep) {
    switch (*p) {
    case '.': return 1;
    case L_ESC: return match_class(c, uchar(*(p + 1)));
    case '[': return matchbracketclass(c, p, ep - 1);
    default: return (uchar(*p) == c);
    }
}

static const char *matchbalance(match_state *ms, const char *s, const char *p) {
    if (*p == 0 || *(p + 1) == 0) luaL_error(ms->L, "unbalanced pattern");
    if (*s != *p) return NULL;
    int b = *p;
    int e = *(p + 1);
    int cont = 1;
    while (++s < ms->src_end) {
        if (*s == e) {
            if (--cont == 0) return s + 1;
        } else if (*s == b) {
            cont++;
        }
    }
    return NULL; /* string ends out of balance */
}

static const char *match_capture(match_state *ms, const char *s, int l) {
    l = check_capture(ms, l);
    size_t len = (size_t)ms->capture[l].len;
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0) return s + len;
    return NULL;
}

/* Lua 5.1's match(ms, s, p): the end of the match of p at s, or NULL. Where
 * the recursive version calls itself and acts on a failure afterwards, this
 * one pushes a choice point and goes on; a failure pops choice points until
 * one has an alternative. A success is final at once, as it is there. */
static const char *do_match(match_state *ms, const char *s, const char *p) {
    size_t base = ms->depth;
    for (;;) {
        /* Try to match p at s; on failure, fall out of the switch. */
        switch (*p) {
        case '(': {
            if (ms->level >= LUA_MAXCAPTURES) luaL_error(ms->L, "too many captures");
            ms->capture[ms->level].init = s;
            if (*(p + 1) == ')') {
                ms->capture[ms->level].len = CAP_POSITION;
                p += 2;
            } else {
                ms->capture[ms->level].len = CAP_UNFINISHED;
                p += 1;
            }
            ms->level++;
            push_choice(ms)->kind = CP_CAPTURE_OPEN;
            continue;
        }
        case ')': {
            int l = capture_to_close(ms);
            ms->capture[l].len = s - ms->capture[l].init;
            choice *c = push_choice(ms);
            c->kind = CP_CAPTURE_CLOSE;
            c->level = l;
            p += 1;
            continue;
        }
        case '\0': return s;
        case '$':
            if (*(p + 1) == '\0') {
                if (s == ms->src_end) return s;
                break;
            }
            goto dflt;
        case L_ESC:
            switch (*(p + 1)) {
            case 'b':
                s = matchbalance(ms, s, p + 2);
                if (s == NULL) break;
                p += 4;
                continue;
            case 'f': {
                p += 2;
                if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                const char *ep = classend(ms, p);
                char previous = (s == ms->src_init) ? '\0' : *(s - 1);
                if (matchbracketclass(uchar(previous), p, ep - 1) || !matchbracketclass(uchar(*s), p, ep - 1))
                    break;
                p = ep;
                continue;
            }
            default:
                if (isdigit(uchar(*(p + 1)))) {
                    s = match_capture(ms, s, uchar(*(p + 1)));
                    if (s == NULL) break;
                    p += 2;
                    continue;
                }
                goto dflt;
            }
            break;
        default:
        dflt: {
            const char *ep = classend(ms, p);
            int m = s < ms->src_end && singlematch(uchar(*s), p, ep);
            switch (*ep) {
            case '?':
                if (m) {
                    choice *c = push_choice(ms);
                    c->kind = CP_OPTIONAL;
                    c->s = s;
                    c->ep = ep;
                    s = s + 1;
                }
                p = ep + 1;
                continue;
            case '*':
            case '+': {
                if (*ep == '+') {
                    if (!m) break;
                    s = s + 1;
                }
                ptrdiff_t i = 0;
                while ((s + i) < ms->src_end && singlematch(uchar(*(s + i)), p, ep)) i++;
                choice *c = push_choice(ms);
                c->kind = CP_MAX_EXPAND;
                c->s = s;
                c->p = p;
                c->ep = ep;
                c->i = i;
                s = s + i;
                p = ep + 1;
                continue;
            }
            case '-': {
                choice *c = push_choice(ms);
                c->kind = CP_MIN_EXPAND;
                c->s = s;
                c->p = p;
                c->ep = ep;
                p = ep + 1;
                continue;
            }
            default:
                if (!m) break;
                s++;
                p = ep;
                continue;
            }
            break;
        }
        }
        /* The match failed here: back to the latest choice point that has
         * another way to go. */
        for (;;) {
            if (ms->depth == base) return NULL;
            choice *c = &ms->stack[ms->depth - 1];
            if (c->kind == CP_CAPTURE_OPEN) {
                ms->level--;
                ms->depth--;
            } else if (c->kind == CP_CAPTURE_CLOSE) {
                ms->capture[c->level].len = CAP_UNFINISHED;
                ms->depth--;
            } else if (c->kind == CP_OPTIONAL) {
                s = c->s;
                p = c->ep + 1;
                ms->depth--;
                break;
            } else if (c->kind == CP_MAX_EXPAND) {
                if (c->i == 0) {
                    ms->depth--;
                    continue;
                }
                c->i--;
                s = c->s + c->i;
                p = c->ep + 1;
                break;
            } else { /* CP_MIN_EXPAND */
                if (c->s < ms->src_end && singlematch(uchar(*c->s), c->p, c->ep)) {
                    c->s++;
                    s = c->s;
                    p = c->ep + 1;
                    break;
                }
                ms->depth--;
            }
        }
    }
}

/* A new search from a fresh start position: no captures, no choice points. */
static const char *match_at(match_state *ms, const char *s, const char *p) {
    ms->level = 0;
    ms->depth = 0;
    return do_match(ms, s, p);
}

static const char *lmemfind(const char *s1, size_t l1, const char *s2, size_t l2) {
    if (l2 == 0) return s1;
    if (l2 > l1) return NULL;
    const char *init;
    l2--;
    l1 = l1 - l2;
    while (l1 > 0 && (init = memchr(s1, *s2, l1)) != NULL) {
        init++;
        if (memcmp(init, s2 + 1, l2) == 0) return init - 1;
        l1 -= (size_t)(init - s1);
        s1 = init;
    }
    return NULL;
}

static void push_onecapture(match_state *ms, int i, const char *s, const char *e) {
    if (i >= ms->level) {
        if (i == 0) lua_pushlstring(ms->L, s, (size_t)(e - s)); /* the whole match */
        else luaL_error(ms->L, "invalid capture index");
    } else {
        ptrdiff_t l = ms->capture[i].len;
        if (l == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
        if (l == CAP_POSITION) lua_pushinteger(ms->L, ms->capture[i].init - ms->src_init + 1);
        else lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
    }
}

static int push_captures(match_state *ms, const char *s, const char *e) {
    int nlevels = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, nlevels, "too many captures");
    for (int i = 0; i < nlevels; i++) push_onecapture(ms, i, s, e);
    return nlevels;
}

static ptrdiff_t posrelat(ptrdiff_t pos, size_t len) {
    if (pos < 0) pos += (ptrdiff_t)len + 1;
    return (pos >= 0) ? pos : 0;
}

/* The captures go above the choice-point userdata, if there is one: the
 * caller returns the topmost values. */
static int str_find_aux(lua_State *L, int find) {
    size_t l1, l2;
    const char *s = luaL_checklstring(L, 1, &l1);
    const char *p = luaL_checklstring(L, 2, &l2);
    ptrdiff_t init = posrelat(luaL_optinteger(L, 3, 1), l1) - 1;
    if (init < 0) init = 0;
    else if ((size_t)init > l1) init = (ptrdiff_t)l1;
    if (find && (lua_toboolean(L, 4) || strpbrk(p, SPECIALS) == NULL)) {
        const char *s2 = lmemfind(s + init, l1 - (size_t)init, p, l2);
        if (s2) {
            lua_pushinteger(L, s2 - s + 1);
            lua_pushinteger(L, (lua_Integer)(s2 - s + (ptrdiff_t)l2));
            return 2;
        }
    } else {
        match_state ms;
        int anchor = (*p == '^') ? (p++, 1) : 0;
        const char *s1 = s + init;
        ms_init(&ms, L, s, l1);
        do {
            const char *res = match_at(&ms, s1, p);
            if (res != NULL) {
                if (find) {
                    lua_pushinteger(L, s1 - s + 1);
                    lua_pushinteger(L, res - s);
                    return push_captures(&ms, NULL, 0) + 2;
                }
                return push_captures(&ms, s1, res);
            }
        } while (s1++ < ms.src_end && !anchor);
    }
    lua_pushnil(L);
    return 1;
}

static int str_find(lua_State *L) { return str_find_aux(L, 1); }
static int str_match(lua_State *L) { return str_find_aux(L, 0); }

static int gmatch_aux(lua_State *L) {
    match_state ms;
    size_t ls;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tostring(L, lua_upvalueindex(2));
    ms_init(&ms, L, s, ls);
    for (const char *src = s + (size_t)lua_tointeger(L, lua_upvalueindex(3)); src <= ms.src_end; src++) {
        const char *e = match_at(&ms, src, p);
        if (e != NULL) {
            lua_Integer newstart = e - s;
            if (e == src) newstart++; /* empty match: go at least one position */
            lua_pushinteger(L, newstart);
            lua_replace(L, lua_upvalueindex(3));
            return push_captures(&ms, src, e);
        }
    }
    return 0;
}

static int str_gmatch(lua_State *L) {
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_aux, 3);
    return 1;
}

static void add_s(match_state *ms, luaL_Buffer *b, const char *s, const char *e) {
    size_t l;
    const char *news = lua_tolstring(ms->L, 3, &l);
    for (size_t i = 0; i < l; i++) {
        if (news[i] != L_ESC) {
            luaL_addchar(b, news[i]);
        } else {
            i++; /* skip ESC */
            if (!isdigit(uchar(news[i]))) {
                luaL_addchar(b, news[i]);
            } else if (news[i] == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                push_onecapture(ms, news[i] - '1', s, e);
                luaL_addvalue(b);
            }
        }
    }
}

static void add_value(match_state *ms, luaL_Buffer *b, const char *s, const char *e) {
    lua_State *L = ms->L;
    fiber_note_depth(); /* callbacks nest with an 8 KiB buffer per level */
    switch (lua_type(L, 3)) {
    case LUA_TNUMBER:
    case LUA_TSTRING: add_s(ms, b, s, e); return;
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        push_onecapture(ms, 0, s, e);
        lua_gettable(L, 3);
        break;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b);
}

/* The choice-point userdata, when a match needs one, sits below the
 * luaL_Buffer's share of the stack: it is made (at slot 5) before the buffer
 * is started, so the buffer's pushes and pops never move it. */
static int str_gsub(lua_State *L) {
    size_t srcl;
    const char *src = luaL_checklstring(L, 1, &srcl);
    const char *p = luaL_checkstring(L, 2);
    int tr = lua_type(L, 3);
    int max_s = (int)luaL_optinteger(L, 4, (lua_Integer)(srcl + 1));
    int anchor = (*p == '^') ? (p++, 1) : 0;
    int n = 0;
    match_state ms;
    luaL_Buffer b;
    luaL_argcheck(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                  "string/function/table expected");
    ms_init(&ms, L, src, srcl);
    lua_settop(L, 4);
    lua_pushboolean(L, 0); /* slot 5: the choice points, once they outgrow ms.local */
    ms.stack_slot = 5;
    luaL_buffinit(L, &b);
    while (n < max_s) {
        ms.level = 0;
        ms.depth = 0;
        const char *e = do_match(&ms, src, p);
        if (e) {
            n++;
            add_value(&ms, &b, src, e);
        }
        if (e && e > src) src = e; /* non-empty match: skip it */
        else if (src < ms.src_end) luaL_addchar(&b, *src++);
        else break;
        if (anchor) break;
    }
    luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

void lua_strmatch_install(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"find", str_find}, {"match", str_match}, {"gmatch", str_gmatch}, {"gsub", str_gsub}, {NULL, NULL},
    };
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    /* Lua 5.1 keeps the old name as an alias of gmatch. */
    lua_getfield(L, -1, "gfind");
    int has_gfind = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_gfind) {
        lua_pushcfunction(L, str_gmatch);
        lua_setfield(L, -2, "gfind");
    }
}
