#include "lua/fiber.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

/* AddressSanitizer must be told about every stack switch, or it reports
 * false stack-buffer errors and mishandles longjmp across Lua's pcalls. */
#include "util/sanitizer.h"

/* Redis runs scripts on its main thread's 8 MiB stack; a fiber gets as much
 * (four times that under AddressSanitizer, whose frames are larger), so deep
 * C recursion that passes on Redis passes here. The stacks are mmap'd with
 * MAP_NORESERVE: only the pages a run touches cost memory. */
#ifdef BUILT_WITH_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define DEFAULT_STACK (32u << 20)
#else
#define DEFAULT_STACK (8u << 20)
#endif

/* The top of a stack stays resident from run to run (ordinary scripts use a
 * few KiB of it). A fiber whose runs went deeper gives the rest back when it
 * is parked or its stack pooled, so a deep run never leaves megabytes
 * pinned. How deep a fiber went is what fiber_note_depth() saw: no system
 * call, and no look at the pages themselves (reading an untouched page maps
 * it). */
#define STACK_KEEP (64u << 10)

char *fiber_depth_mark;

typedef struct stack_block {
    struct stack_block *next;
    void *base;    /* mmap'd region, guard page first */
    size_t total;  /* guard + usable */
} stack_block;

struct fiber_pool {
    size_t stack_size;
    size_t page;
    unsigned max_idle, idle;
    stack_block *free_list;
    /* Fibers whose function returned, parked on their own stacks: the next
     * fiber_new restarts one with a jump, no new context and no system call. */
    struct fiber *parked;
    unsigned nparked;
    ucontext_t template_ctx;
    int have_template;
};

struct fiber {
    fiber_pool *pool;
    ucontext_t ctx, caller;
    fiber_fn fn;
    void *arg;
    void *stack;       /* usable area (above the guard page) */
    size_t stack_size;
    void *mapping;
    size_t mapping_size;
    int started, finished;
    char *depth_mark; /* lowest address noted on the stack since it was last trimmed */
    struct fiber *next_parked;
#ifndef BUILT_WITH_ASAN
    /* After the first entry, switches are _setjmp/_longjmp: unlike
     * swapcontext they do not save the signal mask, which costs a system
     * call per switch. */
    jmp_buf fiber_jb, caller_jb;
#endif
#ifdef BUILT_WITH_ASAN
    void *fake_stack;          /* ASan's fake stack of whichever side is switched out */
    void *yield_frame;         /* fiber_yield's frame at the last switch out */
    const void *caller_bottom; /* caller's stack, learnt at each switch in */
    size_t caller_size;
#endif
};

fiber_pool *fiber_pool_new(size_t stack_size, unsigned max_idle) {
    fiber_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    if (stack_size == 0) stack_size = DEFAULT_STACK;
    p->stack_size = (stack_size + p->page - 1) / p->page * p->page;
    p->max_idle = max_idle;
    return p;
}

static void stack_put(fiber_pool *p, fiber *f);

/* Give back the pages below the kept top if a run went there. */
static void stack_trim(fiber *f) {
    char *top = (char *)f->stack + f->stack_size;
    if (f->stack_size > STACK_KEEP && (uintptr_t)f->depth_mark < (uintptr_t)top - STACK_KEEP)
        madvise(f->stack, f->stack_size - STACK_KEEP, MADV_DONTNEED);
    f->depth_mark = top;
}

void fiber_pool_free(fiber_pool *p) {
    if (!p) return;
    while (p->parked) {
        fiber *f = p->parked;
        p->parked = f->next_parked;
        munmap(f->mapping, f->mapping_size);
        free(f);
    }
    while (p->free_list) {
        stack_block *b = p->free_list;
        p->free_list = b->next;
        munmap(b->base, b->total);
        free(b);
    }
    free(p);
}

size_t fiber_pool_stack_size(const fiber_pool *p) { return p->stack_size; }
unsigned fiber_pool_idle(const fiber_pool *p) { return p->idle + p->nparked; }

