/* Unit tests for the RESP request parser. Expected texts and outcomes follow
 * redis-server 7.0 (checked against a running 7.0.15). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/request_parser.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    memcpy(b->s + b->len, d, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Printable transcript of one parsed command, with invariants checked. */
static void sb_command(sbuf *b, const request_parser *p)
{
    char tmp[32];
    sb_str(b, p->is_inline ? "I" : "M");
    assert_true(p->argc > 0);
    for (int i = 0; i < p->argc; i++) {
        assert_int_equal(p->argv[i][p->argvlen[i]], '\0');
        sb_str(b, " [");
        for (size_t j = 0; j < p->argvlen[i]; j++) {
            unsigned char c = (unsigned char)p->argv[i][j];
            if (c >= 0x20 && c < 0x7f && c != '\\' && c != ']') {
                sb_add(b, (const char *)&c, 1);
            } else {
                snprintf(tmp, sizeof(tmp), "\\x%02x", c);
                sb_str(b, tmp);
            }
        }
        sb_str(b, "]");
    }
    sb_str(b, "\n");
}

typedef struct {
    int authenticated;
    long long max_bulk;
} opts;

static const opts DEFAULTS = {1, 0};

/* Feed `in` in pieces of `chunk` bytes (0: all at once) and return the
 * transcript: one line per command, then "ERROR <text>" or
 * "MORE pending=<n>". Chunk boundaries never show in the transcript. */
static char *run_opts(const char *in, size_t len, size_t chunk, opts o)
{
    request_parser p;
    sbuf b = {0};
    size_t off = 0;
    int rc = REQUEST_PARSE_MORE;
    char tmp[160];

    request_parser_init(&p);
    p.authenticated = o.authenticated;
    if (o.max_bulk)
        p.proto_max_bulk_len = o.max_bulk;
    sb_str(&b, "");
    if (chunk == 0)
        chunk = len ? len : 1;
    while (off < len && rc != REQUEST_PARSE_ERROR) {
        size_t n = len - off < chunk ? len - off : chunk;
        size_t used = 0, c;
        while (used < n) {
            rc = request_parser_feed(&p, in + off + used, n - used, &c);
            assert_true(c <= n - used);
            used += c;
            if (rc == REQUEST_PARSE_DONE) {
                sb_command(&b, &p);
            } else if (rc == REQUEST_PARSE_ERROR) {
                break;
            } else {
                assert_int_equal(rc, REQUEST_PARSE_MORE);
                assert_int_equal(used, n); /* MORE means everything was taken */
            }
        }
        off += n;
    }
    if (rc == REQUEST_PARSE_ERROR) {
        snprintf(tmp, sizeof(tmp), "ERROR %s", p.error);
        /* The error is sticky. */
        size_t c = 99;
        assert_int_equal(request_parser_feed(&p, "PING\r\n", 6, &c), REQUEST_PARSE_ERROR);
        assert_int_equal(c, 0);
    } else {
        snprintf(tmp, sizeof(tmp), "MORE pending=%zu", request_parser_pending(&p));
    }
    sb_str(&b, tmp);
    request_parser_free(&p);
    return b.s;
}

static char *run(const char *in, size_t len, size_t chunk)
{
    return run_opts(in, len, chunk, DEFAULTS);
}

/* Check the transcript for every chunk size from 1 to 17, a few larger ones,
 * and all at once; they must all agree with `expect`. */
static void expect_opts(const char *in, size_t len, opts o, const char *expect)
{
    static const size_t extra[] = {0, 31, 64, 100, 1000, 4096, 65536};
    for (size_t chunk = 1; chunk <= 17; chunk++) {
        char *t = run_opts(in, len, chunk, o);
        if (strcmp(t, expect) != 0)
            fail_msg("chunk %zu:\n got: %s\nwant: %s", chunk, t, expect);
        free(t);
    }
    for (size_t k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
        char *t = run_opts(in, len, extra[k], o);
        if (strcmp(t, expect) != 0)
            fail_msg("chunk %zu:\n got: %s\nwant: %s", extra[k], t, expect);
        free(t);
    }
}

