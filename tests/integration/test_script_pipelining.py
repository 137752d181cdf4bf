"""lua-script-pipelining yes: a client's scripts whose earlier runs kept to
their declared keys run while the client's next commands are read. Replies
stay in request order and byte-identical to Redis's; commands on the same
keys still see each script whole; a client that vanishes leaves no lock."""

import hashlib
import random
import threading
import time

import pytest

import harness
from harness import encode_command, parse_reply
from test_scripting_behaviour import ConfigOverride, assert_no_lock_leak, info_fields


def pipelined_count(proxy):
    with proxy.connect() as c:
        return int(info_fields(c)["scripts_pipelined"])

INCR = "return redis.call('INCR', KEYS[1])"
APPEND = "return redis.call('APPEND', KEYS[1], ARGV[1])"
TWO = ("local a = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
       "local b = redis.call('DECRBY', KEYS[2], ARGV[1])\n"
       "return {a, b}")
UNDECLARED = "return redis.call('INCR', 'undeclared:' .. ARGV[1])"


@pytest.fixture
def pipelining(diff, proxy, real_proxy):
    with ConfigOverride(real_proxy, lua_script_pipelining="yes"):
        yield diff
    assert_no_lock_leak(real_proxy)


def _warm(diff, *bodies):
    """Loads and runs each script once on both sides (a script is pipelined
    only after a run that kept to its declared keys)."""
    steps = []
    for b in bodies:
        steps.append(("SCRIPT", "LOAD", b))
        n = b.count("KEYS[")
        steps.append(("EVAL", b, str(n)) + tuple("warm:%d" % i for i in range(n)) + ("1",))
    diff.run(steps)
    return [hashlib.sha1(b.encode()).hexdigest() for b in bodies]


def test_pipelined_replies_match_redis(real_proxy, pipelining):
    incr, append, two, und = _warm(pipelining, INCR, APPEND, TWO, UNDECLARED)
    before = pipelined_count(real_proxy)
    rnd = random.Random(7)
    cmds = []
    for i in range(600):
        k = "p:%d" % rnd.randint(0, 20)
        r = rnd.random()
        if r < 0.3:
            cmds.append(("EVALSHA", incr, "1", k))
        elif r < 0.5:
            cmds.append(("EVALSHA", append, "1", "s:" + k, str(i)))
        elif r < 0.65:
            cmds.append(("EVALSHA", two, "2", k, "q:%d" % rnd.randint(0, 5), str(rnd.randint(1, 9))))
        elif r < 0.72:
            cmds.append(("EVALSHA", und, "0", str(rnd.randint(0, 3))))
        elif r < 0.8:
            cmds.append(("GET", k))
        elif r < 0.85:
            cmds.append(("INCR", k))
        elif r < 0.9:
            cmds.append(("EVALSHA", incr, "1", "s:" + k))  # WRONGTYPE-free: s:* are strings
        elif r < 0.95:
            cmds.append(("EVAL", "return redis.call('GET', KEYS[1])", "1", "s:" + k))
        else:
            cmds.append(("EVALSHA", "0" * 40, "0"))
    pipelining.run_pipeline(cmds)
    # most scripts ran pipelined (the one touching undeclared keys never does)
    assert pipelined_count(real_proxy) - before > 200
    pipelining.run([("MGET",) + tuple("p:%d" % i for i in range(21)),
                    ("MGET",) + tuple("s:p:%d" % i for i in range(21)),
                    ("MGET",) + tuple("q:%d" % i for i in range(6))])


def test_same_key_scripts_keep_their_order(real_proxy, pipelining):
    (append,) = _warm(pipelining, APPEND)
    before = pipelined_count(real_proxy)
    with real_proxy.connect() as c:
        c.send(b"".join(encode_command("EVALSHA", append, "1", "order", "%d," % i) for i in range(300)))
        replies = [c.read_reply() for _ in range(300)]
        expect = 0
        for i, r in enumerate(replies):
            expect += len("%d," % i)
            assert r == b":%d\r\n" % expect, (i, r)
        assert parse_reply(c.call("GET", "order")) == "".join("%d," % i for i in range(300)).encode()
    assert pipelined_count(real_proxy) > before


def test_pipelined_transfers_conserve_the_total(real_proxy, pipelining):
    (two,) = _warm(pipelining, TWO)
    accounts = ["acct:%d" % i for i in range(8)]
    with real_proxy.connect() as c:
        c.call("MSET", *[x for a in accounts for x in (a, 1000)])
    stop = time.monotonic() + 2.5
    errors = []

    def mover(seed):
        rnd = random.Random(seed)
        with real_proxy.connect() as c:
            while time.monotonic() < stop:
                batch = []
                for _ in range(16):
                    a, b = rnd.sample(accounts, 2)
                    batch.append(encode_command("EVALSHA", two, "2", a, b, str(rnd.randint(1, 5))))
                c.send(b"".join(batch))
                for _ in range(16):
                    r = c.read_reply()
                    if not r.startswith(b"*2\r\n"):
                        errors.append(r)

    def reader():
        with real_proxy.connect() as c:
            while time.monotonic() < stop:
                vals = parse_reply(c.call("MGET", *accounts))
                if sum(int(v) for v in vals) != 8000:
                    errors.append(vals)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(6)] + \
        [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    with real_proxy.connect() as c:
        assert sum(int(v) for v in parse_reply(c.call("MGET", *accounts))) == 8000


def test_client_vanishing_with_pipelined_scripts(real_proxy, pipelining):
    (incr,) = _warm(pipelining, INCR)
    for _ in range(5):
        c = harness.RespConnection(real_proxy.host, real_proxy.port)
        c.send(b"".join(encode_command("EVALSHA", incr, "1", "gone:%d" % (i % 7)) for i in range(500)))
        c.close()
    with real_proxy.connect() as c:
        assert c.call("PING") == b"+PONG\r\n"
    assert_no_lock_leak(real_proxy)


def test_pipelined_scripts_capped_across_clients(real_proxy, store, pipelining):
    """At most 128 scripts run pipelined at once over all clients; past that
    a client's script runs the ordinary way (the client waits for it). With
    the store paused every script started stays in flight, so the count of
    running scripts shows the cap; afterwards every reply is right."""
    (incr,) = _warm(pipelining, INCR)
    clients = [harness.RespConnection(real_proxy.host, real_proxy.port) for _ in range(20)]
    try:
        with store.connect() as s:
            assert s.call("CLIENT", "PAUSE", "1500") == b"+OK\r\n"
        for i, c in enumerate(clients):
            c.send(b"".join(encode_command("EVALSHA", incr, "1", "cap:%d:%d" % (i, j)) for j in range(30)))
        time.sleep(0.3)  # the proxy reads them while the store is paused
        with real_proxy.connect() as c:
            fields = dict(line.split(":", 1) for line in
                          c.call("INFO", "scripting").decode().split("\r\n") if ":" in line)
        running = int(fields["scripts_running"])
        # 128 pipelined, plus at most one ordinary script per client
        assert 20 < running <= 128 + 20, running
        for i, c in enumerate(clients):
            got = c.read_replies(30, timeout=10)
            assert got == [b":1\r\n"] * 30, (i, got)
    finally:
        for c in clients:
            c.close()
