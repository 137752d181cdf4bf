"""Client-side caching (CLIENT TRACKING) against a redis-server 7.0 oracle,
in front of Redis and of memcached: the same steps on both sides, every
byte each client receives compared (invalidation pushes, redirected
__redis__:invalidate messages, replies). Client ids differ between the
two servers, so they are written as ID.

After each step's reply the client that sent it pings, so everything the
step caused (pushes come before the ping's reply) is read
deterministically."""

import re
import socket
import time

import pytest

import harness
from harness import encode_command as E
from conftest import stores_mode
from test_patterns import sides, Sides, mc_env  # noqa: F401  (fixtures)


def _parse(buf, i=0):
    """The end of the RESP2/RESP3 value at buf[i:], or None if incomplete."""
    nl = buf.find(b"\r\n", i)
    if nl < 0:
        return None
    t, head = buf[i:i + 1], buf[i + 1:nl]
    j = nl + 2
    if t in b"+-:_,#(":
        return j
    if t in b"$=!":
        n = int(head)
        if n < 0:
            return j
        return j + n + 2 if len(buf) >= j + n + 2 else None
    n = int(head)
    if n < 0:
        return j
    if t == b"%" or t == b"|":
        n *= 2
    for _ in range(n):
        j = _parse(buf, j)
        if j is None:
            return None
    return j


class Client:
    def __init__(self, ep):
        self.sock = socket.create_connection((ep.host, ep.port), timeout=harness.REPLY_TIMEOUT)
        self.buf = b""
        self.resp = 2
        self.subscribed = False
        self.in_multi = False
        self.id = 0
        self.id = int(self.call("CLIENT", "ID").split(b"\r\n")[0][1:])

    def _recv(self, what):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no %s after %r" % (what, self.buf))
        if not data:
            raise AssertionError("closed; got %r" % self.buf)
        self.buf += data

    def _reply(self):
        """Up to the end of the next reply that is not a push."""
        i = 0
        while True:
            end = _parse(self.buf, i)
            if end is None:
                self._recv("reply")
                continue
            if self.buf[i:i + 1] != b">":
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            i = end

    def _until(self, end):
        while not self.buf.endswith(end):
            self._recv(repr(end))
        out, self.buf = self.buf, b""
        return out

    def sync_reply(self):
        return b"*2\r\n$4\r\npong\r\n$4\r\nsync\r\n" if self.subscribed and self.resp == 2 else b"$4\r\nsync\r\n"

    def call(self, *args):
        """The command's reply, then everything it caused, up to and with the
        reply of a PING sent once the reply has come (none inside MULTI)."""
        self.sock.sendall(E(*args))
        got = self._reply()
        name = str(args[0]).upper()
        if name == "MULTI":
            self.in_multi = True
        elif name in ("EXEC", "DISCARD"):
            self.in_multi = False
        if self.in_multi:
            return got
        self.sock.sendall(E("PING", "sync"))
        return got + self._until(self.sync_reply())

    def close(self):
        self.sock.close()


def run(ep, steps):
    clients, out = {}, []
    ids = {}
    for who, *args in steps:
        if who not in clients:
            clients[who] = Client(ep)
            ids[who] = clients[who].id
        c = clients[who]
        if args == ["CLOSE"]:
            c.close()
            time.sleep(0.05)
            continue
        if args[0] == "SLEEP":
            time.sleep(args[1])
            continue
        args = [str(ids[a[1:]]) if isinstance(a, str) and a.startswith("@") else a for a in args]
        got = c.call(*args)
        if args[:2] == ["HELLO", "3"]:
            c.resp = 3
            got = b"HELLO"  # carries the id
        if args[0] in ("SUBSCRIBE", "PSUBSCRIBE"):
            c.subscribed = True
        by_id = {str(cid).encode(): name.encode() for name, cid in ids.items()}
        got = re.sub(rb"(^|\r\n):(\d+)\r\n",
                     lambda m: m.group(1) + (b":ID(" + by_id[m.group(2)] + b")\r\n" if m.group(2) in by_id
                                             else m.group(0)[len(m.group(1)):]), got)
        out.append((who, tuple(args), got))
    for c in clients.values():
        c.close()
    return out


