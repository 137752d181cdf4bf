#include "util/cluster_slot.h"

#include <string.h>

/* The CRC of each 4-bit value shifted to the top of the register: two
 * look-ups per byte keep the table small enough to read and need no
 * initialisation, and keys are short. */
static const uint16_t crc16_nibble[16] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
};

uint16_t cluster_crc16(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc = (crc << 4) ^ crc16_nibble[((crc >> 12) ^ (p[i] >> 4)) & 0x0f];
        crc = (crc << 4) ^ crc16_nibble[((crc >> 12) ^ p[i]) & 0x0f];
        crc &= 0xffff;
    }
    return (uint16_t)crc;
}

unsigned cluster_key_slot(const char *key, size_t len)
{
    const char *open = len ? memchr(key, '{', len) : NULL;
    size_t after = open ? (size_t)(open - key) + 1 : len;
    if (after < len) {
        const char *close = memchr(open + 1, '}', len - after);
        if (close && close > open + 1)
            return cluster_crc16(open + 1, (size_t)(close - open - 1)) & (CLUSTER_SLOT_COUNT - 1);
    }
    return cluster_crc16(key, len) & (CLUSTER_SLOT_COUNT - 1);
}
