"""INFO memory and INFO cpu with Redis 7.0's fields, and pub/sub carried by
the proxy itself in front of a store that has none (memcached).

The INFO checks compare field names, their order and their formats with a
redis-server 7.0 oracle (the values are the proxy's own). The pub/sub
checks run the scenarios of test_stateful.py, and a few more, on the oracle
and on a proxy in front of a real memcached, and compare the transcripts
byte for byte.
"""

import os
import re
import socket
import time

import pytest

import harness
import test_stateful as stateful
from conftest import proxy_binary, wait_store_learnt
from harness import ProxyProcess, Step, encode_command, parse_reply
from test_memcached import MEMCACHED, Memcached


def info_text(conn, *sections):
    r = parse_reply(conn.call("INFO", *sections))
    assert isinstance(r, bytes), r
    return r.decode("latin-1")


def info_sections(text):
    """[(header, [(field, value), ...]), ...] in the order INFO gave them."""
    out = []
    for line in text.split("\r\n"):
        if line.startswith("# "):
            out.append((line[2:], []))
        elif ":" in line:
            k, v = line.split(":", 1)
            out[-1][1].append((k, v))
    return out


def wait_until(pred, timeout=10.0, what="condition"):
    return stateful.wait_until(pred, timeout=timeout, what=what)


@pytest.fixture
def fresh_proxy(tmp_path, store):
    """A proxy of this test's own (nothing cached, nothing loaded yet), past
    learning its store: the memory that learning holds for a while is not
    counted against what the test then loads."""
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"))
    p.start()
    wait_store_learnt(p)
    yield p
    status = p.stop()
    assert not p.sanitizer_report(), p.sanitizer_report()
    assert status in (0, -15), p.diagnostics()


# ---------------------------------------------------------------------------
# INFO memory, INFO cpu

# The sections Redis 7.0 has that the proxy answers; its own (Scripting,
# Locks, Pubsub, Backend) come between Cluster and Keyspace.
REDIS_SECTIONS_OF_PROXY = ("Server", "Clients", "Memory", "Stats", "Replication", "CPU", "Modules",
                           "Cluster", "Keyspace")
# Sections whose field names and order are Redis's exactly.
SAME_FIELDS = ("Memory", "CPU", "Replication", "Modules", "Cluster")


@pytest.mark.parametrize("args", [("memory",), ("cpu",), ("MEMORY",), ("memory", "cpu"),
                                  ("cpu", "memory"), (), ("default",), ("all",), ("everything",),
                                  ("replication",), ("modules",), ("module_list",), ("cluster",),
                                  ("cluster", "server", "cpu", "modules")],
                         ids=lambda a: "-".join(a) or "no-args")
def test_info_sections_fields_and_order_match_redis(oracle, real_proxy, args):
    with oracle.connect() as oc, real_proxy.connect() as pc:
        want = info_sections(info_text(oc, *args))
        got = info_sections(info_text(pc, *args))
    want_heads = [h for h, _ in want if h in REDIS_SECTIONS_OF_PROXY]
    got_heads = [h for h, _ in got if h in REDIS_SECTIONS_OF_PROXY]
    assert got_heads == want_heads, (got_heads, [h for h, _ in got])
    # Redis's sections first, in Redis's order, then the proxy's, then Keyspace.
    heads = [h for h, _ in got]
    if "Keyspace" in heads:
        assert heads[-1] == "Keyspace", heads
    for section in SAME_FIELDS:
        w = dict(want).get(section)
        g = dict(got).get(section)
        assert (w is None) == (g is None), (section, heads)
        if w is not None:
            assert [k for k, _ in g] == [k for k, _ in w], section


# How each field's value looks in Redis 7.0 (server.c's format strings).
INT = r"\d+"
SIGNED = r"-?\d+"
HUMAN = r"(\d+B|\d+\.\d\d[KMGTP])"
PERC = r"\d+\.\d\d%"
RATIO = r"\d+\.\d\d"
CPU = r"\d+\.\d{6}"
MEMORY_FORMATS = {
    "used_memory_human": HUMAN, "used_memory_rss_human": HUMAN, "used_memory_peak_human": HUMAN,
    "total_system_memory_human": HUMAN, "used_memory_lua_human": HUMAN,
    "used_memory_vm_total_human": HUMAN, "used_memory_scripts_human": HUMAN, "maxmemory_human": HUMAN,
    "used_memory_peak_perc": PERC, "used_memory_dataset_perc": PERC,
    "allocator_frag_ratio": RATIO, "allocator_rss_ratio": RATIO, "rss_overhead_ratio": RATIO,
    "mem_fragmentation_ratio": RATIO,
    "allocator_rss_bytes": SIGNED, "rss_overhead_bytes": SIGNED, "mem_fragmentation_bytes": SIGNED,
    "maxmemory_policy": r"noeviction", "mem_allocator": r"libc",
}


def human_bytes(n):
    """Redis's bytesToHuman."""
    if n < 1024:
        return "%dB" % n
    for i, unit in enumerate("KMGTP"):
        if n < 1024 ** (i + 2):
            return "%.2f%s" % (n / 1024 ** (i + 1), unit)
    return "%dB" % n


