"""Expiry to the millisecond in front of Redis 2.4, against redis-server 7.0.

Redis before 2.6 keeps whole seconds (EXPIRE, TTL; no PEXPIRE, no PTTL).
The proxy gives the store the time to live rounded up and keeps the exact
deadline itself: through the proxy a key lives exactly as long as Redis 7.0
would keep it. The timing tests of the memcached backend run here as they
are; the rest check what a store with native commands adds: whole-second
EXPIRE and SETEX replace a deadline instead of leaving it to delete the
key early, and a write that clears the time to live at the store makes
the deadline void. Timing is judged by causality (see
test_memcached_ms_expiry.py), never by thresholds on speed.
"""

import time

import pytest

import harness
from conftest import old_redis_binary, proxy_binary, stop_proxy, wait_store_learnt
import test_memcached_ms_expiry as mt
from test_memcached_ms_expiry import (  # noqa: F401  (run here against Redis 2.4)
    ATTEMPTS, mono_ms, num, sleep_until, timed,
    test_px50_lock_lives_50ms, test_pttl_as_redis, test_pttl_within_a_few_ms_of_redis,
    test_rate_limiter_100ms_window, test_ttl_rounding_as_redis, test_watched_key_reaching_its_deadline_aborts_exec,
)

RELEASE = "2.4.18"


@pytest.fixture(scope="module")
def mc_env(workdir, oracle):
    """(store, oracle, proxy) with Redis 2.4 as the store; the name is the
    one the shared timing tests ask for."""
    store = harness.RedisServer("store-ms-" + RELEASE, str(workdir / "store-ms-2.4"), rename_scripting=True,
                                binary=old_redis_binary(RELEASE))
    store.start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(workdir / "proxy-ms-2.4"))
    try:
        proxy.start()
        wait_store_learnt(proxy)
    except Exception:
        store.stop()
        raise
    yield store, oracle, proxy
    stop_proxy(proxy)
    store.stop()


@pytest.fixture
def mdiff(mc_env, oracle):
    _, _, proxy = mc_env
    assert proxy.alive(), proxy.diagnostics()
    d = harness.Differ(oracle, proxy)
    d.flushall()
    return d


@pytest.mark.parametrize("cmd", [
    ("GET", "k"), ("EXISTS", "k"), ("TYPE", "k"), ("STRLEN", "k"), ("MGET", "k", "x"), ("GETRANGE", "k", "0", "-1"),
    ("TTL", "k"), ("PTTL", "k"), ("GETDEL", "k"), ("GETEX", "k"), ("GETEX", "k", "PERSIST"), ("PERSIST", "k"),
    ("EXPIRE", "k", "100"), ("DEL", "k"), ("INCR", "k"), ("APPEND", "k", "x"),
    ("SET", "k", "w", "XX"), ("SET", "k", "w", "NX"), ("SETNX", "k", "w"), ("SET", "k", "w", "GET"),
    ("COPY", "k", "k2"), ("RENAME", "k", "k2"), ("RENAMENX", "k", "k2"), ("MSETNX", "k", "w", "k3", "z"),
    ("KEYS", "*"), ("SCAN", "0"), ("DBSIZE",), ("RANDOMKEY",), ("LPUSH", "k", "x"), ("SADD", "k", "x"),
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "k"),
    ("EVAL", "return redis.call('EXISTS', KEYS[1])", "1", "k"),
])
def test_never_seen_after_deadline(mc_env, mdiff, cmd):
    """Every command answers for a key past its deadline (still held by
    the store for up to two seconds) as Redis answers for an expired key."""
    mt.test_never_seen_after_deadline(mc_env, mdiff, cmd)


def test_listings_leave_out_keys_past_their_deadline(mc_env, mdiff):
    _, _, proxy = mc_env
    with proxy.connect() as c:
        for attempt in range(ATTEMPTS):
            c.call("FLUSHALL")
            c.call("SET", "stay", "1")
            t0, t1, _ = timed(c, "SET", "k", "v", "PX", "300")
            got = [c.call("EXISTS", "k"), c.call("DBSIZE"), c.call("KEYS", "k*")]
            if mono_ms() >= t0 + 300:
                continue
            assert got == [b":1\r\n", b":2\r\n", b"*1\r\n$1\r\nk\r\n"]
            for i in range(10):
                _, t1, _ = timed(c, "SET", "gone%d" % i, "x", "PX", "30")
            sleep_until(t1 + 302)
            assert harness.parse_reply(c.call("KEYS", "*")) == [b"stay"]
            assert c.call("DBSIZE") == b":1\r\n"
            assert c.call("RANDOMKEY") == b"$4\r\nstay\r\n"
            return
        pytest.fail("no attempt read within 300 ms")


