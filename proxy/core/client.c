/* Client connections: reading requests, keeping replies in request order,
 * output limits, closing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "backends/backend.h"
#include "proxy/core/acl.h"
#include "proxy/core/command_stats.h"
#include "proxy/core/config.h"
#include "proxy/core/locks.h"
#include "util/log.h"
#include "util/sock_read.h"
#include "proxy/core/reply.h"
#include "proxy/core/resp3.h"
#include "proxy/commands/transactions.h"
#include "proxy/commands/pubsub.h"
#include "proxy/core/server.h"

#include "proxy/core/slowlog.h"
#include "proxy/core/tls.h"
#include "util/clock.h"

/* Finished slots are kept for reuse: no allocation per request when warm. */
static reply_slot *free_slots;
static size_t free_slots_count;
#define FREE_SLOTS_MAX 4096

static reply_slot *slot_get(void)
{
    reply_slot *s = free_slots;
    if (s) {
        free_slots = s->next;
        free_slots_count--;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s) abort();
    }
    s->next = NULL;
    s->c = NULL;
    s->locks = NULL;
    s->shape = NULL;
    s->tracked = NULL;
    s->done = 0;
    s->discard = 0;
    s->unlocked = 0;
    s->failed = 0;
    s->rejected = 0;
    s->cmd = NULL;
    s->unchanged_reply = 0;
    s->capture = NULL;
    return s;
}

static void slot_put(reply_slot *s)
{
    slowlog_args_free(s->slow);
    s->slow = NULL;
    if (s->buf) evbuffer_drain(s->buf, evbuffer_get_length(s->buf));
    if (free_slots_count >= FREE_SLOTS_MAX) {
        if (s->buf) evbuffer_free(s->buf);
        free(s);
        return;
    }
    s->next = free_slots;
    free_slots = s;
    free_slots_count++;
}

static void format_addr(int fd, int local, char *out, size_t outlen, int is_unix)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = local ? getsockname(fd, (struct sockaddr *)&ss, &len) : getpeername(fd, (struct sockaddr *)&ss, &len);
    if (rc != 0) {
        snprintf(out, outlen, "?:0");
        return;
    }
    if (is_unix || ss.ss_family == AF_UNIX) {
        /* Redis shows "path:0" for unix sockets, on both ends. */
        snprintf(out, outlen, "%.*s:0", (int)(outlen > 3 ? outlen - 3 : 0), config.unixsocket ? config.unixsocket : "");
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%d", ip, ntohs(sin->sin_port));
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%d", ip, ntohs(sin6->sin6_port));
    }
}

/* ---- output ---------------------------------------------------------------- */

/* Replies are written by the proxy itself once per event-loop turn, for every
 * client that got output, like Redis's write before sleeping: one writev per
 * client per turn and no write-interest toggling while sockets keep up. Only
 * a client whose socket is full gets libevent's write events until drained. */
/* Clients waiting for something this loop turn, in no particular order. */
typedef struct client_list {
    client **v;
    size_t n, cap;
} client_list;

static void list_push(client_list *l, client *c)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, sizeof(*l->v) * l->cap);
        if (!l->v) abort();
    }
    l->v[l->n++] = c;
}

static void list_remove(client_list *l, client *c)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == c) {
            l->v[i] = l->v[--l->n];
            return;
        }
}

static client_list flush_list;
static struct event *flush_ev;

static void flush_cb(evutil_socket_t fd, short what, void *arg);

static void flush_queue(client *c)
{
    if (c->flush_queued || (c->flags & CLIENT_CLOSING)) return;
    list_push(&flush_list, c);
    c->flush_queued = 1;
    if (!flush_ev) flush_ev = event_new(server.base, -1, 0, flush_cb, NULL);
    if (flush_list.n == 1) event_active(flush_ev, 0, 0);
}

static void output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    if (!info->n_added) return;
    client *c = arg;
    /* Roughly one add per reply: what its next replies will weigh. */
    c->reply_size_guess = (c->reply_size_guess + info->n_added) / 2;
    flush_queue(c);
}

/* A client whose pipeline is held up by its own script (running, or just
 * ended with the rest of its input still to read) gets its replies together
 * once that input is consumed and its last script is done, as Redis answers
 * a pipeline read in one go: one write instead of one per script. Bounded in
 * size, and in time once the input is consumed (a slow last script does not
 * hold the replies before it for more than HOLD_USEC); re-queued by
 * client_process_input whenever it stops reading. */
#define FLUSH_HOLD_MAX (64 * 1024)
#define HOLD_USEC 2000

static client_list held;
static struct event *held_ev;