def test_info_memory_and_cpu_values_parse_as_redis(oracle, real_proxy):
    with oracle.connect() as oc, real_proxy.connect() as pc:
        for section, formats in (("memory", MEMORY_FORMATS), ("cpu", {})):
            want = dict(info_sections(info_text(oc, section)))
            got = dict(info_sections(info_text(pc, section)))
            (name, fields), = got.items()
            for k, v in fields:
                fmt = formats.get(k, CPU if section == "cpu" else INT)
                assert re.fullmatch(fmt, v), (k, v)
            # The oracle's own values follow the same formats (checks the table).
            for k, v in want[name]:
                if k not in ("mem_allocator",):
                    assert re.fullmatch(formats.get(k, CPU if section == "cpu" else INT), v), (k, v)
        m = harness.info_fields(pc, "memory")
        for k in ("used_memory", "used_memory_rss", "used_memory_peak", "total_system_memory",
                  "used_memory_lua", "used_memory_vm_total"):
            assert m[k + "_human"] == human_bytes(int(m[k])), k
        assert m["used_memory_scripts_human"] == human_bytes(int(m["used_memory_scripts"]))
        assert m["used_memory_lua"] == m["used_memory_vm_eval"]
        assert int(m["used_memory_scripts"]) == (int(m["used_memory_scripts_eval"])
                                                 + int(m["used_memory_functions"]))
        assert int(m["used_memory_peak"]) >= int(m["used_memory"]) > 0
        assert int(m["used_memory_startup"]) > 0


