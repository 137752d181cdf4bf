"""Key placement against twemproxy itself: keys are written through a real
nutcracker (0.5.0) in front of three stores, each store is asked which keys
it holds, and tests/tools/placement_tool (util/placement.c) must name the
same owner for every key.

PLACEMENT_TOOL   the placement tool (default build/release/tests/placement_tool)
NUTCRACKER_BIN   nutcracker (default /usr/sbin/nutcracker, else the one on PATH)
"""

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

NUTCRACKER = os.environ.get("NUTCRACKER_BIN") or (
    "/usr/sbin/nutcracker" if os.path.exists("/usr/sbin/nutcracker") else shutil.which("nutcracker"))
TOOL = os.path.abspath(os.environ.get("PLACEMENT_TOOL") or os.path.join(
    harness.REPO_ROOT, "build", "release", "tests", "placement_tool"))
MEMCACHED = shutil.which("memcached")

pytestmark = [
    pytest.mark.skipif(not NUTCRACKER or not os.path.exists(NUTCRACKER), reason="nutcracker is not installed"),
    pytest.mark.skipif(not os.path.exists(TOOL), reason="placement_tool is not built (make unit)"),
]

NKEYS = 10000


# ---- keys ----------------------------------------------------------------

def plain_keys(n, seed):
    """Readable keys, plus a share of binary ones: bytes above 0x7f go
    through plain char in several of twemproxy's hashes."""
    rng = random.Random(seed)
    keys = []
    for i in range(n):
        if i % 5 == 4:
            length = rng.randint(1, 40)
            k = bytes(rng.randrange(1, 256) for _ in range(length))
            k = k.replace(b"\n", b"n")  # the tool reads one key a line
        else:
            k = b"key:%d:%s" % (i, b"x" * rng.randint(0, 20))
        keys.append(k)
    return list(dict.fromkeys(keys))


