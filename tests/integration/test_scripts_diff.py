"""Differential suite for scripting: every case runs the same requests on the
oracle (redis-server 7.0 with its own Lua) and on the proxy (whose store has
no scripting at all) and requires byte-identical replies.

Most cases are one script, run two ways: EVAL, and SCRIPT LOAD + EVALSHA.
Scripts without writes also run as EVAL_RO and EVALSHA_RO. Error replies
carry the script's SHA1, which is the same on both sides, so they compare
as they are.

math.random is left out except after math.randomseed: the PRNG state is
not something two long-lived processes are guaranteed to share.
"""

import hashlib

import pytest

from harness import Ref, Step, encode_command, parse_reply

CASES = []
SCRIPT_BODIES = set()


def sha1(body):
    return hashlib.sha1(body.encode() if isinstance(body, str) else body).hexdigest()


def _eval_args(cmd, body_or_sha, keys, args):
    return (cmd, body_or_sha, len(keys)) + tuple(keys) + tuple(args)


def S(name, body, keys=(), args=(), setup=(), after=(), ro=None, sha=True, marks=()):
    """One script: an EVAL case, an EVALSHA case, and (for scripts that
    do not write, ro=True) EVAL_RO and EVALSHA_RO cases.

    setup  plain commands run first (through the proxy as well)
    after  plain commands run after the script, to see what it left behind
    """
    SCRIPT_BODIES.add(body)
    keys, args = tuple(keys), tuple(args)
    setup, after = list(setup), list(after)
    CASES.append(pytest.param(setup + [_eval_args("EVAL", body, keys, args)] + after,
                              id="eval-" + name, marks=marks))
    if sha:
        CASES.append(pytest.param(
            setup + [("SCRIPT", "LOAD", body), _eval_args("EVALSHA", sha1(body), keys, args)]
            + after, id="evalsha-" + name, marks=marks))
    if ro:
        CASES.append(pytest.param(setup + [_eval_args("EVAL_RO", body, keys, args)] + after,
                                  id="eval_ro-" + name, marks=marks))
        if sha:
            CASES.append(pytest.param(
                setup + [("SCRIPT", "LOAD", body),
                         _eval_args("EVALSHA_RO", sha1(body), keys, args)] + after,
                id="evalsha_ro-" + name, marks=marks))


def R(name, body, keys=(), args=(), setup=(), after=(), marks=()):
    """A script run only as EVAL_RO and EVALSHA_RO (e.g. to see a write refused)."""
    SCRIPT_BODIES.add(body)
    keys, args = tuple(keys), tuple(args)
    setup, after = list(setup), list(after)
    CASES.append(pytest.param(setup + [_eval_args("EVAL_RO", body, keys, args)] + after,
                              id="eval_ro-" + name, marks=marks))
    CASES.append(pytest.param(
        setup + [("SCRIPT", "LOAD", body), _eval_args("EVALSHA_RO", sha1(body), keys, args)]
        + after, id="evalsha_ro-" + name, marks=marks))


def C(name, *steps, marks=()):
    """A free-form case: any sequence of commands."""
    for s in steps:
        if isinstance(s, tuple) and s and str(s[0]).upper() in ("EVAL", "EVAL_RO",
                                                                  "SCRIPT") and len(s) > 1:
            if str(s[0]).upper() != "SCRIPT":
                SCRIPT_BODIES.add(s[1])
    CASES.append(pytest.param(list(steps), id=name, marks=marks))


def EV(body, *keys, args=()):
    return _eval_args("EVAL", body, keys, args)


# ---------------------------------------------------------------------------
# KEYS, ARGV and the basic shape of a call

S("return-int", "return 1", ro=True)
S("return-string", "return 'hello'", ro=True)
S("keys-argv-echo", "return {KEYS[1],KEYS[2],ARGV[1],ARGV[2],ARGV[3]}",
  keys=("key1", "key2"), args=("arg1", "arg2", "arg3"), ro=True)
S("keys-argv-count", "return {#KEYS, #ARGV}", keys=("a",), args=("b", "c"), ro=True)
S("no-keys-no-args", "return {#KEYS, #ARGV}", ro=True)
S("argv-only", "return ARGV", args=("x", "", "z"), ro=True)
S("keys-binary", "return {KEYS[1], #KEYS[1]}", keys=(b"a\x00b\r\n",), ro=True)
S("argv-empty-string", "return {ARGV[1], #ARGV[1], type(ARGV[1])}", args=("",), ro=True)
S("argv-is-string", "return type(ARGV[1])", args=("42",), ro=True)
S("tonumber-argv", "return tonumber(ARGV[1]) + tonumber(ARGV[2])", args=("40", "2"), ro=True)
S("keys-modified-locally", "KEYS[1]='x' return KEYS[1]", keys=("a",), ro=True)
S("keys-table-insert", "table.insert(KEYS,'z') return KEYS", keys=("a",), ro=True)
S("set-get", "redis.call('set',KEYS[1],ARGV[1]) return redis.call('get',KEYS[1])",
  keys=("key",), args=("val",), after=["GET key"])
S("get-missing", "return redis.call('get',KEYS[1])", keys=("nokey",), ro=True)
S("get-existing", "return redis.call('get',KEYS[1])", keys=("k",), setup=["SET k v"], ro=True)
S("lower-and-mixed-case-command", "return {redis.call('GeT',KEYS[1]), redis.call('PING')}",
  keys=("k",), setup=["SET k v"], ro=True)
S("many-keys", "local r = {} for i=1,#KEYS do r[i] = redis.call('incr', KEYS[i]) end return r",
  keys=tuple("k%d" % i for i in range(20)), after=["MGET k0 k19"])
S("many-args", "return #ARGV .. ':' .. ARGV[#ARGV]", args=tuple(str(i) for i in range(500)),
  ro=True)
S("big-argv", "return #ARGV[1]", args=("x" * 100000,), ro=True)
S("big-value-roundtrip", "redis.call('set',KEYS[1],ARGV[1]) return redis.call('get',KEYS[1])",
  keys=("big",), args=("v" * 70000,))
S("multiline-body", "\nlocal a = 1\nlocal b = 2\n\nreturn a + b\n", ro=True)
S("comment-only", "-- nothing here", ro=True)
S("empty-body", "", ro=True)
S("return-nothing", "local x = 1", ro=True)
S("return-multiple-values", "return 1, 2, 3", ro=True)
S("select-db-then-call", "return redis.call('get',KEYS[1])", keys=("k",),
  setup=["SELECT 3", "SET k in3"], after=["GET k"], ro=True)
S("script-select-changes-db", "redis.call('select', 2) redis.call('set',KEYS[1],'in2') "
  "return redis.call('get',KEYS[1])", keys=("k",),
  after=["GET k", "SELECT 2", "GET k", "SELECT 0"])

# ---------------------------------------------------------------------------
# Lua -> RESP conversion

S("conv-integer", "return 42", ro=True)
S("conv-negative", "return -7", ro=True)
S("conv-zero", "return 0", ro=True)
S("conv-float-truncated", "return 3.99", ro=True)
S("conv-negative-float-truncated", "return -3.99", ro=True)
S("conv-small-float", "return 0.5", ro=True)
S("conv-float-in-table", "return {1.5, 2.7, -0.2}", ro=True)
S("conv-float-as-string", "return tostring(3.14)", ro=True)
S("conv-large-integer", "return 2^53", ro=True)
S("conv-int64-max-ish", "return 9007199254740993", ro=True)
S("conv-string-number", "return '42'", ro=True)
S("conv-empty-string", "return ''", ro=True)
S("conv-binary-string", "return 'a\\0b\\r\\nc'", ro=True)
S("conv-nil", "return nil", ro=True)
S("conv-false", "return false", ro=True)
S("conv-true", "return true", ro=True)
S("conv-array", "return {1, 'two', 3}", ro=True)
S("conv-nested", "return {1, {2, {3, {4, 'deep'}}}, 'end'}", ro=True)
S("conv-nested-empty", "return {{}, {{}}, {}}", ro=True)
S("conv-empty-table", "return {}", ro=True)
S("conv-truncated-at-nil", "return {1, 2, nil, 4}", ro=True)
S("conv-truncated-at-first-nil", "return {nil, 2, 3}", ro=True)
S("conv-false-inside-array", "return {1, false, 3}", ro=True)
S("conv-true-inside-array", "return {true, true}", ro=True)
S("conv-hash-part-ignored", "return {1, 2, a='x', b='y'}", ro=True)
S("conv-hash-only", "return {a=1}", ro=True)
S("conv-status", "return {ok='FINE'}", ro=True)
S("conv-status-empty", "return {ok=''}", ro=True)
S("conv-status-crlf", "return {ok='a\\r\\nb'}", ro=True)
S("conv-status-nonstring", "return {ok=5}", ro=True)
S("conv-error", "return {err='MYERR something'}", ro=True)
S("conv-error-no-code", "return {err='plain words'}", ro=True)
S("conv-error-crlf", "return {err='a\\r\\nb'}", ro=True)
S("conv-error-empty", "return {err=''}", ro=True)
S("conv-error-nonstring", "return {err=5}", ro=True)
S("conv-err-and-ok", "return {err='E1', ok='O1'}", ro=True)
S("conv-status-in-array", "return {1, {ok='OK'}, {err='ERR inner'}}", ro=True)
S("conv-array-with-hash-status", "return {ok='x', 1, 2}", ro=True)
S("conv-huge-double", "return 1e20", ro=True)
S("conv-negative-huge-double", "return -1e20", ro=True)
S("conv-inf", "return math.huge", ro=True)
S("conv-minus-inf", "return -math.huge", ro=True)
S("conv-nan-string", "return tostring(0/0) ~= nil", ro=True)
S("conv-long-array", "local t = {} for i=1,1000 do t[i]=i end return t", ro=True)
S("conv-long-string", "return string.rep('ab', 50000)", ro=True)
S("conv-function", "return function() end", ro=True)
S("conv-table-metatable-ignored",
  "return setmetatable({1,2}, {__index=function() return 9 end})", ro=True)
S("conv-deep-nesting", "local t = {} local c = t for i=1,100 do c[1] = {} c = c[1] end "
  "c[1] = 'bottom' return t", ro=True)
