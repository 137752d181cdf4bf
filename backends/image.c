/* Key images for an undo journal on RESP stores: DUMP and PTTL read what a
 * key was, pipelined just before the write that changes it; RESTORE ...
 * REPLACE (or DEL for a key that did not exist) puts it back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "backends/backend.h"
#include "util/clock.h"

void backend_image_free(backend_image *img)
{
    if (!img) return;
    free(img->data);
    free(img);
}

/* What each reply of a capture answers, in the order they were sent. */
enum cap_step { CAP_DUMP, CAP_TYPE, CAP_GET, CAP_LIST, CAP_HASH, CAP_SET, CAP_ZSET, CAP_STREAM, CAP_PTTL, CAP_TTL };
#define CAP_MAX_STEPS 10

typedef struct capture_req {
    backend *b;
    backend_image_fn *fn; /* NULL: a later send failed, nobody waits */
    void *ctx;
    backend_image *img;
    int dump_ok;  /* DUMP answered: its payload is the image */
    char type;    /* TYPE's answer as an image kind, 0 none yet, '-' no key */
    unsigned char steps[CAP_MAX_STEPS];
    int nsteps, next;
    struct evbuffer *elems; /* the typed read's elements */
    char err[256];
} capture_req;

static void capture_fail(capture_req *cr, const char *why)
{
    if (!cr->err[0]) snprintf(cr->err, sizeof(cr->err), "%s", why);
}

static void capture_free(capture_req *cr)
{
    backend_image_free(cr->img);
    if (cr->elems) evbuffer_free(cr->elems);
    free(cr);
}

/* Typed images hold their elements as a 4-byte length and the bytes each. */
static void elem_add(struct evbuffer *out, const char *p, size_t len)
{
    uint32_t n = (uint32_t)len;
    evbuffer_add(out, &n, sizeof(n));
    evbuffer_add(out, p, len);
}

static int elems_add(struct evbuffer *out, const redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        elem_add(out, r->str, r->len);
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY) return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_ARRAY) {
            /* a stream entry: its id, then how many field/value strings, then them */
            if (e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[1]->type != REDIS_REPLY_ARRAY)
                return -1;
            char num[24];
            int n = snprintf(num, sizeof(num), "%zu", e->element[1]->elements);
            elem_add(out, e->element[0]->str, e->element[0]->len);
            elem_add(out, num, (size_t)n);
            if (elems_add(out, e->element[1]) != 0) return -1;
        } else if (e->type == REDIS_REPLY_STRING) {
            elem_add(out, e->str, e->len);
        } else {
            return -1;
        }
    }
    return 0;
}

static char kind_of_type(const char *t)
{
    static const struct { const char *name; char kind; } kinds[] = {
        {"string", 's'}, {"list", 'l'}, {"hash", 'h'}, {"set", 'S'}, {"zset", 'z'}, {"stream", 'x'}, {"none", '-'},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(t, kinds[i].name)) return kinds[i].kind;
    return '?';
}

static const char step_kind[] = {[CAP_GET] = 's', [CAP_LIST] = 'l', [CAP_HASH] = 'h', [CAP_SET] = 'S',
                                 [CAP_ZSET] = 'z', [CAP_STREAM] = 'x'};

static void capture_done(capture_req *cr)
{
    backend_image *img = cr->img;
    if (!cr->err[0] && !cr->dump_ok) {
        /* The typed reads are the image. */
        if (cr->type == '?' || !cr->type) capture_fail(cr, "ERR key of a type the journal cannot read");
        else if (cr->type != '-' && !cr->elems) capture_fail(cr, "ERR key changed while read");
        else if (cr->type != '-') {
            img->exists = 1;
            img->kind = cr->type;
            img->len = evbuffer_get_length(cr->elems);
            img->data = malloc(img->len ? img->len : 1);
            if (!img->data) abort();
            evbuffer_remove(cr->elems, img->data, img->len);
        }
    }
    if (cr->err[0]) {
        cr->fn(cr->ctx, NULL, cr->err);
    } else {
        cr->img = NULL;
        cr->fn(cr->ctx, img, NULL);
    }
    capture_free(cr);
}

