"""The proxy in front of old Redis releases (2.4.18 ... 6.0.20): it learns the
store's release and commands, says so in INFO backend, lists in COMMAND only
what works, refuses what the store lacks with a clear error (directly,
inside MULTI and from scripts), and gives Redis 7.0's error texts, compared
byte for byte with the 7.0 oracle. Fixtures: conftest.py (old_release,
old_store, old_proxy, old_diff)."""

import time

import pytest

import harness
from conftest import OLD_RELEASES, old_redis_binary, proxy_binary, stop_proxy, wait_store_learnt


def release_tuple(release):
    return tuple(int(x) for x in release.split("."))


# A proper call of commands that some releases lack: listed by COMMAND
# exactly when they work through the proxy.
PROBES = {
    "getdel": ("GETDEL", "k"),
    "getex": ("GETEX", "k"),
    "lmove": ("LMOVE", "la", "lb", "LEFT", "RIGHT"),
    "copy": ("COPY", "k", "k2"),
    "unlink": ("UNLINK", "k"),
    "pexpire": ("PEXPIRE", "k", "100"),
    "pttl": ("PTTL", "k"),
    "scan": ("SCAN", "0"),
    "bitcount": ("BITCOUNT", "k"),
    "hincrbyfloat": ("HINCRBYFLOAT", "h", "f", "1.5"),
    "dump": ("DUMP", "k"),
    "touch": ("TOUCH", "k"),
    "geoadd": ("GEOADD", "g", "1", "1", "m"),
    "xadd": ("XADD", "x", "*", "f", "v"),
    "zpopmin": ("ZPOPMIN", "z"),
    "zrandmember": ("ZRANDMEMBER", "z"),
    "lpos": ("LPOS", "l", "a"),
    "smismember": ("SMISMEMBER", "s", "a"),
    "expiretime": ("EXPIRETIME", "k"),
    "lcs": ("LCS", "k", "k2"),
    "sintercard": ("SINTERCARD", "1", "s"),
    "object|freq": ("OBJECT", "FREQ", "k"),
    "memory|usage": ("MEMORY", "USAGE", "k"),
}

# Commands no release before 7.0 has and that the proxy does not answer
# itself; each release refuses those it lacks unless emulated.
REFUSED = [("EXPIRETIME", "k"), ("LCS", "k", "k2"), ("ZRANDMEMBER", "z"), ("OBJECT", "FREQ", "k"),
           ("BITCOUNT", "k"), ("XADD", "x", "*", "f", "v")]


def refusal(name, release):
    return b"-ERR command '%s' is not supported by the store (redis %s)\r\n" % (name.encode(), release.encode())


def full_name(args):
    name = args[0].lower()
    if name in ("object", "memory"):
        name += "|" + args[1].lower()
    return name


def listed(conn, name):
    return harness.parse_reply(conn.call("COMMAND", "INFO", name))[0] is not None


def store_has(store, args):
    """The store's own answer: a command it lacks is unknown to it."""
    with store.connect() as c:
        r = c.call(*args)
    return not (r.startswith(b"-ERR unknown command") or r.startswith(b"-ERR Syntax error")
                or r.startswith(b"-ERR Unknown subcommand") or b"Try OBJECT" in r or b"Try MEMORY" in r)


def works_through(conn, args):
    r = conn.call(*args)
    return not (b"is not supported by the store" in r or r.startswith(b"-ERR unknown command")), r


def test_info_backend_says_which_release(old_release, old_proxy):
    with old_proxy.connect() as c:
        backend = harness.info_fields(c, "backend")
        server = harness.info_fields(c, "server")
    assert backend["backend_version"] == old_release
    assert int(backend["backend_commands_emulated"]) >= 0
    # Clients gate on redis_version: it stays the proxy's promise.
    assert server["redis_version"] == "7.0.15"


def test_command_lists_exactly_what_works(old_release, old_store, old_proxy):
    with old_proxy.connect() as c:
        c.call("FLUSHALL")
        for name, args in PROBES.items():
            is_listed = listed(c, name)
            works, reply = works_through(c, args)
            assert is_listed == works, "%s on redis %s: COMMAND %s it, the proxy answered %r" % (
                name, old_release, "lists" if is_listed else "omits", reply)
            if store_has(old_store, args):
                assert is_listed, "%s: the store has it, COMMAND omits it" % name
        # GETDEL came in 6.2: listed only where the proxy stands in for it.
        if not listed(c, "getdel"):
            assert c.call("GETDEL", "k") == refusal("getdel", old_release)
        everything = harness.parse_reply(c.call("COMMAND"))
        count = harness.parse_reply(c.call("COMMAND", "COUNT"))
        names = [e[0] for e in everything]
        assert count == len(everything)
        all_info = harness.parse_reply(c.call("COMMAND", "INFO"))
        assert [e[0] for e in all_info] == names
        docs = harness.parse_reply(c.call("COMMAND", "DOCS"))
        assert sorted(docs[0::2]) == sorted(names)
        listing = harness.parse_reply(c.call("COMMAND", "LIST"))
        assert set(n for n in listing if b"|" not in n) == set(names)
        for name in ("lcs", "expiretime"):
            assert (name.encode() in names) == listed(c, name)
            assert (name.encode() in listing) == listed(c, name)
        # A container lists only the subcommands that work.
        obj = harness.parse_reply(c.call("COMMAND", "INFO", "object"))[0]
        subs = [s[0] for s in obj[9]]
        assert (b"object|freq" in subs) == listed(c, "object|freq")
        assert b"object|encoding" in subs
        obj_docs = harness.parse_reply(c.call("COMMAND", "DOCS", "object"))
        doc_map = dict(zip(obj_docs[1][0::2], obj_docs[1][1::2]))
        sub_docs = doc_map[b"subcommands"][0::2]
        assert sorted(sub_docs) == sorted(subs)
        if release_tuple(old_release) < (4, 0, 0):
            assert b"object|freq" not in listing or listed(c, "object|freq")


