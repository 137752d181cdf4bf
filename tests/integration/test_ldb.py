"""The Lua debugger: SCRIPT DEBUG YES|SYNC|NO and Redis 7.0's LDB protocol.

Transcripts: the same stdin-scripted `redis-cli --ldb --eval` (fork mode)
and `redis-cli --ldb-sync-mode --eval` sessions run against the oracle
(redis-server 7.0) and the proxy; redis-cli's output must be identical.
Then what only the proxy can be asked: YES sessions work on private copies
(the store is unchanged, another client writing the same key is not
blocked and does not see the session's writes), SYNC sessions hold their
keys and keep their writes, a client that goes mid-session leaves no lock
and no private key behind, and lua-debug-sessions-max bounds YES sessions.
"""

import os
import subprocess
import tempfile
import time

import pytest

from harness import RespConnection, ReplyTimeout, ConnectionClosed

REDIS_CLI = "/usr/bin/redis-cli"

STEPPING = """\
local function add(x, y)
  local s = x + y
  return s
end
local n = add(1, 2)
redis.call('set', KEYS[1], ARGV[1])
local long = string.rep('x', 300)
redis.call('set', KEYS[1] .. ':long', long)
redis.call('get', KEYS[1] .. ':long')
redis.debug('n is', n, {1, 'two', {x = 3}})
return n
"""

STEPPING_INPUT = """\
help
step
step
step
trace
print
print x
print nosuch
print KEYS
print ARGV
list 3 1
list
whole
break 9
break
break -9
break -9
break 9
break 10
break 99
break abc
break 0
break
break 9
continue
eval n * 2
eval local z = 1
eval syntax error here
eval error('boom')
redis get mykey
redis incr mykey
redis nosuchcommand x
redis get
redis set a b c d e f g h i j k l m
redis
maxlen
maxlen 0
redis get mykey:long
maxlen 100
redis get mykey:long
maxlen 10
nosuchcommand
s
n
c
"""

BREAKPOINTS = """\
local t = {}
for i = 1, 3 do
  t[i] = i * 10
  redis.breakpoint()
end
redis.call('rpush', KEYS[1], unpack(t))
return redis.call('lrange', KEYS[1], 0, -1)
"""

BREAKPOINTS_INPUT = """\
continue
print
print t
continue
continue
step
continue
"""

FAILING = """\
local a = 'one'
local ok = redis.pcall('incr', KEYS[1])
redis.call('set', KEYS[1], 'x')
return redis.call('incr', KEYS[1])
"""

FAILING_INPUT = """\
step
print
step
step
step
step
"""

ABORTED = """\
redis.call('set', KEYS[1], 'before')
local x = 1
redis.call('set', KEYS[1], 'after')
return x
"""

ABORTED_INPUT = """\
step
step
abort
"""

TRIMMED = """\
local long = string.rep('abc', 200)
redis.call('set', KEYS[1], long)
local t = {long, {long}}
return #long
"""

TRIMMED_INPUT = """\
step
step
step
redis get big
print long
print t
redis get big
eval string.rep('y', 400)
maxlen 70
redis get big
continue
"""

TRANSCRIPTS = [
    ("trimmed", TRIMMED, ["big"], [], TRIMMED_INPUT),
    ("stepping", STEPPING, ["mykey"], ["val"], STEPPING_INPUT),
    ("breakpoints", BREAKPOINTS, ["list1"], [], BREAKPOINTS_INPUT),
    ("failing", FAILING, ["str"], [], FAILING_INPUT),
    ("aborted", ABORTED, ["k"], [], ABORTED_INPUT),
    ("syntax-error", "return +\n", [], [], "step\n"),
    ("runs-to-end", "return {1, 'two', redis.call('ping')}\n", [], [], "continue\n"),
    ("long-error", "local a = 1\nreturn a\n", [], [],
     "eval error(string.rep('x', 700))\neval ('\\n'):rep(3)\neval {1, nil, 3}\ncontinue\n"),
]


def flush(endpoint):
    with RespConnection(endpoint.host, endpoint.port) as c:
        assert c.call("FLUSHALL") == b"+OK\r\n"


