/* cmsgpack and struct against outputs recorded from a real Redis 7.0.
 *
 * Each vector is a Lua snippet returning a string (hex dumps, canonical
 * value dumps, error texts); the expected string is what EVAL of the same
 * snippet returned on redis-server. tools/gen_lua_lib_vectors.py regenerates
 * the block between the markers. The remaining tests cover what a server
 * cannot show: allocation failures, small C stacks, stack balance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>
#include <lualib.h>

#include "lua/lua_libs.h"

typedef struct {
    const char *name;
    const char *body;
    const char *expected;
} lua_vector;

/* BEGIN GENERATED VECTORS (tools/gen_lua_lib_vectors.py) */
/* Recorded from redis-server 7.0.15. */
static const char vector_prelude[] =
        "local function hx(s) return (string.gsub(s, '.', function(c) return string.format"
        "('%02x', string.byte(c)) end)) end\n"
        "local function H(s)\n"
        "  if #s <= 96 then return hx(s) end\n"
        "  local h = 0\n"
        "  for i = 1, #s do h = (h * 31 + string.byte(s, i)) % 2147483647 end\n"
        "  return '#' .. #s .. ':' .. hx(string.sub(s, 1, 12)) .. '..' .. hx(string.sub(s,"
        " -12)) .. ':' .. h\n"
        "end\n"
        "local S\n"
        "S = function(v, d)\n"
        "  local t = type(v)\n"
        "  d = d or 0\n"
        "  if t == 'number' then return string.format('%.17g', v)\n"
        "  elseif t == 'string' then return \"'\" .. H(v)\n"
        "  elseif t == 'table' then\n"
        "    if d > 40 then return '{...}' end\n"
        "    local ks = {}\n"
        "    for k in pairs(v) do ks[#ks + 1] = {S(k, d + 1), k} end\n"
        "    table.sort(ks, function(a, b) return a[1] < b[1] end)\n"
        "    local out = {}\n"
        "    for i, p in ipairs(ks) do out[i] = p[1] .. '=' .. S(v[p[2]], d + 1) end\n"
        "    return '{' .. table.concat(out, ',') .. '}'\n"
        "  else return t end\n"
        "end\n"
        "local function R(...)\n"
        "  local n = select('#', ...)\n"
        "  local out = {}\n"
        "  for i = 1, n do out[i] = S((select(i, ...))) end\n"
        "  return n .. '|' .. table.concat(out, ' ')\n"
        "end\n"
        "local function P(f, ...)\n"
        "  return (function(ok, ...)\n"
        "    if ok then return 'ok ' .. R(...) end\n"
        "    return 'err ' .. tostring((...))\n"
        "  end)(pcall(f, ...))\n"
        "end\n"
        "local function nest(depth, leaf)\n"
        "  local t = leaf\n"
        "  for i = 1, depth do t = {t} end\n"
        "  return t\n"
        "end\n"
        "local function seq(n, v)\n"
        "  local t = {}\n"
        "  for i = 1, n do t[i] = v or i end\n"
        "  return t\n"
        "end\n";

