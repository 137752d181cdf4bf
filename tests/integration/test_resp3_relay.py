"""RESP3 through the proxy, byte for byte against redis-server 7.0 with
HELLO 3: the whole relay corpus in front of a current Redis, and a corpus of
common commands in front of a store that speaks only RESP2 (Redis 5.0.14)
and in front of memcached (string commands); the proxy converts the store's
RESP2 replies to Redis 7.0's RESP3 shapes."""

import pytest

import harness
from harness import Step, as_step
from conftest import old_redis_binary, proxy_binary, stop_proxy, wait_store_learnt
from test_patterns import mc_env  # noqa: F401  (fixture)
import test_resp3_shapes

HELLO3 = Step(args=("HELLO", "3"), same_type=True)  # its reply carries the client id


def relay_cases():
    out = []
    for p in test_resp3_shapes.relay_cases():
        steps = test_resp3_shapes.replayable(p.values[0])
        if steps:
            out.append(pytest.param(steps, id=p.id))
    return out


@pytest.mark.parametrize("steps", relay_cases())
def test_relay_corpus_in_resp3(diff, steps):
    diff.run([HELLO3] + steps)


COMMON = [
    "SET s v", "GET s", "GET missing", "MGET s missing", "INCRBYFLOAT f 1.5", "APPEND s x", "STRLEN s",
    "HSET h a 1 b 2", "HGETALL h", "HGETALL missing", "HMGET h a zz", "HKEYS h", "HVALS h", "HEXISTS h a",
    "SADD st 1 2 3", "SMEMBERS st", "SISMEMBER st 1", "SINTER st st", "SUNION st missing", "SDIFF st missing",
    "SMEMBERS missing", "ZADD z 1.5 a 2 b 3 c", "ZSCORE z a", "ZSCORE z nope", "ZINCRBY z 2 a",
    "ZRANGE z 0 -1 WITHSCORES", "ZREVRANGE z 0 -1 WITHSCORES", "ZRANGEBYSCORE z -inf +inf WITHSCORES",
    "ZPOPMIN z", "ZPOPMAX z 2", "ZRANK z c", "ZCARD z", "ZADD z INCR 1 q", "RPUSH l a b c", "LRANGE l 0 -1",
    "LPOP l", "LINDEX l 9", "XADD x 1-0 f v", "XADD x 2-0 g w", "XRANGE x - +", "XREAD COUNT 5 STREAMS x 0",
    "XLEN x", "GEOADD g 13.361389 38.115556 p", "GEOPOS g p nope", "GEODIST g p p", "TYPE h", "EXISTS h",
    "TTL h", "PTTL missing", "EXPIRE h 100", "DEL st", "SETNX s w",
    ("EVAL", "redis.setresp(3) return redis.call('hgetall', KEYS[1])", "1", "h"),
    ("EVAL", "redis.setresp(3) return redis.call('zscore', KEYS[1], 'b')", "1", "z"),
    ("EVAL", "redis.setresp(3) return redis.call('smembers', KEYS[1])", "1", "st"),
    ("EVAL", "return redis.call('get', 'missing')", "0"), ("EVAL", "return {1, 'a', {2}}", "0"),
    ("EVAL", "return {double=1.5}", "0"), ("EVAL", "return true", "0"),
    "MULTI", "HGETALL h", "ZSCORE z b", "GET missing", "EXEC",
    "CONFIG GET maxmemory-samples", "PING", "ECHO e",
]

MEMCACHED = [
    "SET s v", "GET s", "GET missing", "MGET s missing", "INCR n", "INCRBYFLOAT f 1.5", "APPEND s x",
    "STRLEN s", "EXISTS s missing", "TTL s", "SET t v EX 100", "TYPE s", "DEL s", "SETNX s w", "GETDEL s",
    ("EVAL", "return redis.call('get', 'missing')", "0"), ("EVAL", "return {double=2.5}", "0"),
    ("EVAL", "redis.setresp(3) return redis.call('get', 'missing')", "0"),
    "MULTI", "GET t", "INCR n", "GET missing", "EXEC", "PING",
]


@pytest.fixture(scope="module")
def resp2_store_proxy(workdir):
    store = harness.RedisServer("store-resp2-5.0", str(workdir / "store-resp3-5.0"), rename_scripting=True,
                                binary=old_redis_binary("5.0.14"))
    store.start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(workdir / "proxy-resp3-5.0"))
    try:
        proxy.start()
        wait_store_learnt(proxy)
    except Exception:
        store.stop()
        raise
    yield proxy
    stop_proxy(proxy)
    store.stop()


def test_common_commands_on_a_resp2_store(oracle, resp2_store_proxy):
    d = harness.Differ(oracle, resp2_store_proxy)
    d.flushall()
    d.run([HELLO3] + [as_step(s) for s in COMMON])


def test_string_commands_on_memcached(mc_env):
    _, oracle, proxy = mc_env
    d = harness.Differ(oracle, proxy)
    d.flushall()
    d.run([HELLO3] + [as_step(s) for s in MEMCACHED])
