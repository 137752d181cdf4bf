"""The operator's view, answered by the proxy itself: SLOWLOG and LATENCY
(compared in format with a redis-server 7.0 oracle), MONITOR, the
Prometheus /metrics endpoint, and the lifecycle (SIGTERM under load, SIGHUP,
SHUTDOWN)."""

import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

import harness
from conftest import proxy_binary
from harness import ProxyProcess, parse_reply


def call(conn, *args):
    return parse_reply(conn.call(*args))


@pytest.fixture
def own_proxy(tmp_path, store):
    """A proxy of this test's own; extra arguments through request.param."""
    procs = []

    def start(*extra):
        p = ProxyProcess(proxy_binary(), store, str(tmp_path / ("proxy%d" % len(procs))), extra_args=extra)
        procs.append(p)
        p.start()
        return p

    yield start
    for p in procs:
        status = p.stop()
        assert not p.sanitizer_report(), p.sanitizer_report()
        assert status in (0, -15), p.diagnostics()


# ---------------------------------------------------------------------------
# SLOWLOG

LONG = b"x" * 200
LONG_SCRIPT = "local pad = '%s' redis.call('set', KEYS[1], ARGV[1]) return 1" % ("y" * 120)

SLOWLOG_SESSION = [
    ("CLIENT", "SETNAME", "watcher"),
    ("SET", "sl:k", LONG),
    ("RPUSH", "sl:l") + tuple(str(i) for i in range(40)),
    ("AUTH", "nobody-has-this"),
    ("AUTH", "someone", "secret"),
    ("HELLO", "2", "AUTH", "default", "whatever"),
    ("EVAL", "redis.call('incr', KEYS[1]) return redis.call('get', KEYS[1])", "1", "sl:n"),
    ("EVAL", LONG_SCRIPT, "1", "sl:s", "v"),
    ("MULTI",),
    ("SET", "sl:t", "1"),
    ("INCR", "sl:t"),
    ("EXEC",),
    ("CLIENT", "SETNAME", "renamed"),
    ("GET", "sl:k"),
]


def slowlog_transcript(endpoint):
    with endpoint.connect() as c:
        assert call(c, "CONFIG", "SET", "slowlog-log-slower-than", "0") == b"OK"
        try:
            call(c, "SLOWLOG", "RESET")
            for cmd in SLOWLOG_SESSION:
                c.call(*cmd)
            entries = call(c, "SLOWLOG", "GET", "-1")
            length = call(c, "SLOWLOG", "LEN")
        finally:
            call(c, "CONFIG", "SET", "slowlog-log-slower-than", "10000")
            call(c, "SLOWLOG", "RESET")
    return entries, length


def test_slowlog_entries_match_redis(oracle, store, own_proxy):
    p = own_proxy()
    with oracle.connect() as c:
        c.call("FLUSHALL")
    want, want_len = slowlog_transcript(oracle)
    got, got_len = slowlog_transcript(p)
    assert got_len == want_len
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == 6
        assert isinstance(g[0], int) and isinstance(g[1], int) and isinstance(g[2], int)
        assert abs(g[1] - time.time()) < 60
        # argv, truncation and redaction byte for byte; the client's name as Redis.
        assert g[3] == w[3]
        assert g[5] == w[5], (g, w)
        if w[4] == b"?:0":
            assert g[4] == b"?:0", g
        else:
            assert re.fullmatch(rb"127\.0\.0\.1:\d+", g[4]), g
    ids = [e[0] for e in got]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


def test_slowlog_get_count_len_reset_help_match_redis(oracle, own_proxy):
    p = own_proxy("--slowlog-log-slower-than", "0", "--slowlog-max-len", "3")
    with oracle.connect() as oc:
        oc.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        oc.call("CONFIG", "SET", "slowlog-max-len", "3")
    try:
        for ep in (oracle, p):
            with ep.connect() as c:
                c.call("SLOWLOG", "RESET")
                for i in range(5):
                    c.call("SET", "k%d" % i, "v")
        with oracle.connect() as oc, p.connect() as pc:
            for args in (("SLOWLOG", "HELP"), ("SLOWLOG", "GET", "-2"), ("SLOWLOG", "GET", "x"),
                         ("SLOWLOG", "NOPE"), ("SLOWLOG", "LEN"), ("SLOWLOG", "GET", "a", "b")):
                assert pc.call(*args) == oc.call(*args), args
            # Redis lists globbed directives in no fixed order.
            pairs = lambda r: dict(zip(r[::2], r[1::2]))
            assert pairs(call(pc, "CONFIG", "GET", "slowlog-*")) == pairs(call(oc, "CONFIG", "GET", "slowlog-*"))
            w = call(oc, "SLOWLOG", "GET", "2")
            g = call(pc, "SLOWLOG", "GET", "2")
            assert [e[3] for e in g] == [e[3] for e in w]
            assert pc.call("SLOWLOG", "RESET") == b"+OK\r\n"
            assert call(pc, "SLOWLOG", "LEN") == 1  # the RESET itself
    finally:
        with oracle.connect() as oc:
            oc.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
            oc.call("CONFIG", "SET", "slowlog-max-len", "128")
            oc.call("SLOWLOG", "RESET")