static const lua_vector vectors[] = {
    {"mp_pack_fixint",
        "return H(cmsgpack.pack(0)) .. ' ' .. H(cmsgpack.pack(1)) .. ' ' .. H(cmsgpack.pac"
        "k(127))",
        "00 01 7f"},
    {"mp_pack_uint8_16",
        "return H(cmsgpack.pack(128, 255, 256, 65535))",
        "cc80ccffcd0100cdffff"},
    {"mp_pack_uint32",
        "return H(cmsgpack.pack(65536, 2^31 - 1, 2^31, 2^32 - 1))",
        "ce00010000ce7fffffffce80000000ceffffffff"},
    {"mp_pack_uint64",
        "return H(cmsgpack.pack(2^32, 2^32 + 1, 2^53, 2^53 + 2, 2^62))",
        "cf0000000100000000cf0000000100000001cf0020000000000000cf0020000000000002cf4000000"
        "000000000"},
    {"mp_pack_neg_fix",
        "return H(cmsgpack.pack(-1, -31, -32))",
        "ffe1e0"},
    {"mp_pack_int8_16",
        "return H(cmsgpack.pack(-33, -128, -129, -32768))",
        "d0dfd080d1ff7fd18000"},
    {"mp_pack_int32_64",
        "return H(cmsgpack.pack(-32769, -2^31, -2^31 - 1, -2^53, -2^63))",
        "d2ffff7fffd280000000d3ffffffff7fffffffd3ffe0000000000000d38000000000000000"},
    {"mp_pack_2_63_and_up",
        "return H(cmsgpack.pack(2^63, 2^64, -2^64, 2^70))",
        "ca5f000000ca5f800000cadf800000ca62800000"},
    {"mp_pack_neg_zero",
        "local z = 0; z = -z; return H(cmsgpack.pack(z)) .. ' ' .. S(1 / z)",
        "00 -inf"},
    {"mp_pack_float32_exact",
        "return H(cmsgpack.pack(1.5, -0.25, 2^-149, 3.4028234663852886e38))",
        "ca3fc00000cabe800000ca00000001ca7f7fffff"},
    {"mp_pack_float64",
        "return H(cmsgpack.pack(0.1, 3.14159, 1e300, -1e-300, 1e39))",
        "cb3fb999999999999acb400921f9f01b866ecb7e37e43c8800759ccb81a56e1fc2f8f359cb4807828"
        "7f49c4a1d"},
    {"mp_pack_nan_inf",
        "return H(cmsgpack.pack(0/0, 1/0, -1/0))",
        "cbfff8000000000000ca7f800000caff800000"},
    {"mp_pack_float_int_boundary",
        "return H(cmsgpack.pack(2^53 + 0.5, 4503599627370495.5, 1e15 + 0.5))",
        "cf0020000000000000cb432fffffffffffffcb430c6bf526340004"},
    {"mp_pack_str_empty",
        "return H(cmsgpack.pack(''))",
        "a0"},
    {"mp_pack_str_31",
        "return H(cmsgpack.pack(string.rep('a', 31)))",
        "bf61616161616161616161616161616161616161616161616161616161616161"},
    {"mp_pack_str_32",
        "return H(cmsgpack.pack(string.rep('b', 32)))",
        "d9206262626262626262626262626262626262626262626262626262626262626262"},
    {"mp_pack_str_255",
        "return H(cmsgpack.pack(string.rep('c', 255)))",
        "#257:d9ff63636363636363636363..636363636363636363636363:1326403736"},
    {"mp_pack_str_256",
        "return H(cmsgpack.pack(string.rep('d', 256)))",
        "#259:da0100646464646464646464..646464646464646464646464:2040724492"},
    {"mp_pack_str_65535",
        "return H(cmsgpack.pack(string.rep('e', 65535)))",
        "#65538:daffff656565656565656565..656565656565656565656565:81127366"},
    {"mp_pack_str_65536",
        "return H(cmsgpack.pack(string.rep('f', 65536)))",
        "#65541:db0001000066666666666666..666666666666666666666666:1761043283"},
    {"mp_pack_str_binary",
        "return H(cmsgpack.pack('\\0a\\255\\128' .. string.char(0xc1)))",
        "a50061ff80c1"},
    {"mp_pack_str_numeric",
        "return H(cmsgpack.pack('123', '-1.5'))",
        "a3313233a42d312e35"},
    {"mp_pack_bool_nil",
        "return H(cmsgpack.pack(true, false, nil))",
        "c3c2c0"},
    {"mp_pack_function_thread",
        "return H(cmsgpack.pack(type, coroutine.create(function() end)))",
        "c0c0"},
    {"mp_pack_cjson_null",
        "return H(cmsgpack.pack(cjson.decode('[1,null,{\"a\":null}]')))",
        "9301c081a161c0"},
    {"mp_pack_empty_table",
        "return H(cmsgpack.pack({}))",
        "90"},
    {"mp_pack_array_small",
        "return H(cmsgpack.pack({1, 2, 3}))",
        "93010203"},
    {"mp_pack_array_15_16",
        "return H(cmsgpack.pack(seq(15))) .. ' ' .. H(cmsgpack.pack(seq(16)))",
        "9f0102030405060708090a0b0c0d0e0f dc00100102030405060708090a0b0c0d0e0f10"},
    {"mp_pack_array_65535",
        "return H(cmsgpack.pack(seq(65535, 1)))",
        "#65538:dcffff010101010101010101..010101010101010101010101:329877968"},
    {"mp_pack_array_65536",
        "return H(cmsgpack.pack(seq(65536, 1)))",
        "#65541:dd0001000001010101010101..010101010101010101010101:1382151007"},
    {"mp_pack_array_trailing_nil",
        "return H(cmsgpack.pack({1, 2, nil}))",
        "920102"},
    {"mp_pack_array_hole",
        "return H(cmsgpack.pack({1, nil, 3}))",
        "8201010303"},
    {"mp_pack_array_hole_assigned",
        "local t = {1, 2, 3, 4}; t[2] = nil; return H(cmsgpack.pack(t))",
        "83010103030404"},
    {"mp_pack_map_one",
        "return H(cmsgpack.pack({a = 1}))",
        "81a16101"},
    {"mp_pack_map_several",
        "return H(cmsgpack.pack({a = 1, b = 'x', c = true, d = {}}))",
        "84a16101a16490a163c3a162a178"},
    {"mp_pack_map_16",
        "local t = {}; for i = 1, 16 do t['k' .. i] = i end; return H(cmsgpack.pack(t))",
        "de0010a36b31320ca36b313610a26b3909a26b3808a26b3101a36b31350fa26b3303a26b3202a36b3"
        "1340ea36b31330da36b31300aa36b31310ba26b3606a26b3707a26b3404a26b3505"},
    {"mp_pack_map_65536",
        "local t = {}; for i = 1, 65536 do t['k' .. i] = i end; return H(cmsgpack.pack(t))",
        "#643879:df00010000a66b3333313837..cd130aa56b31373030cd06a4:102331296"},
    {"mp_pack_mixed",
        "return H(cmsgpack.pack({1, 2, x = 3}))",
        "8301010202a17803"},
    {"mp_pack_key_zero",
        "return H(cmsgpack.pack({[0] = 'z'}))",
        "8100a17a"},
    {"mp_pack_key_negative",
        "return H(cmsgpack.pack({[-1] = 'n'}))",
        "81ffa16e"},
    {"mp_pack_key_fraction",
        "return H(cmsgpack.pack({[1.5] = 'f'}))",
        "81ca3fc00000a166"},
    {"mp_pack_key_string_one",
        "return H(cmsgpack.pack({['1'] = 'one'}))",
        "81a131a36f6e65"},
    {"mp_pack_key_2_31",
        "return H(cmsgpack.pack({[2^31] = 1}))",
        "81ce8000000001"},
    {"mp_pack_key_bool",
        "return H(cmsgpack.pack({[true] = 1}))",
        "81c301"},
    {"mp_pack_key_table",
        "return H(cmsgpack.pack({[{}] = 1}))",
        "819001"},
    {"mp_pack_sparse_array_keys",
        "return H(cmsgpack.pack({[1] = 'a', [2] = 'b', [4] = 'd'}))",
        "8301a16102a16204a164"},
    {"mp_pack_nested_15",
        "return H(cmsgpack.pack(nest(15, 7)))",
        "91919191919191919191919191919107"},
    {"mp_pack_nested_16",
        "return H(cmsgpack.pack(nest(16, 7)))",
        "9191919191919191919191919191919107"},
    {"mp_pack_nested_17",
        "return H(cmsgpack.pack(nest(17, 7)))",
        "91919191919191919191919191919191c0"},
    {"mp_pack_nested_20",
        "return H(cmsgpack.pack(nest(20, {})))",
        "91919191919191919191919191919191c0"},
    {"mp_pack_nested_map_limit",
        "local t = 1; for i = 1, 18 do t = {k = t} end; return H(cmsgpack.pack(t))",
        "81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a16b81a"
        "16b81a16b81a16bc0"},
    {"mp_pack_self_reference",
        "local t = {1}; t[2] = t; return H(cmsgpack.pack(t))",
        "9201920192019201920192019201920192019201920192019201920192019201c0"},
    {"mp_pack_self_reference_map",
        "local t = {}; t.me = t; return H(cmsgpack.pack(t))",
        "81a26d6581a26d6581a26d6581a26d6581a26d6581a26d6581a26d6581a26d6581a26d6581a26d658"
        "1a26d6581a26d6581a26d6581a26d6581a26d6581a26d65c0"},
    {"mp_pack_multi_args",
        "return H(cmsgpack.pack(1, 'a', {1}, {b = 2}, nil, 2.5))",
        "01a161910181a16202c0ca40200000"},
    {"mp_pack_nested_limit_per_arg",
        "return H(cmsgpack.pack(nest(16, 1), nest(16, 2)))",
        "91919191919191919191919191919191019191919191919191919191919191919102"},
    {"mp_pack_metatable_ignored",
        "local t = setmetatable({}, {__index = function() return 9 end, __len = function()"
        " return 5 end}); t[1] = 1; return H(cmsgpack.pack(t))",
        "9101"},
    {"mp_pack_no_args",
        "return P(cmsgpack.pack)",
        "err bad argument #0 to '\?' (MessagePack pack needs input.)"},
    {"mp_pack_no_args_named",
        "local ok, e = pcall(function() local r = cmsgpack.pack() return r end); return to"
        "string(e)",
        "user_script:46: bad argument #0 to 'pack' (MessagePack pack needs input.)"},
    {"mp_pack_args_4000",
        "return H(cmsgpack.pack(unpack(seq(4000, 1))))",
        "#4000:010101010101010101010101..010101010101010101010101:628060691"},
    {"mp_pack_args_4001",
        "return P(cmsgpack.pack, unpack(seq(4001, 1)))",
        "err bad argument #0 to '\?' (Too many arguments for MessagePack pack.)"},
    {"mp_pack_args_3998_table_last",
        "local t = seq(3998, 1); t[3998] = {1}; return P(function() return #cmsgpack.pack("
        "unpack(t)) end)",
        "ok 1|3999"},
    {"mp_pack_args_3999_table_last",
        "local t = seq(3999, 1); t[3999] = {1}; return P(cmsgpack.pack, unpack(t))",
        "ok 1|'#4000:010101010101010101010101..010101010101010101019101:628065155"},
    {"mp_pack_args_4000_table_last",
        "local t = seq(4000, 1); t[4000] = {1}; return P(cmsgpack.pack, unpack(t))",
        "err stack overflow (in function table_is_an_array)"},
    {"mp_pack_args_3998_map_last",
        "local t = seq(3998, 1); t[3998] = {a = 1}; return P(function() return #cmsgpack.p"
        "ack(unpack(t)) end)",
        "ok 1|4001"},
    {"mp_pack_args_3997_map_last",
        "local t = seq(3997, 1); t[3997] = {a = {b = 1}}; return P(function() return #cmsg"
        "pack.pack(unpack(t)) end)",
        "ok 1|4003"},
    {"mp_unpack_roundtrip_scalars",
        "return R(cmsgpack.unpack(cmsgpack.pack(0, -1, 127, 128, -33, 65536, -2^31 - 1, 2^"
        "40, -2^40, 1.5, 0.1, 'x', true, false, nil)))",
        "15|0 -1 127 128 -33 65536 -2147483649 1099511627776 -1099511627776 1.5 0.10000000"
        "000000001 '78 boolean boolean nil"},
    {"mp_unpack_roundtrip_tables",
        "return R(cmsgpack.unpack(cmsgpack.pack({1, 2, {3, 4}}, {a = {b = {c = 'd'}}}, {},"
        " {1, nil, 3})))",
        "4|{1=1,2=2,3={1=3,2=4}} {'61={'62={'63='64}}} {} {1=1,3=3}"},
    {"mp_unpack_roundtrip_nested_limit",
        "return R(cmsgpack.unpack(cmsgpack.pack(nest(17, 5))))",
        "1|{1={1={1={1={1={1={1={1={1={1={1={1={1={1={1={}}}}}}}}}}}}}}}}"},
    {"mp_unpack_empty",
        "return R(cmsgpack.unpack(''))",
        "0|"},
    {"mp_unpack_uint_types",
        "return R(cmsgpack.unpack('\\204\\255\\205\\255\\254\\206\\255\\255\\255\\255\\207"
        "\\0\\0\\0\\1\\0\\0\\0\\0'))",
        "4|255 65534 4294967295 4294967296"},
    {"mp_unpack_int_types",
        "return R(cmsgpack.unpack('\\208\\128\\209\\128\\0\\210\\128\\0\\0\\0\\211\\255\\2"
        "55\\255\\255\\255\\255\\255\\254'))",
        "4|-128 -32768 -2147483648 -2"},
    {"mp_unpack_int_positive_forms",
        "return R(cmsgpack.unpack('\\208\\127\\209\\1\\0\\210\\0\\1\\0\\0'))",
        "3|127 256 65536"},
    {"mp_unpack_uint64_high",
        "return R(cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255\\207\\128"
        "\\0\\0\\0\\0\\0\\0\\0'))",
        "2|-1 -9.2233720368547758e+18"},
    {"mp_unpack_int64_min",
        "return R(cmsgpack.unpack('\\211\\128\\0\\0\\0\\0\\0\\0\\0'))",
        "1|-9.2233720368547758e+18"},
    {"mp_unpack_fixint_all",
        "return R(cmsgpack.unpack('\\0\\127\\224\\255'))",
        "4|0 127 -32 -1"},
    {"mp_unpack_floats",
        "return R(cmsgpack.unpack('\\202\\63\\192\\0\\0\\203\\63\\185\\153\\153\\153\\153\\"
        "153\\154\\202\\127\\128\\0\\0\\202\\255\\192\\0\\0'))",
        "4|1.5 0.10000000000000001 inf -nan"},
    {"mp_unpack_float_nan_payload",
        "return R(cmsgpack.unpack('\\203\\127\\248\\0\\0\\0\\0\\0\\1'))",
        "1|nan"},
    {"mp_unpack_str_forms",
        "return R(cmsgpack.unpack('\\163abc\\217\\3abc\\218\\0\\3abc\\219\\0\\0\\0\\3abc\\"
        "160'))",
        "5|'616263 '616263 '616263 '616263 '"},
    {"mp_unpack_str_65536",
        "return R(cmsgpack.unpack(cmsgpack.pack(string.rep('q', 65536))))",
        "1|'#65536:717171717171717171717171..717171717171717171717171:527012661"},
    {"mp_unpack_array_forms",
        "return R(cmsgpack.unpack('\\146\\1\\2\\220\\0\\2\\3\\4\\221\\0\\0\\0\\1\\5\\144')"
        ")",
        "4|{1=1,2=2} {1=3,2=4} {1=5} {}"},
    {"mp_unpack_map_forms",
        "return R(cmsgpack.unpack('\\129\\161a\\1\\222\\0\\1\\161b\\2\\223\\0\\0\\0\\1\\16"
        "1c\\3\\128'))",
        "4|{'61=1} {'62=2} {'63=3} {}"},
    {"mp_unpack_array_nil_elements",
        "return R(cmsgpack.unpack('\\148\\1\\192\\3\\192'))",
        "1|{1=1,3=3}"},
    {"mp_unpack_map_nil_value",
        "return R(cmsgpack.unpack('\\130\\161a\\192\\161b\\2'))",
        "1|{'62=2}"},
    {"mp_unpack_map_nil_key",
        "return P(cmsgpack.unpack, '\\129\\192\\1')",
        "err table index is nil"},
    {"mp_unpack_map_nan_key",
        "return P(cmsgpack.unpack, '\\129\\203\\255\\248\\0\\0\\0\\0\\0\\0\\1')",
        "err table index is NaN"},
    {"mp_unpack_map_table_key",
        "return P(function() local t = cmsgpack.unpack('\\129\\145\\1\\2'); local n = 0; f"
        "or k, v in pairs(t) do n = n + 1 end; return n end)",
        "ok 1|1"},
    {"mp_unpack_multiple",
        "return R(cmsgpack.unpack('\\1\\2\\3'))",
        "3|1 2 3"},
    {"mp_unpack_number_arg",
        "return P(cmsgpack.unpack, 123)",
        "ok 3|49 50 51"},
    {"mp_unpack_extra_args",
        "return P(cmsgpack.unpack, '\\1\\2', 'x', 'y')",
        "ok 2|1 2"},
    {"mp_unpack_no_arg",
        "return P(cmsgpack.unpack)",
        "err bad argument #1 to '\?' (string expected, got no value)"},
    {"mp_unpack_table_arg",
        "return P(cmsgpack.unpack, {})",
        "err bad argument #1 to '\?' (string expected, got table)"},
    {"mp_unpack_missing_fixstr",
        "return P(cmsgpack.unpack, '\\165ab')",
        "err Missing bytes in input."},
    {"mp_unpack_missing_uint",
        "return P(cmsgpack.unpack, '\\206\\0\\0')",
        "err Missing bytes in input."},
    {"mp_unpack_missing_array",
        "return P(cmsgpack.unpack, '\\147\\1')",
        "err Missing bytes in input."},
    {"mp_unpack_missing_array32_header",
        "return P(cmsgpack.unpack, '\\221\\0\\0')",
        "err Missing bytes in input."},
    {"mp_unpack_missing_str32",
        "return P(cmsgpack.unpack, '\\219\\0\\0\\1\\0abc')",
        "err Missing bytes in input."},
    {"mp_unpack_missing_after_good",
        "return P(cmsgpack.unpack, '\\1\\2\\205')",
        "err Missing bytes in input."},
    {"mp_unpack_huge_array_count",
        "return P(cmsgpack.unpack, '\\221\\255\\255\\255\\255\\1\\2')",
        "err Missing bytes in input."},
    {"mp_unpack_bad_c1",
        "return P(cmsgpack.unpack, '\\193')",
        "err Bad data format in input."},
    {"mp_unpack_bad_bin8",
        "return P(cmsgpack.unpack, '\\196\\1a')",
        "err Bad data format in input."},
    {"mp_unpack_bad_ext",
        "return P(cmsgpack.unpack, '\\212\\1\\1')",
        "err Bad data format in input."},
    {"mp_unpack_bad_inside_array",
        "return P(cmsgpack.unpack, '\\146\\1\\199')",
        "err Bad data format in input."},
    {"mp_unpack_results_7999",
        "return tostring(select('#', cmsgpack.unpack(string.rep('\\1', 7999))))",
        "7999"},
    {"mp_unpack_results_8000",
        "return P(function() return select('#', cmsgpack.unpack(string.rep('\\1', 8000))) "
        "end)",
        "err user_script:46: stack overflow (too many return values at once; use unpack_on"
        "e or unpack_limit instead.)"},
    {"mp_unpack_deep_arrays",
        "return P(cmsgpack.unpack, string.rep('\\145', 100000))",
        "err stack overflow (in function mp_decode_to_lua_array)"},
    {"mp_unpack_deep_arrays_3998",
        "return P(function() return S(cmsgpack.unpack(string.rep('\\145', 3998) .. '\\1'))"
        " ~= nil end)",
        "ok 1|boolean"},
    {"mp_unpack_deep_arrays_3999",
        "return P(function() return S(cmsgpack.unpack(string.rep('\\145', 3999) .. '\\1'))"
        " ~= nil end)",
        "ok 1|boolean"},
    {"mp_unpack_deep_arrays_4000",
        "return P(function() return S(cmsgpack.unpack(string.rep('\\145', 4000) .. '\\1'))"
        " ~= nil end)",
        "err user_script:46: stack overflow (in function mp_decode_to_lua_array)"},
    {"mp_unpack_deep_map_keys_7997",
        "return P(function() return type(cmsgpack.unpack(string.rep('\\129', 7997) .. '\\1"
        "\\1' .. string.rep('\\1', 7996))) end)",
        "ok 1|'7461626c65"},
    {"mp_unpack_deep_map_keys_7998",
        "return P(function() return type(cmsgpack.unpack(string.rep('\\129', 7998) .. '\\1"
        "\\1' .. string.rep('\\1', 7997))) end)",
        "err user_script:46: stack overflow (too many return values at once; use unpack_on"
        "e or unpack_limit instead.)"},
    {"mp_unpack_deep_map_values_3999",
        "return P(function() return type(cmsgpack.unpack(string.rep('\\129\\1', 3999) .. '"
        "\\1')) end)",
        "ok 1|'7461626c65"},
    {"mp_unpack_deep_map_values_4000",
        "return P(function() return type(cmsgpack.unpack(string.rep('\\129\\1', 4000) .. '"
        "\\1')) end)",
        "err user_script:46: stack overflow (too many return values at once; use unpack_on"
        "e or unpack_limit instead.)"},
    {"mp_unpack_deep_empty_arrays",
        "return P(function() return type(cmsgpack.unpack(string.rep('\\145', 3999) .. '\\1"
        "44')) end)",
        "err user_script:46: stack overflow (in function mp_decode_to_lua_array)"},
    {"mp_unpack_deep_empty_arrays_4000",
        "return P(function() return type(cmsgpack.unpack(string.rep('\\145', 4000) .. '\\1"
        "44')) end)",
        "err user_script:46: stack overflow (in function mp_decode_to_lua_array)"},
    {"mp_unpack_many_with_extra_args",
        "return P(function() return select('#', cmsgpack.unpack(string.rep('\\1', 7998), '"
        "x', 'y')) end)",
        "err user_script:46: stack overflow (too many return values at once; use unpack_on"
        "e or unpack_limit instead.)"},
    {"mp_unpack_one_first",
        "return R(cmsgpack.unpack_one('\\1\\2\\3'))",
        "2|1 1"},
    {"mp_unpack_one_offset",
        "return R(cmsgpack.unpack_one('\\1\\2\\3', 1))",
        "2|2 2"},
    {"mp_unpack_one_last",
        "return R(cmsgpack.unpack_one('\\1\\2\\3', 2))",
        "2|-1 3"},
    {"mp_unpack_one_at_end",
        "return R(cmsgpack.unpack_one('\\1\\2\\3', 3))",
        "1|-1"},
    {"mp_unpack_one_single",
        "return R(cmsgpack.unpack_one('\\1'))",
        "2|-1 1"},
    {"mp_unpack_one_empty",
        "return R(cmsgpack.unpack_one(''))",
        "1|-1"},
    {"mp_unpack_one_past_end",
        "return P(cmsgpack.unpack_one, '\\1\\2\\3', 4)",
        "err Start offset 4 greater than input length 3."},
    {"mp_unpack_one_negative",
        "return P(cmsgpack.unpack_one, '\\1\\2\\3', -1)",
        "err Invalid request to unpack with offset of -1 and limit of 3."},
    {"mp_unpack_one_fraction_offset",
        "return R(cmsgpack.unpack_one('\\1\\2\\3', 1.9))",
        "2|2 2"},
    {"mp_unpack_one_string_offset",
        "return R(cmsgpack.unpack_one('\\1\\2\\3', '2'))",
        "2|-1 3"},
    {"mp_unpack_one_bad_offset",
        "return P(cmsgpack.unpack_one, '\\1\\2\\3', 'x')",
        "err bad argument #2 to '\?' (number expected, got string)"},
    {"mp_unpack_one_no_arg",
        "return P(cmsgpack.unpack_one)",
        "err bad argument #1 to '\?' (string expected, got no value)"},
    {"mp_unpack_one_extra_args",
        "return P(cmsgpack.unpack_one, '\\1\\2', 0, 'x', 'y')",
        "ok 2|1 1"},
    {"mp_unpack_one_walk",
        "local s = cmsgpack.pack({1}, 'a', {b = 2}); local out, off, v = {}, 0; while off "
        "~= -1 do off, v = cmsgpack.unpack_one(s, off); out[#out + 1] = S(off) .. ':' .. S"
        "(v) end; return table.concat(out, ' ')",
        "2:{1=1} 4:'61 -1:{'62=2}"},
    {"mp_unpack_one_missing",
        "return P(cmsgpack.unpack_one, '\\1\\205\\1', 1)",
        "err Missing bytes in input."},
    {"mp_unpack_limit_two",
        "return R(cmsgpack.unpack_limit('\\1\\2\\3', 2))",
        "3|2 1 2"},
    {"mp_unpack_limit_more_than_there",
        "return R(cmsgpack.unpack_limit('\\1\\2\\3', 10))",
        "4|-1 1 2 3"},
    {"mp_unpack_limit_offset",
        "return R(cmsgpack.unpack_limit('\\1\\2\\3\\4', 2, 1))",
        "3|3 2 3"},
    {"mp_unpack_limit_zero",
        "return R(cmsgpack.unpack_limit('\\1\\2\\3', 0))",
        "3|1 2 3"},
    {"mp_unpack_limit_zero_offset",
        "return R(cmsgpack.unpack_limit('\\1\\2\\3', 0, 1))",
        "1|1"},
    {"mp_unpack_limit_negative",
        "return P(cmsgpack.unpack_limit, '\\1\\2\\3', -2)",
        "err Invalid request to unpack with offset of 0 and limit of 3."},
    {"mp_unpack_limit_negative_offset",
        "return P(cmsgpack.unpack_limit, 'abcdef', 1, -7)",
        "err Invalid request to unpack with offset of -7 and limit of 6."},
    {"mp_unpack_limit_no_limit",
        "return P(cmsgpack.unpack_limit, '\\1')",
        "err bad argument #2 to '\?' (number expected, got no value)"},
    {"mp_unpack_limit_bad_limit",
        "return P(cmsgpack.unpack_limit, '\\1', 'x')",
        "err bad argument #2 to '\?' (number expected, got string)"},
    {"mp_unpack_limit_past_end",
        "return P(cmsgpack.unpack_limit, '\\1', 1, 2)",
        "err Start offset 2 greater than input length 1."},
    {"mp_unpack_limit_bad_data",
        "return P(cmsgpack.unpack_limit, '\\1\\193', 5)",
        "err Bad data format in input."},
    {"mp_unpack_limit_many",
        "return P(function() return select('#', cmsgpack.unpack_limit(string.rep('\\1', 90"
        "00), 7997)) end)",
        "ok 1|7998"},
    {"mp_unpack_limit_too_many",
        "return P(function() return select('#', cmsgpack.unpack_limit(string.rep('\\1', 90"
        "00), 7998)) end)",
        "ok 1|7999"},
    {"mp_unpack_limit_all_results",
        "return P(function() return select('#', cmsgpack.unpack_limit(string.rep('\\1', 79"
        "99), 7999)) end)",
        "err user_script:46: stack overflow (in function mp_unpack_full)"},
    {"mp_module_fields",
        "return table.concat({cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, cmsg"
        "pack._DESCRIPTION}, '|')",
        "cmsgpack|lua-cmsgpack 0.4.0|Copyright (C) 2012, Salvatore Sanfilippo|MessagePack "
        "C implementation for Lua"},
    {"mp_module_keys",
        "local k = {}; for n in pairs(cmsgpack) do k[#k + 1] = n end; table.sort(k); retur"
        "n table.concat(k, ',')",
        "_COPYRIGHT,_DESCRIPTION,_NAME,_VERSION,pack,unpack,unpack_limit,unpack_one"},
    {"st_pack_bytes",
        "return H(struct.pack('bB', -1, 255)) .. ' ' .. H(struct.pack('bB', 128, -128))",
        "ffff 8080"},
    {"st_pack_shorts",
        "return H(struct.pack('<h>h<H>H', -2, -2, 65534, 65534))",
        "fefffffefefffffe"},
    {"st_pack_longs",
        "return H(struct.pack('<l>L', -2, 2^40 + 5))",
        "feffffffffffffff0000010000000005"},
    {"st_pack_size_t",
        "return H(struct.pack('<T>T', 1, 1))",
        "01000000000000000000000000000001"},
    {"st_pack_int_default",
        "return H(struct.pack('i<I>i', -3, 3, 3))",
        "fdffffff0300000000000003"},
    {"st_pack_int_sizes",
        "return H(struct.pack('>i1i2i3i4i5i6i7i8', 1, 2, 3, 4, 5, 6, 7, 8))",
        "010002000003000000040000000005000000000006000000000000070000000000000008"},
    {"st_pack_int_wide",
        "return H(struct.pack('<i16', -1)) .. ' ' .. H(struct.pack('>I12', 2^40)) .. ' ' ."
        ". H(struct.pack('>i32', -2))",
        "ffffffffffffffff0000000000000000 000000000000010000000000 00000000000000000000000"
        "0000000000000000000000000fffffffffffffffe"},
    {"st_pack_int_zero_width",
        "return H(struct.pack('>i0I0b', 5, 6, 7))",
        "07"},
    {"st_pack_int_2_31_2_32",
        "return H(struct.pack('>i4I4i4I4', 2^31, 2^31, 2^32, 2^32 + 1))",
        "80000000800000000000000000000001"},
    {"st_pack_int_2_53",
        "return H(struct.pack('>i8I8', 2^53 + 2, -2^53))",
        "0020000000000002ffe0000000000000"},
    {"st_pack_int_2_63_up",
        "return H(struct.pack('>i8I8I8i8', 2^63, 2^63, 2^64, -2^64))",
        "8000000000000000800000000000000000000000000000008000000000000000"},
    {"st_pack_int_nan_inf",
        "return H(struct.pack('>I8I8i8i4', 0/0, 1/0, -1/0, 1e300))",
        "80000000000000000000000000000000800000000000000000000000"},
    {"st_pack_int_fraction",
        "return H(struct.pack('>i2i2I2', 1.9, -1.9, 65535.99))",
        "0001ffffffff"},
    {"st_pack_int_numeric_string",
        "return H(struct.pack('>i2', '258'))",
        "0102"},
    {"st_pack_float",
        "return H(struct.pack('<f>f', 1.5, 1.5))",
        "0000c03f3fc00000"},
    {"st_pack_double",
        "return H(struct.pack('<d>d', 0.1, 0.1))",
        "9a9999999999b93f3fb999999999999a"},
    {"st_pack_float_specials",
        "local z = 0; z = -z; return H(struct.pack('>ffffd', 0/0, 1/0, z, 1e40, -1/0))",
        "ffc000007f800000800000007f800000fff0000000000000"},
    {"st_pack_float_rounding",
        "return H(struct.pack('>f', 0.1)) .. ' ' .. H(struct.pack('>f', 3.4028235677973366"
        "e38))",
        "3dcccccd 7f800000"},
    {"st_pack_chars",
        "return H(struct.pack('c3c0c1', 'abcdef', 'xyz', 'q'))",
        "61626378797a71"},
    {"st_pack_zstring",
        "return H(struct.pack('ss', 'ab', ''))",
        "61620000"},
    {"st_pack_zstring_number",
        "return H(struct.pack('s', 12.5))",
        "31322e3500"},
    {"st_pack_pad_space",
        "return H(struct.pack(' b x b xx', 1, 2))",
        "0100020000"},
    {"st_pack_align_default",
        "return H(struct.pack('!bd', 1, 2)) .. ' ' .. H(struct.pack('!bi', 1, 2))",
        "01000000000000000000000000000040 0100000002000000"},
    {"st_pack_align_2_4",
        "return H(struct.pack('!2bib', 1, 2, 3)) .. ' ' .. H(struct.pack('!4bhbi', 1, 2, 3"
        ", 4))",
        "01000200000003 010002000300000004000000"},
    {"st_pack_align_odd_int",
        "return H(struct.pack('!8bi3bi5', 1, 2, 3, 4))",
        "010000020000030400000000"},
    {"st_pack_align_chars_unaligned",
        "return H(struct.pack('!4bc3i', 1, 'abc', 2))",
        "0161626302000000"},
    {"st_pack_align_zstring",
        "return H(struct.pack('!4bsi', 1, 'ab', 2))",
        "0161620002000000"},
    {"st_pack_empty_format",
        "return H(struct.pack(''))",
        ""},
    {"st_pack_chars_long",
        "return H(struct.pack('c0', string.rep('z', 70000)))",
        "#70000:7a7a7a7a7a7a7a7a7a7a7a7a..7a7a7a7a7a7a7a7a7a7a7a7a:553234677"},
    {"st_pack_err_invalid",
        "return P(struct.pack, 'q', 1)",
        "err bad argument #1 to '\?' (invalid format option 'q')"},
    {"st_pack_err_equals",
        "return P(struct.pack, '=i', 1)",
        "err bad argument #1 to '\?' (invalid format option '=')"},
    {"st_pack_err_invalid_named",
        "local ok, e = pcall(function() local s = struct.pack('bz', 1) return s end); retu"
        "rn tostring(e)",
        "user_script:46: bad argument #1 to 'pack' (invalid format option 'z')"},
    {"st_pack_err_high_byte",
        "return P(struct.pack, 'b\\200', 1)",
        "err bad argument #1 to '\?' (invalid format option '\310')"},
    {"st_pack_err_int_too_wide",
        "return P(struct.pack, 'i33', 1)",
        "err integral size 33 is larger than limit of 32"},
    {"st_pack_int_32_ok",
        "return P(function() return #struct.pack('I32', 1) end)",
        "ok 1|32"},
    {"st_pack_err_count_overflow",
        "return P(struct.pack, 'c2147483648', 'a')",
        "err integral size overflow"},
    {"st_pack_err_count_max",
        "return P(struct.pack, 'c2147483647', 'a')",
        "err bad argument #3 to '\?' (string too short)"},
    {"st_pack_err_int_overflow",
        "return P(struct.pack, 'i99999999999', 1)",
        "err integral size overflow"},
    {"st_pack_err_align_3",
        "return P(struct.pack, '!3b', 1)",
        "err alignment 3 is not a power of 2"},
    {"st_pack_err_align_0",
        "return P(struct.pack, '!0b', 1)",
        "err alignment 0 is not a power of 2"},
    {"st_pack_err_align_overflow",
        "return P(struct.pack, '!4294967296b', 1)",
        "err integral size overflow"},
    {"st_pack_err_missing_arg",
        "return P(struct.pack, 'bb', 1)",
        "err bad argument #3 to '\?' (number expected, got nil)"},
    {"st_pack_err_wrong_type",
        "return P(struct.pack, 'b', {})",
        "err bad argument #2 to '\?' (number expected, got table)"},
    {"st_pack_err_string_type",
        "return P(struct.pack, 'b', 'x')",
        "err bad argument #2 to '\?' (number expected, got string)"},
    {"st_pack_err_short_string",
        "return P(struct.pack, 'c3', 'ab')",
        "err bad argument #3 to '\?' (string too short)"},
    {"st_pack_err_short_string_later",
        "return P(struct.pack, 'bc5', 1, 'ab')",
        "err bad argument #4 to '\?' (string too short)"},
    {"st_pack_err_no_format",
        "return P(struct.pack)",
        "err bad argument #1 to '\?' (string expected, got no value)"},
    {"st_pack_err_format_table",
        "return P(struct.pack, {})",
        "err bad argument #1 to '\?' (string expected, got table)"},
    {"st_pack_err_missing_string",
        "return P(struct.pack, 's')",
        "err bad argument #2 to '\?' (string expected, got nil)"},
    {"st_unpack_bytes",
        "return R(struct.unpack('bB', '\\255\\255'))",
        "3|-1 255 3"},
    {"st_unpack_shorts",
        "return R(struct.unpack('<h>h<H>H', '\\254\\255\\255\\254\\254\\255\\255\\254'))",
        "5|-2 -2 65534 65534 9"},
    {"st_unpack_longs",
        "return R(struct.unpack('<l>L', string.rep('\\255', 16)))",
        "3|-1 1.8446744073709552e+19 17"},
    {"st_unpack_size_t",
        "return R(struct.unpack('>T', '\\0\\0\\0\\0\\0\\0\\1\\0'))",
        "2|256 9"},
    {"st_unpack_int_sizes",
        "return R(struct.unpack('>i1i2i3I3i4', '\\255\\255\\254\\128\\0\\0\\128\\0\\0\\255"
        "\\255\\255\\255'))",
        "6|-1 -2 -8388608 8388608 -1 14"},
    {"st_unpack_int_wide",
        "return R(struct.unpack('>i9', string.rep('\\0', 8) .. '\\128'))",
        "2|-128 10"},
    {"st_unpack_int_wide_le",
        "return R(struct.unpack('<i12', string.rep('\\255', 4) .. '\\0\\0\\0\\128\\0\\0\\0"
        "\\0'))",
        "2|-1 13"},
    {"st_unpack_int_16",
        "return R(struct.unpack('<i16<I16', string.rep('\\255', 8) .. string.rep('\\0', 8)"
        " .. string.rep('\\255', 16)))",
        "3|-1 1.8446744073709552e+19 33"},
    {"st_unpack_int_zero_width",
        "return R(struct.unpack('i0I0', ''))",
        "3|0 0 1"},
    {"st_unpack_uint64_max",
        "return R(struct.unpack('>I8>i8', string.rep('\\255', 16)))",
        "3|1.8446744073709552e+19 -1 17"},
    {"st_unpack_floats",
        "return R(struct.unpack('<f>d', struct.pack('<f>d', 1.25, 0.1)))",
        "3|1.25 0.10000000000000001 13"},
    {"st_unpack_float_specials",
        "return R(struct.unpack('>ff', '\\127\\128\\0\\0\\255\\192\\0\\0'))",
        "3|inf -nan 9"},
    {"st_unpack_chars",
        "return R(struct.unpack('c2c1', 'abc'))",
        "3|'6162 '63 4"},
    {"st_unpack_c0_prefixed",
        "return R(struct.unpack('>bc0b', '\\3abc\\9'))",
        "3|'616263 9 6"},
    {"st_unpack_c0_from_string",
        "return R(struct.unpack('c1c0', '3abcd'))",
        "2|'616263 5"},
    {"st_unpack_c0_zero",
        "return R(struct.unpack('bc0', '\\0'))",
        "2|' 2"},
    {"st_unpack_c0_negative",
        "return P(struct.unpack, 'bc0', '\\255abc')",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_c0_nan",
        "return P(struct.unpack, '>dc0', struct.pack('>d', 0/0))",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_c0_too_long",
        "return P(struct.unpack, 'bc0', '\\9abc')",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_c0_no_previous",
        "return P(struct.unpack, 'c0', '3abc')",
        "err format 'c0' needs a previous size"},
    {"st_unpack_c0_previous_not_number",
        "return P(struct.unpack, 'c1c0', 'xabc')",
        "err format 'c0' needs a previous size"},
    {"st_unpack_zstrings",
        "return R(struct.unpack('ss', 'ab\\0\\0rest'))",
        "3|'6162 ' 5"},
    {"st_unpack_zstring_unfinished",
        "return P(struct.unpack, 'bs', '\\1ab')",
        "err unfinished string in data"},
    {"st_unpack_padding",
        "return R(struct.unpack('bxxb x', '\\1\\0\\0\\2\\0'))",
        "3|1 2 6"},
    {"st_unpack_align",
        "return R(struct.unpack('!4bi', '\\1\\0\\0\\0\\2\\0\\0\\0'))",
        "3|1 2 9"},
    {"st_unpack_position",
        "return R(struct.unpack('b', '\\1\\2\\3', 2))",
        "2|2 3"},
    {"st_unpack_position_end",
        "return R(struct.unpack('', 'abc', 4))",
        "1|4"},
    {"st_unpack_position_zero",
        "return P(struct.unpack, 'b', 'abc', 0)",
        "err bad argument #3 to '\?' (offset must be 1 or greater)"},
    {"st_unpack_position_negative",
        "return P(struct.unpack, 'b', 'abc', -1)",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_position_negative_empty",
        "return P(struct.unpack, '', 'abc', -1)",
        "ok 1|-1"},
    {"st_unpack_position_past",
        "return P(struct.unpack, 'b', 'abc', 5)",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_position_past_empty",
        "return P(struct.unpack, '', 'abc', 10)",
        "ok 1|10"},
    {"st_unpack_short_data",
        "return P(struct.unpack, '>i4', 'ab')",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_short_after_align",
        "return P(struct.unpack, '!4bi', '\\1\\0\\0\\0\\2')",
        "err bad argument #2 to '\?' (data string too short)"},
    {"st_unpack_invalid_option",
        "return P(struct.unpack, 'bq', '\\1')",
        "err bad argument #1 to '\?' (invalid format option 'q')"},
    {"st_unpack_invalid_option_past_end",
        "return P(struct.unpack, 'i4q', 'abcd')",
        "err bad argument #1 to '\?' (invalid format option 'q')"},
    {"st_unpack_no_data",
        "return P(struct.unpack, 'b')",
        "err bad argument #2 to '\?' (string expected, got no value)"},
    {"st_unpack_number_data",
        "return R(struct.unpack('c2', 42))",
        "2|'3432 3"},
    {"st_unpack_results_7997",
        "return P(function() return select('#', struct.unpack(string.rep('b', 7997), strin"
        "g.rep('\\0', 8000))) end)",
        "ok 1|7998"},
    {"st_unpack_results_7998",
        "return P(function() return select('#', struct.unpack(string.rep('b', 7998), strin"
        "g.rep('\\0', 8000))) end)",
        "err user_script:46: stack overflow (too many results)"},
    {"st_unpack_results_with_pos",
        "return P(function() return select('#', struct.unpack(string.rep('b', 7997), strin"
        "g.rep('\\0', 8000), 1)) end)",
        "err user_script:46: stack overflow (too many results)"},
    {"st_unpack_roundtrip",
        "local s = struct.pack('>!4bhidsc3', -5, 300, -70000, 2.5, 'zs', 'xyz'); return H("
        "s) .. ' ' .. R(struct.unpack('>!4bhidsc3', s))",
        "fb00012cfffeee9040040000000000007a730078797a 7|-5 300 -70000 2.5 '7a73 '78797a 23"},
    {"st_size_basic",
        "return R(struct.size('bhilfdT'))",
        "1|35"},
    {"st_size_ints",
        "return R(struct.size('i1i2i3i16'))",
        "1|22"},
    {"st_size_align",
        "return R(struct.size('!bd')) .. ' ' .. R(struct.size('!4bd')) .. ' ' .. R(struct."
        "size('!2bi'))",
        "1|16 1|12 1|6"},
    {"st_size_chars",
        "return R(struct.size('c10xx c1'))",
        "1|13"},
    {"st_size_unknown_letter",
        "return R(struct.size('qzb'))",
        "1|1"},
    {"st_size_digits_alone",
        "return R(struct.size('b9'))",
        "1|1"},
    {"st_size_s",
        "return P(struct.size, 'bs')",
        "err bad argument #1 to '\?' (option 's' has no fixed size)"},
    {"st_size_c0",
        "return P(struct.size, 'c0')",
        "err bad argument #1 to '\?' (option 'c0' has no fixed size)"},
    {"st_size_invalid_punct",
        "return P(struct.size, 'b=')",
        "err bad argument #1 to '\?' (invalid format option '=')"},
    {"st_size_int_too_wide",
        "return P(struct.size, 'i40')",
        "err integral size 40 is larger than limit of 32"},
    {"st_size_bad_align",
        "return P(struct.size, '!6')",
        "err alignment 6 is not a power of 2"},
    {"st_size_no_format",
        "return P(struct.size)",
        "err bad argument #1 to '\?' (string expected, got no value)"},
    {"st_module_keys",
        "local k = {}; for n in pairs(struct) do k[#k + 1] = n end; table.sort(k); return "
        "table.concat(k, ',')",
        "pack,size,unpack"},
};
/* END GENERATED VECTORS */

