/* memcached backend: Redis string and key commands translated to the
 * memcached 1.6 meta protocol (mg, ms, md, ma, mn). Each Redis command is a
 * small request object that issues meta commands on one pipelined
 * connection and builds the Redis reply as RESP bytes; replies leave in
 * request order per connection. Read-modify-write commands read the CAS
 * token and write with it, retrying a bounded number of times, so writers
 * that bypass the proxy cannot be overwritten silently. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "backends/backend.h"
#include "backends/conn.h"
#include "backends/memcached_int.h"
#include "util/args.h"
#include "util/log.h"
#include "util/strconv.h"
#include "util/clock.h"

enum conn_state { CONN_DOWN = 0, CONN_CONNECTING, CONN_READY };
static const char *state_names[] = {"down", "connecting", "ready"};

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

/* ---- small helpers --------------------------------------------------------- */

long long mc_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Redis's string2ll (shared with the proxy). */
int mc_parse_ll(const char *s, size_t len, long long *out) { return string_to_ll(s, len, out); }

/* Redis's string2ld: strtold over the whole string (a NUL inside ends it
 * early: refused), no leading space, no NaN. */
int mc_parse_ld(const char *s, size_t len, long double *out)
{
    char buf[5 * 1024];
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long double v = strtold(buf, &end);
    if (buf[0] == ' ' || (buf[0] >= '\t' && buf[0] <= '\r') || *end != '\0' || (size_t)(end - buf) != len ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) || isnan(v))
        return 0;
    *out = v;
    return 1;
}

