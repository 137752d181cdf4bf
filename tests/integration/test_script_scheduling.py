"""How script runs are scheduled, sliced, killed and answered: redis.call
answered without a store round trip still yields to the event loop; CPU-bound
runs share the event loop fairly with I/O; SCRIPT KILL / FUNCTION KILL stop
every busy script that has not written; the default Lua heap cap; SORT BY
<constant> on a set from a script, byte for byte against Redis."""

import itertools
import os
import threading
import time

import pytest

import harness
from harness import encode_command, parse_reply

info_fields = harness.info_fields

KILLED = b"-ERR Script killed by user with SCRIPT KILL..."
UNKILLABLE = (b"-UNKILLABLE Sorry the script already executed write commands against the dataset. "
              b"You can either wait the script termination or kill the server in a hard way using "
              b"the SHUTDOWN NOSAVE command.\r\n")
NOTBUSY = b"-NOTBUSY No scripts in execution right now.\r\n"


class ConfigOverride:
    """CONFIG SET through the proxy, restored afterwards."""

    def __init__(self, proxy, **values):
        self.proxy, self.values, self.saved = proxy, values, {}

    def __enter__(self):
        with self.proxy.connect() as c:
            for k, v in self.values.items():
                name = k.replace("_", "-")
                got = parse_reply(c.call("CONFIG", "GET", name))
                self.saved[name] = got[1]
                assert c.call("CONFIG", "SET", name, v) == b"+OK\r\n", name
        return self

    def __exit__(self, *exc):
        with self.proxy.connect() as c:
            for name, v in self.saved.items():
                assert c.call("CONFIG", "SET", name, v) == b"+OK\r\n"


def wait_idle(proxy, timeout=10.0):
    """Waits until no script runs and no lock is held; returns INFO's fields."""
    deadline = time.monotonic() + timeout
    with proxy.connect() as c:
        while True:
            f = info_fields(c)
            if (f.get("scripts_running") == "0" and f.get("lock_sets_holding") == "0"
                    and f.get("lock_sets_waiting") == "0") or time.monotonic() > deadline:
                return f
            time.sleep(0.02)


def assert_idle(proxy):
    f = wait_idle(proxy)
    assert f.get("scripts_running") == "0", f
    assert f.get("lock_sets_holding") == "0", f
    assert f.get("lock_sets_waiting") == "0", f


def busy_count(proxy):
    with proxy.connect() as c:
        return int(info_fields(c).get("scripts_busy", "0"))


def wait_busy(proxy, n=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if busy_count(proxy) >= n:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def clean(real_proxy):
    with real_proxy.connect() as c:
        assert c.call("FLUSHALL") == b"+OK\r\n"
        assert c.call("FUNCTION", "FLUSH") == b"+OK\r\n"
    yield real_proxy
    assert_idle(real_proxy)


@pytest.fixture(scope="module")
def mc_proxy(store, tmp_path_factory):
    """A proxy of its own in front of a memcached."""
    from test_memcached import MEMCACHED, Memcached
    if not os.path.exists(MEMCACHED):
        pytest.skip("memcached is not installed")
    work = tmp_path_factory.mktemp("evalproxy-sched-mc")
    mc = Memcached().start()
    binary = os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))
    proxy = harness.ProxyProcess(binary, store, str(work / "proxy"))
    i = proxy.args.index("--backend")
    proxy.args[i + 1] = "memcached://%s:%d" % (mc.host, mc.port)
    try:
        proxy.start()
    except Exception:
        mc.stop()
        raise
    yield proxy
    status = proxy.stop()
    mc.stop()
    report = proxy.sanitizer_report()
    if report:
        pytest.fail("the proxy printed a sanitizer report:\n" + report, pytrace=False)
    assert status in (0, -15), "proxy exit status %s\n%s" % (status, proxy.diagnostics())


@pytest.fixture
def mc_clean(mc_proxy):
    assert mc_proxy.alive(), mc_proxy.diagnostics()
    with mc_proxy.connect() as c:
        assert c.call("FLUSHALL") == b"+OK\r\n"
        assert c.call("FUNCTION", "FLUSH") == b"+OK\r\n"
    yield mc_proxy
    assert_idle(mc_proxy)


# ---------------------------------------------------------------------------
# redis.call answered without a store round trip, in a tight loop

