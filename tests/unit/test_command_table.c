/* Unit tests for the generated Redis 7.0 command table and its lookup and
 * key-extraction functions. The GETKEYS expectations were produced by a real
 * redis-server 7.0 (COMMAND GETKEYSANDFLAGS), see tools/gen_command_table.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/command_table.h"

#define MAXARGS 16

typedef struct getkeys_case {
    const char *line;
    int argc;
    const char *argv[MAXARGS];
    int n; /* expected command_get_keys() result */
    int keys[MAXARGS];
    uint32_t flags[MAXARGS];
} getkeys_case;

static const getkeys_case getkeys_cases[] = {
/* BEGIN GETKEYS CASES (tools/gen_command_table.py --update-test) */
    {"GET k1", 2, {"GET", "k1"}, 1, {1}, {0x11}},
    {"SET k1 v", 3, {"SET", "k1", "v"}, 1, {1}, {0x24}},
    {"SET k1 v GET", 4, {"SET", "k1", "v", "GET"}, 1, {1}, {0x32}},
    {"SET k1 v EX 10 get", 6, {"SET", "k1", "v", "EX", "10", "get"}, 1, {1}, {0x32}},
    {"SET k1 v NX", 4, {"SET", "k1", "v", "NX"}, 1, {1}, {0x24}},
    {"SETNX k1 v", 3, {"SETNX", "k1", "v"}, 1, {1}, {0x44}},
    {"SETEX k1 10 v", 4, {"SETEX", "k1", "10", "v"}, 1, {1}, {0x24}},
    {"PSETEX k1 100 v", 4, {"PSETEX", "k1", "100", "v"}, 1, {1}, {0x24}},
    {"GETSET k1 v", 3, {"GETSET", "k1", "v"}, 1, {1}, {0x32}},
    {"GETDEL k1", 2, {"GETDEL", "k1"}, 1, {1}, {0x92}},
    {"GETEX k1 EX 10", 4, {"GETEX", "k1", "EX", "10"}, 1, {1}, {0x32}},
    {"MGET k1 k2 k3", 4, {"MGET", "k1", "k2", "k3"}, 3, {1, 2, 3}, {0x11, 0x11, 0x11}},
    {"MSET k1 v1 k2 v2", 5, {"MSET", "k1", "v1", "k2", "v2"}, 2, {1, 3}, {0x24, 0x24}},
    {"MSETNX k1 v1 k2 v2 k3 v3", 7, {"MSETNX", "k1", "v1", "k2", "v2", "k3", "v3"}, 3, {1, 3, 5}, {0x44, 0x44, 0x44}},
    {"APPEND k1 v", 3, {"APPEND", "k1", "v"}, 1, {1}, {0x42}},
    {"STRLEN k1", 2, {"STRLEN", "k1"}, 1, {1}, {0x1}},
    {"INCR k1", 2, {"INCR", "k1"}, 1, {1}, {0x32}},
    {"DECR k1", 2, {"DECR", "k1"}, 1, {1}, {0x32}},
    {"INCRBY k1 2", 3, {"INCRBY", "k1", "2"}, 1, {1}, {0x32}},
    {"DECRBY k1 2", 3, {"DECRBY", "k1", "2"}, 1, {1}, {0x32}},
    {"INCRBYFLOAT k1 1.5", 3, {"INCRBYFLOAT", "k1", "1.5"}, 1, {1}, {0x32}},
    {"GETRANGE k1 0 1", 4, {"GETRANGE", "k1", "0", "1"}, 1, {1}, {0x11}},
    {"SETRANGE k1 0 v", 4, {"SETRANGE", "k1", "0", "v"}, 1, {1}, {0x22}},
    {"SUBSTR k1 0 1", 4, {"SUBSTR", "k1", "0", "1"}, 1, {1}, {0x11}},
    {"LCS k1 k2", 3, {"LCS", "k1", "k2"}, 2, {1, 2}, {0x11, 0x11}},
    {"LCS k1 k2 LEN", 4, {"LCS", "k1", "k2", "LEN"}, 2, {1, 2}, {0x11, 0x11}},
    {"SETBIT k1 7 1", 4, {"SETBIT", "k1", "7", "1"}, 1, {1}, {0x32}},
    {"GETBIT k1 7", 3, {"GETBIT", "k1", "7"}, 1, {1}, {0x11}},
    {"BITCOUNT k1", 2, {"BITCOUNT", "k1"}, 1, {1}, {0x11}},
    {"BITPOS k1 1", 3, {"BITPOS", "k1", "1"}, 1, {1}, {0x11}},
    {"BITOP AND dst k1 k2", 5, {"BITOP", "AND", "dst", "k1", "k2"}, 3, {2, 3, 4}, {0x24, 0x11, 0x11}},
    {"BITOP NOT dst k1", 4, {"BITOP", "NOT", "dst", "k1"}, 2, {2, 3}, {0x24, 0x11}},
    {"BITFIELD k1 GET u8 0", 5, {"BITFIELD", "k1", "GET", "u8", "0"}, 1, {1}, {0x11}},
    {"BITFIELD k1 SET u8 0 1", 6, {"BITFIELD", "k1", "SET", "u8", "0", "1"}, 1, {1}, {0x32}},
    {"BITFIELD k1 INCRBY u8 0 1", 6, {"BITFIELD", "k1", "INCRBY", "u8", "0", "1"}, 1, {1}, {0x32}},
    {"BITFIELD k1 OVERFLOW SAT GET u8 0", 7, {"BITFIELD", "k1", "OVERFLOW", "SAT", "GET", "u8", "0"}, 1, {1}, {0x11}},
    {"BITFIELD k1 GET u8", 4, {"BITFIELD", "k1", "GET", "u8"}, 1, {1}, {0x32}},
    {"BITFIELD k1", 2, {"BITFIELD", "k1"}, 1, {1}, {0x11}},
    {"BITFIELD_RO k1 GET u8 0", 5, {"BITFIELD_RO", "k1", "GET", "u8", "0"}, 1, {1}, {0x11}},
    {"DEL k1", 2, {"DEL", "k1"}, 1, {1}, {0x88}},
    {"DEL k1 k2 k3", 4, {"DEL", "k1", "k2", "k3"}, 3, {1, 2, 3}, {0x88, 0x88, 0x88}},
    {"UNLINK k1 k2", 3, {"UNLINK", "k1", "k2"}, 2, {1, 2}, {0x88, 0x88}},
    {"EXISTS k1 k2", 3, {"EXISTS", "k1", "k2"}, 2, {1, 2}, {0x1, 0x1}},
    {"TOUCH k1 k2", 3, {"TOUCH", "k1", "k2"}, 2, {1, 2}, {0x1, 0x1}},
    {"TYPE k1", 2, {"TYPE", "k1"}, 1, {1}, {0x1}},
    {"RENAME k1 k2", 3, {"RENAME", "k1", "k2"}, 2, {1, 2}, {0x92, 0x24}},
    {"RENAMENX k1 k2", 3, {"RENAMENX", "k1", "k2"}, 2, {1, 2}, {0x92, 0x44}},
    {"COPY k1 k2", 3, {"COPY", "k1", "k2"}, 2, {1, 2}, {0x11, 0x24}},
    {"COPY k1 k2 DB 1 REPLACE", 6, {"COPY", "k1", "k2", "DB", "1", "REPLACE"}, 2, {1, 2}, {0x11, 0x24}},
    {"MOVE k1 1", 3, {"MOVE", "k1", "1"}, 1, {1}, {0x32}},
    {"EXPIRE k1 10", 3, {"EXPIRE", "k1", "10"}, 1, {1}, {0x22}},
    {"EXPIRE k1 10 NX", 4, {"EXPIRE", "k1", "10", "NX"}, 1, {1}, {0x22}},
    {"PEXPIRE k1 10", 3, {"PEXPIRE", "k1", "10"}, 1, {1}, {0x22}},
    {"EXPIREAT k1 10", 3, {"EXPIREAT", "k1", "10"}, 1, {1}, {0x22}},
    {"PEXPIREAT k1 10", 3, {"PEXPIREAT", "k1", "10"}, 1, {1}, {0x22}},
    {"EXPIRETIME k1", 2, {"EXPIRETIME", "k1"}, 1, {1}, {0x11}},
    {"PEXPIRETIME k1", 2, {"PEXPIRETIME", "k1"}, 1, {1}, {0x11}},
    {"TTL k1", 2, {"TTL", "k1"}, 1, {1}, {0x11}},
    {"PTTL k1", 2, {"PTTL", "k1"}, 1, {1}, {0x11}},
    {"PERSIST k1", 2, {"PERSIST", "k1"}, 1, {1}, {0x22}},
    {"DUMP k1", 2, {"DUMP", "k1"}, 1, {1}, {0x11}},
    {"RESTORE k1 0 payload", 4, {"RESTORE", "k1", "0", "payload"}, 1, {1}, {0x24}},
    {"RESTORE-ASKING k1 0 payload", 4, {"RESTORE-ASKING", "k1", "0", "payload"}, 1, {1}, {0x24}},
    {"OBJECT ENCODING k1", 3, {"OBJECT", "ENCODING", "k1"}, 1, {2}, {0x1}},
    {"OBJECT FREQ k1", 3, {"OBJECT", "FREQ", "k1"}, 1, {2}, {0x1}},
    {"OBJECT IDLETIME k1", 3, {"OBJECT", "IDLETIME", "k1"}, 1, {2}, {0x1}},
    {"OBJECT REFCOUNT k1", 3, {"OBJECT", "REFCOUNT", "k1"}, 1, {2}, {0x1}},
    {"MEMORY USAGE k1", 3, {"MEMORY", "USAGE", "k1"}, 1, {2}, {0x1}},
    {"MEMORY USAGE k1 SAMPLES 5", 5, {"MEMORY", "USAGE", "k1", "SAMPLES", "5"}, 1, {2}, {0x1}},
    {"SORT k1", 2, {"SORT", "k1"}, 1, {1}, {0x11}},
    {"SORT k1 STORE dst", 4, {"SORT", "k1", "STORE", "dst"}, 2, {1, 3}, {0x11, 0x24}},
    {"SORT k1 BY w_* GET o_* STORE dst", 8, {"SORT", "k1", "BY", "w_*", "GET", "o_*", "STORE", "dst"}, 2, {1, 7}, {0x11, 0x24}},
    {"SORT k1 LIMIT 0 1 STORE dst", 7, {"SORT", "k1", "LIMIT", "0", "1", "STORE", "dst"}, 2, {1, 6}, {0x11, 0x24}},
    {"SORT k1 STORE d1 STORE d2", 6, {"SORT", "k1", "STORE", "d1", "STORE", "d2"}, 2, {1, 5}, {0x11, 0x24}},
    {"SORT k1 STORE", 3, {"SORT", "k1", "STORE"}, 1, {1}, {0x11}},
    {"SORT k1 LIMIT store d1", 5, {"SORT", "k1", "LIMIT", "store", "d1"}, 1, {1}, {0x11}},
    {"SORT_RO k1", 2, {"SORT_RO", "k1"}, 1, {1}, {0x11}},
    {"SORT_RO k1 BY w_* GET o_*", 6, {"SORT_RO", "k1", "BY", "w_*", "GET", "o_*"}, 1, {1}, {0x11}},
    {"MIGRATE h 1 k1 0 1000", 6, {"MIGRATE", "h", "1", "k1", "0", "1000"}, 1, {3}, {0x92}},
    {"MIGRATE h 1 '' 0 1000 KEYS k1 k2", 9, {"MIGRATE", "h", "1", "", "0", "1000", "KEYS", "k1", "k2"}, 2, {7, 8}, {0x92, 0x92}},
    {"MIGRATE h 1 '' 0 1000 COPY REPLACE KEYS k1 k2 k3", 12, {"MIGRATE", "h", "1", "", "0", "1000", "COPY", "REPLACE", "KEYS", "k1", "k2", "k3"}, 3, {9, 10, 11}, {0x92, 0x92, 0x92}},
    {"MIGRATE h 1 '' 0 1000 AUTH pw KEYS k1", 10, {"MIGRATE", "h", "1", "", "0", "1000", "AUTH", "pw", "KEYS", "k1"}, 1, {9}, {0x92}},
    {"MIGRATE h 1 '' 0 1000 AUTH2 u pw KEYS k1", 11, {"MIGRATE", "h", "1", "", "0", "1000", "AUTH2", "u", "pw", "KEYS", "k1"}, 1, {10}, {0x92}},
    {"MIGRATE h 1 k1 0 1000 KEYS k2", 8, {"MIGRATE", "h", "1", "k1", "0", "1000", "KEYS", "k2"}, -1, {0}, {0}},
    {"MIGRATE h 1 '' 0 1000 AUTH keys KEYS k1", 10, {"MIGRATE", "h", "1", "", "0", "1000", "AUTH", "keys", "KEYS", "k1"}, 1, {9}, {0x92}},
    {"WATCH k1 k2", 3, {"WATCH", "k1", "k2"}, 2, {1, 2}, {0x1, 0x1}},
    {"LPUSH k1 a b", 4, {"LPUSH", "k1", "a", "b"}, 1, {1}, {0x42}},
    {"RPUSH k1 a", 3, {"RPUSH", "k1", "a"}, 1, {1}, {0x42}},
    {"LPUSHX k1 a", 3, {"LPUSHX", "k1", "a"}, 1, {1}, {0x42}},
    {"RPUSHX k1 a", 3, {"RPUSHX", "k1", "a"}, 1, {1}, {0x42}},
    {"LPOP k1", 2, {"LPOP", "k1"}, 1, {1}, {0x92}},
    {"RPOP k1 2", 3, {"RPOP", "k1", "2"}, 1, {1}, {0x92}},
    {"LLEN k1", 2, {"LLEN", "k1"}, 1, {1}, {0x1}},
    {"LRANGE k1 0 -1", 4, {"LRANGE", "k1", "0", "-1"}, 1, {1}, {0x11}},
    {"LINDEX k1 0", 3, {"LINDEX", "k1", "0"}, 1, {1}, {0x11}},
    {"LSET k1 0 v", 4, {"LSET", "k1", "0", "v"}, 1, {1}, {0x22}},
    {"LREM k1 0 v", 4, {"LREM", "k1", "0", "v"}, 1, {1}, {0x82}},
    {"LTRIM k1 0 1", 4, {"LTRIM", "k1", "0", "1"}, 1, {1}, {0x82}},
    {"LINSERT k1 BEFORE a b", 5, {"LINSERT", "k1", "BEFORE", "a", "b"}, 1, {1}, {0x42}},
    {"LPOS k1 a", 3, {"LPOS", "k1", "a"}, 1, {1}, {0x11}},
    {"RPOPLPUSH k1 k2", 3, {"RPOPLPUSH", "k1", "k2"}, 2, {1, 2}, {0x92, 0x42}},
    {"LMOVE k1 k2 LEFT RIGHT", 5, {"LMOVE", "k1", "k2", "LEFT", "RIGHT"}, 2, {1, 2}, {0x92, 0x42}},
    {"BLMOVE k1 k2 LEFT RIGHT 0", 6, {"BLMOVE", "k1", "k2", "LEFT", "RIGHT", "0"}, 2, {1, 2}, {0x92, 0x42}},
    {"BRPOPLPUSH k1 k2 0", 4, {"BRPOPLPUSH", "k1", "k2", "0"}, 2, {1, 2}, {0x92, 0x42}},
    {"BLPOP k1 k2 0", 4, {"BLPOP", "k1", "k2", "0"}, 2, {1, 2}, {0x92, 0x92}},
    {"BRPOP k1 0", 3, {"BRPOP", "k1", "0"}, 1, {1}, {0x92}},
    {"LMPOP 2 k1 k2 LEFT", 5, {"LMPOP", "2", "k1", "k2", "LEFT"}, 2, {2, 3}, {0x92, 0x92}},
    {"LMPOP 1 k1 RIGHT COUNT 2", 6, {"LMPOP", "1", "k1", "RIGHT", "COUNT", "2"}, 1, {2}, {0x92}},
    {"LMPOP 0 k1 LEFT", 4, {"LMPOP", "0", "k1", "LEFT"}, -1, {0}, {0}},
    {"LMPOP 3 k1 LEFT", 4, {"LMPOP", "3", "k1", "LEFT"}, -1, {0}, {0}},
    {"LMPOP -1 k1 LEFT", 4, {"LMPOP", "-1", "k1", "LEFT"}, -1, {0}, {0}},
    {"LMPOP x k1 LEFT", 4, {"LMPOP", "x", "k1", "LEFT"}, -1, {0}, {0}},
    {"BLMPOP 0 2 k1 k2 LEFT", 6, {"BLMPOP", "0", "2", "k1", "k2", "LEFT"}, 2, {3, 4}, {0x92, 0x92}},
    {"BLMPOP 0 1 k1 LEFT COUNT 2", 7, {"BLMPOP", "0", "1", "k1", "LEFT", "COUNT", "2"}, 1, {3}, {0x92}},
    {"BLMPOP 0 0 k1 LEFT", 5, {"BLMPOP", "0", "0", "k1", "LEFT"}, -1, {0}, {0}},
    {"BLMPOP 0 5 k1 LEFT", 5, {"BLMPOP", "0", "5", "k1", "LEFT"}, -1, {0}, {0}},
    {"HSET k1 f v", 4, {"HSET", "k1", "f", "v"}, 1, {1}, {0x22}},
    {"HSETNX k1 f v", 4, {"HSETNX", "k1", "f", "v"}, 1, {1}, {0x42}},
    {"HMSET k1 f v", 4, {"HMSET", "k1", "f", "v"}, 1, {1}, {0x22}},
    {"HGET k1 f", 3, {"HGET", "k1", "f"}, 1, {1}, {0x11}},
    {"HMGET k1 f g", 4, {"HMGET", "k1", "f", "g"}, 1, {1}, {0x11}},
    {"HDEL k1 f", 3, {"HDEL", "k1", "f"}, 1, {1}, {0x82}},
    {"HLEN k1", 2, {"HLEN", "k1"}, 1, {1}, {0x1}},
    {"HSTRLEN k1 f", 3, {"HSTRLEN", "k1", "f"}, 1, {1}, {0x1}},
    {"HEXISTS k1 f", 3, {"HEXISTS", "k1", "f"}, 1, {1}, {0x1}},
    {"HINCRBY k1 f 1", 4, {"HINCRBY", "k1", "f", "1"}, 1, {1}, {0x32}},
    {"HINCRBYFLOAT k1 f 1", 4, {"HINCRBYFLOAT", "k1", "f", "1"}, 1, {1}, {0x32}},
    {"HKEYS k1", 2, {"HKEYS", "k1"}, 1, {1}, {0x11}},
    {"HVALS k1", 2, {"HVALS", "k1"}, 1, {1}, {0x11}},
    {"HGETALL k1", 2, {"HGETALL", "k1"}, 1, {1}, {0x11}},
    {"HSCAN k1 0", 3, {"HSCAN", "k1", "0"}, 1, {1}, {0x11}},
    {"HRANDFIELD k1", 2, {"HRANDFIELD", "k1"}, 1, {1}, {0x11}},
    {"SADD k1 a", 3, {"SADD", "k1", "a"}, 1, {1}, {0x42}},
    {"SREM k1 a", 3, {"SREM", "k1", "a"}, 1, {1}, {0x82}},
    {"SMEMBERS k1", 2, {"SMEMBERS", "k1"}, 1, {1}, {0x11}},
    {"SISMEMBER k1 a", 3, {"SISMEMBER", "k1", "a"}, 1, {1}, {0x1}},
    {"SMISMEMBER k1 a b", 4, {"SMISMEMBER", "k1", "a", "b"}, 1, {1}, {0x11}},
    {"SCARD k1", 2, {"SCARD", "k1"}, 1, {1}, {0x1}},
    {"SPOP k1", 2, {"SPOP", "k1"}, 1, {1}, {0x92}},
    {"SRANDMEMBER k1 2", 3, {"SRANDMEMBER", "k1", "2"}, 1, {1}, {0x11}},
    {"SMOVE k1 k2 a", 4, {"SMOVE", "k1", "k2", "a"}, 2, {1, 2}, {0x92, 0x42}},
    {"SINTER k1 k2", 3, {"SINTER", "k1", "k2"}, 2, {1, 2}, {0x11, 0x11}},
    {"SUNION k1 k2 k3", 4, {"SUNION", "k1", "k2", "k3"}, 3, {1, 2, 3}, {0x11, 0x11, 0x11}},
    {"SDIFF k1 k2", 3, {"SDIFF", "k1", "k2"}, 2, {1, 2}, {0x11, 0x11}},
    {"SINTERSTORE dst k1 k2", 4, {"SINTERSTORE", "dst", "k1", "k2"}, 3, {1, 2, 3}, {0x22, 0x11, 0x11}},
    {"SUNIONSTORE dst k1", 3, {"SUNIONSTORE", "dst", "k1"}, 2, {1, 2}, {0x24, 0x11}},
    {"SDIFFSTORE dst k1 k2", 4, {"SDIFFSTORE", "dst", "k1", "k2"}, 3, {1, 2, 3}, {0x24, 0x11, 0x11}},
    {"SSCAN k1 0", 3, {"SSCAN", "k1", "0"}, 1, {1}, {0x11}},
    {"SINTERCARD 2 k1 k2", 4, {"SINTERCARD", "2", "k1", "k2"}, 2, {2, 3}, {0x11, 0x11}},
    {"SINTERCARD 2 k1 k2 LIMIT 1", 6, {"SINTERCARD", "2", "k1", "k2", "LIMIT", "1"}, 2, {2, 3}, {0x11, 0x11}},
    {"SINTERCARD 0 k1", 3, {"SINTERCARD", "0", "k1"}, -1, {0}, {0}},
    {"SINTERCARD 3 k1 k2", 4, {"SINTERCARD", "3", "k1", "k2"}, -1, {0}, {0}},
    {"ZADD k1 1 a", 4, {"ZADD", "k1", "1", "a"}, 1, {1}, {0x22}},
    {"ZINCRBY k1 1 a", 4, {"ZINCRBY", "k1", "1", "a"}, 1, {1}, {0x32}},
    {"ZREM k1 a", 3, {"ZREM", "k1", "a"}, 1, {1}, {0x82}},
    {"ZCARD k1", 2, {"ZCARD", "k1"}, 1, {1}, {0x1}},
    {"ZCOUNT k1 0 1", 4, {"ZCOUNT", "k1", "0", "1"}, 1, {1}, {0x11}},
    {"ZSCORE k1 a", 3, {"ZSCORE", "k1", "a"}, 1, {1}, {0x11}},
    {"ZMSCORE k1 a b", 4, {"ZMSCORE", "k1", "a", "b"}, 1, {1}, {0x11}},
    {"ZRANK k1 a", 3, {"ZRANK", "k1", "a"}, 1, {1}, {0x11}},
    {"ZREVRANK k1 a", 3, {"ZREVRANK", "k1", "a"}, 1, {1}, {0x11}},
    {"ZRANGE k1 0 -1", 4, {"ZRANGE", "k1", "0", "-1"}, 1, {1}, {0x11}},
    {"ZRANGESTORE dst k1 0 -1", 5, {"ZRANGESTORE", "dst", "k1", "0", "-1"}, 2, {1, 2}, {0x24, 0x11}},
    {"ZREVRANGE k1 0 1", 4, {"ZREVRANGE", "k1", "0", "1"}, 1, {1}, {0x11}},
    {"ZRANGEBYSCORE k1 0 1", 4, {"ZRANGEBYSCORE", "k1", "0", "1"}, 1, {1}, {0x11}},
    {"ZREVRANGEBYSCORE k1 1 0", 4, {"ZREVRANGEBYSCORE", "k1", "1", "0"}, 1, {1}, {0x11}},
    {"ZRANGEBYLEX k1 - +", 4, {"ZRANGEBYLEX", "k1", "-", "+"}, 1, {1}, {0x11}},
    {"ZREVRANGEBYLEX k1 + -", 4, {"ZREVRANGEBYLEX", "k1", "+", "-"}, 1, {1}, {0x11}},
    {"ZLEXCOUNT k1 - +", 4, {"ZLEXCOUNT", "k1", "-", "+"}, 1, {1}, {0x11}},
    {"ZREMRANGEBYRANK k1 0 1", 4, {"ZREMRANGEBYRANK", "k1", "0", "1"}, 1, {1}, {0x82}},
    {"ZREMRANGEBYSCORE k1 0 1", 4, {"ZREMRANGEBYSCORE", "k1", "0", "1"}, 1, {1}, {0x82}},
    {"ZREMRANGEBYLEX k1 - +", 4, {"ZREMRANGEBYLEX", "k1", "-", "+"}, 1, {1}, {0x82}},
    {"ZPOPMIN k1", 2, {"ZPOPMIN", "k1"}, 1, {1}, {0x92}},
    {"ZPOPMAX k1 2", 3, {"ZPOPMAX", "k1", "2"}, 1, {1}, {0x92}},
    {"BZPOPMIN k1 k2 0", 4, {"BZPOPMIN", "k1", "k2", "0"}, 2, {1, 2}, {0x92, 0x92}},
    {"BZPOPMAX k1 0", 3, {"BZPOPMAX", "k1", "0"}, 1, {1}, {0x92}},
    {"ZRANDMEMBER k1", 2, {"ZRANDMEMBER", "k1"}, 1, {1}, {0x11}},
    {"ZSCAN k1 0", 3, {"ZSCAN", "k1", "0"}, 1, {1}, {0x11}},
    {"ZUNION 2 k1 k2", 4, {"ZUNION", "2", "k1", "k2"}, 2, {2, 3}, {0x11, 0x11}},
    {"ZUNION 2 k1 k2 WEIGHTS 1 2", 7, {"ZUNION", "2", "k1", "k2", "WEIGHTS", "1", "2"}, 2, {2, 3}, {0x11, 0x11}},
    {"ZUNION 0 k1", 3, {"ZUNION", "0", "k1"}, -1, {0}, {0}},
    {"ZUNION 3 k1 k2", 4, {"ZUNION", "3", "k1", "k2"}, -1, {0}, {0}},
    {"ZUNION -1 k1", 3, {"ZUNION", "-1", "k1"}, -1, {0}, {0}},
    {"ZUNION 1x k1", 3, {"ZUNION", "1x", "k1"}, 1, {2}, {0x0}},
    {"ZINTER 2 k1 k2 WITHSCORES", 5, {"ZINTER", "2", "k1", "k2", "WITHSCORES"}, 2, {2, 3}, {0x11, 0x11}},
    {"ZDIFF 2 k1 k2", 4, {"ZDIFF", "2", "k1", "k2"}, 2, {2, 3}, {0x11, 0x11}},
    {"ZDIFF 3 k1 k2 k3", 5, {"ZDIFF", "3", "k1", "k2", "k3"}, 3, {2, 3, 4}, {0x11, 0x11, 0x11}},
    {"ZUNIONSTORE dst 2 k1 k2", 5, {"ZUNIONSTORE", "dst", "2", "k1", "k2"}, 3, {1, 3, 4}, {0x24, 0x11, 0x11}},
    {"ZUNIONSTORE dst 1 k1 AGGREGATE MAX", 6, {"ZUNIONSTORE", "dst", "1", "k1", "AGGREGATE", "MAX"}, 2, {1, 3}, {0x24, 0x11}},
    {"ZINTERSTORE dst 2 k1 k2", 5, {"ZINTERSTORE", "dst", "2", "k1", "k2"}, 3, {1, 3, 4}, {0x24, 0x11, 0x11}},
    {"ZDIFFSTORE dst 2 k1 k2", 5, {"ZDIFFSTORE", "dst", "2", "k1", "k2"}, 3, {1, 3, 4}, {0x24, 0x11, 0x11}},
    {"ZUNIONSTORE dst 0 k1", 4, {"ZUNIONSTORE", "dst", "0", "k1"}, -1, {0}, {0}},
    {"ZUNIONSTORE dst 5 k1", 4, {"ZUNIONSTORE", "dst", "5", "k1"}, -1, {0}, {0}},
    {"ZINTERSTORE dst 1x k1", 4, {"ZINTERSTORE", "dst", "1x", "k1"}, 2, {3, 1}, {0x0, 0x0}},
    {"ZINTERCARD 2 k1 k2", 4, {"ZINTERCARD", "2", "k1", "k2"}, 2, {2, 3}, {0x11, 0x11}},
    {"ZINTERCARD 1 k1 LIMIT 5", 5, {"ZINTERCARD", "1", "k1", "LIMIT", "5"}, 1, {2}, {0x11}},
    {"ZINTERCARD 4 k1 k2", 4, {"ZINTERCARD", "4", "k1", "k2"}, -1, {0}, {0}},
    {"ZMPOP 2 k1 k2 MIN", 5, {"ZMPOP", "2", "k1", "k2", "MIN"}, 2, {2, 3}, {0x92, 0x92}},
    {"ZMPOP 1 k1 MAX COUNT 2", 6, {"ZMPOP", "1", "k1", "MAX", "COUNT", "2"}, 1, {2}, {0x92}},
    {"ZMPOP 0 k1 MIN", 4, {"ZMPOP", "0", "k1", "MIN"}, -1, {0}, {0}},
    {"BZMPOP 0 2 k1 k2 MIN", 6, {"BZMPOP", "0", "2", "k1", "k2", "MIN"}, 2, {3, 4}, {0x92, 0x92}},
    {"BZMPOP 0 1 k1 MAX", 5, {"BZMPOP", "0", "1", "k1", "MAX"}, 1, {3}, {0x92}},
    {"BZMPOP 0 3 k1 MIN", 5, {"BZMPOP", "0", "3", "k1", "MIN"}, -1, {0}, {0}},
    {"PFADD k1 a", 3, {"PFADD", "k1", "a"}, 1, {1}, {0x42}},
    {"PFCOUNT k1 k2", 3, {"PFCOUNT", "k1", "k2"}, 2, {1, 2}, {0x12, 0x12}},
    {"PFMERGE dst k1 k2", 4, {"PFMERGE", "dst", "k1", "k2"}, 3, {1, 2, 3}, {0x52, 0x11, 0x11}},
    {"PFDEBUG GETREG k1", 3, {"PFDEBUG", "GETREG", "k1"}, 1, {2}, {0x12}},
    {"GEOADD k1 1 2 m", 5, {"GEOADD", "k1", "1", "2", "m"}, 1, {1}, {0x22}},
    {"GEODIST k1 a b", 4, {"GEODIST", "k1", "a", "b"}, 1, {1}, {0x11}},
    {"GEOHASH k1 a", 3, {"GEOHASH", "k1", "a"}, 1, {1}, {0x11}},
    {"GEOPOS k1 a", 3, {"GEOPOS", "k1", "a"}, 1, {1}, {0x11}},
    {"GEORADIUS k1 1 2 3 km", 6, {"GEORADIUS", "k1", "1", "2", "3", "km"}, 1, {1}, {0x11}},
    {"GEORADIUS k1 1 2 3 km STORE dst", 8, {"GEORADIUS", "k1", "1", "2", "3", "km", "STORE", "dst"}, 2, {1, 7}, {0x11, 0x24}},
    {"GEORADIUS k1 1 2 3 km STOREDIST dst", 8, {"GEORADIUS", "k1", "1", "2", "3", "km", "STOREDIST", "dst"}, 2, {1, 7}, {0x11, 0x24}},
    {"GEORADIUS k1 1 2 3 km STORE d1 STOREDIST d2", 10, {"GEORADIUS", "k1", "1", "2", "3", "km", "STORE", "d1", "STOREDIST", "d2"}, 3, {1, 7, 9}, {0x11, 0x24, 0x24}},
    {"GEORADIUS k1 1 2 3 km WITHDIST COUNT 1 STORE dst", 11, {"GEORADIUS", "k1", "1", "2", "3", "km", "WITHDIST", "COUNT", "1", "STORE", "dst"}, 2, {1, 10}, {0x11, 0x24}},
    {"GEORADIUS k1 1 2 3 km STORE", 7, {"GEORADIUS", "k1", "1", "2", "3", "km", "STORE"}, 1, {1}, {0x11}},
    {"GEORADIUS_RO k1 1 2 3 km", 6, {"GEORADIUS_RO", "k1", "1", "2", "3", "km"}, 1, {1}, {0x11}},
    {"GEORADIUSBYMEMBER k1 m 3 km", 5, {"GEORADIUSBYMEMBER", "k1", "m", "3", "km"}, 1, {1}, {0x11}},
    {"GEORADIUSBYMEMBER k1 m 3 km STORE dst", 7, {"GEORADIUSBYMEMBER", "k1", "m", "3", "km", "STORE", "dst"}, 2, {1, 6}, {0x11, 0x24}},
    {"GEORADIUSBYMEMBER_RO k1 m 3 km", 5, {"GEORADIUSBYMEMBER_RO", "k1", "m", "3", "km"}, 1, {1}, {0x11}},
    {"GEOSEARCH k1 FROMMEMBER m BYRADIUS 1 km", 7, {"GEOSEARCH", "k1", "FROMMEMBER", "m", "BYRADIUS", "1", "km"}, 1, {1}, {0x11}},
    {"GEOSEARCHSTORE dst k1 FROMMEMBER m BYRADIUS 1 km", 8, {"GEOSEARCHSTORE", "dst", "k1", "FROMMEMBER", "m", "BYRADIUS", "1", "km"}, 2, {1, 2}, {0x24, 0x11}},
    {"XADD k1 * f v", 5, {"XADD", "k1", "*", "f", "v"}, 1, {1}, {0x22}},
    {"XLEN k1", 2, {"XLEN", "k1"}, 1, {1}, {0x1}},
    {"XRANGE k1 - +", 4, {"XRANGE", "k1", "-", "+"}, 1, {1}, {0x11}},
    {"XREVRANGE k1 + -", 4, {"XREVRANGE", "k1", "+", "-"}, 1, {1}, {0x11}},
    {"XDEL k1 1-1", 3, {"XDEL", "k1", "1-1"}, 1, {1}, {0x82}},
    {"XTRIM k1 MAXLEN 10", 4, {"XTRIM", "k1", "MAXLEN", "10"}, 1, {1}, {0x82}},
    {"XACK k1 g 1-1", 4, {"XACK", "k1", "g", "1-1"}, 1, {1}, {0x22}},
    {"XPENDING k1 g", 3, {"XPENDING", "k1", "g"}, 1, {1}, {0x11}},
    {"XCLAIM k1 g c 0 1-1", 6, {"XCLAIM", "k1", "g", "c", "0", "1-1"}, 1, {1}, {0x22}},
    {"XAUTOCLAIM k1 g c 0 0", 6, {"XAUTOCLAIM", "k1", "g", "c", "0", "0"}, 1, {1}, {0x82}},
    {"XSETID k1 1-1", 3, {"XSETID", "k1", "1-1"}, 1, {1}, {0x22}},
    {"XINFO STREAM k1", 3, {"XINFO", "STREAM", "k1"}, 1, {2}, {0x11}},
    {"XINFO GROUPS k1", 3, {"XINFO", "GROUPS", "k1"}, 1, {2}, {0x11}},
    {"XINFO CONSUMERS k1 g", 4, {"XINFO", "CONSUMERS", "k1", "g"}, 1, {2}, {0x11}},
    {"XGROUP CREATE k1 g $", 5, {"XGROUP", "CREATE", "k1", "g", "$"}, 1, {2}, {0x42}},
    {"XGROUP DESTROY k1 g", 4, {"XGROUP", "DESTROY", "k1", "g"}, 1, {2}, {0x82}},
    {"XGROUP CREATECONSUMER k1 g c", 5, {"XGROUP", "CREATECONSUMER", "k1", "g", "c"}, 1, {2}, {0x42}},
    {"XGROUP DELCONSUMER k1 g c", 5, {"XGROUP", "DELCONSUMER", "k1", "g", "c"}, 1, {2}, {0x82}},
    {"XGROUP SETID k1 g $", 5, {"XGROUP", "SETID", "k1", "g", "$"}, 1, {2}, {0x22}},
    {"XREAD STREAMS k1 0", 4, {"XREAD", "STREAMS", "k1", "0"}, 1, {2}, {0x11}},
    {"XREAD COUNT 1 STREAMS k1 k2 0 0", 8, {"XREAD", "COUNT", "1", "STREAMS", "k1", "k2", "0", "0"}, 2, {4, 5}, {0x11, 0x11}},
    {"XREAD BLOCK 0 STREAMS k1 0", 6, {"XREAD", "BLOCK", "0", "STREAMS", "k1", "0"}, 1, {4}, {0x11}},
    {"XREAD COUNT 1 BLOCK 1 STREAMS streams 0", 8, {"XREAD", "COUNT", "1", "BLOCK", "1", "STREAMS", "streams", "0"}, 1, {6}, {0x11}},
    {"XREAD STREAMS k1 k2 0", 5, {"XREAD", "STREAMS", "k1", "k2", "0"}, 1, {2}, {0x11}},
    {"XREAD COUNT 1 a b", 5, {"XREAD", "COUNT", "1", "a", "b"}, -1, {0}, {0}},
    {"XREAD BLOCK 1 STREAMS k1", 5, {"XREAD", "BLOCK", "1", "STREAMS", "k1"}, -1, {0}, {0}},
    {"XREADGROUP GROUP g c STREAMS k1 0", 7, {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "k1", "0"}, 1, {5}, {0x11}},
    {"XREADGROUP GROUP g c COUNT 1 NOACK STREAMS k1 k2 0 0", 12, {"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", "k1", "k2", "0", "0"}, 2, {8, 9}, {0x11, 0x11}},
    {"XREADGROUP GROUP streams c STREAMS k1 >", 7, {"XREADGROUP", "GROUP", "streams", "c", "STREAMS", "k1", ">"}, 1, {5}, {0x11}},
    {"EVAL s 0", 3, {"EVAL", "s", "0"}, 0, {0}, {0}},
    {"EVAL s 1 k1", 4, {"EVAL", "s", "1", "k1"}, 1, {3}, {0x32}},
    {"EVAL s 2 k1 k2 a1", 6, {"EVAL", "s", "2", "k1", "k2", "a1"}, 2, {3, 4}, {0x32, 0x32}},
    {"EVAL s 1 k1 a1 a2", 6, {"EVAL", "s", "1", "k1", "a1", "a2"}, 1, {3}, {0x32}},
    {"EVALSHA sha 1 k1", 4, {"EVALSHA", "sha", "1", "k1"}, 1, {3}, {0x32}},
    {"EVAL_RO s 1 k1", 4, {"EVAL_RO", "s", "1", "k1"}, 1, {3}, {0x11}},
    {"EVALSHA_RO sha 2 k1 k2", 5, {"EVALSHA_RO", "sha", "2", "k1", "k2"}, 2, {3, 4}, {0x11, 0x11}},
    {"FCALL f 0", 3, {"FCALL", "f", "0"}, 0, {0}, {0}},
    {"FCALL f 1 k1 a1", 5, {"FCALL", "f", "1", "k1", "a1"}, 1, {3}, {0x32}},
    {"FCALL_RO f 2 k1 k2", 5, {"FCALL_RO", "f", "2", "k1", "k2"}, 2, {3, 4}, {0x11, 0x11}},
    {"EVAL s 3 k1", 4, {"EVAL", "s", "3", "k1"}, -1, {0}, {0}}, /* numkeys larger than the arguments: EVAL fails; GETKEYS answers [] (server: []) */
    {"EVAL s -1", 3, {"EVAL", "s", "-1"}, -1, {0}, {0}}, /* negative numkeys: EVAL fails; GETKEYS answers [] (server: []) */
    {"FCALL f 2 k1", 4, {"FCALL", "f", "2", "k1"}, -1, {0}, {0}}, /* numkeys larger than the arguments: FCALL fails; GETKEYS answers [] (server: []) */
    {"EVAL s +1 k1", 4, {"EVAL", "s", "+1", "k1"}, 1, {3}, {0x0}},
    {"EVAL s ' 1' k1", 4, {"EVAL", "s", " 1", "k1"}, 1, {3}, {0x0}},
    {"PUBLISH ch msg", 3, {"PUBLISH", "ch", "msg"}, 0, {0}, {0}},
    {"SPUBLISH ch msg", 3, {"SPUBLISH", "ch", "msg"}, 0, {0}, {0}},
    {"SSUBSCRIBE ch1 ch2", 3, {"SSUBSCRIBE", "ch1", "ch2"}, 0, {0}, {0}},
    {"SUNSUBSCRIBE ch", 2, {"SUNSUBSCRIBE", "ch"}, 0, {0}, {0}},
    {"DEBUG OBJECT k1", 3, {"DEBUG", "OBJECT", "k1"}, 0, {0}, {0}},
    {"PING x", 2, {"PING", "x"}, 0, {0}, {0}},
    {"ECHO x", 2, {"ECHO", "x"}, 0, {0}, {0}},
    {"INFO server", 2, {"INFO", "server"}, 0, {0}, {0}},
    {"FLUSHALL ASYNC", 2, {"FLUSHALL", "ASYNC"}, 0, {0}, {0}},
    {"KEYS *", 2, {"KEYS", "*"}, 0, {0}, {0}},
    {"SCAN 0", 2, {"SCAN", "0"}, 0, {0}, {0}},
    {"CONFIG GET maxmemory", 3, {"CONFIG", "GET", "maxmemory"}, 0, {0}, {0}},
    {"CLIENT LIST", 2, {"CLIENT", "LIST"}, 0, {0}, {0}},
    {"SCRIPT FLUSH", 2, {"SCRIPT", "FLUSH"}, 0, {0}, {0}},
    {"SUBSCRIBE ch", 2, {"SUBSCRIBE", "ch"}, 0, {0}, {0}},
    {"SELECT 1", 2, {"SELECT", "1"}, 0, {0}, {0}},
    {"SWAPDB 0 1", 3, {"SWAPDB", "0", "1"}, 0, {0}, {0}},
    {"WAIT 0 0", 3, {"WAIT", "0", "0"}, 0, {0}, {0}},
    {"OBJECT HELP x", 3, {"OBJECT", "HELP", "x"}, 0, {0}, {0}},
/* END GETKEYS CASES */
};