def proc_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_info_memory_figures_are_the_proxys(fresh_proxy, oracle):
    with fresh_proxy.connect() as c, oracle.connect() as oc:
        assert oc.call("SCRIPT", "FLUSH") == b"+OK\r\n"
        assert oc.call("FUNCTION", "FLUSH") == b"+OK\r\n"
        # The buffers of learning the store go a moment after it: wait
        # until used_memory holds still before taking it as the base.
        m0 = harness.info_fields(c, "memory")
        for _ in range(60):
            time.sleep(0.1)
            again = harness.info_fields(c, "memory")
            if again["used_memory"] == m0["used_memory"]:
                break
            m0 = again
        assert m0["number_of_cached_scripts"] == "0"
        assert (m0["number_of_functions"], m0["number_of_libraries"]) == ("0", "0")
        # The resident set is the process's, as the kernel reports it.
        rss = int(m0["used_memory_rss"])
        assert abs(rss - proc_rss(fresh_proxy.proc.pid)) < max(rss // 5, 1 << 20), rss

        # 300 scripts of 2 KiB: the cache, the Lua heap and the allocator all grow.
        bodies = ["return '%d%s'" % (i, "x" * 2000) for i in range(300)]  # constants of their own
        for b in bodies:
            c.send_command("SCRIPT", "LOAD", b)
            oc.send_command("SCRIPT", "LOAD", b)
        c.read_replies(len(bodies))
        oc.read_replies(len(bodies))
        m1 = harness.info_fields(c, "memory")
        o1 = harness.info_fields(oc, "memory")
        assert m1["number_of_cached_scripts"] == o1["number_of_cached_scripts"] == "300"
        assert int(m1["used_memory_scripts_eval"]) >= sum(len(b) for b in bodies)
        assert int(m1["used_memory_lua"]) > int(m0["used_memory_lua"]) + 300 * 2000
        assert int(m1["used_memory"]) > int(m0["used_memory"]) + 300 * 4000
        assert int(m1["used_memory_peak"]) >= int(m1["used_memory"])
        assert int(m1["used_memory_startup"]) == int(m0["used_memory_startup"])

        lib = ("#!lua name=infolib\n"
               "redis.register_function('f1', function() return 1 end)\n"
               "redis.register_function{function_name='f2', callback=function() return 2 end,"
               " description='two'}\n")
        assert c.call("FUNCTION", "LOAD", lib) == oc.call("FUNCTION", "LOAD", lib)
        m2 = harness.info_fields(c, "memory")
        o2 = harness.info_fields(oc, "memory")
        for k in ("number_of_functions", "number_of_libraries", "number_of_cached_scripts"):
            assert m2[k] == o2[k], k
        assert (m2["number_of_functions"], m2["number_of_libraries"]) == ("2", "1")
        assert int(m2["used_memory_functions"]) >= len(lib)
        assert int(m2["used_memory_scripts"]) == (int(m2["used_memory_scripts_eval"])
                                                  + int(m2["used_memory_functions"]))

        for conn in (c, oc):
            assert conn.call("SCRIPT", "FLUSH") == b"+OK\r\n"
            assert conn.call("FUNCTION", "FLUSH") == b"+OK\r\n"
        m3 = harness.info_fields(c, "memory")
        assert m3["number_of_cached_scripts"] == harness.info_fields(oc, "memory")["number_of_cached_scripts"] == "0"
        assert (m3["used_memory_scripts_eval"], m3["used_memory_functions"]) == ("0", "0")
        assert int(m3["used_memory_peak"]) >= int(m1["used_memory"])
        # The proxy's own scripting section no longer repeats the memory fields.
        scripting = harness.info_fields(c, "scripting")
        assert "used_memory_scripts" not in scripting and "number_of_cached_scripts" not in scripting


def test_info_cpu_counts_the_proxys_time(fresh_proxy):
    with fresh_proxy.connect() as c:
        def cpu():
            f = harness.info_fields(c, "cpu")
            return {k: float(v) for k, v in f.items()}
        before = cpu()
        # A CPU-bound script runs in the proxy (in slices), on its main thread.
        assert c.call("EVAL", "local x = 0 for i = 1, 3e7 do x = x + i end return 1", "0") == b":1\r\n"
        after = cpu()
        spent = (after["used_cpu_user"] + after["used_cpu_sys"]) - (before["used_cpu_user"] + before["used_cpu_sys"])
        assert spent > 0.05, (before, after)
        main = (after["used_cpu_user_main_thread"] + after["used_cpu_sys_main_thread"]
                - before["used_cpu_user_main_thread"] - before["used_cpu_sys_main_thread"])
        assert main > 0.05, (before, after)
        assert after["used_cpu_user_children"] == after["used_cpu_sys_children"] == 0.0
        # The same clock the kernel keeps for the process.
        with open("/proc/%d/stat" % fresh_proxy.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        kernel = (int(fields[11]) + int(fields[12])) / ticks
        assert abs(kernel - (after["used_cpu_user"] + after["used_cpu_sys"])) < 0.5, kernel


# ---------------------------------------------------------------------------
# Pub/sub in front of memcached

@pytest.fixture(scope="module")
def mproxy(tmp_path_factory):
    if not os.path.exists(MEMCACHED):
        pytest.skip("memcached is not installed")
    work = tmp_path_factory.mktemp("evalproxy-mc-pubsub")
    mc = Memcached().start()
    p = ProxyProcess(proxy_binary(), mc, str(work / "proxy"))
    i = p.args.index("--backend")
    p.args[i + 1] = "memcached://%s:%d" % (mc.host, mc.port)
    try:
        p.start()
    except Exception:
        mc.stop()
        raise
    yield p
    status = p.stop()
    mc.stop()
    report = p.sanitizer_report()
    if report:
        pytest.fail("the proxy printed a sanitizer report:\n" + report, pytrace=False)
    assert status in (0, -15), "proxy exit status %s\n%s" % (status, p.diagnostics())


def pubsub_info(conn):
    return harness.info_fields(conn, "pubsub")


def assert_pubsub_clean_and_working(proxy):
    """Nothing left subscribed at the proxy, and a message still goes round."""
    with proxy.connect() as c:
        wait_until(lambda: pubsub_info(c)["pubsub_topics"] == "0", what="topics freed")
        assert pubsub_info(c)["pubsub_store_connection"] == "none"
        assert c.call("PUBSUB", "NUMPAT") == b":0\r\n"
        assert c.call("PUBSUB", "CHANNELS") == b"*0\r\n"
        assert c.call("PUBSUB", "SHARDCHANNELS") == b"*0\r\n"
        with proxy.connect() as sub:
            assert sub.call("SUBSCRIBE", "check") == b"*3\r\n$9\r\nsubscribe\r\n$5\r\ncheck\r\n:1\r\n"
            assert c.call("PUBLISH", "check", "m") == b":1\r\n"
            assert sub.read_reply() == b"*3\r\n$7\r\nmessage\r\n$5\r\ncheck\r\n$1\r\nm\r\n"


def _script_pubsub_calls(ep):
    """PUBLISH, SPUBLISH and PUBSUB from scripts and functions; the read-only
    forms refuse to publish."""
    out = []
    with ep.connect() as sub, ep.connect() as psub, ep.connect() as caller:
        out.append(sub.call("SUBSCRIBE", "sc:a", "sc:b"))
        out.append(sub.read_reply())
        out.append(sub.call("SSUBSCRIBE", "sc:shard"))
        out.append(psub.call("PSUBSCRIBE", "sc:*", "sc:?"))
        out.append(psub.read_reply())
        out.append(caller.call("EVAL", "return {redis.call('PUBLISH', 'sc:a', 'one'),"
                               " redis.call('SPUBLISH', 'sc:shard', 'two'),"
                               " redis.call('PUBLISH', 'sc:zz', 'three'),"
                               " redis.call('SPUBLISH', 'sc:a', 'nobody')}", "0"))
        out.append(sorted(sub.read_replies(2)))
        out.append(sorted(psub.read_replies(3)))
        out.append(caller.call("EVAL", "return {redis.call('PUBSUB', 'NUMSUB', 'sc:a', 'sc:x'),"
                               " redis.call('PUBSUB', 'NUMPAT'),"
                               " redis.call('PUBSUB', 'SHARDNUMSUB', 'sc:shard'),"
                               " redis.call('PUBSUB', 'CHANNELS', 'sc:[a]'),"
                               " redis.call('PUBSUB', 'SHARDCHANNELS')}", "0"))
        out.append(caller.call("EVAL", "return redis.pcall('PUBSUB', 'CHANNELS', 'a', 'b')", "0"))
        out.append(caller.call("EVAL_RO", "return redis.call('PUBLISH', 'sc:a', 'ro')", "0"))
        out.append(caller.call("EVAL", "#!lua flags=no-writes\nreturn redis.call('PUBLISH', 'sc:a', 'x')", "0"))
        out.append(caller.call("EVAL", "return redis.pcall('PUBLISH', 'sc:a')", "0"))
        out.append(caller.call("FUNCTION", "LOAD", "REPLACE",
                               "#!lua name=pslib\nredis.register_function('pub', function(k, a)"
                               " return redis.call('PUBLISH', a[1], a[2]) end)"))
        out.append(caller.call("FCALL", "pub", "0", "sc:b", "via-function"))
        out.append(sub.read_reply())
        out.append(sorted(psub.read_replies(2)))
        out.append(caller.call("FCALL_RO", "pub", "0", "sc:b", "ro"))
        out.append(caller.call("FUNCTION", "DELETE", "pslib"))
    return out


def _multi_spublish(ep):
    out = []
    with ep.connect() as sub, ep.connect() as caller:
        out.append(sub.call("SSUBSCRIBE", "mx:s"))
        out.append(sub.call("SUBSCRIBE", "mx:c"))
        caller.send(encode_command("MULTI") + encode_command("SPUBLISH", "mx:s", "a")
                    + encode_command("SET", "mx:k", "1")
                    + encode_command("PUBLISH", "mx:c", "b") + encode_command("SPUBLISH", "mx:c", "c")
                    + encode_command("PUBLISH", "mx:s", "d")
                    + encode_command("EXEC"))
        out.append(caller.read_replies(7))
        out.append(sub.read_replies(2))
        out.append(caller.call("GET", "mx:k"))
        # PUBSUB inside MULTI: in front of memcached the proxy answers it (a
        # RESP store runs the transaction itself, and the proxy refuses it).
        caller.send(encode_command("MULTI") + encode_command("PUBSUB", "NUMSUB", "mx:c", "mx:s")
                    + encode_command("PUBSUB", "SHARDNUMSUB", "mx:s") + encode_command("PUBSUB", "NUMPAT")
                    + encode_command("PUBSUB", "CHANNELS", "mx:*") + encode_command("PUBSUB", "SHARDCHANNELS")
                    + encode_command("PUBLISH", "mx:c", "e") + encode_command("EXEC"))
        out.append(caller.read_replies(8))
        out.append(sub.read_reply())
    return out


def _pubsub_basic(ep):
    out = stateful._pubsub_basic(ep)
    # NOSUCHCMD while subscribed: a command Redis does not know is relayed,
    # and memcached answers that it is not supported.
    assert b"NOSUCHCMD" in out[22] or b"nosuchcmd" in out[22], out[22]
    del out[22]
    return out


SCENARIOS = {
    "basic": _pubsub_basic,
    "unsubscribe-all": stateful._pubsub_unsubscribe_all,
    "counts": stateful._pubsub_counts,
    "binary": stateful._pubsub_binary,
    "pattern-matching": stateful._pattern_counts,
    "reset-quit": stateful._pubsub_reset_quit,
    "script-publish": stateful._script_publish,
    "multi-publish": stateful._multi_publish,
    "client-list": stateful._client_list_fields,
    "script-pubsub-calls": _script_pubsub_calls,
    "multi-spublish": _multi_spublish,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_memcached_pubsub_matches_redis(oracle, mproxy, name):
    stateful.compare_scenario(oracle, mproxy, SCENARIOS[name])
    assert_pubsub_clean_and_working(mproxy)


def test_memcached_pubsub_replies_and_errors(oracle, mproxy):
    d = harness.Differ(oracle, mproxy)
    d.flushall()
    d.run([("PUBSUB", "HELP"), ("PUBSUB", "CHANNELS", "a", "b"), ("pubsub", "shardchannels", "a", "b"),
           ("PUBSUB", "NUMPAT", "x"), ("PUBSUB", "NOPE"), ("PUBSUB",), ("PUBSUB", "HELP", "x"),
           ("PUBSUB", "NUMSUB"), ("PUBSUB", "SHARDNUMSUB"), ("PUBSUB", "CHANNELS"),
           ("PUBSUB", "SHARDCHANNELS", "*"), ("PUBSUB", "NUMSUB", "a", "a", ""),
           ("PUBLISH",), ("PUBLISH", "a"), ("PUBLISH", "a", "b", "c"), ("SPUBLISH", "a"),
           ("PUBLISH", "", ""), ("SPUBLISH", "", "x"), ("PUBLISH", "a", "b")])
    # Subscriptions pipelined with other commands (test_stateful's cases).
    first = [("SUBSCRIBE", "pp1", "pp2", "pp1"), ("PING",), ("GET", "k"), ("PSUBSCRIBE", "pp*"),
             ("PING", "x"), ("SSUBSCRIBE", "pps")]
    d.run([Step(raw=b"".join(encode_command(*c) for c in first), replies=8),
           Step(raw=b"".join(encode_command(*c) for c in [
               ("UNSUBSCRIBE", "pp2"), ("PUNSUBSCRIBE", "pp*"), ("UNSUBSCRIBE", "pp1"),
               ("GET", "k"), ("SUNSUBSCRIBE", "pps", "pps"), ("ECHO", "done")]), replies=7)])
    d.run([Step(raw=b"".join(encode_command(*c) for c in stateful.PIPELINED_UNSUBSCRIBE), replies=3)])
    # Pipelined with plain commands, in order.
    d.run([Step(raw=b"".join(encode_command(*c) for c in [
        ("SET", "k", "v"), ("PUBLISH", "p", "1"), ("GET", "k"), ("PUBSUB", "NUMSUB", "p"),
        ("PUBLISH", "p", "2"), ("DEL", "k"), ("SPUBLISH", "p", "3"), ("PING",)]), replies=8)])
    assert_pubsub_clean_and_working(mproxy)


def test_memcached_publish_after_the_publishers_writes(mproxy):
    """A subscriber that reads a key when the message comes sees what the
    publisher wrote before PUBLISH (a 1 MB value takes a while to reach
    memcached)."""
    big = b"v" * 1000000
    with mproxy.connect() as sub, mproxy.connect() as pub, mproxy.connect() as reader:
        assert sub.call("SUBSCRIBE", "written")[:1] == b"*"
        for i in range(10):
            value = b"%d:" % i + big
            pub.send(encode_command("SET", "wk", value) + encode_command("PUBLISH", "written", str(i)))
            msg = parse_reply(sub.read_reply())
            assert msg == [b"message", b"written", str(i).encode()]
            got = reader.call("GET", "wk")
            assert got[:20] == (b"$%d\r\n" % len(value) + value)[:20], (i, got[:20])
            assert pub.read_replies(2) == [b"+OK\r\n", b":1\r\n"]
    assert_pubsub_clean_and_working(mproxy)


def test_memcached_subscribers_that_leave_are_forgotten(mproxy):
    conns = []
    for i in range(40):
        c = mproxy.connect()
        c.send_command("SUBSCRIBE", "gone:%d" % (i % 7), "gone:all")
        c.send_command("PSUBSCRIBE", "gone:*")
        c.send_command("SSUBSCRIBE", "gone:s%d" % (i % 3))
        c.read_replies(4)
        conns.append(c)
    with mproxy.connect() as pub:
        assert pub.call("PUBSUB", "NUMSUB", "gone:all") == b"*2\r\n$8\r\ngone:all\r\n:40\r\n"
        assert pub.call("PUBLISH", "gone:all", "x") == b":80\r\n"
        assert pub.call("SPUBLISH", "gone:s1", "x") == b":13\r\n"
        for i, c in enumerate(conns):
            if i % 2:
                c.close()  # abruptly, with messages unread
            else:
                c.send_command("UNSUBSCRIBE")
                c.send_command("QUIT")
        wait_until(lambda: pub.call("PUBSUB", "NUMSUB", "gone:all") == b"*2\r\n$8\r\ngone:all\r\n:0\r\n",
                   what="subscribers gone")
        assert pub.call("PUBLISH", "gone:all", "x") == b":0\r\n"
        assert pub.call("SPUBLISH", "gone:s1", "x") == b":0\r\n"
    for c in conns:
        c.close()
    assert_pubsub_clean_and_working(mproxy)


def test_memcached_slow_subscriber_hits_the_pubsub_output_limit(mproxy):
    """The pubsub class of client-output-buffer-limit applies to the proxy's
    own subscribers: one that does not read is closed, the others go on."""
    with mproxy.connect() as admin:
        old = parse_reply(admin.call("CONFIG", "GET", "client-output-buffer-limit"))[1]
        assert admin.call("CONFIG", "SET", "client-output-buffer-limit",
                          "normal 0 0 0 pubsub 1mb 0 0") == b"+OK\r\n"
    try:
        slow = socket.create_connection((mproxy.host, mproxy.port))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(encode_command("SUBSCRIBE", "flood"))
        with mproxy.connect() as fast, mproxy.connect() as pub:
            assert fast.call("SUBSCRIBE", "flood")[:1] == b"*"
            wait_until(lambda: pub.call("PUBSUB", "NUMSUB", "flood") == b"*2\r\n$5\r\nflood\r\n:2\r\n",
                       what="two subscribers")
            payload = b"p" * 65536
            counts = []
            for i in range(200):
                counts.append(parse_reply(pub.call("PUBLISH", "flood", payload)))
                fast.read_reply()
            assert counts[0] == 2 and counts[-1] == 1, counts
            assert pub.call("PUBSUB", "NUMSUB", "flood") == b"*2\r\n$5\r\nflood\r\n:1\r\n"
            with open(mproxy.logfile) as f:
                assert "overcoming of output buffer limits" in f.read()
        slow.close()
    finally:
        with mproxy.connect() as admin:
            assert admin.call("CONFIG", "SET", "client-output-buffer-limit", old) == b"+OK\r\n"
    assert_pubsub_clean_and_working(mproxy)


def test_multi_spublish_on_a_redis_store(oracle, proxy):
    """SPUBLISH runs inside MULTI, as PUBLISH does (through a RESP store)."""
    stateful.proxy_quiet(proxy)
    d = harness.Differ(oracle, proxy)
    d.flushall()
    d.run(["MULTI", "SPUBLISH nobody m", "SET k v", "EXEC", "GET k"])


KILL_LIB = ("#!lua name=killlib\n"
            "redis.register_function('pubspin', function(keys, args) "
            "if args[1] == 'publish' or args[1] == 'publish+set' then redis.call('PUBLISH', 'kw', 'once') end "
            "if args[1] == 'spublish' then redis.call('SPUBLISH', 'skw', 'once') end "
            "if args[1] == 'publish+set' then redis.call('SET', 'kw:k', 'v') end "
            "local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end "
            "local t0 = ms() while ms() - t0 < 1500 do end return 'done' end)\n")
KILL_EVAL = ("local what = ARGV[1] "
             "if what == 'publish' or what == 'publish+set' then redis.call('PUBLISH', 'kw', 'once') end "
             "if what == 'spublish' then redis.call('SPUBLISH', 'skw', 'once') end "
             "if what == 'publish+set' then redis.call('SET', 'kw:k', 'v') end "
             "local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end "
             "local t0 = ms() while ms() - t0 < 1500 do end return 'done'")


def _kill_transcript(ep, kind, what):
    """A busy script that has published (or not, or also written) and a
    SCRIPT KILL / FUNCTION KILL: the kill's reply, the script's, and what
    the subscriber got."""
    with ep.connect() as admin, ep.connect() as sub, ep.connect(timeout=20) as runner:
        old = parse_reply(admin.call("CONFIG", "GET", "busy-reply-threshold"))[1]
        assert admin.call("CONFIG", "SET", "busy-reply-threshold", "200") == b"+OK\r\n"
        try:
            admin.call("FUNCTION", "LOAD", "REPLACE", KILL_LIB)
            admin.call("DEL", "kw:k")
            assert sub.call("SUBSCRIBE", "kw")[:1] == b"*"
            assert sub.call("SSUBSCRIBE", "skw")[:1] == b"*"
            if kind == "function":
                runner.send_command("FCALL", "pubspin", "0", what)
            else:
                runner.send_command("EVAL", KILL_EVAL, "0", what)
            deadline = time.monotonic() + 20
            while True:  # NOTBUSY until the script is busy
                r = admin.call("FUNCTION" if kind == "function" else "SCRIPT", "KILL")
                if not r.startswith(b"-NOTBUSY") or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            got = [r, runner.read_reply()]
            if what != "none":
                got.append(sub.read_reply())
            with pytest.raises(harness.ReplyTimeout):
                sub.read_reply(timeout=0.3)
            got.append(admin.call("EXISTS", "kw:k"))
            return got
        finally:
            assert admin.call("CONFIG", "SET", "busy-reply-threshold", old) == b"+OK\r\n"


@pytest.mark.parametrize("what", ["publish", "spublish", "publish+set", "none"])
@pytest.mark.parametrize("kind", ["eval", "function"])
@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_script_kill_after_publish_matches_redis(oracle, proxy, mproxy, backend, kind, what):
    """As in Redis 7.0, PUBLISH and SPUBLISH are no write commands: a busy
    script that has only published is killed (its message stays sent, once);
    one that has written is UNKILLABLE and runs to its end."""
    ep = proxy if backend == "redis" else mproxy
    if backend == "redis":
        stateful.proxy_quiet(proxy)
    expected = _kill_transcript(oracle, kind, what)
    assert expected[0].startswith(b"-UNKILLABLE" if what == "publish+set" else b"+OK\r\n"), expected
    assert _kill_transcript(ep, kind, what) == expected
    if backend == "memcached":
        assert_pubsub_clean_and_working(ep)
        return
    with ep.connect() as c:
        wait_until(lambda: pubsub_info(c)["pubsub_topics"] == "0", what="topics freed")
    stateful.proxy_quiet(proxy)


def test_memcached_script_of_local_answers_lets_others_run(mproxy):
    """A script that loops on calls the memcached backend answers itself
    (TIME, PING) is served one call per loop turn: other clients are
    answered meanwhile rather than after the script."""
    body = ("local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end "
            "local t0 = ms() local n = 0 while ms() - t0 < 1000 do redis.call('PING') n = n + 1 end "
            "return n > 0 and 1 or 0")
    with mproxy.connect() as runner, mproxy.connect() as other:
        assert other.call("PING") == b"+PONG\r\n"
        runner.send_command("EVAL", body, "0")
        time.sleep(0.1)
        worst = 0.0
        for _ in range(5):
            t = time.monotonic()
            assert other.call("SET", "side", "x") == b"+OK\r\n"
            assert other.call("PING") == b"+PONG\r\n"
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.05)
        assert runner.read_reply() == b":1\r\n"
        assert worst < 0.3, worst


# ---------------------------------------------------------------------------
# INFO and CLIENT LIST fields, against Redis 7.0

STATS_WORKLOAD = [
    ("SET", "st:a", "1"), ("GET", "st:a"), ("GET", "st:none"), ("LPUSH", "st:a", "x"),
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "st:a"),
    ("EVAL", "return redis.call('LPUSH', KEYS[1], 'x')", "1", "st:a"),
    ("EVAL", "return redis.error_reply('MYERR custom')", "0"),
    ("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"),
    ("NOSUCHCOMMAND", "x"), ("GET",), ("CLIENT", "NOSUCH"), ("MULTI",), ("INCR", "st:n"), ("EXEC",),
    ("SET", "st:a", "2", "XX"), ("DEL", "st:a", "st:n"),
]


def info_sections_of(text):
    """[(section, [(field, value)])] in the order printed."""
    out = []
    for line in text.decode("latin-1").split("\r\n"):
        if line.startswith("# "):
            out.append((line[2:], []))
        elif ":" in line and out:
            k, v = line.split(":", 1)
            out[-1][1].append((k, v))
    return out


def _stats_transcript(ep, arg):
    with ep.connect() as c:
        assert c.call("CONFIG", "RESETSTAT") == b"+OK\r\n"
        for cmd in STATS_WORKLOAD:
            c.call(*cmd)
        return info_sections_of(parse_reply(c.call("INFO", *([arg] if arg else []))))


@pytest.mark.parametrize("arg", [None, "default", "all", "everything", "server", "clients", "persistence",
                                 "stats", "commandstats", "errorstats", "latencystats", "keyspace"])
def test_info_fields_are_redis_fields_in_redis_order(oracle, proxy, arg):
    """Every section and field Redis 7.0 prints, the proxy prints too, in
    Redis's order (the proxy's own sections and fields may come between);
    per-command lines name the same commands."""
    expected = _stats_transcript(oracle, arg)
    actual = _stats_transcript(proxy, arg)
    names = [s for s, _ in actual]
    redis_names = [s for s, _ in expected]
    assert [s for s in names if s in redis_names] == redis_names, names
    got = dict(actual)
    for section, fields in expected:
        mine = [k for k, _ in got[section]]
        theirs = [k for k, _ in fields]
        if section in ("Commandstats", "Latencystats", "Keyspace"):
            assert sorted(mine) == sorted(theirs), section
            continue
        assert [k for k in mine if k in theirs] == theirs, (section, [k for k in theirs if k not in mine])


def _counts(sections):
    d = dict(sections)
    cmds = {}
    for k, v in d.get("Commandstats", []):
        f = dict(x.split("=") for x in v.split(","))
        cmds[k] = (f["calls"], f["rejected_calls"], f["failed_calls"])
    stats = dict(d.get("Stats", []))
    return cmds, d.get("Errorstats", []), stats.get("total_error_replies")


def test_commandstats_and_errorstats_count_as_redis(oracle, proxy):
    """calls, rejected_calls, failed_calls per command, error replies by
    kind and their total: the same after the same commands."""
    expected = _counts(_stats_transcript(oracle, "all"))
    actual = _counts(_stats_transcript(proxy, "all"))
    assert actual[1] == expected[1]
    assert actual[2] == expected[2]
    assert actual[0] == expected[0]


def _blocked_error_counts(ep):
    """A blocked XREADGROUP ended by XGROUP DESTROY (-NOGROUP) and a BLPOP
    on a key of another type: their errors count as Redis counts them."""
    with ep.connect() as me, ep.connect() as blocked:
        me.call("DEL", "bs:s", "bs:l")
        me.call("CONFIG", "RESETSTAT")
        me.call("XGROUP", "CREATE", "bs:s", "g", "$", "MKSTREAM")
        blocked.send_command("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "bs:s", ">")
        deadline = time.monotonic() + 10
        while harness.info_fields(me, "clients")["blocked_clients"] != "1":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        me.call("XGROUP", "DESTROY", "bs:s", "g")
        got = [blocked.read_reply()]
        me.call("DEL", "bs:s")
        fields = harness.info_fields(me, "errorstats")
        stats = harness.info_fields(me, "commandstats")
        me.call("DEL", "bs:s")
        return got, fields.get("errorstat_NOGROUP"), stats.get("cmdstat_xreadgroup", "").split(",usec_per_call")[0]


def test_blocked_commands_errors_count_as_redis(oracle, proxy):
    want = _blocked_error_counts(oracle)
    got = _blocked_error_counts(proxy)
    assert got[0] == want[0]
    assert got[1] == want[1] == "count=1"
    assert [kv for kv in got[2].split(",") if not kv.startswith("usec")] == \
        [kv for kv in want[2].split(",") if not kv.startswith("usec")]


CLIENT_FIELDS = ("id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem "
                 "rbs rbp obl oll omem tot-mem events cmd user redir resp").split()


def client_fields(line):
    return [tuple(kv.split("=", 1)) for kv in line.decode().strip().split(" ")]


def _client_states(ep):
    """CLIENT LIST lines of clients in known states, and CLIENT INFO."""
    out = {}
    with ep.connect() as me, ep.connect() as tx, ep.connect() as sub, ep.connect() as blocked, \
            ep.connect() as named:
        ids = {"tx": parse_reply(tx.call("CLIENT", "ID")), "named": parse_reply(named.call("CLIENT", "ID"))}
        tx.call("MULTI")
        tx.call("SET", "cl:k", "v")
        tx.call("GET", "cl:k")
        sub.call("SUBSCRIBE", "cl:ch", "cl:ch2")
        sub.call("PSUBSCRIBE", "cl:*")
        blocked.send_command("BLPOP", "cl:list", "0")
        named.call("CLIENT", "SETNAME", "somename")
        named.call("SELECT", "3")
        named.call("GET", "x")
        deadline = time.monotonic() + 10
        while True:
            lines = parse_reply(me.call("CLIENT", "LIST")).splitlines()
            if any(b"cmd=blpop" in l for l in lines) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        out["info"] = me.call("CLIENT", "INFO")
        for l in lines:
            f = dict(client_fields(l))
            if f["cmd"] == "blpop":
                out["blocked"] = f
            elif f["id"] == str(ids["tx"]):
                out["tx"] = f
            elif f["id"] == str(ids["named"]):
                out["named"] = f
            elif "psubscribe" in f["cmd"]:
                out["sub"] = f
        out["list_names"] = [k for k, _ in client_fields(lines[0])]
        me.call("LPUSH", "cl:list", "x")
        blocked.read_reply()
        me.call("DEL", "cl:list")
    return out


def test_client_list_fields_as_redis(oracle, proxy):
    expected = _client_states(oracle)
    actual = _client_states(proxy)
    assert actual["list_names"] == CLIENT_FIELDS == expected["list_names"]
    info = dict(client_fields(parse_reply(actual["info"])))
    oinfo = dict(client_fields(parse_reply(expected["info"])))
    assert list(info) == CLIENT_FIELDS
    for k in ("flags", "db", "multi", "argv-mem", "cmd", "user", "resp", "name"):
        assert info[k] == oinfo[k], k
    same = {"tx": ("flags", "multi", "multi-mem", "cmd", "sub", "psub"),
            "sub": ("flags", "sub", "psub", "ssub", "multi", "cmd"),
            "blocked": ("flags", "cmd", "multi"),
            "named": ("flags", "name", "db", "cmd", "multi-mem")}
    for who, keys in same.items():
        for k in keys:
            assert actual[who][k] == expected[who][k], (who, k, actual[who], expected[who])


@pytest.mark.parametrize("arg", [None, "everything"])
def test_info_fields_in_front_of_memcached(oracle, mproxy, arg):
    """The same fields in front of memcached, which has no INFO of its own
    to relay (no persistence: the section says so)."""
    expected = _stats_transcript(oracle, arg)
    actual = dict(_stats_transcript(mproxy, arg))
    for section, fields in expected:
        assert section in actual, section
        if section in ("Commandstats", "Latencystats", "Errorstats", "Keyspace"):
            continue
        mine = [k for k, _ in actual[section]]
        theirs = [k for k, _ in fields]
        assert [k for k in mine if k in theirs] == theirs, (section, [k for k in theirs if k not in mine])
    assert dict(actual["Persistence"])["aof_enabled"] == "0"


def test_publisher_answered_after_subscribers_have_the_message(proxy):
    """Redis hands a message to its subscribers before it answers PUBLISH:
    a subscriber that unsubscribes once the publisher has its reply still
    gets the message first. Through the proxy the message and the reply
    come on different store connections, so this must be made to hold."""
    with proxy.connect() as sub, proxy.connect() as pub:
        for i in range(300):
            assert sub.call("SUBSCRIBE", "order:ch")[:1] == b"*"
            assert pub.call("PUBLISH", "order:ch", str(i)) == b":1\r\n"
            sub.send(encode_command("UNSUBSCRIBE", "order:ch"))
            got = sub.read_replies(2)
            assert got[0] == encode_command("message", "order:ch", str(i)), (i, got)


@pytest.mark.parametrize("how", ["eval", "multi", "fcall"])
def test_script_or_transaction_publisher_answered_after_subscribers(proxy, how):
    """The same for a PUBLISH inside a script, a function or a transaction:
    by the time the caller has the reply, the subscriber has the message."""
    with proxy.connect() as sub, proxy.connect() as pub:
        if how == "fcall":
            pub.call("FUNCTION", "LOAD", "REPLACE", "#!lua name=pubord\n"
                     "redis.register_function('pubord', function(keys, args) "
                     "return redis.call('PUBLISH', args[1], args[2]) end)")
        for i in range(200):
            assert sub.call("SUBSCRIBE", "order:ch")[:1] == b"*"
            if how == "eval":
                r = pub.call("EVAL", "return redis.call('PUBLISH', ARGV[1], ARGV[2])", "0", "order:ch", str(i))
                assert r == b":1\r\n", r
            elif how == "fcall":
                r = pub.call("FCALL", "pubord", "0", "order:ch", str(i))
                assert r == b":1\r\n", r
            else:
                pub.send(encode_command("MULTI") + encode_command("PUBLISH", "order:ch", str(i)) +
                         encode_command("EXEC"))
                assert pub.read_replies(3)[2] == b"*1\r\n:1\r\n"
            sub.send(encode_command("UNSUBSCRIBE", "order:ch"))
            got = sub.read_replies(2)
            assert got[0] == encode_command("message", "order:ch", str(i)), (how, i, got)