static void expect_str(const char *in, const char *expect)
{
    expect_opts(in, strlen(in), DEFAULTS, expect);
}

#define ERRP "ERROR ERR Protocol error: "

/* A buffer of `n` copies of `c`, after a prefix and before a suffix. */
static char *filled(const char *pre, char c, size_t n, const char *post, size_t *len)
{
    size_t a = strlen(pre), z = strlen(post);
    char *s = malloc(a + n + z + 1);
    assert_non_null(s);
    memcpy(s, pre, a);
    memset(s + a, c, n);
    memcpy(s + a + n, post, z + 1);
    *len = a + n + z;
    return s;
}

/* ---- multibulk ---------------------------------------------------------- */

static void test_multibulk_basic(void **state)
{
    (void)state;
    request_parser p;
    size_t c;
    const char *in = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";

    request_parser_init(&p);
    assert_int_equal(request_parser_feed(&p, in, strlen(in), &c), REQUEST_PARSE_DONE);
    assert_int_equal(c, strlen(in));
    assert_int_equal(p.argc, 3);
    assert_int_equal(p.is_inline, 0);
    assert_string_equal(p.argv[0], "SET");
    assert_string_equal(p.argv[1], "key");
    assert_string_equal(p.argv[2], "value");
    assert_int_equal(p.argvlen[2], 5);
    assert_int_equal(request_parser_pending(&p), 0);
    request_parser_free(&p);
}

static void test_pipeline_consumed(void **state)
{
    (void)state;
    request_parser p;
    size_t c;
    const char *in = "*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
    size_t len = strlen(in), off = 0;

    request_parser_init(&p);
    assert_int_equal(request_parser_feed(&p, in, len, &c), REQUEST_PARSE_DONE);
    assert_int_equal(c, 14);
    assert_string_equal(p.argv[0], "PING");
    off += c;
    assert_int_equal(request_parser_feed(&p, in + off, len - off, &c), REQUEST_PARSE_DONE);
    assert_int_equal(c, 9);
    assert_int_equal(p.is_inline, 1);
    assert_int_equal(p.argc, 2);
    assert_string_equal(p.argv[1], "hi");
    off += c;
    assert_int_equal(request_parser_feed(&p, in + off, len - off, &c), REQUEST_PARSE_DONE);
    assert_int_equal(c, 20);
    assert_string_equal(p.argv[0], "GET");
    off += c;
    assert_int_equal(request_parser_feed(&p, in + off, len - off, &c), REQUEST_PARSE_MORE);
    assert_int_equal(c, len - off);
    /* Only the two payload bytes "PI" are held. */
    assert_int_equal(request_parser_pending(&p), 2);
    assert_int_equal(request_parser_feed(&p, "NG\r\n", 4, &c), REQUEST_PARSE_DONE);
    assert_int_equal(c, 4);
    assert_string_equal(p.argv[0], "PING");
    request_parser_free(&p);
}

static void test_binary_bulks(void **state)
{
    (void)state;
    static const char in[] = "*3\r\n$3\r\nSET\r\n$5\r\na\0b\r\n\r\n$6\r\n\r\n\0\0\r\n\r\n";
    expect_opts(in, sizeof(in) - 1, DEFAULTS,
                "M [SET] [a\\x00b\\x0d\\x0a] [\\x0d\\x0a\\x00\\x00\\x0d\\x0a]\n"
                "MORE pending=0");
}

static void test_empty_bulk(void **state)
{
    (void)state;
    expect_str("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n",
               "M [SET] [] []\nMORE pending=0");
    expect_str("*1\r\n$0\r\n\r\n", "M []\nMORE pending=0");
}

static void test_separators_not_checked(void **state)
{
    (void)state;
    /* Redis skips the byte after a header's '\r' and the two bytes after a
     * payload without looking at them. */
    expect_str("*1\rX$4\r\nPINGxy*1\r\n$4\rZPING\r\n",
               "M [PING]\nM [PING]\nMORE pending=0");
}