S("conv-double-field-resp2", "return {double=1.5}", ro=True)
S("conv-map-field-resp2", "return {map={a=1}}", ro=True)

# ---------------------------------------------------------------------------
# RESP -> Lua conversion

S("rl-integer-type", "return {type(redis.call('incr',KEYS[1])), redis.call('incr',KEYS[1])}",
  keys=("n",))
S("rl-bulk-type", "redis.call('set',KEYS[1],'5') local v = redis.call('get',KEYS[1]) "
  "return {type(v), v}", keys=("k",))
S("rl-nil-bulk-is-false", "local v = redis.call('get',KEYS[1]) return {type(v), v == false}",
  keys=("nokey",), ro=True)
S("rl-nil-multibulk-is-false", "local v = redis.call('blpop',KEYS[1],1) return {type(v), v == false}",
  keys=("nolist",))
S("rl-status-table", "local r = redis.call('set',KEYS[1],'v') return {type(r), r.ok}",
  keys=("k",))
S("rl-status-returned", "return redis.call('set',KEYS[1],'v')", keys=("k",))
S("rl-ping-status", "local r = redis.call('ping') return r.ok", ro=True)
S("rl-ping-returned", "return redis.call('ping')", ro=True)
S("rl-error-table", "local r = redis.pcall('incr',KEYS[1]) return {type(r), r.err}",
  keys=("s",), setup=["SET s x"])
S("rl-error-returned", "return redis.pcall('incr',KEYS[1])", keys=("s",), setup=["SET s x"])
S("rl-error-keys", "local r = redis.pcall('incr',KEYS[1]) local t = {} "
  "for k in pairs(r) do t[#t+1] = k end table.sort(t) return t", keys=("s",),
  setup=["SET s x"])
S("rl-array", "return redis.call('lrange',KEYS[1],0,-1)", keys=("l",),
  setup=["RPUSH l a b c"], ro=True)
S("rl-empty-array", "local r = redis.call('lrange',KEYS[1],0,-1) return {type(r), #r}",
  keys=("l",), ro=True)
S("rl-hgetall", "return redis.call('hgetall',KEYS[1])", keys=("h",),
  setup=["HSET h a 1 b 2"], ro=True)
S("rl-zrange-withscores", "return redis.call('zrange',KEYS[1],0,-1,'withscores')",
  keys=("z",), setup=["ZADD z 1 a 2.5 b -3 c"], ro=True)
S("rl-zscore-string", "local s = redis.call('zscore',KEYS[1],'b') return {type(s), s}",
  keys=("z",), setup=["ZADD z 2.5 b"], ro=True)
S("rl-mget-with-nils", "return redis.call('mget',KEYS[1],KEYS[2],KEYS[3])",
  keys=("a", "missing", "c"), setup=["MSET a 1 c 3"], ro=True)
S("rl-mget-nil-as-false", "local r = redis.call('mget',KEYS[1],KEYS[2]) "
  "return {r[1], tostring(r[2])}", keys=("a", "missing"), setup=["SET a 1"], ro=True)
S("rl-nested-xrange", "return redis.call('xrange',KEYS[1],'-','+')", keys=("x",),
  setup=["XADD x 1-1 f v g w", "XADD x 2-1 a b"], ro=True)
S("rl-nested-xrange-access", "local r = redis.call('xrange',KEYS[1],'-','+') "
  "return {r[1][1], r[1][2][1], #r[1][2]}", keys=("x",), setup=["XADD x 1-1 f v g w"], ro=True)
S("rl-scan-nested", "local r = redis.call('scan', 0, 'match', 'onlyme', 'count', 1000) return r",
  setup=["SET onlyme 1"], ro=True)
S("rl-exists-number", "return redis.call('exists',KEYS[1]) == 0", keys=("x",), ro=True)
S("rl-float-reply-string", "return redis.call('incrbyfloat',KEYS[1],'1.5')", keys=("f",))
S("rl-integer-roundtrip-large", "redis.call('set',KEYS[1],'9007199254740993') "
  "return redis.call('incr',KEYS[1])", keys=("n",))
S("rl-integer-negative", "return redis.call('decrby',KEYS[1],100)", keys=("n",))
S("rl-call-int-arg", "redis.call('set',KEYS[1],1.5) return redis.call('get',KEYS[1])",
  keys=("k",))
S("rl-call-float-arg-precision", "redis.call('set',KEYS[1],0.1) return redis.call('get',KEYS[1])",
  keys=("k",))
S("rl-call-huge-float-arg", "redis.call('set',KEYS[1],1e20) return redis.call('get',KEYS[1])",
  keys=("k",))
S("rl-echo-integer-arg", "return redis.call('echo', 12345678901234)", ro=True)
S("rl-echo-neg-zero", "return redis.call('echo', -0.0)", ro=True)
S("rl-echo-inf", "return redis.call('echo', 1/0)", ro=True)
S("rl-echo-binary", "return redis.call('echo', 'a\\0b')", ro=True)
S("rl-echo-bool-arg", "return redis.call('echo', true)", ro=True)
S("rl-echo-nil-arg", "return redis.call('echo', nil)", ro=True)
S("rl-echo-table-arg", "return redis.call('echo', {})", ro=True)
S("rl-type-status", "return redis.call('type',KEYS[1])", keys=("l",), setup=["RPUSH l a"],
  ro=True)
S("rl-type-status-ok-field", "return redis.call('type',KEYS[1]).ok", keys=("l",),
  setup=["RPUSH l a"], ro=True)
S("rl-smembers-int-set", "return redis.call('smembers',KEYS[1])", keys=("s",),
  setup=["SADD s 3 1 2"], ro=True)
S("rl-sort-reply", "return redis.call('sort',KEYS[1])", keys=("l",),
  setup=["RPUSH l 3 1 2"], ro=True)
S("rl-lpos-nil", "return {redis.call('lpos',KEYS[1],'zz')}", keys=("l",),
  setup=["RPUSH l a"], ro=True)

# ---------------------------------------------------------------------------
# RESP3 inside scripts (redis.setresp) and for RESP3 clients

S("resp3-hgetall-map", "redis.setresp(3) redis.call('hset',KEYS[1],'a','1') "
  "return redis.call('hgetall',KEYS[1])", keys=("h",))
S("resp3-map-field", "redis.setresp(3) redis.call('hset',KEYS[1],'a','1') "
  "local r = redis.call('hgetall',KEYS[1]) return r.map.a", keys=("h",))
S("resp3-null-type", "redis.setresp(3) return type(redis.call('get',KEYS[1]))", keys=("n",),
  ro=True)
S("resp3-null-returned", "redis.setresp(3) return redis.call('get',KEYS[1])", keys=("n",),
  ro=True)
S("resp3-set-type", "redis.setresp(3) redis.call('sadd',KEYS[1],'m') "
  "local r = redis.call('smembers',KEYS[1]) return {type(r.set), r.set.m}", keys=("s",))
S("resp3-double", "redis.setresp(3) redis.call('zadd',KEYS[1],1.5,'a') "
  "local r = redis.call('zscore',KEYS[1],'a') return r.double * 2", keys=("z",))
S("resp3-return-double", "redis.setresp(3) return {double=0.1}", ro=True)
S("resp3-true", "redis.setresp(3) return true", ro=True)
S("resp3-false", "redis.setresp(3) return false", ro=True)
S("resp3-bad-version", "redis.setresp(4)", ro=True)
S("resp3-no-arg", "redis.setresp()", ro=True)
S("resp3-string-arg", "return redis.setresp('3')", ro=True)
S("resp3-back-to-2", "redis.setresp(3) redis.setresp(2) return type(redis.call('get',KEYS[1]))",
  keys=("n",), ro=True)
S("resp3-bool-reply", "redis.setresp(3) return {type(redis.call('exists',KEYS[1]))}",
  keys=("n",), ro=True)

RESP3_BODIES = [
    ("map", "return {map={a=1, b={2, 3}}}"),
    ("set", "return {set={x=true}}"),
    ("double", "return {double=1.5}"),
    ("double-integral", "return {double=3}"),
    ("big-number", "return {big_number='1234567890123456789012345'}"),
    ("verbatim", "return {verbatim_string={format='txt', string='hi there'}}"),
    ("nil", "return nil"),
    ("false", "return false"),
    ("true", "return true"),
    ("setresp3-false", "redis.setresp(3) return false"),
    ("setresp3-true", "redis.setresp(3) return true"),
    ("setresp3-hgetall", "redis.setresp(3) return redis.call('hgetall',KEYS[1])"),
    ("setresp3-null", "redis.setresp(3) return redis.call('get','nokey')"),
    ("setresp2-hgetall", "return redis.call('hgetall',KEYS[1])"),
    ("status", "return redis.status_reply('FINE')"),
    ("error", "return redis.error_reply('MY err')"),
    ("array", "return {1, 'a', {2}}"),
]
for _name, _body in RESP3_BODIES:
    C("resp3-client-" + _name,
      Step(args=("HELLO", "3"), same_type=True),
      "HSET h f v",
      EV(_body, "h"),
      ("SCRIPT", "LOAD", _body),
      ("EVALSHA", sha1(_body), 1, "h"))

# ---------------------------------------------------------------------------
# redis.* API

S("api-sha1hex-empty", "return redis.sha1hex('')", ro=True)
S("api-sha1hex-abc", "return redis.sha1hex('abc')", ro=True)
S("api-sha1hex-number", "return redis.sha1hex(1)", ro=True)
S("api-sha1hex-no-arg", "return redis.sha1hex()", ro=True)
S("api-sha1hex-table", "return redis.sha1hex({})", ro=True)
S("api-sha1hex-binary", "return redis.sha1hex('\\0\\1\\2')", ro=True)
S("api-log-warning", "return redis.log(redis.LOG_WARNING,'hello',1,{})", ro=True)
S("api-log-all-levels", "redis.log(redis.LOG_DEBUG,'d') redis.log(redis.LOG_VERBOSE,'v') "
  "redis.log(redis.LOG_NOTICE,'n') redis.log(redis.LOG_WARNING,'w') return 1", ro=True)
