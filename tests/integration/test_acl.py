"""Users and ACLs, differential against a redis-server 7.0 oracle configured
with the same `user` lines: commands, keys (%R/%W), channels, MULTI,
scripts, the ACL command, AUTH and HELLO. Plus what only the proxy can show:
the store stays unchanged when a restricted user is refused, and ACL SAVE /
ACL LOAD with an ACL file."""

import contextlib
import os
import subprocess
import time

import pytest

import harness
from harness import HOST, ProxyProcess, RedisServer, Step, parse_reply
from conftest import proxy_binary, target_is_store

USERS = {
    "app": ("apppw", "on >apppw ~app:* resetchannels &news.* +@all"),
    "reader": ("rpw", "on >rpw %R~ro:* %W~wo:* ~rw:* resetchannels &chan:* +@all"),
    "limited": ("lpw", "on >lpw allkeys allchannels -@all +get +set +ping +echo +client|getname "
                       "+select|0 +eval +eval_ro +multi +exec +discard +acl|whoami +@pubsub"),
    "pubber": ("ppw", "on >ppw ~* resetchannels &chan:* &literal* -@all +@pubsub +@read +ping +eval +acl"),
    "sleeper": ("spw", "off >spw ~* &* +@all"),
    "free": ("", "on nopass ~* &* +@all"),
    "multi": ("mpw", "on >mpw ~app:* resetchannels -@all +get +multi +exec +eval (~wo:* +set +lpush) "
                     "(%R~ro:* &chan:* +@read +publish +subscribe)"),
}
USER_LINES = ["user %s %s" % (name, rules) for name, (_, rules) in USERS.items()]


def _wait_ping(ep, proc, timeout=30.0):
    harness.wait_for_ping(ep.host, ep.port, timeout, proc, ep.name)


@pytest.fixture(scope="module")
def acl_pair(store, tmp_path_factory):
    if target_is_store():
        pytest.skip("EVALPROXY_TARGET=store: needs a proxy with users")
    base = tmp_path_factory.mktemp("acl")
    oracle = RedisServer("oracle-acl", str(base / "oracle"), extra=USER_LINES)
    oracle.start()
    conf = base / "proxy.conf"
    conf.write_text("\n".join(USER_LINES) + "\n")
    p = ProxyProcess(proxy_binary(), store, str(base / "proxy"))
    p.args.insert(1, str(conf))
    try:
        p.start()
        yield harness.Differ(oracle, p)
    finally:
        status = p.stop()
        oracle.stop()
    report = p.sanitizer_report()
    assert not report, report
    assert status in (0, -15), p.diagnostics()


@pytest.fixture
def pair(acl_pair):
    acl_pair.flushall()
    return acl_pair


def auth(user):
    return ("AUTH", user, USERS[user][0])


# ---------------------------------------------------------------------------
# One command per case for each restricted user: allowed or denied, the same
# reply bytes as Redis.

COMMANDS = [
    ("GET", "app:1"), ("GET", "other"), ("SET", "app:1", "v"), ("SET", "other", "v"),
    ("MGET", "app:1", "app:2"), ("MGET", "app:1", "other"), ("DEL", "app:1"), ("DEL", "other"),
    ("INCR", "app:n"), ("GET", "ro:1"), ("SET", "ro:1", "x"), ("GET", "wo:1"), ("SET", "wo:1", "x"),
    ("APPEND", "wo:1", "x"), ("GET", "rw:1"), ("SET", "rw:1", "v"), ("COPY", "ro:1", "wo:1"),
    ("LPUSH", "app:l", "a"), ("LMOVE", "app:l", "other", "LEFT", "RIGHT"), ("EXISTS", "other"),
    ("EXISTS", "ro:1"), ("TYPE", "wo:1"), ("STRLEN", "ro:1"), ("BITOP", "AND", "wo:d", "ro:1"),
    ("BITOP", "AND", "ro:d", "wo:1"), ("HSET", "other", "f", "v"), ("ZADD", "app:z", "1", "m"),
    ("SORT", "app:l", "STORE", "other"), ("OBJECT", "ENCODING", "other"),
    ("PUBLISH", "news.1", "hi"), ("PUBLISH", "other", "hi"), ("PUBLISH", "chan:1", "x"),
    ("SPUBLISH", "chan:x", "m"), ("PING",), ("ECHO", "x"), ("SELECT", "0"), ("SELECT", "1"),
    ("CLIENT", "GETNAME"), ("CONFIG", "GET", "nosuchparameter"), ("DBSIZE",), ("FLUSHDB",),
    ("ACL", "WHOAMI"), ("ACL", "USERS"), ("ACL", "CAT"), ("ACL", "DRYRUN", "app", "get", "other"),
    ("ACL", "DRYRUN", "reader", "set", "ro:1", "v"), ("ACL", "DRYRUN", "limited", "del", "x"),
    ("ACL", "DRYRUN", "pubber", "publish", "chan:1", "m"), ("ACL", "DRYRUN", "pubber", "publish", "zz", "m"),
    ("EVAL", "return 1", "0"), ("EVAL", "return redis.call('get',KEYS[1])", "1", "app:1"),
    ("EVAL", "return redis.call('get',KEYS[1])", "1", "other"),
    ("EVAL", "return redis.call('get','other')", "0"),
    ("EVAL", "return redis.call('set','app:u','1')", "0"),
    ("EVAL", "return redis.pcall('set','other','1')", "0"),
    ("EVAL", "return redis.call('del','ro:1')", "0"),
    ("EVAL", "return redis.acl_check_cmd('get','other')", "0"),
    ("EVAL", "return redis.acl_check_cmd('set','app:1','x')", "0"),
    ("EVAL", "return redis.acl_check_cmd('del','app:1')", "0"),
    ("EVAL", "return redis.acl_check_cmd('config','get','x')", "0"),
    ("EVAL", "return redis.acl_check_cmd('nosuch')", "0"),
    ("EVAL", "return redis.call('publish','other','x')", "0"),
    ("EVAL", "return redis.call('publish','chan:9','x')", "0"),
    ("EVAL", "return redis.call('config','get','nosuchparameter')", "0"),
    ("EVAL", "return redis.call('ping')", "0"),
    ("EVAL_RO", "return redis.call('get',KEYS[1])", "1", "ro:1"),
    ("EVAL_RO", "return redis.call('get',KEYS[1])", "1", "wo:1"),
    ("SUBSCRIBE", "chan:1"), ("SUBSCRIBE", "chan:1", "other"), ("PSUBSCRIBE", "chan:*"),
    ("PSUBSCRIBE", "news.*"), ("PSUBSCRIBE", "literal*"), ("PSUBSCRIBE", "literal"),
    ("SSUBSCRIBE", "chan:2"),
]

