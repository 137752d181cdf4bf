/* SLOWLOG: commands that took at least slowlog-log-slower-than µs, from
 * dispatch to their reply being complete, in Redis 7.0's entry format. */
#ifndef EVALPROXY_SLOWLOG_H
#define EVALPROXY_SLOWLOG_H

#include <stddef.h>

struct evbuffer;
struct command_def;

/* The arguments an entry keeps (at most 32, each at most 128 bytes, AUTH's
 * redacted), copied while the command's argv still exists. */
typedef struct slowlog_args slowlog_args;

/* NULL when nothing would be logged (slowlog off, or a command Redis never logs). */
slowlog_args *slowlog_args_copy(const struct command_def *cmd, int argc, char **argv, size_t *argvlen);
void slowlog_args_free(slowlog_args *a);
/* Argument i is one Redis hides (AUTH's, HELLO's AUTH, MIGRATE's AUTH / AUTH2). */
int slowlog_arg_redacted(const struct command_def *cmd, int argc, char **argv, int i);
int slowlog_wants(unsigned long long usec); /* would a command this long be logged */
/* Logs (and frees) a when usec reaches the threshold. */
void slowlog_done(slowlog_args *a, unsigned long long usec, const char *addr, const char *name);
/* The same for a command whose argv is still at hand. */
void slowlog_check(const struct command_def *cmd, int argc, char **argv, size_t *argvlen, unsigned long long usec,
                   const char *addr, const char *name);

/* A command's time is known: SLOWLOG (a, freed here) and LATENCY's
 * "command" / "fast-command" (and "script" for scripts and functions). */
void slowlog_command_done(const struct command_def *cmd, slowlog_args *a, unsigned long long usec, const char *addr,
                          const char *name);

void slowlog_reply_get(struct evbuffer *out, long count); /* count -1: all */
unsigned long slowlog_len(void);
void slowlog_reset(void);
void slowlog_free(void);

/* LATENCY: one sample per event and second (the highest), 160 kept, when a
 * duration reaches latency-monitor-threshold ms (0: off). */
void latency_add_sample(const char *event, unsigned long long ms);
void latency_reply_latest(struct evbuffer *out);
/* -1 when the event has no samples (an empty array then). */
void latency_reply_history(struct evbuffer *out, const char *event);
int latency_reset(int argc, char **events); /* argc 0: all; returns how many were reset */
void latency_doctor(struct evbuffer *text);

#endif
