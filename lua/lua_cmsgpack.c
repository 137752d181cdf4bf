/* cmsgpack: MessagePack for Lua scripts, compatible with the lua-cmsgpack
 * 0.4.0 library embedded in Redis 7.0: the same encoding choices, the same
 * decoded values, the same return conventions and error texts, and the
 * same stack-limit errors at the same depths.
 *
 * Encoding: integral numbers use the smallest integer format, other numbers
 * float32 when exact and float64 otherwise; tables whose keys are exactly
 * 1..n become arrays, other tables maps; tables nested deeper than
 * MP_MAX_NESTING and values with no MessagePack form become nil. */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua/lua_libs.h"

#define MP_MAX_NESTING 16

/* Scratch memory owned by a userdata, so that a Lua error raised halfway
 * (a stack limit, a nil map key, memory) never leaks it: the collector
 * frees whatever an interrupted call left behind. */
#define MP_SCRATCH_MT "evalproxy.cmsgpack.scratch"

typedef struct {
    void *p;
    size_t cap; /* bytes */
} mp_scratch;

static void mp_scratch_release(lua_State *L, mp_scratch *s)
{
    if (s->p != NULL) {
        void *ud;
        lua_Alloc alloc = lua_getallocf(L, &ud);
        alloc(ud, s->p, s->cap, 0);
        s->p = NULL;
        s->cap = 0;
    }
}

static int mp_scratch_gc(lua_State *L)
{
    mp_scratch_release(L, lua_touserdata(L, 1));
    return 0;
}

/* Uses the state's allocator so the script memory limit covers it. */
static void *mp_scratch_reserve(lua_State *L, mp_scratch *s, size_t need)
{
    if (need <= s->cap)
        return s->p;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            luaL_error(L, "not enough memory");
        cap *= 2;
    }
    void *ud;
    lua_Alloc alloc = lua_getallocf(L, &ud);
    void *p = alloc(ud, s->p, s->cap, cap);
    if (p == NULL)
        luaL_error(L, "not enough memory");
    s->p = p;
    s->cap = cap;
    return p;
}

/* Pushes a new scratch userdata. */
static mp_scratch *mp_scratch_push(lua_State *L)
{
    mp_scratch *s = lua_newuserdata(L, sizeof *s);
    s->p = NULL;
    s->cap = 0;
    luaL_getmetatable(L, MP_SCRATCH_MT);
    lua_setmetatable(L, -2);
    return s;
}

/* Double to integer conversions giving the results x86-64 gives for
 * out-of-range inputs (the "integer indefinite" value), which is what the
 * plain casts in Redis's build produce; written out to stay defined. */
static int64_t mp_to_i64(double d)
{
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        return (int64_t)d;
    return INT64_MIN;
}

static int mp_to_int(double d)
{
    if (d > -2147483649.0 && d < 2147483648.0)
        return (int)d;
    return INT_MIN;
}

/* ------------------------------------------------------------------ */
/* Encoding */

typedef struct {
    lua_State *L;
    mp_scratch *buf;
    size_t len;
} mp_out;

static void mp_put(mp_out *o, const void *src, size_t n)
{
    if (n == 0)
        return;
    if (n > SIZE_MAX - o->len)
        luaL_error(o->L, "not enough memory");
    unsigned char *p = mp_scratch_reserve(o->L, o->buf, o->len + n);
    memcpy(p + o->len, src, n);
    o->len += n;
}

