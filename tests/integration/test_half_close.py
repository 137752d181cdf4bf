"""Clients that send commands and then shut down their write side
(`printf '...' | nc -N`) or close: every complete command they sent runs,
in order, as in Redis, and the replies reach them while their socket still
takes them; a partial command at the end runs nothing and leaves nothing
held. Plain commands, scripts (pipelined and not), MULTI/EXEC, commands
waiting for a lock, blocking commands; on the RESP store and on memcached,
plain and over TLS; replies and the data left behind compared with a
redis-server 7.0 oracle."""

import os
import socket
import ssl
import time

import pytest

import harness
from harness import HOST, encode_command, info_fields
from test_client_lifecycle import assert_idle, start_proxy, stop_proxy
from test_memcached import MEMCACHED, Memcached
from test_tls import OPENSSL, TlsProxy, certs, client_ctx, running, server_tls_args  # noqa: F401

INCR = "return redis.call('INCR', KEYS[1])"
SETGET = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"
SPIN = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return redis.call('INCR', KEYS[1])"
KEYS = ("a", "b", "n", "m", "p", "done")


def cmd(*args):
    return encode_command(*args)


@pytest.fixture(scope="module", params=["redis", "memcached"])
def hc(request, tmp_path_factory):
    """A store and a proxy in front of it, for this module alone."""
    work = tmp_path_factory.mktemp("evalproxy-hc-" + request.param)
    if request.param == "redis":
        store = harness.RedisServer("store", str(work / "store"), rename_scripting=True).start()
        proxy = start_proxy(work / "proxy", store, None)
    else:
        if not os.path.exists(MEMCACHED):
            pytest.skip("memcached is not installed")
        store = Memcached().start()
        proxy = start_proxy(work / "proxy", store, "memcached://%s:%d" % (store.host, store.port))
    proxy.kind = request.param
    yield proxy
    try:
        stop_proxy(proxy)
    finally:
        store.stop()


def flush(*endpoints):
    for ep in endpoints:
        with ep.connect() as c:
            assert c.call("FLUSHALL") == b"+OK\r\n"


def check(proxy):
    report = proxy.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report
    assert proxy.alive(), "the proxy died\n" + proxy.diagnostics()
    assert_idle(proxy)
    report = proxy.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report


def read_to_eof(s, timeout=30.0):
    """What the server sends until it closes (or resets) the connection."""
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "the server did not close within %.0fs; got %r" % (timeout, out[-300:])
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return out
        if not d:
            return out
        out += d


def half_close(ep, payload):
    """Sends payload, shuts down the write side, returns all it got back."""
    s = socket.create_connection((ep.host, ep.port), timeout=10)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s)
    finally:
        s.close()


def tls_half_close(port, ctx, payload, close_notify, timeout=30.0):
    """half_close over TLS: after the payload, a close_notify (or none) and
    a TCP half-close; returns the decrypted bytes received until the end."""
    raw = socket.create_connection((HOST, port), timeout=10)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname="localhost")
    deadline = time.monotonic() + timeout

    def send_pending():
        data = outg.read()
        if data:
            raw.sendall(data)

    def pump():
        left = deadline - time.monotonic()
        assert left > 0, "no end within %.0fs" % timeout
        raw.settimeout(left)
        try:
            d = raw.recv(65536)
        except ConnectionResetError:
            d = b""
        if d:
            inc.write(d)
        else:
            inc.write_eof()

    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                send_pending()
                pump()
        send_pending()
        obj.write(payload)
        send_pending()
        if close_notify:
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            send_pending()
        raw.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                d = obj.read(65536)
            except ssl.SSLWantReadError:
                pump()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return out
            if not d:
                return out
            out += d
    finally:
        raw.close()


def state(ep):
    with ep.connect() as c:
        return c.call("MGET", *KEYS)


def set_pipelining(proxy, on):
    with proxy.connect() as c:
        assert c.call("CONFIG", "SET", "lua-script-pipelining", "yes" if on else "no") == b"+OK\r\n"
        # a script is pipelined once a run of it kept to its declared keys
        for body in (INCR, SETGET, SPIN):
            c.call("EVAL", body, "1", "warm", "1")
        c.call("DEL", "warm")


PAYLOADS = {
    "plain": [cmd("SET", "a", "1"), cmd("INCR", "n"), cmd("INCR", "n"), cmd("GET", "a"), cmd("MGET", "a", "n"),
              cmd("SET", "done", "1")],
    "scripts": [cmd("EVAL", INCR, "1", "n"), cmd("EVAL", SETGET, "1", "a", "x"), cmd("INCR", "n"),
                cmd("EVAL", SPIN, "1", "m", "200000"), cmd("EVAL", INCR, "1", "n"), cmd("GET", "m"),
                cmd("EVAL", SETGET, "1", "done", "1")],
    "multi-exec": [cmd("MULTI"), cmd("INCR", "n"), cmd("SET", "b", "x"), cmd("EXEC"), cmd("GET", "b"),
                   cmd("MULTI"), cmd("EVAL", INCR, "1", "n"), cmd("INCR", "m"), cmd("EXEC"), cmd("SET", "done", "1")],
    "long-mix": ([cmd("INCR", "n"), cmd("EVAL", INCR, "1", "m"), cmd("APPEND", "a", "x")] * 300
                 + [cmd("MULTI"), cmd("INCR", "n"), cmd("EXEC")] * 20 + [cmd("SET", "done", "1")]),
    "partial-tail": [cmd("SET", "a", "1"), cmd("EVAL", INCR, "1", "n"), b"*3\r\n$3\r\nSET\r\n$4\r\ndone\r\n$1"],
    "partial-inline-tail": [cmd("INCR", "n"), b"SET done 1"],
    "multi-unfinished": [cmd("INCR", "n"), cmd("MULTI"), cmd("SET", "done", "1"), cmd("EVAL", INCR, "1", "m")],
    "script-then-partial": [cmd("EVAL", SPIN, "1", "m", "300000"), cmd("INCR", "n"), b"*2\r\n$4\r\nINCR\r\n"],
}


