"""RESP3 protocol parsing as Redis's own scripting suite checks it: DEBUG
PROTOCOL's sample replies of every type, to RESP2 and RESP3 clients,
directly and through scripts in either redis.setresp mode (with DEBUG
SET-DISABLE-DENY-SCRIPTS), and "Script with RESP3 map"; byte for byte
against a redis-server 7.0 with the debug command enabled."""

import pytest

import harness
from harness import encode_command as E

TYPES = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push", "verbatim",
         "true", "false", "bogus"]


@pytest.fixture(scope="module")
def debug_oracle(tmp_path_factory):
    s = harness.RedisServer("oracle-debug", str(tmp_path_factory.mktemp("oracle-debug")),
                            extra=("enable-debug-command yes",))
    s.start()
    yield s
    s.stop()


def transcript(ep):
    out = []
    with ep.connect() as c:
        assert c.call("DEBUG", "SET-DISABLE-DENY-SCRIPTS", "1") == b"+OK\r\n"
        try:
            for client_proto in ("2", "3"):
                c.send(E("HELLO", client_proto))
                c.read_replies(1)
                for t in TYPES:
                    # a push is followed by a real reply
                    c.send(E("DEBUG", "PROTOCOL", t))
                    n = 2 if t == "push" and client_proto == "3" else 1
                    out.append(("direct", client_proto, t, b"".join(c.read_replies(n))))
                for script_proto in ("2", "3"):
                    for t in TYPES:
                        if t == "push":
                            continue
                        body = "redis.setresp(%s); return redis.call('debug', 'protocol', '%s')" % (script_proto, t)
                        out.append(("script", client_proto, script_proto, t, c.call("EVAL", body, "0")))
            # Script with RESP3 map (Redis's scripting suite).
            c.call("HSET", "hash", "field", "value")
            for client_proto in ("3", "2"):
                c.send(E("HELLO", client_proto))
                c.read_replies(1)
                for script_proto in ("3", "2"):
                    body = "redis.setresp(%s); return redis.call('hgetall', KEYS[1])" % script_proto
                    out.append(("map", client_proto, script_proto, c.call("EVAL", body, "1", "hash")))
                out.append(("hgetall", client_proto, c.call("HGETALL", "hash")))
            c.call("DEL", "hash")
        finally:
            c.send(E("HELLO", "2"))
            c.read_replies(1)
            assert c.call("DEBUG", "SET-DISABLE-DENY-SCRIPTS", "0") == b"+OK\r\n"
    return out


def test_protocol_parsing_as_redis(debug_oracle, proxy):
    want = transcript(debug_oracle)
    got = transcript(proxy)
    bad = ["%r\n  oracle: %r\n  proxy:  %r" % (w[:-1], w[-1], g[-1]) for w, g in zip(want, got) if w != g]
    assert not bad, "\n".join(bad)
    assert len(want) == len(got) == 2 * (len(TYPES) + 2 * (len(TYPES) - 1)) + 6


def test_scripts_refuse_noscript_commands_again(proxy):
    with proxy.connect() as c:
        r = c.call("EVAL", "return redis.call('debug', 'protocol', 'string')", "0")
        assert r.startswith(b"-ERR This Redis command is not allowed from script"), r
