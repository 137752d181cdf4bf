#include "proxy/core/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/conn.h"
#include "backends/router.h"
#include "proxy/core/acl.h"
#include "util/files.h"
#include "util/log.h"
#include "proxy/core/server.h"
#include "util/args.h"
#include "util/glob.h"
#include "util/strconv.h"

proxy_config config;
char *config_file_path;

enum config_type { CT_BOOL, CT_INT, CT_LL, CT_MEM, CT_STRING, CT_ENUM, CT_SPECIAL };
enum config_flag { CF_IMMUTABLE = 1 };

typedef struct config_enum { const char *name; int value; } config_enum;

typedef struct config_def {
    const char *name;
    const char *alias;
    int type;
    int flags;
    void *ptr;
    long long min, max;
    const config_enum *enums;
    const char *(*set_special)(int argc, char **argv);
    int (*get_special)(char *buf, size_t len);
} config_def;

static const config_enum loglevel_enum[] = {
    {"debug", LL_DEBUG}, {"verbose", LL_VERBOSE}, {"notice", LL_NOTICE},
    {"warning", LL_WARNING}, {"nothing", LL_NOTHING}, {NULL, 0}};
static const config_enum busy_scope_enum[] = {{"keys", 0}, {"all", 1}, {NULL, 0}};
static const config_enum undeclared_enum[] = {{"lock", 0}, {"error", 1}, {NULL, 0}};
static const config_enum supervised_enum[] = {
    {"no", SUPERVISED_NO}, {"systemd", SUPERVISED_SYSTEMD}, {"auto", SUPERVISED_AUTO}, {NULL, 0}};
static const config_enum tls_auth_enum[] = {{"no", TLS_AUTH_CLIENTS_NO},
                                            {"yes", TLS_AUTH_CLIENTS_YES},
                                            {"optional", TLS_AUTH_CLIENTS_OPTIONAL},
                                            {NULL, 0}};

static const char *set_bind(int argc, char **argv);
static int get_bind(char *buf, size_t len);
static const char *set_obuf(int argc, char **argv);
static int get_obuf(char *buf, size_t len);
static const char *set_logfile(int argc, char **argv);
static const char *set_loglevel(int argc, char **argv);

