"""Commands the proxy emulates on stores that lack them, byte for byte
against Redis 7.0.

`store-emulate all` makes the proxy run every emulation it has even in
front of a current store, so each one is compared with the oracle here; the
same cases run in front of each old release built into build/stores
(with `store-emulate release:<v>`, so the proxy picks the store-side steps
that release has), directly, through EVAL and inside MULTI/EXEC.
"""

import os
import shlex
import subprocess
import threading

import pytest

import harness
from conftest import OLD_RELEASES, old_redis_binary, proxy_binary, target_is_store
from harness import Endpoint, ProxyProcess, Step



def T(cmd):
    """A step whose reply carries a time that may tick between the two
    servers: only its type is compared (the values are checked in
    test_expiry_values)."""
    return Step(args=tuple(shlex.split(cmd)), same_type=True)


def N(cmd):
    """A step an old release answers natively in its own way (it is not
    emulated there): compared only in front of a current store."""
    st = Step(args=tuple(shlex.split(cmd)))
    st.native = True
    return st


# Each case: the steps, compared reply by reply. Setup steps use only what
# every release in the cache has natively (or what the proxy emulates).
CASES = {
    "set_options": [
        "SET k v", "SET k v NX", "GET k", "SET k w XX", "GET k", "SET nokey v XX", "EXISTS nokey",
        "SET k2 v NX", "SET k2 x NX GET", "SET k3 x NX GET", "GET k3", "SET k x GET", "SET k y XX GET",
        "SET missing y XX GET", "EXISTS missing", "SET k z GET EX 100", T("TTL k"), "SET k z KEEPTTL", T("TTL k"),
        "SET k z PX 100000", T("PTTL k"), "SET k z", "TTL k",
        "SET k z EXAT 4000000000", T("TTL k"), "SET k z PXAT 4000000000000 GET", T("TTL k"),
        "SET k z EXAT 1", "EXISTS k", "SET k z PXAT 1 GET", "EXISTS k",
        "SET k nx nx", "GET k", "SET k v nx nx xx", "SET k v xx nx", "SET k v EX 10 PX 100", "SET k v EX 10 KEEPTTL",
        "SET k v KEEPTTL EX 10", "SET k v EX", "SET k v BOGUS", "SET k v EX 0", "SET k v EX -1", "SET k v PX abc",
        "SET k v EX 9223372036854775807", "SET k v PX 9223372036854775807", "SET k v EXAT 0", "SET k v ex 10 ex 20",
        T("TTL k"), "SET k v GET GET", "RPUSH list a", "SET list v GET", "LRANGE list 0 -1", "SET list v NX GET",
        "SET list v", "GET list",
    ],
    "setex_psetex": [
        "SETEX k 100 v", T("TTL k"), "GET k", "PSETEX k 100000 w", T("PTTL k"), "GET k", "SETEX k 0 v",
        "SETEX k -5 v", "PSETEX k 0 v", "SETEX k abc v", "PSETEX k 1.5 v", "SETEX k 9223372036854775807 v",
        "GET k", "RPUSH l a", "SETEX l 10 v", "GET l",
    ],
    "getdel_getset": [
        "GETDEL k", "SET k v", "GETDEL k", "EXISTS k", "GETDEL k", "RPUSH l a", "GETDEL l", "LRANGE l 0 -1",
        "GETSET k v1", "GETSET k v2", "GET k", "GETSET l v", "LRANGE l 0 -1", "SET e ''", "GETDEL e", "EXISTS e",
    ],
    "getex": [
        "GETEX k", "GETEX k EX 10", "SET k v", "GETEX k", "TTL k", "GETEX k EX 100", T("TTL k"),
        "GETEX k PERSIST", "TTL k", "GETEX k PX 100000", T("PTTL k"), "GETEX k EXAT 4000000000", T("TTL k"),
        "GETEX k PXAT 4000000000000", T("TTL k"), "GETEX k EX 0", "GETEX k EX -3", "GETEX k PX abc",
        "GETEX k EX 10 PX 10", "GETEX k PERSIST EX 10", "GETEX k EX 10 PERSIST", "GETEX k KEEPTTL", "GETEX k NX",
        "GETEX k GET", "GETEX k EX", "GETEX missing EX 0", "GETEX missing BOGUS", "GETEX k EXAT 1", "EXISTS k",
        "RPUSH l a", "GETEX l", "GETEX l EX 10", "TTL l", "GETEX l EX 0",
    ],
    "unlink": [
        "UNLINK a", "SET a 1", "SET b 2", "RPUSH c x", "UNLINK a b c d", "EXISTS a", "EXISTS c", "UNLINK a a",
    ],
    "hset": [
        "HSET h a 1", "HSET h a 2 b 3 c 4", "HGET h a", "HGET h c", "HSET h a 1 a 2 d 5", "HGET h a", "HLEN h",
        "HSET h a", "HSET h a 1 b", "HMSET h x 1 y 2", "HGET h y", "HMSET h x", "HMSET h x 1 y",
        "SET s v", "HSET s a 1 b 2", "HMSET s a 1", "GET s", "HSET new f v", "HGETALL new",
    ],
    "expire_family": [
        "EXPIRE k 100", "SET k v", "EXPIRE k 100", T("TTL k"), "PEXPIRE k 200000", T("PTTL k"),
        "EXPIREAT k 4000000000", T("TTL k"), "PEXPIREAT k 4000000000000", T("TTL k"), "PERSIST k", "TTL k",
        "PTTL k", "PERSIST k", "PTTL missing", "TTL missing", "PEXPIRE missing 100", "PEXPIREAT missing 100",
        "EXPIRE k abc", "PEXPIRE k 1.5", "EXPIRE k 9223372036854775807", "EXPIREAT k 9223372036854775807",
        "PEXPIRE k 9223372036854775807", "PEXPIREAT k 9223372036854775807",
        "EXPIRE k -9223372036854775808",
        "SET k2 v", "EXPIRE k2 0", "EXISTS k2", "SET k2 v", "PEXPIRE k2 -5", "EXISTS k2", "SET k2 v",
        "EXPIREAT k2 1", "EXISTS k2", "SET k2 v", "PEXPIREAT k2 1", "EXISTS k2",
    ],
    "expire_options": [
        "SET k v", "EXPIRE k 100 XX", "TTL k", "EXPIRE k 100 NX", T("TTL k"), "EXPIRE k 200 NX", T("TTL k"),
        "EXPIRE k 200 XX", T("TTL k"), "EXPIRE k 100 GT", T("TTL k"), "EXPIRE k 300 GT", T("TTL k"),
        "EXPIRE k 400 LT", T("TTL k"), "EXPIRE k 150 LT", T("TTL k"), "PERSIST k", "EXPIRE k 100 GT", "TTL k",
        "EXPIRE k 100 LT", T("TTL k"), "PEXPIRE k 50000 lt", T("PTTL k"), "EXPIREAT k 4000000000 gt", T("TTL k"),
        "PEXPIREAT k 4100000000000 XX GT", T("TTL k"), "EXPIRE k 10 NX XX", "EXPIRE k 10 NX GT", "EXPIRE k 10 NX LT",
        "EXPIRE k 10 GT LT", "EXPIRE k 10 BOGUS", "EXPIRE k 10 XX BOGUS", "EXPIRE k abc NX XX",
        "EXPIRE k abc BOGUS", "EXPIRE missing 10 NX", "EXPIRE missing 10 XX", "EXPIRE k 0 GT", "EXISTS k",
        "SET k v", "EXPIRE k -1 LT", "EXISTS k", "SET k v", "EXPIRE k 100 XX XX", "TTL k", "EXPIRE k 100 nx nx",
        T("TTL k"),
    ],
    "lmove": [
        "RPUSH src a b c", "LMOVE src dst LEFT RIGHT", "LMOVE src dst RIGHT LEFT", "LRANGE src 0 -1",
        "LRANGE dst 0 -1", "LMOVE src dst LEFT LEFT", "EXISTS src", "LMOVE src dst LEFT LEFT", "LMOVE dst dst LEFT RIGHT",
        "LRANGE dst 0 -1", "LMOVE dst dst right left", "LRANGE dst 0 -1", "LMOVE dst dst UP LEFT",
        "LMOVE dst dst LEFT DOWN", "LMOVE missing dst LEFT DOWN", "SET str v", "LMOVE str dst LEFT LEFT",
        "LMOVE dst str LEFT LEFT", "LRANGE dst 0 -1", "LMOVE missing str LEFT LEFT", "RPOPLPUSH dst other",
        "RPOPLPUSH dst str", "RPOPLPUSH missing x", "RPOPLPUSH str x", "LRANGE other 0 -1", "RPOPLPUSH dst dst",
        "LRANGE dst 0 -1",
    ],
    "pop_count": [
        "RPUSH l a b c d e", "LPOP l 2", "RPOP l 2", "LRANGE l 0 -1", "LPOP l 0", "RPOP l 0", "LPOP l 10",
        "EXISTS l", "LPOP l 2", "RPOP l 2", "LPOP l 0", "LPOP l", "RPOP l", "LPOP l -1", "LPOP l abc",
        "RPOP l 1.5", "LPOP l 1 2", "RPUSH l x y", "RPOP l 1", "LPOP l 1", "SET s v", "LPOP s 2", "RPOP s 0",
        "LPOP s", "RPUSH m a b", "LPOP m 9223372036854775807", "RPUSH m a b c", "RPOP m 9223372036854775807",
    ],
    "smismember": [
        "SMISMEMBER s a", "SADD s a b", "SMISMEMBER s a b c", "SMISMEMBER s c", "SMISMEMBER s a a",
        "SET str v", "SMISMEMBER str a", "SMISMEMBER s",
    ],
    "lpos": [
        "LPOS l a", "LPOS l a COUNT 0", "RPUSH l a b c a b c a", "LPOS l a", "LPOS l c", "LPOS l z",
        "LPOS l a RANK 2", "LPOS l a RANK -1", "LPOS l a RANK -2", "LPOS l a RANK 5", "LPOS l a COUNT 0",
        "LPOS l a COUNT 2", "LPOS l a COUNT 2 RANK 2", "LPOS l a COUNT 0 RANK -1", "LPOS l a MAXLEN 1",
        "LPOS l a MAXLEN 3 COUNT 0", "LPOS l c MAXLEN 3", "LPOS l a RANK -1 MAXLEN 2", "LPOS l z COUNT 3",
        "LPOS l a RANK 0", "LPOS l a RANK abc", "LPOS l a COUNT -1", "LPOS l a COUNT abc", "LPOS l a MAXLEN -1",
        "LPOS l a BOGUS", "LPOS l a COUNT", "SET s v", "LPOS s a", "LPOS s a RANK 0",
        "LPOS l a RANK -9223372036854775807",
    ],
    "zadd": [
        "ZADD z 1 a 2 b", "ZADD z NX 5 a 3 c", "ZSCORE z a", "ZSCORE z c", "ZADD z XX 5 a 9 d", "ZSCORE z a",
        "ZSCORE z d", "ZADD z CH 5 a 6 b 7 e", "ZADD z CH 5 a", "ZADD z INCR 2.5 a", "ZADD z INCR 1 new",
        "ZADD z NX INCR 1 a", "ZADD z XX INCR 1 missing", "ZADD z GT 1 a", "ZSCORE z a", "ZADD z GT CH 10 a 1 b 2 f",
        "ZSCORE z a", "ZSCORE z b", "ZADD z LT CH 1 a 100 b", "ZSCORE z a", "ZSCORE z b", "ZADD z GT INCR -1 a",
        "ZADD z LT INCR -1 a", "ZADD z INCR 0 a", "ZADD z 1 dup 2 dup", "ZSCORE z dup", "ZADD z GT CH 5 dup 3 dup 4 dup",
        "ZSCORE z dup", "ZADD z NX XX 1 a", "ZADD z NX GT 1 a", "ZADD z GT LT 1 a", "ZADD z NX LT 1 a",
        "ZADD z INCR 1 a 2 b", "ZADD z 1", "ZADD z a b", "ZADD z 1 a 2", "ZADD z nan a", "ZADD z ' 1' a",
        "ZADD z inf a", "ZADD z INCR -inf a", "ZADD z XX 1 a", "ZADD nokey XX 1 a", "EXISTS nokey",
        "ZADD nokey XX INCR 1 a", "ZADD z +inf x -inf y", "ZRANGE z 0 -1 WITHSCORES", "SET str v",
        "ZADD str 1 a", "ZADD str XX 1 a", "ZADD z 0x10 hex", "ZSCORE z hex", "ZADD z 1e3 sci", "ZSCORE z sci",
        "ZADD z NX CH", "ZADD z CH CH 1 a",
    ],
    "sintercard": [
        "SADD a 1 2 3 4", "SADD b 2 3 4 5", "SADD c 3 4", "SINTERCARD 2 a b", "SINTERCARD 3 a b c",
        "SINTERCARD 2 a b LIMIT 2", "SINTERCARD 2 a b LIMIT 0", "SINTERCARD 2 a missing", "SINTERCARD 1 missing",
        "SINTERCARD 0 a", "SINTERCARD -1 a", "SINTERCARD abc a", "SINTERCARD 3 a b", "SINTERCARD 2 a b LIMIT -1",
        "SINTERCARD 2 a b LIMIT abc", "SINTERCARD 2 a b BOGUS 1", "SINTERCARD 2 a b LIMIT", "SET s v",
        "SINTERCARD 2 a s", "SINTERCARD 1 a",
    ],
    "copy": [
        "SET s v", "COPY s d", "GET d", "COPY s d", "SET s w", "COPY s d REPLACE", "GET d", "COPY missing d",
        "COPY s s", "COPY s d BOGUS", "COPY s d DB", "COPY s d DB abc", "COPY s d DB 99", "COPY s d DB -1",
        "RPUSH l a b c", "COPY l l2", "LRANGE l2 0 -1", "SADD set x y", "COPY set set2", "SCARD set2",
        "ZADD z 1.5 a 2 b", "COPY z z2", "ZRANGE z2 0 -1 WITHSCORES", "HSET h f v", "COPY h h2", "HGET h2 f",
        "SETEX t 100 v", "COPY t t2", T("TTL t2"), "COPY s l REPLACE", "GET l", "COPY s d2 DB 1",
        "COPY s d2 DB 1", "SELECT 1", "GET d2", "COPY d2 d2 DB 0", "SELECT 0", "GET d2", "COPY s s DB 0",
    ],
    "zrange": [
        "ZADD z 1 a 2 b 3 c 4 d", "ZRANGE z 0 -1", "ZRANGE z 0 -1 WITHSCORES", "ZRANGE z 0 -1 REV",
        "ZRANGE z 1 2 REV WITHSCORES", "ZRANGE z 2 3 BYSCORE", "ZRANGE z (1 +inf BYSCORE WITHSCORES",
        "ZRANGE z +inf -inf BYSCORE REV", "ZRANGE z 4 (2 BYSCORE REV WITHSCORES", "ZRANGE z -inf +inf BYSCORE LIMIT 1 2",
        "ZRANGE z -inf +inf BYSCORE LIMIT 1 -1", "ZRANGE z +inf -inf BYSCORE REV LIMIT 0 1 WITHSCORES",
        "ZRANGE z -inf +inf BYSCORE LIMIT -1 2", "ZRANGE z 0 -1 LIMIT 0 -1", "ZRANGE z 0 -1 LIMIT 0 1",
        "ZRANGE z - + BYLEX WITHSCORES", "ZRANGE z 1 x BYSCORE", "ZRANGE z a 1",
        "ZRANGE z 0 1 BOGUS", "ZRANGE z 0 1 REV REV", "ZRANGE z 0 1 BYSCORE BYLEX", "ZRANGE z 0 1 LIMIT 0",
        "ZRANGE z 0 1 BYSCORE LIMIT a 1", "ZRANGE z (a 2 BYSCORE", "ZRANGE z nan 2 BYSCORE", "ZRANGE missing 0 -1 REV",
        "ZRANGE missing 0 1 BYSCORE", "SET s v", "ZRANGE s 0 -1 REV", "ZRANGE s 0 1 BYSCORE WITHSCORES",
        "ZRANGE s a 1 BYSCORE",
    ],
    "zrange_bylex": [
        "ZADD z 0 a 0 b 0 c 0 d", "ZRANGE z - + BYLEX", "ZRANGE z [b (d BYLEX", "ZRANGE z + - BYLEX REV",
        "ZRANGE z (d [a BYLEX REV LIMIT 1 2", "ZRANGE z - + BYLEX LIMIT 1 1", "ZRANGE z - + BYLEX LIMIT 1 -1",
        "ZRANGE missing - + BYLEX", "ZRANGE z a b BYLEX",
    ],
    "lmpop_zmpop": [
        "LMPOP 1 missing LEFT", "RPUSH l1 a b c d", "LMPOP 2 missing l1 LEFT", "LMPOP 2 missing l1 RIGHT COUNT 2",
        "LMPOP 1 l1 LEFT COUNT 10", "EXISTS l1", "RPUSH l2 x", "SET s v", "LMPOP 2 s l2 LEFT", "LMPOP 2 l2 s LEFT",
        "LMPOP 0 l2 LEFT", "LMPOP -1 l2 LEFT", "LMPOP a l2 LEFT", "LMPOP 3 l2 LEFT", "LMPOP 1 l2 UP",
        "LMPOP 1 l2 LEFT COUNT 0", "LMPOP 1 l2 LEFT COUNT -1", "LMPOP 1 l2 LEFT COUNT a",
        "LMPOP 1 l2 LEFT COUNT 1 COUNT 1", "LMPOP 1 l2 LEFT BOGUS", "LMPOP 1 l2 LEFT COUNT", "ZADD z 1 a 2 b 3 c",
        "ZMPOP 1 z MIN", "ZMPOP 2 missing z MAX COUNT 5", "EXISTS z", "ZMPOP 1 z MIN", "ZADD z 1.5 a",
        "ZMPOP 2 s z MIN", "ZMPOP 2 z s MAX COUNT 2", "ZMPOP 1 z LEFT", "ZMPOP 0 z MIN", "ZMPOP 1 z MIN COUNT 0",
        "RPUSH big a b c", "LMPOP 1 big RIGHT COUNT 9223372036854775807",
    ],
    "scan_family": [
        "SADD s a b c", Step(args=("SSCAN", "s", "0"), unordered=True, nested=1),
        "SSCAN s 0 MATCH a*", "SSCAN missing 0",
        "SSCAN s abc", "SSCAN s ' 1'", "SSCAN s 0 COUNT 0", "SSCAN s 0 COUNT a", "SSCAN s 0 BOGUS x",
        "SSCAN missing 0 BOGUS", "HSET h f1 v1", "HSCAN h 0 MATCH *2", "ZADD z 1 a 2.5 b", "ZSCAN z 0",
        "ZSCAN z 0 MATCH b", "SET str v", "SSCAN str 0", "HSCAN s 0", "ZSCAN h 0", "SSCAN str abc", "SCAN abc",
        "SCAN 0 COUNT 0", "SCAN 0 COUNT x", "SCAN 0 MATCH", "SCAN 0 BOGUS 1", Step(args=("SCAN", "0", "MATCH", "s*"), unordered=True, nested=1),
        Step(args=("SCAN", "0", "TYPE", "set"), unordered=True, nested=1), "SCAN 0 TYPE hash MATCH h*",
    ],
    "exists_many": [
        "SET a 1", "SET b 2", "EXISTS a b", "EXISTS a a missing b", "EXISTS missing", "RPUSH l x", "EXISTS l a",
        "EXISTS a",
    ],
    "pushx_many": [
        "LPUSHX l a b", "EXISTS l", "RPUSH l x", "LPUSHX l a b c", "RPUSHX l d e", "LRANGE l 0 -1", "SET s v",
        "LPUSHX s a b", "RPUSHX s a b", "LPUSHX l z",
    ],
    "spop_srandmember_count": [
        "SADD s a b c", Step(args=("SPOP", "s", "10"), unordered=True), "EXISTS s", "SADD s a b c", "SPOP s 0",
        "SCARD s", Step(args=("SPOP", "s", "2"), same_type=True), "SCARD s", "DEL s", "SADD s a b c", "SPOP missing 2", "SPOP s -1", "SPOP s abc", "SPOP s 1 2",
        "SADD one x", "SRANDMEMBER one -3", Step(args=("SRANDMEMBER", "s", "5"), unordered=True),
        "SRANDMEMBER s 0", "SRANDMEMBER missing 3", "SRANDMEMBER missing -3", "SRANDMEMBER s abc",
        "SRANDMEMBER s -9223372036854775808", "SRANDMEMBER s 1 2", "SET str v", "SPOP str 1", "SPOP str 0",
        "SRANDMEMBER str 1", "SRANDMEMBER str 0", "SPOP one 1", "EXISTS one",
    ],
    "flush_options": [
        "SET a 1", "FLUSHALL ASYNC", "EXISTS a", "SET a 1", "FLUSHDB SYNC", "EXISTS a", "SET a 1", "FLUSHALL sync",
        "EXISTS a", "FLUSHDB async", "FLUSHALL BOGUS", "FLUSHDB ASYNC SYNC",
    ],
    "move": [
        "SETEX k 100 v", "MOVE k 1", "EXISTS k", "SELECT 1", T("TTL k"), "GET k", "MOVE k 0", "SELECT 0", T("TTL k"),
        "SET k w", "MOVE k 0", "MOVE k 99", "MOVE k -1", "MOVE k abc", "MOVE k 4294967296", "MOVE missing 1",
        "SELECT 1", "SET k there", "SELECT 0", "MOVE k 1", "GET k", "SELECT 1", "GET k", "DEL k", "SELECT 0",
    ],
    "rename_same_name": [
        "SET a 1", "RENAME a a", "RENAMENX a a", "RENAME missing missing", "RENAMENX missing missing", "GET a",
        "RENAME a b", "GET b",
    ],
}