RESTRICTED = ["app", "reader", "limited", "pubber", "multi"]


@pytest.mark.parametrize("user", RESTRICTED)
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c)[:60])
def test_command_permissions_match_redis(pair, user, cmd):
    pair.run([auth(user), ("SET", "ro:1", "x") if user != "limited" else ("PING",), cmd])


@pytest.mark.parametrize("user", RESTRICTED)
def test_multi_queue_time_check(pair, user):
    pair.run([auth(user), ("MULTI",), ("GET", "other"), ("SET", "app:1", "v"), ("HSET", "zz", "f", "v"),
              ("ECHO", "x"), ("DEL", "ro:1"), ("EXEC",), ("GET", "app:1")])


@pytest.mark.parametrize("user", RESTRICTED)
def test_multi_allowed_runs(pair, user):
    pair.run([auth(user), ("MULTI",), ("GET", "app:1"), ("EXEC",)])


@pytest.mark.parametrize("steps", [
    [("AUTH", "app", "wrong"), ("AUTH", "nosuch", "x"), ("AUTH", "sleeper", "spw"), ("ACL", "WHOAMI")],
    [("AUTH", "onlyapassword"), ("AUTH", "a", "b", "c"), ("AUTH", "free", "anything"), ("ACL", "WHOAMI")],
    [("HELLO", "2", "AUTH", "app", "wrong"), ("HELLO", "2", "AUTH", "nosuch", "x"), ("ACL", "WHOAMI")],
    [auth("app"), ("ACL", "WHOAMI"), ("AUTH", "app", "wrong"), ("ACL", "WHOAMI"), ("RESET",), ("ACL", "WHOAMI")],
    [auth("app"), auth("reader"), ("ACL", "WHOAMI"), ("GET", "ro:x")],
    [auth("limited"), ("MULTI",), ("GET", "x"), ("DEL", "x"), ("EXEC",), ("MULTI",), ("GET", "x"), ("EXEC",)],
], ids=["wrongpass", "forms", "hello", "reset", "switch", "multi"])
def test_auth_matches_redis(pair, steps):
    pair.run(steps)


def test_hello_auth_as_user(pair):
    def session(ep):
        with ep.connect() as c:
            r = parse_reply(c.call("HELLO", "2", "AUTH", "reader", "rpw"))
            r[7] = 0  # the connection id
            return r, c.call("ACL", "WHOAMI"), c.call("SET", "ro:1", "v")
    assert session(pair.oracle) == session(pair.proxy)


def _sorted_rules(line):
    # Single command rules come in Redis's hash table order, which changes
    # from one process to the next; compare them as a set after the
    # categories, which have a fixed order. Each "(...)" selector apart.
    groups, cur = [], []
    for w in line.split(" "):
        if w.startswith("("):
            groups.append(cur)
            cur = [w[1:]]
        else:
            cur.append(w)
        if w.endswith(")") and len(groups) and cur and cur[0] != "":
            cur[-1] = cur[-1][:-1]
    groups.append(cur)
    out = []
    for g in groups:
        single = [w for w in g if w[:1] in "+-" and not w.startswith(("+@", "-@"))]
        out.append([w for w in g if w not in single] + sorted(single))
    return out


def _list_as_rules(raw):
    return [_sorted_rules(x.decode()) for x in parse_reply(raw)]


