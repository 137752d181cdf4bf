"""CLIENT PAUSE and CLIENT UNPAUSE, as Redis 7.0: while a pause of writes is
on, commands that may write (Redis's write and may-replicate commands,
scripts without no-writes, an EXEC holding one) wait in the order they came
and run when it ends; reads, read-only scripts and read-only transactions
run. A pause of all holds every command. The store pauses its writes too,
so keys it holds do not expire meanwhile. The argument errors are compared
byte for byte with a redis-server 7.0 oracle."""

import time

import pytest

import harness
from conftest import proxy_binary, stop_proxy
from harness import ReplyTimeout, encode_command


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("pause")
    store = harness.RedisServer("store", str(d / "store"), rename_scripting=True).start()
    oracle = harness.RedisServer("oracle", str(d / "oracle")).start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(d / "proxy"))
    proxy.start()
    yield proxy, store, oracle
    stop_proxy(proxy)
    store.stop()
    oracle.stop()


@pytest.fixture
def proxy(env):
    p = env[0]
    yield p
    with p.connect() as c:
        assert c.call("CLIENT", "UNPAUSE") == b"+OK\r\n"


def blocked(c):
    return int(harness.info_fields(c, "clients")["blocked_clients"])


def wait_blocked(c, n):
    deadline = time.monotonic() + 5
    while blocked(c) != n:
        assert time.monotonic() < deadline, blocked(c)
        time.sleep(0.01)


def silent(conn, wait=0.2):
    """Nothing has come on conn for a while."""
    with pytest.raises(ReplyTimeout):
        conn.read_reply(timeout=wait)
    return True


@pytest.mark.parametrize("args", [
    ("CLIENT", "PAUSE", "abc"), ("CLIENT", "PAUSE", "-1"), ("CLIENT", "PAUSE", "10", "SOME"),
    ("CLIENT", "PAUSE", "9223372036854775807", "WRITE"), ("CLIENT", "PAUSE"), ("CLIENT", "UNPAUSE", "x"),
])
def test_argument_errors_match_redis(env, args):
    proxy, _, oracle = env
    with proxy.connect() as p, oracle.connect() as o:
        assert p.call(*args) == o.call(*args)


def test_writes_wait_and_reads_run_during_a_pause_of_writes(proxy):
    lib = ("#!lua name=pauselib\nredis.register_function{function_name='ro', callback=function(keys) "
           "return redis.call('get', keys[1]) end, flags={'no-writes'}}\n"
           "redis.register_function('rw', function(keys) return redis.call('incr', keys[1]) end)")
    with proxy.connect() as admin, proxy.connect() as a, proxy.connect() as b, proxy.connect() as r:
        assert admin.call("SET", "p:k", "1") == b"+OK\r\n"
        assert admin.call("FUNCTION", "LOAD", "REPLACE", lib) == b"$8\r\npauselib\r\n"
        assert admin.call("CLIENT", "PAUSE", "60000", "WRITE") == b"+OK\r\n"
        # Reads and read-only scripts run.
        assert r.call("GET", "p:k") == b"$1\r\n1\r\n"
        assert r.call("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])", "1", "p:k") == b"$1\r\n1\r\n"
        assert r.call("EVAL_RO", "return redis.call('get', KEYS[1])", "1", "p:k") == b"$1\r\n1\r\n"
        assert r.call("FCALL", "ro", "1", "p:k") == b"$1\r\n1\r\n"
        assert r.call("MULTI") == b"+OK\r\n"
        assert r.call("GET", "p:k") == b"+QUEUED\r\n"
        assert r.call("EXEC") == b"*1\r\n$1\r\n1\r\n"
        # Writes wait, in the order they came: a client's pipeline behind its write too.
        a.send(encode_command("INCR", "p:k") + encode_command("GET", "p:k"))
        wait_blocked(admin, 1)
        b.send(encode_command("EVAL", "return redis.call('incr', KEYS[1])", "1", "p:k"))
        wait_blocked(admin, 2)
        assert silent(a) and silent(b, 0.05)
        assert r.call("GET", "p:k") == b"$1\r\n1\r\n"
        assert admin.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
        # (The other client's script may run between a's two commands.)
        assert a.read_replies(2) in ([b":2\r\n", b"$1\r\n2\r\n"], [b":2\r\n", b"$1\r\n3\r\n"])
        assert b.read_reply() == b":3\r\n"
        assert blocked(admin) == 0
        # An EXEC holding a write, a function that may write, PUBLISH and PFCOUNT wait too.
        assert a.call("MULTI") == b"+OK\r\n"
        assert a.call("INCR", "p:k") == b"+QUEUED\r\n"
        assert admin.call("CLIENT", "PAUSE", "60000", "WRITE") == b"+OK\r\n"
        a.send(encode_command("EXEC"))
        b.send(encode_command("FCALL", "rw", "1", "p:k"))
        r.send(encode_command("PUBLISH", "p:ch", "m") + encode_command("PFCOUNT", "p:h"))
        wait_blocked(admin, 3)
        assert admin.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
        assert a.read_reply() == b"*1\r\n:4\r\n"
        assert b.read_reply() == b":5\r\n"
        assert r.read_replies(2) == [b":0\r\n", b":0\r\n"]


