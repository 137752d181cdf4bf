/* Redis commands on memcached: each handler is a small state machine over
 * meta replies (tag MC_START begins it) that builds Redis 7.0's exact reply. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>

#include "backends/memcached_int.h"
#include "util/glob.h"

#define ERR_NOT_INT "ERR value is not an integer or out of range"
#define ERR_SYNTAX "ERR syntax error"
#define ERR_OVERFLOW "ERR increment or decrement would overflow"
#define ERR_FLOAT "ERR value is not a valid float"
#define MC_RELATIVE_MAX 2592000LL /* memcached reads larger TTLs as unix times */

static int is(const mc_resp *m, const char *code) { return m && m->code[0] == code[0] && m->code[1] == code[1]; }

/* A reply memcached gave that has no Redis counterpart, as a Redis error. */
static void store_error_text(const mc_resp *m, char *err, size_t cap)
{
    if (m && is(m, "ER") && memmem(m->line, m->linelen, "too large", 9))
        snprintf(err, cap, MC_ERR_TOO_LARGE);
    else if (m && is(m, "ER") && memmem(m->line, m->linelen, "out of memory", 13))
        snprintf(err, cap, "OOM memcached is out of memory");
    else
        snprintf(err, cap, "ERR unexpected reply from memcached: %.*s", m ? (int)(m->linelen > 200 ? 200 : m->linelen) : 0,
                 m ? m->line : "");
}

static void store_error(mc_req *r, const mc_resp *m)
{
    char err[300];
    store_error_text(m, err, sizeof(err));
    mc_fail(r, err);
}

static int arg_ll(mc_req *r, int i, long long *v) { return mc_parse_ll(r->argv[i], r->argvlen[i], v); }

/* Redis's checkStringLength: a string of size + append bytes (both >= 0),
 * overflow included, must stay within proto-max-bulk-len; and memcached
 * must be able to hold it at all. 0 when the request has failed. */
static int string_length_ok(mc_req *r, unsigned long long size, unsigned long long append)
{
    unsigned long long total = size + append;
    if (total < size || total > (unsigned long long)r->c->mb->base.max_string_len) {
        mc_fail(r, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return 0;
    }
    return mc_value_fits(r, total);
}

static int arg_is(mc_req *r, int i, const char *s) { return !strcasecmp(r->argv[i], s); }

/* ---- expiry --------------------------------------------------------------------- */

/* Redis keeps a key's deadline to the millisecond, on the wall clock;
 * memcached keeps whole seconds on a clock that ticks once a second and
 * drops an item at the first tick that reaches its expiry. So an item the
 * proxy writes with a TTL carries two expiries:
 * - its exact deadline D (ms), as (D mod DL_MOD) + 1 in the upper 16 bits
 *   of its client flags; the higher digits of D come back from memcached's
 *   own remaining TTL (mg's t), which is within about 1.5 s of D. Every read
 *   checks D: from D on the key is missing, and the item is deleted (with
 *   its CAS) as Redis expires keys lazily;
 * - memcached's TTL, D rounded up to the second plus one second of headroom
 *   for the tick: memcached never drops the item before D, and drops it at
 *   most about two seconds after, for readers that bypass the proxy.
 * The lower 16 bits stay the client's (0 for what the proxy writes), where
 * clients keep their own type and compression flags: a client that bypasses
 * the proxy reads the same bytes as a plain string. Flags whose upper bits
 * do not fit memcached's TTL (written or touched by another client), and
 * expiries memcached cannot hold (past 2038), fall back to memcached's
 * whole seconds. */
#define MC_TTL_HEADROOM 1

/* memcached reads T as a 32-bit signed number and an item stored with a
 * larger one is expired at once: an expiry past 2038-01-19 is kept as the
 * last second memcached can hold. */
#define MC_ABS_MAX 2147483647LL

#define DL_SHIFT 16
#define DL_MOD 65535LL
#define DL_SLACK_MS 5000 /* how far D may lie from what t says (t's own error is under 1.5 s) */
#define CLIENT_BITS 0xFFFFULL

/* A read item as Redis sees it. */
typedef struct item {
    int present;                   /* memcached holds it: cas is valid */
    int live;                      /* present and not past its deadline */
    int exact;                     /* deadline known to the millisecond */
    long long t;                   /* mg's t, -1: no expiry */
    long long deadline;            /* ms, wall clock; -1: none */
    unsigned long long cas, flags; /* flags: all 32 bits as stored */
} item;

/* memcached's T token for a deadline in ms: whole seconds, rounded up,
 * plus the headroom; -1 when already past (stored expired). */
static long long T_from_abs_ms(long long when_ms)
{
    long long now = mc_now_ms();
    if (when_ms <= now) return -1;
    long long rel = (when_ms - now + 999) / 1000 + MC_TTL_HEADROOM;
    if (rel > MC_RELATIVE_MAX) {
        long long abs = when_ms / 1000 + (when_ms % 1000 != 0) + MC_TTL_HEADROOM; /* no overflow near LLONG_MAX */
        return abs > MC_ABS_MAX ? MC_ABS_MAX : abs;
    }
    return rel;
}

/* T token that keeps a remaining TTL as mg's t reports it (-1 = none); the
 * headroom is already part of it. */
static long long T_keep(long long t)
{
    if (t < 0) return 0;
    if (t == 0) return 1;
    if (t > MC_RELATIVE_MAX) return mc_now_ms() / 1000 + t > MC_ABS_MAX ? MC_ABS_MAX : mc_now_ms() / 1000 + t;
    return t;
}

/* Client flags for an item whose deadline is D (-1: none): the client's
 * bits of `base` and D's. Without a deadline `base` is kept whole. */
static unsigned long long F_for(long long D, long long T, unsigned long long base)
{
    if (D < 0) return base;
    base &= CLIENT_BITS;
    if (T <= 0 || T == MC_ABS_MAX) return base; /* past, or beyond what memcached can hold */
    return base | ((unsigned long long)(D % DL_MOD + 1) << DL_SHIFT);
}

static void item_of_parts(item *it, long long t, unsigned long long flags, unsigned long long cas)
{
    it->present = 1;
    it->cas = cas;
    it->flags = flags;
    it->t = t;
    it->exact = 0;
    it->deadline = -1;
    it->live = 1;
    if (t < 0) return;
    long long now = mc_now_ms();
    /* t counts from memcached's clock, which lags the wall clock by up to a
     * second, and was rounded up with the headroom: D is within 1.5 s of est. */
    long long est = now + (t - MC_TTL_HEADROOM) * 1000 - 500;
    unsigned long long hi = (flags >> DL_SHIFT) & 0xFFFF;
    if (hi) {
        long long rem = (long long)hi - 1;
        long long d = est - ((est - rem) % DL_MOD + DL_MOD) % DL_MOD;
        if (est - d > DL_MOD / 2) d += DL_MOD;
        if (d - est <= DL_SLACK_MS && est - d <= DL_SLACK_MS) {
            it->exact = 1;
            it->deadline = d;
            it->live = now <= d; /* as Redis's keyIsExpired: gone once now > when */
            return;
        }
    }
    it->deadline = now + (t > MC_TTL_HEADROOM ? t - MC_TTL_HEADROOM : 0) * 1000;
}

/* The item an mg reply describes (asked with t, f and c); 0 when the reply
 * is neither an item nor EN. */
static int item_of(const mc_resp *m, item *it)
{
    memset(it, 0, sizeof(*it));
    it->t = -1;
    it->deadline = -1;
    if (is(m, "EN")) return 1;
    if (!is(m, "VA") && !is(m, "HD")) return 0;
    item_of_parts(it, m->has_t ? m->t : -1, m->has_f ? m->flags : 0, m->cas);
    return 1;
}

/* What every check needs of an item; commands that write it back or
 * delete it also need its CAS. Pure reads leave the CAS out (fewer bytes on
 * the hot path): their lazy deletion reads it again. */
#define MG_META "t f c"
#define MG_READ "t f"

/* An item past its deadline reads as missing and is deleted, if still the same. */
static void expire_if_dead(mc_req *r, const item *it, const unsigned char *k, size_t kl)
{
    if (it->present && !it->live) mc_expire_lazily(r, k ? k : r->mkey, k ? kl : r->mklen, it->cas);
}

/* T and F that keep an item's expiry as it is, with client flags `base`. */
static void item_keep(const item *it, unsigned long long base, long long *T, unsigned long long *F)
{
    if (it->t < 0 || !it->present) {
        *T = 0;
        *F = base;
    } else if (it->exact) {
        *T = T_from_abs_ms(it->deadline);
        *F = F_for(it->deadline, *T, base);
    } else {
        *T = T_keep(it->t);
        *F = base;
    }
}

/* The remaining TTL in ms a client is told (-1: none). */
static long long item_pttl(const item *it)
{
    if (it->deadline < 0) return -1;
    long long left = it->deadline - mc_now_ms();
    return left < 0 ? 0 : left;
}

/* " F<flags> T<n>": each left out when 0 (none, no expiry). */
static void TF_flags(char *buf, size_t cap, long long T, unsigned long long F)
{
    char f[32] = "", t[32] = "";
    if (F) snprintf(f, sizeof(f), " F%llu", F);
    if (T) snprintf(t, sizeof(t), " T%lld", T);
    snprintf(buf, cap, "%s%s", f, t);
}


/* ---- read-modify-write with CAS ----------------------------------------------- */

static void rmw_read(mc_req *r)
{
    mc_multi(r);
    r->step = 1;
    mc_issue_mg(r, "v " MG_META, 1);
}

/* The item an rmw read found: 0 (and the request failed) on a store error.
 * An item past its deadline is missing to Redis, but it is still there to
 * be written over with its CAS. */
static int rmw_item(mc_req *r, const mc_resp *m, item *it)
{
    if (!item_of(m, it)) {
        store_error(r, m);
        return 0;
    }
    return 1;
}

/* Writes the new value: over the item read (CAS), or as a new item. */
static void rmw_write_item(mc_req *r, const item *it, const char *val, size_t vlen, long long T, unsigned long long F)
{
    char flags[120], tf[64];
    TF_flags(tf, sizeof(tf), T, F);
    r->over_dead = it->present && !it->live;
    if (it->present) snprintf(flags, sizeof(flags), "C%llu%s", it->cas, tf);
    else snprintf(flags, sizeof(flags), "ME%s", tf);
    r->step = 2;
    mc_issue_ms_in_order(r, val, vlen, flags, 2);
}

/* The new value keeps the live item's expiry (a dead one's is gone). */
static void rmw_write_keep(mc_req *r, const item *it, const char *val, size_t vlen)
{
    long long T = 0;
    unsigned long long F = 0;
    if (it->live) item_keep(it, 0, &T, &F);
    rmw_write_item(r, it, val, vlen, T, F);
}

/* Common tail of a read-modify-write: the write's answer. */
static void rmw_written(mc_req *r, const mc_resp *m)
{
    if (is(m, "HD")) {
        r->c->mb->expired_keys += r->over_dead;
        mc_finish(r);
    } else if (is(m, "EX") || is(m, "NS") || is(m, "NF")) {
        mc_cas_lost(r);
    } else {
        store_error(r, m);
    }
}

/* ---- GET / SET family ------------------------------------------------------------ */

/* A value read with MG_META: the bulk, or nil when missing or past its deadline. */
static int add_value(mc_req *r, const mc_resp *m, const unsigned char *k, size_t kl)
{
    item it;
    if (!item_of(m, &it)) return 0;
    expire_if_dead(r, &it, k, kl);
    if (it.live && is(m, "VA")) mc_add_bulk(r->out, m->val, m->vlen);
    else mc_add_null(r->out);
    return 1;
}

static void h_get(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        mc_issue_mg(r, "v " MG_READ, 0);
        return;
    }
    if (!add_value(r, m, NULL, 0)) return store_error(r, m);
    mc_finish(r);
}

