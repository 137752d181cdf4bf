/* The connection side of ACLs: which user a client is, the check before a
 * command runs, and the ACL command itself (answered by the proxy, never
 * relayed), with Redis 7.0's replies. The rules live in acl.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#include "proxy/core/acl.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/config.h"
#include "proxy/commands/pubsub.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "util/strconv.h"
#include "proxy/commands/acl_command.h"

/* Redis's clientSetDefaultAuth: the default user, authenticated already
 * when it needs no password, so a later requirepass leaves the
 * connection as it was. */
void client_set_default_auth(client *c)
{
    client_set_user(c, acl_default_user());
    c->authenticated = (c->user->flags & ACL_USER_NOPASS) && !(c->user->flags & ACL_USER_OFF);
}

void client_set_user(client *c, acl_user *u)
{
    if (c->user == u) return;
    acl_user_retain(u);
    if (c->user) acl_user_release(c->user);
    c->user = u;
}

static void log_denial(client *c, acl_user *u, int rc, int context, const command_def *cmd, char **argv,
                       size_t *argvlen, int pos)
{
    const char *obj = cmd->name;
    size_t olen = strlen(obj);
    if (rc == ACL_DENIED_KEY || rc == ACL_DENIED_CHANNEL) obj = argv[pos], olen = argvlen[pos];
    size_t clen = 0;
    char *cinfo = c ? client_info_string(c, &clen) : NULL;
    acl_log_add(rc, context, obj, olen, u->name, u->namelen, cinfo ? cinfo : "", clen, config.acllog_max_len);
    free(cinfo);
}

const char *acl_client_denies(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int pos = 0;
    int rc = acl_check_command(c->user, cmd, argc, argv, argvlen, &pos);
    if (rc == ACL_OK) return NULL;
    log_denial(c, c->user, rc, c->multi ? ACL_CTX_MULTI : ACL_CTX_TOPLEVEL, cmd, argv, argvlen, pos);
    if (rc == ACL_DENIED_CMD) {
        static char msg[256];
        snprintf(msg, sizeof(msg), "NOPERM this user has no permissions to run the '%s' command", cmd->name);
        return msg;
    }
    if (rc == ACL_DENIED_KEY) return "NOPERM this user has no permissions to access one of the keys used as arguments";
    return "NOPERM this user has no permissions to access one of the channels used as arguments";
}

char *acl_exec_recheck(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int pos = 0;
    int rc = acl_check_command(c->user, cmd, argc, argv, argvlen, &pos);
    if (rc == ACL_OK) return NULL;
    log_denial(c, c->user, rc, ACL_CTX_MULTI, cmd, argv, argvlen, pos);
    const char *why = rc == ACL_DENIED_CMD ? "no permission to execute the command or subcommand"
                      : rc == ACL_DENIED_KEY ? "no permission to touch the specified keys"
                                             : "no permission to access one of the channels used as arguments";
    char *err = NULL;
    if (asprintf(&err,
                 "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. "
                 "This command is no longer allowed for the following reason: %s",
                 why) < 0)
        abort();
    return err;
}

int acl_script_check(acl_user *u, client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int pos = 0;
    int rc = acl_check_command(u, cmd, argc, argv, argvlen, &pos);
    if (rc != ACL_OK) log_denial(c, u, rc, ACL_CTX_LUA, cmd, argv, argvlen, pos);
    return rc;
}

/* Closes the clients authenticated as u (a deleted or replaced user), as
 * Redis does; the client that asked gets its reply first. */
static void close_user_clients(client *self, acl_user *u)
{
    client *o = server.clients;
    while (o) {
        client *next = o->next;
        if (o->user == u && !(o->flags & CLIENT_CLOSING)) {
            client_set_user(o, acl_default_user());
            o->authenticated = 0;
            if (o == self) client_close_after_reply(o);
            else client_close(o);
        }
        o = next;
    }
}

static void load_gone(void *ctx, acl_user *u) { close_user_clients(ctx, u); }

static int arg_is(const char *arg, size_t len, const char *word)
{
    return strlen(word) == len && !strcasecmp(arg, word);
}

static const char *const acl_help[] = {
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
    NULL,
};

static void reply_bulk_free(struct evbuffer *out, char *s)
{
    reply_bulk(out, s, strlen(s));
    free(s);
}

