"""Behaviour of scripts in the proxy that a byte-for-byte comparison cannot
show: isolation under concurrency, many scripts in flight, busy scripts and
SCRIPT KILL, the Lua memory limit, undeclared keys, clients that vanish
mid-script, and a store that is down."""

import hashlib
import os
import random
import re
import socket
import threading
import time

import pytest

import harness
from harness import RespConnection, encode_command, parse_reply


def sha1(body):
    return hashlib.sha1(body.encode()).hexdigest()


info_fields = harness.info_fields


def wait_locks_idle(proxy, timeout=5.0):
    """INFO's lock counters once nothing holds or waits (or the last seen)."""
    deadline = time.monotonic() + timeout
    with proxy.connect() as c:
        while True:
            f = info_fields(c)
            if (f.get("lock_sets_holding") == "0" and f.get("lock_sets_waiting") == "0"
                    and f.get("scripts_running") == "0") or time.monotonic() > deadline:
                return f
            time.sleep(0.05)


def assert_no_lock_leak(proxy):
    f = wait_locks_idle(proxy)
    assert "lock_sets_holding" in f and "lock_sets_waiting" in f, sorted(f)
    assert f["lock_sets_holding"] == "0", f
    assert f["lock_sets_waiting"] == "0", f
    assert f["scripts_running"] == "0", f


class ConfigOverride:
    """CONFIG SET through the proxy, restored afterwards."""

    def __init__(self, proxy, **values):
        self.proxy, self.values, self.saved = proxy, values, {}

    def __enter__(self):
        with self.proxy.connect() as c:
            for k, v in self.values.items():
                name = k.replace("_", "-")
                got = parse_reply(c.call("CONFIG", "GET", name))
                assert len(got) == 2, "CONFIG GET %s answered %r" % (name, got)
                self.saved[name] = got[1]
                r = c.call("CONFIG", "SET", name, v)
                assert r == b"+OK\r\n", "CONFIG SET %s %s answered %r" % (name, v, r)
        return self

    def __exit__(self, *exc):
        with self.proxy.connect() as c:
            for name, v in self.saved.items():
                assert c.call("CONFIG", "SET", name, v) == b"+OK\r\n"


@pytest.fixture
def clean(real_proxy):
    with real_proxy.connect() as c:
        assert c.call("FLUSHALL") == b"+OK\r\n"
    yield real_proxy
    assert_no_lock_leak(real_proxy)


# ---------------------------------------------------------------------------
# isolation

TRANSFER = """
local from = tonumber(redis.call('GET', KEYS[1]))
local amount = tonumber(ARGV[1])
if from < amount then return 0 end
redis.call('DECRBY', KEYS[1], amount)
-- a pause between the two writes widens the window a reader could see
local n = 0
for i = 1, tonumber(ARGV[2]) do n = n + i end
redis.call('INCRBY', KEYS[2], amount)
return 1
"""