def test_slow_script_appears_in_slowlog(own_proxy):
    p = own_proxy()
    with p.connect() as c:
        assert call(c, "CONFIG", "GET", "slowlog-log-slower-than") == [b"slowlog-log-slower-than", b"10000"]
        c.call("CONFIG", "SET", "slowlog-log-slower-than", "100000")
        c.call("SLOWLOG", "RESET")
        c.call("SET", "fast", "1")
        script = "local t = redis.call('time') local s = t[1]*1000000+t[2] " \
                 "while true do local n = redis.call('time') if n[1]*1000000+n[2] - s > 200000 then break end end " \
                 "return 'slow'"
        assert call(c, "EVAL", script, "0") == b"slow"
        entries = call(c, "SLOWLOG", "GET")
    assert len(entries) == 1, entries
    e = entries[0]
    body = script.encode()
    assert e[3] == [b"EVAL", body[:128] + b"... (%d more bytes)" % (len(body) - 128), b"0"]
    assert e[2] >= 200000
    assert re.fullmatch(rb"127\.0\.0\.1:\d+", e[4])


def test_latency_monitor_records_slow_commands(own_proxy, oracle):
    p = own_proxy("--latency-monitor-threshold", "50")
    with p.connect() as c, oracle.connect() as oc:
        assert c.call("LATENCY", "HELP") == oc.call("LATENCY", "HELP")
        assert call(c, "LATENCY", "LATEST") == []
        call(c, "EVAL", "local t = redis.call('time') local s = t[1]*1000000+t[2] "
                        "while true do local n = redis.call('time') "
                        "if n[1]*1000000+n[2] - s > 120000 then break end end return 1", "0")
        latest = call(c, "LATENCY", "LATEST")
        events = {e[0]: e for e in latest}
        assert b"command" in events and b"script" in events, latest
        ev = events[b"command"]
        assert len(ev) == 4 and ev[2] >= 100 and ev[3] >= ev[2] and abs(ev[1] - time.time()) < 60
        hist = call(c, "LATENCY", "HISTORY", "command")
        assert len(hist) == 1 and hist[0][1] == ev[2]
        assert call(c, "LATENCY", "HISTORY", "nothing") == []
        assert call(c, "LATENCY", "RESET", "command", "nothing") == 1
        assert call(c, "LATENCY", "RESET") == 1
        assert call(c, "LATENCY", "LATEST") == []


# ---------------------------------------------------------------------------
# Lifecycle

def wait_exit(p, timeout=30.0):
    try:
        return p.proc.wait(timeout)
    except Exception:
        pytest.fail("the proxy did not exit\n" + p.diagnostics(), pytrace=False)


def log_text(p):
    with open(p.logfile, "rb") as f:
        return f.read().decode("utf-8", "replace")


