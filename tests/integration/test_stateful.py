"""Stateful commands through the proxy: MULTI/EXEC/WATCH, pub/sub, blocking
commands, isolation under concurrency and the life cycle of clients that
hold store connections (pinned by WATCH, blocked, subscribed).

Wherever a reply can be compared, the same sequence runs against the oracle
(redis-server 7.0) and the proxy and the raw reply bytes must be identical.
Sequences that need more than one client run as a small scenario function
on each side; the transcripts they return are compared.
"""

import random
import re
import resource
import socket
import threading
import time

import pytest

import harness

from harness import (HOST, ConnectionClosed, ProxyProcess, RedisServer, ReplyTimeout, Step,
                     encode_command, parse_reply)
from conftest import proxy_binary


def raw(data, replies=1):
    return Step(raw=data, replies=replies)


def info(conn, section):
    return harness.info_fields(conn, section)


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError("%s not reached within %.0fs (last: %r)" % (what, timeout, last))


def compare_scenario(oracle, proxy, scenario):
    """Runs scenario(endpoint) on each side; the transcripts must be equal."""
    __tracebackhide__ = True
    for ep in (oracle, proxy):
        with ep.connect() as c:
            assert c.call("FLUSHALL") == b"+OK\r\n"
    expected = scenario(oracle)
    actual = scenario(proxy)
    problems = []
    for i in range(max(len(expected), len(actual))):
        e = expected[i] if i < len(expected) else "<<missing>>"
        a = actual[i] if i < len(actual) else "<<missing>>"
        if e != a:
            problems.append("entry %d:\n    oracle: %r\n    proxy:  %r" % (i, e, a))
    if problems:
        raise AssertionError("transcripts differ:\n" + "\n".join(problems))
    return expected


def proxy_quiet(proxy):
    """No subscription left at the store from earlier tests (the proxy's
    unsubscribes are asynchronous), so store-wide pub/sub counts relayed by
    the proxy are this test's own."""
    backend = getattr(proxy, "backend", proxy)
    with backend.connect() as c:
        wait_until(lambda: c.call("PUBSUB", "CHANNELS") == b"*0\r\n"
                   and c.call("PUBSUB", "NUMPAT") == b":0\r\n"
                   and c.call("PUBSUB", "SHARDCHANNELS") == b"*0\r\n",
                   what="no subscription left at the store")


def topics(conn):
    return int(info(conn, "pubsub")["pubsub_topics"])


@pytest.fixture
def private_proxy(tmp_path):
    """A store and a proxy of this test's own, for tests whose failure would
    leave state behind in the shared proxy."""
    st = RedisServer("store", str(tmp_path / "store"), rename_scripting=True).start()
    p = ProxyProcess(proxy_binary(), st, str(tmp_path / "proxy"))
    try:
        p.start()
        yield p
    finally:
        status = p.stop()
        st.stop()
    assert not p.sanitizer_report(), p.sanitizer_report()
    assert status in (0, -15), p.diagnostics()


def config_get(conn, name):
    r = parse_reply(conn.call("CONFIG", "GET", name))
    return r[1]


# ---------------------------------------------------------------------------
# MULTI / EXEC / DISCARD / WATCH: one connection, compared step by step

TX_CASES = [
    ("queued-unknown-command", ["MULTI", "SET a 1", "NOSUCHCMD x", "INCR b", "EXEC",
                                "EXISTS a b"]),
    ("queued-wrong-arity", ["MULTI", "SET a", "INCR b", "GET", "EXEC", "EXISTS b", "GET a"]),
    ("queued-unknown-subcommand", ["MULTI", "OBJECT NOSUCH x", "SET a 1", "EXEC", "EXISTS a"]),
    ("runtime-errors-inside-exec", ["SET s str", "MULTI", "INCR s", "SET a 1", "LPUSH s x",
                                    "INCRBY a 5", "HSET s f v", "EXEC", "GET a", "GET s"]),
    ("nested-multi", ["MULTI", "MULTI", "SET a 1", "EXEC", "GET a", "MULTI", "MULTI", "EXEC"]),
    ("exec-discard-without-multi", ["EXEC", "DISCARD", "MULTI", "DISCARD", "DISCARD", "EXEC"]),
    ("discard-drops-queue", ["MULTI", "SET a 1", "INCR b", "DISCARD", "EXISTS a b", "PING"]),
    ("empty-transaction", ["MULTI", "EXEC", "MULTI", "PING", "PING hi", "ECHO e", "EXEC"]),
    ("watch-inside-multi", ["MULTI", "WATCH a", "SET a 1", "EXEC", "GET a"]),
    ("watch-own-change", ["SET a 1", "WATCH a", "SET a 2", "MULTI", "SET a 3", "EXEC", "GET a"]),
    ("watch-own-change-missing-key", ["WATCH nokey", "SET nokey x", "MULTI", "INCR c", "EXEC",
                                      "EXISTS c"]),
    ("watch-no-change", ["SET a 1", "WATCH a b c", "GET a", "MULTI", "INCR a", "SET b x", "EXEC",
                         "MGET a b"]),
    ("watch-ends-with-exec", ["WATCH a", "MULTI", "SET a 1", "EXEC", "SET a 2", "MULTI",
                              "SET a 3", "EXEC", "GET a"]),
    ("unwatch", ["WATCH a", "SET a x", "UNWATCH", "MULTI", "SET a y", "EXEC", "GET a",
                 "UNWATCH"]),
    ("discard-unwatches", ["WATCH a", "MULTI", "DISCARD", "SET a changed", "MULTI", "SET a z",
                           "EXEC", "GET a"]),
    ("watch-then-execabort", ["WATCH a", "MULTI", "NOSUCH", "EXEC", "SET a 1", "MULTI",
                              "SET a 2", "EXEC", "GET a"]),
    ("select-inside-multi", ["SET k db0", "MULTI", "SELECT 1", "SET k db1", "EXEC", "GET k",
                             "SELECT 0", "GET k", "SELECT 1", "GET k"]),
    ("select-bad-db-inside-multi", ["SET k db0", "MULTI", "SELECT 99", "SET k after", "EXEC",
                                    "GET k"]),
    ("select-then-back-inside-multi", ["MULTI", "SELECT 2", "SET k v2", "SELECT 0", "SET k v0",
                                       "EXEC", "GET k", "SELECT 2", "GET k"]),
    ("blocking-commands-inside-multi", ["MULTI", "BLPOP empty 0", "RPUSH l a b", "BLPOP l 0",
                                        "BRPOPLPUSH l m 0", "BZPOPMIN z 0", "EXEC",
                                        "LRANGE m 0 -1"]),
    ("reset-inside-multi", ["MULTI", "SET a 1", "RESET", "EXEC", "EXISTS a"]),
    ("watch-expired-key-is-unchanged", ["SET a 1", "WATCH a", "MULTI", "GET a", "EXEC"]),
    ("multi-errors-wrongtype-keep-going", ["RPUSH l x", "MULTI", "GET l", "LLEN l", "INCR l",
                                           "RPUSH l y", "EXEC", "LRANGE l 0 -1"]),
    ("watch-arity", ["WATCH", "MULTI", "WATCH", "EXEC"]),
]


@pytest.mark.parametrize("steps", [pytest.param(s, id=n) for n, s in TX_CASES])
def test_transaction_diff(diff, steps):
    diff.run(steps)


