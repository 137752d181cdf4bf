/* What fleet members ask each other (FLEET LOCK / FLEET UNLOCK). */
#ifndef EVALPROXY_FLEET_COMMANDS_H
#define EVALPROXY_FLEET_COMMANDS_H

#include <stddef.h>

#include "proxy/core/server.h"

/* 1 when it was a FLEET command (answered). */
int fleet_own_command(client *c, int argc, char **argv, size_t *argvlen);
void fleet_commands_client_gone(client *c);

#endif