/* Allocator with a byte budget, to drive allocation failures. */
typedef struct {
    size_t used;
    size_t limit;
} budget;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    budget *b = ud;
    if (nsize == 0) {
        if (ptr != NULL)
            b->used -= osize;
        free(ptr);
        return NULL;
    }
    size_t old = ptr != NULL ? osize : 0;
    if (nsize > old && b->used - old + nsize > b->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p != NULL)
        b->used = b->used - old + nsize;
    return p;
}

static void open_lib(lua_State *L, lua_CFunction fn, const char *name)
{
    lua_pushcfunction(L, fn);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

static lua_State *new_state(budget *b)
{
    lua_State *L = b != NULL ? lua_newstate(budget_alloc, b) : luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    open_lib(L, luaopen_cmsgpack, "cmsgpack");
    open_lib(L, luaopen_struct, "struct");
    lua_pushcfunction(L, luaopen_cjson);
    lua_call(L, 0, 1);
    lua_setglobal(L, "cjson");
    return L;
}

/* Runs prelude + body as one chunk named like Redis's; returns the string
 * result or the error text, in a malloc'd copy. */
static char *run_chunk(lua_State *L, const char *body)
{
    size_t plen = strlen(vector_prelude), blen = strlen(body);
    char *src = malloc(plen + blen + 1);
    assert_non_null(src);
    memcpy(src, vector_prelude, plen);
    memcpy(src + plen, body, blen + 1);
    int top = lua_gettop(L);
    int rc = luaL_loadbuffer(L, src, plen + blen, "@user_script");
    if (rc == 0)
        rc = lua_pcall(L, 0, 1, 0);
    free(src);
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    char *out;
    if (s == NULL) {
        out = strdup("<non-string result>");
    } else if (rc != 0) {
        out = malloc(len + 8);
        assert_non_null(out);
        snprintf(out, len + 8, "ERROR: %s", s);
    } else {
        out = malloc(len + 1);
        assert_non_null(out);
        memcpy(out, s, len);
        out[len] = '\0';
    }
    lua_settop(L, top);
    return out;
}

static void test_vector(void **state)
{
    const lua_vector *v = *state;
    lua_State *L = new_state(NULL);
    char *got = run_chunk(L, v->body);
    if (strcmp(got, v->expected) != 0)
        print_error("case %s\n  script:   %s\n  expected: %s\n  got:      %s\n", v->name, v->body,
                    v->expected, got);
    assert_string_equal(got, v->expected);
    free(got);
    lua_close(L);
}

/* Every stack slot a library call uses is given back. */
static void test_stack_balance(void **state)
{
    (void)state;
    lua_State *L = new_state(NULL);
    free(run_chunk(L, "for i = 1, 50 do cmsgpack.unpack(cmsgpack.pack({1, {a = 2}}, 'x')) "
                      "struct.unpack('>i4s', struct.pack('>i4s', i, 'z')) end return ''"));
    assert_int_equal(lua_gettop(L), 0);
    lua_close(L);
}

/* Out of memory while encoding or decoding: a Lua error, never a crash,
 * and nothing leaks (the sanitizer build checks) once the state closes. */
static void test_allocation_failure(void **state)
{
    (void)state;
    budget b = {0, SIZE_MAX};
    lua_State *L = new_state(&b);
    char *got;
    free(run_chunk(L, "big1 = string.rep('x', 100000) big2 = string.rep('y', 100000) return ''"));
    /* The first budget fails the encoder's own buffer, the second the
     * result strings Lua allocates. */
    static const size_t headroom[] = {50000, 150000, 260000};
    for (size_t i = 0; i < sizeof headroom / sizeof headroom[0]; i++) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        b.limit = b.used + headroom[i];
        got = run_chunk(L, "local ok, e = pcall(cmsgpack.pack, big1, big2) "
                           "return tostring(ok) .. ' ' .. tostring(e)");
        assert_string_equal(got, "false not enough memory");
        free(got);
        b.limit = SIZE_MAX;
    }
    got = run_chunk(L, "return tostring(#cmsgpack.pack(string.rep('x', 100000)))");
    assert_string_equal(got, "100005");
    free(got);

    /* Decoding a deep structure needs frame memory; fail that too. */
    got = run_chunk(L, "deep = string.rep('\\145', 3000) .. '\\1' return ''");
    free(got);
    lua_gc(L, LUA_GCCOLLECT, 0);
    b.limit = b.used + 48 * 1024;
    got = run_chunk(L, "local ok, e = pcall(cmsgpack.unpack, deep) return tostring(ok)");
    assert_string_equal(got, "false");
    free(got);
    b.limit = SIZE_MAX;
    got = run_chunk(L, "local t = cmsgpack.unpack(deep) local d = 0 "
                       "while type(t) == 'table' do t = t[1] d = d + 1 end return d .. ':' .. t");
    assert_string_equal(got, "3000:1");
    free(got);
    lua_close(L);
}

