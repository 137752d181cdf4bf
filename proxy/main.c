/* evalproxy: a RESP proxy that adds Redis 7.0 scripting in front of stores
 * that lack it. main: command line, configuration, listeners, event loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "backends/backend.h"
#include "backends/router.h"
#include "backends/conn.h"
#include "proxy/core/client_pause.h"
#include "proxy/core/key_events.h"
#include "proxy/core/tracking.h"
#include "proxy/core/acl.h"
#include "proxy/core/command_table.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/config.h"
#include "fleet/fleet.h"
#include "proxy/commands/fleet_commands.h"
#include "proxy/core/locks.h"
#include "util/log.h"
#include "proxy/core/reply.h"
#include "proxy/core/monitor.h"
#include "proxy/core/server.h"
#include "proxy/core/slowlog.h"
#include "proxy/core/tls.h"
#include "proxy/commands/acl_command.h"
#include "proxy/commands/cluster_commands.h"
#include "proxy/commands/connection.h"
#include "proxy/commands/emulation.h"
#include "proxy/commands/migration.h"
#include "proxy/commands/metrics.h"
#include "proxy/commands/operations.h"
#include "proxy/commands/pubsub.h"
#include "proxy/commands/scripting.h"
#include "proxy/commands/server_commands.h"
#include "proxy/commands/transactions.h"
#include "util/clock.h"



#define MAX_LISTENERS (2 * CONFIG_MAX_BIND + 1)

/* Listening starts once the store's first connection is ready (or its
 * first attempt failed, or 2 s went by): a client that reaches a proxy
 * just started is not told that the store is unavailable while it is only
 * being connected to. */
#define STORE_WAIT_MAX_MS 2000

static void store_wait_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void wait_for_store(void)
{
    struct timeval start;
    evutil_gettimeofday(&start, NULL);
    for (;;) {
        backend *b = server.backend;
        if (backend_pick(b, 0) >= 0) return;
        const char *why = backend_error(b);
        size_t n = strlen(why);
        if (n < 10 || strcmp(why + n - 10, "connecting") != 0) return; /* failed: start all the same */
        struct timeval now, d;
        evutil_gettimeofday(&now, NULL);
        evutil_timersub(&now, &start, &d);
        if (d.tv_sec * 1000 + d.tv_usec / 1000 >= STORE_WAIT_MAX_MS) return;
        /* A turn of the loop, or 5 ms of nothing (the timer wakes it). */
        static const struct timeval tick = {0, 5000};
        event_base_once(server.base, -1, EV_TIMEOUT, store_wait_tick, NULL, &tick);
        event_base_loop(server.base, EVLOOP_ONCE);
    }
}

/* What a listener accepts; passed to accept_cb as its argument. */
enum listener_kind { LISTEN_TCP = 0, LISTEN_UNIX, LISTEN_TLS };
static struct evconnlistener *listeners[MAX_LISTENERS];
static int listener_kinds[MAX_LISTENERS];
static int listener_count;
static struct event *sig_events[3];
static struct event *cron_ev;

static void usage(FILE *fp)
{
    fprintf(fp,
            "Usage: ./evalproxy [/path/to/proxy.conf] [options]\n"
            "       ./evalproxy -v or --version\n"
            "       ./evalproxy -h or --help\n"
            "       ./evalproxy --test-config [/path/to/proxy.conf] [options]\n\n"
            "Options are proxy.conf directives written as --directive value, e.g.\n"
            "       ./evalproxy --port 6380 --backend redis://127.0.0.1:6379\n"
            "       ./evalproxy /etc/evalproxy/proxy.conf --loglevel verbose\n");
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen, void *arg)
{
    (void)l;
    (void)sa;
    (void)socklen;
    int kind = (int)(intptr_t)arg;
    int over_limit = server.clients_count >= (unsigned long)config.maxclients;
    if (over_limit && kind != LISTEN_TLS) {
        static const char err[] = "-ERR max number of clients reached\r\n";
        ssize_t w = write(fd, err, sizeof(err) - 1);
        (void)w;
        close(fd);
        server.stats.rejected_connections++;
        return;
    }
    SSL *ssl = NULL;
    if (kind == LISTEN_TLS && !(ssl = tls_new_server_ssl())) {
        close(fd);
        return;
    }
    client *c = client_create(fd, kind == LISTEN_UNIX, ssl);
    if (over_limit) {
        /* A TLS client reads the error only through TLS: it goes out after
         * the handshake, then the connection closes. */
        server.stats.connections_received--;
        server.stats.rejected_connections++;
        reply_error(client_reply_buffer(c), "ERR max number of clients reached");
        /* Reads stay on: the handshake needs them (requests are not read
         * once the client is marked). */
        c->flags |= CLIENT_CLOSE_AFTER_REPLY;
    }
}

