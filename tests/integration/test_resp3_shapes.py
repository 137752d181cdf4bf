"""RESP2 -> RESP3 conversion (proxy/core/resp3.c) against redis-server 7.0.

Each case runs its steps on the oracle twice from the same empty state: once
on a RESP2 connection and once on a HELLO 3 connection. Every RESP2 reply is
converted by build/<variant>/tests/resp3_convert (the variant is the one of
EVALPROXY_BIN) with the shape of its command, and the result must equal the
RESP3 reply byte for byte. Replies carrying values that change between the
two runs (INFO, CLIENT LIST, MEMORY STATS, times, ids) are compared by
structure: the same types and the same element counts, at every depth.

The corpus is every case of test_relay_diff.py (steps that change the
protocol or the connection itself, and raw protocol steps, left out) plus
the cases below.
"""

import os
import subprocess

import pytest

import harness
from harness import as_step, encode_command, run_steps
import test_relay_diff

CONVERTER = "resp3_convert"


def converter_path():
    b = os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy")
    return os.path.join(os.path.dirname(os.path.realpath(b)), "tests", CONVERTER)


@pytest.fixture(scope="session")
def converter():
    path = converter_path()
    if not os.access(path, os.X_OK):
        pytest.skip("%s is absent: build it with `make unit` (or `make SAN=1 unit`) for the "
                    "variant of EVALPROXY_BIN" % path)
    return path


# ---------------------------------------------------------------------------
# The corpus

CASES = []


def case(name, *steps):
    CASES.append(pytest.param([as_step(s) for s in steps], id="own-" + name))


# Replies that differ between the two runs by value, not by shape.
VARYING = {"INFO", "CLIENT INFO", "CLIENT LIST", "CLIENT ID", "MEMORY STATS", "MEMORY DOCTOR",
           "MEMORY MALLOC-STATS", "MEMORY USAGE", "TIME", "LATENCY HISTOGRAM", "LATENCY DOCTOR",
           "LATENCY LATEST", "LATENCY HISTORY", "OBJECT IDLETIME", "OBJECT FREQ", "XINFO CONSUMERS",
           "XINFO STREAM", "XINFO GROUPS", "XPENDING", "SLOWLOG GET", "ACL LOG", "FUNCTION STATS",
           "COMMAND COUNT", "LASTSAVE", "DEBUG OBJECT", "CLIENT TRACKINGINFO", "XAUTOCLAIM",
           "XCLAIM", "XREADGROUP", "ROLE", "LOLWUT", "RANDOMKEY", "SRANDMEMBER", "SPOP",
           "ZRANDMEMBER", "HRANDFIELD", "CLIENT GETREDIR", "PUBSUB NUMSUB", "ACL GENPASS"}

# Replies whose sizes vary too (latency buckets): only which types appear
# at which depth is compared.
LOOSE = {"LATENCY HISTOGRAM"}

# Steps left out: they would change the protocol of the connection.
DROP_COMMANDS = {"HELLO", "RESET"}
# Steps that end the replay: they end the connection or change its mode.
SKIP_COMMANDS = {"QUIT", "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
                 "CLIENT KILL", "SHUTDOWN", "DEBUG", "CLIENT PAUSE", "FAILOVER", "REPLICAOF",
                 "SLAVEOF", "SYNC", "PSYNC"}

FUNC_LIB = "#!lua name=shapes\nredis.register_function('echo1', function(keys, args) return args[1] end)\n" \
           "redis.register_function{function_name='ro', callback=function() return 1 end, flags={'no-writes'}, description='a read'}"

