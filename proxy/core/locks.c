#include "proxy/core/locks.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "fleet/fleet.h"
#include "proxy/core/fleet_locks.h"
#include "util/cluster_slot.h"
#include "util/clock.h"

typedef struct lock_unit lock_unit;
typedef struct lock_entry lock_entry;

struct lock_entry {
    lock_set *set;
    lock_unit *unit;
    uint8_t intent;  /* keyspace unit held as an intent by a keyed request */
    uint8_t granted;
    uint8_t extend;  /* an undeclared key a running script waits for */
    uint8_t cancelled; /* that wait was given up (lock_set_cancel_wait) */
    lock_entry *prev, *next; /* in the unit's holder or wait list */
};

struct lock_unit {
    lock_unit *hnext;
    uint64_t hash;
    int db; /* -1: the keyspace unit */
    unsigned refs;
    unsigned full[LOCK_MODES], intent[LOCK_MODES];   /* holders by mode */
    unsigned full_wait[LOCK_MODES], intent_wait;      /* waiters */
    lock_entry *holders;
    lock_entry *wait_head, *wait_tail;
    const lock_set *mark; /* dedupe while building a set */
    size_t len;
    char name[];
};

enum set_state { SET_NEW = 0, SET_WAITING, SET_GRANTED };

#define INLINE_ENTRIES 3
#define INLINE_KEYS 4

struct lock_set {
    int mode;
    int state;
    lock_granted_fn *fn;
    void *ctx;
    lock_abort_fn *abort_fn;
    unsigned is_script : 1, busy : 2, written : 1, has_keyspace : 1, has_intent : 1, notify_pending : 1;
    unsigned unchanged : 1; /* a plain write that changed nothing (lock_set_set_unchanged) */
    unsigned undoable : 1; /* its writes can be undone: it may be aborted and re-run after writing */
    unsigned long long age; /* lower: older; the youngest member of a cycle gives way */
    unsigned long long wait_start_us; /* when it began to wait (the metrics' lock wait times) */
    unsigned refused_by : 2; /* LOCK_BUSY: the busy kind of the holder */
    int n, cap;
    lock_entry inline_entries[INLINE_ENTRIES];
    lock_entry **more; /* entries beyond the inline ones, allocated one by one (stable addresses) */
    lock_entry *waiting_extend;
    lock_set *ready_prev, *ready_next;
    unsigned long visit; /* cycle search generation */
    lock_set *drain_next; /* waiting for the unlocked plain requests to end */
    unsigned draining : 1;
    /* The keys themselves (hashed), not their units: a writer's release
     * bumps the versions of exactly these for WATCH. */
    int nkeys, capkeys;
    uint64_t inline_keys[INLINE_KEYS];
    uint64_t *more_keys;
    /* A fleet: the units other members own, taken from them in the
     * members' order (see fleet_chain); local_only: a set a member takes
     * here for another one (FLEET LOCK). */
    struct fleet_chain *chain;
    unsigned local_only : 1, abandon : 1;
    const char *run_tag; /* the script run whose journal records cover its writes (lock_set_set_run) */
};

static int local_acquire(lock_set *ls, int refuse_if_busy);
static int chain_resume(lock_set *ls);
static void chain_free(lock_set *ls);
static int may_give_way(const struct lock_set *s);

/* compat[held][requested] */
static const unsigned char compat[LOCK_MODES][LOCK_MODES] = {
    /*            PR PW SRO SX */
    /* PR  */ {1, 1, 1, 0},
    /* PW  */ {1, 1, 0, 0},
    /* SRO */ {1, 0, 1, 0},
    /* SX  */ {0, 0, 0, 0},
};

static struct {
    lock_unit **buckets;
    size_t nbuckets, count;
    uint64_t seed;
    lock_unit *keyspace;
    lock_set *ready_head, *ready_tail;
    struct event *ready_ev;
    lock_stats stats;
    unsigned long visit_gen;
    lock_unit **work;
    size_t nwork, capwork;
    struct event_base *base;
} L;

/* Finished sets and small units are kept for reuse: a plain command takes
 * and releases locks on the hot path, which must not allocate when warm. */
#define POOL_MAX 4096
#define SMALL_UNIT 48
static lock_set *free_sets;
static unsigned free_sets_count;
static lock_unit *free_units;
static unsigned free_units_count;

/* Write versions for WATCH where the store cannot watch: each watched key
 * (by its seeded 64-bit hash, so two keys share a version with probability
 * 2^-64, and a shared version can only fail an EXEC, never miss a write)
 * counts the writers that released a set naming it; keyspace-wide writers
 * count for every key. Keys of one {hash tag} share a lock unit but not a
 * version. */
struct lock_watch {
    lock_watch *next;
    uint64_t hash;
    unsigned refs;
    uint64_t version;
};
static struct {
    lock_watch **buckets;
    size_t nbuckets, count;
} W;
static unsigned version_watchers; /* see lock_watch_begin */
static unsigned busy_sets[3];      /* by lock_busy_kind */

/* Plain requests may go without a set while no script or transaction set
 * exists: plain modes never conflict, so such a set could only have been
 * granted at once. A script or transaction set then first waits until every
 * request sent that way has been answered (locks_unlocked_end). */
static unsigned long unlocked_inflight;
static unsigned long nonplain_sets;
static lock_set *drain_head, *drain_tail;
static struct event *drain_ev;
static uint64_t keyspace_version; /* keyspace-wide writes released */

/* ---- unit table ---------------------------------------------------------------- */