# What each release lacks natively and the proxy cannot stand in for.
OLD_SKIP = {
    ("zrange_bylex", "2.4.18"): "ZRANGEBYLEX came with 2.8.9",
}


def wrap_eval(step):
    st = harness.as_step(step)
    return Step(args=("EVAL", "return redis.pcall(unpack(ARGV))", "0") + tuple(st.args),
                same_type=st.same_type, unordered=st.unordered, nested=st.nested)


def wrap_multi(steps):
    """One transaction per step (so each command's own error stays its own)."""
    out = []
    for s in steps:
        st = harness.as_step(s)
        if st.unordered:
            continue  # an order that depends on the server's hash seed
        out += ["MULTI", Step(args=st.args), Step(args=("EXEC",), same_type=st.same_type)]
    return out


# ---------------------------------------------------------------------------
# Fixtures: the oracle (session) against a proxy that emulates everything in
# front of the session store, and against proxies in front of old releases.

def _start_proxy(store, workdir, emulate):
    p = ProxyProcess(proxy_binary(), store, workdir, extra_args=["--store-emulate", emulate])
    p.start()
    return p


def _stop_proxy(p):
    status = p.stop()
    report = p.sanitizer_report()
    assert not report, report
    assert status in (0, -15), p.diagnostics()


@pytest.fixture(scope="module")
def emu_proxy(store, tmp_path_factory):
    if target_is_store():
        pytest.skip("EVALPROXY_TARGET=store: needs the proxy")
    p = _start_proxy(store, str(tmp_path_factory.mktemp("emu") / "proxy"), "all")
    yield p
    _stop_proxy(p)