def refused_here(conn, args):
    """Whether args is one this release lacks and the proxy does not
    emulate (the cases the refusal tests use)."""
    return not listed(conn, full_name(args))


def test_refusal_names_the_store(old_release, old_proxy):
    with old_proxy.connect() as c:
        cases = [a for a in REFUSED if refused_here(c, a)]
        assert cases, "redis %s: every probe is emulated or native" % old_release
        for args in cases:
            assert c.call(*args) == refusal(full_name(args), old_release)
        # Pipelined, between commands that work, in order.
        c.send(b"".join(harness.encode_command(*a) for a in [("SET", "p", "1")] + cases + [("GET", "p")]))
        replies = c.read_replies(len(cases) + 2)
        assert replies[0] == b"+OK\r\n" and replies[-1] == b"$1\r\n1\r\n"
        assert replies[1:-1] == [refusal(full_name(a), old_release) for a in cases]
        # The proxy's own checks come first, as for any command.
        assert c.call("EXPIRETIME") == b"-ERR wrong number of arguments for 'expiretime' command\r\n"


def test_refusal_inside_multi_aborts_exec(old_release, old_proxy):
    with old_proxy.connect() as c:
        args = next(a for a in REFUSED if refused_here(c, a))
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("SET", "m", "1") == b"+QUEUED\r\n"
        assert c.call(*args) == refusal(full_name(args), old_release)
        assert c.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        assert c.call("EXISTS", "m") == b":0\r\n"


def test_refusal_from_scripts(old_release, old_proxy):
    with old_proxy.connect() as c:
        args = next(a for a in REFUSED if refused_here(c, a))
        lua_args = ",".join("'%s'" % a for a in args)
        expected = refusal(full_name(args), old_release)
        # pcall hands the error to the script as it is...
        assert c.call("EVAL", "return redis.pcall(%s)" % lua_args, "0") == expected
        # ...and call raises it, with Redis's script suffix.
        r = c.call("EVAL", "return redis.call(%s)" % lua_args, "0")
        assert r.startswith(expected[:-2] + b" script: "), r


def test_common_errors_as_redis7(old_release, old_diff):
    since_26 = [] if release_tuple(old_release) < (2, 6, 0) else [
        "PSETEX k 0 v",
        "HSET h f abc",
        "HINCRBYFLOAT h f 1",
        "SET k v EX abc",
        "SET k v EX",
        "SET r 1",
        "RESTORE r 0 payload",
        "SETRANGE k 536870912 v",
    ]
    since_32 = [] if release_tuple(old_release) < (3, 2, 0) else ["SADD st a", "SPOP st -1"]
    old_diff.run(since_26 + since_32 + [
        "ZUNIONSTORE d 0 z",
        "ZINTERSTORE d 0 z",
        "SET a 1",
        "LPUSH a x",
        "HGET a f",
        "SADD a m",
        "SET s abc",
        "INCR s",
        "INCRBY s 2",
        "EXPIRE s abc",
        "RENAME nokey x",
        "LSET nolist 0 x",
        "RPUSH l a",
        "LSET l 9 x",
        "LINSERT l middle a b",
        "ZADD z abc m",
        "ZINCRBY z abc m",
        "ZRANGEBYSCORE z a b",
        "SETEX k 0 v",
        "SETRANGE k -1 v",
        "SETBIT k -1 1",
        "SET n 9223372036854775807",
        "INCR n",
        "GET",
        "MSET a 1 b",
        "HMSET h f",
        "nosuchcommand a b",
        "BLPOP l2 abc",
        # A script sees the same texts.
        ("EVAL", "return redis.pcall('lpush', KEYS[1], 'x')", "1", "a"),
        ("EVAL", "return redis.pcall('zadd', KEYS[1], 'abc', 'm')", "1", "z"),
    ])


