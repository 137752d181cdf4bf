"""MULTI/EXEC with plain commands, scripts and functions mixed in, WATCH, and
the errors around them, compared byte for byte with redis-server 7.0 on both
stores (a redis-server without scripting, and memcached); after every case
nothing may stay locked. Also: WATCH by write versions on memcached (no
false aborts, every true conflict), the BUSY and EXECABORT texts, the inline
request limit, the memcached backend's refusal text and the single backend
directive."""

import contextlib
import os
import random
import socket
import subprocess
import threading
import time

import pytest

import harness
from harness import Differ, Step, encode_command, parse_reply
from test_memcached import MEMCACHED, Memcached

info_fields = harness.info_fields
GET_SCRIPT = "return redis.call('GET', KEYS[1])"
INCR_SCRIPT = "return redis.call('INCR', KEYS[1])"
LIB = ("#!lua name=txlib\n"
       "redis.register_function('myget', function(keys, args) return redis.call('GET', keys[1]) end)\n"
       "redis.register_function('myincr', function(keys, args) return redis.call('INCR', keys[1]) end)\n"
       "redis.register_function{function_name='myro', callback=function(keys, args) "
       "return redis.call('GET', keys[1]) end, flags={'no-writes'}}\n"
       "redis.register_function('myerr', function(keys, args) error('boom') end)\n"
       "redis.register_function('myrep', function(keys, args) return redis.error_reply('MY failed') end)\n")


def _proxy_binary():
    return os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))


def assert_idle(proxy, keys=("a", "b")):
    """Nothing holds or waits for a lock; the keys and DBSIZE answer (a held
    lock would hold them for good: the timeouts are for a loaded machine)."""
    deadline = time.monotonic() + 20
    with proxy.connect(timeout=10) as c:
        while True:
            f = info_fields(c)
            idle = (f["lock_sets_holding"] == "0" and f["lock_sets_waiting"] == "0"
                    and f["scripts_running"] == "0")
            if idle or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert idle, {k: v for k, v in f.items() if k.startswith(("lock_", "scripts_"))}
        for k in keys:
            assert c.call("TYPE", k).startswith(b"+")
        assert c.call("DBSIZE").startswith(b":")


@pytest.fixture(scope="module")
def mc_env(tmp_path_factory):
    if not os.path.exists(MEMCACHED):
        pytest.skip("memcached is not installed")
    work = tmp_path_factory.mktemp("evalproxy-txmix")
    mc = Memcached().start()
    oracle = harness.RedisServer("oracle", str(work / "oracle")).start()
    binary = _proxy_binary()
    proxy = harness.ProxyProcess(binary, oracle, str(work / "proxy"))
    proxy.args[proxy.args.index("--backend") + 1] = "memcached://%s:%d" % (mc.host, mc.port)
    try:
        proxy.start()
    except Exception:
        oracle.stop()
        mc.stop()
        raise
    yield mc, oracle, proxy
    status = proxy.stop()
    oracle.stop()
    mc.stop()
    report = proxy.sanitizer_report()
    if report:
        pytest.fail("the proxy printed a sanitizer report:\n" + report, pytrace=False)
    assert status in (0, -15), "proxy exit status %s\n%s" % (status, proxy.diagnostics())


@pytest.fixture
def mc_proxy(mc_env):
    _, oracle, proxy = mc_env
    assert proxy.alive(), proxy.diagnostics()
    Differ(oracle, proxy).flushall()
    return proxy


@pytest.fixture(scope="module")
def auth_pair(tmp_path_factory, store):
    """An oracle and a proxy with requirepass pw (set after start: the
    harness waits for +PONG)."""
    work = tmp_path_factory.mktemp("evalproxy-txauth")
    oracle = harness.RedisServer("oracle-auth", str(work / "oracle")).start()
    binary = _proxy_binary()
    proxy = harness.ProxyProcess(binary, store, str(work / "proxy"))
    try:
        proxy.start()
        for ep in (oracle, proxy):
            with ep.connect() as c:
                assert c.call("CONFIG", "SET", "requirepass", "pw") == b"+OK\r\n"
        yield Differ(oracle, proxy)
    finally:
        status = proxy.stop()
        oracle.stop()
    report = proxy.sanitizer_report()
    assert not report, report
    assert status in (0, -15), proxy.diagnostics()


# ---------------------------------------------------------------------------
# The inline request limit: Redis checks PROTO_INLINE_MAX_SIZE (64 KiB) after
# each read, and only while the buffer holds no line end.

def inline_echo(n, end=b"\r\n"):
    """An inline ECHO line of n bytes before its end."""
    return b"ECHO " + b"x" * (n - 5) + end


