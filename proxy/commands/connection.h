/* Connection commands: PING, ECHO, HELLO, AUTH, SELECT, RESET, CLIENT, TIME. */
#ifndef EVALPROXY_CONNECTION_H
#define EVALPROXY_CONNECTION_H

#include "proxy/core/dispatch.h"

command_handler cmd_ping, cmd_echo, cmd_hello, cmd_auth, cmd_select, cmd_reset, cmd_client, cmd_time;
/* One CLIENT LIST line (registered with client_set_describer). */
void client_describe(client *c, struct evbuffer *out);

#endif