/* Big-endian bytes of 'v' into out[0..n). */
static void mp_be(unsigned char *out, uint64_t v, int n)
{
    for (int k = n - 1; k >= 0; k--) {
        out[k] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* Writes a type byte followed by an n-byte big-endian value. */
static void mp_put_tagged(mp_out *o, unsigned char tag, uint64_t v, int n)
{
    unsigned char b[9];
    b[0] = tag;
    mp_be(b + 1, v, n);
    mp_put(o, b, (size_t)n + 1);
}

static void mp_put_str(mp_out *o, const char *s, size_t len)
{
    if (len < 32) {
        unsigned char b = (unsigned char)(0xa0 | len);
        mp_put(o, &b, 1);
    } else if (len <= 0xff) {
        mp_put_tagged(o, 0xd9, len, 1);
    } else if (len <= 0xffff) {
        mp_put_tagged(o, 0xda, len, 2);
    } else {
        mp_put_tagged(o, 0xdb, len & 0xffffffffu, 4);
    }
    mp_put(o, s, len);
}

static void mp_put_double(mp_out *o, double d)
{
    float f = (float)d;
    if (d == (double)f) {
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        mp_put_tagged(o, 0xca, bits, 4);
    } else {
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        mp_put_tagged(o, 0xcb, bits, 8);
    }
}

static void mp_put_int(mp_out *o, int64_t n)
{
    uint64_t u = (uint64_t)n;
    if (n >= 0) {
        if (n <= 127) {
            unsigned char b = (unsigned char)n;
            mp_put(o, &b, 1);
        } else if (n <= 0xff) {
            mp_put_tagged(o, 0xcc, u, 1);
        } else if (n <= 0xffff) {
            mp_put_tagged(o, 0xcd, u, 2);
        } else if (n <= 0xffffffffLL) {
            mp_put_tagged(o, 0xce, u, 4);
        } else {
            mp_put_tagged(o, 0xcf, u, 8);
        }
    } else {
        if (n >= -32) {
            unsigned char b = (unsigned char)(u & 0xff);
            mp_put(o, &b, 1);
        } else if (n >= -128) {
            mp_put_tagged(o, 0xd0, u & 0xff, 1);
        } else if (n >= -32768) {
            mp_put_tagged(o, 0xd1, u & 0xffff, 2);
        } else if (n >= -2147483648LL) {
            mp_put_tagged(o, 0xd2, u & 0xffffffffu, 4);
        } else {
            mp_put_tagged(o, 0xd3, u, 8);
        }
    }
}

/* Array and map headers share their layout: fix form, 16 or 32 bits. */
static void mp_put_container(mp_out *o, unsigned char fix, unsigned char tag16, uint64_t n)
{
    if (n <= 15) {
        unsigned char b = (unsigned char)(fix | n);
        mp_put(o, &b, 1);
    } else if (n <= 65535) {
        mp_put_tagged(o, tag16, n, 2);
    } else {
        mp_put_tagged(o, (unsigned char)(tag16 + 1), n & 0xffffffffu, 4);
    }
}

static void mp_encode_top(mp_out *o, int level);

/* True when the keys of the table on top are exactly the integers 1..n. */
static int mp_table_is_array(lua_State *L)
{
    int top = lua_gettop(L);
    int count = 0, max = 0;

    luaL_checkstack(L, 2, "in function table_is_an_array");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        lua_Number n;
        if (lua_type(L, -1) != LUA_TNUMBER || (n = lua_tonumber(L, -1)) <= 0 ||
            isinf(n) || (lua_Number)mp_to_int(n) != n) {
            lua_settop(L, top);
            return 0;
        }
        if (n > max)
            max = mp_to_int(n);
        count++;
    }
    lua_settop(L, top);
    return max == count;
}

static void mp_encode_array(mp_out *o, int level)
{
    lua_State *L = o->L;
    size_t len = lua_objlen(L, -1);

    mp_put_container(o, 0x90, 0xdc, len);
    luaL_checkstack(L, 1, "in function mp_encode_lua_table_as_array");
    for (size_t j = 1; j <= len; j++) {
        lua_pushnumber(L, (lua_Number)j);
        lua_gettable(L, -2);
        mp_encode_top(o, level + 1);
    }
}

static void mp_encode_map(mp_out *o, int level)
{
    lua_State *L = o->L;
    size_t len = 0;

    luaL_checkstack(L, 3, "in function mp_encode_lua_table_as_map");
    /* The header needs the pair count first. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        len++;
    }
    mp_put_container(o, 0x80, 0xde, len);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2); /* the key is encoded from a copy: next() needs it */
        mp_encode_top(o, level + 1);
        mp_encode_top(o, level + 1);
    }
}

/* Encodes the value on top of the stack and pops it. */
static void mp_encode_top(mp_out *o, int level)
{
    lua_State *L = o->L;
    int t = lua_type(L, -1);

    /* Bounds the walk through self-referencing tables. */
    if (t == LUA_TTABLE && level == MP_MAX_NESTING)
        t = LUA_TNIL;
    switch (t) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        mp_put_str(o, s, len);
        break;
    }
    case LUA_TBOOLEAN: {
        unsigned char b = lua_toboolean(L, -1) ? 0xc3 : 0xc2;
        mp_put(o, &b, 1);
        break;
    }
    case LUA_TNUMBER: {
        lua_Number n = lua_tonumber(L, -1);
        int64_t i = mp_to_i64(n);
        if (!isinf(n) && (lua_Number)i == n)
            mp_put_int(o, i);
        else
            mp_put_double(o, n);
        break;
    }
    case LUA_TTABLE:
        if (mp_table_is_array(L))
            mp_encode_array(o, level);
        else
            mp_encode_map(o, level);
        break;
    default: {
        unsigned char b = 0xc0;
        mp_put(o, &b, 1);
        break;
    }
    }
    lua_pop(L, 1);
}