static const config_def config_defs[] = {
    {"bind", NULL, CT_SPECIAL, 0, NULL, 0, 0, NULL, set_bind, get_bind},
    {"port", NULL, CT_INT, 0, &config.port, 0, 65535, NULL, NULL, NULL},
    {"tcp-backlog", NULL, CT_INT, CF_IMMUTABLE, &config.tcp_backlog, 0, INT_MAX, NULL, NULL, NULL},
    {"unixsocket", NULL, CT_STRING, CF_IMMUTABLE, &config.unixsocket, 0, 0, NULL, NULL, NULL},
    {"unixsocketperm", NULL, CT_INT, CF_IMMUTABLE, &config.unixsocketperm, 0, 0777, NULL, NULL, NULL},
    {"backend", NULL, CT_STRING, CF_IMMUTABLE, &config.backend_url, 0, 0, NULL, NULL, NULL},
    {"distribution", NULL, CT_STRING, CF_IMMUTABLE, &config.distribution, 0, 0, NULL, NULL, NULL},
    {"hash", NULL, CT_STRING, CF_IMMUTABLE, &config.hash, 0, 0, NULL, NULL, NULL},
    {"hash-tag", NULL, CT_STRING, CF_IMMUTABLE, &config.hash_tag, 0, 0, NULL, NULL, NULL},
    {"auto-eject-hosts", NULL, CT_BOOL, CF_IMMUTABLE, &config.auto_eject_hosts, 0, 1, NULL, NULL, NULL},
    {"server-failure-limit", NULL, CT_INT, CF_IMMUTABLE, &config.server_failure_limit, 1, 1000000, NULL, NULL, NULL},
    {"server-retry-timeout", NULL, CT_LL, CF_IMMUTABLE, &config.server_retry_timeout_ms, 1, 86400000, NULL, NULL, NULL},
    {"cluster-refresh-interval", NULL, CT_LL, CF_IMMUTABLE, &config.cluster_refresh_ms, 100, 3600000, NULL, NULL, NULL},
    {"backend-connections", NULL, CT_INT, CF_IMMUTABLE, &config.backend_connections, 1, 256, NULL, NULL, NULL},
    {"backend-admin-commands", NULL, CT_BOOL, 0, &config.backend_admin_commands, 0, 1, NULL, NULL, NULL},
    {"backend-blocking-connections", NULL, CT_LL, 0, &config.backend_blocking_connections, 0, 100000, NULL, NULL, NULL},
    {"backend-connect-timeout", NULL, CT_LL, 0, &config.backend_connect_timeout_ms, 1, 3600000, NULL, NULL, NULL},
    {"requirepass", NULL, CT_STRING, 0, &config.requirepass, 0, 0, NULL, NULL, NULL},
    {"aclfile", NULL, CT_STRING, CF_IMMUTABLE, &config.aclfile, 0, 0, NULL, NULL, NULL},
    {"acllog-max-len", NULL, CT_LL, 0, &config.acllog_max_len, 0, LLONG_MAX, NULL, NULL, NULL},
    {"maxclients", NULL, CT_INT, 0, &config.maxclients, 1, 4294967295LL, NULL, NULL, NULL},
    {"timeout", NULL, CT_INT, 0, &config.timeout, 0, INT_MAX, NULL, NULL, NULL},
    {"tcp-keepalive", NULL, CT_INT, 0, &config.tcp_keepalive, 0, INT_MAX, NULL, NULL, NULL},
    {"proto-max-bulk-len", NULL, CT_MEM, 0, &config.proto_max_bulk_len, 1024 * 1024, LLONG_MAX, NULL, NULL, NULL},
    {"client-query-buffer-limit", NULL, CT_MEM, 0, &config.client_query_buffer_limit, 1024 * 1024, LLONG_MAX, NULL, NULL, NULL},
    {"client-output-buffer-limit", NULL, CT_SPECIAL, 0, NULL, 0, 0, NULL, set_obuf, get_obuf},
    {"loglevel", NULL, CT_SPECIAL, 0, NULL, 0, 0, NULL, set_loglevel, NULL},
    {"logfile", NULL, CT_SPECIAL, CF_IMMUTABLE, NULL, 0, 0, NULL, set_logfile, NULL},
    {"pidfile", NULL, CT_STRING, CF_IMMUTABLE, &config.pidfile, 0, 0, NULL, NULL, NULL},
    {"slowlog-log-slower-than", NULL, CT_LL, 0, &config.slowlog_log_slower_than, -1, LLONG_MAX, NULL, NULL, NULL},
    {"slowlog-max-len", NULL, CT_LL, 0, &config.slowlog_max_len, 0, LONG_MAX, NULL, NULL, NULL},
    {"latency-monitor-threshold", NULL, CT_LL, 0, &config.latency_monitor_threshold, 0, LLONG_MAX, NULL, NULL, NULL},
    {"shutdown-timeout", NULL, CT_INT, 0, &config.shutdown_timeout, 0, INT_MAX, NULL, NULL, NULL},
    {"metrics-port", NULL, CT_INT, CF_IMMUTABLE, &config.metrics_port, 0, 65535, NULL, NULL, NULL},
    {"metrics-bind", NULL, CT_STRING, CF_IMMUTABLE, &config.metrics_bind, 0, 0, NULL, NULL, NULL},
    {"daemonize", NULL, CT_BOOL, CF_IMMUTABLE, &config.daemonize, 0, 1, NULL, NULL, NULL},
    {"supervised", NULL, CT_ENUM, CF_IMMUTABLE, &config.supervised, 0, 0, supervised_enum, NULL, NULL},
    {"databases", NULL, CT_INT, CF_IMMUTABLE, &config.databases, 1, INT_MAX, NULL, NULL, NULL},
    {"busy-reply-threshold", "lua-time-limit", CT_LL, 0, &config.busy_reply_threshold, 0, LLONG_MAX, NULL, NULL, NULL},
    {"tracking-table-max-keys", NULL, CT_LL, 0, &config.tracking_table_max_keys, 0, LLONG_MAX, NULL, NULL, NULL},
    {"busy-reply-scope", NULL, CT_ENUM, 0, &config.busy_reply_scope_all, 0, 0, busy_scope_enum, NULL, NULL},
    {"lua-memory-limit", NULL, CT_MEM, 0, &config.lua_memory_limit, 0, LLONG_MAX, NULL, NULL, NULL},
    {"lua-undeclared-keys", NULL, CT_ENUM, 0, &config.lua_undeclared_keys_error, 0, 0, undeclared_enum, NULL, NULL},
    {"lua-time-slice", NULL, CT_LL, 0, &config.lua_time_slice_us, 100, 1000000, NULL, NULL, NULL},
    {"lua-debug-sessions-max", NULL, CT_LL, 0, &config.lua_debug_sessions_max, 0, 100000, NULL, NULL, NULL},
    {"lua-script-pipelining", NULL, CT_BOOL, 0, &config.lua_script_pipelining, 0, 1, NULL, NULL, NULL},
    {"lua-rollback-on-error", NULL, CT_BOOL, 0, &config.lua_rollback_on_error, 0, 1, NULL, NULL, NULL},
    {"functions-file", NULL, CT_STRING, CF_IMMUTABLE, &config.functions_file, 0, 0, NULL, NULL, NULL},
    {"store-emulate", NULL, CT_STRING, 0, &config.store_emulate, 0, 0, NULL, NULL, NULL},
    {"migrate-from", NULL, CT_STRING, CF_IMMUTABLE, &config.migrate_from, 0, 0, NULL, NULL, NULL},
    {"migrate-rate", NULL, CT_LL, 0, &config.migrate_rate, 1, 100000000, NULL, NULL, NULL},
    {"migrate-pause", NULL, CT_BOOL, 0, &config.migrate_pause, 0, 1, NULL, NULL, NULL},
    {"fleet-name", NULL, CT_STRING, CF_IMMUTABLE, &config.fleet_name, 0, 0, NULL, NULL, NULL},
    {"fleet-announce", NULL, CT_STRING, CF_IMMUTABLE, &config.fleet_announce, 0, 0, NULL, NULL, NULL},
    {"fleet-lease-ms", NULL, CT_LL, CF_IMMUTABLE, &config.fleet_lease_ms, 300, 600000, NULL, NULL, NULL},
    {"fleet-redirect", NULL, CT_BOOL, 0, &config.fleet_redirect, 0, 1, NULL, NULL, NULL},
    /* Changing a tls-* value rebuilds the TLS context (see tls_configure). */
    {"tls-port", NULL, CT_INT, CF_IMMUTABLE, &config.tls_port, 0, 65535, NULL, NULL, NULL},
    {"tls-cert-file", NULL, CT_STRING, 0, &config.tls_cert_file, 0, 0, NULL, NULL, NULL},
    {"tls-key-file", NULL, CT_STRING, 0, &config.tls_key_file, 0, 0, NULL, NULL, NULL},
    {"tls-key-file-pass", NULL, CT_STRING, 0, &config.tls_key_file_pass, 0, 0, NULL, NULL, NULL},
    {"tls-ca-cert-file", NULL, CT_STRING, 0, &config.tls_ca_cert_file, 0, 0, NULL, NULL, NULL},
    {"tls-ca-cert-dir", NULL, CT_STRING, 0, &config.tls_ca_cert_dir, 0, 0, NULL, NULL, NULL},
    {"tls-auth-clients", NULL, CT_ENUM, 0, &config.tls_auth_clients, 0, 0, tls_auth_enum, NULL, NULL},
    {"tls-protocols", NULL, CT_STRING, 0, &config.tls_protocols, 0, 0, NULL, NULL, NULL},
    {"tls-ciphers", NULL, CT_STRING, 0, &config.tls_ciphers, 0, 0, NULL, NULL, NULL},
    {"tls-ciphersuites", NULL, CT_STRING, 0, &config.tls_ciphersuites, 0, 0, NULL, NULL, NULL},
    {"tls-prefer-server-ciphers", NULL, CT_BOOL, 0, &config.tls_prefer_server_ciphers, 0, 1, NULL, NULL, NULL},
    {"tls-session-caching", NULL, CT_BOOL, 0, &config.tls_session_caching, 0, 1, NULL, NULL, NULL},
    {"tls-session-cache-size", NULL, CT_INT, 0, &config.tls_session_cache_size, 0, INT_MAX, NULL, NULL, NULL},
    {"tls-session-cache-timeout", NULL, CT_INT, 0, &config.tls_session_cache_timeout, 0, INT_MAX, NULL, NULL, NULL},
    {"backend-tls-ca-cert-file", NULL, CT_STRING, CF_IMMUTABLE, &config.backend_tls_ca_cert_file, 0, 0, NULL, NULL, NULL},
    {"backend-tls-ca-cert-dir", NULL, CT_STRING, CF_IMMUTABLE, &config.backend_tls_ca_cert_dir, 0, 0, NULL, NULL, NULL},
    {"backend-tls-cert-file", NULL, CT_STRING, CF_IMMUTABLE, &config.backend_tls_cert_file, 0, 0, NULL, NULL, NULL},
    {"backend-tls-key-file", NULL, CT_STRING, CF_IMMUTABLE, &config.backend_tls_key_file, 0, 0, NULL, NULL, NULL},
    {"backend-tls-verify", NULL, CT_BOOL, CF_IMMUTABLE, &config.backend_tls_verify, 0, 1, NULL, NULL, NULL},
    {NULL, NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL},
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

static void set_string(char **slot, const char *v)
{
    free(*slot);
    *slot = (v && v[0]) ? xstrdup(v) : NULL;
}

/* Where the loaders are (for a directive that may be given only once), and
 * where the store was named: "at file:line" or "on the command line"; ""
 * while only the default names it. */
static const char *load_file;
static int load_line;
static char backend_origin[512];

void config_init_defaults(void)
{
    backend_origin[0] = '\0';
    for (int i = 0; i < config.bind_count; i++) free(config.bind[i]);
    config.bind_count = 2;
    config.bind[0] = xstrdup("127.0.0.1");
    config.bind[1] = xstrdup("-::1");
    config.port = 6380;
    config.tcp_backlog = 511;
    config.unixsocketperm = 0;
    config.backend_url = xstrdup("redis://127.0.0.1:6379");
    for (int i = 0; i < config.backend_count; i++) {
        free(config.backend_urls[i]);
        free(config.backend_names[i]);
    }
    config.backend_count = 0;
    set_string(&config.distribution, NULL);
    set_string(&config.hash, "fnv1a_64");
    set_string(&config.hash_tag, NULL);
    config.auto_eject_hosts = 0;
    config.server_failure_limit = 2;
    config.server_retry_timeout_ms = 30000;
    config.cluster_refresh_ms = 5000;
    config.backend_connections = 4;
    config.backend_admin_commands = 0;
    config.backend_connect_timeout_ms = 2000;
    config.migrate_rate = 1000;
    config.fleet_lease_ms = 3000;
    config.migrate_pause = 0;
    config.backend_blocking_connections = 1024;
    config.maxclients = 10000;
    config.timeout = 0;
    config.tcp_keepalive = 300;
    config.proto_max_bulk_len = 512LL * 1024 * 1024;
    config.client_query_buffer_limit = 1024LL * 1024 * 1024;
    config.obuf_limits[CLIENT_CLASS_NORMAL] = (obuf_limit){0, 0, 0};
    config.obuf_limits[CLIENT_CLASS_REPLICA] = (obuf_limit){256ULL << 20, 64ULL << 20, 60};
    config.obuf_limits[CLIENT_CLASS_PUBSUB] = (obuf_limit){32ULL << 20, 8ULL << 20, 60};
    config.loglevel = LL_NOTICE;
    config.databases = 16;
    config.slowlog_log_slower_than = 10000;
    config.slowlog_max_len = 128;
    config.latency_monitor_threshold = 0;
    config.shutdown_timeout = 10;
    config.metrics_port = 0;
    set_string(&config.metrics_bind, "127.0.0.1");
    config.daemonize = 0;
    config.supervised = SUPERVISED_NO;
    config.acllog_max_len = 128;
    config.busy_reply_threshold = 5000;
    config.tracking_table_max_keys = 1000000;
    config.busy_reply_scope_all = 0;
    config.lua_memory_limit = 1024LL * 1024 * 1024; /* 1gb: see proxy.conf */
    config.lua_undeclared_keys_error = 0;
    config.lua_time_slice_us = 2000;
    config.lua_debug_sessions_max = 32;
    config.tls_port = 0;
    config.tls_auth_clients = TLS_AUTH_CLIENTS_YES;
    config.tls_prefer_server_ciphers = 0;
    config.tls_session_caching = 1;
    config.tls_session_cache_size = 20 * 1024;
    config.tls_session_cache_timeout = 300;
    config.backend_tls_verify = 1;
}

/* ---- directives ---------------------------------------------------------- */

static const config_def *find_def(const char *name, size_t len)
{
    for (const config_def *d = config_defs; d->name; d++) {
        if (strlen(d->name) == len && !strncasecmp(d->name, name, len)) return d;
        if (d->alias && strlen(d->alias) == len && !strncasecmp(d->alias, name, len)) return d;
    }
    return NULL;
}

int config_is_proxy_directive(const char *name, size_t len) { return find_def(name, len) != NULL; }

static const char *set_bind(int argc, char **argv)
{
    /* No address at all is allowed while running (CONFIG SET bind ""), as Redis. */
    if (argc < 1 && !server.base) return "wrong number of arguments";
    if (argc > CONFIG_MAX_BIND) return "Too many bind addresses specified.";
    for (int i = 0; i < config.bind_count; i++) free(config.bind[i]);
    config.bind_count = 0;
    for (int i = 0; i < argc; i++) config.bind[config.bind_count++] = xstrdup(argv[i]);
    return NULL;
}

static int get_bind(char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < config.bind_count && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "", config.bind[i]);
    return (int)(off < len ? off : len - 1);
}

