/* Redis Cluster's key -> slot function, shared by the router in front of a
 * Redis Cluster and by a fleet of proxies that divide the same slots among
 * themselves. Depends on nothing but the C library. */
#ifndef EVALPROXY_CLUSTER_SLOT_H
#define EVALPROXY_CLUSTER_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_SLOT_COUNT 16384

/* CRC16-CCITT in its XMODEM form (polynomial 0x1021, initial value 0, no
 * reflection, no final XOR): the checksum Redis Cluster hashes keys with.
 * "123456789" gives 0x31C3. */
uint16_t cluster_crc16(const char *buf, size_t len);

/* The slot (0..16383) Redis Cluster gives a key. When the key holds a
 * `{` followed later by a `}` with at least one byte between the first `{`
 * and the first `}` after it, only those bytes are hashed (the hash tag), so
 * "{user1000}.following" and "{user1000}.followers" share a slot; otherwise
 * the whole key is ("foo{}{bar}" hashes all of it, "foo{{bar}}zap" hashes
 * "{bar"). */
unsigned cluster_key_slot(const char *key, size_t len);

#endif