def tagged_keys(n, seed):
    """Keys with "{...}" tags and every edge of the rule: empty tags, an
    opening brace with no closing one, a closing one alone, two tags
    (the first counts), nested braces, tags at either end."""
    rng = random.Random(seed)
    shapes = [
        b"{user%d}:profile", b"{user%d}:friends", b"pre{%d}post", b"x%d{}", b"{}%d", b"{%d",
        b"%d}", b"a{%d", b"%d}{", b"{}{%d}", b"{%d}{other}", b"{{%d}}", b"}%d{", b"{%d}}",
        b"{ %d }", b"%d{}{}", b"{}", b"{x}%d", b"plain%d",
    ]
    keys = [b"", b"{}", b"{", b"}", b"{}{}", b"{{}}", b"{x}", b"x{"]
    while len(keys) < n:
        shape = rng.choice(shapes)
        keys.append(shape.replace(b"%d", str(rng.randrange(n // 4)).encode()) if b"%d" in shape else shape)
        keys.append(shape.replace(b"%d", str(len(keys)).encode()) if b"%d" in shape else shape)
    return list(dict.fromkeys(keys))[:n]


# ---- processes -----------------------------------------------------------

class Nutcracker:
    """nutcracker with one generated pool."""

    def __init__(self, workdir, servers, distribution, hash_name, hash_tag=None, redis=True,
                 auto_eject=False, extra=()):
        self.port = harness.free_port()
        self.stats_port = harness.free_port()
        self.conf = os.path.join(workdir, "nutcracker-%d.yml" % self.port)
        self.log = os.path.join(workdir, "nutcracker-%d.log" % self.port)
        lines = [
            "pool:",
            "  listen: %s:%d" % (harness.HOST, self.port),
            "  distribution: %s" % distribution,
            "  hash: %s" % hash_name,
            "  redis: %s" % ("true" if redis else "false"),
            "  auto_eject_hosts: %s" % ("true" if auto_eject else "false"),
            "  timeout: 10000",
            "  server_connections: 1",
        ]
        if hash_tag:
            lines.append('  hash_tag: "%s"' % hash_tag)
        lines += ["  " + e for e in extra]
        lines.append("  servers:")
        lines += ["    - %s" % s for s in servers]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [NUTCRACKER, "-c", self.conf, "-o", self.log, "-s", str(self.stats_port), "-a", harness.HOST],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nutcracker exited (%s): %s" % (self.proc.returncode, self.tail()))
            try:
                socket.create_connection((harness.HOST, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nutcracker did not listen on %d: %s" % (self.port, self.tail()))

    def tail(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Memcached:
    def __init__(self):
        self.host, self.port = harness.HOST, harness.free_port()
        self.proc = None

    def start(self):
        args = [MEMCACHED, "-l", self.host, "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(64).startswith(b"VERSION"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("memcached did not start on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="pool-placement-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def stores(workdir):
    """Three redis-servers; the last also listens on a unix socket."""
    sock = os.path.join(workdir, "store-c.sock")
    started = []
    try:
        for name in ("a", "b", "c"):
            extra = ("unixsocket %s" % sock, "unixsocketperm 700") if name == "c" else ()
            s = harness.RedisServer("store-" + name, os.path.join(workdir, name), extra=extra)
            started.append(s.start())
        started[2].unixsocket = sock
        yield started
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def flushed(stores):
    for s in stores:
        with s.connect() as c:
            assert c.call("FLUSHALL") == b"+OK\r\n"
    return stores


# ---- writing, finding, comparing ------------------------------------------

def write_through_redis(port, keys, batch=1000):
    with harness.RespConnection(harness.HOST, port, timeout=30) as c:
        for i in range(0, len(keys), batch):
            chunk = keys[i:i + batch]
            c.send(b"".join(harness.encode_command("SET", k, "1") for k in chunk))
            replies = c.read_replies(len(chunk))
            bad = [(k, r) for k, r in zip(chunk, replies) if r != b"+OK\r\n"]
            assert not bad, "nutcracker refused %r: %r" % bad[0]


def keys_on_redis(store):
    with store.connect(timeout=30) as c:
        return set(harness.parse_reply(c.call("KEYS", "*")))


def write_through_memcached(port, keys, batch=1000):
    with socket.create_connection((harness.HOST, port), timeout=30) as s:
        f = s.makefile("rb")
        for i in range(0, len(keys), batch):
            chunk = keys[i:i + batch]
            s.sendall(b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in chunk))
            for k in chunk:
                line = f.readline()
                assert line == b"STORED\r\n", "nutcracker refused %r: %r" % (k, line)


def keys_on_memcached(mc, keys, batch=200):
    """The keys of `keys` this memcached holds (memcached cannot list them)."""
    held = set()
    with socket.create_connection((mc.host, mc.port), timeout=30) as s:
        f = s.makefile("rb")
        for i in range(0, len(keys), batch):
            s.sendall(b"get " + b" ".join(keys[i:i + batch]) + b"\r\n")
            while True:
                line = f.readline()
                if line == b"END\r\n":
                    break
                assert line.startswith(b"VALUE "), line
                held.add(line.split(b" ")[1])
                f.readline()  # the value
    return held


def tool_owners(spec_args, keys, live=None):
    args = [TOOL] + (["--live", ",".join(map(str, live))] if live else []) + spec_args
    out = subprocess.run(args, input=b"".join(k + b"\n" for k in keys),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    owners = [int(x) for x in out.stdout.split()]
    assert len(owners) == len(keys)
    return owners


def check_same_owners(keys, held_by, owners, what):
    """held_by: for each server index, the set of keys it holds."""
    actual = {}
    for idx, held in enumerate(held_by):
        for k in held:
            assert k not in actual, "%s: key %r on servers %d and %d" % (what, k, actual[k], idx)
            actual[k] = idx
    missing = [k for k in keys if k not in actual]
    assert not missing, "%s: %d keys on no server, first %r" % (what, len(missing), missing[0])
    for k, mine in zip(keys, owners):
        if actual[k] != mine:
            pytest.fail("%s: first differing key %r: nutcracker put it on server %d, placement says %d"
                        % (what, k, actual[k], mine))
    counts = [len(h) for h in held_by]
    assert all(counts), "%s: a server got no keys (%r): the case proves little" % (what, counts)


def pool_proxy_args(server_lines, distribution, hash_name, hash_tag, scheme):
    """evalproxy's backend lines for twemproxy's server lines."""
    args = []
    for line in server_lines:
        addr, _, name = line.partition(" ")
        where, _, weight = addr.rpartition(":")
        url = "unix://" + where if where.startswith("/") else "%s://%s" % (scheme, where)
        args += ["--backend", url, weight] + ([name] if name else [])
    args += ["--distribution", distribution, "--hash", hash_name]
    if hash_tag:
        args += ["--hash-tag", hash_tag]
    return args


def start_pool_proxy(workdir, server_lines, distribution, hash_name, hash_tag=None, scheme="redis"):
    import conftest
    args = pool_proxy_args(server_lines, distribution, hash_name, hash_tag, scheme)
    p = harness.ProxyProcess(conftest.proxy_binary(), None, os.path.join(workdir, "proxy-%d" % harness.free_port()),
                             backend_args=args)
    p.start()
    conftest.wait_store_learnt(p) if scheme == "redis" else None
    return p


def check_same_servers(keys, nutcracker_held, proxy_held, what):
    for idx, (n, e) in enumerate(zip(nutcracker_held, proxy_held)):
        if n != e:
            k = sorted(n ^ e)[0]
            pytest.fail("%s: key %r is on server %d %s nutcracker, %s evalproxy"
                        % (what, k, idx, *(("through", "not through") if k in n else ("not through", "through"))))


def run_redis_case(workdir, stores, server_lines, distribution, hash_name, keys,
                   hash_tag=None, order=None):
    """server_lines: twemproxy's server lines; order[i]: the store behind line i.
    The keys are written through nutcracker, then through evalproxy with the
    same pool: each store must hold the same keys both times, and the
    placement tool must name the same owners."""
    order = order or list(range(len(server_lines)))
    nc = Nutcracker(workdir, server_lines, distribution, hash_name, hash_tag).start()
    try:
        write_through_redis(nc.port, keys)
    finally:
        nc.stop()
    held_by = [keys_on_redis(stores[order[i]]) for i in range(len(server_lines))]
    what = "%s/%s%s" % (distribution, hash_name, " tag " + hash_tag if hash_tag else "")
    owners = tool_owners([distribution, hash_name, hash_tag or "-"] + server_lines, keys)
    check_same_owners(keys, held_by, owners, what)
    for s in stores:
        with s.connect() as c:
            assert c.call("FLUSHALL") == b"+OK\r\n"
    p = start_pool_proxy(workdir, server_lines, distribution, hash_name, hash_tag)
    try:
        write_through_redis(p.port, keys)
    finally:
        conftest_stop(p)
    check_same_servers(keys, held_by, [keys_on_redis(stores[order[i]]) for i in range(len(server_lines))],
                       what)


def conftest_stop(p):
    import conftest
    conftest.stop_proxy(p)


def lines(stores, weights=(1, 1, 1), names=None):
    out = []
    for i, s in enumerate(stores):
        line = "%s:%d:%d" % (s.host, s.port, weights[i])
        if names:
            line += " " + names[i]
        out.append(line)
    return out


# ---- cases ---------------------------------------------------------------

def test_ketama_fnv1a_64(workdir, flushed):
    run_redis_case(workdir, flushed, lines(flushed), "ketama", "fnv1a_64", plain_keys(NKEYS, 1))


def test_ketama_md5_hash_tags(workdir, flushed):
    run_redis_case(workdir, flushed, lines(flushed), "ketama", "md5", tagged_keys(NKEYS, 2), hash_tag="{}")


def test_ketama_weights(workdir, flushed):
    run_redis_case(workdir, flushed, lines(flushed, weights=(1, 2, 3)), "ketama", "fnv1a_64",
                   plain_keys(NKEYS, 3))


def test_ketama_weights_float_points(workdir, flushed):
    # twemproxy counts ketama points in float: weight 29 of 60 over three
    # servers gets 228 points, not the 232 of exact arithmetic.
    run_redis_case(workdir, flushed, lines(flushed, weights=(29, 1, 30)), "ketama", "md5",
                   plain_keys(NKEYS, 10))


def test_ketama_server_names(workdir, flushed):
    # Names of different lengths: twemproxy orders servers by name length first.
    run_redis_case(workdir, flushed, lines(flushed, weights=(2, 1, 1), names=("gamma-long", "b", "alpha")),
                   "ketama", "md5", plain_keys(NKEYS, 4))


def test_modula_crc32_weights_in_name_order(workdir, flushed):
    # Listed against the order of their names: modula counts servers in
    # twemproxy's order (sorted by name), not the file's.
    order = sorted(range(3), key=lambda i: "%s:%d" % (flushed[i].host, flushed[i].port), reverse=True)
    server_lines = ["%s:%d:%d" % (flushed[i].host, flushed[i].port, w) for i, w in zip(order, (3, 1, 2))]
    run_redis_case(workdir, flushed, server_lines, "modula", "crc32", plain_keys(NKEYS, 5), order=order)


def test_modula_murmur(workdir, flushed):
    run_redis_case(workdir, flushed, lines(flushed, weights=(1, 2, 1)), "modula", "murmur",
                   plain_keys(NKEYS, 6), hash_tag="{}")


@pytest.mark.parametrize("hash_name", ["one_at_a_time", "crc16", "crc32a", "fnv1_64", "fnv1_32",
                                       "fnv1a_32", "hsieh", "jenkins"])
def test_modula_every_other_hash(workdir, flushed, hash_name):
    # Modula with a total weight of 7 shows every bit of the hash, where
    # ketama only shows its order.
    run_redis_case(workdir, flushed, lines(flushed, weights=(3, 2, 2)), "modula", hash_name,
                   plain_keys(2000, 7))


def test_ketama_unix_socket_name(workdir, flushed):
    # A unix socket server without a name is hashed as "path:".
    server_lines = lines(flushed[:2]) + ["%s:1" % flushed[2].unixsocket]
    run_redis_case(workdir, flushed, server_lines, "ketama", "md5", plain_keys(4000, 8))


def test_ketama_port_as_written(workdir, flushed):
    # The name hashed is the configuration's text: "host:0port" keeps its zero.
    server_lines = ["%s:0%d:1" % (s.host, s.port) for s in flushed]
    nc = Nutcracker(workdir, server_lines, "ketama", "md5").start()
    keys = plain_keys(4000, 12)
    try:
        write_through_redis(nc.port, keys)
    finally:
        nc.stop()
    held_by = [keys_on_redis(s) for s in flushed]
    named = ["%s %s" % (line, line.rsplit(":", 1)[0]) for line in server_lines]
    owners = tool_owners(["ketama", "md5", "-"] + named, keys)
    check_same_owners(keys, held_by, owners, "ketama/md5 ports spelled with a leading zero")


def test_ketama_ejected_server(workdir, flushed):
    # auto_eject_hosts: a fourth server nobody listens on is ejected on its
    # first failure; the continuum is rebuilt over the other three (points
    # recounted for three live servers), as placement_set_live does.
    dead_port = harness.free_port()
    server_lines = lines(flushed, weights=(1, 2, 3)) + ["%s:%d:2" % (harness.HOST, dead_port)]
    nc = Nutcracker(workdir, server_lines, "ketama", "fnv1a_64", auto_eject=True,
                    extra=["server_failure_limit: 1", "server_retry_timeout: 600000"]).start()
    keys = plain_keys(NKEYS, 11)
    try:
        # Keys until one meets the dead server and gets an error: it is ejected then.
        with harness.RespConnection(harness.HOST, nc.port, timeout=30) as c:
            for i in range(1000):
                if not c.call("SET", "warm-up:%d" % i, "1").startswith(b"+OK"):
                    break
            else:
                pytest.fail("no key met the dead server")
        for s in flushed:
            with s.connect() as c:
                c.call("FLUSHALL")
        write_through_redis(nc.port, keys)
    finally:
        nc.stop()
    held_by = [keys_on_redis(s) for s in flushed] + [set()]
    owners = tool_owners(["ketama", "fnv1a_64", "-"] + server_lines, keys, live=[1, 1, 1, 0])
    for k, o in zip(keys, owners):
        assert o != 3, "placement gave %r to the ejected server" % k
    check_same_owners(keys, held_by[:3], owners, "ketama/fnv1a_64 one server ejected")


@pytest.mark.skipif(not MEMCACHED, reason="memcached is not installed")
def test_memcached_ketama_md5(workdir):
    mcs = []
    try:
        for _ in range(3):
            mcs.append(Memcached().start())
        server_lines = ["%s:%d:%d" % (m.host, m.port, w) for m, w in zip(mcs, (1, 1, 2))]
        keys = [k for k in plain_keys(NKEYS, 9) if all(0x21 <= b < 0x7f for b in k)]
        nc = Nutcracker(workdir, server_lines, "ketama", "md5", redis=False).start()
        try:
            write_through_memcached(nc.port, keys)
        finally:
            nc.stop()
        held_by = [keys_on_memcached(m, keys) for m in mcs]
        owners = tool_owners(["ketama", "md5", "-"] + server_lines, keys)
        check_same_owners(keys, held_by, owners, "memcached ketama/md5")
        for m in mcs:
            with socket.create_connection((m.host, m.port), timeout=10) as sk:
                sk.sendall(b"flush_all\r\n")
                assert sk.makefile("rb").readline() == b"OK\r\n"
        p = start_pool_proxy(workdir, server_lines, "ketama", "md5", scheme="memcached")
        try:
            write_through_redis(p.port, keys)
        finally:
            conftest_stop(p)
        check_same_servers(keys, held_by, [keys_on_memcached(m, keys) for m in mcs], "memcached ketama/md5")
    finally:
        for m in mcs:
            m.stop()
