"""Helpers for the integration tests: free ports, real server processes,
a raw RESP client that returns reply bytes untouched, and the differential
comparison of the oracle (redis-server 7.0) against the proxy."""

import os
import random
import re
import shlex
import signal
import socket
import ssl
import subprocess
import time

HOST = "127.0.0.1"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "redis-server")

# Scripting commands the store must not have: the proxy has to provide them itself.
SCRIPTING_COMMANDS = ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "SCRIPT",
                      "FUNCTION", "FCALL", "FCALL_RO")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")

# Generous, so the sanitizer build on a loaded machine does not cause false failures.
REPLY_TIMEOUT = float(os.environ.get("EVALPROXY_TEST_REPLY_TIMEOUT", "10"))


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out are taken below the kernel's ephemeral range, so no
# outgoing connection (the proxy's to its store, a test's to the proxy) can
# take one between the test choosing it and the server binding it; and each
# is claimed with a lock held for the life of this process, so test runs in
# parallel on the machine never choose the same one.
_PORT_LOCK_DIR = os.path.join("/tmp", "evalproxy-test-ports")
_port_locks = []
_rng = random.Random()


def free_port():
    """A loopback port nobody listens on and no other test process holds."""
    import fcntl
    os.makedirs(_PORT_LOCK_DIR, exist_ok=True)
    high = min(_ephemeral_low(), 65536) - 1
    low = 20000 if high > 25000 else 1024
    for _ in range(1000):
        port = _rng.randint(low, high)
        f = open(os.path.join(_PORT_LOCK_DIR, str(port)), "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                f.close()
                continue
        _port_locks.append(f)
        return port
    raise RuntimeError("no free port found")


# ---------------------------------------------------------------------------
# RESP encoding and reading

def _to_bytes(arg):
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(arg)
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, (int, float)):
        return repr(arg).encode() if isinstance(arg, float) else str(arg).encode()
    raise TypeError("cannot encode %r" % (arg,))


def encode_command(*args):
    """A command as a RESP multibulk request."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _to_bytes(a)
        out.append(b"$%d\r\n" % len(b))
        out.append(b)
        out.append(b"\r\n")
    return b"".join(out)


class ReplyTimeout(Exception):
    pass


class ConnectionClosed(Exception):
    pass


class RespConnection:
    """A socket speaking RESP (TLS when given an ssl_context). read_reply()
    returns the exact bytes of one complete reply (RESP2 and RESP3 types,
    nested to any depth)."""

    def __init__(self, host, port, timeout=REPLY_TIMEOUT, connect_timeout=5.0,
                 ssl_context=None, server_hostname=None):
        self.host, self.port = host, port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            try:
                self.sock = ssl_context.wrap_socket(self.sock, server_hostname=server_hostname or host)
            except BaseException:
                self.sock.close()
                raise
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.closed_by_peer = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_command(self, *args):
        self.send(encode_command(*args))

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReplyTimeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise ReplyTimeout()
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
            raise ConnectionClosed()
        self.buf += chunk

    def _line_end(self, pos, deadline):
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i >= 0:
                return i
            self._fill(deadline)

    def _need(self, end, deadline):
        while len(self.buf) < end:
            self._fill(deadline)

    def _reply_end(self, pos, deadline):
        """Offset just past the reply that starts at pos (reads as needed)."""
        self._need(pos + 1, deadline)
        t = self.buf[pos:pos + 1]
        eol = self._line_end(pos, deadline)
        header = bytes(self.buf[pos + 1:eol])
        nxt = eol + 2
        if t in (b"+", b"-", b":", b",", b"#", b"_", b"("):
            return nxt
        if t in (b"$", b"!", b"="):
            n = int(header)
            if n < 0:
                return nxt
            self._need(nxt + n + 2, deadline)
            return nxt + n + 2
        if t in (b"*", b"~", b">", b"%", b"|"):
            n = int(header)
            if n < 0:
                return nxt
            if t in (b"%", b"|"):
                n *= 2
            for _ in range(n):
                nxt = self._reply_end(nxt, deadline)
            if t == b"|":  # attribute: followed by the actual reply
                nxt = self._reply_end(nxt, deadline)
            return nxt
        raise ValueError("bad RESP type byte %r in %r" % (t, bytes(self.buf[pos:pos + 80])))

    def read_reply(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        end = self._reply_end(0, deadline)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def read_replies(self, n, timeout=None):
        return [self.read_reply(timeout) for _ in range(n)]

    def read_until_close(self, timeout=None):
        """Everything the peer sends until it closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                out = bytes(self.buf)
                self.buf.clear()
                return out

    def call(self, *args, timeout=None):
        self.send_command(*args)
        return self.read_reply(timeout)


