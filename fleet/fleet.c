/* Fleet membership: seats with leases in the store, the view of members,
 * slot owners, self-fencing (see fleet.h for the timing argument). */
#include "fleet/fleet.h"
#include "fleet/fleet_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "util/log.h"
#include "util/clock.h"

/* Slots are owned by ranges: a cluster-aware client's CLUSTER SLOTS stays
 * short, and a member joining or leaving moves only whole ranges. */
#define RANGES 256
#define RANGE_SLOTS (FLEET_SLOTS / RANGES)

static struct {
    struct event_base *base;
    backend *store;
    int on;
    char name[128];
    char host[256];
    int port;
    char credentials[512];
    long long lease_ms, margin_ms;
    char self_id[FLEET_ID_LEN + 1];
    int seat;                 /* -1: not joined */
    long long serve_from_ms;  /* a joined member serves from then on */
    long long fence_at_ms;    /* and stops serving then, unless a poll renews */
    int polling;              /* a poll is in flight */
    long long poll_sent_ms;
    fleet_member members[FLEET_MAX_MEMBERS];
    int nmembers, self;
    int16_t range_owner[RANGES];
    unsigned long long epoch;
    struct event *tick;
    /* Peers by member id, kept across view changes. */
    struct peer {
        char id[FLEET_ID_LEN + 1];
        backend *b;
    } peers[FLEET_MAX_MEMBERS];
    int npeers;
    unsigned long long forwarded, redirected, fences, joins;
    char seat_keys[FLEET_MAX_MEMBERS][300];
    size_t seat_key_lens[FLEET_MAX_MEMBERS];
    /* Ranges taken from members that left, not served until what those
     * members' unfinished runs wrote there is put back. */
    unsigned short recovering[RANGES];
    unsigned char run_places[FLEET_RUN_PLACES / 8];
    unsigned long long run_tokens;
    void (*member_left)(const char *id, void (*done)(void *ctx), void *ctx);
} F = {.seat = -1, .self = -1};

static void new_id(void)
{
    unsigned char raw[FLEET_ID_LEN / 2];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        for (size_t i = 0; i < sizeof(raw); i++) raw[i] = (unsigned char)(rand() & 0xff);
    }
    for (size_t i = 0; i < sizeof(raw); i++) snprintf(F.self_id + 2 * i, 3, "%02x", raw[i]);
}

/* ---- owners ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return h;
}

static void compute_owners(void)
{
    uint64_t hs[FLEET_MAX_MEMBERS];
    for (int m = 0; m < F.nmembers; m++) hs[m] = id_hash(F.members[m].id);
    for (int r = 0; r < RANGES; r++) {
        int best = -1;
        uint64_t best_score = 0;
        for (int m = 0; m < F.nmembers; m++) {
            uint64_t s = mix64(hs[m] ^ mix64((uint64_t)r + 1));
            if (best < 0 || s > best_score) {
                best = m;
                best_score = s;
            }
        }
        F.range_owner[r] = (int16_t)best;
    }
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const fleet_member *)a)->id, ((const fleet_member *)b)->id);
}

/* A new view from the seats read. A member missing from the read stays in
 * the view (owning its slots, which nobody serves meanwhile) until it has
 * been missing for a whole lease: its seat may have been dropped by a
 * FLUSHALL or an eviction while it still serves, and it has fenced itself
 * once it could not renew for a lease. */
typedef struct member_left {
    unsigned char ranges[RANGES / 8];
} member_left;

static void member_recovered(void *ctx)
{
    member_left *ml = ctx;
    for (int r = 0; r < RANGES; r++)
        if (ml->ranges[r / 8] & (1u << (r % 8))) F.recovering[r]--;
    free(ml);
}