S("api-log-no-message", "return redis.log(redis.LOG_WARNING)", ro=True)
S("api-log-bad-level-type", "return redis.log('x','y')", ro=True)
S("api-log-bad-level", "return redis.log(9,'y')", ro=True)
S("api-log-no-args", "return redis.log()", ro=True)
S("api-log-constants", "return {redis.LOG_DEBUG,redis.LOG_VERBOSE,redis.LOG_NOTICE,"
  "redis.LOG_WARNING}", ro=True)
S("api-repl-constants", "return {redis.REPL_NONE,redis.REPL_AOF,redis.REPL_SLAVE,"
  "redis.REPL_REPLICA,redis.REPL_ALL}", ro=True)
S("api-set-repl-all", "return redis.set_repl(redis.REPL_ALL)", ro=True)
S("api-set-repl-none", "redis.set_repl(redis.REPL_NONE) redis.call('set',KEYS[1],'v') "
  "return redis.call('get',KEYS[1])", keys=("k",))
S("api-set-repl-bad", "return redis.set_repl(99)", ro=True)
S("api-set-repl-no-arg", "return redis.set_repl()", ro=True)
S("api-replicate-commands", "return redis.replicate_commands()", ro=True)
S("api-breakpoint", "return redis.breakpoint()", ro=True)
S("api-debug", "return redis.debug('x')", ro=True)
S("api-debug-no-args", "return redis.debug()", ro=True)
S("api-version", "return redis.REDIS_VERSION", ro=True)
S("api-version-num", "return redis.REDIS_VERSION_NUM", ro=True)
S("api-version-types", "return {type(redis.REDIS_VERSION), type(redis.REDIS_VERSION_NUM)}",
  ro=True)
S("api-acl-check-get", "return redis.acl_check_cmd('get','x')", ro=True)
S("api-acl-check-set", "return redis.acl_check_cmd('set','x','y')", ro=True)
S("api-acl-check-unknown", "return redis.acl_check_cmd('nosuch')", ro=True)
S("api-acl-check-no-args", "return redis.acl_check_cmd()", ro=True)
S("api-acl-check-table-arg", "return redis.acl_check_cmd('get',{})", ro=True)
S("api-error-reply", "return redis.error_reply('My Error')", ro=True)
S("api-error-reply-with-code", "return redis.error_reply('MYCODE details here')", ro=True)
S("api-error-reply-dash", "return redis.error_reply('-ALREADY dashed')", ro=True)
S("api-error-reply-empty", "return redis.error_reply('')", ro=True)
S("api-error-reply-table", "local e = redis.error_reply('X y') return {type(e), e.err}",
  ro=True)
S("api-error-reply-no-arg", "return redis.error_reply()", ro=True)
S("api-error-reply-number", "return redis.error_reply(5)", ro=True)
S("api-status-reply", "return redis.status_reply('FINE')", ro=True)
S("api-status-reply-table", "local s = redis.status_reply('X') return s.ok", ro=True)
S("api-status-reply-no-arg", "return redis.status_reply()", ro=True)
S("api-redis-table-keys", "local t={} for k,v in pairs(redis) do t[#t+1]=k end "
  "table.sort(t) return t", ro=True)
S("api-call-no-args", "return redis.call()", ro=True)
S("api-pcall-no-args", "return redis.pcall()", ro=True)
S("api-pcall-table-arg", "return redis.pcall({})", ro=True)
S("api-pcall-of-call-no-args", "local ok, r = pcall(redis.call) return r", ro=True)
S("api-call-number-command", "return redis.call(1)", ro=True)
S("api-setresp-returns", "return {redis.setresp(2)}", ro=True)

# ---------------------------------------------------------------------------
# error paths

S("err-call-wrongtype", "redis.call('set',KEYS[1],'x') return redis.call('lpush',KEYS[1],'y')",
  keys=("s",))
S("err-call-not-integer", "return redis.call('incr',KEYS[1])", keys=("s",),
  setup=["SET s x"])
S("err-call-not-integer-line3", "local a = 1\nlocal b = 2\nreturn redis.call('incr',KEYS[1])",
  keys=("s",), setup=["SET s x"])
S("err-pcall-not-integer", "return redis.pcall('incr',KEYS[1])", keys=("s",),
  setup=["SET s x"])
S("err-pcall-err-field", "local r = redis.pcall('incr',KEYS[1]) return r.err", keys=("s",),
  setup=["SET s x"])
S("err-call-unknown", "return redis.call('nosuch')", ro=True)
S("err-pcall-unknown", "return redis.pcall('nosuch')", ro=True)
S("err-pcall-unknown-err-field", "return redis.pcall('nosuch').err", ro=True)
S("err-call-arity", "return redis.call('incr',KEYS[1],'b')", keys=("a",))
S("err-call-arity-set", "return redis.call('set',KEYS[1])", keys=("a",))
S("err-pcall-arity", "return redis.pcall('set',KEYS[1])", keys=("a",))
S("err-call-syntax", "return redis.call('set',KEYS[1],'v','nx','xx')", keys=("a",))
S("err-call-multi", "return redis.call('multi')", ro=True)
S("err-call-exec", "return redis.call('exec')", ro=True)
S("err-call-watch", "return redis.call('watch',KEYS[1])", keys=("a",), ro=True)
S("err-call-subscribe", "return redis.call('subscribe','ch')", ro=True)
S("err-call-psubscribe", "return redis.call('psubscribe','ch*')", ro=True)
S("err-call-eval", "return redis.call('eval','return 1','0')", ro=True)
S("err-pcall-eval", "return redis.pcall('eval','return 1','0')", ro=True)
S("err-call-evalsha", "return redis.call('evalsha','0000000000000000000000000000000000000000','0')",
  ro=True)
S("err-call-script", "return redis.call('script','flush')", ro=True)
S("err-call-blpop-allowed", "return redis.call('blpop',KEYS[1],0)", keys=("q",),
  setup=["RPUSH q item"])
S("err-call-client-setname", "return redis.pcall('client','setname','x')", ro=True)
S("err-pcall-in-pcall", "return {pcall(redis.call,'nosuch')}", ro=True)
S("err-pcall-type", "local ok,e = pcall(redis.call,'nosuch') return type(e)", ro=True)
S("err-pcall-err-table", "local ok,e = pcall(redis.call,'nosuch') return e.err", ro=True)
S("err-pcall-then-continue", "local ok, e = pcall(function() "
  "pcall(function() redis.call('incr','a','b') end) return redis.call('echo','after') end) "
  "return e", ro=True)
S("err-error-string", "error('boom')", ro=True)
S("err-error-string-level0", "error('boom',0)", ro=True)
S("err-error-string-level2", "local function f() error('lvl2', 2) end\nf()", ro=True)
S("err-error-newline", "error('a\\nb')", ro=True)
S("err-error-table-err", "error({err='MY boom'})", ro=True)
S("err-error-table-lowercase", "error({err='boom'})", ro=True)
S("err-error-table-crlf", "error({err='a\\r\\nb'})", ro=True)
S("err-error-table-leading-newline", "error({err='\\nab\\n'})", ro=True)
S("err-error-table-empty", "error({err=''})", ro=True)
S("err-error-table-source-line", "error({err='x', source='src', line=99})", ro=True)
S("err-error-nil", "error(nil)", ro=True)
S("err-error-number", "error(123)", ro=True)
S("err-error-error-reply", "error(redis.error_reply('CUSTOM code'))", ro=True)
S("err-return-error-reply-from-pcall", "return redis.pcall('nosuch')", ro=True)
S("err-index-nil", "local a = nil; return a.b", ro=True)
S("err-nested-function", "\nlocal function f()\n  error('deep')\nend\nf()", ro=True)
S("err-arith-table", "return 1 + {}", ro=True)
S("err-len-nil", "return #nil", ro=True)
S("err-concat-table", "local s = 'x' .. {}", ro=True)
S("err-call-nil", "local f = nil f()", ro=True)
S("err-compare", "return {} < {}", ro=True)
S("err-stack-overflow", "local function r(n) return r(n+1)+1 end return r(1)", ro=True)
S("err-stack-overflow-2", "local function r(n) return n+r(n+1) end return r(1)", ro=True)
S("err-pcall-error-table", "local ok,e = pcall(error,{err='X y'}) return e", ro=True)
S("err-pcall-error-string", "local ok,e = pcall(error,'zz') return e", ro=True)
S("err-pcall-function-error", "local ok,e = pcall(function() error('zz') end) return e",
  ro=True)
S("err-pcall-runtime", "local ok,e = pcall(function() local a = nil; return a.b end) return e",
  ro=True)
S("err-xpcall-handler", "local ok,e = xpcall(function() error('zz') end, "
  "function(m) return 'H:'..tostring(m) end) return e", ro=True)
S("err-xpcall-redis-error", "local ok,e = xpcall(function() redis.call('nosuch') end, "
  "function(m) return type(m) end) return e", ro=True)
S("err-pcall-no-args", "return pcall()", ro=True)
S("err-pcall-error-no-args", "return {pcall(error)}", ro=True)
S("err-tostring-error-table", "local ok,e = pcall(redis.call,'incr',KEYS[1]) return tostring(e.err)",
  keys=("s",), setup=["SET s x"])
S("err-assert", "assert(false, 'assertion text')", ro=True)
S("err-assert-no-msg", "assert(nil)", ro=True)
S("err-after-write", "redis.call('set',KEYS[1],'written') error('after')", keys=("k",),
  after=["GET k"])
S("err-call-error-after-write", "redis.call('set',KEYS[1],'1') redis.call('lpush',KEYS[1],'x') "
  "return 1", keys=("k",), after=["GET k"])
S("err-compile-plus", "return 1 +", ro=True)
S("err-compile-paren", "return (", ro=True)
S("err-compile-assign", "x = = 1", ro=True)
S("err-compile-end", "return 1 end", ro=True)
S("err-compile-string", "return 'abc", ro=True)
S("err-compile-line3", "\n\nlocal x = 1 1", ro=True)
S("err-compile-bytecode-body", "\033Lua", ro=True)
S("err-compile-goto", "goto x", ro=True)
S("err-compile-bad-escape", "return '\\q'", ro=True)

# ---------------------------------------------------------------------------
# shebang and flags

