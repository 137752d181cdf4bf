#ifndef EVALPROXY_COMMAND_STATS_H
#define EVALPROXY_COMMAND_STATS_H

#include <stddef.h>

struct command_def;
struct evbuffer;

void stats_command_done(const struct command_def *cmd, unsigned long long usec, int failed);
void stats_command_rejected(const struct command_def *cmd);
void stats_error_reply(const char *err, size_t len); /* err without the '-' */
unsigned long long stats_error_replies(void);
/* CONFIG RESETSTAT: these counts and server.stats start again from zero. */
void stats_reset(void);
/* Each command counted so far (the metrics). */
typedef void stats_command_fn(void *arg, const char *name, unsigned long long calls, unsigned long long usec,
                              unsigned long long failed, unsigned long long rejected);
void stats_foreach_command(stats_command_fn *fn, void *arg);

/* LATENCY HISTOGRAM [command ...] (argv: the command names; none: all). */
void latency_histogram_reply(struct evbuffer *out, int argc, char **argv, size_t *argvlen);

/* INFO's sections, each with its "# Title" line. */
void info_commandstats(struct evbuffer *t);
void info_errorstats(struct evbuffer *t);
void info_latencystats(struct evbuffer *t);

#endif