def test_acl_list_matches_redis(pair):
    with pair.oracle.connect() as o, pair.proxy.connect() as p:
        assert _list_as_rules(o.call("ACL", "LIST")) == _list_as_rules(p.call("ACL", "LIST"))
        assert o.call("ACL", "USERS") == p.call("ACL", "USERS")


@pytest.mark.parametrize("user", list(USERS) + ["default"])
def test_acl_getuser_matches_redis(pair, user):
    def get(ep):
        with ep.connect() as c:
            r = parse_reply(c.call("ACL", "GETUSER", user))
            r[5] = _sorted_rules(r[5].decode())
            for sel in r[11]:
                sel[1] = _sorted_rules(sel[1].decode())
            return r
    assert get(pair.oracle) == get(pair.proxy)


# Users whose description has at most one single command rule: byte-identical.
@pytest.mark.parametrize("rules", [
    ["on", ">p", "~k:*", "+@all"],
    ["on", "nopass", "allkeys", "allchannels", "allcommands"],
    ["off", "#" + "a" * 64, "%R~r:*", "%W~w:*", "%RW~b:*", "-@all", "+@read"],
    ["on", ">p", "~a", "~a", "%R~a", "&x", "&y", "+@all", "-@dangerous"],
    ["on", "+@all", "-@write", "+set"],
    ["on", "-@all", "+@read", "-get"],
    ["on", "-@all", "+@read", "+@write", "+@keyspace"],
    ["on", "+@all", "-@admin", "-@dangerous", "-@slow"],
    ["on", "-@all", "+config|get"],
    ["on", "-@all", "+select|0", "+select|1"],
    ["on", "-@all", "+client"],
    ["on", "+@all", "-client"],
    ["reset"],
    ["on", ">a", ">b", "<a"],
    ["on", ">a", "resetpass", "nopass", "resetpass"],
    ["on", "allkeys", "resetkeys", "~x", "allchannels", "resetchannels", "&c"],
    ["on", "nocommands", "+@scripting", "+@transaction"],
    ["skip-sanitize-payload", "on", "+@all"],
    ["sanitize-payload", "+@hash", "+@list", "+@set", "+@sortedset"],
    ["on", "~a", "+get", "(~b +set)", "(&c* %R~d* +@read)"],
    ["on", "(~x", "+get)", "()", "(allkeys", "allchannels", "allcommands)"],
    ["on", "(~x +get)", "clearselectors", "(~y +set)"],
    ["on", "(~x +get)", "reset", "on"],
], ids=lambda r: " ".join(r)[:50])
def test_acl_setuser_then_describe(pair, rules):
    name = "t_%d" % (abs(hash(tuple(rules))) % 100000)

    def session(ep):
        with ep.connect() as c:
            r = [c.call("ACL", "SETUSER", name, *rules), parse_reply(c.call("ACL", "GETUSER", name)),
                 c.call("ACL", "DELUSER", name)]
            r[1][5] = _sorted_rules(r[1][5].decode())
            for sel in r[1][11]:
                sel[1] = _sorted_rules(sel[1].decode())
            return r
    assert session(pair.oracle) == session(pair.proxy)


@pytest.mark.parametrize("args", [
    ("SETUSER", "bad", "+nosuchcommand"), ("SETUSER", "bad", "-@nosuchcategory"), ("SETUSER", "bad", "foo"),
    ("SETUSER", "bad", "allkeys", "~x"), ("SETUSER", "bad", "&*", "&x"), ("SETUSER", "bad", "#abc"),
    ("SETUSER", "bad", "#" + "A" * 64), ("SETUSER", "bad", "<nosuchpassword"), ("SETUSER", "bad", "!" + "b" * 64),
    ("SETUSER", "bad", "+select|0|1"), ("SETUSER", "bad", "+config|get|x"), ("SETUSER", "bad", "+config|"),
    ("SETUSER", "bad", "+config|nosuchsub"), ("SETUSER", "bad", "-select|0"), ("SETUSER", "bad", "%X~a"),
    ("SETUSER", "bad", "~a b"), ("SETUSER", "a b"), ("SETUSER", "bad", "on", "+get", "nosuch"),
    ("DELUSER", "default"), ("DELUSER", "nosuch", "other"), ("GETUSER", "nosuch"), ("CAT", "nope"),
    ("GENPASS", "0"), ("GENPASS", "4097"), ("GENPASS", "x"), ("LOG", "x"), ("LOG", "1", "2"), ("LOAD",),
    ("SAVE",), ("HELP",), ("NOSUCH",), ("LIST", "x"), ("WHOAMI", "x"), ("DRYRUN", "nosuch", "get", "x"),
    ("DRYRUN", "app", "nosuch"), ("DRYRUN", "app", "get"), ("DRYRUN", "app", "config", "nosuchsub"),
    ("DRYRUN", "app", "config", "get", "x"), ("DRYRUN", "reader", "lmove", "ro:1", "wo:1", "left", "left"),
    ("DRYRUN", "reader", "copy", "rw:1", "ro:2"), ("DRYRUN", "free", "flushall"),
    ("DRYRUN", "limited", "select", "0"), ("DRYRUN", "limited", "select", "1"), ("GETUSER",), ("SETUSER",),
    ("SETUSER", "bad", "(~x", "+get"), ("SETUSER", "bad", "on", "(~x +nosuch)"), ("SETUSER", "bad", "(foo)"),
    ("SETUSER", "bad", "(~x", "foo)"), ("DRYRUN", "multi", "set", "wo:1", "v"), ("DRYRUN", "multi", "set", "ro:1", "v"),
    ("DRYRUN", "multi", "publish", "chan:1", "m"), ("DRYRUN", "multi", "publish", "zz", "m"),
    ("DRYRUN", "multi", "lpush", "app:1", "v"), ("DRYRUN", "multi", "del", "app:1"),
], ids=lambda a: " ".join(a)[:50])
def test_acl_command_replies_match_redis(pair, args):
    pair.run([("ACL",) + args, ("ACL", "USERS")])


