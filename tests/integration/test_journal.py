"""The undo journal: scripts caught in a lock cycle over undeclared keys are
undone and re-run, never failed; with rollback on, a script that errors, is
killed or loses its store after writing leaves nothing behind.

Each store (a redis-server without scripting, and memcached) gets its own
proxy, started by this module on free loopback ports.

JOURNAL_STRESS_SECONDS   length of the conserved-total runs (default 60;
                         `make test` sets a shorter one)
"""

import os
import shutil
import threading
import time

import pytest

import harness
from test_memcached import Memcached, MEMCACHED

STRESS_SECONDS = float(os.environ.get("JOURNAL_STRESS_SECONDS", "60"))

# Decrements one key, spins long enough for the other client to start, then
# increments the other: two clients with the keys swapped wait for each
# other's undeclared key after both have written.
SWAP_SCRIPT = (
    "redis.call('decrby',ARGV[1],10) local i=0 while i<3000000 do i=i+1 end "
    "redis.call('incrby',ARGV[2],10) return 'done'")


def proxy_binary():
    return os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))


def check_proxy_exit(proxy):
    status = proxy.stop()
    report = proxy.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report
    assert status in (0, -15), "proxy exit status %s\n%s" % (status, proxy.diagnostics())


class Env:
    def __init__(self, kind, store, proxy):
        self.kind, self.store, self.proxy = kind, store, proxy

    def conn(self, **kw):
        return self.proxy.connect(**kw)

    def call(self, *args):
        with self.conn() as c:
            return harness.parse_reply(c.call(*args))

    def info(self, section="scripting"):
        with self.conn() as c:
            return harness.info_fields(c, section)


def start_proxy(work, backend_url, store, extra=()):
    proxy = harness.ProxyProcess(proxy_binary(), store, str(work / "proxy"), extra_args=extra)
    i = proxy.args.index("--backend")
    proxy.args[i + 1] = backend_url
    proxy.start()
    return proxy


@pytest.fixture(scope="module")
def redis_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("journal-redis")
    store = harness.RedisServer("store", str(work / "store"), rename_scripting=True).start()
    proxy = start_proxy(work, "redis://%s:%d" % (store.host, store.port), store)
    yield Env("redis", store, proxy)
    check_proxy_exit(proxy)
    store.stop()


@pytest.fixture(scope="module")
def memcached_env(tmp_path_factory):
    if not os.path.exists(MEMCACHED):
        pytest.skip("memcached is not installed")
    work = tmp_path_factory.mktemp("journal-mc")
    mc = Memcached().start()
    proxy = start_proxy(work, "memcached://%s:%d" % (mc.host, mc.port), mc)
    yield Env("memcached", mc, proxy)
    check_proxy_exit(proxy)
    mc.stop()


@pytest.fixture(params=["redis", "memcached"])
def env(request):
    e = request.getfixturevalue(request.param + "_env")
    assert e.proxy.alive(), e.proxy.diagnostics()
    with e.conn() as c:
        c.call("FLUSHALL")
        c.call("CONFIG", "SET", "lua-rollback-on-error", "no")
    return e


def run_parallel(fns, timeout=120):
    results = [None] * len(fns)
    errors = []

    def wrap(i, fn):
        try:
            results[i] = fn()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a client did not finish within %ss" % timeout
    if errors:
        raise errors[0]
    return results


# ---- deadlock victims are undone and re-run ----------------------------------

def test_swapped_keys_both_done(env):
    """The issue's example: both clients get `done` and the values stay
    100/100 (before: one got "declare it in KEYS" and kept half its writes)."""
    env.call("MSET", "dl:x", "100", "dl:y", "100")
    sha = env.call("SCRIPT", "LOAD", SWAP_SCRIPT)

    def client(a, b):
        def go():
            with env.conn(timeout=60) as c:
                return harness.parse_reply(c.call("EVALSHA", sha, "0", a, b))
        return go

    for _ in range(3):
        results = run_parallel([client("dl:x", "dl:y"), client("dl:y", "dl:x")])
        assert results == [b"done", b"done"], results
        assert env.call("MGET", "dl:x", "dl:y") == [b"100", b"100"]
    info = env.info()
    assert int(info.get("scripts_deadlock_errors", 0)) == 0, info
    assert int(info["scripts_undone"]) >= 1, info
    assert int(info["scripts_rerun_after_undo"]) >= 1, info