S("shebang-plain", "#!lua\nreturn 1", ro=True)
S("shebang-crlf", "#!lua\r\nreturn 1", ro=True)
S("shebang-no-writes-write", "#!lua flags=no-writes\nreturn redis.call('set',KEYS[1],'1')",
  keys=("x",), after=["EXISTS x"])
S("shebang-no-writes-pcall-write", "#!lua flags=no-writes\nreturn redis.pcall('set',KEYS[1],'1')",
  keys=("x",), after=["EXISTS x"])
S("shebang-no-writes-read", "#!lua flags=no-writes\nreturn redis.call('get',KEYS[1])",
  keys=("x",), setup=["SET x 1"], ro=True)
S("shebang-all-flags", "#!lua flags=no-writes,allow-oom,allow-stale,no-cluster,"
  "allow-cross-slot-keys\nreturn 1", ro=True)
S("shebang-unknown-flag", "#!lua flags=bogus\nreturn 1")
S("shebang-double-comma", "#!lua flags=no-writes,,allow-oom\nreturn 1")
S("shebang-empty-flags", "#!lua flags=\nreturn 1")
S("shebang-two-spaces", "#!lua  flags=no-writes\nreturn 1")
S("shebang-quoted", "#!lua \"flags=no-writes\"\nreturn 1")
S("shebang-unbalanced-quote", "#!lua \"flags=no-writes\nreturn 1")
S("shebang-unknown-option", "#!lua foo=bar\nreturn 1")
S("shebang-other-engine", "#!python\nreturn 1")
S("shebang-empty-engine", "#!\nreturn 1")
S("shebang-space-before-engine", "#! lua\nreturn 1")
S("shebang-no-newline", "#!lua")
S("shebang-error-line", "#!lua\nerror('x')", ro=True)
S("shebang-global-line", "#!lua\n\nreturn x", ro=True)
S("shebang-compile-error", "#!lua\nreturn 1 +")
S("shebang-not-first", "#no shebang\nreturn 1", ro=True)
S("shebang-uppercase", "#!LUA\nreturn 1")
S("shebang-no-writes-publish", "#!lua flags=no-writes\nreturn redis.call('publish','ch','m')",
  )
S("shebang-no-writes-pfcount", "#!lua flags=no-writes\nreturn redis.call('pfcount',KEYS[1])",
  keys=("hll",), setup=["PFADD hll a b"])
S("shebang-no-writes-keys-read", "#!lua flags=no-writes\nreturn redis.call('mget',KEYS[1],KEYS[2])",
  keys=("a", "b"), setup=["MSET a 1 b 2"], ro=True)
S("shebang-allow-oom-write", "#!lua flags=allow-oom\nreturn redis.call('set',KEYS[1],'v')",
  keys=("k",), after=["GET k"])
S("shebang-no-cluster", "#!lua flags=no-cluster\nreturn redis.call('incr',KEYS[1])",
  keys=("n",))
S("shebang-script-load-error", "#!lua flags=bogus,no-writes\nreturn 1")

# EVAL_RO: writes refused, reads fine, shebang without no-writes refused
R("ro-write-call", "return redis.call('set',KEYS[1],'1')", keys=("x",), after=["EXISTS x"])
R("ro-write-pcall", "return redis.pcall('set',KEYS[1],'1')", keys=("x",), after=["EXISTS x"])
R("ro-write-pcall-err", "return redis.pcall('set',KEYS[1],'1').err", keys=("x",))
R("ro-write-after-read", "local v = redis.call('get',KEYS[1])\nredis.call('del',KEYS[1])\n"
  "return v", keys=("x",), setup=["SET x keep"], after=["GET x"])
R("ro-incr", "return redis.call('incr',KEYS[1])", keys=("n",))
R("ro-publish", "return redis.call('publish','ch','msg')")
R("ro-spublish", "return redis.call('spublish','ch','msg')")
R("ro-pfcount", "return redis.call('pfcount',KEYS[1])", keys=("hll",), setup=["PFADD hll a"],
  )
R("ro-pfadd", "return redis.call('pfadd',KEYS[1],'x')", keys=("hll",))
R("ro-read", "return redis.call('get',KEYS[1])", keys=("x",), setup=["SET x val"])
R("ro-shebang-without-no-writes", "#!lua\nreturn redis.call('get',KEYS[1])", keys=("x",))
R("ro-shebang-other-flag", "#!lua flags=allow-oom\nreturn 1")
R("ro-shebang-no-writes", "#!lua flags=no-writes\nreturn redis.call('get',KEYS[1])",
  keys=("x",), setup=["SET x val"])
R("ro-write-in-pcall-lua", "local ok, e = pcall(redis.call,'set',KEYS[1],'1') return e.err",
  keys=("x",))
R("ro-nosuch", "return redis.call('nosuch')")

# ---------------------------------------------------------------------------
# sandbox

S("sb-undefined-global", "return x", ro=True)
S("sb-undefined-global-local", "local x = undefinedvar", ro=True)
S("sb-undefined-global-line3", "\n\nreturn x", ro=True)
S("sb-G-index", "return _G.x", ro=True)
S("sb-G-bool-index", "return _G[true]", ro=True)
S("sb-rawget", "return rawget(_G,'x')", ro=True)
S("sb-rawget-string", "return type(rawget(_G,'string'))", ro=True)
S("sb-global-write", "x=1", ro=True)
S("sb-global-write-G", "_G.x=1", ro=True)
S("sb-global-function", "function f() return 1 end return f()", ro=True)
S("sb-keys-reassign", "KEYS={} return 1", ro=True)
S("sb-rawset", "rawset(_G,'x',1) return x", ro=True)
S("sb-setmetatable-G", "setmetatable(_G,nil) return 1", ro=True)
S("sb-getmetatable-G-type", "return type(getmetatable(_G))", ro=True)
S("sb-getmetatable-G-modify", "local t = getmetatable(_G) t.__index = nil return 1", ro=True)
S("sb-string-metatable-modify", "local m=getmetatable('') m.__index=nil return 1", ro=True)
S("sb-string-metatable-type", "return type(getmetatable(''))", ro=True)
S("sb-string-metatable-index", "return type(getmetatable('').__index)", ro=True)
S("sb-string-metatable-is-string", "return rawequal(string, getmetatable('').__index)", ro=True)
S("sb-getmetatable-string-lib", "return getmetatable(string)", ro=True)
S("sb-string-lib-names", "local t={} for k in pairs(string) do t[#t+1]=k end table.sort(t) "
  "return t", ro=True)
S("sb-math-lib-names", "local t={} for k in pairs(math) do t[#t+1]=k end table.sort(t) return t",
  ro=True)
S("sb-table-lib-names", "local t={} for k in pairs(table) do t[#t+1]=k end table.sort(t) "
  "return t", ro=True)
S("sb-coroutine-lib-names", "local t={} for k in pairs(coroutine) do t[#t+1]=k end "
  "table.sort(t) return t", ro=True)
S("sb-cjson-lib-names", "local t={} for k in pairs(cjson) do t[#t+1]=k end table.sort(t) "
  "return t", ro=True)
S("sb-bit-lib-names", "local t={} for k in pairs(bit) do t[#t+1]=k end table.sort(t) return t",
  ro=True)
S("sb-struct-lib-names", "local t={} for k in pairs(struct) do t[#t+1]=k end table.sort(t) "
  "return t", ro=True)
S("sb-cmsgpack-lib-names", "local t={} for k in pairs(cmsgpack) do t[#t+1]=k end "
  "table.sort(t) return t", ro=True)
S("sb-os-lib-names", "local t={} for k in pairs(os) do t[#t+1]=k end table.sort(t) return t",
  ro=True)
S("sb-string-len-present", "return rawget(string,'len') ~= nil", ro=True)
S("sb-string-lib-readonly", "string.len=nil", ro=True)
S("sb-string-lib-add", "string.foo=1", ro=True)
S("sb-cjson-readonly", "cjson.encode=nil", ro=True)
S("sb-redis-readonly", "redis.call=nil", ro=True)
S("sb-math-readonly", "math.random=nil", ro=True)
S("sb-rawset-string-lib", "rawset(string,'x',1)", ro=True)
S("sb-globals-list", "local t={} for k,v in pairs(_G) do t[#t+1]=k end table.sort(t) return t",
  keys=("k",), ro=True)
S("sb-globals-count", "local n=0 for k,v in pairs(_G) do n=n+1 end return n", ro=True)
S("sb-os-clock-type", "return type(os.clock())", ro=True)
S("sb-os-time-absent", "return type(os.time)", ro=True)
S("sb-os-execute-absent", "return os.execute('true')", ro=True)
S("sb-os-type", "return type(os)", ro=True)
S("sb-debug-type", "return type(debug)", ro=True)
S("sb-print-type", "return type(print)", ro=True)
S("sb-print-call", "print('x')", ro=True)
S("sb-loadfile-type", "return type(loadfile)", ro=True)
S("sb-loadfile-call", "return loadfile('/etc/passwd')", ro=True)
S("sb-dofile-type", "return type(dofile)", ro=True)
S("sb-dofile-call", "return dofile('/etc/passwd')", ro=True)
S("sb-getfenv-type", "return type(getfenv)", ro=True)
S("sb-setfenv-type", "return type(setfenv)", ro=True)
S("sb-newproxy-type", "return type(newproxy)", ro=True)
S("sb-module-type", "return type(module)", ro=True)
S("sb-require-type", "return type(require)", ro=True)
S("sb-require-call", "return require('os')", ro=True)
S("sb-io-type", "return type(io)", ro=True)
S("sb-io-open", "return io.open('/etc/passwd')", ro=True)
S("sb-package-type", "return type(package)", ro=True)
S("sb-version", "return _VERSION", ro=True)
S("sb-loadstring", "return loadstring('return 1')()", ro=True)
S("sb-loadstring-bytecode", "return {loadstring('\\27Lua')}", ro=True)
S("sb-loadstring-bytecode-msg", "local a,b = loadstring('\\27Lua') return b", ro=True)
S("sb-loadstring-dump", "local a,b = loadstring(string.dump(function() return 1 end)) return b",
  ro=True)