static uint64_t hash_bytes(int db, const char *p, size_t len)
{
    /* FNV-1a with a per-process seed and a final mix: keys come from
     * clients, so the bucket of a key must not be predictable. */
    uint64_t h = 1469598103934665603ULL ^ L.seed ^ (uint64_t)(uint32_t)db * 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void lock_unit_name(const char *key, size_t len, const char **name, size_t *name_len)
{
    const char *open = len ? memchr(key, '{', len) : NULL;
    if (open) {
        size_t start = (size_t)(open - key) + 1;
        const char *close = memchr(key + start, '}', len - start);
        if (close && close > key + start) {
            *name = key + start;
            *name_len = (size_t)(close - (key + start));
            return;
        }
    }
    *name = key;
    *name_len = len;
}

static void table_grow(void)
{
    size_t n = L.nbuckets ? L.nbuckets * 2 : 1024;
    lock_unit **b = calloc(n, sizeof(*b));
    if (!b) abort();
    for (size_t i = 0; i < L.nbuckets; i++) {
        lock_unit *u = L.buckets[i];
        while (u) {
            lock_unit *next = u->hnext;
            size_t idx = u->hash & (n - 1);
            u->hnext = b[idx];
            b[idx] = u;
            u = next;
        }
    }
    free(L.buckets);
    L.buckets = b;
    L.nbuckets = n;
}

static lock_unit *unit_get(int db, const char *name, size_t len)
{
    if (!L.nbuckets) table_grow();
    uint64_t h = hash_bytes(db, name, len);
    size_t idx = h & (L.nbuckets - 1);
    for (lock_unit *u = L.buckets[idx]; u; u = u->hnext)
        if (u->hash == h && u->db == db && u->len == len && !memcmp(u->name, name, len)) return u;
    if (L.count >= L.nbuckets) {
        table_grow();
        idx = h & (L.nbuckets - 1);
    }
    lock_unit *u;
    if (len < SMALL_UNIT && free_units) {
        u = free_units;
        free_units = u->hnext;
        free_units_count--;
        memset(u, 0, sizeof(*u));
    } else {
        u = calloc(1, sizeof(*u) + (len < SMALL_UNIT ? SMALL_UNIT : len + 1));
    }
    if (!u) abort();
    u->hash = h;
    u->db = db;
    u->len = len;
    memcpy(u->name, name, len);
    u->hnext = L.buckets[idx];
    L.buckets[idx] = u;
    L.count++;
    return u;
}

static void unit_unref(lock_unit *u)
{
    if (--u->refs || u == L.keyspace) return;
    size_t idx = u->hash & (L.nbuckets - 1);
    lock_unit **pp = &L.buckets[idx];
    while (*pp != u) pp = &(*pp)->hnext;
    *pp = u->hnext;
    L.count--;
    if (u->len < SMALL_UNIT && free_units_count < POOL_MAX) {
        u->hnext = free_units;
        free_units = u;
        free_units_count++;
        return;
    }
    free(u);
}

/* ---- sets ---------------------------------------------------------------------- */

static lock_entry *entry_at(lock_set *ls, int i)
{
    return i < INLINE_ENTRIES ? &ls->inline_entries[i] : ls->more[i - INLINE_ENTRIES];
}

static lock_entry *entry_new(lock_set *ls, lock_unit *u, int intent)
{
    lock_entry *e;
    if (ls->n < INLINE_ENTRIES) {
        e = &ls->inline_entries[ls->n];
    } else {
        int k = ls->n - INLINE_ENTRIES;
        if (k == ls->cap) {
            ls->cap = ls->cap ? ls->cap * 2 : 8;
            ls->more = realloc(ls->more, sizeof(*ls->more) * (size_t)ls->cap);
            if (!ls->more) abort();
        }
        e = malloc(sizeof(*e));
        if (!e) abort();
        ls->more[k] = e;
    }
    ls->n++;
    memset(e, 0, sizeof(*e));
    e->set = ls;
    e->unit = u;
    e->intent = (uint8_t)intent;
    u->refs++;
    return e;
}

lock_set *lock_set_new(int mode, lock_granted_fn *fn, void *ctx)
{
    lock_set *ls = free_sets;
    if (ls) {
        free_sets = ls->ready_next;
        free_sets_count--;
        lock_entry **more = ls->more;
        int cap = ls->cap, capkeys = ls->capkeys;
        uint64_t *more_keys = ls->more_keys;
        memset(ls, 0, sizeof(*ls));
        ls->more = more;
        ls->cap = cap;
        ls->more_keys = more_keys;
        ls->capkeys = capkeys;
    } else {
        ls = calloc(1, sizeof(*ls));
    }
    if (!ls) abort();
    ls->mode = mode;
    ls->fn = fn;
    ls->ctx = ctx;
    if (mode >= LOCK_SCRIPT_RO) nonplain_sets++;
    return ls;
}

int locks_plain_free(void) { return nonplain_sets == 0 && version_watchers == 0; }
void locks_unlocked_begin(void) { unlocked_inflight++; }

void locks_unlocked_end(int wrote)
{
    /* No version to bump: a WATCH takes its versions only once every request
     * sent without a set has been answered (see lock_watch_begin). */
    (void)wrote;
    if (--unlocked_inflight == 0 && drain_head && drain_ev) event_active(drain_ev, 0, 0);
}

static void drain_unlink(lock_set *ls)
{
    lock_set **pp = &drain_head, *prev = NULL;
    while (*pp != ls) {
        prev = *pp;
        pp = &(*pp)->drain_next;
    }
    *pp = ls->drain_next;
    if (drain_tail == ls) drain_tail = prev;
    ls->drain_next = NULL;
    ls->draining = 0;
    L.stats.sets_waiting--;
}

/* How long granted sets waited, in the buckets of lock_wait_bounds_us. */
const unsigned long long lock_wait_bounds_us[LOCK_WAIT_BUCKETS] = {100, 1000, 10000, 100000, 1000000, 10000000};
static unsigned long long wait_counts[LOCK_WAIT_BUCKETS + 1];
static unsigned long long wait_sum_us;

static void wait_observe(unsigned long long us)
{
    int b = 0;
    while (b < LOCK_WAIT_BUCKETS && us > lock_wait_bounds_us[b]) b++;
    wait_counts[b]++;
    wait_sum_us += us;
}

void locks_wait_histogram(unsigned long long counts[LOCK_WAIT_BUCKETS + 1], unsigned long long *sum_us)
{
    memcpy(counts, wait_counts, sizeof(wait_counts));
    *sum_us = wait_sum_us;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* In arrival order; a callback may release or add sets. */
    while (drain_head && unlocked_inflight == 0) {
        lock_set *ls = drain_head;
        drain_unlink(ls);
        if (local_acquire(ls, 0) == LOCK_GRANTED) {
            if (ls->chain && chain_resume(ls)) continue;
            ls->fn(ls, ls->ctx);
        }
    }
}

static void set_note_key(lock_set *ls, uint64_t h)
{
    if (ls->nkeys < INLINE_KEYS) {
        ls->inline_keys[ls->nkeys++] = h;
        return;
    }
    int k = ls->nkeys - INLINE_KEYS;
    if (k == ls->capkeys) {
        ls->capkeys = ls->capkeys ? ls->capkeys * 2 : 8;
        ls->more_keys = realloc(ls->more_keys, sizeof(*ls->more_keys) * (size_t)ls->capkeys);
        if (!ls->more_keys) abort();
    }
    ls->more_keys[k] = h;
    ls->nkeys++;
}

void lock_set_add_key(lock_set *ls, int db, const char *key, size_t len)
{
    const char *name;
    size_t nlen;
    lock_unit_name(key, len, &name, &nlen);
    lock_unit *u = unit_get(db, name, nlen);
    /* A key without a hash tag is its unit's name: the same hash. */
    set_note_key(ls, nlen == len ? u->hash : hash_bytes(db, key, len));
    if (u->mark == ls) return; /* already in this set */
    /* Another set may have moved the mark: look, unless no set uses the unit. */
    for (int i = 0; u->refs && i < ls->n; i++)
        if (entry_at(ls, i)->unit == u) {
            u->mark = ls;
            return;
        }
    u->mark = ls;
    entry_new(ls, u, 0);
}

void lock_set_add_keyspace(lock_set *ls)
{
    if (ls->has_keyspace) return;
    ls->has_keyspace = 1;
    entry_new(ls, L.keyspace, 0);
}

static int entry_compatible(const lock_entry *e, int mode)
{
    const lock_unit *u = e->unit;
    for (int h = 0; h < LOCK_MODES; h++) {
        if (u->full[h] && !compat[h][mode]) return 0;
        if (!e->intent && u->intent[h] && !compat[h][mode]) return 0;
    }
    return 1;
}

static void holder_link(lock_entry *e)
{
    lock_unit *u = e->unit;
    e->granted = 1;
    e->prev = NULL;
    e->next = u->holders;
    if (u->holders) u->holders->prev = e;
    u->holders = e;
    if (e->intent) u->intent[e->set->mode]++;
    else u->full[e->set->mode]++;
}

static void holder_unlink(lock_entry *e)
{
    lock_unit *u = e->unit;
    if (e->prev) e->prev->next = e->next;
    else u->holders = e->next;
    if (e->next) e->next->prev = e->prev;
    if (e->intent) u->intent[e->set->mode]--;
    else u->full[e->set->mode]--;
    e->granted = 0;
}

static void wait_count(lock_entry *e, int d)
{
    if (e->intent) e->unit->intent_wait += (unsigned)d;
    else e->unit->full_wait[e->set->mode] += (unsigned)d;
}

static void wait_append(lock_entry *e)
{
    lock_unit *u = e->unit;
    wait_count(e, 1);
    e->next = NULL;
    e->prev = u->wait_tail;
    if (u->wait_tail) u->wait_tail->next = e;
    else u->wait_head = e;
    u->wait_tail = e;
}

/* Undeclared-key waits go ahead of ordinary waiters, behind earlier ones of their kind. */
static void wait_insert_extend(lock_entry *e)
{
    lock_unit *u = e->unit;
    lock_entry *after = NULL;
    wait_count(e, 1);
    for (lock_entry *w = u->wait_head; w && w->extend; w = w->next) after = w;
    e->prev = after;
    e->next = after ? after->next : u->wait_head;
    if (e->next) e->next->prev = e;
    else u->wait_tail = e;
    if (after) after->next = e;
    else u->wait_head = e;
}

static void wait_unlink(lock_entry *e)
{
    lock_unit *u = e->unit;
    wait_count(e, -1);
    if (e->prev) e->prev->next = e->next;
    else u->wait_head = e->next;
    if (e->next) e->next->prev = e->prev;
    else u->wait_tail = e->prev;
    e->prev = e->next = NULL;
}

static void ready_push(lock_set *ls)
{
    if (ls->notify_pending) return;
    ls->notify_pending = 1;
    ls->ready_next = NULL;
    ls->ready_prev = L.ready_tail;
    if (L.ready_tail) L.ready_tail->ready_next = ls;
    else L.ready_head = ls;
    L.ready_tail = ls;
    if (L.ready_ev) event_active(L.ready_ev, 0, 0);
}

static void ready_remove(lock_set *ls)
{
    if (!ls->notify_pending) return;
    ls->notify_pending = 0;
    if (ls->ready_prev) ls->ready_prev->ready_next = ls->ready_next;
    else L.ready_head = ls->ready_next;
    if (ls->ready_next) ls->ready_next->ready_prev = ls->ready_prev;
    else L.ready_tail = ls->ready_prev;
}

static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* Callbacks may grant and queue more sets: take them one at a time. */
    while (L.ready_head) {
        lock_set *ls = L.ready_head;
        ready_remove(ls);
        if (ls->wait_start_us) {
            wait_observe(clock_us() - ls->wait_start_us);
            ls->wait_start_us = 0;
        }
        if (ls->chain && chain_resume(ls)) continue;
        if (ls->fn) ls->fn(ls, ls->ctx);
    }
}

