"""Redis 7 Functions through the proxy: FUNCTION LOAD/LIST/DELETE/FLUSH/DUMP/
RESTORE/STATS/KILL/HELP and FCALL/FCALL_RO, compared byte for byte with the
oracle; payloads exchanged both ways; libraries kept across a restart; FCALL
under the proxy's key locks."""

import os
import struct
import threading
import time

import pytest

import harness
from harness import Step, parse_reply

LIB = """#!lua name=lib1
local calls = 0
redis.register_function('incr_by', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)
redis.register_function('count', function() calls = calls + 1 return calls end)
redis.register_function('echo', function(keys, args) return {keys, args} end)
redis.register_function{function_name='ro_get', callback=function(keys) return redis.call('GET', keys[1]) end,
  flags={'no-writes'}, description='reads a key'}
redis.register_function{function_name='ro_set', callback=function(keys) return redis.call('SET', keys[1], 'x') end,
  flags={'no-writes', 'allow-oom'}}
redis.register_function('fail', function() return redis.call('NOSUCHCMD') end)
redis.register_function('pfail', function() return redis.pcall('INCR', 'notanumber_key_holder') end)
redis.register_function('raise', function() error('plain text') end)
redis.register_function('raise_tbl', function() error({err='MYCODE custom'}) end)
redis.register_function('status', function() return redis.status_reply('FINE') end)
redis.register_function('errrep', function() return redis.error_reply('BAD thing') end)
redis.register_function('globals', function() return {type(string), type(cjson), type(redis.call), type(redis.register_function)} end)
redis.register_function('keys_global', function() return KEYS end)
redis.register_function('argv_global', function() return ARGV end)
redis.register_function('setglobal', function() x = 1 end)
redis.register_function('resp3', function() redis.setresp(3) return redis.call('HGETALL', 'h') end)
redis.register_function('float', function() return 3.99 end)
redis.register_function('nested', function() return {1, {2, {3, 'x'}}, false, true} end)
redis.register_function('sha', function(k, a) return redis.sha1hex(a[1]) end)
redis.register_function('loadstr', function() return loadstring('return 7')() end)
redis.register_function('mutate', function(keys) keys[1] = 'changed' return keys[1] end)
"""


def _flush_functions(*eps):
    for ep in eps:
        with ep.connect() as c:
            assert c.call("FUNCTION", "FLUSH") == b"+OK\r\n"


def listing(conn, *args):
    """FUNCTION LIST parsed, with libraries and each library's functions in
    name order (Redis lists both in its hash tables' order)."""
    libs = parse_reply(conn.call("FUNCTION", "LIST", *args))
    assert isinstance(libs, list), libs
    out = []
    for lib in libs:
        lib = list(lib)
        lib[5] = sorted(lib[5], key=lambda f: f[1])
        out.append(lib)
    return sorted(out, key=lambda l: l[1])


def assert_same_listing(oracle, proxy, *args):
    with oracle.connect() as o, proxy.connect() as p:
        assert listing(p, *args) == listing(o, *args)


@pytest.fixture
def fdiff(diff, oracle, proxy):
    _flush_functions(oracle, proxy)
    yield diff
    _flush_functions(oracle, proxy)


# ---- FUNCTION LOAD ------------------------------------------------------------