/* pack(v1, ...): the encodings of all arguments, concatenated. */
static int mp_pack(lua_State *L)
{
    int nargs = lua_gettop(L);
    mp_out o = {L, NULL, 0};

    if (nargs == 0)
        return luaL_argerror(L, 0, "MessagePack pack needs input.");
    if (!lua_checkstack(L, nargs))
        return luaL_argerror(L, 0, "Too many arguments for MessagePack pack.");
    for (int i = 1; i <= nargs; i++) {
        luaL_checkstack(L, 1, "in function mp_check");
        lua_pushvalue(L, i);
        if (i == 1) {
            /* Slot 1 is free once its value is copied: the buffer's owner
             * goes there, so the stack depth (and which stack-limit errors
             * fire) stays exactly that of Redis's library. */
            if (!lua_checkstack(L, 2))
                luaL_error(L, "stack overflow (in function mp_check)");
            o.buf = mp_scratch_push(L);
            lua_replace(L, 1);
        }
        mp_encode_top(&o, 0);
        lua_pushlstring(L, o.buf->p != NULL ? o.buf->p : "", o.len);
        o.len = 0;
    }
    mp_scratch_release(L, o.buf);
    lua_concat(L, nargs);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Decoding */

enum { MP_OK, MP_ERR_EOF, MP_ERR_BADFMT };

typedef struct {
    const unsigned char *p;
    size_t left;
} mp_cur;

/* An array or map being filled. */
typedef struct {
    size_t left;   /* elements (pairs for maps) still to read */
    int index;     /* next array index */
    int is_map;
    int has_key;   /* map: key read, value pending */
} mp_frame;

static uint64_t mp_read_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v = (v << 8) | p[k];
    return v;
}

#define MP_NEED(c, n)                                                          \
    do {                                                                       \
        if ((c)->left < (size_t)(n))                                           \
            return MP_ERR_EOF;                                                 \
    } while (0)

static void mp_skip(mp_cur *c, size_t n)
{
    c->p += n;
    c->left -= n;
}

/* Pushes a string whose header is 'hdr' bytes and whose length is 'len'. */
static int mp_read_str(lua_State *L, mp_cur *c, size_t hdr, size_t len)
{
    mp_skip(c, hdr);
    MP_NEED(c, len);
    lua_pushlstring(L, (const char *)c->p, len);
    mp_skip(c, len);
    return MP_OK;
}

/* Decodes one complete object (with everything nested in it) and leaves it
 * on the stack. Iterative, so hostile nesting costs no C stack; the Lua
 * stack use and its limit checks match Redis's recursive decoder, including
 * where "too many return values" and friends are raised. */
