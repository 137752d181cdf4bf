/* Unit tests for the free lists behind the Lua heap and SLOWLOG's copies:
 * contents survive every resize, blocks are reused by size, and no more
 * than the limit is kept. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util/alloc_stats.h"
#include "util/block_cache.h"

static void fill(unsigned char *p, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i);
}

static int filled(const unsigned char *p, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i)) return 0;
    return 1;
}

static void test_contents_survive_every_resize(void **state)
{
    (void)state;
    block_cache c;
    block_cache_init(&c, 1 << 20);
    /* Through every class, into malloc's sizes and back down. */
    static const size_t sizes[] = {1, 15, 16, 17, 100, 512, 513, 4000, 600, 512, 33, 8, 70000, 3};
    unsigned char *p = block_cache_realloc(&c, NULL, 0, sizes[0]);
    assert_non_null(p);
    fill(p, sizes[0], 7);
    for (size_t i = 1; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t keep = sizes[i - 1] < sizes[i] ? sizes[i - 1] : sizes[i];
        p = block_cache_realloc(&c, p, sizes[i - 1], sizes[i]);
        assert_non_null(p);
        assert_true(filled(p, keep, 7));
        fill(p, sizes[i], 7);
    }
    block_cache_free(&c, p, 3);
    block_cache_clear(&c);
}

static void test_blocks_reused_by_size_within_the_limit(void **state)
{
    (void)state;
    size_t base = alloc_stats_used();
    block_cache c;
    block_cache_init(&c, 4 * 64);
    void *a = block_cache_alloc(&c, 60), *b = block_cache_alloc(&c, 64);
    block_cache_free(&c, a, 60);
#if !defined(__SANITIZE_ADDRESS__)
    assert_int_equal(c.kept, 64);
    /* A size of the same class gets it back; another class does not. */
    void *d = block_cache_alloc(&c, 49);
    assert_ptr_equal(d, a);
    assert_int_equal(c.kept, 0);
    void *e = block_cache_alloc(&c, 100);
    assert_ptr_not_equal(e, b);
    block_cache_free(&c, e, 100);
    block_cache_free(&c, d, 49);
    block_cache_free(&c, b, 64);
    assert_int_equal(c.kept, 112 + 64 + 64);
    /* Past the limit, a freed block goes back to malloc. */
    void *f = block_cache_alloc(&c, 200);
    block_cache_free(&c, f, 200);
    assert_int_equal(c.kept, 240);
#else
    block_cache_free(&c, b, 64);
    assert_int_equal(c.kept, 0);
#endif
    block_cache_clear(&c);
    assert_int_equal(c.kept, 0);
    assert_int_equal(alloc_stats_used(), base);
}

static void test_static_cache_with_only_a_limit(void **state)
{
    (void)state;
    static block_cache c = {.limit = 1024};
    size_t base = alloc_stats_used();
    void *p = block_cache_alloc(&c, 300);
    assert_non_null(p);
    block_cache_free(&c, p, 300);
    block_cache_clear(&c);
    assert_int_equal(alloc_stats_used(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contents_survive_every_resize),
        cmocka_unit_test(test_blocks_reused_by_size_within_the_limit),
        cmocka_unit_test(test_static_cache_with_only_a_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
