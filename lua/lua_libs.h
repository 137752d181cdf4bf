/* The two Lua libraries Redis 7.0 embeds that Debian does not package.
 * Both behave like Redis's versions byte for byte: same functions, same
 * output, same error texts. Each registers its global table ("cmsgpack",
 * "struct") and leaves it on the stack. */
#ifndef EVALPROXY_LUA_LIBS_H
#define EVALPROXY_LUA_LIBS_H

#include <lua.h>

/* cmsgpack.pack, unpack, unpack_one, unpack_limit (lua-cmsgpack 0.4.0). */
int luaopen_cmsgpack(lua_State *L);

/* struct.pack, unpack, size. */
int luaopen_struct(lua_State *L);

#endif