static void describe_selector_fields(struct evbuffer *out, const acl_selector *s)
{
    reply_bulk_cstr(out, "commands");
    reply_bulk_free(out, acl_describe_commands(s));
    reply_bulk_cstr(out, "keys");
    reply_bulk_free(out, acl_describe_keys(s));
    reply_bulk_cstr(out, "channels");
    reply_bulk_free(out, acl_describe_channels(s));
}

static void acl_getuser(struct evbuffer *out, const acl_user *u)
{
    static const struct { int flag; const char *name; } flag_names[] = {
        {ACL_USER_ON, "on"}, {ACL_USER_OFF, "off"}, {ACL_USER_NOPASS, "nopass"},
        {ACL_USER_SKIP_SANITIZE, "skip-sanitize-payload"}, {ACL_USER_SANITIZE, "sanitize-payload"}, {0, NULL},
    };
    reply_array(out, 12);
    /* The root selector at the top, the others under "selectors". */
    reply_bulk_cstr(out, "flags");
    int n = 0;
    for (int i = 0; flag_names[i].name; i++) n += !!(u->flags & flag_names[i].flag);
    reply_array(out, n);
    for (int i = 0; flag_names[i].name; i++)
        if (u->flags & flag_names[i].flag) reply_bulk_cstr(out, flag_names[i].name);
    reply_bulk_cstr(out, "passwords");
    reply_array(out, u->npasswords);
    for (int i = 0; i < u->npasswords; i++) reply_bulk(out, u->passwords[i], 64);
    describe_selector_fields(out, &u->root);
    reply_bulk_cstr(out, "selectors");
    reply_array(out, u->nselectors);
    for (int i = 0; i < u->nselectors; i++) {
        reply_array(out, 6);
        describe_selector_fields(out, &u->selectors[i]);
    }
}

static int topic_allowed(void *ctx, const char *name, size_t len, int is_pattern)
{
    return acl_channel_allowed(ctx, name, len, is_pattern);
}

/* Subscribers of a user whose channel permissions shrink lose their
 * connection when a subscription is no longer allowed. As in Redis, nothing
 * is checked when the new rules allow every channel or keep every channel
 * pattern the user had. */
static void close_revoked_subscribers(client *self, acl_user *old, acl_user *upcoming)
{
    if (!acl_channels_may_revoke(old, upcoming)) return;
    client *o = server.clients;
    while (o) {
        client *next = o->next;
        if (o->user == old && pubsub_subscribed(o) && !(o->flags & CLIENT_CLOSING) &&
            !pubsub_client_topics_pass(o, topic_allowed, upcoming)) {
            if (o == self) client_close_after_reply(o);
            else client_close(o);
        }
        o = next;
    }
}

static void acl_setuser(client *c, struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    if (acl_has_spaces(argv[2], argvlen[2])) {
        reply_error(out, "ERR Usernames can't contain spaces or null characters");
        return;
    }
    int nrules = 0, bad = 0;
    size_t *lens = NULL;
    char **rules = acl_merge_selector_args(argc - 3, argv + 3, argvlen + 3, &nrules, &lens, &bad);
    if (!rules) {
        reply_errorf(out, "ERR Unmatched parenthesis in acl selector starting at '%s'.", argv[3 + bad]);
        return;
    }
    /* Every rule is staged on a copy: all of them apply, or none. */
    acl_user *u = acl_find_user(argv[2], argvlen[2]);
    acl_user *tmp = acl_user_new_unlinked(argv[2], argvlen[2]);
    if (u) acl_user_copy(tmp, u);
    int rc = ACL_ERR_NONE;
    for (int j = 0; j < nrules && rc == ACL_ERR_NONE; j++) {
        rc = acl_set_user(tmp, rules[j], lens[j]);
        if (rc != ACL_ERR_NONE)
            reply_errorf(out, "ERR Error in ACL SETUSER modifier '%s': %s", rules[j], acl_error_text(rc));
    }
    for (int j = 0; j < nrules; j++) free(rules[j]);
    free(rules);
    free(lens);
    if (rc != ACL_ERR_NONE) {
        acl_user_free(tmp);
        return;
    }
    if (u) close_revoked_subscribers(c, u, tmp);
    if (!u) u = acl_create_user(argv[2], argvlen[2]);
    acl_user_copy(u, tmp);
    acl_user_free(tmp);
    reply_ok(out);
}