def run_cli(endpoint, script_path, keys, args, stdin, sync):
    cmd = [REDIS_CLI, "-h", endpoint.host, "-p", str(endpoint.port),
           "--ldb-sync-mode" if sync else "--ldb", "--eval", script_path] + list(keys)
    if args:
        cmd += [","] + list(args)
    p = subprocess.run(cmd, input=stdin.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    return p.stdout.decode("utf-8", "replace")


def dump_keys(endpoint):
    out = {}
    with RespConnection(endpoint.host, endpoint.port) as c:
        keys = c.call("KEYS", "*")
        for line in keys.split(b"\r\n"):
            if line and not line.startswith((b"*", b"$")):
                out[line] = c.call("DUMP", line) is not None and c.call("TYPE", line)
    return out


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "fork"])
@pytest.mark.parametrize("name,body,keys,args,stdin", TRANSCRIPTS, ids=[t[0] for t in TRANSCRIPTS])
def test_transcript(oracle, proxy, store, sync, name, body, keys, args, stdin):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name + ".lua")
        with open(path, "w") as f:
            f.write(body)
        outputs, after = [], []
        for side in (oracle, proxy):
            flush(side)
            outputs.append(run_cli(side, path, keys, args, stdin, sync))
            after.append(dump_keys(side))
    assert outputs[0] == outputs[1]
    # Redis's own output, to be sure a session ran at all.
    assert "Lua debugging session started" in outputs[0]
    assert ("Lua debugging session ended" in outputs[0]) != (name == "syntax-error")
    assert after[0] == after[1]
    if body is ABORTED and sync:
        assert after[1]  # SYNC keeps what the script wrote before the abort
    if not sync:
        assert after[1] == {}  # YES: nothing of the session stays
        assert dump_keys(store) == {}


def raw(endpoint):
    return RespConnection(endpoint.host, endpoint.port)


def start_session(endpoint, mode, body, *keys_args, numkeys=1):
    c = raw(endpoint)
    assert c.call("SCRIPT", "DEBUG", mode) == b"+OK\r\n"
    first = c.call("EVAL", body, numkeys, *keys_args)
    assert b"Stopped at 1" in first
    return c


def read_all(c, timeout=5.0):
    return c.read_until_close(timeout=timeout)


def test_protocol_bytes_match(oracle, proxy):
    """The raw traffic of a session, end included, byte for byte."""
    body = "local a = 1\nredis.call('set', KEYS[1], ARGV[1])\nredis.debug('a', a)\nreturn redis.call('get', KEYS[1])\n"
    seen = []
    for side in (oracle, proxy):
        flush(side)
        c = start_session(side, "SYNC", body, "k", "v")
        got = [c.call("step"), c.call("print"), c.call("step"), c.call("redis", "get", "k"),
               c.call("eval", "return", "a", "+", "1")]
        c.send_command("continue")
        got.append(read_all(c))
        c.close()
        seen.append(got)
    assert seen[0] == seen[1]
    assert seen[1][-1].startswith(b"*2\r\n+<debug> line 3: \"a\", 1\r\n+<endsession>\r\n$1\r\nv")


def test_yes_session_is_private_and_blocks_nobody(real_proxy, store):
    flush(real_proxy)
    with raw(real_proxy) as other:
        assert other.call("SET", "shared", "before") == b"+OK\r\n"
        body = ("redis.call('set', KEYS[1], 'session')\n"
                "redis.call('set', 'undeclared', 'session')\n"
                "return {redis.call('get', KEYS[1]), redis.call('get', 'undeclared')}\n")
        c = start_session(real_proxy, "YES", body, "shared")
        assert b"Stopped at 2" in c.call("step")
        # The session wrote "shared": nobody else sees it, nobody waits.
        assert other.call("GET", "shared", timeout=2) == b"$6\r\nbefore\r\n"
        assert other.call("SET", "shared", "other", timeout=2) == b"+OK\r\n"
        assert b"Stopped at 3" in c.call("step")
        assert other.call("GET", "undeclared", timeout=2) == b"$-1\r\n"
        assert b"<reply> \"session\"" in c.call("redis", "get", "undeclared")
        # The whole keyspace is not the session's to change; nobody hears it publish.
        assert b"<error> this command reaches the whole keyspace" in c.call("redis", "flushall")
        assert b"<reply> 0" in c.call("redis", "publish", "chan", "hello")
        c.send_command("continue")
        end = read_all(c)
        c.close()
        assert end == b"*1\r\n+<endsession>\r\n*2\r\n$7\r\nsession\r\n$7\r\nsession\r\n"
        assert other.call("GET", "shared") == b"$5\r\nother\r\n"
        assert other.call("EXISTS", "undeclared") == b":0\r\n"
    wait_no_private_keys(store)