static void set_view(fleet_member *ms, int n)
{
    long long now = clock_ms();
    fleet_member old[FLEET_MAX_MEMBERS];
    int old_n = F.nmembers;
    memcpy(old, F.members, sizeof(*old) * (size_t)old_n);
    fleet_member next[FLEET_MAX_MEMBERS];
    int k = 0;
    for (int i = 0; i < n; i++) next[k++] = ms[i];
    for (int j = 0; j < F.nmembers && k < FLEET_MAX_MEMBERS; j++) {
        int present = 0;
        for (int i = 0; i < n && !present; i++) present = !strcmp(ms[i].id, F.members[j].id);
        if (present) continue;
        fleet_member m = F.members[j];
        if (!m.absent_since_ms) m.absent_since_ms = now;
        if (now - m.absent_since_ms < F.lease_ms) next[k++] = m;
    }
    qsort(next, (size_t)k, sizeof(*next), member_cmp);
    int same = k == F.nmembers;
    for (int i = 0; same && i < k; i++)
        same = !strcmp(next[i].id, F.members[i].id) && next[i].port == F.members[i].port &&
               !strcmp(next[i].host, F.members[i].host);
    memcpy(F.members, next, sizeof(*next) * (size_t)k);
    F.nmembers = k;
    F.self = -1;
    for (int i = 0; i < k; i++)
        if (!strcmp(next[i].id, F.self_id)) F.self = i;
    if (same) return;
    F.epoch++;
    int16_t before[RANGES];
    memcpy(before, F.range_owner, sizeof(before));
    compute_owners();
    log_notice("fleet %s: view %llu has %d member(s)", F.name, F.epoch, k);
    /* Members that left (they were in the old view, kept there a lease
     * after their seat went): their unfinished runs are undone where this
     * member now owns the slots, before it serves them. */
    for (int j = 0; j < old_n; j++) {
        int kept = 0;
        for (int i = 0; i < k && !kept; i++) kept = !strcmp(F.members[i].id, old[j].id);
        if (kept || !strcmp(old[j].id, F.self_id)) continue;
        member_left *ml = calloc(1, sizeof(*ml));
        if (!ml) abort();
        for (int r = 0; r < RANGES; r++) {
            if (before[r] != j || F.range_owner[r] != F.self) continue;
            ml->ranges[r / 8] |= (unsigned char)(1u << (r % 8));
            F.recovering[r]++;
        }
        log_notice("fleet %s: member %s left; undoing its unfinished scripts", F.name, old[j].id);
        if (F.member_left) F.member_left(old[j].id, member_recovered, ml);
        else member_recovered(ml);
    }
}

static void fence(const char *why)
{
    if (F.seat < 0) return;
    log_warning("fleet %s: this member stops serving (%s); it joins again as a new member", F.name, why);
    F.fences++;
    F.seat = -1;
    F.nmembers = 0;
    F.self = -1;
    F.epoch++;
    new_id();
    /* Places belong to an incarnation: the new one starts with all free. */
    memset(F.run_places, 0, sizeof(F.run_places));
}

int fleet_slot_owner(int slot)
{
    if (!F.nmembers) return -1;
    return F.range_owner[(slot & (FLEET_SLOTS - 1)) / RANGE_SLOTS];
}

int fleet_slot_route(int slot)
{
    if (F.seat < 0 || F.self < 0) return FLEET_WAIT;
    int range = (slot & (FLEET_SLOTS - 1)) / RANGE_SLOTS;
    int owner = F.range_owner[range];
    if (owner != F.self) return owner;
    if (F.recovering[range]) return FLEET_WAIT;
    long long now = clock_ms();
    if (now >= F.fence_at_ms) {
        fence("its lease may have lapsed");
        return FLEET_WAIT;
    }
    return now >= F.serve_from_ms ? FLEET_SERVE : FLEET_WAIT;
}

int fleet_enabled(void) { return F.on; }
int fleet_member_count(void) { return F.nmembers; }
const fleet_member *fleet_member_at(int i) { return i >= 0 && i < F.nmembers ? &F.members[i] : NULL; }
int fleet_self(void) { return F.self; }
const char *fleet_self_id(void) { return F.self_id; }
unsigned long long fleet_epoch(void) { return F.epoch; }
/* A dead member's slots: its seat expires (a lease), it is missing for a
 * lease, a poll sees it; a member started in its place then waits a lease
 * before serving the ranges it takes: with room for a slow machine. */
long long fleet_wait_limit_ms(void) { return 6 * F.lease_ms + 2000; }
void fleet_count_forwarded(void) { F.forwarded++; }
void fleet_count_redirected(void) { F.redirected++; }

/* ---- polls ------------------------------------------------------------------ */

static int seat_value(char *buf, size_t len)
{
    return snprintf(buf, len, "%s %s %d", F.self_id, F.host, F.port);
}

/* "id host port" as a seat holds it. */
static int parse_seat(const redisReply *v, int seat, fleet_member *m)
{
    if (!v || v->type != REDIS_REPLY_STRING || v->len >= 300) return 0;
    char buf[300];
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    char id[64], host[256];
    int port;
    if (sscanf(buf, "%63s %255s %d", id, host, &port) != 3 || strlen(id) != FLEET_ID_LEN) return 0;
    memset(m, 0, sizeof(*m));
    memcpy(m->id, id, FLEET_ID_LEN);
    snprintf(m->host, sizeof(m->host), "%s", host);
    m->port = port;
    m->seat = seat;
    return 1;
}