def parse_reply(raw):
    """Decode raw reply bytes into Python values (for assertions and for
    order-insensitive comparison). Errors become ('ERR', text)."""
    val, end = _parse(raw, 0)
    if end != len(raw):
        raise ValueError("trailing bytes after reply: %r" % raw[end:end + 40])
    return val


def _parse(raw, pos):
    t = raw[pos:pos + 1]
    eol = raw.index(b"\r\n", pos)
    header = raw[pos + 1:eol]
    nxt = eol + 2
    if t == b"+":
        return header, nxt
    if t == b"-":
        return ("ERR", header), nxt
    if t in (b":", b"("):
        return int(header), nxt
    if t == b",":
        return float(header), nxt
    if t == b"#":
        return header == b"t", nxt
    if t == b"_":
        return None, nxt
    if t in (b"$", b"!", b"="):
        n = int(header)
        if n < 0:
            return None, nxt
        return raw[nxt:nxt + n], nxt + n + 2
    if t in (b"*", b"~", b">", b"%", b"|"):
        n = int(header)
        if n < 0:
            return None, nxt
        if t in (b"%", b"|"):
            n *= 2
        items = []
        for _ in range(n):
            v, nxt = _parse(raw, nxt)
            items.append(v)
        if t == b"|":
            return _parse(raw, nxt)
        return items, nxt
    raise ValueError("bad RESP type byte %r" % t)


def split_top_level(raw):
    """The raw bytes of each element of a top-level aggregate reply."""
    t = raw[:1]
    if t not in (b"*", b"~", b"%", b">"):
        raise ValueError("not an aggregate reply")
    eol = raw.index(b"\r\n")
    n = int(raw[1:eol])
    pos = eol + 2
    out = []
    for _ in range(max(n, 0)):
        _, end = _parse(raw, pos)
        if t == b"%":  # a map entry is its key and value together
            _, end = _parse(raw, end)
        out.append(raw[pos:end])
        pos = end
    return raw[:eol + 2], out


