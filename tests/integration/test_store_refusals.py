"""A store that refuses writes (maxmemory reached, too few good replicas):
scripts with flags and FUNCTION LOAD / RESTORE are refused before they run,
as Redis 7.0 refuses them, and the commands' errors count in commandstats
and errorstats as Redis counts them. Each case runs on the proxy and on a
redis-server 7.0 oracle, both set the same way through CONFIG SET, and the
replies are compared byte for byte."""

import time

import pytest

import harness
from conftest import proxy_binary, stop_proxy
from harness import parse_reply


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("refusals")
    store = harness.RedisServer("store", str(d / "store"), rename_scripting=True).start()
    oracle = harness.RedisServer("oracle", str(d / "oracle")).start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(d / "proxy"))
    proxy.start()
    yield proxy, oracle
    stop_proxy(proxy)
    store.stop()
    oracle.stop()


def both(pair, *args):
    proxy, oracle = pair
    with proxy.connect() as p, oracle.connect() as o:
        return p.call(*args), o.call(*args)


def same(pair, *args):
    got, want = both(pair, *args)
    assert got == want, (args, got, want)
    return got


def config(pair, name, value):
    for side in pair:
        with side.connect() as c:
            assert c.call("CONFIG", "SET", name, value) == b"+OK\r\n"


def stat_line(conn, section, name):
    """The value of one INFO line (commandstats, errorstats), or None."""
    fields = harness.info_fields(conn, section)
    return fields.get(name)


def stats(pair, section, name):
    proxy, oracle = pair
    with proxy.connect() as p, oracle.connect() as o:
        return stat_line(p, section, name), stat_line(o, section, name)


def calls_part(v):
    """calls=..,rejected_calls=..,failed_calls=.. without the timings."""
    if v is None:
        return None
    d = dict(kv.split("=") for kv in v.split(","))
    return (d["calls"], d.get("rejected_calls"), d.get("failed_calls"))


SHEBANG_WRITE = "#!lua\nreturn redis.call('get', KEYS[1])"
SHEBANG_NO_WRITES = "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])"
SHEBANG_ALLOW_OOM = "#!lua flags=allow-oom\nreturn redis.call('get', KEYS[1])"
PLAIN_READ = "return redis.call('get', KEYS[1])"
PLAIN_WRITE = "return redis.call('set', KEYS[1], 'y')"
LIBRARY = "#!lua name=refusals\nredis.register_function('f', function(keys) return redis.call('get', keys[1]) end)\n" \
          "redis.register_function{function_name='fro', callback=function(keys) return redis.call('get', keys[1]) end, " \
          "flags={'no-writes'}}"


@pytest.fixture
def out_of_memory(pair):
    for args in (("SET", "rf:x", "123"), ("FUNCTION", "LOAD", "REPLACE", LIBRARY)):
        same(pair, *args)
    config(pair, "maxmemory", "1")
    try:
        yield
    finally:
        config(pair, "maxmemory", "0")