static const char *class_names[CLIENT_CLASS_COUNT] = {"normal", "slave", "pubsub"};

static const char *set_obuf(int argc, char **argv)
{
    if (argc % 4 != 0 || argc == 0) return "Wrong number of arguments in buffer limit configuration.";
    obuf_limit tmp[CLIENT_CLASS_COUNT];
    memcpy(tmp, config.obuf_limits, sizeof(tmp));
    for (int i = 0; i < argc; i += 4) {
        int cls = -1;
        if (!strcasecmp(argv[i], "normal")) cls = CLIENT_CLASS_NORMAL;
        else if (!strcasecmp(argv[i], "replica") || !strcasecmp(argv[i], "slave")) cls = CLIENT_CLASS_REPLICA;
        else if (!strcasecmp(argv[i], "pubsub")) cls = CLIENT_CLASS_PUBSUB;
        if (cls < 0) return "Invalid client class specified in buffer limit configuration.";
        int e1, e2;
        long long hard = mem_to_ll(argv[i + 1], &e1), soft = mem_to_ll(argv[i + 2], &e2);
        long long secs;
        if (e1 || e2 || hard < 0 || soft < 0 || !string_to_ll(argv[i + 3], strlen(argv[i + 3]), &secs) || secs < 0)
            return "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        tmp[cls] = (obuf_limit){(unsigned long long)hard, (unsigned long long)soft, secs};
    }
    memcpy(config.obuf_limits, tmp, sizeof(tmp));
    return NULL;
}

