#include "proxy/core/store_refusal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "backends/backend.h"
#include "proxy/core/server.h"
#include "util/clock.h"
#include "util/strconv.h"

/* How long after the last sign the store may refuse writes the proxy keeps asking. */
#define WATCH_MS 60000

static long long watch_until_ms; /* 0: not watching */

/* After a change of the store's settings, one INFO tells whether it can
 * refuse writes at all; a store that cannot ends the watch at once. Every
 * check asked while the watch is on is a round trip before the command, so
 * the watch stays on only where it can matter. */
static struct event *probe_ev;
static unsigned long long probe_gen; /* bumped by every sign; a probe answers for its own */
static unsigned long long probe_client; /* whose change: the probe follows it on its connection */

static const char OOM_ERROR[] = "OOM command not allowed when used memory > 'maxmemory'.";
static const char NOREPLICAS_ERROR[] = "NOREPLICAS Not enough good replicas to write.";
static const char READONLY_ERROR[] = "READONLY You can't write against a read only replica.";

static void watch_on(void)
{
    watch_until_ms = clock_ms() + WATCH_MS;
    probe_gen++;
}

static int starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && !memcmp(s, prefix, n);
}

/* Redis 7.0's text for a refusal of writes (err without '-'), or NULL for
 * any other error. Older stores word OOM and NOREPLICAS their own way. */
static const char *refusal_text(const char *err, size_t len)
{
    if (starts(err, len, "OOM ")) return OOM_ERROR;
    if (starts(err, len, "NOREPLICAS ")) return NOREPLICAS_ERROR;
    if (starts(err, len, "READONLY ")) return READONLY_ERROR;
    if (starts(err, len, "MISCONF ")) return "";
    if (starts(err, len, "ERR ") && memmem(err, len, "used memory > 'maxmemory'", 25)) return OOM_ERROR;
    return NULL;
}

int store_refusal_note_error(const char *err, size_t len)
{
    switch (len ? err[0] : 0) {
    case 'O': case 'N': case 'R': case 'M': case 'E': case 'L': break;
    default: return 0;
    }
    if (refusal_text(err, len)) {
        watch_on();
        return 1;
    }
    /* Refused before it ran, though not a refusal of writes. */
    return starts(err, len, "LOADING ") || starts(err, len, "MASTERDOWN ");
}

static int info_is(const char *info, size_t len, const char *name, const char *value)
{
    size_t vlen;
    const char *v = info_text_field(info, len, name, &vlen);
    return v && vlen == strlen(value) && !memcmp(v, value, vlen);
}

/* Whether a store with this INFO may refuse a write: a memory limit,
 * a replica, a minimum of good replicas, a failed save or AOF write. A
 * field missing (an older store's INFO) leaves the watch on. */
static int info_may_refuse(const char *info, size_t len)
{
    if (!info_is(info, len, "maxmemory", "0") || !info_is(info, len, "role", "master")) return 1;
    if (info_text_field(info, len, "min_slaves_good_slaves", NULL)) return 1;
    return info_is(info, len, "rdb_last_bgsave_status", "err") || info_is(info, len, "aof_last_write_status", "err");
}

static void probe_cb(void *ctx, const backend_reply *r)
{
    unsigned long long gen = (unsigned long long)(uintptr_t)ctx;
    if (r->error || gen != probe_gen || !watch_until_ms) return;
    if (!r->parsed || r->parsed->type != REDIS_REPLY_STRING) return;
    if (!info_may_refuse(r->parsed->str, r->parsed->len)) watch_until_ms = 0;
}

static void probe_send(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    backend *b = server.backend;
    if (!b || !b->one_store || backend_is_memcached(b) || !watch_until_ms) return;
    int conn = backend_pick(b, (unsigned)probe_client);
    char *argv[1] = {"INFO"};
    size_t lens[1] = {4};
    if (conn >= 0)
        backend_send(b, conn, 0, 1, argv, lens, BACKEND_PARSED, probe_cb, (void *)(uintptr_t)probe_gen);
}

void store_refusal_note_change(unsigned long long client_id)
{
    watch_on();
    probe_client = client_id;
    /* On the next loop turn: the change (relayed in this one) reaches the
     * store first. */
    if (!server.base) return;
    if (!probe_ev) probe_ev = evtimer_new(server.base, probe_send, NULL);
    if (!probe_ev) abort();
    static const struct timeval soon = {0, 0};
    evtimer_add(probe_ev, &soon);
}

typedef struct refusal_check {
    store_refusal_fn *fn;
    void *ctx;
    int checks;
} refusal_check;

static void check_cb(void *ctx, const backend_reply *r)
{
    refusal_check *rc = ctx;
    const char *error = NULL;
    char line[512];
    if (!r->error && r->raw_len > 1) {
        size_t n = r->raw_len < sizeof(line) ? r->raw_len : sizeof(line) - 1;
        evbuffer_copyout(r->raw, line, n);
        line[n] = '\0';
        if (line[0] == '-') {
            char *end = strstr(line, "\r\n");
            size_t len = end ? (size_t)(end - line) - 1 : n - 1;
            line[1 + len] = '\0';
            error = refusal_text(line + 1, len);
            if (error) {
                watch_on();
                if (!*error) error = line + 1; /* MISCONF: the store's own words */
            }
        }
    }
    int oom = error == OOM_ERROR;
    /* The store checks memory first: any other refusal means memory is fine. */
    if (error && !oom && !(rc->checks & STORE_CHECK_WRITE)) error = NULL;
    /* A store that could not be asked (down, or the proxy stopping): its
     * error is the answer, and nothing more is sent to it from here. */
    if (r->error) error = r->error;
    rc->fn(rc->ctx, error, oom);
    free(rc);
}

int store_refusal_wanted(int checks)
{
    if (!checks || !watch_until_ms) return 0;
    if (clock_recent_ms() >= watch_until_ms) {
        watch_until_ms = 0;
        return 0;
    }
    backend *b = server.backend;
    return b && !backend_is_memcached(b);
}

int store_refusal_check(int checks, int db, const char *key, size_t keylen, store_refusal_fn *fn, void *ctx)
{
    if (!store_refusal_wanted(checks)) return 0;
    backend *b = server.backend;
    if (!key) {
        key = "evalproxy:write-check";
        keylen = strlen(key);
    }
    /* Writes that change nothing: SETRANGE of nothing is checked for memory
     * (deny-oom) as well; an empty ZREMRANGEBYSCORE range is not. */
    char *oom_argv[4] = {"SETRANGE", (char *)key, "0", ""};
    size_t oom_lens[4] = {8, keylen, 1, 0};
    char *write_argv[4] = {"ZREMRANGEBYSCORE", (char *)key, "(1", "(1"};
    size_t write_lens[4] = {16, keylen, 2, 2};
    int oom = checks & STORE_CHECK_OOM;
    int conn = backend_pick(b, 0);
    if (conn < 0) return 0;
    refusal_check *rc = malloc(sizeof(*rc));
    if (!rc) abort();
    rc->fn = fn;
    rc->ctx = ctx;
    rc->checks = checks;
    if (backend_send(b, conn, db, 4, oom ? oom_argv : write_argv, oom ? oom_lens : write_lens, BACKEND_RAW, check_cb,
                     rc) != 0) {
        free(rc);
        return 0;
    }
    return 1;
}
