"""A client's life from accept to close, at the edges: clients that vanish
(FIN or RST) at every stage of what the proxy does for them, on the RESP
store and on memcached, under the sanitizer build too; the file-descriptor
limit and maxclients; clients that never read their replies.

Each module-level environment runs its own proxy, so a sanitizer report or
a crash is pinned on the test that caused it."""

import os
import resource
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

import harness
from harness import encode_command, info_fields, parse_reply
from test_memcached import MEMCACHED, Memcached

HEAVY = "local x = 0 for i = 1, %d do x = x + i end return redis.call('INCR', KEYS[1])"
INCR = "return redis.call('INCR', KEYS[1])"


def proxy_binary():
    return os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))


def is_sanitizer_build():
    return "/san/" in proxy_binary() or os.path.basename(os.path.dirname(proxy_binary())) == "san"


class Env:
    """A store, a proxy in front of it, and checks after each test."""

    def __init__(self, kind, proxy, store):
        self.kind, self.proxy, self.store = kind, proxy, store

    def connect(self, **kw):
        return self.proxy.connect(**kw)

    def check(self):
        report = self.proxy.sanitizer_report()
        assert not report, "the proxy printed a sanitizer report:\n" + report
        assert self.proxy.alive(), "the proxy died\n" + self.proxy.diagnostics()


def start_proxy(work, store, backend_url, extra=()):
    p = harness.ProxyProcess(proxy_binary(), store, str(work), extra_args=list(extra))
    if backend_url:
        i = p.args.index("--backend")
        p.args[i + 1] = backend_url
    p.start()
    return p


def stop_proxy(p):
    status = p.stop()
    report = p.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report
    assert status in (0, -15), "proxy exit status %s\n%s" % (status, p.diagnostics())