@pytest.mark.parametrize("pipelining", [False, True], ids=["serial", "pipelined"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_half_closed_client_gets_everything_it_sent(hc, oracle, name, pipelining):
    """shutdown(SHUT_WR) after a pipeline: the same replies as Redis, and
    the same data left behind."""
    set_pipelining(hc, pipelining)
    flush(hc, oracle)
    payload = b"".join(PAYLOADS[name])
    expected = half_close(oracle, payload)
    got = half_close(hc, payload)
    assert got == expected
    assert state(hc) == state(oracle)
    check(hc)


@pytest.mark.parametrize("name", ["plain", "scripts", "multi-exec", "long-mix"])
def test_closed_client_still_has_its_commands_run(hc, oracle, name):
    """A client that closes right after sending (no half-close, replies
    unread): every complete command still runs."""
    set_pipelining(hc, True)
    flush(hc, oracle)
    payload = b"".join(PAYLOADS[name])
    expected = half_close(oracle, payload)
    assert expected
    s = socket.create_connection((hc.host, hc.port), timeout=10)
    s.sendall(payload)
    s.close()
    want = state(oracle)
    deadline = time.monotonic() + 30
    while state(hc) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(hc) == want
    check(hc)


def wait_script_running(proxy, n=1, timeout=30.0):
    deadline = time.monotonic() + timeout
    with proxy.connect() as c:
        while int(info_fields(c)["scripts_running"]) < n:
            assert time.monotonic() < deadline, "no script started"
            time.sleep(0.01)


def wait_lock_waiters(proxy, n=1, timeout=30.0):
    deadline = time.monotonic() + timeout
    with proxy.connect() as c:
        while int(info_fields(c)["lock_sets_waiting"]) < n:
            assert time.monotonic() < deadline, "nothing waits for a lock"
            time.sleep(0.01)


@pytest.mark.parametrize("pipelining", [False, True], ids=["serial", "pipelined"])
def test_half_closed_client_waiting_for_a_lock(hc, pipelining):
    """Its first command waits for a script's lock when the EOF comes: the
    rest runs once the script is done."""
    set_pipelining(hc, pipelining)
    flush(hc)
    holder = hc.connect()
    try:
        holder.send_command("EVAL", SPIN, "1", "n", "30000000")
        wait_script_running(hc)
        s = socket.create_connection((hc.host, hc.port), timeout=10)
        s.sendall(cmd("INCR", "n") + cmd("EVAL", INCR, "1", "n") + cmd("MULTI") + cmd("INCR", "n") + cmd("EXEC")
                  + cmd("GET", "n") + cmd("SET", "done", "1"))
        wait_lock_waiters(hc)
        s.shutdown(socket.SHUT_WR)
        got = read_to_eof(s)
        s.close()
        assert holder.read_reply(timeout=60) == b":1\r\n"
    finally:
        holder.close()
    assert got == b":2\r\n:3\r\n+OK\r\n+QUEUED\r\n*1\r\n:4\r\n$1\r\n4\r\n+OK\r\n"
    check(hc)


@pytest.mark.parametrize("listed", ["empty", "full"])
def test_half_closed_client_with_a_blocking_command(hc, oracle, listed):
    """BLPOP answered at once runs on, and what follows runs; one that
    blocks ends the client, and nothing after it runs (as Redis frees a
    blocked client at EOF)."""
    if hc.kind != "redis":
        pytest.skip("blocking commands need the RESP store")
    flush(hc, oracle)
    payload = cmd("SET", "a", "1") + cmd("BLPOP", "p", "0") + cmd("SET", "done", "1") + cmd("GET", "done")
    if listed == "full":
        for ep in (hc, oracle):
            with ep.connect() as c:
                c.call("RPUSH", "p", "x", "y")
    expected = half_close(oracle, payload)
    got = half_close(hc, payload)
    assert got == expected
    with hc.connect() as c, oracle.connect() as o:
        assert c.call("MGET", "a", "done") == o.call("MGET", "a", "done")
        assert c.call("LRANGE", "p", "0", "-1") == o.call("LRANGE", "p", "0", "-1")
    check(hc)


@pytest.fixture(scope="module")
def tls_hc(certs, store, tmp_path_factory):  # noqa: F811
    p = TlsProxy(str(tmp_path_factory.mktemp("hc-tls")), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs))
    with running(p):
        yield p


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command line tool is not installed")
@pytest.mark.parametrize("close_notify", [False, True], ids=["fin", "close-notify"])
@pytest.mark.parametrize("name", ["plain", "scripts", "multi-exec", "long-mix", "partial-tail"])
def test_half_closed_tls_client(tls_hc, certs, oracle, name, close_notify):  # noqa: F811
    flush(tls_hc, oracle)
    payload = b"".join(PAYLOADS[name])
    expected = half_close(oracle, payload)
    got = tls_half_close(tls_hc.tls_port, client_ctx(certs), payload, close_notify)
    assert got == expected
    assert state(tls_hc) == state(oracle)
    check(tls_hc)
