/* The one shared server state (kept apart from main so tests can link). */
#include "proxy/server.h"

server_state server;
