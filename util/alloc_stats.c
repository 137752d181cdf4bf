/* INFO's used_memory must be cheap: clients such as ioredis send INFO on
 * every connect, and glibc's own figures (mallinfo2) walk every free chunk,
 * which takes milliseconds on a fragmented heap. So the process's malloc,
 * free and the rest are replaced (glibc supports this) by functions that
 * hand the work to glibc's allocator and keep a running total of the
 * usable size of every block, as Redis's zmalloc does.
 *
 * The sanitizer builds keep the sanitizer's allocator and ask it. */
#include "util/alloc_stats.h"

#include "util/sanitizer.h"

#ifdef BUILT_WITH_ASAN

size_t __sanitizer_get_current_allocated_bytes(void);

size_t alloc_stats_used(void) { return __sanitizer_get_current_allocated_bytes(); }

#else

#include <errno.h>
#include <malloc.h>
#include <stdint.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static size_t used;

static inline void *counted(void *p)
{
    if (p) __atomic_add_fetch(&used, malloc_usable_size(p), __ATOMIC_RELAXED);
    return p;
}

void *malloc(size_t size) { return counted(__libc_malloc(size)); }
void *calloc(size_t n, size_t size) { return counted(__libc_calloc(n, size)); }
void *memalign(size_t alignment, size_t size) { return counted(__libc_memalign(alignment, size)); }
void *aligned_alloc(size_t alignment, size_t size) { return counted(__libc_memalign(alignment, size)); }
void *valloc(size_t size) { return counted(__libc_valloc(size)); }
void *pvalloc(size_t size) { return counted(__libc_pvalloc(size)); }

void free(void *p)
{
    if (!p) return;
    __atomic_sub_fetch(&used, malloc_usable_size(p), __ATOMIC_RELAXED);
    __libc_free(p);
}

void *realloc(void *p, size_t size)
{
    size_t before = p ? malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, size);
    /* NULL: p is unchanged, unless size 0 freed it (glibc's realloc). */
    if (q || (p && size == 0)) {
        __atomic_sub_fetch(&used, before, __ATOMIC_RELAXED);
        counted(q);
    }
    return q;
}

void *reallocarray(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, bytes);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment == 0 || alignment % sizeof(void *) || (alignment & (alignment - 1))) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = counted(p);
    return 0;
}

size_t alloc_stats_used(void) { return __atomic_load_n(&used, __ATOMIC_RELAXED); }

#endif