/* ------------------------------------------------------------------------ */
/* A minimal RESP2 walker: returns the end of the value at p, or NULL. */

static const char *resp_skip(const char *p, const char *end) {
    if (p >= end) return NULL;
    const char *nl = memchr(p, '\r', (size_t)(end - p));
    if (!nl || nl + 1 >= end || nl[1] != '\n') return NULL;
    char type = *p;
    long n = strtol(p + 1, NULL, 10);
    const char *next = nl + 2;
    switch (type) {
    case '+': case '-': case ':':
        return next;
    case '$':
        if (n < 0) return next;
        if (end - next < n + 2 || next[n] != '\r' || next[n + 1] != '\n') return NULL;
        return next + n + 2;
    case '*':
        for (long i = 0; i < n && next; i++) next = resp_skip(next, end);
        return next;
    default:
        return NULL;
    }
}

static void check_bulk(const char *p, size_t len, const char *s) {
    char want[256];
    snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(s), s);
    assert_true(len >= strlen(want));
    assert_memory_equal(p, want, strlen(want));
}

static void check_def(const command_def *c, const char *container) {
    assert_non_null(c->name);
    for (const char *p = c->name; *p; p++) assert_false(*p >= 'A' && *p <= 'Z');
    if (container) {
        size_t cl = strlen(container);
        assert_int_equal(strncmp(c->name, container, cl), 0);
        assert_int_equal(c->name[cl], '|');
    } else {
        assert_null(strchr(c->name, '|'));
    }
    assert_int_not_equal(c->arity, 0);

    /* COMMAND INFO entry: exactly one array of 10 starting with the name. */
    const char *ie = c->info_resp + c->info_len;
    assert_true(c->info_len > 5);
    assert_memory_equal(c->info_resp, "*10\r\n", 5);
    check_bulk(c->info_resp + 5, c->info_len - 5, c->name);
    assert_ptr_equal(resp_skip(c->info_resp, ie), ie);

    /* COMMAND DOCS entry: the name, then one map. */
    const char *de = c->docs_resp + c->docs_len;
    check_bulk(c->docs_resp, c->docs_len, c->name);
    const char *map = resp_skip(c->docs_resp, de);
    assert_non_null(map);
    assert_int_equal(*map, '*');
    assert_ptr_equal(resp_skip(map, de), de);

    for (int j = 0; j < c->key_spec_count; j++) {
        const command_key_spec *s = &c->key_specs[j];
        assert_true(s->begin_type >= KSPEC_BS_UNKNOWN && s->begin_type <= KSPEC_BS_KEYWORD);
        assert_true(s->find_type >= KSPEC_FK_UNKNOWN && s->find_type <= KSPEC_FK_KEYNUM);
        if (s->begin_type == KSPEC_BS_KEYWORD) assert_non_null(s->keyword);
    }
    if (c->key_spec_count) assert_non_null(c->key_specs);
}

