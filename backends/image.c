/* Key images for an undo journal on RESP stores: DUMP and PTTL read what a
 * key was, pipelined just before the write that changes it; RESTORE ...
 * REPLACE (or DEL for a key that did not exist) puts it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"

long long backend_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void backend_image_free(backend_image *img)
{
    if (!img) return;
    free(img->data);
    free(img);
}

typedef struct capture_req {
    backend_image_fn *fn; /* NULL: the second send failed, nobody waits */
    void *ctx;
    backend_image *img;
    char err[256];
} capture_req;

static void capture_fail(capture_req *cr, const char *why)
{
    if (!cr->err[0]) snprintf(cr->err, sizeof(cr->err), "%s", why);
}

static void dump_cb(void *ctx, const backend_reply *r)
{
    capture_req *cr = ctx;
    if (!cr->fn) {
        backend_image_free(cr->img);
        free(cr);
        return;
    }
    if (r->error) capture_fail(cr, r->error);
    else if (r->parsed->type == REDIS_REPLY_STRING) {
        cr->img->exists = 1;
        cr->img->len = r->parsed->len;
        cr->img->data = malloc(r->parsed->len ? r->parsed->len : 1);
        if (!cr->img->data) abort();
        memcpy(cr->img->data, r->parsed->str, r->parsed->len);
    } else if (r->parsed->type == REDIS_REPLY_ERROR) {
        capture_fail(cr, r->parsed->str);
    } else if (r->parsed->type != REDIS_REPLY_NIL) {
        capture_fail(cr, "ERR unexpected reply to DUMP");
    }
}

static void pttl_cb(void *ctx, const backend_reply *r)
{
    capture_req *cr = ctx;
    if (r->error) capture_fail(cr, r->error);
    else if (r->parsed->type != REDIS_REPLY_INTEGER) capture_fail(cr, "ERR unexpected reply to PTTL");
    else if (r->parsed->integer == -2 && cr->img->exists) capture_fail(cr, "ERR key expired while read");
    else cr->img->ttl_ms = r->parsed->integer >= 0 ? r->parsed->integer : -1;
    if (cr->err[0]) {
        backend_image_free(cr->img);
        cr->fn(cr->ctx, NULL, cr->err);
    } else {
        cr->fn(cr->ctx, cr->img, NULL);
    }
    free(cr);
}

int backend_resp_capture(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         backend_image_fn *fn, void *ctx)
{
    capture_req *cr = calloc(1, sizeof(*cr));
    if (!cr) abort();
    cr->fn = fn;
    cr->ctx = ctx;
    cr->img = calloc(1, sizeof(*cr->img));
    if (!cr->img) abort();
    cr->img->ttl_ms = -1;
    cr->img->read_ms = backend_monotonic_ms();
    char *dv[2] = {"DUMP", (char *)key}, *pv[2] = {"PTTL", (char *)key};
    size_t l[2] = {4, len};
    if (b->ops->send(b, conn, db, session, 2, dv, l, BACKEND_PARSED, dump_cb, cr) != 0) {
        backend_image_free(cr->img);
        free(cr);
        return -1;
    }
    if (b->ops->send(b, conn, db, session, 2, pv, l, BACKEND_PARSED, pttl_cb, cr) != 0) {
        cr->fn = NULL; /* dump_cb frees it */
        return -1;
    }
    return 0;
}

/* The TTL left now of a key read at img->read_ms: -1 none, 0 already gone. */
static long long ttl_left(const backend_image *img)
{
    if (img->ttl_ms < 0) return -1;
    long long left = img->ttl_ms - (backend_monotonic_ms() - img->read_ms);
    return left > 0 ? left : 0;
}

int backend_resp_restore(backend *b, int conn, int db, unsigned long long session, const char *key, size_t len,
                         const backend_image *img, backend_reply_fn *fn, void *ctx)
{
    long long left = ttl_left(img);
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