case("sorted-set-doubles", "ZADD z 1.5 a 3 b 1e300 c inf d -inf e 0.1 f -0 g 123456789012 h",
     "ZSCORE z a", "ZSCORE z b", "ZSCORE z c", "ZSCORE z d", "ZSCORE z e", "ZSCORE z f", "ZSCORE z g",
     "ZSCORE z h", "ZSCORE z nope", "ZSCORE nokey a", "ZMSCORE z a b nope c", "ZMSCORE nokey a",
     "ZRANGE z 0 -1", "ZRANGE z 0 -1 WITHSCORES", "ZRANGE z 0 -1 withscores",
     "ZRANGE z (1 +inf BYSCORE WITHSCORES", "ZRANGE z +inf -inf BYSCORE REV LIMIT 0 3 WITHSCORES",
     "ZRANGE z 0 -1 REV WITHSCORES", "ZREVRANGE z 0 2 WITHSCORES", "ZREVRANGE z 0 2",
     "ZRANGEBYSCORE z -inf +inf WITHSCORES", "ZRANGEBYSCORE z -inf +inf WITHSCORES LIMIT 1 2",
     "ZRANGEBYSCORE z -inf +inf LIMIT 1 2 WITHSCORES", "ZREVRANGEBYSCORE z +inf -inf WITHSCORES",
     "ZREVRANGEBYSCORE z +inf -inf", "ZRANGEBYLEX z - +", "ZREVRANGEBYLEX z + -",
     "ZRANK z a", "ZREVRANK z a", "ZRANK z nope", "ZCARD z", "ZCOUNT z -inf +inf",
     "ZINCRBY z 2 a", "ZINCRBY z 1e300 c", "ZINCRBY z 0.1 f", "ZINCRBY z 1 new",
     "ZADD z INCR 2 a", "ZADD z NX INCR 2 a", "ZADD z XX INCR 2 nope", "ZADD z 5 x 6 y",
     "ZADD z CH 7 x", "ZINCRBY z inf d", "ZINCRBY z abc a", "ZRANGE z 0 -1 WITHSCORES")
case("zset-algebra", "ZADD a 1 x 2 y 3 z", "ZADD b 10 y 20 z 30 w", "ZUNION 2 a b",
     "ZUNION 2 a b WITHSCORES", "ZUNION 2 a b WEIGHTS 2 0.5 WITHSCORES",
     "ZUNION 2 a b AGGREGATE MAX WITHSCORES", "ZINTER 2 a b WITHSCORES", "ZINTER 2 a b",
     "ZDIFF 2 a b WITHSCORES", "ZDIFF 2 b a", "ZADD withscores 1 m", "ZUNION 1 withscores",
     "ZUNION 1 withscores WITHSCORES", "ZUNIONSTORE d 2 a b", "ZRANGE d 0 -1 WITHSCORES",
     "ZINTERCARD 2 a b", "ZRANGESTORE e a 0 -1", "ZDIFFSTORE f 2 a b", "ZUNION 2 a nokey WITHSCORES",
     "ZINTER 2 a nokey WITHSCORES", "ZUNION 0 a WITHSCORES")
case("zset-pops", "ZADD z 1 a 2 b 3 c 4 d 5.5 e", "ZPOPMIN z", "ZPOPMAX z", "ZPOPMIN z 2",
     "ZPOPMAX z 1", "ZPOPMIN z 0", "ZPOPMIN nokey", "ZPOPMIN nokey 3", "ZADD z 1 a 2 b",
     "BZPOPMIN z 0", "BZPOPMAX z 0", "BZPOPMIN nokey 0.01", "ZADD z 1 a 2 b 3 c",
     "ZMPOP 1 z MIN", "ZMPOP 1 z MAX COUNT 5", "ZMPOP 1 z MIN", "ZMPOP 2 nokey z MIN",
     "ZADD z 1 a 2 b", "BZMPOP 0 1 z MAX COUNT 1", "BZMPOP 0.01 1 nokey MIN",
     "ZPOPMIN z abc", "ZMPOP 0 z MIN")