/* Decoding deep nesting runs in constant C stack, so it is safe on the
 * small stacks scripts may run on. */
static void *deep_decode_thread(void *arg)
{
    char **out = arg;
    lua_State *L = new_state(NULL);
    *out = run_chunk(L, "local ok, e = pcall(cmsgpack.unpack, string.rep('\\145', 100000)) "
                        "local t = cmsgpack.unpack(string.rep('\\129\\1', 3999) .. '\\1') "
                        "local d = 0 while type(t) == 'table' do t = t[1] d = d + 1 end "
                        "return tostring(e) .. '|' .. d");
    lua_close(L);
    return NULL;
}

static void test_deep_decode_small_stack(void **state)
{
    (void)state;
    pthread_attr_t attr;
    pthread_t th;
    char *got = NULL;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
    assert_int_equal(pthread_create(&th, &attr, deep_decode_thread, &got), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    assert_non_null(got);
    assert_string_equal(got, "stack overflow (in function mp_decode_to_lua_array)|3999");
    free(got);
}

/* The engine's string.find/match/gmatch/gsub (lua_strmatch.c: Lua 5.1's
 * matcher without recursion) against the stock ones, on random patterns
 * and subjects: the same results, the same errors. */
static const char strmatch_diff[] =
    "local stock, mine = ...\n"
    "local seed = 12345\n"
    "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n + 1 end\n"
    "local atoms = {'a', 'b', 'x', '.', '%a', '%d', '%s', '%w', '%', '%%', '[ab]', '[^a]', '[a-c]', '[%d]',\n"
    "  '[', ']', '(', ')', '()', '*', '+', '-', '?', '^', '$', '%b()', '%bab', '%f[a]', '%f[%w]', '%f', '%1',\n"
    "  '%2', '%0', '1', '\\0', '%z'}\n"
    "local subj = {'a', 'b', 'x', '(', ')', '1', '2', ' ', 'ab', '\\0'}\n"
    "local function gen(t, max) local o = {} for i = 1, rnd(max) do o[i] = t[rnd(#t)] end return table.concat(o) end\n"
    "local function pack(...) local r = {} for i = 1, select('#', ...) do r[i] = tostring((select(i, ...))) end\n"
    "  return select('#', ...) .. ':' .. table.concat(r, '|') end\n"
    "local function run(f, ...) return pack(pcall(f, ...)) end\n"
    "local function gm(g, s, p) local o = {} local ok, e = pcall(function()\n"
    "  for a, b in g(s, p) do o[#o + 1] = tostring(a) .. ',' .. tostring(b) if #o > 30 then break end end end)\n"
    "  return tostring(ok) .. tostring(e) .. table.concat(o, ';') end\n"
    "local repl = {'<%0>', '%1', '%2', '%%', 'z', '%', function(a, b) return a end, {a = 'A', ab = false}, 7}\n"
    "for i = 1, 20000 do\n"
    "  local p, s = gen(atoms, 8), gen(subj, 12)\n"
    "  local init = rnd(#s + 4) - 2\n"
    "  local r, max = repl[rnd(#repl)], rnd(4) - 1\n"
    "  local checks = {\n"
    "    {run(stock.find, s, p, init), run(mine.find, s, p, init)},\n"
    "    {run(stock.find, s, p, init, true), run(mine.find, s, p, init, true)},\n"
    "    {run(stock.match, s, p, init), run(mine.match, s, p, init)},\n"
    "    {gm(stock.gmatch, s, p), gm(mine.gmatch, s, p)},\n"
    "    {run(stock.gsub, s, p, r), run(mine.gsub, s, p, r)},\n"
    "    {run(stock.gsub, s, p, r, max), run(mine.gsub, s, p, r, max)},\n"
    "  }\n"
    "  for k, c in ipairs(checks) do\n"
    "    if c[1] ~= c[2] then return 'case ' .. i .. '.' .. k .. ' s=' .. s .. ' p=' .. p .. ': ' .. c[1] .. ' vs ' .. c[2] end\n"
    "  end\n"
    "end\n"
    "return 'same'\n";

static void test_strmatch_matches_stock(void **state)
{
    (void)state;
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    assert_int_equal(luaL_loadbuffer(L, strmatch_diff, sizeof(strmatch_diff) - 1, "=strmatch"), 0);
    lua_getglobal(L, "string");
    lua_newtable(L);
    lua_strmatch_install(L);
    assert_int_equal(lua_pcall(L, 2, 1, 0), 0);
    assert_string_equal(lua_tostring(L, -1), "same");
    lua_close(L);
}

int main(void)
{
    size_t n = sizeof vectors / sizeof vectors[0];
    struct CMUnitTest *tests = calloc(n + 4, sizeof *tests);
    assert_non_null(tests);
    for (size_t i = 0; i < n; i++) {
        tests[i].name = vectors[i].name;
        tests[i].test_func = test_vector;
        tests[i].initial_state = (void *)&vectors[i];
    }
    tests[n].name = "stack_balance";
    tests[n].test_func = test_stack_balance;
    tests[n + 1].name = "allocation_failure";
    tests[n + 1].test_func = test_allocation_failure;
    tests[n + 2].name = "deep_decode_small_stack";
    tests[n + 2].test_func = test_deep_decode_small_stack;
    tests[n + 3].name = "strmatch_matches_stock";
    tests[n + 3].test_func = test_strmatch_matches_stock;
    int failed = _cmocka_run_group_tests("lua_libs", tests, n + 4, NULL, NULL);
    free(tests);
    return failed;
}