# ---- undo exactness (lua-rollback-on-error) -------------------------------------

# Writes ARGV[1] times over every kind of key, then fails.
REDIS_WRITER = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local k = i % 9
  if k == 0 then redis.call('set', KEYS[1], 'v' .. i)
  elseif k == 1 then redis.call('rpush', KEYS[2], i)
  elseif k == 2 then redis.call('hset', KEYS[3], 'f' .. i, i)
  elseif k == 3 then redis.call('sadd', KEYS[4], i)
  elseif k == 4 then redis.call('zadd', KEYS[5], i, 'm' .. i)
  elseif k == 5 then redis.call('xadd', KEYS[6], '*', 'f', i)
  elseif k == 6 then redis.call('pexpire', KEYS[7], 999999 + i)
  elseif k == 7 then redis.call('set', KEYS[8], i)
  else redis.call('del', KEYS[9]) end
end
return redis.call('incr', KEYS[3])
"""
REDIS_KEYS = ["ex:s", "ex:l", "ex:h", "ex:set", "ex:z", "ex:x", "ex:ttl", "ex:new", "ex:gone"]

# The same for memcached's string keys.
MC_WRITER = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local k = i % 6
  if k == 0 then redis.call('set', KEYS[1], 'v' .. i)
  elseif k == 1 then redis.call('append', KEYS[2], 'x')
  elseif k == 2 then redis.call('incrby', KEYS[3], i)
  elseif k == 3 then redis.call('expire', KEYS[4], 5000 + i)
  elseif k == 4 then redis.call('set', KEYS[5], i)
  else redis.call('del', KEYS[6]) end
end
return redis.call('lpush', KEYS[1], 'x')
"""
MC_KEYS = ["ex:s", "ex:a", "ex:n", "ex:ttl", "ex:new", "ex:gone"]


def fill(env):
    with env.conn() as c:
        if env.kind == "redis":
            c.call("SET", "ex:s", "start")
            c.call("RPUSH", "ex:l", "a", "b", "c")
            c.call("HSET", "ex:h", "a", "1", "b", "2")
            c.call("SADD", "ex:set", "x", "y")
            c.call("ZADD", "ex:z", "1", "one", "2", "two")
            c.call("XADD", "ex:x", "1-1", "f", "v")
            c.call("SET", "ex:ttl", "t", "PX", "500000")
            c.call("SET", "ex:gone", "here", "EX", "1000")
        else:
            c.call("SET", "ex:s", "start")
            c.call("SET", "ex:a", "abc")
            c.call("SET", "ex:n", "10")
            c.call("SET", "ex:ttl", "t", "EX", "500")
            c.call("SET", "ex:gone", "here", "EX", "1000")


def snapshot(env, keys):
    """What each key is (DUMP on redis, the value on memcached) and its TTL."""
    out = {}
    if env.kind == "redis":
        with env.store.connect() as c:
            for k in keys:
                v = harness.parse_reply(c.call("DUMP", k))
                if harness.parse_reply(c.call("OBJECT", "ENCODING", k)) == b"hashtable":
                    # A hash table's DUMP lists members in bucket order, which
                    # depends on the order they were added: compare the members.
                    if harness.parse_reply(c.call("TYPE", k)) == b"set":
                        v = ("set", sorted(harness.parse_reply(c.call("SMEMBERS", k))))
                    else:
                        flat = harness.parse_reply(c.call("HGETALL", k))
                        v = ("hash", sorted(zip(flat[::2], flat[1::2])))
                out[k] = (v, harness.parse_reply(c.call("PTTL", k)))
    else:
        with env.conn() as c:
            for k in keys:
                out[k] = (harness.parse_reply(c.call("GET", k)), harness.parse_reply(c.call("TTL", k)))
    return out


def same_snapshot(before, after, ttl_slack):
    for k in before:
        (v0, t0), (v1, t1) = before[k], after[k]
        assert v0 == v1, "key %s changed: %r -> %r" % (k, v0, v1)
        if t0 < 0:
            assert t1 == t0, "key %s TTL %s -> %s" % (k, t0, t1)
        else:
            assert 0 <= t0 - t1 <= ttl_slack, "key %s TTL %s -> %s" % (k, t0, t1)