LOAD_ERRORS = [
    "return 1",
    "#!lua",
    "#!lua\n",
    "#!lua name=a-b\n",
    "#!lua name=\n",
    "#!lua name=x name=y\n",
    "#!lua name=x foo=bar\n",
    "#!lua NAME=ok\nredis.register_function('f_ok_upper', function() end)",
    "#!luax name=x\n",
    "#!LUA name=ok2\nredis.register_function('f_ok2', function() end)",
    '#!lua "name=x\n',
    "#!lua  name=spaced \nredis.register_function('f_sp', function() end)",
    "#!lua name=x\nreturn 1",
    "#!lua name=x\n",
    "#!lua name=x\nlocal a = 1 +",
    "#!lua name=x\nx = 1",
    "#!lua name=x\nlocal s = string.len('a')",
    "#!lua name=x\nprint('a')",
    "#!lua name=x\nerror('boom')",
    "#!lua name=x\nlocal t = nil; t.y = 1",
    "#!lua name=x\nredis.call('PING')",
    "#!lua name=x\nredis.setresp(3)",
    "#!lua name=x\nredis.pcall('PING')",
    "#!lua name=x\nlocal v = redis.REDIS_VERSION .. redis.REDIS_VERSION_NUM .. redis.LOG_WARNING\n"
    "redis.register_function('v', function() return v end)",
    "#!lua name=x\nredis.log(redis.LOG_NOTICE, 'loading')\nredis.register_function('lg', function() end)",
    "#!lua name=x\nredis.register_function()",
    "#!lua name=x\nredis.register_function('a', function() end, 3)",
    "#!lua name=x\nredis.register_function('a')",
    "#!lua name=x\nredis.register_function(5)",
    "#!lua name=x\nredis.register_function(5, function() end)",
    "#!lua name=x\nredis.register_function('', function() end)",
    "#!lua name=x\nredis.register_function('a-b', function() end)",
    "#!lua name=x\nredis.register_function('a', 'b')",
    "#!lua name=x\nredis.register_function('a', function() end)\nredis.register_function('a', function() end)",
    "#!lua name=x\nredis.register_function('a', function() end)\nredis.register_function('A', function() end)",
    "#!lua name=x\nredis.register_function({})",
    "#!lua name=x\nredis.register_function({[1]=2})",
    "#!lua name=x\nredis.register_function{function_name='a'}",
    "#!lua name=x\nredis.register_function{callback=function() end}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, foo=1}",
    "#!lua name=x\nredis.register_function{function_name='a', callback='no'}",
    "#!lua name=x\nredis.register_function{function_name={}, callback=function() end}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, flags='no-writes'}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, flags={'bad'}}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, flags={1}}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, description={}}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, description=7}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end,"
    " flags={'no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'}}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, flags={'NO-WRITES'}}",
    "#!lua name=x\nredis.register_function{function_name='a', callback=function() end, flags={}}",
    "#!lua name=x\nlocal rf = redis.register_function\nrf('a', function() end)",
    "#!lua name=x\nredis.register_function('a', function() end)\nredis.x = 1",
    "#!lua name=x\nredis.register_function('a', function() end)\nerror({err='MINE oops'})",
]


@pytest.mark.parametrize("code", LOAD_ERRORS)
def test_function_load(fdiff, oracle, proxy, code):
    fdiff.run([("FUNCTION", "LOAD", code)])
    assert_same_listing(oracle, proxy, "WITHCODE")


def test_function_load_timeout(fdiff):
    fdiff.run([("FUNCTION", "LOAD", "#!lua name=x\nwhile true do end"), ("FUNCTION", "LIST")])


def test_function_load_options(fdiff):
    code = "#!lua name=opt\nredis.register_function('o1', function() return 1 end)"
    code2 = "#!lua name=opt\nredis.register_function('o2', function() return 2 end)"
    other = "#!lua name=other\nredis.register_function('o2', function() return 3 end)"
    fdiff.run([
        ("FUNCTION", "LOAD"),
        ("FUNCTION", "LOAD", "REPLACE"),
        ("FUNCTION", "LOAD", "BOGUS", code),
        ("FUNCTION", "LOAD", code),
        ("FUNCTION", "LOAD", code),
        ("FCALL", "o1", "0"),
        ("FUNCTION", "LOAD", "replace", code2),
        ("FCALL", "o1", "0"),
        ("FCALL", "o2", "0"),
        ("FUNCTION", "LOAD", other),
        ("FUNCTION", "LOAD", "REPLACE", "REPLACE", code),
        ("FCALL", "o1", "0"),
        ("FUNCTION", "LOAD", other),
        ("FCALL", "O2", "0"),
        ("FUNCTION", "LOAD", "REPLACE", "#!lua name=other\nredis.register_function('o1', function() end)"),
        ("FUNCTION", "LOAD", "REPLACE", "#!lua name=other\nreturn 1"),
        ("FCALL", "o2", "0"),
    ])


# ---- FCALL ----------------------------------------------------------------------

