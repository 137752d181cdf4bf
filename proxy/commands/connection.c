/* Connection commands the proxy answers itself, with Redis 7.0's replies:
 * PING, ECHO, HELLO, AUTH, SELECT, RESET, CLIENT, TIME. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "proxy/core/acl.h"
#include "proxy/core/client_pause.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/config.h"
#include "proxy/core/reply.h"
#include "proxy/core/monitor.h"
#include "proxy/core/server.h"
#include "proxy/core/tracking.h"
#include "proxy/commands/transactions.h"
#include "proxy/commands/pubsub.h"
#include "util/clock.h"
#include "util/strconv.h"
#include "proxy/commands/acl_command.h"
#include "proxy/commands/connection.h"

#define SYNTAX_ERR "ERR syntax error"

static int arg_is(const char *arg, size_t len, const char *word)
{
    return strlen(word) == len && !strcasecmp(arg, word);
}

void cmd_ping(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    if (argc > 2) {
        reply_errorf(out, "ERR wrong number of arguments for '%s' command", cmd->name);
    } else if (pubsub_subscribed(c) && c->resp == 2) {
        /* Subscribed RESP2 clients get PING's answer in message shape. */
        reply_array(out, 2);
        reply_bulk(out, "pong", 4);
        reply_bulk(out, argc == 2 ? argv[1] : "", argc == 2 ? argvlen[1] : 0);
    } else if (argc == 2) {
        reply_bulk(out, argv[1], argvlen[1]);
    } else {
        reply_status(out, "PONG");
    }
}

void cmd_echo(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    reply_bulk(client_reply_buffer(c), argv[1], argvlen[1]);
}

void cmd_time(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char buf[32];
    struct evbuffer *out = client_reply_buffer(c);
    reply_array(out, 2);
    int n = snprintf(buf, sizeof(buf), "%ld", (long)tv.tv_sec);
    reply_bulk(out, buf, (size_t)n);
    n = snprintf(buf, sizeof(buf), "%ld", (long)tv.tv_usec);
    reply_bulk(out, buf, (size_t)n);
}

/* AUTH and HELLO AUTH: the user's credentials, as Redis checks them; a
 * failure goes to the ACL log. */
static int authenticate(client *c, const char *user, size_t ulen, const char *pass, size_t plen, const char *cmdname)
{
    acl_user *u = acl_check_credentials(user, ulen, pass, plen);
    if (u) {
        c->authenticated = 1;
        client_set_user(c, u);
        return 1;
    }
    size_t clen;
    char *cinfo = client_info_string(c, &clen);
    acl_log_add(ACL_DENIED_AUTH, c->multi ? ACL_CTX_MULTI : ACL_CTX_TOPLEVEL, cmdname, strlen(cmdname), user, ulen,
                cinfo, clen, config.acllog_max_len);
    free(cinfo);
    return 0;
}

#define WRONGPASS "WRONGPASS invalid username-password pair or user is disabled."

void cmd_auth(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    if (argc > 3) {
        reply_error(out, SYNTAX_ERR);
        return;
    }
    const char *user = "default", *pass;
    size_t ulen = 7, plen;
    if (argc == 2) {
        if (acl_default_user()->flags & ACL_USER_NOPASS) {
            reply_error(out, "ERR AUTH <password> called without any password configured for the default user. "
                             "Are you sure your configuration is correct?");
            return;
        }
        pass = argv[1], plen = argvlen[1];
    } else {
        user = argv[1], ulen = argvlen[1];
        pass = argv[2], plen = argvlen[2];
    }
    if (authenticate(c, user, ulen, pass, plen, argv[0])) reply_ok(out);
    else reply_error(out, WRONGPASS);
}

/* Redis's rule for CLIENT SETNAME and HELLO SETNAME. */
static int valid_client_name(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '!' || s[i] > '~') return 0;
    return 1;
}

static void set_name(char **slot, const char *s, size_t len)
{
    free(*slot);
    *slot = NULL;
    if (len) {
        *slot = malloc(len + 1);
        if (!*slot) abort();
        memcpy(*slot, s, len);
        (*slot)[len] = '\0';
    }
}