static void test_skip_empty_multibulk(void **state)
{
    (void)state;
    expect_str("*0\r\n*-1\r\n*-5\r\n*1\r\n$1\r\na\r\n*0\r\n",
               "M [a]\nMORE pending=0");
    /* A negative count does not count against the unauthenticated limit. */
    opts o = {0, 0};
    expect_opts("*-100\r\nPING\r\n", 13, o, "I [PING]\nMORE pending=0");
}

static void test_multibulk_count_errors(void **state)
{
    (void)state;
    expect_str("*x\r\n", ERRP "invalid multibulk length");
    expect_str("*\r\n", ERRP "invalid multibulk length");
    expect_str("*01\r\n", ERRP "invalid multibulk length");
    expect_str("*+1\r\n", ERRP "invalid multibulk length");
    expect_str("*-0\r\n", ERRP "invalid multibulk length");
    expect_str("* 1\r\n", ERRP "invalid multibulk length");
    expect_str("*1 \r\n", ERRP "invalid multibulk length");
    expect_str("*2147483648\r\n", ERRP "invalid multibulk length");
    expect_str("*99999999999999999999\r\n", ERRP "invalid multibulk length");
    expect_str("*111111111111111111111\r\n", ERRP "invalid multibulk length");
    /* INT_MAX itself is accepted (7.0 raised the old 1M limit). */
    expect_str("*2147483647\r\n", "MORE pending=0");
    expect_str("*1048577\r\n", "MORE pending=0");
    /* The count is judged only once the byte after '\r' is in. */
    expect_str("*x\r", "MORE pending=2");
}

static void test_bulk_errors(void **state)
{
    (void)state;
    expect_str("*1\r\nX\r\n", ERRP "expected '$', got 'X'");
    expect_str("*2\r\n$1\r\na\r\n:1\r\n", ERRP "expected '$', got ':'");
    /* CR and LF are shown as spaces, as Redis's error replies do. */
    expect_str("*1\r\n\r\n", ERRP "expected '$', got ' '");
    expect_str("*1\r\n\n\r\n", ERRP "expected '$', got ' '");
    expect_str("*1\r\n$-1\r\n", ERRP "invalid bulk length");
    expect_str("*1\r\n$\r\n", ERRP "invalid bulk length");
    expect_str("*1\r\n$01\r\n", ERRP "invalid bulk length");
    expect_str("*1\r\n$1x\r\n", ERRP "invalid bulk length");
    expect_str("*1\r\n$536870913\r\n", ERRP "invalid bulk length");
    expect_str("*1\r\n$536870912\r\n", "MORE pending=0");
    opts o = {1, 10};
    expect_opts("*1\r\n$11\r\n", 9, o, ERRP "invalid bulk length");
    expect_opts("*1\r\n$10\r\n0123456789\r\n", 21, o, "M [0123456789]\nMORE pending=0");
}

static void test_unauthenticated_limits(void **state)
{
    (void)state;
    opts unauth = {0, 0}, auth = {1, 0};
    expect_opts("*11\r\n", 5, unauth, ERRP "unauthenticated multibulk length");
    expect_opts("*11\r\n", 5, auth, "MORE pending=0");
    expect_opts("*10\r\n", 5, unauth, "MORE pending=0");
    expect_opts("*1\r\n$16385\r\n", 12, unauth, ERRP "unauthenticated bulk length");
    expect_opts("*1\r\n$16385\r\n", 12, auth, "MORE pending=0");
    expect_opts("*1\r\n$16384\r\n", 12, unauth, "MORE pending=0");
    /* An invalid length is reported as such before the auth check. */
    expect_opts("*1\r\n$536870913\r\n", 16, unauth, ERRP "invalid bulk length");
    expect_opts("*2147483648\r\n", 13, unauth, ERRP "invalid multibulk length");
    /* Inline requests have no argument limits before AUTH. */
    expect_opts("a b c d e f g h i j k l\r\n", 25, unauth,
                "I [a] [b] [c] [d] [e] [f] [g] [h] [i] [j] [k] [l]\nMORE pending=0");
}

