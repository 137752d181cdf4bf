/* Unit tests for the RESP2 -> RESP3 converter: expected bytes are those
 * redis-server 7.0.15 sends a HELLO 3 client for the same command. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy/core/resp3.h"

static const resp3_shape *shape(const char *name, const char *line)
{
    char *argv[16];
    size_t argvlen[16];
    int argc = 0;
    char *copy = strdup(line);
    for (char *t = strtok(copy, " "); t && argc < 16; t = strtok(NULL, " ")) {
        argv[argc] = t;
        argvlen[argc++] = strlen(t);
    }
    const resp3_shape *s = resp3_shape_for(name, argc, argv, argvlen);
    free(copy);
    return s;
}

/* Converts in with the shape and checks the bytes and the length taken. */
static void check(const resp3_shape *s, const char *in, const char *want)
{
    struct evbuffer *out = evbuffer_new();
    long n = resp3_convert(s, in, strlen(in), out);
    assert_int_equal(n, (long)strlen(in));
    size_t len = evbuffer_get_length(out);
    char *got = calloc(1, len + 1);
    evbuffer_remove(out, got, len);
    assert_string_equal(got, want);
    free(got);
    evbuffer_free(out);
}

static void test_nulls_at_depth(void **state)
{
    (void)state;
    const resp3_shape *g = shape("get", "GET k");
    check(g, "$-1\r\n", "_\r\n");
    check(g, "*-1\r\n", "_\r\n");
    check(g, "*3\r\n$-1\r\n*2\r\n*-1\r\n$1\r\na\r\n:5\r\n", "*3\r\n_\r\n*2\r\n_\r\n$1\r\na\r\n:5\r\n");
    check(g, "-ERR no\r\n", "-ERR no\r\n");
    check(g, "+OK\r\n", "+OK\r\n");
    check(g, "$0\r\n\r\n", "$0\r\n\r\n");
    /* An unknown command gets the generic shape. */
    check(shape("nosuch", "NOSUCH"), "*1\r\n$-1\r\n", "*1\r\n_\r\n");
    check(shape(NULL, "X"), "$-1\r\n", "_\r\n");
}