void cmd_hello(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    /* The reply is written in the protocol HELLO leaves the client in. */
    c->cur_shape = NULL;
    struct evbuffer *out = client_reply_buffer(c);
    long long ver = 0;
    int next = 1;
    if (argc >= 2) {
        next = 2;
        if (!string_to_ll(argv[1], argvlen[1], &ver)) {
            reply_error(out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            reply_error(out, "NOPROTO unsupported protocol version");
            return;
        }
    }
    const char *user = NULL, *pass = NULL, *name = NULL;
    size_t ulen = 0, plen = 0, nlen = 0;
    for (int j = next; j < argc; j++) {
        int more = argc - 1 - j;
        if (arg_is(argv[j], argvlen[j], "auth") && more >= 2) {
            user = argv[j + 1], ulen = argvlen[j + 1];
            pass = argv[j + 2], plen = argvlen[j + 2];
            j += 2;
        } else if (arg_is(argv[j], argvlen[j], "setname") && more) {
            name = argv[j + 1], nlen = argvlen[j + 1];
            if (!valid_client_name(name, nlen)) {
                reply_error(out, "ERR Client names cannot contain spaces, newlines or special characters.");
                return;
            }
            j++;
        } else {
            reply_errorf(out, "ERR Syntax error in HELLO option '%s'", argv[j]);
            return;
        }
    }
    if (user && !authenticate(c, user, ulen, pass, plen, argv[0])) {
        reply_error(out, WRONGPASS);
        return;
    }
    if (client_auth_required(c)) {
        reply_error(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
                         "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
                         "select the RESP protocol version at the same time");
        return;
    }
    if (name) set_name(&c->name, name, nlen);
    if (ver) c->resp = (int)ver;
    if (c->resp == 3) evbuffer_add(out, "%7\r\n", 4);
    else reply_array(out, 14);
    reply_bulk_cstr(out, "server");
    reply_bulk_cstr(out, "redis");
    reply_bulk_cstr(out, "version");
    reply_bulk_cstr(out, REDIS_COMPAT_VERSION);
    reply_bulk_cstr(out, "proto");
    reply_integer(out, c->resp);
    reply_bulk_cstr(out, "id");
    reply_integer(out, (long long)c->id);
    reply_bulk_cstr(out, "mode");
    reply_bulk_cstr(out, "standalone");
    reply_bulk_cstr(out, "role");
    reply_bulk_cstr(out, "master");
    reply_bulk_cstr(out, "modules");
    reply_array(out, 0);
}

void cmd_select(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    long long id;
    if (!string_to_ll(argv[1], argvlen[1], &id)) {
        reply_error(out, "ERR value is not an integer or out of range");
        return;
    }
    if (id < -2147483648LL || id > 2147483647LL) {
        reply_error(out, "ERR value is out of range, value must between -2147483648 and 2147483647");
        return;
    }
    if (server.backend && server.backend->cluster_mode && id != 0) {
        reply_error(out, "ERR SELECT is not allowed in cluster mode");
        return;
    }
    /* The store's databases are selected lazily on the shared connections;
     * the range comes from the `databases` directive (the store's count). */
    if (id < 0 || id >= config.databases) {
        reply_error(out, "ERR DB index is out of range");
        return;
    }
    c->db = (int)id;
    reply_ok(out);
}

void cmd_reset(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    transactions_reset(c);
    monitor_remove(c);
    pubsub_client_gone(c);
    tracking_client_gone(c);
    c->db = server.backend ? server.backend->default_db : 0;
    c->resp = 2;
    set_name(&c->name, NULL, 0);
    c->flags &= ~(CLIENT_REPLY_OFF | CLIENT_REPLY_SKIP_NEXT | CLIENT_REPLY_SKIP | CLIENT_NO_EVICT);
    client_set_default_auth(c);
    reply_status(client_reply_buffer(c), "RESET");
}

/* ---- CLIENT ------------------------------------------------------------------ */

/* CLIENT PAUSE timeout [WRITE|ALL], as Redis 7.0 checks it. */
static void client_pause_command(client *c, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    int all = 1;
    if (argc == 4) {
        if (!strcasecmp(argv[3], "write")) all = 0;
        else if (strcasecmp(argv[3], "all")) {
            reply_error(out, "ERR CLIENT PAUSE mode must be WRITE or ALL");
            return;
        }
    } else if (argc != 3) {
        reply_error(out, "ERR syntax error");
        return;
    }
    long long ms;
    if (!string_to_ll(argv[2], argvlen[2], &ms)) {
        reply_error(out, "ERR timeout is not an integer or out of range");
        return;
    }
    if (ms < 0) {
        reply_error(out, "ERR timeout is negative");
        return;
    }
    long long now = clock_wall_ms();
    /* As Redis 7.0: an end past the clock's range wraps into the past (a
     * pause that is over at once). */
    long long end = ms > 0 ? (long long)((unsigned long long)now + (unsigned long long)ms) : 0;
    /* Inside EXEC the store's pause waits for the transaction's end. */
    clients_pause(end, all, c->capture != NULL);
    reply_ok(out);
}

static const char *const client_help[] = {
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Print this help.",
    NULL,
};

static void reply_help(struct evbuffer *out, const char *const *lines)
{
    long long n = 0;
    while (lines[n]) n++;
    reply_array(out, n);
    for (long long i = 0; i < n; i++) reply_status(out, lines[i]);
}

static int client_type_valid(const char *t, size_t len)
{
    return arg_is(t, len, "normal") || arg_is(t, len, "master") || arg_is(t, len, "replica") ||
           arg_is(t, len, "slave") || arg_is(t, len, "pubsub");
}

static void client_list(client *c, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    int only_normal = 1, by_type = 0;
    unsigned long long *ids = NULL;
    int nids = 0;
    if (argc == 4 && arg_is(argv[2], argvlen[2], "type")) {
        if (!client_type_valid(argv[3], argvlen[3])) {
            reply_errorf(out, "ERR Unknown client type '%s'", argv[3]);
            return;
        }
        by_type = 1;
        only_normal = arg_is(argv[3], argvlen[3], "normal");
    } else if (argc > 3 && arg_is(argv[2], argvlen[2], "id")) {
        ids = malloc(sizeof(*ids) * (size_t)(argc - 3));
        if (!ids) abort();
        for (int j = 3; j < argc; j++) {
            long long v;
            if (!string_to_ll(argv[j], argvlen[j], &v) || v < 1) {
                reply_error(out, "ERR Invalid client ID");
                free(ids);
                return;
            }
            ids[nids++] = (unsigned long long)v;
        }
    } else if (argc != 2) {
        reply_error(out, SYNTAX_ERR);
        return;
    }
    struct evbuffer *tmp = evbuffer_new();
    if (!tmp) abort();
    /* Oldest first, as Redis lists them. */
    client *last = server.clients;
    while (last && last->next) last = last->next;
    for (client *o = last; o; o = o->prev) {
        if (by_type && !only_normal) continue;
        if (ids) {
            int hit = 0;
            for (int k = 0; k < nids; k++) hit |= ids[k] == o->id;
            if (!hit) continue;
        }
        client_describe(o, tmp);
    }
    free(ids);
    size_t len = evbuffer_get_length(tmp);
    evbuffer_add_printf(out, "$%zu\r\n", len);
    evbuffer_add_buffer(out, tmp);
    evbuffer_add(out, "\r\n", 2);
    evbuffer_free(tmp);
}

static void client_kill(client *c, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    if (argc == 3) {
        /* Old form: CLIENT KILL addr:port. */
        for (client *o = server.clients; o; o = o->next) {
            if (!strcmp(o->addr, argv[2])) {
                reply_ok(out);
                if (o == c) client_close_after_reply(c);
                else client_close(o);
                return;
            }
        }
        reply_error(out, "ERR No such client");
        return;
    }
    unsigned long long id = 0;
    const char *addr = NULL, *laddr = NULL, *user = NULL;
    int skipme = 1, type_given = 0, type_normal = 1;
    long long maxage = 0;
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) {
            reply_error(out, SYNTAX_ERR);
            return;
        }
        const char *o = argv[i], *v = argv[i + 1];
        size_t olen = argvlen[i], vlen = argvlen[i + 1];
        long long ll;
        if (arg_is(o, olen, "id")) {
            if (!string_to_ll(v, vlen, &ll) || ll <= 0) {
                reply_error(out, "ERR client-id should be greater than 0");
                return;
            }
            id = (unsigned long long)ll;
        } else if (arg_is(o, olen, "type")) {
            if (!client_type_valid(v, vlen)) {
                reply_errorf(out, "ERR Unknown client type '%s'", v);
                return;
            }
            type_given = 1;
            type_normal = arg_is(v, vlen, "normal");
        } else if (arg_is(o, olen, "addr")) {
            addr = v;
        } else if (arg_is(o, olen, "laddr")) {
            laddr = v;
        } else if (arg_is(o, olen, "user")) {
            if (!acl_find_user(v, vlen)) {
                reply_errorf(out, "ERR No such user '%s'", v);
                return;
            }
            user = v;
        } else if (arg_is(o, olen, "skipme")) {
            if (arg_is(v, vlen, "yes")) skipme = 1;
            else if (arg_is(v, vlen, "no")) skipme = 0;
            else {
                reply_error(out, SYNTAX_ERR);
                return;
            }
        } else if (arg_is(o, olen, "maxage")) {
            if (!string_to_ll(v, vlen, &ll) || ll <= 0) {
                reply_error(out, "ERR syntax error");
                return;
            }
            maxage = ll;
        } else {
            reply_error(out, SYNTAX_ERR);
            return;
        }
    }
    time_t now = time(NULL);
    long long killed = 0;
    int kill_self = 0;
    client *o = server.clients;
    while (o) {
        client *next = o->next;
        int match = 1;
        if (id && o->id != id) match = 0;
        if (addr && strcmp(o->addr, addr)) match = 0;
        if (laddr && strcmp(o->laddr, laddr)) match = 0;
        if (user && strcmp(user, o->user->name)) match = 0;
        if (type_given && !type_normal) match = 0;
        if (maxage && now - o->ctime < maxage) match = 0;
        if (o == c && skipme) match = 0;
        if (match) {
            killed++;
            if (o == c) kill_self = 1;
            else client_close(o);
        }
        o = next;
    }
    reply_integer(out, killed);
    if (kill_self) client_close_after_reply(c);
}

