"""Configuration, command line, connection handling and the commands the
proxy answers itself (AUTH, CLIENT, COMMAND, INFO, SELECT, CONFIG), checked
against redis-server 7.0.15 where a client can see the difference.

Tests that need a differently configured proxy, oracle or store start their
own processes on free loopback ports and stop them at the end; a proxy
started here is checked for sanitizer reports and a clean exit, as the
session proxy is in conftest.py."""

import contextlib
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

import harness
from harness import (HOST, ConnectionClosed, ProxyProcess, RedisServer, ReplyTimeout,
                     RespConnection, Step, encode_command, free_port, parse_reply)

# Directives that exist only in the proxy (Redis 7.0 has no such parameter).
PROXY_ONLY = {"backend", "backend-connections", "backend-admin-commands",
              "backend-blocking-connections", "backend-connect-timeout", "busy-reply-scope",
              "lua-memory-limit", "lua-undeclared-keys", "lua-time-slice",
              "backend-tls-ca-cert-file", "backend-tls-ca-cert-dir", "backend-tls-cert-file",
              "backend-tls-key-file", "backend-tls-verify", "functions-file", "lua-script-pipelining",
              "lua-rollback-on-error", "store-emulate", "lua-debug-sessions-max", "metrics-port",
              "metrics-bind",
              # pools (twemproxy's settings) and Redis Cluster stores
              "distribution", "hash", "hash-tag", "auto-eject-hosts", "server-failure-limit",
              "server-retry-timeout", "cluster-refresh-interval",
              # live migration
              "migrate-from", "migrate-rate", "migrate-pause",
              "fleet-name", "fleet-announce", "fleet-lease-ms", "fleet-redirect"}

PASSWORD = "Sekr1t-pw"

# Known proxy bugs are expected failures only when a proxy is under test;
# under EVALPROXY_TARGET=store those tests simply run against the store.
PROXY_RUN = os.environ.get("EVALPROXY_TARGET", "").strip().lower() != "store"


def proxy_binary():
    b = os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy")
    return os.path.abspath(b)


@pytest.fixture
def binary():
    if not PROXY_RUN:
        pytest.skip("EVALPROXY_TARGET=store: this checks the proxy process itself")
    b = proxy_binary()
    if not os.access(b, os.X_OK):
        pytest.fail("proxy binary %s is missing (build it, or set EVALPROXY_BIN)" % b)
    return b


@pytest.fixture
def sockdir():
    # Unix socket paths must stay under 108 bytes; pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="epx", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# Processes started by this file

class _Addr:
    def __init__(self, host, port):
        self.host, self.port = host, port


