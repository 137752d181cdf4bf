/* struct: binary packing for Lua scripts, compatible with the "struct"
 * library embedded in Redis 7.0 (format characters, results, error texts).
 *
 * Formats: '<' '>' byte order, '!n' alignment, ' ' ignored, 'x' pad byte,
 * 'b' 'B' 'h' 'H' 'l' 'L' 'T' 'i[n]' 'I[n]' integers, 'f' 'd' floats,
 * 'c[n]' fixed chars (n = 0: whole string / length read just before),
 * 's' zero-terminated string. */
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua/lua_libs.h"

/* Largest 'i'/'I' width accepted. */
#define ST_MAX_INT_BYTES 32

/* Default for a bare '!': the strictest alignment a C struct member gets. */
struct st_align_probe {
    char c;
    double d;
};
#define ST_PROBE_PAD (offsetof(struct st_align_probe, d))
#define ST_MAX_ALIGN ((int)(ST_PROBE_PAD > sizeof(int) ? ST_PROBE_PAD : sizeof(int)))

typedef struct {
    int little; /* byte order in effect */
    int align;  /* current maximum alignment */
} st_opts;

static int st_host_little(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static void st_defaults(st_opts *o)
{
    o->little = st_host_little();
    o->align = 1;
}

static int st_is_digit(int ch) { return ch >= '0' && ch <= '9'; }

static int st_is_alnum(int ch)
{
    return st_is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int st_is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

/* Decimal count after an option; 'dflt' when none is written. */
static int st_read_count(lua_State *L, const char **fmt, int dflt)
{
    if (!st_is_digit((unsigned char)**fmt))
        return dflt;
    int acc = 0;
    do {
        int digit = **fmt - '0';
        if (acc > (INT_MAX - digit) / 10)
            luaL_error(L, "integral size overflow");
        acc = acc * 10 + digit;
        (*fmt)++;
    } while (st_is_digit((unsigned char)**fmt));
    return acc;
}

/* Bytes an option occupies; 0 for the ones that occupy none (or, for 's'
 * and 'c0', a size only known from the data). */
static size_t st_opt_size(lua_State *L, int opt, const char **fmt)
{
    switch (opt) {
    case 'b': case 'B': return sizeof(char);
    case 'h': case 'H': return sizeof(short);
    case 'l': case 'L': return sizeof(long);
    case 'T': return sizeof(size_t);
    case 'f': return sizeof(float);
    case 'd': return sizeof(double);
    case 'x': return 1;
    case 'c': return (size_t)st_read_count(L, fmt, 1);
    case 'i': case 'I': {
        int n = st_read_count(L, fmt, (int)sizeof(int));
        if (n > ST_MAX_INT_BYTES)
            luaL_error(L, "integral size %d is larger than limit of %d", n, ST_MAX_INT_BYTES);
        return (size_t)n;
    }
    default: return 0;
    }
}

/* Padding needed before an item of 'size' bytes at offset 'at'. The mask
 * arithmetic is kept as is even for widths that are not powers of two
 * ('i3'), since scripts may rely on the resulting layout. */
static size_t st_padding(size_t at, const st_opts *o, int opt, size_t size)
{
    if (size == 0 || opt == 'c')
        return 0;
    if (size > (size_t)o->align)
        size = (size_t)o->align;
    return (size - (at & (size - 1))) & (size - 1);
}

/* Options that only change state: ' ', '<', '>', '!n'. Anything else
 * reaching here is not a valid option. */
static void st_control(lua_State *L, int opt, const char **fmt, st_opts *o)
{
    switch (opt) {
    case ' ': return;
    case '<': o->little = 1; return;
    case '>': o->little = 0; return;
    case '!': {
        int a = st_read_count(L, fmt, ST_MAX_ALIGN);
        if (!st_is_pow2(a))
            luaL_error(L, "alignment %d is not a power of 2", a);
        o->align = a;
        return;
    }
    default:
        luaL_argerror(L, 1, lua_pushfstring(L, "invalid format option '%c'", opt));
    }
}

/* Double to 64-bit integer conversions with the results x86-64 gives for
 * out-of-range inputs (NaN and overflow yield INT64_MIN), which is what
 * Redis's plain C casts produce there; done explicitly to stay defined. */
static int64_t st_to_i64(double d)
{
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        return (int64_t)d;
    return INT64_MIN;
}

static uint64_t st_to_u64(double d)
{
    if (d >= 9223372036854775808.0)
        return (uint64_t)st_to_i64(d - 9223372036854775808.0) ^ UINT64_C(0x8000000000000000);
    return (uint64_t)st_to_i64(d);
}

/* Writes 'size' bytes of the 64-bit value; wider fields get zero bytes
 * beyond the eighth, even for negative numbers. */
static void st_put_int(lua_State *L, luaL_Buffer *b, int arg, int little, size_t size)
{
    lua_Number n = luaL_checknumber(L, arg);
    uint64_t v = n < 0 ? (uint64_t)st_to_i64(n) : st_to_u64(n);
    char out[ST_MAX_INT_BYTES];
    for (size_t k = 0; k < size; k++) {
        out[little ? k : size - 1 - k] = (char)(v & 0xff);
        v >>= 8;
    }
    luaL_addlstring(b, out, size);
}

/* Copies 'n' bytes so they are in 'little' order, given host order input. */
static void st_order_bytes(char *dst, const char *src, size_t n, int little)
{
    if (little == st_host_little()) {
        memcpy(dst, src, n);
    } else {
        for (size_t k = 0; k < n; k++)
            dst[k] = src[n - 1 - k];
    }
}

/* Only the last eight significant bytes of a wide field are kept. For the
 * sign mask the shift count is taken modulo 64 as x86-64 does, which is
 * what decides the sign of widths above 8 and of 'i0' in Redis. */
static lua_Number st_get_int(const char *p, int little, int is_signed, size_t size)
{
    uint64_t v = 0;
    for (size_t k = 0; k < size; k++) {
        size_t at = little ? size - 1 - k : k;
        v = (v << 8) | (unsigned char)p[at];
    }
    if (!is_signed)
        return (lua_Number)v;
    uint64_t mask = ~UINT64_C(0) << ((size * 8 - 1) & 63);
    if (v & mask)
        v |= mask;
    return (lua_Number)(int64_t)v;
}

static int st_is_int_opt(int opt)
{
    switch (opt) {
    case 'b': case 'B': case 'h': case 'H': case 'l': case 'L':
    case 'T': case 'i': case 'I':
        return 1;
    default:
        return 0;
    }
}

static int st_pack(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    st_opts o;
    luaL_Buffer b;
    int arg = 2;
    size_t total = 0;

    st_defaults(&o);
    /* A nil right after the arguments makes a missing one read as nil
     * rather than as a piece of the buffer. */
    lua_pushnil(L);
    luaL_buffinit(L, &b);
    while (*fmt != '\0') {
        int opt = (unsigned char)*fmt++;
        size_t size = st_opt_size(L, opt, &fmt);
        size_t pad = st_padding(total, &o, opt, size);
        total += pad;
        while (pad-- > 0)
            luaL_addchar(&b, '\0');
        if (st_is_int_opt(opt)) {
            st_put_int(L, &b, arg++, o.little, size);
        } else if (opt == 'x') {
            luaL_addchar(&b, '\0');
        } else if (opt == 'f') {
            float f = (float)luaL_checknumber(L, arg++);
            char raw[sizeof f];
            st_order_bytes(raw, (const char *)&f, sizeof f, o.little);
            luaL_addlstring(&b, raw, sizeof f);
        } else if (opt == 'd') {
            double d = luaL_checknumber(L, arg++);
            char raw[sizeof d];
            st_order_bytes(raw, (const char *)&d, sizeof d, o.little);
            luaL_addlstring(&b, raw, sizeof d);
        } else if (opt == 'c' || opt == 's') {
            size_t len;
            const char *s = luaL_checklstring(L, arg++, &len);
            if (size == 0)
                size = len;
            /* Reported against the following argument, as Redis does. */
            luaL_argcheck(L, len >= size, arg, "string too short");
            luaL_addlstring(&b, s, size);
            if (opt == 's') {
                luaL_addchar(&b, '\0');
                size++;
            }
        } else {
            st_control(L, opt, &fmt, &o);
        }
        total += size;
    }
    luaL_pushresult(&b);
    return 1;
}

static int st_unpack(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    /* Negative offsets wrap to huge positions and fail the length check. */
    size_t pos = (size_t)luaL_optinteger(L, 3, 1);
    int results = 0;
    st_opts o;

    luaL_argcheck(L, pos > 0, 3, "offset must be 1 or greater");
    pos--;
    st_defaults(&o);
    while (*fmt != '\0') {
        int opt = (unsigned char)*fmt++;
        size_t size = st_opt_size(L, opt, &fmt);
        pos += st_padding(pos, &o, opt, size);
        luaL_argcheck(L, size <= len && pos <= len - size, 2, "data string too short");
        luaL_checkstack(L, 2, "too many results");
        if (st_is_int_opt(opt)) {
            int is_signed = opt >= 'a' && opt <= 'z';
            lua_pushnumber(L, st_get_int(data + pos, o.little, is_signed, size));
            results++;
        } else if (opt == 'x') {
            /* padding only */
        } else if (opt == 'f') {
            float f;
            st_order_bytes((char *)&f, data + pos, sizeof f, o.little);
            lua_pushnumber(L, f);
            results++;
        } else if (opt == 'd') {
            double d;
            st_order_bytes((char *)&d, data + pos, sizeof d, o.little);
            lua_pushnumber(L, d);
            results++;
        } else if (opt == 'c') {
            if (size == 0) {
                /* Length comes from the value unpacked just before. */
                if (results == 0 || !lua_isnumber(L, -1))
                    luaL_error(L, "format 'c0' needs a previous size");
                size = (size_t)st_to_u64(lua_tonumber(L, -1));
                lua_pop(L, 1);
                results--;
                luaL_argcheck(L, size <= len && pos <= len - size, 2, "data string too short");
            }
            lua_pushlstring(L, data + pos, size);
            results++;
        } else if (opt == 's') {
            const char *end = memchr(data + pos, '\0', len - pos);
            if (end == NULL)
                luaL_error(L, "unfinished string in data");
            size = (size_t)(end - (data + pos)) + 1;
            lua_pushlstring(L, data + pos, size - 1);
            results++;
        } else {
            st_control(L, opt, &fmt, &o);
        }
        pos += size;
    }
    lua_pushinteger(L, (lua_Integer)(pos + 1));
    return results + 1;
}

static int st_size(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    size_t pos = 0;
    st_opts o;

    st_defaults(&o);
    while (*fmt != '\0') {
        int opt = (unsigned char)*fmt++;
        size_t size = st_opt_size(L, opt, &fmt);
        pos += st_padding(pos, &o, opt, size);
        if (opt == 's')
            luaL_argerror(L, 1, "option 's' has no fixed size");
        else if (opt == 'c' && size == 0)
            luaL_argerror(L, 1, "option 'c0' has no fixed size");
        /* Unknown letters and digits count as zero bytes here; only
         * punctuation goes through the option check. */
        if (!st_is_alnum(opt))
            st_control(L, opt, &fmt, &o);
        pos += size;
    }
    lua_pushinteger(L, (lua_Integer)pos);
    return 1;
}

static const luaL_Reg st_funcs[] = {
    {"pack", st_pack},
    {"unpack", st_unpack},
    {"size", st_size},
    {NULL, NULL},
};

int luaopen_struct(lua_State *L)
{
    luaL_register(L, "struct", st_funcs);
    return 1;
}