def wait_for_ping(host, port, timeout, proc=None, what="server"):
    """Poll until host:port answers PING with +PONG; raise with details otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s before it was ready"
                               % (what, proc.returncode))
        try:
            with RespConnection(host, port, timeout=1.0, connect_timeout=1.0) as c:
                r = c.call("PING")
                if r == b"+PONG\r\n":
                    return
                last = r
        except (OSError, ReplyTimeout, ConnectionClosed) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError("%s on port %d not ready after %.0fs (last: %r)"
                       % (what, port, timeout, last))


# ---------------------------------------------------------------------------
# Processes

class Endpoint:
    """Something that speaks RESP on host:port."""

    def __init__(self, name, host, port):
        self.name, self.host, self.port = name, host, port

    def connect(self, **kw):
        return RespConnection(self.host, self.port, **kw)

    def __repr__(self):
        return "<%s %s:%d>" % (self.name, self.host, self.port)


def redis_server_version(binary):
    """(major, minor, patch) of a redis-server binary, from --version (2.6
    and later) or, for 2.4, its -v line."""
    for flag in ("--version", "-v"):
        try:
            out = subprocess.run([binary, flag], capture_output=True, timeout=10).stdout.decode("latin-1")
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"v(?:ersion)?[ =](\d+)\.(\d+)\.(\d+)", out)
        if m:
            return tuple(int(x) for x in m.groups())
    raise RuntimeError("cannot tell the version of %s" % binary)


# The scripting commands each release has (renaming one it lacks is an error).
def scripting_commands(version):
    if version >= (7, 0, 0):
        return SCRIPTING_COMMANDS
    if version >= (2, 6, 0):
        return ("EVAL", "EVALSHA", "SCRIPT")
    return ()


class RedisServer(Endpoint):
    """A redis-server process with a generated config file, in its own dir.

    binary: another redis-server (an old release); its version decides
    which directives and command-line options it is given, since old
    releases refuse ones they do not know."""

    def __init__(self, name, workdir, rename_scripting=False, port=None, extra=(), binary=None):
        super().__init__(name, HOST, port or free_port())
        self.binary = binary or REDIS_SERVER
        self.version = redis_server_version(binary) if binary else None
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.conf = os.path.join(workdir, "redis.conf")
        self.logfile = os.path.join(workdir, "redis.log")
        old = self.version is not None and self.version < (2, 6, 0)
        lines = [
            "bind %s" % HOST,
            "port %d" % self.port,
            "daemonize no",
            "appendonly no",
            "dir %s" % workdir,
            "logfile %s" % self.logfile,
        ]
        if not old:  # 2.4 knows no 'save ""' (saving is turned off at start)
            lines.insert(3, 'save ""')
        if rename_scripting:
            names = scripting_commands(self.version) if self.version else SCRIPTING_COMMANDS
            lines += ['rename-command %s ""' % c for c in names]
        lines += list(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self, timeout=10.0):
        # --save "" and --appendonly no are also on the command line so the
        # process table shows plainly that nothing is persisted.
        args = [self.binary, self.conf]
        if self.version is None or self.version >= (2, 6, 0):
            args += ["--save", "", "--appendonly", "no"]  # 2.4 takes no options
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_for_ping(self.host, self.port, timeout, self.proc, self.name)
            if self.version is not None and self.version < (2, 6, 0):
                with self.connect() as c:
                    c.call("CONFIG", "SET", "save", "")
        except Exception:
            self.stop()
            raise
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: the store vanishes without closing anything politely."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self, timeout=10.0):
        """Start again on the same port with the same config."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start(timeout=max(1.0, deadline - time.monotonic()))
            except RuntimeError:
                # The port can linger briefly after a kill; retry until the deadline.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)


class ProxyProcess(Endpoint):
    """The evalproxy binary in front of a store."""

    def __init__(self, binary, backend, workdir, extra_args=(), backend_url=None, backend_args=None):
        super().__init__("proxy", HOST, free_port())
        self.binary = binary
        self.backend = backend
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.logfile = os.path.join(workdir, "proxy.log")
        self.stderr_path = os.path.join(workdir, "proxy.stderr")
        if backend_args is None:
            backend_args = ["--backend", backend_url or "redis://%s:%d" % (backend.host, backend.port)]
        self.args = [binary, "--bind", HOST, "--port", str(self.port)] + list(backend_args) + [
                     "--logfile", self.logfile, "--loglevel", "verbose"] + list(extra_args)
        self.proc = None
        self._stderr = None

    def start(self, timeout=30.0):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("proxy binary %s is missing or not executable "
                               "(build it, or set EVALPROXY_BIN)" % self.binary)
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._stderr, stderr=self._stderr,
                                     cwd=self.workdir, start_new_session=True)
        try:
            wait_for_ping(self.host, self.port, timeout, self.proc, "proxy")
        except Exception as e:
            self.stop()
            raise RuntimeError("%s\n%s" % (e, self.diagnostics())) from None
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        status = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    status = self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
                    status = None
            else:
                status = self.proc.returncode
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return status

    def _read(self, path, limit=200000):
        try:
            with open(path, "rb") as f:
                return f.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_report(self):
        """The sanitizer report text, if the proxy printed one, else ''."""
        for path in (self.stderr_path, self.logfile):
            text = self._read(path, limit=10 ** 7)
            for marker in SANITIZER_MARKERS:
                i = text.find(marker)
                if i >= 0:
                    return "%s (from %s):\n%s" % (marker, path, text[max(0, i - 2000):i + 8000])
        return ""

    def diagnostics(self):
        return ("--- proxy stderr (tail) ---\n%s\n--- proxy log (tail) ---\n%s"
                % (self._read(self.stderr_path, 4000), self._read(self.logfile, 4000)))