static int send_parsed(int argc, char **argv, size_t *argvlen, backend_reply_fn *fn, void *ctx, int conn)
{
    return backend_send(F.store, conn, 0, argc, argv, argvlen, BACKEND_PARSED, fn, ctx);
}

static int send_mget(int conn, backend_reply_fn *fn, void *ctx)
{
    char *argv[FLEET_MAX_MEMBERS + 1];
    size_t len[FLEET_MAX_MEMBERS + 1];
    argv[0] = "MGET";
    len[0] = 4;
    for (int i = 0; i < FLEET_MAX_MEMBERS; i++) {
        argv[1 + i] = F.seat_keys[i];
        len[1 + i] = F.seat_key_lens[i];
    }
    return send_parsed(FLEET_MAX_MEMBERS + 1, argv, len, fn, ctx, conn);
}

/* What one poll learnt, filled by its replies in order. */
typedef struct poll_state {
    long long sent_ms;
    int joining;  /* sent SET NX for seat */
    int seat;
    int set_ok;   /* the SET answered OK */
    int set_done;
    int orphan;   /* the MGET was never sent: the SET's callback frees it */
    char id[FLEET_ID_LEN + 1];
} poll_state;

static void apply_seats(const redisReply *r)
{
    fleet_member ms[FLEET_MAX_MEMBERS];
    int n = 0;
    for (size_t i = 0; i < r->elements && i < FLEET_MAX_MEMBERS; i++)
        if (parse_seat(r->element[i], (int)i, &ms[n])) n++;
    set_view(ms, n);
}

static void poll_view_cb(void *ctx, const backend_reply *br)
{
    poll_state *p = ctx;
    F.polling = 0;
    const redisReply *r = br->parsed;
    if (br->error || !r || r->type != REDIS_REPLY_ARRAY || !p->set_done) {
        free(p);
        return;
    }
    if (strcmp(p->id, F.self_id)) { /* fenced meanwhile */
        free(p);
        return;
    }
    if (!p->set_ok) {
        free(p);
        return;
    }
    if (p->joining) {
        F.seat = p->seat;
        F.joins++;
        /* Every other member has seen this seat, or fenced, a lease later. */
        F.serve_from_ms = clock_ms() + F.lease_ms;
        log_notice("fleet %s: joined as %s (seat %d); serving from %lld ms on", F.name, F.self_id, p->seat, F.lease_ms);
    }
    F.fence_at_ms = p->sent_ms + F.lease_ms - F.margin_ms;
    apply_seats(r);
    if (F.self < 0) fence("its seat was not read back");
    free(p);
}

static void poll_set_cb(void *ctx, const backend_reply *br)
{
    poll_state *p = ctx;
    p->set_done = 1;
    p->set_ok = !br->error && br->parsed && br->parsed->type == REDIS_REPLY_STATUS;
    if (p->orphan) free(p);
}

/* Renews the seat (or takes a free one) and reads every seat, on one
 * connection so that the read follows the write. */
static void poll_send(int seat, int joining)
{
    int conn = backend_pick(F.store, 0);
    if (conn < 0) return;
    poll_state *p = calloc(1, sizeof(*p));
    if (!p) abort();
    p->sent_ms = clock_ms();
    p->joining = joining;
    p->seat = seat;
    memcpy(p->id, F.self_id, sizeof(p->id));
    char value[400], ttl[32];
    int vl = seat_value(value, sizeof(value));
    int tl = snprintf(ttl, sizeof(ttl), "%lld", F.lease_ms);
    /* A renewal is a plain SET: it puts back a seat a FLUSHALL dropped.
     * It is only sent while this member's lease holds (fence_at). */
    char *argv[6] = {"SET", F.seat_keys[seat], value, "PX", ttl, "NX"};
    size_t len[6] = {3, F.seat_key_lens[seat], (size_t)vl, 2, (size_t)tl, 2};
    if (send_parsed(joining ? 6 : 5, argv, len, poll_set_cb, p, conn) != 0) {
        free(p);
        return;
    }
    if (send_mget(conn, poll_view_cb, p) != 0) {
        p->orphan = 1;
        return;
    }
    F.polling = 1;
    F.poll_sent_ms = p->sent_ms;
}

