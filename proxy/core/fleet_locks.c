#include "proxy/core/fleet_locks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "fleet/fleet.h"

struct remote_lock {
    backend *peer;
    int conn;   /* its own connection to the member, or -1 */
    int state;  /* RL_* */
    remote_lock_fn *fn;
    void *ctx;
    int argc, cap;
    char **argv;
    size_t *argvlen;
    char mode[4], ks[4];
    char (*dbs)[12];
    int ndbs;
    int units_at; /* argv index of the first unit */
    char *run_tag;
};

enum { RL_NEW = 0, RL_WAITING, RL_GRANTED, RL_DONE };

static void push(remote_lock *rl, char *s, size_t len)
{
    if (rl->argc == rl->cap) {
        rl->cap = rl->cap ? rl->cap * 2 : 16;
        rl->argv = realloc(rl->argv, sizeof(*rl->argv) * (size_t)rl->cap);
        rl->argvlen = realloc(rl->argvlen, sizeof(*rl->argvlen) * (size_t)rl->cap);
        if (!rl->argv || !rl->argvlen) abort();
    }
    rl->argv[rl->argc] = s;
    rl->argvlen[rl->argc++] = len;
}

remote_lock *remote_lock_new(int member, int mode, int keyspace, const char *run_tag)
{
    backend *peer = fleet_peer(member);
    if (!peer) return NULL;
    remote_lock *rl = calloc(1, sizeof(*rl));
    if (!rl) abort();
    rl->peer = peer;
    rl->conn = -1;
    snprintf(rl->mode, sizeof(rl->mode), "%d", mode);
    snprintf(rl->ks, sizeof(rl->ks), "%d", keyspace ? 1 : 0);
    push(rl, "FLEET", 5);
    push(rl, "LOCK", 4);
    push(rl, rl->mode, strlen(rl->mode));
    push(rl, rl->ks, 1);
    if (run_tag) {
        /* The tag is copied: the request may outlive the run's memory. */
        size_t n = strlen(run_tag);
        char *t = malloc(n + 1);
        if (!t) abort();
        memcpy(t, run_tag, n + 1);
        rl->run_tag = t;
        push(rl, "RUN", 3);
        push(rl, t, n);
    }
    rl->units_at = rl->argc;
    return rl;
}

void remote_lock_add(remote_lock *rl, int db, const char *name, size_t len)
{
    /* Database numbers as text, kept until the request is sent. */
    rl->dbs = realloc(rl->dbs, sizeof(*rl->dbs) * (size_t)(rl->ndbs + 1));
    if (!rl->dbs) abort();
    int n = snprintf(rl->dbs[rl->ndbs], sizeof(rl->dbs[0]), "%d", db);
    rl->ndbs++;
    push(rl, NULL, (size_t)n); /* pointed at below: dbs may move while it grows */
    push(rl, (char *)name, len);
}

static void lock_reply_cb(void *ctx, const backend_reply *br)
{
    remote_lock *rl = ctx;
    int ok = !br->error && br->parsed && br->parsed->type == REDIS_REPLY_STATUS;
    if (!rl->fn) return; /* given up: FLEET UNLOCK follows */
    rl->state = ok ? RL_GRANTED : RL_DONE;
    if (rl->fn) rl->fn(rl->ctx, ok);
}

int remote_lock_send(remote_lock *rl, remote_lock_fn *fn, void *ctx)
{
    rl->fn = fn;
    rl->ctx = ctx;
    for (int i = rl->units_at, d = 0; i < rl->argc; i += 2, d++) rl->argv[i] = rl->dbs[d];
    rl->conn = backend_open_dedicated(rl->peer);
    if (rl->conn < 0) return -1;
    if (backend_send(rl->peer, rl->conn, 0, rl->argc, rl->argv, rl->argvlen, BACKEND_PARSED, lock_reply_cb, rl) != 0) {
        backend_release_dedicated(rl->peer, rl->conn, 0);
        rl->conn = -1;
        return -1;
    }
    rl->state = RL_WAITING;
    return 0;
}

static void unlock_reply_cb(void *ctx, const backend_reply *br)
{
    remote_lock *rl = ctx;
    int ok = !br->error && br->parsed && br->parsed->type == REDIS_REPLY_STATUS;
    backend_release_dedicated(rl->peer, rl->conn, ok);
    free(rl);
}

void remote_lock_free(remote_lock *rl)
{
    if (!rl) return;
    free(rl->argv);
    free(rl->argvlen);
    free(rl->dbs);
    free(rl->run_tag);
    rl->run_tag = NULL;
    rl->argv = NULL;
    rl->argvlen = NULL;
    rl->dbs = NULL;
    if (rl->state == RL_GRANTED && rl->conn >= 0) {
        /* The connection is kept for the next request once UNLOCK is answered. */
        static char *unlock[2] = {"FLEET", "UNLOCK"};
        static const size_t unlock_len[2] = {5, 6};
        rl->fn = NULL;
        if (backend_send(rl->peer, rl->conn, 0, 2, unlock, unlock_len, BACKEND_PARSED, unlock_reply_cb, rl) == 0)
            return;
    }
    if (rl->state == RL_WAITING && rl->conn >= 0) {
        /* Given up while waiting: FLEET UNLOCK behind the request, never a
         * closed connection, which the member would take for a vanished
         * run (and undo it). The request's answer comes first. */
        static char *unlock[2] = {"FLEET", "UNLOCK"};
        static const size_t unlock_len[2] = {5, 6};
        rl->fn = NULL;
        rl->state = RL_DONE;
        if (backend_send(rl->peer, rl->conn, 0, 2, unlock, unlock_len, BACKEND_PARSED, unlock_reply_cb, rl) == 0)
            return;
    }
    /* Failed: closing the connection gives up everything there. */
    if (rl->conn >= 0) backend_release_dedicated(rl->peer, rl->conn, 0);
    free(rl);
}

void remote_lock_drop(remote_lock *rl)
{
    if (!rl) return;
    rl->state = RL_DONE; /* closed, never unlocked */
    remote_lock_free(rl);
}