static void held_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (held.n) {
        client *c = held.v[--held.n];
        c->hold_over = 1;
        flush_queue(c);
    }
}

static void held_add(client *c)
{
    if (!held_ev) held_ev = evtimer_new(server.base, held_cb, NULL);
    if (!held_ev) abort();
    list_push(&held, c);
    c->held = 1;
    if (held.n == 1) {
        struct timeval tv = {0, HOLD_USEC};
        evtimer_add(held_ev, &tv);
    }
}

/* Output written or client gone: the hold is over. */
static void held_remove(client *c)
{
    if (c->held && !c->hold_over) list_remove(&held, c);
    c->held = c->hold_over = 0;
}

static int flush_can_wait(client *c)
{
    if (!c->script && !c->resume_pending) return 0;
    if (evbuffer_get_length(c->out) >= FLUSH_HOLD_MAX) return 0;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) return 1;
    if (!c->script || c->hold_over) return 0;
    if (!c->held) held_add(c);
    return 1;
}

static void flush_unqueue(client *c)
{
    if (!c->flush_queued) return;
    list_remove(&flush_list, c);
    c->flush_queued = 0;
}

/* Output not yet handed to the kernel: the proxy's buffer, plus for TLS
 * what the bufferevent still has to encrypt and send. */
int client_idle(client *c)
{
    if (c->flags & CLIENT_CLOSING) return 1;
    if (c->script || c->scripts_pipelined || c->exec_run || c->waiting_locks || c->relay_inflight) return 0;
    /* A blocking command may wait forever: it does not hold the drain up. */
    if (c->slots_head && !(c->dedicated_blocking && c->slots_pending == 1)) return 0;
    if (client_pending_output(c)) return 0;
    if (c->bev && evbuffer_get_length(bufferevent_get_input(c->bev))) return 0;
    int unread = 0;
    if (c->fd >= 0 && ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) return 0;
    return 1;
}

#define DRAIN_CHECKS_MAX 8
static drain_pending_fn *drain_checks[DRAIN_CHECKS_MAX];
static int drain_checks_count;

void server_add_drain_check(drain_pending_fn *fn)
{
    if (drain_checks_count == DRAIN_CHECKS_MAX) abort();
    drain_checks[drain_checks_count++] = fn;
}

unsigned long server_work_pending(void)
{
    unsigned long n = 0;
    for (int i = 0; i < drain_checks_count; i++) n += drain_checks[i]();
    return n;
}

size_t client_pending_output(client *c)
{
    return evbuffer_get_length(c->out) + evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* ---- reading ----------------------------------------------------------------- */

/* Plain sockets are read by the proxy itself (util/sock_read: no FIONREAD
 * before each read, which the bufferevent's reads make); TLS ones by their
 * bufferevent, which decrypts. Either way the bytes land in the
 * bufferevent's input buffer. */
#define CLIENT_READ_MAX (64 * 1024)

static void client_reading(client *c, int on)
{
    if (!c->read_ev) {
        if (on) bufferevent_enable(c->bev, EV_READ);
        else bufferevent_disable(c->bev, EV_READ);
    } else if (on) {
        event_add(c->read_ev, NULL);
    } else {
        event_del(c->read_ev);
    }
}

int client_reading_enabled(const client *c)
{
    if (!c->bev) return 0;
    if (c->read_ev) return event_pending(c->read_ev, EV_READ, NULL) != 0;
    return (bufferevent_get_enabled(c->bev) & EV_READ) != 0;
}

static void read_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void read_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    client *c = arg;
    int end;
    if (sock_read(bufferevent_get_input(c->bev), fd, CLIENT_READ_MAX, &end)) read_cb(c->bev, c);
    else if (end != SOCK_READ_MORE)
        event_cb(c->bev, BEV_EVENT_READING | (end == SOCK_READ_EOF ? BEV_EVENT_EOF : BEV_EVENT_ERROR), c);
}

/* ---- pacing ------------------------------------------------------------------ */

/* A client that does not read its replies must not make the proxy buffer
 * without bound, nor fill the shared store connections with replies that
 * others' replies queue behind. While what it is owed (output not written,
 * plus its relayed commands in flight at the size its replies have had) is
 * over PACE_BYTES, its input waits unread; it goes on once that drains.
 * Before its first reply a client is assumed to get big ones, so a pipeline
 * of huge replies starts only a few; small replies soon open the way. */
#define PACE_BYTES (1024 * 1024)
#define PACE_FIRST_GUESS PACE_BYTES
#define PACE_INFLIGHT 256

