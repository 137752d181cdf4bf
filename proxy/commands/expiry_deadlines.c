/* Millisecond deadlines of keys on stores with whole-second expiry: a
 * chained hash table by key name (the same name in several databases
 * shares a chain). Entries whose deadline is well past are forgotten:
 * by then the store has expired the key by its own rounded-up time. */
#include "proxy/commands/expiry_deadlines.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* The store's own expiry ends at most this long after the deadline: the
 * time to live sent is rounded up to whole seconds, and a store of that
 * age expires a key only once its clock's second is past. */
#define FORGET_AFTER_MS 3000

typedef struct deadline {
    struct deadline *next;
    long long at_ms;
    int db;
    size_t len;
    char key[];
} deadline;

static deadline **buckets;
static size_t nbuckets, count;
static long long last_sweep_ms;

static long long clock_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static size_t hash_name(const char *key, size_t len)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return (size_t)h;
}

static deadline **slot_of(const char *key, size_t len)
{
    return nbuckets ? &buckets[hash_name(key, len) & (nbuckets - 1)] : NULL;
}

static void grow(void)
{
    size_t n = nbuckets ? nbuckets * 2 : 64;
    deadline **nb = calloc(n, sizeof(*nb));
    if (!nb) abort();
    for (size_t i = 0; i < nbuckets; i++)
        for (deadline *d = buckets[i], *next; d; d = next) {
            next = d->next;
            deadline **s = &nb[hash_name(d->key, d->len) & (n - 1)];
            d->next = *s;
            *s = d;
        }
    free(buckets);
    buckets = nb;
    nbuckets = n;
}

/* Forgets what is long past, at most once a second. */
static void sweep(void)
{
    long long now = clock_ms();
    if (now - last_sweep_ms < 1000) return;
    last_sweep_ms = now;
    for (size_t i = 0; i < nbuckets && count; i++)
        for (deadline **p = &buckets[i]; *p;) {
            deadline *d = *p;
            if (d->at_ms + FORGET_AFTER_MS < now) {
                *p = d->next;
                free(d);
                count--;
            } else {
                p = &d->next;
            }
        }
}

static deadline **find(int db, const char *key, size_t len)
{
    deadline **p = slot_of(key, len);
    if (!p) return NULL;
    for (; *p; p = &(*p)->next)
        if ((*p)->db == db && (*p)->len == len && !memcmp((*p)->key, key, len)) return p;
    return NULL;
}

void expiry_deadline_set(int db, const char *key, size_t len, long long at_ms)
{
    sweep();
    deadline **p = find(db, key, len);
    if (p) {
        (*p)->at_ms = at_ms;
        return;
    }
    if (count >= nbuckets) grow();
    deadline *d = malloc(sizeof(*d) + len);
    if (!d) abort();
    d->at_ms = at_ms;
    d->db = db;
    d->len = len;
    memcpy(d->key, key, len);
    deadline **s = slot_of(key, len);
    d->next = *s;
    *s = d;
    count++;
}

int expiry_deadline_get(int db, const char *key, size_t len, long long *at_ms)
{
    deadline **p = find(db, key, len);
    if (!p) return 0;
    *at_ms = (*p)->at_ms;
    return 1;
}

void expiry_deadline_drop(int db, const char *key, size_t len)
{
    deadline **p = find(db, key, len);
    if (!p) return;
    deadline *d = *p;
    *p = d->next;
    free(d);
    count--;
}

void expiry_deadline_drop_name(const char *key, size_t len)
{
    deadline **p = slot_of(key, len);
    if (!p) return;
    while (*p) {
        deadline *d = *p;
        if (d->len == len && !memcmp(d->key, key, len)) {
            *p = d->next;
            free(d);
            count--;
        } else {
            p = &d->next;
        }
    }
}

void expiry_deadline_drop_all(void)
{
    for (size_t i = 0; i < nbuckets; i++)
        while (buckets[i]) {
            deadline *d = buckets[i];
            buckets[i] = d->next;
            free(d);
        }
    count = 0;
}

long long expiry_deadline_earliest(const char *key, size_t len)
{
    if (!count) return 0;
    deadline **p = slot_of(key, len);
    long long best = 0;
    for (deadline *d = *p; d; d = d->next)
        if (d->len == len && !memcmp(d->key, key, len) && (!best || d->at_ms < best)) best = d->at_ms;
    return best;
}

void expiry_deadline_each_due(int db, long long now_ms, void (*fn)(void *ctx, const char *key, size_t len),
                              void *ctx)
{
    for (size_t i = 0; i < nbuckets && count; i++)
        for (deadline *d = buckets[i]; d; d = d->next)
            if (d->db == db && d->at_ms <= now_ms) fn(ctx, d->key, d->len);
}

int expiry_deadline_any_due(long long now_ms)
{
    sweep();
    for (size_t i = 0; i < nbuckets && count; i++)
        for (deadline *d = buckets[i]; d; d = d->next)
            if (d->at_ms <= now_ms) return 1;
    return 0;
}

size_t expiry_deadline_count(void) { return count; }
