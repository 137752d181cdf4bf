/* Client-side caching (CLIENT TRACKING), as Redis 7.0 keeps it: which
 * clients may cache which keys, and the invalidation messages sent when a
 * key changes. Only writes that go through the proxy are seen: plain
 * commands, scripts and functions, transactions and emulated commands. */
#ifndef EVALPROXY_TRACKING_H
#define EVALPROXY_TRACKING_H

#include <stddef.h>

#include "proxy/core/server.h"

struct command_def;
typedef struct tracked_write tracked_write;

/* Any client has tracking on: the only test the hot paths pay otherwise. */
int tracking_active(void);

/* CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO: argv[0] is CLIENT. */
void tracking_client_command(client *c, int argc, char **argv, size_t *argvlen, struct evbuffer *out);

/* c (the caller, for a script's calls) ran a read of cmd's keys. */
void tracking_read(client *c, const struct command_def *cmd, int argc, char **argv, size_t *argvlen);
/* c's script ran a read: as Redis 7.0, c then tracks the keys the script
 * declared (not the ones its commands name). */
void tracking_read_declared(client *c, const struct command_def *read, int nkeys, char **keys, size_t *keylens);
/* The store removed the key by itself (expired, evicted): its trackers are told. */
void tracking_key_removed(const char *key, size_t len);
/* INFO's counts: tracking clients, keys, (key, client) items, BCAST prefixes. */
void tracking_info(unsigned long *clients, unsigned long long *keys, unsigned long long *items,
                   unsigned long long *prefixes);
/* Keeps the table within tracking-table-max-keys (the cron, and before each
 * command while clients track, as Redis). */
void tracking_limit(void);
/* A command of c finished: CLIENT CACHING's flag lasts one command. */
void tracking_command_done(client *c);

/* A write is sent: the keys it names, kept until its reply (NULL when
 * nothing tracks or cmd writes nothing). */
tracked_write *tracking_write_begin(unsigned long long writer, const struct command_def *cmd, int argc, char **argv,
                                    size_t *argvlen);
/* Its reply came (unchanged: the reply says nothing changed): the keys'
 * trackers are told, and tw is freed. */
void tracking_write_end(tracked_write *tw, int unchanged);
/* FLUSHALL, FLUSHDB, SWAPDB: every tracker is told everything changed. */
void tracking_flushed(void);

/* Close and RESET: c tracks nothing any more. */
void tracking_client_gone(client *c);

#endif