static int client_over_pace(client *c)
{
    size_t owed = client_pending_output(c);
    if (owed >= PACE_BYTES || c->relay_inflight >= PACE_INFLIGHT) return 1;
    return c->relay_inflight && owed + (size_t)c->relay_inflight * c->reply_size_guess >= PACE_BYTES;
}

static void client_pace(client *c)
{
    c->flags |= CLIENT_PACED;
    client_reading(c, 0);
}

/* Its replies were written or arrived: read its input again if it may. */
static void client_pace_check(client *c)
{
    if (!(c->flags & CLIENT_PACED) || (c->flags & CLIENT_CLOSING) || client_over_pace(c)) return;
    c->flags &= ~CLIENT_PACED;
    if (!(c->flags & (CLIENT_CLOSE_AFTER_REPLY | CLIENT_READ_EOF))) client_reading(c, 1);
    c->resume_pending = 1;
    event_active(c->resume_ev, 0, 0);
}

static void client_output_dead(client *c);

static void client_write_now(client *c)
{
    struct evbuffer *out = c->out;
    if (c->held) held_remove(c);
    if (c->flags & CLIENT_OUTPUT_DEAD) {
        evbuffer_drain(out, evbuffer_get_length(out));
        if ((c->flags & CLIENT_CLOSE_AFTER_REPLY) && !c->slots_head) client_close(c);
        return;
    }
    if (c->flags & CLIENT_TLS) {
        /* TLS records are written by the bufferevent: hand it the whole turn's output. */
        size_t n = evbuffer_get_length(out);
        if (n && bufferevent_write_buffer(c->bev, out) == 0) {
            server.stats.net_output_bytes += n;
            server.stats.writes_processed++;
        }
        client_pace_check(c);
        if ((c->flags & CLIENT_CLOSE_AFTER_REPLY) && !c->slots_head && client_pending_output(c) == 0)
            client_close(c);
        return;
    }
    while (evbuffer_get_length(out)) {
        int n = evbuffer_write(out, c->fd);
        if (n > 0) {
            server.stats.net_output_bytes += (unsigned long long)n;
            server.stats.writes_processed++;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        if (n < 0) {
            client_output_dead(c);
            return;
        }
        break;
    }
    client_pace_check(c);
    if (evbuffer_get_length(out)) {
        event_add(c->write_ev, NULL); /* the socket is full: go on when it drains */
        return;
    }
    if ((c->flags & CLIENT_CLOSE_AFTER_REPLY) && !c->slots_head) client_close(c);
}

static void write_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client *c = arg;
    if (!(c->flags & CLIENT_CLOSING)) client_write_now(c);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* Writing may close clients (which unqueue themselves): take one at a time. */
    while (flush_list.n) {
        client *c = flush_list.v[--flush_list.n];
        c->flush_queued = 0;
        if (!(c->flags & CLIENT_CLOSING) && c->bev && !flush_can_wait(c)) client_write_now(c);
    }
}


static void client_check_output_limits(client *c)
{
    if (!c->bev || (c->flags & CLIENT_CLOSING)) return;
    const obuf_limit *l = &config.obuf_limits[client_subscribed(c) ? CLIENT_CLASS_PUBSUB : CLIENT_CLASS_NORMAL];
    size_t used = client_pending_output(c);
    int hard = l->hard && used >= l->hard;
    int soft = 0;
    if (l->soft && used >= l->soft) {
        time_t now = time(NULL);
        if (!c->obuf_soft_since) c->obuf_soft_since = now;
        else if (now - c->obuf_soft_since > l->soft_seconds) soft = 1;
    } else {
        c->obuf_soft_since = 0;
    }
    if (hard || soft) {
        size_t len;
        char *info = client_info_string(c, &len);
        log_warning("Client %s scheduled to be closed ASAP for overcoming of output buffer limits.", info);
        free(info);
        client_close(c);
    }
}

/* A slot's RESP2 replies in RESP3; bytes that do not parse go as they are. */
static void resp3_write(const resp3_shape *shape, struct evbuffer *buf, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(buf), off = 0;
    const char *p = (const char *)evbuffer_pullup(buf, -1);
    while (off < len) {
        long n = resp3_convert(shape, p + off, len - off, out);
        if (n <= 0) {
            evbuffer_add(out, p + off, len - off);
            break;
        }
        off += (size_t)n;
    }
    evbuffer_drain(buf, len);
}

/* Moves every completed reply at the head of the queue to the socket. */
static void client_flush_slots(client *c)
{
    struct evbuffer *out = c->out;
    while (c->slots_head && c->slots_head->done) {
        reply_slot *s = c->slots_head;
        c->slots_head = s->next;
        if (!c->slots_head) c->slots_tail = NULL;
        c->slots_pending--;
        if (s->buf && !s->discard) {
            if (s->shape) resp3_write(s->shape, s->buf, out);
            else evbuffer_add_buffer(out, s->buf);
        }
        if (c->cur_reply == s) c->cur_reply = NULL;
        slot_put(s);
    }
    client_check_output_limits(c);
}

