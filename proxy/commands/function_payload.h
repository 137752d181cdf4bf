/* The FUNCTION DUMP / RESTORE payload, as Redis 7.0 writes it: for each
 * library the RDB function opcode and the library code as an RDB string,
 * then the RDB version (2 bytes) and a CRC64 (8 bytes, little endian). The
 * same bytes are the functions-file. */
#ifndef EVALPROXY_FUNCTION_PAYLOAD_H
#define EVALPROXY_FUNCTION_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Redis's CRC64 (Jones polynomial, reflected), as DUMP payloads carry it. */
uint64_t crc64_redis(uint64_t crc, const unsigned char *p, size_t len);

/* A payload with the n codes; malloc'd, its size in *len. */
char *function_payload_encode(int n, const char *const *codes, const size_t *lens, size_t *len);

/* The codes of a payload: 0 with the codes and lengths malloc'd (free with
 * function_payload_free), or -1 with *err set to Redis's error text
 * (without '-' and CRLF). */
int function_payload_decode(const char *p, size_t len, int *n, char ***codes, size_t **lens, const char **err);
void function_payload_free(int n, char **codes, size_t *lens);

#endif