S("sb-loadstring-syntax", "local a,b = loadstring('return (') return b", ro=True)
S("sb-loadstring-global-read", "local f = loadstring('return x') return f()", ro=True)
S("sb-loadstring-global-write", "local f = loadstring('y=1') return f()", ro=True)
S("sb-loadstring-keys", "local f = loadstring('return KEYS[1]') return f()", keys=("kk",),
  ro=True)
S("sb-load-function", "return load(function() return nil end) ~= nil", ro=True)
S("sb-load-bytecode-chunks", "local s = string.dump(function() return 1 end) "
  "local a,b = load(function() local x = s s = nil return x end) return b", ro=True)
S("sb-load-pieces", "local parts = {'return ', '4', '2'} local i = 0 "
  "return load(function() i = i + 1 return parts[i] end)()", ro=True)
S("sb-local-metatable", "local t = {} t.x=1 setmetatable(t,{}) return t.x", ro=True)
S("sb-index-metamethod", "local t = setmetatable({}, {__index=function(t,k) return k..'!' end}) "
  "return t.hi", ro=True)
S("sb-unpack", "return select('#', unpack({1,2,3}))", ro=True)
S("sb-gcinfo", "return gcinfo() > 0", ro=True)
S("sb-collectgarbage", "return collectgarbage('count') > 0", ro=True)
S("sb-string-format", "return string.format('%5.2f|%d|%s|%q', 3.14159, 42, 'x', 'a\"b')",
  ro=True)
S("sb-tostring-numbers", "return tostring(1e15)..' '..tostring(0.1)..' '..tostring(1/3)",
  ro=True)
S("sb-tonumber-hex", "return tonumber('0x10')", ro=True)
S("sb-string-rep-huge", "return string.rep('x', 2^31)", ro=True)
S("sb-table-getn", "return type(table.getn)", ro=True)
S("sb-math-huge-tostring", "return tostring(math.huge)", ro=True)
S("sb-math-floor", "return math.floor(-3.5)", ro=True)
S("sb-math-fns", "return {math.abs(-4), math.max(3,9,2), math.min(3,9,2), math.fmod(7,3), "
  "math.floor(math.sqrt(81)), math.ceil(2.1)}", ro=True)
S("sb-randomseed", "math.randomseed(5) return {math.random(1000000), math.random(1000000)}",
  ro=True)
S("sb-randomseed-negative", "math.randomseed(-7) return {math.random(1000000), "
  "math.random(10,20), math.random(5)}", ro=True)
S("sb-random-bad-args", "return math.random(1,2,3)", ro=True)
S("sb-random-empty-interval", "math.randomseed(1) return math.random(3,1)", ro=True)
S("sb-coroutine-wrap", "return coroutine.wrap(function() coroutine.yield(1) end)()", ro=True)
S("sb-string-methods", "local s = 'Hello' return {s:upper(), s:lower(), s:sub(2,3), "
  "s:len(), s:rep(2,'-') == nil, s:byte(1), string.char(72,105), s:reverse()}", ro=True)
S("sb-string-find-match", "return {string.find('hello world','o w'), "
  "string.match('key:123','%d+'), string.gsub('aaa','a','b')}", ro=True)
S("sb-table-concat-sort", "local t = {5,3,8,1} table.sort(t) "
  "return table.concat(t, ',')", ro=True)
S("sb-table-remove-insert", "local t = {1,2,3} table.remove(t,1) table.insert(t,1,9) "
  "table.insert(t,'end') return t", ro=True)
S("sb-varargs", "local function f(...) return select('#', ...), ... end return {f(1, nil, 3)}",
  ro=True)
S("sb-closures", "local function mk() local n = 0 return function() n = n + 1 return n end end "
  "local c = mk() c() c() return c()", ro=True)
S("sb-string-byte-all", "local t = {} for i=0,255 do t[#t+1] = string.char(i) end "
  "return table.concat(t)", ro=True)

# ---------------------------------------------------------------------------
# cjson, cmsgpack, struct, bit

S("cjson-encode-array", "return cjson.encode({1,2,{a=1}})", ro=True)
S("cjson-decode-nested", "return cjson.decode('[1,2,{\"a\":1.5}]')[3].a", ro=True)
S("cjson-null-roundtrip", "return cjson.encode(cjson.decode('{\"a\":null}'))", ro=True)
S("cjson-decode-error", "return cjson.decode('[')", ro=True)
S("cjson-sparse-array", "return cjson.encode({[1]=1,[3]=3})", ro=True)
S("cjson-very-sparse-array", "return cjson.encode({[1]=1,[30]=3})", ro=True)
S("cjson-encode-string-escape", "return cjson.encode('x\\ny\"\\\\/')", ro=True)
S("cjson-decode-unicode", "return cjson.decode('\"\\\\u00e9\"')", ro=True)
S("cjson-encode-numbers", "return cjson.encode({1, 1.5, -0.25, 1e10, 123456789012})", ro=True)
S("cjson-encode-bools", "return cjson.encode({true, false, cjson.null})", ro=True)
S("cjson-empty-table", "return cjson.encode({})", ro=True)
S("cjson-decode-types", "local t = cjson.decode('{\"s\":\"x\",\"n\":2,\"b\":true,\"a\":[1]}') "
  "return {type(t.s), type(t.n), type(t.b), type(t.a), t.n}", ro=True)
S("cjson-roundtrip-via-store", "redis.call('set',KEYS[1],cjson.encode({name='x',n={1,2}})) "
  "local t = cjson.decode(redis.call('get',KEYS[1])) return {t.name, t.n[2]}", keys=("j",))
S("cjson-encode-function-error", "return cjson.encode({f=function() end})", ro=True)
S("cjson-decode-number-string", "return cjson.decode('123')", ro=True)
S("cjson-encode-nested-depth", "local t = {} local c = t for i=1,1100 do c[1] = {} c = c[1] end "
  "return cjson.encode(t)", ro=True)
S("cjson-decode-deep", "return cjson.decode(string.rep('[', 1100) .. string.rep(']', 1100))",
  ro=True)
S("cjson-null-type", "return type(cjson.null)", ro=True)
S("cjson-decode-null-eq", "return cjson.decode('null') == cjson.null", ro=True)
S("cjson-decode-invalid-utf8", "return cjson.decode('\"\\255\"')", ro=True)
S("cjson-encode-keep-buffer", "return cjson.encode_keep_buffer and 1 or 0", ro=True)
S("cmsgpack-pack-array", "return cmsgpack.pack({1,2,3})", ro=True)
S("cmsgpack-roundtrip", "return {cmsgpack.unpack(cmsgpack.pack({1,2,'x'}))}", ro=True)
S("cmsgpack-pack-multi", "return cmsgpack.pack('abc', 1.5, true, {a=1})", ro=True)
S("cmsgpack-ints", "return cmsgpack.pack(0, 127, 128, 255, 256, 65535, 65536, -1, -32, -33, "
  "-128, -129, -32768, -32769, 4294967296, -4294967296)", ro=True)
S("cmsgpack-strings", "return cmsgpack.pack('', string.rep('a', 31), string.rep('b', 32), "
  "string.rep('c', 256), string.rep('d', 65536))", ro=True)
S("cmsgpack-unpack-types", "local a, b, c, d = cmsgpack.unpack(cmsgpack.pack(7, 'x', {1,2}, false)) "
  "return {a, b, c[2], tostring(d)}", ro=True)
S("cmsgpack-unpack-one", "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}", ro=True)
S("cmsgpack-unpack-limit", "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}", ro=True)
S("cmsgpack-unpack-garbage", "return {pcall(cmsgpack.unpack, '\\193')}", ro=True)
S("cmsgpack-float", "return cmsgpack.pack(1.5, 0.1, -2.25)", ro=True)
S("cmsgpack-map", "local t = cmsgpack.unpack(cmsgpack.pack({k='v'})) return t.k", ro=True)
S("cmsgpack-nested", "local t = cmsgpack.unpack(cmsgpack.pack({{1,{2,{3}}}})) return t[1][2][2][1]",
  ro=True)
S("cmsgpack-via-store", "redis.call('set',KEYS[1],cmsgpack.pack({a=1,b={2,3}})) "
  "local t = cmsgpack.unpack(redis.call('get',KEYS[1])) return {t.a, t.b[2]}", keys=("m",))
S("cmsgpack-no-args", "return cmsgpack.pack()", ro=True)
S("struct-pack-be", "return struct.pack('>I2', 258)", ro=True)
S("struct-unpack-be", "return {struct.unpack('>I2', '\\1\\2')}", ro=True)
S("struct-pack-mixed", "return struct.pack('<i4d', -2, 1.5)", ro=True)
S("struct-size", "return struct.size('>i4h')", ro=True)
S("struct-roundtrip", "local s = struct.pack('>bBhHiIlLs', -1, 255, -2, 65535, -3, 7, -4, 8, 'str') "
  "return {struct.unpack('>bBhHiIlLs', s)}", ro=True)
S("struct-string-fixed", "return {struct.unpack('c3c2', 'abcde')}", ro=True)
S("struct-bad-format", "return struct.pack('y', 1)", ro=True)
S("struct-short-data", "return struct.unpack('>I4', 'ab')", ro=True)
S("struct-float", "return {struct.unpack('<f', struct.pack('<f', 0.5))}", ro=True)
S("bit-band", "return bit.band(0xff, 0x0f)", ro=True)
S("bit-tohex", "return {bit.tohex(255), bit.tohex(-1), bit.tohex(255, 4), bit.tohex(255, -2)}",
  ro=True)
S("bit-bxor", "return bit.bxor(5, 3)", ro=True)
S("bit-lshift", "return bit.lshift(1, 40)", ro=True)
S("bit-misc", "return {bit.tobit(2^32+5), bit.bnot(0), bit.arshift(-16, 2)}", ro=True)
S("bit-shifts", "return {bit.rshift(-1, 28), bit.rol(1, 33), bit.ror(1, 1), bit.bswap(0x12345678)}",
  ro=True)
S("bit-bor-many", "return bit.bor(1, 2, 4, 8, 16)", ro=True)
S("bit-bad-arg", "return bit.band('x', 1)", ro=True)

# ---------------------------------------------------------------------------
# redis.call from inside pcall, xpcall, metamethods, iterators, sort, gsub

