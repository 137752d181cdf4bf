/* RESP backend: any store that speaks the Redis protocol. A few pipelined
 * connections; hiredis's reader finds reply boundaries (and builds reply
 * objects only for the callers that ask for them); relayed replies leave as
 * the bytes the store sent. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "backends/backend.h"
#include "backends/conn.h"
#include "backends/store.h"
#include "backends/router_int.h"
#include "util/log.h"
#include "util/clock.h"

enum conn_state { CONN_DOWN = 0, CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY };
static const char *state_names[] = {"down", "connecting", "handshake", "ready"};

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define DEDICATED_BASE 1000000
#define DEDICATED_IDLE_MAX 16

void (*backend_round_trip_observer)(unsigned long long usec);

typedef struct pending_req {
    backend_reply_fn *fn;
    void *ctx;
    int mode;
    int context; /* STORE_CONTEXT_*: an older store's errors to it are reworded knowing the command */
    unsigned long long sent_us; /* for backend_round_trip_observer */
} pending_req;

struct resp_backend;

typedef struct resp_conn {
    struct resp_backend *rb;
    int idx;
    int state;
    int db;
    struct bufferevent *bev;
    redisReader *reader;
    size_t fed; /* bytes at the front of the input already given to the reader */
    pending_req *q;
    size_t qhead, qlen, qcap;
    struct event *retry_ev;
    unsigned backoff_ms;
    unsigned long long connects;
    unsigned dedicated : 1; /* one client's own connection: never reconnected */
    unsigned in_use : 1;    /* dedicated and lent out */
    unsigned delivering : 1;  /* inside deliver_replies: callbacks are running */
    backend_reply_fn *push_fn; /* subscriber connection: every unrequested reply goes here */
    void *push_ctx;
    unsigned free_after : 1;  /* released from a callback: freed once they return */
    unsigned learn_gate : 1;  /* not ready until the store is learnt (first connect) */
    unsigned info_plain : 1;  /* asked plain INFO: the store refused "INFO server" */
    unsigned hs_pending;      /* replies the handshake still waits for */
    int learn_version;        /* the release its COMMAND was asked for */
    store_writer writer;
} resp_conn;

typedef struct resp_backend {
    backend base;
    struct event_base *evb;
    backend_url url;
    store_addr addr; /* points into url */
    resp_conn *conns;
    resp_conn **dconns; /* dedicated connections; ids DEDICATED_BASE + index */
    int ndconns;
    redisReplyObjectFunctions *parse_fns; /* hiredis's default reply objects */
    char error[256];
    char last_cause[128];
    unsigned long long replies, failures;
    int learnt; /* INFO has answered once: later connects learn without waiting */
    int commands_asked; /* a COMMAND is on its way (one connection asks) */
} resp_backend;

static void conn_connect(resp_conn *c);


/* ---- request queue (ring buffer, grows, never shrinks) ------------------- */

static void q_push(resp_conn *c, backend_reply_fn *fn, void *ctx, int mode)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 64;
        pending_req *nq = malloc(ncap * sizeof(*nq));
        if (!nq) abort();
        for (size_t i = 0; i < c->qlen; i++) nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = (pending_req){fn, ctx, mode, 0, backend_round_trip_observer ? clock_us() : 0};
    c->qlen++;
}

static pending_req q_pop(resp_conn *c)
{
    pending_req r = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    return r;
}

/* ---- writing ------------------------------------------------------------- */