def test_transaction_many_commands(diff):
    steps = ["MULTI"]
    for i in range(600):
        steps.append(("INCRBY", "n%d" % (i % 7), i))
        steps.append(("RPUSH", "list", "item%d" % i))
    steps += ["EXEC", "MGET n0 n1 n2 n3 n4 n5 n6", "LLEN list", "LRANGE list 590 -1"]
    diff.run(steps)


def test_transaction_pipelined(diff):
    cmds = [("MULTI",), ("SET", "a", "1"), ("INCR", "a"), ("EXEC",), ("GET", "a"),
            ("WATCH", "a"), ("MULTI",), ("INCRBY", "a", "10"), ("EXEC",),
            ("MULTI",), ("NOSUCH",), ("SET", "a", "x"), ("EXEC",), ("GET", "a"),
            ("WATCH", "a"), ("SET", "a", "own"), ("MULTI",), ("SET", "a", "tx"), ("EXEC",),
            ("MULTI",), ("SELECT", "3"), ("SET", "k", "three"), ("EXEC",), ("GET", "k"),
            ("SELECT", "0"), ("GET", "k"), ("EXEC",), ("DISCARD",), ("PING",)]
    diff.run_pipeline(cmds)
    # The same, split at awkward points so the proxy sees partial requests.
    data = b"".join(encode_command(*c) for c in cmds)
    diff.flushall()
    diff.run([raw([data[:7], data[7:150], data[150:151], data[151:]], replies=len(cmds))])


def _watch_other_client(ep):
    out = []
    with ep.connect() as a, ep.connect() as b:
        out.append(a.call("SET", "acct", "100"))
        out.append(a.call("WATCH", "acct"))
        out.append(b.call("INCRBY", "acct", "5"))   # another client changes the key
        out.append(a.call("MULTI"))
        out.append(a.call("SET", "acct", "0"))
        out.append(a.call("EXEC"))                  # nil: aborted
        out.append(a.call("GET", "acct"))
        # Watching again, the other client touches an unrelated key and the
        # watched key in another database: EXEC runs.
        out.append(a.call("WATCH", "acct"))
        out.append(b.call("SET", "other", "x"))
        out.append(b.call("SELECT", "1"))
        out.append(b.call("SET", "acct", "db1"))
        out.append(a.call("MULTI"))
        out.append(a.call("INCR", "acct"))
        out.append(a.call("EXEC"))
        # Deleting a watched key, and FLUSHALL, abort too.
        out.append(a.call("WATCH", "acct"))
        out.append(b.call("SELECT", "0"))
        out.append(b.call("DEL", "acct"))
        out.append(a.call("MULTI"))
        out.append(a.call("SET", "acct", "1"))
        out.append(a.call("EXEC"))
        out.append(a.call("SET", "acct", "7"))
        out.append(a.call("WATCH", "acct"))
        out.append(b.call("FLUSHALL"))
        out.append(a.call("MULTI"))
        out.append(a.call("SET", "acct", "8"))
        out.append(a.call("EXEC"))
        out.append(a.call("EXISTS", "acct"))
        # WATCH in a database other than 0.
        out.append(a.call("SELECT", "4"))
        out.append(a.call("SET", "w", "1"))
        out.append(a.call("WATCH", "w"))
        out.append(b.call("SELECT", "4"))
        out.append(b.call("APPEND", "w", "2"))
        out.append(a.call("MULTI"))
        out.append(a.call("GET", "w"))
        out.append(a.call("EXEC"))
    return out


def _watch_changed_by_script(ep):
    out = []
    with ep.connect() as a, ep.connect() as b:
        out.append(a.call("SET", "ws", "1"))
        out.append(a.call("WATCH", "ws", "other"))
        out.append(b.call("EVAL", "return redis.call('INCR', KEYS[1])", "1", "ws"))
        out.append(a.call("MULTI"))
        out.append(a.call("SET", "ws", "tx"))
        out.append(a.call("EXEC"))
        out.append(a.call("WATCH", "ws"))
        out.append(b.call("EVAL", "return redis.call('GET', KEYS[1])", "1", "ws"))
        out.append(b.call("EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", "unrelated"))
        out.append(a.call("MULTI"))
        out.append(a.call("SET", "ws", "tx"))
        out.append(a.call("EXEC"))
        out.append(a.call("GET", "ws"))
    return out


def test_watch_change_by_script(oracle, proxy):
    t = compare_scenario(oracle, proxy, _watch_changed_by_script)
    assert t[5] == b"*-1\r\n" and t[11] == b"*1\r\n+OK\r\n"


def test_watch_change_by_another_client(oracle, proxy):
    t = compare_scenario(oracle, proxy, _watch_other_client)
    assert t[5] == b"*-1\r\n" and t[13] == b"*1\r\n:106\r\n"


def _watch_blocked_by_pending_exec(ep):
    """A transaction's EXEC reply reaches its client before the next command
    of that client runs, while another client keeps writing."""
    out = []
    with ep.connect() as a, ep.connect() as b:
        for i in range(20):
            out.append(a.call("WATCH", "w"))
            out.append(a.call("GET", "w"))
            if i % 2:
                out.append(b.call("INCR", "w"))
            out.append(a.call("MULTI"))
            out.append(a.call("INCR", "w"))
            out.append(a.call("EXEC"))
    return out


def test_watch_alternating_conflicts(oracle, proxy):
    compare_scenario(oracle, proxy, _watch_blocked_by_pending_exec)


# ---------------------------------------------------------------------------
# Pub/sub

def _pubsub_basic(ep):
    out = []
    with ep.connect() as sub, ep.connect() as pub:
        out.append(sub.call("SUBSCRIBE", "news", "sport"))            # two replies
        out.append(sub.read_reply())
        out.append(sub.call("PSUBSCRIBE", "n*s", "x?"))
        out.append(sub.read_reply())
        out.append(sub.call("SSUBSCRIBE", "shard1"))
        out.append(sub.call("SUBSCRIBE", "news"))                      # already subscribed
        out.append(pub.call("PUBLISH", "news", "hello"))               # channel + pattern: 2
        out.append(sorted(sub.read_replies(2)))                        # message and pmessage
        out.append(pub.call("PUBLISH", "sport", "goal"))
        out.append(sub.read_reply())
        out.append(pub.call("PUBLISH", "xy", "pat-only"))
        out.append(sub.read_reply())
        out.append(pub.call("SPUBLISH", "shard1", "s-msg"))
        out.append(sub.read_reply())
        out.append(pub.call("PUBLISH", "nobody", "lost"))
        out.append(sub.call("PING"))
        out.append(sub.call("PING", "in-sub-mode"))
        out.append(sub.call("PING", "a", "b"))
        out.append(sub.call("GET", "k"))
        out.append(sub.call("SET", "k", "v"))
        out.append(sub.call("PUBLISH", "news", "x"))
        out.append(sub.call("MULTI"))
        out.append(sub.call("NOSUCHCMD"))
        out.append(sub.call("CLIENT", "ID"))
        out.append(sub.call("UNSUBSCRIBE", "sport", "never-subscribed"))
        out.append(sub.read_reply())
        out.append(sub.call("PUNSUBSCRIBE", "x?"))
        out.append(sub.call("UNSUBSCRIBE"))                            # only "news" left
        out.append(sub.call("PUNSUBSCRIBE"))                           # only "n*s" left
        out.append(sub.call("PING"))                                   # still subscribed (shard)
        out.append(sub.call("SUNSUBSCRIBE"))
        out.append(sub.call("PING"))                                   # plain mode again
        out.append(sub.call("UNSUBSCRIBE"))                            # not subscribed
        out.append(sub.call("PUNSUBSCRIBE"))
        out.append(sub.call("SUNSUBSCRIBE"))
        out.append(sub.call("UNSUBSCRIBE", "a", "b"))
        out.append(sub.read_reply())
        out.append(sub.call("SET", "k", "v"))
        out.append(pub.call("PUBLISH", "news", "after"))
        out.append(sub.call("GET", "k"))
    return out