enum {
    F_NX = 1, F_XX = 2, F_GET = 4, F_KEEPTTL = 8, F_PERSIST = 16,
    F_EX = 32, F_PX = 64, F_EXAT = 128, F_PXAT = 256,
};
#define F_ANYEXP (F_EX | F_PX | F_EXAT | F_PXAT)

/* Redis 7.0's parseExtendedStringArgumentsOrReply. is_set: SET, else GETEX. */
static int parse_string_opts(mc_req *r, int is_set, int *flags, int *exp_arg)
{
    *flags = 0;
    *exp_arg = -1;
    for (int j = is_set ? 3 : 2; j < r->argc; j++) {
        const char *o = r->argv[j];
        int has_next = j < r->argc - 1;
        int f = *flags;
        if (!strcasecmp(o, "nx") && !(f & F_XX) && is_set) *flags |= F_NX;
        else if (!strcasecmp(o, "xx") && !(f & F_NX) && is_set) *flags |= F_XX;
        else if (!strcasecmp(o, "get") && is_set) *flags |= F_GET;
        else if (!strcasecmp(o, "keepttl") && !(f & (F_PERSIST | F_ANYEXP)) && is_set) *flags |= F_KEEPTTL;
        else if (!strcasecmp(o, "persist") && !is_set && !(f & (F_ANYEXP | F_KEEPTTL))) *flags |= F_PERSIST;
        else if (!strcasecmp(o, "ex") && !(f & (F_KEEPTTL | F_PERSIST | F_EXAT | F_PX | F_PXAT)) && has_next) {
            *flags |= F_EX;
            *exp_arg = ++j;
        } else if (!strcasecmp(o, "px") && !(f & (F_KEEPTTL | F_PERSIST | F_EX | F_EXAT | F_PXAT)) && has_next) {
            *flags |= F_PX;
            *exp_arg = ++j;
        } else if (!strcasecmp(o, "exat") && !(f & (F_KEEPTTL | F_PERSIST | F_EX | F_PX | F_PXAT)) && has_next) {
            *flags |= F_EXAT;
            *exp_arg = ++j;
        } else if (!strcasecmp(o, "pxat") && !(f & (F_KEEPTTL | F_PERSIST | F_EX | F_EXAT | F_PX)) && has_next) {
            *flags |= F_PXAT;
            *exp_arg = ++j;
        } else {
            mc_fail(r, ERR_SYNTAX);
            return 0;
        }
    }
    return 1;
}

static void expire_time_error(mc_req *r, const char *cmd)
{
    char err[120];
    snprintf(err, sizeof(err), "ERR invalid expire time in '%s' command", cmd);
    mc_fail(r, err);
}

/* Redis 7.0's getExpireMillisecondsOrReply: the absolute expiry in ms. */
static int expire_ms(mc_req *r, int arg, int flags, const char *cmd, long long *when)
{
    long long v;
    if (!arg_ll(r, arg, &v)) {
        mc_fail(r, ERR_NOT_INT);
        return 0;
    }
    int seconds = flags & (F_EX | F_EXAT);
    if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) {
        expire_time_error(r, cmd);
        return 0;
    }
    if (seconds) v *= 1000;
    if (flags & (F_EX | F_PX)) {
        long long now = mc_now_ms();
        if (v > LLONG_MAX - now) {
            expire_time_error(r, cmd);
            return 0;
        }
        v += now;
    }
    *when = v;
    return 1;
}

/* SET, SETEX, PSETEX, SETNX, GETSET share this once their options are known:
 * r->n1 = flags, r->n2 = the deadline in ms (0: none), r->n3 = integer
 * reply (SETNX); argument 2 the value. */
static void set_reply(mc_req *r, int written)
{
    if (r->n3) mc_add_int(r->out, written);
    else if (written) mc_add_simple(r->out, "OK");
    else mc_add_null(r->out);
    mc_finish(r);
}

static void set_run(mc_req *r, int tag, const mc_resp *m)
{
    int flags = (int)r->n1;
    const char *val = r->argv[2];
    size_t vlen = r->argvlen[2];
    if (tag == MC_START && !mc_value_fits(r, vlen)) return;
    if (tag == MC_START && !flags && !r->n2) {
        mc_issue_ms(r, val, vlen, "", 0); /* the plain SET: nothing to work out */
        return;
    }
    long long T = 0;
    unsigned long long F = 0;
    char f[140], tf[64] = "";
    if (tag != 0 && tag != 1 && r->n2) { /* only what writes needs them */
        T = T_from_abs_ms(r->n2);
        F = F_for(r->n2, T, 0);
        TF_flags(tf, sizeof(tf), T, F);
    }
    if (!(flags & (F_GET | F_KEEPTTL | F_XX))) {
        /* A plain SET overwrites whatever is there. NX adds; when an item
         * is in the way, it is looked at: one past its deadline is missing
         * to Redis, and is written over with its CAS. */
        switch (tag) {
        case MC_START:
            if (flags & F_NX) mc_multi(r); /* it may need a second look */
            snprintf(f, sizeof(f), "%s%s", flags & F_NX ? "ME" : "", tf);
            mc_issue_ms(r, val, vlen, f[0] == ' ' ? f + 1 : f, 0);
            return;
        case 0:
            if (is(m, "HD")) return set_reply(r, 1);
            if (!is(m, "NS") || !(flags & F_NX)) return store_error(r, m);
            return mc_issue_mg(r, MG_META, 3);
        case 3: {
            item it;
            if (!item_of(m, &it)) return store_error(r, m);
            if (!it.present) return mc_cas_lost(r); /* deleted meanwhile: add again */
            if (it.live) return set_reply(r, 0);
            r->over_dead = 1;
            snprintf(f, sizeof(f), "C%llu%s", it.cas, tf);
            return mc_issue_ms(r, val, vlen, f, 4);
        }
        default:
            if (is(m, "HD")) {
                r->c->mb->expired_keys += r->over_dead;
                return set_reply(r, 1);
            }
            if (is(m, "EX") || is(m, "NF") || is(m, "NS")) return mc_cas_lost(r);
            return store_error(r, m);
        }
    }
    if (tag == MC_START) return rmw_read(r);
    if (tag == 1) {
        item it;
        if (!rmw_item(r, m, &it)) return;
        int found = it.live;
        if (flags & F_GET) {
            if (found && is(m, "VA")) mc_add_bulk(r->out, m->val, m->vlen);
            else mc_add_null(r->out);
        }
        if ((flags & F_NX && found) || (flags & F_XX && !found)) {
            if (!(flags & F_GET)) mc_add_null(r->out);
            expire_if_dead(r, &it, NULL, 0);
            return mc_finish(r);
        }
        if (!(flags & F_GET)) mc_add_simple(r->out, "OK");
        if (r->n2) {
            T = T_from_abs_ms(r->n2);
            F = F_for(r->n2, T, 0);
        }
        if (flags & F_KEEPTTL) {
            T = 0;
            F = 0;
            if (found) item_keep(&it, 0, &T, &F);
        }
        rmw_write_item(r, &it, val, vlen, T, F);
        return;
    }
    rmw_written(r, m);
}

