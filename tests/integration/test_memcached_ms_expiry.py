"""Expiry to the millisecond in front of memcached, against redis-server 7.0.

memcached keeps whole seconds; the proxy keeps each item's exact deadline
and must answer as Redis does: a key lives exactly as long as Redis would
keep it, PTTL and PEXPIRETIME are Redis's, and a key past its deadline is
seen nowhere. Timing is judged by causality, never by thresholds on speed:
a key must exist when a reply came back before the earliest instant its
deadline can have, and must be gone when a request was sent after the
latest; an attempt whose timing proves nothing (the machine stalled) is
made again.
"""

import time

import pytest

import harness
from test_memcached import MEMCACHED, Memcached, mc_env, mdiff  # noqa: F401  (fixtures)

import os

pytestmark = pytest.mark.skipif(not os.path.exists(MEMCACHED), reason="memcached is not installed")

ATTEMPTS = 20


def mono_ms():
    return time.monotonic() * 1000.0


def timed(c, *args):
    """(ms before sending, ms after the reply, reply)."""
    t0 = mono_ms()
    r = c.call(*args)
    return t0, mono_ms(), r


def num(raw):
    return int(harness.parse_reply(raw))


def sleep_until(t_ms):
    d = t_ms - mono_ms()
    if d > 0:
        time.sleep(d / 1000.0)


# ---- a short lock ----------------------------------------------------------------------

def test_px50_lock_lives_50ms(mc_env, mdiff):
    """SET NX PX 50: held until its deadline, gone right after it, and
    then free to take again."""
    _, _, proxy = mc_env
    with proxy.connect() as c:
        for attempt in range(ATTEMPTS):
            c.call("DEL", "lock")
            t0, t1, r = timed(c, "SET", "lock", "tok", "NX", "PX", "50")
            assert r == b"+OK\r\n"
            # The deadline lies in [t0 + 50, t1 + 50].
            s0, s1, got = timed(c, "GET", "lock")
            if s1 >= t0 + 50:
                continue  # too slow to prove anything: again
            assert got == b"$3\r\ntok\r\n"
            s0, s1, again = timed(c, "SET", "lock", "other", "NX", "PX", "50")
            if s1 < t0 + 50:
                assert again == b"$-1\r\n"  # still held
            sleep_until(t1 + 52)
            assert c.call("GET", "lock") == b"$-1\r\n"
            assert c.call("EXISTS", "lock") == b":0\r\n"
            assert c.call("PTTL", "lock") == b":-2\r\n"
            assert c.call("SET", "lock", "mine", "NX", "PX", "50") == b"+OK\r\n"
            return
        pytest.fail("no attempt read the lock within 50 ms of taking it")


@pytest.mark.parametrize("cmd", [
    ("GET", "k"), ("EXISTS", "k"), ("TYPE", "k"), ("STRLEN", "k"), ("MGET", "k", "x"), ("GETRANGE", "k", "0", "-1"),
    ("TTL", "k"), ("PTTL", "k"), ("GETDEL", "k"), ("GETEX", "k"), ("GETEX", "k", "PERSIST"), ("PERSIST", "k"),
    ("EXPIRE", "k", "100"), ("TOUCH", "k"), ("DEL", "k"), ("INCR", "k"), ("APPEND", "k", "x"),
    ("SET", "k", "w", "XX"), ("SET", "k", "w", "NX"), ("SETNX", "k", "w"), ("SET", "k", "w", "GET"),
    ("COPY", "k", "k2"), ("RENAME", "k", "k2"), ("RENAMENX", "k", "k2"), ("MSETNX", "k", "w", "k3", "z"),
    ("KEYS", "*"), ("SCAN", "0"), ("DBSIZE",), ("RANDOMKEY",),
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "k"),
    ("EVAL", "return redis.call('EXISTS', KEYS[1])", "1", "k"),
])
def test_never_seen_after_deadline(mc_env, mdiff, cmd):
    """Every command answers for a key past its deadline (still held by
    memcached) as Redis answers for a key that has expired."""
    mc, oracle, proxy = mc_env
    replies = []
    for ep in (oracle, proxy):
        with ep.connect() as c:
            c.call("FLUSHALL")
            _, t1, r = timed(c, "SET", "k", "v", "PX", "40")
            assert r == b"+OK\r\n"
            sleep_until(t1 + 42)
            replies.append(c.call(*cmd))
            replies.append(c.call("EXISTS", "k", "k2", "k3"))
    if cmd == ("DBSIZE",):
        # Redis counts an expired key until its expiry cycle (10 times a
        # second) removes it; the proxy never counts it.
        assert replies[2] == b":0\r\n", replies
    else:
        assert replies[:2] == replies[2:], (cmd, replies)