# ---------------------------------------------------------------------------
# Differential comparison

class Step:
    """One request in a differential case.

    args      the command (a tuple of str/bytes/int), or None with raw= set
    raw       raw request bytes (or a list of chunks sent with short pauses)
    replies   how many replies the raw bytes produce
    close     the server is expected to close after replying: read to EOF
    unordered compare an aggregate reply ignoring element order (replies
              whose order depends on the server's per-process hash seed)
    nested    with unordered: sort the elements of the aggregate at this
              index of the reply instead (e.g. 1 for SCAN's key list)
    same_type only compare the reply type byte (for replies carrying values
              that differ between processes, e.g. a client id)
    """

    def __init__(self, args=None, raw=None, replies=1, close=False, unordered=False,
                 nested=None, same_type=False):
        self.args, self.raw, self.replies, self.close = args, raw, replies, close
        self.unordered, self.nested, self.same_type = unordered, nested, same_type

    def describe(self):
        if self.args is not None:
            parts = []
            for a in self.args:
                if isinstance(a, Ref):
                    parts.append("<reply of step %d>" % a.index)
                    continue
                b = _to_bytes(a)
                parts.append(repr(b)[2:-1] if len(b) <= 60 else
                             "%s...(%d bytes)" % (repr(b[:20])[2:-1], len(b)))
            return " ".join(parts)
        raw = self.raw if isinstance(self.raw, (bytes, bytearray)) else b"".join(self.raw)
        return "raw %r%s" % (raw[:120], "..." if len(raw) > 120 else "")

    def command_name(self):
        if self.args:
            return _to_bytes(self.args[0]).decode("latin-1").upper()
        return None


class Ref:
    """Stands for the bulk payload of an earlier step's reply on the same side
    (e.g. feeding a DUMP payload to RESTORE)."""

    def __init__(self, index):
        self.index = index


def as_step(s):
    if isinstance(s, Step):
        return s
    if isinstance(s, (tuple, list)):
        return Step(args=tuple(s))
    if isinstance(s, str):
        # Shell-like quoting so a step can hold empty strings and spaces.
        return Step(args=tuple(shlex.split(s)))
    raise TypeError("bad step %r" % (s,))


def run_steps(conn, steps):
    """Run steps on one connection; each result is the raw reply bytes, or a
    '<<...>>' marker when the reply did not come or the peer closed."""
    results = []
    for st in steps:
        try:
            if st.args is not None:
                args = []
                for a in st.args:
                    if isinstance(a, Ref):
                        prev = results[a.index]
                        try:
                            payload = parse_reply(prev) if isinstance(prev, bytes) else None
                        except ValueError:
                            payload = None
                        a = payload if isinstance(payload, bytes) else b"<<no payload>>"
                    args.append(a)
                conn.send(encode_command(*args))
            elif isinstance(st.raw, (bytes, bytearray)):
                conn.send(bytes(st.raw))
            else:
                for chunk in st.raw:
                    conn.send(chunk)
                    time.sleep(0.02)
            if st.close:
                results.append(conn.read_until_close())
            else:
                results.append(b"".join(conn.read_replies(st.replies)))
        except ReplyTimeout:
            results.append("<<no reply within %.0fs>>" % conn.timeout)
            break
        except ConnectionClosed:
            results.append("<<connection closed; got %r>>" % bytes(conn.buf[:200]))
            break
        except OSError as e:
            results.append("<<socket error: %s>>" % e)
            break
    return results


def _normalize(step, raw):
    if not isinstance(raw, bytes):
        return raw
    if step.same_type:
        return raw[:1]
    if not step.unordered:
        return raw
    try:
        if step.nested is None:
            head, items = split_top_level(raw)
            return head + b"".join(sorted(items))
        head, items = split_top_level(raw)
        inner_head, inner = split_top_level(items[step.nested])
        items[step.nested] = inner_head + b"".join(sorted(inner))
        return head + b"".join(items)
    except (ValueError, IndexError):
        return raw