@pytest.mark.parametrize("replace", [
    ("EXPIRE", "k", "100"), ("EXPIREAT", "k", "@+100"), ("SETEX", "k", "100", "w"), ("PEXPIRE", "k", "100000"),
    ("SET", "k", "w", "EX", "100"), ("GETEX", "k", "EX", "100"), ("SET", "k", "w"), ("GETSET", "k", "w"),
    ("PERSIST", "k"), ("SET", "k", "w", "KEEPTTL"),
])
def test_a_new_time_to_live_replaces_the_deadline(mc_env, mdiff, replace):
    """A key given a new time to live (or none) after a short deadline is
    not deleted when that deadline passes; KEEPTTL keeps it."""
    _, oracle, proxy = mc_env
    replies = []
    for ep in (oracle, proxy):
        with ep.connect() as c:
            c.call("FLUSHALL")
            _, t1, _ = timed(c, "SET", "k", "v", "PX", "60")
            args = [str(int(time.time()) + 100) if a == "@+100" else a for a in replace]
            replies.append(c.call(*args))
            sleep_until(t1 + 62)
            replies.append(c.call("EXISTS", "k"))
            ttl = num(c.call("TTL", "k"))
            replies.append(ttl if ttl < 0 else "ttl>=99" if ttl >= 99 else ttl)
    assert replies[:3] == replies[3:], (replace, replies)


def test_options_decided_on_milliseconds(mc_env, mdiff):
    """EXPIRE's GT/LT/NX/XX and KEEPTTL compare deadlines that fall in the
    same whole second as Redis 7.0 does."""
    _, oracle, proxy = mc_env
    out = []
    for ep in (oracle, proxy):
        with ep.connect() as c:
            c.call("DEL", "k")
            c.call("SET", "k", "v", "PX", "100500")
            out.append([c.call("PEXPIRE", "k", "100300", "GT"), c.call("PEXPIRE", "k", "100700", "GT"),
                        c.call("PEXPIRE", "k", "100900", "LT"), c.call("PEXPIRE", "k", "100600", "LT"),
                        c.call("PEXPIRE", "k", "5", "NX"), c.call("SET", "k", "w", "KEEPTTL")])
            p = num(c.call("PTTL", "k"))
            out[-1].append(100500 <= p <= 100600)
    assert out[0] == out[1], out


def test_rename_and_copy_never_expire_early(mc_env, mdiff):
    """RENAME, COPY and MOVE carry the exact deadline with the key; a
    destination's own old deadline is void."""
    _, _, proxy = mc_env
    with proxy.connect() as c:
        c.call("FLUSHALL")
        t0, t1, _ = timed(c, "SET", "a", "v", "PX", "80")
        c.call("SET", "b", "old", "PX", "40")
        assert c.call("RENAME", "a", "b") == b"+OK\r\n"
        assert c.call("COPY", "b", "c") == b":1\r\n"
        assert c.call("SET", "m", "v", "PX", "5000") == b"+OK\r\n"
        assert c.call("MOVE", "m", "1") == b":1\r\n"
        if mono_ms() < t0 + 40:
            sleep_until(t1 + 45)
            assert c.call("GET", "b") == b"$1\r\nv\r\n"  # b's own old deadline is void
            assert c.call("GET", "c") == b"$1\r\nv\r\n"
        c.call("SELECT", "1")
        assert c.call("EXISTS", "m") == b":1\r\n"
        assert 4000 < num(c.call("PTTL", "m")) <= 5000  # moved with its exact deadline
        c.call("FLUSHDB")
        c.call("SELECT", "0")


def test_multi_and_scripts_keep_deadlines(mc_env, mdiff):
    _, _, proxy = mc_env
    with proxy.connect() as c:
        c.call("FLUSHALL")
        assert c.call("MULTI") == b"+OK\r\n"
        c.call("SET", "t", "v", "PX", "50")
        c.call("PEXPIRE", "t", "40")
        r = c.call("EXEC")
        t1 = mono_ms()
        assert r == b"*2\r\n+OK\r\n:1\r\n"
        assert num(c.call("PTTL", "t")) <= 40
        r = c.call("EVAL", "redis.call('SET', KEYS[1], 'v', 'PX', 30) return redis.call('PTTL', KEYS[1])", "1", "s")
        assert 0 < num(r) <= 30
        sleep_until(max(t1 + 42, mono_ms() + 32))
        assert c.call("EVAL", "return {redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2])}",
                      "2", "t", "s") == b"*2\r\n:0\r\n:0\r\n"


def test_bypassing_client_sees_the_key_at_most_until_its_rounded_second(mc_env, mdiff):
    """A client talking to the store itself sees the key the store holds:
    gone within two seconds of its deadline, never with a longer life."""
    store, _, proxy = mc_env
    with proxy.connect() as c:
        c.call("DEL", "bp")
        _, t1, _ = timed(c, "SET", "bp", "v", "PX", "100")
    with store.connect() as s:
        ttl = num(s.call("TTL", "bp"))
        assert 0 <= ttl <= 1
        sleep_until(t1 + 2200)
        assert s.call("EXISTS", "bp") == b":0\r\n"
