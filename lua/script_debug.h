/* The Lua side of the script debugger (SCRIPT DEBUG, redis-cli --ldb), as
 * Redis 7.0's LDB: breakpoints, stepping, the debugger's commands and its
 * log lines. No sockets here: the engine hands the log to its host when a
 * run stops, and the host hands the client's debugger commands back.
 * Internal to the engine (script_engine.c drives it from its line hook). */
#ifndef EVALPROXY_SCRIPT_DEBUG_H
#define EVALPROXY_SCRIPT_DEBUG_H

#include <stddef.h>
#include <lua.h>

#include "lua/script_internal.h"

typedef struct ldb_state ldb_state;

/* A session over this source (split in lines as Redis splits EVAL's body). */
ldb_state *ldb_new(const char *src, size_t len);
void ldb_free(ldb_state *d);

/* Append the log lines gathered so far as Redis sends them (a multi-bulk
 * of status lines, CR/LF inside mapped to spaces) and forget them. With
 * end set, "<endsession>" closes the list. */
void ldb_take_logs(ldb_state *d, sbuf *out, int end);

/* The line hook (ar filled with "Sl"): 1 when the run is to stop here, with
 * the "* Stopped at" lines logged. timed_out: a count event past the time
 * limit (stops with Redis's "timeout reached" reason). 2: the client is
 * gone and the run timed out: it is to fail, as in Redis. */
int ldb_line(ldb_state *d, const lua_Debug *ar, int count_event, int timed_out);
/* The client went away: never stop again. */
void ldb_detach(ldb_state *d);
int ldb_detached(const ldb_state *d);
/* The last stop was a timeout's. */
int ldb_timeout_stop(const ldb_state *d);
/* Whether nothing stops the run but a timeout: count events matter only then. */
int ldb_stepping(const ldb_state *d);

enum { LDB_STAY, LDB_GO, LDB_ABORT, LDB_REDIS };
/* One debugger command: LDB_STAY (logs to send, wait for the next command),
 * LDB_GO (resume the script), LDB_ABORT (raise "script aborted for user
 * request"), LDB_REDIS (run redis.call with argv[1..]: ldb_redis_call). */
int ldb_command(ldb_state *d, lua_State *L, int argc, char **argv, size_t *lens);
/* The "redis" command: calls redis.call with the arguments, logged. */
void ldb_redis_call(ldb_state *d, lua_State *L, int argc, char **argv, size_t *lens);

/* redis.call's log lines (only while stepping, as Redis). */
void ldb_log_call(ldb_state *d, int argc, char **argv, size_t *lens);
void ldb_log_reply(ldb_state *d, const char *resp, size_t len);
void ldb_log_error(ldb_state *d, const char *err, size_t len);
/* redis.debug(...) with the arguments on L's stack; redis.breakpoint(). */
void ldb_debug_values(ldb_state *d, lua_State *L);
void ldb_breakpoint(ldb_state *d);

#endif
