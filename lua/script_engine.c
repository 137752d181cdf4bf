/* The script engine: sandbox, script cache, runs on fibers, redis.* API. */
#include "lua/script_engine.h"
#include "lua/script_debug.h"
#include "lua/fiber.h"
#include "lua/lua_libs.h"
#include "lua/script_internal.h"
#include "util/block_cache.h"
#include "util/clock.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua-bitop.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define REDIS_VERSION_STR "7.0.15"
#define REDIS_VERSION_NUM 0x0007000f

/* Instructions between two looks at the clock. */
#define HOOK_COUNT 1000

/* Registry keys (addresses of these statics). */
static char REG_GLOBALS, REG_RUN_MT, REG_RO, REG_ERRH;
/* Functions: their shared environment, its metatable, the load-time API. */
static char REG_FENV, REG_FENV_MT, REG_LIBAPI, REG_FGLOBALS;
/* getmetatable's readonly views: of the string metatable, and of the
 * metatables the sandbox made (a table mapping each to its view). */
static char REG_STRING_MT_VIEW, REG_MT_VIEWS;
/* A run's first and last step (run_prepare, run_finish). */
static char REG_RUN_PREPARE, REG_RUN_FINISH;

struct script {
    struct script *next; /* hash chain */
    char sha[41];
    int flags;
    unsigned host_bits; /* the host's notes about this script */
    int factory_ref; /* registry: function returning a new closure of the body */
    char *body;
    size_t len;
};

/* RS_DEBUG: stopped in the debugger, waiting for its next command. */
enum run_state { RS_RUNNING, RS_WAITING, RS_YIELDED, RS_FINISHED, RS_KILLED, RS_DEBUG };

struct script_run {
    script_engine *e;
    struct script_run *prev, *next; /* engine's in-flight list, or the spare list */
    fiber *fib;
    enum run_state state;
    char sha[41];
    char *fname; /* a function's name (errors show it where scripts show their SHA1) */
    int is_function;
    int script_flags, run_flags;
    int resp;
    int written;
    int in_callback; /* inside host->call/log/acl_check, on the fiber */
    int reply_ready;
    int killed;
    char *kill_err;
    void *userdata;
    int factory_ref;
    /* arguments for the fiber's setup */
    int numkeys, nargs;
    /* The caller's keys and args: read only by the run's first slice, which
     * runs inside script_run_start, so they are borrowed, not copied. */
    char **keys, **args;
    size_t *keylens, *arglens;
    /* Time slices: CPU used since the run last yielded for its slice,
     * summed over resumes (a redis.call answered without a store round trip
     * resumes it in the same event-loop turn), and this resume's cap. */
    unsigned long long resume_start, slice_used, slice_cap, cpu_usec;
    int err_counted; /* its error reply is one Redis counted already */
    /* A debugging session (SCRIPT DEBUG): its state, the command the host
     * handed over (copied), the answer to the pending redis.call being a
     * refusal made by the host (logged as <error>, not <reply>), and when
     * the run last stopped (the "infinite loop?" timeout counts from it). */
    ldb_state *dbg;
    int dbg_argc;
    char **dbg_argv;
    size_t *dbg_lens;
    sbuf dbg_buf;
    int in_local_error;
    unsigned long long dbg_since;
    /* From here on, kept when a finished run is reused (run_alloc clears
     * only what comes before L): the Lua thread, the EVAL environment built
     * on it, and the buffers. */
    lua_State *L;
    int thread_ref;
    int env_ref, own_ref; /* EVAL's empty globals proxy and its KEYS/ARGV/_G table */
    /* redis.call in progress */
    sbuf argbuf;     /* numbers formatted as strings */
    /* redis.call's argument arrays, reused from call to call */
    char **argv_buf;
    size_t *lens_buf, *offs_buf;
    int args_cap;
    sbuf in;         /* the answer, as RESP bytes */
    sbuf out;        /* the final reply */
};

struct script_engine {
    lua_State *L;
    script_host host;
    void *host_ctx;
    size_t mem_used, mem_limit;
    unsigned gc_runs; /* runs finished since the last collector step */
    block_cache blocks; /* the Lua heap's small blocks, freed and kept for reuse */
    int enforce;  /* the limit applies (a run or a compile is in progress) */
    unsigned time_slice_usec;
    uint64_t rand48; /* math.random state, shared as in Redis */
    script_run *current;
    script_run *runs;
    size_t nruns;
    script_run *spare; /* finished runs kept for reuse */
    unsigned nspare;
    fiber_pool *pool;
    struct script **buckets;
    size_t nbuckets, nscripts, scripts_mem;
    fn_registry *functions;
    fn_loader *loading;                /* FUNCTION LOAD in progress */
    unsigned long long load_start_usec;
    unsigned debug_timeout_ms; /* a debugged run stops by itself after this long */
};

static const char *run_label(const script_run *r) { return r->fname ? r->fname : r->sha; }

static script_engine *engine_of(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* ---- allocator -------------------------------------------------------------- */

/* A garbage-collection cycle frees about as much as the heap holds live
 * (the default pause of 200%): some hundreds of KiB for common scripts. */
#define LUA_BLOCKS_KEPT (512u << 10)

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    script_engine *e = ud;
    /* Deep C recursion in a run (metamethods, callbacks, parsers, cjson's
     * decoder) allocates on its way down: note how deep its fiber went. */
    fiber_note_depth();
    if (nsize == 0) {
        block_cache_free(&e->blocks, ptr, osize);
        e->mem_used -= osize;
        return NULL;
    }
    /* Shrinking must never fail (Lua relies on it); growing past the limit
     * fails with a Lua memory error, which the script can see. */
    if (e->enforce && e->mem_limit && nsize > osize && e->mem_used - osize + nsize > e->mem_limit)
        return NULL;
    void *p = block_cache_realloc(&e->blocks, ptr, osize, nsize);
    if (!p) return NULL;
    e->mem_used = e->mem_used - osize + nsize;
    return p;
}

static int l_panic(lua_State *L) {
    fprintf(stderr, "evalproxy: unprotected Lua error: %s\n", lua_tostring(L, -1));
    abort();
}

/* ---- SHA1 ------------------------------------------------------------------- */

static void sha1hex(char out[41], const char *s, size_t len) {
    unsigned char h[SHA_DIGEST_LENGTH];
    static const char hex[] = "0123456789abcdef";
    SHA1((const unsigned char *)s, len, h);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
        out[i * 2] = hex[h[i] >> 4];
        out[i * 2 + 1] = hex[h[i] & 15];
    }
    out[40] = '\0';
}

/* ---- errors as Redis raises them -------------------------------------------- */

/* Raise {err="ERR <msg>"} (Redis's luaPushError + lua_error). */
static int raise_err(lua_State *L, const char *msg) {
    conv_push_error(L, msg, strlen(msg));
    return lua_error(L);
}

/* The readonly-table error has no position when raised from a C library
 * function (rawset, setmetatable), as in Redis. */
static int raise_readonly_nopos(lua_State *L) {
    lua_pushliteral(L, "Attempt to modify a readonly table");
    return lua_error(L);
}

/* ---- sandbox ---------------------------------------------------------------- */

/* __newindex of every protected table: the position is the caller's. */
static int l_readonly_newindex(lua_State *L) { return luaL_error(L, "Attempt to modify a readonly table"); }

/* __index of the globals: reading an undefined global is an error. */
static int l_nonexistent_global(lua_State *L) {
    if (lua_gettop(L) != 2) return luaL_error(L, "Wrong number of arguments to luaProtectedTableError");
    if (!lua_isstring(L, -1) && !lua_isnumber(L, -1))
        return luaL_error(L, "Second argument to luaProtectedTableError must be a string or number");
    return luaL_error(L, "Script attempted to access nonexistent global variable '%s'", lua_tostring(L, -1));
}

/* Push RO[t] (the table a proxy or run environment reads through, true for
 * other protected tables, nil for ordinary tables). */
static void ro_lookup(lua_State *L, int idx) {
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushlightuserdata(L, &REG_RO);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
}

static int is_readonly(lua_State *L, int idx) {
    if (!lua_istable(L, idx)) return 0;
    ro_lookup(L, idx);
    int r = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return r;
}

/* Mark the table at idx readonly; backing_idx 0: no backing table. */
static void ro_mark(lua_State *L, int idx, int backing_idx) {
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (backing_idx < 0) backing_idx = lua_gettop(L) + backing_idx + 1;
    lua_pushlightuserdata(L, &REG_RO);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, idx);
    if (backing_idx) lua_pushvalue(L, backing_idx);
    else lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* Replace the table on top with a readonly proxy reading through to it.
 * Stock Lua 5.1 has no readonly tables: writes to a proxy always reach
 * __newindex, and our rawset/setmetatable/next/rawget know proxies. */
static void make_proxy(lua_State *L) {
    int real = lua_gettop(L);
    lua_newtable(L);                 /* proxy */
    lua_createtable(L, 0, 2);        /* its metatable */
    lua_pushvalue(L, real);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    ro_mark(L, -1, 0);
    lua_setmetatable(L, -2);
    ro_mark(L, -1, real);
    lua_replace(L, real);
}

static int l_rawset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (is_readonly(L, 1)) return raise_readonly_nopos(L);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* Readonly tables read through a chain: run environment -> its KEYS/ARGV/_G
 * table -> the shared globals; library proxy -> library. Collect the chain of
 * the table at idx (at most 4 levels) as stack indices. */
static int ro_chain(lua_State *L, int idx, int *lv) {
    int n = 0;
    lv[n++] = idx;
    while (n < 4) {
        ro_lookup(L, lv[n - 1]);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        lv[n++] = lua_gettop(L);
    }
    return n;
}

static int l_rawget(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    lua_settop(L, 2);
    int lv[4];
    int n = ro_chain(L, 1, lv);
    for (int i = 0; i < n; i++) {
        lua_pushvalue(L, 2);
        lua_rawget(L, lv[i]);
        if (!lua_isnil(L, -1) || i == n - 1) return 1;
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    return 1;
}

static int l_setmetatable(lua_State *L) {
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argcheck(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table expected");
    if (is_readonly(L, 1)) return raise_readonly_nopos(L);
    if (luaL_getmetafield(L, 1, "__metatable")) luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_getmetatable(lua_State *L) {
    luaL_checkany(L, 1);
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_pushlightuserdata(L, &REG_STRING_MT_VIEW);
        lua_rawget(L, LUA_REGISTRYINDEX);
        return 1;
    }
    if (lua_istable(L, 1)) {
        ro_lookup(L, 1);
        /* A library proxy shows its library's metatable (none), never the
         * proxy's own, which leads to the writable table. */
        if (lua_istable(L, -1) && !luaL_getmetafield(L, 1, "__metatable")) {
            lua_replace(L, 1);
            lua_settop(L, 1);
        } else {
            lua_settop(L, 1);
        }
    }
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    if (luaL_getmetafield(L, 1, "__metatable")) return 1;
    /* A metatable the sandbox made (the guard of a protected table) is
     * shown through a readonly view, the same one each time: Redis's are
     * readonly tables. */
    ro_lookup(L, -1);
    int made_here = lua_isboolean(L, -1);
    lua_pop(L, 1);
    if (!made_here) return 1;
    int mt = lua_gettop(L);
    lua_pushlightuserdata(L, &REG_MT_VIEWS);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, mt);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, mt);
        make_proxy(L);
        lua_pushvalue(L, mt);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    return 1;
}

