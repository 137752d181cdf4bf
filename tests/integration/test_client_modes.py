"""Client modes against a redis-server 7.0 oracle on both kinds of store:
CLIENT REPLY OFF/SKIP with pub/sub and pipelines (subscription replies and
messages are pushes that Redis always sends), CLIENT PAUSE WRITE/ALL and
UNPAUSE, and CONFIG SET (error texts, several parameters at once)."""

import time

import pytest

import harness
from harness import encode_command as E
from test_patterns import sides, Sides, mc_env  # noqa: F401  (fixtures)

END = E("CLIENT", "REPLY", "ON") + E("PING", "end")


def _wait_subscribed(c, name, deadline):
    """Until the client has the confirmation of its subscription to name
    (a push, sent whatever CLIENT REPLY says): from then on a message
    published reaches it. Waiting on PUBSUB NUMSUB/NUMPAT instead could be
    fooled by other clients of the same store."""
    want = b"subscribe\r\n$%d\r\n%s\r\n" % (len(name), name.encode())
    while want not in bytes(c.buf):
        c._fill(deadline)


def _stream(ep, chunks):
    """Sends the chunks (bytes, or ("PUB", channel, message, subscription)
    published from another connection once the client's subscription is
    confirmed), then turns replies on and pings: everything the client
    received up to that PING."""
    with ep.connect() as c, ep.connect() as pub:
        for ch in chunks:
            if isinstance(ch, tuple):
                _wait_subscribed(c, ch[3], time.monotonic() + harness.REPLY_TIMEOUT)
                # At least this client (others of a store shared by other tests may count too).
                assert harness.parse_reply(pub.call("PUBLISH", ch[1], ch[2])) >= 1
            else:
                c.send(ch)
        c.send(END)
        deadline = time.monotonic() + harness.REPLY_TIMEOUT
        while not bytes(c.buf).endswith(b"$3\r\nend\r\n"):
            c._fill(deadline)
        return bytes(c.buf)


REPLY_CASES = {
    "off-subscribe": [E("CLIENT", "REPLY", "OFF"), E("SUBSCRIBE", "c1"), ("PUB", "c1", "m1", "c1"), E("UNSUBSCRIBE")],
    "skip-subscribe": [E("CLIENT", "REPLY", "SKIP"), E("SUBSCRIBE", "c1", "c2"), ("PUB", "c2", "m", "c2"), E("PING"),
                       E("UNSUBSCRIBE", "c1", "c2")],
    "skip-psubscribe": [E("CLIENT", "REPLY", "SKIP") + E("PSUBSCRIBE", "c*") + E("PING", "x"), ("PUB", "c9", "m", "c*"),
                        E("CLIENT", "REPLY", "SKIP") + E("PUNSUBSCRIBE")],
    # One channel only: UNSUBSCRIBE without names goes in hash order in Redis.
    "off-unsubscribe-all": [E("CLIENT", "REPLY", "OFF"), E("SUBSCRIBE", "c1"), ("PUB", "c1", "m1", "c1"),
                            E("GET", "x"), E("UNSUBSCRIBE"), E("UNSUBSCRIBE"), E("PUNSUBSCRIBE", "nothing")],
    "skip-unsubscribe-none": [E("CLIENT", "REPLY", "SKIP") + E("UNSUBSCRIBE") + E("PUNSUBSCRIBE")],
    "off-while-subscribed": [E("SUBSCRIBE", "z"), E("CLIENT", "REPLY", "OFF"), E("PING"), ("PUB", "z", "hello", "z"),
                             E("UNSUBSCRIBE", "z")],
    "off-pipeline": [E("CLIENT", "REPLY", "OFF") + E("SET", "k", "v") + E("GET", "k") + E("CLIENT", "REPLY", "SKIP")
                     + E("GET", "k") + E("CLIENT", "REPLY", "ON") + E("GET", "k") + E("DEL", "k")],
    "skip-pipeline": [E("CLIENT", "REPLY", "SKIP") + E("SET", "k", "1") + E("INCR", "k")
                      + E("CLIENT", "REPLY", "SKIP") + E("CLIENT", "REPLY", "SKIP") + E("GET", "k") + E("GET", "k")
                      + E("DEL", "k")],
    "skip-errors": [E("CLIENT", "REPLY", "SKIP") + E("NOSUCH") + E("GET") + E("PING", "after")],
    "skip-eval": [E("CLIENT", "REPLY", "SKIP") + E("EVAL", "return 1", "0") + E("EVAL", "return 2", "0")],
    "off-eval-publish": [E("SUBSCRIBE", "e"), ("PUB", "e", "first", "e"), E("UNSUBSCRIBE"), E("CLIENT", "REPLY", "OFF")
                         + E("EVAL", "return redis.call('publish', 'e', 'x')", "0") + E("SUBSCRIBE", "e2")
                         + E("UNSUBSCRIBE", "e2")],
    "bad-arguments": [E("CLIENT", "REPLY", "MAYBE") + E("CLIENT", "REPLY") + E("CLIENT", "REPLY", "OFF", "X")],
}