static void acl_log_reply(struct evbuffer *out, long long count)
{
    long long n = 0;
    for (acl_log_entry *e = acl_log_entries(); e; e = e->next) n++;
    if (count > n) count = n;
    reply_array(out, count);
    static const char *const reasons[] = {"unknown", "command", "key", "auth", "channel"};
    static const char *const contexts[] = {"toplevel", "multi", "lua"};
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long now = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    for (acl_log_entry *e = acl_log_entries(); e && count > 0; e = e->next, count--) {
        reply_array(out, 14);
        reply_bulk_cstr(out, "count");
        reply_integer(out, e->count);
        reply_bulk_cstr(out, "reason");
        reply_bulk_cstr(out, e->reason >= 0 && e->reason <= 4 ? reasons[e->reason] : "unknown");
        reply_bulk_cstr(out, "context");
        reply_bulk_cstr(out, e->context >= 0 && e->context <= 2 ? contexts[e->context] : "unknown");
        reply_bulk_cstr(out, "object");
        reply_bulk(out, e->object, e->object_len);
        reply_bulk_cstr(out, "username");
        reply_bulk(out, e->username, e->username_len);
        reply_bulk_cstr(out, "age-seconds");
        char age[64];
        int alen = snprintf(age, sizeof(age), "%.17g", (double)(now - e->ctime_ms) / 1000);
        reply_bulk(out, age, (size_t)alen);
        reply_bulk_cstr(out, "client-info");
        reply_bulk(out, e->cinfo, e->cinfo_len);
    }
}