static void work_push(lock_unit *u)
{
    if (L.nwork == L.capwork) {
        L.capwork = L.capwork ? L.capwork * 2 : 64;
        L.work = realloc(L.work, sizeof(*L.work) * L.capwork);
        if (!L.work) abort();
    }
    L.work[L.nwork++] = u;
}

/* A keyed request's intent on the keyspace unit conflicts only with full
 * keyspace holders and with full requests queued ahead of it (`ahead`, by
 * mode). Intents never conflict with each other, and one compatible with every
 * full request ahead cannot delay them, so it is taken as soon as this holds,
 * even while its set still waits for keys: otherwise a request waiting for one
 * key would hold back requests for unrelated keys through the keyspace queue. */
static int intent_ok(const lock_unit *u, int mode, const unsigned *ahead)
{
    for (int h = 0; h < LOCK_MODES; h++)
        if ((u->full[h] || ahead[h]) && !compat[h][mode]) return 0;
    return 1;
}

/* A waiting set is granted when each of its entries heads its unit's queue
 * and is compatible with the holders (intents are taken by unit_process). */
static int set_try_grant(lock_set *ls)
{
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        if (e->granted) continue;
        if (e->intent || e->unit->wait_head != e || !entry_compatible(e, ls->mode)) return 0;
    }
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        if (e->granted) continue;
        wait_unlink(e);
        holder_link(e);
        work_push(e->unit); /* its queue has a new head */
    }
    ls->state = SET_GRANTED;
    L.stats.sets_waiting--;
    L.stats.sets_holding++;
    return 1;
}