/* Redis's human long double format: %.17Lf without trailing zeros. */
size_t mc_format_ld(char *buf, size_t cap, long double v)
{
    int l = snprintf(buf, cap, "%.17Lf", v);
    if (l < 0 || (size_t)l >= cap) return 0;
    if (strchr(buf, '.')) {
        char *p = buf + l - 1;
        while (*p == '0') {
            p--;
            l--;
        }
        if (*p == '.') l--;
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    buf[l] = '\0';
    return (size_t)l;
}

void mc_add_simple(struct evbuffer *o, const char *s) { evbuffer_add_printf(o, "+%s\r\n", s); }
void mc_add_error(struct evbuffer *o, const char *s) { evbuffer_add_printf(o, "-%s\r\n", s); }
void mc_add_int(struct evbuffer *o, long long v) { evbuffer_add_printf(o, ":%lld\r\n", v); }
void mc_add_null(struct evbuffer *o) { evbuffer_add(o, "$-1\r\n", 5); }
void mc_add_bulk(struct evbuffer *o, const char *p, size_t len)
{
    evbuffer_add_printf(o, "$%zu\r\n", len);
    evbuffer_add(o, p, len);
    evbuffer_add(o, "\r\n", 2);
}

/* ---- keys ------------------------------------------------------------------ */

/* A Redis key (db, bytes) becomes one memcached key, injectively:
 * - db 0 keys of 1..250 bytes not starting with 0x01 are stored as they are,
 *   so tools that talk to memcached directly see the same names;
 * - everything else is 0x01 <db> ':' <key>, or, when that is too long for
 *   memcached, 0x01 <db> '#' <sha256(key)>.
 * Keys with bytes memcached's text protocol cannot carry go out base64
 * encoded with the meta `b` flag. */
#define MC_KEY_MAX 250

static int text_safe(const unsigned char *k, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (k[i] <= 32 || k[i] >= 127) return 0;
    return 1;
}

static size_t b64_len(size_t n) { return (n + 2) / 3 * 4; }

/* 1 if `k` can go on the wire (as text or base64) within memcached's limit. */
static int wire_ok(const unsigned char *k, size_t len)
{
    if (len == 0 || len > MC_KEY_MAX) return 0;
    return text_safe(k, len) || b64_len(len) <= MC_KEY_MAX;
}

size_t mc_map_key(int db, const char *key, size_t klen, unsigned char *out)
{
    const unsigned char *k = (const unsigned char *)key;
    if (db == 0 && klen >= 1 && k[0] != 0x01 && wire_ok(k, klen)) {
        memcpy(out, k, klen);
        return klen;
    }
    int n = snprintf((char *)out, 32, "\x01%d:", db);
    if (wire_ok(out, (size_t)n + klen) || (klen == 0)) {
        memcpy(out + n, k, klen);
        return (size_t)n + klen;
    }
    out[n - 1] = '#';
    unsigned int mdlen = 0;
    EVP_Digest(key, klen, out + n, &mdlen, EVP_sha256(), NULL);
    return (size_t)n + mdlen;
}

/* Appends " <key>" to a meta command line; 1 when the caller must add the
 * `b` flag (base64 key). */
static int put_key(struct evbuffer *o, const unsigned char *k, size_t len)
{
    evbuffer_add(o, " ", 1);
    if (text_safe(k, len)) {
        evbuffer_add(o, k, len);
        return 0;
    }
    char enc[b64_len(MC_KEY_MAX) + 4];
    int n = EVP_EncodeBlock((unsigned char *)enc, k, (int)len);
    evbuffer_add(o, enc, (size_t)n);
    return 1;
}

/* Inverse of the mapping for names listed by metadump: returns the db, or
 * -1 for keys that are not ours; *name is NULL for digested names. */
int mc_unmap_key(const unsigned char *k, size_t len, const unsigned char **name, size_t *nlen)
{
    if (len == 0) return -1;
    if (k[0] != 0x01) {
        *name = k;
        *nlen = len;
        return 0;
    }
    size_t i = 1;
    int db = 0;
    while (i < len && k[i] >= '0' && k[i] <= '9') {
        db = db * 10 + (k[i] - '0');
        if (db > 1000000) return -1;
        i++;
    }
    if (i == 1 || i >= len) return -1;
    if (k[i] == ':') {
        *name = k + i + 1;
        *nlen = len - i - 1;
    } else if (k[i] == '#') {
        *name = NULL;
        *nlen = 0;
    } else {
        return -1;
    }
    return db;
}

/* ---- connection, queues ----------------------------------------------------- */

static void conn_connect(mc_conn *c);
static void pump(mc_conn *c);
static void deliver(mc_conn *c);

static void exp_push(mc_conn *c, mc_req *r, int tag, int dump)
{
    if (c->elen == c->ecap) {
        size_t ncap = c->ecap ? c->ecap * 2 : 64;
        mc_expect *n = malloc(ncap * sizeof(*n));
        if (!n) abort();
        for (size_t i = 0; i < c->elen; i++) n[i] = c->exp[(c->ehead + i) % c->ecap];
        free(c->exp);
        c->exp = n;
        c->ecap = ncap;
        c->ehead = 0;
    }
    c->exp[(c->ehead + c->elen) % c->ecap] = (mc_expect){r, tag, dump};
    /* Its command is in the output; one sent with nothing else in flight
     * may find its reply right after the write. */
    if (c->elen == 0) store_writer_soon_lone(&c->writer);
    else store_writer_soon(&c->writer);
    c->elen++;
    r->pending++;
}

static struct evbuffer *conn_out(mc_conn *c) { return bufferevent_get_output(c->bev); }

void mc_issue_mg(mc_req *r, const char *flags, int tag)
{
    struct evbuffer *o = conn_out(r->c);
    evbuffer_add(o, "mg", 2);
    if (put_key(o, r->mkey, r->mklen)) evbuffer_add(o, " b", 2);
    if (flags && *flags) evbuffer_add_printf(o, " %s", flags);
    evbuffer_add(o, "\r\n", 2);
    exp_push(r->c, r, tag, 0);
}

void mc_issue_mg_key(mc_req *r, const unsigned char *k, size_t klen, const char *flags, int tag)
{
    struct evbuffer *o = conn_out(r->c);
    evbuffer_add(o, "mg", 2);
    if (put_key(o, k, klen)) evbuffer_add(o, " b", 2);
    if (flags && *flags) evbuffer_add_printf(o, " %s", flags);
    evbuffer_add(o, "\r\n", 2);
    exp_push(r->c, r, tag, 0);
}

void mc_issue_ms_key(mc_req *r, const unsigned char *k, size_t klen, const char *val, size_t vlen,
                     const char *flags, int tag)
{
    struct evbuffer *o = conn_out(r->c);
    evbuffer_add(o, "ms", 2);
    int b64 = put_key(o, k, klen);
    evbuffer_add_printf(o, " %zu", vlen); /* flags, b included, follow the length */
    if (b64) evbuffer_add(o, " b", 2);
    if (flags && *flags) evbuffer_add_printf(o, " %s", flags);
    evbuffer_add(o, "\r\n", 2);
    evbuffer_add(o, val, vlen);
    evbuffer_add(o, "\r\n", 2);
    exp_push(r->c, r, tag, 0);
}

void mc_issue_ms(mc_req *r, const char *val, size_t vlen, const char *flags, int tag)
{
    mc_issue_ms_key(r, r->mkey, r->mklen, val, vlen, flags, tag);
}

void mc_issue_md_key(mc_req *r, const unsigned char *k, size_t klen, const char *flags, int tag)
{
    struct evbuffer *o = conn_out(r->c);
    evbuffer_add(o, "md", 2);
    if (put_key(o, k, klen)) evbuffer_add(o, " b", 2);
    if (flags && *flags) evbuffer_add_printf(o, " %s", flags);
    evbuffer_add(o, "\r\n", 2);
    exp_push(r->c, r, tag, 0);
}

void mc_issue_md(mc_req *r, const char *flags, int tag) { mc_issue_md_key(r, r->mkey, r->mklen, flags, tag); }

void mc_issue_raw(mc_req *r, const char *line, int tag, int dump)
{
    evbuffer_add_printf(conn_out(r->c), "%s\r\n", line);
    exp_push(r->c, r, tag, dump);
}

void mc_issue_dump(mc_req *r, int tag)
{
    mc_issue_raw(r, r->c->mb->dump_all ? "lru_crawler metadump all" : "lru_crawler metadump hash", tag, 1);
}

static void later_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mc_req *r = arg;
    r->pending--;
    if (r->timer_tag == MC_START) {
        evbuffer_drain(r->out, evbuffer_get_length(r->out));
        r->cmd->handler(r, MC_START, NULL);
    } else {
        mc_issue_dump(r, r->timer_tag);
    }
}

