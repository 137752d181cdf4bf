/* libFuzzer target for the request parser. The first byte picks settings; the
 * rest is fed three ways (all at once, in chunks sized from the input, and a
 * byte at a time). Each run must keep the API invariants, and all three must
 * see the same commands and end the same way. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/request_parser.h"

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                          \
        }                                                                     \
    } while (0)

typedef struct {
    uint64_t hash;   /* FNV-1a over every command seen */
    int commands;
    int errored;
    char error[128];
    size_t pending;
} outcome;

static void mix(outcome *o, const void *d, size_t n)
{
    const unsigned char *b = d;
    for (size_t i = 0; i < n; i++) {
        o->hash ^= b[i];
        o->hash *= 1099511628211ULL;
    }
}

/* mode 0: all at once; 1: chunk sizes from `sizes`; 2: one byte at a time. */
static void run(const uint8_t *data, size_t len, int authenticated, long long max_bulk,
                int mode, const uint8_t *sizes, size_t nsizes, outcome *o)
{
    request_parser p;
    size_t off = 0, k = 0;
    int rc = REQUEST_PARSE_MORE;

    memset(o, 0, sizeof(*o));
    o->hash = 1469598103934665603ULL;
    request_parser_init(&p);
    p.authenticated = authenticated;
    p.proto_max_bulk_len = max_bulk;

    while (off < len && rc != REQUEST_PARSE_ERROR) {
        size_t n = len - off, used = 0;
        if (mode == 1 && nsizes)
            n = 1 + sizes[k++ % nsizes];
        else if (mode == 2)
            n = 1;
        if (n > len - off)
            n = len - off;
        while (used < n) {
            size_t c = (size_t)-1;
            rc = request_parser_feed(&p, (const char *)data + off + used, n - used, &c);
            CHECK(c <= n - used);
            used += c;
            if (rc == REQUEST_PARSE_DONE) {
                size_t total = 0;
                CHECK(p.argc > 0);
                CHECK(p.argv != NULL && p.argvlen != NULL);
                CHECK(request_parser_pending(&p) == 0);
                mix(o, &p.is_inline, sizeof(p.is_inline));
                mix(o, &p.argc, sizeof(p.argc));
                for (int i = 0; i < p.argc; i++) {
                    CHECK(p.argv[i][p.argvlen[i]] == '\0');
                    total += p.argvlen[i];
                    mix(o, &p.argvlen[i], sizeof(p.argvlen[i]));
                    mix(o, p.argv[i], p.argvlen[i]);
                }
                CHECK(total <= len); /* arguments come from the input */
                o->commands++;
            } else if (rc == REQUEST_PARSE_ERROR) {
                CHECK(strncmp(p.error, "ERR Protocol error: ", 20) == 0);
                CHECK(memchr(p.error, '\0', sizeof(p.error)) != NULL);
                CHECK(strchr(p.error, '\r') == NULL && strchr(p.error, '\n') == NULL);
                break;
            } else {
                CHECK(rc == REQUEST_PARSE_MORE);
                CHECK(used == n);
                CHECK(request_parser_pending(&p) <= len);
            }
        }
        off += n;
    }
    if (rc == REQUEST_PARSE_ERROR) {
        size_t c = 1;
        /* After an error the parser takes nothing more. */
        CHECK(request_parser_feed(&p, "PING\r\n", 6, &c) == REQUEST_PARSE_ERROR);
        CHECK(c == 0);
        o->errored = 1;
        memcpy(o->error, p.error, sizeof(o->error));
    } else {
        o->pending = request_parser_pending(&p);
    }
    request_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long long bulk_limits[] = {512LL * 1024 * 1024, 0, 5, 1000};
    outcome a, b, c;
    uint8_t cfg;
    const uint8_t *sizes;
    size_t nsizes;

    if (size < 2)
        return 0;
    cfg = data[0];
    nsizes = 1 + (data[1] & 7);
    if (size < 2 + nsizes)
        return 0;
    sizes = data + 2;
    data += 2 + nsizes;
    size -= 2 + nsizes;

    int authenticated = cfg & 1;
    long long max_bulk = bulk_limits[(cfg >> 1) & 3];

    run(data, size, authenticated, max_bulk, 0, sizes, nsizes, &a);
    run(data, size, authenticated, max_bulk, 1, sizes, nsizes, &b);
    run(data, size, authenticated, max_bulk, 2, sizes, nsizes, &c);
    CHECK(a.hash == b.hash && a.hash == c.hash);
    CHECK(a.commands == b.commands && a.commands == c.commands);
    CHECK(a.errored == b.errored && a.errored == c.errored);
    CHECK(strcmp(a.error, b.error) == 0 && strcmp(a.error, c.error) == 0);
    CHECK(a.pending == b.pending && a.pending == c.pending);
    return 0;
}