# (id, body, extra setup) -- each loops forever on a call the proxy or the
# backend answers itself; `pcall` variants catch the error inside Lua.
LOCAL_LOOPS = [
    ("ping", "while true do redis.call('ping') end"),
    ("ping-arg", "while true do redis.call('ping', 'x') end"),
    ("echo", "while true do redis.call('echo', 'x') end"),
    ("select", "while true do redis.call('select', 0) end"),
    ("select-bad", "while true do redis.pcall('select', 99999) end"),
    ("unknown", "while true do redis.pcall('nosuchcommand') end"),
    ("arity", "while true do redis.pcall('get') end"),
    ("noscript", "while true do redis.pcall('eval', 'return 1', 0) end"),
    ("noscript-multi", "while true do redis.pcall('multi') end"),
    ("block", "while true do redis.pcall('xread', 'BLOCK', '0', 'STREAMS', 's', '0') end"),
    ("pcall-ping", "while true do pcall(redis.call, 'ping') end"),
    ("pcall-unknown", "while true do pcall(redis.call, 'nosuchcommand') end"),
    ("pcall-arity", "while true do pcall(redis.call, 'set', 'k') end"),
    ("no-args", "while true do pcall(redis.call) end"),
    ("bad-arg", "while true do pcall(redis.call, 'get', {}) end"),
    ("acl-check", "while true do redis.acl_check_cmd('get', 'k') end"),
    ("log", "while true do redis.log(redis.LOG_DEBUG, 'x') end"),
    ("time", "while true do redis.call('time') end"),
]
# Answered by the memcached backend itself, without a request to memcached.
MC_LOCAL_LOOPS = [
    ("unsupported", "while true do redis.pcall('lrange', KEYS[1], 0, -1) end"),
    ("unsupported-sort-ro", "while true do redis.pcall('sort_ro', KEYS[1]) end"),
    ("backend-arity", "while true do redis.pcall('ping', 'a', 'b') end"),
    ("backend-not-int", "while true do redis.pcall('getrange', KEYS[1], 'a', 'b') end"),
    ("backend-cursor", "while true do redis.pcall('scan', 'x') end"),
    ("backend-syntax", "while true do redis.pcall('scan', '0', 'match') end"),
    ("echo-pcall", "while true do pcall(redis.call, 'echo', 'x') end"),
]


_rounds = itertools.count()


def others_are_served(proxy, rounds=10, limit=2.0):
    """Other clients get their replies promptly while a script loops."""
    n = "other:n:%d" % next(_rounds)
    with proxy.connect(timeout=limit) as c:
        for i in range(rounds):
            t0 = time.monotonic()
            assert c.call("PING") == b"+PONG\r\n"
            assert c.call("SET", "other:%d" % i, i) == b"+OK\r\n"
            assert c.call("GET", "other:%d" % i) == b"$%d\r\n%d\r\n" % (len(str(i)), i)
            assert c.call("EVAL", "return redis.call('incr', KEYS[1])", 1, n) == b":%d\r\n" % (i + 1)
            took = time.monotonic() - t0
            assert took < limit, "one round took %.2fs beside the looping script" % took


def kill_until(proxy, command, expect=b"+OK\r\n", timeout=10.0):
    """Sends SCRIPT KILL (or FUNCTION KILL) until the script is busy enough
    to be killed; returns the last reply."""
    deadline = time.monotonic() + timeout
    with proxy.connect(timeout=5) as c:
        while True:
            r = c.call(*command.split())
            if r == expect or time.monotonic() > deadline:
                return r
            time.sleep(0.02)


def loop_then_kill(proxy, body, eval_cmd="EVAL", keys=("loop:key",), conn=None):
    looper = conn or proxy.connect()
    try:
        looper.send(encode_command(eval_cmd, body, len(keys), *keys))
        time.sleep(0.05)
        others_are_served(proxy)
        assert kill_until(proxy, "SCRIPT KILL") == b"+OK\r\n"
        r = looper.read_reply(timeout=5)
        assert r.startswith(KILLED), r
        assert looper.call("PING") == b"+PONG\r\n"
    finally:
        looper.close()


@pytest.mark.parametrize("body", [b for _, b in LOCAL_LOOPS], ids=[i for i, _ in LOCAL_LOOPS])
def test_local_answers_yield_redis_store(clean, body):
    with ConfigOverride(clean, busy_reply_threshold="100"):
        loop_then_kill(clean, body)