/* next() that sees through proxies and run environments: the keys of each
 * level of the chain in turn, skipping those shadowed by an earlier level. */
static int l_next(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    int lv[4];
    int n = ro_chain(L, 1, lv);
    if (n == 1) {
        if (lua_next(L, 1)) return 2;
        lua_pushnil(L);
        return 1;
    }
    int level = 0;
    if (!lua_isnil(L, 2)) {
        /* the level the key came from: the first that has it */
        for (level = 0; level < n; level++) {
            lua_pushvalue(L, 2);
            lua_rawget(L, lv[level]);
            int has = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (has) break;
        }
        if (level == n) return luaL_error(L, "invalid key to 'next'");
    }
    lua_pushvalue(L, 2);
    for (; level < n; level++) {
        while (lua_next(L, lv[level])) {
            int shadowed = 0;
            for (int i = 0; i < level && !shadowed; i++) {
                lua_pushvalue(L, -2);
                lua_rawget(L, lv[i]);
                shadowed = !lua_isnil(L, -1);
                lua_pop(L, 1);
            }
            if (!shadowed) return 2;
            lua_pop(L, 1); /* keep the key, continue */
        }
        lua_pushnil(L); /* next level from its start */
    }
    return 1;
}

static int l_pairs(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* table.insert and table.remove as in Lua 5.1, except that they refuse to
 * write into a readonly table, as Redis's lua_rawseti does: the library
 * proxies would otherwise take integer keys that every later script sees. */
static int l_table_insert(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int e = luaL_getn(L, 1) + 1; /* first empty element */
    int pos;
    switch (lua_gettop(L)) {
    case 2: pos = e; break;
    case 3: pos = luaL_checkint(L, 2); break;
    default: return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    if (is_readonly(L, 1)) return raise_readonly_nopos(L);
    if (lua_gettop(L) == 3) {
        if (pos > e) e = pos; /* grow the array if needed */
        for (int i = e; i > pos; i--) { /* move up elements */
            lua_rawgeti(L, 1, i - 1);
            lua_rawseti(L, 1, i);
        }
    }
    lua_rawseti(L, 1, pos);
    return 0;
}

static int l_table_remove(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int e = luaL_getn(L, 1);
    int pos = luaL_optint(L, 2, e);
    if (!(1 <= pos && pos <= e)) return 0; /* nothing to remove */
    if (is_readonly(L, 1)) return raise_readonly_nopos(L);
    lua_rawgeti(L, 1, pos);
    for (; pos < e; pos++) {
        lua_rawgeti(L, 1, pos + 1);
        lua_rawseti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_rawseti(L, 1, e);
    return 1;
}

/* Redis's pcall: an error that is a table with an 'err' string becomes that
 * string, as scripts written before 7.0 expect. */
static int l_pcall(lua_State *L) {
    int argc = lua_gettop(L);
    fiber_note_depth();
    if (argc == 0) {
        /* Redis ends up calling its own placeholder `true` */
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "attempt to call a boolean value");
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    if (lua_pcall(L, argc - 1, LUA_MULTRET, 0)) {
        lua_remove(L, 1);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "err");
            if (lua_isstring(L, -1)) lua_replace(L, -2);
            else lua_pop(L, 1);
        }
        lua_pushboolean(L, 0);
        lua_insert(L, 1);
    }
    return lua_gettop(L);
}

/* Redis 7.0's Lua never loads bytecode: a binary chunk goes to the text
 * parser, which stops at its first byte. Reproduce that error text. */
static int load_text(lua_State *L, const char *s, size_t len, const char *chunkname) {
    if (len > 0 && s[0] == 27) {
        static const char near[] = "'char(1)'";
        if (luaL_loadbuffer(L, "\001", 1, chunkname) != 0) {
            size_t ml;
            const char *m = lua_tolstring(L, -1, &ml);
            if (ml >= sizeof(near) - 1 && !memcmp(m + ml - (sizeof(near) - 1), near, sizeof(near) - 1)) {
                lua_pushlstring(L, m, ml - (sizeof(near) - 1));
                lua_pushliteral(L, "'char(27)'");
                lua_concat(L, 2);
                lua_remove(L, -2);
            }
        }
        return 1;
    }
    return luaL_loadbuffer(L, s, len, chunkname);
}

static int l_loadstring(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, s);
    if (load_text(L, s, len, name) == 0) return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* load(reader [, name]): Lua 5.1's, reading lazily through lua_load so the
 * parser pulls chunks only as it needs them (a syntax error stops the
 * reading, and reader errors make load return nil and the message), but
 * never loading bytecode. The first byte of the stream is what would pick
 * the bytecode loader; Redis's Lua always parses text. A first chunk that
 * starts with ESC goes to the parser behind a space, which picks the text
 * parser and changes nothing else: it fails on the ESC with Redis's error,
 * having read as far as Redis does. */
typedef struct load_reader {
    int started;
} load_reader;

static const char *load_next_chunk(lua_State *L, size_t *size) {
    fiber_note_depth();
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        *size = 0;
        return NULL;
    }
    if (!lua_isstring(L, -1)) luaL_error(L, "reader function must return a string");
    lua_replace(L, 3); /* the reserved slot keeps the chunk alive while it is parsed */
    return lua_tolstring(L, 3, size);
}

static const char *load_read(lua_State *L, void *ud, size_t *size) {
    load_reader *rd = ud;
    const char *chunk = load_next_chunk(L, size);
    if (rd->started || !chunk || *size == 0) return chunk;
    rd->started = 1;
    if (chunk[0] != 27) return chunk;
    lua_pushliteral(L, " ");
    lua_pushvalue(L, 3);
    lua_concat(L, 2);
    lua_replace(L, 3);
    return lua_tolstring(L, 3, size);
}

static int l_load(lua_State *L) {
    load_reader rd = {0};
    const char *chunkname = luaL_optstring(L, 2, "=(load)");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 3); /* function, name, the reserved slot */
    if (lua_load(L, load_read, &rd, chunkname) == 0) return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* ---- math.random: Redis's drand48-style generator ----------------------------- */

#define RAND48_MASK ((1ull << 48) - 1)
#define RAND48_MAX 2147483647

static int32_t rand48_next(script_engine *e) {
    e->rand48 = (e->rand48 * 0x5DEECE66Dull + 0xB) & RAND48_MASK;
    return (int32_t)(e->rand48 >> 17);
}

static int l_math_random(lua_State *L) {
    script_engine *e = engine_of(L);
    lua_Number r = (lua_Number)(rand48_next(e) % RAND48_MAX) / (lua_Number)RAND48_MAX;
    switch (lua_gettop(L)) {
    case 0: lua_pushnumber(L, r); break;
    case 1: {
        int u = luaL_checkint(L, 1);
        luaL_argcheck(L, 1 <= u, 1, "interval is empty");
        lua_pushnumber(L, floor(r * u) + 1);
        break;
    }
    case 2: {
        int l = luaL_checkint(L, 1);
        int u = luaL_checkint(L, 2);
        luaL_argcheck(L, l <= u, 2, "interval is empty");
        /* Redis computes u - l + 1 in an int: it wraps (to 0 for the
         * whole int range, which then always answers l). */
        int span = (int)((uint32_t)u - (uint32_t)l + 1u);
        lua_pushnumber(L, floor(r * span) + l);
        break;
    }
    default: return luaL_error(L, "wrong number of arguments");
    }
    return 1;
}

static int l_math_randomseed(lua_State *L) {
    script_engine *e = engine_of(L);
    uint32_t seed = (uint32_t)luaL_checkint(L, 1);
    e->rand48 = ((uint64_t)seed << 16) | 0x330E;
    return 0;
}

/* ---- redis.* ---------------------------------------------------------------- */

static script_run *current_run(lua_State *L) { return engine_of(L)->current; }

/* coroutine.running: each run has a Lua thread of its own, where Redis runs
 * every script on the main thread; the run's own thread answers nil as the
 * main thread does, and coroutines the script made answer themselves. */
static int l_coroutine_running(lua_State *L) {
    script_run *r = current_run(L);
    if (lua_pushthread(L) || (r && r->L == L)) lua_pushnil(L);
    return 1;
}

/* A killed run never runs Lua code again: leave the fiber for good. */
static void check_killed(script_run *r) {
    if (r->killed) {
        r->state = RS_KILLED;
        fiber_yield(r->fib);
        abort(); /* never resumed */
    }
}

/* Collect redis.call-style arguments into argv; 0 on success, else an error
 * table has been pushed (Redis's texts). Strings stay on the stack. */
static int collect_args(lua_State *L, script_run *r, int *argcp, char ***argvp, size_t **lenp) {
    int argc = lua_gettop(L);
    *argcp = argc;
    if (argc == 0) {
        conv_push_error(L, "Please specify at least one argument for this redis lib call",
                        strlen("Please specify at least one argument for this redis lib call"));
        return -1;
    }
    if (argc > r->args_cap) {
        int cap = argc < 8 ? 8 : argc;
        char **a = realloc(r->argv_buf, sizeof(char *) * (size_t)cap);
        if (a) r->argv_buf = a;
        size_t *l = a ? realloc(r->lens_buf, sizeof(size_t) * (size_t)cap) : NULL;
        if (l) r->lens_buf = l;
        size_t *o = l ? realloc(r->offs_buf, sizeof(size_t) * (size_t)cap) : NULL;
        if (o) r->offs_buf = o;
        if (!o) return luaL_error(L, "not enough memory");
        r->args_cap = cap;
    }
    char **argv = r->argv_buf;
    size_t *lens = r->lens_buf;
    size_t *offs = r->offs_buf;
    sb_reset(&r->argbuf);
    int bad = 0;
    for (int j = 0; j < argc; j++) {
        offs[j] = (size_t)-1;
        if (lua_type(L, j + 1) == LUA_TNUMBER) {
            /* Not lua_tolstring: Redis keeps all 17 significant digits. */
            char tmp[64];
            int n = snprintf(tmp, sizeof(tmp), "%.17g", (double)lua_tonumber(L, j + 1));
            offs[j] = r->argbuf.len;
            lens[j] = (size_t)n;
            sb_add(&r->argbuf, tmp, (size_t)n + 1);
        } else {
            argv[j] = (char *)lua_tolstring(L, j + 1, &lens[j]);
            if (!argv[j]) {
                bad = 1;
                break;
            }
        }
    }
    if (!bad && r->argbuf.oom) return luaL_error(L, "not enough memory");
    if (!bad)
        for (int j = 0; j < argc; j++)
            if (offs[j] != (size_t)-1) argv[j] = r->argbuf.p + offs[j];
    if (bad) {
        conv_push_error(L, "Lua redis lib command arguments must be strings or integers",
                        strlen("Lua redis lib command arguments must be strings or integers"));
        return -1;
    }
    *argvp = argv;
    *lenp = lens;
    return 0;
}

