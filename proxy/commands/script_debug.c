/* SCRIPT DEBUG YES's private copies (see script_debug.h). */
#include "proxy/commands/script_debug.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "proxy/core/config.h"
#include "proxy/core/dispatch.h"
#include "proxy/core/server.h"

typedef struct priv_key {
    int db;
    char *orig, *name; /* the key and its copy's name */
    size_t olen, nlen;
} priv_key;

struct ldb_private {
    unsigned long long session;
    priv_key *keys;
    int nkeys, capkeys;
    /* the pending call: its rewritten arguments and the copies it waits for */
    char **argv;
    size_t *argvlen;
    int argcap;
    int pending;
    const char *err;
    ldb_ready_fn *ready;
    void *ctx;
    int freed; /* freed while copies were in flight: the last one frees it */
};

static unsigned sessions;

unsigned ldb_private_sessions(void) { return sessions; }

ldb_private *ldb_private_new(unsigned long long session)
{
    if (sessions >= (unsigned)config.lua_debug_sessions_max) return NULL;
    ldb_private *p = calloc(1, sizeof(*p));
    if (!p) abort();
    p->session = session;
    sessions++;
    return p;
}

static void release(ldb_private *p)
{
    for (int i = 0; i < p->nkeys; i++) {
        free(p->keys[i].orig);
        free(p->keys[i].name);
    }
    free(p->keys);
    free(p->argv);
    free(p->argvlen);
    free(p);
}

void ldb_private_free(ldb_private *p)
{
    if (!p) return;
    sessions--;
    backend *b = server.backend;
    int conn = backend_pick(b, (unsigned)p->session);
    for (int i = 0; i < p->nkeys && conn >= 0; i++) {
        char *v[2] = {"DEL", p->keys[i].name};
        size_t l[2] = {3, p->keys[i].nlen};
        backend_send(b, conn, p->keys[i].db, 2, v, l, BACKEND_RAW, NULL, NULL);
    }
    if (p->pending) {
        p->freed = 1;
        return;
    }
    release(p);
}

static priv_key *find(ldb_private *p, int db, const char *key, size_t len)
{
    for (int i = 0; i < p->nkeys; i++)
        if (p->keys[i].db == db && p->keys[i].olen == len && !memcmp(p->keys[i].orig, key, len)) return &p->keys[i];
    return NULL;
}

static priv_key *add(ldb_private *p, int db, const char *key, size_t len)
{
    if (p->nkeys == p->capkeys) {
        p->capkeys = p->capkeys ? p->capkeys * 2 : 8;
        p->keys = realloc(p->keys, sizeof(priv_key) * (size_t)p->capkeys);
        if (!p->keys) abort();
    }
    priv_key *k = &p->keys[p->nkeys++];
    k->db = db;
    k->orig = malloc(len + 1);
    char head[64];
    int hl = snprintf(head, sizeof(head), LDB_PRIVATE_PREFIX "%llu:", p->session);
    k->name = malloc((size_t)hl + len + 1);
    if (!k->orig || !k->name) abort();
    memcpy(k->orig, key, len);
    k->orig[len] = '\0';
    memcpy(k->name, head, (size_t)hl);
    memcpy(k->name + hl, key, len);
    k->name[hl + (int)len] = '\0';
    k->olen = len;
    k->nlen = (size_t)hl + len;
    return k;
}

static void step_done(ldb_private *p, const char *err)
{
    if (err && !p->err) p->err = err;
    if (--p->pending) return;
    if (p->freed) {
        release(p);
        return;
    }
    p->ready(p->ctx, p->err);
}

static void restored_cb(void *ctx, const backend_reply *r)
{
    ldb_private *p = ctx;
    step_done(p, r->error ? "ERR the store failed while copying a key for the debugging session" : NULL);
}

typedef struct copy_op {
    ldb_private *p;
    priv_key *unused;
    int db, conn, index;
} copy_op;

static void image_cb(void *ctx, backend_image *img, const char *error)
{
    copy_op *op = ctx;
    ldb_private *p = op->p;
    if (!img || p->freed) {
        backend_image_free(img);
        free(op);
        step_done(p, img ? NULL : "ERR the store failed while copying a key for the debugging session");
        return;
    }
    priv_key *k = &p->keys[op->index];
    if (backend_restore(server.backend, op->conn, op->db, p->session, k->name, k->nlen, img, restored_cb, p) != 0) {
        backend_image_free(img);
        free(op);
        step_done(p, backend_error(server.backend));
        return;
    }
    backend_image_free(img);
    free(op);
}

int ldb_private_prepare(ldb_private *p, const command_def *cmd, int db, int *argc, char ***argv, size_t **argvlen,
                        ldb_ready_fn *ready, void *ctx)
{
    p->err = NULL;
    p->ready = ready;
    p->ctx = ctx;
    if (command_is_keyspace_wide(cmd)) {
        /* A private copy holds only the keys the session touched. */
        ready(ctx, "ERR this command reaches the whole keyspace and cannot run in a SCRIPT DEBUG YES "
                   "session (its writes are private); use SCRIPT DEBUG SYNC");
        return 1;
    }
    if (*argc > p->argcap) {
        p->argcap = *argc;
        p->argv = realloc(p->argv, sizeof(char *) * (size_t)p->argcap);
        p->argvlen = realloc(p->argvlen, sizeof(size_t) * (size_t)p->argcap);
        if (!p->argv || !p->argvlen) abort();
    }
    memcpy(p->argv, *argv, sizeof(char *) * (size_t)*argc);
    memcpy(p->argvlen, *argvlen, sizeof(size_t) * (size_t)*argc);
    int stack_keys[32], *keys = stack_keys;
    int n = cmd->key_spec_count || cmd->getkeys ? command_get_keys(cmd, *argc, *argv, *argvlen, keys, NULL, 32) : 0;
    if (n > 32) {
        keys = malloc(sizeof(int) * (size_t)n);
        if (!keys) abort();
        n = command_get_keys(cmd, *argc, *argv, *argvlen, keys, NULL, n);
    }
    backend *b = server.backend;
    int conn = backend_pick(b, (unsigned)p->session);
    p->pending = 1; /* held until every copy is queued */
    for (int i = 0; i < n; i++) {
        int at = keys[i];
        priv_key *k = find(p, db, (*argv)[at], (*argvlen)[at]);
        if (!k) {
            k = add(p, db, (*argv)[at], (*argvlen)[at]);
            copy_op *op = malloc(sizeof(*op));
            if (!op) abort();
            *op = (copy_op){p, NULL, db, conn, (int)(k - p->keys)};
            if (conn < 0 || backend_capture(b, conn, db, p->session, k->orig, k->olen, image_cb, op) != 0) {
                free(op);
                if (!p->err) p->err = backend_error(b);
            } else {
                p->pending++;
            }
        }
        p->argv[at] = k->name;
        p->argvlen[at] = k->nlen;
    }
    if (keys != stack_keys) free(keys);
    *argv = p->argv;
    *argvlen = p->argvlen;
    if (p->pending == 1) {
        p->pending = 0;
        ready(ctx, p->err);
        return 1;
    }
    p->pending--;
    return 0;
}