def test_a_pause_ends_at_its_timeout(proxy):
    with proxy.connect() as admin, proxy.connect() as a:
        start = time.monotonic()
        assert admin.call("CLIENT", "PAUSE", "300", "WRITE") == b"+OK\r\n"
        assert a.call("SET", "p:t", "x", timeout=5) == b"+OK\r\n"
        assert time.monotonic() - start >= 0.25


def test_a_pause_of_all_holds_reads(proxy):
    with proxy.connect() as admin, proxy.connect() as a:
        assert admin.call("CLIENT", "PAUSE", "400", "ALL") == b"+OK\r\n"
        start = time.monotonic()
        assert a.call("PING", timeout=5) == b"+PONG\r\n"
        assert time.monotonic() - start >= 0.3


def test_a_waiting_client_that_goes_away(proxy):
    with proxy.connect() as admin, proxy.connect() as b:
        assert admin.call("CLIENT", "PAUSE", "60000", "WRITE") == b"+OK\r\n"
        with proxy.connect() as a:
            a.send(encode_command("SET", "p:gone", "1"))
            wait_blocked(admin, 1)
        wait_blocked(admin, 0)
        b.send(encode_command("SET", "p:stay", "1"))
        wait_blocked(admin, 1)
        assert admin.call("CLIENT", "LIST").count(b" flags=b ") == 1  # as Redis lists a postponed client
        assert admin.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
        assert b.read_reply() == b"+OK\r\n"
        assert admin.call("EXISTS", "p:gone", "p:stay") == b":1\r\n"  # as Redis: dropped with its client


def test_a_pause_inside_a_transaction_starts_at_its_end(env, proxy):
    """As Redis: the transaction's writes after CLIENT PAUSE run; the store's
    keys do not expire while the pause lasts."""
    store = env[1]
    with proxy.connect() as admin, proxy.connect() as a, store.connect() as s:
        expired = int(harness.info_fields(s, "stats")["expired_keys"])
        assert admin.call("MULTI") == b"+OK\r\n"
        for args in (("SET", "p:e1", "v", "PX", "10"), ("CLIENT", "PAUSE", "60000", "WRITE"),
                     ("SET", "p:e2", "v", "PX", "10")):
            assert admin.call(*args) == b"+QUEUED\r\n"
        assert admin.call("EXEC", timeout=5) == b"*3\r\n+OK\r\n+OK\r\n+OK\r\n"
        a.send(encode_command("SET", "p:after", "1"))
        wait_blocked(admin, 1)
        time.sleep(0.3)
        assert admin.call("GET", "p:e1") == b"$-1\r\n"  # logically expired
        assert int(harness.info_fields(s, "stats")["expired_keys"]) == expired
        assert admin.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
        assert a.read_reply() == b"+OK\r\n"
        assert admin.call("GET", "p:e2") == b"$-1\r\n"
        deadline = time.monotonic() + 5
        while int(harness.info_fields(s, "stats")["expired_keys"]) < expired + 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