static int grant_head(lock_entry *head)
{
    if (head->extend) {
        if (!entry_compatible(head, head->set->mode)) return 0;
        wait_unlink(head);
        holder_link(head);
        head->set->waiting_extend = NULL;
        ready_push(head->set);
        return 1;
    }
    if (!set_try_grant(head->set)) return 0;
    ready_push(head->set);
    return 1;
}

/* Grants what the queue of u allows now: full entries strictly from the head,
 * intents (keyspace unit only) wherever intent_ok holds. */
static void unit_process(lock_unit *u)
{
    unsigned ahead[LOCK_MODES] = {0};
    unsigned intents_kept = 0;
    lock_entry *w = u->wait_head;
    while (w) {
        lock_entry *next = w->next;
        if (w->intent) {
            if (intent_ok(u, w->set->mode, ahead)) {
                wait_unlink(w);
                holder_link(w);
                if (set_try_grant(w->set)) ready_push(w->set);
            } else {
                intents_kept++;
            }
        } else if (w == u->wait_head && grant_head(w)) {
            /* The holders changed: start again from the new head. */
            memset(ahead, 0, sizeof(ahead));
            intents_kept = 0;
            next = u->wait_head;
        } else {
            ahead[w->set->mode]++;
            if (intents_kept == u->intent_wait) break; /* no intent behind that could pass */
        }
        w = next;
    }
}

static void process_work(void)
{
    while (L.nwork) unit_process(L.work[--L.nwork]);
}

/* The busy kind of a holder e's set would wait for, or 0. */
static int conflicting_busy_holder(const lock_entry *e, int mode)
{
    for (const lock_entry *h = e->unit->holders; h; h = h->next) {
        if (!h->set->busy) continue;
        if (h->intent && e->intent) continue;
        if (!compat[h->set->mode][mode]) return h->set->busy;
    }
    return 0;
}

static int local_acquire(lock_set *ls, int refuse_if_busy)
{
    if (ls->mode >= LOCK_SCRIPT_RO && unlocked_inflight) {
        ls->draining = 1;
        ls->drain_next = NULL;
        if (drain_tail) drain_tail->drain_next = ls;
        else drain_head = ls;
        drain_tail = ls;
        L.stats.sets_waiting++;
        return LOCK_WAITING;
    }
    if (!ls->has_keyspace && !ls->has_intent) { /* once: acquire may be retried after LOCK_BUSY */
        entry_new(ls, L.keyspace, 1);
        ls->has_intent = 1;
    }
    int grantable = 1;
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        int ok = e->intent ? intent_ok(e->unit, ls->mode, e->unit->full_wait)
                           : !e->unit->wait_head && entry_compatible(e, ls->mode);
        if (!ok) {
            grantable = 0;
            int busy = refuse_if_busy ? conflicting_busy_holder(e, ls->mode) : 0;
            if (busy) {
                L.stats.busy_refusals++;
                ls->refused_by = (unsigned)busy;
                return LOCK_BUSY;
            }
        }
    }
    if (grantable) {
        for (int i = 0; i < ls->n; i++) holder_link(entry_at(ls, i));
        ls->state = SET_GRANTED;
        L.stats.sets_holding++;
        L.stats.granted_immediately++;
        return LOCK_GRANTED;
    }
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        if (e->intent && intent_ok(e->unit, ls->mode, e->unit->full_wait)) holder_link(e);
        else wait_append(e);
    }
    ls->state = SET_WAITING;
    L.stats.sets_waiting++;
    L.stats.waited++;
    ls->wait_start_us = clock_us();
    return LOCK_WAITING;
}

/* ---- a fleet: units other members own ------------------------------------------ */

/* A set's units are taken member by member in the members' order (their
 * ids sorted): here when this member's turn comes (every unit is entered
 * here too, which costs nothing and keeps this member's own queue order),
 * elsewhere with FLEET LOCK. One global order means declared sets never wait
 * for each other in a circle across members. Undeclared keys owned
 * elsewhere are asked for one by one; a wait that lasts is taken for a
 * deadlock and the script gives way (re-run with its keys declared) when it
 * may. */
#define CHAIN_RETRY_MS 20
#define EXTEND_PATIENCE_MS 50

typedef struct fleet_chain fleet_chain;

typedef struct chain_step {
    fleet_chain *ch;
    int member;          /* index in the view when built */
    int local;
    int taken;           /* local: acquire called */
    int granted;         /* remote: FLEET LOCK answered OK */
    int keyspace;
    remote_lock *rl;
    int nunits, capunits;
    lock_unit **units;
} chain_step;

struct fleet_chain {
    lock_set *ls;
    int n, next, done, refuse_if_busy;
    int restart; /* an empty chain waiting to start the set again */
    int failed;  /* a member could not be asked: start again */
    unsigned long long epoch; /* the view its steps were built from */
    chain_step steps[FLEET_MAX_MEMBERS];
    remote_lock **extends; /* undeclared keys taken at their owners */
    int nextends, capextends;
    remote_lock *extend_wait;
    int extend_after_local; /* the local part of an undeclared key first */
    int extend_retry;       /* its owner is asked again when the timer fires */
    int extend_gave_way;    /* the set was asked to give way for it once */
    int extend_db;
    char *extend_name;
    size_t extend_len;
    struct event *timer;    /* a retry, or an undeclared wait's patience */
};

static void chain_step_add(chain_step *st, lock_unit *u)
{
    if (st->nunits == st->capunits) {
        st->capunits = st->capunits ? st->capunits * 2 : 4;
        st->units = realloc(st->units, sizeof(*st->units) * (size_t)st->capunits);
        if (!st->units) abort();
    }
    st->units[st->nunits++] = u;
}

static int unit_owner(const lock_unit *u)
{
    return fleet_slot_owner((int)cluster_key_slot(u->name, u->len));
}

/* The steps of ls, or NULL when every unit is this member's. */
static fleet_chain *chain_build(lock_set *ls)
{
    int self = fleet_self(), members = fleet_member_count();
    if (self < 0 || members < 2) return NULL;
    fleet_chain *ch = NULL;
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        if (e->intent) continue;
        for (int m = 0; m < members; m++) {
            int owner = e->unit == L.keyspace ? m : unit_owner(e->unit);
            if (e->unit != L.keyspace && m > 0) break;
            if (owner < 0 || owner == self || owner >= members) continue;
            if (!ch) {
                ch = calloc(1, sizeof(*ch));
                if (!ch) abort();
                ch->ls = ls;
                ch->n = members;
                ch->epoch = fleet_epoch();
                for (int k = 0; k < members; k++) {
                    ch->steps[k].ch = ch;
                    ch->steps[k].member = k;
                    ch->steps[k].local = k == self;
                }
            }
            if (e->unit == L.keyspace) ch->steps[owner].keyspace = 1;
            else chain_step_add(&ch->steps[owner], e->unit);
        }
    }
    return ch;
}