void client_output_written(client *c) { client_check_output_limits(c); }

static reply_slot *slot_new(client *c);
static reply_slot *slot_new_queued(client *c);

static reply_slot *capture_slot_new(client *c)
{
    reply_capture *cap = c->capture;
    reply_slot *s = slot_get();
    if (!s->buf) s->buf = evbuffer_new();
    if (!s->buf) abort();
    s->c = c;
    s->capture = cap;
    if (cap->tail) cap->tail->next = s;
    else cap->head = s;
    cap->tail = s;
    return s;
}

/* The captured replies that have come, in order, into cap->buf. */
static void capture_flush(reply_capture *cap)
{
    while (cap->head && cap->head->done) {
        reply_slot *s = cap->head;
        cap->head = s->next;
        if (!cap->head) cap->tail = NULL;
        evbuffer_add_buffer(cap->buf, s->buf);
        slot_put(s);
    }
    if (!cap->head && !cap->running && cap->done) cap->done(cap->ctx);
}

void client_capture_begin(client *c, reply_capture *cap)
{
    cap->head = cap->tail = NULL;
    cap->running = 1;
    c->capture = cap;
}

int client_capture_end(client *c, reply_capture *cap)
{
    if (c->capture == cap) c->capture = NULL;
    cap->running = 0;
    /* Nothing to wait for: the caller goes on at once. */
    if (!cap->head) return 1;
    return 0;
}

void client_capture_detach(reply_capture *cap)
{
    for (reply_slot *s = cap->head; s; s = s->next) s->c = NULL;
}

/* A queue of replies nobody waits for any more: those that came are freed,
 * the others are dropped when they come. */
static void slots_orphan(reply_slot *head)
{
    for (reply_slot *s = head; s;) {
        reply_slot *next = s->next;
        s->next = NULL;
        if (s->done) {
            slot_put(s);
        } else {
            s->c = NULL;
            s->capture = NULL;
        }
        s = next;
    }
}

void client_capture_abandon(reply_capture *cap)
{
    slots_orphan(cap->head);
    cap->head = cap->tail = NULL;
}

struct evbuffer *client_reply_buffer(client *c)
{
    if (c->capture) {
        if (!c->capture->head) return c->capture->buf;
        reply_slot *s = capture_slot_new(c); /* behind a reply still to come */
        s->done = 1;
        return s->buf;
    }
    if (c->flags & CLIENT_REPLY_SKIP) {
        /* The reply goes nowhere. Behind replies still in flight it takes a
         * discarded slot (so order holds); otherwise a scratch buffer. */
        if (!c->slots_head) {
            static struct evbuffer *scratch;
            if (!scratch) scratch = evbuffer_new();
            evbuffer_drain(scratch, evbuffer_get_length(scratch));
            return scratch;
        }
        reply_slot *s = slot_new(c);
        s->done = 1;
        return s->buf;
    }
    if (!c->slots_head && !c->cur_shape) return c->out;
    /* RESP3: the reply waits in a slot to be converted; one slot for all
     * the pieces a command writes. */
    if (c->cur_shape && c->cur_reply && c->cur_reply == c->slots_tail) return c->cur_reply->buf;
    reply_slot *s = slot_new(c);
    s->done = 1;
    if (c->cur_shape) c->cur_reply = s;
    return s->buf;
}

static reply_slot *slot_new(client *c);

/* A push (a subscription's confirmation or message) in reply order; not
 * the command's reply, so it carries no timing for commandstats. */
struct evbuffer *client_push_buffer(client *c)
{
    if (!c->slots_head) return c->out;
    reply_slot *s = slot_new_queued(c); /* never captured: not a command's reply */
    s->discard = 0;
    s->shape = NULL; /* written in the client's protocol already */
    s->done = 1;
    return s->buf;
}

/* A reply answered later: the command being dispatched is timed until then. */
reply_slot *client_slot_add(client *c)
{
    reply_slot *s = slot_new(c);
    if (c->cur_cmd) {
        s->cmd = c->cur_cmd;
        s->start_us = c->cur_start_us;
        s->slow = slowlog_args_copy(c->cur_cmd, c->cur_argc, c->cur_argv, c->cur_argvlen);
        c->cur_cmd = NULL;
    }
    return s;
}

static reply_slot *slot_new(client *c)
{
    if (c->capture) return capture_slot_new(c);
    return slot_new_queued(c);
}