def test_sigterm_under_load_answers_everything_sent(own_proxy, store):
    p = own_proxy()
    with store.connect() as s:
        s.call("DEL", "lc:counter", "lc:list")
    script = "redis.call('incr', KEYS[1]) return redis.call('rpush', KEYS[2], ARGV[1])"
    cmds = []
    for i in range(20000):
        if i % 10 == 9:
            cmds.append(harness.encode_command("EVAL", script, "2", "lc:counter", "lc:list", str(i)))
        else:
            cmds.append(harness.encode_command("INCR", "lc:counter"))
    sock = socket.create_connection((p.host, p.port))
    replies = []
    done = threading.Event()

    def reader():
        buf = b""
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                buf += data
                while True:
                    try:
                        val, end = harness._parse(buf, 0)
                    except (ValueError, IndexError):
                        break
                    replies.append(val)
                    buf = buf[end:]
        finally:
            done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent_before_signal = None
    for k in range(0, len(cmds), 500):
        sock.sendall(b"".join(cmds[k:k + 500]))
        if k >= 10000 and sent_before_signal is None:
            sent_before_signal = k + 500
            p.proc.send_signal(signal.SIGTERM)
    # Nothing more from the client: the proxy may close it once it is answered.
    sock.shutdown(socket.SHUT_WR)
    assert done.wait(60), "the proxy never closed the connection"
    status = wait_exit(p)
    sock.close()
    assert status == 0, p.diagnostics()
    assert len(replies) >= sent_before_signal, (len(replies), sent_before_signal)
    assert not any(isinstance(r, tuple) for r in replies), [r for r in replies if isinstance(r, tuple)][:3]
    with store.connect() as s:
        counter = int(parse_reply(s.call("GET", "lc:counter")))
        listed = parse_reply(s.call("LRANGE", "lc:list", "0", "-1"))
    # Every reply received is on the store, and nothing ran unanswered.
    incrs = [r for i, r in enumerate(replies) if i % 10 != 9]
    evals = [r for i, r in enumerate(replies) if i % 10 == 9]
    assert counter == len(replies)
    assert max(incrs) <= counter
    assert len(listed) == len(evals) == (evals[-1] if evals else 0)
    text = log_text(p)
    assert "Received SIGTERM scheduling shutdown" in text
    assert "ready to exit" in text


def test_sigterm_waits_for_a_running_script(own_proxy):
    p = own_proxy("--busy-reply-threshold", "0")
    slow = ("local t = redis.call('time') local s = t[1]*1000000+t[2] "
            "while true do local n = redis.call('time') if n[1]*1000000+n[2] - s > 700000 then break end end "
            "return redis.call('set', KEYS[1], 'done')")
    c = p.connect()
    c.send_command("EVAL", slow, "1", "lc:slow")
    time.sleep(0.2)
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    # New connections are refused while the proxy drains.
    with pytest.raises(OSError):
        socket.create_connection((p.host, p.port), timeout=2).recv(1)
    assert parse_reply(c.read_reply(timeout=10)) == b"OK"
    c.close()
    assert wait_exit(p) == 0


def test_shutdown_timeout_bounds_the_drain(own_proxy):
    p = own_proxy("--shutdown-timeout", "1", "--busy-reply-threshold", "0")
    endless = "while true do redis.call('ping') end"
    c = p.connect()
    c.send_command("EVAL", endless, "0")
    time.sleep(0.2)
    start = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert wait_exit(p) == 0
    assert 0.8 < time.monotonic() - start < 10
    assert "shutdown-timeout reached" in log_text(p)
    c.close()


def test_sighup_reopens_the_log_and_keeps_running(own_proxy):
    p = own_proxy()
    rotated = p.logfile + ".1"
    os.rename(p.logfile, rotated)
    p.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not os.path.exists(p.logfile) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(p.logfile), "no new log file after SIGHUP"
    assert "Received SIGHUP" in log_text(p)
    with p.connect() as c:
        assert c.call("PING") == b"+PONG\r\n"
    # Again, with the file in place: still one proxy, still answering.
    p.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert p.alive()
    assert log_text(p).count("Received SIGHUP") == 2


def test_shutdown_command(own_proxy, oracle, store):
    p = own_proxy()
    with p.connect() as c, oracle.connect() as oc:
        for args in (("SHUTDOWN", "ABORT"), ("SHUTDOWN", "BOGUS"), ("SHUTDOWN", "NOSAVE", "SAVE"),
                     ("SHUTDOWN", "ABORT", "NOW")):
            assert c.call(*args) == oc.call(*args), args
        assert c.call("ACL", "SETUSER", "ops", "on", "nopass", "+@all", "-shutdown") == b"+OK\r\n"
    with p.connect() as c:
        c.call("AUTH", "ops", "x")
        assert c.call("SHUTDOWN").startswith(b"-NOPERM")
    assert p.alive()
    c = p.connect()
    c.send_command("SHUTDOWN", "NOSAVE")
    with pytest.raises(harness.ConnectionClosed):
        c.read_reply(timeout=10)
    assert wait_exit(p) == 0
    assert "User requested shutdown" in log_text(p)
    # The store is still there.
    with store.connect() as s:
        assert s.call("PING") == b"+PONG\r\n"