static void test_unauthenticated_switch(void **state)
{
    (void)state;
    request_parser p;
    size_t c;
    request_parser_init(&p);
    p.authenticated = 0;
    assert_int_equal(request_parser_feed(&p, "*1\r\n$4\r\nAUTH\r\n", 14, &c), REQUEST_PARSE_DONE);
    p.authenticated = 1; /* the owner flips it after a successful AUTH */
    assert_int_equal(request_parser_feed(&p, "*11\r\n", 5, &c), REQUEST_PARSE_MORE);
    request_parser_free(&p);
}

static void test_too_big_count_strings(void **state)
{
    (void)state;
    size_t len;
    char *s;

    /* 65536 bytes without '\r' are still waited on; one more is an error. */
    s = filled("*", '1', 65535, "", &len);
    expect_opts(s, len, DEFAULTS, "MORE pending=65536");
    free(s);
    s = filled("*", '1', 65536, "", &len);
    expect_opts(s, len, DEFAULTS, ERRP "too big mbulk count string");
    free(s);
    /* Within the limit the line is judged as a number once '\r' arrives. */
    s = filled("*", '1', 65535, "\r\n", &len);
    expect_opts(s, len, DEFAULTS, ERRP "invalid multibulk length");
    free(s);

    s = filled("*1\r\n$", '1', 65535, "", &len);
    expect_opts(s, len, DEFAULTS, "MORE pending=65536");
    free(s);
    s = filled("*1\r\n$", '1', 65536, "", &len);
    expect_opts(s, len, DEFAULTS, ERRP "too big bulk count string");
    free(s);
    /* The type byte is only checked once the line is complete. */
    s = filled("*1\r\n", 'X', 70000, "", &len);
    expect_opts(s, len, DEFAULTS, ERRP "too big bulk count string");
    free(s);
}

static void test_nul_hides_line_end(void **state)
{
    (void)state;
    size_t len;
    char *s;

    /* Redis looks for the line end with strchr, which stops at a NUL: the
     * line never ends and the request fails at the 64 KB limit. */
    static const char a[] = "*1\0\r\n$4\r\nPING\r\n";
    expect_opts(a, sizeof(a) - 1, DEFAULTS, "MORE pending=15");
    s = filled("*1\0", '\n', 65534, "", &len);
    s[2] = '\0';
    expect_opts(s, len, DEFAULTS, "MORE pending=65536");
    free(s);
    s = filled("*1\0", '\n', 65535, "", &len);
    s[2] = '\0';
    expect_opts(s, len, DEFAULTS, ERRP "too big mbulk count string");
    free(s);
    s = filled("*1\r\n$3\0", 'x', 65535, "", &len);
    s[6] = '\0';
    expect_opts(s, len, DEFAULTS, ERRP "too big bulk count string");
    free(s);
    s = filled("PING\0", '\n', 65533, "", &len);
    s[4] = '\0';
    expect_opts(s, len, DEFAULTS, ERRP "too big inline request");
    free(s);
    static const char b[] = "\0\n";
    expect_opts(b, 2, DEFAULTS, "MORE pending=2");
}

/* ---- inline ------------------------------------------------------------- */

static void test_inline_basic(void **state)
{
    (void)state;
    expect_str("PING\r\n", "I [PING]\nMORE pending=0");
    expect_str("PING\n", "I [PING]\nMORE pending=0");
    expect_str("SET  k\tv \r\n", "I [SET] [k] [v]\nMORE pending=0");
    expect_str("GET k\r\r\n", "I [GET] [k]\nMORE pending=0");
    expect_str("\x0b\x0cPING\n", "I [PING]\nMORE pending=0");
    /* Inside a token only space, tab, CR and LF separate. */
    expect_str("ECHO a\x0b" "b\n", "I [ECHO] [a\\x0bb]\nMORE pending=0");
    expect_str("ECHO a\rb\n", "I [ECHO] [a] [b]\nMORE pending=0");
    expect_str("ECHO \xa0x\n", "I [ECHO] [\\xa0x]\nMORE pending=0");
    expect_str("GET *1\r\n", "I [GET] [*1]\nMORE pending=0");
    expect_str("PI", "MORE pending=2");
}