case("zset-random", "ZADD one 2.5 only", "ZRANDMEMBER one", "ZRANDMEMBER one 1",
     "ZRANDMEMBER one 1 WITHSCORES", "ZRANDMEMBER one -3 WITHSCORES", "ZRANDMEMBER one -3",
     "ZRANDMEMBER nokey", "ZRANDMEMBER nokey 2 WITHSCORES", "ZADD z 1 a 2 b 3 c",
     "ZRANDMEMBER z 3 WITHSCORES", "ZRANDMEMBER z 10 withscores", "ZRANDMEMBER z 0 WITHSCORES",
     "ZSCAN z 0", "ZSCAN nokey 0")
case("sets", "SADD s 1 2 3", "SADD t a b c 2", "SMEMBERS s", "SMEMBERS nokey", "SINTER s t",
     "SINTER s", "SUNION s", "SDIFF s t", "SDIFF nokey", "SUNION nokey", "SISMEMBER s 1",
     "SMISMEMBER s 1 9", "SSCAN s 0", "SRANDMEMBER s 3", "SRANDMEMBER s 0", "SRANDMEMBER nokey 3",
     "SRANDMEMBER nokey", "SADD one x", "SRANDMEMBER one", "SRANDMEMBER one -2", "SPOP one",
     "SPOP s 10", "SPOP s 10", "SPOP nokey", "SPOP nokey 2", "SADD s 1", "SPOP s 0",
     "SINTERCARD 2 s t", "SINTERSTORE d s t", "SMEMBERS d")
case("hashes", "HSET h a 1 b 2 c 3", "HGETALL h", "HGETALL nokey", "HKEYS h", "HVALS h",
     "HMGET h a nope", "HGET h nope", "HINCRBYFLOAT h f 1.5", "HINCRBYFLOAT h f 1e20",
     "HRANDFIELD h 3 WITHVALUES", "HRANDFIELD h 3 withvalues", "HRANDFIELD h 3",
     "HRANDFIELD h 0 WITHVALUES", "HRANDFIELD nokey 2 WITHVALUES", "HSET one k v",
     "HRANDFIELD one -2 WITHVALUES", "HRANDFIELD one 1 WITHVALUES", "HRANDFIELD one",
     "HSCAN h 0", "HSCAN h 0 COUNT 10 MATCH a*", "HGETALL one")
case("strings-and-nulls", "GET nokey", "MGET a nokey b", "SET a 1", "INCRBYFLOAT f 1.5",
     "INCRBYFLOAT f 1e300", "GETDEL nokey", "GETEX nokey", "SET k v GET", "SET nokey2 v XX GET",
     "LCS a nokey", "LCS a nokey IDX", "MSET x ohmytext y mynewtext", "LCS x y", "LCS x y LEN",
     "LCS x y IDX", "LCS x y IDX MINMATCHLEN 2 WITHMATCHLEN", "LCS x y idx", "DUMP nokey",
     "OBJECT ENCODING nokey", "RANDOMKEY", "TYPE x", "STRLEN x")
case("lists", "RPUSH l a b c a", "LPOS l a", "LPOS l a COUNT 0", "LPOS l nope", "LPOS l nope COUNT 2",
     "LRANGE l 0 -1", "LPOP nokey", "LPOP nokey 2", "LMPOP 1 nokey LEFT", "LMPOP 1 l RIGHT COUNT 2",
     "BLPOP nokey 0.01", "BLPOP l 0", "BLMPOP 0.01 1 nokey LEFT", "LINDEX l 99", "RPOPLPUSH nokey x",
     "LMOVE nokey x LEFT LEFT", "BRPOPLPUSH nokey x 0.01", "SORT l ALPHA", "SORT nokey")