static int get_obuf(char *buf, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < CLIENT_CLASS_COUNT && off < len; i++) {
        const obuf_limit *l = &config.obuf_limits[i];
        off += (size_t)snprintf(buf + off, len - off, "%s%s %llu %llu %lld", i ? " " : "", class_names[i],
                                l->hard, l->soft, l->soft_seconds);
    }
    return (int)(off < len ? off : len - 1);
}

static const char *set_loglevel(int argc, char **argv)
{
    if (argc != 1) return "wrong number of arguments";
    for (const config_enum *e = loglevel_enum; e->name; e++) {
        if (!strcasecmp(e->name, argv[0])) {
            config.loglevel = e->value;
            log_set_level(e->value);
            return NULL;
        }
    }
    /* "nothing" is accepted but, as Redis 7.0 does not have it, not listed. */
    return "argument(s) must be one of the following: debug, verbose, notice, warning";
}

static const char *set_logfile(int argc, char **argv)
{
    if (argc != 1) return "wrong number of arguments";
    if (log_set_file(argv[0]) != 0) {
        static char why[256];
        snprintf(why, sizeof(why), "Can't open the log file: %s", strerror(errno));
        return why;
    }
    set_string(&config.logfile, argv[0]);
    return NULL;
}

static const char *apply_def(const config_def *d, int argc, char **argv)
{
    static char why[256];
    if (d->type == CT_SPECIAL) return d->set_special(argc, argv);
    if (argc != 1) return "wrong number of arguments";
    const char *v = argv[0];
    switch (d->type) {
    case CT_BOOL:
        if (!strcasecmp(v, "yes")) *(int *)d->ptr = 1;
        else if (!strcasecmp(v, "no")) *(int *)d->ptr = 0;
        else return "argument must be 'yes' or 'no'";
        return NULL;
    case CT_INT:
    case CT_LL:
    case CT_MEM: {
        long long ll;
        int err = 0;
        if (d->type == CT_MEM) ll = mem_to_ll(v, &err);
        else if (d->ptr == &config.unixsocketperm) {
            /* File modes are octal, with or without a leading 0, as in Redis. */
            char *end;
            errno = 0;
            ll = strtoll(v, &end, 8);
            err = (*v == '\0' || *end != '\0' || errno != 0);
        } else err = !string_to_ll(v, strlen(v), &ll);
        if (err) return d->type == CT_MEM ? "argument must be a memory value" : "argument couldn't be parsed into an integer";
        if (ll < d->min || ll > d->max) {
            snprintf(why, sizeof(why), "argument must be between %lld and %lld inclusive", d->min, d->max);
            return why;
        }
        /* Redis's range is unsigned; no process has descriptors for more than INT_MAX. */
        if (d->ptr == &config.maxclients && ll > INT_MAX) ll = INT_MAX;
        if (d->ptr == &config.maxclients && server.base && ll > config.maxclients) {
            /* Running: more clients need more descriptors, as in Redis. */
            int fit = server_fit_open_files((int)ll, config.backend_connections);
            if (fit < ll) {
                snprintf(why, sizeof(why),
                         "The operating system is not able to handle the specified number of clients, try with %d",
                         fit);
                return why;
            }
        }
        if (d->type == CT_INT) *(int *)d->ptr = (int)ll;
        else *(long long *)d->ptr = ll;
        return NULL;
    }
    case CT_STRING:
        if (d->ptr == &config.backend_url && !backend_url_is_cluster(v)) {
            backend_url u;
            if (backend_url_parse(v, &u, why, sizeof(why)) != 0) return why;
            backend_url_free(&u);
        }
        if (d->ptr == &config.migrate_from && v && v[0]) {
            backend_url u;
            if (backend_url_parse(v, &u, why, sizeof(why)) != 0) return why;
            backend_url_free(&u);
        }
        set_string((char **)d->ptr, v);
        /* requirepass is the default user's password, as in Redis. */
        if (d->ptr == &config.requirepass) {
            config.requirepass_len = config.requirepass ? strlen(config.requirepass) : 0;
            acl_set_default_password(config.requirepass, config.requirepass_len);
        }
        return NULL;
    case CT_ENUM: {
        for (const config_enum *e = d->enums; e->name; e++) {
            if (!strcasecmp(e->name, v)) {
                *(int *)d->ptr = e->value;
                return NULL;
            }
        }
        size_t off = (size_t)snprintf(why, sizeof(why), "argument(s) must be one of the following: ");
        for (const config_enum *e = d->enums; e->name && off < sizeof(why); e++)
            off += (size_t)snprintf(why + off, sizeof(why) - off, "%s%s", e == d->enums ? "" : ", ", e->name);
        return why;
    }
    }
    return "unsupported directive type";
}