/* Appends "<prefix><n>\r\n" to buf; returns its length. */
static size_t format_header(char *buf, char prefix, size_t n)
{
    char digits[24];
    size_t d = 0;
    do {
        digits[d++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    size_t len = 0;
    buf[len++] = prefix;
    while (d) buf[len++] = digits[--d];
    buf[len++] = '\r';
    buf[len++] = '\n';
    return len;
}

/* Encodes a command as a RESP multibulk. Small arguments are gathered into
 * one stack buffer so a typical command costs a single evbuffer_add. */
static void write_command(struct evbuffer *out, int argc, char **argv, const size_t *argvlen)
{
    char buf[4096];
    size_t used = format_header(buf, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        if (used + 32 + argvlen[i] > sizeof(buf)) {
            evbuffer_add(out, buf, used);
            used = 0;
        }
        used += format_header(buf + used, '$', argvlen[i]);
        if (argvlen[i] + 2 > sizeof(buf) - used) {
            evbuffer_add(out, buf, used);
            evbuffer_add(out, argv[i], argvlen[i]);
            memcpy(buf, "\r\n", 2);
            used = 2;
            continue;
        }
        memcpy(buf + used, argv[i], argvlen[i]);
        used += argvlen[i];
        buf[used++] = '\r';
        buf[used++] = '\n';
    }
    evbuffer_add(out, buf, used);
}

/* ---- failure and reconnection ------------------------------------------- */

static void set_unavailable_error(resp_backend *rb)
{
    snprintf(rb->error, sizeof(rb->error), "ERR backend %s is unavailable: %s", rb->base.display,
             rb->last_cause[0] ? rb->last_cause : "not connected");
}

static void fail_pending(resp_conn *c, const char *why)
{
    char err[300];
    snprintf(err, sizeof(err), "ERR backend %s: %s", c->rb->base.display, why);
    backend_reply r = {.error = err};
    /* Pop before calling: a callback may queue new requests (which fail fast,
     * since the connection is already down). */
    while (c->qlen) {
        pending_req p = q_pop(c);
        c->rb->failures++;
        if (p.fn) p.fn(p.ctx, &r);
    }
}

static void schedule_retry(resp_conn *c)
{
    if (c->backoff_ms == 0) c->backoff_ms = BACKOFF_MIN_MS;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void conn_free_dedicated(resp_conn *c);

static void conn_drop(resp_conn *c, const char *why)
{
    int was_ready = c->state == CONN_READY;
    /* The failure callbacks may release this (dedicated) connection: it is
     * freed once they have all run. */
    unsigned was_delivering = c->delivering;
    c->delivering = 1;
    store_writer_forget(&c->writer);
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->reader) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
    c->fed = 0;
    c->state = CONN_DOWN;
    /* A TLS failure (bad certificate, wrong name) needs the operator: said
     * once at warning level, not on every retry. */
    if (!was_ready && !strncmp(why, "TLS ", 4) && strcmp(why, c->rb->last_cause) != 0)
        log_warning("backend %s: %s", c->rb->base.display, why);
    snprintf(c->rb->last_cause, sizeof(c->rb->last_cause), "%s", why);
    set_unavailable_error(c->rb);
    if (was_ready && !c->dedicated) log_warning("backend %s connection %d lost: %s", c->rb->base.display, c->idx, why);
    else log_verbose("backend %s connection %d: %s", c->rb->base.display, c->idx, why);
    fail_pending(c, was_ready ? "connection lost" : why);
    if (c->push_fn) {
        char err[300];
        snprintf(err, sizeof(err), "ERR backend %s: %s", c->rb->base.display, why);
        backend_reply r = {.error = err};
        backend_reply_fn *fn = c->push_fn;
        c->push_fn = NULL;
        fn(c->push_ctx, &r);
    }
    c->delivering = was_delivering;
    if (!c->dedicated) schedule_retry(c);
    else if (!was_delivering && c->free_after) conn_free_dedicated(c);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_connect(arg);
}

/* ---- reading --------------------------------------------------------------- */

static void conn_free_dedicated(resp_conn *c);
static void deliver_replies_loop(resp_conn *c);

static void deliver_replies(resp_conn *c)
{
    c->delivering = 1;
    deliver_replies_loop(c);
    c->delivering = 0;
    if (c->free_after) conn_free_dedicated(c);
}

/* An older store's error reply, reworded as Redis 7.0 words it (only
 * error replies are looked at; the reply is at the front of in). Returns
 * the reply's length now. */
static size_t normalise_error(resp_conn *c, struct evbuffer *in, size_t reply_len, int context, redisReply *parsed)
{
    char line[256], text[256];
    if (reply_len < 4 || reply_len > sizeof(line)) return reply_len;
    if (parsed && parsed->type != REDIS_REPLY_ERROR) return reply_len;
    char first;
    if (evbuffer_copyout(in, &first, 1) != 1 || first != '-') return reply_len;
    evbuffer_copyout(in, line, reply_len);
    size_t n = store_error_normalise(c->rb->base.store_version, context, line + 1, reply_len - 3, text + 1,
                                     sizeof(text) - 3);
    if (!n) return reply_len;
    text[0] = '-';
    memcpy(text + 1 + n, "\r\n", 2);
    evbuffer_drain(in, reply_len);
    evbuffer_prepend(in, text, n + 3);
    c->fed = c->fed - reply_len + n + 3;
    if (parsed) {
        char *str = malloc(n + 1);
        if (!str) abort();
        memcpy(str, text + 1, n);
        str[n] = '\0';
        free(parsed->str);
        parsed->str = str;
        parsed->len = n;
    }
    return n + 3;
}

/* Length of the RESP value at p, which holds a complete reply. */
static size_t raw_skip(const char *p, const char *end)
{
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) return (size_t)(end - p);
    size_t len = (size_t)(eol - p) + 1;
    long long n = strtoll(p + 1, NULL, 10);
    if (p[0] == '$' && n >= 0) return len + (size_t)n + 2;
    if (p[0] == '*' && n > 0)
        for (long long i = 0; i < n && p + len < end; i++) len += raw_skip(p + len, end);
    return len;
}

/* EXEC's reply from an older store: the errors of the commands inside are
 * reworded as normalise_error does for a lone reply. */
static size_t normalise_exec(resp_conn *c, struct evbuffer *in, size_t reply_len, redisReply *parsed)
{
    char first;
    if (reply_len > (1u << 20) || evbuffer_copyout(in, &first, 1) != 1 || first != '*') return reply_len;
    const char *raw = (const char *)evbuffer_pullup(in, (ev_ssize_t)reply_len), *end = raw + reply_len;
    if (!memchr(raw, '-', reply_len)) return reply_len; /* no error inside: nothing to do */
    struct evbuffer *out = NULL;
    const char *p = memchr(raw, '\n', reply_len) + 1, *copied = raw;
    for (size_t i = 0; p < end; i++) {
        size_t n = raw_skip(p, end), m;
        char text[256];
        if (p[0] == '-' && n >= 4 && n <= sizeof(text) &&
            (m = store_error_normalise(c->rb->base.store_version, STORE_CONTEXT_NONE, p + 1, n - 3, text + 1,
                                       sizeof(text) - 3))) {
            if (!out) out = evbuffer_new();
            if (!out) abort();
            evbuffer_add(out, copied, (size_t)(p - copied));
            text[0] = '-';
            memcpy(text + 1 + m, "\r\n", 2);
            evbuffer_add(out, text, m + 3);
            copied = p + n;
            if (parsed && parsed->type == REDIS_REPLY_ARRAY && i < parsed->elements &&
                parsed->element[i]->type == REDIS_REPLY_ERROR) {
                redisReply *e = parsed->element[i];
                char *str = malloc(m + 1);
                if (!str) abort();
                memcpy(str, text + 1, m);
                str[m] = '\0';
                free(e->str);
                e->str = str;
                e->len = m;
            }
        }
        p += n;
    }
    if (!out) return reply_len;
    evbuffer_add(out, copied, (size_t)(end - copied));
    size_t new_len = evbuffer_get_length(out);
    evbuffer_drain(in, reply_len);
    evbuffer_prepend_buffer(in, out);
    evbuffer_free(out);
    c->fed = c->fed - reply_len + new_len;
    return new_len;
}

/* hiredis moves its unread bytes to the front of its buffer each time a
 * reply is taken past the buffer's first KiB: fed a whole batch of large
 * replies at once (a pipeline of LRANGEs), that copying grows with the
 * square of the batch. Fed a chunk at a time, it stays within about a
 * chunk; the chunk grows with what is unread, so one large reply still
 * arrives in a few feeds. Returns whether anything was fed. */
#define FEED_CHUNK 4096

static int feed_reader(resp_conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    if (avail <= c->fed) return 0;
    size_t unread = c->reader->len - c->reader->pos;
    size_t want = unread > FEED_CHUNK ? unread : FEED_CHUNK;
    if (want > avail - c->fed) want = avail - c->fed;
    struct evbuffer_ptr start;
    evbuffer_ptr_set(in, &start, c->fed, EVBUFFER_PTR_SET);
    int n = evbuffer_peek(in, (ev_ssize_t)want, &start, NULL, 0);
    struct evbuffer_iovec stackv[16], *v = n <= 16 ? stackv : malloc(sizeof(*v) * (size_t)n);
    if (!v) abort();
    evbuffer_peek(in, (ev_ssize_t)want, &start, v, n);
    size_t left = want;
    for (int i = 0; i < n && left; i++) {
        size_t take = v[i].iov_len < left ? v[i].iov_len : left;
        redisReaderFeed(c->reader, v[i].iov_base, take);
        left -= take;
    }
    if (v != stackv) free(v);
    c->fed += want;
    return 1;
}

static void deliver_replies_loop(resp_conn *c)
{
    resp_backend *rb = c->rb;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        redisReader *r = c->reader;
        /* Stop while nothing is unread: hiredis would otherwise open a read
         * task with the current object functions before the reply starts. */
        if (r->len == r->pos && !feed_reader(c, in)) return;
        if (r->ridx == -1) {
            /* A new reply begins: build objects only if its requester wants them. */
            int mode = c->qlen ? c->q[c->qhead].mode : (c->push_fn ? BACKEND_PARSED : BACKEND_RAW);
            r->fn = mode == BACKEND_PARSED ? rb->parse_fns : NULL;
        }
        void *obj = NULL;
        if (redisReaderGetReply(r, &obj) != REDIS_OK) {
            char why[160];
            snprintf(why, sizeof(why), "protocol error from store: %s", r->errstr);
            conn_drop(c, why);
            return;
        }
        if (!obj) {
            if (feed_reader(c, in)) continue;
            return; /* incomplete */
        }
        size_t reply_len = c->fed - (r->len - r->pos);
        if (c->qlen == 0 && c->push_fn) {
            backend_reply br = {0};
            br.parsed = obj;
            br.raw = in;
            br.raw_len = reply_len;
            size_t before = evbuffer_get_length(in);
            c->push_fn(c->push_ctx, &br);
            freeReplyObject(obj);
            if (!c->bev || c->free_after) return;
            size_t taken = before - evbuffer_get_length(in);
            if (taken < reply_len) evbuffer_drain(in, reply_len - taken);
            c->fed -= reply_len;
            continue;
        }
        if (c->qlen == 0) {
            if (r->fn) freeReplyObject(obj);
            conn_drop(c, "unexpected reply from store");
            return;
        }
        pending_req p = q_pop(c);
        rb->replies++;
        if (backend_round_trip_observer && p.sent_us) backend_round_trip_observer(clock_us() - p.sent_us);
        if (rb->base.store_version > 0 && rb->base.store_version < 70000) {
            redisReply *parsed = p.mode == BACKEND_PARSED ? obj : NULL;
            reply_len = normalise_error(c, in, reply_len, p.context, parsed);
            if (p.context == STORE_CONTEXT_EXEC) reply_len = normalise_exec(c, in, reply_len, parsed);
        }
        backend_reply br = {0};
        if (p.mode == BACKEND_PARSED) br.parsed = obj;
        br.raw = in;
        br.raw_len = reply_len;
        size_t before = evbuffer_get_length(in);
        if (p.fn) p.fn(p.ctx, &br);
        if (p.mode == BACKEND_PARSED) freeReplyObject(obj);
        if (!c->bev || c->free_after) return; /* a callback closed things down */
        size_t taken = before - evbuffer_get_length(in);
        if (taken < reply_len) evbuffer_drain(in, reply_len - taken);
        c->fed -= reply_len;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    clock_burst_begin();
    deliver_replies(arg);
    clock_burst_end();
}

/* One reply the handshake waited for has come: the connection takes
 * commands once all have. */
static void handshake_step(resp_conn *c)
{
    if (c->hs_pending) c->hs_pending--;
    if (c->hs_pending || c->state != CONN_HANDSHAKE) return;
    c->state = CONN_READY;
    c->backoff_ms = 0;
    log_verbose("backend %s connection %d ready", c->rb->base.display, c->idx);
}

/* ---- learning the store --------------------------------------------------------
 * Each shared connection asks, right after AUTH, what the store is: INFO
 * server for its release; one of them then asks COMMAND (2.8.13 and later)
 * for the command set, while the table of when each command appeared
 * answers until it comes (and for older releases). Only read-only
 * introspection is sent. The first connect waits for INFO alone; later
 * ones pipeline it ahead of clients' commands and go on, and re-learn only
 * when the release changed. */

static void learn_info_cb(void *ctx, const backend_reply *r);

static void send_own(resp_conn *c, int argc, char **argv, size_t *lens, backend_reply_fn *fn)
{
    write_command(bufferevent_get_output(c->bev), argc, argv, lens);
    store_writer_soon(&c->writer);
    q_push(c, fn, c, BACKEND_PARSED);
}

static void learn_done(resp_conn *c)
{
    if (!c->learn_gate) return;
    c->learn_gate = 0;
    handshake_step(c);
}

static void log_learnt(resp_backend *rb)
{
    char v[32];
    if (!rb->base.store_version) {
        log_notice("backend %s: its INFO names no Redis release; every command is relayed", rb->base.display);
        return;
    }
    store_version_text(rb->base.store_version, v, sizeof(v));
    if (rb->base.store_commands)
        log_notice("backend %s: redis %s, %zu commands and subcommands listed by COMMAND", rb->base.display, v,
                   store_commands_count(rb->base.store_commands));
    else
        log_notice("backend %s: redis %s, commands known from its release", rb->base.display, v);
}

static void learn_command_cb(void *ctx, const backend_reply *r)
{
    resp_conn *c = ctx;
    resp_backend *rb = c->rb;
    if (c->learn_version == rb->base.store_version) rb->commands_asked = 0;
    if (r->error) return; /* the connection is being dropped: the next one asks */
    store_commands *set = store_commands_from_reply(r->parsed);
    /* Another connection may have seen the release change meanwhile: a
     * list is kept only while it is the release that was asked. */
    if (set && !rb->base.store_commands && c->learn_version == rb->base.store_version) {
        rb->base.store_commands = set;
        rb->base.store_epoch = store_epoch_next();
        log_learnt(rb);
    } else {
        if (!set && c->learn_version == rb->base.store_version) log_learnt(rb); /* COMMAND refused: the table stays */
        store_commands_free(set);
    }
    if (rb->base.parent) router_child_learnt(rb->base.parent);
}

static void learn_info_cb(void *ctx, const backend_reply *r)
{
    resp_conn *c = ctx;
    resp_backend *rb = c->rb;
    if (r->error) return;
    const redisReply *p = r->parsed;
    if (p->type == REDIS_REPLY_ERROR && !c->info_plain) {
        /* Before 2.6 INFO takes no section. */
        c->info_plain = 1;
        char *argv[1] = {"INFO"};
        size_t lens[1] = {4};
        send_own(c, 1, argv, lens, learn_info_cb);
        return;
    }
    int version = 0;
    if (p->type == REDIS_REPLY_STRING || p->type == REDIS_REPLY_STATUS)
        version = store_parse_version(p->str, p->len);
    int known = rb->learnt && version == rb->base.store_version;
    if (!known) {
        if (rb->learnt) {
            char was[32], now[32];
            log_notice("backend %s changed release from %s to %s: learning its commands again", rb->base.display,
                       store_version_text(rb->base.store_version, was, sizeof(was)),
                       store_version_text(version, now, sizeof(now)));
        }
        /* Until COMMAND answers, the release alone tells. */
        store_commands_free(rb->base.store_commands);
        rb->base.store_commands = NULL;
        rb->base.store_version = version;
        rb->base.store_epoch = store_epoch_next();
        rb->commands_asked = 0;
        rb->learnt = 1;
    }
    if (version >= 20813 && !rb->base.store_commands && !rb->commands_asked) {
        char *argv[1] = {"COMMAND"};
        size_t lens[1] = {7};
        c->learn_version = version;
        rb->commands_asked = 1;
        send_own(c, 1, argv, lens, learn_command_cb);
    } else if (!known) {
        log_learnt(rb);
    }
    if (rb->base.parent) router_child_learnt(rb->base.parent);
    learn_done(c);
}

static void queue_learn(resp_conn *c)
{
    char *argv[2] = {"INFO", "server"};
    size_t lens[2] = {4, 6};
    c->info_plain = 0;
    send_own(c, 2, argv, lens, learn_info_cb);
}

static void handshake_cb(void *ctx, const backend_reply *r)
{
    resp_conn *c = ctx;
    if (r->error) return; /* the connection is already being dropped */
    if (r->parsed && r->parsed->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof(why), "AUTH failed: %.150s", r->parsed->str);
        log_warning("backend %s: %s", c->rb->base.display, why);
        conn_drop(c, why); /* safe here: deliver_replies stops when bev is gone */
        return;
    }
    if (c->dedicated) return;
    handshake_step(c);
}