@pytest.mark.parametrize("category", [
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog",
    "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection",
    "transaction", "scripting", "READ"])
def test_acl_cat_matches_redis(pair, category):
    # Redis lists a category's commands in its hash table's order.
    pair.run([Step(args=("ACL", "CAT", category), unordered=True)])


def test_acl_genpass_lengths(pair):
    with pair.proxy.connect() as c:
        for bits, chars in ((None, 64), (1, 1), (5, 2), (128, 32), (4096, 1024)):
            args = ("ACL", "GENPASS") + ((str(bits),) if bits else ())
            r = parse_reply(c.call(*args))
            assert len(r) == chars and all(ch in b"0123456789abcdef" for ch in r), r
        assert c.call("ACL", "GENPASS") != c.call("ACL", "GENPASS")


def _log_entries(ep, steps):
    with ep.connect() as admin:
        assert admin.call("ACL", "LOG", "RESET") == b"+OK\r\n"
    with ep.connect() as c:
        for s in steps:
            c.call(*s)
    with ep.connect() as admin:
        entries = parse_reply(admin.call("ACL", "LOG"))
    out = []
    for e in entries:
        d = dict(zip(e[0::2], e[1::2]))
        assert set(d) == {b"count", b"reason", b"context", b"object", b"username", b"age-seconds",
                          b"client-info"}, d
        float(d[b"age-seconds"])
        assert b"id=" in d[b"client-info"]
        del d[b"age-seconds"], d[b"client-info"]
        out.append(d)
    return out


@pytest.mark.parametrize("steps", [
    [auth("app"), ("GET", "other"), ("GET", "other"), ("SET", "x", "1")],
    [auth("limited"), ("DEL", "x"), ("CONFIG", "GET", "x"), ("DEL", "y")],
    [auth("pubber"), ("PUBLISH", "nochan", "m"), ("SUBSCRIBE", "chan:1", "bad")],
    [("AUTH", "app", "wrong"), ("AUTH", "nosuch", "x"), ("HELLO", "2", "AUTH", "app", "bad")],
    [auth("app"), ("MULTI",), ("GET", "other"), ("DISCARD",),
     ("EVAL", "return redis.pcall('get','other')", "0"), ("EVAL", "return redis.pcall('config','get','x')", "0")],
], ids=["keys", "commands", "channels", "auth", "multi-lua"])
def test_acl_log_matches_redis(pair, steps):
    assert _log_entries(pair.oracle, steps) == _log_entries(pair.proxy, steps)
    with pair.proxy.connect() as c:
        assert c.call("ACL", "LOG", "RESET") == b"+OK\r\n"
        assert c.call("ACL", "LOG") == b"*0\r\n"


def test_acl_log_count_argument(pair):
    steps = [auth("app")] + [("GET", "k%d" % i) for i in range(5)]
    for ep in (pair.oracle, pair.proxy):
        _log_entries(ep, steps)
    with pair.oracle.connect() as o, pair.proxy.connect() as p:
        for n in ("0", "2", "-1", "100"):
            assert len(parse_reply(o.call("ACL", "LOG", n))) == len(parse_reply(p.call("ACL", "LOG", n)))


def test_deluser_disconnects_its_clients(pair):
    for ep in (pair.oracle, pair.proxy):
        with ep.connect() as admin:
            assert admin.call("ACL", "SETUSER", "gone", "on", ">g", "+@all", "~*") == b"+OK\r\n"
        with ep.connect() as victim, ep.connect() as bystander, ep.connect() as admin:
            assert victim.call("AUTH", "gone", "g") == b"+OK\r\n"
            assert bystander.call("PING") == b"+PONG\r\n"
            assert admin.call("ACL", "DELUSER", "gone", "nosuch") == b":1\r\n"
            with pytest.raises((harness.ConnectionClosed, OSError)):
                victim.call("PING")
            assert bystander.call("PING") == b"+PONG\r\n"
            assert admin.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"