/* Out of file descriptors, accept fails while the connection stays queued:
 * the listeners would wake the loop at once, forever. They pause instead and
 * try again after ACCEPT_PAUSE_MS, or as soon as a client closes; the error
 * is logged once per ACCEPT_LOG_SECONDS with how often it happened. */
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_LOG_SECONDS 10
static struct event *accept_resume_ev;
static int accept_paused;
static time_t accept_logged_at;
static unsigned long accept_errors_unlogged;

static void listeners_enable(int on)
{
    for (int i = 0; i < listener_count; i++) {
        if (on) evconnlistener_enable(listeners[i]);
        else evconnlistener_disable(listeners[i]);
    }
}

static void accept_resume(void)
{
    if (!accept_paused) return;
    accept_paused = 0;
    evtimer_del(accept_resume_ev);
    listeners_enable(1);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    accept_resume();
}

/* A close frees a descriptor: accept again. */
static void accept_client_closed(client *c)
{
    (void)c;
    accept_resume();
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    time_t now = time(NULL);
    if (now - accept_logged_at >= ACCEPT_LOG_SECONDS) {
        if (accept_errors_unlogged)
            log_warning("Accepting client connection: %s (%lu more since the last report)",
                        evutil_socket_error_to_string(err), accept_errors_unlogged);
        else log_warning("Accepting client connection: %s", evutil_socket_error_to_string(err));
        accept_logged_at = now;
        accept_errors_unlogged = 0;
    } else {
        accept_errors_unlogged++;
    }
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) return;
    if (!accept_paused && accept_resume_ev) {
        accept_paused = 1;
        listeners_enable(0);
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        evtimer_add(accept_resume_ev, &tv);
    }
}