/* The request goes on with tag after ms milliseconds (MC_START: from its
 * beginning, anything else: the dump sent again). */
static void continue_later(mc_req *r, int tag, unsigned ms)
{
    if (!r->timer) {
        r->timer = evtimer_new(r->c->mb->evb, later_timer_cb, r);
        if (!r->timer) abort();
    }
    r->timer_tag = tag;
    r->pending++; /* keeps the request from being taken as stalled or delivered */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

void mc_issue_dump_later(mc_req *r, int tag, unsigned ms) { continue_later(r, tag, ms); }

void mc_cas_lost(mc_req *r)
{
    if (++r->retries > MC_CAS_RETRIES) {
        mc_fail(r, "ERR too many concurrent changes to the key on the memcached backend, try again");
        return;
    }
    if (r->retries <= MC_CAS_RETRIES_AT_ONCE) {
        evbuffer_drain(r->out, evbuffer_get_length(r->out));
        r->cmd->handler(r, MC_START, NULL);
    } else {
        /* A writer in a tight loop keeps its own rhythm: a random pause puts
         * this request's read-to-write window somewhere else in it. */
        unsigned cap = r->retries < 16 ? (unsigned)r->retries : 16;
        continue_later(r, MC_START, 1 + (unsigned)(random() % cap));
    }
}

/* ---- failure and reconnection ---------------------------------------------- */

static void set_unavailable_error(mc_backend *mb)
{
    snprintf(mb->error, sizeof(mb->error), "ERR backend %s is unavailable: %s", mb->base.display,
             mb->last_cause[0] ? mb->last_cause : "not connected");
}

static void req_free(mc_req *r)
{
    free(r->held);
    if (r->out) evbuffer_free(r->out);
    if (r->aux) evbuffer_free(r->aux);
    if (r->deferred) evbuffer_free(r->deferred);
    if (r->timer) event_free(r->timer);
    free(r->scratch);
    free(r->args);
    free(r);
}

static void fail_requests(mc_conn *c, const char *why)
{
    char err[300];
    snprintf(err, sizeof(err), "ERR backend %s: %s", c->mb->base.display, why);
    backend_reply br = {.error = err};
    c->elen = 0;
    c->nmore = 0;
    c->nheld = 0;
    c->next_start = NULL;
    while (c->head) {
        mc_req *r = c->head;
        c->head = r->next;
        if (!c->head) c->tail = NULL;
        c->mb->failures++;
        if (r->fn) r->fn(r->ctx, &br);
        req_free(r);
    }
}

static void schedule_retry(mc_conn *c)
{
    if (c->backoff_ms == 0) c->backoff_ms = BACKOFF_MIN_MS;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void conn_drop(mc_conn *c, const char *why)
{
    int was_ready = c->state == CONN_READY;
    store_writer_forget(&c->writer);
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->state = CONN_DOWN;
    c->settings_pending = 0;
    /* A TLS failure needs the operator: said once at warning level. */
    if (!was_ready && !strncmp(why, "TLS ", 4) && strcmp(why, c->mb->last_cause) != 0)
        log_warning("backend %s: %s", c->mb->base.display, why);
    snprintf(c->mb->last_cause, sizeof(c->mb->last_cause), "%s", why);
    set_unavailable_error(c->mb);
    if (was_ready) log_warning("backend %s connection %d lost: %s", c->mb->base.display, c->idx, why);
    else log_verbose("backend %s connection %d: %s", c->mb->base.display, c->idx, why);
    fail_requests(c, was_ready ? "connection lost" : why);
    schedule_retry(c);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_connect(arg);
}

/* ---- request lifecycle ------------------------------------------------------ */

/* Whether a request of r's client before r on its connection is not done. */
static int earlier_pending(const mc_req *r)
{
    for (const mc_req *o = r->c->head; o && o != r; o = o->next)
        if (o->session == r->session && !o->done) return 1;
    return 0;
}

void mc_issue_ms_in_order(mc_req *r, const char *val, size_t vlen, const char *flags, int tag)
{
    if (!r->gated || !earlier_pending(r)) {
        mc_issue_ms(r, val, vlen, flags, tag);
        return;
    }
    size_t fl = strlen(flags);
    free(r->held);
    r->held = malloc(fl + 1 + vlen + 1);
    if (!r->held) abort();
    memcpy(r->held, flags, fl + 1);
    memcpy(r->held + fl + 1, val, vlen);
    r->held_vlen = vlen;
    r->held_tag = tag;
    r->pending++; /* the write it owes: the request is not finished */
    r->c->nheld++;
}

/* r is done: the next request of its client may hold a write that can go now. */
static void release_held(mc_req *r)
{
    for (mc_req *x = r->next; x; x = x->next) {
        if (x->session != r->session || x->done) continue;
        if (x->held && !earlier_pending(x)) {
            char *held = x->held;
            x->held = NULL;
            x->pending--;
            x->c->nheld--;
            const char *flags = held;
            mc_issue_ms(x, held + strlen(flags) + 1, x->held_vlen, flags, x->held_tag);
            free(held);
        }
        return; /* only the first not done may write */
    }
}

void mc_finish(mc_req *r)
{
    if (r->done) return;
    r->done = 1;
    if (r->more) {
        r->more = 0;
        r->c->nmore--;
    }
    if (r->c->nheld && r->session) release_held(r);
}

void mc_fail(mc_req *r, const char *err)
{
    evbuffer_drain(r->out, evbuffer_get_length(r->out));
    mc_add_error(r->out, err);
    mc_finish(r);
}

void mc_expire_lazily(mc_req *from, const unsigned char *k, size_t klen, unsigned long long cas)
{
    mc_conn *c = from->c;
    if (c->state != CONN_READY || klen == 0 || klen > MC_MAPPED_MAX) return;
    mc_req *r = calloc(1, sizeof(*r));
    if (!r) abort();
    r->c = c;
    r->cmd = &mc_lazy_expire_cmd;
    r->n1 = (long long)cas;
    memcpy(r->mkey, k, klen);
    r->mklen = klen;
    r->out = evbuffer_new();
    if (!r->out) abort();
    /* Started by the pump that follows every handler's run (not from here:
     * a handler may be running inside pump or a reply's dispatch). */
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    if (!c->next_start) c->next_start = r;
}

int mc_value_fits(mc_req *r, unsigned long long len)
{
    unsigned long long max = r->c->mb->item_size_max;
    if (!max || len <= max) return 1;
    mc_fail(r, MC_ERR_TOO_LARGE);
    return 0;
}

/* Requests that later ones must not overtake: started ones that may still
 * issue meta commands, and ones that could not start yet. A one-key
 * command of a known session may go past those that are one-key commands
 * of other sessions on other keys: such requests commute, so the store
 * still sees every key's commands in request order, and every client's
 * commands in its own order. Past MC_PASS_BLOCKERS_MAX of them, nothing
 * more starts in this pump. */
#define MC_PASS_BLOCKERS_MAX 64
typedef struct mc_blockers {
    const mc_req *v[MC_PASS_BLOCKERS_MAX];
    int n;
    int all; /* one that nothing may pass */
} mc_blockers;

static void block_add(mc_blockers *b, const mc_req *o)
{
    if (!(o->cmd->flags & MC_CMD_ONE_KEY) || o->argc < 2 || !o->session || b->n == MC_PASS_BLOCKERS_MAX) b->all = 1;
    else b->v[b->n++] = o;
}

/* 0: r waits; 1: it may start; 2: it may start past its own client's
 * earlier requests (a read-modify-write on another key: gated). */
static int may_pass(const mc_blockers *b, const mc_req *r)
{
    if (b->all) return 0;
    if (!b->n) return 1;
    if (!(r->cmd->flags & MC_CMD_ONE_KEY) || r->argc < 2 || !r->session) return 0;
    int gated = 0;
    for (int i = 0; i < b->n; i++) {
        const mc_req *o = b->v[i];
        if (o->mklen == r->mklen && !memcmp(o->mkey, r->mkey, r->mklen)) return 0;
        if (o->session == r->session) {
            if (!(r->cmd->flags & MC_CMD_RMW)) return 0;
            gated = 1;
        }
    }
    return gated ? 2 : 1;
}

/* Starts queued requests: in order, except that one held back (by an
 * earlier request that may still issue meta commands after its first
 * replies, see may_pass) no longer holds back the requests of other
 * clients on other keys behind it. c->next_start is the first request not
 * started; requests after it may have started. */
static void pump(mc_conn *c)
{
    if (!c->next_start || c->state != CONN_READY) return;
    mc_blockers b;
    b.n = b.all = 0;
    /* Before next_start everything has started: only those still to issue
     * more commands hold later ones back (none when nmore is 0). */
    mc_req *r = c->nmore ? c->head : c->next_start;
    while (r && !b.all) {
        if (r->started) {
            if (!r->done && r->more) block_add(&b, r);
            r = r->next;
            continue;
        }
        /* Mapped once (never 0 bytes long), though pump may look at r again. */
        if (r->argc >= 2 && !r->mklen) r->mklen = mc_map_key(r->db, r->argv[1], r->argvlen[1], r->mkey);
        /* memcached refuses a metadump behind replies it still owes
         * ("cannot pipeline other commands before metadump"). */
        int pass = may_pass(&b, r);
        if (!pass || ((r->cmd->flags & MC_CMD_DUMP) && c->elen > 0)) {
            block_add(&b, r);
            r = r->next;
            continue;
        }
        r->started = 1;
        r->gated = pass == 2;
        while (c->next_start && c->next_start->started) c->next_start = c->next_start->next;
        int a = r->cmd->arity;
        if ((a > 0 && r->argc != a) || (a < 0 && r->argc < -a)) {
            char err[200];
            snprintf(err, sizeof(err), "ERR wrong number of arguments for '%s' command", r->cmd->name);
            mc_fail(r, err);
            r = r->next;
            continue;
        }
        r->cmd->handler(r, MC_START, NULL);
        if (c->state != CONN_READY) return; /* the requests are gone */
        if (!r->done && r->pending == 0) mc_fail(r, "ERR internal error: request issued nothing");
        if (!r->done && r->more) block_add(&b, r);
        r = r->next;
    }
}

static const struct timeval next_turn = {0, 0};

/* Hands over the finished replies at the head of the queue, up to the last
 * request queued when it starts: a request a callback sends (a script's
 * next call) waits for the next loop turn even when it needed no reply from
 * memcached (PING, TIME), so that a script calling those in a loop cannot
 * keep the proxy from reading its other clients. */
static void deliver(mc_conn *c)
{
    mc_backend *mb = c->mb;
    mc_req *last = c->tail;
    while (last && c->head && c->head->done && c->head->pending == 0) {
        mc_req *r = c->head;
        if (r == last) last = NULL;
        c->head = r->next;
        if (!c->head) c->tail = NULL;
        mb->replies++;
        backend_reply br = {0};
        redisReply *parsed = NULL;
        size_t len = evbuffer_get_length(r->out);
        if (r->mode == BACKEND_PARSED && r->fn) {
            redisReader *rd = redisReaderCreate();
            if (!rd) abort();
            unsigned char *p = evbuffer_pullup(r->out, -1);
            redisReaderFeed(rd, (const char *)p, len);
            void *obj = NULL;
            if (redisReaderGetReply(rd, &obj) != REDIS_OK || !obj) br.error = "ERR internal error: bad reply";
            parsed = obj;
            redisReaderFree(rd);
            br.parsed = parsed;
        }
        br.raw = r->out;
        br.raw_len = len;
        if (r->fn) r->fn(r->ctx, &br);
        if (parsed) freeReplyObject(parsed);
        req_free(r);
    }
    if (c->head && c->head->done && c->head->pending == 0 && c->deliver_ev) evtimer_add(c->deliver_ev, &next_turn);
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    deliver(arg);
}

/* ---- reading meta replies ---------------------------------------------------- */

static void parse_flags(mc_resp *m, const char *p, const char *end)
{
    while (p < end) {
        while (p < end && *p == ' ') p++;
        if (p >= end) break;
        const char *tok = p;
        while (p < end && *p != ' ') p++;
        char f = tok[0];
        char num[32];
        size_t n = (size_t)(p - tok - 1);
        if (n >= sizeof(num)) continue;
        memcpy(num, tok + 1, n);
        num[n] = '\0';
        if (f == 't') {
            m->has_t = 1;
            m->t = strtoll(num, NULL, 10);
        } else if (f == 'c') {
            m->has_c = 1;
            m->cas = strtoull(num, NULL, 10);
        } else if (f == 's') {
            m->has_s = 1;
            m->size = strtoull(num, NULL, 10);
        } else if (f == 'f') {
            m->has_f = 1;
            m->flags = strtoull(num, NULL, 10);
        }
    }
}

static void handle_reply(mc_conn *c, mc_resp *m)
{
    mc_expect e = c->exp[c->ehead];
    c->ehead = (c->ehead + 1) % c->ecap;
    c->elen--;
    mc_req *r = e.r;
    r->pending--;
    if (!r->done) r->cmd->handler(r, e.tag, m);
    if (!r->done && r->pending == 0) mc_fail(r, "ERR internal error: request stalled");
}

/* One dump line ("key=... exp=..."), or its END. */
static int read_dump(mc_conn *c, struct evbuffer *in)
{
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (!line) return 0;
    mc_req *r = c->exp[c->ehead].r;
    mc_resp m = {0};
    /* Every item line starts "key="; anything else (END, BUSY, BADCLASS,
     * an error) ends the dump. */
    if (strncmp(line, "key=", 4)) {
        if (!strcmp(line, "END")) memcpy(m.code, "EN", 3);
        else memcpy(m.code, "ER", 3);
        m.line = line;
        m.linelen = n;
        handle_reply(c, &m);
    } else if (!r->done) {
        memcpy(m.code, "KY", 3);
        m.line = line;
        m.linelen = n;
        r->cmd->handler(r, c->exp[c->ehead].tag, &m);
    }
    free(line);
    return 1;
}

/* The `stats settings` lines sent first on a connection: 1 once its END
 * has been read. */
static int read_settings(mc_conn *c, struct evbuffer *in)
{
    for (;;) {
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) return 0;
        unsigned long long v;
        if (sscanf(line, "STAT item_size_max %llu", &v) == 1) c->mb->item_size_max = v;
        int end = !strcmp(line, "END") || strstr(line, "ERROR") != NULL;
        free(line);
        if (end) {
            c->settings_pending = 0;
            return 1;
        }
    }
}

static void read_replies(struct bufferevent *bev, mc_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->settings_pending && !read_settings(c, in)) {
        if (evbuffer_get_length(in) > 65536) conn_drop(c, "protocol error from store: settings too long");
        return;
    }
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) break;
        if (c->elen == 0) {
            conn_drop(c, "unexpected reply from store");
            return;
        }
        if (c->exp[c->ehead].dump) {
            if (!read_dump(c, in)) break;
            if (!c->bev) return;
            continue;
        }
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
        if (eol.pos < 0) {
            if (avail > 8192) {
                conn_drop(c, "protocol error from store: line too long");
                return;
            }
            break;
        }
        size_t hlen = (size_t)eol.pos;
        /* With its CRLF: the length is parsed up to the first non-digit,
         * which must be in the contiguous bytes. */
        char *h = (char *)evbuffer_pullup(in, (ev_ssize_t)(hlen + eol_len));
        mc_resp m = {0};
        size_t total = hlen + 2;
        size_t vlen = 0;
        if (hlen >= 2) {
            m.code[0] = h[0];
            m.code[1] = h[1];
        }
        if (hlen >= 3 && !memcmp(h, "VA ", 3)) {
            char *end;
            vlen = strtoull(h + 3, &end, 10);
            if (avail < hlen + 2 + vlen + 2) {
                /* Ask for the whole value before waking up again. */
                bufferevent_setwatermark(bev, EV_READ, hlen + 2 + vlen + 2, 0);
                break;
            }
            bufferevent_setwatermark(bev, EV_READ, 0, 0);
            total = hlen + 2 + vlen + 2;
            size_t flags_at = (size_t)(end - h); /* the pullup below may move the line */
            h = (char *)evbuffer_pullup(in, (ev_ssize_t)total);
            parse_flags(&m, h + flags_at, h + hlen);
            m.val = h + hlen + 2;
            m.vlen = vlen;
        } else if ((hlen >= 5 && !memcmp(h, "ERROR", 5)) || (hlen >= 12 && !memcmp(h + 6, "_ERROR", 6))) {
            memcpy(m.code, "ER", 3);
        } else if (hlen >= 2) {
            parse_flags(&m, h + 2, h + hlen);
        }
        m.line = h;
        m.linelen = hlen;
        handle_reply(c, &m);
        if (!c->bev) return; /* dropped: `in` went with it */
        evbuffer_drain(in, total);
    }
    pump(c);
    deliver(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    clock_burst_begin();
    read_replies(bev, arg);
    clock_burst_end();
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    mc_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        store_conn_established(bev, &c->mb->addr);
        /* The item size limit lets values that can never fit be refused
         * before they are built and sent. Answered before any request. */
        evbuffer_add(bufferevent_get_output(bev), "stats settings\r\n", 16);
        c->settings_pending = 1;
        store_writer_connected(&c->writer, bev, &c->mb->addr);
        c->connects++;
        c->state = CONN_READY;
        c->backoff_ms = 0;
        log_verbose("backend %s connection %d ready", c->mb->base.display, c->idx);
        return;
    }
    char buf[160];
    conn_drop(c, store_conn_failure(bev, what, buf, sizeof(buf)));
}