def test_scripts_with_flags_are_refused_when_the_store_is_out_of_memory(pair, out_of_memory):
    # Declared flags (a shebang) without allow-oom: refused before running.
    assert same(pair, "EVAL", SHEBANG_WRITE, "1", "rf:x").startswith(b"-OOM ")
    # The server's state is checked before an *_RO command's flags, as in Redis.
    assert same(pair, "EVAL_RO", SHEBANG_WRITE, "1", "rf:x").startswith(b"-OOM ")
    assert same(pair, "FCALL_RO", "f", "1", "rf:x").startswith(b"-OOM ")
    # no-writes and allow-oom run; a script without flags runs, its writes refused one by one.
    assert same(pair, "EVAL", SHEBANG_NO_WRITES, "1", "rf:x") == b"$3\r\n123\r\n"
    assert same(pair, "EVAL", SHEBANG_ALLOW_OOM, "1", "rf:x") == b"$3\r\n123\r\n"
    assert same(pair, "EVAL", PLAIN_READ, "1", "rf:x") == b"$3\r\n123\r\n"
    assert same(pair, "EVAL", PLAIN_WRITE, "1", "rf:x").startswith(b"-OOM command not allowed")
    assert same(pair, "FCALL", "f", "1", "rf:x").startswith(b"-OOM ")
    assert same(pair, "FCALL", "fro", "1", "rf:x") == b"$3\r\n123\r\n"
    assert same(pair, "FCALL_RO", "fro", "1", "rf:x") == b"$3\r\n123\r\n"
    # EVALSHA of a loaded script with flags is refused the same way.
    sha = parse_reply(same(pair, "SCRIPT", "LOAD", SHEBANG_WRITE)).decode()
    assert same(pair, "EVALSHA", sha, "1", "rf:x").startswith(b"-OOM ")
    # FUNCTION LOAD and RESTORE need memory; DUMP and LIST do not.
    assert same(pair, "FUNCTION", "LOAD", "REPLACE", LIBRARY).startswith(b"-OOM ")
    payload = parse_reply(both(pair, "FUNCTION", "DUMP")[1])
    assert same(pair, "FUNCTION", "RESTORE", payload, "REPLACE").startswith(b"-OOM ")
    got, want = both(pair, "FUNCTION", "LIST", "LIBRARYNAME", "refusals")
    assert got.startswith(b"*1\r\n") and want.startswith(b"*1\r\n"), (got, want)  # (functions' order differs)
    # The library is still there and runs once memory is back.
    config(pair, "maxmemory", "0")
    assert same(pair, "EVAL", SHEBANG_WRITE, "1", "rf:x") == b"$3\r\n123\r\n"
    assert same(pair, "FCALL", "f", "1", "rf:x") == b"$3\r\n123\r\n"


def test_a_pipeline_keeps_its_order_around_a_refused_script(pair, out_of_memory):
    proxy, oracle = pair
    cmds = [("EVAL", SHEBANG_WRITE, "1", "rf:x"), ("GET", "rf:x"), ("EVAL", SHEBANG_NO_WRITES, "1", "rf:x"),
            ("FUNCTION", "LOAD", "REPLACE", LIBRARY), ("ECHO", "last")]
    payload = b"".join(harness.encode_command(*c) for c in cmds)
    replies = []
    for side in (proxy, oracle):
        with side.connect() as c:
            c.send(payload)
            replies.append([c.read_reply() for _ in cmds])
    assert replies[0] == replies[1], replies


def test_scripts_with_flags_are_refused_without_good_replicas(pair):
    same(pair, "SET", "rf:x", "some value")
    config(pair, "min-replicas-to-write", "1")
    try:
        assert same(pair, "EVAL", SHEBANG_NO_WRITES, "1", "rf:x") == b"$10\r\nsome value\r\n"
        assert same(pair, "EVAL", PLAIN_READ, "1", "rf:x") == b"$10\r\nsome value\r\n"
        assert same(pair, "EVAL", SHEBANG_WRITE, "1", "rf:x").startswith(b"-NOREPLICAS ")
        # allow-oom does not spare a script the replicas' check.
        assert same(pair, "EVAL", SHEBANG_ALLOW_OOM, "1", "rf:x").startswith(b"-NOREPLICAS ")
        assert same(pair, "EVAL", PLAIN_WRITE, "1", "rf:x").startswith(b"-NOREPLICAS ")
    finally:
        config(pair, "min-replicas-to-write", "0")
    assert same(pair, "EVAL", SHEBANG_WRITE, "1", "rf:x") == b"$10\r\nsome value\r\n"


def reset_stats(pair):
    for side in pair:
        with side.connect() as c:
            assert c.call("CONFIG", "RESETSTAT") == b"+OK\r\n"