def wait_no_private_keys(store):
    deadline = time.time() + 5
    while True:
        with raw(store) as s:
            keys = s.call("KEYS", "__evalproxy_ldb:*")
        if keys == b"*0\r\n" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert keys == b"*0\r\n"


def test_sync_session_holds_its_keys_and_keeps_writes(real_proxy):
    flush(real_proxy)
    body = "redis.call('set', KEYS[1], 'session')\nreturn redis.call('get', KEYS[1])\n"
    c = start_session(real_proxy, "SYNC", body, "held")
    c.call("step")  # the SET ran
    with raw(real_proxy) as other, raw(real_proxy) as free:
        other.send_command("SET", "held", "other")
        with pytest.raises(ReplyTimeout):
            other.read_reply(timeout=0.5)
        # Only its keys wait.
        assert free.call("SET", "elsewhere", "1", timeout=2) == b"+OK\r\n"
        c.send_command("continue")
        assert read_all(c) == b"*1\r\n+<endsession>\r\n$7\r\nsession\r\n"
        c.close()
        assert other.read_reply(timeout=5) == b"+OK\r\n"
        assert other.call("GET", "held") == b"$5\r\nother\r\n"
    # Its writes stay.
    flush(real_proxy)
    c = start_session(real_proxy, "SYNC", body, "kept")
    c.send_command("continue")
    read_all(c)
    c.close()
    with raw(real_proxy) as check:
        assert check.call("GET", "kept") == b"$7\r\nsession\r\n"


def info_field(conn, section, name):
    text = conn.call("INFO", section).decode()
    for line in text.split("\r\n"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1]
    raise AssertionError("no %s in INFO %s" % (name, section))


@pytest.mark.parametrize("mode", ["SYNC", "YES"])
def test_disconnect_mid_session_leaves_nothing(real_proxy, store, mode):
    flush(real_proxy)
    body = "redis.call('set', KEYS[1], 'session')\nlocal x = 1\nreturn x\n"
    c = start_session(real_proxy, mode, body, "gone")
    assert b"Stopped at 2" in c.call("step")
    with raw(real_proxy) as check:
        assert info_field(check, "scripting", "scripts_running") == "1"
        c.close()
        deadline = time.time() + 5
        while time.time() < deadline and (info_field(check, "locks", "lock_sets_holding") != "0"
                                          or info_field(check, "scripting", "scripts_running") != "0"):
            time.sleep(0.05)
        assert info_field(check, "locks", "lock_sets_holding") == "0"
        assert info_field(check, "scripting", "scripts_running") == "0"
        # The key is free for everyone.
        assert check.call("SET", "gone", "free", timeout=2) == b"+OK\r\n"
    if mode == "YES":
        with raw(store) as s:
            deadline = time.time() + 5
            while s.call("KEYS", "__evalproxy_ldb:*") != b"*0\r\n" and time.time() < deadline:
                time.sleep(0.05)
            assert s.call("KEYS", "__evalproxy_ldb:*") == b"*0\r\n"


