/* Fibers: a function running on its own C stack (ucontext), switched to and
 * from the caller's stack. A script suspended inside redis.call, a Lua
 * metamethod or a table.sort comparator keeps its whole C call chain on its
 * fiber stack, which is what Lua 5.1 coroutines cannot do.
 *
 * Stacks are mmap'd with a PROT_NONE guard page below them and pooled. */
#ifndef EVALPROXY_FIBER_H
#define EVALPROXY_FIBER_H

#include <stddef.h>

typedef struct fiber fiber;
typedef struct fiber_pool fiber_pool;
typedef void (*fiber_fn)(void *arg);

/* stack_size 0: the default (8 MiB, 32 MiB under AddressSanitizer; only the
 * touched pages cost memory, and a fiber whose runs noted a depth below the
 * top 64 KiB gives the rest back when it is freed). max_idle:
 * how many finished fibers and stacks of abandoned ones, together, to keep
 * for reuse. */
fiber_pool *fiber_pool_new(size_t stack_size, unsigned max_idle);
/* Every fiber of the pool must be freed first. */
void fiber_pool_free(fiber_pool *p);
size_t fiber_pool_stack_size(const fiber_pool *p);
unsigned fiber_pool_idle(const fiber_pool *p);

/* A fiber that will run fn(arg) when first resumed; NULL if out of memory. */
fiber *fiber_new(fiber_pool *p, fiber_fn fn, void *arg);
/* From the caller's stack: run the fiber until it yields or fn returns. */
void fiber_resume(fiber *f);
/* From inside the fiber: switch back to whoever resumed it. */
void fiber_yield(fiber *f);
/* Non-zero once fn has returned. */
int fiber_finished(const fiber *f);
/* The lowest stack address noted on the running fiber (NULL when no fiber
 * runs). Code that can sit deep in a run's C recursion notes its depth, so
 * that a fiber freed after a deep run gives its deep pages back. */
extern char *fiber_depth_mark;

static inline void fiber_note_depth(void) {
    char *sp = (char *)__builtin_frame_address(0);
    if (sp < fiber_depth_mark) fiber_depth_mark = sp;
}

/* Release a fiber that is not running: finished (kept whole, to be handed
 * out again by fiber_new), or suspended and never to be resumed again (its
 * stack is simply dropped and returned to the pool). */
void fiber_free(fiber *f);

#endif