static void test_map_set_double(void **state)
{
    (void)state;
    check(shape("hgetall", "HGETALL h"), "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
          "%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");
    check(shape("hgetall", "HGETALL h"), "*0\r\n", "%0\r\n");
    check(shape("config|get", "CONFIG GET maxmemory"), "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
          "%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n");
    check(shape("smembers", "SMEMBERS s"), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n", "~2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    check(shape("smembers", "SMEMBERS s"), "*0\r\n", "~0\r\n");
    const resp3_shape *z = shape("zscore", "ZSCORE z a");
    check(z, "$3\r\n1.5\r\n", ",1.5\r\n");
    check(z, "$1\r\n3\r\n", ",3\r\n");
    check(z, "$23\r\n1.0000000000000001e+300\r\n", ",1.0000000000000001e+300\r\n");
    check(z, "$3\r\ninf\r\n", ",inf\r\n");
    check(z, "$4\r\n-inf\r\n", ",-inf\r\n");
    check(z, "$-1\r\n", "_\r\n");
    check(shape("zmscore", "ZMSCORE z a b"), "*2\r\n$3\r\n1.5\r\n$-1\r\n", "*2\r\n,1.5\r\n_\r\n");
    /* ZADD answers an integer without INCR, a double with it. */
    check(shape("zadd", "ZADD z 1 a"), ":1\r\n", ":1\r\n");
    check(shape("zadd", "ZADD z INCR 1 a"), "$1\r\n2\r\n", ",2\r\n");
    check(shape("geopos", "GEOPOS g a b"), "*2\r\n*2\r\n$3\r\n1.5\r\n$3\r\n2.5\r\n*-1\r\n",
          "*2\r\n*2\r\n,1.5\r\n,2.5\r\n_\r\n");
    /* GEODIST stays a bulk string in 7.0. */
    check(shape("geodist", "GEODIST g a b"), "$6\r\n1.2345\r\n", "$6\r\n1.2345\r\n");
    check(shape("info", "INFO"), "$5\r\na:1\r\n\r\n", "=9\r\ntxt:a:1\r\n\r\n");
    check(shape("client|list", "CLIENT LIST"), "$3\r\nid\n\r\n", "=7\r\ntxt:id\n\r\n");
    check(shape("xread", "XREAD STREAMS x 0"),
          "*1\r\n*2\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
          "%1\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    check(shape("xread", "XREAD STREAMS x 0"), "*-1\r\n", "_\r\n");
    check(shape("client|trackinginfo", "CLIENT TRACKINGINFO"),
          "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n",
          "%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n");
}

static void test_withscores_pairs(void **state)
{
    (void)state;
    const char *flat = "*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$1\r\n3\r\n";
    const char *pairs = "*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,3\r\n";
    check(shape("zrange", "ZRANGE z 0 -1 WITHSCORES"), flat, pairs);
    check(shape("zrange", "ZRANGE z 0 -1 withscores"), flat, pairs);
    check(shape("zrange", "ZRANGE z 0 -1"), flat, flat);
    /* A key named like the option is not the option. */
    check(shape("zrange", "ZRANGE withscores 0 -1"), flat, flat);
    check(shape("zrangebyscore", "ZRANGEBYSCORE z -inf +inf LIMIT 0 5 WITHSCORES"), flat, pairs);
    check(shape("zunion", "ZUNION 2 a b WITHSCORES"), flat, pairs);
    check(shape("zunion", "ZUNION 1 withscores"), flat, flat);
    check(shape("zrandmember", "ZRANDMEMBER z 2 WITHSCORES"), flat, pairs);
    check(shape("hrandfield", "HRANDFIELD h 2 WITHVALUES"), "*2\r\n$1\r\na\r\n$1\r\n1\r\n",
          "*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n");
    check(shape("zpopmin", "ZPOPMIN z"), "*2\r\n$1\r\na\r\n$3\r\n1.5\r\n", "*2\r\n$1\r\na\r\n,1.5\r\n");
    check(shape("zpopmin", "ZPOPMIN z 2"), flat, pairs);
    check(shape("bzpopmax", "BZPOPMAX z 0"), "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n2\r\n",
          "*3\r\n$1\r\nz\r\n$1\r\na\r\n,2\r\n");
    check(shape("zmpop", "ZMPOP 1 z MIN"), "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n",
          "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n,1\r\n");
    check(shape("spop", "SPOP s 2"), "*1\r\n$1\r\na\r\n", "~1\r\n$1\r\na\r\n");
    check(shape("spop", "SPOP s"), "$1\r\na\r\n", "$1\r\na\r\n");
    check(shape("srandmember", "SRANDMEMBER s 2"), "*1\r\n$1\r\na\r\n", "*1\r\n$1\r\na\r\n");
}

static void test_exec(void **state)
{
    (void)state;
    const resp3_shape *shapes[4] = {
        shape("zscore", "ZSCORE z a"), shape("hgetall", "HGETALL h"),
        shape("incr", "INCR h"), shape("zrange", "ZRANGE z 0 -1 WITHSCORES")};
    const char *in = "*4\r\n$3\r\n1.5\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
                     "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
                     "*2\r\n$1\r\na\r\n$3\r\n1.5\r\n";
    const char *want = "*4\r\n,1.5\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
                       "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
                       "*1\r\n*2\r\n$1\r\na\r\n,1.5\r\n";
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(resp3_convert_exec(shapes, 4, in, strlen(in), out), (long)strlen(in));
    size_t len = evbuffer_get_length(out);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(evbuffer_pullup(out, (ev_ssize_t)len), want, len);
    evbuffer_drain(out, len);
    /* Aborted EXEC, and EXEC's own error. */
    assert_int_equal(resp3_convert_exec(shapes, 4, "*-1\r\n", 5, out), 5);
    assert_int_equal(resp3_convert_exec(shapes, 4, "-EXECABORT x\r\n", 14, out), 14);
    len = evbuffer_get_length(out);
    assert_memory_equal(evbuffer_pullup(out, (ev_ssize_t)len), "_\r\n-EXECABORT x\r\n", len);
    evbuffer_free(out);
}

static void test_incomplete_and_garbage(void **state)
{
    (void)state;
    const resp3_shape *s = shape("hgetall", "HGETALL h");
    const char *full = "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$2\r\n22\r\n";
    struct evbuffer *out = evbuffer_new();
    for (size_t i = 0; i < strlen(full); i++)
        assert_int_equal(resp3_convert(s, full, i, out), 0);
    assert_int_equal(evbuffer_get_length(out), 0);
    /* Only the first reply is taken. */
    char two[128];
    snprintf(two, sizeof(two), "%s+OK\r\n", full);
    assert_int_equal(resp3_convert(s, two, strlen(two), out), (long)strlen(full));
    evbuffer_drain(out, evbuffer_get_length(out));
    const char *bad[] = {"?x\r\n", "$abc\r\n", "*-2\r\n", "$3\r\nabcd\r\n", ":1x\r\n",
                         "*1\r\n!x\r\n", "$-5\r\n", "+OK\rX\n", "*2\r\n:1\r\n%1\r\n", "$\r\n",
                         ":99999999999999999999\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(resp3_convert(s, bad[i], strlen(bad[i]), out), -1);
        assert_int_equal(evbuffer_get_length(out), 0);
    }
    assert_int_equal(resp3_convert_exec(NULL, 0, "*1\r\n?\r\n", 7, out), -1);
    assert_int_equal(evbuffer_get_length(out), 0);
    /* Deeper than any real reply: refused rather than recursing on. */
    size_t depth = 5000;
    char *deep = malloc(depth * 4 + 8);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++) {
        memcpy(deep + n, "*1\r\n", 4);
        n += 4;
    }
    memcpy(deep + n, ":1\r\n", 4);
    n += 4;
    assert_int_equal(resp3_convert(s, deep, n, out), -1);
    free(deep);
    evbuffer_free(out);
}

/* Mutated and truncated replies under every shape: never more than the
 * input taken, nothing appended unless a reply was taken (ASan checks the
 * reads). */
static void test_mutations(void **state)
{
    (void)state;
    const char *seeds[] = {
        "*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$-1\r\n",
        "*1\r\n*2\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n",
        "*2\r\n*2\r\n$3\r\n1.5\r\n$3\r\n2.5\r\n*-1\r\n"};
    unsigned seed = 12345;
    struct evbuffer *out = evbuffer_new();
    for (int round = 0; round < 20000; round++) {
        const char *src = seeds[round % 4];
        size_t len = strlen(src);
        char buf[256];
        memcpy(buf, src, len);
        seed = seed * 1103515245u + 12345u;
        buf[(seed >> 8) % len] = (char)(seed >> 16);
        seed = seed * 1103515245u + 12345u;
        size_t cut = (seed >> 8) % (len + 1);
        const resp3_shape *s = &resp3_shapes[(seed >> 4) % (unsigned)resp3_shapes_count];
        long n = resp3_convert(s, buf, cut, out);
        assert_true(n >= -1 && n <= (long)cut);
        if (n <= 0)
            assert_int_equal(evbuffer_get_length(out), 0);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    evbuffer_free(out);
}

static void test_table_sorted(void **state)
{
    (void)state;
    for (int i = 1; i < resp3_shapes_count; i++)
        assert_true(strcmp(resp3_shapes[i - 1].name, resp3_shapes[i].name) < 0);
    /* Every entry is found by its own name. */
    for (int i = 0; i < resp3_shapes_count; i++) {
        char *argv[1] = {(char *)"x"};
        size_t len = 1;
        const resp3_shape *s = resp3_shape_for(resp3_shapes[i].name, 1, argv, &len);
        assert_ptr_equal(s, &resp3_shapes[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nulls_at_depth),
        cmocka_unit_test(test_map_set_double),
        cmocka_unit_test(test_withscores_pairs),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_incomplete_and_garbage),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_table_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
