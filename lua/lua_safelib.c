/* Stock library functions that crash on extreme arguments, rewritten with
 * the results and errors Redis 7.0 gives for every argument. */
#include "lua/lua_libs.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>

/* unpack(t [, i [, j]]). Lua 5.1 computes the count j - i + 1 in an int and
 * tests the wrapped value, a test gcc drops as impossible: unpack({},
 * -2^31, 2^31-1) then pushes four billion values. The count is exact
 * here; more than fits in an int, or than the stack takes, is Redis's
 * error. */
int lua_safe_unpack(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int i = luaL_optint(L, 2, 1);
    int e = luaL_opt(L, luaL_checkint, 3, luaL_getn(L, 1));
    if (i > e) return 0;
    long long n = (long long)e - i + 1;
    if (n > INT_MAX || !lua_checkstack(L, (int)n)) return luaL_error(L, "too many results to unpack");
    for (long long k = i; k <= e; k++) lua_rawgeti(L, 1, (int)k);
    return (int)n;
}

/* lua-bitop's conversion of a number to 32 bits: the low word of the
 * double after adding 2^52 + 2^51, so that any number (huge, negative,
 * fractional, NaN) maps to the same bits as in Redis's bit library. */
static uint32_t bit_arg(lua_State *L, int idx) {
    union {
        lua_Number n;
        uint64_t b;
    } bn;
    bn.n = lua_tonumber(L, idx) + 6755399441055744.0;
    uint32_t b = (uint32_t)bn.b;
    if (b == 0 && !lua_isnumber(L, idx)) luaL_typerror(L, idx, "number");
    return b;
}

/* bit.tohex(x [, n]): lua-bitop negates n, which for -2^31 stays negative
 * and becomes a four-gigabyte length (CVE-2024-31449). Redis clamps it to
 * -(2^31 - 1) first: 8 upper-case digits. */
int lua_safe_bit_tohex(lua_State *L) {
    uint32_t b = bit_arg(L, 1);
    int32_t n = lua_isnone(L, 2) ? 8 : (int32_t)bit_arg(L, 2);
    const char *hexdigits = "0123456789abcdef";
    char buf[8];
    if (n == INT32_MIN) n = INT32_MIN + 1;
    if (n < 0) {
        n = -n;
        hexdigits = "0123456789ABCDEF";
    }
    if (n > 8) n = 8;
    for (int i = (int)n; --i >= 0;) {
        buf[i] = hexdigits[b & 15];
        b >>= 4;
    }
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* string.rep(s, n): Lua 5.1's, but an empty s gives the empty string at
 * once instead of after n (up to 2^31) empty appends. */
int lua_safe_string_rep(lua_State *L) {
    size_t l;
    luaL_Buffer b;
    const char *s = luaL_checklstring(L, 1, &l);
    int n = luaL_checkint(L, 2);
    if (l == 0) n = 0;
    luaL_buffinit(L, &b);
    for (; n > 0; n--) luaL_addlstring(&b, s, l);
    luaL_pushresult(&b);
    return 1;
}
