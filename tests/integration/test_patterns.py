"""Glob patterns the proxy matches itself, against a redis-server 7.0 oracle:
ACL key and channel patterns, PUBSUB CHANNELS and PSUBSCRIBE on a store
without pub/sub, KEYS and SCAN MATCH on memcached, CONFIG GET, FUNCTION LIST
LIBRARYNAME and COMMAND LIST FILTERBY PATTERN. Hostile patterns (the
CVE-2022-36021 and CVE-2024-31228 kinds) must answer as fast as Redis does
and the same; random pattern/string pairs must match exactly as Redis's
stringmatchlen, escapes, ranges on bytes >= 0x80 and nocase included."""

import random

import pytest

import harness
from harness import encode_command, parse_reply, split_top_level
from conftest import target_is_store
from test_memcached import mc_env  # noqa: F401  (the memcached store fixture)


@pytest.fixture(params=["redis", "memcached"])
def sides(request, oracle, proxy):
    """(oracle, proxy) with both flushed, for each kind of store."""
    if request.param == "redis":
        if target_is_store():
            pytest.skip("EVALPROXY_TARGET=store: the proxy's own matching")
        pair = (oracle, proxy)
    else:
        _, mc_oracle, mc_proxy = request.getfixturevalue("mc_env")
        pair = (mc_oracle, mc_proxy)
    harness.Differ(*pair).flushall()
    return Sides(pair, request.param)


class Sides(tuple):
    def __new__(cls, pair, kind):
        t = super().__new__(cls, pair)
        t.kind = kind
        return t


def pipeline(ep, commands, conn=None):
    """Every command in one write; the raw replies."""
    own = conn is None
    c = ep.connect(timeout=120) if own else conn
    try:
        c.send(b"".join(encode_command(*cmd) for cmd in commands))
        return c.read_replies(len(commands))
    finally:
        if own:
            c.close()


def unordered(raw):
    """An aggregate reply with its elements sorted (hash order differs)."""
    if raw[:1] not in (b"*", b"%"):
        return raw
    head, items = split_top_level(raw)
    return head + b"".join(sorted(items))


def compare(commands, o_replies, p_replies, normalize=unordered):
    bad = []
    for cmd, e, a in zip(commands, o_replies, p_replies):
        if normalize(e) != normalize(a):
            bad.append("%r\n    oracle: %r\n    proxy:  %r" % (cmd, e[:300], a[:300]))
    assert not bad, "%d of %d replies differ:\n%s" % (len(bad), len(commands), "\n".join(bad[:15]))


LONG = b"a" * 200
HOSTILE = [
    b"a*" * 12 + b"b",
    b"*a" * 30 + b"b",
    b"*?" * 5000,
    b"*" + b"a*" * 2000 + b"b",
    b"a" * 150 + b"*" * 300 + b"?" * 100,
    b"[a-" + b"*a" * 40,
    b"*\\*" * 40,
    b"*[a]" * 50 + b"[b]",
]


def _acl_dryrun_steps(patterns, strings):
    cmds = []
    for pat in patterns:
        cmds.append((b"ACL", b"SETUSER", b"globber", b"reset", b"on", b"nopass", b"+@all", b"~" + pat, b"&" + pat))
        for s in strings:
            cmds.append((b"ACL", b"DRYRUN", b"globber", b"GET", s))
            cmds.append((b"ACL", b"DRYRUN", b"globber", b"PUBLISH", s, b"m"))
    cmds.append((b"ACL", b"DELUSER", b"globber"))
    return cmds


def test_hostile_acl_patterns(sides):
    """An ACL pattern with many stars checked against a long key or channel:
    Redis answers at once; a matcher without its bounds runs for ages."""
    strings = [LONG, LONG + b"c", b"a" * 60 + b"b", b"b"]
    cmds = _acl_dryrun_steps(HOSTILE, strings)
    compare(cmds, pipeline(sides[0], cmds), pipeline(sides[1], cmds))


def test_hostile_patterns_as_user(sides):
    """The same patterns checked on real commands of a connected user."""
    oracle, proxy = sides
    out = []
    for ep in (oracle, proxy):
        res = []
        with ep.connect() as admin, ep.connect() as c:
            for pat in HOSTILE[:4]:
                assert admin.call("ACL", "SETUSER", "hostile", "reset", "on", ">pw", "+@all",
                                  b"~" + pat, b"&" + pat) == b"+OK\r\n"
                assert c.call("AUTH", "hostile", "pw") == b"+OK\r\n"
                res.append(c.call("GET", LONG))
                res.append(c.call("PUBLISH", LONG, "m"))
                res.append(c.call("AUTH", "default", "x"))
            admin.call("ACL", "DELUSER", "hostile")
        out.append(res)
    assert out[0] == out[1]