static void conn_connect(mc_conn *c)
{
    mc_backend *mb = c->mb;
    char why[160];
    c->state = CONN_CONNECTING;
    c->bev = store_conn_open(mb->evb, &mb->addr, backend_connect_timeout(&mb->base), read_cb, event_cb, c, why, sizeof(why));
    if (!c->bev) conn_drop(c, why);
}

/* ---- backend_ops --------------------------------------------------------------- */

static mc_conn *conn_at(mc_backend *mb, int conn)
{
    if (conn >= 0 && conn < mb->base.connections) return &mb->conns[conn];
    return NULL;
}

static int mb_conn_ready(backend *b, int conn)
{
    mc_conn *c = conn_at((mc_backend *)b, conn);
    return c && c->state == CONN_READY;
}

static int mb_pick(backend *b, unsigned hint)
{
    mc_backend *mb = (mc_backend *)b;
    int n = b->connections;
    for (int i = 0; i < n; i++) {
        int idx = (int)((hint + (unsigned)i) % (unsigned)n);
        if (mb->conns[idx].state == CONN_READY) return idx;
    }
    return -1;
}

static int send_cmd(backend *b, int conn, int db, unsigned long long session, int argc, char **argv,
                    const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx, const mc_cmd *cmd)
{
    mc_backend *mb = (mc_backend *)b;
    if (!mb_conn_ready(b, conn) || argc < 1) {
        set_unavailable_error(mb);
        return -1;
    }
    mc_conn *c = conn_at(mb, conn);
    /* The argument copies outlive the caller's. */
    mc_req *r = calloc(1, sizeof(*r));
    if (!r) abort();
    r->argv = args_copy(argc, argv, argvlen, &r->argvlen);
    r->args = (char *)r->argv;
    r->argc = argc;
    r->c = c;
    r->db = db;
    r->session = session;
    r->mode = mode;
    r->fn = fn;
    r->ctx = ctx;
    r->out = evbuffer_new();
    if (!r->out) abort();
    r->cmd = cmd ? cmd : mc_lookup(argv[0], argvlen[0]);
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    if (!c->next_start) c->next_start = r;
    pump(c);
    /* Answered without memcached: delivered on the next loop turn, after
     * the sockets (an active event would run in this one). */
    if (c->head && c->head->done && c->head->pending == 0) evtimer_add(c->deliver_ev, &next_turn);
    return 0;
}