# ---------------------------------------------------------------------------
# Prometheus /metrics

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """{family: {"type", "help", "samples": [(name, {labels}, value)]}}, checking
    the text format 0.0.4 as it goes."""
    families = {}
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, {"samples": []})["help"] = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            fam = families.setdefault(name, {"samples": []})
            assert "type" not in fam and not fam["samples"], "TYPE after samples or twice: " + line
            fam["type"] = typ
            continue
        assert not line.startswith("#"), line
        m = SAMPLE_RE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels, value = m.group(1), m.group(3), m.group(4)
        labels = dict(LABEL_RE.findall(labels or ""))
        value = float(value)
        owner = None
        for suffix in ("", "_bucket", "_sum", "_count"):
            base = name[:len(name) - len(suffix)] if suffix and name.endswith(suffix) else (name if not suffix else None)
            if base in families and "type" in families[base]:
                owner = base
                break
        assert owner, "sample of no TYPE'd family: %r" % line
        families[owner]["samples"].append((name, labels, value))
    for name, fam in families.items():
        assert "type" in fam and "help" in fam, name
        assert name.startswith("evalproxy_"), name
        if fam["type"] == "counter":
            assert name.endswith("_total"), name
        if fam["type"] == "histogram":
            buckets = [(s[1]["le"], s[2]) for s in fam["samples"] if s[0] == name + "_bucket"]
            assert buckets and buckets[-1][0] == "+Inf", name
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), name
            count = [s[2] for s in fam["samples"] if s[0] == name + "_count"]
            assert count == [counts[-1]], name
    return families


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode("utf-8")


def value(fams, name, **labels):
    for fam in fams.values():
        for n, l, v in fam["samples"]:
            if n == name and l == labels:
                return v
    raise KeyError((name, labels))


def test_metrics_endpoint(own_proxy):
    port = harness.free_port()
    p = own_proxy("--metrics-port", str(port))
    with p.connect() as c:
        assert call(c, "CONFIG", "GET", "metrics-port") == [b"metrics-port", str(port).encode()]
        for i in range(7):
            c.call("SET", "m:%d" % i, "v")
        c.call("EVAL", "return redis.call('get', KEYS[1])", "1", "m:1")
        c.call("EVAL", "return redis.error_reply('nope')", "0")
        fams = parse_prometheus(scrape(port))
    assert value(fams, "evalproxy_commands_total", command="set") == 7
    assert value(fams, "evalproxy_commands_total", command="eval") == 2
    assert value(fams, "evalproxy_command_errors_total") >= 1
    assert value(fams, "evalproxy_connected_clients") == 1
    assert value(fams, "evalproxy_store_up") == 1
    assert value(fams, "evalproxy_scripts_finished_total") == 2
    assert value(fams, "evalproxy_used_memory_bytes") > 0
    assert value(fams, "evalproxy_store_round_trip_seconds_count") >= 8
    for name in ("evalproxy_scripts_running", "evalproxy_scripts_busy", "evalproxy_scripts_killed_total",
                 "evalproxy_script_reruns_total", "evalproxy_lock_waits_total", "evalproxy_lock_wait_seconds"):
        assert name in fams, name
    assert fams["evalproxy_store_round_trip_seconds"]["type"] == "histogram"
    with p.connect() as c, p.connect() as c2:
        c.call("PING")
        c2.call("PING")
        fams = parse_prometheus(scrape(port))
        assert value(fams, "evalproxy_connected_clients") == 2
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, "/other")
    assert e.value.code == 404


def test_metrics_off_by_default(own_proxy):
    p = own_proxy()
    with p.connect() as c:
        assert call(c, "CONFIG", "GET", "metrics-port") == [b"metrics-port", b"0"]
        assert call(c, "CONFIG", "GET", "metrics-bind") == [b"metrics-bind", b"127.0.0.1"]


def test_metrics_lock_waits_are_timed(own_proxy):
    port = harness.free_port()
    p = own_proxy("--metrics-port", str(port))
    slow = ("local t = redis.call('time') local s = t[1]*1000000+t[2] "
            "while true do local n = redis.call('time') if n[1]*1000000+n[2] - s > 300000 then break end end "
            "return redis.call('incr', KEYS[1])")
    a, b = p.connect(), p.connect()
    a.send_command("EVAL", slow, "1", "m:locked")
    time.sleep(0.1)
    b.send_command("INCR", "m:locked")
    assert parse_reply(a.read_reply(timeout=10)) == 1
    assert parse_reply(b.read_reply(timeout=10)) == 2
    a.close()
    b.close()
    fams = parse_prometheus(scrape(port))
    assert value(fams, "evalproxy_lock_waits_total") >= 1
    assert value(fams, "evalproxy_lock_wait_seconds_count") >= 1
    assert value(fams, "evalproxy_lock_wait_seconds_sum") >= 0.1