static reply_slot *slot_new_queued(client *c)
{
    reply_slot *s = slot_get();
    if (!s->buf) s->buf = evbuffer_new();
    if (!s->buf) abort();
    s->c = c;
    s->discard = (c->flags & CLIENT_REPLY_SKIP) != 0;
    s->shape = c->cur_shape;
    if (c->slots_tail) c->slots_tail->next = s;
    else c->slots_head = s;
    c->slots_tail = s;
    c->slots_pending++;
    return s;
}

void client_slot_done(reply_slot *s)
{
    s->done = 1;
    if (s->cmd) {
        char first = 0;
        if (!s->failed && s->buf) evbuffer_copyout(s->buf, &first, 1);
        unsigned long long usec = clock_recent_us() - s->start_us;
        if (s->rejected) {
            /* As Redis counts a command its state refused: never ran. */
            stats_command_rejected(s->cmd);
            slowlog_args_free(s->slow);
        } else {
            stats_command_done(s->cmd, usec, s->failed || first == '-');
            slowlog_command_done(s->cmd, s->slow, usec, s->c ? s->c->addr : "?:0", s->c ? s->c->name : NULL);
        }
        s->slow = NULL;
        s->cmd = NULL;
    }
    if (s->capture) {
        capture_flush(s->capture);
        return;
    }
    client *c = s->c;
    if (!c) {
        slot_put(s);
        return;
    }
    if (c->slots_head == s) client_flush_slots(c);
    if ((c->flags & CLIENT_CLOSE_AFTER_REPLY) && !c->slots_head && c->bev && client_pending_output(c) == 0)
        client_close(c);
    else client_pace_check(c);
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void client_process_input(client *c);
static client *closed_clients;
static client *dispatching; /* whose command is running now (CLIENT LIST's argv-mem) */

int client_running_command(const client *c) { return c == dispatching; }
static struct event *reap_ev;

/* What features keep for a client (scripts, transactions, subscriptions)
 * is let go by the hooks they register, not by client.c naming each one. */
#define CLOSE_HOOKS_MAX 16
static client_command_fn *command_handler_fn;

void client_set_command_handler(client_command_fn *fn) { command_handler_fn = fn; }

static client_close_hook *close_hooks[CLOSE_HOOKS_MAX];
static int close_hooks_count;

void client_add_close_hook(client_close_hook *fn)
{
    if (close_hooks_count == CLOSE_HOOKS_MAX) abort();
    close_hooks[close_hooks_count++] = fn;
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    clients_reap();
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    client *c = arg;
    c->last_interaction = time(NULL);
    server.stats.reads_processed++;
    clock_burst_begin();
    client_process_input(c);
    clock_burst_end();
}



/* TLS only: the bufferevent has sent everything it was given. */
static void tls_written_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    client *c = arg;
    client_pace_check(c);
    if ((c->flags & CLIENT_CLOSE_AFTER_REPLY) && !c->slots_head && client_pending_output(c) == 0) client_close(c);
}

/* A blocking command still waiting at the store a while after its client's
 * EOF ends with the client, as Redis frees a blocked client when it reads
 * the EOF; the while lets a command the store can serve at once answer. */
#define EOF_BLOCK_GRACE_MS 1000

static void eof_block_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client *c = arg;
    if (c->dedicated_blocking) client_close(c);
}

void client_blocking_sent(client *c)
{
    if (!(c->flags & CLIENT_READ_EOF) || (c->flags & CLIENT_CLOSING)) return;
    if (!c->eof_block_ev) c->eof_block_ev = evtimer_new(server.base, eof_block_cb, c);
    if (!c->eof_block_ev) abort();
    struct timeval tv = {EOF_BLOCK_GRACE_MS / 1000, (EOF_BLOCK_GRACE_MS % 1000) * 1000};
    evtimer_add(c->eof_block_ev, &tv);
}

/* The client will send nothing more (EOF, or its connection failed): every
 * complete command it sent still runs, in order, as Redis runs every
 * command it has read; then it closes (client_process_input). */
static void client_read_eof(client *c, int now)
{
    c->flags |= CLIENT_READ_EOF;
    client_reading(c, 0);
    /* A command CLIENT PAUSE holds ends with its client, as Redis frees a
     * blocked client when it reads the EOF. */
    if (c->postponed) {
        client_close(c);
        return;
    }
    if (c->dedicated_blocking) client_blocking_sent(c);
    if (now) {
        client_process_input(c); /* a client with nothing left goes at once */
        return;
    }
    c->resume_pending = 1;
    event_active(c->resume_ev, 0, 0);
}