@pytest.mark.parametrize("body", [b for _, b in LOCAL_LOOPS + MC_LOCAL_LOOPS],
                         ids=[i for i, _ in LOCAL_LOOPS + MC_LOCAL_LOOPS])
def test_local_answers_yield_memcached(mc_clean, body):
    with ConfigOverride(mc_clean, busy_reply_threshold="100"):
        loop_then_kill(mc_clean, body)


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_refused_by_proxy_loops_yield(request, backend):
    """Calls the proxy refuses for the script's own reasons: a read-only
    script writing, an undeclared key in `lua-undeclared-keys error` mode, a
    command the script's user may not run."""
    proxy = request.getfixturevalue("clean" if backend == "redis" else "mc_clean")
    with ConfigOverride(proxy, busy_reply_threshold="100"):
        loop_then_kill(proxy, "while true do redis.pcall('set', KEYS[1], 'v') end", eval_cmd="EVAL_RO")
        loop_then_kill(proxy, "while true do pcall(redis.call, 'incr', KEYS[1]) end", eval_cmd="EVAL_RO")
        with ConfigOverride(proxy, lua_undeclared_keys="error"):
            loop_then_kill(proxy, "while true do redis.pcall('get', 'undeclared') end")
        with proxy.connect() as c:
            assert c.call("ACL", "SETUSER", "looper", "on", ">pw", "+@all", "-echo", "~*", "&*") == b"+OK\r\n"
        try:
            conn = proxy.connect()
            assert conn.call("AUTH", "looper", "pw") == b"+OK\r\n"
            loop_then_kill(proxy, "while true do redis.pcall('echo', 'x') end", conn=conn)
        finally:
            with proxy.connect() as c:
                c.call("ACL", "DELUSER", "looper")


# Writes refused or answered by the memcached backend itself: the script has
# written, so it cannot be killed; it runs for a while and must let others in.
MC_LOCAL_WRITES = [
    ("set-syntax", "redis.pcall('set', KEYS[1], 'v', 'EX', 'soon')"),
    ("incrby-not-int", "redis.pcall('incrby', KEYS[1], 'many')"),
    ("expire-not-int", "redis.pcall('expire', KEYS[1], 'soon')"),
    ("setrange-negative", "redis.pcall('setrange', KEYS[1], -1, 'x')"),
    ("unsupported-write", "redis.pcall('lpush', KEYS[1], 'x')"),
    ("unsupported-sort", "redis.pcall('sort', KEYS[1], 'BY', 'nosort')"),
    ("msetnx-arity", "redis.pcall('msetnx', KEYS[1], 'v', 'k2')"),
]


@pytest.mark.parametrize("call", [c for _, c in MC_LOCAL_WRITES], ids=[i for i, _ in MC_LOCAL_WRITES])
def test_local_write_answers_yield_memcached(mc_clean, call):
    # TIME is answered by the proxy on memcached too: the loop is CPU-bound.
    body = ("local function now() local t = redis.call('time') return t[1] + t[2] / 1e6 end "
            "local t = now() while now() - t < 1.5 do %s end return 'done'" % call)
    looper = mc_clean.connect(timeout=30)
    try:
        looper.send(encode_command("EVAL", body, 1, "loop:key"))
        time.sleep(0.05)
        others_are_served(mc_clean, limit=1.0)
        assert looper.read_reply() == b"$4\r\ndone\r\n"
    finally:
        looper.close()