@pytest.mark.parametrize("writes", [1, 10, 1000])
def test_rollback_restores_every_key_exactly(env, writes):
    """With lua-rollback-on-error yes, a script that fails after 1, 10 or
    1000 writes over strings, lists, hashes, sets, sorted sets, streams and
    keys with TTLs leaves every key as it was (DUMP and PTTL compared)."""
    keys, script = (REDIS_KEYS, REDIS_WRITER) if env.kind == "redis" else (MC_KEYS, MC_WRITER)
    fill(env)
    before = snapshot(env, keys)
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    assert env.call("CONFIG", "GET", "lua-rollback-on-error") == [b"lua-rollback-on-error", b"yes"]
    r = env.call("EVAL", script, str(len(keys)), *keys, str(writes))
    assert isinstance(r, tuple) and r[0] == "ERR", r
    assert b"WRONGTYPE" in r[1] or b"wrong kind" in r[1] or b"not supported" in r[1], r
    after = snapshot(env, keys)
    same_snapshot(before, after, ttl_slack=30000 if env.kind == "redis" else 30)
    assert int(env.info()["scripts_undone"]) >= 1


def test_rollback_off_keeps_writes_as_redis(env):
    """Without rollback (the default) a failed script's writes stay, as in Redis."""
    keys, script = (REDIS_KEYS, REDIS_WRITER) if env.kind == "redis" else (MC_KEYS, MC_WRITER)
    fill(env)
    r = env.call("EVAL", script, str(len(keys)), *keys, "10")
    assert isinstance(r, tuple) and r[0] == "ERR", r
    assert env.call("GET", keys[0]) == (b"v9" if env.kind == "redis" else b"v6")


def test_atomic_flag_rolls_back_one_script(env):
    """`#!lua flags=atomic` asks for the rollback per script."""
    keys, script = (REDIS_KEYS, REDIS_WRITER) if env.kind == "redis" else (MC_KEYS, MC_WRITER)
    fill(env)
    before = snapshot(env, keys)
    r = env.call("EVAL", "#!lua flags=atomic\n" + script, str(len(keys)), *keys, "10")
    assert isinstance(r, tuple) and r[0] == "ERR", r
    same_snapshot(before, snapshot(env, keys), ttl_slack=30000 if env.kind == "redis" else 30)
    # and a plain error() after writes, from a function with the flag
    lib = ("#!lua name=jlib\nredis.register_function{function_name='jfail', flags={'atomic'}, "
           "callback=function(keys, args) redis.call('set', keys[1], 'changed') error('boom') end}")
    assert env.call("FUNCTION", "LOAD", "REPLACE", lib) == b"jlib"
    r = env.call("FCALL", "jfail", "1", keys[0])
    assert isinstance(r, tuple) and b"boom" in r[1], r
    assert env.call("GET", keys[0]) == b"start"


def test_reader_never_sees_partial_state(env):
    """A reader polling the keys while scripts fail after 1000 writes never
    sees one of their writes."""
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    keys = ["pr:%d" % i for i in range(8)]
    env.call("MSET", *[x for k in keys for x in (k, "0")])
    script = ("for i = 1, 1000 do redis.call('incr', KEYS[(i % #KEYS) + 1]) end "
              "return redis.call('lpush', KEYS[1], 'x')")
    stop = threading.Event()
    seen = []

    def reader():
        with env.conn(timeout=60) as c:
            while not stop.is_set():
                v = harness.parse_reply(c.call("MGET", *keys))
                if v != [b"0"] * len(keys):
                    seen.append(v)

    def writer():
        with env.conn(timeout=60) as c:
            for _ in range(10):
                r = harness.parse_reply(c.call("EVAL", script, str(len(keys)), *keys))
                assert isinstance(r, tuple), r
        stop.set()

    run_parallel([reader, writer])
    assert not seen, seen[:3]


# ---- SCRIPT KILL -------------------------------------------------------------

SPIN_WRITER = ("redis.call('set', KEYS[1], 'changed') local i, n = 0, tonumber(ARGV[1]) "
               "while i < n do i = i + 1 end return 'finished'")


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