static int mb_send(backend *b, int conn, int db, unsigned long long session, int argc, char **argv,
                   const size_t *argvlen, int mode, backend_reply_fn *fn, void *ctx)
{
    return send_cmd(b, conn, db, session, argc, argv, argvlen, mode, fn, ctx, NULL);
}

/* The items' CAS values: memcached gives every write a new one. */
static int mb_key_tokens(backend *b, int conn, int nkeys, const int *dbs, char **keys, const size_t *klens,
                         backend_reply_fn *fn, void *ctx)
{
    /* key-tokens db1 key1 db2 key2 ... */
    int argc = 1 + 2 * nkeys;
    char **argv = malloc(sizeof(char *) * (size_t)argc);
    size_t *argvlen = malloc(sizeof(size_t) * (size_t)argc);
    char (*nums)[16] = malloc(sizeof(*nums) * (size_t)(nkeys ? nkeys : 1));
    if (!argv || !argvlen || !nums) abort();
    argv[0] = "key-tokens";
    argvlen[0] = 10;
    for (int i = 0; i < nkeys; i++) {
        argvlen[1 + 2 * i] = (size_t)snprintf(nums[i], sizeof(nums[i]), "%d", dbs[i]);
        argv[1 + 2 * i] = nums[i];
        argv[2 + 2 * i] = keys[i];
        argvlen[2 + 2 * i] = klens[i];
    }
    int rc = send_cmd(b, conn, 0, 0, argc, argv, argvlen, BACKEND_PARSED, fn, ctx, &mc_key_tokens_cmd);
    free(nums);
    free(argv);
    free(argvlen);
    return rc;
}

