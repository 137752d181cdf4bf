/* SLOWLOG, LATENCY, MONITOR, SHUTDOWN as the proxy answers them. */
#ifndef EVALPROXY_OPERATIONS_H
#define EVALPROXY_OPERATIONS_H

#include "proxy/core/dispatch.h"

command_handler cmd_slowlog, cmd_latency, cmd_shutdown, cmd_monitor;

#endif
