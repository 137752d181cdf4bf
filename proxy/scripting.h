/* The proxy side of scripting: EVAL*, SCRIPT, the key locks a script holds,
 * and carrying each redis.call to the store. The Lua side lives in lua/. */
#ifndef EVALPROXY_SCRIPTING_H
#define EVALPROXY_SCRIPTING_H

#include "proxy/commands.h"

int scripting_init(void);
void scripting_begin_shutdown(void); /* before the backend goes: no script resumes */
void scripting_shutdown(void);

command_handler cmd_eval, cmd_script, cmd_function_unsupported;

/* A client closed while it waits for (or runs) a script. */
void scripting_client_gone(client *c);
/* Scripts running past busy-reply-threshold right now. */
unsigned scripting_busy_count(void);
/* Applies lua-memory-limit / lua-time-slice after CONFIG SET. */
void scripting_apply_config(void);
/* "name:value\r\n" lines for INFO. */
void scripting_info(struct evbuffer *out);

#endif