static void capture_cb(void *ctx, const backend_reply *r)
{
    capture_req *cr = ctx;
    int step = cr->steps[cr->next++];
    int last = cr->next == cr->nsteps;
    if (!cr->fn) {
        if (last) capture_free(cr);
        return;
    }
    const redisReply *p = r->parsed;
    if (r->error) {
        capture_fail(cr, r->error);
    } else if (step == CAP_DUMP) {
        if (p->type == REDIS_REPLY_ERROR && cr->b->has_dump <= 0 && strstr(p->str, "unknown command")) {
            cr->b->has_dump = -1; /* the typed reads sent with it make the image */
        } else if (p->type == REDIS_REPLY_STRING || p->type == REDIS_REPLY_NIL) {
            cr->b->has_dump = 1;
            cr->dump_ok = 1;
            if (p->type == REDIS_REPLY_STRING) {
                cr->img->exists = 1;
                cr->img->len = p->len;
                cr->img->data = malloc(p->len ? p->len : 1);
                if (!cr->img->data) abort();
                memcpy(cr->img->data, p->str, p->len);
            }
        } else {
            capture_fail(cr, p->type == REDIS_REPLY_ERROR ? p->str : "ERR unexpected reply to DUMP");
        }
    } else if (step == CAP_TYPE) {
        cr->type = p->type == REDIS_REPLY_STATUS ? kind_of_type(p->str) : '?';
    } else if (step == CAP_PTTL && p->type == REDIS_REPLY_ERROR && !cr->dump_ok && strstr(p->str, "unknown command")) {
        cr->b->has_pttl = -1; /* before 2.6: TTL, sent with it, tells */
    } else if (step == CAP_TTL) {
        /* Whole seconds, rounded up so that the key never goes early. */
        if (p->type == REDIS_REPLY_INTEGER && p->integer >= 0 && cr->img->ttl_ms < 0)
            cr->img->ttl_ms = p->integer * 1000 + 999;
    } else if (step == CAP_PTTL) {
        if (p->type == REDIS_REPLY_INTEGER) cr->b->has_pttl = 1;
        if (p->type != REDIS_REPLY_INTEGER) capture_fail(cr, "ERR unexpected reply to PTTL");
        else if (p->integer == -2 && cr->dump_ok && cr->img->exists) capture_fail(cr, "ERR key expired while read");
        else cr->img->ttl_ms = p->integer >= 0 ? p->integer : -1;
    } else if (!cr->dump_ok && step_kind[step] == cr->type) {
        if (!cr->elems) cr->elems = evbuffer_new();
        if (!cr->elems) abort();
        if (elems_add(cr->elems, p) != 0) capture_fail(cr, "ERR unexpected reply reading a key");
    }
    if (last) capture_done(cr);
}

int backend_resp_capture(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         backend_image_fn *fn, void *ctx)
{
    capture_req *cr = calloc(1, sizeof(*cr));
    if (!cr) abort();
    cr->b = b;
    cr->fn = fn;
    cr->ctx = ctx;
    cr->img = calloc(1, sizeof(*cr->img));
    if (!cr->img) abort();
    cr->img->ttl_ms = -1;
    cr->img->read_ms = clock_ms();
    /* DUMP where the store has it; each type's own reads where it does not
     * (until the first DUMP answer tells, both: no round trip is added). */
    static const struct { int step; int argc; const char *argv[6]; } cmds[] = {
        {CAP_DUMP, 2, {"DUMP"}},
        {CAP_TYPE, 2, {"TYPE"}},
        {CAP_GET, 2, {"GET"}},
        {CAP_LIST, 4, {"LRANGE", NULL, "0", "-1"}},
        {CAP_HASH, 2, {"HGETALL"}},
        {CAP_SET, 2, {"SMEMBERS"}},
        {CAP_ZSET, 5, {"ZRANGE", NULL, "0", "-1", "WITHSCORES"}},
        {CAP_STREAM, 4, {"XRANGE", NULL, "-", "+"}},
        {CAP_PTTL, 2, {"PTTL"}},
        {CAP_TTL, 2, {"TTL"}},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        int step = cmds[i].step;
        if (step == CAP_DUMP && b->has_dump < 0) continue;
        if (step != CAP_DUMP && step != CAP_PTTL && b->has_dump > 0) continue;
        if (step == CAP_PTTL && b->has_pttl < 0) continue;
        if (step == CAP_TTL && (b->has_pttl > 0 || b->has_dump > 0)) continue; /* only where PTTL may be missing */
        cr->steps[cr->nsteps++] = (unsigned char)step;
    }
    for (int i = 0; i < cr->nsteps; i++) {
        const char *av[6];
        size_t al[6];
        int argc = cmds[cr->steps[i]].argc;
        for (int k = 0; k < argc; k++) {
            av[k] = k == 1 ? key : cmds[cr->steps[i]].argv[k];
            al[k] = k == 1 ? len : strlen(av[k]);
        }
        if (b->ops->send(b, conn, db, session, argc, (char **)av, al, BACKEND_PARSED, capture_cb, cr) != 0) {
            if (i == 0) {
                capture_free(cr);
                return -1;
            }
            /* The replies of what went out still come: the last one frees. */
            cr->fn = NULL;
            cr->nsteps = i;
            return -1;
        }
    }
    return 0;
}

