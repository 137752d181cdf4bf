/* The script engine: Redis 7.0-compatible EVAL scripts in Lua 5.1.
 *
 * One lua_State per engine (one engine per event-loop thread). Each run gets
 * its own Lua thread on its own fiber (C stack), so a script can be suspended
 * inside redis.call from anywhere (pcall, metamethods, iterators, sort
 * comparators, gsub callbacks) while the event loop serves everyone else.
 * No sockets here: the host carries out redis.call and tells the engine the
 * answer.
 *
 * Threading: every function must be called from the engine's thread, from the
 * event loop side, except where a host callback says otherwise. */
#ifndef EVALPROXY_SCRIPT_ENGINE_H
#define EVALPROXY_SCRIPT_ENGINE_H

#include <stddef.h>
#include <hiredis/hiredis.h>

/* hiredis 0.14 only knows RESP2 reply types; RESP3 replies can still be
 * handed over with the type numbers of later hiredis versions (DOUBLE's,
 * BIGNUM's and VERB's text in str/len; VERB's str starts with "txt:"). */
#ifndef REDIS_REPLY_DOUBLE
#define REDIS_REPLY_DOUBLE 7
#endif
#ifndef REDIS_REPLY_BOOL
#define REDIS_REPLY_BOOL 8
#endif
#ifndef REDIS_REPLY_MAP
#define REDIS_REPLY_MAP 9
#endif
#ifndef REDIS_REPLY_SET
#define REDIS_REPLY_SET 10
#endif
#ifndef REDIS_REPLY_ATTR
#define REDIS_REPLY_ATTR 11
#endif
#ifndef REDIS_REPLY_PUSH
#define REDIS_REPLY_PUSH 12
#endif
#ifndef REDIS_REPLY_BIGNUM
#define REDIS_REPLY_BIGNUM 13
#endif
#ifndef REDIS_REPLY_VERB
#define REDIS_REPLY_VERB 14
#endif

typedef struct script_engine script_engine;
typedef struct script script;
typedef struct script_run script_run;

/* Script flags (script_flags), from the shebang; as Redis 7.0's. */
#define SCRIPT_FLAG_NO_WRITES (1 << 0)
#define SCRIPT_FLAG_ALLOW_OOM (1 << 1)
#define SCRIPT_FLAG_ALLOW_STALE (1 << 2)
#define SCRIPT_FLAG_NO_CLUSTER (1 << 3)
#define SCRIPT_FLAG_EVAL_COMPAT (1 << 4) /* no shebang: pre-7.0 semantics */
#define SCRIPT_FLAG_ALLOW_CROSS_SLOT (1 << 5)
/* Not Redis's: a run that fails (error, kill, lost store) after writing is
 * undone before its locks are released, as with lua-rollback-on-error. */
#define SCRIPT_FLAG_ATOMIC (1 << 6)

/* Run flags (script_run_start). */
#define SCRIPT_RUN_RO (1 << 0)    /* EVAL_RO / EVALSHA_RO */
#define SCRIPT_RUN_RESP3 (1 << 1) /* the client speaks RESP3 (HELLO 3): shapes the final reply */
/* A debugging session (SCRIPT DEBUG, EVAL only): the run stops before its
 * first line and wherever the debugger says, through host->debug. */
#define SCRIPT_RUN_DEBUG (1 << 2)

/* redis.log levels, as Redis's LL_*. */
#define SCRIPT_LOG_DEBUG 0
#define SCRIPT_LOG_VERBOSE 1
#define SCRIPT_LOG_NOTICE 2
#define SCRIPT_LOG_WARNING 3

typedef struct script_host {
    /* redis.call / redis.pcall from a running script, argv already validated
     * as Redis does (at least one argument, strings or numbers). Called on the
     * run's fiber stack. The host checks the command and answers either during
     * this callback or later from the event loop, with script_run_reply*(); the
     * script stays suspended until then. argv stays valid until answered.
     * script_run_resp() says which protocol the script asked for. */
    void (*call)(void *host_ctx, script_run *run, int argc, char **argv, size_t *argvlen);
    /* The run used up its time slice: call script_run_continue(run) from the
     * event loop soon. Called from the event-loop side. */
    void (*yield)(void *host_ctx, script_run *run);
    /* The run finished; reply is the complete RESP reply for the client.
     * Called from the event-loop side; the run is freed right after. */
    void (*done)(void *host_ctx, script_run *run, const char *reply, size_t len);
    /* redis.log(level, ...): the message is the arguments joined by spaces.
     * Optional (NULL: dropped). */
    void (*log)(void *host_ctx, int level, const char *msg, size_t len);
    /* redis.acl_check_cmd(argv...): 1 allowed, 0 denied, -1 unknown command
     * (the script then gets Redis's error). Optional (NULL: always allowed). */
    int (*acl_check)(void *host_ctx, script_run *run, int argc, char **argv, size_t *argvlen);
    /* A debugged run stopped: logs is the debugger's output for the client
     * (a RESP multi-bulk of status lines, as Redis sends it); answer with
     * script_run_debug_command() once the client sends its next command.
     * Called from the event-loop side. Optional for hosts that never debug. */
    void (*debug)(void *host_ctx, script_run *run, const char *logs, size_t len);
} script_host;

