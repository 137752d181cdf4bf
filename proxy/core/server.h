/* The proxy's shared state: the event loop, clients, the backend, stats. */
#ifndef EVALPROXY_SERVER_H
#define EVALPROXY_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proxy/core/request_parser.h"

#define EVALPROXY_VERSION "0.1.0"
#define REDIS_COMPAT_VERSION "7.0.15"
#define REDIS_COMPAT_VERSION_NUM 0x0007000f

struct event_base;
struct bufferevent;
struct evbuffer;
struct event;
struct backend;
struct command_def;
struct ssl_st;

typedef struct client client;
typedef struct multi_state multi_state;
typedef struct watch_versions watch_versions;

/* One reply owed to a client, in request order. */
typedef struct reply_slot {
    struct reply_slot *next;
    client *c;            /* NULL once the client is gone: the reply is dropped */
    struct evbuffer *buf; /* the reply, when it completed out of order */
    struct lock_set *locks; /* units held until the store answers */
    unsigned done : 1;
    unsigned discard : 1; /* CLIENT REPLY OFF/SKIP */
    unsigned unlocked : 1; /* relayed without locks (locks_plain_free): counted until answered */
    unsigned unlocked_write : 1; /* ... and it may write */
    unsigned failed : 1;         /* the reply is an error (for commandstats) */
    unsigned rejected : 1;       /* ... one the store's state gave before running it (rejected_calls) */
    const struct command_def *cmd; /* whose reply, for commandstats (NULL: not counted) */
    unsigned long long start_us;
    struct slowlog_args *slow; /* its arguments, for SLOWLOG once the time is known */
    unsigned unchanged_reply : 3; /* write_unchanged_reply() of the relayed command */
    const struct resp3_shape *shape; /* a RESP3 client's: the RESP2 reply is converted on the way out */
    struct tracked_write *tracked;   /* a write's keys, whose trackers are told at its reply */
    struct reply_capture *capture;   /* a captured reply's (never in the client's queue) */
} reply_slot;

/* A command run inside EXEC by the proxy writes its reply here instead of
 * to its client: what its handler writes at once goes to buf, and replies
 * that come later (a slot it opened) follow in order; done is called once
 * the last has come (never from inside the handler: see client_capture_end). */
typedef struct reply_capture {
    struct evbuffer *buf;
    reply_slot *head, *tail; /* replies still to come, in order */
    int running;             /* inside the handler */
    void (*done)(void *ctx);
    void *ctx;
} reply_capture;

enum client_flags {
    CLIENT_CLOSE_AFTER_REPLY = 1 << 0,
    CLIENT_CLOSING = 1 << 1,   /* freed as soon as nothing refers to it */
    CLIENT_UNIX_SOCKET = 1 << 2,
    CLIENT_REPLY_OFF = 1 << 3,
    CLIENT_REPLY_SKIP_NEXT = 1 << 4,
    CLIENT_REPLY_SKIP = 1 << 5, /* this command's reply is skipped */
    CLIENT_NO_EVICT = 1 << 6,
    CLIENT_BLOCKED = 1 << 7,    /* waiting: later commands stay unread */
    CLIENT_TLS = 1 << 8,        /* its bufferevent is a TLS one */
    CLIENT_TLS_READY = 1 << 9,  /* ... and the handshake is done */
    CLIENT_PACED = 1 << 10,     /* owed too much output: its input waits unread */
    CLIENT_READ_EOF = 1 << 11,  /* sent all it will send: finish what it sent, then close */
    CLIENT_OUTPUT_DEAD = 1 << 12, /* its socket refused a write: replies are dropped */
};

