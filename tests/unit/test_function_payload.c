/* Unit tests for FUNCTION DUMP / RESTORE payloads (proxy/commands/function_payload.c):
 * Redis's CRC64, a payload written by redis-server 7.0.15 (LZF-compressed
 * code with an overlapping back reference), round trips of the proxy's own
 * payloads, and every way a payload can be refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proxy/commands/function_payload.h"

static void test_crc64_check_value(void **state)
{
    (void)state;
    /* The Jones CRC64 check value Redis's own crc64 test uses. */
    assert_true(crc64_redis(0, (const unsigned char *)"123456789", 9) == 0xe9c6d914c4b8d9caULL);
    assert_true(crc64_redis(0, (const unsigned char *)"", 0) == 0);
}

/* FUNCTION DUMP of redis-server 7.0.15 with one library. */
static const char redis_dump[] =
    "\xf5\xc3\x40\x4a\x40\x88\x1f\x23\x21\x6c\x75\x61\x20\x6e\x61\x6d\x65\x3d\x76\x65\x63\x0a\x72\x65\x64\x69"
    "\x73\x2e\x72\x65\x67\x69\x73\x74\x65\x72\x5f\x66\x75\x08\x6e\x63\x74\x69\x6f\x6e\x28\x27\x61\x20\x00\x02"
    "\x27\x2c\x20\xe0\x00\x10\x08\x29\x20\x72\x65\x74\x75\x72\x6e\x20\x60\x19\xe0\x33\x00\x05\x27\x20\x65\x6e"
    "\x64\x29\x0a\x00\x0a\x2b\xd5\x55\x54\xae\xdb\x90";

static const char redis_code[] =
    "#!lua name=vec\nredis.register_function('aaaa', function() return "
    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' end)";

static void test_decodes_a_redis_payload(void **state)
{
    (void)state;
    int n;
    char **codes;
    size_t *lens;
    const char *err = NULL;
    assert_int_equal(function_payload_decode(redis_dump, sizeof(redis_dump) - 1, &n, &codes, &lens, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(lens[0], sizeof(redis_code) - 1);
    assert_memory_equal(codes[0], redis_code, lens[0]);
    function_payload_free(n, codes, lens);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, 'x', 70000);
    const char *in[] = {"#!lua name=a\n", "", big};
    size_t inlen[] = {13, 0, 70000};
    size_t len;
    char *p = function_payload_encode(3, in, inlen, &len);
    int n;
    char **codes;
    size_t *lens;
    const char *err = NULL;
    assert_int_equal(function_payload_decode(p, len, &n, &codes, &lens, &err), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lens[i], inlen[i]);
        assert_memory_equal(codes[i], in[i], lens[i]);
    }
    function_payload_free(n, codes, lens);
    /* no libraries: just the version and the checksum */
    free(p);
    p = function_payload_encode(0, NULL, NULL, &len);
    assert_int_equal(len, 10);
    assert_int_equal(function_payload_decode(p, len, &n, &codes, &lens, &err), 0);
    assert_int_equal(n, 0);
    function_payload_free(n, codes, lens);
    free(p);
    free(big);
}

static void expect_refused(const char *p, size_t len, const char *want)
{
    int n;
    char **codes;
    size_t *lens;
    const char *err = NULL;
    assert_int_equal(function_payload_decode(p, len, &n, &codes, &lens, &err), -1);
    assert_string_equal(err, want);
}

static void test_refusals(void **state)
{
    (void)state;
    char buf[sizeof(redis_dump)];
    memcpy(buf, redis_dump, sizeof(redis_dump));
    size_t len = sizeof(redis_dump) - 1;
    expect_refused(buf, 9, "ERR DUMP payload version or checksum are wrong");
    buf[len - 1] ^= 1; /* checksum */
    expect_refused(buf, len, "ERR DUMP payload version or checksum are wrong");
    buf[len - 1] ^= 1;
    buf[10] ^= 1; /* body */
    expect_refused(buf, len, "ERR DUMP payload version or checksum are wrong");
    buf[10] ^= 1;

    /* Well-formed envelopes around bad entries. */
    const char *only_type[] = {"\x00", "\xf6\x01" "a", "\xf5\x45"};
    const size_t only_len[] = {1, 3, 2};
    const char *want[] = {"ERR given type is not a function", "ERR Failed loading engine name",
                          "ERR Failed loading library payload"};
    for (int i = 0; i < 3; i++) {
        size_t bl = only_len[i];
        char p[64];
        memcpy(p, only_type[i], bl);
        p[bl] = 10;
        p[bl + 1] = 0;
        uint64_t crc = crc64_redis(0, (const unsigned char *)p, bl + 2);
        for (int k = 0; k < 8; k++) p[bl + 2 + k] = (char)(crc >> (8 * k));
        expect_refused(p, bl + 10, want[i]);
    }
    /* a newer RDB version than Redis 7.0's (10) */
    char p[10] = {11, 0};
    uint64_t crc = crc64_redis(0, (const unsigned char *)p, 2);
    for (int k = 0; k < 8; k++) p[2 + k] = (char)(crc >> (8 * k));
    expect_refused(p, 10, "ERR DUMP payload version or checksum are wrong");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc64_check_value),
        cmocka_unit_test(test_decodes_a_redis_payload),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