static int listen_tcp(const char *addr, int port, int kind)
{
    int optional = addr[0] == '-';
    if (optional) addr++;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1) goto bad;
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (!strcmp(addr, "*")) s4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1) goto bad;
        len = sizeof(*s4);
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    if (ss.ss_family == AF_INET6) flags |= LEV_OPT_BIND_IPV6ONLY;
    struct evconnlistener *l =
        evconnlistener_new_bind(server.base, accept_cb, (void *)(intptr_t)kind, flags, config.tcp_backlog,
                                (struct sockaddr *)&ss, (int)len);
    if (!l) {
        int e = errno;
        if (optional && (e == EADDRNOTAVAIL || e == EAFNOSUPPORT || e == EPROTONOSUPPORT)) {
            log_verbose("Skipping optional bind address %s: %s", addr, strerror(e));
            return 0;
        }
        log_warning("Could not create server %s listening socket %s:%d: %s", kind == LISTEN_TLS ? "TLS" : "TCP", addr,
                    port, strerror(e));
        return -1;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    listener_kinds[listener_count] = kind;
    listeners[listener_count++] = l;
    return 0;
bad:
    log_warning("Invalid bind address '%s'", addr);
    return -1;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        log_warning("unixsocket path too long: %s", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    unlink(path);
    struct evconnlistener *l = evconnlistener_new_bind(server.base, accept_cb, (void *)(intptr_t)LISTEN_UNIX,
                                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                                       config.tcp_backlog, (struct sockaddr *)&sun, sizeof(sun));
    if (!l) {
        log_warning("Failed opening Unix socket %s: %s", path, strerror(errno));
        return -1;
    }
    if (config.unixsocketperm) chmod(path, (mode_t)config.unixsocketperm);
    evconnlistener_set_error_cb(l, accept_error_cb);
    listener_kinds[listener_count] = LISTEN_UNIX;
    listeners[listener_count++] = l;
    return 0;
}

/* Closes the TCP and TLS listeners, keeping the unix socket's. */
static void close_network_listeners(void)
{
    int keep = 0;
    for (int i = 0; i < listener_count; i++) {
        if (listener_kinds[i] == LISTEN_UNIX) {
            listeners[keep] = listeners[i];
            listener_kinds[keep++] = LISTEN_UNIX;
        } else {
            evconnlistener_free(listeners[i]);
        }
    }
    listener_count = keep;
}

static int server_relisten(void)
{
    /* As Redis: the old sockets close first (the new ones may take the same
     * addresses); on failure none of the new stays open. */
    close_network_listeners();
    int ok = 1;
    for (int i = 0; ok && i < config.bind_count; i++)
        if (config.port && listen_tcp(config.bind[i], config.port, LISTEN_TCP) != 0) ok = 0;
    for (int i = 0; ok && i < config.bind_count; i++)
        if (config.tls_port && listen_tcp(config.bind[i], config.tls_port, LISTEN_TLS) != 0) ok = 0;
    if (!ok) {
        close_network_listeners();
        return -1;
    }
    if (accept_paused) listeners_enable(0);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------
 * SIGTERM, SIGINT and SHUTDOWN drain: no new connections; the clients there
 * are keep being served (the proxy cannot tell bytes sent before the signal
 * from bytes sent after), each is closed once it owes and awaits nothing,
 * and the proxy exits when no client is left and no script, EXEC or orphan
 * command runs, or when shutdown-timeout has passed. */
#define DRAIN_CHECK_MS 10
static struct event *drain_ev;
static unsigned long long drain_deadline_us;
static int supervised_systemd;

static void notify_supervisor(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    if (supervised_systemd) sd_notify(0, state);
#else
    (void)state;
#endif
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (client *c = server.clients, *next; c; c = next) {
        next = c->next;
        if (client_idle(c)) client_close(c);
    }
    unsigned long pending = server_work_pending();
    if (!server.clients && !pending) {
        log_notice("Every client is answered and nothing runs any more.");
        event_base_loopbreak(server.base);
    } else if (clock_us() >= drain_deadline_us) {
        log_warning("shutdown-timeout reached: closing %lu clients with %lu scripts, transactions or commands "
                    "still running.",
                    server.clients_count, pending);
        event_base_loopbreak(server.base);
    }
}

static int begin_shutdown(int abort_it, int now)
{
    if (abort_it) {
        if (!server.draining) return -1;
        server.draining = 0;
        evtimer_del(drain_ev);
        if (server_relisten() != 0 || (config.unixsocket && listen_unix(config.unixsocket) != 0))
            log_warning("Shutdown aborted but some listening socket could not be opened again.");
        log_warning("Shutdown manually aborted.");
        notify_supervisor("STATUS=Ready to accept connections\n");
        return 0;
    }
    if (server.draining) {
        /* Asked again: stop waiting. */
        drain_deadline_us = 0;
        return 0;
    }
    server.draining = 1;
    /* Closed, not paused: new connections are refused rather than queued. */
    for (int i = 0; i < listener_count; i++) evconnlistener_free(listeners[i]);
    listener_count = 0;
    notify_supervisor("STOPPING=1\n");
    drain_deadline_us = now ? 0 : clock_us() + (unsigned long long)config.shutdown_timeout * 1000000ULL;
    log_notice("Closing the listening sockets; finishing the commands and scripts that run (shutdown-timeout %ds).",
               now ? 0 : config.shutdown_timeout);
    struct timeval tv = {0, DRAIN_CHECK_MS * 1000};
    event_add(drain_ev, &tv);
    return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (sig == SIGHUP) {
        /* logrotate moved the file away: write to a new one at the same path. */
        if (config.logfile && log_set_file(config.logfile) != 0)
            fprintf(stderr, "Can't reopen the log file %s: %s\n", config.logfile, strerror(errno));
        log_notice("Received SIGHUP, the log file is reopened.");
        return;
    }
    if (server.draining) {
        log_warning("Received %s during shutdown: exiting now.", sig == SIGINT ? "SIGINT" : "SIGTERM");
        event_base_loopbreak(server.base);
        return;
    }
    log_warning("Received %s scheduling shutdown...", sig == SIGINT ? "SIGINT" : "SIGTERM");
    begin_shutdown(0, 0);
}

static void daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) exit(0);
    setsid();
    int fd = open("/dev/null", O_RDWR, 0);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO) close(fd);
    }
}