struct client {
    uint64_t id;
    int fd;
    int flags;
    struct bufferevent *bev;  /* input */
    struct event *read_ev;    /* plain sockets: read by the proxy (client_reading) */
    struct evbuffer *out;     /* replies waiting to be written */
    struct event *write_ev;   /* armed only while the socket is full */
    struct event *resume_ev;
    struct event *eof_block_ev; /* read EOF while a blocking command waits: its grace */
    request_parser parser;
    char addr[64], laddr[64];
    char *name;
    char *lib_name, *lib_ver;
    int db;
    int authenticated;
    struct acl_user *user;  /* default until AUTH as another user; never NULL */
    int resp;
    time_t ctime;
    time_t last_interaction;
    time_t obuf_soft_since;
    const char *last_cmd; /* full name of the last command, for CLIENT LIST */
    const struct command_def *cur_cmd; /* being dispatched: its first slot carries it */
    const struct resp3_shape *cur_shape; /* RESP3: how its reply is converted (NULL: as written) */
    reply_slot *cur_reply; /* RESP3: the slot client_reply_buffer gave the command being dispatched */
    unsigned long long cur_start_us;
    const struct command_def *monitor_cmd; /* ran: its MONITOR line goes out once it is dispatched */
    int cur_argc; /* the command being dispatched (borrowed), for SLOWLOG */
    char **cur_argv;
    size_t *cur_argvlen;
    reply_slot *slots_head, *slots_tail;
    reply_capture *capture; /* replies go there (a command run inside EXEC) */
    unsigned slots_pending;
    struct lock_set *waiting_locks; /* the command being dispatched waits for these */
    int waiting_relay;              /* ... and it is a plain relayed command */
    const struct command_def *waiting_cmd;
    struct script_call *script;     /* the script this client waits for */
    struct script_call *debugging;  /* its Lua debugging session: its commands go to the debugger */
    int lua_debug;                  /* SCRIPT DEBUG: 0 NO, 1 YES, 2 SYNC (the next EVAL is debugged) */
    unsigned scripts_pipelined;     /* its scripts running while it goes on */
    struct multi_state *multi;         /* between MULTI and EXEC/DISCARD */
    struct client_pubsub *pubsub;      /* subscriptions, or NULL */
    struct client_tracking *tracking;  /* CLIENT TRACKING on, or NULL */
    int subscriptions[3];   /* channels, patterns, shard channels: kept by pubsub.c for the core */
    struct exec_run *exec_run;         /* its EXEC, from its read to its reply */
    int watch_conn;                    /* connection of its own holding WATCH, or -1 */
    long long watch_deadline_ms;       /* stores before 2.6: the earliest exact expiry (unix ms) of a
                                        * watched key, in the future at WATCH; 0 none */
    watch_versions *watch_versions;    /* WATCH by write versions (stores that cannot watch) */
    int dedicated_conn;                /* own connection with a request in flight, or -1 */
    reply_slot *dedicated_slot;        /* that request's reply */
    int dedicated_blocking;            /* the request is a blocking command */
    const struct command_def *blocking_cmd;
    void (*drain_fn)(client *c);       /* runs once relay_inflight is back to 0 */
    int flush_queued;       /* has output to write this loop turn */
    int resume_pending;     /* resume_ev is active: input will be read again this turn */
    unsigned held : 1;      /* output held for its running script (flush_can_wait) */
    unsigned postponed : 1;  /* its command waits for CLIENT PAUSE to end (client_pause.c) */
    unsigned rerun : 1;      /* ... has ended: the command runs again when input is next read */
    unsigned rerun_skip : 1; /* ... and its reply was to be skipped (CLIENT REPLY) */
    unsigned hold_over : 1; /* that hold has lasted long enough: write */
    int backend_conn;       /* connection this client's relayed commands use */
    unsigned relay_inflight;
    /* A fleet: where its relayed commands in flight run (0 here, else a
     * member index + 1), whether it is another member's connection, and
     * its command waiting for its slots' owner. */
    int fleet_dest;
    int fleet_peer;
    int fleet_span; /* the command being dispatched touches other members' slots */
    long long fleet_wait_since_ms;
    struct event *fleet_wait_ev;
    struct fleet_hold *fleet_holds; /* units it took here for another member (FLEET LOCK) */
    size_t reply_size_guess; /* its recent replies' size, for pacing */
    client *prev, *next;
};

typedef struct server_stats {
    unsigned long long connections_received;
    unsigned long long commands_processed;
    unsigned long long rejected_connections;
    unsigned long long relayed_commands;
    unsigned long long backend_errors;
    unsigned long long net_input_bytes, net_output_bytes;
    unsigned long long reads_processed, writes_processed;
} server_stats;

typedef struct server_state {
    struct event_base *base;
    struct backend *backend;
    client *clients;
    unsigned long clients_count;
    uint64_t next_client_id;
    time_t start_time;
    server_stats stats;
    char run_id[41];
    int shutdown_asap;
    int script_deny_disabled; /* DEBUG SET-DISABLE-DENY-SCRIPTS: scripts may call NOSCRIPT commands */
    /* Listens again on config.bind and config.port / tls-port (CONFIG
     * SET), set by main. -1 when some address cannot be bound: then no TCP
     * listener is left; the caller restores the old values and calls it
     * again. */
    int (*relisten)(void);
    /* SHUTDOWN: begins the drain (abort: ends one), set by main. Returns
     * -1 when there is nothing to abort. now: exit without waiting. */
    int (*shutdown_request)(int abort, int now);
    int draining; /* stopping: no new clients, finishing what runs */
} server_state;

extern server_state server;

/* server.c */
/* Fits maxclients to the open-files limit as Redis does: raises
 * RLIMIT_NOFILE towards maxclients plus a reserve (32 and the store
 * connections), and returns the
 * maxclients that fits (logged when less), or -1 when not even the reserve
 * does. */
int server_fit_open_files(int maxclients, int store_connections);