static void h_set(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START && !r->started_opts) {
        int flags, ea;
        if (!parse_string_opts(r, 1, &flags, &ea)) return;
        long long when = 0;
        if (ea >= 0 && !expire_ms(r, ea, flags, "set", &when)) return;
        r->n1 = flags;
        r->n2 = ea >= 0 ? when : 0;
        r->started_opts = 1;
    }
    set_run(r, tag, m);
}

static void h_setnx(mc_req *r, int tag, const mc_resp *m)
{
    r->n1 = F_NX;
    r->n2 = 0;
    r->n3 = 1; /* integer reply */
    set_run(r, tag, m);
}

static void setex_common(mc_req *r, int tag, const mc_resp *m, int unit, const char *name)
{
    if (tag == MC_START && !r->started_opts) {
        long long when;
        /* SETEX key seconds value: the value is argument 3. */
        char *v = r->argv[3];
        size_t vl = r->argvlen[3];
        r->argv[3] = r->argv[2];
        r->argvlen[3] = r->argvlen[2];
        r->argv[2] = v;
        r->argvlen[2] = vl;
        if (!expire_ms(r, 3, unit, name, &when)) return;
        r->n1 = 0;
        r->n2 = when;
        r->started_opts = 1;
    }
    set_run(r, tag, m);
}

static void h_setex(mc_req *r, int tag, const mc_resp *m) { setex_common(r, tag, m, F_EX, "setex"); }
static void h_psetex(mc_req *r, int tag, const mc_resp *m) { setex_common(r, tag, m, F_PX, "psetex"); }

static void h_getset(mc_req *r, int tag, const mc_resp *m)
{
    r->n1 = F_GET;
    r->n2 = 0;
    set_run(r, tag, m);
}

static void h_getdel(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        mc_multi(r);
        mc_issue_mg(r, "v " MG_META, 1);
        return;
    }
    if (tag == 1) {
        item it;
        if (!item_of(m, &it)) return store_error(r, m);
        if (!it.live) {
            expire_if_dead(r, &it, NULL, 0);
            mc_add_null(r->out);
            return mc_finish(r);
        }
        mc_add_bulk(r->out, m->val, m->vlen);
        char f[40];
        snprintf(f, sizeof(f), "C%llu", it.cas);
        mc_issue_md(r, f, 2);
        return;
    }
    rmw_written(r, m);
}

/* GETEX: r->n1 = options, r->n2 = the new deadline (ms). With an option the
 * item is read first (only a live one is changed), then written with its
 * CAS (a new deadline), deleted (one already past) or made persistent. */
static void h_getex(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        if (!r->started_opts) {
            int flags, ea;
            if (!parse_string_opts(r, 0, &flags, &ea)) return;
            long long when = 0;
            if (ea >= 0 && !expire_ms(r, ea, flags, "getex", &when)) return;
            r->n1 = flags;
            r->n2 = ea >= 0 ? when : 0;
            r->started_opts = 1;
        }
        if (r->n1 & (F_ANYEXP | F_PERSIST)) mc_multi(r);
        mc_issue_mg(r, "v " MG_META, 1);
        return;
    }
    if (tag == 1) {
        item it;
        if (!item_of(m, &it)) return store_error(r, m);
        if (!it.live || !is(m, "VA")) {
            expire_if_dead(r, &it, NULL, 0);
            mc_add_null(r->out);
            return mc_finish(r);
        }
        mc_add_bulk(r->out, m->val, m->vlen);
        char f[140], tf[64];
        if (r->n1 & F_PERSIST) {
            if (it.t < 0) return mc_finish(r);
            return mc_issue_mg(r, "T0", 2); /* its deadline bits mean nothing without a TTL */
        }
        if (!(r->n1 & F_ANYEXP)) return mc_finish(r);
        if (r->n2 <= mc_now_ms()) {
            snprintf(f, sizeof(f), "C%llu", it.cas);
            return mc_issue_md(r, f, 2);
        }
        long long T = T_from_abs_ms(r->n2);
        TF_flags(tf, sizeof(tf), T, F_for(r->n2, T, it.flags));
        snprintf(f, sizeof(f), "C%llu%s", it.cas, tf);
        return mc_issue_ms(r, m->val, m->vlen, f, 2);
    }
    if (is(m, "HD") || is(m, "EN")) mc_finish(r); /* EN: made persistent, or deleted since by another */
    else if (is(m, "EX") || is(m, "NS") || is(m, "NF")) mc_cas_lost(r);
    else store_error(r, m);
}

/* One meta command per key, pipelined. (Quiet mode, q with an mn marker,
 * was measured slower on memcached 1.6.18: it spends more CPU on suppressed
 * replies than it saves in reply lines.) */
enum { MK_MG, MK_MS, MK_MD };

static void issue_each_key(mc_req *r, int kind, const char *flags, int first, int step)
{
    for (int i = first; i < r->argc; i += step) {
        unsigned char k[MC_MAPPED_MAX];
        size_t kl = mc_map_key(r->db, r->argv[i], r->argvlen[i], k);
        if (kind == MK_MG) mc_issue_mg_key(r, k, kl, flags, i);
        else if (kind == MK_MD) mc_issue_md_key(r, k, kl, flags, i);
        else mc_issue_ms_key(r, k, kl, r->argv[i + 1], r->argvlen[i + 1], flags, i);
    }
}

/* Argument i's key, mapped (for a reply tagged with its index). */
static size_t arg_key(mc_req *r, int i, unsigned char *k) { return mc_map_key(r->db, r->argv[i], r->argvlen[i], k); }

static void h_mget(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        evbuffer_add_printf(r->out, "*%d\r\n", r->argc - 1);
        return issue_each_key(r, MK_MG, "v " MG_READ, 1, 1);
    }
    /* Replies arrive in key order: append as they come. */
    unsigned char k[MC_MAPPED_MAX];
    if (!add_value(r, m, k, arg_key(r, tag, k))) return store_error(r, m);
    if (r->pending == 0) mc_finish(r);
}

static void h_mset(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        if (r->argc % 2 == 0) {
            char err[120];
            snprintf(err, sizeof(err), "ERR wrong number of arguments for '%s' command", r->cmd->name);
            return mc_fail(r, err);
        }
        /* Nothing is written when one value can never be stored. */
        for (int i = 2; i < r->argc; i += 2)
            if (!mc_value_fits(r, r->argvlen[i])) return;
        return issue_each_key(r, MK_MS, "", 1, 2);
    }
    if (!is(m, "HD")) return store_error(r, m);
    if (r->pending == 0) {
        mc_add_simple(r->out, "OK");
        mc_finish(r);
    }
}

/* MSETNX: existence first, then writes (memcached cannot make the whole
 * check-and-set atomic against writers that bypass the proxy). r->scratch
 * keeps the CAS of each item found past its deadline. */
static void h_msetnx(mc_req *r, int tag, const mc_resp *m)
{
    unsigned long long *cas = r->scratch;
    if (tag == MC_START) {
        if (r->argc % 2 == 0) return mc_fail(r, "ERR wrong number of arguments for 'msetnx' command");
        for (int i = 2; i < r->argc; i += 2)
            if (!mc_value_fits(r, r->argvlen[i])) return;
        mc_multi(r);
        r->n1 = 0;
        free(r->scratch);
        r->scratch = calloc((size_t)r->argc, sizeof(unsigned long long));
        if (!r->scratch) abort();
        return issue_each_key(r, MK_MG, MG_META, 1, 2);
    }
    if (tag % 2 == 1 && r->step == 0) {
        item it;
        if (!item_of(m, &it)) return store_error(r, m);
        if (it.live) r->n1++;
        else if (it.present) cas[tag] = it.cas;
        if (r->pending) return;
        if (r->n1) {
            for (int i = 1; i + 1 < r->argc; i += 2) {
                if (!cas[i]) continue;
                unsigned char k[MC_MAPPED_MAX];
                mc_expire_lazily(r, k, arg_key(r, i, k), cas[i]);
            }
            mc_add_int(r->out, 0);
            return mc_finish(r);
        }
        r->step = 1;
        for (int i = 1; i + 1 < r->argc; i += 2) {
            unsigned char k[MC_MAPPED_MAX];
            mc_issue_ms_key(r, k, arg_key(r, i, k), r->argv[i + 1], r->argvlen[i + 1], "", i);
            r->c->mb->expired_keys += cas[i] != 0;
        }
        return;
    }
    if (!is(m, "HD")) return store_error(r, m);
    if (r->pending == 0) {
        mc_add_int(r->out, 1);
        mc_finish(r);
    }
}

/* ---- keys -------------------------------------------------------------------------- */

/* DEL: each key read and deleted in one pipeline; only a key that was live
 * (or was written in between) counts. */