const char *config_apply(int argc, char **argv, int at_startup)
{
    (void)at_startup;
    /* "user name rules..." may appear many times: not a directive with one value. */
    if (!strcasecmp(argv[0], "user") && argc >= 2) return acl_config_user(argc - 1, argv + 1);
    const config_def *d = find_def(argv[0], strlen(argv[0]));
    if (!d) return "Bad directive or wrong number of arguments";
    if (d->ptr == &config.backend_url && at_startup) {
        /* "backend <url> [weight] [name]": several make a pool. */
        if (argc < 2 || argc > 4) return "wrong number of arguments";
        long long weight = 1;
        if (argc >= 3 && (!string_to_ll(argv[2], strlen(argv[2]), &weight) || weight < 1 || weight > 1000000))
            return "the weight must be an integer between 1 and 1000000";
        if (config.backend_count == 0) {
            const char *err = apply_def(d, 1, argv + 1);
            if (err) return err;
        } else {
            static char why[300];
            backend_url u;
            if (backend_url_is_cluster(argv[1])) return "a Redis Cluster is one backend line, not a pool member";
            if (backend_url_parse(argv[1], &u, why, sizeof(why)) != 0) return why;
            backend_url_free(&u);
            if (backend_url_is_cluster(config.backend_url))
                return "a Redis Cluster is one backend line, not a pool member";
        }
        int n = config.backend_count;
        config.backend_urls = realloc(config.backend_urls, sizeof(char *) * (size_t)(n + 1));
        config.backend_weights = realloc(config.backend_weights, sizeof(unsigned) * (size_t)(n + 1));
        config.backend_names = realloc(config.backend_names, sizeof(char *) * (size_t)(n + 1));
        if (!config.backend_urls || !config.backend_weights || !config.backend_names) abort();
        config.backend_urls[n] = xstrdup(argv[1]);
        config.backend_weights[n] = (unsigned)weight;
        config.backend_names[n] = argc >= 4 ? xstrdup(argv[3]) : NULL;
        config.backend_count = n + 1;
        if (n == 1) {
            if (load_file) snprintf(backend_origin, sizeof(backend_origin), "at %s:%d", load_file, load_line);
            else snprintf(backend_origin, sizeof(backend_origin), "on the command line");
        }
        return NULL;
    }
    return apply_def(d, argc - 1, argv + 1);
}

