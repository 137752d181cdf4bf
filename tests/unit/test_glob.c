/* Unit tests for the glob matcher: answers taken from redis-server 7.0.15
 * (KEYS on a one-key database), including its signed byte ranges, unclosed
 * classes, trailing escapes and the nesting limit of 1000 stars. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/glob.h"

static const struct {
    const char *pat;
    size_t plen;
    const char *s;
    size_t slen;
    int match;
} cases[] = {
    {"\x2a", 1, "\x61\x62\x63", 3, 1},
    {"\x61\x2a\x63", 3, "\x61\x62\x62\x62\x63", 5, 1},
    {"\x61\x3f\x63", 3, "\x61\x62\x63", 3, 1},
    {"\x61\x3f\x63", 3, "\x61\x63", 2, 0},
    {"\x5b\x61\x62\x63\x5d", 5, "\x62", 1, 1},
    {"\x5b\x5e\x61\x62\x63\x5d", 6, "\x62", 1, 0},
    {"\x5b\x61\x2d\x63\x5d", 5, "\x42", 1, 0},
    {"\x5b\x63\x2d\x61\x5d", 5, "\x62", 1, 1},
    {"\x5c\x2a", 2, "\x2a", 1, 1},
    {"\x5c\x2a", 2, "\x61", 1, 0},
    {"\x5b\x5c\x5d\x5d", 4, "\x5d", 1, 1},
    {"\x5b\x61", 2, "\x61", 1, 1},
    {"\x5b\x61", 2, "\x5b", 1, 0},
    {"\x5b", 1, "\x5b", 1, 0},
    {"\x61\x5c", 2, "\x61\x5c", 2, 1},
    {"\x5b\x61\x2d\xff\x5d", 5, "\xe9", 1, 0},
    {"\x5b\x61\x2d\xff\x5d", 5, "\x62", 1, 0},
    {"\x5b\x61\x2d\xff\x5d", 5, "\xff", 1, 1},
    {"\x5b\x80\x2d\xff\x5d", 5, "\xc0", 1, 1},
    {"\x5b\x5e", 2, "\x78", 1, 1},
    {"\x2a\x5b", 2, "\x61", 1, 0},
    {"\x61\x2a", 2, "\x61", 1, 1},
    {"\x61\x2a\x2a", 3, "\x61", 1, 1},
    {"\x2a\x2a\x61", 3, "\x61", 1, 1},
    {"\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x61\x2a\x62", 21, "\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61\x61", 60, 0},
    {"", 0, "", 0, 1},
    {"\x3f", 1, "", 0, 0},
    {"\x5b\x5d\x61\x5d", 4, "\x5d", 1, 0},
    {"\x5b\x5d\x61\x5d", 4, "\x61", 1, 0},
    {"\x5b\x21\x61\x5d", 4, "\x21", 1, 1},
    {"\x61\x5b\x62\x2d\x5d", 5, "\x61\x2d", 2, 0},
    {"\x00\x2a", 2, "\x00\x78", 2, 1},
};

static void test_answers_as_redis(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = glob_match(cases[i].pat, cases[i].plen, cases[i].s, cases[i].slen, 0);
        if (got != cases[i].match) fail_msg("case %zu: got %d, Redis answers %d", i, got, cases[i].match);
    }
}

/* "*a" repeated n times against n a's: Redis gives up past 1000 nested stars. */
static int stars(int n, const char *unit)
{
    size_t ul = strlen(unit);
    char *p = malloc((size_t)n * ul), *s = malloc((size_t)n);
    for (int i = 0; i < n; i++) memcpy(p + (size_t)i * ul, unit, ul), s[i] = 'a';
    int m = glob_match(p, (size_t)n * ul, s, (size_t)n, 0);
    free(p);
    free(s);
    return m;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    assert_int_equal(stars(999, "*a"), 1);
    assert_int_equal(stars(1001, "*a"), 0);
    assert_int_equal(stars(1100, "*?"), 0);
    assert_int_equal(stars(50000, "*?"), 0); /* ends at once, as Redis */
}

static void test_nocase(void **state)
{
    (void)state;
    assert_int_equal(glob_match("MAX*", 4, "maxclients", 10, 1), 1);
    assert_int_equal(glob_match("MAX*", 4, "maxclients", 10, 0), 0);
    assert_int_equal(glob_match("[A-C]x", 6, "bX", 2, 1), 1);
    assert_int_equal(glob_match("\xc9", 1, "\xe9", 1, 1), 0); /* ASCII folding only */
    assert_int_equal(glob_match_cstr_pattern("max\0zz", 6, "max", 3, 1), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_as_redis),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_nocase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
