/* Unit tests for the allocation counter behind INFO's used_memory: every
 * kind of allocation is counted, and freeing everything brings it back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc_stats.h"

/* Through a volatile sink, so the compiler keeps every allocation. */
static void *volatile sink[16];

static void test_every_allocation_counted_and_given_back(void **state)
{
    (void)state;
    size_t base = alloc_stats_used();
    sink[0] = malloc(1000);
    sink[1] = calloc(10, 100);
    sink[2] = realloc(NULL, 500);
    sink[2] = realloc(sink[2], 5000);
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 64, 3000), 0);
    sink[3] = p;
    sink[4] = aligned_alloc(4096, 8192);
    sink[5] = reallocarray(NULL, 100, 30);
    sink[6] = memalign(128, 700);
    sink[7] = valloc(100);
    sink[8] = strdup("counted by libc's own call to malloc");
    for (int i = 0; i < 9; i++) assert_non_null(sink[i]);
    assert_true(alloc_stats_used() >= base + 1000 + 1000 + 5000 + 3000 + 8192 + 3000 + 700 + 100);
    sink[2] = realloc(sink[2], 100); /* shrinks */
    for (int i = 0; i < 9; i++) free(sink[i]);
    assert_int_equal(alloc_stats_used(), base);

    /* realloc to 0 frees (glibc); a failed one changes nothing. */
    sink[0] = malloc(64);
    free(realloc(sink[0], 0));
    assert_int_equal(alloc_stats_used(), base);
#ifndef __SANITIZE_ADDRESS__ /* the sanitizer reports these as errors */
    sink[0] = malloc(64);
    errno = 0;
    volatile size_t huge = SIZE_MAX; /* not a constant the compiler would refuse */
    assert_null(reallocarray(sink[0], huge, 2));
    assert_int_equal(errno, ENOMEM);
    free(sink[0]);
    assert_int_equal(alloc_stats_used(), base);
    assert_int_equal(posix_memalign(&p, 3, 10), EINVAL);
#endif
    free(NULL);
    assert_int_equal(alloc_stats_used(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_counted_and_given_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