def test_reads_and_listings_follow_the_deadline(mc_env, mdiff):
    """Before the deadline every read and listing sees the key (nothing
    early); after it, KEYS, SCAN, DBSIZE, RANDOMKEY and INFO keyspace leave
    it out, though memcached lists it for another second or two."""
    _, _, proxy = mc_env
    reads = [("GET", "k"), ("EXISTS", "k"), ("TYPE", "k"), ("MGET", "k"), ("DBSIZE",), ("KEYS", "k*")]
    want = [b"$1\r\nv\r\n", b":1\r\n", b"+string\r\n", b"*1\r\n$1\r\nv\r\n", b":3\r\n", b"*1\r\n$1\r\nk\r\n"]
    with proxy.connect() as c:
        for attempt in range(ATTEMPTS):
            c.call("FLUSHALL")
            c.call("SET", "stay", "1")
            c.call("SET", "stay-ttl", "1", "EX", "1000")
            t0, t1, _ = timed(c, "SET", "k", "v", "PX", "300")
            got = [c.call(*r) for r in reads]
            if mono_ms() >= t0 + 300:
                continue
            assert got == want
            for i in range(20):
                _, t1, _ = timed(c, "SET", "gone%d" % i, "x", "PX", "30")
            sleep_until(t1 + 302)
            assert sorted(harness.parse_reply(c.call("KEYS", "*"))) == [b"stay", b"stay-ttl"]
            assert sorted(harness.parse_reply(c.call("SCAN", "0", "COUNT", "1000"))[1]) == [b"stay", b"stay-ttl"]
            assert c.call("DBSIZE") == b":2\r\n"
            assert c.call("RANDOMKEY") in (b"$4\r\nstay\r\n", b"$8\r\nstay-ttl\r\n")
            info = c.call("INFO", "keyspace")
            assert b"db0:keys=2,expires=1,avg_ttl=0" in info, info
            return
        pytest.fail("no attempt read within 300 ms")


# ---- PTTL and friends against Redis ----------------------------------------------------

def _pttl_bounds(c, setup, ms, read="PTTL"):
    """Runs setup (which gives the key a TTL of `ms` from its last command),
    then PTTL: the answer and the interval Redis's answer must lie in."""
    for cmd in setup[:-1]:
        c.call(*cmd)
    t0, t1, r = timed(c, *setup[-1])
    s0, s1, p = timed(c, read, "k")
    return num(p), (t0 + ms - s1 - 1, t1 + ms - s0 + 1), r


@pytest.mark.parametrize("setup,ms", [
    ([("SET", "k", "v", "PX", "1500")], 1500),
    ([("SET", "k", "v", "PX", "100250")], 100250),
    ([("PSETEX", "k", "2345", "v")], 2345),
    ([("SET", "k", "v"), ("PEXPIRE", "k", "300")], 300),
    ([("SET", "k", "v"), ("PEXPIRE", "k", "10250")], 10250),
    ([("SET", "k", "v"), ("GETEX", "k", "PX", "7777")], 7777),
    ([("SET", "k", "v", "PX", "5000"), ("SET", "k", "w", "GET", "PX", "4321")], 4321),
])
def test_pttl_as_redis(mc_env, mdiff, setup, ms):
    """PTTL is the deadline less now, to the millisecond, on both."""
    _, oracle, proxy = mc_env
    for ep in (oracle, proxy):
        with ep.connect() as c:
            c.call("DEL", "k")
            got, (lo, hi), _ = _pttl_bounds(c, setup, ms)
            assert lo <= got <= hi, (ep, setup, got, lo, hi)


