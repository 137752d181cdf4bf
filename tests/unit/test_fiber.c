/* Unit tests for fibers (lua/fiber.c): switching, yields in both directions,
 * finished fibers parked and restarted with a new function (and their own
 * stack), abandoned fibers never restarted, and the pool's bound. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lua/fiber.h"

typedef struct step_state {
    fiber *self;
    int steps;      /* how many times the body went on after a yield */
    int yields;     /* how many yields before returning */
    uintptr_t stack_at; /* an address on the body's stack */
    char fill;      /* written over a buffer on the body's stack */
} step_state;

static void body(void *arg)
{
    step_state *s = arg;
    char buf[4096];
    memset(buf, s->fill, sizeof(buf));
    s->stack_at = (uintptr_t)buf;
    for (int i = 0; i < s->yields; i++) {
        fiber_yield(s->self);
        s->steps++;
        /* the stack survived the switch */
        for (size_t j = 0; j < sizeof(buf); j += 512) assert_int_equal(buf[j], s->fill);
    }
}

static void run_to_end(step_state *s)
{
    fiber_resume(s->self);
    for (int i = 0; i < s->yields; i++) {
        assert_false(fiber_finished(s->self));
        assert_int_equal(s->steps, i);
        fiber_resume(s->self);
    }
    assert_true(fiber_finished(s->self));
    assert_int_equal(s->steps, s->yields);
}

static void test_yield_and_finish(void **state)
{
    (void)state;
    fiber_pool *p = fiber_pool_new(0, 4);
    step_state s = {.yields = 3, .fill = 'a'};
    s.self = fiber_new(p, body, &s);
    assert_non_null(s.self);
    run_to_end(&s);
    fiber_resume(s.self); /* a finished fiber does nothing */
    assert_int_equal(s.steps, 3);
    fiber_free(s.self);
    assert_int_equal(fiber_pool_idle(p), 1);
    fiber_pool_free(p);
}

/* A finished fiber is handed out again and runs the new function from its
 * start, on the same stack. */
static void test_finished_fiber_is_reused(void **state)
{
    (void)state;
    fiber_pool *p = fiber_pool_new(0, 4);
    step_state a = {.yields = 2, .fill = 'a'};
    a.self = fiber_new(p, body, &a);
    run_to_end(&a);
    fiber *first = a.self;
    fiber_free(first);

    for (int round = 0; round < 5; round++) {
        step_state b = {.yields = round, .fill = (char)('b' + round)};
        b.self = fiber_new(p, body, &b);
        assert_ptr_equal(b.self, first);
        assert_int_equal(fiber_pool_idle(p), 0);
        run_to_end(&b);
#ifndef __SANITIZE_ADDRESS__ /* ASan may put locals on its own fake stacks */
        assert_int_equal(b.stack_at, a.stack_at); /* same frame on the same stack */
#endif
        fiber_free(b.self);
        assert_int_equal(fiber_pool_idle(p), 1);
    }
    fiber_pool_free(p);
}

/* A fiber dropped while suspended keeps nothing running: the next fiber is a
 * fresh one (its stack may be recycled, its context is not). */
static void test_abandoned_fiber_is_not_restarted(void **state)
{
    (void)state;
    fiber_pool *p = fiber_pool_new(0, 4);
    step_state a = {.yields = 5, .fill = 'a'};
    a.self = fiber_new(p, body, &a);
    fiber_resume(a.self);
    fiber_resume(a.self);
    assert_int_equal(a.steps, 1);
    fiber_free(a.self); /* suspended inside body */
    assert_int_equal(fiber_pool_idle(p), 1);

    step_state b = {.yields = 1, .fill = 'b'};
    b.self = fiber_new(p, body, &b);
    run_to_end(&b);
    assert_int_equal(a.steps, 1); /* a's body never went on */
    fiber_free(b.self);
    assert_int_equal(fiber_pool_idle(p), 1); /* b parked; a's stack taken by b */
    fiber_pool_free(p);
}