FCALLS = [
    ("FCALL", "incr_by", "1", "{f}k", "5"),
    ("FCALL", "incr_by", "1", "{f}k", "5"),
    ("FCALL", "incr_by", "1", "{f}k", "x"),
    ("GET", "{f}k"),
    ("FCALL", "count", "0"),
    ("FCALL", "count", "0"),
    ("FCALL", "COUNT", "0"),
    ("FCALL", "echo", "2", "a", "b", "c", "d"),
    ("FCALL", "echo", "0"),
    ("FCALL", "echo", "0", "x"),
    ("FCALL", "ro_get", "1", "{f}k"),
    ("FCALL_RO", "ro_get", "1", "{f}k"),
    ("FCALL", "ro_set", "1", "{f}k"),
    ("FCALL_RO", "ro_set", "1", "{f}k"),
    ("FCALL_RO", "incr_by", "1", "{f}k", "1"),
    ("FCALL_RO", "nosuch", "0"),
    ("FCALL", "nosuch", "0"),
    ("FCALL", "nosuch", "x"),
    ("FCALL", "count", "x"),
    ("FCALL", "count", "-1"),
    ("FCALL", "count", "1"),
    ("FCALL", "count", "3", "a"),
    ("FCALL", "count"),
    ("FCALL",),
    ("FCALL", "fail", "0"),
    ("SET", "notanumber_key_holder", "abc"),
    ("FCALL", "pfail", "0"),
    ("FCALL", "raise", "0"),
    ("FCALL", "raise_tbl", "0"),
    ("FCALL", "status", "0"),
    ("FCALL", "errrep", "0"),
    ("FCALL", "globals", "0"),
    ("FCALL", "keys_global", "0"),
    ("FCALL", "argv_global", "0"),
    ("FCALL", "setglobal", "0"),
    ("HSET", "h", "a", "1"),
    ("FCALL", "resp3", "0"),
    ("FCALL", "float", "0"),
    ("FCALL", "nested", "0"),
    ("FCALL", "sha", "0", "abc"),
    ("FCALL", "loadstr", "0"),
    ("FCALL", "mutate", "1", "orig"),
    ("EVAL", "return redis.call('FCALL', 'count', '0')", "0"),
    ("EVAL", "return redis.pcall('FUNCTION', 'LIST')", "0"),
    ("EVAL", "return type(redis.register_function)", "0"),
]


def test_fcall_differential(fdiff):
    fdiff.run([("FUNCTION", "LOAD", LIB)] + FCALLS)


@pytest.mark.parametrize("cmd", FCALLS, ids=lambda c: " ".join(c)[:40])
def test_fcall_each(fdiff, cmd):
    fdiff.run([("FUNCTION", "LOAD", LIB), ("SET", "notanumber_key_holder", "abc"), cmd])


def test_fcall_in_multi(fdiff):
    fdiff.run([
        ("FUNCTION", "LOAD", LIB),
        ("MULTI",),
        ("FCALL", "incr_by", "1", "{m}a", "2"),
        ("FCALL", "nosuch", "0"),
        ("FCALL_RO", "ro_get", "1", "{m}a"),
        ("INCR", "{m}a"),
        ("EXEC",),
        ("GET", "{m}a"),
    ])


# ---- FUNCTION LIST / DELETE / FLUSH / STATS / HELP ---------------------------------

def test_function_list_and_delete(fdiff):
    libs = ["#!lua name=alpha\nredis.register_function('fa', function() end)",
            "#!lua name=beta\nredis.register_function{function_name='fb', callback=function() end,"
            " description='B', flags={'no-writes'}}",
            "#!lua name=gamma_1\nredis.register_function('fc', function() end)"]
    steps = [("FUNCTION", "LOAD", l) for l in libs]
    steps += [
        ("FUNCTION", "LIST", "LIBRARYNAME", "alpha"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "beta", "WITHCODE"),
        ("FUNCTION", "LIST", "withcode", "libraryname", "gam*"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "ALPHA"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "nomatch*"),
        ("FUNCTION", "LIST", "LIBRARYNAME"),
        ("FUNCTION", "LIST", "WITHCODE", "WITHCODE"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "a", "LIBRARYNAME", "b"),
        ("FUNCTION", "LIST", "bogus"),
        Step(args=("FUNCTION", "LIST"), unordered=True),
        ("FUNCTION", "DELETE", "alpha"),
        ("FUNCTION", "DELETE", "alpha"),
        ("FUNCTION", "DELETE", "BETA"),
        ("FUNCTION", "DELETE"),
        ("FUNCTION", "DELETE", "a", "b"),
        ("FCALL", "fa", "0"),
        ("FCALL", "fb", "0"),
        ("FUNCTION", "STATS"),
        ("FUNCTION", "FLUSH", "bogus"),
        ("FUNCTION", "FLUSH", "SYNC", "x"),
        ("FUNCTION", "FLUSH", "async"),
        ("FUNCTION", "STATS"),
        ("FUNCTION", "STATS", "x"),
        ("FUNCTION", "LIST"),
        ("FUNCTION", "FLUSH", "SYNC"),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "HELP"),
        ("FUNCTION", "help", "x"),
        ("FUNCTION", "NOSUCH"),
        ("FUNCTION",),
        ("FUNCTION", "KILL"),
        ("FUNCTION", "DUMP", "x"),
    ]
    fdiff.run(steps)


