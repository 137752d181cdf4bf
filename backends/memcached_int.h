/* Internals shared by the memcached backend's connection layer
 * (memcached.c) and its Redis command translations (memcached_cmds.c). */
#ifndef EVALPROXY_MEMCACHED_INT_H
#define EVALPROXY_MEMCACHED_INT_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "backends/conn.h"

struct event;
struct bufferevent;

#define MC_START (-1)        /* handler tag: begin (or begin again after a CAS conflict) */
#define MC_MAPPED_MAX 300    /* room for any mapped key */
#define MC_CAS_RETRIES 200        /* tries of a read-modify-write that keeps losing its CAS */
#define MC_CAS_RETRIES_AT_ONCE 8  /* of them, sent again at once; the rest after a pause */
#define MC_ERR_TOO_LARGE "ERR value is too large for the memcached backend (item size limit)"

/* One reply from memcached. code: "VA" "HD" "EN" "NF" "NS" "EX" "MN",
 * "ER" for ERROR/CLIENT_ERROR/SERVER_ERROR lines, "KY" for a metadump line. */
typedef struct mc_resp {
    char code[3];
    const char *line; /* the header line (without CRLF) */
    size_t linelen;
    const char *val;  /* VA: the value */
    size_t vlen;
    long long t;
    unsigned long long cas, size, flags;
    unsigned has_t : 1, has_c : 1, has_s : 1, has_f : 1;
} mc_resp;

struct mc_req;
typedef void mc_handler(struct mc_req *r, int tag, const mc_resp *m);

/* mc_cmd flags */
#define MC_CMD_DUMP 1 /* sends lru_crawler metadump: only on a connection with no reply owed */
#define MC_CMD_ONE_KEY 2 /* touches argv[1] and no other item */
/* A read-modify-write whose only write is rmw's CAS write: it may start
 * (read) past its client's earlier requests on other keys; its write waits
 * until they are done (mc_issue_ms_in_order), so the store still sees the
 * client's writes in its order, and the CAS makes the read current. */
#define MC_CMD_RMW 4

typedef struct mc_cmd {
    const char *name;
    int arity; /* Redis's: n exact, -n at least n */
    mc_handler *handler;
    int flags;
} mc_cmd;

struct mc_conn;

typedef struct mc_req {
    struct mc_req *next;
    struct mc_conn *c;
    const mc_cmd *cmd;
    backend_reply_fn *fn;
    void *ctx;
    int mode, db;
    unsigned long long session; /* whose command (backend_send_for), 0: unknown */
    int argc;
    char **argv;
    size_t *argvlen;
    void *args;               /* the allocation behind argv */
    struct evbuffer *out;     /* the Redis reply being built */
    int pending;              /* meta replies still to come */
    unsigned started : 1, done : 1, more : 1, started_opts : 1;
    unsigned over_dead : 1;   /* the write goes over an item past its deadline: an expiry to count */
    unsigned gated : 1;       /* started past its client's earlier requests: its write waits for them */
    char *held;               /* that write, held: its flags, a NUL, its value */
    size_t held_vlen;
    int held_tag;
    int step, retries;
    long long n1, n2, n3;     /* per-command scratch numbers */
    unsigned long long cas2;  /* a second item's CAS (a destination read before it is written) */
    struct evbuffer *deferred; /* keys a listing must read before it counts them (freed with the request) */
    void *scratch;            /* per-command scratch memory (freed with the request) */
    size_t scratch_len;
    struct evbuffer *aux;     /* per-command scratch buffer (freed with the request) */
    unsigned char mkey[MC_MAPPED_MAX]; /* argv[1] mapped */
    size_t mklen;
    struct event *timer;      /* a dump waiting for the crawler, or a CAS retry for its pause */
    int timer_tag;
} mc_req;

typedef struct mc_expect {
    mc_req *r;
    int tag;
    int dump; /* an lru_crawler metadump: lines until END */
} mc_expect;

struct mc_backend;

typedef struct mc_conn {
    struct mc_backend *mb;
    int idx;
    int state;
    struct bufferevent *bev;
    mc_req *head, *tail;  /* every request not yet answered, in order */
    mc_req *next_start;   /* first request not yet started */
    int nmore;            /* started requests that may still issue commands */
    int nheld;            /* requests holding their write (gated) */
    mc_expect *exp;       /* meta replies expected, in order */
    size_t ehead, elen, ecap;
    struct event *retry_ev, *deliver_ev;
    unsigned backoff_ms;
    unsigned long long connects;
    store_writer writer;
    int settings_pending; /* the `stats settings` sent at connect not read to its END yet */
} mc_conn;

