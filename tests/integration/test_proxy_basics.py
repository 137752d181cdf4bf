"""Checks of the proxy process itself (not differential): a benchmark run,
surviving a store restart on the same client connection, and many clients
pipelining at once. Those need the real proxy, so they skip under
EVALPROXY_TARGET=store."""

import selectors
import shutil
import subprocess
import time

import pytest

from harness import (ConnectionClosed, ReplyTimeout, RespConnection, count_error_lines,
                     encode_command)

BENCH_TESTS = "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange,mset"


def test_store_has_no_scripting(store):
    # The store runs with the scripting commands renamed away, so anything
    # that works through the proxy cannot have been delegated to them.
    with store.connect() as c:
        for cmd in (("EVAL", "return 1", "0"), ("EVALSHA", "a" * 40, "0"), ("SCRIPT", "FLUSH"),
                    ("FUNCTION", "LIST"), ("FCALL", "f", "0"), ("EVAL_RO", "return 1", "0")):
            r = c.call(*cmd)
            assert r.startswith(b"-ERR unknown command '%s'" % cmd[0].encode()), (cmd, r)
        assert c.call("PING") == b"+PONG\r\n"


def test_redis_benchmark(real_proxy):
    bench = shutil.which("redis-benchmark")
    assert bench, "redis-benchmark is not installed (Debian package redis-tools)"
    proc = subprocess.run(
        [bench, "-h", real_proxy.host, "-p", str(real_proxy.port), "-t", BENCH_TESTS,
         "-P", "16", "-n", "20000", "-q", "--csv"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "redis-benchmark exited with %d:\n%s" % (proc.returncode, out)
    errors = count_error_lines(out)
    assert not errors, "redis-benchmark reported errors:\n%s" % "\n".join(errors[:20])
    # Every requested test must have produced a result row with a positive rate.
    rows = {}
    for line in out.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) >= 2 and parts[0] != "test":
            try:
                rows[parts[0]] = float(parts[1])
            except ValueError:
                pass
    assert len(rows) >= len(BENCH_TESTS.split(",")), \
        "expected a CSV row per test, got %d:\n%s" % (len(rows), out)
    slow = {k: v for k, v in rows.items() if not v > 0}
    assert not slow, "tests without throughput: %s" % slow
    assert real_proxy.alive(), "the proxy exited during the benchmark\n" + real_proxy.diagnostics()


def _poll_until_ok(conn, deadline):
    """Send SET/GET on the same connection until the backend answers them."""
    last = None
    while time.monotonic() < deadline:
        conn.send_command("SET", "restart:probe", "back")
        conn.send_command("GET", "restart:probe")
        try:
            r1 = conn.read_reply(timeout=3)
            r2 = conn.read_reply(timeout=3)
        except ReplyTimeout:
            pytest.fail("the proxy did not answer within 3s while the store was coming back")
        if r1 == b"+OK\r\n" and r2 == b"$4\r\nback\r\n":
            return
        last = (r1, r2)
        time.sleep(0.2)
    pytest.fail("no successful command through the proxy within 10s of the store "
                "restart; last replies: %r" % (last,))


@pytest.mark.store_restart
def test_store_restart(real_proxy, store):
    clients = [real_proxy.connect() for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            assert c.call("SET", "restart:%d" % i, "x") == b"+OK\r\n"
        store.kill()
        try:
            for c in clients:
                t0 = time.monotonic()
                try:
                    r = c.call("GET", "restart:0", timeout=2.0)
                except ReplyTimeout:
                    pytest.fail("no reply within 2s while the store is down (the proxy hangs)")
                except ConnectionClosed:
                    pytest.fail("the proxy closed the client connection when the store died")
                assert r.startswith(b"-ERR"), "expected an -ERR reply, got %r" % r
                assert time.monotonic() - t0 < 2.0
            # A second command while the store is still down must fail fast too.
            r = clients[0].call("INCR", "restart:ctr", timeout=2.0)
            assert r.startswith(b"-ERR"), "expected an -ERR reply, got %r" % r
        finally:
            store.restart()
        deadline = time.monotonic() + 10.0
        for c in clients:
            _poll_until_ok(c, deadline)
        assert real_proxy.alive(), "the proxy exited\n" + real_proxy.diagnostics()
    finally:
        for c in clients:
            c.close()


def test_many_clients_pipelining(real_proxy):
    nclients, per_client = 200, 100
    conns = [real_proxy.connect() for _ in range(nclients)]
    try:
        for i, c in enumerate(conns):
            assert c.call("DEL", "many:%d" % i) in (b":0\r\n", b":1\r\n")
        expected = b"".join(b":%d\r\n" % (i + 1) for i in range(per_client))
        payloads = [encode_command("INCR", "many:%d" % i) * per_client for i in range(nclients)]
        for c, p in zip(conns, payloads):
            c.send(p)
        got = _read_all(conns, len(expected), timeout=60)
        wrong = [i for i in range(nclients) if bytes(got[i]) != expected]
        assert not wrong, ("%d of %d clients got wrong or incomplete replies; client %d got %r"
                           % (len(wrong), nclients, wrong[0], bytes(got[wrong[0]])[:300]))
        with RespConnection(real_proxy.host, real_proxy.port) as c:
            for i in (0, nclients // 2, nclients - 1):
                assert c.call("GET", "many:%d" % i) == b"$3\r\n100\r\n"
    finally:
        for c in conns:
            c.close()


def test_pipelines_of_large_replies(real_proxy, store):
    # Replies much larger than one read and than the proxy's feed to its
    # reply parser, many to a batch and split anywhere: each client gets
    # exactly the bytes the store gives for the same commands.
    with real_proxy.connect() as c:
        c.call("DEL", "big:list", "big:str", "big:hash", "big:nested")
        for i in range(0, 600, 100):
            assert c.call("RPUSH", "big:list", *["item-%d-%s" % (j, "v" * (j % 37)) for j in range(i, i + 100)])
        assert c.call("SET", "big:str", "s" * 300000) == b"+OK\r\n"
        assert c.call("HSET", "big:hash", *sum((("f%d" % i, "x" * (i % 50)) for i in range(400)), ()))
        for i in range(30):
            assert c.call("XADD", "big:nested", "*", "k%d" % i, "v" * 200, "n", str(i)).startswith(b"$")
    commands = []
    for i in range(40):
        commands.append(("LRANGE", "big:list", str(i), str(-1 - i)))
        commands.append(("GET", "nosuchkey"))
        if i % 8 == 0:
            commands.append(("GET", "big:str"))
        commands.append(("HGETALL", "big:hash"))
        commands.append(("XRANGE", "big:nested", "-", "+"))
    payload = b"".join(encode_command(*cmd) for cmd in commands)
    with store.connect() as direct:
        direct.send(payload)
        expected = b"".join(direct.read_replies(len(commands), timeout=60))
    conns = [real_proxy.connect() for _ in range(8)]
    try:
        for c in conns:
            c.send(payload)
        got = _read_all(conns, len(expected), timeout=120)
        wrong = [i for i in range(len(conns)) if bytes(got[i]) != expected]
        assert not wrong, ("%d of %d clients got other bytes (%d of %d received)"
                           % (len(wrong), len(conns), len(got[wrong[0]]), len(expected)))
    finally:
        for c in conns:
            c.close()


def _read_all(conns, expected_len, timeout):
    """Read from every connection until each has expected_len bytes (or EOF)."""
    sel = selectors.DefaultSelector()
    got = {}
    for i, c in enumerate(conns):
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, i)
        got[i] = bytearray()
    deadline = time.monotonic() + timeout
    pending = set(range(len(conns)))
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            i = key.data
            data = key.fileobj.recv(65536)
            got[i] += data
            if not data or len(got[i]) >= expected_len:
                pending.discard(i)
                sel.unregister(key.fileobj)
    sel.close()
    return got


def test_shared_key_concurrency(real_proxy):
    # Many clients pipelining INCR on one key: no increment may be lost and
    # each client must see its own replies strictly increasing.
    nclients, per_client = 50, 200
    conns = [real_proxy.connect() for _ in range(nclients)]
    try:
        assert conns[0].call("DEL", "shared:ctr") in (b":0\r\n", b":1\r\n")
        for c in conns:
            c.send(encode_command("INCR", "shared:ctr") * per_client)
        # Replies are ":N\r\n" with N up to nclients*per_client; read per client.
        results = {}
        for i, c in enumerate(conns):
            c.sock.setblocking(True)
            try:
                results[i] = c.read_replies(per_client, timeout=30)
            except (ReplyTimeout, ConnectionClosed):
                pytest.fail("client %d did not get its %d replies" % (i, per_client))
        for i, replies in results.items():
            vals = [int(r[1:-2]) for r in replies]
            assert all(r.startswith(b":") for r in replies), replies[:5]
            assert vals == sorted(vals) and len(set(vals)) == len(vals), \
                "client %d saw non-increasing counter values: %r" % (i, vals[:20])
        everything = sorted(v for replies in results.values() for v in
                            (int(r[1:-2]) for r in replies))
        assert everything == list(range(1, nclients * per_client + 1)), "lost or repeated increments"
        assert conns[0].call("GET", "shared:ctr") == b"$%d\r\n%d\r\n" % (
            len(str(nclients * per_client)), nclients * per_client)
    finally:
        for c in conns:
            c.close()


def test_blocking_client_does_not_stall_others(real_proxy):
    waiter = real_proxy.connect()
    other = real_proxy.connect()
    try:
        assert other.call("DEL", "blk:q") in (b":0\r\n", b":1\r\n")
        waiter.send_command("BLPOP", "blk:q", "5")
        time.sleep(0.2)
        t0 = time.monotonic()
        assert other.call("SET", "blk:other", "v", timeout=2) == b"+OK\r\n"
        assert other.call("GET", "blk:other", timeout=2) == b"$1\r\nv\r\n"
        assert time.monotonic() - t0 < 1.0, "a blocked client stalled another connection"
        assert other.call("RPUSH", "blk:q", "job", timeout=2) == b":1\r\n"
        r = waiter.read_reply(timeout=3)
        assert r == b"*2\r\n$5\r\nblk:q\r\n$3\r\njob\r\n", r
        # The waiting connection is usable afterwards.
        assert waiter.call("GET", "blk:other", timeout=2) == b"$1\r\nv\r\n"
    finally:
        waiter.close()
        other.close()