def test_watch_multi_exec(old_release, oracle, old_proxy, old_diff):
    # The errors inside EXEC's reply are 7.0's too.
    old_diff.run(["WATCH w", "MULTI", "SET w 1", "INCR w", "LPUSH w x", "SETEX w2 0 v", "EXEC", "GET w"])
    # A watched key changed by another client aborts EXEC.
    results = []
    for ep in (oracle, old_proxy):
        with ep.connect() as a, ep.connect() as b:
            steps = [a.call("SET", "w", "1"), a.call("WATCH", "w"), b.call("SET", "w", "2"),
                     a.call("MULTI"), a.call("INCR", "w"), a.call("EXEC"), a.call("GET", "w")]
            results.append(steps)
    assert results[0] == results[1]


def test_pubsub(oracle, old_proxy, old_diff):
    results = []
    for ep in (oracle, old_proxy):
        with ep.connect() as sub, ep.connect() as pub:
            out = [sub.call("SUBSCRIBE", "ch"), sub.call("PSUBSCRIBE", "c*")]
            out.append(pub.call("PUBLISH", "ch", "hello"))
            out += sub.read_replies(2)
            out.append(pub.call("PUBSUB", "NUMSUB", "ch"))
            # Shard channels came in 7.0: the proxy answers for its clients.
            out.append(pub.call("PUBSUB", "SHARDNUMSUB", "ch"))
            out.append(pub.call("PUBSUB", "NUMPAT"))
            out.append(sub.call("UNSUBSCRIBE", "ch"))
            results.append(out)
    assert results[0] == results[1]


def test_info_keyspace(old_release, oracle, old_proxy, old_diff):
    old_diff.run(["SET a 1", "SET b 2", "SELECT 2", "SET c 3"])
    spaces = []
    for ep in (oracle, old_proxy):
        with ep.connect() as c:
            spaces.append(harness.parse_reply(c.call("INFO", "keyspace")))
    assert spaces[0] == spaces[1]
    with old_proxy.connect() as c:
        full = harness.parse_reply(c.call("INFO"))
    assert b"# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n" in full


def test_client_names_on_every_release(old_diff):
    old_diff.run(["CLIENT SETNAME worker-1", "CLIENT GETNAME", "CLIENT SETNAME", "CLIENT GETNAME"])


@pytest.mark.store_restart
def test_another_release_on_the_same_port_is_learnt_again(workdir):
    """The store is replaced by an older release on the same port: the proxy
    re-learns it on reconnect, and COMMAND and refusals follow."""
    first = harness.RedisServer("store-6.0", str(workdir / "swap-6.0"), rename_scripting=True,
                                binary=old_redis_binary("6.0.20"))
    first.start()
    second = None
    p = harness.ProxyProcess(proxy_binary(), first, str(workdir / "swap-proxy"))
    p.start()
    try:
        assert wait_store_learnt(p)["backend_version"] == "6.0.20"
        with p.connect() as c:
            unlink_listed = listed(c, "unlink")
            assert unlink_listed
            assert c.call("UNLINK", "k") == b":0\r\n"
        first.stop()
        second = harness.RedisServer("store-2.8", str(workdir / "swap-2.8"), rename_scripting=True,
                                     port=first.port, binary=old_redis_binary("2.8.24"))
        second.restart()
        info = wait_store_learnt(p)
        deadline = time.monotonic() + 20
        while info["backend_version"] != "2.8.24" and time.monotonic() < deadline:
            time.sleep(0.05)
            info = wait_store_learnt(p)
        assert info["backend_version"] == "2.8.24"
        with p.connect() as c:
            # UNLINK came in 4.0: refused unless the proxy stands in for it.
            if not listed(c, "unlink"):
                assert c.call("UNLINK", "k") == refusal("unlink", "2.8.24")
            assert not listed(c, "object|freq")
            assert c.call("OBJECT", "FREQ", "k") == refusal("object|freq", "2.8.24")
        with open(p.logfile) as f:
            assert "changed release from 6.0.20 to 2.8.24" in f.read()
    finally:
        stop_proxy(p)
        first.stop()
        if second:
            second.stop()


def test_store_that_hides_its_release_is_not_judged(workdir):
    """A store whose INFO is renamed away: the proxy cannot tell its
    release, says so, and relays everything as before."""
    s = harness.RedisServer("store-noinfo", str(workdir / "noinfo"), rename_scripting=True,
                            extra=['rename-command INFO ""'])
    s.start()
    p = harness.ProxyProcess(proxy_binary(), s, str(workdir / "noinfo-proxy"))
    p.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            with p.connect() as c:
                info = harness.info_fields(c, "backend")
            if info.get("backend_connections_ready") == info.get("backend_connections") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert info["backend_version"] == "unknown"
        assert info["backend_commands_emulated"] == "0"
        with p.connect() as c:
            assert c.call("SET", "k", "v") == b"+OK\r\n"
            assert c.call("GETDEL", "k") == b"$1\r\nv\r\n"
            assert listed(c, "getdel") and listed(c, "lcs")
        with open(p.logfile) as f:
            assert "its INFO names no Redis release" in f.read()
    finally:
        stop_proxy(p)
        s.stop()