void config_store_tls(store_tls_options *out)
{
    *out = (store_tls_options){
        .ca_file = config.backend_tls_ca_cert_file,
        .ca_dir = config.backend_tls_ca_cert_dir,
        .cert_file = config.backend_tls_cert_file,
        .key_file = config.backend_tls_key_file,
        .verify = config.backend_tls_verify,
    };
}

const char *config_check_backends(void)
{
    static char why[700];
    if (config.backend_count > 1 && !config.distribution) {
        snprintf(why, sizeof(why),
                 "a second store is named %s: several backend lines make a pool, which needs a distribution "
                 "directive (ketama, modula or random)",
                 backend_origin);
        return why;
    }
    for (int i = 0; i < config.backend_count; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(config.backend_urls[i], config.backend_urls[j])) {
                snprintf(why, sizeof(why), "the store %s is named twice", config.backend_urls[i]);
                return why;
            }
    return NULL;
}

int config_load_file(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "Fatal error, can't open config file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;
    while ((n = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        int argc;
        char *p = line;
        while (*p && isspace((unsigned char)*p)) p++;
        if (*p == '#' || *p == '\0') continue;
        char **argv = split_args(p, &argc);
        if (!argv) {
            snprintf(err, errlen, "%s:%d: Unbalanced quotes in configuration line", path, lineno);
            rc = -1;
            break;
        }
        if (argc == 0) { free_args(argv, argc); continue; }
        load_file = path;
        load_line = lineno;
        const char *why = config_apply(argc, argv, 1);
        load_file = NULL;
        if (why) {
            snprintf(err, errlen, "%s:%d: '%s': %s", path, lineno, argv[0], why);
            free_args(argv, argc);
            rc = -1;
            break;
        }
        free_args(argv, argc);
    }
    free(line);
    fclose(fp);
    if (rc == 0) {
        char *abs = realpath(path, NULL);
        free(config_file_path);
        config_file_path = abs;
    }
    return rc;
}

int config_load_args(int argc, char **argv, char *err, size_t errlen)
{
    int i = 0;
    while (i < argc) {
        if (strncmp(argv[i], "--", 2) != 0 || argv[i][2] == '\0') {
            snprintf(err, errlen, "command line: unexpected argument '%s'", argv[i]);
            return -1;
        }
        int j = i + 1;
        while (j < argc && strncmp(argv[j], "--", 2) != 0) j++;
        int n = j - i;
        char **dv = malloc(sizeof(char *) * (size_t)n);
        if (!dv) abort();
        dv[0] = argv[i] + 2;
        for (int k = 1; k < n; k++) dv[k] = argv[i + k];
        const char *why = config_apply(n, dv, 1);
        free(dv);
        if (why) {
            snprintf(err, errlen, "command line: '--%s': %s", argv[i] + 2, why);
            return -1;
        }
        i = j;
    }
    return 0;
}

/* The store's password never leaves the proxy: "redis://user:****@host". */
static int redact_url(const char *url, char *buf, size_t len)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
    if (!at) return snprintf(buf, len, "%s", url);
    const char *cred = scheme + 3;
    const char *colon = memchr(cred, ':', (size_t)(at - cred));
    if (!colon) return snprintf(buf, len, "%.*s****%s", (int)(cred - url), url, at);
    return snprintf(buf, len, "%.*s****%s", (int)(colon + 1 - url), url, at);
}