# ---- DUMP / RESTORE ----------------------------------------------------------------

def crc64(data):
    poly = 0x95AC9329AC4BC9B5
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc


def rdb_string(b):
    n = len(b)
    if n < 64:
        head = bytes([n])
    elif n < 16384:
        head = bytes([0x40 | (n >> 8), n & 0xFF])
    else:
        head = b"\x80" + struct.pack(">I", n)
    return head + b


def payload(body, version=10, good_crc=True):
    data = body + struct.pack("<H", version)
    crc = crc64(data)
    if not good_crc:
        crc ^= 1
    return data + struct.pack("<Q", crc)


def lib_code(name, fn, ret="1"):
    return ("#!lua name=%s\nredis.register_function('%s', function() return %s end)" % (name, fn, ret)).encode()


def test_crc64_matches_the_oracles_payloads(oracle):
    _flush_functions(oracle)
    with oracle.connect() as c:
        c.call("FUNCTION", "LOAD", LIB)
        dump = parse_reply(c.call("FUNCTION", "DUMP"))
        c.call("FUNCTION", "FLUSH")
    assert struct.unpack("<Q", dump[-8:])[0] == crc64(dump[:-8])
    assert dump[0] == 245 and dump[-10:-8] == b"\x0a\x00"


RESTORE_PAYLOADS = {
    "empty": payload(b""),
    "one": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1"))),
    "two": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")) + b"\xf5" + rdb_string(lib_code("r2", "rf2"))),
    "long": payload(b"\xf5" + rdb_string(lib_code("r3", "rf3", "'" + "x" * 20000 + "'"))),
    "dup_lib": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")) + b"\xf5" + rdb_string(lib_code("r1", "rf9"))),
    "dup_fn": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")) + b"\xf5" + rdb_string(lib_code("r2", "rf1"))),
    "bad_crc": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")), good_crc=False),
    "new_version": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")), version=11),
    "old_version": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")), version=9),
    "short": b"\x00" * 9,
    "not_function": payload(b"\x00" + rdb_string(b"abc")),
    "pre_ga": payload(b"\xf6" + rdb_string(lib_code("r1", "rf1"))),
    "truncated": payload(b"\xf5" + rdb_string(lib_code("r1", "rf1"))[:-5]),
    "int_string": payload(b"\xf5\xc0\x05"),
    "bad_code": payload(b"\xf5" + rdb_string(b"#!lua name=bad\nreturn 1")),
    "no_metadata": payload(b"\xf5" + rdb_string(b"return 1")),
}


@pytest.mark.parametrize("name", sorted(RESTORE_PAYLOADS))
@pytest.mark.parametrize("policy", [None, "APPEND", "REPLACE", "FLUSH"])
def test_function_restore(fdiff, oracle, proxy, name, policy):
    extra = (policy,) if policy else ()
    existing = "#!lua name=r1\nredis.register_function('old1', function() return 'old' end)"
    fdiff.run([
        ("FUNCTION", "LOAD", existing),
        ("FUNCTION", "RESTORE", RESTORE_PAYLOADS[name]) + extra,
        ("FCALL", "old1", "0"),
        ("FCALL", "rf1", "0"),
    ])
    assert_same_listing(oracle, proxy, "WITHCODE")


