/* The Prometheus endpoint: the figures INFO shows, under Prometheus's
 * naming (counters end in _total, times in seconds), served by libevent's
 * HTTP server on its own port. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "backends/backend.h"
#include "proxy/commands/metrics.h"
#include "proxy/commands/scripting.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/config.h"
#include "proxy/core/locks.h"
#include "proxy/core/server.h"
#include "util/alloc_stats.h"
#include "util/log.h"

static struct evhttp *http;

/* Store round trips, in seconds: Prometheus's default buckets from 100us. */
#define RTT_BUCKETS 12
static const double rtt_bounds[RTT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.5,    1.0};
static unsigned long long rtt_counts[RTT_BUCKETS + 1];
static unsigned long long rtt_sum_us;

static void rtt_observe(unsigned long long us)
{
    double s = (double)us / 1e6;
    int b = 0;
    while (b < RTT_BUCKETS && s > rtt_bounds[b]) b++;
    rtt_counts[b]++;
    rtt_sum_us += us;
}

/* A "name:value" field of an INFO text, or 0. */
static double info_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, name, n) && p[n] == ':') return strtod(p + n + 1, NULL);
    }
    return 0;
}

static void family(struct evbuffer *o, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct evbuffer *o, const char *name, double v)
{
    evbuffer_add_printf(o, "%s %.17g\n", name, v);
}

static void histogram(struct evbuffer *o, const char *name, const double *bounds, int nb,
                      const unsigned long long *counts, double sum)
{
    unsigned long long cum = 0;
    for (int i = 0; i < nb; i++) {
        cum += counts[i];
        evbuffer_add_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum);
    }
    cum += counts[nb];
    evbuffer_add_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name, cum, name, sum, name,
                        cum);
}

struct per_command {
    struct evbuffer *o;
    int what; /* 0 calls, 1 seconds, 2 failed, 3 rejected */
};

static void command_line(void *arg, const char *name, unsigned long long calls, unsigned long long usec,
                         unsigned long long failed, unsigned long long rejected)
{
    struct per_command *pc = arg;
    static const char *const names[] = {"evalproxy_commands_total", "evalproxy_command_duration_seconds_total",
                                        "evalproxy_command_failed_total", "evalproxy_command_rejected_total"};
    /* Command names are [a-z|-_]: nothing to escape in the label. */
    if (pc->what == 1) evbuffer_add_printf(pc->o, "%s{command=\"%s\"} %.6f\n", names[1], name, (double)usec / 1e6);
    else
        evbuffer_add_printf(pc->o, "%s{command=\"%s\"} %llu\n", names[pc->what], name,
                            pc->what == 0 ? calls : pc->what == 2 ? failed : rejected);
}

