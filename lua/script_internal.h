/* Shared between the script engine's files; not part of the public API. */
#ifndef EVALPROXY_SCRIPT_INTERNAL_H
#define EVALPROXY_SCRIPT_INTERNAL_H

#include <stddef.h>
#include <lua.h>
#include <hiredis/hiredis.h>

/* A growable byte buffer (malloc'd, never in the Lua heap, so filling it can
 * not raise a Lua error). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom; /* an allocation failed; contents are incomplete */
} sbuf;

void sb_reset(sbuf *b);
void sb_free(sbuf *b);
void sb_add(sbuf *b, const void *s, size_t n);
void sb_add_header(sbuf *b, char type, long long v);
void sb_adds(sbuf *b, const char *s);
void sb_addf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Serialize a hiredis reply (RESP2 types, plus RESP3 types by the numbers in
 * script_engine.h) as RESP bytes. */
void conv_reply_to_resp(sbuf *b, const redisReply *r);

/* Parse one complete RESP2/RESP3 reply and push it as Lua value(s) the way
 * Redis 7.0 hands replies to scripts. Returns 1 if the top-level reply is an
 * error (a table {err=...} was pushed), 0 otherwise; -1 on malformed input
 * (an error table was pushed). Raises Lua errors (memory). */
int conv_resp_to_lua(lua_State *L, const char *p, size_t len);

/* Push {err=...} built like Redis's luaPushErrorBuff: "-CODE msg" keeps CODE,
 * anything else gets the generic "ERR " code; \r\n trimmed at the ends. */
void conv_push_error(lua_State *L, const char *s, size_t len);

/* Convert the value on top of the stack into a RESP reply, consuming it, the
 * way Redis 7.0 replies with a script's return value. script_resp is the
 * script's redis.setresp choice, client_resp the client's protocol. */
void conv_lua_to_resp(lua_State *L, sbuf *b, int script_resp, int client_resp);

/* Append "-<text>\r\n" with CR/LF inside text mapped to spaces. */
void conv_error_line(sbuf *b, const char *text, size_t len);

/* ---- between script_engine.c and script_functions.c ---- */
struct script_engine;
typedef struct fn_registry fn_registry;
typedef struct fn_loader fn_loader;

/* The engine's library registry (created with the engine). */
fn_registry *engine_functions(struct script_engine *e);
void engine_set_functions(struct script_engine *e, fn_registry *reg);
fn_registry *fn_registry_new(void);
void fn_registry_free(struct script_engine *e, fn_registry *reg);
/* Compile `code` (starting at the shebang's newline) and run it in the load
 * environment with a 500 ms limit; each redis.register_function goes to
 * fn_loader_add. 0, or -1 with err set ("Error compiling function: ...",
 * "Error registering functions: ..."). */
int engine_run_library(struct script_engine *e, const char *code, size_t len, fn_loader *ld, char *err,
                       size_t errlen);
/* redis.register_function: 0, or -1 with *err (a static text). The loader
 * owns ref from then on (also on error: it is released). */
int fn_loader_add(fn_loader *ld, const char *name, size_t nlen, const char *desc, size_t dlen, int flags, int ref,
                  const char **err);
void engine_unref(struct script_engine *e, int ref);
int engine_function_ref(const void *f); /* the callback's registry ref */
/* Redis's sdssplitargs: parts NUL-terminated into buf; -1 on bad quotes. */
int engine_split_args(const char *s, size_t len, char *buf, char **parts, int maxparts);
/* The SCRIPT_FLAG_* of a flag name (case-insensitive), 0 if unknown. */
int engine_flag_by_name(const char *name);

#endif