def compare(pair, steps):
    oracle, proxy = pair
    want = run(oracle, steps)
    got = run(proxy, steps)
    bad = ["%s %r\n  oracle: %r\n  proxy:  %r" % (w[0], w[1], w[2], g[2]) for w, g in zip(want, got)
           if w[2] != g[2]]
    assert not bad, "\n".join(bad)


CASES = {
    "default-mode": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("a", "GET", "k1"), ("a", "MGET", "k2", "k3"),
        ("b", "SET", "k1", "v"), ("a", "PING"), ("b", "SET", "k1", "v2"), ("a", "PING"),
        ("b", "MSET", "k2", "x", "k3", "y"), ("a", "PING"), ("a", "GET", "k1"), ("a", "SET", "k1", "mine"),
        ("a", "GET", "k1"), ("b", "DEL", "nothere"), ("a", "GET", "nothere"), ("b", "DEL", "nothere"),
        ("a", "PING"), ("b", "FLUSHALL"), ("a", "PING"), ("a", "GET", "k1"), ("b", "FLUSHDB"), ("a", "PING"),
    ],
    "unchanged-writes-tell-nobody": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("b", "SET", "s", "1"), ("a", "GET", "s"),
        ("a", "GET", "n"), ("b", "SET", "s", "2", "XX"), ("a", "PING"), ("a", "GET", "s"),
        ("b", "SET", "n", "2", "XX"), ("b", "SETNX", "s", "3"), ("b", "EXPIRE", "n", "10"), ("a", "PING"),
        ("b", "INCR", "s"), ("a", "PING"),
    ],
    "bcast": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:", "PREFIX", "q:"),
        ("b", "MSET", "p:1", "x", "r:1", "y", "p:2", "z"), ("a", "PING"), ("b", "SET", "q:1", "x"), ("a", "PING"),
        ("a", "SET", "p:3", "mine"), ("b", "SET", "nomatch", "1"), ("a", "PING"),
        ("c", "HELLO", "3"), ("c", "CLIENT", "TRACKING", "ON", "BCAST"), ("b", "SET", "any", "1"), ("c", "PING"),
        ("c", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "TRACKINGINFO"),
    ],
    "bcast-noloop": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "n:", "NOLOOP"),
        ("a", "SET", "n:1", "mine"), ("a", "PING"), ("b", "SET", "n:2", "theirs"), ("a", "PING"),
    ],
    "optin-optout": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON", "OPTIN"), ("a", "GET", "o1"),
        ("a", "CLIENT", "CACHING", "YES"), ("a", "GET", "o2"), ("a", "GET", "o3"), ("b", "MSET", "o1", "1", "o2", "2", "o3", "3"),
        ("a", "PING"), ("a", "CLIENT", "TRACKING", "OFF"), ("a", "CLIENT", "TRACKING", "ON", "OPTOUT"),
        ("a", "GET", "u1"), ("a", "CLIENT", "CACHING", "NO"), ("a", "GET", "u2"), ("b", "MSET", "u1", "1", "u2", "2"),
        ("a", "PING"), ("a", "CLIENT", "CACHING", "YES"), ("a", "CLIENT", "TRACKINGINFO"),
    ],
    "noloop": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON", "NOLOOP"), ("a", "GET", "n1"), ("a", "SET", "n1", "1"),
        ("a", "PING"), ("a", "GET", "n1"), ("b", "SET", "n1", "2"), ("a", "PING"),
    ],
    "scripts-and-functions": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("a", "GET", "e1"),
        ("b", "EVAL", "redis.call('set', KEYS[1], 'x') return 1", "1", "e1"), ("a", "PING"),
        ("a", "EVAL", "return redis.call('get', KEYS[1])", "1", "e2"), ("b", "SET", "e2", "y"), ("a", "PING"),
        ("b", "FUNCTION", "LOAD", "REPLACE",
         "#!lua name=tlib\nredis.register_function('tset', function(k, a) return redis.call('set', k[1], a[1]) end)"),
        ("a", "GET", "e3"), ("b", "FCALL", "tset", "1", "e3", "z"), ("a", "PING"),
        ("b", "EVAL", "return redis.pcall('incr', KEYS[1])", "1", "e3"), ("a", "GET", "e3"),
        ("b", "EVAL", "return redis.call('flushall')", "0"), ("a", "PING"), ("b", "FUNCTION", "FLUSH"),
    ],
    "script-reads-track-declared-keys": [
        # As Redis 7.0: a script that reads tracks the keys it declared, not
        # the ones its commands name; one that only writes tracks nothing.
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"),
        ("a", "EVAL", "redis.call('set', 'w9', 'x')", "2", "d1", "d2"), ("b", "MSET", "d1", "1", "d2", "2"),
        ("a", "PING"), ("a", "EVAL", "return redis.call('get', 'e9')", "2", "d1", "d2"),
        ("b", "MSET", "d2", "1", "d1", "2", "e9", "3"), ("a", "PING"),
        ("a", "EVAL_RO", "return redis.call('get', 'e9')", "1", "d3"), ("b", "MSET", "d3", "1", "e9", "4"),
        ("a", "PING"),
    ],
    "transactions": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("a", "GET", "t1"), ("a", "GET", "t2"),
        ("b", "MULTI"), ("b", "SET", "t1", "1"), ("b", "INCR", "t2"), ("b", "EXEC"), ("a", "PING"),
        ("a", "MULTI"), ("a", "GET", "t3"), ("a", "EXEC"), ("b", "SET", "t3", "3"), ("a", "PING"),
        ("b", "MULTI"), ("b", "SET", "t3", "4"), ("b", "DISCARD"), ("a", "PING"),
    ],
    "redirect-resp2": [
        ("d", "SUBSCRIBE", "__redis__:invalidate"), ("a", "CLIENT", "TRACKING", "ON", "REDIRECT", "@d"),
        ("a", "CLIENT", "GETREDIR"), ("a", "GET", "r1"), ("b", "SET", "r1", "x"), ("d", "PING"),
        ("a", "CLIENT", "TRACKINGINFO"), ("b", "FLUSHALL"), ("d", "PING"), ("a", "GET", "r2"), ("d", "CLOSE"),
        ("b", "SET", "r2", "x"), ("a", "PING"), ("a", "CLIENT", "TRACKINGINFO"),
    ],
    "redirect-broken-resp3": [
        ("d", "PING"), ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON", "REDIRECT", "@d"), ("a", "GET", "z"),
        ("d", "CLOSE"), ("b", "SET", "z", "1"), ("a", "PING"), ("a", "CLIENT", "GETREDIR"),
    ],
    "resp2-without-redirect": [
        ("a", "CLIENT", "TRACKING", "ON"), ("a", "GET", "q"), ("b", "SET", "q", "1"), ("a", "PING"),
        ("a", "CLIENT", "TRACKINGINFO"), ("a", "RESET"), ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "GETREDIR"),
    ],
    "errors": [
        ("b", "PING"), ("a", "CLIENT", "TRACKING", "ON", "BOGUS"), ("a", "CLIENT", "TRACKING", "MAYBE"),
        ("a", "CLIENT", "TRACKING", "ON", "REDIRECT", "abc"), ("a", "CLIENT", "TRACKING", "ON", "REDIRECT", "999999"),
        ("a", "CLIENT", "TRACKING", "ON", "PREFIX", "x"), ("a", "CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a", "PREFIX", "ab"),
        ("a", "CLIENT", "TRACKING", "ON", "REDIRECT", "@b", "REDIRECT", "@b"),
        ("a", "CLIENT", "CACHING", "YES"), ("a", "CLIENT", "TRACKING", "ON", "OPTIN"), ("a", "CLIENT", "CACHING", "NO"),
        ("a", "CLIENT", "CACHING", "MAYBE"), ("a", "CLIENT", "TRACKING", "ON", "OPTOUT"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST"), ("a", "CLIENT", "TRACKING", "OFF"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a", "NOLOOP"),
        ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab"), ("a", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "b"),
        ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "TRACKING", "ON"), ("a", "CLIENT", "TRACKING", "OFF"),
        ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "GETREDIR"), ("a", "CLIENT", "TRACKING"),
        ("a", "CLIENT", "CACHING"),
    ],
}