def test_pubsub_sequence(oracle, proxy):
    proxy_quiet(proxy)
    t = compare_scenario(oracle, proxy, _pubsub_basic)
    assert t[6] == b":2\r\n"


def _pubsub_unsubscribe_all(ep):
    """UNSUBSCRIBE without arguments with several channels: the order of the
    replies is the server's hash order, so the channels are compared as a set
    and the counts as a sequence."""
    out = []
    with ep.connect() as sub:
        chans = ["c%d" % i for i in range(6)]
        sub.send_command("SUBSCRIBE", *chans)
        out.append(sub.read_replies(len(chans)))
        sub.send_command("PSUBSCRIBE", "p1*", "p2*")
        out.append(sub.read_replies(2))
        for cmd, n in (("UNSUBSCRIBE", 6), ("PUNSUBSCRIBE", 2)):
            sub.send_command(cmd)
            rs = [parse_reply(r) for r in sub.read_replies(n)]
            out.append((sorted(r[1] for r in rs), [r[2] for r in rs], {r[0] for r in rs}))
        out.append(sub.call("PING"))
    return out


def test_pubsub_unsubscribe_all(oracle, proxy):
    proxy_quiet(proxy)
    compare_scenario(oracle, proxy, _pubsub_unsubscribe_all)


def _pubsub_counts(ep):
    out = []
    conns = [ep.connect() for _ in range(7)]
    try:
        subs, pub = conns[:6], conns[6]
        for c in subs[:3]:
            out.append(c.call("SUBSCRIBE", "cnt:ch"))
        for c in subs[3:5]:
            out.append(c.call("PSUBSCRIBE", "cnt:*"))
        out.append(subs[5].call("PSUBSCRIBE", "cnt:c?"))
        out.append(subs[5].call("SSUBSCRIBE", "cnt:sh"))
        out.append(subs[0].call("SUBSCRIBE", "cnt:other"))
        # 3 channel subscribers + 2 on cnt:* + 1 on cnt:c?
        out.append(pub.call("PUBLISH", "cnt:ch", "m"))
        out.append(pub.call("PUBLISH", "cnt:other", "m"))
        out.append(pub.call("PUBLISH", "cnt:zzz", "m"))
        out.append(pub.call("PUBLISH", "elsewhere", "m"))
        out.append(pub.call("SPUBLISH", "cnt:sh", "m"))
        out.append(pub.call("PUBSUB", "NUMSUB", "cnt:ch", "cnt:other", "cnt:none"))
        out.append(pub.call("PUBSUB", "NUMSUB"))
        out.append(pub.call("PUBSUB", "NUMPAT"))
        out.append(sorted(parse_reply(pub.call("PUBSUB", "CHANNELS", "cnt:*"))))
        out.append(pub.call("PUBSUB", "CHANNELS", "cnt:o*"))
        out.append(pub.call("PUBSUB", "SHARDCHANNELS", "cnt:*"))
        out.append(pub.call("PUBSUB", "SHARDNUMSUB", "cnt:sh", "cnt:x"))
        # One channel subscriber leaves.
        out.append(subs[1].call("UNSUBSCRIBE", "cnt:ch"))
        out.append(wait_value(lambda: pub.call("PUBSUB", "NUMSUB", "cnt:ch"),
                              b"*2\r\n$6\r\ncnt:ch\r\n:2\r\n"))
        out.append(pub.call("PUBLISH", "cnt:ch", "m2"))
        # Everyone drains what was delivered: compare per subscriber.
        for c in subs:
            got = []
            while True:
                try:
                    got.append(c.read_reply(timeout=0.3))
                except ReplyTimeout:
                    break
            out.append(sorted(got))
    finally:
        for c in conns:
            c.close()
    return out


