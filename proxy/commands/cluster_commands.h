/* A fleet's members answer as a Redis Cluster of proxies: CLUSTER SLOTS,
 * SHARDS, NODES, INFO, MYID, KEYSLOT; READONLY, READWRITE and ASKING. Out
 * of a fleet these commands take the path they always took (refused as
 * administration, or relayed to the store). */
#ifndef EVALPROXY_CLUSTER_COMMANDS_H
#define EVALPROXY_CLUSTER_COMMANDS_H

#include "proxy/core/dispatch.h"

command_handler cmd_cluster, cmd_cluster_mode;

#endif