static int mp_decode_one(lua_State *L, mp_cur *c, mp_scratch *frames_mem)
{
    mp_frame *frames = frames_mem->p;
    size_t depth = 0;

    for (;;) {
        if (depth > 0) {
            mp_frame *f = &frames[depth - 1];
            if (f->left == 0) {
                depth--;
                goto attach; /* the finished table is on top */
            }
            if (!f->is_map)
                lua_pushnumber(L, f->index++);
        }

        MP_NEED(c, 1);
        /* A stream may unpack to any number of results. */
        luaL_checkstack(L, 1,
                        "too many return values at once; use unpack_one or unpack_limit instead.");
        {
            unsigned char b = c->p[0];
            size_t count = 0;
            int is_map = 0;

            if (b <= 0x7f) {
                lua_pushinteger(L, b);
                mp_skip(c, 1);
                goto attach;
            } else if (b >= 0xe0) {
                lua_pushinteger(L, (signed char)b);
                mp_skip(c, 1);
                goto attach;
            } else if (b >= 0xa0 && b <= 0xbf) {
                size_t len = b & 0x1f;
                MP_NEED(c, 1 + len);
                (void)mp_read_str(L, c, 1, len);
                goto attach;
            } else if (b >= 0x80 && b <= 0x9f) {
                count = b & 0x0f;
                is_map = b <= 0x8f;
                mp_skip(c, 1);
                goto open;
            }

            switch (b) {
            case 0xc0: lua_pushnil(L); mp_skip(c, 1); goto attach;
            case 0xc2: lua_pushboolean(L, 0); mp_skip(c, 1); goto attach;
            case 0xc3: lua_pushboolean(L, 1); mp_skip(c, 1); goto attach;
            case 0xcc:
                MP_NEED(c, 2);
                lua_pushinteger(L, c->p[1]);
                mp_skip(c, 2);
                goto attach;
            case 0xcd:
                MP_NEED(c, 3);
                lua_pushinteger(L, (lua_Integer)mp_read_be(c->p + 1, 2));
                mp_skip(c, 3);
                goto attach;
            case 0xce:
                MP_NEED(c, 5);
                lua_pushinteger(L, (lua_Integer)mp_read_be(c->p + 1, 4));
                mp_skip(c, 5);
                goto attach;
            case 0xcf:
                /* Values past 2^63 come out negative, as in Redis. */
                MP_NEED(c, 9);
                lua_pushinteger(L, (lua_Integer)(int64_t)mp_read_be(c->p + 1, 8));
                mp_skip(c, 9);
                goto attach;
            case 0xd0:
                MP_NEED(c, 2);
                lua_pushinteger(L, (int8_t)c->p[1]);
                mp_skip(c, 2);
                goto attach;
            case 0xd1:
                MP_NEED(c, 3);
                lua_pushinteger(L, (int16_t)mp_read_be(c->p + 1, 2));
                mp_skip(c, 3);
                goto attach;
            case 0xd2:
                MP_NEED(c, 5);
                lua_pushinteger(L, (int32_t)mp_read_be(c->p + 1, 4));
                mp_skip(c, 5);
                goto attach;
            case 0xd3:
                MP_NEED(c, 9);
                lua_pushnumber(L, (lua_Number)(int64_t)mp_read_be(c->p + 1, 8));
                mp_skip(c, 9);
                goto attach;
            case 0xca: {
                MP_NEED(c, 5);
                uint32_t bits = (uint32_t)mp_read_be(c->p + 1, 4);
                float f;
                memcpy(&f, &bits, sizeof f);
                lua_pushnumber(L, f);
                mp_skip(c, 5);
                goto attach;
            }
            case 0xcb: {
                MP_NEED(c, 9);
                uint64_t bits = mp_read_be(c->p + 1, 8);
                double d;
                memcpy(&d, &bits, sizeof d);
                lua_pushnumber(L, d);
                mp_skip(c, 9);
                goto attach;
            }
            case 0xd9: {
                MP_NEED(c, 2);
                size_t len = c->p[1];
                MP_NEED(c, 2 + len);
                (void)mp_read_str(L, c, 2, len);
                goto attach;
            }
            case 0xda: {
                MP_NEED(c, 3);
                size_t len = (size_t)mp_read_be(c->p + 1, 2);
                MP_NEED(c, 3 + len);
                (void)mp_read_str(L, c, 3, len);
                goto attach;
            }
            case 0xdb: {
                MP_NEED(c, 5);
                size_t len = (size_t)mp_read_be(c->p + 1, 4);
                if (mp_read_str(L, c, 5, len) != MP_OK)
                    return MP_ERR_EOF;
                goto attach;
            }
            case 0xdc:
            case 0xde:
                MP_NEED(c, 3);
                count = (size_t)mp_read_be(c->p + 1, 2);
                is_map = b == 0xde;
                mp_skip(c, 3);
                goto open;
            case 0xdd:
            case 0xdf:
                MP_NEED(c, 5);
                count = (size_t)mp_read_be(c->p + 1, 4);
                is_map = b == 0xdf;
                mp_skip(c, 5);
                goto open;
            default:
                /* reserved, bin, ext and fixext types are not decoded */
                return MP_ERR_BADFMT;
            }

        open:
            lua_newtable(L);
            if (!is_map)
                luaL_checkstack(L, 1, "in function mp_decode_to_lua_array");
            if ((depth + 1) > SIZE_MAX / sizeof(mp_frame))
                luaL_error(L, "not enough memory");
            frames = mp_scratch_reserve(L, frames_mem, (depth + 1) * sizeof(mp_frame));
            frames[depth].left = count;
            frames[depth].index = 1;
            frames[depth].is_map = is_map;
            frames[depth].has_key = 0;
            depth++;
            continue;
        }

    attach:
        /* A complete value is on top; store it into its container. */
        if (depth == 0)
            return MP_OK;
        {
            mp_frame *f = &frames[depth - 1];
            if (f->is_map && !f->has_key) {
                f->has_key = 1;
            } else {
                lua_settable(L, -3);
                f->has_key = 0;
                f->left--;
            }
        }
    }
}