static void free_seat_cb(void *ctx, const backend_reply *br)
{
    (void)ctx;
    F.polling = 0;
    const redisReply *r = br->parsed;
    if (br->error || !r || r->type != REDIS_REPLY_ARRAY || F.seat >= 0) return;
    int start = (int)(id_hash(F.self_id) % FLEET_MAX_MEMBERS);
    for (int k = 0; k < FLEET_MAX_MEMBERS && k < (int)r->elements; k++) {
        int i = (start + k) % FLEET_MAX_MEMBERS;
        if (r->element[i]->type == REDIS_REPLY_NIL) {
            poll_send(i, 1);
            return;
        }
    }
    log_warning("fleet %s: all %d seats are taken", F.name, FLEET_MAX_MEMBERS);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    long long now = clock_ms();
    if (F.polling && now - F.poll_sent_ms < F.lease_ms) return; /* one at a time */
    F.polling = 0;
    if (F.seat >= 0 && now >= F.fence_at_ms) fence("no poll succeeded within the lease");
    if (F.seat >= 0) {
        poll_send(F.seat, 0);
        return;
    }
    int conn = backend_pick(F.store, 0);
    if (conn < 0) return;
    if (send_mget(conn, free_seat_cb, NULL) == 0) {
        F.polling = 1;
        F.poll_sent_ms = now;
    }
}

int fleet_start(struct event_base *base, backend *store, const fleet_options *o, char *err, size_t errlen)
{
    if (!o->name || !o->name[0]) return 0;
    if (o->lease_ms < 300) {
        snprintf(err, errlen, "fleet-lease-ms must be at least 300");
        return -1;
    }
    F.base = base;
    F.store = store;
    snprintf(F.name, sizeof(F.name), "%s", o->name);
    snprintf(F.host, sizeof(F.host), "%s", o->announce_host);
    snprintf(F.credentials, sizeof(F.credentials), "%s", o->peer_credentials ? o->peer_credentials : "");
    F.port = o->announce_port;
    F.member_left = o->member_left;
    F.lease_ms = o->lease_ms;
    /* Clock rates differ a little, and memcached expires items on whole
     * seconds: a seat may vanish up to a second early there. */
    F.margin_ms = o->lease_ms / 4 + (backend_is_memcached(store) ? 1100 : 0);
    if (F.margin_ms >= F.lease_ms / 2 + F.lease_ms / 4) {
        snprintf(err, errlen, "fleet-lease-ms %lld is too short for this store (at least %lld)", o->lease_ms,
                 4 * (F.margin_ms - o->lease_ms / 4) + 1);
        return -1;
    }
    for (int i = 0; i < FLEET_MAX_MEMBERS; i++) {
        int n = snprintf(F.seat_keys[i], sizeof(F.seat_keys[i]), "evalproxy-fleet:{%s}:seat:%d", F.name, i);
        F.seat_key_lens[i] = (size_t)n;
    }
    new_id();
    F.on = 1;
    F.tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    long long every = F.lease_ms / 6 > 0 ? F.lease_ms / 6 : 1;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    event_add(F.tick, &tv);
    event_active(F.tick, EV_TIMEOUT, 0);
    return 0;
}

void fleet_stop(void)
{
    if (!F.on) return;
    if (F.tick) event_free(F.tick);
    F.tick = NULL;
    for (int i = 0; i < F.npeers; i++) backend_free(F.peers[i].b);
    F.npeers = 0;
    F.on = 0;
}

/* ---- peers ----------------------------------------------------------------- */

backend *fleet_peer(int member)
{
    const fleet_member *m = fleet_member_at(member);
    if (!m) return NULL;
    for (int i = 0; i < F.npeers; i++)
        if (!strcmp(F.peers[i].id, m->id)) return F.peers[i].b;
    if (F.npeers == FLEET_MAX_MEMBERS) {
        /* Members come and go: drop those no longer in the view. */
        int k = 0;
        for (int i = 0; i < F.npeers; i++) {
            int live = 0;
            for (int j = 0; j < F.nmembers; j++) live |= !strcmp(F.peers[i].id, F.members[j].id);
            if (live) F.peers[k++] = F.peers[i];
            else backend_free(F.peers[i].b);
        }
        F.npeers = k;
        if (k == FLEET_MAX_MEMBERS) return NULL;
    }
    char url[800], err[256];
    if (strchr(m->host, ':')) snprintf(url, sizeof(url), "redis://%s[%s]:%d", F.credentials, m->host, m->port);
    else snprintf(url, sizeof(url), "redis://%s%s:%d", F.credentials, m->host, m->port);
    backend *b = backend_create(F.base, url, 2, 16, NULL, err, sizeof(err));
    if (!b) {
        log_warning("fleet %s: member %s:%d: %s", F.name, m->host, m->port, err);
        return NULL;
    }
    memcpy(F.peers[F.npeers].id, m->id, sizeof(m->id));
    F.peers[F.npeers].b = b;
    F.npeers++;
    return b;
}