/* A new engine (its own lua_State); NULL if out of memory. */
script_engine *script_engine_new(const script_host *host, void *host_ctx);
/* Frees the engine; in-flight runs are dropped without done(). */
void script_engine_free(script_engine *e);
/* Cap on the Lua heap in bytes (0 = none). A script that needs more fails
 * with an error; the process is never at risk. */
void script_engine_set_memory_limit(script_engine *e, size_t bytes);
/* Longest stretch of CPU a run gets before yielding to the event loop,
 * summed over its resumes since it last yielded (calls answered at once do
 * not start a new slice). */
void script_engine_set_time_slice(script_engine *e, unsigned usec);

/* SCRIPT LOAD / EVAL body: parse the shebang, compile, cache by SHA1.
 * Returns the script (valid until script_engine_flush) or NULL with err set to
 * the RESP error text Redis 7.0 gives, without the leading '-' and CRLF
 * (e.g. "ERR Error compiling script (new function): user_script:1: ..."). */
const script *script_engine_load(script_engine *e, const char *body, size_t len, char *err, size_t errlen);
/* EVALSHA / SCRIPT EXISTS: the cached script with this SHA1 (hex, any case),
 * or NULL. */
const script *script_engine_find(script_engine *e, const char *sha, size_t len);
/* SCRIPT FLUSH: forget every script; in-flight runs keep working. */
void script_engine_flush(script_engine *e);
/* INFO: scripts cached, bytes of their bodies, and the Lua heap in use. */
size_t script_engine_count(const script_engine *e);
size_t script_engine_scripts_memory(const script_engine *e);
size_t script_engine_lua_memory(const script_engine *e);
/* Runs started and not yet done. */
size_t script_engine_running(const script_engine *e);

int script_flags(const script *s);      /* SCRIPT_FLAG_* */
/* Bits the host keeps with a script (or function) for as long as it is
 * cached; the engine never reads them. */
unsigned script_host_bits(const script *s);
void script_set_host_bits(const script *s, unsigned bits);
const char *script_sha(const script *s); /* 40 lowercase hex digits */
const char *script_body(const script *s, size_t *len);

/* Start a run on its own fiber: it runs until its first redis.call, a
 * time-slice yield or its end. keys/args are read before this returns. Returns the run, or NULL
 * when it already finished (done() has then been called). */
script_run *script_run_start(script_engine *e, const script *s, int numkeys, char **keys, size_t *keylens,
                             int nargs, char **args, size_t *arglens, int run_flags, void *userdata);
void *script_run_userdata(const script_run *r);
/* The run's SCRIPT_RUN_* flags. */
int script_run_flags(const script_run *r);
/* The running script's SCRIPT_FLAG_* (from its shebang). */
int script_run_script_flags(const script_run *r);
const char *script_run_sha(const script_run *r);
/* Protocol the script selected with redis.setresp (2 or 3). */
int script_run_resp(const script_run *r);
/* The host tells the engine the run wrote (for SCRIPT KILL / UNKILLABLE). */
void script_run_mark_written(script_run *r);
int script_run_has_written(const script_run *r);
/* Microseconds of CPU the run has used so far (for busy-reply-threshold). */
unsigned long long script_run_cpu_usec(const script_run *r);
/* Its (finished) reply is an error a command gave it, counted in errorstats
 * when the command failed: not to be counted again. */
int script_run_error_counted(const script_run *r);
/* Non-zero while the run waits for the answer to a redis.call. */
int script_run_waiting(const script_run *r);

/* Debugging sessions (SCRIPT_RUN_DEBUG). */
int script_run_debugging(const script_run *r);
/* Non-zero while the run waits for a debugger command. */
int script_run_debug_stopped(const script_run *r);
/* A debugger command (step, print, ...) for a stopped run; the run resumes
 * before this returns (and may stop again, finish, or wait for the store). */