S("ctx-index-metamethod", "local t = setmetatable({}, {__index=function(t,k) "
  "return redis.call('incr',KEYS[1]) end}) return {t.x, t.y}", keys=("n",))
S("ctx-newindex", "local t = setmetatable({}, {__newindex=function(t,k,v) "
  "rawset(t,k,redis.call('echo',v)) end}) t.a='z' return t.a", ro=True)
S("ctx-add", "local m = setmetatable({}, {__add=function(a,b) "
  "return redis.call('incrby',KEYS[1],5) end}) return m + 1", keys=("n",))
S("ctx-concat", "local m = setmetatable({}, {__concat=function(a,b) "
  "return redis.call('echo','cc') end}) return m .. 'x'", ro=True)
S("ctx-eq", "local m = setmetatable({}, {__eq=function(a,b) return redis.call('ping').ok == 'PONG' "
  "end}) local n = setmetatable({}, getmetatable(m)) return m == n", ro=True)
S("ctx-call", "local m = setmetatable({}, {__call=function(self, x) "
  "return redis.call('echo', x) end}) return m('called')", ro=True)
S("ctx-lt", "local t = setmetatable({}, {__lt=function(a,b) return redis.call('echo','1') == '1' "
  "end}) return t < t", ro=True)
S("ctx-unm", "local t = setmetatable({}, {__unm=function() return redis.call('echo','neg') end}) "
  "return -t", ro=True)
S("ctx-tostring", "local t = setmetatable({}, {__tostring=function() "
  "return redis.call('echo','ts') end}) return tostring(t)", ro=True)
S("ctx-sort-comparator", "local t = {3,1,2} table.sort(t, function(a,b) "
  "redis.call('ping') return a<b end) return t", ro=True)
S("ctx-sort-comparator-values", "local t = {} for i=1,30 do t[i]=(i*7)%31 end "
  "table.sort(t, function(a,b) return redis.call('echo', a) + 0 < redis.call('echo', b) + 0 end) "
  "return t", ro=True)
S("ctx-sort-by-store", "local t = {'a','b','c'} table.sort(t, function(x,y) "
  "return tonumber(redis.call('hget',KEYS[1],x)) < tonumber(redis.call('hget',KEYS[1],y)) end) "
  "return t", keys=("w",), setup=["HSET w a 3 b 1 c 2"], ro=True)
S("ctx-gsub", "return (string.gsub('abc','%w',function(c) return redis.call('echo',c..c) end))",
  ro=True)
S("ctx-gsub-store", "return (string.gsub('a-b','%a',function(c) "
  "return redis.call('hget',KEYS[1],c) end))", keys=("h",), setup=["HSET h a 1 b 2"], ro=True)
S("ctx-iterator", "local function it() local i=0 return function() i=i+1 "
  "if i<=3 then return redis.call('echo',tostring(i)) end end end "
  "local r={} for v in it() do r[#r+1]=v end return r", ro=True)
S("ctx-iterator-lrange", "local function items(k) local i = -1 return function() i = i + 1 "
  "local v = redis.call('lindex', k, i) if v then return i, v end end end "
  "local r = {} for i, v in items(KEYS[1]) do r[#r+1] = v end return r",
  keys=("l",), setup=["RPUSH l x y z"], ro=True)
S("ctx-gmatch", "local words = {} for w in string.gmatch('a b c', '%a') do "
  "words[#words+1] = redis.call('echo', w) end return words", ro=True)
S("ctx-pcall-function", "local ok, v = pcall(function() return redis.call('echo','in') end) "
  "return v", ro=True)
S("ctx-pcall-direct", "local ok, v = pcall(redis.call, 'echo', 'direct') return v", ro=True)
S("ctx-xpcall-function", "local ok, v = xpcall(function() return redis.call('echo','in') end, "
  "function(e) return e end) return v", ro=True)
S("ctx-xpcall-handler-calls", "local ok, v = xpcall(function() redis.call('nosuch') end, "
  "function(e) return redis.call('echo', 'handled') end) return v", ro=True)
S("ctx-coroutine-wrap-call", "return coroutine.wrap(function() return redis.call('ping') end)()",
  ro=True)
S("ctx-coroutine-resume", "local co = coroutine.create(function(a) "
  "local b = coroutine.yield(redis.call('echo', a)) return redis.call('echo', b) end) "
  "local _, x = coroutine.resume(co, 'one') local _, y = coroutine.resume(co, 'two') "
  "return {x, y}", ro=True)
S("ctx-index-pcall", "local t = setmetatable({}, {__index=function(t,k) "
  "local ok, v = pcall(redis.call, 'echo', k) return v end}) return {t.a, t.b}", ro=True)
S("ctx-many-calls", "local s = 0 for i=1,200 do s = s + redis.call('incr',KEYS[1]) end return s",
  keys=("counter",))
S("ctx-calls-concat", "local r = {} for i=1,50 do r[i] = redis.call('echo', string.rep('x', i)) "
  "end return #table.concat(r)", ro=True)
S("ctx-cjson-of-reply", "return tostring(cjson.decode(redis.call('echo', '{\"a\":[1,2]}')).a[2])",
  ro=True)

# ---------------------------------------------------------------------------
# more commands from scripts: flags, arity and odd replies

S("cmd-config-noscript", "return redis.pcall('config','get','maxmemory')", ro=True)
S("cmd-client-id-noscript", "return redis.pcall('client','id')", ro=True)
S("cmd-auth-noscript", "return redis.pcall('auth','x')", ro=True)
S("cmd-hello-noscript", "return redis.pcall('hello')", ro=True)
S("cmd-quit-noscript", "return redis.pcall('quit')", ro=True)
S("cmd-wait-noscript", "return redis.pcall('wait',0,0)", ro=True)
S("cmd-monitor-noscript", "return redis.pcall('monitor')", ro=True)
S("cmd-unsubscribe-noscript", "return redis.pcall('unsubscribe')", ro=True)
S("cmd-ping-arity", "return redis.pcall('ping','a','b')", ro=True)
S("cmd-get-arity", "return redis.pcall('get')", ro=True)
S("cmd-echo-arity", "return redis.pcall('echo')", ro=True)
S("cmd-config-subcommand-arity", "return redis.pcall('object')", ro=True)
S("cmd-object-encoding", "return redis.call('object','encoding',KEYS[1])", keys=("k",),
  setup=["SET k 12345"], ro=True)
S("cmd-time-shape", "local t = redis.call('time') return {#t, type(t[1]), type(t[2])}",
  ro=True)
S("cmd-select-bad", "return redis.pcall('select','abc')", ro=True)
S("cmd-select-out-of-range", "return redis.pcall('select',99)", ro=True)
S("cmd-select-then-get", "redis.call('select',4) return redis.call('get',KEYS[1])", keys=("k",),
  setup=["SELECT 4", "SET k four", "SELECT 0", "SET k zero"], ro=True)
S("cmd-move", "redis.call('set',KEYS[1],'v') return {redis.call('move',KEYS[1],1), "
  "redis.call('exists',KEYS[1])}", keys=("mv",), after=["SELECT 1", "GET mv", "SELECT 0"])
S("cmd-hash-tags", "redis.call('set',KEYS[1],'a') redis.call('set',KEYS[2],'b') "
  "return redis.call('mget',KEYS[1],KEYS[2])", keys=("{user1}:a", "{user1}:b"))
S("cmd-expire-ttl", "redis.call('set',KEYS[1],'v','ex',100000) return redis.call('ttl',KEYS[1])",
  keys=("t",))
S("cmd-xadd-xlen", "redis.call('xadd',KEYS[1],'1-1','f','v') return redis.call('xlen',KEYS[1])",
  keys=("st",))
S("cmd-xread-block-in-script", "return redis.pcall('xread','block','0','streams',KEYS[1],'$')",
  keys=("st",))
S("cmd-brpoplpush-empty", "return redis.call('brpoplpush',KEYS[1],KEYS[2],0)",
  keys=("src", "dst"))
S("cmd-blmove-data", "return redis.call('blmove',KEYS[1],KEYS[2],'left','right',0)",
  keys=("src", "dst"), setup=["RPUSH src a b"], after=["LRANGE dst 0 -1"])
S("cmd-bzpopmin-empty", "return redis.call('bzpopmin',KEYS[1],0)", keys=("zz",))
S("cmd-hincrbyfloat", "return redis.call('hincrbyfloat',KEYS[1],'f','2.5')", keys=("h",))
S("cmd-zincrby", "return redis.call('zincrby',KEYS[1],1.5,'m')", keys=("z",))
S("cmd-setrange-getrange", "redis.call('setrange',KEYS[1],5,'x') "
  "return redis.call('getrange',KEYS[1],0,-1)", keys=("sr",))
S("cmd-sort-store", "redis.call('rpush',KEYS[1],3,1,2) return redis.call('sort',KEYS[1],'store',KEYS[2])",
  keys=("l", "sorted"), after=["LRANGE sorted 0 -1"])
S("cmd-incr-overflow", "return redis.call('incr',KEYS[1])", keys=("n",),
  setup=["SET n 9223372036854775807"])
S("cmd-wrongtype-pcall", "redis.call('rpush',KEYS[1],'a') return redis.pcall('get',KEYS[1])",
  keys=("l",))

# ---------------------------------------------------------------------------
# more conversions and error shapes

S("conv-2-pow-63", "return 2^63", ro=True)
S("conv-minus-2-pow-63", "return -2^63", ro=True)
S("conv-just-below-one", "return 0.9999999", ro=True)
S("conv-minus-half", "return -0.5", ro=True)
S("conv-pi", "return math.pi", ro=True)
S("conv-float-args-to-call", "return {redis.call('echo', 3.0), redis.call('echo', 1e300), "
  "redis.call('echo', -1e-300), redis.call('echo', 2^63), redis.call('echo', 0.1 + 0.2)}",
  ro=True)
S("conv-n-field", "return {1, 2, 3, n=5}", ro=True)
S("conv-nested-status-error", "return {{ok='A'}, {{err='B c'}}, {ok='C', err='D'}}", ro=True)
S("conv-tostring-values", "return {tostring(nil), tostring(true), tostring(12), tostring(-0.0)}",
  ro=True)
S("conv-string-format-int", "return string.format('%d %.3f %x %5s|', 2^53, 1/3, 255, 'ab')",
  ro=True)