def test_pttl_within_a_few_ms_of_redis(mc_env, mdiff):
    _, oracle, proxy = mc_env
    with oracle.connect() as o, proxy.connect() as p:
        for attempt in range(ATTEMPTS):
            t0 = mono_ms()
            o.call("SET", "k", "v", "PX", "1500")
            p.call("SET", "k", "v", "PX", "1500")
            a = num(o.call("PTTL", "k"))
            b = num(p.call("PTTL", "k"))
            if mono_ms() - t0 > 20:
                continue
            assert abs(a - b) <= 20, (a, b)
            return
        pytest.fail("no attempt ran within 20 ms")


def _abs_ms(offset_ms):
    return int(time.time() * 1000) + offset_ms


def test_absolute_deadlines_exact(mc_env, mdiff):
    """PXAT/PEXPIREAT/EXAT/EXPIREAT give the deadline itself: PEXPIRETIME and
    EXPIRETIME answer it byte for byte, within 30 days and beyond."""
    x = _abs_ms(100250)
    far = _abs_ms(40 * 86400 * 1000 + 777)
    far_s = far // 1000 + 1
    mdiff.run([
        ("SET", "k", "v", "PXAT", str(x)), "PEXPIRETIME k", "EXPIRETIME k",
        ("PEXPIREAT", "k", str(x + 1)), "PEXPIRETIME k",
        ("SET", "k", "v", "PXAT", str(far)), "PEXPIRETIME k", "EXPIRETIME k",
        ("SET", "k", "v", "EXAT", str(far_s)), "PEXPIRETIME k", "EXPIRETIME k",
        ("EXPIREAT", "k", str(far_s + 5)), "PEXPIRETIME k",
        ("GETEX", "k", "PXAT", str(x + 3)), "PEXPIRETIME k",
        ("SET", "a", "1", "PXAT", str(x + 7)), "INCR a", "APPEND a 0", "SETRANGE a 0 5", "INCRBYFLOAT a 1",
        "PEXPIRETIME a", "SET a 2 KEEPTTL", "PEXPIRETIME a", "RENAME a b", "PEXPIRETIME b", "COPY b c",
        "PEXPIRETIME c", "RENAMENX c d", "PEXPIRETIME d", "SET d 3", "PEXPIRETIME d",
    ])


def test_ttl_beyond_30_days_exact_to_the_second(mc_env, mdiff):
    mdiff.run(["SET k v EX 3000000", "TTL k", "EXPIRE k 2592001", "TTL k", "SETEX k 5000000 v", "TTL k",
               "PEXPIRE k 2592000300", "TTL k", "GETEX k EX 31536000", "TTL k"])


def test_options_with_ms_values(mc_env, mdiff):
    """KEEPTTL, GETEX, PERSIST and EXPIRE's NX/XX/GT/LT decided on
    millisecond deadlines (100500 vs 100700: the same whole second)."""
    x = _abs_ms(100500)
    mdiff.run([
        ("SET", "k", "v", "PXAT", str(x)),
        ("PEXPIREAT", "k", str(x + 200), "GT"), "PEXPIRETIME k",
        ("PEXPIREAT", "k", str(x + 100), "GT"), "PEXPIRETIME k",
        ("PEXPIREAT", "k", str(x + 150), "LT"), "PEXPIRETIME k",
        ("PEXPIREAT", "k", str(x + 180), "LT"), "PEXPIRETIME k",
        ("PEXPIREAT", "k", str(x + 1), "NX"), ("PEXPIREAT", "k", str(x + 2), "XX"), "PEXPIRETIME k",
        "SET k w KEEPTTL", "PEXPIRETIME k", "GET k",
        "GETEX k PERSIST", "PTTL k", "TTL k", "PEXPIRETIME k",
        ("PEXPIREAT", "k", str(x + 5), "XX"), ("PEXPIREAT", "k", str(x + 5), "GT"), ("PEXPIREAT", "k", str(x + 6), "NX"),
        "PEXPIRETIME k", "PERSIST k", "PERSIST k", "PEXPIRETIME k",
        ("SET", "k", "v", "PXAT", str(x + 9)), "SET k v", "PTTL k",
        ("SET", "k", "v", "PXAT", str(x + 9)), "GETSET k z", "PTTL k",
        ("PSETEX", "k", "100", "v"), ("PEXPIREAT", "k", "1"), "EXISTS k",
        "SET k v", ("GETEX", "k", "PXAT", "1"), "EXISTS k",
    ])


