/* The two Lua libraries Redis 7.0 embeds that Debian does not package, and
 * the library functions the engine replaces. All behave like Redis's
 * versions byte for byte: same functions, same output, same error texts.
 * luaopen_cmsgpack and luaopen_struct register their global table
 * ("cmsgpack", "struct") and leave it on the stack. */
#ifndef EVALPROXY_LUA_LIBS_H
#define EVALPROXY_LUA_LIBS_H

#include <lua.h>

/* cmsgpack.pack, unpack, unpack_one, unpack_limit (lua-cmsgpack 0.4.0). */
int luaopen_cmsgpack(lua_State *L);

/* struct.pack, unpack, size. */
int luaopen_struct(lua_State *L);

/* Replacements for stock functions that crash or stall on extreme arguments
 * (lua_safelib.c): the global unpack, bit.tohex and string.rep. */
int lua_safe_unpack(lua_State *L);
int lua_safe_bit_tohex(lua_State *L);
int lua_safe_string_rep(lua_State *L);

/* string.find, match, gmatch (and its alias gfind) and gsub without C
 * recursion (lua_strmatch.c), set into the string table on top. */
void lua_strmatch_install(lua_State *L);

#endif