case("geo", "GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
     "GEOADD g 2.349014 48.864716 Paris", "GEOPOS g Palermo nope Catania", "GEOPOS nokey a",
     "GEOPOS g", "GEODIST g Palermo Catania", "GEODIST g Palermo Catania km", "GEODIST g Palermo nope",
     "GEOHASH g Palermo nope", "GEORADIUS g 15 37 200 km", "GEORADIUS g 15 37 200 km WITHCOORD",
     "GEORADIUS g 15 37 200 km WITHDIST", "GEORADIUS g 15 37 200 km WITHHASH",
     "GEORADIUS g 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC",
     "GEORADIUS g 15 37 200 km withcoord withdist COUNT 1 DESC",
     "GEORADIUS_RO g 15 37 200 km WITHCOORD", "GEORADIUSBYMEMBER g Palermo 300 km WITHCOORD",
     "GEORADIUSBYMEMBER g Palermo 300 km WITHDIST ASC", "GEORADIUSBYMEMBER_RO g Palermo 300 km WITHCOORD",
     "GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km ASC",
     "GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHCOORD",
     "GEOSEARCH g FROMMEMBER Palermo BYBOX 400 400 km ASC WITHCOORD WITHDIST WITHHASH",
     "GEOSEARCH g FROMMEMBER Palermo BYRADIUS 100 km WITHDIST", "GEOSEARCH nokey FROMLONLAT 0 0 BYRADIUS 1 km",
     "GEOSEARCHSTORE d g FROMLONLAT 15 37 BYRADIUS 200 km", "GEORADIUS g 15 37 200 km STORE d2",
     "GEORADIUS g 15 37 200 km WITHCOORD STORE d3", "GEOPOS d Palermo")
case("streams", "XADD x 1-0 f v", "XADD x 2-0 g w h z", "XRANGE x - +", "XREVRANGE x + -",
     "XRANGE nokey - +", "XLEN x", "XREAD STREAMS x 0", "XREAD COUNT 1 STREAMS x 0",
     "XREAD STREAMS x nokey 0 0", "XREAD STREAMS nokey 0", "XREAD STREAMS x $",
     "XGROUP CREATE x g 0", "XGROUP CREATE x g2 $ ENTRIESREAD 1", "XINFO GROUPS x",
     "XREADGROUP GROUP g c1 COUNT 1 STREAMS x >", "XREADGROUP GROUP g c2 STREAMS x >",
     "XREADGROUP GROUP g c2 STREAMS x >", "XREADGROUP GROUP g c1 STREAMS x 0",
     "XINFO STREAM x", "XINFO STREAM x FULL", "XINFO STREAM x FULL COUNT 1", "XINFO STREAM x full",
     "XINFO GROUPS x", "XINFO CONSUMERS x g", "XINFO CONSUMERS x g2", "XPENDING x g",
     "XPENDING x g - + 10", "XPENDING x g2", "XACK x g 1-0", "XCLAIM x g c3 0 2-0 JUSTID",
     "XAUTOCLAIM x g c3 0 0 COUNT 1 JUSTID", "XDEL x 1-0", "XINFO STREAM x", "XTRIM x MAXLEN 0",
     "XINFO STREAM x", "XINFO STREAM x FULL", "XINFO STREAM nokey", "XSETID x 5-0")
case("config", "CONFIG GET maxmemory", "CONFIG GET maxmemory*", "CONFIG GET nosuch",
     "CONFIG GET save appendonly", "CONFIG GET *max-*-entries*", "CONFIG GET port bind",
     "CONFIG GET lua-time-limit busy-reply-threshold")
case("info-and-clients", "INFO", "INFO server", "INFO keyspace", "INFO stats", "INFO nosuch",
     "INFO everything", "INFO default", "CLIENT INFO", "CLIENT LIST", "CLIENT LIST TYPE normal",
     "CLIENT ID", "CLIENT GETNAME", "CLIENT SETNAME shapes", "CLIENT GETNAME", "CLIENT TRACKINGINFO",
     "CLIENT GETREDIR", "CLIENT NO-EVICT on", "LOLWUT", "LOLWUT VERSION 5 1 1 1", "TIME", "ROLE",
     "DBSIZE", "LASTSAVE", "ECHO hi", "PING", "PING x")