def test_deluser_self_gets_reply_then_close(pair):
    for ep in (pair.oracle, pair.proxy):
        with ep.connect() as admin:
            assert admin.call("ACL", "SETUSER", "selfdel", "on", ">s", "+@all", "~*") == b"+OK\r\n"
        with ep.connect() as c:
            assert c.call("AUTH", "selfdel", "s") == b"+OK\r\n"
            c.send_command("ACL", "DELUSER", "selfdel")
            assert c.read_until_close() == b":1\r\n"


def test_setuser_changes_apply_to_connected_clients(pair):
    steps_admin = [("ACL", "SETUSER", "live", "reset", "on", ">l", "~*", "+get")]
    for ep in (pair.oracle, pair.proxy):
        with ep.connect() as admin, ep.connect() as c:
            for s in steps_admin:
                assert admin.call(*s) == b"+OK\r\n"
            assert c.call("AUTH", "live", "l") == b"+OK\r\n"
            assert c.call("GET", "x") == b"$-1\r\n"
            assert c.call("SET", "x", "1").startswith(b"-NOPERM")
            assert admin.call("ACL", "SETUSER", "live", "+set") == b"+OK\r\n"
            assert c.call("SET", "x", "1") == b"+OK\r\n"
            # Turning the user off keeps existing connections, as in Redis.
            assert admin.call("ACL", "SETUSER", "live", "off") == b"+OK\r\n"
            assert c.call("GET", "x") == b"$1\r\n1\r\n"
            assert admin.call("AUTH", "live", "l").startswith(b"-WRONGPASS")
            assert admin.call("ACL", "DELUSER", "live") == b":1\r\n"


# ---------------------------------------------------------------------------
# A user restricted to ~app:* changes nothing outside it, whatever the route.

def test_restricted_user_cannot_touch_other_keys(acl_pair, store):
    acl_pair.flushall()
    with store.connect() as s:
        s.call("FLUSHALL")
        assert s.call("SET", "secret", "orig") == b"+OK\r\n"
    attempts = [
        ("GET", "secret"), ("SET", "secret", "x"), ("DEL", "secret"), ("APPEND", "secret", "x"),
        ("RENAME", "secret", "app:stolen"), ("COPY", "secret", "app:copy"), ("MSET", "app:1", "a", "secret", "x"),
        ("EVAL", "return redis.call('get', KEYS[1])", "1", "secret"),
        ("EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "secret"),
        ("EVAL", "return redis.call('get', 'secret')", "0"),
        ("EVAL", "return redis.call('set', 'secret', 'x')", "0"),
        ("EVAL", "redis.call('set','app:ok','1'); return redis.pcall('del', 'secret')", "0"),
        ("EVAL", "return redis.pcall('copy', 'secret', 'app:c2')", "0"),
        ("EVAL_RO", "return redis.call('get', 'secret')", "0"),
    ]
    with acl_pair.proxy.connect() as c:
        assert c.call("AUTH", "app", "apppw") == b"+OK\r\n"
        for a in attempts:
            r = c.call(*a)
            assert b"orig" not in r, (a, r)
            assert r.startswith((b"-NOPERM", b"-ERR The user executing the script")) or \
                (a[0] == "EVAL" and b"pcall" in a[1].encode() and b"can't access" in r), (a, r)
        # Inside MULTI: refused at queue time, nothing runs.
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("SET", "secret", "x").startswith(b"-NOPERM")
        assert c.call("SET", "app:m", "1") == b"+QUEUED\r\n"
        assert c.call("EXEC").startswith(b"-EXECABORT")
        assert c.call("SET", "app:fine", "1") == b"+OK\r\n"
    with store.connect() as s:
        assert s.call("GET", "secret") == b"$4\r\norig\r\n"
        keys = sorted(parse_reply(s.call("KEYS", "*")))
        assert keys == [b"app:fine", b"app:ok", b"secret"], keys


def test_requirepass_is_the_default_user_password(store, tmp_path):
    if target_is_store():
        pytest.skip("needs the proxy")
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "p"))
    p.args.insert(1, _write(tmp_path / "c.conf", "user app on >a ~* +@all\n"))
    with _running(p):
        with p.connect() as c:
            assert c.call("CONFIG", "SET", "requirepass", "pw") == b"+OK\r\n"
        with p.connect() as c:
            assert c.call("GET", "x") == b"-NOAUTH Authentication required.\r\n"
            assert c.call("AUTH", "pw") == b"+OK\r\n"
            assert b"passwords\r\n*1\r\n$64\r\n" in c.call("ACL", "GETUSER", "default")
            assert c.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"
            assert b"nopass" in c.call("ACL", "LIST")
        with p.connect() as c:
            assert c.call("GET", "nokey") == b"$-1\r\n"
            assert c.call("AUTH", "app", "a") == b"+OK\r\n"
            assert c.call("ACL", "WHOAMI") == b"$3\r\napp\r\n"
            assert c.call("CLIENT", "KILL", "USER", "nosuch") == b"-ERR No such user 'nosuch'\r\n"


# ---------------------------------------------------------------------------
# The ACL file