S("err-error-reply-code-only", "return redis.error_reply('ERR')", ro=True)
S("err-error-reply-newline", "return redis.error_reply('BAD a\nb')", ro=True)
S("err-table-err-number", "error({err=123})", ro=True)
S("err-in-xpcall-handler", "local ok, e = xpcall(function() error('a') end, "
  "function(m) error('in handler') end) return {tostring(ok), type(e)}", ro=True)
S("err-loadstring-chunk-runtime", "local f = loadstring('local a = nil return a.b') return f()",
  ro=True)
S("err-loadstring-chunk-call", "local f = loadstring('return redis.call(\'nosuch\')') return f()",
  ro=True)
S("err-deep-line", "local x = 1\nlocal y = 2\nlocal z = 3\nlocal w = 4\n"
  "redis.call('incr', KEYS[1])", keys=("s",), setup=["SET s notanumber"])
S("err-pcall-returns-status", "return {pcall(redis.call,'set',KEYS[1],'v')}", keys=("k",))
S("err-error-reply-returned-in-array", "return {redis.error_reply('E1 x'), 2}", ro=True)
S("err-string-rep-negative", "return {pcall(string.rep, 'x', -1)}", ro=True)
S("sb-string-dump-type", "return type(string.dump)", ro=True)
S("sb-coroutine-running", "return type(coroutine.running())", ro=True)
S("sb-coroutine-running-inside", "return type(coroutine.wrap(function() "
  "return coroutine.running() end)())", ro=True)
S("sb-coroutine-status", "local co = coroutine.create(function() "
  "return coroutine.status(coroutine.running()) end) return {coroutine.resume(co)}", ro=True)
S("sb-setmetatable-keys", "setmetatable(KEYS, {__index=function() return 'dflt' end}) "
  "return KEYS[5]", keys=("a",), ro=True)
S("sb-global-via-loadstring-env", "local f = loadstring('return _G') return type(f())", ro=True)
S("sb-math-random-type", "return type(math.random)", ro=True)
S("sb-next-on-G", "return type(next(_G))", ro=True)
S("sb-G-G", "return rawequal(_G, _G._G)", ro=True)
S("sb-select-negative", "return select(-1, 'a', 'b')", ro=True)

C("script-help", "SCRIPT HELP")
C("script-debug", "SCRIPT DEBUG NO", "SCRIPT DEBUG BOGUS")
C("eval-numkeys-with-hash-tags", EV("return redis.call('mget',KEYS[1],KEYS[2])", "{t}a", "{t}b"),
  "MSET {t}a 1 {t}b 2", EV("return redis.call('mget',KEYS[1],KEYS[2])", "{t}a", "{t}b"))
C("evalsha-after-script-flush-and-eval", EV("return 'x1'"), "SCRIPT FLUSH",
  ("EVALSHA", sha1("return 'x1'"), 0), EV("return 'x1'"), ("EVALSHA", sha1("return 'x1'"), 0))
C("eval-ro-does-not-cache-writes", "SET k v", ("EVAL_RO", "return redis.call('del',KEYS[1])", 1, "k"),
  "GET k", EV("return redis.call('del',KEYS[1])", "k"), "GET k")

# ---------------------------------------------------------------------------
# argument checks of EVAL/EVALSHA/SCRIPT

C("args-numkeys-negative", "EVAL 'return 1' -1", "EVAL_RO 'return 1' -1",
  "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db -1")
C("args-numkeys-too-large", "EVAL 'return 1' 1", "EVAL 'return 1' 3 a b",
  "EVAL_RO 'return 1' 2 a", "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 5 a")
C("args-numkeys-not-a-number", "EVAL 'return 1' abc", "EVAL 'return 1' 1.5 a",
  "EVAL 'return 1' ''", "EVAL_RO 'return 1' x",
  "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db x")
C("args-numkeys-huge", "EVAL 'return 1' 99999999999999999999",
  "EVAL 'return 1' 9223372036854775807", "EVAL 'return 1' 2147483648 a")
C("args-numkeys-exact", "EVAL 'return #KEYS' 2 a b", "EVAL 'return #ARGV' 2 a b",
  "EVAL 'return {#KEYS,#ARGV}' 0 a b")
C("args-numkeys-leading-plus", "EVAL 'return 1' +1 a", "EVAL 'return 1' ' 1' a",
  "EVAL 'return 1' 01 a")
C("args-eval-arity", "EVAL", "EVAL 'return 1'", "EVAL_RO", "EVAL_RO 'return 1'")
C("args-evalsha-arity", "EVALSHA", "EVALSHA abc", "EVALSHA_RO", "EVALSHA_RO abc")
C("args-noscript", "SCRIPT FLUSH", "EVALSHA ffffffffffffffffffffffffffffffffffffffff 0",
  "EVALSHA_RO ffffffffffffffffffffffffffffffffffffffff 0", "EVALSHA short 0",
  "EVALSHA '' 0", ("EVALSHA", "f" * 41, 0))
C("args-evalsha-uppercase-sha", ("SCRIPT", "LOAD", "return 'upper'"),
  ("EVALSHA", sha1("return 'upper'").upper(), 0),
  ("EVALSHA_RO", sha1("return 'upper'").upper(), 0),
  ("SCRIPT", "EXISTS", sha1("return 'upper'").upper()))
C("args-evalsha-after-eval", EV("return 'cached by eval'"),
  ("EVALSHA", sha1("return 'cached by eval'"), 0))
C("script-load", ("SCRIPT", "LOAD", "return 'loaded'"), ("SCRIPT", "LOAD", "return 'loaded'"),
  ("EVALSHA", sha1("return 'loaded'"), 0))
C("script-load-compile-error", ("SCRIPT", "LOAD", "return +"),
  ("SCRIPT", "EXISTS", sha1("return +")))
C("script-load-arity", "SCRIPT LOAD", "SCRIPT LOAD a b")
C("script-exists", "SCRIPT FLUSH", ("SCRIPT", "LOAD", "return 'e1'"),
  ("SCRIPT", "EXISTS", sha1("return 'e1'"), "ffffffffffffffffffffffffffffffffffffffff",
   sha1("return 'e1'")), "SCRIPT EXISTS", "SCRIPT EXISTS nosuch")
C("script-flush", ("SCRIPT", "LOAD", "return 'f1'"), "SCRIPT FLUSH",
  ("SCRIPT", "EXISTS", sha1("return 'f1'")), ("EVALSHA", sha1("return 'f1'"), 0))
C("script-flush-modes", ("SCRIPT", "LOAD", "return 'f2'"), "SCRIPT FLUSH ASYNC",
  ("SCRIPT", "EXISTS", sha1("return 'f2'")), ("SCRIPT", "LOAD", "return 'f2'"),
  "SCRIPT FLUSH SYNC", ("SCRIPT", "EXISTS", sha1("return 'f2'")), "SCRIPT FLUSH BOGUS",
  "SCRIPT FLUSH SYNC ASYNC")
C("script-kill-notbusy", "SCRIPT KILL", "SCRIPT KILL extra")
C("script-bad-subcommand", "SCRIPT", "SCRIPT FOO", "SCRIPT EXISTS")
C("script-lowercase", ("script", "load", "return 'lc'"), ("script", "exists", sha1("return 'lc'")),
  ("evalsha", sha1("return 'lc'"), 0), ("eval", "return 'lower'", 0))
C("script-load-binary-body", ("SCRIPT", "LOAD", b"return '\x00\xff'"),
  ("EVALSHA", sha1(b"return '\x00\xff'"), 0))
C("script-load-shebang", ("SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn 'sb'"),
  ("EVALSHA_RO", sha1("#!lua flags=no-writes\nreturn 'sb'"), 0))
C("eval-in-multi", "MULTI", EV("return redis.call('incr',KEYS[1])", "m"), "INCR m", "EXEC",
  "GET m")
C("evalsha-in-multi", ("SCRIPT", "LOAD", "return 'inmulti'"), "MULTI",
  ("EVALSHA", sha1("return 'inmulti'"), 0), "EXEC")
C("eval-pipelined", Step(raw=b"".join(
    [encode_command("EVAL", "return redis.call('incr',KEYS[1])", 1, "cnt")] * 50
    + [encode_command("GET", "cnt")]), replies=51))
C("eval-pipelined-mixed", Step(raw=b"".join(
    [encode_command("EVAL", "return redis.call('rpush',KEYS[1],ARGV[1])", 1, "pl", i)
     if i % 2 else encode_command("RPUSH", "pl", "plain%d" % i) for i in range(40)]
    + [encode_command("LRANGE", "pl", 0, -1)]), replies=41))
C("eval-inline", Step(raw=b"EVAL \"return 'inline'\" 0\r\n"),
  Step(raw=b"EVAL 'return {1,2}' 0\r\n"))
C("eval-in-different-dbs", "SELECT 5", EV("redis.call('set',KEYS[1],'five') return 1", "k"),
  "SELECT 0", "GET k", "SELECT 5", "GET k", "SELECT 0")

# ---------------------------------------------------------------------------
# the seeds' examples