static void render(struct evbuffer *o)
{
    struct evbuffer *t = evbuffer_new();
    if (!t) abort();
    scripting_info(t);
    if (server.backend) backend_info(server.backend, t);
    evbuffer_add(t, "", 1);
    const char *info = (const char *)evbuffer_pullup(t, -1);

    family(o, "evalproxy_connected_clients", "gauge", "Client connections open.");
    sample(o, "evalproxy_connected_clients", (double)server.clients_count);
    family(o, "evalproxy_connections_received_total", "counter", "Client connections accepted.");
    sample(o, "evalproxy_connections_received_total", (double)server.stats.connections_received);

    static const char *const cmd_families[][2] = {
        {"evalproxy_commands_total", "Commands run, by command (INFO commandstats calls)."},
        {"evalproxy_command_duration_seconds_total", "Time commands took from dispatch to reply, by command."},
        {"evalproxy_command_failed_total", "Commands that answered an error, by command."},
        {"evalproxy_command_rejected_total", "Commands refused before they ran, by command."},
    };
    for (int w = 0; w < 4; w++) {
        family(o, cmd_families[w][0], "counter", cmd_families[w][1]);
        struct per_command pc = {o, w};
        stats_foreach_command(command_line, &pc);
    }
    family(o, "evalproxy_command_errors_total", "counter", "Error replies sent to clients.");
    sample(o, "evalproxy_command_errors_total", (double)stats_error_replies());

    family(o, "evalproxy_scripts_running", "gauge", "Scripts and functions running now.");
    sample(o, "evalproxy_scripts_running", info_value(info, "scripts_running"));
    family(o, "evalproxy_scripts_busy", "gauge", "Scripts running past busy-reply-threshold.");
    sample(o, "evalproxy_scripts_busy", info_value(info, "scripts_busy"));
    static const char *const script_counters[][3] = {
        {"evalproxy_scripts_finished_total", "scripts_finished", "Scripts and functions that finished."},
        {"evalproxy_scripts_killed_total", "scripts_killed", "Scripts stopped by SCRIPT KILL or FUNCTION KILL."},
        {"evalproxy_script_reruns_total", "scripts_rerun", "Scripts run again after giving way in a deadlock."},
        {"evalproxy_script_deadlock_errors_total", "scripts_deadlock_errors", "Scripts failed by a deadlock."},
        {"evalproxy_scripts_undone_total", "scripts_undone", "Scripts whose writes were undone."},
        {"evalproxy_lock_waits_total", "lock_waited", "Lock requests that had to wait."},
        {"evalproxy_lock_granted_immediately_total", "lock_granted_immediately", "Lock requests granted at once."},
        {"evalproxy_lock_busy_refusals_total", "lock_busy_refusals", "Commands refused with BUSY."},
        {"evalproxy_lock_deadlocks_total", "lock_deadlocks", "Lock cycles found."},
    };
    for (size_t i = 0; i < sizeof(script_counters) / sizeof(script_counters[0]); i++) {
        family(o, script_counters[i][0], "counter", script_counters[i][2]);
        sample(o, script_counters[i][0], info_value(info, script_counters[i][1]));
    }
    family(o, "evalproxy_lock_sets_holding", "gauge", "Lock requests holding their keys now.");
    sample(o, "evalproxy_lock_sets_holding", info_value(info, "lock_sets_holding"));
    family(o, "evalproxy_lock_sets_waiting", "gauge", "Lock requests waiting now.");
    sample(o, "evalproxy_lock_sets_waiting", info_value(info, "lock_sets_waiting"));

    unsigned long long wc[LOCK_WAIT_BUCKETS + 1], wsum;
    locks_wait_histogram(wc, &wsum);
    double wb[LOCK_WAIT_BUCKETS];
    for (int i = 0; i < LOCK_WAIT_BUCKETS; i++) wb[i] = (double)lock_wait_bounds_us[i] / 1e6;
    family(o, "evalproxy_lock_wait_seconds", "histogram", "How long lock requests waited before being granted.");
    histogram(o, "evalproxy_lock_wait_seconds", wb, LOCK_WAIT_BUCKETS, wc, (double)wsum / 1e6);

    family(o, "evalproxy_store_up", "gauge", "1 when at least one store connection is ready.");
    sample(o, "evalproxy_store_up", info_value(info, "backend_connections_ready") > 0 ? 1 : 0);
    family(o, "evalproxy_store_connections_ready", "gauge", "Store connections ready.");
    sample(o, "evalproxy_store_connections_ready", info_value(info, "backend_connections_ready"));
    family(o, "evalproxy_store_errors_total", "counter", "Commands failed because the store could not be reached.");
    sample(o, "evalproxy_store_errors_total", (double)server.stats.backend_errors);
    family(o, "evalproxy_store_round_trip_seconds", "histogram",
           "Time from a request being queued for the store to its reply being read.");
    histogram(o, "evalproxy_store_round_trip_seconds", rtt_bounds, RTT_BUCKETS, rtt_counts, (double)rtt_sum_us / 1e6);

    family(o, "evalproxy_used_memory_bytes", "gauge", "Bytes allocated by the proxy (INFO used_memory).");
    sample(o, "evalproxy_used_memory_bytes", (double)alloc_stats_used());
    family(o, "evalproxy_draining", "gauge", "1 while the proxy shuts down.");
    sample(o, "evalproxy_draining", server.draining ? 1 : 0);
    evbuffer_free(t);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path || strcmp(path, "/metrics")) {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    struct evbuffer *o = evbuffer_new();
    if (!o) abort();
    render(o);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", o);
    evbuffer_free(o);
}

int metrics_start(struct event_base *base)
{
    if (!config.metrics_port) return 0;
    http = evhttp_new(base);
    if (!http) return -1;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
    if (!evhttp_bind_socket_with_handle(http, config.metrics_bind, (ev_uint16_t)config.metrics_port)) {
        log_warning("Could not listen for metrics on %s:%d", config.metrics_bind, config.metrics_port);
        evhttp_free(http);
        http = NULL;
        return -1;
    }
    evhttp_set_gencb(http, request_cb, NULL);
    backend_round_trip_observer = rtt_observe;
    log_notice("Metrics on http://%s:%d/metrics", config.metrics_bind, config.metrics_port);
    return 0;
}

void metrics_stop(void)
{
    if (http) evhttp_free(http);
    http = NULL;
    backend_round_trip_observer = NULL;
}
