"""Authentication and ACL changes seen by connected clients, against a
redis-server 7.0 oracle on both kinds of store: passwords with NUL and other
bytes (AUTH, HELLO AUTH, ACL SETUSER, CONFIG SET requirepass), and which
connections survive CONFIG SET requirepass, ACL SETUSER and ACL DELUSER
(Redis 7.0 closes the clients of a deleted user and subscribers whose
channels were revoked, and nothing else)."""

import re

import pytest

import harness
from test_patterns import sides, Sides, mc_env  # noqa: F401  (fixtures)

PW = b"a\x00b\xff\r\n c"


def _normalize(raw):
    if isinstance(raw, bytes):
        return re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"$2\r\nid\r\n:N\r\n", raw)
    return raw


def run_script(ep, steps):
    """steps: (connection name, command) or (name, "FATE"): PING on that
    connection, answered or closed. The replies in order."""
    conns, out = {}, []
    keeper = ep.connect()  # authenticated now, so it can put things back
    try:
        for who, cmd in steps:
            if who not in conns:
                conns[who] = ep.connect()
            c = conns[who]
            if c is None:
                out.append("closed before")
                continue
            try:
                if cmd == "FATE":
                    out.append(c.call("PING"))
                else:
                    out.append(_normalize(c.call(*cmd)))
            except (harness.ConnectionClosed, OSError):
                out.append("closed")
                conns[who].close()
                conns[who] = None
    finally:
        for c in conns.values():
            if c is not None:
                c.close()
        with keeper:
            assert keeper.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"
            keeper.call("ACL", "DELUSER", "bin", "sub", "other", "u")
            assert keeper.call("ACL", "SETUSER", "default", "on", "nopass", "~*", "&*", "+@all") == b"+OK\r\n"
    return out


def compare(pair, steps):
    e, a = run_script(pair[0], steps), run_script(pair[1], steps)
    bad = ["%d %r: oracle %r proxy %r" % (i, steps[i], x, y) for i, (x, y) in enumerate(zip(e, a)) if x != y]
    assert not bad and len(e) == len(a), "\n".join(bad)


BINARY_STEPS = [
    ("a", ("ACL", "SETUSER", "bin", "reset", "on", b">" + PW, "+@all", "~*")),
    ("a", ("ACL", "GETUSER", "bin")),
    ("c", ("AUTH", "bin", PW)), ("c", ("ACL", "WHOAMI")),
    ("d", ("AUTH", "bin", b"a")), ("d", ("AUTH", "bin", b"a\x00b")), ("d", ("HELLO", "2", "AUTH", "bin", PW)),
    ("e", ("HELLO", "3", "AUTH", "bin", b"a\x00")), ("e", ("AUTH", "bin", PW + b"\x00")),
    ("a", ("ACL", "SETUSER", "bin", b"<" + PW)), ("a", ("ACL", "SETUSER", "bin", b"<" + PW)),
    ("a", ("ACL", "SETUSER", "bin", b">x y")), ("f", ("AUTH", "bin", "x y")),
    ("a", ("ACL", "SETUSER", "bin", b"#" + b"a" * 64)), ("a", ("ACL", "SETUSER", "bin", b"#" + b"A" * 64)),
    ("a", ("ACL", "SETUSER", "bin", b"#zz")), ("a", ("ACL", "SETUSER", "bin", b"!" + b"a" * 64)),
    ("a", ("ACL", "SETUSER", b"bi\x00n", "on")), ("a", ("ACL", "SETUSER", b"b in", "on")),
    ("a", ("ACL", "SETUSER", "bin", "nopass")), ("g", ("AUTH", "bin", "anything")),
    ("a", ("ACL", "SETUSER", "bin", "resetpass")), ("h", ("AUTH", "bin", "anything")),
    ("a", ("CONFIG", "SET", "requirepass", PW)), ("a", ("CONFIG", "GET", "requirepass")),
    ("i", ("PING",)), ("i", ("AUTH", PW)), ("j", ("AUTH", "default", PW)), ("k", ("AUTH", "a")),
    ("l", ("HELLO", "2", "AUTH", "default", PW)), ("m", ("AUTH", b"a\x00b")),
    ("a", ("PING",)), ("c", ("PING",)),
    ("a", ("CONFIG", "SET", "requirepass", b"\x00")), ("a", ("CONFIG", "GET", "requirepass")),
    ("n", ("AUTH", b"\x00")), ("o", ("PING",)),
    ("a", ("CONFIG", "SET", "requirepass", "")), ("p", ("PING",)), ("a", ("ACL", "GETUSER", "default")),
    ("a", ("ACL", "DELUSER", "bin")), ("c", "FATE"), ("a", "FATE"),
]