static void chain_remote_cb(void *ctx, int ok);
static void local_unacquire(lock_set *ls);
static int own_units_served(lock_set *ls);
static int start_again_shortly(lock_set *ls);
static void chain_timer_cb(evutil_socket_t fd, short what, void *arg);

static void chain_timer(fleet_chain *ch, long long ms)
{
    if (!ch->timer) ch->timer = evtimer_new(L.base, chain_timer_cb, ch);
    if (!ch->timer) abort();
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ch->timer, &tv);
}

static int chain_send(fleet_chain *ch, chain_step *st)
{
    st->rl = remote_lock_new(st->member, ch->ls->mode, st->keyspace, ch->ls->run_tag);
    if (!st->rl) return -1;
    for (int i = 0; i < st->nunits; i++)
        remote_lock_add(st->rl, st->units[i]->db, st->units[i]->name, st->units[i]->len);
    if (remote_lock_send(st->rl, chain_remote_cb, st) != 0) {
        remote_lock_free(st->rl);
        st->rl = NULL;
        return -1;
    }
    return 0;
}

/* Takes the steps it can now: LOCK_GRANTED when all are held, LOCK_WAITING,
 * or LOCK_BUSY (only before anything is held). */
static int chain_run(fleet_chain *ch)
{
    lock_set *ls = ch->ls;
    while (ch->next < ch->n) {
        chain_step *st = &ch->steps[ch->next];
        if (st->local) {
            if (!st->taken) {
                st->taken = 1;
                int rc = local_acquire(ls, ch->next == 0 ? ch->refuse_if_busy : 0);
                if (rc == LOCK_BUSY) {
                    st->taken = 0;
                    return LOCK_BUSY;
                }
                if (rc == LOCK_WAITING) return LOCK_WAITING;
            } else if (ls->state != SET_GRANTED) {
                return LOCK_WAITING;
            }
        } else if (st->nunits || st->keyspace) {
            /* Members are steps by their place in the view it was built
             * from: once the view changes, the set starts again. */
            if (!st->rl && (fleet_epoch() != ch->epoch || chain_send(ch, st) != 0)) {
                ch->failed = 1; /* started again from the view shortly */
                chain_timer(ch, CHAIN_RETRY_MS);
                return LOCK_WAITING;
            }
            if (!st->granted) return LOCK_WAITING;
        }
        ch->next++;
    }
    ch->done = 1;
    return LOCK_GRANTED;
}

static void chain_remote_cb(void *ctx, int ok)
{
    chain_step *st = ctx;
    fleet_chain *ch = st->ch;
    if (ok) {
        st->granted = 1;
        if (chain_run(ch) == LOCK_GRANTED) ready_push(ch->ls); /* told from the event loop, as every grant is */
        return;
    }
    /* The member is gone or refused. Its units have other owners by now
     * (or soon): everything taken is given back and the set starts again
     * shortly from the new view, so the members' order still holds. */
    lock_set *ls = ch->ls;
    int local_taken = 0;
    for (int i = 0; i < ch->n; i++) local_taken |= ch->steps[i].local && ch->steps[i].taken;
    if (local_taken) local_unacquire(ls);
    chain_free(ls);
    start_again_shortly(ls);
}

/* Gives back what the set holds or waits for here, keeping its entries. */
static void local_unacquire(lock_set *ls)
{
    if (ls->draining) drain_unlink(ls);
    ready_remove(ls);
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        if (e->granted) holder_unlink(e);
        else if (!e->cancelled && ls->state != SET_NEW) wait_unlink(e);
        work_push(e->unit);
    }
    if (ls->state == SET_GRANTED) L.stats.sets_holding--;
    else if (ls->state == SET_WAITING) L.stats.sets_waiting--;
    ls->state = SET_NEW;
    process_work();
}

static void extend_remote_cb(void *ctx, int ok);
static int extend_ask(lock_set *ls);

static void chain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fleet_chain *ch = arg;
    lock_set *ls = ch->ls;
    if (ch->restart || ch->failed) {
        int local_taken = 0;
        for (int i = 0; i < ch->n; i++) local_taken |= ch->steps[i].local && ch->steps[i].taken;
        if (local_taken) local_unacquire(ls);
        if (!own_units_served(ls)) { /* wait again, holding nothing */
            chain_free(ls);
            start_again_shortly(ls);
            return;
        }
        chain_free(ls);
        ls->chain = chain_build(ls);
        int rc = ls->chain ? chain_run(ls->chain) : local_acquire(ls, 0);
        if (rc == LOCK_GRANTED) ready_push(ls);
        return;
    }
    if (ch->extend_retry) {
        ch->extend_retry = 0;
        /* A member died or the view moved: what this set holds from that
         * member is void once another takes its slots. A script that may
         * gives way and runs again with its keys declared, holding nothing
         * while it waits; one that may not asks again. */
        if (!ch->extend_gave_way && may_give_way(ls)) {
            ch->extend_gave_way = 1;
            /* Asked again should it not give way after all (a script
             * inside EXEC); giving way drops the chain and its timer. */
            ch->extend_retry = 1;
            chain_timer(ch, CHAIN_RETRY_MS);
            L.stats.aborts++;
            ls->abort_fn(ls, ls->ctx);
            return;
        }
        if (!extend_ask(ls)) ready_push(ls); /* told from the event loop, as every grant is */
        return;
    }
    if (ch->extend_wait || ls->waiting_extend) {
        /* An undeclared key has not been granted for a while (here or at its
         * owner): take it for a deadlock through other members, and give way
         * if this script may. */
        if (may_give_way(ls)) {
            L.stats.deadlocks++;
            L.stats.aborts++;
            ls->abort_fn(ls, ls->ctx);
        }
        return;
    }
    if (ch->done) return;
    if (chain_run(ch) == LOCK_GRANTED) ready_push(ch->ls); /* told from the event loop, as every grant is */
}

/* The lock of an undeclared key (its local part held) at its owner in
 * the view now: 0 when there is nothing to wait for (the key's slot is
 * this member's and served), 1 when the owner is asked or is to be asked
 * again shortly. A script never goes on without it: with the owner dead,
 * the key may hold what that member's run left half done, which the
 * member taking the slot puts back over anything written meanwhile. */
