#include "proxy/core/store_refusal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "backends/backend.h"
#include "proxy/core/server.h"
#include "util/clock.h"

/* How long after the last sign the store may refuse writes the proxy keeps asking. */
#define WATCH_MS 60000

static long long watch_until_ms; /* 0: not watching */

static const char OOM_ERROR[] = "OOM command not allowed when used memory > 'maxmemory'.";
static const char NOREPLICAS_ERROR[] = "NOREPLICAS Not enough good replicas to write.";
static const char READONLY_ERROR[] = "READONLY You can't write against a read only replica.";

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
        store_refusal_note_change();
        return 1;
    }
    /* Refused before it ran, though not a refusal of writes. */
    return starts(err, len, "LOADING ") || starts(err, len, "MASTERDOWN ");
}

void store_refusal_note_change(void) { watch_until_ms = clock_ms() + WATCH_MS; }

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
                store_refusal_note_change();
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