/* Queues AUTH as the connection's first command when the URL has a
 * password; returns whether it did. */
static int queue_auth(resp_conn *c)
{
    const backend_url *u = &c->rb->url;
    if (!u->password) return 0;
    char *argv[3];
    size_t lens[3];
    int argc = 0;
    argv[argc] = "AUTH", lens[argc++] = 4;
    if (u->user) argv[argc] = u->user, lens[argc++] = strlen(u->user);
    argv[argc] = u->password, lens[argc++] = strlen(u->password);
    write_command(bufferevent_get_output(c->bev), argc, argv, lens);
    store_writer_soon(&c->writer);
    q_push(c, handshake_cb, c, BACKEND_PARSED);
    return 1;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    resp_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        store_conn_established(bev, &c->rb->addr);
        c->connects++;
        store_writer_connected(&c->writer, bev, &c->rb->addr);
        if (c->dedicated) return; /* handshake queued at creation; commands already follow it */
        c->db = 0;
        c->hs_pending = 0;
        if (queue_auth(c)) c->hs_pending++;
        /* Clients' commands wait for the store to be known only the first time. */
        c->learn_gate = !c->rb->learnt;
        if (c->learn_gate) c->hs_pending++;
        queue_learn(c);
        c->state = CONN_HANDSHAKE;
        if (!c->hs_pending) handshake_step(c);
        return;
    }
    char buf[160];
    conn_drop(c, store_conn_failure(bev, what, buf, sizeof(buf)));
}

