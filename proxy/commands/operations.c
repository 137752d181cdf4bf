/* The operator's commands the proxy answers itself: SLOWLOG, LATENCY,
 * MONITOR and SHUTDOWN (the store never sees what the proxy runs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "proxy/commands/operations.h"
#include "proxy/core/monitor.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/reply.h"
#include "proxy/core/server.h"
#include "proxy/core/slowlog.h"
#include "util/log.h"
#include "util/strconv.h"

static void reply_lines(struct evbuffer *out, const char *const *lines)
{
    long long n = 0;
    while (lines[n]) n++;
    reply_array(out, n);
    for (long long i = 0; i < n; i++) reply_status(out, lines[i]);
}

static const char *const slowlog_help[] = {
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
    NULL,
};

void cmd_slowlog(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    const char *sub = argv[1];
    /* As Redis: a subcommand with the wrong number of arguments is unknown. */
    if (argc == 2 && !strcasecmp(sub, "help")) {
        reply_lines(out, slowlog_help);
    } else if (argc == 2 && !strcasecmp(sub, "len")) {
        reply_integer(out, (long long)slowlog_len());
    } else if (argc == 2 && !strcasecmp(sub, "reset")) {
        slowlog_reset();
        reply_ok(out);
    } else if ((argc == 2 || argc == 3) && !strcasecmp(sub, "get")) {
        long long count = 10;
        if (argc == 3 && (!string_to_ll(argv[2], argvlen[2], &count) || count < -1)) {
            reply_error(out, "ERR count should be greater than or equal to -1");
            return;
        }
        slowlog_reply_get(out, (long)count);
    } else {
        reply_errorf(out, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try SLOWLOG HELP.", sub);
    }
}

static const char *const latency_help[] = {
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
    NULL,
};

void cmd_latency(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    struct evbuffer *out = client_reply_buffer(c);
    const char *sub = argv[1];
    if (argc == 2 && !strcasecmp(sub, "help")) {
        reply_lines(out, latency_help);
    } else if (argc == 2 && !strcasecmp(sub, "latest")) {
        latency_reply_latest(out);
    } else if (argc == 3 && !strcasecmp(sub, "history")) {
        latency_reply_history(out, argv[2]);
    } else if (!strcasecmp(sub, "reset")) {
        reply_integer(out, latency_reset(argc - 2, argv + 2));
    } else if (argc == 2 && !strcasecmp(sub, "doctor")) {
        struct evbuffer *t = evbuffer_new();
        if (!t) abort();
        latency_doctor(t);
        size_t len;
        char *s = buffer_take_string(t, &len);
        /* Redis answers DOCTOR as a verbatim string; RESP2 sees a bulk string. */
        reply_bulk(out, s, len);
        free(s);
    } else if (!strcasecmp(sub, "histogram")) {
        latency_histogram_reply(out, argc - 2, argv + 2, argvlen + 2);
    } else if (argc == 3 && !strcasecmp(sub, "graph")) {
        /* GRAPH draws on data the proxy does not keep. */
        reply_error(out, "ERR LATENCY GRAPH is not supported by evalproxy");
    } else {
        reply_errorf(out, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try LATENCY HELP.", sub);
    }
}

/* SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT], parsed as Redis 7.0 does. It
 * stops the proxy, never the store: NOSAVE, SAVE and FORCE are accepted and
 * change nothing (the proxy keeps no data), NOW skips the drain, ABORT ends
 * a drain in progress. As in Redis, the client gets no reply when the
 * shutdown goes ahead: its connection closes. */
void cmd_shutdown(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    int nosave = 0, save = 0, now = 0, force = 0, abort_it = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcasecmp(argv[i], "nosave")) nosave = 1;
        else if (!strcasecmp(argv[i], "save")) save = 1;
        else if (!strcasecmp(argv[i], "now")) now = 1;
        else if (!strcasecmp(argv[i], "force")) force = 1;
        else if (!strcasecmp(argv[i], "abort")) abort_it = 1;
        else {
            reply_error(client_reply_buffer(c), "ERR syntax error");
            return;
        }
    }
    if ((abort_it && (nosave || save || now || force)) || (nosave && save)) {
        reply_error(client_reply_buffer(c), "ERR syntax error");
        return;
    }
    if (!server.shutdown_request) {
        reply_error(client_reply_buffer(c), "ERR Errors trying to SHUTDOWN. Check logs.");
        return;
    }
    if (abort_it) {
        if (server.shutdown_request(1, 0) == 0) reply_ok(client_reply_buffer(c));
        else reply_error(client_reply_buffer(c), "ERR No shutdown in progress.");
        return;
    }
    log_warning("User requested shutdown...");
    server.shutdown_request(0, now);
}

/* MONITOR: the client sees every command from now on (monitor.c writes the
 * lines); asked again, it is ignored as in Redis. */
void cmd_monitor(client *c, const command_def *cmd, int argc, char **argv, size_t *argvlen)
{
    if (monitor_is(c)) return;
    monitor_add(c);
    reply_ok(client_reply_buffer(c));
}