static void test_inline_skips_empty_lines(void **state)
{
    (void)state;
    expect_str("\r\n\n  \t \r\n\r\r\n\nPING\r\n\n", "I [PING]\nMORE pending=0");
    expect_str("\"\"\n", "I []\nMORE pending=0");
}

static void test_inline_quoting(void **state)
{
    (void)state;
    expect_str("SET \"a b\" 'c d'\n", "I [SET] [a b] [c d]\nMORE pending=0");
    expect_str("ECHO \"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n",
               "I [ECHO] [\\x0a\\x0d\\x09\\x08\\x07\\x5c\"q]\nMORE pending=0");
    expect_str("ECHO \"\\x41\\x4a\\xZZ\\x4\"\n", "I [ECHO] [AJxZZx4]\nMORE pending=0");
    expect_str("ECHO \"\\x00\"\n", "I [ECHO] [\\x00]\nMORE pending=0");
    expect_str("ECHO 'a\\'b'\n", "I [ECHO] [a'b]\nMORE pending=0");
    expect_str("ECHO 'a\\nb'\n", "I [ECHO] [a\\x5cnb]\nMORE pending=0");
    expect_str("ECHO 'a\"b' \"a'b\"\n", "I [ECHO] [a\"b] [a'b]\nMORE pending=0");
    /* A quote may open inside a token; the token then ends at its close. */
    expect_str("ECHO a\"b c\"\n", "I [ECHO] [ab c]\nMORE pending=0");
    expect_str("ECHO \"\" ''\n", "I [ECHO] [] []\nMORE pending=0");
    expect_str("ECHO \"a\"\x0bx\n", "I [ECHO] [a] [x]\nMORE pending=0");
    expect_str("ECHO \"a\"\r\n", "I [ECHO] [a]\nMORE pending=0");
}

static void test_inline_unbalanced(void **state)
{
    (void)state;
    expect_str("ECHO \"abc\r\n", ERRP "unbalanced quotes in request");
    expect_str("ECHO 'abc\n", ERRP "unbalanced quotes in request");
    expect_str("ECHO \"a\"b\n", ERRP "unbalanced quotes in request");
    expect_str("ECHO 'a'b\n", ERRP "unbalanced quotes in request");
    expect_str("ECHO a\"b c\"d\n", ERRP "unbalanced quotes in request");
    expect_str("ECHO \"\\\n", ERRP "unbalanced quotes in request");
    expect_str("ECHO 'a\\'\n", ERRP "unbalanced quotes in request");
    /* Commands before the bad line are still delivered. */
    expect_str("PING\nECHO \"x\n", "I [PING]\n" ERRP "unbalanced quotes in request");
}

static void test_too_big_inline(void **state)
{
    (void)state;
    size_t len;
    char *s;

    s = filled("", 'A', 65536, "", &len);
    expect_opts(s, len, DEFAULTS, "MORE pending=65536");
    free(s);
    s = filled("", 'A', 65537, "", &len);
    expect_opts(s, len, DEFAULTS, ERRP "too big inline request");
    free(s);
    /* 65536 bytes before '\n' (the '\r' counts) is still a line. */
    s = filled("", 'A', 65535, "\r\n", &len);
    char *t = run(s, len, 0);
    assert_int_equal(strlen(t), 3 + 65535 + 2 + strlen("MORE pending=0"));
    free(t);
    free(s);
    /* One more byte before '\n' is judged as Redis judges it, after each
     * read: refused when a read leaves more than 64 KB without a line end,
     * accepted when the line end comes in the same read. */
    s = filled("", 'A', 65536, "\r\n", &len);
    t = run(s, len, 0);
    assert_int_equal(strlen(t), 3 + 65536 + 2 + strlen("MORE pending=0"));
    free(t);
    t = run(s, len, 4096); /* the last read brings "\r\n" */
    assert_int_equal(strlen(t), 3 + 65536 + 2 + strlen("MORE pending=0"));
    free(t);
    t = run(s, len, 1);
    assert_string_equal(t, ERRP "too big inline request");
    free(t);
    t = run(s, len, 65537); /* the '\r' ends the first read */
    assert_string_equal(t, ERRP "too big inline request");
    free(t);
    free(s);
    /* A long line in one read is one command; read in pieces it is refused
     * at the first read that leaves more than 64 KB open. */
    s = filled("PING\r\nECHO ", 'A', 100000, "\r\nPING\r\n", &len);
    t = run(s, len, 0);
    assert_int_equal(strlen(t), strlen("I [PING]\nI [ECHO] []\nI [PING]\nMORE pending=0") + 100000);
    free(t);
    t = run(s, len, 16384);
    assert_string_equal(t, "I [PING]\n" ERRP "too big inline request");
    free(t);
    free(s);
    /* The same for count lines: with its '\r' in the same read, a long one
     * is judged as a number. */
    s = filled("*", '1', 70000, "\r\n", &len);
    t = run(s, len, 0);
    assert_string_equal(t, ERRP "invalid multibulk length");
    free(t);
    t = run(s, len, 4096);
    assert_string_equal(t, ERRP "too big mbulk count string");
    free(t);
    free(s);
    s = filled("*1\r\n$", '1', 70000, "\r\n", &len);
    t = run(s, len, 0);
    assert_string_equal(t, ERRP "invalid bulk length");
    free(t);
    t = run(s, len, 1000);
    assert_string_equal(t, ERRP "too big bulk count string");
    free(t);
    free(s);
}

