/* proxy.conf and the command line: directives in redis.conf syntax. */
#ifndef EVALPROXY_CONFIG_H
#define EVALPROXY_CONFIG_H

#include <stddef.h>

#define CONFIG_MAX_BIND 16

enum client_class { CLIENT_CLASS_NORMAL = 0, CLIENT_CLASS_REPLICA, CLIENT_CLASS_PUBSUB, CLIENT_CLASS_COUNT };

typedef struct obuf_limit {
    unsigned long long hard, soft;
    long long soft_seconds;
} obuf_limit;

enum tls_auth_clients { TLS_AUTH_CLIENTS_NO = 0, TLS_AUTH_CLIENTS_YES, TLS_AUTH_CLIENTS_OPTIONAL };

typedef struct proxy_config {
    char *bind[CONFIG_MAX_BIND];
    int bind_count;
    int port;
    int tcp_backlog;
    char *unixsocket;
    int unixsocketperm;
    char *backend_url;      /* the first (or only) store */
    /* Every backend line: more than one make a pool (with distribution). */
    int backend_count;
    char **backend_urls;
    unsigned *backend_weights;
    char **backend_names;
    char *distribution;     /* pools: ketama | modula | random; NULL: not a pool */
    char *hash;             /* pools: twemproxy's hash name */
    char *hash_tag;         /* pools: two characters, or NULL */
    int auto_eject_hosts;
    int server_failure_limit;
    long long server_retry_timeout_ms;
    long long cluster_refresh_ms; /* Redis Cluster stores: slot map refresh period */
    int backend_connections;
    int backend_admin_commands;
    long long backend_connect_timeout_ms;
    long long backend_blocking_connections;
    char *requirepass;
    size_t requirepass_len; /* it may hold NUL bytes */
    char *aclfile;
    long long acllog_max_len;
    int maxclients;
    int timeout;        /* seconds; 0 = never close idle clients */
    int tcp_keepalive;  /* seconds */
    long long proto_max_bulk_len;
    long long client_query_buffer_limit;
    obuf_limit obuf_limits[CLIENT_CLASS_COUNT];
    int loglevel;
    char *logfile;
    char *pidfile;
    int databases;
    /* The operator's view (SLOWLOG, LATENCY, metrics) and the lifecycle. */
    long long slowlog_log_slower_than; /* us; -1 off, 0 everything */
    long long slowlog_max_len;
    long long latency_monitor_threshold; /* ms; 0 off */
    int shutdown_timeout;                /* s: the longest a drain lasts */
    int metrics_port;                    /* 0: no /metrics endpoint */
    char *metrics_bind;
    int daemonize;
    int supervised; /* SUPERVISED_* */
    /* Scripting. */
    long long busy_reply_threshold; /* ms (alias lua-time-limit) */
    long long tracking_table_max_keys; /* client-side caching: keys remembered at most (0: no limit) */
    int busy_reply_scope_all;
    long long lua_memory_limit;
    int lua_undeclared_keys_error;
    long long lua_time_slice_us;
    long long lua_debug_sessions_max; /* SCRIPT DEBUG YES sessions at once */
    int lua_script_pipelining;
    int lua_rollback_on_error; /* undo a script that fails after writing */
    char *functions_file; /* NULL: libraries are not kept across restarts */
    /* Old stores: command names the proxy emulates even when the store has
     * them, and release:x.y.z to take the store for that release (testing). */
    char *store_emulate;
    /* Live migration: the old store keys move from (NULL: none), how many
     * the background mover moves a second, and whether it is paused. */
    char *migrate_from;
    long long migrate_rate;
    int migrate_pause;
    /* A fleet of proxies with one lock domain (fleet/): its name (NULL:
     * this proxy alone), the address members and clients reach this one
     * at, the seat lease, and MOVED instead of forwarding. */
    char *fleet_name;
    char *fleet_announce;
    long long fleet_lease_ms;
    int fleet_redirect;
    /* TLS for clients (tls-*), as Redis's directives. */
    int tls_port;
    char *tls_cert_file, *tls_key_file, *tls_key_file_pass;
    char *tls_ca_cert_file, *tls_ca_cert_dir;
    int tls_auth_clients;
    char *tls_protocols, *tls_ciphers, *tls_ciphersuites;
    int tls_prefer_server_ciphers;
    int tls_session_caching;
    int tls_session_cache_size, tls_session_cache_timeout;
    /* TLS towards rediss:// and memcacheds:// stores. */
    char *backend_tls_ca_cert_file, *backend_tls_ca_cert_dir;
    char *backend_tls_cert_file, *backend_tls_key_file;
    int backend_tls_verify;
} proxy_config;

enum { SUPERVISED_NO = 0, SUPERVISED_SYSTEMD, SUPERVISED_AUTO };

extern proxy_config config;
extern char *config_file_path; /* absolute path of the file loaded, or NULL */

void config_init_defaults(void);
/* Applies one directive (argv[0] is its name). Returns NULL on success or a
 * static/allocated reason text (owned by the config module until the next call). */
const char *config_apply(int argc, char **argv, int at_startup);
/* The backend-tls-* directives, as the stores' TLS options. */
struct store_tls_options;
void config_store_tls(struct store_tls_options *out);
/* After loading: whether the backend lines make sense together (NULL), or why not. */
const char *config_check_backends(void);
/* Loads a file; on error prints "file:line: reason" style message and returns -1. */
int config_load_file(const char *path, char *err, size_t errlen);
/* Parses `--directive value ...` arguments (already split); same error style. */
int config_load_args(int argc, char **argv, char *err, size_t errlen);

/* CONFIG GET support: calls fn(name, value) for each directive matching the
 * glob pattern (case-insensitive). Returns the count. */
typedef void config_visit_fn(void *ctx, const char *name, const char *value, size_t value_len);
int config_get_matching(const char *pattern, size_t patlen, config_visit_fn *fn, void *ctx);
/* 1 if `name` is one of the proxy's directives (or aliases). */
int config_is_proxy_directive(const char *name, size_t len);
/* The current value as CONFIG GET shows it (unredacted); -1 if unknown. */
int config_get_value(const char *name, char *buf, size_t len);
/* The directive's own name for a name or alias, or NULL. */
const char *config_canonical_name(const char *name, size_t len);
/* The directive's name or alias, whichever `name` spells, in lower case; or NULL. */
const char *config_spelling(const char *name, size_t len);
/* 1 if CONFIG SET may not change the directive. */
int config_is_immutable(const char *name);
/* CONFIG SET name value: NULL on success or the reason text. */
const char *config_set(const char *name, const char *value, size_t vlen);
/* CONFIG REWRITE: rewrites the loaded file. 0 or -1 with reason in err. */
int config_rewrite(char *err, size_t errlen);

#endif