static void conn_connect(resp_conn *c)
{
    resp_backend *rb = c->rb;
    char why[160];
    c->fed = 0;
    c->state = CONN_CONNECTING;
    c->bev = store_conn_open(rb->evb, &rb->addr, backend_connect_timeout(&rb->base), read_cb, event_cb, c, why, sizeof(why));
    if (!c->bev) {
        conn_drop(c, why);
        return;
    }
    c->reader = redisReaderCreateWithFunctions(NULL);
    if (!c->reader) abort();
}

/* ---- backend_ops ----------------------------------------------------------- */

static resp_conn *conn_at(resp_backend *rb, int conn)
{
    if (conn >= 0 && conn < rb->base.connections) return &rb->conns[conn];
    if (conn >= DEDICATED_BASE && conn - DEDICATED_BASE < rb->ndconns) return rb->dconns[conn - DEDICATED_BASE];
    return NULL;
}

static int rb_conn_ready(backend *b, int conn)
{
    resp_conn *c = conn_at((resp_backend *)b, conn);
    /* A dedicated connection takes commands while it is still connecting:
     * they wait in its buffer behind the handshake. */
    return c && (c->state == CONN_READY || (c->dedicated && c->state != CONN_DOWN));
}

static int rb_pick(backend *b, unsigned hint)
{
    resp_backend *rb = (resp_backend *)b;
    int n = b->connections;
    for (int i = 0; i < n; i++) {
        int idx = (int)((hint + (unsigned)i) % (unsigned)n);
        if (rb->conns[idx].state == CONN_READY) return idx;
    }
    return -1;
}