def test_transfers_conserve_total_under_concurrency(clean):
    proxy = clean
    accounts = ["acct:%d" % i for i in range(10)]
    initial = 1000
    with proxy.connect() as c:
        assert c.call("MSET", *[x for a in accounts for x in (a, initial)]) == b"+OK\r\n"
        sha = parse_reply(c.call("SCRIPT", "LOAD", TRANSFER)).decode()
    total = initial * len(accounts)
    stop = time.monotonic() + 4.0
    errors, reads, transfers = [], [0], [0]
    lock = threading.Lock()

    def mover(seed):
        rnd = random.Random(seed)
        try:
            with proxy.connect() as c:
                while time.monotonic() < stop:
                    a, b = rnd.sample(accounts, 2)
                    r = c.call("EVALSHA", sha, 2, a, b, rnd.randint(1, 50),
                               rnd.choice((0, 1000, 20000)))
                    if r not in (b":0\r\n", b":1\r\n"):
                        errors.append("transfer answered %r" % r)
                        return
                    with lock:
                        transfers[0] += r == b":1\r\n"
        except Exception as e:  # reported below, with the others
            errors.append("mover: %r" % e)

    def reader():
        try:
            with proxy.connect() as c:
                while time.monotonic() < stop:
                    vals = parse_reply(c.call("MGET", *accounts))
                    s = sum(int(v) for v in vals)
                    with lock:
                        reads[0] += 1
                    if s != total:
                        errors.append("MGET saw a total of %d, not %d: %r" % (s, total, vals))
                        return
        except Exception as e:
            errors.append("reader: %r" % e)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(20)]
    threads += [threading.Thread(target=reader) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "clients still running after 30s"
    assert not errors, errors[:5]
    assert reads[0] > 50 and transfers[0] > 50, (reads, transfers)
    with proxy.connect() as c:
        vals = [int(v) for v in parse_reply(c.call("MGET", *accounts))]
    assert sum(vals) == total and min(vals) >= 0, vals


def test_concurrent_increments_by_script_are_atomic(clean):
    # get + set in a script is a read-modify-write: lost updates would show.
    proxy = clean
    body = "local v = tonumber(redis.call('get', KEYS[1]) or '0') " \
           "redis.call('set', KEYS[1], v + 1) return v + 1"
    n_threads, per = 10, 100
    errors = []

    def worker():
        try:
            with proxy.connect() as c:
                data = encode_command("EVAL", body, 1, "rmw") * per
                c.send(data)
                for r in c.read_replies(per):
                    if not r.startswith(b":"):
                        errors.append(r)
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    with proxy.connect() as c:
        assert c.call("GET", "rmw") == b"$4\r\n1000\r\n"


# ---------------------------------------------------------------------------
# redis.call from anywhere, while other scripts interleave

FIBER_SCRIPTS = [
    ("pcall", "local ok, v = pcall(function() return redis.call('incr', KEYS[1]) end) "
              "return {tostring(ok), v}"),
    ("pcall-error", "local ok, e = pcall(redis.call, 'incr', KEYS[2]) "
                    "return {tostring(ok), e.err, redis.call('incr', KEYS[1])}"),
    ("xpcall", "local ok, v = xpcall(function() redis.call('nosuch') end, "
               "function(e) return redis.call('incr', KEYS[1]) end) return {tostring(ok), v}"),
    ("index", "local t = setmetatable({}, {__index=function(t, k) "
              "return redis.call('hget', KEYS[3], k) end}) return {t.a, t.b, t.zz}"),
    ("iterator", "local function it(k) local i = -1 return function() i = i + 1 "
                 "local v = redis.call('lindex', k, i) if v then return v end end end "
                 "local r = {} for v in it(KEYS[4]) do r[#r+1] = v end return r"),
    ("sort", "local t = {'a', 'b', 'c'} table.sort(t, function(x, y) "
             "return tonumber(redis.call('hget', KEYS[3], x)) > "
             "tonumber(redis.call('hget', KEYS[3], y)) end) return t"),
    ("gsub", "return (string.gsub('a+b+c', '%a', function(c) "
             "return redis.call('hget', KEYS[3], c) end))"),
    ("nested", "local t = setmetatable({}, {__index=function(t, k) local ok, v = "
               "pcall(function() local r = {} table.sort({3, 1, 2}, function(a, b) "
               "r[#r+1] = redis.call('echo', a .. b) return a < b end) return #r end) "
               "return v end}) return t.x > 0"),
]
FIBER_KEYS = ("fc:n", "fc:s", "fc:h", "fc:l")
FIBER_SETUP = [("SET", "fc:s", "notanumber"), ("HSET", "fc:h", "a", 3, "b", 1, "c", 2),
               ("RPUSH", "fc:l", "x", "y", "z")]


@pytest.mark.parametrize("body", [b for _, b in FIBER_SCRIPTS],
                         ids=[n for n, _ in FIBER_SCRIPTS])
def test_redis_call_from_anywhere_matches_oracle(diff, body):
    steps = list(FIBER_SETUP) + [("EVAL", body, len(FIBER_KEYS)) + FIBER_KEYS] * 3
    diff.run(steps)


def test_redis_call_from_anywhere_interleaved(oracle, real_proxy):
    """Every fiber script at once on many connections: each reply must be
    what the oracle gives for that script (the counter aside)."""
    expected = {}
    with oracle.connect() as c:
        for name, body in FIBER_SCRIPTS:
            c.call("FLUSHALL")
            for cmd in FIBER_SETUP:
                c.call(*cmd)
            expected[name] = c.call("EVAL", body, len(FIBER_KEYS), *FIBER_KEYS)
    with real_proxy.connect() as c:
        c.call("FLUSHALL")
        for cmd in FIBER_SETUP:
            c.call(*cmd)
    counter_dependent = {"pcall", "pcall-error", "xpcall"}
    errors = []

    def worker(i):
        try:
            with real_proxy.connect() as c:
                order = FIBER_SCRIPTS * 5
                random.Random(i).shuffle(order)
                c.send(b"".join(encode_command("EVAL", b, len(FIBER_KEYS), *FIBER_KEYS)
                                for _, b in order))
                for (name, _), r in zip(order, c.read_replies(len(order))):
                    if name in counter_dependent:
                        # same shape, the counter value differs
                        if re.sub(rb":\d+\r\n", b":N\r\n", r) != re.sub(
                                rb":\d+\r\n", b":N\r\n", expected[name]):
                            errors.append((name, r, expected[name]))
                    elif r != expected[name]:
                        errors.append((name, r, expected[name]))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    with real_proxy.connect() as c:
        # every pcall, pcall-error and xpcall run incremented fc:n exactly once
        assert c.call("GET", "fc:n") == b"$3\r\n150\r\n"
    assert_no_lock_leak(real_proxy)


# ---------------------------------------------------------------------------
# many scripts in flight

MANY_CALLS = """
local a = redis.call('incr', KEYS[1])
local b = redis.call('rpush', KEYS[2], ARGV[1])
local s = redis.call('incr', KEYS[3])
local g = redis.call('get', KEYS[1])
return {a, b, s, g, ARGV[1]}
"""


def test_thousand_connections_each_running_a_script(clean):
    proxy = clean
    n = 1000
    conns = []
    try:
        for i in range(n):
            conns.append(proxy.connect(connect_timeout=10))
        for i, c in enumerate(conns):
            c.send(encode_command("EVAL", MANY_CALLS, 3, "mc:%d" % i, "ml:%d" % i, "mc:shared",
                                  "tag%d" % i))
        shared = []
        for i, c in enumerate(conns):
            a, b, s, g, tag = parse_reply(c.read_reply(timeout=60))
            assert (a, b, g, tag) == (1, 1, b"1", b"tag%d" % i)
            shared.append(s)
        assert sorted(shared) == list(range(1, n + 1))
    finally:
        for c in conns:
            c.close()


def test_thousand_pipelined_scripts_over_fifty_connections(clean):
    proxy = clean
    nconn, per = 50, 20
    conns = [proxy.connect() for _ in range(nconn)]
    try:
        for i, c in enumerate(conns):
            c.send(b"".join(encode_command("EVAL", MANY_CALLS, 3, "pc:%d" % i, "pl:%d" % i,
                                           "pc:shared", "%d-%d" % (i, j)) for j in range(per)))
        shared = []
        for i, c in enumerate(conns):
            for j, raw in enumerate(c.read_replies(per, timeout=60)):
                a, b, s, g, tag = parse_reply(raw)
                assert (a, b, g, tag) == (j + 1, j + 1, str(j + 1).encode(),
                                          ("%d-%d" % (i, j)).encode())
                shared.append(s)
        assert sorted(shared) == list(range(1, nconn * per + 1))
        with proxy.connect() as c:
            assert parse_reply(c.call("LRANGE", "pl:7", 0, -1)) == [
                ("7-%d" % j).encode() for j in range(per)]
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------------------
# busy scripts, SCRIPT KILL

LOOP = "local i = 0\nwhile true do i = i + 1 end"
# Redis 7.0 scripts have no clock of their own: TIME from the store bounds
# the spin, which stays mostly on the CPU (so it becomes busy).
NOW = ("local function now() local t = redis.call('TIME') "
       "return tonumber(t[1]) + tonumber(t[2]) / 1e6 end\n")
WRITE_THEN_SPIN = ("redis.call('set', KEYS[1], 'written')\n" + NOW +
                   "local t0 = now()\n"
                   "while now() - t0 < tonumber(ARGV[1]) do for i = 1, 3000000 do end end\n"
                   "return 'finished'")


def wait_busy(proxy, timeout=10.0):
    deadline = time.monotonic() + timeout
    with proxy.connect() as c:
        while time.monotonic() < deadline:
            if info_fields(c).get("scripts_busy", "0") != "0":
                return True
            time.sleep(0.05)
    return False


def test_script_kill_with_nothing_running(clean):
    with clean.connect() as c:
        assert c.call("SCRIPT", "KILL") == b"-NOTBUSY No scripts in execution right now.\r\n"


def test_infinite_loop_others_work_then_script_kill(clean):
    proxy = clean
    with ConfigOverride(proxy, busy_reply_threshold="500"):
        looper = proxy.connect()
        try:
            looper.send(encode_command("EVAL", LOOP, 1, "loop:key"))
            t0 = time.monotonic()
            # meanwhile other clients on other keys keep working
            with proxy.connect() as c:
                for i in range(20):
                    assert c.call("PING") == b"+PONG\r\n"
                    assert c.call("SET", "other:%d" % i, i) == b"+OK\r\n"
                    assert c.call("GET", "other:%d" % i) == b"$%d\r\n%d\r\n" % (len(str(i)), i)
                    assert c.call("EVAL", "return redis.call('incr', KEYS[1])", 1,
                                  "other:n") == b":%d\r\n" % (i + 1)
            assert wait_busy(proxy), "the looping script never became busy"
            assert time.monotonic() - t0 >= 0.45
            with proxy.connect() as c:
                # its key answers -BUSY while the script is busy; others do not
                r = c.call("GET", "loop:key")
                assert r.startswith(b"-BUSY "), r
                assert c.call("GET", "other:3") == b"$1\r\n3\r\n"
                assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
            r = looper.read_reply(timeout=10)
            assert r.startswith(b"-ERR Script killed by user with SCRIPT KILL..."), r
            assert b"script: %s, on @user_script:2." % sha1(LOOP).encode() in r, r
            # the connection is usable again
            assert looper.call("PING") == b"+PONG\r\n"
            with proxy.connect() as c:
                assert c.call("GET", "loop:key") == b"$-1\r\n"
                assert c.call("SCRIPT", "KILL") == b"-NOTBUSY No scripts in execution right now.\r\n"
        finally:
            looper.close()


def test_pipeline_replies_before_a_slow_last_script(clean):
    """Replies before a client's last pipelined script are held for it only
    briefly: PONG and the first script's reply arrive while the second script
    still loops (long before any busy threshold)."""
    proxy = clean
    with ConfigOverride(proxy, busy_reply_threshold="300"):
        looper = proxy.connect()
        try:
            looper.send(encode_command("PING") + encode_command("EVAL", "return 1", 0) +
                        encode_command("EVAL", LOOP, 1, "hold:key"))
            # The loop never ends by itself: these come while it runs.
            assert looper.read_reply(timeout=5) == b"+PONG\r\n"
            assert looper.read_reply(timeout=5) == b":1\r\n"
            assert wait_busy(proxy), "the looping script never became busy"
            with proxy.connect() as c:
                assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
            r = looper.read_reply(timeout=10)
            assert r.startswith(b"-ERR Script killed by user with SCRIPT KILL..."), r
        finally:
            looper.close()


def test_busy_script_that_wrote_is_unkillable(clean):
    proxy = clean
    with ConfigOverride(proxy, busy_reply_threshold="300"):
        spinner = proxy.connect()
        try:
            spinner.send(encode_command("EVAL", WRITE_THEN_SPIN, 1, "uk:key", "2.5"))
            assert wait_busy(proxy), "the spinning script never became busy"
            with proxy.connect() as c:
                r = c.call("SCRIPT", "KILL")
                assert r.startswith(b"-UNKILLABLE Sorry the script already executed write "
                                    b"commands against the dataset."), r
                r = c.call("GET", "uk:key")
                assert r.startswith(b"-BUSY "), r
                assert c.call("PING") == b"+PONG\r\n"
            assert spinner.read_reply(timeout=15) == b"$8\r\nfinished\r\n"
            with proxy.connect() as c:
                assert c.call("GET", "uk:key") == b"$7\r\nwritten\r\n"
                assert c.call("SCRIPT", "KILL") == b"-NOTBUSY No scripts in execution right now.\r\n"
        finally:
            spinner.close()


def test_script_looping_on_redis_call_is_killable(clean):
    proxy = clean
    body = NOW + ("local t0 = now()\n"
                  "while now() - t0 < 3 do redis.call('get', KEYS[1]) end\n"
                  "return 'ran out'")
    with ConfigOverride(proxy, busy_reply_threshold="300"):
        looper = proxy.connect()
        try:
            looper.send(encode_command("EVAL", body, 1, "rl:key"))
            time.sleep(0.8)
            with proxy.connect() as c:
                r = c.call("GET", "rl:key", timeout=1)
                assert r.startswith(b"-BUSY "), r
                assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
            r = looper.read_reply(timeout=5)
            assert r.startswith(b"-ERR Script killed by user with SCRIPT KILL..."), r
        finally:
            try:
                looper.read_reply(timeout=10)
            except Exception:
                pass
            looper.close()


def test_busy_reply_matches_redis_text(oracle, clean):
    # The -BUSY text the proxy gives is Redis's own.
    proxy = clean
    with ConfigOverride(proxy, busy_reply_threshold="200"):
        o_loop = oracle.connect()
        o_conf = oracle.connect()
        p_loop = proxy.connect()
        try:
            assert o_conf.call("CONFIG", "SET", "busy-reply-threshold", "200") == b"+OK\r\n"
            o_loop.send(encode_command("EVAL", LOOP, 1, "bz"))
            p_loop.send(encode_command("EVAL", LOOP, 1, "bz"))
            assert wait_busy(proxy)
            time.sleep(0.4)
            with oracle.connect() as oc, proxy.connect() as pc:
                o = oc.call("GET", "bz")
                p = pc.call("GET", "bz")
                assert o.startswith(b"-BUSY"), o
                assert p == o
                assert oc.call("SCRIPT", "KILL") == pc.call("SCRIPT", "KILL") == b"+OK\r\n"
            o = o_loop.read_reply(timeout=10)
            p = p_loop.read_reply(timeout=10)
            assert p == o, (o, p)
        finally:
            o_conf.call("CONFIG", "SET", "busy-reply-threshold", "5000")
            for c in (o_loop, o_conf, p_loop):
                c.close()


# ---------------------------------------------------------------------------
# memory limit, deep recursion, huge replies

def lua_live_kb(conn):
    r = conn.call("EVAL", "collectgarbage('collect') return collectgarbage('count')", 0)
    return int(parse_reply(r))


def test_finished_runs_leave_no_lua_memory(clean):
    # Each run's environment must become garbage once the run is over.
    with clean.connect() as c:
        for body in ("return 1", "return redis.call('incr', KEYS[1])", "return _G.KEYS[1]",
                     "local t = setmetatable({}, {__index=function() return 1 end}) return t.x"):
            before = lua_live_kb(c)
            c.send(encode_command("EVAL", body, 1, "leak:k") * 3000)
            for r in c.read_replies(3000):
                assert not r.startswith(b"-"), r
            after = lua_live_kb(c)
            assert after - before < 300, (body, before, after)


def test_memory_bomb_fails_cleanly(clean):
    proxy = clean
    with ConfigOverride(proxy, lua_memory_limit="8mb"):
        with proxy.connect() as c:
            r = c.call("EVAL", "local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 64) .. i end "
                       "return #t", 0, timeout=60)
            assert r.startswith(b"-"), r[:200]
            r = c.call("EVAL", "local s = 'x' for i = 1, 40 do s = s .. s end return #s", 0,
                       timeout=60)
            assert r.startswith(b"-"), r[:200]
            # the engine and the proxy go on
            assert c.call("PING") == b"+PONG\r\n"
            r = c.call("EVAL", "return redis.call('incr', KEYS[1])", 1, "after")
            assert r == b":1\r\n", r
            assert c.call("EVAL", "local t = {} for i = 1, 1000 do t[i] = i end return #t",
                          0) == b":1000\r\n"


def test_deep_recursion_fails_cleanly(clean):
    with ConfigOverride(clean, lua_memory_limit="8mb"):
        with clean.connect() as c:
            r = c.call("EVAL", "local function r(n) return r(n + 1) + 1 end return r(1)", 0,
                       timeout=60)
            assert r.startswith(b"-ERR "), r[:200]
            assert b"stack overflow" in r or b"memory" in r, r[:300]
            r = c.call("EVAL", "local function r(n) if n == 0 then return 0 end "
                       "return 1 + r(n - 1) end return r(150)", 0)
            assert r == b":150\r\n"
            assert c.call("PING") == b"+PONG\r\n"


def test_huge_reply_works_or_fails_cleanly(clean):
    with clean.connect() as c:
        r = c.call("EVAL", "local t = {} for i = 1, 1e6 do t[i] = i end return t", 0,
                   timeout=120)
        if r.startswith(b"-"):
            assert b"\r\n" == r[-2:] and r.count(b"\r\n") == 1, r[:200]
        else:
            assert r.startswith(b"*1000000\r\n:1\r\n:2\r\n"), r[:40]
            assert r.endswith(b":999999\r\n:1000000\r\n")
            assert r.count(b"\r\n") == 1000001
        assert c.call("PING") == b"+PONG\r\n"


def test_error_table_without_err_field(clean):
    # Redis 7.0.15 itself crashes on this (so it is not in the differential
    # suite); the proxy must answer with an error and carry on.
    with clean.connect() as c:
        r = c.call("EVAL", "error({foo='bar'})", 0)
        assert r.startswith(b"-") and r.endswith(b"\r\n") and r.count(b"\r\n") == 1, r
        r = c.call("EVAL", "error(setmetatable({}, {__tostring=function() return 'm' end}))", 0)
        assert r.startswith(b"-") and r.count(b"\r\n") == 1, r
        assert c.call("PING") == b"+PONG\r\n"


# ---------------------------------------------------------------------------
# undeclared keys

# Holds KEYS[1], spins so that both scripts hold their declared key, then
# reads the other's key (undeclared) before writing anything.
CROSS = NOW + """
local t0 = now()
while now() - t0 < 0.4 do end
local other = redis.call('get', ARGV[1]) or 'none'
redis.call('incr', KEYS[1])
return other
"""


def test_undeclared_key_locked_on_touch(clean):
    with clean.connect() as c:
        assert c.call("SET", "ud:b", "bee") == b"+OK\r\n"
        r = c.call("EVAL", "redis.call('set', 'ud:c', 'sea') "
                   "return {redis.call('get', 'ud:b'), redis.call('get', KEYS[1])}", 1, "ud:a")
        assert parse_reply(r) == [b"bee", None] or parse_reply(r) == [b"bee"], r
        assert c.call("GET", "ud:c") == b"$3\r\nsea\r\n"


def test_crossing_undeclared_keys_rerun_transparently(clean):
    proxy = clean
    with proxy.connect() as c:
        before = int(info_fields(c).get("scripts_rerun", "0"))
    results = {}

    def run(me, other):
        with proxy.connect() as c:
            results[me] = c.call("EVAL", CROSS, 1, me, other, timeout=30)

    t1 = threading.Thread(target=run, args=("x:1", "x:2"))
    t2 = threading.Thread(target=run, args=("x:2", "x:1"))
    t1.start()
    time.sleep(0.05)
    t2.start()
    t1.join(30)
    t2.join(30)
    assert set(results) == {"x:1", "x:2"}
    # one of them ran first and saw 'none'; the other (re-run after it) saw 1
    got = sorted(results.values())
    assert got == [b"$1\r\n1\r\n", b"$4\r\nnone\r\n"], results
    with proxy.connect() as c:
        assert parse_reply(c.call("MGET", "x:1", "x:2")) == [b"1", b"1"]
        after = int(info_fields(c).get("scripts_rerun", "0"))
    assert after >= before + 1


def test_undeclared_keys_error_mode(clean):
    with ConfigOverride(clean, lua_undeclared_keys="error"):
        with clean.connect() as c:
            r = c.call("EVAL", "return redis.call('get', 'not:declared')", 0)
            assert r.startswith(b"-ERR ") and b"not:declared" in r and b"KEYS" in r, r
            r = c.call("EVAL", "return redis.pcall('set', 'nd:x', '1').err", 1, "nd:y")
            assert b"nd:x" in r, r
            assert c.call("EXISTS", "nd:x") == b":0\r\n"
            # declared keys still work
            assert c.call("EVAL", "return redis.call('incr', KEYS[1])", 1, "nd:y") == b":1\r\n"


# ---------------------------------------------------------------------------
# a client that goes away mid-script

def test_client_disconnect_mid_script(clean):
    proxy = clean
    # spins on the CPU, then writes
    body = (NOW + "local t0 = now() while now() - t0 < 0.5 do end "
            "redis.call('set', KEYS[1], ARGV[1]) "
            "redis.call('rpush', KEYS[2], ARGV[1]) return 1")
    for i in range(5):
        s = socket.create_connection((proxy.host, proxy.port))
        s.sendall(encode_command("EVAL", body, 2, "dc:k%d" % i, "{dc%d}:list" % i, "v%d" % i))
        time.sleep(0.05)
        s.close()
    # goes away while the script waits on its redis.calls
    s = socket.create_connection((proxy.host, proxy.port))
    s.sendall(encode_command("EVAL", "for i = 1, 300 do redis.call('incr', KEYS[1]) end return 1",
                             1, "dc:n"))
    s.close()
    deadline = time.monotonic() + 15
    with proxy.connect() as c:
        while time.monotonic() < deadline:
            vals = parse_reply(c.call("MGET", *["dc:k%d" % i for i in range(5)] + ["dc:n"]))
            if all(vals[:5]) and vals[5] == b"300":
                break
            time.sleep(0.1)
        assert vals == [b"v%d" % i for i in range(5)] + [b"300"], vals
        for i in range(5):
            assert parse_reply(c.call("LRANGE", "{dc%d}:list" % i, 0, -1)) == [b"v%d" % i]
    assert_no_lock_leak(proxy)


def test_client_disconnect_while_script_waits_for_lock(clean):
    proxy = clean
    body = (NOW + "local t0 = now() while now() - t0 < 0.5 do end "
            "redis.call('set', KEYS[1], ARGV[1]) return 1")
    with proxy.connect() as first:
        first.send(encode_command("EVAL", body, 1, "dq:k", "first"))
        time.sleep(0.1)
        s = socket.create_connection((proxy.host, proxy.port))
        s.sendall(encode_command("EVAL", body, 1, "dq:k", "second"))
        time.sleep(0.1)
        s.close()
        assert first.read_reply() == b":1\r\n"
    assert_no_lock_leak(proxy)
    with proxy.connect() as c:
        deadline = time.monotonic() + 5
        while c.call("GET", "dq:k") != b"$6\r\nsecond\r\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.call("GET", "dq:k") == b"$6\r\nsecond\r\n"


# ---------------------------------------------------------------------------
# the store is down

@pytest.fixture
def lonely_proxy(workdir, proxy):
    """A proxy of its own, with a store of its own that the test can kill."""
    if not isinstance(proxy, harness.ProxyProcess):
        pytest.skip("needs the proxy process")
    tag = "down%d" % os.getpid()
    st = harness.RedisServer("store-down", str(workdir / (tag + "-store")),
                             rename_scripting=True)
    st.start()
    p = harness.ProxyProcess(proxy.binary, st, str(workdir / (tag + "-proxy")))
    p.start()
    yield st, p
    status = p.stop()
    st.stop()
    report = p.sanitizer_report()
    assert not report, report
    assert status in (0, -15), status


def test_eval_with_store_down(lonely_proxy):
    store, proxy = lonely_proxy
    with proxy.connect() as c:
        assert c.call("EVAL", "return redis.call('set', KEYS[1], 'v')", 1, "k") == b"+OK\r\n"
        store.kill()
        for _ in range(3):
            t0 = time.monotonic()
            r = c.call("EVAL", "return redis.call('get', KEYS[1])", 1, "k", timeout=15)
            assert time.monotonic() - t0 < 12
            assert r.startswith(b"-"), r
            assert b"script:" in r or b"ERR" in r, r
        r = c.call("EVAL", "local ok = redis.pcall('get', KEYS[1]) return type(ok)", 1, "k",
                   timeout=15)
        assert r == b"$5\r\ntable\r\n", r
        # a script with no redis.call needs no store
        assert c.call("EVAL", "return 40 + 2", 0, timeout=15) == b":42\r\n"
        assert c.call("PING") == b"+PONG\r\n"
    assert_no_lock_leak(proxy)


# ---------------------------------------------------------------------------
# shutting down while scripts run

def _sigterm_during(workdir, proxy, name, body):
    st = harness.RedisServer("store-" + name, str(workdir / (name + "-store")),
                             rename_scripting=True)
    st.start()
    p = harness.ProxyProcess(proxy.binary, st, str(workdir / (name + "-proxy")))
    try:
        p.start()
        c = p.connect()
        c.send(encode_command("EVAL", body, 1, "k"))
        time.sleep(0.5)
        status = p.stop()
        c.close()
        return status, p.sanitizer_report()
    finally:
        p.stop()
        st.stop()


SAN_BUILD = "/san/" in os.environ.get("EVALPROXY_BIN", "")


def test_sigterm_while_script_waits_for_store(workdir, real_proxy):
    status, report = _sigterm_during(workdir, real_proxy, "term-wait%d" % os.getpid(),
                                     "while true do redis.call('incr', KEYS[1]) end")
    assert status in (0, -15) and not report, (status, report[:3000])


def test_sigterm_while_script_loops(workdir, real_proxy):
    status, report = _sigterm_during(workdir, real_proxy, "term-loop%d" % os.getpid(),
                                     "while true do end")
    assert status in (0, -15) and not report, (status, report[:3000])