def test_binary_passwords(sides):
    compare(sides, BINARY_STEPS)


def _fate_steps(change):
    """Clients of user `sub` (subscribed to a channel, a pattern, a shard
    channel, or to nothing), of user `other` and of the default user; then
    `change`; then who is still connected."""
    setup = [
        ("adm", ("ACL", "SETUSER", "sub", "reset", "on", ">s", "~*", "&a*", "&b*", "+@all")),
        ("adm", ("ACL", "SETUSER", "other", "reset", "on", ">o", "~*", "&a*", "+@all")),
        ("s1", ("AUTH", "sub", "s")), ("s1", ("SUBSCRIBE", "a1")),
        ("s2", ("AUTH", "sub", "s")), ("s2", ("PSUBSCRIBE", "a*")),
        ("s3", ("AUTH", "sub", "s")), ("s3", ("SSUBSCRIBE", "b1")),
        ("s4", ("AUTH", "sub", "s")), ("s4", ("SUBSCRIBE", "b2")),
        ("p", ("AUTH", "sub", "s")),
        ("o", ("AUTH", "other", "o")), ("o", ("SUBSCRIBE", "a1")),
        ("d", ("PING",)),
    ]
    return setup + [("adm", c) for c in change] + [
        (w, "FATE") for w in ("s1", "s2", "s3", "s4", "p", "o", "d", "adm")] + [
        ("new", ("PING",)), ("new2", ("AUTH", "sub", "s"))]


CHANGES = {
    "resetchannels": [("ACL", "SETUSER", "sub", "resetchannels")],
    "keep-a": [("ACL", "SETUSER", "sub", "resetchannels", "&a*")],
    "keep-a1-only": [("ACL", "SETUSER", "sub", "resetchannels", "&a1", "&b*")],
    "allchannels": [("ACL", "SETUSER", "sub", "allchannels")],
    "add-channel": [("ACL", "SETUSER", "sub", "&c")],
    "selector-keeps": [("ACL", "SETUSER", "sub", "resetchannels", "(&a* &b* +@all)")],
    "reset": [("ACL", "SETUSER", "sub", "reset")],
    "off": [("ACL", "SETUSER", "sub", "off")],
    "resetpass": [("ACL", "SETUSER", "sub", "resetpass")],
    "nopass": [("ACL", "SETUSER", "sub", "nopass")],
    "new-password": [("ACL", "SETUSER", "sub", "resetpass", ">t")],
    "less-commands": [("ACL", "SETUSER", "sub", "-@all")],
    "resetkeys": [("ACL", "SETUSER", "sub", "resetkeys")],
    "deluser": [("ACL", "DELUSER", "sub")],
    "deluser-other": [("ACL", "DELUSER", "other", "nosuch")],
    "requirepass": [("CONFIG", "SET", "requirepass", "pw")],
    "default-off": [("ACL", "SETUSER", "default", "off")],
    "default-resetpass": [("ACL", "SETUSER", "default", "resetpass")],
    "default-resetchannels": [("ACL", "SETUSER", "default", "resetchannels")],
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_connected_clients_after_changes(sides, change):
    compare(sides, _fate_steps(CHANGES[change]))


def test_reset_keeps_authentication_like_redis(sides):
    """RESET goes back to the default user: authenticated when that user
    needs no password at the time, as Redis's clientSetDefaultAuth."""
    steps = [("c", ("PING",)), ("a", ("ACL", "SETUSER", "u", "on", ">p", "+@all", "~*")),
             ("c", ("AUTH", "u", "p")), ("c", ("RESET",)), ("c", ("ACL", "WHOAMI")),
             ("a", ("CONFIG", "SET", "requirepass", "pw")), ("c", ("PING",)), ("c", ("RESET",)),
             ("c", ("PING",)), ("c", ("AUTH", "pw")), ("c", ("PING",)), ("a", ("ACL", "DELUSER", "u"))]
    compare(sides, steps)