def test_session_limit(real_proxy):
    flush(real_proxy)
    with raw(real_proxy) as admin:
        assert admin.call("CONFIG", "SET", "lua-debug-sessions-max", "1") == b"+OK\r\n"
        try:
            body = "local x = 1\nreturn x\n"
            first = start_session(real_proxy, "YES", body, "a")
            with raw(real_proxy) as second:
                assert second.call("SCRIPT", "DEBUG", "YES") == b"+OK\r\n"
                r = second.call("EVAL", body, 1, "b")
                assert r.startswith(b"-ERR can't run EVAL in debugging mode: lua-debug-sessions-max (1)")
                # Debugging is off again for it, as after Redis's failed fork.
                assert second.call("EVAL", body, 1, "b") == b":1\r\n"
            first.send_command("continue")
            read_all(first)
            first.close()
            time.sleep(0.1)
            again = start_session(real_proxy, "YES", body, "c")
            again.send_command("continue")
            assert read_all(again) == b"*1\r\n+<endsession>\r\n:1\r\n"
            again.close()
        finally:
            admin.call("CONFIG", "SET", "lua-debug-sessions-max", "32")


def test_debugger_errors_match(oracle, proxy):
    cases = [
        [("SCRIPT", "DEBUG", "maybe")],
        [("EVAL", "return redis.call('script', 'debug', 'yes')", 0)],
        [("EVAL", "return {redis.breakpoint() and 1 or 0, redis.debug('x') == nil and 1 or 0}", 0)],
        [("MULTI",), ("SCRIPT", "DEBUG", "YES"), ("EXEC",)],
        [("SCRIPT", "DEBUG", "SYNC"), ("EVALSHA", "a" * 40, 0)],
        [("SCRIPT", "DEBUG", "YES"), ("SCRIPT", "DEBUG", "NO"), ("EVAL", "return 1", 0)],
    ]
    for steps in cases:
        got = []
        for side in (oracle, proxy):
            with raw(side) as c:
                got.append([c.call(*s) for s in steps])
        assert got[0] == got[1], steps


def test_debug_eval_with_bad_arguments_ends_session(oracle, proxy):
    got = []
    for side in (oracle, proxy):
        c = raw(side)
        assert c.call("SCRIPT", "DEBUG", "SYNC") == b"+OK\r\n"
        c.send_command("EVAL", "return 1", 5)
        got.append(read_all(c))
        c.close()
    assert got[0] == got[1]
    assert got[1].startswith(b"*1\r\n+<endsession>\r\n-ERR")


def test_endless_loop_stops_by_itself(oracle, proxy):
    """Past busy-reply-threshold without a stop, the run stops with Redis's
    "timeout reached" reason; abort then ends it."""
    body = "local i = 0\nwhile true do\n  i = i + 1\nend\n"
    got = []
    for side in (oracle, proxy):
        with raw(side) as admin:
            assert admin.call("CONFIG", "SET", "busy-reply-threshold", "300") == b"+OK\r\n"
            c = start_session(side, "SYNC", body, numkeys=0)
            try:
                stop = c.call("continue", timeout=3)  # under the 5 s default
                c.send_command("abort")
                end = read_all(c, timeout=10)
            finally:
                c.close()
                admin.call("CONFIG", "SET", "busy-reply-threshold", "5000")
        assert b"stop reason = timeout reached, infinite loop?" in stop
        got.append(end)
    assert got[0].split(b" on @user_script")[0] == got[1].split(b" on @user_script")[0]
    assert got[1].startswith(b"*1\r\n+<endsession>\r\n-ERR script aborted for user request")