def test_errors_of_scripts_commands_count_as_redis_counts_them(pair):
    """Redis counts a command's error in errorstats when the command fails,
    whether the script passes it on (once) or swallows it with pcall; a
    command the server's state refused is a rejected call, not a failed one."""
    cases = [
        # (script, numkeys..., what the commandstats of which command show)
        ("return redis.call('set', 'rf:x', 'y')", "set"),
        ("local t = redis.pcall('set', 'rf:x', 'y') return t['err']", "set"),
        ("return redis.pcall('set', 'rf:x', 'y')", "set"),
    ]
    config(pair, "maxmemory", "1")
    try:
        for body, cmd in cases:
            reset_stats(pair)
            same(pair, "EVAL", body, "0")
            got, want = stats(pair, "errorstats", "errorstat_OOM")
            assert got == want, (body, got, want)
            got, want = stats(pair, "commandstats", "cmdstat_" + cmd)
            assert calls_part(got) == calls_part(want), (body, got, want)
            got, want = stats(pair, "stats", "total_error_replies")
            assert got == want, (body, got, want)
    finally:
        config(pair, "maxmemory", "0")
    cases = [
        ("return redis.call('select', 99)", "select"),
        ("local t = redis.pcall('select', 99) return 1", "select"),
        ("return redis.call('incr', 'rf:list')", "incr"),
        ("local t = redis.pcall('incr', 'rf:list') return 1", "incr"),
        ("return redis.pcall('incr', 'rf:list')", "incr"),
        ("local t = redis.pcall('incr', 'rf:list') return redis.error_reply('MINE x')", "incr"),
    ]
    same(pair, "DEL", "rf:list")
    same(pair, "RPUSH", "rf:list", "a")
    for body, cmd in cases:
        reset_stats(pair)
        same(pair, "EVAL", body, "0")
        for name in ("errorstat_ERR", "errorstat_WRONGTYPE", "errorstat_MINE"):
            got, want = stats(pair, "errorstats", name)
            assert got == want, (body, name, got, want)
        got, want = stats(pair, "commandstats", "cmdstat_" + cmd)
        assert calls_part(got) == calls_part(want), (body, got, want)
        got, want = stats(pair, "stats", "total_error_replies")
        assert got == want, (body, got, want)
    # A read-only script's write: refused before it runs.
    reset_stats(pair)
    assert same(pair, "EVAL_RO", "return redis.call('set', 'rf:x', 'y')", "1", "rf:x").startswith(b"-ERR Write")
    got, want = stats(pair, "commandstats", "cmdstat_set")
    assert calls_part(got) == calls_part(want), (got, want)
    got, want = stats(pair, "errorstats", "errorstat_ERR")
    assert got == want, (got, want)


def pipeline(side, cmds):
    with side.connect() as c:
        c.send(b"".join(harness.encode_command(*cmd) for cmd in cmds))
        return [c.read_reply() for _ in cmds]


def test_transactions_under_a_store_out_of_memory(pair):
    """Out of memory, Redis refuses to queue any command (EXEC aborts), and
    aborts an EXEC that holds a deny-oom command; a transaction of reads
    queued before runs."""
    proxy, oracle = pair
    same(pair, "SET", "rf:x", "value")
    try:
        config(pair, "maxmemory", "1")
        cmds = [("MULTI",), ("GET", "rf:x"), ("SET", "rf:y", "1"), ("EXEC",), ("MULTI",), ("SET", "rf:y", "1"),
                ("DISCARD",), ("PING",)]
        got, want = pipeline(proxy, cmds), pipeline(oracle, cmds)
        assert got == want, (got, want)
        config(pair, "maxmemory", "0")
        for deny_oom in (False, True):
            conns = [side.connect() for side in pair]
            try:
                queued = [("MULTI",), ("GET", "rf:x"), ("PING",)] + ([("SET", "rf:y", "2")] if deny_oom else [])
                for c in conns:
                    for cmd in queued:
                        c.call(*cmd)
                config(pair, "maxmemory", "1")
                got, want = [c.call("EXEC") for c in conns]
                assert got == want, (deny_oom, got, want)
                config(pair, "maxmemory", "0")
            finally:
                for c in conns:
                    c.close()
    finally:
        config(pair, "maxmemory", "0")
    assert same(pair, "GET", "rf:y") == b"$-1\r\n"