/* ---- key images (undo journal): the item's value, client flags and TTL ---------- */

typedef struct mc_capture {
    backend_image_fn *fn;
    void *ctx;
    long long read_ms;
} mc_capture;

/* The read's reply, shaped by mc_journal_read: nil, or [value, flags, t]. */
static void capture_cb(void *ctx, const backend_reply *r)
{
    mc_capture *cap = ctx;
    const redisReply *p = r->parsed;
    const char *err = r->error;
    backend_image *img = NULL;
    if (!err && p->type == REDIS_REPLY_ERROR) err = p->str;
    else if (!err && p->type != REDIS_REPLY_NIL &&
             (p->type != REDIS_REPLY_ARRAY || p->elements != 3 || p->element[0]->type != REDIS_REPLY_STRING))
        err = "ERR unexpected reply reading a key's image";
    if (!err) {
        img = calloc(1, sizeof(*img));
        if (!img) abort();
        img->ttl_ms = -1;
        img->read_ms = cap->read_ms;
        if (p->type == REDIS_REPLY_ARRAY) {
            img->exists = 1;
            img->len = p->element[0]->len;
            img->data = malloc(img->len ? img->len : 1);
            if (!img->data) abort();
            memcpy(img->data, p->element[0]->str, img->len);
            img->flags = (unsigned long long)p->element[1]->integer;
            /* ms left: to the deadline, or memcached's whole seconds (see flags) */
            if (p->element[2]->integer >= 0) img->ttl_ms = p->element[2]->integer;
        }
    }
    cap->fn(cap->ctx, img, err);
    free(cap);
}