# ---------------------------------------------------------------------------
# MONITOR

MONITOR_SESSION = [
    ("SET", "mon:k", b"a b\x01\n\"\\"),
    ("AUTH", "nobody-has-this"),
    ("AUTH", "someone", "secret"),
    ("HELLO", "2", "AUTH", "default", "pw"),
    ("SELECT", "3"),
    ("EVAL", "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])", "1", "mon:x", 'v"q'),
    ("CONFIG", "GET", "maxmemory"),
    ("MULTI",),
    ("INCR", "mon:n"),
    ("EXEC",),
    ("multi",),
    ("incr", "mon:n"),
    ("exec",),
    ("MULTI",),
    ("NOSUCHCOMMAND", "x"),
    ("Exec",),
    ("NOSUCHCOMMAND", "x"),
    ("GET",),
    ("CLIENT", "SETNAME", "mon"),
    ("DEL", "mon:x", "mon:n"),
    ("SELECT", "0"),
    ("DEL", "mon:k"),
    ("PING",),
]

LINE_RE = re.compile(rb"^\+(\d+)\.(\d{6}) \[(\d+) ([^\]]+)\] (.*)$")


def monitor_transcript(endpoint, resp3=False):
    m = endpoint.connect()
    try:
        if resp3:
            assert parse_reply(m.call("HELLO", "3"))
        assert m.call("MONITOR") == b"+OK\r\n"
        with endpoint.connect() as c:
            for cmd in MONITOR_SESSION:
                c.call(*cmd)
        # The monitor's own commands: keys refused, PING shown.
        m.send_command("GET", "mon:k")
        m.send_command("PING")
        own, lines = [], []
        while sum(1 for l in lines if l.endswith(b'"PING"\r\n')) < 2 or len(own) < 2:
            raw = m.read_reply(timeout=10)
            if raw.startswith(b"+") and LINE_RE.match(raw.rstrip(b"\r\n")):
                lines.append(raw)
            else:
                own.append(raw)
        assert m.call("RESET") == b"+RESET\r\n"
    finally:
        m.close()
    out = []
    for raw in lines:
        mt = LINE_RE.match(raw.rstrip(b"\r\n"))
        assert mt, raw
        assert abs(int(mt.group(1)) - time.time()) < 60
        who = mt.group(4)
        if who != b"lua":
            assert re.fullmatch(rb"127\.0\.0\.1:\d+", who), raw
            who = b"client"
        out.append((mt.group(3), who, mt.group(5)))
    return own, out


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_monitor_matches_redis(oracle, own_proxy, resp3):
    p = own_proxy()
    want_own, want = monitor_transcript(oracle, resp3)
    got_own, got = monitor_transcript(p, resp3)
    # The key refused to a monitor, and its PING answered and shown.
    assert got_own == want_own
    assert got == want
    assert (b"3", b"lua", b'"set" "mon:x" "v\\"q"') in got


def test_monitor_refused_by_acl_only(own_proxy):
    p = own_proxy()
    with p.connect() as c:
        assert c.call("ACL", "SETUSER", "nomon", "on", "nopass", "+@all", "-monitor") == b"+OK\r\n"
        c.call("AUTH", "nomon", "x")
        assert c.call("MONITOR").startswith(b"-NOPERM")
    with p.connect() as m:
        assert m.call("MONITOR") == b"+OK\r\n"
        with p.connect() as c:
            c.call("SET", "mon:acl", "1")
        assert b'"SET" "mon:acl" "1"' in m.read_reply(timeout=10)


def test_slowlog_times_a_command_waiting_for_a_scripts_lock(own_proxy):
    p = own_proxy("--slowlog-log-slower-than", "100000")
    slow = ("local t = redis.call('time') local s = t[1]*1000000+t[2] "
            "while true do local n = redis.call('time') if n[1]*1000000+n[2] - s > 400000 then break end end "
            "return redis.call('incr', KEYS[1])")
    a, b = p.connect(), p.connect()
    a.send_command("EVAL", slow, "1", "sl:locked")
    time.sleep(0.1)
    b.send_command("INCR", "sl:locked")
    assert parse_reply(a.read_reply(timeout=10)) == 1
    assert parse_reply(b.read_reply(timeout=10)) == 2
    entries = call(b, "SLOWLOG", "GET")
    a.close()
    b.close()
    incr = [e for e in entries if e[3] == [b"INCR", b"sl:locked"]]
    assert len(incr) == 1, entries
    assert incr[0][2] >= 200000