def test_function_restore_arguments(fdiff):
    p = RESTORE_PAYLOADS["one"]
    fdiff.run([
        ("FUNCTION", "RESTORE", p, "BOGUS"),
        ("FUNCTION", "RESTORE", p, "FLUSH", "x"),
        ("FUNCTION", "RESTORE"),
        ("FUNCTION", "RESTORE", p, "flush"),
        ("FUNCTION", "LIST"),
    ])


def test_dump_payloads_cross_both_ways(oracle, proxy):
    """A dump from Redis 7.0 (LZF-compressed) restores into the proxy and a
    dump from the proxy restores into Redis; FUNCTION LIST WITHCODE agrees."""
    libs = [LIB, "#!lua name=second\n-- " + "padding " * 200 +
            "\nredis.register_function('second_fn', function() return 2 end)"]
    _flush_functions(oracle, proxy)
    try:
        with oracle.connect() as o, proxy.connect() as p:
            for l in libs:
                assert parse_reply(o.call("FUNCTION", "LOAD", l)) in (b"lib1", b"second")
            odump = parse_reply(o.call("FUNCTION", "DUMP"))
            assert p.call("FUNCTION", "RESTORE", odump) == b"+OK\r\n"
            assert listing(p, "WITHCODE") == listing(o, "WITHCODE")
            assert p.call("FCALL", "second_fn", "0") == b":2\r\n"
            pdump = parse_reply(p.call("FUNCTION", "DUMP"))
            assert o.call("FUNCTION", "FLUSH") == b"+OK\r\n"
            assert o.call("FUNCTION", "RESTORE", pdump) == b"+OK\r\n"
            assert listing(o, "WITHCODE") == listing(p, "WITHCODE")
            # and the proxy reads its own payload back
            assert p.call("FUNCTION", "RESTORE", pdump, "REPLACE") == b"+OK\r\n"
            assert listing(p, "WITHCODE") == listing(o, "WITHCODE")
            # a single library dumps to a payload Redis restores to the same library
            assert p.call("FUNCTION", "DELETE", "second") == b"+OK\r\n"
            assert o.call("FUNCTION", "RESTORE", parse_reply(p.call("FUNCTION", "DUMP")), "FLUSH") == b"+OK\r\n"
            assert listing(o, "WITHCODE") == listing(p, "WITHCODE")
    finally:
        _flush_functions(oracle, proxy)


# ---- persistence --------------------------------------------------------------------

def _proxy_with_file(store, tmp_path, path):
    binary = os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))
    return harness.ProxyProcess(binary, store, str(tmp_path), extra_args=("--functions-file", path))


def _stop(p):
    status = p.stop()
    report = p.sanitizer_report()
    assert not report, report
    assert status in (0, -15), p.diagnostics()


def test_functions_survive_a_restart(store, tmp_path, real_proxy):
    path = str(tmp_path / "functions.rdb")
    p = _proxy_with_file(store, tmp_path, path).start()
    try:
        with p.connect() as c:
            assert c.call("FUNCTION", "LOAD", LIB) == b"$4\r\nlib1\r\n"
            assert c.call("FUNCTION", "LOAD", lib_code("keep2", "k2", "'two'")) == b"$5\r\nkeep2\r\n"
            assert c.call("FUNCTION", "LOAD", lib_code("gone", "g1")) == b"$4\r\ngone\r\n"
            assert c.call("FUNCTION", "DELETE", "gone") == b"+OK\r\n"
            before = parse_reply(c.call("FUNCTION", "LIST", "WITHCODE"))
    finally:
        _stop(p)
    assert os.path.getsize(path) > 0
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    p = _proxy_with_file(store, tmp_path, path).start()
    try:
        with p.connect() as c:
            assert parse_reply(c.call("FUNCTION", "LIST", "WITHCODE")) == before
            assert c.call("FCALL", "k2", "0") == b"$3\r\ntwo\r\n"
            assert c.call("FCALL", "g1", "0") == b"-ERR Function not found\r\n"
            assert c.call("FCALL", "incr_by", "1", "restart:k", "3") == b":3\r\n"
            assert c.call("FUNCTION", "FLUSH") == b"+OK\r\n"
    finally:
        _stop(p)
    p = _proxy_with_file(store, tmp_path, path).start()
    try:
        with p.connect() as c:
            assert c.call("FUNCTION", "LIST") == b"*0\r\n"
    finally:
        _stop(p)