/* ---- mixed, chunking, memory -------------------------------------------- */

static void test_chunk_equivalence_pipeline(void **state)
{
    (void)state;
    static const char in[] =
        "*3\r\n$3\r\nSET\r\n$3\r\nk\0y\r\n$4\r\n\r\n\r\n\r\n"
        "\r\n"
        "PING\r\n"
        "*0\r\n"
        "  SET \"a\\x00b\" 'q\\'s'\t x\n"
        "*-1\r\n"
        "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
        "\n"
        "*1\r\n$20\r\n01234567890123456789\r\n"
        "ECHO \"\\\\\"\r\n"
        "*1\r\n$3\r\nabc";
    const char *expect =
        "M [SET] [k\\x00y] [\\x0d\\x0a\\x0d\\x0a]\n"
        "I [PING]\n"
        "I [SET] [a\\x00b] [q's] [x]\n"
        "M [ECHO] []\n"
        "M [01234567890123456789]\n"
        "I [ECHO] [\\x5c]\n"
        "MORE pending=3";
    expect_opts(in, sizeof(in) - 1, DEFAULTS, expect);

    /* Random chunkings. */
    srand(12345);
    for (int round = 0; round < 2000; round++) {
        request_parser p;
        sbuf b = {0};
        size_t off = 0, len = sizeof(in) - 1;
        char tmp[64];
        request_parser_init(&p);
        sb_str(&b, "");
        while (off < len) {
            size_t n = 1 + (size_t)rand() % 40, c;
            if (n > len - off)
                n = len - off;
            int rc = request_parser_feed(&p, in + off, n, &c);
            off += c;
            if (rc == REQUEST_PARSE_DONE)
                sb_command(&b, &p);
            else
                assert_int_equal(rc, REQUEST_PARSE_MORE);
        }
        snprintf(tmp, sizeof(tmp), "MORE pending=%zu", request_parser_pending(&p));
        sb_str(&b, tmp);
        assert_string_equal(b.s, expect);
        free(b.s);
        request_parser_free(&p);
    }
}

/* Whole-buffer feeds take a one-pass path for complete multibulk commands;
 * byte-at-a-time feeds never can. Random pipelines, some valid and some
 * damaged (a byte changed, dropped or cut off), must give the same
 * transcript both ways, for either authentication state and bulk limit. */
