/* The choice of implementation for a backend URL. */
#include "backends/backend.h"
#include "backends/conn.h"
#include "backends/store.h"

#include <openssl/ssl.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

backend *backend_create(struct event_base *base, const char *url, int connections, int databases,
                        const store_tls_options *tls, char *err, size_t errlen)
{
    backend_url u;
    if (backend_url_parse(url, &u, err, errlen) != 0) return NULL;
    SSL_CTX *ctx = NULL;
    int verify = 0;
    if (u.tls) {
        static const store_tls_options defaults = {.verify = 1};
        if (!tls) tls = &defaults;
        verify = tls->verify;
        ctx = store_tls_ctx_new(tls, err, errlen);
        if (!ctx) {
            backend_url_free(&u);
            return NULL;
        }
    }
    int memcached = !strncmp(u.scheme, "memcached", 9);
    backend *b = memcached ? backend_memcached_create(base, &u, connections, ctx, verify)
                           : backend_resp_create(base, &u, connections, ctx, verify);
    if (b) {
        b->databases = databases;
        b->one_store = 1;
    }
    SSL_CTX_free(ctx); /* the backend holds its own reference */
    backend_url_free(&u);
    return b;
}

int backend_store_has_command(const backend *b, const char *name, size_t len)
{
    return store_has_command(b->store_commands, b->store_version, name, len);
}

/* A copy of a parsed reply that outlives the callback. */
redisReply *backend_reply_copy(const redisReply *r)
{
    redisReply *n = calloc(1, sizeof(*n));
    if (!n) abort();
    n->type = r->type;
    n->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) {
        n->str = malloc(r->len + 1);
        if (!n->str) abort();
        memcpy(n->str, r->str, r->len);
        n->str[r->len] = '\0';
        n->len = r->len;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements) {
        n->element = calloc(r->elements, sizeof(redisReply *));
        if (!n->element) abort();
        n->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) n->element[i] = backend_reply_copy(r->element[i]);
    }
    return n;
}