static void h_del(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        r->n1 = 0;
        for (int i = 1; i < r->argc; i++) {
            unsigned char k[MC_MAPPED_MAX];
            size_t kl = arg_key(r, i, k);
            mc_issue_mg_key(r, k, kl, MG_META, 1);
            mc_issue_md_key(r, k, kl, "", 2);
        }
        return;
    }
    if (tag == 1) {
        item it;
        if (!item_of(m, &it)) return store_error(r, m);
        r->n2 = it.present && !it.live; /* the md that follows deletes an expired item */
        return;
    }
    if (is(m, "HD")) {
        if (r->n2) r->c->mb->expired_keys++;
        else r->n1++;
    } else if (!is(m, "NF")) {
        return store_error(r, m);
    }
    if (r->pending == 0) {
        mc_add_int(r->out, r->n1);
        mc_finish(r);
    }
}

/* An mg with MG_META tagged with its key's argument index: is the key live? */
static int key_live(mc_req *r, int tag, const mc_resp *m, int *live)
{
    item it;
    if (!item_of(m, &it)) return 0;
    if (it.present && !it.live) {
        unsigned char k[MC_MAPPED_MAX];
        expire_if_dead(r, &it, k, arg_key(r, tag, k));
    }
    *live = it.live && it.present;
    return 1;
}

static void h_exists(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        r->n1 = 0;
        return issue_each_key(r, MK_MG, MG_READ, 1, 1);
    }
    int live;
    if (!key_live(r, tag, m, &live)) return store_error(r, m);
    r->n1 += live;
    if (r->pending == 0) {
        mc_add_int(r->out, r->n1);
        mc_finish(r);
    }
}

/* One key's item for TYPE, STRLEN, TTL...: 0 when it is missing or past its
 * deadline (then deleted), -1 on a store error (the request has failed). */
static int one_item(mc_req *r, const mc_resp *m, item *it)
{
    if (!item_of(m, it)) {
        store_error(r, m);
        return -1;
    }
    expire_if_dead(r, it, NULL, 0);
    return it->live && it->present;
}

static void h_type(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) return mc_issue_mg(r, MG_READ, 0);
    item it;
    int live = one_item(r, m, &it);
    if (live < 0) return;
    mc_add_simple(r->out, live ? "string" : "none");
    mc_finish(r);
}

static void h_strlen(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) return mc_issue_mg(r, "s " MG_READ, 0);
    item it;
    int live = one_item(r, m, &it);
    if (live < 0) return;
    mc_add_int(r->out, live ? (long long)m->size : 0);
    mc_finish(r);
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME as Redis 7.0's ttlGenericCommand:
 * seconds are the milliseconds rounded to the nearest. */
static void ttl_common(mc_req *r, int tag, const mc_resp *m, int which)
{
    if (tag == MC_START) return mc_issue_mg(r, MG_READ, 0);
    item it;
    int live = one_item(r, m, &it);
    if (live < 0) return;
    if (!live) mc_add_int(r->out, -2);
    else if (it.deadline < 0) mc_add_int(r->out, -1);
    else if (which == 0) mc_add_int(r->out, (item_pttl(&it) + 500) / 1000);
    else if (which == 1) mc_add_int(r->out, item_pttl(&it));
    else if (which == 2) mc_add_int(r->out, (it.deadline + 500) / 1000);
    else mc_add_int(r->out, it.deadline);
    mc_finish(r);
}

static void h_ttl(mc_req *r, int tag, const mc_resp *m) { ttl_common(r, tag, m, 0); }
static void h_pttl(mc_req *r, int tag, const mc_resp *m) { ttl_common(r, tag, m, 1); }
static void h_expiretime(mc_req *r, int tag, const mc_resp *m) { ttl_common(r, tag, m, 2); }
static void h_pexpiretime(mc_req *r, int tag, const mc_resp *m) { ttl_common(r, tag, m, 3); }

/* PERSIST: memcached's TTL goes (a touch, the value stays where it is); the
 * deadline bits left in the flags mean nothing on an item without a TTL. */
static void h_persist(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        mc_multi(r);
        return mc_issue_mg(r, MG_META, 1);
    }
    if (tag == 1) {
        item it;
        int live = one_item(r, m, &it);
        if (live < 0) return;
        if (!live || it.t < 0) {
            mc_add_int(r->out, 0);
            return mc_finish(r);
        }
        return mc_issue_mg(r, "T0", 2);
    }
    if (is(m, "HD")) mc_add_int(r->out, 1);
    else if (is(m, "EN")) mc_add_int(r->out, 0);
    else return store_error(r, m);
    mc_finish(r);
}

static void h_touch(mc_req *r, int tag, const mc_resp *m) { h_exists(r, tag, m); }

enum { X_NX = 1, X_XX = 2, X_GT = 4, X_LT = 8 };

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, as Redis 7.0's expireGenericCommand.
 * r->n1 = absolute expiry in ms, r->n2 = NX/XX/GT/LT. The item is read and
 * written back with its CAS and the new deadline in its flags (memcached
 * cannot change flags without the value), or deleted when the time has
 * passed. */
static void expire_common(mc_req *r, int tag, const mc_resp *m, int seconds, int relative, const char *name)
{
    if (tag == MC_START) {
        if (!r->started_opts) {
            int flag = 0;
            for (int j = 3; j < r->argc; j++) {
                if (arg_is(r, j, "nx")) flag |= X_NX;
                else if (arg_is(r, j, "xx")) flag |= X_XX;
                else if (arg_is(r, j, "gt")) flag |= X_GT;
                else if (arg_is(r, j, "lt")) flag |= X_LT;
                else {
                    char err[200];
                    snprintf(err, sizeof(err), "ERR Unsupported option %.150s", r->argv[j]);
                    return mc_fail(r, err);
                }
            }
            if ((flag & X_NX) && (flag & (X_XX | X_GT | X_LT)))
                return mc_fail(r, "ERR NX and XX, GT or LT options at the same time are not compatible");
            if ((flag & X_GT) && (flag & X_LT))
                return mc_fail(r, "ERR GT and LT options at the same time are not compatible");
            long long when;
            if (!arg_ll(r, 2, &when)) return mc_fail(r, ERR_NOT_INT);
            if (seconds) {
                if (when > LLONG_MAX / 1000 || when < LLONG_MIN / 1000) return expire_time_error(r, name);
                when *= 1000;
            }
            long long base = relative ? mc_now_ms() : 0;
            if (when > LLONG_MAX - base) return expire_time_error(r, name);
            when += base;
            r->n1 = when;
            r->n2 = flag;
            r->started_opts = 1;
        }
        mc_multi(r);
        return mc_issue_mg(r, "v " MG_META, 1);
    }
    if (tag == 1) {
        item it;
        int live = one_item(r, m, &it);
        if (live < 0) return;
        if (!live) {
            mc_add_int(r->out, 0);
            return mc_finish(r);
        }
        long long when = r->n1, flag = r->n2, cur = it.deadline;
        if (((flag & X_NX) && cur != -1) || ((flag & X_XX) && cur == -1) ||
            ((flag & X_GT) && (when <= cur || cur == -1)) || ((flag & X_LT) && cur != -1 && when >= cur)) {
            mc_add_int(r->out, 0);
            return mc_finish(r);
        }
        char f[140], tf[64];
        if (when <= mc_now_ms()) {
            snprintf(f, sizeof(f), "C%llu", it.cas);
            return mc_issue_md(r, f, 2);
        }
        long long T = T_from_abs_ms(when);
        TF_flags(tf, sizeof(tf), T, F_for(when, T, it.flags));
        snprintf(f, sizeof(f), "C%llu%s", it.cas, tf);
        return mc_issue_ms(r, m->val, m->vlen, f, 2);
    }
    if (is(m, "HD")) {
        mc_add_int(r->out, 1);
        mc_finish(r);
    } else if (is(m, "EX") || is(m, "NF") || is(m, "NS")) {
        mc_cas_lost(r); /* changed by a writer that bypasses the proxy: again */
    } else {
        store_error(r, m);
    }
}

static void h_expire(mc_req *r, int tag, const mc_resp *m) { expire_common(r, tag, m, 1, 1, "expire"); }
static void h_pexpire(mc_req *r, int tag, const mc_resp *m) { expire_common(r, tag, m, 0, 1, "pexpire"); }
static void h_expireat(mc_req *r, int tag, const mc_resp *m) { expire_common(r, tag, m, 1, 0, "expireat"); }
static void h_pexpireat(mc_req *r, int tag, const mc_resp *m) { expire_common(r, tag, m, 0, 0, "pexpireat"); }

/* ---- COPY, RENAME, RENAMENX ------------------------------------------------------------ */

/* COPY's write of the destination: r->scratch holds the value, r->n3 and
 * r->cas2 its T and flags. */
static void copy_write(mc_req *r, const char *mode, int tag)
{
    unsigned char k[MC_MAPPED_MAX];
    size_t kl = mc_map_key((int)r->n1, r->argv[2], r->argvlen[2], k);
    char f[160], tf[64];
    TF_flags(tf, sizeof(tf), r->n3, r->cas2);
    snprintf(f, sizeof(f), "%s%s", mode, tf);
    mc_issue_ms_key(r, k, kl, r->scratch, r->scratch_len, f[0] == ' ' ? f + 1 : f, tag);
}

/* COPY's destination appeared or went away between its read and its write
 * (a writer that bypasses the proxy): looked at again, a bounded number of
 * times. */