@pytest.mark.parametrize("rollback", ["yes", "no"])
def test_script_kill_of_writing_script(env, rollback):
    """With rollback on, SCRIPT KILL stops a script that has written by
    undoing it (OK; its client gets Redis's killed-script error); with it
    off, -UNKILLABLE as in Redis."""
    env.call("CONFIG", "SET", "lua-rollback-on-error", rollback)
    env.call("CONFIG", "SET", "busy-reply-threshold", "100")
    try:
        env.call("SET", "kill:k", "orig")
        out = []

        def runner():
            with env.conn(timeout=60) as c:
                out.append(harness.parse_reply(c.call("EVAL", SPIN_WRITER, "1", "kill:k",
                                                          "1e12" if rollback == "yes" else "2e7")))

        t = threading.Thread(target=runner)
        t.start()
        wait_for(lambda: int(env.info().get("scripts_busy", 0)) >= 1, what="a busy script")
        r = env.call("SCRIPT", "KILL")
        t.join(60)
        assert not t.is_alive()
        if rollback == "yes":
            assert r == b"OK", r
            assert isinstance(out[0], tuple) and out[0][1].startswith(b"ERR Script killed by user with SCRIPT KILL"), out
            assert env.call("GET", "kill:k") == b"orig"
        else:
            assert isinstance(r, tuple) and r[1].startswith(b"UNKILLABLE"), r
            assert out == [b"finished"]
            assert env.call("GET", "kill:k") == b"changed"
    finally:
        env.call("CONFIG", "SET", "busy-reply-threshold", "5000")


def test_function_kill_of_writing_function(env):
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    env.call("CONFIG", "SET", "busy-reply-threshold", "100")
    try:
        lib = ("#!lua name=jspin\nredis.register_function('jspin', function(keys, args) "
               "redis.call('set', keys[1], 'changed') while true do end end)")
        assert env.call("FUNCTION", "LOAD", "REPLACE", lib) == b"jspin"
        env.call("SET", "fk:k", "orig")
        out = []

        def runner():
            with env.conn(timeout=60) as c:
                out.append(harness.parse_reply(c.call("FCALL", "jspin", "1", "fk:k")))

        t = threading.Thread(target=runner)
        t.start()
        wait_for(lambda: int(env.info().get("scripts_busy", 0)) >= 1, what="a busy function")
        assert env.call("FUNCTION", "KILL") == b"OK"
        t.join(60)
        assert not t.is_alive()
        assert isinstance(out[0], tuple) and out[0][1].startswith(b"ERR Script killed by user with"), out
        assert env.call("GET", "fk:k") == b"orig"
    finally:
        env.call("CONFIG", "SET", "busy-reply-threshold", "5000")


# ---- conserved total under load --------------------------------------------------

ACCOUNTS = ["acct:%d" % i for i in range(20)]
TOTAL = 1000 * len(ACCOUNTS)
TRANSFER = ("local amt = tonumber(ARGV[3]) redis.call('decrby', ARGV[1], amt) "
            "local i = 0 local n = tonumber(ARGV[4]) while i < n do i = i + 1 end "
            "redis.call('incrby', ARGV[2], amt) return 'ok'")
TRANSFER_DECLARED = ("local amt = tonumber(ARGV[1]) redis.call('decrby', KEYS[1], amt) "
                     "redis.call('incrby', KEYS[2], amt) return 'ok'")


def test_conserved_total(env):
    """50 clients move amounts between accounts: scripts with undeclared keys
    in both orders, scripts with declared keys, MULTI/WATCH transactions, and
    plain MGETs that check the total. No reader ever sees a total other than
    the start's, and no script fails."""
    import random
    env.call("MSET", *[x for a in ACCOUNTS for x in (a, "1000")])
    sha = env.call("SCRIPT", "LOAD", TRANSFER)
    sha_declared = env.call("SCRIPT", "LOAD", TRANSFER_DECLARED)
    deadline = time.monotonic() + STRESS_SECONDS
    violations, errors, counts = [], [], {"script": 0, "declared": 0, "multi": 0, "read": 0}
    lock = threading.Lock()

    def client(seed):
        def go():
            rng = random.Random(seed)
            with env.conn(timeout=120) as c:
                while time.monotonic() < deadline:
                    a, b = rng.sample(ACCOUNTS, 2)
                    amt = str(rng.randint(1, 50))
                    kind = rng.random()
                    if kind < 0.45:
                        r = harness.parse_reply(c.call("EVALSHA", sha, "0", a, b, amt, str(rng.randint(0, 20000))))
                        what = "script"
                    elif kind < 0.6:
                        r = harness.parse_reply(c.call("EVALSHA", sha_declared, "2", a, b, amt))
                        what = "declared"
                    elif kind < 0.75:
                        what = "multi"
                        while True:
                            c.call("WATCH", a, b)
                            c.call("MGET", a, b)
                            c.call("MULTI")
                            c.call("DECRBY", a, amt)
                            c.call("INCRBY", b, amt)
                            r = harness.parse_reply(c.call("EXEC"))
                            if r is not None:
                                break
                        r = b"ok" if isinstance(r, list) and len(r) == 2 else r
                    else:
                        what = "read"
                        vals = harness.parse_reply(c.call("MGET", *ACCOUNTS))
                        s = sum(int(v) for v in vals)
                        r = b"ok"
                        if s != TOTAL:
                            with lock:
                                violations.append(s)
                    with lock:
                        counts[what] += 1
                        if r != b"ok":
                            errors.append((what, r))
        return go

    run_parallel([client(i) for i in range(50)], timeout=STRESS_SECONDS + 300)
    final = sum(int(v) for v in env.call("MGET", *ACCOUNTS))
    info = env.info()
    print("conserved total on %s, %ss: %s; undone %s, re-run after undo %s, violations %d, errors %d"
          % (env.kind, STRESS_SECONDS, counts, info.get("scripts_undone"), info.get("scripts_rerun_after_undo"),
             len(violations), len(errors)))
    assert not errors, errors[:5]
    assert not violations, (len(violations), violations[:5])
    assert final == TOTAL, final
    assert int(info.get("scripts_deadlock_errors", 0)) == 0, info
    assert counts["script"] and counts["multi"] and counts["read"], counts