class OldStore(Endpoint):
    """An old redis-server release, built into build/stores."""

    def __init__(self, release, workdir):
        super().__init__("redis-" + release, harness.HOST, harness.free_port())
        self.binary = old_redis_binary(release)
        os.makedirs(workdir, exist_ok=True)
        self.conf = os.path.join(workdir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write("bind %s\nport %d\ndaemonize no\ndir %s\nlogfile %s\n"
                    % (self.host, self.port, workdir, os.path.join(workdir, "redis.log")))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.binary, self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        harness.wait_for_ping(self.host, self.port, 10.0, self.proc, self.name)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module", params=OLD_RELEASES)
def old_proxy(request, tmp_path_factory):
    release = request.param
    if target_is_store():
        pytest.skip("EVALPROXY_TARGET=store: needs the proxy")
    base = tmp_path_factory.mktemp("old-" + release)
    s = OldStore(release, str(base / "store"))
    s.start()
    try:
        p = _start_proxy(s, str(base / "proxy"), "release:" + release)
        p.release = release
        try:
            yield p
        finally:
            _stop_proxy(p)
    finally:
        s.stop()


@pytest.fixture
def emu(oracle, emu_proxy):
    d = harness.Differ(oracle, emu_proxy)
    d.flushall()
    return d


@pytest.fixture
def old(oracle, old_proxy):
    d = harness.Differ(oracle, old_proxy)
    d.flushall()
    d.release = old_proxy.release
    return d


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_emulated_direct(emu, case):
    emu.run(CASES[case])


@pytest.mark.parametrize("case", sorted(CASES))
def test_emulated_through_eval(emu, case):
    emu.run([wrap_eval(s) for s in CASES[case] if not _is_select(s)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_emulated_inside_multi(emu, case):
    emu.run(wrap_multi([s for s in CASES[case] if not _is_select(s)]))


def _is_select(step):
    st = harness.as_step(step)
    return st.args and st.args[0].upper() in ("SELECT",) or (len(st.args) > 3 and "DB" in st.args[3:])


def _run_old(d, steps):
    steps = [harness.as_step(s) for s in steps if not getattr(harness.as_step(s), "native", False)]
    with d.oracle.connect() as oc:
        expected = harness.run_steps(oc, steps)
    with d.proxy.connect() as pc:
        actual = harness.run_steps(pc, steps)
    problems = []
    for i, st in enumerate(steps):
        e, a = expected[i], actual[i] if i < len(actual) else None
        if st.same_type:
            same = isinstance(a, bytes) and e[:1] == a[:1]
        else:
            same = harness._normalize(st, e) == harness._normalize(st, a)
        if not same:
            problems.append("step %d: %s\n    oracle: %r\n    proxy:  %r" % (i, st.describe(), e, a))
    assert not problems, "redis %s:\n%s" % (d.release, "\n".join(problems))


@pytest.mark.parametrize("case", sorted(CASES))
def test_old_store(old, case):
    if (case, old.release) in OLD_SKIP:
        pytest.skip(OLD_SKIP[(case, old.release)])
    _run_old(old, CASES[case])


@pytest.mark.parametrize("case", sorted(CASES))
def test_old_store_through_eval(old, case):
    if (case, old.release) in OLD_SKIP:
        pytest.skip(OLD_SKIP[(case, old.release)])
    old.flushall()
    _run_old(old, [wrap_eval(s) for s in CASES[case]
                   if not _is_select(s) and not getattr(harness.as_step(s), "native", False)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_old_store_inside_multi(old, case):
    if (case, old.release) in OLD_SKIP:
        pytest.skip(OLD_SKIP[(case, old.release)])
    _run_old(old, wrap_multi([s for s in CASES[case] if not _is_select(s)]))


def test_arity_errors(emu):
    emu.run(["GETDEL", "GETDEL a b", "LMOVE a b LEFT", "SMISMEMBER", "UNLINK", "GETEX", "COPY a",
             "SETEX a 1", "PSETEX a 1 2 3", "SINTERCARD", "LPOS a", "HSET a", "ZADD a 1"])


def test_expiry_values(emu_proxy, oracle):
    """Times never end early: what TTL/PTTL report after each expiry command
    is within a second above what was asked, never below it."""
    with emu_proxy.connect() as c:
        c.call("FLUSHALL")
        checks = [("SET k v PX 5000", "PTTL k", 5000), ("SET k v EX 50", "TTL k", 50),
                  ("PSETEX k 7000 v", "PTTL k", 7000), ("PEXPIRE k 9000", "PTTL k", 9000),
                  ("GETEX k PX 3000", "PTTL k", 3000), ("EXPIRE k 30 GT", "TTL k", 30)]
        for setcmd, get, want in checks:
            c.call(*shlex.split(setcmd))
            got = int(harness.parse_reply(c.call(*shlex.split(get))))
            slack = 1000 if get == "PTTL k" else 1
            assert want - slack < got <= want + slack, (setcmd, got)


def test_old_store_expiry_never_early(old_proxy):
    """On a store with seconds only, PX is rounded up: the key is there
    until its time has passed."""
    with old_proxy.connect() as c:
        c.call("FLUSHALL")
        assert c.call("SET", "k", "v", "PX", "1200") == b"+OK\r\n"
        pttl = int(harness.parse_reply(c.call("PTTL", "k")))
        assert 0 < pttl <= 2000
        assert c.call("SET", "k2", "v", "NX", "PX", "100000") == b"+OK\r\n"
        assert c.call("SET", "k2", "v", "NX", "PX", "100000") == b"$-1\r\n"


def test_config_directive(emu_proxy):
    with emu_proxy.connect() as c:
        assert harness.parse_reply(c.call("CONFIG", "GET", "store-emulate")) == [b"store-emulate", b"all"]
        assert c.call("CONFIG", "SET", "store-emulate", "getdel lmove") == b"+OK\r\n"
        assert harness.parse_reply(c.call("CONFIG", "GET", "store-emulate")) == [b"store-emulate", b"getdel lmove"]
        # A store taken for 2.2.0 (no OBJECT yet): a clear error rather than the store's.
        assert c.call("CONFIG", "SET", "store-emulate", "release:2.2.0") == b"+OK\r\n"
        c.call("SET", "k", "1")
        assert c.call("OBJECT", "ENCODING", "k") == \
            b"-ERR command 'object|encoding' is not supported by the store (redis 2.2.0)\r\n"
        assert c.call("OBJECT", "REFCOUNT", "k")[:1] == b":"
        # Only what that release lacks is emulated; the rest is relayed.
        assert c.call("SET", "k", "2", "GET") == b"$1\r\n1\r\n"
        assert c.call("CONFIG", "SET", "store-emulate", "all") == b"+OK\r\n"


def test_isolation_conserved_total(emu_proxy):
    """Emulated read-modify-writes from several clients, with scripts and
    plain commands on the same keys, never lose or double a unit."""
    _isolation(emu_proxy)


def test_old_store_isolation_conserved_total(old_proxy):
    _isolation(old_proxy)


def _isolation(emu_proxy):
    with emu_proxy.connect() as c:
        c.call("FLUSHALL")
        c.call("RPUSH", "{q}a", *["x%d" % i for i in range(50)])
        c.call("SET", "{c}n", "0")
        c.call("ZADD", "{z}", "0", "m")
    errors = []
    rounds = 150

    def mover(name):
        try:
            with emu_proxy.connect() as c:
                for i in range(rounds):
                    src, dst = ("{q}a", "{q}b") if (i + hash(name)) % 2 else ("{q}b", "{q}a")
                    r = c.call("LMOVE", src, dst, "LEFT", "RIGHT")
                    assert r[:1] in (b"$",), r
                    c.call("RPOPLPUSH", dst, src)
                    c.call("ZADD", "{z}", "INCR", "1", "m")
                    # counter: read with SET GET, add one, as a client lock would
                    old = harness.parse_reply(c.call("EVAL", "local v = redis.call('get', KEYS[1]) "
                                                     "redis.call('set', KEYS[1], v + 1) return v", "1", "{c}n"))
                    assert old is not None
                    v = c.call("GETDEL", "{c}tmp" + name)
                    assert v == b"$-1\r\n", v
                    c.call("SET", "{c}tmp" + name, "1", "GET")
                    c.call("GETDEL", "{c}tmp" + name)
                    c.call("EVAL", "local x = redis.call('lmove', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') return x",
                           "2", "{q}a", "{q}b")
                    c.call("LLEN", "{q}a")
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=mover, args=("t%d" % i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with emu_proxy.connect() as c:
        a = int(harness.parse_reply(c.call("LLEN", "{q}a")))
        b = int(harness.parse_reply(c.call("LLEN", "{q}b")))
        assert a + b == 50
        items = harness.parse_reply(c.call("LRANGE", "{q}a", "0", "-1")) + \
            harness.parse_reply(c.call("LRANGE", "{q}b", "0", "-1"))
        assert sorted(items) == sorted(("x%d" % i).encode() for i in range(50))
        assert harness.parse_reply(c.call("ZSCORE", "{z}", "m")) == str(6 * rounds).encode()
        assert harness.parse_reply(c.call("GET", "{c}n")) == str(6 * rounds).encode()


def test_scan_returns_each_key_once(emu_proxy):
    """A full SCAN / SSCAN / HSCAN / ZSCAN iteration through the emulation
    returns every element that exists throughout exactly once."""
    _scan_each_once(emu_proxy)


def test_old_store_scan_returns_each_key_once(old_proxy):
    _scan_each_once(old_proxy)


def _scan_each_once(proxy):
    with proxy.connect() as c:
        c.call("FLUSHALL")
        for i in range(300):
            c.call("SET", "key:%d" % i, "v")
        c.call("SADD", "s", *["m%d" % i for i in range(200)])
        c.call("HMSET", "h", *sum([["f%d" % i, "v"] for i in range(200)], []))
        c.call("ZADD", "z", *sum([[str(i), "z%d" % i] for i in range(200)], []))

        def iterate(*cmd):
            seen, cursor = [], b"0"
            while True:
                r = harness.parse_reply(c.call(*(cmd[:-1] + (cursor,) + cmd[-1:])) if cmd[-1] is not None
                                        else c.call(*(cmd[:-1] + (cursor,))))
                cursor, items = r
                seen += items
                if cursor == b"0":
                    return seen

        keys = iterate("SCAN", None)
        assert sorted(keys) == sorted([("key:%d" % i).encode() for i in range(300)] + [b"h", b"s", b"z"])
        members = iterate("SSCAN", "s", None)
        assert sorted(members) == sorted(("m%d" % i).encode() for i in range(200))
        fields = iterate("HSCAN", "h", None)[::2]
        assert sorted(fields) == sorted(("f%d" % i).encode() for i in range(200))
        zm = iterate("ZSCAN", "z", None)[::2]
        assert sorted(zm) == sorted(("z%d" % i).encode() for i in range(200))


RATE_LIMITER = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
return n
"""


def test_old_store_lock_and_rate_limiter(old_proxy):
    """What fails on an old store without emulation: redis-py's Lock
    (SET NX PX, then a compare-and-delete script) and the INCR + PEXPIRE
    rate limiter, whose counter must get its expiry."""
    redis = pytest.importorskip("redis")
    r = redis.Redis(host=old_proxy.host, port=old_proxy.port)
    r.flushall()
    lock = r.lock("res", timeout=30)
    assert lock.acquire(blocking=False)
    assert not r.lock("res", timeout=30).acquire(blocking=False)
    assert 0 < r.pttl("res") <= 31000
    lock.release()
    assert r.exists("res") == 0
    limiter = r.register_script(RATE_LIMITER)
    assert [limiter(keys=["rl"], args=[60000]) for _ in range(3)] == [1, 2, 3]
    assert 0 < r.pttl("rl") <= 61000