@pytest.mark.parametrize("command", [("eval", ""), ("print", "x" * 1025)], ids=["empty", "long"])
def test_debugger_protocol_limits(oracle, proxy, command):
    """Redis's debugger takes arguments of 1 to 1024 bytes; others fail the
    script with a protocol error."""
    got = []
    for side in (oracle, proxy):
        c = start_session(side, "SYNC", "local a = 1\nreturn a\n", numkeys=0)
        c.send_command(*command)
        got.append(read_all(c))
        c.close()
    assert got[0] == got[1]
    assert b"-ERR protocol error script:" in got[1]


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "running"])
def test_endless_loop_of_departed_client_fails(real_proxy, stopped):
    """Once its client is gone, a debugged run that times out fails, as in
    Redis ("timeout during Lua debugging with client closing connection"):
    nothing can stop it any more."""
    flush(real_proxy)
    body = "redis.call('set', KEYS[1], 'x')\nlocal i = 0\nwhile true do\n  i = i + 1\nend\n"
    with raw(real_proxy) as admin:
        assert admin.call("CONFIG", "SET", "busy-reply-threshold", "300") == b"+OK\r\n"
        try:
            c = start_session(real_proxy, "SYNC", body, "loop")
            if stopped:
                assert b"timeout reached" in c.call("continue", timeout=3)
            else:
                c.send_command("continue")
            c.close()
            deadline = time.time() + 5
            while time.time() < deadline and info_field(admin, "scripting", "scripts_running") != "0":
                time.sleep(0.05)
            assert info_field(admin, "scripting", "scripts_running") == "0"
            assert admin.call("SET", "loop", "free", timeout=2) == b"+OK\r\n"
        finally:
            admin.call("CONFIG", "SET", "busy-reply-threshold", "5000")


from test_memcached import mc_env  # noqa: E402,F401  (the memcached store, its oracle and proxy)

MEMCACHED_SCRIPT = """\
local v = redis.call('get', KEYS[1])
redis.call('set', KEYS[1], 'changed')
redis.call('append', KEYS[1], '!')
redis.call('set', 'other', 'session')
return {v, redis.call('get', KEYS[1])}
"""


def test_yes_session_on_memcached(mc_env):
    """Private copies by the memcached backend's image and restore."""
    mc, oracle, proxy = mc_env
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.lua")
        with open(path, "w") as f:
            f.write(MEMCACHED_SCRIPT)
        outputs = []
        for side in (oracle, proxy):
            flush(side)
            with raw(side) as c:
                assert c.call("SET", "mk", "orig") == b"+OK\r\n"
            outputs.append(run_cli(side, path, ["mk"], [], "step\nstep\nredis get mk\ncontinue\n", False))
    assert outputs[0] == outputs[1]
    assert '"changed!"' in outputs[1]
    with raw(proxy) as c:
        assert c.call("GET", "mk") == b"$4\r\norig\r\n"
        deadline = time.time() + 5
        while c.call("KEYS", "*") != b"*1\r\n$2\r\nmk\r\n" and time.time() < deadline:
            time.sleep(0.05)
        assert c.call("KEYS", "*") == b"*1\r\n$2\r\nmk\r\n"


def test_client_gone_while_session_waits_for_its_keys(real_proxy):
    """A SYNC session whose client is killed while it waits for its keys
    runs as a plain script once they are free, and leaves no lock behind."""
    flush(real_proxy)
    body = "redis.call('set', KEYS[1], ARGV[1])\nreturn 1\n"
    first = start_session(real_proxy, "SYNC", body, "wk", "first")
    waiting = raw(real_proxy)
    wid = waiting.call("CLIENT", "ID")[1:-2]
    assert waiting.call("SCRIPT", "DEBUG", "SYNC") == b"+OK\r\n"
    waiting.send_command("EVAL", body, 1, "wk", "second")
    with pytest.raises(ReplyTimeout):
        waiting.read_reply(timeout=0.3)
    # Killed, not closed: a closed client is noticed only once it is read again.
    with raw(real_proxy) as killer:
        assert killer.call("CLIENT", "KILL", "ID", wid) == b":1\r\n"
    waiting.close()
    time.sleep(0.1)
    first.send_command("continue")
    assert read_all(first) == b"*1\r\n+<endsession>\r\n:1\r\n"
    first.close()
    with raw(real_proxy) as check:
        deadline = time.time() + 5
        while time.time() < deadline and (info_field(check, "scripting", "scripts_running") != "0"
                                          or info_field(check, "locks", "lock_sets_holding") != "0"):
            time.sleep(0.05)
        assert info_field(check, "scripting", "scripts_running") == "0"
        assert info_field(check, "locks", "lock_sets_holding") == "0"
        assert check.call("GET", "wk") == b"$6\r\nsecond\r\n"