def _show(raw, limit=600):
    if not isinstance(raw, bytes):
        return raw
    s = repr(raw)
    if len(s) > limit:
        s = s[:limit] + "... (%d bytes total)" % len(raw)
    return s


def _first_difference(e, a):
    """Where two long replies start to differ (short ones are easy to read)."""
    if not isinstance(e, bytes) or not isinstance(a, bytes) or max(len(e), len(a)) <= 200:
        return ""
    n = 0
    while n < min(len(e), len(a)) and e[n] == a[n]:
        n += 1
    lo = max(0, n - 40)
    return ("\n    first difference at byte %d: oracle ...%r... proxy ...%r..."
            % (n, e[lo:n + 60], a[lo:n + 60]))


# What a proxy in front of several stores refuses, as Redis Cluster does.
SPREAD_REFUSALS = (b"CROSSSLOT", b"denied in Cluster mode", b"not allowed in cluster mode")


def _spread_order(step):
    name = step.command_name()
    if name in ("KEYS", "SCAN") and not step.unordered and step.raw is None:
        import copy
        st = copy.copy(step)
        st.unordered = True
        st.nested = 1 if name == "SCAN" else None
        return st
    return step


class Differ:
    """Runs the same requests against the oracle and the proxy and compares
    the raw reply bytes."""

    def __init__(self, oracle, proxy, spread=False):
        self.oracle, self.proxy = oracle, proxy
        # The proxy is in front of several stores (a pool, a cluster): a
        # command whose keys live on different stores gets CROSSSLOT there,
        # as in Redis Cluster, and such a case is skipped, saying so.
        self.spread = spread

    def flushall(self):
        for ep in (self.oracle, self.proxy):
            with ep.connect() as c:
                r = c.call("FLUSHALL")
                assert r == b"+OK\r\n", "FLUSHALL on %s answered %r" % (ep.name, r)

    def run(self, steps):
        """Run all steps on a new connection to each side; assert every reply
        is byte-identical. Returns the oracle's raw replies."""
        __tracebackhide__ = True  # the assertion text says everything
        steps = [as_step(s) for s in steps]
        with self.oracle.connect() as oc:
            expected = run_steps(oc, steps)
        with self.proxy.connect() as pc:
            actual = run_steps(pc, steps)
        if self.spread:
            # Keys spread over stores come back in another order.
            steps = [_spread_order(st) for st in steps]
            for i, a in enumerate(actual):
                e = expected[i] if i < len(expected) else b""
                if (isinstance(a, bytes) and isinstance(e, bytes)
                        and any(w in a and w not in e for w in SPREAD_REFUSALS)):
                    import pytest
                    pytest.skip("step %d (%s): its keys are on several stores (CROSSSLOT)"
                                % (i, steps[i].describe()[:80]))
        problems = []
        for i, st in enumerate(steps):
            e = expected[i] if i < len(expected) else "<<not run>>"
            a = actual[i] if i < len(actual) else "<<not run>>"
            if not isinstance(e, bytes):
                problems.append("step %d (%s): the oracle itself failed: %s"
                                % (i, st.describe(), e))
                continue
            ne, na = _normalize(st, e), _normalize(st, a)
            if ne != na:
                problems.append("step %d: %s\n    oracle: %s\n    proxy:  %s%s"
                                % (i, st.describe(), _show(e), _show(a), _first_difference(ne, na)))
        if problems:
            raise AssertionError("replies differ (%s vs %s):\n%s"
                                 % (self.oracle.name, self.proxy.name, "\n".join(problems)))
        return expected

    def run_pipeline(self, commands):
        """Send every command in one write and compare the replies as a whole."""
        __tracebackhide__ = True
        data = b"".join(encode_command(*c) for c in commands)
        return self.run([Step(raw=data, replies=len(commands))])


def info_fields(conn, section=None):
    """INFO [section] as a dict of its name:value lines."""
    r = parse_reply(conn.call("INFO", section) if section else conn.call("INFO"))
    assert isinstance(r, bytes), r
    out = {}
    for line in r.decode("latin-1").splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def count_error_lines(text):
    return [l for l in text.splitlines() if re.search(r"\berr(or)?\b", l, re.I)]