static int rb_send(backend *b, int conn, int db, unsigned long long session, int argc, char **argv,
                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    resp_backend *rb = (resp_backend *)b;
    if (!rb_conn_ready(b, conn)) {
        set_unavailable_error(rb);
        return -1;
    }
    resp_conn *c = conn_at(rb, conn);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int lone = c->qlen == 0 && !c->push_fn;
    if (c->db != db) {
        /* Multiplexed connections follow each client's database lazily. */
        char num[24];
        int n = snprintf(num, sizeof(num), "%d", db);
        char *sargv[2] = {"SELECT", num};
        size_t slens[2] = {6, (size_t)n};
        write_command(out, 2, sargv, slens);
        q_push(c, NULL, NULL, BACKEND_RAW);
        c->db = db;
    }
    write_command(out, argc, argv, argvlen);
    if (lone) store_writer_soon_lone(&c->writer);
    else store_writer_soon(&c->writer);
    if (!c->push_fn) {
        q_push(c, fn, ctx, mode);
        if (b->store_version > 0 && b->store_version < 70000)
            c->q[(c->qhead + c->qlen - 1) % c->qcap].context = store_error_context(argv[0], argvlen[0]);
    }
    return 0;
}

static void conn_free_dedicated(resp_conn *c)
{
    /* Whoever waits on it has gone: drop the callbacks, do not call them. */
    c->qlen = 0;
    c->push_fn = NULL;
    store_writer_forget(&c->writer);
    if (c->bev) bufferevent_free(c->bev);
    if (c->reader) redisReaderFree(c->reader);
    if (c->retry_ev) event_free(c->retry_ev);
    free(c->q);
    free(c);
}