case("command", "COMMAND INFO get", "COMMAND INFO get set zadd", "COMMAND INFO nosuch get",
     "COMMAND INFO config", "COMMAND INFO xinfo", "COMMAND INFO client|info", "COMMAND INFO",
     "COMMAND DOCS get", "COMMAND DOCS zadd", "COMMAND DOCS set geosearch", "COMMAND DOCS xinfo",
     "COMMAND DOCS config|get", "COMMAND DOCS nosuch", "COMMAND DOCS", "COMMAND COUNT",
     "COMMAND GETKEYS SET k v", "COMMAND GETKEYS ZUNIONSTORE d 2 a b",
     "COMMAND GETKEYSANDFLAGS LMOVE a b LEFT RIGHT", "COMMAND GETKEYSANDFLAGS SET k v",
     "COMMAND LIST FILTERBY ACLCAT hyperloglog", "COMMAND LIST FILTERBY PATTERN xinfo*",
     "COMMAND HELP")
case("functions-and-scripts", "FUNCTION FLUSH", ("FUNCTION", "LOAD", FUNC_LIB), "FUNCTION LIST",
     "FUNCTION LIST WITHCODE", "FUNCTION LIST LIBRARYNAME sha", "FUNCTION LIST LIBRARYNAME nosuch",
     "FUNCTION STATS", "FCALL echo1 0 hello", "FCALL_RO ro 0", "SCRIPT LOAD 'return 1'",
     "SCRIPT EXISTS e0e1f9fabfc9d4800c877a703b823ac0578ff8db abc",
     "EVAL 'return {1,2,{3,false}}' 0", "EVAL 'return redis.call(\"ZSCORE\", KEYS[1], \"a\")' 1 z",
     "EVAL 'return nil' 0", "FUNCTION DELETE shapes", "FUNCTION LIST", "FUNCTION STATS")
case("memory-object-latency", "SET k v", "RPUSH l a b", "HSET h f v", "MEMORY USAGE k",
     "MEMORY USAGE nokey", "MEMORY USAGE l SAMPLES 0", "MEMORY STATS", "MEMORY DOCTOR",
     "MEMORY MALLOC-STATS", "OBJECT ENCODING k", "OBJECT ENCODING l", "OBJECT REFCOUNT k",
     "OBJECT IDLETIME k", "OBJECT HELP", "OBJECT ENCODING nokey", "LATENCY LATEST",
     "LATENCY HISTORY command", "LATENCY DOCTOR", "LATENCY HISTOGRAM set get",
     "LATENCY HISTOGRAM nosuch", "LATENCY HELP", "SLOWLOG GET", "SLOWLOG LEN", "ACL LOG",
     "AUTH nosuchuser badpass", "ACL LOG", "ACL LOG 1", "ACL WHOAMI", "ACL GETUSER default", "ACL GETUSER nosuch", "ACL LIST", "ACL CAT",
     "ACL CAT hash", "ACL USERS", "PUBSUB CHANNELS", "PUBSUB NUMSUB a b", "PUBSUB NUMPAT",
     "PUBSUB SHARDCHANNELS", "PUBSUB SHARDNUMSUB a", "MODULE LIST", "MEMORY HELP")
case("acl-and-tracking", "ACL SETUSER shapes1 on >pw ~x* &ch +get (~y* +set) (%R~z* +@read)",
     "ACL GETUSER shapes1", "ACL GETUSER nosuch", "ACL DELUSER shapes1",
     "CLIENT TRACKING on BCAST PREFIX a PREFIX b", "CLIENT TRACKINGINFO", "CLIENT TRACKING off",
     "CLIENT TRACKING on OPTIN", "CLIENT TRACKINGINFO", "CLIENT CACHING yes", "GET a",
     "CLIENT TRACKING off", "CLIENT TRACKINGINFO")