def test_hostile_keyspace_and_channel_patterns(sides):
    oracle, proxy = sides
    cmds = []
    for pat in HOSTILE:
        cmds += [(b"KEYS", pat), (b"SCAN", b"0", b"MATCH", pat, b"COUNT", b"1000"), (b"PUBSUB", b"CHANNELS", pat),
                 (b"PUBSUB", b"SHARDCHANNELS", pat), (b"CONFIG", b"GET", pat),
                 (b"FUNCTION", b"LIST", b"LIBRARYNAME", pat), (b"COMMAND", b"LIST", b"FILTERBY", b"PATTERN", pat)]
    replies = []
    for ep in (oracle, proxy):
        with ep.connect() as sub, ep.connect() as setup:
            assert setup.call("SET", LONG, "v") == b"+OK\r\n"
            assert setup.call("SET", b"a" * 60 + b"b", "v") == b"+OK\r\n"
            sub.send_command("SUBSCRIBE", LONG, b"a" * 60 + b"b")
            sub.read_replies(2)
            replies.append(pipeline(ep, cmds))
            # PSUBSCRIBE with a hostile pattern, then a message on a long channel.
            psub = ep.connect()
            psub.send_command("PSUBSCRIBE", *HOSTILE)
            psub.read_replies(len(HOSTILE))
            setup.call("PUBLISH", LONG, "hello")
            replies[-1].append(setup.call("PUBLISH", b"a" * 61 + b"b", "hi"))
            psub.send_command("PING")
            got = []
            while not got or not got[-1].startswith(b"*2\r\n$4\r\npong"):
                got.append(psub.read_reply())
            replies[-1].append(b"".join(sorted(got)))  # patterns deliver in hash order
            psub.close()
    compare(cmds + ["PUBLISH", "PING"], replies[0], replies[1])


def rand_bytes(rnd, alphabet, lo, hi):
    return bytes(rnd.choice(alphabet) for _ in range(rnd.randint(lo, hi)))


PAT_ALPHA = b"ab*?[]^-\\A\xe9\xff"
STR_ALPHA = b"abAB-]^\\*\xe9\xff"


def random_pairs(seed, npat, nstr):
    rnd = random.Random(seed)
    pats = [rand_bytes(rnd, PAT_ALPHA, 0, 8) for _ in range(npat)]
    strs = sorted({rand_bytes(rnd, STR_ALPHA, 1, 6) for _ in range(nstr)})
    return pats, strs


def test_random_patterns_acl(sides):
    """300 random patterns x 12 strings as key and channel patterns (7200
    checks) through ACL DRYRUN."""
    pats, strs = random_pairs(7, 300, 12)
    cmds = _acl_dryrun_steps(pats, strs)
    compare(cmds, pipeline(sides[0], cmds), pipeline(sides[1], cmds))


def test_random_patterns_keyspace(sides):
    """1000 random patterns against 40 keys and the empty key with KEYS and
    SCAN MATCH (the memcached store matches them in the proxy)."""
    pats, strs = random_pairs(11, 1000, 40)
    pats += [b"*", b"**", b"?*", b"*?", b""]  # the empty key: only a lone * lists it
    strs.append(b"")
    setup = [(b"SET", s, b"v") for s in strs]
    cmds = []
    for p in pats:
        cmds += [(b"KEYS", p), (b"SCAN", b"0", b"MATCH", p, b"COUNT", b"1000")]
    out = []
    for ep in sides:
        assert set(pipeline(ep, setup)) == {b"+OK\r\n"}
        out.append(pipeline(ep, cmds))

    def norm(raw):
        if raw.startswith(b"*2\r\n$1\r\n0\r\n"):  # SCAN: sort the key list
            head, items = split_top_level(raw)
            return head + items[0] + unordered(items[1])
        return unordered(raw)
    compare(cmds, out[0], out[1], norm)