static int rb_open_dedicated(backend *b)
{
    resp_backend *rb = (resp_backend *)b;
    int free_slot = -1;
    for (int i = 0; i < rb->ndconns; i++) {
        resp_conn *c = rb->dconns[i];
        if (!c) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (c->in_use) continue;
        if (c->state == CONN_DOWN) { /* closed by the store while idle */
            conn_free_dedicated(c);
            rb->dconns[i] = NULL;
            if (free_slot < 0) free_slot = i;
            continue;
        }
        c->in_use = 1;
        return DEDICATED_BASE + i;
    }
    if (free_slot < 0) {
        rb->dconns = realloc(rb->dconns, sizeof(*rb->dconns) * (size_t)(rb->ndconns + 1));
        if (!rb->dconns) abort();
        free_slot = rb->ndconns++;
    }
    resp_conn *c = calloc(1, sizeof(*c));
    if (!c) abort();
    c->rb = rb;
    c->idx = DEDICATED_BASE + free_slot;
    c->dedicated = 1;
    c->in_use = 1;
    rb->dconns[free_slot] = c;
    conn_connect(c);
    if (c->state == CONN_DOWN) {
        rb->dconns[free_slot] = NULL;
        conn_free_dedicated(c);
        return -1;
    }
    c->db = 0;
    queue_auth(c); /* commands sent from now on wait behind it */
    return c->idx;
}