def test_loops_on_a_store_that_is_down_yield(store, tmp_path):
    """A store that is down answers every call at once with an error."""
    own = harness.RedisServer("own-store", str(tmp_path / "store"), rename_scripting=True).start()
    binary = os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))
    proxy = harness.ProxyProcess(binary, own, str(tmp_path / "proxy"),
                                 extra_args=["--busy-reply-threshold", "100"]).start()
    try:
        own.kill()
        with proxy.connect() as c:
            deadline = time.monotonic() + 10
            while not c.call("GET", "k").startswith(b"-ERR backend"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for body in ("while true do redis.pcall('get', KEYS[1]) end",
                     "while true do pcall(redis.call, 'echo', 'x') end"):
            looper = proxy.connect()
            try:
                looper.send(encode_command("EVAL", body, 1, "loop:key"))
                time.sleep(0.05)
                with proxy.connect(timeout=2) as c:
                    for _ in range(10):
                        assert c.call("PING") == b"+PONG\r\n"
                assert kill_until(proxy, "SCRIPT KILL") == b"+OK\r\n"
                assert looper.read_reply(timeout=5).startswith(KILLED)
            finally:
                looper.close()
    finally:
        status = proxy.stop()
        own.stop()
        assert status in (0, -15), proxy.diagnostics()
        assert not proxy.sanitizer_report(), proxy.sanitizer_report()


FN_LIB = ("#!lua name=schedlib\n"
          "redis.register_function('pingloop', function() while true do redis.call('ping') end end)\n"
          "redis.register_function('echoloop', function() while true do pcall(redis.call, 'echo', 'x') end end)\n")


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_function_local_answers_yield(request, backend):
    proxy = request.getfixturevalue("clean" if backend == "redis" else "mc_clean")
    with ConfigOverride(proxy, busy_reply_threshold="100"):
        with proxy.connect() as c:
            assert c.call("FUNCTION", "LOAD", FN_LIB) == b"$8\r\nschedlib\r\n"
        for fn in ("pingloop", "echoloop"):
            looper = proxy.connect()
            try:
                looper.send(encode_command("FCALL", fn, 0))
                time.sleep(0.05)
                others_are_served(proxy)
                assert kill_until(proxy, "FUNCTION KILL") == b"+OK\r\n"
                r = looper.read_reply(timeout=5)
                assert r.startswith(KILLED), r
            finally:
                looper.close()


# ---------------------------------------------------------------------------
# CPU-bound scripts and everyone else

SPIN = "local i = 0 while true do i = i + 1 end"


def timed_traffic(proxy, rounds=60):
    """Seconds for sequential PINGs, GETs (a store round trip each) and a
    script making 60 store calls one after another."""
    with proxy.connect(timeout=60) as c:
        t0 = time.monotonic()
        for i in range(rounds):
            assert c.call("PING") == b"+PONG\r\n"
            assert c.call("GET", "traffic:missing") == b"$-1\r\n"
        r = c.call("EVAL", "for i = 1, 60 do redis.call('incr', KEYS[1]) end return redis.call('get', KEYS[1])",
                   1, "traffic:n")
        assert r.startswith(b"$"), r
        return time.monotonic() - t0


def start_spinners(proxy, n, prefix):
    conns = []
    for i in range(n):
        c = proxy.connect()
        c.send(encode_command("EVAL", SPIN, 1, "%s:%d" % (prefix, i)))
        conns.append(c)
    return conns


def kill_all(proxy, conns):
    with ConfigOverride(proxy, busy_reply_threshold="0"):
        for c in conns:
            assert kill_until(proxy, "SCRIPT KILL") in (b"+OK\r\n", NOTBUSY)
        for c in conns:
            r = c.read_reply(timeout=10)
            assert r.startswith(KILLED), r
            c.close()


def test_cpu_bound_scripts_do_not_multiply_latency(clean):
    """With one CPU-bound script every command waits up to about one time
    slice; with six it must not wait six: CPU-bound runs share one slice per
    event-loop turn."""
    times = {}
    for n in (1, 6):
        spinners = start_spinners(clean, n, "spin%d" % n)
        try:
            time.sleep(0.1)
            times[n] = timed_traffic(clean)
        finally:
            kill_all(clean, spinners)
    # Round robin: about the same with six as with one (before: ~6x or worse).
    assert times[6] < 2.5 * times[1] + 0.3, times


def test_cpu_bound_scripts_all_progress(clean):
    """Runs that share the slice budget each get their turn: finite
    CPU-bound scripts started together all finish, close together."""
    body = "local n = 0 for i = 1, tonumber(ARGV[1]) do n = n + 1 end return n"
    conns = [clean.connect(timeout=60) for _ in range(4)]
    try:
        t0 = time.monotonic()
        for i, c in enumerate(conns):
            c.send(encode_command("EVAL", body, 1, "fair:%d" % i, 3000000))
        done = []
        for c in conns:
            assert c.read_reply() == b":3000000\r\n"
            done.append(time.monotonic() - t0)
        with clean.connect() as c:
            assert c.call("PING") == b"+PONG\r\n"
        # Each got a share all along: the first to finish is not far ahead of the last.
        assert done[0] > 0.4 * done[-1], done
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------------------
# SCRIPT KILL / FUNCTION KILL with several busy scripts

NOW = ("local function now() local t = redis.call('TIME') "
       "return tonumber(t[1]) + tonumber(t[2]) / 1e6 end\n")
WRITE_THEN_SPIN = ("redis.call('set', KEYS[1], 'written')\n" + NOW +
                   "local t0 = now()\n"
                   "while now() - t0 < tonumber(ARGV[1]) do for i = 1, 300000 do end end\n"
                   "return 'finished'")
BUSY_EVAL = (b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n")
BUSY_FUNCTION = (b"-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n")

KILL_LIB = ("#!lua name=killlib\n"
            "redis.register_function('spin', function() local i = 0 while true do i = i + 1 end end)\n"
            "redis.register_function('writespin', function(keys, args)\n" +
            WRITE_THEN_SPIN.replace("KEYS[1]", "keys[1]").replace("ARGV[1]", "args[1]") + "\nend)\n")


def test_script_kill_spares_only_scripts_that_wrote(clean):
    proxy = clean
    with ConfigOverride(proxy, busy_reply_threshold="100"):
        writer = proxy.connect(timeout=20)
        spinners = [proxy.connect() for _ in range(2)]
        try:
            writer.send(encode_command("EVAL", WRITE_THEN_SPIN, 1, "kw:written", "2.5"))
            for i, s in enumerate(spinners):
                s.send(encode_command("EVAL", SPIN, 1, "kw:spin%d" % i))
            assert wait_busy(proxy, 3), "the three scripts never became busy"
            with proxy.connect() as c:
                # The runaway read-only scripts are stopped despite the writer.
                assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
                for s in spinners:
                    r = s.read_reply(timeout=5)
                    assert r.startswith(KILLED), r
                    assert s.call("PING") == b"+PONG\r\n"
                # Only the writer is left: it cannot be killed.
                assert c.call("SCRIPT", "KILL") == UNKILLABLE
                # A new runaway beside it is killable again.
                spinners[0].send(encode_command("EVAL", SPIN, 1, "kw:spin9"))
                assert wait_busy(proxy, 2)
                assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
                assert spinners[0].read_reply(timeout=5).startswith(KILLED)
                assert c.call("SCRIPT", "KILL") == UNKILLABLE
                assert c.call("FUNCTION", "KILL") == BUSY_EVAL
            assert writer.read_reply(timeout=15) == b"$8\r\nfinished\r\n"
            with proxy.connect() as c:
                assert c.call("GET", "kw:written") == b"$7\r\nwritten\r\n"
                assert c.call("SCRIPT", "KILL") == NOTBUSY
                assert c.call("FUNCTION", "KILL") == NOTBUSY
        finally:
            for s in spinners + [writer]:
                s.close()


def test_function_kill_spares_only_functions_that_wrote(clean):
    proxy = clean
    with ConfigOverride(proxy, busy_reply_threshold="100"):
        with proxy.connect() as c:
            assert c.call("FUNCTION", "LOAD", KILL_LIB) == b"$7\r\nkilllib\r\n"
        writer = proxy.connect(timeout=20)
        spinners = [proxy.connect() for _ in range(2)]
        evaler = proxy.connect()
        try:
            writer.send(encode_command("FCALL", "writespin", 1, "fk:written", "2.5"))
            for i, s in enumerate(spinners):
                s.send(encode_command("FCALL", "spin", 1, "fk:spin%d" % i))
            assert wait_busy(proxy, 3)
            with proxy.connect() as c:
                # Only functions are busy: SCRIPT KILL refuses as Redis does.
                assert c.call("SCRIPT", "KILL") == BUSY_FUNCTION
                assert c.call("FUNCTION", "KILL") == b"+OK\r\n"
                for s in spinners:
                    r = s.read_reply(timeout=5)
                    assert r.startswith(KILLED), r
                assert c.call("FUNCTION", "KILL") == UNKILLABLE
                # A busy EVAL beside the busy function: each KILL takes its own kind.
                evaler.send(encode_command("EVAL", SPIN, 1, "fk:eval"))
                assert wait_busy(proxy, 2)
                assert c.call("FUNCTION", "KILL") == UNKILLABLE
                assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
                assert evaler.read_reply(timeout=5).startswith(KILLED)
            assert writer.read_reply(timeout=15) == b"$8\r\nfinished\r\n"
            with proxy.connect() as c:
                assert c.call("FUNCTION", "KILL") == NOTBUSY
        finally:
            for s in spinners + [writer, evaler]:
                s.close()


# ---------------------------------------------------------------------------
# SORT BY <constant> from a script, against Redis

SORT_SETUP = [
    ("SADD", "sint", 3, 1, 10, 2, 20, -5),
    ("SADD", "sstr", "b", "a", "c", "10", "2", "B", "ab", ""),
    ("SADD", "sbig") + tuple("m%03d" % ((i * 37) % 211) for i in range(211)),
    ("SADD", "sone", "x"),
    ("RPUSH", "list", "c", "a", "b", "10", "2"),
    ("ZADD", "zset", 3, "c", 1, "a", 2, "b", 0, "z"),
    ("SET", "str", "x"),
    ("MSET", "w_a", 5, "w_b", 2, "w_c", 9, "w_1", 4, "w_2", 1, "w_3", 7, "w_10", 3, "w_20", 0),
    ("HSET", "h_a", "f", "ha"), ("HSET", "h_1", "f", "h1"), ("HSET", "h_10", "f", "h10"),
]
SORT_OPTIONS = [
    ("BY", "nosort"),
    ("by", "NOSORT"),
    ("BY", ""),
    ("BY", "nosort", "DESC"),
    ("BY", "nosort", "ASC"),
    ("DESC", "BY", "nosort"),
    ("BY", "nosort", "LIMIT", 0, 2),
    ("BY", "nosort", "LIMIT", 1, 10),
    ("BY", "nosort", "LIMIT", 2, -1),
    ("BY", "nosort", "LIMIT", -1, 3),
    ("BY", "nosort", "LIMIT", 100, 3),
    ("BY", "nosort", "DESC", "LIMIT", 1, 2),
    ("LIMIT", 0, 3, "BY", "nosort"),
    ("BY", "nosort", "ALPHA"),
    ("BY", "nosort", "ALPHA", "DESC"),
    ("BY", "nosort", "GET", "#"),
    ("BY", "nosort", "GET", "w_*"),
    ("BY", "nosort", "GET", "#", "GET", "w_*", "GET", "h_*->f"),
    ("BY", "nosort", "GET", "nosuch_*", "GET", "#"),
    ("BY", "nosort", "GET", "#", "LIMIT", 0, 2, "DESC"),
    ("GET", "#", "BY", "nosort", "GET", "w_*"),
    ("BY", "w_*", "BY", "nosort"),
    ("BY", "nosort", "BY", "w_*"),
    ("BY", "nosort", "BY", "other"),
    ("BY", "w_*"),
    ("BY", "w_*", "GET", "#", "DESC"),
    ("ALPHA",),
    ("ALPHA", "DESC", "LIMIT", 0, 3),
    (),
    ("BY", "nosort", "LIMIT", "x", 1),
    ("BY", "nosort", "LIMIT", 0),
    ("BY", "nosort", "FOO"),
    ("BY",),
    ("BY", "nosort", "GET"),
    ("BY", "nosort", "STORE"),
]
SORT_KEYS = ["sint", "sstr", "sbig", "sone", "list", "zset", "nokey", "str"]
SORT_SCRIPT = "return redis.pcall(ARGV[1], KEYS[1], unpack(ARGV, 2))"


def test_sort_by_constant_in_scripts_matches_redis(diff):
    """Redis sorts a set ALPHA (dropping BY) when SORT BY <constant> comes
    from a script; lists and sorted sets keep their order."""
    steps = list(SORT_SETUP)
    for cmd in ("sort", "sort_ro"):
        for key in SORT_KEYS:
            for opts in SORT_OPTIONS:
                steps.append(("EVAL", SORT_SCRIPT, 1, key, cmd) + opts)
    diff.run(steps)
    assert len(SORT_KEYS) * len(SORT_OPTIONS) * 2 >= 500


def test_sort_by_constant_store_and_call_forms(diff):
    """STORE (the store sorts the set itself), redis.call errors, SORT_RO's
    refusal of STORE, read-only scripts and a key in another database."""
    steps = list(SORT_SETUP)
    for key in ("sint", "sstr", "list", "zset", "nokey"):
        for opts in (("BY", "nosort"), ("BY", "nosort", "DESC", "LIMIT", 0, 3), ("BY", "nosort", "GET", "#")):
            steps += [
                ("EVAL", "return redis.call('sort', KEYS[1], unpack(ARGV))", 2, key, "dst", "BY", "nosort", "STORE", "dst", *opts[2:]),
                ("LRANGE", "dst", 0, -1),
                ("EVAL", "return redis.call('sort', KEYS[1], unpack(ARGV))", 1, key, *opts),
                ("EVAL", "return redis.call('sort_ro', KEYS[1], unpack(ARGV))", 1, key, *opts),
                ("EVAL_RO", "return redis.pcall('sort_ro', KEYS[1], unpack(ARGV))", 1, key, *opts),
                ("EVAL_RO", "return redis.pcall('sort', KEYS[1], unpack(ARGV))", 1, key, *opts),
                ("EVAL", "return redis.pcall('sort_ro', KEYS[1], 'BY', 'nosort', 'STORE', 'dst')", 1, key),
            ]
    steps += [
        ("EVAL", "return redis.call('sort', KEYS[1], 'BY', 'nosort')", 1, "str"),
        ("EVAL", "redis.call('select', 3) redis.call('sadd', KEYS[1], 'b', 'a', '10', '9') "
                 "local r = redis.call('sort', KEYS[1], 'BY', 'k') redis.call('del', KEYS[1]) return r", 1, "s3"),
        # Plain commands are relayed as they are: a list keeps its order.
        ("SORT", "list", "BY", "nosort"),
        ("SORT_RO", "zset", "BY", "nosort", "DESC"),
    ]
    diff.run(steps)


def test_sort_on_memcached_still_refused(mc_clean):
    with mc_clean.connect() as c:
        for cmd in ("sort", "sort_ro"):
            r = c.call("EVAL", "return redis.pcall('%s', KEYS[1], 'BY', 'nosort')" % cmd, 1, "k")
            assert r == b"-ERR command '%s' is not supported by the memcached backend\r\n" % cmd.encode(), r
            r = c.call("EVAL", "return redis.pcall('%s', KEYS[1])" % cmd, 1, "k")
            assert r == b"-ERR command '%s' is not supported by the memcached backend\r\n" % cmd.encode(), r


# ---------------------------------------------------------------------------
# The Lua heap's default cap

def test_lua_memory_limit_default_protects_the_process(clean):
    """Without configuration a runaway script stops at the default cap (1gb)
    instead of taking the machine's memory; scripts of Redis's sizes fit."""
    with clean.connect(timeout=120) as c:
        assert parse_reply(c.call("CONFIG", "GET", "lua-memory-limit")) == [b"lua-memory-limit", b"1073741824"]
        r = c.call("EVAL", "local s = string.rep('x', 2^20) while true do s = s .. s end", 0)
        assert r.startswith(b"-ERR Error running script ") and b"not enough memory" in r, r[:300]
        assert c.call("PING") == b"+PONG\r\n"
        # A value read, doubled and returned; a table of many strings.
        assert c.call("EVAL", "redis.call('set', KEYS[1], string.rep('v', 16 * 2^20)) "
                              "local v = redis.call('get', KEYS[1]) redis.call('del', KEYS[1]) "
                              "return #(v .. v)", 1, "big") == b":33554432\r\n"
        assert c.call("EVAL", "local t = {} for i = 1, 2e5 do t[i] = 'item' .. i end return #t", 0) == b":200000\r\n"
        used = int(info_fields(c)["used_memory_lua"])
        assert used < 256 << 20, used


@pytest.mark.parametrize("cmd", [("copy", "src", "d", "DB", "1"), ("move", "d", "1")])
def test_other_database_of_a_call_is_locked(clean, cmd):
    """COPY ... DB n and MOVE from a script reach a key of another database:
    a script holding that key there is never seen half done by them."""
    holder = ("redis.call('set', KEYS[1], 'mid') local i = 0 while i < 3000000 do i = i + 1 end "
              "redis.call('del', KEYS[1]) return 1")
    body = "return redis.call(unpack(ARGV))"
    with clean.connect() as a, clean.connect() as b:
        assert b.call("SET", "src", "v") == b"+OK\r\n"
        assert b.call("SET", "d", "v") == b"+OK\r\n"
        a.call("SELECT", "1")
        a.send(encode_command("EVAL", holder, "1", "d"))
        time.sleep(0.05)  # the holder runs (and holds d in db 1) for a while
        # The target in db 1 exists only mid-script: waiting for it, COPY
        # and MOVE find it gone and succeed.
        got = b.call("EVAL", body, "0", *cmd)
        assert a.read_reply() == b":1\r\n"
        assert got == b":1\r\n", got