def test_a_store_that_cannot_be_asked(tmp_path):
    """While the proxy watches for refusals, a store that is down answers for
    itself: a flagged script, a queued command and an EXEC get the backend's
    error, and the proxy stops cleanly with such a question in flight."""
    store = harness.RedisServer("store", str(tmp_path / "store"), rename_scripting=True).start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"))
    proxy.start()
    try:
        with proxy.connect() as c:
            # A memory limit far away: the store is asked before each of these.
            assert c.call("CONFIG", "SET", "maxmemory", "1gb") == b"+OK\r\n"
            assert c.call("EVAL", SHEBANG_WRITE, "1", "rf:x") == b"$-1\r\n"
            store.kill()
            assert c.call("EVAL", SHEBANG_WRITE, "1", "rf:x").startswith(b"-ERR backend ")
            assert c.call("MULTI") == b"+OK\r\n"
            assert c.call("GET", "rf:x") in (b"+QUEUED\r\n",) or c.call("PING")  # queued, or refused
            assert c.call("EXEC").startswith((b"-EXECABORT ", b"-ERR backend "))
            # Functions live in the proxy: a store that cannot be asked does not stop a load.
            assert c.call("FUNCTION", "LOAD", LIBRARY) == b"$8\r\nrefusals\r\n"
            store.start()
            deadline = time.monotonic() + 10
            while c.call("EVAL", SHEBANG_WRITE, "1", "rf:x") != b"$-1\r\n":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            # A question in flight when the proxy stops.
            c.send(harness.encode_command("EVAL", SHEBANG_WRITE, "1", "rf:x"))
    finally:
        stop_proxy(proxy)
        store.stop()


def test_the_store_is_asked_only_while_it_may_refuse(tmp_path):
    """A CONFIG SET that cannot make the store refuse writes (no memory limit,
    a master, no replica minimum) ends the asking at once, so a transaction
    and a flagged script cost no extra round trip (nor the reordering one
    could bring); a memory limit keeps it on, and removing it ends it."""
    store = harness.RedisServer("store", str(tmp_path / "store"), rename_scripting=True).start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"))
    proxy.start()

    def asks(c, s):
        assert s.call("CONFIG", "RESETSTAT") == b"+OK\r\n"
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("SET", "rf:k", "v") == b"+QUEUED\r\n"
        assert c.call("EXEC") == b"*1\r\n+OK\r\n"
        assert c.call("EVAL", SHEBANG_WRITE, "1", "rf:k") == b"$1\r\nv\r\n"
        checks = [stat_line(s, "commandstats", "cmdstat_" + n) for n in ("setrange", "zremrangebyscore")]
        return [calls_part(v)[0] if v else "0" for v in checks]

    def settle(c, name, value):
        assert c.call("CONFIG", "SET", name, value) == b"+OK\r\n"
        time.sleep(0.2)  # the proxy reads the store's INFO on its next turn

    try:
        with proxy.connect() as c, store.connect() as s:
            settle(c, "hz", "11")
            assert asks(c, s) == ["0", "0"]
            settle(c, "maxmemory", "1gb")
            assert asks(c, s) == ["3", "0"]  # the queued SET, EXEC, the script
            settle(c, "maxmemory", "0")
            assert asks(c, s) == ["0", "0"]
            settle(c, "min-replicas-to-write", "1")
            assert c.call("EVAL", SHEBANG_WRITE, "1", "rf:k").startswith(b"-NOREPLICAS ")
            settle(c, "min-replicas-to-write", "0")
            assert asks(c, s) == ["0", "0"]
    finally:
        stop_proxy(proxy)
        store.stop()
