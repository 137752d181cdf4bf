#include "util/block_cache.h"

#include <stdlib.h>
#include <string.h>

#include "util/sanitizer.h"

/* Sizes 1..16 are class 0, 17..32 class 1, and so on; every block of a
 * class is allocated with the class's full size, so it serves any size of
 * its class. */
static inline size_t class_of(size_t size) { return size ? (size - 1) / BLOCK_CACHE_STEP : 0; }
static inline size_t class_bytes(size_t cls) { return (cls + 1) * BLOCK_CACHE_STEP; }

void block_cache_init(block_cache *c, size_t limit)
{
    memset(c, 0, sizeof(*c));
    c->limit = limit;
}

void *block_cache_alloc(block_cache *c, size_t size)
{
    if (size > BLOCK_CACHE_LARGEST) return malloc(size);
    size_t cls = class_of(size);
    void *p = c->free_list[cls];
    if (p) {
        c->free_list[cls] = *(void **)p;
        c->kept -= class_bytes(cls);
        return p;
    }
    return malloc(class_bytes(cls));
}

void block_cache_free(block_cache *c, void *p, size_t size)
{
    if (!p) return;
    if (size > BLOCK_CACHE_LARGEST) {
        free(p);
        return;
    }
    size_t cls = class_of(size);
#ifdef BUILT_WITH_ASAN
    int keep = 0; /* the sanitizer sees every block, and reports a use after free */
#else
    int keep = c->kept + class_bytes(cls) <= c->limit;
#endif
    if (!keep) {
        free(p);
        return;
    }
    *(void **)p = c->free_list[cls];
    c->free_list[cls] = p;
    c->kept += class_bytes(cls);
}

void *block_cache_realloc(block_cache *c, void *p, size_t osize, size_t nsize)
{
    if (!p) return block_cache_alloc(c, nsize);
    if (osize > BLOCK_CACHE_LARGEST && nsize > BLOCK_CACHE_LARGEST) return realloc(p, nsize);
    if (osize <= BLOCK_CACHE_LARGEST && nsize <= BLOCK_CACHE_LARGEST && class_of(osize) == class_of(nsize))
        return p;
    void *q = block_cache_alloc(c, nsize);
    if (!q) {
        /* The old block is large enough for a smaller size, and a block
         * larger than its class serves that class too when freed. */
        return nsize < osize ? p : NULL;
    }
    memcpy(q, p, osize < nsize ? osize : nsize);
    block_cache_free(c, p, osize);
    return q;
}

void block_cache_clear(block_cache *c)
{
    for (size_t cls = 0; cls < BLOCK_CACHE_CLASSES; cls++) {
        void *p = c->free_list[cls];
        while (p) {
            void *next = *(void **)p;
            free(p);
            p = next;
        }
        c->free_list[cls] = NULL;
    }
    c->kept = 0;
}