/* Writing failed: the peer reads no more. Its replies are dropped from
 * here on; what it sent still runs, read until its end (the kernel keeps
 * what arrived before a reset). */
static void client_output_dead(client *c)
{
    c->flags |= CLIENT_OUTPUT_DEAD;
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    struct evbuffer *tls_out = bufferevent_get_output(c->bev);
    evbuffer_drain(tls_out, evbuffer_get_length(tls_out));
    if (c->write_ev) event_del(c->write_ev);
    if ((c->flags & CLIENT_CLOSE_AFTER_REPLY) && !c->slots_head) {
        client_close(c);
        return;
    }
    client_pace_check(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    client *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->flags |= CLIENT_TLS_READY; /* the TLS handshake is done */
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        char why[256];
        const char *tls_why = (c->flags & CLIENT_TLS) ? tls_bufferevent_error(bev, why, sizeof(why)) : NULL;
        if ((c->flags & CLIENT_TLS) && !(c->flags & CLIENT_TLS_READY)) {
            log_verbose("Error accepting a client connection: %s (addr=%s laddr=%s)",
                        tls_why ? tls_why : "connection closed during the TLS handshake", c->addr, c->laddr);
            client_close(c);
            return;
        }
        if (tls_why)
            log_verbose("TLS error on client id=%llu addr=%s: %s", (unsigned long long)c->id, c->addr, tls_why);
        /* An error ends both ways: the bufferevent reads no more either. */
        if (what & (BEV_EVENT_ERROR | BEV_EVENT_WRITING)) client_output_dead(c);
        if (!(c->flags & (CLIENT_READ_EOF | CLIENT_CLOSING))) client_read_eof(c, 1);
    }
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client *c = arg;
    c->resume_pending = 0;
    client_process_input(c);
}

