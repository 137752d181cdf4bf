/* Millisecond deadlines of keys on stores that keep time to live in whole
 * seconds (Redis before 2.6). The store holds the key with its time to live
 * rounded up, an upper bound; the proxy keeps the exact deadline here and
 * removes the key itself once it has passed, so PX, PEXPIRE and PTTL are
 * exact through the proxy. An entry is only a claim: before acting on it
 * the proxy checks that the store still has a time to live on the key. */
#ifndef EVALPROXY_EXPIRY_DEADLINES_H
#define EVALPROXY_EXPIRY_DEADLINES_H

#include <stddef.h>

void expiry_deadline_set(int db, const char *key, size_t len, long long at_ms);
/* 1 with *at_ms set when the key has a deadline in db. */
int expiry_deadline_get(int db, const char *key, size_t len, long long *at_ms);
void expiry_deadline_drop(int db, const char *key, size_t len);
/* Drops the name's deadline in every database (-1: every name too). */
void expiry_deadline_drop_name(const char *key, size_t len);
void expiry_deadline_drop_all(void);
/* The earliest deadline the name has in any database; 0 when none. */
long long expiry_deadline_earliest(const char *key, size_t len);
/* Calls fn for each key of db whose deadline is at or before now_ms. */
void expiry_deadline_each_due(int db, long long now_ms, void (*fn)(void *ctx, const char *key, size_t len),
                              void *ctx);
/* Whether any key of any database has a deadline at or before now_ms. */
int expiry_deadline_any_due(long long now_ms);
size_t expiry_deadline_count(void);

#endif