def _write(path, text):
    path.write_text(text)
    return str(path)


@contextlib.contextmanager
def _running(p):
    p.start()
    try:
        yield p
    finally:
        status = p.stop()
        report = p.sanitizer_report()
        assert not report, report
        assert status in (0, -15), p.diagnostics()


def test_acl_save_and_load_round_trip(store, tmp_path):
    if target_is_store():
        pytest.skip("needs the proxy")
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\nuser alice on >a ~a:* -@all +get\n")
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "p"), extra_args=["--aclfile", str(aclfile)])
    with _running(p):
        with p.connect() as admin, p.connect() as alice:
            assert alice.call("AUTH", "alice", "a") == b"+OK\r\n"
            assert alice.call("GET", "a:1") == b"$-1\r\n"
            assert alice.call("SET", "a:1", "x").startswith(b"-NOPERM")
            assert admin.call("ACL", "SETUSER", "bob", "on", ">b", "~b:*", "+@all") == b"+OK\r\n"
            assert admin.call("ACL", "SAVE") == b"+OK\r\n"
            saved = aclfile.read_text().splitlines()
            assert saved[0] == "user alice on #ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb " \
                               "~a:* resetchannels -@all +get", saved
            assert saved[1].startswith("user bob on #") and saved[1].endswith(" ~b:* resetchannels +@all")
            assert saved[2] == "user default on nopass ~* &* +@all"
            before = admin.call("ACL", "LIST")

            # A broken file changes nothing.
            aclfile.write_text("user carol on >c +@all\nuser carol on\nuser dave +nosuchcommand\n# comment\n")
            r = admin.call("ACL", "LOAD")
            assert r.startswith(b"-ERR ") and r.endswith(
                b"WARNING: ACL errors detected, no change to the previously active ACL rules was performed\r\n"), r
            assert b"Duplicate user 'carol' found on line 2" in r
            assert b"Unknown command or category name in ACL" in r
            assert b"should start with user keyword" in r
            assert admin.call("ACL", "LIST") == before
            assert alice.call("GET", "a:2") == b"$-1\r\n"

            # A good file replaces the users; clients of replaced users are closed.
            aclfile.write_text("\n".join(saved[:2]) + "\nuser carol on >c ~* +@all\n"
                               "user sel on nopass -@all (~s:* resetchannels -@all +get) (&c +publish)\n")
            assert admin.call("ACL", "LOAD") == b"+OK\r\n"
            assert parse_reply(admin.call("ACL", "USERS")) == [b"alice", b"bob", b"carol", b"default", b"sel"]
            assert admin.call("ACL", "DRYRUN", "sel", "get", "s:1") == b"+OK\r\n"
            assert admin.call("ACL", "DRYRUN", "sel", "publish", "c", "m") == b"+OK\r\n"
            assert admin.call("ACL", "DRYRUN", "sel", "set", "s:1", "v").startswith(b"$")
            aclfile.write_text("user sel on (~x +get\n")
            r = admin.call("ACL", "LOAD")
            assert b"Unmatched parenthesis in selector definition." in r, r
            with pytest.raises((harness.ConnectionClosed, OSError)):
                alice.call("GET", "a:2")
            assert admin.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"
        with p.connect() as c:
            assert c.call("AUTH", "carol", "c") == b"+OK\r\n"
            assert c.call("AUTH", "alice", "a") == b"+OK\r\n"


def test_acl_load_missing_file_error(store, tmp_path):
    if target_is_store():
        pytest.skip("needs the proxy")
    aclfile = tmp_path / "u.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\n")
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "p"), extra_args=["--aclfile", str(aclfile)])
    with _running(p):
        os.unlink(str(aclfile))
        with p.connect() as c:
            assert c.call("ACL", "LOAD") == (
                "-ERR Error loading ACLs, opening file '%s': No such file or directory\r\n" % aclfile).encode()