static int generic_call(lua_State *L, int raise) {
    script_engine *e = engine_of(L);
    script_run *r = e->current;
    if (!r) return raise_err(L, "redis.call/pcall can only be called inside a script invocation");
    int argc;
    char **argv;
    size_t *lens;
    if (collect_args(L, r, &argc, &argv, &lens) != 0) return raise ? lua_error(L) : 1;

    sb_reset(&r->in);
    r->reply_ready = 0;
    r->in_local_error = 0;
    if (r->dbg) ldb_log_call(r->dbg, argc, argv, lens);
    r->in_callback = 1;
    e->host.call(e->host_ctx, r, argc, argv, lens);
    r->in_callback = 0;
    check_killed(r);
    if (!r->reply_ready) {
        r->state = RS_WAITING;
        fiber_yield(r->fib);
        /* resumed with the answer (a killed run is never resumed) */
        r->state = RS_RUNNING;
    }
    lua_settop(L, 0);
    if (r->in.oom) return luaL_error(L, "not enough memory");
    if (r->dbg) {
        /* A refusal the host made stands for Redis's own checks ("<error>");
         * what the store answered is a reply. */
        if (r->in_local_error && r->in.len >= 3) {
            /* Redis's own refusals are logged without their ERR code. */
            size_t skip = r->in.len >= 7 && !memcmp(r->in.p, "-ERR ", 5) ? 5 : 1;
            ldb_log_error(r->dbg, r->in.p + skip, r->in.len - skip - 2);
        } else {
            /* An error reply is logged as the error Lua gets, then as a reply. */
            if (r->in.len >= 3 && r->in.p[0] == '-') ldb_log_error(r->dbg, r->in.p, r->in.len - 2);
            ldb_log_reply(r->dbg, r->in.p ? r->in.p : "", r->in.len);
        }
    }
    int iserr = conv_resp_to_lua(L, r->in.p ? r->in.p : "", r->in.len);
    if (iserr != 0 && raise) return lua_error(L);
    return 1;
}

static int l_redis_call(lua_State *L) { return generic_call(L, 1); }
static int l_redis_pcall(lua_State *L) { return generic_call(L, 0); }

static int l_redis_sha1hex(lua_State *L) {
    if (lua_gettop(L) != 1) return raise_err(L, "wrong number of arguments");
    size_t len = 0;
    const char *s = lua_tolstring(L, 1, &len);
    char hex[41];
    sha1hex(hex, s ? s : "", s ? len : 0);
    lua_pushstring(L, hex);
    return 1;
}

static int l_redis_error_reply(lua_State *L) {
    if (lua_gettop(L) != 1 || lua_type(L, -1) != LUA_TSTRING) {
        conv_push_error(L, "wrong number or type of arguments", strlen("wrong number or type of arguments"));
        return 1;
    }
    const char *s = lua_tostring(L, -1);
    if (s[0] == '-') {
        conv_push_error(L, s, strlen(s));
    } else {
        lua_pushliteral(L, "-");
        lua_pushvalue(L, 1);
        lua_concat(L, 2);
        size_t l;
        const char *m = lua_tolstring(L, -1, &l);
        conv_push_error(L, m, strlen(m));
    }
    return 1;
}

static int l_redis_status_reply(lua_State *L) {
    if (lua_gettop(L) != 1 || lua_type(L, -1) != LUA_TSTRING) {
        conv_push_error(L, "wrong number or type of arguments", strlen("wrong number or type of arguments"));
        return 1;
    }
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "ok");
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    return 1;
}

static int l_redis_log(lua_State *L) {
    int argc = lua_gettop(L);
    if (argc < 2) return raise_err(L, "redis.log() requires two arguments or more.");
    if (!lua_isnumber(L, -argc)) return raise_err(L, "First argument must be a number (log level).");
    int level = (int)lua_tonumber(L, -argc);
    if (level < SCRIPT_LOG_DEBUG || level > SCRIPT_LOG_WARNING) return raise_err(L, "Invalid debug level.");
    script_engine *e = engine_of(L);
    if (!e->host.log) return 0;
    sbuf msg = {0};
    for (int j = 1; j < argc; j++) {
        size_t len;
        const char *s = lua_tolstring(L, (-argc) + j, &len);
        if (s) {
            if (j != 1) sb_add(&msg, " ", 1);
            sb_add(&msg, s, len);
        }
    }
    script_run *r = e->current;
    if (r) r->in_callback = 1;
    e->host.log(e->host_ctx, level, msg.p ? msg.p : "", msg.len);
    if (r) {
        r->in_callback = 0;
        sb_free(&msg);
        check_killed(r);
    } else {
        sb_free(&msg);
    }
    return 0;
}

static int l_redis_setresp(lua_State *L) {
    script_run *r = current_run(L);
    if (!r) return raise_err(L, "redis.setresp can only be called inside a script invocation");
    if (lua_gettop(L) != 1) return raise_err(L, "redis.setresp() requires one argument.");
    int resp = (int)lua_tonumber(L, -1);
    if (resp != 2 && resp != 3) return raise_err(L, "RESP version must be 2 or 3.");
    r->resp = resp;
    return 0;
}

static int l_redis_set_repl(lua_State *L) {
    script_run *r = current_run(L);
    if (!r) return raise_err(L, "redis.set_repl can only be called inside a script invocation");
    if (lua_gettop(L) != 1) return raise_err(L, "redis.set_repl() requires two arguments.");
    int flags = (int)lua_tonumber(L, -1);
    if ((flags & ~3) != 0) return raise_err(L, "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.");
    return 0;
}

static int l_redis_acl_check_cmd(lua_State *L) {
    script_engine *e = engine_of(L);
    script_run *r = e->current;
    if (!r) return raise_err(L, "redis.acl_check_cmd can only be called inside a script invocation");
    int argc;
    char **argv;
    size_t *lens;
    if (collect_args(L, r, &argc, &argv, &lens) != 0) return lua_error(L);
    int ok = 1;
    if (e->host.acl_check) {
        r->in_callback = 1;
        ok = e->host.acl_check(e->host_ctx, r, argc, argv, lens);
        r->in_callback = 0;
    }
    check_killed(r);
    if (ok < 0) return raise_err(L, "Invalid command passed to redis.acl_check_cmd()");
    lua_pushboolean(L, ok);
    return 1;
}

static int l_redis_breakpoint(lua_State *L) {
    script_run *r = current_run(L);
    if (r && r->dbg && !ldb_detached(r->dbg)) {
        ldb_breakpoint(r->dbg);
        lua_pushboolean(L, 1);
    } else {
        lua_pushboolean(L, 0); /* outside a debugging session */
    }
    return 1;
}

static int l_redis_debug(lua_State *L) {
    script_run *r = current_run(L);
    if (r && r->dbg && !ldb_detached(r->dbg)) ldb_debug_values(r->dbg, L);
    return 0;
}

static int l_redis_replicate_commands(lua_State *L) {
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- time slices -------------------------------------------------------------- */

/* A run yields once it has used its slice of CPU, counted over every resume
 * since its last yield: a loop of calls answered at once (PING on memcached,
 * errors the proxy gives) is as CPU-bound as a loop with no calls at all. */
static void count_hook(lua_State *L, lua_Debug *ar) {
    script_engine *e = engine_of(L);
    script_run *r = e->current;
    if (!r || !e->time_slice_usec) return;
    unsigned long long now = clock_us();
    if (r->slice_used + (now - r->resume_start) < r->slice_cap) return;
    r->state = RS_YIELDED;
    fiber_yield(r->fib);
    r->state = RS_RUNNING;
}

/* ---- the debugger ---------------------------------------------------------------- */

/* Redis's end for a run that timed out once its debugging client is gone:
 * nobody can stop it any more. */
static void debug_timeout_error(lua_State *L) {
    static const char msg[] = "timeout during Lua debugging with client closing connection";
    conv_push_error(L, msg, sizeof(msg) - 1);
    lua_error(L);
}

/* Stopped: the host sends the log and hands over the client's commands one
 * by one, until one resumes the script (or the client goes). */
static void debug_repl(script_run *r) {
    lua_State *L = r->L;
    for (;;) {
        r->state = RS_DEBUG;
        fiber_yield(r->fib);
        r->state = RS_RUNNING;
        check_killed(r);
        if (ldb_detached(r->dbg)) {
            if (ldb_timeout_stop(r->dbg)) debug_timeout_error(L);
            break;
        }
        /* Redis's debugger reads at most 1024 arguments of 1 to 1024 bytes;
         * anything else fails the script as a protocol error. */
        int bad = r->dbg_argc > 1024;
        for (int i = 0; i < r->dbg_argc && !bad; i++) bad = r->dbg_lens[i] == 0 || r->dbg_lens[i] > 1024;
        if (bad) {
            conv_push_error(L, "protocol error", strlen("protocol error"));
            lua_error(L);
        }
        int rc = ldb_command(r->dbg, L, r->dbg_argc, r->dbg_argv, r->dbg_lens);
        if (rc == LDB_GO) break;
        if (rc == LDB_ABORT) {
            conv_push_error(L, "script aborted for user request", strlen("script aborted for user request"));
            lua_error(L);
        }
        if (rc == LDB_REDIS) ldb_redis_call(r->dbg, L, r->dbg_argc, r->dbg_argv, r->dbg_lens);
    }
    r->dbg_since = clock_us();
}

/* A debugged run's hook: every line (where it may stop), and the count
 * events of the time slices, which also stop a run that went on for too
 * long without stopping (Redis's "timeout reached, infinite loop?"). */
static void debug_hook(lua_State *L, lua_Debug *ar) {
    script_engine *e = engine_of(L);
    script_run *r = e->current;
    if (!r || !r->dbg) return;
    int count = ar->event == LUA_HOOKCOUNT;
    if (count) count_hook(L, ar);
    if (!lua_getstack(L, 0, ar) || !lua_getinfo(L, "Sl", ar)) return;
    int timed_out = count && clock_us() - r->dbg_since >= (unsigned long long)e->debug_timeout_ms * 1000ull;
    int rc = ldb_line(r->dbg, ar, count, timed_out);
    if (rc == 2) debug_timeout_error(L);
    if (rc == 1) debug_repl(r);
}

/* ---- state setup -------------------------------------------------------------- */

static const char ERRH_SRC[] =
    "local dbg, type, tostring = debug, type, tostring\n"
    "return function (err)\n"
    "  local i = dbg.getinfo(2,'nSl')\n"
    "  if i and i.what == 'C' then\n"
    "    i = dbg.getinfo(3,'nSl')\n"
    "  end\n"
    "  if type(err) ~= 'table' then\n"
    "    err = {err='ERR ' .. tostring(err)}\n"
    "  end\n"
    "  if i then\n"
    "    err['source'] = i.source\n"
    "    err['line'] = i.currentline\n"
    "  end\n"
    "  return err\n"
    "end\n";

/* Call luaopen_x and leave its module table on the stack (dropping any
 * global it made in the setup state). */
static void open_lib(lua_State *L, lua_CFunction f, const char *name) {
    lua_pushcfunction(L, f);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_getglobal(L, name);
    }
}

