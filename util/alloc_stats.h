/* Memory in use, counted at the allocator as Redis's zmalloc counts it. */
#ifndef EVALPROXY_ALLOC_STATS_H
#define EVALPROXY_ALLOC_STATS_H

#include <stddef.h>

/* Bytes allocated with malloc and friends and not yet freed, by the whole
 * process (libevent, OpenSSL, hiredis and the Lua heap included). O(1). */
size_t alloc_stats_used(void);

#endif