def test_ttl_rounding_as_redis(mc_env, mdiff):
    """TTL is PTTL rounded to the nearest second, as in Redis 7.0."""
    mdiff.run(["SET k v PX 2400", "TTL k", "SET k v PX 1700", "TTL k", "PSETEX k 2900 v", "TTL k"])


def test_multi_and_scripts(mc_env, mdiff):
    x = _abs_ms(100333)
    mdiff.run([
        "MULTI", ("SET", "k", "v", "PXAT", str(x)), ("PEXPIREAT", "k", str(x + 10), "GT"), "PEXPIRETIME k",
        "INCR n", ("PEXPIREAT", "n", str(x + 20)), "EXEC",
        ("EVAL", "redis.call('SET', KEYS[1], 'v', 'PXAT', ARGV[1]) "
                 "redis.call('PEXPIREAT', KEYS[1], ARGV[1] + 5, 'LT') "
                 "return {redis.call('PEXPIRETIME', KEYS[1]), redis.call('EXPIRETIME', KEYS[1])}",
         "1", "s", str(x)),
        ("EVAL", "redis.call('SET', KEYS[1], 'v', 'PX', 40) return redis.call('PTTL', KEYS[1]) <= 40", "1", "t"),
    ])


# ---- a millisecond rate limiter ------------------------------------------------------------

RATE_LIMIT_MS = ("local current = redis.call('INCR', KEYS[1]) "
                 "if current == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end "
                 "if current > tonumber(ARGV[1]) then return 0 end return 1")


def _rate_limit_run(ep):
    """Five calls in one 100 ms window, then one in the next: the replies,
    or None when the first five did not all land in the window."""
    with ep.connect() as c:
        c.call("DEL", "rl")
        t0 = mono_ms()
        first = c.call("EVAL", RATE_LIMIT_MS, "1", "rl", "3", "100")
        t1 = mono_ms()
        rest = [c.call("EVAL", RATE_LIMIT_MS, "1", "rl", "3", "100") for _ in range(4)]
        inside = c.call("GET", "rl")
        if mono_ms() >= t0 + 100:
            return None
        sleep_until(t1 + 102)
        after = c.call("EVAL", RATE_LIMIT_MS, "1", "rl", "3", "100")
        return [first] + rest + [inside, after, c.call("GET", "rl")]


def test_rate_limiter_100ms_window(mc_env, mdiff):
    _, oracle, proxy = mc_env
    for attempt in range(ATTEMPTS):
        want = _rate_limit_run(oracle)
        got = _rate_limit_run(proxy)
        if want is None or got is None:
            continue
        assert want == [b":1\r\n"] * 3 + [b":0\r\n"] * 2 + [b"$1\r\n5\r\n", b":1\r\n", b"$1\r\n1\r\n"]
        assert got == want
        return
    pytest.fail("no attempt made five calls within 100 ms")


# ---- WATCH, expired_keys ---------------------------------------------------------------------

def test_watched_key_reaching_its_deadline_aborts_exec(mc_env, mdiff):
    """Nothing touches the key between WATCH and EXEC: its deadline alone
    aborts EXEC, as in Redis 7.0."""
    _, oracle, proxy = mc_env
    out = []
    for ep in (oracle, proxy):
        with ep.connect() as c:
            c.call("DEL", "w")
            _, t1, _ = timed(c, "SET", "w", "1", "PX", "60")
            c.call("WATCH", "w")
            sleep_until(t1 + 62)
            c.call("MULTI")
            c.call("SET", "x", "1")
            out.append(c.call("EXEC"))
    assert out == [b"*-1\r\n", b"*-1\r\n"]


def test_expired_keys_counted(mc_env, mdiff):
    """Each key found past its deadline counts once in INFO's expired_keys."""
    _, _, proxy = mc_env
    with proxy.connect() as c:
        def expired():
            info = c.call("INFO", "stats").decode()
            return int(info.split("expired_keys:")[1].split("\r\n")[0])
        before = expired()
        _, t1, _ = timed(c, "SET", "e1", "v", "PX", "20")
        c.call("SET", "e2", "v", "PX", "20")
        sleep_until(t1 + 22)
        assert c.call("GET", "e1") == b"$-1\r\n"
        assert c.call("GET", "e1") == b"$-1\r\n"
        assert c.call("DEL", "e2") == b":0\r\n"
        deadline = time.time() + 5
        while expired() != before + 2:
            assert time.time() < deadline, (before, expired())
            time.sleep(0.01)
        assert c.call("CONFIG", "RESETSTAT") == b"+OK\r\n"
        assert expired() == 0