static int extend_ask(lock_set *ls)
{
    fleet_chain *ch = ls->chain;
    int slot = (int)cluster_key_slot(ch->extend_name, ch->extend_len);
    int owner = fleet_slot_owner(slot);
    if (owner >= 0 && owner == fleet_self()) {
        if (fleet_slot_route(slot) == FLEET_SERVE) return 0;
    } else if (owner >= 0) {
        ch->extend_wait = remote_lock_new(owner, ls->mode, 0, ls->run_tag);
        if (ch->extend_wait) {
            remote_lock_add(ch->extend_wait, ch->extend_db, ch->extend_name, ch->extend_len);
            if (remote_lock_send(ch->extend_wait, extend_remote_cb, ch) == 0) {
                chain_timer(ch, EXTEND_PATIENCE_MS);
                return 1;
            }
            remote_lock_free(ch->extend_wait);
            ch->extend_wait = NULL;
        }
    }
    ch->extend_retry = 1;
    chain_timer(ch, CHAIN_RETRY_MS);
    return 1;
}

/* A grant of the local part (or of an undeclared key's local part) came
 * through the ready list: 1 when the chain takes it from there, 0 when the
 * set's owner is to be told now. */
static int chain_resume(lock_set *ls)
{
    fleet_chain *ch = ls->chain;
    if (ch->restart || ch->failed) return 1;
    if (ch->extend_after_local) {
        ch->extend_after_local = 0;
        return extend_ask(ls);
    }
    if (ch->done) return 0;
    return chain_run(ch) != LOCK_GRANTED;
}

static void extend_remote_cb(void *ctx, int ok)
{
    fleet_chain *ch = ctx;
    remote_lock *rl = ch->extend_wait;
    ch->extend_wait = NULL;
    if (ch->timer) evtimer_del(ch->timer);
    if (!ok) {
        /* The owner died or refused: asked again from the view shortly. */
        remote_lock_free(rl);
        ch->extend_retry = 1;
        chain_timer(ch, CHAIN_RETRY_MS);
        return;
    }
    if (ch->nextends == ch->capextends) {
        ch->capextends = ch->capextends ? ch->capextends * 2 : 4;
        ch->extends = realloc(ch->extends, sizeof(*ch->extends) * (size_t)ch->capextends);
        if (!ch->extends) abort();
    }
    ch->extends[ch->nextends++] = rl;
    ready_push(ch->ls);
}

static void chain_free(lock_set *ls)
{
    fleet_chain *ch = ls->chain;
    ls->chain = NULL;
    void (*let_go)(remote_lock *) = ls->abandon ? remote_lock_drop : remote_lock_free;
    for (int i = 0; i < ch->n; i++) {
        let_go(ch->steps[i].rl);
        free(ch->steps[i].units);
    }
    for (int i = 0; i < ch->nextends; i++) let_go(ch->extends[i]);
    free(ch->extends);
    remote_lock_free(ch->extend_wait);
    free(ch->extend_name);
    if (ch->timer) event_free(ch->timer);
    free(ch);
}

/* Whether this member serves every slot of the set's units it owns: a range
 * it takes over from a member that died is undone before anyone writes
 * there (a set waits, as FLEET LOCK does at the owner). */
static int own_units_served(lock_set *ls)
{
    int self = fleet_self();
    if (self < 0) return 1; /* not in a view: nothing is served, the chain tells */
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        if (e->unit == L.keyspace || e->intent) continue;
        int slot = (int)cluster_key_slot(e->unit->name, e->unit->len);
        if (fleet_slot_owner(slot) == self && fleet_slot_route(slot) == FLEET_WAIT) return 0;
    }
    return 1;
}

/* An empty chain that starts the set again from the view shortly (a member
 * failed, or its own slots are not served yet). */
static int start_again_shortly(lock_set *ls)
{
    fleet_chain *ch = calloc(1, sizeof(*ch));
    if (!ch) abort();
    ch->ls = ls;
    ch->restart = 1;
    ls->chain = ch;
    chain_timer(ch, CHAIN_RETRY_MS);
    return LOCK_WAITING;
}

int lock_set_acquire(lock_set *ls, int refuse_if_busy)
{
    if (!fleet_enabled() || ls->local_only || ls->state != SET_NEW || ls->draining) return local_acquire(ls, refuse_if_busy);
    if (!ls->chain && !own_units_served(ls)) return start_again_shortly(ls);
    if (!ls->chain) {
        ls->chain = chain_build(ls);
        if (!ls->chain) return local_acquire(ls, refuse_if_busy);
    }
    ls->chain->refuse_if_busy = refuse_if_busy;
    int rc = chain_run(ls->chain);
    if (rc == LOCK_BUSY) {
        chain_free(ls);
        return LOCK_BUSY;
    }
    return rc; /* while it waits at a member before this one's turn, it stays SET_NEW here */
}

void lock_set_local_only(lock_set *ls) { ls->local_only = 1; }
int lock_set_granted(const lock_set *ls) { return ls->state == SET_GRANTED; }
void lock_set_abandon(lock_set *ls) { ls->abandon = 1; }
void lock_set_set_run(lock_set *ls, const char *tag) { ls->run_tag = tag && tag[0] ? tag : NULL; }

void lock_set_release_all(lock_set *ls)
{
    if (ls->chain) chain_free(ls);
    if (ls->draining) drain_unlink(ls); /* nothing enqueued on its units yet */
    ready_remove(ls);
    int wrote = ls->state == SET_GRANTED &&
                ((ls->mode == LOCK_PLAIN_WRITE && !ls->unchanged) || (ls->mode == LOCK_SCRIPT_EXCL && ls->written));
    if (wrote && W.count)
        for (int i = 0; i < ls->nkeys; i++) {
            uint64_t h = i < INLINE_KEYS ? ls->inline_keys[i] : ls->more_keys[i - INLINE_KEYS];
            for (lock_watch *w = W.buckets[h & (W.nbuckets - 1)]; w; w = w->next)
                if (w->hash == h) w->version++;
        }
    ls->nkeys = 0;
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at(ls, i);
        lock_unit *u = e->unit;
        if (wrote && e->granted && !e->intent && u == L.keyspace) keyspace_version++;
        if (e->granted) holder_unlink(e);
        else if (!e->cancelled && (ls->state != SET_NEW || e->extend)) wait_unlink(e);
        if (u->mark == ls) u->mark = NULL;
        if (u->refs > 1 || u == L.keyspace) work_push(u);
        unit_unref(u);
        if (i >= INLINE_ENTRIES) free(ls->more[i - INLINE_ENTRIES]);
    }
    if (ls->state == SET_GRANTED) L.stats.sets_holding--;
    else if (ls->state == SET_WAITING) L.stats.sets_waiting--;
    ls->n = 0;
    ls->state = SET_NEW;
    ls->has_keyspace = 0;
    ls->has_intent = 0;
    ls->waiting_extend = NULL;
    process_work();
}