def test_a_corrupt_functions_file_stops_the_start(store, tmp_path, real_proxy):
    path = str(tmp_path / "functions.rdb")
    with open(path, "wb") as f:
        f.write(payload(b"\xf5" + rdb_string(lib_code("r1", "rf1")), good_crc=False))
    p = _proxy_with_file(store, tmp_path, path)
    with pytest.raises(RuntimeError):
        p.start(timeout=5)
    with open(p.logfile) as f:
        assert "DUMP payload version or checksum are wrong" in f.read()
    # a payload the oracle wrote is a valid file
    with open(path, "wb") as f:
        f.write(payload(b"\xf5" + rdb_string(lib_code("r1", "rf1", "'ok'"))))
    p = _proxy_with_file(store, tmp_path, path).start()
    try:
        with p.connect() as c:
            assert c.call("FCALL", "rf1", "0") == b"$2\r\nok\r\n"
    finally:
        _stop(p)


# ---- locks, concurrency, KILL --------------------------------------------------------

BANK = """#!lua name=bank
redis.register_function('transfer', function(keys, args)
  local amount = tonumber(args[1])
  local from = tonumber(redis.call('GET', keys[1]) or '0')
  if from < amount then return 0 end
  redis.call('DECRBY', keys[1], amount)
  redis.call('INCRBY', keys[2], amount)
  return 1
end)
redis.register_function{function_name='total', callback=function(keys)
  local t = 0
  for _, k in ipairs(keys) do t = t + tonumber(redis.call('GET', k) or '0') end
  return t
end, flags={'no-writes'}}
redis.register_function('spin', function(keys, args)
  local stop = tonumber(args[1])
  local t0 = redis.call('TIME')
  while true do
    local t = redis.call('TIME')
    if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > stop then break end
  end
  return redis.call('INCR', keys[1])
end)
redis.register_function{function_name='forever', callback=function() while true do end end}
"""


@pytest.fixture
def bank(proxy, oracle):
    _flush_functions(proxy)
    with proxy.connect() as c:
        c.call("FLUSHALL")
        assert c.call("FUNCTION", "LOAD", BANK) == b"$4\r\nbank\r\n"
    yield
    _flush_functions(proxy)


def test_fcall_conserves_the_total(proxy, bank):
    accounts = ["acct:%d" % i for i in range(6)]
    with proxy.connect() as c:
        for a in accounts:
            c.call("SET", a, "100")
    stop = threading.Event()
    errors = []

    def mover(seed):
        import random
        rnd = random.Random(seed)
        with proxy.connect() as c:
            while not stop.is_set():
                a, b = rnd.sample(accounts, 2)
                r = c.call("FCALL", "transfer", "2", a, b, str(rnd.randint(1, 30)))
                if r not in (b":0\r\n", b":1\r\n"):
                    errors.append(r)

    def reader():
        with proxy.connect() as c:
            while not stop.is_set():
                r = c.call("FCALL_RO", "total", str(len(accounts)), *accounts)
                if r != b":600\r\n":
                    errors.append(r)
                vals = [parse_reply(c.call("GET", a)) for a in accounts]
                if any(v is None for v in vals):
                    errors.append(vals)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(4)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    with proxy.connect() as c:
        assert sum(int(parse_reply(c.call("GET", a))) for a in accounts) == 600


def test_fcalls_on_disjoint_keys_run_concurrently(proxy, bank):
    """A long FCALL on one key does not hold up FCALLs on other keys; one on
    the same key waits for it."""
    result = {}

    def slow():
        with proxy.connect() as c:
            result["slow"] = c.call("FCALL", "spin", "1", "conc:a", "1500000")
            result["slow_done"] = time.monotonic()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)
    with proxy.connect() as c:
        assert c.call("FCALL", "spin", "1", "conc:b", "0") == b":1\r\n"
        other_done = time.monotonic()
        # the same key waits for the slow call: it sees its increment
        assert c.call("FCALL", "spin", "1", "conc:a", "0") == b":2\r\n"
    t.join(30)
    assert result["slow"] == b":1\r\n"
    assert other_done < result["slow_done"]