static void cron_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    clients_cron();
    info_cron();
    tracking_limit();
}

static void write_pidfile(void)
{
    /* As Redis: a daemon writes one even when none is named. */
    if (!config.pidfile && config.daemonize) config.pidfile = strdup("/var/run/evalproxy.pid");
    if (!config.pidfile) return;
    FILE *fp = fopen(config.pidfile, "w");
    if (!fp) {
        log_warning("Failed to write PID file %s: %s", config.pidfile, strerror(errno));
        return;
    }
    fprintf(fp, "%d\n", (int)getpid());
    fclose(fp);
}

static void make_run_id(void)
{
    unsigned char raw[20];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        for (size_t i = 0; i < sizeof(raw); i++) raw[i] = (unsigned char)(rand() & 0xff);
    }
    for (size_t i = 0; i < sizeof(raw); i++) snprintf(server.run_id + 2 * i, 3, "%02x", raw[i]);
}

static int load_configuration(int argc, char **argv, int *test_only)
{
    char err[1024];
    int i = 1;
    config_init_defaults();
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--test-config")) {
            *test_only = 1;
            memmove(&argv[k], &argv[k + 1], sizeof(char *) * (size_t)(argc - k));
            argc--;
            break;
        }
    }
    if (i < argc && strncmp(argv[i], "--", 2) != 0) {
        if (config_load_file(argv[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "\n*** FATAL CONFIG FILE ERROR ***\n%s\n", err);
            return -1;
        }
        i++;
    }
    if (config_load_args(argc - i, argv + i, err, sizeof(err)) != 0) {
        fprintf(stderr, "\n*** FATAL CONFIG FILE ERROR ***\n%s\n", err);
        return -1;
    }
    if (acl_load_startup(config.aclfile, err, sizeof(err)) != 0) {
        fprintf(stderr, "\n*** FATAL CONFIG FILE ERROR ***\n%s\n", err);
        return -1;
    }
    backend_url u;
    if (!backend_url_is_cluster(config.backend_url)) {
        if (backend_url_parse(config.backend_url, &u, err, sizeof(err)) != 0) {
            fprintf(stderr, "\n*** FATAL CONFIG FILE ERROR ***\n'backend': %s\n", err);
            return -1;
        }
        backend_url_free(&u);
    }
    const char *why = config_check_backends();
    if (why) {
        fprintf(stderr, "\n*** FATAL CONFIG FILE ERROR ***\n'backend': %s\n", why);
        return -1;
    }
    if (config.tls_port && tls_configure(err, sizeof(err)) != 0) {
        fprintf(stderr, "\n*** FATAL CONFIG FILE ERROR ***\nFailed to configure TLS: %s\n", err);
        return -1;
    }
    return 0;
}

/* The command families sit above the core: main hands the core what each
 * one answers and the hooks the request path needs. */