typedef struct mc_backend {
    backend base;
    struct event_base *evb;
    char *host;
    int port;
    store_addr addr; /* points at host */
    mc_conn *conns;
    char error[256];
    char last_cause[128];
    unsigned long long replies, failures;
    int dump_all; /* the store has no `metadump hash`: walk the LRUs instead */
    unsigned long long item_size_max; /* the store's item size limit (stats settings); 0: not known */
    unsigned long long expired_keys; /* items past their deadline that the proxy deleted */
} mc_backend;

/* memcached.c */
long long mc_now_ms(void);
int mc_parse_ll(const char *s, size_t len, long long *out);
int mc_parse_ld(const char *s, size_t len, long double *out);
size_t mc_format_ld(char *buf, size_t cap, long double v);
size_t mc_map_key(int db, const char *key, size_t klen, unsigned char *out);
int mc_unmap_key(const unsigned char *k, size_t len, const unsigned char **name, size_t *nlen);
void mc_add_simple(struct evbuffer *o, const char *s);
void mc_add_error(struct evbuffer *o, const char *s);
void mc_add_int(struct evbuffer *o, long long v);
void mc_add_null(struct evbuffer *o);
void mc_add_bulk(struct evbuffer *o, const char *p, size_t len);
void mc_issue_mg(mc_req *r, const char *flags, int tag);
void mc_issue_mg_key(mc_req *r, const unsigned char *k, size_t klen, const char *flags, int tag);
void mc_issue_ms(mc_req *r, const char *val, size_t vlen, const char *flags, int tag);
void mc_issue_ms_key(mc_req *r, const unsigned char *k, size_t klen, const char *val, size_t vlen,
                     const char *flags, int tag);
/* As mc_issue_ms for a gated request: held until its client's earlier
 * requests on the connection are done. */
void mc_issue_ms_in_order(mc_req *r, const char *val, size_t vlen, const char *flags, int tag);
void mc_issue_md(mc_req *r, const char *flags, int tag);
void mc_issue_md_key(mc_req *r, const unsigned char *k, size_t klen, const char *flags, int tag);
void mc_issue_raw(mc_req *r, const char *line, int tag, int dump);
/* Lists every item: `lru_crawler metadump hash` where the store has it (an
 * LRU walk skips items that are being read or bumped meanwhile), else
 * `metadump all`. Lines come as "KY", then "EN" or "ER". */
void mc_issue_dump(mc_req *r, int tag);
/* The same dump again after `ms` milliseconds (the crawler was busy). */
void mc_issue_dump_later(mc_req *r, int tag, unsigned ms);
/* A read-modify-write lost its CAS to a writer that bypasses the proxy: the
 * request starts again from MC_START (at once, later after short random
 * pauses), or fails after MC_CAS_RETRIES with a "try again" error. */
void mc_cas_lost(mc_req *r);
/* 0 when a value of len bytes certainly cannot be stored (it alone is over
 * the store's item size limit): the request has failed with the error. */
int mc_value_fits(mc_req *r, unsigned long long len);
/* Deletes an item found past its deadline (Redis's lazy expiry), if it is
 * still the one read (cas): queued behind the connection's requests, no
 * reply to anyone. */
void mc_expire_lazily(mc_req *from, const unsigned char *k, size_t klen, unsigned long long cas);
void mc_finish(mc_req *r);
void mc_fail(mc_req *r, const char *err);

/* Marks a request that will issue more meta commands after its first
 * replies: later requests on its connection wait until it is done. */
static inline void mc_multi(mc_req *r)
{
    if (!r->more) {
        r->more = 1;
        r->c->nmore++;
    }
}

/* memcached_cmds.c */
const mc_cmd *mc_lookup(const char *name, size_t len);
/* key-tokens db key ...: each key's CAS (0: missing), as an array of integers;
 * never reachable by a client's command name. */
extern const mc_cmd mc_key_tokens_cmd;
/* Not reachable by name: reading a key's image for an undo journal
 * (restore 0: argv {_, key}, reply nil or [value, flags, t]) and putting it
 * back (restore 1: argv {_, key} deletes, {_, key, value, flags, t} stores). */
const mc_cmd *mc_journal_cmd(int restore);
/* In an image's flags (memcached's are 32 bits): its TTL is the exact
 * deadline's, whose low 30 bits follow (the rest comes from the TTL, so
 * that the key is put back with the very same deadline). */
#define MC_IMAGE_EXACT (1ULL << 62)
#define MC_IMAGE_DL_SHIFT 32
#define MC_IMAGE_DL_BITS 30
/* md <key> C<cas> for mc_expire_lazily: r->n1 is the CAS. */
extern const mc_cmd mc_lazy_expire_cmd;

#endif