static void rb_release_dedicated(backend *b, int conn, int reuse)
{
    resp_backend *rb = (resp_backend *)b;
    resp_conn *c = conn_at(rb, conn);
    if (!c || !c->dedicated) return;
    if (reuse && c->state != CONN_DOWN && c->qlen == 0) {
        /* Keep a few idle ones for the next WATCH or blocking command; a
         * burst of blocked clients must not leave hundreds open. */
        int idle = 0;
        for (int i = 0; i < rb->ndconns; i++)
            if (rb->dconns[i] && !rb->dconns[i]->in_use) idle++;
        if (idle < DEDICATED_IDLE_MAX) {
            c->in_use = 0;
            return;
        }
    }
    rb->dconns[conn - DEDICATED_BASE] = NULL;
    if (c->delivering) {
        /* Released from one of its own reply callbacks. */
        c->free_after = 1;
        c->qlen = 0;
        return;
    }
    conn_free_dedicated(c);
}

static void rb_set_push(backend *b, int conn, backend_reply_fn *fn, void *ctx)
{
    resp_conn *c = conn_at((resp_backend *)b, conn);
    if (!c) return;
    c->push_fn = fn;
    c->push_ctx = ctx;
}

static const char *rb_error(backend *b)
{
    resp_backend *rb = (resp_backend *)b;
    if (!rb->error[0]) set_unavailable_error(rb);
    return rb->error;
}

static void rb_info(backend *b, struct evbuffer *out)
{
    resp_backend *rb = (resp_backend *)b;
    int ready = 0;
    size_t pending = 0;
    unsigned long long connects = 0;
    for (int i = 0; i < b->connections; i++) {
        ready += rb->conns[i].state == CONN_READY;
        pending += rb->conns[i].qlen;
        connects += rb->conns[i].connects;
    }
    evbuffer_add_printf(out, "backend_type:resp\r\nbackend_address:%s\r\nbackend_status:%s\r\nbackend_tls:%s\r\n",
                        b->display, ready ? "up" : "down", rb->addr.tls ? "yes" : "no");
    evbuffer_add_printf(out, "backend_connections:%d\r\nbackend_connections_ready:%d\r\n", b->connections, ready);
    evbuffer_add_printf(out, "backend_pending_requests:%zu\r\nbackend_connects:%llu\r\n", pending, connects);
    evbuffer_add_printf(out, "backend_replies:%llu\r\nbackend_failed_requests:%llu\r\n", rb->replies, rb->failures);
    int dedicated = 0, lent = 0;
    for (int i = 0; i < rb->ndconns; i++) {
        if (!rb->dconns[i]) continue;
        dedicated++;
        lent += rb->dconns[i]->in_use;
    }
    evbuffer_add_printf(out, "backend_dedicated_connections:%d\r\nbackend_dedicated_in_use:%d\r\n", dedicated, lent);
    for (int i = 0; i < b->connections; i++)
        evbuffer_add_printf(out, "backend_conn%d:state=%s,db=%d,pending=%zu\r\n", i, state_names[rb->conns[i].state],
                            rb->conns[i].db, rb->conns[i].qlen);
}