/* redact: the store password becomes ****, as everywhere but CONFIG REWRITE. */
static int format_value(const config_def *d, char *buf, size_t len, int redact)
{
    switch (d->type) {
    case CT_BOOL: return snprintf(buf, len, "%s", *(int *)d->ptr ? "yes" : "no");
    case CT_INT:
        if (d->ptr == &config.unixsocketperm) return snprintf(buf, len, "%o", *(int *)d->ptr);
        return snprintf(buf, len, "%d", *(int *)d->ptr);
    case CT_LL:
    case CT_MEM: return snprintf(buf, len, "%lld", *(long long *)d->ptr);
    case CT_STRING: {
        const char *s = *(char **)d->ptr;
        if (redact && (d->ptr == &config.backend_url || d->ptr == &config.migrate_from) && s)
            return redact_url(s, buf, len);
        return snprintf(buf, len, "%s", s ? s : "");
    }
    case CT_ENUM:
        for (const config_enum *e = d->enums; e->name; e++)
            if (e->value == *(int *)d->ptr) return snprintf(buf, len, "%s", e->name);
        return snprintf(buf, len, "%s", "");
    case CT_SPECIAL:
        if (d->get_special) return d->get_special(buf, len);
        if (!strcmp(d->name, "loglevel")) {
            for (const config_enum *e = loglevel_enum; e->name; e++)
                if (e->value == config.loglevel) return snprintf(buf, len, "%s", e->name);
        }
        if (!strcmp(d->name, "logfile")) return snprintf(buf, len, "%s", config.logfile ? config.logfile : "");
        return snprintf(buf, len, "%s", "");
    }
    return 0;
}

int config_get_value(const char *name, char *buf, size_t len)
{
    const config_def *d = find_def(name, strlen(name));
    if (!d) return -1;
    if (d->ptr == &config.backend_url) return snprintf(buf, len, "%s", config.backend_url ? config.backend_url : "");
    return format_value(d, buf, len, 1);
}

const char *config_spelling(const char *name, size_t len)
{
    const config_def *d = find_def(name, len);
    if (!d) return NULL;
    return strlen(d->name) == len && !strncasecmp(d->name, name, len) ? d->name : d->alias;
}

int config_is_immutable(const char *name)
{
    const config_def *d = find_def(name, strlen(name));
    return d && (d->flags & CF_IMMUTABLE);
}

const char *config_canonical_name(const char *name, size_t len)
{
    const config_def *d = find_def(name, len);
    return d ? d->name : NULL;
}

/* One CONFIG GET answer; requirepass may hold any bytes. */
static void visit_def(const config_def *d, const char *name, char *buf, size_t len, config_visit_fn *fn, void *ctx)
{
    if (d->ptr == &config.requirepass) {
        fn(ctx, name, config.requirepass ? config.requirepass : "", config.requirepass_len);
        return;
    }
    int n = format_value(d, buf, len, 1);
    if (n < 0) n = 0;
    if ((size_t)n >= len) n = (int)len - 1;
    fn(ctx, name, buf, (size_t)n);
}

int config_get_matching(const char *pattern, size_t patlen, config_visit_fn *fn, void *ctx)
{
    int count = 0;
    char buf[1024];
    /* As Redis: a name without glob characters (read up to a NUL, like
     * Redis's C-string checks) is looked up and answered as it was typed;
     * a pattern is matched up to its first NUL. */
    size_t clen = strnlen(pattern, patlen);
    if (!memchr(pattern, '[', clen) && !memchr(pattern, '*', clen) && !memchr(pattern, '?', clen)) {
        const config_def *d = find_def(pattern, patlen);
        if (!d) return 0;
        visit_def(d, pattern, buf, sizeof(buf), fn, ctx);
        return 1;
    }
    patlen = clen;
    for (const config_def *d = config_defs; d->name; d++) {
        int hit = glob_match(pattern, patlen, d->name, strlen(d->name), 1);
        int alias_hit = d->alias && glob_match(pattern, patlen, d->alias, strlen(d->alias), 1);
        if (!hit && !alias_hit) continue;
        /* Redis reports the name that matched; for an exact alias, the alias. */
        visit_def(d, hit ? d->name : d->alias, buf, sizeof(buf), fn, ctx);
        count++;
        if (hit && alias_hit) {
            visit_def(d, d->alias, buf, sizeof(buf), fn, ctx);
            count++;
        }
    }
    return count;
}