# ---- the store fails mid-script ----------------------------------------------------

def restart_store(env):
    env.store.proc.send_signal(9)
    env.store.proc.wait(10)
    if env.kind == "redis":
        env.store.restart()
    else:
        deadline = time.monotonic() + 20
        while True:
            try:
                env.store.start()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.mark.store_restart
@pytest.mark.parametrize("rollback", ["yes", "no"])
def test_store_killed_mid_script(env, rollback):
    """The store is stopped while a script that has written waits for it,
    then killed and started again on the same port (empty). With rollback
    on, the write is undone on the new store before the locks go, and the
    error says so; with it off, the error names the key written."""
    env.call("CONFIG", "SET", "lua-rollback-on-error", rollback)
    env.call("SET", "sk:a", "old")
    script = ("redis.call('set', KEYS[1], 'new') local i = 0 while i < 30000000 do i = i + 1 end "
              "return redis.call('get', KEYS[2])")
    out = []

    def runner():
        with env.conn(timeout=120) as c:
            out.append(harness.parse_reply(c.call("EVAL", script, "2", "sk:a", "sk:b")))

    t = threading.Thread(target=runner)
    t.start()
    # Once the write is done (the key is locked meanwhile: read it from the store)...
    if env.kind == "redis":
        with env.store.connect() as s:
            wait_for(lambda: harness.parse_reply(s.call("GET", "sk:a")) == b"new", what="the script's write")
    else:
        wait_for(lambda: b"new" in env.store.raw(b"mg sk:a v\r\n"), what="the script's write")
    env.store.proc.send_signal(19)  # SIGSTOP: the GET waits for it
    time.sleep(1.0)
    restart_store(env)
    t.join(120)
    assert not t.is_alive(), "the script's client got no answer"
    r = out[0]
    assert isinstance(r, tuple), r
    if rollback == "yes":
        assert b"the script's writes were undone" in r[1], r
        wait_for(lambda: env.call("GET", "sk:a") == b"old", what="the undone key")
    else:
        assert b"the store failed" in r[1] and b"'sk:a'" in r[1], r
    # nothing stays locked
    wait_for(lambda: env.call("SET", "sk:a", "free") == b"OK", what="the key to be free")


# ---- a store without DUMP ----------------------------------------------------------

@pytest.fixture(scope="module")
def nodump_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("journal-nodump")
    store = harness.RedisServer("store", str(work / "store"), rename_scripting=True,
                                extra=['rename-command DUMP ""', 'rename-command RESTORE ""']).start()
    proxy = start_proxy(work, "redis://%s:%d" % (store.host, store.port), store)
    yield Env("redis", store, proxy)
    check_proxy_exit(proxy)
    store.stop()


def typed_snapshot(env, keys):
    """Each key read by its type's own commands, and its TTL (the store has no DUMP)."""
    out = {}
    with env.store.connect() as c:
        def q(*a):
            return harness.parse_reply(c.call(*a))
        for k in keys:
            t = q("TYPE", k)
            v = {b"string": lambda: q("GET", k), b"list": lambda: q("LRANGE", k, "0", "-1"),
                 b"hash": lambda: sorted(q("HGETALL", k)), b"set": lambda: sorted(q("SMEMBERS", k)),
                 b"zset": lambda: q("ZRANGE", k, "0", "-1", "WITHSCORES"),
                 b"stream": lambda: q("XRANGE", k, "-", "+"), b"none": lambda: None}[t]()
            out[k] = ((t, v), q("PTTL", k))
    return out