static const struct {
    const char *name;
    command_handler *handler;
} proxy_commands[] = {
    {"ping", cmd_ping},         {"echo", cmd_echo},           {"hello", cmd_hello},
    {"auth", cmd_auth},         {"select", cmd_select},       {"reset", cmd_reset},
    {"client", cmd_client},     {"time", cmd_time},           {"command", cmd_command},
    {"info", cmd_info},         {"config", cmd_config},       {"acl", cmd_acl},
    {"eval", cmd_eval},         {"evalsha", cmd_eval},        {"eval_ro", cmd_eval},
    {"evalsha_ro", cmd_eval},   {"fcall", cmd_eval},          {"fcall_ro", cmd_eval},
    {"script", cmd_script},     {"function", cmd_function},   {"multi", cmd_multi},
    {"exec", cmd_exec},         {"discard", cmd_discard},     {"watch", cmd_watch},
    {"unwatch", cmd_unwatch},   {"subscribe", cmd_subscribe}, {"psubscribe", cmd_subscribe},
    {"ssubscribe", cmd_subscribe}, {"unsubscribe", cmd_unsubscribe},
    {"punsubscribe", cmd_unsubscribe}, {"sunsubscribe", cmd_unsubscribe},
    {"publish", cmd_publish},   {"spublish", cmd_publish},    {"pubsub", cmd_pubsub},
    {"debug", cmd_debug},
    {"slowlog", cmd_slowlog},   {"latency", cmd_latency},  {"shutdown", cmd_shutdown},
    {"monitor", cmd_monitor},
};

/* Commands Redis 7.0 does not have that the proxy answers. */
static int own_command(client *c, int argc, char **argv, size_t *argvlen)
{
    return fleet_own_command(c, argc, argv, argvlen) || migration_own_command(c, argc, argv, argvlen);
}

/* Answered by the proxy only in a fleet: out of one, these keep every
 * trait of a relayed or refused command (inside MULTI, in COMMAND's list). */
static const struct {
    const char *name;
    command_handler *handler;
} fleet_commands[] = {
    {"cluster", cmd_cluster},   {"readonly", cmd_cluster_mode},
    {"readwrite", cmd_cluster_mode}, {"asking", cmd_cluster_mode},
};

static void wire_command_families(void)
{
    for (size_t i = 0; i < sizeof(proxy_commands) / sizeof(proxy_commands[0]); i++)
        dispatch_register(proxy_commands[i].name, proxy_commands[i].handler);
    if (config.fleet_name && config.fleet_name[0])
        for (size_t i = 0; i < sizeof(fleet_commands) / sizeof(fleet_commands[0]); i++)
            dispatch_register(fleet_commands[i].name, fleet_commands[i].handler);
    static const dispatch_hooks hooks = {
        .acl_denies = acl_client_denies,
        .busy_scripts = scripting_busy_count,
        .multi_queue = multi_queue,
        .multi_flag_dirty = multi_flag_dirty,
        .exec_reject = exec_reject,
        .blocking = blocking_command,
        .emulate = emulation_dispatch,
        .emulates = emulation_emulates,
        .may_write = transactions_may_write,
        .debug_command = scripting_debug_command,
        .own_command = own_command,
    };
    dispatch_set_hooks(&hooks);
    client_set_command_handler(dispatch_command);
    client_set_describer(client_describe);
}

/* fleet-name: join the fleet; members reach this one at fleet-announce
 * (default: the first bind address, or 127.0.0.1, and the port). */