def test_function_kill_and_stats(proxy, bank):
    with proxy.connect() as c:
        c.call("CONFIG", "SET", "busy-reply-threshold", "100")
    try:
        holder = harness.RespConnection(proxy.host, proxy.port)
        holder.send(harness.encode_command("FCALL", "forever", "1", "kill:k"))
        time.sleep(0.4)
        with proxy.connect() as c:
            stats = parse_reply(c.call("FUNCTION", "STATS"))
            running = stats[1]
            assert running[0] == b"name" and running[1] == b"forever", stats
            assert running[3] == [b"fcall", b"forever", b"1", b"kill:k"], stats
            assert c.call("SCRIPT", "KILL") == (b"-BUSY Redis is busy running a script. You can only call "
                                                b"FUNCTION KILL or SHUTDOWN NOSAVE.\r\n")
            assert c.call("FUNCTION", "KILL") == b"+OK\r\n"
            reply = holder.read_reply()
            assert reply.startswith(b"-ERR Script killed by user with"), reply
            assert b"script: forever, on @user_function:" in reply, reply
            assert c.call("FUNCTION", "KILL") == b"-NOTBUSY No scripts in execution right now.\r\n"
            assert parse_reply(c.call("FUNCTION", "STATS"))[1] is None
        holder.close()
    finally:
        with proxy.connect() as c:
            c.call("CONFIG", "SET", "busy-reply-threshold", "5000")


def test_function_stats_while_an_eval_is_busy(proxy, bank):
    with proxy.connect() as c:
        c.call("CONFIG", "SET", "busy-reply-threshold", "100")
    try:
        holder = harness.RespConnection(proxy.host, proxy.port)
        holder.send(harness.encode_command("EVAL", "while true do end", "0"))
        time.sleep(0.4)
        with proxy.connect() as c:
            assert c.call("FUNCTION", "STATS") == (b"-BUSY Redis is busy running a script. You can only call "
                                                   b"SCRIPT KILL or SHUTDOWN NOSAVE.\r\n")
            assert c.call("FUNCTION", "KILL") == (b"-BUSY Redis is busy running a script. You can only call "
                                                  b"SCRIPT KILL or SHUTDOWN NOSAVE.\r\n")
            assert c.call("SCRIPT", "KILL") == b"+OK\r\n"
        assert holder.read_reply().startswith(b"-ERR Script killed by user with")
        holder.close()
    finally:
        with proxy.connect() as c:
            c.call("CONFIG", "SET", "busy-reply-threshold", "5000")


RUNTIME_PROBES = [
    "return type(_G)",
    "return type(getfenv)",
    "return tostring(rawget(_G, 'string') ~= nil)",
    "local n = 0 for k, v in pairs(_G) do n = n + 1 end return n",
    "local t = {} for k in pairs(_G) do t[#t + 1] = k end table.sort(t) return t",
    "return type(os)",
    "return tostring(getmetatable(_G) ~= nil)",
    "return type(__redis__err__handler)",
    "return redis.REDIS_VERSION_NUM",
    "return type(math.random)",
    "setmetatable(_G, nil) return 1",
    "_G.x = 1 return 1",
    "rawset(_G, 'x', 1) return 1",
    "return rawget(_G, 'nosuch')",
    "return _G.nosuch",
    "return type(_G._G)",
    "return cjson.encode({1, 2})",
    "return bit.band(7, 3)",
    "return struct.pack('>I2', 258)",
    "return cmsgpack.unpack(cmsgpack.pack({1, 'a'}))",
    "return string.rep('x', 3)",
    "local c = coroutine.create(function() return redis.call('PING') end) return {coroutine.resume(c)}",
    "return redis.call('PING')",
    "return pcall(redis.call, 'NOSUCH')",
    "return type(redis.setresp)",
    "return type(redis.acl_check_cmd)",
    "return redis.acl_check_cmd('GET', 'x')",
    "return math.random(100)",
    "return loadstring('return type(KEYS)')()",
]


@pytest.mark.parametrize("body", RUNTIME_PROBES)
def test_function_runtime_environment(fdiff, body):
    lib = "#!lua name=probe\nredis.register_function('p', function(keys, args) %s end)" % body
    fdiff.run([("FUNCTION", "LOAD", lib), ("FCALL", "p", "0")])