@pytest.mark.parametrize("writes", [1, 10, 1000])
def test_rollback_without_dump_uses_typed_reads(nodump_env, writes):
    """Where the store has no DUMP the journal reads each key by its type
    (in the same round trip) and writes it back the same way."""
    env = nodump_env
    env.call("FLUSHALL")
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    fill(env)
    before = typed_snapshot(env, REDIS_KEYS)
    r = env.call("EVAL", REDIS_WRITER, str(len(REDIS_KEYS)), *REDIS_KEYS, str(writes))
    assert isinstance(r, tuple) and b"WRONGTYPE" in r[1], r
    after = typed_snapshot(env, REDIS_KEYS)
    same_snapshot(before, after, ttl_slack=30000)
    info = env.info()
    assert int(info["scripts_undone"]) >= 1 and int(info["scripts_undo_failed"]) == 0, info


def test_swapped_keys_without_dump(nodump_env):
    env = nodump_env
    env.call("FLUSHALL")
    env.call("CONFIG", "SET", "lua-rollback-on-error", "no")
    env.call("MSET", "dl:x", "100", "dl:y", "100")
    sha = env.call("SCRIPT", "LOAD", SWAP_SCRIPT)

    def client(a, b):
        def go():
            with env.conn(timeout=60) as c:
                return harness.parse_reply(c.call("EVALSHA", sha, "0", a, b))
        return go

    results = run_parallel([client("dl:x", "dl:y"), client("dl:y", "dl:x")])
    assert results == [b"done", b"done"], results
    assert env.call("MGET", "dl:x", "dl:y") == [b"100", b"100"]


# ---- sweeps: other paths a script's writes can take --------------------------------

def test_rollback_inside_exec(env):
    """An EVAL inside MULTI/EXEC that fails after writing is undone before
    the transaction goes on; the commands around it stay."""
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    env.call("SET", "tx:a", "1")
    with env.conn() as c:
        assert c.call("MULTI") == b"+OK\r\n"
        c.call("SET", "tx:b", "before")
        c.call("EVAL", "redis.call('set', KEYS[1], 'changed') return redis.call('lpush', KEYS[1], 'x')", "1", "tx:a")
        c.call("SET", "tx:c", "after")
        r = harness.parse_reply(c.call("EXEC"))
    assert r[0] == b"OK" and r[2] == b"OK", r
    assert isinstance(r[1], tuple), r
    assert env.call("MGET", "tx:a", "tx:b", "tx:c") == [b"1", b"before", b"after"]


def test_rollback_of_pipelined_scripts(env):
    """lua-script-pipelining yes: scripts of one client that run while its
    next commands are read are undone each on their own."""
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    env.call("CONFIG", "SET", "lua-script-pipelining", "yes")
    try:
        ok = env.call("SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])")
        bad = env.call("SCRIPT", "LOAD", "redis.call('incr', KEYS[1]) return redis.call('lpush', KEYS[1], 'x')")
        keys = ["pl:%d" % i for i in range(20)]
        for k in keys:
            env.call("EVALSHA", ok, "1", k)  # learn: keeps to KEYS (pipelined from now on)
        with env.conn() as c:
            cmds = []
            for k in keys:
                cmds.append(harness.encode_command("EVALSHA", bad, "1", k))
                cmds.append(harness.encode_command("EVALSHA", ok, "1", k))
            c.send(b"".join(cmds))
            replies = [harness.parse_reply(x) for x in c.read_replies(len(cmds))]
        for i in range(0, len(replies), 2):
            assert isinstance(replies[i], tuple) and replies[i + 1] == 2, replies[i:i + 2]
        assert env.call("MGET", *keys) == [b"2"] * len(keys)
    finally:
        env.call("CONFIG", "SET", "lua-script-pipelining", "no")