static int stack_get(fiber_pool *p, fiber *f) {
    if (p->free_list) {
        stack_block *b = p->free_list;
        p->free_list = b->next;
        p->idle--;
        f->mapping = b->base;
        f->mapping_size = b->total;
        free(b);
    } else {
        size_t total = p->stack_size + p->page;
        void *m = mmap(NULL, total, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (m == MAP_FAILED) return -1;
        /* Guard page at the low end: stacks grow down, an overflow faults. */
        if (mprotect(m, p->page, PROT_NONE) != 0) {
            munmap(m, total);
            return -1;
        }
        /* Huge pages would make a few touched bytes cost 2 MiB. */
        madvise((char *)m + p->page, p->stack_size, MADV_NOHUGEPAGE);
        f->mapping = m;
        f->mapping_size = total;
    }
    f->stack = (char *)f->mapping + p->page;
    f->stack_size = p->stack_size;
    f->depth_mark = (char *)f->stack + f->stack_size;
    return 0;
}

static void stack_put(fiber_pool *p, fiber *f) {
#ifdef BUILT_WITH_ASAN
    /* The frames a fiber abandoned in the middle of its run never returned
     * to unpoison their redzones: clear them (only them, between where it
     * last yielded and the top; the whole stack's shadow is megabytes)
     * before another fiber runs on this stack. */
    if (f->yield_frame) {
        char *from = (char *)f->yield_frame - 4096;
        if (from < (char *)f->stack) from = f->stack;
        ASAN_UNPOISON_MEMORY_REGION(from, (size_t)((char *)f->stack + f->stack_size - from));
    }
#endif
    stack_block *b = NULL;
    if (p->idle + p->nparked < p->max_idle) b = malloc(sizeof(*b));
    if (!b) {
        munmap(f->mapping, f->mapping_size);
        return;
    }
    stack_trim(f);
    b->base = f->mapping;
    b->total = f->mapping_size;
    b->next = p->free_list;
    p->free_list = b;
    p->idle++;
}

static void fiber_entry(unsigned hi, unsigned lo) {
    fiber *f = (fiber *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
#ifdef BUILT_WITH_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->caller_bottom, &f->caller_size);
#endif
    /* When fn returns the fiber yields, finished; fiber_new may restart it
     * from here with another function. */
    for (;;) {
        f->fn(f->arg);
        f->finished = 1;
        fiber_yield(f);
    }
}

/* getcontext "returns twice": keep it away from fiber_new's locals. */
__attribute__((noinline)) static int get_context(ucontext_t *c) { return getcontext(c); }

fiber *fiber_new(fiber_pool *p, fiber_fn fn, void *arg) {
    if (p->parked) {
        fiber *f = p->parked;
        p->parked = f->next_parked;
        p->nparked--;
        f->fn = fn;
        f->arg = arg;
        f->finished = 0;
        return f;
    }
    fiber *f = calloc(1, sizeof(*f));
    if (!f) return NULL;
    f->pool = p;
    f->fn = fn;
    f->arg = arg;
    if (stack_get(p, f) != 0) {
        free(f);
        return NULL;
    }
    if (!p->have_template) {
        if (get_context(&p->template_ctx) != 0) {
            stack_put(p, f);
            free(f);
            return NULL;
        }
        p->have_template = 1;
    }
    /* A copy of one captured context: no getcontext system call per fiber. */
    f->ctx = p->template_ctx;
#if defined(__x86_64__) && defined(__GLIBC__)
    f->ctx.uc_mcontext.fpregs = &f->ctx.__fpregs_mem; /* the copy points at its own FP area */
#endif
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = f->stack_size;
    f->ctx.uc_link = NULL;
    uintptr_t v = (uintptr_t)f;
    makecontext(&f->ctx, (void (*)(void))fiber_entry, 2, (unsigned)(v >> 32), (unsigned)(v & 0xffffffffu));
    return f;
}

/* While a fiber runs, fiber_depth_mark is its mark; NULL on the caller's
 * stack, where nothing is noted. */
static char *depth_mark_enter(fiber *f) {
    char *outer = fiber_depth_mark;
    fiber_depth_mark = f->depth_mark;
    return outer;
}

static void depth_mark_leave(fiber *f, char *outer) {
    f->depth_mark = fiber_depth_mark;
    fiber_depth_mark = outer;
}

#ifdef BUILT_WITH_ASAN
void fiber_resume(fiber *f) {
    if (f->finished) return;
    f->started = 1;
    char *outer = depth_mark_enter(f);
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_size);
    swapcontext(&f->caller, &f->ctx);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
    depth_mark_leave(f, outer);
}

void fiber_yield(fiber *f) {
    f->yield_frame = __builtin_frame_address(0);
    __sanitizer_start_switch_fiber(&f->fake_stack, f->caller_bottom, f->caller_size);
    swapcontext(&f->ctx, &f->caller);
    __sanitizer_finish_switch_fiber(f->fake_stack, &f->caller_bottom, &f->caller_size);
}
#else
static void resume_switch(fiber *f) {
    if (_setjmp(f->caller_jb)) return; /* the fiber yielded or finished */
    if (!f->started) {
        f->started = 1;
        swapcontext(&f->caller, &f->ctx); /* first entry: onto the new stack */
        abort(); /* the fiber comes back through caller_jb, never here */
    }
    _longjmp(f->fiber_jb, 1);
}

void fiber_resume(fiber *f) {
    if (f->finished) return;
    char *outer = depth_mark_enter(f);
    resume_switch(f);
    depth_mark_leave(f, outer);
}

void fiber_yield(fiber *f) {
    if (!_setjmp(f->fiber_jb)) _longjmp(f->caller_jb, 1);
}
#endif

int fiber_finished(const fiber *f) { return f->finished; }

void fiber_free(fiber *f) {
    if (!f) return;
    fiber_pool *p = f->pool;
    if (f->finished && p->nparked < p->max_idle) {
        stack_trim(f);
        f->next_parked = p->parked;
        p->parked = f;
        p->nparked++;
        if (p->idle + p->nparked > p->max_idle) { /* a whole fiber beats a bare stack */
            stack_block *b = p->free_list;
            p->free_list = b->next;
            p->idle--;
            munmap(b->base, b->total);
            free(b);
        }
        return;
    }
    stack_put(p, f);
    free(f);
}