void lock_set_release(lock_set *ls)
{
    lock_set_set_busy(ls, 0);
    lock_set_release_all(ls);
    if (ls->mode >= LOCK_SCRIPT_RO) nonplain_sets--;
    if (free_sets_count < POOL_MAX && ls->cap <= 64 && ls->capkeys <= 64) {
        ls->ready_next = free_sets;
        free_sets = ls;
        free_sets_count++;
        return;
    }
    free(ls->more);
    free(ls->more_keys);
    free(ls);
}

void lock_set_retarget(lock_set *ls, lock_granted_fn *fn, void *ctx)
{
    ls->fn = fn;
    ls->ctx = ctx;
}

void lock_set_mark_script(lock_set *ls, lock_abort_fn *abort_fn)
{
    ls->is_script = 1;
    ls->abort_fn = abort_fn;
}

void lock_set_set_busy(lock_set *ls, int busy)
{
    if (busy != LOCK_BUSY_EVAL && busy != LOCK_BUSY_FUNCTION) busy = busy ? LOCK_BUSY_EVAL : 0;
    if (ls->busy) busy_sets[ls->busy]--;
    if (busy) busy_sets[busy]++;
    ls->busy = (unsigned)busy;
}

int lock_set_busy_kind(const lock_set *ls) { return ls->refused_by ? (int)ls->refused_by : LOCK_BUSY_EVAL; }

int locks_busy_kind(void)
{
    return busy_sets[LOCK_BUSY_EVAL] ? LOCK_BUSY_EVAL : busy_sets[LOCK_BUSY_FUNCTION] ? LOCK_BUSY_FUNCTION : 0;
}
void lock_set_set_written(lock_set *ls, int written) { ls->written = written != 0; }
void lock_set_set_unchanged(lock_set *ls) { ls->unchanged = 1; }
void lock_set_set_undoable(lock_set *ls, int undoable) { ls->undoable = undoable != 0; }
void lock_set_set_age(lock_set *ls, unsigned long long age) { ls->age = age; }

void lock_set_cancel_wait(lock_set *ls)
{
    fleet_chain *ch = ls->chain;
    if (ch && (ch->extend_wait || ch->extend_after_local || ch->extend_retry)) {
        ch->extend_after_local = 0;
        ch->extend_retry = 0;
        remote_lock_free(ch->extend_wait);
        ch->extend_wait = NULL;
        if (ch->timer) evtimer_del(ch->timer);
    }
    lock_entry *e = ls->waiting_extend;
    if (!e) return;
    wait_unlink(e);
    e->extend = 0;
    e->cancelled = 1;
    ls->waiting_extend = NULL;
    work_push(e->unit); /* its queue may have a new head */
    process_work();
}

/* May this set be aborted (and its script re-run) to break a cycle? */
static int may_give_way(const lock_set *s) { return s->abort_fn && (!s->written || s->undoable); }
int lock_set_unit_count(const lock_set *ls) { return ls->n; }

int lock_set_holds(const lock_set *ls, int db, const char *key, size_t len)
{
    const char *name;
    size_t nlen;
    lock_unit_name(key, len, &name, &nlen);
    for (int i = 0; i < ls->n; i++) {
        lock_entry *e = entry_at((lock_set *)ls, i);
        if (e->granted && !e->intent && e->unit->db == db && e->unit->len == nlen &&
            !memcmp(e->unit->name, name, nlen))
            return 1;
    }
    return 0;
}

/* Depth-first search over "waits for" edges from an entry of mode `mode`
 * waiting on unit u (self, or NULL for one about to be queued behind every
 * extend waiter): does it lead back to `target`? Only scripts waiting for an
 * undeclared key wait while holding, so the graph is small. *victim gets a
 * member that has not written, if any. */
static int cycle_from(lock_unit *u, int mode, const lock_entry *self, lock_set *target, lock_set **victim,
                      int depth)
{
    if (depth > 64) return 1; /* pathological: treat as a cycle rather than recurse forever */
    for (int pass = 0; pass < 2; pass++) {
        lock_entry *list = pass == 0 ? u->holders : u->wait_head;
        for (lock_entry *h = list; h; h = h->next) {
            if (pass == 1 && (!h->extend || h == self)) break; /* only those ahead block it */
            lock_set *hs = h->set;
            if (pass == 0 && compat[hs->mode][mode]) continue;
            if (hs == target) return 1;
            if (hs->visit == L.visit_gen) continue;
            hs->visit = L.visit_gen;
            if (!hs->waiting_extend) continue;
            if (cycle_from(hs->waiting_extend->unit, hs->mode, hs->waiting_extend, target, victim, depth + 1)) {
                if (may_give_way(hs) && (!*victim || hs->age > (*victim)->age)) *victim = hs;
                return 1;
            }
        }
    }
    return 0;
}

static int local_extend(lock_set *ls, int db, const char *key, size_t len)
{
    set_note_key(ls, hash_bytes(db, key, len));
    if (lock_set_holds(ls, db, key, len)) return LOCK_GRANTED;
    for (int attempt = 0; attempt < 16; attempt++) {
        const char *name;
        size_t nlen;
        lock_unit_name(key, len, &name, &nlen);
        lock_unit *u = unit_get(db, name, nlen);
        int extend_waiters = u->wait_head && u->wait_head->extend;
        lock_entry probe = {.unit = u};
        if (!extend_waiters && entry_compatible(&probe, ls->mode)) {
            holder_link(entry_new(ls, u, 0));
            return LOCK_GRANTED;
        }
        L.visit_gen++;
        lock_set *victim = NULL;
        u->refs++; /* keep u while a victim releases */
        int cycle = cycle_from(u, ls->mode, NULL, ls, &victim, 0);
        if (!cycle) {
            lock_entry *e = entry_new(ls, u, 0);
            u->refs--;
            e->extend = 1;
            wait_insert_extend(e);
            ls->waiting_extend = e;
            return LOCK_WAITING;
        }
        L.stats.deadlocks++;
        /* The youngest member that can give way does (the requester itself
         * when it is that one, or as young as any), so the oldest script of
         * a cycle always goes on and one re-run again and again only ever
         * grows older. */
        if (!victim || (may_give_way(ls) && ls->age >= victim->age)) {
            unit_unref(u);
            return LOCK_DEADLOCK;
        }
        /* Another member gives way: it stops waiting at once (which breaks
         * the cycle) and releases its units once its writes are undone. */
        L.stats.aborts++;
        victim->abort_fn(victim, victim->ctx);
        unit_unref(u);
    }
    return LOCK_DEADLOCK;
}