static int too_many_retries(mc_req *r)
{
    if (++r->retries <= MC_CAS_RETRIES) return 0;
    mc_fail(r, "ERR too many concurrent changes to the key on the memcached backend, try again");
    return 1;
}

/* Keeps the value of a read item in r->scratch. */
static void keep_value(mc_req *r, const mc_resp *m)
{
    free(r->scratch);
    r->scratch = malloc(m->vlen ? m->vlen : 1);
    if (!r->scratch) abort();
    memcpy(r->scratch, m->val, m->vlen);
    r->scratch_len = m->vlen;
}

/* COPY source destination [DB n] [REPLACE], as Redis 7.0's copyCommand.
 * The source is read, then the destination written: with REPLACE over
 * anything, else added (ME keeps an outside writer's new destination). A
 * destination in the way that is past its deadline is missing to Redis:
 * it is written over with its CAS. The copy keeps the source's deadline
 * and client flags. */
static void h_copy(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        long long dbid = r->db;
        int replace = 0;
        for (int j = 3; j < r->argc; j++) {
            if (arg_is(r, j, "replace")) {
                replace = 1;
            } else if (arg_is(r, j, "db") && j + 1 < r->argc) {
                if (!arg_ll(r, j + 1, &dbid)) return mc_fail(r, ERR_NOT_INT);
                if (dbid < INT_MIN || dbid > INT_MAX)
                    return mc_fail(r, "ERR value is out of range, value must between -2147483648 and 2147483647");
                if (dbid < 0 || dbid >= r->c->mb->base.databases) return mc_fail(r, "ERR DB index is out of range");
                j++;
            } else {
                return mc_fail(r, ERR_SYNTAX);
            }
        }
        if (dbid == r->db && r->argvlen[1] == r->argvlen[2] && !memcmp(r->argv[1], r->argv[2], r->argvlen[1]))
            return mc_fail(r, "ERR source and destination objects are the same");
        r->n1 = dbid;
        r->n2 = replace;
        mc_multi(r);
        return mc_issue_mg(r, "v " MG_META, 1);
    }
    item it;
    unsigned char k[MC_MAPPED_MAX];
    char f[40];
    switch (tag) {
    case 1: { /* the source */
        int live = one_item(r, m, &it);
        if (live < 0) return;
        if (!live) {
            mc_add_int(r->out, 0);
            return mc_finish(r);
        }
        keep_value(r, m);
        item_keep(&it, it.flags, &r->n3, &r->cas2);
        return copy_write(r, r->n2 ? "" : "ME", 2);
    }
    case 2: /* the destination written, or added */
    case 4: /* written over an item past its deadline */
        if (is(m, "HD")) {
            if (tag == 4) r->c->mb->expired_keys++;
            mc_add_int(r->out, 1);
            return mc_finish(r);
        }
        if (!(is(m, "NS") || (tag == 4 && (is(m, "EX") || is(m, "NF"))))) return store_error(r, m);
        if (too_many_retries(r)) return;
        return mc_issue_mg_key(r, k, mc_map_key((int)r->n1, r->argv[2], r->argvlen[2], k), MG_META, 3);
    default: /* 3: what is in the destination's way */
        if (!item_of(m, &it)) return store_error(r, m);
        if (!it.present) return copy_write(r, "ME", 2);
        if (it.live) {
            mc_add_int(r->out, 0);
            return mc_finish(r);
        }
        snprintf(f, sizeof(f), "C%llu", it.cas);
        return copy_write(r, f, 4);
    }
}

/* RENAME and RENAMENX, as Redis 7.0's renameGenericCommand. The source is
 * read with its CAS and deleted only if it is still what was read (else
 * read again, bounded), then the destination is written. Deleting first
 * means no writer that bypasses the proxy ever sees the value under both
 * names (a counter moved while it is incremented would count twice); if
 * the destination cannot be written, the source is put back.
 * The source item read is kept in r->scratch (value), r->n1 (T) and r->n3
 * (flags, its deadline's included); r->n2 = its CAS; r->cas2 = the CAS of
 * a destination past its deadline that RENAMENX writes over. */
static void rename_reply(mc_req *r, int nx, int moved)
{
    if (nx) mc_add_int(r->out, moved);
    else mc_add_simple(r->out, "OK");
    mc_finish(r);
}

static void rename_common(mc_req *r, int tag, const mc_resp *m, int nx)
{
    int same = r->argvlen[1] == r->argvlen[2] && !memcmp(r->argv[1], r->argv[2], r->argvlen[1]);
    unsigned char k[MC_MAPPED_MAX];
    size_t kl = mc_map_key(r->db, r->argv[2], r->argvlen[2], k);
    char f[160], tf[64], mode[40];
    item it;
    int live;
    switch (tag) {
    case MC_START:
        mc_multi(r);
        return mc_issue_mg(r, same ? MG_META : "v " MG_META, 1);
    case 1: /* the source */
        live = one_item(r, m, &it);
        if (live < 0) return;
        if (!live) return mc_fail(r, "ERR no such key");
        if (same) return rename_reply(r, nx, 0);
        keep_value(r, m);
        unsigned long long F;
        item_keep(&it, it.flags, &r->n1, &F);
        r->n3 = (long long)F;
        r->n2 = (long long)it.cas;
        r->cas2 = 0;
        if (nx) return mc_issue_mg_key(r, k, kl, MG_META, 2);
        /* RENAME overwrites whatever the destination holds */
        /* fall through */
    case 2: /* RENAMENX: does the destination exist? */
        if (tag == 2) {
            if (!item_of(m, &it)) return store_error(r, m);
            if (it.live && it.present) return rename_reply(r, nx, 0);
            r->cas2 = it.present ? it.cas : 0;
        }
        snprintf(f, sizeof(f), "C%llu", (unsigned long long)r->n2);
        return mc_issue_md(r, f, 3);
    case 3: /* the source deleted, if unchanged */
        if (is(m, "EX") || is(m, "NF")) {
            /* Changed or deleted by a writer that bypasses the proxy: again. */
            mc_cas_lost(r);
            return;
        }
        if (!is(m, "HD")) return store_error(r, m);
        TF_flags(tf, sizeof(tf), r->n1, (unsigned long long)r->n3);
        if (!nx) mode[0] = '\0';
        else if (r->cas2) snprintf(mode, sizeof(mode), "C%llu", r->cas2);
        else snprintf(mode, sizeof(mode), "ME");
        snprintf(f, sizeof(f), "%s%s", mode, tf);
        return mc_issue_ms_key(r, k, kl, r->scratch, r->scratch_len, f[0] == ' ' ? f + 1 : f, 4);
    case 4: /* the destination written */
        if (is(m, "HD")) {
            if (r->cas2) r->c->mb->expired_keys++;
            return rename_reply(r, nx, 1);
        }
        /* RENAMENX lost a race for the destination, or the store refused
         * the write: put the source back, then answer. */
        if (nx && (is(m, "NS") || is(m, "EX") || is(m, "NF"))) {
            mc_add_int(r->out, 0);
        } else {
            char err[300];
            store_error_text(m, err, sizeof(err));
            mc_add_error(r->out, err);
        }
        TF_flags(tf, sizeof(tf), r->n1, (unsigned long long)r->n3);
        snprintf(f, sizeof(f), "ME%s", tf);
        return mc_issue_ms(r, r->scratch, r->scratch_len, f, 5);
    default: /* the source put back (or a newer one is there): reply as decided */
        mc_finish(r);
    }
}

static void h_rename(mc_req *r, int tag, const mc_resp *m) { rename_common(r, tag, m, 0); }
static void h_renamenx(mc_req *r, int tag, const mc_resp *m) { rename_common(r, tag, m, 1); }

/* ---- numbers and string edits ------------------------------------------------------ */

/* INCR, DECR, INCRBY, DECRBY: r->n1 = the delta. */
static void incr_common(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) return rmw_read(r);
    if (tag == 1) {
        long long old = 0, delta = r->n1;
        item it;
        if (!rmw_item(r, m, &it)) return;
        int found = it.live && is(m, "VA");
        if (found && !mc_parse_ll(m->val, m->vlen, &old)) return mc_fail(r, ERR_NOT_INT);
        if ((delta < 0 && old < 0 && delta < LLONG_MIN - old) || (delta > 0 && old > 0 && delta > LLONG_MAX - old))
            return mc_fail(r, ERR_OVERFLOW);
        long long v = old + delta;
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%lld", v);
        mc_add_int(r->out, v);
        return rmw_write_keep(r, &it, buf, (size_t)n);
    }
    rmw_written(r, m);
}

static void h_incr(mc_req *r, int tag, const mc_resp *m)
{
    r->n1 = 1;
    incr_common(r, tag, m);
}

static void h_decr(mc_req *r, int tag, const mc_resp *m)
{
    r->n1 = -1;
    incr_common(r, tag, m);
}

static void h_incrby(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START && !arg_ll(r, 2, &r->n1)) return mc_fail(r, ERR_NOT_INT);
    incr_common(r, tag, m);
}

static void h_decrby(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        long long d;
        if (!arg_ll(r, 2, &d)) return mc_fail(r, ERR_NOT_INT);
        if (d == LLONG_MIN) return mc_fail(r, "ERR decrement would overflow");
        r->n1 = -d;
    }
    incr_common(r, tag, m);
}

