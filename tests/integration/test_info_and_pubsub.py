"""INFO memory and INFO cpu with Redis 7.0's fields.

The checks compare field names, their order and their formats with a
redis-server 7.0 oracle (the values are the proxy's own).
"""

import os
import re

import pytest

import harness
import test_stateful as stateful
from conftest import proxy_binary
from harness import ProxyProcess, parse_reply


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
    """A proxy of this test's own (nothing cached, nothing loaded yet)."""
    p = ProxyProcess(proxy_binary(), store, str(tmp_path / "proxy"))
    p.start()
    yield p
    status = p.stop()
    assert not p.sanitizer_report(), p.sanitizer_report()
    assert status in (0, -15), p.diagnostics()


# ---------------------------------------------------------------------------
# INFO memory, INFO cpu

# The sections Redis 7.0 has that the proxy answers; its own (Scripting,
# Locks, Pubsub, Backend) come between CPU and Keyspace.
REDIS_SECTIONS_OF_PROXY = ("Server", "Clients", "Memory", "Stats", "CPU", "Keyspace")


@pytest.mark.parametrize("args", [("memory",), ("cpu",), ("MEMORY",), ("memory", "cpu"),
                                  ("cpu", "memory"), (), ("default",), ("all",), ("everything",)],
                         ids=lambda a: "-".join(a) or "no-args")
def test_info_memory_and_cpu_fields_and_order_match_redis(oracle, real_proxy, args):
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
    for section in ("Memory", "CPU"):
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
        m0 = harness.info_fields(c, "memory")
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
