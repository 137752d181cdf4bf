"""Checks of the proxy process itself (not differential): a benchmark run,
surviving a store restart on the same client connection, and many clients
pipelining at once. They need the real proxy, so they skip under
EVALPROXY_TARGET=store."""

import selectors
import shutil
import subprocess
import time

import pytest

from harness import (ConnectionClosed, ReplyTimeout, RespConnection, count_error_lines,
                     encode_command)

BENCH_TESTS = "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange,mset"


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
        sel = selectors.DefaultSelector()
        got = {}
        for i, c in enumerate(conns):
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, i)
            got[i] = bytearray()
        deadline = time.monotonic() + 60
        pending = set(range(nclients))
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                i = key.data
                data = key.fileobj.recv(65536)
                if not data:
                    pending.discard(i)
                    sel.unregister(key.fileobj)
                    continue
                got[i] += data
                if len(got[i]) >= len(expected):
                    pending.discard(i)
                    sel.unregister(key.fileobj)
        sel.close()
        wrong = [i for i in range(nclients) if bytes(got[i]) != expected]
        assert not wrong, ("%d of %d clients got wrong or incomplete replies; client %d got %r"
                           % (len(wrong), nclients, wrong[0], bytes(got[wrong[0]])[:300]))
        with RespConnection(real_proxy.host, real_proxy.port) as c:
            for i in (0, nclients // 2, nclients - 1):
                assert c.call("GET", "many:%d" % i) == b"$3\r\n100\r\n"
    finally:
        for c in conns:
            c.close()