case("help-and-admin", "ACL HELP", "CLIENT HELP", "CONFIG HELP", "FUNCTION HELP", "MODULE HELP",
     "PUBSUB HELP", "SCRIPT HELP", "SLOWLOG HELP", "XINFO HELP", "OBJECT HELP", "MEMORY HELP",
     "ACL DRYRUN default GET k", "ACL DRYRUN default NOSUCH k", "ACL GENPASS", "ACL GENPASS 32",
     "CONFIG SET maxmemory-samples 5", "CONFIG RESETSTAT", "LATENCY RESET", "MEMORY PURGE",
     "SLOWLOG RESET", "CLIENT REPLY ON", "CLIENT UNBLOCK 999999", "SCRIPT KILL", "FUNCTION KILL",
     "PFADD h a b c", "PFDEBUG ENCODING h", "PFCOUNT h", ("FUNCTION", "LOAD", FUNC_LIB),
     "FUNCTION DUMP", ("FUNCTION", "RESTORE", harness.Ref(28), "REPLACE"), "FUNCTION LIST",
     "SCRIPT LOAD 'return redis.call(\"HGETALL\", KEYS[1])'",
     "EVALSHA 2b0ff3b2a4c9ad1d7d2a8d8b3c36b7d5b9a2c8d9 0", "EVAL_RO 'return {1, false}' 0",
     "EVAL 'return redis.call(\"ZRANGE\", KEYS[1], 0, -1, \"WITHSCORES\")' 1 z", "SCRIPT FLUSH",
     "SCRIPT EXISTS a b")
case("exec-mixed", "ZADD z 1.5 a 2 b", "HSET h f v", "SADD s x", "MULTI", "ZSCORE z a",
     "ZRANGE z 0 -1 WITHSCORES", "HGETALL h", "SMEMBERS s", "GET nokey", "INCR h",
     "ZPOPMIN z", "CONFIG GET maxmemory", "XREAD STREAMS nokey 0", "GEOPOS nokey a", "EXEC",
     "MULTI", "EXEC", "MULTI", "ZINCRBY z 1 a", "LPOP nokey", "ZRANDMEMBER z 5 WITHSCORES", "EXEC",
     "WATCH z", "MULTI", "ZSCORE z b", "DISCARD", "MULTI", "NOSUCHCMD", "ZSCORE z a", "EXEC",
     "MULTI", "ZMSCORE z a b", "SPOP s 3", "HRANDFIELD h 1 WITHVALUES", "EXEC",
     # aborted by a change to a watched key, and by a command refused while queueing
     "WATCH z", "ZADD z 9 q", "MULTI", "ZSCORE z a", "EXEC", "MULTI", "ZADD z", "ZSCORE z a", "EXEC",
     "MULTI", "XADD x 1-0 f v", "XREAD STREAMS x 0", "XINFO STREAM x", "COMMAND INFO get",
     "CONFIG GET maxmemory-samples", "GEOADD g 1 1 m", "GEOPOS g m", "GEODIST g m m",
     "INFO keyspace", "EXEC")


def relay_cases():
    out = []
    for p in test_relay_diff.CASES:
        steps = [as_step(s) for s in p.values[0]]
        out.append(pytest.param(steps, id="relay-" + p.id))
    return out


# ---------------------------------------------------------------------------
# Running


def step_name(step):
    """The command (and subcommand, upper case) of a step, or None for raw steps."""
    if step.args is None:
        return None
    words = []
    for a in step.args[:2]:
        if isinstance(a, harness.Ref):
            break
        words.append(harness._to_bytes(a).decode("latin-1").upper())
    return words


def replayable(steps):
    """The steps up to the first that cannot be replayed on a RESP3 connection
    (raw protocol steps are left out)."""
    out = []
    for st in steps:
        w = step_name(st)
        if w is None or w[0] in DROP_COMMANDS:
            continue
        if st.close or st.replies != 1:
            break
        if w[0] in SKIP_COMMANDS or " ".join(w[:2]) in SKIP_COMMANDS:
            break
        out.append(st)
    return out


def reset(conn):
    for cmd in (("FLUSHALL",), ("FUNCTION", "FLUSH"), ("SCRIPT", "FLUSH"), ("ACL", "LOG", "RESET")):
        r = conn.call(*cmd)
        assert r == b"+OK\r\n", (cmd, r)