static void test_table_shape(void **state) {
    (void)state;
    int subs = 0;
    assert_true(command_table_count >= 200);
    for (int i = 0; i < command_table_count; i++) {
        const command_def *c = &command_table[i];
        check_def(c, NULL);
        if (i > 0) assert_true(strcmp(command_table[i - 1].name, c->name) < 0);
        for (int k = 0; k < c->subcommand_count; k++) {
            check_def(&c->subcommands[k], c->name);
            if (k > 0) assert_true(strcmp(c->subcommands[k - 1].name, c->subcommands[k].name) < 0);
            assert_int_equal(c->subcommands[k].subcommand_count, 0);
        }
        subs += c->subcommand_count;
    }
    assert_true(subs >= 100);
}

static void test_lookup(void **state) {
    (void)state;
    char buf[64];
    for (int i = 0; i < command_table_count; i++) {
        const command_def *c = &command_table[i];
        size_t len = strlen(c->name);
        assert_ptr_equal(command_lookup(c->name, len), c);
        for (size_t k = 0; k <= len; k++) buf[k] = (char)((k % 2 && c->name[k] >= 'a' && c->name[k] <= 'z') ? c->name[k] - 32 : c->name[k]);
        assert_ptr_equal(command_lookup(buf, len), c);
        for (int s = 0; s < c->subcommand_count; s++) {
            const command_def *sc = &c->subcommands[s];
            const char *sub = strchr(sc->name, '|') + 1;
            assert_ptr_equal(command_lookup_sub(c, sub, strlen(sub)), sc);
            for (size_t k = 0; k <= strlen(sub); k++) buf[k] = (char)(sub[k] >= 'a' && sub[k] <= 'z' ? sub[k] - 32 : sub[k]);
            assert_ptr_equal(command_lookup_sub(c, buf, strlen(sub)), sc);
            /* "container|sub" is not a top-level name */
            assert_null(command_lookup(sc->name, strlen(sc->name)));
        }
        assert_null(command_lookup_sub(c, "nosuchsub", 9));
    }
    assert_null(command_lookup("", 0));
    assert_null(command_lookup("ge", 2));
    assert_null(command_lookup("gett", 4));
    assert_null(command_lookup("get\0", 4));
    assert_null(command_lookup("nosuchcommand", 13));
    assert_non_null(command_lookup("GETxyz", 3));
    assert_string_equal(command_lookup("GeT", 3)->name, "get");
    assert_null(command_lookup_sub(command_lookup("get", 3), "x", 1));
    assert_null(command_lookup_sub(NULL, "x", 1));
}