static void set_fn(lua_State *L, const char *name, lua_CFunction f) {
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
}

static void set_num(lua_State *L, const char *name, lua_Number n) {
    lua_pushnumber(L, n);
    lua_setfield(L, -2, name);
}

static int l_register_function(lua_State *L);
static int run_prepare(lua_State *L);
static int run_finish(lua_State *L);

/* redis.log, the LOG_* levels and the version fields: in the scripts'
 * `redis` table and in the one a library sees while it loads. */
static void set_log_and_version(lua_State *L) {
    set_fn(L, "log", l_redis_log);
    set_num(L, "LOG_DEBUG", SCRIPT_LOG_DEBUG);
    set_num(L, "LOG_VERBOSE", SCRIPT_LOG_VERBOSE);
    set_num(L, "LOG_NOTICE", SCRIPT_LOG_NOTICE);
    set_num(L, "LOG_WARNING", SCRIPT_LOG_WARNING);
    set_num(L, "REDIS_VERSION_NUM", REDIS_VERSION_NUM);
    lua_pushstring(L, REDIS_VERSION_STR);
    lua_setfield(L, -2, "REDIS_VERSION");
}

/* Guard the table on top: undefined reads are Redis's nonexistent-global
 * error and writes are refused; marked readonly. */
static void guard_table(lua_State *L) {
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_nonexistent_global);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    ro_mark(L, -1, 0);
    lua_setmetatable(L, -2);
    ro_mark(L, -1, 0);
}

/* Functions' environment: an empty table reading through its metatable's
 * __index, which is the load-time API while a library loads (only `redis`
 * with register_function, log and the version fields, as Redis 7.0) and the
 * functions' globals otherwise: the scripts' globals without EVAL's error
 * handler, plus _G (the environment itself). Callbacks keep it as their
 * environment. */
static void setup_functions(lua_State *L, int G) {
    lua_newtable(L); /* the functions' globals */
    int GF = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, G)) {
        if (lua_type(L, -2) == LUA_TSTRING && !strcmp(lua_tostring(L, -2), "__redis__err__handler")) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, GF);
    }
    /* Their redis table lacks EVAL's debugger and replication calls. */
    lua_getfield(L, GF, "redis");
    ro_lookup(L, -1);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        const char *k = lua_tostring(L, -2);
        if (!strcmp(k, "breakpoint") || !strcmp(k, "debug") || !strcmp(k, "replicate_commands")) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    make_proxy(L);
    lua_setfield(L, GF, "redis");
    lua_pop(L, 2);

    lua_newtable(L); /* the load-time globals */
    lua_newtable(L); /* the load-time redis table */
    set_fn(L, "register_function", l_register_function);
    set_log_and_version(L);
    guard_table(L);
    make_proxy(L); /* so that no field of it can be replaced */
    lua_setfield(L, -2, "redis");
    guard_table(L);
    lua_pushlightuserdata(L, &REG_LIBAPI);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_newtable(L); /* the environment */
    lua_pushvalue(L, -1);
    lua_setfield(L, GF, "_G");
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, GF);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    /* getmetatable(_G) shows the same readonly stand-in as in EVAL (Redis:
     * the globals' readonly error metatable), never this table or the
     * functions' globals' guard, whose fields would lift the protection
     * for every library. */
    lua_pushlightuserdata(L, &REG_RUN_MT);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "__metatable");
    lua_setfield(L, -3, "__metatable");
    lua_pop(L, 1);
    ro_mark(L, -1, 0);
    lua_pushlightuserdata(L, &REG_FENV_MT);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_setmetatable(L, -2);
    ro_mark(L, -1, GF);
    lua_pushlightuserdata(L, &REG_FENV);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, GF);
    guard_table(L);
    lua_pushlightuserdata(L, &REG_FGLOBALS);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* GF */
}

static int setup_state(lua_State *L) {
    /* The setup state's own globals hold the real libraries; scripts never
     * see this table. */
    lua_pushlightuserdata(L, &REG_RO);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    /* Weak values too: Lua 5.1 has no ephemerons, and a run's environment
     * maps to a table whose _G leads back to it, so with weak keys alone
     * every run would stay alive for good. Each backing table is also held
     * by its key's metatable, so no entry is lost while its key lives. */
    lua_pushliteral(L, "kv");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushcfunction(L, luaopen_base);
    lua_pushstring(L, "");
    lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_table);
    lua_pushstring(L, LUA_TABLIBNAME);
    lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_string);
    lua_pushstring(L, LUA_STRLIBNAME);
    lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_math);
    lua_pushstring(L, LUA_MATHLIBNAME);
    lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_debug);
    lua_pushstring(L, LUA_DBLIBNAME);
    lua_call(L, 1, 0);

    /* error handler, built while `debug` is still at hand */
    if (luaL_loadbuffer(L, ERRH_SRC, sizeof(ERRH_SRC) - 1, "@err_handler_def") != 0) return -1;
    lua_call(L, 0, 1);
    lua_pushlightuserdata(L, &REG_ERRH);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    int errh = lua_gettop(L);

    /* math.random / randomseed: Redis's portable generator */
    lua_getglobal(L, "math");
    set_fn(L, "random", l_math_random);
    set_fn(L, "randomseed", l_math_randomseed);
    lua_pop(L, 1);

    /* The scripts' globals. */
    lua_newtable(L);
    int G = lua_gettop(L);
    static const char *const base_names[] = {"assert", "collectgarbage", "error", "gcinfo", "ipairs", "select",
                                             "tonumber", "tostring", "type", "unpack", "xpcall", "rawequal",
                                             "_VERSION", NULL};
    for (int i = 0; base_names[i]; i++) {
        lua_getglobal(L, base_names[i]);
        lua_setfield(L, G, base_names[i]);
    }
    set_fn(L, "pcall", l_pcall);
    set_fn(L, "unpack", lua_safe_unpack);
    set_fn(L, "rawset", l_rawset);
    set_fn(L, "rawget", l_rawget);
    set_fn(L, "setmetatable", l_setmetatable);
    set_fn(L, "getmetatable", l_getmetatable);
    set_fn(L, "loadstring", l_loadstring);
    set_fn(L, "load", l_load);
    lua_pushcfunction(L, l_next);
    lua_pushvalue(L, -1);
    lua_setfield(L, G, "next");
    lua_pushcclosure(L, l_pairs, 1);
    lua_setfield(L, G, "pairs");
    lua_pushvalue(L, errh);
    lua_setfield(L, G, "__redis__err__handler");

    lua_getglobal(L, "coroutine");
    set_fn(L, "running", l_coroutine_running);
    lua_pop(L, 1);

    lua_getglobal(L, "string");
    lua_strmatch_install(L);
    set_fn(L, "rep", lua_safe_string_rep);
    lua_pop(L, 1);
    lua_getglobal(L, "table");
    set_fn(L, "insert", l_table_insert);
    set_fn(L, "remove", l_table_remove);
    lua_pop(L, 1);

    static const char *const libs[] = {"string", "table", "math", "coroutine", NULL};
    for (int i = 0; libs[i]; i++) {
        lua_getglobal(L, libs[i]);
        make_proxy(L);
        lua_setfield(L, G, libs[i]);
    }
    open_lib(L, luaopen_cjson, "cjson");
    make_proxy(L);
    lua_setfield(L, G, "cjson");
    open_lib(L, luaopen_struct, "struct");
    make_proxy(L);
    lua_setfield(L, G, "struct");
    open_lib(L, luaopen_cmsgpack, "cmsgpack");
    make_proxy(L);
    lua_setfield(L, G, "cmsgpack");
    open_lib(L, luaopen_bit, "bit");
    set_fn(L, "tohex", lua_safe_bit_tohex);
    make_proxy(L);
    lua_setfield(L, G, "bit");

    /* redis */
    lua_newtable(L);
    set_fn(L, "call", l_redis_call);
    set_fn(L, "pcall", l_redis_pcall);
    set_log_and_version(L);
    set_fn(L, "setresp", l_redis_setresp);
    set_fn(L, "sha1hex", l_redis_sha1hex);
    set_fn(L, "error_reply", l_redis_error_reply);
    set_fn(L, "status_reply", l_redis_status_reply);
    set_fn(L, "set_repl", l_redis_set_repl);
    set_num(L, "REPL_NONE", 0);
    set_num(L, "REPL_AOF", 1);
    set_num(L, "REPL_SLAVE", 2);
    set_num(L, "REPL_REPLICA", 2);
    set_num(L, "REPL_ALL", 3);
    set_fn(L, "acl_check_cmd", l_redis_acl_check_cmd);
    set_fn(L, "breakpoint", l_redis_breakpoint);
    set_fn(L, "debug", l_redis_debug);
    set_fn(L, "replicate_commands", l_redis_replicate_commands);
    make_proxy(L);
    lua_setfield(L, G, "redis");

    /* The string metatable reads through the string proxy; getmetatable
     * shows only a readonly view of it. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_getfield(L, G, "string");
    lua_setfield(L, -2, "__index");
    ro_mark(L, -1, 0);
    lua_pushlightuserdata(L, &REG_STRING_MT_VIEW);
    lua_pushvalue(L, -2);
    make_proxy(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 2);
    lua_pushlightuserdata(L, &REG_MT_VIEWS);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);

    /* Globals: undefined reads and any write are errors. */
    lua_pushvalue(L, G);
    guard_table(L);
    lua_pop(L, 1);

    /* Metatable of each run's environment: reads fall through to the shared
     * globals; getmetatable(_G) shows a readonly stand-in. */
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, G);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_nonexistent_global);
    lua_setfield(L, -2, "__index");
    make_proxy(L);
    lua_setfield(L, -2, "__metatable");
    ro_mark(L, -1, 0);
    lua_pushlightuserdata(L, &REG_RUN_MT);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushlightuserdata(L, &REG_GLOBALS);
    lua_pushvalue(L, G);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushlightuserdata(L, &REG_RUN_PREPARE);
    lua_pushcfunction(L, run_prepare);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, &REG_RUN_FINISH);
    lua_pushcfunction(L, run_finish);
    lua_rawset(L, LUA_REGISTRYINDEX);

    setup_functions(L, G);

    /* Nothing of the setup globals stays reachable by name. */
    lua_settop(L, 0);
    return 0;
}