static void h_incrbyfloat(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        long double d;
        if (!mc_parse_ld(r->argv[2], r->argvlen[2], &d)) return mc_fail(r, ERR_FLOAT);
        return rmw_read(r);
    }
    if (tag == 1) {
        long double incr = 0, v = 0;
        mc_parse_ld(r->argv[2], r->argvlen[2], &incr);
        item it;
        if (!rmw_item(r, m, &it)) return;
        int found = it.live && is(m, "VA");
        if (found && !mc_parse_ld(m->val, m->vlen, &v)) return mc_fail(r, ERR_FLOAT);
        v += incr;
        if (isnan(v) || isinf(v)) return mc_fail(r, "ERR increment would produce NaN or Infinity");
        char buf[5200];
        size_t n = mc_format_ld(buf, sizeof(buf), v);
        mc_add_bulk(r->out, buf, n);
        return rmw_write_keep(r, &it, buf, n);
    }
    rmw_written(r, m);
}

static void h_append(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) return rmw_read(r);
    if (tag == 1) {
        item it;
        if (!rmw_item(r, m, &it)) return;
        int found = it.live && is(m, "VA");
        size_t ol = found ? m->vlen : 0, al = r->argvlen[2];
        /* As Redis: only appending to an existing string is checked. */
        if (found ? !string_length_ok(r, ol, al) : !mc_value_fits(r, al)) return;
        char *nv = malloc(ol + al + 1);
        if (!nv) abort();
        if (ol) memcpy(nv, m->val, ol);
        memcpy(nv + ol, r->argv[2], al);
        mc_add_int(r->out, (long long)(ol + al));
        rmw_write_keep(r, &it, nv, ol + al);
        free(nv);
        return;
    }
    rmw_written(r, m);
}

static void h_setrange(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        long long off;
        if (!arg_ll(r, 2, &off)) return mc_fail(r, ERR_NOT_INT);
        if (off < 0) return mc_fail(r, "ERR offset is out of range");
        r->n1 = off;
        return rmw_read(r);
    }
    if (tag == 1) {
        item it;
        if (!rmw_item(r, m, &it)) return;
        int found = it.live && is(m, "VA");
        size_t ol = found ? m->vlen : 0, al = r->argvlen[3];
        long long off = r->n1;
        if (al == 0) {
            mc_add_int(r->out, (long long)ol);
            return mc_finish(r);
        }
        if (!string_length_ok(r, (unsigned long long)off, al)) return;
        size_t nl = (size_t)off + al > ol ? (size_t)off + al : ol;
        char *nv = calloc(1, nl + 1);
        if (!nv) abort();
        if (ol) memcpy(nv, m->val, ol);
        memcpy(nv + off, r->argv[3], al);
        mc_add_int(r->out, (long long)nl);
        rmw_write_keep(r, &it, nv, nl);
        free(nv);
        return;
    }
    rmw_written(r, m);
}

static void h_getrange(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        if (!arg_ll(r, 2, &r->n1) || !arg_ll(r, 3, &r->n2)) return mc_fail(r, ERR_NOT_INT);
        return mc_issue_mg(r, "v " MG_READ, 0);
    }
    item it;
    int live = one_item(r, m, &it);
    if (live < 0) return;
    if (!live || !is(m, "VA")) {
        mc_add_bulk(r->out, "", 0);
        return mc_finish(r);
    }
    long long start = r->n1, end = r->n2, len = (long long)m->vlen;
    if (start < 0 && end < 0 && start > end) {
        mc_add_bulk(r->out, "", 0);
        return mc_finish(r);
    }
    if (start < 0) start = len + start;
    if (end < 0) end = len + end;
    if (start < 0) start = 0;
    if (end < 0) end = 0;
    if (end >= len) end = len - 1;
    if (start > end || len == 0) mc_add_bulk(r->out, "", 0);
    else mc_add_bulk(r->out, m->val + start, (size_t)(end - start + 1));
    mc_finish(r);
}

/* ---- keyspace (through lru_crawler metadump) ------------------------------------------ */


static int unhex(int c) { return c >= '0' && c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* metadump shows memcached's expiry (seconds) but not the flags: an item
 * whose memcached expiry is this close may be past its deadline already,
 * and a listing reads it before it counts it. */
#define DUMP_CHECK_S 6
#define DUMP_CHECK_TAG 7

/* A metadump line: the item's key (decoded) and whether it is live (1),
 * gone (0) or to be read (2); *has_exp whether it has a TTL. */
static size_t dump_key(const mc_resp *m, unsigned char *k, int *live, int *has_exp)
{
    const char *p = m->line, *end = m->line + m->linelen;
    *live = 0;
    if (m->linelen < 4 || memcmp(p, "key=", 4)) return 0;
    p += 4;
    size_t n = 0;
    while (p < end && *p != ' ' && n < MC_MAPPED_MAX) {
        if (*p == '%' && end - p >= 3) {
            k[n++] = (unsigned char)(unhex(p[1]) * 16 + unhex(p[2]));
            p += 3;
        } else {
            k[n++] = (unsigned char)*p++;
        }
    }
    const char *e = memmem(m->line, m->linelen, " exp=", 5);
    long long exp = e ? strtoll(e + 5, NULL, 10) : -1;
    long long now_s = mc_now_ms() / 1000;
    *has_exp = exp >= 0;
    *live = exp < 0 ? 1 : exp <= now_s ? 0 : exp <= now_s + DUMP_CHECK_S ? 2 : 1;
    return n;
}

/* Calls fn for each live key of the request's database (r->n3: whether it
 * has a TTL). */
typedef void dump_fn(mc_req *r, const unsigned char *mk, size_t mkl, const unsigned char *name, size_t nl);

static void dump_key_found(mc_req *r, const unsigned char *k, size_t kl, int has_exp, dump_fn *fn)
{
    const unsigned char *name;
    size_t nl;
    if (mc_unmap_key(k, kl, &name, &nl) != r->db) return;
    r->n3 = has_exp;
    fn(r, k, kl, name, nl);
}

/* check: keys near their expiry are kept in r->deferred to be read once
 * the dump is over (nothing else may be sent while it runs). */
static int dump_line_checked(mc_req *r, const mc_resp *m, dump_fn *fn, int check)
{
    if (!is(m, "KY")) return 0;
    unsigned char k[MC_MAPPED_MAX];
    int live, has_exp;
    size_t kl = dump_key(m, k, &live, &has_exp);
    if (!kl || !live) return 1;
    if (live == 2 && check) {
        const unsigned char *name;
        size_t nl;
        if (mc_unmap_key(k, kl, &name, &nl) != r->db) return 1;
        if (!r->deferred && !(r->deferred = evbuffer_new())) abort();
        unsigned char len[2] = {(unsigned char)(kl >> 8), (unsigned char)kl};
        evbuffer_add(r->deferred, len, 2);
        evbuffer_add(r->deferred, k, kl);
        return 1;
    }
    dump_key_found(r, k, kl, has_exp, fn);
    return 1;
}

static int dump_line(mc_req *r, const mc_resp *m, dump_fn *fn) { return dump_line_checked(r, m, fn, 1); }

static int dump_again(mc_req *r, const mc_resp *m, int tag);

/* A listing's reply: a dump line or its end (tag 0), or the read of a key
 * near its expiry (DUMP_CHECK_TAG). 1 while more is to come, -1 when the
 * request has failed, 0 when every live key has gone through fn. */
static int dump_step(mc_req *r, int tag, const mc_resp *m, dump_fn *fn)
{
    if (tag == DUMP_CHECK_TAG) {
        unsigned char len[2], k[MC_MAPPED_MAX];
        item it;
        if (!item_of(m, &it)) {
            store_error(r, m);
            return -1;
        }
        evbuffer_remove(r->deferred, len, 2);
        size_t kl = (size_t)len[0] << 8 | len[1];
        evbuffer_remove(r->deferred, k, kl);
        expire_if_dead(r, &it, k, kl);
        if (it.present && it.live) dump_key_found(r, k, kl, it.t >= 0, fn);
        return r->pending ? 1 : 0;
    }
    if (dump_line(r, m, fn) || dump_again(r, m, 0)) return 1;
    if (!is(m, "EN")) {
        store_error(r, m);
        return -1;
    }
    /* The reads go out in order and their replies come back in order. */
    size_t at = 0, total = r->deferred ? evbuffer_get_length(r->deferred) : 0;
    while (at < total) {
        unsigned char len[2], k[MC_MAPPED_MAX];
        struct evbuffer_ptr p;
        evbuffer_ptr_set(r->deferred, &p, at, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(r->deferred, &p, len, 2);
        size_t kl = (size_t)len[0] << 8 | len[1];
        evbuffer_ptr_set(r->deferred, &p, at + 2, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(r->deferred, &p, k, kl);
        mc_issue_mg_key(r, k, kl, MG_META, DUMP_CHECK_TAG);
        at += 2 + kl;
    }
    return r->pending ? 1 : 0;
}

#define DUMP_BUSY_RETRIES 100

/* A dump that ended without END: memcached's crawler was busy (its own
 * expiry crawl, or another connection's dump), or the store has no hash
 * walk. 1 when the dump was sent again (now or a little later). */
static int dump_again(mc_req *r, const mc_resp *m, int tag)
{
    if (!is(m, "ER")) return 0;
    if (m->linelen >= 4 && !memcmp(m->line, "BUSY", 4)) {
        if (++r->retries > DUMP_BUSY_RETRIES) {
            mc_fail(r, "ERR memcached's LRU crawler stayed busy, try again");
            return 1;
        }
        mc_issue_dump_later(r, tag, (unsigned)(r->retries < 10 ? 5 * r->retries : 50));
        return 1;
    }
    if (!r->c->mb->dump_all && m->linelen >= 8 && !memcmp(m->line, "BADCLASS", 8)) {
        r->c->mb->dump_all = 1; /* memcached before `metadump hash` */
        mc_issue_dump(r, tag);
        return 1;
    }
    return 0;
}

/* The first dump of a request: nothing else may go out on the connection
 * until it is over, so that a retried dump keeps its place. */
static void dump_start(mc_req *r, int tag)
{
    mc_multi(r);
    mc_issue_dump(r, tag);
}

/* r->n1 keys, r->n2 of them with a TTL */
static void count_key(mc_req *r, const unsigned char *mk, size_t mkl, const unsigned char *name, size_t nl)
{
    (void)mk, (void)mkl, (void)name, (void)nl;
    r->n1++;
    r->n2 += r->n3 != 0;
}

static void h_dbsize(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        r->n1 = 0;
        return dump_start(r, 0);
    }
    if (dump_step(r, tag, m, count_key)) return;
    mc_add_int(r->out, r->n1);
    mc_finish(r);
}

static void delete_key(mc_req *r, const unsigned char *mk, size_t mkl, const unsigned char *name, size_t nl)
{
    (void)name, (void)nl;
    mc_issue_md_key(r, mk, mkl, "", 1);
}

static int flush_args_ok(mc_req *r)
{
    if (r->argc > 2 || (r->argc == 2 && !arg_is(r, 1, "sync") && !arg_is(r, 1, "async"))) {
        mc_fail(r, ERR_SYNTAX);
        return 0;
    }
    return 1;
}

static void h_flushall(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        if (!flush_args_ok(r)) return;
        return mc_issue_raw(r, "flush_all", 0, 0);
    }
    if (!is(m, "OK")) return store_error(r, m);
    mc_add_simple(r->out, "OK");
    mc_finish(r);
}

static void h_flushdb(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        if (!flush_args_ok(r)) return;
        return dump_start(r, 0);
    }
    if (tag == 0) {
        if (dump_line_checked(r, m, delete_key, 0) || dump_again(r, m, 0)) return;
        if (!is(m, "EN")) return store_error(r, m);
        r->step = 1; /* the dump is over; deletes may still be answering */
    }
    /* A delete answering NF: someone else deleted the key meanwhile. */
    if (r->step == 1 && r->pending == 0) {
        mc_add_simple(r->out, "OK");
        mc_finish(r);
    }
}