@pytest.mark.parametrize("n", [65534, 65535, 65536, 65537, 65538])
@pytest.mark.parametrize("end", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_inline_near_the_limit_in_one_write(diff, n, end):
    diff.run([Step(raw=inline_echo(n, end)), "PING"])


@pytest.mark.parametrize("n", [65535, 65536, 65537])
def test_inline_near_the_limit_in_many_writes(diff, n):
    # Pieces with pauses: each is a read of its own. Past 64 KiB without a
    # line end is an error; at or below it the line completes with its end.
    line = inline_echo(n, b"")
    pieces = [line[i:i + 16384] for i in range(0, len(line), 16384)]
    if n > 65536:
        diff.run([Step(raw=pieces, close=True)])
    else:
        diff.run([Step(raw=pieces + [b"\r\n"]), "PING"])


@pytest.mark.parametrize("n", [65536, 65537])
def test_inline_without_line_end(diff, n):
    line = inline_echo(n, b"")
    if n > 65536:
        diff.run([Step(raw=line, close=True)])
    else:
        # Still waited on; its end in a later read completes it.
        diff.run([Step(raw=[line, b"\r\n"]), "PING"])


def test_inline_limit_pipelined_and_multibulk(diff):
    big = inline_echo(65536)
    diff.run([Step(raw=encode_command("SET", "k", "v") + big + b"PING\r\n" + encode_command("GET", "k"),
                   replies=4)])
    # A multibulk count line of more than 64 KiB with its end in the same read.
    diff.run([Step(raw=b"*" + b"1" * 65536 + b"\r\n", close=True)])
    diff.run([Step(raw=[b"*" + b"1" * 65535, b"11"], close=True)])
    diff.run([Step(raw=b"*1\r\n$" + b"1" * 65536, close=True)])


def test_inline_near_the_limit_unauthenticated(auth_pair):
    auth_pair.run([Step(raw=inline_echo(65536)), Step(raw=inline_echo(65535, b"\n")),
                   Step(raw=inline_echo(65537, b""), close=True)])


# ---------------------------------------------------------------------------
# The memcached backend refuses what it lacks with one text, on every path.

def refusal(name):
    return b"-ERR command '%s' is not supported by the memcached backend" % name.encode()


def test_memcached_refusals_have_one_text(mc_proxy):
    with mc_proxy.connect() as c:
        c.call("FUNCTION", "LOAD", "REPLACE",
               "#!lua name=mcref\nredis.register_function('pushf', function(k) "
               "return redis.call('LPUSH', k[1], 'x') end)")
        plain = {
            ("LPUSH", "l", "a"): "lpush", ("HSET", "h", "f", "v"): "hset", ("BLPOP", "l", "0.1"): "blpop",
            ("BRPOP", "l", "0"): "brpop", ("BLMOVE", "a", "b", "LEFT", "RIGHT", "0.1"): "blmove",
            ("BRPOPLPUSH", "a", "b", "0.1"): "brpoplpush", ("BLMPOP", "0.1", "1", "l", "LEFT"): "blmpop",
            ("BZPOPMIN", "z", "0.1"): "bzpopmin", ("XREAD", "BLOCK", "10", "STREAMS", "s", "0"): "xread",
            ("XREAD", "STREAMS", "s", "0"): "xread", ("OBJECT", "ENCODING", "k"): "object",
            ("MEMORY", "USAGE", "k"): "memory", ("SWAPDB", "0", "1"): "swapdb", ("SORT", "l"): "sort",
            ("NOSUCHCOMMAND", "x"): "nosuchcommand", ("Zadd", "z", "1", "m"): "zadd",
        }
        for cmd, name in plain.items():
            assert c.call(*cmd) == refusal(name) + b"\r\n", cmd
        # Inside MULTI, run by the proxy at EXEC (a command Redis does not
        # know is refused there by Redis's own rule instead).
        del plain[("NOSUCHCOMMAND", "x")]
        assert c.call("MULTI") == b"+OK\r\n"
        for cmd in plain:
            assert c.call(*cmd) == b"+QUEUED\r\n"
        r = parse_reply(c.call("EXEC"))
        assert r == [("ERR", refusal(name)[1:]) for name in plain.values()], r
        # From scripts (Redis adds where the script failed) and pcall.
        r = c.call("EVAL", "return redis.call('LPUSH', KEYS[1], 'a')", "1", "l")
        assert r.startswith(refusal("lpush") + b" script: "), r
        r = c.call("EVAL", "return redis.pcall('HSET', KEYS[1], 'f', 'v')", "1", "h")
        assert r == refusal("hset") + b"\r\n", r
        r = c.call("EVAL", "return redis.call('OBJECT', 'ENCODING', KEYS[1])", "1", "k")
        assert r.startswith(refusal("object") + b" script: "), r
        r = c.call("FCALL", "pushf", "1", "l")
        assert r.startswith(refusal("lpush") + b" script: "), r
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("EVAL", "return redis.call('LPUSH', KEYS[1], 'a')", "1", "l") == b"+QUEUED\r\n"
        assert c.call("BLPOP", "l", "0") == b"+QUEUED\r\n"
        r = c.call("EXEC")
        assert r.startswith(b"*2\r\n" + refusal("lpush") + b" script: "), r
        assert r.endswith(refusal("blpop") + b"\r\n"), r
        assert c.call("GET", "still-works") == b"$-1\r\n"
    assert_idle(mc_proxy, keys=("l",))


def test_memcached_down_error_after_a_refusal(tmp_path):
    """A refusal leaves no text behind: with memcached down, every command
    gets the unavailable error."""
    mc = Memcached().start()
    proxy = harness.ProxyProcess(
        _proxy_binary(),
        mc, str(tmp_path / "proxy"))
    proxy.args[proxy.args.index("--backend") + 1] = "memcached://%s:%d" % (mc.host, mc.port)
    proxy.start()
    try:
        mc.stop()
        unavailable = b"-ERR backend %s:%d is unavailable: " % (mc.host.encode(), mc.port)
        with proxy.connect() as c:
            deadline = time.monotonic() + 10
            while not c.call("GET", "k").startswith(unavailable) and time.monotonic() < deadline:
                time.sleep(0.05)
            for cmd in (("BLPOP", "l", "0.1"), ("GET", "k"), ("XREAD", "BLOCK", "5", "STREAMS", "s", "0"),
                        ("SET", "k", "v")):
                r = c.call(*cmd)
                assert r.startswith(unavailable), (cmd, r)
    finally:
        status = proxy.stop()
        mc.stop()
    assert not proxy.sanitizer_report(), proxy.sanitizer_report()
    assert status in (0, -15), proxy.diagnostics()


# ---------------------------------------------------------------------------
# BUSY texts: a busy FUNCTION is killed with FUNCTION KILL, a busy EVAL with
# SCRIPT KILL; EXEC refused while busy is an EXECABORT (Redis's rejectCommand).

BUSY_LIB = ("#!lua name=busylib\n"
            "redis.register_function('spin', function(keys, args) "
            "local t = 0 while true do t = t + 1 end end)\n")
SPIN_EVAL = "local t = 0 while true do t = t + 1 end"


@contextlib.contextmanager
def busy_script(ep, kind, scope=None):
    """A script spinning on key bz past busy-reply-threshold (200 ms)."""
    conf = ep.connect()
    saved = parse_reply(conf.call("CONFIG", "GET", "busy-reply-threshold"))[1]
    assert conf.call("CONFIG", "SET", "busy-reply-threshold", "200") == b"+OK\r\n"
    if scope:
        assert conf.call("CONFIG", "SET", "busy-reply-scope", scope) == b"+OK\r\n"
    conf.call("FUNCTION", "LOAD", "REPLACE", BUSY_LIB)
    spinner = ep.connect(timeout=20)
    if kind == "function":
        spinner.send_command("FCALL", "spin", "1", "bz")
    else:
        spinner.send_command("EVAL", SPIN_EVAL, "1", "bz")
    try:
        # Redis answers nothing until the script is busy, then BUSY (as the
        # proxy with busy-reply-scope all); with keys, the proxy tells in INFO.
        deadline = time.monotonic() + 10
        with ep.connect(timeout=10) as w:
            while True:
                r = w.call("PING")
                if r == b"+PONG\r\n" and ep.name == "proxy":
                    # The script may turn busy between the two: with
                    # busy-reply-scope all, INFO then gets BUSY too.
                    r = w.call("INFO", "scripting")
                    if not r.startswith(b"-"):
                        busy_line = b"\r\nscripts_busy:0\r\n" not in parse_reply(r)
                        r = b"-BUSY" if busy_line else b"+PONG\r\n"
                busy = r.startswith(b"-BUSY")
                if busy or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        assert busy
        yield
    finally:
        with ep.connect() as k:
            r = k.call("FUNCTION" if kind == "function" else "SCRIPT", "KILL")
            assert r == b"+OK\r\n", r
        spinner.read_reply(timeout=20)
        spinner.close()
        conf.call("CONFIG", "SET", "busy-reply-threshold", saved)
        if scope:
            conf.call("CONFIG", "SET", "busy-reply-scope", "keys")
        conf.close()


def _busy_transcript(ep, kind, scope):
    with ep.connect() as q:
        # A transaction queued before the script got busy, executed during it.
        q.call("MULTI")
        q.call("SET", "bz", "1")
        with busy_script(ep, kind, scope if ep.name == "proxy" and scope != "keys" else None):
            with ep.connect() as c, ep.connect() as w:
                got = [c.call("GET", "bz"), c.call("SET", "bz", "2"),
                       c.call("EVAL", GET_SCRIPT, "1", "bz"), c.call("FCALL", "spin", "1", "bz"),
                       q.call("EXEC"), w.call("WATCH", "bz")]
                if scope == "all":
                    # Every command but the few Redis allows while busy.
                    got += [q.call("EXEC"), c.call("PING"), c.call("GET", "unrelated"), c.call("MULTI"),
                            c.call("GET", "bz"), c.call("EXEC"), c.call("EXEC"), c.call("DISCARD")]
        return got


@pytest.mark.parametrize("scope", ["keys", "all"])
@pytest.mark.parametrize("kind", ["function", "eval"])
def test_busy_texts_match_redis(oracle, real_proxy, kind, scope):
    expected = _busy_transcript(oracle, kind, scope)
    actual = _busy_transcript(real_proxy, kind, scope)
    assert actual == expected
    assert_idle(real_proxy, keys=("bz",))


# ---------------------------------------------------------------------------
# EXEC rejected before it runs: EXECABORT with the reason, as Redis's
# rejectCommand; the transaction and the WATCH end.

AUTH_CASES = {
    "multi-set-exec": [("MULTI",), ("SET", "a", "1"), ("EXEC",)],
    "multi-exec": [("MULTI",), ("EXEC",)],
    "multi-discard": [("MULTI",), ("DISCARD",)],
    "exec": [("EXEC",)],
    "exec-args": [("EXEC", "x")],
    "discard": [("DISCARD",)],
    "watch": [("WATCH", "a")],
    "unwatch": [("UNWATCH",)],
    "multi-unknown-exec": [("MULTI",), ("NOSUCH",), ("EXEC",)],
    "multi-arity-exec": [("MULTI",), ("GET",), ("EXEC",)],
    "multi-eval-exec": [("MULTI",), ("EVAL", "return 1", "0"), ("EXEC",)],
    "hello-multi-exec": [("HELLO", "2"), ("MULTI",), ("EXEC",)],
    "wrongpass-multi-exec": [("AUTH", "bad"), ("MULTI",), ("EXEC",)],
    "multi-auth-then": [("MULTI",), ("AUTH", "pw"), ("MULTI",), ("SET", "ax", "1"), ("EXEC",), ("GET", "ax")],
    "auth-then": [("AUTH", "pw"), ("MULTI",), ("SET", "ax", "2"), ("EXEC",), ("GET", "ax")],
    "multi-reset": [("MULTI",), ("RESET",), ("EXEC",)],
    "multi-quit": [("MULTI",), Step(args=("QUIT",), close=True)],
    # Authenticated: an EXEC refused for its arity also ends the transaction.
    "auth-exec-args": [("AUTH", "pw"), ("SET", "ay", "0"), ("MULTI",), ("SET", "ay", "3"), ("EXEC", "x"),
                       ("EXEC",), ("GET", "ay")],
    "auth-exec-args-outside": [("AUTH", "pw"), ("EXEC", "x"), ("MULTI",), ("EXEC",)],
    "auth-discard-args": [("AUTH", "pw"), ("MULTI",), ("DISCARD", "x"), ("EXEC",)],
    "auth-multi-args": [("AUTH", "pw"), ("MULTI", "x"), ("MULTI",), ("EXEC",)],
}


@pytest.mark.parametrize("steps", list(AUTH_CASES.values()), ids=list(AUTH_CASES))
def test_unauthenticated_transactions_match_redis(auth_pair, steps):
    auth_pair.run(steps)


REFUSED_INSIDE_MULTI = [
    [("MULTI",), ("MULTI", "x"), ("EXEC",)],
    [("MULTI",), ("WATCH",), ("EXEC",)],
    [("MULTI",), ("DISCARD", "x"), ("EXEC",)],
    [("MULTI",), ("UNWATCH", "x"), ("EXEC",)],
    [("MULTI",), ("WATCH", "k"), ("EXEC",)],
    [("MULTI",), ("MULTI",), ("EXEC",)],
    [("MULTI",), ("SET", "k", "v"), ("EXEC", "x"), ("EXEC",), ("GET", "k")],
    [("MULTI",), ("CLIENT", "NOSUCH"), ("EXEC",)],
    [("MULTI",), ("CONFIG", "GET"), ("EXEC",)],
    [("MULTI",), ("EVAL", "return 1"), ("EXEC",)],
    [("MULTI",), ("FCALL",), ("SET", "k", "v"), ("EXEC",)],
    [("MULTI",), ("RESET",), ("EXEC",)],
]


@pytest.mark.parametrize("steps", REFUSED_INSIDE_MULTI, ids=lambda s: " ".join(" ".join(c) for c in s)[:40])
def test_refused_inside_multi_match_redis(diff, steps):
    diff.run(steps)


ONE_SHA = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # return 1
LOCAL_LIB = "#!lua name=tlocal\nredis.register_function('g', function(keys) return redis.call('get', keys[1]) end)"

# Commands the proxy answers itself run inside EXEC in their place, as Redis
# runs them: their replies (and their errors) are elements of EXEC's.
LOCAL_INSIDE_MULTI = [
    [("MULTI",), ("SET", "k", "v"), ("CONFIG", "SET", "maxmemory", "bla"), ("EXEC",), ("GET", "k")],
    [("MULTI",), ("CONFIG", "SET", "hz", "12"), ("CONFIG", "GET", "hz"), ("SET", "k", "1"), ("EXEC",),
     ("CONFIG", "SET", "hz", "10")],
    [("MULTI",), ("SCRIPT", "LOAD", "return 1"), ("EVALSHA", ONE_SHA, "0"), ("SCRIPT", "EXISTS", ONE_SHA),
     ("EXEC",)],
    [("MULTI",), ("SET", "k", "v"), ("FUNCTION", "LOAD", "REPLACE", LOCAL_LIB), ("FCALL", "g", "1", "k"),
     ("FUNCTION", "DELETE", "tlocal"), ("FCALL", "g", "1", "k"), ("EXEC",)],
    [("MULTI",), ("CLIENT", "SETNAME", "inexec"), ("CLIENT", "GETNAME"), ("EXEC",), ("CLIENT", "GETNAME")],
    [("MULTI",), ("SLOWLOG", "RESET"), ("SLOWLOG", "LEN"), ("EXEC",)],
    [("MULTI",), ("ACL", "WHOAMI"), ("CONFIG", "GET", "lua-time-limit"), ("GET", "k"), ("EXEC",)],
    [("MULTI",), ("SET", "k", "2"), ("INFO", "keyspace"), ("INCR", "k"), ("EXEC",)],
    [("MULTI",), ("CONFIG", "GET", "no-such-parameter"), ("CLIENT", "GETNAME"), ("ACL", "NOSUCH"), ("EXEC",)],
    [("MULTI",), ("MONITOR",), ("SET", "k", "v"), ("EXEC",), ("GET", "k")],
]


@pytest.mark.parametrize("steps", LOCAL_INSIDE_MULTI, ids=lambda s: " ".join(" ".join(c) for c in s[1:3])[:40])
def test_local_commands_inside_multi_match_redis(diff, steps):
    diff.run(steps)


def test_local_commands_inside_multi_in_resp3(real_proxy, oracle):
    """A RESP3 client's EXEC holds the local commands' replies in RESP3."""
    steps = [("MULTI",), ("CONFIG", "GET", "lua-time-limit"), ("CLIENT", "GETNAME"), ("SCRIPT", "EXISTS", "0" * 40),
             ("SET", "k", "v"), ("EXEC",)]
    out = []
    for ep in (oracle, real_proxy):
        with ep.connect() as c:
            c.call("HELLO", "3")
            out.append([c.call(*st) for st in steps])
    assert out[1] == out[0]
    assert out[0][-1].startswith(b"*4\r\n%1\r\n")


def test_client_reply_inside_exec_matches_redis(real_proxy, oracle):
    """CLIENT REPLY OFF inside EXEC silences the elements after it (and ON
    brings them back), byte for byte as Redis writes it."""
    cmds = [("MULTI",), ("SET", "k", "a"), ("CLIENT", "REPLY", "OFF"), ("SET", "k", "b"), ("CLIENT", "REPLY", "ON"),
            ("GET", "k"), ("EXEC",), ("GET", "k")]
    out = []
    for ep in (oracle, real_proxy):
        with socket.create_connection((ep.host, ep.port), timeout=5) as sock:
            sock.sendall(b"".join(encode_command(*x) for x in cmds))
            got = b""
            sock.settimeout(0.5)
            while True:  # the array is not whole: read bytes until the line goes quiet
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                got += chunk
            out.append(got)
    assert out[1] == out[0]
    assert out[0].endswith(b"*5\r\n+OK\r\n+OK\r\n$1\r\nb\r\n$1\r\nb\r\n"), out[0]


def test_a_client_killed_inside_its_exec(real_proxy):
    """CLIENT KILL of the connection running EXEC (another connection kills
    nothing of the transaction): the proxy goes on serving."""
    with real_proxy.connect() as a, real_proxy.connect() as b:
        a_id = a.call("CLIENT", "ID").strip()[1:].decode()
        b_id = b.call("CLIENT", "ID").strip()[1:].decode()
        assert a.call("MULTI") == b"+OK\r\n"
        assert a.call("CLIENT", "KILL", "ID", b_id) == b"+QUEUED\r\n"
        assert a.call("CLIENT", "KILL", "ID", a_id, "SKIPME", "no") == b"+QUEUED\r\n"
        a.send(encode_command("EXEC"))
        time.sleep(0.3)
    assert_idle(real_proxy)


def test_exec_refused_ends_the_watch(real_proxy, oracle):
    """EXEC with arguments (refused) unwatches: a later transaction is not
    aborted by a write to the key watched before."""
    out = []
    for ep in (oracle, real_proxy):
        with ep.connect() as a, ep.connect() as b:
            got = [a.call("WATCH", "ew"), a.call("EXEC", "x"), b.call("SET", "ew", "1"),
                   a.call("MULTI"), a.call("SET", "ew", "2"), a.call("EXEC"), a.call("GET", "ew")]
            out.append(got)
    assert out[1] == out[0]
    assert out[0][1].startswith(b"-EXECABORT Transaction discarded because of: wrong number")


def test_exec_in_subscribed_context_matches_redis(diff):
    diff.run([("SUBSCRIBE", "ch"), ("EXEC",), ("MULTI",), ("UNSUBSCRIBE", "ch"), ("EXEC",)])


# ---------------------------------------------------------------------------
# WATCH by write versions (memcached): no false aborts, every true conflict

def _watch_round(c, key="w"):
    assert c.call("WATCH", key) == b"+OK\r\n"
    c.call("GET", key)
    assert c.call("MULTI") == b"+OK\r\n"
    assert c.call("INCR", key) == b"+QUEUED\r\n"
    return c.call("EXEC", timeout=20)


def test_watch_unrelated_writes_never_abort(mc_proxy):
    """Other clients write other keys as fast as they can (plain commands,
    scripts, transactions; keys sharing the watched key's {hash tag}
    included): 100 WATCH ... EXEC rounds, none aborted."""
    stop = threading.Event()
    errors = []

    def writer(i):
        try:
            with mc_proxy.connect() as c:
                n = 0
                while not stop.is_set():
                    k = "other%d:%d" % (i, n % 50)
                    batch = [("INCR", k), ("SET", "{w}x%d" % i, n), ("INCR", "{tag}other%d" % i),
                             ("EVAL", INCR_SCRIPT, "1", "script%d" % i),
                             ("MULTI",), ("INCR", k), ("EXEC",)]
                    c.send(b"".join(encode_command(*x) for x in batch))
                    c.read_replies(len(batch))
                    n += 1
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        with mc_proxy.connect() as a:
            aborted = 0
            for key in ["w"] * 50 + ["{w}a"] * 25 + ["{tag}w"] * 25:
                r = _watch_round(a, key)
                assert r == b"*-1\r\n" or r.startswith(b"*1\r\n:"), r
                aborted += r == b"*-1\r\n"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert aborted == 0, "%d of 100 EXECs aborted by writes to other keys" % aborted
    assert_idle(mc_proxy)


CONFLICTS = [
    ("SET", "w", "2"),
    ("INCR", "w"),
    ("DEL", "w"),
    ("APPEND", "w", "x"),
    ("MSET", "z", "1", "w", "3"),
    ("RENAME", "src", "w"),
    ("EXPIRE", "w", "100"),
    ("EVAL", INCR_SCRIPT, "1", "w"),
    ("EVAL", "return redis.call('SET', ARGV[1], 'undeclared')", "0", "w"),
    ("FCALL", "myincr", "1", "w"),
    ("FLUSHDB",),
    ("FLUSHALL",),
]


@pytest.mark.parametrize("writer", CONFLICTS + ["multi", "multi-script", "select-db"],
                         ids=lambda w: w if isinstance(w, str) else " ".join(w)[:30])
@pytest.mark.parametrize("key", ["w", "{t}w"])
def test_watch_true_conflicts_abort(mc_env, mc_proxy, writer, key):
    """A write to the watched key by any path through the proxy aborts EXEC
    (as it does on Redis); compared with the oracle."""
    _, oracle, proxy = mc_env
    if isinstance(writer, tuple):
        writer = tuple(key if a == "w" else a for a in writer)
    transcripts = []
    for ep in (oracle, proxy):
        with ep.connect() as a, ep.connect() as b:
            assert b.call("MSET", key, "1", "src", "9") == b"+OK\r\n"
            b.call("FUNCTION", "LOAD", "REPLACE", LIB)
            got = [a.call("WATCH", key)]
            if writer == "multi":
                got += [b.call("MULTI"), b.call("SET", key, "5"), b.call("EXEC")]
            elif writer == "multi-script":
                got += [b.call("MULTI"), b.call("EVAL", INCR_SCRIPT, "1", key), b.call("EXEC")]
            elif writer == "select-db":
                # The same name in another database is another key.
                got += [b.call("SELECT", "3"), b.call("SET", key, "5"), b.call("SELECT", "0")]
            else:
                got.append(b.call(*writer))
            got += [a.call("MULTI"), a.call("SET", key, "10"), a.call("EXEC"), a.call("GET", key)]
            transcripts.append(got)
    assert transcripts[1] == transcripts[0]
    assert_idle(proxy)


def test_watch_loses_no_concurrent_write(mc_proxy):
    """Read-modify-write under WATCH while another client increments the
    same key (pipelined, so some writes are in flight as WATCH starts): every
    committed transaction saw every earlier increment, so none is lost."""
    stop = threading.Event()
    sent = [0]

    def incrementer():
        with mc_proxy.connect() as b:
            while not stop.is_set():
                b.send(b"".join(encode_command("INCR", "w") for _ in range(10)))
                b.read_replies(10)
                sent[0] += 10
                time.sleep(0.003 if sent[0] % 50 else 0.05)

    t = threading.Thread(target=incrementer)
    t.start()
    commits = 0
    try:
        with mc_proxy.connect() as a:
            for _ in range(300):
                if commits >= 5:
                    break
                assert a.call("WATCH", "w") == b"+OK\r\n"
                v = int(parse_reply(a.call("GET", "w")) or 0)
                assert a.call("MULTI") == b"+OK\r\n"
                assert a.call("SET", "w", v + 1000) == b"+QUEUED\r\n"
                r = a.call("EXEC", timeout=20)
                assert r in (b"*1\r\n+OK\r\n", b"*-1\r\n"), r
                commits += r != b"*-1\r\n"
    finally:
        stop.set()
        t.join()
    with mc_proxy.connect() as a:
        assert int(parse_reply(a.call("GET", "w"))) == sent[0] + 1000 * commits
    assert commits > 0
    assert_idle(mc_proxy, keys=("w",))


# ---------------------------------------------------------------------------
# MULTI/EXEC mixes: plain commands, scripts, functions and errors, with and
# without WATCH, on both stores

# The elements a transaction is made of; each takes a key ("a" or "b").
# "str" holds "abc" (INCR on it fails at run time), "n" holds "5".
ELEMENTS = {
    "set": lambda k: ("SET", k, "1"),
    "get": lambda k: ("GET", k),
    "incr": lambda k: ("INCR", k),
    "mset": lambda k: ("MSET", k, "7", "n", "6"),
    "del": lambda k: ("DEL", k),
    "runtime_err": lambda k: ("INCR", "str"),
    "unknown": lambda k: ("NOSUCHCOMMAND", k),
    "arity": lambda k: ("GET",),
    "eval": lambda k: ("EVAL", GET_SCRIPT, "1", k),
    "eval_write": lambda k: ("EVAL", INCR_SCRIPT, "1", k),
    "eval_ro": lambda k: ("EVAL_RO", GET_SCRIPT, "1", k),
    "eval_call_err": lambda k: ("EVAL", INCR_SCRIPT, "1", "str"),
    "eval_pcall": lambda k: ("EVAL", "return redis.pcall('INCR', KEYS[1])", "1", "str"),
    "eval_lua_err": lambda k: ("EVAL", "error('x')", "0"),
    "eval_reply_err": lambda k: ("EVAL", "return redis.error_reply('MY err')", "0"),
    "eval_compile_err": lambda k: ("EVAL", "return (", "0"),
    "eval_bad_numkeys": lambda k: ("EVAL", "return 1", "-1"),
    "eval_undeclared": lambda k: ("EVAL", "redis.call('SET', 'und', ARGV[1]) return redis.call('GET', 'und')",
                                  "0", k),
    "evalsha": lambda k: ("EVALSHA", "<sha>", "1", k),
    "evalsha_ro": lambda k: ("EVALSHA_RO", "<sha>", "1", k),
    "evalsha_missing": lambda k: ("EVALSHA", "f" * 40, "1", k),
    "fcall": lambda k: ("FCALL", "myget", "1", k),
    "fcall_write": lambda k: ("FCALL", "myincr", "1", k),
    "fcall_ro": lambda k: ("FCALL_RO", "myro", "1", k),
    "fcall_fails": lambda k: ("FCALL", "myincr", "1", "str"),
    "fcall_err": lambda k: ("FCALL", "myerr", "0"),
    "fcall_error_reply": lambda k: ("FCALL", "myrep", "0"),
    "fcall_missing": lambda k: ("FCALL", "nosuchfunction", "0"),
    "fcall_ro_writes": lambda k: ("FCALL_RO", "myincr", "1", k),
    "select1": lambda k: ("SELECT", "1"),
    "select0": lambda k: ("SELECT", "0"),
    "select_bad": lambda k: ("SELECT", "99"),
    "dbsize": lambda k: ("DBSIZE",),
    "flushdb": lambda k: ("FLUSHDB",),
    "exists": lambda k: ("EXISTS", k, "n", "str"),
    "ping": lambda k: ("PING",),
    "echo": lambda k: ("ECHO", k),
}
# Differences of the store, not of transactions: memcached has no lists.
REDIS_ONLY = {"wrongtype": lambda k: ("LPUSH", "str", "x")}

ORDERS = [
    ["set", "eval"],  # the reported hang
    ["eval", "set"],
    ["set", "eval", "get"],
    ["get", "eval_write", "incr"],
    ["set", "evalsha"],
    ["set", "evalsha_ro", "get"],
    ["set", "fcall"],
    ["incr", "fcall_write", "fcall_ro"],
    ["set", "eval", "set", "fcall", "get", "evalsha", "incr"],
    ["eval", "fcall", "evalsha"],
    ["runtime_err", "eval"],
    ["eval", "runtime_err", "get"],
    ["set", "eval_call_err", "get"],
    ["set", "eval_pcall", "incr"],
    ["set", "eval_lua_err", "get"],
    ["eval_reply_err", "set"],
    ["set", "eval_compile_err", "incr"],
    ["set", "eval_bad_numkeys"],
    ["set", "eval_undeclared", "get"],
    ["set", "eval_ro", "eval_write"],
    ["set", "evalsha_missing", "get"],
    ["set", "fcall_fails", "get"],
    ["fcall_err", "incr"],
    ["set", "fcall_error_reply"],
    ["set", "fcall_missing", "incr"],
    ["set", "fcall_ro_writes", "get"],
    ["select1", "set", "eval", "select0", "get"],
    ["select1", "fcall_write", "select_bad", "eval_write"],
    ["set", "dbsize", "eval", "exists"],
    ["eval", "dbsize", "fcall"],
    ["set", "flushdb", "eval_write", "exists"],
    ["ping", "eval", "echo"],
    ["mset", "del", "eval_write"],
    ["unknown", "set", "eval"],  # queue-time errors: EXECABORT
    ["set", "eval", "arity"],
    ["fcall", "unknown"],
]

WATCHES = ["none", "untouched", "touched", "other-key-touched"]


class Env:
    """One store behind the proxy, and the oracle."""

    def __init__(self, name, oracle, proxy):
        self.name, self.oracle, self.proxy = name, oracle, proxy
        self.elements = dict(ELEMENTS)
        if name == "redis":
            self.elements.update(REDIS_ONLY)

    def reset(self):
        """Both sides in the same state; returns GET_SCRIPT's sha1."""
        sha = None
        for ep in (self.oracle, self.proxy):
            with ep.connect() as c:
                assert c.call("FLUSHALL") == b"+OK\r\n"
                assert c.call("MSET", "str", "abc", "n", "5") == b"+OK\r\n"
                r = c.call("FUNCTION", "LOAD", "REPLACE", LIB)
                assert r == b"$5\r\ntxlib\r\n", (ep, r)
                sha = parse_reply(c.call("SCRIPT", "LOAD", GET_SCRIPT))
        return sha.decode()

    def command(self, name, key, sha):
        return tuple(sha if a == "<sha>" else a for a in self.elements[name](key))


def run_transaction(env, names, keys, sha, watch="none"):
    """The same transaction on the oracle and the proxy (a second client
    touches a watched key in between when asked); returns both transcripts."""
    out = []
    for ep in (env.oracle, env.proxy):
        got = []
        with ep.connect(timeout=5) as c, ep.connect(timeout=5) as other:
            try:
                if watch != "none":
                    got.append(c.call("WATCH", "a", "n"))
                    if watch == "touched":
                        got.append(other.call("SET", "a", "other"))
                    elif watch == "other-key-touched":
                        got.append(other.call("SET", "b", "other"))
                got.append(c.call("MULTI"))
                for name, key in zip(names, keys):
                    got.append(c.call(*env.command(name, key, sha)))
                got.append(c.call("EXEC"))
                got.append(c.call("PING"))  # the client goes on after EXEC
                got.append(c.call("SELECT", "0"))
                got.append(other.call("MGET", "a", "b", "n", "str", "und"))
                got.append(other.call("DBSIZE"))
            except harness.ReplyTimeout:
                got.append("<<no reply>>")
        out.append(got)
    return out


@pytest.fixture(params=["redis", "memcached"])
def env(request, oracle, real_proxy):
    if request.param == "redis":
        e = Env("redis", oracle, real_proxy)
    else:
        _, mc_oracle, mc_proxy = request.getfixturevalue("mc_env")
        e = Env("memcached", mc_oracle, mc_proxy)
    assert e.proxy.alive(), e.proxy.diagnostics()
    return e



@pytest.mark.parametrize("watch", WATCHES)
@pytest.mark.parametrize("names", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_transaction_mix(env, names, watch):
    sha = env.reset()
    keys = ["a" if i % 2 == 0 else "b" for i in range(len(names))]
    expected, actual = run_transaction(env, names, keys, sha, watch)
    assert actual == expected, "%s on %s, watch %s" % (names, env.name, watch)
    assert_idle(env.proxy, keys=("a", "b", "und"))


def test_wrongtype_inside_exec_with_scripts(real_proxy, oracle):
    env = Env("redis", oracle, real_proxy)
    for names in (["wrongtype", "eval"], ["set", "eval", "wrongtype", "fcall"]):
        for watch in ("none", "untouched", "touched"):
            sha = env.reset()
            expected, actual = run_transaction(env, names, ["a", "b", "a", "b"], sha, watch)
            assert actual == expected, (names, watch)
            assert_idle(real_proxy)


@pytest.mark.parametrize("seed", range(6))
def test_generated_transactions(env, seed):
    """Seeded random transactions of every element, with and without WATCH."""
    rnd = random.Random(seed * 7919 + (0 if env.name == "redis" else 1))
    names = sorted(env.elements)
    for _ in range(12):
        seq = [rnd.choice(names) for _ in range(rnd.randint(1, 6))]
        keys = [rnd.choice("ab") for _ in seq]
        watch = rnd.choice(WATCHES)
        sha = env.reset()
        expected, actual = run_transaction(env, seq, keys, sha, watch)
        assert actual == expected, "seed %d: %s %s watch %s" % (seed, seq, keys, watch)
        assert_idle(env.proxy, keys=("a", "b", "und"))


def test_queued_commands_wait_for_a_busy_key(env):
    """A transaction whose key a long script holds waits, then runs; a second
    client's plain command on the same key answers once both are done."""
    sha = env.reset()
    loop = "local t = 0 for i = 1, 4000000 do t = t + i end redis.call('SET', KEYS[1], 'looped') return t"
    with env.proxy.connect() as s, env.proxy.connect() as c:
        s.send_command("EVAL", loop, "1", "a")
        time.sleep(0.05)
        assert c.call("MULTI") == b"+OK\r\n"
        for cmd in (("SET", "a", "1"), ("EVAL", INCR_SCRIPT, "1", "a"), ("EVALSHA", sha, "1", "a")):
            assert c.call(*cmd) == b"+QUEUED\r\n"
        assert c.call("EXEC", timeout=20) == b"*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n"
        assert s.read_reply(timeout=20).startswith(b":")
    assert_idle(env.proxy)


# ---------------------------------------------------------------------------
# A client that goes away before EXEC's reply: as Redis, the transaction it
# sent still runs, and nothing stays locked.

DISCONNECTS = {
    "plain-then-script": [("SET", "a", "1"), ("EVAL", INCR_SCRIPT, "1", "a"), ("GET", "a")],
    "script-then-plain": [("EVAL", INCR_SCRIPT, "1", "a"), ("SET", "b", "1")],
    "slow-script": [("SET", "a", "1"),
                    ("EVAL", "local t = 0 for i = 1, 3000000 do t = t + i end return redis.call('INCR', KEYS[1])",
                     "1", "a"), ("INCR", "b")],
    "function": [("SET", "a", "1"), ("FCALL", "myincr", "1", "a"), ("SET", "b", "2")],
    "plain-only": [("SET", "a", "1"), ("INCR", "a"), ("SET", "b", "2")],
}
HOLD_A = ("EVAL", "local t = 0 for i = 1, 2000000 do t = t + i end return redis.call('INCR', KEYS[1])", "1", "a")


def _send_and_vanish(ep, commands, watch):
    c = ep.connect()
    if watch:
        assert c.call("WATCH", "b") == b"+OK\r\n"
    # Commands still in flight when EXEC arrives (on keys nobody holds).
    data = encode_command("GET", "c") + encode_command("INCR", "n")
    data += encode_command("MULTI") + b"".join(encode_command(*x) for x in commands) + encode_command("EXEC")
    c.send(data)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()


def _same_data_soon(env, keys=("a", "b", "n")):
    """The proxy's store reaches the oracle's state (what the vanished
    client's transaction leaves behind); then nothing is locked."""
    with env.oracle.connect() as o:
        want = o.call("MGET", *keys)
    deadline = time.monotonic() + 15
    with env.proxy.connect() as p:
        while True:
            got = p.call("MGET", *keys)
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert got == want
    assert_idle(env.proxy)


@pytest.mark.parametrize("watch", [False, True], ids=["no-watch", "watch"])
@pytest.mark.parametrize("case", sorted(DISCONNECTS))
def test_client_gone_before_exec_reply(env, case, watch):
    """The EXEC is read and its client gone before the reply: it runs, as in
    Redis. First while its client's other commands are in flight, then while
    a script holds its key (the EXEC waits for the lock)."""
    env.reset()
    commands = DISCONNECTS[case]
    for ep in (env.oracle, env.proxy):
        _send_and_vanish(ep, commands, watch)
    _same_data_soon(env)
    for ep in (env.oracle, env.proxy):
        with ep.connect() as holder:
            holder.send_command(*HOLD_A)
            time.sleep(0.02)
            if ep is env.proxy:
                with ep.connect() as w:  # the holder runs before the EXEC is read
                    deadline = time.monotonic() + 10
                    while info_fields(w, "scripting")["scripts_running"] == "0" and time.monotonic() < deadline:
                        time.sleep(0.005)
            _send_and_vanish(ep, commands, watch)
            assert holder.read_reply(timeout=20).startswith(b":")
    _same_data_soon(env)


def test_redis_py_pipelines_with_registered_scripts(env):
    redis = pytest.importorskip("redis")
    results = []
    for ep in (env.oracle, env.proxy):
        env.reset()
        r = redis.Redis(host=ep.host, port=ep.port, socket_timeout=10)
        r.script_flush()
        incr = r.register_script(INCR_SCRIPT)
        get = r.register_script(GET_SCRIPT)
        got = []
        p = r.pipeline(transaction=True)
        p.set("a", 1)
        incr(keys=["a"], client=p)  # not in the script cache yet: loaded before MULTI
        get(keys=["a"], client=p)
        p.incr("b")
        p.fcall("myincr", 1, "b")
        got.append(p.execute())
        with r.pipeline(transaction=True) as p:
            p.watch("a")
            p.multi()
            incr(keys=["a"], client=p)
            p.get("a")
            got.append(p.execute())
        with r.pipeline(transaction=True) as p:
            p.watch("a")
            redis.Redis(host=ep.host, port=ep.port).set("a", 40)
            p.multi()
            incr(keys=["a"], client=p)
            try:
                got.append(p.execute())
            except redis.WatchError:
                got.append("watch-error")
        p = r.pipeline(transaction=True)
        p.set("str", "x")
        incr(keys=["str"], client=p)
        p.get("a")
        got.append([type(x).__name__ if isinstance(x, Exception) else x
                    for x in p.execute(raise_on_error=False)])
        got.append(r.mget("a", "b", "str"))
        r.close()
        results.append(got)
    assert results[1] == results[0]
    assert results[0][2] == "watch-error"
    assert_idle(env.proxy)


# ---------------------------------------------------------------------------
# Several backend lines make a pool only with a distribution: without one, a
# second line is an error (in a file, on the command line, mixed), never a
# silent replacement of the first.

def _run(*args):
    return subprocess.run([_proxy_binary()] + list(args), capture_output=True, timeout=20)


REASON = ("'backend': a second store is named %s: several backend lines make a pool, which needs a "
          "distribution directive (ketama, modula or random)")


def test_second_backend_in_a_file(tmp_path):
    conf = tmp_path / "two.conf"
    conf.write_text("port 7000\nbackend redis://127.0.0.1:6379\n# comment\n\nbackend redis://127.0.0.1:6390\n")
    r = _run("--test-config", str(conf))
    assert r.returncode == 1, r
    assert REASON % ("at %s:5" % conf) in r.stderr.decode(), r.stderr
    # Nor is a start without --test-config.
    r = _run(str(conf), "--port", str(harness.free_port()))
    assert r.returncode == 1, r
    assert REASON % ("at %s:5" % conf) in r.stderr.decode(), r.stderr
    # With a distribution the lines are a pool; the same store twice never is.
    conf.write_text("port 7000\nbackend redis://127.0.0.1:6379\nbackend redis://127.0.0.1:6390 2 two\n"
                    "distribution ketama\n")
    assert _run("--test-config", str(conf)).returncode == 0
    conf.write_text("distribution modula\nbackend redis://127.0.0.1:6379\nbackend redis://127.0.0.1:6379\n")
    r = _run("--test-config", str(conf))
    assert r.returncode == 1 and b"the store redis://127.0.0.1:6379 is named twice" in r.stderr, r
    # Pools hold stores of one kind.
    conf.write_text("distribution ketama\nbackend redis://127.0.0.1:6379\nbackend memcached://127.0.0.1:11211\n")
    r = _run(str(conf), "--port", str(harness.free_port()))
    assert r.returncode == 1 and b"a pool holds stores of one kind" in r.stderr, r


def test_second_backend_on_the_command_line(tmp_path):
    r = _run("--test-config", "--backend", "redis://127.0.0.1:6379", "--port", "7000",
             "--backend", "redis://127.0.0.1:6380")
    assert r.returncode == 1, r
    assert REASON % "on the command line" in r.stderr.decode(), r.stderr
    r = _run("--test-config", "--backend", "redis://127.0.0.1:6379", "--backend", "redis://127.0.0.1:6380",
             "--distribution", "ketama", "--hash", "md5", "--hash-tag", "{}")
    assert r.returncode == 0, r
    for bad in (("--backend", "redis://127.0.0.1:6380", "0"), ("--backend", "redis://127.0.0.1:6380", "x"),
                ("--backend", "redis://127.0.0.1:6380", "1", "n", "extra")):
        r = _run("--test-config", "--backend", "redis://127.0.0.1:6379", "--distribution", "ketama", *bad)
        assert r.returncode == 1, (bad, r)


def test_second_backend_file_and_command_line(tmp_path):
    conf = tmp_path / "one.conf"
    conf.write_text("port 7000\nbackend redis://127.0.0.1:6379\n")
    r = _run("--test-config", str(conf), "--backend", "redis://127.0.0.1:6380")
    assert r.returncode == 1, r
    assert REASON % "on the command line" in r.stderr.decode(), r.stderr
    # One backend, wherever it is, is fine; so is the shipped file with --backend.
    assert _run("--test-config", str(conf)).returncode == 0
    assert _run("--test-config", "--backend", "memcached://127.0.0.1:11211").returncode == 0
    shipped = os.path.join(harness.REPO_ROOT, "proxy.conf")
    assert _run("--test-config", shipped, "--backend", "redis://127.0.0.1:6390").returncode == 0


def test_config_set_backend_unchanged(real_proxy):
    with real_proxy.connect() as c:
        for args in (("backend", "redis://127.0.0.1:1"), ("backend", "redis://127.0.0.1:1", "port", "5")):
            assert c.call("CONFIG", "SET", *args) == (
                b"-ERR CONFIG SET failed (possibly related to argument 'backend') - can't set immutable config\r\n")
        assert c.call("PING") == b"+PONG\r\n"