static void test_one_pass_matches_bytewise(void **state)
{
    (void)state;
    static const char alphabet[] = "*$\r\n0123456789-+ aZ\0";
    srand(4242);
    for (int round = 0; round < 3000; round++) {
        char in[512];
        size_t len = 0;
        int ncmd = 1 + rand() % 4;
        for (int c = 0; c < ncmd && len < 300; c++) {
            int argc = rand() % 13; /* past the unauthenticated limit of 10 too */
            len += (size_t)snprintf(in + len, sizeof(in) - len, "*%d\r\n", argc);
            for (int a = 0; a < argc && len < 400; a++) {
                int alen = rand() % 9;
                len += (size_t)snprintf(in + len, sizeof(in) - len, "$%d\r\n", alen);
                for (int k = 0; k < alen; k++) in[len++] = (char)('a' + rand() % 26);
                in[len++] = '\r';
                in[len++] = '\n';
            }
        }
        int damage = rand() % 4;
        if (damage == 1 && len) {
            in[rand() % len] = alphabet[rand() % (sizeof(alphabet) - 1)];
        } else if (damage == 2 && len > 1) {
            size_t at = (size_t)rand() % len;
            memmove(in + at, in + at + 1, len - at - 1);
            len--;
        } else if (damage == 3 && len) {
            len = (size_t)rand() % len;
        }
        opts o = {rand() % 2, rand() % 3 == 0 ? 5 : 0};
        char *whole = run_opts(in, len, 0, o);
        char *bytes = run_opts(in, len, 1, o);
        char *sevens = run_opts(in, len, 7, o);
        if (strcmp(whole, bytes) != 0 || strcmp(whole, sevens) != 0)
            fail_msg("round %d:\n whole: %s\n bytes: %s\nsevens: %s", round, whole, bytes, sevens);
        free(whole);
        free(bytes);
        free(sevens);
    }
}

static void test_large_bulk(void **state)
{
    (void)state;
    const size_t n = 3 * 1024 * 1024 + 7;
    char hdr[64];
    int h = snprintf(hdr, sizeof(hdr), "*2\r\n$3\r\nSET\r\n$%zu\r\n", n);
    size_t len = (size_t)h + n + 2 + 14;
    char *in = malloc(len);
    assert_non_null(in);
    memcpy(in, hdr, (size_t)h);
    for (size_t i = 0; i < n; i++)
        in[h + i] = (char)(i * 131 + 7);
    memcpy(in + h + n, "\r\n*1\r\n$4\r\nPING\r\n", 16);

    static const size_t chunks[] = {1, 7, 1000, 16384, 65536, 0};
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        request_parser p;
        size_t off = 0, step = chunks[k] ? chunks[k] : len, c;
        int got = 0;
        request_parser_init(&p);
        p.authenticated = 1;
        while (off < len) {
            size_t m = len - off < step ? len - off : step;
            int rc = request_parser_feed(&p, in + off, m, &c);
            off += c;
            if (rc == REQUEST_PARSE_DONE) {
                if (got == 0) {
                    assert_int_equal(p.argc, 2);
                    assert_int_equal(p.argvlen[1], n);
                    assert_memory_equal(p.argv[1], in + h, n);
                    assert_int_equal(p.argv[1][n], '\0');
                } else {
                    assert_string_equal(p.argv[0], "PING");
                }
                got++;
            } else if (rc == REQUEST_PARSE_MORE) {
                /* While the bulk streams in, pending counts what is held. */
                if (off >= (size_t)h && off < (size_t)h + n)
                    assert_int_equal(request_parser_pending(&p), 3 + (off - (size_t)h));
            } else {
                fail_msg("unexpected error %s", p.error);
            }
        }
        assert_int_equal(got, 2);
        request_parser_free(&p);
    }
    free(in);
}

static void test_arena_reused(void **state)
{
    (void)state;
    request_parser p;
    size_t c;
    const char *m = "*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$5\r\nvalue\r\n";
    const char *i = "SET \"0123456789\" value\r\n";
    request_parser_init(&p);
    assert_int_equal(request_parser_feed(&p, m, strlen(m), &c), REQUEST_PARSE_DONE);
    assert_int_equal(request_parser_feed(&p, i, strlen(i), &c), REQUEST_PARSE_DONE);
    char *arena = p.arena;
    char **argv = p.argv;
    size_t cap = p.arena_cap;
    for (int k = 0; k < 1000; k++) {
        const char *in = (k & 1) ? i : m;
        for (size_t off = 0; off < strlen(in); off += c) {
            int rc = request_parser_feed(&p, in + off, strlen(in) - off < 5 ? strlen(in) - off : 5, &c);
            if (rc == REQUEST_PARSE_DONE) {
                assert_int_equal(p.argc, 3);
                assert_string_equal(p.argv[1], "0123456789");
            }
        }
    }
    assert_ptr_equal(p.arena, arena);
    assert_ptr_equal(p.argv, argv);
    assert_int_equal(p.arena_cap, cap);
    request_parser_free(&p);
}