def wait_value(fn, want, timeout=5.0):
    """fn() until it returns want (counts settle asynchronously at the proxy)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v == want or time.monotonic() > deadline:
            return v
        time.sleep(0.02)


def test_pubsub_counts(oracle, proxy):
    proxy_quiet(proxy)
    t = compare_scenario(oracle, proxy, _pubsub_counts)
    assert t[8] == b":6\r\n"


BIN_CHANNEL = b"bin\x00\xff\r\n chan\x01"
BIN_PAYLOAD = bytes(range(256)) * 3 + b"\r\n\x00end"


def _pubsub_binary(ep):
    out = []
    with ep.connect() as sub, ep.connect() as pub:
        out.append(sub.call("SUBSCRIBE", BIN_CHANNEL))
        out.append(sub.call("PSUBSCRIBE", b"bin\x00*"))
        out.append(sub.call("SSUBSCRIBE", b"\x00\r\n"))
        out.append(pub.call("PUBLISH", BIN_CHANNEL, BIN_PAYLOAD))
        out.append(sorted(sub.read_replies(2)))
        out.append(pub.call("SPUBLISH", b"\x00\r\n", b""))
        out.append(sub.read_reply())
        big = random.Random(7).randbytes(300000)
        out.append(pub.call("PUBLISH", BIN_CHANNEL, big))
        out.append(sorted(sub.read_replies(2)))
        out.append(pub.call("PUBLISH", BIN_CHANNEL, b""))
        out.append(sorted(sub.read_replies(2)))
        out.append(pub.call("PUBSUB", "NUMSUB", BIN_CHANNEL))
        out.append(sub.call("UNSUBSCRIBE", BIN_CHANNEL))
        out.append(sub.call("PUNSUBSCRIBE", b"bin\x00*"))
        out.append(sub.call("SUNSUBSCRIBE", b"\x00\r\n"))
    return out


def test_pubsub_binary_names_and_payloads(oracle, proxy):
    proxy_quiet(proxy)
    compare_scenario(oracle, proxy, _pubsub_binary)


def test_pubsub_pipelined(diff):
    proxy_quiet(diff.proxy)
    first = [("SUBSCRIBE", "pp1", "pp2", "pp1"), ("PING",), ("GET", "k"), ("PSUBSCRIBE", "pp*"),
             ("PING", "x"), ("SSUBSCRIBE", "pps")]
    # The unsubscribes go once the subscriptions were answered (see
    # test_pubsub_unsubscribe_before_confirmation for the pipelined case).
    diff.run([raw(b"".join(encode_command(*c) for c in first), replies=8),
              raw(b"".join(encode_command(*c) for c in [
                  ("UNSUBSCRIBE", "pp2"), ("PUNSUBSCRIBE", "pp*"), ("UNSUBSCRIBE", "pp1"),
                  ("GET", "k"), ("SUNSUBSCRIBE", "pps", "pps"), ("ECHO", "done")]), replies=7)])


PIPELINED_UNSUBSCRIBE = [("SUBSCRIBE", "pu1"), ("UNSUBSCRIBE", "pu1"), ("PING",)]


def test_pubsub_unsubscribe_before_confirmation(oracle, private_proxy):
    data = b"".join(encode_command(*c) for c in PIPELINED_UNSUBSCRIBE)
    got = {}
    for ep in (oracle, private_proxy):
        with ep.connect(timeout=3) as c:
            c.send(data)
            try:
                got[ep.name] = c.read_replies(3)
            except ReplyTimeout:
                got[ep.name] = "no reply within 3s"
    assert got["proxy"] == got["oracle"]
    with private_proxy.connect() as c:
        wait_until(lambda: topics(c) == 0, timeout=3, what="topic freed")


def test_pubsub_close_before_confirmation_frees_topics(private_proxy):
    with private_proxy.connect() as admin:
        assert admin.call("SUBSCRIBE", "warmup")[:1] == b"*"  # the store connection is up
        assert admin.call("UNSUBSCRIBE")[:1] == b"*"
        for i in range(20):
            c = private_proxy.connect()
            c.send_command("SUBSCRIBE", "gone:%d" % i)
            c.close()
        with private_proxy.backend.connect() as direct:
            wait_until(lambda: direct.call("PUBSUB", "CHANNELS") == b"*0\r\n",
                       what="store unsubscribed")
        wait_until(lambda: topics(admin) == 0, timeout=3, what="topics freed")


def _pattern_counts(ep):
    patterns = ["news.[ab]*", "*", "h?llo", "a\\*b", "[^x]yz", "c[a-c]t", "EXACT"]
    out = []
    conns = [ep.connect() for _ in patterns]
    try:
        for c, pat in zip(conns, patterns):
            out.append(c.call("PSUBSCRIBE", pat))
        with ep.connect() as pub:
            for ch in ["news.a1", "news.c", "hello", "hllo", "a*b", "axb", "ayz", "xyz",
                       "cbt", "cdt", "EXACT", "exact", ""]:
                out.append((ch, pub.call("PUBLISH", ch, "m")))
            out.append(pub.call("PUBSUB", "NUMPAT"))
        for c in conns:
            got = []
            while True:
                try:
                    got.append(c.read_reply(timeout=0.2))
                except ReplyTimeout:
                    break
            out.append(sorted(got))
    finally:
        for c in conns:
            c.close()
    return out


def test_pubsub_pattern_matching_counts(oracle, proxy):
    proxy_quiet(proxy)
    compare_scenario(oracle, proxy, _pattern_counts)


def test_pubsub_churn_with_abrupt_closes(private_proxy):
    """Clients that vanish with subscriptions, some right after unsubscribing
    from everything, leave nothing behind at the store and the proxy keeps
    serving."""
    rnd = random.Random(3)
    for round_ in range(30):
        conns = [private_proxy.connect() for _ in range(10)]
        for i, c in enumerate(conns):
            chans = ["churn:%d" % rnd.randrange(20) for _ in range(rnd.randint(1, 5))]
            c.send_command("SUBSCRIBE", *chans)
            c.send_command("PSUBSCRIBE", "churn:%d*" % rnd.randrange(5))
            c.read_replies(len(chans) + 1)
            if i % 3 == 0:
                c.send_command("UNSUBSCRIBE")
                c.send_command("PUNSUBSCRIBE")
        for c in conns:
            c.close()
    with private_proxy.connect() as c, private_proxy.backend.connect() as direct:
        names = ["churn:%d" % i for i in range(20)]
        wait_until(lambda: all(n == 0 for n in parse_reply(
            direct.call("PUBSUB", "NUMSUB", *names))[1::2]), what="store unsubscribed")
        wait_until(lambda: direct.call("PUBSUB", "NUMPAT") == b":0\r\n", what="no patterns")
        wait_until(lambda: topics(c) == 0, what="topics freed")
        assert c.call("PUBLISH", "churn:1", "x") == b":0\r\n"
        assert info(c, "pubsub")["pubsub_store_connection"] == "up"
        # Pub/sub still works afterwards.
        with private_proxy.connect() as sub:
            assert sub.call("SUBSCRIBE", "churn:1")[:1] == b"*"
            assert c.call("PUBLISH", "churn:1", "after") == b":1\r\n"
            assert sub.read_reply() == b"*3\r\n$7\r\nmessage\r\n$7\r\nchurn:1\r\n$5\r\nafter\r\n"


def _pubsub_reset_quit(ep):
    out = []
    with ep.connect() as sub, ep.connect() as pub:
        out.append(sub.call("SELECT", "2"))
        out.append(sub.call("SUBSCRIBE", "r1"))
        out.append(sub.call("PSUBSCRIBE", "r*"))
        out.append(sub.call("RESET"))
        out.append(sub.call("GET", "k"))            # plain mode, database 0 again
        out.append(sub.call("PING"))
        out.append(pub.call("PUBLISH", "r1", "x"))
        out.append(pub.call("PUBSUB", "NUMSUB", "r1"))
        out.append(sub.call("SET", "k", "v"))
        out.append(sub.call("SUBSCRIBE", "r2"))
        out.append(sub.call("QUIT"))
        out.append(sub.read_until_close(timeout=5))
        out.append(wait_value(lambda: pub.call("PUBSUB", "NUMSUB", "r2"),
                              b"*2\r\n$2\r\nr2\r\n:0\r\n"))
        out.append(pub.call("PUBLISH", "r2", "x"))
    return out


def test_pubsub_reset_and_quit(oracle, proxy):
    proxy_quiet(proxy)
    t = compare_scenario(oracle, proxy, _pubsub_reset_quit)
    assert t[3] == b"+RESET\r\n"


def _script_publish(ep):
    out = []
    with ep.connect() as sub, ep.connect() as psub, ep.connect() as caller:
        out.append(sub.call("SUBSCRIBE", "from-script"))
        out.append(psub.call("PSUBSCRIBE", "from-*"))
        out.append(caller.call("EVAL", "return redis.call('PUBLISH', ARGV[1], ARGV[2])", "0",
                               "from-script", b"payload\x00\xff"))
        out.append(sub.read_reply())
        out.append(psub.read_reply())
        out.append(caller.call("EVAL", "redis.call('PUBLISH', 'from-script', 'one') "
                               "redis.call('SET', KEYS[1], 'v') "
                               "return redis.call('PUBLISH', 'from-script', 'two')", "1", "k"))
        out.append(sub.read_replies(2))
        out.append(psub.read_replies(2))
    return out


def _multi_publish(ep):
    out = []
    with ep.connect() as sub, ep.connect() as psub, ep.connect() as caller:
        out.append(sub.call("SUBSCRIBE", "from-multi"))
        out.append(psub.call("PSUBSCRIBE", "from-*"))
        caller.send(encode_command("MULTI") + encode_command("SET", "k", "v")
                    + encode_command("PUBLISH", "from-multi", b"payload\x00\xff")
                    + encode_command("PUBLISH", "nobody-listens", "x") + encode_command("EXEC"))
        out.append(caller.read_replies(5))
        out.append(sub.read_reply())
        out.append(psub.read_reply())
    return out


def test_multi_publish_reaches_subscribers(oracle, proxy):
    proxy_quiet(proxy)
    t = compare_scenario(oracle, proxy, _multi_publish)
    assert t[2][4] == b"*3\r\n+OK\r\n:2\r\n:0\r\n", t


def test_script_publish_reaches_subscribers(oracle, proxy):
    proxy_quiet(proxy)
    t = compare_scenario(oracle, proxy, _script_publish)
    assert t[2] == b":2\r\n"


def _client_list_fields(ep):
    out = []
    with ep.connect() as s, ep.connect() as m, ep.connect() as admin:
        sid = parse_reply(s.call("CLIENT", "ID"))
        mid = parse_reply(m.call("CLIENT", "ID"))
        s.send_command("SUBSCRIBE", "cl1", "cl2")
        s.read_replies(2)
        s.call("PSUBSCRIBE", "cl*")
        s.call("SSUBSCRIBE", "cls")
        m.call("MULTI")
        m.call("SET", "a", "1")
        m.call("INCR", "b")
        lines = parse_reply(admin.call("CLIENT", "LIST")).decode().splitlines()
        for cid in (sid, mid, parse_reply(admin.call("CLIENT", "ID"))):
            line = [l for l in lines if re.search(r"\bid=%d\b" % cid, l)][0]
            fields = dict(f.split("=", 1) for f in line.split(" "))
            out.append({k: fields.get(k) for k in ("flags", "sub", "psub", "ssub", "multi")})
    return out


def test_client_list_pubsub_and_multi_fields(oracle, proxy):
    proxy_quiet(proxy)
    compare_scenario(oracle, proxy, _client_list_fields)


def test_info_pubsub_section(real_proxy):
    proxy_quiet(real_proxy)
    with real_proxy.connect() as sub, real_proxy.connect() as c:
        before = info(c, "pubsub")
        sub.send_command("SUBSCRIBE", "i1", "i2")
        sub.read_replies(2)
        sub.call("PSUBSCRIBE", "i*")
        now = info(c, "pubsub")
        assert int(now["pubsub_topics"]) == int(before["pubsub_topics"]) + 3
        assert now["pubsub_store_connection"] == "up"
        assert c.call("PUBLISH", "i1", "m") == b":2\r\n"
        sub.read_replies(2)
        after = info(c, "pubsub")
        assert int(after["pubsub_deliveries"]) - int(before["pubsub_deliveries"]) == 2
        sub.call("RESET")
        wait_until(lambda: topics(c) == int(before["pubsub_topics"]), what="topics freed")


# ---------------------------------------------------------------------------
# 10 000 subscribers on a few hundred channels

def _raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _read_exact_reply(sock, want, deadline):
    """Reads from a raw socket until want bytes arrived; returns them."""
    buf = b""
    while len(buf) < len(want):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def test_ten_thousand_subscribers(tmp_path):
    # Each subscriber costs a descriptor here and one in the proxy, which
    # inherits this limit; keep headroom for the store and the harness.
    limit = _raise_nofile(10400)
    n = min(10000, limit - 300)
    assert n >= 2000, "RLIMIT_NOFILE is %d: too low for this test" % limit
    nchan = 300
    store = RedisServer("store10k", str(tmp_path / "store"), rename_scripting=True,
                        extra=["maxclients 1000"])
    store.start()
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"),
                     extra_args=["--maxclients", str(n + 100), "--loglevel", "notice"])
    socks = []
    try:
        p.start()
        t0 = time.monotonic()
        for i in range(n):
            s = socket.create_connection((HOST, p.port), timeout=10)
            s.sendall(encode_command("SUBSCRIBE", "ch:%d" % (i % nchan)))
            socks.append(s)
        deadline = time.monotonic() + 60
        for i, s in enumerate(socks):
            name = b"ch:%d" % (i % nchan)
            want = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(name), name)
            got = _read_exact_reply(s, want, deadline)
            assert got == want, "subscriber %d: %r" % (i, got)
        with p.connect() as pub, store.connect() as direct:
            for ch in range(nchan):
                r = pub.call("PUBLISH", "ch:%d" % ch, "msg-%d" % ch)
                expect = len(range(ch, n, nchan))
                assert r == b":%d\r\n" % expect, (ch, r)
            deadline = time.monotonic() + 60
            for i, s in enumerate(socks):
                ch = i % nchan
                name, body = b"ch:%d" % ch, b"msg-%d" % ch
                want = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(name), name, len(body), body)
                got = _read_exact_reply(s, want, deadline)
                assert got == want, "subscriber %d: %r" % (i, got)
            # The store sees the proxy's few connections, not one per subscriber.
            lines = parse_reply(direct.call("CLIENT", "LIST")).decode().splitlines()
            from_proxy = [l for l in lines if "cmd=client|list" not in l]
            backend_conns = int(info(pub, "backend")["backend_connections"])
            assert len(from_proxy) <= backend_conns + 3, "\n".join(from_proxy)
            assert parse_reply(direct.call("PUBSUB", "NUMSUB", "ch:0")) == [b"ch:0", 1]
            assert int(info(pub, "clients")["connected_clients"]) >= n
        elapsed = time.monotonic() - t0
        print("%d subscribers on %d channels in %.1fs (RLIMIT_NOFILE %d)"
              % (n, nchan, elapsed, limit))
    finally:
        for s in socks:
            s.close()
        status = p.stop()
        store.stop()
    assert status in (0, -15), p.diagnostics()
    assert not p.sanitizer_report(), p.sanitizer_report()


# ---------------------------------------------------------------------------
# Blocking commands

BLOCKING_STEPS = [
    "RPUSH l a b c", "BLPOP l 0.1", "BRPOP l 0", "BLPOP empty 0.1", "BRPOP empty other 0.05",
    "BLPOP empty l 0.1", "BLPOP l -1", "BLPOP l abc", "BLPOP l", "SET str v", "BLPOP str 0.1",
    "RPUSH src x y", "BLMOVE src dst LEFT RIGHT 0.1", "BLMOVE nosrc dst LEFT RIGHT 0.1",
    "BLMOVE src dst UP RIGHT 0", "BRPOPLPUSH src dst 0.1", "BRPOPLPUSH src dst 0.1",
    "LRANGE dst 0 -1", "RPUSH m1 1 2 3", "BLMPOP 0.1 2 none m1 LEFT COUNT 2",
    "BLMPOP 0.1 1 none RIGHT", "BLMPOP 0.1 0 m1 LEFT", "BLMPOP 0.1 1 m1 MIDDLE",
    "ZADD z 1 a 2 b 3 c", "BZPOPMIN z 0.1", "BZPOPMAX z 0.1", "BZPOPMIN nz 0.05",
    "BZMPOP 0.1 1 z MIN", "BZMPOP 0.1 2 nz z MAX COUNT 5", "BZMPOP 0.05 1 z MIN",
    "XADD s 1-1 f v", "XREAD BLOCK 100 STREAMS s 0", "XREAD BLOCK 100 STREAMS s $",
    "XREAD COUNT 1 BLOCK 50 STREAMS s nos 0 0", "XREAD BLOCK -1 STREAMS s 0",
    "XGROUP CREATE s g 0", "XREADGROUP GROUP g c1 BLOCK 100 STREAMS s >",
    "XREADGROUP GROUP g c1 BLOCK 100 STREAMS s >", "XREADGROUP GROUP g c1 BLOCK 50 STREAMS s 0",
    "XREADGROUP GROUP nog c1 BLOCK 50 STREAMS s >", "WAIT 0 0", "WAIT 0 50", "WAIT x 0",
    "SELECT 3", "RPUSH l3 in3", "BLPOP l3 0.1", "BLPOP l 0.05", "SELECT 0",
]


def test_blocking_diff(diff):
    diff.run(BLOCKING_STEPS)


def test_blocking_pipelined_with_plain_commands(diff):
    # Order must hold: a blocking command waits for earlier replies and later
    # commands wait for it.
    diff.run_pipeline([("RPUSH", "q", "1"), ("BLPOP", "q", "0.1"), ("BLPOP", "q", "0.05"),
                       ("RPUSH", "q", "2"), ("BRPOP", "q", "0"), ("GET", "nothing"),
                       ("BLMOVE", "q", "r", "LEFT", "LEFT", "0.05"), ("PING",)])


def _blpop_woken(ep):
    out = []
    with ep.connect() as a, ep.connect() as b:
        a.send_command("BLPOP", "wake", "0")
        time.sleep(0.2)
        out.append(b.call("LPUSH", "wake", "v1", "v2"))
        out.append(a.read_reply(timeout=5))
        out.append(b.call("LRANGE", "wake", "0", "-1"))
        a.send_command("BLMOVE", "src2", "dst2", "RIGHT", "LEFT", "0")
        a.send_command("GET", "after")  # must wait for the blocking reply
        time.sleep(0.2)
        out.append(b.call("RPUSH", "src2", "moved"))
        out.append(a.read_replies(2, timeout=5))
        a.send_command("BZPOPMIN", "zz", "0")
        time.sleep(0.1)
        out.append(b.call("ZADD", "zz", "5", "m"))
        out.append(a.read_reply(timeout=5))
        a.send_command("XREAD", "BLOCK", "0", "STREAMS", "st", "$")
        time.sleep(0.2)
        b.call("XADD", "st", "5-1", "f", "v")
        out.append(a.read_reply(timeout=5))
    return out


def test_blocking_woken_by_another_client(oracle, proxy):
    t = compare_scenario(oracle, proxy, _blpop_woken)
    assert t[1] == b"*2\r\n$4\r\nwake\r\n$2\r\nv2\r\n"


def _client_unblock(ep):
    out = []
    with ep.connect() as a, ep.connect() as b:
        aid = parse_reply(a.call("CLIENT", "ID"))
        out.append(b.call("CLIENT", "UNBLOCK", aid))          # not blocked: 0
        a.send_command("BLPOP", "ub", "0")
        time.sleep(0.2)
        out.append(b.call("CLIENT", "UNBLOCK", aid))
        out.append(a.read_reply(timeout=5))
        a.send_command("BRPOP", "ub", "0")
        time.sleep(0.2)
        out.append(b.call("CLIENT", "UNBLOCK", aid, "ERROR"))
        out.append(a.read_reply(timeout=5))
        out.append(a.call("PING"))
    return out


def test_client_unblock(oracle, proxy):
    t = compare_scenario(oracle, proxy, _client_unblock)
    assert t[1] == b":1\r\n"


def test_blocked_clients_do_not_stall_others(proxy):
    blocked = [proxy.connect() for _ in range(50)]
    try:
        for i, c in enumerate(blocked):
            c.send_command("BLPOP", "stall:%d" % i, "0")
        time.sleep(0.2)
        with proxy.connect() as a, proxy.connect() as b:
            for i in range(20):
                t = time.monotonic()
                assert a.call("PING", timeout=2) == b"+PONG\r\n"
                assert b.call("SET", "stall:k", i, timeout=2) == b"+OK\r\n"
                assert a.call("GET", "stall:k", timeout=2) == b"$%d\r\n%d\r\n" % (len(str(i)), i)
                assert time.monotonic() - t < 1.0
            with proxy.connect() as fresh:
                assert fresh.call("PING", timeout=2) == b"+PONG\r\n"
            # Every blocked client is still waiting and gets its own element.
            for c in blocked:
                with pytest.raises(ReplyTimeout):
                    c.read_reply(timeout=0.01)
            for i in range(50):
                assert a.call("RPUSH", "stall:%d" % i, "v%d" % i) == b":1\r\n"
            for i, c in enumerate(blocked):
                r = parse_reply(c.read_reply(timeout=5))
                assert r == [b"stall:%d" % i, b"v%d" % i]
    finally:
        for c in blocked:
            c.close()


POOL_ERROR = (b"-ERR no store connection left for blocking commands "
              b"(backend-blocking-connections is 2)\r\n")


def test_blocking_pool_exhaustion(real_proxy):
    with real_proxy.connect() as admin:
        old = config_get(admin, "backend-blocking-connections")
        base = int(info(admin, "backend")["backend_dedicated_in_use"])
        assert admin.call("CONFIG", "SET", "backend-blocking-connections", "2") == b"+OK\r\n"
        b1, b2, b3 = real_proxy.connect(), real_proxy.connect(), real_proxy.connect()
        try:
            b1.send_command("BLPOP", "pool:1", "0")
            b2.send_command("BRPOP", "pool:2", "0")
            wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base + 2,
                       what="two blocked clients on store connections")
            assert b3.call("BLPOP", "pool:3", "0") == POOL_ERROR
            assert b3.call("XREAD", "BLOCK", "0", "STREAMS", "pool:s", "$") == POOL_ERROR
            # A non-blocking XREAD and plain commands still work.
            assert b3.call("XREAD", "STREAMS", "pool:s", "0") == b"*-1\r\n"
            assert b3.call("PING") == b"+PONG\r\n"
            assert admin.call("RPUSH", "pool:1", "x") == b":1\r\n"
            assert b1.read_reply() == b"*2\r\n$6\r\npool:1\r\n$1\r\nx\r\n"
            # One connection back in the pool: the third client may block now.
            b3.send_command("BLPOP", "pool:3", "0.05")
            assert b3.read_reply() == b"*-1\r\n"
        finally:
            admin.call("CONFIG", "SET", "backend-blocking-connections", old)
            admin.call("RPUSH", "pool:2", "y")
            for c in (b1, b2, b3):
                c.close()
        assert config_get(admin, "backend-blocking-connections") == old
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base,
                   what="pool back to idle")


def test_blocked_client_disconnect_releases_connection(real_proxy, store):
    with real_proxy.connect() as admin, store.connect() as direct:
        base = int(info(admin, "backend")["backend_dedicated_in_use"])
        store_blocked = int(info(direct, "clients")["blocked_clients"])
        clients = [real_proxy.connect() for _ in range(5)]
        for i, c in enumerate(clients):
            c.send_command("BLPOP", "gone:%d" % i, "0")
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base + 5,
                   what="five blocked")
        wait_until(lambda: int(info(direct, "clients")["blocked_clients"]) == store_blocked + 5,
                   what="five blocked at the store")
        for c in clients:
            c.close()
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base,
                   what="dedicated connections released")
        wait_until(lambda: int(info(direct, "clients")["blocked_clients"]) == store_blocked,
                   what="store-side blocked clients gone")
        # Nothing was popped by a client that is gone.
        assert admin.call("RPUSH", "gone:0", "kept") == b":1\r\n"
        assert admin.call("LLEN", "gone:0") == b":1\r\n"
        assert int(info(admin, "clients")["blocked_clients"]) == 0
        # The pool's count came back too: with room for exactly five, five
        # clients can block again.
        old = config_get(admin, "backend-blocking-connections")
        assert admin.call("CONFIG", "SET", "backend-blocking-connections", "5") == b"+OK\r\n"
        again = [real_proxy.connect() for _ in range(5)]
        try:
            for i, c in enumerate(again):
                c.send_command("BLPOP", "again:%d" % i, "0.3")
            for c in again:
                assert c.read_reply() == b"*-1\r\n"
        finally:
            admin.call("CONFIG", "SET", "backend-blocking-connections", old)
            for c in again:
                c.close()


# ---------------------------------------------------------------------------
# Isolation: the total of the accounts never changes, whatever the mix

TRANSFER_LUA = """
local from = tonumber(redis.call('GET', KEYS[1]))
local amount = tonumber(ARGV[1])
redis.call('SET', KEYS[1], from - amount)
redis.call('INCRBY', KEYS[2], amount)
return amount
"""


def test_isolation_invariant(real_proxy):
    nacct, start = 8, 1000
    keys = ["iso:acct:%d" % i for i in range(nacct)]
    side = ["iso:side:%d" % i for i in range(4)]
    with real_proxy.connect() as c:
        c.call("DEL", *keys, *side)
        c.call("MSET", *[x for k in keys for x in (k, start)])
        c.call("MSET", *[x for k in side for x in (k, 0)])
    total = nacct * start
    stop = threading.Event()
    errors, counts, watch_done = [], {}, []

    def worker(name, body):
        rnd = random.Random(name)
        done = 0
        try:
            with real_proxy.connect() as conn:
                while not stop.is_set():
                    body(conn, rnd)
                    done += 1
        except Exception as e:  # reported by the main thread
            errors.append("%s: %r" % (name, e))
        counts[name] = done

    def pick(rnd):
        a, b = rnd.sample(keys, 2)
        return a, b, rnd.randint(1, 50)

    def watch_transfer(conn, rnd):
        a, b, amt = pick(rnd)
        for _ in range(1000):
            assert conn.call("WATCH", a, b) == b"+OK\r\n"
            conn.call("MGET", a, b)
            conn.send(encode_command("MULTI") + encode_command("DECRBY", a, amt)
                      + encode_command("INCRBY", b, amt) + encode_command("EXEC"))
            r = conn.read_replies(4)
            assert r[:3] == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"], r
            if r[3] != b"*-1\r\n":
                assert parse_reply(r[3])[0] is not None
                watch_done.append(1)
                return
        # Under this much contention an optimistic transfer may starve, as it
        # may on Redis; the three WATCH workers together must get through.

    def multi_transfer(conn, rnd):
        a, b, amt = pick(rnd)
        conn.send(encode_command("MULTI") + encode_command("INCRBY", a, -amt)
                  + encode_command("INCRBY", b, amt) + encode_command("EXEC"))
        r = conn.read_replies(4)
        assert r[3].startswith(b"*2\r\n"), r

    def script_transfer(conn, rnd):
        a, b, amt = pick(rnd)
        r = conn.call("EVAL", TRANSFER_LUA, "2", a, b, amt)
        assert r == b":%d\r\n" % amt, r

    def plain_pairs(conn, rnd):
        # Not atomic by design: on keys outside the invariant, only the end
        # total is checked; they contend with the others for the same locks
        # through the transfers that also touch them below.
        a, b = rnd.sample(side, 2)
        amt = rnd.randint(1, 9)
        conn.send(encode_command("INCRBY", a, amt) + encode_command("DECRBY", b, amt))
        conn.read_replies(2)

    def mixed_multi(conn, rnd):
        # A transaction over both sets, with an account transfer inside.
        a, b, amt = pick(rnd)
        s = rnd.choice(side)
        conn.send(encode_command("MULTI") + encode_command("DECRBY", a, amt)
                  + encode_command("INCRBY", s, 1) + encode_command("DECRBY", s, 1)
                  + encode_command("INCRBY", b, amt) + encode_command("EXEC"))
        r = conn.read_replies(6)
        assert r[5].startswith(b"*4\r\n"), r

    bodies = [("watch%d" % i, watch_transfer) for i in range(3)]
    bodies += [("multi%d" % i, multi_transfer) for i in range(3)]
    bodies += [("script%d" % i, script_transfer) for i in range(3)]
    bodies += [("pairs%d" % i, plain_pairs) for i in range(2)]
    bodies += [("mixed%d" % i, mixed_multi) for i in range(2)]
    threads = [threading.Thread(target=worker, args=b, daemon=True) for b in bodies]
    for t in threads:
        t.start()
    observed = 0
    bad = []
    try:
        with real_proxy.connect() as obs:
            end = time.monotonic() + 4.0
            while time.monotonic() < end and not errors:
                vals = parse_reply(obs.call("MGET", *keys))
                s = sum(int(v) for v in vals)
                observed += 1
                if s != total:
                    bad.append((s, vals))
                # A read-only transaction must see the invariant too.
                obs.send(encode_command("MULTI") + encode_command("MGET", *keys)
                         + encode_command("EXEC"))
                r = parse_reply(obs.read_replies(3)[2])
                if sum(int(v) for v in r[0]) != total:
                    bad.append(("exec", r))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert not bad, bad[:5]
    assert observed > 20
    assert all(counts.get(name, 0) > 0 for name, _ in bodies), counts
    assert watch_done, "no WATCH transfer went through"
    with real_proxy.connect() as c:
        assert sum(int(v) for v in parse_reply(c.call("MGET", *keys))) == total
        assert sum(int(v) for v in parse_reply(c.call("MGET", *side))) == 0
        locks = wait_until(lambda: (lambda i: i if i["lock_sets_holding"] == "0"
                                    and i["lock_sets_waiting"] == "0" else None)(info(c, "locks")),
                           what="locks released")
        assert locks["lock_sets_holding"] == "0" and locks["lock_sets_waiting"] == "0"


# ---------------------------------------------------------------------------
# Connection life cycle

def test_client_kill_releases_pinned_connections(real_proxy, store):
    proxy_quiet(real_proxy)
    with real_proxy.connect() as admin, store.connect() as direct:
        base_topics = topics(admin)
        base = info(admin, "backend")
        base_conns = int(base["backend_dedicated_connections"])
        base_used = int(base["backend_dedicated_in_use"])
        # A client in MULTI with WATCH holds its own store connection.
        tx = real_proxy.connect()
        txid = parse_reply(tx.call("CLIENT", "ID"))
        assert tx.call("WATCH", "kill:w") == b"+OK\r\n"
        assert tx.call("MULTI") == b"+OK\r\n"
        assert tx.call("SET", "kill:w", "x") == b"+QUEUED\r\n"
        mid = info(admin, "backend")
        assert int(mid["backend_dedicated_connections"]) == base_conns + 1
        assert admin.call("CLIENT", "KILL", "ID", txid) == b":1\r\n"
        assert tx.read_until_close(timeout=5) == b""
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_connections"])
                   == base_conns, what="WATCH connection released")
        assert int(info(admin, "backend")["backend_dedicated_in_use"]) == base_used
        assert admin.call("EXISTS", "kill:w") == b":0\r\n"   # the queued SET never ran
        # A subscribed client: its topics go away at the proxy and the store.
        sub = real_proxy.connect()
        subid = parse_reply(sub.call("CLIENT", "ID"))
        sub.send_command("SUBSCRIBE", "kill:c1", "kill:c2")
        sub.read_replies(2)
        assert sub.call("PSUBSCRIBE", "kill:*")[:1] == b"*"
        assert parse_reply(direct.call("PUBSUB", "NUMSUB", "kill:c1")) == [b"kill:c1", 1]
        assert admin.call("CLIENT", "KILL", "ID", subid) == b":1\r\n"
        assert sub.read_until_close(timeout=5) == b""
        wait_until(lambda: topics(admin) == base_topics, what="topics freed")
        wait_until(lambda: parse_reply(direct.call("PUBSUB", "NUMSUB", "kill:c1", "kill:c2"))
                   == [b"kill:c1", 0, b"kill:c2", 0], what="store unsubscribed")
        wait_until(lambda: direct.call("PUBSUB", "NUMPAT") == b":0\r\n", what="no pattern left")
        assert admin.call("PUBLISH", "kill:c1", "x") == b":0\r\n"
        # CLIENT KILL of a client blocked in BLPOP.
        bl = real_proxy.connect()
        blid = parse_reply(bl.call("CLIENT", "ID"))
        bl.send_command("BLPOP", "kill:l", "0")
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base_used + 1,
                   what="blocked")
        assert admin.call("CLIENT", "KILL", "ID", blid) == b":1\r\n"
        assert bl.read_until_close(timeout=5) == b""
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base_used,
                   what="blocking connection released")
        for c in (tx, sub, bl):
            c.close()


def test_reset_and_quit_release_watch_connection(real_proxy):
    with real_proxy.connect() as admin:
        base = int(info(admin, "backend")["backend_dedicated_in_use"])
        c = real_proxy.connect()
        assert c.call("WATCH", "rq:a") == b"+OK\r\n"
        assert int(info(admin, "backend")["backend_dedicated_in_use"]) == base + 1
        assert c.call("RESET") == b"+RESET\r\n"
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base,
                   what="released by RESET")
        # After RESET nothing is watched: a change does not abort.
        assert admin.call("SET", "rq:a", "1") == b"+OK\r\n"
        c.send(encode_command("MULTI") + encode_command("GET", "rq:a") + encode_command("EXEC"))
        assert c.read_replies(3)[2] == b"*1\r\n$1\r\n1\r\n"
        assert c.call("WATCH", "rq:a") == b"+OK\r\n"
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("QUIT") == b"+OK\r\n"
        assert c.read_until_close(timeout=5) == b""
        c.close()
        wait_until(lambda: int(info(admin, "backend")["backend_dedicated_in_use"]) == base,
                   what="released by QUIT")


def test_timeout_spares_subscribers(real_proxy):
    with real_proxy.connect() as admin:
        old = config_get(admin, "timeout")
    sub, idle, busy = real_proxy.connect(), real_proxy.connect(), real_proxy.connect()
    watcher, blocked = real_proxy.connect(), real_proxy.connect()
    try:
        base_used = int(info(busy, "backend")["backend_dedicated_in_use"])
        assert sub.call("SUBSCRIBE", "to:ch")[:1] == b"*"
        assert idle.call("PING") == b"+PONG\r\n"
        assert watcher.call("WATCH", "to:w") == b"+OK\r\n"
        assert watcher.call("MULTI") == b"+OK\r\n"
        blocked.send_command("BLPOP", "to:l", "0")
        wait_until(lambda: int(info(busy, "backend")["backend_dedicated_in_use"]) == base_used + 2,
                   what="watch and blocking connections in use")
        assert busy.call("CONFIG", "SET", "timeout", "1") == b"+OK\r\n"
        start = time.monotonic()
        closed_at = None
        while time.monotonic() - start < 3.0:
            # The busy client keeps talking, so only idle clients qualify.
            assert busy.call("PING") == b"+PONG\r\n"
            if closed_at is None:
                try:
                    idle.read_reply(timeout=0.25)
                except ConnectionClosed:
                    closed_at = time.monotonic() - start
                except ReplyTimeout:
                    pass
            else:
                time.sleep(0.25)
        assert closed_at is not None and closed_at < 3.0, closed_at
        assert idle.buf == b""
        # The idle client inside MULTI with WATCH is closed as well and its
        # store connection released; the blocked one is not a candidate.
        assert watcher.read_until_close(timeout=2) == b""
        wait_until(lambda: int(info(busy, "backend")["backend_dedicated_in_use"]) == base_used + 1,
                   what="watch connection released")
        assert busy.call("RPUSH", "to:l", "v") == b":1\r\n"
        assert blocked.read_reply() == b"*2\r\n$4\r\nto:l\r\n$1\r\nv\r\n"
        # The subscriber, silent for about three timeouts, is still served.
        assert busy.call("PUBLISH", "to:ch", "still-here") == b":1\r\n"
        assert sub.read_reply() == b"*3\r\n$7\r\nmessage\r\n$5\r\nto:ch\r\n$10\r\nstill-here\r\n"
        assert sub.call("PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    finally:
        with real_proxy.connect() as admin:
            admin.call("CONFIG", "SET", "timeout", old)
        for c in (sub, idle, busy, watcher, blocked):
            c.close()


def _obuf_scenario(ep):
    """A subscriber with a tiny receive buffer never reads while large
    messages are published under "pubsub 64kb 0 0"; a second subscriber of the
    same channel reads everything. Returns what was observed."""
    with ep.connect() as admin:
        old = config_get(admin, "client-output-buffer-limit")
        m = re.search(rb"pubsub \d+ \d+ \d+", old)
        assert m, old
        assert admin.call("CONFIG", "SET", "client-output-buffer-limit",
                          "pubsub 64kb 0 0") == b"+OK\r\n"
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(5)
        good = ep.connect()
        try:
            slow.connect((ep.host, ep.port))
            slow.sendall(encode_command("SUBSCRIBE", "obuf:ch"))
            assert good.call("SUBSCRIBE", "obuf:ch")[:1] == b"*"
            wait_until(lambda: parse_reply(admin.call("PUBSUB", "NUMSUB", "obuf:ch"))[1] == 2,
                       what="two subscribers")
            counts, seen = [], []
            for i in range(200):
                counts.append(parse_reply(admin.call("PUBLISH", "obuf:ch",
                                                     b"%05d" % i + b"x" * 32763)))
                try:
                    r = parse_reply(good.read_reply(timeout=0.5))
                    seen.append(int(r[2][:5]))
                except ReplyTimeout:
                    pass
            counts.append(parse_reply(admin.call("PUBLISH", "obuf:ch", "end")))
            end = parse_reply(good.read_reply())
            while end[2] != b"end":  # messages that were late, then the last one
                seen.append(int(end[2][:5]))
                end = parse_reply(good.read_reply())
            slow.settimeout(10)
            received = 0
            while True:
                try:
                    chunk = slow.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += len(chunk)
            ping = good.call("PING")
        finally:
            with ep.connect() as restore:
                restore.call("CONFIG", "SET", "client-output-buffer-limit", m.group(0))
            slow.close()
            good.close()
    return counts, seen, received, ping


@pytest.mark.parametrize("side", ["oracle", "proxy"])
def test_pubsub_output_buffer_limit_drops_slow_subscriber(side, oracle, real_proxy):
    counts, seen, received, ping = _obuf_scenario(oracle if side == "oracle" else real_proxy)
    assert counts[0] == 2
    assert counts[-1] == 1, counts            # the slow subscriber is gone
    assert received < 200 * 32808             # it was closed, not fed everything
    assert ping == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert len(seen) >= 190                   # the other one keeps being served


@pytest.mark.parametrize("side", [
    "oracle",
    "proxy",
])
def test_pubsub_output_buffer_limit_others_get_every_message(side, oracle, real_proxy):
    counts, seen, received, ping = _obuf_scenario(oracle if side == "oracle" else real_proxy)
    assert counts[-1] == 1
    assert sorted(seen) == list(range(200))