client *client_create(int fd, int is_unix, SSL *ssl)
{
    client *c = calloc(1, sizeof(*c));
    if (!c) abort();
    c->id = ++server.next_client_id;
    c->fd = fd;
    c->flags = is_unix ? CLIENT_UNIX_SOCKET : 0;
    c->resp = 2;
    c->db = server.backend ? server.backend->default_db : 0;
    c->user = acl_default_user();
    acl_user_retain(c->user);
    /* As Redis: a client that connects while no password is needed stays
     * authenticated when one is set later. */
    c->authenticated = (c->user->flags & ACL_USER_NOPASS) && !(c->user->flags & ACL_USER_OFF);
    c->backend_conn = -1;
    c->watch_conn = -1;
    c->dedicated_conn = -1;
    c->reply_size_guess = PACE_FIRST_GUESS;
    c->ctime = c->last_interaction = time(NULL);
    request_parser_init(&c->parser);
    c->parser.proto_max_bulk_len = config.proto_max_bulk_len;
    format_addr(fd, 0, c->addr, sizeof(c->addr), is_unix);
    format_addr(fd, 1, c->laddr, sizeof(c->laddr), is_unix);
    if (!is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (config.tcp_keepalive > 0) {
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
            int idle = config.tcp_keepalive, intvl = config.tcp_keepalive / 3 ? config.tcp_keepalive / 3 : 1, cnt = 3;
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        }
    }
    if (ssl) {
        /* Same client from here on; the bufferevent does the handshake and
         * the record layer, and reads start once the handshake is done. */
        c->flags |= CLIENT_TLS;
        c->bev = bufferevent_openssl_socket_new(server.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev) bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(server.base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->resume_ev = event_new(server.base, -1, 0, resume_cb, c);
    if (!c->bev || !c->resume_ev) abort();
    bufferevent_setcb(c->bev, read_cb, ssl ? tls_written_cb : NULL, event_cb, c);
    if (!ssl) {
        c->read_ev = event_new(server.base, fd, EV_READ | EV_PERSIST, read_ready_cb, c);
        if (!c->read_ev) abort();
        /* The bufferevent keeps its input's end frozen between its own
         * reads; it makes none here. */
        evbuffer_unfreeze(bufferevent_get_input(c->bev), 0);
    }
    client_reading(c, 1);
    /* Plain output bypasses the bufferevent: see client_write_now. */
    c->out = evbuffer_new();
    c->write_ev = event_new(server.base, fd, EV_WRITE, write_ready_cb, c);
    if (!c->out || !c->write_ev) abort();
    evbuffer_add_cb(c->out, output_cb, c);
    c->next = server.clients;
    if (server.clients) server.clients->prev = c;
    server.clients = c;
    server.clients_count++;
    server.stats.connections_received++;
    return c;
}

void client_close(client *c)
{
    if (c->flags & CLIENT_CLOSING) return;
    c->flags |= CLIENT_CLOSING;
    /* A relayed command waiting for locks is handed over by the first hook
     * (relay_client_gone); any other wait just ends. */
    if (c->waiting_locks && !c->waiting_relay) {
        lock_set_release(c->waiting_locks);
        c->waiting_locks = NULL;
    }
    /* Every hook runs, whatever state the client is in: after this nothing
     * but its reply slots (cleared next) may point at it. */
    for (int i = 0; i < close_hooks_count; i++) close_hooks[i](c);
    /* Replies still in flight are dropped when they arrive. */
    slots_orphan(c->slots_head);
    c->slots_head = c->slots_tail = NULL;
    if (c->prev) c->prev->next = c->next;
    else server.clients = c->next;
    if (c->next) c->next->prev = c->prev;
    server.clients_count--;
    flush_unqueue(c);
    held_remove(c);
    event_free(c->write_ev);
    c->write_ev = NULL;
    evbuffer_free(c->out);
    c->out = NULL;
    if (c->read_ev) event_free(c->read_ev);
    c->read_ev = NULL;
    bufferevent_free(c->bev);
    c->bev = NULL;
    event_free(c->resume_ev);
    c->resume_ev = NULL;
    if (c->eof_block_ev) event_free(c->eof_block_ev);
    c->eof_block_ev = NULL;
    /* The memory is released on the next loop turn: callers up the stack may
     * still look at c->flags. */
    c->next = closed_clients;
    closed_clients = c;
    if (!reap_ev) reap_ev = event_new(server.base, -1, 0, reap_cb, NULL);
    event_active(reap_ev, 0, 0);
}

void clients_reap(void)
{
    while (closed_clients) {
        client *c = closed_clients;
        closed_clients = c->next;
        request_parser_free(&c->parser);
        acl_user_release(c->user);
        free(c->name);
        free(c->lib_name);
        free(c->lib_ver);
        free(c);
    }
}

void clients_close_all(void)
{
    while (server.clients) client_close(server.clients);
}

void clients_shutdown(void)
{
    clients_close_all();
    clients_reap();
    if (reap_ev) event_free(reap_ev);
    reap_ev = NULL;
    if (flush_ev) event_free(flush_ev);
    flush_ev = NULL;
    if (held_ev) event_free(held_ev);
    held_ev = NULL;
    free(flush_list.v);
    free(held.v);
    flush_list = held = (client_list){0};
    while (free_slots) {
        reply_slot *s = free_slots;
        free_slots = s->next;
        if (s->buf) evbuffer_free(s->buf);
        free(s);
    }
    free_slots_count = 0;
}

void client_close_after_reply(client *c)
{
    c->flags |= CLIENT_CLOSE_AFTER_REPLY;
    client_reading(c, 0);
}

void client_block(client *c) { c->flags |= CLIENT_BLOCKED; }

reply_slot *client_hold_reply(client *c)
{
    reply_slot *s = client_slot_add(c);
    /* Captured, the client is held by what captures (EXEC) already. */
    if (!s->capture) client_block(c);
    return s;
}

void client_release_reply(reply_slot *s)
{
    /* Unblocked first: the slot's completion may close the client. */
    if (s->c && !s->capture) client_unblock(s->c);
    client_slot_done(s);
}

void client_unblock(client *c)
{
    c->flags &= ~CLIENT_BLOCKED;
    c->resume_pending = 1;
    event_active(c->resume_ev, 0, 0);
}

/* Runs the command the parser holds; 0 when that closed the client. */
static int client_run_parsed(client *c)
{
    dispatching = c;
    c->cur_shape = NULL;
    c->cur_reply = NULL;
    command_handler_fn(c, c->parser.argc, c->parser.argv, c->parser.argvlen);
    dispatching = NULL;
    /* dispatch may have closed the client. */
    if (c->flags & CLIENT_CLOSING) return 0;
    c->cur_shape = NULL;
    c->cur_reply = NULL;
    /* A RESP3 reply answered at once waits in a slot: out it goes. */
    if (c->slots_head && c->slots_head->done) client_flush_slots(c);
    c->flags &= ~CLIENT_REPLY_SKIP;
    return 1;
}

void client_postpone(client *c)
{
    c->postponed = 1;
    c->rerun_skip = (c->flags & CLIENT_REPLY_SKIP) != 0;
    client_block(c);
}

void client_postponed_resume(client *c)
{
    c->postponed = 0;
    c->rerun = 1;
    client_unblock(c);
}

static void client_process_input(client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!(c->flags & (CLIENT_CLOSE_AFTER_REPLY | CLIENT_CLOSING | CLIENT_BLOCKED | CLIENT_PACED))) {
        if (c->rerun) {
            /* A command CLIENT PAUSE held: it runs now, before what followed it. */
            c->rerun = 0;
            if (c->rerun_skip) c->flags |= CLIENT_REPLY_SKIP;
            if (!client_run_parsed(c)) return;
            continue;
        }
        size_t len = evbuffer_get_length(in);
        if (len == 0) break;
        if (client_over_pace(c)) {
            client_pace(c);
            break;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t consumed = 0;
        c->parser.authenticated = !client_auth_required(c);
        c->parser.proto_max_bulk_len = config.proto_max_bulk_len;
        int rc = request_parser_feed(&c->parser, v.iov_base, v.iov_len, &consumed);
        evbuffer_drain(in, consumed);
        server.stats.net_input_bytes += consumed;
        if (rc == REQUEST_PARSE_ERROR) {
            log_verbose("Protocol error (%s) from client: id=%llu addr=%s", c->parser.error,
                        (unsigned long long)c->id, c->addr);
            c->flags &= ~(CLIENT_REPLY_OFF | CLIENT_REPLY_SKIP | CLIENT_REPLY_SKIP_NEXT);
            reply_error(client_reply_buffer(c), c->parser.error);
            client_close_after_reply(c);
            if (!c->slots_head && evbuffer_get_length(c->out) == 0) client_close(c);
            return;
        }
        if ((long long)request_parser_pending(&c->parser) > config.client_query_buffer_limit) {
            log_warning("Closing client that reached max query buffer length: id=%llu addr=%s",
                        (unsigned long long)c->id, c->addr);
            client_close(c);
            return;
        }
        if (rc == REQUEST_PARSE_DONE) {
            c->last_interaction = time(NULL);
            /* CLIENT REPLY SKIP affects exactly the next command. */
            if (c->flags & CLIENT_REPLY_SKIP_NEXT) {
                c->flags &= ~CLIENT_REPLY_SKIP_NEXT;
                c->flags |= CLIENT_REPLY_SKIP;
            } else if (c->flags & CLIENT_REPLY_OFF) {
                c->flags |= CLIENT_REPLY_SKIP;
            } else {
                c->flags &= ~CLIENT_REPLY_SKIP;
            }
            if (!client_run_parsed(c)) return;
        }
    }
    if ((c->flags & CLIENT_READ_EOF) &&
        !(c->flags & (CLIENT_CLOSE_AFTER_REPLY | CLIENT_CLOSING | CLIENT_BLOCKED | CLIENT_PACED)) &&
        !evbuffer_get_length(in)) {
        /* All it sent has run (a partial command is dropped): close once
         * the replies still owed are written. A Lua debugging session
         * would wait for commands that cannot come: it ends with the
         * client (its script runs on to its end, as in Redis). */
        if (c->debugging) {
            client_close(c);
            return;
        }
        c->flags |= CLIENT_CLOSE_AFTER_REPLY;
        if (!c->slots_head && client_pending_output(c) == 0) {
            client_close(c);
            return;
        }
    }
    if (evbuffer_get_length(c->out)) flush_queue(c); /* output held by flush_can_wait */
}

/* ---- CLIENT LIST and cron ------------------------------------------------------ */

static client_describe_fn *describer;

void client_set_describer(client_describe_fn *fn) { describer = fn; }

char *client_info_string(client *c, size_t *len)
{
    struct evbuffer *tmp = evbuffer_new();
    if (!tmp) abort();
    if (describer) describer(c, tmp);
    else evbuffer_add_printf(tmp, "id=%llu addr=%s", (unsigned long long)c->id, c->addr);
    size_t n;
    char *s = buffer_take_string(tmp, &n);
    if (n && s[n - 1] == '\n') n--; /* one line, without CLIENT LIST's newline */
    s[n] = '\0';
    *len = n;
    return s;
}

int client_auth_required(const client *c)
{
    const acl_user *d = acl_default_user();
    return (!(d->flags & ACL_USER_NOPASS) || (d->flags & ACL_USER_OFF)) && !c->authenticated;
}

void clients_cron(void)
{
    time_t now = time(NULL);
    client *c = server.clients;
    while (c) {
        client *next = c->next;
        if (config.timeout > 0 && !(c->flags & CLIENT_BLOCKED) && c->slots_pending == 0 && !client_subscribed(c) &&
            now - c->last_interaction > config.timeout) {
            log_verbose("Closing idle client id=%llu addr=%s", (unsigned long long)c->id, c->addr);
            client_close(c);
        } else {
            client_check_output_limits(c);
        }
        c = next;
    }
}