static void collect_key(mc_req *r, const unsigned char *mk, size_t mkl, const unsigned char *name, size_t nl)
{
    (void)mk, (void)mkl;
    if (!name) return; /* a digested long name cannot be listed */
    const char *pat = r->scratch_len ? r->argv[r->scratch_len] : "*";
    size_t pl = r->scratch_len ? r->argvlen[r->scratch_len] : 1;
    /* As Redis, a lone "*" takes every key without matching (the empty key too). */
    if (!(pl == 1 && pat[0] == '*') && !glob_match(pat, pl, (const char *)name, nl, 0)) return;
    mc_add_bulk(r->aux, (const char *)name, nl);
    r->n1++;
}

/* KEYS pattern, SCAN cursor [MATCH p] [COUNT n] [TYPE t]: everything in one pass. */
static void keys_common(mc_req *r, int tag, const mc_resp *m, int scan)
{
    if (tag == MC_START) {
        r->n1 = 0;
        r->n2 = 1; /* listing wanted (SCAN TYPE other than string: none) */
        r->scratch_len = scan ? 0 : 1; /* argument index of the pattern */
        if (scan) {
            long long cur;
            if (!arg_ll(r, 1, &cur) && !(r->argvlen[1] > 0 && strspn(r->argv[1], "0123456789") == r->argvlen[1]))
                return mc_fail(r, "ERR invalid cursor");
            for (int j = 2; j < r->argc; j++) {
                if (j + 1 >= r->argc) return mc_fail(r, ERR_SYNTAX);
                if (arg_is(r, j, "match")) r->scratch_len = (size_t)(j + 1);
                else if (arg_is(r, j, "count")) {
                    long long n;
                    if (!arg_ll(r, j + 1, &n)) return mc_fail(r, ERR_NOT_INT);
                    if (n < 1) return mc_fail(r, ERR_SYNTAX);
                } else if (arg_is(r, j, "type")) {
                    if (!arg_is(r, j + 1, "string")) r->n2 = 0;
                } else {
                    return mc_fail(r, ERR_SYNTAX);
                }
                j++;
            }
        }
        r->aux = evbuffer_new();
        if (!r->aux) abort();
        return dump_start(r, 0);
    }
    if (dump_step(r, tag, m, collect_key)) return;
    struct evbuffer *keys = r->aux;
    if (scan) evbuffer_add(r->out, "*2\r\n$1\r\n0\r\n", 11);
    if (!r->n2) evbuffer_add(r->out, "*0\r\n", 4);
    else {
        evbuffer_add_printf(r->out, "*%lld\r\n", r->n1);
        evbuffer_add_buffer(r->out, keys);
    }
    mc_finish(r);
}

/* RANDOMKEY: one live key of the database picked uniformly over a dump
 * (reservoir sampling). Digested long names cannot be listed, so they are
 * never picked. */
static void pick_key(mc_req *r, const unsigned char *mk, size_t mkl, const unsigned char *name, size_t nl)
{
    (void)mk, (void)mkl;
    if (!name) return;
    if (random() % ++r->n1 != 0) return;
    evbuffer_drain(r->aux, evbuffer_get_length(r->aux));
    evbuffer_add(r->aux, name, nl);
}

static void h_randomkey(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        r->n1 = 0;
        r->aux = evbuffer_new();
        if (!r->aux) abort();
        return dump_start(r, 0);
    }
    if (dump_step(r, tag, m, pick_key)) return;
    if (r->n1 == 0) {
        mc_add_null(r->out);
    } else {
        size_t n = evbuffer_get_length(r->aux);
        mc_add_bulk(r->out, (const char *)evbuffer_pullup(r->aux, -1), n);
    }
    mc_finish(r);
}

static void h_keys(mc_req *r, int tag, const mc_resp *m) { keys_common(r, tag, m, 0); }
static void h_scan(mc_req *r, int tag, const mc_resp *m) { keys_common(r, tag, m, 1); }

/* ---- answered here ------------------------------------------------------------------ */

static void h_ping(mc_req *r, int tag, const mc_resp *m)
{
    (void)tag, (void)m;
    if (r->argc > 2) return mc_fail(r, "ERR wrong number of arguments for 'ping' command");
    if (r->argc == 2) mc_add_bulk(r->out, r->argv[1], r->argvlen[1]);
    else mc_add_simple(r->out, "PONG");
    mc_finish(r);
}

static void h_unsupported(mc_req *r, int tag, const mc_resp *m);

/* CONFIG RESETSTAT: the counters this backend keeps. */
static void h_config(mc_req *r, int tag, const mc_resp *m)
{
    (void)tag, (void)m;
    if (r->argvlen[1] != 9 || strncasecmp(r->argv[1], "resetstat", 9)) {
        h_unsupported(r, tag, m);
        return;
    }
    r->c->mb->expired_keys = 0;
    mc_add_simple(r->out, "OK");
    mc_finish(r);
}

static void h_echo(mc_req *r, int tag, const mc_resp *m)
{
    (void)tag, (void)m;
    mc_add_bulk(r->out, r->argv[1], r->argvlen[1]);
    mc_finish(r);
}

static void h_time(mc_req *r, int tag, const mc_resp *m)
{
    (void)tag, (void)m;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char a[24], b[24];
    int na = snprintf(a, sizeof(a), "%ld", (long)tv.tv_sec), nb = snprintf(b, sizeof(b), "%ld", (long)tv.tv_usec);
    evbuffer_add(r->out, "*2\r\n", 4);
    mc_add_bulk(r->out, a, (size_t)na);
    mc_add_bulk(r->out, b, (size_t)nb);
    mc_finish(r);
}

static void h_info(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        r->n1 = 0;
        return dump_start(r, 0);
    }
    if (dump_step(r, tag, m, count_key)) return;
    /* expired_keys: the items the proxy found past their deadline and deleted */
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "# Stats\r\nexpired_keys:%llu\r\n\r\n", r->c->mb->expired_keys);
    n += r->n1 ? snprintf(buf + n, sizeof(buf) - (size_t)n, "# Keyspace\r\ndb%d:keys=%lld,expires=%lld,avg_ttl=0\r\n",
                          r->db, r->n1, r->n2)
               : snprintf(buf + n, sizeof(buf) - (size_t)n, "# Keyspace\r\n");
    mc_add_bulk(r->out, buf, (size_t)n);
    mc_finish(r);
}

