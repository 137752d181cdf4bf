/* Commands the proxy answers itself. */
#ifndef EVALPROXY_COMMANDS_H
#define EVALPROXY_COMMANDS_H

#include <stddef.h>

#include "proxy/core/command_table.h"
#include "proxy/core/server.h"

typedef void command_handler(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen);

void dispatch_init(void);
void dispatch_free(void);

/* commands/connection.c */
command_handler cmd_ping, cmd_echo, cmd_hello, cmd_auth, cmd_select, cmd_reset, cmd_client, cmd_time;
/* commands/acl_command.c */
command_handler cmd_acl;
/* commands/server_commands.c */
command_handler cmd_command, cmd_info, cmd_config;
/* Samples the memory in use for INFO's peak (from the server's cron). */
void info_cron(void);

#endif