script_engine *script_engine_new(const script_host *host, void *host_ctx) {
    script_engine *e = calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->host = *host;
    e->host_ctx = host_ctx;
    e->time_slice_usec = 2000;
    e->debug_timeout_ms = 5000;
    e->rand48 = 0x1234ABCD330Eull;
    e->nbuckets = 64;
    e->buckets = calloc(e->nbuckets, sizeof(*e->buckets));
    e->pool = fiber_pool_new(0, 1024);
    block_cache_init(&e->blocks, LUA_BLOCKS_KEPT);
    e->L = lua_newstate(l_alloc, e);
    if (!e->buckets || !e->pool || !e->L) {
        script_engine_free(e);
        return NULL;
    }
    lua_atpanic(e->L, l_panic);
    if (setup_state(e->L) != 0) {
        script_engine_free(e);
        return NULL;
    }
    e->functions = fn_registry_new();
    return e;
}

static void run_free(script_run *r);
static void spare_drop(script_engine *e);

void script_engine_free(script_engine *e) {
    if (!e) return;
    while (e->runs) run_free(e->runs);
    spare_drop(e);
    if (e->buckets) {
        for (size_t i = 0; i < e->nbuckets; i++) {
            struct script *s = e->buckets[i];
            while (s) {
                struct script *n = s->next;
                free(s->body);
                free(s);
                s = n;
            }
        }
        free(e->buckets);
    }
    if (e->L) fn_registry_free(e, e->functions);
    if (e->L) lua_close(e->L);
    block_cache_clear(&e->blocks);
    fiber_pool_free(e->pool);
    free(e);
}

void script_engine_set_memory_limit(script_engine *e, size_t bytes) { e->mem_limit = bytes; }
void script_engine_set_time_slice(script_engine *e, unsigned usec) { e->time_slice_usec = usec; }
void script_engine_set_debug_timeout(script_engine *e, unsigned ms) { e->debug_timeout_ms = ms ? ms : 5000; }

/* ---- script cache ----------------------------------------------------------- */

static size_t sha_bucket(const script_engine *e, const char *sha) {
    /* SHA1 digits are already uniform: 16 of them (64 bits) spread enough. */
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++) h = (h ^ (unsigned char)sha[i]) * 1099511628211ull;
    return (size_t)(h & (e->nbuckets - 1));
}

const script *script_engine_find(script_engine *e, const char *sha, size_t len) {
    if (len != 40) return NULL;
    char low[41];
    for (int i = 0; i < 40; i++) {
        unsigned char ch = (unsigned char)sha[i];
        low[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    low[40] = '\0';
    for (struct script *s = e->buckets[sha_bucket(e, low)]; s; s = s->next)
        if (memcmp(s->sha, low, 40) == 0) return s;
    return NULL;
}

static void cache_grow(script_engine *e) {
    size_t nb = e->nbuckets * 2;
    struct script **b = calloc(nb, sizeof(*b));
    if (!b) return;
    struct script **old = e->buckets;
    size_t on = e->nbuckets;
    e->buckets = b;
    e->nbuckets = nb;
    for (size_t i = 0; i < on; i++) {
        struct script *s = old[i];
        while (s) {
            struct script *n = s->next;
            size_t k = sha_bucket(e, s->sha);
            s->next = b[k];
            b[k] = s;
            s = n;
        }
    }
    free(old);
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, size_t alen) {
    if (!err || !errlen) return;
    snprintf(err, errlen, fmt, (int)alen, a);
    /* Error replies are one line. */
    for (char *p = err; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
}

/* set_err with the Lua error message on top of the stack. */
static void set_err_top(lua_State *L, char *err, size_t errlen, const char *fmt) {
    size_t ml;
    const char *m = lua_tolstring(L, -1, &ml);
    if (!m) m = "unknown error", ml = strlen(m);
    set_err(err, errlen, fmt, m, ml);
}

/* Split a shebang line as Redis's sdssplitargs does (spaces, quotes);
 * returns the number of parts or -1 on unbalanced quotes. Parts are written
 * NUL-terminated into buf. */
int engine_split_args(const char *s, size_t len, char *buf, char **parts, int maxparts) {
    size_t i = 0;
    int n = 0;
    char *out = buf;
    while (1) {
        while (i < len && isspace((unsigned char)s[i])) i++;
        if (i >= len) return n;
        if (n == maxparts) return -1;
        parts[n++] = out;
        int inq = 0, insq = 0, done = 0;
        while (!done) {
            if (inq) {
                if (i >= len) return -1;
                if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x' && isxdigit((unsigned char)s[i + 2]) &&
                    isxdigit((unsigned char)s[i + 3])) {
                    char h[3] = {s[i + 2], s[i + 3], 0};
                    *out++ = (char)strtol(h, NULL, 16);
                    i += 3;
                } else if (s[i] == '\\' && i + 1 < len) {
                    char c;
                    i++;
                    switch (s[i]) {
                    case 'n': c = '\n'; break;
                    case 'r': c = '\r'; break;
                    case 't': c = '\t'; break;
                    case 'b': c = '\b'; break;
                    case 'a': c = '\a'; break;
                    default: c = s[i]; break;
                    }
                    *out++ = c;
                } else if (s[i] == '"') {
                    if (i + 1 < len && !isspace((unsigned char)s[i + 1])) return -1;
                    done = 1;
                } else {
                    *out++ = s[i];
                }
            } else if (insq) {
                if (i >= len) return -1;
                if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\'') {
                    i++;
                    *out++ = '\'';
                } else if (s[i] == '\'') {
                    if (i + 1 < len && !isspace((unsigned char)s[i + 1])) return -1;
                    done = 1;
                } else {
                    *out++ = s[i];
                }
            } else {
                if (i >= len) {
                    done = 1;
                    break;
                }
                switch (s[i]) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                case '\0': done = 1; break;
                case '"': inq = 1; break;
                case '\'': insq = 1; break;
                default: *out++ = s[i]; break;
                }
            }
            if (i < len) i++;
        }
        *out++ = '\0';
    }
}

static const struct {
    const char *name;
    int flag;
} shebang_flags[] = {
    {"no-writes", SCRIPT_FLAG_NO_WRITES},   {"allow-oom", SCRIPT_FLAG_ALLOW_OOM},
    {"allow-stale", SCRIPT_FLAG_ALLOW_STALE}, {"no-cluster", SCRIPT_FLAG_NO_CLUSTER},
    {"allow-cross-slot-keys", SCRIPT_FLAG_ALLOW_CROSS_SLOT},
    {"atomic", SCRIPT_FLAG_ATOMIC}, /* evalproxy's own: undo the script's writes if it fails */
    {NULL, 0},
};

/* Returns flags, or -1 with err set. *skip: bytes of the shebang line (its
 * newline stays in the body so line numbers do not move). */
static int parse_shebang(const char *body, size_t len, size_t *skip, char *err, size_t errlen) {
    *skip = 0;
    if (len < 2 || body[0] != '#' || body[1] != '!') return SCRIPT_FLAG_EVAL_COMPAT;
    /* Redis looks for the newline with strchr: a NUL ends the search. */
    size_t eol = 0;
    while (eol < len && body[eol] != '\n' && body[eol] != '\0') eol++;
    if (eol >= len || body[eol] != '\n') {
        set_err(err, errlen, "ERR Invalid script shebang%.*s", "", 0);
        return -1;
    }
    char *buf = malloc(eol + 1);
    char **parts = malloc(sizeof(char *) * (eol / 2 + 2));
    if (!buf || !parts) {
        free(buf);
        free(parts);
        set_err(err, errlen, "ERR Out of memory%.*s", "", 0);
        return -1;
    }
    int n = engine_split_args(body, eol, buf, parts, (int)(eol / 2 + 2));
    int flags = 0;
    if (n <= 0) {
        set_err(err, errlen, "ERR Invalid engine in script shebang%.*s", "", 0);
        flags = -1;
    } else if (strcmp(parts[0], "#!lua") != 0) {
        set_err(err, errlen, "ERR Unexpected engine in script shebang: %.*s", parts[0], strlen(parts[0]));
        flags = -1;
    } else {
        for (int j = 1; j < n && flags >= 0; j++) {
            if (strncmp(parts[j], "flags=", 6) == 0) {
                const char *f = parts[j] + 6;
                if (*f == '\0') continue; /* "flags=" alone: no flags */
                for (;;) {
                    const char *c = strchr(f, ',');
                    size_t fl = c ? (size_t)(c - f) : strlen(f);
                    int k;
                    for (k = 0; shebang_flags[k].name; k++)
                        if (strlen(shebang_flags[k].name) == fl && memcmp(shebang_flags[k].name, f, fl) == 0) break;
                    if (!shebang_flags[k].name) {
                        set_err(err, errlen, "ERR Unexpected flag in script shebang: %.*s", f, fl);
                        flags = -1;
                        break;
                    }
                    flags |= shebang_flags[k].flag;
                    if (!c) break;
                    f = c + 1;
                }
            } else {
                set_err(err, errlen, "ERR Unknown lua shebang option: %.*s", parts[j], strlen(parts[j]));
                flags = -1;
            }
        }
    }
    free(buf);
    free(parts);
    if (flags >= 0) *skip = eol;
    return flags;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
    sb_add(ud, p, n);
    return 0;
}

/* Replace the function on top with its compiled form (a string), which
 * each run loads a copy of; -1 if out of memory (the function is popped). */
static int push_dumped_body(lua_State *L) {
    sbuf d = {0};
    lua_dump(L, dump_writer, &d);
    lua_pop(L, 1);
    if (d.oom || !d.p) {
        sb_free(&d);
        return -1;
    }
    lua_pushlstring(L, d.p, d.len);
    sb_free(&d);
    return 0;
}

const script *script_engine_load(script_engine *e, const char *body, size_t len, char *err, size_t errlen) {
    char sha[41];
    sha1hex(sha, body, len);
    const script *found = script_engine_find(e, sha, 40);
    if (found) return found;

    size_t skip;
    int flags = parse_shebang(body, len, &skip, err, errlen);
    if (flags < 0) return NULL;

    lua_State *L = e->L;
    e->enforce = 1;
    /* Compile the body alone first: its errors are the ones Redis reports. */
    int st = load_text(L, body + skip, len - skip, "@user_script");
    if (st == LUA_ERRMEM) {
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT, 0);
        st = load_text(L, body + skip, len - skip, "@user_script");
    }
    if (st != 0) {
        set_err_top(L, err, errlen, "ERR Error compiling script (new function): %.*s");
        lua_pop(L, 1);
        e->enforce = 0;
        return NULL;
    }
    /* Then as the body of a function, so that every run gets its own closure
     * (its own environment) of the same compiled code. The prefix stays on
     * line 1, so line numbers match. */
    static const char pre[] = "return function(...) ";
    static const char post[] = "\nend";
    size_t wl = sizeof(pre) - 1 + (len - skip) + sizeof(post) - 1;
    char *w = malloc(wl);
    if (!w) {
        lua_pop(L, 1);
        e->enforce = 0;
        set_err(err, errlen, "ERR Out of memory%.*s", "", 0);
        return NULL;
    }
    memcpy(w, pre, sizeof(pre) - 1);
    memcpy(w + sizeof(pre) - 1, body + skip, len - skip);
    memcpy(w + sizeof(pre) - 1 + (len - skip), post, sizeof(post) - 1);
    st = luaL_loadbuffer(L, w, wl, "@user_script");
    free(w);
    e->enforce = 0;
    if (st == 0) {
        lua_remove(L, -2); /* the body compiled alone */
    } else {
        /* The wrapper costs two of the parser's nesting levels: a body
         * nested up to Redis's limit compiles only on its own. Each run of
         * it then loads a copy of that compiled body (run_fiber_main). */
        lua_pop(L, 1);
        if (push_dumped_body(L) != 0) {
            set_err(err, errlen, "ERR Out of memory%.*s", "", 0);
            return NULL;
        }
    }
    struct script *s = calloc(1, sizeof(*s));
    char *copy = malloc(len ? len : 1);
    if (!s || !copy) {
        free(s);
        free(copy);
        lua_pop(L, 1);
        set_err(err, errlen, "ERR Out of memory%.*s", "", 0);
        return NULL;
    }
    s->factory_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    memcpy(s->sha, sha, 41);
    s->flags = flags;
    memcpy(copy, body, len);
    s->body = copy;
    s->len = len;
    if (e->nscripts >= e->nbuckets) cache_grow(e);
    size_t k = sha_bucket(e, s->sha);
    s->next = e->buckets[k];
    e->buckets[k] = s;
    e->nscripts++;
    e->scripts_mem += len + sizeof(*s);
    return s;
}