# memcached has no FUNCTION LOAD through every path, no SUBSCRIBE store
# behind it but the proxy itself: all of these still apply.


@pytest.mark.parametrize("case", sorted(CASES))
def test_tracking(sides, case):
    compare(sides, CASES[case])


REDIS_ONLY = {
    "blocking-write-tells-after-its-reply": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("b", "RPUSH", "{b}src", "x", "y"),
        ("a", "LRANGE", "{b}dst", "0", "-1"), ("a", "BLMOVE", "{b}src", "{b}dst", "LEFT", "LEFT", "0"),
        ("a", "LRANGE", "{b}dst", "0", "-1"), ("b", "BLMOVE", "{b}src", "{b}dst", "LEFT", "LEFT", "0"), ("a", "PING"),
        ("a", "LRANGE", "{b}dst", "0", "-1"), ("b", "BLPOP", "{b}none", "0.01"), ("b", "BLMOVE", "{b}none", "{b}dst",
                                                                                "LEFT", "LEFT", "0.01"),
        ("a", "PING"),
    ],
    "expired-keys": [
        # Keys the store expires by itself: their trackers are told (the
        # store's keyspace events), BCAST clients too.
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("b", "SET", "x1", "v", "PX", "50"),
        ("a", "GET", "x1"), ("a", "SLEEP", 0.3), ("a", "PING"),
        ("c", "HELLO", "3"), ("c", "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "x"),
        ("b", "SET", "x2", "v", "PX", "50"), ("c", "SLEEP", 0.3), ("c", "PING"),
    ],
    "tracking-table-max-keys": [
        ("a", "HELLO", "3"), ("a", "CLIENT", "TRACKING", "ON"), ("a", "MGET", "m1", "m2", "m3"),
        ("b", "CONFIG", "SET", "tracking-table-max-keys", "1"), ("a", "PING"), ("b", "PING"),
        ("a", "CLIENT", "TRACKING", "OFF"), ("b", "CONFIG", "SET", "tracking-table-max-keys", "1000000"),
    ],
}


