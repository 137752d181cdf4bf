/* The ACL command, and the ACL checks of clients, scripts and EXEC with
 * their ACL LOG entries. */
#ifndef EVALPROXY_ACL_COMMAND_H
#define EVALPROXY_ACL_COMMAND_H

#include <stddef.h>

#include "proxy/core/dispatch.h"

struct acl_user;

command_handler cmd_acl;
void client_set_user(client *c, struct acl_user *u);
/* Redis's clientSetDefaultAuth: the default user, authenticated when it needs no password. */
void client_set_default_auth(client *c);
/* The ACL check before a command runs or is queued: NULL when allowed,
 * else the denial is logged and its NOPERM error returned (static text). */
const char *acl_client_denies(client *c, const struct command_def *cmd, int argc, char **argv, size_t *argvlen);
/* The check of a command a script calls, for the user who ran the script
 * (c is that client, or NULL once it is gone): ACL_OK or ACL_DENIED_*,
 * logged with the lua context. */
int acl_script_check(struct acl_user *u, client *c, const struct command_def *cmd, int argc, char **argv,
                     size_t *argvlen);
/* EXEC's second check of a queued command: NULL, or the NOPERM error
 * (malloc'd) that takes its place in EXEC's reply; logged as multi. */
char *acl_exec_recheck(client *c, const struct command_def *cmd, int argc, char **argv, size_t *argvlen);

#endif
