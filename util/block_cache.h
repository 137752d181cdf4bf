/* Free lists of small blocks by size, for an owner that always says how big
 * a block is when it frees it (Lua's allocator does). A block comes back
 * from the list in a few instructions, where glibc's malloc and free, with
 * the allocation counter around them, cost tens of nanoseconds each: a
 * script's run makes dozens of small Lua objects and its garbage collector
 * frees them in batches, larger than glibc's per-size caches. */
#ifndef EVALPROXY_BLOCK_CACHE_H
#define EVALPROXY_BLOCK_CACHE_H

#include <stddef.h>

#define BLOCK_CACHE_STEP 16
#define BLOCK_CACHE_LARGEST 512 /* larger blocks go straight to malloc */
#define BLOCK_CACHE_CLASSES (BLOCK_CACHE_LARGEST / BLOCK_CACHE_STEP)

typedef struct block_cache {
    void *free_list[BLOCK_CACHE_CLASSES]; /* a free block's first word links the next */
    size_t kept;                          /* bytes on the free lists */
    size_t limit;                         /* beyond it, freed blocks go back to malloc */
} block_cache;

/* limit: most bytes kept on the free lists; 0 keeps none. (The sanitizer
 * builds keep none whatever the limit, so they see every block.) A static
 * block_cache may be initialised with just its limit instead. */
void block_cache_init(block_cache *c, size_t limit);

/* Like malloc; size > 0. */
void *block_cache_alloc(block_cache *c, size_t size);

/* p was allocated here with `size` bytes (or grown or shrunk to it). */
void block_cache_free(block_cache *c, void *p, size_t size);

/* Like realloc, from osize bytes (p NULL: osize 0) to nsize > 0. Shrinking
 * never fails. */
void *block_cache_realloc(block_cache *c, void *p, size_t osize, size_t nsize);

/* Gives every kept block back to malloc. */
void block_cache_clear(block_cache *c);

#endif