LOCK_ACQUIRE_SETNX = """
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local lockid = ARGV[2]
if redis.call('SETNX', key, lockid) == 1 then
    redis.call('PEXPIRE', key, ttl)
    return 1
else
    return 0
end
"""
LOCK_ACQUIRE_SET = """
local lock_key = KEYS[1]
local lock_value = ARGV[1]
local ttl = tonumber(ARGV[2])
if redis.call("SET", lock_key, lock_value, "NX", "PX", ttl) then
    return 1
else
    return 0
end
"""
LOCK_RELEASE = """
local lock_key = KEYS[1]
local lock_value = ARGV[1]
if redis.call("GET", lock_key) == lock_value then
    return redis.call("DEL", lock_key)
else
    return 0
end
"""
COUNTER_NOTIFY = """
local key = KEYS[1]
local incr = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local new = redis.call('INCRBY', key, incr)
if new >= limit then
    redis.call('PUBLISH', 'counter_notify', key .. ' reached ' .. new)
end
return new
"""
COUNTERS_MULTI = """
local counter1 = KEYS[1]
local counter2 = KEYS[2]
local counter3 = KEYS[3]
local increment = tonumber(ARGV[1])
redis.call("INCRBY", counter1, increment)
redis.call("INCRBY", counter2, increment * 2)
redis.call("INCRBY", counter3, increment * 3)
return {
    redis.call("GET", counter1),
    redis.call("GET", counter2),
    redis.call("GET", counter3)
}
"""
RATE_LIMIT_INCR = """
local current = redis.call('INCR', KEYS[1])
if current == 1 then
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
if current > tonumber(ARGV[1]) then
    return 0
end
return 1
"""
RATE_LIMIT_ZSET = """
local user_id = KEYS[1]
local current_time = tonumber(ARGV[1])
local time_window = 60
local max_requests = 3
redis.call("ZREMRANGEBYSCORE", user_id, 0, current_time - time_window)
local count = redis.call("ZCARD", user_id)
if count < max_requests then
    redis.call("ZADD", user_id, current_time, current_time .. ":" .. ARGV[2])
    return 1
else
    return 0
end
"""
FLASH_SALE = """
local stock_key = KEYS[1]
local purchased_users_key = KEYS[2]
local user_id = ARGV[1]
local quantity = tonumber(ARGV[2])
if redis.call("SISMEMBER", purchased_users_key, user_id) == 1 then
    return {0, "already purchased"}
end
local stock = tonumber(redis.call("GET", stock_key) or "0")
if stock < quantity then
    return {0, "out of stock"}
end
redis.call("DECRBY", stock_key, quantity)
redis.call("SADD", purchased_users_key, user_id)
return {1, stock - quantity}
"""
BATCH_UPDATE = """
for i = 1, #KEYS do
    local old = redis.call('GET', KEYS[i])
    if old == false then
        for j = 1, i-1 do
            redis.call('SET', KEYS[j], ARGV[j])
        end
        return {err="Missing key: " .. KEYS[i]}
    end
    redis.call('SET', KEYS[i], ARGV[i])
end
return {ok="All updated"}
"""
HASH_BATCH = """
for i = 1, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1])
end
return redis.call('HGETALL', KEYS[1])
"""
CAS_UPDATE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2])
    return 1
end
return 0
"""


def _load_and_sha(body):
    return ("SCRIPT", "LOAD", body)


def _sha(body, *kv, numkeys):
    return ("EVALSHA", sha1(body), numkeys) + tuple(kv)


C("seed-lock-setnx-acquire-release",
  EV(LOCK_ACQUIRE_SETNX, "my_lock", args=("100000", "owner-1")),
  EV(LOCK_ACQUIRE_SETNX, "my_lock", args=("100000", "owner-2")),
  "GET my_lock", "TTL my_lock",
  EV(LOCK_RELEASE, "my_lock", args=("owner-2",)), "GET my_lock",
  EV(LOCK_RELEASE, "my_lock", args=("owner-1",)), "EXISTS my_lock",
  EV(LOCK_ACQUIRE_SETNX, "my_lock", args=("100000", "owner-2")), "GET my_lock")
C("seed-lock-set-nx-px",
  _load_and_sha(LOCK_ACQUIRE_SET), _load_and_sha(LOCK_RELEASE),
  _sha(LOCK_ACQUIRE_SET, "res", "token-a", "100000", numkeys=1),
  _sha(LOCK_ACQUIRE_SET, "res", "token-b", "100000", numkeys=1),
  _sha(LOCK_RELEASE, "res", "token-b", numkeys=1),
  _sha(LOCK_RELEASE, "res", "token-a", numkeys=1),
  _sha(LOCK_RELEASE, "res", "token-a", numkeys=1),
  _sha(LOCK_ACQUIRE_SET, "res", "token-b", "100000", numkeys=1), "GET res")
C("seed-lock-bad-ttl", EV(LOCK_ACQUIRE_SET, "res", args=("tok", "notanumber")),
  EV(LOCK_ACQUIRE_SET, "res", args=("tok", "-5")), "EXISTS res")
C("seed-lock-expired-then-retaken",
  EV(LOCK_ACQUIRE_SET, "res", args=("a", "1")), Step(raw=b"*2\r\n$4\r\nPING\r\n$1\r\nx\r\n"),
  EV("redis.call('pexpire',KEYS[1],1) return 1", "res"))
C("seed-counter-notify",
  *[EV(COUNTER_NOTIFY, "hits", args=("3", "10")) for _ in range(5)], "GET hits")
C("seed-counters-multi", EV(COUNTERS_MULTI, "c1", "c2", "c3", args=("2",)),
  EV(COUNTERS_MULTI, "c1", "c2", "c3", args=("5",)), "MGET c1 c2 c3",
  EV(COUNTERS_MULTI, "c1", "c2", "c3", args=("x",)))
C("seed-rate-limit-incr-expire",
  _load_and_sha(RATE_LIMIT_INCR),
  *[_sha(RATE_LIMIT_INCR, "rl:user1", "3", "100000", numkeys=1) for _ in range(5)],
  "GET rl:user1", "TTL rl:user1", _sha(RATE_LIMIT_INCR, "rl:user2", "3", "100000", numkeys=1))
C("seed-rate-limit-zset",
  *[EV(RATE_LIMIT_ZSET, "rl:z", args=(str(1000 + i), "req%d" % i)) for i in range(5)],
  "ZRANGE rl:z 0 -1 WITHSCORES",
  EV(RATE_LIMIT_ZSET, "rl:z", args=("1100", "late")),
  "ZRANGE rl:z 0 -1 WITHSCORES")
C("seed-flash-sale",
  "SET stock:1 3",
  _load_and_sha(FLASH_SALE),
  _sha(FLASH_SALE, "stock:1", "buyers:1", "u1", "1", numkeys=2),
  _sha(FLASH_SALE, "stock:1", "buyers:1", "u1", "1", numkeys=2),
  _sha(FLASH_SALE, "stock:1", "buyers:1", "u2", "2", numkeys=2),
  _sha(FLASH_SALE, "stock:1", "buyers:1", "u3", "1", numkeys=2),
  _sha(FLASH_SALE, "stock:1", "buyers:1", "u4", "1", numkeys=2),
  "GET stock:1", Step(args=("SMEMBERS", "buyers:1"), unordered=True))
C("seed-flash-sale-no-stock-key",
  EV(FLASH_SALE, "stock:none", "buyers:none", args=("u1", "1")), "EXISTS buyers:none")
C("seed-flash-sale-bad-quantity", "SET stock:2 5",
  EV(FLASH_SALE, "stock:2", "buyers:2", args=("u1", "many")), "GET stock:2")
C("seed-batch-update-all-present", "MSET b1 old1 b2 old2 b3 old3",
  EV(BATCH_UPDATE, "b1", "b2", "b3", args=("n1", "n2", "n3")), "MGET b1 b2 b3")
C("seed-batch-update-missing", "MSET b1 old1 b2 old2",
  EV(BATCH_UPDATE, "b1", "b2", "b3", args=("n1", "n2", "n3")), "MGET b1 b2 b3")
C("seed-batch-update-no-keys", EV(BATCH_UPDATE))
C("seed-hash-batch", EV(HASH_BATCH, "h", args=("f1", "v1", "f2", "v2", "f1", "v3")),
  "HLEN h")
C("seed-cas", "SET cas 1", EV(CAS_UPDATE, "cas", args=("1", "2")),
  EV(CAS_UPDATE, "cas", args=("1", "3")), "GET cas")
C("seed-setnx-expire-atomic", EV("if redis.call('setnx',KEYS[1],ARGV[1]) == 1 then "
  "return redis.call('expire',KEYS[1],ARGV[2]) end return -1", "once", args=("v", "100000")),
  EV("if redis.call('setnx',KEYS[1],ARGV[1]) == 1 then "
     "return redis.call('expire',KEYS[1],ARGV[2]) end return -1", "once", args=("v", "100000")),
  "TTL once")
C("seed-keys-argv-example", EV("return {KEYS[1],KEYS[2],ARGV[1],ARGV[2],ARGV[3]}",
                               "key1", "key2", args=("arg1", "arg2", "arg3")))
C("seed-set-wrong-args", EV("return redis.call('SET','test')"),
  EV("return redis.pcall('SET','test')"))
C("seed-script-load-evalsha-hello", ("SCRIPT", "LOAD", "return ARGV[1]"),
  ("EVALSHA", Ref(0), 0, "hello"), ("EVALSHA", sha1("return ARGV[1]"), 0, "again"))


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("steps", CASES)
def test_script_diff(diff, steps):
    diff.run(steps)


def test_sha1_matches_script_load(oracle):
    # sha1() above must name scripts the way SCRIPT LOAD does.
    with oracle.connect() as c:
        for body in ("return ARGV[1]", b"return '\x00\xff'", "#!lua\nreturn 1", ""):
            assert parse_reply(c.call("SCRIPT", "LOAD", body)) == sha1(body).encode()


def test_case_count():
    # The suite must not quietly shrink.
    assert len(CASES) >= 250, len(CASES)
    assert len(SCRIPT_BODIES) >= 250, len(SCRIPT_BODIES)


def test_every_redis_function_is_covered():
    wanted = ["redis.call", "redis.pcall", "redis.error_reply", "redis.status_reply",
              "redis.sha1hex", "redis.log", "redis.setresp", "redis.set_repl",
              "redis.replicate_commands", "redis.breakpoint", "redis.debug",
              "redis.REDIS_VERSION", "redis.REDIS_VERSION_NUM", "redis.acl_check_cmd"]
    text = "\n".join(b if isinstance(b, str) else b.decode("latin-1") for b in SCRIPT_BODIES)
    missing = [w for w in wanted if w not in text]
    assert not missing, missing


def test_redis_function_list_matches_oracle(oracle):
    # If the oracle grows a redis.* function, the list above must grow too.
    with oracle.connect() as c:
        names = parse_reply(c.call("EVAL", "local t={} for k,v in pairs(redis) do "
                                   "if type(v)=='function' then t[#t+1]=k end end "
                                   "table.sort(t) return t", 0))
    text = "\n".join(b if isinstance(b, str) else b.decode("latin-1") for b in SCRIPT_BODIES)
    missing = [n.decode() for n in names if ("redis." + n.decode()) not in text]
    assert not missing, missing