def test_random_patterns_pubsub(sides):
    """1000 random patterns against 40 channels with PUBSUB CHANNELS, and
    100 PSUBSCRIBE patterns receiving a message on each channel."""
    pats, strs = random_pairs(13, 1000, 40)
    cmds = [(b"PUBSUB", b"CHANNELS", p) for p in pats]
    out = []
    for ep in sides:
        with ep.connect() as sub, ep.connect() as pub, ep.connect() as psub:
            sub.send(encode_command(b"SUBSCRIBE", *strs))
            sub.read_replies(len(strs))
            res = pipeline(ep, cmds)
            psub.send(encode_command(b"PSUBSCRIBE", *pats[:100]))
            psub.read_replies(100)
            counts = pipeline(ep, [(b"PUBLISH", s, b"m") for s in strs], conn=pub)
            res += counts
            total = sum(parse_reply(c) for c in counts) - len(strs)
            got = sorted(psub.read_replies(total))
            assert psub.call("PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
            res.append(b"".join(got))
            out.append(res)
    compare(cmds + ["PUBLISH"] * len(strs) + ["pmessages"], out[0], out[1])


LIB_NAMES = ["a", "A", "ab", "aB", "Ab", "b_1", "B_2", "a_b", "x9", "abc", "ABC", "z", "_a", "b", "ba"]


def test_random_nocase_patterns(sides):
    """FUNCTION LIST LIBRARYNAME, CONFIG GET and COMMAND LIST FILTERBY
    PATTERN match without case: 1000 random patterns each over library
    names, and 200 over command and directive names."""
    rnd = random.Random(17)
    alpha = b"abAB_1*?[]^-\\zZ"
    lib_pats = [rand_bytes(rnd, alpha, 0, 6) for _ in range(1000)]
    name_alpha = b"acegikmoprstxACEGT-|*?[]^\\"
    name_pats = [rand_bytes(rnd, name_alpha, 1, 6) + rnd.choice([b"*", b""]) for _ in range(200)]
    loads = [(b"FUNCTION", b"LOAD", ("#!lua name=%s\nredis.register_function('f%d', function() return 1 end)"
                                     % (n, i)).encode()) for i, n in enumerate(LIB_NAMES)]
    cmds = [(b"FUNCTION", b"LIST", b"LIBRARYNAME", p) for p in lib_pats]
    cmds += [(b"COMMAND", b"LIST", b"FILTERBY", b"PATTERN", p) for p in name_pats]
    cmds += [(b"CONFIG", b"GET", p) for p in name_pats if p.lower().startswith((b"p", b"b", b"m", b"a"))]
    out = []
    for ep in sides:
        with ep.connect() as c:
            c.call("FUNCTION", "FLUSH")
            assert all(r.startswith(b"$") for r in pipeline(ep, loads, conn=c))
            out.append(pipeline(ep, cmds, conn=c))
            c.call("FUNCTION", "FLUSH")

    o, p = out
    n_plain = 1000 + len(name_pats)
    compare(cmds[:n_plain], o[:n_plain], p[:n_plain])
    # CONFIG GET: the names reported (values such as the port differ). A
    # memcached store has none of Redis's own directives to report.
    # The proxy's own directives (pools, ...) are its to report besides.
    names = []
    for ep in sides:
        with ep.connect() as c:
            names.append(set(parse_reply(c.call("CONFIG", "GET", "*"))[::2]))
    own = names[1] - names[0]
    bad = []
    for cmd, e, a in zip(cmds[n_plain:], o[n_plain:], p[n_plain:]):
        en, an = sorted(parse_reply(e)[::2]), sorted(n for n in parse_reply(a)[::2] if n not in own)
        if sides.kind == "memcached":
            en = [n for n in en if n in an]  # the proxy's own directives only
        if en != an or not set(an) <= set(parse_reply(e)[::2]):
            bad.append("%r oracle %r proxy %r" % (cmd, en, an))
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize("args", [
    ("CONFIG", "GET", "MAXCLIENTS"), ("CONFIG", "GET", "MaxClients", "maxclients", "max*clients"),
    ("CONFIG", "GET", "maxclient\\s"), ("CONFIG", "GET", "maxclient\\s*"), ("CONFIG", "GET", "PORT", "po*"),
    ("CONFIG", "GET", b"maxclients\x00x"), ("CONFIG", "GET", b"maxc*\x00zz"), ("CONFIG", "GET", b"max\x00*"),
    ("CONFIG", "GET", "LUA-TIME-LIMIT"), ("CONFIG", "GET", "Busy-Reply-Threshold", "lua-time-limit"),
], ids=lambda a: repr(a[2:])[:40])
def test_config_get_names_as_redis(sides, args):
    """A name without glob characters is answered as typed; a pattern is read
    up to its first NUL byte; names are collected without case."""
    oracle, proxy = sides
    with oracle.connect() as o, proxy.connect() as p:
        e, a = sorted(parse_reply(o.call(*args))[::2]), sorted(parse_reply(p.call(*args))[::2])
    if sides.kind == "memcached":
        assert set(a) <= set(e)
        e = [n for n in e if n in a]  # no store directives on memcached
    assert e == a