static void acl_dryrun(struct evbuffer *out, int argc, char **argv, size_t *argvlen)
{
    acl_user *u = acl_find_user(argv[2], argvlen[2]);
    if (!u) {
        reply_errorf(out, "ERR User '%s' not found", argv[2]);
        return;
    }
    int n = argc - 3;
    char **cargv = argv + 3;
    size_t *clen = argvlen + 3;
    const command_def *cmd = command_resolve(n, cargv, clen, NULL);
    if (!cmd) {
        reply_errorf(out, "ERR Command '%s' not found", cargv[0]);
        return;
    }
    if ((cmd->arity > 0 && cmd->arity != n) || n < -cmd->arity) {
        reply_errorf(out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    int pos = 0;
    int rc = acl_check_command(u, cmd, n, cargv, clen, &pos);
    char msg[1024];
    int len;
    if (rc == ACL_OK) {
        reply_ok(out);
        return;
    } else if (rc == ACL_DENIED_CMD) {
        len = snprintf(msg, sizeof(msg), "This user has no permissions to run the '%s' command", cmd->name);
    } else {
        len = snprintf(msg, sizeof(msg), "This user has no permissions to access the '%.*s' %s", (int)clen[pos],
                       cargv[pos], rc == ACL_DENIED_KEY ? "key" : "channel");
    }
    if (len >= (int)sizeof(msg)) len = sizeof(msg) - 1;
    reply_bulk(out, msg, (size_t)len);
}

#define NO_ACLFILE_ERR                                                                                          \
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL " \
    "SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in "     \
    "order to store users in the Redis configuration."

void cmd_acl(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    const char *sub = argv[1];
    size_t sublen = argvlen[1];
    int have_file = config.aclfile && config.aclfile[0];
    if (arg_is(sub, sublen, "setuser") && argc >= 3) {
        acl_setuser(c, out, argc, argv, argvlen);
    } else if (arg_is(sub, sublen, "deluser") && argc >= 3) {
        for (int j = 2; j < argc; j++)
            if (arg_is(argv[j], argvlen[j], "default") && !strcmp(argv[j], "default")) {
                reply_error(out, "ERR The 'default' user cannot be removed");
                return;
            }
        long long deleted = 0;
        for (int j = 2; j < argc; j++) {
            acl_user *u = acl_remove_user(argv[j], argvlen[j]);
            if (!u) continue;
            acl_user_retain(u);
            close_user_clients(c, u);
            acl_user_release(u);
            deleted++;
        }
        reply_integer(out, deleted);
    } else if (arg_is(sub, sublen, "getuser") && argc == 3) {
        acl_user *u = acl_find_user(argv[2], argvlen[2]);
        if (!u) reply_null_bulk(out);
        else acl_getuser(out, u);
    } else if ((arg_is(sub, sublen, "list") || arg_is(sub, sublen, "users")) && argc == 2) {
        int just_names = arg_is(sub, sublen, "users"), n;
        acl_user **all = acl_users(&n);
        reply_array(out, n);
        for (int i = 0; i < n; i++) {
            if (just_names) {
                reply_bulk(out, all[i]->name, all[i]->namelen);
                continue;
            }
            char *d = acl_describe_user(all[i]);
            size_t dlen = strlen(d);
            evbuffer_add_printf(out, "$%zu\r\nuser ", 5 + all[i]->namelen + 1 + dlen);
            evbuffer_add(out, all[i]->name, all[i]->namelen);
            evbuffer_add(out, " ", 1);
            evbuffer_add(out, d, dlen);
            evbuffer_add(out, "\r\n", 2);
            free(d);
        }
    } else if (arg_is(sub, sublen, "whoami") && argc == 2) {
        reply_bulk(out, c->user->name, c->user->namelen);
    } else if (!have_file && (arg_is(sub, sublen, "load") || arg_is(sub, sublen, "save"))) {
        reply_error(out, NO_ACLFILE_ERR);
    } else if (arg_is(sub, sublen, "load") && argc == 2) {
        char *errors = acl_load_file(config.aclfile, load_gone, c);
        if (!errors) {
            reply_ok(out);
        } else {
            reply_errorf(out, "ERR %s", errors);
            free(errors);
        }
    } else if (arg_is(sub, sublen, "save") && argc == 2) {
        if (acl_save_file(config.aclfile) == 0) reply_ok(out);
        else
            reply_error(out, "ERR There was an error trying to save the ACLs. Please check the server logs for more "
                             "information");
    } else if (arg_is(sub, sublen, "cat") && argc == 2) {
        const char *const *names = acl_category_names();
        long long n = 0;
        while (names[n]) n++;
        reply_array(out, n);
        for (long long i = 0; i < n; i++) reply_bulk_cstr(out, names[i]);
    } else if (arg_is(sub, sublen, "cat") && argc == 3) {
        uint32_t cat = acl_category_by_name(argv[2], argvlen[2]);
        if (!cat) {
            reply_errorf(out, "ERR Unknown category '%.128s'", argv[2]);
            return;
        }
        struct evbuffer *tmp = evbuffer_new();
        if (!tmp) abort();
        long long n = 0;
        for (int i = 0; i < command_table_count; i++) {
            const command_def *t = &command_table[i];
            if (acl_command_categories(t) & cat) reply_bulk_cstr(tmp, t->name), n++;
            for (int s = 0; s < t->subcommand_count; s++)
                if (acl_command_categories(&t->subcommands[s]) & cat) reply_bulk_cstr(tmp, t->subcommands[s].name), n++;
        }
        reply_array(out, n);
        evbuffer_add_buffer(out, tmp);
        evbuffer_free(tmp);
    } else if (arg_is(sub, sublen, "genpass") && (argc == 2 || argc == 3)) {
        long long bits = 256;
        if (argc == 3 && !string_to_ll(argv[2], argvlen[2], &bits)) {
            reply_error(out, "ERR value is not an integer or out of range");
            return;
        }
        if (bits <= 0 || bits > 4096) {
            reply_error(out, "ERR ACL GENPASS argument must be the number of bits for the output password, a "
                             "positive number up to 4096");
            return;
        }
        size_t chars = (size_t)(bits + 3) / 4;
        unsigned char raw[512];
        char hex[1024];
        if (RAND_bytes(raw, (int)((chars + 1) / 2)) != 1) {
            reply_error(out, "ERR cannot generate random bytes");
            return;
        }
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < chars; i++) hex[i] = digits[(raw[i / 2] >> ((i % 2) ? 0 : 4)) & 15];
        reply_bulk(out, hex, chars);
    } else if (arg_is(sub, sublen, "log") && (argc == 2 || argc == 3)) {
        long long count = 10;
        if (argc == 3) {
            if (arg_is(argv[2], argvlen[2], "reset")) {
                acl_log_reset();
                reply_ok(out);
                return;
            }
            if (!string_to_ll(argv[2], argvlen[2], &count)) {
                reply_error(out, "ERR value is not an integer or out of range");
                return;
            }
            if (count < 0) count = 0;
        }
        acl_log_reply(out, count);
    } else if (arg_is(sub, sublen, "dryrun") && argc >= 4) {
        acl_dryrun(out, argc, argv, argvlen);
    } else if (arg_is(sub, sublen, "help") && argc == 2) {
        long long n = 0;
        while (acl_help[n]) n++;
        reply_array(out, n);
        for (long long i = 0; i < n; i++) reply_status(out, acl_help[i]);
    } else {
        reply_errorf(out, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try ACL HELP.", sub);
    }
}