const char *config_set(const char *name, const char *value, size_t vlen)
{
    const config_def *d = find_def(name, strlen(name));
    if (!d) return "Unknown option";
    if (d->flags & CF_IMMUTABLE) return "can't set immutable config";
    char *v = malloc(vlen + 1);
    if (!v) abort();
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    const char *why;
    if (d->type == CT_SPECIAL) {
        int argc;
        char **argv = split_args(v, &argc);
        why = argv ? apply_def(d, argc, argv) : "Unbalanced quotes";
        free_args(argv, argc);
    } else {
        char *one[1] = {v};
        why = apply_def(d, 1, one);
    }
    if (!why && d->ptr == &config.requirepass) {
        /* Redis keeps the password's bytes as given, NUL included. */
        free(config.requirepass);
        config.requirepass = vlen ? v : NULL;
        config.requirepass_len = vlen;
        acl_set_default_password(v, vlen);
        if (vlen) return NULL;
    }
    free(v);
    return why;
}

/* One line as the loader reads it back: values quoted where needed
 * (multi-word directives such as bind stay as words). */
static void write_directive(FILE *out, const config_def *d, const char *val)
{
    int words = d->type == CT_SPECIAL && d->set_special != set_logfile && d->set_special != set_loglevel;
    int plain = val[0] != '\0';
    for (const char *p = val; *p && plain; p++)
        if (*p <= ' ' || *p == '"' || *p == '\'' || *p == '\\' || (unsigned char)*p >= 127) plain = 0;
    if (words || plain) {
        fprintf(out, "%s %s\n", d->name, val);
        return;
    }
    fprintf(out, "%s \"", d->name);
    for (const char *p = val; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch < ' ' || ch >= 127) fprintf(out, "\\x%02x", ch);
        else fputc(ch, out);
    }
    fputs("\"\n", out);
}

/* Rewrites the directives the proxy knows, in place where they appear, and
 * appends the ones that are missing; every other line is kept as it was. */
int config_rewrite(char *err, size_t errlen)
{
    if (!config_file_path) {
        snprintf(err, errlen, "The server is running without a config file");
        return -1;
    }
    FILE *fp = fopen(config_file_path, "r");
    if (!fp) {
        snprintf(err, errlen, "Rewriting config file: %s", strerror(errno));
        return -1;
    }
    size_t ndefs = 0;
    while (config_defs[ndefs].name) ndefs++;
    char *seen = calloc(ndefs, 1);
    char *out = NULL;
    size_t outlen = 0;
    FILE *mem = open_memstream(&out, &outlen);
    if (!seen || !mem) abort();
    char *line = NULL;
    size_t cap = 0;
    char val[1024];
    int had_users = 0;
    while (getline(&line, &cap, fp) >= 0) {
        char *p = line;
        while (*p && isspace((unsigned char)*p)) p++;
        size_t nl = strcspn(p, " \t\r\n");
        if (nl == 4 && !strncasecmp(p, "user", 4)) {
            had_users = 1;
            continue; /* written again below from the current users */
        }
        const config_def *d = (*p == '#' || nl == 0) ? NULL : find_def(p, nl);
        if (!d) {
            fputs(line, mem);
            continue;
        }
        size_t idx = (size_t)(d - config_defs);
        if (d->ptr == &config.backend_url) {
            /* Immutable, and a pool has one line per store: kept as written. */
            seen[idx] = 1;
            fputs(line, mem);
            continue;
        }
        if (seen[idx]) continue; /* drop duplicates: one line per directive */
        seen[idx] = 1;
        format_value(d, val, sizeof(val), 0);
        write_directive(mem, d, val);
    }
    fclose(fp);
    for (size_t i = 0; i < ndefs; i++) {
        const config_def *d = &config_defs[i];
        if (seen[i] || d->type == CT_SPECIAL) continue;
        format_value(d, val, sizeof(val), 0);
        if (d->type == CT_STRING && val[0] == '\0') continue;
        write_directive(mem, d, val);
    }
    /* Users go to the file unless an ACL file holds them; a proxy that never
     * had users keeps its file free of the built-in default user. */
    if (!(config.aclfile && config.aclfile[0]) && (had_users || !acl_is_pristine())) {
        char *users = acl_config_lines();
        fputs(users, mem);
        free(users);
    }
    fclose(mem);
    free(line);
    free(seen);
    int rc = file_write_atomic(config_file_path, out, outlen);
    if (rc != 0) snprintf(err, errlen, "Rewriting config file: %s", strerror(errno));
    free(out);
    return rc;
}
