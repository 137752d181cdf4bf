"""Hostile scripts: library calls with extreme arguments, deep C recursion,
lazy load() readers and attacks on the sandbox's protected tables. Every
case runs on the oracle (redis-server 7.0.15) and on the proxy and the raw
replies must be identical; where Redis itself crashes (it has no answer),
the proxy's own answer is checked instead. The fixtures fail a test when
the proxy dies or prints a sanitizer report.

Most cases are batched: one script evaluates many expressions, each under
pcall, and returns one row per expression (its status and results, long
strings replaced by their length and SHA1)."""


ROW = r"""
local function S(v)
  if type(v) == 'table' then
    local o = {}
    for i, x in ipairs(v) do o[i] = tostring(x) end
    v = '{' .. table.concat(o, ',') .. '}'
  end
  v = tostring(v)
  if #v > 200 then return '#' .. #v .. ':' .. redis.sha1hex(v) end
  return v
end
local function row(ok, ...)
  local r = {tostring(ok)}
  for i = 1, select('#', ...) do r[#r + 1] = S((select(i, ...))) end
  return r
end
local out = {}
"""


def batch(exprs):
    """A script returning row(pcall(function() return <expr> end)) for each
    expression."""
    body = [ROW]
    for e in exprs:
        body.append("out[#out + 1] = row(pcall(function() return %s end))\n" % e)
    body.append("return out\n")
    return "".join(body)


def eval_step(body, *keys):
    return ("EVAL", body, len(keys)) + tuple(keys)


def run_batches(diff, exprs, size=150):
    for i in range(0, len(exprs), size):
        diff.run([eval_step(batch(exprs[i:i + size]))])


# Numbers at the edges of int, int32 and double conversions.
EDGES = ["0", "1", "-1", "2", "100", "2147483647", "-2147483647", "-2147483648", "2147483648",
         "-2147483649", "4294967295", "4294967296", "4294967297", "-4294967296", "2^52", "2^53",
         "-2^53", "2^63", "-2^63", "2^64", "1e300", "-1e300", "0/0", "1/0", "-1/0", "0.5",
         "-0.5", "1.5", "-2.5"]
NON_NUMBERS = ["'12'", "'0x10'", "'abc'", "''", "nil", "{}", "true"]


# ---------------------------------------------------------------------------
# bit: every function with extreme arguments (CVE-2024-31449's tohex)

def bit_exprs():
    vals = EDGES + NON_NUMBERS
    counts = ["nil", "0", "1", "-1", "7", "8", "9", "-8", "-9", "16", "-16", "31", "32", "33",
              "-31", "-32", "100", "2147483647", "-2147483647", "-2147483648", "2147483648",
              "-2147483649", "4294967295", "4294967296", "2^53", "-2^53", "1e300", "0/0", "1/0",
              "-1/0", "0.5", "'3'", "'x'", "{}"]
    ex = []
    for f in ("tobit", "bnot", "bswap"):
        ex += ["bit.%s(%s)" % (f, v) for v in vals]
    for f in ("band", "bor", "bxor"):
        for v in vals:
            ex += ["bit.%s(%s, 255)" % (f, v), "bit.%s(-1, %s)" % (f, v), "bit.%s(1, 2, %s)" % (f, v)]
        ex += ["bit.%s()" % f, "bit.%s(7)" % f]
    for f in ("lshift", "rshift", "arshift", "rol", "ror"):
        for n in counts:
            ex += ["bit.%s(0x12345678, %s)" % (f, n), "bit.%s(-1, %s)" % (f, n)]
        ex += ["bit.%s(%s, 3)" % (f, v) for v in vals]
    for n in counts:
        ex += ["bit.tohex(65535, %s)" % n, "bit.tohex(-1, %s)" % n, "bit.tohex(0x89abcdef, %s)" % n]
    ex += ["bit.tohex(%s)" % v for v in vals] + ["bit.tohex()"]
    return ex


def test_bit_tohex_int32_min_is_clamped(diff):
    diff.run([eval_step("return bit.tohex(65535, -2147483648)"),
              eval_step("return bit.tohex(-1, 2147483648)"),
              eval_step("return {bit.tohex(1, -2147483647), bit.tohex(1, 2147483647)}")])


def test_bit_library_extreme_arguments(diff):
    run_batches(diff, bit_exprs())


# ---------------------------------------------------------------------------
# base library: indices and counts

def unpack_exprs():
    ex = []
    for a in EDGES + ["nil", "'2'"]:
        ex += ["#{unpack({1, 2, 3}, %s)}" % a,
               "select('#', unpack({1, 2, 3}, 1, %s))" % a,
               "select('#', unpack({}, %s, 2147483647))" % a,
               "select('#', unpack({}, -2147483648, %s))" % a,
               "select('#', unpack({}, %s, 5))" % a]
    ex += ["select('#', unpack({}, 1, 7980))", "select('#', unpack({}, 1, 7990))",
           "select('#', unpack({}, 1, 8000))", "select('#', unpack({}, 0, 2147483647))",
           "select('#', unpack({}, 2147483647, 2147483647))",
           "select('#', unpack({}, -2147483648, -2147483648))",
           "select('#', unpack({}, 2147483647, -2147483648))",
           "unpack({[2147483647] = 'x'}, 2147483647)", "unpack({[-2147483648] = 'y'}, -2147483648, -2147483648)",
           "unpack()", "unpack(1)", "unpack('abc')", "select('#', unpack({n = 5}))",
           "unpack({1, 2, nil, 4})", "unpack({1, 2, 3}, 2)", "unpack({1, 2, 3}, 2, 2)"]
    for a in EDGES + ["'x'", "nil"]:
        ex.append("select(%s, 'a', 'b', 'c')" % a)
    ex += ["select()", "select('#')", "select('#x', 1, 2)", "select('x', 1)", "select(-3, 1, 2)",
           "select(-4, 1, 2)", "select(2, unpack({}, 1, 7000))"]
    return ex


def test_unpack_huge_range_is_an_error(diff):
    diff.run([eval_step("return {unpack({}, -2147483648, 2147483647)}"),
              eval_step("return {unpack({}, 0, 2147483647)}"),
              eval_step("return select('#', unpack({1, 2, 3}, -2147483648))")])


def test_unpack_and_select_indices(diff):
    run_batches(diff, unpack_exprs())


def test_math_random_whole_int_range(diff):
    """Redis computes u - l + 1 in an int, which wraps for the widest
    ranges; the proxy's own math.random overflowed there (the sanitizer
    build stopped on it)."""
    ex = []
    for lo, hi in [("-2147483648", "2147483647"), ("-2147483647", "2147483647"), ("0", "2147483647"),
                   ("-2147483648", "0"), ("-1", "2147483647"), ("2147483647", "2147483647"),
                   ("-2147483648", "-2147483648"), ("1", "2^40"), ("2^40", "2^41"), ("0/0", "1"),
                   ("1", "0/0"), ("5", "3"), ("'1'", "'3'"), ("1", "0"), ("0", "0")]:
        ex.append("(function() math.randomseed(42) return math.random(%s, %s) end)()" % (lo, hi))
    for u in EDGES + ["'5'", "'x'"]:
        ex.append("(function() math.randomseed(7) return math.random(%s) end)()" % u)
    for s in EDGES + ["'5'"]:
        ex.append("(function() math.randomseed(%s) return math.random() end)()" % s)
    ex += ["(function() math.randomseed(42) return math.random(1, 2, 3) end)()",
           "math.randomseed()"]
    diff.run([eval_step(batch(ex))])
