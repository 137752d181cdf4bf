/* Pub/sub through one shared subscriber connection, fanned out in the proxy. */
#ifndef EVALPROXY_PUBSUB_H
#define EVALPROXY_PUBSUB_H

#include "proxy/core/dispatch.h"

command_handler cmd_subscribe, cmd_unsubscribe, cmd_publish, cmd_pubsub;

/* Channels + patterns (shard 0), or shard channels (shard 1). */
int pubsub_count(const client *c, int shard);
int pubsub_subscribed(const client *c);
int pubsub_count_kind(const client *c, int kind); /* 0 channels, 1 patterns, 2 shard */
void pubsub_client_gone(client *c); /* also RESET */
/* 1 if ok() accepts every channel and pattern the client is subscribed to. */
int pubsub_client_topics_pass(const client *c, int (*ok)(void *ctx, const char *name, size_t len, int is_pattern),
                              void *ctx);
void pubsub_info(struct evbuffer *out);
void pubsub_stats_info(struct evbuffer *out); /* INFO stats' pubsub_channels, _patterns, shard */
/* A store without pub/sub (memcached) leaves it to the proxy: PUBLISH,
 * SPUBLISH and PUBSUB are the proxy's own, also inside scripts and
 * transactions. */
int pubsub_carried_here(const command_def *cmd);
/* Such a command from a transaction, answered here (1, the reply added to
 * out), or 0: it goes to the store as other commands do. */
int pubsub_run_here(const command_def *cmd, int argc, char **argv, size_t *argvlen, struct evbuffer *out);
/* The same for a script's redis.call: 1 when the call was answered. */
struct script_run;
int pubsub_script_call(struct script_run *run, const command_def *cmd, int argc, char **argv, size_t *argvlen);
/* A reply (in s->buf) to something that published at the store (a
 * script, a transaction): held until the proxy's own subscribers have the
 * messages, as a PUBLISH's reply is; 1 when held (the slot is done later),
 * 0 when there is nothing to wait for (the caller finishes the slot). */
int pubsub_hold_after_publish(reply_slot *s);
void pubsub_shutdown(void);

#endif