def test_rollback_odd_keys_and_databases(env):
    """Binary and long key names, and keys in another database (SELECT inside
    the script), come back as they were."""
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    binkey = b"bin\x00\x01\r\n key"
    longkey = "L" * 400
    with env.conn() as c:
        c.call("SET", binkey, "b0")
        c.call("SET", longkey, "l0")
        c.call("SELECT", "3")
        c.call("SET", "db3:k", "d0")
        c.call("SELECT", "0")
        script = ("redis.call('set', KEYS[1], 'x') redis.call('set', KEYS[2], 'y') redis.call('select', 3) "
                  "redis.call('set', 'db3:k', 'z') redis.call('set', 'db3:new', 'z') "
                  "return redis.call('lpush', 'db3:k', 'x')")
        r = harness.parse_reply(c.call("EVAL", script, "2", binkey, longkey))
        assert isinstance(r, tuple), r
        assert harness.parse_reply(c.call("MGET", binkey, longkey)) == [b"b0", b"l0"]
        c.call("SELECT", "3")
        assert harness.parse_reply(c.call("MGET", "db3:k", "db3:new")) == [b"d0", None]


def test_victim_that_cannot_be_undone(env):
    """A script that has published cannot give way: the other member of the
    cycle does, and both finish; when neither can, one still gets the
    "declare it in KEYS" error (and keeps its writes)."""
    pub = ("redis.call('publish', 'chan', 'x') redis.call('decrby', ARGV[1], 10) "
           "local i = 0 while i < 3000000 do i = i + 1 end redis.call('incrby', ARGV[2], 10) return 'done'")
    env.call("MSET", "dl:x", "100", "dl:y", "100")
    sha_pub = env.call("SCRIPT", "LOAD", pub)
    sha = env.call("SCRIPT", "LOAD", SWAP_SCRIPT)

    def client(s, a, b):
        def go():
            with env.conn(timeout=60) as c:
                return harness.parse_reply(c.call("EVALSHA", s, "0", a, b))
        return go

    results = run_parallel([client(sha_pub, "dl:x", "dl:y"), client(sha, "dl:y", "dl:x")])
    assert results == [b"done", b"done"], results
    assert env.call("MGET", "dl:x", "dl:y") == [b"100", b"100"]
    results = run_parallel([client(sha_pub, "dl:x", "dl:y"), client(sha_pub, "dl:y", "dl:x")])
    errors = [r for r in results if isinstance(r, tuple)]
    assert len(errors) == 1 and b"declare it in KEYS" in errors[0][1], results


# ---- pushes onto long lists are journalled as pops -------------------------------

def store_dumps(env):
    with env.store.connect() as c:
        stats = harness.parse_reply(c.call("INFO", "commandstats")).decode()
    for line in stats.splitlines():
        if line.startswith("cmdstat_dump:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_pushes_undone_by_pops(redis_env):
    """LPUSH/RPUSH onto a list that has no image yet are undone by pops, so
    a long list is never DUMPed for them; a later write of another kind
    takes an image then, and undo still gives back the list exactly."""
    env = redis_env
    env.call("FLUSHALL")
    env.call("CONFIG", "SET", "lua-rollback-on-error", "yes")
    with env.conn() as c:
        for i in range(0, 20000, 1000):
            c.call("RPUSH", "big", *["e%d" % j for j in range(i, i + 1000)])
        c.call("PEXPIRE", "big", "900000")
        c.call("SET", "str", "s")
    before = snapshot(env, ["big", "str", "fresh"])
    dumps = store_dumps(env)
    only_pushes = ("redis.call('lpush', KEYS[1], 'a', 'b') redis.call('rpush', KEYS[1], 'c') "
                   "redis.call('rpush', KEYS[3], 'n1', 'n2') pcall(redis.call, 'lpush', KEYS[2], 'x') "
                   "error('boom')")
    r = env.call("EVAL", only_pushes, "3", "big", "str", "fresh")
    assert isinstance(r, tuple) and b"boom" in r[1], r
    same_snapshot(before, snapshot(env, ["big", "str", "fresh"]), ttl_slack=30000)
    assert store_dumps(env) - dumps == 3  # those of the snapshot only
    mixed = ("redis.call('lpush', KEYS[1], 'a') redis.call('lset', KEYS[1], 5, 'changed') "
             "redis.call('rpush', KEYS[1], 'z') redis.call('ltrim', KEYS[1], 0, 99) error('boom')")
    r = env.call("EVAL", mixed, "1", "big")
    assert isinstance(r, tuple) and b"boom" in r[1], r
    same_snapshot(before, snapshot(env, ["big", "str", "fresh"]), ttl_slack=30000)