/* client.c */
client *client_create(int fd, int is_unix, struct ssl_st *ssl); /* ssl: a TLS client, else NULL */
void client_close(client *c);             /* now: pending replies are dropped */
void client_close_after_reply(client *c); /* after what is queued has been written */
/* A feature that keeps a client pointer (or state for it) anywhere lets it
 * go in a hook: every hook runs on every close, in the order added. */
typedef void client_close_hook(client *c);
void client_add_close_hook(client_close_hook *fn);
/* Where to write a reply that is ready now: the socket's buffer, or a slot
 * kept in order behind replies still in flight. */
struct evbuffer *client_reply_buffer(client *c);
/* For pub/sub confirmations and messages: Redis pushes them whatever CLIENT
 * REPLY says, in order with the replies before them. */
struct evbuffer *client_push_buffer(client *c);
reply_slot *client_slot_add(client *c);
void client_slot_done(reply_slot *s); /* s->buf (or nothing) holds the reply */
void client_output_written(client *c); /* checks output buffer limits */
size_t client_pending_output(client *c); /* bytes owed to its socket */
int client_reading_enabled(const client *c); /* its input is read (CLIENT LIST's "r") */
void client_block(client *c);
void client_unblock(client *c);
/* A command answered once something else has answered (the store, asked
 * first): its place in line, the client reading nothing more meanwhile. The
 * reply goes in the slot's buf; release lets the client go on (if still
 * there) and sends it. */
/* CLIENT PAUSE: the command being dispatched waits, the client reading
 * nothing more; resume runs it again (from the event loop) as if just read. */
void client_postpone(client *c);
void client_postponed_resume(client *c);
reply_slot *client_hold_reply(client *c);
void client_release_reply(reply_slot *s);
/* Between these two, c's replies (and the slots it opens) go to cap. End
 * returns whether every reply has come; if not, cap->done is called later. */
void client_capture_begin(client *c, reply_capture *cap);
int client_capture_end(client *c, reply_capture *cap);
/* The client is going: replies still to come are dropped into cap. */
void client_capture_detach(reply_capture *cap);
/* What captures is going: replies still to come are dropped. */
void client_capture_abandon(reply_capture *cap);
/* What runs each complete command a client sends (dispatch_command),
 * registered at start so client.c never names the layer above it. */
typedef void client_command_fn(client *c, int argc, char **argv, size_t *argvlen);
void client_set_command_handler(client_command_fn *fn);
/* Writes one CLIENT LIST line (commands/connection.c registers it). */
typedef void client_describe_fn(client *c, struct evbuffer *out);
void client_set_describer(client_describe_fn *fn);
/* The CLIENT LIST line without its newline, for logs and ACL LOG. malloc'd, *len set. */
char *client_info_string(client *c, size_t *len);
/* Redis's rule: a password (or a disabled default user) and no AUTH yet. */
int client_auth_required(const client *c);
/* Has any subscription (RESP2 clients are then in pub/sub mode). */
static inline int client_subscribed(const client *c)
{
    return c->subscriptions[0] + c->subscriptions[1] + c->subscriptions[2] > 0;
}
/* A blocking command is now waiting at the store for c. */
void client_blocking_sent(client *c);
/* c's command is being dispatched now (CLIENT LIST's argv-mem). */
int client_running_command(const client *c);
void clients_cron(void);
/* Nothing owed to or waited for by c: no reply pending (but a blocking
 * command's), output written, no script or EXEC running, no bytes unread. */
int client_idle(client *c);
/* Work not tied to a client that must end before the proxy exits (scripts
 * of closed clients, EXEC runs, orphan commands): each family registers a
 * check returning how much it still has. */
typedef unsigned long drain_pending_fn(void);
void server_add_drain_check(drain_pending_fn *fn);
unsigned long server_work_pending(void);
void clients_reap(void);    /* frees clients closed since the last loop turn */
void clients_close_all(void);
void clients_shutdown(void);

/* dispatch.c */
void dispatch_command(client *c, int argc, char **argv, size_t *argvlen);
/* Close hook: a relayed command still waiting for its locks is handed over,
 * so it runs once they are free. Added before every other close hook. */
void relay_client_gone(client *c);
unsigned long relay_orphans_pending(void); /* commands of closed clients still to run */
int client_shared_conn(client *c);
/* Runs fn now if nothing the client relayed is in flight, else when it is. */
void client_when_drained(client *c, void (*fn)(client *c));
int command_is_keyspace_wide(const struct command_def *cmd);
void relay_command(client *c, const struct command_def *cmd, int argc, char **argv, size_t *argvlen);
/* Busy error text, as Redis's. */
#define BUSY_ERROR "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
/* Redis's BUSY text for a busy script of that lock_busy_kind (EVAL: SCRIPT
 * KILL; FCALL: FUNCTION KILL). */
const char *busy_error(int kind);

#endif