static int mp_unpack_full(lua_State *L, lua_Integer limit, lua_Integer offset)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int decode_all = (!limit && !offset);
    int cnt = 0;

    /* The second number printed is the input length, as in Redis. */
    if (offset < 0 || limit < 0)
        return luaL_error(L, "Invalid request to unpack with offset of %d and limit of %d.",
                          (int)offset, (int)len);
    if ((size_t)offset > len)
        return luaL_error(L, "Start offset %d greater than input length %d.", (int)offset,
                          (int)len);
    if (decode_all)
        limit = INT_MAX;

    mp_cur c = {(const unsigned char *)s + offset, len - (size_t)offset};
    mp_scratch *frames = NULL;
    if (c.left > 0) {
        /* The frame stack's owner takes slot 1, keeping the stack depth
         * that of Redis's; the input string stays alive through the
         * owner's environment table. */
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, 1);
        frames = mp_scratch_push(L);
        lua_insert(L, -2);
        lua_setfenv(L, -2);
        lua_replace(L, 1);
    }

    for (; c.left > 0 && cnt < limit; cnt++) {
        int rc = mp_decode_one(L, &c, frames);
        if (rc == MP_ERR_EOF)
            return luaL_error(L, "Missing bytes in input.");
        if (rc == MP_ERR_BADFMT)
            return luaL_error(L, "Bad data format in input.");
    }
    if (frames != NULL)
        mp_scratch_release(L, frames);

    if (!decode_all) {
        size_t next = len - c.left;
        luaL_checkstack(L, 1, "in function mp_unpack_full");
        /* -1 once the whole input is consumed. */
        lua_pushinteger(L, c.left == 0 ? -1 : (lua_Integer)next);
        /* Results are everything above the input string at slot 1. */
        lua_insert(L, 2);
        cnt++;
    }
    return cnt;
}

/* unpack(s): every object in s. */
static int mp_unpack(lua_State *L)
{
    return mp_unpack_full(L, 0, 0);
}

/* unpack_one(s [, offset]): next offset (-1 at the end), then one object. */
static int mp_unpack_one(lua_State *L)
{
    lua_Integer offset = luaL_optinteger(L, 2, 0);
    /* Not settop(1): with no argument at all the error must say "no value". */
    lua_pop(L, lua_gettop(L) - 1);
    return mp_unpack_full(L, 1, offset);
}

/* unpack_limit(s, limit [, offset]): next offset, then up to limit objects. */
static int mp_unpack_limit(lua_State *L)
{
    lua_Integer limit = luaL_checkinteger(L, 2);
    lua_Integer offset = luaL_optinteger(L, 3, 0);
    lua_pop(L, lua_gettop(L) - 1);
    return mp_unpack_full(L, limit, offset);
}

static const luaL_Reg mp_funcs[] = {
    {"pack", mp_pack},
    {"unpack", mp_unpack},
    {"unpack_one", mp_unpack_one},
    {"unpack_limit", mp_unpack_limit},
    {NULL, NULL},
};

int luaopen_cmsgpack(lua_State *L)
{
    luaL_newmetatable(L, MP_SCRATCH_MT);
    lua_pushcfunction(L, mp_scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    /* Built by hand and published as a global only (not in
     * package.loaded), with the same fields in the same order. */
    lua_newtable(L);
    for (const luaL_Reg *r = mp_funcs; r->name != NULL; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pushliteral(L, "cmsgpack");
    lua_setfield(L, -2, "_NAME");
    lua_pushliteral(L, "lua-cmsgpack 0.4.0");
    lua_setfield(L, -2, "_VERSION");
    lua_pushliteral(L, "Copyright (C) 2012, Salvatore Sanfilippo");
    lua_setfield(L, -2, "_COPYRIGHT");
    lua_pushliteral(L, "MessagePack C implementation for Lua");
    lua_setfield(L, -2, "_DESCRIPTION");

    lua_pushvalue(L, -1);
    lua_setglobal(L, "cmsgpack");
    return 1;
}