def test_users_and_aclfile_together_refused(tmp_path):
    if target_is_store():
        pytest.skip("needs the proxy")
    conf = _write(tmp_path / "c.conf", "user a on +@all\naclfile %s\n" % (tmp_path / "x.acl"))
    (tmp_path / "x.acl").write_text("")
    r = subprocess.run([proxy_binary(), conf, "--port", "0", "--unixsocket", str(tmp_path / "s")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert r.returncode != 0
    assert b"aclfile" in r.stderr, r.stderr


@pytest.mark.parametrize("line, why", [
    ("user a on +@all ~x allkeys ~y", "Adding a pattern after the * pattern"),
    ("user a #nothex", "The password hash must be exactly 64 characters"),
    ("user a on\nuser a off", "Duplicate user found"),
    ("user a foo", "Syntax error"),
])
def test_bad_user_directive_stops_start(tmp_path, line, why):
    if target_is_store():
        pytest.skip("needs the proxy")
    conf = _write(tmp_path / "c.conf", line + "\n")
    r = subprocess.run([proxy_binary(), "--test-config", conf], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    assert r.returncode != 0
    assert why.encode() in r.stderr, r.stderr


def test_config_rewrite_keeps_users(store, tmp_path):
    if target_is_store():
        pytest.skip("needs the proxy")
    conf = tmp_path / "c.conf"
    conf.write_text("timeout 0\nuser a on >x ~a:* +@all\n")
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "p"))
    p.args.insert(1, str(conf))
    with _running(p):
        with p.connect() as c:
            assert c.call("ACL", "SETUSER", "b", "on", "nopass", "+get") == b"+OK\r\n"
            assert c.call("ACL", "SETUSER", "c", "on", "nopass", "(~c:* +set)") == b"+OK\r\n"
            assert c.call("CONFIG", "REWRITE") == b"+OK\r\n"
    lines = conf.read_text().splitlines()
    users = [l for l in lines if l.startswith("user ")]
    assert users[0].startswith("user a on #") and users[0].endswith(" ~a:* resetchannels +@all"), users
    assert users[1] == "user b on nopass resetchannels -@all +get", users
    assert users[2] == "user c on nopass resetchannels -@all (~c:* resetchannels -@all +set)", users
    assert users[3] == "user default on nopass ~* &* +@all", users
    # ... and the rewritten file starts the proxy with the same users.
    r = subprocess.run([proxy_binary(), "--test-config", str(conf)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    assert r.returncode == 0, r.stderr


def _subscriber_fates(ep, new_rules):
    """Two subscribers of one user; the user's channels change. Which of
    them keeps its connection?"""
    with ep.connect() as admin:
        assert admin.call("ACL", "SETUSER", "sub", "reset", "on", ">s", "~*", "&a*", "&b*", "+@all") == b"+OK\r\n"
        with ep.connect() as sa, ep.connect() as sb:
            for c, ch in ((sa, "a1"), (sb, "b1")):
                assert c.call("AUTH", "sub", "s") == b"+OK\r\n"
                assert c.call("SUBSCRIBE", ch).startswith(b"*3\r\n$9\r\nsubscribe")
            assert admin.call("ACL", "SETUSER", "sub", *new_rules) == b"+OK\r\n"
            fates = []
            for c in (sa, sb):
                try:
                    fates.append(c.call("PING"))
                except (harness.ConnectionClosed, OSError):
                    fates.append("closed")
        assert admin.call("ACL", "DELUSER", "sub") == b":1\r\n"
    return fates


@pytest.mark.parametrize("rules", [
    ("resetchannels", "&a*"), ("resetchannels", "&b1"), ("allchannels",), ("&c*",),
    ("resetchannels",), ("resetchannels", "&a*", "&b*", "&c"),
], ids=lambda r: " ".join(r))
def test_revoked_channels_close_subscribers(pair, rules):
    fates = _subscriber_fates(pair.oracle, rules)
    assert fates == _subscriber_fates(pair.proxy, rules)


def _exec_after_rules_change(ep, queued, new_rules):
    with ep.connect() as admin, ep.connect() as c:
        assert admin.call("ACL", "SETUSER", "ex", "reset", "on", ">e", "~k*", "&c*", "+@all") == b"+OK\r\n"
        assert c.call("AUTH", "ex", "e") == b"+OK\r\n"
        out = [c.call("MULTI")] + [c.call(*q) for q in queued]
        out.append(admin.call("ACL", "SETUSER", "ex", *new_rules))
        assert admin.call("ACL", "LOG", "RESET") == b"+OK\r\n"
        out.append(c.call("EXEC"))
        out.append(c.call("GET", "k2"))
        log = parse_reply(admin.call("ACL", "LOG"))
        out.append([e[:10] for e in log])
        assert admin.call("ACL", "DELUSER", "ex") == b":1\r\n"
    return out


@pytest.mark.parametrize("queued, rules", [
    ([("GET", "k1"), ("SET", "k2", "v"), ("GET", "k3"), ("PING",)], ("-get", "resetkeys", "~k3")),
    ([("SET", "k2", "v"), ("INCR", "k9")], ("-incr",)),
    ([("SET", "k2", "v"), ("GET", "k2")], ("+ping",)),
    ([("EVAL", "return redis.call('get', KEYS[1])", "1", "k1"), ("SET", "k2", "v")], ("-eval",)),
], ids=["mixed", "one", "unchanged", "script"])
def test_exec_checks_again_after_rules_change(pair, queued, rules):
    assert _exec_after_rules_change(pair.oracle, queued, rules) == \
        _exec_after_rules_change(pair.proxy, queued, rules)


# ---------------------------------------------------------------------------
# Functions obey the caller's rules as EVAL scripts do.

ACL_LIB = ("#!lua name=acllib\n"
           "redis.register_function('fset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\n"
           "redis.register_function('fget_other', function(keys) return redis.call('GET', 'other:key') end)\n"
           "redis.register_function('fpcall', function(keys) return redis.pcall('SET', keys[1], 'v') end)\n"
           "redis.register_function('fcheck', function(keys) return redis.acl_check_cmd('SET', keys[1], 'v') end)\n"
           "redis.register_function{function_name='fro', callback=function(keys) return redis.call('GET', keys[1]) end,"
           " flags={'no-writes'}}\n")

FCALLS = [
    ("FCALL", "fset", "1", "app:1", "v"),
    ("FCALL", "fset", "1", "other:1", "v"),
    ("FCALL", "fset", "1", "wo:1", "v"),
    ("FCALL", "fget_other", "0"),
    ("FCALL", "fpcall", "1", "other:2"),
    ("FCALL", "fpcall", "1", "app:2"),
    ("FCALL", "fcheck", "1", "app:3"),
    ("FCALL", "fcheck", "1", "other:3"),
    ("FCALL_RO", "fro", "1", "ro:1"),
    ("FCALL_RO", "fro", "1", "app:1"),
    ("FUNCTION", "STATS"),
    ("FUNCTION", "DELETE", "acllib"),
]


@pytest.mark.parametrize("user", RESTRICTED + ["free"])
@pytest.mark.parametrize("cmd", FCALLS, ids=lambda c: " ".join(c)[:40])
def test_functions_obey_the_callers_acl(pair, user, cmd):
    for ep in (pair.oracle, pair.proxy):
        with ep.connect() as c:
            c.call("FUNCTION", "FLUSH")
            assert c.call("FUNCTION", "LOAD", ACL_LIB) == b"$6\r\nacllib\r\n"
    try:
        login = ("AUTH", user, "x") if user == "free" else auth(user)
        pair.run([login, cmd])
    finally:
        for ep in (pair.oracle, pair.proxy):
            with ep.connect() as c:
                c.call("FUNCTION", "FLUSH")


# ---------------------------------------------------------------------------
# SORT with BY <pattern> or GET reads keys its arguments do not name: Redis
# 7.0 allows it only with read access to every key, from clients, scripts
# and transactions alike, and parses the options in order first.

SORT_CALLS = [
    ("SORT", "app:l"), ("SORT", "app:l", "BY", "app:w_*"), ("SORT", "app:l", "BY", "nosort"),
    ("SORT", "app:l", "GET", "#"), ("SORT", "app:l", "GET", "app:*"), ("SORT_RO", "app:l", "GET", "app:*"),
    ("SORT_RO", "app:l", "BY", "app:*"), ("SORT", "app:l", "LIMIT", "x", "1", "BY", "app:*"),
    ("SORT", "app:l", "BY", "app:*", "LIMIT", "x", "1"), ("SORT", "app:l", "FOO", "BY", "app:*"),
    ("SORT", "app:l", "DESC", "LIMIT", "0", "1", "GET", "#"), ("SORT", "app:l", "ALPHA", "BY", "k", "GET", "#"),
    ("SORT", "other", "BY", "app:*"), ("SORT", "app:l", "STORE", "other"),
    ("SORT", "app:l", "BY", "app:*", "STORE", "app:z"), ("SORT_RO", "app:l", "STORE", "app:x", "BY", "app:*"),
    ("SORT", "app:l", "BY"), ("SORT", "app:l", "GET"),
    ("EVAL", "return redis.pcall('SORT', KEYS[1], 'BY', 'app:*')", "1", "app:l"),
    ("EVAL", "return redis.pcall('SORT_RO', KEYS[1], 'GET', '#')", "1", "app:l"),
    ("EVAL", "return redis.pcall('SORT', KEYS[1], 'BY', 'c')", "1", "app:l"),
    ("EVAL_RO", "return redis.pcall('SORT', KEYS[1], 'BY', 'app:*', 'STORE', 'app:d')", "1", "app:l"),
    ("EVAL", "#!lua flags=no-writes\nreturn redis.pcall('SORT', KEYS[1], 'GET', '#', 'STORE', 'app:d')", "1",
     "app:l"),
    ("EVAL_RO", "return redis.pcall('SORT_RO', KEYS[1], 'GET', '#')", "1", "app:l"),
]


@pytest.mark.parametrize("rules", [
    ("~app:*",), ("~app:*", "%R~*"), ("%W~*", "~app:*"), ("~app:*", "(~* +sort)"), ("~app:*", "(~* +sort_ro)"),
    ("~*",), ("allkeys",), ("~app:*", "(%R~* +@all)"), ("~app:*", "(~* -sort)"),
], ids=lambda r: " ".join(r))
def test_sort_by_get_need_full_key_access(pair, rules):
    steps = [("AUTH", "sorter", "p"), ("RPUSH", "app:l", "2", "1")]
    steps += list(SORT_CALLS)
    steps += [("MULTI",)] + list(SORT_CALLS[:8]) + [("EXEC",)]
    for ep in (pair.oracle, pair.proxy):
        with ep.connect() as admin:
            assert admin.call("ACL", "SETUSER", "sorter", "reset", "on", ">p", "+@all", *rules) == b"+OK\r\n"
    try:
        pair.run(steps)
    finally:
        for ep in (pair.oracle, pair.proxy):
            with ep.connect() as admin:
                admin.call("ACL", "DELUSER", "sorter")