def convert_all(converter, records):
    """records: (kind, argv, RESP2 bytes); the RESP3 bytes of each."""
    data = b"".join(encode_command(kind, *argv) + reply for kind, argv, reply in records)
    r = subprocess.run([converter, "--batch"], input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, "%s failed (%d): %r" % (converter, r.returncode, r.stderr[-2000:])
    out, pos = [], 0
    for _ in records:
        end = skeleton_end(r.stdout, pos)
        out.append(r.stdout[pos:end])
        pos = end
    assert pos == len(r.stdout), "trailing bytes from the converter"
    return out


def skeleton_end(raw, pos, skel=None):
    """End of the RESP3 reply at pos; appends its structure to skel: the type
    of each reply and the count of each aggregate, not the values."""
    t = raw[pos:pos + 1]
    eol = raw.index(b"\r\n", pos)
    header = raw[pos + 1:eol]
    nxt = eol + 2
    if t in (b"$", b"=", b"!"):
        n = int(header)
        if skel is not None:
            skel.append(t)
        return nxt if n < 0 else nxt + n + 2
    if t in (b"*", b"~", b"%", b">", b"|"):
        n = int(header)
        if skel is not None:
            skel.append(t + header)
        if n < 0:
            return nxt
        for _ in range(n * 2 if t in (b"%", b"|") else n):
            nxt = skeleton_end(raw, nxt, skel)
        if t == b"|":
            nxt = skeleton_end(raw, nxt, skel)
        return nxt
    if skel is not None:
        skel.append(t)
    return nxt


def structure(raw):
    skel = []
    skeleton_end(raw, 0, skel)
    return skel


def loose_structure(raw):
    """The set of (depth, type) in a reply."""
    out, stack = set(), []
    for tok in structure(raw):
        while stack and stack[-1] == 0:
            stack.pop()
        if stack:
            stack[-1] -= 1
        out.add((len(stack), tok[:1]))
        if len(tok) > 1:
            n = int(tok[1:])
            if n > 0:
                stack.append(n * 2 if tok[:1] in (b"%", b"|") else n)
    return out


def run_case(oracle, converter, steps):
    steps = replayable(steps)
    if not steps:
        pytest.skip("no step can be replayed on a RESP3 connection")
    with oracle.connect() as c2:
        reset(c2)
        r2 = run_steps(c2, steps)
    with oracle.connect() as c3:
        reset(c3)
        hello = c3.call("HELLO", "3")
        assert hello.startswith(b"%"), hello
        r3 = run_steps(c3, steps)
    records, compared, exec_queued = [], [], {}
    queued = None
    for i, st in enumerate(steps):
        if i >= len(r2) or i >= len(r3) or not isinstance(r2[i], bytes) or not isinstance(r3[i], bytes):
            break
        w = step_name(st)
        argv = [a for a in st.args if not isinstance(a, harness.Ref)]
        if any(isinstance(a, harness.Ref) for a in st.args):
            argv = list(st.args[:1])  # the command is what matters for the shape
        if w[0] == "MULTI" and r2[i] == b"+OK\r\n":
            queued = []
        elif w[0] == "DISCARD":
            queued = None
        elif w[0] == "EXEC" and queued is not None:
            exec_argv = []
            for q in queued:
                exec_argv += (["--"] if exec_argv else []) + q
            exec_queued[i] = queued
            records.append(("exec", exec_argv, r2[i]))
            compared.append((i, st))
            queued = None
            continue
        elif queued is not None and r2[i] == b"+QUEUED\r\n":
            queued.append(argv)
        records.append(("cmd", argv, r2[i]))
        compared.append((i, st))
    converted = convert_all(converter, records)
    problems = []
    for (i, st), got in zip(compared, converted):
        want = r3[i]
        w = step_name(st)
        if want == got:
            continue
        # Order that depends on the hash table's state (KEYS, SMEMBERS).
        if st.unordered and harness._normalize(st, want) == harness._normalize(st, got):
            continue
        if " ".join(w[:2]) in LOOSE and loose_structure(want) == loose_structure(got):
            continue
        if (w[0] in VARYING or " ".join(w[:2]) in VARYING or st.same_type
                or any(q and q[0].upper() in VARYING for q in exec_queued.get(i, []))):
            if structure(want) == structure(got):
                continue
        problems.append("step %d: %s\n    RESP2:     %r\n    converted: %r\n    RESP3:     %r"
                        % (i, st.describe(), r2[i][:400], got[:400], want[:400]))
    return len(compared), problems


COMPARED = {"cases": 0, "replies": 0}


@pytest.mark.parametrize("steps", CASES + relay_cases())
def test_resp3_shape(oracle, converter, steps):
    n, problems = run_case(oracle, converter, steps)
    COMPARED["cases"] += 1
    COMPARED["replies"] += n
    assert not problems, "%d of %d replies differ:\n%s" % (len(problems), n, "\n".join(problems))


# CLUSTER replies need a server in cluster mode (one node, a few slots).
CLUSTER_STEPS = ["CLUSTER ADDSLOTS 1 2 3 100", "CLUSTER INFO", "CLUSTER NODES", "CLUSTER SLOTS",
                 "CLUSTER SHARDS", "CLUSTER LINKS", "CLUSTER COUNTKEYSINSLOT 1", "CLUSTER KEYSLOT foo",
                 "CLUSTER GETKEYSINSLOT 1 5", "CLUSTER MYID", "READONLY", "READWRITE"]
CLUSTER_VARYING = {"CLUSTER INFO", "CLUSTER NODES"}


@pytest.fixture(scope="module")
def cluster_node(workdir):
    d = str(workdir / "cluster-node")
    # The cluster bus gets a free port of its own (by default port + 10000,
    # which may be taken).
    s = harness.RedisServer("cluster-node", d, extra=(
        "cluster-enabled yes", "cluster-config-file %s/nodes.conf" % d,
        "cluster-port %d" % harness.free_port()))
    s.start()
    yield s
    s.stop()


def test_resp3_shape_cluster(cluster_node, converter):
    steps = [as_step(x) for x in CLUSTER_STEPS]
    with cluster_node.connect() as c2:
        r2 = run_steps(c2, steps)
        c2.call("CLUSTER", "RESET", "SOFT")  # keeps the node id
    with cluster_node.connect() as c3:
        assert c3.call("HELLO", "3").startswith(b"%")
        r3 = run_steps(c3, steps)
    got = convert_all(converter, [("cmd", list(st.args), r) for st, r in zip(steps, r2)])
    problems = []
    for st, g, w in zip(steps, got, r3):
        name = " ".join(step_name(st)[:2])
        if g == w or (name in CLUSTER_VARYING and structure(g) == structure(w)):
            continue
        problems.append("%s\n    converted: %r\n    RESP3:     %r" % (st.describe(), g[:300], w[:300]))
    assert not problems, "\n".join(problems)
    COMPARED["replies"] += len(steps)


def test_resp3_shape_hello(oracle, converter):
    """HELLO's own reply: HELLO 2 converted against HELLO 3 (proto and id
    differ, so by structure)."""
    with oracle.connect() as c2, oracle.connect() as c3:
        r2 = c2.call("HELLO", "2")
        r3 = c3.call("HELLO", "3")
    got = convert_all(converter, [("cmd", ["HELLO", "2"], r2)])[0]
    assert structure(got) == structure(r3), (got, r3)
    assert got.replace(b":2\r\n", b":3\r\n", 1).split(b"$2\r\nid")[0] == r3.split(b"$2\r\nid")[0]
    COMPARED["replies"] += 1


def test_corpus_size(converter):
    """Runs after the cases above: the corpus must not silently shrink."""
    if COMPARED["cases"] < len(CASES):
        pytest.skip("only part of the corpus ran")
    print("\nRESP3 shapes: %(cases)d cases, %(replies)d replies compared" % COMPARED)
    assert COMPARED["replies"] >= 1500, COMPARED