static void rb_free(backend *b)
{
    resp_backend *rb = (resp_backend *)b;
    for (int i = 0; i < b->connections; i++) {
        resp_conn *c = &rb->conns[i];
        store_writer_forget(&c->writer);
        if (c->bev) bufferevent_free(c->bev);
        c->bev = NULL;
        c->state = CONN_DOWN;
        fail_pending(c, "shutting down");
        if (c->reader) redisReaderFree(c->reader);
        if (c->retry_ev) event_free(c->retry_ev);
        free(c->q);
    }
    free(rb->conns);
    for (int i = 0; i < rb->ndconns; i++) {
        resp_conn *c = rb->dconns[i];
        if (!c) continue;
        /* A callback that releases it (a FLEET UNLOCK's) leaves the
         * freeing to here. */
        c->delivering = 1;
        fail_pending(c, "shutting down");
        rb->dconns[i] = NULL;
        conn_free_dedicated(c);
    }
    free(rb->dconns);
    backend_url_free(&rb->url);
    store_commands_free(b->store_commands);
    SSL_CTX_free(rb->addr.tls);
    free(rb->parse_fns);
    free(b->display);
    free(rb);
}

static const backend_ops resp_ops = {rb_pick, rb_conn_ready, rb_send, rb_error, rb_info, rb_free,
                                     rb_open_dedicated, rb_release_dedicated, rb_set_push, NULL,
                                     backend_resp_capture, backend_resp_restore};

backend *backend_resp_create(struct event_base *base, const backend_url *u, int connections, SSL_CTX *tls,
                             int tls_verify)
{
    resp_backend *rb = calloc(1, sizeof(*rb));
    if (!rb) abort();
    rb->base.ops = &resp_ops;
    rb->base.has_transactions = 1;
    rb->base.has_dedicated = 1;
    rb->base.connections = connections;
    rb->base.default_db = u->db;
    rb->evb = base;
    rb->url.host = strdup(u->host);
    rb->url.port = u->port;
    rb->url.db = u->db;
    rb->url.user = u->user ? strdup(u->user) : NULL;
    rb->url.password = u->password ? strdup(u->password) : NULL;
    memcpy(rb->url.scheme, u->scheme, sizeof(rb->url.scheme));
    rb->addr.host = rb->url.host;
    rb->addr.port = rb->url.port;
    if (tls && SSL_CTX_up_ref(tls) == 1) rb->addr.tls = tls;
    rb->addr.tls_verify = tls_verify;
    char disp[300];
    if (u->host[0] == '/') snprintf(disp, sizeof(disp), "%s", u->host);
    else if (strchr(u->host, ':')) snprintf(disp, sizeof(disp), "[%s]:%d", u->host, u->port);
    else snprintf(disp, sizeof(disp), "%s:%d", u->host, u->port);
    rb->base.display = strdup(disp);
    /* Copy hiredis's default object functions from a throwaway reader. */
    redisReader *tmp = redisReaderCreate();
    rb->parse_fns = malloc(sizeof(*rb->parse_fns));
    if (!tmp || !rb->parse_fns) abort();
    memcpy(rb->parse_fns, tmp->fn, sizeof(*rb->parse_fns));
    redisReaderFree(tmp);
    rb->conns = calloc((size_t)connections, sizeof(resp_conn));
    if (!rb->conns) abort();
    snprintf(rb->last_cause, sizeof(rb->last_cause), "connecting");
    for (int i = 0; i < connections; i++) {
        resp_conn *c = &rb->conns[i];
        c->rb = rb;
        c->idx = i;
        c->retry_ev = evtimer_new(base, retry_cb, c);
        conn_connect(c);
    }
    return &rb->base;
}