def test_daemonize_writes_the_pidfile_and_stops_on_sigterm(tmp_path, store):
    import subprocess
    port = harness.free_port()
    pidfile = str(tmp_path / "evalproxy.pid")
    log = str(tmp_path / "proxy.log")
    r = subprocess.run([proxy_binary(), "--bind", "127.0.0.1", "--port", str(port), "--backend",
                        "redis://%s:%d" % (store.host, store.port), "--daemonize", "yes", "--pidfile", pidfile,
                        "--logfile", log], timeout=30)
    assert r.returncode == 0
    harness.wait_for_ping("127.0.0.1", port, 20)
    with open(pidfile) as f:
        pid = int(f.read())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the daemon did not stop")
    assert not os.path.exists(pidfile)
    with open(log) as f:
        assert "ready to exit" in f.read()


def test_supervised_systemd_notifies_ready_and_stopping(tmp_path, store):
    sock_path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(sock_path)
    srv.settimeout(20)
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = sock_path
    try:
        p = ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"), extra_args=("--supervised", "systemd"))
        p.start()
    finally:
        if old is None:
            del os.environ["NOTIFY_SOCKET"]
        else:
            os.environ["NOTIFY_SOCKET"] = old
    try:
        msg = srv.recv(4096).decode()
        assert "READY=1" in msg.split("\n"), msg
        p.proc.send_signal(signal.SIGTERM)
        msg = srv.recv(4096).decode()
        assert "STOPPING=1" in msg.split("\n"), msg
        assert wait_exit(p) == 0
    finally:
        p.stop()
        srv.close()


def test_latency_histogram(own_proxy, oracle):
    """LATENCY HISTOGRAM: the commands asked for (a container's subcommands),
    their calls, and cumulative counts at increasing bounds ending at the
    calls; the bounds themselves are times, compared in shape only."""
    p = own_proxy()
    seen = []
    for side in (p, oracle):
        with side.connect() as c:
            assert c.call("CONFIG", "RESETSTAT") == b"+OK\r\n"
            for args in (("SET", "lh:a", "1"), ("SET", "lh:b", "2"), ("GET", "lh:a"), ("CLIENT", "ID"),
                         ("CLIENT", "GETNAME")):
                c.call(*args)
            out = {}
            for ask in ((), ("set", "client"), ("client|id",), ("nosuch",)):
                r = call(c, "LATENCY", "HISTOGRAM", *ask)
                entries = dict(zip(r[::2], r[1::2]))
                shape = {}
                for name, e in entries.items():
                    assert e[0] == b"calls" and e[2] == b"histogram_usec", e
                    h = e[3]
                    bounds, counts = h[::2], h[1::2]
                    assert bounds == sorted(bounds) and counts == sorted(counts) and counts[-1] == e[1], e
                    shape[name] = e[1]
                out[ask] = shape
            seen.append(out)
    assert seen[0] == seen[1], seen


def test_slowlog_times_a_transactions_lone_command(tmp_path):
    """A transaction the store runs: its lone command is logged with the
    transaction's time (EXEC itself never), as Redis logs DEBUG SLEEP there."""
    store = harness.RedisServer("dbg", str(tmp_path / "store"), rename_scripting=True,
                                extra=("enable-debug-command yes",)).start()
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"),
                     extra_args=("--backend-admin-commands", "yes", "--slowlog-log-slower-than", "100000"))
    p.start()
    try:
        with p.connect() as c:
            c.call("SLOWLOG", "RESET")
            assert c.call("MULTI") == b"+OK\r\n"
            assert c.call("DEBUG", "SLEEP", "0.2") == b"+QUEUED\r\n"
            assert c.call("EXEC") == b"*1\r\n+OK\r\n"
            entries = call(c, "SLOWLOG", "GET")
        assert [e[3] for e in entries] == [[b"DEBUG", b"SLEEP", b"0.2"]], entries
        assert entries[0][2] >= 150000
    finally:
        p.stop()
        store.stop()