static void test_many_arguments(void **state)
{
    (void)state;
    sbuf in = {0}, want = {0};
    char tmp[64];
    sb_str(&in, "*5000\r\n");
    sb_str(&want, "M");
    for (int k = 0; k < 5000; k++) {
        int n = snprintf(tmp, sizeof(tmp), "%d", k);
        char h[32];
        snprintf(h, sizeof(h), "$%d\r\n", n);
        sb_str(&in, h);
        sb_str(&in, tmp);
        sb_str(&in, "\r\n");
        sb_str(&want, " [");
        sb_str(&want, tmp);
        sb_str(&want, "]");
    }
    sb_str(&in, "PING\r\n");
    sb_str(&want, "\nI [PING]\nMORE pending=0");
    for (size_t chunk = 0; chunk < 4; chunk++) {
        char *t = run(in.s, in.len, chunk ? chunk * 3 - 1 : 0);
        assert_string_equal(t, want.s);
        free(t);
    }
    free(in.s);
    free(want.s);
}

static void test_error_reports_consumed(void **state)
{
    (void)state;
    request_parser p;
    size_t c;
    request_parser_init(&p);
    assert_int_equal(request_parser_feed(&p, "PING\r\n*x\r\nGET k\r\n", 17, &c), REQUEST_PARSE_DONE);
    assert_int_equal(c, 6);
    assert_int_equal(request_parser_feed(&p, "*x\r\nGET k\r\n", 11, &c), REQUEST_PARSE_ERROR);
    assert_true(c <= 11);
    assert_string_equal(p.error, "ERR Protocol error: invalid multibulk length");
    request_parser_free(&p);
}

static void test_empty_feed(void **state)
{
    (void)state;
    request_parser p;
    size_t c = 7;
    request_parser_init(&p);
    assert_int_equal(request_parser_feed(&p, NULL, 0, &c), REQUEST_PARSE_MORE);
    assert_int_equal(c, 0);
    assert_int_equal(request_parser_feed(&p, "*1\r\n$1\r\na\r\n", 11, &c), REQUEST_PARSE_DONE);
    /* An empty feed after DONE starts the next command cleanly. */
    assert_int_equal(request_parser_feed(&p, "", 0, &c), REQUEST_PARSE_MORE);
    assert_int_equal(request_parser_pending(&p), 0);
    request_parser_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk_basic),
        cmocka_unit_test(test_pipeline_consumed),
        cmocka_unit_test(test_binary_bulks),
        cmocka_unit_test(test_empty_bulk),
        cmocka_unit_test(test_separators_not_checked),
        cmocka_unit_test(test_skip_empty_multibulk),
        cmocka_unit_test(test_multibulk_count_errors),
        cmocka_unit_test(test_bulk_errors),
        cmocka_unit_test(test_unauthenticated_limits),
        cmocka_unit_test(test_unauthenticated_switch),
        cmocka_unit_test(test_too_big_count_strings),
        cmocka_unit_test(test_nul_hides_line_end),
        cmocka_unit_test(test_inline_basic),
        cmocka_unit_test(test_inline_skips_empty_lines),
        cmocka_unit_test(test_inline_quoting),
        cmocka_unit_test(test_inline_unbalanced),
        cmocka_unit_test(test_too_big_inline),
        cmocka_unit_test(test_chunk_equivalence_pipeline),
        cmocka_unit_test(test_one_pass_matches_bytewise),
        cmocka_unit_test(test_large_bulk),
        cmocka_unit_test(test_arena_reused),
        cmocka_unit_test(test_many_arguments),
        cmocka_unit_test(test_error_reports_consumed),
        cmocka_unit_test(test_empty_feed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