@pytest.fixture(scope="module", params=["redis", "memcached"])
def env(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("evalproxy-life-" + request.param)
    extra = ["--lua-time-slice", "1000", "--backend-blocking-connections", "64"]
    if request.param == "redis":
        store = harness.RedisServer("store", str(work / "store"), rename_scripting=True).start()
        proxy = start_proxy(work / "proxy", store, None, extra)
    else:
        if not os.path.exists(MEMCACHED):
            pytest.skip("memcached is not installed")
        store = Memcached().start()
        proxy = start_proxy(work / "proxy", store, "memcached://%s:%d" % (store.host, store.port), extra)
    e = Env(request.param, proxy, store)
    yield e
    try:
        stop_proxy(proxy)
    finally:
        store.stop()


@pytest.fixture
def life(env):
    env.check()
    with env.connect() as c:
        c.call("FLUSHALL")
        c.call("CONFIG", "SET", "lua-script-pipelining", "no")
    yield env
    env.check()
    assert_idle(env)
    env.check()


def assert_idle(env, timeout=10.0):
    """No lock held or waited for, no script running: and a command on the
    keys every test uses answers at once."""
    deadline = time.monotonic() + timeout
    with env.connect() as c:
        while True:
            f = info_fields(c)
            idle = (f.get("lock_sets_holding") == "0" and f.get("lock_sets_waiting") == "0"
                    and f.get("scripts_running") == "0")
            if idle or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert idle, {k: f.get(k) for k in ("lock_sets_holding", "lock_sets_waiting", "scripts_running")}
        t0 = time.monotonic()
        for k in ("k", "k2", "xa", "xb"):
            r = c.call("EVAL", "return redis.call('SET', KEYS[1], 'free')", "1", k, timeout=5)
            assert r == b"+OK\r\n", r
        assert time.monotonic() - t0 < 5.0, "a command on the same keys waited %.1fs" % (time.monotonic() - t0)


def raw_connect(env):
    s = socket.create_connection((env.proxy.host, env.proxy.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def vanish(s, how):
    """Closes a client socket: "fin" (an orderly close) or "rst" (SO_LINGER 0)."""
    if how == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def client_id(s):
    s.sendall(encode_command("CLIENT", "ID"))
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(64)
    return int(buf[1:-2])


def victim(env, how):
    s = raw_connect(env)
    return s, (client_id(s) if how in ("kill", "unblock") else None)


def end_victim(env, s, cid, how):
    """The client goes: "fin", "rst", or "kill"/"unblock" (another client
    runs CLIENT KILL ID / CLIENT UNBLOCK ERROR on it, then it closes)."""
    if how == "kill":
        with env.connect() as c:
            # :0 when it is gone already (QUIT)
            assert c.call("CLIENT", "KILL", "ID", str(cid)) in (b":0\r\n", b":1\r\n")
        how = "fin"
    elif how == "unblock":
        with env.connect() as c:
            r = c.call("CLIENT", "UNBLOCK", str(cid), "ERROR")
            assert r in (b":0\r\n", b":1\r\n"), r
        time.sleep(0.02)
        how = "fin"
    vanish(s, how)


def send_and_vanish(env, payload, how, delay=0.002):
    s, cid = victim(env, how)
    s.sendall(payload)
    time.sleep(delay)
    end_victim(env, s, cid, how)


def heavy(n=300000):
    return HEAVY % n


# ---- clients that vanish ---------------------------------------------------

@pytest.mark.parametrize("how", ["rst", "fin"])
def test_pipelined_scripts_client_resets(life, how):
    """Pipelined scripts keep running after their client is gone; the store's
    replies for them must not reach the freed client."""
    with life.connect() as c:
        c.call("CONFIG", "SET", "lua-script-pipelining", "yes")
        body = heavy()
        assert c.call("EVAL", body, "1", "k") == b":1\r\n"
    for round_ in range(3):
        payload = b"".join(encode_command("EVAL", body, "1", "k%d" % i) for i in range(8))
        send_and_vanish(life, payload, how)
        time.sleep(0.3)
        life.check()


# CPU-bound for ARGV[1] loop turns (30M: a few hundred ms), then a write.
SPIN = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return redis.call('INCR', KEYS[1])"
# Reads its declared key, spins, then touches an undeclared one: two of
# these on crossed keys wait for each other, and one is re-run.
CROSS = ("redis.call('GET', KEYS[1]) local x = 0 for i = 1, tonumber(ARGV[2]) do x = x + i end "
         "return redis.call('INCR', ARGV[1])")
CALLS = "for i = 1, tonumber(ARGV[1]) do redis.call('INCR', KEYS[1]) end return 1"


def spin_seconds():
    return "30000000"


class Holder:
    """Another client holding the lock on key k with a spinning script."""

    def __init__(self, env, key="k", seconds=None):
        self.conn = env.connect()
        self.conn.send_command("EVAL", SPIN, "1", key, seconds or spin_seconds())
        time.sleep(0.03)

    def finish(self):
        r = self.conn.read_reply(timeout=20)
        self.conn.close()
        return r


def cmd(*args):
    return encode_command(*args)


def stage_payloads(env):
    """name -> (setup, payload, needs): what a client sends before it
    vanishes. setup is run first on another connection when set."""
    s = spin_seconds()
    return {
        # scripts
        "script-running": [cmd("EVAL", SPIN, "1", "k", s)],
        "script-waiting-for-store": [cmd("EVAL", CALLS, "1", "k", "2000")],
        "scripts-pipelined": [cmd("EVAL", SPIN, "1", "k%d" % i, "300000") for i in range(8)]
        + [cmd("EVAL", CALLS, "1", "k%d" % i, "200") for i in range(8)],
        "scripts-pipelined-then-get": [cmd("EVAL", CALLS, "1", "k%d" % i, "200") for i in range(8)]
        + [cmd("GET", "k0"), cmd("EVAL", SPIN, "1", "k0", s)],
        # relays
        "relays-in-flight": [cmd("INCR", "k%d" % (i % 7)) for i in range(3000)],
        # (every command a client sent runs after it goes, as in Redis: the
        # repeated spins are short, so the whole pipeline ends in time)
        "mixed-pipeline": [cmd("INCR", "k"), cmd("EVAL", CALLS, "1", "k", "100"), cmd("GET", "k"),
                           cmd("MSET", "k", "1", "k2", "2"), cmd("EVAL", SPIN, "1", "k2", "300000")] * 20
        + [cmd("EVAL", SPIN, "1", "k2", s)],
        # transactions
        "multi-exec": [cmd("MULTI"), cmd("INCR", "k"), cmd("SET", "k2", "v"), cmd("EXEC")] * 50,
        "exec-with-scripts": [cmd("MULTI"), cmd("EVAL", SPIN, "1", "k", s), cmd("EVAL", CALLS, "1", "k", "50"),
                              cmd("INCR", "k2"), cmd("EXEC")],
        "watch-exec": [cmd("WATCH", "k"), cmd("MULTI"), cmd("EVAL", CALLS, "1", "k", "500"), cmd("EXEC")],
        "watch-exec-plain": [cmd("INCR", "k")] * 200 + [cmd("WATCH", "k", "k2"), cmd("MULTI"), cmd("INCR", "k"),
                                                       cmd("EXEC")],
        # drain callbacks: commands that wait until what was relayed before is answered
        "drain-then-watch": [cmd("INCR", "k")] * 500 + [cmd("WATCH", "k2"), cmd("GET", "k2")],
        # pub/sub
        "subscribed": [cmd("SUBSCRIBE", "ch1", "ch2"), cmd("PSUBSCRIBE", "c*")],
        # connection state changes with work in flight
        "quit-mid-pipeline": [cmd("EVAL", CALLS, "1", "k%d" % i, "100") for i in range(8)]
        + [cmd("INCR", "k"), cmd("QUIT"), cmd("INCR", "k")],
        "reset-mid-script": [cmd("EVAL", CALLS, "1", "k%d" % i, "100") for i in range(4)]
        + [cmd("MULTI"), cmd("RESET"), cmd("EVAL", SPIN, "1", "k", s)],
        "memcached-rmw-queue": [cmd("INCR", "k"), cmd("APPEND", "k2", "x"), cmd("GET", "k"), cmd("INCRBY", "k", "3"),
                                cmd("SET", "k", "1")] * 200,
    }


BLOCKING_STAGES = {
    # a blocking command at the store (the RESP store only)
    "blocking-command": [cmd("BLPOP", "list", "5")],
    "drain-then-blocking": [cmd("INCR", "k")] * 300 + [cmd("BLPOP", "list", "5")],
}

WAIT_STAGES = ["script-waiting-for-locks", "relay-waiting-for-locks", "exec-waiting-for-locks",
               "pipelined-waiting-for-locks"]

STAGES = sorted(list(stage_payloads(None)) + list(BLOCKING_STAGES) + WAIT_STAGES + ["script-rerun", "paced"])


def run_stage(env, stage, how, delay):
    payloads = stage_payloads(env)
    if stage in BLOCKING_STAGES:
        if env.kind != "redis":
            pytest.skip("blocking commands need the RESP store")
        send_and_vanish(env, b"".join(BLOCKING_STAGES[stage]), how, delay)
        return
    if stage == "script-rerun":
        # scripts keep running once their client is gone: the cycle comes
        # all the same, and one of them is re-run
        with env.connect() as c:
            reruns = int(info_fields(c)["scripts_rerun"])
        a, aid = victim(env, how)
        b, bid = victim(env, how)
        a.sendall(cmd("EVAL", CROSS, "1", "xa", "xb", "20000000"))
        b.sendall(cmd("EVAL", CROSS, "1", "xb", "xa", "20000000"))
        time.sleep(delay)
        end_victim(env, a, aid, how)
        time.sleep(0.3)
        end_victim(env, b, bid, how)
        deadline = time.monotonic() + 10
        with env.connect() as c:
            while int(info_fields(c)["scripts_rerun"]) == reruns and time.monotonic() < deadline:
                time.sleep(0.05)
            assert int(info_fields(c)["scripts_rerun"]) > reruns
        return
    if stage in WAIT_STAGES:
        holder = Holder(env)
        if stage == "script-waiting-for-locks":
            payload = cmd("EVAL", SPIN, "1", "k", "1000")
        elif stage == "relay-waiting-for-locks":
            payload = cmd("GET", "k") + cmd("INCR", "k") + cmd("GET", "k2")
        elif stage == "exec-waiting-for-locks":
            payload = cmd("MULTI") + cmd("INCR", "k") + cmd("EXEC")
        else:
            with env.connect() as c:
                c.call("CONFIG", "SET", "lua-script-pipelining", "yes")
            payload = b"".join(cmd("EVAL", CALLS, "1", k, "20") for k in ("k2", "k", "k2", "k"))
        send_and_vanish(env, payload, how, delay)
        holder.finish()
        return
    if stage == "paced":
        # owed more than it reads: its input waits (read events off)
        with env.connect() as c:
            c.call("SET", "big", b"x" * (512 * 1024))
        s, cid = victim(env, how)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(cmd("GET", "big") * 40 + cmd("EVAL", CALLS, "1", "k", "50") + cmd("GET", "big") * 10)
        time.sleep(delay + 0.2)
        end_victim(env, s, cid, how)
        return
    if stage == "memcached-rmw-queue" and env.kind != "memcached":
        pytest.skip("memcached only")
    if stage.startswith("scripts-pipelined") or stage == "quit-mid-pipeline" or stage == "reset-mid-script":
        with env.connect() as c:
            c.call("CONFIG", "SET", "lua-script-pipelining", "yes")
            # scripts are pipelined once a run kept to their declared keys
            c.call("EVAL", CALLS, "1", "warm", "1")
            c.call("EVAL", SPIN, "1", "warm", "1")
    payload = b"".join(payloads[stage])
    send_and_vanish(env, payload, how, delay)


# How long after its last write each kind of client goes: at once (the
# proxy has read its commands but done little) or while the work is on.
VANISH_DELAY = {"rst": 0.002, "fin": 0.05, "kill": 0.02, "unblock": 0.05}


@pytest.mark.parametrize("how", ["rst", "fin", "kill", "unblock"])
@pytest.mark.parametrize("stage", STAGES)
def test_client_vanishes(life, stage, how):
    """A client disconnects while the proxy works for it: nothing of it may
    be touched after it is freed, and nothing it held stays locked."""
    run_stage(life, stage, how, VANISH_DELAY[how])
    time.sleep(0.1)
    life.check()
    # SUBSCRIBE'd channels: a message after the subscriber is gone
    with life.connect() as c:
        if life.kind == "redis":
            c.call("PUBLISH", "ch1", "hello")


# ---- the file-descriptor limit and maxclients -------------------------------

SETPRIV = shutil.which("setpriv")


def low_nofile(soft, hard):
    def pre():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return pre


class LimitedProxy(harness.ProxyProcess):
    """The proxy started with RLIMIT_NOFILE = nofile, soft and hard (and
    without CAP_SYS_RESOURCE, so that it cannot lift the hard limit); with
    can_raise, only the soft limit is that low."""

    def __init__(self, store, workdir, nofile, can_raise=False, extra=()):
        super().__init__(proxy_binary(), store, workdir, extra_args=list(extra))
        self.nofile, self.can_raise = nofile, can_raise

    def start(self, timeout=30.0):
        self._stderr = open(self.stderr_path, "ab")
        args = list(self.args)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if not self.can_raise and os.geteuid() == 0 and SETPRIV:
            args = [SETPRIV, "--bounding-set", "-sys_resource", "--inh-caps", "-sys_resource"] + args
        self.proc = subprocess.Popen(args, stdout=self._stderr, stderr=self._stderr, cwd=self.workdir,
                                     start_new_session=True,
                                     preexec_fn=low_nofile(self.nofile, hard if self.can_raise else self.nofile))
        harness.wait_for_ping(self.host, self.port, timeout, self.proc, "proxy")
        return self

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_size(self):
        return os.path.getsize(self.logfile) if os.path.exists(self.logfile) else 0

    def log_text(self):
        return self._read(self.logfile, 10 ** 6)


@pytest.fixture(scope="module")
def fd_store(tmp_path_factory):
    work = tmp_path_factory.mktemp("evalproxy-fds")
    store = harness.RedisServer("store", str(work / "store"), rename_scripting=True).start()
    yield store, work
    store.stop()


@pytest.fixture
def limited(fd_store, request):
    store, work = fd_store
    started = []

    def start(nofile, can_raise=False, extra=()):
        p = LimitedProxy(store, str(work / ("proxy-%s-%d" % (request.node.name, len(started)))), nofile,
                         can_raise, extra)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        stop_proxy(p)


def open_clients(proxy, n):
    """n connections; returns them with what each got first: None while it
    is served (PING answered), else the error line or b"" for a close."""
    conns = []
    for _ in range(n):
        try:
            s = socket.create_connection((proxy.host, proxy.port), timeout=5)
        except OSError:
            conns.append((None, b"connect failed"))
            continue
        conns.append((s, None))
    out = []
    for s, err in conns:
        if s is None:
            out.append((s, err))
            continue
        try:
            s.settimeout(0.5)
            s.sendall(encode_command("PING"))
            got = s.recv(100)
        except socket.timeout:
            got = b"(no answer yet)"
        except OSError:
            got = b""
        out.append((s, None if got == b"+PONG\r\n" else got))
    return out


def test_maxclients_fitted_to_a_low_fd_limit(limited):
    """A hard limit the proxy cannot raise: maxclients shrinks to fit, with
    Redis's warnings, and clients past it get Redis's error."""
    p = limited(128)
    with p.connect() as c:
        maxclients = int(info_fields(c)["maxclients"])
    assert 0 < maxclients <= 128 - 32, maxclients
    log = p.log_text()
    assert "You requested maxclients of 10000 requiring at least" in log, log[-2000:]
    assert "maxclients has been reduced to %d to compensate for low ulimit" % maxclients in log
    clients = open_clients(p, maxclients + 20)
    served = [s for s, err in clients if err is None]
    refused = [err for s, err in clients if err is not None]
    assert len(served) == maxclients, (len(served), refused[:3])
    assert refused and all(e in (b"-ERR max number of clients reached\r\n", b"") for e in refused), refused[:5]
    for s, _ in clients:
        if s:
            s.close()
    time.sleep(0.3)
    with p.connect() as c:
        assert c.call("PING") == b"+PONG\r\n"


def test_fd_limit_raised_when_allowed(limited):
    """A soft limit below what maxclients needs is raised (up to the hard
    limit) to maxclients + the reserve."""
    p = limited(256, can_raise=True, extra=["--maxclients", "2000"])
    with p.connect() as c:
        assert info_fields(c)["maxclients"] == "2000"
    with open("/proc/%d/limits" % p.proc.pid) as f:
        line = [ln for ln in f if ln.startswith("Max open files")][0]
    assert int(line.split()[3]) >= 2000 + 32, line
    assert "Increased maximum number of open files to" in p.log_text()


def test_config_set_maxclients_checks_the_fd_limit(limited):
    """CONFIG SET maxclients beyond what the descriptors allow fails with
    Redis's error and keeps the old value; within them it is raised."""
    p = limited(128)
    with p.connect() as c:
        fit = int(info_fields(c)["maxclients"])
        assert c.call("CONFIG", "SET", "maxclients", str(fit - 10)) == b"+OK\r\n"
        r = c.call("CONFIG", "SET", "maxclients", "5000")
        assert r == (b"-ERR CONFIG SET failed (possibly related to argument 'maxclients') - The operating system "
                     b"is not able to handle the specified number of clients, try with %d\r\n" % fit), r
        assert c.call("CONFIG", "GET", "maxclients") == b"*2\r\n$10\r\nmaxclients\r\n$%d\r\n%d\r\n" % (
            len(str(fit - 10)), fit - 10)
        assert c.call("CONFIG", "SET", "maxclients", str(fit)) == b"+OK\r\n"
    q = limited(256, can_raise=True, extra=["--maxclients", "100"])
    with q.connect() as c:
        assert c.call("CONFIG", "SET", "maxclients", "3000") == b"+OK\r\n"
    with open("/proc/%d/limits" % q.proc.pid) as f:
        line = [ln for ln in f if ln.startswith("Max open files")][0]
    assert int(line.split()[3]) >= 3000 + 32, line


def test_out_of_fds_accept_backs_off(limited, fd_store):
    """Descriptors run out below maxclients (each blocked client also holds a
    store connection of its own): the proxy neither spins nor floods its log,
    and accepts again once descriptors are free."""
    p = limited(128, extra=["--maxclients", "90", "--loglevel", "notice"])
    blocked = []
    # Each BLPOP client takes two descriptors: its socket and its store connection.
    for i in range(60):
        try:
            s = socket.create_connection((p.host, p.port), timeout=5)
        except OSError:
            break
        s.sendall(encode_command("BLPOP", "never:%d" % i, "0"))
        blocked.append(s)
    time.sleep(0.5)
    extra = []
    for _ in range(30):
        try:
            extra.append(socket.create_connection((p.host, p.port), timeout=2))
        except OSError:
            pass
    time.sleep(0.3)
    cpu0, log0 = p.cpu_seconds(), p.log_size()
    time.sleep(3.0)
    cpu = p.cpu_seconds() - cpu0
    logged = p.log_size() - log0
    assert cpu < 0.5, "the proxy used %.2fs of CPU in 3s while out of descriptors" % cpu
    assert logged < 4096, "the log grew by %d bytes in 3s" % logged
    # The queued clients get an answer (served, refused, or closed) once
    # descriptors are free again.
    for s in blocked:
        s.close()
    time.sleep(0.5)
    for s in extra:
        s.settimeout(5)
        try:
            s.sendall(encode_command("PING"))
            got = s.recv(100)
        except OSError:
            got = b""
        assert got in (b"+PONG\r\n", b"-ERR max number of clients reached\r\n", b""), got
        s.close()
    with p.connect() as c:
        assert c.call("PING") == b"+PONG\r\n"
        assert c.call("BLPOP", "never:x", "0.01") == b"*-1\r\n"


# ---- clients that never read their replies ----------------------------------

@pytest.fixture
def big_env(fd_store, request):
    store, work = fd_store
    p = harness.ProxyProcess(proxy_binary(), store, str(work / ("proxy-" + request.node.name)))
    p.start()
    yield p
    stop_proxy(p)


def proxy_rss_mb(p):
    with open("/proc/%d/status" % p.proc.pid) as f:
        return int([ln for ln in f if ln.startswith("VmRSS")][0].split()[1]) // 1024


def unread_big_replies(p, clients=10, gets=100):
    """clients connections each pipeline `gets` GETs of a 1 MiB value and
    never read; returns the sockets."""
    hogs = []
    for _ in range(clients):
        s = socket.create_connection((p.host, p.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(encode_command("GET", "big") * gets)
        hogs.append(s)
    return hogs


def test_unread_big_replies_do_not_stall_others(big_env):
    """Ten clients that pipeline 100 GETs of 1 MiB and never read: another
    client's GET is answered promptly, and the proxy does not buffer the
    gigabyte they asked for (their input waits instead)."""
    p = big_env
    with p.connect() as c:
        c.call("SET", "big", b"x" * (1 << 20))
        c.call("SET", "small", "1")
        hogs = unread_big_replies(p)
        try:
            time.sleep(0.05)
            worst = 0.0
            for _ in range(8):
                t0 = time.monotonic()
                assert c.call("GET", "small", timeout=60) == b"$1\r\n1\r\n"
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.1)
            rss = proxy_rss_mb(p)
            # Before pacing: 11-33 s and 800 MB on a 2-core machine.
            assert worst < 3.0, "an unrelated GET took %.2fs" % worst
            assert rss < 300, "the proxy holds %d MB for clients that do not read" % rss
            # The slow clients are paced, not dropped: they get every reply
            # once they read.
            s = hogs[0]
            s.settimeout(30)
            want = len(b"$1048576\r\n") + (1 << 20) + 2
            got = 0
            while got < want * 100:
                d = s.recv(1 << 20)
                assert d, "connection closed after %d bytes" % got
                got += len(d)
            assert got == want * 100
        finally:
            for s in hogs:
                s.close()


def test_output_buffer_limit_closes_a_client_that_never_reads(big_env):
    """client-output-buffer-limit normal: a client over the hard limit is
    closed with Redis's log line; others carry on."""
    p = big_env
    with p.connect() as c:
        c.call("SET", "big", b"x" * (1 << 20))
        assert c.call("CONFIG", "SET", "client-output-buffer-limit", "normal 512kb 0 0") == b"+OK\r\n"
        try:
            s, = unread_big_replies(p, clients=1, gets=20)
            s.settimeout(10)
            deadline = time.monotonic() + 10
            closed = False
            buf = b""
            while time.monotonic() < deadline:
                try:
                    d = s.recv(1 << 16)
                except ConnectionResetError:
                    closed = True
                    break
                if not d:
                    closed = True
                    break
                buf += d
                time.sleep(0.01)
            s.close()
            assert closed
            assert len(buf) < 20 * (1 << 20)
            log = p._read(p.logfile, 10 ** 6)
            assert "scheduled to be closed ASAP for overcoming of output buffer limits." in log
            line = [ln for ln in log.splitlines() if "overcoming of output buffer limits" in ln][-1]
            # Redis names the client with its CLIENT LIST fields
            assert " laddr=" in line and " cmd=get " in line, line
        finally:
            c.call("CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0")
        assert c.call("PING") == b"+PONG\r\n"


def test_soft_output_limit_over_time(big_env):
    """The soft limit closes a client that stays over it for soft-seconds."""
    p = big_env
    with p.connect() as c:
        c.call("SET", "big", b"x" * (1 << 20))
        assert c.call("CONFIG", "SET", "client-output-buffer-limit", "normal 0 256kb 1") == b"+OK\r\n"
        try:
            s, = unread_big_replies(p, clients=1, gets=20)
            t0 = time.monotonic()
            s.settimeout(10)
            time.sleep(0.5)
            with p.connect() as other:
                assert b"cmd=get" in other.call("CLIENT", "LIST")  # still there before soft-seconds
            closed_after = None
            while time.monotonic() - t0 < 8:
                with p.connect() as other:
                    if b"cmd=get" not in other.call("CLIENT", "LIST"):
                        closed_after = time.monotonic() - t0
                        break
                time.sleep(0.2)
            s.close()
            assert closed_after is not None and closed_after > 0.9, closed_after
        finally:
            c.call("CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0")


# ---- QUIT and RESET with work in flight, against Redis ------------------------

@pytest.fixture
def pipelined_diff(diff, real_proxy):
    from test_scripting_behaviour import ConfigOverride
    with ConfigOverride(real_proxy, lua_script_pipelining="yes"):
        # a script is pipelined once a run of it kept to its declared keys
        diff.run([("EVAL", CALLS, "1", "warm", "1"), ("EVAL", INCR, "1", "warm")])
        yield diff


def test_quit_mid_pipeline_matches_redis(pipelined_diff):
    """QUIT behind pipelined scripts: every reply before it, +OK, close;
    nothing after it runs."""
    raw = b"".join([cmd("EVAL", CALLS, "1", "q%d" % i, "30") for i in range(8)]
                   + [cmd("EVAL", INCR, "1", "q0"), cmd("INCR", "q1"), cmd("QUIT"), cmd("INCR", "q1")])
    pipelined_diff.run([harness.Step(raw=raw, close=True)])
    pipelined_diff.run([("MGET",) + tuple("q%d" % i for i in range(8))])


def test_reset_mid_pipeline_matches_redis(pipelined_diff):
    """RESET behind pipelined scripts and inside MULTI: the scripts finish
    and answer in order, the transaction is gone."""
    raw = b"".join([cmd("EVAL", CALLS, "1", "r%d" % i, "30") for i in range(4)]
                   + [cmd("MULTI"), cmd("INCR", "r0"), cmd("RESET"), cmd("EVAL", INCR, "1", "r0"), cmd("EXEC"),
                      cmd("GET", "r0")])
    pipelined_diff.run([harness.Step(raw=raw, replies=10)])
