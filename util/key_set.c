/* Open addressing with linear probing; entries are never removed one by
 * one (a key set only grows until it is cleared), so no tombstones. */
#include "util/key_set.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    uint64_t hash; /* 0: empty slot */
    int db;
    size_t len;
    char *key;
} entry;

struct key_set {
    entry *slots;
    size_t cap, count, key_bytes;
};

static uint64_t hash_of(int db, const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(unsigned)db;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    h ^= h >> 29;
    return h ? h : 1;
}

key_set *key_set_new(void)
{
    key_set *s = calloc(1, sizeof(*s));
    if (!s) abort();
    return s;
}

void key_set_clear(key_set *s)
{
    for (size_t i = 0; i < s->cap; i++) free(s->slots[i].key);
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = s->key_bytes = 0;
}

void key_set_free(key_set *s)
{
    if (!s) return;
    key_set_clear(s);
    free(s);
}

static entry *find(const key_set *s, uint64_t h, int db, const char *key, size_t len)
{
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        entry *e = &s->slots[i];
        if (!e->hash) return e;
        if (e->hash == h && e->db == db && e->len == len && !memcmp(e->key, key, len)) return e;
    }
}

static void grow(key_set *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    entry *old = s->slots;
    size_t ocap = s->cap;
    s->slots = calloc(ncap, sizeof(*s->slots));
    if (!s->slots) abort();
    s->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].hash) *find(s, old[i].hash, old[i].db, old[i].key, old[i].len) = old[i];
    free(old);
}

int key_set_add(key_set *s, int db, const char *key, size_t len)
{
    if ((s->count + 1) * 4 > s->cap * 3) grow(s); /* at most 3/4 full */
    uint64_t h = hash_of(db, key, len);
    entry *e = find(s, h, db, key, len);
    if (e->hash) return 0;
    e->key = malloc(len ? len : 1);
    if (!e->key) abort();
    memcpy(e->key, key, len);
    e->hash = h;
    e->db = db;
    e->len = len;
    s->count++;
    s->key_bytes += len;
    return 1;
}

int key_set_has(const key_set *s, int db, const char *key, size_t len)
{
    if (!s->count) return 0;
    return find(s, hash_of(db, key, len), db, key, len)->hash != 0;
}

size_t key_set_count(const key_set *s) { return s->count; }

size_t key_set_bytes(const key_set *s) { return s->cap * sizeof(entry) + s->key_bytes; }