static int mb_capture(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                      backend_image_fn *fn, void *ctx)
{
    mc_capture *cap = malloc(sizeof(*cap));
    if (!cap) abort();
    cap->fn = fn;
    cap->ctx = ctx;
    cap->read_ms = clock_ms();
    char *v[2] = {"image", (char *)key};
    size_t l[2] = {5, len};
    if (send_cmd(b, conn, db, session, 2, v, l, BACKEND_PARSED, capture_cb, cap, mc_journal_cmd(0)) != 0) {
        free(cap);
        return -1;
    }
    return 0;
}

static int mb_restore(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                      const backend_image *img, backend_reply_fn *fn, void *ctx)
{
    /* ms left now; the image's flags say whether to the exact deadline */
    long long t = -1;
    if (img->ttl_ms >= 0) {
        long long left = img->ttl_ms - (clock_ms() - img->read_ms);
        t = left > 0 ? left : 0;
    }
    int gone = !img->exists || t == 0;
    char fl[24], tl[24];
    int fn_len = snprintf(fl, sizeof(fl), "%llu", img->flags), tn_len = snprintf(tl, sizeof(tl), "%lld", t);
    char *v[5] = {"image", (char *)key, gone ? "" : img->data, fl, tl};
    size_t l[5] = {5, len, gone ? 0 : img->len, (size_t)fn_len, (size_t)tn_len};
    return send_cmd(b, conn, db, session, gone ? 2 : 5, v, l, BACKEND_PARSED, fn, ctx, mc_journal_cmd(1));
}

