/* The server's commands as the proxy answers them: COMMAND, INFO, CONFIG. */
#ifndef EVALPROXY_SERVER_COMMANDS_H
#define EVALPROXY_SERVER_COMMANDS_H

#include "proxy/core/dispatch.h"

command_handler cmd_command, cmd_info, cmd_config, cmd_debug;
/* Samples the memory in use for INFO's peak (from the server's cron). */
void info_cron(void);

#endif