int lock_set_extend(lock_set *ls, int db, const char *key, size_t len)
{
    if (!fleet_enabled() || ls->local_only || lock_set_holds(ls, db, key, len)) return local_extend(ls, db, key, len);
    const char *name;
    size_t nlen;
    lock_unit_name(key, len, &name, &nlen);
    int slot = (int)cluster_key_slot(name, nlen);
    /* This member's and served (or no view: as a declared set, see
     * own_units_served): nothing to ask. Else its owner grants it, or this
     * member once what a dead member left there is put back. */
    int mine = fleet_self() < 0 || (fleet_slot_owner(slot) == fleet_self() && fleet_slot_route(slot) == FLEET_SERVE);
    if (mine && fleet_member_count() < 2) return local_extend(ls, db, key, len);
    int rc = local_extend(ls, db, key, len);
    if (rc == LOCK_DEADLOCK || (mine && rc == LOCK_GRANTED)) return rc;
    fleet_chain *ch = ls->chain;
    if (!ch) {
        ch = ls->chain = calloc(1, sizeof(*ch));
        if (!ch) abort();
        ch->ls = ls;
        ch->done = 1;
    }
    if (!mine) {
        ch->extend_db = db;
        free(ch->extend_name);
        ch->extend_name = malloc(nlen ? nlen : 1);
        if (!ch->extend_name) abort();
        memcpy(ch->extend_name, name, nlen);
        ch->extend_len = nlen;
        ch->extend_after_local = 1;
    }
    if (rc == LOCK_WAITING) {
        /* A wait here may be part of a circle through other members, which
         * this member cannot see: one that lasts gives way (see chain_timer_cb). */
        chain_timer(ch, EXTEND_PATIENCE_MS);
        return LOCK_WAITING; /* the owner is asked once this member grants it */
    }
    return chain_resume(ls) ? LOCK_WAITING : LOCK_GRANTED;
}

lock_watch *lock_watch_begin(int db, const char *key, size_t len)
{
    uint64_t h = hash_bytes(db, key, len);
    version_watchers++;
    if (!W.nbuckets) {
        W.nbuckets = 256;
        W.buckets = calloc(W.nbuckets, sizeof(*W.buckets));
        if (!W.buckets) abort();
    }
    for (lock_watch *w = W.buckets[h & (W.nbuckets - 1)]; w; w = w->next)
        if (w->hash == h) {
            w->refs++;
            return w;
        }
    if (W.count >= W.nbuckets) {
        size_t n = W.nbuckets * 2;
        lock_watch **b = calloc(n, sizeof(*b));
        if (!b) abort();
        for (size_t i = 0; i < W.nbuckets; i++)
            while (W.buckets[i]) {
                lock_watch *w = W.buckets[i];
                W.buckets[i] = w->next;
                w->next = b[w->hash & (n - 1)];
                b[w->hash & (n - 1)] = w;
            }
        free(W.buckets);
        W.buckets = b;
        W.nbuckets = n;
    }
    lock_watch *w = calloc(1, sizeof(*w));
    if (!w) abort();
    w->hash = h;
    w->refs = 1;
    w->next = W.buckets[h & (W.nbuckets - 1)];
    W.buckets[h & (W.nbuckets - 1)] = w;
    W.count++;
    return w;
}

uint64_t lock_watch_version(const lock_watch *w) { return w->version + keyspace_version; }
uint64_t lock_watch_key_version(const lock_watch *w) { return w->version; }

void lock_watch_end(lock_watch *w)
{
    version_watchers--;
    if (--w->refs) return;
    lock_watch **pp = &W.buckets[w->hash & (W.nbuckets - 1)];
    while (*pp != w) pp = &(*pp)->next;
    *pp = w->next;
    W.count--;
    free(w);
}

void locks_get_stats(lock_stats *st)
{
    *st = L.stats;
    st->units = L.count;
}

void locks_init(struct event_base *base)
{
    if (RAND_bytes((unsigned char *)&L.seed, sizeof(L.seed)) != 1) L.seed = (uint64_t)(uintptr_t)&L;
    L.keyspace = unit_get(-1, "", 0);
    L.keyspace->refs = 1;
    L.base = base;
    if (base) L.ready_ev = event_new(base, -1, 0, ready_cb, NULL);
    if (base) drain_ev = event_new(base, -1, 0, drain_cb, NULL);
}

void locks_shutdown(void)
{
    if (L.ready_ev) event_free(L.ready_ev);
    if (drain_ev) event_free(drain_ev);
    drain_ev = NULL;
    drain_head = drain_tail = NULL;
    unlocked_inflight = nonplain_sets = 0;
    for (size_t i = 0; i < L.nbuckets; i++) {
        lock_unit *u = L.buckets[i];
        while (u) {
            lock_unit *next = u->hnext;
            free(u);
            u = next;
        }
    }
    free(L.buckets);
    free(L.work);
    memset(&L, 0, sizeof(L));
    memset(busy_sets, 0, sizeof(busy_sets));
    version_watchers = 0;
    for (size_t i = 0; i < W.nbuckets; i++)
        while (W.buckets[i]) {
            lock_watch *w = W.buckets[i];
            W.buckets[i] = w->next;
            free(w);
        }
    free(W.buckets);
    memset(&W, 0, sizeof(W));
    while (free_sets) {
        lock_set *ls = free_sets;
        free_sets = ls->ready_next;
        free(ls->more);
        free(ls->more_keys);
        free(ls);
    }
    free_sets_count = 0;
    while (free_units) {
        lock_unit *u = free_units;
        free_units = u->hnext;
        free(u);
    }
    free_units_count = 0;
}