static const char *mb_error(backend *b)
{
    mc_backend *mb = (mc_backend *)b;
    if (!mb->error[0]) set_unavailable_error(mb);
    return mb->error;
}

static void mb_info(backend *b, struct evbuffer *out)
{
    mc_backend *mb = (mc_backend *)b;
    int ready = 0;
    unsigned long long connects = 0;
    size_t pending = 0;
    for (int i = 0; i < b->connections; i++) {
        ready += mb->conns[i].state == CONN_READY;
        connects += mb->conns[i].connects;
        for (mc_req *r = mb->conns[i].head; r; r = r->next) pending++;
    }
    evbuffer_add_printf(out,
                        "backend_type:memcached\r\nbackend_address:%s\r\nbackend_status:%s\r\nbackend_tls:%s\r\n",
                        b->display, ready ? "up" : "down", mb->addr.tls ? "yes" : "no");
    evbuffer_add_printf(out, "backend_connections:%d\r\nbackend_connections_ready:%d\r\n", b->connections, ready);
    evbuffer_add_printf(out, "backend_pending_requests:%zu\r\nbackend_connects:%llu\r\n", pending, connects);
    evbuffer_add_printf(out, "backend_replies:%llu\r\nbackend_failed_requests:%llu\r\n", mb->replies, mb->failures);
    for (int i = 0; i < b->connections; i++)
        evbuffer_add_printf(out, "backend_conn%d:state=%s\r\n", i, state_names[mb->conns[i].state]);
}

static void mb_free(backend *b)
{
    mc_backend *mb = (mc_backend *)b;
    for (int i = 0; i < b->connections; i++) {
        mc_conn *c = &mb->conns[i];
        store_writer_forget(&c->writer);
        if (c->bev) bufferevent_free(c->bev);
        c->bev = NULL;
        c->state = CONN_DOWN;
        fail_requests(c, "shutting down");
        if (c->retry_ev) event_free(c->retry_ev);
        if (c->deliver_ev) event_free(c->deliver_ev);
        free(c->exp);
    }
    free(mb->conns);
    free(mb->host);
    SSL_CTX_free(mb->addr.tls);
    free(b->display);
    free(mb);
}

/* No dedicated connections on memcached: WATCH falls back to the proxy's
 * write versions, transactions run command by command under the proxy's
 * locks, pub/sub is carried by the proxy alone, and blocking commands are
 * sent the ordinary way, so they are refused by name like any other command
 * memcached lacks. The error text stays the store's availability. */
static int mb_open_dedicated(backend *b)
{
    (void)b;
    return -1;
}

static void mb_release_dedicated(backend *b, int conn, int reuse)
{
    (void)b;
    (void)conn;
    (void)reuse;
}

static void mb_set_push(backend *b, int conn, backend_reply_fn *fn, void *ctx)
{
    (void)b;
    (void)conn;
    (void)fn;
    (void)ctx;
}

static const backend_ops mc_ops = {mb_pick, mb_conn_ready, mb_send, mb_error, mb_info, mb_free,
                                   mb_open_dedicated, mb_release_dedicated, mb_set_push, mb_key_tokens,
                                   mb_capture, mb_restore};

backend *backend_memcached_create(struct event_base *base, const backend_url *u, int connections, SSL_CTX *tls,
                                  int tls_verify)
{
    mc_backend *mb = calloc(1, sizeof(*mb));
    if (!mb) abort();
    mb->base.ops = &mc_ops;
    mb->base.connections = connections;
    mb->base.default_db = 0;
    mb->evb = base;
    mb->host = strdup(u->host);
    mb->port = u->port;
    mb->addr.host = mb->host;
    mb->addr.port = mb->port;
    if (tls && SSL_CTX_up_ref(tls) == 1) mb->addr.tls = tls;
    mb->addr.tls_verify = tls_verify;
    char disp[300];
    if (strchr(u->host, ':')) snprintf(disp, sizeof(disp), "[%s]:%d", u->host, u->port);
    else snprintf(disp, sizeof(disp), "%s:%d", u->host, u->port);
    mb->base.display = strdup(disp);
    mb->conns = calloc((size_t)connections, sizeof(mc_conn));
    if (!mb->conns) abort();
    snprintf(mb->last_cause, sizeof(mb->last_cause), "connecting");
    for (int i = 0; i < connections; i++) {
        mc_conn *c = &mb->conns[i];
        c->mb = mb;
        c->idx = i;
        c->retry_ev = evtimer_new(base, retry_cb, c);
        c->deliver_ev = event_new(base, -1, 0, deliver_cb, c);
        conn_connect(c);
    }
    return &mb->base;
}