void script_engine_flush(script_engine *e) {
    for (size_t i = 0; i < e->nbuckets; i++) {
        struct script *s = e->buckets[i];
        while (s) {
            struct script *n = s->next;
            /* Runs in flight hold their own closure; the factory can go. */
            luaL_unref(e->L, LUA_REGISTRYINDEX, s->factory_ref);
            free(s->body);
            free(s);
            s = n;
        }
        e->buckets[i] = NULL;
    }
    e->nscripts = 0;
    e->scripts_mem = 0;
    spare_drop(e);
    lua_gc(e->L, LUA_GCCOLLECT, 0);
}

size_t script_engine_count(const script_engine *e) { return e->nscripts; }
size_t script_engine_scripts_memory(const script_engine *e) { return e->scripts_mem; }
size_t script_engine_lua_memory(const script_engine *e) { return e->mem_used; }
size_t script_engine_running(const script_engine *e) { return e->nruns; }
int script_flags(const script *s) { return s->flags; }
unsigned script_host_bits(const script *s) { return s->host_bits; }
void script_set_host_bits(const script *s, unsigned bits) { ((struct script *)s)->host_bits = bits; }
const char *script_sha(const script *s) { return s->sha; }
const char *script_body(const script *s, size_t *len) {
    if (len) *len = s->len;
    return s->body;
}

/* ---- functions: loading libraries ------------------------------------------------ */

#define LOAD_TIMEOUT_USEC 500000ull

fn_registry *engine_functions(script_engine *e) { return e->functions; }
void engine_set_functions(script_engine *e, fn_registry *reg) { e->functions = reg; }
void engine_unref(script_engine *e, int ref) { luaL_unref(e->L, LUA_REGISTRYINDEX, ref); }

int engine_flag_by_name(const char *name) {
    for (int k = 0; shebang_flags[k].name; k++)
        if (!strcasecmp(shebang_flags[k].name, name)) return shebang_flags[k].flag;
    return 0;
}

const char *script_flag_name(int bit_index) {
    for (int k = 0; shebang_flags[k].name; k++)
        if (shebang_flags[k].flag == (1 << bit_index)) return shebang_flags[k].name;
    return NULL;
}

/* A library's top level has half a second, as in Redis. */
static void load_hook(lua_State *L, lua_Debug *ar) {
    script_engine *e = engine_of(L);
    if (e->loading && clock_us() - e->load_start_usec > LOAD_TIMEOUT_USEC) {
        lua_sethook(L, load_hook, LUA_MASKLINE, 0);
        raise_err(L, "FUNCTION LOAD timeout");
    }
}

/* The {function_name=..., callback=..., flags={...}, description=...} form,
 * with Redis 7.0's checks in Redis's order. The callback ends up at index 2,
 * the name and description (or nil) at 3 and 4, flags in *flags. */
static const char *register_named_args(lua_State *L, int *flags) {
    if (!lua_istable(L, 1))
        return "calling redis.register_function with a single argument is only applicable to Lua table "
               "(representing named arguments).";
    lua_settop(L, 1);
    /* A readonly proxy (the `redis` table) is iterated through to the
     * table behind it, as Redis iterates its readonly table. */
    ro_lookup(L, 1);
    if (lua_istable(L, -1)) lua_replace(L, 1);
    else lua_pop(L, 1);
    lua_pushnil(L); /* 2: callback */
    lua_pushnil(L); /* 3: name */
    lua_pushnil(L); /* 4: description */
    lua_pushnil(L); /* 5: iteration key */
    while (lua_next(L, 1)) {
        /* 5: key, 6: value */
        if (!lua_isstring(L, 5)) return "named argument key given to redis.register_function is not a string";
        lua_pushvalue(L, 5);
        const char *key = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (!strcasecmp(key, "function_name")) {
            if (!lua_isstring(L, 6)) return "function_name argument given to redis.register_function must be a string";
            lua_pushvalue(L, 6);
            lua_tostring(L, -1);
            lua_replace(L, 3);
        } else if (!strcasecmp(key, "description")) {
            if (!lua_isstring(L, 6)) return "description argument given to redis.register_function must be a string";
            lua_pushvalue(L, 6);
            lua_tostring(L, -1);
            lua_replace(L, 4);
        } else if (!strcasecmp(key, "callback")) {
            if (!lua_isfunction(L, 6)) return "callback argument given to redis.register_function must be a function";
            lua_pushvalue(L, 6);
            lua_replace(L, 2);
        } else if (!strcasecmp(key, "flags")) {
            if (!lua_istable(L, 6))
                return "flags argument to redis.register_function must be a table representing function flags";
            int f = 0;
            for (int j = 1;; j++) {
                /* with metamethods, as Redis reads it */
                lua_pushnumber(L, j);
                lua_gettable(L, 6);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                int bit = lua_isstring(L, -1) ? engine_flag_by_name(lua_tostring(L, -1)) : 0;
                lua_pop(L, 1);
                if (!bit) return "unknown flag given";
                f |= bit;
            }
            *flags = f;
        } else {
            return "unknown argument given to redis.register_function";
        }
        lua_settop(L, 5);
    }
    if (lua_isnil(L, 3)) return "redis.register_function must get a function name argument";
    if (lua_isnil(L, 2)) return "redis.register_function must get a callback argument";
    return NULL;
}

static int l_register_function(lua_State *L) {
    script_engine *e = engine_of(L);
    if (!e->loading) return raise_err(L, "redis.register_function can only be called on FUNCTION LOAD command");
    int argc = lua_gettop(L);
    if (argc < 1 || argc > 2) return raise_err(L, "wrong number of arguments to redis.register_function");
    int flags = 0;
    const char *bad;
    if (argc == 1) {
        bad = register_named_args(L, &flags);
    } else {
        bad = NULL;
        if (!lua_isstring(L, 1)) bad = "first argument to redis.register_function must be a string";
        else if (!lua_isfunction(L, 2)) bad = "second argument to redis.register_function must be a function";
        if (!bad) {
            lua_settop(L, 2);
            lua_pushvalue(L, 1);
            lua_tostring(L, -1); /* 3: name */
            lua_pushnil(L);      /* 4: no description */
        }
    }
    if (bad) return raise_err(L, bad);
    size_t nlen, dlen = 0;
    const char *name = lua_tolstring(L, 3, &nlen);
    const char *desc = lua_isnil(L, 4) ? NULL : lua_tolstring(L, 4, &dlen);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (fn_loader_add(e->loading, name, nlen, desc, dlen, flags, ref, &bad) != 0) return raise_err(L, bad);
    return 0;
}

int engine_run_library(script_engine *e, const char *code, size_t len, fn_loader *ld, char *err, size_t errlen) {
    lua_State *L = e->L;
    int top = lua_gettop(L);
    int rc = -1;
    e->enforce = 1;
    lua_pushlightuserdata(L, &REG_FENV_MT);
    lua_rawget(L, LUA_REGISTRYINDEX);
    int mt = lua_gettop(L);
    lua_pushlightuserdata(L, &REG_LIBAPI);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setfield(L, mt, "__index");
    lua_pushlightuserdata(L, &REG_ERRH);
    lua_rawget(L, LUA_REGISTRYINDEX);
    int st = load_text(L, code, len, "@user_function");
    if (st != 0) {
        set_err_top(L, err, errlen, "ERR Error compiling function: %.*s");
        goto done;
    }
    lua_pushlightuserdata(L, &REG_FENV);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setfenv(L, -2);
    e->loading = ld;
    e->load_start_usec = clock_us();
    lua_sethook(L, load_hook, LUA_MASKCOUNT, 100000);
    st = lua_pcall(L, 0, 0, -2);
    lua_sethook(L, NULL, 0, 0);
    e->loading = NULL;
    if (st != 0) {
        if (lua_istable(L, -1)) lua_getfield(L, -1, "err");
        set_err_top(L, err, errlen, "ERR Error registering functions: %.*s");
        goto done;
    }
    rc = 0;
done:
    lua_pushlightuserdata(L, &REG_FGLOBALS);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setfield(L, mt, "__index");
    lua_settop(L, top);
    e->enforce = 0;
    return rc;
}

/* ---- runs ------------------------------------------------------------------- */