@pytest.mark.parametrize("case", sorted(REDIS_ONLY))
def test_tracking_redis_store(sides, case):
    if sides.kind != "redis":
        pytest.skip("a memcached store announces no keyspace events")
    if case == "expired-keys" and stores_mode():
        pytest.skip("keyspace events are followed on one store only, not a pool's or a cluster's")
    if case == "blocking-write-tells-after-its-reply" and stores_mode() == "pool":
        pytest.skip("BLMOVE's two keys may sit on two stores of a pool")
    oracle, proxy = sides
    if case == "tracking-table-max-keys":
        # Which keys go first differs (Redis picks at random): compare counts.
        counts = []
        for side in sides:
            out = run(side, REDIS_ONLY[case])
            counts.append(sum(step[2].count(b">2\r\n$10\r\ninvalidate\r\n") for step in out))
        assert counts[0] == counts[1] == 2, counts
        return
    compare(sides, REDIS_ONLY[case])


def test_tracking_info_counts(sides):
    oracle, proxy = sides
    fields = ("tracking_total_keys", "tracking_total_items", "tracking_total_prefixes")
    want = got = None
    for side in sides:
        a, b = Client(side), Client(side)
        try:
            a.call("CLIENT", "TRACKING", "ON")
            b.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p1", "PREFIX", "p2")
            a.call("MGET", "i1", "i2")
            b.call("GET", "i1")
            with side.connect() as c:
                f = harness.info_fields(c)
                counts = tuple(f[k] for k in fields) + (f["tracking_clients"],)
        finally:
            a.close()
            b.close()
        if want is None:
            want = counts
        else:
            got = counts
    assert got == want, (got, want)
