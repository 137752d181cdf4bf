/* MONITOR: every command the proxy runs, as Redis 7.0 writes it to its
 * monitors: +<time> [<db> <addr>] "arg" ... (scripts' calls as [<db> lua]). */
#ifndef EVALPROXY_MONITOR_H
#define EVALPROXY_MONITOR_H

#include <stddef.h>

#include "proxy/core/server.h"

struct command_def;

void monitor_add(client *c);      /* c becomes a monitor */
void monitor_remove(client *c);   /* RESET, close hook */
int monitor_is(const client *c);
int monitor_active(void);         /* anyone monitoring */
/* c ran cmd: its line to every monitor (c NULL: a script's call). */
void monitor_feed(const client *c, int db, const struct command_def *cmd, int argc, char **argv, size_t *argvlen);
void monitor_shutdown(void);

#endif