static void push_string_array(lua_State *L, char **v, size_t *l, int n) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushlstring(L, v[i], l[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Read field `name` of the table on top: with its metamethods, as Redis
 * does, or raw (when an earlier read already failed). */
static void get_err_field(lua_State *L, const char *name, int raw) {
    if (!raw) {
        lua_getfield(L, -1, name);
        return;
    }
    lua_pushstring(L, name);
    lua_rawget(L, -2);
}

/* Append the error reply for a failed run; the error object is on top.
 * raw: read its fields without metamethods (this is the second try, after
 * a metamethod of the error object itself raised an error). */
static void format_run_error(lua_State *L, script_run *r, int raw) {
    sbuf *b = &r->out;
    if (!lua_istable(L, -1)) {
        const char *msg = lua_isstring(L, -1) ? lua_tostring(L, -1) : "execution failure";
        char tmp[256];
        int n = snprintf(tmp, sizeof(tmp), "ERR Error running script %s, %.100s", run_label(r), msg);
        conv_error_line(b, tmp, (size_t)(n < (int)sizeof(tmp) ? n : (int)sizeof(tmp) - 1));
        return;
    }
    sbuf t = {0};
    get_err_field(L, "err", raw);
    if (lua_isstring(L, -1)) sb_adds(&t, lua_tostring(L, -1));
    else sb_adds(&t, "ERR unknown error"); /* Redis 7.0.15 crashes here */
    lua_pop(L, 1);
    get_err_field(L, "source", raw);
    lua_insert(L, -2);
    get_err_field(L, "line", raw);
    lua_insert(L, -3);
    /* stack: line, source, error object */
    if (lua_isstring(L, -3) && lua_isstring(L, -2)) {
        sb_adds(&t, " script: ");
        sb_adds(&t, run_label(r));
        sb_adds(&t, ", on ");
        sb_adds(&t, lua_tostring(L, -2));
        sb_adds(&t, ":");
        sb_adds(&t, lua_tostring(L, -3));
        sb_adds(&t, ".");
    }
    lua_remove(L, -2);
    lua_remove(L, -2);
    if (t.oom) sb_adds(b, "-ERR Out of memory\r\n");
    else conv_error_line(b, t.p, t.len);
    sb_free(&t);
}

/* A run is three calls on its thread, each from the bottom of the thread's
 * C stack: prepare (protected), the script itself, finish (protected). The
 * script's lua_pcall is the only C call below it, as in Redis, so the depth
 * at which Lua reports "C stack overflow" (and the other nesting limits
 * counted with it) is Redis's. */

/* Set the run up; returns the error handler, the function and its
 * arguments. Argument 2: the script's body already loaded, or nil (it is
 * made by its factory). */
static int run_prepare(lua_State *L) {
    script_run *r = lua_touserdata(L, 1);
    lua_remove(L, 1);
    int preloaded = lua_isfunction(L, 1);
    if (!preloaded) lua_settop(L, 0);
    if (r->is_function) {
        /* Callbacks run in the functions' environment (no KEYS, no ARGV);
         * the thread's globals are the same, for loadstring'd code. */
        lua_pushlightuserdata(L, &REG_FENV);
        lua_rawget(L, LUA_REGISTRYINDEX);
        lua_replace(L, LUA_GLOBALSINDEX);
        lua_pushlightuserdata(L, &REG_ERRH);
        lua_rawget(L, LUA_REGISTRYINDEX);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->factory_ref);
        push_string_array(L, r->keys, r->keylens, r->numkeys);
        push_string_array(L, r->args, r->arglens, r->nargs);
        return 4;
    }
    int env;
    if (r->env_ref != LUA_NOREF) {
        /* A reused thread: its environment stays, only KEYS and ARGV change. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->env_ref);
        env = lua_gettop(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->own_ref);
        push_string_array(L, r->keys, r->keylens, r->numkeys);
        lua_setfield(L, env + 1, "KEYS");
        push_string_array(L, r->args, r->arglens, r->nargs);
        lua_setfield(L, env + 1, "ARGV");
        lua_pop(L, 1);
    } else {
        /* The environment is an empty table, so that every write reaches
         * __newindex (Redis's globals are readonly, KEYS and ARGV included);
         * reads go to a table holding KEYS, ARGV and _G, then to the globals. */
        lua_newtable(L);
        env = lua_gettop(L);
        lua_createtable(L, 0, 3);
        int own = env + 1;
        push_string_array(L, r->keys, r->keylens, r->numkeys);
        lua_setfield(L, own, "KEYS");
        push_string_array(L, r->args, r->arglens, r->nargs);
        lua_setfield(L, own, "ARGV");
        lua_pushvalue(L, env);
        lua_setfield(L, own, "_G");
        lua_pushlightuserdata(L, &REG_GLOBALS);
        lua_rawget(L, LUA_REGISTRYINDEX);
        lua_createtable(L, 0, 1); /* own's metatable */
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, own);
        ro_mark(L, own, -1);
        lua_pop(L, 1);
        lua_pushlightuserdata(L, &REG_RUN_MT);
        lua_rawget(L, LUA_REGISTRYINDEX); /* template: __newindex, __metatable */
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, own);
        lua_setfield(L, -2, "__index");
        lua_getfield(L, -2, "__newindex");
        lua_setfield(L, -2, "__newindex");
        lua_getfield(L, -2, "__metatable");
        lua_setfield(L, -2, "__metatable");
        lua_setmetatable(L, env);
        lua_pop(L, 1);
        ro_mark(L, env, own);
        r->own_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops own */
        lua_pushvalue(L, env);
        r->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    /* The thread's globals are the environment too: loadstring'd code and
     * coroutines created by the script see the same KEYS/ARGV. */
    lua_pushvalue(L, env);
    lua_replace(L, LUA_GLOBALSINDEX);
    lua_pushlightuserdata(L, &REG_ERRH);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (preloaded) {
        lua_pushvalue(L, 1);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->factory_ref);
        lua_call(L, 0, 1);
    }
    lua_pushvalue(L, env);
    lua_setfenv(L, -2);
    lua_remove(L, env);
    if (preloaded) lua_remove(L, 1);
    return 2;
}

/* Arguments: the run, the script's status (0: it returned), its result or
 * error object. Writes the reply. */
/* Redis marks the error tables of commands' errors, which it counted when
 * the command failed: a script that raises or returns one is not counted
 * again. Read raw, as no metamethod may run here. */
static int error_counted(lua_State *L) {
    if (!lua_istable(L, -1)) return 0;
    lua_pushliteral(L, "ignore_error_stats_update");
    lua_rawget(L, -2);
    int counted = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return counted;
}

static int run_finish(lua_State *L) {
    script_run *r = lua_touserdata(L, 1);
    int ok = lua_toboolean(L, 2);
    lua_remove(L, 2);
    r->err_counted = error_counted(L);
    /* stack: ud, result -- the same depth as Redis's, so the nesting at which
     * "reached lua stack limit" appears is the same too */
    if (ok) conv_lua_to_resp(L, &r->out, r->resp, (r->run_flags & SCRIPT_RUN_RESP3) ? 3 : 2);
    else format_run_error(L, r, 0);
    return 0;
}

/* The C functions of a run's steps are made once (REG_RUN_PREPARE,
 * REG_RUN_FINISH): calling them needs no allocation, so nothing outside a
 * protected call can fail. */
static void push_step(lua_State *L, void *key) {
    lua_pushlightuserdata(L, key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

static void run_fiber_main(void *arg) {
    script_run *r = arg;
    lua_State *L = r->L;
    lua_settop(L, 0);
    int st = 0;
    push_step(L, &REG_RUN_PREPARE);
    lua_pushlightuserdata(L, r);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->factory_ref);
    if (lua_type(L, -1) == LUA_TSTRING) {
        /* A compiled body to load a copy of, here where no C call is below,
         * so that loading takes the nesting Redis's parser took. */
        size_t n;
        const char *d = lua_tolstring(L, -1, &n);
        st = luaL_loadbuffer(L, d, n, "@user_script");
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    if (st == 0) {
        st = lua_pcall(L, 2, LUA_MULTRET, 0);
    } else {
        lua_replace(L, 1); /* keep only the error object */
        lua_settop(L, 1);
    }
    if (st == 0) {
        /* stack: handler, function, arguments */
        if (r->dbg) {
            /* Only the script's own code is stepped through, not its setup. */
            r->dbg_since = clock_us();
            lua_sethook(L, debug_hook, LUA_MASKLINE | LUA_MASKCOUNT, HOOK_COUNT);
        }
        st = lua_pcall(L, lua_gettop(L) - 2, 1, 1);
        if (r->dbg) lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_COUNT);
        lua_remove(L, 1);
    }
    /* stack: the result or the error object */
    push_step(L, &REG_RUN_FINISH);
    lua_insert(L, 1);
    lua_pushlightuserdata(L, r);
    lua_insert(L, 2);
    lua_pushboolean(L, st == 0);
    lua_insert(L, 3);
    if (lua_pcall(L, 3, 0, 0) != 0) {
        /* The reply could not be made (memory), or the error object's own
         * metamethods failed: report the new error, read raw. */
        sb_reset(&r->out);
        r->err_counted = 0;
        format_run_error(L, r, 1);
    }
    if (r->out.oom) {
        sb_free(&r->out);
        sb_adds(&r->out, "-ERR Out of memory\r\n");
    }
    lua_settop(L, 0);
    r->state = RS_FINISHED;
}

/* Finished runs kept with their Lua thread and environment: a run costs no
 * thread, no environment tables and no buffers while the pool has one. */
#define RUN_SPARE_MAX 1024
#define RUN_SPARE_BUF_MAX (16 * 1024) /* larger buffers are not kept */

static void run_destroy(script_run *r) {
    script_engine *e = r->e;
    if (r->thread_ref != LUA_NOREF) luaL_unref(e->L, LUA_REGISTRYINDEX, r->thread_ref);
    if (r->env_ref != LUA_NOREF) luaL_unref(e->L, LUA_REGISTRYINDEX, r->env_ref);
    if (r->own_ref != LUA_NOREF) luaL_unref(e->L, LUA_REGISTRYINDEX, r->own_ref);
    sb_free(&r->argbuf);
    sb_free(&r->in);
    sb_free(&r->out);
    free(r->argv_buf);
    free(r->lens_buf);
    free(r->offs_buf);
    free(r);
}

static void spare_drop(script_engine *e) {
    while (e->spare) {
        script_run *r = e->spare;
        e->spare = r->next;
        run_destroy(r);
    }
    e->nspare = 0;
}

/* A cleared run: a spare one (its thread and buffers kept) or a new one. */
static script_run *run_alloc(script_engine *e) {
    script_run *r = e->spare;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r) return NULL;
        r->thread_ref = r->env_ref = r->own_ref = LUA_NOREF;
        return r;
    }
    e->spare = r->next;
    e->nspare--;
    memset(r, 0, offsetof(script_run, L));
    sb_reset(&r->argbuf);
    sb_reset(&r->in);
    sb_reset(&r->out);
    return r;
}

static void sb_trim(sbuf *b) {
    if (b->cap > RUN_SPARE_BUF_MAX) sb_free(b);
}

/* As Redis 7.0, a step of the collector every 50 finished runs, so garbage
 * does not pile up to twice the live heap between cycles; a step of 2 KB
 * keeps it as low as Redis's step of 50 does here (used_memory_lua about
 * 47 KB after 10 000 runs of an INCR script, 100 KB without steps), for
 * about 1% of EVALSHA's CPU where 50 costs 10%. */
#define GC_STEP_PERIOD 50
#define GC_STEP_KB 2