/* The TTL left now of a key read at img->read_ms: -1 none, 0 already gone. */
static long long ttl_left(const backend_image *img)
{
    if (img->ttl_ms < 0) return -1;
    long long left = img->ttl_ms - (clock_ms() - img->read_ms);
    return left > 0 ? left : 0;
}

/* A typed image goes back as DEL, the type's own writes and PEXPIRE; its
 * caller hears once, after the last, with the first error if any. */
typedef struct restore_req {
    backend_reply_fn *fn;
    void *ctx;
    int left;
    char err[256];
} restore_req;

static void restore_cb(void *ctx, const backend_reply *r)
{
    restore_req *rr = ctx;
    if (!rr->err[0]) {
        if (r->error) snprintf(rr->err, sizeof(rr->err), "%s", r->error);
        else if (r->parsed && r->parsed->type == REDIS_REPLY_ERROR) snprintf(rr->err, sizeof(rr->err), "%s", r->parsed->str);
    }
    if (--rr->left) return;
    backend_reply br = {0};
    redisReply ok = {.type = REDIS_REPLY_STATUS, .str = "OK", .len = 2};
    if (rr->err[0]) br.error = rr->err;
    else br.parsed = &ok;
    if (rr->fn) rr->fn(rr->ctx, &br);
    free(rr);
}

/* The elements of a typed image, in order. */
typedef struct elems {
    char **v;
    size_t *l;
    size_t n;
} elems;

static int elems_split(const backend_image *img, elems *e)
{
    size_t cap = 0, at = 0;
    memset(e, 0, sizeof(*e));
    while (at < img->len) {
        uint32_t n;
        if (img->len - at < sizeof(n)) return -1;
        memcpy(&n, img->data + at, sizeof(n));
        at += sizeof(n);
        if (img->len - at < n) return -1;
        if (e->n == cap) {
            cap = cap ? cap * 2 : 16;
            e->v = realloc(e->v, sizeof(*e->v) * (cap + 2));
            e->l = realloc(e->l, sizeof(*e->l) * (cap + 2));
            if (!e->v || !e->l) abort();
        }
        e->v[e->n] = img->data + at;
        e->l[e->n++] = n;
        at += n;
    }
    return 0;
}

static int send_one(backend *b, int conn, int db, unsigned long long session, restore_req *rr, int argc, char **argv,
                    const size_t *argvlen)
{
    if (b->ops->send(b, conn, db, session, argc, argv, argvlen, BACKEND_PARSED, restore_cb, rr) != 0) return -1;
    rr->left++;
    return 0;
}

/* Sends cmd key followed by the elements (reordered for ZADD: score first). */
static int send_fill(backend *b, int conn, int db, unsigned long long session, restore_req *rr, const char *cmd,
                     const char *key, size_t len, const elems *e, size_t from, size_t count, int zadd)
{
    size_t argc = 2 + count;
    char **av = malloc(sizeof(*av) * argc);
    size_t *al = malloc(sizeof(*al) * argc);
    if (!av || !al) abort();
    av[0] = (char *)cmd;
    al[0] = strlen(cmd);
    av[1] = (char *)key;
    al[1] = len;
    for (size_t i = 0; i < count; i++) {
        size_t j = from + (zadd ? (i ^ 1) : i);
        av[2 + i] = e->v[j];
        al[2 + i] = e->l[j];
    }
    int rc = send_one(b, conn, db, session, rr, (int)argc, av, al);
    free(av);
    free(al);
    return rc;
}