def _wait_ready(p, timeout=30.0):
    """Until the proxy answers PING (+PONG, or -NOAUTH when it wants a password)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError("proxy exited with status %s before it was ready\n%s"
                               % (p.proc.returncode, p.diagnostics()))
        try:
            with RespConnection(HOST, p.port, timeout=1.0, connect_timeout=1.0) as c:
                last = c.call("PING")
                if last == b"+PONG\r\n" or last.startswith(b"-NOAUTH"):
                    return
        except (OSError, ReplyTimeout, ConnectionClosed) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError("proxy not ready after %.0fs (last: %r)\n%s" % (timeout, last, p.diagnostics()))


def _check_exit(p):
    status = p.stop()
    report = p.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report
    assert status is not None, "the proxy did not exit within 20s of SIGTERM\n" + p.diagnostics()
    assert status in (0, -15), "the proxy exited with status %s\n%s" % (status, p.diagnostics())


@contextlib.contextmanager
def own_proxy(workdir, backend_url, extra=(), conf=None, bind=None):
    """A proxy process of our own; stopped and checked on the way out."""
    p = ProxyProcess(proxy_binary(), _Addr(HOST, 1), str(workdir))
    p.args[p.args.index("--backend") + 1] = backend_url
    if bind is not None:
        i = p.args.index("--bind")
        p.args[i + 1:i + 2] = list(bind)
    if conf is not None:
        p.args.insert(1, str(conf))
        if any(line.split()[:1] == ["backend"] for line in open(conf)):
            i = p.args.index("--backend")  # the file names the store: once only
            del p.args[i:i + 2]
    p.args += list(extra)
    p._stderr = open(p.stderr_path, "ab")
    p.proc = subprocess.Popen(p.args, stdout=p._stderr, stderr=p._stderr, cwd=p.workdir,
                              start_new_session=True)
    ok = False
    try:
        _wait_ready(p)
        yield p
        ok = True
    finally:
        if ok:
            _check_exit(p)
        else:
            p.stop()


def redis_url(server, auth="", db=None):
    return "redis://%s%s:%d%s" % (auth, server.host, server.port, "" if db is None else "/%d" % db)


@contextlib.contextmanager
def own_redis(workdir, name, password=None, extra=(), port=None, rename_scripting=True):
    """A redis-server of our own. A password is set after start, since the
    harness waits for +PONG."""
    s = RedisServer(name, str(workdir), rename_scripting=rename_scripting, extra=extra, port=port)
    s.start()
    try:
        if password:
            with s.connect() as c:
                assert c.call("CONFIG", "SET", "requirepass", password) == b"+OK\r\n"
        yield s
    finally:
        s.stop()


def run_proxy(*args, timeout=20):
    return subprocess.run([proxy_binary()] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def pairs(raw):
    """A CONFIG GET reply as a sorted list of (name, value)."""
    v = parse_reply(raw)
    assert isinstance(v, list), raw
    return sorted(zip(v[0::2], v[1::2]))


def read_until_suffix(conn, suffix, timeout=10.0):
    """Every byte the peer sends up to and including `suffix`."""
    deadline = time.monotonic() + timeout
    while not conn.buf.endswith(suffix):
        conn._fill(deadline)
    out = bytes(conn.buf)
    conn.buf.clear()
    return out


def wait_closed(conn, timeout):
    """True if the peer closes the connection within timeout (nothing else arrives)."""
    try:
        data = conn.read_until_close(timeout=timeout)
    except ReplyTimeout:
        return False
    assert data == b"", "unexpected bytes before the close: %r" % data
    return True


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Command line

def test_version_and_help(binary):
    for flag in ("--version", "-v"):
        r = run_proxy(flag)
        assert r.returncode == 0, r
        assert re.match(rb"^evalproxy v=\S+ redis-compat=7\.0\.15\n$", r.stdout), r.stdout
    for flag in ("--help", "-h"):
        r = run_proxy(flag)
        assert r.returncode == 0, r
        assert r.stdout.startswith(b"Usage: ./evalproxy"), r.stdout
        assert b"--test-config" in r.stdout


def test_test_config_accepts_the_shipped_file(binary):
    r = run_proxy("--test-config", os.path.join(harness.REPO_ROOT, "proxy.conf"))
    assert r.returncode == 0, r
    assert r.stdout == b"Configuration test passed\n"


@pytest.mark.parametrize("lines,lineno,reason", [
    (["port 7000", "bind 127.0.0.1", "no-such-directive 1"], 3,
     "'no-such-directive': Bad directive or wrong number of arguments"),
    (["port 7000", "maxclients many"], 2, "'maxclients': argument couldn't be parsed into an integer"),
    (["port 70000"], 1, "'port': argument must be between 0 and 65535 inclusive"),
    (["# comment", "", "loglevel loud"], 3, "'loglevel': argument(s) must be one of the following"),
    (["timeout 1", 'requirepass "unterminated'], 2, "Unbalanced quotes in configuration line"),
    (["proto-max-bulk-len 10"], 1, "'proto-max-bulk-len': argument must be between 1048576"),
    (["backend-admin-commands perhaps"], 1, "'backend-admin-commands': argument must be 'yes' or 'no'"),
], ids=["unknown", "not-int", "range", "enum", "quotes", "min", "bool"])
def test_test_config_rejects_bad_files(binary, tmp_path, lines, lineno, reason):
    conf = tmp_path / "bad.conf"
    conf.write_text("\n".join(lines) + "\n")
    r = run_proxy("--test-config", str(conf))
    assert r.returncode == 1, r
    err = r.stderr.decode()
    assert "%s:%d: %s" % (conf, lineno, reason) in err, err
    assert b"Configuration test passed" not in r.stdout


def test_test_config_missing_file(binary, tmp_path):
    missing = str(tmp_path / "nope.conf")
    r = run_proxy("--test-config", missing)
    assert r.returncode == 1
    assert "can't open config file '%s': No such file or directory" % missing in r.stderr.decode()


def test_test_config_bad_backend_names_file_and_line(binary, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("port 7000\nbackend redis://127.0.0.1:6379/notadb\n")
    r = run_proxy("--test-config", str(conf))
    assert r.returncode == 1
    assert "%s:2:" % conf in r.stderr.decode(), r.stderr


def test_unknown_directive_on_command_line(binary):
    r = run_proxy("--test-config", "--port", "7000", "--no-such-thing", "1")
    assert r.returncode == 1
    assert "command line: '--no-such-thing': Bad directive or wrong number of arguments" \
        in r.stderr.decode(), r.stderr
    r = run_proxy("--test-config", "--maxclients", "0")
    assert r.returncode == 1
    assert "'--maxclients': argument must be between 1 and" in r.stderr.decode(), r.stderr
    # A stray word that is not --directive.
    r = run_proxy("--test-config", "--port", "7000", "--timeout", "1", "--", "x")
    assert r.returncode == 1


def test_config_file_plus_overrides(binary, store, tmp_path):
    file_port, port = free_port(), free_port()
    conf = tmp_path / "proxy.conf"
    conf.write_text("port %d\nbind 127.0.0.1\ntimeout 7\nmaxclients 99\nbackend redis://%s:%d\n"
                    % (file_port, store.host, store.port))
    r = run_proxy("--test-config", str(conf), "--maxclients", "123")
    assert r.returncode == 0, r
    with own_proxy(tmp_path / "p", redis_url(store), conf=conf,
                   extra=["--maxclients", "123"]) as p:
        # The harness puts --port on the command line: it wins over the file.
        assert p.port != file_port
        with p.connect() as c:
            assert pairs(c.call("CONFIG", "GET", "maxclients", "timeout", "port")) == [
                (b"maxclients", b"123"), (b"port", str(p.port).encode()), (b"timeout", b"7")]
            info = parse_reply(c.call("INFO", "server")).decode()
            assert "config_file:%s\r\n" % os.path.realpath(str(conf)) in info
        with pytest.raises(OSError):
            socket.create_connection((HOST, file_port), timeout=1).close()


# ---------------------------------------------------------------------------
# CONFIG

def test_config_get_proxy_directives_match_redis(real_proxy, oracle, store):
    names = ["maxclients", "timeout", "tcp-keepalive", "proto-max-bulk-len",
             "client-query-buffer-limit", "busy-reply-threshold", "lua-time-limit", "databases",
             "tcp-backlog", "unixsocket", "unixsocketperm", "bind", "requirepass"]
    with oracle.connect() as o, real_proxy.connect() as p:
        for name in names:
            e, a = o.call("CONFIG", "GET", name), p.call("CONFIG", "GET", name)
            assert e == a, (name, e, a)
        # Several names and overlapping patterns in one call: no duplicates.
        args = ("CONFIG", "GET", "maxclients", "max*", "timeout", "lua-time-limit")
        assert pairs(p.call(*args)) == pairs(o.call(*args))
        for pattern in ("maxclient?", "*-threshold", "*time-limit*", "[mt]imeout", "no-such-*"):
            assert pairs(p.call("CONFIG", "GET", pattern)) == pairs(o.call("CONFIG", "GET", pattern)), pattern
        # Proxy-only directives with their documented defaults.
        got = dict(pairs(p.call("CONFIG", "GET", "backend*", "busy-reply-scope", "lua-*")))
        assert got[b"backend"] == redis_url(store).encode()
        assert got[b"backend-connections"] == b"4"
        assert got[b"backend-admin-commands"] == b"no"
        assert got[b"backend-connect-timeout"] == b"2000"
        assert got[b"busy-reply-scope"] == b"keys"
        assert got[b"lua-memory-limit"] == b"1073741824"
        assert got[b"lua-undeclared-keys"] == b"lock"
        assert got[b"lua-time-slice"] == b"2000"
        assert got[b"lua-time-limit"] == b"5000"


def test_config_get_star(real_proxy, oracle):
    with oracle.connect() as o, real_proxy.connect() as p:
        theirs = dict(pairs(o.call("CONFIG", "GET", "*")))
        raw = p.call("CONFIG", "GET", "*")
        mine_list = pairs(raw)
        mine = dict(mine_list)
    assert len(mine) == len(mine_list), "duplicate names in CONFIG GET *"
    # Redis lists lua-time-limit or busy-reply-threshold for '*' depending on
    # its dict order; leave the alias out of the comparison.
    theirs.pop(b"lua-time-limit", None)
    mine.pop(b"lua-time-limit", None)
    missing = set(theirs) - set(mine)
    assert not missing, "parameters Redis has but the proxy does not list: %s" % sorted(missing)
    extra = {k.decode() for k in set(mine) - set(theirs)}
    assert extra == PROXY_ONLY
    for name in (b"maxclients", b"timeout", b"databases", b"hash-max-listpack-entries", b"save"):
        assert mine[name] == theirs[name], name


def test_config_get_client_output_buffer_limit(real_proxy, oracle):
    with oracle.connect() as o, real_proxy.connect() as p:
        assert p.call("CONFIG", "GET", "client-output-buffer-limit") == \
            o.call("CONFIG", "GET", "client-output-buffer-limit")


@pytest.mark.parametrize("args", [
    ("databases", "4"), ("unixsocket", "/tmp/x.sock"), ("no-such-param", "1"),
    ("maxclients", "abc"), ("timeout", "-1"), ("busy-reply-threshold", "x"),
    ("proto-max-bulk-len", "1"),
    ("proto-max-bulk-len", "12q"),
    ("client-output-buffer-limit", "normal 0 0"), ("client-output-buffer-limit", "bogus 0 0 0"),
    ("client-output-buffer-limit", "normal x 0 0"), ("timeout",),
], ids=lambda a: "-".join(a))
def test_config_set_errors_match_redis(diff, args):
    diff.run([("CONFIG", "SET") + tuple(args)])


def test_config_set_errors_proxy_only(real_proxy):
    with real_proxy.connect() as c:
        # port and bind change at runtime, as in Redis (test_client_modes.py).
        for name in ("backend", "backend-connections", "logfile", "pidfile"):
            assert c.call("CONFIG", "SET", name, "1") == (
                b"-ERR CONFIG SET failed (possibly related to argument '%s') - "
                b"can't set immutable config\r\n" % name.encode()), name
        assert c.call("CONFIG", "SET", "backend-admin-commands", "maybe") == (
            b"-ERR CONFIG SET failed (possibly related to argument 'backend-admin-commands') - "
            b"argument must be 'yes' or 'no'\r\n")
        assert c.call("CONFIG", "SET", "busy-reply-scope", "some") == (
            b"-ERR CONFIG SET failed (possibly related to argument 'busy-reply-scope') - "
            b"argument(s) must be one of the following: keys, all\r\n")
        assert c.call("CONFIG", "SET", "lua-time-slice", "5") == (
            b"-ERR CONFIG SET failed (possibly related to argument 'lua-time-slice') - "
            b"argument must be between 100 and 1000000 inclusive\r\n")
        # The proxy's own start-only parameters take their value again (a
        # client setting back what CONFIG GET * listed); Redis's still refuse.
        for name in ("backend", "backend-connections"):
            value = pairs(c.call("CONFIG", "GET", name))[0][1]
            assert c.call("CONFIG", "SET", name, value) == b"+OK\r\n", name
        for name in ("logfile", "databases"):
            value = pairs(c.call("CONFIG", "GET", name))[0][1]
            assert c.call("CONFIG", "SET", name, value).startswith(b"-ERR CONFIG SET failed"), name
        # Nothing changed.
        assert pairs(c.call("CONFIG", "GET", "busy-reply-scope", "lua-time-slice")) == [
            (b"busy-reply-scope", b"keys"), (b"lua-time-slice", b"2000")]


def test_config_set_runtime_directives(real_proxy):
    with real_proxy.connect() as c:
        try:
            assert c.call("CONFIG", "SET", "lua-time-limit", "6000") == b"+OK\r\n"
            assert pairs(c.call("CONFIG", "GET", "busy-reply-threshold")) == [
                (b"busy-reply-threshold", b"6000")]
            assert c.call("CONFIG", "SET", "busy-reply-threshold", "7000", "lua-time-slice", "3000",
                          "client-query-buffer-limit", "2mb") == b"+OK\r\n"
            assert pairs(c.call("CONFIG", "GET", "lua-time-limit", "lua-time-slice",
                                "client-query-buffer-limit")) == [
                (b"client-query-buffer-limit", b"2097152"), (b"lua-time-limit", b"7000"),
                (b"lua-time-slice", b"3000")]
            assert c.call("CONFIG", "SET", "client-output-buffer-limit",
                          "normal 1mb 512kb 10") == b"+OK\r\n"
            v = parse_reply(c.call("CONFIG", "GET", "client-output-buffer-limit"))[1]
            assert v.startswith(b"normal 1048576 524288 10 "), v
        finally:
            assert c.call("CONFIG", "SET", "busy-reply-threshold", "5000", "lua-time-slice", "2000",
                          "client-query-buffer-limit", "1gb", "client-output-buffer-limit",
                          "normal 0 0 0") == b"+OK\r\n"


def _restore_defaults(diff):
    for ep in (diff.oracle, diff.proxy):
        with ep.connect() as c:
            assert c.call("CONFIG", "SET", "busy-reply-threshold", "5000") == b"+OK\r\n"
            assert c.call("CONFIG", "SET", "timeout", "0") == b"+OK\r\n"
            assert c.call("CONFIG", "SET", "maxclients", "10000") == b"+OK\r\n"


def test_config_set_is_all_or_nothing(diff):
    try:
        diff.run([("CONFIG", "SET", "busy-reply-threshold", "8000", "timeout", "-5"),
                  ("CONFIG", "GET", "busy-reply-threshold")])
    finally:
        _restore_defaults(diff)


def test_config_set_duplicate_parameter(diff):
    try:
        diff.run([("CONFIG", "SET", "timeout", "5", "timeout", "6"),
                  ("CONFIG", "SET", "maxclients", "100", "MAXCLIENTS", "200"),
                  ("CONFIG", "GET", "timeout"), ("CONFIG", "GET", "maxclients")])
    finally:
        _restore_defaults(diff)


def test_config_set_proxy_and_store_parameters_together(diff):
    diff.run([("CONFIG", "SET", "timeout", "0", "hash-max-listpack-entries", "512")])


def test_config_store_parameters_go_to_the_store(real_proxy, store, oracle):
    with oracle.connect() as o, real_proxy.connect() as p, store.connect() as s:
        for name in ("save", "hash-max-listpack-entries", "appendonly", "maxmemory-policy"):
            assert p.call("CONFIG", "GET", name) == o.call("CONFIG", "GET", name), name
        try:
            assert p.call("CONFIG", "SET", "hash-max-listpack-entries", "77") == b"+OK\r\n"
            assert s.call("CONFIG", "GET", "hash-max-listpack-entries") == \
                b"*2\r\n$25\r\nhash-max-listpack-entries\r\n$2\r\n77\r\n"
            assert p.call("CONFIG", "GET", "hash-max-listpack-entries") == \
                b"*2\r\n$25\r\nhash-max-listpack-entries\r\n$2\r\n77\r\n"
            # The store's own error for its own parameter comes back as is.
            e = o.call("CONFIG", "SET", "hash-max-listpack-entries", "x")
            assert p.call("CONFIG", "SET", "hash-max-listpack-entries", "x") == e
        finally:
            assert s.call("CONFIG", "SET", "hash-max-listpack-entries", "512") == b"+OK\r\n"
        # The store's maxclients is not shown: the proxy's directive shadows it.
        assert s.call("CONFIG", "SET", "maxclients", "4321") == b"+OK\r\n"
        try:
            assert pairs(p.call("CONFIG", "GET", "maxclients")) == [(b"maxclients", b"10000")]
        finally:
            s.call("CONFIG", "SET", "maxclients", "10000")


def test_config_rewrite(binary, store, tmp_path):
    conf = tmp_path / "proxy.conf"
    original = ("# proxy under test\n"
                "bind 127.0.0.1\n"
                "port 6380\n"
                "backend redis://%s:%d\n"
                "timeout 0\n"
                "# keep this comment\n"
                "maxclients 10000\n"
                "maxclients 10000\n"
                "loglevel notice\n" % (store.host, store.port))
    conf.write_text(original)
    with own_proxy(tmp_path / "p", redis_url(store), conf=conf) as p:
        with p.connect() as c:
            assert c.call("CONFIG", "SET", "maxclients", "321", "timeout", "9",
                          "busy-reply-scope", "all", "lua-time-limit", "4000") == b"+OK\r\n"
            assert c.call("CONFIG", "REWRITE") == b"+OK\r\n"
            assert c.call("CONFIG", "SET", "busy-reply-scope", "keys") == b"+OK\r\n"
    text = conf.read_text()
    lines = text.splitlines()
    assert "# keep this comment" in lines and "# proxy under test" in lines
    assert "timeout 9" in lines
    assert lines.count("maxclients 321") == 1 and "maxclients 10000" not in lines
    assert "busy-reply-scope all" in lines
    assert "busy-reply-threshold 4000" in lines
    # The port from the command line is the one in effect: REWRITE writes it.
    assert "port %d" % p.port in lines and "bind 127.0.0.1" in lines
    # Directive lines keep their place: timeout is still before the comment.
    assert lines.index("timeout 9") < lines.index("# keep this comment") < lines.index("maxclients 321")
    r = run_proxy("--test-config", str(conf))
    assert r.returncode == 0, (r, text)


def test_config_rewrite_keeps_the_store_password(binary, tmp_path):
    """CONFIG GET shows the store password as ****; CONFIG REWRITE must still
    write the real one, or the rewritten file would lock the proxy out."""
    with own_redis(tmp_path / "s", "pwstore", password=PASSWORD) as s:
        conf = tmp_path / "proxy.conf"
        url = "redis://:%s@%s:%d" % (PASSWORD, s.host, s.port)
        conf.write_text("bind 127.0.0.1\nbackend %s\n" % url)
        with own_proxy(tmp_path / "p", url, conf=conf) as p:
            with p.connect() as c:
                assert c.call("SET", "rw:k", "1") == b"+OK\r\n"
                assert PASSWORD.encode() not in c.call("CONFIG", "GET", "backend")
                assert c.call("CONFIG", "REWRITE") == b"+OK\r\n"
        assert "backend %s" % url in conf.read_text().splitlines()


def test_config_rewrite_without_file(real_proxy):
    with real_proxy.connect() as c:
        assert c.call("CONFIG", "REWRITE") == b"-ERR The server is running without a config file\r\n"


def test_config_rewrite_quotes_values(binary, store, tmp_path):
    conf = tmp_path / "proxy.conf"
    text = open(os.path.join(harness.REPO_ROOT, "proxy.conf")).read()
    text = text.replace("bind 127.0.0.1 -::1", "bind 127.0.0.1")
    conf.write_text(text)
    with own_proxy(tmp_path / "p", redis_url(store), conf=conf) as p:
        with p.connect() as c:
            assert c.call("CONFIG", "SET", "requirepass", "two words") == b"+OK\r\n"
            assert c.call("AUTH", "two words") == b"+OK\r\n"
            assert c.call("CONFIG", "REWRITE") == b"+OK\r\n"
    r = run_proxy("--test-config", str(conf))
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------
# requirepass, differential against an oracle with the same password

@pytest.fixture(scope="module")
def auth_pair(store, tmp_path_factory):
    if not PROXY_RUN:
        pytest.skip("EVALPROXY_TARGET=store: needs a proxy with requirepass")
    base = tmp_path_factory.mktemp("auth")
    with own_redis(base / "oracle", "oracle-auth", password=PASSWORD, rename_scripting=False) as o:
        with own_proxy(base / "proxy", redis_url(store), extra=["--requirepass", PASSWORD]) as p:
            yield harness.Differ(o, p)


@pytest.mark.parametrize("steps", [
    [("GET", "k"), ("SET", "k", "v"), ("EVAL", "return 1", "0"), ("CONFIG", "GET", "timeout"),
     ("SELECT", "1"), ("COMMAND", "COUNT"), ("CLIENT", "ID"), ("INFO",)],
    [("PING",), ("ECHO", "x"), ("AUTH", "wrong"), ("AUTH", "default", "wrong"),
     ("AUTH", "other", PASSWORD), ("AUTH", "a", "b", "c"), ("AUTH",), ("GET", "k")],
    [("AUTH", PASSWORD), ("PING",), ("SET", "auth:k", "v"), ("GET", "auth:k"), ("DEL", "auth:k"),
     ("RESET",), ("GET", "auth:k")],
    [("AUTH", "default", PASSWORD), ("PING", "x"), ("AUTH", "wrong"), ("PING",)],
    [("NOSUCHCMD", "a", "b"), ("CLIENT", "NOSUCHSUB"), ("GET",), ("QUIT",)],
    [("HELLO", "2", "AUTH", "default", "wrong"), ("HELLO", "4"), ("HELLO", "x"),
     ("HELLO", "2", "AUTH", "default")],
    [Step(raw=b"PING\r\nGET k\r\nAUTH " + PASSWORD.encode() + b"\r\nGET k\r\n", replies=4)],
], ids=["noauth", "wrongpass", "auth", "auth-user", "unknown-quit", "hello-errors", "inline"])
def test_requirepass_matches_redis(auth_pair, steps):
    auth_pair.run(steps)


def test_requirepass_hello_auth(auth_pair):
    def session(ep):
        with ep.connect() as c:
            r1 = parse_reply(c.call("HELLO", "2", "AUTH", "default", PASSWORD, "SETNAME", "cli1"))
            return r1, c.call("CLIENT", "GETNAME"), c.call("GET", "nokey")
    o, p = session(auth_pair.oracle), session(auth_pair.proxy)
    # Everything but the connection id is the same.
    o[0][7] = p[0][7] = 0
    assert o == p


def test_requirepass_hello_without_auth(auth_pair):
    auth_pair.run([("HELLO",), ("HELLO", "2"), ("HELLO", "3")])


@pytest.mark.parametrize("raw", [
    encode_command(*(["DEL"] + ["k"] * 10)),          # 11 arguments
    b"*1\r\n$20000\r\n",                             # a bulk above 16 KB
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n",
], ids=["multibulk-11", "bulk-20000", "bulk-later"])
def test_requirepass_protocol_limits_before_auth(auth_pair, raw):
    auth_pair.run([Step(raw=raw, close=True)])


def test_requirepass_limits_after_auth(auth_pair):
    # Authenticated clients may send long commands.
    auth_pair.run([("AUTH", PASSWORD), ("DEL",) + ("auth:x",) * 12,
                   ("SET", "auth:x", "y" * 20000), ("STRLEN", "auth:x"), ("DEL", "auth:x")])


def test_requirepass_quit_before_auth(auth_pair):
    auth_pair.run([("GET", "k"), Step(args=("QUIT",), close=True)])


# ---------------------------------------------------------------------------
# Limits

def test_maxclients(binary, store, tmp_path):
    with own_proxy(tmp_path / "p", redis_url(store)) as p:
        conns = [p.connect()]
        try:
            assert conns[0].call("CONFIG", "SET", "maxclients", "5") == b"+OK\r\n"
            for _ in range(4):
                c = p.connect()
                conns.append(c)
                assert c.call("PING") == b"+PONG\r\n"
            sixth = p.connect()
            try:
                assert sixth.read_until_close(timeout=5) == b"-ERR max number of clients reached\r\n"
            finally:
                sixth.close()
            # The five still work; once one leaves, a new client gets in.
            for c in conns:
                assert c.call("PING") == b"+PONG\r\n"
            conns.pop().close()
            deadline = time.monotonic() + 5
            while True:
                with p.connect() as c:
                    try:
                        if c.call("PING", timeout=2) == b"+PONG\r\n":
                            break
                    except (ConnectionClosed, ReplyTimeout):
                        pass
                assert time.monotonic() < deadline, "no room after a client left"
                time.sleep(0.05)
            info = parse_reply(conns[0].call("INFO", "stats")).decode()
            assert int(re.search(r"rejected_connections:(\d+)", info).group(1)) >= 1
        finally:
            for c in conns:
                c.close()


def test_timeout_closes_idle_clients_only(binary, store, tmp_path):
    with own_proxy(tmp_path / "p", redis_url(store)) as p:
        with p.connect() as admin:
            assert admin.call("CONFIG", "SET", "timeout", "1") == b"+OK\r\n"
        idle, busy = p.connect(), p.connect()
        try:
            assert idle.call("PING") == b"+PONG\r\n"
            start = time.monotonic()
            closed_at = None
            while time.monotonic() - start < 3.5:
                assert busy.call("SET", "t:k", "v") == b"+OK\r\n"
                if closed_at is None:
                    try:
                        idle.sock.settimeout(0.01)
                        if idle.sock.recv(1) == b"":
                            closed_at = time.monotonic() - start
                    except socket.timeout:
                        pass
                    except ConnectionResetError:
                        closed_at = time.monotonic() - start
                time.sleep(0.25)
            assert closed_at is not None, "the idle client was not closed within 3.5s"
            assert 0.9 <= closed_at <= 3.2, closed_at
            assert busy.call("GET", "t:k") == b"$1\r\nv\r\n"
        finally:
            idle.close()
            busy.close()


def test_proto_max_bulk_len(binary, store, tmp_path):
    with own_redis(tmp_path / "o", "oracle-limits", rename_scripting=False) as o, \
            own_proxy(tmp_path / "p", redis_url(store)) as p:
        d = harness.Differ(o, p)
        for ep in (o, p):
            with ep.connect() as c:
                assert c.call("CONFIG", "SET", "proto-max-bulk-len", "1mb") == b"+OK\r\n"
        d.run([("SET", "k", "x" * 100), ("STRLEN", "k"),
               Step(raw=b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n", close=True)])
        # Exactly the limit is allowed.
        d.run([("SET", "k", "x" * 1048576), ("STRLEN", "k"), ("DEL", "k")])
        d.run([Step(raw=b"*1\r\n$-5\r\n", close=True)])


def test_client_query_buffer_limit(binary, store, tmp_path):
    with own_redis(tmp_path / "o", "oracle-qbuf", rename_scripting=False) as o, \
            own_proxy(tmp_path / "p", redis_url(store)) as p:
        for ep in (o, p):
            with ep.connect() as c:
                assert c.call("CONFIG", "SET", "client-query-buffer-limit", "1mb") == b"+OK\r\n"
                # Below the limit: an ordinary big value still works.
                assert c.call("SET", "qb", "x" * 500000) == b"+OK\r\n"
            # Above it: the connection is closed without a reply.
            c = ep.connect()
            try:
                c.send(b"*3\r\n$3\r\nSET\r\n$2\r\nqb\r\n$3000000\r\n")
                try:
                    for _ in range(30):
                        c.send(b"y" * 100000)
                except OSError:
                    pass
                assert wait_closed(c, 5), "%s kept a client above client-query-buffer-limit" % ep.name
                got = bytes(c.buf)
                assert got == b"", (ep.name, got)
            finally:
                c.close()
            with ep.connect() as c:
                assert c.call("STRLEN", "qb") == b":500000\r\n"


# ---------------------------------------------------------------------------
# Listening and files

def test_unixsocket_pidfile_logfile(binary, store, tmp_path, sockdir):
    sock = os.path.join(sockdir, "proxy.sock")
    pidfile = os.path.join(sockdir, "proxy.pid")
    with own_proxy(tmp_path / "p", redis_url(store),
                   extra=["--unixsocket", sock, "--unixsocketperm", "0770",
                          "--pidfile", pidfile]) as p:
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o770, oct(st.st_mode)
        with open(pidfile) as f:
            assert int(f.read().strip()) == p.proc.pid
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(5)
        u.connect(sock)
        try:
            u.sendall(encode_command("SET", "unix:k", "v") + encode_command("GET", "unix:k") +
                      encode_command("CLIENT", "INFO") + encode_command("DEL", "unix:k"))
            buf = b""
            while not buf.endswith(b":1\r\n"):
                chunk = u.recv(65536)
                assert chunk, buf
                buf += chunk
            assert buf.startswith(b"+OK\r\n$1\r\nv\r\n"), buf
            assert (" addr=%s:0 " % sock).encode() in buf and b"flags=U" in buf, buf
        finally:
            u.close()
        with p.connect() as c:
            assert pairs(c.call("CONFIG", "GET", "unixsocket*")) == [
                (b"unixsocket", sock.encode()), (b"unixsocketperm", b"770")]
    assert not os.path.exists(pidfile), "pidfile left behind after exit"
    assert not os.path.exists(sock), "unix socket left behind after exit"
    log = open(p.logfile).read()
    assert "Ready to accept connections" in log
    assert "Received SIGTERM" in log and "ready to exit" in log


def test_unixsocketperm_octal_as_documented(binary, tmp_path, sockdir):
    sock = os.path.join(sockdir, "p.sock")
    r = run_proxy("--test-config", "--unixsocket", sock, "--unixsocketperm", "700")
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_bind_ipv6(binary, store, tmp_path):
    with own_proxy(tmp_path / "p", redis_url(store), bind=["127.0.0.1", "::1"]) as p:
        with RespConnection("::1", p.port) as c:
            assert c.call("PING") == b"+PONG\r\n"
            info = parse_reply(c.call("CLIENT", "INFO")).decode()
            assert re.search(r" addr=::1:\d+ laddr=::1:%d " % p.port, info), info
        with p.connect() as c:
            assert pairs(c.call("CONFIG", "GET", "bind")) == [(b"bind", b"127.0.0.1 ::1")]


def test_bind_unavailable_address_fails_but_optional_is_skipped(binary, store, tmp_path):
    # 192.0.2.1 is TEST-NET-1: never a local address.
    with own_proxy(tmp_path / "p", redis_url(store), bind=["127.0.0.1", "-192.0.2.1"]) as p:
        with p.connect() as c:
            assert c.call("PING") == b"+PONG\r\n"
    r = subprocess.run([proxy_binary(), "--bind", "192.0.2.1", "--port", str(free_port()),
                        "--backend", redis_url(store)], capture_output=True, timeout=20)
    assert r.returncode == 1
    assert b"Could not create server TCP listening socket 192.0.2.1" in r.stdout + r.stderr


# ---------------------------------------------------------------------------
# Backend URLs

@pytest.fixture(scope="module")
def pw_store(tmp_path_factory):
    d = tempfile.mkdtemp(prefix="eps", dir="/tmp")
    sock = os.path.join(d, "store.sock")
    base = tmp_path_factory.mktemp("pwstore")
    try:
        with own_redis(base / "store", "store-pw", password=PASSWORD,
                       extra=["unixsocket %s" % sock, "unixsocketperm 700"]) as s:
            s.unixsocket = sock
            yield s
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _store_get(server, db, key):
    with server.connect() as c:
        assert c.call("AUTH", PASSWORD) == b"+OK\r\n"
        assert c.call("SELECT", str(db)) == b"+OK\r\n"
        return c.call("GET", key)


@pytest.mark.parametrize("auth", [":%s@" % PASSWORD, "default:%s@" % PASSWORD,
                                  ":%s@" % PASSWORD.replace("-", "%2D")],
                         ids=["password", "user-password", "percent-encoded"])
def test_backend_with_password(binary, pw_store, tmp_path, auth):
    with own_proxy(tmp_path / "p", redis_url(pw_store, auth=auth)) as p:
        with p.connect() as c:
            assert c.call("SET", "url:k", auth) == b"+OK\r\n"
            assert c.call("GET", "url:k") == b"$%d\r\n%s\r\n" % (len(auth), auth.encode())
            assert c.call("DEL", "url:k") == b":1\r\n"


def test_backend_db_selects_the_database(binary, pw_store, tmp_path):
    with own_proxy(tmp_path / "p", redis_url(pw_store, auth=":%s@" % PASSWORD, db=5)) as p:
        with p.connect() as c:
            assert c.call("SET", "db:k", "five") == b"+OK\r\n"
            assert "db=5 " in parse_reply(c.call("CLIENT", "INFO")).decode()
            assert c.call("SELECT", "2") == b"+OK\r\n"
            assert c.call("SET", "db:k", "two") == b"+OK\r\n"
            # RESET goes back to the URL's database, not 0.
            assert c.call("RESET") == b"+RESET\r\n"
            assert c.call("GET", "db:k") == b"$4\r\nfive\r\n"
        assert _store_get(pw_store, 5, "db:k") == b"$4\r\nfive\r\n"
        assert _store_get(pw_store, 2, "db:k") == b"$3\r\ntwo\r\n"
        assert _store_get(pw_store, 0, "db:k") == b"$-1\r\n"
        with p.connect() as c:
            assert c.call("DEL", "db:k") == b":1\r\n"
            assert c.call("SELECT", "2") == b"+OK\r\n"
            assert c.call("DEL", "db:k") == b":1\r\n"


def test_backend_unix_socket(binary, tmp_path, sockdir):
    sock = os.path.join(sockdir, "s.sock")
    with own_redis(tmp_path / "s", "store-unix", extra=["unixsocket %s" % sock]) as s, \
            own_proxy(tmp_path / "p", "unix://%s?db=3" % sock) as p:
        with p.connect() as c:
            assert c.call("SET", "ux:k", "v") == b"+OK\r\n"
            assert c.call("EVAL", "return redis.call('GET', KEYS[1])", "1", "ux:k") == b"$1\r\nv\r\n"
        with s.connect() as c:
            assert c.call("SELECT", "3") == b"+OK\r\n"
            assert c.call("GET", "ux:k") == b"$1\r\nv\r\n"
            clients = parse_reply(c.call("CLIENT", "LIST")).decode()
            assert "flags=U" in clients, clients


def test_backend_wrong_password(binary, pw_store, tmp_path):
    secret = "WrongPw-9f3k"
    url = redis_url(pw_store, auth="default:%s@" % secret)
    with own_proxy(tmp_path / "p", url) as p:
        with p.connect() as c:
            t0 = time.monotonic()
            r = c.call("SET", "k", "v", timeout=3)
            assert time.monotonic() - t0 < 2
            assert r.startswith(b"-ERR backend %s:%d is unavailable: " % (
                pw_store.host.encode(), pw_store.port)), r
            assert b"WRONGPASS" in r or b"AUTH" in r, r
            # Local commands keep working.
            assert c.call("PING") == b"+PONG\r\n"
            r = c.call("EVAL", "return redis.call('GET', 'k')", "0", timeout=3)
            assert r.startswith(b"-"), r
            info = c.call("INFO", "everything")
            assert b"backend_status:down" in info
            whole = c.call("CONFIG", "GET", "*")
        log = open(p.logfile).read() + open(p.stderr_path).read()
        for where, text in (("INFO", info), ("reply", r), ("log", log.encode())):
            assert secret.encode() not in text, "the store password appears in the %s" % where
        # CONFIG GET of anything but `backend` itself must not show it either.
        v = parse_reply(whole)
        leaked = [v[i] for i in range(0, len(v), 2) if v[i] != b"backend" and secret.encode() in v[i + 1]]
        assert not leaked, leaked


def test_config_get_backend_hides_password(binary, pw_store, tmp_path):
    with own_proxy(tmp_path / "p", redis_url(pw_store, auth=":%s@" % PASSWORD)) as p:
        with p.connect() as c:
            r = c.call("CONFIG", "GET", "backend")
            assert r.startswith(b"*2\r\n$7\r\nbackend\r\n")
            assert PASSWORD.encode() not in r, r


# ---------------------------------------------------------------------------
# Store administration

def test_backend_admin_commands_refused(real_proxy, store):
    with real_proxy.connect() as c:
        # SHUTDOWN is the proxy's own (test_operations.py).
        for cmd in (("DEBUG", "SLEEP", "0"),
                    ("REPLICAOF", "127.0.0.1", "1"), ("SLAVEOF", "NO", "ONE"), ("SAVE",),
                    ("FAILOVER",)):
            r = c.call(*cmd)
            assert r == (b"-ERR command '%s' administers the store and is not relayed by evalproxy "
                         b"(set backend-admin-commands yes to allow it)\r\n" % cmd[0].lower().encode()), r
        for cmd in (("SYNC",), ("PSYNC", "?", "-1")):
            r = c.call(*cmd)
            assert r == b"-ERR command '%s' is not supported through evalproxy\r\n" % \
                cmd[0].lower().encode(), r
        # ACL is the proxy's own (its users, not the store's).
        assert c.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"
        assert c.call("PING") == b"+PONG\r\n"
    # The store is still the master it was and still up.
    with store.connect() as s:
        assert b"role:master" in s.call("INFO", "replication")


def test_backend_admin_commands_yes(real_proxy, store):
    with real_proxy.connect() as c, store.connect() as s:
        try:
            assert c.call("CONFIG", "SET", "backend-admin-commands", "yes") == b"+OK\r\n"
            # Relayed: the store's own answers come back.
            assert c.call("DEBUG", "SLEEP", "0") == s.call("DEBUG", "SLEEP", "0")
            assert c.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"
            # Never relayed, whatever the setting.
            for cmd in (("SYNC",), ("PSYNC", "?", "-1")):
                assert c.call(*cmd).startswith(b"-ERR command '%s' is not supported"
                                               % cmd[0].lower().encode())
        finally:
            assert c.call("CONFIG", "SET", "backend-admin-commands", "no") == b"+OK\r\n"
        assert c.call("DEBUG", "SLEEP", "0").startswith(b"-ERR command 'debug' administers")


# ---------------------------------------------------------------------------
# CLIENT

def _client_info(conn):
    text = parse_reply(conn.call("CLIENT", "INFO")).decode()
    assert text.endswith("\n")
    return dict(f.split("=", 1) for f in text.strip().split(" "))


def test_client_id_and_names(diff, real_proxy):
    with real_proxy.connect() as a, real_proxy.connect() as b:
        ia, ib = parse_reply(a.call("CLIENT", "ID")), parse_reply(b.call("CLIENT", "ID"))
        assert isinstance(ia, int) and ib > ia > 0
    diff.run([("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "app-1"), ("CLIENT", "GETNAME"),
              ("CLIENT", "SETNAME", "has space"), ("CLIENT", "SETNAME", "new\nline"),
              ("CLIENT", "SETNAME", "caf\xe9"), ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", ""),
              ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME"), ("CLIENT", "SETNAME", "a", "b"),
              ("CLIENT", "ID", "x"), ("CLIENT", "NOSUCH"), ("CLIENT", "NO-EVICT", "on"),
              ("CLIENT", "NO-EVICT", "off"), ("CLIENT", "NO-EVICT", "maybe"),
              ("CLIENT", "REPLY", "maybe"), ("CLIENT", "KILL", "ID", "0"),
              ("CLIENT", "KILL", "ID", "abc"), ("CLIENT", "KILL", "1.2.3.4:5"),
              ("CLIENT", "KILL", "ADDR", "1.2.3.4:5"), ("CLIENT", "KILL", "ADDR"),
              ("CLIENT", "KILL", "TYPE", "bogus"), ("CLIENT", "KILL", "SKIPME", "maybe"),
              ("CLIENT", "LIST", "TYPE", "bogus"), ("CLIENT", "LIST", "ID", "x"),
              ("CLIENT", "LIST", "ID", "999999"), ("CLIENT", "LIST", "TYPE", "pubsub")])


def test_client_list_and_info_fields(real_proxy, oracle):
    with oracle.connect() as o:
        o.call("CLIENT", "SETNAME", "n1")
        redis_fields = list(_client_info(o))
    with real_proxy.connect() as c, real_proxy.connect() as other:
        assert c.call("CLIENT", "SETNAME", "lister") == b"+OK\r\n"
        assert c.call("SELECT", "3") == b"+OK\r\n"
        assert c.call("GET", "some:key") == b"$-1\r\n"
        info = _client_info(c)
        assert list(info)[:len(redis_fields)] == redis_fields
        my_id = parse_reply(c.call("CLIENT", "ID"))
        assert info["id"] == str(my_id)
        assert info["name"] == "lister" and info["db"] == "3"
        assert info["cmd"] == "client|info", info
        addr = c.sock.getsockname()
        assert info["addr"] == "%s:%d" % addr
        assert info["laddr"] == "%s:%d" % (HOST, real_proxy.port)
        assert info["flags"] == "N" and info["resp"] == "2" and info["user"] == "default"
        # CLIENT INFO itself is the last command of the other connection.
        assert other.call("PING") == b"+PONG\r\n"
        lines = parse_reply(c.call("CLIENT", "LIST")).decode().strip().split("\n")
        rows = {r["id"]: r for r in (dict(f.split("=", 1) for f in line.split(" ")) for line in lines)}
        assert rows[str(my_id)]["cmd"] == "client|list" and rows[str(my_id)]["name"] == "lister"
        other_id = str(parse_reply(other.call("CLIENT", "ID")))
        assert rows[other_id]["cmd"] == "ping" and rows[other_id]["db"] == "0"
        ids = [int(i) for i in rows]
        assert ids == sorted(ids), "CLIENT LIST is not oldest first"
        # As Redis 7.0: the asking client's query buffer still holds its command.
        assert rows[str(my_id)]["qbuf"] == str(len(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")), rows[str(my_id)]
        assert rows[other_id]["qbuf"] == "0"
        only = parse_reply(c.call("CLIENT", "LIST", "ID", other_id)).decode()
        assert only.startswith("id=%s " % other_id) and only.count("\n") == 1


def test_client_setinfo(real_proxy):
    with real_proxy.connect() as c:
        assert c.call("CLIENT", "SETINFO", "lib-name", "redis-py") == b"+OK\r\n"
        assert c.call("CLIENT", "SETINFO", "lib-ver", "5.0.1") == b"+OK\r\n"
        info = _client_info(c)
        assert info["lib-name"] == "redis-py" and info["lib-ver"] == "5.0.1"
        assert c.call("CLIENT", "SETINFO", "lib-name", "bad name").startswith(b"-ERR ")
        assert c.call("CLIENT", "SETINFO", "nosuch", "x").startswith(b"-ERR ")
        assert _client_info(c)["lib-name"] == "redis-py"


def test_client_kill(real_proxy):
    with real_proxy.connect() as killer:
        victims = [real_proxy.connect() for _ in range(4)]
        try:
            ids = [parse_reply(v.call("CLIENT", "ID")) for v in victims]
            # By ID.
            assert killer.call("CLIENT", "KILL", "ID", str(ids[0])) == b":1\r\n"
            assert wait_closed(victims[0], 5)
            assert killer.call("CLIENT", "KILL", "ID", str(ids[0])) == b":0\r\n"
            # By ADDR (new form) and the old form.
            addr1 = "%s:%d" % victims[1].sock.getsockname()
            assert killer.call("CLIENT", "KILL", "ADDR", addr1) == b":1\r\n"
            assert wait_closed(victims[1], 5)
            addr2 = "%s:%d" % victims[2].sock.getsockname()
            assert killer.call("CLIENT", "KILL", addr2) == b"+OK\r\n"
            assert wait_closed(victims[2], 5)
            assert killer.call("CLIENT", "KILL", addr2) == b"-ERR No such client\r\n"
            # SKIPME: by default the caller is spared, SKIPME no includes it.
            mine = str(parse_reply(killer.call("CLIENT", "ID")))
            assert killer.call("CLIENT", "KILL", "ID", mine) == b":0\r\n"
            assert victims[3].call("PING") == b"+PONG\r\n"
            self_kill = real_proxy.connect()
            try:
                sid = str(parse_reply(self_kill.call("CLIENT", "ID")))
                self_kill.send_command("CLIENT", "KILL", "ID", sid, "SKIPME", "no")
                assert self_kill.read_until_close(timeout=5) == b":1\r\n"
            finally:
                self_kill.close()
            # The old form on oneself replies +OK and then closes.
            addr3 = "%s:%d" % victims[3].sock.getsockname()
            victims[3].send_command("CLIENT", "KILL", addr3)
            assert victims[3].read_until_close(timeout=5) == b"+OK\r\n"
            assert killer.call("PING") == b"+PONG\r\n"
        finally:
            for v in victims:
                v.close()


REPLY_SCRIPT = [
    ("CLIENT", "REPLY", "OFF"), ("SET", "r:a", "1"), ("GET", "r:a"), ("NOSUCH",),
    ("CLIENT", "REPLY", "SKIP"), ("INCR", "r:a"), ("PING",), ("CLIENT", "REPLY", "ON"),
    ("GET", "r:a"), ("CLIENT", "REPLY", "SKIP"), ("INCR", "r:a"), ("GET", "r:a"),
    ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "SKIP"), ("ECHO", "x"), ("ECHO", "y"),
    ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON"), ("ECHO", "z"),
    ("CLIENT", "REPLY", "SKIP"), ("EVAL", "return redis.call('INCR', KEYS[1])", "1", "r:a"),
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "r:a"),
    ("CLIENT", "REPLY", "OFF"), ("GET", "r:a"), ("CLIENT", "REPLY", "ON"),
    ("CLIENT", "REPLY", "SKIP"), ("GET",), ("DEL", "r:a"),
]




@pytest.mark.parametrize("pipelined", [
    True, False],
    ids=["pipelined", "one-by-one"])
def test_client_reply_byte_stream(diff, pipelined):
    sentinel = ("ECHO", "sentinel-end")
    want = b"$12\r\nsentinel-end\r\n"

    def stream(ep):
        with ep.connect() as c:
            if pipelined:
                c.send(b"".join(encode_command(*a) for a in REPLY_SCRIPT + [sentinel]))
            else:
                for a in REPLY_SCRIPT + [sentinel]:
                    c.send_command(*a)
                    time.sleep(0.01)
            try:
                return read_until_suffix(c, want, timeout=3)
            except ReplyTimeout:
                return "<<no sentinel within 3s; got %r>>" % bytes(c.buf)
    expected, actual = stream(diff.oracle), stream(diff.proxy)
    assert actual == expected


def test_client_reply_skip_local_command(real_proxy):
    with real_proxy.connect(timeout=2) as c:
        c.send_command("CLIENT", "REPLY", "SKIP")
        c.send_command("PING")
        time.sleep(0.1)  # let the skipped PING be handled on its own
        assert c.call("PING") == b"+PONG\r\n"


# ---------------------------------------------------------------------------
# COMMAND



@pytest.mark.parametrize("args", [
    ("COMMAND", "COUNT"), ("COMMAND", "INFO", "get", "set"), ("COMMAND", "INFO", "GET", "nosuch"),
    ("COMMAND", "INFO", "config|get", "client|kill"), ("COMMAND", "INFO", "eval", "evalsha_ro"),
    ("COMMAND", "DOCS", "get"), ("COMMAND", "DOCS", "set", "nosuch", "zadd"),
    ("COMMAND", "DOCS", "client|kill"), ("COMMAND", "GETKEYS", "SET", "k", "v"),
    ("COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"),
    ("COMMAND", "GETKEYS", "EVAL", "return 1", "2", "x", "y", "arg"),
    ("COMMAND", "GETKEYS", "SORT", "src", "BY", "w*", "STORE", "dst"),
    ("COMMAND", "GETKEYS", "ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"),
    ("COMMAND", "GETKEYS", "XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"),
    ("COMMAND", "GETKEYS", "MIGRATE", "h", "1", "", "0", "5", "KEYS", "a", "b"),
    ("COMMAND", "GETKEYS", "OBJECT", "ENCODING", "k"), ("COMMAND", "GETKEYS", "PING"),
    ("COMMAND", "GETKEYS", "GET"), ("COMMAND", "GETKEYS", "NOSUCH", "a"),
    ("COMMAND", "GETKEYS", "ECHO"), ("COMMAND", "GETKEYS"),
    ("COMMAND", "GETKEYS", "EVAL", "return 1", "5", "x"),
    ("COMMAND", "GETKEYS", "EVAL", "return 1", "0"),
    ("COMMAND", "GETKEYS", "FCALL", "f", "0"),
    ("COMMAND", "GETKEYSANDFLAGS", "EVAL_RO", "x", "0"),
    ("COMMAND", "GETKEYSANDFLAGS", "LMOVE", "a", "b", "LEFT", "RIGHT"),
    ("COMMAND", "GETKEYSANDFLAGS", "SET", "k", "v", "GET"),
    ("COMMAND", "LIST", "FILTERBY", "PATTERN", "xyz*"),
    ("COMMAND", "LIST", "FILTERBY", "MODULE", "none"), ("COMMAND", "LIST", "FILTERBY", "BOGUS", "x"),
    ("COMMAND", "LIST", "BOGUS"), ("COMMAND", "NOSUCH"),
    ("COMMAND", "HELP"),
], ids=lambda a: " ".join(a[1:])[:40])
def test_command_matches_redis(diff, args):
    diff.run([args])


# Redis lists commands (and a container's subcommands) in the order of its
# command dict, which is seeded per process: compare those lists as sets.
@pytest.mark.parametrize("args", [
    ("COMMAND", "LIST"), ("COMMAND", "LIST", "FILTERBY", "PATTERN", "x*"),
    ("COMMAND", "LIST", "FILTERBY", "PATTERN", "*get*"),
    ("COMMAND", "LIST", "FILTERBY", "PATTERN", "client|*"),
    ("COMMAND", "LIST", "FILTERBY", "PATTERN", "CONFIG|[gs]et"),
    ("COMMAND", "LIST", "FILTERBY", "ACLCAT", "hyperloglog"),
    ("COMMAND", "LIST", "FILTERBY", "ACLCAT", "scripting"),
], ids=lambda a: " ".join(a[1:])[:40])
def test_command_list_as_sets(diff, args):
    diff.run([Step(args=args, unordered=True)])


def _canonical_info(entry):
    """A COMMAND INFO entry with its subcommand list (element 9) sorted."""
    if isinstance(entry, list) and len(entry) == 10 and isinstance(entry[9], list):
        entry = entry[:9] + [sorted((_canonical_info(e) for e in entry[9]), key=repr)]
    return entry


def _canonical_docs(flat):
    """A COMMAND DOCS reply (name, docs, ...) as a sorted list, nested subcommands sorted."""
    out = []
    for name, doc in zip(flat[0::2], flat[1::2]):
        if isinstance(doc, list):
            doc = list(doc)
            for i in range(0, len(doc) - 1, 2):
                if doc[i] == b"subcommands":
                    doc[i + 1] = _canonical_docs(doc[i + 1])
        out.append((name, doc))
    return sorted(out, key=repr)


@pytest.mark.parametrize("args", [("COMMAND",), ("COMMAND", "INFO")])
def test_command_all_as_sets(diff, args):
    def entries(ep):
        with ep.connect() as c:
            return sorted((_canonical_info(e) for e in parse_reply(c.call(*args))), key=repr)
    mine, theirs = entries(diff.proxy), entries(diff.oracle)
    assert len(mine) == len(theirs) == 240
    assert mine == theirs


def test_command_docs_all(diff):
    def docs(ep):
        with ep.connect() as c:
            return _canonical_docs(parse_reply(c.call("COMMAND", "DOCS")))
    mine, theirs = docs(diff.proxy), docs(diff.oracle)
    assert [n for n, _ in mine] == [n for n, _ in theirs]
    for (name, a), (_, b) in zip(mine, theirs):
        assert a == b, name


# ---------------------------------------------------------------------------
# INFO and SELECT

def test_info_sections(real_proxy):
    with real_proxy.connect() as c:
        text = parse_reply(c.call("INFO")).decode()
        assert "redis_version:7.0.15\r\n" in text
        heads = re.findall(r"^# (\w+)\r$", text, re.M)
        for section in ("Server", "Clients", "Stats", "Backend", "Keyspace"):
            assert section in heads, heads
        assert not text.endswith("\r\n\r\n")
        everything = parse_reply(c.call("INFO", "everything")).decode()
        heads = re.findall(r"^# (\w+)\r$", everything, re.M)
        for section in ("Server", "Clients", "Stats", "Backend", "Keyspace"):
            assert section in heads, heads
        assert re.search(r"^# (Scripting|Locks)\r$", everything, re.M), everything
        for section, marker in (("server", "# Server"), ("clients", "connected_clients:"),
                                ("stats", "total_connections_received:"),
                                ("backend", "backend_status:up"), ("keyspace", "# Keyspace")):
            one = parse_reply(c.call("INFO", section)).decode()
            assert marker in one, (section, one)
            assert one.count("\r\n# ") == 0 or section in ("scripting", "locks"), (section, one)
        for section in ("scripting", "locks"):
            one = parse_reply(c.call("INFO", section)).decode()
            assert one.startswith("# ") and len(one.splitlines()) > 1, (section, one)
        assert parse_reply(c.call("INFO", "nosuchsection")) == b""


def test_info_keyspace_matches_redis(diff):
    steps = [("SET", "ks:a", "1"), ("SET", "ks:b", "2"), ("SELECT", "2"), ("SET", "ks:c", "3"),
             ("SELECT", "9"), ("HSET", "ks:h", "f", "v"), ("SELECT", "0"), ("INFO", "keyspace"),
             ("SELECT", "9"), ("INFO", "keyspace"), ("FLUSHDB",), ("INFO", "keyspace")]
    diff.run(steps)


def test_select_errors_match_redis(diff):
    diff.run([("SELECT", "16"), ("SELECT", "-1"), ("SELECT", "abc"), ("SELECT", "1.5"),
              ("SELECT", "2147483647"), ("SELECT", "-2147483648"), ("SELECT", ""), ("SELECT", "+1"), ("SELECT", "01"),
              ("SELECT",), ("SELECT", "1", "2"), ("SELECT", "15"), ("SET", "sel:k", "15"),
              ("SELECT", "0"), ("GET", "sel:k")])


def test_select_beyond_32_bits(diff):
    diff.run([("SELECT", "99999999999"), ("SELECT", "-2147483649")])


def test_select_per_client_on_shared_connections(real_proxy):
    conns = [real_proxy.connect() for _ in range(6)]
    try:
        for i, c in enumerate(conns):
            assert c.call("SELECT", str(i)) == b"+OK\r\n"
        for rnd in range(20):
            for i, c in enumerate(conns):
                c.send_command("SET", "sel:shared", "db%d-%d" % (i, rnd))
                c.send_command("GET", "sel:shared")
            for i, c in enumerate(conns):
                val = b"db%d-%d" % (i, rnd)
                assert c.read_replies(2) == [b"+OK\r\n", b"$%d\r\n%s\r\n" % (len(val), val)]
        for i, c in enumerate(conns):
            assert c.call("DEL", "sel:shared") == b":1\r\n"
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------------------
# The store going away

def test_store_down_at_start(binary, tmp_path):
    port = free_port()
    with own_proxy(tmp_path / "p", "redis://%s:%d" % (HOST, port)) as p:
        with p.connect() as c:
            t0 = time.monotonic()
            r = c.call("GET", "k", timeout=3)
            assert time.monotonic() - t0 < 2, "the error took too long"
            assert r.startswith(b"-ERR backend %s:%d is unavailable: " % (HOST.encode(), port)), r
            assert c.call("PING") == b"+PONG\r\n"
            with own_redis(tmp_path / "s", "late-store", port=port):
                deadline = time.monotonic() + 8
                while True:
                    r = c.call("SET", "late:k", "v", timeout=3)
                    if r == b"+OK\r\n":
                        break
                    assert r.startswith(b"-ERR backend "), r
                    assert time.monotonic() < deadline, "no success within 8s of the store starting"
                    time.sleep(0.1)
                assert c.call("GET", "late:k") == b"$1\r\nv\r\n"


@pytest.mark.store_restart
def test_store_killed_under_load(binary, tmp_path):
    nclients, depth = 20, 10
    with own_redis(tmp_path / "s", "load-store") as s, \
            own_proxy(tmp_path / "p", redis_url(s)) as p:
        stop = threading.Event()
        state = [{"ok": 0, "err": 0, "ok_after_err": 0, "problem": None} for _ in range(nclients)]

        def worker(i):
            st = state[i]
            try:
                with p.connect(timeout=10) as c:
                    while not stop.is_set():
                        c.send(b"".join(encode_command("INCR", "load:%d" % i) for _ in range(depth)))
                        for r in c.read_replies(depth):
                            if r.startswith(b":"):
                                st["ok"] += 1
                                if st["err"]:
                                    st["ok_after_err"] += 1
                            elif r.startswith(b"-ERR backend "):
                                st["err"] += 1
                            else:
                                st["problem"] = "unexpected reply %r" % r
                                return
                        time.sleep(0.005)
            except Exception as e:  # noqa: BLE001 - reported below
                st["problem"] = "%s: %s" % (type(e).__name__, e)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nclients)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            s.kill()
            time.sleep(0.7)
            s.restart()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if all(st["ok_after_err"] >= depth or st["problem"] for st in state):
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        problems = [(i, st["problem"]) for i, st in enumerate(state) if st["problem"]]
        assert not problems, problems
        assert all(st["ok"] > 0 for st in state)
        assert all(st["err"] > 0 for st in state), "some clients never saw the store down: %s" % state
        late = [i for i, st in enumerate(state) if st["ok_after_err"] < depth]
        assert not late, "clients without success after the restart: %s" % late
        assert p.alive()
        with p.connect() as c:
            assert c.call("INCR", "load:after") == b":1\r\n"