static void run_free(script_run *r) {
    script_engine *e = r->e;
    int tight = e->mem_limit && e->mem_used > e->mem_limit / 2;
    if (++e->gc_runs == GC_STEP_PERIOD) {
        e->gc_runs = 0;
        lua_gc(e->L, LUA_GCSTEP, GC_STEP_KB);
    }
    if (r->prev) r->prev->next = r->next;
    else e->runs = r->next;
    if (r->next) r->next->prev = r->prev;
    e->nruns--;
    if (r->fib) fiber_free(r->fib);
    ldb_free(r->dbg);
    r->dbg = NULL;
    sb_free(&r->dbg_buf);
    free(r->dbg_argv);
    free(r->dbg_lens);
    free(r->kill_err);
    free(r->fname);
    /* Only a run that ended by itself leaves its thread clean to reuse. */
    if (r->state == RS_FINISHED && !r->killed && r->L && !tight && e->nspare < RUN_SPARE_MAX) {
        if (r->own_ref != LUA_NOREF) {
            /* Drop this run's KEYS and ARGV (no allocation: the keys exist). */
            lua_rawgeti(e->L, LUA_REGISTRYINDEX, r->own_ref);
            lua_pushnil(e->L);
            lua_setfield(e->L, -2, "KEYS");
            lua_pushnil(e->L);
            lua_setfield(e->L, -2, "ARGV");
            lua_pop(e->L, 1);
        }
        sb_trim(&r->argbuf);
        sb_trim(&r->in);
        sb_trim(&r->out);
        if (r->args_cap > 64) { /* a huge call's arrays are not kept */
            free(r->argv_buf);
            free(r->lens_buf);
            free(r->offs_buf);
            r->argv_buf = NULL;
            r->lens_buf = r->offs_buf = NULL;
            r->args_cap = 0;
        }
        r->prev = NULL;
        r->next = e->spare;
        e->spare = r;
        e->nspare++;
        return;
    }
    run_destroy(r);
    /* Lua 5.1 has no emergency collection: reclaim a finished run's garbage
     * (and the spare threads) before it can make the next script fail. */
    if (tight) {
        spare_drop(e);
        lua_gc(e->L, LUA_GCCOLLECT, 0);
    }
}

/* The kill error: Redis's text, with the position the script stopped at. */
static void format_kill(script_run *r) {
    sb_reset(&r->out);
    if (r->kill_err) {
        conv_error_line(&r->out, r->kill_err, strlen(r->kill_err));
        return;
    }
    sbuf t = {0};
    sb_adds(&t, "ERR Script killed by user with SCRIPT KILL...");
    lua_Debug ar;
    if (lua_getstack(r->L, 0, &ar) && lua_getinfo(r->L, "Sl", &ar)) {
        if (strcmp(ar.what, "C") == 0 && !(lua_getstack(r->L, 1, &ar) && lua_getinfo(r->L, "Sl", &ar))) {
            /* no Lua caller: no position */
        } else {
            sb_addf(&t, " script: %s, on %s:%d.", run_label(r), ar.source, ar.currentline);
        }
    }
    conv_error_line(&r->out, t.p ? t.p : "", t.len);
    sb_free(&t);
}

/* Switch into the run for at most cap microseconds of CPU (what is left of
 * its slice counts too); afterwards act on why it came back. Returns 1 if
 * the run ended (and was freed). */
static int run_resume(script_run *r, unsigned long long cap) {
    script_engine *e = r->e;
    script_run *prev = e->current;
    int prev_enforce = e->enforce;
    e->current = r;
    e->enforce = 1;
    r->state = RS_RUNNING;
    r->slice_cap = cap;
    r->resume_start = clock_recent_us();
    fiber_resume(r->fib);
    unsigned long long ran = clock_recent_refresh() - r->resume_start;
    r->cpu_usec += ran;
    /* A yield ends the slice; anything else keeps counting towards it. */
    r->slice_used = r->state == RS_YIELDED ? 0 : r->slice_used + ran;
    e->current = prev;
    e->enforce = prev_enforce;
    switch (r->state) {
    case RS_FINISHED:
        e->host.done(e->host_ctx, r, r->out.p ? r->out.p : "", r->out.len);
        run_free(r);
        return 1;
    case RS_KILLED:
        format_kill(r);
        e->host.done(e->host_ctx, r, r->out.p ? r->out.p : "", r->out.len);
        run_free(r);
        return 1;
    case RS_YIELDED:
        if (e->host.yield) e->host.yield(e->host_ctx, r);
        break;
    case RS_DEBUG: {
        sbuf logs = {0};
        ldb_take_logs(r->dbg, &logs, 0);
        if (e->host.debug && !logs.oom) e->host.debug(e->host_ctx, r, logs.p, logs.len);
        sb_free(&logs);
        break;
    }
    default: break;
    }
    return 0;
}

static script_run *run_start(script_engine *e, const script *s, const script_function *f, int numkeys, char **keys,
                             size_t *keylens, int nargs, char **args, size_t *arglens, int run_flags,
                             void *userdata) {
    script_run *r = run_alloc(e);
    if (!r) return NULL;
    r->e = e;
    if (s) {
        memcpy(r->sha, s->sha, 41);
        r->script_flags = s->flags;
        r->factory_ref = s->factory_ref;
    } else {
        r->is_function = 1;
        r->fname = strdup(script_function_name(f));
        if (!r->fname) {
            run_destroy(r);
            return NULL;
        }
        r->script_flags = script_function_flags(f);
        r->factory_ref = engine_function_ref(f);
    }
    r->run_flags = run_flags;
    if ((run_flags & SCRIPT_RUN_DEBUG) && s) {
        r->dbg = ldb_new(s->body, s->len);
        if (!r->dbg) abort(); /* a few small blocks */
    }
    r->resp = 2;
    r->userdata = userdata;
    r->numkeys = numkeys;
    r->nargs = nargs;
    r->next = e->runs;
    if (e->runs) e->runs->prev = r;
    e->runs = r;
    e->nruns++;
    r->keys = keys;
    r->keylens = keylens;
    r->args = args;
    r->arglens = arglens;
    r->fib = fiber_new(e->pool, run_fiber_main, r);
    int ok = r->fib != NULL;
    if (ok && !r->L) {
        /* The thread is created outside the memory limit: a run always
         * starts, and fails inside if the script itself needs too much. */
        r->L = lua_newthread(e->L);
        r->thread_ref = luaL_ref(e->L, LUA_REGISTRYINDEX);
        lua_sethook(r->L, count_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
    if (!ok) {
        static const char oom[] = "-ERR Out of memory\r\n";
        e->host.done(e->host_ctx, r, oom, sizeof(oom) - 1);
        run_free(r);
        return NULL;
    }
    if (run_resume(r, e->time_slice_usec)) return NULL;
    r->keys = r->args = NULL; /* consumed by the first slice */
    r->keylens = r->arglens = NULL;
    return r;
}

script_run *script_run_start(script_engine *e, const script *s, int numkeys, char **keys, size_t *keylens,
                             int nargs, char **args, size_t *arglens, int run_flags, void *userdata) {
    return run_start(e, s, NULL, numkeys, keys, keylens, nargs, args, arglens, run_flags, userdata);
}

script_run *script_run_start_function(script_engine *e, const script_function *f, int numkeys, char **keys,
                                      size_t *keylens, int nargs, char **args, size_t *arglens, int run_flags,
                                      void *userdata) {
    return run_start(e, NULL, f, numkeys, keys, keylens, nargs, args, arglens, run_flags, userdata);
}

void *script_run_userdata(const script_run *r) { return r->userdata; }
int script_run_flags(const script_run *r) { return r->run_flags; }
int script_run_script_flags(const script_run *r) { return r->script_flags; }
const char *script_run_sha(const script_run *r) { return run_label(r); }
int script_run_resp(const script_run *r) { return r->resp; }
void script_run_mark_written(script_run *r) { r->written = 1; }
int script_run_has_written(const script_run *r) { return r->written; }
unsigned long long script_run_cpu_usec(const script_run *r) { return r->cpu_usec; }
int script_run_error_counted(const script_run *r) { return r->err_counted; }
int script_run_waiting(const script_run *r) { return r->state == RS_WAITING || r->in_callback; }

static void answer(script_run *r) {
    r->reply_ready = 1;
    if (r->in_callback) return; /* redis.call picks it up when call() returns */
    if (r->state == RS_WAITING) run_resume(r, r->e->time_slice_usec);
}

void script_run_reply(script_run *r, const redisReply *reply) {
    sb_reset(&r->in);
    conv_reply_to_resp(&r->in, reply);
    answer(r);
}

void script_run_reply_raw(script_run *r, const char *proto, size_t len) {
    sb_reset(&r->in);
    sb_add(&r->in, proto, len);
    answer(r);
}

void script_run_reply_error(script_run *r, const char *err) {
    sb_reset(&r->in);
    r->in_local_error = 1;
    sb_add(&r->in, "-", 1);
    sb_adds(&r->in, err);
    sb_add(&r->in, "\r\n", 2);
    answer(r);
}

void script_run_continue(script_run *r) {
    if (r->state == RS_YIELDED) run_resume(r, r->e->time_slice_usec);
}

void script_run_continue_for(script_run *r, unsigned usec) {
    unsigned long long slice = r->e->time_slice_usec;
    if (r->state == RS_YIELDED) run_resume(r, usec < slice ? usec : slice);
}

void script_run_kill(script_run *r, const char *err) {
    if (r->killed) return;
    r->killed = 1;
    if (err) r->kill_err = strdup(err);
    if (r->in_callback) return; /* the fiber leaves when the callback returns */
    script_engine *e = r->e;
    format_kill(r);
    e->host.done(e->host_ctx, r, r->out.p ? r->out.p : "", r->out.len);
    run_free(r);
}

/* ---- debugging sessions ---- */

void script_run_debug_command(script_run *r, int argc, char **argv, size_t *lens) {
    if (r->state != RS_DEBUG || argc < 1) return;
    /* A copy: the command may outlive the host's buffer (redis waits for the store). */
    char **v = realloc(r->dbg_argv, sizeof(char *) * (size_t)argc);
    if (v) r->dbg_argv = v;
    size_t *l = v ? realloc(r->dbg_lens, sizeof(size_t) * (size_t)argc) : NULL;
    if (l) r->dbg_lens = l;
    if (!l) abort();
    sb_reset(&r->dbg_buf);
    size_t *offs = malloc(sizeof(size_t) * (size_t)argc);
    if (!offs) abort();
    for (int i = 0; i < argc; i++) {
        offs[i] = r->dbg_buf.len;
        sb_add(&r->dbg_buf, argv[i], lens[i]);
        sb_add(&r->dbg_buf, "", 1);
        r->dbg_lens[i] = lens[i];
    }
    if (r->dbg_buf.oom) abort();
    for (int i = 0; i < argc; i++) r->dbg_argv[i] = r->dbg_buf.p + offs[i];
    free(offs);
    r->dbg_argc = argc;
    run_resume(r, r->e->time_slice_usec);
}

int script_run_debugging(const script_run *r) { return r->dbg != NULL; }
int script_run_debug_stopped(const script_run *r) { return r->state == RS_DEBUG; }

void script_run_debug_detach(script_run *r) {
    if (!r->dbg) return;
    ldb_detach(r->dbg);
    if (r->state == RS_DEBUG) run_resume(r, r->e->time_slice_usec);
}

const char *script_run_debug_final(script_run *r, size_t *len) {
    *len = 0;
    if (!r->dbg) return NULL;
    sb_reset(&r->dbg_buf);
    ldb_take_logs(r->dbg, &r->dbg_buf, 1);
    if (r->dbg_buf.oom) return NULL;
    *len = r->dbg_buf.len;
    return r->dbg_buf.p;
}
