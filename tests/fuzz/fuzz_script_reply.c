/* libFuzzer target for the conversions between RESP and Lua. The first byte
 * picks a script; the rest, cut to one complete RESP reply, is the answer to
 * its redis.call (or, for cmsgpack, its argument). Every run must end with
 * exactly one complete, well-formed RESP reply, whatever the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "lua/script_engine.h"

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                              \
        }                                                                         \
    } while (0)

static const char *const scripts[] = {
    "return redis.call('get', 'k')",
    "return redis.pcall('get', 'k')",
    "redis.setresp(3) return redis.call('get', 'k')",
    "local ok, r = pcall(cjson.encode, redis.call('get', 'k')) return {tostring(ok), r}",
    "local r = redis.pcall('get', 'k') return type(r) == 'table' and #r or r",
    "return cmsgpack.unpack(ARGV[1])",
    "return {pcall(struct.unpack, '>i4i2Bs', ARGV[1])}",
    "return {pcall(cjson.decode, ARGV[1])}",
};
#define NSCRIPTS (sizeof(scripts) / sizeof(*scripts))

static const char *answer;
static size_t answer_len;
static int done_calls;

static void host_call(void *ctx, script_run *run, int argc, char **argv, size_t *argvlen)
{
    script_run_reply_raw(run, answer, answer_len);
}

/* Length of one well-formed RESP2 reply at p, or 0. Written out here
 * because hiredis's reader stops at 7 levels of nesting, and scripts may
 * legitimately return deeper tables. */
static size_t resp_check(const char *p, size_t len, int depth)
{
    if (len < 3 || depth > 100000) return 0;
    const char *crlf = memchr(p, '\r', len);
    if (!crlf || (size_t)(crlf - p) + 1 >= len || crlf[1] != '\n') return 0;
    size_t line = (size_t)(crlf - p) + 2;
    char *end;
    long long n;
    switch (p[0]) {
    case '+':
    case '-':
        return memchr(p, '\n', line - 1) ? 0 : line;
    case ':':
        strtoll(p + 1, &end, 10);
        return end == crlf ? line : 0;
    case '$':
        n = strtoll(p + 1, &end, 10);
        if (end != crlf || n < -1) return 0;
        if (n == -1) return line;
        if (line + (size_t)n + 2 > len || p[line + n] != '\r' || p[line + n + 1] != '\n') return 0;
        return line + (size_t)n + 2;
    case '*': {
        n = strtoll(p + 1, &end, 10);
        if (end != crlf || n < -1) return 0;
        size_t off = line;
        for (long long i = 0; i < n; i++) {
            size_t el = resp_check(p + off, len - off, depth + 1);
            if (!el) return 0;
            off += el;
        }
        return off;
    }
    }
    return 0;
}

static void host_done(void *ctx, script_run *run, const char *reply, size_t len)
{
    done_calls++;
    /* The reply must be exactly one complete RESP2 reply. */
    CHECK(resp_check(reply, len, 0) == len);
}

static script_engine *engine;
static const script *loaded[NSCRIPTS];

static void setup(void)
{
    static const script_host host = {host_call, NULL, host_done, NULL, NULL, NULL};
    engine = script_engine_new(&host, NULL);
    CHECK(engine);
    script_engine_set_memory_limit(engine, 64 << 20);
    for (size_t i = 0; i < NSCRIPTS; i++) {
        char err[512];
        loaded[i] = script_engine_load(engine, scripts[i], strlen(scripts[i]), err, sizeof(err));
        CHECK(loaded[i]);
    }
}

/* Length of the first complete RESP reply in buf, or 0. */
static size_t first_reply(const char *buf, size_t len)
{
    redisReader *r = redisReaderCreate();
    redisReaderFeed(r, buf, len);
    void *obj = NULL;
    size_t used = 0;
    if (redisReaderGetReply(r, &obj) == REDIS_OK && obj) used = len - (r->len - r->pos);
    if (obj) freeReplyObject(obj);
    redisReaderFree(r);
    return used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!engine) setup();
    if (size < 1) return 0;
    size_t which = data[0] % NSCRIPTS;
    const char *rest = (const char *)data + 1;
    size_t rest_len = size - 1;
    char *argv[1] = {(char *)rest};
    size_t arglen[1] = {rest_len};
    if (which < 5) {
        answer_len = first_reply(rest, rest_len);
        if (!answer_len) return 0;
        answer = rest;
    }
    done_calls = 0;
    script_run_start(engine, loaded[which], 0, NULL, NULL, 1, argv, arglen, 0, NULL);
    CHECK(done_calls == 1); /* the host answers at once: every run ends here */
    return 0;
}