/* ---- runs' places ------------------------------------------------------------ */

backend *fleet_store(void) { return F.store; }
long long fleet_lease_ms(void) { return F.lease_ms; }
const char *fleet_name(void) { return F.name; }
struct event_base *fleet_base(void) { return F.base; }

void fleet_run_begin(fleet_run *r)
{
    r->place = -1;
    memcpy(r->id, F.self_id, sizeof(r->id));
    for (int i = 0; i < FLEET_RUN_PLACES; i++) {
        if (F.run_places[i / 8] & (1u << (i % 8))) continue;
        F.run_places[i / 8] |= (unsigned char)(1u << (i % 8));
        r->place = i;
        r->token = ++F.run_tokens;
        snprintf(r->tag, sizeof(r->tag), "%s:%d:%llu", r->id, i, r->token);
        return;
    }
    r->tag[0] = '\0';
}

void fleet_run_end(fleet_run *r)
{
    if (r->place < 0) return;
    /* A place of an old incarnation (fenced since) is that one's no more. */
    if (!strcmp(r->id, F.self_id)) F.run_places[r->place / 8] &= (unsigned char)~(1u << (r->place % 8));
    r->place = -1;
}

size_t fleet_run_record_key(const fleet_run *r, int n, char *buf, size_t len)
{
    int k = snprintf(buf, len, "evalproxy-fleet:{%s}:run:%s:%d:%d", F.name, r->id, r->place, n);
    return k < 0 ? 0 : (size_t)k;
}

int fleet_run_may_write(const fleet_run *r)
{
    return F.seat >= 0 && !strcmp(r->id, F.self_id) && clock_ms() < F.fence_at_ms;
}

int fleet_run_parse_tag(const char *tag, size_t len, fleet_run *r)
{
    char buf[sizeof(r->tag)];
    if (len >= sizeof(buf)) return -1;
    memcpy(buf, tag, len);
    buf[len] = '\0';
    char id[FLEET_ID_LEN + 8];
    int place;
    unsigned long long token;
    char end;
    if (len < FLEET_ID_LEN + 4 || buf[FLEET_ID_LEN] != ':') return -1;
    memcpy(id, buf, FLEET_ID_LEN);
    id[FLEET_ID_LEN] = '\0';
    if (sscanf(buf + FLEET_ID_LEN + 1, "%d:%llu%c", &place, &token, &end) != 2 || place < 0 ||
        place >= FLEET_RUN_PLACES)
        return -1;
    memcpy(r->id, id, sizeof(r->id));
    r->place = place;
    r->token = token;
    memcpy(r->tag, buf, len + 1);
    return 0;
}

/* ---- INFO ------------------------------------------------------------------ */

void fleet_info(struct evbuffer *out)
{
    long long now = clock_ms();
    int owned = 0, serving = 0;
    for (int s = 0; s < FLEET_SLOTS; s += RANGE_SLOTS) {
        int o = fleet_slot_owner(s);
        if (o >= 0 && o == F.self) owned += RANGE_SLOTS;
    }
    if (F.seat >= 0 && F.self >= 0 && now >= F.serve_from_ms && now < F.fence_at_ms) serving = owned;
    evbuffer_add_printf(out,
                        "fleet_enabled:%d\r\nfleet_name:%s\r\nfleet_myid:%s\r\nfleet_announce:%s:%d\r\n"
                        "fleet_state:%s\r\nfleet_seat:%d\r\nfleet_members:%d\r\nfleet_epoch:%llu\r\n"
                        "fleet_owned_slots:%d\r\nfleet_serving_slots:%d\r\nfleet_lease_ms:%lld\r\n"
                        "fleet_forwarded:%llu\r\nfleet_redirected:%llu\r\nfleet_joins:%llu\r\nfleet_fences:%llu\r\n",
                        F.on, F.name, F.self_id, F.host, F.port,
                        !F.on ? "off" : F.seat < 0 ? "joining" : now < F.serve_from_ms ? "waiting" : "serving",
                        F.seat, F.nmembers, F.epoch, owned, serving, F.lease_ms, F.forwarded, F.redirected, F.joins,
                        F.fences);
    for (int i = 0; i < F.nmembers; i++) {
        int slots = 0;
        for (int r = 0; r < RANGES; r++) slots += F.range_owner[r] == i ? RANGE_SLOTS : 0;
        evbuffer_add_printf(out, "fleet_member%d:id=%s,addr=%s:%d,slots=%d,self=%d\r\n", i, F.members[i].id,
                            F.members[i].host, F.members[i].port, slots, i == F.self);
    }
}