void script_run_debug_command(script_run *r, int argc, char **argv, size_t *lens);
/* The client is gone: the run never stops again and goes on to its end. */
void script_run_debug_detach(script_run *r);
/* From done(): the session's last log lines and "<endsession>", as RESP
 * (valid until done() returns); NULL when the run was not debugged. */
const char *script_run_debug_final(script_run *r, size_t *len);
/* How long a debugged run may go on without stopping before it stops by
 * itself (Redis: busy-reply-threshold, 5 s when 0). */
void script_engine_set_debug_timeout(script_engine *e, unsigned ms);

/* Answer the pending redis.call with the store's reply. From the event loop
 * (the run resumes before this returns, and may finish and be freed) or from
 * within the call() callback. */
void script_run_reply(script_run *r, const redisReply *reply);
/* The same with one complete raw RESP2/RESP3 reply. */
void script_run_reply_raw(script_run *r, const char *proto, size_t len);
/* The same with an error reply; err is the text without '-' and CRLF. */
void script_run_reply_error(script_run *r, const char *err);
/* Resume a run after yield(), for one time slice. */
void script_run_continue(script_run *r);
/* The same for at most usec of CPU (a scheduler's share of its budget). */
void script_run_continue_for(script_run *r, unsigned usec);
/* SCRIPT KILL (or abort before a re-run): the run never resumes; it ends with
 * the error err (NULL: Redis's "Script killed by user with SCRIPT KILL..."
 * with the script/line suffix) and done() is called, from the event loop
 * before this returns, or when the call() callback in progress returns. */
void script_run_kill(script_run *r, const char *err);

/* ---- Functions (FUNCTION LOAD / FCALL) ----------------------------------------
 * Libraries ("#!lua name=lib" + redis.register_function) live in the same
 * Lua state as EVAL scripts but in their own environment: at load time the
 * code sees only redis.register_function, redis.log and the version fields;
 * at run time callbacks see the scripts' globals, without KEYS and ARGV. */
typedef struct script_library script_library;
typedef struct script_function script_function;

/* FUNCTION RESTORE policies. */
enum { SCRIPT_RESTORE_APPEND, SCRIPT_RESTORE_REPLACE, SCRIPT_RESTORE_FLUSH };

/* FUNCTION LOAD [REPLACE]: compile and run the library code, register its
 * functions. Returns the library (its name is the reply) or NULL with err set
 * to Redis 7.0's error text (without '-' and CRLF). All or nothing. */
const script_library *script_functions_load(script_engine *e, const char *code, size_t len, int replace, char *err,
                                            size_t errlen);
/* FUNCTION DELETE: 0, or -1 when there is no such library. */
int script_functions_delete(script_engine *e, const char *name, size_t len);
/* FUNCTION FLUSH. */
void script_functions_flush(script_engine *e);
/* FUNCTION RESTORE: the libraries' codes as a payload carries them. 0, or -1
 * with err set; nothing changes on error. */
int script_functions_restore(script_engine *e, int n, const char *const *codes, const size_t *lens, int policy,
                             char *err, size_t errlen);
/* FCALL: a function by name (case-insensitive, as Redis), or NULL. */
const script_function *script_function_find(script_engine *e, const char *name, size_t len);

size_t script_library_count(const script_engine *e);
size_t script_function_count(const script_engine *e);
/* Libraries in name order: i from 0 to script_library_count() - 1. */
const script_library *script_library_at(const script_engine *e, size_t i);
const char *script_library_name(const script_library *l);
const char *script_library_code(const script_library *l, size_t *len);
int script_library_function_count(const script_library *l);
/* A library's functions in name order. */
const script_function *script_library_function(const script_library *l, int i);
const char *script_function_name(const script_function *f);
/* NULL when the function has no description. */
const char *script_function_desc(const script_function *f, size_t *len);
int script_function_flags(const script_function *f); /* SCRIPT_FLAG_* */
unsigned script_function_host_bits(const script_function *f);
void script_function_set_host_bits(const script_function *f, unsigned bits);
/* Name of each SCRIPT_FLAG_* bit as Redis lists it (NULL for none), in
 * Redis's order: no-writes, allow-oom, allow-stale, no-cluster,
 * allow-cross-slot-keys. */
const char *script_flag_name(int bit_index);

/* Start a function call, as script_run_start does for a script. Errors name
 * the function where scripts show their SHA1. */
script_run *script_run_start_function(script_engine *e, const script_function *f, int numkeys, char **keys,
                                      size_t *keylens, int nargs, char **args, size_t *arglens, int run_flags,
                                      void *userdata);

#endif