static int restore_typed(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         const backend_image *img, long long left, backend_reply_fn *fn, void *ctx)
{
    elems e;
    if (elems_split(img, &e) != 0) {
        free(e.v);
        free(e.l);
        return -1;
    }
    restore_req *rr = calloc(1, sizeof(*rr));
    if (!rr) abort();
    rr->left = 1; /* until everything is sent */
    int rc = 0;
    char *dv[2] = {"DEL", (char *)key};
    size_t dl[2] = {3, len};
    rc |= send_one(b, conn, db, session, rr, 2, dv, dl);
    switch (img->kind) {
    case 's': if (e.n == 1) rc |= send_fill(b, conn, db, session, rr, "SET", key, len, &e, 0, 1, 0); break;
    case 'l': if (e.n) rc |= send_fill(b, conn, db, session, rr, "RPUSH", key, len, &e, 0, e.n, 0); break;
    case 'h': if (e.n) rc |= send_fill(b, conn, db, session, rr, "HMSET", key, len, &e, 0, e.n, 0); break;
    case 'S': if (e.n) rc |= send_fill(b, conn, db, session, rr, "SADD", key, len, &e, 0, e.n, 0); break;
    case 'z': if (e.n) rc |= send_fill(b, conn, db, session, rr, "ZADD", key, len, &e, 0, e.n & ~(size_t)1, 1); break;
    case 'x':
        /* entry by entry: XADD key id field value ... (consumer groups are not read back) */
        for (size_t i = 0; i + 1 < e.n && rc == 0;) {
            long long nf = strtoll(e.v[i + 1], NULL, 10);
            if (nf < 0 || i + 2 + (size_t)nf > e.n) break;
            size_t argc = 3 + (size_t)nf;
            char **av = malloc(sizeof(*av) * argc);
            size_t *al = malloc(sizeof(*al) * argc);
            if (!av || !al) abort();
            av[0] = "XADD", al[0] = 4, av[1] = (char *)key, al[1] = len, av[2] = e.v[i], al[2] = e.l[i];
            for (long long k = 0; k < nf; k++) av[3 + k] = e.v[i + 2 + k], al[3 + k] = e.l[i + 2 + k];
            rc |= send_one(b, conn, db, session, rr, (int)argc, av, al);
            free(av);
            free(al);
            i += 2 + (size_t)nf;
        }
        break;
    }
    if (left > 0 && rc == 0) {
        char num[24];
        int n = snprintf(num, sizeof(num), "%lld", left);
        char *pv[3] = {"PEXPIRE", (char *)key, num};
        size_t pl[3] = {7, len, (size_t)n};
        if (b->has_pttl < 0) {
            /* Before 2.6: EXPIRE in whole seconds, rounded up. */
            n = snprintf(num, sizeof(num), "%lld", left / 1000 + (left % 1000 != 0));
            pv[0] = "EXPIRE";
            pl[0] = 6;
            pl[2] = (size_t)n;
        }
        rc |= send_one(b, conn, db, session, rr, 3, pv, pl);
    }
    free(e.v);
    free(e.l);
    if (rc != 0) {
        /* Its caller retries the whole undo; what went out still answers here. */
        rr->fn = NULL;
        if (--rr->left == 0) free(rr);
        return -1;
    }
    rr->fn = fn;
    rr->ctx = ctx;
    if (--rr->left == 0) { /* cannot happen: DEL went out */
        free(rr);
        return -1;
    }
    return 0;
}

int backend_resp_restore(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         const backend_image *img, backend_reply_fn *fn, void *ctx)
{
    long long left = ttl_left(img);
    if (img->exists && left != 0 && img->kind)
        return restore_typed(b, conn, db, session, key, len, img, left, fn, ctx);
    if (!img->exists || left == 0) {
        char *v[2] = {"DEL", (char *)key};
        size_t l[2] = {3, len};
        return b->ops->send(b, conn, db, session, 2, v, l, BACKEND_PARSED, fn, ctx);
    }
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", left < 0 ? 0 : left);
    char *v[5] = {"RESTORE", (char *)key, num, img->data, "REPLACE"};
    size_t l[5] = {7, len, (size_t)n, img->len, 7};
    return b->ops->send(b, conn, db, session, 5, v, l, BACKEND_PARSED, fn, ctx);
}

/* ---- images carried to another store (a migration's copy) ------------------------ */

int backend_is_memcached(const backend *b) { return b->ops->key_tokens != NULL; }

int backend_dump_rdb_version(const char *data, size_t len)
{
    /* A DUMP payload ends in its RDB version (2 bytes, little endian) and a CRC64. */
    if (len < 10) return -1;
    const unsigned char *p = (const unsigned char *)data + len - 10;
    return p[0] | p[1] << 8;
}

int backend_rdb_version_read(int release)
{
    if (!release || release >= 70000) return 10;
    if (release >= 50000) return 9;
    if (release >= 40000) return 8;
    if (release >= 30200) return 7;
    return 6;
}