# ---- what a client that bypasses the proxy sees ------------------------------------------------

def _raw_item(mc, key):
    """(value, flags, t) from memcached, or None."""
    r = mc.raw(b"mg " + key + b" v f t\r\n")
    if r.startswith(b"EN"):
        return None
    head, _, rest = r.partition(b"\r\n")
    parts = head.split()
    flags = int([p for p in parts if p.startswith(b"f")][0][1:])
    t = int([p for p in parts if p.startswith(b"t")][0][1:])
    return rest[:int(parts[1])], flags, t


def test_bypassing_client_view(mc_env, mdiff):
    mc, _, proxy = mc_env
    with proxy.connect() as c:
        c.call("SET", "plain", "hello")
        c.call("SET", "ttl", "hello", "PX", "100250")
        assert _raw_item(mc, b"plain") == (b"hello", 0, -1)
        value, flags, t = _raw_item(mc, b"ttl")
        # The same bytes; the client's own flag bits (the lower 16) are 0.
        assert value == b"hello" and flags & 0xFFFF == 0 and flags >> 16 != 0, flags
        # memcached's TTL is the deadline rounded up, plus one second.
        assert 100 <= t <= 102, t
        c.call("PERSIST", "ttl")
        assert _raw_item(mc, b"ttl")[2] == -1
        assert c.call("PTTL", "ttl") == b":-1\r\n"
        # A key past its deadline is deleted from memcached when the proxy
        # reads it (memcached itself keeps it at least until its next tick,
        # so an attempt stalled for most of a second proves nothing).
        for attempt in range(ATTEMPTS):
            _, t1, _ = timed(c, "SET", "short", "x", "PX", "30")
            sleep_until(t1 + 32)
            held = _raw_item(mc, b"short") is not None
            assert c.call("GET", "short") == b"$-1\r\n"
            if not held and mono_ms() > t1 + 900:
                continue
            assert held
            deadline = time.time() + 5
            while _raw_item(mc, b"short") is not None:
                assert time.time() < deadline
                time.sleep(0.01)
            return
        pytest.fail("no attempt read the key within 900 ms")


def test_items_written_by_others(mc_env, mdiff):
    """Items written straight to memcached keep memcached's whole seconds,
    whatever their flags."""
    mc, _, proxy = mc_env
    mc.raw(b"ms o1 2 F1 T100\r\nhi\r\nms o2 2 F4294901760\r\nhi\r\nms o3 2 F65536 T100\r\nhi\r\n")
    with proxy.connect() as c:
        assert c.call("GET", "o1") == b"$2\r\nhi\r\n"
        assert 98000 <= num(c.call("PTTL", "o1")) <= 100000
        assert c.call("PTTL", "o2") == b":-1\r\n"
        assert c.call("GET", "o2") == b"$2\r\nhi\r\n"
        # Upper flag bits that happen to fit memcached's TTL are read as a
        # deadline: within a few seconds of it.
        assert 93000 <= num(c.call("PTTL", "o3")) <= 104000
        assert c.call("GET", "o3") == b"$2\r\nhi\r\n"
        # The proxy's TTL on an outside item keeps its flags' lower bits.
        t0, _, _ = timed(c, "PEXPIRE", "o1", "50250")
        assert _raw_item(mc, b"o1")[1] & 0xFFFF == 1
        _, s1, p = timed(c, "PTTL", "o1")
        assert 50250 - (s1 - t0) - 1 <= num(p) <= 50250, p


def test_undo_keeps_the_deadline(mc_env, mdiff):
    """A script undone by its journal puts the key back with its exact
    deadline."""
    _, _, proxy = mc_env
    x = _abs_ms(100250)
    with proxy.connect() as c:
        c.call("SET", "j", "old", "PXAT", str(x))
        r = c.call("EVAL", "#!lua flags=atomic\nredis.call('SET', KEYS[1], 'new', 'PX', 5000) "
                   "return redis.call('INCR', KEYS[1])", "1", "j")
        assert r.startswith(b"-ERR"), r
        assert c.call("GET", "j") == b"$3\r\nold\r\n"
        assert c.call("PEXPIRETIME", "j") == b":%d\r\n" % x