/* Interleaved fibers, then more finished at once than the pool keeps. */
static void test_interleaved_and_bounded(void **state)
{
    (void)state;
    enum { N = 8 };
    fiber_pool *p = fiber_pool_new(0, 3);
    step_state s[N];
    for (int i = 0; i < N; i++) {
        s[i] = (step_state){.yields = 3, .fill = (char)('A' + i)};
        s[i].self = fiber_new(p, body, &s[i]);
        assert_non_null(s[i].self);
    }
    for (int round = 0; round <= 3; round++)
        for (int i = 0; i < N; i++) fiber_resume(s[i].self);
    for (int i = 0; i < N; i++) {
        assert_true(fiber_finished(s[i].self));
        assert_int_equal(s[i].steps, 3);
        fiber_free(s[i].self);
    }
    assert_int_equal(fiber_pool_idle(p), 3);
    fiber_pool_free(p);
}

/* A run that goes deep: 4 KiB frames, the deepest frame's address kept. */
typedef struct deep_state {
    fiber *self;
    int depth;
    int yield_at_bottom;
    uintptr_t top, deepest;
} deep_state;

__attribute__((noinline)) static int dive(deep_state *s, int n)
{
    char buf[4096];
    memset(buf, n, sizeof(buf));
    __asm__ volatile("" : : "r"(buf) : "memory");
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (!s->deepest || here < s->deepest) s->deepest = here;
    if (n == 0) fiber_note_depth();
    int r = 0;
    if (n > 0) r = dive(s, n - 1);
    else if (s->yield_at_bottom) fiber_yield(s->self);
    return r + buf[n & 4095];
}

static void deep_body(void *arg)
{
    deep_state *s = arg;
    s->top = (uintptr_t)__builtin_frame_address(0);
    dive(s, s->depth);
}

/* Pages of [lo, hi) that are resident. */
static size_t resident_pages(uintptr_t lo, uintptr_t hi)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    lo &= ~(uintptr_t)(page - 1);
    size_t n = (hi - lo + page - 1) / page;
    unsigned char *vec = calloc(n, 1);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)lo, hi - lo, vec), 0);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += vec[i] & 1;
    free(vec);
    return count;
}

/* The default stack takes a deep run; a fiber freed after one (its depth
 * noted), finished (parked) or suspended (its stack pooled), keeps only the
 * top of its stack resident. */
static void test_deep_stack_pages_given_back(void **state)
{
    (void)state;
    for (int abandoned = 0; abandoned <= 1; abandoned++) {
        fiber_pool *p = fiber_pool_new(0, 4);
        assert_true(fiber_pool_stack_size(p) >= (8u << 20));
        deep_state s = {.depth = 1024, .yield_at_bottom = abandoned}; /* 4 MiB */
        s.self = fiber_new(p, deep_body, &s);
        assert_non_null(s.self);
        fiber_resume(s.self);
        assert_int_equal(fiber_finished(s.self), !abandoned);
        uintptr_t lo = s.deepest, hi = s.top - (128u << 10);
        assert_true(s.top - s.deepest > (4u << 20));
        size_t deep = (hi - lo) / (size_t)sysconf(_SC_PAGESIZE);
        assert_true(resident_pages(lo, hi) > deep / 2);
        fiber_free(s.self);
        assert_int_equal(fiber_pool_idle(p), 1);
        assert_int_equal(resident_pages(lo, hi), 0);
        assert_true(resident_pages(s.top - 4096, s.top) > 0); /* the top is kept */

        /* A shallow run on the same stack leaves it as it is. */
        step_state b = {.yields = 1, .fill = 'b'};
        b.self = fiber_new(p, body, &b);
        run_to_end(&b);
        fiber_free(b.self);
        assert_int_equal(resident_pages(lo, hi), 0);
        fiber_pool_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yield_and_finish),
        cmocka_unit_test(test_finished_fiber_is_reused),
        cmocka_unit_test(test_abandoned_fiber_is_not_restarted),
        cmocka_unit_test(test_interleaved_and_bounded),
        cmocka_unit_test(test_deep_stack_pages_given_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