int backend_image_adapt(backend_image *img, const backend *from, const backend *to, char *err, size_t errlen)
{
    if (!img->exists) return 0;
    int from_mc = backend_is_memcached(from), to_mc = backend_is_memcached(to);
    if (from_mc && !to_mc) {
        /* A memcached item's value becomes a Redis string (its client flags stay behind). */
        char *typed = malloc(img->len + 4);
        if (!typed) abort();
        uint32_t n = (uint32_t)img->len;
        memcpy(typed, &n, 4);
        memcpy(typed + 4, img->data, img->len);
        free(img->data);
        img->data = typed;
        img->len += 4;
        img->kind = 's';
        img->flags = 0;
        return 0;
    }
    if (!from_mc && to_mc) {
        uint32_t n;
        if (img->kind != 's' || img->len < 4 || (memcpy(&n, img->data, 4), n != img->len - 4)) {
            snprintf(err, errlen, "ERR only string values can move to memcached");
            return -1;
        }
        memmove(img->data, img->data + 4, n);
        img->len = n;
        img->kind = 0;
        img->flags = 0;
        return 0;
    }
    if (!from_mc && !img->kind) {
        int v = backend_dump_rdb_version(img->data, img->len), max = backend_rdb_version_read(to->store_version);
        if (v < 0 || v > max) {
            snprintf(err, errlen, "ERR the value's DUMP payload (RDB version %d) is newer than the store reads (%d)", v,
                     max);
            return -1;
        }
    }
    return 0;
}

/* ---- journal records kept in the store (a fleet's) --------------------------------- */

#define RECORD_MAGIC "EPJ1"
#define TOMBSTONE_MAGIC "EPJ0"

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_u64(unsigned char *p, unsigned long long v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static unsigned long long get_u64(const unsigned char *p)
{
    unsigned long long v = 0;
    for (int i = 0; i < 8; i++) v |= (unsigned long long)p[i] << (8 * i);
    return v;
}

/* magic, token, db, key length, image length, exists, kind, flags, deadline
 * (wall ms, -1 none), then the key and the image's data. */
#define RECORD_HEAD (4 + 8 * 7 + 2)

char *backend_record_encode(unsigned long long token, int db, const char *key, size_t klen, const backend_image *img,
                            size_t *len)
{
    long long left = ttl_left(img);
    long long deadline = left < 0 ? -1 : wall_ms() + left;
    size_t dlen = img->exists ? img->len : 0;
    *len = RECORD_HEAD + klen + dlen;
    unsigned char *p = malloc(*len);
    if (!p) abort();
    memcpy(p, RECORD_MAGIC, 4);
    put_u64(p + 4, token);
    put_u64(p + 12, (unsigned long long)(long long)db);
    put_u64(p + 20, klen);
    put_u64(p + 28, dlen);
    put_u64(p + 36, img->flags);
    put_u64(p + 44, (unsigned long long)deadline);
    put_u64(p + 52, (unsigned long long)(unsigned char)img->kind);
    p[60] = (unsigned char)(img->exists != 0);
    p[61] = 0;
    memcpy(p + RECORD_HEAD, key, klen);
    if (dlen) memcpy(p + RECORD_HEAD + klen, img->data, dlen);
    return (char *)p;
}

char *backend_record_tombstone(unsigned long long token, size_t *len)
{
    unsigned char *p = malloc(12);
    if (!p) abort();
    memcpy(p, TOMBSTONE_MAGIC, 4);
    put_u64(p + 4, token);
    *len = 12;
    return (char *)p;
}

int backend_record_decode(const char *data, size_t len, unsigned long long *token, int *db, char **key, size_t *klen,
                          backend_image **img)
{
    const unsigned char *p = (const unsigned char *)data;
    if (len == 12 && !memcmp(p, TOMBSTONE_MAGIC, 4)) {
        *token = get_u64(p + 4);
        return 0;
    }
    if (len < RECORD_HEAD || memcmp(p, RECORD_MAGIC, 4)) return -1;
    unsigned long long kl = get_u64(p + 20), dl = get_u64(p + 28);
    if (kl > len - RECORD_HEAD || dl != len - RECORD_HEAD - kl) return -1;
    *token = get_u64(p + 4);
    *db = (int)(long long)get_u64(p + 12);
    *klen = (size_t)kl;
    *key = malloc(kl + 1);
    if (!*key) abort();
    memcpy(*key, p + RECORD_HEAD, kl);
    (*key)[kl] = '\0';
    backend_image *im = calloc(1, sizeof(*im));
    if (!im) abort();
    im->exists = p[60] != 0;
    im->len = (size_t)dl;
    im->data = malloc(dl ? dl : 1);
    if (!im->data) abort();
    if (dl) memcpy(im->data, p + RECORD_HEAD + kl, dl);
    im->flags = get_u64(p + 36);
    im->kind = (char)get_u64(p + 52);
    long long deadline = (long long)get_u64(p + 44);
    im->read_ms = clock_ms();
    if (deadline < 0) {
        im->ttl_ms = -1;
    } else {
        long long left = deadline - wall_ms();
        im->ttl_ms = left > 0 ? left : 0; /* 0: gone by now, put back as missing */
    }
    *img = im;
    return 1;
}