@pytest.mark.parametrize("case", list(REPLY_CASES), ids=list(REPLY_CASES))
def test_client_reply_with_pubsub_and_pipelines(sides, case):
    oracle, proxy = sides
    assert _stream(oracle, REPLY_CASES[case]) == _stream(proxy, REPLY_CASES[case])


# ---------------------------------------------------------------------------
# CONFIG SET: Redis's texts; names are checked before values; several
# parameters at once change all or nothing (the proxy's own directives and
# the store's together). Each case is followed by CONFIG GET of what it
# tried to change.

CONFIG_SET_CASES = [
    ("maxclients", "abc"), ("maxclients", "-1"), ("maxclients", "0"), ("maxclients", "4294967296"),
    ("MAXCLIENTS", "x"), ("lua-time-limit", "x"), ("LUA-TIME-LIMIT", "-1"), ("busy-reply-threshold", "-5"),
    ("timeout", "-1"), ("timeout", "abc"), ("tcp-keepalive", "abc"), ("loglevel", "nosuch"),
    ("proto-max-bulk-len", "1"), ("client-query-buffer-limit", "1"), ("logfile", "/tmp/x"),
    ("a", "b", "c"), ("maxclients", "10", "maxclients", "20"), ("maxclients", "10", "MaxClients", "20"),
    ("lua-time-limit", "100", "busy-reply-threshold", "200"),
    ("busy-reply-threshold", "300", "lua-time-limit", "400"),
    ("maxclients", "100", "timeout", "abc"), ("timeout", "abc", "maxclients", "100"),
    ("maxclients", "abc", "logfile", "x"), ("timeout", "7", "logfile", "x"),
    ("maxclients", "200", "maxmemory", "abc"), ("maxmemory", "abc", "maxclients", "200"),
    ("maxmemory", "1gb", "maxclients", "x"), ("maxclients", "300", "maxmemory-policy", "nosuch"),
    ("maxclients", "4000", "timeout", "9"),
]
CONFIG_NAMES = ("maxclients", "timeout", "busy-reply-threshold", "lua-time-limit", "maxmemory", "maxmemory-policy")


def _config_values(c, names):
    out = []
    for n in names:
        out += harness.parse_reply(c.call("CONFIG", "GET", n))
    return out


@pytest.mark.parametrize("args", CONFIG_SET_CASES, ids=lambda a: " ".join(a))
def test_config_set_like_redis(sides, args):
    oracle, proxy = sides
    names = [n for n in CONFIG_NAMES if sides.kind == "redis" or not n.startswith("maxmemory")]
    if sides.kind == "memcached" and any(a.lower().startswith("maxmemory") for a in args):
        pytest.skip("memcached has none of Redis's own directives")
    out = []
    for ep in (oracle, proxy):
        with ep.connect() as c:
            before = _config_values(c, names + ["loglevel"])
            try:
                out.append([c.call("CONFIG", "SET", *args)] + [c.call("CONFIG", "GET", n) for n in names])
            finally:
                assert c.call("CONFIG", "SET", *before) == b"+OK\r\n"
    assert out[0] == out[1]


def _listen_steps(ep, busy_port):
    """CONFIG SET port/bind on a live server: errors, a move to a new port
    and back. What each step answered, with port numbers left out."""
    def reachable(port):
        try:
            with harness.Endpoint("probe", ep.host, port).connect(connect_timeout=5) as p:
                return p.call("PING")
        except OSError:
            return "refused"
    out = []
    new_port = harness.free_port()
    with ep.connect() as c:
        try:
            for args in (("port", "abc"), ("port", "70000"), ("port", "-1"), ("port", str(busy_port)),
                         ("bind", "999.1.1.1"), ("bind", "127.0.0.1 999.1.1.1"), ("port", "1", "maxclients", "x"),
                         ("maxclients", "x", "bind", "127.0.0.1")):
                out.append(c.call("CONFIG", "SET", *args))
            out.append(c.call("CONFIG", "GET", "bind"))
            out.append(reachable(ep.port))
            out.append(c.call("CONFIG", "SET", "port", str(new_port)))
            out.append(reachable(new_port))
            out.append(reachable(ep.port))
            out.append(c.call("PING"))  # connections made before stay
            out.append(c.call("CONFIG", "SET", "port", str(ep.port), "bind", "127.0.0.1 -::1"))
            out.append(c.call("CONFIG", "GET", "bind"))
            out.append(reachable(ep.port))
            out.append(reachable(new_port))
        finally:
            c.call("CONFIG", "SET", "port", str(ep.port), "bind", "127.0.0.1")
    assert reachable(ep.port) == b"+PONG\r\n"
    return out


def test_config_set_port_and_bind(sides, store):
    oracle, proxy = sides
    assert _listen_steps(oracle, store.port) == _listen_steps(proxy, store.port)