static int start_fleet(void)
{
    if (!config.fleet_name || !config.fleet_name[0]) return 0;
    char host[256];
    int port = config.port;
    const char *bind0 = config.bind_count ? config.bind[0] : "127.0.0.1";
    snprintf(host, sizeof(host), "%s", strcmp(bind0, "*") && strcmp(bind0, "0.0.0.0") && strcmp(bind0, "::") && strcmp(bind0, "::*") ? bind0 : "127.0.0.1");
    if (config.fleet_announce && config.fleet_announce[0]) {
        const char *colon = strrchr(config.fleet_announce, ':');
        if (!colon || !(port = atoi(colon + 1)) || colon == config.fleet_announce) {
            log_warning("fleet-announce must be host:port, not '%s'", config.fleet_announce);
            return -1;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(colon - config.fleet_announce), config.fleet_announce);
    }
    if (!port) {
        log_warning("a fleet member needs a TCP port (port, or fleet-announce)");
        return -1;
    }
    char credentials[600] = "";
    if (config.requirepass && config.requirepass[0])
        snprintf(credentials, sizeof(credentials), ":%s@", config.requirepass);
    fleet_options o = {config.fleet_name, host, port, config.fleet_lease_ms, credentials, fleet_recover_member};
    char err[256];
    if (fleet_start(server.base, server.backend, &o, err, sizeof(err)) != 0) {
        log_warning("%s", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "-v") || !strcmp(argv[1], "--version"))) {
        printf("evalproxy v=%s redis-compat=%s\n", EVALPROXY_VERSION, REDIS_COMPAT_VERSION);
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    int test_only = 0;
    if (load_configuration(argc, argv, &test_only) != 0) return 1;
    if (test_only) {
        printf("Configuration test passed\n");
        return 0;
    }
    log_set_level(config.loglevel);
    signal(SIGPIPE, SIG_IGN);
    if (config.daemonize) daemonize();
    supervised_systemd = config.supervised == SUPERVISED_SYSTEMD ||
                         (config.supervised == SUPERVISED_AUTO && getenv("NOTIFY_SOCKET"));
#ifndef HAVE_LIBSYSTEMD
    if (supervised_systemd) log_warning("supervised systemd: this build has no libsystemd, not notifying");
#endif

    int fit = server_fit_open_files(config.maxclients, config.backend_connections);
    if (fit < 0) return 1;
    config.maxclients = fit;
    server.base = event_base_new();
    if (!server.base) {
        fprintf(stderr, "cannot create the event loop\n");
        return 1;
    }
    server.start_time = time(NULL);
    make_run_id();
    wire_command_families();
    dispatch_init();
    /* Each feature lets go of a closing client: a relayed command waiting
     * for locks is handed over, scripts (pipelined ones too) drop their
     * reply, transactions and subscriptions end. */
    client_add_close_hook(relay_client_gone);
    client_add_close_hook(fleet_client_gone);
    client_add_close_hook(fleet_commands_client_gone);
    client_add_close_hook(scripting_client_gone);
    client_add_close_hook(emulation_client_gone);
    emulation_init();
    client_add_close_hook(transactions_client_gone);
    client_add_close_hook(pubsub_client_gone);
    client_add_close_hook(tracking_client_gone);
    client_add_close_hook(accept_client_closed);
    client_add_close_hook(monitor_remove);
    client_pause_init();
    accept_resume_ev = evtimer_new(server.base, accept_resume_cb, NULL);
    locks_init(server.base);
    if (scripting_init() != 0) {
        log_warning("cannot start the Lua engine");
        return 1;
    }
    if (functions_load_file() != 0) return 1;

    char err[512];
    store_tls_options store_tls;
    config_store_tls(&store_tls);
    backend_command_keys = command_keys_of_line;
    if (config.backend_count > 1) {
        backend_pool_member *members = calloc((size_t)config.backend_count, sizeof(*members));
        if (!members) abort();
        for (int i = 0; i < config.backend_count; i++)
            members[i] = (backend_pool_member){config.backend_urls[i], config.backend_weights[i],
                                               config.backend_names[i]};
        backend_pool_options opt = {config.distribution, config.hash, config.hash_tag, config.auto_eject_hosts,
                                    config.server_failure_limit, config.server_retry_timeout_ms};
        server.backend = backend_pool_create(server.base, members, config.backend_count, &opt,
                                             config.backend_connections, &store_tls, err, sizeof(err));
        free(members);
    } else if (backend_url_is_cluster(config.backend_url)) {
        backend_cluster_refresh_ms = config.cluster_refresh_ms;
        config.databases = 1; /* Redis Cluster has database 0 only */
        server.backend = backend_cluster_create(server.base, config.backend_url, config.backend_connections,
                                                &store_tls, err, sizeof(err));
    } else {
        server.backend = backend_create(server.base, config.backend_url, config.backend_connections,
                                        config.databases, &store_tls, err, sizeof(err));
    }
    if (server.backend) server.backend->databases = config.databases;
    if (!server.backend) {
        log_warning("backend: %s", err);
        return 1;
    }
    server.backend->connect_timeout_ms = config.backend_connect_timeout_ms;
    server.backend->max_string_len = config.proto_max_bulk_len;
    if (migration_start(server.base, err, sizeof(err)) != 0) {
        log_warning("%s", err);
        return 1;
    }
    server.relisten = server_relisten;
    wait_for_store();
    for (int i = 0; i < config.bind_count; i++)
        if (config.port && listen_tcp(config.bind[i], config.port, LISTEN_TCP) != 0) return 1;
    for (int i = 0; i < config.bind_count; i++)
        if (config.tls_port && listen_tcp(config.bind[i], config.tls_port, LISTEN_TLS) != 0) return 1;
    if (config.unixsocket && listen_unix(config.unixsocket) != 0) return 1;
    if (listener_count == 0) {
        log_warning("Configured to not listen anywhere, exiting.");
        return 1;
    }
    if (metrics_start(server.base) != 0) return 1;
    if (start_fleet() != 0) return 1;
    write_pidfile();

    sig_events[0] = evsignal_new(server.base, SIGTERM, signal_cb, NULL);
    sig_events[1] = evsignal_new(server.base, SIGINT, signal_cb, NULL);
    sig_events[2] = evsignal_new(server.base, SIGHUP, signal_cb, NULL);
    for (int i = 0; i < 3; i++) evsignal_add(sig_events[i], NULL);
    drain_ev = event_new(server.base, -1, EV_PERSIST, drain_cb, NULL);
    server.shutdown_request = begin_shutdown;
    server_add_drain_check(scripting_calls_pending);
    server_add_drain_check(transactions_runs_pending);
    server_add_drain_check(relay_orphans_pending);
    cron_ev = event_new(server.base, -1, EV_PERSIST, cron_cb, NULL);
    struct timeval tick = {1, 0};
    event_add(cron_ev, &tick);

    log_notice("evalproxy %s (Redis %s compatible) started, pid=%d, port=%d, tls-port=%d, backend=%s",
               EVALPROXY_VERSION, REDIS_COMPAT_VERSION, (int)getpid(), config.port, config.tls_port,
               server.backend->display);
    log_notice("Ready to accept connections");
    notify_supervisor("STATUS=Ready to accept connections\nREADY=1\n");
    info_cron(); /* the memory in use at startup */
    event_base_dispatch(server.base);

    /* Orderly teardown, so leak checkers see a clean exit. */
    for (int i = 0; i < listener_count; i++) evconnlistener_free(listeners[i]);
    listener_count = 0;
    event_free(accept_resume_ev);
    accept_resume_ev = NULL;
    accept_paused = 0;
    if (config.unixsocket) unlink(config.unixsocket);
    scripting_begin_shutdown();
    clients_close_all();
    metrics_stop();
    backend_free(server.backend); /* fails what is pending: callbacks see closed clients */
    key_events_stop();
    fleet_recovery_stop();
    fleet_stop();
    migration_shutdown(); /* fails the moves still waiting for the old store */
    emulation_shutdown();
    scripting_shutdown();
    pubsub_shutdown();
    clients_shutdown();
    transactions_shutdown();
    client_pause_shutdown();
    dispatch_free();
    slowlog_free();
    monitor_shutdown();
    locks_shutdown();
    tls_shutdown();
    acl_shutdown();
    for (int i = 0; i < 3; i++) event_free(sig_events[i]);
    event_free(drain_ev);
    event_free(cron_ev);
    event_base_free(server.base);
    if (config.pidfile) unlink(config.pidfile);
    log_notice("evalproxy is now ready to exit, bye bye...");
    return 0;
}
