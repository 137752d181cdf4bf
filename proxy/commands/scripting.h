/* The proxy side of scripting: EVAL*, SCRIPT, the key locks a script holds,
 * and carrying each redis.call to the store. The Lua side lives in lua/. */
#ifndef EVALPROXY_SCRIPTING_H
#define EVALPROXY_SCRIPTING_H

#include "proxy/core/dispatch.h"

int scripting_init(void);
void scripting_begin_shutdown(void); /* before the backend goes: no script resumes */
unsigned long scripting_calls_pending(void); /* scripts not finished (the drain waits) */
void scripting_shutdown(void);

command_handler cmd_eval, cmd_script, cmd_function;

struct script_engine;
/* The engine (for FUNCTION, in proxy/commands/functions.c). */
struct script_engine *scripting_engine(void);
/* SCRIPT KILL (is_eval) / FUNCTION KILL; the reply goes to c. */
void scripting_kill(client *c, int is_eval);
/* FUNCTION STATS's reply (or Redis's BUSY error while an EVAL is busy). */
int scripting_function_stats(struct evbuffer *out);
/* Loads the functions-file at start: 0, or -1 (logged) when it is unreadable
 * or invalid. */
int functions_load_file(void);

typedef void scripting_done_fn(void *ctx, const char *reply, size_t len);
struct lock_set;
/* EVAL and friends (for MULTI/EXEC, which runs them in their place). */
int scripting_is_eval(const command_def *cmd);
/* Whether an EVAL* or FCALL* line may write, as Redis judges it from the
 * script's flags (no shebang: it may; *_RO: it may not). */
int scripting_may_write(const command_def *cmd, int argc, char **argv, size_t *argvlen);
/* Declared keys of an EVAL line: their count, the first at argv[*first]. */
int scripting_eval_keys(const command_def *cmd, int argc, char **argv, size_t *argvlen, int *first);
/* Runs an EVAL inside EXEC under the transaction's locks (held) in database
 * db; done gets its reply (also for argument errors). */
void scripting_eval_in_exec(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen,
                            struct lock_set *held, int db, scripting_done_fn *done, void *ctx);

/* A command from a client in a Lua debugging session (SCRIPT DEBUG). */
void scripting_debug_command(client *c, int argc, char **argv, size_t *argvlen);

/* A client closed while it waits for (or runs) a script. */
void scripting_client_gone(client *c);
/* Scripts running past busy-reply-threshold right now. */
unsigned scripting_busy_count(void);
/* Applies lua-memory-limit / lua-time-slice after CONFIG SET. */
void scripting_apply_config(void);
/* "name:value\r\n" lines for INFO. */
void scripting_info(struct evbuffer *out);

#endif