static void test_known_entries(void **state) {
    (void)state;
    const command_def *c = command_lookup("get", 3);
    assert_non_null(c);
    assert_int_equal(c->arity, 2);
    assert_true(c->flags & CMD_READONLY);
    assert_true(c->flags & CMD_FAST);
    assert_false(c->flags & CMD_WRITE);
    assert_int_equal(c->first_key, 1);
    assert_int_equal(c->last_key, 1);
    assert_int_equal(c->key_step, 1);
    assert_int_equal(c->key_spec_count, 1);
    assert_int_equal(c->key_specs[0].flags, KSPEC_RO | KSPEC_ACCESS);
    assert_int_equal(c->key_specs[0].begin_type, KSPEC_BS_INDEX);
    assert_int_equal(c->key_specs[0].index, 1);
    assert_int_equal(c->key_specs[0].find_type, KSPEC_FK_RANGE);

    c = command_lookup("set", 3);
    assert_int_equal(c->arity, -3);
    assert_true((c->flags & (CMD_WRITE | CMD_DENYOOM)) == (CMD_WRITE | CMD_DENYOOM));
    assert_true(c->key_specs[0].flags & KSPEC_VARIABLE_FLAGS);
    assert_int_equal(c->getkeys, CMD_GETKEYS_SET);

    c = command_lookup("eval", 4);
    assert_int_equal(c->arity, -3);
    assert_true(c->flags & CMD_NOSCRIPT);
    assert_true(c->flags & CMD_MOVABLE_KEYS);
    assert_true(c->flags & CMD_NO_MANDATORY_KEYS);
    assert_int_equal(c->key_specs[0].find_type, KSPEC_FK_KEYNUM);
    assert_int_equal(c->key_specs[0].index, 2);
    assert_int_equal(c->key_specs[0].keynumidx, 0);
    assert_int_equal(c->key_specs[0].firstkey, 1);
    assert_int_equal(c->key_specs[0].keynumstep, 1);

    c = command_lookup("xread", 5);
    assert_true(c->flags & CMD_BLOCKING);
    assert_int_equal(c->key_specs[0].begin_type, KSPEC_BS_KEYWORD);
    assert_string_equal(c->key_specs[0].keyword, "STREAMS");
    assert_int_equal(c->key_specs[0].startfrom, 1);
    assert_int_equal(c->key_specs[0].lastkey, -1);
    assert_int_equal(c->key_specs[0].limit, 2);

    c = command_lookup("migrate", 7);
    assert_int_equal(c->key_specs[1].begin_type, KSPEC_BS_KEYWORD);
    assert_true(c->key_specs[1].startfrom < 0);

    c = command_lookup("subscribe", 9);
    assert_true(c->flags & CMD_PUBSUB);
    c = command_lookup("restore-asking", 14);
    assert_true(c->flags & CMD_ASKING);

    c = command_lookup("config", 6);
    assert_true(c->subcommand_count >= 5);
    assert_int_equal(c->arity, -2);
    const command_def *sc = command_lookup_sub(c, "GET", 3);
    assert_string_equal(sc->name, "config|get");
    assert_int_equal(sc->arity, -3);
    assert_true(sc->flags & CMD_ADMIN);

    /* A container's COMMAND INFO entry nests its subcommands' entries. */
    assert_non_null(memmem(c->info_resp, c->info_len, sc->info_resp, sc->info_len));
    /* And its docs map nests the subcommands' name + docs. */
    assert_non_null(memmem(c->docs_resp, c->docs_len, sc->docs_resp, sc->docs_len));
}