static void h_unsupported(mc_req *r, int tag, const mc_resp *m)
{
    (void)tag, (void)m;
    char err[200];
    size_t n = r->argvlen[0] > 100 ? 100 : r->argvlen[0];
    char name[101];
    for (size_t i = 0; i < n; i++) {
        char ch = r->argv[0][i];
        name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : (ch < 32 ? ' ' : ch);
    }
    name[n] = '\0';
    snprintf(err, sizeof(err), "ERR command '%s' is not supported by the memcached backend", name);
    mc_fail(r, err);
}

static const mc_cmd commands[] = {
    {"get", 2, h_get, MC_CMD_ONE_KEY},
    {"set", -3, h_set, MC_CMD_ONE_KEY},
    {"setnx", 3, h_setnx, MC_CMD_ONE_KEY},
    {"setex", 4, h_setex, MC_CMD_ONE_KEY},
    {"psetex", 4, h_psetex, MC_CMD_ONE_KEY},
    {"getset", 3, h_getset, MC_CMD_ONE_KEY},
    {"getdel", 2, h_getdel, MC_CMD_ONE_KEY},
    {"getex", -2, h_getex, MC_CMD_ONE_KEY},
    {"mget", -2, h_mget, 0},
    {"mset", -3, h_mset, 0},
    {"msetnx", -3, h_msetnx, 0},
    {"del", -2, h_del, 0},
    {"unlink", -2, h_del, 0},
    {"exists", -2, h_exists, 0},
    {"touch", -2, h_touch, 0},
    {"copy", -3, h_copy, 0},
    {"rename", 3, h_rename, 0},
    {"renamenx", 3, h_renamenx, 0},
    {"randomkey", 1, h_randomkey, MC_CMD_DUMP},
    {"type", 2, h_type, MC_CMD_ONE_KEY},
    {"strlen", 2, h_strlen, MC_CMD_ONE_KEY},
    {"ttl", 2, h_ttl, MC_CMD_ONE_KEY},
    {"pttl", 2, h_pttl, MC_CMD_ONE_KEY},
    {"expiretime", 2, h_expiretime, MC_CMD_ONE_KEY},
    {"pexpiretime", 2, h_pexpiretime, MC_CMD_ONE_KEY},
    {"persist", 2, h_persist, MC_CMD_ONE_KEY},
    {"expire", -3, h_expire, MC_CMD_ONE_KEY},
    {"pexpire", -3, h_pexpire, MC_CMD_ONE_KEY},
    {"expireat", -3, h_expireat, MC_CMD_ONE_KEY},
    {"pexpireat", -3, h_pexpireat, MC_CMD_ONE_KEY},
    {"incr", 2, h_incr, MC_CMD_ONE_KEY | MC_CMD_RMW},
    {"decr", 2, h_decr, MC_CMD_ONE_KEY | MC_CMD_RMW},
    {"incrby", 3, h_incrby, MC_CMD_ONE_KEY | MC_CMD_RMW},
    {"decrby", 3, h_decrby, MC_CMD_ONE_KEY | MC_CMD_RMW},
    {"incrbyfloat", 3, h_incrbyfloat, MC_CMD_ONE_KEY | MC_CMD_RMW},
    {"append", 3, h_append, MC_CMD_ONE_KEY | MC_CMD_RMW},
    {"setrange", 4, h_setrange, MC_CMD_ONE_KEY},
    {"getrange", 4, h_getrange, MC_CMD_ONE_KEY},
    {"substr", 4, h_getrange, MC_CMD_ONE_KEY},
    {"dbsize", 1, h_dbsize, MC_CMD_DUMP},
    {"flushall", -1, h_flushall, 0},
    {"flushdb", -1, h_flushdb, MC_CMD_DUMP},
    {"keys", 2, h_keys, MC_CMD_DUMP},
    {"scan", -2, h_scan, MC_CMD_DUMP},
    {"ping", -1, h_ping, 0},
    {"echo", 2, h_echo, 0},
    {"config", -2, h_config, 0},
    {"time", 1, h_time, 0},
    {"info", -1, h_info, MC_CMD_DUMP},
};

static void h_key_tokens(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        evbuffer_add_printf(r->out, "*%d\r\n", (r->argc - 1) / 2);
        for (int i = 1; i + 1 < r->argc; i += 2) {
            unsigned char k[MC_MAPPED_MAX];
            size_t kl = mc_map_key(atoi(r->argv[i]), r->argv[i + 1], r->argvlen[i + 1], k);
            mc_issue_mg_key(r, k, kl, MG_META, i);
        }
        return;
    }
    /* Replies arrive in key order. A key past its deadline is missing: 0. */
    item it;
    if (!item_of(m, &it) || (it.present && !m->has_c)) return store_error(r, m);
    if (it.present && !it.live) {
        unsigned char k[MC_MAPPED_MAX];
        expire_if_dead(r, &it, k, mc_map_key(atoi(r->argv[tag]), r->argv[tag + 1], r->argvlen[tag + 1], k));
    }
    mc_add_int(r->out, it.live && it.present ? (long long)it.cas : 0);
    if (r->pending == 0) mc_finish(r);
}

const mc_cmd mc_key_tokens_cmd = {"key-tokens", -1, h_key_tokens, 0};

static const mc_cmd unsupported = {"", -1, h_unsupported, 0};

/* ---- key images for the undo journal ----------------------------------------------- */

/* [value, flags, ms left (-1: none)]; flags carry MC_IMAGE_EXACT when the
 * ms are the exact deadline's, else they are memcached's whole seconds
 * (headroom included). */
static void h_image_read(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) return mc_issue_mg(r, "v " MG_META, 1);
    item it;
    int live = one_item(r, m, &it);
    if (live < 0) return;
    if (!live || !is(m, "VA")) {
        mc_add_null(r->out);
        return mc_finish(r);
    }
    evbuffer_add(r->out, "*3\r\n", 4);
    mc_add_bulk(r->out, m->val, m->vlen);
    unsigned long long fl = it.flags;
    if (it.exact)
        fl |= MC_IMAGE_EXACT | ((unsigned long long)it.deadline & ((1ULL << MC_IMAGE_DL_BITS) - 1)) << MC_IMAGE_DL_SHIFT;
    mc_add_int(r->out, (long long)fl);
    mc_add_int(r->out, it.t < 0 ? -1 : it.exact ? item_pttl(&it) : it.t * 1000);
    mc_finish(r);
}

static void h_image_write(mc_req *r, int tag, const mc_resp *m)
{
    if (tag == MC_START) {
        if (r->argc == 2) return mc_issue_md(r, "", 1);
        long long left = -1, fl = 0;
        if (!arg_ll(r, 4, &left)) left = -1;
        if (!arg_ll(r, 3, &fl)) fl = 0;
        unsigned long long F = (unsigned long long)fl & 0xFFFFFFFFULL;
        long long T = 0;
        if (left >= 0 && (fl & (long long)MC_IMAGE_EXACT)) {
            /* the deadline whose low bits the image kept, nearest to now + left */
            long long mod = 1LL << MC_IMAGE_DL_BITS, low = (fl >> MC_IMAGE_DL_SHIFT) & (mod - 1);
            long long approx = mc_now_ms() + left;
            long long D = approx - (((approx - low) % mod) + mod) % mod;
            if (approx - D > mod / 2) D += mod;
            T = T_from_abs_ms(D);
            F = F_for(D, T, F);
        } else if (left >= 0) {
            T = T_keep((left + 999) / 1000);
        }
        char f[96], tf[64];
        TF_flags(tf, sizeof(tf), T, F);
        snprintf(f, sizeof(f), "%s", tf[0] ? tf + 1 : "");
        return mc_issue_ms(r, r->argv[2], r->argvlen[2], f, 1);
    }
    if (is(m, "HD") || is(m, "NF")) mc_add_simple(r->out, "OK");
    else return store_error(r, m);
    mc_finish(r);
}

static const mc_cmd image_cmds[2] = {{"image", 2, h_image_read, MC_CMD_ONE_KEY}, {"image", -2, h_image_write, MC_CMD_ONE_KEY}};

const mc_cmd *mc_journal_cmd(int restore) { return &image_cmds[restore ? 1 : 0]; }

/* r->n1: the CAS of the item found past its deadline; 0 when the read
 * did not ask for it: then it is read again (and deleted only if it is
 * still past its deadline). */
static void h_lazy_expire(mc_req *r, int tag, const mc_resp *m)
{
    char f[40];
    if (tag == MC_START && r->n1 == 0) return mc_issue_mg(r, MG_META, 2);
    if (tag == 2) {
        item it;
        if (!item_of(m, &it) || !it.present || it.live) return mc_finish(r);
        r->n1 = (long long)it.cas;
    }
    if (tag == MC_START || tag == 2) {
        snprintf(f, sizeof(f), "C%llu", (unsigned long long)r->n1);
        return mc_issue_md(r, f, 1);
    }
    if (is(m, "HD")) r->c->mb->expired_keys++;
    mc_finish(r); /* EX, NF: written or deleted since; nothing to do */
}

const mc_cmd mc_lazy_expire_cmd = {"lazy-expire", 0, h_lazy_expire, MC_CMD_ONE_KEY};

const mc_cmd *mc_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strlen(commands[i].name) == len && !strncasecmp(commands[i].name, name, len)) return &commands[i];
    return &unsupported;
}