void cmd_client(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    const char *sub = argv[1];
    size_t sublen = argvlen[1];
    struct evbuffer *out;
    if (arg_is(sub, sublen, "id")) {
        reply_integer(client_reply_buffer(c), (long long)c->id);
    } else if (arg_is(sub, sublen, "list")) {
        client_list(c, argc, argv, argvlen);
    } else if (arg_is(sub, sublen, "info")) {
        struct evbuffer *tmp = evbuffer_new();
        client_describe(c, tmp);
        out = client_reply_buffer(c);
        evbuffer_add_printf(out, "$%zu\r\n", evbuffer_get_length(tmp));
        evbuffer_add_buffer(out, tmp);
        evbuffer_add(out, "\r\n", 2);
        evbuffer_free(tmp);
    } else if (arg_is(sub, sublen, "kill")) {
        client_kill(c, argc, argv, argvlen);
    } else if (arg_is(sub, sublen, "setname")) {
        out = client_reply_buffer(c);
        if (!valid_client_name(argv[2], argvlen[2])) {
            reply_error(out, "ERR Client names cannot contain spaces, newlines or special characters.");
            return;
        }
        set_name(&c->name, argv[2], argvlen[2]);
        reply_ok(out);
    } else if (arg_is(sub, sublen, "getname")) {
        out = client_reply_buffer(c);
        if (c->name) reply_bulk_cstr(out, c->name);
        else reply_null_bulk(out);
    } else if (arg_is(sub, sublen, "setinfo")) {
        out = client_reply_buffer(c);
        int is_name = arg_is(argv[2], argvlen[2], "lib-name");
        if (!is_name && !arg_is(argv[2], argvlen[2], "lib-ver")) {
            reply_errorf(out, "ERR Unrecognized option '%s'", argv[2]);
            return;
        }
        if (!valid_client_name(argv[3], argvlen[3])) {
            reply_errorf(out, "ERR %s cannot contain spaces, newlines or special characters.",
                         is_name ? "lib-name" : "lib-ver");
            return;
        }
        set_name(is_name ? &c->lib_name : &c->lib_ver, argv[3], argvlen[3]);
        reply_ok(out);
    } else if (arg_is(sub, sublen, "reply")) {
        if (arg_is(argv[2], argvlen[2], "on")) {
            c->flags &= ~(CLIENT_REPLY_OFF | CLIENT_REPLY_SKIP_NEXT | CLIENT_REPLY_SKIP);
            reply_ok(client_reply_buffer(c));
        } else if (arg_is(argv[2], argvlen[2], "off")) {
            c->flags |= CLIENT_REPLY_OFF;
            c->flags |= CLIENT_REPLY_SKIP; /* this reply too */
        } else if (arg_is(argv[2], argvlen[2], "skip")) {
            if (!(c->flags & CLIENT_REPLY_OFF)) c->flags |= CLIENT_REPLY_SKIP_NEXT;
            c->flags |= CLIENT_REPLY_SKIP;
        } else {
            reply_error(client_reply_buffer(c), SYNTAX_ERR);
        }
    } else if (arg_is(sub, sublen, "no-evict")) {
        out = client_reply_buffer(c);
        if (arg_is(argv[2], argvlen[2], "on")) c->flags |= CLIENT_NO_EVICT, reply_ok(out);
        else if (arg_is(argv[2], argvlen[2], "off")) c->flags &= ~CLIENT_NO_EVICT, reply_ok(out);
        else reply_error(out, SYNTAX_ERR);
    } else if (arg_is(sub, sublen, "getredir") || arg_is(sub, sublen, "trackinginfo") ||
               arg_is(sub, sublen, "tracking") || arg_is(sub, sublen, "caching")) {
        tracking_client_command(c, argc, argv, argvlen, client_reply_buffer(c));
    } else if (arg_is(sub, sublen, "unblock")) {
        long long v;
        int with_error = 0;
        if (!string_to_ll(argv[2], argvlen[2], &v)) {
            reply_error(client_reply_buffer(c), "ERR value is not an integer or out of range");
            return;
        }
        if (argc == 4) {
            if (arg_is(argv[3], argvlen[3], "error")) with_error = 1;
            else if (!arg_is(argv[3], argvlen[3], "timeout")) {
                reply_error(client_reply_buffer(c), "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
                return;
            }
        }
        int done = 0;
        for (client *o = server.clients; o; o = o->next)
            if (o->id == (unsigned long long)v) {
                done = blocking_unblock(o, with_error);
                break;
            }
        reply_integer(client_reply_buffer(c), done);
    } else if (arg_is(sub, sublen, "pause")) {
        client_pause_command(c, argc, argv, argvlen);
    } else if (arg_is(sub, sublen, "unpause")) {
        clients_unpause();
        reply_ok(client_reply_buffer(c));
    } else if (arg_is(sub, sublen, "help")) {
        reply_help(client_reply_buffer(c), client_help);
    } else {
        reply_errorf(client_reply_buffer(c), "ERR CLIENT %s is not supported by evalproxy", cmd->name + 7);
    }
}

/* One CLIENT LIST line (registered with client_set_describer). */
void client_describe(client *c, struct evbuffer *out)
{
    time_t now = time(NULL);
    /* Flags in Redis 7.0's order; 'b' is a blocking command waiting, as in
     * Redis (not a command waiting for a lock or a script). */
    char flags[16];
    int nf = 0;
    if (client_subscribed(c)) flags[nf++] = 'P';
    if (c->multi) flags[nf++] = 'x';
    if (c->dedicated_blocking || c->postponed) flags[nf++] = 'b'; /* CLIENT PAUSE holds it: Redis's blocked too */
    if (c->flags & CLIENT_CLOSE_AFTER_REPLY) flags[nf++] = 'c';
    if (c->flags & CLIENT_UNIX_SOCKET) flags[nf++] = 'U';
    if (c->flags & CLIENT_NO_EVICT) flags[nf++] = 'e';
    if (!nf) flags[nf++] = 'N';
    flags[nf] = '\0';
    /* Input not yet run: unparsed bytes and the parser's partial command. */
    size_t qbuf = request_parser_pending(&c->parser) + (c->bev ? evbuffer_get_length(bufferevent_get_input(c->bev)) : 0);
    /* Redis trims its query buffer after the command runs: the client asking
     * sees its own command in it (as RESP). */
    if (client_running_command(c) && !(c->flags & CLIENT_BLOCKED)) {
        char num[24];
        qbuf += (size_t)snprintf(num, sizeof(num), "*%d\r\n", c->parser.argc);
        for (int i = 0; i < c->parser.argc; i++)
            qbuf += (size_t)snprintf(num, sizeof(num), "$%zu\r\n", c->parser.argvlen[i]) + c->parser.argvlen[i] + 2;
    }
    size_t qbuf_free = c->parser.arena_cap > c->parser.arena_len ? c->parser.arena_cap - c->parser.arena_len : 0;
    /* The arguments of the command it runs or waits to run. */
    size_t argv_mem = 0;
    if (client_running_command(c) || (c->flags & CLIENT_BLOCKED))
        for (int i = 0; i < c->parser.argc; i++) argv_mem += c->parser.argvlen[i];
    size_t multi_mem = multi_memory(c);
    /* Replies owed: written to no socket yet, or kept in order behind others. */
    size_t omem = c->bev ? client_pending_output(c) : 0;
    for (reply_slot *s = c->slots_head; s; s = s->next)
        if (s->buf) omem += evbuffer_get_length(s->buf);
    size_t tot_mem = sizeof(*c) + qbuf + c->parser.arena_cap + c->parser.line_cap +
                     (size_t)c->parser.argv_cap * (2 * sizeof(char *) + sizeof(size_t)) + omem + multi_mem +
                     (size_t)c->slots_pending * sizeof(reply_slot);
    char events[3];
    int ne = 0;
    if (client_reading_enabled(c)) events[ne++] = 'r';
    if ((c->write_ev && event_pending(c->write_ev, EV_WRITE, NULL)) ||
        (c->bev && (c->flags & CLIENT_TLS) && evbuffer_get_length(bufferevent_get_output(c->bev))))
        events[ne++] = 'w';
    events[ne] = '\0';
    evbuffer_add_printf(out,
                        "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=%s db=%d sub=%d psub=%d "
                        "ssub=%d multi=%d qbuf=%zu qbuf-free=%zu argv-mem=%zu multi-mem=%zu rbs=0 rbp=0 obl=0 oll=%u "
                        "omem=%zu tot-mem=%zu events=%s cmd=%s user=%s redir=-1 resp=%d",
                        (unsigned long long)c->id, c->addr, c->laddr, c->fd, c->name ? c->name : "",
                        (long long)(now - c->ctime), (long long)(now - c->last_interaction), flags, c->db,
                        pubsub_count_kind(c, 0), pubsub_count_kind(c, 1), pubsub_count(c, 1), multi_length(c), qbuf,
                        qbuf_free, argv_mem, multi_mem, c->slots_pending, omem, tot_mem, events,
                        c->last_cmd ? c->last_cmd : "NULL", c->user->name, c->resp);
    if (c->lib_name || c->lib_ver)
        evbuffer_add_printf(out, " lib-name=%s lib-ver=%s", c->lib_name ? c->lib_name : "",
                            c->lib_ver ? c->lib_ver : "");
    evbuffer_add(out, "\n", 1);
}