static const command_def *resolve(int *miss, int argc, ...) {
    char *argv[8];
    size_t lens[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = va_arg(ap, char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    return command_resolve(argc, argv, lens, miss);
}

static void test_resolve(void **state) {
    (void)state;
    int miss = -1;
    const command_def *c = resolve(&miss, 1, "CONFIG");
    assert_string_equal(c->name, "config");
    assert_int_equal(miss, 0);
    c = resolve(&miss, 3, "config", "Get", "maxmemory");
    assert_string_equal(c->name, "config|get");
    assert_int_equal(miss, 0);
    c = resolve(&miss, 2, "config", "nosuch");
    assert_null(c);
    assert_int_equal(miss, 1);
    c = resolve(&miss, 2, "nosuch", "get");
    assert_null(c);
    assert_int_equal(miss, 0);
    c = resolve(&miss, 3, "get", "config", "get");
    assert_string_equal(c->name, "get");
    assert_int_equal(miss, 0);
    c = resolve(NULL, 2, "object", "encoding");
    assert_string_equal(c->name, "object|encoding");
    c = resolve(&miss, 2, "xinfo", "STREAM");
    assert_string_equal(c->name, "xinfo|stream");
    /* Binary-safe lengths: "get" followed by more bytes is not GET. */
    char *argv[1] = {"getx"};
    size_t lens[1] = {3};
    c = command_resolve(1, argv, lens, &miss);
    assert_string_equal(c->name, "get");
    /* NULL argvlen: NUL-terminated arguments. */
    c = command_resolve(1, argv, NULL, &miss);
    assert_null(c);
    assert_null(command_resolve(0, argv, lens, &miss));
}

static int run_case(const getkeys_case *tc) {
    char *argv[MAXARGS];
    size_t lens[MAXARGS];
    int keys[MAXARGS];
    uint32_t flags[MAXARGS];
    for (int i = 0; i < tc->argc; i++) {
        argv[i] = (char *)tc->argv[i];
        lens[i] = strlen(tc->argv[i]);
    }
    int miss = 0;
    const command_def *cmd = command_resolve(tc->argc, argv, lens, &miss);
    if (!cmd) {
        print_error("%s: command not found\n", tc->line);
        return 1;
    }
    int n = command_get_keys(cmd, tc->argc, argv, lens, keys, flags, MAXARGS);
    if (n != tc->n) {
        print_error("%s: got %d keys, expected %d\n", tc->line, n, tc->n);
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (keys[i] != tc->keys[i] || flags[i] != tc->flags[i]) {
            print_error("%s: key %d at argv[%d] flags %#x, expected argv[%d] flags %#x\n",
                        tc->line, i, keys[i], flags[i], tc->keys[i], tc->flags[i]);
            bad = 1;
        }
    }
    /* Positions alone, and a short array: same count, only `max` written. */
    int few[1] = {-7};
    assert_int_equal(command_get_keys(cmd, tc->argc, argv, lens, keys, NULL, MAXARGS), n);
    assert_int_equal(command_get_keys(cmd, tc->argc, argv, lens, NULL, NULL, 0), n);
    assert_int_equal(command_get_keys(cmd, tc->argc, argv, lens, few, NULL, 1), n);
    if (n > 0 && few[0] != tc->keys[0]) {
        print_error("%s: short array got argv[%d]\n", tc->line, few[0]);
        bad = 1;
    }
    return bad;
}

static void test_getkeys_oracle(void **state) {
    (void)state;
    size_t count = sizeof(getkeys_cases) / sizeof(getkeys_cases[0]);
    assert_true(count >= 150);
    int failed = 0;
    for (size_t i = 0; i < count; i++) failed += run_case(&getkeys_cases[i]);
    assert_int_equal(failed, 0);
}

static int keys_of(const char *name, int argc, char **argv, size_t *lens, int *keys) {
    const command_def *cmd = command_resolve(argc, argv, lens, NULL);
    assert_non_null(cmd);
    assert_true(strcmp(cmd->name, name) == 0);
    return command_get_keys(cmd, argc, argv, lens, keys, NULL, MAXARGS);
}

static void test_getkeys_edges(void **state) {
    (void)state;
    int keys[MAXARGS];
    /* Arity violations are rejected before any position is read. */
    char *a1[] = {"get"};
    assert_int_equal(keys_of("get", 1, a1, NULL, keys), -1);
    char *a2[] = {"get", "a", "b"};
    assert_int_equal(keys_of("get", 3, a2, NULL, keys), -1);
    char *a3[] = {"eval", "s"};
    assert_int_equal(keys_of("eval", 2, a3, NULL, keys), -1);

    /* Keywords compare as C strings: an embedded NUL ends the word. */
    char *a4[] = {"xread", "STREAMS\0junk", "k", "0"};
    size_t l4[] = {5, 12, 1, 1};
    assert_int_equal(keys_of("xread", 4, a4, l4, keys), 1);
    assert_int_equal(keys[0], 2);
    /* ... but numkeys parses the whole argument (strict), then atoi. */
    char *a5[] = {"zunion", "1\0x", "k"};
    size_t l5[] = {6, 3, 1};
    assert_int_equal(keys_of("zunion", 3, a5, l5, keys), 1);
    assert_int_equal(keys[0], 2);
    char *a6[] = {"eval", "s", "99999999999999999999999", "k"};
    assert_int_equal(keys_of("eval", 4, a6, NULL, keys), -1);
    char *a7[] = {"eval", "s", "4294967297", "k"};
    assert_int_equal(keys_of("eval", 4, a7, NULL, keys), 1); /* int narrowing, as Redis */
    assert_int_equal(keys[0], 3);

    /* Commands without keys. */
    char *a8[] = {"ping"};
    assert_int_equal(keys_of("ping", 1, a8, NULL, keys), 0);

    /* Many keys: the count is exact even past `max`. */
    char *a9[40];
    a9[0] = "del";
    for (int i = 1; i < 40; i++) a9[i] = "k";
    const command_def *del = command_lookup("del", 3);
    int big[40];
    assert_int_equal(command_get_keys(del, 40, a9, NULL, keys, NULL, MAXARGS), 39);
    assert_int_equal(command_get_keys(del, 40, a9, NULL, big, NULL, 40), 39);
    for (int i = 0; i < 39; i++) assert_int_equal(big[i], i + 1);

    assert_int_equal(command_get_keys(NULL, 1, a1, NULL, keys, NULL, 1), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_shape),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_known_entries),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_getkeys_oracle),
        cmocka_unit_test(test_getkeys_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
