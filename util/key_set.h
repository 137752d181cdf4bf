/* A set of (database, key name) pairs: open addressing on one array, so a
 * lookup is one hash and (nearly always) one probe. */
#ifndef EVALPROXY_KEY_SET_H
#define EVALPROXY_KEY_SET_H

#include <stddef.h>

typedef struct key_set key_set;

key_set *key_set_new(void);
void key_set_free(key_set *s);
/* 1 when added, 0 when it was there already. */
int key_set_add(key_set *s, int db, const char *key, size_t len);
int key_set_has(const key_set *s, int db, const char *key, size_t len);
void key_set_clear(key_set *s);
size_t key_set_count(const key_set *s);
/* Bytes held, for INFO. */
size_t key_set_bytes(const key_set *s);

#endif
